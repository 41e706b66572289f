/* `bitalloc export` and quant/export.h (SPEC §9): each format of a stored trial
 * read back and checked (the plan validated against the model, JSON parsed,
 * the ONNX files passed through onnx.checker and run in our engine, where they
 * must compute what the in-memory quantized evaluation computes); the model's
 * sha256 is checked; failures exit with the SPEC §10 code and leave no file. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant/export.h"
#include "tests/helpers.h"

#define DIGITS BA_FIXTURES "/digits"
/* The fixture's trials: number → (first layer 8 bits, the others B). */
static const int TRIAL_BITS[] = {0, 4, 3, 6};
#define BEST_TRIAL 2 /* lowest kl among the complete ones */

typedef struct {
    char dir[512];
    char db[600];
    char model[600]; /* a copy of the CNN (the sha test replaces it) */
    char out[700];
    ba_model_t *m;
} env_t;

static void copy_file(const char *from, const char *to) {
    uint8_t *data;
    size_t n;
    ba_error err;
    cr_assert_eq(ba_file_read(from, &data, &n, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_out_write(to, data, n, &err), BA_OK, "%s", err.msg);
    free(data);
}

static void add_trial(ba_db_t *db, int64_t sid, const ba_model_t *m, const char *state, int bits, double kl,
                      double acc) {
    int *w = calloc((size_t)m->nlayers, sizeof *w);
    for (int l = 0; l < m->nlayers; l++) w[l] = l == 0 ? 8 : bits;
    ba_trial_t t = {0};
    snprintf(t.state, sizeof t.state, "%s", state);
    snprintf(t.method, sizeof t.method, "evo");
    ba_cost_t cost;
    ba_error err;
    cr_assert_eq(ba_cost_config(m, w, NULL, &cost, &err), BA_OK, "%s", err.msg);
    t.avg_bits = cost.avg_bits;
    t.memory = (double)cost.memory_bytes;
    t.bops = cost.bops;
    t.latency = 12.5;
    t.predicted = 1.0 / bits;
    t.kl = kl;
    t.mse = kl / 2;
    t.agreement = 1 - kl;
    t.accuracy = acc;
    t.samples = 100;
    t.nlayers = m->nlayers;
    t.w_bits = w;
    cr_assert_eq(ba_db_trial_add(db, sid, &t, NULL, &err), BA_OK, "%s", err.msg);
    free(w);
}

/* Study "cnn" over a copy of the digits CNN: trials 1 (4 bits), 2 (6 bits, the
 * best), 3 (3 bits, failed); study "acts" with --act-bits 8 and the calibration
 * data; study "empty" without trials. */
static env_t make_env(void) {
    env_t e = {0};
    cr_assert_eq(ba_test_tmpdir(e.dir, sizeof e.dir), 0);
    snprintf(e.db, sizeof e.db, "%s/b.db", e.dir);
    snprintf(e.model, sizeof e.model, "%s/cnn.onnx", e.dir);
    snprintf(e.out, sizeof e.out, "%s/out", e.dir);
    copy_file(DIGITS "/cnn.onnx", e.model);
    ba_error err;
    cr_assert_eq(ba_model_load(e.model, NULL, &e.m, &err), BA_OK, "%s", err.msg);
    ba_db_layer_t *layers = calloc((size_t)e.m->nlayers, sizeof *layers);
    for (int i = 0; i < e.m->nlayers; i++)
        layers[i] = (ba_db_layer_t){e.m->layers[i].name, e.m->layers[i].op, e.m->layers[i].params,
                                    e.m->layers[i].macs};
    ba_db_t *db;
    cr_assert_eq(ba_db_open(e.db, 1, &db, &err), BA_OK, "%s", err.msg);
    const char *calib = DIGITS "/calib_x.npy";
    ba_dataset_t *ds;
    cr_assert_eq(ba_dataset_load(&calib, 1, &ds, &err), BA_OK, "%s", err.msg);
    char dsha[65];
    ba_dataset_sha256(ds, dsha);
    ba_dataset_free(ds);
    char settings[2048];
    snprintf(
        settings, sizeof settings,
        "{\"model\": \"%s\", \"data\": [\"%s\"], \"labels\": null, \"quantizer\": {\"scheme\": \"symmetric\","
        " \"granularity\": \"per-channel\", \"clip\": \"max\", \"act_bits\": null}, \"budgets\": "
        "{\"avg-bits\": 5,"
        " \"memory\": 20000}, \"method\": \"ilp+evo\", \"bits\": [3,4,6,8], \"seed\": 11}",
        e.model, calib);
    int64_t sid;
    cr_assert_eq(
        ba_db_study_create(db, "cnn", e.model, e.m->sha256, dsha, settings, layers, e.m->nlayers, &sid, &err),
        BA_OK, "%s", err.msg);
    add_trial(db, sid, e.m, "complete", TRIAL_BITS[1], 0.01, 0.9);
    add_trial(db, sid, e.m, "complete", TRIAL_BITS[2], 0.002, NAN);
    add_trial(db, sid, e.m, "failed", TRIAL_BITS[3], 0.0001, NAN);
    snprintf(
        settings, sizeof settings,
        "{\"model\": \"%s\", \"data\": [\"%s\"], \"quantizer\": {\"scheme\": \"symmetric\", \"granularity\":"
        " \"per-channel\", \"clip\": \"max\", \"act_bits\": 8}, \"budgets\": {\"avg-bits\": 5}, \"method\": "
        "\"ilp\", "
        "\"bits\": [8], \"seed\": 0}",
        e.model, calib);
    cr_assert_eq(ba_db_study_create(db, "acts", e.model, e.m->sha256, dsha, settings, layers, e.m->nlayers,
                                    &sid, &err),
                 BA_OK, "%s", err.msg);
    add_trial(db, sid, e.m, "complete", 8, 0.001, NAN);
    cr_assert_eq(
        ba_db_study_create(db, "empty", e.model, e.m->sha256, dsha, "{}", layers, e.m->nlayers, &sid, &err),
        BA_OK, "%s", err.msg);
    ba_db_close(db);
    free(layers);
    return e;
}

static void env_free(env_t *e) {
    ba_model_free(e->m);
    ba_test_rmtree(e->dir);
}

static char *slurp(const char *path) {
    uint8_t *data;
    size_t n;
    ba_error err;
    cr_assert_eq(ba_file_read(path, &data, &n, &err), BA_OK, "%s", err.msg);
    char *s = malloc(n + 1);
    memcpy(s, data, n);
    s[n] = '\0';
    free(data);
    return s;
}

static json_t *load_json(const char *path) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    cr_assert(j, "%s: not JSON: %s", path, je.text);
    return j;
}

static int bits_of(int trial, int layer) {
    return layer == 0 ? 8 : TRIAL_BITS[trial];
}

/* export succeeded, said so on stderr, and left exactly one file (no .tmp). */
static void expect_written(const ba_test_run_t *r, const env_t *e) {
    cr_assert_eq(r->status, 0, "exit %d: %s", r->status, r->err);
    cr_expect_str_empty(r->out);
    struct stat sb;
    cr_expect_eq(stat(e->out, &sb), 0);
    char tmp[800];
    snprintf(tmp, sizeof tmp, "%s.tmp", e->out);
    cr_expect_neq(access(tmp, F_OK), 0, "temporary file left behind");
}

/* ------------------------------------------------------------------- plan */

Test(export, plan_reads_back_validates_and_carries_trial_metrics_and_search) {
    env_t e = make_env();
    ba_test_run_t r = ba_test_cli("--db", e.db, "export", "--study", "cnn", "--trial", "1", "--format",
                                  "plan", "-o", e.out, NULL);
    expect_written(&r, &e);
    ba_plan_t *p;
    ba_error err;
    cr_assert_eq(ba_plan_read(e.out, &p, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(ba_plan_validate(p, e.m, 1, &err), BA_OK, "%s", err.msg);
    cr_expect_str_eq(p->model_path, e.model);
    cr_assert_eq(p->nlayers, e.m->nlayers);
    int bits[64];
    cr_assert_eq(ba_plan_bits(p, e.m, bits, &err), BA_OK, "%s", err.msg);
    for (int l = 0; l < e.m->nlayers; l++) cr_expect_eq(bits[l], bits_of(1, l), "%s", e.m->layers[l].name);
    ba_cost_t cost;
    cr_assert_eq(ba_cost_config(e.m, bits, NULL, &cost, &err), BA_OK);
    cr_expect_float_eq(p->totals.avg_bits, cost.avg_bits, 1e-12);
    cr_expect_eq(p->totals.memory_bytes, cost.memory_bytes);
    cr_expect_float_eq(p->totals.latency_us, 12.5, 1e-12);
    cr_assert(p->metrics);
    cr_expect_float_eq(p->metrics->kl, 0.01, 1e-15);
    cr_expect_float_eq(p->metrics->agreement, 0.99, 1e-15);
    cr_expect_float_eq(p->metrics->accuracy, 0.9, 1e-15);
    cr_assert(p->search);
    cr_expect_str_eq(p->search->study, "cnn");
    cr_expect_eq(p->search->trial, 1);
    cr_expect_str_eq(p->search->method, "ilp+evo");
    cr_expect(p->search->has_seed && p->search->seed == 11);
    cr_assert_eq(p->search->nbudgets, 2);
    cr_expect_str_eq(p->search->budgets[0].key, "avg-bits");
    cr_expect_float_eq(p->search->budgets[0].value, 5, 0);
    cr_expect_str_eq(p->search->budgets[1].key, "memory");
    cr_expect_float_eq(p->search->budgets[1].value, 20000, 0);
    cr_expect_eq(p->quantizer.act_bits, 0);
    ba_plan_free(p);
    ba_test_run_free(&r);
    env_free(&e);
}

Test(export, default_and_best_trial_are_the_lowest_kl_complete_one) {
    env_t e = make_env();
    for (int i = 0; i < 2; i++) {
        ba_test_run_t r =
            i ? ba_test_cli("--db", e.db, "export", "--study", "cnn", "--format", "plan", "-o", e.out, NULL)
              : ba_test_cli("--db", e.db, "export", "--study", "cnn", "--trial", "best", "--format", "plan",
                            "-o", e.out, "-q", NULL);
        expect_written(&r, &e);
        if (i == 0) cr_expect_str_empty(r.err, "-q prints nothing");
        ba_plan_t *p;
        ba_error err;
        cr_assert_eq(ba_plan_read(e.out, &p, &err), BA_OK, "%s", err.msg);
        cr_expect_eq(p->search->trial, BEST_TRIAL, "failed trial 3 has a lower kl but is not complete");
        cr_expect(isnan(p->metrics->accuracy));
        ba_plan_free(p);
        ba_test_run_free(&r);
    }
    env_free(&e);
}

/* ------------------------------------------------------------- text formats */

Test(export, csv_has_one_row_per_layer_with_params) {
    env_t e = make_env();
    ba_test_run_t r = ba_test_cli("--db", e.db, "export", "--study", "cnn", "--trial", "1", "--format", "csv",
                                  "-o", e.out, NULL);
    expect_written(&r, &e);
    char want[4096];
    size_t o = (size_t)snprintf(want, sizeof want, "layer,w_bits,a_bits,params\n");
    for (int l = 0; l < e.m->nlayers; l++)
        o += (size_t)snprintf(want + o, sizeof want - o, "%s,%d,,%lld\n", e.m->layers[l].name, bits_of(1, l),
                              (long long)e.m->layers[l].params);
    char *got = slurp(e.out);
    cr_expect_str_eq(got, want);
    free(got);
    ba_test_run_free(&r);
    /* with activations quantized, a_bits is filled */
    r = ba_test_cli("--db", e.db, "export", "--study", "acts", "--format", "csv", "-o", e.out, NULL);
    expect_written(&r, &e);
    got = slurp(e.out);
    cr_expect(strstr(got, ",8,8,"), "%s", got);
    free(got);
    ba_test_run_free(&r);
    env_free(&e);
}

/* The digits CNN's PyTorch modules, in layer order (conv1/conv2 have BN-folded
 * weights named onnx::Conv_N: their module comes from the node "/conv1/Conv"). */
static const char *const CNN_MODULES[] = {"conv1", "conv2", "conv3", "fc"};

Test(export, hawq_without_names_warns_per_layer_and_strict_exits_2) {
    env_t e = make_env();
    ba_test_run_t r = ba_test_cli("--db", e.db, "export", "--study", "cnn", "--trial", "2", "--format",
                                  "hawq", "-o", e.out, NULL);
    expect_written(&r, &e);
    for (int l = 0; l < e.m->nlayers; l++) {
        char want[300];
        snprintf(want, sizeof want, "warning: layer '%s' (module '%s'): no HAWQ module name",
                 e.m->layers[l].name, CNN_MODULES[l]);
        cr_expect(strstr(r.err, want), "no '%s' in:\n%s", want, r.err);
    }
    cr_expect(strstr(r.err, "hawq: 0 of 4 layers named"), "%s", r.err);
    ba_test_run_free(&r);
    unlink(e.out);
    r = ba_test_cli("--db", e.db, "export", "--study", "cnn", "--format", "hawq", "--strict", "-o", e.out,
                    NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "bitalloc: error: --strict:"), "%s", r.err);
    struct stat sb;
    cr_expect_neq(stat(e.out, &sb), 0, "--strict writes nothing");
    ba_test_run_free(&r);
    env_free(&e);
}

Test(export, hawq_with_a_name_map_keys_hawq_modules_and_their_activations) {
    env_t e = make_env();
    char map[700];
    snprintf(map, sizeof map, "%s/hawq.csv", e.dir);
    /* by initializer name, by node name, quoted; activations as act:<onnx name> */
    cr_assert_eq(ba_test_write_file(map, "onnx,hawq\nonnx::Conv_31,quant_convbn1\n/conv2/Conv,quant_convbn2\n"
                                         "\"conv3.weight\",quant_convbn3\nfc.weight,quant_output\n"
                                         "act:onnx::Conv_31,quant_act1\nact:/fc/Gemm,quant_act_output\n"),
                 0);
    ba_test_run_t r = ba_test_cli("--db", e.db, "export", "--study", "cnn", "--trial", "2", "--format",
                                  "hawq", "--name-map", map, "--strict", "-o", e.out, NULL);
    /* float activations are written as HAWQ's 8 bits, with a warning: --strict refuses */
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "float activations are written as 8 bits"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "export", "--study", "cnn", "--trial", "2", "--format", "hawq",
                    "--name-map", map, "-o", e.out, NULL);
    expect_written(&r, &e);
    cr_expect(strstr(r.err, "hawq: 4 of 4 layers named"), "%s", r.err);
    json_t *j = load_json(e.out);
    static const char *const hawq[] = {"quant_convbn1", "quant_convbn2", "quant_convbn3", "quant_output"};
    for (int l = 0; l < e.m->nlayers; l++) {
        json_t *v = json_object_get(j, hawq[l]);
        cr_expect(json_is_integer(v) && json_integer_value(v) == bits_of(2, l), "%s", hawq[l]);
    }
    cr_expect_eq(json_integer_value(json_object_get(j, "quant_act1")), 8);
    cr_expect_eq(json_integer_value(json_object_get(j, "quant_act_output")), 8);
    cr_expect_eq(json_object_size(j), (size_t)e.m->nlayers + 2);
    json_decref(j);
    ba_test_run_free(&r);
    env_free(&e);
}

Test(export, modelopt_patterns_name_pytorch_modules_with_pytorch_axes) {
    env_t e = make_env();
    ba_test_run_t r = ba_test_cli("--db", e.db, "export", "--study", "cnn", "--trial", "1", "--format",
                                  "modelopt", "-o", e.out, NULL);
    expect_written(&r, &e);
    /* trial 1 gives the convolutions 4 bits: ModelOpt runs only INT8 CNNs */
    cr_expect(strstr(r.err, "ModelOpt supports only INT8 for CNNs"), "%s", r.err);
    cr_expect(strstr(r.err, "modelopt: 4 of 4 layers named"), "%s", r.err);
    json_t *j = load_json(e.out);
    json_t *cfg = json_object_get(j, "quant_cfg");
    cr_assert(json_is_object(cfg), "no quant_cfg");
    cr_expect_str_eq(json_string_value(json_object_get(j, "algorithm")), "max");
    const char *first = NULL, *key;
    json_t *v;
    json_object_foreach(cfg, key, v) {
        first = key;
        break;
    }
    cr_expect_str_eq(first, "default", "default comes first");
    cr_expect(json_is_false(json_object_get(json_object_get(cfg, "default"), "enable")));
    cr_expect_eq(json_object_size(cfg), (size_t)e.m->nlayers + 1);
    for (int l = 0; l < e.m->nlayers; l++) {
        char want[300];
        snprintf(want, sizeof want, "*%s*weight_quantizer", CNN_MODULES[l]);
        json_t *q = json_object_get(cfg, want);
        cr_assert(json_is_object(q), "no %s", want);
        cr_expect_eq(json_integer_value(json_object_get(q, "num_bits")), bits_of(1, l), "%s", want);
        /* nn.Conv2d and nn.Linear keep out channels on axis 0 (the ONNX Gemm's too) */
        cr_expect(json_is_integer(json_object_get(q, "axis")) &&
                      json_integer_value(json_object_get(q, "axis")) == 0,
                  "%s", want);
        cr_expect(json_is_true(json_object_get(q, "enable")));
    }
    json_decref(j);
    ba_test_run_free(&r);
    env_free(&e);
}

Test(export, llama_writes_one_anchored_lowercase_safe_line_per_tensor) {
    env_t e = make_env();
    ba_test_run_t r = ba_test_cli("--db", e.db, "export", "--study", "cnn", "--trial", "1", "--format",
                                  "llama", "-o", e.out, NULL);
    expect_written(&r, &e);
    char *got = slurp(e.out);
    cr_expect_eq(ba_test_count_lines(got), (size_t)e.m->nlayers);
    for (int l = 0; l < e.m->nlayers; l++) {
        char line[300];
        snprintf(line, sizeof line, "^%s\\.weight$=%s\n", CNN_MODULES[l],
                 bits_of(1, l) == 8 ? "q8_0" : "q4_k");
        cr_expect(strstr(got, line), "no '%s' in:\n%s", line, got);
    }
    free(got);
    ba_test_run_free(&r);
    env_free(&e);
}

Test(export, ggml_types_cover_every_width) {
    static const struct {
        int bits;
        const char *type;
    } map[] = {{2, "q2_k"}, {3, "q3_k"}, {4, "q4_k"}, {5, "q5_k"}, {6, "q6_k"},
               {7, "q8_0"}, {8, "q8_0"}, {16, "f16"}, {32, "f32"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        cr_expect_str_eq(ba_export_ggml_type(map[i].bits), map[i].type, "%d bits", map[i].bits);
    cr_expect_null(ba_export_ggml_type(1));
    cr_expect_null(ba_export_ggml_type(12));
    char buf[64];
    cr_expect_str_eq(ba_export_module_name("layer1.0.conv1.weight", buf, sizeof buf), "layer1.0.conv1");
    cr_expect_str_eq(ba_export_module_name("onnx::MatMul_12", buf, sizeof buf), "onnx::MatMul_12");
    cr_expect_str_eq(ba_export_module_name(".weight", buf, sizeof buf), ".weight");
}

/* ------------------------------------------------------------------- ONNX */

static int have_python_onnx(void) {
    const char *argv[] = {"/usr/bin/python3", "-c", "import onnx", NULL};
    int status;
    return access(argv[0], X_OK) == 0 && ba_test_run(argv, NULL, NULL, &status) == 0 && status == 0;
}

static void onnx_check(const char *path) {
    if (!have_python_onnx()) {
        cr_log_warn("python3-onnx missing: onnx.checker skipped for %s", path);
        return;
    }
    const char *argv[] = {
        "/usr/bin/python3", "-c",
        "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)", path, NULL};
    char *err = NULL;
    int status;
    cr_assert_eq(ba_test_run(argv, NULL, &err, &status), 0);
    cr_expect_eq(status, 0, "onnx.checker: %s", err);
    free(err);
}

/* The exported model's output on the calibration data against the in-memory
 * evaluation of the same trial: weights from quant/wcache, activations
 * fake-quantized on the same calibrated ranges when act_bits > 0. */
static void expect_same_as_in_memory(const env_t *e, const int *bits, int act_bits, double tol,
                                     const char *what) {
    const char *calib = DIGITS "/calib_x.npy";
    ba_error err;
    ba_dataset_t *ds;
    cr_assert_eq(ba_dataset_load(&calib, 1, &ds, &err), BA_OK, "%s", err.msg);
    ba_model_t *q;
    cr_assert_eq(ba_model_load(e->out, NULL, &q, &err), BA_OK, "our engine loads the export: %s", err.msg);
    ba_evaluator_t *evq, *ev;
    cr_assert_eq(ba_evaluator_new(q, ds, NULL, &evq, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_evaluator_new(e->m, ds, NULL, &ev, &err), BA_OK, "%s", err.msg);
    ba_wcache_t *wc;
    cr_assert_eq(ba_wcache_new(e->m, NULL, &wc, &err), BA_OK, "%s", err.msg);
    ba_tensor_t **ov = calloc((size_t)e->m->nvalues, sizeof *ov);
    cr_assert_eq(ba_wcache_overrides(wc, bits, ov, &err), BA_OK, "%s", err.msg);
    ba_act_range_t *ranges = NULL;
    ba_quant_acts_t acts = {0};
    ba_eval_hook_t hook = {ba_quant_act_hook, &acts, NULL};
    if (act_bits) {
        ranges = calloc((size_t)e->m->nvalues, sizeof *ranges);
        cr_assert_eq(ba_study_calibrate_acts(ev, e->m, ranges, &err), BA_OK, "%s", err.msg);
        acts = (ba_quant_acts_t){act_bits, ranges};
    }
    ba_metrics_t met;
    ba_tensor_t *want = NULL;
    cr_assert_eq(ba_evaluator_run(ev, ov, act_bits ? &hook : NULL, 0, &met, &want, &err), BA_OK, "%s",
                 err.msg);
    const ba_tensor_t *got = ba_evaluator_fp_output(evq);
    cr_assert_eq(got->numel, want->numel);
    const float *g = got->data, *w = want->data;
    double maxdiff = 0, maxabs = 0;
    for (int64_t i = 0; i < got->numel; i++) maxabs = fmax(maxabs, fabs((double)w[i]));
    int64_t nbad = 0;
    for (int64_t i = 0; i < got->numel; i++) {
        maxdiff = fmax(maxdiff, fabs((double)g[i] - w[i]));
        nbad += fabs((double)g[i] - w[i]) > tol * maxabs;
    }
    /* With activation QDQ too: QuantizeLinear divides in float32 exactly as
     * the in-memory fake-quant does, so no code flips (nbad counts them). */
    cr_expect_eq(nbad, 0, "%s: %lld of %lld outputs differ from in-memory", what, (long long)nbad,
                 (long long)got->numel);
    cr_expect_leq(maxdiff, tol * maxabs, "%s: export vs in-memory: max |diff| %g (max |out| %g)", what,
                  maxdiff, maxabs);
    ba_tensor_unref(want);
    free(ranges);
    free(ov);
    ba_wcache_free(wc);
    ba_evaluator_free(ev);
    ba_evaluator_free(evq);
    ba_model_free(q);
    ba_dataset_free(ds);
}

Test(export, onnx_fakequant_passes_the_checker_and_computes_the_trial, .timeout = 120) {
    env_t e = make_env();
    ba_test_run_t r = ba_test_cli("--db", e.db, "export", "--study", "cnn", "--trial", "1", "--format",
                                  "onnx-fakequant", "-o", e.out, NULL);
    expect_written(&r, &e);
    onnx_check(e.out);
    int bits[64];
    for (int l = 0; l < e.m->nlayers; l++) bits[l] = bits_of(1, l);
    expect_same_as_in_memory(&e, bits, 0, 1e-5, "fakequant");
    ba_test_run_free(&r);
    env_free(&e);
}

Test(export, onnx_qdq_passes_the_checker_and_computes_the_trial, .timeout = 120) {
    env_t e = make_env();
    ba_test_run_t r =
        ba_test_cli("--db", e.db, "export", "--study", "cnn", "--format", "onnx-qdq", "-o", e.out, NULL);
    expect_written(&r, &e);
    onnx_check(e.out);
    int bits[64];
    for (int l = 0; l < e.m->nlayers; l++) bits[l] = bits_of(BEST_TRIAL, l);
    expect_same_as_in_memory(&e, bits, 0, 1e-5, "qdq weights");
    ba_test_run_free(&r);
    /* activations quantized: ranges calibrated again on the study's data */
    r = ba_test_cli("--db", e.db, "export", "--study", "acts", "--format", "onnx-qdq", "-o", e.out, NULL);
    expect_written(&r, &e);
    onnx_check(e.out);
    for (int l = 0; l < e.m->nlayers; l++) bits[l] = 8;
    expect_same_as_in_memory(&e, bits, 8, 1e-4, "qdq weights+acts");
    ba_test_run_free(&r);
    env_free(&e);
}

/* ------------------------------------------------------------------ errors */

Test(export, changed_model_file_exits_2_naming_it_and_writes_nothing) {
    env_t e = make_env();
    copy_file(DIGITS "/mlp.onnx", e.model);
    static const char *const fmts[] = {"plan", "hawq", "onnx-qdq"};
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        ba_test_run_t r =
            ba_test_cli("--db", e.db, "export", "--study", "cnn", "--format", fmts[i], "-o", e.out, NULL);
        cr_expect_eq(r.status, 2, "%s: exit %d %s", fmts[i], r.status, r.err);
        cr_expect(strstr(r.err, e.model) && strstr(r.err, "changed"), "%s", r.err);
        cr_expect_eq(ba_test_count_lines(r.err), 1, "%s", r.err);
        cr_expect_neq(access(e.out, F_OK), 0, "%s: output written", fmts[i]);
        ba_test_run_free(&r);
    }
    unlink(e.model);
    ba_test_run_t r =
        ba_test_cli("--db", e.db, "export", "--study", "cnn", "--format", "csv", "-o", e.out, NULL);
    cr_expect_eq(r.status, 2, "missing model: %s", r.err);
    cr_expect(strstr(r.err, e.model), "%s", r.err);
    ba_test_run_free(&r);
    env_free(&e);
}

Test(export, unknown_study_or_trial_and_no_complete_trial_exit_2) {
    env_t e = make_env();
    ba_test_run_t r =
        ba_test_cli("--db", e.db, "export", "--study", "nope", "--format", "plan", "-o", e.out, NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "nope"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "export", "--study", "cnn", "--trial", "42", "--format", "plan", "-o",
                    e.out, NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "--trial") && strstr(r.err, "42"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "export", "--study", "empty", "--format", "csv", "-o", e.out, NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "no complete trial"), "%s", r.err);
    ba_test_run_free(&r);
    cr_expect_neq(access(e.out, F_OK), 0);
    env_free(&e);
}

Test(export, refuses_to_overwrite_the_study_database_or_model) {
    env_t e = make_env();
    const char *targets[] = {e.db, e.model};
    for (int i = 0; i < 2; i++) {
        uint8_t *before;
        size_t n;
        ba_error err;
        cr_assert_eq(ba_file_read(targets[i], &before, &n, &err), BA_OK);
        ba_test_run_t r = ba_test_cli("--db", e.db, "export", "--study", "cnn", "--format", "onnx-fakequant",
                                      "-o", targets[i], NULL);
        cr_expect_eq(r.status, 2, "%s", r.err);
        cr_expect(strstr(r.err, "--output"), "%s", r.err);
        uint8_t *after;
        size_t m;
        cr_assert_eq(ba_file_read(targets[i], &after, &m, &err), BA_OK);
        cr_expect(n == m && memcmp(before, after, n) == 0, "%s changed", targets[i]);
        free(before);
        free(after);
        ba_test_run_free(&r);
    }
    env_free(&e);
}

Test(export, foreign_database_exits_2_and_writes_nothing) {
    env_t e = make_env();
    char path[700];
    snprintf(path, sizeof path, "%s/junk.db", e.dir);
    cr_assert_eq(ba_test_write_file(path, "SQLite format 3\nnot really\n"), 0);
    ba_test_run_t r =
        ba_test_cli("--db", path, "export", "--study", "cnn", "--format", "plan", "-o", e.out, NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, path), "%s", r.err);
    ba_test_run_free(&r);
    cr_expect_neq(access(e.out, F_OK), 0);
    env_free(&e);
}

Test(export, write_error_exits_1_and_leaves_no_file) {
    env_t e = make_env();
    /* -o inside a regular file: the write fails whoever runs the test */
    char blocker[700], out[800];
    snprintf(blocker, sizeof blocker, "%s/file", e.dir);
    cr_assert_eq(ba_test_write_file(blocker, "x"), 0);
    snprintf(out, sizeof out, "%s/plan.json", blocker);
    static const char *const fmts[] = {"plan", "llama", "onnx-fakequant"};
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        ba_test_run_t r =
            ba_test_cli("--db", e.db, "export", "--study", "cnn", "--format", fmts[i], "-o", out, NULL);
        cr_expect_eq(r.status, 1, "%s: exit %d %s", fmts[i], r.status, r.err);
        cr_expect(strstr(r.err, out), "%s: %s", fmts[i], r.err);
        ba_test_run_free(&r);
    }
    /* a read-only directory (meaningless for root, who may write anyway) */
    char ro[700];
    snprintf(ro, sizeof ro, "%s/ro", e.dir);
    cr_assert_eq(mkdir(ro, 0555), 0);
    if (access(ro, W_OK) != 0) {
        snprintf(out, sizeof out, "%s/plan.json", ro);
        ba_test_run_t r =
            ba_test_cli("--db", e.db, "export", "--study", "cnn", "--format", "plan", "-o", out, NULL);
        cr_expect_eq(r.status, 1, "exit %d %s", r.status, r.err);
        ba_test_run_free(&r);
    }
    chmod(ro, 0755);
    cr_expect_neq(access(out, F_OK), 0);
    char tmp[900];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    cr_expect_neq(access(tmp, F_OK), 0);
    env_free(&e);
}
