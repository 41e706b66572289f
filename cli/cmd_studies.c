/* `bitalloc studies`: the studies of a database, newest first, with their best
 * trial (see docs/studies.md). Reads only: a missing database is an error, never
 * created here. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/format.h"
#include "eval/metrics.h"

/* Significant digits of kl in the table (CSV and JSON carry every digit). */
#define STUDIES_KL_DIGITS 4

typedef struct {
    int64_t best_trial; /* -1: no complete trial */
    double best_kl;     /* NAN when none / NULL */
    double best_obj;    /* the best trial's value of the study's metric (NAN when none) */
    char method[32];
    json_t *budgets; /* borrowed from settings JSON (NULL when absent) */
    json_t *settings;
} study_extra_t;

static ba_status study_extra(ba_db_t *db, const ba_study_info_t *s, study_extra_t *x, ba_error *err) {
    memset(x, 0, sizeof *x);
    x->best_trial = -1;
    x->best_kl = x->best_obj = NAN;
    ba_trial_query_t q = {.best = 1};
    ba_trial_t *t;
    int n;
    BA_TRY(ba_db_trials_query(db, s->id, &q, &t, &n, err));
    if (n == 1) {
        x->best_trial = t[0].number;
        x->best_kl = t[0].kl;
        ba_metric_t m;
        ba_error e2;
        if (s->metric[0] && ba_metric_parse(s->metric, &m, &e2) == BA_OK)
            x->best_obj = ba_metric_from_objective(m, t[0].objective);
    }
    ba_db_trials_free(t, n);
    /* The settings are the search's; a study stored by another tool may hold other keys. */
    x->settings = json_loads(s->settings ? s->settings : "{}", 0, NULL);
    if (json_is_object(x->settings)) {
        json_t *m = json_object_get(x->settings, "method");
        if (json_is_string(m)) snprintf(x->method, sizeof x->method, "%s", json_string_value(m));
        json_t *b = json_object_get(x->settings, "budgets");
        if (json_is_object(b)) x->budgets = b;
    }
    return BA_OK;
}

static int print_table(const ba_study_info_t *s, const study_extra_t *x, int n, int csv) {
    static const char *const hdr[] = {"name",    "created", "model",         "method",
                                      "state",   "trials",  "complete",      "best_trial",
                                      "best_kl", "metric",  "best_objective"};
    static const char *const thdr[] = {"name",   "created", "model", "method", "state",
                                       "trials", "best",    "kl",    "metric", "objective"};
    if (csv) {
        ba_csv_row(stdout, sizeof hdr / sizeof hdr[0], hdr);
        for (int i = 0; i < n; i++) {
            char total[32], comp[32], best[32], kl[40], ob[40];
            ba_fmt_real(x[i].best_obj, ob, sizeof ob);
            snprintf(total, sizeof total, "%lld", (long long)s[i].ntrials);
            snprintf(comp, sizeof comp, "%lld", (long long)s[i].ncomplete);
            if (x[i].best_trial >= 0)
                snprintf(best, sizeof best, "%lld", (long long)x[i].best_trial);
            else
                best[0] = '\0';
            ba_fmt_real(x[i].best_kl, kl, sizeof kl);
            const char *row[] = {
                s[i].name, s[i].created, s[i].model_path, x[i].method, s[i].state, total, comp,
                best,      kl,           s[i].metric,     ob};
            ba_csv_row(stdout, sizeof row / sizeof row[0], row);
        }
        return 0;
    }
    ba_table_t *t = ba_table_new(sizeof thdr / sizeof thdr[0], thdr, NULL);
    if (!t) return -1;
    int bad = 0;
    for (int i = 0; !bad && i < n; i++) {
        char trials[64], best[32], kl[40], ob[40];
        snprintf(ob, sizeof ob, "%.*g", STUDIES_KL_DIGITS, x[i].best_obj);
        snprintf(trials, sizeof trials, "%lld/%lld", (long long)s[i].ncomplete, (long long)s[i].ntrials);
        snprintf(best, sizeof best, "%lld", (long long)x[i].best_trial);
        snprintf(kl, sizeof kl, "%.*g", STUDIES_KL_DIGITS, x[i].best_kl);
        const char *row[] = {s[i].name,
                             s[i].created,
                             s[i].model_path,
                             x[i].method[0] ? x[i].method : NULL,
                             s[i].state,
                             trials,
                             x[i].best_trial >= 0 ? best : NULL,
                             isfinite(x[i].best_kl) ? kl : NULL,
                             s[i].metric[0] ? s[i].metric : NULL,
                             isfinite(x[i].best_obj) ? ob : NULL};
        bad = ba_table_add(t, row) != 0;
    }
    return ba_table_print_free(t, bad, stdout);
}

typedef struct {
    const ba_study_info_t *s;
    const study_extra_t *x;
} study_rows_t;

static int study_json(json_t *o, int i, void *ctx) {
    const study_rows_t *r = ctx;
    const ba_study_info_t *s = &r->s[i];
    const study_extra_t *x = &r->x[i];
    int bad = 0;
    bad |= json_object_set_new(o, "name", ba_json_string_lossy(s->name)) != 0;
    bad |= json_object_set_new(o, "created", ba_json_string_lossy(s->created)) != 0;
    bad |= json_object_set_new(o, "model", ba_json_string_lossy(s->model_path)) != 0;
    bad |= json_object_set_new(o, "model_sha256", ba_json_string_lossy(s->model_sha256)) != 0;
    bad |= json_object_set_new(o, "method", x->method[0] ? json_string(x->method) : json_null()) != 0;
    bad |= json_object_set_new(o, "budgets", x->budgets ? json_deep_copy(x->budgets) : json_null()) != 0;
    bad |= json_object_set_new(o, "state", ba_json_string_lossy(s->state)) != 0;
    bad |= json_object_set_new(o, "trials", json_integer(s->ntrials)) != 0;
    bad |= json_object_set_new(o, "complete", json_integer(s->ncomplete)) != 0;
    bad |= json_object_set_new(o, "best_trial",
                               x->best_trial >= 0 ? json_integer(x->best_trial) : json_null()) != 0;
    bad |= json_object_set_new(o, "best_kl", ba_json_real_or_null(x->best_kl)) != 0;
    bad |= json_object_set_new(o, "metric", s->metric[0] ? json_string(s->metric) : json_null()) != 0;
    bad |= json_object_set_new(o, "best_objective", ba_json_real_or_null(x->best_obj)) != 0;
    return bad;
}

static int print_json(const ba_study_info_t *s, const study_extra_t *x, int n) {
    study_rows_t rows = {s, x};
    return ba_json_print_rows(stdout, n, study_json, &rows);
}

/* --delete NAME / --rename OLD NEW: one write, then a line saying what was done. */
static int studies_change(const ba_cli_opts *o) {
    const char *del = ba_cli_get(o, "delete"), *old = ba_cli_get(o, "rename"),
               *nw = ba_cli_get(o, "new-name");
    ba_error err;
    ba_error_clear(&err);
    ba_db_t *db = NULL;
    ba_status st = ba_db_open(ba_cli_db_path(o), BA_DB_OPEN_WRITE, &db, &err);
    if (st == BA_OK) st = del ? ba_db_study_delete(db, del, &err) : ba_db_study_rename(db, old, nw, &err);
    ba_db_close(db);
    if (st != BA_OK) {
        ba_cli_error("%s", err.msg);
        return ba_status_exit_code(st);
    }
    if (ba_cli_verbosity(o) >= 0) {
        if (del)
            printf("deleted study '%s'\n", del);
        else
            printf("renamed study '%s' to '%s'\n", old, nw);
    }
    return BA_EXIT_OK;
}

int ba_cmd_studies(const ba_cli_opts *o) {
    if (ba_cli_has(o, "delete") || ba_cli_has(o, "rename")) return studies_change(o);
    const char *fmt = ba_cli_get_or(o, "format", "table");
    ba_error err;
    ba_error_clear(&err);
    ba_db_t *db = NULL;
    ba_study_info_t *s = NULL;
    study_extra_t *x = NULL;
    int n = 0;
    ba_status st = ba_db_open(ba_cli_db_path(o), BA_DB_OPEN_READONLY, &db, &err);
    if (st == BA_OK) st = ba_db_studies_list(db, &s, &n, &err);
    if (st == BA_OK && n > 0 && !(x = ba_calloc((size_t)n, sizeof *x, &err))) st = BA_ERR_NOMEM;
    for (int i = 0; st == BA_OK && i < n; i++) st = study_extra(db, &s[i], &x[i], &err);
    int code = BA_EXIT_OK;
    if (st != BA_OK) {
        ba_cli_error("%s", err.msg);
        code = ba_status_exit_code(st);
    } else {
        int rc =
            strcmp(fmt, "json") == 0 ? print_json(s, x, n) : print_table(s, x, n, strcmp(fmt, "csv") == 0);
        if (rc != 0) {
            ba_cli_error("studies: out of memory");
            code = BA_EXIT_RUNTIME;
        }
    }
    for (int i = 0; x && i < n; i++) json_decref(x[i].settings);
    free(x);
    ba_db_studies_free(s, n);
    ba_db_close(db);
    return code;
}
