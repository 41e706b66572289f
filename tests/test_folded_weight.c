/* A layer whose weight the loader computed from constants (Concat of two
 * initializers for a MatMul, Unsqueeze of one for a Conv: how PyTorch writes an
 * LSTM's W in silero VAD) is still written by both ONNX writers: the producing
 * node becomes a Constant that carries the quantized weight, and the written
 * file computes what `eval --plan` computes in memory. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "eval/npy.h"
#include "helpers.h"

#define FOLDED BA_FIXTURES "/folded/"

static double max_rel(const char *a, const char *b) {
    ba_tensor_t *x = NULL, *y = NULL;
    ba_error err;
    cr_assert_eq(ba_npy_load(a, &x, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_npy_load(b, &y, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(x->numel, y->numel);
    double d = 0, m = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        d = fmax(d, fabs(ba_tensor_get_f64(x, i) - ba_tensor_get_f64(y, i)));
        m = fmax(m, fabs(ba_tensor_get_f64(y, i)));
    }
    ba_tensor_unref(x);
    ba_tensor_unref(y);
    return d / (m > 0 ? m : 1);
}

Test(folded_weight, both_writers_place_a_computed_weight) {
    char dir[512], db[600], plan[600], ref[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    snprintf(plan, sizeof plan, "%s/plan.json", dir);
    snprintf(ref, sizeof ref, "%s/ref.npy", dir);
    ba_test_run_t r =
        ba_test_cli("search", FOLDED "folded.onnx", "--data", FOLDED "x.npy", "--budget", "avg-bits=4",
                    "--method", "uniform", "--db", db, "--study", "f", "--plan-out", plan, "-q", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("eval", FOLDED "folded.onnx", "--data", FOLDED "x.npy", "--plan", plan, "--save-output",
                    ref, "-q", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    const char *formats[] = {"fakequant", "qdq"};
    for (int f = 0; f < 2; f++) {
        char onnx[600], got[600];
        snprintf(onnx, sizeof onnx, "%s/%s.onnx", dir, formats[f]);
        snprintf(got, sizeof got, "%s/%s.npy", dir, formats[f]);
        r = ba_test_cli("quantize", FOLDED "folded.onnx", "--plan", plan, "-o", onnx, "--format", formats[f],
                        "-q", NULL);
        cr_assert_eq(r.status, 0, "%s: %s", formats[f], r.err);
        ba_test_run_free(&r);
        r = ba_test_cli("eval", onnx, "--data", FOLDED "x.npy", "--save-output", got, "-q", NULL);
        cr_assert_eq(r.status, 0, "%s: %s", formats[f], r.err);
        ba_test_run_free(&r);
        double e = max_rel(got, ref);
        cr_expect(e < 1e-5, "%s file vs eval --plan: %g of the output's scale", formats[f], e);
    }
}
