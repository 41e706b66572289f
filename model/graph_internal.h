/* Loader-private glue between onnx.c (protobuf -> IR), graph.c (checks,
 * folding, shape inference, layers), graph_if.c (If branches) and exec.c (executor).
 * Nothing here is public API: only the model/ sources include it. */
#ifndef BA_MODEL_GRAPH_INTERNAL_H
#define BA_MODEL_GRAPH_INTERNAL_H

#include "model/model.h"

struct Onnx__NodeProto;
struct Onnx__TensorProto;
struct Onnx__GraphProto;

typedef struct ba_model_priv {
    int cap_values, cap_nodes;
    int *hash; /* open addressing: value id + 1, 0 = empty */
    int hash_cap;
    char dir[4096]; /* folder of the model file (external data) */
    int include_embeddings;
    void **protos; /* Onnx__NodeProto kept alive for If branches */
    int nprotos, cap_protos;
    unsigned char *nofold; /* per value: made by a node on a layer weight path (never folded) */
    int next_anon;         /* counter for names of values the loader invents */
    int *locals;           /* pairs (value id, guard): values defined inside an If branch */
    int nlocals, cap_locals;
} ba_model_priv_t;

/* Names defined inside one If branch, as renamed for the flat value table
 * (a branch-local name that is already taken, by the outer graph or the
 * other branch, gets a fresh one); parent: the enclosing branch's scope. */
typedef struct ba_scope {
    const struct ba_scope *parent;
    int n, cap;
    char **from, **to;
} ba_scope_t;

/* The value name `name` refers to inside scope s (itself outside every branch). */
const char *ba_scope_name(const ba_scope_t *s, const char *name);
void ba_scope_free(ba_scope_t *s);

/* graph.c */
/* Id of the value called name, created (unknown, no producer) when absent. -1 on OOM. */
int ba_graph_value(ba_model_t *m, const char *name, ba_error *err);
/* Appends an empty node slot; returns its index or -1. */
int ba_graph_new_node(ba_model_t *m, ba_error *err);
void ba_graph_free_node(ba_node_t *n);
/* Marks nodes dead (dead[i] = 1): drops them, keeps order, re-derives producers. */
void ba_graph_compact(ba_model_t *m, unsigned char *dead);
/* Checks, topological sort, Constant/If handling, folding, shape inference and
 * layer detection, in that order (called once after parsing). */
ba_status ba_graph_finish(ba_model_t *m, ba_error *err);

/* onnx.c */
/* Converts a TensorProto to a tensor. raw/raw_len: raw_data held outside the
 * message (mmap slice of an initializer) or NULL to use the message's own. */
ba_status ba_onnx_tensor(ba_model_t *m, const struct Onnx__TensorProto *tp, const uint8_t *raw,
                         size_t raw_len, int has_raw, ba_tensor_t **out, ba_error *err);
/* Adds a node (a copy of everything it needs) to m. */
ba_status ba_onnx_add_node(ba_model_t *m, const struct Onnx__NodeProto *np, ba_error *err);
/* Adds the initializers and nodes of an If branch under guard `guard`, its
 * names renamed where taken (scope gets this branch's names; it must have
 * its parent set and be freed by the caller). Ifs inside are expanded too. */
ba_status ba_onnx_add_branch(ba_model_t *m, const struct Onnx__GraphProto *g, ba_scope_t *scope, int guard,
                             int depth, ba_error *err);

/* graph_if.c: run-time If nodes (see ba_guard_t). */
/* Expands every If of the main graph into both branches' guarded nodes and a merge. */
ba_status ba_graph_expand_ifs(ba_model_t *m, ba_error *err);
/* Expands If node idx (its names seen through scope, NULL outside every branch). */
ba_status ba_graph_expand_if(ba_model_t *m, int idx, const ba_scope_t *scope, int depth, ba_error *err);
/* Replaces each If whose condition became constant by its chosen branch
 * (the other branch's nodes and constants are dropped). *changed counts them. */
ba_status ba_graph_inline_ifs(ba_model_t *m, int *changed, ba_error *err);
/* The producers a node must come after besides its inputs' (its guards'
 * conditions): up to max value ids into deps; returns the count. */
int ba_graph_guard_deps(const ba_model_t *m, const ba_node_t *n, int *deps, int max);
/* Every op without a kernel, each type once with a node name, in one message;
 * ops inside Loop/Scan bodies are walked too (Loop/Scan themselves are refused). */
ba_status ba_graph_check_supported(const ba_model_t *m, ba_error *err);

/* exec.c: runs the current live node list; when keep is set, every value's
 * tensor is stored there (like ba_run_opts_t.keep). */
ba_status ba_exec_run(const ba_model_t *m, ba_tensor_t *const *inputs, const ba_run_opts_t *opts,
                      ba_tensor_t **outputs, ba_error *err);

#endif
