/* Private helpers shared by the backward kernels (model/grad_*.c): gradient
 * slots and reduction of a broadcast gradient back to an input's shape. Not public API. */
#ifndef BA_MODEL_GRAD_INTERNAL_H
#define BA_MODEL_GRAD_INTERNAL_H

#include "model/grad.h"

/* 2/sqrt(pi), erf's derivative scale; 1/sqrt(2 pi), the standard normal density at 0. */
#define BA_TWO_OVER_SQRT_PI 1.1283791670955126
#define BA_INV_SQRT_2PI 0.3989422804014327

/* Whether node n's op has a gradient rule: a backward, or BA_OPF_NOGRAD
 * (passes none). Otherwise a gradient path through it is unsupported. */
static inline int ba_grad_known(const ba_node_t *n) {
    return n->def && (n->def->backward || (n->def->flags & BA_OPF_NOGRAD));
}

/* Whether node n passes no gradient (BA_OPF_NOGRAD). */
static inline int ba_grad_nograd(const ba_node_t *n) {
    return n->def && (n->def->flags & BA_OPF_NOGRAD);
}

/* Whether node n ran in the forward that left vals (a node of an If branch
 * not taken did not: its outputs have no value). */
static inline int ba_grad_node_ran(const ba_node_t *n, ba_tensor_t *const *vals) {
    if (n->guard < 0) return 1;
    for (int j = 0; j < n->nout; j++)
        if (n->outputs[j] >= 0 && vals[n->outputs[j]]) return 1;
    return 0;
}

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

/* Clip's bounds for its gradient (grad_elementwise.c): the min/max attributes
 * before opset 11, the optional scalar inputs 1 and 2 after (±inf when absent). */
void ba_grad_clip_bounds(const ba_node_t *n, ba_tensor_t *const *in, int nin, float *lo, float *hi);

/* outer × len × inner layout of a Softmax / LogSoftmax over X: opset < 13
 * coerces to 2-D at axis (len = prod(shape[axis:])), opset >= 13 runs along
 * axis (grad_norm.c; the HVP's softmax rule reads it too). */
void ba_grad_softmax_layout(const ba_node_t *n, const ba_tensor_t *X, int64_t *outer, int64_t *len,
                            int64_t *inner);

/* ---- the reverse walk and sessions, shared by backward.c and grad_hvp.c ---- */

/* Per-node replacement of the op's backward during a reverse walk (the HVP's
 * tangent backward adds second-order terms). Same contract as
 * ba_op_backward_fn, plus the node's index in m->nodes. */
typedef ba_status (*ba_grad_node_hook)(void *ctx, int node, const ba_node_t *n, ba_tensor_t *const *in,
                                       int nin, ba_tensor_t *const *out, int nout, ba_tensor_t *const *dout,
                                       const unsigned char *need, ba_tensor_t **din, ba_error *err);

/* Backward from dz (dL/d vals[out_id]) to the constants req[]: gres[k] gets a
 * new ref to dL/d req[k] (NULL when no path reaches it: zero). keep (or
 * NULL): every float value downstream of a float constant gets its gradient
 * and keep[v] a ref to it (req may then be empty). hook (or NULL): called instead of each op's backward. */
ba_status ba_grad_backward(const ba_model_t *m, ba_tensor_t **vals, int out_id, ba_tensor_t *dz, int nreq,
                           const int *req, ba_tensor_t **gres, ba_tensor_t **keep, ba_grad_node_hook hook,
                           void *ctx, ba_error *err);

struct ba_grad_session {
    const ba_model_t *m;
    ba_tensor_t **vals;   /* every value at the base weights (refs) */
    int out_id;           /* the value the loss reads (ba_grad_loss_value) */
    unsigned char *feeds; /* per value: 1 when it reaches out_id (tangent walks skip the rest) */
    ba_loss_spec_t loss;  /* resolved: CE_ARGMAX carries its labels */
    int64_t *own_labels;
    int64_t row0; /* first row of this batch in labels/ref */
    double base_loss;
    /* Exact HVPs (grad_hvp.c), built on first use: */
    ba_tensor_t **base_grads; /* dL/dv of every float value at the base point */
    signed char *second; /* per value id: 1 = the tangent path from it has second-order terms, -1 unknown */
    float **cols;        /* per node: im2col of a Conv's base input (the weight tangent's columns) */
    int64_t cols_bytes;  /* held in cols (capped) */
};

/* Frees what grad_hvp.c added to a session. */
void ba_grad_hvp_session_free(ba_grad_session_t *s);

/* y = y_base + J(x − x_base) for a piecewise-linear op (Relu, LeakyRelu,
 * Clip, HardSigmoid, Abs, PRelu, MaxPool, GlobalMaxPool, Max, Min): the
 * op on its base point's linear piece (the central-difference HVP's frozen
 * pattern); HardSwish on its base region's polynomial (0, x²/6 + x/2, x). Returns 0 (and does nothing) for
 * any other op or when only some inputs changed in a way the rule does not cover. */
int ba_grad_frozen_forward(const ba_node_t *n, ba_tensor_t *const *base_in, ba_tensor_t *const *base_out,
                           ba_tensor_t *const *in, int nin, ba_tensor_t **out, ba_status *st, ba_error *err);

/* Reverse-walk hook (ctx: the session) of the central-difference HVP: the
 * ops of ba_grad_frozen_forward take their backward at the base point's
 * pattern (the Jacobian is constant on the piece, so the base inputs give
 * it), HardSwish its base region's formula at the shifted input; other ops
 * run their own backward. */
ba_status ba_grad_frozen_backward(void *ctx, int node, const ba_node_t *n, ba_tensor_t *const *in, int nin,
                                  ba_tensor_t *const *out, int nout, ba_tensor_t *const *dout,
                                  const unsigned char *need, ba_tensor_t **din, ba_error *err);

/* Float32 copy of t (any numeric dtype) broadcast to (ndim, shape); *owned
 * tells whether the caller frees the returned buffer (0: it is t's data). */
float *ba_grad_bcast_f32(const ba_node_t *n, const ba_tensor_t *t, int ndim, const int64_t *shape, int *owned,
                         ba_error *err);

#endif
