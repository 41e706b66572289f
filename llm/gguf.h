/* GGUF (ggml-org/ggml docs/gguf.md), versions 2 and 3, little-endian: reader over a read-only
 * mapping (no copy of the tensor data) and a writer.
 *
 * Layout: "GGUF", u32 version, u64 n_tensors, u64 n_kv; n_kv × {string key, u32 type, value};
 * n_tensors × {string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset}; padding to
 * general.alignment (u32, a power of two, default 32); the data section, each tensor at its offset
 * (a multiple of the alignment) from the section's start. A string is u64 length + bytes; an
 * array is u32 element type + u64 count + elements (arrays of arrays are refused, as by ggml).
 *
 * The reader checks everything against the file's size before it touches it: a truncated or
 * hostile file gives BA_ERR_INPUT "FILE: FIELD: WHY", never a read outside the mapping, an
 * overflowing size or an allocation larger than the file can justify. */
#ifndef BA_LLM_GGUF_H
#define BA_LLM_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/util.h"

enum {
    BA_GGUF_U8 = 0,
    BA_GGUF_I8 = 1,
    BA_GGUF_U16 = 2,
    BA_GGUF_I16 = 3,
    BA_GGUF_U32 = 4,
    BA_GGUF_I32 = 5,
    BA_GGUF_F32 = 6,
    BA_GGUF_BOOL = 7,
    BA_GGUF_STRING = 8,
    BA_GGUF_ARRAY = 9,
    BA_GGUF_U64 = 10,
    BA_GGUF_I64 = 11,
    BA_GGUF_F64 = 12,
    BA_GGUF_NTYPES = 13
};
#define BA_GGUF_DEFAULT_ALIGNMENT 32
#define BA_GGUF_MAX_DIMS 4
#define BA_GGUF_MAX_NAME 63 /* ggml's GGML_MAX_NAME - 1 */

typedef struct {
    char *key;          /* NUL-terminated copy */
    uint32_t type;      /* BA_GGUF_* */
    uint32_t arr_type;  /* element type when type is BA_GGUF_ARRAY */
    uint64_t n;         /* elements of an array; 1 otherwise */
    const uint8_t *val; /* value bytes in the file: scalar, string (u64 len + bytes) or array elements */
    size_t val_size;
    uint64_t *str_off; /* string arrays: offset of element i's u64 length within val */
} ba_gguf_kv_t;

typedef struct {
    char *name;
    int n_dims;
    int64_t ne[BA_GGUF_MAX_DIMS]; /* unused dims are 1 */
    int type;                     /* ggml type id (core/ggml_types.h) */
    uint64_t offset;              /* from the start of the data section */
    uint64_t nbytes;
    const uint8_t *data; /* in the mapping */
} ba_gguf_tensor_t;

typedef struct {
    char *path;
    ba_mapped_t map; /* empty when parsed from caller memory */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset; /* file offset of the data section */
    int n_kv;
    ba_gguf_kv_t *kv;
    int n_tensors;
    ba_gguf_tensor_t *tensors;
    int temporary; /* path is a converted copy (llm/hf_convert.h) that ba_gguf_free deletes */
} ba_gguf_t;

/* Maps path read-only and parses it. */
ba_status ba_gguf_open(const char *path, ba_gguf_t **out, ba_error *err);
/* Parses size bytes at data (kept alive by the caller while *out is used); name labels errors. */
ba_status ba_gguf_parse(const uint8_t *data, size_t size, const char *name, ba_gguf_t **out, ba_error *err);
/* Frees g (and deletes its file when g->temporary). */
void ba_gguf_free(ba_gguf_t *g);

const ba_gguf_kv_t *ba_gguf_find_kv(const ba_gguf_t *g, const char *key);
const ba_gguf_tensor_t *ba_gguf_find_tensor(const ba_gguf_t *g, const char *name);
/* Scalar readers: 0 on success, -1 when kv is NULL or of another kind. Integers of any width and
 * sign convert when the value fits; floats read F32/F64. */
int ba_gguf_kv_int(const ba_gguf_kv_t *kv, int64_t *out);
int ba_gguf_kv_float(const ba_gguf_kv_t *kv, double *out);
/* A string (not NUL-terminated) of a STRING kv, or element i of a string array. */
int ba_gguf_kv_str(const ba_gguf_kv_t *kv, const char **s, uint64_t *len);
int ba_gguf_kv_arr_str(const ba_gguf_kv_t *kv, uint64_t i, const char **s, uint64_t *len);
/* Element size of a fixed-size GGUF type; 0 for STRING/ARRAY or an unknown type. */
size_t ba_gguf_type_size(uint32_t type);

/* ---- writer ---- */
typedef struct ba_gguf_writer ba_gguf_writer_t;
ba_status ba_gguf_writer_new(ba_gguf_writer_t **out, ba_error *err);
void ba_gguf_writer_free(ba_gguf_writer_t *w);
/* A key/value pair from raw value bytes laid out as in ba_gguf_kv_t.val (copied). A kv
 * "general.alignment" (U32, power of two) sets the writer's alignment. */
ba_status ba_gguf_writer_add_kv(ba_gguf_writer_t *w, const char *key, uint32_t type, uint32_t arr_type,
                                uint64_t n, const void *val, size_t val_size, ba_error *err);
ba_status ba_gguf_writer_add_u32(ba_gguf_writer_t *w, const char *key, uint32_t v, ba_error *err);
ba_status ba_gguf_writer_add_f32(ba_gguf_writer_t *w, const char *key, float v, ba_error *err);
ba_status ba_gguf_writer_add_str(ba_gguf_writer_t *w, const char *key, const char *v, ba_error *err);
/* A tensor; data (nbytes, which must equal the type's size for ne) stays the caller's until
 * ba_gguf_writer_write returns. */
ba_status ba_gguf_writer_add_tensor(ba_gguf_writer_t *w, const char *name, int n_dims, const int64_t *ne,
                                    int type, const void *data, uint64_t nbytes, ba_error *err);
/* Writes the file through core/outfile (atomic replace). */
ba_status ba_gguf_writer_write(ba_gguf_writer_t *w, const char *path, ba_error *err);

/* Copies g to path with every F16/BF16 tensor widened to F32 (exactly) and every other tensor and
 * all metadata as they are (general.file_type set to 0, all F32, when g holds no quantized tensor):
 * the unquantized reference a KL is measured against. */
ba_status ba_gguf_write_f32(const ba_gguf_t *g, const char *path, ba_error *err);

#endif
