/* model/fuse.c: the executor's forward fusion gives the same bits as the
 * unfused executor on every conv fixture, hands a hook the values it marks
 * and no others, and stays off when values are kept (gradients). */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "eval/npy.h"
#include "model/model.h"
#include "tests/helpers.h"

#define FUSE_DIR BA_FIXTURES "/fuse/"

static ba_model_t *load(const char *path) {
    ba_error err = {0};
    ba_model_t *m = NULL;
    cr_assert_eq(ba_model_load(path, NULL, &m, &err), BA_OK, "%s: %s", path, err.msg);
    return m;
}

static ba_tensor_t *npy(const char *path) {
    ba_error err = {0};
    ba_tensor_t *t = NULL;
    cr_assert_eq(ba_npy_load(path, &t, &err), BA_OK, "%s: %s", path, err.msg);
    return t;
}

static ba_tensor_t *run1(const ba_model_t *m, ba_tensor_t *x, const ba_run_opts_t *o) {
    ba_error err = {0};
    ba_tensor_t *y[4] = {0};
    cr_assert_eq(ba_model_run(m, &x, o, y, &err), BA_OK, "%s", err.msg);
    for (int k = 1; k < m->noutputs; k++) ba_tensor_unref(y[k]);
    return y[0];
}

static void assert_same_bits(const ba_tensor_t *a, const ba_tensor_t *b, const char *what) {
    cr_assert_eq(a->numel, b->numel, "%s", what);
    cr_assert_eq(a->dtype, b->dtype, "%s", what);
    cr_assert(memcmp(a->data, b->data, ba_tensor_nbytes(a)) == 0, "%s: fused and unfused outputs differ",
              what);
}

/* Counts the values handed to the hook; replaces the marked ones by a copy
 * rounded to 1/8 (a stand-in for activation fake-quant). */
typedef struct {
    int calls, marked_seen;
    const unsigned char *mark;
} hook_ctx;

static ba_status hook(void *vctx, const ba_model_t *m, int v, ba_tensor_t **t, ba_error *err) {
    (void)m;
    hook_ctx *c = vctx;
    c->calls++;
    if (!c->mark || !c->mark[v] || (*t)->dtype != BA_DT_F32) return BA_OK;
    c->marked_seen++;
    ba_tensor_t *q = ba_tensor_clone(*t, err);
    if (!q) return err->code;
    float *d = q->data;
    for (int64_t i = 0; i < q->numel; i++) d[i] = roundf(d[i] * 8.0f) / 8.0f;
    ba_tensor_unref(*t);
    *t = q;
    return BA_OK;
}

Test(fuse, fixture_matches_reference_and_unfused) {
    ba_model_t *m = load(FUSE_DIR "fuse.onnx");
    ba_tensor_t *x = npy(FUSE_DIR "x.npy"), *ref = npy(FUSE_DIR "out_ref.npy");
    ba_run_opts_t off = {.no_fuse = 1};
    ba_tensor_t *yf = run1(m, x, NULL), *yu = run1(m, x, &off);
    assert_same_bits(yf, yu, "fuse.onnx");
    double scale = 0;
    for (int64_t i = 0; i < ref->numel; i++) scale = fmax(scale, fabsf(((float *)ref->data)[i]));
    for (int64_t i = 0; i < ref->numel; i++)
        cr_assert_leq(fabsf(((float *)yf->data)[i] - ((float *)ref->data)[i]), 1e-5 + 1e-4 * scale,
                      "element %lld", (long long)i);
    ba_tensor_unref(yf);
    ba_tensor_unref(yu);
    ba_tensor_unref(x);
    ba_tensor_unref(ref);
    ba_model_free(m);
}

/* With a mask that marks nothing, the hook sees only what the fused run
 * stores: the 28 node outputs less the 20 intermediates of the six regions
 * (Conv+BN+hard-swish 5, Conv+Mul+Add+LeakyRelu+Max+Add(residual) 5 (both on 16x20 planes),
 * Conv+BN+Relu 2 (4x5 maps: along whole images), Conv+Add+Sigmoid+Relu+Add 4
 * (through the kernels: its constant has no per-channel form), MatMul+Add+Relu 2,
 * Gemm+HardSigmoid+Tanh 2). */
Test(fuse, regions_skip_unmarked_values) {
    ba_model_t *m = load(FUSE_DIR "fuse.onnx");
    ba_tensor_t *x = npy(FUSE_DIR "x.npy");
    unsigned char *none = calloc((size_t)m->nvalues, 1);
    hook_ctx a = {0}, b = {0};
    ba_run_opts_t fused = {.on_value = hook, .ctx = &a, .hooked = none};
    ba_run_opts_t plain = {.on_value = hook, .ctx = &b}; /* no mask: every value */
    ba_tensor_t *ya = run1(m, x, &fused), *yb = run1(m, x, &plain);
    cr_assert_eq(m->nnodes, 28);
    cr_assert_eq(b.calls, 28);
    cr_assert_eq(a.calls, 8, "hook saw %d values", a.calls);
    assert_same_bits(ya, yb, "masked hook");
    ba_tensor_unref(ya);
    ba_tensor_unref(yb);
    free(none);
    ba_tensor_unref(x);
    ba_model_free(m);
}

/* Values the mask marks are computed and rewritten by the hook exactly as
 * unfused: a marked conv output ends its region's chance, a marked value
 * inside a region cuts the region there. */
Test(fuse, marked_values_reach_the_hook) {
    ba_model_t *m = load(FUSE_DIR "fuse.onnx");
    ba_tensor_t *x = npy(FUSE_DIR "x.npy");
    unsigned char *mark = calloc((size_t)m->nvalues, 1);
    const char *names[] = {"c2", "a1", "h1", "mm"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        int v = ba_model_find_value(m, names[k]);
        cr_assert_geq(v, 0, "%s", names[k]);
        mark[v] = 1;
    }
    hook_ctx a = {.mark = mark}, b = {.mark = mark};
    ba_run_opts_t fused = {.on_value = hook, .ctx = &a, .hooked = mark};
    ba_run_opts_t plain = {.on_value = hook, .ctx = &b, .no_fuse = 1};
    ba_tensor_t *ya = run1(m, x, &fused), *yb = run1(m, x, &plain);
    cr_assert_eq(a.marked_seen, 4);
    cr_assert_eq(b.marked_seen, 4);
    cr_assert_lt(a.calls, b.calls);
    assert_same_bits(ya, yb, "hook on marked values");
    ba_tensor_unref(ya);
    ba_tensor_unref(yb);
    free(mark);
    ba_tensor_unref(x);
    ba_model_free(m);
}

/* keep (what the backward passes use) and shape inference see every value. */
Test(fuse, keep_turns_fusion_off) {
    ba_model_t *m = load(FUSE_DIR "fuse.onnx");
    ba_tensor_t *x = npy(FUSE_DIR "x.npy");
    unsigned char *none = calloc((size_t)m->nvalues, 1);
    ba_tensor_t **keep = calloc((size_t)m->nvalues, sizeof *keep);
    hook_ctx a = {0};
    ba_run_opts_t o = {.on_value = hook, .ctx = &a, .hooked = none, .keep = keep};
    ba_tensor_t *y = run1(m, x, &o);
    cr_assert_eq(a.calls, 28);
    for (int i = 0; i < m->nnodes; i++)
        cr_assert_not_null(keep[m->nodes[i].outputs[0]], "value of node %s not kept", m->nodes[i].name);
    for (int v = 0; v < m->nvalues; v++) ba_tensor_unref(keep[v]);
    free(keep);
    ba_tensor_unref(y);
    free(none);
    ba_tensor_unref(x);
    ba_model_free(m);
}

/* Every conv fixture: fused and unfused runs give the same bits. */
Test(fuse, fixtures_bit_identical) {
    static const char *const cases[][2] = {
        {"/zoo/resnet.onnx", "/zoo/resnet_x.npy"},
        {"/zoo/mobilenetv2.onnx", "/zoo/mobilenetv2_x.npy"},
        {"/zoo/mobilenetv3.onnx", "/zoo/mobilenetv3_x.npy"},
        {"/zoo/efficientnet.onnx", "/zoo/efficientnet_x.npy"},
        {"/zoo/shufflenet.onnx", "/zoo/shufflenet_x.npy"},
        {"/zoo/squeezenet.onnx", "/zoo/squeezenet_x.npy"},
        {"/zoo/vit.onnx", "/zoo/vit_x.npy"},
        {"/zoo/gpt.onnx", "/zoo/gpt_x.npy"},
        {"/digits/cnn_dyn.onnx", "/digits/test_x.npy"},
        {"/digits/mlp_dyn.onnx", "/digits/test_x_flat.npy"},
        {"/paddle/paddle_op9.onnx", "/paddle/x.npy"},
        {"/paddle/paddle_op11.onnx", "/paddle/x.npy"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char mp[1024], xp[1024];
        snprintf(mp, sizeof mp, "%s%s", BA_FIXTURES, cases[k][0]);
        snprintf(xp, sizeof xp, "%s%s", BA_FIXTURES, cases[k][1]);
        ba_model_t *m = load(mp);
        ba_tensor_t *x = npy(xp);
        ba_run_opts_t off = {.no_fuse = 1};
        ba_tensor_t *yf = run1(m, x, NULL), *yu = run1(m, x, &off);
        assert_same_bits(yf, yu, mp);
        ba_tensor_unref(yf);
        ba_tensor_unref(yu);
        ba_tensor_unref(x);
        ba_model_free(m);
    }
}

/* The epilogue inside the conv kernels (depthwise planes, groups of packed
 * panels: fuse/tile.onnx, see make_fuse_tile.py) gives the unfused bits: BN,
 * HardSwish, Relu, Clip, written-out hard-swish, LeakyRelu + residual,
 * Sigmoid, per-channel Mul / Add, Max, Tanh; three images side by side and
 * one alone, one and two threads. */
Test(fuse, epilogue_in_the_conv_kernels_bit_identical) {
    ba_model_t *m = load(FUSE_DIR "tile.onnx");
    ba_tensor_t *x3 = npy(FUSE_DIR "tile_x.npy");
    ba_error err = {0};
    int64_t s1[4] = {1, 8, 13, 37};
    ba_tensor_t *x1 = ba_tensor_new(BA_DT_F32, 4, s1, &err);
    cr_assert_not_null(x1);
    memcpy(x1->data, x3->data, ba_tensor_nbytes(x1));
    const int threads = omp_get_max_threads();
    ba_tensor_t *xs[2] = {x3, x1};
    for (int t = 1; t <= 2; t++) {
        omp_set_num_threads(t);
        for (int k = 0; k < 2; k++) {
            ba_run_opts_t off = {.no_fuse = 1};
            ba_tensor_t *yf = run1(m, xs[k], NULL), *yu = run1(m, xs[k], &off);
            cr_assert_eq(yf->numel, xs[k]->shape[0] * 12 * 4 * 10);
            int nonzero = 0;
            for (int64_t i = 0; i < yu->numel; i++) nonzero += ((float *)yu->data)[i] != 0.0f;
            cr_assert_gt(nonzero, yu->numel / 2, "the chain should not collapse to zeros");
            assert_same_bits(yf, yu, k == 0 ? "tile.onnx, 3 images" : "tile.onnx, 1 image");
            ba_tensor_unref(yf);
            ba_tensor_unref(yu);
        }
    }
    omp_set_num_threads(threads);
    ba_tensor_unref(x1);
    ba_tensor_unref(x3);
    ba_model_free(m);
}
