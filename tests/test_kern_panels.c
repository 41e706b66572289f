/* The conv product by packed im2col panels (ba_kern_conv_panels, AVX-512
 * CPUs) against the im2col + ba_kern_conv_gemm path it replaces: the same
 * floats bit for bit (each output adds its K terms in the same order onto the
 * bias, or from 0 with the bias after for several images side by side), and
 * within float rounding of a float64 loop (relative to the sum of the
 * terms' magnitudes). Geometries: padded and unpadded
 * windows, stride 2, dilation, uneven pads, 1x3 / 3x1 kernels, pointwise
 * images read in place or through panels, panels read in place from the
 * (padded) image or copied (images above 256 KiB), panels spanning two or
 * more output rows of small maps (16x16, 8x8, 12 wide; stride 1 and 2, ResNet's
 * shapes), row counts that are no multiple of
 * a tile, narrow products (the 16-column tile), and several small images side
 * by side whose planes split a tile's half (the scratch tile). Every output
 * is also checked bit for bit against the scalar in-order fmaf sum over the
 * im2col columns (independent of the vector tiles that both paths share:
 * full tiles load unmasked, 16-row narrow tiles address rows by offsets). With an
 * epilogue (ba_kern_epi_t), every output element goes through it exactly
 * once, after its final value is stored. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "model/kern_conv.h"

#define PANELS_RTOL 2e-6 /* of the sum of |terms|: float32 rounding of up to a few hundred terms */

typedef struct {
    int64_t nb, C, M, IH, IW, KH, KW, sh, sw, dh, dw, pt, pl, pb, pr;
    int bias;
} pcase_t;

static float *randn(int64_t n, uint64_t seed) {
    ba_rng_t r;
    ba_rng_seed(&r, seed);
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    cr_assert_not_null(v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)ba_rng_normal(&r);
    return v;
}

static ba_kern_geom_t geom_of(const pcase_t *c) {
    ba_kern_geom_t g;
    memset(&g, 0, sizeof g);
    g.nsp = 2;
    for (int i = 0; i < BA_KERN_MAX_SP; i++) g.in[i] = g.k[i] = g.s[i] = g.dil[i] = g.out[i] = 1;
    g.in[1] = c->IH;
    g.in[2] = c->IW;
    g.k[1] = c->KH;
    g.k[2] = c->KW;
    g.s[1] = c->sh;
    g.s[2] = c->sw;
    g.dil[1] = c->dh;
    g.dil[2] = c->dw;
    g.pb[1] = c->pt;
    g.pb[2] = c->pl;
    g.pe[1] = c->pb;
    g.pe[2] = c->pr;
    g.out[1] = (c->IH + c->pt + c->pb - ((c->KH - 1) * c->dh + 1)) / c->sh + 1;
    g.out[2] = (c->IW + c->pl + c->pr - ((c->KW - 1) * c->dw + 1)) / c->sw + 1;
    return g;
}

/* An epilogue that checks what it is given: each element once, after its
 * final value (= ref), with its channel; it rewrites it to y * 0.5 + 1. */
typedef struct {
    const float *ref;
    int *seen;
    int64_t yimg, P;
    int bad;
} epi_ctx_t;

static void epi_check(const void *vctx, float *yp, int64_t pos, int64_t len, int64_t c) {
    const epi_ctx_t *e = vctx;
    for (int64_t j = 0; j < len; j++) {
        const int64_t idx = pos + j;
        __atomic_fetch_add(&e->seen[idx], 1, __ATOMIC_RELAXED);
        if (memcmp(&yp[j], &e->ref[idx], sizeof(float)) != 0 || idx % e->yimg / e->P != c)
            __atomic_fetch_add((int *)&e->bad, 1, __ATOMIC_RELAXED);
        yp[j] = yp[j] * 0.5f + 1.0f;
    }
}

/* The panel path with an epilogue (ba_kern_epi_t): every output element goes
 * through it exactly once, with its final value and its channel; the gaps
 * between images are not touched. */
static void check_epilogue(const pcase_t *c, const ba_kern_geom_t *g, const float *x, int64_t ximg,
                           const float *w, const float *bias, int bias_last, const float *ref, int64_t yimg) {
    const int64_t P = g->out[1] * g->out[2], n = c->nb * yimg;
    float *y = malloc((size_t)n * sizeof(float));
    int *seen = calloc((size_t)n, sizeof(int));
    cr_assert(y && seen);
    memset(y, 0x7F, (size_t)n * sizeof(float));
    epi_ctx_t ec = {ref, seen, yimg, P, 0};
    const ba_kern_epi_t e = {epi_check, &ec, y, yimg / P, P}; /* yimg is a multiple of P here */
    cr_assert(ba_kern_conv_panels(x, c->nb, ximg, c->C, g, w, c->M, bias, bias_last, y, yimg, &e));
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; i++) {
        const int plane = i % yimg < c->M * P;
        const float want = plane ? ref[i] * 0.5f + 1.0f : ref[i];
        wrong += seen[i] != plane || memcmp(&y[i], &want, sizeof(float)) != 0;
    }
    cr_expect_eq(
        ec.bad, 0, "nb=%lld C=%lld M=%lld %lldx%lld: the epilogue saw %d unfinished or misplaced floats",
        (long long)c->nb, (long long)c->C, (long long)c->M, (long long)c->IH, (long long)c->IW, ec.bad);
    cr_expect_eq(wrong, 0, "nb=%lld C=%lld M=%lld %lldx%lld: %lld floats not run once through the epilogue",
                 (long long)c->nb, (long long)c->C, (long long)c->M, (long long)c->IH, (long long)c->IW,
                 (long long)wrong);
    free(y);
    free(seen);
}

static void check_case(const pcase_t *c, uint64_t seed) {
    const ba_kern_geom_t g = geom_of(c);
    const int64_t P = g.out[1] * g.out[2], Pin = c->IH * c->IW, K = c->C * c->KH * c->KW;
    const int64_t nb = c->nb, M = c->M, ldcol = P + BA_KERN_COL_PAD;
    /* images lie one channel apart more than C: the panels must follow ximg, not C * Pin */
    const int64_t ximg = (c->C + 1) * Pin, yimg = (M + 2) * P;
    float *x = randn(nb * ximg, seed), *w = randn(M * K, seed + 1), *b = randn(M, seed + 2);
    float *y = malloc((size_t)(nb * yimg) * sizeof(float)),
          *ref = malloc((size_t)(nb * yimg) * sizeof(float));
    float *cols = malloc((size_t)(K * ldcol) * sizeof(float));
    cr_assert(y && ref && cols);
    memset(y, 0x7F, (size_t)(nb * yimg) * sizeof(float)); /* the gaps between images must stay as they are */
    memcpy(ref, y, (size_t)(nb * yimg) * sizeof(float));
    const float *bias = c->bias ? b : NULL;
    const int bias_last = nb > 1;
    cr_assert(ba_kern_conv_panels(x, nb, ximg, c->C, &g, w, M, bias, bias_last, y, yimg, NULL),
              "the panel path refused an eligible geometry");
    for (int64_t i = 0; i < nb; i++) { /* the path it replaces, image by image */
        ba_kern_im2col(x + i * ximg, c->C, &g, cols, ldcol);
        float *yi = ref + i * yimg;
        ba_kern_conv_gemm(M, P, K, w, K, cols, ldcol, bias_last ? NULL : bias, yi, P);
        if (bias_last)
            for (int64_t m = 0; m < M; m++)
                for (int64_t p = 0; p < P; p++) yi[m * P + p] = yi[m * P + p] + (bias ? bias[m] : 0.0f);
    }
    /* independent of the vector kernels (the gemm above shares their tiles): each output as the scalar
     * in-order sum fmaf(w, x, acc) over k from the bias (from 0 with the bias after) */
    int64_t seqdiff = 0;
    for (int64_t i = 0; i < nb; i++) {
        ba_kern_im2col(x + i * ximg, c->C, &g, cols, ldcol);
        for (int64_t m = 0; m < M; m++)
            for (int64_t p = 0; p < P; p++) {
                const float b0 = bias ? bias[m] : 0.0f;
                float acc = bias_last ? 0.0f : b0;
                for (int64_t k = 0; k < K; k++) acc = fmaf(w[m * K + k], cols[k * ldcol + p], acc);
                if (bias_last) acc = acc + b0;
                seqdiff += memcmp(&acc, &y[i * yimg + m * P + p], sizeof(float)) != 0;
            }
    }
    cr_expect_eq(seqdiff, 0,
                 "nb=%lld C=%lld M=%lld %lldx%lld k%lldx%lld s%lld: %lld floats differ from the in-order sum",
                 (long long)nb, (long long)c->C, (long long)M, (long long)c->IH, (long long)c->IW,
                 (long long)c->KH, (long long)c->KW, (long long)c->sh, (long long)seqdiff);
    int64_t diff = 0;
    for (int64_t i = 0; i < nb * yimg; i++) diff += memcmp(&y[i], &ref[i], sizeof(float)) != 0;
    cr_expect_eq(diff, 0,
                 "nb=%lld C=%lld M=%lld %lldx%lld k%lldx%lld s%lld,%lld d%lld,%lld pads %lld %lld %lld %lld: "
                 "%lld of %lld floats differ from im2col + gemm",
                 (long long)nb, (long long)c->C, (long long)M, (long long)c->IH, (long long)c->IW,
                 (long long)c->KH, (long long)c->KW, (long long)c->sh, (long long)c->sw, (long long)c->dh,
                 (long long)c->dw, (long long)c->pt, (long long)c->pl, (long long)c->pb, (long long)c->pr,
                 (long long)diff, (long long)(nb * yimg));
    check_epilogue(c, &g, x, ximg, w, bias, bias_last, ref, yimg);
    double worst = 0;
    for (int64_t i = 0; i < nb; i++)
        for (int64_t m = 0; m < M; m++)
            for (int64_t oh = 0; oh < g.out[1]; oh++)
                for (int64_t ow = 0; ow < g.out[2]; ow++) {
                    double acc = bias ? bias[m] : 0.0, mag = fabs(acc);
                    for (int64_t ch = 0; ch < c->C; ch++)
                        for (int64_t kh = 0; kh < c->KH; kh++)
                            for (int64_t kw = 0; kw < c->KW; kw++) {
                                const int64_t ih = oh * c->sh - c->pt + kh * c->dh;
                                const int64_t iw = ow * c->sw - c->pl + kw * c->dw;
                                if (ih < 0 || ih >= c->IH || iw < 0 || iw >= c->IW) continue;
                                const double t = (double)w[((m * c->C + ch) * c->KH + kh) * c->KW + kw] *
                                                 x[i * ximg + (ch * c->IH + ih) * c->IW + iw];
                                acc += t;
                                mag += fabs(t);
                            }
                    const double got = y[i * yimg + m * P + oh * g.out[2] + ow];
                    const double e = fabs(got - acc) / fmax(1.0, mag);
                    if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
                }
    cr_expect(worst < PANELS_RTOL, "nb=%lld C=%lld M=%lld %lldx%lld k%lldx%lld: error %g against float64",
              (long long)nb, (long long)c->C, (long long)M, (long long)c->IH, (long long)c->IW,
              (long long)c->KH, (long long)c->KW, worst);
    free(x);
    free(w);
    free(b);
    free(y);
    free(ref);
    free(cols);
}

static const pcase_t cases[] = {
    /* nb  C   M  IH  IW KH KW sh sw dh dw pt pl pb pr bias */
    {1, 5, 13, 9, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},    /* 81 columns: panels 32, 32, 17; 13 rows */
    {1, 7, 20, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},    /* 16 columns: the 16-wide tile, rows 16 + 4 */
    {1, 16, 24, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0}, /* whole-row panels, no bias */
    {3, 6, 16, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},    /* three 4x4 images side by side, bias after */
    {3, 6, 9, 5, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},     /* 25-pixel planes split tile halves */
    {2, 3, 8, 11, 13, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},   /* stride 2, odd sizes */
    {1, 4, 8, 12, 40, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 1},   /* stride 2, pads only after */
    {1, 4, 10, 14, 14, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1},  /* dilation 2 */
    {1, 12, 12, 30, 8, 1, 3, 1, 1, 1, 1, 0, 1, 0, 1, 1},  /* 1x3, pads on the width only */
    {4, 12, 12, 8, 2, 1, 3, 1, 1, 1, 1, 0, 1, 0, 1, 1},   /* 1x3 on 8x2 planes, four images */
    {1, 12, 12, 30, 8, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1},  /* 3x1 unpadded: the image read in place */
    {2, 12, 12, 10, 2, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1},  /* 3x1 unpadded, two images */
    {1, 9, 17, 6, 24, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1},   /* pointwise, read in place */
    {1, 20, 8, 48, 48, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1}, /* pointwise, wide and deep: read in place by rows */
    {1, 40, 8, 48, 48, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1}, /* pointwise, image above 256 KiB: through panels */
    {2, 32, 9, 48, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1,
     1}, /* padded image above 256 KiB: whole-row panels filled */
    {1, 8, 8, 48, 48, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1}, /* pointwise, wide but few channels: in place */
    {5, 9, 17, 3, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1},  /* pointwise, five small images side by side */
    {1, 2, 5, 1, 50, 1, 3, 1, 1, 1, 1, 0, 1, 0, 1, 1},  /* a 1-D conv (one row) */
    /* small maps whose panels span output rows: halves of one output row (16x16), of two (8x8, 12 wide) */
    {1, 6, 20, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1}, /* 16x16: one row per half */
    {2, 5, 11, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},   /* 8x8, two images: two rows per half */
    {1, 4, 9, 10, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},  /* 12 wide: pieces of 12 + 4, 8 + 8, 4 + 12 */
    {1, 3, 8, 8, 8, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 0},    /* 8x8, dilation 2 */
    {1, 3, 8, 9, 9, 3, 3, 1, 1, 1, 1, 0, 1, 2, 0, 1},    /* uneven pads: 9x8 output */
    {3, 4, 10, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1}, /* three 16x16 images side by side */
    {1, 4, 9, 16, 16, 1, 3, 1, 1, 1, 1, 0, 1, 0, 1, 1},  /* 1x3 on 16x16 */
    /* stride 2 on small maps (ResNet's downsampling convs) and odd geometries */
    {2, 5, 12, 32, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1}, /* 32x32 -> 16x16, two images */
    {1, 6, 9, 16, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},  /* 16x16 -> 8x8 */
    {3, 4, 8, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0},    /* 8x8 -> 4x4, three images */
    {1, 3, 8, 20, 22, 5, 5, 2, 2, 1, 1, 2, 2, 2, 2, 1},  /* 5x5 */
    {1, 3, 8, 17, 19, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1},  /* dilation 2, odd sizes */
    {1, 3, 8, 16, 33, 3, 3, 2, 2, 1, 1, 0, 1, 1, 0, 1},  /* uneven pads, odd width */
    {1, 3, 8, 12, 32, 3, 3, 1, 2, 1, 1, 1, 1, 1, 1, 1},  /* stride 1 x 2 */
    /* whole 16-row tiles of the narrow product (unmasked and masked columns) and full 8x32 tiles */
    {1, 8, 48, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},    /* 4x4, 16 columns, three 16-row tiles */
    {1, 7, 32, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},    /* 3x3: 9 columns, masked, two 16-row tiles */
    {1, 16, 32, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},   /* 8x8 -> 4x4 stride 2 (ResNet) */
    {1, 9, 16, 4, 4, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1},    /* pointwise 4x4 read in place */
    {1, 12, 24, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0}, /* 16x16: full 32-column tiles, 8-row tiles */
};

Test(kern_panels, panels_give_the_floats_of_im2col_and_gemm) {
    ba_kern_geom_t g = geom_of(&cases[0]);
    if (!ba_kern_conv_panels_ok(&g)) cr_skip_test("no AVX-512 on this CPU: the panel path is off");
    for (int t = 1; t <= 2; t++) { /* one thread, then panels split over two */
        omp_set_num_threads(t);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i], 100 + 7 * i);
    }
}

Test(kern_panels, panels_refuse_strides_above_two_and_3d_windows) {
    pcase_t c = {1, 2, 4, 9, 9, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1};
    ba_kern_geom_t g = geom_of(&c);
    cr_expect_not(ba_kern_conv_panels_ok(&g), "stride 3 is not a panel geometry");
    float x[4] = {0}, w[4] = {0}, y[4] = {0};
    cr_expect_eq(ba_kern_conv_panels(x, 1, 81, 2, &g, w, 4, NULL, 0, y, 4, NULL), 0);
    c.sh = c.sw = 1;
    g = geom_of(&c);
    g.k[0] = 2; /* a 3-D window */
    g.in[0] = 4;
    cr_expect_not(ba_kern_conv_panels_ok(&g), "3-D windows take the im2col path");
}
