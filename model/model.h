/* The graph IR every pass runs on: values (tensors by id), nodes in
 * topological order, quantizable layers (SPEC §2), and the executor.
 * Loading (onnx.c), folding/shape inference (graph.c) and execution (exec.c)
 * fill and walk these structures; kernels (ops_*.c) see only a node and tensors. */
#ifndef BA_MODEL_MODEL_H
#define BA_MODEL_MODEL_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

/* ONNX AttributeProto.AttributeType numbers. */
enum {
    BA_ATTR_FLOAT = 1,
    BA_ATTR_INT = 2,
    BA_ATTR_STRING = 3,
    BA_ATTR_TENSOR = 4,
    BA_ATTR_GRAPH = 5,
    BA_ATTR_FLOATS = 6,
    BA_ATTR_INTS = 7,
    BA_ATTR_STRINGS = 8
};

typedef struct ba_attr {
    char *name;
    int type;       /* BA_ATTR_* */
    float f;        /* FLOAT */
    int64_t i;      /* INT */
    char *s;        /* STRING (NUL-terminated copy) */
    ba_tensor_t *t; /* TENSOR */
    int n;          /* element count of FLOATS / INTS / STRINGS */
    float *floats;
    int64_t *ints;
    char **strings;
    void *graph; /* GRAPH: loader-private (If branches) */
} ba_attr_t;

struct ba_op_def;

typedef struct ba_node {
    char *name; /* node name ("" when the file has none: then "<op_type>_<index>") */
    char *op_type;
    char *domain; /* "" for the default domain */
    int opset;    /* opset version of the node's domain in this model */
    int op;       /* ba_op_id (model/ops.h): BA_OP_UNKNOWN (0) when the op has no kernel or until resolved */
    const struct ba_op_def
        *def; /* that op's row of the op table (NULL likewise); both set by ba_node_resolve */
    int nin, nout;
    int *inputs;  /* value ids; -1 = optional input left out */
    int *outputs; /* value ids; -1 = optional output not requested */
    int nattr;
    ba_attr_t *attrs;
    int guard;    /* index into ba_model_t.guards: the node runs only when that branch of a
                   * run-time If is taken; -1: always runs */
    int if_guard; /* an If expanded into a merge: guard of its then_branch (else_branch: +1); -1 otherwise */
} ba_node_t;

/* One branch of an If whose condition is known only at run time. Both
 * branches' nodes are in the node list, each tagged with its branch's guard;
 * the If node itself stays as the merge: inputs [cond, then outputs…, else
 * outputs…], outputs the If's, taking the chosen branch's values. A node runs
 * when its guard holds: the parent guard holds (or is -1), the condition was
 * computed, and its truth equals `branch`. Nodes come after the producers of
 * their guards' conditions in the topological order. */
typedef struct ba_guard {
    int cond;   /* value id of the If's condition */
    int branch; /* 1: then_branch, 0: else_branch */
    int parent; /* guard of the If node itself (an If inside a branch), -1 at top level */
    char *node; /* name of the If node (messages) */
} ba_guard_t;

typedef struct ba_value {
    char *name;
    ba_dtype dtype;               /* BA_DT_UNDEFINED when unknown */
    int ndim;                     /* -1 when the rank is unknown */
    int64_t shape[BA_MAX_DIMS];   /* -1 for a dimension not known statically */
    char *dim_param[BA_MAX_DIMS]; /* symbol of a dynamic dimension (ONNX dim_param: "N", "H"), or NULL */
    ba_tensor_t *constant;        /* initializer, Constant output or folded value; else NULL */
    int producer;                 /* index of the node making it, -1 for inputs/constants */
    int is_graph_input;           /* a real graph input (not an initializer) */
    int is_graph_output;
    int is_initializer;
} ba_value_t;

/* Longest chain of Identity/Transpose/Reshape nodes between a layer's
 * constant and its consumer that the loader looks through (SPEC §2). */
enum { BA_LAYER_MAX_CHAIN = 16 };

/* One use of a layer's weight: a node that consumes it (Conv, ConvTranspose,
 * Gemm, MatMul, LSTM/GRU, or an embedding's Gather), recorded once at load. */
typedef struct ba_layer_use {
    int node;   /* index of the consuming node */
    int widx;   /* its input that holds the weight (the chain's end) */
    int didx;   /* its data input, what the weight multiplies (Gather: the indices); -1 when
                   there is none (an LSTM/GRU's R multiplies the hidden state inside the op) */
    int data;   /* value id of that data input, -1 likewise */
    int nchain; /* Identity/Transpose/Reshape nodes between the constant and the consumer */
    int chain[BA_LAYER_MAX_CHAIN]; /* their node indices, from the consumer's side back to the constant */
} ba_layer_use_t;

/* A quantizable layer (SPEC §2). */
typedef struct ba_layer {
    char *name;           /* initializer name, or Constant output name */
    int value;            /* value id of that constant (what quant/ replaces) */
    int node;             /* index of the consuming Conv/ConvTranspose/Gemm/MatMul/LSTM/GRU/Gather node
                             the layer was found at (the first; one of its uses) */
    const char *op;       /* op_type of that node (points into the node) */
    int nuses;            /* every consumer of the weight, in node order; a tied embedding's */
    ba_layer_use_t *uses; /* Gather is one even without --include-embeddings */
    int ndim;
    int64_t shape[BA_MAX_DIMS]; /* shape of the constant as stored */
    int ch_axis;                /* output-channel axis, in the constant's own layout */
    int64_t params;             /* element count */
    int64_t macs;               /* multiply-accumulates for one sample; -1 while unknown
                                   (dynamic dims beyond the sample axis: see ba_model_costs_at) */
} ba_layer_t;

/* LSTM or GRU (BA_OPF_RECURRENT, model/ops.h): W and R are layers on their
 * gate axis 1; R multiplies the hidden state inside the op. */
int ba_op_is_recurrent(const char *op_type);

typedef struct ba_model {
    char *path;
    char sha256[65]; /* of the model file */
    uint64_t file_size;
    int64_t ir_version;
    int64_t opset;  /* default-domain opset */
    char *producer; /* producer_name producer_version */
    int nvalues;
    ba_value_t *values;
    int nnodes;
    ba_node_t *nodes; /* topological order, constant-foldable nodes removed */
    int ninputs;
    int *inputs; /* value ids of graph inputs needing data */
    int noutputs;
    int *outputs; /* value ids of graph outputs */
    int nguards;
    ba_guard_t *guards; /* branches of run-time Ifs (ba_node_t.guard) */
    int nlayers;
    ba_layer_t *layers;
    int64_t other_init_bytes; /* bytes of every non-layer initializer at its stored width (SPEC §4) */
    /* The input shapes the layers' macs hold for (one sample: the sample axis
     * is 1 unless the model fixes it), ninputs x BA_MAX_DIMS, rank as the
     * input's; NULL while the macs are unknown. */
    int64_t *cost_shapes;
    void *priv; /* loader-private */
} ba_model_t;

typedef struct ba_load_opts {
    int include_embeddings; /* Gather embeddings count as layers (--include-embeddings) */
} ba_load_opts_t;

/* Loads, checks, folds and topologically sorts an ONNX file; finds layers.
 * Errors: BA_ERR_INPUT for corrupt/hostile files (message names the file),
 * BA_ERR_UNSUPPORTED listing every unsupported op at once. */
ba_status ba_model_load(const char *path, const ba_load_opts_t *opts, ba_model_t **out, ba_error *err);
void ba_model_free(ba_model_t *m);
int ba_model_find_value(const ba_model_t *m, const char *name); /* -1 when absent */

/* ---- attributes (defaults per the ONNX operator docs are the caller's) ---- */
const ba_attr_t *ba_node_attr(const ba_node_t *n, const char *name);
int64_t ba_node_attr_int(const ba_node_t *n, const char *name, int64_t dflt);
float ba_node_attr_float(const ba_node_t *n, const char *name, float dflt);
const char *ba_node_attr_string(const ba_node_t *n, const char *name, const char *dflt);
/* Returns the count (0 when absent) and sets *vals to the attribute's array. */
int ba_node_attr_ints(const ba_node_t *n, const char *name, const int64_t **vals);
int ba_node_attr_floats(const ba_node_t *n, const char *name, const float **vals);

/* ---- execution ---- */
typedef struct ba_run_opts {
    /* Per value id (array of m->nvalues, or NULL): a tensor to use instead of
     * the value's constant (quantized weights). Not taken over. */
    ba_tensor_t *const *overrides;
    /* Called after each value is computed (node outputs, in order); it may
     * replace *t (e.g. fake-quantize an activation) or just observe it. */
    ba_status (*on_value)(void *ctx, const ba_model_t *m, int value_id, ba_tensor_t **t, ba_error *err);
    void *ctx;
    /* When non-NULL (array of m->nvalues), every value computed is stored
     * here with a ref (for backward passes); caller unrefs. */
    ba_tensor_t **keep;
    /* Shape inference: every node of both branches of a run-time If runs when
     * its inputs are there; a node of a branch that fails leaves its outputs
     * unset instead of failing the run. The merge still takes the branch the
     * condition picks. */
    int all_branches;
    /* With on_value: per value id (array of m->nvalues), 1 where the hook may
     * replace or needs to see the value. Values it does not mark may be fused
     * away (model/fuse.h: a conv and the elementwise nodes after it run as
     * one step, bit-identical). NULL with on_value set: every value is
     * computed and handed over (no fusion). */
    const unsigned char *hooked;
    /* 1: every node runs on its own (no fusion; tests compare the two). */
    int no_fuse;
    /* Resuming a run from a cut (eval/'s reuse across evaluations; models
     * without run-time Ifs only): start > 0 skips nodes 0..start-1, and
     * resume (per value id) holds every value those nodes computed that a node
     * from start on, or a graph output, reads (as ba_cut_fn saw them at
     * start). Constants and graph inputs come as usual. */
    int start;
    ba_tensor_t *const *resume;
    /* Called before node i runs for each i with cuts[i] set (an array of
     * m->nnodes, or NULL), with the values alive there (vals[v] non-NULL for
     * each value a later node or a graph output still reads; borrowed, take
     * a ref to keep one). No fused region spans a cut. */
    const unsigned char *cuts;
    ba_status (*on_cut)(void *ctx, const ba_model_t *m, int node, ba_tensor_t *const *vals, ba_error *err);
    void *cut_ctx;
} ba_run_opts_t;

/* Runs the graph forward. inputs: one tensor per m->inputs entry (a dynamic
 * dimension takes the data's size). outputs: one slot per m->outputs entry,
 * filled with new refs. Intermediate tensors are freed after their last use. */
ba_status ba_model_run(const ba_model_t *m, ba_tensor_t *const *inputs, const ba_run_opts_t *opts,
                       ba_tensor_t **outputs, ba_error *err);

/* ---- costs at concrete shapes ---- */
/* The shape one sample of data has for input k: shape (the data's, or an
 * --input-shape, rank = the input's) with the sample axis (axis: 0 unless
 * --sample-axis says otherwise; -1 for a constant, which has none) set to 1
 * when the model leaves it dynamic (a fixed batch stays: macs are divided by it).
 * Checks the rank and every static dimension; BA_ERR_INPUT naming the input,
 * the axis and its symbol otherwise. */
ba_status ba_model_sample_shape(const ba_model_t *m, int k, int axis, int ndim, const int64_t *shape,
                                int64_t *out, ba_error *err);
/* Resolves every value's shape by running the graph once at the given input
 * shapes (shapes: ninputs x BA_MAX_DIMS, as from ba_model_sample_shape; NULL =
 * the declared shapes, which must then be static apart from the sample axis)
 * on data (per input: a real sample of exactly that shape, so data-dependent
 * ops see real values; NULL array or entries: zeros), and fills each layer's
 * macs per sample and m->cost_shapes. A shape the
 * graph cannot run is BA_ERR_INPUT naming the node and the inputs' dynamic
 * dimensions (symbol = value); a tensor too large to allocate is BA_ERR_INPUT
 * naming the node. The model is unchanged on error. */
ba_status ba_model_costs_at(ba_model_t *m, const int64_t *shapes, ba_tensor_t *const *data, ba_error *err);
/* Parses an --input-shape value "NAME=D0xD1x…" for one of m's inputs: *k
 * gets its index and out (BA_MAX_DIMS) the one-sample shape as from
 * ba_model_sample_shape. BA_ERR_INPUT naming the flag value otherwise. */
ba_status ba_model_input_shape_spec(const ba_model_t *m, const char *spec, int *k, int64_t *out,
                                    ba_error *err);
/* "[N, 3, H, W]" (symbol, or "?", for a dynamic dimension). */
const char *ba_value_shape_str(const ba_value_t *v, char *buf, size_t cap);

#endif
