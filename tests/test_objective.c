/* The search objective (SPEC §8 --metric): the default per output kind, the
 * metric values and their direction, one best trial across search / trials
 * --best / studies / export, the memo of measurements (nothing measured twice,
 * also across resume), the validation part's final choice, and --evaluator. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/metrics.h"
#include "search/evo.h"
#include "tests/helpers.h"

#define DIGITS BA_FIXTURES "/digits/"
#define MLP DIGITS "mlp_dyn.onnx"
#define XDATA DIGITS "calib_x_flat.npy"
#define EVALUATOR BA_SOURCE_DIR "/tests/evaluator.py"

/* ---- the default metric per output kind ---- */

Test(objective, default_metric_per_output_kind) {
    int64_t cls[] = {64, 10}, one[] = {64, 1}, emb[] = {64, 16, 8}, map[] = {64, 1, 32, 32},
            seq[] = {64, 5, 10};
    cr_expect_eq(ba_metric_default(1, 2, cls), BA_METRIC_KL, "softmax output");
    cr_expect_eq(ba_metric_default(0, 2, cls), BA_METRIC_KL, "[N, C] logits");
    cr_expect_eq(ba_metric_default(0, 2, one), BA_METRIC_RELMSE, "[N, 1] sigmoid");
    cr_expect_eq(ba_metric_default(1, 2, one), BA_METRIC_RELMSE, "[N, 1] is never a 1-class distribution");
    cr_expect_eq(ba_metric_default(0, 3, emb), BA_METRIC_RELMSE, "embeddings");
    cr_expect_eq(ba_metric_default(0, 4, map), BA_METRIC_RELMSE, "probability map");
    cr_expect_eq(ba_metric_default(1, 3, seq), BA_METRIC_KL, "rows of a softmax over the last axis");
}

Test(objective, relmse_cosine_and_direction) {
    float fp[] = {1, 2, 3, 4}, q[] = {1, 2, 3, 5};
    int64_t shape[] = {2, 2};
    ba_error err;
    ba_tensor_t *a = ba_tensor_wrap(BA_DT_F32, 2, shape, fp, &err),
                *b = ba_tensor_wrap(BA_DT_F32, 2, shape, q, &err);
    cr_assert(a && b);
    ba_metrics_acc_t acc;
    ba_metrics_begin(&acc, 0);
    cr_assert_eq(ba_metrics_add(&acc, a, b, NULL, 0, &err), BA_OK, "%s", err.msg);
    ba_metrics_t m;
    ba_metrics_finish(&acc, &m);
    cr_expect_float_eq(m.relmse, 1.0 / 30.0, 1e-12);
    double cos2 = 29.0 / (5.0 * sqrt(34.0)); /* row 2: (3,4)·(3,5) / (5·√34) */
    cr_expect_float_eq(m.cosine, (1.0 + cos2) / 2, 1e-9);
    cr_expect_float_eq(ba_metric_value(BA_METRIC_RELMSE, &m), m.relmse, 0);
    /* Lower is better for kl, mse, relmse; the direction flips sqnr, top1, cosine. */
    cr_expect_eq(ba_metric_objective(BA_METRIC_RELMSE, 0.5), 0.5);
    cr_expect_eq(ba_metric_objective(BA_METRIC_SQNR, 20.0), -20.0);
    cr_expect_eq(ba_metric_objective(BA_METRIC_TOP1, 0.9), -0.9);
    cr_expect_eq(ba_metric_from_objective(BA_METRIC_COSINE, -0.75), 0.75);
    cr_expect(isfinite(ba_metric_objective(BA_METRIC_SQNR, INFINITY)), "identical outputs are no failure");
    cr_expect(isnan(ba_metric_objective(BA_METRIC_SQNR, NAN)));
    ba_metric_t k;
    cr_expect_eq(ba_metric_parse("cosine", &k, &err), BA_OK);
    cr_expect_eq(k, BA_METRIC_COSINE);
    cr_expect_eq(ba_metric_parse("accuracy", &k, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "--metric"), "%s", err.msg);
    ba_tensor_unref(a);
    ba_tensor_unref(b);
}

/* ---- searches ---- */

static json_t *parse(const char *text) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    cr_assert(j, "not JSON (%s): %s", je.text, text);
    return j;
}

typedef struct {
    char dir[512], db[600], plan[600], log[600], mark[600];
} env_t;

static env_t env(void) {
    env_t e;
    cr_assert_eq(ba_test_tmpdir(e.dir, sizeof e.dir), 0);
    snprintf(e.db, sizeof e.db, "%s/s.db", e.dir);
    snprintf(e.plan, sizeof e.plan, "%s/plan.json", e.dir);
    snprintf(e.log, sizeof e.log, "%s/evaluations.log", e.dir);
    snprintf(e.mark, sizeof e.mark, "%s/crashed", e.dir);
    return e;
}

/* `search … --format json` with extra flags (NULL-terminated, at most 8). */
static ba_test_run_t search(const env_t *e, const char *study, const char *x0, const char *x1, const char *x2,
                            const char *x3) {
    return ba_test_cli("--db", e->db, "-q", "search", MLP, "--data", XDATA, "--budget", "avg-bits=4",
                       "--bits", "2,4,8", "--sensitivity", "weight", "--generations", "5", "--offspring", "6",
                       "--seed", "7", "--study", study, "--plan-out", e->plan, "--format", "json", x0, x1, x2,
                       x3, NULL);
}

static int64_t best_of_trials(const env_t *e, const char *study) {
    ba_test_run_t r =
        ba_test_cli("--db", e->db, "trials", "--study", study, "--best", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = parse(r.out);
    cr_assert(json_is_array(j) && json_array_size(j) == 1, "%s", r.out);
    int64_t n = json_integer_value(json_object_get(json_array_get(j, 0), "number"));
    json_decref(j);
    ba_test_run_free(&r);
    return n;
}

static void expect_one_best(const env_t *e, const char *study, const char *metric) {
    ba_test_run_t r = search(e, study, "--metric", metric, NULL, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = parse(r.out);
    int64_t best = json_integer_value(json_object_get(j, "trial"));
    cr_expect_str_eq(json_string_value(json_object_get(j, "metric")), metric);
    json_decref(j);
    ba_test_run_free(&r);

    cr_expect_eq(best_of_trials(e, study), best, "trials --best");

    r = ba_test_cli("--db", e->db, "studies", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    j = parse(r.out);
    int seen = 0;
    for (size_t i = 0; i < json_array_size(j); i++) {
        json_t *s = json_array_get(j, i);
        if (strcmp(json_string_value(json_object_get(s, "name")), study) != 0) continue;
        seen = 1;
        cr_expect_eq(json_integer_value(json_object_get(s, "best_trial")), best, "studies");
        cr_expect_str_eq(json_string_value(json_object_get(s, "metric")), metric);
    }
    cr_expect(seen);
    json_decref(j);
    ba_test_run_free(&r);

    char out[700];
    snprintf(out, sizeof out, "%s/export.json", e->dir);
    r = ba_test_cli("--db", e->db, "export", "--study", study, "--format", "plan", "-o", out, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_error_t je;
    j = json_load_file(out, 0, &je);
    cr_assert(j, "%s", je.text);
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(j, "search"), "trial")), best, "export");
    /* The exported plan names the study's metric and carries the best trial's value of it. */
    const json_t *pm = json_object_get(j, "metrics");
    cr_expect_str_eq(json_string_value(json_object_get(pm, "metric")), metric, "export");
    cr_expect(json_is_number(json_object_get(pm, "objective")), "export: the objective is written");
    json_decref(j);
    ba_test_run_free(&r);
}

Test(objective, search_trials_studies_and_export_agree_on_the_best, .timeout = 240) {
    env_t e = env();
    expect_one_best(&e, "rel", "relmse");
    expect_one_best(&e, "snr", "sqnr"); /* higher is better */
    expect_one_best(&e, "agree", "top1");
    ba_test_rmtree(e.dir);
}

Test(objective, default_metric_is_recorded_and_printed, .timeout = 120) {
    env_t e = env();
    ba_test_run_t r = search(&e, "d", NULL, NULL, NULL, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = parse(r.out);
    cr_expect_str_eq(json_string_value(json_object_get(j, "metric")), "kl", "[N, 10] logits");
    json_t *pm = json_object_get(json_object_get(j, "plan"), "metrics");
    cr_expect_str_eq(json_string_value(json_object_get(pm, "metric")), "kl");
    cr_expect(json_is_number(json_object_get(pm, "validation")), "the plan records the validation figure");
    json_decref(j);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "trials", "--study", "d", "--limit", "1", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "objective(kl)"), "%s", r.out);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "resume", "--study", "d", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "objective kl "), "%s", r.out);
    ba_test_run_free(&r);
    ba_test_rmtree(e.dir);
}

/* ---- the memo ---- */

Test(objective, nothing_is_measured_twice, .timeout = 120) {
    env_t e = env();
    /* 2, 4 or 8 bits on 3 layers: few configurations, so the evolution meets old ones again. */
    ba_test_run_t r =
        ba_test_cli("--db", e.db, "-q", "search", MLP, "--data", XDATA, "--budget", "avg-bits=4", "--bits",
                    "2,4,8", "--sensitivity", "weight", "--generations", "20", "--offspring", "8", "--seed",
                    "1", "--study", "m", "--validation-fraction", "0", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = parse(r.out);
    int64_t trials = json_integer_value(json_object_get(j, "trials"));
    int64_t evals = json_integer_value(json_object_get(j, "evaluations"));
    int64_t measured = json_integer_value(json_object_get(j, "measured"));
    json_decref(j);
    ba_test_run_free(&r);
    /* Every measurement made is a new memo row (a second one of a key would not be). */
    cr_expect_eq(evals, measured, "%lld evaluations, %lld measured", (long long)evals, (long long)measured);
    cr_expect_lt(measured, trials, "%lld trials, %lld measured", (long long)trials, (long long)measured);
    /* A finished study measures nothing again. */
    r = ba_test_cli("--db", e.db, "-q", "resume", "--study", "m", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    j = parse(r.out);
    cr_expect_eq(json_integer_value(json_object_get(j, "evaluations")), 0);
    cr_expect_eq(json_integer_value(json_object_get(j, "measured")), measured);
    json_decref(j);
    ba_test_run_free(&r);
    ba_test_rmtree(e.dir);
}

/* ---- validation ---- */

Test(objective, validation_choice_is_recorded_and_switches_only_on_a_significant_difference, .timeout = 240) {
    env_t e = env();
    const char *seeds[] = {"1", "2", "3"};
    for (int k = 0; k < 3; k++) {
        char study[16];
        snprintf(study, sizeof study, "v%d", k);
        ba_test_run_t r = ba_test_cli("--db", e.db, "-q", "search", MLP, "--data", XDATA, "--budget",
                                      "avg-bits=3", "--bits", "2,3,4,8", "--generations", "6", "--offspring",
                                      "8", "--sensitivity", "weight", "--seed", seeds[k], "--study", study,
                                      "--validation-fraction", "0.5", "--format", "json", NULL);
        cr_assert_eq(r.status, 0, "%s", r.err);
        json_t *j = parse(r.out);
        int64_t best = json_integer_value(json_object_get(j, "trial"));
        double val = json_real_value(json_object_get(j, "validation"));
        /* The plan records what decided: the default (the best elite on the search part), the test, each
         * candidate's figures. */
        json_t *ch = json_object_get(json_object_get(json_object_get(j, "plan"), "search"), "choice");
        cr_assert(json_is_object(ch), "search.choice in the plan: %s", r.out);
        cr_expect_eq(json_integer_value(json_object_get(ch, "trial")), best);
        cr_expect_str_eq(json_string_value(json_object_get(ch, "test")), "paired-bootstrap");
        cr_expect_float_eq(json_real_value(json_object_get(ch, "confidence")), BA_EVO_CHOICE_CONFIDENCE, 0);
        int64_t def = json_integer_value(json_object_get(ch, "default"));
        int64_t m = json_integer_value(json_object_get(ch, "challengers"));
        const char *rule = json_string_value(json_object_get(ch, "rule"));
        double def_v = NAN, best_p = NAN;
        json_t *cands = json_object_get(ch, "candidates");
        int seed_in = 0;
        for (size_t i = 0; i < json_array_size(cands); i++) {
            json_t *c = json_array_get(cands, i);
            int64_t t = json_integer_value(json_object_get(c, "trial"));
            seed_in |= t == 1;
            if (t == def) def_v = json_real_value(json_object_get(c, "validation"));
            if (t == best) best_p = json_real_value(json_object_get(c, "p"));
        }
        cr_expect(seed_in, "the ILP seed is a candidate");
        if (best != def) {
            cr_expect_str_eq(rule, "significant");
            cr_expect_leq(best_p, (1 - BA_EVO_CHOICE_CONFIDENCE) / (double)m,
                          "switched only when significant");
            cr_expect_lt(val, def_v, "and lower on validation");
        } else
            cr_expect_str_eq(rule, "default");
        json_decref(j);
        ba_test_run_free(&r);
        /* Every command that names the best trial names the chosen one. */
        r = ba_test_cli("--db", e.db, "trials", "--study", study, "--best", "--format", "json", NULL);
        cr_assert_eq(r.status, 0, "%s", r.err);
        j = parse(r.out);
        cr_expect_eq(json_integer_value(json_object_get(json_array_get(j, 0), "number")), best, "%s", r.out);
        cr_expect_float_eq(json_real_value(json_object_get(json_array_get(j, 0), "validation")), val, 1e-12);
        json_decref(j);
        ba_test_run_free(&r);
        r = ba_test_cli("--db", e.db, "-q", "resume", "--study", study, "--format", "json", NULL);
        cr_assert_eq(r.status, 0, "%s", r.err);
        j = parse(r.out);
        cr_expect_eq(json_integer_value(json_object_get(j, "trial")), best, "resume of the finished study");
        cr_expect(
            json_is_object(json_object_get(json_object_get(json_object_get(j, "plan"), "search"), "choice")));
        json_decref(j);
        ba_test_run_free(&r);
        char out[700];
        snprintf(out, sizeof out, "%s/%s.plan.json", e.dir, study);
        r = ba_test_cli("--db", e.db, "export", "--study", study, "--format", "plan", "-o", out, NULL);
        cr_assert_eq(r.status, 0, "%s", r.err);
        json_error_t je;
        j = json_load_file(out, 0, &je);
        cr_assert(j, "%s", je.text);
        ch = json_object_get(json_object_get(j, "search"), "choice");
        cr_expect_eq(json_integer_value(json_object_get(ch, "trial")), best,
                     "export --trial best records it too");
        json_decref(j);
        ba_test_run_free(&r);
    }
    ba_test_rmtree(e.dir);
}

/* ---- --evaluator ---- */

static ba_test_run_t search_ev(const env_t *e, const char *study, const char *mode, const char *timeout) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "python3 '%s' %s '%s' '%s'", EVALUATOR, mode, e->log, e->mark);
    return ba_test_cli("--db", e->db, "-q", "search", MLP, "--data", XDATA, "--budget", "avg-bits=4",
                       "--bits", "2,4,8", "--sensitivity", "weight", "--generations", "3", "--offspring", "4",
                       "--seed", "5", "--study", study, "--evaluator", cmd, "--evaluator-timeout", timeout,
                       "--format", "json", NULL);
}

/* Lines of the evaluator's log: every (model, window) it was asked for. */
static int log_has_duplicates(const char *path, int *nlines) {
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s", path);
    char lines[512][96];
    int n = 0, dup = 0;
    while (n < 512 && fgets(lines[n], sizeof lines[n], f)) {
        for (int i = 0; i < n; i++) dup |= !strcmp(lines[i], lines[n]);
        n++;
    }
    fclose(f);
    *nlines = n;
    return dup;
}

Test(objective, evaluator_scores_the_search, .timeout = 120) {
    env_t e = env();
    ba_test_run_t r = search_ev(&e, "ev", "max", "60");
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = parse(r.out);
    cr_expect_str_eq(json_string_value(json_object_get(j, "metric")), "evaluator-max");
    int64_t best = json_integer_value(json_object_get(j, "trial"));
    int64_t evals = json_integer_value(json_object_get(j, "evaluations"));
    json_decref(j);
    ba_test_run_free(&r);
    cr_expect_eq(best_of_trials(&e, "ev"), best);
    int n = 0;
    cr_expect(!log_has_duplicates(e.log, &n), "a configuration was scored twice");
    cr_expect_eq(n, evals);
    /* The best trial has the highest score of the complete trials. */
    r = ba_test_cli("--db", e.db, "trials", "--study", "ev", "--where", "state=complete", "--sort",
                    "objective", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    j = parse(r.out);
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(j, 0), "number")), best, "%s", r.out);
    json_decref(j);
    ba_test_run_free(&r);
    ba_test_rmtree(e.dir);
}

Test(objective, evaluator_crash_keeps_the_study_and_resume_measures_nothing_twice, .timeout = 120) {
    env_t e = env();
    ba_test_run_t r = search_ev(&e, "cr", "crash_once", "60");
    cr_expect_eq(r.status, 1, "crash: exit 1: %s", r.err);
    cr_expect(strstr(r.err, "--evaluator"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "trials", "--study", "cr", "--format", "csv", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_geq(ba_test_count_lines(r.out), 2, "trials so far are kept: %s", r.out);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "-q", "resume", "--study", "cr", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    int n = 0;
    /* The log holds the crash's unanswered request once, then every other measurement once. */
    FILE *f = fopen(e.log, "r");
    cr_assert(f);
    char lines[512][96];
    int dups = 0;
    while (n < 512 && fgets(lines[n], sizeof lines[n], f)) {
        for (int i = 0; i < n; i++) dups += !strcmp(lines[i], lines[n]);
        n++;
    }
    fclose(f);
    cr_expect_leq(dups, 1, "only the request the crash left unanswered is asked again (%d)", dups);
    ba_test_rmtree(e.dir);
}

Test(objective, evaluator_garbage_and_hang_are_clear_errors, .timeout = 120) {
    env_t e = env();
    ba_test_run_t r = search_ev(&e, "g", "garbage", "60");
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "bitalloc: error: --evaluator: answered 'this is not json'"), "%s", r.err);
    ba_test_run_free(&r);
    r = search_ev(&e, "h", "hang", "1");
    cr_expect_eq(r.status, 1, "%s", r.err);
    cr_expect(strstr(r.err, "no answer within 1 s"), "%s", r.err);
    ba_test_run_free(&r);
    /* Both studies are still there, resumable. */
    r = ba_test_cli("--db", e.db, "studies", "--format", "csv", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "\ng,") && strstr(r.out, "\nh,"), "%s", r.out);
    ba_test_run_free(&r);
    ba_test_rmtree(e.dir);
}

/* ---- measured sensitivities on the chosen metric ---- */

Test(objective, measured_sensitivity_uses_the_metric, .timeout = 120) {
    ba_test_run_t r = ba_test_cli("sensitivity", MLP, "--data", XDATA, "--method", "measured", "--metric",
                                  "sqnr", "--bits", "2,8", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = parse(r.out);
    cr_expect_str_eq(json_string_value(json_object_get(j, "loss")), "sqnr");
    json_t *layers = json_object_get(j, "layers");
    cr_assert(json_array_size(layers) > 0);
    for (size_t i = 0; i < json_array_size(layers); i++) {
        json_t *c = json_object_get(json_array_get(layers, i), "cost");
        double c2 = json_number_value(json_object_get(c, "2")),
               c8 = json_number_value(json_object_get(c, "8"));
        /* −SQNR: negative, and lower (better) at 8 bits than at 2. */
        cr_expect_lt(c8, c2, "layer %zu", i);
        cr_expect_lt(c8, 0.0);
    }
    json_decref(j);
    ba_test_run_free(&r);
    r = ba_test_cli("sensitivity", MLP, "--data", XDATA, "--method", "measured", "--bits", "2,8", "--format",
                    "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    j = parse(r.out);
    cr_expect_str_eq(json_string_value(json_object_get(j, "loss")), "kl", "the default for [N, 10] logits");
    json_decref(j);
    ba_test_run_free(&r);
}
