/* The variant store of an LLM checkpoint: each (tensor, ggml type) pair quantized once with
 * libggml-base's own quantizer (ggml_quantize_chunk, with the tensor's imatrix row when one is
 * given, as llama_model_quantize calls it), kept in memory with its imatrix-weighted squared error
 *
 *     E[t][type] = Σ_rows Σ_j w_j (x_ij − deq(quant(x))_ij)²,
 *
 * w_j the imatrix mean of x_j² for column j (per expert for 3-D tensors), 1 without an imatrix;
 * deq is the type's own to_float. A candidate model is a GGUF assembled from those bytes (no
 * tensor is quantized twice), byte for byte what llama_model_quantize writes for the same types. */
#ifndef BA_LLM_VARIANTS_H
#define BA_LLM_VARIANTS_H

#include <stdint.h>

#include "core/error.h"
#include "llm/gguf.h"
#include "llm/imatrix.h"
#include "llm/llama.h"

/* Default candidate types of the LLM commands: the K family, Q8_0 and F16. */
#define BA_LLM_DEFAULT_TYPES "q2_K,q3_K,q4_K,q5_K,q6_K,q8_0,f16"
#define BA_LLM_MAX_TYPES 16

typedef struct ba_llm_variants ba_llm_variants_t;

/* g (the source checkpoint, kept alive by the caller) and its imatrix (NULL: none; kept alive). */
ba_status ba_llm_variants_new(const ba_llama_t *ll, const ba_gguf_t *g, const ba_imatrix_t *im,
                              ba_llm_variants_t **out, ba_error *err);
void ba_llm_variants_free(ba_llm_variants_t *v);

/* The imatrix row of tensor i (n_mat × ne0 means) when the imatrix covers it with matching
 * columns, as llama-quantize matches it; NULL otherwise. */
const float *ba_llm_variants_imatrix(const ba_llm_variants_t *v, int tensor);

/* Candidate types of gguf tensor i among types[0..ntypes) (ids): none when llama-quantize keeps
 * the tensor as it is; else those whose block divides ne0, without the imatrix-only types when
 * the tensor has no imatrix row (token_embd and output exempt, as in llama.cpp, and then with
 * unit weights only if ggml itself does not need one). Returns how many (<= ntypes), written to out. */
int ba_llm_variants_candidates(const ba_llm_variants_t *v, int tensor, const int *types, int ntypes,
                               int *out);

/* Tensor i as type: its bytes (owned by v, valid until v is freed) and error; computed on first
 * use only. data/nbytes/error may be NULL. */
ba_status ba_llm_variant_get(ba_llm_variants_t *v, int tensor, int type, const void **data, uint64_t *nbytes,
                             double *error, ba_error *err);
/* Pairs quantized so far (each once). */
int64_t ba_llm_variants_quantized(const ba_llm_variants_t *v);

/* Writes the source's metadata and tensors to path, tensor i as types[i] (its stored bytes when
 * types[i] < 0 or equals the stored type), general.file_type left as the source has it. */
ba_status ba_llm_variants_write(ba_llm_variants_t *v, const int *types, const char *path, ba_error *err);

/* The error table: one row per tensor llama-quantize would quantize, in file order, with its
 * candidate types among the given ones (ba_llm_variants_candidates), each type's exact bytes and
 * error E (each pair quantized through the store, so once). */
typedef struct {
    int tensor;       /* index in the GGUF */
    const char *name; /* the GGUF's */
    uint64_t n_weights;
    int has_imatrix; /* the imatrix weighted its error */
    int ncand;       /* 0: none of the types fits (ne0 not a multiple of their blocks) */
    int type[BA_LLM_MAX_TYPES];
    uint64_t bytes[BA_LLM_MAX_TYPES];
    double error[BA_LLM_MAX_TYPES];
} ba_llm_errtab_row_t;

typedef struct {
    int n;
    ba_llm_errtab_row_t *rows;
    uint64_t n_weights;   /* Σ over the rows */
    uint64_t other_bytes; /* the tensors kept as stored */
} ba_llm_errtab_t;

ba_status ba_llm_errtab_compute(ba_llm_variants_t *v, const int *types, int ntypes, ba_llm_errtab_t **out,
                                ba_error *err);
void ba_llm_errtab_free(ba_llm_errtab_t *t);

/* "q4_K,q8_0" -> type ids (each a quant_target type, no repeats); BA_ERR_INPUT naming the item. */
ba_status ba_llm_parse_types(const char *list, int *ids, int *n, ba_error *err);

#endif
