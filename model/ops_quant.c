/* Kernels of the quant family (see model/ops.h): QuantizeLinear and
 * DequantizeLinear, per tensor, per axis or blocked (opset 21 block_size),
 * int8/uint8/int16/uint16/int32 and int4/uint4 (held unpacked in int8/uint8
 * tensors: the loader unpacks them; QuantizeLinear makes them from output_dtype).
 * Numerics per the ONNX operator docs: q = saturate(round_half_even(x/s) + zp). */
#include <math.h>
#include <string.h>

#include "model/ops.h"

/* x viewed as [outer, ch, inner] around `axis`; element i = (o*ch + a)*inner + k
 * reads scale (and zero point) number:
 *   per-tensor: 0 (ch = 1);  per-axis: a;
 *   blocked (opset 21 block_size B): (o*nblk + a/B)*inner + k, the scale having
 *   x's shape with dims[axis] = nblk = ceil(dims[axis] / B). */
typedef struct {
    int64_t outer, ch, inner;
    int64_t block, nblk; /* block > 0: blocked */
} qlayout;

static ba_status layout(const ba_node_t *n, const ba_tensor_t *x, const ba_tensor_t *s, const ba_tensor_t *zp,
                        qlayout *L, ba_error *err) {
    L->outer = x->numel;
    L->ch = 1;
    L->inner = 1;
    L->block = 0;
    L->nblk = 1;
    int64_t block = ba_node_attr_int(n, "block_size", 0);
    if (block < 0)
        return ba_error_set(err, BA_ERR_INPUT, "node '%s' (%s): block_size %lld is negative", n->name,
                            n->op_type, (long long)block);
    if (zp && zp->numel != s->numel)
        return ba_error_set(err, BA_ERR_INPUT, "node '%s' (%s): scale has %lld values, zero point %lld",
                            n->name, n->op_type, (long long)s->numel, (long long)zp->numel);
    if (block == 0 && s->numel == 1 && s->ndim <= 1) return BA_OK;
    if (block == 0 && s->ndim != 1)
        return ba_error_set(err, BA_ERR_INPUT, "node '%s' (%s): scale must be a scalar or 1-D", n->name,
                            n->op_type);
    int64_t axis = ba_node_attr_int(n, "axis", 1);
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim)
        return ba_error_set(err, BA_ERR_INPUT,
                            "node '%s' (%s): axis %lld is out of range for a rank-%d input", n->name,
                            n->op_type, (long long)ba_node_attr_int(n, "axis", 1), x->ndim);
    L->outer = 1;
    for (int d = 0; d < axis; d++) L->outer *= x->shape[d];
    L->ch = x->shape[axis];
    for (int d = (int)axis + 1; d < x->ndim; d++) L->inner *= x->shape[d];
    if (block == 0) {
        if (x->shape[axis] != s->numel)
            return ba_error_set(err, BA_ERR_INPUT,
                                "node '%s' (%s): %lld scales do not match axis %lld of the input", n->name,
                                n->op_type, (long long)s->numel, (long long)axis);
        return BA_OK;
    }
    L->block = block;
    L->nblk = (x->shape[axis] + block - 1) / block;
    int ok = s->ndim == x->ndim && (!zp || zp->ndim == s->ndim);
    for (int d = 0; ok && d < x->ndim; d++) {
        int64_t want = d == axis ? L->nblk : x->shape[d];
        ok = s->shape[d] == want && (!zp || zp->shape[d] == want);
    }
    if (!ok) {
        char xs[160], ss[160];
        return ba_error_set(
            err, BA_ERR_INPUT,
            "node '%s' (%s): block_size %lld along axis %lld of a %s input needs scale and zero point "
            "of the input's shape with %lld blocks on that axis, got %s",
            n->name, n->op_type, (long long)block, (long long)axis,
            ba_shape_str(x->ndim, x->shape, xs, sizeof xs), (long long)L->nblk,
            ba_shape_str(s->ndim, s->shape, ss, sizeof ss));
    }
    return BA_OK;
}

/* Scale / zero-point number of element i (see qlayout). */
static int64_t qparam_index(const qlayout *L, int64_t i) {
    int64_t a = (i / L->inner) % L->ch;
    if (!L->block) return a;
    int64_t o = i / (L->inner * L->ch), k = i % L->inner;
    return (o * L->nblk + a / L->block) * L->inner + k;
}

static int qrange(ba_dtype dt, double *lo, double *hi) {
    switch (dt) {
    case BA_DT_I8: *lo = -128, *hi = 127; return 1;
    case BA_DT_U8: *lo = 0, *hi = 255; return 1;
    case BA_DT_I16: *lo = -32768, *hi = 32767; return 1;
    case BA_DT_U16: *lo = 0, *hi = 65535; return 1;
    case BA_DT_I32: *lo = -2147483648.0, *hi = 2147483647.0; return 1;
    case BA_DT_I4: *lo = -8, *hi = 7; return 1;
    case BA_DT_U4: *lo = 0, *hi = 15; return 1;
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

ba_status ba_quantize_linear(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                             ba_error *err) {
    (void)nout;
    if (nin < 2 || !in[0] || !in[1])
        return ba_error_set(err, BA_ERR_INPUT, "node '%s' (QuantizeLinear): needs x and y_scale", n->name);
    const ba_tensor_t *x = in[0], *s = in[1], *zp = nin > 2 ? in[2] : NULL;
    ba_dtype odt = zp ? zp->dtype : (ba_dtype)ba_node_attr_int(n, "output_dtype", BA_DT_U8);
    if (odt == BA_DT_UNDEFINED) odt = BA_DT_U8;
    double lo, hi;
    if (!qrange(odt, &lo, &hi))
        return ba_error_set(err, BA_ERR_UNSUPPORTED,
                            "node '%s' (QuantizeLinear): output type %s is not supported", n->name,
                            ba_dtype_name(odt));
    if (!ba_dtype_is_float(x->dtype))
        return ba_error_set(err, BA_ERR_INPUT, "node '%s' (QuantizeLinear): input must be float, got %s",
                            n->name, ba_dtype_name(x->dtype));
    qlayout L;
    BA_TRY(layout(n, x, s, zp, &L, err));
    /* int4/uint4 results are kept unpacked, one int8/uint8 per element (as the loader keeps them). */
    ba_dtype cdt = odt == BA_DT_I4 ? BA_DT_I8 : odt == BA_DT_U4 ? BA_DT_U8 : odt;
    ba_tensor_t *y = ba_tensor_new(cdt, x->ndim, x->shape, err);
    if (!y) return err->code;
    for (int64_t i = 0; i < x->numel; i++) {
        int64_t j = qparam_index(&L, i);
        double sc = ba_tensor_get_f64(s, j), z = zp ? (double)ba_tensor_get_i64(zp, j) : 0.0;
        if (sc == 0.0) sc = 1.0; /* a zero scale would divide by zero: ORT gives inf; keep it finite */
        /* float32 division then round half to even, as ONNX Runtime and
         * quant/ compute it: a double division moves values sitting on
         * a rounding tie one code away. */
        double v = (double)nearbyintf((float)ba_tensor_get_f64(x, i) / (float)sc) + z;
        if (v != v) v = z;
        v = v < lo ? lo : v > hi ? hi : v;
        store_q(y, i, v);
    }
    out[0] = y;
    return BA_OK;
}

ba_status ba_dequantize_linear(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out,
                               int nout, ba_error *err) {
    (void)nout;
    if (nin < 2 || !in[0] || !in[1])
        return ba_error_set(err, BA_ERR_INPUT, "node '%s' (DequantizeLinear): needs x and x_scale", n->name);
    const ba_tensor_t *x = in[0], *s = in[1], *zp = nin > 2 ? in[2] : NULL;
    if (!ba_dtype_is_int(x->dtype))
        return ba_error_set(err, BA_ERR_UNSUPPORTED,
                            "node '%s' (DequantizeLinear): input type %s is not supported", n->name,
                            ba_dtype_name(x->dtype));
    qlayout L;
    BA_TRY(layout(n, x, s, zp, &L, err));
    ba_dtype odt = ba_dtype_is_float(s->dtype) ? s->dtype : BA_DT_F32;
    ba_tensor_t *y = ba_tensor_new(BA_DT_F32, x->ndim, x->shape, err);
    if (!y) return err->code;
    float *yd = y->data;
    for (int64_t i = 0; i < x->numel; i++) {
        int64_t j = qparam_index(&L, i);
        int64_t z = zp ? ba_tensor_get_i64(zp, j) : 0;
        yd[i] = (float)((double)(ba_tensor_get_i64(x, i) - z) * ba_tensor_get_f64(s, j));
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
