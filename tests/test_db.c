/* db/: schema, trials with checkpoints in one transaction, --where as bound
 * parameters (injection-proof), refusal of foreign/newer files, integrity. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db/db.h"
#include "tests/helpers.h"

static char dbpath[1024];
static int on_pg; /* the test runs on the private PostgreSQL cluster */

static void setup_path(void) {
    snprintf(dbpath, sizeof dbpath, "/tmp/ba_test_db_%d_%ld.db", (int)getpid(), random());
    unlink(dbpath);
}

static void setup_pg(void) {
    on_pg = 1;
    BA_TEST_PG_DB_OR_SKIP(dbpath, sizeof dbpath);
}

static void cleanup_path(void) {
    if (on_pg) return; /* the cluster's databases go with it at the end of the run */
    char p[1100];
    unlink(dbpath);
    snprintf(p, sizeof p, "%s-wal", dbpath);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", dbpath);
    unlink(p);
}

static int integrity_ok(const char *path) {
    if (on_pg) return 1; /* PostgreSQL checks its own pages */
    sqlite3 *h;
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) return 0;
    sqlite3_stmt *s;
    int ok = 0;
    if (sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        ok = !strcmp((const char *)sqlite3_column_text(s, 0), "ok");
    sqlite3_finalize(s);
    sqlite3_close(h);
    return ok;
}

static int64_t make_study(ba_db_t *db, const char *name) {
    ba_db_layer_t layers[2] = {{"conv1.weight", "Conv", 864, 110592}, {"fc.weight", "Gemm", 1280, 1280}};
    int64_t id = 0;
    ba_error err;
    cr_assert_eq(ba_db_study_create(db, name, "net.onnx", "abc", "def", "{\"seed\":0}", layers, 2, &id, &err),
                 BA_OK, "%s", err.msg);
    return id;
}

static void add_trial(ba_db_t *db, int64_t sid, double avg, double kl, int b0, int b1) {
    int w[2] = {b0, b1}, a[2] = {0, 0};
    ba_trial_t t = {0};
    snprintf(t.state, sizeof t.state, "complete");
    snprintf(t.method, sizeof t.method, "evo");
    t.avg_bits = avg;
    t.memory = 1000;
    t.bops = 1e6;
    t.latency = NAN;
    t.predicted = kl * 2;
    t.kl = kl;
    t.mse = NAN;
    t.agreement = 0.99;
    t.accuracy = NAN;
    t.nlayers = 2;
    t.w_bits = w;
    t.a_bits = a;
    ba_error err;
    cr_assert_eq(ba_db_trial_add(db, sid, &t, "{\"generation\":1}", &err), BA_OK, "%s", err.msg);
}

TestSuite(db, .init = setup_path, .fini = cleanup_path);
/* The same tests on PostgreSQL (skipped when the server binaries are missing). */
TestSuite(db_pg, .init = setup_pg, .fini = cleanup_path, .timeout = 60);

/* A test of the backend-independent behaviour, run on SQLite (suite db) and PostgreSQL (suite db_pg). */
#define BOTH_BACKENDS(name)                                                                                  \
    static void both_##name(void);                                                                           \
    Test(db, name) {                                                                                         \
        both_##name();                                                                                       \
    }                                                                                                        \
    Test(db_pg, name) {                                                                                      \
        both_##name();                                                                                       \
    }                                                                                                        \
    static void both_##name(void)

BOTH_BACKENDS(trials_round_trip_with_numbers_and_bits) {
    ba_db_t *db;
    ba_error err;
    cr_assert_eq(ba_db_open(dbpath, 1, &db, &err), BA_OK, "%s", err.msg);
    int64_t sid = make_study(db, "s1");
    add_trial(db, sid, 4.0, 0.02, 4, 4);
    add_trial(db, sid, 3.5, 0.005, 3, 4);
    add_trial(db, sid, 5.0, 0.001, 8, 4);
    ba_trial_t *t;
    int n;
    cr_assert_eq(ba_db_trials_query(db, sid, NULL, &t, &n, &err), BA_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(t[0].number, 1);
    cr_assert_eq(t[2].number, 3);
    cr_assert_eq(t[1].w_bits[0], 3);
    cr_assert(isnan(t[0].latency));
    cr_assert_float_eq(t[1].kl, 0.005, 1e-15);
    ba_db_trials_free(t, n);
    char *cp;
    cr_assert_eq(ba_db_checkpoint_get(db, sid, &cp, &err), BA_OK);
    cr_assert_str_eq(cp, "{\"generation\":1}");
    free(cp);
    ba_db_close(db);
    cr_assert(integrity_ok(dbpath));
}

static int64_t best_number(ba_db_t *db, int64_t sid) {
    ba_trial_query_t q = {.best = 1};
    ba_trial_t *t;
    int n;
    ba_error err;
    cr_assert_eq(ba_db_trials_query(db, sid, &q, &t, &n, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(n, 1);
    int64_t b = t[0].number;
    ba_db_trials_free(t, n);
    return b;
}

BOTH_BACKENDS(the_chosen_trial_is_the_best_and_carries_its_record) {
    ba_db_t *db;
    ba_error err;
    cr_assert_eq(ba_db_open(dbpath, 1, &db, &err), BA_OK, "%s", err.msg);
    int64_t sid = make_study(db, "s");
    add_trial(db, sid, 4.0, 0.02, 4, 4);
    add_trial(db, sid, 3.5, 0.005, 3, 4);
    add_trial(db, sid, 5.0, 0.001, 8, 4);
    for (int k = 1; k <= 3; k++)
        cr_assert_eq(ba_db_trial_set_validation(db, sid, k, 0.1 * k, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(best_number(db, sid), 1, "lowest validation while nothing is chosen");
    cr_assert_eq(ba_db_trial_set_chosen(db, sid, 3, "{\"trial\":3}", &err), BA_OK, "%s", err.msg);
    cr_expect_eq(best_number(db, sid), 3, "the chosen trial first, whatever its validation");
    char *rec;
    cr_assert_eq(ba_db_trial_chosen(db, sid, 3, &rec, &err), BA_OK, "%s", err.msg);
    cr_expect_str_eq(rec, "{\"trial\":3}");
    free(rec);
    /* Choosing again (a resumed choice) moves the mark: one chosen trial at most. */
    cr_assert_eq(ba_db_trial_set_chosen(db, sid, 2, "{\"trial\":2}", &err), BA_OK, "%s", err.msg);
    cr_expect_eq(best_number(db, sid), 2);
    cr_assert_eq(ba_db_trial_chosen(db, sid, 3, &rec, &err), BA_OK, "%s", err.msg);
    cr_expect_null(rec, "the old mark is gone");
    ba_db_close(db);
}

BOTH_BACKENDS(where_answers_which_plans_under_4_bits_had_small_kl) {
    ba_db_t *db;
    ba_error err;
    cr_assert_eq(ba_db_open(dbpath, 1, &db, &err), BA_OK);
    int64_t sid = make_study(db, "s");
    add_trial(db, sid, 4.0, 0.02, 4, 4);
    add_trial(db, sid, 3.5, 0.005, 3, 4);
    add_trial(db, sid, 3.0, 0.05, 3, 3);
    add_trial(db, sid, 5.0, 0.001, 8, 4);
    ba_trial_query_t q = {.where = "avg_bits<=4 and kl<0.01"};
    ba_trial_t *t;
    int n;
    cr_assert_eq(ba_db_trials_query(db, sid, &q, &t, &n, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_assert_eq(t[0].number, 2);
    ba_db_trials_free(t, n);
    ba_trial_query_t best = {.best = 1};
    cr_assert_eq(ba_db_trials_query(db, sid, &best, &t, &n, &err), BA_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(t[0].number, 4);
    ba_db_trials_free(t, n);
    ba_trial_query_t sorted = {.sort = "-avg_bits", .limit = 2};
    cr_assert_eq(ba_db_trials_query(db, sid, &sorted, &t, &n, &err), BA_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(t[0].number, 4);
    cr_assert_eq(t[1].number, 1);
    ba_db_trials_free(t, n);
    ba_db_close(db);
}

BOTH_BACKENDS(where_is_bound_never_pasted_into_sql) {
    ba_db_t *db;
    ba_error err;
    cr_assert_eq(ba_db_open(dbpath, 1, &db, &err), BA_OK);
    int64_t sid = make_study(db, "s");
    add_trial(db, sid, 4.0, 0.02, 4, 4);
    ba_trial_t *t;
    int n;
    const char *attacks[] = {"kl<1; DROP TABLE trials",
                             "kl<1 or 1=1",
                             "kl<1) OR (1=1",
                             "kl<1 --",
                             "trials.kl<1",
                             "kl<(SELECT 1)",
                             "kl<1 and state='x'' OR ''1''=''1'"};
    for (size_t i = 0; i < sizeof attacks / sizeof *attacks; i++) {
        ba_trial_query_t q = {.where = attacks[i]};
        ba_status st = ba_db_trials_query(db, sid, &q, &t, &n, &err);
        if (st == BA_OK) {
            cr_assert_eq(n, 0, "'%s' matched rows", attacks[i]);
            ba_db_trials_free(t, n);
        } else {
            cr_assert_eq(st, BA_ERR_INPUT);
            cr_assert(strstr(err.msg, "--where") != NULL);
        }
    }
    ba_trial_query_t q = {.where = "state='complete' and method=evo"};
    cr_assert_eq(ba_db_trials_query(db, sid, &q, &t, &n, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(n, 1);
    ba_db_trials_free(t, n);
    ba_db_close(db);
    cr_assert(integrity_ok(dbpath));
}

Test(db, unknown_column_and_sort_are_errors) {
    cr_assert_eq(ba_db_where_check("klx<1", NULL), BA_ERR_INPUT);
    cr_assert_eq(ba_db_where_check("kl<abc1", NULL), BA_ERR_INPUT); /* a word is for state and method only */
    cr_assert_eq(ba_db_where_check("kl<", NULL), BA_ERR_INPUT);
    cr_assert_eq(ba_db_where_check("kl<1 or kl>2", NULL), BA_ERR_INPUT);
    cr_assert_eq(ba_db_where_check("avg_bits <= 4 and kl < 0.01", NULL), BA_OK);
}

/* SQLite orders any TEXT above any REAL, so `kl<'0.5'` or `avg_bits<=four` matched every
 * row; a word or string against a numeric column (and a number against state or method)
 * is bad input. Memory, bops and latency take the units of --budget. */
Test(db, where_refuses_a_value_of_the_wrong_type) {
    static const char *const bad[] = {"avg_bits<=four", "kl<nan",     "kl<'0.5'",       "kl<\"0.5\"",
                                      "kl<inf",         "kl<-inf",    "state=1",        "method<2",
                                      "memory<=1MB",    "latency<2s", "avg_bits<=4KiB", "kl<0x10"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ba_error err;
        cr_expect_eq(ba_db_where_check(bad[i], &err), BA_ERR_INPUT, "'%s' accepted", bad[i]);
        cr_expect(strstr(err.msg, "--where"), "'%s': %s", bad[i], err.msg);
    }
    ba_error err;
    cr_assert_eq(ba_db_where_check("kl<'0.5'", &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "kl compares with a number, got '0.5'"), "%s", err.msg);
    cr_assert_eq(ba_db_where_check("memory<=1MB", &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "B, KiB, MiB, GiB"), "%s", err.msg);
}

BOTH_BACKENDS(where_takes_the_budget_units) {
    ba_db_t *db;
    ba_error err;
    cr_assert_eq(ba_db_open(dbpath, 1, &db, &err), BA_OK);
    int64_t sid = make_study(db, "s");
    add_trial(db, sid, 4.0, 0.02, 4, 4); /* memory 1000 B, bops 1e6 */
    static const struct {
        const char *where;
        int n;
    } cases[] = {{"memory<1KiB", 1}, {"memory<1000B", 0}, {"memory<=1000", 1},
                 {"bops>=1M", 1},    {"bops>1M", 0},      {"bops<2M and memory>0.5KiB", 1}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ba_trial_query_t q = {.where = cases[i].where};
        ba_trial_t *t;
        int n;
        cr_assert_eq(ba_db_trials_query(db, sid, &q, &t, &n, &err), BA_OK, "%s: %s", cases[i].where, err.msg);
        cr_expect_eq(n, cases[i].n, "%s: %d rows", cases[i].where, n);
        ba_db_trials_free(t, n);
    }
    ba_db_close(db);
}

Test(db, refuses_a_file_that_is_not_a_bitalloc_db) {
    FILE *f = fopen(dbpath, "wb");
    fputs("this is not sqlite at all, just text that is long enough to look like a header..........", f);
    fclose(f);
    ba_db_t *db;
    ba_error err;
    cr_assert_eq(ba_db_open(dbpath, 1, &db, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, dbpath) != NULL);
    /* A valid SQLite file of another application. */
    unlink(dbpath);
    sqlite3 *h;
    sqlite3_open(dbpath, &h);
    sqlite3_exec(h, "CREATE TABLE other(x)", NULL, NULL, NULL);
    sqlite3_close(h);
    cr_assert_eq(ba_db_open(dbpath, 1, &db, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "not a bitalloc database") != NULL);
}

Test(db, refuses_a_newer_schema) {
    ba_db_t *db;
    ba_error err;
    cr_assert_eq(ba_db_open(dbpath, 1, &db, &err), BA_OK);
    ba_db_close(db);
    sqlite3 *h;
    sqlite3_open(dbpath, &h);
    sqlite3_exec(h, "PRAGMA user_version=99", NULL, NULL, NULL);
    sqlite3_close(h);
    cr_assert_eq(ba_db_open(dbpath, 1, &db, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "newer") != NULL, "%s", err.msg);
}

BOTH_BACKENDS(unknown_study_and_trial_are_clear_errors) {
    ba_db_t *db;
    ba_error err;
    cr_assert_eq(ba_db_open(dbpath, 1, &db, &err), BA_OK);
    ba_study_info_t info;
    cr_assert_eq(ba_db_study_get(db, "nope", &info, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "'nope'") != NULL);
    int64_t sid = make_study(db, "s");
    cr_assert_eq(ba_db_study_create(db, "s", "m", "a", "b", "{}", NULL, 0, NULL, &err), BA_ERR_INPUT);
    ba_trial_t t;
    cr_assert_eq(ba_db_trial_get(db, sid, 42, &t, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "42") != NULL);
    cr_assert_eq(ba_db_study_get(db, "s", &info, &err), BA_OK);
    cr_assert_str_eq(info.model_sha256, "abc");
    ba_db_study_info_free(&info);
    ba_db_close(db);
}

Test(db, opening_missing_file_without_create_fails) {
    ba_db_t *db;
    ba_error err;
    cr_assert_neq(ba_db_open("/nonexistent-dir/x.db", 0, &db, &err), BA_OK);
}

BOTH_BACKENDS(sensitivity_cache_hits_after_put) {
    ba_db_t *db;
    ba_error err;
    cr_assert_eq(ba_db_open(dbpath, 1, &db, &err), BA_OK);
    char *p;
    cr_assert_eq(ba_db_sens_get(db, "k1", &p, &err), BA_OK);
    cr_assert_null(p);
    cr_assert_eq(ba_db_sens_put(db, "k1", "sha", "hessian", "{\"layers\":[]}", &err), BA_OK);
    cr_assert_eq(ba_db_sens_get(db, "k1", &p, &err), BA_OK);
    cr_assert_str_eq(p, "{\"layers\":[]}");
    free(p);
    ba_db_close(db);
}

BOTH_BACKENDS(concurrent_writers_on_two_studies_do_not_fail) {
    ba_db_t *db;
    ba_error err;
    cr_assert_eq(ba_db_open(dbpath, 1, &db, &err), BA_OK);
    make_study(db, "a");
    make_study(db, "b");
    ba_db_close(db);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            ba_db_t *d;
            if (ba_db_open(dbpath, 0, &d, NULL) != BA_OK) _exit(2);
            ba_study_info_t info;
            if (ba_db_study_get(d, k ? "b" : "a", &info, NULL) != BA_OK) _exit(3);
            for (int i = 0; i < 60; i++) {
                int w[2] = {4, 4}, a[2] = {0, 0};
                ba_trial_t t = {0};
                snprintf(t.state, sizeof t.state, "complete");
                snprintf(t.method, sizeof t.method, "evo");
                t.kl = i;
                t.latency = t.mse = t.accuracy = NAN;
                t.nlayers = 2;
                t.w_bits = w;
                t.a_bits = a;
                if (ba_db_trial_add(d, info.id, &t, "{}", NULL) != BA_OK) _exit(4);
                ba_trial_t *rows;
                int n;
                if (ba_db_trials_query(d, info.id, NULL, &rows, &n, NULL) != BA_OK) _exit(5);
                ba_db_trials_free(rows, n);
            }
            ba_db_study_info_free(&info);
            ba_db_close(d);
            _exit(0);
        }
    }
    for (int k = 0; k < 2; k++) {
        int status;
        waitpid(kids[k], &status, 0);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer %d exit %d", k, WEXITSTATUS(status));
    }
    cr_assert_eq(ba_db_open(dbpath, 0, &db, &err), BA_OK);
    ba_study_info_t info;
    cr_assert_eq(ba_db_study_get(db, "b", &info, &err), BA_OK);
    cr_assert_eq(info.ntrials, 60);
    ba_db_study_info_free(&info);
    ba_db_close(db);
    cr_assert(integrity_ok(dbpath));
}

/* A full disk (simulated by a file-size limit) fails the write cleanly: the
 * error reaches the caller, earlier trials survive, the file stays valid. */
Test(db, full_disk_fails_cleanly_and_keeps_earlier_trials) {
    ba_db_t *db;
    ba_error err;
    cr_assert_eq(ba_db_open(dbpath, 1, &db, &err), BA_OK);
    int64_t sid = make_study(db, "s");
    add_trial(db, sid, 4.0, 0.02, 4, 4);
    ba_db_close(db);
    pid_t kid = fork();
    if (kid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {64 * 1024, 64 * 1024};
        setrlimit(RLIMIT_FSIZE, &rl);
        ba_db_t *d;
        if (ba_db_open(dbpath, 0, &d, NULL) != BA_OK) _exit(2);
        static char big[200000];
        memset(big, 'x', sizeof big - 1);
        for (int i = 0; i < 50; i++) {
            int w[2] = {4, 4};
            ba_trial_t t = {0};
            snprintf(t.state, sizeof t.state, "complete");
            snprintf(t.method, sizeof t.method, "evo");
            t.latency = t.mse = t.accuracy = t.kl = NAN;
            t.nlayers = 2;
            t.w_bits = w;
            ba_error e2;
            ba_status st = ba_db_trial_add(d, sid, &t, big, &e2);
            if (st != BA_OK) {
                ba_db_close(d);
                _exit(strstr(e2.msg, dbpath) ? 0 : 6);
            }
        }
        _exit(7); /* the limit never bit */
    }
    int status;
    waitpid(kid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child exit %d", WEXITSTATUS(status));
    cr_assert(integrity_ok(dbpath));
    cr_assert_eq(ba_db_open(dbpath, 0, &db, &err), BA_OK, "%s", err.msg);
    ba_trial_t *t;
    int n;
    cr_assert_eq(ba_db_trials_query(db, sid, NULL, &t, &n, &err), BA_OK);
    cr_assert_geq(n, 1);
    cr_assert_float_eq(t[0].kl, 0.02, 1e-12);
    ba_db_trials_free(t, n);
    ba_db_close(db);
}

/* Several processes opening a database that does not exist yet, at once: one
 * creates the schema, the others wait for it — none sees a half-made file or
 * fails to switch to WAL (both happened before the header reads shared one
 * read transaction and the WAL switch retried). */
Test(db, concurrent_first_opens_all_succeed) {
    for (int round = 0; round < 10; round++) {
        cleanup_path();
        pid_t kids[4];
        for (int k = 0; k < 4; k++) {
            kids[k] = fork();
            if (kids[k] == 0) {
                ba_db_t *d;
                ba_error e;
                if (ba_db_open(dbpath, 1, &d, &e) != BA_OK) _exit(2);
                char name[16];
                snprintf(name, sizeof name, "s%d", k);
                if (ba_db_study_create(d, name, "m", "a", "b", "{}", NULL, 0, NULL, &e) != BA_OK) _exit(3);
                ba_db_close(d);
                _exit(0);
            }
        }
        for (int k = 0; k < 4; k++) {
            int status;
            waitpid(kids[k], &status, 0);
            cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "round %d: process %d exit %d", round, k,
                      WEXITSTATUS(status));
        }
        cr_assert(integrity_ok(dbpath));
    }
}

/* The work queue of many workers: a claim is exclusive, an expired lease is
 * taken over (the same measurement, attempt 2) and the old holder's heartbeat
 * then fails; a second queueing leaves an entry as it is; the attempt cap. */
BOTH_BACKENDS(work_queue_claims_are_exclusive_and_expired_leases_are_taken_over) {
    ba_db_t *db, *db2;
    ba_error err;
    cr_assert_eq(ba_db_open(dbpath, 1, &db, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_db_open(dbpath, 0, &db2, &err), BA_OK, "%s", err.msg);
    int64_t sid = make_study(db, "s");
    const char *cfg[3] = {"4,4", "3,8", "8,2"};
    int64_t first[3] = {0, 64, 0}, samples[3] = {512, 64, 512};
    cr_assert_eq(ba_db_work_add(db, sid, cfg, first, samples, 3, &err), BA_OK, "%s", err.msg);
    ba_db_work_item_t a, b, c, d;
    int found;
    cr_assert_eq(ba_db_work_claim(db, sid, "w1", 30, 3, &a, &found, &err), BA_OK, "%s", err.msg);
    cr_assert(found);
    cr_expect_str_eq(a.config, "4,4");
    cr_expect_eq(a.attempt, 1);
    cr_assert_eq(ba_db_work_claim(db2, sid, "w2", 30, 3, &b, &found, &err), BA_OK, "%s", err.msg);
    cr_assert(found);
    cr_expect_str_eq(b.config, "3,8");
    cr_expect_eq(b.first, 64);
    cr_assert_eq(ba_db_work_claim(db, sid, "w1", 0.3, 3, &c, &found, &err), BA_OK, "%s", err.msg);
    cr_assert(found);
    cr_expect_str_eq(c.config, "8,2");
    cr_assert_eq(ba_db_work_claim(db2, sid, "w2", 30, 3, &d, &found, &err), BA_OK, "%s", err.msg);
    cr_expect(!found, "every entry is held");
    /* A heartbeat keeps a lease; without one it runs out and another worker takes the entry over. */
    int held;
    cr_assert_eq(ba_db_work_renew(db, sid, &c, 0.3, &held, &err), BA_OK, "%s", err.msg);
    cr_expect(held);
    usleep(600000);
    cr_assert_eq(ba_db_work_claim(db2, sid, "w2", 30, 3, &d, &found, &err), BA_OK, "%s", err.msg);
    cr_assert(found, "an expired lease is claimed again");
    cr_expect_str_eq(d.config, "8,2");
    cr_expect_eq(d.attempt, 2);
    cr_assert_eq(ba_db_work_renew(db, sid, &c, 30, &held, &err), BA_OK, "%s", err.msg);
    cr_expect(!held, "the first holder lost it");
    char state[16];
    int64_t attempts;
    int expired;
    ba_memo_entry_t e = {0.5, 0.5, NAN, 0.9, NAN};
    cr_assert_eq(ba_db_work_done(db2, sid, &d, &e, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_db_work_done(db, sid, &c, &e, &err), BA_OK, "a late second completion changes nothing");
    cr_assert_eq(ba_db_work_get(db, sid, "8,2", 0, 512, state, &attempts, &expired, &found, &err), BA_OK);
    cr_expect(found);
    cr_expect_str_eq(state, "done");
    cr_expect_eq(attempts, 2);
    ba_memo_entry_t m;
    cr_assert_eq(ba_db_memo_get(db, sid, "8,2", 0, 512, &m, &found, &err), BA_OK);
    cr_expect(found && m.objective == 0.5 && isnan(m.mse));
    /* Queued again (another worker announcing the same batch): unchanged. */
    cr_assert_eq(ba_db_work_add(db2, sid, cfg, first, samples, 3, &err), BA_OK, "%s", err.msg);
    int64_t n, done, claims;
    cr_assert_eq(ba_db_work_totals(db, sid, &n, &done, &claims, &err), BA_OK);
    cr_expect_eq(n, 3);
    cr_expect_eq(done, 1);
    cr_expect_eq(claims, 4);
    /* The cap: an entry claimed max_attempts times is not handed out again. */
    cr_assert_eq(ba_db_work_renew(db, sid, &a, 0.1, &held, &err), BA_OK);
    usleep(300000);
    ba_db_work_item_t x;
    cr_assert_eq(ba_db_work_claim(db2, sid, "w2", 30, 1, &x, &found, &err), BA_OK, "%s", err.msg);
    cr_expect(!found, "4,4 was claimed once already");
    cr_assert_eq(ba_db_work_get(db, sid, "4,4", 0, 512, state, &attempts, &expired, &found, &err), BA_OK);
    cr_expect(expired && attempts == 1 && !strcmp(state, "running"));
    ba_db_work_item_free(&a);
    ba_db_work_item_free(&b);
    ba_db_work_item_free(&c);
    ba_db_work_item_free(&d);
    ba_db_close(db2);
    ba_db_close(db);
}
