/* Reverse-mode gradients, losses and HVPs of model/grad.h against PyTorch
 * float64 references (tests/fixtures/grad_refs, made by make_grad_refs.py):
 * the digits MLP and CNN, a CNN with BatchNormalization nodes, the zoo ViT
 * and GPT; HVPs also through Clip / HardSwish / MaxPool (zoo mobilenetv2,
 * mobilenetv3, squeezenet). Errors are max |ours − ref| / max |ref| per tensor. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "eval/npy.h"
#include "model/grad.h"

/* Tolerances of the brief: gradients 1e-4, HVPs 1e-3 (relative to max |ref|). */
#define GRAD_TOL 1e-4
#define HVP_TOL 1e-3
/* The forward-over-reverse HVP is exact up to float32 rounding (measured
 * worst 1.9e-5 over the fixtures, a depthwise layer of mobilenetv2). */
#define HVP_EXACT_TOL 5e-5
/* Central differences on the zoo CNNs below: with every piecewise-linear op
 * frozen the error is the step's O(eps²) truncation through the saturated
 * softmax (measured 5.0e-2 / 7.0e-3 / 3.2e-4 on mobilenetv2 / v3 /
 * squeezenet, scaling as eps²); unfrozen Clip / HardSwish / MaxPool gave
 * 13 / 1.4 / 53. */
#define HVP_FD_ZOO_TOL 0.1
#define LOSS_TOL 1e-5
/* A reference gradient below this fraction of the largest one is a zero (see check_grads). */
#define ZERO_GRAD_REL 1e-9

typedef struct {
    ba_model_t *m;
    ba_npz_t *z;
    ba_tensor_t *x;
    int64_t *labels;
    int64_t nlabels;
} fix_t;

static void fix_open(fix_t *f, const char *model, const char *npz) {
    ba_error e = {0};
    memset(f, 0, sizeof *f);
    cr_assert_eq(ba_model_load(model, NULL, &f->m, &e), BA_OK, "%s", e.msg);
    cr_assert_eq(ba_npz_load(npz, &f->z, &e), BA_OK, "%s", e.msg);
    f->x = ba_npz_get(f->z, "x");
    ba_tensor_t *y = ba_npz_get(f->z, "y");
    cr_assert(f->x && y);
    f->nlabels = y->numel;
    f->labels = malloc(sizeof(int64_t) * (size_t)y->numel);
    for (int64_t i = 0; i < y->numel; i++) f->labels[i] = ba_tensor_get_i64(y, i);
}

static void fix_close(fix_t *f) {
    free(f->labels);
    ba_npz_free(f->z);
    ba_model_free(f->m);
}

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

static ba_loss_spec_t spec_of(const fix_t *f, const char *kind) {
    ba_loss_spec_t s = {
        .output = 0, .labels = f->labels, .nlabels = f->nlabels, .ref = ba_npz_get(f->z, "ref")};
    s.kind = !strcmp(kind, "ce")          ? BA_LOSS_CE
             : !strcmp(kind, "ce_argmax") ? BA_LOSS_CE_ARGMAX
             : !strcmp(kind, "kl")        ? BA_LOSS_KL
                                          : BA_LOSS_MSE;
    return s;
}

/* Every float initializer the references hold and the engine keeps as a
 * constant: gradient vs PyTorch; returns the worst error seen. */
static double check_grads(const char *model, const char *npz, const char *kind) {
    fix_t f;
    fix_open(&f, model, npz);
    char key[512];
    int req[256], n = 0;
    const ba_tensor_t *refs[256];
    for (int k = 0; k < f.z->count && n < 256; k++) {
        size_t pl = strlen(kind) + 3;
        snprintf(key, sizeof key, "g_%s:", kind);
        if (strncmp(f.z->members[k].name, key, pl)) continue;
        int id = ba_model_find_value(f.m, f.z->members[k].name + pl);
        if (id < 0 || !f.m->values[id].constant) continue;
        /* Constants consumed only by folded nodes (ViT's cls_token behind a
         * constant Expand) have no node left to carry a gradient: skipped. */
        int used = 0;
        for (int i = 0; i < f.m->nnodes && !used; i++)
            for (int j = 0; j < f.m->nodes[i].nin; j++) used |= f.m->nodes[i].inputs[j] == id;
        if (!used) continue;
        req[n] = id;
        refs[n++] = f.z->members[k].tensor;
    }
    cr_assert_gt(n, 0);
    float **g = calloc((size_t)n, sizeof *g);
    for (int k = 0; k < n; k++) g[k] = calloc((size_t)refs[k]->numel, sizeof(float));
    ba_loss_spec_t s = spec_of(&f, kind);
    ba_error e = {0};
    double loss = 0.0, worst = 0.0;
    ba_tensor_t *in[1] = {f.x};
    cr_assert_eq(ba_grad_compute(f.m, in, NULL, &s, n, req, g, &loss, &e), BA_OK, "%s", e.msg);
    snprintf(key, sizeof key, "loss_%s", kind);
    double lref = ba_tensor_get_f64(ba_npz_get(f.z, key), 0);
    cr_expect_lt(fabs(loss - lref), LOSS_TOL * fmax(1.0, fabs(lref)), "%s %s: loss %.9g vs torch %.9g", npz,
                 kind, loss, lref);
    /* A gradient that is zero in exact arithmetic (the bias of a conv followed
     * by InstanceNormalization: the norm removes it) has a reference at
     * float64 rounding; it is compared on the scale of the others. */
    double gmax = 0.0;
    for (int k = 0; k < n; k++)
        for (int64_t i = 0; i < refs[k]->numel; i++)
            gmax = fmax(gmax, fabs(((const float *)refs[k]->data)[i]));
    for (int k = 0; k < n; k++) {
        double mr = 0.0, md = 0.0;
        for (int64_t i = 0; i < refs[k]->numel; i++) {
            mr = fmax(mr, fabs(((const float *)refs[k]->data)[i]));
            md = fmax(md, fabs((double)g[k][i] - ((const float *)refs[k]->data)[i]));
        }
        double r = mr < ZERO_GRAD_REL * gmax ? md / gmax : rel_err(g[k], refs[k]);
        if (r > worst) worst = r;
        cr_expect_lt(r, GRAD_TOL, "%s %s: dL/d%s relative error %.3g", npz, kind, f.m->values[req[k]].name,
                     r);
        free(g[k]);
    }
    free(g);
    fprintf(stderr, "grad %s %s: %d tensors, worst relative error %.3g, loss %.8f (torch %.8f)\n", npz, kind,
            n, worst, loss, lref);
    fix_close(&f);
    return worst;
}

typedef ba_status (*hvp_fn)(ba_grad_session_t *, int, const float *, float *, ba_error *);

static double check_hvps_with(const char *model, const char *npz, hvp_fn hvp, double tol, const char *how) {
    fix_t f;
    fix_open(&f, model, npz);
    ba_loss_spec_t s = spec_of(&f, "ce");
    ba_tensor_t *in[1] = {f.x};
    ba_grad_session_t *sess = NULL;
    ba_error e = {0};
    cr_assert_eq(ba_grad_session_new(f.m, in, NULL, &s, &sess, &e), BA_OK, "%s", e.msg);
    double worst = 0.0;
    int n = 0;
    for (int k = 0; k < f.z->count; k++) {
        const char *nm = f.z->members[k].name;
        if (strncmp(nm, "hv:", 3)) continue;
        char key[512];
        snprintf(key, sizeof key, "v:%s", nm + 3);
        const ba_tensor_t *v = ba_npz_get(f.z, key), *ref = f.z->members[k].tensor;
        int id = ba_model_find_value(f.m, nm + 3);
        cr_assert(v && id >= 0, "%s: %s", npz, nm);
        float *hv = calloc((size_t)ref->numel, sizeof(float));
        cr_assert_eq(hvp(sess, id, v->data, hv, &e), BA_OK, "%s", e.msg);
        double r = rel_err(hv, ref);
        cr_expect_lt(r, tol, "%s: H v (%s) for %s relative error %.3g", npz, how, nm + 3, r);
        if (r > worst) worst = r;
        free(hv);
        n++;
    }
    cr_assert_gt(n, 0);
    fprintf(stderr, "hvp %s (%s): %d layers, worst relative error %.3g\n", npz, how, n, worst);
    ba_grad_session_free(sess);
    fix_close(&f);
    return worst;
}

static double check_hvps(const char *model, const char *npz) {
    return check_hvps_with(model, npz, ba_grad_session_hvp, HVP_EXACT_TOL, "exact");
}

#define FX(p) BA_FIXTURES "/" p
#define GR(p) BA_FIXTURES "/grad_refs/" p

Test(grad, mlp_gradients_match_pytorch_for_every_loss) {
    check_grads(FX("digits/mlp_dyn.onnx"), GR("mlp.npz"), "ce");
    check_grads(FX("digits/mlp_dyn.onnx"), GR("mlp.npz"), "ce_argmax");
    check_grads(FX("digits/mlp_dyn.onnx"), GR("mlp.npz"), "kl");
    check_grads(FX("digits/mlp_dyn.onnx"), GR("mlp.npz"), "mse");
}

Test(grad, cnn_gradients_match_pytorch) {
    check_grads(FX("digits/cnn_dyn.onnx"), GR("cnn.npz"), "ce");
    check_grads(FX("digits/cnn_dyn.onnx"), GR("cnn.npz"), "kl");
}

Test(grad, batchnorm_cnn_gradients_match_pytorch) {
    check_grads(GR("cnn_bn.onnx"), GR("cnn_bn.npz"), "ce");
}

Test(grad, vit_gradients_match_pytorch) {
    check_grads(FX("zoo/vit.onnx"), GR("vit.npz"), "ce");
}

Test(grad, gpt_gradients_match_pytorch) {
    check_grads(FX("zoo/gpt.onnx"), GR("gpt.npz"), "ce");
}

Test(grad, hvp_matches_pytorch_double_backward) {
    check_hvps(FX("digits/mlp_dyn.onnx"), GR("mlp.npz"));
    check_hvps(FX("digits/cnn_dyn.onnx"), GR("cnn.npz"));
    check_hvps(GR("cnn_bn.onnx"), GR("cnn_bn.npz"));
    check_hvps(FX("zoo/vit.onnx"), GR("vit.npz"));
    check_hvps(FX("zoo/gpt.onnx"), GR("gpt.npz"));
}

/* Piecewise-linear ops other than ReLU keep the base point's pattern in both
 * HVP methods (autograd's second derivative is 0 on the piece): ReLU6 as
 * Clip, HardSwish/HardSigmoid, MaxPool (ceil_mode), probes on the first conv
 * (all of them downstream) and a middle one. */
Test(grad, hvp_through_clip_hardswish_maxpool_matches_pytorch) {
    static const char *const m[][2] = {{FX("zoo/mobilenetv2.onnx"), GR("mobilenetv2.npz")},
                                       {FX("zoo/mobilenetv3_op17_dyn.onnx"), GR("mobilenetv3.npz")},
                                       {FX("zoo/squeezenet.onnx"), GR("squeezenet.npz")}};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        check_hvps(m[i][0], m[i][1]);
        check_hvps_with(m[i][0], m[i][1], ba_grad_session_hvp_fd, HVP_FD_ZOO_TOL, "central differences");
    }
}

/* The central-difference cross-check agrees with PyTorch on the original fixtures too. */
Test(grad, central_difference_hvp_matches_pytorch) {
    check_hvps_with(FX("digits/cnn_dyn.onnx"), GR("cnn.npz"), ba_grad_session_hvp_fd, HVP_TOL,
                    "central differences");
    check_hvps_with(FX("zoo/vit.onnx"), GR("vit.npz"), ba_grad_session_hvp_fd, HVP_TOL,
                    "central differences");
}

/* Tr(H) of the MLP's last layer from one HVP per basis vector vs the exact
 * trace (PyTorch Hessian diagonal). */
Test(grad, exact_layer_trace_from_hvps_matches_pytorch) {
    fix_t f;
    fix_open(&f, FX("digits/mlp_dyn.onnx"), GR("mlp.npz"));
    ba_loss_spec_t s = spec_of(&f, "ce");
    ba_tensor_t *in[1] = {f.x};
    ba_grad_session_t *sess = NULL;
    ba_error e = {0};
    cr_assert_eq(ba_grad_session_new(f.m, in, NULL, &s, &sess, &e), BA_OK, "%s", e.msg);
    int id = ba_model_find_value(f.m, "fc3.weight");
    const int64_t n = f.m->values[id].constant->numel;
    float *v = calloc((size_t)n, sizeof(float)), *hv = calloc((size_t)n, sizeof(float));
    double tr = 0.0;
    for (int64_t i = 0; i < n; i++) {
        v[i] = 1.0f;
        cr_assert_eq(ba_grad_session_hvp(sess, id, v, hv, &e), BA_OK, "%s", e.msg);
        tr += hv[i];
        v[i] = 0.0f;
    }
    double ref = ba_tensor_get_f64(ba_npz_get(f.z, "tr:fc3.weight"), 0);
    fprintf(stderr, "trace fc3.weight: %.6f (torch %.6f, rel %.2g)\n", tr, ref, fabs(tr - ref) / ref);
    cr_expect_lt(fabs(tr - ref), HVP_TOL * fabs(ref));
    free(v);
    free(hv);
    ba_grad_session_free(sess);
    fix_close(&f);
}

/* Σ_i g_i² two ways: the fixed-batch ViT (one forward, a masked backward per
 * sample) and each sample alone through the dynamic-batch export. */
Test(grad, per_sample_squared_gradients_agree_across_paths) {
    fix_t f;
    fix_open(&f, FX("zoo/vit.onnx"), GR("vit.npz"));
    ba_model_t *dyn = NULL;
    ba_error e = {0};
    cr_assert_eq(ba_model_load(FX("zoo/vit_dyn.onnx"), NULL, &dyn, &e), BA_OK, "%s", e.msg);
    const int id = f.m->layers[0].value, idd = ba_model_find_value(dyn, f.m->values[id].name);
    const int64_t n = f.m->values[id].constant->numel, N = f.x->shape[0];
    float *sq = calloc((size_t)n, sizeof(float)), *g = calloc((size_t)n, sizeof(float));
    double *want = calloc((size_t)n, sizeof(double));
    ba_loss_spec_t s = spec_of(&f, "ce");
    ba_grad_opts_t o = {.per_sample_sq = 1};
    ba_tensor_t *in[1] = {f.x};
    double loss;
    cr_assert_eq(ba_grad_compute(f.m, in, &o, &s, 1, &id, &sq, &loss, &e), BA_OK, "%s", e.msg);
    const int64_t per = f.x->numel / N;
    for (int64_t i = 0; i < N; i++) {
        int64_t sh[BA_MAX_DIMS];
        memcpy(sh, f.x->shape, sizeof sh);
        sh[0] = 1;
        ba_tensor_t *xi = ba_tensor_wrap(BA_DT_F32, f.x->ndim, sh, (float *)f.x->data + i * per, &e);
        ba_loss_spec_t si = s;
        si.labels = f.labels + i;
        si.nlabels = 1;
        ba_tensor_t *ini[1] = {xi};
        cr_assert_eq(ba_grad_compute(dyn, ini, NULL, &si, 1, &idd, &g, NULL, &e), BA_OK, "%s", e.msg);
        for (int64_t k = 0; k < n; k++) want[k] += (double)g[k] * g[k];
        ba_tensor_unref(xi);
    }
    double md = 0.0, mw = 0.0;
    for (int64_t k = 0; k < n; k++) {
        md = fmax(md, fabs(sq[k] - want[k]));
        mw = fmax(mw, fabs(want[k]));
    }
    cr_expect_lt(md / mw, GRAD_TOL, "per-sample squares differ: %.3g", md / mw);
    /* and the dynamic model's own per-sample path */
    cr_assert_eq(ba_grad_compute(dyn, in, &o, &s, 1, &idd, &sq, &loss, &e), BA_OK, "%s", e.msg);
    md = 0.0;
    for (int64_t k = 0; k < n; k++) md = fmax(md, fabs(sq[k] - want[k]));
    cr_expect_lt(md / mw, GRAD_TOL, "per-sample squares (dynamic path) differ: %.3g", md / mw);
    free(sq);
    free(g);
    free(want);
    ba_model_free(dyn);
    fix_close(&f);
}

Test(grad, unsupported_ops_on_the_path_are_all_named) {
    ba_model_t *m = NULL;
    ba_error e = {0};
    cr_assert_eq(ba_model_load(GR("unsupported.onnx"), NULL, &m, &e), BA_OK, "%s", e.msg);
    int64_t sh[2] = {3, 4};
    ba_tensor_t *x = ba_tensor_new(BA_DT_F32, 2, sh, &e);
    ba_tensor_t *ref = NULL;
    int64_t rs[2] = {3, 4};
    ref = ba_tensor_new(BA_DT_F32, 2, rs, &e);
    ba_loss_spec_t s = {.kind = BA_LOSS_MSE, .ref = ref};
    int id = ba_model_find_value(m, "W");
    float g[16];
    float *gp = g;
    ba_tensor_t *in[1] = {x};
    cr_assert_eq(ba_grad_compute(m, in, NULL, &s, 1, &id, &gp, NULL, &e), BA_ERR_UNSUPPORTED);
    cr_expect(strstr(e.msg, "Softsign") && strstr(e.msg, "CumSum"), "%s", e.msg);
    ba_tensor_unref(x);
    ba_tensor_unref(ref);
    ba_model_free(m);
}

Test(grad, labels_of_wrong_length_or_range_are_input_errors) {
    fix_t f;
    fix_open(&f, FX("digits/mlp_dyn.onnx"), GR("mlp.npz"));
    ba_loss_spec_t s = spec_of(&f, "ce");
    int id = f.m->layers[0].value;
    float *g = calloc((size_t)f.m->values[id].constant->numel, sizeof(float));
    ba_tensor_t *in[1] = {f.x};
    ba_error e = {0};
    s.nlabels = f.nlabels - 1;
    cr_expect_eq(ba_grad_compute(f.m, in, NULL, &s, 1, &id, &g, NULL, &e), BA_ERR_INPUT);
    cr_expect(strstr(e.msg, "labels"), "%s", e.msg);
    s.nlabels = f.nlabels;
    f.labels[3] = 10;
    cr_expect_eq(ba_grad_compute(f.m, in, NULL, &s, 1, &id, &g, NULL, &e), BA_ERR_INPUT);
    cr_expect(strstr(e.msg, "outside [0, 10)"), "%s", e.msg);
    ba_grad_opts_t o = {.per_sample_sq = 1};
    cr_expect_eq(ba_grad_compute(f.m, in, &o, &s, 1, &id, &g, NULL, &e), BA_ERR_INPUT);
    free(g);
    fix_close(&f);
}

/* Ops without a tangent rule (LayerNormalization here) take grad_hvp.c's
 * per-op central difference inside the exact HVP; the whole-model central
 * difference is an independent check (the opset-17 ViT export fuses its
 * LayerNorms; an early layer has all of them downstream). */
Test(grad, hvp_with_fallback_ops_agrees_with_central_differences) {
    fix_t f;
    fix_open(&f, FX("zoo/vit_op17_dyn.onnx"), GR("vit.npz"));
    ba_loss_spec_t s = spec_of(&f, "ce");
    ba_tensor_t *in[1] = {f.x};
    ba_grad_session_t *sess = NULL;
    ba_error e = {0};
    cr_assert_eq(ba_grad_session_new(f.m, in, NULL, &s, &sess, &e), BA_OK, "%s", e.msg);
    int nln = 0;
    for (int i = 0; i < f.m->nnodes; i++) nln += !strcmp(f.m->nodes[i].op_type, "LayerNormalization");
    cr_assert_gt(nln, 0, "the export is expected to hold LayerNormalization nodes");
    const ba_layer_t *L = &f.m->layers[1];
    float *v = malloc(sizeof(float) * (size_t)L->params), *a = malloc(sizeof(float) * (size_t)L->params),
          *b = malloc(sizeof(float) * (size_t)L->params);
    ba_rng_t rng;
    ba_rng_seed(&rng, 7);
    for (int64_t i = 0; i < L->params; i++) v[i] = (float)ba_rng_rademacher(&rng);
    cr_assert_eq(ba_grad_session_hvp(sess, L->value, v, a, &e), BA_OK, "%s", e.msg);
    cr_assert_eq(ba_grad_session_hvp_fd(sess, L->value, v, b, &e), BA_OK, "%s", e.msg);
    double md = 0.0, mr = 0.0, vhv = 0.0, dot = 0.0;
    for (int64_t i = 0; i < L->params; i++) {
        md = fmax(md, fabs((double)a[i] - b[i]));
        mr = fmax(mr, fabs((double)b[i]));
        dot += (double)v[i] * a[i];
    }
    cr_assert_eq(ba_grad_session_vhv(sess, L->value, v, &vhv, &e), BA_OK, "%s", e.msg);
    fprintf(
        stderr,
        "hvp vit_op17 %s (%d LayerNorms downstream): exact vs central differences %.3g, vhv %.6g vs %.6g\n",
        L->name, nln, md / mr, vhv, dot);
    cr_expect_lt(md / mr, HVP_TOL);
    cr_expect_lt(fabs(vhv - dot), 1e-5 * fabs(dot));
    free(v);
    free(a);
    free(b);
    ba_grad_session_free(sess);
    fix_close(&f);
}

/* Tile, Pad (reflect) and nearest Resize backward through their element
 * maps, against central differences of the MSE loss (the graph is linear in
 * W, so the loss is quadratic and the difference exact up to rounding); the
 * two HVP methods agree on it too. */
Test(grad, tile_pad_resize_gradients_match_central_differences) {
    ba_model_t *m = NULL;
    ba_error e = {0};
    cr_assert_eq(ba_model_load(GR("movement.onnx"), NULL, &m, &e), BA_OK, "%s", e.msg);
    enum { N = 3, D = 4, NW = 16 };
    int64_t xs[2] = {N, D}, rs[2] = {2 * N, 14};
    ba_tensor_t *x = ba_tensor_new(BA_DT_F32, 2, xs, &e), *ref = ba_tensor_new(BA_DT_F32, 2, rs, &e);
    ba_rng_t rng;
    ba_rng_seed(&rng, 11);
    for (int64_t i = 0; i < x->numel; i++) ((float *)x->data)[i] = (float)ba_rng_normal(&rng);
    for (int64_t i = 0; i < ref->numel; i++) ((float *)ref->data)[i] = (float)ba_rng_normal(&rng);
    ba_loss_spec_t s = {.kind = BA_LOSS_MSE, .ref = ref};
    int id = ba_model_find_value(m, "W");
    cr_assert_geq(id, 0);
    float g[NW], *gp = g;
    ba_tensor_t *in[1] = {x};
    double l0 = 0.0;
    cr_assert_eq(ba_grad_compute(m, in, NULL, &s, 1, &id, &gp, &l0, &e), BA_OK, "%s", e.msg);
    /* central differences of the loss, one weight at a time */
    const ba_tensor_t *W = m->values[id].constant;
    ba_tensor_t *w2 = ba_tensor_clone(W, &e);
    ba_tensor_t **ov = calloc((size_t)m->nvalues, sizeof *ov);
    ov[id] = w2;
    const double h = 1e-2;
    double md = 0.0, mg = 0.0;
    for (int k = 0; k < NW; k++) {
        double lp = 0.0, lm = 0.0;
        float *wv = w2->data;
        const float w0 = wv[k];
        for (int sgn = -1; sgn <= 1; sgn += 2) {
            wv[k] = (float)(w0 + sgn * h);
            ba_grad_session_t *ss = NULL;
            cr_assert_eq(ba_grad_session_new(m, in, ov, &s, &ss, &e), BA_OK, "%s", e.msg);
            *(sgn > 0 ? &lp : &lm) = ba_grad_session_loss(ss);
            ba_grad_session_free(ss);
        }
        wv[k] = w0;
        const double fd = (lp - lm) / ((double)(float)(w0 + h) - (double)(float)(w0 - h));
        md = fmax(md, fabs(fd - g[k]));
        mg = fmax(mg, fabs(g[k]));
    }
    fprintf(stderr, "grad tile/pad/resize: max |g - central difference| / max |g| = %.3g\n", md / mg);
    cr_expect_lt(md / mg, GRAD_TOL * 10);
    /* HVPs: exact vs central differences (both exact for a quadratic loss) */
    ba_grad_session_t *ss = NULL;
    cr_assert_eq(ba_grad_session_new(m, in, NULL, &s, &ss, &e), BA_OK, "%s", e.msg);
    float v[NW], a[NW], b[NW];
    for (int k = 0; k < NW; k++) v[k] = (float)ba_rng_rademacher(&rng);
    cr_assert_eq(ba_grad_session_hvp(ss, id, v, a, &e), BA_OK, "%s", e.msg);
    cr_assert_eq(ba_grad_session_hvp_fd(ss, id, v, b, &e), BA_OK, "%s", e.msg);
    double hd = 0.0, hm = 0.0;
    for (int k = 0; k < NW; k++) {
        hd = fmax(hd, fabs((double)a[k] - b[k]));
        hm = fmax(hm, fabs((double)a[k]));
    }
    cr_expect_lt(hd / hm, HVP_TOL, "hvp exact vs central differences %.3g", hd / hm);
    ba_grad_session_free(ss);
    free(ov);
    ba_tensor_unref(w2);
    ba_tensor_unref(x);
    ba_tensor_unref(ref);
    ba_model_free(m);
}

/* ---- decoder ops: ConvTranspose, InstanceNormalization, Resize ---- */

/* The model's output on the stored input vs the reference `out` (relative to max |out|). */
static double check_output(const char *model, const char *npz) {
    fix_t f;
    fix_open(&f, model, npz);
    const ba_tensor_t *ref = ba_npz_get(f.z, "out");
    cr_assert(ref, "%s: no out", npz);
    ba_tensor_t *in[1] = {f.x}, *out[1] = {NULL};
    ba_error e = {0};
    cr_assert_eq(ba_model_run(f.m, in, NULL, out, &e), BA_OK, "%s", e.msg);
    cr_assert_eq(out[0]->numel, ref->numel, "%s: output size", npz);
    double r = rel_err(out[0]->data, ref);
    cr_expect_lt(r, GRAD_TOL, "%s: output relative error %.3g", npz, r);
    ba_tensor_unref(out[0]);
    fix_close(&f);
    return r;
}

/* The digits segmenter (PyTorch export): ConvTranspose (plain and grouped with
 * output_padding), InstanceNormalization with and without affine parameters,
 * bilinear / bicubic Resize with align_corners on and off. */
Test(grad, decoder_gradients_and_hvps_match_pytorch) {
    check_grads(GR("decoder.onnx"), GR("decoder.npz"), "ce");
    check_grads(GR("decoder.onnx"), GR("decoder.npz"), "mse");
    check_hvps(GR("decoder.onnx"), GR("decoder.npz"));
}

/* One graph per op form (make_grad_refs.py op_cases): the forward, dL/d(input)
 * (the xb initializer added to the data), dL/dW of every initializer, and HVPs
 * w.r.t. the input and the weights, exact (forward-over-reverse). */
Test(grad, decoder_op_forms_match_pytorch) {
    static const char *const cases[] = {"convt_grouped", "convt_outshape", "convt_1d_same", "convt_3d",
                                        "instnorm",      "resize_cubic",   "resize_linear", "resize_nearest",
                                        "resize_op19",   "resize10",       "upsample9",     "convt_autopad"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char model[512], npz[512];
        snprintf(model, sizeof model, GR("op_%s.onnx"), cases[i]);
        snprintf(npz, sizeof npz, GR("op_%s.npz"), cases[i]);
        double o = check_output(model, npz);
        double g = fmax(check_grads(model, npz, "ce"), check_grads(model, npz, "mse"));
        double h = check_hvps(model, npz);
        fprintf(stderr, "op %s: output %.3g, gradients %.3g, hvps %.3g\n", cases[i], o, g, h);
    }
}

/* The exact InstanceNormalization rule agrees with the whole-model central
 * difference on the decoder too (an early conv: every norm is downstream). */
Test(grad, decoder_exact_hvp_agrees_with_central_differences) {
    check_hvps_with(GR("decoder.onnx"), GR("decoder.npz"), ba_grad_session_hvp_fd, HVP_TOL,
                    "central differences");
}

/* ba_grad_session_hvp_multi: a probe on one constant alone gives that block's
 * H v (as ba_grad_session_hvp, itself checked against PyTorch above); the
 * product is linear in the probe; the cross blocks are each other's
 * transposes (u·H_ab w = w·H_ba u). */
static void check_hvp_multi(const char *model, const char *npz) {
    fix_t f;
    fix_open(&f, model, npz);
    ba_loss_spec_t s = spec_of(&f, "ce");
    ba_tensor_t *in[1] = {f.x};
    ba_grad_session_t *sess = NULL;
    ba_error e = {0};
    cr_assert_eq(ba_grad_session_new(f.m, in, NULL, &s, &sess, &e), BA_OK, "%s", e.msg);
    const int L = f.m->nlayers;
    cr_assert_geq(L, 2);
    int *ids = calloc((size_t)L, sizeof *ids);
    float **u = calloc((size_t)L, sizeof *u), **z = calloc((size_t)L, sizeof *z);
    float **h1 = calloc((size_t)L, sizeof *h1), **h2 = calloc((size_t)L, sizeof *h2);
    float **h12 = calloc((size_t)L, sizeof *h12);
    ba_rng_t rng;
    ba_rng_seed(&rng, 7);
    for (int l = 0; l < L; l++) {
        const int64_t P = f.m->layers[l].params;
        ids[l] = f.m->layers[l].value;
        u[l] = malloc((size_t)P * sizeof(float));
        z[l] = calloc((size_t)P, sizeof(float));
        h1[l] = malloc((size_t)P * sizeof(float));
        h2[l] = malloc((size_t)P * sizeof(float));
        h12[l] = malloc((size_t)P * sizeof(float));
        for (int64_t i = 0; i < P; i++) u[l][i] = (float)ba_rng_rademacher(&rng);
    }
    const int a = 0, b = L - 1;
    /* v1 = u on layer a only, v2 = u on layer b only, v12 = both */
    const float **v1 = calloc((size_t)L, sizeof *v1), **v2 = calloc((size_t)L, sizeof *v2);
    const float **v12 = calloc((size_t)L, sizeof *v12);
    for (int l = 0; l < L; l++) {
        v1[l] = l == a ? u[l] : z[l];
        v2[l] = l == b ? u[l] : z[l];
        v12[l] = (l == a || l == b) ? u[l] : z[l];
    }
    cr_assert_eq(ba_grad_session_hvp_multi(sess, L, ids, v1, h1, &e), BA_OK, "%s", e.msg);
    cr_assert_eq(ba_grad_session_hvp_multi(sess, L, ids, v2, h2, &e), BA_OK, "%s", e.msg);
    cr_assert_eq(ba_grad_session_hvp_multi(sess, L, ids, v12, h12, &e), BA_OK, "%s", e.msg);
    /* the diagonal block against the single-constant HVP */
    const int64_t Pa = f.m->layers[a].params, Pb = f.m->layers[b].params;
    float *single = malloc((size_t)Pa * sizeof(float));
    cr_assert_eq(ba_grad_session_hvp(sess, ids[a], u[a], single, &e), BA_OK, "%s", e.msg);
    double md = 0, mr = 0;
    for (int64_t i = 0; i < Pa; i++) {
        md = fmax(md, fabs((double)h1[a][i] - single[i]));
        mr = fmax(mr, fabs((double)single[i]));
    }
    cr_expect(mr > 0 && md <= 1e-5 * mr,
              "%s: block %d of the multi HVP differs from the HVP by %.3g (max %.3g)", npz, a, md, mr);
    /* linearity: H(v1 + v2) = H v1 + H v2 on every block */
    for (int l = 0; l < L; l++) {
        double d = 0, r = 0;
        for (int64_t i = 0; i < f.m->layers[l].params; i++) {
            d = fmax(d, fabs((double)h12[l][i] - h1[l][i] - h2[l][i]));
            r = fmax(r, fabs((double)h12[l][i]));
        }
        cr_expect(d <= 1e-4 * r + 1e-12, "%s: layer %d: H(v1+v2) - Hv1 - Hv2 = %.3g (max %.3g)", npz, l, d,
                  r);
    }
    /* symmetry of the cross blocks: u_b·(H_ba u_a) = u_a·(H_ab u_b), and nonzero */
    double ba_ = 0, ab = 0;
    for (int64_t i = 0; i < Pb; i++) ba_ += (double)u[b][i] * h1[b][i];
    for (int64_t i = 0; i < Pa; i++) ab += (double)u[a][i] * h2[a][i];
    cr_expect(ab != 0 && fabs(ab - ba_) <= 1e-4 * fabs(ab), "%s: cross blocks %.9g vs %.9g", npz, ab, ba_);
    fprintf(stderr, "hvp_multi %s: diagonal block %.3g off, cross %.9g / %.9g\n", npz, md, ab, ba_);
    for (int l = 0; l < L; l++) {
        free(u[l]);
        free(z[l]);
        free(h1[l]);
        free(h2[l]);
        free(h12[l]);
    }
    free(single);
    free(ids);
    free(u);
    free(z);
    free(h1);
    free(h2);
    free(h12);
    free(v1);
    free(v2);
    free(v12);
    ba_grad_session_free(sess);
    fix_close(&f);
}

Test(grad, hvp_multi_blocks_are_the_hvp_linear_and_symmetric) {
    check_hvp_multi(FX("digits/mlp_dyn.onnx"), GR("mlp.npz"));
    check_hvp_multi(FX("digits/cnn_dyn.onnx"), GR("cnn.npz"));
}
