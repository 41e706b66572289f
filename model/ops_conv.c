/* Kernels of the conv family (see model/ops.h): Conv and ConvTranspose over
 * 1-D, 2-D and 3-D images, float32. Conv is, per group, the product of the
 * weights by packed im2col panels (ba_kern_conv_panels: AVX-512, 1-D/2-D,
 * column stride 1 or 2), else im2col + product per image (a 1x1 stride-1 conv
 * multiplies the image directly); a depthwise conv runs a direct loop;
 * ConvTranspose is a product + col2im. In a fused forward run, the panel and
 * depthwise paths apply the region's epilogue (model/fuse.h) to their output
 * while it is in cache. */
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/fuse.h"
#include "model/kern_conv.h"
#include "model/ops.h"

/* Conv sgemms narrower than this (output pixels) take several images at
 * once: OpenBLAS sgemm loses most of its speed below a few hundred columns
 * (7x7 ResNet stages: 7x slower than one wide call, measured). */
#define CONV_GEMM_MIN_N 1024
/* Cap on the batched im2col + product workspace (floats, 256 MiB). */
#define CONV_WS_MAX_FLOATS (64LL * 1024 * 1024)
/* Widest and tallest depthwise kernel the direct path takes (larger ones use im2col). */
#define DW_MAX_KW 64

static ba_status bad(const ba_node_t *node, const char *what, const ba_tensor_t *t, ba_error *err) {
    char b[128];
    return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): %s has shape %s", node->name, node->op_type, what,
                        ba_shape_str(t->ndim, t->shape, b, sizeof b));
}

/* Checks the optional bias B of a conv: shape [M]. */
static ba_status check_bias(const ba_node_t *node, const ba_tensor_t *b, int64_t M, ba_error *err) {
    if (!b) return BA_OK;
    BA_TRY(ba_kern_need_f32(node, b, "bias B", err));
    if (b->ndim != 1 || b->shape[0] != M) return bad(node, "bias B (expected [output channels])", b, err);
    return BA_OK;
}

/* y (N, M, P), allocated uninitialised: every plane m starts at bias[m] (or 0). */
static void fill_bias(float *y, const ba_tensor_t *b, int64_t N, int64_t M, int64_t P) {
    const float *bv = b ? b->data : NULL;
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++) {
            float *p = y + (n * M + m) * P;
            const float v = bv ? bv[m] : 0.0f;
            for (int64_t i = 0; i < P; i++) p[i] = v;
        }
}

/* Depthwise conv (group == C, one input channel per group), 1-D/2-D:
 * x (N, C, IH, IW), w (M, 1, KH, KW) with M = C * mult, bias (M) or NULL,
 * y (N, M, OH, OW), every element written. Per output row: the columns where every tap of
 * the row lies inside the image are computed DW_BLOCK at a time with the sum
 * kept in registers over all taps (one store of y instead of a load and a
 * store per tap); the border columns take the taps that exist. Either way each
 * output adds its taps in the same order (kh, then kw) onto the bias, so all
 * paths, and the vector widths, give the same floats. */
#define DW_BLOCK 16
#define DW_GROUP 4 /* interior blocks computed together */
typedef float dw_vec_t __attribute__((vector_size(DW_BLOCK * sizeof(float))));
typedef struct {
    int64_t IH, IW, KH, KW, OH, OW, sh, sw, dh, dw, ph, pw, mult;
    int64_t lo, hi; /* columns whose taps are all inside the row */
    const int64_t *plo, *phi;
    /* AVX-512 rows (stride 1): per 16-column block of a row, its first column, its lanes and its
     * per-kw tap masks (block-major, KW each), the same for every row of the conv */
    const int64_t *bow0;
    const uint16_t *blive, *bmk;
} dw_geom_t;

#if defined(__x86_64__)
/* ng (1..DW_GROUP, a constant after inlining) blocks of 16 columns starting
 * at ow0[], sums in registers; see dw_row_avx512. */
__attribute__((target("avx512f"), always_inline)) static inline void
dw_blocks_avx512(const dw_geom_t *d, const float *xp, const float *wp, float b0, float *yrow, int64_t oh,
                 const int64_t *khs, int64_t nkh, int64_t b, const int ng) {
    const int64_t IW = d->IW, KW = d->KW;
    const int64_t *ow0 = d->bow0 + b;
    const uint16_t *mk = d->bmk + b * KW, *live = d->blive + b;
    __m512 av[DW_GROUP];
#pragma GCC unroll 4
    for (int g = 0; g < ng; g++) av[g] = _mm512_set1_ps(b0);
    for (int64_t t = 0; t < nkh; t++) {
        const int64_t kh = khs[t], ih = oh * d->sh - d->ph + kh * d->dh;
        const float *xr = xp + ih * IW - d->pw, *wk = wp + kh * KW;
        for (int64_t kw = 0; kw < KW; kw++) {
            const __m512 wv = _mm512_set1_ps(wk[kw]);
#pragma GCC unroll 4
            for (int g = 0; g < ng; g++) {
                const __mmask16 m = (__mmask16)mk[g * KW + kw];
                const __m512 xv = _mm512_maskz_loadu_ps(m, xr + ow0[g] + kw * d->dw);
                av[g] = _mm512_mask_add_ps(av[g], m, av[g], _mm512_mul_ps(xv, wv));
            }
        }
    }
#pragma GCC unroll 4
    for (int g = 0; g < ng; g++) _mm512_mask_storeu_ps(yrow + ow0[g], (__mmask16)live[g], av[g]);
}

/* One output row of a stride-1 depthwise conv, AVX-512, every column in
 * blocks of 16 (the last block moved back to end at OW; DW_GROUP blocks at a
 * time, independent sums): a tap is added only on the lanes whose input
 * column exists (masked loads and adds), so border columns and rows narrower
 * than a block take the vector path too, and each output still adds its
 * existing taps in order (kh, then kw) onto the bias, rounding the product
 * and the sum apart. Overlapping blocks store equal values. */
__attribute__((target("avx512f"), noinline)) static void dw_row_avx512(const dw_geom_t *d, const float *xp,
                                                                       const float *wp, float b0, float *yrow,
                                                                       int64_t oh, const int64_t *khs,
                                                                       int64_t nkh) {
    const int64_t nblk = (d->OW + DW_BLOCK - 1) / DW_BLOCK;
    for (int64_t b = 0; b < nblk; b += DW_GROUP) {
        const int ng = nblk - b < DW_GROUP ? (int)(nblk - b) : DW_GROUP;
        switch (ng) {
        case 4: dw_blocks_avx512(d, xp, wp, b0, yrow, oh, khs, nkh, b, 4); break;
        case 3: dw_blocks_avx512(d, xp, wp, b0, yrow, oh, khs, nkh, b, 3); break;
        case 2: dw_blocks_avx512(d, xp, wp, b0, yrow, oh, khs, nkh, b, 2); break;
        default: dw_blocks_avx512(d, xp, wp, b0, yrow, oh, khs, nkh, b, 1); break;
        }
    }
}
#endif

__attribute__((always_inline)) static inline void dw_plane(const dw_geom_t *d, const float *xp,
                                                           const float *wp, float b0, float *yp, int vec512) {
    const int64_t IW = d->IW, KW = d->KW, OW = d->OW, sw = d->sw, lo = d->lo, hi = d->hi;
    const float *xend = xp + d->IH * IW; /* end of the plane: loads stay before it */
    for (int64_t oh = 0; oh < d->OH; oh++) {
        float *yrow = yp + oh * OW;
        int64_t khs[DW_MAX_KW], nkh = 0; /* tap rows inside the image, ascending (caller: KH <= DW_MAX_KW) */
        for (int64_t kh = 0; kh < d->KH; kh++) {
            int64_t ih = oh * d->sh - d->ph + kh * d->dh;
            if (ih >= 0 && ih < d->IH) khs[nkh++] = kh;
        }
#if defined(__x86_64__)
        if (vec512 && sw == 1) {
            dw_row_avx512(d, xp, wp, b0, yrow, oh, khs, nkh);
            continue;
        }
#else
        (void)vec512;
#endif
        /* border columns, one at a time */
        for (int64_t ow = 0; ow < OW; ow++) {
            if (ow == lo && hi > lo) ow = hi;
            if (ow >= OW) break;
            float acc = b0;
            for (int64_t t = 0; t < nkh; t++) {
                const int64_t kh = khs[t], ih = oh * d->sh - d->ph + kh * d->dh;
                const float *xr = xp + ih * IW - d->pw, *wk = wp + kh * KW;
                for (int64_t kw = 0; kw < KW; kw++)
                    if (ow >= d->plo[kw] && ow < d->phi[kw]) acc += wk[kw] * xr[ow * sw + kw * d->dw];
            }
            yrow[ow] = acc;
        }
        if (hi - lo < DW_BLOCK) { /* narrow interior: one at a time */
            for (int64_t ow = lo; ow < hi; ow++) {
                float acc = b0;
                for (int64_t t = 0; t < nkh; t++) {
                    const int64_t kh = khs[t], ih = oh * d->sh - d->ph + kh * d->dh;
                    const float *xr = xp + ih * IW - d->pw + ow * sw, *wk = wp + kh * KW;
                    for (int64_t kw = 0; kw < KW; kw++) acc += wk[kw] * xr[kw * d->dw];
                }
                yrow[ow] = acc;
            }
            continue;
        }
        /* interior columns, DW_BLOCK at a time; the last block is moved back to end
         * at hi (its overlap is recomputed to the same values: each block starts
         * from the bias, not from y). DW_GROUP blocks run together: their sums are
         * independent chains, so the adds of one tap overlap instead of waiting on
         * each other; each sum still takes its taps in the same order. */
        const int64_t nblk = (hi - lo + DW_BLOCK - 1) / DW_BLOCK;
        for (int64_t b = 0; b < nblk; b += DW_GROUP) {
            const int64_t ng = nblk - b < DW_GROUP ? nblk - b : DW_GROUP;
            int64_t ow0[DW_GROUP];
            dw_vec_t av[DW_GROUP];
#pragma GCC unroll 4
            for (int g = 0; g < DW_GROUP; g++) {
                const int64_t o =
                    lo + (b + (g < ng ? g : ng - 1)) * DW_BLOCK; /* missing blocks redo the last */
                ow0[g] = o > hi - DW_BLOCK ? hi - DW_BLOCK : o;
                av[g] = (dw_vec_t){0} + b0; /* vector values: the sums stay in registers */
            }
            for (int64_t t = 0; t < nkh; t++) {
                const int64_t kh = khs[t], ih = oh * d->sh - d->ph + kh * d->dh;
                const float *xr = xp + ih * IW - d->pw, *wk = wp + kh * KW;
                for (int64_t kw = 0; kw < KW; kw++) {
#pragma GCC unroll 4
                    for (int g = 0; g < DW_GROUP; g++) {
                        const float *xs = xr + ow0[g] * sw + kw * d->dw;
                        dw_vec_t xv;
                        if (sw == 1) {
                            memcpy(&xv, xs, sizeof xv);
                        } else if (sw == 2 && xs + 2 * DW_BLOCK <= xend) { /* even lanes of two vectors */
                            dw_vec_t x0, x1;
                            memcpy(&x0, xs, sizeof x0);
                            memcpy(&x1, xs + DW_BLOCK, sizeof x1);
                            xv = __builtin_shufflevector(x0, x1, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22,
                                                         24, 26, 28, 30);
                        } else {
                            for (int i = 0; i < DW_BLOCK; i++) xv[i] = xs[i * sw];
                        }
                        av[g] += xv * wk[kw];
                    }
                }
            }
            for (int g = ng - 1; g >= 0; g--) memcpy(yrow + ow0[g], &av[g], sizeof av[g]);
        }
    }
}

static void dw_planes_generic(const dw_geom_t *d, const float *x, const float *w, const float *bias, float *y,
                              int64_t N, int64_t C, int64_t M, int nt, const ba_kern_epi_t *epi) {
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t nm = 0; nm < N * M; nm++) {
        const int64_t n = nm / M, m = nm % M, c = m / d->mult;
        dw_plane(d, x + (n * C + c) * d->IH * d->IW, w + m * d->KH * d->KW, bias ? bias[m] : 0.0f,
                 y + nm * d->OH * d->OW, 0);
        ba_kern_epi_apply(epi, y + nm * d->OH * d->OW, d->OH * d->OW);
    }
}

#if defined(__x86_64__)
/* The same code with 16-float vectors (no FMA contraction: C11 mode keeps
 * a*b+c as two roundings, so the floats equal the generic path's). */
__attribute__((target("avx512f"))) static void dw_planes_avx512(const dw_geom_t *d, const float *x,
                                                                const float *w, const float *bias, float *y,
                                                                int64_t N, int64_t C, int64_t M, int nt,
                                                                const ba_kern_epi_t *epi) {
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t nm = 0; nm < N * M; nm++) {
        const int64_t n = nm / M, m = nm % M, c = m / d->mult;
        dw_plane(d, x + (n * C + c) * d->IH * d->IW, w + m * d->KH * d->KW, bias ? bias[m] : 0.0f,
                 y + nm * d->OH * d->OW, 1);
        ba_kern_epi_apply(epi, y + nm * d->OH * d->OW, d->OH * d->OW);
    }
}
#endif

/* With epi (may be NULL), each output plane goes through it right after it is computed. */
static void conv_depthwise(const float *x, const float *w, const float *bias, float *y, int64_t N, int64_t C,
                           int64_t M, const ba_kern_geom_t *g, const ba_kern_epi_t *epi) {
    int64_t plo[DW_MAX_KW], phi[DW_MAX_KW]; /* valid ow range per kw (caller: KW <= DW_MAX_KW) */
    dw_geom_t d = {g->in[1], g->in[2],  g->k[1],   g->k[2],  g->out[1], g->out[2], g->s[1],
                   g->s[2],  g->dil[1], g->dil[2], g->pb[1], g->pb[2],  M / C,     0,
                   0,        plo,       phi,       NULL,     NULL,      NULL};
    d.lo = 0;
    d.hi = d.OW;
    for (int64_t kw = 0; kw < d.KW; kw++) {
        int64_t base = kw * d.dw - d.pw;
        int64_t l = base >= 0 ? 0 : (-base + d.sw - 1) / d.sw;
        int64_t h = base < d.IW ? (d.IW - 1 - base) / d.sw + 1 : 0;
        if (h > d.OW) h = d.OW;
        if (l > h) l = h;
        plo[kw] = l;
        phi[kw] = h;
        if (l > d.lo) d.lo = l;
        if (h < d.hi) d.hi = h;
    }
    if (d.hi < d.lo) d.hi = d.lo;
    const int nt = ba_kern_threads(N * M * d.OH * d.OW * d.KH * d.KW);
#if defined(__x86_64__)
    if (ba_kern_have_avx512f()) {
        /* the block table of the AVX-512 rows, once per conv instead of once per row */
        const int64_t nblk = (d.OW + DW_BLOCK - 1) / DW_BLOCK;
        int64_t *bow0 = malloc((size_t)nblk * sizeof(int64_t));
        uint16_t *bm = malloc((size_t)(nblk * (d.KW + 1)) * sizeof(uint16_t));
        if (bow0 && bm) {
            for (int64_t bi = 0; bi < nblk; bi++) {
                const int64_t o0 = bi * DW_BLOCK,
                              o = o0 > d.OW - DW_BLOCK ? (d.OW - DW_BLOCK > 0 ? d.OW - DW_BLOCK : 0) : o0,
                              n = d.OW - o < DW_BLOCK ? d.OW - o : DW_BLOCK;
                bow0[bi] = o;
                bm[bi] = (uint16_t)(n == DW_BLOCK ? 0xFFFFu : (1u << n) - 1u);
                for (int64_t kw = 0; kw < d.KW; kw++) { /* lanes o + j in [plo, phi) */
                    int64_t l = plo[kw] - o, h = phi[kw] - o;
                    if (l < 0) l = 0;
                    if (h > n) h = n;
                    bm[nblk + bi * d.KW + kw] = (uint16_t)(h > l ? ((1u << (h - l)) - 1u) << l : 0u);
                }
            }
            d.bow0 = bow0;
            d.blive = bm;
            d.bmk = bm + nblk;
            dw_planes_avx512(&d, x, w, bias, y, N, C, M, nt, epi);
            free(bow0);
            free(bm);
            return;
        }
        free(bow0);
        free(bm);
    }
#endif
    dw_planes_generic(&d, x, w, bias, y, N, C, M, nt, epi);
}

/* What one chunk of nb images of a grouped conv needs (ba_conv_forward). */
typedef struct {
    const float *x, *w;
    float *y;
    const ba_kern_geom_t *g;
    int64_t N, C, M, group, Cg, Mg, K, P, Pin, nb;
    int pointwise, panels;    /* panels: ba_kern_conv_panels applies */
    const float *bias;        /* M values or NULL */
    const ba_kern_epi_t *epi; /* the fused epilogue, applied by the panel path (or NULL) */
} conv_job_t;

/* Images [ci*nb, ci*nb + nb) of the conv: by panels (ba_kern_conv_panels),
 * or im2col into ws (cols_n floats of columns, then the product when nb > 1),
 * sgemm, planes into y. 0 when the panel path ran out of memory. */
static int conv_chunk(const conv_job_t *j, int64_t ci, float *ws, size_t cols_n) {
    const int64_t P = j->P, Mg = j->Mg, K = j->K, Cg = j->Cg, Pin = j->Pin, M = j->M, C = j->C;
    const int64_t n0 = ci * j->nb, nbb = j->N - n0 < j->nb ? j->N - n0 : j->nb, ld = nbb * P;
    const int64_t ldcol = ld + BA_KERN_COL_PAD; /* column buffer stride: see ba_kern_conv_gemm */
    float *cols = ws, *tmp = ws ? ws + cols_n : NULL;
    for (int64_t gi = 0; gi < j->group; gi++) {
        const float *wg = j->w + gi * Mg * K;
        /* The sums of a lone image start at the bias, those of several images side by side at 0 with the
         * bias added after (the two paths below); the panel product keeps each path's floats. */
        if (j->panels && ba_kern_conv_panels(j->x + (n0 * C + gi * Cg) * Pin, nbb, C * Pin, Cg, j->g, wg, Mg,
                                             j->bias ? j->bias + gi * Mg : NULL, nbb > 1,
                                             j->y + (n0 * M + gi * Mg) * P, M * P, j->epi))
            continue;
        if (j->panels) return 0;
        if (nbb == 1) {
            const float *src = j->x + (n0 * C + gi * Cg) * Pin;
            if (!j->pointwise) {
                ba_kern_im2col(src, Cg, j->g, cols, ldcol);
                src = cols;
            }
            /* y_g (Mg, P) = W_g (Mg, K) · cols (K, P) + bias */
            ba_kern_conv_gemm(Mg, P, K, wg, K, src, j->pointwise ? P : ldcol,
                              j->bias ? j->bias + gi * Mg : NULL, j->y + (n0 * M + gi * Mg) * P, P);
            continue;
        }
        for (int64_t i = 0; i < nbb; i++)
            ba_kern_im2col(j->x + ((n0 + i) * C + gi * Cg) * Pin, Cg, j->g, cols + i * P, ldcol);
        /* tmp (Mg, nbb*P) = W_g (Mg, K) · cols (K, nbb*P) */
        ba_kern_conv_gemm(Mg, ld, K, wg, K, cols, ldcol, NULL, tmp, ld);
        const int nt = ba_kern_threads(Mg * ld);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nt) if (nt > 1)
        for (int64_t i = 0; i < nbb; i++)
            for (int64_t m = 0; m < Mg; m++) {
                float *yr = j->y + ((n0 + i) * M + gi * Mg + m) * P;
                const float *tr = tmp + m * ld + i * P;
                const float bv = j->bias ? j->bias[gi * Mg + m] : 0.0f;
#pragma omp simd
                for (int64_t q = 0; q < P; q++) yr[q] = tr[q] + bv;
            }
    }
    return 1;
}

/* Conv / ConvTranspose: X and W present and float32, X of rank 3 to 5, W of X's rank. */
static ba_status check_x_w(const ba_node_t *node, const ba_tensor_t *X, const ba_tensor_t *W, ba_error *err) {
    BA_TRY(ba_kern_need_f32(node, X, "input X", err));
    BA_TRY(ba_kern_need_f32(node, W, "weight W", err));
    if (X->ndim < 3 || X->ndim > 2 + BA_KERN_MAX_SP)
        return bad(node, "input X (expected rank 3 to 5)", X, err);
    if (W->ndim != X->ndim) return bad(node, "weight W (rank differs from X)", W, err);
    return BA_OK;
}

/* X (N, C, *in), W (M, C/group, *k), B (M) -> Y (N, M, *out). */
ba_status ba_conv_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                          ba_error *err) {
    (void)nout;
    const ba_tensor_t *X = nin > 0 ? in[0] : NULL, *W = nin > 1 ? in[1] : NULL, *B = nin > 2 ? in[2] : NULL;
    BA_TRY(check_x_w(node, X, W, err));
    const int nsp = X->ndim - 2;
    const int64_t N = X->shape[0], C = X->shape[1], M = W->shape[0], Cg = W->shape[1];
    const int64_t group = ba_node_attr_int(node, "group", 1);
    if (group < 1 || Cg * group != C || M % group != 0)
        return ba_error_set(err, BA_ERR_INPUT,
                            "node %s (Conv): %lld input channels, weight %lld per group, %lld outputs and "
                            "group %lld do not fit",
                            node->name, (long long)C, (long long)Cg, (long long)M, (long long)group);
    BA_TRY(check_bias(node, B, M, err));
    const int64_t *ks = NULL;
    int nk = ba_node_attr_ints(node, "kernel_shape", &ks);
    if (nk && nk != nsp) return bad(node, "weight W (kernel_shape attribute rank differs)", W, err);
    for (int i = 0; i < nk; i++)
        if (ks[i] != W->shape[2 + i]) return bad(node, "weight W (differs from kernel_shape)", W, err);
    ba_kern_geom_t g;
    BA_TRY(ba_kern_geom_make(node, nsp, X->shape + 2, W->shape + 2, 0, &g, err));

    int64_t yshape[BA_MAX_DIMS] = {N, M};
    ba_kern_geom_out_shape(&g, yshape + 2);
    /* Every element is written below: ba_kern_conv_gemm or the per-image copy store each group's planes
     * whole, the depthwise loop stores every column of every row. */
    ba_tensor_t *Y = ba_tensor_new_uninit(BA_DT_F32, X->ndim, yshape, err);
    if (!Y) return err ? err->code : BA_ERR_NOMEM;
    const int64_t Mg = M / group, Pin = g.in[0] * g.in[1] * g.in[2], P = g.out[0] * g.out[1] * g.out[2];
    const int64_t KK = g.k[0] * g.k[1] * g.k[2], K = Cg * KK;
    const float *x = X->data, *w = W->data;
    float *y = Y->data;
    if (N == 0 || P == 0 || M == 0) {
        out[0] = Y;
        return BA_OK;
    }

    if (group == C && Cg == 1 && nsp <= 2 && g.k[1] <= DW_MAX_KW && g.k[2] <= DW_MAX_KW) {
        ba_kern_epi_t ep; /* the fused epilogue, per plane (model/fuse.h) */
        conv_depthwise(x, w, B ? B->data : NULL, y, N, C, M, &g, ba_fuse_tile_take(Y, &ep));
        out[0] = Y;
        return BA_OK;
    }

    int pointwise = 1;
    for (int i = 0; i < BA_KERN_MAX_SP; i++)
        if (g.k[i] != 1 || g.s[i] != 1 || g.pb[i] != 0 || g.pe[i] != 0) pointwise = 0;
    /* Small images: nb images side by side in one sgemm (OpenBLAS is slow
     * on a narrow N), the product then added into each image's planes. */
    int64_t nb = 1;
    if (P < CONV_GEMM_MIN_N && N > 1) {
        nb = (CONV_GEMM_MIN_N + P - 1) / P;
        int64_t cap = CONV_WS_MAX_FLOATS / (K * P + Mg * P);
        if (nb > cap) nb = cap;
        if (nb > N) nb = N;
        if (nb < 1) nb = 1;
    }
    /* With a chunk of images for every thread, each thread runs whole chunks
     * (im2col + sgemm on its own workspace, no sync inside); otherwise the
     * chunks run in turn and im2col / sgemm split their work. */
    const int64_t nchunks = (N + nb - 1) / nb;
    int nthr = ba_kern_threads(N * Mg * group * P * K);
    if (nchunks < nthr) nthr = 1;
    const int panels = ba_kern_conv_panels_ok(&g);
    const size_t cols_n =
        !panels && (!pointwise || nb > 1) ? (size_t)K * (size_t)(nb * P + BA_KERN_COL_PAD) : 0;
    const size_t tmp_n = !panels && nb > 1 ? (size_t)Mg * (size_t)(nb * P) : 0;
    float *ws = NULL;
    if (cols_n + tmp_n > 0) {
        ws = ba_malloc((cols_n + tmp_n) * (size_t)nthr * sizeof(float), err);
        if (!ws) {
            ba_tensor_unref(Y);
            return err ? err->code : BA_ERR_NOMEM;
        }
    }
    ba_kern_epi_t ep; /* the panel path applies the fused epilogue per group of panels (model/fuse.h) */
    conv_job_t job = {x,
                      w,
                      y,
                      &g,
                      N,
                      C,
                      M,
                      group,
                      Cg,
                      Mg,
                      K,
                      P,
                      Pin,
                      nb,
                      pointwise,
                      panels,
                      B ? B->data : NULL,
                      panels ? ba_fuse_tile_take(Y, &ep) : NULL};
    int ok = 1;
    if (nthr > 1) {
#pragma omp parallel for schedule(dynamic) num_threads(nthr) reduction(&& : ok)
        for (int64_t ci = 0; ci < nchunks; ci++)
            ok = conv_chunk(&job, ci, ws ? ws + (size_t)omp_get_thread_num() * (cols_n + tmp_n) : NULL,
                            cols_n) &&
                 ok;
    } else {
        /* No enclosing region here: im2col and sgemm may fork their own teams. */
        for (int64_t ci = 0; ci < nchunks && ok; ci++) ok = conv_chunk(&job, ci, ws, cols_n);
    }
    free(ws);
    if (!ok) {
        ba_tensor_unref(Y);
        return ba_error_set(err, BA_ERR_NOMEM, "node %s (Conv): out of memory for the packed columns",
                            node->name);
    }
    out[0] = Y;
    return BA_OK;
}

/* X (N, C, *in), W (C, M/group, *k), B (M) -> Y (N, M, *out). */
ba_status ba_convt_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out,
                           int nout, ba_error *err) {
    (void)nout;
    const ba_tensor_t *X = nin > 0 ? in[0] : NULL, *W = nin > 1 ? in[1] : NULL, *B = nin > 2 ? in[2] : NULL;
    BA_TRY(check_x_w(node, X, W, err));
    const int64_t N = X->shape[0], C = X->shape[1], group = ba_node_attr_int(node, "group", 1);
    if (group < 1 || W->shape[0] != C || C % group != 0)
        return ba_error_set(
            err, BA_ERR_INPUT,
            "node %s (ConvTranspose): %lld input channels, weight of %lld and group %lld do not fit",
            node->name, (long long)C, (long long)W->shape[0], (long long)group);
    const int64_t Mg = W->shape[1], M = Mg * group, Cg = C / group;
    BA_TRY(check_bias(node, B, M, err));
    ba_kern_geom_t g;
    BA_TRY(ba_kern_convt_geom(node, X, W, &g, err));
    int64_t yshape[BA_MAX_DIMS] = {N, M};
    ba_kern_geom_out_shape(&g, yshape + 2);
    ba_tensor_t *Y = ba_tensor_new_uninit(BA_DT_F32, X->ndim, yshape, err); /* fill_bias writes it all */
    if (!Y) return err ? err->code : BA_ERR_NOMEM;
    const int64_t Pin = g.in[0] * g.in[1] * g.in[2], P = g.out[0] * g.out[1] * g.out[2];
    const int64_t KK = g.k[0] * g.k[1] * g.k[2], R = Mg * KK;
    float *y = Y->data;
    fill_bias(y, B, N, M, P);
    if (N == 0 || M == 0 || Pin == 0 || Cg == 0) {
        out[0] = Y;
        return BA_OK;
    }
    /* cols, then W transposed per group (wt_g (Mg*KK, Cg) = W_g^T) for ba_kern_conv_gemm's row-major A */
    float *cols =
        ba_malloc(((size_t)R * (size_t)Pin + (size_t)group * (size_t)R * (size_t)Cg) * sizeof(float), err);
    if (!cols) {
        ba_tensor_unref(Y);
        return err ? err->code : BA_ERR_NOMEM;
    }
    float *wt = cols + (size_t)R * (size_t)Pin;
    const float *x = X->data, *w = W->data;
    for (int64_t gi = 0; gi < group; gi++)
        for (int64_t c = 0; c < Cg; c++)
            for (int64_t r = 0; r < R; r++) wt[(gi * R + r) * Cg + c] = w[(gi * Cg + c) * R + r];
    for (int64_t n = 0; n < N; n++)
        for (int64_t gi = 0; gi < group; gi++) {
            /* cols (Mg*KK, Pin) = W_g^T · x_g with W_g (Cg, Mg*KK), x_g (Cg, Pin) */
            ba_kern_conv_gemm(R, Pin, Cg, wt + gi * R * Cg, Cg, x + (n * C + gi * Cg) * Pin, Pin, NULL, cols,
                              Pin);
            ba_kern_col2im_add(cols, Pin, Mg, &g, y + (n * M + gi * Mg) * P);
        }
    free(cols);
    out[0] = Y;
    return BA_OK;
}
