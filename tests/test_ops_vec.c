/* The vectorized float32 elementwise loops (ops_elementwise.c: exp, erf,
 * tanh, sigmoid, Gelu polynomials; select-based Relu/Clip; Pow by 2/0.5/3;
 * simd broadcast arithmetic) against double-precision libm over wide ranges
 * and on the edge values (NaN, +-inf, -0, overflow and underflow). */
#include <criterion/criterion.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/ops.h"

#define SWEEP_N 200003 /* odd, > one parallel chunk: exercises vector tails and chunking */

static ba_tensor_t *vec_f32(const float *v, int64_t n) {
    ba_error err = {0};
    ba_tensor_t *t = ba_tensor_new(BA_DT_F32, 1, &n, &err);
    cr_assert(t, "%s", err.msg);
    memcpy(t->data, v, (size_t)n * sizeof *v);
    return t;
}

/* Runs a one-output op on inputs; the node has no attributes except opset. */
static ba_tensor_t *run1(const char *op, ba_tensor_t **in, int nin, int opset) {
    const ba_op_def_t *def = ba_op_lookup(op, "");
    cr_assert(def);
    int outs[1] = {0};
    char name[] = "vec", dom[] = "", opname[32];
    snprintf(opname, sizeof opname, "%s", op);
    ba_node_t node;
    memset(&node, 0, sizeof node);
    node.name = name;
    node.op_type = opname;
    node.domain = dom;
    node.opset = opset;
    node.nin = nin;
    node.nout = 1;
    node.outputs = outs;
    ba_tensor_t *o = NULL;
    ba_error err = {0};
    cr_assert_eq(def->forward(&node, in, nin, &o, 1, &err), BA_OK, "%s: %s", op, err.msg);
    return o;
}

/* x evenly spread over [lo, hi] plus edge values at the front. */
static ba_tensor_t *sweep(float lo, float hi) {
    static float v[SWEEP_N];
    const float edges[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, FLT_MIN, -FLT_MIN, 1e-30f, -1e-30f, 1e-8f};
    int ne = (int)(sizeof edges / sizeof edges[0]);
    for (int i = 0; i < ne; i++) v[i] = edges[i];
    for (int i = ne; i < SWEEP_N; i++) v[i] = lo + (hi - lo) * (float)(i - ne) / (float)(SWEEP_N - ne - 1);
    return vec_f32(v, SWEEP_N);
}

typedef double (*ref_fn)(double);

/* Every element within rel relative error (or abs absolute error) of ref;
 * NaN where ref is NaN, the same infinity where ref is infinite. */
static void check_unary(const char *op, ref_fn ref, float lo, float hi, double rel, double abs_tol) {
    ba_tensor_t *x = sweep(lo, hi);
    ba_tensor_t *o = run1(op, &x, 1, 20);
    const float *xv = x->data, *ov = o->data;
    int bad = 0;
    for (int64_t i = 0; i < x->numel && bad < 5; i++) {
        double want = ref(xv[i]), got = ov[i];
        if (isinf((float)want)) want = (float)want; /* overflows float32 */
        int ok;
        if (isnan(want))
            ok = isnan(got);
        else if (isinf(want))
            ok = got == want;
        else
            ok = fabs(got - want) <= rel * fabs(want) || fabs(got - want) <= abs_tol;
        if (!ok) {
            cr_expect_fail("%s(%.9g) = %.9g, want %.9g", op, xv[i], got, want);
            bad++;
        }
    }
    ba_tensor_unref(x);
    ba_tensor_unref(o);
}

static double ref_sigmoid(double x) {
    return 1.0 / (1.0 + exp(-x));
}
static double ref_gelu(double x) {
    return 0.5 * x * erfc(-x * M_SQRT1_2);
} /* NaN at -inf, as before */
static double ref_relu(double x) {
    return x < 0 ? 0 : x;
}

Test(ops_vec, exp_matches_libm_with_overflow_and_underflow) {
    check_unary("Exp", exp, -110.0f, 90.0f, 5e-7, 2 * FLT_TRUE_MIN);
}

Test(ops_vec, erf_relative_error_below_1e6) {
    check_unary("Erf", erf, -6.0f, 6.0f, 1e-6, 0);
}

Test(ops_vec, erf_near_zero_keeps_relative_accuracy) {
    check_unary("Erf", erf, -1e-3f, 1e-3f, 1e-6, 0);
}

Test(ops_vec, gelu_matches_erfc_form_including_left_tail) {
    check_unary("Gelu", ref_gelu, -12.0f, 12.0f, 1e-6, 1e-30);
}

Test(ops_vec, tanh_and_sigmoid_match_libm) {
    check_unary("Tanh", tanh, -20.0f, 20.0f, 1e-6, 1e-30);
    check_unary("Sigmoid", ref_sigmoid, -120.0f, 120.0f, 1e-6, 1e-37);
}

Test(ops_vec, relu_keeps_nan_and_zeroes_negatives) {
    check_unary("Relu", ref_relu, -5.0f, 5.0f, 0, 0);
    float v[] = {-0.0f, NAN, -1.0f};
    ba_tensor_t *x = vec_f32(v, 3);
    ba_tensor_t *o = run1("Relu", &x, 1, 14);
    const float *ov = o->data;
    cr_expect(ov[0] == 0.0f && signbit(ov[0]), "Relu(-0) keeps -0 as x < 0 ? 0 : x does");
    cr_expect(isnan(ov[1]), "Relu(NaN) is NaN (ONNX Runtime)");
    cr_expect(ov[2] == 0.0f);
    ba_tensor_unref(x);
    ba_tensor_unref(o);
}

Test(ops_vec, clip_bounds_and_nan) {
    float v[] = {-3.0f, 0.5f, 9.0f, NAN, -INFINITY, INFINITY}, lo = 0.0f, hi = 6.0f;
    ba_tensor_t *in[3] = {vec_f32(v, 6), NULL, NULL};
    ba_error err = {0};
    in[1] = ba_tensor_new(BA_DT_F32, 0, NULL, &err);
    in[2] = ba_tensor_new(BA_DT_F32, 0, NULL, &err);
    *(float *)in[1]->data = lo;
    *(float *)in[2]->data = hi;
    ba_tensor_t *o = run1("Clip", in, 3, 13);
    const float *ov = o->data;
    cr_expect(ov[0] == 0.0f && ov[1] == 0.5f && ov[2] == 6.0f && isnan(ov[3]) && ov[4] == 0.0f &&
              ov[5] == 6.0f);
    for (int i = 0; i < 3; i++) ba_tensor_unref(in[i]);
    ba_tensor_unref(o);
}

/* Pow by a constant 2, 3, 0.5, 1, -1 (fast paths) equals powf elementwise
 * (x*x, x*x*x may differ from powf by one rounding: 2 ulp allowed). */
Test(ops_vec, pow_special_exponents_match_powf) {
    const float exps[] = {2.0f, 3.0f, 0.5f, 1.0f, -1.0f, 1.5f};
    for (size_t k = 0; k < sizeof exps / sizeof exps[0]; k++) {
        ba_tensor_t *x = sweep(-50.0f, 50.0f);
        ba_tensor_t *in[2] = {x, vec_f32(&exps[k], 1)};
        ba_tensor_t *o = run1("Pow", in, 2, 15);
        const float *xv = x->data, *ov = o->data;
        int bad = 0;
        for (int64_t i = 0; i < x->numel && bad < 5; i++) {
            float want = powf(xv[i], exps[k]), got = ov[i];
            int ok = (isnan(want) && isnan(got)) || got == want ||
                     fabsf(got - want) <= 2 * FLT_EPSILON * fabsf(want);
            if (isinf(want) || want == 0) ok = ok || (got == want && signbit(got) == signbit(want));
            if (!ok) {
                cr_expect_fail("Pow(%.9g, %g) = %.9g, want %.9g", xv[i], exps[k], got, want);
                bad++;
            }
        }
        ba_tensor_unref(in[0]);
        ba_tensor_unref(in[1]);
        ba_tensor_unref(o);
    }
}

/* Row-broadcast and scalar-broadcast arithmetic (simd loops) equal the scalar formula. */
Test(ops_vec, broadcast_arithmetic_matches_scalar_loop) {
    const int64_t R = 37, C = 771; /* C not a multiple of the vector width */
    static const char *ops[] = {"Add", "Sub", "Mul", "Div", "Max", "Min"};
    ba_error err = {0};
    int64_t sa[2] = {R, C}, sb[2] = {1, C}, ss[1] = {1};
    ba_tensor_t *a = ba_tensor_new(BA_DT_F32, 2, sa, &err), *b = ba_tensor_new(BA_DT_F32, 2, sb, &err);
    ba_tensor_t *s = ba_tensor_new(BA_DT_F32, 1, ss, &err);
    float *av = a->data, *bv = b->data;
    for (int64_t i = 0; i < R * C; i++) av[i] = (float)((i * 7919) % 1000) / 100.0f - 5.0f;
    for (int64_t j = 0; j < C; j++) bv[j] = (float)((j * 104729) % 997) / 97.0f + 0.25f;
    av[3] = NAN;
    *(float *)s->data = 1.75f;
    for (int k = 0; k < 6; k++) {
        for (int form = 0; form < 3; form++) { /* a op b (row), b op a (row), a op scalar */
            ba_tensor_t *in[2] = {form == 1 ? b : a, form == 0 ? b : form == 1 ? a : s};
            ba_tensor_t *o = run1(ops[k], in, 2, 14);
            const float *ov = o->data;
            int bad = 0;
            for (int64_t i = 0; i < R * C && bad < 3; i++) {
                float x = form == 1 ? bv[i % C] : av[i], y = form == 0   ? bv[i % C]
                                                             : form == 1 ? av[i]
                                                                         : 1.75f;
                float want = k == 0   ? x + y
                             : k == 1 ? x - y
                             : k == 2 ? x * y
                             : k == 3 ? x / y
                             : k == 4 ? ((x != x || x > y) ? x : y)
                                      : ((x != x || x < y) ? x : y);
                if (!(ov[i] == want || (isnan(ov[i]) && isnan(want)))) {
                    cr_expect_fail("%s form %d [%lld]: %.9g, want %.9g", ops[k], form, (long long)i, ov[i],
                                   want);
                    bad++;
                }
            }
            ba_tensor_unref(o);
        }
    }
    ba_tensor_unref(a);
    ba_tensor_unref(b);
    ba_tensor_unref(s);
}

/* A large freed buffer is recycled (core/tensor.c cache): ba_tensor_new still
 * returns zeros, ba_tensor_new_uninit a usable buffer of the right size. */
Test(ops_vec, recycled_tensor_buffers_are_zeroed_by_tensor_new) {
    ba_error err = {0};
    int64_t n = (int64_t)1 << 18; /* 1 MiB of float32: above the cache threshold */
    for (int round = 0; round < 3; round++) {
        ba_tensor_t *a = ba_tensor_new_uninit(BA_DT_F32, 1, &n, &err);
        cr_assert(a, "%s", err.msg);
        for (int64_t i = 0; i < n; i++) ((float *)a->data)[i] = 7.0f;
        ba_tensor_unref(a);
        ba_tensor_t *b = ba_tensor_new(BA_DT_F32, 1, &n, &err);
        cr_assert(b, "%s", err.msg);
        int64_t nz = 0;
        for (int64_t i = 0; i < n; i++) nz += ((float *)b->data)[i] != 0.0f;
        cr_expect_eq(nz, 0, "round %d: %lld non-zero elements in a new tensor", round, (long long)nz);
        ba_tensor_unref(b);
    }
    ba_tensor_cache_clear();
}
