/* llama.cpp's C API, loaded at run time (dlopen) from the prebuilt CPU libraries that the npm
 * package @node-llama-cpp/linux-x64@3.22.1 ships (llama.cpp release v0.5.0, llama_version()
 * "0.5.0-dev"). Nothing links against them: the build and the ONNX path never need them, and the
 * LLM functions say exactly which file or symbol is missing. Only the structs and functions used
 * here are declared (llama.c), copied from that release's include/llama.h; any other version is
 * refused because those structs change between releases.
 *
 * The libraries stay loaded for the life of the process once ba_llama_open has succeeded. */
#ifndef BA_LLM_LLAMA_H
#define BA_LLM_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "llm/gguf.h"
#include "llm/imatrix.h"

#define BA_LLAMA_NPM_PACKAGE "@node-llama-cpp/linux-x64"
#define BA_LLAMA_NPM_VERSION "3.22.1"
#define BA_LLAMA_VERSION "0.5.0-dev"
/* The folder (inside the npm package) that holds the libraries. */
#define BA_LLAMA_NPM_BINS "bins/linux-x64"
/* Environment variable naming that folder. */
#define BA_LLAMA_DIR_ENV "BA_LLAMA_DIR"

typedef struct ba_llama ba_llama_t;

/* Loads libggml-base.so, libggml.v0.5.0.so and libllama.v0.5.0.so from dir (NULL: $BA_LLAMA_DIR),
 * registers the CPU backends found there and checks llama_version(). BA_ERR_UNSUPPORTED when a
 * library or symbol is missing or the version is another one; the message says what to install. */
ba_status ba_llama_open(const char *dir, ba_llama_t **out, ba_error *err);
const char *ba_llama_version(const ba_llama_t *ll);

/* ggml_type_name / ggml_blck_size / ggml_type_size of the loaded libggml-base for a type id. */
void ba_llama_ggml_type(const ba_llama_t *ll, int id, const char **name, int64_t *block, size_t *bytes);

/* Tokens of text by the model's vocabulary (no BOS added, no special-token parsing); caller frees. */
ba_status ba_llama_tokenize(const ba_llama_t *ll, const char *model_path, const char *text, int32_t **tokens,
                            int *n_tokens, ba_error *err);

/* Logits of every position of one sequence of n_tokens tokens decoded in one batch:
 * *logits is n_tokens × n_vocab floats (row i predicts token i+1); caller frees. */
ba_status ba_llama_logits(const ba_llama_t *ll, const char *model_path, const int32_t *tokens, int n_tokens,
                          int n_threads, float **logits, int *n_vocab, ba_error *err);

/* Decodes n_chunks chunks of chunk_len tokens each (tokens holds them back to back), each from an
 * empty context, with one load of the model; after chunk k, fn gets its chunk_len × n_vocab logits
 * (row i predicts token i+1; valid during the call). A non-OK return of fn stops the decoding. */
typedef ba_status (*ba_llama_chunk_fn)(void *user, int chunk, const float *logits, int n_vocab,
                                       ba_error *err);
ba_status ba_llama_decode_chunks(const ba_llama_t *ll, const char *model_path, const int32_t *tokens,
                                 int chunk_len, int n_chunks, int n_threads, ba_llama_chunk_fn fn, void *user,
                                 ba_error *err);

/* An importance matrix of the model over n_chunks chunks of chunk_len tokens, as llama-imatrix
 * collects it: for every matrix product with a named 2-D weight (W.weight × F32 activations), the
 * mean over tokens of x_j² per input column j (libllama's eval callback; logits of every position
 * are requested, so the output matrix is seen on all of them). *counts: tokens per entry. */
ba_status ba_llama_collect_imatrix(const ba_llama_t *ll, const char *model_path, const int32_t *tokens,
                                   int chunk_len, int n_chunks, int n_threads, ba_imatrix_t **out,
                                   int64_t **counts, ba_error *err);

/* libggml-base's own quantizers (ggml_quantize_chunk, the type's to_float), as llama_model_quantize
 * uses them. */
/* 1 when ggml refuses to quantize to type without an imatrix (ggml_quantize_requires_imatrix). */
int ba_llama_needs_imatrix(const ba_llama_t *ll, int type);
/* n values of a tensor stored as type (F32, F16, BF16 or a quantized type) -> f32. */
ba_status ba_llama_to_f32(const ba_llama_t *ll, int type, const void *src, int64_t n, float *dst,
                          ba_error *err);
/* nrows rows of n_per_row f32 values -> type (a quant_target type whose block divides n_per_row) into
 * dst (nrows·n_per_row/block·bytes); imatrix: n_per_row importance weights (mean x²) or NULL, which
 * is refused for the types that need one. *nbytes: bytes written. */
ba_status ba_llama_quantize_rows(const ba_llama_t *ll, int type, const float *src, int64_t nrows,
                                 int64_t n_per_row, const float *imatrix, void *dst, size_t *nbytes,
                                 ba_error *err);

/* llama_model_quantize(in -> out): every quantizable tensor gets default_type (a ggml type id
 * with a llama_ftype: F32, F16, BF16, Q4_0 ... Q6_K, Q8_0, the IQ and TQ types, MXFP4, NVFP4,
 * Q1_0, Q2_0) unless one of the n_over patterns (std::regex, searched, first match wins) names
 * another type for it. im: the importance matrix every quantization uses (NULL: none). */
ba_status ba_llama_quantize(const ba_llama_t *ll, const char *in, const char *out, int default_type,
                            const char *const *patterns, const int *types, int n_over, int n_threads,
                            const ba_imatrix_t *im, ba_error *err);

/* llama_model_quantize with one of llama.cpp's own type mixes, as llama-quantize FTYPE names it
 * ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0"):
 * the baselines a per-tensor plan is compared with. */
ba_status ba_llama_quantize_mix(const ba_llama_t *ll, const char *in, const char *out, const char *mix,
                                int n_threads, const ba_imatrix_t *im, ba_error *err);
/* Those mixes' names, smallest first ("Q2_K" ... "Q8_0"); NULL for i past the last. */
const char *ba_llama_mix_name(int i);

/* The ggml type llama_model_quantize gives each tensor of g (a parsed GGUF, read from g->path) in
 * mix, with im as ba_llama_quantize_mix would pass it: its own per-tensor rules (llama-quant.cpp's
 * llama_tensor_get_type, shape fallbacks included) through a dry run, which quantizes and writes
 * nothing. types[i] (g->n_tensors): tensor i's type, its stored one when the mix keeps it. The one
 * home of "which type does llama.cpp's mix give this tensor". */
ba_status ba_llama_mix_types(const ba_llama_t *ll, const ba_gguf_t *g, const char *mix,
                             const ba_imatrix_t *im, int *types, ba_error *err);

#endif
