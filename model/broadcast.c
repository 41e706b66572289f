/* Multidirectional broadcasting (ONNX "Broadcasting in ONNX", numpy rules):
 * shapes are right-aligned, each dimension pair must be equal or contain a 1. */
#include "model/broadcast.h"

#include <string.h>

ba_status ba_broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b, int *nout, int64_t *out,
                             const char *who, ba_error *err) {
    int n = na > nb ? na : nb;
    if (n > BA_MAX_DIMS)
        return ba_error_set(err, BA_ERR_INPUT, "%s: rank %d exceeds %d", who, n, BA_MAX_DIMS);
    for (int i = 0; i < n; i++) {
        int ia = i - (n - na), ib = i - (n - nb);
        int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char sa[160], sb[160];
            return ba_error_set(err, BA_ERR_INPUT, "%s: shapes %s and %s do not broadcast", who,
                                ba_shape_str(na, a, sa, sizeof sa), ba_shape_str(nb, b, sb, sizeof sb));
        }
        out[i] = da == 1 ? db : da;
    }
    *nout = n;
    return BA_OK;
}

ba_status ba_bcast_init(ba_bcast_t *bc, int nin, const int *ndims, const int64_t *const *shapes,
                        const char *who, ba_error *err) {
    memset(bc, 0, sizeof *bc);
    if (nin < 1 || nin > BA_BCAST_MAX_IN)
        return ba_error_set(err, BA_ERR_INPUT, "%s: %d inputs to broadcast", who, nin);
    int n = ndims[0];
    int64_t shp[BA_MAX_DIMS];
    if (n > BA_MAX_DIMS)
        return ba_error_set(err, BA_ERR_INPUT, "%s: rank %d exceeds %d", who, n, BA_MAX_DIMS);
    memcpy(shp, shapes[0], sizeof(int64_t) * (size_t)n);
    for (int k = 1; k < nin; k++) {
        int64_t tmp[BA_MAX_DIMS];
        BA_TRY(ba_broadcast_shape(n, shp, ndims[k], shapes[k], &n, tmp, who, err));
        memcpy(shp, tmp, sizeof(int64_t) * (size_t)n);
    }
    bc->nin = nin;
    bc->out_ndim = n;
    memcpy(bc->out_shape, shp, sizeof(int64_t) * (size_t)n);
    bc->out_numel = ba_shape_numel(n, shp);

    /* Full-rank strides per input (0 where the input has size 1 or is missing). */
    int64_t st[BA_BCAST_MAX_IN][BA_MAX_DIMS];
    for (int k = 0; k < nin; k++) {
        int64_t s = 1;
        for (int i = n - 1; i >= 0; i--) {
            int ik = i - (n - ndims[k]);
            int64_t d = ik >= 0 ? shapes[k][ik] : 1;
            st[k][i] = (d == 1) ? 0 : s;
            s *= d;
        }
    }
    /* Drop size-1 output dims, then merge neighbours i-1,i when every input is
     * contiguous across them (stride[i-1] == stride[i]*shape[i]) or broadcast on both. */
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (shp[i] == 1) continue;
        if (m > 0) {
            int ok = 1;
            for (int k = 0; k < nin && ok; k++)
                ok = bc->strides[k][m - 1] == st[k][i] * shp[i] &&
                     (st[k][i] != 0 || bc->strides[k][m - 1] == 0);
            if (ok) {
                bc->shape[m - 1] *= shp[i];
                for (int k = 0; k < nin; k++) bc->strides[k][m - 1] = st[k][i];
                continue;
            }
        }
        bc->shape[m] = shp[i];
        for (int k = 0; k < nin; k++) bc->strides[k][m] = st[k][i];
        m++;
    }
    if (m == 0) { /* scalar or all ones */
        bc->shape[0] = bc->out_numel;
        for (int k = 0; k < nin; k++) bc->strides[k][0] = 0;
        m = 1;
    }
    bc->ndim = m;
    bc->row_len = bc->shape[m - 1];
    bc->nrows = bc->row_len ? bc->out_numel / bc->row_len : 0;
    return BA_OK;
}

ba_status ba_bcast_init_tensors(ba_bcast_t *bc, int nin, const ba_tensor_t *const *in, const char *who,
                                ba_error *err) {
    int nd[BA_BCAST_MAX_IN];
    const int64_t *sh[BA_BCAST_MAX_IN];
    if (nin < 1 || nin > BA_BCAST_MAX_IN)
        return ba_error_set(err, BA_ERR_INPUT, "%s: %d inputs to broadcast", who, nin);
    for (int k = 0; k < nin; k++) {
        nd[k] = in[k]->ndim;
        sh[k] = in[k]->shape;
    }
    return ba_bcast_init(bc, nin, nd, sh, who, err);
}

void ba_bcast_row(const ba_bcast_t *bc, int64_t r, int64_t *offs) {
    for (int k = 0; k < bc->nin; k++) offs[k] = 0;
    for (int i = bc->ndim - 2; i >= 0; i--) {
        int64_t idx = r % bc->shape[i];
        r /= bc->shape[i];
        for (int k = 0; k < bc->nin; k++) offs[k] += idx * bc->strides[k][i];
    }
}

/* Below this many output elements a parallel region costs more than it saves. */
#define BA_BCAST_PAR_MIN 65536

void ba_bcast_for_each(const ba_bcast_t *bc, ba_bcast_seg_fn fn, void *ctx) {
    if (bc->out_numel == 0) return;
    int64_t nseg = (bc->row_len + BA_BCAST_SEG - 1) / BA_BCAST_SEG, total = bc->nrows * nseg;
    int64_t steps[BA_BCAST_MAX_IN];
    for (int k = 0; k < bc->nin; k++) steps[k] = bc->strides[k][bc->ndim - 1];
#pragma omp parallel for schedule(static) if (bc->out_numel >= BA_BCAST_PAR_MIN)
    for (int64_t t = 0; t < total; t++) {
        int64_t r = t / nseg, start = (t % nseg) * BA_BCAST_SEG;
        int64_t len = bc->row_len - start < BA_BCAST_SEG ? bc->row_len - start : BA_BCAST_SEG;
        int64_t offs[BA_BCAST_MAX_IN];
        ba_bcast_row(bc, r, offs);
        for (int k = 0; k < bc->nin; k++) offs[k] += start * steps[k];
        fn(ctx, r * bc->row_len + start, offs, steps, len);
    }
}

static uint16_t f32_to_bf16(float v) {
    uint32_t b;
    memcpy(&b, &v, 4);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x40); /* keep NaN a NaN */
    b += 0x7fff + ((b >> 16) & 1);
    return (uint16_t)(b >> 16);
}

void ba_elem_store_f64(ba_tensor_t *t, int64_t i, double v) {
    void *d = t->data;
    switch (t->dtype) {
    case BA_DT_F32: ((float *)d)[i] = (float)v; return;
    case BA_DT_F64: ((double *)d)[i] = v; return;
    case BA_DT_F16: ((uint16_t *)d)[i] = ba_f32_to_f16((float)v); return;
    case BA_DT_BF16: ((uint16_t *)d)[i] = f32_to_bf16((float)v); return;
    case BA_DT_BOOL: ((uint8_t *)d)[i] = v != 0; return;
    default: break;
    }
    int64_t n;
    if (v != v)
        n = 0;
    else if (v >= 9.2e18)
        n = INT64_MAX;
    else if (v <= -9.2e18)
        n = INT64_MIN;
    else
        n = (int64_t)v;
    ba_elem_store_i64(t, i, n);
}

void ba_elem_store_i64(ba_tensor_t *t, int64_t i, int64_t v) {
    void *d = t->data;
    switch (t->dtype) {
    case BA_DT_F32: ((float *)d)[i] = (float)v; break;
    case BA_DT_F64: ((double *)d)[i] = (double)v; break;
    case BA_DT_F16: ((uint16_t *)d)[i] = ba_f32_to_f16((float)v); break;
    case BA_DT_BF16: ((uint16_t *)d)[i] = f32_to_bf16((float)v); break;
    case BA_DT_I64: ((int64_t *)d)[i] = v; break;
    case BA_DT_I32: ((int32_t *)d)[i] = (int32_t)v; break;
    case BA_DT_I16: ((int16_t *)d)[i] = (int16_t)v; break;
    case BA_DT_I8: ((int8_t *)d)[i] = (int8_t)v; break;
    case BA_DT_U64: ((uint64_t *)d)[i] = (uint64_t)v; break;
    case BA_DT_U32: ((uint32_t *)d)[i] = (uint32_t)v; break;
    case BA_DT_U16: ((uint16_t *)d)[i] = (uint16_t)v; break;
    case BA_DT_U8: ((uint8_t *)d)[i] = (uint8_t)v; break;
    case BA_DT_BOOL: ((uint8_t *)d)[i] = v != 0; break;
    default: break;
    }
}
