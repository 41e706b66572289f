/* `bitalloc trials`: a study's trials, filtered (--where, parsed into bound
 * parameters by db/), sorted and limited (see docs/trials.md). Reads only, so it
 * runs beside a search that writes the same database (WAL). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/format.h"
#include "eval/metrics.h"

/* Significant digits of the objective and metrics in the table (CSV and JSON carry every digit). */
#define TRIALS_TABLE_DIGITS 4

/* objective and validation are the study's metric, signed so that lower is better
 * (eval/metrics.h: −value for sqnr, top1, cosine); the table names the metric. */
static const char *const COLS[] = {"number",    "state",    "method",    "avg_bits",  "memory",
                                   "bops",      "latency",  "predicted", "kl",        "mse",
                                   "agreement", "accuracy", "objective", "validation"};
#define NCOLS (sizeof COLS / sizeof COLS[0])

static double trial_value(const ba_trial_t *t, size_t col) {
    switch (col) {
    case 3: return t->avg_bits;
    case 4: return t->memory;
    case 5: return t->bops;
    case 6: return t->latency;
    case 7: return t->predicted;
    case 8: return t->kl;
    case 9: return t->mse;
    case 10: return t->agreement;
    case 11: return t->accuracy;
    case 12: return t->objective;
    default: return t->validation;
    }
}

/* "4,4,8,…": the per-layer weight widths in layer order. */
static char *bits_list(const ba_trial_t *t) {
    size_t cap = (size_t)t->nlayers * 4 + 1;
    char *s = malloc(cap);
    if (!s) return NULL;
    size_t o = 0;
    s[0] = '\0';
    for (int i = 0; i < t->nlayers; i++)
        o += (size_t)snprintf(s + o, cap - o, i ? ",%d" : "%d", t->w_bits[i]);
    return s;
}

static int print_csv(const ba_trial_t *t, int n) {
    const char *hdr[NCOLS + 1];
    for (size_t c = 0; c < NCOLS; c++) hdr[c] = COLS[c];
    hdr[NCOLS] = "bits";
    ba_csv_row(stdout, NCOLS + 1, hdr);
    for (int i = 0; i < n; i++) {
        char num[32], vals[NCOLS][40];
        snprintf(num, sizeof num, "%lld", (long long)t[i].number);
        const char *row[NCOLS + 1] = {num, t[i].state, t[i].method};
        for (size_t c = 3; c < NCOLS; c++) {
            ba_fmt_real(trial_value(&t[i], c), vals[c], sizeof vals[c]);
            row[c] = vals[c];
        }
        char *bits = bits_list(&t[i]);
        if (!bits) return -1;
        row[NCOLS] = bits;
        ba_csv_row(stdout, NCOLS + 1, row);
        free(bits);
    }
    return 0;
}

static int print_table(const ba_trial_t *t, int n, const char *metric) {
    ba_align al[NCOLS];
    for (size_t c = 0; c < NCOLS; c++) al[c] = c == 1 || c == 2 ? BA_ALIGN_LEFT : BA_ALIGN_RIGHT;
    /* The objective's header names the metric: "objective(kl)", "objective(-sqnr)". */
    const char *hdr[NCOLS];
    char oh[48];
    ba_metric_t m = BA_METRIC_AUTO;
    ba_error e2;
    if (metric && metric[0] && ba_metric_parse(metric, &m, &e2) == BA_OK)
        snprintf(oh, sizeof oh, "objective(%s%s)", ba_metric_higher_better(m) ? "-" : "", metric);
    else
        snprintf(oh, sizeof oh, "objective");
    for (size_t c = 0; c < NCOLS; c++) hdr[c] = c == 12 ? oh : COLS[c];
    ba_table_t *tb = ba_table_new(NCOLS, hdr, al);
    if (!tb) return -1;
    int bad = 0;
    for (int i = 0; !bad && i < n; i++) {
        char v[NCOLS][48];
        const char *row[NCOLS];
        snprintf(v[0], sizeof v[0], "%lld", (long long)t[i].number);
        row[0] = v[0];
        row[1] = t[i].state;
        row[2] = t[i].method;
        for (size_t c = 3; c < NCOLS; c++) {
            double x = trial_value(&t[i], c);
            row[c] = isfinite(x) ? v[c] : NULL; /* NULL prints as '-' */
            if (c == 3)
                snprintf(v[c], sizeof v[c], "%.3f", x);
            else if (c == 4)
                ba_fmt_bytes(x, v[c], sizeof v[c]);
            else if (c == 5)
                ba_fmt_count(x, v[c], sizeof v[c]);
            else if (c == 6)
                snprintf(v[c], sizeof v[c], "%.1f us", x);
            else
                snprintf(v[c], sizeof v[c], "%.*g", TRIALS_TABLE_DIGITS, x);
        }
        bad = ba_table_add(tb, row) != 0;
    }
    return ba_table_print_free(tb, bad, stdout);
}

/* A layer's key in the JSON bits objects: its name from the study's layer table. */
static const char *layer_key(char **names, int nnames, int i, char *buf, size_t cap) {
    if (i < nnames) return names[i];
    snprintf(buf, cap, "#%d", i);
    return buf;
}

typedef struct {
    const ba_trial_t *t;
    char **names;
    int nnames;
} trial_rows_t;

static int trial_json(json_t *o, int i, void *ctx) {
    const trial_rows_t *r = ctx;
    const ba_trial_t *t = &r->t[i];
    int bad = 0;
    bad |= json_object_set_new(o, "number", json_integer(t->number)) != 0;
    bad |= json_object_set_new(o, "state", json_string(t->state)) != 0;
    bad |= json_object_set_new(o, "method", json_string(t->method)) != 0;
    for (size_t c = 3; c < NCOLS; c++) {
        double x = trial_value(t, c);
        json_t *v =
            c == 4 && isfinite(x) && x == floor(x) ? json_integer((json_int_t)x) : ba_json_real_or_null(x);
        bad |= json_object_set_new(o, COLS[c], v) != 0;
    }
    bad |= json_object_set_new(o, "samples", json_integer(t->samples)) != 0;
    bad |= json_object_set_new(o, "started", t->started[0] ? json_string(t->started) : json_null()) != 0;
    bad |= json_object_set_new(o, "finished", t->finished[0] ? json_string(t->finished) : json_null()) != 0;
    json_t *wb = json_object(), *ab = json_object();
    int any_act = 0;
    for (int l = 0; wb && ab && l < t->nlayers; l++) {
        char key[32];
        const char *k = layer_key(r->names, r->nnames, l, key, sizeof key);
        bad |= json_object_set_new(wb, k, json_integer(t->w_bits[l])) != 0;
        int a = t->a_bits ? t->a_bits[l] : 0;
        any_act |= a > 0;
        bad |= json_object_set_new(ab, k, a > 0 ? json_integer(a) : json_null()) != 0;
    }
    bad |= !wb || !ab;
    bad |= json_object_set_new(o, "bits", wb) != 0;
    /* a_bits is null when every activation stays float (the usual case). */
    if (any_act)
        bad |= json_object_set_new(o, "a_bits", ab) != 0;
    else {
        json_decref(ab);
        bad |= json_object_set_new(o, "a_bits", json_null()) != 0;
    }
    return bad;
}

static int print_json(const ba_trial_t *t, int n, char **names, int nnames) {
    trial_rows_t rows = {t, names, nnames};
    return ba_json_print_rows(stdout, n, trial_json, &rows);
}

int ba_cmd_trials(const ba_cli_opts *o) {
    const char *fmt = ba_cli_get_or(o, "format", "table");
    const char *study = ba_cli_get(o, "study");
    ba_trial_query_t q = {
        .where = ba_cli_get(o, "where"),
        .sort = ba_cli_get(o, "sort"),
        .limit = ba_cli_get_int(o, "limit", 0),
        .best = ba_cli_has(o, "best"),
        .pareto = ba_cli_has(o, "pareto") ? ba_cli_get_or(o, "objectives", BA_DB_PARETO_DEFAULT) : NULL};
    int zero_limit = ba_cli_has(o, "limit") && q.limit == 0;
    ba_error err;
    ba_error_clear(&err);
    ba_status st = BA_OK;
    /* A malformed filter is a usage error whatever the database holds. */
    if (q.where) st = ba_db_where_check(q.where, &err);
    if (st == BA_OK && q.pareto) st = ba_db_pareto_check(q.pareto, NULL, &err);
    ba_db_t *db = NULL;
    ba_study_info_t info = {0};
    ba_trial_t *t = NULL;
    int n = 0, nnames = 0;
    char **names = NULL;
    if (st == BA_OK) st = ba_db_open(ba_cli_db_path(o), BA_DB_OPEN_READONLY, &db, &err);
    if (st == BA_OK) st = ba_db_study_get(db, study, &info, &err);
    if (st == BA_OK && !zero_limit) st = ba_db_trials_query(db, info.id, &q, &t, &n, &err);
    if (st == BA_OK && strcmp(fmt, "json") == 0) st = ba_db_layer_names(db, info.id, &names, &nnames, &err);
    int code = BA_EXIT_OK;
    if (st != BA_OK) {
        ba_cli_error("%s", err.msg);
        code = ba_status_exit_code(st);
    } else {
        int rc = strcmp(fmt, "json") == 0  ? print_json(t, n, names, nnames)
                 : strcmp(fmt, "csv") == 0 ? print_csv(t, n)
                                           : print_table(t, n, info.metric);
        if (rc != 0) {
            ba_cli_error("trials: out of memory");
            code = BA_EXIT_RUNTIME;
        }
    }
    for (int i = 0; i < nnames; i++) free(names[i]);
    free(names);
    ba_db_trials_free(t, n);
    ba_db_study_info_free(&info);
    ba_db_close(db);
    return code;
}
