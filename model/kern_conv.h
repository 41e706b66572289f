/* Private helpers of the heavy kernels (ops_conv.c, ops_pool.c, ops_matmul.c,
 * ops_norm.c): input checks naming the node, the window geometry shared by
 * Conv and the pools (strides/dilations/pads/auto_pad/ceil_mode), im2col and col2im. */
#ifndef BA_MODEL_KERN_CONV_H
#define BA_MODEL_KERN_CONV_H

#include "model/model.h"

/* Spatial ranks the window kernels handle (1-D, 2-D, 3-D). */
#define BA_KERN_MAX_SP 3

/* A window geometry normalised to 3 spatial dims: a 1-D op has d and h of
 * size 1 (kernel 1, stride 1, no pad), so one code path serves all ranks. */
typedef struct ba_kern_geom {
    int nsp;                     /* spatial rank as in the model (1..3) */
    int64_t in[BA_KERN_MAX_SP];  /* input size  (d, h, w) */
    int64_t k[BA_KERN_MAX_SP];   /* kernel size */
    int64_t s[BA_KERN_MAX_SP];   /* strides */
    int64_t dil[BA_KERN_MAX_SP]; /* dilations */
    int64_t pb[BA_KERN_MAX_SP];  /* padding before */
    int64_t pe[BA_KERN_MAX_SP];  /* padding after */
    int64_t out[BA_KERN_MAX_SP]; /* output size */
} ba_kern_geom_t;

/* Checks that t is present and float32 (what = "input X" etc.). */
ba_status ba_kern_need_f32(const ba_node_t *node, const ba_tensor_t *t, const char *what, ba_error *err);

/* Reads strides, dilations, pads and auto_pad from node and computes the
 * output size of a sliding window (Conv, MaxPool, AveragePool, LpPool).
 * in_sp/k_sp hold nsp sizes. ceil_mode as in the pool ops (0 for Conv). */
ba_status ba_kern_geom_make(const ba_node_t *node, int nsp, const int64_t *in_sp, const int64_t *k_sp,
                            int ceil_mode, ba_kern_geom_t *g, ba_error *err);

/* ConvTranspose geometry (ONNX operator doc) of X (N, C, *in) and W (C, M/group,
 * *k): strides, dilations, output_padding, and the output size from pads or
 * the pads from output_shape / auto_pad SAME_*. g->in is X's spatial size,
 * g->out the output's, g->pb the pads before (as a Conv from the output
 * image back to X's positions: im2col with in/out swapped is the adjoint). */
ba_status ba_kern_convt_geom(const ba_node_t *node, const ba_tensor_t *X, const ba_tensor_t *W,
                             ba_kern_geom_t *g, ba_error *err);

/* The window geometry of a pool node (MaxPool, AveragePool, LpPool) over X
 * (N, C, *sp): its kernel_shape (one value per spatial axis, else
 * BA_ERR_INPUT naming the node) and ceil_mode. */
ba_status ba_kern_pool_geom(const ba_node_t *node, const ba_tensor_t *X, ba_kern_geom_t *g, ba_error *err);

/* Output spatial shape of geometry g into shape[0..nsp). */
void ba_kern_geom_out_shape(const ba_kern_geom_t *g, int64_t *shape);

/* Valid taps [lo, hi) of a window starting at start (taps dil apart, k of
 * them) on an axis of n elements. */
void ba_kern_window_taps(int64_t start, int64_t dil, int64_t k, int64_t n, int64_t *lo, int64_t *hi);
/* Taps of the window that lie inside [-pb, n + pe): AveragePool's divisor with
 * count_include_pad (taps past the end padding, from ceil_mode, never count). */
int64_t ba_kern_window_taps_padded(int64_t start, int64_t dil, int64_t k, int64_t n, int64_t pb, int64_t pe);
/* AveragePool's divisor for the window starting at (d0, h0, w0) with `taps`
 * valid taps: with count_include_pad the taps inside the padding too. */
int64_t ba_kern_avg_divisor(const ba_kern_geom_t *g, int include_pad, int64_t d0, int64_t h0, int64_t w0,
                            int64_t taps);
/* In-plane index of the first maximum of output window (od, oh, ow) over one
 * input plane x (D*H*W floats) — MaxPool's choice, which its gradient and
 * tangent follow; -1 when the window holds no input tap. */
int64_t ba_kern_window_argmax(const ba_kern_geom_t *g, const float *x, int64_t od, int64_t oh, int64_t ow);

/* im2col of one image x (C, D, H, W) into cols (C*KD*KH*KW, OD*OH*OW) whose
 * rows are ldc floats apart (ldc >= OD*OH*OW: several images side by side);
 * padded taps read 0. */
void ba_kern_im2col(const float *x, int64_t C, const ba_kern_geom_t *g, float *cols, int64_t ldc);
/* Threads a kernel may use for a loop of `work` element operations: 1 below
 * the fork-worthwhile size or inside a parallel region, else OpenMP's max. */
int ba_kern_threads(int64_t work);
/* Whether the CPU runs AVX-512F code (the one test the kernels' AVX-512 paths choose by). */
int ba_kern_have_avx512f(void);

/* col2im: adds cols (C*KD*KH*KW, ID*IH*IW), rows ldc floats apart (ldc >=
 * ID*IH*IW: several images side by side), into y (C, OD, OH, OW) where the
 * roles are transposed (ConvTranspose, and a Conv's input gradient):
 * g->in is the columns' positions and g->out the image written. */
void ba_kern_col2im_add(const float *cols, int64_t ldc, int64_t C, const ba_kern_geom_t *g, float *y);

/* sstride[i]: src's element stride along dim i of (dndim, dshape) under numpy
 * broadcasting (0 where src is broadcast); -1 when src does not broadcast to it. */
int ba_kern_broadcast_strides(const ba_tensor_t *src, int dndim, const int64_t *dshape, int64_t *sstride);
/* Expands src (ndim, shape) by numpy broadcasting into dst of (dndim, dshape);
 * BA_ERR_INPUT naming the node when not broadcastable. */
ba_status ba_kern_broadcast_to(const ba_node_t *node, const ba_tensor_t *src, int dndim,
                               const int64_t *dshape, float *dst, const char *what, ba_error *err);

/* C (M, N) = alpha * op(A) * op(B) + beta * C, row-major (cblas_sgemm's
 * arguments). The one entry to BLAS for every kernel: OpenBLAS is switched
 * to one thread (once, process-wide) and the product is split over OpenMP
 * threads here, so a single thread pool runs the executor (OpenMP workers
 * spinning beside OpenBLAS's own pthreads made conv 2-10x slower on 2 cores).
 * Inside an OpenMP parallel region it runs on the calling thread. */
void ba_kern_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* C (M, N) = A (M, K) · B (K, N) + bias (per row of C, or NULL), row-major
 * with strides lda/ldb/ldc: the product of a conv (weights · im2col columns),
 * of ConvTranspose (transposed weights · image) and of MatMul.
 * On CPUs with AVX-512 an own register-tiled kernel reads B in place (no
 * packing pass, bias in the accumulators); elsewhere bias fill + ba_kern_sgemm.
 * Splits over OpenMP threads like ba_kern_sgemm. */
/* Floats to add to a column buffer's row stride so that it is no multiple of
 * 1 KiB (ba_kern_conv_gemm then reads it in place, without a packing pass). */
#define BA_KERN_COL_PAD 16
void ba_kern_conv_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                       int64_t ldb, const float *bias, float *C, int64_t ldc);

/* Conv product without an im2col buffer (AVX-512 CPUs, 1-D/2-D windows with
 * column stride 1 or 2: ba_kern_conv_panels_ok): y = W (M, K) · im2col(x) + bias
 * for nb images of C channels (images ximg floats apart in x, yimg in y; y's
 * rows are the P output pixels of each image). The input goes once into a
 * zero-padded copy (not for pointwise convs); then per 32 output columns
 * (pixels of one or more images) the K x 32 im2col panel is built in a
 * thread's buffer that stays in cache and multiplied at once, the products
 * stored straight into each image's planes. Every output adds its K terms in
 * order onto bias (with bias_last: from 0, then + bias), as ba_kern_conv_gemm
 * does. Returns 0 (nothing written) when the path does not apply or memory
 * runs out. */
int ba_kern_conv_panels_ok(const ba_kern_geom_t *g);
/* A per-element epilogue the conv kernels apply to each piece of output right
 * after computing it, while it is in cache (model/fuse.c's fused BN /
 * activation chain): fn(ctx, yp, pos, len, c) rewrites yp[0..len) in place,
 * elements [pos, pos + len) of the output y0 (one run inside the plane of
 * channel c: pos / P % M == c). */
typedef struct ba_kern_epi {
    void (*fn)(const void *ctx, float *yp, int64_t pos, int64_t len, int64_t c);
    const void *ctx;
    const float *y0; /* the whole output (N, M, P) */
    int64_t M, P;
} ba_kern_epi_t;
/* Runs e on y[0..len) (inside one plane of e->y0); nothing when e is NULL. */
static inline void ba_kern_epi_apply(const ba_kern_epi_t *e, float *y, int64_t len) {
    if (!e || len <= 0) return;
    const int64_t pos = y - e->y0;
    e->fn(e->ctx, y, pos, len, pos / e->P % e->M);
}
/* With epi (may be NULL), the outputs go through it once all their rows are
 * stored, at least 256 columns at a time (one or more groups of panels). */
int ba_kern_conv_panels(const float *x, int64_t nb, int64_t ximg, int64_t C, const ba_kern_geom_t *g,
                        const float *w, int64_t M, const float *bias, int bias_last, float *y, int64_t yimg,
                        const ba_kern_epi_t *epi);

/* Normalises a possibly negative axis for rank r; BA_ERR_INPUT when out of range. */
ba_status ba_kern_axis(const ba_node_t *node, int64_t axis, int r, int *out, ba_error *err);

#endif
