/* The `measured` estimator: Ω(l,b) = the search's output metric (--metric:
 * by default KL(p_fp ‖ p_q) for class outputs, relMSE otherwise, SPEC §8; a
 * higher-is-better metric negated) with only layer l quantized to b bits
 * (SPEC §5), through the weight cache's overrides and eval/metrics. One FP
 * pass per batch, then one pass per (layer, width), each resumed from the FP
 * pass's values before the layer's first reader (eval/'s reuse cache). */
#include <stdlib.h>
#include <string.h>

#include "eval/evaluate.h"
#include "eval/metrics.h"
#include "sensitivity/sens_internal.h"

ba_status sens_measured(sens_ctx_t *c, ba_error *err) {
    const ba_model_t *m = c->m;
    int L = m->nlayers, nb = c->nbits;
    size_t ncell = (size_t)L * (size_t)nb;
    ba_metrics_acc_t *acc = ba_calloc(ncell, sizeof *acc, err);
    ba_tensor_t **inputs = ba_calloc((size_t)m->ninputs + 1, sizeof *inputs, err);
    ba_tensor_t **fp = ba_calloc((size_t)m->noutputs + 1, sizeof *fp, err);
    ba_tensor_t **q = ba_calloc((size_t)m->noutputs + 1, sizeof *q, err);
    ba_tensor_t **ovr = ba_calloc((size_t)m->nvalues + 1, sizeof *ovr, err);
    int *bits = ba_calloc((size_t)L, sizeof *bits, err);
    ba_status st = (acc && inputs && fp && q && ovr && bits) ? BA_OK : BA_ERR_NOMEM;
    /* Each (layer, width) pass resumes from the FP pass's values before the layer's first reader. */
    ba_eval_reuse_t *reuse = NULL;
    if (st == BA_OK) st = ba_eval_reuse_new(m, BA_EVAL_REUSE_DEFAULT_CAP, &reuse, err);
    int is_prob = ba_output_is_softmax(m) ? 1 : -1;
    for (size_t i = 0; st == BA_OK && i < ncell; i++) ba_metrics_begin(&acc[i], is_prob);
    int64_t nbatch = sens_nbatch(c);
    int out_ndim = 0;
    int64_t out_shape[BA_MAX_DIMS] = {0};
    c->work_total = (uint64_t)(nbatch * (int64_t)ncell);
    for (int64_t b = 0; b < nbatch && st == BA_OK; b++) {
        const int64_t b0 = b * c->batch, blen = sens_batch_len(c, b);
        st = sens_batch_inputs(c, b0, blen, inputs, err);
        for (int j = 0; j < L; j++) bits[j] = 32;
        ba_run_opts_t fo = {0};
        ba_eval_reuse_clear(reuse); /* only this batch's FP values */
        if (st == BA_OK) st = ba_eval_reuse_model_run(reuse, bits, 1, inputs, &fo, b0, blen, fp, err);
        if (st == BA_OK && b == 0) {
            out_ndim = fp[0]->ndim;
            memcpy(out_shape, fp[0]->shape, sizeof out_shape);
        }
        for (int l = 0; l < L && st == BA_OK; l++)
            for (int k = 0; k < nb && st == BA_OK; k++) {
                for (int j = 0; j < L; j++) bits[j] = 32;
                bits[l] = c->bits[k];
                st = ba_wcache_overrides(c->wc, bits, ovr, err);
                ba_run_opts_t ro = {.overrides = ovr};
                if (st == BA_OK) st = ba_eval_reuse_model_run(reuse, bits, 0, inputs, &ro, b0, blen, q, err);
                if (st == BA_OK) st = ba_metrics_add(&acc[(size_t)l * nb + k], fp[0], q[0], NULL, 0, err);
                for (int o = 0; o < m->noutputs; o++) {
                    ba_tensor_unref(q[o]);
                    q[o] = NULL;
                }
                /* reset the layer's slot so the next (l,k) starts from FP weights */
                ovr[m->layers[l].value] = NULL;
                sens_progress(c, 1);
            }
        for (int o = 0; o < m->noutputs; o++) {
            ba_tensor_unref(fp[o]);
            fp[o] = NULL;
        }
        sens_inputs_free(c, inputs);
    }
    ba_metric_t metric = c->o->metric;
    if (metric == BA_METRIC_AUTO && ncell > 0)
        metric = ba_metric_default(acc[0].is_prob, out_ndim, out_shape);
    if (st == BA_OK && (metric == BA_METRIC_EVALUATOR || metric == BA_METRIC_EVALUATOR_MAX))
        st = ba_error_set(err, BA_ERR_INPUT,
                          "--metric: measured sensitivities need an output metric, not an evaluator");
    c->loss_name = ba_metric_name(metric);
    for (size_t i = 0; st == BA_OK && i < ncell; i++) {
        ba_metrics_t r;
        ba_metrics_finish(&acc[i], &r);
        c->cost[i] = ba_metric_objective(metric, ba_metric_value(metric, &r));
    }
    ba_eval_reuse_free(reuse);
    free(acc);
    free(inputs);
    free(fp);
    free(q);
    free(ovr);
    free(bits);
    return st;
}
