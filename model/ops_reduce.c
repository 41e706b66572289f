/* Reduction kernels (see model/ops.h): Reduce* (axes as attribute or, from
 * opset 13 for ReduceSum and 18 for the rest, as input), ArgMax/ArgMin, TopK
 * and CumSum. Float sums accumulate in double; integer Sum/Prod/Max/Min stay exact. */
#include "model/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/broadcast.h"

#define PAR_MIN 32768 /* elements below which threads cost more than they save */
#define AXES_OPSET_SUM 13
#define AXES_OPSET_OTHER 18
#define TOPK_K_INPUT_OPSET 10

static ba_status norm_axis(const ba_node_t *n, int64_t axis, int rank, int *out, ba_error *err) {
    *out = 0;
    int r = rank ? rank : 1; /* a scalar accepts axis 0/-1 like a 1-element vector */
    if (axis < -r || axis >= r)
        return ba_error_set(err, BA_ERR_INPUT, "%s (%s): axis %lld out of range for rank %d", n->name,
                            n->op_type, (long long)axis, rank);
    *out = (int)(axis < 0 ? axis + r : axis);
    return BA_OK;
}

/* The data input of a kernel: ba_op_need_inputs(k), then *x = in[0] of a number type. */
static ba_status numeric_input(const ba_node_t *n, ba_tensor_t *const *in, int nin, int k, ba_tensor_t **x,
                               ba_error *err) {
    BA_TRY(ba_op_need_inputs(n, in, nin, k, err));
    *x = in[0];
    if (!ba_dtype_is_float(in[0]->dtype) && !ba_dtype_is_int(in[0]->dtype))
        return ba_error_set(err, BA_ERR_INPUT, "%s (%s): dtype %s not supported", n->name, n->op_type,
                            ba_dtype_name(in[0]->dtype));
    return BA_OK;
}

static inline double ld(const ba_tensor_t *t, int64_t i) {
    return t->dtype == BA_DT_F32 ? (double)((const float *)t->data)[i] : ba_tensor_get_f64(t, i);
}

/* ---------------------------------------------------------------- Reduce* */

enum { R_SUM, R_MEAN, R_MAX, R_MIN, R_PROD, R_L1, R_L2, R_SUMSQ, R_LSE };

static const struct {
    const char *name;
    int op;
} reduce_map[] = {
    {"ReduceSum", R_SUM}, {"ReduceMean", R_MEAN},       {"ReduceMax", R_MAX},
    {"ReduceMin", R_MIN}, {"ReduceProd", R_PROD},       {"ReduceL1", R_L1},
    {"ReduceL2", R_L2},   {"ReduceSumSquare", R_SUMSQ}, {"ReduceLogSumExp", R_LSE},
};

/* The reduced axes of one output element: an odometer over rdims, last one innermost. */
typedef struct {
    int nr;
    int64_t rshape[BA_MAX_DIMS], rstride[BA_MAX_DIMS];
    int64_t count; /* elements per output */
} rwalk;

static double reduce_float(int op, const ba_tensor_t *x, int64_t base, const rwalk *w) {
    double acc = op == R_PROD ? 1 : op == R_MAX ? -INFINITY : op == R_MIN ? INFINITY : 0, mx = 0;
    if (op == R_LSE) mx = reduce_float(R_MAX, x, base, w);
    if (op == R_LSE && !isfinite(mx)) mx = 0;
    int64_t pos[BA_MAX_DIMS] = {0};
    int64_t inner = w->nr ? w->rshape[w->nr - 1] : 1, is = w->nr ? w->rstride[w->nr - 1] : 0;
    int64_t outer = inner ? w->count / inner : 0;
    for (int64_t o = 0; o < outer; o++) {
        int64_t off = base;
        for (int d = 0; d < w->nr - 1; d++) off += pos[d] * w->rstride[d];
        for (int64_t i = 0; i < inner; i++) {
            double v = ld(x, off + i * is);
            switch (op) {
            case R_SUM:
            case R_MEAN: acc += v; break;
            case R_MAX:
                if (v > acc || v != v) acc = v;
                break;
            case R_MIN:
                if (v < acc || v != v) acc = v;
                break;
            case R_PROD: acc *= v; break;
            case R_L1: acc += fabs(v); break;
            case R_L2:
            case R_SUMSQ: acc += v * v; break;
            case R_LSE: acc += exp(v - mx); break;
            default: break;
            }
        }
        ba_index_next(w->nr - 1, w->rshape, pos);
    }
    switch (op) {
    case R_MEAN: return acc / (double)w->count;
    case R_L2: return sqrt(acc);
    case R_LSE: return mx + log(acc);
    default: return acc;
    }
}

static int64_t reduce_int(int op, const ba_tensor_t *x, int64_t base, const rwalk *w) {
    int64_t acc = op == R_PROD ? 1 : op == R_MAX ? INT64_MIN : op == R_MIN ? INT64_MAX : 0;
    int64_t pos[BA_MAX_DIMS] = {0};
    int64_t inner = w->nr ? w->rshape[w->nr - 1] : 1, is = w->nr ? w->rstride[w->nr - 1] : 0;
    int64_t outer = inner ? w->count / inner : 0;
    for (int64_t o = 0; o < outer; o++) {
        int64_t off = base;
        for (int d = 0; d < w->nr - 1; d++) off += pos[d] * w->rstride[d];
        for (int64_t i = 0; i < inner; i++) {
            int64_t v = ba_tensor_get_i64(x, off + i * is);
            switch (op) {
            case R_SUM:
            case R_MEAN: acc = (int64_t)((uint64_t)acc + (uint64_t)v); break;
            case R_MAX:
                if (v > acc) acc = v;
                break;
            case R_MIN:
                if (v < acc) acc = v;
                break;
            case R_PROD: acc = (int64_t)((uint64_t)acc * (uint64_t)v); break;
            case R_L1: acc += v < 0 ? -v : v; break;
            case R_SUMSQ: acc += v * v; break;
            default: break;
            }
        }
        ba_index_next(w->nr - 1, w->rshape, pos);
    }
    if (op == R_MEAN && w->count) acc /= w->count;
    return acc;
}

ba_status ba_fwd_reduce(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                        ba_error *err) {
    (void)nout;
    ba_tensor_t *x;
    BA_TRY(numeric_input(n, in, nin, 1, &x, err));
    int op = -1;
    for (size_t i = 0; i < sizeof reduce_map / sizeof reduce_map[0]; i++)
        if (strcmp(reduce_map[i].name, n->op_type) == 0) op = reduce_map[i].op;
    if (op < 0)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: %s is not a reduction", n->name, n->op_type);
    int r = x->ndim;
    int64_t axes[BA_MAX_DIMS];
    int na = 0;
    int from_input = n->opset >= (op == R_SUM ? AXES_OPSET_SUM : AXES_OPSET_OTHER);
    if (from_input) {
        ba_tensor_t *at = nin > 1 ? in[1] : NULL;
        if (at) {
            if (!ba_dtype_is_int(at->dtype) || at->ndim > 1 || at->numel > BA_MAX_DIMS)
                return ba_error_set(err, BA_ERR_INPUT,
                                    "%s (%s): axes must be a 1-D integer tensor of <= %d entries", n->name,
                                    n->op_type, BA_MAX_DIMS);
            na = (int)at->numel;
            for (int i = 0; i < na; i++) axes[i] = ba_tensor_get_i64(at, i);
        }
    } else {
        const int64_t *v;
        na = ba_node_attr_ints(n, "axes", &v);
        if (na > BA_MAX_DIMS)
            return ba_error_set(err, BA_ERR_INPUT, "%s (%s): %d axes", n->name, n->op_type, na);
        for (int i = 0; i < na; i++) axes[i] = v[i];
    }
    int keep = (int)ba_node_attr_int(n, "keepdims", 1);
    int noop = from_input && ba_node_attr_int(n, "noop_with_empty_axes", 0);
    int red[BA_MAX_DIMS] = {0};
    if (na == 0) {
        /* No axes: reduce everything, or (noop) nothing — each element alone. */
        for (int d = 0; d < r; d++) red[d] = !noop;
    }
    for (int i = 0; i < na; i++) {
        if (r == 0)
            return ba_error_set(err, BA_ERR_INPUT, "%s (%s): axes given for a scalar", n->name, n->op_type);
        int a;
        BA_TRY(norm_axis(n, axes[i], r, &a, err));
        red[a] = 1;
    }
    int64_t oshape[BA_MAX_DIMS], st[BA_MAX_DIMS], kstride[BA_MAX_DIMS], kshape[BA_MAX_DIMS];
    int on = 0, nk = 0;
    rwalk w = {0, {0}, {0}, 1};
    ba_shape_strides(r, x->shape, st);
    for (int d = 0; d < r; d++) {
        if (red[d]) {
            w.rshape[w.nr] = x->shape[d];
            w.rstride[w.nr++] = st[d];
            w.count *= x->shape[d];
            if (keep) oshape[on++] = 1;
        } else {
            oshape[on++] = x->shape[d];
            kshape[nk] = x->shape[d];
            kstride[nk++] = st[d];
        }
    }
    if (w.count == 0 && (op == R_MAX || op == R_MIN || op == R_MEAN || op == R_LSE))
        return ba_error_set(err, BA_ERR_INPUT, "%s (%s): reduction over an empty axis", n->name, n->op_type);
    int exact = ba_dtype_is_int(x->dtype) && op != R_L2 && op != R_LSE;
    ba_tensor_t *o = ba_tensor_new(x->dtype, on, oshape, err);
    if (!o) return err->code;
    int64_t nout_el = o->numel;
#pragma omp parallel for schedule(static) if (x->numel >= PAR_MIN && nout_el > 1)
    for (int64_t oi = 0; oi < nout_el; oi++) {
        int64_t base = 0, q = oi;
        for (int d = nk - 1; d >= 0; d--) {
            base += (q % kshape[d]) * kstride[d];
            q /= kshape[d];
        }
        if (exact)
            ba_elem_store_i64(o, oi, reduce_int(op, x, base, &w));
        else
            ba_elem_store_f64(o, oi, reduce_float(op, x, base, &w));
    }
    out[0] = o;
    return BA_OK;
}

/* ---------------------------------------------------------------- ArgMax / ArgMin */

ba_status ba_fwd_arg(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                     ba_error *err) {
    (void)nout;
    ba_tensor_t *x;
    BA_TRY(numeric_input(n, in, nin, 1, &x, err));
    int is_max = strcmp(n->op_type, "ArgMax") == 0, axis;
    BA_TRY(norm_axis(n, ba_node_attr_int(n, "axis", 0), x->ndim, &axis, err));
    int keep = (int)ba_node_attr_int(n, "keepdims", 1),
        last = (int)ba_node_attr_int(n, "select_last_index", 0);
    int64_t dim = x->ndim ? x->shape[axis] : 1;
    if (dim == 0) return ba_error_set(err, BA_ERR_INPUT, "%s (%s): empty axis", n->name, n->op_type);
    int64_t oshape[BA_MAX_DIMS];
    int on = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (d != axis)
            oshape[on++] = x->shape[d];
        else if (keep)
            oshape[on++] = 1;
    }
    ba_tensor_t *o = ba_tensor_new(BA_DT_I64, on, oshape, err);
    if (!o) return err->code;
    int64_t outer = x->ndim ? ba_shape_numel(axis, x->shape) : 1;
    int64_t inner = x->ndim ? ba_shape_numel(x->ndim - axis - 1, x->shape + axis + 1) : 1;
    int64_t *od = o->data;
    for (int64_t a = 0; a < outer; a++)
        for (int64_t b = 0; b < inner; b++) {
            int64_t base = a * dim * inner + b, best = 0;
            double bv = ld(x, base);
            for (int64_t i = 1; i < dim; i++) {
                double v = ld(x, base + i * inner);
                int better = is_max ? (v > bv || (last && v == bv)) : (v < bv || (last && v == bv));
                if (better) {
                    bv = v;
                    best = i;
                }
            }
            od[a * inner + b] = best;
        }
    out[0] = o;
    return BA_OK;
}

/* ---------------------------------------------------------------- TopK */

typedef struct {
    double v;
    int64_t i;
} vi_pair;

static int cmp_desc(const void *pa, const void *pb) {
    const vi_pair *a = pa, *b = pb;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

static int cmp_asc(const void *pa, const void *pb) {
    const vi_pair *a = pa, *b = pb;
    if (a->v != b->v) return a->v < b->v ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

ba_status ba_fwd_topk(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                      ba_error *err) {
    ba_tensor_t *x;
    BA_TRY(numeric_input(n, in, nin, 1, &x, err));
    if (x->ndim < 1) return ba_error_set(err, BA_ERR_INPUT, "%s (TopK): scalar input", n->name);
    int axis;
    BA_TRY(norm_axis(n, ba_node_attr_int(n, "axis", -1), x->ndim, &axis, err));
    int64_t k;
    if (n->opset >= TOPK_K_INPUT_OPSET) {
        BA_TRY(ba_op_need_inputs(n, in, nin, 2, err));
        if (in[1]->numel != 1 || !ba_dtype_is_int(in[1]->dtype))
            return ba_error_set(err, BA_ERR_INPUT, "%s (TopK): K must be a one-element integer tensor",
                                n->name);
        k = ba_tensor_get_i64(in[1], 0);
    } else {
        k = ba_node_attr_int(n, "k", -1);
    }
    int64_t dim = x->shape[axis];
    if (k < 0 || k > dim)
        return ba_error_set(err, BA_ERR_INPUT, "%s (TopK): k=%lld outside [0, %lld]", n->name, (long long)k,
                            (long long)dim);
    int largest = (int)ba_node_attr_int(n, "largest", 1);
    int64_t oshape[BA_MAX_DIMS];
    memcpy(oshape, x->shape, sizeof oshape);
    oshape[axis] = k;
    ba_tensor_t *vals = ba_tensor_new(x->dtype, x->ndim, oshape, err);
    ba_tensor_t *idx = vals ? ba_tensor_new(BA_DT_I64, x->ndim, oshape, err) : NULL;
    vi_pair *buf = idx ? ba_malloc(sizeof(vi_pair) * (size_t)(dim ? dim : 1), err) : NULL;
    if (!buf) {
        ba_tensor_unref(vals);
        ba_tensor_unref(idx);
        return err->code;
    }
    int64_t outer = ba_shape_numel(axis, x->shape),
            inner = ba_shape_numel(x->ndim - axis - 1, x->shape + axis + 1);
    int fl = ba_dtype_is_float(x->dtype);
    for (int64_t a = 0; a < outer; a++)
        for (int64_t b = 0; b < inner; b++) {
            int64_t base = a * dim * inner + b;
            for (int64_t i = 0; i < dim; i++) {
                buf[i].v = ld(x, base + i * inner);
                buf[i].i = i;
            }
            /* Always sorted (sorted=0 leaves the order unspecified); ties keep the lower index first. */
            qsort(buf, (size_t)dim, sizeof *buf, largest ? cmp_desc : cmp_asc);
            for (int64_t j = 0; j < k; j++) {
                int64_t oi = (a * k + j) * inner + b;
                if (fl)
                    ba_elem_store_f64(vals, oi, buf[j].v);
                else
                    ba_elem_store_i64(vals, oi, ba_tensor_get_i64(x, base + buf[j].i * inner));
                ((int64_t *)idx->data)[oi] = buf[j].i;
            }
        }
    free(buf);
    out[0] = vals;
    if (nout > 1 && (!n->outputs || n->outputs[1] >= 0))
        out[1] = idx;
    else
        ba_tensor_unref(idx);
    return BA_OK;
}

/* ---------------------------------------------------------------- CumSum */

ba_status ba_fwd_cumsum(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                        ba_error *err) {
    (void)nout;
    ba_tensor_t *x;
    BA_TRY(numeric_input(n, in, nin, 2, &x, err));
    if (x->ndim < 1) return ba_error_set(err, BA_ERR_INPUT, "%s (CumSum): scalar input", n->name);
    if (in[1]->numel != 1 || !ba_dtype_is_int(in[1]->dtype))
        return ba_error_set(err, BA_ERR_INPUT, "%s (CumSum): axis must be a one-element integer tensor",
                            n->name);
    int axis;
    BA_TRY(norm_axis(n, ba_tensor_get_i64(in[1], 0), x->ndim, &axis, err));
    int excl = (int)ba_node_attr_int(n, "exclusive", 0), rev = (int)ba_node_attr_int(n, "reverse", 0);
    ba_tensor_t *o = ba_tensor_new(x->dtype, x->ndim, x->shape, err);
    if (!o) return err->code;
    int64_t dim = x->shape[axis], outer = ba_shape_numel(axis, x->shape);
    int64_t inner = ba_shape_numel(x->ndim - axis - 1, x->shape + axis + 1);
    int fl = ba_dtype_is_float(x->dtype);
    for (int64_t a = 0; a < outer; a++)
        for (int64_t b = 0; b < inner; b++) {
            double fs = 0;
            int64_t is = 0;
            for (int64_t j = 0; j < dim; j++) {
                int64_t i = rev ? dim - 1 - j : j, off = (a * dim + i) * inner + b;
                if (fl) {
                    double v = ld(x, off);
                    if (!excl) fs += v;
                    ba_elem_store_f64(o, off, fs);
                    if (excl) fs += v;
                } else {
                    int64_t v = ba_tensor_get_i64(x, off);
                    if (!excl) is += v;
                    ba_elem_store_i64(o, off, is);
                    if (excl) is += v;
                }
            }
        }
    out[0] = o;
    return BA_OK;
}
