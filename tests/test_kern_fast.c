/* The throughput paths of the heavy kernels against naive float64 loops:
 * ba_kern_sgemm split over threads (both sides, every transpose), Conv run
 * as parallel chunks of batched images (a trailing one-image chunk, groups,
 * bias), the depthwise blocks against the float loop they compute (bit for bit),
 * MatMul against the in-order fused-multiply-add sum on AVX-512 CPUs (bit for bit),
 * and Softmax's vector exp (masked -inf entries stay exactly 0). */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "model/kern_conv.h"
#include "model/ops.h"

/* Threads the split paths are exercised with (whatever the host has). */
#define FAST_TEST_THREADS 2
#define FAST_RTOL 1e-5
#define SOFTMAX_RTOL 2e-6

static float *randn(int64_t n, uint64_t seed) {
    ba_rng_t r;
    ba_rng_seed(&r, seed);
    float *v = malloc((size_t)n * sizeof(float));
    cr_assert_not_null(v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)ba_rng_normal(&r);
    return v;
}

static ba_tensor_t *tensor_of(int ndim, const int64_t *shape, uint64_t seed) {
    ba_error err;
    ba_tensor_t *t = ba_tensor_new(BA_DT_F32, ndim, shape, &err);
    cr_assert_not_null(t);
    float *v = randn(t->numel, seed);
    memcpy(t->data, v, (size_t)t->numel * sizeof(float));
    free(v);
    return t;
}

/* Largest |got - want| / max(1, |want|). */
static double max_rel_err(const float *got, const double *want, int64_t n) {
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(got[i] - want[i]) / fmax(1.0, fabs(want[i]));
        if (d > e || isnan(d)) e = isnan(d) ? INFINITY : d;
    }
    return e;
}

static void check_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K) {
    const float alpha = 0.75f, beta = 0.5f;
    const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 7; /* padded strides */
    float *A = randn((ta ? K : M) * lda, 1), *B = randn((tb ? N : K) * ldb, 2), *C = randn(M * ldc, 3);
    double *want = malloc((size_t)(M * ldc) * sizeof(double));
    cr_assert_not_null(want);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < ldc; j++) {
            if (j >= N) { /* padding columns must stay untouched */
                want[i * ldc + j] = C[i * ldc + j];
                continue;
            }
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
            want[i * ldc + j] = alpha * s + beta * C[i * ldc + j];
        }
    ba_kern_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    double e = max_rel_err(C, want, M * ldc);
    cr_expect(e < FAST_RTOL, "sgemm ta=%d tb=%d %lldx%lldx%lld: error %g", ta, tb, (long long)M, (long long)N,
              (long long)K, e);
    free(A), free(B), free(C), free(want);
}

Test(kern_fast, sgemm_split_over_threads_matches_naive_for_every_transpose) {
    omp_set_num_threads(FAST_TEST_THREADS);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            check_sgemm(ta, tb, 37, 301, 53); /* wide: split along N */
            check_sgemm(ta, tb, 299, 29, 61); /* tall: split along M */
            check_sgemm(ta, tb, 5, 7, 3);     /* small: one call */
        }
}

/* A node with int / ints attributes only (enough for Conv). */
typedef struct {
    ba_node_t node;
    ba_attr_t attrs[4];
    int64_t ints[4][4];
    int ids[4];
} test_node_t;

static void add_ints(test_node_t *t, const char *name, int n, const int64_t *v) {
    ba_attr_t *a = &t->attrs[t->node.nattr];
    memset(a, 0, sizeof *a);
    a->name = (char *)name;
    a->type = n == 1 ? BA_ATTR_INT : BA_ATTR_INTS;
    memcpy(t->ints[t->node.nattr], v, (size_t)n * sizeof(int64_t));
    a->i = v[0];
    a->n = n;
    a->ints = t->ints[t->node.nattr];
    t->node.nattr++;
}

static void init_node(test_node_t *t, const char *op, int nin) {
    memset(t, 0, sizeof *t);
    t->node.name = (char *)"n0";
    t->node.op_type = (char *)op;
    t->node.domain = (char *)"";
    t->node.opset = 13;
    t->node.def = ba_op_lookup(op, "");
    cr_assert_not_null(t->node.def);
    t->node.nin = nin;
    t->node.nout = 1;
    t->node.inputs = t->ids;
    t->node.outputs = t->ids + 3;
    t->node.attrs = t->attrs;
}

/* 2-D conv, pads 1, stride s, groups g, naive float64. */
/* Leaves a NaN-filled buffer of a tensor of this shape in the tensor cache, so
 * that the next output of that size starts as garbage: a kernel that relies on
 * zeroed outputs (they are allocated uninitialised) then returns NaNs. */
static void poison_next_alloc(ba_dtype dt, int ndim, const int64_t *shape) {
    ba_error err;
    ba_tensor_t *t = ba_tensor_new_uninit(dt, ndim, shape, &err);
    cr_assert_not_null(t);
    memset(t->data, 0xFF, ba_tensor_nbytes(t));
    ba_tensor_unref(t);
}

static void check_conv_bias(int64_t N, int64_t C, int64_t H, int64_t M, int64_t group, int64_t s,
                            int with_bias) {
    const int64_t Kh = 3, Cg = C / group, Mg = M / group, pad = 1, OH = (H + 2 * pad - Kh) / s + 1;
    const int64_t xs[4] = {N, C, H, H}, ws[4] = {M, Cg, Kh, Kh}, bs[1] = {M};
    ba_tensor_t *in[3] = {tensor_of(4, xs, 10), tensor_of(4, ws, 11), tensor_of(1, bs, 12)}, *out = NULL;
    if (!with_bias) memset(in[2]->data, 0, ba_tensor_nbytes(in[2])); /* the naive loop adds b[m] = 0 */
    const int64_t ys[4] = {N, M, OH, OH};
    poison_next_alloc(BA_DT_F32, 4, ys);
    test_node_t t;
    init_node(&t, "Conv", with_bias ? 3 : 2);
    const int64_t pads[4] = {pad, pad, pad, pad}, strides[2] = {s, s};
    add_ints(&t, "pads", 4, pads);
    add_ints(&t, "strides", 2, strides);
    add_ints(&t, "group", 1, &group);
    ba_error err;
    cr_assert_eq(t.node.def->forward(&t.node, in, with_bias ? 3 : 2, &out, 1, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(out->numel, N * M * OH * OH);
    const float *x = in[0]->data, *w = in[1]->data, *b = in[2]->data;
    double *want = malloc((size_t)out->numel * sizeof(double));
    cr_assert_not_null(want);
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OH; ow++) {
                    double acc = b[m];
                    const int64_t gi = m / Mg;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t kh = 0; kh < Kh; kh++)
                            for (int64_t kw = 0; kw < Kh; kw++) {
                                int64_t ih = oh * s - pad + kh, iw = ow * s - pad + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= H) continue;
                                acc += (double)w[((m * Cg + c) * Kh + kh) * Kh + kw] *
                                       x[((n * C + gi * Cg + c) * H + ih) * H + iw];
                            }
                    want[((n * M + m) * OH + oh) * OH + ow] = acc;
                }
    double e = max_rel_err(out->data, want, out->numel);
    cr_expect(e < FAST_RTOL, "conv N=%lld C=%lld H=%lld M=%lld group=%lld stride=%lld: error %g",
              (long long)N, (long long)C, (long long)H, (long long)M, (long long)group, (long long)s, e);
    free(want);
    for (int i = 0; i < 3; i++) ba_tensor_unref(in[i]);
    ba_tensor_unref(out);
}

static void check_conv(int64_t N, int64_t C, int64_t H, int64_t M, int64_t group, int64_t s) {
    check_conv_bias(N, C, H, M, group, s, 1);
}

Test(kern_fast, conv_outputs_are_fully_written_into_reused_buffers) {
    omp_set_num_threads(FAST_TEST_THREADS);
    /* outputs of >= 256 KiB go through the tensor cache, poisoned with NaN first */
    check_conv_bias(4, 16, 64, 16, 16, 1, 0); /* depthwise, no bias */
    check_conv_bias(4, 16, 64, 16, 16, 1, 1); /* depthwise, bias: interior blocks, the last one moved back */
    check_conv_bias(4, 16, 64, 16, 16, 2, 1); /* depthwise, stride 2 */
    check_conv_bias(64, 16, 10, 32, 16, 1,
                    1); /* depthwise, channel multiplier 2, interior narrower than a block */
    check_conv_bias(4, 8, 64, 16, 1, 1, 0); /* im2col + gemm, no bias */
    check_conv_bias(2, 8, 64, 16, 2, 1, 0); /* groups */
}

/* MaxPool 3x3, stride 2, pad 1 (and its indices) on a poisoned output buffer. */
Test(kern_fast, maxpool_outputs_are_fully_written_into_reused_buffers) {
    const int64_t N = 4, C = 16, H = 64, OH = (H + 2 - 3) / 2 + 1;
    const int64_t xs[4] = {N, C, H, H}, ys[4] = {N, C, OH, OH};
    ba_tensor_t *in[1] = {tensor_of(4, xs, 21)}, *out[2] = {NULL, NULL};
    poison_next_alloc(BA_DT_F32, 4, ys);
    test_node_t t;
    init_node(&t, "MaxPool", 1);
    const int64_t k[2] = {3, 3}, st[2] = {2, 2}, pads[4] = {1, 1, 1, 1};
    add_ints(&t, "kernel_shape", 2, k);
    add_ints(&t, "strides", 2, st);
    add_ints(&t, "pads", 4, pads);
    ba_error err;
    cr_assert_eq(t.node.def->forward(&t.node, in, 1, out, 1, &err), BA_OK, "%s", err.msg);
    const float *x = in[0]->data, *y = out[0]->data;
    int64_t bad = 0;
    for (int64_t pl = 0; pl < N * C; pl++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OH; ow++) {
                float best = -INFINITY;
                for (int64_t a = 0; a < 3; a++)
                    for (int64_t b = 0; b < 3; b++) {
                        int64_t ih = oh * 2 - 1 + a, iw = ow * 2 - 1 + b;
                        if (ih >= 0 && ih < H && iw >= 0 && iw < H && x[(pl * H + ih) * H + iw] > best)
                            best = x[(pl * H + ih) * H + iw];
                    }
                bad += y[(pl * OH + oh) * OH + ow] != best;
            }
    cr_expect_eq(bad, 0, "%lld MaxPool outputs differ from the naive maximum", (long long)bad);
    ba_tensor_unref(in[0]);
    ba_tensor_unref(out[0]);
}

Test(kern_fast, conv_batched_chunks_in_parallel_match_naive) {
    omp_set_num_threads(FAST_TEST_THREADS);
    check_conv(9, 6, 16, 8, 1, 1); /* 4 images per sgemm: chunks 4, 4, 1 (one-image tail) */
    check_conv(9, 6, 16, 8, 2, 2); /* groups, stride 2 */
    check_conv(3, 4, 40, 6, 1, 1); /* wide images: one image per chunk, chunks across threads */
    check_conv(1, 4, 40, 6, 1, 1); /* one image: im2col and sgemm split inside */
}

/* Depthwise conv (group = C, multiplier mult, k x k, stride s, pads k / 2) against a float loop that adds
 * the taps in the kernel's order (bias, then kh, then kw; C11 mode rounds a*b and the sum apart): the
 * vector blocks, computed several at a time, must give exactly these floats. */
static void check_depthwise_exact(int64_t N, int64_t C, int64_t mult, int64_t H, int64_t W, int64_t k,
                                  int64_t s) {
    const int64_t M = C * mult, pad = k / 2, OH = (H + 2 * pad - k) / s + 1, OW = (W + 2 * pad - k) / s + 1;
    const int64_t xs[4] = {N, C, H, W}, ws[4] = {M, 1, k, k}, bs[1] = {M};
    ba_tensor_t *in[3] = {tensor_of(4, xs, 30), tensor_of(4, ws, 31), tensor_of(1, bs, 32)}, *out = NULL;
    test_node_t t;
    init_node(&t, "Conv", 3);
    const int64_t pads[4] = {pad, pad, pad, pad}, strides[2] = {s, s}, kernel[2] = {k, k};
    add_ints(&t, "pads", 4, pads);
    add_ints(&t, "strides", 2, strides);
    add_ints(&t, "group", 1, &C);
    add_ints(&t, "kernel_shape", 2, kernel);
    ba_error err;
    cr_assert_eq(t.node.def->forward(&t.node, in, 3, &out, 1, &err), BA_OK, "%s", err.msg);
    const float *x = in[0]->data, *w = in[1]->data, *b = in[2]->data, *y = out->data;
    int64_t bad = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    float acc = b[m];
                    for (int64_t kh = 0; kh < k; kh++)
                        for (int64_t kw = 0; kw < k; kw++) {
                            const int64_t ih = oh * s - pad + kh, iw = ow * s - pad + kw;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            acc += w[(m * k + kh) * k + kw] * x[((n * C + m / mult) * H + ih) * W + iw];
                        }
                    const float got = y[((n * M + m) * OH + oh) * OW + ow];
                    bad += memcmp(&got, &acc, sizeof acc) != 0;
                }
    cr_expect_eq(bad, 0, "depthwise N=%lld C=%lld x%lld %lldx%lld k%lld s%lld: %lld outputs differ",
                 (long long)N, (long long)C, (long long)mult, (long long)H, (long long)W, (long long)k,
                 (long long)s, (long long)bad);
    for (int i = 0; i < 3; i++) ba_tensor_unref(in[i]);
    ba_tensor_unref(out);
}

Test(kern_fast, depthwise_adds_taps_in_order_bit_for_bit) {
    omp_set_num_threads(FAST_TEST_THREADS);
    check_depthwise_exact(2, 3, 1, 9, 100, 3, 1); /* six interior blocks: a group of four, then two */
    check_depthwise_exact(2, 3, 1, 9, 101, 3,
                          2); /* stride 2: even lanes of two vectors, the last plane's end */
    check_depthwise_exact(1, 4, 2, 12, 70, 5, 1); /* 5x5, channel multiplier 2 */
    check_depthwise_exact(1, 4, 1, 7, 10, 3, 1);  /* interior narrower than a block */
    check_depthwise_exact(1, 2, 1, 5, 37, 5, 2);  /* 5x5 stride 2 */
    check_depthwise_exact(2, 3, 1, 6, 9, 5, 1);   /* 5x5 on rows narrower than a block: masked taps */
    check_depthwise_exact(1, 2, 1, 4, 40, 5, 1);  /* three blocks: one group of three, the last moved back */
}

/* MatMul (batched, broadcast B; and one B for every batch: folded into rows) on CPUs with AVX-512: every
 * output is the in-order float sum over K with one rounding per term (fmaf), as the register-tiled
 * kernel computes it (OpenBLAS, used before, sums in its own blocked order). */
static void check_matmul_in_order(int64_t batch, int64_t M, int64_t K, int64_t N, int b_batched) {
    const int64_t as[3] = {batch, M, K}, bs3[3] = {batch, K, N}, bs2[2] = {K, N};
    ba_tensor_t *in[2] = {tensor_of(3, as, 40), b_batched ? tensor_of(3, bs3, 41) : tensor_of(2, bs2, 41)};
    ba_tensor_t *out = NULL;
    test_node_t t;
    init_node(&t, "MatMul", 2);
    ba_error err;
    cr_assert_eq(t.node.def->forward(&t.node, in, 2, &out, 1, &err), BA_OK, "%s", err.msg);
    const float *a = in[0]->data, *b = in[1]->data, *y = out->data;
    int64_t bad = 0;
    for (int64_t e = 0; e < batch; e++)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                const float *be = b_batched ? b + e * K * N : b;
                float acc = 0.0f;
                for (int64_t k = 0; k < K; k++) acc = fmaf(a[(e * M + i) * K + k], be[k * N + j], acc);
                bad += memcmp(&acc, &y[(e * M + i) * N + j], sizeof acc) != 0;
            }
    cr_expect_eq(bad, 0, "MatMul %lldx%lldx%lld (batch %lld): %lld outputs differ from the in-order sum",
                 (long long)M, (long long)K, (long long)N, (long long)batch, (long long)bad);
    for (int i = 0; i < 2; i++) ba_tensor_unref(in[i]);
    ba_tensor_unref(out);
}

Test(kern_fast, matmul_sums_in_order_on_avx512) {
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("fma"))
        cr_skip_test("no AVX-512: MatMul runs on OpenBLAS");
    omp_set_num_threads(FAST_TEST_THREADS);
    check_matmul_in_order(3, 40, 120, 661, 0); /* one B: batch folded into rows, split over threads */
    check_matmul_in_order(4, 7, 33, 19, 1);    /* attention-style batched products, partial tiles */
    check_matmul_in_order(1, 5, 64, 512, 0);   /* B rows 2 KiB apart: copied to panels first */
}

static void check_softmax(const char *op) {
    const int64_t rows = 64, n = 77;
    const int64_t shape[2] = {rows, n};
    ba_tensor_t *x = tensor_of(2, shape, 20), *out = NULL;
    float *xv = x->data;
    for (int64_t i = 0; i < rows * n; i++) {
        xv[i] *= 12.0f;                    /* logits over [-40, 40] */
        if (i % 7 == 3) xv[i] = -INFINITY; /* attention-style masks */
    }
    test_node_t t;
    init_node(&t, op, 1);
    ba_error err;
    cr_assert_eq(t.node.def->forward(&t.node, &x, 1, &out, 1, &err), BA_OK, "%s", err.msg);
    const float *y = out->data;
    int logsm = strcmp(op, "LogSoftmax") == 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = xv + r * n;
        double mx = -INFINITY, s = 0;
        for (int64_t k = 0; k < n; k++) mx = fmax(mx, xr[k]);
        for (int64_t k = 0; k < n; k++) s += exp((double)xr[k] - mx);
        for (int64_t k = 0; k < n; k++) {
            double want = logsm ? (double)xr[k] - mx - log(s) : exp((double)xr[k] - mx) / s;
            float got = y[r * n + k];
            if (isinf(xr[k])) {
                if (logsm)
                    cr_expect(isinf(got) && got < 0, "row %lld col %lld: %g", (long long)r, (long long)k,
                              got);
                else
                    cr_expect_eq(got, 0.0f, "masked entry row %lld col %lld: %g", (long long)r, (long long)k,
                                 got);
                continue;
            }
            /* float32 rounds x - max by up to |x - max| * eps / 2: exp's relative error inherits it */
            double tol = logsm ? SOFTMAX_RTOL * fmax(1.0, fabs(want))
                               : want * (SOFTMAX_RTOL + fabs((double)xr[k] - mx) * FLT_EPSILON) + 1e-37;
            cr_expect(fabs(got - want) <= tol, "%s row %lld col %lld: %.9g want %.9g", op, (long long)r,
                      (long long)k, got, want);
        }
    }
    ba_tensor_unref(x);
    ba_tensor_unref(out);
}

Test(kern_fast, softmax_vector_exp_matches_double_and_keeps_masked_zeros) {
    check_softmax("Softmax");
    check_softmax("LogSoftmax");
}
