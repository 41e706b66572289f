/* Cost of a configuration (SPEC §4): average bits, memory in bytes and BOPs.
 * One implementation for eval, search and plans so the budget a search
 * enforces is the figure a plan reports. */
#include "quant/cost.h"

#include <math.h>

/* Widths stored as floats rather than packed integers (SPEC §3). */
#define BA_COST_FP16_BITS 16
#define BA_COST_FP32_BITS 32
#define BA_COST_FLOAT_ACT_BITS 32 /* float activations count as 32-bit in BOPs */
#define BA_COST_SCALE_BYTES 4     /* one float32 scale per group */
#define BA_COST_ZP_BYTES 1        /* one 8-bit zero-point per group (asymmetric) */
#define BA_BITS_PER_BYTE 8

int64_t ba_cost_layer_row(const ba_layer_t *l) {
    if (l->ndim < 1) return l->params;
    if (l->ndim >= 2 && l->ch_axis == l->ndim - 1) return l->shape[l->ndim - 2];
    return l->shape[l->ndim - 1];
}

const ba_ggml_type_t *ba_cost_layer_ggml_type(const ba_layer_t *l, int w_bits) {
    return ba_ggml_type_fallback(ba_ggml_type_for_bits(w_bits), ba_cost_layer_row(l));
}

double ba_cost_layer_bits(const ba_layer_t *l, int w_bits, const ba_quant_cfg_t *cfg) {
    if (!ba_bits_valid(w_bits)) return NAN;
    if (!cfg || cfg->backend != BA_BACKEND_LLAMA) return w_bits;
    const ba_ggml_type_t *t = ba_cost_layer_ggml_type(l, w_bits);
    return t ? ba_ggml_type_bpw(t) : NAN;
}

int64_t ba_cost_layer_memory(const ba_layer_t *l, int w_bits, const ba_quant_cfg_t *cfg) {
    if (!ba_bits_valid(w_bits)) return -1;
    if (cfg && cfg->backend == BA_BACKEND_LLAMA) {
        const ba_ggml_type_t *t = ba_cost_layer_ggml_type(l, w_bits);
        return t ? l->params / t->block * t->bytes : -1; /* the block divides the row, so params */
    }
    if (w_bits == BA_COST_FP16_BITS || w_bits == BA_COST_FP32_BITS)
        return l->params * (w_bits / BA_BITS_PER_BYTE);
    ba_quant_cfg_t dflt = ba_quant_cfg_default();
    if (!cfg) cfg = &dflt;
    int64_t packed = (w_bits * l->params + BA_BITS_PER_BYTE - 1) / BA_BITS_PER_BYTE;
    int64_t per_scale = BA_COST_SCALE_BYTES + (cfg->scheme == BA_SCHEME_ASYMMETRIC ? BA_COST_ZP_BYTES : 0);
    return packed + per_scale * ba_quant_num_scales(l->ndim, l->shape, l->ch_axis, cfg);
}

double ba_cost_layer_bops(const ba_layer_t *l, int w_bits, int a_bits) {
    int a = a_bits > 0 ? a_bits : BA_COST_FLOAT_ACT_BITS;
    if (l->macs < 0) return NAN; /* MACs not resolved (dynamic shapes, no data) */
    return (double)l->macs * (double)w_bits * (double)a;
}

ba_status ba_cost_config(const ba_model_t *m, const int *w_bits, const ba_quant_cfg_t *cfg, ba_cost_t *out,
                         ba_error *err) {
    ba_quant_cfg_t dflt = ba_quant_cfg_default();
    if (!cfg) cfg = &dflt;
    if (cfg->act_bits != 0 && !ba_bits_valid(cfg->act_bits))
        return ba_error_set(err, BA_ERR_INPUT, "--act-bits: %d is not a width (" BA_BITS_WIDTHS ")",
                            cfg->act_bits);
    double bit_params = 0.0, params = 0.0, bops = 0.0;
    int64_t memory = m->other_init_bytes;
    for (int i = 0; i < m->nlayers; i++) {
        const ba_layer_t *l = &m->layers[i];
        if (!ba_bits_valid(w_bits[i]))
            return ba_error_set(err, BA_ERR_INPUT, "layer %s: %d bits is not a width (" BA_BITS_WIDTHS ")",
                                l->name, w_bits[i]);
        double b = ba_cost_layer_bits(l, w_bits[i], cfg);
        if (isnan(b)) {
            const ba_ggml_type_t *t = ba_ggml_type_for_bits(w_bits[i]);
            return ba_error_set(
                err, BA_ERR_INPUT,
                "layer %s: %d bits (%s) cannot be stored by llama.cpp: its row length %lld is "
                "not a multiple of %d and llama-quantize has no fallback type for it",
                l->name, w_bits[i], t ? t->name : "no ggml type", (long long)ba_cost_layer_row(l),
                t ? t->block : 0);
        }
        bit_params += b * (double)l->params;
        params += (double)l->params;
        memory += ba_cost_layer_memory(l, w_bits[i], cfg);
        bops += ba_cost_layer_bops(l, w_bits[i], cfg->act_bits);
    }
    out->avg_bits = params > 0 ? bit_params / params : 0.0;
    out->memory_bytes = memory;
    out->bops = bops;
    return BA_OK;
}
