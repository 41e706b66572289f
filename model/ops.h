/* The op table: one enum of the supported ONNX ops and one row per op
 * (ops_table.c) with its forward kernel, backward rule, exact-HVP rule kind
 * and flags. The kernels live with their op family (ops_conv.c,
 * grad_conv.c …: forward, backward and tangent side by side); the list of
 * ops and their rows is only here and in ops_table.c. A node's row is
 * resolved once at load (ba_node_t.op / .def). A kernel sees a node
 * (attributes, opset) and tensors, never the graph. */
#ifndef BA_MODEL_OPS_H
#define BA_MODEL_OPS_H

#include "model/model.h"

/* in[i] is NULL for an optional input that was left out. The kernel checks
 * shapes/dtypes (BA_ERR_INPUT naming the node on mismatch), allocates each
 * out[i] (nout as in the node; out[i] may be left NULL only for optional
 * outputs that the node does not request, i.e. node->outputs[i] == -1). */
typedef ba_status ba_op_forward_t(const ba_node_t *node, ba_tensor_t *const *in, int nin, ba_tensor_t **out,
                                  int nout, ba_error *err);
typedef ba_op_forward_t *ba_op_forward_fn;

/* Backward (model/grad.h): in/out: the node's forward values (in[i] NULL
 * for an omitted input). dout[j]: dL/d out[j], NULL when no gradient reaches
 * that output. need[i]: whether din[i] is wanted. din[i]: accumulated into
 * (+=); a NULL slot is allocated (zero-filled, shape of in[i]) by the kernel. */
typedef ba_status ba_op_backward_t(const ba_node_t *n, ba_tensor_t *const *in, int nin,
                                   ba_tensor_t *const *out, int nout, ba_tensor_t *const *dout,
                                   const unsigned char *need, ba_tensor_t **din, ba_error *err);
typedef ba_op_backward_t *ba_op_backward_fn;

/* An op's own rules for the exact HVP (BA_HVP_OWN; grad_hvp.c uses them
 * instead of its generic kinds). tangent: tout[j] = J_j · tin (tin[i] NULL:
 * no tangent on input i; tout[j] left NULL: zero). second: din[i] += the
 * derivative of the op's backward B(in)(gout) along tin, gout = the base
 * dL/d out (the second-order term; the first-order B(in)(t dout) is the
 * op's backward). */
typedef ba_status ba_op_tangent_t(const ba_node_t *n, ba_tensor_t *const *in, int nin,
                                  ba_tensor_t *const *out, int nout, ba_tensor_t *const *tin,
                                  ba_tensor_t **tout, ba_error *err);
typedef ba_status ba_op_second_t(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_tensor_t *const *out,
                                 int nout, ba_tensor_t *const *tin, ba_tensor_t *const *gout,
                                 const unsigned char *need, ba_tensor_t **din, ba_error *err);
typedef ba_op_tangent_t *ba_op_tangent_fn;
typedef ba_op_second_t *ba_op_second_fn;

/* Every op with a kernel (default domain). */
typedef enum ba_op_id {
    BA_OP_UNKNOWN = 0, /* no kernel (another domain, or an op not listed here) */
    BA_OP_CONV,
    BA_OP_CONV_TRANSPOSE,
    BA_OP_GEMM,
    BA_OP_MATMUL,
    BA_OP_MAX_POOL,
    BA_OP_AVERAGE_POOL,
    BA_OP_LP_POOL,
    BA_OP_GLOBAL_AVERAGE_POOL,
    BA_OP_GLOBAL_MAX_POOL,
    BA_OP_BATCH_NORMALIZATION,
    BA_OP_LAYER_NORMALIZATION,
    BA_OP_INSTANCE_NORMALIZATION,
    BA_OP_SOFTMAX,
    BA_OP_LOG_SOFTMAX,
    BA_OP_QUANTIZE_LINEAR,
    BA_OP_DEQUANTIZE_LINEAR,
    BA_OP_ADD,
    BA_OP_SUB,
    BA_OP_MUL,
    BA_OP_DIV,
    BA_OP_POW,
    BA_OP_MOD,
    BA_OP_EQUAL,
    BA_OP_LESS,
    BA_OP_LESS_OR_EQUAL,
    BA_OP_GREATER,
    BA_OP_GREATER_OR_EQUAL,
    BA_OP_AND,
    BA_OP_OR,
    BA_OP_XOR,
    BA_OP_PRELU,
    BA_OP_SUM,
    BA_OP_MEAN,
    BA_OP_MIN,
    BA_OP_MAX,
    BA_OP_WHERE,
    BA_OP_SQRT,
    BA_OP_RECIPROCAL,
    BA_OP_EXP,
    BA_OP_LOG,
    BA_OP_NEG,
    BA_OP_ABS,
    BA_OP_ERF,
    BA_OP_TANH,
    BA_OP_SIGMOID,
    BA_OP_RELU,
    BA_OP_LEAKY_RELU,
    BA_OP_ELU,
    BA_OP_SELU,
    BA_OP_CLIP,
    BA_OP_HARD_SIGMOID,
    BA_OP_HARD_SWISH,
    BA_OP_GELU,
    BA_OP_SOFTPLUS,
    BA_OP_SOFTSIGN,
    BA_OP_MISH,
    BA_OP_FLOOR,
    BA_OP_CEIL,
    BA_OP_ROUND,
    BA_OP_SIGN,
    BA_OP_SIN,
    BA_OP_COS,
    BA_OP_NOT,
    BA_OP_IS_NAN,
    BA_OP_IDENTITY,
    BA_OP_DROPOUT,
    BA_OP_FLATTEN,
    BA_OP_RESHAPE,
    BA_OP_SQUEEZE,
    BA_OP_UNSQUEEZE,
    BA_OP_TRANSPOSE,
    BA_OP_CONCAT,
    BA_OP_SPLIT,
    BA_OP_SLICE,
    BA_OP_GATHER,
    BA_OP_GATHER_ELEMENTS,
    BA_OP_EXPAND,
    BA_OP_TILE,
    BA_OP_PAD,
    BA_OP_RESIZE,
    BA_OP_UPSAMPLE,
    BA_OP_CONSTANT,
    BA_OP_CONSTANT_OF_SHAPE,
    BA_OP_SHAPE,
    BA_OP_SIZE,
    BA_OP_RANGE,
    BA_OP_CAST,
    BA_OP_CAST_LIKE,
    BA_OP_NON_ZERO,
    BA_OP_SCATTER_ND,
    BA_OP_TRILU,
    BA_OP_REDUCE_SUM,
    BA_OP_REDUCE_MEAN,
    BA_OP_REDUCE_MAX,
    BA_OP_REDUCE_MIN,
    BA_OP_REDUCE_PROD,
    BA_OP_REDUCE_L1,
    BA_OP_REDUCE_L2,
    BA_OP_REDUCE_SUM_SQUARE,
    BA_OP_REDUCE_LOG_SUM_EXP,
    BA_OP_ARG_MAX,
    BA_OP_ARG_MIN,
    BA_OP_TOP_K,
    BA_OP_CUM_SUM,
    BA_OP_IF,
    BA_OP_LSTM,
    BA_OP_GRU,
    BA_OP_COUNT
} ba_op_id;

/* Exact-HVP rule kinds (grad_hvp.c). */
typedef enum ba_hvp_kind {
    BA_HVP_FD = 0,   /* no rule: local central difference of the backward (needs a backward) */
    BA_HVP_LINEAR,   /* jointly linear in its float inputs (hvp_mask) */
    BA_HVP_BILINEAR, /* Mul, MatMul; Gemm and Conv (bias: see the FD fallback) */
    BA_HVP_UNARY,    /* y = f(x) elementwise: J = diag f'(x); second order f''(x)·tx·g */
    BA_HVP_SELECT,   /* MaxPool, GlobalMaxPool, Max, Min: each output picks one input */
    BA_HVP_BN,       /* BatchNormalization (inference): linear in X */
    BA_HVP_DIV,      /* a / b */
    BA_HVP_SOFTMAX,  /* Softmax: J = diag y − y yᵀ, symmetric */
    BA_HVP_INSTNORM, /* InstanceNormalization: per-plane statistics of X, scale and B per channel */
    BA_HVP_OWN,      /* the row's own tangent and second functions */
} ba_hvp_kind;
#define BA_HVP_ALL 0xFFFFFFFFu /* hvp_mask: every input */

/* Op flags. Exactly one of: a backward, BA_OPF_NOGRAD or BA_OPF_NO_BACKWARD. */
enum {
    BA_OPF_NOGRAD = 1u << 0, /* outputs carry no gradient (integers, booleans, shapes, steps) */
    BA_OPF_NO_BACKWARD =
        1u << 1,             /* differentiable, no backward here: a gradient path through it is unsupported */
    BA_OPF_WEIGHT = 1u << 2, /* may consume a quantizable layer weight (SPEC §2; model/graph.c) */
    BA_OPF_RECURRENT =
        1u << 3, /* LSTM/GRU: W and R are layers on their gate axis; R multiplies the hidden state */
    BA_OPF_CHAIN = 1u << 4,      /* a weight chain op the loader looks through (Identity/Transpose/Reshape) */
    BA_OPF_CONTROL = 1u << 5,    /* control flow: the merge of a run-time If */
    BA_OPF_PIECEWISE = 1u << 6,  /* unary, linear on each piece (f'' = 0; the frozen pattern of the HVPs) */
    BA_OPF_ACTIVATION = 1u << 7, /* input 0 mapped to an output of its shape element- or row-wise
                                    (activations, normalisations, casts): LRP passes relevance through */
    BA_OPF_LAYOUT =
        1u << 8, /* moves or copies elements without arithmetic (reshapes, slices, gathers, pads) */
};

typedef struct ba_op_def {
    ba_op_id id;
    const char *name; /* ONNX op_type, default domain */
    ba_op_forward_fn forward;
    ba_op_backward_fn backward; /* NULL: BA_OPF_NOGRAD or BA_OPF_NO_BACKWARD */
    ba_hvp_kind hvp;
    unsigned hvp_mask; /* inputs the HVP rule covers; a tangent on another input falls back to BA_HVP_FD */
    ba_op_tangent_fn tangent; /* BA_HVP_OWN only */
    ba_op_second_fn second;   /* BA_HVP_OWN only */
    unsigned flags;           /* BA_OPF_* */
} ba_op_def_t;

/* The rows, indexed by ba_op_id (row 0, BA_OP_UNKNOWN, is empty). */
extern const ba_op_def_t ba_op_defs[BA_OP_COUNT];

/* NULL when op_type (default domain "" or "ai.onnx") has no kernel. */
const ba_op_def_t *ba_op_lookup(const char *op_type, const char *domain);

/* Sets n->def and n->op from n->op_type and n->domain (BA_OP_UNKNOWN, NULL: no kernel). */
void ba_node_resolve(ba_node_t *n);

/* Flags of node n's op (0 when it has no kernel). */
static inline unsigned ba_node_flags(const ba_node_t *n) {
    return n->def ? n->def->flags : 0u;
}

/* ---- the kernels the rows name, defined in their family files ---- */
/* grad_control.c */
extern ba_op_backward_t ba_if_backward;
/* grad_conv.c */
extern ba_op_backward_t ba_conv_backward, ba_convt_backward;
/* grad_elementwise.c */
extern ba_op_backward_t ba_add_backward, ba_div_backward, ba_mul_backward, ba_pass_backward, ba_pow_backward,
    ba_prelu_backward, ba_sub_backward, ba_unary_backward, ba_variadic_backward, ba_where_backward;
/* grad_matmul.c */
extern ba_op_backward_t ba_gemm_backward, ba_matmul_backward;
/* grad_norm.c */
extern ba_op_backward_t ba_batchnorm_backward, ba_instnorm_backward, ba_layernorm_backward,
    ba_softmax_backward;
/* grad_pool.c */
extern ba_op_backward_t ba_global_backward, ba_pool_backward;
/* grad_reduce.c */
extern ba_op_backward_t ba_reduce_backward;
/* grad_shape.c */
extern ba_op_backward_t ba_concat_backward, ba_expand_backward, ba_gather_backward, ba_index_map_backward,
    ba_reshape_backward, ba_resize_backward, ba_slice_backward, ba_split_backward, ba_transpose_backward;
/* ops_control.c */
extern ba_op_forward_t ba_if_merge;
/* ops_conv.c */
extern ba_op_forward_t ba_conv_forward, ba_convt_forward;
/* ops_elementwise.c */
extern ba_op_forward_t ba_fwd_binary, ba_fwd_unary, ba_fwd_variadic, ba_fwd_where;
/* ops_matmul.c */
extern ba_op_forward_t ba_gemm_forward, ba_matmul_forward;
/* ops_norm.c */
extern ba_op_forward_t ba_batchnorm_forward, ba_instnorm_forward, ba_layernorm_forward, ba_logsoftmax_forward,
    ba_softmax_forward;
/* ops_pool.c */
extern ba_op_forward_t ba_avgpool_forward, ba_gavg_forward, ba_gmax_forward, ba_lppool_forward,
    ba_maxpool_forward;
/* ops_quant.c */
extern ba_op_forward_t ba_dequantize_linear, ba_quantize_linear;
/* ops_reduce.c */
extern ba_op_forward_t ba_fwd_arg, ba_fwd_cumsum, ba_fwd_reduce, ba_fwd_topk;
/* ops_rnn.c */
extern ba_op_tangent_t ba_rnn_tangent;
extern ba_op_second_t ba_rnn_second;
extern ba_op_forward_t ba_rnn_forward;
extern ba_op_backward_t ba_rnn_backward;
/* ops_shape.c */
extern ba_op_forward_t ba_fwd_cast, ba_fwd_concat, ba_fwd_constant, ba_fwd_constant_of_shape, ba_fwd_expand,
    ba_fwd_flatten, ba_fwd_gather, ba_fwd_gather_elements, ba_fwd_identity, ba_fwd_nonzero, ba_fwd_pad,
    ba_fwd_range, ba_fwd_reshape, ba_fwd_resize, ba_fwd_scatter_nd, ba_fwd_shape, ba_fwd_size, ba_fwd_slice,
    ba_fwd_split, ba_fwd_squeeze, ba_fwd_tile, ba_fwd_transpose, ba_fwd_trilu, ba_fwd_unsqueeze;

/* ONNX attribute defaults of the activations (operator docs), read by their
 * forward kernels, backward and tangent rules. */
#define BA_LEAKY_ALPHA 0.01f
#define BA_ELU_ALPHA 1.0f
#define BA_SELU_ALPHA 1.67326319217681884765625f
#define BA_SELU_GAMMA 1.05070102214813232421875f
#define BA_HSIG_ALPHA 0.2f
#define BA_HSIG_BETA 0.5f

/* Checks a forward kernel's inputs: at least k of them, in[0..k) all present;
 * BA_ERR_INPUT naming node n otherwise (ops_shape.c). */
ba_status ba_op_need_inputs(const ba_node_t *n, ba_tensor_t *const *in, int nin, int k, ba_error *err);

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

#endif
