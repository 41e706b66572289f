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

/* Budget helpers over the quantizable tensors: bytes for an average of bpw bits per weight over
 * n_weights weights (floor), and the bits per weight of total bytes. */
uint64_t ba_ggml_budget_bytes(uint64_t n_weights, double bpw);
double ba_ggml_bpw_of(uint64_t bytes, uint64_t n_weights);

#endif
