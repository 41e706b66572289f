/* NumPy/ONNX multidirectional broadcasting: output shape of several inputs and
 * a row-wise walk over the output that gives each input's element offset.
 * Adjacent dimensions that broadcast alike are merged, so [N,C,H,W] + [1,C,1,1]
 * walks as rows of H*W with the second input constant along each row. */
#ifndef BA_MODEL_BROADCAST_H
#define BA_MODEL_BROADCAST_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

#define BA_BCAST_MAX_IN 4 /* Where has 3 inputs; one spare */

typedef struct ba_bcast {
    int out_ndim; /* broadcast output shape (unmerged) */
    int64_t out_shape[BA_MAX_DIMS];
    int64_t out_numel;
    int nin;
    int ndim;                                      /* merged rank (>= 1) */
    int64_t shape[BA_MAX_DIMS];                    /* merged shape; shape[ndim-1] is the row length */
    int64_t strides[BA_BCAST_MAX_IN][BA_MAX_DIMS]; /* element strides per input, 0 = broadcast */
    int64_t row_len, nrows;
} ba_bcast_t;

/* Output shape of broadcasting shapes a and b; BA_ERR_INPUT naming `who` when
 * they do not broadcast. out may alias neither input. */
ba_status ba_broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b, int *nout, int64_t *out,
                             const char *who, ba_error *err);

/* Prepares a walk over the broadcast of nin shapes (nin <= BA_BCAST_MAX_IN). */
ba_status ba_bcast_init(ba_bcast_t *bc, int nin, const int *ndims, const int64_t *const *shapes,
                        const char *who, ba_error *err);
/* Same, from tensors. */
ba_status ba_bcast_init_tensors(ba_bcast_t *bc, int nin, const ba_tensor_t *const *in, const char *who,
                                ba_error *err);

/* Calls fn on segments of rows (at most BA_BCAST_SEG elements) covering the
 * whole output, in parallel (OpenMP) when the output is large. offs[k] is
 * input k's offset of the segment's first element, steps[k] its stride. */
#define BA_BCAST_SEG 16384
typedef void (*ba_bcast_seg_fn)(void *ctx, int64_t out_off, const int64_t *offs, const int64_t *steps,
                                int64_t len);
void ba_bcast_for_each(const ba_bcast_t *bc, ba_bcast_seg_fn fn, void *ctx);

/* Element stores for generic (slow-path) kernels: ONNX Cast conversion of a
 * double / int64 into element i of t, whatever t's dtype. */
void ba_elem_store_f64(ba_tensor_t *t, int64_t i, double v);
void ba_elem_store_i64(ba_tensor_t *t, int64_t i, int64_t v);

/* Offsets of row r's first element in each input (offs[nin]); the row's output
 * offset is r * row_len and input k advances by strides[k][ndim-1] along it. */
void ba_bcast_row(const ba_bcast_t *bc, int64_t r, int64_t *offs);

/* Advances the row-major multi-index pos[0..ndim) over shape by one element
 * (the last axis fastest); wraps to all zeros after the last element. */
static inline void ba_index_next(int ndim, const int64_t *shape, int64_t *pos) {
    for (int d = ndim - 1; d >= 0; d--) {
        if (++pos[d] < shape[d]) return;
        pos[d] = 0;
    }
}

#endif
