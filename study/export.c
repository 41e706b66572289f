/* What `export` needs from a study beyond its stored trial: the plan of a
 * trial under the study's settings (read by the one settings reader), the
 * layers' costs at the study's shapes, and activation ranges calibrated on
 * the study's data. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "eval/evaluate.h"
#include "quant/apply.h"
#include "study/study.h"

ba_status ba_study_export_resolve_costs(ba_model_t *m, const ba_study_settings_t *s, ba_error *err) {
    if (m->cost_shapes && !s->ninput_shapes) return BA_OK;
    if (s->ndata <= 0 && !s->ninput_shapes) return BA_OK;
    ba_dataset_t *ds = NULL;
    if (s->ndata > 0) BA_TRY(ba_study_settings_load_data(s, &ds, err));
    ba_status st = ba_eval_resolve_costs(m, ds, (const char *const *)s->input_shapes, s->ninput_shapes, err);
    ba_dataset_free(ds);
    return st;
}

ba_status ba_study_export_calibrate(const ba_model_t *m, const ba_study_settings_t *s,
                                    const char *data_sha256, ba_act_range_t **ranges, ba_error *err) {
    *ranges = NULL;
    if (s->ndata <= 0)
        return ba_error_set(err, BA_ERR_INPUT,
                            "activation ranges need the calibration data, and the study stores none");
    ba_dataset_t *ds = NULL;
    ba_evaluator_t *ev = NULL;
    BA_TRY(ba_study_settings_load_data(s, &ds, err));
    char sha[65];
    ba_dataset_sha256(ds, sha);
    ba_status st = BA_OK;
    if (data_sha256 && data_sha256[0] && strcmp(sha, data_sha256) != 0)
        st = ba_error_set(err, BA_ERR_INPUT, "%s: the calibration data changed since the study was made",
                          ba_dataset_path(ds, 0));
    if (st == BA_OK) st = ba_evaluator_new(m, ds, NULL, &ev, err);
    ba_act_range_t *r = NULL;
    if (st == BA_OK && !(r = ba_calloc(m->nvalues > 0 ? (size_t)m->nvalues : 1, sizeof *r, err)))
        st = BA_ERR_NOMEM;
    if (st == BA_OK) st = ba_study_calibrate_acts(ev, m, r, err);
    ba_evaluator_free(ev);
    ba_dataset_free(ds);
    if (st != BA_OK) {
        free(r);
        return st;
    }
    *ranges = r;
    return BA_OK;
}

ba_status ba_study_trial_plan(const ba_model_t *m, const char *study, const char *metric,
                              const char *const *names, int nnames, const ba_trial_t *t,
                              const ba_study_settings_t *s, ba_plan_t **out, ba_error *err) {
    *out = NULL;
    if (t->nlayers != nnames)
        return ba_error_set(err, BA_ERR_INPUT, "trial %lld of study '%s' has %d layer widths for %d layers",
                            (long long)t->number, study, t->nlayers, nnames);
    ba_plan_t *plan = NULL;
    ba_status st = ba_export_plan_from_named_bits(m, names, t->w_bits, t->nlayers, &s->quant, &plan, err);
    if (st != BA_OK) return ba_error_prefix(err, "study '%s', trial %lld", study, (long long)t->number);
    if (isfinite(t->latency)) plan->totals.latency_us = t->latency;
    st = ba_plan_set_metrics(plan, t->kl, t->agreement, t->accuracy, err);
    /* The objective and validation figures in the study's metric (a study from before --metric has none). */
    ba_metric_t mk;
    ba_error e2;
    if (st == BA_OK && metric && metric[0] && ba_metric_parse(metric, &mk, &e2) == BA_OK &&
        mk != BA_METRIC_AUTO)
        st = ba_plan_set_objective(plan, metric, ba_metric_from_objective(mk, t->objective),
                                   ba_metric_from_objective(mk, t->validation), err);
    const char *keys[BA_BUDGET_NKINDS];
    double vals[BA_BUDGET_NKINDS];
    for (int i = 0; i < s->budgets.n; i++) {
        keys[i] = ba_budget_key(s->budgets.items[i].kind);
        vals[i] = s->budgets.items[i].limit;
    }
    if (st == BA_OK)
        st = ba_plan_set_search(plan, study, t->number, s->method[0] ? s->method : t->method, s->budgets.n,
                                keys, vals, ba_study_plan_seed(s), err);
    if (st != BA_OK) {
        ba_plan_free(plan);
        return st;
    }
    *out = plan;
    return BA_OK;
}
