/* Weight and activation quantizers (SPEC §3): round-to-nearest-even fake
 * quantization with integer codes, scales and zero-points, max or MSE clipping.
 * The exact arithmetic is spelled out in quant.h; tests compare bit for bit
 * with an independent NumPy implementation (tests/fixtures/make_quant_refs.py). */
#include "quant/quant.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* x + 1.5*2^23 - 1.5*2^23 rounds a float32 |x| <= 2^22 to the nearest integer,
 * ties to even, in the default rounding mode; it vectorizes where nearbyintf
 * (a libm call without SSE4.1) does not. Codes are at most 255 in magnitude. */
#define BA_RINT_MAGIC 12582912.0f

/* The two hot loops get an AVX2 copy picked at load time on x86-64 (same
 * IEEE float32 operations, wider vectors; no FMA, so results are identical). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define BA_QUANT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define BA_QUANT_CLONES
#endif

#define BA_QUANT_MIN_BITS BA_BITS_MIN_INT
#define BA_QUANT_MAX_BITS BA_BITS_MAX_INT
#define BA_FP16_BITS BA_BITS_FP16
#define BA_FP32_BITS BA_BITS_FP32

ba_quant_cfg_t ba_quant_cfg_default(void) {
    ba_quant_cfg_t c = {BA_SCHEME_SYMMETRIC, BA_GRAN_PER_CHANNEL, 0, BA_CLIP_MAX, 0, BA_BACKEND_ONNX};
    return c;
}

/* ---------------------------------------------------------------- names */

ba_status ba_quant_cfg_parse_scheme(const char *s, ba_quant_cfg_t *cfg, ba_error *err) {
    if (s && strcmp(s, "symmetric") == 0)
        cfg->scheme = BA_SCHEME_SYMMETRIC;
    else if (s && strcmp(s, "asymmetric") == 0)
        cfg->scheme = BA_SCHEME_ASYMMETRIC;
    else
        return ba_error_set(err, BA_ERR_INPUT,
                            "--scheme: unknown value '%s' (expected symmetric or asymmetric)", s ? s : "");
    return BA_OK;
}

ba_status ba_quant_cfg_parse_granularity(const char *s, ba_quant_cfg_t *cfg, ba_error *err) {
    static const char group_prefix[] = "group:";
    if (s && strcmp(s, "per-channel") == 0) {
        cfg->granularity = BA_GRAN_PER_CHANNEL;
        cfg->group = 0;
        return BA_OK;
    }
    if (s && strcmp(s, "per-tensor") == 0) {
        cfg->granularity = BA_GRAN_PER_TENSOR;
        cfg->group = 0;
        return BA_OK;
    }
    if (s && strncmp(s, group_prefix, sizeof group_prefix - 1) == 0) {
        const char *g = s + sizeof group_prefix - 1;
        char *end = NULL;
        long v = (*g >= '0' && *g <= '9') ? strtol(g, &end, 10) : 0;
        if (end && *end == '\0' && v >= 1 && v <= INT_MAX) {
            cfg->granularity = BA_GRAN_GROUP;
            cfg->group = (int)v;
            return BA_OK;
        }
        return ba_error_set(err, BA_ERR_INPUT, "--granularity: '%s': group size must be a positive integer",
                            s);
    }
    return ba_error_set(err, BA_ERR_INPUT,
                        "--granularity: unknown value '%s' (expected per-channel, per-tensor or group:G)",
                        s ? s : "");
}

ba_status ba_quant_cfg_parse_clip(const char *s, ba_quant_cfg_t *cfg, ba_error *err) {
    if (s && strcmp(s, "max") == 0)
        cfg->clip = BA_CLIP_MAX;
    else if (s && strcmp(s, "mse") == 0)
        cfg->clip = BA_CLIP_MSE;
    else
        return ba_error_set(err, BA_ERR_INPUT, "--clip: unknown value '%s' (expected max or mse)",
                            s ? s : "");
    return BA_OK;
}

const char *ba_quant_scheme_name(ba_scheme_t s) {
    return s == BA_SCHEME_ASYMMETRIC ? "asymmetric" : "symmetric";
}

const char *ba_quant_clip_name(ba_clip_t c) {
    return c == BA_CLIP_MSE ? "mse" : "max";
}

ba_status ba_quant_cfg_parse_backend(const char *s, ba_quant_cfg_t *cfg, ba_error *err) {
    if (s && strcmp(s, "onnx") == 0)
        cfg->backend = BA_BACKEND_ONNX;
    else if (s && strcmp(s, "llama") == 0)
        cfg->backend = BA_BACKEND_LLAMA;
    else
        return ba_error_set(err, BA_ERR_INPUT, "--backend: unknown value '%s' (expected onnx or llama)",
                            s ? s : "");
    return BA_OK;
}

const char *ba_quant_backend_name(ba_backend_t b) {
    return b == BA_BACKEND_LLAMA ? "llama" : "onnx";
}

const char *ba_quant_granularity_str(const ba_quant_cfg_t *cfg, char *buf, size_t cap) {
    if (cfg->granularity == BA_GRAN_GROUP)
        snprintf(buf, cap, "group:%d", cfg->group);
    else
        snprintf(buf, cap, "%s", cfg->granularity == BA_GRAN_PER_TENSOR ? "per-tensor" : "per-channel");
    return buf;
}

/* ------------------------------------------------------------ geometry */

/* Splits shape around ch_axis: outer (before), C, inner (after). */
static void split_axis(int ndim, const int64_t *shape, int ch_axis, int64_t *outer, int64_t *C,
                       int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < ch_axis; i++) *outer *= shape[i];
    for (int i = ch_axis + 1; i < ndim; i++) *inner *= shape[i];
    *C = shape[ch_axis];
}

int64_t ba_quant_num_scales(int ndim, const int64_t *shape, int ch_axis, const ba_quant_cfg_t *cfg) {
    if (cfg->granularity == BA_GRAN_PER_TENSOR || ndim == 0) return 1;
    if (ch_axis < 0 || ch_axis >= ndim) return 0;
    int64_t outer, C, inner;
    split_axis(ndim, shape, ch_axis, &outer, &C, &inner);
    if (cfg->granularity == BA_GRAN_PER_CHANNEL) return C;
    int64_t n = outer * inner;
    int64_t G = cfg->group > 0 ? cfg->group : 1;
    return C * ((n + G - 1) / G);
}

/* ------------------------------------------------------------- kernels */

/* Scale, zero-point and the clamp bounds of the shifted code domain
 * (q = code - zp in [lo, hi]) of one group, for clip ratio r. */
typedef struct {
    float scale, zp, lo, hi;
} grid_t;

static grid_t grid_sym(float amax, double r, int bits) {
    const int qmax = (1 << (bits - 1)) - 1;
    grid_t g = {1.0f, 0.0f, (float)-qmax, (float)qmax};
    float s = (float)((double)amax * r / (double)qmax);
    if (s > 0.0f) g.scale = s; /* all-zero group (or an underflow): scale 1 */
    return g;
}

static grid_t grid_asym(float mn, float mx, double r, int bits) {
    const int L = (1 << bits) - 1;
    double lo = (double)(mn < 0.0f ? mn : 0.0f) * r;
    double hi = (double)(mx > 0.0f ? mx : 0.0f) * r;
    grid_t g = {1.0f, 0.0f, 0.0f, (float)L};
    float s = (float)((hi - lo) / (double)L);
    if (s > 0.0f) g.scale = s;
    double zp = nearbyint(-lo / (double)g.scale);
    zp = zp < 0.0 ? 0.0 : zp > (double)L ? (double)L : zp;
    g.zp = (float)zp;
    g.lo = (float)-zp;
    g.hi = (float)(L - zp);
    return g;
}

/* min, max of w; returns 0 when a value is NaN or infinite. */
BA_QUANT_CLONES static int min_max(const float *w, int64_t n, float *mn_out, float *mx_out) {
    float mn = 0.0f, mx = 0.0f, bad = 0.0f; /* the range always includes 0 anyway */
#pragma omp simd reduction(min : mn) reduction(max : mx) reduction(+ : bad)
    for (int64_t i = 0; i < n; i++) {
        float v = w[i];
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
        bad += v - v; /* NaN for NaN or ±Inf, else 0 */
    }
    *mn_out = mn;
    *mx_out = mx;
    return bad == 0.0f;
}

/* q = rint(clamp(w / scale, lo, hi)); equal to clamp(rint(w / scale), lo, hi)
 * because lo and hi are integers. */
BA_QUANT_CLONES static void apply_grid(const float *w, int64_t n, grid_t g, float *fq, uint8_t *codes) {
    const float s = g.scale, lo = g.lo, hi = g.hi, zp = g.zp;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float x = w[i] / s;
        x = x < lo ? lo : x;
        x = x > hi ? hi : x;
        float q = (x + BA_RINT_MAGIC) - BA_RINT_MAGIC;
        fq[i] = q * s;
        codes[i] = (uint8_t)(int32_t)(q + zp); /* int8 bit pattern when symmetric */
    }
}

/* Σ (Q(w) - w)^2 in double, in element order (the reference sums the same way). */
static double grid_sq_error(const float *w, int64_t n, grid_t g) {
    double acc = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float x = w[i] / g.scale;
        x = x < g.lo ? g.lo : x;
        x = x > g.hi ? g.hi : x;
        float q = (x + BA_RINT_MAGIC) - BA_RINT_MAGIC;
        double d = (double)(q * g.scale) - (double)w[i];
        acc += d * d;
    }
    return acc;
}

static grid_t grid_for(const float *w, int64_t n, float mn, float mx, int bits, const ba_quant_cfg_t *cfg) {
    const int asym = cfg->scheme == BA_SCHEME_ASYMMETRIC;
    const float amax = mx > -mn ? mx : -mn;
    if (cfg->clip != BA_CLIP_MSE) return asym ? grid_asym(mn, mx, 1.0, bits) : grid_sym(amax, 1.0, bits);
    grid_t best = {0};
    double best_err = INFINITY;
    for (int k = 0; k < BA_QUANT_MSE_STEPS; k++) {
        double r = (double)(BA_QUANT_MSE_DENOM - k) / (double)BA_QUANT_MSE_DENOM;
        grid_t g = asym ? grid_asym(mn, mx, r, bits) : grid_sym(amax, r, bits);
        double e = grid_sq_error(w, n, g);
        if (k == 0 || e < best_err) {
            best = g;
            best_err = e;
        }
    }
    return best;
}

static ba_status check_int_bits(int bits, ba_error *err) {
    if (bits < BA_QUANT_MIN_BITS || bits > BA_QUANT_MAX_BITS)
        return ba_error_set(err, BA_ERR_INPUT, "quantizer: %d bits outside %d..%d", bits, BA_QUANT_MIN_BITS,
                            BA_QUANT_MAX_BITS);
    return BA_OK;
}

ba_status ba_quant_rows_f32(const float *w, int64_t rows, int64_t n, int64_t G, int bits,
                            const ba_quant_cfg_t *cfg, float *fq, uint8_t *codes, float *scales, uint8_t *zps,
                            ba_error *err) {
    BA_TRY(check_int_bits(bits, err));
    if (G <= 0 || G > n) G = n;
    const int64_t ng = n > 0 ? (n + G - 1) / G : 0;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < ng; j++) {
            const int64_t off = r * n + j * G;
            const int64_t len = (j + 1) * G <= n ? G : n - j * G;
            float mn, mx;
            if (!min_max(w + off, len, &mn, &mx))
                return ba_error_set(err, BA_ERR_INPUT, "weight holds a NaN or infinite value (channel %lld)",
                                    (long long)r);
            grid_t g = grid_for(w + off, len, mn, mx, bits, cfg);
            apply_grid(w + off, len, g, fq + off, codes + off);
            scales[r * ng + j] = g.scale;
            if (zps) zps[r * ng + j] = (uint8_t)g.zp;
        }
    }
    return BA_OK;
}

/* ------------------------------------------------------- ba_quant_weight */

void ba_qweight_free(ba_qweight_t *q) {
    if (!q) return;
    ba_tensor_unref(q->fq);
    ba_tensor_unref(q->codes);
    ba_tensor_unref(q->scales);
    ba_tensor_unref(q->zero_points);
    memset(q, 0, sizeof *q);
}

/* A tensor whose data is left uninitialised: the quantizer writes every
 * element, and skipping ba_tensor_new's zero-fill saves a pass over memory
 * (unref frees the data with free(), as for ba_tensor_new). */
#define BA_QUANT_ALIGN 64
/* Large outputs ask for transparent huge pages: first-touch page faults,
 * not arithmetic, dominate quantizing a fresh multi-MB weight. */
#define BA_HUGE_PAGE ((size_t)2 << 20)
static ba_tensor_t *tensor_uninit(ba_dtype dt, int ndim, const int64_t *shape, ba_error *err) {
    ba_tensor_t *t = ba_tensor_wrap(dt, ndim, shape, NULL, err);
    if (!t) return NULL;
    size_t nb = ba_tensor_nbytes(t);
    size_t alloc = (nb + BA_QUANT_ALIGN - 1) / BA_QUANT_ALIGN * BA_QUANT_ALIGN;
    int huge = alloc >= BA_HUGE_PAGE;
    /* posix_memalign: aligned_alloc wants a size that is a multiple of the alignment. */
    void *data = NULL;
    if (posix_memalign(&data, huge ? BA_HUGE_PAGE : BA_QUANT_ALIGN, alloc ? alloc : BA_QUANT_ALIGN) != 0)
        data = NULL;
    t->data = data;
    if (t->data && huge) madvise(t->data, alloc, MADV_HUGEPAGE); /* advisory: failure is harmless */
    if (!t->data) {
        ba_tensor_unref(t);
        ba_error_set(err, BA_ERR_NOMEM, "out of memory: tensor of %zu bytes", nb);
        return NULL;
    }
    t->owns = 1;
    return t;
}

/* b = 16 / 32: float32 output only. */
static ba_status quant_float(const ba_tensor_t *w32, int bits, ba_qweight_t *out, ba_error *err) {
    out->fq = ba_tensor_clone(w32, err);
    if (!out->fq) return err ? err->code : BA_ERR_NOMEM;
    if (bits == BA_FP16_BITS) {
        float *d = out->fq->data;
        for (int64_t i = 0; i < out->fq->numel; i++) d[i] = ba_f16_to_f32(ba_f32_to_f16(d[i]));
    }
    return BA_OK;
}

/* Integer widths on any layout: channel-major rows are quantized in place
 * when ch_axis leads (or per-tensor); other axes gather one channel at a time. */
static ba_status quant_int(const ba_tensor_t *w32, int ch_axis, int bits, const ba_quant_cfg_t *cfg,
                           ba_qweight_t *out, ba_error *err) {
    const int asym = cfg->scheme == BA_SCHEME_ASYMMETRIC;
    int64_t outer = 1, C = 1, inner = w32->numel;
    int per_tensor = cfg->granularity == BA_GRAN_PER_TENSOR || w32->ndim == 0;
    if (!per_tensor) split_axis(w32->ndim, w32->shape, ch_axis, &outer, &C, &inner);
    const int64_t n = outer * inner; /* elements of one channel */
    int64_t G = cfg->granularity == BA_GRAN_GROUP ? cfg->group : n;
    if (G <= 0 || G > n) G = n;
    const int64_t ng = n > 0 ? (n + G - 1) / G : 0;
    out->group_len = G;

    out->fq = tensor_uninit(BA_DT_F32, w32->ndim, w32->shape, err);
    out->codes = out->fq ? tensor_uninit(asym ? BA_DT_U8 : BA_DT_I8, w32->ndim, w32->shape, err) : NULL;
    int64_t sshape[2] = {C, ng};
    int sdim = per_tensor ? 0 : cfg->granularity == BA_GRAN_GROUP ? 2 : 1;
    out->scales = out->codes ? ba_tensor_new(BA_DT_F32, sdim, sshape, err) : NULL;
    if (out->scales && asym) out->zero_points = ba_tensor_new(BA_DT_U8, sdim, sshape, err);
    if (!out->scales || (asym && !out->zero_points)) return err ? err->code : BA_ERR_NOMEM;
    uint8_t *zps = asym ? out->zero_points->data : NULL;

    if (outer == 1)
        return ba_quant_rows_f32(w32->data, C, n, G, bits, cfg, out->fq->data, out->codes->data,
                                 out->scales->data, zps, err);

    /* Channel c's elements sit at o*C*inner + c*inner + i for o < outer, i < inner. */
    float *buf = ba_malloc((size_t)n * 2 * sizeof(float) + (size_t)n, err);
    if (!buf) return err ? err->code : BA_ERR_NOMEM;
    float *fbuf = buf + n;
    uint8_t *cbuf = (uint8_t *)(buf + 2 * n);
    const float *src = w32->data;
    float *fq = out->fq->data;
    uint8_t *codes = out->codes->data;
    ba_status st = BA_OK;
    int64_t c = 0;
    for (; c < C && st == BA_OK; c++) {
        for (int64_t o = 0; o < outer; o++)
            memcpy(buf + o * inner, src + (o * C + c) * inner, (size_t)inner * sizeof(float));
        st = ba_quant_rows_f32(buf, 1, n, G, bits, cfg, fbuf, cbuf, (float *)out->scales->data + c * ng,
                               zps ? zps + c * ng : NULL, err);
        for (int64_t o = 0; o < outer && st == BA_OK; o++) {
            memcpy(fq + (o * C + c) * inner, fbuf + o * inner, (size_t)inner * sizeof(float));
            memcpy(codes + (o * C + c) * inner, cbuf + o * inner, (size_t)inner);
        }
    }
    free(buf);
    if (st != BA_OK)
        ba_error_set(err, st, "weight holds a NaN or infinite value (channel %lld)", (long long)(c - 1));
    return st;
}

ba_status ba_quant_weight(const ba_tensor_t *w, int ch_axis, int bits, const ba_quant_cfg_t *cfg,
                          ba_qweight_t *out, ba_error *err) {
    ba_quant_cfg_t dflt = ba_quant_cfg_default();
    if (!cfg) cfg = &dflt;
    memset(out, 0, sizeof *out);
    out->bits = bits;
    out->cfg = *cfg;
    out->ch_axis = ch_axis;
    if (!ba_bits_valid(bits))
        return ba_error_set(err, BA_ERR_INPUT,
                            "quantizer: %d bits is not a weight width (" BA_BITS_WIDTHS ")", bits);
    if (!ba_dtype_is_float(w->dtype))
        return ba_error_set(err, BA_ERR_INPUT, "quantizer: weight dtype %s is not a float type",
                            ba_dtype_name(w->dtype));
    int needs_axis = cfg->granularity != BA_GRAN_PER_TENSOR && w->ndim > 0 && bits <= BA_QUANT_MAX_BITS;
    if (needs_axis && (ch_axis < 0 || ch_axis >= w->ndim))
        return ba_error_set(err, BA_ERR_INPUT, "quantizer: channel axis %d outside a rank-%d weight", ch_axis,
                            w->ndim);
    if (cfg->granularity == BA_GRAN_GROUP && cfg->group <= 0)
        return ba_error_set(err, BA_ERR_INPUT, "quantizer: group size %d must be positive", cfg->group);

    ba_tensor_t *w32 = (ba_tensor_t *)w;
    if (w->dtype != BA_DT_F32) {
        w32 = ba_tensor_cast(w, BA_DT_F32, err);
        if (!w32) return err ? err->code : BA_ERR_NOMEM;
    }
    ba_status st = bits > BA_QUANT_MAX_BITS ? quant_float(w32, bits, out, err)
                                            : quant_int(w32, ch_axis, bits, cfg, out, err);
    if (w32 != w) ba_tensor_unref(w32);
    if (st != BA_OK) {
        ba_qweight_free(out);
        out->bits = bits;
    }
    return st;
}

/* ------------------------------------------------------------ activations */

void ba_quant_act_range_init(ba_act_range_t *r) {
    r->min = INFINITY;
    r->max = -INFINITY;
    r->count = 0;
}

ba_status ba_quant_act_range_update(ba_act_range_t *r, const ba_tensor_t *t, ba_error *err) {
    if (!ba_dtype_is_float(t->dtype))
        return ba_error_set(err, BA_ERR_INPUT, "activation range: dtype %s is not a float type",
                            ba_dtype_name(t->dtype));
    float mn = r->min, mx = r->max;
    int64_t cnt = 0;
    if (t->dtype == BA_DT_F32) {
        const float *d = t->data;
        for (int64_t i = 0; i < t->numel; i++) {
            float v = d[i];
            if (!isfinite(v)) continue; /* masks (-inf) and NaN do not set the range */
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
            cnt++;
        }
    } else {
        for (int64_t i = 0; i < t->numel; i++) {
            float v = (float)ba_tensor_get_f64(t, i);
            if (!isfinite(v)) continue;
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
            cnt++;
        }
    }
    r->min = mn;
    r->max = mx;
    r->count += cnt;
    return BA_OK;
}

ba_status ba_quant_act_apply(ba_tensor_t *t, const ba_act_range_t *r, int bits, ba_error *err) {
    if (!ba_bits_valid(bits))
        return ba_error_set(err, BA_ERR_INPUT, "--act-bits: %d is not a width (" BA_BITS_WIDTHS ")", bits);
    if (t->dtype != BA_DT_F32)
        return ba_error_set(err, BA_ERR_INPUT, "activation quantizer: dtype %s is not float32",
                            ba_dtype_name(t->dtype));
    float *d = t->data;
    if (bits == BA_FP32_BITS) return BA_OK;
    if (bits == BA_FP16_BITS) {
        for (int64_t i = 0; i < t->numel; i++) d[i] = ba_f16_to_f32(ba_f32_to_f16(d[i]));
        return BA_OK;
    }
    if (r->count == 0)
        return ba_error_set(err, BA_ERR_INPUT,
                            "activation quantizer: no calibration range (no finite value seen)");
    grid_t g = grid_asym(r->min, r->max, 1.0, bits);
    const float s = g.scale, lo = g.lo, hi = g.hi;
#pragma omp simd
    for (int64_t i = 0; i < t->numel; i++) {
        float x = d[i] / s;
        x = x < lo ? lo : x; /* NaN stays NaN; ±Inf saturate */
        x = x > hi ? hi : x;
        d[i] = ((x + BA_RINT_MAGIC) - BA_RINT_MAGIC) * s;
    }
    return BA_OK;
}
