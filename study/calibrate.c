/* Calibration of activation ranges (SPEC §3 --act-bits): the FP model runs over
 * the evaluator's samples (eval/) and every activation quant/ targets widens
 * its range (quant/). It lives here, above both, so that eval/ and quant/ do
 * not include each other. */
#include <stdlib.h>

#include "core/util.h"
#include "eval/evaluate.h"
#include "quant/apply.h"
#include "study/study.h"

typedef struct {
    const unsigned char *mark;
    ba_act_range_t *ranges;
    const ba_model_t *m;
} calib_ctx_t;

static ba_status observe(void *vctx, const ba_model_t *m, int v, ba_tensor_t **t, ba_error *err) {
    (void)m;
    calib_ctx_t *c = vctx;
    if (!c->mark[v] || !ba_dtype_is_float((*t)->dtype)) return BA_OK;
    return ba_quant_act_range_update(&c->ranges[v], *t, err);
}

static ba_status observe_inputs(void *vctx, ba_tensor_t *const *ins, ba_tensor_t *const *outs, int64_t start,
                                int64_t count, ba_error *err) {
    (void)outs, (void)start, (void)count;
    calib_ctx_t *c = vctx;
    for (int k = 0; k < c->m->ninputs; k++) {
        int v = c->m->inputs[k];
        if (c->mark[v] && ba_dtype_is_float(ins[k]->dtype))
            BA_TRY(ba_quant_act_range_update(&c->ranges[v], ins[k], err));
    }
    return BA_OK;
}

ba_status ba_study_calibrate_acts(const ba_evaluator_t *ev, const ba_model_t *m, ba_act_range_t *ranges,
                                  ba_error *err) {
    for (int v = 0; v < m->nvalues; v++) ba_quant_act_range_init(&ranges[v]);
    unsigned char *mark = ba_calloc((size_t)m->nvalues + 1, 1, err);
    if (!mark) return BA_ERR_NOMEM;
    ba_quant_act_targets(m, mark);
    calib_ctx_t c = {mark, ranges, m};
    ba_run_opts_t opts = {.on_value = observe, .ctx = &c};
    /* No padding: zero rows would widen the ranges of later activations. */
    ba_status st = ba_evaluator_forward(ev, 0, 0, &opts, observe_inputs, &c, err);
    free(mark);
    return st;
}
