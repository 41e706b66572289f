/* Private helpers of the heavy kernels: input checks, the sliding-window
 * geometry of Conv and the pools (ONNX auto_pad / ceil_mode rules), im2col,
 * col2im and a small broadcasting copy. */
#include "model/kern_conv.h"

#include <math.h>

#include <cblas.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Below this many floats an im2col/col2im runs on one thread: the OpenMP
 * fork costs more than the copy (measured on the 2-core build machine). */
#define KERN_OMP_MIN_WORK 32768

/* An sgemm below this many multiply-adds runs on one thread (~5 us of work:
 * an OpenMP fork/join costs a few us). */
#define SGEMM_PAR_MIN_MACS (1LL << 18)
/* Split granularity of an sgemm across threads: 16 floats = one AVX-512
 * vector, a multiple of every OpenBLAS sgemm micro-kernel's width. */
#define SGEMM_SPLIT_ALIGN 16

int ba_kern_threads(int64_t work) {
    /* omp_get_level, not omp_in_parallel: below even a one-thread region a
     * new team would be a nested one, whose threads libgomp creates and
     * destroys on every fork (measured: 400 clones per 13 runs, 8x slower). */
    if (work <= KERN_OMP_MIN_WORK || omp_get_level() > 0) return 1;
    return omp_get_max_threads();
}

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

/* OpenBLAS (pthread build) keeps its own busy-waiting workers; with them at
 * one thread, every BLAS call runs on the OpenMP thread that makes it. */
static void blas_single_thread(void) {
    openblas_set_num_threads(1);
}

void ba_kern_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    pthread_once(&blas_once, blas_single_thread);
    const enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans,
                               tb = trans_b ? CblasTrans : CblasNoTrans;
    int nt = M * N * K < SGEMM_PAR_MIN_MACS || omp_get_level() > 0 ? 1 : omp_get_max_threads();
    /* Split the longer side of C: each thread then repacks the smaller operand. */
    const int split_n = N >= M;
    const int64_t len = split_n ? N : M;
    int64_t chunk = (len + nt - 1) / nt;
    chunk = (chunk + SGEMM_SPLIT_ALIGN - 1) / SGEMM_SPLIT_ALIGN * SGEMM_SPLIT_ALIGN;
    if (chunk >= len) nt = 1;
    if (nt == 1) {
        cblas_sgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C,
                    (int)ldc);
        return;
    }
    const int nchunks = (int)((len + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int i = 0; i < nchunks; i++) {
        const int64_t lo = i * chunk, n = len - lo < chunk ? len - lo : chunk;
        if (split_n) /* C[:, lo:lo+n] = op(A) op(B)[:, lo:lo+n] */
            cblas_sgemm(CblasRowMajor, ta, tb, (int)M, (int)n, (int)K, alpha, A, (int)lda,
                        trans_b ? B + lo * ldb : B + lo, (int)ldb, beta, C + lo, (int)ldc);
        else /* C[lo:lo+n, :] = op(A)[lo:lo+n, :] op(B) */
            cblas_sgemm(CblasRowMajor, ta, tb, (int)n, (int)N, (int)K, alpha, trans_a ? A + lo : A + lo * lda,
                        (int)lda, B, (int)ldb, beta, C + lo * ldc, (int)ldc);
    }
}

/* Micro-tile of ba_kern_conv_gemm: CG_MR rows of C by CG_NR columns (two
 * 16-float vectors), accumulated in 16 registers over the whole K. */
#define CG_MR 8
#define CG_NR 32
#define CG_VEC 16
#define CG_ALIGN 64         /* panel buffer alignment: one cache line */
#define CG_ALIAS_FLOATS 256 /* row strides that are multiples of 1 KiB alias in the caches */

#if defined(__x86_64__)
/* One tile: rows [0, mr) (mr <= CG_MR; missing rows recompute the last one
 * and are not stored), columns [0, nr) (nr <= CG_NR, masked). Columns
 * [0, 16) of row i go to c0 + i * ldc, columns [16, 32) to c1 + i * ldc (the
 * two halves may lie in different images). The sums start at bias[i]
 * (or 0) and add the k terms in order; with bias_last they start at 0 and
 * bias[i] is added at the end. */
__attribute__((target("avx512f,fma"), always_inline)) static inline void
cg_tile_body(int64_t mr, int64_t nr, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
             const int64_t *boff, const float *bias, int bias_last, float *c0, float *c1, int64_t ldc) {
    const __mmask16 k0 = nr >= CG_VEC ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    const __mmask16 k1 = nr >= CG_NR   ? (__mmask16)0xFFFF
                         : nr > CG_VEC ? (__mmask16)((1u << (nr - CG_VEC)) - 1u)
                                       : (__mmask16)0;
    const float *a[CG_MR];
    for (int i = 0; i < CG_MR; i++) a[i] = A + (i < mr ? i : mr - 1) * lda;
#define CG_BIAS(i) (bias ? bias[(i) < mr ? (i) : mr - 1] : 0.0f)
#define CG_INIT(i) __m512 c##i##0 = _mm512_set1_ps(bias_last ? 0.0f : CG_BIAS(i)), c##i##1 = c##i##0;
    CG_INIT(0);
    CG_INIT(1);
    CG_INIT(2);
    CG_INIT(3);
    CG_INIT(4);
    CG_INIT(5);
    CG_INIT(6);
    CG_INIT(7);
#undef CG_INIT
#define CG_FMA(i)                                                                                            \
    {                                                                                                        \
        const __m512 av = _mm512_set1_ps(a[i][k]);                                                           \
        c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);                                                          \
        c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);                                                          \
    }
    /* A full tile loads B unmasked: a masked 16-float load costs a uop on a vector port that the FMAs
     * need (measured: the 8x32 loop ran at 75% of the core's FMA peak with masked loads, ~99% without). */
    if (nr == CG_NR) {
        for (int64_t k = 0; k < K; k++) {
            const float *bk = boff ? B + boff[k] : B + k * ldb;
            const __m512 b0 = _mm512_loadu_ps(bk), b1 = _mm512_loadu_ps(bk + CG_VEC);
            CG_FMA(0) CG_FMA(1) CG_FMA(2) CG_FMA(3) CG_FMA(4) CG_FMA(5) CG_FMA(6) CG_FMA(7)
        }
    } else {
        for (int64_t k = 0; k < K; k++) {
            const float *bk = boff ? B + boff[k] : B + k * ldb;
            const __m512 b0 = _mm512_maskz_loadu_ps(k0, bk), b1 = _mm512_maskz_loadu_ps(k1, bk + CG_VEC);
            CG_FMA(0) CG_FMA(1) CG_FMA(2) CG_FMA(3) CG_FMA(4) CG_FMA(5) CG_FMA(6) CG_FMA(7)
        }
    }
#undef CG_FMA
#define CG_STORE(i)                                                                                          \
    if ((i) < mr) {                                                                                          \
        if (bias_last) {                                                                                     \
            const __m512 bv = _mm512_set1_ps(CG_BIAS(i));                                                    \
            c##i##0 = _mm512_add_ps(c##i##0, bv);                                                            \
            c##i##1 = _mm512_add_ps(c##i##1, bv);                                                            \
        }                                                                                                    \
        _mm512_mask_storeu_ps(c0 + (i)*ldc, k0, c##i##0);                                                    \
        if (k1) _mm512_mask_storeu_ps(c1 + (i)*ldc, k1, c##i##1);                                            \
    }
    CG_STORE(0) CG_STORE(1) CG_STORE(2) CG_STORE(3) CG_STORE(4) CG_STORE(5) CG_STORE(6) CG_STORE(7)
#undef CG_STORE
#undef CG_BIAS
}

/* Row k of B at B + k * ldb. */
__attribute__((target("avx512f,fma"))) static void cg_tile(int64_t mr, int64_t nr, int64_t K, const float *A,
                                                           int64_t lda, const float *B, int64_t ldb,
                                                           const float *bias, int bias_last, float *c0,
                                                           float *c1, int64_t ldc) {
    cg_tile_body(mr, nr, K, A, lda, B, ldb, NULL, bias, bias_last, c0, c1, ldc);
}

/* Row k of B at B + boff[k] (rows of a padded image read in place). */
__attribute__((target("avx512f,fma"))) static void
cg_tile_rows(int64_t mr, int64_t nr, int64_t K, const float *A, int64_t lda, const float *B,
             const int64_t *boff, const float *bias, int bias_last, float *c0, float *c1, int64_t ldc) {
    cg_tile_body(mr, nr, K, A, lda, B, 0, boff, bias, bias_last, c0, c1, ldc);
}

/* A tile of up to CG_MR16 rows by 16 columns (nr <= 16, masked), one
 * vector per row: for the last columns of a product or a narrow one (a 4x4
 * map of one image), where cg_tile would leave half its lanes masked. Same
 * sums and stores as cg_tile's first half. */
#define CG_MR16 16
__attribute__((target("avx512f,fma"))) static void
cg_tile16(int64_t mr, int64_t nr, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
          const int64_t *boff, const float *bias, int bias_last, float *c0, int64_t ldc) {
    const __mmask16 k0 = nr >= CG_VEC ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    const float *a[CG_MR16];
    for (int i = 0; i < CG_MR16; i++) a[i] = A + (i < mr ? i : mr - 1) * lda;
    __m512 c[CG_MR16];
#pragma GCC unroll 16
    for (int i = 0; i < CG_MR16; i++)
        c[i] = _mm512_set1_ps(bias_last || !bias ? 0.0f : bias[i < mr ? i : mr - 1]);
    /* One k step of 16 rows with three row pointers (rows 0, 5, 10) and offsets of 0-4 rows (and 15
     * rows): 16 row pointers do not fit in the general registers and were reloaded from the stack
     * on every step (measured: 12% more throughput on 4x4 maps). */
    const int64_t L = lda * (int64_t)sizeof(float), L3 = 3 * L, L15 = 15 * L;
#define CG16_AT(p, o) _mm512_set1_ps(*(const float *)((p) + (o)))
#define CG16_STEP(load)                                                                                      \
    {                                                                                                        \
        const __m512 b0 = (load);                                                                            \
        c[0] = _mm512_fmadd_ps(CG16_AT(r0, 0), b0, c[0]);                                                    \
        c[1] = _mm512_fmadd_ps(CG16_AT(r0, L), b0, c[1]);                                                    \
        c[2] = _mm512_fmadd_ps(CG16_AT(r0, 2 * L), b0, c[2]);                                                \
        c[3] = _mm512_fmadd_ps(CG16_AT(r0, L3), b0, c[3]);                                                   \
        c[4] = _mm512_fmadd_ps(CG16_AT(r0, 4 * L), b0, c[4]);                                                \
        c[5] = _mm512_fmadd_ps(CG16_AT(r5, 0), b0, c[5]);                                                    \
        c[6] = _mm512_fmadd_ps(CG16_AT(r5, L), b0, c[6]);                                                    \
        c[7] = _mm512_fmadd_ps(CG16_AT(r5, 2 * L), b0, c[7]);                                                \
        c[8] = _mm512_fmadd_ps(CG16_AT(r5, L3), b0, c[8]);                                                   \
        c[9] = _mm512_fmadd_ps(CG16_AT(r5, 4 * L), b0, c[9]);                                                \
        c[10] = _mm512_fmadd_ps(CG16_AT(r10, 0), b0, c[10]);                                                 \
        c[11] = _mm512_fmadd_ps(CG16_AT(r10, L), b0, c[11]);                                                 \
        c[12] = _mm512_fmadd_ps(CG16_AT(r10, 2 * L), b0, c[12]);                                             \
        c[13] = _mm512_fmadd_ps(CG16_AT(r10, L3), b0, c[13]);                                                \
        c[14] = _mm512_fmadd_ps(CG16_AT(r10, 4 * L), b0, c[14]);                                             \
        c[15] = _mm512_fmadd_ps(CG16_AT(r0, L15), b0, c[15]);                                                \
        r0 += sizeof(float), r5 += sizeof(float), r10 += sizeof(float);                                      \
    }
    if (mr == CG_MR16 && !boff) { /* all 16 rows of a panel: the row pointers fit in registers */
        const char *r0 = (const char *)A, *r5 = (const char *)(A + 5 * lda),
                   *r10 = (const char *)(A + 10 * lda);
        if (nr >= CG_VEC)
            for (int64_t k = 0; k < K; k++) CG16_STEP(_mm512_loadu_ps(B + k * ldb))
        else
            for (int64_t k = 0; k < K; k++) CG16_STEP(_mm512_maskz_loadu_ps(k0, B + k * ldb))
    } else if (nr >= CG_VEC) { /* unmasked loads, as in cg_tile_body */
        for (int64_t k = 0; k < K; k++) {
            const __m512 b0 = _mm512_loadu_ps(boff ? B + boff[k] : B + k * ldb);
#pragma GCC unroll 16
            for (int i = 0; i < CG_MR16; i++) c[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i][k]), b0, c[i]);
        }
    } else {
        for (int64_t k = 0; k < K; k++) {
            const __m512 b0 = _mm512_maskz_loadu_ps(k0, boff ? B + boff[k] : B + k * ldb);
#pragma GCC unroll 16
            for (int i = 0; i < CG_MR16; i++) c[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i][k]), b0, c[i]);
        }
    }
#undef CG16_STEP
#undef CG16_AT
#pragma GCC unroll 16
    for (int i = 0; i < CG_MR16; i++) {
        if (i >= mr) break;
        if (bias_last) c[i] = _mm512_add_ps(c[i], _mm512_set1_ps(bias ? bias[i] : 0.0f));
        _mm512_mask_storeu_ps(c0 + i * ldc, k0, c[i]);
    }
}

/* Copies columns [n, n + nr) of B (K rows) into a zero-padded K x CG_NR panel. */
__attribute__((target("avx512f"))) static void cg_pack(int64_t K, int64_t nr, const float *B, int64_t ldb,
                                                       float *panel) {
    const __mmask16 k0 = nr >= CG_VEC ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    const __mmask16 k1 = nr >= CG_NR   ? (__mmask16)0xFFFF
                         : nr > CG_VEC ? (__mmask16)((1u << (nr - CG_VEC)) - 1u)
                                       : (__mmask16)0;
    for (int64_t k = 0; k < K; k++) {
        _mm512_store_ps(panel + k * CG_NR, _mm512_maskz_loadu_ps(k0, B + k * ldb));
        _mm512_store_ps(panel + k * CG_NR + CG_VEC, _mm512_maskz_loadu_ps(k1, B + k * ldb + CG_VEC));
    }
}

/* Columns [n0, n1) of C, every row block per CG_NR-column panel of B. B is
 * read in place unless its rows lie a multiple of CG_ALIAS_FLOATS apart:
 * then they all map to a few cache sets (L2 conflict misses, measured 2x
 * slower) and each panel is first copied to a contiguous buffer.
 * Returns 0 when that buffer cannot be allocated. */
static int cg_columns(int64_t M, int64_t n0, int64_t n1, int64_t K, const float *A, int64_t lda,
                      const float *B, int64_t ldb, const float *bias, float *C, int64_t ldc) {
    float *panel = NULL;
    if (ldb % CG_ALIAS_FLOATS == 0) {
        panel = aligned_alloc(CG_ALIGN, (size_t)K * CG_NR * sizeof(float));
        if (!panel) return 0;
    }
    for (int64_t n = n0; n < n1; n += CG_NR) {
        const int64_t nr = n1 - n < CG_NR ? n1 - n : CG_NR;
        const float *b = B + n;
        int64_t lb = ldb;
        if (panel) {
            cg_pack(K, nr, B + n, ldb, panel);
            b = panel;
            lb = CG_NR;
        }
        for (int64_t m = 0; m < M; m += CG_MR)
            cg_tile(M - m < CG_MR ? M - m : CG_MR, nr, K, A + m * lda, lda, b, lb, bias ? bias + m : NULL, 0,
                    C + m * ldc + n, C + m * ldc + n + CG_VEC, ldc);
    }
    free(panel);
    return 1;
}
#endif

int ba_kern_have_avx512f(void) {
#if defined(__x86_64__)
    static int have = -1; /* benign race: every thread computes the same value */
    if (have < 0) have = __builtin_cpu_supports("avx512f");
    return have;
#else
    return 0;
#endif
}

static int cg_have_avx512(void) {
#if defined(__x86_64__)
    static int have = -1;
    if (have < 0) have = ba_kern_have_avx512f() && __builtin_cpu_supports("fma");
    return have;
#else
    return 0;
#endif
}

void ba_kern_conv_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                       int64_t ldb, const float *bias, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
#if defined(__x86_64__)
    if (cg_have_avx512() && K > 0) {
        const int64_t nblk = (N + CG_NR - 1) / CG_NR;
        int nt = M * N * K < SGEMM_PAR_MIN_MACS || omp_get_level() > 0 ? 1 : omp_get_max_threads();
        if (nt > nblk) nt = (int)nblk;
        int ok = 1;
        if (nt <= 1) {
            ok = cg_columns(M, 0, N, K, A, lda, B, ldb, bias, C, ldc);
        } else {
            const int64_t per = (nblk + nt - 1) / nt * CG_NR;
#pragma omp parallel for schedule(static) num_threads(nt) reduction(&& : ok)
            for (int t = 0; t < nt; t++) {
                const int64_t lo = t * per, hi = lo + per < N ? lo + per : N;
                if (lo < hi) ok = cg_columns(M, lo, hi, K, A, lda, B, ldb, bias, C, ldc) && ok;
            }
        }
        if (ok) return;
        /* out of memory for a panel: the BLAS path below needs none */
    }
#endif
    for (int64_t m = 0; m < M; m++) {
        const float bv = bias ? bias[m] : 0.0f;
        for (int64_t n = 0; n < N; n++) C[m * ldc + n] = bv;
    }
    ba_kern_sgemm(0, 0, M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc);
}

/* Conv product by packed panels (ba_kern_conv_panels). */
#define CP_MAX_GROUP 8 /* panels filled together */
#define CP_DIRECT_MAX_FLOATS                                                                                 \
    65536                     /* images up to 256 KiB are read in place where a panel is one row piece       \
                               */
#define CP_GROUP_FLOATS 65536 /* their size (256 KiB, well inside L2) */
#define CP_MAX_SEGS (CP_MAX_GROUP * CG_NR) /* row pieces of a group: at most one per column */
#define CP_IN_PLACE_MAX_P 2048             /* widest pointwise image read in place (8 KiB rows), */
#define CP_IN_PLACE_MAX_C 16               /* unless it has at most this many channels (few streams) */
#define CP_EPI_COLS 256 /* output columns per pass of a fused epilogue (at least; model/fuse.c's block) */

int ba_kern_conv_panels_ok(const ba_kern_geom_t *g) {
#if defined(__x86_64__)
    return cg_have_avx512() && g->k[0] == 1 && g->in[0] == 1 && g->out[0] == 1 &&
           (g->s[2] == 1 || g->s[2] == 2);
#else
    (void)g;
    return 0;
#endif
}

#if defined(__x86_64__)
typedef struct {
    const float *xp;              /* (padded) images */
    int64_t img, ch, row;         /* floats between images, channels, rows of xp */
    int64_t OH, OW, P, sh, sw;    /* output plane (one row of P where rows follow in the source), strides */
    int64_t KH, KW, dh, dw, K, N; /* taps, K = channels * taps, N = images * P */
    const int64_t *koff;          /* per im2col row k: offset of its tap in xp */
    int direct; /* panels from one source row piece are read in place (stride 1, small image) */
} cp_geom_t;

typedef struct {
    int64_t off, len, j; /* source offset in xp (tap 0), length, first panel column */
} cp_seg_t;

/* Panels (each K x CG_NR, row stride CG_NR, K * CG_NR floats apart) of
 * columns [n, n + nr) of the im2col matrix of the padded images (nr <=
 * CP_MAX_GROUP * CG_NR): per tap row a copy of each row piece (masked vector
 * loads and stores; stride 2 keeps the even lanes), the pieces of all panels
 * in turn, so that each source row is read in one run. */
__attribute__((target("avx512f"))) static void cp_fill(const cp_geom_t *q, int64_t n, int64_t nr,
                                                       float *panels, int64_t *direct) {
    cp_seg_t seg[CP_MAX_SEGS];
    __mmask16 m[CP_MAX_SEGS][2];
    int ns = 0, full = q->sw == 1;
    for (int64_t c = n; c < n + nr;) {
        const int64_t pj = (c - n) / CG_NR,
                      pend = n + (pj + 1) * CG_NR < n + nr ? n + (pj + 1) * CG_NR : n + nr;
        if (q->direct && (c - n) % CG_NR == 0) { /* a panel from one source row piece is read in place */
            const int64_t i = c / q->P, p = c % q->P, oh = p / q->OW, ow = p % q->OW;
            if (q->OW - ow >= pend - c) {
                direct[pj] = i * q->img + oh * q->sh * q->row + ow;
                c = pend;
                continue;
            }
        }
        direct[pj] = -1;
        const int64_t i = c / q->P, p = c % q->P, oh = p / q->OW, ow = p % q->OW, j = c - n;
        int64_t len = q->OW - ow;
        if (len > n + nr - c) len = n + nr - c;
        if (len > CG_NR - j % CG_NR) len = CG_NR - j % CG_NR; /* pieces end at panel ends */
        seg[ns].off = i * q->img + oh * q->sh * q->row + ow * q->sw;
        seg[ns].len = len;
        seg[ns].j = j / CG_NR * q->K * CG_NR + j % CG_NR;
        for (int h = 0; h < 2; h++) {
            const int64_t l = len - h * CG_VEC;
            m[ns][h] = (__mmask16)(l >= CG_VEC ? 0xFFFFu : l > 0 ? (1u << l) - 1u : 0u);
        }
        if (len != CG_NR) full = 0;
        ns++;
        c += len;
    }
    if (ns == 0) return;
    if (full) { /* whole panel rows from one image row each: plain vectors */
        for (int64_t k = 0; k < q->K; k++) {
            const float *src = q->xp + q->koff[k];
            float *dst = panels + k * CG_NR;
            for (int sgi = 0; sgi < ns; sgi++) {
                _mm512_store_ps(dst + seg[sgi].j, _mm512_loadu_ps(src + seg[sgi].off));
                _mm512_store_ps(dst + seg[sgi].j + CG_VEC, _mm512_loadu_ps(src + seg[sgi].off + CG_VEC));
            }
        }
        return;
    }
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (int64_t k = 0; k < q->K; k++) {
        const float *src = q->xp + q->koff[k];
        float *dst = panels + k * CG_NR;
        for (int sgi = 0; sgi < ns; sgi++) {
            const float *x = src + seg[sgi].off;
            float *d = dst + seg[sgi].j;
            if (q->sw == 1) {
                _mm512_mask_storeu_ps(d, m[sgi][0], _mm512_maskz_loadu_ps(m[sgi][0], x));
                if (m[sgi][1])
                    _mm512_mask_storeu_ps(d + CG_VEC, m[sgi][1],
                                          _mm512_maskz_loadu_ps(m[sgi][1], x + CG_VEC));
                continue;
            }
            for (int h = 0; h < 2 && m[sgi][h]; h++) { /* stride 2: source lanes [0, 2l - 1) of two vectors */
                const int64_t l = seg[sgi].len - h * CG_VEC < CG_VEC ? seg[sgi].len - h * CG_VEC : CG_VEC;
                const uint32_t sm = (uint32_t)((1ull << (2 * l - 1)) - 1ull);
                const float *xs = x + 2 * h * CG_VEC;
                const __m512 a = _mm512_maskz_loadu_ps((__mmask16)(sm & 0xFFFFu), xs),
                             b = _mm512_maskz_loadu_ps((__mmask16)(sm >> 16), xs + CG_VEC);
                _mm512_mask_storeu_ps(d + h * CG_VEC, m[sgi][h], _mm512_permutex2var_ps(a, even, b));
            }
        }
    }
}

/* Columns [n, n + nr) of the output for every row block, from one filled
 * panel; output column c is pixel c % P of image c / P (images yimg apart,
 * rows P apart). A tile half that straddles two images goes through a
 * scratch tile. */
__attribute__((target("avx512f"))) static void cp_product(int64_t M, const cp_geom_t *q, int64_t n,
                                                          int64_t nr, const float *w, int64_t ldw,
                                                          const float *panel, int64_t ldp,
                                                          const int64_t *boff, const float *bias,
                                                          int bias_last, float *y, int64_t yimg) {
    float *c[2];
    int whole = 1;
    for (int h = 0; h < 2; h++) {
        const int64_t a = n + h * CG_VEC, e = (a + CG_VEC < n + nr ? a + CG_VEC : n + nr) - 1;
        if (a > e) {
            c[h] = y; /* not stored */
            continue;
        }
        if (a / q->P != e / q->P) whole = 0;
        c[h] = y + a / q->P * yimg + a % q->P;
    }
    float scratch[CG_MR * CG_NR];
    if (whole && nr <= CG_VEC) {
        for (int64_t m = 0; m < M; m += CG_MR16)
            cg_tile16(M - m < CG_MR16 ? M - m : CG_MR16, nr, q->K, w + m * ldw, ldw, panel, ldp, boff,
                      bias ? bias + m : NULL, bias_last, c[0] + m * q->P, q->P);
        return;
    }
    for (int64_t m = 0; m < M; m += CG_MR) {
        const int64_t mr = M - m < CG_MR ? M - m : CG_MR;
        const float *bm = bias ? bias + m : NULL;
        if (whole && boff) {
            cg_tile_rows(mr, nr, q->K, w + m * ldw, ldw, panel, boff, bm, bias_last, c[0] + m * q->P,
                         c[1] + m * q->P, q->P);
            continue;
        }
        if (whole) {
            cg_tile(mr, nr, q->K, w + m * ldw, ldw, panel, ldp, bm, bias_last, c[0] + m * q->P,
                    c[1] + m * q->P, q->P);
            continue;
        }
        cg_tile(mr, nr, q->K, w + m * ldw, ldw, panel, ldp, bm, bias_last, scratch, scratch + CG_VEC, CG_NR);
        for (int64_t j = 0; j < nr; j++) {
            const int64_t col = n + j;
            float *yc = y + col / q->P * yimg + col % q->P + m * q->P;
            for (int64_t i = 0; i < mr; i++) yc[i * q->P] = scratch[i * CG_NR + j];
        }
    }
}
#endif

#if defined(__x86_64__)
/* Zero-padded copies (Hp x Wp, the image at row ph, column pw) of n planes
 * of IH x IW (plane ic: image ic / C, channel ic % C), by masked vectors
 * (rows are often a few floats: a memset and memcpy call each cost more). */
__attribute__((target("avx512f"))) static void cp_pad_plane(const float *src, int64_t IH, int64_t IW,
                                                            int64_t ph, int64_t pw, int64_t Hp, int64_t Wp,
                                                            float *dst) {
    for (int64_t h = 0; h < Hp; h++) {
        const int64_t ih = h - ph;
        const int inside = ih >= 0 && ih < IH;
        const float *xr = inside ? src + ih * IW : src;
        for (int64_t w0 = 0; w0 < Wp; w0 += CG_VEC) {
            /* lanes w0 + j with pw <= w0 + j < pw + IW come from xr[w0 + j - pw] */
            int64_t lo = pw - w0, hi = pw + IW - w0, len = Wp - w0 < CG_VEC ? Wp - w0 : CG_VEC;
            if (lo < 0) lo = 0;
            if (hi > CG_VEC) hi = CG_VEC;
            __m512 v = _mm512_setzero_ps();
            if (inside && hi > lo) {
                const __mmask16 lm = (__mmask16)(((1u << (hi - lo)) - 1u) << lo);
                v = _mm512_maskz_loadu_ps(lm, xr + (w0 - pw));
            }
            _mm512_mask_storeu_ps(dst + h * Wp + w0, (__mmask16)(len == CG_VEC ? 0xFFFFu : (1u << len) - 1u),
                                  v);
        }
    }
}

/* The parallel loop lies outside the AVX-512 function: an OpenMP region is outlined into a
 * function of its own, which clang does not give the enclosing function's target. */
static void cp_pad(const float *x, int64_t n, int64_t C, int64_t ximg, int64_t IH, int64_t IW, int64_t ph,
                   int64_t pw, int64_t Hp, int64_t Wp, float *xp) {
    const int nt = ba_kern_threads(n * Hp * Wp);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t ic = 0; ic < n; ic++)
        cp_pad_plane(x + ic / C * ximg + ic % C * IH * IW, IH, IW, ph, pw, Hp, Wp, xp + ic * Hp * Wp);
}
#endif

#if defined(__x86_64__)
/* Panels [p0, p1): each filled into a buffer of this thread and multiplied,
 * or, with src (a pointwise image read in place), multiplied from src's rows. */
static int cp_panels(const cp_geom_t *q, int64_t p0, int64_t p1, int64_t M, const float *w, const float *bias,
                     int bias_last, float *y, int64_t yimg, const float *src, const ba_kern_epi_t *epi) {
    if (p0 >= p1) return 1;
    int64_t G = CP_GROUP_FLOATS / (q->K * CG_NR);
    if (G < 1) G = 1;
    if (G > CP_MAX_GROUP) G = CP_MAX_GROUP;
    float *panels = src ? NULL : aligned_alloc(CG_ALIGN, (size_t)(G * q->K * CG_NR) * sizeof(float));
    if (!src && !panels) return 0;
    int64_t direct[CP_MAX_GROUP], e0 = p0 * CG_NR; /* e0: first column not yet through epi */
    for (int64_t pg = p0; pg < p1; pg += G) {
        const int64_t pe = pg + G < p1 ? pg + G : p1, n0 = pg * CG_NR,
                      n1 = pe * CG_NR < q->N ? pe * CG_NR : q->N;
        if (!src) cp_fill(q, n0, n1 - n0, panels, direct);
        for (int64_t pi = pg; pi < pe; pi++) {
            const int64_t n = pi * CG_NR, nr = q->N - n < CG_NR ? q->N - n : CG_NR;
            if (src)
                cp_product(M, q, n, nr, w, q->K, src + n, q->P, NULL, bias, bias_last, y, yimg);
            else if (direct[pi - pg] >= 0)
                cp_product(M, q, n, nr, w, q->K, q->xp + direct[pi - pg], 0, q->koff, bias, bias_last, y,
                           yimg);
            else
                cp_product(M, q, n, nr, w, q->K, panels + (pi - pg) * q->K * CG_NR, CG_NR, NULL, bias,
                           bias_last, y, yimg);
        }
        /* Columns [e0, n1) are final in every row: once there are CP_EPI_COLS of them (or at the end),
         * each image's run of them goes through the epilogue, row by row, while still in cache. */
        if (epi && (n1 - e0 >= CP_EPI_COLS || pe == p1)) {
            for (int64_t c = e0; c < n1;) {
                const int64_t i = c / q->P, p = c % q->P, len = q->P - p < n1 - c ? q->P - p : n1 - c;
                for (int64_t m = 0; m < M; m++) ba_kern_epi_apply(epi, y + i * yimg + m * q->P + p, len);
                c += len;
            }
            e0 = n1;
        }
    }
    free(panels);
    return 1;
}
#endif

int ba_kern_conv_panels(const float *x, int64_t nb, int64_t ximg, int64_t C, const ba_kern_geom_t *g,
                        const float *w, int64_t M, const float *bias, int bias_last, float *y, int64_t yimg,
                        const ba_kern_epi_t *epi) {
#if defined(__x86_64__)
    if (!ba_kern_conv_panels_ok(g) || nb <= 0 || M <= 0) return 0;
    const int64_t IH = g->in[1], IW = g->in[2], KH = g->k[1], KW = g->k[2], OH = g->out[1], OW = g->out[2];
    const int64_t sh = g->s[1], sw = g->s[2], dh = g->dil[1], dw = g->dil[2], P = OH * OW;
    const int pointwise = KH == 1 && KW == 1 && sh == 1 && sw == 1 && g->pb[1] == 0 && g->pb[2] == 0 &&
                          g->pe[1] == 0 && g->pe[2] == 0;
    /* rows [0, Hp) x columns [0, Wp) of the (padded) image that the windows reach */
    const int64_t Hp = (OH - 1) * sh + (KH - 1) * dh + 1, Wp = (OW - 1) * sw + (KW - 1) * dw + 1;
    const int unpadded = g->pb[1] == 0 && g->pb[2] == 0 && Hp <= IH && Wp <= IW;
    cp_geom_t q = {x, ximg, IH * IW, IW, OH, OW, P, sh, sw, KH, KW, dh, dw, C * KH * KW, nb * P, NULL, 0};
    float *xp = NULL;
    if (!unpadded) { /* zero-padded copy (else the windows read the image itself) */
        const int64_t ph = g->pb[1], pw = g->pb[2];
        xp = aligned_alloc(CG_ALIGN,
                           ((size_t)(nb * C * Hp * Wp) * sizeof(float) + CG_ALIGN - 1) / CG_ALIGN * CG_ALIGN);
        if (!xp) return 0;
        cp_pad(x, nb * C, C, ximg, IH, IW, ph, pw, Hp, Wp, xp);
        q.xp = xp;
        q.img = C * Hp * Wp;
        q.ch = Hp * Wp;
        q.row = Wp;
    }
    if (sh == 1 && sw == 1 && q.row == OW) { /* output rows follow each other in the source: one row of P */
        q.OH = 1;
        q.OW = P;
    }
    /* A pointwise conv of one small image (or of a few channels) reads its rows in place: they lie close
     * together or are few (no page or cache-set strides), so a panel copy costs more than it saves. */
    const int in_place = pointwise && nb == 1 && (P <= CP_IN_PLACE_MAX_P || C <= CP_IN_PLACE_MAX_C) &&
                         P % CG_ALIAS_FLOATS != 0;
    int64_t *koff = NULL;
    if (!in_place) {
        koff = malloc((size_t)q.K * sizeof(int64_t));
        if (!koff) {
            free(xp);
            return 0;
        }
        for (int64_t c = 0, k = 0; c < C; c++) /* row k = (c, kh, kw) */
            for (int64_t kh = 0; kh < KH; kh++)
                for (int64_t kw = 0; kw < KW; kw++) koff[k++] = c * q.ch + kh * dh * q.row + kw * dw;
    }
    q.koff = koff;
    q.direct = sw == 1 && C * q.ch <= CP_DIRECT_MAX_FLOATS;
    const int64_t npanels = (q.N + CG_NR - 1) / CG_NR;
    int nt = M * q.N * q.K < SGEMM_PAR_MIN_MACS || omp_get_level() > 0 ? 1 : omp_get_max_threads();
    if (nt > npanels) nt = (int)npanels;
    int ok = 1;
    if (nt <= 1) {
        ok = cp_panels(&q, 0, npanels, M, w, bias, bias_last, y, yimg, in_place ? x : NULL, epi);
    } else {
#pragma omp parallel num_threads(nt) reduction(&& : ok)
        {
            const int t = omp_get_thread_num(), T = omp_get_num_threads();
            ok = cp_panels(&q, npanels * t / T, npanels * (t + 1) / T, M, w, bias, bias_last, y, yimg,
                           in_place ? x : NULL, epi) &&
                 ok;
        }
    }
    free(koff);
    free(xp);
    return ok;
#else
    (void)x, (void)nb, (void)ximg, (void)C, (void)g, (void)w, (void)M, (void)bias, (void)bias_last, (void)y,
        (void)yimg, (void)epi;
    return 0;
#endif
}

ba_status ba_kern_need_f32(const ba_node_t *node, const ba_tensor_t *t, const char *what, ba_error *err) {
    if (!t)
        return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): %s is missing", node->name, node->op_type,
                            what);
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
        return ba_error_set(err, BA_ERR_UNSUPPORTED,
                            "node %s (%s): %d spatial dimensions (1 to %d supported)", node->name,
                            node->op_type, nsp, BA_KERN_MAX_SP);
    int64_t s[BA_KERN_MAX_SP], d[BA_KERN_MAX_SP], p[2 * BA_KERN_MAX_SP];
    BA_TRY(geom_ints(node, "strides", nsp, 1, s, err));
    BA_TRY(geom_ints(node, "dilations", nsp, 1, d, err));
    BA_TRY(geom_ints(node, "pads", 2 * nsp, 0, p, err));
    const char *ap = ba_node_attr_string(node, "auto_pad", "NOTSET");
    int same_upper = strcmp(ap, "SAME_UPPER") == 0, same_lower = strcmp(ap, "SAME_LOWER") == 0;
    int valid = strcmp(ap, "VALID") == 0;
    if (!same_upper && !same_lower && !valid && strcmp(ap, "NOTSET") != 0 && ap[0] != '\0')
        return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): unknown auto_pad '%s'", node->name,
                            node->op_type, ap);

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
        /* ceil_mode: one window may hang past the end when it starts inside
         * (PyTorch: MaxPool2d(2, ceil_mode=True) of a 1x1 map is 1x1). */
        if (span < 0 && !(ceil_mode && span + s[i] - 1 >= 0))
            return ba_error_set(
                err, BA_ERR_INPUT, "node %s (%s): kernel extent %lld exceeds padded input %lld on axis %d",
                node->name, node->op_type, (long long)keff, (long long)(in_sp[i] + g->pb[j] + g->pe[j]), i);
        int64_t out = (ceil_mode ? (span + s[i] - 1) / s[i] : span / s[i]) + 1;
        /* ceil_mode: a last window that starts in the end padding is dropped
         * (PyTorch and onnxruntime agree on this). */
        if (ceil_mode && (out - 1) * s[i] >= in_sp[i] + g->pb[j]) out--;
        g->out[j] = out;
    }
    return BA_OK;
}

ba_status ba_kern_convt_geom(const ba_node_t *node, const ba_tensor_t *X, const ba_tensor_t *W,
                             ba_kern_geom_t *g, ba_error *err) {
    const int nsp = X->ndim - 2, off = BA_KERN_MAX_SP - nsp;
    const int64_t *s = NULL, *d = NULL, *p = NULL, *op = NULL, *os = NULL;
    int ns = ba_node_attr_ints(node, "strides", &s), nd = ba_node_attr_ints(node, "dilations", &d);
    int np = ba_node_attr_ints(node, "pads", &p), nop = ba_node_attr_ints(node, "output_padding", &op);
    int nos = ba_node_attr_ints(node, "output_shape", &os);
    if ((ns && ns != nsp) || (nd && nd != nsp) || (np && np != 2 * nsp) || (nop && nop != nsp) ||
        (nos && nos != nsp && nos != nsp + 2))
        return ba_error_set(err, BA_ERR_INPUT,
                            "node %s (ConvTranspose): strides/dilations/pads/output_padding/output_shape do "
                            "not match %d spatial dims",
                            node->name, nsp);
    if (nos == nsp + 2) os += 2; /* some exporters give the full N, C, spatial shape */
    const char *ap = ba_node_attr_string(node, "auto_pad", "NOTSET");
    int upper = strcmp(ap, "SAME_UPPER") == 0, lower = strcmp(ap, "SAME_LOWER") == 0;
    int valid = strcmp(ap, "VALID") == 0;
    if (!upper && !lower && !valid && strcmp(ap, "NOTSET") != 0 && ap[0] != '\0')
        return ba_error_set(err, BA_ERR_INPUT, "node %s (ConvTranspose): unknown auto_pad '%s'", node->name,
                            ap);
    memset(g, 0, sizeof *g);
    g->nsp = nsp;
    for (int i = 0; i < BA_KERN_MAX_SP; i++) g->in[i] = g->k[i] = g->s[i] = g->dil[i] = g->out[i] = 1;
    for (int i = 0; i < nsp; i++) {
        int j = off + i;
        int64_t si = ns ? s[i] : 1, di = nd ? d[i] : 1, opi = nop ? op[i] : 0, k = W->shape[2 + i];
        int64_t in = X->shape[2 + i];
        if (si < 1 || di < 1 || opi < 0 || k < 1 || in < 1 || (np && (p[i] < 0 || p[nsp + i] < 0)))
            return ba_error_set(err, BA_ERR_INPUT, "node %s (ConvTranspose): bad window on axis %d",
                                node->name, i);
        int64_t keff = (k - 1) * di + 1, full = si * (in - 1) + opi + keff, o;
        g->in[j] = in;
        g->k[j] = k;
        g->s[j] = si;
        g->dil[j] = di;
        if (nos && (upper || lower || !np)) {
            o = os[i];
            int64_t total = full - o;
            g->pb[j] = total < 0 ? 0 : (upper ? total / 2 : total - total / 2);
        } else if (upper || lower) {
            o = in * si;
            int64_t total = full - o;
            g->pb[j] = total < 0 ? 0 : (upper ? total / 2 : total - total / 2);
        } else if (nos) { /* explicit pads and an explicit output size */
            o = os[i];
            g->pb[j] = p[i];
        } else {
            g->pb[j] = (np && !valid) ? p[i] : 0;
            int64_t pe = (np && !valid) ? p[nsp + i] : 0;
            o = full - g->pb[j] - pe;
        }
        if (o < 1)
            return ba_error_set(err, BA_ERR_INPUT, "node %s (ConvTranspose): output size %lld on axis %d",
                                node->name, (long long)o, i);
        g->out[j] = o;
        g->pe[j] = full - o - g->pb[j];
    }
    return BA_OK;
}

void ba_kern_geom_out_shape(const ba_kern_geom_t *g, int64_t *shape) {
    for (int i = 0; i < g->nsp; i++) shape[i] = g->out[BA_KERN_MAX_SP - g->nsp + i];
}

#if defined(__x86_64__)
/* Widest output row im2col_2d_avx512 takes (its per-row masks live on the stack). */
#define IM2COL_MAX_OW 1024
/* im2col of a 1-D/2-D window with column stride 1 or 2 (the common convs),
 * AVX-512: each output row is a few masked vector loads (lanes outside the
 * image read nothing and give 0) and stores, with the masks worked out once
 * per column buffer row, instead of a scalar pad loop, a short copy loop and
 * a memset call per output row of a few floats. */
__attribute__((target("avx512f"))) static void im2col_2d_row_avx512(const float *x, const ba_kern_geom_t *g,
                                                                    float *cols, int64_t ldc, int64_t r) {
    const int64_t IH = g->in[1], IW = g->in[2], KH = g->k[1], KW = g->k[2];
    const int64_t OH = g->out[1], OW = g->out[2], sw = g->s[2], sh = g->s[1];
    const int64_t nch = (OW + 15) / 16;
    const __mmask16 tail = (__mmask16)(OW % 16 ? (1u << (OW % 16)) - 1u : 0xFFFFu);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512 zero = _mm512_setzero_ps();
    const int64_t kw = r % KW, kh = (r / KW) % KH, c = r / (KW * KH);
    float *dst = cols + r * ldc;
    const float *xc = x + c * IH * IW;
    const int64_t wbase = kw * g->dil[2] - g->pb[2], hbase = kh * g->dil[1] - g->pb[1];
    int64_t wlo, whi, hlo, hhi;
    ba_kern_window_taps(wbase, sw, OW, IW, &wlo, &whi);
    ba_kern_window_taps(hbase, sh, OH, IH, &hlo, &hhi); /* output rows oh inside the image */
    /* load masks per 16-column chunk: columns in [wlo, whi); for stride 2 the
     * source lanes of two vectors (odd lanes between valid ones are inside too) */
    __mmask16 m0[IM2COL_MAX_OW / 16], m1[IM2COL_MAX_OW / 16];
    for (int64_t ch = 0; ch < nch; ch++) {
        const int64_t o0 = ch * 16, n = OW - o0 < 16 ? OW - o0 : 16;
        const int64_t l = wlo - o0 < 0 ? 0 : wlo - o0, h = whi - o0 > n ? n : whi - o0;
        m0[ch] = m1[ch] = 0;
        if (h <= l) continue;
        if (sw == 1) {
            m0[ch] = (__mmask16)(((1u << (h - l)) - 1u) << l); /* h - l <= 16 */
        } else {
            const uint32_t sm = (uint32_t)(((1ull << (2 * h - 1 - 2 * l)) - 1ull) << (2 * l));
            m0[ch] = (__mmask16)(sm & 0xFFFFu);
            m1[ch] = (__mmask16)(sm >> 16);
        }
    }
    for (int64_t oh = 0; oh < OH; oh++) {
        float *drow = dst + oh * OW;
        if (oh < hlo || oh >= hhi) {
            for (int64_t ch = 0; ch < nch - 1; ch++) _mm512_storeu_ps(drow + ch * 16, zero);
            _mm512_mask_storeu_ps(drow + (nch - 1) * 16, tail, zero);
            continue;
        }
        const float *xrow = xc + (oh * sh + hbase) * IW + wbase;
        if (sw == 1) {
            for (int64_t ch = 0; ch < nch - 1; ch++)
                _mm512_storeu_ps(drow + ch * 16, _mm512_maskz_loadu_ps(m0[ch], xrow + ch * 16));
            _mm512_mask_storeu_ps(drow + (nch - 1) * 16, tail,
                                  _mm512_maskz_loadu_ps(m0[nch - 1], xrow + (nch - 1) * 16));
        } else {
            for (int64_t ch = 0; ch < nch; ch++) {
                const __m512 a = _mm512_maskz_loadu_ps(m0[ch], xrow + ch * 32),
                             b = _mm512_maskz_loadu_ps(m1[ch], xrow + ch * 32 + 16);
                _mm512_mask_storeu_ps(drow + ch * 16, ch == nch - 1 ? tail : (__mmask16)0xFFFFu,
                                      _mm512_permutex2var_ps(a, even, b));
            }
        }
    }
}

/* Rows in parallel outside the AVX-512 function (see cp_pad). */
static void im2col_2d_avx512(const float *x, int64_t C, const ba_kern_geom_t *g, float *cols, int64_t ldc,
                             int nt) {
    const int64_t rows = C * g->k[1] * g->k[2];
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t r = 0; r < rows; r++) im2col_2d_row_avx512(x, g, cols, ldc, r);
}
#endif

void ba_kern_im2col(const float *x, int64_t C, const ba_kern_geom_t *g, float *cols, int64_t ldc) {
    const int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];
    const int64_t KD = g->k[0], KH = g->k[1], KW = g->k[2];
    const int64_t OD = g->out[0], OH = g->out[1], OW = g->out[2];
    const int64_t P = OD * OH * OW, rows = C * KD * KH * KW;
    const int nt = ba_kern_threads(rows * P);
#if defined(__x86_64__)
    if (KD == 1 && ID == 1 && (g->s[2] == 1 || g->s[2] == 2) && OW <= IM2COL_MAX_OW && cg_have_avx512()) {
        im2col_2d_avx512(x, C, g, cols, ldc, nt);
        return;
    }
#endif
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t r = 0; r < rows; r++) {
        int64_t kw = r % KW, kh = (r / KW) % KH, kd = (r / (KW * KH)) % KD, c = r / (KW * KH * KD);
        float *dst = cols + r * ldc;
        const float *xc = x + c * ID * IH * IW;
        int64_t wlo, whi;
        int64_t wbase = kw * g->dil[2] - g->pb[2];
        ba_kern_window_taps(wbase, g->s[2], OW, IW, &wlo, &whi);
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
                    /* rows are short (tens of floats): an inline vector copy beats a memcpy call */
#pragma omp simd
                    for (int64_t ow = wlo; ow < whi; ow++) drow[ow] = xrow[ow];
                } else if (g->s[2] == 2) {
#pragma omp simd
                    for (int64_t ow = wlo; ow < whi; ow++) drow[ow] = xrow[2 * ow];
                } else {
                    const int64_t sw = g->s[2];
                    for (int64_t ow = wlo; ow < whi; ow++) drow[ow] = xrow[ow * sw];
                }
                for (int64_t ow = whi; ow < OW; ow++) drow[ow] = 0.0f;
            }
        }
    }
}

void ba_kern_col2im_add(const float *cols, int64_t ldc, int64_t C, const ba_kern_geom_t *g, float *y) {
    const int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];
    const int64_t KD = g->k[0], KH = g->k[1], KW = g->k[2];
    const int64_t OD = g->out[0], OH = g->out[1], OW = g->out[2];
    const int64_t P = ID * IH * IW, K = KD * KH * KW;
    /* One channel per iteration: rows of different channels write disjoint planes. */
    const int nt = ba_kern_threads(C * K * P);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t c = 0; c < C; c++) {
        float *yc = y + c * OD * OH * OW;
        for (int64_t kk = 0; kk < K; kk++) {
            int64_t kw = kk % KW, kh = (kk / KW) % KH, kd = kk / (KW * KH);
            const float *src = cols + (c * K + kk) * ldc;
            int64_t wbase = kw * g->dil[2] - g->pb[2], ilo, ihi;
            ba_kern_window_taps(wbase, g->s[2], IW, OW, &ilo, &ihi);
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

int ba_kern_broadcast_strides(const ba_tensor_t *src, int dndim, const int64_t *dshape, int64_t *sstride) {
    if (src->ndim > dndim) return -1;
    int64_t acc = 1;
    for (int i = dndim - 1; i >= 0; i--) {
        int si = i - (dndim - src->ndim);
        if (si < 0) {
            sstride[i] = 0;
            continue;
        }
        if (src->shape[si] == dshape[i])
            sstride[i] = acc;
        else if (src->shape[si] == 1)
            sstride[i] = 0;
        else
            return -1;
        acc *= src->shape[si];
    }
    return 0;
}

ba_status ba_kern_broadcast_to(const ba_node_t *node, const ba_tensor_t *src, int dndim,
                               const int64_t *dshape, float *dst, const char *what, ba_error *err) {
    char b1[128], b2[128];
    int64_t sstride[BA_MAX_DIMS]; /* stride in src per dst dim, 0 where broadcast */
    if (ba_kern_broadcast_strides(src, dndim, dshape, sstride) != 0) goto bad;
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
    return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): %s of shape %s does not broadcast to %s",
                        node->name, node->op_type, what, ba_shape_str(src->ndim, src->shape, b1, sizeof b1),
                        ba_shape_str(dndim, dshape, b2, sizeof b2));
}

ba_status ba_kern_axis(const ba_node_t *node, int64_t axis, int r, int *out, ba_error *err) {
    if (axis < -r || axis >= r)
        return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): axis %lld out of range for rank %d", node->name,
                            node->op_type, (long long)axis, r);
    *out = (int)(axis < 0 ? axis + r : axis);
    return BA_OK;
}

void ba_kern_window_taps(int64_t start, int64_t dil, int64_t k, int64_t n, int64_t *lo, int64_t *hi) {
    int64_t l = start >= 0 ? 0 : (-start + dil - 1) / dil;
    int64_t h = start < n ? (n - 1 - start) / dil + 1 : 0;
    if (h > k) h = k;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

int64_t ba_kern_window_taps_padded(int64_t start, int64_t dil, int64_t k, int64_t n, int64_t pb, int64_t pe) {
    int64_t lo, hi;
    ba_kern_window_taps(start + pb, dil, k, n + pb + pe, &lo, &hi);
    return hi - lo;
}

int64_t ba_kern_avg_divisor(const ba_kern_geom_t *g, int include_pad, int64_t d0, int64_t h0, int64_t w0,
                            int64_t taps) {
    if (!include_pad) return taps;
    return ba_kern_window_taps_padded(d0, g->dil[0], g->k[0], g->in[0], g->pb[0], g->pe[0]) *
           ba_kern_window_taps_padded(h0, g->dil[1], g->k[1], g->in[1], g->pb[1], g->pe[1]) *
           ba_kern_window_taps_padded(w0, g->dil[2], g->k[2], g->in[2], g->pb[2], g->pe[2]);
}

ba_status ba_kern_pool_geom(const ba_node_t *node, const ba_tensor_t *X, ba_kern_geom_t *g, ba_error *err) {
    const int nsp = X->ndim - 2;
    const int64_t *ks = NULL;
    if (ba_node_attr_ints(node, "kernel_shape", &ks) != nsp)
        return ba_error_set(err, BA_ERR_INPUT, "node %s (%s): kernel_shape must have %d values", node->name,
                            node->op_type, nsp);
    const int ceil_mode = ba_node_attr_int(node, "ceil_mode", 0) != 0;
    return ba_kern_geom_make(node, nsp, X->shape + 2, ks, ceil_mode, g, err);
}

int64_t ba_kern_window_argmax(const ba_kern_geom_t *g, const float *x, int64_t od, int64_t oh, int64_t ow) {
    const int64_t IH = g->in[1], IW = g->in[2];
    const int64_t d0 = od * g->s[0] - g->pb[0], h0 = oh * g->s[1] - g->pb[1], w0 = ow * g->s[2] - g->pb[2];
    int64_t dlo, dhi, hlo, hhi, wlo, whi;
    ba_kern_window_taps(d0, g->dil[0], g->k[0], g->in[0], &dlo, &dhi);
    ba_kern_window_taps(h0, g->dil[1], g->k[1], IH, &hlo, &hhi);
    ba_kern_window_taps(w0, g->dil[2], g->k[2], IW, &wlo, &whi);
    float best = -INFINITY;
    int64_t bi = -1;
    for (int64_t a = dlo; a < dhi; a++)
        for (int64_t b = hlo; b < hhi; b++)
            for (int64_t c = wlo; c < whi; c++) {
                int64_t e = ((d0 + a * g->dil[0]) * IH + h0 + b * g->dil[1]) * IW + w0 + c * g->dil[2];
                if (x[e] > best || bi < 0) {
                    best = x[e];
                    bi = e;
                }
            }
    return bi;
}
