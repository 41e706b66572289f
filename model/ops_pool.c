/* Kernels of the pool family (see model/ops.h): MaxPool (with Indices),
 * AveragePool, LpPool over 1-D/2-D/3-D windows, GlobalAveragePool and
 * GlobalMaxPool, float32. One loop over (image, channel) planes. */
#include <math.h>
#include <string.h>

#include "model/kern_conv.h"
#include "model/kern_pool.h"
#include "model/ops.h"

/* Below this many window taps the plane loop stays on one thread. */
#define POOL_OMP_MIN_WORK 32768

enum { POOL_MAX, POOL_AVG, POOL_LP };

static ba_status pool_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out,
                              int nout, int kind, ba_error *err) {
    const ba_tensor_t *X = nin > 0 ? in[0] : NULL;
    BA_TRY(ba_kern_need_f32(node, X, "input X", err));
    char sb[128];
    if (X->ndim < 3 || X->ndim > 2 + BA_KERN_MAX_SP)
        return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): input X has shape %s (expected rank 3 to 5)",
                            node->name, node->op_type, ba_shape_str(X->ndim, X->shape, sb, sizeof sb));
    ba_kern_geom_t g;
    BA_TRY(ba_kern_pool_geom(node, X, &g, err));
    const int include_pad = ba_node_attr_int(node, "count_include_pad", 0) != 0;
    const int col_major = ba_node_attr_int(node, "storage_order", 0) != 0;
    const float p = kind == POOL_LP ? (float)ba_node_attr_int(node, "p", 2) : 0.0f;
    int64_t yshape[BA_MAX_DIMS] = {X->shape[0], X->shape[1]};
    ba_kern_geom_out_shape(&g, yshape + 2);
    /* The loop below stores every output (and index) element. */
    ba_tensor_t *Y = ba_tensor_new_uninit(BA_DT_F32, X->ndim, yshape, err), *I = NULL;
    if (!Y) return err ? err->code : BA_ERR_NOMEM;
    if (kind == POOL_MAX && nout > 1 && node->outputs && node->outputs[1] >= 0) {
        I = ba_tensor_new_uninit(BA_DT_I64, X->ndim, yshape, err);
        if (!I) {
            ba_tensor_unref(Y);
            return err ? err->code : BA_ERR_NOMEM;
        }
    }
    const int64_t ID = g.in[0], IH = g.in[1], IW = g.in[2], OD = g.out[0], OH = g.out[1], OW = g.out[2];
    const int64_t planes = X->shape[0] * X->shape[1], Pin = ID * IH * IW, P = OD * OH * OW;
    const int64_t KK = g.k[0] * g.k[1] * g.k[2];
    const float *x = X->data;
    float *y = Y->data;
    int64_t *ind = I ? I->data : NULL;
    if (kind == POOL_MAX && !ind && ba_kern_maxpool2d(&g, x, y, planes)) {
        out[0] = Y;
        return BA_OK;
    }
#pragma omp parallel for schedule(static) if (planes * P * KK > POOL_OMP_MIN_WORK)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * Pin;
        for (int64_t od = 0; od < OD; od++) {
            int64_t d0 = od * g.s[0] - g.pb[0], dlo, dhi;
            ba_kern_window_taps(d0, g.dil[0], g.k[0], ID, &dlo, &dhi);
            for (int64_t oh = 0; oh < OH; oh++) {
                int64_t h0 = oh * g.s[1] - g.pb[1], hlo, hhi;
                ba_kern_window_taps(h0, g.dil[1], g.k[1], IH, &hlo, &hhi);
                for (int64_t ow = 0; ow < OW; ow++) {
                    int64_t w0 = ow * g.s[2] - g.pb[2], wlo, whi;
                    ba_kern_window_taps(w0, g.dil[2], g.k[2], IW, &wlo, &whi);
                    const int64_t o = pl * P + (od * OH + oh) * OW + ow;
                    if (kind == POOL_MAX) {
                        float best = -INFINITY;
                        int64_t bi = -1; /* flat index in the plane; -1 = no tap yet */
                        for (int64_t a = dlo; a < dhi; a++)
                            for (int64_t b = hlo; b < hhi; b++)
                                for (int64_t c = wlo; c < whi; c++) {
                                    int64_t id = d0 + a * g.dil[0], ih = h0 + b * g.dil[1],
                                            iw = w0 + c * g.dil[2];
                                    float v = xp[(id * IH + ih) * IW + iw];
                                    if (v > best || bi < 0) {
                                        best = v;
                                        bi = col_major ? id + ID * (ih + IH * iw) : (id * IH + ih) * IW + iw;
                                    }
                                }
                        y[o] = best;
                        if (ind) ind[o] = pl * Pin + (bi > 0 ? bi : 0);
                    } else {
                        double acc = 0.0;
                        for (int64_t a = dlo; a < dhi; a++)
                            for (int64_t b = hlo; b < hhi; b++) {
                                const float *row =
                                    xp + ((d0 + a * g.dil[0]) * IH + h0 + b * g.dil[1]) * IW + w0;
                                for (int64_t c = wlo; c < whi; c++) {
                                    float v = row[c * g.dil[2]];
                                    acc += kind == POOL_AVG ? v : pow(fabs(v), p);
                                }
                            }
                        if (kind == POOL_LP) {
                            y[o] = (float)pow(acc, 1.0 / p);
                            continue;
                        }
                        int64_t cnt = ba_kern_avg_divisor(&g, include_pad, d0, h0, w0,
                                                          (dhi - dlo) * (hhi - hlo) * (whi - wlo));
                        y[o] = cnt > 0 ? (float)(acc / (double)cnt) : 0.0f;
                    }
                }
            }
        }
    }
    out[0] = Y;
    if (nout > 1) out[1] = I;
    return BA_OK;
}

ba_status ba_maxpool_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out,
                             int nout, ba_error *err) {
    return pool_forward(node, in, nin, out, nout, POOL_MAX, err);
}

ba_status ba_avgpool_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out,
                             int nout, ba_error *err) {
    return pool_forward(node, in, nin, out, nout, POOL_AVG, err);
}

ba_status ba_lppool_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out,
                            int nout, ba_error *err) {
    return pool_forward(node, in, nin, out, nout, POOL_LP, err);
}

/* X (N, C, *sp) -> (N, C, 1, …): mean or max of each plane. */
static ba_status global_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out,
                                int is_max, ba_error *err) {
    const ba_tensor_t *X = nin > 0 ? in[0] : NULL;
    BA_TRY(ba_kern_need_f32(node, X, "input X", err));
    char sb[128];
    if (X->ndim < 2)
        return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): input X has shape %s (expected N, C, …)",
                            node->name, node->op_type, ba_shape_str(X->ndim, X->shape, sb, sizeof sb));
    int64_t yshape[BA_MAX_DIMS];
    for (int i = 0; i < X->ndim; i++) yshape[i] = i < 2 ? X->shape[i] : 1;
    ba_tensor_t *Y = ba_tensor_new_uninit(BA_DT_F32, X->ndim, yshape, err); /* one store per plane */
    if (!Y) return err ? err->code : BA_ERR_NOMEM;
    const int64_t planes = X->shape[0] * X->shape[1], P = planes ? X->numel / planes : 0;
    const float *x = X->data;
    float *y = Y->data;
#pragma omp parallel for schedule(static) if (X->numel > POOL_OMP_MIN_WORK)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * P;
        if (is_max) {
            float m = P ? xp[0] : -INFINITY;
            for (int64_t i = 1; i < P; i++) m = xp[i] > m ? xp[i] : m;
            y[pl] = m;
        } else {
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < P; i++) s += xp[i];
            y[pl] = P ? s / (float)P : 0.0f;
        }
    }
    out[0] = Y;
    return BA_OK;
}

ba_status ba_gavg_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                          ba_error *err) {
    (void)nout;
    return global_forward(node, in, nin, out, 0, err);
}

ba_status ba_gmax_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                          ba_error *err) {
    (void)nout;
    return global_forward(node, in, nin, out, 1, err);
}
