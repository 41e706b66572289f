/* Backward of Softmax / LogSoftmax (both the opset < 13 "flatten from axis"
 * and the opset >= 13 "one axis" forms), BatchNormalization (inference:
 * running statistics are constants), LayerNormalization (opset 17) and
 * InstanceNormalization (statistics per image and channel). */
#include <math.h>
#include <string.h>

#include "model/grad_internal.h"

/* ONNX default epsilon of BatchNormalization and LayerNormalization. */
#define NORM_DEFAULT_EPS 1e-5f
/* Softmax changed from "coerce to 2-D at axis" to "along axis" in opset 13. */
#define SOFTMAX_AXIS_OPSET 13

void ba_grad_softmax_layout(const ba_node_t *n, const ba_tensor_t *X, int64_t *outer, int64_t *len,
                            int64_t *inner) {
    const int r = X->ndim, v13 = n->opset >= SOFTMAX_AXIS_OPSET;
    int64_t a = ba_node_attr_int(n, "axis", v13 ? -1 : 1);
    int ax = (int)(a < 0 ? a + r : a);
    *outer = *len = *inner = 1;
    for (int d = 0; d < ax; d++) *outer *= X->shape[d];
    if (v13) {
        *len = X->shape[ax];
        for (int d = ax + 1; d < r; d++) *inner *= X->shape[d];
    } else {
        for (int d = ax; d < r; d++) *len *= X->shape[d];
    }
}

/* Mean (*mean) and 1/sqrt(variance + eps) of the n values of row x, in double. */
static double row_stats(const float *x, int64_t n, float eps, double *mean) {
    double m = 0.0, v = 0.0;
    for (int64_t k = 0; k < n; k++) m += x[k];
    m /= (double)n;
    for (int64_t k = 0; k < n; k++) v += ((double)x[k] - m) * ((double)x[k] - m);
    *mean = m;
    return 1.0 / sqrt(v / (double)n + eps);
}

/* Softmax: dx = y·(g − Σ g·y); LogSoftmax: dx = g − exp(y)·Σ g. */
ba_status ba_softmax_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                              int nout, ba_tensor_t *const *dout, const unsigned char *need,
                              ba_tensor_t **din, ba_error *err) {
    (void)nin;
    (void)nout;
    if (!need[0]) return BA_OK;
    const int logsm = !strcmp(n->op_type, "LogSoftmax");
    int64_t outer, len, inner;
    ba_grad_softmax_layout(n, in[0], &outer, &len, &inner);
    float *dx = ba_grad_slot(din, 0, in[0], err);
    if (!dx) return err->code;
    const float *y = out[0]->data, *g = dout[0]->data;
#pragma omp parallel for schedule(static) if (outer * len * inner > 65536)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const int64_t base = o * len * inner + i;
            double s = 0.0;
            for (int64_t k = 0; k < len; k++) {
                int64_t e = base + k * inner;
                s += logsm ? (double)g[e] : (double)g[e] * y[e];
            }
            for (int64_t k = 0; k < len; k++) {
                int64_t e = base + k * inner;
                dx[e] += logsm ? (float)(g[e] - exp((double)y[e]) * s) : (float)(y[e] * (g[e] - s));
            }
        }
    return BA_OK;
}

/* Inference BatchNormalization: y = (x − mean)·inv·scale + B, inv = 1/sqrt(var + eps),
 * X (N, C, ...), the other inputs (C). */
ba_status ba_batchnorm_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                                int nout, ba_tensor_t *const *dout, const unsigned char *need,
                                ba_tensor_t **din, ba_error *err) {
    (void)out;
    (void)nout;
    if (nin < 5 || ba_node_attr_int(n, "training_mode", 0))
        return ba_error_set(err, BA_ERR_UNSUPPORTED,
                            "node %s (BatchNormalization): only inference mode has a backward", n->name);
    const ba_tensor_t *X = in[0];
    const int64_t N = X->shape[0], C = X->ndim > 1 ? X->shape[1] : 1, P = N * C > 0 ? X->numel / (N * C) : 0;
    const float eps = ba_node_attr_float(n, "epsilon", NORM_DEFAULT_EPS);
    const float *x = X->data, *g = dout[0]->data, *sc = in[1]->data, *mu = in[3]->data, *var = in[4]->data;
    float *d[5] = {NULL};
    for (int i = 0; i < 5; i++)
        if (need[i] && !(d[i] = ba_grad_slot(din, i, in[i], err))) return err->code;
    for (int64_t c = 0; c < C; c++) {
        const double inv = 1.0 / sqrt((double)var[c] + eps);
        double sg = 0.0, sgx = 0.0;
        for (int64_t i = 0; i < N; i++) {
            const float *xr = x + (i * C + c) * P, *gr = g + (i * C + c) * P;
            for (int64_t p = 0; p < P; p++) {
                sg += gr[p];
                sgx += (double)gr[p] * ((double)xr[p] - mu[c]);
            }
            if (d[0]) {
                float *dr = d[0] + (i * C + c) * P;
                const float k = (float)(sc[c] * inv);
                for (int64_t p = 0; p < P; p++) dr[p] += gr[p] * k;
            }
        }
        if (d[1]) d[1][c] += (float)(sgx * inv);
        if (d[2]) d[2][c] += (float)sg;
        if (d[3]) d[3][c] -= (float)(sg * sc[c] * inv);
        if (d[4]) d[4][c] += (float)(-0.5 * sgx * sc[c] * inv * inv * inv);
    }
    return BA_OK;
}

/* LayerNormalization over the axes from `axis` on: rows of D elements,
 * y = x̂·scale + B with x̂ = (x − mean)·rstd; dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = g·scale. */
ba_status ba_layernorm_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                                int nout, ba_tensor_t *const *dout, const unsigned char *need,
                                ba_tensor_t **din, ba_error *err) {
    (void)out;
    (void)nout;
    const ba_tensor_t *X = in[0], *S = in[1], *Bt = nin > 2 ? in[2] : NULL;
    const int r = X->ndim;
    int64_t a = ba_node_attr_int(n, "axis", -1);
    int ax = (int)(a < 0 ? a + r : a);
    int64_t D = 1;
    for (int d = ax; d < r; d++) D *= X->shape[d];
    const int64_t R = D ? X->numel / D : 0;
    if (S->numel != D || (Bt && Bt->numel != D))
        return ba_error_set(err, BA_ERR_UNSUPPORTED,
                            "node %s (LayerNormalization): backward needs scale/bias of the "
                            "normalized size",
                            n->name);
    const float eps = ba_node_attr_float(n, "epsilon", NORM_DEFAULT_EPS);
    const float *x = X->data, *g = dout[0]->data, *sc = S->data;
    float *dx = NULL, *ds = NULL, *db = NULL;
    if (need[0] && !(dx = ba_grad_slot(din, 0, X, err))) return err->code;
    if (need[1] && !(ds = ba_grad_slot(din, 1, S, err))) return err->code;
    if (Bt && need[2] && !(db = ba_grad_slot(din, 2, Bt, err))) return err->code;
    for (int64_t i = 0; i < R; i++) {
        const float *xr = x + i * D, *gr = g + i * D;
        double mean;
        const double rstd = row_stats(xr, D, eps, &mean);
        double m1 = 0.0, m2 = 0.0;
        for (int64_t k = 0; k < D; k++) {
            double xh = ((double)xr[k] - mean) * rstd, gh = (double)gr[k] * sc[k];
            m1 += gh;
            m2 += gh * xh;
            if (ds) ds[k] += (float)(gr[k] * xh);
            if (db) db[k] += gr[k];
        }
        m1 /= (double)D;
        m2 /= (double)D;
        if (dx)
            for (int64_t k = 0; k < D; k++) {
                double xh = ((double)xr[k] - mean) * rstd;
                dx[i * D + k] += (float)(rstd * ((double)gr[k] * sc[k] - m1 - xh * m2));
            }
    }
    return BA_OK;
}

/* InstanceNormalization: per (n, c) plane of P elements x̂ = (x − mean)·rstd,
 * y = x̂·scale_c + B_c; X (N, C, *sp), scale and B (C).
 * dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = g·scale_c; dscale_c = Σ g·x̂; dB_c = Σ g. */
ba_status ba_instnorm_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                               int nout, ba_tensor_t *const *dout, const unsigned char *need,
                               ba_tensor_t **din, ba_error *err) {
    (void)out;
    (void)nout;
    if (nin < 3 || !in[1] || !in[2])
        return ba_error_set(err, BA_ERR_INPUT, "node %s (InstanceNormalization): needs scale and B", n->name);
    const ba_tensor_t *X = in[0];
    const int64_t N = X->shape[0], C = X->shape[1], P = N * C > 0 ? X->numel / (N * C) : 0;
    const float eps = ba_node_attr_float(n, "epsilon", NORM_DEFAULT_EPS);
    const float *x = X->data, *g = dout[0]->data, *sc = in[1]->data;
    float *d[3] = {NULL};
    for (int i = 0; i < 3; i++)
        if (need[i] && !(d[i] = ba_grad_slot(din, i, in[i], err))) return err->code;
    if (P == 0) return BA_OK;
    for (int64_t r = 0; r < N * C; r++) {
        const int64_t c = r % C;
        const float *xr = x + r * P, *gr = g + r * P;
        double mean;
        const double rstd = row_stats(xr, P, eps, &mean);
        double sg = 0.0, sgx = 0.0;
        for (int64_t k = 0; k < P; k++) {
            sg += gr[k];
            sgx += (double)gr[k] * ((double)xr[k] - mean) * rstd;
        }
        if (d[1]) d[1][c] += (float)sgx;
        if (d[2]) d[2][c] += (float)sg;
        if (d[0]) {
            const double m1 = sc[c] * sg / (double)P, m2 = sc[c] * sgx / (double)P;
            float *dr = d[0] + r * P;
            for (int64_t k = 0; k < P; k++) {
                const double xh = ((double)xr[k] - mean) * rstd;
                dr[k] += (float)(rstd * ((double)gr[k] * sc[c] - m1 - xh * m2));
            }
        }
    }
    return BA_OK;
}
