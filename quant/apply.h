/* Applying a configuration (per-layer weight widths + quantizer settings +
 * optional activation ranges) to a model: which activations get quantized,
 * the hook that fake-quantizes them in a run, and the quantized ONNX files (fakequant / QDQ) that
 * compute exactly what the in-memory evaluation computes. */
#ifndef BA_QUANT_APPLY_H
#define BA_QUANT_APPLY_H

#include <stdint.h>

#include "model/model.h"
#include "quant/quant.h"

/* Marks (mark[v] = 1, an array of m->nvalues) the activations quantized
 * under --act-bits: the data input (not the weight, not a constant) of every
 * quantizable layer's node, when it is a float tensor. Returns how many. */
int ba_quant_act_targets(const ba_model_t *m, unsigned char *mark);

/* Activation fake-quant of a run: every value whose range (act_ranges, an
 * array of m->nvalues) has count > 0 is fake-quantized to act_bits. */
typedef struct ba_quant_acts {
    int act_bits;
    const ba_act_range_t *act_ranges;
} ba_quant_acts_t;
/* 1 when a has anything to do (act_bits 2..16 and ranges given); 0 = activations stay float. */
int ba_quant_acts_on(const ba_quant_acts_t *a);
/* The executor's on_value hook (model.h; eval/evaluate.h's ba_eval_hook_t) for
 * ctx = a ba_quant_acts_t: fake-quantizes value v through ba_quant_act_apply
 * (on a private copy when *t is shared). BA_ERR_INPUT naming --act-bits when
 * act_bits is not a width. Calibration of the ranges is study/'s
 * (ba_study_calibrate_acts), which runs the evaluator. */
ba_status ba_quant_act_hook(void *ctx, const ba_model_t *m, int v, ba_tensor_t **t, ba_error *err);

/* Marks (mark[v] = 1, an array of m->nvalues) the values ba_quant_act_hook
 * changes under a (those with a range), for ba_eval_hook_t.values: the
 * executor may fuse the other values away. */
void ba_quant_acts_mark(const ba_model_t *m, const ba_quant_acts_t *a, unsigned char *mark);

/* Scale and zero-point that ba_quant_act_apply uses for range r at bits
 * (2..8): the asymmetric rule of quant.h with clip ratio 1. */
void ba_quant_act_qparams(const ba_act_range_t *r, int bits, float *scale, int32_t *zero_point);

/* Writes m's file quantized with w_bits[l] per layer (2..8, 16, 32) under
 * cfg (NULL = defaults) to out_path: qdq = 0 replaces each weight by Q_b(W)
 * (activations stay float); qdq = 1 stores integer codes feeding
 * DequantizeLinear and, when act_ranges is given (array of m->nvalues,
 * count > 0 = quantized to cfg->act_bits), inserts Clip → QuantizeLinear →
 * DequantizeLinear on those activations. Weight layouts that QDQ cannot
 * express (group scales spanning several axes, per-axis below opset 13,
 * blocks below opset 21) are refused with BA_ERR_UNSUPPORTED naming the layer. */
ba_status ba_quant_write_onnx(const ba_model_t *m, const int *w_bits, const ba_quant_cfg_t *cfg,
                              const ba_act_range_t *act_ranges, int qdq, const char *out_path, ba_error *err);

/* Who runs a QDQ file. ORT: the file above (int4/uint4 containers at opset
 * >= 21, asymmetric uint8 activations, computes what eval --plan computes).
 * TENSORRT: explicit quantization as TensorRT takes it — int8 containers
 * only, zero point 0 everywhere: symmetric weights (any width 2..8, codes
 * inside int8), activations int8 symmetric (scale max|x|/127, no Clip);
 * refused with BA_ERR_UNSUPPORTED naming the setting: an asymmetric scheme,
 * group granularity, activation widths 2..7. */
typedef enum { BA_QDQ_ORT = 0, BA_QDQ_TENSORRT = 1 } ba_qdq_profile_t;

/* ba_quant_write_onnx for profile (qdq = 0 ignores it). */
ba_status ba_quant_write_onnx_profile(const ba_model_t *m, const int *w_bits, const ba_quant_cfg_t *cfg,
                                      const ba_act_range_t *act_ranges, int qdq, ba_qdq_profile_t profile,
                                      const char *out_path, ba_error *err);

#endif
