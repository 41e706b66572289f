/* `bitalloc search` end to end on the digits CNN (SPEC §6, §8, §10): the
 * mixed-precision search beats uniform 4-bit at avg-bits 4, the ILP seed is
 * never beaten by a worse final plan, the same seed gives the same plan,
 * --sweep stores one trial per point, infeasible budgets exit 3, bad inputs
 * exit 2 with a message naming the flag, and no study is left behind by them. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/helpers.h"

#define DIGITS BA_FIXTURES "/digits/"

typedef struct {
    int status;
    char *out, *err;
} res_t;

static char g_dir[4096], g_db[4200];

static void setup(void) {
    cr_assert_eq(ba_test_tmpdir(g_dir, sizeof g_dir), 0);
    snprintf(g_db, sizeof g_db, "%s/s.db", g_dir);
}
static void teardown(void) {
    ba_test_rmtree(g_dir);
}

/* search on the CNN with extra flags (NULL-terminated). */
static res_t search(const char *first, ...) {
    const char *argv[64] = {BA_CLI,     "--db",
                            g_db,       "-q",
                            "search",   DIGITS "cnn_dyn.onnx",
                            "--data",   DIGITS "calib_x.npy",
                            "--labels", DIGITS "calib_y.npy",
                            "--format", "json"};
    int n = 12;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 63; a = va_arg(ap, const char *)) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    res_t r = {0};
    cr_assert_eq(ba_test_run(argv, &r.out, &r.err, &r.status), 0);
    return r;
}

static double json_kl(const res_t *r, int64_t *trial) {
    json_error_t je;
    json_t *j = json_loads(r->out, 0, &je);
    cr_assert(j, "not JSON: %s", r->out);
    double kl =
        json_real_value(json_object_get(json_object_get(json_object_get(j, "plan"), "metrics"), "kl"));
    if (trial) *trial = json_integer_value(json_object_get(j, "trial"));
    json_decref(j);
    return kl;
}

static void res_free(res_t *r) {
    free(r->out);
    free(r->err);
}

Test(search, ilp_evo_beats_uniform_4bit_and_never_ends_worse_than_its_seed, .init = setup, .fini = teardown,
     .timeout = 60) {
    res_t u = search("--budget", "avg-bits=4", "--method", "uniform", "--study", "u", NULL);
    cr_assert_eq(u.status, 0, "%s", u.err);
    res_t i =
        search("--budget", "avg-bits=4", "--method", "ilp", "--sensitivity", "act", "--study", "i", NULL);
    cr_assert_eq(i.status, 0, "%s", i.err);
    char plan[4300];
    snprintf(plan, sizeof plan, "%s/out/plan.json", g_dir);
    res_t e = search("--budget", "avg-bits=4", "--sensitivity", "act", "--generations", "8", "--offspring",
                     "8", "--study", "e", "--plan-out", plan, NULL);
    cr_assert_eq(e.status, 0, "%s", e.err);
    double ku = json_kl(&u, NULL), ki = json_kl(&i, NULL), ke = json_kl(&e, NULL);
    cr_expect_lt(ke, ku, "ilp+evo KL %g vs uniform 4-bit %g", ke, ku);
    cr_expect_leq(ke, ki, "final KL %g vs its ILP seed %g", ke, ki);
    FILE *f = fopen(plan, "r");
    cr_expect(f, "plan written into its new folder (one level is created)");
    if (f) fclose(f);
    res_free(&u), res_free(&i), res_free(&e);
}

Test(search, same_seed_same_plan_and_a_sweep_stores_each_point, .init = setup, .fini = teardown,
     .timeout = 60) {
    res_t a = search("--budget", "avg-bits=3.5", "--method", "evo", "--generations", "3", "--offspring", "4",
                     "--seed", "9", "--study", "a", NULL);
    res_t b = search("--budget", "avg-bits=3.5", "--method", "evo", "--generations", "3", "--offspring", "4",
                     "--seed", "9", "--study", "b", NULL);
    cr_assert_eq(a.status, 0, "%s", a.err);
    cr_assert_eq(b.status, 0, "%s", b.err);
    int64_t ta, tb;
    cr_expect_eq(json_kl(&a, &ta), json_kl(&b, &tb));
    cr_expect_eq(ta, tb);
    res_t s = search("--sweep", "avg-bits=2:5:1", "--sensitivity", "weight", "--study", "sw", NULL);
    cr_assert_eq(s.status, 0, "%s", s.err);
    json_error_t je;
    json_t *j = json_loads(s.out, 0, &je);
    cr_assert(j, "%s", s.out);
    cr_expect_eq(json_array_size(json_object_get(j, "points")), 4);
    json_decref(j);
    const char *q[] = {BA_CLI, "--db", g_db, "trials", "--study", "sw", "--format", "csv", NULL};
    char *out = NULL, *err = NULL;
    int st;
    cr_assert_eq(ba_test_run(q, &out, &err, &st), 0);
    if (st == 0) cr_expect_eq(ba_test_count_lines(out), 5, "%s", out);
    free(out), free(err);
    res_free(&a), res_free(&b), res_free(&s);
}

Test(search, infeasible_budget_exits_3_with_the_smallest_value, .init = setup, .fini = teardown) {
    res_t r = search("--budget", "avg-bits=1.5", "--sensitivity", "weight", NULL);
    cr_expect_eq(r.status, 3, "%s", r.err);
    cr_expect(strstr(r.err, "smallest achievable avg-bits is 2"), "%s", r.err);
    res_free(&r);
    r = search("--budget", "memory=1KiB", "--method", "uniform", NULL);
    cr_expect_eq(r.status, 3, "%s", r.err);
    res_free(&r);
}

Test(search, bad_inputs_exit_2_naming_the_flag_and_leave_no_study, .init = setup, .fini = teardown) {
    static const struct {
        const char *a, *b, *c, *d, *want;
    } cases[] = {
        {"--budget", "speed=4", NULL, NULL, "unknown budget key 'speed'"},
        {"--budget", "memory=3MB", NULL, NULL, "unknown unit 'MB' in '3MB' (units: B, KiB, MiB, GiB"},
        {"--budget", "avg-bits=4", "--pin", "nomatch*=4", "no layer matches"},
        {"--budget", "avg-bits=4", "--tie", "nomatch*", "--tie nomatch*: no layer matches"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        res_t r = search(cases[i].a, cases[i].b, "--sensitivity", "weight", cases[i].c, cases[i].d, NULL);
        cr_expect_eq(r.status, 2, "case %zu: exit %d: %s", i, r.status, r.err);
        cr_expect(strstr(r.err, cases[i].want), "case %zu: %s", i, r.err);
        res_free(&r);
    }
    /* Tied layers pinned to different widths. */
    res_t r = search("--budget", "avg-bits=4", "--sensitivity", "weight", "--pin", "fc.weight=8", "--pin",
                     "conv3.weight=2", "--tie", "*.weight", NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "pinned to"), "%s", r.err);
    res_free(&r);
    const char *q[] = {BA_CLI, "--db", g_db, "studies", "--format", "csv", NULL};
    char *out = NULL, *err = NULL;
    int st;
    cr_assert_eq(ba_test_run(q, &out, &err, &st), 0);
    if (st == 0) cr_expect_leq(ba_test_count_lines(out), 1, "no study from bad input: %s", out);
    free(out), free(err);
}

Test(search, hessian_is_the_default_estimator_of_ilp_evo, .init = setup, .fini = teardown, .timeout = 300) {
    res_t r = search("--budget", "avg-bits=4", "--method", "ilp", "--study", "h", NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    res_free(&r);
    const char *q[] = {BA_CLI, "--db", g_db, "studies", "--format", "json", NULL};
    char *out = NULL, *err = NULL;
    int st;
    cr_assert_eq(ba_test_run(q, &out, &err, &st), 0);
    free(out), free(err);
}

/* Running the same search again (the README's demo command, twice) continues
 * or reports that study; the same name with other settings is refused. */
Test(search, the_same_search_again_reports_its_study_other_settings_are_refused, .init = setup,
     .fini = teardown, .timeout = 60) {
    res_t a =
        search("--budget", "avg-bits=4", "--method", "ilp", "--sensitivity", "weight", "--study", "d", NULL);
    cr_assert_eq(a.status, 0, "%s", a.err);
    res_t b =
        search("--budget", "avg-bits=4", "--method", "ilp", "--sensitivity", "weight", "--study", "d", NULL);
    cr_assert_eq(b.status, 0, "%s", b.err);
    int64_t ta, tb;
    cr_expect_eq(json_kl(&a, &ta), json_kl(&b, &tb));
    cr_expect_eq(ta, tb);
    res_t c =
        search("--budget", "avg-bits=3", "--method", "ilp", "--sensitivity", "weight", "--study", "d", NULL);
    cr_expect_eq(c.status, 2);
    cr_expect(strstr(c.err, "--study d") && strstr(c.err, "other settings"), "%s", c.err);
    res_free(&a), res_free(&b), res_free(&c);
}

/* Bits of trial `number` of study `study` in db (as `trials --format json` prints them) into bits[3]. */
static void trial_bits(const char *db, const char *study, int number, int bits[3]) {
    ba_test_run_t r = ba_test_cli("--db", db, "trials", "--study", study, "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_error_t je;
    json_t *j = json_loads(r.out, 0, &je);
    cr_assert(j, "not JSON: %s", r.out);
    int found = 0;
    for (size_t i = 0; i < json_array_size(j); i++) {
        const json_t *t = json_array_get(j, i);
        if (json_integer_value(json_object_get(t, "number")) != number) continue;
        const json_t *b = json_object_get(t, "bits");
        static const char *const names[3] = {"fc1.weight", "fc2.weight", "fc3.weight"};
        for (int l = 0; l < 3; l++) bits[l] = (int)json_integer_value(json_object_get(b, names[l]));
        found = 1;
    }
    cr_assert(found, "trial %d not in %s", number, r.out);
    json_decref(j);
    ba_test_run_free(&r);
}

/* ilp+evo starts from the ILP plans of both the Hessian and the measured table (--extra-seed
 * measured, the default): on the digits MLP at 4 bits they differ ([4,3,8] and [3,4,8]), so they
 * are trials 1 and 2; with --extra-seed none trial 1 is still the Hessian's; the plan records its
 * final choice. */
Test(search, extra_seed_is_the_measured_ilp_plan) {
    char dir[512], db[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    int hess[3], meas[3], t1[3], t2[3];
    static const struct { const char *sens, *study; } ilps[] = {{"hessian", "h"}, {"measured", "m"}};
    for (int i = 0; i < 2; i++) {
        ba_test_run_t r = ba_test_cli("--db", db, "-q", "search", DIGITS "mlp_dyn.onnx", "--data",
                                      DIGITS "calib_x_flat.npy", "--method", "ilp", "--sensitivity",
                                      ilps[i].sens, "--budget", "avg-bits=4", "--study", ilps[i].study, NULL);
        cr_assert_eq(r.status, 0, "%s", r.err);
        ba_test_run_free(&r);
        trial_bits(db, ilps[i].study, 1, i ? meas : hess);
    }
    cr_assert(memcmp(hess, meas, sizeof hess), "the fixture needs two different ILP plans");
    static const char *const extra[] = {"measured", "none"};
    for (int i = 0; i < 2; i++) {
        char study[32];
        snprintf(study, sizeof study, "e%d", i);
        ba_test_run_t r =
            ba_test_cli("--db", db, "-q", "search", DIGITS "mlp_dyn.onnx", "--data",
                        DIGITS "calib_x_flat.npy", "--budget", "avg-bits=4", "--generations", "1",
                        "--extra-seed", extra[i], "--study", study, "--format", "json", NULL);
        cr_assert_eq(r.status, 0, "%s", r.err);
        trial_bits(db, study, 1, t1);
        trial_bits(db, study, 2, t2);
        cr_expect(!memcmp(t1, hess, sizeof t1), "--extra-seed %s: trial 1 is the Hessian ILP plan", extra[i]);
        if (i == 0)
            cr_expect(!memcmp(t2, meas, sizeof t2), "trial 2 is the measured ILP plan: %d,%d,%d", t2[0],
                      t2[1], t2[2]);
        json_error_t je;
        json_t *j = json_loads(r.out, 0, &je);
        cr_assert(j, "not JSON: %s", r.out);
        const char *rule = json_string_value(json_object_get(
            json_object_get(json_object_get(json_object_get(j, "plan"), "search"), "choice"), "rule"));
        cr_expect(rule != NULL, "the plan records its final choice");
        json_decref(j);
        ba_test_run_free(&r);
    }
    ba_test_rmtree(dir);
}
