/* Tensor allocation, views, reference counting and dtype conversions. */
#include "core/tensor.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BA_TENSOR_ALIGN 64

size_t ba_dtype_size(ba_dtype dt) {
    switch (dt) {
    case BA_DT_F32:
    case BA_DT_I32:
    case BA_DT_U32: return 4;
    case BA_DT_F64:
    case BA_DT_I64:
    case BA_DT_U64: return 8;
    case BA_DT_F16:
    case BA_DT_BF16:
    case BA_DT_I16:
    case BA_DT_U16: return 2;
    case BA_DT_I8:
    case BA_DT_U8:
    case BA_DT_BOOL: return 1;
    default: return 0;
    }
}

const char *ba_dtype_name(ba_dtype dt) {
    switch (dt) {
    case BA_DT_F32: return "float32";
    case BA_DT_F64: return "float64";
    case BA_DT_F16: return "float16";
    case BA_DT_BF16: return "bfloat16";
    case BA_DT_I64: return "int64";
    case BA_DT_I32: return "int32";
    case BA_DT_I16: return "int16";
    case BA_DT_I8: return "int8";
    case BA_DT_U64: return "uint64";
    case BA_DT_U32: return "uint32";
    case BA_DT_U16: return "uint16";
    case BA_DT_U8: return "uint8";
    case BA_DT_BOOL: return "bool";
    case BA_DT_STRING: return "string";
    case BA_DT_I4: return "int4";
    case BA_DT_U4: return "uint4";
    default: return "undefined";
    }
}

int ba_dtype_is_float(ba_dtype dt) {
    return dt == BA_DT_F32 || dt == BA_DT_F64 || dt == BA_DT_F16 || dt == BA_DT_BF16;
}

int ba_dtype_is_int(ba_dtype dt) {
    switch (dt) {
    case BA_DT_I64:
    case BA_DT_I32:
    case BA_DT_I16:
    case BA_DT_I8:
    case BA_DT_U64:
    case BA_DT_U32:
    case BA_DT_U16:
    case BA_DT_U8: return 1;
    default: return 0;
    }
}

int64_t ba_shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(n, shape[i], &n)) return -1; /* never a valid count */
    }
    return n;
}

void ba_shape_strides(int ndim, const int64_t *shape, int64_t *st) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        st[d] = s;
        s *= shape[d];
    }
}

size_t ba_tensor_nbytes(const ba_tensor_t *t) {
    return (size_t)t->numel * ba_dtype_size(t->dtype);
}

const char *ba_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "[");
    for (int i = 0; i < ndim; i++)
        o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "%s%lld", i ? ", " : "", (long long)shape[i]);
    snprintf(buf + o, o < cap ? cap - o : 0, "]");
    return buf;
}

ba_status ba_shape_parse(const char *text, int *ndim, int64_t *shape, ba_error *err) {
    *ndim = 0;
    if (!text[0] || !strcmp(text, "scalar")) return BA_OK;
    const char *p = text;
    for (;;) {
        if (*ndim == BA_MAX_DIMS)
            return ba_error_set(err, BA_ERR_INPUT, "shape '%s': more than %d dims", text, BA_MAX_DIMS);
        int64_t v = 0;
        const char *q = p;
        while (*q >= '0' && *q <= '9') {
            v = v * 10 + (*q - '0');
            if (v > ((int64_t)1 << 40))
                return ba_error_set(err, BA_ERR_INPUT, "shape '%s': dimension too large", text);
            q++;
        }
        if (q == p)
            return ba_error_set(err, BA_ERR_INPUT, "shape '%s': expected dims like 1x3x224x224", text);
        shape[(*ndim)++] = v;
        if (!*q) return BA_OK;
        if (*q != 'x')
            return ba_error_set(err, BA_ERR_INPUT, "shape '%s': expected dims like 1x3x224x224", text);
        p = q + 1;
    }
}

static ba_tensor_t *header(ba_dtype dt, int ndim, const int64_t *shape, ba_error *err) {
    if (ndim < 0 || ndim > BA_MAX_DIMS) {
        ba_error_set(err, BA_ERR_INPUT, "tensor: rank %d outside 0..%d", ndim, BA_MAX_DIMS);
        return NULL;
    }
    if (ba_dtype_size(dt) == 0) {
        ba_error_set(err, BA_ERR_UNSUPPORTED, "tensor: dtype %s not supported", ba_dtype_name(dt));
        return NULL;
    }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            ba_error_set(err, BA_ERR_INPUT, "tensor: negative dimension %lld", (long long)shape[i]);
            return NULL;
        }
        if (shape[i] && n > INT64_MAX / 16 / shape[i]) {
            ba_error_set(err, BA_ERR_INPUT, "tensor: element count overflows");
            return NULL;
        }
        n *= shape[i];
    }
    ba_tensor_t *t = ba_calloc(1, sizeof *t, err);
    if (!t) return NULL;
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = n;
    t->refs = 1;
    return t;
}

/* ---- reuse of large buffers ----
 * glibc serves blocks above its mmap threshold (at most 32 MiB) with a fresh
 * mmap and unmaps them on free: a batch-32 ResNet run page-faulted ~100 MB of
 * activations on every pass (5-10% of the run). Freed buffers of at least
 * CACHE_MIN bytes are kept here by exact allocation size, oldest evicted
 * first beyond CACHE_SLOTS buffers or CACHE_MAX_BYTES in all. */
#define CACHE_MIN ((size_t)256 << 10)
#define CACHE_MAX_BYTES ((size_t)256 << 20)
#define CACHE_SLOTS 64

static struct {
    pthread_mutex_t mu;
    int n;
    size_t bytes;
    void *ptr[CACHE_SLOTS];
    size_t size[CACHE_SLOTS];
} g_cache = {PTHREAD_MUTEX_INITIALIZER, 0, 0, {0}, {0}};

static size_t alloc_size(size_t nb) {
    size_t alloc = (nb + BA_TENSOR_ALIGN - 1) / BA_TENSOR_ALIGN * BA_TENSOR_ALIGN;
    return alloc ? alloc : BA_TENSOR_ALIGN;
}

/* Under AddressSanitizer nothing is kept, so that a use after free of a
 * tensor's data is still reported. */
#if defined(__SANITIZE_ADDRESS__)
#define CACHE_ON 0
#else
#define CACHE_ON 1
#endif

static void *cache_take(size_t alloc) {
    if (!CACHE_ON || alloc < CACHE_MIN) return NULL;
    void *p = NULL;
    pthread_mutex_lock(&g_cache.mu);
    for (int i = g_cache.n - 1; i >= 0; i--) /* newest first: likeliest still in cache */
        if (g_cache.size[i] == alloc) {
            p = g_cache.ptr[i];
            g_cache.bytes -= alloc;
            memmove(g_cache.ptr + i, g_cache.ptr + i + 1,
                    (size_t)(g_cache.n - i - 1) * sizeof g_cache.ptr[0]);
            memmove(g_cache.size + i, g_cache.size + i + 1,
                    (size_t)(g_cache.n - i - 1) * sizeof g_cache.size[0]);
            g_cache.n--;
            break;
        }
    pthread_mutex_unlock(&g_cache.mu);
    return p;
}

/* Keeps p (alloc bytes) for reuse, or frees it; evicted buffers are freed outside the lock. */
static void cache_give(void *p, size_t alloc) {
    if (!p) return;
    if (!CACHE_ON || alloc < CACHE_MIN || alloc > CACHE_MAX_BYTES) {
        free(p);
        return;
    }
    void *evict[CACHE_SLOTS];
    int ne = 0;
    pthread_mutex_lock(&g_cache.mu);
    while (g_cache.n > 0 && (g_cache.n == CACHE_SLOTS || g_cache.bytes + alloc > CACHE_MAX_BYTES)) {
        evict[ne++] = g_cache.ptr[0];
        g_cache.bytes -= g_cache.size[0];
        memmove(g_cache.ptr, g_cache.ptr + 1, (size_t)(g_cache.n - 1) * sizeof g_cache.ptr[0]);
        memmove(g_cache.size, g_cache.size + 1, (size_t)(g_cache.n - 1) * sizeof g_cache.size[0]);
        g_cache.n--;
    }
    g_cache.ptr[g_cache.n] = p;
    g_cache.size[g_cache.n] = alloc;
    g_cache.n++;
    g_cache.bytes += alloc;
    pthread_mutex_unlock(&g_cache.mu);
    for (int i = 0; i < ne; i++) free(evict[i]);
}

void ba_tensor_cache_clear(void) {
    pthread_mutex_lock(&g_cache.mu);
    int n = g_cache.n;
    void *ptr[CACHE_SLOTS];
    memcpy(ptr, g_cache.ptr, (size_t)n * sizeof ptr[0]);
    g_cache.n = 0;
    g_cache.bytes = 0;
    pthread_mutex_unlock(&g_cache.mu);
    for (int i = 0; i < n; i++) free(ptr[i]);
}

static ba_tensor_t *tensor_alloc(ba_dtype dt, int ndim, const int64_t *shape, int zero, ba_error *err) {
    ba_tensor_t *t = header(dt, ndim, shape, err);
    if (!t) return NULL;
    if (t->numel > BA_TENSOR_MAX_BYTES / (int64_t)ba_dtype_size(dt)) {
        char sb[160];
        ba_error_set(err, BA_ERR_INPUT, "tensor: %s %s would take %.3g GiB, over the %lld GiB limit",
                     ba_dtype_name(dt), ba_shape_str(ndim, shape, sb, sizeof sb),
                     (double)t->numel * (double)ba_dtype_size(dt) / (1 << 30),
                     (long long)(BA_TENSOR_MAX_BYTES >> 30));
        free(t);
        return NULL;
    }
    size_t nb = ba_tensor_nbytes(t);
    size_t alloc = alloc_size(nb);
    t->data = cache_take(alloc);
    if (!t->data) t->data = aligned_alloc(BA_TENSOR_ALIGN, alloc);
    if (!t->data) {
        free(t);
        ba_error_set(err, BA_ERR_NOMEM, "out of memory: tensor of %zu bytes", nb);
        return NULL;
    }
    if (zero) memset(t->data, 0, alloc);
    t->owns = 1;
    return t;
}

ba_tensor_t *ba_tensor_new(ba_dtype dt, int ndim, const int64_t *shape, ba_error *err) {
    return tensor_alloc(dt, ndim, shape, 1, err);
}

ba_tensor_t *ba_tensor_new_uninit(ba_dtype dt, int ndim, const int64_t *shape, ba_error *err) {
    return tensor_alloc(dt, ndim, shape, 0, err);
}

ba_tensor_t *ba_tensor_wrap(ba_dtype dt, int ndim, const int64_t *shape, void *data, ba_error *err) {
    ba_tensor_t *t = header(dt, ndim, shape, err);
    if (t) t->data = data;
    return t;
}

ba_tensor_t *ba_tensor_view(ba_tensor_t *src, int ndim, const int64_t *shape, ba_error *err) {
    if (ba_shape_numel(ndim, shape) != src->numel) {
        ba_error_set(err, BA_ERR_INPUT, "tensor view: element count mismatch");
        return NULL;
    }
    ba_tensor_t *t = header(src->dtype, ndim, shape, err);
    if (!t) return NULL;
    t->data = src->data;
    t->base = ba_tensor_ref(src);
    return t;
}

ba_tensor_t *ba_tensor_clone(const ba_tensor_t *src, ba_error *err) {
    ba_tensor_t *t = ba_tensor_new(src->dtype, src->ndim, src->shape, err);
    if (t && t->numel) memcpy(t->data, src->data, ba_tensor_nbytes(src));
    return t;
}

ba_tensor_t *ba_tensor_slice_axis(ba_tensor_t *src, int axis, int64_t start, int64_t count, ba_error *err) {
    if (axis < 0 || axis >= src->ndim) {
        ba_error_set(err, BA_ERR_INPUT, "tensor slice: axis %d outside 0..%d", axis, src->ndim - 1);
        return NULL;
    }
    int64_t len = src->shape[axis];
    if (start < 0 || count < 0 || start > len || count > len - start) {
        ba_error_set(err, BA_ERR_INPUT, "tensor slice: [%lld, %lld) outside the %lld entries of axis %d",
                     (long long)start, (long long)(start + count), (long long)len, axis);
        return NULL;
    }
    int64_t shape[BA_MAX_DIMS], outer = 1;
    memcpy(shape, src->shape, sizeof shape);
    shape[axis] = count;
    for (int d = 0; d < axis; d++) outer *= src->shape[d];
    /* bytes of one entry along axis (every later axis whole) */
    size_t inner = ba_dtype_size(src->dtype);
    for (int d = axis + 1; d < src->ndim; d++) inner *= (size_t)src->shape[d];
    if (outer <= 1) {
        ba_tensor_t *t = header(src->dtype, src->ndim, shape, err);
        if (!t) return NULL;
        t->data = (char *)src->data + (size_t)start * inner;
        t->base = ba_tensor_ref(src);
        return t;
    }
    ba_tensor_t *t = ba_tensor_new_uninit(src->dtype, src->ndim, shape, err);
    if (!t) return NULL;
    size_t block = (size_t)count * inner, stride = (size_t)len * inner;
    for (int64_t o = 0; o < outer && block; o++)
        memcpy((char *)t->data + (size_t)o * block,
               (const char *)src->data + (size_t)o * stride + (size_t)start * inner, block);
    return t;
}

ba_tensor_t *ba_tensor_ref(ba_tensor_t *t) {
    if (t) t->refs++;
    return t;
}

void ba_tensor_unref(ba_tensor_t *t) {
    if (!t || --t->refs > 0) return;
    /* Every owner allocates at least alloc_size(nbytes), 64-byte aligned
     * (ba_tensor_new, and the few modules that set owns on their own buffer). */
    if (t->owns) cache_give(t->data, alloc_size(ba_tensor_nbytes(t)));
    ba_tensor_unref(t->base);
    free(t);
}

float ba_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0)
            bits = sign;
        else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            man &= 0x3ff;
            bits = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31)
        bits = sign | 0x7f800000u | (man << 13);
    else
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t ba_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff);
    uint32_t man = x & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    int32_t e = exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++; /* may carry into exponent: correct */
    return (uint16_t)half;
}

float ba_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

double ba_tensor_get_f64(const ba_tensor_t *t, int64_t i) {
    const void *d = t->data;
    switch (t->dtype) {
    case BA_DT_F32: return ((const float *)d)[i];
    case BA_DT_F64: return ((const double *)d)[i];
    case BA_DT_F16: return ba_f16_to_f32(((const uint16_t *)d)[i]);
    case BA_DT_BF16: return ba_bf16_to_f32(((const uint16_t *)d)[i]);
    case BA_DT_I64: return (double)((const int64_t *)d)[i];
    case BA_DT_I32: return ((const int32_t *)d)[i];
    case BA_DT_I16: return ((const int16_t *)d)[i];
    case BA_DT_I8: return ((const int8_t *)d)[i];
    case BA_DT_U64: return (double)((const uint64_t *)d)[i];
    case BA_DT_U32: return ((const uint32_t *)d)[i];
    case BA_DT_U16: return ((const uint16_t *)d)[i];
    case BA_DT_U8:
    case BA_DT_BOOL: return ((const uint8_t *)d)[i];
    default: return 0;
    }
}

int64_t ba_tensor_get_i64(const ba_tensor_t *t, int64_t i) {
    const void *d = t->data;
    switch (t->dtype) {
    case BA_DT_I64: return ((const int64_t *)d)[i];
    case BA_DT_I32: return ((const int32_t *)d)[i];
    case BA_DT_I16: return ((const int16_t *)d)[i];
    case BA_DT_I8: return ((const int8_t *)d)[i];
    case BA_DT_U64: return (int64_t)((const uint64_t *)d)[i];
    case BA_DT_U32: return ((const uint32_t *)d)[i];
    case BA_DT_U16: return ((const uint16_t *)d)[i];
    case BA_DT_U8:
    case BA_DT_BOOL: return ((const uint8_t *)d)[i];
    default: {
        double v = ba_tensor_get_f64(t, i);
        if (isnan(v)) return 0;
        if (v >= 9.2e18) return INT64_MAX;
        if (v <= -9.2e18) return INT64_MIN;
        return (int64_t)v; /* truncation toward zero, as ONNX Cast */
    }
    }
}

static void put(ba_tensor_t *t, int64_t i, double f, int64_t n, int from_float) {
    void *d = t->data;
    switch (t->dtype) {
    case BA_DT_F32: ((float *)d)[i] = from_float ? (float)f : (float)n; break;
    case BA_DT_F64: ((double *)d)[i] = from_float ? f : (double)n; break;
    case BA_DT_F16: ((uint16_t *)d)[i] = ba_f32_to_f16(from_float ? (float)f : (float)n); break;
    case BA_DT_BF16: {
        float v = from_float ? (float)f : (float)n;
        uint32_t b;
        memcpy(&b, &v, 4);
        b += 0x7fff + ((b >> 16) & 1);
        ((uint16_t *)d)[i] = (uint16_t)(b >> 16);
        break;
    }
    case BA_DT_I64: ((int64_t *)d)[i] = n; break;
    case BA_DT_I32: ((int32_t *)d)[i] = (int32_t)n; break;
    case BA_DT_I16: ((int16_t *)d)[i] = (int16_t)n; break;
    case BA_DT_I8: ((int8_t *)d)[i] = (int8_t)n; break;
    case BA_DT_U64: ((uint64_t *)d)[i] = (uint64_t)n; break;
    case BA_DT_U32: ((uint32_t *)d)[i] = (uint32_t)n; break;
    case BA_DT_U16: ((uint16_t *)d)[i] = (uint16_t)n; break;
    case BA_DT_U8: ((uint8_t *)d)[i] = (uint8_t)n; break;
    case BA_DT_BOOL: ((uint8_t *)d)[i] = from_float ? (f != 0) : (n != 0); break;
    default: break;
    }
}

ba_tensor_t *ba_tensor_cast(const ba_tensor_t *src, ba_dtype dt, ba_error *err) {
    ba_tensor_t *t = ba_tensor_new(dt, src->ndim, src->shape, err);
    if (!t) return NULL;
    if (src->dtype == dt) {
        memcpy(t->data, src->data, ba_tensor_nbytes(src));
        return t;
    }
    int src_float = ba_dtype_is_float(src->dtype);
    if (src_float && dt == BA_DT_F32 && src->dtype == BA_DT_F64) {
        for (int64_t i = 0; i < src->numel; i++)
            ((float *)t->data)[i] = (float)((const double *)src->data)[i];
        return t;
    }
    for (int64_t i = 0; i < src->numel; i++) {
        if (src_float) {
            double v = ba_tensor_get_f64(src, i);
            put(t, i, v, ba_dtype_is_float(dt) || dt == BA_DT_BOOL ? 0 : ba_tensor_get_i64(src, i), 1);
            if (!ba_dtype_is_float(dt) && dt != BA_DT_BOOL) put(t, i, 0, ba_tensor_get_i64(src, i), 0);
        } else {
            int64_t v = ba_tensor_get_i64(src, i);
            if (ba_dtype_is_float(dt))
                put(t, i, src->dtype == BA_DT_U64 ? (double)(uint64_t)v : (double)v, 0, 1);
            else
                put(t, i, 0, v, 0);
        }
    }
    return t;
}
