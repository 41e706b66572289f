/* eval/metrics: KL, agreement, accuracy, MSE and SQNR against hand-computed values. */
#include <criterion/criterion.h>
#include <math.h>

#include "eval/metrics.h"
#include "tests/helpers.h"

static ba_tensor_t *mk(int64_t r, int64_t c, const float *v) {
    int64_t s[2] = {r, c};
    ba_tensor_t *t = ba_tensor_new(BA_DT_F32, 2, s, NULL);
    for (int64_t i = 0; i < r * c; i++) ((float *)t->data)[i] = v[i];
    return t;
}

Test(metrics, kl_of_logits_matches_hand_computation) {
    float a[] = {0, 0, 1, 2, 0, 0}, b[] = {0, 1, 0, 2, 0, 0};
    ba_tensor_t *fp = mk(2, 3, a), *q = mk(2, 3, b);
    ba_metrics_acc_t acc;
    ba_metrics_begin(&acc, -1);
    int64_t labels[2] = {2, 1};
    cr_assert_eq(ba_metrics_add(&acc, fp, q, labels, 2, NULL), BA_OK);
    ba_metrics_t m;
    ba_metrics_finish(&acc, &m);
    /* Row 0: p = softmax(0,0,1), q = softmax(0,1,0): KL = Σ p (log p − log q). */
    double z = 2 + exp(1.0), p[3] = {1 / z, 1 / z, exp(1.0) / z}, qq[3] = {1 / z, exp(1.0) / z, 1 / z};
    double kl0 = 0;
    for (int i = 0; i < 3; i++) kl0 += p[i] * log(p[i] / qq[i]);
    cr_assert_float_eq(m.kl, kl0 / 2, 1e-12);
    cr_assert_float_eq(m.agreement, 0.5, 0);
    cr_assert_float_eq(m.accuracy_fp, 0.5, 0); /* row0 argmax 2 ok, row1 argmax 0 != 1 */
    cr_assert_float_eq(m.accuracy_q, 0.0, 0);  /* row0 argmax 1, row1 argmax 0 */
    cr_assert_float_eq(m.mse, 2.0 / 6, 1e-12);
    cr_assert_float_eq(m.sqnr_db, 10 * log10(5.0 / 2.0), 1e-9);
    ba_tensor_unref(fp);
    ba_tensor_unref(q);
}

Test(metrics, probability_rows_are_used_as_they_are) {
    float a[] = {0.5f, 0.5f}, b[] = {0.25f, 0.75f};
    ba_tensor_t *fp = mk(1, 2, a), *q = mk(1, 2, b);
    ba_metrics_acc_t acc;
    ba_metrics_begin(&acc, -1);
    cr_assert_eq(ba_metrics_add(&acc, fp, q, NULL, 0, NULL), BA_OK);
    cr_assert_eq(acc.is_prob, 1);
    ba_metrics_t m;
    ba_metrics_finish(&acc, &m);
    cr_assert_float_eq(m.kl, 0.5 * log(0.5 / 0.25) + 0.5 * log(0.5 / 0.75), 1e-7);
    cr_assert(isnan(m.accuracy_fp));
    ba_tensor_unref(fp);
    ba_tensor_unref(q);
}

Test(metrics, identical_outputs_give_zero_kl_and_infinite_sqnr) {
    float a[] = {1, -2, 3, 0.5f};
    ba_tensor_t *fp = mk(2, 2, a);
    ba_metrics_acc_t acc;
    ba_metrics_begin(&acc, 0);
    cr_assert_eq(ba_metrics_add(&acc, fp, fp, NULL, 0, NULL), BA_OK);
    ba_metrics_t m;
    ba_metrics_finish(&acc, &m);
    cr_assert_float_eq(m.kl, 0, 1e-15);
    cr_assert(isinf(m.sqnr_db));
    cr_assert_float_eq(m.agreement, 1.0, 0);
    ba_tensor_unref(fp);
}

Test(metrics, labels_out_of_range_and_wrong_count_are_errors) {
    float a[] = {1, 2, 3, 4};
    ba_tensor_t *fp = mk(2, 2, a);
    ba_metrics_acc_t acc;
    ba_error err;
    ba_metrics_begin(&acc, 0);
    int64_t bad[2] = {0, 5};
    cr_assert_eq(ba_metrics_add(&acc, fp, NULL, bad, 2, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "label 5") != NULL);
    int64_t one[1] = {0};
    cr_assert_eq(ba_metrics_add(&acc, fp, NULL, one, 1, &err), BA_ERR_INPUT);
    ba_tensor_unref(fp);
}

/* A NaN or Inf in the quantized output is never a perfect score: KL was clamped to 0
 * and an all-NaN row's argmax was 0 on both sides (agreement 100%). Every metric of
 * the quantized output is NaN then, and the rows are counted. */
Test(metrics, non_finite_quantized_output_is_never_a_perfect_score) {
    float a[] = {3, 0, 0, 0, 3, 0};
    static const float bads[] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        float b[] = {3, 0, 0, bads[k], bads[k], bads[k]}; /* row 1 all non-finite */
        for (int is_prob = -1; is_prob <= 1; is_prob++) {
            ba_tensor_t *fp = mk(2, 3, a), *q = mk(2, 3, b);
            ba_metrics_acc_t acc;
            ba_metrics_begin(&acc, is_prob);
            int64_t labels[2] = {0, 1};
            cr_assert_eq(ba_metrics_add(&acc, fp, q, labels, 2, NULL), BA_OK);
            ba_metrics_t m;
            ba_metrics_finish(&acc, &m);
            cr_expect_eq(m.nonfinite_q, 1, "case %d", k);
            cr_expect_eq(m.nonfinite_fp, 0);
            cr_expect(isnan(m.kl), "kl %g for %g", m.kl, (double)bads[k]);
            cr_expect(isnan(m.agreement), "agreement %g", m.agreement);
            cr_expect(isnan(m.accuracy_q));
            cr_expect(isnan(m.mse));
            cr_expect(isnan(m.sqnr_db));
            cr_expect_float_eq(m.accuracy_fp, 1.0, 0, "the FP side is still measured");
            ba_tensor_unref(fp);
            ba_tensor_unref(q);
        }
    }
    /* A single NaN element in an otherwise fine row counts too. */
    float c[] = {3, 0, 0, 0, 3, NAN};
    ba_tensor_t *fp = mk(2, 3, a), *q = mk(2, 3, c);
    ba_metrics_acc_t acc;
    ba_metrics_begin(&acc, 0);
    cr_assert_eq(ba_metrics_add(&acc, fp, q, NULL, 0, NULL), BA_OK);
    ba_metrics_t m;
    ba_metrics_finish(&acc, &m);
    cr_expect(isnan(m.kl) && isnan(m.agreement) && m.nonfinite_q == 1);
    ba_tensor_unref(fp);
    ba_tensor_unref(q);
}
