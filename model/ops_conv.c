/* Kernels of the conv family (see model/ops.h): Conv and ConvTranspose over
 * 1-D, 2-D and 3-D images, float32. Conv is im2col + sgemm per image and group
 * (a 1x1 stride-1 conv multiplies the image directly, a depthwise conv runs a
 * direct loop); ConvTranspose is sgemm + col2im. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/kern_conv.h"
#include "model/ops.h"

/* Conv sgemms narrower than this (output pixels) take several images at
 * once: OpenBLAS sgemm loses most of its speed below a few hundred columns
 * (7x7 ResNet stages: 7x slower than one wide call, measured). */
#define CONV_GEMM_MIN_N 1024
/* Cap on the batched im2col + product workspace (floats, 256 MiB). */
#define CONV_WS_MAX_FLOATS (64LL * 1024 * 1024)
/* Widest depthwise kernel the direct path takes (wider ones use im2col). */
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
 * x (N, C, IH, IW), w (M, 1, KH, KW) with M = C * mult, y (N, M, OH, OW)
 * already holding the bias. Direct loop: the row of taps is a scaled add. */
static void conv_depthwise(const float *x, const float *w, float *y, int64_t N, int64_t C, int64_t M,
                           const ba_kern_geom_t *g) {
    const int64_t IH = g->in[1], IW = g->in[2], KH = g->k[1], KW = g->k[2], OH = g->out[1], OW = g->out[2];
    const int64_t sh = g->s[1], sw = g->s[2], mult = M / C;
    int64_t plo[DW_MAX_KW], phi[DW_MAX_KW]; /* valid ow range per kw (caller: KW <= DW_MAX_KW) */
    for (int64_t kw = 0; kw < KW; kw++) {
        int64_t base = kw * g->dil[2] - g->pb[2];
        int64_t l = base >= 0 ? 0 : (-base + sw - 1) / sw;
        int64_t h = base < IW ? (IW - 1 - base) / sw + 1 : 0;
        if (h > OW) h = OW;
        if (l > h) l = h;
        plo[kw] = l;
        phi[kw] = h;
    }
    const int nt = ba_kern_threads(N * M * OH * OW * KH * KW);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t nm = 0; nm < N * M; nm++) {
        int64_t n = nm / M, m = nm % M, c = m / mult;
        const float *xp = x + (n * C + c) * IH * IW;
        const float *wp = w + m * KH * KW;
        float *yp = y + nm * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            float *yrow = yp + oh * OW;
            for (int64_t kh = 0; kh < KH; kh++) {
                int64_t ih = oh * sh - g->pb[1] + kh * g->dil[1];
                if (ih < 0 || ih >= IH) continue;
                for (int64_t kw = 0; kw < KW; kw++) {
                    const float wv = wp[kh * KW + kw];
                    const float *xr = xp + ih * IW + kw * g->dil[2] - g->pb[2];
                    const int64_t l = plo[kw], h = phi[kw];
                    if (sw == 1) {
#pragma omp simd
                        for (int64_t ow = l; ow < h; ow++) yrow[ow] += wv * xr[ow];
                    } else {
#pragma omp simd
                        for (int64_t ow = l; ow < h; ow++) yrow[ow] += wv * xr[ow * sw];
                    }
                }
            }
        }
    }
}

/* What one chunk of nb images of a grouped conv needs (conv_forward). */
typedef struct {
    const float *x, *w;
    float *y;
    const ba_kern_geom_t *g;
    int64_t N, C, M, group, Cg, Mg, K, P, Pin, nb;
    int pointwise;
    const float *bias; /* M values or NULL */
} conv_job_t;

/* Images [ci*nb, ci*nb + nb) of the conv: im2col into ws (cols_n floats of
 * columns, then the product when nb > 1), sgemm, planes into y. */
static void conv_chunk(const conv_job_t *j, int64_t ci, float *ws, size_t cols_n) {
    const int64_t P = j->P, Mg = j->Mg, K = j->K, Cg = j->Cg, Pin = j->Pin, M = j->M, C = j->C;
    const int64_t n0 = ci * j->nb, nbb = j->N - n0 < j->nb ? j->N - n0 : j->nb, ld = nbb * P;
    const int64_t ldcol = ld + BA_KERN_COL_PAD; /* column buffer stride: see ba_kern_conv_gemm */
    float *cols = ws, *tmp = ws ? ws + cols_n : NULL;
    for (int64_t gi = 0; gi < j->group; gi++) {
        const float *wg = j->w + gi * Mg * K;
        if (nbb == 1) {
            const float *src = j->x + (n0 * C + gi * Cg) * Pin;
            if (!j->pointwise) {
                ba_kern_im2col(src, Cg, j->g, cols, ldcol);
                src = cols;
            }
            /* y_g (Mg, P) = W_g (Mg, K) · cols (K, P) + bias */
            ba_kern_conv_gemm(Mg, P, K, wg, K, src, j->pointwise ? P : ldcol, j->bias ? j->bias + gi * Mg : NULL,
                              j->y + (n0 * M + gi * Mg) * P, P);
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
}

/* X (N, C, *in), W (M, C/group, *k), B (M) -> Y (N, M, *out). */
static ba_status conv_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                              ba_error *err) {
    (void)nout;
    const ba_tensor_t *X = nin > 0 ? in[0] : NULL, *W = nin > 1 ? in[1] : NULL, *B = nin > 2 ? in[2] : NULL;
    BA_TRY(ba_kern_need_f32(node, X, "input X", err));
    BA_TRY(ba_kern_need_f32(node, W, "weight W", err));
    if (X->ndim < 3 || X->ndim > 2 + BA_KERN_MAX_SP) return bad(node, "input X (expected rank 3 to 5)", X, err);
    if (W->ndim != X->ndim) return bad(node, "weight W (rank differs from X)", W, err);
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
    /* Every element is written below: fill_bias before the depthwise loop, and
     * ba_kern_conv_gemm or the per-image copy store each group's planes whole. */
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

    if (group == C && Cg == 1 && nsp <= 2 && g.k[2] <= DW_MAX_KW) {
        fill_bias(y, B, N, M, P);
        conv_depthwise(x, w, y, N, C, M, &g);
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
    const size_t cols_n = !pointwise || nb > 1 ? (size_t)K * (size_t)(nb * P + BA_KERN_COL_PAD) : 0;
    const size_t tmp_n = nb > 1 ? (size_t)Mg * (size_t)(nb * P) : 0;
    float *ws = NULL;
    if (cols_n + tmp_n > 0) {
        ws = ba_malloc((cols_n + tmp_n) * (size_t)nthr * sizeof(float), err);
        if (!ws) {
            ba_tensor_unref(Y);
            return err ? err->code : BA_ERR_NOMEM;
        }
    }
    conv_job_t job = {x, w, y, &g, N, C, M, group, Cg, Mg, K, P, Pin, nb, pointwise, B ? B->data : NULL};
    if (nthr > 1) {
#pragma omp parallel for schedule(dynamic) num_threads(nthr)
        for (int64_t ci = 0; ci < nchunks; ci++)
            conv_chunk(&job, ci, ws ? ws + (size_t)omp_get_thread_num() * (cols_n + tmp_n) : NULL, cols_n);
    } else {
        /* No enclosing region here: im2col and sgemm may fork their own teams. */
        for (int64_t ci = 0; ci < nchunks; ci++) conv_chunk(&job, ci, ws, cols_n);
    }
    free(ws);
    out[0] = Y;
    return BA_OK;
}

/* X (N, C, *in), W (C, M/group, *k), B (M) -> Y (N, M, *out). */
static ba_status convt_forward(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                               ba_error *err) {
    (void)nout;
    const ba_tensor_t *X = nin > 0 ? in[0] : NULL, *W = nin > 1 ? in[1] : NULL, *B = nin > 2 ? in[2] : NULL;
    BA_TRY(ba_kern_need_f32(node, X, "input X", err));
    BA_TRY(ba_kern_need_f32(node, W, "weight W", err));
    if (X->ndim < 3 || X->ndim > 2 + BA_KERN_MAX_SP) return bad(node, "input X (expected rank 3 to 5)", X, err);
    if (W->ndim != X->ndim) return bad(node, "weight W (rank differs from X)", W, err);
    const int64_t N = X->shape[0], C = X->shape[1], group = ba_node_attr_int(node, "group", 1);
    if (group < 1 || W->shape[0] != C || C % group != 0)
        return ba_error_set(err, BA_ERR_INPUT,
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
    float *cols = ba_malloc((size_t)R * (size_t)Pin * sizeof(float), err);
    if (!cols) {
        ba_tensor_unref(Y);
        return err ? err->code : BA_ERR_NOMEM;
    }
    const float *x = X->data, *w = W->data;
    for (int64_t n = 0; n < N; n++)
        for (int64_t gi = 0; gi < group; gi++) {
            /* cols (Mg*KK, Pin) = W_g^T · x_g with W_g (Cg, Mg*KK), x_g (Cg, Pin) */
            ba_kern_sgemm(1, 0, R, Pin, Cg, 1.0f, w + gi * Cg * R, R, x + (n * C + gi * Cg) * Pin, Pin, 0.0f, cols,
                          Pin);
            ba_kern_col2im_add(cols, Mg, &g, y + (n * M + gi * Mg) * P);
        }
    free(cols);
    out[0] = Y;
    return BA_OK;
}

const ba_op_def_t ba_ops_conv[] = {
    {"Conv", conv_forward},
    {"ConvTranspose", convt_forward},
    {NULL, NULL},
};
