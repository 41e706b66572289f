/* Backward of the pools: GlobalAveragePool / GlobalMaxPool, AveragePool
 * (same divisor rules as ops_pool.c: count_include_pad, ceil_mode taps past
 * the end padding never count) and MaxPool (gradient to the first maximum of
 * each window, as the forward picks it). */
#include <math.h>

#include "model/grad_internal.h"
#include "model/kern_conv.h"

/* X (N, C, *sp) -> Y (N, C, 1, …): dx = dy / P (avg) or to the first max. */
ba_status ba_global_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                             int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                             ba_error *err) {
    (void)nin;
    (void)out;
    (void)nout;
    if (!need[0]) return BA_OK;
    const ba_tensor_t *X = in[0];
    const int64_t planes = X->shape[0] * X->shape[1], P = planes ? X->numel / planes : 0;
    const int avg = n->op_type[6] == 'A'; /* "GlobalAveragePool" vs "GlobalMaxPool" */
    float *dx = ba_grad_slot(din, 0, X, err);
    if (!dx) return err->code;
    const float *g = dout[0]->data, *x = X->data;
    for (int64_t pl = 0; pl < planes; pl++) {
        if (avg) {
            const float v = g[pl] / (float)P;
            for (int64_t p = 0; p < P; p++) dx[pl * P + p] += v;
        } else {
            int64_t b = 0;
            for (int64_t p = 1; p < P; p++)
                if (x[pl * P + p] > x[pl * P + b]) b = p;
            if (P) dx[pl * P + b] += g[pl];
        }
    }
    return BA_OK;
}

ba_status ba_pool_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                           int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                           ba_error *err) {
    (void)nin;
    (void)out;
    (void)nout;
    if (!need[0]) return BA_OK;
    const ba_tensor_t *X = in[0];
    const int is_max = n->op_type[0] == 'M';
    const int include_pad = ba_node_attr_int(n, "count_include_pad", 0) != 0;
    ba_kern_geom_t g;
    BA_TRY(ba_kern_pool_geom(n, X, &g, err));
    const int64_t ID = g.in[0], IH = g.in[1], IW = g.in[2], OD = g.out[0], OH = g.out[1], OW = g.out[2];
    const int64_t Pin = ID * IH * IW, P = OD * OH * OW, planes = X->shape[0] * X->shape[1];
    float *dx = ba_grad_slot(din, 0, X, err);
    if (!dx) return err->code;
    const float *x = X->data, *gy = dout[0]->data;
#pragma omp parallel for schedule(static) if (planes * P > 4096)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * Pin;
        float *dp = dx + pl * Pin;
        for (int64_t od = 0; od < OD; od++) {
            int64_t d0 = od * g.s[0] - g.pb[0], dlo, dhi;
            ba_kern_window_taps(d0, g.dil[0], g.k[0], ID, &dlo, &dhi);
            for (int64_t oh = 0; oh < OH; oh++) {
                int64_t h0 = oh * g.s[1] - g.pb[1], hlo, hhi;
                ba_kern_window_taps(h0, g.dil[1], g.k[1], IH, &hlo, &hhi);
                for (int64_t ow = 0; ow < OW; ow++) {
                    int64_t w0 = ow * g.s[2] - g.pb[2], wlo, whi;
                    ba_kern_window_taps(w0, g.dil[2], g.k[2], IW, &wlo, &whi);
                    const float gv = gy[pl * P + (od * OH + oh) * OW + ow];
                    if (is_max) {
                        int64_t bi = ba_kern_window_argmax(&g, xp, od, oh, ow);
                        if (bi >= 0) dp[bi] += gv;
                        continue;
                    }
                    int64_t cnt = ba_kern_avg_divisor(&g, include_pad, d0, h0, w0,
                                                      (dhi - dlo) * (hhi - hlo) * (whi - wlo));
                    if (cnt <= 0) continue;
                    const float v = gv / (float)cnt;
                    for (int64_t a = dlo; a < dhi; a++)
                        for (int64_t b = hlo; b < hhi; b++)
                            for (int64_t c = wlo; c < whi; c++)
                                dp[((d0 + a * g.dil[0]) * IH + h0 + b * g.dil[1]) * IW + w0 + c * g.dil[2]] +=
                                    v;
                }
            }
        }
    }
    return BA_OK;
}
