/* Backward of the reductions (Reduce* with axes as attribute or input, any
 * keepdims): the output gradient is broadcast back over the reduced axes and
 * scaled by the reduction's derivative. ArgMax/ArgMin pass no gradient. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/grad_internal.h"
#include "model/kern_conv.h"

/* Opsets from which axes are an input (ReduceSum 13, the others 18), as ops_reduce.c. */
#define AXES_OPSET_SUM 13
#define AXES_OPSET_OTHER 18

ba_status ba_reduce_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                             int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                             ba_error *err) {
    (void)nout;
    if (!need[0]) return BA_OK;
    const ba_tensor_t *X = in[0];
    const char *op = n->op_type + 6; /* after "Reduce" */
    const int r = X->ndim, is_sum = !strcmp(op, "Sum");
    int64_t axes[BA_MAX_DIMS];
    int na = 0, noop = 0;
    if (n->opset >= (is_sum ? AXES_OPSET_SUM : AXES_OPSET_OTHER)) {
        if (nin > 1 && in[1])
            for (int64_t i = 0; i < in[1]->numel && na < BA_MAX_DIMS; i++)
                axes[na++] = ba_tensor_get_i64(in[1], i);
        noop = (int)ba_node_attr_int(n, "noop_with_empty_axes", 0);
    } else {
        const int64_t *v;
        int k = ba_node_attr_ints(n, "axes", &v);
        for (int i = 0; i < k && na < BA_MAX_DIMS; i++) axes[na++] = v[i];
    }
    int red[BA_MAX_DIMS];
    for (int d = 0; d < r; d++) red[d] = na == 0 && !noop;
    for (int i = 0; i < na; i++) red[axes[i] < 0 ? axes[i] + r : axes[i]] = 1;
    int64_t kshape[BA_MAX_DIMS], cnt = 1;
    for (int d = 0; d < r; d++) {
        kshape[d] = red[d] ? 1 : X->shape[d];
        if (red[d]) cnt *= X->shape[d];
    }
    float *dx = ba_grad_slot(din, 0, X, err);
    if (!dx) return err->code;
    const int64_t ne = X->numel;
    /* dY (and Y where the derivative needs it) broadcast back over the reduced axes */
    const int need_y = strcmp(op, "Sum") && strcmp(op, "Mean") && strcmp(op, "SumSquare");
    int og = 0, oy = 0;
    float *gb = NULL, *yb = NULL;
    ba_tensor_t *gw = ba_tensor_wrap(BA_DT_F32, r, kshape, dout[0]->data, err);
    ba_tensor_t *yw = gw && need_y ? ba_tensor_wrap(BA_DT_F32, r, kshape, out[0]->data, err) : NULL;
    ba_status st = gw && (yw || !need_y) ? BA_OK : err->code;
    if (st == BA_OK && !(gb = ba_grad_bcast_f32(n, gw, r, X->shape, &og, err))) st = err->code;
    if (st == BA_OK && need_y && !(yb = ba_grad_bcast_f32(n, yw, r, X->shape, &oy, err))) st = err->code;
    const float *x = X->data;
    if (st == BA_OK) {
        if (is_sum)
            for (int64_t e = 0; e < ne; e++) dx[e] += gb[e];
        else if (!strcmp(op, "Mean"))
            for (int64_t e = 0; e < ne; e++) dx[e] += gb[e] / (float)cnt;
        else if (!strcmp(op, "SumSquare"))
            for (int64_t e = 0; e < ne; e++) dx[e] += 2.0f * gb[e] * x[e];
        else if (!strcmp(op, "L2"))
            for (int64_t e = 0; e < ne; e++) dx[e] += yb[e] > 0.0f ? gb[e] * x[e] / yb[e] : 0.0f;
        else if (!strcmp(op, "L1"))
            for (int64_t e = 0; e < ne; e++) dx[e] += x[e] > 0.0f ? gb[e] : x[e] < 0.0f ? -gb[e] : 0.0f;
        else if (!strcmp(op, "LogSumExp"))
            for (int64_t e = 0; e < ne; e++) dx[e] += gb[e] * expf(x[e] - yb[e]);
        else if (!strcmp(op, "Max") || !strcmp(op, "Min"))
            for (int64_t e = 0; e < ne; e++) dx[e] += x[e] == yb[e] ? gb[e] : 0.0f;
        else
            st = ba_error_set(err, BA_ERR_UNSUPPORTED, "node %s: no backward for %s", n->name, n->op_type);
    }
    ba_tensor_unref(gw);
    ba_tensor_unref(yw);
    if (og) free(gb);
    if (oy) free(yb);
    return st;
}
