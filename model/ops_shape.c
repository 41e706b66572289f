/* Shape and data-movement kernels (see model/ops.h): views (Reshape, Flatten,
 * Squeeze, Unsqueeze, Identity), copies (Transpose, Concat, Split, Slice,
 * Gather*, Expand, Tile, Pad, Resize), constants and casts. Byte moves work on
 * every fixed-width dtype; each op's attribute/input form follows node->opset. */
#include "model/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/broadcast.h"

#define MAX_STRIDED_DIMS (2 * BA_MAX_DIMS) /* Tile walks a (repeat, dim) pair per axis */
#define PAR_MIN 32768                      /* elements below which threads cost more than they save */

ba_status ba_op_need_inputs(const ba_node_t *n, ba_tensor_t *const *in, int nin, int k, ba_error *err) {
    if (nin < k)
        return ba_error_set(err, BA_ERR_INPUT, "%s (%s): needs %d inputs, has %d", n->name, n->op_type, k,
                            nin);
    for (int i = 0; i < k; i++)
        if (!in[i])
            return ba_error_set(err, BA_ERR_INPUT, "%s (%s): input %d missing", n->name, n->op_type, i);
    return BA_OK;
}

static ba_tensor_t *opt_in(ba_tensor_t *const *in, int nin, int k) {
    return k < nin ? in[k] : NULL;
}

static int wants_output(const ba_node_t *n, int nout, int k) {
    return k < nout && (!n->outputs || n->outputs[k] >= 0);
}

/* Reads a 1-D integer tensor (int32/int64) into v[cap]. */
static ba_status read_ints(const ba_node_t *n, const ba_tensor_t *t, const char *what, int64_t *v, int cap,
                           int *cnt, ba_error *err) {
    if (!ba_dtype_is_int(t->dtype))
        return ba_error_set(err, BA_ERR_INPUT, "%s (%s): %s must be an integer tensor, is %s", n->name,
                            n->op_type, what, ba_dtype_name(t->dtype));
    if (t->ndim > 1 || t->numel > cap)
        return ba_error_set(err, BA_ERR_INPUT, "%s (%s): %s has %lld elements (at most %d, rank <= 1)",
                            n->name, n->op_type, what, (long long)t->numel, cap);
    for (int64_t i = 0; i < t->numel; i++) v[i] = ba_tensor_get_i64(t, i);
    *cnt = (int)t->numel;
    return BA_OK;
}

static ba_status norm_axis(const ba_node_t *n, int64_t axis, int rank, int *out, ba_error *err) {
    *out = 0;
    if (axis < -rank || axis >= rank)
        return ba_error_set(err, BA_ERR_INPUT, "%s (%s): axis %lld out of range for rank %d", n->name,
                            n->op_type, (long long)axis, rank);
    *out = (int)(axis < 0 ? axis + rank : axis);
    return BA_OK;
}

/* dst (contiguous, shape) <- src + sum(idx[d] * strides[d]), element size es. */
static void copy_strided(void *dst, const void *src, int ndim, const int64_t *shape, const int64_t *strides,
                         size_t es) {
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= shape[d];
    if (numel == 0) return;
    if (ndim == 0) {
        memcpy(dst, src, es);
        return;
    }
    int64_t row = shape[ndim - 1], rs = strides[ndim - 1], nrows = numel / row;
#pragma omp parallel for schedule(static) if (numel >= PAR_MIN && nrows > 1)
    for (int64_t r = 0; r < nrows; r++) {
        int64_t off = 0, q = r;
        for (int d = ndim - 2; d >= 0; d--) {
            off += (q % shape[d]) * strides[d];
            q /= shape[d];
        }
        char *o = (char *)dst + (size_t)(r * row) * es;
        const char *s = (const char *)src;
        switch (es) {
        case 1:
            for (int64_t i = 0; i < row; i++) ((uint8_t *)o)[i] = ((const uint8_t *)s)[off + i * rs];
            break;
        case 2:
            for (int64_t i = 0; i < row; i++) ((uint16_t *)o)[i] = ((const uint16_t *)s)[off + i * rs];
            break;
        case 4:
            for (int64_t i = 0; i < row; i++) ((uint32_t *)o)[i] = ((const uint32_t *)s)[off + i * rs];
            break;
        case 8:
            for (int64_t i = 0; i < row; i++) ((uint64_t *)o)[i] = ((const uint64_t *)s)[off + i * rs];
            break;
        default:
            for (int64_t i = 0; i < row; i++) memcpy(o + (size_t)i * es, s + (size_t)(off + i * rs) * es, es);
        }
    }
}

/* out[0] <- a new contiguous tensor of x's dtype and shape (ndim, shape), filled
 * by copy_strided from x's element off over the walk (wdims, wshape, wst). */
static ba_status new_strided(const ba_tensor_t *x, int ndim, const int64_t *shape, int64_t off, int wdims,
                             const int64_t *wshape, const int64_t *wst, ba_tensor_t **out, ba_error *err) {
    ba_tensor_t *o = ba_tensor_new(x->dtype, ndim, shape, err);
    if (!o) return err->code;
    size_t es = ba_dtype_size(x->dtype);
    if (o->numel) copy_strided(o->data, (const char *)x->data + (size_t)off * es, wdims, wshape, wst, es);
    out[0] = o;
    return BA_OK;
}

static ba_status check_dtype(const ba_node_t *n, const ba_tensor_t *t, ba_error *err) {
    if (ba_dtype_size(t->dtype) == 0)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s (%s): dtype %s not supported", n->name, n->op_type,
                            ba_dtype_name(t->dtype));
    return BA_OK;
}

/* The data input of a kernel: ba_op_need_inputs(k), then *x = in[0] of a supported dtype. */
static ba_status data_input(const ba_node_t *n, ba_tensor_t *const *in, int nin, int k, ba_tensor_t **x,
                            ba_error *err) {
    BA_TRY(ba_op_need_inputs(n, in, nin, k, err));
    *x = in[0];
    return check_dtype(n, *x, err);
}

/* ---------------------------------------------------------------- views */

static ba_status make_view(const ba_node_t *n, ba_tensor_t *x, int ndim, const int64_t *shape,
                           ba_tensor_t **out, ba_error *err) {
    ba_tensor_t *v = ba_tensor_view(x, ndim, shape, err);
    if (!v) return ba_error_prefix(err, "%s (%s)", n->name, n->op_type);
    *out = v;
    return BA_OK;
}

ba_status ba_fwd_identity(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                          ba_error *err) {
    BA_TRY(ba_op_need_inputs(n, in, nin, 1, err));
    BA_TRY(make_view(n, in[0], in[0]->ndim, in[0]->shape, &out[0], err));
    if (strcmp(n->op_type, "Dropout") == 0 && wants_output(n, nout, 1)) {
        /* Inference: nothing is dropped, so every mask entry is true. */
        ba_tensor_t *m = ba_tensor_new(BA_DT_BOOL, in[0]->ndim, in[0]->shape, err);
        if (!m) {
            ba_tensor_unref(out[0]);
            out[0] = NULL;
            return err->code;
        }
        memset(m->data, 1, (size_t)m->numel);
        out[1] = m;
    }
    return BA_OK;
}

ba_status ba_fwd_flatten(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                         ba_error *err) {
    (void)nout;
    BA_TRY(ba_op_need_inputs(n, in, nin, 1, err));
    ba_tensor_t *x = in[0];
    int64_t axis = ba_node_attr_int(n, "axis", 1);
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis > x->ndim)
        return ba_error_set(err, BA_ERR_INPUT, "%s (Flatten): axis %lld out of range for rank %d", n->name,
                            (long long)ba_node_attr_int(n, "axis", 1), x->ndim);
    int64_t shape[2] = {ba_shape_numel((int)axis, x->shape),
                        ba_shape_numel(x->ndim - (int)axis, x->shape + axis)};
    return make_view(n, x, 2, shape, &out[0], err);
}

ba_status ba_fwd_reshape(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                         ba_error *err) {
    (void)nout;
    BA_TRY(ba_op_need_inputs(n, in, nin, 2, err));
    ba_tensor_t *x = in[0];
    int64_t shape[BA_MAX_DIMS];
    int nd;
    BA_TRY(read_ints(n, in[1], "shape", shape, BA_MAX_DIMS, &nd, err));
    int allowzero = n->opset >= 14 && ba_node_attr_int(n, "allowzero", 0);
    int infer = -1;
    int64_t known = 1;
    for (int d = 0; d < nd; d++) {
        if (shape[d] == 0 && !allowzero) {
            if (d >= x->ndim)
                return ba_error_set(err, BA_ERR_INPUT, "%s (Reshape): 0 at position %d but input has rank %d",
                                    n->name, d, x->ndim);
            shape[d] = x->shape[d];
        }
        if (shape[d] == -1) {
            if (infer >= 0)
                return ba_error_set(err, BA_ERR_INPUT, "%s (Reshape): more than one -1 in shape", n->name);
            infer = d;
            continue;
        }
        if (shape[d] < 0)
            return ba_error_set(err, BA_ERR_INPUT, "%s (Reshape): negative dimension %lld", n->name,
                                (long long)shape[d]);
        if (__builtin_mul_overflow(known, shape[d], &known))
            return ba_error_set(err, BA_ERR_INPUT, "%s (Reshape): shape overflows", n->name);
    }
    if (infer >= 0) {
        if (known == 0 || x->numel % known != 0) {
            char b1[200];
            return ba_error_set(err, BA_ERR_INPUT,
                                "%s (Reshape): cannot infer -1 reshaping %s (%lld elements)", n->name,
                                ba_shape_str(x->ndim, x->shape, b1, sizeof b1), (long long)x->numel);
        }
        shape[infer] = x->numel / known;
    }
    if (ba_shape_numel(nd, shape) != x->numel) {
        char b1[200], b2[200];
        return ba_error_set(err, BA_ERR_INPUT, "%s (Reshape): cannot reshape %s to %s", n->name,
                            ba_shape_str(x->ndim, x->shape, b1, sizeof b1),
                            ba_shape_str(nd, shape, b2, sizeof b2));
    }
    return make_view(n, x, nd, shape, &out[0], err);
}

/* Squeeze/Unsqueeze axes: attribute before opset 13, input from 13. */
static ba_status get_axes(const ba_node_t *n, ba_tensor_t *const *in, int nin, int opset_input, int idx,
                          int64_t *axes, int *cnt, int *given, ba_error *err) {
    *cnt = 0;
    *given = 0;
    if (n->opset >= opset_input) {
        ba_tensor_t *t = opt_in(in, nin, idx);
        if (!t) return BA_OK;
        *given = 1;
        return read_ints(n, t, "axes", axes, 2 * BA_MAX_DIMS, cnt, err);
    }
    const int64_t *v;
    int k = ba_node_attr_ints(n, "axes", &v);
    if (!ba_node_attr(n, "axes")) return BA_OK;
    if (k > 2 * BA_MAX_DIMS)
        return ba_error_set(err, BA_ERR_INPUT, "%s (%s): %d axes", n->name, n->op_type, k);
    *given = 1;
    for (int i = 0; i < k; i++) axes[i] = v[i];
    *cnt = k;
    return BA_OK;
}

ba_status ba_fwd_squeeze(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                         ba_error *err) {
    (void)nout;
    BA_TRY(ba_op_need_inputs(n, in, nin, 1, err));
    ba_tensor_t *x = in[0];
    int64_t axes[2 * BA_MAX_DIMS];
    int cnt, given;
    BA_TRY(get_axes(n, in, nin, 13, 1, axes, &cnt, &given, err));
    int drop[BA_MAX_DIMS] = {0};
    if (cnt == 0) {
        for (int d = 0; d < x->ndim; d++) drop[d] = x->shape[d] == 1;
    } else {
        for (int i = 0; i < cnt; i++) {
            int a;
            BA_TRY(norm_axis(n, axes[i], x->ndim, &a, err));
            if (x->shape[a] != 1)
                return ba_error_set(err, BA_ERR_INPUT, "%s (Squeeze): axis %d has size %lld, not 1", n->name,
                                    a, (long long)x->shape[a]);
            drop[a] = 1;
        }
    }
    int64_t shape[BA_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < x->ndim; d++)
        if (!drop[d]) shape[nd++] = x->shape[d];
    return make_view(n, x, nd, shape, &out[0], err);
}

ba_status ba_fwd_unsqueeze(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                           ba_error *err) {
    (void)nout;
    BA_TRY(ba_op_need_inputs(n, in, nin, 1, err));
    ba_tensor_t *x = in[0];
    int64_t axes[2 * BA_MAX_DIMS];
    int cnt, given;
    BA_TRY(get_axes(n, in, nin, 13, 1, axes, &cnt, &given, err));
    if (!given) return ba_error_set(err, BA_ERR_INPUT, "%s (Unsqueeze): axes missing", n->name);
    int r = x->ndim + cnt;
    if (r > BA_MAX_DIMS)
        return ba_error_set(err, BA_ERR_INPUT, "%s (Unsqueeze): rank %d too large", n->name, r);
    int ins[BA_MAX_DIMS] = {0};
    for (int i = 0; i < cnt; i++) {
        int a;
        BA_TRY(norm_axis(n, axes[i], r, &a, err));
        if (ins[a]) return ba_error_set(err, BA_ERR_INPUT, "%s (Unsqueeze): axis %d repeated", n->name, a);
        ins[a] = 1;
    }
    int64_t shape[BA_MAX_DIMS];
    for (int d = 0, k = 0; d < r; d++) shape[d] = ins[d] ? 1 : x->shape[k++];
    return make_view(n, x, r, shape, &out[0], err);
}

/* ---------------------------------------------------------------- copies */

ba_status ba_fwd_transpose(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                           ba_error *err) {
    (void)nout;
    ba_tensor_t *x;
    BA_TRY(data_input(n, in, nin, 1, &x, err));
    int r = x->ndim, perm[BA_MAX_DIMS], seen[BA_MAX_DIMS] = {0};
    const int64_t *p;
    int k = ba_node_attr_ints(n, "perm", &p);
    if (ba_node_attr(n, "perm") && k != r)
        return ba_error_set(err, BA_ERR_INPUT, "%s (Transpose): perm has %d entries for rank %d", n->name, k,
                            r);
    for (int d = 0; d < r; d++) {
        int64_t v = ba_node_attr(n, "perm") ? p[d] : r - 1 - d;
        if (v < 0) v += r;
        if (v < 0 || v >= r || seen[v])
            return ba_error_set(err, BA_ERR_INPUT, "%s (Transpose): perm is not a permutation of 0..%d",
                                n->name, r - 1);
        seen[v] = 1;
        perm[d] = (int)v;
    }
    int64_t shape[BA_MAX_DIMS], st[BA_MAX_DIMS], pst[BA_MAX_DIMS];
    ba_shape_strides(r, x->shape, st);
    for (int d = 0; d < r; d++) {
        shape[d] = x->shape[perm[d]];
        pst[d] = st[perm[d]];
    }
    return new_strided(x, r, shape, 0, r, shape, pst, out, err);
}

ba_status ba_fwd_concat(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                        ba_error *err) {
    (void)nout;
    if (nin < 1) return ba_error_set(err, BA_ERR_INPUT, "%s (Concat): no inputs", n->name);
    BA_TRY(ba_op_need_inputs(n, in, nin, nin, err));
    ba_tensor_t *x0 = in[0];
    BA_TRY(check_dtype(n, x0, err));
    int axis;
    if (!ba_node_attr(n, "axis"))
        return ba_error_set(err, BA_ERR_INPUT, "%s (Concat): axis missing", n->name);
    BA_TRY(norm_axis(n, ba_node_attr_int(n, "axis", 0), x0->ndim, &axis, err));
    int64_t shape[BA_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[axis] = 0;
    for (int k = 0; k < nin; k++) {
        if (in[k]->ndim != x0->ndim || in[k]->dtype != x0->dtype)
            return ba_error_set(err, BA_ERR_INPUT,
                                "%s (Concat): input %d is %s rank %d, input 0 is %s rank %d", n->name, k,
                                ba_dtype_name(in[k]->dtype), in[k]->ndim, ba_dtype_name(x0->dtype), x0->ndim);
        for (int d = 0; d < x0->ndim; d++)
            if (d != axis && in[k]->shape[d] != x0->shape[d])
                return ba_error_set(err, BA_ERR_INPUT,
                                    "%s (Concat): input %d has size %lld on axis %d, expected %lld", n->name,
                                    k, (long long)in[k]->shape[d], d, (long long)x0->shape[d]);
        shape[axis] += in[k]->shape[axis];
    }
    ba_tensor_t *o = ba_tensor_new(x0->dtype, x0->ndim, shape, err);
    if (!o) return err->code;
    size_t es = ba_dtype_size(x0->dtype);
    int64_t outer = ba_shape_numel(axis, shape),
            inner = ba_shape_numel(x0->ndim - axis - 1, shape + axis + 1);
    char *dst = o->data;
    for (int64_t i = 0; i < outer; i++)
        for (int k = 0; k < nin; k++) {
            size_t blk = (size_t)(in[k]->shape[axis] * inner) * es;
            if (blk) memcpy(dst, (const char *)in[k]->data + (size_t)i * blk, blk);
            dst += blk;
        }
    out[0] = o;
    return BA_OK;
}

ba_status ba_fwd_split(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                       ba_error *err) {
    ba_tensor_t *x;
    BA_TRY(data_input(n, in, nin, 1, &x, err));
    int axis;
    BA_TRY(norm_axis(n, ba_node_attr_int(n, "axis", 0), x->ndim, &axis, err));
    if (nout < 1) return ba_error_set(err, BA_ERR_INPUT, "%s (Split): no outputs", n->name);
    int64_t *sizes = ba_calloc((size_t)nout, sizeof *sizes, err);
    if (!sizes) return err->code;
    int cnt = 0;
    ba_status st = BA_OK;
    int64_t dim = x->shape[axis];
    ba_tensor_t *sp = n->opset >= 13 ? opt_in(in, nin, 1) : NULL;
    const int64_t *av;
    int na = n->opset < 13 ? ba_node_attr_ints(n, "split", &av) : 0;
    if (sp) {
        if (!ba_dtype_is_int(sp->dtype) || sp->numel != nout) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s (Split): split input has %lld entries for %d outputs",
                              n->name, (long long)sp->numel, nout);
            goto done;
        }
        for (int i = 0; i < nout; i++) sizes[i] = ba_tensor_get_i64(sp, i);
        cnt = nout;
    } else if (na > 0) {
        if (na != nout) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s (Split): split has %d entries for %d outputs", n->name,
                              na, nout);
            goto done;
        }
        for (int i = 0; i < nout; i++) sizes[i] = av[i];
        cnt = nout;
    } else {
        /* Equal parts; opset 18 num_outputs makes the last part the smaller one. */
        int64_t parts = n->opset >= 18 ? ba_node_attr_int(n, "num_outputs", nout) : nout;
        if (parts != nout) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s (Split): num_outputs %lld but %d outputs", n->name,
                              (long long)parts, nout);
            goto done;
        }
        int64_t chunk = (dim + nout - 1) / nout;
        if (n->opset < 18 && dim % nout) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s (Split): axis size %lld not divisible into %d parts",
                              n->name, (long long)dim, nout);
            goto done;
        }
        for (int i = 0; i < nout; i++) {
            int64_t rem = dim - chunk * i;
            sizes[i] = rem < 0 ? 0 : rem < chunk ? rem : chunk;
        }
        cnt = nout;
    }
    int64_t total = 0;
    for (int i = 0; i < cnt; i++) {
        if (sizes[i] < 0) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s (Split): negative part size", n->name);
            goto done;
        }
        total += sizes[i];
    }
    if (total != dim) {
        st = ba_error_set(err, BA_ERR_INPUT, "%s (Split): parts sum to %lld, axis has %lld", n->name,
                          (long long)total, (long long)dim);
        goto done;
    }
    size_t es = ba_dtype_size(x->dtype);
    int64_t outer = ba_shape_numel(axis, x->shape),
            inner = ba_shape_numel(x->ndim - axis - 1, x->shape + axis + 1);
    int64_t start = 0;
    for (int i = 0; i < nout; i++) {
        int64_t shape[BA_MAX_DIMS];
        memcpy(shape, x->shape, sizeof shape);
        shape[axis] = sizes[i];
        ba_tensor_t *o = ba_tensor_new(x->dtype, x->ndim, shape, err);
        if (!o) {
            st = err->code;
            for (int j = 0; j < i; j++) {
                ba_tensor_unref(out[j]);
                out[j] = NULL;
            }
            goto done;
        }
        size_t blk = (size_t)(sizes[i] * inner) * es, row = (size_t)(dim * inner) * es;
        for (int64_t r = 0; r < outer && blk; r++)
            memcpy((char *)o->data + (size_t)r * blk,
                   (const char *)x->data + (size_t)r * row + (size_t)(start * inner) * es, blk);
        start += sizes[i];
        out[i] = o;
    }
done:
    free(sizes);
    return st;
}

ba_status ba_fwd_slice(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                       ba_error *err) {
    (void)nout;
    ba_tensor_t *x;
    BA_TRY(data_input(n, in, nin, 1, &x, err));
    int r = x->ndim;
    int64_t starts[BA_MAX_DIMS], ends[BA_MAX_DIMS], axes[BA_MAX_DIMS], steps[BA_MAX_DIMS];
    int ns = 0, ne = 0, na = 0, nst = 0;
    if (n->opset < 10) {
        const int64_t *v;
        ns = ba_node_attr_ints(n, "starts", &v);
        if (ns > BA_MAX_DIMS) return ba_error_set(err, BA_ERR_INPUT, "%s (Slice): too many starts", n->name);
        if (ns) memcpy(starts, v, sizeof(int64_t) * (size_t)ns);
        ne = ba_node_attr_ints(n, "ends", &v);
        if (ne > BA_MAX_DIMS) return ba_error_set(err, BA_ERR_INPUT, "%s (Slice): too many ends", n->name);
        if (ne) memcpy(ends, v, sizeof(int64_t) * (size_t)ne);
        na = ba_node_attr_ints(n, "axes", &v);
        if (na > BA_MAX_DIMS) return ba_error_set(err, BA_ERR_INPUT, "%s (Slice): too many axes", n->name);
        if (na) memcpy(axes, v, sizeof(int64_t) * (size_t)na);
    } else {
        BA_TRY(ba_op_need_inputs(n, in, nin, 3, err));
        BA_TRY(read_ints(n, in[1], "starts", starts, BA_MAX_DIMS, &ns, err));
        BA_TRY(read_ints(n, in[2], "ends", ends, BA_MAX_DIMS, &ne, err));
        if (opt_in(in, nin, 3)) BA_TRY(read_ints(n, in[3], "axes", axes, BA_MAX_DIMS, &na, err));
        if (opt_in(in, nin, 4)) BA_TRY(read_ints(n, in[4], "steps", steps, BA_MAX_DIMS, &nst, err));
    }
    if (ne != ns || (na && na != ns) || (nst && nst != ns))
        return ba_error_set(err, BA_ERR_INPUT, "%s (Slice): starts/ends/axes/steps lengths differ", n->name);
    int64_t st0[BA_MAX_DIMS], b[BA_MAX_DIMS], step[BA_MAX_DIMS], shape[BA_MAX_DIMS];
    int seen[BA_MAX_DIMS] = {0};
    for (int d = 0; d < r; d++) {
        b[d] = 0;
        step[d] = 1;
        shape[d] = x->shape[d];
    }
    for (int i = 0; i < ns; i++) {
        int a;
        BA_TRY(norm_axis(n, na ? axes[i] : i, r, &a, err));
        if (seen[a]) return ba_error_set(err, BA_ERR_INPUT, "%s (Slice): axis %d repeated", n->name, a);
        seen[a] = 1;
        int64_t dim = x->shape[a], s = starts[i], e = ends[i], k = nst ? steps[i] : 1;
        if (k == 0) return ba_error_set(err, BA_ERR_INPUT, "%s (Slice): step 0 on axis %d", n->name, a);
        if (s < 0) s += dim;
        if (e < 0 && e > INT64_MIN / 2) e += dim; /* INT64_MIN-ish ends mean "to the front" */
        if (k > 0) {
            s = s < 0 ? 0 : s > dim ? dim : s;
            e = e < 0 ? 0 : e > dim ? dim : e;
        } else {
            s = s < 0 ? -1 : s > dim - 1 ? dim - 1 : s;
            e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
        }
        if (k < -INT64_MAX) k = -INT64_MAX;
        shape[a] = k > 0 ? (e > s ? (e - s - 1) / k + 1 : 0) : (s > e ? (s - e - 1) / (-k) + 1 : 0);
        b[a] = shape[a] ? s : 0;
        step[a] = k;
    }
    ba_shape_strides(r, x->shape, st0);
    int64_t off = 0, strides[BA_MAX_DIMS];
    for (int d = 0; d < r; d++) {
        off += b[d] * st0[d];
        strides[d] = st0[d] * step[d];
    }
    return new_strided(x, r, shape, off, r, shape, strides, out, err);
}

ba_status ba_fwd_gather(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                        ba_error *err) {
    (void)nout;
    ba_tensor_t *x;
    BA_TRY(data_input(n, in, nin, 2, &x, err));
    ba_tensor_t *idx = in[1];
    if (idx->dtype != BA_DT_I64 && idx->dtype != BA_DT_I32)
        return ba_error_set(err, BA_ERR_INPUT, "%s (Gather): indices are %s, not int32/int64", n->name,
                            ba_dtype_name(idx->dtype));
    int axis;
    BA_TRY(norm_axis(n, ba_node_attr_int(n, "axis", 0), x->ndim, &axis, err));
    int r = x->ndim - 1 + idx->ndim;
    if (r > BA_MAX_DIMS)
        return ba_error_set(err, BA_ERR_INPUT, "%s (Gather): output rank %d too large", n->name, r);
    int64_t shape[BA_MAX_DIMS];
    int k = 0;
    for (int d = 0; d < axis; d++) shape[k++] = x->shape[d];
    for (int d = 0; d < idx->ndim; d++) shape[k++] = idx->shape[d];
    for (int d = axis + 1; d < x->ndim; d++) shape[k++] = x->shape[d];
    int64_t dim = x->shape[axis];
    for (int64_t i = 0; i < idx->numel; i++) {
        int64_t v = ba_tensor_get_i64(idx, i);
        if (v < -dim || v >= dim)
            return ba_error_set(err, BA_ERR_INPUT, "%s (Gather): index %lld out of range [-%lld, %lld)",
                                n->name, (long long)v, (long long)dim, (long long)dim);
    }
    ba_tensor_t *o = ba_tensor_new(x->dtype, r, shape, err);
    if (!o) return err->code;
    size_t es = ba_dtype_size(x->dtype);
    int64_t outer = ba_shape_numel(axis, x->shape),
            inner = ba_shape_numel(x->ndim - axis - 1, x->shape + axis + 1);
    size_t blk = (size_t)inner * es;
    int64_t ni = idx->numel;
#pragma omp parallel for schedule(static) if (o->numel >= PAR_MIN)
    for (int64_t t = 0; t < outer * ni; t++) {
        int64_t i = t / ni, j = t % ni, v = ba_tensor_get_i64(idx, j);
        if (v < 0) v += dim;
        memcpy((char *)o->data + (size_t)t * blk, (const char *)x->data + (size_t)(i * dim + v) * blk, blk);
    }
    out[0] = o;
    return BA_OK;
}

ba_status ba_fwd_gather_elements(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out,
                                 int nout, ba_error *err) {
    (void)nout;
    ba_tensor_t *x;
    BA_TRY(data_input(n, in, nin, 2, &x, err));
    ba_tensor_t *idx = in[1];
    if (!ba_dtype_is_int(idx->dtype) || idx->ndim != x->ndim)
        return ba_error_set(err, BA_ERR_INPUT, "%s (GatherElements): indices must be integer of rank %d",
                            n->name, x->ndim);
    int axis;
    BA_TRY(norm_axis(n, ba_node_attr_int(n, "axis", 0), x->ndim, &axis, err));
    for (int d = 0; d < x->ndim; d++)
        if (d != axis && idx->shape[d] > x->shape[d])
            return ba_error_set(err, BA_ERR_INPUT, "%s (GatherElements): indices dim %d exceeds data's",
                                n->name, d);
    ba_tensor_t *o = ba_tensor_new(x->dtype, idx->ndim, idx->shape, err);
    if (!o) return err->code;
    int64_t st[BA_MAX_DIMS], pos[BA_MAX_DIMS] = {0}, dim = x->shape[axis];
    ba_shape_strides(x->ndim, x->shape, st);
    size_t es = ba_dtype_size(x->dtype);
    for (int64_t i = 0; i < idx->numel; i++) {
        int64_t v = ba_tensor_get_i64(idx, i);
        if (v < 0) v += dim;
        if (v < 0 || v >= dim) {
            ba_tensor_unref(o);
            return ba_error_set(err, BA_ERR_INPUT,
                                "%s (GatherElements): index %lld out of range for size %lld", n->name,
                                (long long)ba_tensor_get_i64(idx, i), (long long)dim);
        }
        int64_t off = 0;
        for (int d = 0; d < x->ndim; d++) off += (d == axis ? v : pos[d]) * st[d];
        memcpy((char *)o->data + (size_t)i * es, (const char *)x->data + (size_t)off * es, es);
        ba_index_next(x->ndim, idx->shape, pos);
    }
    out[0] = o;
    return BA_OK;
}

ba_status ba_fwd_expand(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                        ba_error *err) {
    (void)nout;
    ba_tensor_t *x;
    BA_TRY(data_input(n, in, nin, 2, &x, err));
    int64_t want[BA_MAX_DIMS], shape[BA_MAX_DIMS];
    int nw, r;
    BA_TRY(read_ints(n, in[1], "shape", want, BA_MAX_DIMS, &nw, err));
    BA_TRY(ba_broadcast_shape(x->ndim, x->shape, nw, want, &r, shape, n->name, err));
    int64_t st[BA_MAX_DIMS], bst[BA_MAX_DIMS];
    ba_shape_strides(x->ndim, x->shape, st);
    for (int d = 0; d < r; d++) {
        int dx = d - (r - x->ndim);
        bst[d] = (dx < 0 || x->shape[dx] == 1) ? 0 : st[dx];
    }
    return new_strided(x, r, shape, 0, r, shape, bst, out, err);
}

ba_status ba_fwd_tile(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                      ba_error *err) {
    (void)nout;
    ba_tensor_t *x;
    BA_TRY(data_input(n, in, nin, 2, &x, err));
    int64_t rep[BA_MAX_DIMS];
    int nr;
    BA_TRY(read_ints(n, in[1], "repeats", rep, BA_MAX_DIMS, &nr, err));
    if (nr != x->ndim)
        return ba_error_set(err, BA_ERR_INPUT, "%s (Tile): %d repeats for rank %d", n->name, nr, x->ndim);
    /* Output laid out as [rep0, d0, rep1, d1, ...] is exactly the tiled tensor. */
    int64_t shape[BA_MAX_DIMS], wshape[MAX_STRIDED_DIMS], wst[MAX_STRIDED_DIMS], st[BA_MAX_DIMS];
    ba_shape_strides(x->ndim, x->shape, st);
    for (int d = 0; d < x->ndim; d++) {
        if (rep[d] < 0) return ba_error_set(err, BA_ERR_INPUT, "%s (Tile): negative repeat", n->name);
        shape[d] = x->shape[d] * rep[d];
        wshape[2 * d] = rep[d];
        wst[2 * d] = 0;
        wshape[2 * d + 1] = x->shape[d];
        wst[2 * d + 1] = st[d];
    }
    return new_strided(x, x->ndim, shape, 0, 2 * x->ndim, wshape, wst, out, err);
}

/* ---------------------------------------------------------------- Pad */

enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE, PAD_WRAP };

/* Source index along one axis for output index o (-1: the constant). */
static int64_t pad_src(int mode, int64_t o, int64_t before, int64_t dim) {
    int64_t i = o - before;
    if (i >= 0 && i < dim) return i;
    switch (mode) {
    case PAD_EDGE: return i < 0 ? 0 : dim - 1;
    case PAD_WRAP: return ((i % dim) + dim) % dim;
    case PAD_REFLECT: {
        if (dim == 1) return 0;
        int64_t period = 2 * (dim - 1);
        i = ((i % period) + period) % period;
        return i < dim ? i : period - i;
    }
    default: return -1;
    }
}

ba_status ba_fwd_pad(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                     ba_error *err) {
    (void)nout;
    ba_tensor_t *x;
    BA_TRY(data_input(n, in, nin, 1, &x, err));
    int r = x->ndim;
    const char *ms = ba_node_attr_string(n, "mode", "constant");
    int mode = strcmp(ms, "constant") == 0  ? PAD_CONSTANT
               : strcmp(ms, "reflect") == 0 ? PAD_REFLECT
               : strcmp(ms, "edge") == 0    ? PAD_EDGE
               : strcmp(ms, "wrap") == 0    ? PAD_WRAP
                                            : -1;
    if (mode < 0) return ba_error_set(err, BA_ERR_INPUT, "%s (Pad): unknown mode '%s'", n->name, ms);
    int64_t pads[2 * BA_MAX_DIMS], axes[BA_MAX_DIMS];
    int np = 0, na = 0;
    double cval = 0;
    if (n->opset < 11) {
        const int64_t *v;
        np = ba_node_attr_ints(n, "pads", &v);
        if (np > 2 * BA_MAX_DIMS) return ba_error_set(err, BA_ERR_INPUT, "%s (Pad): too many pads", n->name);
        if (np) memcpy(pads, v, sizeof(int64_t) * (size_t)np);
        cval = ba_node_attr_float(n, "value", 0.0f);
    } else {
        BA_TRY(ba_op_need_inputs(n, in, nin, 2, err));
        BA_TRY(read_ints(n, in[1], "pads", pads, 2 * BA_MAX_DIMS, &np, err));
        ba_tensor_t *cv = opt_in(in, nin, 2);
        if (cv && cv->numel > 0) cval = ba_tensor_get_f64(cv, 0);
        ba_tensor_t *ax = n->opset >= 18 ? opt_in(in, nin, 3) : NULL;
        if (ax) BA_TRY(read_ints(n, ax, "axes", axes, BA_MAX_DIMS, &na, err));
    }
    if (!na) {
        na = r;
        for (int d = 0; d < r; d++) axes[d] = d;
    }
    if (np != 2 * na)
        return ba_error_set(err, BA_ERR_INPUT, "%s (Pad): %d pads for %d axes", n->name, np, na);
    int64_t before[BA_MAX_DIMS] = {0}, after[BA_MAX_DIMS] = {0}, shape[BA_MAX_DIMS];
    for (int i = 0; i < na; i++) {
        int a;
        BA_TRY(norm_axis(n, axes[i], r, &a, err));
        before[a] = pads[i];
        after[a] = pads[na + i];
    }
    for (int d = 0; d < r; d++) {
        shape[d] = x->shape[d] + before[d] + after[d];
        if (shape[d] < 0)
            return ba_error_set(err, BA_ERR_INPUT, "%s (Pad): pads make axis %d negative", n->name, d);
        if (mode != PAD_CONSTANT && x->shape[d] == 0 && shape[d] > 0)
            return ba_error_set(err, BA_ERR_INPUT, "%s (Pad): %s padding of an empty axis", n->name, ms);
    }
    ba_tensor_t *o = ba_tensor_new(x->dtype, r, shape, err);
    if (!o) return err->code;
    int64_t total = 0;
    for (int d = 0; d < r; d++) total += shape[d];
    int64_t *map = ba_malloc(sizeof(int64_t) * (size_t)(total ? total : 1), err);
    if (!map) {
        ba_tensor_unref(o);
        return err->code;
    }
    int64_t *m[BA_MAX_DIMS], st[BA_MAX_DIMS];
    ba_shape_strides(r, x->shape, st);
    int64_t at = 0;
    for (int d = 0; d < r; at += shape[d], d++) {
        m[d] = map + at;
        for (int64_t i = 0; i < shape[d]; i++) {
            int64_t s = pad_src(mode, i, before[d], x->shape[d]);
            m[d][i] = s < 0 ? -1 : s * st[d];
        }
    }
    size_t es = ba_dtype_size(x->dtype);
    /* The fill value in the tensor's dtype. */
    ba_tensor_t *fill = ba_tensor_new(x->dtype, 0, NULL, err);
    if (!fill) {
        free(map);
        ba_tensor_unref(o);
        return err->code;
    }
    ba_elem_store_f64(fill, 0, cval);
    int64_t pos[BA_MAX_DIMS] = {0};
    for (int64_t i = 0; i < o->numel; i++) {
        int64_t off = 0;
        int outside = 0;
        for (int d = 0; d < r; d++) {
            int64_t s = m[d][pos[d]];
            if (s < 0) outside = 1;
            off += s;
        }
        memcpy((char *)o->data + (size_t)i * es,
               outside ? fill->data : (const char *)x->data + (size_t)off * es, es);
        ba_index_next(r, shape, pos);
    }
    ba_tensor_unref(fill);
    free(map);
    out[0] = o;
    return BA_OK;
}

/* ---------------------------------------------------------------- Resize */

enum {
    CT_HALF_PIXEL,
    CT_PYTORCH_HALF_PIXEL,
    CT_ALIGN_CORNERS,
    CT_ASYMMETRIC,
    CT_TF_HALF_PIXEL,
    CT_TF_CROP,
    CT_HALF_PIXEL_SYM
};
enum { NM_ROUND_PREFER_FLOOR, NM_ROUND_PREFER_CEIL, NM_FLOOR, NM_CEIL, NM_SIMPLE };
enum { MODE_NEAREST, MODE_LINEAR, MODE_CUBIC };
/* ONNX Resize's default cubic_coeff_a (also PyTorch's bicubic). */
#define RESIZE_CUBIC_A (-0.75f)

typedef struct {
    int ct, nm, mode, exclude_outside;
    float extrapolation, cubic_a;
} resize_cfg;

/* Input coordinate of output coordinate x along an axis (ONNX Resize docs). */
static double resize_coord(const resize_cfg *c, double x, double scale, int64_t in_len, int64_t out_len,
                           double roi_start, double roi_end) {
    switch (c->ct) {
    case CT_HALF_PIXEL: return (x + 0.5) / scale - 0.5;
    case CT_PYTORCH_HALF_PIXEL: return out_len > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
    case CT_ALIGN_CORNERS: return out_len == 1 ? 0.0 : x * (double)(in_len - 1) / (double)(out_len - 1);
    case CT_TF_HALF_PIXEL: return (x + 0.5) / scale;
    case CT_TF_CROP:
        return out_len > 1
                   ? roi_start * (in_len - 1) + x * (roi_end - roi_start) * (in_len - 1) / (out_len - 1)
                   : 0.5 * (roi_start + roi_end) * (in_len - 1);
    case CT_HALF_PIXEL_SYM: {
        double adj = (double)out_len / (scale * in_len), center = in_len / 2.0, offset = center * (1 - adj);
        return offset + (x + 0.5) / scale - 0.5;
    }
    default: return x / scale;
    }
}

static int64_t nearest_index(int nm, double v, double scale) {
    switch (nm) {
    case NM_ROUND_PREFER_CEIL: return (int64_t)floor(v + 0.5);
    case NM_FLOOR: return (int64_t)floor(v);
    case NM_CEIL: return (int64_t)ceil(v);
    case NM_SIMPLE: return scale < 1 ? (int64_t)ceil(v) : (int64_t)v; /* ORT's Resize-10/Upsample rule */
    default: return v == floor(v) + 0.5 ? (int64_t)floor(v) : (int64_t)floor(v + 0.5);
    }
}

/* Keys' cubic convolution weights of the taps at floor(v) - 1 … floor(v) + 2
 * for r = v - floor(v) (ONNX Resize's cubic_coeffs with coefficient a). */
static void cubic_weights(double r, double a, double *w) {
    const double s = 1.0 - r;
    w[0] = ((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a;
    w[1] = ((a + 2) * r - (a + 3)) * r * r + 1;
    w[2] = ((a + 2) * s - (a + 3)) * s * s + 1;
    w[3] = ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a;
}

/* One axis's taps of output index i: plan->idx[d][i*nt + t] (input offset,
 * index × stride; -1 for an extrapolated tf_crop_and_resize point) with
 * weight plan->w[d][i*nt + t]. Returns whether the value differs from a
 * plain copy of input index i (a fractional weight or another index). */
static int resize_axis_taps(const resize_cfg *c, double v, int64_t len, int64_t stride, double scale, int nt,
                            int64_t *idx, double *w) {
    if (c->ct == CT_TF_CROP && (v < 0 || v > len - 1)) {
        for (int t = 0; t < nt; t++) {
            idx[t] = -1;
            w[t] = 0;
        }
        return 1;
    }
    if (c->mode == MODE_NEAREST) {
        int64_t i0 = nearest_index(c->nm, v, scale);
        i0 = i0 < 0 ? 0 : i0 >= len ? len - 1 : i0;
        idx[0] = i0 * stride;
        w[0] = 1;
        return 0;
    }
    if (c->mode == MODE_LINEAR) {
        v = v < 0 ? 0 : v > len - 1 ? (double)(len - 1) : v;
        int64_t i0 = (int64_t)floor(v), i1 = i0 + 1 < len ? i0 + 1 : len - 1;
        double f = v - (double)i0;
        idx[0] = i0 * stride;
        idx[1] = i1 * stride;
        w[0] = 1 - f;
        w[1] = f;
        return f != 0;
    }
    /* cubic: edge taps repeat the border (or weigh 0, renormalised, with exclude_outside) */
    const double fl = floor(v);
    if (v == fl) { /* on a sample: that sample alone (ONNX's weights 0, 0, 1, 0 there) */
        int64_t j = (int64_t)fl;
        j = j < 0 ? 0 : j >= len ? len - 1 : j;
        for (int t = 0; t < 4; t++) {
            idx[t] = j * stride;
            w[t] = t == 0;
        }
        return 0;
    }
    cubic_weights(v - fl, c->cubic_a, w);
    double sum = 0;
    for (int t = 0; t < 4; t++) {
        int64_t j = (int64_t)fl - 1 + t;
        if (c->exclude_outside && (j < 0 || j >= len)) w[t] = 0;
        sum += w[t];
        j = j < 0 ? 0 : j >= len ? len - 1 : j;
        idx[t] = j * stride;
    }
    if (c->exclude_outside && sum != 0)
        for (int t = 0; t < 4; t++) w[t] /= sum;
    return 1;
}

/* Whether axis d of plan p is a plain copy (each output index i reads input index i alone). */
static int axis_is_copy(const ba_resize_plan_t *p, int d, int64_t stride) {
    for (int64_t i = 0; i < p->out_shape[d]; i++)
        for (int t = 0; t < p->ntaps; t++) {
            int64_t k = i * p->ntaps + t;
            if (t == 0 ? (p->idx[d][k] != i * stride || p->w[d][k] != 1) : p->w[d][k] != 0) return 0;
        }
    return 1;
}

/* Every plane (all leading axes) resized with the row taps of axis r-2 and column taps of axis r-1. */
static void resize_planar(const ba_resize_plan_t *p, const ba_tensor_t *x, ba_tensor_t *o) {
    int r = x->ndim, nt = p->ntaps;
    int64_t oh = o->shape[r - 2], ow = o->shape[r - 1], in_plane = x->shape[r - 2] * x->shape[r - 1];
    int64_t planes = (oh && ow) ? o->numel / (oh * ow) : 0;
    const int64_t *yi = p->idx[r - 2], *xi = p->idx[r - 1];
    const double *yw = p->w[r - 2], *xw = p->w[r - 1];
    size_t es = ba_dtype_size(x->dtype);
#pragma omp parallel for schedule(static) if (o->numel >= PAR_MIN)
    for (int64_t t = 0; t < planes * oh; t++) {
        int64_t pl = t / oh, oy = t % oh;
        if (p->mode == MODE_LINEAR) {
            const float *src = (const float *)x->data + pl * in_plane;
            const float *r0 = src + yi[2 * oy], *r1 = src + yi[2 * oy + 1];
            float wy = (float)yw[2 * oy + 1];
            float *dst = (float *)o->data + t * ow;
            for (int64_t ox = 0; ox < ow; ox++) {
                int64_t x0 = xi[2 * ox], x1 = xi[2 * ox + 1];
                float wx = (float)xw[2 * ox + 1];
                float top = r0[x0] + wx * (r0[x1] - r0[x0]), bot = r1[x0] + wx * (r1[x1] - r1[x0]);
                dst[ox] = top + wy * (bot - top);
            }
        } else if (p->mode == MODE_CUBIC) {
            const float *src = (const float *)x->data + pl * in_plane;
            float *dst = (float *)o->data + t * ow;
            for (int64_t ox = 0; ox < ow; ox++) {
                double acc = 0;
                for (int a = 0; a < nt; a++) {
                    const float *row = src + yi[nt * oy + a];
                    double s = 0;
                    for (int b = 0; b < nt; b++) s += xw[nt * ox + b] * row[xi[nt * ox + b]];
                    acc += yw[nt * oy + a] * s;
                }
                dst[ox] = (float)acc;
            }
        } else {
            const char *src = (const char *)x->data + (size_t)(pl * in_plane + yi[oy]) * es;
            char *dst = (char *)o->data + (size_t)(t * ow) * es;
            if (es == sizeof(float))
                for (int64_t ox = 0; ox < ow; ox++) ((uint32_t *)dst)[ox] = ((const uint32_t *)src)[xi[ox]];
            else
                for (int64_t ox = 0; ox < ow; ox++)
                    memcpy(dst + (size_t)ox * es, src + (size_t)xi[ox] * es, es);
        }
    }
}

static ba_status resize_run(const ba_node_t *n, const ba_resize_plan_t *p, ba_tensor_t *x, ba_tensor_t **out,
                            ba_error *err) {
    int r = x->ndim, nt = p->ntaps;
    if (p->mode != MODE_NEAREST && x->dtype != BA_DT_F32)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s (%s): %s mode on %s", n->name, n->op_type,
                            p->mode == MODE_LINEAR ? "linear" : "cubic", ba_dtype_name(x->dtype));
    BA_TRY(check_dtype(n, x, err));
    ba_tensor_t *o = ba_tensor_new(x->dtype, r, p->out_shape, err);
    if (!o) return err->code;
    int64_t st[BA_MAX_DIMS];
    ba_shape_strides(r, x->shape, st);
    int active[BA_MAX_DIMS], nact = 0;
    for (int d = 0; d < r; d++)
        if (p->changes[d]) active[nact++] = d;
    size_t es = ba_dtype_size(x->dtype);
    /* Fast path: only the last two axes resize (NCHW images), nothing extrapolated. */
    int planar = r >= 2 && !p->extrapolates;
    for (int d = 0; d < r - 2 && planar; d++)
        planar = p->out_shape[d] == x->shape[d] && axis_is_copy(p, d, st[d]);
    if (planar) {
        resize_planar(p, x, o);
        *out = o;
        return BA_OK;
    }
    int64_t row = r ? p->out_shape[r - 1] : 1, nrows = row ? o->numel / row : 0;
    int64_t ncomb = 1; /* tap combinations over the active (interpolated) axes */
    for (int k = 0; k < nact; k++) ncomb *= nt;
#pragma omp parallel for schedule(static) if (o->numel >= PAR_MIN)
    for (int64_t rr = 0; rr < nrows; rr++) {
        int64_t pos[BA_MAX_DIMS], q = rr;
        for (int d = r - 2; d >= 0; d--) {
            pos[d] = q % p->out_shape[d];
            q /= p->out_shape[d];
        }
        for (int64_t j = 0; j < row; j++) {
            int64_t oi = rr * row + j;
            if (r) pos[r - 1] = j;
            int64_t base = 0;
            int outside = 0;
            for (int d = 0; d < r; d++) {
                int64_t i0 = p->idx[d][pos[d] * nt];
                if (i0 < 0) outside = 1;
                base += i0;
            }
            if (outside) {
                ba_elem_store_f64(o, oi, p->extrapolation);
                continue;
            }
            if (p->mode == MODE_NEAREST) {
                memcpy((char *)o->data + (size_t)oi * es, (const char *)x->data + (size_t)base * es, es);
                continue;
            }
            /* Sum over the tap combinations of the active axes (corners for linear). */
            const float *xd = x->data;
            double acc = 0;
            for (int64_t comb = 0; comb < ncomb; comb++) {
                double wt = 1;
                int64_t off = base, cq = comb;
                for (int k = 0; k < nact; k++) {
                    int d = active[k], t = (int)(cq % nt);
                    cq /= nt;
                    const int64_t at = pos[d] * nt;
                    wt *= p->w[d][at + t];
                    off += p->idx[d][at + t] - p->idx[d][at];
                }
                if (wt != 0) acc += wt * xd[off];
            }
            ((float *)o->data)[oi] = (float)acc;
        }
    }
    *out = o;
    return BA_OK;
}

/* Attributes, scales/sizes/roi of a Resize/Upsample node (every opset form) for input x. */
static ba_status resize_params(const ba_node_t *n, ba_tensor_t *const *in, int nin, resize_cfg *c,
                               double *scales, int64_t *oshape, double *roi, ba_error *err) {
    BA_TRY(ba_op_need_inputs(n, in, nin, 1, err));
    ba_tensor_t *x = in[0];
    int r = x->ndim;
    int upsample = strcmp(n->op_type, "Upsample") == 0;
    *c = (resize_cfg){CT_ASYMMETRIC, NM_SIMPLE, MODE_NEAREST, 0, 0, RESIZE_CUBIC_A};
    const char *mode = ba_node_attr_string(n, "mode", "nearest");
    if (strcmp(mode, "linear") == 0 || strcmp(mode, "bilinear") == 0)
        c->mode = MODE_LINEAR;
    else if (strcmp(mode, "cubic") == 0)
        c->mode = MODE_CUBIC;
    else if (strcmp(mode, "nearest") != 0)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s (%s): mode '%s' not supported", n->name, n->op_type,
                            mode);
    ba_tensor_t *scales_t = NULL, *sizes_t = NULL, *roi_t = NULL;
    const float *sattr = NULL;
    int nsattr = 0;
    if (upsample) {
        if (n->opset >= 9) {
            BA_TRY(ba_op_need_inputs(n, in, nin, 2, err));
            scales_t = in[1];
        } else {
            nsattr = ba_node_attr_floats(n, "scales", &sattr);
        }
    } else if (n->opset < 11) {
        BA_TRY(ba_op_need_inputs(n, in, nin, 2, err));
        scales_t = in[1];
    } else {
        const char *ct = ba_node_attr_string(n, "coordinate_transformation_mode", "half_pixel");
        static const char *const cts[] = {
            "half_pixel",          "pytorch_half_pixel",        "align_corners",
            "asymmetric",          "tf_half_pixel_for_nearest", "tf_crop_and_resize",
            "half_pixel_symmetric"};
        c->ct = -1;
        for (int i = 0; i < (int)(sizeof cts / sizeof cts[0]); i++)
            if (strcmp(ct, cts[i]) == 0) c->ct = i;
        if (strcmp(ct, "tf_half_pixel_for_nn") == 0)
            c->ct = CT_TF_HALF_PIXEL; /* the spelling of ONNX's Resize-11 */
        if (c->ct < 0)
            return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s (Resize): coordinate_transformation_mode '%s'",
                                n->name, ct);
        const char *nm = ba_node_attr_string(n, "nearest_mode", "round_prefer_floor");
        static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
        c->nm = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(nm, nms[i]) == 0) c->nm = i;
        if (c->nm < 0)
            return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s (Resize): nearest_mode '%s'", n->name, nm);
        c->extrapolation = ba_node_attr_float(n, "extrapolation_value", 0.0f);
        c->cubic_a = ba_node_attr_float(n, "cubic_coeff_a", RESIZE_CUBIC_A);
        c->exclude_outside = ba_node_attr_int(n, "exclude_outside", 0) != 0;
        if (ba_node_attr_int(n, "antialias", 0) && c->mode != MODE_NEAREST)
            return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s (Resize): antialias not supported", n->name);
        roi_t = opt_in(in, nin, 1);
        scales_t = opt_in(in, nin, 2);
        sizes_t = opt_in(in, nin, 3);
        if (scales_t && scales_t->numel == 0) scales_t = NULL;
        if (sizes_t && sizes_t->numel == 0) sizes_t = NULL;
    }
    /* Opset 18 `axes` restricts scales/sizes/roi to some axes. */
    int64_t axes[BA_MAX_DIMS];
    int na = r;
    for (int d = 0; d < r; d++) axes[d] = d;
    const int64_t *av;
    int nav = n->opset >= 18 ? ba_node_attr_ints(n, "axes", &av) : 0;
    if (nav > 0) {
        if (nav > r)
            return ba_error_set(err, BA_ERR_INPUT, "%s (Resize): %d axes for rank %d", n->name, nav, r);
        na = nav;
        for (int i = 0; i < na; i++) {
            int a;
            BA_TRY(norm_axis(n, av[i], r, &a, err));
            axes[i] = a;
        }
    }
    for (int d = 0; d < r; d++) {
        scales[d] = 1;
        oshape[d] = x->shape[d];
        roi[d] = 0;
        roi[r + d] = 1;
    }
    if (sizes_t) {
        if (scales_t)
            return ba_error_set(err, BA_ERR_INPUT, "%s (Resize): both scales and sizes given", n->name);
        if (sizes_t->numel != na || !ba_dtype_is_int(sizes_t->dtype))
            return ba_error_set(err, BA_ERR_INPUT, "%s (Resize): sizes has %lld entries for %d axes", n->name,
                                (long long)sizes_t->numel, na);
        const char *pol = ba_node_attr_string(n, "keep_aspect_ratio_policy", "stretch");
        double keep = -1;
        if (n->opset >= 18 && strcmp(pol, "stretch") != 0) {
            int larger = strcmp(pol, "not_larger") == 0;
            for (int i = 0; i < na; i++) {
                double s = (double)ba_tensor_get_i64(sizes_t, i) / (double)x->shape[axes[i]];
                if (keep < 0 || (larger ? s < keep : s > keep)) keep = s;
            }
        }
        for (int i = 0; i < na; i++) {
            int a = (int)axes[i];
            int64_t sz = ba_tensor_get_i64(sizes_t, i);
            if (keep >= 0) sz = (int64_t)floor(x->shape[a] * keep + 0.5);
            if (sz < 0) return ba_error_set(err, BA_ERR_INPUT, "%s (Resize): negative size", n->name);
            oshape[a] = sz;
            scales[a] = keep >= 0 ? keep : x->shape[a] ? (double)sz / (double)x->shape[a] : 1;
        }
    } else if (scales_t || sattr) {
        int cnt = scales_t ? (int)scales_t->numel : nsattr;
        if (cnt != na || (scales_t && !ba_dtype_is_float(scales_t->dtype)))
            return ba_error_set(err, BA_ERR_INPUT, "%s (%s): scales has %d entries for %d axes", n->name,
                                n->op_type, cnt, na);
        for (int i = 0; i < na; i++) {
            int a = (int)axes[i];
            double s = scales_t ? ba_tensor_get_f64(scales_t, i) : sattr[i];
            if (!(s > 0))
                return ba_error_set(err, BA_ERR_INPUT, "%s (%s): scale %g not positive", n->name, n->op_type,
                                    s);
            /* Scales are float32 in the file: the product floors in float like ORT. */
            scales[a] = s;
            oshape[a] = (int64_t)floor((double)x->shape[a] * s);
        }
    } else {
        return ba_error_set(err, BA_ERR_INPUT, "%s (%s): neither scales nor sizes given", n->name,
                            n->op_type);
    }
    if (roi_t && c->ct == CT_TF_CROP) {
        if (roi_t->numel != 2 * na)
            return ba_error_set(err, BA_ERR_INPUT, "%s (Resize): roi has %lld entries for %d axes", n->name,
                                (long long)roi_t->numel, na);
        for (int i = 0; i < na; i++) {
            roi[axes[i]] = ba_tensor_get_f64(roi_t, i);
            roi[r + axes[i]] = ba_tensor_get_f64(roi_t, na + i);
        }
    }
    return BA_OK;
}

void ba_resize_plan_free(ba_resize_plan_t *p) {
    if (!p) return;
    free(p->buf);
    p->buf = NULL;
}

ba_status ba_resize_plan_make(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_resize_plan_t *p,
                              ba_error *err) {
    memset(p, 0, sizeof *p);
    resize_cfg c;
    double scales[BA_MAX_DIMS], roi[2 * BA_MAX_DIMS];
    BA_TRY(resize_params(n, in, nin, &c, scales, p->out_shape, roi, err));
    const ba_tensor_t *x = in[0];
    const int r = x->ndim, nt = c.mode == MODE_NEAREST ? 1 : c.mode == MODE_LINEAR ? 2 : 4;
    p->ndim = r;
    p->ntaps = nt;
    p->mode = c.mode;
    p->extrapolation = c.extrapolation;
    int64_t total = 0, st[BA_MAX_DIMS];
    for (int d = 0; d < r; d++) total += p->out_shape[d];
    const size_t per = sizeof(int64_t) + sizeof(double);
    p->buf = ba_malloc(per * (size_t)nt * (size_t)(total ? total : 1), err);
    if (!p->buf) return err->code;
    double *wbuf = p->buf;
    int64_t *ibuf = (int64_t *)(wbuf + nt * total);
    ba_shape_strides(r, x->shape, st);
    int64_t at = 0;
    for (int d = 0; d < r; at += p->out_shape[d], d++) {
        p->idx[d] = ibuf + nt * at;
        p->w[d] = wbuf + nt * at;
        for (int64_t i = 0; i < p->out_shape[d]; i++) {
            double v = resize_coord(&c, (double)i, scales[d], x->shape[d], p->out_shape[d],
                                    c.ct == CT_TF_CROP ? roi[d] : 0, c.ct == CT_TF_CROP ? roi[r + d] : 1);
            int ch = resize_axis_taps(&c, v, x->shape[d], st[d], scales[d], nt, p->idx[d] + i * nt,
                                      p->w[d] + i * nt);
            if (p->idx[d][i * nt] < 0)
                p->extrapolates = 1;
            else if (ch && c.mode != MODE_NEAREST)
                p->changes[d] = 1;
        }
    }
    return BA_OK;
}

ba_status ba_fwd_resize(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                        ba_error *err) {
    (void)nout;
    ba_resize_plan_t p;
    BA_TRY(ba_resize_plan_make(n, in, nin, &p, err));
    ba_status st = resize_run(n, &p, in[0], &out[0], err);
    ba_resize_plan_free(&p);
    return st;
}

/* ---------------------------------------------------------------- constants */

ba_status ba_fwd_constant(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                          ba_error *err) {
    (void)in, (void)nin, (void)nout;
    const ba_attr_t *a;
    ba_tensor_t *o = NULL;
    if ((a = ba_node_attr(n, "value")) && a->t) {
        o = ba_tensor_clone(a->t, err);
    } else if ((a = ba_node_attr(n, "value_float"))) {
        if ((o = ba_tensor_new(BA_DT_F32, 0, NULL, err))) ((float *)o->data)[0] = a->f;
    } else if ((a = ba_node_attr(n, "value_int"))) {
        if ((o = ba_tensor_new(BA_DT_I64, 0, NULL, err))) ((int64_t *)o->data)[0] = a->i;
    } else if ((a = ba_node_attr(n, "value_floats"))) {
        int64_t len = a->n;
        if ((o = ba_tensor_new(BA_DT_F32, 1, &len, err)) && len)
            memcpy(o->data, a->floats, sizeof(float) * (size_t)len);
    } else if ((a = ba_node_attr(n, "value_ints"))) {
        int64_t len = a->n;
        if ((o = ba_tensor_new(BA_DT_I64, 1, &len, err)) && len)
            memcpy(o->data, a->ints, sizeof(int64_t) * (size_t)len);
    } else {
        return ba_error_set(err, BA_ERR_UNSUPPORTED,
                            "%s (Constant): no value/value_float(s)/value_int(s) attribute", n->name);
    }
    if (!o) return ba_error_prefix(err, "%s (Constant)", n->name);
    out[0] = o;
    return BA_OK;
}

ba_status ba_fwd_constant_of_shape(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out,
                                   int nout, ba_error *err) {
    (void)nout;
    BA_TRY(ba_op_need_inputs(n, in, nin, 1, err));
    int64_t shape[BA_MAX_DIMS];
    int nd;
    BA_TRY(read_ints(n, in[0], "shape", shape, BA_MAX_DIMS, &nd, err));
    const ba_attr_t *a = ba_node_attr(n, "value");
    ba_dtype dt = a && a->t ? a->t->dtype : BA_DT_F32;
    if (a && a->t && (a->t->numel != 1 || ba_dtype_size(dt) == 0))
        return ba_error_set(err, BA_ERR_INPUT, "%s (ConstantOfShape): value must be a one-element tensor",
                            n->name);
    ba_tensor_t *o = ba_tensor_new(dt, nd, shape, err);
    if (!o) return ba_error_prefix(err, "%s (ConstantOfShape)", n->name);
    if (a && a->t) {
        size_t es = ba_dtype_size(dt);
        for (int64_t i = 0; i < o->numel; i++) memcpy((char *)o->data + (size_t)i * es, a->t->data, es);
    }
    out[0] = o;
    return BA_OK;
}

ba_status ba_fwd_shape(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                       ba_error *err) {
    (void)nout;
    BA_TRY(ba_op_need_inputs(n, in, nin, 1, err));
    int r = in[0]->ndim;
    int64_t s = 0, e = r;
    if (n->opset >= 15) {
        s = ba_node_attr_int(n, "start", 0);
        e = ba_node_attr_int(n, "end", r);
        if (s < 0) s += r;
        if (e < 0) e += r;
        s = s < 0 ? 0 : s > r ? r : s;
        e = e < 0 ? 0 : e > r ? r : e;
    }
    int64_t len = e > s ? e - s : 0;
    ba_tensor_t *o = ba_tensor_new(BA_DT_I64, 1, &len, err);
    if (!o) return err->code;
    for (int64_t i = 0; i < len; i++) ((int64_t *)o->data)[i] = in[0]->shape[s + i];
    out[0] = o;
    return BA_OK;
}

ba_status ba_fwd_size(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                      ba_error *err) {
    (void)nout;
    BA_TRY(ba_op_need_inputs(n, in, nin, 1, err));
    ba_tensor_t *o = ba_tensor_new(BA_DT_I64, 0, NULL, err);
    if (!o) return err->code;
    ((int64_t *)o->data)[0] = in[0]->numel;
    out[0] = o;
    return BA_OK;
}

/* Guards Range against a hostile limit/delta pair. */
#define RANGE_MAX_ELEMS ((int64_t)1 << 32)

ba_status ba_fwd_range(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                       ba_error *err) {
    (void)nout;
    BA_TRY(ba_op_need_inputs(n, in, nin, 3, err));
    for (int k = 0; k < 3; k++)
        if (in[k]->numel != 1 || in[k]->dtype != in[0]->dtype)
            return ba_error_set(err, BA_ERR_INPUT,
                                "%s (Range): start/limit/delta must be scalars of one dtype", n->name);
    ba_dtype dt = in[0]->dtype;
    int64_t len;
    if (ba_dtype_is_float(dt)) {
        double s = ba_tensor_get_f64(in[0], 0), l = ba_tensor_get_f64(in[1], 0),
               d = ba_tensor_get_f64(in[2], 0);
        double c = d != 0 ? ceil((l - s) / d) : NAN;
        if (!(c == c) || c > (double)RANGE_MAX_ELEMS)
            return ba_error_set(err, BA_ERR_INPUT, "%s (Range): bad start/limit/delta", n->name);
        len = c > 0 ? (int64_t)c : 0;
        ba_tensor_t *o = ba_tensor_new(dt, 1, &len, err);
        if (!o) return err->code;
        for (int64_t i = 0; i < len; i++) ba_elem_store_f64(o, i, s + (double)i * d);
        out[0] = o;
    } else {
        int64_t s = ba_tensor_get_i64(in[0], 0), l = ba_tensor_get_i64(in[1], 0),
                d = ba_tensor_get_i64(in[2], 0);
        if (d == 0) return ba_error_set(err, BA_ERR_INPUT, "%s (Range): delta is 0", n->name);
        double c = ceil(((double)l - (double)s) / (double)d);
        if (c > (double)RANGE_MAX_ELEMS)
            return ba_error_set(err, BA_ERR_INPUT, "%s (Range): too many elements", n->name);
        len = c > 0 ? (int64_t)c : 0;
        ba_tensor_t *o = ba_tensor_new(dt, 1, &len, err);
        if (!o) return err->code;
        for (int64_t i = 0; i < len; i++) ba_elem_store_i64(o, i, s + i * d);
        out[0] = o;
    }
    return BA_OK;
}

ba_status ba_fwd_cast(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                      ba_error *err) {
    (void)nout;
    BA_TRY(ba_op_need_inputs(n, in, nin, strcmp(n->op_type, "CastLike") == 0 ? 2 : 1, err));
    ba_dtype to = strcmp(n->op_type, "CastLike") == 0 ? in[1]->dtype : (ba_dtype)ba_node_attr_int(n, "to", 0);
    if (ba_dtype_size(to) == 0 || ba_dtype_size(in[0]->dtype) == 0)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s (%s): cast %s -> %s not supported", n->name,
                            n->op_type, ba_dtype_name(in[0]->dtype), ba_dtype_name(to));
    ba_tensor_t *o = ba_tensor_cast(in[0], to, err);
    if (!o) return ba_error_prefix(err, "%s (%s)", n->name, n->op_type);
    out[0] = o;
    return BA_OK;
}

ba_status ba_fwd_nonzero(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                         ba_error *err) {
    (void)nout;
    ba_tensor_t *x;
    BA_TRY(data_input(n, in, nin, 1, &x, err));
    int fl = ba_dtype_is_float(x->dtype);
    int64_t cnt = 0;
    for (int64_t i = 0; i < x->numel; i++)
        cnt += fl ? ba_tensor_get_f64(x, i) != 0 : ba_tensor_get_i64(x, i) != 0;
    int r = x->ndim ? x->ndim : 1;
    int64_t shape[2] = {r, cnt};
    ba_tensor_t *o = ba_tensor_new(BA_DT_I64, 2, shape, err);
    if (!o) return err->code;
    int64_t *od = o->data, pos[BA_MAX_DIMS] = {0}, k = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        if (fl ? ba_tensor_get_f64(x, i) != 0 : ba_tensor_get_i64(x, i) != 0) {
            for (int d = 0; d < x->ndim; d++) od[d * cnt + k] = pos[d];
            if (!x->ndim) od[k] = 0;
            k++;
        }
        ba_index_next(x->ndim, x->shape, pos);
    }
    out[0] = o;
    return BA_OK;
}

ba_status ba_fwd_scatter_nd(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                            ba_error *err) {
    (void)nout;
    ba_tensor_t *x;
    BA_TRY(data_input(n, in, nin, 3, &x, err));
    ba_tensor_t *idx = in[1], *upd = in[2];
    if (!ba_dtype_is_int(idx->dtype) || idx->ndim < 1 || upd->dtype != x->dtype)
        return ba_error_set(err, BA_ERR_INPUT, "%s (ScatterND): bad indices/updates dtype or rank", n->name);
    int64_t k = idx->shape[idx->ndim - 1];
    if (k > x->ndim || upd->ndim != idx->ndim - 1 + x->ndim - k)
        return ba_error_set(err, BA_ERR_INPUT, "%s (ScatterND): indices/updates shapes do not fit data",
                            n->name);
    for (int d = 0; d < idx->ndim - 1; d++)
        if (upd->shape[d] != idx->shape[d])
            return ba_error_set(err, BA_ERR_INPUT, "%s (ScatterND): updates shape does not match indices",
                                n->name);
    for (int d = 0; d < x->ndim - k; d++)
        if (upd->shape[idx->ndim - 1 + d] != x->shape[k + d])
            return ba_error_set(err, BA_ERR_INPUT, "%s (ScatterND): updates shape does not match data",
                                n->name);
    const char *red = ba_node_attr_string(n, "reduction", "none");
    int rop = strcmp(red, "none") == 0  ? 0
              : strcmp(red, "add") == 0 ? 1
              : strcmp(red, "mul") == 0 ? 2
              : strcmp(red, "max") == 0 ? 3
              : strcmp(red, "min") == 0 ? 4
                                        : -1;
    if (rop < 0) return ba_error_set(err, BA_ERR_INPUT, "%s (ScatterND): reduction '%s'", n->name, red);
    ba_tensor_t *o = ba_tensor_clone(x, err);
    if (!o) return err->code;
    int64_t st[BA_MAX_DIMS];
    ba_shape_strides(x->ndim, x->shape, st);
    int64_t inner = ba_shape_numel(x->ndim - (int)k, x->shape + k), nidx = k ? idx->numel / k : 0;
    if (k == 0) nidx = ba_shape_numel(idx->ndim - 1, idx->shape);
    size_t es = ba_dtype_size(x->dtype);
    int fl = ba_dtype_is_float(x->dtype);
    for (int64_t j = 0; j < nidx; j++) {
        int64_t off = 0;
        for (int64_t d = 0; d < k; d++) {
            int64_t v = ba_tensor_get_i64(idx, j * k + d);
            if (v < 0) v += x->shape[d];
            if (v < 0 || v >= x->shape[d]) {
                ba_tensor_unref(o);
                return ba_error_set(err, BA_ERR_INPUT, "%s (ScatterND): index out of range on axis %lld",
                                    n->name, (long long)d);
            }
            off += v * st[d];
        }
        for (int64_t i = 0; i < inner; i++) {
            int64_t oi = off + i, ui = j * inner + i;
            if (rop == 0) {
                memcpy((char *)o->data + (size_t)oi * es, (const char *)upd->data + (size_t)ui * es, es);
            } else if (fl) {
                double a = ba_tensor_get_f64(o, oi), b = ba_tensor_get_f64(upd, ui);
                ba_elem_store_f64(o, oi,
                                  rop == 1   ? a + b
                                  : rop == 2 ? a * b
                                  : rop == 3 ? (a > b ? a : b)
                                             : (a < b ? a : b));
            } else {
                int64_t a = ba_tensor_get_i64(o, oi), b = ba_tensor_get_i64(upd, ui);
                ba_elem_store_i64(o, oi,
                                  rop == 1   ? a + b
                                  : rop == 2 ? a * b
                                  : rop == 3 ? (a > b ? a : b)
                                             : (a < b ? a : b));
            }
        }
    }
    out[0] = o;
    return BA_OK;
}

ba_status ba_fwd_trilu(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                       ba_error *err) {
    (void)nout;
    ba_tensor_t *x;
    BA_TRY(data_input(n, in, nin, 1, &x, err));
    if (x->ndim < 2) return ba_error_set(err, BA_ERR_INPUT, "%s (Trilu): rank %d < 2", n->name, x->ndim);
    int64_t k = 0;
    ba_tensor_t *kt = opt_in(in, nin, 1);
    if (kt) {
        if (kt->numel != 1 || !ba_dtype_is_int(kt->dtype))
            return ba_error_set(err, BA_ERR_INPUT, "%s (Trilu): k must be an integer scalar", n->name);
        k = ba_tensor_get_i64(kt, 0);
    }
    int upper = (int)ba_node_attr_int(n, "upper", 1);
    ba_tensor_t *o = ba_tensor_clone(x, err);
    if (!o) return err->code;
    int64_t rows = x->shape[x->ndim - 2], cols = x->shape[x->ndim - 1],
            mats = (rows && cols) ? x->numel / (rows * cols) : 0;
    size_t es = ba_dtype_size(x->dtype);
    for (int64_t m = 0; m < mats; m++)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                int keep = upper ? j - i >= k : j - i <= k;
                if (!keep) memset((char *)o->data + (size_t)((m * rows + i) * cols + j) * es, 0, es);
            }
    out[0] = o;
    return BA_OK;
}
