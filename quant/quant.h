/* Weight and activation quantizers (SPEC §3). Defaults are the reference
 * numerics: symmetric, per output channel, clip max, round half to even. */
#ifndef BA_QUANT_QUANT_H
#define BA_QUANT_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "core/bits.h"
#include "core/error.h"
#include "core/tensor.h"

typedef enum { BA_SCHEME_SYMMETRIC = 0, BA_SCHEME_ASYMMETRIC = 1 } ba_scheme_t;
typedef enum { BA_GRAN_PER_CHANNEL = 0, BA_GRAN_PER_TENSOR = 1, BA_GRAN_GROUP = 2 } ba_granularity_t;
typedef enum { BA_CLIP_MAX = 0, BA_CLIP_MSE = 1 } ba_clip_t;
/* What the weights are stored by, so what a width costs (SPEC §4): bitalloc's own packing
 * (b bits per weight + scales, the ONNX writers) or llama.cpp's ggml types, whose real bits
 * per weight (q4_K 4.5) are what avg-bits and memory count (quant/cost.h). */
typedef enum { BA_BACKEND_ONNX = 0, BA_BACKEND_LLAMA = 1 } ba_backend_t;

typedef struct ba_quant_cfg {
    ba_scheme_t scheme;
    ba_granularity_t granularity;
    int group; /* G for BA_GRAN_GROUP (contiguous runs of G along the input axes of one output channel) */
    ba_clip_t clip;
    int act_bits; /* 0 = activations stay float */
    ba_backend_t backend;
} ba_quant_cfg_t;

/* The SPEC §3 defaults. */
ba_quant_cfg_t ba_quant_cfg_default(void);
/* Parses "symmetric"/"asymmetric", "per-channel"/"per-tensor"/"group:G", "max"/"mse". */
ba_status ba_quant_cfg_parse_scheme(const char *s, ba_quant_cfg_t *cfg, ba_error *err);
ba_status ba_quant_cfg_parse_granularity(const char *s, ba_quant_cfg_t *cfg, ba_error *err);
ba_status ba_quant_cfg_parse_clip(const char *s, ba_quant_cfg_t *cfg, ba_error *err);
/* "onnx" / "llama". */
ba_status ba_quant_cfg_parse_backend(const char *s, ba_quant_cfg_t *cfg, ba_error *err);

/* Number of scales (and zero-points when asymmetric) a weight of this shape
 * carries under cfg: channels, 1, or channels * ceil(inner / G). */
int64_t ba_quant_num_scales(int ndim, const int64_t *shape, int ch_axis, const ba_quant_cfg_t *cfg);

/* ---- names (for plans, tables and messages) ---- */
const char *ba_quant_scheme_name(ba_scheme_t s);   /* "symmetric" / "asymmetric" */
const char *ba_quant_clip_name(ba_clip_t c);       /* "max" / "mse" */
const char *ba_quant_backend_name(ba_backend_t b); /* "onnx" / "llama" */
/* "per-channel", "per-tensor" or "group:G" into buf; returns buf. */
const char *ba_quant_granularity_str(const ba_quant_cfg_t *cfg, char *buf, size_t cap);
/* The widths the tool handles are core/bits.h's (ba_bits_valid). */

/* ---- weight quantizer ----
 * Integer widths b = 2..8, per scale group g (a whole channel, the whole
 * tensor, or G consecutive elements of one channel's flattened non-channel
 * axes; the last group of a channel may be short), clip ratio r:
 *   symmetric:  qmax = 2^(b-1)-1, a = max|w_g|,
 *               scale = float32((double)a * r / qmax)          (1 if that is 0)
 *               code  = clamp(rint(w / scale), -qmax, qmax),  Q(w) = code * scale
 *   asymmetric: L = 2^b-1, lo = min(min w_g, 0), hi = max(max w_g, 0),
 *               scale = float32(((double)hi*r - (double)lo*r) / L)  (1 if that is 0)
 *               zp    = clamp(rint(-(double)lo*r / scale), 0, L)    (double arithmetic)
 *               code  = clamp(rint(w / scale) + zp, 0, L),    Q(w) = (code - zp) * scale
 * w / scale, rint (round half to even) and the products are float32; a zero
 * result is always +0. clip max: r = 1. clip mse: r from BA_QUANT_MSE_GRID
 * (1.00, 0.99, ..., 0.50), the one with the smallest Σ (Q(w)-w)^2 over the
 * group (summed in double, in element order; first on ties).
 * tests/fixtures/make_quant_refs.py is an independent NumPy copy of these rules. */
#define BA_QUANT_MSE_STEPS 51 /* r_k = (100 - k) / 100, k = 0..50 */
#define BA_QUANT_MSE_DENOM 100

typedef struct ba_qweight {
    int bits;
    ba_quant_cfg_t cfg;
    int ch_axis;
    int64_t group_len;        /* elements per scale group (0 for b = 16/32) */
    ba_tensor_t *fq;          /* float32, shape of w: Q_b(w) */
    ba_tensor_t *codes;       /* shape of w; int8 (symmetric) or uint8 (asymmetric); NULL for b = 16/32 */
    ba_tensor_t *scales;      /* float32: per-tensor scalar, per-channel [C], group [C, ceil(n_c / G)];
                                 NULL for b = 16/32 */
    ba_tensor_t *zero_points; /* uint8, shape of scales; asymmetric only (else NULL) */
} ba_qweight_t;

/* Quantizes weight w (any float dtype, any rank; ch_axis = output-channel axis,
 * ignored per-tensor) to bits. b = 16: fp16 round trip; b = 32: float32 copy.
 * cfg NULL = defaults. *out is overwritten (free it with ba_qweight_free). */
ba_status ba_quant_weight(const ba_tensor_t *w, int ch_axis, int bits, const ba_quant_cfg_t *cfg,
                          ba_qweight_t *out, ba_error *err);
void ba_qweight_free(ba_qweight_t *q);

/* The kernel under ba_quant_weight for the common layout: rows of n
 * contiguous floats (w is (rows, n)), integer bits, groups of G along a row
 * (G >= n: one scale per row). fq is (rows, n); codes (rows, n) bytes
 * (int8 bit patterns when symmetric); scales and zps (rows, ceil(n/G)),
 * zps may be NULL when symmetric. No allocation; single-threaded. */
ba_status ba_quant_rows_f32(const float *w, int64_t rows, int64_t n, int64_t G, int bits,
                            const ba_quant_cfg_t *cfg, float *fq, uint8_t *codes, float *scales, uint8_t *zps,
                            ba_error *err);

/* ---- activation fake-quant (asymmetric per-tensor, range widened to include 0) ---- */
typedef struct ba_act_range {
    float min, max; /* over the finite values seen */
    int64_t count;  /* finite values seen */
} ba_act_range_t;

void ba_quant_act_range_init(ba_act_range_t *r);
/* Widens r with the finite values of t (any float dtype). */
ba_status ba_quant_act_range_update(ba_act_range_t *r, const ba_tensor_t *t, ba_error *err);
/* Fake-quantizes float32 t IN PLACE with the asymmetric rule above (r = 1) on
 * [min(r.min, 0), max(r.max, 0)]; bits 2..8, 16 (fp16 round trip) or 32 (no-op).
 * The caller owns t's data (clone a shared tensor first). */
ba_status ba_quant_act_apply(ba_tensor_t *t, const ba_act_range_t *r, int bits, ba_error *err);

#endif
