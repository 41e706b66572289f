/* model/kern_pool.c: the MaxPool fast path gives the generic loop's floats
 * bit for bit (first of equal taps, -0 vs +0, NaN, windows hanging over the
 * border, strides 1 to 3, 1-D and 2-D), and declines geometries it has no path for. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "model/kern_pool.h"

/* The generic kernel's rule (ops_pool.c): taps in (kh, kw) order, a later tap wins only when greater. */
static void naive(const ba_kern_geom_t *g, const float *x, float *y, int64_t planes) {
    const int64_t IH = g->in[1], IW = g->in[2], OH = g->out[1], OW = g->out[2];
    for (int64_t p = 0; p < planes; p++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                float best = -INFINITY;
                int first = 1;
                for (int64_t kh = 0; kh < g->k[1]; kh++)
                    for (int64_t kw = 0; kw < g->k[2]; kw++) {
                        int64_t ih = oh * g->s[1] - g->pb[1] + kh, iw = ow * g->s[2] - g->pb[2] + kw;
                        if (ih < 0 || ih >= IH || iw < 0 || iw >= IW) continue;
                        float v = x[(p * IH + ih) * IW + iw];
                        if (v > best || first) best = v, first = 0;
                    }
                y[(p * OH + oh) * OW + ow] = best;
            }
}

static void check(int64_t IH, int64_t IW, int64_t KH, int64_t KW, int64_t sh, int64_t sw, int64_t ph,
                  int64_t pw, int ceil_extra) {
    ba_kern_geom_t g;
    memset(&g, 0, sizeof g);
    g.nsp = IH == 1 && KH == 1 ? 1 : 2;
    for (int i = 0; i < BA_KERN_MAX_SP; i++) g.in[i] = g.k[i] = g.s[i] = g.dil[i] = g.out[i] = 1;
    g.in[1] = IH, g.in[2] = IW, g.k[1] = KH, g.k[2] = KW, g.s[1] = sh, g.s[2] = sw;
    g.pb[1] = g.pe[1] = ph, g.pb[2] = g.pe[2] = pw;
    g.out[1] = (IH + 2 * ph - KH) / sh + 1 + ceil_extra;
    g.out[2] = (IW + 2 * pw - KW) / sw + 1 + ceil_extra;
    const int64_t planes = 3, n = planes * IH * IW, m = planes * g.out[1] * g.out[2];
    float *x = malloc(sizeof(float) * (size_t)n), *a = malloc(sizeof(float) * (size_t)m),
          *b = malloc(sizeof(float) * (size_t)m);
    ba_rng_t r;
    ba_rng_seed(&r, (uint64_t)(IH * 1000 + IW * 10 + KW));
    for (int64_t i = 0; i < n; i++) {
        /* few distinct values: many ties, signed zeros, a NaN now and then */
        int k = (int)(ba_rng_normal(&r) * 2.0);
        x[i] = k == 0 ? ((i & 1) ? -0.0f : 0.0f) : (float)k;
        if (i % 37 == 5) x[i] = NAN;
        if (i % 41 == 7) x[i] = -INFINITY;
    }
    naive(&g, x, a, planes);
    cr_assert_eq(ba_kern_maxpool2d(&g, x, b, planes), 1);
    cr_assert(memcmp(a, b, sizeof(float) * (size_t)m) == 0,
              "%lldx%lld k%lldx%lld s%lld,%lld p%lld,%lld: differs", (long long)IH, (long long)IW,
              (long long)KH, (long long)KW, (long long)sh, (long long)sw, (long long)ph, (long long)pw);
    free(x), free(a), free(b);
}

Test(kern_pool, maxpool_fast_path_is_bit_identical) {
    check(8, 40, 2, 2, 2, 2, 0, 0, 0); /* openWakeWord / PaddleOCR */
    check(8, 40, 1, 2, 1, 2, 0, 0, 0);
    check(9, 33, 3, 3, 1, 1, 1, 1, 0); /* padded borders */
    check(9, 33, 3, 3, 2, 2, 1, 1, 1); /* ceil_mode: the last window hangs over */
    check(7, 50, 2, 5, 2, 3, 0, 2, 0); /* stride 3 */
    check(1, 64, 1, 3, 1, 2, 0, 1, 0); /* 1-D */
    check(5, 5, 5, 5, 1, 1, 0, 0, 0);  /* one window: no interior column beyond it */
    check(4, 6, 3, 7, 1, 1, 1, 3, 0);  /* kernel wider than the row */
}

Test(kern_pool, maxpool_fast_path_declines_dilation_and_3d) {
    ba_kern_geom_t g;
    memset(&g, 0, sizeof g);
    for (int i = 0; i < BA_KERN_MAX_SP; i++) g.in[i] = g.k[i] = g.s[i] = g.dil[i] = g.out[i] = 2;
    float x[64] = {0}, y[64];
    cr_expect_eq(ba_kern_maxpool2d(&g, x, y, 1), 0); /* 3-D */
    g.in[0] = g.k[0] = g.out[0] = 1;
    cr_expect_eq(ba_kern_maxpool2d(&g, x, y, 1), 0); /* dilation 2 */
}
