/* Applying a configuration (per-layer weight widths + quantizer settings +
 * optional activation ranges) to a model: which activations get quantized,
 * their calibration, and the quantized ONNX files (fakequant / QDQ) that
 * compute exactly what the in-memory evaluation computes. */
#ifndef BA_QUANT_APPLY_H
#define BA_QUANT_APPLY_H

#include <stdint.h>

#include "eval/evaluate.h"
#include "model/model.h"
#include "quant/quant.h"

/* Marks (mark[v] = 1, an array of m->nvalues) the activations quantized
 * under --act-bits: the data input (not the weight, not a constant) of every
 * quantizable layer's node, when it is a float tensor. Returns how many. */
int ba_quant_act_targets(const ba_model_t *m, unsigned char *mark);

/* Calibrates per-tensor ranges of those activations on the evaluator's
 * samples (FP model; whole batches only when the model fixes its batch size).
 * ranges: m->nvalues entries, all written; count > 0 exactly for the values
 * to fake-quantize (a target that never held a finite value stays float). */
ba_status ba_quant_calibrate_acts(const ba_evaluator_t *ev, const ba_model_t *m, ba_act_range_t *ranges,
                                  ba_error *err);

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
