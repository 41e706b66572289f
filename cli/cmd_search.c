/* `bitalloc search`: see docs/search.md. Turns the flags into study settings
 * (study/study.h), runs the study with a progress line on a terminal, writes
 * the best plan and prints the summary (table, or JSON with --format json). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/format.h"
#include "cli/guard.h"
#include "cli/search_report.h"
#include "eval/external.h"

/* ---- progress ---- */

void ba_search_ui_progress(void *user, const ba_study_progress_t *p) {
    ba_search_ui_t *ui = user;
    if (strcmp(ui->phase, p->phase) != 0) {
        ba_progress_end(&ui->bar);
        snprintf(ui->phase, sizeof ui->phase, "%s", p->phase);
        snprintf(ui->label, sizeof ui->label, "%s", p->phase);
        ba_progress_start(&ui->bar, ui->label, p->total > 0 ? (uint64_t)p->total : 0, ui->quiet);
    }
    if (!strcmp(p->phase, "search")) {
        /* Generation (or draw), best objective and the first budget's use; ETA from the bar. */
        char use[32] = "";
        if (isfinite(p->budget_use)) snprintf(use, sizeof use, "  budget %.1f%%", 100.0 * p->budget_use);
        snprintf(ui->label, sizeof ui->label, "search  best %.4g%s  gen", p->best, use);
    }
    ui->bar.total = p->total > 0 ? (uint64_t)p->total : 0;
    ba_progress_update(&ui->bar, p->done > 0 ? (uint64_t)p->done : 0);
}

void ba_search_ui_warning(void *user, const char *msg) {
    ba_search_ui_t *ui = user;
    ba_progress_end(&ui->bar); /* the line is cleared first, so the warning stands on its own */
    fprintf(stderr, "bitalloc: warning: %s\n", msg);
}

/* ---- report ---- */

static void fmt_metric(double v, const char *fmt, char *buf, size_t cap) {
    if (isfinite(v))
        snprintf(buf, cap, fmt, v);
    else
        snprintf(buf, cap, "-");
}

static json_t *sweep_json(const ba_study_result_t *r) {
    json_t *a = json_array();
    for (int i = 0; i < r->nsweep; i++) {
        const ba_study_sweep_point_t *p = &r->sweep[i];
        json_t *o = json_object();
        json_object_set_new(o, "limit", json_real(p->limit));
        json_object_set_new(o, "feasible", json_boolean(p->feasible));
        json_object_set_new(o, "used", p->feasible ? ba_json_real_or_null(p->used) : json_null());
        json_object_set_new(o, "pareto", json_boolean(p->pareto));
        json_object_set_new(o, "trial", p->trial > 0 ? json_integer(p->trial) : json_null());
        json_object_set_new(o, "predicted", p->feasible ? ba_json_real_or_null(p->predicted) : json_null());
        json_object_set_new(o, "kl", ba_json_real_or_null(p->res.kl));
        json_object_set_new(o, "mse", ba_json_real_or_null(p->res.mse));
        json_object_set_new(o, "agreement", ba_json_real_or_null(p->res.agreement));
        json_object_set_new(o, "accuracy", ba_json_real_or_null(p->res.accuracy));
        json_t *bits = json_object();
        for (int l = 0; p->bits && l < r->nlayers; l++)
            json_object_set_new(bits, r->layer_names[l], json_integer(p->bits[l]));
        json_object_set_new(o, "bits", p->feasible ? bits : (json_decref(bits), json_null()));
        json_array_append_new(a, o);
    }
    return a;
}

static int report_sweep(const ba_cli_opts *o, const ba_study_result_t *r) {
    const char *fmt = ba_cli_get_or(o, "format", "table");
    if (!strcmp(fmt, "json")) {
        json_t *j = json_object();
        json_object_set_new(j, "study", json_string(r->study));
        json_object_set_new(j, "sweep", json_string(ba_budget_key((ba_budget_kind_t)r->sweep_key)));
        json_object_set_new(j, "points", sweep_json(r));
        int rc = ba_json_print(stdout, j);
        json_decref(j);
        return rc == 0 ? BA_EXIT_OK : BA_EXIT_RUNTIME;
    }
    const char *key = ba_budget_key((ba_budget_kind_t)r->sweep_key);
    const char *hdr[] = {key, "used", "pareto", "trial", "predicted", "kl", "agreement", "accuracy", "bits"};
    ba_table_t *t = ba_table_new(9, hdr, NULL);
    if (!t) return BA_EXIT_RUNTIME;
    for (int i = 0; i < r->nsweep; i++) {
        const ba_study_sweep_point_t *p = &r->sweep[i];
        char lim[64], used[64], pred[32], kl[32], ag[32], acc[32], tr[24], bits[512] = "";
        ba_budget_format((ba_budget_kind_t)r->sweep_key, p->limit, lim, sizeof lim);
        if (!p->feasible) {
            const char *c[] = {lim, NULL, "infeasible", NULL, NULL, NULL, NULL, NULL, NULL};
            ba_table_add(t, c);
            continue;
        }
        size_t n = 0;
        for (int l = 0; l < r->nlayers && n + 8 < sizeof bits; l++)
            n += (size_t)snprintf(bits + n, sizeof bits - n, "%s%d", l ? "," : "", p->bits[l]);
        snprintf(tr, sizeof tr, "%lld", (long long)p->trial);
        ba_budget_format((ba_budget_kind_t)r->sweep_key, p->used, used, sizeof used);
        fmt_metric(p->predicted, "%.4g", pred, sizeof pred);
        fmt_metric(p->res.kl, "%.5f", kl, sizeof kl);
        fmt_metric(100 * p->res.agreement, "%.2f%%", ag, sizeof ag);
        fmt_metric(100 * p->res.accuracy, "%.2f%%", acc, sizeof acc);
        const char *c[] = {lim, used, p->pareto ? "yes" : "no", tr, pred, kl, ag, acc, bits};
        ba_table_add(t, c);
    }
    printf("study %s: Pareto sweep of %s (%d points, %lld trials)\n\n", r->study, key, r->nsweep,
           (long long)r->ntrials);
    ba_table_print(t, stdout);
    ba_table_free(t);
    return fflush(stdout) == 0 ? BA_EXIT_OK : BA_EXIT_RUNTIME;
}

ba_status ba_search_study_settings(const char *path, const char *name, ba_study_settings_t *s,
                                   ba_error *err) {
    ba_db_t *db;
    BA_TRY(ba_db_open(path, BA_DB_OPEN_READONLY, &db, err));
    ba_study_info_t info;
    ba_status st = ba_db_study_get(db, name, &info, err);
    if (st == BA_OK) {
        st = ba_study_settings_from_json(info.settings, s, err);
        ba_db_study_info_free(&info);
    }
    ba_db_close(db);
    return st;
}

int ba_search_finish(const ba_cli_opts *o, ba_status st, const ba_error *err, ba_search_ui_t *ui,
                     const ba_study_result_t *r, const char *plan_out, const ba_study_settings_t *s) {
    ba_progress_end(&ui->bar);
    if (st != BA_OK) {
        ba_cli_error("%s", err->msg);
        return ba_status_exit_code(st);
    }
    return ba_search_report(o, r, plan_out, s);
}

int ba_search_report(const ba_cli_opts *o, const ba_study_result_t *r, const char *plan_out,
                     const ba_study_settings_t *s) {
    if (r->sweep_key >= 0) return report_sweep(o, r);
    ba_error err = {0};
    const ba_plan_t *pl = r->plan;
    if (plan_out) {
        /* Again now that the database exists: the plan must not replace it or an input. */
        if (ba_cli_check_output(o, "--plan-out", plan_out, s, NULL, 0, &err) != BA_OK ||
            ba_plan_write(plan_out, pl, &err) != BA_OK) {
            ba_cli_error("%s", err.msg);
            return ba_status_exit_code(err.code);
        }
    }
    const char *fmt = ba_cli_get_or(o, "format", "table");
    if (!strcmp(fmt, "json")) {
        char *text = NULL;
        if (ba_plan_to_json(pl, &text, &err) != BA_OK) {
            ba_cli_error("%s", err.msg);
            return BA_EXIT_RUNTIME;
        }
        json_error_t je;
        json_t *plan = json_loads(text, JSON_DECODE_ANY, &je);
        free(text);
        json_t *j = json_object();
        json_object_set_new(j, "study", json_string(r->study));
        json_object_set_new(j, "method", json_string(r->method));
        json_object_set_new(j, "trial", json_integer(r->trial));
        json_object_set_new(j, "trials", json_integer(r->ntrials));
        json_object_set_new(j, "evaluations", json_integer(r->nevals));
        json_object_set_new(j, "measured", json_integer(r->nmeasured));
        json_object_set_new(j, "metric", r->metric[0] ? json_string(r->metric) : json_null());
        json_object_set_new(j, "objective", ba_json_real_or_null(ba_study_result_metric(r)));
        json_object_set_new(j, "validation", ba_json_real_or_null(r->validation));
        if (r->search_seconds > 0)
            json_object_set_new(
                j, "timing",
                json_pack("{s:f, s:f}", "search_s", r->search_seconds, "evaluate_s", r->eval_seconds));
        json_object_set_new(j, "resumed_complete", json_boolean(r->was_complete));
        json_object_set_new(j, "plan_out", plan_out ? json_string(plan_out) : json_null());
        json_object_set_new(j, "plan", plan ? plan : json_null());
        int rc = ba_json_print(stdout, j);
        json_decref(j);
        return rc == 0 ? BA_EXIT_OK : BA_EXIT_RUNTIME;
    }
    char mem[64], bops[32], kl[32], ag[32], acc[32];
    ba_fmt_bytes((double)pl->totals.memory_bytes, mem, sizeof mem);
    ba_fmt_count(pl->totals.bops, bops, sizeof bops);
    fmt_metric(r->res.kl, "%.6f", kl, sizeof kl);
    fmt_metric(100 * r->res.agreement, "%.2f%%", ag, sizeof ag);
    fmt_metric(100 * r->res.accuracy, "%.2f%%", acc, sizeof acc);
    printf("study     %s%s\n", r->study, r->was_complete ? " (already complete)" : "");
    printf("method    %s, %lld trials, %lld measured (%lld in this run), %.1f s\n", r->method,
           (long long)r->ntrials, (long long)r->nmeasured, (long long)r->nevals, r->seconds);
    printf("best      trial %lld: avg-bits %.3f, memory %s, bops %s", (long long)r->trial,
           pl->totals.avg_bits, mem, bops);
    if (isfinite(pl->totals.latency_us)) printf(", latency %.1f us", pl->totals.latency_us);
    printf("\nmetrics   KL %s, agreement %s, accuracy %s\n", kl, ag, acc);
    if (r->metric[0]) {
        char ov[32], vv[32];
        fmt_metric(ba_study_result_metric(r), "%.6g", ov, sizeof ov);
        fmt_metric(r->validation, "%.6g", vv, sizeof vv);
        printf("objective %s %s", r->metric, ov);
        if (isfinite(r->validation)) printf(" (validation %s)", vv);
        printf("\n");
    }
    if (plan_out) printf("plan      %s\n", plan_out);
    printf("\n");
    const char *hdr[] = {"layer", "op", "params", "w_bits"};
    ba_table_t *t = ba_table_new(4, hdr, NULL);
    if (!t) return BA_EXIT_RUNTIME;
    for (int l = 0; l < pl->nlayers; l++) {
        char params[32], wb[8];
        snprintf(params, sizeof params, "%lld", (long long)pl->layers[l].params);
        snprintf(wb, sizeof wb, "%d", pl->layers[l].w_bits);
        const char *c[] = {pl->layers[l].name, pl->layers[l].op, params, wb};
        ba_table_add(t, c);
    }
    ba_table_print(t, stdout);
    ba_table_free(t);
    return fflush(stdout) == 0 ? BA_EXIT_OK : BA_EXIT_RUNTIME;
}

/* ---- settings from flags ---- */

static ba_status settings_from_opts(const ba_cli_opts *o, ba_study_settings_t *s, ba_error *err) {
    ba_study_settings_init(s);
    BA_TRY(ba_study_settings_set_path(&s->model, ba_cli_get(o, "model"), err));
    for (size_t i = 0; i < ba_cli_count(o, "data"); i++)
        BA_TRY(ba_study_settings_add_data(s, ba_cli_value(o, "data", i), err));
    for (size_t i = 0; i < ba_cli_count(o, "input-shape"); i++) {
        if (s->ninput_shapes >= BA_STUDY_MAX_DATA)
            return ba_error_set(err, BA_ERR_INPUT, "--input-shape: more than %d inputs", BA_STUDY_MAX_DATA);
        s->input_shapes[s->ninput_shapes] = ba_strdup(ba_cli_value(o, "input-shape", i), err);
        if (!s->input_shapes[s->ninput_shapes]) return BA_ERR_NOMEM;
        s->ninput_shapes++;
    }
    for (size_t i = 0; i < ba_cli_count(o, "sample-axis"); i++)
        BA_TRY(ba_study_settings_add_sample_axis(s, ba_cli_value(o, "sample-axis", i), err));
    if (ba_cli_has(o, "labels")) BA_TRY(ba_study_settings_set_path(&s->labels, ba_cli_get(o, "labels"), err));
    for (size_t i = 0; i < ba_cli_count(o, "budget"); i++) {
        ba_status st = ba_budget_set_add(&s->budgets, ba_cli_value(o, "budget", i), err);
        if (st != BA_OK) return ba_error_prefix(err, "--budget");
    }
    if (ba_cli_has(o, "sweep")) {
        if (ba_budget_sweep_parse(ba_cli_get(o, "sweep"), &s->sweep, err) != BA_OK)
            return ba_error_prefix(err, "--sweep");
        s->has_sweep = 1;
    }
    snprintf(s->method, sizeof s->method, "%s", ba_cli_get_or(o, "method", "ilp+evo"));
    int needs_omega = ba_study_needs_sensitivity(s); /* nsga2 too: seeded from the ILP sweep */
    if (ba_cli_has(o, "sensitivity-file")) {
        s->sensitivity[0] = '\0';
        BA_TRY(ba_study_settings_set_path(&s->sensitivity_file, ba_cli_get(o, "sensitivity-file"), err));
        BA_TRY(ba_sha256_file(s->sensitivity_file, s->sensitivity_file_sha256, err));
    } else if (ba_cli_has(o, "sensitivity"))
        snprintf(s->sensitivity, sizeof s->sensitivity, "%s", ba_cli_get(o, "sensitivity"));
    else if (!needs_omega)
        s->sensitivity[0] = '\0'; /* random, uniform and evo search on the measured objective alone */
    int named = 0;                /* --bits names ggml types: a llama.cpp target */
    if (ba_cli_has(o, "bits")) {
        int order[BA_BITS_MAX_CANDIDATES], n;
        if (ba_bits_parse_list_named(ba_cli_get(o, "bits"), order, &n, &named, err) != BA_OK ||
            ba_bits_parse(ba_cli_get(o, "bits"), s->bits, &s->nbits, err) != BA_OK)
            return ba_error_prefix(err, "--bits");
    }
    if (ba_cli_has(o, "backend")) {
        BA_TRY(ba_quant_cfg_parse_backend(ba_cli_get(o, "backend"), &s->quant, err));
        if (named && s->quant.backend != BA_BACKEND_LLAMA)
            return ba_error_set(err, BA_ERR_INPUT,
                                "--bits: ggml type names (%s) target llama.cpp, not --backend %s",
                                ba_cli_get(o, "bits"), ba_cli_get(o, "backend"));
    } else if (named) {
        s->quant.backend = BA_BACKEND_LLAMA;
    }
    for (size_t i = 0; i < ba_cli_count(o, "pin"); i++) {
        if (s->npins >= BA_STUDY_MAX_RULES)
            return ba_error_set(err, BA_ERR_INPUT, "--pin: more than %d", BA_STUDY_MAX_RULES);
        if (!(s->pins[s->npins++] = ba_strdup(ba_cli_value(o, "pin", i), err))) return BA_ERR_NOMEM;
    }
    for (size_t i = 0; i < ba_cli_count(o, "tie"); i++) {
        if (s->nties >= BA_STUDY_MAX_RULES)
            return ba_error_set(err, BA_ERR_INPUT, "--tie: more than %d", BA_STUDY_MAX_RULES);
        if (!(s->ties[s->nties++] = ba_strdup(ba_cli_value(o, "tie", i), err))) return BA_ERR_NOMEM;
    }
    s->seed = ba_cli_get_u64(o, "seed", 0);
    s->generations = (int)ba_cli_get_int(o, "generations", BA_EVO_DEFAULT_GENERATIONS);
    s->offspring = (int)ba_cli_get_int(o, "offspring", BA_EVO_DEFAULT_OFFSPRING);
    if (s->offspring < 1) return ba_error_set(err, BA_ERR_INPUT, "--offspring: must be at least 1");
    if (s->offspring < 2 && !strcmp(s->method, "nsga2"))
        return ba_error_set(err, BA_ERR_INPUT, "--offspring: nsga2 needs a population of at least 2");
    if (ba_cli_has(o, "latency-table"))
        BA_TRY(ba_study_settings_set_path(&s->latency_table, ba_cli_get(o, "latency-table"), err));
    if (ba_cli_has(o, "hw")) {
        const char *hw = ba_cli_get(o, "hw");
        if (strchr(hw, '/'))
            BA_TRY(ba_study_settings_set_path(&s->hw, hw, err));
        else if (!(s->hw = ba_strdup(hw, err)))
            return BA_ERR_NOMEM;
    }
    if (ba_cli_has(o, "scheme")) BA_TRY(ba_quant_cfg_parse_scheme(ba_cli_get(o, "scheme"), &s->quant, err));
    if (ba_cli_has(o, "granularity"))
        BA_TRY(ba_quant_cfg_parse_granularity(ba_cli_get(o, "granularity"), &s->quant, err));
    if (ba_cli_has(o, "clip")) BA_TRY(ba_quant_cfg_parse_clip(ba_cli_get(o, "clip"), &s->quant, err));
    s->quant.act_bits = (int)ba_cli_get_int(o, "act-bits", 0);
    if (ba_cli_has(o, "loss"))
        s->loss = !strcmp(ba_cli_get(o, "loss"), "ce") ? BA_SENS_LOSS_CE : BA_SENS_LOSS_MSE;
    s->tol = ba_cli_get_double(o, "tol", BA_SENS_DEFAULT_TOL);
    if (ba_cli_has(o, "evaluator")) {
        if (ba_cli_has(o, "metric"))
            return ba_error_set(err, BA_ERR_INPUT,
                                "--metric: not with --evaluator (the evaluator's score is the objective)");
        s->evaluator = ba_strdup(ba_cli_get(o, "evaluator"), err);
        if (!s->evaluator) return BA_ERR_NOMEM;
        s->evaluator_timeout = ba_cli_get_double(o, "evaluator-timeout", BA_EXTEV_DEFAULT_TIMEOUT);
        if (!(s->evaluator_timeout > 0))
            return ba_error_set(err, BA_ERR_INPUT, "--evaluator-timeout: must be above 0");
    }
    if (ba_cli_has(o, "metric")) snprintf(s->metric, sizeof s->metric, "%s", ba_cli_get(o, "metric"));
    s->validation_fraction =
        ba_cli_get_double(o, "validation-fraction", BA_STUDY_DEFAULT_VALIDATION_FRACTION);
    if (ba_cli_has(o, "extra-seed"))
        snprintf(s->extra_seed, sizeof s->extra_seed, "%s", ba_cli_get(o, "extra-seed"));
    if (!(s->validation_fraction < 1))
        return ba_error_set(err, BA_ERR_INPUT, "--validation-fraction: %g is not below 1",
                            s->validation_fraction);
    s->probes = (int)ba_cli_get_int(o, "samples", BA_SENS_DEFAULT_PROBES);
    s->include_embeddings = ba_cli_has(o, "include-embeddings");
    return BA_OK;
}

int ba_cmd_search(const ba_cli_opts *o) {
    ba_error err = {0};
    ba_study_settings_t s;
    ba_status st = settings_from_opts(o, &s, &err);
    if (st != BA_OK) {
        ba_study_settings_free(&s);
        ba_cli_error("%s", err.msg);
        return ba_status_exit_code(st);
    }
    ba_db_t *db = NULL;
    const char *dbpath = ba_cli_db_path(o);
    /* Bad input is reported before a database is created or a study named. */
    st = ba_cli_check_output(o, "--plan-out", ba_cli_get(o, "plan-out"), &s, NULL, 0, &err);
    if (st == BA_OK) st = ba_study_validate(&s, &err);
    if (st == BA_OK) st = ba_db_open(dbpath, 1, &db, &err);
    ba_study_result_t r = {0};
    ba_search_ui_t ui = {.quiet = ba_cli_verbosity(o) < 0};
    ba_study_callbacks_t cb = {ba_search_ui_progress, &ui, ba_search_ui_warning};
    char name[256];
    if (ba_cli_has(o, "study"))
        snprintf(name, sizeof name, "%s", ba_cli_get(o, "study"));
    else {
        /* Said before the run starts, so an interrupted run can be resumed by name. */
        ba_study_name(s.model, name, sizeof name);
        char shown[4096];
        ba_db_url_masked(dbpath, shown, sizeof shown);
        if (st == BA_OK && ba_cli_verbosity(o) >= 0)
            fprintf(stderr, "bitalloc: study '%s' (in %s)\n", name, shown);
    }
    /* On a shared database the search is one worker of the study (docs/worker.md). */
    ba_study_work_t w = {.lease_s = ba_cli_get_double(o, "lease", BA_STUDY_WORK_LEASE_S),
                         .max_attempts = (int)ba_cli_get_int(o, "max-attempts", BA_STUDY_WORK_MAX_ATTEMPTS)};
    if (st == BA_OK) st = ba_cli_check_work(&w, &err);
    if (st == BA_OK) st = ba_study_search_as(db, name, &s, ba_db_is_shared(db) ? &w : NULL, &cb, &r, &err);
    int rc = ba_search_finish(o, st, &err, &ui, &r, ba_cli_get(o, "plan-out"), &s);
    ba_study_result_free(&r);
    ba_db_close(db);
    ba_study_settings_free(&s);
    return rc;
}
