/* The evaluator (eval/evaluate.c) and activation targets / calibration
 * (quant/apply.c) at the library level: the FP cache is the PyTorch output,
 * batching does not change results, a run scores a configuration against
 * the cache, and calibration sees exactly the layers' data inputs. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/helpers.h"

#define DIG BA_FIXTURES "/digits/"

typedef struct {
    ba_model_t *m;
    ba_dataset_t *ds;
    ba_evaluator_t *ev;
} fx_t;

static void fx_open(fx_t *f, const char *model, const char *data, const ba_eval_opts_t *o) {
    ba_error err;
    memset(f, 0, sizeof *f);
    cr_assert_eq(ba_model_load(model, NULL, &f->m, &err), BA_OK, "%s", err.msg);
    const char *spec[1] = {data};
    cr_assert_eq(ba_dataset_load(spec, 1, &f->ds, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_evaluator_new(f->m, f->ds, o, &f->ev, &err), BA_OK, "%s", err.msg);
}

static void fx_close(fx_t *f) {
    ba_evaluator_free(f->ev);
    ba_dataset_free(f->ds);
    ba_model_free(f->m);
}

static double max_abs_diff(const ba_tensor_t *a, const ba_tensor_t *b) {
    cr_assert_eq(a->numel, b->numel);
    double md = 0;
    for (int64_t i = 0; i < a->numel; i++) md = fmax(md, fabs(((float *)a->data)[i] - ((float *)b->data)[i]));
    return md;
}

Test(evaluate, fp_cache_is_the_pytorch_output) {
    fx_t f;
    fx_open(&f, DIG "cnn_dyn.onnx", DIG "test_x.npy", NULL);
    ba_error err;
    ba_tensor_t *ref = NULL;
    cr_assert_eq(ba_npy_load(DIG "cnn_out_test.npy", &ref, &err), BA_OK, "%s", err.msg);
    const ba_tensor_t *fp = ba_evaluator_fp_output(f.ev);
    cr_expect_eq(fp->shape[0], 512);
    cr_expect_eq(fp->shape[1], 10);
    cr_expect(max_abs_diff(fp, ref) < 1e-4, "max diff %g", max_abs_diff(fp, ref));
    cr_expect_eq(ba_evaluator_batch(f.ev), BA_EVAL_DEFAULT_BATCH);
    ba_tensor_unref(ref);
    fx_close(&f);
}

Test(evaluate, batch1_export_runs_one_sample_per_pass_with_same_outputs) {
    fx_t a, b;
    ba_eval_opts_t o = {.batch = 100}; /* not a divisor of 512: the last pass is short */
    fx_open(&a, DIG "cnn.onnx", DIG "test_x.npy", NULL);
    fx_open(&b, DIG "cnn_dyn.onnx", DIG "test_x.npy", &o);
    cr_expect_eq(ba_evaluator_batch(a.ev), 1);
    cr_expect_eq(ba_evaluator_batch(b.ev), 100);
    double d = max_abs_diff(ba_evaluator_fp_output(a.ev), ba_evaluator_fp_output(b.ev));
    cr_expect(d < 1e-5, "batch 1 vs 100: %g", d);
    fx_close(&a);
    fx_close(&b);
}

Test(evaluate, run_without_changes_scores_a_perfect_match) {
    fx_t f;
    fx_open(&f, DIG "mlp_dyn.onnx", DIG "test_x_flat.npy", NULL);
    ba_metrics_t m;
    ba_error err;
    cr_assert_eq(ba_evaluator_run(f.ev, NULL, NULL, 0, &m, NULL, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(m.rows, 512);
    cr_expect_eq(m.agreement, 1.0);
    cr_expect_eq(m.kl, 0.0);
    cr_expect_eq(m.mse, 0.0);
    cr_expect(isinf(m.sqnr_db) && m.sqnr_db > 0);
    cr_expect(isnan(m.accuracy_q), "no labels, no accuracy");
    fx_close(&f);
}

/* 4-bit weights through the weight cache: the search's way of calling the evaluator. */
static void run_4bit(const fx_t *f, int64_t nsamples, ba_metrics_t *out) {
    ba_error err;
    ba_wcache_t *wc = NULL;
    cr_assert_eq(ba_wcache_new(f->m, NULL, &wc, &err), BA_OK);
    int bits[16];
    for (int l = 0; l < f->m->nlayers; l++) bits[l] = 4;
    ba_tensor_t **ov = calloc((size_t)f->m->nvalues, sizeof *ov);
    cr_assert_eq(ba_wcache_overrides(wc, bits, ov, &err), BA_OK);
    cr_assert_eq(ba_evaluator_run(f->ev, ov, NULL, nsamples, out, NULL, &err), BA_OK, "%s", err.msg);
    free(ov);
    ba_wcache_free(wc);
}

Test(evaluate, first_n_samples_score_like_an_evaluator_of_n_samples) {
    ba_error err;
    int64_t *labels = NULL, nl = 0;
    cr_assert_eq(ba_labels_load(DIG "test_y.npy", &labels, &nl, &err), BA_OK);
    ba_eval_opts_t all = {.labels = labels, .nlabels = nl, .batch = 64};
    ba_eval_opts_t first = {.labels = labels, .nlabels = nl, .batch = 64, .max_samples = 100};
    fx_t a, b;
    fx_open(&a, DIG "mlp_dyn.onnx", DIG "test_x_flat.npy", &all);
    fx_open(&b, DIG "mlp_dyn.onnx", DIG "test_x_flat.npy", &first);
    cr_expect_eq(ba_evaluator_samples(b.ev), 100);
    ba_metrics_t ma, mb, mfull;
    run_4bit(&a, 100, &ma);
    run_4bit(&b, 0, &mb);
    run_4bit(&a, 0, &mfull);
    cr_expect_eq(ma.rows, 100);
    cr_expect_eq(ma.kl, mb.kl);
    cr_expect_eq(ma.mse, mb.mse);
    cr_expect_eq(ma.agreement, mb.agreement);
    cr_expect_eq(ma.accuracy_q, mb.accuracy_q);
    cr_expect_eq(mfull.rows, 512);
    cr_expect(mfull.kl > 0 && mfull.agreement < 1.0, "4-bit weights change the output");
    ba_metrics_t fp;
    cr_assert_eq(ba_evaluator_fp_metrics(a.ev, 0, &fp, &err), BA_OK);
    cr_expect_eq(fp.accuracy_fp, 0.966796875); /* digits/meta.json: mlp test accuracy */
    cr_expect(isnan(fp.agreement));
    fx_close(&a);
    fx_close(&b);
    free(labels);
}

Test(evaluate, labels_must_match_the_sample_count) {
    ba_error err;
    ba_model_t *m = NULL;
    ba_dataset_t *ds = NULL;
    ba_evaluator_t *ev = NULL;
    cr_assert_eq(ba_model_load(DIG "mlp_dyn.onnx", NULL, &m, &err), BA_OK);
    const char *spec[1] = {DIG "test_x_flat.npy"};
    cr_assert_eq(ba_dataset_load(spec, 1, &ds, &err), BA_OK);
    int64_t labels[10] = {0};
    ba_eval_opts_t o = {.labels = labels, .nlabels = 10, .labels_path = "y.npy"};
    cr_expect_eq(ba_evaluator_new(m, ds, &o, &ev, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "y.npy") && strstr(err.msg, "10 labels for 512 samples"), "%s", err.msg);
    cr_expect_null(ev);
    ba_dataset_free(ds);
    ba_model_free(m);
}

Test(evaluate, data_of_the_wrong_shape_names_the_input) {
    ba_error err;
    ba_model_t *m = NULL;
    ba_dataset_t *ds = NULL;
    ba_evaluator_t *ev = NULL;
    cr_assert_eq(ba_model_load(DIG "cnn_dyn.onnx", NULL, &m, &err), BA_OK);
    const char *spec[1] = {"input=" DIG "test_x_flat.npy"};
    cr_assert_eq(ba_dataset_load(spec, 1, &ds, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(ba_evaluator_new(m, ds, NULL, &ev, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "'input'") && strstr(err.msg, "test_x_flat.npy"), "%s", err.msg);
    ba_dataset_free(ds);
    ba_model_free(m);
}

Test(evaluate, act_targets_are_the_data_inputs_of_layer_nodes) {
    static const char *const want[] = {"input", "/relu/Relu_output_0", "/relu_1/Relu_output_0",
                                       "/Flatten_output_0"};
    ba_error err;
    ba_model_t *m = NULL;
    cr_assert_eq(ba_model_load(DIG "cnn_dyn.onnx", NULL, &m, &err), BA_OK);
    unsigned char *mark = calloc((size_t)m->nvalues, 1);
    cr_expect_eq(ba_quant_act_targets(m, mark), 4);
    for (int i = 0; i < 4; i++) {
        int v = ba_model_find_value(m, want[i]);
        cr_assert_geq(v, 0, "%s", want[i]);
        cr_expect(mark[v], "%s is a target", want[i]);
    }
    for (int l = 0; l < m->nlayers; l++) cr_expect(!mark[m->layers[l].value], "weights are not activations");
    free(mark);
    ba_model_free(m);
}

Test(evaluate, calibration_ranges_cover_the_data_and_only_the_targets) {
    fx_t f;
    fx_open(&f, DIG "cnn_dyn.onnx", DIG "test_x.npy", NULL);
    ba_error err;
    ba_act_range_t *r = calloc((size_t)f.m->nvalues, sizeof *r);
    cr_assert_eq(ba_study_calibrate_acts(f.ev, f.m, r, &err), BA_OK, "%s", err.msg);
    int n = 0;
    for (int v = 0; v < f.m->nvalues; v++) n += r[v].count > 0;
    cr_expect_eq(n, 4);
    /* the graph input's range is the data's */
    const ba_tensor_t *x = ba_dataset_tensor(f.ds, 0);
    float mn = INFINITY, mx = -INFINITY;
    for (int64_t i = 0; i < x->numel; i++) {
        float v = ((float *)x->data)[i];
        mn = fminf(mn, v);
        mx = fmaxf(mx, v);
    }
    const ba_act_range_t *ri = &r[ba_model_find_value(f.m, "input")];
    cr_expect_eq(ri->min, mn);
    cr_expect_eq(ri->max, mx);
    cr_expect_eq(ri->count, x->numel);
    /* ReLU outputs: non-negative ranges */
    cr_expect_geq(r[ba_model_find_value(f.m, "/relu/Relu_output_0")].min, 0.0f);
    /* a run with 8-bit activations differs from FP, but only a little */
    ba_quant_acts_t acts = {.act_bits = 8, .act_ranges = r};
    unsigned char *mark = calloc((size_t)f.m->nvalues, 1);
    ba_quant_acts_mark(f.m, &acts, mark);
    cr_expect(mark[ba_model_find_value(f.m, "/relu/Relu_output_0")]);
    ba_eval_hook_t hook = {ba_quant_act_hook, &acts, NULL}, fused = {ba_quant_act_hook, &acts, mark};
    ba_metrics_t mq, mf;
    cr_assert_eq(ba_evaluator_run(f.ev, NULL, &hook, 0, &mq, NULL, &err), BA_OK, "%s", err.msg);
    cr_expect(mq.mse > 0 && mq.agreement > 0.98, "mse %g agreement %g", mq.mse, mq.agreement);
    /* with the hook's value mask the executor fuses the rest: the same numbers */
    cr_assert_eq(ba_evaluator_run(f.ev, NULL, &fused, 0, &mf, NULL, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(mf.mse, mq.mse);
    cr_expect_eq(mf.kl, mq.kl);
    free(mark);
    free(r);
    fx_close(&f);
}

Test(evaluate, act_qparams_follow_the_asymmetric_rule) {
    ba_act_range_t r = {.min = -1.0f, .max = 3.0f, .count = 1};
    float s;
    int32_t zp;
    ba_quant_act_qparams(&r, 8, &s, &zp);
    cr_expect_eq(s, (float)(4.0 / 255.0));
    cr_expect_eq(zp, 64); /* rint(1 / (4/255)) = rint(63.75) */
    r.min = 0.5f;         /* range widened to include 0 */
    ba_quant_act_qparams(&r, 4, &s, &zp);
    cr_expect_eq(s, (float)(3.0 / 15.0));
    cr_expect_eq(zp, 0);
}

Test(evaluate, write_onnx_refuses_a_width_that_is_not_one) {
    ba_error err;
    ba_model_t *m = NULL;
    cr_assert_eq(ba_model_load(DIG "mlp_dyn.onnx", NULL, &m, &err), BA_OK);
    int bits[3] = {4, 9, 8};
    char dir[512], out[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/q.onnx", dir);
    cr_expect_eq(ba_quant_write_onnx(m, bits, NULL, NULL, 0, out, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "fc2.weight"), "%s", err.msg);
    ba_model_free(m);
    ba_test_rmtree(dir);
}

/* One batch rule and one batching path for evaluation and sensitivity. */
Test(evaluate, one_default_batch_and_one_batching_path) {
    cr_expect_eq(ba_eval_batch_size(0, 0), BA_EVAL_DEFAULT_BATCH);
    cr_expect_eq(ba_eval_batch_size(0, 7), 7);
    cr_expect_eq(ba_eval_batch_size(4, 7), 4, "a batch size the model fixes wins");
    cr_expect_eq(ba_sens_opts_default().batch, 0, "sensitivity takes the evaluator's default");
    fx_t f;
    fx_open(&f, DIG "cnn_dyn.onnx", DIG "test_x.npy", NULL);
    cr_expect_eq(ba_evaluator_batch(f.ev), BA_EVAL_DEFAULT_BATCH);
    int idx[4];
    int64_t fixed;
    ba_error err;
    cr_assert_eq(ba_eval_bind(f.m, f.ds, idx, &fixed, &err), BA_OK, "%s", err.msg);
    ba_tensor_t *ins[4];
    cr_assert_eq(ba_eval_batch_inputs(f.m, f.ds, idx, 3, 5, 0, ins, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(ins[0]->shape[0], 5);
    const ba_tensor_t *all = ba_dataset_tensor(f.ds, 0);
    int64_t row = all->numel / all->shape[0];
    cr_expect_eq(((float *)ins[0]->data)[0], ((float *)all->data)[3 * row], "rows start at sample 3");
    ba_tensor_unref(ins[0]);
    cr_assert_eq(ba_eval_batch_inputs(f.m, f.ds, idx, 0, 2, 6, ins, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(ins[0]->shape[0], 6, "padded to 6 rows");
    cr_expect_eq(((float *)ins[0]->data)[5 * row], 0.0f);
    ba_tensor_unref(ins[0]);
    fx_close(&f);
}
