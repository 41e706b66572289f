/* Kill-and-resume (SPEC §7, issue 7): `bitalloc search` on the digits MLP is
 * SIGKILLed at seeded random instants (sensitivity, ILP, evolution, writes)
 * and resumed until done; the plan file and the complete/pruned trial list
 * must equal an uninterrupted run's, and the database must pass
 * PRAGMA integrity_check. Also: concurrent readers and writers on one file,
 * changed inputs refused, and a finished study resumed just reports. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db/db.h"
#include "tests/helpers.h"

#define DIGITS BA_FIXTURES "/digits/"
#define MIN_KILLS 10
#define KILL_SEED 20240607u
/* Small search so one uninterrupted run takes about a second. */
#define GENS "6"
#define KIDS "6"

/* The search method the kill test runs (ilp+evo unless set). */
static const char *g_method = "ilp+evo";
/* Its budget, and whether the study must hold a trial of method `uniform` (the final choice's). */
static const char *g_budget = "avg-bits=4";
static int g_expect_uniform;

static void search_argv(const char *db, const char *study, const char *plan, const char **argv) {
    const char *a[] = {BA_CLI,
                       "--db",
                       db,
                       "-q",
                       "search",
                       "--method",
                       g_method,
                       DIGITS "mlp_dyn.onnx",
                       "--data",
                       DIGITS "calib_x_flat.npy",
                       "--labels",
                       DIGITS "calib_y.npy",
                       "--budget",
                       g_budget,
                       "--bits",
                       "2,3,4,8",
                       "--sensitivity",
                       "act",
                       "--generations",
                       GENS,
                       "--offspring",
                       KIDS,
                       "--seed",
                       "3",
                       "--study",
                       study,
                       "--plan-out",
                       plan,
                       NULL};
    memcpy(argv, a, sizeof a);
}

static void resume_argv(const char *db, const char *study, const char *plan, const char **argv) {
    const char *a[] = {BA_CLI, "--db", db, "-q", "resume", "--study", study, "--plan-out", plan, NULL};
    memcpy(argv, a, sizeof a);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Starts argv with stdout/stderr to /dev/null; waits delay_s then SIGKILLs it
 * unless it finished. Returns its exit code, or -SIGKILL when killed. */
static int run_and_kill(const char *const *argv, double delay_s) {
    pid_t pid = fork();
    if (pid == 0) {
        FILE *n = freopen("/dev/null", "w", stdout);
        FILE *e = freopen("/dev/null", "w", stderr);
        (void)n, (void)e;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    double t0 = now_s();
    int ws = 0;
    while (now_s() - t0 < delay_s) {
        if (waitpid(pid, &ws, WNOHANG) == pid) return WIFEXITED(ws) ? WEXITSTATUS(ws) : -WTERMSIG(ws);
        usleep(2000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &ws, 0);
    if (WIFEXITED(ws)) return WEXITSTATUS(ws);
    return -WTERMSIG(ws);
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

static void trials_of(const char *dbpath, const char *study, ba_trial_t **t, int *n) {
    ba_db_t *db;
    ba_error err;
    cr_assert_eq(ba_db_open(dbpath, 0, &db, &err), BA_OK, "%s", err.msg);
    ba_study_info_t info;
    cr_assert_eq(ba_db_study_get(db, study, &info, &err), BA_OK, "%s", err.msg);
    cr_expect_str_eq(info.state, "complete");
    ba_trial_query_t q = {0};
    cr_assert_eq(ba_db_trials_query(db, info.id, &q, t, n, &err), BA_OK, "%s", err.msg);
    ba_db_study_info_free(&info);
    ba_db_close(db);
}

static void expect_same_trials(const char *a, const char *b, const char *study) {
    ba_trial_t *ta, *tb;
    int na, nb;
    trials_of(a, study, &ta, &na);
    trials_of(b, study, &tb, &nb);
    cr_expect_eq(na, nb, "trial count %d vs %d", na, nb);
    for (int i = 0; i < na && i < nb; i++) {
        cr_expect_eq(ta[i].number, tb[i].number);
        cr_expect_str_eq(ta[i].state, tb[i].state, "trial %lld", (long long)ta[i].number);
        cr_expect_eq(ta[i].samples, tb[i].samples, "trial %lld", (long long)ta[i].number);
        cr_expect(ta[i].kl == tb[i].kl, "trial %lld: kl %.17g vs %.17g", (long long)ta[i].number, ta[i].kl,
                  tb[i].kl);
        cr_expect(ta[i].agreement == tb[i].agreement, "trial %lld", (long long)ta[i].number);
        cr_expect(ta[i].predicted == tb[i].predicted, "trial %lld", (long long)ta[i].number);
        cr_expect(ta[i].validation == tb[i].validation ||
                      (isnan(ta[i].validation) && isnan(tb[i].validation)),
                  "trial %lld: validation %.17g vs %.17g", (long long)ta[i].number, ta[i].validation,
                  tb[i].validation);
        cr_assert_eq(ta[i].nlayers, tb[i].nlayers);
        for (int l = 0; l < ta[i].nlayers; l++)
            cr_expect_eq(ta[i].w_bits[l], tb[i].w_bits[l], "trial %lld layer %d", (long long)ta[i].number, l);
    }
    ba_db_trials_free(ta, na);
    ba_db_trials_free(tb, nb);
    /* The final choice's mark and account (an evolution with a validation part), byte for byte. */
    ba_test_expect_same_choice(a, b, study, na);
}

static void expect_integrity(const char *dbpath) {
    sqlite3 *h;
    cr_assert_eq(sqlite3_open_v2(dbpath, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *s;
    cr_assert_eq(sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &s, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
    cr_expect_str_eq((const char *)sqlite3_column_text(s, 0), "ok");
    sqlite3_finalize(s);
    sqlite3_close(h);
}

static void kill_and_resume(void) {
    char dir[4096], ref_db[4200], ref_plan[4200], db[4200], plan[4200];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(ref_db, sizeof ref_db, "%s/ref.db", dir);
    snprintf(ref_plan, sizeof ref_plan, "%s/ref/plan.json", dir);
    snprintf(db, sizeof db, "%s/k.db", dir);
    snprintf(plan, sizeof plan, "%s/k/plan.json", dir);
    const char *argv[40];
    search_argv(ref_db, "k", ref_plan, argv);
    double t0 = now_s();
    int rc = run_and_kill(argv, 1e9);
    double ref_s = now_s() - t0;
    cr_assert_eq(rc, 0, "uninterrupted search failed");
    if (g_expect_uniform) {
        ba_trial_t *t;
        int n, nu = 0;
        trials_of(ref_db, "k", &t, &n);
        for (int i = 0; i < n; i++) nu += !strcmp(t[i].method, "uniform");
        ba_db_trials_free(t, n);
        cr_expect_eq(nu, 1, "the final choice measured the uniform configuration as a trial");
    }

    /* Kill instants uniform over the uninterrupted duration, seeded; a cycle
     * kills and resumes one study until it finishes, cycles repeat (each in a
     * fresh database) until MIN_KILLS kills have landed. */
    srand(KILL_SEED);
    int kills = 0;
    for (int cycle = 0; kills < MIN_KILLS && cycle < 40; cycle++) {
        snprintf(db, sizeof db, "%s/k%d.db", dir, cycle);
        snprintf(plan, sizeof plan, "%s/k%d/plan.json", dir, cycle);
        int done = 0, started = 0;
        for (int round = 0; !done && round < 100; round++) {
            double delay = ref_s * (double)rand() / RAND_MAX;
            if (!started)
                search_argv(db, "k", plan, argv);
            else
                resume_argv(db, "k", plan, argv);
            rc = run_and_kill(argv, delay);
            if (rc == -SIGKILL) {
                kills++;
                /* Killed before the study row was committed: the next attempt is a fresh search. */
                ba_db_t *h;
                ba_error e;
                ba_study_info_t info;
                started = 0;
                if (ba_db_open(db, 0, &h, &e) == BA_OK) {
                    if (ba_db_study_get(h, "k", &info, &e) == BA_OK) {
                        started = 1;
                        ba_db_study_info_free(&info);
                    }
                    ba_db_close(h);
                }
                continue;
            }
            cr_assert_eq(rc, 0, "cycle %d round %d: exit %d", cycle, round, rc);
            done = 1;
        }
        cr_assert(done);
        char *a = read_all(ref_plan), *b = read_all(plan);
        cr_assert(a && b, "cycle %d: no plan", cycle);
        cr_expect_str_eq(a, b, "cycle %d", cycle);
        free(a);
        free(b);
        expect_same_trials(ref_db, db, "k");
        expect_integrity(db);
    }
    cr_expect_geq(kills, MIN_KILLS);
    ba_test_rmtree(dir);
}

Test(resume, killed_anywhere_resumes_to_the_uninterrupted_result, .timeout = 120) {
    kill_and_resume();
}

Test(resume, killed_anywhere_with_uniform_among_the_final_candidates, .timeout = 120) {
    g_budget = "avg-bits=6"; /* the ILP seed mixes 8 bits; uniform (4 bits) is no elite at the end */
    g_expect_uniform = 1;
    kill_and_resume();
}

Test(resume, nsga2_killed_anywhere_resumes_to_the_uninterrupted_front, .timeout = 120) {
    g_method = "nsga2";
    kill_and_resume();
}

Test(resume, finished_study_reports_again_and_changed_model_is_refused) {
    char dir[4096], db[4200], plan[4200], plan2[4200], model[4200], cmd[9000];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    snprintf(plan, sizeof plan, "%s/p1.json", dir);
    snprintf(plan2, sizeof plan2, "%s/p2.json", dir);
    snprintf(model, sizeof model, "%s/mlp.onnx", dir);
    snprintf(cmd, sizeof cmd, "cp %s %s", DIGITS "mlp_dyn.onnx", model);
    cr_assert_eq(system(cmd), 0);
    const char *argv[] = {BA_CLI,
                          "--db",
                          db,
                          "-q",
                          "search",
                          model,
                          "--data",
                          DIGITS "calib_x_flat.npy",
                          "--budget",
                          "avg-bits=4",
                          "--sensitivity",
                          "weight",
                          "--generations",
                          "2",
                          "--offspring",
                          "4",
                          "--study",
                          "s",
                          "--plan-out",
                          plan,
                          NULL};
    char *out = NULL, *err = NULL;
    int st;
    cr_assert_eq(ba_test_run(argv, &out, &err, &st), 0);
    cr_assert_eq(st, 0, "%s", err);
    free(out), free(err);
    const char *rargv[] = {BA_CLI, "--db", db, "resume", "--study", "s", "--plan-out", plan2, NULL};
    cr_assert_eq(ba_test_run(rargv, &out, &err, &st), 0);
    cr_expect_eq(st, 0, "%s", err);
    cr_expect(strstr(out, "already complete"), "%s", out);
    free(out), free(err);
    char *a = read_all(plan), *b = read_all(plan2);
    cr_assert(a && b);
    cr_expect_str_eq(a, b);
    free(a), free(b);
    /* Change one byte of the model: refused with exit 2 naming the file. */
    FILE *f = fopen(model, "ab");
    fputc(0, f);
    fclose(f);
    cr_assert_eq(ba_test_run(rargv, &out, &err, &st), 0);
    cr_expect_eq(st, 2, "%s", err);
    cr_expect(strstr(err, model) && strstr(err, "changed"), "%s", err);
    free(out), free(err);
    ba_test_rmtree(dir);
}

Test(resume, readers_and_two_searches_share_one_database, .timeout = 60) {
    char dir[4096], db[4200], p1[4200], p2[4200], ref1[4200], refdb[4200];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/c.db", dir);
    snprintf(refdb, sizeof refdb, "%s/r.db", dir);
    snprintf(p1, sizeof p1, "%s/p1.json", dir);
    snprintf(p2, sizeof p2, "%s/p2.json", dir);
    snprintf(ref1, sizeof ref1, "%s/ref1.json", dir);
    const char *a1[40], *a2[40], *r1[40];
    search_argv(db, "one", p1, a1);
    search_argv(db, "two", p2, a2);
    search_argv(refdb, "one", ref1, r1);
    pid_t k1 = fork();
    if (k1 == 0) {
        execv(a1[0], (char *const *)a1);
        _exit(127);
    }
    pid_t k2 = fork();
    if (k2 == 0) {
        execv(a2[0], (char *const *)a2);
        _exit(127);
    }
    /* Readers while both write: `trials` answers (or the study is not there yet). */
    int reads_ok = 0;
    for (int i = 0; i < 20; i++) {
        usleep(50000);
        const char *q[] = {BA_CLI, "--db", db, "trials", "--study", "one", "--format", "csv", NULL};
        char *out = NULL, *err = NULL;
        int st;
        cr_assert_eq(ba_test_run(q, &out, &err, &st), 0);
        if (st == 0)
            reads_ok++;
        else
            cr_expect(strstr(err, "not found") || strstr(err, "no study named") ||
                          strstr(err, "no such database") || strstr(err, "not available"),
                      "trials during a search: exit %d: %s", st, err);
        free(out), free(err);
    }
    int w1, w2;
    waitpid(k1, &w1, 0);
    waitpid(k2, &w2, 0);
    cr_expect(WIFEXITED(w1) && WEXITSTATUS(w1) == 0);
    cr_expect(WIFEXITED(w2) && WEXITSTATUS(w2) == 0);
    cr_assert_eq(run_and_kill(r1, 1e9), 0);
    expect_same_trials(refdb, db, "one");
    expect_integrity(db);
    (void)reads_ok;
    ba_test_rmtree(dir);
}
