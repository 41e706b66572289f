/* Backward of the elementwise ops: broadcast arithmetic (Add Sub Mul Div Pow,
 * Sum Mean Max Min), Where, PRelu and the unary activations. A broadcast
 * input's gradient is the output-shaped gradient summed over the broadcast
 * axes (ba_grad_reduce_add). Rounding/comparison ops pass no gradient. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/broadcast.h"
#include "model/grad_internal.h"

static int same_shape(const ba_tensor_t *a, int ndim, const int64_t *shape) {
    return a->ndim == ndim && !memcmp(a->shape, shape, sizeof(int64_t) * (size_t)ndim);
}

static int is_f32t(const ba_tensor_t *t) {
    return t && t->dtype == BA_DT_F32;
}

/* Adds the output-shaped gradient t (Y's shape) into din[i] of in[i]'s shape. */
static ba_status add_reduced(ba_tensor_t **din, int i, const ba_tensor_t *x, const ba_tensor_t *Y,
                             const float *t, float scale, ba_error *err) {
    float *d = ba_grad_slot(din, i, x, err);
    if (!d) return err->code;
    ba_grad_reduce_add(t, Y->ndim, Y->shape, d, x->ndim, x->shape, scale);
    return BA_OK;
}

enum { B_ADD, B_SUB, B_MUL, B_DIV, B_POW };

/* Mul / Div with broadcast, a row of the broadcast walk at a time, without
 * materialising the broadcast operands or the output-shaped product: each
 * element's product or quotient is formed as in the generic path; a gradient
 * broadcast along the row is summed per row in double. */
static ba_status muldiv_rows(const ba_bcast_t *bc, ba_tensor_t *const *in, const ba_tensor_t *Y,
                             const float *g, const unsigned char *need, ba_tensor_t **din, int op,
                             ba_error *err) {
    const int64_t R = bc->row_len;
    const float *y = Y->data, *v[2] = {in[0]->data, in[1]->data};
    const int64_t rs[2] = {bc->strides[0][bc->ndim - 1], bc->strides[1][bc->ndim - 1]};
    for (int i = 0; i < 2; i++) {
        if (!need[i]) continue;
        float *d = ba_grad_slot(din, i, in[i], err);
        if (!d) return err->code;
        const int64_t rs_i = rs[i], rs_o = rs[1 - i], rs_b = rs[1];
        for (int64_t r = 0; r < bc->nrows; r++) {
            int64_t off[BA_BCAST_MAX_IN];
            ba_bcast_row(bc, r, off);
            const float *gr = g + r * R, *yr = y + r * R, *orow = v[1 - i] + off[1 - i],
                        *brow = v[1] + off[1];
            float *dr = d + off[i];
            double s = 0.0;
            /* one loop per case: a branch per element kept the loop scalar */
#define MD_ROW(T)                                                                                            \
    do {                                                                                                     \
        if (rs_i)                                                                                            \
            for (int64_t k = 0; k < R; k++) dr[k] += (T);                                                    \
        else                                                                                                 \
            for (int64_t k = 0; k < R; k++) s += (T);                                                        \
    } while (0)
            if (op == B_MUL && rs_o)
                MD_ROW(gr[k] * orow[k]);
            else if (op == B_MUL)
                MD_ROW(gr[k] * orow[0]);
            else if (i == 0 && rs_b)
                MD_ROW(gr[k] / brow[k]);
            else if (i == 0)
                MD_ROW(gr[k] / brow[0]);
            else if (rs_b)
                MD_ROW(-gr[k] * yr[k] / brow[k]);
            else
                MD_ROW(-gr[k] * yr[k] / brow[0]);
#undef MD_ROW
            if (!rs_i) dr[0] += (float)s;
        }
    }
    return BA_OK;
}

static ba_status binary_backward(const ba_node_t *n, ba_tensor_t *const *in, ba_tensor_t *const *out,
                                 ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                                 int op, ba_error *err) {
    const ba_tensor_t *A = in[0], *B = in[1], *Y = out[0];
    const float *g = dout[0]->data, *y = Y->data;
    const int64_t ne = Y->numel;
    if (op == B_ADD || op == B_SUB) {
        for (int i = 0; i < 2; i++) {
            if (!need[i]) continue;
            float s = (op == B_SUB && i == 1) ? -1.0f : 1.0f;
            if (s > 0 && same_shape(in[i], Y->ndim, Y->shape))
                BA_TRY(ba_grad_pass(din, i, in[i], dout[0], err));
            else
                BA_TRY(add_reduced(din, i, in[i], Y, g, s, err));
        }
        return BA_OK;
    }
    if (op == B_MUL && same_shape(A, Y->ndim, Y->shape) && same_shape(B, Y->ndim, Y->shape) && is_f32t(A) &&
        is_f32t(B)) { /* no broadcast: accumulate g·(other) straight into the slots */
        for (int i = 0; i < 2; i++) {
            if (!need[i]) continue;
            float *d = ba_grad_slot(din, i, in[i], err);
            if (!d) return err->code;
            const float *o = in[1 - i]->data;
            for (int64_t e = 0; e < ne; e++) d[e] += g[e] * o[e];
        }
        return BA_OK;
    }
    if ((op == B_MUL || op == B_DIV) && is_f32t(A) && is_f32t(B)) {
        const ba_tensor_t *ab[2] = {A, B};
        ba_bcast_t bc;
        if (ba_bcast_init_tensors(&bc, 2, ab, n->name, err) == BA_OK && bc.out_numel == ne)
            return muldiv_rows(&bc, in, Y, g, need, din, op, err);
        ba_error_clear(err);
    }
    int oa = 0, ob = 0;
    float *a = ba_grad_bcast_f32(n, A, Y->ndim, Y->shape, &oa, err);
    float *b = a ? ba_grad_bcast_f32(n, B, Y->ndim, Y->shape, &ob, err) : NULL;
    float *t = b ? ba_malloc((size_t)ne * sizeof(float) + 1, err) : NULL;
    ba_status st = t ? BA_OK : err->code;
    for (int i = 0; i < 2 && st == BA_OK; i++) {
        if (!need[i]) continue;
        switch (op) {
        case B_MUL:
            for (int64_t e = 0; e < ne; e++) t[e] = g[e] * (i == 0 ? b[e] : a[e]);
            break;
        case B_DIV:
            if (i == 0)
                for (int64_t e = 0; e < ne; e++) t[e] = g[e] / b[e];
            else
                for (int64_t e = 0; e < ne; e++) t[e] = -g[e] * y[e] / b[e];
            break;
        default: /* B_POW */
            if (i == 0)
                for (int64_t e = 0; e < ne; e++)
                    t[e] = b[e] == 2.0f ? 2.0f * g[e] * a[e] : g[e] * b[e] * powf(a[e], b[e] - 1.0f);
            else
                for (int64_t e = 0; e < ne; e++) t[e] = a[e] > 0.0f ? g[e] * y[e] * logf(a[e]) : 0.0f;
            break;
        }
        st = add_reduced(din, i, in[i], Y, t, 1.0f, err);
    }
    if (oa) free(a);
    if (ob) free(b);
    free(t);
    return st;
}

#define BINARY(name, op)                                                                                     \
    ba_status name(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out, int nout,   \
                   ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din, ba_error *err) {  \
        (void)nin;                                                                                           \
        (void)nout;                                                                                          \
        return binary_backward(n, in, out, dout, need, din, op, err);                                        \
    }
BINARY(ba_add_backward, B_ADD)
BINARY(ba_sub_backward, B_SUB)
BINARY(ba_mul_backward, B_MUL)
BINARY(ba_div_backward, B_DIV)
BINARY(ba_pow_backward, B_POW)

/* Sum / Mean of n inputs (broadcast): each gets dY (÷ n for Mean). Max / Min:
 * the first input equal to the output takes the gradient (PyTorch splits
 * ties; ties between different inputs are measure-zero in practice). */
ba_status ba_variadic_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                               int nout, ba_tensor_t *const *dout, const unsigned char *need,
                               ba_tensor_t **din, ba_error *err) {
    (void)nout;
    const ba_tensor_t *Y = out[0];
    const float *g = dout[0]->data, *y = Y->data;
    const int sel = !strcmp(n->op_type, "Max") || !strcmp(n->op_type, "Min");
    if (!sel) {
        float s = !strcmp(n->op_type, "Mean") ? 1.0f / (float)nin : 1.0f;
        for (int i = 0; i < nin; i++)
            if (need[i]) BA_TRY(add_reduced(din, i, in[i], Y, g, s, err));
        return BA_OK;
    }
    unsigned char *taken = ba_calloc((size_t)Y->numel + 1, 1, err);
    float *t = taken ? ba_malloc((size_t)Y->numel * sizeof(float) + 1, err) : NULL;
    ba_status st = t ? BA_OK : err->code;
    for (int i = 0; i < nin && st == BA_OK; i++) {
        int own = 0;
        float *x = ba_grad_bcast_f32(n, in[i], Y->ndim, Y->shape, &own, err);
        if (!x) {
            st = err->code;
            break;
        }
        for (int64_t e = 0; e < Y->numel; e++) {
            int hit = !taken[e] && x[e] == y[e];
            t[e] = hit ? g[e] : 0.0f;
            taken[e] |= hit;
        }
        if (own) free(x);
        if (need[i]) st = add_reduced(din, i, in[i], Y, t, 1.0f, err);
    }
    free(taken);
    free(t);
    return st;
}

/* Where(cond, X, Y): X gets dOut where cond, Y where not. */
ba_status ba_where_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                            int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                            ba_error *err) {
    (void)nin;
    (void)nout;
    const ba_tensor_t *Y = out[0];
    const float *g = dout[0]->data;
    int oc = 0;
    float *c = ba_grad_bcast_f32(n, in[0], Y->ndim, Y->shape, &oc, err);
    float *t = c ? ba_malloc((size_t)Y->numel * sizeof(float) + 1, err) : NULL;
    ba_status st = t ? BA_OK : err->code;
    for (int i = 1; i <= 2 && st == BA_OK; i++) {
        if (!need[i]) continue;
        for (int64_t e = 0; e < Y->numel; e++) t[e] = ((c[e] != 0.0f) == (i == 1)) ? g[e] : 0.0f;
        st = add_reduced(din, i, in[i], Y, t, 1.0f, err);
    }
    if (oc) free(c);
    free(t);
    return st;
}

/* PRelu: y = x > 0 ? x : slope·x, slope broadcast to x. */
ba_status ba_prelu_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                            int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                            ba_error *err) {
    (void)nin;
    (void)nout;
    const ba_tensor_t *X = in[0], *Y = out[0];
    const float *g = dout[0]->data, *x = X->data;
    int os = 0;
    float *s = ba_grad_bcast_f32(n, in[1], Y->ndim, Y->shape, &os, err);
    float *t = s ? ba_malloc((size_t)Y->numel * sizeof(float) + 1, err) : NULL;
    ba_status st = t ? BA_OK : err->code;
    if (st == BA_OK && need[0]) {
        for (int64_t e = 0; e < Y->numel; e++) t[e] = x[e] > 0.0f ? g[e] : g[e] * s[e];
        st = add_reduced(din, 0, X, Y, t, 1.0f, err);
    }
    if (st == BA_OK && need[1]) {
        for (int64_t e = 0; e < Y->numel; e++) t[e] = x[e] > 0.0f ? 0.0f : g[e] * x[e];
        st = add_reduced(din, 1, in[1], Y, t, 1.0f, err);
    }
    if (os) free(s);
    free(t);
    return st;
}

void ba_grad_clip_bounds(const ba_node_t *n, ba_tensor_t *const *in, int nin, float *lo, float *hi) {
    *lo = -INFINITY;
    *hi = INFINITY;
    if (n->opset < 11) {
        *lo = ba_node_attr_float(n, "min", -INFINITY);
        *hi = ba_node_attr_float(n, "max", INFINITY);
    } else {
        if (nin > 1 && in[1] && in[1]->numel) *lo = (float)ba_tensor_get_f64(in[1], 0);
        if (nin > 2 && in[2] && in[2]->numel) *hi = (float)ba_tensor_get_f64(in[2], 0);
    }
}

/* dx = g · f'(x) (written with y = f(x) where that is cheaper). */
ba_status ba_unary_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                            int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                            ba_error *err) {
    (void)nout;
    if (!need[0]) return BA_OK;
    const ba_tensor_t *X = in[0];
    const float *x = X->data, *y = out[0]->data, *g = dout[0]->data;
    float *d = ba_grad_slot(din, 0, X, err);
    if (!d) return err->code;
    const int64_t ne = X->numel;
    /* reached through the op table's row, so n->def is set */
    switch (n->def->id) {
    case BA_OP_RELU: /* from y: y != 0 iff x > 0, and it also holds for the HVP's frozen-mask forward */
        for (int64_t e = 0; e < ne; e++) d[e] += y[e] != 0.0f ? g[e] : 0.0f;
        break;
    case BA_OP_LEAKY_RELU: {
        float a = ba_node_attr_float(n, "alpha", BA_LEAKY_ALPHA);
        for (int64_t e = 0; e < ne; e++) d[e] += x[e] > 0.0f ? g[e] : a * g[e];
        break;
    }
    case BA_OP_SIGMOID:
        for (int64_t e = 0; e < ne; e++) d[e] += g[e] * y[e] * (1.0f - y[e]);
        break;
    case BA_OP_TANH:
        for (int64_t e = 0; e < ne; e++) d[e] += g[e] * (1.0f - y[e] * y[e]);
        break;
    case BA_OP_EXP:
        for (int64_t e = 0; e < ne; e++) d[e] += g[e] * y[e];
        break;
    case BA_OP_LOG:
        for (int64_t e = 0; e < ne; e++) d[e] += g[e] / x[e];
        break;
    case BA_OP_SQRT:
        for (int64_t e = 0; e < ne; e++) d[e] += 0.5f * g[e] / y[e];
        break;
    case BA_OP_ERF:
        for (int64_t e = 0; e < ne; e++) d[e] += g[e] * (float)BA_TWO_OVER_SQRT_PI * expf(-x[e] * x[e]);
        break;
    case BA_OP_NEG:
        for (int64_t e = 0; e < ne; e++) d[e] -= g[e];
        break;
    case BA_OP_ABS:
        for (int64_t e = 0; e < ne; e++) d[e] += x[e] > 0.0f ? g[e] : x[e] < 0.0f ? -g[e] : 0.0f;
        break;
    case BA_OP_RECIPROCAL:
        for (int64_t e = 0; e < ne; e++) d[e] -= g[e] * y[e] * y[e];
        break;
    case BA_OP_ELU: {
        float a = ba_node_attr_float(n, "alpha", BA_ELU_ALPHA);
        for (int64_t e = 0; e < ne; e++) d[e] += x[e] > 0.0f ? g[e] : g[e] * (y[e] + a);
        break;
    }
    case BA_OP_SELU: {
        float a = ba_node_attr_float(n, "alpha", BA_SELU_ALPHA),
              gm = ba_node_attr_float(n, "gamma", BA_SELU_GAMMA);
        for (int64_t e = 0; e < ne; e++) d[e] += x[e] > 0.0f ? gm * g[e] : g[e] * (y[e] + gm * a);
        break;
    }
    case BA_OP_HARD_SIGMOID: {
        float a = ba_node_attr_float(n, "alpha", BA_HSIG_ALPHA),
              b = ba_node_attr_float(n, "beta", BA_HSIG_BETA);
        for (int64_t e = 0; e < ne; e++) {
            float v = a * x[e] + b;
            d[e] += v > 0.0f && v < 1.0f ? a * g[e] : 0.0f;
        }
        break;
    }
    case BA_OP_HARD_SWISH: /* y = x·clamp(x/6 + 1/2, 0, 1) */
        for (int64_t e = 0; e < ne; e++)
            d[e] += x[e] <= -3.0f ? 0.0f : x[e] >= 3.0f ? g[e] : g[e] * (2.0f * x[e] + 3.0f) / 6.0f;
        break;
    case BA_OP_SOFTPLUS:
        for (int64_t e = 0; e < ne; e++) d[e] += g[e] / (1.0f + expf(-x[e]));
        break;
    case BA_OP_GELU: {
        const char *ap = ba_node_attr_string(n, "approximate", "none");
        if (!strcmp(ap, "tanh")) {
            const double k = sqrt(2.0 / M_PI), c = 0.044715;
            for (int64_t e = 0; e < ne; e++) {
                double v = x[e], u = k * (v + c * v * v * v), th = tanh(u);
                d[e] += (float)(g[e] *
                                (0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * k * (1.0 + 3.0 * c * v * v)));
            }
        } else {
            for (int64_t e = 0; e < ne; e++) {
                double v = x[e];
                d[e] += (float)(g[e] *
                                (0.5 * (1.0 + erf(v / M_SQRT2)) + v * BA_INV_SQRT_2PI * exp(-0.5 * v * v)));
            }
        }
        break;
    }
    case BA_OP_SIN:
        for (int64_t e = 0; e < ne; e++) d[e] += g[e] * cosf(x[e]);
        break;
    case BA_OP_COS:
        for (int64_t e = 0; e < ne; e++) d[e] -= g[e] * sinf(x[e]);
        break;
    case BA_OP_CLIP: { /* passes where min <= x <= max (PyTorch's clamp) */
        float lo, hi;
        ba_grad_clip_bounds(n, in, nin, &lo, &hi);
        for (int64_t e = 0; e < ne; e++) d[e] += x[e] >= lo && x[e] <= hi ? g[e] : 0.0f;
        break;
    }
    default: return ba_error_set(err, BA_ERR_UNSUPPORTED, "node %s: no backward for %s", n->name, n->op_type);
    }
    return BA_OK;
}

/* Identity, Dropout (inference), Cast float->float: dx = dy. */
ba_status ba_pass_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                           int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                           ba_error *err) {
    (void)n;
    (void)nin;
    (void)out;
    (void)nout;
    if (!need[0] || !dout[0]) return BA_OK;
    return ba_grad_pass(din, 0, in[0], dout[0], err);
}
