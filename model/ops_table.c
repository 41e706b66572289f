/* The op table: one row per op of ba_op_id (model/ops.h), looked up by
 * ONNX op_type once at load. */
#include "model/ops.h"

#include <string.h>

#define OP(ID, ...) [BA_OP_##ID] = {BA_OP_##ID, __VA_ARGS__}

/* OP(id, name, forward, backward, HVP rule kind, HVP input mask, own tangent, own second, flags) */
/* clang-format off */
const ba_op_def_t ba_op_defs[] = {
    /* ops_conv.c */
    OP(CONV, "Conv", ba_conv_forward, ba_conv_backward, BA_HVP_BILINEAR, 3, NULL, NULL, BA_OPF_WEIGHT),
    OP(CONV_TRANSPOSE, "ConvTranspose", ba_convt_forward, ba_convt_backward, BA_HVP_BILINEAR, 3, NULL, NULL, BA_OPF_WEIGHT),
    /* ops_matmul.c */
    OP(GEMM, "Gemm", ba_gemm_forward, ba_gemm_backward, BA_HVP_BILINEAR, 3, NULL, NULL, BA_OPF_WEIGHT),
    OP(MATMUL, "MatMul", ba_matmul_forward, ba_matmul_backward, BA_HVP_BILINEAR, 3, NULL, NULL, BA_OPF_WEIGHT),
    /* ops_pool.c */
    OP(MAX_POOL, "MaxPool", ba_maxpool_forward, ba_pool_backward, BA_HVP_SELECT, 1, NULL, NULL, 0),
    OP(AVERAGE_POOL, "AveragePool", ba_avgpool_forward, ba_pool_backward, BA_HVP_LINEAR, 1, NULL, NULL, 0),
    OP(LP_POOL, "LpPool", ba_lppool_forward, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NO_BACKWARD),
    OP(GLOBAL_AVERAGE_POOL, "GlobalAveragePool", ba_gavg_forward, ba_global_backward, BA_HVP_LINEAR, 1, NULL, NULL, 0),
    OP(GLOBAL_MAX_POOL, "GlobalMaxPool", ba_gmax_forward, ba_global_backward, BA_HVP_SELECT, 1, NULL, NULL, 0),
    /* ops_norm.c */
    OP(BATCH_NORMALIZATION, "BatchNormalization", ba_batchnorm_forward, ba_batchnorm_backward, BA_HVP_BN, 1, NULL, NULL, BA_OPF_ACTIVATION),
    OP(LAYER_NORMALIZATION, "LayerNormalization", ba_layernorm_forward, ba_layernorm_backward, BA_HVP_FD, 0, NULL, NULL, BA_OPF_ACTIVATION),
    OP(INSTANCE_NORMALIZATION, "InstanceNormalization", ba_instnorm_forward, ba_instnorm_backward, BA_HVP_INSTNORM, 7, NULL, NULL, BA_OPF_ACTIVATION),
    OP(SOFTMAX, "Softmax", ba_softmax_forward, ba_softmax_backward, BA_HVP_SOFTMAX, 1, NULL, NULL, BA_OPF_ACTIVATION),
    OP(LOG_SOFTMAX, "LogSoftmax", ba_logsoftmax_forward, ba_softmax_backward, BA_HVP_FD, 0, NULL, NULL, BA_OPF_ACTIVATION),
    /* ops_quant.c */
    OP(QUANTIZE_LINEAR, "QuantizeLinear", ba_quantize_linear, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NO_BACKWARD),
    OP(DEQUANTIZE_LINEAR, "DequantizeLinear", ba_dequantize_linear, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NO_BACKWARD),
    /* ops_elementwise.c */
    OP(ADD, "Add", ba_fwd_binary, ba_add_backward, BA_HVP_LINEAR, BA_HVP_ALL, NULL, NULL, 0),
    OP(SUB, "Sub", ba_fwd_binary, ba_sub_backward, BA_HVP_LINEAR, BA_HVP_ALL, NULL, NULL, 0),
    OP(MUL, "Mul", ba_fwd_binary, ba_mul_backward, BA_HVP_BILINEAR, 3, NULL, NULL, 0),
    OP(DIV, "Div", ba_fwd_binary, ba_div_backward, BA_HVP_DIV, 3, NULL, NULL, 0),
    OP(POW, "Pow", ba_fwd_binary, ba_pow_backward, BA_HVP_UNARY, 1, NULL, NULL, 0),
    OP(MOD, "Mod", ba_fwd_binary, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NO_BACKWARD),
    OP(EQUAL, "Equal", ba_fwd_binary, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(LESS, "Less", ba_fwd_binary, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(LESS_OR_EQUAL, "LessOrEqual", ba_fwd_binary, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(GREATER, "Greater", ba_fwd_binary, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(GREATER_OR_EQUAL, "GreaterOrEqual", ba_fwd_binary, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(AND, "And", ba_fwd_binary, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(OR, "Or", ba_fwd_binary, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(XOR, "Xor", ba_fwd_binary, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(PRELU, "PRelu", ba_fwd_binary, ba_prelu_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_PIECEWISE | BA_OPF_ACTIVATION),
    OP(SUM, "Sum", ba_fwd_variadic, ba_variadic_backward, BA_HVP_LINEAR, BA_HVP_ALL, NULL, NULL, 0),
    OP(MEAN, "Mean", ba_fwd_variadic, ba_variadic_backward, BA_HVP_LINEAR, BA_HVP_ALL, NULL, NULL, 0),
    OP(MIN, "Min", ba_fwd_variadic, ba_variadic_backward, BA_HVP_SELECT, BA_HVP_ALL, NULL, NULL, 0),
    OP(MAX, "Max", ba_fwd_variadic, ba_variadic_backward, BA_HVP_SELECT, BA_HVP_ALL, NULL, NULL, 0),
    OP(WHERE, "Where", ba_fwd_where, ba_where_backward, BA_HVP_LINEAR, 6, NULL, NULL, 0),
    OP(SQRT, "Sqrt", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_ACTIVATION),
    OP(RECIPROCAL, "Reciprocal", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_ACTIVATION),
    OP(EXP, "Exp", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_ACTIVATION),
    OP(LOG, "Log", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_ACTIVATION),
    OP(NEG, "Neg", ba_fwd_unary, ba_unary_backward, BA_HVP_LINEAR, 1, NULL, NULL, BA_OPF_ACTIVATION),
    OP(ABS, "Abs", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_PIECEWISE | BA_OPF_ACTIVATION),
    OP(ERF, "Erf", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_ACTIVATION),
    OP(TANH, "Tanh", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_ACTIVATION),
    OP(SIGMOID, "Sigmoid", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_ACTIVATION),
    OP(RELU, "Relu", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_PIECEWISE | BA_OPF_ACTIVATION),
    OP(LEAKY_RELU, "LeakyRelu", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_PIECEWISE | BA_OPF_ACTIVATION),
    OP(ELU, "Elu", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_ACTIVATION),
    OP(SELU, "Selu", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_ACTIVATION),
    OP(CLIP, "Clip", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_PIECEWISE | BA_OPF_ACTIVATION),
    OP(HARD_SIGMOID, "HardSigmoid", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_PIECEWISE | BA_OPF_ACTIVATION),
    OP(HARD_SWISH, "HardSwish", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_ACTIVATION),
    OP(GELU, "Gelu", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_ACTIVATION),
    OP(SOFTPLUS, "Softplus", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, BA_OPF_ACTIVATION),
    OP(SOFTSIGN, "Softsign", ba_fwd_unary, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NO_BACKWARD),
    OP(MISH, "Mish", ba_fwd_unary, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NO_BACKWARD),
    OP(FLOOR, "Floor", ba_fwd_unary, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(CEIL, "Ceil", ba_fwd_unary, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(ROUND, "Round", ba_fwd_unary, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(SIGN, "Sign", ba_fwd_unary, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(SIN, "Sin", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, 0),
    OP(COS, "Cos", ba_fwd_unary, ba_unary_backward, BA_HVP_UNARY, 1, NULL, NULL, 0),
    OP(NOT, "Not", ba_fwd_unary, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(IS_NAN, "IsNaN", ba_fwd_unary, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    /* ops_shape.c */
    OP(IDENTITY, "Identity", ba_fwd_identity, ba_pass_backward, BA_HVP_LINEAR, 1, NULL, NULL, BA_OPF_CHAIN | BA_OPF_ACTIVATION),
    OP(DROPOUT, "Dropout", ba_fwd_identity, ba_pass_backward, BA_HVP_LINEAR, 1, NULL, NULL, BA_OPF_ACTIVATION),
    OP(FLATTEN, "Flatten", ba_fwd_flatten, ba_reshape_backward, BA_HVP_LINEAR, 1, NULL, NULL, BA_OPF_LAYOUT),
    OP(RESHAPE, "Reshape", ba_fwd_reshape, ba_reshape_backward, BA_HVP_LINEAR, 1, NULL, NULL, BA_OPF_CHAIN | BA_OPF_LAYOUT),
    OP(SQUEEZE, "Squeeze", ba_fwd_squeeze, ba_reshape_backward, BA_HVP_LINEAR, 1, NULL, NULL, BA_OPF_LAYOUT),
    OP(UNSQUEEZE, "Unsqueeze", ba_fwd_unsqueeze, ba_reshape_backward, BA_HVP_LINEAR, 1, NULL, NULL, BA_OPF_LAYOUT),
    OP(TRANSPOSE, "Transpose", ba_fwd_transpose, ba_transpose_backward, BA_HVP_LINEAR, 1, NULL, NULL, BA_OPF_CHAIN | BA_OPF_LAYOUT),
    OP(CONCAT, "Concat", ba_fwd_concat, ba_concat_backward, BA_HVP_LINEAR, BA_HVP_ALL, NULL, NULL, BA_OPF_LAYOUT),
    OP(SPLIT, "Split", ba_fwd_split, ba_split_backward, BA_HVP_LINEAR, 1, NULL, NULL, BA_OPF_LAYOUT),
    OP(SLICE, "Slice", ba_fwd_slice, ba_slice_backward, BA_HVP_LINEAR, 1, NULL, NULL, BA_OPF_LAYOUT),
    OP(GATHER, "Gather", ba_fwd_gather, ba_gather_backward, BA_HVP_LINEAR, 1, NULL, NULL, BA_OPF_WEIGHT | BA_OPF_LAYOUT),
    OP(GATHER_ELEMENTS, "GatherElements", ba_fwd_gather_elements, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NO_BACKWARD),
    OP(EXPAND, "Expand", ba_fwd_expand, ba_expand_backward, BA_HVP_LINEAR, 1, NULL, NULL, BA_OPF_LAYOUT),
    OP(TILE, "Tile", ba_fwd_tile, ba_index_map_backward, BA_HVP_LINEAR, 1, NULL, NULL, BA_OPF_LAYOUT),
    OP(PAD, "Pad", ba_fwd_pad, ba_index_map_backward, BA_HVP_LINEAR, 5, NULL, NULL, BA_OPF_LAYOUT),
    OP(RESIZE, "Resize", ba_fwd_resize, ba_resize_backward, BA_HVP_LINEAR, 1, NULL, NULL, 0),
    OP(UPSAMPLE, "Upsample", ba_fwd_resize, ba_resize_backward, BA_HVP_LINEAR, 1, NULL, NULL, 0),
    OP(CONSTANT, "Constant", ba_fwd_constant, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(CONSTANT_OF_SHAPE, "ConstantOfShape", ba_fwd_constant_of_shape, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(SHAPE, "Shape", ba_fwd_shape, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(SIZE, "Size", ba_fwd_size, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(RANGE, "Range", ba_fwd_range, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(CAST, "Cast", ba_fwd_cast, ba_pass_backward, BA_HVP_LINEAR, 1, NULL, NULL, BA_OPF_ACTIVATION),
    OP(CAST_LIKE, "CastLike", ba_fwd_cast, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NO_BACKWARD),
    OP(NON_ZERO, "NonZero", ba_fwd_nonzero, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(SCATTER_ND, "ScatterND", ba_fwd_scatter_nd, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NO_BACKWARD),
    OP(TRILU, "Trilu", ba_fwd_trilu, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NO_BACKWARD),
    /* ops_reduce.c */
    OP(REDUCE_SUM, "ReduceSum", ba_fwd_reduce, ba_reduce_backward, BA_HVP_LINEAR, 1, NULL, NULL, 0),
    OP(REDUCE_MEAN, "ReduceMean", ba_fwd_reduce, ba_reduce_backward, BA_HVP_LINEAR, 1, NULL, NULL, 0),
    OP(REDUCE_MAX, "ReduceMax", ba_fwd_reduce, ba_reduce_backward, BA_HVP_FD, 0, NULL, NULL, 0),
    OP(REDUCE_MIN, "ReduceMin", ba_fwd_reduce, ba_reduce_backward, BA_HVP_FD, 0, NULL, NULL, 0),
    OP(REDUCE_PROD, "ReduceProd", ba_fwd_reduce, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NO_BACKWARD),
    OP(REDUCE_L1, "ReduceL1", ba_fwd_reduce, ba_reduce_backward, BA_HVP_FD, 0, NULL, NULL, 0),
    OP(REDUCE_L2, "ReduceL2", ba_fwd_reduce, ba_reduce_backward, BA_HVP_FD, 0, NULL, NULL, 0),
    OP(REDUCE_SUM_SQUARE, "ReduceSumSquare", ba_fwd_reduce, ba_reduce_backward, BA_HVP_FD, 0, NULL, NULL, 0),
    OP(REDUCE_LOG_SUM_EXP, "ReduceLogSumExp", ba_fwd_reduce, ba_reduce_backward, BA_HVP_FD, 0, NULL, NULL, 0),
    OP(ARG_MAX, "ArgMax", ba_fwd_arg, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(ARG_MIN, "ArgMin", ba_fwd_arg, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NOGRAD),
    OP(TOP_K, "TopK", ba_fwd_topk, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NO_BACKWARD),
    OP(CUM_SUM, "CumSum", ba_fwd_cumsum, NULL, BA_HVP_FD, 0, NULL, NULL, BA_OPF_NO_BACKWARD),
    /* ops_control.c */
    OP(IF, "If", ba_if_merge, ba_if_backward, BA_HVP_LINEAR, BA_HVP_ALL, NULL, NULL, BA_OPF_CONTROL),
    /* ops_rnn.c */
    OP(LSTM, "LSTM", ba_rnn_forward, ba_rnn_backward, BA_HVP_OWN, 0, ba_rnn_tangent, ba_rnn_second, BA_OPF_WEIGHT | BA_OPF_RECURRENT),
    OP(GRU, "GRU", ba_rnn_forward, ba_rnn_backward, BA_HVP_OWN, 0, ba_rnn_tangent, ba_rnn_second, BA_OPF_WEIGHT | BA_OPF_RECURRENT),
};
/* clang-format on */

_Static_assert(sizeof ba_op_defs / sizeof ba_op_defs[0] == BA_OP_COUNT, "ba_op_defs: one row per ba_op_id");

const ba_op_def_t *ba_op_lookup(const char *op_type, const char *domain) {
    if (!op_type || (domain && domain[0] && strcmp(domain, "ai.onnx") != 0)) return NULL;
    for (int i = 1; i < BA_OP_COUNT; i++)
        if (strcmp(ba_op_defs[i].name, op_type) == 0) return &ba_op_defs[i];
    return NULL;
}

void ba_node_resolve(ba_node_t *n) {
    n->def = ba_op_lookup(n->op_type, n->domain);
    n->op = n->def ? n->def->id : BA_OP_UNKNOWN;
}

int ba_op_is_recurrent(const char *op_type) {
    const ba_op_def_t *d = ba_op_lookup(op_type, "");
    return d && (d->flags & BA_OPF_RECURRENT);
}
