/* `bitalloc eval`: see docs/eval.md. FP metrics of the model on --data, and
 * with --plan the plan's quantized model side by side (accuracy, top-1
 * agreement, KL, MSE, SQNR): the plan is checked against the model (layers,
 * sha256), its quantizer settings and act_bits apply, activations are
 * calibrated on the same data. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/format.h"
#include "cli/guard.h"

typedef struct {
    ba_model_t *m;
    ba_dataset_t *ds;
    int64_t *labels;
    int64_t nlabels;
    ba_plan_t *plan;
    int *bits;
    ba_evaluator_t *ev;
    ba_wcache_t *wc;
    ba_tensor_t **overrides;
    ba_act_range_t *ranges;
    ba_tensor_t *q_out;
    ba_metric_t metric; /* --metric, or the search's default for this output */
} eval_state_t;

static void state_free(eval_state_t *s) {
    ba_tensor_unref(s->q_out);
    free(s->ranges);
    free(s->overrides);
    ba_wcache_free(s->wc);
    ba_evaluator_free(s->ev);
    free(s->bits);
    ba_plan_free(s->plan);
    free(s->labels);
    ba_dataset_free(s->ds);
    ba_model_free(s->m);
}

static ba_status load_all(const ba_cli_opts *o, eval_state_t *s, ba_error *err) {
    BA_TRY(ba_model_load(ba_cli_get(o, "model"), NULL, &s->m, err));
    const ba_cli_entry *d = ba_cli_find(o, "data"), *ax = ba_cli_find(o, "sample-axis");
    BA_TRY(ba_eval_data_load(s->m, (const char *const *)d->vals, (int)d->n,
                             ax ? (const char *const *)ax->vals : NULL, ax ? (int)ax->n : 0, &s->ds, err));
    BA_TRY(ba_eval_resolve_costs(s->m, s->ds, NULL, 0, err)); /* shapes checked, MACs at the data's */
    const char *lp = ba_cli_get(o, "labels");
    if (lp) BA_TRY(ba_labels_load(lp, &s->labels, &s->nlabels, err));
    const char *pp = ba_cli_get(o, "plan");
    if (pp) {
        BA_TRY(ba_plan_read(pp, &s->plan, err));
        BA_TRY(ba_plan_validate(s->plan, s->m, 1, err));
        int differed;
        char why[BA_ERROR_MSG_MAX];
        BA_TRY(ba_plan_check_totals(s->plan, s->m, &differed, why, sizeof why, err));
        if (differed) fprintf(stderr, "bitalloc: warning: %s; using the recomputed totals\n", why);
        s->bits = ba_calloc((size_t)s->m->nlayers + 1, sizeof(int), err);
        if (!s->bits) return BA_ERR_NOMEM;
        BA_TRY(ba_plan_bits(s->plan, s->m, s->bits, err));
    }
    ba_eval_opts_t eo = {.labels = s->labels, .nlabels = s->nlabels, .labels_path = lp};
    return ba_evaluator_new(s->m, s->ds, &eo, &s->ev, err);
}

static ba_status run_plan(eval_state_t *s, int save, ba_metrics_t *qm, ba_error *err) {
    const ba_model_t *m = s->m;
    const ba_quant_cfg_t *cfg = &s->plan->quantizer;
    BA_TRY(ba_wcache_new(m, cfg, &s->wc, err));
    s->overrides = ba_calloc((size_t)m->nvalues + 1, sizeof *s->overrides, err);
    if (!s->overrides) return BA_ERR_NOMEM;
    BA_TRY(ba_wcache_overrides(s->wc, s->bits, s->overrides, err));
    ba_quant_acts_t acts = {0};
    if (cfg->act_bits > 0) {
        s->ranges = ba_calloc((size_t)m->nvalues + 1, sizeof *s->ranges, err);
        if (!s->ranges) return BA_ERR_NOMEM;
        BA_TRY(ba_study_calibrate_acts(s->ev, m, s->ranges, err));
        acts.act_bits = cfg->act_bits;
        acts.act_ranges = s->ranges;
    }
    unsigned char *mark = ba_calloc((size_t)m->nvalues + 1, 1, err);
    if (!mark) return BA_ERR_NOMEM;
    ba_quant_acts_mark(m, &acts, mark);
    ba_eval_hook_t hook = {ba_quant_act_hook, &acts, mark};
    ba_status st = ba_evaluator_run(s->ev, s->overrides, ba_quant_acts_on(&acts) ? &hook : NULL, 0, qm,
                                    save ? &s->q_out : NULL, err);
    free(mark);
    return st;
}

static json_t *out_json(const eval_state_t *s) {
    const ba_tensor_t *fp = ba_evaluator_fp_output(s->ev);
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(s->m->values[s->m->outputs[0]].name));
    json_t *sh = json_array();
    for (int d = 0; d < fp->ndim; d++) json_array_append_new(sh, json_integer(fp->shape[d]));
    json_object_set_new(o, "shape", sh);
    json_object_set_new(o, "distribution", json_boolean(ba_evaluator_is_prob(s->ev) == 1));
    return o;
}

/* The quantized-only metrics, in the order both output formats list them. */
#define NQ_METRICS 6
typedef struct {
    const char *name;
    double value;
} metric_row_t;

static void quant_metrics(const ba_metrics_t *qm, metric_row_t rows[NQ_METRICS]) {
    const metric_row_t r[NQ_METRICS] = {
        {"agreement", qm->agreement}, {"kl", qm->kl},         {"mse", qm->mse},
        {"sqnr_db", qm->sqnr_db},     {"relmse", qm->relmse}, {"cosine", qm->cosine}};
    memcpy(rows, r, sizeof r);
}

static int print_json(const eval_state_t *s, const ba_metrics_t *fm, const ba_metrics_t *qm) {
    json_t *r = json_object();
    json_object_set_new(r, "model", json_string(s->m->path));
    json_object_set_new(r, "samples", json_integer(ba_evaluator_samples(s->ev)));
    json_object_set_new(r, "output", out_json(s));
    json_object_set_new(r, "plan", s->plan ? json_string(s->plan->file ? s->plan->file : "") : json_null());
    json_object_set_new(r, "metric", json_string(ba_metric_name(s->metric)));
    json_t *f = json_object();
    json_object_set_new(f, "accuracy", ba_json_real_or_null(fm->accuracy_fp));
    json_object_set_new(r, "fp", f);
    if (qm) {
        json_t *q = json_object();
        json_object_set_new(q, "accuracy", ba_json_real_or_null(qm->accuracy_q));
        metric_row_t rows[NQ_METRICS];
        quant_metrics(qm, rows);
        /* Identical outputs make SQNR +inf, which JSON cannot hold: null. */
        for (int i = 0; i < NQ_METRICS; i++)
            json_object_set_new(q, rows[i].name, ba_json_real_or_null(rows[i].value));
        /* The value of "metric" (the search objective for this output), in its own direction. */
        json_object_set_new(q, "metric_value", ba_json_real_or_null(ba_metric_value(s->metric, qm)));
        json_object_set_new(q, "act_bits",
                            s->plan->quantizer.act_bits ? json_integer(s->plan->quantizer.act_bits)
                                                        : json_null());
        json_object_set_new(q, "avg_bits", ba_json_real_or_null(s->plan->totals.avg_bits));
        json_object_set_new(r, "quantized", q);
    }
    int rc = ba_json_print(stdout, r);
    json_decref(r);
    return rc == 0 ? BA_EXIT_OK : BA_EXIT_RUNTIME;
}

static void fmt_metric(double v, char *buf, size_t cap) {
    if (isnan(v))
        snprintf(buf, cap, "-");
    else if (isinf(v))
        snprintf(buf, cap, "%sinf", v < 0 ? "-" : "");
    else
        snprintf(buf, cap, "%.6g", v);
}

static int print_table(const eval_state_t *s, const ba_metrics_t *fm, const ba_metrics_t *qm) {
    const ba_tensor_t *fp = ba_evaluator_fp_output(s->ev);
    char sb[160];
    printf("model    %s\nsamples  %lld\noutput   %s %s%s\n", s->m->path,
           (long long)ba_evaluator_samples(s->ev), s->m->values[s->m->outputs[0]].name,
           ba_shape_str(fp->ndim, fp->shape, sb, sizeof sb),
           ba_evaluator_is_prob(s->ev) == 1 ? " (class distribution)" : " (logits: softmax taken)");
    printf("metric   %s (the search objective for this output)\n", ba_metric_name(s->metric));
    if (s->plan)
        printf("plan     %s (avg %.4g bits, activations %s)\n", s->plan->file ? s->plan->file : "",
               s->plan->totals.avg_bits, s->plan->quantizer.act_bits ? "quantized" : "float");
    printf("\n");
    static const char *const hdr2[] = {"metric", "fp"}, *const hdr3[] = {"metric", "fp", "quantized"};
    ba_table_t *t = ba_table_new(qm ? 3 : 2, qm ? hdr3 : hdr2, NULL);
    if (!t) return BA_EXIT_RUNTIME;
    char a[64], b[64];
    fmt_metric(fm->accuracy_fp, a, sizeof a);
    if (!qm) {
        ba_table_addf(t, "accuracy\t%s", a);
    } else {
        fmt_metric(qm->accuracy_q, b, sizeof b);
        ba_table_addf(t, "accuracy\t%s\t%s", a, b);
        metric_row_t rows[NQ_METRICS];
        quant_metrics(qm, rows);
        for (int i = 0; i < NQ_METRICS; i++) {
            fmt_metric(rows[i].value, b, sizeof b);
            ba_table_addf(t, "%s\t-\t%s", rows[i].name, b);
        }
    }
    ba_table_print(t, stdout);
    ba_table_free(t);
    return BA_EXIT_OK;
}

int ba_cmd_eval(const ba_cli_opts *o) {
    ba_error err;
    ba_error_clear(&err);
    eval_state_t s = {0};
    ba_metrics_t fm, qm;
    const char *save = ba_cli_get(o, "save-output");
    ba_status st = ba_cli_check_output(o, "--save-output", save, NULL, NULL, 0, &err);
    if (st == BA_OK) st = load_all(o, &s, &err);
    if (st == BA_OK) {
        s.metric = ba_evaluator_default_metric(s.ev);
        if (ba_cli_has(o, "metric")) st = ba_metric_parse(ba_cli_get(o, "metric"), &s.metric, &err);
    }
    if (st == BA_OK) st = ba_evaluator_fp_metrics(s.ev, 0, &fm, &err);
    if (st == BA_OK && s.plan) st = run_plan(&s, save != NULL, &qm, &err);
    if (st == BA_OK && save) st = ba_npy_save(save, s.q_out ? s.q_out : ba_evaluator_fp_output(s.ev), &err);
    int rc;
    if (st != BA_OK) {
        ba_cli_error("%s", err.msg);
        rc = ba_status_exit_code(st);
    } else {
        int json = strcmp(ba_cli_get_or(o, "format", "table"), "json") == 0;
        rc = json ? print_json(&s, &fm, s.plan ? &qm : NULL) : print_table(&s, &fm, s.plan ? &qm : NULL);
        /* Printed as unknown (- / null), never as a perfect score; and the run failed (SPEC §8). */
        if (s.plan && qm.nonfinite_q) {
            ba_cli_error("%s: the quantized model's output is not finite (NaN or Inf) in %lld of %lld rows",
                         s.plan->file ? s.plan->file : "--plan", (long long)qm.nonfinite_q,
                         (long long)qm.rows);
            rc = BA_EXIT_RUNTIME;
        }
    }
    state_free(&s);
    return rc;
}
