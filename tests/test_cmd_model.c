/* The model-facing commands as users see them (SPEC §8): `inspect`, `eval`
 * and `quantize`. Every metric `eval --plan` prints is checked against
 * tests/fixtures/eval_refs/refs.json (NumPy quantizers + the nets rebuilt in
 * PyTorch, make_eval_refs.py); quantized files are checked with onnx.checker,
 * against the in-memory evaluation, and (QDQ) with ONNX Runtime. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/helpers.h"

#define DIG BA_FIXTURES "/digits/"
#define REFS BA_FIXTURES "/eval_refs/"
/* Weight-only plans: our float32 engine vs PyTorch differ by accumulation
 * order only (measured ≤ 3e-7 relative on these metrics). */
#define REL_TOL_WEIGHTS 1e-5
/* With act_bits, a 1-ulp difference in a conv output can move an activation
 * across a rounding boundary: make_eval_refs.py measured that perturbing its
 * own activations by 1e-7 relative shifts KL by 4e-3 relative and agreement
 * by one sample; our figures are within 2e-4 of the reference. */
#define REL_TOL_ACTS 2e-3
#define COUNT_TOL_ACTS (2.0 / 512.0)

static json_t *parse(const char *text) {
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    cr_assert(j, "not JSON (%s): %s", e.text, text);
    return j;
}

static double num(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    cr_assert(v && json_is_number(v), "missing number '%s'", key);
    return json_number_value(v);
}

static void expect_rel(double got, double want, double tol, const char *what) {
    cr_expect(fabs(got - want) <= tol * fabs(want), "%s: got %.17g, reference %.17g (rel %.3g)", what, got,
              want, fabs(got - want) / fabs(want));
}

static json_t *ref_case(const char *name) {
    json_error_t e;
    json_t *r = json_load_file(REFS "refs.json", 0, &e);
    cr_assert(r, "refs.json: %s", e.text);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(r, "cases"), i, c) {
        if (!strcmp(json_string_value(json_object_get(c, "name")), name)) {
            json_incref(c);
            json_decref(r);
            return c;
        }
    }
    cr_assert_fail("no case %s in refs.json", name);
    return NULL;
}

static const char *fix(const json_t *c, const char *key, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s", BA_FIXTURES, json_string_value(json_object_get(c, key)));
    return buf;
}

/* `eval --plan --format json` of a refs.json case against its reference numbers. */
static void check_case(const char *name) {
    json_t *c = ref_case(name);
    char model[512], data[512], labels[512], plan[512];
    ba_test_run_t r =
        ba_test_cli("eval", fix(c, "model", model, sizeof model), "--data", fix(c, "data", data, sizeof data),
                    "--labels", fix(c, "labels", labels, sizeof labels), "--plan",
                    fix(c, "plan", plan, sizeof plan), "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s: exit %d: %s", name, r.status, r.err);
    json_t *j = parse(r.out);
    json_t *q = json_object_get(j, "quantized");
    cr_assert(q, "%s: no quantized block", name);
    json_t *pj = json_load_file(plan, 0, NULL);
    int acts = json_is_integer(json_object_get(json_object_get(pj, "quantizer"), "act_bits"));
    json_decref(pj);
    double tol = acts ? REL_TOL_ACTS : REL_TOL_WEIGHTS;
    double ctol = acts ? COUNT_TOL_ACTS : 0.0;
    cr_expect_eq(num(j, "samples"), num(c, "samples"));
    cr_expect_eq(num(json_object_get(j, "fp"), "accuracy"), num(c, "fp_accuracy"), "%s: fp accuracy", name);
    cr_expect(fabs(num(q, "accuracy") - num(c, "accuracy")) <= ctol, "%s: accuracy %g vs %g", name,
              num(q, "accuracy"), num(c, "accuracy"));
    cr_expect(fabs(num(q, "agreement") - num(c, "agreement")) <= ctol, "%s: agreement %g vs %g", name,
              num(q, "agreement"), num(c, "agreement"));
    expect_rel(num(q, "kl"), num(c, "kl"), tol, "kl");
    expect_rel(num(q, "mse"), num(c, "mse"), tol, "mse");
    expect_rel(num(q, "sqnr_db"), num(c, "sqnr_db"), tol, "sqnr_db");
    json_decref(j);
    json_decref(c);
    ba_test_run_free(&r);
}

Test(cmd_eval, weight_only_symmetric_plan_matches_pytorch_reference) {
    check_case("cnn_sym");
}
Test(cmd_eval, asymmetric_group_plan_with_fp32_layer_matches_pytorch_reference) {
    check_case("cnn_asym_group");
}
Test(cmd_eval, act8_plan_on_batch1_model_matches_pytorch_reference) {
    check_case("cnn_static_act8");
}
Test(cmd_eval, act8_mlp_plan_matches_pytorch_reference) {
    check_case("mlp_act8");
}
Test(cmd_eval, per_tensor_asymmetric_act6_plan_matches_pytorch_reference) {
    check_case("mlp_tensor_act6");
}

Test(cmd_eval, fp_accuracy_matches_the_fixture_metadata) {
    ba_test_run_t r = ba_test_cli("eval", DIG "cnn_dyn.onnx", "--data", DIG "test_x.npy", "--labels",
                                  DIG "test_y.npy", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = parse(r.out);
    cr_expect_eq(num(json_object_get(j, "fp"), "accuracy"), 0.970703125); /* digits/meta.json: cnn test */
    cr_expect(!json_object_get(j, "quantized"));
    json_decref(j);
    ba_test_run_free(&r);
}

Test(cmd_eval, without_labels_reports_samples_and_output_shape) {
    ba_test_run_t r =
        ba_test_cli("eval", DIG "mlp_dyn.onnx", "--data", DIG "test_x_flat.npy", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = parse(r.out);
    cr_expect_eq(num(j, "samples"), 512);
    json_t *sh = json_object_get(json_object_get(j, "output"), "shape");
    cr_expect_eq(json_array_size(sh), 2);
    cr_expect_eq(json_integer_value(json_array_get(sh, 0)), 512);
    cr_expect_eq(json_integer_value(json_array_get(sh, 1)), 10);
    cr_expect(json_is_null(json_object_get(json_object_get(j, "fp"), "accuracy")));
    json_decref(j);
    ba_test_run_free(&r);
}

Test(cmd_eval, table_prints_fp_and_quantized_side_by_side) {
    ba_test_run_t r = ba_test_cli("eval", DIG "mlp_dyn.onnx", "--data", DIG "test_x_flat.npy", "--labels",
                                  DIG "test_y.npy", "--plan", REFS "mlp_act8.plan.json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "metric") && strstr(r.out, "quantized"), "%s", r.out);
    /* Both columns of the accuracy row hold 0.966797 (column widths follow the
     * widest value, so the spacing is not part of the promise). */
    const char *acc = strstr(r.out, "accuracy");
    const char *first = acc ? strstr(acc, "0.966797") : NULL;
    const char *eol = acc ? strchr(acc, '\n') : NULL;
    cr_expect(first && strstr(first + 8, "0.966797") && (!eol || strstr(first + 8, "0.966797") < eol), "%s",
              r.out);
    cr_expect(strstr(r.out, "agreement") && strstr(r.out, "sqnr_db"), "%s", r.out);
    ba_test_run_free(&r);
}

Test(cmd_eval, save_output_without_plan_is_the_pytorch_output) {
    char dir[512], out[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/o.npy", dir);
    ba_test_run_t r =
        ba_test_cli("eval", DIG "cnn_dyn.onnx", "--data", DIG "test_x.npy", "--save-output", out, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_error err;
    ba_tensor_t *a = NULL, *b = NULL;
    cr_assert_eq(ba_npy_load(out, &a, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_npy_load(DIG "cnn_out_test.npy", &b, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(a->numel, b->numel);
    double md = 0;
    for (int64_t i = 0; i < a->numel; i++) md = fmax(md, fabs(((float *)a->data)[i] - ((float *)b->data)[i]));
    cr_expect(md < 1e-4, "max |ours - pytorch| = %g", md);
    ba_tensor_unref(a);
    ba_tensor_unref(b);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

/* ---- errors (SPEC §10) ---- */

Test(cmd_eval, data_shape_mismatch_exits_2_naming_the_input) {
    ba_test_run_t r = ba_test_cli("eval", DIG "cnn_dyn.onnx", "--data", DIG "test_x_flat.npy", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "bitalloc: error: ") == r.err && strstr(r.err, "'input'") &&
                  strstr(r.err, "test_x_flat.npy"),
              "%s", r.err);
    ba_test_run_free(&r);
}

Test(cmd_eval, labels_of_wrong_length_exit_2) {
    ba_test_run_t r = ba_test_cli("eval", DIG "cnn_dyn.onnx", "--data", DIG "test_x.npy", "--labels",
                                  DIG "calib_y.npy", NULL);
    cr_expect_eq(r.status, 0, "calib_y has as many rows as test_x (512): %s", r.err);
    ba_test_run_free(&r);
    char dir[512], y[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(y, sizeof y, "%s/y.npy", dir);
    int64_t lab[3] = {1, 2, 3};
    int64_t shp[1] = {3};
    ba_error err;
    ba_tensor_t *t = ba_tensor_wrap(BA_DT_I64, 1, shp, lab, &err);
    cr_assert_eq(ba_npy_save(y, t, &err), BA_OK);
    ba_tensor_unref(t);
    r = ba_test_cli("eval", DIG "cnn_dyn.onnx", "--data", DIG "test_x.npy", "--labels", y, NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "3 labels for 512 samples"), "%s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

/* One check in the data loading path: eval, sensitivity and search all refuse
 * calibration data holding a NaN (exit 2, naming the file). */
Test(cmd_eval, nan_in_data_is_refused_by_every_command) {
    char dir[512], x[600], db[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(x, sizeof x, "%s/x.npy", dir);
    snprintf(db, sizeof db, "%s/s.db", dir);
    ba_error err;
    ba_tensor_t *t = NULL;
    cr_assert_eq(ba_npy_load(DIG "calib_x.npy", &t, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(t->dtype, BA_DT_F32);
    ((float *)t->data)[t->numel / 2] = NAN;
    cr_assert_eq(ba_npy_save(x, t, &err), BA_OK);
    ba_tensor_unref(t);
    ba_test_run_t r = ba_test_cli("eval", DIG "cnn_dyn.onnx", "--data", x, NULL);
    cr_expect_eq(r.status, 2, "eval: %d %s", r.status, r.err);
    cr_expect(strstr(r.err, "x.npy") && strstr(r.err, "NaN"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("sensitivity", DIG "cnn_dyn.onnx", "--data", x, "--method", "act", NULL);
    cr_expect_eq(r.status, 2, "sensitivity: %d %s", r.status, r.err);
    cr_expect(strstr(r.err, "NaN"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", db, "search", DIG "cnn_dyn.onnx", "--data", x, "--budget", "avg-bits=4",
                    "--sensitivity", "weight", "--method", "ilp", NULL);
    cr_expect_eq(r.status, 2, "search: %d %s", r.status, r.err);
    cr_expect(strstr(r.err, "NaN"), "%s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

/* tests/fixtures/nan_quant: Sqrt(x @ w) is finite in float and at 3..8 bits, NaN at 2 bits. */
#define NANQ BA_FIXTURES "/nan_quant/"

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

/* SPEC §8: a non-finite output fails; it is never scored as KL 0 / agreement 100%. */
Test(cmd_eval, non_finite_quantized_output_fails_and_is_not_a_perfect_score) {
    char dir[512], db[600], p8[600], p2[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    snprintf(p8, sizeof p8, "%s/p8.json", dir);
    snprintf(p2, sizeof p2, "%s/p2.json", dir);
    ba_test_run_t r =
        ba_test_cli("--db", db, "search", NANQ "sqrt_mm.onnx", "--data", NANQ "x.npy", "--budget",
                    "avg-bits=8", "--bits", "8", "--method", "uniform", "--plan-out", p8, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    char *text = slurp(p8), *at = strstr(text, "\"w_bits\": 8");
    cr_assert_not_null(at, "%s", text);
    at[10] = '2';
    cr_assert_eq(ba_test_write_file(p2, text), 0);
    free(text);
    r = ba_test_cli("eval", NANQ "sqrt_mm.onnx", "--data", NANQ "x.npy", "--plan", p2, "--format", "json",
                    NULL);
    cr_expect_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    cr_expect(strstr(r.err, "not finite"), "%s", r.err);
    json_t *j = json_loads(r.out, 0, NULL);
    cr_assert_not_null(j, "%s", r.out);
    json_t *q = json_object_get(j, "quantized");
    cr_assert_not_null(q, "%s", r.out);
    cr_expect(json_is_null(json_object_get(q, "kl")), "kl is unknown, not 0: %s", r.out);
    cr_expect(json_is_null(json_object_get(q, "agreement")), "agreement is unknown, not 1: %s", r.out);
    json_decref(j);
    ba_test_run_free(&r);
    r = ba_test_cli("eval", NANQ "sqrt_mm.onnx", "--data", NANQ "x.npy", "--plan", p8, NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

Test(cmd_eval, non_finite_trials_are_failed_in_the_study_and_never_best) {
    char dir[512], db[600], plan[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    snprintf(plan, sizeof plan, "%s/p.json", dir);
    ba_test_run_t r =
        ba_test_cli("--db", db, "search", NANQ "sqrt_mm.onnx", "--data", NANQ "x.npy", "--budget",
                    "avg-bits=8", "--bits", "2,3,8", "--method", "evo", "--generations", "3", "--offspring",
                    "4", "--study", "e", "--plan-out", plan, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", db, "trials", "--study", "e", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = json_loads(r.out, 0, NULL), *t;
    size_t i;
    int failed = 0;
    long long failed_number = 0;
    cr_assert(json_is_array(j), "%s", r.out);
    json_array_foreach(j, i, t) {
        int two = json_real_value(json_object_get(t, "avg_bits")) == 2.0;
        if (two) failed_number = json_integer_value(json_object_get(t, "number"));
        const char *state = json_string_value(json_object_get(t, "state"));
        cr_expect_str_eq(state, two ? "failed" : "complete", "trial %zu", i + 1);
        if (two) cr_expect(json_is_null(json_object_get(t, "kl")), "trial %zu: %s", i + 1, r.out);
        failed += two;
    }
    cr_expect_gt(failed, 0, "the search tried 2 bits: %s", r.out);
    json_decref(j);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", db, "trials", "--study", "e", "--best", "--format", "csv", NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(!strstr(r.out, "failed") && strstr(r.out, "complete"), "%s", r.out);
    ba_test_run_free(&r);
    char *text = slurp(plan);
    cr_expect(!strstr(text, "\"w_bits\": 2"), "the plan is not the failed configuration: %s", text);
    free(text);
    char num[32], out[600];
    snprintf(num, sizeof num, "%lld", failed_number);
    snprintf(out, sizeof out, "%s/failed.json", dir);
    r = ba_test_cli("--db", db, "export", "--study", "e", "--trial", num, "--format", "plan", "-o", out,
                    NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "the trial failed"), "%s", r.err);
    cr_expect_neq(access(out, F_OK), 0, "nothing written for a failed trial");
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

/* A plan is checked against the model where it is used: its totals are recomputed (a
 * warning says when the file's disagree) and a per-layer a_bits is refused. */
static void replace_in_file(const char *src, const char *dst, const char *from, const char *to) {
    char *text = slurp(src), *at = strstr(text, from);
    cr_assert_not_null(at, "'%s' not in %s", from, text);
    char *out = malloc(strlen(text) + strlen(to) + 1);
    sprintf(out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    cr_assert_eq(ba_test_write_file(dst, out), 0);
    free(out);
    free(text);
}

Test(cmd_eval, plan_totals_are_recomputed_and_per_layer_a_bits_refused) {
    char dir[512], db[600], p8[600], lie[600], ab[600], onnx[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    snprintf(p8, sizeof p8, "%s/p8.json", dir);
    snprintf(lie, sizeof lie, "%s/lie.json", dir);
    snprintf(ab, sizeof ab, "%s/ab.json", dir);
    snprintf(onnx, sizeof onnx, "%s/q.onnx", dir);
    ba_test_run_t r =
        ba_test_cli("--db", db, "search", NANQ "sqrt_mm.onnx", "--data", NANQ "x.npy", "--budget",
                    "avg-bits=8", "--bits", "8", "--method", "uniform", "--plan-out", p8, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    replace_in_file(p8, lie, "\"avg_bits\": 8.0", "\"avg_bits\": 3.0");
    r = ba_test_cli("eval", NANQ "sqrt_mm.onnx", "--data", NANQ "x.npy", "--plan", lie, "--format", "json",
                    NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.err, "warning: ") &&
                  strstr(r.err, "lie.json: totals.avg_bits 3, but its layers give 8"),
              "%s", r.err);
    json_t *j = json_loads(r.out, 0, NULL);
    cr_expect_float_eq(json_real_value(json_object_get(json_object_get(j, "quantized"), "avg_bits")), 8.0, 0,
                       "%s", r.out);
    json_decref(j);
    ba_test_run_free(&r);
    r = ba_test_cli("quantize", NANQ "sqrt_mm.onnx", "--plan", lie, "-o", onnx, NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.err, "totals.avg_bits 3, but its layers give 8"), "%s", r.err);
    ba_test_run_free(&r);
    replace_in_file(p8, ab, "\"a_bits\": null", "\"a_bits\": 8");
    r = ba_test_cli("eval", NANQ "sqrt_mm.onnx", "--data", NANQ "x.npy", "--plan", ab, NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "ab.json: layer 'w': a_bits 8 differs from quantizer.act_bits null"), "%s",
              r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("quantize", NANQ "sqrt_mm.onnx", "--plan", ab, "-o", onnx, NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

Test(cmd_eval, bad_model_exits_2) {
    ba_test_run_t r = ba_test_cli("eval", DIG "test_y.npy", "--data", DIG "test_x.npy", NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "test_y.npy"), "%s", r.err);
    ba_test_run_free(&r);
}

Test(cmd_eval, plan_for_another_model_exits_2) {
    ba_test_run_t r = ba_test_cli("eval", DIG "cnn.onnx", "--data", DIG "test_x.npy", "--plan",
                                  REFS "cnn_sym.plan.json", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "sha256"), "%s", r.err);
    ba_test_run_free(&r);
}

/* ---- quantize ---- */

static int have_onnx_python(void) {
    const char *argv[] = {"/usr/bin/python3", "-c", "import onnx", NULL};
    int st = -1;
    return ba_test_run(argv, NULL, NULL, &st) == 0 && st == 0;
}

static void onnx_check(const char *path) {
    if (!have_onnx_python()) return; /* CI without python3-onnx: skip this check only */
    const char *argv[] = {"/usr/bin/python3", "-c",
                          "import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]))", path, NULL};
    char *err = NULL;
    int st = -1;
    cr_assert_eq(ba_test_run(argv, NULL, &err, &st), 0);
    cr_expect_eq(st, 0, "onnx.checker refuses %s: %s", path, err);
    free(err);
}

static ba_tensor_t *load_npy(const char *path) {
    ba_error err;
    ba_tensor_t *t = NULL;
    cr_assert_eq(ba_npy_load(path, &t, &err), BA_OK, "%s", err.msg);
    return t;
}

/* max |a-b| / max |b| */
static double rel_diff(const ba_tensor_t *a, const ba_tensor_t *b) {
    cr_assert_eq(a->numel, b->numel);
    double md = 0, mb = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        float x = ((float *)a->data)[i], y = ((float *)b->data)[i];
        md = fmax(md, fabs(x - y));
        mb = fmax(mb, fabs(y));
    }
    return mb > 0 ? md / mb : md;
}

static double argmax_agreement(const ba_tensor_t *a, const ba_tensor_t *b) {
    int64_t n = a->shape[a->ndim - 1], rows = a->numel / n, same = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *x = (float *)a->data + r * n, *y = (float *)b->data + r * n;
        int64_t ia = 0, ib = 0;
        for (int64_t i = 1; i < n; i++) {
            if (x[i] > x[ia]) ia = i;
            if (y[i] > y[ib]) ib = i;
        }
        same += ia == ib;
    }
    return (double)same / (double)rows;
}

typedef struct {
    char dir[512];
    char ref[600], fq[600], qdq[600], fq_out[600], qdq_out[600], ort_out[600];
} qfiles_t;

/* Writes both formats of plan for model, and the outputs on data of: the
 * in-memory evaluation (eval --plan), each written file run by our engine. */
static void quantize_both(qfiles_t *f, const char *model, const char *data, const char *plan) {
    cr_assert_eq(ba_test_tmpdir(f->dir, sizeof f->dir), 0);
    snprintf(f->ref, sizeof f->ref, "%s/ref.npy", f->dir);
    snprintf(f->fq, sizeof f->fq, "%s/fq.onnx", f->dir);
    snprintf(f->qdq, sizeof f->qdq, "%s/qdq.onnx", f->dir);
    snprintf(f->fq_out, sizeof f->fq_out, "%s/fq.npy", f->dir);
    snprintf(f->qdq_out, sizeof f->qdq_out, "%s/qdq.npy", f->dir);
    snprintf(f->ort_out, sizeof f->ort_out, "%s/ort.npy", f->dir);
    ba_test_run_t r =
        ba_test_cli("eval", model, "--data", data, "--plan", plan, "--save-output", f->ref, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("quantize", model, "--plan", plan, "-o", f->fq, "-q", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("quantize", model, "--plan", plan, "-o", f->qdq, "--format", "qdq", "--data", data, "-q",
                    NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    onnx_check(f->fq);
    onnx_check(f->qdq);
    r = ba_test_cli("eval", f->fq, "--data", data, "--save-output", f->fq_out, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("eval", f->qdq, "--data", data, "--save-output", f->qdq_out, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
}

/* ONNX Runtime on the QDQ file; 0 when node_modules is missing (skipped). */
static int run_ort(qfiles_t *f, const char *data) {
    struct stat sb;
    if (stat(BA_SOURCE_DIR "/tests/node/node_modules/onnxruntime-node", &sb) != 0) return 0;
    const char *argv[] = {"/usr/bin/env", "node", BA_SOURCE_DIR "/tests/node/run_ort.js", f->qdq, f->ort_out,
                          data,           NULL};
    char *err = NULL;
    int st = -1;
    if (ba_test_run(argv, NULL, &err, &st) != 0 || st == 127) {
        free(err);
        return 0;
    }
    cr_assert_eq(st, 0, "run_ort.js: %s", err);
    free(err);
    return 1;
}

Test(cmd_quantize, weight_only_files_compute_what_eval_measured, .timeout = 120) {
    qfiles_t f;
    quantize_both(&f, DIG "cnn_dyn.onnx", DIG "test_x.npy", REFS "cnn_sym.plan.json");
    ba_tensor_t *ref = load_npy(f.ref), *fq = load_npy(f.fq_out), *qdq = load_npy(f.qdq_out);
    cr_expect_eq(rel_diff(fq, ref), 0.0, "fakequant must be bit-exact");
    cr_expect(rel_diff(qdq, ref) <= 1e-5, "qdq: %g", rel_diff(qdq, ref));
    if (run_ort(&f, DIG "test_x.npy")) {
        ba_tensor_t *ort = load_npy(f.ort_out);
        cr_expect(rel_diff(ort, ref) <= 1e-5, "onnxruntime: %g", rel_diff(ort, ref));
        ba_tensor_unref(ort);
    }
    ba_tensor_unref(ref);
    ba_tensor_unref(fq);
    ba_tensor_unref(qdq);
    ba_test_rmtree(f.dir);
}

Test(cmd_quantize, fakequant_of_asymmetric_group_plan_is_bit_exact, .timeout = 120) {
    char dir[512], fq[600], a[600], b[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(fq, sizeof fq, "%s/fq.onnx", dir);
    snprintf(a, sizeof a, "%s/a.npy", dir);
    snprintf(b, sizeof b, "%s/b.npy", dir);
    ba_test_run_t r = ba_test_cli("quantize", DIG "cnn_dyn.onnx", "--plan", REFS "cnn_asym_group.plan.json",
                                  "-o", fq, "-q", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    onnx_check(fq);
    r = ba_test_cli("eval", DIG "cnn_dyn.onnx", "--data", DIG "test_x.npy", "--plan",
                    REFS "cnn_asym_group.plan.json", "--save-output", a, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("eval", fq, "--data", DIG "test_x.npy", "--save-output", b, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    ba_tensor_t *ta = load_npy(a), *tb = load_npy(b);
    cr_expect_eq(rel_diff(tb, ta), 0.0);
    ba_tensor_unref(ta);
    ba_tensor_unref(tb);
    ba_test_rmtree(dir);
}

Test(cmd_quantize, qdq_with_activations_computes_what_eval_measured, .timeout = 120) {
    static const char *const plans[] = {REFS "mlp_act8.plan.json", REFS "mlp_tensor_act6.plan.json"};
    for (int i = 0; i < 2; i++) {
        qfiles_t f;
        quantize_both(&f, DIG "mlp_dyn.onnx", DIG "test_x_flat.npy", plans[i]);
        ba_tensor_t *ref = load_npy(f.ref), *qdq = load_npy(f.qdq_out);
        cr_expect(rel_diff(qdq, ref) <= 1e-5, "%s: qdq in our engine: %g", plans[i], rel_diff(qdq, ref));
        if (run_ort(&f, DIG "test_x_flat.npy")) {
            /* ORT's GEMM rounds differently by an ulp, which can move an activation
             * across a rounding boundary: compare predictions, and values loosely. */
            ba_tensor_t *ort = load_npy(f.ort_out);
            cr_expect(argmax_agreement(ort, ref) >= 0.99, "%s: onnxruntime agreement %g", plans[i],
                      argmax_agreement(ort, ref));
            cr_expect(rel_diff(ort, ref) <= 2e-2, "%s: onnxruntime: %g", plans[i], rel_diff(ort, ref));
            ba_tensor_unref(ort);
        }
        ba_tensor_unref(ref);
        ba_tensor_unref(qdq);
        ba_test_rmtree(f.dir);
    }
}

Test(cmd_quantize, qdq_refuses_group_scales_across_several_axes) {
    char dir[512], out[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/q.onnx", dir);
    ba_test_run_t r = ba_test_cli("quantize", DIG "cnn_dyn.onnx", "--plan", REFS "cnn_asym_group.plan.json",
                                  "-o", out, "--format", "qdq", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "group:16") && strstr(r.err, "onnx::Conv_34"), "%s", r.err);
    struct stat sb;
    cr_expect_neq(stat(out, &sb), 0, "no file is left behind");
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

Test(cmd_quantize, qdq_with_act_bits_needs_data) {
    char dir[512], out[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/q.onnx", dir);
    ba_test_run_t r = ba_test_cli("quantize", DIG "mlp_dyn.onnx", "--plan", REFS "mlp_act8.plan.json", "-o",
                                  out, "--format", "qdq", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--data"), "%s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

/* ---- inspect ---- */

Test(cmd_inspect, table_lists_digits_cnn_layers_with_hand_checked_figures) {
    ba_test_run_t r = ba_test_cli("inspect", DIG "cnn.onnx", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    /* conv1: 16x1x3x3 = 144 params; pads 1, stride 1 on 8x8: 8*8 positions x 144 = 9216 MACs.
     * conv2: 32x16x3x3 = 4608, stride 2 -> 4x4 positions: 16 x 4608 = 73728. */
    cr_expect(strstr(r.out, "[16, 1, 3, 3]") && strstr(r.out, "144") && strstr(r.out, "9216"), "%s", r.out);
    cr_expect(strstr(r.out, "73728"), "%s", r.out);
    cr_expect(strstr(r.out, "4 layers, 14288 params, 230720 MACs"), "%s", r.out);
    cr_expect(strstr(r.out, "opset 13"), "%s", r.out);
    ba_test_run_free(&r);
}

Test(cmd_inspect, json_totals_and_layers) {
    ba_test_run_t r = ba_test_cli("inspect", DIG "cnn_dyn.onnx", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = parse(r.out);
    json_t *layers = json_object_get(j, "layers");
    cr_assert_eq(json_array_size(layers), 4);
    json_t *fc = json_array_get(layers, 3);
    cr_expect_str_eq(json_string_value(json_object_get(fc, "name")), "fc.weight");
    cr_expect_eq(num(fc, "params"), 320);
    cr_expect_eq(num(fc, "macs"), 320);
    cr_expect_eq(num(fc, "ch_axis"), 0);
    json_t *t = json_object_get(j, "totals");
    /* weights 144 + 4608 + 9216 + 320; biases 16 + 32 + 32 + 10 float32 values */
    cr_expect_eq(num(t, "params"), 14288);
    cr_expect_eq(num(t, "other_init_bytes"), 4 * (16 + 32 + 32 + 10));
    json_t *in = json_array_get(json_object_get(j, "inputs"), 0);
    cr_expect(json_is_null(json_array_get(json_object_get(in, "shape"), 0)), "dynamic batch is null");
    cr_expect_eq(json_integer_value(json_array_get(json_object_get(in, "shape"), 2)), 8);
    json_decref(j);
    ba_test_run_free(&r);
}

static json_t *layer_named(json_t *j, const char *name) {
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(j, "layers"), i,
                       l) if (!strcmp(json_string_value(json_object_get(l, "name")), name)) return l;
    cr_assert_fail("no layer %s", name);
    return NULL;
}

Test(cmd_inspect, zoo_model_layers_have_hand_checked_params_and_macs) {
    ba_test_run_t r = ba_test_cli("inspect", BA_FIXTURES "/zoo/vit.onnx", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = parse(r.out);
    /* patch_embed: Conv 64x3x4x4 = 3072 params, stride 4 on 32x32 -> 8*8 positions: 64 * 3072. */
    json_t *pe = layer_named(j, "patch_embed.weight");
    cr_expect_eq(num(pe, "params"), 3072);
    cr_expect_eq(num(pe, "macs"), 64 * 3072);
    cr_expect_eq(num(pe, "ch_axis"), 0);
    /* blocks.0 qkv: MatMul by a [64, 192] weight over 64 patches + 1 class token: 65 * 12288;
     * output channels on the last axis. */
    json_t *qkv = layer_named(j, "onnx::MatMul_427");
    cr_expect_str_eq(json_string_value(json_object_get(qkv, "node")), "/blocks.0/attn/qkv/MatMul");
    cr_expect_eq(num(qkv, "params"), 64 * 192);
    cr_expect_eq(num(qkv, "macs"), 65 * 64 * 192);
    cr_expect_eq(num(qkv, "ch_axis"), 1);
    json_decref(j);
    ba_test_run_free(&r);
    /* resnet: conv1 16x3x3x3 on 32x32 (pad 1) = 1024 * 432; a 1x1 stride-2 downsample 32x16 on 16x16 out. */
    r = ba_test_cli("inspect", BA_FIXTURES "/zoo/resnet.onnx", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "[16, 3, 3, 3]        432   442368"), "%s", r.out);
    cr_expect(strstr(r.out, "[32, 16, 1, 1]       512   131072"), "%s", r.out);
    ba_test_run_free(&r);
}

Test(cmd_inspect, bad_model_exits_2_naming_the_file) {
    ba_test_run_t r = ba_test_cli("inspect", DIG "test_x.npy", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "test_x.npy"), "%s", r.err);
    ba_test_run_free(&r);
}
