/* Weight cache: one slot per (layer, width) holding Q_b(W) as float32.
 * Only the fake-quant tensor is kept (codes and scales are for the
 * writers, which quantize once per layer themselves). */
#include "quant/wcache.h"

#include <pthread.h>
#include <stdlib.h>

#define WC_INT_MIN_BITS 2
#define WC_INT_MAX_BITS 8
#define WC_FP16_BITS 16
#define WC_FP32_BITS 32
/* Slots 0..6 for 2..8 bits, 7 for fp16, 8 for fp32. */
#define WC_SLOTS (WC_INT_MAX_BITS - WC_INT_MIN_BITS + 3)

struct ba_wcache {
    const ba_model_t *m;
    ba_quant_cfg_t cfg;
    ba_tensor_t **slot; /* nlayers * WC_SLOTS */
    int64_t bytes;
    pthread_mutex_t lock;
};

static int slot_of(int bits) {
    if (bits >= WC_INT_MIN_BITS && bits <= WC_INT_MAX_BITS) return bits - WC_INT_MIN_BITS;
    if (bits == WC_FP16_BITS) return WC_SLOTS - 2;
    if (bits == WC_FP32_BITS) return WC_SLOTS - 1;
    return -1;
}

ba_status ba_wcache_new(const ba_model_t *m, const ba_quant_cfg_t *cfg, ba_wcache_t **out, ba_error *err) {
    *out = NULL;
    ba_wcache_t *c = ba_calloc(1, sizeof *c, err);
    if (!c) return BA_ERR_NOMEM;
    c->slot = ba_calloc((size_t)(m->nlayers > 0 ? m->nlayers : 1) * WC_SLOTS, sizeof *c->slot, err);
    if (!c->slot) {
        free(c);
        return BA_ERR_NOMEM;
    }
    c->m = m;
    c->cfg = cfg ? *cfg : ba_quant_cfg_default();
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return BA_OK;
}

void ba_wcache_free(ba_wcache_t *c) {
    if (!c) return;
    for (int64_t i = 0; i < (int64_t)c->m->nlayers * WC_SLOTS; i++) ba_tensor_unref(c->slot[i]);
    pthread_mutex_destroy(&c->lock);
    free(c->slot);
    free(c);
}

static ba_status make_slot(ba_wcache_t *c, const ba_layer_t *l, int bits, ba_tensor_t **dst, ba_error *err) {
    const ba_value_t *v = (l->value >= 0 && l->value < c->m->nvalues) ? &c->m->values[l->value] : NULL;
    if (!v || !v->constant)
        return ba_error_set(err, BA_ERR_RUNTIME, "layer %s: weight value has no constant data", l->name);
    if (bits == WC_FP32_BITS && v->constant->dtype == BA_DT_F32) {
        *dst = ba_tensor_ref(v->constant);
        return BA_OK;
    }
    ba_qweight_t q;
    ba_status st = ba_quant_weight(v->constant, l->ch_axis, bits, &c->cfg, &q, err);
    if (st != BA_OK) return ba_error_prefix(err, "layer %s", l->name);
    *dst = ba_tensor_ref(q.fq);
    c->bytes += (int64_t)ba_tensor_nbytes(q.fq);
    ba_qweight_free(&q);
    return BA_OK;
}

ba_status ba_wcache_get(ba_wcache_t *c, int layer, int bits, const ba_tensor_t **fq, ba_error *err) {
    *fq = NULL;
    if (layer < 0 || layer >= c->m->nlayers)
        return ba_error_set(err, BA_ERR_INPUT, "weight cache: layer index %d outside 0..%d", layer,
                            c->m->nlayers - 1);
    int s = slot_of(bits);
    const ba_layer_t *l = &c->m->layers[layer];
    if (s < 0)
        return ba_error_set(err, BA_ERR_INPUT, "layer %s: %d bits is not a width (" BA_BITS_WIDTHS ")",
                            l->name, bits);
    ba_tensor_t **dst = &c->slot[(int64_t)layer * WC_SLOTS + s];
    ba_status st = BA_OK;
    pthread_mutex_lock(&c->lock);
    if (!*dst) st = make_slot(c, l, bits, dst, err);
    *fq = *dst;
    pthread_mutex_unlock(&c->lock);
    return st;
}

ba_status ba_wcache_overrides(ba_wcache_t *c, const int *bits, ba_tensor_t **overrides, ba_error *err) {
    for (int i = 0; i < c->m->nlayers; i++) {
        const ba_layer_t *l = &c->m->layers[i];
        const ba_tensor_t *fq;
        BA_TRY(ba_wcache_get(c, i, bits[i], &fq, err));
        /* A float32 layer at 32 bits runs on its own constant: no override. */
        overrides[l->value] = fq == c->m->values[l->value].constant ? NULL : (ba_tensor_t *)fq;
    }
    return BA_OK;
}

int64_t ba_wcache_bytes(const ba_wcache_t *c) {
    return c->bytes;
}
