/* Cost of a configuration (SPEC §4): the one module eval, search and plans
 * use for avg-bits, memory and BOPs. */
#ifndef BA_QUANT_COST_H
#define BA_QUANT_COST_H

#include <stdint.h>

#include "core/ggml_types.h"
#include "model/model.h"
#include "quant/quant.h"

/* Bytes a weight of b bits occupies in the memory budget: ceil(b*params/8)
 * packed bytes + 4 bytes per scale (+1 per zero-point when asymmetric).
 * b = 16 / 32: 2 / 4 bytes per element, no scales.
 * Backend llama: the bytes of the ggml type llama-quantize writes for b
 * (ba_cost_layer_ggml_type): params / block · bytes per block, scales included.
 * -1 for a width that is not one, or (llama) that has no type on this layer. */
int64_t ba_cost_layer_memory(const ba_layer_t *l, int w_bits, const ba_quant_cfg_t *cfg);
/* Bits per weight the width costs in the avg-bits budget: b itself, or (backend
 * llama) the real bits per weight of the layer's ggml type (q4_K 4.5, or 5.5
 * when the row falls back to q5_0); NAN when it has no type on this layer. */
double ba_cost_layer_bits(const ba_layer_t *l, int w_bits, const ba_quant_cfg_t *cfg);

/* The row length llama.cpp stores the weight with (ggml's ne[0], what a block
 * must divide): the innermost axis of the stored shape that is not the
 * output-channel axis (Gemm transB=1 [out, in] and Conv [O, I, kh, kw]: the
 * last; MatMul [in, out]: the one before it). */
int64_t ba_cost_layer_row(const ba_layer_t *l);
/* The ggml type llama-quantize writes for this layer asked for w_bits' type
 * (ba_ggml_type_for_bits), after its fallback for rows its block does not
 * divide (ba_ggml_type_fallback); NULL when there is none. */
const ba_ggml_type_t *ba_cost_layer_ggml_type(const ba_layer_t *l, int w_bits);
/* macs * w_bits * a_bits (a_bits = 32 when activations are float, i.e. a_bits <= 0);
 * NAN while the layer's macs are unknown (ba_model_costs_at not run on a dynamic model). */
double ba_cost_layer_bops(const ba_layer_t *l, int w_bits, int a_bits);

typedef struct ba_cost {
    double avg_bits; /* Σ b_l params_l / Σ params_l (b_l: ba_cost_layer_bits, real ggml bits under llama) */
    int64_t memory_bytes; /* Σ layer memory + model->other_init_bytes */
    double bops;          /* Σ layer bops; NAN while the macs are unknown */
} ba_cost_t;

/* w_bits[l] for each of m->nlayers; a_bits as in cfg->act_bits (0 = float).
 * BA_ERR_INPUT naming the layer for a width that is not one, or that has no
 * ggml type on the layer under backend llama. */
ba_status ba_cost_config(const ba_model_t *m, const int *w_bits, const ba_quant_cfg_t *cfg, ba_cost_t *out,
                         ba_error *err);

#endif
