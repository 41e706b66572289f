/* Backward of the merge of a run-time If (ops_control.c): the gradient of
 * each output goes to the taken branch's output; the branch not taken did
 * not run, so nothing reaches its nodes or constants. */
#include "model/grad_internal.h"
#include "model/ops.h"

ba_status ba_if_backward(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                         int nout, ba_tensor_t *const *dout, const unsigned char *need, ba_tensor_t **din,
                         ba_error *err) {
    (void)out;
    if (nin != 1 + 2 * nout)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "node '%s' (If): branches were not expanded", n->name);
    int t;
    BA_TRY(ba_if_truth(n->name, in[0], &t, err));
    for (int j = 0; j < nout; j++) {
        const int k = t ? 1 + j : 1 + nout + j;
        if (!dout[j] || !need[k] || !in[k]) continue;
        BA_TRY(ba_grad_pass(din, k, in[k], dout[j], err));
    }
    return BA_OK;
}
