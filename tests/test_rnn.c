/* LSTM and GRU (model/ops_rnn.c) against PyTorch and ONNX Runtime
 * (tests/fixtures/rnn, made by make_rnn.py): outputs of torch.onnx exports
 * and of single-node graphs (layout 1, sequence_lens, reverse, GRU
 * linear_before_reset 0, omitted outputs); the op's gradients w.r.t. every
 * float input; gradients and HVPs of classifiers w.r.t. their weights; the
 * layers found; refusals. Errors are max |ours − ref| / max |ref|. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "eval/npy.h"
#include "helpers.h"
#include "model/grad.h"
#include "model/grad_internal.h"
#include "model/ops.h"

#define RNN(p) BA_FIXTURES "/rnn/" p
/* Outputs and gradients: float32 against the float64 / float32 references. */
#define OUT_TOL 1e-4
#define GRAD_TOL 1e-4
#define HVP_TOL 1e-3
#define LOSS_TOL 1e-5

static double rel_err(const float *a, const ba_tensor_t *ref) {
    const float *r = ref->data;
    double md = 0.0, mr = 0.0;
    for (int64_t i = 0; i < ref->numel; i++) {
        double d = fabs((double)a[i] - r[i]);
        if (d > md) md = d;
        if (fabs(r[i]) > mr) mr = fabs(r[i]);
    }
    return mr > 0 ? md / mr : md;
}

static ba_model_t *load(const char *path) {
    ba_model_t *m = NULL;
    ba_error e = {0};
    cr_assert_eq(ba_model_load(path, NULL, &m, &e), BA_OK, "%s: %s", path, e.msg);
    return m;
}

/* Runs model on the npz's inputs (by graph-input name) and compares every
 * output with "out:<name>"; returns the worst error. */
static double check_outputs(const char *name) {
    char mp[512], zp[512], key[512];
    snprintf(mp, sizeof mp, RNN("%s.onnx"), name);
    snprintf(zp, sizeof zp, RNN("%s.npz"), name);
    ba_model_t *m = load(mp);
    ba_npz_t *z = NULL;
    ba_error e = {0};
    cr_assert_eq(ba_npz_load(zp, &z, &e), BA_OK, "%s", e.msg);
    ba_tensor_t *in[8] = {0}, *out[8] = {0};
    cr_assert_leq(m->ninputs, 8);
    cr_assert_leq(m->noutputs, 8);
    for (int k = 0; k < m->ninputs; k++) {
        in[k] = ba_npz_get(z, m->values[m->inputs[k]].name);
        cr_assert(in[k], "%s: no input %s", name, m->values[m->inputs[k]].name);
    }
    cr_assert_eq(ba_model_run(m, in, NULL, out, &e), BA_OK, "%s: %s", name, e.msg);
    double worst = 0.0;
    for (int k = 0; k < m->noutputs; k++) {
        snprintf(key, sizeof key, "out:%s", m->values[m->outputs[k]].name);
        const ba_tensor_t *ref = ba_npz_get(z, key);
        cr_assert(ref, "%s: %s", name, key);
        cr_assert_eq(out[k]->numel, ref->numel, "%s: %s", name, key);
        for (int d = 0; d < ref->ndim; d++)
            cr_assert_eq(out[k]->shape[d], ref->shape[d], "%s: %s dim %d", name, key, d);
        double r = rel_err(out[k]->data, ref);
        cr_expect_lt(r, OUT_TOL, "%s: %s relative error %.3g", name, key, r);
        if (r > worst) worst = r;
        ba_tensor_unref(out[k]);
    }
    ba_npz_free(z);
    ba_model_free(m);
    return worst;
}

Test(rnn, torch_exports_match_pytorch) {
    static const char *const names[] = {"lstm_bi_op13", "lstm_bf_h0_op17", "lstm_bi_bf_op17", "gru_op13",
                                        "gru_bi_bf_h0_op17"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        double r = check_outputs(names[i]);
        fprintf(stderr, "rnn %s: worst output error %.3g\n", names[i], r);
    }
}

static const char *const SINGLE[] = {"lstm_l1_bi_lens", "lstm_rev_lens", "gru_lbr0_bi_lens",
                                     "gru_lbr1_l1_rev", "gru_lbr0_nolens"};
#define NSINGLE (sizeof SINGLE / sizeof SINGLE[0])

Test(rnn, layouts_lengths_and_directions_match_onnx_semantics) {
    for (size_t i = 0; i < NSINGLE; i++) check_outputs(SINGLE[i]);
}

/* The op's backward on a single-node graph: sum(gout · out) differentiated
 * w.r.t. every float input (X, W, R, B, initial_h, initial_c). */
Test(rnn, op_gradients_and_hvp_rules_match_pytorch_for_every_input) {
    for (size_t c = 0; c < NSINGLE; c++) {
        char mp[512], zp[512], key[512];
        snprintf(mp, sizeof mp, RNN("%s.onnx"), SINGLE[c]);
        snprintf(zp, sizeof zp, RNN("%s.npz"), SINGLE[c]);
        ba_model_t *m = load(mp);
        ba_npz_t *z = NULL;
        ba_error e = {0};
        cr_assert_eq(ba_npz_load(zp, &z, &e), BA_OK, "%s", e.msg);
        cr_assert_eq(m->nnodes, 1);
        const ba_node_t *n = &m->nodes[0];
        ba_tensor_t *in[8] = {0}, *out[3] = {0}, *dout[3] = {0}, *din[8] = {0};
        unsigned char need[8] = {0};
        for (int i = 0; i < n->nin; i++) {
            if (n->inputs[i] < 0) continue;
            const ba_value_t *v = &m->values[n->inputs[i]];
            in[i] = v->constant ? v->constant : ba_npz_get(z, v->name);
            cr_assert(in[i], "%s: input %s", SINGLE[c], v->name);
            need[i] = in[i]->dtype == BA_DT_F32;
        }
        const ba_op_def_t *def = n->def, *gd = def;
        cr_assert(def && def == ba_op_lookup(n->op_type, "") && gd->backward);
        cr_assert_eq(def->forward(n, in, n->nin, out, n->nout, &e), BA_OK, "%s", e.msg);
        for (int j = 0; j < n->nout; j++) {
            if (n->outputs[j] < 0) continue;
            snprintf(key, sizeof key, "gout:%s", m->values[n->outputs[j]].name);
            dout[j] = ba_npz_get(z, key);
            cr_assert(dout[j], "%s: %s", SINGLE[c], key);
        }
        cr_assert_eq(gd->backward(n, in, n->nin, out, n->nout, dout, need, din, &e), BA_OK, "%s", e.msg);
        int checked = 0;
        double worst = 0.0;
        for (int i = 0; i < n->nin; i++) {
            if (!need[i]) continue;
            snprintf(key, sizeof key, "grad:%s", m->values[n->inputs[i]].name);
            const ba_tensor_t *ref = ba_npz_get(z, key);
            cr_assert(ref && din[i], "%s: %s", SINGLE[c], key);
            double r = rel_err(din[i]->data, ref);
            cr_expect_lt(r, GRAD_TOL, "%s: %s relative error %.3g", SINGLE[c], key, r);
            if (r > worst) worst = r;
            checked++;
        }
        cr_expect_geq(checked, 3);
        fprintf(stderr, "rnn %s: %d input gradients, worst relative error %.3g\n", SINGLE[c], checked, worst);
        /* the exact HVP's rules, one probe v on every float input: J v of each
         * output, and (sum(gout · out) being linear in out) H v = the
         * backward's derivative along v */
        const ba_op_def_t *rule = def;
        cr_assert(rule->hvp == BA_HVP_OWN && rule->tangent && rule->second);
        ba_tensor_t *tin[8] = {0}, *tout[3] = {0}, *hv[8] = {0};
        for (int i = 0; i < n->nin; i++) {
            if (!need[i]) continue;
            snprintf(key, sizeof key, "v:%s", m->values[n->inputs[i]].name);
            tin[i] = ba_npz_get(z, key);
            cr_assert(tin[i], "%s: %s", SINGLE[c], key);
        }
        cr_assert_eq(rule->tangent(n, in, n->nin, out, n->nout, tin, tout, &e), BA_OK, "%s", e.msg);
        double wj = 0.0, wh = 0.0;
        for (int j = 0; j < n->nout; j++) {
            if (n->outputs[j] < 0) continue;
            snprintf(key, sizeof key, "jv:%s", m->values[n->outputs[j]].name);
            const ba_tensor_t *ref = ba_npz_get(z, key);
            cr_assert(ref && tout[j] && tout[j]->numel == ref->numel, "%s: %s", SINGLE[c], key);
            double r = rel_err(tout[j]->data, ref);
            cr_expect_lt(r, GRAD_TOL, "%s: %s relative error %.3g", SINGLE[c], key, r);
            wj = fmax(wj, r);
        }
        cr_assert_eq(rule->second(n, in, n->nin, out, n->nout, tin, dout, need, hv, &e), BA_OK, "%s", e.msg);
        for (int i = 0; i < n->nin; i++) {
            if (!need[i]) continue;
            snprintf(key, sizeof key, "hv:%s", m->values[n->inputs[i]].name);
            const ba_tensor_t *ref = ba_npz_get(z, key);
            cr_assert(ref && hv[i], "%s: %s", SINGLE[c], key);
            double r = rel_err(hv[i]->data, ref);
            cr_expect_lt(r, GRAD_TOL, "%s: %s relative error %.3g", SINGLE[c], key, r);
            wh = fmax(wh, r);
        }
        fprintf(stderr, "rnn %s: tangent worst relative error %.3g, second order %.3g\n", SINGLE[c], wj, wh);
        for (int j = 0; j < 3; j++) ba_tensor_unref(tout[j]);
        for (int i = 0; i < 8; i++) ba_tensor_unref(hv[i]);
        for (int j = 0; j < 3; j++) ba_tensor_unref(out[j]);
        for (int i = 0; i < 8; i++) ba_tensor_unref(din[i]);
        ba_npz_free(z);
        ba_model_free(m);
    }
}

typedef struct {
    ba_model_t *m;
    ba_npz_t *z;
    int64_t labels[64];
    ba_loss_spec_t spec;
} clf_t;

static void clf_open(clf_t *f, const char *model, const char *npz) {
    ba_error e = {0};
    memset(f, 0, sizeof *f);
    f->m = load(model);
    cr_assert_eq(ba_npz_load(npz, &f->z, &e), BA_OK, "%s", e.msg);
    ba_tensor_t *y = ba_npz_get(f->z, "y");
    cr_assert(y && y->numel <= 64);
    for (int64_t i = 0; i < y->numel; i++) f->labels[i] = ba_tensor_get_i64(y, i);
    f->spec = (ba_loss_spec_t){.kind = BA_LOSS_CE, .output = 0, .labels = f->labels, .nlabels = y->numel};
}

static void clf_close(clf_t *f) {
    ba_npz_free(f->z);
    ba_model_free(f->m);
}

static void check_clf_grads(const char *model, const char *npz) {
    clf_t f;
    clf_open(&f, model, npz);
    int req[32], n = 0;
    const ba_tensor_t *refs[32];
    for (int k = 0; k < f.z->count && n < 32; k++) {
        const char *nm = f.z->members[k].name;
        if (strncmp(nm, "g_ce:", 5)) continue;
        int id = ba_model_find_value(f.m, nm + 5);
        cr_assert(id >= 0 && f.m->values[id].constant, "%s", nm);
        req[n] = id;
        refs[n++] = f.z->members[k].tensor;
    }
    cr_assert_geq(n, 7); /* W, R, B of both layers, the Linear's weight and bias */
    float *g[32];
    for (int k = 0; k < n; k++) g[k] = calloc((size_t)refs[k]->numel, sizeof(float));
    ba_tensor_t *in[1] = {ba_npz_get(f.z, "x")};
    ba_error e = {0};
    double loss = 0.0, worst = 0.0;
    cr_assert_eq(ba_grad_compute(f.m, in, NULL, &f.spec, n, req, g, &loss, &e), BA_OK, "%s", e.msg);
    double lref = ba_tensor_get_f64(ba_npz_get(f.z, "loss_ce"), 0);
    cr_expect_lt(fabs(loss - lref), LOSS_TOL * fmax(1.0, fabs(lref)), "%s: loss %.9g vs %.9g", npz, loss,
                 lref);
    for (int k = 0; k < n; k++) {
        double r = rel_err(g[k], refs[k]);
        cr_expect_lt(r, GRAD_TOL, "%s: dL/d%s relative error %.3g", npz, f.m->values[req[k]].name, r);
        if (r > worst) worst = r;
        free(g[k]);
    }
    fprintf(stderr, "rnn grad %s: %d tensors, worst relative error %.3g\n", npz, n, worst);
    clf_close(&f);
}

Test(rnn, classifier_weight_gradients_match_pytorch) {
    check_clf_grads(RNN("lstm_clf_dyn.onnx"), RNN("lstm_clf_grad.npz"));
    check_clf_grads(RNN("gru_clf_dyn.onnx"), RNN("gru_clf_grad.npz"));
}

typedef ba_status (*hvp_fn)(ba_grad_session_t *, int, const float *, float *, ba_error *);

static double check_clf_hvps(const char *model, const char *npz, hvp_fn hvp, double tol, const char *how) {
    clf_t f;
    clf_open(&f, model, npz);
    ba_tensor_t *in[1] = {ba_npz_get(f.z, "x")};
    ba_grad_session_t *s = NULL;
    ba_error e = {0};
    cr_assert_eq(ba_grad_session_new(f.m, in, NULL, &f.spec, &s, &e), BA_OK, "%s", e.msg);
    int n = 0;
    double worst = 0.0;
    for (int k = 0; k < f.z->count; k++) {
        const char *nm = f.z->members[k].name;
        if (strncmp(nm, "hv:", 3)) continue;
        char key[512];
        snprintf(key, sizeof key, "v:%s", nm + 3);
        const ba_tensor_t *v = ba_npz_get(f.z, key), *ref = f.z->members[k].tensor;
        int id = ba_model_find_value(f.m, nm + 3);
        cr_assert(v && id >= 0, "%s", nm);
        float *hv = calloc((size_t)ref->numel, sizeof(float));
        cr_assert_eq(hvp(s, id, v->data, hv, &e), BA_OK, "%s", e.msg);
        double r = rel_err(hv, ref);
        cr_expect_lt(r, tol, "%s: H v (%s) for %s relative error %.3g", npz, how, nm + 3, r);
        if (r > worst) worst = r;
        free(hv);
        n++;
    }
    cr_assert_eq(n, 4);
    fprintf(stderr, "rnn hvp %s (%s): %d layers, worst relative error %.3g\n", npz, how, n, worst);
    ba_grad_session_free(s);
    clf_close(&f);
    return worst;
}

Test(rnn, classifier_hvps_match_pytorch_double_backward) {
    check_clf_hvps(RNN("lstm_clf_dyn.onnx"), RNN("lstm_clf_grad.npz"), ba_grad_session_hvp, HVP_TOL, "exact");
    check_clf_hvps(RNN("gru_clf_dyn.onnx"), RNN("gru_clf_grad.npz"), ba_grad_session_hvp, HVP_TOL, "exact");
    check_clf_hvps(RNN("lstm_clf_dyn.onnx"), RNN("lstm_clf_grad.npz"), ba_grad_session_hvp_fd, HVP_TOL,
                   "central differences");
}

/* ---- loader refusals ---- */

Test(rnn, loop_scan_and_unsupported_rnn_attributes_are_refused_by_name) {
    static const char *const cases[][3] = {
        {"loop", "Loop", "loop_node"},
        {"scan", "Scan", "scan_node"},
        {"lstm_clip", "clip", "lstm_clip_node"},
        {"gru_act", "activations", "gru_act_node"},
        {"lstm_input_forget", "input_forget", "lstm_input_forget_node"},
        {"lstm_peephole", "P", "lstm_peephole_node"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char mp[512];
        snprintf(mp, sizeof mp, RNN("%s.onnx"), cases[i][0]);
        ba_model_t *m = NULL;
        ba_error e = {0};
        cr_expect_eq(ba_model_load(mp, NULL, &m, &e), BA_ERR_UNSUPPORTED, "%s: %s", cases[i][0], e.msg);
        cr_expect(strstr(e.msg, cases[i][1]) && strstr(e.msg, cases[i][2]), "%s: %s", cases[i][0], e.msg);
        ba_model_free(m);
    }
}

/* ---- the CLI on the classifiers ---- */

#define CLF_DATA RNN("calib_x.npy")

Test(rnn, inspect_lists_w_and_r_as_layers_on_the_gate_axis) {
    static const char *const models[] = {RNN("lstm_clf_dyn.onnx"), RNN("gru_clf_dyn.onnx")};
    for (int k = 0; k < 2; k++) {
        ba_test_run_t r = ba_test_cli("inspect", models[k], "--format", "json", NULL);
        cr_assert_eq(r.status, 0, "%s", r.err);
        json_error_t je;
        json_t *root = json_loads(r.out, 0, &je);
        cr_assert(root, "%s", je.text);
        json_t *layers = json_object_get(root, "layers");
        cr_assert_eq(json_array_size(layers), 5); /* W and R of two layers, the Linear */
        int rnn = 0;
        for (size_t i = 0; i < json_array_size(layers); i++) {
            json_t *L = json_array_get(layers, i);
            const char *op = json_string_value(json_object_get(L, "op"));
            if (strcmp(op, k ? "GRU" : "LSTM")) continue;
            rnn++;
            json_t *shape = json_object_get(L, "shape");
            cr_expect_eq(json_integer_value(json_object_get(L, "ch_axis")), 1);
            cr_expect_eq(json_array_size(shape), 3);
            /* [dirs, gates·hidden, input or hidden], 6 steps per sample: macs = 6 · params */
            cr_expect_eq(json_integer_value(json_array_get(shape, 1)), (k ? 3 : 4) * 16);
            cr_expect_eq(json_integer_value(json_object_get(L, "macs")),
                         6 * json_integer_value(json_object_get(L, "params")));
        }
        cr_expect_eq(rnn, 4);
        json_decref(root);
        ba_test_run_free(&r);
    }
}

static ba_tensor_t *load_npy(const char *path) {
    ba_error err = {0};
    ba_tensor_t *t = NULL;
    cr_assert_eq(ba_npy_load(path, &t, &err), BA_OK, "%s", err.msg);
    return t;
}

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

Test(rnn, hessian_sensitivity_and_ilp_evo_search_run_on_an_lstm_classifier, .timeout = 240) {
    char dir[512], db[600], plan[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    snprintf(plan, sizeof plan, "%s/plan.json", dir);
    ba_test_run_t r = ba_test_cli("sensitivity", RNN("lstm_clf_dyn.onnx"), "--data", CLF_DATA, "--method",
                                  "hessian", "--format", "json", "--samples", "40", "--db", db, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_error_t je;
    json_t *root = json_loads(r.out, 0, &je);
    cr_assert(root, "%s", je.text);
    json_t *layers = json_object_get(root, "layers");
    cr_assert_eq(json_array_size(layers), 5);
    for (size_t i = 0; i < 5; i++) {
        json_t *L = json_array_get(layers, i);
        double s = json_number_value(json_object_get(L, "score"));
        cr_expect(isfinite(s) && s != 0.0, "%s: score %g", json_string_value(json_object_get(L, "name")), s);
    }
    json_decref(root);
    ba_test_run_free(&r);
    r = ba_test_cli("search", RNN("lstm_clf_dyn.onnx"), "--data", CLF_DATA, "--method", "ilp+evo", "--budget",
                    "avg-bits=4", "--generations", "3", "--offspring", "4", "--plan-out", plan, "--db", db,
                    "-q", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    root = json_load_file(plan, 0, &je);
    cr_assert(root, "%s", je.text);
    json_t *tot = json_object_get(root, "totals");
    cr_expect_leq(json_number_value(json_object_get(tot, "avg_bits")), 4.0 + 1e-9);
    cr_expect_eq(json_array_size(json_object_get(root, "layers")), 5);
    json_decref(root);
    /* the plan as QDQ ONNX (weights only, then with 8-bit activations): ONNX
     * Runtime computes what eval --plan measured */
    for (int act = 0; act < 2; act++) {
        char p2[700], ref[600], qdq[600], ort[600];
        snprintf(ref, sizeof ref, "%s/ref%d.npy", dir, act);
        snprintf(qdq, sizeof qdq, "%s/q%d.onnx", dir, act);
        snprintf(ort, sizeof ort, "%s/ort%d.npy", dir, act);
        snprintf(p2, sizeof p2, "%s", plan);
        if (act) {
            snprintf(p2, sizeof p2, "%s/plan_a8.json", dir);
            json_t *pj = json_load_file(plan, 0, &je);
            cr_assert(pj);
            json_object_set_new(json_object_get(pj, "quantizer"), "act_bits", json_integer(8));
            json_t *ls = json_object_get(pj, "layers");
            for (size_t i = 0; i < json_array_size(ls); i++)
                json_object_set_new(json_array_get(ls, i), "a_bits", json_integer(8));
            cr_assert_eq(json_dump_file(pj, p2, 0), 0);
            json_decref(pj);
        }
        r = ba_test_cli("eval", RNN("lstm_clf_dyn.onnx"), "--data", CLF_DATA, "--plan", p2, "--save-output",
                        ref, NULL);
        cr_assert_eq(r.status, 0, "%s", r.err);
        ba_test_run_free(&r);
        r = ba_test_cli("quantize", RNN("lstm_clf_dyn.onnx"), "--plan", p2, "-o", qdq, "--format", "qdq",
                        "--data", CLF_DATA, "-q", NULL);
        cr_assert_eq(r.status, 0, "%s", r.err);
        ba_test_run_free(&r);
        struct stat sb;
        if (stat(BA_SOURCE_DIR "/tests/node/node_modules/onnxruntime-node", &sb) != 0)
            continue; /* no ORT: skipped */
        const char *argv[] = {"/usr/bin/env", "node", BA_SOURCE_DIR "/tests/node/run_ort.js", qdq, ort,
                              CLF_DATA,       NULL};
        char *err = NULL;
        int st = -1;
        if (ba_test_run(argv, NULL, &err, &st) != 0 || st == 127) {
            free(err);
            continue;
        }
        cr_assert_eq(st, 0, "run_ort.js: %s", err);
        free(err);
        ba_tensor_t *a = load_npy(ref), *b = load_npy(ort);
        double d = rel_diff(b, a);
        fprintf(stderr, "rnn qdq (act_bits %s): onnxruntime vs eval --plan %.3g\n", act ? "8" : "float", d);
        cr_expect_lt(d, 1e-5, "onnxruntime vs eval --plan: %g", d);
        ba_tensor_unref(a);
        ba_tensor_unref(b);
    }
    ba_test_rmtree(dir);
}

Test(rnn, act_and_lrp_estimators_refuse_recurrent_weights_by_name) {
    static const char *const methods[] = {"act", "lrp"};
    for (int i = 0; i < 2; i++) {
        ba_test_run_t r = ba_test_cli("sensitivity", RNN("gru_clf_dyn.onnx"), "--data", CLF_DATA, "--method",
                                      methods[i], NULL);
        cr_expect_eq(r.status, 2, "%s: %s", methods[i], r.err);
        cr_expect(strstr(r.err, methods[i]) && strstr(r.err, "onnx::GRU_183") && strstr(r.err, "hessian"),
                  "%s", r.err);
        ba_test_run_free(&r);
    }
}
