/* Kernels of the norm family (see model/ops.h): BatchNormalization
 * (inference), LayerNormalization, InstanceNormalization, Softmax and
 * LogSoftmax (opset < 13 coerces the input to 2-D at `axis`), float32.
 * Means and variances accumulate in double: rows reach 10^5 elements. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/kern_conv.h"
#include "model/ops.h"

/* ONNX default epsilon of Batch/Layer/InstanceNormalization. */
#define NORM_DEFAULT_EPS 1e-5f
/* Softmax's axis semantics changed at this opset (2-D coercion before it). */
#define SOFTMAX_AXIS_OPSET 13
/* Below this many elements a loop stays on one thread. */
#define NORM_OMP_MIN_WORK 32768

static ba_status bad(const ba_node_t *node, const char *what, const ba_tensor_t *t, ba_error *err) {
    char b[128];
    return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): %s has shape %s", node->name, node->op_type, what,
                        ba_shape_str(t->ndim, t->shape, b, sizeof b));
}

/* A per-channel parameter: float32 with C elements. */
static ba_status need_chan(const ba_node_t *node, const ba_tensor_t *t, const char *what, int64_t C,
                           ba_error *err) {
    BA_TRY(ba_kern_need_f32(node, t, what, err));
    if (t->numel != C || t->ndim != 1) return bad(node, what, t, err);
    return BA_OK;
}

/* X (N, C, *sp); scale, B, mean, var (C): y = (x - mean) / sqrt(var + eps) * scale + B. */
ba_status ba_batchnorm_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out,
                               int nout, ba_error *err) {
    const ba_tensor_t *X = nin > 0 ? in[0] : NULL;
    BA_TRY(ba_kern_need_f32(node, X, "input X", err));
    if (X->ndim < 2) return bad(node, "input X (expected N, C, …)", X, err);
    if (ba_node_attr_int(node, "training_mode", 0) != 0)
        return ba_error_set(err, BA_ERR_UNSUPPORTED,
                            "node %s (BatchNormalization): training_mode=1 is not supported", node->name);
    for (int i = 3; i < nout; i++)
        if (node->outputs && node->outputs[i] >= 0)
            return ba_error_set(
                err, BA_ERR_UNSUPPORTED,
                "node %s (BatchNormalization): saved mean/variance outputs (training) are not supported",
                node->name);
    const int64_t N = X->shape[0], C = X->shape[1], P = (N * C != 0) ? X->numel / (N * C) : 0;
    static const char *names[4] = {"scale", "bias B", "input_mean", "input_var"};
    for (int i = 0; i < 4; i++) BA_TRY(need_chan(node, nin > i + 1 ? in[i + 1] : NULL, names[i], C, err));
    const float eps = ba_node_attr_float(node, "epsilon", NORM_DEFAULT_EPS);
    const float *sc = in[1]->data, *bi = in[2]->data, *mu = in[3]->data, *va = in[4]->data;
    ba_tensor_t *Y = ba_tensor_new_uninit(BA_DT_F32, X->ndim, X->shape, err); /* every element stored below */
    if (!Y) return err ? err->code : BA_ERR_NOMEM;
    const float *x = X->data;
    float *y = Y->data;
#pragma omp parallel for schedule(static) if (X->numel > NORM_OMP_MIN_WORK)
    for (int64_t nc = 0; nc < N * C; nc++) {
        int64_t c = nc % C;
        const float a = sc[c] / sqrtf(va[c] + eps), b = bi[c] - mu[c] * a;
        const float *xp = x + nc * P;
        float *yp = y + nc * P;
#pragma omp simd
        for (int64_t i = 0; i < P; i++) yp[i] = xp[i] * a + b;
    }
    out[0] = Y;
    /* In inference the running statistics pass through unchanged. */
    for (int i = 1; i < nout && i < 3; i++) {
        if (!node->outputs || node->outputs[i] < 0) continue;
        out[i] = ba_tensor_clone(in[i + 2], err);
        if (!out[i]) {
            for (int j = 0; j < i; j++) {
                ba_tensor_unref(out[j]);
                out[j] = NULL;
            }
            return err ? err->code : BA_ERR_NOMEM;
        }
    }
    return BA_OK;
}

/* Normalises rows: x (outer, inner) with per-row statistics; gamma/beta
 * (inner, or NULL) when per element (LayerNorm), gam_c/bet_c when one value
 * per row from a channel table (InstanceNorm, row r -> channel r % C). */
static void norm_rows(const float *x, float *y, int64_t outer, int64_t inner, float eps, const float *gamma,
                      const float *beta, const float *gam_c, const float *bet_c, int64_t C, float *mean_out,
                      float *rstd_out) {
#pragma omp parallel for schedule(static) if (outer * inner > NORM_OMP_MIN_WORK)
    for (int64_t r = 0; r < outer; r++) {
        const float *xr = x + r * inner;
        float *yr = y + r * inner;
        double s = 0.0;
        for (int64_t i = 0; i < inner; i++) s += xr[i];
        const double mean = inner ? s / (double)inner : 0.0;
        double v = 0.0;
        for (int64_t i = 0; i < inner; i++) {
            double d = xr[i] - mean;
            v += d * d;
        }
        const float rstd = (float)(1.0 / sqrt((inner ? v / (double)inner : 0.0) + (double)eps));
        const float m = (float)mean;
        if (mean_out) mean_out[r] = m;
        if (rstd_out) rstd_out[r] = rstd;
        if (gam_c) {
            const float a = gam_c[r % C] * rstd, b = bet_c[r % C] - m * a;
#pragma omp simd
            for (int64_t i = 0; i < inner; i++) yr[i] = xr[i] * a + b;
        } else {
#pragma omp simd
            for (int64_t i = 0; i < inner; i++)
                yr[i] = (xr[i] - m) * rstd * gamma[i] + (beta ? beta[i] : 0.0f);
        }
    }
}

/* X (..., [axis:]); Scale, B broadcast to X[axis:] -> Y, Mean, InvStdDev (X[:axis], 1, …). */
ba_status ba_layernorm_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out,
                               int nout, ba_error *err) {
    const ba_tensor_t *X = nin > 0 ? in[0] : NULL, *S = nin > 1 ? in[1] : NULL, *Bt = nin > 2 ? in[2] : NULL;
    BA_TRY(ba_kern_need_f32(node, X, "input X", err));
    BA_TRY(ba_kern_need_f32(node, S, "Scale", err));
    if (Bt) BA_TRY(ba_kern_need_f32(node, Bt, "bias B", err));
    int axis;
    BA_TRY(ba_kern_axis(node, ba_node_attr_int(node, "axis", -1), X->ndim, &axis, err));
    const float eps = ba_node_attr_float(node, "epsilon", NORM_DEFAULT_EPS);
    const int nd = X->ndim - axis;
    const int64_t outer = ba_shape_numel(axis, X->shape), inner = ba_shape_numel(nd, X->shape + axis);
    ba_tensor_t *Y = NULL, *Mn = NULL, *Rs = NULL;
    float *buf = ba_malloc((size_t)(2 * inner + 1) * sizeof(float), err);
    if (!buf) return err ? err->code : BA_ERR_NOMEM;
    ba_status st = ba_kern_broadcast_to(node, S, nd, X->shape + axis, buf, "Scale", err);
    if (st == BA_OK && Bt)
        st = ba_kern_broadcast_to(node, Bt, nd, X->shape + axis, buf + inner, "bias B", err);
    if (st != BA_OK) goto fail;
    int64_t sshape[BA_MAX_DIMS];
    for (int i = 0; i < X->ndim; i++) sshape[i] = i < axis ? X->shape[i] : 1;
    st = BA_ERR_NOMEM;
    if (!(Y = ba_tensor_new(BA_DT_F32, X->ndim, X->shape, err))) goto fail;
    if (nout > 1 && node->outputs && node->outputs[1] >= 0 &&
        !(Mn = ba_tensor_new(BA_DT_F32, X->ndim, sshape, err)))
        goto fail;
    if (nout > 2 && node->outputs && node->outputs[2] >= 0 &&
        !(Rs = ba_tensor_new(BA_DT_F32, X->ndim, sshape, err)))
        goto fail;
    norm_rows(X->data, Y->data, outer, inner, eps, buf, Bt ? buf + inner : NULL, NULL, NULL, 1,
              Mn ? Mn->data : NULL, Rs ? Rs->data : NULL);
    free(buf);
    out[0] = Y;
    if (nout > 1) out[1] = Mn;
    if (nout > 2) out[2] = Rs;
    return BA_OK;
fail:
    free(buf);
    ba_tensor_unref(Y);
    ba_tensor_unref(Mn);
    ba_tensor_unref(Rs);
    return (st == BA_ERR_NOMEM && err) ? err->code : st;
}

/* X (N, C, *sp); scale, B (C): each (n, c) plane normalised by its own statistics. */
ba_status ba_instnorm_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out,
                              int nout, ba_error *err) {
    (void)nout;
    const ba_tensor_t *X = nin > 0 ? in[0] : NULL;
    BA_TRY(ba_kern_need_f32(node, X, "input X", err));
    if (X->ndim < 3) return bad(node, "input X (expected N, C, D1, …)", X, err);
    const int64_t N = X->shape[0], C = X->shape[1], P = (N * C != 0) ? X->numel / (N * C) : 0;
    BA_TRY(need_chan(node, nin > 1 ? in[1] : NULL, "scale", C, err));
    BA_TRY(need_chan(node, nin > 2 ? in[2] : NULL, "bias B", C, err));
    const float eps = ba_node_attr_float(node, "epsilon", NORM_DEFAULT_EPS);
    ba_tensor_t *Y = ba_tensor_new(BA_DT_F32, X->ndim, X->shape, err);
    if (!Y) return err ? err->code : BA_ERR_NOMEM;
    norm_rows(X->data, Y->data, N * C, P, eps, NULL, NULL, in[1]->data, in[2]->data, C, NULL, NULL);
    out[0] = Y;
    return BA_OK;
}

/* exp for softmax rows, written so the row loops vectorize (glibc's expf is
 * a scalar call): 2^n * p(r), x = n ln2 + r, |r| <= ln2/2, degree-6 Taylor
 * polynomial (relative error < 2e-7). Below -87 the true value is under
 * FLT_MIN: 0 is returned; above 88 it overflows: clamped. NaN stays NaN. */
#define EXP_LO (-87.0f)
#define EXP_HI 88.0f
#define EXP_LOG2E 1.44269504088896341f
#define EXP_LN2_HI 0.693145751953125f /* ln 2 split so n * LN2_HI is exact */
#define EXP_LN2_LO 1.42860682030941723e-6f
#define EXP_ROUND_MAGIC 12582912.0f /* 1.5 * 2^23: adding it rounds to an integer */
#define EXP_BIAS 127
#define EXP_MANT_BITS 23

/* gcc keeps the clamps and the masked-entry select of softmax_expf as
 * branches (no vector loop) unless FP compares may not trap; caller and
 * callee need the same options for the inlining. */
#if defined(__GNUC__) && !defined(__clang__)
#define NORM_VECTOR_SELECTS __attribute__((optimize("no-trapping-math")))
#else
#define NORM_VECTOR_SELECTS
#endif

NORM_VECTOR_SELECTS static inline float softmax_expf(float x0) {
    const float x = x0 < EXP_LO ? EXP_LO : (x0 > EXP_HI ? EXP_HI : x0);
    const float t = x * EXP_LOG2E + EXP_ROUND_MAGIC, n = t - EXP_ROUND_MAGIC;
    const float r = (x - n * EXP_LN2_HI) - n * EXP_LN2_LO;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = ((int32_t)n + EXP_BIAS) << EXP_MANT_BITS;
    float scale;
    memcpy(&scale, &bits, sizeof scale);   /* 2^n (a bit cast the vectorizer keeps) */
    return x0 < EXP_LO ? 0.0f : p * scale; /* exactly 0 for masked (-inf) entries */
}

/* Independent accumulators of the row max / sum loops (ILP without the
 * omp simd reductions that gcc 12 -O2 leaves scalar). */
#define ROW_ACC 8

/* Softmax / LogSoftmax of one contiguous row of n (the common last-axis case). */
NORM_VECTOR_SELECTS static void softmax_row(const float *xp, float *yp, int64_t n, int logsm) {
    float acc[ROW_ACC];
    for (int j = 0; j < ROW_ACC; j++) acc[j] = -INFINITY;
    int64_t k = 0;
    for (; k + ROW_ACC <= n; k += ROW_ACC)
        for (int j = 0; j < ROW_ACC; j++) acc[j] = xp[k + j] > acc[j] ? xp[k + j] : acc[j];
    for (; k < n; k++) acc[0] = xp[k] > acc[0] ? xp[k] : acc[0];
    float mx = acc[0];
    for (int j = 1; j < ROW_ACC; j++) mx = acc[j] > mx ? acc[j] : mx;
#pragma omp simd
    for (int64_t q = 0; q < n; q++) yp[q] = softmax_expf(xp[q] - mx);
    for (int j = 0; j < ROW_ACC; j++) acc[j] = 0.0f;
    for (k = 0; k + ROW_ACC <= n; k += ROW_ACC)
        for (int j = 0; j < ROW_ACC; j++) acc[j] += yp[k + j];
    for (; k < n; k++) acc[0] += yp[k];
    float s = 0.0f;
    for (int j = 0; j < ROW_ACC; j++) s += acc[j];
    if (logsm) {
        const float ls = logf(s);
#pragma omp simd
        for (int64_t q = 0; q < n; q++) yp[q] = xp[q] - mx - ls;
    } else {
        const float inv = 1.0f / s;
#pragma omp simd
        for (int64_t q = 0; q < n; q++) yp[q] *= inv;
    }
}

static ba_status softmax_any(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out,
                             int logsm, ba_error *err) {
    const ba_tensor_t *X = nin > 0 ? in[0] : NULL;
    BA_TRY(ba_kern_need_f32(node, X, "input", err));
    const int legacy = node->opset > 0 && node->opset < SOFTMAX_AXIS_OPSET;
    const int r = X->ndim ? X->ndim : 1; /* a scalar is a one-element row */
    int axis;
    BA_TRY(ba_kern_axis(node, ba_node_attr_int(node, "axis", legacy ? 1 : -1), r, &axis, err));
    int64_t outer, n, inner;
    if (X->ndim == 0) {
        outer = n = inner = 1;
    } else if (legacy) { /* coerce to 2-D (outer, prod(shape[axis:])) */
        outer = ba_shape_numel(axis, X->shape);
        n = ba_shape_numel(X->ndim - axis, X->shape + axis);
        inner = 1;
    } else {
        outer = ba_shape_numel(axis, X->shape);
        n = X->shape[axis];
        inner = ba_shape_numel(X->ndim - axis - 1, X->shape + axis + 1);
    }
    ba_tensor_t *Y = ba_tensor_new(BA_DT_F32, X->ndim, X->shape, err);
    if (!Y) return err ? err->code : BA_ERR_NOMEM;
    const float *x = X->data;
    float *y = Y->data;
    if (inner == 1) {
        const int nt = ba_kern_threads(X->numel);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
        for (int64_t o = 0; o < outer; o++) softmax_row(x + o * n, y + o * n, n, logsm);
        out[0] = Y;
        return BA_OK;
    }
#pragma omp parallel for schedule(static) if (X->numel > NORM_OMP_MIN_WORK)
    for (int64_t oi = 0; oi < outer * inner; oi++) {
        const int64_t o = oi / inner, i = oi % inner;
        const float *xp = x + o * n * inner + i;
        float *yp = y + o * n * inner + i;
        float mx = -INFINITY;
        for (int64_t k = 0; k < n; k++) mx = xp[k * inner] > mx ? xp[k * inner] : mx;
        double s = 0.0;
        for (int64_t k = 0; k < n; k++) {
            float e = expf(xp[k * inner] - mx);
            yp[k * inner] = e;
            s += e;
        }
        if (logsm) {
            const float ls = (float)log(s);
            for (int64_t k = 0; k < n; k++) yp[k * inner] = xp[k * inner] - mx - ls;
        } else {
            const float inv = (float)(1.0 / s);
            for (int64_t k = 0; k < n; k++) yp[k * inner] *= inv;
        }
    }
    out[0] = Y;
    return BA_OK;
}

ba_status ba_softmax_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out,
                             int nout, ba_error *err) {
    (void)nout;
    return softmax_any(node, in, nin, out, 0, err);
}

ba_status ba_logsoftmax_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out,
                                int nout, ba_error *err) {
    (void)nout;
    return softmax_any(node, in, nin, out, 1, err);
}
