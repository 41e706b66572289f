/* Reverse-mode differentiation over the model IR: losses on a model output,
 * dL/dW for chosen constants (layer weights), per-sample squared gradients
 * (empirical Fisher) and Hessian-vector products w.r.t. one or all layers.
 * Backward kernels live in model/grad_*.c by op family, named by the op
 * table's rows (llm.c style: each backward accumulates into its input gradients). */
#ifndef BA_MODEL_GRAD_H
#define BA_MODEL_GRAD_H

#include <stdint.h>

#include "core/util.h"
#include "model/model.h"
#include "model/ops.h"

/* ---- losses (SPEC §5): all are means over the rows of the chosen output,
 * rows = every axis but the last (classification scores on the last axis);
 * MSE is the mean over all elements (torch.nn.functional.mse_loss). The
 * cross-entropy and KL of a model whose output is a Softmax over the last axis
 * read that Softmax's input (ba_grad_loss_value): the loss is then the
 * model's own −log p_y, not the cross-entropy of softmax(p). ---- */
typedef enum {
    BA_LOSS_CE = 1,        /* cross-entropy with labels (one class id per row) */
    BA_LOSS_CE_ARGMAX = 2, /* cross-entropy on the argmax of reference logits (the FP model's) */
    BA_LOSS_KL = 3,        /* KL(softmax(ref) ‖ softmax(z)), ref = FP logits */
    BA_LOSS_MSE = 4,       /* mean (z - ref)^2, ref = FP outputs */
} ba_loss_kind;

typedef struct ba_loss_spec {
    ba_loss_kind kind;
    int output;            /* index into m->outputs (0: the first output) */
    const int64_t *labels; /* BA_LOSS_CE: one class id per row (all samples given) */
    int64_t nlabels;
    /* BA_LOSS_KL / MSE: reference output, same shape as the output (all samples).
     * BA_LOSS_CE_ARGMAX: reference logits whose argmax are the labels; NULL =
     * the model's own output at the unperturbed weights (computed once). */
    const ba_tensor_t *ref;
    /* BA_LOSS_KL: ref's rows are probabilities (the model's output when the
     * loss reads the logits under an output Softmax; the sessions set it),
     * not logits: KL(ref ‖ softmax(z)) with ref normalised per row. */
    int ref_prob;
} ba_loss_spec_t;

/* The value the loss reads on model output `output` (one home for every
 * gradient estimator): for CE / CE_ARGMAX / KL on an output made by a Softmax
 * over the last axis (opset < 13: the 2-D coercion at `axis` covering only
 * the last axis; opset >= 13: axis = −1 or ndim − 1), that Softmax's input,
 * its logits (*on_logits = 1: CE there is −log softmax(logits)_y, and the
 * Softmax node is not on the gradient path); otherwise, and always for MSE,
 * the output itself (*on_logits = 0). vals: the values of a forward (their
 * ranks), or NULL to decide on the declared rank of the Softmax's input or
 * output (both unknown: the output). */
int ba_grad_loss_value(const ba_model_t *m, ba_loss_kind kind, int output, ba_tensor_t *const *vals,
                       int *on_logits);

/* Loss of output z against spec (row range [row0, row0 + rows(z)) of the
 * labels / ref, so a batch can be a slice of the whole data set). *loss gets
 * the mean; dz (when non-NULL) gets dL/dz scaled by `scale` (1: the gradient
 * of the mean). z and dz are float32 of the same shape. */
ba_status ba_loss_eval(const ba_loss_spec_t *spec, const ba_tensor_t *z, int64_t row0, double scale,
                       double *loss, float *dz, ba_error *err);

/* Second derivative of the loss in z: htz (when non-NULL) = ∇²_z L · tz and
 * *quad (when non-NULL) = tzᵀ ∇²_z L tz, for tz of z's shape. CE and KL:
 * per row (diag p − p pᵀ)/rows with p = softmax(z); MSE: 2/numel · I. */
ba_status ba_loss_hvp(const ba_loss_spec_t *spec, const ba_tensor_t *z, int64_t row0, const float *tz,
                      float *htz, double *quad, ba_error *err);

/* A factorisation of the loss's second derivative in z, one row at a time:
 * ∇²_z L restricted to a row of C scores (L the mean over `rows` rows) is
 * Σ_{c < rank} u_c u_cᵀ with rank = ba_loss_hess_rank(kind, C). CE and KL
 * (the CE Hessian, which does not depend on the labels): u_c = sqrt(p_c/rows)
 * (e_c − p), p = softmax(z), rank C (1 for C = 2: sqrt(p0 p1/rows)(1, −1));
 * MSE: u_c = sqrt(2/(rows·C)) e_c. ba_loss_hess_factor writes Σ_c eps[c] u_c
 * into u (C floats) for eps of `rank` weights: a one-hot eps gives one factor,
 * Rademacher signs a random combination with E[u uᵀ] = ∇²_z L of the row. */
int64_t ba_loss_hess_rank(ba_loss_kind kind, int64_t C);
void ba_loss_hess_factor(ba_loss_kind kind, const float *zrow, int64_t C, int64_t rows, const float *eps,
                         float *u);

/* ---- backward kernels: the backward column of the op table (model/ops.h,
 * ba_op_backward_t); an op without one is BA_OPF_NOGRAD (passes no gradient)
 * or BA_OPF_NO_BACKWARD (a gradient path through it is BA_ERR_UNSUPPORTED). ---- */

/* Helper for kernels: din[i] as a float32 buffer of like's shape, allocated
 * zero-filled when NULL. NULL (err set) on allocation failure. */
float *ba_grad_slot(ba_tensor_t **din, int i, const ba_tensor_t *like, ba_error *err);

/* ---- gradients ---- */
typedef struct ba_grad_opts {
    /* Per value id (m->nvalues) or NULL: tensors replacing constants (as ba_run_opts_t). */
    ba_tensor_t *const *overrides;
    /* When set: instead of the batch gradient, grads_out[k] receives
     * Σ_i g_i² with g_i = dL_i/dW the gradient of sample i's own loss
     * (mean over its rows): the empirical Fisher diagonal times N. */
    int per_sample_sq;
    /* per_sample_sq only: per model input, the axis its samples lie along
     * (-1: a constant, the same for every sample); NULL = axis 0 for all. */
    const int *sample_axes;
} ba_grad_opts_t;

/* Runs the model on inputs (one tensor per m->inputs),
 * evaluates the loss and returns dL/dW for the nreq constants req[] (value
 * ids of constants, e.g. m->layers[l].value; gradients flow through
 * Identity/Transpose/Reshape weight chains). grads_out[k]: caller-owned
 * float array of that constant's element count, overwritten. loss_out may be
 * NULL. BA_ERR_UNSUPPORTED names every op on the gradient path with no
 * backward; BA_ERR_INPUT for labels of the wrong length or out of range. */
ba_status ba_grad_compute(const ba_model_t *m, ba_tensor_t *const *inputs, const ba_grad_opts_t *opts,
                          const ba_loss_spec_t *loss, int nreq, const int *req, float *const *grads_out,
                          double *loss_out, ba_error *err);

/* ---- sessions: one forward at the base weights, then any number of
 * gradients and HVPs reusing it (Hutchinson runs hundreds of probes). ---- */
typedef struct ba_grad_session ba_grad_session_t;

/* Runs the model forward once, keeping every value; resolves the loss
 * (CE_ARGMAX labels; length/range checks of labels and ref) and the value it
 * reads (ba_grad_loss_value): gradients, HVPs and the Gauss-Newton parts
 * all start there. overrides as
 * in ba_grad_opts_t; inputs and overrides must outlive the session. */
ba_status ba_grad_session_new(const ba_model_t *m, ba_tensor_t *const *inputs, ba_tensor_t *const *overrides,
                              const ba_loss_spec_t *loss, ba_grad_session_t **out, ba_error *err);
void ba_grad_session_free(ba_grad_session_t *s);         /* NULL-safe */
double ba_grad_session_loss(const ba_grad_session_t *s); /* loss at the base weights */
/* Batch gradients at the base weights (as ba_grad_compute). */
ba_status ba_grad_session_grad(ba_grad_session_t *s, int nreq, const int *req, float *const *grads_out,
                               ba_error *err);
/* Hv w.r.t. constant `value` at the base weights, exact (forward-over-reverse,
 * see grad_hvp.c): a tangent forward of the nodes downstream of that
 * constant, the loss's second derivative, and one backward pass; ReLU masks,
 * MaxPool argmaxes, Clip ranges … keep the base point's pattern (their
 * second derivative is 0, as in autograd's double backward). */
ba_status ba_grad_session_hvp(ba_grad_session_t *s, int value, const float *v, float *hv_out, ba_error *err);
/* Hv for one probe over several constants at once: v[k] lies on constant
 * values[k] (all distinct), H is the Hessian over all of them together
 * (cross blocks included), and hv_out[k] = (Hv)_k, the block of the product
 * on values[k]. One tangent forward and one backward for all of them, so
 * v[k]ᵀ hv_out[k] is an unbiased per-constant Hutchinson sample (the cross
 * terms v_kᵀ H_kj v_j have zero mean) at the cost of a single HVP. */
ba_status ba_grad_session_hvp_multi(ba_grad_session_t *s, int nval, const int *values, const float *const *v,
                                    float *const *hv_out, ba_error *err);
/* vᵀ H v for the same block (Hutchinson's sample). When every op downstream
 * of the constant is linear in its perturbed inputs on the base pattern
 * (conv/gemm/matmul with one perturbed operand, ReLU, pools, BN, reshapes,
 * adds), H = Jᵀ ∇²L J exactly and this needs the tangent forward only;
 * otherwise it is v · ba_grad_session_hvp. */
ba_status ba_grad_session_vhv(ba_grad_session_t *s, int value, const float *v, double *vhv, ba_error *err);
/* The same Hv by central differences of two exact gradients (the previous
 * method, kept as an independent cross-check): W ± eps·v re-running the
 * downstream nodes with piecewise-linear ops frozen on the base pattern. */
ba_status ba_grad_session_hvp_fd(ba_grad_session_t *s, int value, const float *v, float *hv_out,
                                 ba_error *err);
/* Generalised Gauss-Newton G = Jᵀ ∇²_z L J of the loss (H = G + R, R the
 * part from the ops' second derivatives weighted by dL/dz, 0 for MSE and KL
 * at the reference point). ba_grad_session_resid_multi gives for the probe v
 * (as hvp_multi) x[k] = v[k]ᵀ (R̃ v)_k with E[x[k]] = Tr(R_kk) for Rademacher
 * v: R̃ = R less the second-order terms of bilinear nodes whose two operands'
 * tangents come from disjoint sets of the constants (a layer's weight times
 * an activation), which add only cross terms v_jᵀ R_jk v_k, j ≠ k, of zero
 * mean. One tangent forward and one backward seeded with zero at the output.
 * *none = 1 (x all 0, nothing run) when no such term lies on the path: then
 * R_kk = 0 and Tr(H_kk) = Tr(G_kk) exactly. */
ba_status ba_grad_session_resid_multi(ba_grad_session_t *s, int nval, const int *values,
                                      const float *const *v, double *x, int *none, ba_error *err);
/* One sampled Tr(G_kk) per constant: u = Σ_c ε_c u_c on every row of the
 * output (ba_loss_hess_factor with Rademacher ε from rng, drawn row by row),
 * g = Jᵀu by one backward, sq[k] = ‖g_k‖² (E[sq[k]] = Tr(G_kk)). */
ba_status ba_grad_session_ggn_sample(ba_grad_session_t *s, ba_rng_t *rng, int nreq, const int *req,
                                     double *sq, ba_error *err);
/* Bytes held by the session's kept values (to decide whether several can be kept). */
int64_t ba_grad_session_bytes(const ba_grad_session_t *s);

/* Hessian-vector product Hv = ∇²_W L · v w.r.t. the constant `value` (all
 * other weights fixed), as ba_grad_session_hvp. v and hv_out have the
 * constant's element count. overrides as in ba_grad_opts_t (may be NULL). */
ba_status ba_grad_hvp(const ba_model_t *m, ba_tensor_t *const *inputs, ba_tensor_t *const *overrides,
                      const ba_loss_spec_t *loss, int value, const float *v, float *hv_out, ba_error *err);

/* Exact Tr(G_kk) of the generalised Gauss-Newton matrix (see above) of the
 * batch's loss for each constant req[k]: Σ over samples i, rows r of sample i
 * and factors c of ‖(J_iᵀ u_rc)_k‖², one backward per (sample, row, factor)
 * (a batch of one per sample when the model's batch axis is dynamic, as
 * per_sample_sq; else the whole batch with dz on that row only). When that
 * is more than max_backward whole-batch backwards (rank·rows per sample, or
 * N times that for a fixed batch), *exact = 0 and tr_out is left alone;
 * else *exact = 1. sample_axes as in ba_grad_opts_t. z is the value the
 * loss reads (ba_grad_loss_value: an output Softmax's logits). */
ba_status ba_grad_ggn_trace(const ba_model_t *m, ba_tensor_t *const *inputs, const int *sample_axes,
                            const ba_loss_spec_t *loss, int nreq, const int *req, int64_t max_backward,
                            double *tr_out, int *exact, ba_error *err);

/* Block-diagonal variant for per-layer Hutchinson: for each k,
 * hv_out[k] = H_kk v[k] exactly (the probe restricted to constant req[k]),
 * one session (forward) and nreq HVPs: per-layer probes without the cross
 * terms of ba_grad_session_hvp_multi (less variance per probe, nreq times
 * the cost). */
ba_status ba_grad_hvp_layers(const ba_model_t *m, ba_tensor_t *const *inputs, ba_tensor_t *const *overrides,
                             const ba_loss_spec_t *loss, int nreq, const int *req, const float *const *v,
                             float *const *hv_out, ba_error *err);

#endif
