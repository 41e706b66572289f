/* sensitivity/: each estimator against an independent NumPy/PyTorch computation
 * (tests/fixtures/make_sens_refs.py -> sens_refs/refs.json), the JSON/CSV forms
 * and --sensitivity-file readers, bad inputs, the DB cache and the CLI command. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/npy.h"
#include "helpers.h"
#include "model/grad.h"

#define DIG BA_FIXTURES "/digits/"
#define REFS BA_FIXTURES "/sens_refs/"
#define PAD BA_FIXTURES "/paddle/"

static ba_model_t *load_model(const char *path) {
    ba_error err;
    ba_model_t *m = NULL;
    ba_status st = ba_model_load(path, NULL, &m, &err);
    cr_assert_eq(st, BA_OK, "%s", err.msg);
    return m;
}

static ba_dataset_t *load_data(const char *path) {
    ba_error err;
    ba_dataset_t *ds = NULL;
    const char *spec[] = {path};
    cr_assert_eq(ba_dataset_load(spec, 1, &ds, &err), BA_OK, "%s", err.msg);
    return ds;
}

static json_t *refs(void) {
    json_error_t je;
    json_t *r = json_load_file(REFS "refs.json", 0, &je);
    cr_assert(r, "refs.json: %s", je.text);
    return r;
}

static ba_sens_table_t *compute(const ba_model_t *m, const ba_dataset_t *ds, const int64_t *lab, int64_t nl,
                                ba_sens_method_t meth, const ba_sens_opts_t *o) {
    ba_error err;
    ba_sens_table_t *t = NULL;
    ba_status st = ba_sens_compute(m, ds, lab, nl, meth, o, &t, &err);
    cr_assert_eq(st, BA_OK, "%s", err.msg);
    return t;
}

/* Every (layer, bits) of t against ref[layer][bits] within rel·|ref| + abs. */
static double check_costs(const ba_sens_table_t *t, const json_t *ref, double rel, double abs_tol) {
    double worst = 0;
    for (int l = 0; l < t->nlayers; l++) {
        const json_t *lr = json_object_get(ref, t->layers[l].name);
        cr_assert(lr, "no reference for layer %s", t->layers[l].name);
        if (json_object_get(lr, "cost")) lr = json_object_get(lr, "cost");
        for (int k = 0; k < t->nbits; k++) {
            char key[8];
            snprintf(key, sizeof key, "%d", t->bits[k]);
            double want = json_real_value(json_object_get(lr, key)), got = t->layers[l].cost[k];
            double e = fabs(got - want) / fabs(want);
            if (e > worst) worst = e;
            cr_expect(fabs(got - want) <= rel * fabs(want) + abs_tol, "%s %d bits: %.10g, reference %.10g",
                      t->layers[l].name, t->bits[k], got, want);
        }
    }
    return worst;
}

Test(sensitivity, weight_cost_matches_numpy_exactly) {
    json_t *r = refs();
    const char *models[][2] = {{DIG "cnn_dyn.onnx", "cnn"}, {DIG "mlp_dyn.onnx", "mlp"}};
    for (int i = 0; i < 2; i++) {
        ba_model_t *m = load_model(models[i][0]);
        ba_sens_table_t *t = compute(m, NULL, NULL, 0, BA_SENS_WEIGHT, NULL);
        cr_assert_eq(t->nbits, 6); /* default 2,3,4,5,6,8 */
        check_costs(t, json_object_get(json_object_get(r, "weight"), models[i][1]), 1e-12, 0);
        /* score = Ω(l,4)/params */
        for (int l = 0; l < t->nlayers; l++)
            cr_expect_float_eq(t->layers[l].score, t->layers[l].cost[2] / (double)t->layers[l].params, 1e-15);
        cr_expect(isnan(t->layers[0].se));
        cr_expect_eq(t->samples, 0);
        ba_sens_table_free(t);
        ba_model_free(m);
    }
    json_decref(r);
}

Test(sensitivity, act_cost_matches_torch_conv_on_delta_w) {
    json_t *r = refs();
    ba_model_t *m = load_model(DIG "cnn_dyn.onnx");
    ba_dataset_t *ds = load_data(DIG "calib_x.npy");
    const json_t *ref = json_object_get(json_object_get(r, "act"), "cnn");
    ba_sens_opts_t o = ba_sens_opts_default();
    ba_sens_table_t *t = compute(m, ds, NULL, 0, BA_SENS_ACT, &o); /* Σ = E[x xᵀ] path */
    double e1 = check_costs(t, ref, 1e-4, 0);
    o.act_direct = 1; /* the layer's own kernel on ΔW */
    ba_sens_table_t *d = compute(m, ds, NULL, 0, BA_SENS_ACT, &o);
    double e2 = check_costs(d, ref, 1e-4, 0);
    cr_log_info("act: worst relative error %.2e (sigma), %.2e (direct)", e1, e2);
    cr_expect_eq(t->samples, 512);
    ba_sens_table_free(t);
    ba_sens_table_free(d);
    ba_dataset_free(ds);
    ba_model_free(m);
    json_decref(r);
}

Test(sensitivity, act_on_static_batch_model_equals_dynamic) {
    ba_model_t *ms = load_model(DIG "cnn.onnx"), *md = load_model(DIG "cnn_dyn.onnx");
    ba_dataset_t *ds = load_data(DIG "calib_x.npy");
    ba_sens_opts_t o = ba_sens_opts_default();
    o.max_data = 32;
    ba_sens_table_t *a = compute(ms, ds, NULL, 0, BA_SENS_ACT, &o),
                    *b = compute(md, ds, NULL, 0, BA_SENS_ACT, &o);
    for (int l = 0; l < a->nlayers; l++)
        for (int k = 0; k < a->nbits; k++)
            cr_expect(fabs(a->layers[l].cost[k] - b->layers[l].cost[k]) <= 1e-5 * b->layers[l].cost[k]);
    cr_expect_eq(a->samples, 32);
    ba_sens_table_free(a);
    ba_sens_table_free(b);
    ba_dataset_free(ds);
    ba_model_free(ms);
    ba_model_free(md);
}

Test(sensitivity, measured_kl_matches_pytorch_single_layer_runs) {
    json_t *r = refs();
    ba_model_t *m = load_model(DIG "mlp_dyn.onnx");
    ba_dataset_t *ds = load_data(DIG "calib_x_flat.npy");
    ba_sens_table_t *t = compute(m, ds, NULL, 0, BA_SENS_MEASURED, NULL);
    double e = check_costs(t, json_object_get(json_object_get(r, "measured"), "mlp"), 2e-3, 1e-8);
    cr_log_info("measured: worst relative error %.2e", e);
    cr_expect_str_eq(t->loss, "kl");
    ba_sens_table_free(t);
    ba_dataset_free(ds);
    ba_model_free(m);
    json_decref(r);
}

static int64_t *labels(int64_t *n) {
    ba_error err;
    int64_t *y;
    cr_assert_eq(ba_labels_load(DIG "calib_y.npy", &y, n, &err), BA_OK, "%s", err.msg);
    return y;
}

Test(sensitivity, fisher_matches_pytorch_per_sample_gradients) {
    json_t *r = refs();
    ba_model_t *m = load_model(DIG "mlp_dyn.onnx");
    ba_dataset_t *ds = load_data(DIG "calib_x_flat.npy");
    int64_t n;
    int64_t *y = labels(&n);
    ba_sens_table_t *t = compute(m, ds, y, n, BA_SENS_FISHER, NULL);
    const json_t *ref = json_object_get(r, "fisher");
    double e = check_costs(t, ref, 1e-3, 0);
    for (int l = 0; l < t->nlayers; l++) {
        double want = json_real_value(json_object_get(json_object_get(ref, t->layers[l].name), "score"));
        cr_expect(fabs(t->layers[l].score - want) <= 1e-3 * want, "%s: %g vs %g", t->layers[l].name,
                  t->layers[l].score, want);
    }
    cr_log_info("fisher: worst relative error %.2e", e);
    cr_expect_str_eq(t->loss, "ce");
    ba_sens_table_free(t);
    free(y);
    ba_dataset_free(ds);
    ba_model_free(m);
    json_decref(r);
}

/* Writes the first rows of src (.npy, sample axis first) to path. */
static void save_head_rows(const char *src, int64_t rows, const char *path) {
    ba_error err;
    ba_tensor_t *t = NULL;
    cr_assert_eq(ba_npy_load(src, &t, &err), BA_OK, "%s", err.msg);
    cr_assert(t->ndim >= 1 && t->shape[0] >= rows, "%s: fewer than %lld rows", src, (long long)rows);
    int64_t shape[BA_MAX_DIMS];
    memcpy(shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
    shape[0] = rows;
    ba_tensor_t *h = ba_tensor_wrap(t->dtype, t->ndim, shape, t->data, &err);
    cr_assert(h, "%s", err.msg);
    cr_assert_eq(ba_npy_save(path, h, &err), BA_OK, "%s", err.msg);
    ba_tensor_unref(h);
    ba_tensor_unref(t);
}

#define MEASURED_BATCH_REL 1e-4

/* 300 rows on a dynamic batch axis are one batch of 256 and a short one of 44:
 * every sample counts, and the means match one batch of all 300. */
Test(sensitivity, dynamic_batch_uses_every_sample_with_a_short_last_batch) {
    enum { ROWS = 300 };
    char dir[512], xp[600], yp[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(xp, sizeof xp, "%s/x.npy", dir);
    snprintf(yp, sizeof yp, "%s/y.npy", dir);
    save_head_rows(DIG "calib_x_flat.npy", ROWS, xp);
    save_head_rows(DIG "calib_y.npy", ROWS, yp);
    ba_model_t *m = load_model(DIG "mlp_dyn.onnx");
    ba_dataset_t *ds = load_data(xp);
    ba_error err;
    int64_t n, *y;
    cr_assert_eq(ba_labels_load(yp, &y, &n, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(n, ROWS);
    ba_sens_opts_t one = ba_sens_opts_default();
    one.batch = ROWS;
    cr_assert_gt(ROWS % BA_EVAL_DEFAULT_BATCH, 0, "the default batch must leave a short tail");
    const ba_sens_method_t meths[] = {BA_SENS_FISHER, BA_SENS_ACT, BA_SENS_MEASURED};
    for (size_t i = 0; i < sizeof meths / sizeof *meths; i++) {
        ba_sens_table_t *t = compute(m, ds, y, n, meths[i], NULL);
        ba_sens_table_t *r = compute(m, ds, y, n, meths[i], &one);
        const char *name = ba_sens_method_name(meths[i]);
        /* measured's KL between near-equal float32 outputs amplifies the
         * rounding a different GEMM batch brings (seen: 8e-6 relative) */
        double rel = meths[i] == BA_SENS_MEASURED ? MEASURED_BATCH_REL : 1e-6;
        cr_expect_eq(t->samples, ROWS, "%s: %lld samples", name, (long long)t->samples);
        cr_expect_eq(r->samples, ROWS, "%s (one batch): %lld samples", name, (long long)r->samples);
        for (int l = 0; l < t->nlayers; l++)
            for (int k = 0; k < t->nbits; k++) {
                double got = t->layers[l].cost[k], want = r->layers[l].cost[k];
                cr_expect(want > 0 && fabs(got - want) <= rel * fabs(want),
                          "%s %s %d bits: %.12g batched, %.12g in one batch", name, t->layers[l].name,
                          t->bits[k], got, want);
            }
        ba_sens_table_free(t);
        ba_sens_table_free(r);
    }
    free(y);
    ba_dataset_free(ds);
    ba_model_free(m);
    ba_test_rmtree(dir);
}

Test(sensitivity, hessian_trace_agrees_with_exact_trace_within_its_stderr, .timeout = 300) {
    json_t *r = refs();
    ba_model_t *m = load_model(DIG "mlp_dyn.onnx");
    ba_dataset_t *ds = load_data(DIG "calib_x_flat.npy");
    int64_t n;
    int64_t *y = labels(&n);
    ba_sens_table_t *t = compute(m, ds, y, n, BA_SENS_HESSIAN, NULL);
    int l = 2;
    cr_assert_str_eq(t->layers[l].name, "fc3.weight");
    double exact = json_real_value(json_object_get(json_object_get(r, "hessian_trace"), "fc3.weight"));
    double s = t->layers[l].score, se = t->layers[l].se;
    cr_log_info("hessian fc3: %.8g ± %.2g (%lld probes), exact %.8g", s, se, (long long)t->layers[l].probes,
                exact);
    /* a ReLU MLP's layer blocks have no second-order term of their own (H_ll = G_ll):
     * the exact Gauss-Newton trace, no probe, standard error 0 */
    cr_expect(se == 0 && fabs(s - exact) <= 1e-6 * exact, "%.10g ± %g vs exact %.10g", s, se, exact);
    cr_expect_eq(t->layers[l].probes, 0);
    cr_expect(isnan(t->layers[l].top_eig), "no eigenvalue is computed");
    double w;
    ba_error err;
    cr_assert_eq(ba_sens_weight_error(m, l, 4, NULL, &w, &err), BA_OK);
    cr_expect_float_eq(t->layers[l].cost[2], s * w, 1e-12 * s * w);
    ba_sens_table_free(t);
    free(y);
    ba_dataset_free(ds);
    ba_model_free(m);
    json_decref(r);
}

Test(sensitivity, same_seed_gives_identical_table) {
    /* a model whose Hessian has a residual beside the Gauss-Newton part: probes run */
    ba_model_t *m = load_model(PAD "paddle_op9.onnx");
    ba_dataset_t *ds = load_data(PAD "x.npy");
    ba_sens_opts_t o = ba_sens_opts_default();
    o.max_probes = 6;
    o.seed = 7;
    ba_sens_table_t *a = compute(m, ds, NULL, 0, BA_SENS_HESSIAN, &o),
                    *b = compute(m, ds, NULL, 0, BA_SENS_HESSIAN, &o);
    o.seed = 8;
    ba_sens_table_t *c = compute(m, ds, NULL, 0, BA_SENS_HESSIAN, &o);
    char *ja, *jb, *jc;
    ba_error err;
    cr_assert_eq(ba_sens_to_json(a, &ja, &err), BA_OK);
    cr_assert_eq(ba_sens_to_json(b, &jb, &err), BA_OK);
    cr_assert_eq(ba_sens_to_json(c, &jc, &err), BA_OK);
    cr_expect_str_eq(ja, jb);
    cr_expect_str_neq(ja, jc);
    free(ja);
    free(jb);
    free(jc);
    ba_sens_table_free(a);
    ba_sens_table_free(b);
    ba_sens_table_free(c);
    ba_dataset_free(ds);
    ba_model_free(m);
}

/* ---- text forms ---- */

static ba_sens_table_t *weight_table(const ba_model_t *m) {
    return compute(m, NULL, NULL, 0, BA_SENS_WEIGHT, NULL);
}

Test(sensitivity, json_and_csv_round_trip_through_sensitivity_file) {
    ba_model_t *m = load_model(DIG "cnn_dyn.onnx");
    ba_sens_table_t *t = weight_table(m);
    char dir[512], pj[600], pc[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(pj, sizeof pj, "%s/s.json", dir);
    snprintf(pc, sizeof pc, "%s/s.csv", dir);
    ba_error err;
    FILE *f = fopen(pj, "w");
    cr_assert_eq(ba_sens_write_json(t, f, &err), BA_OK);
    fclose(f);
    f = fopen(pc, "w");
    cr_assert_eq(ba_sens_write_csv(t, f, &err), BA_OK);
    fclose(f);
    for (int which = 0; which < 2; which++) {
        ba_sens_table_t *r = NULL;
        cr_assert_eq(ba_sens_read_file(which ? pc : pj, m, NULL, 0, NULL, &r, &err), BA_OK, "%s", err.msg);
        cr_assert_eq(r->nlayers, t->nlayers);
        for (int l = 0; l < t->nlayers; l++)
            for (int k = 0; k < t->nbits; k++) cr_expect_eq(r->layers[l].cost[k], t->layers[l].cost[k]);
        if (!which) {
            cr_expect_str_eq(r->method, "weight");
            cr_expect_eq(r->layers[1].score, t->layers[1].score);
        }
        ba_sens_table_free(r);
    }
    /* a subset of the widths */
    int bits[] = {3, 8};
    ba_sens_table_t *r = NULL;
    cr_assert_eq(ba_sens_read_file(pj, m, bits, 2, NULL, &r, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(r->layers[0].cost[1], t->layers[0].cost[5]); /* 8 bits is the 6th default width */
    ba_sens_table_free(r);
    ba_test_rmtree(dir);
    ba_sens_table_free(t);
    ba_model_free(m);
}

Test(sensitivity, csv_layer_score_scales_the_weight_error) {
    ba_model_t *m = load_model(DIG "cnn_dyn.onnx");
    char dir[512], p[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(p, sizeof p, "%s/s.csv", dir);
    ba_test_write_file(
        p, "layer,score\nonnx::Conv_31,2\nonnx::Conv_34,0.5\n\"conv3.weight\",1e-3\nfc.weight,0\n");
    ba_error err;
    ba_sens_table_t *r = NULL;
    cr_assert_eq(ba_sens_read_file(p, m, NULL, 0, NULL, &r, &err), BA_OK, "%s", err.msg);
    double w;
    cr_assert_eq(ba_sens_weight_error(m, 1, 5, NULL, &w, &err), BA_OK);
    cr_expect_eq(r->layers[1].cost[3], 0.5 * w);
    cr_expect_eq(r->layers[1].score, 0.5);
    cr_expect_eq(r->layers[3].cost[0], 0);
    ba_sens_table_free(r);
    ba_test_rmtree(dir);
    ba_model_free(m);
}

/* Writes text, reads it back, expects BA_ERR_INPUT with every needle in the message. */
static void expect_file_error(const ba_model_t *m, const char *name, const char *text, const char *n1,
                              const char *n2) {
    char dir[512], p[700];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(p, sizeof p, "%s/%s", dir, name);
    ba_test_write_file(p, text);
    ba_error err;
    ba_sens_table_t *r = NULL;
    ba_status st = ba_sens_read_file(p, m, NULL, 0, NULL, &r, &err);
    cr_expect_eq(st, BA_ERR_INPUT, "%s: status %d", text, st);
    cr_expect(r == NULL);
    if (st != BA_OK) {
        cr_expect(strstr(err.msg, name), "message names the file: %s", err.msg);
        cr_expect(strstr(err.msg, n1), "'%s' not in: %s", n1, err.msg);
        if (n2) cr_expect(strstr(err.msg, n2), "'%s' not in: %s", n2, err.msg);
    }
    ba_sens_table_free(r);
    ba_test_rmtree(dir);
}

Test(sensitivity, sensitivity_file_errors_name_file_and_line_or_layer) {
    ba_model_t *m = load_model(DIG "cnn_dyn.onnx");
    expect_file_error(m, "a.csv", "layer,score\nnope,1\n", "line 2", "nope");
    expect_file_error(m, "b.csv", "layer,score\nonnx::Conv_31,1\nonnx::Conv_34,1\nconv3.weight,1\n",
                      "fc.weight", "missing");
    expect_file_error(m, "c.csv", "layer,score\nonnx::Conv_31,abc\n", "line 2", "abc");
    expect_file_error(m, "d.csv", "layer,score\nonnx::Conv_31,nan\n", "line 2", NULL);
    expect_file_error(m, "e.csv", "layer,bits,cost\nonnx::Conv_31,2,1\n", "onnx::Conv_31", "3 bits");
    expect_file_error(m, "f.csv", "name,value\n", "line 1", "header");
    expect_file_error(m, "g.csv", "layer,score\nonnx::Conv_31,1\nonnx::Conv_31,2\n", "line 3", "twice");
    expect_file_error(m, "h.json", "{\"layers\": [{\"name\": \"fc.weight\", \"cost\": {\"2\": 1}}]}",
                      "fc.weight", "3 bits");
    expect_file_error(m, "i.json", "{\"layers\": [{\"name\": \"zzz\", \"cost\": {}}]}", "zzz", NULL);
    expect_file_error(m, "j.json", "{\"layers\": [", "line", NULL);
    expect_file_error(m, "k.json", "{\"layers\": [{\"name\": \"fc.weight\", \"cost\": {\"2\": \"x\"}}]}",
                      "fc.weight", "cost.2");
    ba_model_free(m);
}

/* A negative cost makes the ILP pick the lowest width everywhere (it "gains" by
 * quantizing harder): refused, like NaN and Inf, naming the file, layer and value. */
Test(sensitivity, sensitivity_file_refuses_negative_and_non_finite_costs) {
    ba_model_t *m = load_model(DIG "cnn_dyn.onnx");
    expect_file_error(m, "neg.csv", "layer,bits,cost\nonnx::Conv_31,2,-5\n", "onnx::Conv_31",
                      "cost -5 is negative");
    expect_file_error(m, "inf.csv", "layer,bits,cost\nonnx::Conv_31,2,inf\n", "onnx::Conv_31", "inf");
    expect_file_error(m, "nan.csv", "layer,bits,cost\nonnx::Conv_31,2,nan\n", "onnx::Conv_31", "nan");
    expect_file_error(m, "negs.csv", "layer,score\nonnx::Conv_31,-0.5\n", "onnx::Conv_31",
                      "score -0.5 is negative");
    expect_file_error(m, "infs.csv", "layer,score\nonnx::Conv_31,1e999\n", "line 2", "1e999");
    expect_file_error(
        m, "neg.json",
        "{\"layers\": [{\"name\": \"fc.weight\", \"cost\": {\"2\": 1, \"3\": -0.25, \"4\": 1}}]}",
        "fc.weight", "\"cost.3\" is -0.25; a cost must not be negative");
    expect_file_error(m, "inf.json", "{\"layers\": [{\"name\": \"fc.weight\", \"cost\": {\"2\": 1e999}}]}",
                      "json", NULL);
    expect_file_error(m, "nan.json", "{\"layers\": [{\"name\": \"fc.weight\", \"cost\": {\"2\": NaN}}]}",
                      "json", NULL);
    ba_model_free(m);
}

/* ---- bad inputs ---- */

static void expect_compute_error(const ba_model_t *m, const ba_dataset_t *ds, const int64_t *y, int64_t n,
                                 ba_sens_method_t meth, const char *needle) {
    ba_error err;
    ba_sens_table_t *t = NULL;
    ba_status st = ba_sens_compute(m, ds, y, n, meth, NULL, &t, &err);
    cr_expect_eq(st, BA_ERR_INPUT, "status %d: %s", st, st ? err.msg : "");
    cr_expect(t == NULL);
    if (st != BA_OK) cr_expect(strstr(err.msg, needle), "'%s' not in: %s", needle, err.msg);
    ba_sens_table_free(t);
}

Test(sensitivity, bad_inputs_give_clear_errors) {
    ba_model_t *m = load_model(DIG "mlp_dyn.onnx");
    ba_dataset_t *ds = load_data(DIG "calib_x_flat.npy");
    ba_error err;
    int64_t *y, n;
    cr_assert_eq(ba_labels_load(REFS "labels_short.npy", &y, &n, &err), BA_OK);
    expect_compute_error(m, ds, y, n, BA_SENS_FISHER, "100 labels for 512");
    free(y);
    cr_assert_eq(ba_labels_load(REFS "labels_range.npy", &y, &n, &err), BA_OK);
    expect_compute_error(m, ds, y, n, BA_SENS_HESSIAN, "sample 7");
    free(y);
    expect_compute_error(m, NULL, NULL, 0, BA_SENS_ACT, "--data");
    ba_dataset_t *bad = NULL;
    const char *nan_spec[] = {REFS "nan_x.npy"};
    cr_expect_eq(ba_dataset_load(nan_spec, 1, &bad, &err), BA_ERR_INPUT, "NaN data is refused at load");
    cr_expect(strstr(err.msg, "nan_x.npy") && strstr(err.msg, "NaN"), "%s", err.msg);
    cr_expect(bad == NULL);
    ba_model_t *nl = load_model(REFS "no_layer.onnx");
    expect_compute_error(nl, NULL, NULL, 0, BA_SENS_WEIGHT, "no quantizable layer");
    ba_model_free(nl);
    ba_model_t *nw = load_model(REFS "nan_weight.onnx");
    expect_compute_error(nw, NULL, NULL, 0, BA_SENS_WEIGHT, "layer w");
    ba_model_free(nw);
    ba_dataset_free(ds);
    ba_model_free(m);
}

/* ---- cache ---- */

Test(sensitivity, cache_key_depends_on_settings_and_round_trips_through_db) {
    ba_model_t *m = load_model(DIG "cnn_dyn.onnx");
    ba_dataset_t *ds = load_data(DIG "calib_x.npy");
    ba_sens_opts_t o = ba_sens_opts_default();
    char k1[65], k2[65], k3[65], k4[65];
    ba_sens_cache_key(m, ds, NULL, 0, BA_SENS_ACT, &o, k1);
    ba_sens_cache_key(m, ds, NULL, 0, BA_SENS_ACT, &o, k2);
    cr_expect_str_eq(k1, k2);
    ba_sens_cache_key(m, ds, NULL, 0, BA_SENS_MEASURED, &o, k3);
    cr_expect_str_neq(k1, k3);
    o.quant.clip = BA_CLIP_MSE;
    ba_sens_cache_key(m, ds, NULL, 0, BA_SENS_ACT, &o, k4);
    cr_expect_str_neq(k1, k4);
    char dir[512], p[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(p, sizeof p, "%s/c.db", dir);
    ba_error err;
    ba_db_t *db;
    cr_assert_eq(ba_db_open(p, 1, &db, &err), BA_OK, "%s", err.msg);
    ba_sens_table_t *t = weight_table(m), *r = NULL;
    cr_assert_eq(ba_study_sens_cache_get(db, k1, m, NULL, &r, &err), BA_OK);
    cr_expect(r == NULL);
    cr_assert_eq(ba_study_sens_cache_put(db, k1, m, t, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_study_sens_cache_get(db, k1, m, NULL, &r, &err), BA_OK, "%s", err.msg);
    cr_assert(r);
    for (int l = 0; l < t->nlayers; l++) cr_expect_eq(r->layers[l].cost[4], t->layers[l].cost[4]);
    ba_sens_table_free(r);
    ba_sens_table_free(t);
    ba_db_close(db);
    ba_test_rmtree(dir);
    ba_dataset_free(ds);
    ba_model_free(m);
}

/* ---- CLI ---- */

Test(sensitivity, cli_prints_csv_json_and_uses_the_db_cache) {
    char dir[512], db[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    const char *a1[] = {BA_CLI,   "sensitivity", DIG "cnn_dyn.onnx", "--method", "weight",
                        "--bits", "2,4",         "--format",         "csv",      NULL};
    char *out = NULL, *errs = NULL;
    int rc;
    cr_assert_eq(ba_test_run(a1, &out, &errs, &rc), 0);
    cr_expect_eq(rc, 0, "%s", errs);
    cr_expect(strncmp(out, "layer,bits,cost\nonnx::Conv_31,2,", 32) == 0, "%s", out);
    cr_expect_eq(ba_test_count_lines(out), 9);
    free(out);
    free(errs);
    const char *a2[] = {BA_CLI,
                        "sensitivity",
                        DIG "cnn_dyn.onnx",
                        "--data",
                        DIG "calib_x.npy",
                        "--method",
                        "act",
                        "--format",
                        "json",
                        "--db",
                        db,
                        "-v",
                        NULL};
    char *o1 = NULL, *o2 = NULL;
    cr_assert_eq(ba_test_run(a2, &o1, &errs, &rc), 0);
    cr_expect_eq(rc, 0, "%s", errs);
    cr_expect(!strstr(errs, "cached"), "%s", errs);
    free(errs);
    cr_assert_eq(ba_test_run(a2, &o2, &errs, &rc), 0);
    cr_expect_eq(rc, 0, "%s", errs);
    cr_expect(strstr(errs, "cached"), "second run should hit the cache: %s", errs);
    cr_expect_str_eq(o1, o2);
    cr_expect(strstr(o1, "\"method\": \"act\""));
    free(o1);
    free(o2);
    free(errs);
    const char *a3[] = {BA_CLI, "sensitivity", REFS "no_layer.onnx", "--method", "weight", NULL};
    cr_assert_eq(ba_test_run(a3, NULL, &errs, &rc), 0);
    cr_expect_eq(rc, 2);
    cr_expect(strstr(errs, "bitalloc: error: ") && strstr(errs, "no quantizable layer"), "%s", errs);
    free(errs);
    ba_test_rmtree(dir);
}

Test(sensitivity, lrp_scores_match_gradient_times_input_reference) {
    json_t *r = refs();
    const char *cases[][3] = {{DIG "cnn_dyn.onnx", DIG "calib_x.npy", "cnn"},
                              {DIG "mlp_dyn.onnx", DIG "calib_x_flat.npy", "mlp"}};
    for (int i = 0; i < 2; i++) {
        ba_model_t *m = load_model(cases[i][0]);
        ba_dataset_t *ds = load_data(cases[i][1]);
        ba_sens_table_t *t = compute(m, ds, NULL, 0, BA_SENS_LRP, NULL);
        const json_t *ref = json_object_get(json_object_get(r, "lrp"), cases[i][2]);
        double sum = 0;
        for (int l = 0; l < t->nlayers; l++) {
            double want = json_real_value(json_object_get(ref, t->layers[l].name));
            cr_expect(fabs(t->layers[l].score - want) <= 1e-4 * want, "%s: %.8g vs %.8g", t->layers[l].name,
                      t->layers[l].score, want);
            sum += t->layers[l].score;
            double e;
            ba_error err;
            cr_assert_eq(ba_sens_weight_error(m, l, 3, NULL, &e, &err), BA_OK);
            const ba_tensor_t *w = m->values[m->layers[l].value].constant;
            double wn = 0;
            for (int64_t j = 0; j < w->numel; j++)
                wn += ((const float *)w->data)[j] * (double)((const float *)w->data)[j];
            cr_expect_float_eq(t->layers[l].cost[1], t->layers[l].score * e / wn, 1e-12);
        }
        cr_expect_float_eq(sum, 1.0, 1e-12);
        ba_sens_table_free(t);
        ba_dataset_free(ds);
        ba_model_free(m);
    }
    json_decref(r);
}

/* Σ route (grouped/depthwise Conv, MatMul rows of a transformer) against the
 * direct route (each node's own kernel on ΔW) on real architectures. */
Test(sensitivity, act_sigma_and_direct_routes_agree_on_zoo_models, .timeout = 120) {
    const char *models[] = {"mobilenetv2", "vit"};
    for (int i = 0; i < 2; i++) {
        char mp[512], xp[512];
        snprintf(mp, sizeof mp, BA_FIXTURES "/zoo/%s_dyn.onnx", models[i]);
        snprintf(xp, sizeof xp, BA_FIXTURES "/zoo/%s_x.npy", models[i]);
        ba_model_t *m = load_model(mp);
        ba_dataset_t *ds = load_data(xp);
        ba_sens_opts_t o = ba_sens_opts_default();
        int bits[] = {3};
        o.bits = bits;
        o.nbits = 1;
        ba_sens_table_t *a = compute(m, ds, NULL, 0, BA_SENS_ACT, &o);
        o.act_direct = 1;
        ba_sens_table_t *d = compute(m, ds, NULL, 0, BA_SENS_ACT, &o);
        for (int l = 0; l < a->nlayers; l++)
            cr_expect(fabs(a->layers[l].cost[0] - d->layers[l].cost[0]) <=
                          1e-3 * d->layers[l].cost[0] + 1e-12,
                      "%s %s: %.8g vs %.8g", models[i], a->layers[l].name, a->layers[l].cost[0],
                      d->layers[l].cost[0]);
        ba_sens_table_free(a);
        ba_sens_table_free(d);
        ba_dataset_free(ds);
        ba_model_free(m);
    }
}

/* A segmenter with ConvTranspose, InstanceNormalization and bilinear/bicubic
 * Resize (tests/fixtures/grad_refs/decoder.onnx): the gradient estimators and
 * the default search run on it (they stopped at "no backward for
 * ConvTranspose" before those ops had backward rules). */
Test(sensitivity, cli_gradient_methods_and_search_run_on_a_decoder, .timeout = 300) {
    char dir[512], db[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/d.db", dir);
#define DEC BA_FIXTURES "/grad_refs/decoder"
    static const char *const methods[] = {"hessian", "lrp", "fisher"};
    for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++) {
        const char *a[] = {BA_CLI,      "--db",   db,           "-q",       "sensitivity",
                           DEC ".onnx", "--data", DEC "_x.npy", "--method", methods[k],
                           "--samples", "8",      "--format",   "json",     NULL};
        char *out = NULL, *errs = NULL;
        int rc;
        cr_assert_eq(ba_test_run(a, &out, &errs, &rc), 0);
        cr_expect_eq(rc, 0, "%s: %s", methods[k], errs);
        json_error_t je;
        json_t *j = json_loads(out ? out : "", 0, &je);
        cr_assert(j, "%s: not JSON: %s %s", methods[k], out, errs);
        const json_t *layers = json_object_get(j, "layers");
        int nct = 0;
        for (size_t l = 0; l < json_array_size(layers); l++) {
            const json_t *L = json_array_get(layers, l);
            const char *name = json_string_value(json_object_get(L, "name"));
            double score = json_real_value(json_object_get(L, "score"));
            cr_expect(isfinite(score) && score >= 0, "%s: %s score %g", methods[k], name, score);
            nct += !strncmp(name, "up", 2); /* up1.weight, upg.weight: the ConvTransposes */
        }
        cr_expect_eq(json_array_size(layers), 8, "%s: %zu layers", methods[k], json_array_size(layers));
        cr_expect_eq(nct, 2, "%s: ConvTranspose layers %d", methods[k], nct);
        json_decref(j);
        free(out);
        free(errs);
    }
    const char *s[] = {BA_CLI,      "--db",       db,           "-q",       "search",
                       DEC ".onnx", "--data",     DEC "_x.npy", "--method", "ilp+evo",
                       "--budget",  "avg-bits=4", "--samples",  "8",        "--generations",
                       "2",         "--format",   "json",       NULL};
    char *out = NULL, *errs = NULL;
    int rc;
    cr_assert_eq(ba_test_run(s, &out, &errs, &rc), 0);
    cr_expect_eq(rc, 0, "%s", errs);
    json_error_t je;
    json_t *j = json_loads(out ? out : "", 0, &je);
    cr_assert(j, "not JSON: %s %s", out, errs);
    const json_t *layers = json_object_get(json_object_get(j, "plan"), "layers");
    double bits = 0, params = 0;
    int nct = 0;
    for (size_t l = 0; l < json_array_size(layers); l++) {
        const json_t *L = json_array_get(layers, l);
        double p = (double)json_integer_value(json_object_get(L, "params"));
        bits += p * (double)json_integer_value(json_object_get(L, "w_bits"));
        params += p;
        nct += !strcmp(json_string_value(json_object_get(L, "op")), "ConvTranspose");
    }
    cr_expect_eq(nct, 2);
    cr_expect(params > 0 && bits / params <= 4.0 + 1e-9, "avg bits %g", params > 0 ? bits / params : 0.0);
#undef DEC
    json_decref(j);
    free(out);
    free(errs);
    ba_test_rmtree(dir);
}

/* SPEC §5's default hessian on the digits MLP: the generalised Gauss-Newton
 * part is exact and the residual H − G has no term on any layer's own block
 * (ReLU, linear layers: only zero-mean cross terms), so every layer equals its
 * exact trace (make_hessian_refs.py, closed form, which agrees with
 * make_sens_refs.py's unit-vector autograd traces) to float precision, for any
 * seed, with no probe and a standard error of 0; and `--probe per-layer`
 * (plain Hutchinson, stopped at a 5% standard error) estimates the same traces
 * within 20%. */
Test(sensitivity, hessian_default_traces_equal_exact_traces_for_ten_seeds, .timeout = 300) {
    json_error_t je;
    json_t *ex = json_load_file(REFS "hessian_exact.json", 0, &je);
    cr_assert(ex, "hessian_exact.json: %s", je.text);
    json_t *r = refs();
    const json_t *exm = json_object_get(ex, "mlp");
    const char *key;
    json_t *val;
    json_object_foreach(json_object_get(r, "hessian_trace"), key, val) {
        double autograd = json_real_value(val), closed = json_real_value(json_object_get(exm, key));
        cr_assert(fabs(closed - autograd) <= 1e-9 * autograd,
                  "%s: the two references disagree: %.12g vs %.12g", key, closed, autograd);
    }
    cr_assert_eq(json_object_size(json_object_get(r, "hessian_trace")), 3);
    ba_model_t *m = load_model(DIG "mlp_dyn.onnx");
    ba_dataset_t *ds = load_data(DIG "calib_x_flat.npy");
    int64_t n;
    int64_t *y = labels(&n);
    double worst = 0;
    for (int per_layer = 0; per_layer < 2; per_layer++)
        for (uint64_t seed = 0; seed < (per_layer ? 1u : 10u); seed++) {
            ba_sens_opts_t o = ba_sens_opts_default();
            o.seed = seed;
            o.per_layer_probes = per_layer;
            ba_sens_table_t *t = compute(m, ds, y, n, BA_SENS_HESSIAN, &o);
            for (int l = 0; l < t->nlayers; l++) {
                const ba_sens_layer_t *L = &t->layers[l];
                double want = json_real_value(json_object_get(exm, L->name));
                double rel = fabs(L->score - want) / want;
                if (!per_layer && rel > worst) worst = rel;
                cr_expect(want > 0 && rel <= (per_layer ? 0.20 : 1e-6),
                          "seed %llu%s %s: %.9g, exact %.9g (%.2g%% off, %lld probes)",
                          (unsigned long long)seed, per_layer ? " per-layer" : "", L->name, L->score, want,
                          100 * rel, (long long)L->probes);
                if (!per_layer) {
                    cr_expect(L->probes == 0 && L->se == 0, "%s: %lld probes, standard error %g", L->name,
                              (long long)L->probes, L->se);
                    continue;
                }
                /* the stop: every layer at <= tol relative standard error, or the cap */
                cr_expect(L->probes >= 8 && L->probes <= BA_SENS_DEFAULT_PROBES);
                cr_expect(L->probes == BA_SENS_DEFAULT_PROBES ||
                              L->se <= o.tol * fabs(L->score) * (1 + 1e-12),
                          "%s: stopped at %lld probes with %.3g relative standard error", L->name,
                          (long long)L->probes, L->se / L->score);
            }
            ba_sens_table_free(t);
        }
    cr_log_info("hessian default: worst layer %.2g relative off the exact trace over 10 seeds", worst);
    free(y);
    ba_dataset_free(ds);
    ba_model_free(m);
    json_decref(r);
    json_decref(ex);
}

/* ---- the Gauss-Newton split against exact traces (paddle_op9: HardSwish,
 * an inner Softmax, a Softmax output, 872 weights, 16 samples) ---- */

/* Exact Tr(H_ll) of every layer of m on x under spec: Σ_i e_iᵀ H e_i by unit-vector HVPs. */
static void exact_traces(const ba_model_t *m, ba_tensor_t *x, const ba_loss_spec_t *spec, double *tr) {
    ba_error err;
    ba_grad_session_t *s = NULL;
    ba_tensor_t *in[1] = {x};
    cr_assert_eq(ba_grad_session_new(m, in, NULL, spec, &s, &err), BA_OK, "%s", err.msg);
    for (int l = 0; l < m->nlayers; l++) {
        const int64_t P = m->layers[l].params;
        float *v = calloc((size_t)P, sizeof *v), *hv = malloc((size_t)P * sizeof *hv);
        tr[l] = 0;
        for (int64_t i = 0; i < P; i++) {
            v[i] = 1;
            cr_assert_eq(ba_grad_session_hvp(s, m->layers[l].value, v, hv, &err), BA_OK, "%s", err.msg);
            tr[l] += hv[i];
            v[i] = 0;
        }
        free(v);
        free(hv);
    }
    ba_grad_session_free(s);
}

/* paddle_op9 with its inputs (*x) and its FP outputs (out[0]), the reference of MSE and KL. */
static ba_model_t *paddle_with_output(ba_tensor_t **x, ba_tensor_t **out) {
    ba_model_t *m = load_model(PAD "paddle_op9.onnx");
    ba_error err;
    cr_assert_eq(ba_npy_load(PAD "x.npy", x, &err), BA_OK, "%s", err.msg);
    ba_tensor_t *in[1] = {*x};
    cr_assert_eq(ba_model_run(m, in, NULL, out, &err), BA_OK, "%s", err.msg);
    return m;
}

/* For MSE and KL to the FP output the loss's gradient in z is 0 at the base
 * weights, so H = G: ba_grad_ggn_trace (per-sample backwards, no probe) equals
 * the exact trace of every layer, and the sensitivity with --loss mse reports it
 * with no probe and a standard error of 0. */
Test(sensitivity, gauss_newton_trace_equals_exact_hessian_trace_for_mse_and_kl, .timeout = 400) {
    ba_error err;
    ba_tensor_t *x = NULL, *out[2] = {NULL, NULL};
    ba_model_t *m = paddle_with_output(&x, out);
    ba_tensor_t *in[1] = {x};
    const int L = m->nlayers;
    int req[8];
    double tr[8], ggn[8], mse_exact[8] = {0};
    for (int l = 0; l < L; l++) req[l] = m->layers[l].value;
    const ba_loss_kind kinds[] = {BA_LOSS_MSE, BA_LOSS_KL};
    for (int k = 0; k < 2; k++) {
        ba_loss_spec_t spec = {.kind = kinds[k], .output = 0, .ref = out[0]};
        exact_traces(m, x, &spec, tr);
        int exact = 0;
        cr_assert_eq(ba_grad_ggn_trace(m, in, NULL, &spec, L, req, 64, ggn, &exact, &err), BA_OK, "%s",
                     err.msg);
        cr_expect(exact, "the Gauss-Newton trace is exact");
        for (int l = 0; l < L; l++) {
            cr_log_info("%s %s: Gauss-Newton %.9g, exact %.9g", k ? "kl" : "mse", m->layers[l].name, ggn[l],
                        tr[l]);
            cr_expect(fabs(ggn[l] - tr[l]) <= 1e-4 * fabs(tr[l]) + 1e-12,
                      "%s %s: Gauss-Newton %.9g, exact %.9g", k ? "kl" : "mse", m->layers[l].name, ggn[l],
                      tr[l]);
            if (!k) mse_exact[l] = tr[l];
        }
    }
    ba_dataset_t *ds = load_data(PAD "x.npy");
    ba_sens_opts_t o = ba_sens_opts_default();
    o.loss = BA_SENS_LOSS_MSE;
    ba_sens_table_t *t = compute(m, ds, NULL, 0, BA_SENS_HESSIAN, &o);
    for (int l = 0; l < L; l++) {
        const ba_sens_layer_t *Lr = &t->layers[l];
        double want = mse_exact[l] / (double)Lr->params;
        cr_expect(Lr->probes == 0 && Lr->se == 0, "%s: %lld probes, se %g", Lr->name, (long long)Lr->probes,
                  Lr->se);
        cr_expect(fabs(Lr->score - want) <= 1e-4 * fabs(want), "%s: %.9g, exact %.9g", Lr->name, Lr->score,
                  want);
    }
    ba_sens_table_free(t);
    ba_dataset_free(ds);
    ba_tensor_unref(out[0]);
    ba_tensor_unref(x);
    ba_model_free(m);
}

/* The sampled Gauss-Newton trace (past the exact part's cost cap): the mean of
 * ‖(Jᵀu)_l‖² over Rademacher combinations u of the loss Hessian's factors is
 * the exact Gauss-Newton trace (MSE: with or without the output Softmax counted
 * with the loss, the same matrix), within 4 standard errors. */
Test(sensitivity, sampled_gauss_newton_trace_is_unbiased, .timeout = 400) {
    ba_error err;
    ba_tensor_t *x = NULL, *out[2] = {NULL, NULL};
    ba_model_t *m = paddle_with_output(&x, out);
    ba_tensor_t *in[1] = {x};
    const int L = m->nlayers, N = 400;
    int req[8], exact = 0;
    double ggn[8], sq[8], sum[8] = {0}, sum2[8] = {0};
    for (int l = 0; l < L; l++) req[l] = m->layers[l].value;
    ba_loss_spec_t spec = {.kind = BA_LOSS_MSE, .output = 0, .ref = out[0]};
    cr_assert_eq(ba_grad_ggn_trace(m, in, NULL, &spec, L, req, 64, ggn, &exact, &err), BA_OK, "%s", err.msg);
    cr_assert(exact);
    /* past the cost cap: nothing computed, tr_out left alone */
    double keep[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
    cr_assert_eq(ba_grad_ggn_trace(m, in, NULL, &spec, L, req, 0, keep, &exact, &err), BA_OK, "%s", err.msg);
    cr_expect(!exact && keep[0] == -1, "a cap of 0 backwards leaves the exact part out");
    ba_grad_session_t *s = NULL;
    cr_assert_eq(ba_grad_session_new(m, in, NULL, &spec, &s, &err), BA_OK, "%s", err.msg);
    ba_rng_t rng;
    ba_rng_seed(&rng, 11);
    for (int p = 0; p < N; p++) {
        cr_assert_eq(ba_grad_session_ggn_sample(s, &rng, L, req, sq, &err), BA_OK, "%s", err.msg);
        for (int l = 0; l < L; l++) {
            sum[l] += sq[l];
            sum2[l] += sq[l] * sq[l];
        }
    }
    for (int l = 0; l < L; l++) {
        double mean = sum[l] / N, se = sqrt((sum2[l] - sum[l] * mean) / (N - 1) / N);
        cr_log_info("sampled %s: %.6g ± %.2g, exact %.6g", m->layers[l].name, mean, se, ggn[l]);
        cr_expect(se > 0 && fabs(mean - ggn[l]) <= 4 * se, "%s: %.6g ± %.2g, exact %.6g", m->layers[l].name,
                  mean, se, ggn[l]);
    }
    ba_grad_session_free(s);
    ba_tensor_unref(out[0]);
    ba_tensor_unref(x);
    ba_model_free(m);
}

/* CE on the FP argmax (the default for class scores): the Gauss-Newton part,
 * with the output Softmax's own second-order terms in it, is exact; the
 * residual of HardSwish and the inner Softmax is probed. fc (after them) has
 * no residual: exact, standard error 0. The conv layers: within 4 of their
 * reported standard errors of the exact trace, which are > 0. The table does
 * not depend on the batch size (batches of 4 vs one batch of 16). */
Test(sensitivity, hessian_ce_split_matches_exact_traces_and_reports_its_stderr, .timeout = 180) {
    ba_model_t *m = load_model(PAD "paddle_op9.onnx");
    ba_error err;
    ba_tensor_t *x = NULL;
    cr_assert_eq(ba_npy_load(PAD "x.npy", &x, &err), BA_OK, "%s", err.msg);
    double tr[8];
    ba_loss_spec_t spec = {.kind = BA_LOSS_CE_ARGMAX, .output = 0};
    exact_traces(m, x, &spec, tr);
    ba_dataset_t *ds = load_data(PAD "x.npy");
    ba_sens_opts_t o = ba_sens_opts_default();
    o.tol = 0;
    o.max_probes = 400;
    ba_sens_table_t *t = compute(m, ds, NULL, 0, BA_SENS_HESSIAN, &o);
    o.batch = 4;
    ba_sens_table_t *b4 = compute(m, ds, NULL, 0, BA_SENS_HESSIAN, &o);
    cr_assert_eq(t->nlayers, 3);
    for (int l = 0; l < t->nlayers; l++) {
        const ba_sens_layer_t *Lr = &t->layers[l];
        double want = tr[l] / (double)Lr->params;
        cr_log_info("ce %s: %.6g ± %.2g (%lld probes), exact %.6g", Lr->name, Lr->score, Lr->se,
                    (long long)Lr->probes, want);
        cr_expect_eq(Lr->probes, 400);
        if (!strcmp(Lr->name, "fc.weight"))
            cr_expect(Lr->se == 0 && fabs(Lr->score - want) <= 1e-5 * fabs(want), "fc: %.9g ± %g, exact %.9g",
                      Lr->score, Lr->se, want);
        else
            cr_expect(Lr->se > 0 && fabs(Lr->score - want) <= 4 * Lr->se, "%s: %.6g ± %.2g, exact %.6g",
                      Lr->name, Lr->score, Lr->se, want);
        const ba_sens_layer_t *B = &b4->layers[l];
        cr_expect(fabs(B->score - Lr->score) <= 1e-5 * fabs(Lr->score) &&
                      fabs(B->se - Lr->se) <= 1e-4 * Lr->se + 1e-15,
                  "%s: batch 4 %.9g ± %g, one batch %.9g ± %g", Lr->name, B->score, B->se, Lr->score, Lr->se);
    }
    ba_sens_table_free(t);
    ba_sens_table_free(b4);
    ba_dataset_free(ds);
    ba_tensor_unref(x);
    ba_model_free(m);
}

/* The stopping rule: a looser --tol stops earlier (never before 8 probes),
 * --tol 0 runs to --samples. */
Test(sensitivity, hessian_stops_on_relative_standard_error) {
    /* HardSwish, an inner Softmax: a residual H − G that needs probes */
    ba_model_t *m = load_model(PAD "paddle_op9.onnx");
    ba_dataset_t *ds = load_data(PAD "x.npy");
    ba_sens_opts_t o = ba_sens_opts_default();
    o.tol = 10; /* this residual's relative standard error is ~1-4 at 8 probes */
    ba_sens_table_t *loose = compute(m, ds, NULL, 0, BA_SENS_HESSIAN, &o);
    o.tol = 0;
    o.max_probes = 20;
    ba_sens_table_t *all = compute(m, ds, NULL, 0, BA_SENS_HESSIAN, &o);
    for (int l = 0; l < loose->nlayers; l++) {
        cr_expect_eq(loose->layers[l].probes, 8, "%s: %lld probes at --tol 10", loose->layers[l].name,
                     (long long)loose->layers[l].probes);
        cr_expect_eq(all->layers[l].probes, 20);
    }
    ba_sens_table_free(loose);
    ba_sens_table_free(all);
    ba_dataset_free(ds);
    ba_model_free(m);
}

/* `--probe per-layer` reaches the per-layer estimator (a different table from
 * the default, which is exact on this MLP and runs no probe), and a bad
 * value is a usage error naming the flag. */
Test(sensitivity, cli_probe_flag_selects_the_probe_mode) {
    ba_test_run_t a = ba_test_cli("sensitivity", DIG "mlp_dyn.onnx", "--data", DIG "calib_x_flat.npy",
                                  "--tol", "0", "--samples", "8", "--format", "json", NULL);
    ba_test_run_t p =
        ba_test_cli("sensitivity", DIG "mlp_dyn.onnx", "--data", DIG "calib_x_flat.npy", "--tol", "0",
                    "--samples", "8", "--probe", "per-layer", "--format", "json", NULL);
    cr_assert_eq(a.status, 0, "%s", a.err);
    cr_assert_eq(p.status, 0, "%s", p.err);
    json_error_t je;
    json_t *ja = json_loads(a.out, 0, &je), *jp = json_loads(p.out, 0, &je);
    cr_assert(ja && jp);
    const json_t *la = json_object_get(ja, "layers"), *lp = json_object_get(jp, "layers");
    int differ = 0;
    for (size_t i = 0; i < json_array_size(la); i++) {
        const json_t *x = json_array_get(la, i), *y = json_array_get(lp, i);
        /* the default is exact on this ReLU MLP (no probe, no "probes" key) */
        cr_expect_null(json_object_get(x, "probes"));
        cr_expect_eq(json_real_value(json_object_get(x, "stderr")), 0.0);
        cr_expect_eq(json_integer_value(json_object_get(y, "probes")), 8);
        cr_expect_null(json_object_get(x, "top_eigenvalue"));
        differ |=
            json_real_value(json_object_get(x, "score")) != json_real_value(json_object_get(y, "score"));
    }
    cr_expect(differ, "per-layer and all-layer probes gave the same table");
    json_decref(ja);
    json_decref(jp);
    ba_test_run_free(&a);
    ba_test_run_free(&p);
    ba_test_run_t b = ba_test_cli("sensitivity", DIG "mlp_dyn.onnx", "--data", DIG "calib_x_flat.npy",
                                  "--probe", "some", NULL);
    cr_expect_eq(b.status, 2);
    cr_expect(strstr(b.err, "--probe"), "%s", b.err);
    ba_test_run_free(&b);
}

/* A model whose output is a Softmax over the last axis: cross-entropy and KL
 * read that Softmax's input (its logits), so the loss is the model's own
 * −log p_y and every gradient estimator gives what it gives on the same model
 * without the final Softmax (paddle_op9_logits.onnx: same graph and weights,
 * the logits as output; make_paddle_nosoftmax.py). The loss itself equals
 * −mean log p_y of the probabilities the model outputs. */
static double rel_diff(double a, double b) {
    return fabs(a - b) / fmax(fmax(fabs(a), fabs(b)), 1e-30);
}

Test(sensitivity, softmax_output_loss_reads_its_logits, .timeout = 180) {
    ba_model_t *ms = load_model(PAD "paddle_op9.onnx"), *ml = load_model(PAD "paddle_op9_logits.onnx");
    ba_error err;
    ba_tensor_t *x = NULL, *ps[2] = {NULL, NULL}, *zs[2] = {NULL, NULL};
    cr_assert_eq(ba_npy_load(PAD "x.npy", &x, &err), BA_OK, "%s", err.msg);
    ba_tensor_t *in[1] = {x};
    cr_assert_eq(ba_model_run(ms, in, NULL, ps, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_model_run(ml, in, NULL, zs, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ms->nlayers, 3);
    cr_assert_eq(ml->nlayers, 3);
    const int L = 3;
    const int64_t N = 16, C = 10;
    int64_t labels[16];
    for (int64_t i = 0; i < N; i++) labels[i] = (i * 7) % C;
    int rs[3], rl[3];
    for (int l = 0; l < L; l++) {
        rs[l] = ms->layers[l].value;
        rl[l] = ml->layers[l].value;
    }
    /* the value the loss reads: the Softmax's input for CE/KL, the output for MSE */
    ba_grad_session_t *s = NULL;
    ba_loss_spec_t argmax = {.kind = BA_LOSS_CE_ARGMAX, .output = 0};
    cr_assert_eq(ba_grad_session_new(ms, in, NULL, &argmax, &s, &err), BA_OK, "%s", err.msg);
    const float *p = ps[0]->data;
    double want = 0.0;
    for (int64_t r = 0; r < N; r++) {
        int64_t b = 0;
        for (int64_t c = 1; c < C; c++)
            if (p[r * C + c] > p[r * C + b]) b = c;
        want -= log((double)p[r * C + b]) / (double)N;
    }
    cr_expect(rel_diff(ba_grad_session_loss(s), want) <= 1e-5, "loss %.9g, −mean log p_y %.9g",
              ba_grad_session_loss(s), want);
    ba_grad_session_free(s);
    int on = 0;
    ba_tensor_t **vals = calloc((size_t)ms->nvalues, sizeof *vals);
    ba_run_opts_t ro = {.keep = vals};
    ba_tensor_t *o2[2] = {NULL, NULL};
    cr_assert_eq(ba_model_run(ms, in, &ro, o2, &err), BA_OK, "%s", err.msg);
    int v = ba_grad_loss_value(ms, BA_LOSS_CE, 0, vals, &on);
    cr_expect(on && v == ms->nodes[ms->values[ms->outputs[0]].producer].inputs[0], "CE reads the logits");
    v = ba_grad_loss_value(ms, BA_LOSS_MSE, 0, vals, &on);
    cr_expect(!on && v == ms->outputs[0], "MSE reads the output");
    for (int i = 0; i < ms->nvalues; i++) ba_tensor_unref(vals[i]);
    free(vals);
    ba_tensor_unref(o2[0]);

    const ba_loss_kind kinds[] = {BA_LOSS_CE_ARGMAX, BA_LOSS_CE, BA_LOSS_KL};
    const char *names[] = {"ce-argmax", "ce", "kl"};
    for (int k = 0; k < 3; k++) {
        ba_loss_spec_t a = {.kind = kinds[k], .output = 0}, b = a;
        if (kinds[k] == BA_LOSS_CE) {
            a.labels = b.labels = labels;
            a.nlabels = b.nlabels = N;
        }
        ba_tensor_t *refa = NULL, *refb = NULL;
        if (kinds[k] == BA_LOSS_KL) { /* each model's FP output, rows rotated by one: dL/dz ≠ 0 */
            refa = ba_tensor_new(BA_DT_F32, 2, ps[0]->shape, &err);
            refb = ba_tensor_new(BA_DT_F32, 2, zs[0]->shape, &err);
            cr_assert(refa && refb);
            for (int64_t r = 0; r < N; r++) {
                memcpy((float *)refa->data + r * C, (const float *)ps[0]->data + ((r + 1) % N) * C,
                       C * sizeof(float));
                memcpy((float *)refb->data + r * C, (const float *)zs[0]->data + ((r + 1) % N) * C,
                       C * sizeof(float));
            }
            a.ref = refa;
            b.ref = refb;
        }
        /* exact traces (unit-vector HVPs; one loss, they are slow) */
        double ta[3] = {0}, tb[3] = {0};
        if (k == 0) {
            exact_traces(ms, x, &a, ta);
            exact_traces(ml, x, &b, tb);
        }
        /* Gauss-Newton trace, empirical Fisher diagonal, one residual probe */
        double ga[3], gb[3];
        int ea = 0, eb = 0;
        cr_assert_eq(ba_grad_ggn_trace(ms, in, NULL, &a, L, rs, 64, ga, &ea, &err), BA_OK, "%s", err.msg);
        cr_assert_eq(ba_grad_ggn_trace(ml, in, NULL, &b, L, rl, 64, gb, &eb, &err), BA_OK, "%s", err.msg);
        cr_assert(ea && eb);
        float *fa[3], *fb[3], *va[3];
        ba_grad_opts_t go = {.per_sample_sq = 1};
        for (int l = 0; l < L; l++) {
            fa[l] = malloc((size_t)ms->layers[l].params * sizeof(float));
            fb[l] = malloc((size_t)ms->layers[l].params * sizeof(float));
            va[l] = malloc((size_t)ms->layers[l].params * sizeof(float));
            for (int64_t i = 0; i < ms->layers[l].params; i++)
                va[l][i] = (i * 2654435761u >> 7) & 1 ? 1.0f : -1.0f;
        }
        cr_assert_eq(ba_grad_compute(ms, in, &go, &a, L, rs, fa, NULL, &err), BA_OK, "%s", err.msg);
        cr_assert_eq(ba_grad_compute(ml, in, &go, &b, L, rl, fb, NULL, &err), BA_OK, "%s", err.msg);
        ba_grad_session_t *sa = NULL, *sb = NULL;
        double xa[3], xb[3];
        int na = 0, nb = 0;
        cr_assert_eq(ba_grad_session_new(ms, in, NULL, &a, &sa, &err), BA_OK, "%s", err.msg);
        cr_assert_eq(ba_grad_session_new(ml, in, NULL, &b, &sb, &err), BA_OK, "%s", err.msg);
        cr_expect(rel_diff(ba_grad_session_loss(sa), ba_grad_session_loss(sb)) <= 1e-5,
                  "%s: loss %.9g vs %.9g", names[k], ba_grad_session_loss(sa), ba_grad_session_loss(sb));
        cr_assert_eq(ba_grad_session_resid_multi(sa, L, rs, (const float *const *)va, xa, &na, &err), BA_OK,
                     "%s", err.msg);
        cr_assert_eq(ba_grad_session_resid_multi(sb, L, rl, (const float *const *)va, xb, &nb, &err), BA_OK,
                     "%s", err.msg);
        cr_expect_eq(na, nb, "%s: the residual's terms are the same", names[k]);
        ba_grad_session_free(sa);
        ba_grad_session_free(sb);
        for (int l = 0; l < L; l++) {
            double fsa = 0, fsb = 0, fd = 0;
            for (int64_t i = 0; i < ms->layers[l].params; i++) {
                fsa += fa[l][i];
                fsb += fb[l][i];
                fd = fmax(fd, fabs((double)fa[l][i] - fb[l][i]));
            }
            cr_log_info("%s %s: trace %.9g / %.9g, GGN %.9g / %.9g, Fisher %.9g / %.9g, resid %.6g / %.6g",
                        names[k], ms->layers[l].name, ta[l], tb[l], ga[l], gb[l], fsa, fsb, xa[l], xb[l]);
            cr_expect(rel_diff(ta[l], tb[l]) <= 1e-4, "%s %s: trace %.9g, logits model %.9g", names[k],
                      ms->layers[l].name, ta[l], tb[l]);
            cr_expect(rel_diff(ga[l], gb[l]) <= 1e-4, "%s %s: Gauss-Newton %.9g, logits model %.9g", names[k],
                      ms->layers[l].name, ga[l], gb[l]);
            cr_expect(rel_diff(fsa, fsb) <= 1e-4 && fd <= 1e-4 * fmax(fsa, 1e-30),
                      "%s %s: Fisher %.9g, logits model %.9g", names[k], ms->layers[l].name, fsa, fsb);
            cr_expect(fabs(xa[l] - xb[l]) <= 1e-4 * fmax(fabs(xb[l]), fabs(ga[l])),
                      "%s %s: residual %.9g vs %.9g", names[k], ms->layers[l].name, xa[l], xb[l]);
            free(fa[l]);
            free(fb[l]);
            free(va[l]);
        }
        ba_tensor_unref(refa);
        ba_tensor_unref(refb);
    }
    /* the estimators end to end: the same tables on both models */
    ba_dataset_t *ds = load_data(PAD "x.npy");
    ba_sens_opts_t o = ba_sens_opts_default();
    o.tol = 0;
    o.max_probes = 12;
    const ba_sens_method_t meths[] = {BA_SENS_HESSIAN, BA_SENS_FISHER};
    for (int k = 0; k < 2; k++) {
        ba_sens_table_t *t1 = compute(ms, ds, NULL, 0, meths[k], &o),
                        *t2 = compute(ml, ds, NULL, 0, meths[k], &o);
        cr_expect(
            t1->loss_on && !strcmp(t1->loss_on, "logits") && t2->loss_on && !strcmp(t2->loss_on, "output"),
            "loss_on: %s / %s", t1->loss_on ? t1->loss_on : "(null)", t2->loss_on ? t2->loss_on : "(null)");
        for (int l = 0; l < L; l++)
            cr_expect(rel_diff(t1->layers[l].score, t2->layers[l].score) <= 1e-4 &&
                          t1->layers[l].probes == t2->layers[l].probes,
                      "%s %s: %.9g (%lld probes), logits model %.9g (%lld)", k ? "fisher" : "hessian",
                      t1->layers[l].name, t1->layers[l].score, (long long)t1->layers[l].probes,
                      t2->layers[l].score, (long long)t2->layers[l].probes);
        ba_sens_table_free(t1);
        ba_sens_table_free(t2);
    }
    ba_dataset_free(ds);
    ba_tensor_unref(ps[0]);
    ba_tensor_unref(zs[0]);
    ba_tensor_unref(x);
    ba_model_free(ms);
    ba_model_free(ml);
}

/* The default loss follows the objective (SPEC §5 and §8, one rule:
 * ba_output_default_metric): a [N, 16, 16, 11] decoder map without a Softmax
 * is not a class output, so its default objective is relmse and the Hessian's
 * loss MSE to the FP output; `--metric kl` makes it cross-entropy on the
 * argmax. The digits MLP's [N, 10] logits default to kl / ce, and `--metric
 * relmse` turns its loss to MSE (both exact there: no probe). */
Test(sensitivity, default_loss_follows_the_objective, .timeout = 300) {
    static const struct {
        const char *model, *data, *metric, *loss;
        int exact;
    } cases[] = {
        {BA_FIXTURES "/grad_refs/decoder.onnx", BA_FIXTURES "/grad_refs/decoder_x.npy", NULL, "mse", -1},
        {BA_FIXTURES "/grad_refs/decoder.onnx", BA_FIXTURES "/grad_refs/decoder_x.npy", "kl", "ce", -1},
        {DIG "mlp_dyn.onnx", DIG "calib_x_flat.npy", NULL, "ce", 1},
        {DIG "mlp_dyn.onnx", DIG "calib_x_flat.npy", "relmse", "mse", 1},
        {DIG "mlp_dyn.onnx", DIG "calib_x_flat.npy", "top1", "ce", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ba_test_run_t r =
            cases[i].metric
                ? ba_test_cli("sensitivity", cases[i].model, "--data", cases[i].data, "--method", "hessian",
                              "--samples", "8", "--metric", cases[i].metric, "--format", "json", NULL)
                : ba_test_cli("sensitivity", cases[i].model, "--data", cases[i].data, "--method", "hessian",
                              "--samples", "8", "--format", "json", NULL);
        cr_assert_eq(r.status, 0, "case %zu: %s", i, r.err);
        json_error_t je;
        json_t *j = json_loads(r.out, 0, &je);
        cr_assert(j, "case %zu: not JSON: %s", i, r.out);
        const char *loss = json_string_value(json_object_get(j, "loss"));
        cr_expect(loss && !strcmp(loss, cases[i].loss), "case %zu: loss %s, expected %s", i,
                  loss ? loss : "-", cases[i].loss);
        const json_t *L0 = json_array_get(json_object_get(j, "layers"), 0);
        json_int_t probes = json_integer_value(json_object_get(L0, "probes"));
        if (cases[i].exact == 1)
            cr_expect_eq(probes, 0, "case %zu: %lld probes on an exact trace", i, (long long)probes);
        json_decref(j);
        ba_test_run_free(&r);
    }
}

/* The Gauss-Newton part is exact whenever it costs no more whole-batch
 * backwards than the probe cap: the decoder's MSE has 16·16·11 = 2816 factors a
 * sample, so `--samples 2816` computes it exactly (no probe, stderr 0) and
 * `--samples 2815` samples it (probes, a standard error). */
Test(sensitivity, exact_gauss_newton_when_it_costs_no_more_than_the_probe_cap, .timeout = 300) {
    char dir[512], x2[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(x2, sizeof x2, "%s/x2.npy", dir);
    ba_tensor_t *x = NULL, *s = NULL;
    ba_error err;
    cr_assert_eq(ba_npy_load(BA_FIXTURES "/grad_refs/decoder_x.npy", &x, &err), BA_OK, "%s", err.msg);
    cr_assert_not_null(s = ba_tensor_slice_axis(x, 0, 0, 2, &err), "%s", err.msg);
    cr_assert_eq(ba_npy_save(x2, s, &err), BA_OK, "%s", err.msg);
    ba_tensor_unref(x);
    ba_tensor_unref(s);
    static const char *const caps[] = {"2816", "2815"};
    for (int i = 0; i < 2; i++) {
        ba_test_run_t r =
            ba_test_cli("sensitivity", BA_FIXTURES "/grad_refs/decoder.onnx", "--data", x2, "--method",
                        "hessian", "--tol", "0.5", "--samples", caps[i], "--format", "json", NULL);
        cr_assert_eq(r.status, 0, "--samples %s: %s", caps[i], r.err);
        json_error_t je;
        json_t *j = json_loads(r.out, 0, &je);
        cr_assert(j, "not JSON: %s", r.out);
        const json_t *layers = json_object_get(j, "layers");
        for (size_t l = 0; l < json_array_size(layers); l++) {
            const json_t *L = json_array_get(layers, l);
            json_int_t probes = json_integer_value(json_object_get(L, "probes"));
            double se = json_real_value(json_object_get(L, "stderr"));
            if (i == 0)
                cr_expect(probes == 0 && se == 0.0, "--samples 2816: layer %zu: %lld probes, stderr %g", l,
                          (long long)probes, se);
            else
                cr_expect(probes > 0 && se > 0.0, "--samples 2815: layer %zu: %lld probes, stderr %g", l,
                          (long long)probes, se);
        }
        json_decref(j);
        ba_test_run_free(&r);
    }
    ba_test_rmtree(dir);
}
