/* Exact Hessian-vector products by forward-over-reverse: a tangent (JVP)
 * forward of the nodes downstream of the perturbed constant, the loss's
 * second derivative, then backward.c's reverse walk with each op's
 * second-order term added. Piecewise-linear ops stay on the base point's
 * linear piece (what autograd's double backward differentiates); an op
 * without a rule here falls back to a local central difference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/grad_internal.h"
#include "model/kern_conv.h"
#include "model/ops.h"

/* Local central difference of an op without a tangent rule: the perturbed
 * inputs move by this fraction of their RMS. Measured on the opset-17 ViT
 * (LayerNormalization by this fallback) against the decomposed export's
 * exact HVP, worst relative error per step: 5e-3: 2.1e-3, 1e-3: 9.0e-5,
 * 3e-4: 4.4e-5, 1e-4: 9.8e-5 (truncation falls as step², float32 rounding
 * of the two evaluations grows as 1/step). */
#define FD_REL_STEP 3e-4
/* Inputs that are all zero get this absolute step scale instead. */
#define FD_MIN_SCALE 1e-3
#define ALL_INPUTS 0xFFFFFFFFu
/* Cap on the im2col columns a session keeps for the weight tangents of its
 * convs (bytes); past it a conv re-runs its im2col on every probe. */
#define COLS_CACHE_BYTES (256LL * 1024 * 1024)
/* Most inputs/outputs a node may have for the fixed-size slot arrays here. */
#define MAX_IO 64

typedef enum {
    R_UNSUPPORTED = 0, /* no backward at all: an error on the gradient path */
    R_NONE,            /* passes no gradient (Shape, Floor, Equal …): no tangent either */
    R_LINEAR,          /* jointly linear in its float inputs (mask) */
    R_BILINEAR,        /* Mul, MatMul; Gemm and Conv (bias: see the FD fallback) */
    R_UNARY,           /* y = f(x) elementwise: J = diag f'(x); second order f''(x)·tx·g */
    R_SELECT,          /* MaxPool, GlobalMaxPool, Max, Min: each output picks one input */
    R_BN,              /* BatchNormalization (inference): linear in X */
    R_DIV,             /* a / b */
    R_SOFTMAX,         /* Softmax: J = diag y − y yᵀ, symmetric */
    R_INSTNORM,        /* InstanceNormalization: per-plane statistics of X, scale and B per channel */
    R_FD,              /* anything else with a backward: local central difference */
    R_OWN,             /* the op's own tangent and second-order rules (ba_grad_rule_t) */
} rule_kind;

/* The rule kinds of the op table's HVP column (model/ops.h). */
static const rule_kind table_kind[] = {
    [BA_HVP_FD] = R_FD,       [BA_HVP_LINEAR] = R_LINEAR,   [BA_HVP_BILINEAR] = R_BILINEAR,
    [BA_HVP_UNARY] = R_UNARY, [BA_HVP_SELECT] = R_SELECT,   [BA_HVP_BN] = R_BN,
    [BA_HVP_DIV] = R_DIV,     [BA_HVP_SOFTMAX] = R_SOFTMAX, [BA_HVP_INSTNORM] = R_INSTNORM,
    [BA_HVP_OWN] = R_OWN,
};
_Static_assert(sizeof table_kind / sizeof table_kind[0] == BA_HVP_OWN + 1,
               "table_kind: one entry per ba_hvp_kind");

/* Unary ops that are linear on each piece: f'' = 0 (the frozen pattern). */
static int piecewise_linear(const ba_node_t *n) {
    return (ba_node_flags(n) & BA_OPF_PIECEWISE) != 0;
}

static int is_f32(const ba_tensor_t *t) {
    return t && t->dtype == BA_DT_F32;
}

/* The rule for node n when the inputs in `tmask` carry tangents. */
static rule_kind rule_of(const ba_node_t *n, unsigned tmask) {
    if (!ba_grad_known(n)) return R_UNSUPPORTED;
    const ba_op_def_t *d = n->def;
    if (!d->backward) return R_NONE;
    if (d->hvp == BA_HVP_OWN) return R_OWN;
    /* opset < 11 Pad: the pad value is an attribute, which a tangent must not carry */
    if (n->op == BA_OP_PAD && n->opset < 11 && ba_node_attr_float(n, "value", 0.0f) != 0.0f) return R_FD;
    if (d->hvp == BA_HVP_FD) return R_FD;
    return (tmask & ~d->hvp_mask) ? R_FD : table_kind[d->hvp];
}

/* Inputs covered by n's rule (0 when it has none). */
static unsigned rule_mask(const ba_node_t *n) {
    return n->def ? n->def->hvp_mask : 0u;
}

/* Whether node n has second-order terms (∂ backward / ∂ inputs ≠ 0) with tangents on tmask. */
static int has_second(const ba_node_t *n, rule_kind k, unsigned tmask) {
    switch (k) {
    case R_BILINEAR: return (tmask & 3u) == 3u;
    case R_UNARY: return !piecewise_linear(n);
    case R_DIV: return (tmask & 2u) != 0;
    case R_INSTNORM: return (tmask & 3u) != 0; /* B enters linearly */
    case R_SOFTMAX:
    case R_FD:
    case R_OWN: return 1;
    default: return 0;
    }
}

/* ---- small tensor helpers ---- */

static ba_tensor_t *zeros_like(const ba_tensor_t *t, ba_error *err) {
    return ba_tensor_new(BA_DT_F32, t->ndim, t->shape, err);
}

/* A float32 tensor of like's shape whose data the caller overwrites in full
 * (no zero fill: the tangent kernels below write every element). */
static ba_tensor_t *new_uninit(const ba_tensor_t *like, ba_error *err) {
    int64_t one = 1;
    size_t bytes = ((size_t)like->numel * sizeof(float) + 63) / 64 * 64;
    void *data = aligned_alloc(64, bytes ? bytes : 64);
    if (!data) {
        ba_error_set(err, BA_ERR_NOMEM, "out of memory (%zu bytes)", bytes);
        return NULL;
    }
    ba_tensor_t *t = ba_tensor_wrap(BA_DT_F32, like->ndim, like->ndim ? like->shape : &one, data, err);
    if (!t) {
        free(data);
        return NULL;
    }
    t->owns = 1; /* freed with the tensor, as ba_tensor_new's */
    return t;
}

/* Whether t may be written in place: held only by the caller, owning its data. */
static int exclusive(const ba_tensor_t *t) {
    return t && t->refs == 1 && t->owns && !t->base;
}

/* *acc += t (same element count), taking t over when *acc is empty; t is consumed. */
static ba_status accumulate(ba_tensor_t **acc, ba_tensor_t *t, ba_error *err) {
    if (!t) return BA_OK;
    if (!*acc) {
        *acc = t;
        return BA_OK;
    }
    float *a = ba_grad_slot(acc, 0, t, err); /* copies a shared tensor before writing */
    if (!a) {
        ba_tensor_unref(t);
        return err->code;
    }
    const float *b = t->data;
    for (int64_t e = 0; e < t->numel; e++) a[e] += b[e];
    ba_tensor_unref(t);
    return BA_OK;
}

/* Runs n's forward on in (nin inputs) into out[0..nout). */
static ba_status run_forward(const ba_node_t *n, ba_tensor_t **in, int nin, ba_tensor_t **out,
                             ba_error *err) {
    for (int j = 0; j < n->nout; j++) out[j] = NULL;
    ba_status st = n->def->forward(n, in, nin, out, n->nout, err);
    if (st != BA_OK)
        for (int j = 0; j < n->nout; j++) {
            ba_tensor_unref(out[j]);
            out[j] = NULL;
        }
    return st;
}

/* Keeps out[j] as tout[j] for the node's used float outputs, drops the rest. */
static void take_outputs(const ba_node_t *n, ba_tensor_t **out, ba_tensor_t **tout) {
    for (int j = 0; j < n->nout; j++) {
        if (n->outputs[j] >= 0 && is_f32(out[j]))
            tout[j] = out[j];
        else
            ba_tensor_unref(out[j]);
        out[j] = NULL;
    }
}

/* ---- selections on the base point's argmax ---- */

/* ty = tx at the first maximum of each window of x (MaxPool's choice). */
static ba_status maxpool_tangent(const ba_node_t *n, const ba_tensor_t *X, const ba_tensor_t *Y,
                                 const ba_tensor_t *TX, ba_tensor_t **ty, ba_error *err) {
    ba_kern_geom_t g;
    BA_TRY(ba_kern_pool_geom(n, X, &g, err));
    ba_tensor_t *T = zeros_like(Y, err);
    if (!T) return err->code;
    const int64_t IH = g.in[1], IW = g.in[2], ID = g.in[0], OD = g.out[0], OH = g.out[1], OW = g.out[2];
    const int64_t Pin = ID * IH * IW, P = OD * OH * OW, planes = X->shape[0] * X->shape[1];
    const float *x = X->data, *tx = TX->data;
    float *t = T->data;
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * Pin, *tp = tx + pl * Pin;
        for (int64_t od = 0; od < OD; od++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    int64_t bi = ba_kern_window_argmax(&g, xp, od, oh, ow);
                    if (bi >= 0) t[pl * P + (od * OH + oh) * OW + ow] = tp[bi];
                }
    }
    *ty = T;
    return BA_OK;
}

/* GlobalMaxPool: tx at the first maximum of each plane. */
static ba_status gmaxpool_tangent(const ba_tensor_t *X, const ba_tensor_t *Y, const ba_tensor_t *TX,
                                  ba_tensor_t **ty, ba_error *err) {
    ba_tensor_t *T = zeros_like(Y, err);
    if (!T) return err->code;
    const int64_t planes = X->shape[0] * X->shape[1], P = planes ? X->numel / planes : 0;
    const float *x = X->data, *tx = TX->data;
    float *t = T->data;
    for (int64_t pl = 0; pl < planes && P; pl++) {
        int64_t b = 0;
        for (int64_t p = 1; p < P; p++)
            if (x[pl * P + p] > x[pl * P + b]) b = p;
        t[pl] = tx[pl * P + b];
    }
    *ty = T;
    return BA_OK;
}

/* Max / Min of n broadcast inputs: the first input equal to the output wins (as variadic_backward). */
static ba_status maxmin_tangent(const ba_node_t *n, ba_tensor_t *const *in, int nin, const ba_tensor_t *Y,
                                ba_tensor_t *const *tin, ba_tensor_t **ty, ba_error *err) {
    ba_tensor_t *T = zeros_like(Y, err);
    unsigned char *taken = T ? ba_calloc((size_t)Y->numel + 1, 1, err) : NULL;
    ba_status st = taken ? BA_OK : err->code;
    const float *y = Y->data;
    float *t = T ? T->data : NULL;
    for (int i = 0; i < nin && st == BA_OK; i++) {
        if (!in[i]) continue;
        int ox = 0, ot = 0;
        float *x = ba_grad_bcast_f32(n, in[i], Y->ndim, Y->shape, &ox, err);
        float *tv = x && tin[i] ? ba_grad_bcast_f32(n, tin[i], Y->ndim, Y->shape, &ot, err) : NULL;
        if (!x || (tin[i] && !tv)) st = err->code;
        for (int64_t e = 0; st == BA_OK && e < Y->numel; e++)
            if (!taken[e] && x[e] == y[e]) {
                taken[e] = 1;
                t[e] = tv ? tv[e] : 0.0f;
            }
        if (ox) free(x);
        if (ot) free(tv);
    }
    free(taken);
    if (st != BA_OK) {
        ba_tensor_unref(T);
        return st;
    }
    *ty = T;
    return BA_OK;
}

/* ---- InstanceNormalization ---- */

/* One (n, c) plane of P elements: mean and rstd = 1/sqrt(var + eps). */
static void plane_stats(const float *x, int64_t P, float eps, double *mean, double *rstd) {
    double m = 0.0, v = 0.0;
    for (int64_t k = 0; k < P; k++) m += x[k];
    m /= (double)P;
    for (int64_t k = 0; k < P; k++) v += ((double)x[k] - m) * ((double)x[k] - m);
    *mean = m;
    *rstd = 1.0 / sqrt(v / (double)P + eps);
}

/* x̂'s tangent on a plane: tx̂ = rstd·(tx − mean(tx) − x̂·mean(x̂·tx)) into o; returns mean(x̂·tx). */
static double xhat_tangent(const float *x, const float *tx, int64_t P, double mean, double rstd, double *o) {
    double mt = 0.0, a = 0.0;
    for (int64_t k = 0; k < P; k++) {
        mt += tx[k];
        a += ((double)x[k] - mean) * rstd * tx[k];
    }
    mt /= (double)P;
    a /= (double)P;
    for (int64_t k = 0; k < P; k++) o[k] = rstd * ((double)tx[k] - mt - ((double)x[k] - mean) * rstd * a);
    return a;
}

/* ty = scale_c·tx̂ + tscale_c·x̂ + tB_c for X (N, C, *sp); tin[j] NULL: no tangent on input j. */
static ba_status instnorm_tangent(const ba_node_t *n, ba_tensor_t *const *in, int nin,
                                  ba_tensor_t *const *tin, ba_tensor_t **ty, ba_error *err) {
    const ba_tensor_t *X = in[0];
    if (nin < 3 || !in[1] || !in[2] || X->ndim < 2)
        return ba_error_set(err, BA_ERR_INPUT,
                            "node %s (InstanceNormalization): needs X (N, C, …), scale and B", n->name);
    const int64_t N = X->shape[0], C = X->shape[1], P = N * C > 0 ? X->numel / (N * C) : 0;
    const float eps = ba_node_attr_float(n, "epsilon", 1e-5f);
    ba_tensor_t *T = zeros_like(X, err);
    double *txh = T && P ? ba_malloc((size_t)P * sizeof(double), err) : NULL;
    if (!T || (P && !txh)) {
        ba_tensor_unref(T);
        return err->code;
    }
    const float *x = X->data, *sc = in[1]->data, *tx = tin[0] ? tin[0]->data : NULL;
    const float *ts = tin[1] ? tin[1]->data : NULL, *tb = tin[2] ? tin[2]->data : NULL;
    float *t = T->data;
    for (int64_t r = 0; r < N * C && P; r++) {
        const int64_t c = r % C;
        const float *xr = x + r * P;
        double mean, rstd;
        plane_stats(xr, P, eps, &mean, &rstd);
        if (tx) xhat_tangent(xr, tx + r * P, P, mean, rstd, txh);
        for (int64_t k = 0; k < P; k++)
            t[r * P + k] = (float)((tx ? sc[c] * txh[k] : 0.0) +
                                   (ts ? ts[c] * ((double)xr[k] - mean) * rstd : 0.0) + (tb ? tb[c] : 0.0f));
    }
    free(txh);
    *ty = T;
    return BA_OK;
}

/* Second-order part of InstanceNormalization's backward along (tx, tscale), g = base dL/dy, h = scale_c·g:
 * dx += −rstd²·a·(h − mean h − x̂·mean(h x̂)) − rstd·(tx̂·mean(h x̂) + x̂·mean(h tx̂))
 *       + tscale_c·rstd·(g − mean g − x̂·mean(g x̂)),  a = mean(x̂ tx);
 * dscale_c += Σ g·tx̂. */
static ba_status instnorm_second(const ba_node_t *n, ba_tensor_t *const *in, ba_tensor_t *const *tin,
                                 const ba_tensor_t *G, const unsigned char *need, ba_tensor_t **din,
                                 ba_error *err) {
    const ba_tensor_t *X = in[0];
    const int64_t N = X->shape[0], C = X->shape[1], P = N * C > 0 ? X->numel / (N * C) : 0;
    if (P == 0 || (!need[0] && !need[1])) return BA_OK;
    const float eps = ba_node_attr_float(n, "epsilon", 1e-5f);
    float *dx = need[0] ? ba_grad_slot(din, 0, X, err) : NULL;
    float *ds = need[1] && tin[0] ? ba_grad_slot(din, 1, in[1], err) : NULL;
    double *txh = ba_malloc((size_t)P * sizeof(double), err);
    if ((need[0] && !dx) || (need[1] && tin[0] && !ds) || !txh) {
        free(txh);
        return err->code;
    }
    const float *x = X->data, *g = G->data, *sc = in[1]->data, *tx = tin[0] ? tin[0]->data : NULL;
    const float *ts = tin[1] ? tin[1]->data : NULL;
    for (int64_t r = 0; r < N * C; r++) {
        const int64_t c = r % C;
        const float *xr = x + r * P, *gr = g + r * P;
        double mean, rstd;
        plane_stats(xr, P, eps, &mean, &rstd);
        double mg = 0.0, mgx = 0.0; /* mean g, mean g·x̂ */
        for (int64_t k = 0; k < P; k++) {
            mg += gr[k];
            mgx += gr[k] * ((double)xr[k] - mean) * rstd;
        }
        mg /= (double)P;
        mgx /= (double)P;
        double a = 0.0, mgt = 0.0; /* mean g·tx̂ */
        if (tx) {
            a = xhat_tangent(xr, tx + r * P, P, mean, rstd, txh);
            for (int64_t k = 0; k < P; k++) mgt += gr[k] * txh[k];
            if (ds) ds[c] += (float)mgt;
            mgt /= (double)P;
        }
        if (!dx) continue;
        const double s = sc[c], tsc = ts ? ts[c] : 0.0;
        float *dr = dx + r * P;
        for (int64_t k = 0; k < P; k++) {
            const double xh = ((double)xr[k] - mean) * rstd, base = gr[k] - mg - xh * mgx;
            double v = tsc * rstd * base;
            if (tx) v += -rstd * rstd * a * s * base - rstd * s * (txh[k] * mgx + xh * mgt);
            dr[k] += (float)v;
        }
    }
    free(txh);
    return BA_OK;
}

/* ---- the local central difference (ops without a rule) ---- */

/* Step h for inputs in ± h·tin: FD_REL_STEP of the perturbed inputs' RMS per
 * tangent RMS. 0 when every tangent is zero. */
static double fd_step(ba_tensor_t *const *in, ba_tensor_t *const *tin, int nin) {
    double sx = 0.0, st = 0.0;
    int64_t cnt = 0;
    for (int j = 0; j < nin; j++) {
        if (!tin[j]) continue;
        const float *x = in[j]->data, *t = tin[j]->data;
        for (int64_t e = 0; e < tin[j]->numel; e++) {
            sx += (double)x[e] * x[e];
            st += (double)t[e] * t[e];
        }
        cnt += tin[j]->numel;
    }
    if (st == 0.0 || cnt == 0) return 0.0;
    double scale = sqrt(sx / (double)cnt);
    if (scale == 0.0) scale = FD_MIN_SCALE;
    return FD_REL_STEP * scale / sqrt(st / (double)cnt);
}

/* xs[j] = in[j] + h·tin[j] where tin[j] is set, else in[j] (refs). */
static ba_status fd_inputs(ba_tensor_t *const *in, ba_tensor_t *const *tin, int nin, double h,
                           ba_tensor_t **xs, ba_error *err) {
    for (int j = 0; j < nin; j++) xs[j] = NULL;
    for (int j = 0; j < nin; j++) {
        if (!tin[j]) {
            xs[j] = in[j] ? ba_tensor_ref(in[j]) : NULL;
            continue;
        }
        xs[j] = zeros_like(in[j], err);
        if (!xs[j]) return err->code;
        const float *x = in[j]->data, *t = tin[j]->data;
        float *o = xs[j]->data;
        for (int64_t e = 0; e < in[j]->numel; e++) o[e] = (float)((double)x[e] + h * (double)t[e]);
    }
    return BA_OK;
}

static void unref_all(ba_tensor_t **t, int n) {
    for (int j = 0; j < n; j++) {
        ba_tensor_unref(t[j]);
        t[j] = NULL;
    }
}

/* ty = (f(x + h tx) − f(x − h tx)) / 2h. */
static ba_status fd_tangent(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *tin,
                            ba_tensor_t **tout, ba_error *err) {
    double h = fd_step(in, tin, nin);
    if (h == 0.0) return BA_OK;
    ba_tensor_t *xp[MAX_IO] = {0}, *xm[MAX_IO] = {0}, *yp[MAX_IO] = {0}, *ym[MAX_IO] = {0};
    ba_status st = fd_inputs(in, tin, nin, h, xp, err);
    if (st == BA_OK) st = fd_inputs(in, tin, nin, -h, xm, err);
    if (st == BA_OK) st = run_forward(n, xp, nin, yp, err);
    if (st == BA_OK) st = run_forward(n, xm, nin, ym, err);
    for (int j = 0; j < n->nout && st == BA_OK; j++) {
        if (n->outputs[j] < 0 || !is_f32(yp[j]) || !is_f32(ym[j])) continue;
        ba_tensor_t *t = zeros_like(yp[j], err);
        if (!t) {
            st = err->code;
            break;
        }
        const float *a = yp[j]->data, *b = ym[j]->data;
        float *o = t->data;
        for (int64_t e = 0; e < t->numel; e++) o[e] = (float)(((double)a[e] - b[e]) / (2.0 * h));
        tout[j] = t;
    }
    unref_all(xp, nin);
    unref_all(xm, nin);
    unref_all(yp, n->nout);
    unref_all(ym, n->nout);
    return st;
}

/* ---- tangent rules ---- */

static int same_shape(const ba_tensor_t *a, const ba_tensor_t *b) {
    return a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim);
}

/* Allocation-free paths for the commonest ops of a CNN's tangent: the
 * elementwise masks (Relu, Clip, LeakyRelu, HardSigmoid) written over their
 * input's tangent when it is not needed again, and Add/Sub of same-shaped
 * operands (a pass-through when only one carries a tangent). Returns 0 when
 * the node is not one of these cases (node_tangent's rules then apply). */
static int fast_tangent(const ba_node_t *n, rule_kind k, ba_tensor_t *const *in, int nin,
                        ba_tensor_t *const *out, ba_tensor_t *const *tin, unsigned steal, ba_tensor_t **tout,
                        ba_status *st, ba_error *err) {
    *st = BA_OK;
    if (k == R_UNARY && tin[0] && is_f32(in[0]) && is_f32(out[0]) && same_shape(in[0], out[0]) &&
        same_shape(tin[0], in[0])) {
        const int op = n->op;
        int relu = op == BA_OP_RELU, clip = op == BA_OP_CLIP, leaky = op == BA_OP_LEAKY_RELU;
        int hsig = op == BA_OP_HARD_SIGMOID;
        if (!relu && !clip && !leaky && !hsig) return 0;
        float lo = -INFINITY, hi = INFINITY, a = 0.0f, b = 0.0f;
        if (clip) {
            ba_grad_clip_bounds(n, in, nin, &lo, &hi);
        } else if (leaky) {
            a = ba_node_attr_float(n, "alpha", BA_LEAKY_ALPHA);
        } else if (hsig) {
            a = ba_node_attr_float(n, "alpha", BA_HSIG_ALPHA);
            b = ba_node_attr_float(n, "beta", BA_HSIG_BETA);
        }
        ba_tensor_t *T = (steal & 1u) && exclusive(tin[0]) ? ba_tensor_ref(tin[0]) : new_uninit(in[0], err);
        if (!T) {
            *st = err->code;
            return 1;
        }
        const float *x = in[0]->data, *y = out[0]->data, *t = tin[0]->data;
        float *o = T->data;
        const int64_t ne = in[0]->numel;
        /* the same conditions as unary_backward (grad_elementwise.c) */
        if (relu) {
#pragma omp simd
            for (int64_t e = 0; e < ne; e++) {
                const float tv = t[e]; /* loaded unconditionally: a select, so it vectorizes */
                o[e] = y[e] != 0.0f ? tv : 0.0f;
            }
        } else if (clip) {
#pragma omp simd
            for (int64_t e = 0; e < ne; e++) {
                const float tv = t[e], xv = x[e];
                o[e] = (xv >= lo) & (xv <= hi) ? tv : 0.0f;
            }
        } else if (leaky) {
#pragma omp simd
            for (int64_t e = 0; e < ne; e++) {
                const float tv = t[e];
                o[e] = x[e] > 0.0f ? tv : a * tv;
            }
        } else {
#pragma omp simd
            for (int64_t e = 0; e < ne; e++) {
                const float v = a * x[e] + b, tv = a * t[e];
                o[e] = (v > 0.0f) & (v < 1.0f) ? tv : 0.0f;
            }
        }
        tout[0] = T;
        return 1;
    }
    if (k == R_LINEAR && nin == 2 && (n->op == BA_OP_ADD || n->op == BA_OP_SUB) && is_f32(out[0])) {
        const int sub = n->op == BA_OP_SUB;
        for (int j = 0; j < 2; j++)
            if (tin[j] && !same_shape(tin[j], out[0])) return 0;
        if (!tin[1]) { /* d(a ± c) = da */
            tout[0] = ba_tensor_ref(tin[0]);
            return 1;
        }
        if (!tin[0] && !sub) {
            tout[0] = ba_tensor_ref(tin[1]);
            return 1;
        }
        if (!tin[0]) return 0;
        int s0 = (steal & 1u) && exclusive(tin[0]) && tin[0] != tin[1];
        ba_tensor_t *T = s0 ? ba_tensor_ref(tin[0]) : new_uninit(out[0], err);
        if (!T) {
            *st = err->code;
            return 1;
        }
        const float *p = tin[0]->data, *q = tin[1]->data;
        float *o = T->data;
        const int64_t ne = T->numel;
        if (sub) {
#pragma omp simd
            for (int64_t e = 0; e < ne; e++) o[e] = p[e] - q[e];
        } else {
#pragma omp simd
            for (int64_t e = 0; e < ne; e++) o[e] = p[e] + q[e];
        }
        tout[0] = T;
        return 1;
    }
    return 0;
}

/* Resize's tf_crop_and_resize writes extrapolation_value (an attribute, not
 * an input) where it samples outside X: affine in X, so its tangent is
 * f(tx) − f(0). */
static int extrapolates(const ba_node_t *n) {
    return n->op == BA_OP_RESIZE &&
           !strcmp(ba_node_attr_string(n, "coordinate_transformation_mode", ""), "tf_crop_and_resize") &&
           ba_node_attr_float(n, "extrapolation_value", 0.0f) != 0.0f;
}

/* *t −= f(0) for the affine op n (input 0 zeroed, the others as in). */
static ba_status minus_at_zero(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **t,
                               ba_error *err) {
    ba_tensor_t *io[MAX_IO], *res[MAX_IO], *z = zeros_like(in[0], err);
    if (!z) return err->code;
    for (int j = 0; j < nin; j++) io[j] = in[j];
    io[0] = z;
    ba_status st = run_forward(n, io, nin, res, err);
    if (st == BA_OK && (!res[0] || res[0]->numel != (*t)->numel))
        st = ba_error_set(err, BA_ERR_RUNTIME, "node %s (%s): tangent shape mismatch", n->name, n->op_type);
    float *d = st == BA_OK ? ba_grad_slot(t, 0, *t, err) : NULL;
    if (st == BA_OK && d) {
        const float *o = res[0]->data;
        for (int64_t e = 0; e < (*t)->numel; e++) d[e] -= o[e];
    } else if (st == BA_OK) {
        st = err->code;
    }
    unref_all(res, n->nout);
    ba_tensor_unref(z);
    return st;
}

/* tout[j] = J_n · tin for node n at base inputs in / outputs out (tin[j] NULL:
 * no tangent on input j). steal: inputs whose tangent this node may overwrite
 * (last use, held only here). tout[] must be NULL on entry. */
static ba_status node_tangent(const ba_node_t *n, rule_kind k, ba_tensor_t *const *in, int nin,
                              ba_tensor_t *const *out, ba_tensor_t *const *tin, unsigned steal,
                              ba_tensor_t **tout, ba_error *err) {
    ba_tensor_t *io[MAX_IO], *res[MAX_IO], *own[MAX_IO];
    ba_status st = BA_OK;
    if (nin > MAX_IO || n->nout > MAX_IO)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "node %s (%s): more than %d inputs or outputs", n->name,
                            n->op_type, MAX_IO);
    if (fast_tangent(n, k, in, nin, out, tin, steal, tout, &st, err)) return st;
    switch (k) {
    case R_LINEAR: {
        const unsigned mask = rule_mask(n);
        for (int j = 0; j < nin; j++) own[j] = NULL;
        for (int j = 0; j < nin; j++) {
            io[j] = in[j];
            if (tin[j]) {
                io[j] = tin[j];
            } else if (is_f32(in[j]) && j < 32 && (mask >> j & 1u)) {
                /* a float data input without a tangent contributes 0 (Concat, Add …) */
                own[j] = zeros_like(in[j], err);
                if (!own[j]) {
                    st = err->code;
                    break;
                }
                io[j] = own[j];
            }
        }
        if (st == BA_OK) st = run_forward(n, io, nin, res, err);
        if (st == BA_OK) take_outputs(n, res, tout);
        if (st == BA_OK && tout[0] && extrapolates(n)) st = minus_at_zero(n, in, nin, &tout[0], err);
        for (int j = 0; j < nin; j++) ba_tensor_unref(own[j]);
        return st;
    }
    case R_BILINEAR: {
        ba_tensor_t *acc = NULL;
        for (int side = 0; side < 2 && st == BA_OK; side++) {
            if (!tin[side]) continue;
            io[0] = side == 0 ? tin[0] : in[0];
            io[1] = side == 1 ? tin[1] : in[1];
            st = run_forward(n, io, 2, res, err); /* without the bias: the tangent of W·x + B is W·tx */
            if (st == BA_OK) {
                st = accumulate(&acc, res[0], err);
                for (int j = 1; j < n->nout; j++) ba_tensor_unref(res[j]);
            }
        }
        if (st == BA_OK)
            tout[0] = acc;
        else
            ba_tensor_unref(acc);
        return st;
    }
    case R_UNARY:
    case R_SOFTMAX: { /* diagonal (or symmetric) Jacobian: J·t = Jᵀ·t, the op's backward */
        if (in[0]->numel != out[0]->numel) return fd_tangent(n, in, nin, tin, tout, err);
        const ba_op_def_t *d = n->def;
        unsigned char need[MAX_IO] = {0};
        ba_tensor_t *dout[MAX_IO] = {0}, *din[MAX_IO] = {0};
        need[0] = 1;
        dout[0] = tin[0];
        st = d->backward(n, in, nin, out, n->nout, dout, need, din, err);
        if (st == BA_OK && din[0] &&
            (din[0]->ndim != out[0]->ndim ||
             memcmp(din[0]->shape, out[0]->shape, sizeof(int64_t) * (size_t)out[0]->ndim))) {
            ba_tensor_t *v = ba_tensor_view(din[0], out[0]->ndim, out[0]->shape, err);
            ba_tensor_unref(din[0]);
            din[0] = v;
            if (!v) st = err->code;
        }
        if (st == BA_OK)
            tout[0] = din[0];
        else
            unref_all(din, nin);
        for (int j = 1; j < nin; j++) ba_tensor_unref(din[j]);
        return st;
    }
    case R_SELECT:
        if (n->op == BA_OP_MAX_POOL) return maxpool_tangent(n, in[0], out[0], tin[0], &tout[0], err);
        if (n->op == BA_OP_GLOBAL_MAX_POOL) return gmaxpool_tangent(in[0], out[0], tin[0], &tout[0], err);
        return maxmin_tangent(n, in, nin, out[0], tin, &tout[0], err);
    case R_BN: { /* (tx − 0)·scale/sqrt(var + eps) + 0 */
        if (nin < 5) return fd_tangent(n, in, nin, tin, tout, err);
        ba_tensor_t *zb = zeros_like(in[2], err), *zm = zb ? zeros_like(in[3], err) : NULL;
        if (zm) {
            io[0] = tin[0];
            io[1] = in[1];
            io[2] = zb;
            io[3] = zm;
            io[4] = in[4];
            st = run_forward(n, io, 5, res, err);
            if (st == BA_OK) take_outputs(n, res, tout);
        } else {
            st = err->code;
        }
        ba_tensor_unref(zb);
        ba_tensor_unref(zm);
        return st;
    }
    case R_DIV: { /* ty = (ta − y·tb) / b */
        const ba_tensor_t *Y = out[0];
        int ob = 0, ota = 0, otb = 0;
        float *b = ba_grad_bcast_f32(n, in[1], Y->ndim, Y->shape, &ob, err);
        float *ta = b && tin[0] ? ba_grad_bcast_f32(n, tin[0], Y->ndim, Y->shape, &ota, err) : NULL;
        float *tb = b && tin[1] ? ba_grad_bcast_f32(n, tin[1], Y->ndim, Y->shape, &otb, err) : NULL;
        ba_tensor_t *T = b && (ta || !tin[0]) && (tb || !tin[1]) ? zeros_like(Y, err) : NULL;
        if (T) {
            const float *y = Y->data;
            float *t = T->data;
            for (int64_t e = 0; e < Y->numel; e++)
                t[e] = ((ta ? ta[e] : 0.0f) - (tb ? y[e] * tb[e] : 0.0f)) / b[e];
            tout[0] = T;
        } else {
            st = err->code;
        }
        if (ob) free(b);
        if (ota) free(ta);
        if (otb) free(tb);
        return st;
    }
    case R_INSTNORM: return instnorm_tangent(n, in, nin, tin, &tout[0], err);
    case R_FD: return fd_tangent(n, in, nin, tin, tout, err);
    case R_OWN: return n->def->tangent(n, in, nin, out, n->nout, tin, tout, err);
    default: return BA_OK;
    }
}

/* HardSwish's pieces: 0 for x <= -3, x for x >= 3, x(x + 3)/6 between. */
#define HSWISH_EDGE 3.0f
static int hswish_piece(float x) {
    return x <= -HSWISH_EDGE ? 0 : x >= HSWISH_EDGE ? 2 : 1;
}

int ba_grad_frozen_forward(const ba_node_t *n, ba_tensor_t *const *base_in, ba_tensor_t *const *base_out,
                           ba_tensor_t *const *in, int nin, ba_tensor_t **out, ba_status *st, ba_error *err) {
    rule_kind k = rule_of(n, 0);
    if (n->if_guard >= 0 && nin >= 1 && nin <= MAX_IO && in[0] != base_in[0]) { /* the base point's branch */
        ba_tensor_t *io[MAX_IO];
        for (int j = 0; j < nin; j++) io[j] = in[j];
        io[0] = base_in[0];
        *st = run_forward(n, io, nin, out, err);
        return 1;
    }
    if (n->op == BA_OP_HARD_SWISH && nin >= 1 && is_f32(in[0]) && is_f32(base_in[0]) &&
        in[0]->numel == base_in[0]->numel) {
        ba_tensor_t *y = zeros_like(in[0], err);
        *st = y ? BA_OK : err->code;
        if (y) {
            const float *x = in[0]->data, *xb = base_in[0]->data;
            float *o = y->data;
            for (int64_t e = 0; e < y->numel; e++) {
                int p = hswish_piece(xb[e]);
                o[e] = p == 0 ? 0.0f : p == 2 ? x[e] : x[e] * (x[e] + HSWISH_EDGE) / (2.0f * HSWISH_EDGE);
            }
            out[0] = y;
        }
        return 1;
    }
    if (!((k == R_UNARY && piecewise_linear(n)) || k == R_SELECT) || nin > MAX_IO) return 0;
    ba_tensor_t *d[MAX_IO] = {0}, *t[MAX_IO] = {0};
    const unsigned rmask = rule_mask(n);
    for (int j = 0; j < nin; j++) {
        if (in[j] == base_in[j]) continue;
        if (!is_f32(in[j]) || !is_f32(base_in[j]) || in[j]->numel != base_in[j]->numel || j >= 32 ||
            !(rmask >> j & 1u) || !base_out[0] || !is_f32(base_out[0])) {
            return 0; /* a change the rule does not cover: the caller runs the plain forward */
        }
    }
    *st = BA_OK;
    for (int j = 0; j < nin && *st == BA_OK; j++) {
        if (in[j] == base_in[j]) continue;
        d[j] = zeros_like(base_in[j], err);
        if (!d[j]) {
            *st = err->code;
            break;
        }
        const float *a = in[j]->data, *b = base_in[j]->data;
        float *o = d[j]->data;
        for (int64_t e = 0; e < in[j]->numel; e++) o[e] = a[e] - b[e];
    }
    if (*st == BA_OK) *st = node_tangent(n, k, base_in, nin, base_out, d, 0, t, err);
    if (*st == BA_OK) { /* y = y_base + J·Δx */
        ba_tensor_t *y = zeros_like(base_out[0], err);
        if (!y) {
            *st = err->code;
        } else {
            const float *yb = base_out[0]->data, *tv = t[0] ? t[0]->data : NULL;
            float *o = y->data;
            for (int64_t e = 0; e < y->numel; e++) o[e] = yb[e] + (tv ? tv[e] : 0.0f);
            out[0] = y;
            for (int j = 1; j < n->nout; j++) out[j] = base_out[j] ? ba_tensor_ref(base_out[j]) : NULL;
        }
    }
    unref_all(d, nin);
    unref_all(t, n->nout);
    return 1;
}

ba_status ba_grad_frozen_backward(void *ctx, int node, const ba_node_t *n, ba_tensor_t *const *in, int nin,
                                  ba_tensor_t *const *out, int nout, ba_tensor_t *const *dout,
                                  const unsigned char *need, ba_tensor_t **din, ba_error *err) {
    (void)node;
    const ba_grad_session_t *s = ctx;
    const ba_op_def_t *d = n->def;
    rule_kind k = rule_of(n, 0);
    if (((k == R_UNARY && piecewise_linear(n)) || k == R_SELECT) && nin <= MAX_IO && nout <= MAX_IO) {
        ba_tensor_t *bin[MAX_IO], *bout[MAX_IO];
        for (int j = 0; j < nin; j++) bin[j] = n->inputs[j] >= 0 ? s->vals[n->inputs[j]] : NULL;
        for (int j = 0; j < nout; j++) bout[j] = n->outputs[j] >= 0 ? s->vals[n->outputs[j]] : NULL;
        return d->backward(n, bin, nin, bout, nout, dout, need, din, err);
    }
    if (n->op == BA_OP_HARD_SWISH && need[0] && dout[0] && n->inputs[0] >= 0) {
        const ba_tensor_t *xb = s->vals[n->inputs[0]];
        if (is_f32(xb) && xb->numel == in[0]->numel) {
            float *dx = ba_grad_slot(din, 0, in[0], err);
            if (!dx) return err->code;
            const float *x = in[0]->data, *b = xb->data, *g = dout[0]->data;
            for (int64_t e = 0; e < in[0]->numel; e++) {
                int p = hswish_piece(b[e]);
                dx[e] += p == 0   ? 0.0f
                         : p == 2 ? g[e]
                                  : g[e] * (2.0f * x[e] + HSWISH_EDGE) / (2.0f * HSWISH_EDGE);
            }
            return BA_OK;
        }
    }
    return d->backward(n, in, nin, out, nout, dout, need, din, err);
}

/* ---- second-order terms (the tangent backward's hook) ---- */

typedef struct {
    ba_grad_session_t *s;
    ba_tensor_t **tan;           /* tangent of every value on the path */
    unsigned char *kinds;        /* rule per node (rule_kind), set by the tangent forward */
    const unsigned char *active; /* per node, or NULL for all: whose second-order terms are added */
} hook_ctx;

/* f''(x) of a smooth unary op into f2 (y = f(x)); pw: Pow's exponent broadcast to x. */
static void unary_second(const ba_node_t *n, const float *x, const float *y, const float *pw, int64_t ne,
                         float *f2) {
    const int op = n->op;
    if (op == BA_OP_SIGMOID)
        for (int64_t e = 0; e < ne; e++) f2[e] = y[e] * (1.0f - y[e]) * (1.0f - 2.0f * y[e]);
    else if (op == BA_OP_TANH)
        for (int64_t e = 0; e < ne; e++) f2[e] = -2.0f * y[e] * (1.0f - y[e] * y[e]);
    else if (op == BA_OP_EXP)
        for (int64_t e = 0; e < ne; e++) f2[e] = y[e];
    else if (op == BA_OP_LOG)
        for (int64_t e = 0; e < ne; e++) f2[e] = -1.0f / (x[e] * x[e]);
    else if (op == BA_OP_SQRT)
        for (int64_t e = 0; e < ne; e++) f2[e] = -0.25f / (y[e] * y[e] * y[e]);
    else if (op == BA_OP_ERF)
        for (int64_t e = 0; e < ne; e++)
            f2[e] = -2.0f * x[e] * (float)BA_TWO_OVER_SQRT_PI * expf(-x[e] * x[e]);
    else if (op == BA_OP_RECIPROCAL)
        for (int64_t e = 0; e < ne; e++) f2[e] = 2.0f * y[e] * y[e] * y[e];
    else if (op == BA_OP_ELU) {
        const float a = ba_node_attr_float(n, "alpha", BA_ELU_ALPHA);
        for (int64_t e = 0; e < ne; e++) f2[e] = x[e] > 0.0f ? 0.0f : y[e] + a;
    } else if (op == BA_OP_SELU) {
        const float a = ba_node_attr_float(n, "alpha", BA_SELU_ALPHA),
                    g = ba_node_attr_float(n, "gamma", BA_SELU_GAMMA);
        for (int64_t e = 0; e < ne; e++) f2[e] = x[e] > 0.0f ? 0.0f : y[e] + g * a;
    } else if (op == BA_OP_SOFTPLUS)
        for (int64_t e = 0; e < ne; e++) {
            double s = 1.0 / (1.0 + exp(-(double)x[e]));
            f2[e] = (float)(s * (1.0 - s));
        }
    else if (op == BA_OP_GELU) {
        if (!strcmp(ba_node_attr_string(n, "approximate", "none"), "tanh")) {
            const double k = sqrt(2.0 / M_PI), c = 0.044715;
            for (int64_t e = 0; e < ne; e++) {
                double v = x[e], u1 = k * (1.0 + 3.0 * c * v * v), u2 = 6.0 * k * c * v;
                double t = tanh(k * (v + c * v * v * v)), s = 1.0 - t * t;
                f2[e] = (float)(s * u1 + 0.5 * v * s * (u2 - 2.0 * t * u1 * u1));
            }
        } else {
            for (int64_t e = 0; e < ne; e++) {
                double v = x[e];
                f2[e] = (float)(BA_INV_SQRT_2PI * exp(-0.5 * v * v) * (2.0 - v * v));
            }
        }
    } else if (op == BA_OP_SIN)
        for (int64_t e = 0; e < ne; e++) f2[e] = -sinf(x[e]);
    else if (op == BA_OP_COS)
        for (int64_t e = 0; e < ne; e++) f2[e] = -cosf(x[e]);
    else if (op == BA_OP_HARD_SWISH) /* x²/6 + x/2 on (−3, 3) */
        for (int64_t e = 0; e < ne; e++) f2[e] = x[e] > -3.0f && x[e] < 3.0f ? 1.0f / 3.0f : 0.0f;
    else if (op == BA_OP_POW)
        for (int64_t e = 0; e < ne; e++) {
            const float p = pw[e];
            f2[e] = p == 2.0f ? 2.0f : p * (p - 1.0f) * powf(x[e], p - 2.0f);
        }
    else
        for (int64_t e = 0; e < ne; e++) f2[e] = 0.0f;
}

/* din[i] += (g-reduced) t over Y's broadcast shape. */
static ba_status add_to_input(ba_tensor_t **din, int i, const ba_tensor_t *x, const ba_tensor_t *Y,
                              const float *t, ba_error *err) {
    float *d = ba_grad_slot(din, i, x, err);
    if (!d) return err->code;
    ba_grad_reduce_add(t, Y->ndim, Y->shape, d, x->ndim, x->shape, 1.0f);
    return BA_OK;
}

/* The second-order part of t(din) for node n: (∂B/∂inputs · tangents)(g), g = base dL/d out. */
static ba_status second_order(hook_ctx *c, const ba_node_t *n, rule_kind k, ba_tensor_t *const *in, int nin,
                              ba_tensor_t *const *out, const unsigned char *need, ba_tensor_t **din,
                              ba_error *err) {
    ba_tensor_t *tin[MAX_IO], *gout[MAX_IO];
    unsigned tmask = 0;
    for (int j = 0; j < nin; j++) {
        tin[j] = n->inputs[j] >= 0 ? c->tan[n->inputs[j]] : NULL;
        if (tin[j] && j < 32) tmask |= 1u << j;
    }
    int anyg = 0;
    for (int j = 0; j < n->nout; j++) {
        gout[j] = n->outputs[j] >= 0 ? c->s->base_grads[n->outputs[j]] : NULL;
        anyg |= gout[j] != NULL;
    }
    if (!anyg || !has_second(n, k, tmask)) return BA_OK;
    const ba_op_def_t *d = n->def;
    ba_status st = BA_OK;
    switch (k) {
    case R_BILINEAR: { /* d(da) = B_a(tb)(g), d(db) = B_b(ta)(g) */
        for (int side = 0; side < 2 && st == BA_OK; side++) {
            if (!need[side]) continue;
            ba_tensor_t *io[2] = {side == 0 ? in[0] : tin[0], side == 1 ? in[1] : tin[1]};
            unsigned char nd[2] = {side == 0, side == 1};
            ba_tensor_t *dd[2] = {din[0], din[1]};
            st = d->backward(n, io, 2, out, n->nout, gout, nd, dd, err);
            din[0] = dd[0];
            din[1] = dd[1];
        }
        return st;
    }
    case R_UNARY: { /* f''(x)·tx·g */
        if (!need[0] || !gout[0] || !tin[0] || in[0]->numel != out[0]->numel) return BA_OK;
        const int64_t ne = in[0]->numel;
        float *f2 = ba_malloc((size_t)ne * sizeof(float) + 1, err);
        if (!f2) return err->code;
        int opw = 0;
        float *pw = NULL;
        if (n->op == BA_OP_POW) {
            pw = ba_grad_bcast_f32(n, in[1], out[0]->ndim, out[0]->shape, &opw, err);
            if (!pw) {
                free(f2);
                return err->code;
            }
        }
        unary_second(n, in[0]->data, out[0]->data, pw, ne, f2);
        float *dx = ba_grad_slot(din, 0, in[0], err);
        if (dx) {
            const float *t = tin[0]->data, *g = gout[0]->data;
            for (int64_t e = 0; e < ne; e++) dx[e] += f2[e] * t[e] * g[e];
        } else {
            st = err->code;
        }
        if (opw) free(pw);
        free(f2);
        return st;
    }
    case R_DIV: { /* da: −g·tb/b²; db: −g·ty/b + g·y·tb/b² */
        const ba_tensor_t *Y = out[0];
        ba_tensor_t *ty = n->outputs[0] >= 0 ? c->tan[n->outputs[0]] : NULL;
        int ob = 0, otb = 0;
        float *b = ba_grad_bcast_f32(n, in[1], Y->ndim, Y->shape, &ob, err);
        float *tb = b ? ba_grad_bcast_f32(n, tin[1], Y->ndim, Y->shape, &otb, err) : NULL;
        float *t = tb ? ba_malloc((size_t)Y->numel * sizeof(float) + 1, err) : NULL;
        st = t ? BA_OK : err->code;
        const float *g = gout[0]->data, *y = Y->data, *tyv = ty ? ty->data : NULL;
        if (st == BA_OK && need[0]) {
            for (int64_t e = 0; e < Y->numel; e++) t[e] = -g[e] * tb[e] / (b[e] * b[e]);
            st = add_to_input(din, 0, in[0], Y, t, err);
        }
        if (st == BA_OK && need[1]) {
            for (int64_t e = 0; e < Y->numel; e++)
                t[e] = (-g[e] * (tyv ? tyv[e] : 0.0f) + g[e] * y[e] * tb[e] / b[e]) / b[e];
            st = add_to_input(din, 1, in[1], Y, t, err);
        }
        if (ob) free(b);
        if (otb) free(tb);
        free(t);
        return st;
    }
    case R_SOFTMAX: { /* ty⊙(g − Σ y g) − y⊙Σ ty g */
        ba_tensor_t *ty = n->outputs[0] >= 0 ? c->tan[n->outputs[0]] : NULL;
        if (!need[0] || !ty || !gout[0]) return BA_OK;
        int64_t outer, len, inner;
        ba_grad_softmax_layout(n, in[0], &outer, &len, &inner);
        float *dx = ba_grad_slot(din, 0, in[0], err);
        if (!dx) return err->code;
        const float *y = out[0]->data, *g = gout[0]->data, *t = ty->data;
        for (int64_t o = 0; o < outer; o++)
            for (int64_t i = 0; i < inner; i++) {
                const int64_t base = o * len * inner + i;
                double s1 = 0.0, s2 = 0.0;
                for (int64_t q = 0; q < len; q++) {
                    int64_t e = base + q * inner;
                    s1 += (double)y[e] * g[e];
                    s2 += (double)t[e] * g[e];
                }
                for (int64_t q = 0; q < len; q++) {
                    int64_t e = base + q * inner;
                    dx[e] += (float)(t[e] * (g[e] - s1) - y[e] * s2);
                }
            }
        return BA_OK;
    }
    case R_INSTNORM:
        if (!gout[0] || nin < 3) return BA_OK;
        return instnorm_second(n, in, tin, gout[0], need, din, err);
    case R_FD: { /* (B(x + h tx)(g) − B(x − h tx)(g)) / 2h */
        double h = fd_step(in, tin, nin);
        if (h == 0.0) return BA_OK;
        ba_tensor_t *xs[MAX_IO], *ys[MAX_IO], *dd[2][MAX_IO];
        for (int side = 0; side < 2; side++)
            for (int j = 0; j < nin; j++) dd[side][j] = NULL;
        for (int side = 0; side < 2 && st == BA_OK; side++) {
            st = fd_inputs(in, tin, nin, side ? -h : h, xs, err);
            if (st == BA_OK)
                st = run_forward(n, xs, nin, ys, err);
            else
                for (int j = 0; j < n->nout; j++) ys[j] = NULL;
            if (st == BA_OK) st = d->backward(n, xs, nin, ys, n->nout, gout, need, dd[side], err);
            unref_all(xs, nin);
            unref_all(ys, n->nout);
        }
        for (int j = 0; j < nin && st == BA_OK; j++) {
            if (!need[j] || (!dd[0][j] && !dd[1][j])) continue;
            float *dx = ba_grad_slot(din, j, in[j], err);
            if (!dx) {
                st = err->code;
                break;
            }
            const float *p = dd[0][j] ? dd[0][j]->data : NULL, *m = dd[1][j] ? dd[1][j]->data : NULL;
            for (int64_t e = 0; e < in[j]->numel; e++)
                dx[e] += (float)(((p ? (double)p[e] : 0.0) - (m ? (double)m[e] : 0.0)) / (2.0 * h));
        }
        unref_all(dd[0], nin);
        unref_all(dd[1], nin);
        return st;
    }
    case R_OWN: return n->def->second(n, in, nin, out, n->nout, tin, gout, need, din, err);
    default: return BA_OK;
    }
}

static ba_status tangent_hook(void *vctx, int node, const ba_node_t *n, ba_tensor_t *const *in, int nin,
                              ba_tensor_t *const *out, int nout, ba_tensor_t *const *dout,
                              const unsigned char *need, ba_tensor_t **din, ba_error *err) {
    hook_ctx *c = vctx;
    const ba_op_def_t *d = n->def;
    BA_TRY(d->backward(n, in, nin, out, nout, dout, need, din, err)); /* B(base)(t dout) */
    if (c->active && !c->active[node]) return BA_OK;
    return second_order(c, n, (rule_kind)c->kinds[node], in, nin, out, need, din, err);
}

/* ---- the HVP ---- */

void ba_grad_hvp_session_free(ba_grad_session_t *s) {
    if (s->base_grads)
        for (int v = 0; v < s->m->nvalues; v++) ba_tensor_unref(s->base_grads[v]);
    for (int i = 0; s->cols && i < s->m->nnodes; i++) free(s->cols[i]);
    free(s->base_grads);
    free(s->second);
    free(s->cols);
    s->base_grads = NULL;
    s->second = NULL;
    s->cols = NULL;
}

/* Tangent of a Conv whose weight alone is perturbed: tY = tW ⊛ X (no bias),
 * one sgemm over X's im2col columns, which are the same for every probe and
 * so kept in the session (all images side by side, COLS_CACHE_BYTES in all).
 * Returns 0 when the conv is not a plain one (group != 1) or the columns do
 * not fit; node_tangent's rule then runs the conv kernel. */
static int conv_w_tangent(ba_grad_session_t *s, int node, const ba_node_t *n, ba_tensor_t *const *in,
                          const ba_tensor_t *Y, const ba_tensor_t *tw, ba_tensor_t **tout, ba_status *st,
                          ba_error *err) {
    const ba_tensor_t *X = in[0];
    *st = BA_OK;
    if (!is_f32(X) || !is_f32(Y) || X->ndim < 3 || X->ndim > 2 + BA_KERN_MAX_SP || tw->ndim != X->ndim ||
        ba_node_attr_int(n, "group", 1) != 1 || tw->shape[1] != X->shape[1])
        return 0;
    const int nsp = X->ndim - 2;
    ba_kern_geom_t g;
    ba_error e2 = {0};
    if (ba_kern_geom_make(n, nsp, X->shape + 2, tw->shape + 2, 0, &g, &e2) != BA_OK) return 0;
    const int64_t N = X->shape[0], C = X->shape[1], M = tw->shape[0];
    const int64_t Pin = g.in[0] * g.in[1] * g.in[2], P = g.out[0] * g.out[1] * g.out[2];
    const int64_t K = C * g.k[0] * g.k[1] * g.k[2], ld = N * P;
    if (Y->numel != N * M * P || ld == 0 || K == 0) return 0;
    if (!s->cols) {
        s->cols = ba_calloc((size_t)s->m->nnodes + 1, sizeof *s->cols, err);
        if (!s->cols) {
            *st = err->code;
            return 1;
        }
    }
    if (!s->cols[node]) {
        const int64_t bytes = K * ld * (int64_t)sizeof(float);
        if (s->cols_bytes + bytes > COLS_CACHE_BYTES) return 0;
        float *c = ba_malloc((size_t)bytes, err);
        if (!c) {
            *st = err->code;
            return 1;
        }
        const float *x = X->data;
        for (int64_t i = 0; i < N; i++) ba_kern_im2col(x + i * C * Pin, C, &g, c + i * P, ld);
        s->cols[node] = c;
        s->cols_bytes += bytes;
    }
    ba_tensor_t *T = new_uninit(Y, err);
    float *tmp = T && N > 1 ? ba_malloc((size_t)(M * ld) * sizeof(float), err) : NULL;
    if (!T || (N > 1 && !tmp)) {
        ba_tensor_unref(T);
        *st = err->code;
        return 1;
    }
    float *dst = N > 1 ? tmp : T->data;
    /* (M, N·P) = tW (M, K) · cols (K, N·P) */
    ba_kern_sgemm(0, 0, M, ld, K, 1.0f, tw->data, K, s->cols[node], ld, 0.0f, dst, ld);
    if (N > 1) { /* images side by side -> (N, M, P) */
        float *y = T->data;
        for (int64_t i = 0; i < N; i++)
            for (int64_t m = 0; m < M; m++)
                memcpy(y + (i * M + m) * P, tmp + m * ld + i * P, (size_t)P * sizeof(float));
        free(tmp);
    }
    *tout = T;
    return 1;
}

/* Whether node n's outputs reach the value the loss reads (nodes past it, such
 * as an output Softmax under a loss on its logits, are off every path). */
static int node_feeds(const ba_grad_session_t *s, const ba_node_t *n) {
    for (int j = 0; j < n->nout; j++)
        if (n->outputs[j] >= 0 && s->feeds[n->outputs[j]]) return 1;
    return 0;
}

/* Walks the tangent forward from the values marked in has (grown in place):
 * 1 when a node on its path has a second-order term. */
static int tangent_meets_second(const ba_grad_session_t *s, unsigned char *has) {
    const ba_model_t *m = s->m;
    for (int i = 0; i < m->nnodes; i++) {
        const ba_node_t *n = &m->nodes[i];
        unsigned tmask = 0;
        for (int j = 0; j < n->nin; j++)
            if (n->inputs[j] >= 0 && has[n->inputs[j]]) tmask |= j < 32 ? 1u << j : 0u;
        if (!tmask || !ba_grad_node_ran(n, s->vals) || !node_feeds(s, n)) continue;
        rule_kind k = rule_of(n, tmask);
        if (k == R_NONE || k == R_UNSUPPORTED) continue;
        if (has_second(n, k, tmask)) return 1;
        for (int j = 0; j < n->nout; j++)
            if (n->outputs[j] >= 0 && is_f32(s->vals[n->outputs[j]])) has[n->outputs[j]] = 1;
    }
    return 0;
}

/* Whether the tangent path from `value` has second-order terms (graph only, cached). */
static ba_status path_second(ba_grad_session_t *s, int value, int *out, ba_error *err) {
    const ba_model_t *m = s->m;
    if (!s->second) {
        s->second = ba_malloc((size_t)m->nvalues + 1, err);
        if (!s->second) return err->code;
        memset(s->second, -1, (size_t)m->nvalues + 1);
    }
    if (s->second[value] >= 0) {
        *out = s->second[value];
        return BA_OK;
    }
    unsigned char *has = ba_calloc((size_t)m->nvalues + 1, 1, err);
    if (!has) return err->code;
    has[value] = 1;
    int sec = tangent_meets_second(s, has);
    free(has);
    s->second[value] = (signed char)sec;
    *out = sec;
    return BA_OK;
}

/* Tangents of every value downstream of `value` for the probe tv (a tensor
 * of the constant's shape). keep_all = 0 frees each tangent after its last
 * use (the output's is kept). kinds (nnodes, or NULL) gets each node's rule. */
static ba_status tangent_forward(ba_grad_session_t *s, int nseed, const int *seeds, ba_tensor_t *const *tvs,
                                 ba_tensor_t **tan, int keep_all, unsigned char *kinds, ba_error *err) {
    const ba_model_t *m = s->m;
    int *last = NULL;
    if (!keep_all) {
        last = ba_malloc((size_t)m->nvalues * sizeof *last + 1, err);
        if (!last) return err->code;
        for (int v = 0; v < m->nvalues; v++) last[v] = -1;
        for (int i = 0; i < m->nnodes; i++)
            for (int j = 0; j < m->nodes[i].nin; j++)
                if (m->nodes[i].inputs[j] >= 0) last[m->nodes[i].inputs[j]] = i;
    }
    for (int k = 0; k < nseed; k++) tan[seeds[k]] = ba_tensor_ref(tvs[k]);
    ba_status st = BA_OK;
    ba_tensor_t *in[MAX_IO], *out[MAX_IO], *tin[MAX_IO], *tout[MAX_IO];
    /* Unsupported ops on the path are named by the backward's check when it
     * runs; here (tangent-only vhv) they are an error of their own. */
    for (int i = 0; i < m->nnodes && st == BA_OK; i++) {
        const ba_node_t *n = &m->nodes[i];
        if (kinds) kinds[i] = R_NONE;
        if (!ba_grad_node_ran(n, s->vals)) continue; /* a branch not taken */
        if (!node_feeds(s, n)) continue;             /* past the loss's value */
        unsigned tmask = 0;
        int any = 0;
        if (n->nin > MAX_IO || n->nout > MAX_IO) {
            for (int j = 0; j < n->nin; j++) any |= n->inputs[j] >= 0 && tan[n->inputs[j]];
            if (any)
                st = ba_error_set(err, BA_ERR_UNSUPPORTED,
                                  "%s: node '%s' (%s) has more than %d inputs or outputs", m->path, n->name,
                                  n->op_type, MAX_IO);
            continue;
        }
        for (int j = 0; j < n->nin; j++) {
            int id = n->inputs[j];
            in[j] = id >= 0 ? s->vals[id] : NULL;
            tin[j] = id >= 0 && is_f32(in[j]) ? tan[id] : NULL;
            if (tin[j]) {
                any = 1;
                if (j < 32) tmask |= 1u << j;
            }
        }
        if (!any) continue;
        rule_kind k = rule_of(n, tmask);
        if (kinds) kinds[i] = (unsigned char)k;
        if (k == R_UNSUPPORTED) {
            st = ba_error_set(err, BA_ERR_UNSUPPORTED,
                              "%s: no backward for %s (node '%s') on the gradient path", m->path, n->op_type,
                              n->name);
            break;
        }
        if (k != R_NONE) {
            for (int j = 0; j < n->nout; j++) {
                out[j] = n->outputs[j] >= 0 ? s->vals[n->outputs[j]] : NULL;
                tout[j] = NULL;
            }
            unsigned steal = 0;
            for (int j = 0; last && j < n->nin && j < 32; j++) {
                int id = n->inputs[j], twice = 0;
                for (int q = 0; q < n->nin; q++) twice |= q != j && n->inputs[q] == id;
                int seed = 0;
                for (int q = 0; q < nseed; q++) seed |= seeds[q] == id;
                if (tin[j] && last[id] == i && id != s->out_id && !seed && !twice) steal |= 1u << j;
            }
            /* drop the table's ref so that the kernel's is the only one */
            for (int j = 0; j < n->nin && j < 32; j++)
                if (steal >> j & 1u) tan[n->inputs[j]] = NULL;
            if (!(k == R_BILINEAR && tmask == 2u && n->op == BA_OP_CONV &&
                  conv_w_tangent(s, i, n, in, out[0], tin[1], &tout[0], &st, err)))
                st = node_tangent(n, k, in, n->nin, out, tin, steal, tout, err);
            for (int j = 0; j < n->nin && j < 32; j++)
                if (steal >> j & 1u) ba_tensor_unref(tin[j]);
            for (int j = 0; j < n->nout; j++) {
                if (st == BA_OK && n->outputs[j] >= 0 && tout[j]) {
                    ba_tensor_unref(tan[n->outputs[j]]);
                    tan[n->outputs[j]] = tout[j];
                } else {
                    ba_tensor_unref(tout[j]);
                }
            }
            if (st != BA_OK)
                ba_error_prefix(err, "%s: tangent of node '%s' (%s)", m->path, n->name, n->op_type);
        }
        if (last)
            for (int j = 0; j < n->nin; j++) {
                int id = n->inputs[j];
                if (id >= 0 && last[id] == i && id != s->out_id && tan[id]) {
                    ba_tensor_unref(tan[id]);
                    tan[id] = NULL;
                }
            }
    }
    free(last);
    return st;
}

/* dL/dv for every float value at the base point (once per session). */
static ba_status ensure_base_grads(ba_grad_session_t *s, ba_error *err) {
    if (s->base_grads) return BA_OK;
    const ba_model_t *m = s->m;
    const ba_tensor_t *z = s->vals[s->out_id];
    ba_tensor_t **keep = ba_calloc((size_t)m->nvalues + 1, sizeof *keep, err);
    ba_tensor_t *dz = keep ? zeros_like(z, err) : NULL;
    ba_status st = dz ? BA_OK : err->code;
    double l;
    if (st == BA_OK) st = ba_loss_eval(&s->loss, z, s->row0, 1.0, &l, dz->data, err);
    if (st == BA_OK) st = ba_grad_backward(m, s->vals, s->out_id, dz, 0, NULL, NULL, keep, NULL, NULL, err);
    if (keep && st == BA_OK && !keep[s->out_id]) keep[s->out_id] = ba_tensor_ref(dz);
    ba_tensor_unref(dz);
    if (st != BA_OK) {
        for (int v = 0; keep && v < m->nvalues; v++) ba_tensor_unref(keep[v]);
        free(keep);
        return st;
    }
    s->base_grads = keep;
    return BA_OK;
}

static ba_status check_value(const ba_grad_session_t *s, int value, ba_error *err) {
    const ba_model_t *m = s->m;
    if (value < 0 || value >= m->nvalues || !m->values[value].constant)
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: gradient requested for value id %d, which is not a constant", m->path,
                            value);
    if (!is_f32(s->vals[value]))
        return ba_error_set(err, BA_ERR_INPUT, "%s: gradient requested for '%s', which is not float32",
                            m->path, m->values[value].name);
    return BA_OK;
}

/* Whether the tangent path from the seeds has second-order terms: a single
 * seed's answer is cached; with several, a bilinear node may meet two tangents. */
static ba_status seeds_second(ba_grad_session_t *s, int nseed, const int *seeds, int *out, ba_error *err) {
    if (nseed == 1) return path_second(s, seeds[0], out, err);
    const ba_model_t *m = s->m;
    unsigned char *has = ba_calloc((size_t)m->nvalues + 1, 1, err);
    if (!has) return err->code;
    for (int k = 0; k < nseed; k++) has[seeds[k]] = 1;
    int sec = tangent_meets_second(s, has);
    free(has);
    *out = sec;
    return BA_OK;
}

static ba_status check_values(const ba_grad_session_t *s, int nval, const int *values, ba_error *err) {
    for (int k = 0; k < nval; k++) {
        BA_TRY(check_value(s, values[k], err));
        for (int j = 0; j < k; j++)
            if (values[j] == values[k])
                return ba_error_set(err, BA_ERR_INPUT, "%s: HVP: constant '%s' listed twice", s->m->path,
                                    s->m->values[values[k]].name);
    }
    return BA_OK;
}

/* For the probe v (v[k] on constant values[k], the others 0): hv_out[k] =
 * (Hv)_k when hv_out is non-NULL, and *vhv = vᵀHv when non-NULL, H the
 * Hessian over all the listed constants together. */
static ba_status hvp_exact(ba_grad_session_t *s, int nval, const int *values, const float *const *v,
                           float *const *hv_out, double *vhv, ba_error *err) {
    BA_TRY(check_values(s, nval, values, err));
    const ba_model_t *m = s->m;
    int sec = 0;
    BA_TRY(seeds_second(s, nval, values, &sec, err));
    if (sec) BA_TRY(ensure_base_grads(s, err));
    ba_tensor_t **tan = ba_calloc((size_t)m->nvalues + 1, sizeof *tan, err);
    unsigned char *kinds = tan ? ba_calloc((size_t)m->nnodes + 1, 1, err) : NULL;
    ba_tensor_t **tv = kinds ? ba_calloc((size_t)nval + 1, sizeof *tv, err) : NULL;
    ba_tensor_t **g = tv ? ba_calloc((size_t)nval + 1, sizeof *g, err) : NULL;
    ba_status st = g ? BA_OK : err->code;
    for (int k = 0; k < nval && st == BA_OK; k++) {
        const ba_tensor_t *W = s->vals[values[k]];
        tv[k] = ba_tensor_wrap(BA_DT_F32, W->ndim, W->shape, (void *)v[k], err);
        if (!tv[k]) st = err->code;
    }
    ba_tensor_t *tdz = NULL;
    if (st == BA_OK) st = tangent_forward(s, nval, values, tv, tan, sec, kinds, err);
    const ba_tensor_t *z = s->vals[s->out_id], *tz = tan ? tan[s->out_id] : NULL;
    double q = 0.0;
    if (st == BA_OK && tz) {
        tdz = zeros_like(z, err);
        st = tdz ? ba_loss_hvp(&s->loss, z, s->row0, tz->data, tdz->data, &q, err) : err->code;
    }
    if (vhv && st == BA_OK && !sec) *vhv = q; /* no second-order terms: vᵀHv = (Jv)ᵀ ∇²L (Jv) */
    if (st == BA_OK && (hv_out || (vhv && sec))) {
        if (tdz) {
            hook_ctx c = {s, tan, kinds, NULL};
            st = ba_grad_backward(m, s->vals, s->out_id, tdz, nval, values, g, NULL,
                                  sec ? tangent_hook : NULL, &c, err);
        }
        double d = 0.0;
        for (int k = 0; k < nval && st == BA_OK; k++) {
            const float *gv = g[k] ? g[k]->data : NULL;
            const int64_t ne = s->vals[values[k]]->numel;
            for (int64_t i = 0; i < ne; i++) {
                float h = gv ? gv[i] : 0.0f;
                if (hv_out) hv_out[k][i] = h;
                d += (double)v[k][i] * h;
            }
        }
        if (st == BA_OK && vhv && sec) *vhv = d;
    }
    for (int k = 0; g && k < nval; k++) ba_tensor_unref(g[k]);
    for (int k = 0; tv && k < nval; k++) ba_tensor_unref(tv[k]);
    ba_tensor_unref(tdz);
    for (int i = 0; tan && i < m->nvalues; i++) ba_tensor_unref(tan[i]);
    free(g);
    free(tv);
    free(tan);
    free(kinds);
    return st;
}

ba_status ba_grad_session_hvp_multi(ba_grad_session_t *s, int nval, const int *values, const float *const *v,
                                    float *const *hv_out, ba_error *err) {
    return hvp_exact(s, nval, values, v, hv_out, NULL, err);
}

ba_status ba_grad_session_hvp(ba_grad_session_t *s, int value, const float *v, float *hv_out, ba_error *err) {
    return hvp_exact(s, 1, &value, &v, &hv_out, NULL, err);
}

ba_status ba_grad_session_vhv(ba_grad_session_t *s, int value, const float *v, double *vhv, ba_error *err) {
    return hvp_exact(s, 1, &value, &v, NULL, vhv, err);
}

/* ---- the residual R = H − G of the Gauss-Newton split ---- */

/* active[i] = 1 for the nodes whose second-order terms can move the mean of
 * some v_kᵀ(Rv)_k: every node with such terms on the seeds' tangent paths,
 * except a bilinear node whose two operands' tangents come from disjoint sets
 * of seeds (its terms pair v_j with v_k, j ≠ k: zero mean). *any: one is. */
static ba_status resid_nodes(const ba_grad_session_t *s, int nseed, const int *seeds, unsigned char *active,
                             int *any, ba_error *err) {
    const ba_model_t *m = s->m;
    const int64_t W = (nseed + 63) / 64;
    uint64_t *dep = ba_calloc((size_t)(m->nvalues * W) + 1, sizeof *dep, err);
    uint64_t *acc = ba_calloc((size_t)W + 1, sizeof *acc, err);
    if (!dep || !acc) {
        free(dep);
        free(acc);
        return err->code;
    }
    for (int k = 0; k < nseed; k++) dep[seeds[k] * W + k / 64] |= 1ull << (k % 64);
    *any = 0;
    for (int i = 0; i < m->nnodes; i++) {
        const ba_node_t *n = &m->nodes[i];
        active[i] = 0;
        if (!ba_grad_node_ran(n, s->vals) || !node_feeds(s, n)) continue;
        unsigned tmask = 0;
        memset(acc, 0, (size_t)W * sizeof *acc);
        for (int j = 0; j < n->nin; j++) {
            int id = n->inputs[j], has = 0;
            if (id < 0 || !is_f32(s->vals[id])) continue;
            for (int64_t w = 0; w < W; w++) {
                acc[w] |= dep[id * W + w];
                has |= dep[id * W + w] != 0;
            }
            if (has && j < 32) tmask |= 1u << j;
        }
        if (!tmask) continue;
        rule_kind k = rule_of(n, tmask);
        if (k == R_NONE) continue;
        int sec = k == R_UNSUPPORTED || has_second(n, k, tmask); /* unsupported: the walk names it */
        if (sec && k == R_BILINEAR) {
            const uint64_t *a = dep + n->inputs[0] * W, *b = dep + n->inputs[1] * W;
            int meet = n->inputs[0] == n->inputs[1];
            for (int64_t w = 0; w < W && !meet; w++) meet = (a[w] & b[w]) != 0;
            sec = meet;
        }
        active[i] = (unsigned char)sec;
        *any |= sec;
        for (int j = 0; j < n->nout; j++)
            if (n->outputs[j] >= 0 && is_f32(s->vals[n->outputs[j]]))
                for (int64_t w = 0; w < W; w++) dep[n->outputs[j] * W + w] |= acc[w];
    }
    free(dep);
    free(acc);
    return BA_OK;
}

ba_status ba_grad_session_resid_multi(ba_grad_session_t *s, int nval, const int *values,
                                      const float *const *v, double *x, int *none, ba_error *err) {
    BA_TRY(check_values(s, nval, values, err));
    const ba_model_t *m = s->m;
    for (int k = 0; k < nval; k++) x[k] = 0.0;
    *none = 0;
    int any = 0;
    unsigned char *active = ba_calloc((size_t)m->nnodes + 1, 1, err);
    ba_status st = active ? resid_nodes(s, nval, values, active, &any, err) : err->code;
    if (st != BA_OK || !any) {
        *none = st == BA_OK;
        free(active);
        return st;
    }
    st = ensure_base_grads(s, err);
    ba_tensor_t **tan = st == BA_OK ? ba_calloc((size_t)m->nvalues + 1, sizeof *tan, err) : NULL;
    unsigned char *kinds = tan ? ba_calloc((size_t)m->nnodes + 1, 1, err) : NULL;
    ba_tensor_t **tv = kinds ? ba_calloc((size_t)nval + 1, sizeof *tv, err) : NULL;
    ba_tensor_t **g = tv ? ba_calloc((size_t)nval + 1, sizeof *g, err) : NULL;
    if (st == BA_OK && !g) st = err->code;
    for (int k = 0; k < nval && st == BA_OK; k++) {
        const ba_tensor_t *W = s->vals[values[k]];
        tv[k] = ba_tensor_wrap(BA_DT_F32, W->ndim, W->shape, (void *)v[k], err);
        if (!tv[k]) st = err->code;
    }
    if (st == BA_OK) st = tangent_forward(s, nval, values, tv, tan, 1, kinds, err);
    ba_tensor_t *dz0 = st == BA_OK ? zeros_like(s->vals[s->out_id], err) : NULL;
    if (st == BA_OK && !dz0) st = err->code;
    if (st == BA_OK) {
        /* the backward of a zero seed with the second-order terms added: R̃v */
        hook_ctx c = {s, tan, kinds, active};
        st = ba_grad_backward(m, s->vals, s->out_id, dz0, nval, values, g, NULL, tangent_hook, &c, err);
    }
    for (int k = 0; k < nval && st == BA_OK; k++) {
        const float *gv = g[k] ? g[k]->data : NULL;
        double d = 0.0;
        for (int64_t i = 0; gv && i < s->vals[values[k]]->numel; i++) d += (double)v[k][i] * gv[i];
        x[k] = d;
    }
    ba_tensor_unref(dz0);
    for (int k = 0; g && k < nval; k++) ba_tensor_unref(g[k]);
    for (int k = 0; tv && k < nval; k++) ba_tensor_unref(tv[k]);
    for (int i = 0; tan && i < m->nvalues; i++) ba_tensor_unref(tan[i]);
    free(g);
    free(tv);
    free(tan);
    free(kinds);
    free(active);
    return st;
}
