/* Control flow: the merge that an If whose condition is known only at run
 * time becomes (see ba_guard_t in model.h). Both branches' nodes are in the
 * graph, guarded; the merge hands on the chosen branch's outputs. */
#include "model/ops.h"

#include <stdio.h>

ba_status ba_if_truth(const char *node, const ba_tensor_t *c, int *truth, ba_error *err) {
    char sb[128];
    *truth = 0;
    if (!c) return ba_error_set(err, BA_ERR_RUNTIME, "node '%s' (If): the condition was not computed", node);
    if (c->numel != 1 ||
        !(c->dtype == BA_DT_BOOL || ba_dtype_is_int(c->dtype) || ba_dtype_is_float(c->dtype)))
        return ba_error_set(
            err, BA_ERR_INPUT,
            "node '%s' (If): the condition must be one bool or number, is a %s tensor of shape %s", node,
            ba_dtype_name(c->dtype), ba_shape_str(c->ndim, c->shape, sb, sizeof sb));
    double v = ba_tensor_get_f64(c, 0);
    if (v != v) return ba_error_set(err, BA_ERR_INPUT, "node '%s' (If): the condition is NaN", node);
    *truth = v != 0.0;
    return BA_OK;
}

/* in: [cond, then outputs (nout), else outputs (nout)]; the branch not taken
 * did not run, so its slots may be NULL. */
ba_status ba_if_merge(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t **out, int nout,
                      ba_error *err) {
    if (n->if_guard < 0 || nin != 1 + 2 * nout)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "node '%s' (If): branches were not expanded", n->name);
    int t;
    BA_TRY(ba_if_truth(n->name, in[0], &t, err));
    for (int j = 0; j < nout; j++) {
        ba_tensor_t *src = in[t ? 1 + j : 1 + nout + j];
        if (!src && n->outputs[j] >= 0) {
            for (int q = 0; q < j; q++) {
                ba_tensor_unref(out[q]);
                out[q] = NULL;
            }
            return ba_error_set(err, BA_ERR_RUNTIME, "node '%s' (If): output %d of the %s was not computed",
                                n->name, j, t ? "then_branch" : "else_branch");
        }
        out[j] = src ? ba_tensor_ref(src) : NULL;
    }
    return BA_OK;
}
