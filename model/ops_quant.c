/* Kernels of the quant family (see model/ops.h): QuantizeLinear and
 * DequantizeLinear, per tensor or per axis, int8/uint8/int16/uint16/int32
 * containers (int4/uint4 are not representable in core/tensor yet).
 * Numerics per the ONNX operator docs: q = saturate(round_half_even(x/s) + zp). */
#include <math.h>
#include <string.h>

#include "model/ops.h"

/* Block quantization (opset 21 block_size) is not implemented: per-tensor or per-axis only. */
typedef struct {
    int64_t outer, ch, inner; /* x viewed as [outer, ch, inner]; ch = 1 per-tensor */
} qlayout;

static ba_status layout(const ba_node_t *n, const ba_tensor_t *x, const ba_tensor_t *s, const ba_tensor_t *zp,
                        qlayout *L, ba_error *err) {
    L->outer = x->numel;
    L->ch = 1;
    L->inner = 1;
    if (ba_node_attr_int(n, "block_size", 0) != 0)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "node '%s' (%s): block quantization is not supported", n->name,
                            n->op_type);
    if (zp && zp->numel != s->numel)
        return ba_error_set(err, BA_ERR_INPUT, "node '%s' (%s): scale has %lld values, zero point %lld", n->name,
                            n->op_type, (long long)s->numel, (long long)zp->numel);
    if (s->numel == 1 && s->ndim <= 1) return BA_OK;
    if (s->ndim != 1)
        return ba_error_set(err, BA_ERR_INPUT, "node '%s' (%s): scale must be a scalar or 1-D", n->name, n->op_type);
    int64_t axis = ba_node_attr_int(n, "axis", 1);
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim || x->shape[axis] != s->numel)
        return ba_error_set(err, BA_ERR_INPUT, "node '%s' (%s): %lld scales do not match axis %lld of the input", n->name,
                            n->op_type, (long long)s->numel, (long long)axis);
    L->outer = 1;
    for (int d = 0; d < axis; d++) L->outer *= x->shape[d];
    L->ch = x->shape[axis];
    for (int d = (int)axis + 1; d < x->ndim; d++) L->inner *= x->shape[d];
    return BA_OK;
}

static int qrange(ba_dtype dt, double *lo, double *hi) {
    switch (dt) {
    case BA_DT_I8: *lo = -128, *hi = 127; return 1;
    case BA_DT_U8: *lo = 0, *hi = 255; return 1;
    case BA_DT_I16: *lo = -32768, *hi = 32767; return 1;
    case BA_DT_U16: *lo = 0, *hi = 65535; return 1;
    case BA_DT_I32: *lo = -2147483648.0, *hi = 2147483647.0; return 1;
    default: return 0;
    }
}

static void store_q(ba_tensor_t *t, int64_t i, double v) {
    switch (t->dtype) {
    case BA_DT_I8: ((int8_t *)t->data)[i] = (int8_t)v; break;
    case BA_DT_U8: ((uint8_t *)t->data)[i] = (uint8_t)v; break;
    case BA_DT_I16: ((int16_t *)t->data)[i] = (int16_t)v; break;
    case BA_DT_U16: ((uint16_t *)t->data)[i] = (uint16_t)v; break;
    default: ((int32_t *)t->data)[i] = (int32_t)v; break;
    }
}

static ba_status quantize_linear(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                                 ba_error *err) {
    (void)nout;
    if (nin < 2 || !in[0] || !in[1])
        return ba_error_set(err, BA_ERR_INPUT, "node '%s' (QuantizeLinear): needs x and y_scale", n->name);
    const ba_tensor_t *x = in[0], *s = in[1], *zp = nin > 2 ? in[2] : NULL;
    ba_dtype odt = zp ? zp->dtype : (ba_dtype)ba_node_attr_int(n, "output_dtype", BA_DT_U8);
    if (odt == BA_DT_UNDEFINED) odt = BA_DT_U8;
    double lo, hi;
    if (!qrange(odt, &lo, &hi))
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "node '%s' (QuantizeLinear): output type %s is not supported",
                            n->name, ba_dtype_name(odt));
    if (!ba_dtype_is_float(x->dtype))
        return ba_error_set(err, BA_ERR_INPUT, "node '%s' (QuantizeLinear): input must be float, got %s", n->name,
                            ba_dtype_name(x->dtype));
    qlayout L;
    BA_TRY(layout(n, x, s, zp, &L, err));
    ba_tensor_t *y = ba_tensor_new(odt, x->ndim, x->shape, err);
    if (!y) return err->code;
    for (int64_t c = 0; c < L.ch; c++) {
        double sc = ba_tensor_get_f64(s, c), z = zp ? (double)ba_tensor_get_i64(zp, c) : 0.0;
        if (sc == 0.0) sc = 1.0; /* a zero scale would divide by zero: ORT gives inf; keep it finite */
        for (int64_t o = 0; o < L.outer; o++)
            for (int64_t k = 0; k < L.inner; k++) {
                int64_t i = (o * L.ch + c) * L.inner + k;
                /* float32 division then round half to even, as ONNX Runtime and
                 * quant/ compute it: a double division moves values sitting on
                 * a rounding tie one code away. */
                double v = (double)nearbyintf((float)ba_tensor_get_f64(x, i) / (float)sc) + z;
                if (v != v) v = z;
                v = v < lo ? lo : v > hi ? hi : v;
                store_q(y, i, v);
            }
    }
    out[0] = y;
    return BA_OK;
}

static ba_status dequantize_linear(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                                   ba_error *err) {
    (void)nout;
    if (nin < 2 || !in[0] || !in[1])
        return ba_error_set(err, BA_ERR_INPUT, "node '%s' (DequantizeLinear): needs x and x_scale", n->name);
    const ba_tensor_t *x = in[0], *s = in[1], *zp = nin > 2 ? in[2] : NULL;
    if (!ba_dtype_is_int(x->dtype))
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "node '%s' (DequantizeLinear): input type %s is not supported",
                            n->name, ba_dtype_name(x->dtype));
    qlayout L;
    BA_TRY(layout(n, x, s, zp, &L, err));
    ba_dtype odt = ba_dtype_is_float(s->dtype) ? s->dtype : BA_DT_F32;
    ba_tensor_t *y = ba_tensor_new(BA_DT_F32, x->ndim, x->shape, err);
    if (!y) return err->code;
    float *yd = y->data;
    for (int64_t c = 0; c < L.ch; c++) {
        double sc = ba_tensor_get_f64(s, c);
        int64_t z = zp ? ba_tensor_get_i64(zp, c) : 0;
        for (int64_t o = 0; o < L.outer; o++)
            for (int64_t k = 0; k < L.inner; k++) {
                int64_t i = (o * L.ch + c) * L.inner + k;
                yd[i] = (float)((double)(ba_tensor_get_i64(x, i) - z) * sc);
            }
    }
    if (odt != BA_DT_F32) { /* scale in f16/f64: output takes its type */
        ba_tensor_t *c = ba_tensor_cast(y, odt, err);
        ba_tensor_unref(y);
        if (!c) return err->code;
        y = c;
    }
    out[0] = y;
    return BA_OK;
}

const ba_op_def_t ba_ops_quant[] = {
    {"QuantizeLinear", quantize_linear},
    {"DequantizeLinear", dequantize_linear},
    {NULL, NULL},
};
