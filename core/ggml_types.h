/* ggml tensor types as llama.cpp stores them in GGUF: id, name, block size and bytes per block
 * (so the exact bits per weight), whether llama-quantize can produce the type, and whether it
 * refuses to without an imatrix. The one table of these facts in bitalloc (core/: the llama export in quant/
 * and the LLM path in llm/ both read it); the values are those of ggml_type_size/ggml_blck_size of the pinned
 * libggml-base (checked by a test when it is present). Bytes of a tensor = ne1·ne2·ne3·(ne0/block)·bytes,
 * defined only when block divides ne0. */
#ifndef BA_CORE_GGML_TYPES_H
#define BA_CORE_GGML_TYPES_H

#include <stdint.h>

#include "core/error.h"

typedef struct {
    int id;            /* enum ggml_type */
    const char *name;  /* ggml_type_name: "f32", "q4_K", ... */
    int block;         /* weights per block */
    int bytes;         /* bytes per block */
    int quant_target;  /* 1: a weight type llama-quantize can write (not F32/I8..., not Q8_1/Q8_K) */
    int needs_imatrix; /* 1: llama-quantize refuses it without an imatrix (outside token_embd/output) */
} ba_ggml_type_t;

/* Number of rows in the table and row i (0 <= i < count), in id order. */
int ba_ggml_type_count(void);
const ba_ggml_type_t *ba_ggml_type_at(int i);
/* The row for a ggml type id; NULL when bitalloc does not know it. */
const ba_ggml_type_t *ba_ggml_type_by_id(int id);
/* The row for a name, case-insensitive ("Q4_K", "q4_k", "iq4_xs"); NULL when unknown. */
const ba_ggml_type_t *ba_ggml_type_by_name(const char *name);
/* Exact bits per weight: 8·bytes/block. */
double ba_ggml_type_bpw(const ba_ggml_type_t *t);
/* Bytes of a tensor with n_dims (1..4) sizes ne[] of type t. BA_ERR_INPUT when block does not
 * divide ne[0], a size is negative or the product overflows 64 bits. */
ba_status ba_ggml_type_nbytes(const ba_ggml_type_t *t, int n_dims, const int64_t *ne, uint64_t *out,
                              ba_error *err);

/* 1 when llama-quantize would quantize a tensor of this name and rank (llama_tensor_get_type's
 * filter): a ".weight" of rank >= 2 that is not a norm, ffn_gate_inp, a position embedding, or a
 * few other tensors llama.cpp keeps as they are. */
int ba_ggml_tensor_quantizable(const char *name, int n_dims);

/* Candidate types for one tensor: every quant_target type (plus F16 and F32) whose block divides
 * ne0, without those that need an imatrix when have_imatrix is 0 (token_embd and output are exempt
 * from that rule, as in llama.cpp). Writes up to cap ids to out; returns how many qualify. */
int ba_ggml_candidates(const char *name, int64_t ne0, int have_imatrix, int *out, int cap);

/* The type llama-quantize writes for a tensor of row length ne0 (ggml's ne[0]) asked for t: t when
 * its block divides ne0, else llama-quantize's own fallback (src/llama-quant.cpp,
 * tensor_type_fallback): q2_K, q3_K, tq1_0, tq2_0, q2_0 -> q4_0; q4_K -> q5_0; q5_K -> q5_1;
 * q6_K -> q8_0; the iq 256-blocks -> iq4_nl; and f16 when the fallback's block does not divide
 * ne0 either. NULL when llama-quantize defines no fallback for t (q8_0, q4_0, ... on a row that
 * is not a multiple of 32): it would stop with an error, so the type is not an option. */
const ba_ggml_type_t *ba_ggml_type_fallback(const ba_ggml_type_t *t, int64_t ne0);

/* bitalloc's weight widths as llama.cpp types (the llama export and the llama cost model):
 * 2 q2_K, 3 q3_K, 4 q4_K, 5 q5_K, 6 q6_K, 7 and 8 q8_0 (7 has no ggml type: the next wider one,
 * never fewer bits), 16 f16, 32 f32. NULL for any other width. */
const ba_ggml_type_t *ba_ggml_type_for_bits(int bits);
/* Its name in lowercase ("q4_k"), as the llama export writes it; NULL likewise. */
const char *ba_ggml_type_name_for_bits(int bits);
/* Real bits per weight of a width (Q2_K 2.625, Q3_K 3.4375, Q4_K 4.5, Q5_K 5.5,
 * Q6_K 6.5625, Q8_0 8.5, F16 16, F32 32), or 0 when it has no type. */
double ba_ggml_bpw_of_bits(int bits);
/* The width a ggml type name stands for in a candidate list (case-insensitive: "q4_k" -> 4,
 * "Q8_0" -> 8, "f16" -> 16): > 0; 0 for a ggml type no width maps to ("iq4_xs", "q4_0");
 * -1 for a name that is no ggml type. */
int ba_ggml_bits_of_type_name(const char *name);
/* The names ba_ggml_bits_of_type_name accepts, for messages: "q2_k, q3_k, ..., f32". */
#define BA_GGML_WIDTH_TYPES "q2_k, q3_k, q4_k, q5_k, q6_k, q8_0, f16, f32"

/* Budget helpers over the quantizable tensors: bytes for an average of bpw bits per weight over
 * n_weights weights (floor), and the bits per weight of total bytes. */
uint64_t ba_ggml_budget_bytes(uint64_t n_weights, double bpw);
double ba_ggml_bpw_of(uint64_t bytes, uint64_t n_weights);

#endif
