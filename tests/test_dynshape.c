/* Dynamic input dimensions (SPEC §1): shapes resolved at the data's (or
 * --input-shape) concrete shapes, never from a probe value. Fixtures from
 * tests/fixtures/make_dynshape.py: a CNN with input [N, 3, H, W], a 1-D audio
 * front end [B, samples], and a declared [16777216, 64] input. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "tests/helpers.h"

#define DYN BA_FIXTURES "/dynshape/"
/* Agreement with PyTorch / ONNX Runtime: max |ours - ref| <= TOL * max |ref|. */
#define TOL 1e-4
/* `inspect` of the [16777216, 64]-input model stays far below the 4 GiB one probe would take. */
#define BIG_INSPECT_MAX_RSS_KB (200 * 1024)

static ba_model_t *load(const char *path) {
    ba_error err;
    ba_model_t *m = NULL;
    cr_assert_eq(ba_model_load(path, NULL, &m, &err), BA_OK, "%s", err.msg);
    return m;
}

static ba_tensor_t *npy(const char *path) {
    ba_error err;
    ba_tensor_t *t = NULL;
    cr_assert_eq(ba_npy_load(path, &t, &err), BA_OK, "%s", err.msg);
    return t;
}

static double max_abs(const ba_tensor_t *t) {
    double m = 0;
    for (int64_t i = 0; i < t->numel; i++) m = fmax(m, fabs(((const float *)t->data)[i]));
    return m;
}

static void expect_close(const ba_tensor_t *got, const ba_tensor_t *ref, const char *what) {
    cr_assert_eq(got->numel, ref->numel, "%s", what);
    for (int d = 0; d < ref->ndim; d++) cr_assert_eq(got->shape[d], ref->shape[d], "%s dim %d", what, d);
    double scale = max_abs(ref), worst = 0;
    for (int64_t i = 0; i < ref->numel; i++)
        worst = fmax(worst, fabs(((const float *)got->data)[i] - ((const float *)ref->data)[i]));
    cr_expect_leq(worst, TOL * scale, "%s: max diff %g, scale %g", what, worst, scale);
}

/* meta.json: model -> tag -> "macs" (per sample, from the layer formulas). */
static int64_t meta_macs(const char *model, const char *tag) {
    json_error_t je;
    json_t *j = json_load_file(DYN "meta.json", 0, &je);
    cr_assert_not_null(j, "meta.json: %s", je.text);
    json_t *v = json_object_get(json_object_get(json_object_get(j, model), tag), "macs");
    cr_assert(json_is_integer(v), "meta.json: %s.%s.macs", model, tag);
    int64_t r = json_integer_value(v);
    json_decref(j);
    return r;
}

static int64_t total_macs(const ba_model_t *m) {
    int64_t s = 0;
    for (int l = 0; l < m->nlayers; l++) {
        if (m->layers[l].macs < 0) return -1;
        s += m->layers[l].macs;
    }
    return s;
}

Test(dynshape, dynamic_dims_stay_symbolic_and_load_does_not_probe) {
    /* A probe at samples=1 or 2 cannot run the kernel-9 Conv: loading must not try. */
    ba_model_t *m = load(DYN "audio.onnx");
    const ba_value_t *x = &m->values[m->inputs[0]];
    cr_assert_eq(x->ndim, 2);
    cr_assert(x->shape[0] < 0 && x->shape[1] < 0);
    cr_assert_str_eq(x->dim_param[0], "B");
    cr_assert_str_eq(x->dim_param[1], "samples");
    char buf[64];
    cr_assert_str_eq(ba_value_shape_str(x, buf, sizeof buf), "[B, samples]");
    cr_assert_eq(m->nlayers, 3);
    cr_assert_null(m->cost_shapes);
    for (int l = 0; l < m->nlayers; l++) cr_assert_eq(m->layers[l].macs, -1, "macs unknown, not a probe's");
    ba_model_free(m);
    m = load(DYN "cnn_hw.onnx");
    cr_assert_str_eq(ba_value_shape_str(&m->values[m->inputs[0]], buf, sizeof buf), "[N, 3, H, W]");
    cr_assert_eq(total_macs(m), -1);
    ba_model_free(m);
}

static void run_matches(const char *model, const char *x, const char *ref) {
    ba_model_t *m = load(model);
    ba_tensor_t *in = npy(x), *want = npy(ref), *out[1] = {NULL};
    ba_error err;
    cr_assert_eq(ba_model_run(m, &in, NULL, out, &err), BA_OK, "%s: %s", x, err.msg);
    expect_close(out[0], want, x);
    ba_tensor_unref(out[0]);
    ba_tensor_unref(in);
    ba_tensor_unref(want);
    ba_model_free(m);
}

Test(dynshape, outputs_match_pytorch_at_two_shapes) {
    run_matches(DYN "cnn_hw.onnx", DYN "cnn_x_a.npy", DYN "cnn_out_a.npy");
    run_matches(DYN "cnn_hw.onnx", DYN "cnn_x_b.npy", DYN "cnn_out_b.npy");
    /* H=2: the stride-2 Conv leaves 1 row, the ceil-mode MaxPool(2) window hangs past it (as in PyTorch) */
    run_matches(DYN "cnn_hw.onnx", DYN "cnn_x_c.npy", DYN "cnn_out_c.npy");
    run_matches(DYN "audio.onnx", DYN "audio_x_a.npy", DYN "audio_out_a.npy");
    run_matches(DYN "audio.onnx", DYN "audio_x_b.npy", DYN "audio_out_b.npy");
}

/* ONNX Runtime on the same file and data; 0 when node_modules is missing (skipped). */
static int run_ort(const char *model, const char *x, const char *out) {
    struct stat sb;
    if (stat(BA_SOURCE_DIR "/tests/node/node_modules/onnxruntime-node", &sb) != 0) return 0;
    const char *argv[] = {
        "/usr/bin/env", "node", BA_SOURCE_DIR "/tests/node/run_ort.js", model, out, x, NULL};
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

Test(dynshape, outputs_match_onnx_runtime_at_two_shapes, .timeout = 120) {
    char dir[512], ort[600], ours[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    const char *cases[][2] = {{"cnn_hw.onnx", "cnn_x_a.npy"},
                              {"cnn_hw.onnx", "cnn_x_b.npy"},
                              {"cnn_hw.onnx", "cnn_x_c.npy"},
                              {"audio.onnx", "audio_x_a.npy"},
                              {"audio.onnx", "audio_x_b.npy"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char model[512], x[512];
        snprintf(model, sizeof model, DYN "%s", cases[i][0]);
        snprintf(x, sizeof x, DYN "%s", cases[i][1]);
        snprintf(ort, sizeof ort, "%s/ort_%zu.npy", dir, i);
        snprintf(ours, sizeof ours, "%s/ours_%zu.npy", dir, i);
        if (!run_ort(model, x, ort)) {
            ba_test_rmtree(dir);
            cr_skip_test("ONNX Runtime (tests/node/node_modules) not installed");
        }
        ba_test_run_t r = ba_test_cli("eval", model, "--data", x, "--save-output", ours, NULL);
        cr_assert_eq(r.status, 0, "%s", r.err);
        ba_test_run_free(&r);
        ba_tensor_t *a = npy(ours), *b = npy(ort);
        expect_close(a, b, x);
        ba_tensor_unref(a);
        ba_tensor_unref(b);
    }
    ba_test_rmtree(dir);
}

static int64_t resolve(ba_model_t *m, const char *data, const char *shape_spec) {
    ba_error err;
    ba_dataset_t *ds = NULL;
    if (data) cr_assert_eq(ba_dataset_load(&data, 1, &ds, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_eval_resolve_costs(m, ds, shape_spec ? &shape_spec : NULL, shape_spec ? 1 : 0, &err),
                 BA_OK, "%s", err.msg);
    ba_dataset_free(ds);
    return total_macs(m);
}

Test(dynshape, macs_at_data_and_input_shape_match_the_formulas) {
    ba_model_t *m = load(DYN "cnn_hw.onnx");
    cr_expect_eq(resolve(m, DYN "cnn_x_a.npy", NULL), meta_macs("cnn_hw", "a"));
    /* one sample: the cost shape records N = 1 */
    cr_expect_eq(m->cost_shapes[0], 1);
    cr_expect_eq(m->cost_shapes[2], 48);
    cr_expect_eq(m->cost_shapes[3], 64);
    cr_expect_eq(resolve(m, DYN "cnn_x_b.npy", NULL), meta_macs("cnn_hw", "b"));
    cr_expect_eq(resolve(m, NULL, "x=1x3x320x640"), meta_macs("cnn_hw", "input_shape_320x640"));
    cr_expect_eq(resolve(m, DYN "cnn_x_c.npy", NULL), meta_macs("cnn_hw", "c"));
    /* --input-shape wins over the data */
    cr_expect_eq(resolve(m, DYN "cnn_x_a.npy", "x=4x3x320x640"), meta_macs("cnn_hw", "input_shape_320x640"));
    ba_model_free(m);
    m = load(DYN "audio.onnx");
    cr_expect_eq(resolve(m, DYN "audio_x_a.npy", NULL), meta_macs("audio", "a"));
    cr_expect_eq(resolve(m, DYN "audio_x_b.npy", NULL), meta_macs("audio", "b"));
    ba_model_free(m);
}

Test(dynshape, inspect_prints_symbolic_dims_and_macs_at_a_shape) {
    ba_test_run_t r = ba_test_cli("inspect", DYN "cnn_hw.onnx", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "x float32 [N, 3, H, W]"), "%s", r.out);
    cr_expect(strstr(r.out, "MACs unknown"), "%s", r.out);
    ba_test_run_free(&r);

    char want[64];
    snprintf(want, sizeof want, "%lld MACs", (long long)meta_macs("cnn_hw", "input_shape_320x640"));
    r = ba_test_cli("inspect", DYN "cnn_hw.onnx", "--input-shape", "x=1x3x320x640", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, want), "want '%s' in %s", want, r.out);
    cr_expect(strstr(r.out, "MACs at x=[1, 3, 320, 640]"), "%s", r.out);
    ba_test_run_free(&r);

    r = ba_test_cli("inspect", DYN "audio.onnx", "--data", DYN "audio_x_b.npy", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_error_t je;
    json_t *j = json_loads(r.out, 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    json_t *t = json_object_get(j, "totals");
    cr_expect_eq(json_integer_value(json_object_get(t, "macs")), meta_macs("audio", "b"));
    json_t *shp = json_object_get(json_object_get(t, "input_shapes"), "wav");
    cr_expect_eq(json_array_size(shp), 2);
    cr_expect_eq(json_integer_value(json_array_get(shp, 1)), 1203);
    json_t *dims = json_object_get(json_array_get(json_object_get(j, "inputs"), 0), "dims");
    cr_expect_str_eq(json_string_value(json_array_get(dims, 0)), "B");
    cr_expect_str_eq(json_string_value(json_array_get(dims, 1)), "samples");
    json_decref(j);
    ba_test_run_free(&r);

    /* JSON without a shape: macs null, never a probe number */
    r = ba_test_cli("inspect", DYN "audio.onnx", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    j = json_loads(r.out, 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    cr_expect(json_is_null(json_object_get(json_object_get(j, "totals"), "macs")));
    cr_expect(json_is_null(json_object_get(json_array_get(json_object_get(j, "layers"), 0), "macs")));
    json_decref(j);
    ba_test_run_free(&r);
}

Test(dynshape, search_plan_records_the_shape_and_its_bops, .timeout = 120) {
    char dir[512], db[600], plan[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    snprintf(plan, sizeof plan, "%s/plan.json", dir);
    ba_test_run_t r = ba_test_cli("--db", db, "search", DYN "cnn_hw.onnx", "--data", DYN "cnn_x_b.npy",
                                  "--budget", "avg-bits=4", "--bits", "4", "--method", "ilp", "--sensitivity",
                                  "weight", "--study", "dyn", "--plan-out", plan, "-q", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    ba_plan_t *p = NULL;
    ba_error err;
    cr_assert_eq(ba_plan_read(plan, &p, &err), BA_OK, "%s", err.msg);
    int64_t macs = 0;
    for (int l = 0; l < p->nlayers; l++) macs += p->layers[l].macs;
    cr_expect_eq(macs, meta_macs("cnn_hw", "b"));
    cr_expect_eq(p->totals.bops, (double)meta_macs("cnn_hw", "b") * 4 * 32, "bops %g", p->totals.bops);
    cr_assert_eq(p->totals.ninput_shapes, 1);
    cr_expect_str_eq(p->totals.input_shapes[0].name, "x");
    const int64_t want[] = {1, 3, 37, 50};
    cr_assert_eq(p->totals.input_shapes[0].ndim, 4);
    for (int d = 0; d < 4; d++) cr_expect_eq(p->totals.input_shapes[0].dims[d], want[d]);
    ba_plan_free(p);
    /* the exported plan holds the same figures */
    snprintf(plan, sizeof plan, "%s/export.json", dir);
    r = ba_test_cli("--db", db, "export", "--study", "dyn", "--format", "plan", "-o", plan, "-q", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    cr_assert_eq(ba_plan_read(plan, &p, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(p->totals.bops, (double)meta_macs("cnn_hw", "b") * 4 * 32);
    cr_expect_eq(p->totals.ninput_shapes, 1);
    ba_plan_free(p);
    ba_test_rmtree(dir);
}

Test(dynshape, search_input_shape_sets_the_cost_shape_for_the_study, .timeout = 120) {
    char dir[512], db[600], plan[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    int64_t macs = meta_macs("cnn_hw", "input_shape_320x640");
    for (int k = 0; k < 2; k++) {
        snprintf(plan, sizeof plan, "%s/plan%d.json", dir, k);
        ba_test_run_t r = k == 0
                              ? ba_test_cli("--db", db, "search", DYN "cnn_hw.onnx", "--data",
                                            DYN "cnn_x_a.npy", "--input-shape", "x=1x3x320x640", "--budget",
                                            "bops=20G", "--bits", "2,4,8", "--method", "ilp", "--sensitivity",
                                            "weight", "--study", "dyn320", "--plan-out", plan, "-q", NULL)
                              : ba_test_cli("--db", db, "export", "--study", "dyn320", "--format", "plan",
                                            "-o", plan, "-q", NULL);
        cr_assert_eq(r.status, 0, "%s", r.err);
        ba_test_run_free(&r);
        ba_plan_t *p = NULL;
        ba_error err;
        cr_assert_eq(ba_plan_read(plan, &p, &err), BA_OK, "%s", err.msg);
        double bops = 0;
        for (int l = 0; l < p->nlayers; l++) bops += (double)p->layers[l].macs * p->layers[l].w_bits * 32;
        cr_expect_eq(p->totals.bops, bops);
        cr_expect_leq(p->totals.bops, 20e9, "the budget holds at 320x640: %g", p->totals.bops);
        int64_t sum = 0;
        for (int l = 0; l < p->nlayers; l++) sum += p->layers[l].macs;
        cr_expect_eq(sum, macs);
        cr_assert_eq(p->totals.ninput_shapes, 1);
        cr_expect_eq(p->totals.input_shapes[0].dims[2], 320);
        cr_expect_eq(p->totals.input_shapes[0].dims[3], 640);
        ba_plan_free(p);
    }
    ba_test_rmtree(dir);
}

Test(dynshape, data_shape_that_breaks_the_model_names_node_and_dim) {
    const char *cmds[][2] = {{"inspect", "--data"}, {"eval", "--data"}};
    for (int i = 0; i < 2; i++) {
        ba_test_run_t r = ba_test_cli(cmds[i][0], DYN "audio.onnx", cmds[i][1], DYN "audio_x_bad.npy", NULL);
        cr_expect_eq(r.status, 2, "%s: %s", cmds[i][0], r.err);
        cr_expect(strstr(r.err, "/c1/Conv"), "%s", r.err);
        cr_expect(strstr(r.err, "samples=5"), "%s", r.err);
        ba_test_run_free(&r);
    }
    /* a static dimension given another size names it too */
    ba_test_run_t r = ba_test_cli("inspect", DYN "cnn_hw.onnx", "--input-shape", "x=1x4x32x32", NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "dim 1") && strstr(r.err, "'x'"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("inspect", DYN "cnn_hw.onnx", "--input-shape", "x=1x3x32", NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "rank"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("inspect", DYN "cnn_hw.onnx", "--input-shape", "x=1x3xHx32", NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "--input-shape"), "%s", r.err);
    ba_test_run_free(&r);
}

Test(dynshape, huge_declared_input_inspects_in_small_memory) {
    ba_test_run_t r = ba_test_cli("inspect", DYN "big_input.onnx", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "x float32 [16777216, 64]"), "%s", r.out);
    ba_test_run_free(&r);
    struct rusage ru;
    cr_assert_eq(getrusage(RUSAGE_CHILDREN, &ru), 0);
    cr_expect_lt(ru.ru_maxrss, BIG_INSPECT_MAX_RSS_KB, "inspect peak RSS %ld KiB", ru.ru_maxrss);
}

Test(dynshape, impossible_tensor_is_bad_input_not_out_of_memory) {
    ba_error err;
    int64_t shape[2] = {(int64_t)1 << 31, (int64_t)1 << 20};
    cr_assert_null(ba_tensor_new(BA_DT_F32, 2, shape, &err));
    cr_expect_eq(err.code, BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "limit"), "%s", err.msg);
    /* a shape that would need one: the tensor is named, exit 2 */
    ba_test_run_t r =
        ba_test_cli("inspect", DYN "cnn_hw.onnx", "--input-shape", "x=1x3x1000000x1000000", NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "limit") && strstr(r.err, "input 'x'"), "%s", r.err);
    ba_test_run_free(&r);
    /* a node whose output would be 40 GB from a 400 kB input: the node is named */
    const char *cmds[] = {"inspect", "eval"};
    char dir[512], x[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(x, sizeof x, "%s/x.npy", dir);
    int64_t xs[2] = {1, 100000};
    ba_tensor_t *t = ba_tensor_new(BA_DT_F32, 2, xs, &err);
    cr_assert_not_null(t);
    cr_assert_eq(ba_npy_save(x, t, &err), BA_OK, "%s", err.msg);
    ba_tensor_unref(t);
    for (int i = 0; i < 2; i++) {
        r = ba_test_cli(cmds[i], DYN "outer.onnx", "--data", x, NULL);
        cr_expect_eq(r.status, 2, "%s: %s", cmds[i], r.err);
        cr_expect(strstr(r.err, "limit") && strstr(r.err, "Outer") && strstr(r.err, "L=100000"), "%s", r.err);
        ba_test_run_free(&r);
    }
    /* the executor names the node too (a run outside the cost resolution) */
    ba_model_t *m = load(DYN "outer.onnx");
    ba_tensor_t *in = npy(x), *out[1] = {NULL};
    cr_expect_eq(ba_model_run(m, &in, NULL, out, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "node 'Outer'"), "%s", err.msg);
    ba_tensor_unref(in);
    ba_model_free(m);
    ba_test_rmtree(dir);
}

Test(dynshape, plan_input_shapes_round_trip_and_bad_values_are_named) {
    char dir[512], path[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/p.json", dir);
    ba_model_t *m = load(DYN "audio.onnx");
    cr_assert_gt(resolve(m, DYN "audio_x_a.npy", NULL), 0);
    int bits[3] = {4, 8, 2};
    ba_plan_t *p = NULL, *q = NULL;
    ba_error err;
    cr_assert_eq(ba_plan_from_bits(m, bits, NULL, &p, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_plan_write(path, p, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_plan_read(path, &q, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(q->totals.ninput_shapes, 1);
    cr_expect_str_eq(q->totals.input_shapes[0].name, "wav");
    cr_expect_eq(q->totals.input_shapes[0].ndim, 2);
    cr_expect_eq(q->totals.input_shapes[0].dims[0], 1);
    cr_expect_eq(q->totals.input_shapes[0].dims[1], 800);
    cr_expect_eq(q->totals.bops, p->totals.bops);
    ba_plan_free(q);
    ba_plan_free(p);
    /* a model whose MACs are unknown: bops is null, not a negative or probe figure */
    ba_model_t *u = load(DYN "audio.onnx");
    cr_assert_eq(ba_plan_from_bits(u, bits, NULL, &p, &err), BA_OK, "%s", err.msg);
    cr_expect(isnan(p->totals.bops));
    cr_expect_eq(p->totals.ninput_shapes, 0);
    char *text = NULL;
    cr_assert_eq(ba_plan_to_json(p, &text, &err), BA_OK, "%s", err.msg);
    cr_expect(strstr(text, "\"bops\": null"), "%s", text);
    free(text);
    ba_plan_free(p);
    ba_model_free(u);
    /* hand-edited nonsense is refused naming the field */
    cr_assert_eq(ba_plan_from_bits(m, bits, NULL, &p, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_plan_to_json(p, &text, &err), BA_OK, "%s", err.msg);
    char *at = strstr(text, "[1, 800]");
    cr_assert_not_null(at, "%s", text);
    memcpy(at, "[1, -8]", 7);
    at[7] = ' ';
    cr_assert_eq(ba_test_write_file(path, text), 0);
    free(text);
    cr_expect_eq(ba_plan_read(path, &q, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "input_shapes.wav"), "%s", err.msg);
    ba_plan_free(p);
    ba_model_free(m);
    ba_test_rmtree(dir);
}
