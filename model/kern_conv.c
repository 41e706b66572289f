/* Private helpers of the heavy kernels: input checks, the sliding-window
 * geometry of Conv and the pools (ONNX auto_pad / ceil_mode rules), im2col,
 * col2im and a small broadcasting copy. */
#include "model/kern_conv.h"

#include <string.h>

/* Below this many floats an im2col/col2im runs on one thread: the OpenMP
 * fork costs more than the copy (measured on the 2-core build machine). */
#define KERN_OMP_MIN_WORK 32768

ba_status ba_kern_need_f32(const ba_node_t *node, const ba_tensor_t *t, const char *what, ba_error *err) {
    if (!t) return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): %s is missing", node->name, node->op_type, what);
    if (t->dtype != BA_DT_F32)
        return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): %s has dtype %s, only float32 is supported",
                            node->name, node->op_type, what, ba_dtype_name(t->dtype));
    return BA_OK;
}

static ba_status geom_ints(const ba_node_t *node, const char *name, int want, int64_t dflt, int64_t *out,
                           ba_error *err) {
    const int64_t *v = NULL;
    int n = ba_node_attr_ints(node, name, &v);
    if (n == 0) {
        for (int i = 0; i < want; i++) out[i] = dflt;
        return BA_OK;
    }
    if (n != want)
        return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): attribute %s has %d values, expected %d",
                            node->name, node->op_type, name, n, want);
    for (int i = 0; i < want; i++) out[i] = v[i];
    return BA_OK;
}

ba_status ba_kern_geom_make(const ba_node_t *node, int nsp, const int64_t *in_sp, const int64_t *k_sp,
                            int ceil_mode, ba_kern_geom_t *g, ba_error *err) {
    if (nsp < 1 || nsp > BA_KERN_MAX_SP)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "node %s (%s): %d spatial dimensions (1 to %d supported)",
                            node->name, node->op_type, nsp, BA_KERN_MAX_SP);
    int64_t s[BA_KERN_MAX_SP], d[BA_KERN_MAX_SP], p[2 * BA_KERN_MAX_SP];
    BA_TRY(geom_ints(node, "strides", nsp, 1, s, err));
    BA_TRY(geom_ints(node, "dilations", nsp, 1, d, err));
    BA_TRY(geom_ints(node, "pads", 2 * nsp, 0, p, err));
    const char *ap = ba_node_attr_string(node, "auto_pad", "NOTSET");
    int same_upper = strcmp(ap, "SAME_UPPER") == 0, same_lower = strcmp(ap, "SAME_LOWER") == 0;
    int valid = strcmp(ap, "VALID") == 0;
    if (!same_upper && !same_lower && !valid && strcmp(ap, "NOTSET") != 0 && ap[0] != '\0')
        return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): unknown auto_pad '%s'", node->name, node->op_type, ap);

    memset(g, 0, sizeof *g);
    g->nsp = nsp;
    int off = BA_KERN_MAX_SP - nsp; /* missing leading dims are size 1 */
    for (int i = 0; i < BA_KERN_MAX_SP; i++) {
        g->in[i] = g->k[i] = g->s[i] = g->dil[i] = g->out[i] = 1;
        g->pb[i] = g->pe[i] = 0;
    }
    for (int i = 0; i < nsp; i++) {
        int j = off + i;
        if (s[i] < 1 || d[i] < 1 || k_sp[i] < 1 || p[i] < 0 || p[nsp + i] < 0 || in_sp[i] < 1)
            return ba_error_set(err, BA_ERR_INPUT,
                                "node %s (%s): bad window on axis %d (input %lld, kernel %lld, stride %lld, "
                                "dilation %lld, pads %lld/%lld)",
                                node->name, node->op_type, i, (long long)in_sp[i], (long long)k_sp[i],
                                (long long)s[i], (long long)d[i], (long long)p[i], (long long)p[nsp + i]);
        g->in[j] = in_sp[i];
        g->k[j] = k_sp[i];
        g->s[j] = s[i];
        g->dil[j] = d[i];
        int64_t keff = (k_sp[i] - 1) * d[i] + 1;
        if (same_upper || same_lower) {
            /* ONNX: output = ceil(in / stride); the odd pad goes after (UPPER) or before (LOWER). */
            int64_t out = (in_sp[i] + s[i] - 1) / s[i];
            int64_t total = (out - 1) * s[i] + keff - in_sp[i];
            if (total < 0) total = 0;
            g->pb[j] = same_upper ? total / 2 : total - total / 2;
            g->pe[j] = total - g->pb[j];
            g->out[j] = out;
            continue;
        }
        if (!valid) {
            g->pb[j] = p[i];
            g->pe[j] = p[nsp + i];
        }
        int64_t span = in_sp[i] + g->pb[j] + g->pe[j] - keff;
        if (span < 0)
            return ba_error_set(err, BA_ERR_INPUT,
                                "node %s (%s): kernel extent %lld exceeds padded input %lld on axis %d",
                                node->name, node->op_type, (long long)keff,
                                (long long)(in_sp[i] + g->pb[j] + g->pe[j]), i);
        int64_t out = (ceil_mode ? (span + s[i] - 1) / s[i] : span / s[i]) + 1;
        /* ceil_mode: a last window that starts in the end padding is dropped
         * (PyTorch and onnxruntime agree on this). */
        if (ceil_mode && (out - 1) * s[i] >= in_sp[i] + g->pb[j]) out--;
        g->out[j] = out;
    }
    return BA_OK;
}

void ba_kern_geom_out_shape(const ba_kern_geom_t *g, int64_t *shape) {
    for (int i = 0; i < g->nsp; i++) shape[i] = g->out[BA_KERN_MAX_SP - g->nsp + i];
}

/* Range [lo, hi) of o with 0 <= o*s + base < n, clipped to [0, count). */
static void valid_range(int64_t base, int64_t s, int64_t n, int64_t count, int64_t *lo, int64_t *hi) {
    int64_t l = base >= 0 ? 0 : (-base + s - 1) / s;
    int64_t h = base < n ? (n - 1 - base) / s + 1 : 0;
    if (h > count) h = count;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

void ba_kern_im2col(const float *x, int64_t C, const ba_kern_geom_t *g, float *cols, int64_t ldc) {
    const int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];
    const int64_t KD = g->k[0], KH = g->k[1], KW = g->k[2];
    const int64_t OD = g->out[0], OH = g->out[1], OW = g->out[2];
    const int64_t P = OD * OH * OW, rows = C * KD * KH * KW;
#pragma omp parallel for schedule(static) if (rows * P > KERN_OMP_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) {
        int64_t kw = r % KW, kh = (r / KW) % KH, kd = (r / (KW * KH)) % KD, c = r / (KW * KH * KD);
        float *dst = cols + r * ldc;
        const float *xc = x + c * ID * IH * IW;
        int64_t wlo, whi;
        int64_t wbase = kw * g->dil[2] - g->pb[2];
        valid_range(wbase, g->s[2], IW, OW, &wlo, &whi);
        for (int64_t od = 0; od < OD; od++) {
            int64_t id = od * g->s[0] - g->pb[0] + kd * g->dil[0];
            if (id < 0 || id >= ID) {
                memset(dst + od * OH * OW, 0, (size_t)(OH * OW) * sizeof(float));
                continue;
            }
            for (int64_t oh = 0; oh < OH; oh++) {
                float *drow = dst + (od * OH + oh) * OW;
                int64_t ih = oh * g->s[1] - g->pb[1] + kh * g->dil[1];
                if (ih < 0 || ih >= IH) {
                    memset(drow, 0, (size_t)OW * sizeof(float));
                    continue;
                }
                const float *xrow = xc + (id * IH + ih) * IW + wbase;
                for (int64_t ow = 0; ow < wlo; ow++) drow[ow] = 0.0f;
                if (g->s[2] == 1) {
                    if (whi > wlo) memcpy(drow + wlo, xrow + wlo, (size_t)(whi - wlo) * sizeof(float));
                } else {
                    const int64_t sw = g->s[2];
                    for (int64_t ow = wlo; ow < whi; ow++) drow[ow] = xrow[ow * sw];
                }
                for (int64_t ow = whi; ow < OW; ow++) drow[ow] = 0.0f;
            }
        }
    }
}

void ba_kern_col2im_add(const float *cols, int64_t C, const ba_kern_geom_t *g, float *y) {
    const int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];
    const int64_t KD = g->k[0], KH = g->k[1], KW = g->k[2];
    const int64_t OD = g->out[0], OH = g->out[1], OW = g->out[2];
    const int64_t P = ID * IH * IW, K = KD * KH * KW;
    /* One channel per iteration: rows of different channels write disjoint planes. */
#pragma omp parallel for schedule(static) if (C * K * P > KERN_OMP_MIN_WORK)
    for (int64_t c = 0; c < C; c++) {
        float *yc = y + c * OD * OH * OW;
        for (int64_t kk = 0; kk < K; kk++) {
            int64_t kw = kk % KW, kh = (kk / KW) % KH, kd = kk / (KW * KH);
            const float *src = cols + (c * K + kk) * P;
            int64_t wbase = kw * g->dil[2] - g->pb[2], ilo, ihi;
            valid_range(wbase, g->s[2], OW, IW, &ilo, &ihi);
            for (int64_t id = 0; id < ID; id++) {
                int64_t od = id * g->s[0] - g->pb[0] + kd * g->dil[0];
                if (od < 0 || od >= OD) continue;
                for (int64_t ih = 0; ih < IH; ih++) {
                    int64_t oh = ih * g->s[1] - g->pb[1] + kh * g->dil[1];
                    if (oh < 0 || oh >= OH) continue;
                    float *yrow = yc + (od * OH + oh) * OW + wbase;
                    const float *srow = src + (id * IH + ih) * IW;
                    const int64_t sw = g->s[2];
                    for (int64_t iw = ilo; iw < ihi; iw++) yrow[iw * sw] += srow[iw];
                }
            }
        }
    }
}

ba_status ba_kern_broadcast_to(const ba_node_t *node, const ba_tensor_t *src, int dndim, const int64_t *dshape,
                               float *dst, const char *what, ba_error *err) {
    char b1[128], b2[128];
    if (src->ndim > dndim) goto bad;
    int64_t sstride[BA_MAX_DIMS]; /* stride in src per dst dim, 0 where broadcast */
    int64_t acc = 1;
    for (int i = dndim - 1; i >= 0; i--) {
        int si = i - (dndim - src->ndim);
        if (si < 0) {
            sstride[i] = 0;
            continue;
        }
        if (src->shape[si] == dshape[i]) sstride[i] = acc;
        else if (src->shape[si] == 1) sstride[i] = 0;
        else goto bad;
        acc *= src->shape[si];
    }
    const float *s = src->data;
    int64_t n = ba_shape_numel(dndim, dshape), idx[BA_MAX_DIMS] = {0}, off = 0;
    for (int64_t e = 0; e < n; e++) {
        dst[e] = s[off];
        for (int i = dndim - 1; i >= 0; i--) { /* odometer step */
            idx[i]++;
            off += sstride[i];
            if (idx[i] < dshape[i]) break;
            off -= sstride[i] * idx[i];
            idx[i] = 0;
        }
    }
    return BA_OK;
bad:
    return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): %s of shape %s does not broadcast to %s", node->name,
                        node->op_type, what, ba_shape_str(src->ndim, src->shape, b1, sizeof b1),
                        ba_shape_str(dndim, dshape, b2, sizeof b2));
}

ba_status ba_kern_axis(const ba_node_t *node, int64_t axis, int r, int *out, ba_error *err) {
    if (axis < -r || axis >= r)
        return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): axis %lld out of range for rank %d", node->name,
                            node->op_type, (long long)axis, r);
    *out = (int)(axis < 0 ? axis + r : axis);
    return BA_OK;
}
