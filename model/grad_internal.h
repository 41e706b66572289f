/* Private helpers shared by the backward kernels (model/grad_*.c): gradient
 * slots, reduction of a broadcast gradient back to an input's shape, and the
 * family tables that ba_grad_lookup searches. Not public API. */
#ifndef BA_MODEL_GRAD_INTERNAL_H
#define BA_MODEL_GRAD_INTERNAL_H

#include "model/grad.h"

/* Family tables (each terminated by {NULL, NULL}). */
extern const ba_grad_def_t ba_grads_matmul[];      /* grad_matmul.c: Gemm, MatMul */
extern const ba_grad_def_t ba_grads_conv[];        /* grad_conv.c: Conv, ConvTranspose */
extern const ba_grad_def_t ba_grads_elementwise[]; /* grad_elementwise.c: arithmetic, activations, Where */
extern const ba_grad_def_t ba_grads_shape[];       /* grad_shape.c: Reshape … Slice, Gather, Concat */
extern const ba_grad_def_t ba_grads_norm[];        /* grad_norm.c: Softmax, BatchNorm, LayerNorm */
extern const ba_grad_def_t ba_grads_pool[];        /* grad_pool.c: Global/Average/MaxPool */
extern const ba_grad_def_t ba_grads_reduce[];      /* grad_reduce.c: ReduceSum/Mean/… */

/* din[i] += dout (same element count; the shape of in[i] is kept): takes a
 * ref (a view when the shapes differ) when the slot is empty, so a
 * pass-through op copies nothing. ba_grad_slot copies a shared tensor before
 * any write (copy on write), so such refs are safe. */
ba_status ba_grad_pass(ba_tensor_t **din, int i, const ba_tensor_t *like, ba_tensor_t *dout, ba_error *err);

/* dst (dndim, dshape) += scale · g (gndim, gshape) summed over the axes where
 * dst broadcast (numpy rules: dst's dims align right, a 1 or missing dim is
 * summed). Shapes must be broadcast-compatible (checked by the forward). */
void ba_grad_reduce_add(const float *g, int gndim, const int64_t *gshape, float *dst, int dndim,
                        const int64_t *dshape, float scale);

/* Float32 copy of t (any numeric dtype) broadcast to (ndim, shape); *owned
 * tells whether the caller frees the returned buffer (0: it is t's data). */
float *ba_grad_bcast_f32(const ba_node_t *n, const ba_tensor_t *t, int ndim, const int64_t *shape, int *owned,
                         ba_error *err);

#endif
