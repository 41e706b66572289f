/* Backward of the data-movement ops: reshapes (a view of dY, no copy),
 * Transpose, Concat/Split, Slice (scatter), Gather (scatter-add over the
 * indices: embeddings), Expand (sum over the broadcast axes), Tile and Pad
 * (scatter-add through an element map), Resize/Upsample in every mode (the
 * forward's taps transposed). Shape-only ops (Shape, Size, ConstantOfShape,
 * Range …) pass no gradient. */
#include <math.h>
#include <string.h>

#include "model/broadcast.h"
#include "model/grad_internal.h"
#include "model/ops.h"

/* Reshape, Flatten, Squeeze, Unsqueeze, Identity-like: same data order. */
ba_status ba_reshape_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                              int nout, ba_tensor_t *const *dout, const unsigned char *need,
                              ba_tensor_t **din, ba_error *err) {
    (void)n;
    (void)nin;
    (void)out;
    (void)nout;
    if (!need[0]) return BA_OK;
    return ba_grad_pass(din, 0, in[0], dout[0], err);
}

/* Y = transpose(X, perm): Y.shape[i] = X.shape[perm[i]]. */
ba_status ba_transpose_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                                int nout, ba_tensor_t *const *dout, const unsigned char *need,
                                ba_tensor_t **din, ba_error *err) {
    (void)nin;
    (void)nout;
    if (!need[0]) return BA_OK;
    const ba_tensor_t *X = in[0], *Y = out[0];
    const int r = X->ndim;
    int64_t perm[BA_MAX_DIMS], xst[BA_MAX_DIMS], ys[BA_MAX_DIMS];
    const int64_t *p = NULL;
    int np = ba_node_attr_ints(n, "perm", &p);
    for (int i = 0; i < r; i++) perm[i] = np == r ? p[i] : r - 1 - i;
    float *dx = ba_grad_slot(din, 0, X, err);
    if (!dx) return err->code;
    ba_shape_strides(r, X->shape, xst);
    for (int i = 0; i < r; i++) ys[i] = xst[perm[i]]; /* X stride along Y's dim i */
    const float *g = dout[0]->data;
    if (r == 0) {
        dx[0] += g[0];
        return BA_OK;
    }
    const int64_t row = Y->shape[r - 1], rs = ys[r - 1];
    int64_t idx[BA_MAX_DIMS] = {0}, off = 0;
    for (int64_t e = 0; e < Y->numel; e += row) {
        for (int64_t k = 0; k < row; k++) dx[off + k * rs] += g[e + k];
        for (int i = r - 2; i >= 0; i--) {
            idx[i]++;
            off += ys[i];
            if (idx[i] < Y->shape[i]) break;
            off -= ys[i] * idx[i];
            idx[i] = 0;
        }
    }
    return BA_OK;
}

static int norm_axis(int64_t a, int r) {
    return (int)(a < 0 ? a + r : a);
}

/* The product of t's dims before axis ax (outer) and after it (inner). */
static void around_axis(const ba_tensor_t *t, int ax, int64_t *outer, int64_t *inner) {
    *outer = *inner = 1;
    for (int d = 0; d < ax; d++) *outer *= t->shape[d];
    for (int d = ax + 1; d < t->ndim; d++) *inner *= t->shape[d];
}

/* Y = concat(X_0 … X_k, axis). */
ba_status ba_concat_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                             int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                             ba_error *err) {
    (void)nout;
    const ba_tensor_t *Y = out[0];
    const int ax = norm_axis(ba_node_attr_int(n, "axis", 0), Y->ndim);
    int64_t outer, inner;
    around_axis(Y, ax, &outer, &inner);
    const int64_t yrow = Y->shape[ax] * inner;
    const float *g = dout[0]->data;
    int64_t off = 0;
    for (int i = 0; i < nin; i++) {
        if (!in[i]) continue;
        const int64_t len = (in[i]->ndim ? in[i]->shape[ax] : 1) * inner;
        if (need[i]) {
            float *dx = ba_grad_slot(din, i, in[i], err);
            if (!dx) return err->code;
            for (int64_t o = 0; o < outer; o++)
                for (int64_t k = 0; k < len; k++) dx[o * len + k] += g[o * yrow + off + k];
        }
        off += len;
    }
    return BA_OK;
}

/* Y_0 … Y_k = split(X, axis): dX is the concat of the dY_j (missing = 0). */
ba_status ba_split_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                            int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                            ba_error *err) {
    (void)nin;
    if (!need[0]) return BA_OK;
    const ba_tensor_t *X = in[0];
    const int ax = norm_axis(ba_node_attr_int(n, "axis", 0), X->ndim);
    int64_t outer, inner;
    around_axis(X, ax, &outer, &inner);
    const int64_t xrow = X->shape[ax] * inner;
    float *dx = ba_grad_slot(din, 0, X, err);
    if (!dx) return err->code;
    int64_t off = 0;
    for (int j = 0; j < nout; j++) {
        if (!out[j]) continue;
        const int64_t len = out[j]->shape[ax] * inner;
        if (dout[j]) {
            const float *g = dout[j]->data;
            for (int64_t o = 0; o < outer; o++)
                for (int64_t k = 0; k < len; k++) dx[o * xrow + off + k] += g[o * len + k];
        }
        off += len;
    }
    return BA_OK;
}

/* Slice: the same start/step normalisation as the forward (ONNX Slice-13),
 * then dY scattered into a zero dX. */
ba_status ba_slice_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                            int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                            ba_error *err) {
    (void)nout;
    if (!need[0]) return BA_OK;
    const ba_tensor_t *X = in[0], *Y = out[0];
    const int r = X->ndim;
    int64_t starts[BA_MAX_DIMS], axes[BA_MAX_DIMS], steps[BA_MAX_DIMS];
    int ns = 0, na = 0, nst = 0;
    if (n->opset < 10) {
        const int64_t *v;
        ns = ba_node_attr_ints(n, "starts", &v);
        for (int i = 0; i < ns && i < BA_MAX_DIMS; i++) starts[i] = v[i];
        na = ba_node_attr_ints(n, "axes", &v);
        for (int i = 0; i < na && i < BA_MAX_DIMS; i++) axes[i] = v[i];
    } else {
        ns = (int)in[1]->numel;
        for (int i = 0; i < ns && i < BA_MAX_DIMS; i++) starts[i] = ba_tensor_get_i64(in[1], i);
        if (nin > 3 && in[3]) {
            na = (int)in[3]->numel;
            for (int i = 0; i < na && i < BA_MAX_DIMS; i++) axes[i] = ba_tensor_get_i64(in[3], i);
        }
        if (nin > 4 && in[4]) {
            nst = (int)in[4]->numel;
            for (int i = 0; i < nst && i < BA_MAX_DIMS; i++) steps[i] = ba_tensor_get_i64(in[4], i);
        }
    }
    if (ns > BA_MAX_DIMS) return ba_error_set(err, BA_ERR_INPUT, "%s (Slice): too many starts", n->name);
    int64_t b[BA_MAX_DIMS], step[BA_MAX_DIMS];
    for (int d = 0; d < r; d++) {
        b[d] = 0;
        step[d] = 1;
    }
    for (int i = 0; i < ns; i++) {
        int a = norm_axis(na ? axes[i] : i, r);
        int64_t dim = X->shape[a], s = starts[i], k = nst ? steps[i] : 1;
        if (s < 0) s += dim;
        if (k > 0)
            s = s < 0 ? 0 : s > dim ? dim : s;
        else
            s = s < 0 ? -1 : s > dim - 1 ? dim - 1 : s;
        b[a] = Y->shape[a] ? s : 0;
        step[a] = k;
    }
    float *dx = ba_grad_slot(din, 0, X, err);
    if (!dx) return err->code;
    if (Y->numel == 0) return BA_OK;
    int64_t xst[BA_MAX_DIMS], st[BA_MAX_DIMS], off0 = 0;
    ba_shape_strides(r, X->shape, xst);
    for (int d = 0; d < r; d++) {
        off0 += b[d] * xst[d];
        st[d] = xst[d] * step[d];
    }
    const float *g = dout[0]->data;
    int64_t idx[BA_MAX_DIMS] = {0}, off = off0;
    for (int64_t e = 0; e < Y->numel; e++) {
        dx[off] += g[e];
        for (int i = r - 1; i >= 0; i--) {
            idx[i]++;
            off += st[i];
            if (idx[i] < Y->shape[i]) break;
            off -= st[i] * idx[i];
            idx[i] = 0;
        }
    }
    return BA_OK;
}

/* Y = gather(X, I, axis): dX[.., I[j], ..] += dY[.., j, ..]. */
ba_status ba_gather_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                             int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                             ba_error *err) {
    (void)nin;
    (void)out;
    (void)nout;
    if (!need[0]) return BA_OK;
    const ba_tensor_t *X = in[0], *I = in[1];
    const int ax = norm_axis(ba_node_attr_int(n, "axis", 0), X->ndim);
    int64_t outer, inner;
    around_axis(X, ax, &outer, &inner);
    const int64_t dim = X->shape[ax], ni = I->numel;
    float *dx = ba_grad_slot(din, 0, X, err);
    if (!dx) return err->code;
    const float *g = dout[0]->data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < ni; j++) {
            int64_t k = ba_tensor_get_i64(I, j);
            if (k < 0) k += dim;
            if (k < 0 || k >= dim)
                return ba_error_set(err, BA_ERR_INPUT, "%s (Gather): index %lld out of range", n->name,
                                    (long long)k);
            float *d = dx + (o * dim + k) * inner;
            const float *s = g + (o * ni + j) * inner;
            for (int64_t q = 0; q < inner; q++) d[q] += s[q];
        }
    return BA_OK;
}

/* Expand: dX = dY summed over the broadcast axes. */
ba_status ba_expand_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                             int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                             ba_error *err) {
    (void)n;
    (void)nin;
    (void)nout;
    if (!need[0]) return BA_OK;
    float *dx = ba_grad_slot(din, 0, in[0], err);
    if (!dx) return err->code;
    ba_grad_reduce_add(dout[0]->data, out[0]->ndim, out[0]->shape, dx, in[0]->ndim, in[0]->shape, 1.0f);
    return BA_OK;
}

/* Tile and Pad (every mode) copy one input element (or a pad constant) into
 * each output element. The op's own
 * forward, run on the input's 1-based element numbers as float64 (exact to
 * 2^53), gives that map; then dX[src] += dY. 0 marks "no source" (pads). */
#define MAP_MAX_EXACT 9007199254740992.0 /* 2^53 */
ba_status ba_index_map_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                                int nout, ba_tensor_t *const *dout, const unsigned char *need,
                                ba_tensor_t **din, ba_error *err) {
    (void)nout;
    if (!need[0]) return BA_OK;
    const ba_tensor_t *X = in[0], *Y = out[0];
    const int pad = !strcmp(n->op_type, "Pad");
    if ((double)X->numel >= MAP_MAX_EXACT || nin > 8)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "node %s (%s): input too large for the backward",
                            n->name, n->op_type);
    if (pad && n->opset < 11) { /* the pad value is an attribute: it must not look like an element number */
        double cv = ba_node_attr_float(n, "value", 0.0f);
        if (cv == floor(cv) && cv >= 1.0 && cv <= (double)X->numel)
            return ba_error_set(err, BA_ERR_UNSUPPORTED, "node %s (Pad): backward with pad value %g", n->name,
                                cv);
    }
    ba_tensor_t *io[8] = {0}, *res[8] = {0}, *idx = ba_tensor_new(BA_DT_F64, X->ndim, X->shape, err),
                *zero = NULL;
    if (!idx) return err->code;
    double *iv = idx->data;
    for (int64_t e = 0; e < X->numel; e++) iv[e] = (double)(e + 1);
    for (int j = 0; j < nin; j++) io[j] = in[j];
    io[0] = idx;
    ba_status st = BA_OK;
    if (pad && nin > 2 && in[2]) { /* constant_value input: pads map to 0 */
        zero = ba_tensor_new(BA_DT_F64, 0, NULL, err);
        if (!zero) st = err->code;
        io[2] = zero;
    }
    if (st == BA_OK && n->nout > 8)
        st = ba_error_set(err, BA_ERR_UNSUPPORTED, "node %s: too many outputs", n->name);
    if (st == BA_OK) st = n->def->forward(n, io, nin, res, n->nout, err);
    const ba_tensor_t *map = res[0];
    if (st == BA_OK && (!map || map->dtype != BA_DT_F64 || map->numel != Y->numel))
        st = ba_error_set(err, BA_ERR_UNSUPPORTED, "node %s (%s): no element map for the backward", n->name,
                          n->op_type);
    float *dx = st == BA_OK ? ba_grad_slot(din, 0, X, err) : NULL;
    if (st == BA_OK && !dx) st = err->code;
    if (st == BA_OK) {
        const double *mv = map->data;
        const float *g = dout[0]->data;
        for (int64_t e = 0; e < Y->numel; e++)
            if (mv[e] >= 1.0) dx[(int64_t)mv[e] - 1] += g[e];
    }
    for (int j = 0; j < n->nout && j < 8; j++) ba_tensor_unref(res[j]);
    ba_tensor_unref(idx);
    ba_tensor_unref(zero);
    return st;
}

/* Resize / Upsample, every mode: Y = ⊗_d A_d · X with A_d the per-axis tap
 * matrices of ba_resize_plan_t (the forward's), so dX = ⊗_d A_dᵀ · dY:
 * each output element's gradient is scattered to its taps' product weights.
 * Extrapolated points (tf_crop_and_resize) pass nothing. X (…), dY (out_shape). */
ba_status ba_resize_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                             int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                             ba_error *err) {
    (void)out;
    (void)nout;
    if (!need[0]) return BA_OK;
    ba_resize_plan_t p;
    BA_TRY(ba_resize_plan_make(n, in, nin, &p, err));
    const ba_tensor_t *dY = dout[0];
    const int r = p.ndim, nt = p.ntaps;
    float *dx = ba_grad_slot(din, 0, in[0], err);
    if (!dx) {
        ba_resize_plan_free(&p);
        return err->code;
    }
    int act[BA_MAX_DIMS], nact = 0;
    for (int d = 0; d < r; d++)
        if (p.changes[d]) act[nact++] = d;
    int64_t ncomb = 1;
    for (int k = 0; k < nact; k++) ncomb *= nt;
    const float *g = dY->data;
    int64_t pos[BA_MAX_DIMS] = {0};
    /* serial: the taps of different outputs overlap */
    for (int64_t e = 0; e < dY->numel; e++, ba_index_next(r, p.out_shape, pos)) {
        int64_t base = 0;
        int outside = 0;
        for (int d = 0; d < r; d++) {
            const int64_t i0 = p.idx[d][pos[d] * nt];
            outside |= i0 < 0;
            base += i0;
        }
        if (outside || g[e] == 0.0f) continue;
        for (int64_t comb = 0; comb < ncomb; comb++) {
            double wt = 1;
            int64_t off = base, cq = comb;
            for (int k = 0; k < nact; k++) {
                const int d = act[k], t = (int)(cq % nt);
                const int64_t at = pos[d] * nt;
                cq /= nt;
                wt *= p.w[d][at + t];
                off += p.idx[d][at + t] - p.idx[d][at];
            }
            if (wt != 0) dx[off] += (float)(wt * g[e]);
        }
    }
    ba_resize_plan_free(&p);
    return BA_OK;
}
