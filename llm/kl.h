/* Measured KL through libllama: the reference is the checkpoint widened to F32 (ba_gguf_write_f32),
 * decoded once over the calibration tokens in chunks of chunk_len tokens (each from an empty
 * context); a candidate's fitness is the mean per-token KL(p_ref ‖ p_candidate) over the
 * positions that predict a next token inside their chunk (chunk_len − 1 per chunk), as EvoPress
 * measures it. A candidate is a GGUF assembled from the variant store (llm/variants.h) in a
 * private temporary folder that ba_llm_kl_free removes. */
#ifndef BA_LLM_KL_H
#define BA_LLM_KL_H

#include <stdint.h>

#include "core/error.h"
#include "llm/gguf.h"
#include "llm/llama.h"
#include "llm/variants.h"

/* Default tokens per chunk. */
#define BA_LLM_DEFAULT_CHUNK 128

typedef struct ba_llm_kl ba_llm_kl_t;

/* g: the source checkpoint (kept alive by the caller); text tokenized by g's vocabulary (no BOS);
 * the tokens are cut into chunks of chunk_len (fewer tokens: one chunk of all of them; a partial
 * last chunk is dropped). BA_ERR_INPUT when the text has fewer than 2 tokens. */
ba_status ba_llm_kl_new(const ba_llama_t *ll, const ba_gguf_t *g, const char *text, int chunk_len,
                        int n_threads, ba_llm_kl_t **out, ba_error *err);
void ba_llm_kl_free(ba_llm_kl_t *k);
int ba_llm_kl_nchunks(const ba_llm_kl_t *k);
int ba_llm_kl_chunk_len(const ba_llm_kl_t *k);
int ba_llm_kl_ntokens(const ba_llm_kl_t *k);
/* The reference GGUF (F32) in the private folder. */
const char *ba_llm_kl_reference(const ba_llm_kl_t *k);

/* Mean KL and top-1 agreement of the model at path against the reference over chunks
 * [first, first + n). kl may come out non-finite (a broken model); that is not an error. */
ba_status ba_llm_kl_measure(ba_llm_kl_t *k, const char *path, int first, int n, double *kl, double *agreement,
                            ba_error *err);
/* The same for the checkpoint with tensor i as types[i] (< 0: as stored), assembled from v. */
ba_status ba_llm_kl_measure_types(ba_llm_kl_t *k, ba_llm_variants_t *v, const int *types, int first, int n,
                                  double *kl, double *agreement, ba_error *err);

#endif
