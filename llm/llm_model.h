/* The tensors of an LLM checkpoint, GGUF or safetensors (a file, an index.json or a folder), in
 * llama.cpp's terms: GGUF name (HF llama names mapped), ggml sizes ne[] (innermost first), the
 * stored type and bytes, and whether llama-quantize would quantize it. */
#ifndef BA_LLM_LLM_MODEL_H
#define BA_LLM_LLM_MODEL_H

#include <stdint.h>

#include "core/error.h"
#include "llm/gguf.h"
#include "llm/safetensors.h"

typedef struct {
    char name[BA_GGUF_MAX_NAME + 1]; /* GGUF name ("" when an HF name has no llama mapping) */
    const char *source_name;         /* the name in the file */
    const char *type;                /* ggml type name, or the safetensors dtype */
    int n_dims;
    int64_t ne[BA_GGUF_MAX_DIMS]; /* innermost first, unused dims 1 */
    uint64_t n_weights;
    uint64_t nbytes;
    int quantizable;
} ba_llm_tensor_t;

typedef struct {
    const char *format; /* "gguf" or "safetensors" */
    ba_gguf_t *gguf;
    ba_safetensors_t *st;
    int n;
    ba_llm_tensor_t *t;
} ba_llm_model_t;

/* GGUF when the file starts with "GGUF", else safetensors. */
ba_status ba_llm_model_open(const char *path, ba_llm_model_t **out, ba_error *err);
void ba_llm_model_free(ba_llm_model_t *m);

#endif
