/* safetensors (huggingface/safetensors): u64 LE header length N, N bytes of JSON
 * {"NAME": {"dtype": "F16", "shape": [..], "data_offsets": [BEGIN, END]}, "__metadata__": {..}},
 * then the data; offsets count from the end of the header, tensors are C-order little-endian and
 * cover the data exactly (no holes, no overlap). A folder holds model.safetensors or shards listed
 * by model.safetensors.index.json {"weight_map": {"NAME": "FILE"}}.
 *
 * Files are mapped read-only; every size and offset is checked before use, so a hostile file gives
 * BA_ERR_INPUT "FILE: FIELD: WHY" and never a read outside the mapping. HF llama-family names map
 * to llama.cpp's GGUF names with ba_hf_to_gguf_name. */
#ifndef BA_LLM_SAFETENSORS_H
#define BA_LLM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/util.h"

#define BA_ST_MAX_DIMS 8
#define BA_ST_MAX_HEADER (100u * 1024u * 1024u) /* the reference parser's cap */

typedef enum {
    BA_ST_F64,
    BA_ST_F32,
    BA_ST_F16,
    BA_ST_BF16,
    BA_ST_I64,
    BA_ST_I32,
    BA_ST_I16,
    BA_ST_I8,
    BA_ST_U64,
    BA_ST_U32,
    BA_ST_U16,
    BA_ST_U8,
    BA_ST_BOOL,
    BA_ST_F8_E4M3,
    BA_ST_F8_E5M2,
    BA_ST_NDTYPES
} ba_st_dtype;

typedef struct {
    char *name;
    ba_st_dtype dtype;
    int n_dims;
    int64_t shape[BA_ST_MAX_DIMS]; /* outermost first (PyTorch order) */
    uint64_t nbytes;
    const uint8_t *data;
    int file; /* index into ba_safetensors_t.paths */
} ba_st_tensor_t;

typedef struct {
    int n_files;
    char **paths;
    ba_mapped_t *maps;
    int n;
    ba_st_tensor_t *t;
} ba_safetensors_t;

/* A .safetensors file, a model.safetensors.index.json, or a folder holding either. */
ba_status ba_safetensors_open(const char *path, ba_safetensors_t **out, ba_error *err);
/* One file's bytes (kept alive by the caller while *out is used); name labels errors. */
ba_status ba_safetensors_parse(const uint8_t *data, size_t size, const char *name, ba_safetensors_t **out,
                               ba_error *err);
/* Index JSON text -> the unique shard file names of its weight_map, in order of first use (each a
 * plain file name: no '/', not "." or ".."); free each and the array. */
ba_status ba_safetensors_parse_index(const char *json, size_t len, const char *name, char ***files,
                                     int *n_files, ba_error *err);
void ba_safetensors_free(ba_safetensors_t *s);
const ba_st_tensor_t *ba_safetensors_find(const ba_safetensors_t *s, const char *name);
const char *ba_st_dtype_name(ba_st_dtype d);
size_t ba_st_dtype_size(ba_st_dtype d);

/* HF llama-family tensor name -> GGUF name (model.layers.3.mlp.down_proj.weight ->
 * blk.3.ffn_down.weight, model.embed_tokens.weight -> token_embd.weight, lm_head.weight ->
 * output.weight, model.norm.weight -> output_norm.weight). 0 on success, -1 when the name has no
 * llama mapping or does not fit cap. */
int ba_hf_to_gguf_name(const char *hf, char *out, size_t cap);

#endif
