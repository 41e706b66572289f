/* `export --format onnx-qdq --qdq-profile ort|tensorrt` on every zoo fixture:
 * ONNX Runtime runs both files and agrees with `eval --plan` within 1e-5 of
 * the output's scale (weights only); the tensorrt file holds only int8
 * Quantize/DequantizeLinear with zero point 0; what TensorRT cannot run is
 * refused; pruned trials are exported with a warning and never as "best". */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/helpers.h"

#define ZOO BA_FIXTURES "/zoo/"
static const int CYCLE[] = {4, 8, 6, 3, 5, 8, 2, 7, 16};

typedef struct {
    char dir[512], db[600], out[700], plan[700], ref[700];
    ba_model_t *m;
} zenv_t;

static void add_trial(ba_db_t *db, int64_t sid, const ba_model_t *m, const char *state, int shift,
                      double kl) {
    int *w = calloc((size_t)m->nlayers, sizeof *w);
    for (int l = 0; l < m->nlayers; l++) w[l] = CYCLE[(l + shift) % (sizeof CYCLE / sizeof CYCLE[0])];
    ba_trial_t t = {0};
    snprintf(t.state, sizeof t.state, "%s", state);
    snprintf(t.method, sizeof t.method, "evo");
    ba_cost_t cost;
    ba_error err;
    cr_assert_eq(ba_cost_config(m, w, NULL, &cost, &err), BA_OK, "%s", err.msg);
    t.avg_bits = cost.avg_bits;
    t.memory = (double)cost.memory_bytes;
    t.bops = cost.bops;
    t.latency = NAN;
    t.predicted = 0.1;
    t.kl = kl;
    t.mse = kl;
    t.agreement = 1 - kl;
    t.accuracy = NAN;
    t.samples = 2;
    t.nlayers = m->nlayers;
    t.w_bits = w;
    cr_assert_eq(ba_db_trial_add(db, sid, &t, NULL, &err), BA_OK, "%s", err.msg);
    free(w);
}

/* Study NAME over zoo/NAME.onnx (data NAME_x.npy, settings as given): trial 1
 * complete (kl 0.01), trial 2 pruned with a lower kl. */
static zenv_t zenv(const char *name, const char *quantizer) {
    zenv_t e = {0};
    cr_assert_eq(ba_test_tmpdir(e.dir, sizeof e.dir), 0);
    snprintf(e.db, sizeof e.db, "%s/b.db", e.dir);
    snprintf(e.out, sizeof e.out, "%s/q.onnx", e.dir);
    snprintf(e.plan, sizeof e.plan, "%s/plan.json", e.dir);
    snprintf(e.ref, sizeof e.ref, "%s/ref.npy", e.dir);
    char model[600], x[600];
    snprintf(model, sizeof model, ZOO "%s.onnx", name);
    snprintf(x, sizeof x, ZOO "%s_x.npy", name);
    ba_error err;
    cr_assert_eq(ba_model_load(model, NULL, &e.m, &err), BA_OK, "%s", err.msg);
    ba_db_layer_t *layers = calloc((size_t)e.m->nlayers, sizeof *layers);
    for (int i = 0; i < e.m->nlayers; i++)
        layers[i] = (ba_db_layer_t){e.m->layers[i].name, e.m->layers[i].op, e.m->layers[i].params,
                                    e.m->layers[i].macs};
    const char *xs = x;
    ba_dataset_t *ds;
    cr_assert_eq(ba_dataset_load(&xs, 1, &ds, &err), BA_OK, "%s", err.msg);
    char dsha[65];
    ba_dataset_sha256(ds, dsha);
    ba_dataset_free(ds);
    char settings[2048];
    snprintf(settings, sizeof settings,
             "{\"model\": \"%s\", \"data\": [\"%s\"], \"quantizer\": %s, \"budgets\": {\"avg-bits\": 5}, "
             "\"method\": \"evo\", \"bits\": [2, 3, 4, 5, 6, 7, 8, 16], \"seed\": 1}",
             model, x, quantizer);
    ba_db_t *db;
    int64_t sid;
    cr_assert_eq(ba_db_open(e.db, 1, &db, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(
        ba_db_study_create(db, name, model, e.m->sha256, dsha, settings, layers, e.m->nlayers, &sid, &err),
        BA_OK, "%s", err.msg);
    add_trial(db, sid, e.m, "complete", 0, 0.01);
    add_trial(db, sid, e.m, "pruned", 3, 0.001);
    ba_db_close(db);
    free(layers);
    return e;
}

static void zenv_free(zenv_t *e) {
    ba_model_free(e->m);
    ba_test_rmtree(e->dir);
}

static ba_tensor_t *load_npy(const char *path) {
    ba_error err;
    ba_tensor_t *t = NULL;
    cr_assert_eq(ba_npy_load(path, &t, &err), BA_OK, "%s: %s", path, err.msg);
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

static int have_ort(void) {
    struct stat sb;
    return stat(BA_SOURCE_DIR "/tests/node/node_modules/onnxruntime-node", &sb) == 0;
}

/* ORT on model, first output to out; opt: ORT's graph optimization level. At
 * "extended" and above ORT fuses a weight DequantizeLinear -> MatMul into its
 * MatMulNBits, which by default (session.qdq_matmulnbits_accuracy_level 4)
 * quantizes the activation to int8 on the fly: the GPT and ViT files then
 * differ from eval --plan by ~0.7-0.9% of the output's scale, a runtime choice
 * not in the file. Level 0 computes in float, as the file says. */
static void run_ort(const char *model, const char *out, const char *x, const char *opt) {
    const char *argv[] = {"/usr/bin/env",
                          "node",
                          BA_SOURCE_DIR "/tests/node/run_ort.js",
                          model,
                          out,
                          "--opt",
                          opt,
                          "--config",
                          "session.qdq_matmulnbits_accuracy_level=0",
                          x,
                          NULL};
    char *err = NULL;
    int st = -1;
    cr_assert_eq(ba_test_run(argv, NULL, &err, &st), 0);
    cr_assert_eq(st, 0, "run_ort.js %s: %s", model, err);
    free(err);
}

/* Which data types the file's QuantizeLinear/DequantizeLinear zero points have:
 * "int8" when all are int8 and zero, else a description. */
static char *qdq_types(const char *path) {
    const char *code =
        "import onnx, sys, onnx.numpy_helper as nh\n"
        "m = onnx.load(sys.argv[1]); g = m.graph\n"
        "init = {t.name: t for t in g.initializer}\n"
        "bad = set()\n"
        "for n in g.node:\n"
        "    if n.op_type in ('QuantizeLinear', 'DequantizeLinear'):\n"
        "        z = init.get(n.input[2]) if len(n.input) > 2 else None\n"
        "        if z is None or z.data_type != onnx.TensorProto.INT8 or nh.to_array(z).any():\n"
        "            bad.add(n.op_type + ':' + (onnx.TensorProto.DataType.Name(z.data_type) if z else "
        "'none'))\n"
        "print(','.join(sorted(bad)) or 'int8', end='')\n";
    const char *argv[] = {"/usr/bin/python3", "-c", code, path, NULL};
    char *out = NULL, *err = NULL;
    int st = -1;
    if (ba_test_run(argv, &out, &err, &st) != 0 || st != 0) {
        free(out);
        free(err);
        return NULL; /* no python3-onnx: not checked */
    }
    free(err);
    return out;
}

static void zoo_profiles(const char *name) {
    zenv_t e = zenv(name, "{\"scheme\": \"symmetric\", \"granularity\": \"per-channel\", \"clip\": \"max\", "
                          "\"act_bits\": null}");
    char x[600], ortout[800];
    snprintf(x, sizeof x, ZOO "%s_x.npy", name);
    snprintf(ortout, sizeof ortout, "%s/ort.npy", e.dir);
    ba_test_run_t r =
        ba_test_cli("--db", e.db, "export", "--study", name, "--format", "plan", "-o", e.plan, "-q", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    char model[600];
    snprintf(model, sizeof model, ZOO "%s.onnx", name);
    r = ba_test_cli("eval", model, "--data", x, "--plan", e.plan, "--save-output", e.ref, "-q", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    ba_tensor_t *ref = load_npy(e.ref);
    static const char *const profiles[] = {"ort", "tensorrt"};
    for (int p = 0; p < 2; p++) {
        r = ba_test_cli("--db", e.db, "export", "--study", name, "--format", "onnx-qdq", "--qdq-profile",
                        profiles[p], "-o", e.out, NULL);
        cr_assert_eq(r.status, 0, "%s %s: %s", name, profiles[p], r.err);
        ba_test_run_free(&r);
        if (p == 1) {
            char *types = qdq_types(e.out);
            if (types) cr_expect_str_eq(types, "int8", "%s tensorrt: zero points %s", name, types);
            free(types);
        }
        if (!have_ort()) continue;
        run_ort(e.out, ortout, x, "all");
        ba_tensor_t *got = load_npy(ortout);
        double d = rel_diff(got, ref);
        cr_expect_leq(d, 1e-5, "%s --qdq-profile %s: ORT vs eval --plan: %g of the output's scale", name,
                      profiles[p], d);
        ba_tensor_unref(got);
        unlink(ortout);
    }
    ba_tensor_unref(ref);
    zenv_free(&e);
}

Test(export_qdq, resnet_both_profiles_run_in_ort_as_evaluated, .timeout = 300) {
    zoo_profiles("resnet");
}
Test(export_qdq, gpt_both_profiles_run_in_ort_as_evaluated, .timeout = 300) {
    zoo_profiles("gpt");
}
Test(export_qdq, vit_both_profiles_run_in_ort_as_evaluated, .timeout = 300) {
    zoo_profiles("vit");
}
Test(export_qdq, efficientnet_both_profiles_run_in_ort_as_evaluated, .timeout = 300) {
    zoo_profiles("efficientnet");
}
Test(export_qdq, mobilenetv2_both_profiles_run_in_ort_as_evaluated, .timeout = 300) {
    zoo_profiles("mobilenetv2");
}
Test(export_qdq, mobilenetv3_both_profiles_run_in_ort_as_evaluated, .timeout = 300) {
    zoo_profiles("mobilenetv3");
}
Test(export_qdq, shufflenet_both_profiles_run_in_ort_as_evaluated, .timeout = 300) {
    zoo_profiles("shufflenet");
}
Test(export_qdq, squeezenet_both_profiles_run_in_ort_as_evaluated, .timeout = 300) {
    zoo_profiles("squeezenet");
}

Test(export_qdq, tensorrt_refuses_what_tensorrt_cannot_run) {
    static const struct {
        const char *quantizer, *why;
    } bad[] = {{"{\"scheme\": \"asymmetric\"}", "asymmetric"},
               {"{\"granularity\": \"group:16\"}", "group:16"},
               {"{\"act_bits\": 4}", "4-bit activations"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        zenv_t e = zenv("resnet", bad[i].quantizer);
        ba_test_run_t r = ba_test_cli("--db", e.db, "export", "--study", "resnet", "--format", "onnx-qdq",
                                      "--qdq-profile", "tensorrt", "-o", e.out, NULL);
        cr_expect_eq(r.status, 2, "%s: %s", bad[i].quantizer, r.err);
        cr_expect(strstr(r.err, "--qdq-profile tensorrt") && strstr(r.err, bad[i].why), "%s", r.err);
        struct stat sb;
        cr_expect_neq(stat(e.out, &sb), 0, "nothing written");
        ba_test_run_free(&r);
        zenv_free(&e);
    }
    zenv_t e = zenv("resnet", "{}");
    ba_test_run_t r = ba_test_cli("--db", e.db, "export", "--study", "resnet", "--format", "plan",
                                  "--qdq-profile", "tensorrt", "-o", e.out, NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "--qdq-profile: applies to --format onnx-qdq only"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "export", "--study", "resnet", "--format", "onnx-qdq", "--name-map", e.plan,
                    "-o", e.out, NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "--name-map: applies to --format hawq, modelopt"), "%s", r.err);
    ba_test_run_free(&r);
    zenv_free(&e);
}

/* With activations: the ort file fake-quantizes them as eval --plan does (asymmetric
 * uint8 with a Clip to the b-bit grid). ONNX Runtime at --opt all fuses each
 * DequantizeLinear -> Conv -> QuantizeLinear group into an integer QLinearConv
 * (int32 accumulation, one requantization rounding) where eval computes the conv
 * in float on dequantized inputs: outputs then differ by up to about one activation
 * step, which is why the tolerance with fusion is the step, and with --opt disabled
 * (no fusion) 1e-5. The tensorrt file quantizes activations symmetric int8 (zero
 * point 0), TensorRT's rule, a grid eval --plan does not use: ORT runs it and its
 * output stays close to the float model's. */
Test(export_qdq, activation_qdq_ort_matches_eval_unfused_and_within_a_step_fused, .timeout = 300) {
    zenv_t e =
        zenv("resnet", "{\"scheme\": \"symmetric\", \"granularity\": \"per-channel\", \"act_bits\": 8}");
    if (!have_ort()) {
        zenv_free(&e);
        cr_skip_test("onnxruntime-node missing");
    }
    char x[600] = ZOO "resnet_x.npy", ortout[800];
    snprintf(ortout, sizeof ortout, "%s/ort.npy", e.dir);
    ba_test_run_t r = ba_test_cli("--db", e.db, "export", "--study", "resnet", "--format", "plan", "-o",
                                  e.plan, "-q", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("eval", ZOO "resnet.onnx", "--data", x, "--plan", e.plan, "--save-output", e.ref, "-q",
                    NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    ba_tensor_t *ref = load_npy(e.ref);
    r = ba_test_cli("--db", e.db, "export", "--study", "resnet", "--format", "onnx-qdq", "-o", e.out, "-q",
                    NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    run_ort(e.out, ortout, x, "disabled");
    ba_tensor_t *got = load_npy(ortout);
    double unfused = rel_diff(got, ref);
    ba_tensor_unref(got);
    run_ort(e.out, ortout, x, "all");
    got = load_npy(ortout);
    double fused = rel_diff(got, ref);
    ba_tensor_unref(got);
    cr_log_info("resnet act 8: ORT vs eval --plan: unfused %g, fused %g of the output's scale", unfused,
                fused);
    cr_expect_leq(unfused, 1e-5, "unfused: %g", unfused);
    cr_expect_leq(fused, 0.05, "fused: %g", fused);
    r = ba_test_cli("--db", e.db, "export", "--study", "resnet", "--format", "onnx-qdq", "--qdq-profile",
                    "tensorrt", "-o", e.out, "-q", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    char *types = qdq_types(e.out);
    if (types) cr_expect_str_eq(types, "int8", "zero points %s", types);
    free(types);
    run_ort(e.out, ortout, x, "all");
    got = load_npy(ortout);
    double trt = rel_diff(got, ref);
    cr_log_info("resnet act 8 tensorrt profile in ORT vs eval --plan: %g", trt);
    cr_expect_leq(trt, 0.1, "tensorrt profile: %g", trt);
    ba_tensor_unref(got);
    ba_tensor_unref(ref);
    zenv_free(&e);
}

Test(export_qdq, pruned_trial_warns_and_best_never_picks_one) {
    zenv_t e = zenv("resnet", "{}");
    ba_test_run_t r = ba_test_cli("--db", e.db, "export", "--study", "resnet", "--trial", "2", "--format",
                                  "plan", "-o", e.plan, NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.err, "bitalloc: warning: the trial was pruned"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", e.db, "export", "--study", "resnet", "--trial", "2", "--format", "plan",
                    "--strict", "-o", e.out, NULL);
    cr_expect_eq(r.status, 2, "--strict: %s", r.err);
    ba_test_run_free(&r);
    /* trial 2 has the lower kl, but best is the complete trial 1 */
    r = ba_test_cli("--db", e.db, "export", "--study", "resnet", "--format", "plan", "-o", e.plan, NULL);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.err, "trial 1 of study"), "%s", r.err);
    cr_expect_null(strstr(r.err, "pruned"), "%s", r.err);
    ba_test_run_free(&r);
    zenv_free(&e);
}
