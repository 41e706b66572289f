/* Weight and activation quantizers (SPEC §3). Defaults are the reference
 * numerics: symmetric, per output channel, clip max, round half to even. */
#ifndef BA_QUANT_QUANT_H
#define BA_QUANT_QUANT_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

typedef enum { BA_SCHEME_SYMMETRIC = 0, BA_SCHEME_ASYMMETRIC = 1 } ba_scheme_t;
typedef enum { BA_GRAN_PER_CHANNEL = 0, BA_GRAN_PER_TENSOR = 1, BA_GRAN_GROUP = 2 } ba_granularity_t;
typedef enum { BA_CLIP_MAX = 0, BA_CLIP_MSE = 1 } ba_clip_t;

typedef struct ba_quant_cfg {
    ba_scheme_t scheme;
    ba_granularity_t granularity;
    int group;          /* G for BA_GRAN_GROUP (contiguous runs of G along the input axes of one output channel) */
    ba_clip_t clip;
    int act_bits;       /* 0 = activations stay float */
} ba_quant_cfg_t;

/* The SPEC §3 defaults. */
ba_quant_cfg_t ba_quant_cfg_default(void);
/* Parses "symmetric"/"asymmetric", "per-channel"/"per-tensor"/"group:G", "max"/"mse". */
ba_status ba_quant_cfg_parse_scheme(const char *s, ba_quant_cfg_t *cfg, ba_error *err);
ba_status ba_quant_cfg_parse_granularity(const char *s, ba_quant_cfg_t *cfg, ba_error *err);
ba_status ba_quant_cfg_parse_clip(const char *s, ba_quant_cfg_t *cfg, ba_error *err);

/* Number of scales (and zero-points when asymmetric) a weight of this shape
 * carries under cfg: channels, 1, or channels * ceil(inner / G). */
int64_t ba_quant_num_scales(int ndim, const int64_t *shape, int ch_axis, const ba_quant_cfg_t *cfg);

#endif
