/* Kernel dispatch table. Each op family file (ops_conv.c, ops_elementwise.c …)
 * defines one NULL-terminated ba_op_def_t array; ops_table.c looks names up.
 * A kernel sees a node (attributes, opset) and tensors, never the graph. */
#ifndef BA_MODEL_OPS_H
#define BA_MODEL_OPS_H

#include "model/model.h"

/* in[i] is NULL for an optional input that was left out. The kernel checks
 * shapes/dtypes (BA_ERR_INPUT naming the node on mismatch), allocates each
 * out[i] (nout as in the node; out[i] may be left NULL only for optional
 * outputs that the node does not request, i.e. node->outputs[i] == -1). */
typedef ba_status (*ba_op_forward_fn)(const ba_node_t *node, ba_tensor_t *const *in, int nin,
                                      ba_tensor_t **out, int nout, ba_error *err);

typedef struct ba_op_def {
    const char *name;         /* ONNX op_type, default domain */
    ba_op_forward_fn forward;
} ba_op_def_t;

/* Family tables (each terminated by {NULL, NULL}). */
extern const ba_op_def_t ba_ops_conv[];        /* ops_conv.c: Conv, ConvTranspose */
extern const ba_op_def_t ba_ops_matmul[];      /* ops_matmul.c: Gemm, MatMul */
extern const ba_op_def_t ba_ops_pool[];        /* ops_pool.c: MaxPool, AveragePool, Global*Pool */
extern const ba_op_def_t ba_ops_norm[];        /* ops_norm.c: Batch/Layer/InstanceNormalization, Softmax, LogSoftmax */
extern const ba_op_def_t ba_ops_quant[];       /* ops_quant.c: QuantizeLinear, DequantizeLinear */
extern const ba_op_def_t ba_ops_elementwise[]; /* ops_elementwise.c: arithmetic, activations, logic, Where */
extern const ba_op_def_t ba_ops_shape[];       /* ops_shape.c: Reshape … Cast, Constant, Shape, Range, Resize */
extern const ba_op_def_t ba_ops_reduce[];      /* ops_reduce.c: Reduce*, ArgMax/ArgMin, TopK, CumSum */
extern const ba_op_def_t ba_ops_rnn[];         /* ops_rnn.c: LSTM, GRU */
extern const ba_op_def_t ba_ops_control[];     /* ops_control.c: If (the merge of a run-time If) */

/* Truth of an If condition: one element of bool or a number type (0 is
 * false); BA_ERR_INPUT naming the If node otherwise. */
ba_status ba_if_truth(const char *node, const ba_tensor_t *c, int *truth, ba_error *err);

/* Resize / Upsample (every opset form) resolved for one input: per axis and
 * output index, ntaps taps — input offset along the axis (index × the
 * input's contiguous stride) and weight; the output element is the product
 * over axes of the taps' sums (separable). The forward (ops_shape.c) and the
 * backward (grad_shape.c, the same taps transposed) share it. */
typedef struct ba_resize_plan {
    int ndim, ntaps; /* taps: 1 nearest, 2 linear, 4 cubic */
    int mode;        /* 0 nearest, 1 linear, 2 cubic */
    int64_t out_shape[BA_MAX_DIMS];
    int64_t *idx[BA_MAX_DIMS]; /* out_shape[d] * ntaps offsets; -1: extrapolated (tf_crop_and_resize) */
    double *w[BA_MAX_DIMS];    /* their weights; nearest: 1 */
    int changes[BA_MAX_DIMS];  /* axis d interpolates somewhere (else tap 0, weight 1, everywhere) */
    int extrapolates;          /* some output reads extrapolation instead of the input */
    float extrapolation;       /* extrapolation_value */
    void *buf;
} ba_resize_plan_t;

/* Reads node n's attributes and its inputs (in[0] the data; scales, sizes,
 * roi as its opset has them) into p; free with ba_resize_plan_free. */
ba_status ba_resize_plan_make(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_resize_plan_t *p,
                              ba_error *err);
void ba_resize_plan_free(ba_resize_plan_t *p);

/* NULL when op_type (default domain "" or "ai.onnx") has no kernel. */
const ba_op_def_t *ba_op_lookup(const char *op_type, const char *domain);

#endif
