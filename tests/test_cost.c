/* quant/cost.c: SPEC §4 avg-bits, memory and BOPs on a hand-built model,
 * each figure worked out by hand in the comments. */
#include <criterion/criterion.h>
#include <string.h>

#include "quant/cost.h"
#include "tests/quant_model.h"

/* params: conv 216, fc 210, mm 120 (546); macs 221184, 210, 600. */

Test(cost, symmetric_per_channel_float_activations) {
    ba_model_t *m = qm_new();
    ba_quant_cfg_t cfg = ba_quant_cfg_default();
    int bits[QM_NLAYERS] = {4, 8, 2};
    ba_cost_t c;
    ba_error err;
    cr_assert_eq(ba_cost_config(m, bits, &cfg, &c, &err), BA_OK);
    /* conv 216*4/8 = 108 + 8 scales*4 = 140; fc 210 + 10*4 = 250; mm 30 + 6*4 = 54; + 100 other */
    cr_assert_eq(ba_cost_layer_memory(&m->layers[0], 4, &cfg), 140);
    cr_assert_eq(ba_cost_layer_memory(&m->layers[1], 8, &cfg), 250);
    cr_assert_eq(ba_cost_layer_memory(&m->layers[2], 2, &cfg), 54);
    cr_assert_eq(c.memory_bytes, 544);
    cr_assert_float_eq(c.avg_bits, 2784.0 / 546.0, 1e-12);
    /* b_a = 32: 32 * (221184*4 + 210*8 + 600*2) */
    cr_assert_float_eq(c.bops, 28403712.0, 0);
    qm_free(m);
}

Test(cost, asymmetric_groups_count_zero_points_and_round_up) {
    ba_model_t *m = qm_new();
    ba_quant_cfg_t cfg = ba_quant_cfg_default();
    ba_error err;
    cr_assert_eq(ba_quant_cfg_parse_scheme("asymmetric", &cfg, &err), BA_OK);
    cr_assert_eq(ba_quant_cfg_parse_granularity("group:8", &cfg, &err), BA_OK);
    cfg.act_bits = 8;
    int bits[QM_NLAYERS] = {3, 5, 16};
    ba_cost_t c;
    cr_assert_eq(ba_cost_config(m, bits, &cfg, &c, &err), BA_OK);
    /* conv: ceil(648/8) = 81 + 8 ch * ceil(27/8)=4 groups * (4+1) = 160 -> 241
     * fc:   ceil(1050/8) = 132 + 10 * ceil(21/8)=3 * 5 = 150         -> 282
     * mm:   16 bits: 120 * 2 = 240, no scales; + 100 other           -> 863 */
    cr_assert_eq(ba_cost_layer_memory(&m->layers[0], 3, &cfg), 241);
    cr_assert_eq(ba_cost_layer_memory(&m->layers[1], 5, &cfg), 282);
    cr_assert_eq(ba_cost_layer_memory(&m->layers[2], 16, &cfg), 240);
    cr_assert_eq(c.memory_bytes, 863);
    cr_assert_float_eq(c.avg_bits, 3618.0 / 546.0, 1e-12);
    /* 8 * (221184*3 + 210*5 + 600*16) */
    cr_assert_float_eq(c.bops, 5393616.0, 0);
    qm_free(m);
}

Test(cost, groups_follow_the_channel_axis) {
    ba_model_t *m = qm_new();
    ba_quant_cfg_t cfg = ba_quant_cfg_default();
    cfg.granularity = BA_GRAN_GROUP;
    cfg.group = 8;
    int bits[QM_NLAYERS] = {8, 8, 4};
    ba_cost_t c;
    ba_error err;
    cr_assert_eq(ba_cost_config(m, bits, &cfg, &c, &err), BA_OK);
    /* mm [20,6] axis 1: 6 channels of 20 -> 3 groups each = 18 scales: 60 + 72 = 132
     * conv 216 + 32*4 = 344; fc 210 + 30*4 = 330; + 100 */
    cr_assert_eq(ba_cost_layer_memory(&m->layers[2], 4, &cfg), 132);
    cr_assert_eq(c.memory_bytes, 906);
    qm_free(m);
}

Test(cost, per_tensor_and_float_widths) {
    ba_model_t *m = qm_new();
    ba_quant_cfg_t cfg = ba_quant_cfg_default();
    cfg.scheme = BA_SCHEME_ASYMMETRIC;
    cfg.granularity = BA_GRAN_PER_TENSOR;
    int bits[QM_NLAYERS] = {2, 2, 32};
    ba_cost_t c;
    ba_error err;
    cr_assert_eq(ba_cost_config(m, bits, &cfg, &c, &err), BA_OK);
    /* conv 54 + 5; fc ceil(52.5) = 53 + 5; mm 120 * 4 = 480; + 100 */
    cr_assert_eq(c.memory_bytes, 59 + 58 + 480 + 100);
    cr_assert_float_eq(c.avg_bits, (432.0 + 420.0 + 3840.0) / 546.0, 1e-12);
    qm_free(m);
}

Test(cost, layer_bops_uses_32_for_float_activations) {
    ba_model_t *m = qm_new();
    cr_assert_float_eq(ba_cost_layer_bops(&m->layers[1], 4, 0), 210.0 * 4 * 32, 0);
    cr_assert_float_eq(ba_cost_layer_bops(&m->layers[1], 4, 8), 210.0 * 4 * 8, 0);
    cr_assert_eq(ba_cost_layer_memory(&m->layers[1], 9, NULL), -1);
    qm_free(m);
}

Test(cost, invalid_widths_name_the_layer) {
    ba_model_t *m = qm_new();
    int bits[QM_NLAYERS] = {4, 12, 4};
    ba_cost_t c;
    ba_error err;
    cr_assert_eq(ba_cost_config(m, bits, NULL, &c, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "fc.weight") && strstr(err.msg, "12"), "%s", err.msg);
    ba_quant_cfg_t cfg = ba_quant_cfg_default();
    cfg.act_bits = 1;
    bits[1] = 4;
    cr_assert_eq(ba_cost_config(m, bits, &cfg, &c, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "--act-bits"), "%s", err.msg);
    qm_free(m);
}

Test(cost, no_layers_costs_only_other_initializers) {
    ba_model_t *m = qm_new();
    int n = m->nlayers;
    m->nlayers = 0;
    ba_cost_t c;
    ba_error err;
    cr_assert_eq(ba_cost_config(m, NULL, NULL, &c, &err), BA_OK);
    cr_assert_eq(c.memory_bytes, QM_OTHER_BYTES);
    cr_assert_float_eq(c.avg_bits, 0.0, 0);
    cr_assert_float_eq(c.bops, 0.0, 0);
    m->nlayers = n;
    qm_free(m);
}
