/* Elementwise kernels (see model/ops.h): broadcasting arithmetic, comparisons
 * and logic, variadic Sum/Mean/Min/Max, Where, and unary activations.
 * float32 takes specialised loops; other dtypes go through a generic path. */
/* gcc (12, -O2) keeps float selects (x < 0 ? 0 : x) as compare + branch
 * unless FP compares may not trap, so such loops do not vectorize (a
 * mispredicted branch per element made Relu cost 60x a vector loop). The
 * whole file is compiled without FP-compare traps and errno: no kernel reads
 * either, and results are unchanged. A function attribute was not enough for
 * gcc 12 to if-convert the inlined vector exp below; the pragma is. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math", "no-math-errno")
#endif

#include "model/ops.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "model/broadcast.h"
#include "model/fuse.h"

/* Default attribute values from the ONNX operator docs (the others: model/ops.h). */
#define HSWISH_ALPHA (1.0f / 6.0f)
#define GELU_TANH_C 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_TANH_K 0.044715f
/* Above this, log(1+exp(x)) == x in float: avoids exp overflow. */
#define SOFTPLUS_LINEAR 20.0

#define PAR_MIN 32768 /* elements below which a parallel region costs more than it saves */

/* ---------------------------------------------------------------- vector math
 * Branch-free float32 exp / erf / erfc written so that `omp simd` loops
 * vectorize them (glibc's expf/erff are scalar calls). */

#define VEXP_HI 88.72283935546875f /* above: exp overflows float (inf) */
#define VEXP_LO (-104.0f)          /* below: exp is under the smallest subnormal (0) */
#define VEXP_LOG2E 1.44269504088896341f
#define VEXP_LN2_HI 0.693145751953125f /* ln 2 split so n * LN2_HI is exact */
#define VEXP_LN2_LO 1.42860682030941723e-6f
#define VEXP_ROUND_MAGIC 12582912.0f /* 1.5 * 2^23: adding it rounds to an integer */
#define VEXP_BIAS 127
#define VEXP_MANT_BITS 23

static inline float bits_to_f32(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f); /* a bit cast the vectorizer keeps */
    return f;
}

/* exp(x): x = n ln2 + r, |r| <= ln2/2, degree-6 Taylor polynomial times 2^n
 * (relative error < 3e-7, subnormal results included); 2^n is applied as two
 * halves so that n = 128 and n = -150 stay representable. NaN stays NaN. */
static inline float vexpf(float x0) {
    const float x = x0 < VEXP_LO ? VEXP_LO : (x0 > VEXP_HI ? VEXP_HI : x0);
    const float t = x * VEXP_LOG2E + VEXP_ROUND_MAGIC, n = t - VEXP_ROUND_MAGIC;
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    /* the integer n from t's mantissa (no float->int conversion of NaN; unsigned: NaN gives garbage, not UB)
     */
    const int32_t ni = (int32_t)(tb - 0x4B400000u);
    const float r = (x - n * VEXP_LN2_HI) - n * VEXP_LN2_LO;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t n1 = ni >> 1, n2 = ni - n1;
    const float s1 = bits_to_f32((uint32_t)(n1 + VEXP_BIAS) << VEXP_MANT_BITS);
    const float s2 = bits_to_f32((uint32_t)(n2 + VEXP_BIAS) << VEXP_MANT_BITS);
    const float y = p * s1 * s2;
    return x0 > VEXP_HI ? INFINITY : (x0 < VEXP_LO ? 0.0f : y);
}

#define VERF_SMALL 0.5f /* |x| below: Taylor series of erf; above: 1 - erfc */
#define VERF_2_SQRTPI 1.12837916709551257f

/* erf(x) / x for |x| < VERF_SMALL: 2/sqrt(pi) sum (-1)^k x^2k / (k! (2k+1)),
 * through x^12 (truncation < 1e-9 relative). */
static inline float verf_small_over_x(float x) {
    const float z = x * x;
    float p = 1.0f / 9360.0f;
    p = p * z - 1.0f / 1320.0f;
    p = p * z + 1.0f / 216.0f;
    p = p * z - 1.0f / 42.0f;
    p = p * z + 1.0f / 10.0f;
    p = p * z - 1.0f / 3.0f;
    p = p * z + 1.0f;
    return VERF_2_SQRTPI * p;
}

/* erfc(z) for z >= 0 (Numerical Recipes' erfcc: t exp(-z^2 + P(t)),
 * t = 1 / (1 + z/2), fractional error < 1.2e-7 for every z >= 0). */
static inline float verfc_poly(float t) {
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    return p * t - 1.26551223f;
}

static inline float verfc_pos(float z) {
    const float t = 1.0f / (1.0f + 0.5f * z);
    return t * vexpf(verfc_poly(t) - z * z);
}

#define VSPLIT_MASK 0xfffff000u /* keeps 12 mantissa bits: their square is exact */

/* erfc(|x| / sqrt 2) with x^2 / 2 carried exactly (the float rounding of
 * (x / sqrt 2)^2 alone gave ~2e-6 relative error in Gelu's left tail):
 * s = x with its low mantissa bits cleared, x^2 = s^2 + (x - s)(x + s). */
static inline float verfc_half_sq(float x) {
    const float a = fabsf(x), z = a * (float)M_SQRT1_2, t = 1.0f / (1.0f + 0.5f * z);
    uint32_t b;
    memcpy(&b, &a, sizeof b);
    const float s = bits_to_f32(b & VSPLIT_MASK);
    const float c = t * vexpf(-0.5f * (s * s)) * vexpf(verfc_poly(t) - 0.5f * ((a - s) * (a + s)));
    return a == INFINITY ? 0.0f : c; /* inf - inf above */
}

/* erf(x), relative error < 5e-7 (Taylor near 0, 1 - erfc elsewhere). NaN stays NaN. */
static inline float verff(float x) {
    const float a = fabsf(x);
    const float big = copysignf(1.0f - verfc_pos(a), x);
    return a < VERF_SMALL ? x * verf_small_over_x(x) : big;
}

/* Gelu 0.5 x (1 + erf(x / sqrt 2)); for x < 0, 1 + erf is erfc(|x|/sqrt 2),
 * computed directly (no cancellation in the left tail). */
static inline float vgeluf(float x) {
    const float u = x * (float)M_SQRT1_2, a = fabsf(u);
    const float c = verfc_half_sq(x);
    const float one_plus_erf = a < VERF_SMALL ? 1.0f + u * verf_small_over_x(u) : (x > 0 ? 2.0f - c : c);
    return 0.5f * x * one_plus_erf;
}

#define VTANH_SMALL 0.25f /* |x| below: Taylor series (no cancellation in 1 - e) */

/* tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|); Taylor through x^9 near 0. */
static inline float vtanhf(float x) {
    const float a = fabsf(x), z = x * x;
    float p = 62.0f / 2835.0f;
    p = p * z - 17.0f / 315.0f;
    p = p * z + 2.0f / 15.0f;
    p = p * z - 1.0f / 3.0f;
    p = p * z + 1.0f;
    const float e = vexpf(-2.0f * a);
    const float big = copysignf((1.0f - e) / (1.0f + e), x);
    return a < VTANH_SMALL ? x * p : big;
}

/* sigmoid(x) = 1 / (1 + e) or e / (1 + e), e = exp(-|x|): never overflows. */
static inline float vsigmoidf(float x) {
    const float e = vexpf(-fabsf(x)), s = 1.0f / (1.0f + e);
    return x >= 0 ? s : e * s;
}

/* ---------------------------------------------------------------- binary */

enum {
    B_ADD,
    B_SUB,
    B_MUL,
    B_DIV,
    B_POW,
    B_MOD,
    B_FMOD,
    B_MIN,
    B_MAX,
    B_PRELU,
    B_EQ,
    B_LT,
    B_LE,
    B_GT,
    B_GE,
    B_AND,
    B_OR,
    B_XOR
};

static int is_compare(int op) {
    return op >= B_EQ && op <= B_GE;
}
static int is_logic(int op) {
    return op >= B_AND;
}

/* Python-style float mod: the result takes the divisor's sign (numpy.mod). */
static inline double pymod_f(double x, double y) {
    double r = fmod(x, y);
    if (r != 0 && ((r < 0) != (y < 0))) r += y;
    return r;
}

static inline float bin_f32(int op, float x, float y) {
    switch (op) {
    case B_ADD: return x + y;
    case B_SUB: return x - y;
    case B_MUL: return x * y;
    case B_DIV: return x / y;
    case B_POW: return powf(x, y);
    case B_MOD: return (float)pymod_f(x, y);
    case B_FMOD: return fmodf(x, y);
    case B_MIN: return (x != x || x < y) ? x : y; /* NaN propagates, as numpy.minimum */
    case B_MAX: return (x != x || x > y) ? x : y;
    case B_PRELU: return x < 0 ? x * y : x;
    default: return 0;
    }
}

static inline double bin_f64(int op, double x, double y) {
    switch (op) {
    case B_ADD: return x + y;
    case B_SUB: return x - y;
    case B_MUL: return x * y;
    case B_DIV: return x / y;
    case B_POW: return pow(x, y);
    case B_MOD: return pymod_f(x, y);
    case B_FMOD: return fmod(x, y);
    case B_MIN: return (x != x || x < y) ? x : y;
    case B_MAX: return (x != x || x > y) ? x : y;
    case B_PRELU: return x < 0 ? x * y : x;
    case B_EQ: return x == y;
    case B_LT: return x < y;
    case B_LE: return x <= y;
    case B_GT: return x > y;
    case B_GE: return x >= y;
    case B_AND: return (x != 0) && (y != 0);
    case B_OR: return (x != 0) || (y != 0);
    case B_XOR: return (x != 0) != (y != 0);
    default: return 0;
    }
}

/* Integer semantics follow ONNX Runtime: Div truncates toward zero (C), Mod
 * with fmod=0 takes the divisor's sign, fmod=1 the dividend's. *bad is set on
 * a zero divisor. Arithmetic wraps as two's complement (done in uint64). */
static inline int64_t bin_i64(int op, int64_t x, int64_t y, int *bad) {
    switch (op) {
    case B_ADD: return (int64_t)((uint64_t)x + (uint64_t)y);
    case B_SUB: return (int64_t)((uint64_t)x - (uint64_t)y);
    case B_MUL: return (int64_t)((uint64_t)x * (uint64_t)y);
    case B_DIV:
        if (y == 0) {
            *bad = 1;
            return 0;
        }
        if (y == -1) return (int64_t)(0 - (uint64_t)x);
        return x / y;
    case B_MOD:
    case B_FMOD: {
        if (y == 0) {
            *bad = 1;
            return 0;
        }
        if (y == -1) return 0;
        int64_t r = x % y;
        if (op == B_MOD && r != 0 && ((r < 0) != (y < 0))) r += y;
        return r;
    }
    case B_POW: {
        if (y < 0) return (int64_t)pow((double)x, (double)y);
        uint64_t r = 1, b = (uint64_t)x;
        for (int64_t e = y; e > 0; e >>= 1) {
            if (e & 1) r *= b;
            b *= b;
        }
        return (int64_t)r;
    }
    case B_MIN: return x < y ? x : y;
    case B_MAX: return x > y ? x : y;
    case B_PRELU: return x < 0 ? (int64_t)((uint64_t)x * (uint64_t)y) : x;
    case B_EQ: return x == y;
    case B_LT: return x < y;
    case B_LE: return x <= y;
    case B_GT: return x > y;
    case B_GE: return x >= y;
    case B_AND: return x && y;
    case B_OR: return x || y;
    case B_XOR: return (!x) != (!y);
    default: return 0;
    }
}

typedef struct {
    int op;
    const ba_tensor_t *a, *b;
    ba_tensor_t *o;
    int as_float; /* generic path computes in double (else int64) */
    int bad;
} bin_ctx;

/* One float32 segment: the innermost strides are 0 (broadcast) or 1. */
#define SEG_F32(OPC)                                                                                         \
    case OPC:                                                                                                \
        if (sa && sb)                                                                                        \
            for (int64_t i = 0; i < len; i++) o[i] = bin_f32(OPC, a[i], b[i]);                               \
        else if (sb)                                                                                         \
            for (int64_t i = 0; i < len; i++) o[i] = bin_f32(OPC, a[0], b[i]);                               \
        else if (sa)                                                                                         \
            for (int64_t i = 0; i < len; i++) o[i] = bin_f32(OPC, a[i], b[0]);                               \
        else                                                                                                 \
            for (int64_t i = 0; i < len; i++) o[i] = bin_f32(OPC, a[0], b[0]);                               \
        break;

/* Same, with `omp simd` loops: for the ops without a libm call. */
#define SEG_F32_SIMD(OPC)                                                                                    \
    case OPC:                                                                                                \
        if (sa && sb) {                                                                                      \
            _Pragma("omp simd") for (int64_t i = 0; i < len; i++) o[i] = bin_f32(OPC, a[i], b[i]);           \
        } else if (sb) {                                                                                     \
            const float a0 = a[0];                                                                           \
            _Pragma("omp simd") for (int64_t i = 0; i < len; i++) o[i] = bin_f32(OPC, a0, b[i]);             \
        } else if (sa) {                                                                                     \
            const float b0 = b[0];                                                                           \
            _Pragma("omp simd") for (int64_t i = 0; i < len; i++) o[i] = bin_f32(OPC, a[i], b0);             \
        } else {                                                                                             \
            const float v = bin_f32(OPC, a[0], b[0]);                                                        \
            _Pragma("omp simd") for (int64_t i = 0; i < len; i++) o[i] = v;                                  \
        }                                                                                                    \
        break;

static void seg_f32(void *vctx, int64_t oo, const int64_t *offs, const int64_t *steps, int64_t len) {
    bin_ctx *c = vctx;
    const float *a = (const float *)c->a->data + offs[0], *b = (const float *)c->b->data + offs[1];
    float *o = (float *)c->o->data + oo;
    int64_t sa = steps[0], sb = steps[1];
    switch (c->op) {
        SEG_F32_SIMD(B_ADD)
        SEG_F32_SIMD(B_SUB)
        SEG_F32_SIMD(B_MUL)
        SEG_F32_SIMD(B_DIV)
        SEG_F32(B_POW)
        SEG_F32(B_MOD)
        SEG_F32(B_FMOD)
        SEG_F32_SIMD(B_MIN)
        SEG_F32_SIMD(B_MAX)
        SEG_F32_SIMD(B_PRELU)
    default: break;
    }
}

static void seg_generic(void *vctx, int64_t oo, const int64_t *offs, const int64_t *steps, int64_t len) {
    bin_ctx *c = vctx;
    int bad = 0;
    for (int64_t i = 0; i < len; i++) {
        int64_t ia = offs[0] + i * steps[0], ib = offs[1] + i * steps[1];
        if (c->as_float)
            ba_elem_store_f64(c->o, oo + i,
                              bin_f64(c->op, ba_tensor_get_f64(c->a, ia), ba_tensor_get_f64(c->b, ib)));
        else
            ba_elem_store_i64(c->o, oo + i,
                              bin_i64(c->op, ba_tensor_get_i64(c->a, ia), ba_tensor_get_i64(c->b, ib), &bad));
    }
    if (bad) {
#pragma omp atomic write
        c->bad = 1;
    }
}

static int dtype_ok(ba_dtype dt) {
    return ba_dtype_size(dt) != 0;
}

/* Pow of float32 by one constant exponent that has an exact cheap form
 * (LayerNorm's x^2 spent 17% of ViT in powf). Returns 0 for other exponents.
 * powf(x, 0.5) differs from sqrtf at -0 (+0) and -inf (+inf): kept. */
static int pow_f32_special(const float *restrict x, float *restrict o, int64_t n, double e) {
    if (e != 1.0 && e != 2.0 && e != 3.0 && e != 0.5 && e != -1.0) return 0;
    int64_t nchunk = (n + PAR_MIN - 1) / PAR_MIN;
#pragma omp parallel for schedule(static) if (nchunk > 1)
    for (int64_t c = 0; c < nchunk; c++) {
        const int64_t lo = c * PAR_MIN, hi = lo + PAR_MIN < n ? lo + PAR_MIN : n;
        if (e == 2.0) {
#pragma omp simd
            for (int64_t i = lo; i < hi; i++) o[i] = x[i] * x[i];
        } else if (e == 0.5) {
#pragma omp simd
            for (int64_t i = lo; i < hi; i++) o[i] = x[i] == -INFINITY ? INFINITY : sqrtf(x[i]) + 0.0f;
        } else if (e == 3.0) {
#pragma omp simd
            for (int64_t i = lo; i < hi; i++) o[i] = x[i] * x[i] * x[i];
        } else if (e == -1.0) {
#pragma omp simd
            for (int64_t i = lo; i < hi; i++) o[i] = 1.0f / x[i];
        } else {
            memcpy(o + lo, x + lo, (size_t)(hi - lo) * sizeof *o);
        }
    }
    return 1;
}

/* out = a OP b with broadcasting. For comparisons the output is bool. */
static ba_status binary(const ba_node_t *n, int op, const ba_tensor_t *a, const ba_tensor_t *b,
                        ba_tensor_t **out, ba_error *err) {
    if (!dtype_ok(a->dtype) || !dtype_ok(b->dtype))
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s (%s): dtype %s not supported", n->name, n->op_type,
                            ba_dtype_name(dtype_ok(a->dtype) ? b->dtype : a->dtype));
    if (a->dtype != b->dtype && op != B_POW)
        return ba_error_set(err, BA_ERR_INPUT, "%s (%s): input dtypes differ (%s vs %s)", n->name, n->op_type,
                            ba_dtype_name(a->dtype), ba_dtype_name(b->dtype));
    if (is_logic(op) && a->dtype != BA_DT_BOOL)
        return ba_error_set(err, BA_ERR_INPUT, "%s (%s): needs bool inputs, got %s", n->name, n->op_type,
                            ba_dtype_name(a->dtype));
    const ba_tensor_t *ins[2] = {a, b};
    ba_bcast_t bc;
    BA_TRY(ba_bcast_init_tensors(&bc, 2, ins, n->name, err));
    if (op == B_PRELU && (bc.out_ndim != a->ndim || bc.out_numel != a->numel))
        return ba_error_set(err, BA_ERR_INPUT, "%s (PRelu): slope does not broadcast to X", n->name);
    ba_dtype odt = (is_compare(op) || is_logic(op)) ? BA_DT_BOOL : a->dtype;
    /* Both paths below write every output element (the walk covers the output). */
    ba_tensor_t *o = ba_tensor_new_uninit(odt, bc.out_ndim, bc.out_shape, err);
    if (!o) return err->code;
    if (op == B_POW && a->dtype == BA_DT_F32 && b->numel == 1 && bc.out_numel == a->numel &&
        (ba_dtype_is_float(b->dtype) || ba_dtype_is_int(b->dtype)) &&
        pow_f32_special(a->data, o->data, a->numel,
                        ba_dtype_is_float(b->dtype) ? ba_tensor_get_f64(b, 0)
                                                    : (double)ba_tensor_get_i64(b, 0))) {
        *out = o;
        return BA_OK;
    }
    bin_ctx c = {op, a, b, o, ba_dtype_is_float(a->dtype) || ba_dtype_is_float(b->dtype), 0};
    if (!ba_dtype_is_float(odt) && odt != BA_DT_BOOL) c.as_float = 0;
    if (odt == BA_DT_F32 && b->dtype == BA_DT_F32 && !is_compare(op))
        ba_bcast_for_each(&bc, seg_f32, &c);
    else
        ba_bcast_for_each(&bc, seg_generic, &c);
    if (c.bad) {
        ba_tensor_unref(o);
        return ba_error_set(err, BA_ERR_INPUT, "%s (%s): integer division by zero", n->name, n->op_type);
    }
    *out = o;
    return BA_OK;
}

static int binary_op_of(const ba_node_t *n) {
    static const struct {
        const char *name;
        int op;
    } map[] = {
        {"Add", B_ADD},  {"Sub", B_SUB}, {"Mul", B_MUL},        {"Div", B_DIV},     {"Pow", B_POW},
        {"Equal", B_EQ}, {"Less", B_LT}, {"LessOrEqual", B_LE}, {"Greater", B_GT},  {"GreaterOrEqual", B_GE},
        {"And", B_AND},  {"Or", B_OR},   {"Xor", B_XOR},        {"PRelu", B_PRELU},
    };
    if (strcmp(n->op_type, "Mod") == 0) return ba_node_attr_int(n, "fmod", 0) ? B_FMOD : B_MOD;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].name, n->op_type) == 0) return map[i].op;
    return -1;
}

ba_status ba_fwd_binary(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                        ba_error *err) {
    (void)nout;
    BA_TRY(ba_op_need_inputs(n, in, nin, 2, err));
    int op = binary_op_of(n);
    if (op < 0)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: op %s not elementwise", n->name, n->op_type);
    return binary(n, op, in[0], in[1], &out[0], err);
}

/* Sum, Mean, Min, Max: pairwise broadcast folds over any number of inputs. */
ba_status ba_fwd_variadic(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                          ba_error *err) {
    (void)nout;
    if (nin < 1)
        return ba_error_set(err, BA_ERR_INPUT, "%s (%s): needs at least one input", n->name, n->op_type);
    BA_TRY(ba_op_need_inputs(n, in, nin, nin, err));
    int op = strcmp(n->op_type, "Min") == 0 ? B_MIN : strcmp(n->op_type, "Max") == 0 ? B_MAX : B_ADD;
    ba_tensor_t *acc = ba_tensor_clone(in[0], err);
    if (!acc) return err->code;
    for (int k = 1; k < nin; k++) {
        ba_tensor_t *next = NULL;
        ba_status st = binary(n, op, acc, in[k], &next, err);
        ba_tensor_unref(acc);
        if (st != BA_OK) return st;
        acc = next;
    }
    if (strcmp(n->op_type, "Mean") == 0) {
        if (!ba_dtype_is_float(acc->dtype)) {
            ba_tensor_unref(acc);
            return ba_error_set(err, BA_ERR_INPUT, "%s (Mean): needs float inputs", n->name);
        }
        for (int64_t i = 0; i < acc->numel; i++) ba_elem_store_f64(acc, i, ba_tensor_get_f64(acc, i) / nin);
    }
    out[0] = acc;
    return BA_OK;
}

/* ---------------------------------------------------------------- Where */

typedef struct {
    const ba_tensor_t *c, *x, *y;
    ba_tensor_t *o;
    size_t es;
} where_ctx;

static void seg_where(void *vctx, int64_t oo, const int64_t *offs, const int64_t *steps, int64_t len) {
    where_ctx *w = vctx;
    const uint8_t *c = (const uint8_t *)w->c->data;
    const char *x = w->x->data, *y = w->y->data;
    char *o = (char *)w->o->data + oo * w->es;
    for (int64_t i = 0; i < len; i++) {
        int64_t ic = offs[0] + i * steps[0], ix = offs[1] + i * steps[1], iy = offs[2] + i * steps[2];
        const char *src = c[ic] ? x + ix * w->es : y + iy * w->es;
        memcpy(o + i * w->es, src, w->es);
    }
}

ba_status ba_fwd_where(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                       ba_error *err) {
    (void)nout;
    BA_TRY(ba_op_need_inputs(n, in, nin, 3, err));
    if (in[0]->dtype != BA_DT_BOOL)
        return ba_error_set(err, BA_ERR_INPUT, "%s (Where): condition is %s, not bool", n->name,
                            ba_dtype_name(in[0]->dtype));
    if (in[1]->dtype != in[2]->dtype || !dtype_ok(in[1]->dtype))
        return ba_error_set(err, BA_ERR_INPUT, "%s (Where): X is %s, Y is %s", n->name,
                            ba_dtype_name(in[1]->dtype), ba_dtype_name(in[2]->dtype));
    const ba_tensor_t *ins[3] = {in[0], in[1], in[2]};
    ba_bcast_t bc;
    BA_TRY(ba_bcast_init_tensors(&bc, 3, ins, n->name, err));
    ba_tensor_t *o = ba_tensor_new(in[1]->dtype, bc.out_ndim, bc.out_shape, err);
    if (!o) return err->code;
    where_ctx w = {in[0], in[1], in[2], o, ba_dtype_size(in[1]->dtype)};
    ba_bcast_for_each(&bc, seg_where, &w);
    out[0] = o;
    return BA_OK;
}

/* ---------------------------------------------------------------- unary */

enum {
    U_SQRT,
    U_RECIP,
    U_EXP,
    U_LOG,
    U_NEG,
    U_ABS,
    U_ERF,
    U_TANH,
    U_SIGMOID,
    U_RELU,
    U_LEAKY,
    U_ELU,
    U_SELU,
    U_CLIP,
    U_HSIG,
    U_HSWISH,
    U_GELU,
    U_GELU_TANH,
    U_SOFTPLUS,
    U_SOFTSIGN,
    U_MISH,
    U_FLOOR,
    U_CEIL,
    U_ROUND,
    U_SIGN,
    U_SIN,
    U_COS,
    U_NOT,
    U_ISNAN
};

typedef struct {
    double alpha, beta, gamma, lo, hi;
} uparam;

static inline double softplus_d(double x) {
    return x > SOFTPLUS_LINEAR ? x : log1p(exp(x));
}

/* The double formula; float32 uses it too where float would lose accuracy. */
static inline double un_f64(int op, double x, const uparam *p) {
    switch (op) {
    case U_SQRT: return sqrt(x);
    case U_RECIP: return 1.0 / x;
    case U_EXP: return exp(x);
    case U_LOG: return log(x);
    case U_NEG: return -x;
    case U_ABS: return fabs(x);
    case U_ERF: return erf(x);
    case U_TANH: return tanh(x);
    case U_SIGMOID: return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
    case U_RELU: return x < 0 ? 0 : x;
    case U_LEAKY: return x < 0 ? p->alpha * x : x;
    case U_ELU: return x < 0 ? p->alpha * expm1(x) : x;
    case U_SELU: return x > 0 ? p->gamma * x : p->gamma * (p->alpha * exp(x) - p->alpha);
    case U_CLIP: {
        double r = x < p->lo ? p->lo : x;
        return r > p->hi ? p->hi : r;
    }
    case U_HSIG: {
        double r = p->alpha * x + p->beta;
        return r < 0 ? 0 : r > 1 ? 1 : r;
    }
    case U_HSWISH: {
        double r = x * HSWISH_ALPHA + 0.5;
        return x * (r < 0 ? 0 : r > 1 ? 1 : r);
    }
    case U_GELU: return 0.5 * x * (1.0 + erf(x * M_SQRT1_2));
    case U_GELU_TANH: return 0.5 * x * (1.0 + tanh(GELU_TANH_C * (x + GELU_TANH_K * x * x * x)));
    case U_SOFTPLUS: return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
    case U_SOFTSIGN: return x / (1.0 + fabs(x));
    case U_MISH: return x * tanh(softplus_d(x));
    case U_FLOOR: return floor(x);
    case U_CEIL: return ceil(x);
    case U_ROUND: return nearbyint(x); /* half to even in the default rounding mode */
    case U_SIGN: return x > 0 ? 1 : x < 0 ? -1 : x;
    case U_SIN: return sin(x);
    case U_COS: return cos(x);
    case U_NOT: return x == 0;
    case U_ISNAN: return x != x;
    default: return 0;
    }
}

static inline float un_f32(int op, float x, const uparam *p) {
    switch (op) {
    case U_SQRT: return sqrtf(x);
    case U_RECIP: return 1.0f / x;
    case U_EXP: return expf(x);
    case U_LOG: return logf(x);
    case U_NEG: return -x;
    case U_ABS: return fabsf(x);
    case U_ERF: return erff(x);
    case U_TANH: return tanhf(x);
    case U_SIGMOID: {
        if (x >= 0) return 1.0f / (1.0f + expf(-x));
        float e = expf(x);
        return e / (1.0f + e);
    }
    case U_RELU: return x < 0 ? 0.0f : x;
    case U_LEAKY: return x < 0 ? (float)p->alpha * x : x;
    case U_CLIP: {
        float r = x < (float)p->lo ? (float)p->lo : x;
        return r > (float)p->hi ? (float)p->hi : r;
    }
    case U_FLOOR: return floorf(x);
    case U_CEIL: return ceilf(x);
    case U_ROUND: return nearbyintf(x);
    case U_SIN: return sinf(x);
    case U_COS: return cosf(x);
    default: return (float)un_f64(op, x, p);
    }
}

static inline int64_t un_i64(int op, int64_t x, const uparam *p) {
    switch (op) {
    case U_NEG: return (int64_t)(0 - (uint64_t)x);
    case U_ABS: return x < 0 ? (int64_t)(0 - (uint64_t)x) : x;
    case U_RELU: return x < 0 ? 0 : x;
    case U_SIGN: return x > 0 ? 1 : x < 0 ? -1 : 0;
    case U_CLIP: {
        int64_t lo = p->lo <= -9.2e18 ? INT64_MIN : (int64_t)p->lo,
                hi = p->hi >= 9.2e18 ? INT64_MAX : (int64_t)p->hi;
        int64_t r = x < lo ? lo : x;
        return r > hi ? hi : r;
    }
    case U_NOT: return !x;
    default: return x;
    }
}

static int int_ok(int op) {
    return op == U_NEG || op == U_ABS || op == U_RELU || op == U_SIGN || op == U_CLIP;
}

/* Vector loops for the float32 ops used in the zoo's hot paths; 0 when op
 * has none (then the scalar switch below runs). Same results as un_f32 up to
 * the documented error of the vector exp/erf/tanh (NaN in, NaN out; Relu and
 * Clip keep -0 and NaN as the scalar forms do). */
#define UN_SIMD(OPC, EXPR)                                                                                   \
    case OPC:                                                                                                \
        _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                                \
            const float v = x[i];                                                                            \
            o[i] = (EXPR);                                                                                   \
        }                                                                                                    \
        return 1;

__attribute__((target_clones("avx512f", "default"))) static int
unary_f32_fast(int op, const float *restrict x, float *restrict o, int64_t n, const uparam *p) {
    const float alpha = (float)p->alpha, beta = (float)p->beta, lo = (float)p->lo, hi = (float)p->hi;
    switch (op) {
        UN_SIMD(U_RELU, v < 0 ? 0.0f : v)
        UN_SIMD(U_LEAKY, v < 0 ? alpha * v : v)
        UN_SIMD(U_CLIP, (v < lo ? lo : v) > hi ? hi : (v < lo ? lo : v))
        UN_SIMD(U_HSIG, (alpha * v + beta) < 0 ? 0.0f : ((alpha * v + beta) > 1 ? 1.0f : alpha * v + beta))
        UN_SIMD(U_HSWISH, v * ((v * HSWISH_ALPHA + 0.5f) < 0
                                   ? 0.0f
                                   : ((v * HSWISH_ALPHA + 0.5f) > 1 ? 1.0f : v * HSWISH_ALPHA + 0.5f)))
        UN_SIMD(U_NEG, -v)
        UN_SIMD(U_ABS, fabsf(v))
        UN_SIMD(U_RECIP, 1.0f / v)
        UN_SIMD(U_EXP, vexpf(v))
        UN_SIMD(U_SIGMOID, vsigmoidf(v))
        UN_SIMD(U_TANH, vtanhf(v))
        UN_SIMD(U_ERF, verff(v))
        UN_SIMD(U_GELU, vgeluf(v))
    default: return 0;
    }
}

#define UN_F32(OPC)                                                                                          \
    case OPC:                                                                                                \
        for (int64_t i = lo; i < hi; i++) o[i] = un_f32(OPC, x[i], p);                                       \
        break;

static void unary_f32(int op, const float *x, float *o, int64_t n, const uparam *p) {
    int64_t nchunk = (n + PAR_MIN - 1) / PAR_MIN;
#pragma omp parallel for schedule(static) if (nchunk > 1)
    for (int64_t c = 0; c < nchunk; c++) {
        int64_t lo = c * PAR_MIN, hi = lo + PAR_MIN < n ? lo + PAR_MIN : n;
        if (unary_f32_fast(op, x + lo, o + lo, hi - lo, p)) continue;
        /* clang-format off */
        switch (op) {
            UN_F32(U_SQRT)
            UN_F32(U_RECIP)
            UN_F32(U_EXP)
            UN_F32(U_LOG)
            UN_F32(U_NEG)
            UN_F32(U_ABS)
            UN_F32(U_ERF)
            UN_F32(U_TANH)
            UN_F32(U_SIGMOID)
            UN_F32(U_RELU)
            UN_F32(U_LEAKY)
            UN_F32(U_ELU)
            UN_F32(U_SELU)
            UN_F32(U_CLIP)
            UN_F32(U_HSIG)
            UN_F32(U_HSWISH)
            UN_F32(U_GELU)
            UN_F32(U_GELU_TANH)
            UN_F32(U_SOFTPLUS)
            UN_F32(U_SOFTSIGN)
            UN_F32(U_MISH)
            UN_F32(U_FLOOR)
            UN_F32(U_CEIL)
            UN_F32(U_ROUND)
            UN_F32(U_SIGN)
            UN_F32(U_SIN)
            UN_F32(U_COS)
            default: break;
        }
        /* clang-format on */
    }
}

static ba_status unary(const ba_node_t *n, int op, const ba_tensor_t *x, const uparam *p, ba_tensor_t **out,
                       ba_error *err) {
    ba_dtype dt = x->dtype;
    if (op == U_NOT && dt != BA_DT_BOOL)
        return ba_error_set(err, BA_ERR_INPUT, "%s (Not): needs bool, got %s", n->name, ba_dtype_name(dt));
    if (!ba_dtype_is_float(dt) && op != U_NOT && !(ba_dtype_is_int(dt) && (int_ok(op) || op == U_ISNAN)))
        return ba_error_set(err, BA_ERR_INPUT, "%s (%s): dtype %s not supported", n->name, n->op_type,
                            ba_dtype_name(dt));
    /* every branch below writes all numel elements */
    ba_tensor_t *o = ba_tensor_new_uninit(op == U_ISNAN ? BA_DT_BOOL : dt, x->ndim, x->shape, err);
    if (!o) return err->code;
    if (dt == BA_DT_F32 && op != U_ISNAN) {
        unary_f32(op, x->data, o->data, x->numel, p);
    } else if (ba_dtype_is_float(dt)) {
        for (int64_t i = 0; i < x->numel; i++) {
            double v = ba_tensor_get_f64(x, i);
            ba_elem_store_f64(o, i, dt == BA_DT_F64 ? un_f64(op, v, p) : (double)un_f32(op, (float)v, p));
        }
    } else {
        for (int64_t i = 0; i < x->numel; i++)
            ba_elem_store_i64(o, i, op == U_ISNAN ? 0 : un_i64(op, ba_tensor_get_i64(x, i), p));
    }
    *out = o;
    return BA_OK;
}

static const struct {
    const char *name;
    int op;
} unary_map[] = {
    {"Sqrt", U_SQRT},       {"Reciprocal", U_RECIP},  {"Exp", U_EXP},           {"Log", U_LOG},
    {"Neg", U_NEG},         {"Abs", U_ABS},           {"Erf", U_ERF},           {"Tanh", U_TANH},
    {"Sigmoid", U_SIGMOID}, {"Relu", U_RELU},         {"LeakyRelu", U_LEAKY},   {"Elu", U_ELU},
    {"Selu", U_SELU},       {"Clip", U_CLIP},         {"HardSigmoid", U_HSIG},  {"HardSwish", U_HSWISH},
    {"Gelu", U_GELU},       {"Softplus", U_SOFTPLUS}, {"Softsign", U_SOFTSIGN}, {"Mish", U_MISH},
    {"Floor", U_FLOOR},     {"Ceil", U_CEIL},         {"Round", U_ROUND},       {"Sign", U_SIGN},
    {"Sin", U_SIN},         {"Cos", U_COS},           {"Not", U_NOT},           {"IsNaN", U_ISNAN},
};

/* Clip bounds: attributes before opset 11, optional scalar inputs after. */
static ba_status clip_bounds(const ba_node_t *n, ba_tensor_t *const *in, int nin, uparam *p, ba_error *err) {
    if (n->opset < 11) {
        p->lo = ba_node_attr_float(n, "min", -FLT_MAX);
        p->hi = ba_node_attr_float(n, "max", FLT_MAX);
        return BA_OK;
    }
    p->lo = -INFINITY;
    p->hi = INFINITY;
    for (int k = 1; k <= 2; k++) {
        if (nin <= k || !in[k]) continue;
        if (in[k]->numel != 1)
            return ba_error_set(err, BA_ERR_INPUT, "%s (Clip): %s must be a scalar, has %lld elements",
                                n->name, k == 1 ? "min" : "max", (long long)in[k]->numel);
        if (in[k]->dtype != in[0]->dtype)
            return ba_error_set(err, BA_ERR_INPUT, "%s (Clip): bound dtype %s differs from input %s", n->name,
                                ba_dtype_name(in[k]->dtype), ba_dtype_name(in[0]->dtype));
        double v = ba_dtype_is_float(in[k]->dtype) ? ba_tensor_get_f64(in[k], 0)
                                                   : (double)ba_tensor_get_i64(in[k], 0);
        if (k == 1)
            p->lo = v;
        else
            p->hi = v;
    }
    return BA_OK;
}

/* The op code and parameters of a unary node (attributes, Clip's bound inputs). */
static ba_status unary_prepare(const ba_node_t *n, ba_tensor_t *const *in, int nin, int *opc, uparam *pp,
                               ba_error *err) {
    int op = -1;
    for (size_t i = 0; i < sizeof unary_map / sizeof unary_map[0]; i++)
        if (strcmp(unary_map[i].name, n->op_type) == 0) op = unary_map[i].op;
    if (op < 0)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: op %s not elementwise", n->name, n->op_type);
    uparam p = {0, 0, 0, 0, 0};
    switch (op) {
    case U_LEAKY: p.alpha = ba_node_attr_float(n, "alpha", BA_LEAKY_ALPHA); break;
    case U_ELU: p.alpha = ba_node_attr_float(n, "alpha", BA_ELU_ALPHA); break;
    case U_SELU:
        p.alpha = ba_node_attr_float(n, "alpha", BA_SELU_ALPHA);
        p.gamma = ba_node_attr_float(n, "gamma", BA_SELU_GAMMA);
        break;
    case U_HSIG:
        p.alpha = ba_node_attr_float(n, "alpha", BA_HSIG_ALPHA);
        p.beta = ba_node_attr_float(n, "beta", BA_HSIG_BETA);
        break;
    case U_CLIP: BA_TRY(clip_bounds(n, in, nin, &p, err)); break;
    case U_GELU: {
        const char *ap = ba_node_attr_string(n, "approximate", "none");
        if (strcmp(ap, "tanh") == 0)
            op = U_GELU_TANH;
        else if (strcmp(ap, "none") != 0)
            return ba_error_set(err, BA_ERR_INPUT, "%s (Gelu): approximate '%s' is not none/tanh", n->name,
                                ap);
        break;
    }
    default: break;
    }
    *opc = op;
    *pp = p;
    return BA_OK;
}

ba_status ba_fwd_unary(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                       ba_error *err) {
    (void)nout;
    BA_TRY(ba_op_need_inputs(n, in, nin, 1, err));
    int op;
    uparam p;
    BA_TRY(unary_prepare(n, in, nin, &op, &p, err));
    return unary(n, op, in[0], &p, &out[0], err);
}

ba_status ba_ew_unary_prepare(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_ew_unary_t *u,
                              ba_error *err) {
    int op;
    uparam p;
    BA_TRY(unary_prepare(n, in, nin, &op, &p, err));
    if (op == U_NOT || op == U_ISNAN)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: op %s has no float32 form", n->name, n->op_type);
    *u = (ba_ew_unary_t){op, p.alpha, p.beta, p.gamma, p.lo, p.hi};
    return BA_OK;
}

void ba_ew_unary_f32(const ba_ew_unary_t *u, const float *x, float *o, int64_t n) {
    const uparam p = {u->alpha, u->beta, u->gamma, u->lo, u->hi};
    /* the kernel's own per-element code (unary_f32 without its thread split) */
    if (unary_f32_fast(u->op, x, o, n, &p)) return;
    for (int64_t i = 0; i < n; i++) o[i] = un_f32(u->op, x[i], &p);
}
