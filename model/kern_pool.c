/* Fast paths of the pool kernels (model/kern_pool.h). */
#include "model/kern_pool.h"

#include <math.h>

/* Below this many window taps the plane loop stays on one thread (as ops_pool.c). */
#define KP_OMP_MIN_WORK 32768

/* One output row yrow (OW) of plane xp from tap rows khs[0..nkh) (input rows ih). */
static void row_max(const ba_kern_geom_t *g, const float *xp, const int64_t *ihs, int nkh, float *yrow) {
    const int64_t IW = g->in[2], KW = g->k[2], OW = g->out[2], sw = g->s[2], pw = g->pb[2];
    if (nkh == 0) {
        for (int64_t ow = 0; ow < OW; ow++) yrow[ow] = -INFINITY;
        return;
    }
    /* interior: ow*sw - pw >= 0 and ow*sw - pw + KW - 1 < IW */
    int64_t lo = (pw + sw - 1) / sw, hi = IW - KW + pw >= 0 ? (IW - KW + pw) / sw + 1 : 0;
    if (hi > OW) hi = OW;
    if (lo > hi) lo = hi;
    for (int64_t ow = 0; ow < OW; ow++) { /* border columns, as the generic loop */
        if (ow == lo) ow = hi;
        if (ow >= OW) break;
        const int64_t w0 = ow * sw - pw;
        int64_t wlo, whi;
        ba_kern_window_taps(w0, 1, KW, IW, &wlo, &whi);
        float best = -INFINITY;
        int first = 1;
        for (int t = 0; t < nkh; t++)
            for (int64_t c = wlo; c < whi; c++) {
                const float v = xp[ihs[t] * IW + w0 + c];
                if (v > best || first) best = v, first = 0;
            }
        yrow[ow] = best;
    }
    if (hi <= lo) return;
    float *yo = yrow + lo;
    const int64_t n = hi - lo;
    for (int t = 0; t < nkh; t++)
        for (int64_t kw = 0; kw < KW; kw++) {
            const float *xr = xp + ihs[t] * IW + lo * sw - pw + kw;
            if (t == 0 && kw == 0) {
                for (int64_t i = 0; i < n; i++) yo[i] = xr[i * sw];
            } else if (sw == 1) {
#pragma omp simd
                for (int64_t i = 0; i < n; i++) yo[i] = xr[i] > yo[i] ? xr[i] : yo[i];
            } else if (sw == 2) {
#pragma omp simd
                for (int64_t i = 0; i < n; i++) yo[i] = xr[2 * i] > yo[i] ? xr[2 * i] : yo[i];
            } else {
                for (int64_t i = 0; i < n; i++) yo[i] = xr[i * sw] > yo[i] ? xr[i * sw] : yo[i];
            }
        }
}

int ba_kern_maxpool2d(const ba_kern_geom_t *g, const float *x, float *y, int64_t planes) {
    if (g->in[0] != 1 || g->k[0] != 1 || g->out[0] != 1 || g->dil[1] != 1 || g->dil[2] != 1 || g->k[1] > 64)
        return 0;
    const int64_t IH = g->in[1], IW = g->in[2], OH = g->out[1], OW = g->out[2], KH = g->k[1];
    const int64_t Pin = IH * IW, P = OH * OW;
#pragma omp parallel for schedule(static) if (planes * P * KH * g->k[2] > KP_OMP_MIN_WORK)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * Pin;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t ihs[64];
            int nkh = 0;
            for (int64_t kh = 0; kh < KH; kh++) {
                const int64_t ih = oh * g->s[1] - g->pb[1] + kh;
                if (ih >= 0 && ih < IH) ihs[nkh++] = ih;
            }
            row_max(g, xp, ihs, nkh, y + pl * P + oh * OW);
        }
    }
    return 1;
}
