/* `bitalloc studies` and `bitalloc trials` as users and scripts see them (SPEC §7,
 * §8, §10): studies and trials are written straight through db/db.h into a
 * scratch database (the digits CNN as the model), then the CLI reads them back
 * in every format; --where answers exactly the matching trials and cannot reach
 * SQL; bad databases and unknown studies exit 2; a reader runs beside a writer. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/helpers.h"

#define CNN BA_FIXTURES "/digits/cnn.onnx"

typedef struct {
    char dir[512];
    char db[600];
    int nlayers;
    char **names;
} env_t;

static void expect_error(const ba_test_run_t *r, int code, const char *want) {
    cr_expect_eq(r->status, code, "exit %d, want %d; stderr: %s", r->status, code, r->err);
    cr_expect(strncmp(r->err, "bitalloc: error: ", 17) == 0, "stderr: %s", r->err);
    cr_expect_eq(ba_test_count_lines(r->err), 1, "stderr: %s", r->err);
    cr_expect(strstr(r->err, want) != NULL, "stderr lacks '%s': %s", want, r->err);
    cr_expect_str_empty(r->out);
}

/* One trial row of the scratch study. */
typedef struct {
    const char *state, *method;
    double avg_bits, kl, agreement, accuracy;
    int bits; /* every layer at this width, the first layer at 8 */
} trial_spec_t;

#define NUL NAN
/* --where "avg_bits<=4 and kl<0.01" answers trials 1 and 3 (4 has no kl, 6 a large one);
 * the best complete trial is 5 (lowest kl). */
static const trial_spec_t ALPHA[] = {
    {"complete", "ilp", 4.0, 0.005, 0.99, NUL, 4},  {"complete", "evo", 3.5, 0.02, 0.95, 0.91, 3},
    {"complete", "evo", 3.0, 0.008, 0.97, NUL, 3},  {"failed", "evo", 4.0, NUL, NUL, NUL, 4},
    {"complete", "evo", 6.0, 0.001, 0.999, NUL, 6}, {"pruned", "evo", 2.0, 0.5, 0.5, NUL, 2},
};
#define NALPHA (int)(sizeof ALPHA / sizeof ALPHA[0])

static void add_trials(ba_db_t *db, int64_t sid, int nlayers, const trial_spec_t *spec, int n) {
    for (int i = 0; i < n; i++) {
        int *w = calloc((size_t)nlayers, sizeof *w), *a = calloc((size_t)nlayers, sizeof *a);
        cr_assert(w && a);
        for (int l = 0; l < nlayers; l++) w[l] = l == 0 ? 8 : spec[i].bits;
        ba_trial_t t = {0};
        snprintf(t.state, sizeof t.state, "%s", spec[i].state);
        snprintf(t.method, sizeof t.method, "%s", spec[i].method);
        t.avg_bits = spec[i].avg_bits;
        t.memory = 1000.0 * (i + 1);
        t.bops = 1e6 * (i + 1);
        t.latency = NAN;
        t.objective = t.validation = NAN; /* trials without a metric rank by kl */
        t.predicted = 0.1 * (i + 1);
        t.kl = spec[i].kl;
        t.mse = isnan(spec[i].kl) ? NAN : spec[i].kl / 10;
        t.agreement = spec[i].agreement;
        t.accuracy = spec[i].accuracy;
        t.samples = 64;
        t.nlayers = nlayers;
        t.w_bits = w;
        t.a_bits = a;
        ba_error err;
        cr_assert_eq(ba_db_trial_add(db, sid, &t, NULL, &err), BA_OK, "%s", err.msg);
        free(w);
        free(a);
    }
}

/* A scratch dir with b.db holding study "alpha" (the CNN, trials ALPHA) and the
 * newer study "beta" (one running trial). */
static env_t make_env(void) {
    env_t e = {0};
    cr_assert_eq(ba_test_tmpdir(e.dir, sizeof e.dir), 0);
    snprintf(e.db, sizeof e.db, "%s/b.db", e.dir);
    ba_error err;
    ba_model_t *m;
    cr_assert_eq(ba_model_load(CNN, NULL, &m, &err), BA_OK, "%s", err.msg);
    e.nlayers = m->nlayers;
    cr_assert_gt(e.nlayers, 1);
    ba_db_layer_t *layers = calloc((size_t)m->nlayers, sizeof *layers);
    e.names = calloc((size_t)m->nlayers, sizeof *e.names);
    for (int i = 0; i < m->nlayers; i++) {
        layers[i] =
            (ba_db_layer_t){m->layers[i].name, m->layers[i].op, m->layers[i].params, m->layers[i].macs};
        e.names[i] = strdup(m->layers[i].name);
    }
    ba_db_t *db;
    cr_assert_eq(ba_db_open(e.db, 1, &db, &err), BA_OK, "%s", err.msg);
    int64_t a, b;
    const char *settings = "{\"model\": \"" CNN "\", \"method\": \"ilp+evo\", \"budgets\": {\"avg-bits\": 4},"
                           " \"seed\": 7}";
    cr_assert_eq(ba_db_study_create(db, "alpha", CNN, m->sha256, "", settings, layers, m->nlayers, &a, &err),
                 BA_OK, "%s", err.msg);
    add_trials(db, a, m->nlayers, ALPHA, NALPHA);
    cr_assert_eq(ba_db_study_create(db, "beta", CNN, m->sha256, "", "{\"method\": \"evo\"}", layers,
                                    m->nlayers, &b, &err),
                 BA_OK, "%s", err.msg);
    static const trial_spec_t running[] = {{"running", "evo", 4.0, NUL, NUL, NUL, 4}};
    add_trials(db, b, m->nlayers, running, 1);
    ba_db_close(db);
    free(layers);
    ba_model_free(m);
    return e;
}

static void env_free(env_t *e) {
    for (int i = 0; i < e->nlayers; i++) free(e->names[i]);
    free(e->names);
    ba_test_rmtree(e->dir);
}

static json_t *parse_json(const char *text) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    cr_assert(j, "not JSON (%s): %s", je.text, text);
    return j;
}

/* The "number" of each row of a `trials --format json` answer, as "1,3". */
static void numbers_of(const char *json_text, char *buf, size_t cap) {
    json_t *j = parse_json(json_text);
    cr_assert(json_is_array(j));
    size_t o = 0, i;
    json_t *row;
    buf[0] = '\0';
    json_array_foreach(j, i, row) {
        o += (size_t)snprintf(buf + o, cap - o, i ? ",%lld" : "%lld",
                              (long long)json_integer_value(json_object_get(row, "number")));
    }
    json_decref(j);
}

static int integrity_ok(const char *path, int *ntrials) {
    sqlite3 *h;
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) return 0;
    sqlite3_stmt *s;
    int ok = 0;
    if (sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        ok = !strcmp((const char *)sqlite3_column_text(s, 0), "ok");
    sqlite3_finalize(s);
    if (sqlite3_prepare_v2(h, "SELECT count(*) FROM trials", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        *ntrials = sqlite3_column_int(s, 0);
    else
        ok = 0;
    sqlite3_finalize(s);
    sqlite3_close(h);
    return ok;
}

/* ------------------------------------------------------------------ studies */

Test(study_cmds, studies_table_lists_newest_first_with_counts_and_best_kl) {
    env_t e = make_env();
    ba_test_run_t r = ba_test_cli("--db", e.db, "studies", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_str_empty(r.err);
    cr_expect_eq(ba_test_count_lines(r.out), 3, "%s", r.out);
    cr_expect(strncmp(r.out, "name", 4) == 0, "%s", r.out);
    const char *beta = strstr(r.out, "\nbeta "), *alpha = strstr(r.out, "\nalpha ");
    cr_assert(alpha && beta && beta < alpha, "%s", r.out);
    cr_expect(strstr(alpha, "4/6"), "complete/total: %s", r.out);
    cr_expect(strstr(alpha, "0.001"), "best kl: %s", r.out);
    cr_expect(strstr(alpha, "ilp+evo"), "method: %s", r.out);
    cr_expect(strstr(beta, "0/1"), "%s", r.out);
    ba_test_run_free(&r);
    env_free(&e);
}

Test(study_cmds, studies_csv_and_json_carry_the_same_facts) {
    env_t e = make_env();
    ba_test_run_t r = ba_test_cli("--db", e.db, "studies", "--format", "csv", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(
        strncmp(r.out,
                "name,created,model,method,state,trials,complete,best_trial,best_kl,metric,best_objective\n",
                89) == 0,
        "%s", r.out);
    cr_expect(strstr(r.out, "\nbeta,"), "%s", r.out);
    cr_expect(strstr(r.out, ",evo,running,1,0,,,,\n"), "null best is an empty cell: %s", r.out);
    cr_expect(strstr(r.out, ",ilp+evo,running,6,4,5,0.001,,\n"), "%s", r.out);
    ba_test_run_free(&r);

    r = ba_test_cli("--db", e.db, "studies", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = parse_json(r.out);
    cr_assert(json_is_array(j) && json_array_size(j) == 2, "%s", r.out);
    json_t *beta = json_array_get(j, 0), *alpha = json_array_get(j, 1);
    cr_expect_str_eq(json_string_value(json_object_get(beta, "name")), "beta");
    cr_expect(json_is_null(json_object_get(beta, "best_kl")));
    cr_expect_str_eq(json_string_value(json_object_get(alpha, "model")), CNN);
    cr_expect_eq(json_integer_value(json_object_get(alpha, "trials")), 6);
    cr_expect_eq(json_integer_value(json_object_get(alpha, "complete")), 4);
    cr_expect_eq(json_integer_value(json_object_get(alpha, "best_trial")), 5);
    cr_expect_float_eq(json_real_value(json_object_get(alpha, "best_kl")), 0.001, 1e-15);
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(alpha, "budgets"), "avg-bits")), 4);
    cr_expect_eq(strlen(json_string_value(json_object_get(alpha, "model_sha256"))), 64);
    json_decref(j);
    ba_test_run_free(&r);
    env_free(&e);
}

Test(study_cmds, an_empty_database_lists_no_study) {
    char dir[512], db[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/empty.db", dir);
    ba_db_t *h;
    ba_error err;
    cr_assert_eq(ba_db_open(db, 1, &h, &err), BA_OK, "%s", err.msg);
    ba_db_close(h);
    ba_test_run_t r = ba_test_cli("--db", db, "studies", "--format", "json", NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "[]\n");
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

/* ------------------------------------------------------------------- trials */

Test(study_cmds, trials_table_has_every_column_and_dashes_for_null) {
    env_t e = make_env();
    ba_test_run_t r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_eq(ba_test_count_lines(r.out), 1 + NALPHA, "%s", r.out);
    static const char *const cols[] = {"number",  "state",     "method", "avg_bits", "memory",    "bops",
                                       "latency", "predicted", "kl",     "mse",      "agreement", "accuracy"};
    for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++)
        cr_expect(strstr(r.out, cols[c]), "%s", cols[c]);
    const char *failed = strstr(r.out, "failed");
    cr_assert(failed, "%s", r.out);
    const char *eol = strchr(failed, '\n');
    int dashes = 0;
    for (const char *p = failed; p < eol; p++) dashes += *p == '-' && (p[1] == ' ' || p[1] == '\n');
    cr_expect_geq(dashes, 5, "latency, kl, mse, agreement, accuracy are '-': %.*s", (int)(eol - failed),
                  failed);
    cr_expect(strstr(r.out, "0.91"), "accuracy shown: %s", r.out);
    ba_test_run_free(&r);
    env_free(&e);
}

Test(study_cmds, trials_json_has_null_metrics_and_per_layer_bits_by_name) {
    env_t e = make_env();
    ba_test_run_t r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = parse_json(r.out);
    cr_assert_eq(json_array_size(j), (size_t)NALPHA);
    json_t *t4 = json_array_get(j, 3);
    cr_expect_eq(json_integer_value(json_object_get(t4, "number")), 4);
    cr_expect_str_eq(json_string_value(json_object_get(t4, "state")), "failed");
    cr_expect(json_is_null(json_object_get(t4, "kl")));
    cr_expect(json_is_null(json_object_get(t4, "latency")));
    cr_expect(json_is_null(json_object_get(t4, "a_bits")));
    json_t *t2 = json_array_get(j, 1);
    cr_expect_float_eq(json_number_value(json_object_get(t2, "avg_bits")), 3.5, 1e-12);
    cr_expect_float_eq(json_number_value(json_object_get(t2, "accuracy")), 0.91, 1e-12);
    cr_expect_eq(json_integer_value(json_object_get(t2, "memory")), 2000);
    json_t *bits = json_object_get(t2, "bits");
    cr_assert(json_is_object(bits) && json_object_size(bits) == (size_t)e.nlayers, "%s", r.out);
    for (int l = 0; l < e.nlayers; l++)
        cr_expect_eq(json_integer_value(json_object_get(bits, e.names[l])), l == 0 ? 8 : 3, "%s", e.names[l]);
    json_decref(j);
    ba_test_run_free(&r);
    env_free(&e);
}

Test(study_cmds, trials_csv_has_empty_cells_for_null_and_a_bits_list) {
    env_t e = make_env();
    ba_test_run_t r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", "--format", "csv", "--where",
                                  "number=4", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    char want[512];
    size_t o =
        (size_t)snprintf(want, sizeof want,
                         "number,state,method,avg_bits,memory,bops,latency,predicted,kl,mse,agreement,"
                         "accuracy,objective,validation,bits\n4,failed,evo,4,4000,4000000,,0.4,,,,,,,\"8");
    for (int l = 1; l < e.nlayers; l++) o += (size_t)snprintf(want + o, sizeof want - o, ",4");
    snprintf(want + o, sizeof want - o, "\"\n");
    cr_expect_str_eq(r.out, want);
    ba_test_run_free(&r);
    env_free(&e);
}

Test(study_cmds, where_answers_exactly_the_matching_trials) {
    env_t e = make_env();
    char got[256];
    ba_test_run_t r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", "--where",
                                  "avg_bits<=4 and kl<0.01", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    numbers_of(r.out, got, sizeof got);
    cr_expect_str_eq(got, "1,3");
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", "--where", "state=complete and method='evo'",
                    "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    numbers_of(r.out, got, sizeof got);
    cr_expect_str_eq(got, "2,3,5");
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "trials", "--study", "beta", "--where", "kl<1", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "[]\n");
    ba_test_run_free(&r);
    env_free(&e);
}

Test(study_cmds, sort_limit_and_best) {
    env_t e = make_env();
    char got[256];
    ba_test_run_t r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", "--sort", "kl", "--limit", "3",
                                  "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    numbers_of(r.out, got, sizeof got);
    cr_expect_str_eq(got, "5,1,3");
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", "--sort", "-avg_bits", "--format", "json",
                    NULL);
    numbers_of(r.out, got, sizeof got);
    cr_expect_str_eq(got, "5,1,4,2,3,6", "descending, ties by number");
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", "--best", "--format", "json", NULL);
    numbers_of(r.out, got, sizeof got);
    cr_expect_str_eq(got, "5");
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", "--best", "--where", "avg_bits<=4",
                    "--format", "json", NULL);
    numbers_of(r.out, got, sizeof got);
    cr_expect_str_eq(got, "1", "best among the filtered trials");
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", "--limit", "0", "--format", "csv", NULL);
    cr_expect_eq(r.status, 0);
    cr_expect_eq(ba_test_count_lines(r.out), 1, "header only: %s", r.out);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", "--sort", "colour", NULL);
    expect_error(&r, 2, "--sort");
    ba_test_run_free(&r);
    env_free(&e);
}

Test(study_cmds, bad_where_exits_2_naming_where) {
    env_t e = make_env();
    static const char *const bad[] = {"colour<3",        "kl<", "kl<0.01 or avg_bits<4", "kl ~ 3",
                                      "avg_bits<=4 and", "",    "avg_bits<=four",        "kl<nan",
                                      "kl<'0.5'"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ba_test_run_t r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", "--where", bad[i], NULL);
        cr_expect_eq(r.status, 2, "'%s': exit %d %s", bad[i], r.status, r.err);
        cr_expect(strstr(r.err, "--where"), "'%s': %s", bad[i], r.err);
        cr_expect_str_empty(r.out, "'%s'", bad[i]);
        ba_test_run_free(&r);
    }
    env_free(&e);
}

Test(study_cmds, where_injection_leaves_the_database_intact) {
    env_t e = make_env();
    static const char *const attacks[] = {
        "kl<0.01; DROP TABLE trials",
        "kl<0.01) OR (1=1",
        "number=1 and state='x'; DELETE FROM trials; --'",
        "state='complete' or 1=1",
        "kl<0.01 and state=\"a\" union select * from studies",
    };
    for (size_t i = 0; i < sizeof attacks / sizeof attacks[0]; i++) {
        ba_test_run_t r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", "--where", attacks[i],
                                      "--format", "json", NULL);
        cr_expect_eq(r.status, 2, "'%s': exit %d: %s", attacks[i], r.status, r.out);
        cr_expect(strstr(r.err, "--where"), "%s", r.err);
        ba_test_run_free(&r);
    }
    /* A quoted value is data, whatever it holds. */
    ba_test_run_t r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", "--where",
                                  "state='x; DROP TABLE trials'", "--format", "json", NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "[]\n");
    ba_test_run_free(&r);
    int n = -1;
    cr_expect(integrity_ok(e.db, &n));
    cr_expect_eq(n, NALPHA + 1, "every trial still there");
    env_free(&e);
}

Test(study_cmds, unknown_study_exits_2) {
    env_t e = make_env();
    ba_test_run_t r = ba_test_cli("--db", e.db, "trials", "--study", "gamma", NULL);
    expect_error(&r, 2, "gamma");
    ba_test_run_free(&r);
    env_free(&e);
}

Test(study_cmds, foreign_newer_and_missing_databases_exit_2) {
    char dir[512], path[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    /* not SQLite at all */
    snprintf(path, sizeof path, "%s/text.db", dir);
    cr_assert_eq(ba_test_write_file(path, "these are not the tables you are looking for\n"), 0);
    ba_test_run_t r = ba_test_cli("--db", path, "studies", NULL);
    expect_error(&r, 2, path);
    ba_test_run_free(&r);
    /* SQLite of another application */
    snprintf(path, sizeof path, "%s/other.db", dir);
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(path, &h), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(h, "CREATE TABLE t(x); INSERT INTO t VALUES(1)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    r = ba_test_cli("--db", path, "trials", "--study", "alpha", NULL);
    expect_error(&r, 2, "not a bitalloc database");
    ba_test_run_free(&r);
    /* a bitalloc database from a newer bitalloc */
    env_t e = make_env();
    cr_assert_eq(sqlite3_open(e.db, &h), SQLITE_OK);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", BA_DB_SCHEMA_VERSION + 1);
    cr_assert_eq(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    r = ba_test_cli("--db", e.db, "studies", NULL);
    expect_error(&r, 2, "newer");
    ba_test_run_free(&r);
    /* no file: an error, and reading never creates one */
    snprintf(path, sizeof path, "%s/absent.db", dir);
    r = ba_test_cli("--db", path, "studies", NULL);
    expect_error(&r, 2, path);
    cr_expect_neq(access(path, F_OK), 0, "studies created %s", path);
    ba_test_run_free(&r);
    /* $BITALLOC_DB is the default when --db is absent */
    setenv("BITALLOC_DB", e.db, 1);
    r = ba_test_cli("trials", "--study", "alpha", NULL);
    expect_error(&r, 2, e.db);
    ba_test_run_free(&r);
    unsetenv("BITALLOC_DB");
    env_free(&e);
    ba_test_rmtree(dir);
}

Test(study_cmds, trials_reads_while_a_search_holds_the_write_lock) {
    env_t e = make_env();
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(e.db, &h), SQLITE_OK);
    /* A writer in the middle of a transaction, as a search between two trials. */
    cr_assert_eq(sqlite3_exec(h,
                              "BEGIN IMMEDIATE; INSERT INTO trials(study_id, number, state, method)"
                              " SELECT id, 99, 'running', 'evo' FROM studies WHERE name = 'alpha'",
                              NULL, NULL, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(h));
    char got[256];
    ba_test_run_t r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", "--format", "json", NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    numbers_of(r.out, got, sizeof got);
    cr_expect_str_eq(got, "1,2,3,4,5,6", "committed trials only");
    ba_test_run_free(&r);
    cr_assert_eq(sqlite3_exec(h, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", "--format", "json", NULL);
    numbers_of(r.out, got, sizeof got);
    cr_expect_str_eq(got, "1,2,3,4,5,6,99");
    ba_test_run_free(&r);
    env_free(&e);
}

/* --where and --budget read a quantity through the same parser (core/units.c):
 * a value with a unit either both accept, meaning the same number, or both refuse. */
Test(study_cmds, where_and_budget_accept_the_same_units) {
    env_t e = make_env();
    static const struct {
        const char *col;
        ba_budget_kind_t kind;
        const char *value;
    } cases[] = {
        {"memory", BA_BUDGET_MEMORY, "2KiB"},   {"memory", BA_BUDGET_MEMORY, "0.004MiB"},
        {"memory", BA_BUDGET_MEMORY, "3000B"},  {"memory", BA_BUDGET_MEMORY, "4000"},
        {"memory", BA_BUDGET_MEMORY, "2KB"},    {"memory", BA_BUDGET_MEMORY, "3us"},
        {"bops", BA_BUDGET_BOPS, "2.5M"},       {"bops", BA_BUDGET_BOPS, "4000k"},
        {"bops", BA_BUDGET_BOPS, "0.003G"},     {"bops", BA_BUDGET_BOPS, "2MiB"},
        {"latency", BA_BUDGET_LATENCY, "2ms"},  {"latency", BA_BUDGET_LATENCY, "5us"},
        {"latency", BA_BUDGET_LATENCY, "3KiB"}, {"avg_bits", BA_BUDGET_AVG_BITS, "4"},
        {"avg_bits", BA_BUDGET_AVG_BITS, "4k"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double v;
        ba_error err;
        int budget_ok = ba_budget_value_parse(cases[i].kind, cases[i].value, &v, &err) == BA_OK;
        char where[96], plain[96], a[256] = "", b[256] = "";
        snprintf(where, sizeof where, "%s<=%s", cases[i].col, cases[i].value);
        ba_test_run_t r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", "--where", where,
                                      "--format", "json", NULL);
        cr_expect_eq(r.status == 0, budget_ok, "%s: --where exit %d, --budget %s: %s", where, r.status,
                     budget_ok ? "accepts" : "refuses", r.err);
        if (r.status == 0) numbers_of(r.out, a, sizeof a);
        ba_test_run_free(&r);
        if (!budget_ok) continue;
        snprintf(plain, sizeof plain, "%s<=%.17g", cases[i].col, v);
        r = ba_test_cli("--db", e.db, "trials", "--study", "alpha", "--where", plain, "--format", "json",
                        NULL);
        cr_assert_eq(r.status, 0, "%s", r.err);
        numbers_of(r.out, b, sizeof b);
        cr_expect_str_eq(a, b, "%s means %s", where, plain);
        ba_test_run_free(&r);
    }
    env_free(&e);
}
