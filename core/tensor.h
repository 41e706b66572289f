/* Dense, row-major tensors with a reference count.
 * dtype numbers are ONNX's TensorProto.DataType values so the loader and the
 * writers need no mapping. A view shares its base's memory and holds a ref. */
#ifndef BA_CORE_TENSOR_H
#define BA_CORE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef enum {
    BA_DT_UNDEFINED = 0,
    BA_DT_F32 = 1,
    BA_DT_U8 = 2,
    BA_DT_I8 = 3,
    BA_DT_U16 = 4,
    BA_DT_I16 = 5,
    BA_DT_I32 = 6,
    BA_DT_I64 = 7,
    BA_DT_STRING = 8, /* not supported for compute */
    BA_DT_BOOL = 9,   /* one byte per element, 0 or 1 */
    BA_DT_F16 = 10,   /* IEEE half, stored as uint16_t */
    BA_DT_F64 = 11,
    BA_DT_U32 = 12,
    BA_DT_U64 = 13,
    BA_DT_BF16 = 16,
    BA_DT_U4 = 21, /* packed two per byte, low nibble first (ONNX) */
    BA_DT_I4 = 22,
} ba_dtype;

#define BA_MAX_DIMS 8
/* No tensor is larger than this (shape x element size): a bigger one is bad
 * input (a hostile or impossible shape), refused before any allocation. */
#define BA_TENSOR_MAX_BYTES ((int64_t)16 << 30)

typedef struct ba_tensor {
    ba_dtype dtype;
    int ndim; /* 0 = scalar */
    int64_t shape[BA_MAX_DIMS];
    int64_t numel;          /* product of shape (1 for a scalar) */
    void *data;             /* row-major, 64-byte aligned when owned */
    int refs;               /* header reference count */
    int owns;               /* 1: data freed with the tensor */
    struct ba_tensor *base; /* view: tensor that owns data (a ref is held) */
} ba_tensor_t;

size_t ba_dtype_size(ba_dtype dt);      /* bytes per element; 0 for unknown/packed */
const char *ba_dtype_name(ba_dtype dt); /* "float32", "int64", … */
int ba_dtype_is_float(ba_dtype dt);
int ba_dtype_is_int(ba_dtype dt); /* signed or unsigned integer, not bool */
size_t ba_tensor_nbytes(const ba_tensor_t *t);
int64_t ba_shape_numel(int ndim, const int64_t *shape); /* -1 on overflow or a negative dim */
/* Row-major (contiguous) element strides of shape: st[ndim-1] = 1, st[d] = st[d+1]·shape[d+1]. */
void ba_shape_strides(int ndim, const int64_t *shape, int64_t *st);
/* Parses "1x3x320x640" (dims joined by 'x'; "" or "scalar" for rank 0) into
 * *ndim and shape; BA_ERR_INPUT on a malformed text or a dim outside 0..2^40. */
ba_status ba_shape_parse(const char *text, int *ndim, int64_t *shape, ba_error *err);
/* "[1, 3, 32, 32]" into buf. */
const char *ba_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap);

/* New zero-filled tensor. NULL (err set) on overflow / out of memory / bad ndim. */
ba_tensor_t *ba_tensor_new(ba_dtype dt, int ndim, const int64_t *shape, ba_error *err);
/* Same, contents left undefined: for kernels that write every element (no
 * zero-fill pass). Large buffers may be recycled ones (see below). */
ba_tensor_t *ba_tensor_new_uninit(ba_dtype dt, int ndim, const int64_t *shape, ba_error *err);
/* Frees the buffers kept for reuse: freed large tensor buffers (>= 256 KiB,
 * at most 256 MiB in all) are kept by exact size and handed to the next
 * ba_tensor_new / _uninit of that size, so repeated forward passes do not
 * mmap/munmap and page-fault their activations every run. Thread-safe. */
void ba_tensor_cache_clear(void);
/* Tensor over memory it does not own (mmap, protobuf buffer); caller keeps data alive. */
ba_tensor_t *ba_tensor_wrap(ba_dtype dt, int ndim, const int64_t *shape, void *data, ba_error *err);
/* Same memory, other shape (numel must match). Holds a ref on src. */
ba_tensor_t *ba_tensor_view(ba_tensor_t *src, int ndim, const int64_t *shape, ba_error *err);
ba_tensor_t *ba_tensor_clone(const ba_tensor_t *src, ba_error *err);
/* Entries [start, start+count) of src along axis (the other axes whole): a
 * view holding a ref on src when that range is one contiguous block (axis 0,
 * or every axis before it has length 1), else a copy. NULL (err set) when the
 * axis or the range is outside src. */
ba_tensor_t *ba_tensor_slice_axis(ba_tensor_t *src, int axis, int64_t start, int64_t count, ba_error *err);
ba_tensor_t *ba_tensor_ref(ba_tensor_t *t);
void ba_tensor_unref(ba_tensor_t *t); /* NULL-safe */

/* Element i converted to double / int64 whatever the dtype (for small shape tensors). */
double ba_tensor_get_f64(const ba_tensor_t *t, int64_t i);
int64_t ba_tensor_get_i64(const ba_tensor_t *t, int64_t i);
/* Converting copy into a new tensor of dtype dt (ONNX Cast semantics). */
ba_tensor_t *ba_tensor_cast(const ba_tensor_t *src, ba_dtype dt, ba_error *err);

/* IEEE half <-> float, round to nearest even. */
float ba_f16_to_f32(uint16_t h);
uint16_t ba_f32_to_f16(float f);
float ba_bf16_to_f32(uint16_t h);

#endif
