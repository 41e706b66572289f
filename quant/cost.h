/* Cost of a configuration (SPEC §4): the one module eval, search and plans
 * use for avg-bits, memory and BOPs. */
#ifndef BA_QUANT_COST_H
#define BA_QUANT_COST_H

#include <stdint.h>

#include "model/model.h"
#include "quant/quant.h"

/* Bits a weight of b bits occupies in the memory budget: ceil(b*params/8)
 * packed bytes + 4 bytes per scale (+1 per zero-point when asymmetric).
 * b = 16 / 32: 2 / 4 bytes per element, no scales. */
int64_t ba_cost_layer_memory(const ba_layer_t *l, int w_bits, const ba_quant_cfg_t *cfg);
/* macs * w_bits * a_bits (a_bits = 32 when activations are float, i.e. a_bits <= 0);
 * NAN while the layer's macs are unknown (ba_model_costs_at not run on a dynamic model). */
double ba_cost_layer_bops(const ba_layer_t *l, int w_bits, int a_bits);

typedef struct ba_cost {
    double avg_bits;      /* Σ b_l params_l / Σ params_l */
    int64_t memory_bytes; /* Σ layer memory + model->other_init_bytes */
    double bops;          /* Σ layer bops; NAN while the macs are unknown */
} ba_cost_t;

/* w_bits[l] for each of m->nlayers; a_bits as in cfg->act_bits (0 = float). */
ba_status ba_cost_config(const ba_model_t *m, const int *w_bits, const ba_quant_cfg_t *cfg, ba_cost_t *out,
                         ba_error *err);

#endif
