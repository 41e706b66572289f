/* Latency sources for the latency budget (SPEC §4): a measured table
 * (`--latency-table FILE.csv`) or a roofline hardware profile (`--hw PROFILE`,
 * YAML in configs/hw/). Both give latency_us(layer, bits). */
#ifndef BA_SEARCH_HW_H
#define BA_SEARCH_HW_H

#include <stdint.h>

#include "core/error.h"

/* ---- measured table: CSV with header `layer,bits,latency_us` ---- */
typedef struct ba_latency_table ba_latency_table_t;

/* Errors (BA_ERR_INPUT) name the file and line: wrong header, wrong field count,
 * a width outside {2..8,16,32}, a latency that is not a finite number >= 0,
 * a repeated (layer,bits) row. Fields may be double-quoted ("a,b" names). */
ba_status ba_latency_table_load(const char *path, ba_latency_table_t **out, ba_error *err);
/* Microseconds of layer at bits; a missing row is BA_ERR_INPUT naming the file, layer and bits. */
ba_status ba_latency_table_get(const ba_latency_table_t *t, const char *layer, int bits, double *us,
                               ba_error *err);
int ba_latency_table_rows(const ba_latency_table_t *t);
void ba_latency_table_free(ba_latency_table_t *t);

/* ---- roofline profile ----
 * For a layer with W(b) weight bytes at b bits (packed + scales, as the memory
 * budget counts them) and M multiply-accumulates per sample:
 *
 *   latency_us(b) = max( W(b) / (bandwidth_GBps · 1e9),
 *                        2·M / (peak_TOPS(fmt(b)) · 1e12) ) · 1e6  +  overhead_us
 *
 * i.e. the layer is bound either by streaming its weights from memory or by
 * compute (a MAC is 2 operations, the convention of vendors' TOPS figures),
 * plus a fixed per-layer launch/dispatch overhead. fmt(b) is the narrowest
 * format the profile lists that holds b bits: int<N> with N >= b for b <= 8
 * (3-bit weights run on int4 kernels, 5–7-bit on int8); when no integer format
 * is wide enough, fp16 (else fp32) kernels on dequantized weights; fp16 (else
 * fp32) for 16; fp32 for 32; a width nothing holds is an error. Batch 1;
 * activation traffic is not counted (it does not depend on the weight width). */
#define BA_HW_MAX_FORMAT_BITS 32

typedef struct ba_hw_profile {
    char *name;
    char *description;
    double bandwidth_gbps; /* GB/s (1e9 bytes per second) */
    double overhead_us;    /* per layer */
    double peak_tops[BA_HW_MAX_FORMAT_BITS +
                     1]; /* by format width: int2..int8, fp16 (16), fp32 (32); 0 = absent */
} ba_hw_profile_t;

/* PROFILE is a path (contains '/' or ends in .yaml/.yml) or a name looked up
 * as NAME.yaml in $BITALLOC_HW_DIR, then ./configs/hw, then BA_HW_DEFAULT_DIR
 * when the build defines it. Errors name the file and the key at fault. */
ba_status ba_hw_profile_load(const char *profile, ba_hw_profile_t **out, ba_error *err);
void ba_hw_profile_free(ba_hw_profile_t *hw);
/* The roofline above; BA_ERR_INPUT naming the profile, layer and bits when no format holds bits. */
ba_status ba_hw_layer_latency(const ba_hw_profile_t *hw, const char *layer, int64_t weight_bytes,
                              int64_t macs, int bits, double *us, ba_error *err);

#endif
