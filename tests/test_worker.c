/* Many workers on one study (docs/worker.md) on the private PostgreSQL cluster
 * (tests/helpers.h; skipped when the server binaries are missing): 1, 2 and 4
 * workers give the trials and plan of one SQLite process; SIGKILLs of random
 * workers at random instants lose no trial and change nothing; a worker whose
 * connection is cut while it holds a claim has that measurement run again
 * elsewhere. Also the --db URL handling of the CLI. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef BA_HAVE_LIBPQ
#include <libpq-fe.h>
#endif

#include "db/db.h"
#include "tests/helpers.h"

#define DIGITS BA_FIXTURES "/digits/"
#define STUDY "w"
/* Kills over all rounds of the kill test, and its seed. */
#define MIN_KILLS 20
#define KILL_SEED 20261206u
#define MAX_ROUNDS 40

/* argv of a search of the digits CNN on db (a small evolution: about a second alone). */
static int search_argv(const char *db, const char *plan, const char *lease, const char **argv) {
    const char *a[] = {BA_CLI,
                       "--db",
                       db,
                       "-q",
                       "search",
                       "--method",
                       "ilp+evo",
                       DIGITS "cnn_dyn.onnx",
                       "--data",
                       DIGITS "calib_x.npy",
                       "--labels",
                       DIGITS "calib_y.npy",
                       "--budget",
                       "avg-bits=4.5", /* the ILP seed is no uniform width: uniform is a trial of its own */
                       "--bits",
                       "2,3,4,8",
                       "--sensitivity",
                       "act",
                       "--generations",
                       "5",
                       "--offspring",
                       "8",
                       "--seed",
                       "11",
                       "--study",
                       STUDY,
                       "--lease",
                       lease,
                       "--max-attempts",
                       "1000",
                       "--plan-out",
                       plan,
                       NULL};
    memcpy(argv, a, sizeof a);
    return (int)(sizeof a / sizeof a[0]) - 1;
}

static void worker_argv(const char *db, const char *plan, const char *lease, const char **argv) {
    const char *a[] = {BA_CLI, "--db",           db,     "-q",         "worker", "--study", STUDY, "--lease",
                       lease,  "--max-attempts", "1000", "--plan-out", plan,     NULL};
    memcpy(argv, a, sizeof a);
}

static pid_t spawn(const char *const *argv) {
    pid_t pid = fork();
    if (pid == 0) {
        FILE *n = freopen("/dev/null", "w", stdout);
        FILE *e = freopen("/dev/null", "w", stderr);
        (void)n, (void)e;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid) {
    int ws = 0;
    waitpid(pid, &ws, 0);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = '\0';
    fclose(f);
    return b;
}

/* Waits (up to 60 s) until the study exists in db. */
static void wait_study(const char *db) {
    for (int i = 0; i < 3000; i++) {
        ba_db_t *d;
        ba_error e;
        if (ba_db_open(db, BA_DB_OPEN_READONLY, &d, &e) == BA_OK) {
            ba_study_info_t info;
            int ok = ba_db_study_get(d, STUDY, &info, &e) == BA_OK;
            if (ok) ba_db_study_info_free(&info);
            ba_db_close(d);
            if (ok) return;
        }
        usleep(20000);
    }
    cr_assert_fail("study never appeared in %s", db);
}

static void trials_of(const char *db, ba_trial_t **t, int *n) {
    ba_db_t *d;
    ba_error err;
    cr_assert_eq(ba_db_open(db, BA_DB_OPEN_READONLY, &d, &err), BA_OK, "%s", err.msg);
    ba_study_info_t info;
    cr_assert_eq(ba_db_study_get(d, STUDY, &info, &err), BA_OK, "%s", err.msg);
    cr_expect_str_eq(info.state, "complete");
    cr_assert_eq(ba_db_trials_query(d, info.id, NULL, t, n, &err), BA_OK, "%s", err.msg);
    ba_db_study_info_free(&info);
    ba_db_close(d);
}

/* Every stored fact of every trial but its timestamps is the same in both. */
static void expect_same_trials(const char *ref, const char *db) {
    ba_trial_t *a, *b;
    int na, nb;
    trials_of(ref, &a, &na);
    trials_of(db, &b, &nb);
    cr_expect_eq(na, nb, "%d trials, the single process stored %d", nb, na);
    cr_expect_gt(na, 10);
    for (int i = 0; i < na && i < nb; i++) {
        long long k = (long long)a[i].number;
        cr_expect_eq(b[i].number, a[i].number, "row %d", i);
        cr_expect_str_eq(b[i].state, a[i].state, "trial %lld", k);
        cr_expect_str_eq(b[i].method, a[i].method, "trial %lld", k);
        cr_expect_eq(b[i].samples, a[i].samples, "trial %lld", k);
        const double va[] = {a[i].avg_bits, a[i].memory,    a[i].bops,     a[i].predicted, a[i].kl,
                             a[i].mse,      a[i].agreement, a[i].accuracy, a[i].objective, a[i].validation};
        const double vb[] = {b[i].avg_bits, b[i].memory,    b[i].bops,     b[i].predicted, b[i].kl,
                             b[i].mse,      b[i].agreement, b[i].accuracy, b[i].objective, b[i].validation};
        for (size_t j = 0; j < sizeof va / sizeof va[0]; j++)
            cr_expect(memcmp(&va[j], &vb[j], sizeof va[j]) == 0 || (isnan(va[j]) && isnan(vb[j])),
                      "trial %lld figure %zu: %.17g vs %.17g", k, j, va[j], vb[j]);
        cr_assert_eq(b[i].nlayers, a[i].nlayers);
        for (int l = 0; l < a[i].nlayers; l++) cr_expect_eq(b[i].w_bits[l], a[i].w_bits[l], "trial %lld", k);
    }
    ba_db_trials_free(a, na);
    ba_db_trials_free(b, nb);
    /* The final choice's mark and account, byte for byte. */
    cr_expect_eq(ba_test_expect_same_choice(ref, db, STUDY, na), 1, "one trial is the final choice");
}

static void expect_same_file(const char *ref, const char *path) {
    char *a = read_all(ref), *b = read_all(path);
    cr_assert_not_null(a, "%s", ref);
    cr_assert_not_null(b, "%s missing", path);
    cr_expect_str_eq(b, a, "%s differs from the single process's plan", path);
    free(a);
    free(b);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The single-process reference: the same search on an SQLite file. Returns its wall time. */
static double reference(const char *dir, char *refdb, char *refplan, size_t cap) {
    snprintf(refdb, cap, "%s/ref.db", dir);
    snprintf(refplan, cap, "%s/ref.json", dir);
    const char *argv[40];
    search_argv(refdb, refplan, "30", argv);
    double t0 = now_s();
    cr_assert_eq(wait_exit(spawn(argv)), 0, "the single-process search failed");
    return now_s() - t0;
}

/* Queue totals of the study in db. */
static void work_totals(const char *db, int64_t *n, int64_t *done, int64_t *claims) {
    ba_db_t *d;
    ba_error err;
    cr_assert_eq(ba_db_open(db, BA_DB_OPEN_READONLY, &d, &err), BA_OK, "%s", err.msg);
    ba_study_info_t info;
    cr_assert_eq(ba_db_study_get(d, STUDY, &info, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_db_work_totals(d, info.id, n, done, claims, &err), BA_OK, "%s", err.msg);
    ba_db_study_info_free(&info);
    ba_db_close(d);
}

TestSuite(worker, .timeout = 120);

Test(worker, one_two_and_four_workers_give_the_single_process_trials_and_plan) {
    char url[1024], dir[4096], refdb[4200], refplan[4200];
    BA_TEST_PG_DB_OR_SKIP(url, sizeof url);
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    reference(dir, refdb, refplan, sizeof refdb);
    ba_trial_t *rt;
    int nrt, uniform_trials = 0;
    trials_of(refdb, &rt, &nrt);
    for (int i = 0; i < nrt; i++) uniform_trials += !strcmp(rt[i].method, "uniform");
    ba_db_trials_free(rt, nrt);
    cr_expect_eq(uniform_trials, 1, "the final choice measured the uniform configuration as a trial");
    static const int counts[] = {1, 2, 4};
    for (size_t k = 0; k < 3; k++) {
        int n = counts[k];
        if (k > 0) BA_TEST_PG_DB_OR_SKIP(url, sizeof url);
        char plans[4][4200];
        const char *argv[4][40];
        pid_t pid[4];
        /* The search creates the study and works; the others join it as workers. */
        snprintf(plans[0], sizeof plans[0], "%s/n%d_0.json", dir, n);
        search_argv(url, plans[0], "30", argv[0]);
        pid[0] = spawn(argv[0]);
        if (n > 1) wait_study(url);
        for (int i = 1; i < n; i++) {
            snprintf(plans[i], sizeof plans[i], "%s/n%d_%d.json", dir, n, i);
            worker_argv(url, plans[i], "30", argv[i]);
            pid[i] = spawn(argv[i]);
        }
        for (int i = 0; i < n; i++) cr_assert_eq(wait_exit(pid[i]), 0, "N=%d: process %d failed", n, i);
        for (int i = 0; i < n; i++) expect_same_file(refplan, plans[i]);
        expect_same_trials(refdb, url);
        int64_t queued, done, claims;
        work_totals(url, &queued, &done, &claims);
        cr_expect_gt(queued, 0);
        cr_expect_eq(done, queued, "N=%d: %lld of %lld measurements done", n, (long long)done,
                     (long long)queued);
        cr_expect_eq(claims, queued, "N=%d: no worker died, so each measurement was claimed once", n);
    }
    ba_test_rmtree(dir);
}

static uint64_t rng_state = KILL_SEED;
static double uniform(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

Test(worker, sigkills_of_random_workers_lose_no_trial_and_change_nothing, .timeout = 900) {
    char url[1024], dir[4096], refdb[4200], refplan[4200];
    BA_TEST_PG_DB_OR_SKIP(url, sizeof url);
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    /* Kills come every 5-35% of the time the search alone takes, so that each round sees a few
     * whether the build is fast or slow (sanitizers), and restarted workers still get somewhere. */
    double scale = reference(dir, refdb, refplan, sizeof refdb);
    cr_log_info("the single-process search took %.2f s", scale);
    scale = scale < 0.6 ? 0.6 : scale > 30 ? 30 : scale;
    enum { SLOTS = 3 };
    int kills = 0, rounds = 0;
    int64_t reclaims = 0; /* measurements claimed again after their worker was killed */
    /* Rounds on fresh databases until enough kills landed while a study was running. */
    while (kills < MIN_KILLS && rounds < MAX_ROUNDS) {
        if (rounds++) BA_TEST_PG_DB_OR_SKIP(url, sizeof url);
        char plan[SLOTS][4200];
        const char *argv[SLOTS][40];
        pid_t pid[SLOTS];
        for (int i = 0; i < SLOTS; i++) {
            /* Every slot runs the same search: the first creates the study, the others join it. */
            snprintf(plan[i], sizeof plan[i], "%s/r%d_%d.json", dir, rounds, i);
            search_argv(url, plan[i], "0.4", argv[i]);
            pid[i] = spawn(argv[i]);
        }
        int finished = 0, restarts = 0;
        while (!finished) {
            usleep((useconds_t)(scale * (0.05 + 0.3 * uniform()) * 1e6));
            for (int i = 0; i < SLOTS; i++) {
                int ws;
                if (pid[i] > 0 && waitpid(pid[i], &ws, WNOHANG) == pid[i]) {
                    pid[i] = 0;
                    if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0)
                        finished = 1; /* a search returns only when the study is done */
                    else {
                        /* Two first searches raced to create the study: the loser starts again. */
                        cr_assert_lt(++restarts, 20, "round %d: slot %d keeps failing (exit %d)", rounds, i,
                                     WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
                        pid[i] = spawn(argv[i]);
                    }
                }
            }
            if (finished) break;
            int v = (int)(uniform() * SLOTS);
            if (pid[v] > 0 && waitpid(pid[v], NULL, WNOHANG) == 0) {
                kill(pid[v], SIGKILL);
                waitpid(pid[v], NULL, 0);
                kills++;
                pid[v] = spawn(argv[v]);
            }
        }
        for (int i = 0; i < SLOTS; i++)
            if (pid[i] > 0)
                cr_assert_eq(wait_exit(pid[i]), 0, "round %d: slot %d failed after the study ended", rounds,
                             i);
        /* The plan as any worker reports it now, and every trial. */
        char final[4200];
        snprintf(final, sizeof final, "%s/r%d_final.json", dir, rounds);
        const char *wa[20];
        worker_argv(url, final, "30", wa);
        cr_assert_eq(wait_exit(spawn(wa)), 0);
        expect_same_file(refplan, final);
        expect_same_trials(refdb, url);
        int64_t queued, done, claims;
        work_totals(url, &queued, &done, &claims);
        cr_expect_eq(done, queued, "round %d: %lld of %lld measurements done", rounds, (long long)done,
                     (long long)queued);
        cr_expect_geq(claims, queued);
        reclaims += claims - queued;
    }
    cr_log_info("%d SIGKILLs in %d rounds; %lld measurements claimed again", kills, rounds,
                (long long)reclaims);
    cr_expect_geq(kills, MIN_KILLS, "%d kills in %d rounds", kills, rounds);
    ba_test_rmtree(dir);
}

#ifdef BA_HAVE_LIBPQ
/* libpq conninfo of a postgresql:// URL is the URL itself. */
static PGconn *connect_or_fail(const char *url) {
    PGconn *c = PQconnectdb(url);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

static PGresult *query(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    cr_assert(s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
    return r;
}

/* The memo is locked so that a worker finishing a measurement blocks while it
 * holds the claim; its server connections are then terminated. That worker
 * fails, and after its lease runs out another worker measures the same
 * configuration again (attempt 2); the result is unchanged. */
Test(worker, a_worker_whose_connection_drops_mid_trial_has_it_run_elsewhere) {
    char url[1024], dir[4096], refdb[4200], refplan[4200];
    BA_TEST_PG_DB_OR_SKIP(url, sizeof url);
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    reference(dir, refdb, refplan, sizeof refdb);
    char p0[4200], p1[4200];
    snprintf(p0, sizeof p0, "%s/a.json", dir);
    snprintf(p1, sizeof p1, "%s/b.json", dir);
    const char *a0[40], *a1[40];
    search_argv(url, p0, "0.5", a0);
    pid_t pid[2];
    pid[0] = spawn(a0);
    wait_study(url);
    worker_argv(url, p1, "0.5", a1);
    pid[1] = spawn(a1);
    PGconn *c = connect_or_fail(url);
    /* Wait for the queue, then hold the memo. */
    for (int i = 0;; i++) {
        PGresult *r = query(c, "SELECT to_regclass('work') IS NOT NULL AND EXISTS(SELECT 1 FROM work)");
        int ready = !strcmp(PQgetvalue(r, 0, 0), "t");
        PQclear(r);
        if (ready) break;
        cr_assert_lt(i, 3000, "no measurement was ever queued");
        usleep(10000);
    }
    PQclear(query(c, "BEGIN"));
    PQclear(query(c, "LOCK TABLE memo IN EXCLUSIVE MODE"));
    char victim[256] = "", config[256] = "", first[32] = "", samples[32] = "";
    for (int i = 0; !victim[0]; i++) {
        PGresult *r =
            query(c, "SELECT w.worker, w.config, w.first, w.samples FROM work w JOIN pg_stat_activity a"
                     " ON a.application_name = w.worker WHERE w.state = 'running'"
                     " AND a.wait_event_type = 'Lock' ORDER BY w.seq LIMIT 1");
        if (PQntuples(r) == 1) {
            snprintf(victim, sizeof victim, "%s", PQgetvalue(r, 0, 0));
            snprintf(config, sizeof config, "%s", PQgetvalue(r, 0, 1));
            snprintf(first, sizeof first, "%s", PQgetvalue(r, 0, 2));
            snprintf(samples, sizeof samples, "%s", PQgetvalue(r, 0, 3));
        }
        PQclear(r);
        cr_assert_lt(i, 3000, "no worker ever blocked finishing a measurement");
        if (!victim[0]) usleep(10000);
    }
    const char *params[1] = {victim};
    PGresult *r = PQexecParams(c,
                               "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                               " WHERE application_name = $1",
                               1, NULL, params, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    cr_expect_geq(atoi(PQgetvalue(r, 0, 0)), 1);
    PQclear(r);
    PQclear(query(c, "ROLLBACK"));
    int rc[2] = {wait_exit(pid[0]), wait_exit(pid[1])};
    int failed = (rc[0] != 0) + (rc[1] != 0);
    cr_expect_eq(failed, 1, "exactly the cut worker fails (exits %d, %d)", rc[0], rc[1]);
    /* The measurement it held was claimed again and finished by the other. */
    const char *kp[3] = {config, first, samples};
    r = PQexecParams(c,
                     "SELECT state, attempt, worker FROM work WHERE config = $1 AND first = $2::bigint"
                     " AND samples = $3::bigint",
                     3, NULL, kp, NULL, NULL, 0);
    cr_assert_eq(PQntuples(r), 1);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "done");
    cr_expect_geq(atoi(PQgetvalue(r, 0, 1)), 2, "claimed %s time(s)", PQgetvalue(r, 0, 1));
    cr_expect_str_neq(PQgetvalue(r, 0, 2), victim);
    PQclear(r);
    PQfinish(c);
    expect_same_file(refplan, rc[0] == 0 ? p0 : p1);
    expect_same_trials(refdb, url);
    ba_test_rmtree(dir);
}
#endif

/* Measurements (1.2 s each, by an --evaluator) outlast the 0.5 s lease: the
 * heartbeat keeps them, so the idle worker never takes one over. */
Test(worker, the_heartbeat_keeps_a_measurement_longer_than_its_lease) {
    char url[1024], dir[4096], log[4200], mark[4200], cmd[9000], p0[4200], p1[4200];
    BA_TEST_PG_DB_OR_SKIP(url, sizeof url);
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(log, sizeof log, "%s/eval.log", dir);
    snprintf(mark, sizeof mark, "%s/mark", dir);
    snprintf(p0, sizeof p0, "%s/a.json", dir);
    snprintf(p1, sizeof p1, "%s/b.json", dir);
    snprintf(cmd, sizeof cmd, "python3 '%s/tests/evaluator.py' slow '%s' '%s'", BA_SOURCE_DIR, log, mark);
    const char *a0[] = {BA_CLI,
                        "--db",
                        url,
                        "-q",
                        "search",
                        "--method",
                        "ilp+evo",
                        DIGITS "mlp_dyn.onnx",
                        "--data",
                        DIGITS "calib_x_flat.npy",
                        "--budget",
                        "avg-bits=4",
                        "--bits",
                        "2,4,8",
                        "--sensitivity",
                        "weight",
                        "--generations",
                        "1",
                        "--offspring",
                        "2",
                        "--seed",
                        "5",
                        "--study",
                        STUDY,
                        "--evaluator",
                        cmd,
                        "--lease",
                        "0.5",
                        "--plan-out",
                        p0,
                        NULL};
    pid_t pid[2];
    pid[0] = spawn(a0);
    wait_study(url);
    const char *a1[20];
    worker_argv(url, p1, "0.5", a1);
    pid[1] = spawn(a1);
    cr_assert_eq(wait_exit(pid[0]), 0);
    cr_assert_eq(wait_exit(pid[1]), 0);
    expect_same_file(p0, p1);
    int64_t queued, done, claims;
    work_totals(url, &queued, &done, &claims);
    cr_expect_geq(queued, 2);
    cr_expect_eq(done, queued);
    cr_expect_eq(claims, queued,
                 "%lld claims of %lld measurements: a lease ran out while its worker was alive",
                 (long long)claims, (long long)queued);
    ba_test_rmtree(dir);
}

Test(worker, db_urls_never_echo_a_password) {
    ba_test_run_t r = ba_test_cli("--db", "postgresql://me:s3cret@127.0.0.1:1/none?connect_timeout=2",
                                  "trials", "--study", "x", NULL);
    cr_expect_neq(r.status, 0);
    cr_expect(strstr(r.err, "postgresql://me:***@127.0.0.1:1/none"), "%s", r.err);
    cr_expect_null(strstr(r.err, "s3cret"), "%s", r.err);
    ba_test_run_free(&r);
    char m[256];
    ba_db_url_masked("postgres://u@h/db?password=pw&sslmode=off", m, sizeof m);
    cr_expect_str_eq(m, "postgres://u@h/db?password=***&sslmode=off");
    ba_db_url_masked("postgresql://u:p@h:5432/db", m, sizeof m);
    cr_expect_str_eq(m, "postgresql://u:***@h:5432/db");
    ba_db_url_masked("postgresql:///db?host=/tmp/x", m, sizeof m);
    cr_expect_str_eq(m, "postgresql:///db?host=/tmp/x");
}

Test(worker, worker_on_an_absent_study_exits_2) {
    char url[1024];
    BA_TEST_PG_DB_OR_SKIP(url, sizeof url);
    /* The database has no bitalloc tables yet: nothing to join. */
    ba_test_run_t r = ba_test_cli("--db", url, "worker", "--study", "nope", NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "no bitalloc tables"), "%s", r.err);
    ba_test_run_free(&r);
    /* $BITALLOC_DB names it as --db does. */
    setenv("BITALLOC_DB", url, 1);
    r = ba_test_cli("worker", "--study", "nope", NULL);
    unsetenv("BITALLOC_DB");
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "no bitalloc tables"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", url, "worker", "--study", "nope", "--lease", "0", NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "--lease"), "%s", r.err);
    ba_test_run_free(&r);
}
