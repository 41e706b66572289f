/* Backward of Conv (1-D to 3-D, groups, dilations, pads): per group and chunk
 * of images, im2col of X then two sgemm — dW += dY·colsᵀ and
 * dcols = Wᵀ·dY — and col2im of dcols into dX; dB is the sum of dY.
 * Depthwise convs take a direct loop. ConvTranspose (every attribute of its
 * forward) turns the same around: im2col of dY, then dX += W·dcols and
 * dW += X·dcolsᵀ. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "model/grad_internal.h"
#include "model/kern_conv.h"

/* As the forward: below this many output pixels per image several images
 * share one sgemm (OpenBLAS is slow on narrow products). */
#define GCONV_GEMM_MIN_N 1024
/* Cap on the workspace of one chunk (floats: cols + dcols + dY gather, 192 MiB). */
#define GCONV_WS_MAX_FLOATS (48LL * 1024 * 1024)
/* Widest depthwise kernel of the direct path (as ops_conv.c's forward). */
#define DW_MAX_KW 64

/* g with input and output swapped: the geometry of its adjoint (a conv from
 * the output image back to the input's positions; col2im's roles). */
static ba_kern_geom_t swapped(const ba_kern_geom_t *g) {
    ba_kern_geom_t sw = *g;
    for (int i = 0; i < BA_KERN_MAX_SP; i++) {
        sw.in[i] = g->out[i];
        sw.out[i] = g->in[i];
    }
    return sw;
}

/* Depthwise conv (group == C, one input channel per group), 1-D/2-D: the
 * generic path ran an M=1 sgemm per channel over its im2col, 10x the
 * forward's cost on MobileNetV2; this is the forward's direct loop turned
 * around (one channel per thread: its dX plane and dW rows are its own).
 * The dW dot products run on DWB_LANES partial sums (a serial float sum
 * does not vectorise): the order of additions is fixed by DWB_LANES, the
 * same on every machine, and the AVX-512 build of the same code gives the
 * same floats (no FMA contraction in C11 mode). */
#define DWB_LANES 8
typedef float dwb_vec_t __attribute__((vector_size(DWB_LANES * sizeof(float))));

typedef struct {
    int64_t IH, IW, KH, KW, OH, OW, sh, sw, dh, dw, ph, pw, mult;
    const int64_t *plo, *phi;
} dwb_geom_t;

/* Σ_{ow in [l, h)} g[ow]·x[ow·sw]: DWB_LANES running sums, then the lanes in order, then the tail. */
static inline float dwb_dot(const float *g, const float *x, int64_t sw, int64_t l, int64_t h) {
    dwb_vec_t acc = {0};
    int64_t ow = l;
    for (; ow + DWB_LANES <= h; ow += DWB_LANES) {
        dwb_vec_t gv, xv;
        memcpy(&gv, g + ow, sizeof gv);
        if (sw == 1) {
            memcpy(&xv, x + ow, sizeof xv);
        } else {
            for (int i = 0; i < DWB_LANES; i++) xv[i] = x[(ow + i) * sw];
        }
        acc += gv * xv;
    }
    float s = 0.0f;
    for (int i = 0; i < DWB_LANES; i++) s += acc[i];
    for (; ow < h; ow++) s += g[ow] * x[ow * sw];
    return s;
}

/* dr[ow·sw] += wv·g[ow] for ow in [l, h). */
static inline void dwb_axpy(float *dr, const float *g, float wv, int64_t sw, int64_t l, int64_t h) {
    int64_t ow = l;
    if (sw == 1) {
        for (; ow + DWB_LANES <= h; ow += DWB_LANES) {
            dwb_vec_t gv, dv;
            memcpy(&gv, g + ow, sizeof gv);
            memcpy(&dv, dr + ow, sizeof dv);
            dv += gv * wv;
            memcpy(dr + ow, &dv, sizeof dv);
        }
    }
    for (; ow < h; ow++) dr[ow * sw] += wv * g[ow];
}

/* One (image, output channel) plane: dW row m and dX plane of channel m/mult. */
__attribute__((always_inline)) static inline void
dwb_plane(const dwb_geom_t *d, const float *xp, const float *wp, const float *gp, float *dxp, float *dwp) {
    for (int64_t oh = 0; oh < d->OH; oh++) {
        const float *grow = gp + oh * d->OW;
        for (int64_t kh = 0; kh < d->KH; kh++) {
            int64_t ih = oh * d->sh - d->ph + kh * d->dh;
            if (ih < 0 || ih >= d->IH) continue;
            for (int64_t kw = 0; kw < d->KW; kw++) {
                const int64_t off = ih * d->IW + kw * d->dw - d->pw, l = d->plo[kw], h = d->phi[kw];
                if (dwp) dwp[kh * d->KW + kw] += dwb_dot(grow, xp + off, d->sw, l, h);
                if (dxp) dwb_axpy(dxp + off, grow, wp[kh * d->KW + kw], d->sw, l, h);
            }
        }
    }
}

static void dwb_planes_generic(const dwb_geom_t *d, const float *x, const float *w, const float *dy,
                               float *dx, float *dw, int64_t N, int64_t C, int64_t M, int nt) {
    const int64_t P = d->IH * d->IW, Q = d->OH * d->OW, K = d->KH * d->KW;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t c = 0; c < C; c++)
        for (int64_t m = c * d->mult; m < (c + 1) * d->mult; m++)
            for (int64_t n = 0; n < N; n++)
                dwb_plane(d, x + (n * C + c) * P, w + m * K, dy + (n * M + m) * Q,
                          dx ? dx + (n * C + c) * P : NULL, dw ? dw + m * K : NULL);
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static void dwb_planes_avx512(const dwb_geom_t *d, const float *x,
                                                                 const float *w, const float *dy, float *dx,
                                                                 float *dw, int64_t N, int64_t C, int64_t M,
                                                                 int nt) {
    const int64_t P = d->IH * d->IW, Q = d->OH * d->OW, K = d->KH * d->KW;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t c = 0; c < C; c++)
        for (int64_t m = c * d->mult; m < (c + 1) * d->mult; m++)
            for (int64_t n = 0; n < N; n++)
                dwb_plane(d, x + (n * C + c) * P, w + m * K, dy + (n * M + m) * Q,
                          dx ? dx + (n * C + c) * P : NULL, dw ? dw + m * K : NULL);
}
#endif

static void depthwise_backward(const float *x, const float *w, const float *dy, float *dx, float *dw,
                               int64_t N, int64_t C, int64_t M, const ba_kern_geom_t *g) {
    int64_t plo[DW_MAX_KW], phi[DW_MAX_KW]; /* valid ow range per kw */
    for (int64_t kw = 0; kw < g->k[2]; kw++)
        ba_kern_window_taps(kw * g->dil[2] - g->pb[2], g->s[2], g->out[2], g->in[2], &plo[kw], &phi[kw]);
    const dwb_geom_t d = {g->in[1],  g->in[2],  g->k[1],  g->k[2],  g->out[1], g->out[2], g->s[1], g->s[2],
                          g->dil[1], g->dil[2], g->pb[1], g->pb[2], M / C,     plo,       phi};
    const int nt = ba_kern_threads(N * M * d.OH * d.OW * d.KH * d.KW);
#if defined(__x86_64__)
    if (ba_kern_have_avx512f()) {
        dwb_planes_avx512(&d, x, w, dy, dx, dw, N, C, M, nt);
        return;
    }
#endif
    dwb_planes_generic(&d, x, w, dy, dx, dw, N, C, M, nt);
}

/* dB[m] += Σ_{n,p} dY[n, m, p] for dY (N, M, P). */
static void bias_backward(const float *dy, int64_t N, int64_t M, int64_t P, float *dB) {
    for (int64_t i = 0; i < N; i++)
        for (int64_t m = 0; m < M; m++) {
            const float *r = dy + (i * M + m) * P;
            double s = 0.0;
            for (int64_t p = 0; p < P; p++) s += r[p];
            dB[m] += (float)s;
        }
}

/* dB[m] += Σ_{n,p} dY when the bias (input 2) needs its gradient; *dX and
 * *dW: the slots of X and W where they need one (else NULL). */
static ba_status conv_grad_slots(ba_tensor_t *const *in, int nin, const unsigned char *need,
                                 ba_tensor_t **din, const float *dy, int64_t N, int64_t M, int64_t P,
                                 float **dX, float **dW, ba_error *err) {
    if (nin > 2 && in[2] && need[2]) {
        float *dB = ba_grad_slot(din, 2, in[2], err);
        if (!dB) return err->code;
        bias_backward(dy, N, M, P, dB);
    }
    if (need[0] && !(*dX = ba_grad_slot(din, 0, in[0], err))) return err->code;
    if (need[1] && !(*dW = ba_grad_slot(din, 1, in[1], err))) return err->code;
    return BA_OK;
}

/* Images to put side by side in one sgemm when each has only `cols` (< GCONV_GEMM_MIN_N)
 * columns, capped so that the workspace (ws floats per image) stays under GCONV_WS_MAX_FLOATS. */
static int64_t images_per_gemm(int64_t cols, int64_t N, int64_t ws) {
    int64_t nb = 1;
    if (cols < GCONV_GEMM_MIN_N && N > 1) {
        nb = (GCONV_GEMM_MIN_N + cols - 1) / cols;
        int64_t cap = GCONV_WS_MAX_FLOATS / ws;
        if (nb > cap) nb = cap;
        if (nb > N) nb = N;
        if (nb < 1) nb = 1;
    }
    return nb;
}

/* X (N, C, *in), W (M, C/group, *k), B (M); dY (N, M, *out). */
ba_status ba_conv_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                           int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                           ba_error *err) {
    (void)out;
    (void)nout;
    const ba_tensor_t *X = in[0], *W = in[1], *dY = dout[0];
    const int nsp = X->ndim - 2;
    const int64_t N = X->shape[0], C = X->shape[1], M = W->shape[0], Cg = W->shape[1];
    const int64_t group = ba_node_attr_int(n, "group", 1);
    ba_kern_geom_t g;
    BA_TRY(ba_kern_geom_make(n, nsp, X->shape + 2, W->shape + 2, 0, &g, err));
    const int64_t Mg = M / group, Pin = g.in[0] * g.in[1] * g.in[2], P = g.out[0] * g.out[1] * g.out[2];
    const int64_t K = Cg * g.k[0] * g.k[1] * g.k[2];
    const float *dy = dY->data;
    float *dX = NULL, *dW = NULL;
    BA_TRY(conv_grad_slots(in, nin, need, din, dy, N, M, P, &dX, &dW, err));
    if ((!dX && !dW) || N == 0 || P == 0 || M == 0 || K == 0) return BA_OK;
    if (group == C && Cg == 1 && nsp <= 2 && g.k[2] <= DW_MAX_KW) {
        depthwise_backward(X->data, W->data, dy, dX, dW, N, C, M, &g);
        return BA_OK;
    }
    const int64_t nb = images_per_gemm(P, N, 2 * K * P + Mg * P);
    const ba_kern_geom_t sw = swapped(&g); /* dX's col2im */
    float *cols = ba_malloc((size_t)(2 * K + Mg) * (size_t)(nb * P) * sizeof(float), err);
    if (!cols) return err->code;
    float *dcols = cols + K * nb * P, *dyg = dcols + K * nb * P;
    const float *x = X->data, *w = W->data;
    for (int64_t n0 = 0; n0 < N; n0 += nb) {
        const int64_t nbb = N - n0 < nb ? N - n0 : nb, ld = nbb * P;
        for (int64_t gi = 0; gi < group; gi++) {
            /* dY of the group, images side by side: (Mg, nbb*P). */
            for (int64_t j = 0; j < nbb; j++)
                for (int64_t m = 0; m < Mg; m++)
                    memcpy(dyg + m * ld + j * P, dy + ((n0 + j) * M + gi * Mg + m) * P,
                           (size_t)P * sizeof(float));
            if (dW) {
                for (int64_t j = 0; j < nbb; j++)
                    ba_kern_im2col(x + ((n0 + j) * C + gi * Cg) * Pin, Cg, &g, cols + j * P, ld);
                /* dW_g (Mg, K) += dY_g (Mg, ld) · cols^T (ld, K) */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Mg, (int)K, (int)ld, 1.0f, dyg,
                            (int)ld, cols, (int)ld, 1.0f, dW + gi * Mg * K, (int)K);
            }
            if (dX) {
                /* dcols (K, ld) = W_g^T (K, Mg) · dY_g (Mg, ld) */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)ld, (int)Mg, 1.0f,
                            w + gi * Mg * K, (int)K, dyg, (int)ld, 0.0f, dcols, (int)ld);
                for (int64_t j = 0; j < nbb; j++)
                    ba_kern_col2im_add(dcols + j * P, ld, Cg, &sw, dX + ((n0 + j) * C + gi * Cg) * Pin);
            }
        }
    }
    free(cols);
    return BA_OK;
}

/* X (N, C, *in), W (C, M/group, *k), B (M); dY (N, M, *out). The forward is
 * Y_g = col2im(W_gᵀ · X_g) (ops_conv.c), so with dcols (Mg*KK, Pin) = im2col
 * of dY_g over the swapped geometry (image: the output; positions: X's):
 * dX_g (Cg, Pin) += W_g (Cg, Mg*KK) · dcols and dW_g += X_g · dcolsᵀ.
 * Images with few input pixels go side by side (nb per sgemm). */
ba_status ba_convt_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                            int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                            ba_error *err) {
    (void)out;
    (void)nout;
    const ba_tensor_t *X = in[0], *W = in[1], *dY = dout[0];
    const int64_t N = X->shape[0], C = X->shape[1], group = ba_node_attr_int(n, "group", 1);
    ba_kern_geom_t g;
    BA_TRY(ba_kern_convt_geom(n, X, W, &g, err));
    const int64_t Cg = C / group, Mg = W->shape[1], M = Mg * group;
    const int64_t Pin = g.in[0] * g.in[1] * g.in[2], P = g.out[0] * g.out[1] * g.out[2];
    const int64_t R = Mg * g.k[0] * g.k[1] * g.k[2];
    const float *dy = dY->data;
    float *dX = NULL, *dW = NULL;
    BA_TRY(conv_grad_slots(in, nin, need, din, dy, N, M, P, &dX, &dW, err));
    if ((!dX && !dW) || N == 0 || Pin == 0 || R == 0 || Cg == 0) return BA_OK;
    const ba_kern_geom_t sw = swapped(&g); /* the adjoint: a conv from the output image to X's positions */
    const int64_t nb = images_per_gemm(Pin, N, R * Pin + 2 * Cg * Pin);
    /* dcols (R, nb*Pin), xg: X_g or dX_g of the chunk's images side by side (Cg, nb*Pin) */
    float *dcols = ba_malloc((size_t)(R + Cg) * (size_t)(nb * Pin) * sizeof(float), err);
    if (!dcols) return err->code;
    float *xg = dcols + R * nb * Pin;
    const float *x = X->data, *w = W->data;
    for (int64_t n0 = 0; n0 < N; n0 += nb) {
        const int64_t nbb = N - n0 < nb ? N - n0 : nb, ld = nbb * Pin;
        for (int64_t gi = 0; gi < group; gi++) {
            for (int64_t j = 0; j < nbb; j++)
                ba_kern_im2col(dy + ((n0 + j) * M + gi * Mg) * P, Mg, &sw, dcols + j * Pin, ld);
            if (dW) {
                for (int64_t j = 0; j < nbb; j++)
                    for (int64_t c = 0; c < Cg; c++)
                        memcpy(xg + c * ld + j * Pin, x + ((n0 + j) * C + gi * Cg + c) * Pin,
                               (size_t)Pin * sizeof(float));
                /* dW_g (Cg, R) += X_g (Cg, ld) · dcols^T (ld, R) */
                ba_kern_sgemm(0, 1, Cg, R, ld, 1.0f, xg, ld, dcols, ld, 1.0f, dW + gi * Cg * R, R);
            }
            if (dX) {
                /* X_g's gradient (Cg, ld) = W_g (Cg, R) · dcols (R, ld) */
                ba_kern_sgemm(0, 0, Cg, ld, R, 1.0f, w + gi * Cg * R, R, dcols, ld, 0.0f, xg, ld);
                for (int64_t j = 0; j < nbb; j++)
                    for (int64_t c = 0; c < Cg; c++) {
                        float *d = dX + ((n0 + j) * C + gi * Cg + c) * Pin;
                        const float *sv = xg + c * ld + j * Pin;
                        for (int64_t p = 0; p < Pin; p++) d[p] += sv[p];
                    }
            }
        }
    }
    free(dcols);
    return BA_OK;
}
