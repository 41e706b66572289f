/* Cache of fake-quantized weights per (layer, bits) (DESIGN: "quantized
 * weights for each (layer, bits) are made once per study"), so that
 * evaluating a configuration is a forward pass with overrides. */
#ifndef BA_QUANT_WCACHE_H
#define BA_QUANT_WCACHE_H

#include <stdint.h>

#include "model/model.h"
#include "quant/quant.h"

typedef struct ba_wcache ba_wcache_t;

/* The model must outlive the cache; cfg is copied (NULL = defaults). */
ba_status ba_wcache_new(const ba_model_t *m, const ba_quant_cfg_t *cfg, ba_wcache_t **out, ba_error *err);
void ba_wcache_free(ba_wcache_t *c);

/* Q_bits(W) of layer index `layer` (float32, shape of the weight), made on
 * first use from m->values[layer.value].constant and kept until the cache is
 * freed. 32 bits of a float32 weight is the constant itself. The pointer
 * stays valid for the cache's life. Calls may come from several threads
 * (a mutex guards the table; quantization runs under it). */
ba_status ba_wcache_get(ba_wcache_t *c, int layer, int bits, const ba_tensor_t **fq, ba_error *err);

/* For bits[l] of each layer, sets overrides[layers[l].value] (an array of
 * m->nvalues slots, e.g. ba_run_opts_t.overrides) to the cached tensor, or
 * NULL where the layer runs on its own float32 constant (32 bits). Other
 * slots are left as they are. The cache keeps ownership. */
ba_status ba_wcache_overrides(ba_wcache_t *c, const int *bits, ba_tensor_t **overrides, ba_error *err);

/* Bytes of fake-quantized weights held. */
int64_t ba_wcache_bytes(const ba_wcache_t *c);

#endif
