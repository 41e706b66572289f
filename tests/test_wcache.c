/* quant/wcache.c: Q_b(W) made once per (layer, bits), 32 bits reuses the
 * constant, overrides fill exactly the layers' value slots. */
#include <criterion/criterion.h>
#include <string.h>

#include "quant/wcache.h"
#include "tests/quant_model.h"

Test(wcache, quantizes_once_and_matches_the_quantizer) {
    ba_model_t *m = qm_new();
    ba_quant_cfg_t cfg = ba_quant_cfg_default();
    cfg.scheme = BA_SCHEME_ASYMMETRIC;
    ba_wcache_t *c;
    ba_error err;
    cr_assert_eq(ba_wcache_new(m, &cfg, &c, &err), BA_OK);
    const ba_tensor_t *a, *b;
    cr_assert_eq(ba_wcache_get(c, 2, 4, &a, &err), BA_OK);
    int64_t bytes = ba_wcache_bytes(c);
    cr_assert_eq(bytes, 120 * 4);
    cr_assert_eq(ba_wcache_get(c, 2, 4, &b, &err), BA_OK);
    cr_assert_eq(a, b, "second request reuses the first result");
    cr_assert_eq(ba_wcache_bytes(c), bytes);
    ba_qweight_t q;
    cr_assert_eq(ba_quant_weight(m->values[3].constant, 1, 4, &cfg, &q, &err), BA_OK);
    cr_assert_eq(memcmp(q.fq->data, a->data, ba_tensor_nbytes(a)), 0, "cache uses the layer's axis and cfg");
    ba_qweight_free(&q);
    cr_assert_eq(ba_wcache_get(c, 2, 5, &b, &err), BA_OK);
    cr_assert_neq(a, b);
    ba_wcache_free(c);
    qm_free(m);
}

Test(wcache, fp32_is_the_constant_and_needs_no_override) {
    ba_model_t *m = qm_new();
    ba_wcache_t *c;
    ba_error err;
    cr_assert_eq(ba_wcache_new(m, NULL, &c, &err), BA_OK);
    const ba_tensor_t *t;
    cr_assert_eq(ba_wcache_get(c, 0, 32, &t, &err), BA_OK);
    cr_assert_eq(t, m->values[1].constant);
    ba_tensor_t *sentinel = m->values[1].constant;
    ba_tensor_t *ov[QM_NLAYERS + 1] = {sentinel, sentinel, sentinel, sentinel};
    int bits[QM_NLAYERS] = {32, 16, 3};
    cr_assert_eq(ba_wcache_overrides(c, bits, ov, &err), BA_OK);
    cr_assert_eq(ov[0], sentinel, "non-layer slots are left alone");
    cr_assert_null(ov[1]);
    const ba_tensor_t *f16, *q3;
    cr_assert_eq(ba_wcache_get(c, 1, 16, &f16, &err), BA_OK);
    cr_assert_eq(ba_wcache_get(c, 2, 3, &q3, &err), BA_OK);
    cr_assert_eq(ov[2], f16);
    cr_assert_eq(ov[3], q3);
    float w = ((float *)m->values[2].constant->data)[0];
    cr_assert_eq(((float *)f16->data)[0], ba_f16_to_f32(ba_f32_to_f16(w)));
    ba_wcache_free(c);
    qm_free(m);
}

Test(wcache, bad_requests_are_errors) {
    ba_model_t *m = qm_new();
    ba_wcache_t *c;
    ba_error err;
    cr_assert_eq(ba_wcache_new(m, NULL, &c, &err), BA_OK);
    const ba_tensor_t *t;
    cr_assert_eq(ba_wcache_get(c, 3, 4, &t, &err), BA_ERR_INPUT);
    cr_assert_eq(ba_wcache_get(c, 0, 9, &t, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "conv1.weight"), "%s", err.msg);
    ba_tensor_unref(m->values[2].constant);
    m->values[2].constant = NULL;
    cr_assert_eq(ba_wcache_get(c, 1, 4, &t, &err), BA_ERR_RUNTIME);
    cr_assert(strstr(err.msg, "fc.weight"), "%s", err.msg);
    ba_tensor_t *ov[QM_NLAYERS + 1] = {0};
    int bits[QM_NLAYERS] = {4, 4, 4};
    cr_assert_neq(ba_wcache_overrides(c, bits, ov, &err), BA_OK);
    ba_wcache_free(c);
    qm_free(m);
}
