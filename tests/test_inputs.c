/* Inputs whose sample axis is not 0 and constant inputs (SPEC §1): a stateful
 * model (x [B, 8], state [2, B, 16] with samples on axis 1, a 0-d int64 `sr`;
 * tests/fixtures/make_stateful.py) evaluated against PyTorch, searched,
 * resumed and exported; slicing and digests of the dataset; each bad input's
 * error. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/helpers.h"

#define ST BA_FIXTURES "/stateful/"
#define MODEL ST "stateful.onnx"
#define MODEL_B4 ST "stateful_b4.onnx"
/* Our float32 engine vs PyTorch: accumulation order only (SPEC: 1e-4 of the output's scale). */
#define REF_TOL 1e-4

static ba_tensor_t *load_npy(const char *path) {
    ba_error err;
    ba_tensor_t *t = NULL;
    cr_assert_eq(ba_npy_load(path, &t, &err), BA_OK, "%s", err.msg);
    return t;
}

/* max |a - b| / max |b| */
static double rel_diff(const ba_tensor_t *a, const ba_tensor_t *b) {
    cr_assert_eq(a->numel, b->numel);
    double md = 0, mb = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        double x = ba_tensor_get_f64(a, i), y = ba_tensor_get_f64(b, i);
        md = fmax(md, fabs(x - y));
        mb = fmax(mb, fabs(y));
    }
    return mb > 0 ? md / mb : md;
}

static void expect_output(const char *out, const char *ref, double tol) {
    ba_tensor_t *a = load_npy(out), *b = load_npy(ref);
    cr_expect_eq(a->ndim, b->ndim);
    for (int d = 0; d < a->ndim && d < b->ndim; d++) cr_expect_eq(a->shape[d], b->shape[d]);
    cr_expect(rel_diff(a, b) <= tol, "%s vs %s: %g", out, ref, rel_diff(a, b));
    ba_tensor_unref(a);
    ba_tensor_unref(b);
}

/* ---- slicing along an axis ---- */

Test(inputs, slice_axis_copies_inner_axes_and_views_axis_0) {
    ba_error err;
    int64_t shape[3] = {2, 3, 2};
    ba_tensor_t *t = ba_tensor_new(BA_DT_F32, 3, shape, &err);
    for (int i = 0; i < 12; i++) ((float *)t->data)[i] = (float)i;
    ba_tensor_t *s = ba_tensor_slice_axis(t, 1, 1, 2, &err);
    cr_assert(s, "%s", err.msg);
    cr_expect_eq(s->shape[0], 2);
    cr_expect_eq(s->shape[1], 2);
    cr_expect_eq(s->shape[2], 2);
    static const float want[8] = {2, 3, 4, 5, 8, 9, 10, 11}; /* t[:, 1:3, :] */
    for (int i = 0; i < 8; i++) cr_expect_eq(((float *)s->data)[i], want[i], "element %d", i);
    cr_expect_null(s->base, "a slice of an inner axis is a copy");
    ba_tensor_t *v = ba_tensor_slice_axis(t, 0, 1, 1, &err);
    cr_assert(v);
    cr_expect_eq(v->base, t, "a slice of axis 0 is a view");
    cr_expect_eq(((float *)v->data)[0], 6.0f);
    cr_expect_null(ba_tensor_slice_axis(t, 3, 0, 1, &err));
    cr_expect_null(ba_tensor_slice_axis(t, 1, 2, 2, &err));
    ba_tensor_unref(v);
    ba_tensor_unref(s);
    ba_tensor_unref(t);
}

/* ---- constants ---- */

Test(inputs, constants_take_the_spec_types_and_refuse_what_does_not_fit) {
    ba_error err;
    static const struct {
        const char *text;
        ba_dtype dt;
        double v;
    } ok[] = {{"int64:16000", BA_DT_I64, 16000},
              {"int32:-7", BA_DT_I32, -7},
              {"uint8:255", BA_DT_U8, 255},
              {"float32:0.5", BA_DT_F32, 0.5},
              {"float64:-2.25e3", BA_DT_F64, -2250}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        ba_tensor_t *t = NULL;
        cr_assert_eq(ba_dataset_parse_const(ok[i].text, &t, &err), BA_OK, "%s: %s", ok[i].text, err.msg);
        cr_expect_eq(t->ndim, 0, "%s", ok[i].text);
        cr_expect_eq(t->dtype, ok[i].dt, "%s", ok[i].text);
        cr_expect_eq(ba_tensor_get_f64(t, 0), ok[i].v, "%s", ok[i].text);
        ba_tensor_unref(t);
    }
    static const char *const bad[] = {"int8:3",       "uint8:256",  "uint8:-1",    "int32:3000000000",
                                      "int64:1e3",    "int64:",     "float32:nan", "float64:inf",
                                      "float32:1e39", "float32:1x", "int64:12 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ba_tensor_t *t = NULL;
        cr_expect_eq(ba_dataset_parse_const(bad[i], &t, &err), BA_ERR_INPUT, "%s is accepted", bad[i]);
        cr_expect_null(t);
    }
    cr_expect(ba_dataset_spec_is_const("int64:16000"));
    cr_expect(!ba_dataset_spec_is_const(ST "x.npy"));
    cr_expect(!ba_dataset_spec_is_const("int8:3"));
}

/* ---- the dataset: sample axes, samples, batches, digest ---- */

static const char *const SPECS[] = {"x=" ST "x.npy", "state=" ST "state.npy", "sr=int64:8000"};
static const char *const AXES[] = {"state=1"};

Test(inputs, dataset_counts_samples_along_each_inputs_axis_and_feeds_constants_whole) {
    ba_error err;
    ba_dataset_t *ds = NULL;
    cr_assert_eq(ba_dataset_load_axes(SPECS, 3, AXES, 1, &ds, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(ba_dataset_samples(ds), 64);
    int xi = ba_dataset_find(ds, "x"), si = ba_dataset_find(ds, "state"), ri = ba_dataset_find(ds, "sr");
    cr_expect_eq(ba_dataset_sample_axis(ds, xi), 0);
    cr_expect_eq(ba_dataset_sample_axis(ds, si), 1);
    cr_expect_eq(ba_dataset_sample_axis(ds, ri), -1);
    ba_tensor_t *b = NULL, *c = NULL;
    cr_assert_eq(ba_dataset_batch(ds, 5, 3, si, &b, &err), BA_OK, "%s", err.msg);
    const ba_tensor_t *all = ba_dataset_tensor(ds, si);
    cr_expect_eq(b->shape[0], 2);
    cr_expect_eq(b->shape[1], 3);
    cr_expect_eq(b->shape[2], 16);
    for (int l = 0; l < 2; l++)
        for (int s = 0; s < 3; s++)
            for (int h = 0; h < 16; h++)
                cr_expect_eq(((float *)b->data)[(l * 3 + s) * 16 + h],
                             ((float *)all->data)[(l * 64 + 5 + s) * 16 + h]);
    cr_assert_eq(ba_dataset_batch(ds, 5, 3, ri, &c, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(c->ndim, 0);
    cr_expect_eq(ba_tensor_get_i64(c, 0), 8000);
    ba_tensor_unref(b);
    ba_tensor_unref(c);
    ba_dataset_free(ds);
}

static void digest(const char *const *specs, int n, const char *const *axes, int na, char hex[65]) {
    ba_error err;
    ba_dataset_t *ds = NULL;
    cr_assert_eq(ba_dataset_load_axes(specs, n, axes, na, &ds, &err), BA_OK, "%s", err.msg);
    ba_dataset_sha256(ds, hex);
    ba_dataset_free(ds);
}

Test(inputs, digest_holds_constants_by_value_and_sample_axes) {
    char a[65], b[65], c[65], d[65], e[65];
    digest(SPECS, 3, AXES, 1, a);
    const char *const plus[] = {"x=" ST "x.npy", "state=" ST "state.npy", "sr=int64:+8000"};
    digest(plus, 3, AXES, 1, b);
    cr_expect_str_eq(a, b, "the same value written otherwise is the same data");
    const char *const other[] = {"x=" ST "x.npy", "state=" ST "state.npy", "sr=int64:16000"};
    digest(other, 3, AXES, 1, c);
    cr_expect_str_neq(a, c, "another constant is other data");
    const char *const npy[] = {"x=" ST "x.npy", "state=" ST "state.npy", "sr=" ST "sr.npy"};
    digest(npy, 3, AXES, 1, d);
    cr_expect_str_neq(a, d);
    /* Axis 0 named explicitly is the default: the same digest as before sample axes existed. */
    const char *const xs[] = {"x=" ST "x.npy"}, *const x0[] = {"x=0"};
    digest(xs, 1, NULL, 0, d);
    digest(xs, 1, x0, 1, e);
    cr_expect_str_eq(d, e);
    const char *const x1[] = {"x=1"};
    digest(xs, 1, x1, 1, e);
    cr_expect_str_neq(d, e, "another sample axis is other data");
}

/* ---- eval against PyTorch ---- */

Test(inputs, eval_of_the_stateful_model_matches_pytorch, .timeout = 60) {
    char dir[512], out[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/y.npy", dir);
    /* the constant as TYPE:VALUE and as a 0-d .npy; labels keep working */
    const char *sr[] = {"sr=int64:8000", "sr=" ST "sr.npy"};
    for (int i = 0; i < 2; i++) {
        ba_test_run_t r =
            ba_test_cli("eval", MODEL, "--data", "x=" ST "x.npy", "--data", "state=" ST "state.npy",
                        "--sample-axis", "state=1", "--data", sr[i], "--labels", ST "labels.npy",
                        "--save-output", out, "--format", "json", NULL);
        cr_assert_eq(r.status, 0, "%s", r.err);
        cr_expect(strstr(r.out, "\"samples\": 64"), "%s", r.out);
        cr_expect(strstr(r.out, "\"accuracy\": 1"), "labels are the reference argmax: %s", r.out);
        ba_test_run_free(&r);
        expect_output(out, ST "y_ref.npy", REF_TOL);
    }
    /* the constant enters the computation */
    ba_test_run_t r =
        ba_test_cli("eval", MODEL, "--data", "x=" ST "x.npy", "--data", "state=" ST "state.npy",
                    "--sample-axis", "state=1", "--data", "sr=int64:16000", "--save-output", out, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    expect_output(out, ST "y_ref_16k.npy", REF_TOL);
    ba_test_rmtree(dir);
}

Test(inputs, a_constant_feeds_a_one_element_input_too, .timeout = 60) {
    char dir[512], out[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/y.npy", dir);
    /* stateful_sr1.onnx declares sr as [1]: the 0-d constant takes that shape */
    ba_test_run_t r = ba_test_cli("eval", ST "stateful_sr1.onnx", "--data", "x=" ST "x.npy", "--data",
                                  "state=" ST "state.npy", "--sample-axis", "state=1", "--data",
                                  "sr=int64:8000", "--save-output", out, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    expect_output(out, ST "y_ref.npy", REF_TOL);
    r = ba_test_cli("sensitivity", ST "stateful_sr1.onnx", "--data", "x=" ST "x.npy", "--data",
                    "state=" ST "state.npy", "--sample-axis", "state=1", "--data", "sr=" ST "sr.npy",
                    "--method", "fisher", "--format", "csv", NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

Test(inputs, fixed_batch_pads_the_state_along_its_sample_axis, .timeout = 60) {
    char dir[512], out[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/y.npy", dir);
    /* 10 samples through a batch-4 model: passes of 4, 4 and 2 zero-padded to 4 along axis 1 */
    ba_test_run_t r =
        ba_test_cli("eval", MODEL_B4, "--data", "x=" ST "x_10.npy", "--data", "state=" ST "state_10.npy",
                    "--sample-axis", "state=1", "--data", "sr=int64:8000", "--save-output", out, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    expect_output(out, ST "y_ref_10.npy", REF_TOL);
    ba_test_rmtree(dir);
}

Test(inputs, config_file_takes_sample_axes_and_constants_as_mappings, .timeout = 60) {
    char dir[512], cfg[600], out[600], text[2048];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(cfg, sizeof cfg, "%s/c.yaml", dir);
    snprintf(out, sizeof out, "%s/y.npy", dir);
    snprintf(text, sizeof text,
             "data: {x: %sx.npy, state: %sstate.npy, sr: \"int64:8000\"}\nsample-axis: {state: 1}\n", ST, ST);
    cr_assert_eq(ba_test_write_file(cfg, text), 0);
    ba_test_run_t r = ba_test_cli("eval", MODEL, "--config", cfg, "--print-config", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "\"sr=int64:8000\""), "the constant is not a path to rebase: %s", r.out);
    cr_expect(strstr(r.out, "sample-axis: [\"state=1\"]"), "%s", r.out);
    ba_test_run_free(&r);
    r = ba_test_cli("eval", MODEL, "--config", cfg, "--save-output", out, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    expect_output(out, ST "y_ref.npy", REF_TOL);
    /* the command line overrides one input's axis */
    r = ba_test_cli("eval", MODEL, "--config", cfg, "--sample-axis", "state=0", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "'state' has 2 samples (axis 0)"), "%s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

/* ---- bad inputs: exit 2 naming the input ---- */

Test(inputs, bad_inputs_exit_2_naming_the_input, .timeout = 60) {
    static const struct {
        const char *args[12];
        const char *want;
    } cases[] = {
        {{"--data", "x=" ST "x.npy", "--data", "sr=int64:8000"},
         "model input 'state' has no data: give --data state="},
        {{"--data", "x=" ST "x.npy", "--data", "state=" ST "state.npy", "--data", "sr=int64:8000"},
         "input 'state' has 2 samples (axis 0) but"},
        {{"--data", "x=" ST "x.npy", "--data", "state=" ST "state.npy", "--sample-axis", "state=3", "--data",
          "sr=int64:8000"},
         "--sample-axis state=3: input 'state' has shape [2, 64, 16]"},
        {{"--data", "x=" ST "x_10.npy", "--data", "state=" ST "state.npy", "--sample-axis", "state=1",
          "--data", "sr=int64:8000"},
         "input 'state' has 64 samples (axis 1) but"},
        {{"--data", "x=" ST "x.npy", "--data", "state=" ST "state.npy", "--sample-axis", "state=1", "--data",
          "sr=float32:8000"},
         "input 'sr': data is float32, the model wants int64"},
        {{"--data", "x=" ST "sr.npy", "--data", "state=" ST "state.npy", "--sample-axis", "state=1", "--data",
          "sr=int64:8000"},
         "input 'x' is a constant (0-d, fed with every sample) but the model wants shape"},
        {{"--data", "x=" ST "x.npy", "--data", "state=" ST "state.npy", "--sample-axis", "state=1", "--data",
          "sr=int8:3"},
         "--data sr=int8:3: 'int8:3': a constant is TYPE:VALUE with TYPE one of"},
        {{"--data", "x=" ST "x.npy", "--data", "state=" ST "state.npy", "--sample-axis", "sr=0", "--data",
          "sr=int64:8000"},
         "--sample-axis sr=0: input 'sr' is a constant (0-d); it has no sample axis"},
        {{"--data", "x=" ST "x.npy", "--data", "state=" ST "state.npy", "--sample-axis", "h=1", "--data",
          "sr=int64:8000"},
         "--sample-axis h=1: no --data input named 'h'"},
        {{"--data", "x=" ST "x.npy", "--data", "state=" ST "state.npy", "--sample-axis", "state=-1"},
         "--sample-axis: expected NAME=K"},
        {{"--data", "x=int64:3", "--data", "sr=int64:8000"}, "every input is a constant"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[20] = {"eval", MODEL};
        int n = 2;
        for (int k = 0; cases[i].args[k]; k++) argv[n++] = cases[i].args[k];
        argv[n] = NULL;
        ba_test_run_t r = ba_test_cli(argv[0], argv[1], argv[2], argv[3], argv[4], argv[5], argv[6], argv[7],
                                      argv[8], argv[9], argv[10], argv[11], argv[12], argv[13], NULL);
        cr_expect_eq(r.status, 2, "case %zu: exit %d: %s", i, r.status, r.err);
        cr_expect(strstr(r.err, cases[i].want), "case %zu: want '%s', got: %s", i, cases[i].want, r.err);
        ba_test_run_free(&r);
    }
}

/* ---- sensitivity and search ---- */

#define DATA_ARGS                                                                                            \
    "--data", "x=" ST "x.npy", "--data", "state=" ST "state.npy", "--sample-axis", "state=1", "--data",      \
        "sr=int64:8000"

/* The cost on the first row of a `layer,bits,cost` table. */
static double first_cost(const char *csv) {
    const char *row = strchr(csv, '\n');
    cr_assert(row, "%s", csv);
    const char *end = strchr(row + 1, '\n'), *last = row + 1;
    cr_assert(end, "%s", csv);
    for (const char *q = row + 1; q < end; q++)
        if (*q == ',') last = q + 1;
    return strtod(last, NULL);
}

Test(inputs, sensitivity_slices_the_state_per_sample_the_same_way_a_fixed_batch_runs_it, .timeout = 120) {
    char dir[512], db[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    static const char *const methods[] = {"hessian", "fisher", "lrp", "act", "measured"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        ba_test_run_t r = ba_test_cli("sensitivity", MODEL, DATA_ARGS, "--method", methods[i], "--format",
                                      "csv", "--db", db, NULL);
        cr_assert_eq(r.status, 0, "%s: %s", methods[i], r.err);
        cr_expect_eq(ba_test_count_lines(r.out), 1 + 3 * 6, "%s: %s", methods[i], r.out);
        double dyn = first_cost(r.out);
        ba_test_run_free(&r);
        /* Fisher takes one sample at a time from the dynamic model (state sliced along
         * axis 1) and per-sample backward passes of whole batches from the batch-4 model:
         * the same figures. */
        if (!strcmp(methods[i], "fisher") || !strcmp(methods[i], "hessian")) {
            r = ba_test_cli("sensitivity", MODEL_B4, DATA_ARGS, "--method", methods[i], "--format", "csv",
                            "--db", db, NULL);
            cr_assert_eq(r.status, 0, "%s: %s", methods[i], r.err);
            double fixed = first_cost(r.out);
            cr_expect(fabs(fixed - dyn) <= 1e-6 * fabs(dyn), "%s: dynamic %.17g, batch-4 %.17g", methods[i],
                      dyn, fixed);
            ba_test_run_free(&r);
        }
    }
    ba_test_rmtree(dir);
}

/* ONNX Runtime on a QDQ file of the stateful model; 0 when node_modules is missing (skipped). */
static int run_ort(const char *model, const char *out) {
    struct stat sb;
    if (stat(BA_SOURCE_DIR "/tests/node/node_modules/onnxruntime-node", &sb) != 0) return 0;
    const char *argv[] = {"/usr/bin/env",
                          "node",
                          BA_SOURCE_DIR "/tests/node/run_ort.js",
                          model,
                          out,
                          "x=" ST "x.npy",
                          "state=" ST "state.npy",
                          "sr=" ST "sr.npy",
                          NULL};
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

Test(inputs, search_resume_and_export_keep_the_sample_axes_and_constants, .timeout = 180) {
    char dir[512], db[600], plan[600], qdq[600], ref[600], ort[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    snprintf(plan, sizeof plan, "%s/p.json", dir);
    snprintf(qdq, sizeof qdq, "%s/q.onnx", dir);
    snprintf(ref, sizeof ref, "%s/ref.npy", dir);
    snprintf(ort, sizeof ort, "%s/ort.npy", dir);
    ba_test_run_t r =
        ba_test_cli("search", MODEL, DATA_ARGS, "--budget", "avg-bits=4", "--act-bits", "8", "--generations",
                    "2", "--study", "st", "--db", db, "--plan-out", plan, "-q", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    /* resume re-reads the sample axis and the constant from the study's settings */
    r = ba_test_cli("resume", "--study", "st", "--db", db, "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "\"study\": \"st\""), "%s", r.out);
    ba_test_run_free(&r);
    /* the export calibrates activations on the stored data, axes included */
    r = ba_test_cli("export", "--study", "st", "--db", db, "--format", "onnx-qdq", "-o", qdq, "-q", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("eval", MODEL, DATA_ARGS, "--plan", plan, "--save-output", ref, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    if (run_ort(qdq, ort)) expect_output(ort, ref, 1e-5);
    ba_test_rmtree(dir);
}
