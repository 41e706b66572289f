/* Reverse-mode gradients, losses and HVPs of model/grad.h against PyTorch
 * float64 references (tests/fixtures/grad_refs, made by make_grad_refs.py):
 * the digits MLP and CNN, a CNN with BatchNormalization nodes, the zoo ViT
 * and GPT. Errors are max |ours − ref| / max |ref| per tensor. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/npy.h"
#include "model/grad.h"

/* Tolerances of the brief: gradients 1e-4, HVPs 1e-3 (relative to max |ref|). */
#define GRAD_TOL 1e-4
#define HVP_TOL 1e-3
#define LOSS_TOL 1e-5

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
    ba_loss_spec_t s = {.output = 0, .labels = f->labels, .nlabels = f->nlabels, .ref = ba_npz_get(f->z, "ref")};
    s.kind = !strcmp(kind, "ce") ? BA_LOSS_CE : !strcmp(kind, "ce_argmax") ? BA_LOSS_CE_ARGMAX
             : !strcmp(kind, "kl") ? BA_LOSS_KL : BA_LOSS_MSE;
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
    cr_expect_lt(fabs(loss - lref), LOSS_TOL * fmax(1.0, fabs(lref)), "%s %s: loss %.9g vs torch %.9g", npz, kind,
                 loss, lref);
    for (int k = 0; k < n; k++) {
        double r = rel_err(g[k], refs[k]);
        if (r > worst) worst = r;
        cr_expect_lt(r, GRAD_TOL, "%s %s: dL/d%s relative error %.3g", npz, kind, f.m->values[req[k]].name, r);
        free(g[k]);
    }
    free(g);
    fprintf(stderr, "grad %s %s: %d tensors, worst relative error %.3g, loss %.8f (torch %.8f)\n", npz, kind, n,
            worst, loss, lref);
    fix_close(&f);
    return worst;
}

static double check_hvps(const char *model, const char *npz) {
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
        cr_assert_eq(ba_grad_session_hvp(sess, id, v->data, hv, &e), BA_OK, "%s", e.msg);
        double r = rel_err(hv, ref);
        cr_expect_lt(r, HVP_TOL, "%s: H v for %s relative error %.3g", npz, nm + 3, r);
        if (r > worst) worst = r;
        free(hv);
        n++;
    }
    cr_assert_gt(n, 0);
    fprintf(stderr, "hvp %s: %d layers, worst relative error %.3g\n", npz, n, worst);
    ba_grad_session_free(sess);
    fix_close(&f);
    return worst;
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

Test(grad, batchnorm_cnn_gradients_match_pytorch) { check_grads(GR("cnn_bn.onnx"), GR("cnn_bn.npz"), "ce"); }

Test(grad, vit_gradients_match_pytorch) { check_grads(FX("zoo/vit.onnx"), GR("vit.npz"), "ce"); }

Test(grad, gpt_gradients_match_pytorch) { check_grads(FX("zoo/gpt.onnx"), GR("gpt.npz"), "ce"); }

Test(grad, hvp_matches_pytorch_double_backward) {
    check_hvps(FX("digits/mlp_dyn.onnx"), GR("mlp.npz"));
    check_hvps(FX("digits/cnn_dyn.onnx"), GR("cnn.npz"));
    check_hvps(GR("cnn_bn.onnx"), GR("cnn_bn.npz"));
    check_hvps(FX("zoo/vit.onnx"), GR("vit.npz"));
    check_hvps(FX("zoo/gpt.onnx"), GR("gpt.npz"));
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
    int64_t rs[2] = {3, 8};
    ref = ba_tensor_new(BA_DT_F32, 2, rs, &e);
    ba_loss_spec_t s = {.kind = BA_LOSS_MSE, .ref = ref};
    int id = ba_model_find_value(m, "W");
    float g[16];
    float *gp = g;
    ba_tensor_t *in[1] = {x};
    cr_assert_eq(ba_grad_compute(m, in, NULL, &s, 1, &id, &gp, NULL, &e), BA_ERR_UNSUPPORTED);
    cr_expect(strstr(e.msg, "Tile") && strstr(e.msg, "CumSum"), "%s", e.msg);
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
