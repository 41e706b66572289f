/* The measured front, the HTML report and study management through the CLI, on
 * the demo study (configs/demo.yaml's model and data, searched by nsga2 with
 * few generations): `trials --pareto` equals a brute-force non-dominated filter
 * of `trials --format json`; the report opens in headless Chromium with as many
 * front points as `trials --pareto` prints and a row per layer (the screenshot
 * goes to build/test-output/report/); `studies --delete/--rename`. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

#define DEMO BA_SOURCE_DIR "/configs/demo.yaml"

typedef struct {
    char dir[512], db[600], plan[600];
} env_t;

/* The demo study "demo" in a fresh database: nsga2, 3 generations of 6. */
static env_t make_demo(void) {
    env_t e;
    cr_assert_eq(ba_test_tmpdir(e.dir, sizeof e.dir), 0);
    snprintf(e.db, sizeof e.db, "%s/demo.db", e.dir);
    snprintf(e.plan, sizeof e.plan, "%s/plan.json", e.dir);
    ba_test_run_t r = ba_test_cli("--db", e.db, "--config", DEMO, "search", "--method", "nsga2",
                                  "--generations", "3", "--offspring", "6", "--plan-out", e.plan, "-q", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    return e;
}

static json_t *cli_json(const env_t *e, const char *a, const char *b, const char *c) {
    ba_test_run_t r =
        ba_test_cli("--db", e->db, "trials", "--study", "demo", "--format", "json", a, b, c, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_error_t je;
    json_t *j = json_loads(r.out, 0, &je);
    cr_assert(json_is_array(j), "%s", je.text);
    ba_test_run_free(&r);
    return j;
}

static double val(const json_t *t, const char *col) {
    const json_t *v = json_object_get(t, col);
    double x = json_is_number(v) ? json_number_value(v) : NAN;
    return !strcmp(col, "accuracy") || !strcmp(col, "agreement") ? -x : x;
}

/* Trial numbers of the complete trials that no other complete trial dominates on (c0, c1). */
static int brute_front(const json_t *all, const char *c0, const char *c1, int64_t *out) {
    int n = 0;
    size_t i, j;
    json_t *a, *b;
    json_array_foreach(all, i, a) {
        if (strcmp(json_string_value(json_object_get(a, "state")), "complete")) continue;
        double a0 = val(a, c0), a1 = val(a, c1);
        if (!isfinite(a0) || !isfinite(a1)) continue;
        int dominated = 0;
        json_array_foreach(all, j, b) {
            if (j == i || strcmp(json_string_value(json_object_get(b, "state")), "complete")) continue;
            double b0 = val(b, c0), b1 = val(b, c1);
            if (b0 <= a0 && b1 <= a1 && (b0 < a0 || b1 < a1)) dominated = 1;
        }
        if (!dominated) out[n++] = json_integer_value(json_object_get(a, "number"));
    }
    return n;
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

Test(report, trials_pareto_equals_a_brute_force_filter_of_the_json_trials, .timeout = 300) {
    env_t e = make_demo();
    json_t *all = cli_json(&e, NULL, NULL, NULL);
    cr_assert_gt(json_array_size(all), 10);
    static const char *const obj[][2] = {
        {"kl", "avg_bits"}, {"kl", "memory"}, {"accuracy", "bops"}, {"mse", "avg_bits"}};
    for (size_t k = 0; k < sizeof obj / sizeof obj[0]; k++) {
        char list[64];
        snprintf(list, sizeof list, "%s,%s", obj[k][0], obj[k][1]);
        int64_t want[512], got[512];
        int nw = brute_front(all, obj[k][0], obj[k][1], want), ng = 0;
        json_t *front = cli_json(&e, "--pareto", "--objectives", list);
        size_t i;
        json_t *t;
        json_array_foreach(front, i, t) got[ng++] = json_integer_value(json_object_get(t, "number"));
        qsort(want, (size_t)nw, sizeof *want, cmp64);
        qsort(got, (size_t)ng, sizeof *got, cmp64);
        cr_expect_gt(nw, 0);
        cr_expect_eq(ng, nw, "%s: %d on the front, brute force %d", list, ng, nw);
        for (int q = 0; q < nw && q < ng; q++) cr_expect_eq(got[q], want[q], "%s", list);
        json_decref(front);
    }
    json_decref(all);
    /* The table prints each point's measured budget use, and bad objectives are usage errors. */
    ba_test_run_t r = ba_test_cli("--db", e.db, "trials", "--study", "demo", "--pareto", NULL);
    cr_expect_eq(r.status, 0);
    cr_expect(strstr(r.out, "avg_bits") && strstr(r.out, "memory") && strstr(r.out, "bops"), "%s", r.out);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "trials", "--study", "demo", "--pareto", "--objectives", "kl,colour", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--objectives") && strstr(r.err, "colour"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "trials", "--study", "demo", "--objectives", "kl,memory", NULL);
    cr_expect_eq(r.status, 2);
    ba_test_run_free(&r);
    ba_test_rmtree(e.dir);
}

/* Path of program name on $PATH, or "" when absent. */
static void find_program(const char *name, char *out, size_t cap) {
    out[0] = '\0';
    const char *path = getenv("PATH");
    char *dup = strdup(path ? path : "/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(dup, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", d, name);
        if (access(p, X_OK) == 0) {
            snprintf(out, cap, "%s", p);
            break;
        }
    }
    free(dup);
}

static size_t count(const char *s, const char *needle) {
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

Test(report, the_demo_report_opens_in_headless_chromium_with_the_front_and_every_layer, .timeout = 400) {
    char chromium[1024], timeout_bin[1024];
    find_program("chromium", chromium, sizeof chromium);
    find_program("timeout", timeout_bin, sizeof timeout_bin);
    if (!chromium[0])
        cr_skip_test("chromium is not installed (apt-get install chromium): the report is not rendered");
    env_t e = make_demo();
    char html[700], shot[900], outdir[700], profile[700], url[800];
    snprintf(html, sizeof html, "%s/report.html", e.dir);
    ba_test_run_t r = ba_test_cli("--db", e.db, "report", "--study", "demo", "-o", html, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    /* Self-contained: nothing is fetched. */
    FILE *fp = fopen(html, "r");
    cr_assert(fp);
    static char text[1 << 20];
    size_t nt = fread(text, 1, sizeof text - 1, fp);
    text[nt] = '\0';
    fclose(fp);
    cr_expect(!strstr(text, "<script") && !strstr(text, "src=") && !strstr(text, "@import") &&
              !strstr(text, "url("));
    cr_expect(!strstr(text, "href=\"http"));
    /* What the CLI prints: the front and the layers. */
    r = ba_test_cli("--db", e.db, "trials", "--study", "demo", "--pareto", "--format", "csv", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    size_t nfront = ba_test_count_lines(r.out) - 1;
    ba_test_run_free(&r);
    r = ba_test_cli("inspect", BA_SOURCE_DIR "/tests/fixtures/digits/cnn_dyn.onnx", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *ins = json_loads(r.out, 0, NULL);
    json_t *layers = json_object_get(ins, "layers");
    cr_assert(json_is_array(layers), "%s", r.out);
    size_t nlayers = json_array_size(layers);
    ba_test_run_free(&r);
    /* Rendered by Chromium, offline. */
    snprintf(outdir, sizeof outdir, "%s", BA_TEST_OUT);
    mkdir(outdir, 0755);
    snprintf(outdir, sizeof outdir, "%s/report", BA_TEST_OUT);
    mkdir(outdir, 0755);
    snprintf(shot, sizeof shot, "%s/demo_report.png", outdir);
    unlink(shot);
    snprintf(profile, sizeof profile, "--user-data-dir=%s/chrome", e.dir);
    snprintf(url, sizeof url, "file://%s", html);
    char shot_arg[1000];
    snprintf(shot_arg, sizeof shot_arg, "--screenshot=%s", shot);
    const char *dump[] = {timeout_bin[0] ? timeout_bin : chromium,
                          "120",
                          chromium,
                          "--headless",
                          "--no-sandbox",
                          "--disable-gpu",
                          profile,
                          "--dump-dom",
                          url,
                          NULL};
    const char **argv = timeout_bin[0] ? dump : dump + 2;
    char *dom = NULL, *derr = NULL;
    int status;
    cr_assert_eq(ba_test_run(argv, &dom, &derr, &status), 0);
    cr_assert_eq(status, 0, "chromium --dump-dom: %s", derr);
    cr_expect(strstr(dom, "<svg id=\"front\""), "no front in the DOM");
    cr_expect_eq(count(dom, "class=\"front-point\""), nfront, "front points in the DOM vs `trials --pareto`");
    cr_expect_eq(count(dom, "<tr class=\"layer\">"), nlayers, "layer rows vs the model's layers");
    for (size_t i = 0; i < nlayers; i++) {
        const char *name = json_string_value(json_object_get(json_array_get(layers, i), "name"));
        cr_expect(name && strstr(dom, name), "layer %s missing", name);
    }
    cr_expect_gt(count(dom, "class=\"baseline-ilp\""), 0, "the ILP seeds are marked");
    cr_expect_gt(count(dom, "class=\"baseline-uniform\""), 0, "the uniform baseline is marked");
    cr_expect(strstr(dom, "<svg id=\"progress\""));
    free(dom);
    free(derr);
    const char *snap[] = {timeout_bin[0] ? timeout_bin : chromium,
                          "120",
                          chromium,
                          "--headless",
                          "--no-sandbox",
                          "--disable-gpu",
                          profile,
                          "--window-size=1000,1400",
                          shot_arg,
                          url,
                          NULL};
    argv = timeout_bin[0] ? snap : snap + 2;
    cr_assert_eq(ba_test_run(argv, NULL, &derr, &status), 0);
    cr_expect_eq(status, 0, "chromium --screenshot: %s", derr);
    free(derr);
    struct stat sb;
    cr_expect(stat(shot, &sb) == 0 && sb.st_size > 10000, "screenshot %s", shot);
    json_decref(ins);
    ba_test_rmtree(e.dir);
}

Test(report, bad_trial_and_missing_study_are_usage_errors_and_leave_no_file, .timeout = 300) {
    env_t e = make_demo();
    char html[700];
    snprintf(html, sizeof html, "%s/r.html", e.dir);
    ba_test_run_t r = ba_test_cli("--db", e.db, "report", "--study", "nope", "-o", html, NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "nope"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "report", "--study", "demo", "--trial", "999", "-o", html, NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "999"), "%s", r.err);
    ba_test_run_free(&r);
    cr_expect(access(html, F_OK) != 0, "no report written on error");
    r = ba_test_cli("--db", e.db, "report", "--study", "demo", "--trial", "2", "-o", html, NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    cr_expect(access(html, F_OK) == 0);
    /* export --trial works for any front point. */
    r = ba_test_cli("--db", e.db, "trials", "--study", "demo", "--pareto", "--format", "csv", "--limit", "1",
                    NULL);
    cr_assert_eq(r.status, 0);
    int64_t num = strtoll(strchr(r.out, '\n') + 1, NULL, 10);
    ba_test_run_free(&r);
    char ntext[32], plan[700];
    snprintf(ntext, sizeof ntext, "%lld", (long long)num);
    snprintf(plan, sizeof plan, "%s/front.json", e.dir);
    r = ba_test_cli("--db", e.db, "export", "--study", "demo", "--trial", ntext, "--format", "plan", "-o",
                    plan, NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(e.dir);
}

Test(report, studies_delete_and_rename_and_other_settings_point_to_them, .timeout = 300) {
    env_t e = make_demo();
    ba_test_run_t r = ba_test_cli("--db", e.db, "--config", DEMO, "search", "--method", "nsga2",
                                  "--generations", "3", "--offspring", "5", "--plan-out", e.plan, "-q", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--study NEW") && strstr(r.err, "studies --delete demo"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "studies", "--rename", "demo", "demo-v1", NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "trials", "--study", "demo-v1", "--format", "csv", NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_gt(ba_test_count_lines(r.out), 5);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "trials", "--study", "demo", NULL);
    cr_expect_eq(r.status, 2);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "studies", "--rename", "demo-v1", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--rename OLD NEW"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "studies", "--rename", "nope", "x", NULL);
    cr_expect_eq(r.status, 2);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "studies", "--delete", "demo-v1", NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "studies", "--format", "csv", NULL);
    cr_expect_eq(ba_test_count_lines(r.out), 1, "only the header: %s", r.out);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "studies", "--delete", "demo-v1", NULL);
    cr_expect_eq(r.status, 2);
    ba_test_run_free(&r);
    /* The name is free again: the new settings run under it. */
    r = ba_test_cli("--db", e.db, "--config", DEMO, "search", "--method", "nsga2", "--generations", "1",
                    "--offspring", "4", "--plan-out", e.plan, "-q", NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(e.dir);
}

Test(report, the_sweep_marks_pareto_on_measured_kl_and_prints_the_budget_used, .timeout = 300) {
    char dir[512], db[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    ba_test_run_t r = ba_test_cli("--db", db, "search", BA_SOURCE_DIR "/tests/fixtures/digits/cnn_dyn.onnx",
                                  "--data", BA_SOURCE_DIR "/tests/fixtures/digits/calib_x.npy", "--sweep",
                                  "avg-bits=2:8:1", "--study", "sw", "--format", "json", "-q", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = json_loads(r.out, 0, NULL);
    json_t *pts = json_object_get(j, "points");
    cr_assert(json_is_array(pts), "%s", r.out);
    size_t i, k;
    json_t *a, *b;
    int nfront = 0;
    json_array_foreach(pts, i, a) {
        if (!json_is_true(json_object_get(a, "feasible"))) continue;
        double au = json_number_value(json_object_get(a, "used")),
               ak = json_number_value(json_object_get(a, "kl"));
        cr_expect_leq(au, json_number_value(json_object_get(a, "limit")) + 1e-9, "used within the limit");
        int dominated = 0;
        json_array_foreach(pts, k, b) {
            if (k == i || !json_is_true(json_object_get(b, "feasible"))) continue;
            double bu = json_number_value(json_object_get(b, "used")),
                   bk = json_number_value(json_object_get(b, "kl"));
            dominated |= bu <= au && bk <= ak && (bu < au || bk < ak);
        }
        cr_expect_eq(json_is_true(json_object_get(a, "pareto")), !dominated, "point %zu", i);
        nfront += !dominated;
    }
    cr_expect_gt(nfront, 1);
    json_decref(j);
    ba_test_run_free(&r);
    /* The table has the column of the budget actually used. */
    r = ba_test_cli("--db", db, "search", BA_SOURCE_DIR "/tests/fixtures/digits/cnn_dyn.onnx", "--data",
                    BA_SOURCE_DIR "/tests/fixtures/digits/calib_x.npy", "--sweep", "avg-bits=2:8:1",
                    "--study", "sw", "-q", NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, " used ") && strstr(r.out, "pareto"), "%s", r.out);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}
