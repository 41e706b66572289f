/* Writes quantized ONNX models from the original file: `fakequant` replaces
 * each layer's weight by Q_b(W); `qdq` stores integer codes and inserts
 * DequantizeLinear (and QuantizeLinear/DequantizeLinear pairs for
 * activations). Everything not quantized is kept as it was. */
#ifndef BA_QUANT_ONNX_WRITE_H
#define BA_QUANT_ONNX_WRITE_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

typedef struct ba_onnx_qweight {
    const char *name;      /* initializer name, or the output name of a Constant node */
    int bits;              /* 2..8 quantized, 16 fp16-rounded, 32 left as it is */
    const ba_tensor_t *fq; /* fakequant: float32 Q_b(W) in the stored layout */
    /* qdq (bits 2..8): */
    const ba_tensor_t *codes;   /* stored layout; int8 (symmetric) or uint8 (asymmetric, zero point added),
                                   as ba_quant_weight makes them */
    const float *scales;        /* nscales values, in the order of the scale tensor (see axis) */
    const uint8_t *zero_points; /* nscales values; NULL when symmetric */
    int64_t nscales;
    int axis;       /* per-channel axis, or the block axis when block_size > 0; -1 per-tensor */
    int block_size; /* > 0: blocked along `axis` (opset >= 21); the scale tensor has the
                       weight's shape with dims[axis] replaced by the block count */
} ba_onnx_qweight_t;

typedef struct ba_onnx_qact {
    const char *name; /* tensor whose consumers read the fake-quantized copy */
    int bits;         /* 2..8: unsigned asymmetric QDQ; 16: Cast to float16 and back */
    float scale;      /* 2..8 only */
    int32_t zero_point;
    int symmetric; /* int8 container, zero point 0, no Clip (8 bits: TensorRT's rule) */
} ba_onnx_qact_t;

ba_status ba_onnx_write_fakequant(const char *src, const char *dst, const ba_onnx_qweight_t *w, int nw,
                                  ba_error *err);
ba_status ba_onnx_write_qdq(const char *src, const char *dst, const ba_onnx_qweight_t *w, int nw,
                            const ba_onnx_qact_t *acts, int nacts, ba_error *err);
/* int8_only: every weight in an int8 container (never int4 types), as TensorRT takes them. */
ba_status ba_onnx_write_qdq_profile(const char *src, const char *dst, const ba_onnx_qweight_t *w, int nw,
                                    const ba_onnx_qact_t *acts, int nacts, int int8_only, ba_error *err);

#endif
