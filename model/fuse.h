/* Forward-only fusion of the executor (exec.c): a Conv, ConvTranspose, Gemm
 * or MatMul ("anchor") and the elementwise nodes after it that read only its
 * output, each other's outputs and constants (BatchNormalization, Add, Sub,
 * Mul, Div, Max, Min, Relu, Clip, HardSigmoid, HardSwish, LeakyRelu,
 * Sigmoid, Tanh … and chains of them such as x * Clip(x + 3, 0, 6) / 6) run as
 * one step: the anchor's kernel, then an epilogue over its output in blocks
 * that stay in cache, written in place; a Conv's kernel applies it itself to
 * each piece of output right after computing it (ba_fuse_tile_take). The intermediate values are never
 * stored. Each element goes through the same float operations, in the same
 * order, as the unfused kernels (BatchNormalization's x * a + b with the
 * kernel's a and b; the unary ops through their kernel's own code), so the
 * results are bit-identical; weights are read as the run gives them
 * (overrides), so a quantized weight is what the anchor multiplies.
 *
 * A region is formed only when none of its intermediate values is wanted
 * outside it: every use inside the region, not a graph output, not kept
 * (ba_run_opts_t.keep disables fusion: gradients need every value), not
 * handed to an on_value hook (fusion needs the hook's value mask,
 * ba_run_opts_t.hooked), and no region spans a cut (ba_run_opts_t.cuts:
 * values alive between two nodes are handed out there). Private to model/. */
#ifndef BA_MODEL_FUSE_H
#define BA_MODEL_FUSE_H

#include "model/model.h"

/* A unary elementwise node's float32 formula (ops_elementwise.c). */
typedef struct ba_ew_unary {
    int op;
    double alpha, beta, gamma, lo, hi;
} ba_ew_unary_t;
/* Fills u for node n (attributes; Clip's bounds from in[1], in[2]).
 * BA_ERR_UNSUPPORTED when n is no unary op with a float32 form. */
ba_status ba_ew_unary_prepare(const ba_node_t *n, ba_tensor_t *const *in, int nin, ba_ew_unary_t *u,
                              ba_error *err);
/* o[i] = f(x[i]) for i < n, as ba_fwd_unary computes each element; x != o. */
void ba_ew_unary_f32(const ba_ew_unary_t *u, const float *x, float *o, int64_t n);

typedef struct ba_fuse_plan ba_fuse_plan_t;

/* Whether a run with opts may fuse (no keep, no all_branches, no_fuse unset,
 * and an on_value hook only together with its value mask). */
int ba_fuse_enabled(const ba_run_opts_t *opts);

/* Plans the regions of one run: vals holds the constants (overrides
 * included) by value id, uses the use counts of the run (exec.c). *out is
 * NULL when nothing fuses. */
ba_status ba_fuse_plan_new(const ba_model_t *m, const ba_run_opts_t *opts, ba_tensor_t *const *vals,
                           const int *uses, ba_fuse_plan_t **out, ba_error *err);
void ba_fuse_plan_free(ba_fuse_plan_t *p);

enum { BA_FUSE_NONE = 0, BA_FUSE_ANCHOR = 1, BA_FUSE_ABSORBED = 2 };
/* Role of node i in the plan (p may be NULL: BA_FUSE_NONE). */
int ba_fuse_role(const ba_fuse_plan_t *p, int i);
/* The nodes absorbed by anchor i (in order) and their count. */
int ba_fuse_members(const ba_fuse_plan_t *p, int i, const int **nodes);

/* Runs the region of anchor i on the anchor's output *t (taken over): on
 * success *t is the region's last value and *value its id. A constant whose
 * shape the epilogue does not take (known only at run time) makes the
 * region's nodes run one by one through their kernels instead. */
ba_status ba_fuse_region_run(const ba_fuse_plan_t *p, const ba_model_t *m, int i, ba_tensor_t *const *vals,
                             ba_tensor_t **t, int *value, ba_error *err);

/* The epilogue inside the conv kernels: the executor arms the region of
 * anchor i right before running the anchor's kernel (and disarms it after a
 * failure); the Conv kernel, on a path that applies an epilogue to each piece
 * of output right after computing it (depthwise planes, panel groups), takes
 * it for its fresh output y: *e is filled and returned, or NULL when the
 * region's epilogue cannot run that way (then the region runs its separate
 * pass, ba_fuse_region_run). Each element goes through the same float
 * operations as in the separate pass. State of the calling thread. */
struct ba_kern_epi;
void ba_fuse_tile_arm(const ba_fuse_plan_t *p, const ba_model_t *m, int i, ba_tensor_t *const *vals);
void ba_fuse_tile_disarm(void);
const struct ba_kern_epi *ba_fuse_tile_take(const ba_tensor_t *y, struct ba_kern_epi *e);

#endif
