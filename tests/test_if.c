/* If nodes whose condition is known only at run time (SPEC §1), on the
 * fixtures of tests/fixtures/make_if_cases.py: torch.jit.script exports with
 * an If on an input's value (layers inside both bodies: body initializers and
 * a Constant node) and on a dynamic axis, an If inside an If, and bad files.
 * Outputs against PyTorch (and ONNX Runtime when installed), gradients and
 * HVPs against PyTorch's autograd through the taken branch, the layer table,
 * the CLI commands, and the errors (exit 2 naming the nodes). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "eval/npy.h"
#include "helpers.h"
#include "model/grad.h"
#include "model/model.h"

#define IFC BA_FIXTURES "/if_cases/"
/* Outputs: max |ours − ref| within this fraction of max |ref| (the brief's 1e-4). */
#define OUT_TOL 1e-4
/* Gradients and HVPs against float64 autograd (as tests/test_grad.c). */
#define GRAD_TOL 1e-4
#define HVP_TOL 1e-4

static ba_model_t *load(const char *path) {
    ba_model_t *m = NULL;
    ba_error e = {0};
    cr_assert_eq(ba_model_load(path, NULL, &m, &e), BA_OK, "%s: %s", path, e.msg);
    return m;
}

static ba_tensor_t *npy(const char *path) {
    ba_tensor_t *t = NULL;
    ba_error e = {0};
    cr_assert_eq(ba_npy_load(path, &t, &e), BA_OK, "%s", e.msg);
    return t;
}

static double rel_diff(const float *a, const ba_tensor_t *ref) {
    const float *r = ref->data;
    double md = 0.0, mr = 0.0;
    for (int64_t i = 0; i < ref->numel; i++) {
        md = fmax(md, fabs((double)a[i] - r[i]));
        mr = fmax(mr, fabs((double)r[i]));
    }
    return mr > 0 ? md / mr : md;
}

static int count_op(const ba_model_t *m, const char *op) {
    int c = 0;
    for (int i = 0; i < m->nnodes; i++) c += !strcmp(m->nodes[i].op_type, op);
    return c;
}

static int layer_index(const ba_model_t *m, const char *name) {
    for (int l = 0; l < m->nlayers; l++)
        if (!strcmp(m->layers[l].name, name)) return l;
    return -1;
}

/* Runs model on x and returns the first output (new ref). */
static ba_tensor_t *run1(const ba_model_t *m, ba_tensor_t *x, ba_tensor_t *const *overrides) {
    ba_tensor_t *out[4] = {0};
    ba_error e = {0};
    ba_run_opts_t o = {.overrides = overrides};
    cr_assert_eq(ba_model_run(m, &x, &o, out, &e), BA_OK, "%s", e.msg);
    for (int k = 1; k < m->noutputs; k++) ba_tensor_unref(out[k]);
    return out[0];
}

/* ONNX Runtime on (model, x) into out_npy; 0 when it is not installed. */
static int run_ort(const char *model, const char *x, const char *out_npy) {
    struct stat sb;
    if (stat(BA_SOURCE_DIR "/tests/node/node_modules/onnxruntime-node", &sb) != 0) return 0;
    const char *argv[] = {
        "/usr/bin/env", "node", BA_SOURCE_DIR "/tests/node/run_ort.js", model, out_npy, x, NULL};
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

/* Our output, PyTorch's and (when there) ONNX Runtime's agree within OUT_TOL. */
static void check_outputs(const char *model, const char *x_npy, const char *y_npy) {
    ba_model_t *m = load(model);
    ba_tensor_t *x = npy(x_npy), *ref = npy(y_npy);
    ba_tensor_t *y = run1(m, x, NULL);
    cr_assert_eq(y->numel, ref->numel, "%s", x_npy);
    double d = rel_diff(y->data, ref);
    cr_expect_lt(d, OUT_TOL, "%s on %s: %.3g vs PyTorch", model, x_npy, d);
    char dir[512], out[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/ort.npy", dir);
    if (run_ort(model, x_npy, out)) {
        ba_tensor_t *o = npy(out);
        double od = rel_diff(y->data, o);
        cr_expect_lt(od, OUT_TOL, "%s on %s: %.3g vs ONNX Runtime", model, x_npy, od);
        ba_tensor_unref(o);
    }
    ba_test_rmtree(dir);
    ba_tensor_unref(y);
    ba_tensor_unref(x);
    ba_tensor_unref(ref);
    ba_model_free(m);
}

Test(if_exec, value_condition_runs_each_branch) {
    check_outputs(IFC "if_value.onnx", IFC "if_value_pos_x.npy", IFC "if_value_pos_y.npy");
    check_outputs(IFC "if_value.onnx", IFC "if_value_neg_x.npy", IFC "if_value_neg_y.npy");
}

Test(if_exec, shape_condition_runs_each_branch) {
    check_outputs(IFC "if_shape.onnx", IFC "if_shape_long_x.npy", IFC "if_shape_long_y.npy");
    check_outputs(IFC "if_shape.onnx", IFC "if_shape_short_x.npy", IFC "if_shape_short_y.npy");
}

Test(if_exec, nested_if_takes_all_three_paths) {
    const char *paths[] = {"pp", "pn", "n"};
    for (int k = 0; k < 3; k++) {
        char x[512], y[512];
        snprintf(x, sizeof x, IFC "nested_%s_x.npy", paths[k]);
        snprintf(y, sizeof y, IFC "nested_%s_y.npy", paths[k]);
        check_outputs(IFC "if_nested.onnx", x, y);
    }
}

Test(if_exec, run_time_if_is_kept_with_both_branches) {
    ba_model_t *m = load(IFC "if_value.onnx");
    cr_assert_eq(count_op(m, "If"), 1);
    cr_assert_eq(count_op(m, "Conv"), 2);
    cr_assert_eq(count_op(m, "Relu"), 1);
    cr_assert_eq(count_op(m, "Tanh"), 1);
    cr_assert_eq(m->nguards, 2);
    int guarded = 0;
    for (int i = 0; i < m->nnodes; i++) guarded += m->nodes[i].guard >= 0;
    cr_assert_geq(guarded, 8, "branch nodes tagged: %d", guarded);
    /* both bodies call their Flatten output "flat": the second one is renamed */
    int a = ba_model_find_value(m, "flat");
    cr_assert_geq(a, 0);
    int renamed = 0;
    for (int v = 0; v < m->nvalues; v++) renamed += !strncmp(m->values[v].name, "flat@", 5);
    cr_assert_eq(renamed, 1);
    ba_model_free(m);
}

Test(if_exec, layers_inside_bodies_are_layers) {
    ba_model_t *m = load(IFC "if_value.onnx");
    /* c1/c2: body initializers both called conv.weight (the else-body's renamed);
     * fa: a Constant node in the then-body; fb: outer */
    const char *names[] = {"conv.weight", "conv.weight@/If/else", "fa.weight", "fb.weight"};
    const char *ops[] = {"Conv", "Conv", "Gemm", "Gemm"};
    const int64_t params[] = {72, 72, 720, 720}, macs[] = {2592, 2592, 720, 720};
    cr_assert_eq(m->nlayers, 4);
    for (int k = 0; k < 4; k++) {
        int l = layer_index(m, names[k]);
        cr_assert_geq(l, 0, "%s missing", names[k]);
        cr_expect_str_eq(m->layers[l].op, ops[k]);
        cr_expect_eq(m->layers[l].params, params[k], "%s", names[k]);
        cr_expect_eq(m->layers[l].macs, macs[k], "%s macs %lld", names[k], (long long)m->layers[l].macs);
        cr_expect_geq(m->nodes[m->layers[l].node].guard, 0, "%s: its consumer is a branch node", names[k]);
    }
    ba_model_free(m);
    m = load(IFC "if_nested.onnx");
    cr_assert_eq(m->nlayers, 3);
    cr_assert_geq(layer_index(m, "w_inner"), 0);
    cr_assert_eq(m->nguards, 4);
    ba_model_free(m);
}

/* A plan's weights (overrides by value id) reach the layers inside a body:
 * zeroing the then-body's conv weight changes the positive inputs' output only. */
Test(if_exec, overrides_reach_body_weights) {
    ba_model_t *m = load(IFC "if_value.onnx");
    int l = layer_index(m, "conv.weight");
    cr_assert_geq(l, 0);
    ba_tensor_t **ov = calloc((size_t)m->nvalues, sizeof *ov);
    ba_error e = {0};
    const ba_tensor_t *w = m->values[m->layers[l].value].constant;
    ov[m->layers[l].value] = ba_tensor_new(BA_DT_F32, w->ndim, w->shape, &e);
    const char *xs[] = {IFC "if_value_pos_x.npy", IFC "if_value_neg_x.npy"};
    for (int k = 0; k < 2; k++) {
        ba_tensor_t *x = npy(xs[k]);
        ba_tensor_t *a = run1(m, x, NULL), *b = run1(m, x, ov);
        double d = rel_diff(b->data, a);
        if (k == 0)
            cr_expect_gt(d, 1e-3, "then-branch output unchanged by the override");
        else
            cr_expect_eq(d, 0.0, "else-branch output changed by a then-branch weight");
        ba_tensor_unref(a);
        ba_tensor_unref(b);
        ba_tensor_unref(x);
    }
    ba_tensor_unref(ov[m->layers[l].value]);
    free(ov);
    ba_model_free(m);
}

Test(if_exec, constant_shape_condition_is_inlined) {
    ba_model_t *m = load(IFC "if_shape_static.onnx");
    cr_assert_eq(count_op(m, "If"), 0);
    for (int i = 0; i < m->nnodes; i++) cr_assert_eq(m->nodes[i].guard, -1, "%s", m->nodes[i].name);
    cr_assert_eq(m->nlayers, 1, "the else-branch's layer is gone");
    cr_assert_eq(count_op(m, "ReduceSum"), 0, "the else-branch's nodes are gone");
    ba_model_free(m);
}

/* ---- gradients and HVPs through the taken branch ---- */

static void check_grad(const char *model, const char *x_npy, const char *npz_path, int hvp) {
    ba_model_t *m = load(model);
    ba_tensor_t *x = npy(x_npy);
    ba_npz_t *z = NULL;
    ba_error e = {0};
    cr_assert_eq(ba_npz_load(npz_path, &z, &e), BA_OK, "%s", e.msg);
    const ba_tensor_t *lab = ba_npz_get(z, "labels");
    int64_t *labels = malloc(sizeof(int64_t) * (size_t)lab->numel);
    for (int64_t i = 0; i < lab->numel; i++) labels[i] = ba_tensor_get_i64(lab, i);
    ba_loss_spec_t s = {.kind = BA_LOSS_CE, .output = 0, .labels = labels, .nlabels = lab->numel};
    int ng = 0, nh = 0;
    double wg = 0.0, wh = 0.0, wfd = 0.0;
    for (int k = 0; k < z->count; k++) {
        const char *name = z->members[k].name;
        if (strncmp(name, "g:", 2)) continue;
        int id = ba_model_find_value(m, name + 2);
        cr_assert_geq(id, 0, "%s", name);
        const ba_tensor_t *ref = z->members[k].tensor;
        float *g = calloc((size_t)ref->numel, sizeof(float));
        float *gp[1] = {g};
        cr_assert_eq(ba_grad_compute(m, &x, NULL, &s, 1, &id, gp, NULL, &e), BA_OK, "%s", e.msg);
        double d = rel_diff(g, ref);
        int zero = 1;
        for (int64_t i = 0; i < ref->numel; i++) zero &= ((const float *)ref->data)[i] == 0.0f;
        if (zero) {
            for (int64_t i = 0; i < ref->numel; i++) cr_expect_eq(g[i], 0.0f, "%s: branch not taken", name);
        } else {
            cr_expect_lt(d, GRAD_TOL, "%s %s: %.3g", npz_path, name, d);
            wg = fmax(wg, d);
        }
        ng++;
        free(g);
        char key[512];
        snprintf(key, sizeof key, "hv:%s", name + 2);
        const ba_tensor_t *hr = ba_npz_get(z, key);
        snprintf(key, sizeof key, "v:%s", name + 2);
        const ba_tensor_t *v = ba_npz_get(z, key);
        if (!hvp || !hr || !v) continue;
        float *hv = calloc((size_t)hr->numel, sizeof(float));
        cr_assert_eq(ba_grad_hvp(m, &x, NULL, &s, id, v->data, hv, &e), BA_OK, "%s", e.msg);
        d = rel_diff(hv, hr);
        cr_expect_lt(d, HVP_TOL, "%s H v for %s: %.3g", npz_path, name + 2, d);
        wh = fmax(wh, d);
        /* the central-difference cross-check keeps the base point's branch */
        ba_grad_session_t *ss = NULL;
        cr_assert_eq(ba_grad_session_new(m, &x, NULL, &s, &ss, &e), BA_OK, "%s", e.msg);
        cr_assert_eq(ba_grad_session_hvp_fd(ss, id, v->data, hv, &e), BA_OK, "%s", e.msg);
        double dfd = rel_diff(hv, hr);
        cr_expect_lt(dfd, 1e-2, "%s H v (central differences) for %s: %.3g", npz_path, name + 2, dfd);
        wfd = fmax(wfd, dfd);
        ba_grad_session_free(ss);
        free(hv);
        nh++;
    }
    cr_assert_gt(ng, 0);
    if (hvp) cr_assert_gt(nh, 0);
    fprintf(stderr, "if %s: worst relative error: gradient %.3g, H v %.3g (central differences %.3g)\n",
            npz_path, wg, wh, wfd);
    free(labels);
    ba_npz_free(z);
    ba_tensor_unref(x);
    ba_model_free(m);
}

Test(if_grad, value_model_both_branches) {
    check_grad(IFC "if_value.onnx", IFC "if_value_pos_x.npy", IFC "if_value_pos_grad.npz", 1);
    check_grad(IFC "if_value.onnx", IFC "if_value_neg_x.npy", IFC "if_value_neg_grad.npz", 1);
}

Test(if_grad, nested_if_all_paths) {
    const char *paths[] = {"pp", "pn", "n"};
    for (int k = 0; k < 3; k++) {
        char x[512], z[512];
        snprintf(x, sizeof x, IFC "nested_%s_x.npy", paths[k]);
        snprintf(z, sizeof z, IFC "nested_%s_grad.npz", paths[k]);
        check_grad(IFC "if_nested.onnx", x, z, 1);
    }
}

Test(if_grad, shape_model_both_branches) {
    check_grad(IFC "if_shape.onnx", IFC "if_shape_long_x.npy", IFC "if_shape_long_grad.npz", 1);
    check_grad(IFC "if_shape.onnx", IFC "if_shape_short_x.npy", IFC "if_shape_short_grad.npz", 1);
}

/* ---- CLI ---- */

Test(if_cli, inspect_lists_layers_inside_bodies) {
    ba_test_run_t r = ba_test_cli("inspect", IFC "if_value.onnx", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    const char *names[] = {"\"conv.weight\"", "\"conv.weight@/If/else\"", "\"fa.weight\"", "\"fb.weight\""};
    for (int k = 0; k < 4; k++) cr_expect(strstr(r.out, names[k]), "%s not in %s", names[k], r.out);
    ba_test_run_free(&r);
}

Test(if_cli, sensitivity_search_and_quantize_run, .timeout = 180) {
    char dir[512], db[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    ba_test_run_t r = ba_test_cli("--db", db, "-q", "sensitivity", IFC "if_value.onnx", "--data",
                                  IFC "if_value_pos_x.npy", "--method", "hessian", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    /* the then-branch's layers have curvature; the else-branch's never ran */
    cr_expect(strstr(r.out, "\"conv.weight\"") && strstr(r.out, "\"fb.weight\""), "%s", r.out);
    ba_test_run_free(&r);
    char plan[600], ref[600], q[600], out[600];
    snprintf(ref, sizeof ref, "%s/ref.npy", dir);
    snprintf(out, sizeof out, "%s/out.npy", dir);
    /* weights only (both formats), then with 8-bit activations (QDQ: the graph
     * input x read inside both bodies, "flat" made inside each, renamed in one) */
    for (int act = 0; act < 2; act++) {
        snprintf(plan, sizeof plan, "%s/plan%d.json", dir, act);
        r = ba_test_cli("--db", db, "-q", "search", IFC "if_value.onnx", "--data", IFC "if_value_neg_x.npy",
                        "--budget", "avg-bits=4", "--generations", "2", "--format", "json", "--plan-out",
                        plan, "--act-bits", act ? "8" : "32", NULL);
        cr_assert_eq(r.status, 0, "%s", r.err);
        cr_expect(strstr(r.out, "\"conv.weight@/If/else\""), "%s", r.out);
        ba_test_run_free(&r);
        const char *xs[] = {IFC "if_value_pos_x.npy", IFC "if_value_neg_x.npy"};
        const char *fmts[] = {"fakequant", "qdq"};
        for (int f = act; f < 2; f++)
            for (int k = 0; k < 2; k++) {
                snprintf(q, sizeof q, "%s/q_%s.onnx", dir, fmts[f]);
                r = ba_test_cli("-q", "quantize", IFC "if_value.onnx", "--plan", plan, "-o", q, "--format",
                                fmts[f], "--data", xs[k], NULL);
                cr_assert_eq(r.status, 0, "%s", r.err);
                ba_test_run_free(&r);
                r = ba_test_cli("-q", "eval", IFC "if_value.onnx", "--data", xs[k], "--plan", plan,
                                "--save-output", ref, NULL);
                cr_assert_eq(r.status, 0, "%s", r.err);
                ba_test_run_free(&r);
                r = ba_test_cli("-q", "eval", q, "--data", xs[k], "--save-output", out, NULL);
                cr_assert_eq(r.status, 0, "%s", r.err);
                ba_test_run_free(&r);
                ba_tensor_t *a = npy(ref), *b = npy(out);
                cr_expect_lt(rel_diff(b->data, a), 1e-5, "act %d %s %s: %.3g", act, fmts[f], xs[k],
                             rel_diff(b->data, a));
                ba_tensor_unref(b);
                if (run_ort(q, xs[k], out)) {
                    b = npy(out);
                    cr_expect_lt(rel_diff(b->data, a), OUT_TOL, "act %d %s %s: ONNX Runtime %.3g", act,
                                 fmts[f], xs[k], rel_diff(b->data, a));
                    ba_tensor_unref(b);
                }
                ba_tensor_unref(a);
            }
    }
    ba_test_rmtree(dir);
}

Test(if_cli, unsupported_ops_inside_bodies_are_named) {
    ba_test_run_t r = ba_test_cli("inspect", IFC "if_unsupported.onnx", NULL);
    cr_assert_eq(r.status, 2, "%s", r.err);
    const char *want[] = {"Unique (node 'unique_in_then')", "Loop (node 'loop_in_else')",
                          "NonMaxSuppression (node 'nms_in_loop')", "Hardmax (node 'hardmax_outside')"};
    for (int k = 0; k < 4; k++) cr_expect(strstr(r.err, want[k]), "'%s' not in: %s", want[k], r.err);
    ba_test_run_free(&r);
}

Test(if_cli, failing_body_names_the_if_and_the_node) {
    /* x4.npy sums to > 0: the then-body's Reshape to [3, 5] fails */
    ba_test_run_t r = ba_test_cli("eval", IFC "if_body_fails.onnx", "--data", IFC "x4.npy", NULL);
    cr_assert_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "failing_if") && strstr(r.err, "then_branch") && strstr(r.err, "bad_reshape"),
              "%s", r.err);
    ba_test_run_free(&r);
}

Test(if_cli, condition_not_a_scalar_is_refused) {
    ba_test_run_t r = ba_test_cli("eval", IFC "if_bad_cond.onnx", "--data", IFC "x3.npy", NULL);
    cr_assert_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "vec_if") && strstr(r.err, "condition"), "%s", r.err);
    ba_test_run_free(&r);
}

Test(if_cli, branches_with_different_output_counts_are_refused) {
    ba_test_run_t r = ba_test_cli("inspect", IFC "if_bad_outputs.onnx", NULL);
    cr_assert_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "uneven_if") && strstr(r.err, "then_branch has 2 outputs"), "%s", r.err);
    ba_test_run_free(&r);
}

/* Every data-driven method: the layers of the branch that never ran (the
 * else-body's conv, fb on positive inputs) cost nothing; the taken branch's layers do. */
Test(if_cli, untaken_branch_layers_have_no_sensitivity, .timeout = 180) {
    char dir[512], db[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    const char *methods[] = {"hessian", "fisher", "lrp", "act", "measured"};
    for (int k = 0; k < 5; k++) {
        ba_test_run_t r =
            ba_test_cli("--db", db, "-q", "sensitivity", IFC "if_value.onnx", "--data",
                        IFC "if_value_pos_x.npy", "--method", methods[k], "--format", "csv", NULL);
        cr_assert_eq(r.status, 0, "%s: %s", methods[k], r.err);
        int rows = 0;
        for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n")) {
            char name[64];
            int bits;
            double cost;
            if (sscanf(line, "%63[^,],%d,%lf", name, &bits, &cost) != 3 || bits != 4) continue;
            rows++;
            if (!strcmp(name, "conv.weight@/If/else") || !strcmp(name, "fb.weight"))
                cr_expect_eq(cost, 0.0, "%s: %s costs %g", methods[k], name, cost);
            else
                cr_expect_gt(cost, 0.0, "%s: %s costs %g", methods[k], name, cost);
        }
        cr_expect_eq(rows, 4, "%s: %s", methods[k], r.out);
        ba_test_run_free(&r);
    }
    ba_test_rmtree(dir);
}

/* silero VAD's form: the condition compares a scalar int64 input (the sample
 * rate), fed with the data (here through the API). */
Test(if_exec, condition_on_a_scalar_input) {
    ba_model_t *m = load(IFC "if_sr.onnx");
    cr_assert_eq(m->nlayers, 2);
    ba_tensor_t *x = npy(IFC "sr_x.npy");
    const int rates[] = {16000, 8000};
    for (int k = 0; k < 2; k++) {
        char p[512];
        ba_error e = {0};
        ba_tensor_t *sr = ba_tensor_new(BA_DT_I64, 0, NULL, &e); /* 0-d, as the model declares */
        ((int64_t *)sr->data)[0] = rates[k];
        snprintf(p, sizeof p, IFC "sr_y%d.npy", rates[k]);
        ba_tensor_t *ref = npy(p);
        ba_tensor_t *in[2] = {x, sr}, *out[1] = {0};
        cr_assert_eq(ba_model_run(m, in, NULL, out, &e), BA_OK, "%s", e.msg);
        cr_expect_lt(rel_diff(out[0]->data, ref), OUT_TOL, "sr=%d", rates[k]);
        ba_tensor_unref(out[0]);
        ba_tensor_unref(ref);
        ba_tensor_unref(sr);
    }
    ba_tensor_unref(x);
    ba_model_free(m);
}

Test(if_cli, too_deep_nesting_is_refused) {
    ba_test_run_t r = ba_test_cli("inspect", IFC "if_deep.onnx", NULL);
    cr_assert_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "nested"), "%s",
              r.err); /* the wire-format depth bound (onnx.c) or the If depth bound */
    ba_test_run_free(&r);
}
