/* Loader-private glue between onnx.c (protobuf -> IR), graph.c (checks,
 * folding, If inlining, shape inference, layers) and exec.c (executor).
 * Nothing here is public API: only the model/ sources include it. */
#ifndef BA_MODEL_GRAPH_INTERNAL_H
#define BA_MODEL_GRAPH_INTERNAL_H

#include "model/model.h"

struct Onnx__NodeProto;
struct Onnx__TensorProto;
struct Onnx__GraphProto;

typedef struct ba_model_priv {
    int cap_values, cap_nodes;
    int *hash;             /* open addressing: value id + 1, 0 = empty */
    int hash_cap;
    char dir[4096];        /* folder of the model file (external data) */
    int include_embeddings;
    void **protos;         /* Onnx__NodeProto kept alive for If branches */
    int nprotos, cap_protos;
    unsigned char *nofold; /* per value: made by a node on a layer weight path (never folded) */
    int next_anon;         /* counter for names of values the loader invents */
} ba_model_priv_t;

/* graph.c */
/* Id of the value called name, created (unknown, no producer) when absent. -1 on OOM. */
int ba_graph_value(ba_model_t *m, const char *name, ba_error *err);
/* Appends an empty node slot; returns its index or -1. */
int ba_graph_new_node(ba_model_t *m, ba_error *err);
void ba_graph_free_node(ba_node_t *n);
/* Checks, topological sort, Constant/If handling, folding, shape inference and
 * layer detection, in that order (called once after parsing). */
ba_status ba_graph_finish(ba_model_t *m, ba_error *err);

/* onnx.c */
/* Converts a TensorProto to a tensor. raw/raw_len: raw_data held outside the
 * message (mmap slice of an initializer) or NULL to use the message's own. */
ba_status ba_onnx_tensor(ba_model_t *m, const struct Onnx__TensorProto *tp, const uint8_t *raw, size_t raw_len,
                         int has_raw, ba_tensor_t **out, ba_error *err);
/* Adds a node (a copy of everything it needs) to m. */
ba_status ba_onnx_add_node(ba_model_t *m, const struct Onnx__NodeProto *np, ba_error *err);
/* Adds the nodes and initializers of a subgraph (an inlined If branch). */
ba_status ba_onnx_add_subgraph(ba_model_t *m, const struct Onnx__GraphProto *g, ba_error *err);

/* exec.c: runs the current live node list; when keep is set, every value's
 * tensor is stored there (like ba_run_opts_t.keep). */
ba_status ba_exec_run(const ba_model_t *m, ba_tensor_t *const *inputs, const ba_run_opts_t *opts, ba_tensor_t **outputs,
                      ba_error *err);

#endif
