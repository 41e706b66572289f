/* The reverse executor: one forward keeping every value, the loss and dL/dz,
 * then the nodes in reverse order, each op's backward accumulating into its
 * inputs' gradients (grad_*.c). Exact HVPs (forward-over-reverse) live in
 * grad_hvp.c; the central-difference HVP here is kept as a cross-check. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/grad_internal.h"
#include "model/kern_conv.h"
#include "model/ops.h"

/* Relative step of the HVP's central difference: W ± eps·v with
 * eps = HVP_REL_STEP · rms(W) · sqrt(n)/‖v‖₂, i.e. each weight moves by about
 * HVP_REL_STEP of the tensor's RMS. Truncation error is O(eps²·‖∇³L‖) and
 * float32 rounding of the two gradients O(2^-24·‖g‖/eps); piecewise-linear
 * ops are frozen at the base point (ba_grad_frozen_forward/_backward).
 * Measured worst max-abs-relative error vs PyTorch float64 double backward
 * (MLP / CNN / BN-CNN / ViT / GPT, when this was the HVP method):
 *   1e-3: 7.3e-4 1.8e-4 2.8e-3 4.1e-4 7.8e-4
 *   2e-3: 4.9e-4 5.7e-5 6.0e-4 2.5e-4 5.3e-4
 *   5e-3: 1.7e-4 3.1e-4 5.7e-4 1.5e-4 1.6e-4   <- chosen
 *   1e-2: 9.2e-5 1.1e-3 2.0e-4 6.0e-4 2.4e-4
 * The zoo CNNs with saturated softmax outputs show the O(eps²) truncation
 * (3.5e-2 on mobilenetv2 at 5e-3, tests/test_grad.c); grad_hvp.c's exact
 * method has none and costs one tangent forward and one backward instead
 * of two gradient passes. */
#define HVP_REL_STEP 5e-3
/* A weight tensor that is all zeros gets this absolute step scale instead. */
#define HVP_MIN_SCALE 1e-3

/* ---- gradient slots ---- */

float *ba_grad_slot(ba_tensor_t **din, int i, const ba_tensor_t *like, ba_error *err) {
    ba_tensor_t *t = din[i];
    if (!t) {
        t = ba_tensor_new(BA_DT_F32, like->ndim, like->shape, err);
        if (!t) return NULL;
        din[i] = t;
        return t->data;
    }
    if (t->refs > 1 || t->base || !t->owns) { /* shared (pass-through ref or view): copy before writing */
        ba_tensor_t *c = ba_tensor_new(BA_DT_F32, like->ndim, like->shape, err);
        if (!c) return NULL;
        memcpy(c->data, t->data, (size_t)t->numel * sizeof(float));
        ba_tensor_unref(t);
        din[i] = c;
        t = c;
    }
    return t->data;
}

ba_status ba_grad_pass(ba_tensor_t **din, int i, const ba_tensor_t *like, ba_tensor_t *dout, ba_error *err) {
    if (!din[i]) {
        int same = like->ndim == dout->ndim &&
                   !memcmp(like->shape, dout->shape, sizeof(int64_t) * (size_t)like->ndim);
        din[i] = same ? ba_tensor_ref(dout) : ba_tensor_view(dout, like->ndim, like->shape, err);
        return din[i] ? BA_OK : err->code;
    }
    float *d = ba_grad_slot(din, i, like, err);
    if (!d) return err->code;
    const float *g = dout->data;
    for (int64_t k = 0; k < dout->numel; k++) d[k] += g[k];
    return BA_OK;
}

void ba_grad_reduce_add(const float *g, int gndim, const int64_t *gshape, float *dst, int dndim,
                        const int64_t *dshape, float scale) {
    int64_t n = ba_shape_numel(gndim, gshape);
    if (dndim == gndim && !memcmp(dshape, gshape, sizeof(int64_t) * (size_t)gndim)) {
        for (int64_t e = 0; e < n; e++) dst[e] += scale * g[e];
        return;
    }
    int64_t dstride[BA_MAX_DIMS], acc = 1; /* dst stride per g dim, 0 where summed */
    for (int i = gndim - 1; i >= 0; i--) {
        int di = i - (gndim - dndim);
        if (di < 0 || dshape[di] == 1)
            dstride[i] = 0;
        else
            dstride[i] = acc;
        if (di >= 0) acc *= dshape[di];
    }
    /* Merge the innermost dims into rows for a tight loop. */
    int64_t row = gndim ? gshape[gndim - 1] : 1, rs = gndim ? dstride[gndim - 1] : 0;
    int64_t idx[BA_MAX_DIMS] = {0}, off = 0;
    for (int64_t e = 0; e < n; e += row) {
        if (rs == 0) {
            double s = 0.0;
            for (int64_t k = 0; k < row; k++) s += g[e + k];
            dst[off] += scale * (float)s;
        } else {
            for (int64_t k = 0; k < row; k++) dst[off + k * rs] += scale * g[e + k];
        }
        for (int i = gndim - 2; i >= 0; i--) {
            idx[i]++;
            off += dstride[i];
            if (idx[i] < gshape[i]) break;
            off -= dstride[i] * idx[i];
            idx[i] = 0;
        }
    }
}

/* dst (ndim, shape) = src broadcast, a row (last axis) at a time: a copy
 * when src runs along it, a fill when src is broadcast along it (the
 * elementwise odometer of ba_kern_broadcast_to was a fifth of a ViT HVP).
 * BA_ERR_INPUT (no message) when the shapes do not broadcast. */
static ba_status broadcast_rows(const ba_tensor_t *src, int ndim, const int64_t *shape, float *dst) {
    int64_t sstride[BA_MAX_DIMS];
    if (ndim < 1 || ba_kern_broadcast_strides(src, ndim, shape, sstride) != 0) return BA_ERR_INPUT;
    const float *s = src->data;
    const int64_t row = shape[ndim - 1], rs = sstride[ndim - 1], n = ba_shape_numel(ndim, shape);
    int64_t idx[BA_MAX_DIMS] = {0}, off = 0;
    for (int64_t e = 0; e < n; e += row) {
        float *d = dst + e;
        if (rs == 1) {
            memcpy(d, s + off, (size_t)row * sizeof(float));
        } else {
            const float v = s[off];
            for (int64_t k = 0; k < row; k++) d[k] = v;
        }
        for (int i = ndim - 2; i >= 0; i--) { /* odometer over the rows */
            idx[i]++;
            off += sstride[i];
            if (idx[i] < shape[i]) break;
            off -= sstride[i] * idx[i];
            idx[i] = 0;
        }
    }
    return BA_OK;
}

float *ba_grad_bcast_f32(const ba_node_t *n, const ba_tensor_t *t, int ndim, const int64_t *shape, int *owned,
                         ba_error *err) {
    *owned = 0;
    if (t->dtype == BA_DT_F32 && t->ndim == ndim && !memcmp(t->shape, shape, sizeof(int64_t) * (size_t)ndim))
        return t->data;
    ba_tensor_t *f = NULL;
    const ba_tensor_t *src = t;
    if (t->dtype != BA_DT_F32) {
        f = ba_tensor_cast(t, BA_DT_F32, err);
        if (!f) return NULL;
        src = f;
    }
    float *buf = ba_malloc((size_t)ba_shape_numel(ndim, shape) * sizeof(float) + 1, err);
    if (buf && broadcast_rows(src, ndim, shape, buf) != BA_OK &&
        ba_kern_broadcast_to(n, src, ndim, shape, buf, "input", err) != BA_OK) {
        free(buf);
        buf = NULL;
    }
    ba_tensor_unref(f);
    if (buf) *owned = 1;
    return buf;
}

/* ---- the reverse walk ---- */

static int is_f32(const ba_tensor_t *t) {
    return t && t->dtype == BA_DT_F32;
}

ba_status ba_grad_backward(const ba_model_t *m, ba_tensor_t **vals, int out_id, ba_tensor_t *dz, int nreq,
                           const int *req, ba_tensor_t **gres, ba_tensor_t **keep, ba_grad_node_hook hook,
                           void *ctx, ba_error *err) {
    const int nv = m->nvalues;
    ba_status st = BA_OK;
    unsigned char *fwd = ba_calloc((size_t)nv + 1, 2, err), *bwd = fwd ? fwd + nv + 1 : NULL;
    ba_tensor_t **grads = ba_calloc((size_t)nv + 1, sizeof *grads, err);
    int maxio = 1;
    for (int i = 0; i < m->nnodes; i++) {
        if (m->nodes[i].nin > maxio) maxio = m->nodes[i].nin;
        if (m->nodes[i].nout > maxio) maxio = m->nodes[i].nout;
    }
    ba_tensor_t **in = ba_calloc((size_t)maxio * 4, sizeof(ba_tensor_t *), err);
    unsigned char *need = ba_calloc((size_t)maxio, 1, err);
    for (int k = 0; k < nreq; k++) gres[k] = NULL;
    if (!fwd || !grads || !in || !need) {
        st = err->code;
        goto done;
    }
    ba_tensor_t **out = in + maxio, **dout = in + 2 * maxio, **din = in + 3 * maxio;
    for (int k = 0; k < nreq; k++)
        if (req[k] >= 0 && req[k] < nv && is_f32(vals[req[k]])) fwd[req[k]] = 1;
    /* keep: every value downstream of a float constant (what an HVP's second-order terms read) */
    for (int v = 0; keep && v < nv; v++) fwd[v] = m->values[v].constant && is_f32(vals[v]);
    for (int i = 0; i < m->nnodes; i++) {
        const ba_node_t *n = &m->nodes[i];
        if (ba_grad_nograd(n)) continue; /* passes no gradient */
        int any = 0;
        for (int j = 0; j < n->nin; j++) any |= n->inputs[j] >= 0 && fwd[n->inputs[j]];
        if (any)
            for (int j = 0; j < n->nout; j++)
                if (n->outputs[j] >= 0 && is_f32(vals[n->outputs[j]])) fwd[n->outputs[j]] = 1;
    }
    bwd[out_id] = 1;
    for (int i = m->nnodes - 1; i >= 0; i--) {
        const ba_node_t *n = &m->nodes[i];
        int any = 0;
        for (int j = 0; j < n->nout; j++) any |= n->outputs[j] >= 0 && bwd[n->outputs[j]];
        if (any)
            for (int j = 0; j < n->nin; j++)
                if (n->inputs[j] >= 0) bwd[n->inputs[j]] = 1;
    }
    /* Every op on the path without a backward, named at once. */
    char missing[1024] = "";
    size_t used = 0;
    int nmissing = 0;
    for (int i = 0; i < m->nnodes; i++) {
        const ba_node_t *n = &m->nodes[i];
        int on = 0;
        for (int j = 0; j < n->nout; j++)
            on |= n->outputs[j] >= 0 && fwd[n->outputs[j]] && bwd[n->outputs[j]];
        if (!on || ba_grad_known(n)) continue;
        int seen = 0;
        for (int q = 0; q < i && !seen; q++) seen = !strcmp(m->nodes[q].op_type, n->op_type);
        if (seen) continue;
        int w = snprintf(missing + used, sizeof missing - used, "%s%s (node '%s')", nmissing ? ", " : "",
                         n->op_type, n->name);
        if (w > 0 && (size_t)w < sizeof missing - used) used += (size_t)w;
        nmissing++;
    }
    if (nmissing) {
        st = ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: no backward for %d op%s on the gradient path: %s",
                          m->path, nmissing, nmissing > 1 ? "s" : "", missing);
        goto done;
    }
    grads[out_id] = ba_tensor_ref(dz);
    for (int i = m->nnodes - 1; i >= 0; i--) {
        const ba_node_t *n = &m->nodes[i];
        int anyout = 0, anyin = 0;
        for (int j = 0; j < n->nout; j++) {
            int id = n->outputs[j];
            out[j] = id >= 0 ? vals[id] : NULL;
            dout[j] = id >= 0 && fwd[id] && bwd[id] ? grads[id] : NULL;
            anyout |= dout[j] != NULL;
        }
        for (int j = 0; j < n->nin; j++) {
            int id = n->inputs[j];
            in[j] = id >= 0 ? vals[id] : NULL;
            need[j] = id >= 0 && fwd[id] && bwd[id] && is_f32(in[j]);
            anyin |= need[j];
            din[j] = NULL;
        }
        if (!anyout || !anyin) goto next;
        /* Each wanted slot takes over the value's running gradient (so the
         * kernel accumulates in place); a repeated input gets its own slot. */
        for (int j = 0; j < n->nin; j++) {
            if (!need[j]) continue;
            int dup = 0;
            for (int q = 0; q < j; q++) dup |= n->inputs[q] == n->inputs[j] && need[q];
            if (!dup) {
                din[j] = grads[n->inputs[j]];
                grads[n->inputs[j]] = NULL;
            }
        }
        st = hook ? hook(ctx, i, n, in, n->nin, out, n->nout, dout, need, din, err)
                  : n->def->backward(n, in, n->nin, out, n->nout, dout, need, din, err);
        for (int j = 0; j < n->nin; j++) {
            if (!need[j] || !din[j]) continue;
            int id = n->inputs[j];
            if (!grads[id]) {
                grads[id] = din[j];
            } else if (st == BA_OK) { /* repeated input: merge */
                float *g = ba_grad_slot(grads, id, din[j], err);
                if (!g)
                    st = err->code;
                else
                    for (int64_t e = 0; e < din[j]->numel; e++) g[e] += ((const float *)din[j]->data)[e];
                ba_tensor_unref(din[j]);
            } else {
                ba_tensor_unref(din[j]);
            }
            din[j] = NULL;
        }
        if (st != BA_OK) {
            ba_error_prefix(err, "%s: backward of node '%s' (%s)", m->path, n->name, n->op_type);
            goto done;
        }
    next:
        for (int j = 0; j < n->nout; j++)
            if (n->outputs[j] >= 0) {
                if (keep)
                    keep[n->outputs[j]] = grads[n->outputs[j]];
                else
                    ba_tensor_unref(grads[n->outputs[j]]);
                grads[n->outputs[j]] = NULL;
            }
    }
    for (int v = 0; keep && v < nv; v++) /* constants and inputs: what reached them */
        if (grads[v]) {
            ba_tensor_unref(keep[v]);
            keep[v] = grads[v];
            grads[v] = NULL;
        }
    for (int k = 0; k < nreq; k++)
        if (req[k] >= 0 && req[k] < nv) gres[k] = ba_tensor_ref(grads[req[k]]);
done:
    for (int v = 0; grads && v < nv; v++) ba_tensor_unref(grads[v]);
    free(grads);
    free(fwd);
    free(in);
    free(need);
    return st;
}

/* ---- the value the loss reads ---- */

int ba_grad_loss_value(const ba_model_t *m, ba_loss_kind kind, int output, ba_tensor_t *const *vals,
                       int *on_logits) {
    const int out_id = m->outputs[output];
    *on_logits = 0;
    if (kind == BA_LOSS_MSE) return out_id; /* MSE compares the model's real outputs */
    const int p = m->values[out_id].producer;
    if (p < 0) return out_id;
    const ba_node_t *n = &m->nodes[p];
    if (n->op != BA_OP_SOFTMAX || n->nout < 1 || n->outputs[0] != out_id || n->nin < 1 || n->inputs[0] < 0 ||
        m->values[n->inputs[0]].constant)
        return out_id;
    const int xid = n->inputs[0];
    if (vals && !(is_f32(vals[xid]) && is_f32(vals[out_id]) && vals[xid]->numel == vals[out_id]->numel))
        return out_id;
    /* Whether its axis is the last one depends on the rank only: the Softmax
     * kernel's layout of a tensor of that rank with every dim 2 has rows of
     * the last axis (inner 1, len 2) exactly then. */
    int r = vals ? vals[xid]->ndim : m->values[xid].ndim;
    if (!vals && r < 0) r = m->values[out_id].ndim; /* a Softmax keeps its input's shape */
    if (r < 1 || r > BA_MAX_DIMS) return out_id;
    ba_tensor_t probe = {.ndim = r};
    for (int d = 0; d < r; d++) probe.shape[d] = 2;
    int64_t outer, len, inner;
    ba_grad_softmax_layout(n, &probe, &outer, &len, &inner);
    if (inner != 1 || len != 2) return out_id;
    *on_logits = 1;
    return xid;
}

/* feeds[v] = 1 for every value from which out_id is reached through nodes. */
static unsigned char *values_feeding(const ba_model_t *m, int out_id, ba_error *err) {
    unsigned char *f = ba_calloc((size_t)m->nvalues + 1, 1, err);
    if (!f) return NULL;
    f[out_id] = 1;
    for (int i = m->nnodes - 1; i >= 0; i--) {
        const ba_node_t *n = &m->nodes[i];
        int any = 0;
        for (int j = 0; j < n->nout; j++) any |= n->outputs[j] >= 0 && f[n->outputs[j]];
        if (any)
            for (int j = 0; j < n->nin; j++)
                if (n->inputs[j] >= 0) f[n->inputs[j]] = 1;
    }
    return f;
}

/* ---- sessions ---- */

static ba_status check_req(const ba_model_t *m, ba_tensor_t **vals, int nreq, const int *req, ba_error *err) {
    for (int k = 0; k < nreq; k++) {
        if (req[k] < 0 || req[k] >= m->nvalues || !m->values[req[k]].constant)
            return ba_error_set(err, BA_ERR_INPUT,
                                "%s: gradient requested for value id %d, which is not a constant", m->path,
                                req[k]);
        if (!is_f32(vals[req[k]]))
            return ba_error_set(err, BA_ERR_INPUT, "%s: gradient requested for '%s', which is not float32",
                                m->path, m->values[req[k]].name);
    }
    return BA_OK;
}

/* Labels = argmax over the last axis of each row of logits. */
static ba_status argmax_labels(const ba_tensor_t *z, int64_t **labels, int64_t *n, ba_error *err) {
    if (!is_f32(z) || z->ndim < 1 || z->shape[z->ndim - 1] < 2)
        return ba_error_set(err, BA_ERR_INPUT,
                            "loss: cross-entropy on the FP argmax needs float32 logits with >= 2 "
                            "classes on the last axis");
    const int64_t C = z->shape[z->ndim - 1], R = z->numel / C;
    *labels = ba_malloc((size_t)R * sizeof(int64_t) + 1, err);
    if (!*labels) return err->code;
    const float *v = z->data;
    for (int64_t r = 0; r < R; r++) {
        int64_t b = 0;
        for (int64_t c = 1; c < C; c++)
            if (v[r * C + c] > v[r * C + b]) b = c;
        (*labels)[r] = b;
    }
    *n = R;
    return BA_OK;
}

/* Forward at the base weights keeping every value; vals gets a ref per value. */
static ba_status forward_keep(const ba_model_t *m, ba_tensor_t *const *inputs, ba_tensor_t *const *overrides,
                              ba_tensor_t **vals, ba_error *err) {
    ba_run_opts_t ro = {.overrides = overrides, .keep = vals};
    ba_tensor_t **outs = ba_calloc((size_t)m->noutputs + 1, sizeof *outs, err);
    if (!outs) return err->code;
    ba_status st = ba_model_run(m, inputs, &ro, outs, err);
    for (int k = 0; k < m->noutputs; k++) ba_tensor_unref(outs[k]);
    free(outs);
    if (st != BA_OK) return st;
    for (int v = 0; v < m->nvalues; v++)
        if (m->values[v].constant && !vals[v])
            vals[v] = ba_tensor_ref(overrides && overrides[v] ? overrides[v] : m->values[v].constant);
    for (int k = 0; k < m->ninputs; k++) {
        int v = m->inputs[k];
        ba_tensor_unref(vals[v]);
        vals[v] = inputs[k]->dtype == BA_DT_F64 ? ba_tensor_cast(inputs[k], BA_DT_F32, err)
                                                : ba_tensor_ref(inputs[k]);
        if (!vals[v]) return err->code;
    }
    return BA_OK;
}

static void free_vals(const ba_model_t *m, ba_tensor_t **vals) {
    for (int v = 0; vals && v < m->nvalues; v++) ba_tensor_unref(vals[v]);
    free(vals);
}

/* Session over a batch whose first row is row0 of the labels / ref. */
static ba_status session_make(const ba_model_t *m, ba_tensor_t *const *inputs, ba_tensor_t *const *overrides,
                              const ba_loss_spec_t *loss, const int64_t *labels, int64_t nlabels,
                              int64_t row0, int full, ba_grad_session_t **out, ba_error *err) {
    *out = NULL;
    if (!loss || loss->output < 0 || loss->output >= m->noutputs)
        return ba_error_set(err, BA_ERR_INPUT, "%s: loss on output %d, the model has %d", m->path,
                            loss ? loss->output : -1, m->noutputs);
    ba_malloc_keep_freed(); /* gradient work allocates and frees activation-sized tensors at a high rate */
    ba_grad_session_t *s = ba_calloc(1, sizeof *s, err);
    if (!s) return err->code;
    s->m = m;
    s->loss = *loss;
    s->row0 = row0;
    s->out_id = m->outputs[loss->output];
    if (labels) {
        s->loss.labels = labels;
        s->loss.nlabels = nlabels;
        s->loss.kind = BA_LOSS_CE;
    }
    ba_status st = BA_OK;
    s->vals = ba_calloc((size_t)m->nvalues + 1, sizeof *s->vals, err);
    if (!s->vals) {
        st = err->code;
        goto fail;
    }
    st = forward_keep(m, inputs, overrides, s->vals, err);
    if (st != BA_OK) goto fail;
    int on_logits = 0;
    s->out_id = ba_grad_loss_value(m, s->loss.kind, loss->output, s->vals, &on_logits);
    if (on_logits && s->loss.kind == BA_LOSS_KL) s->loss.ref_prob = 1; /* ref: the model's probabilities */
    s->feeds = values_feeding(m, s->out_id, err);
    if (!s->feeds) {
        st = err->code;
        goto fail;
    }
    const ba_tensor_t *z = s->vals[s->out_id];
    if (!is_f32(z)) {
        st = ba_error_set(err, BA_ERR_INPUT, "%s: loss output '%s' is not float32", m->path,
                          m->values[s->out_id].name);
        goto fail;
    }
    if (s->loss.kind == BA_LOSS_CE_ARGMAX) {
        const ba_tensor_t *ref = loss->ref;
        ba_tensor_t *fp = NULL;
        if (!ref && overrides) { /* the FP model: stored constants, no overrides */
            ba_tensor_t **o = ba_calloc((size_t)m->noutputs + 1, sizeof *o, err);
            st = o ? ba_model_run(m, inputs, NULL, o, err) : err->code;
            if (st == BA_OK) fp = ba_tensor_ref(o[loss->output]);
            for (int k = 0; o && k < m->noutputs; k++) ba_tensor_unref(o[k]);
            free(o);
            if (st != BA_OK) goto fail;
            ref = fp;
        } else if (!ref) {
            ref = z;
        }
        st = argmax_labels(ref, &s->own_labels, &s->loss.nlabels, err);
        ba_tensor_unref(fp);
        if (st != BA_OK) goto fail;
        s->loss.labels = s->own_labels;
        s->loss.kind = BA_LOSS_CE;
    }
    const int64_t C = z->ndim ? z->shape[z->ndim - 1] : 1, R = C ? z->numel / C : 0;
    if (full && s->loss.kind == BA_LOSS_CE && s->loss.nlabels != R) {
        char sb[128];
        st = ba_error_set(
            err, BA_ERR_INPUT, "labels: %lld given, the output %s has %lld rows (one label per row)",
            (long long)s->loss.nlabels, ba_shape_str(z->ndim, z->shape, sb, sizeof sb), (long long)R);
        goto fail;
    }
    if (full && (s->loss.kind == BA_LOSS_KL || s->loss.kind == BA_LOSS_MSE) &&
        (!s->loss.ref || s->loss.ref->numel != z->numel)) {
        char sb[128], rb[128];
        const ba_tensor_t *r = s->loss.ref;
        st = ba_error_set(err, BA_ERR_INPUT, "loss: reference output %s does not match the output %s",
                          r ? ba_shape_str(r->ndim, r->shape, rb, sizeof rb) : "(none)",
                          ba_shape_str(z->ndim, z->shape, sb, sizeof sb));
        goto fail;
    }
    st = ba_loss_eval(&s->loss, z, row0, 1.0, &s->base_loss, NULL, err);
    if (st != BA_OK) goto fail;
    *out = s;
    return BA_OK;
fail:
    ba_grad_session_free(s);
    return st;
}

ba_status ba_grad_session_new(const ba_model_t *m, ba_tensor_t *const *inputs, ba_tensor_t *const *overrides,
                              const ba_loss_spec_t *loss, ba_grad_session_t **out, ba_error *err) {
    return session_make(m, inputs, overrides, loss, NULL, 0, 0, 1, out, err);
}

void ba_grad_session_free(ba_grad_session_t *s) {
    if (!s) return;
    ba_grad_hvp_session_free(s);
    free_vals(s->m, s->vals);
    free(s->own_labels);
    free(s->feeds);
    free(s);
}

double ba_grad_session_loss(const ba_grad_session_t *s) {
    return s->base_loss;
}

int64_t ba_grad_session_bytes(const ba_grad_session_t *s) {
    int64_t b = 0;
    for (int v = 0; v < s->m->nvalues; v++)
        if (s->vals[v] && !s->m->values[v].constant) b += (int64_t)ba_tensor_nbytes(s->vals[v]);
    return b;
}

/* Loss gradient on vals' output, then the backward pass to req[]. */
static ba_status grad_at_hook(ba_grad_session_t *s, ba_tensor_t **vals, int nreq, const int *req,
                              ba_tensor_t **gres, double *loss, ba_grad_node_hook hook, ba_error *err) {
    const ba_tensor_t *z = vals[s->out_id];
    ba_tensor_t *dz = ba_tensor_new(BA_DT_F32, z->ndim, z->shape, err);
    if (!dz) return err->code;
    double l;
    ba_status st = ba_loss_eval(&s->loss, z, s->row0, 1.0, &l, dz->data, err);
    if (st == BA_OK) st = ba_grad_backward(s->m, vals, s->out_id, dz, nreq, req, gres, NULL, hook, s, err);
    if (loss) *loss = l;
    ba_tensor_unref(dz);
    return st;
}

static ba_status grad_at(ba_grad_session_t *s, ba_tensor_t **vals, int nreq, const int *req,
                         ba_tensor_t **gres, double *loss, ba_error *err) {
    return grad_at_hook(s, vals, nreq, req, gres, loss, NULL, err);
}

static void copy_grad(const ba_tensor_t *g, float *dst, int64_t n) {
    if (g)
        memcpy(dst, g->data, (size_t)n * sizeof(float));
    else
        memset(dst, 0, (size_t)n * sizeof(float));
}

ba_status ba_grad_session_grad(ba_grad_session_t *s, int nreq, const int *req, float *const *grads_out,
                               ba_error *err) {
    BA_TRY(check_req(s->m, s->vals, nreq, req, err));
    ba_tensor_t **g = ba_calloc((size_t)nreq + 1, sizeof *g, err);
    if (!g) return err->code;
    ba_status st = grad_at(s, s->vals, nreq, req, g, NULL, err);
    for (int k = 0; k < nreq; k++) {
        if (st == BA_OK) copy_grad(g[k], grads_out[k], s->vals[req[k]]->numel);
        ba_tensor_unref(g[k]);
    }
    free(g);
    return st;
}

/* vals_out = base values with constant `value` replaced by w and every node
 * downstream of it re-run (the rest shared with the base by ref). */
static ba_status forward_from(ba_grad_session_t *s, int value, ba_tensor_t *w, ba_tensor_t **vals_out,
                              ba_error *err) {
    const ba_model_t *m = s->m;
    const int nv = m->nvalues;
    unsigned char *dirty = ba_calloc((size_t)nv + 1, 1, err);
    int maxio = 1;
    for (int i = 0; i < m->nnodes; i++) {
        if (m->nodes[i].nin > maxio) maxio = m->nodes[i].nin;
        if (m->nodes[i].nout > maxio) maxio = m->nodes[i].nout;
    }
    ba_tensor_t **io = ba_calloc((size_t)maxio * 4, sizeof *io, err);
    if (!dirty || !io) {
        free(dirty);
        free(io);
        return err->code;
    }
    for (int v = 0; v < nv; v++) vals_out[v] = ba_tensor_ref(s->vals[v]);
    ba_tensor_unref(vals_out[value]);
    vals_out[value] = ba_tensor_ref(w);
    dirty[value] = 1;
    ba_status st = BA_OK;
    for (int i = 0; i < m->nnodes && st == BA_OK; i++) {
        const ba_node_t *n = &m->nodes[i];
        int d = 0;
        for (int j = 0; j < n->nin; j++) d |= n->inputs[j] >= 0 && dirty[n->inputs[j]];
        if (!d || !ba_grad_node_ran(n, s->vals)) continue; /* If branches keep the base point's choice */
        for (int j = 0; j < n->nin; j++) io[j] = n->inputs[j] >= 0 ? vals_out[n->inputs[j]] : NULL;
        ba_tensor_t **bin = io + 2 * maxio, **bout = io + 3 * maxio;
        for (int j = 0; j < n->nin; j++) bin[j] = n->inputs[j] >= 0 ? s->vals[n->inputs[j]] : NULL;
        for (int j = 0; j < n->nout; j++) {
            io[maxio + j] = NULL;
            bout[j] = n->outputs[j] >= 0 ? s->vals[n->outputs[j]] : NULL;
        }
        /* Piecewise-linear ops keep the base point's pattern (ReLU mask,
         * MaxPool argmax, Clip range …): the autograd Hessian takes their
         * second derivative as 0 on the current piece, while a step that
         * flips some units adds jump terms of size O(1) whatever the step
         * (measured: 1.8 to 59x the true Hv on the digits MLP/CNNs with ReLU
         * unfrozen). Frozen, the difference is exact up to the smooth parts' O(eps²). */
        if (!ba_grad_frozen_forward(n, bin, bout, io, n->nin, io + maxio, &st, err))
            st = n->def->forward(n, io, n->nin, io + maxio, n->nout, err);
        for (int j = 0; j < n->nout; j++) {
            int id = n->outputs[j];
            if (id < 0 || st != BA_OK) {
                ba_tensor_unref(io[maxio + j]);
                continue;
            }
            ba_tensor_unref(vals_out[id]);
            vals_out[id] = io[maxio + j];
            dirty[id] = 1;
        }
        if (st != BA_OK) ba_error_prefix(err, "%s: node '%s' (%s)", m->path, n->name, n->op_type);
    }
    free(dirty);
    free(io);
    return st;
}

/* Gradient w.r.t. `value` at W + step·v (only the downstream part re-run). */
static ba_status grad_shifted(ba_grad_session_t *s, int value, const float *v, double step, ba_tensor_t **g,
                              ba_error *err) {
    const ba_tensor_t *W = s->vals[value];
    ba_tensor_t *w = ba_tensor_new(BA_DT_F32, W->ndim, W->shape, err);
    ba_tensor_t **vals = ba_calloc((size_t)s->m->nvalues + 1, sizeof *vals, err);
    ba_status st = w && vals ? BA_OK : err->code;
    if (st == BA_OK) {
        const float *wv = W->data;
        float *nw = w->data;
        for (int64_t i = 0; i < W->numel; i++) nw[i] = (float)((double)wv[i] + step * (double)v[i]);
        st = forward_from(s, value, w, vals, err);
    }
    /* the backward on the frozen pattern too (masks from the base point) */
    if (st == BA_OK) st = grad_at_hook(s, vals, 1, &value, g, NULL, ba_grad_frozen_backward, err);
    ba_tensor_unref(w);
    if (vals) free_vals(s->m, vals);
    return st;
}

ba_status ba_grad_session_hvp_fd(ba_grad_session_t *s, int value, const float *v, float *hv_out,
                                 ba_error *err) {
    BA_TRY(check_req(s->m, s->vals, 1, &value, err));
    const ba_tensor_t *W = s->vals[value];
    const float *wv = W->data;
    double nw = 0.0, nvv = 0.0;
    for (int64_t i = 0; i < W->numel; i++) {
        nw += (double)wv[i] * wv[i];
        nvv += (double)v[i] * v[i];
    }
    if (nvv == 0.0) {
        memset(hv_out, 0, (size_t)W->numel * sizeof(float));
        return BA_OK;
    }
    double scale = sqrt(nw / (double)W->numel);
    if (scale == 0.0) scale = HVP_MIN_SCALE;
    /* Each weight moves by about HVP_REL_STEP of the tensor's RMS. */
    const double eps = HVP_REL_STEP * scale * sqrt((double)W->numel / nvv);
    ba_tensor_t *gp = NULL, *gm = NULL;
    ba_status st = grad_shifted(s, value, v, eps, &gp, err);
    if (st == BA_OK) st = grad_shifted(s, value, v, -eps, &gm, err);
    if (st == BA_OK) {
        const float *a = gp ? gp->data : NULL, *b = gm ? gm->data : NULL;
        for (int64_t i = 0; i < W->numel; i++)
            hv_out[i] = (float)(((a ? (double)a[i] : 0.0) - (b ? (double)b[i] : 0.0)) / (2.0 * eps));
    }
    ba_tensor_unref(gp);
    ba_tensor_unref(gm);
    return st;
}

/* ---- one-call wrappers ---- */

/* The samples N along the inputs' sample axes (axes[k] < 0: a constant input; NULL: axis 0),
 * and whether the model takes one sample alone (no input declares a fixed batch > 1). */
static ba_status sample_count(const ba_model_t *m, ba_tensor_t *const *inputs, const int *axes,
                              int64_t *N_out, int *dynamic, ba_error *err) {
    int64_t N = -1;
    *dynamic = 1;
    for (int k = 0; k < m->ninputs; k++) {
        const ba_value_t *v = &m->values[m->inputs[k]];
        int a = axes ? axes[k] : 0;
        if (a < 0) continue;
        if (!inputs[k] || inputs[k]->ndim <= a || (N >= 0 && inputs[k]->shape[a] != N))
            return ba_error_set(err, BA_ERR_INPUT, "%s: input '%s' does not have %lld samples along axis %d",
                                m->path, v->name, (long long)N, a);
        N = inputs[k]->shape[a];
        if (v->ndim > a && v->shape[a] > 1) *dynamic = 0; /* a fixed batch > 1 cannot take one sample */
    }
    if (N < 0)
        return ba_error_set(err, BA_ERR_INPUT, "%s: per-sample gradients need an input with a sample axis",
                            m->path);
    *N_out = N;
    return BA_OK;
}

/* Per-sample squared gradients: each sample alone (batch of 1: views or
 * slices of the inputs along their sample axes, constants whole) when the
 * model's batch axis is dynamic, else one forward of the batch and one
 * backward per sample with dL/dz non-zero on its rows only. */
static ba_status per_sample_sq(const ba_model_t *m, ba_tensor_t *const *inputs, ba_tensor_t *const *overrides,
                               const int *axes, const ba_loss_spec_t *loss, int nreq, const int *req,
                               float *const *grads_out, double *loss_out, ba_error *err) {
    int64_t N;
    int dynamic;
    BA_TRY(sample_count(m, inputs, axes, &N, &dynamic, err));
    /* Resolve CE_ARGMAX labels once over the whole data (the FP model's). */
    ba_grad_session_t *full = NULL;
    ba_status st = BA_OK;
    int64_t *labels = NULL, nlabels = 0;
    ba_loss_spec_t ls = *loss;
    if (!dynamic || loss->kind == BA_LOSS_CE_ARGMAX) {
        st = session_make(m, inputs, overrides, loss, NULL, 0, 0, 1, &full, err);
        if (st != BA_OK) return st;
        if (full->loss.kind == BA_LOSS_CE) {
            nlabels = full->loss.nlabels;
            labels = ba_malloc((size_t)nlabels * sizeof(int64_t) + 1, err);
            if (!labels) {
                ba_grad_session_free(full);
                return err->code;
            }
            memcpy(labels, full->loss.labels, (size_t)nlabels * sizeof(int64_t));
            ls.kind = BA_LOSS_CE;
            ls.labels = labels;
            ls.nlabels = nlabels;
        }
    }
    int64_t total = 0;
    double *acc = NULL;
    for (int k = 0; k < nreq; k++)
        total += m->values[req[k]].constant ? m->values[req[k]].constant->numel : 0;
    acc = ba_calloc((size_t)total + 1, sizeof(double), err);
    ba_tensor_t **g = ba_calloc((size_t)nreq + 1, sizeof *g, err);
    ba_tensor_t **one = ba_calloc((size_t)m->ninputs + 1, sizeof *one, err);
    double lsum = 0.0;
    if (!acc || !g || !one) st = err->code;
    if (st == BA_OK && full) st = check_req(m, full->vals, nreq, req, err);
    for (int64_t i = 0; i < N && st == BA_OK; i++) {
        double li = 0.0;
        if (!dynamic) {
            const ba_tensor_t *z = full->vals[full->out_id];
            const int64_t C = z->ndim ? z->shape[z->ndim - 1] : 1, rps = z->numel / C / N;
            ba_tensor_t *dz = ba_tensor_new(BA_DT_F32, z->ndim, z->shape, err);
            int64_t sshape[2] = {rps, C};
            ba_tensor_t *zi =
                dz ? ba_tensor_wrap(BA_DT_F32, 2, sshape, (float *)z->data + i * rps * C, err) : NULL;
            st = zi ? ba_loss_eval(&full->loss, zi, i * rps, 1.0, &li, (float *)dz->data + i * rps * C, err)
                    : err->code;
            if (st == BA_OK)
                st = ba_grad_backward(m, full->vals, full->out_id, dz, nreq, req, g, NULL, NULL, NULL, err);
            ba_tensor_unref(zi);
            ba_tensor_unref(dz);
        } else {
            for (int k = 0; k < m->ninputs && st == BA_OK; k++) {
                int a = axes ? axes[k] : 0;
                one[k] = a < 0 ? ba_tensor_ref(inputs[k]) : ba_tensor_slice_axis(inputs[k], a, i, 1, err);
                if (!one[k]) st = err->code;
            }
            ba_grad_session_t *s = NULL;
            if (st == BA_OK) {
                /* rows per sample are known after the first forward; labels/ref
                 * rows of sample i start at i·rows. */
                st = session_make(m, one, overrides, &ls, NULL, 0, 0, 0, &s, err);
                if (st == BA_OK) {
                    const ba_tensor_t *z = s->vals[s->out_id];
                    const int64_t C = z->ndim ? z->shape[z->ndim - 1] : 1, rps = C ? z->numel / C : 0;
                    s->row0 = i * rps;
                    if (i == 0 && ls.kind == BA_LOSS_CE && ls.nlabels != rps * N)
                        st = ba_error_set(
                            err, BA_ERR_INPUT,
                            "labels: %lld given, the output has %lld rows (%lld samples x %lld)",
                            (long long)ls.nlabels, (long long)(rps * N), (long long)N, (long long)rps);
                    else if (i == 0 && (ls.kind == BA_LOSS_KL || ls.kind == BA_LOSS_MSE) &&
                             (!ls.ref || ls.ref->numel != z->numel * N))
                        st = ba_error_set(
                            err, BA_ERR_INPUT,
                            "loss: reference output does not hold %lld samples of the output's size",
                            (long long)N);
                    if (st == BA_OK) st = check_req(m, s->vals, nreq, req, err);
                    if (st == BA_OK) st = grad_at(s, s->vals, nreq, req, g, &li, err);
                }
            }
            ba_grad_session_free(s);
            for (int k = 0; k < m->ninputs; k++) {
                ba_tensor_unref(one[k]);
                one[k] = NULL;
            }
        }
        lsum += li;
        int64_t off = 0;
        for (int k = 0; k < nreq; k++) {
            const int64_t n = m->values[req[k]].constant->numel;
            if (g[k] && st == BA_OK) {
                const float *gv = g[k]->data;
                for (int64_t e = 0; e < n; e++) acc[off + e] += (double)gv[e] * gv[e];
            }
            ba_tensor_unref(g[k]);
            g[k] = NULL;
            off += n;
        }
    }
    if (st == BA_OK) {
        int64_t off = 0;
        for (int k = 0; k < nreq; k++) {
            const int64_t n = m->values[req[k]].constant->numel;
            for (int64_t e = 0; e < n; e++) grads_out[k][e] = (float)acc[off + e];
            off += n;
        }
        if (loss_out) *loss_out = N ? lsum / (double)N : 0.0;
    }
    free(acc);
    free(g);
    free(one);
    free(labels);
    ba_grad_session_free(full);
    return st;
}

/* ---- the generalised Gauss-Newton ---- */

/* sq[k] += sign·‖g_k‖² of the backward of dz (consumed) from value out_id to req[]. */
static ba_status backward_sq(const ba_model_t *m, ba_tensor_t **vals, int out_id, ba_tensor_t *dz, int nreq,
                             const int *req, double sign, ba_tensor_t **g, double *sq, ba_error *err) {
    ba_status st = ba_grad_backward(m, vals, out_id, dz, nreq, req, g, NULL, NULL, NULL, err);
    ba_tensor_unref(dz);
    for (int k = 0; k < nreq; k++) {
        if (g[k] && st == BA_OK) {
            const float *gv = g[k]->data;
            double a = 0.0;
            for (int64_t e = 0; e < g[k]->numel; e++) a += (double)gv[e] * gv[e];
            sq[k] += sign * a;
        }
        ba_tensor_unref(g[k]);
        g[k] = NULL;
    }
    return st;
}

/* Rows [r0, r0 + nr) of vals' output: for each row and each factor of the
 * loss's second derivative (ba_loss_hess_factor), one backward with dz on
 * that row only; sq[k] += ‖g_k‖². rows: the rows the loss averages over. */
static ba_status ggn_rows(const ba_model_t *m, ba_tensor_t **vals, int out_id, ba_loss_kind kind, int64_t r0,
                          int64_t nr, int64_t rows, int nreq, const int *req, ba_tensor_t **g, double *sq,
                          ba_error *err) {
    const ba_tensor_t *z = vals[out_id];
    const int64_t C = z->ndim ? z->shape[z->ndim - 1] : 1, rank = ba_loss_hess_rank(kind, C);
    float *eps = ba_calloc((size_t)C + 1, sizeof *eps, err);
    ba_status st = eps ? BA_OK : err->code;
    for (int64_t r = r0; r < r0 + nr && st == BA_OK; r++)
        for (int64_t c = 0; c < rank && st == BA_OK; c++) {
            ba_tensor_t *dz = ba_tensor_new(BA_DT_F32, z->ndim, z->shape, err);
            if (!dz) {
                st = err->code;
                break;
            }
            eps[c] = 1.0f;
            ba_loss_hess_factor(kind, (const float *)z->data + r * C, C, rows, eps,
                                (float *)dz->data + r * C);
            eps[c] = 0.0f;
            st = backward_sq(m, vals, out_id, dz, nreq, req, 1.0, g, sq, err);
        }
    free(eps);
    return st;
}

ba_status ba_grad_ggn_trace(const ba_model_t *m, ba_tensor_t *const *inputs, const int *axes,
                            const ba_loss_spec_t *loss, int nreq, const int *req, int64_t max_backward,
                            double *tr_out, int *exact, ba_error *err) {
    *exact = 0;
    if (!loss || loss->output < 0 || loss->output >= m->noutputs)
        return ba_error_set(err, BA_ERR_INPUT, "%s: loss on output %d, the model has %d", m->path,
                            loss ? loss->output : -1, m->noutputs);
    int64_t N;
    int dynamic;
    BA_TRY(sample_count(m, inputs, axes, &N, &dynamic, err));
    ba_malloc_keep_freed();
    int out_id = m->outputs[loss->output];
    ba_tensor_t **vals = ba_calloc((size_t)m->nvalues + 1, sizeof *vals, err);
    ba_tensor_t **g = ba_calloc((size_t)nreq + 1, sizeof *g, err);
    ba_tensor_t **one = ba_calloc((size_t)m->ninputs + 1, sizeof *one, err);
    double *sq = ba_calloc((size_t)nreq + 1, sizeof *sq, err);
    ba_status st = vals && g && one && sq ? BA_OK : err->code;
    int64_t rows = 0;
    int over = 0;
    for (int64_t i = 0; i < (dynamic ? N : 1) && st == BA_OK && !over; i++) {
        if (dynamic)
            for (int k = 0; k < m->ninputs && st == BA_OK; k++) {
                int a = axes ? axes[k] : 0;
                one[k] = a < 0 ? ba_tensor_ref(inputs[k]) : ba_tensor_slice_axis(inputs[k], a, i, 1, err);
                if (!one[k]) st = err->code;
            }
        if (st == BA_OK) st = forward_keep(m, dynamic ? one : inputs, NULL, vals, err);
        int on_logits = 0;
        if (st == BA_OK) out_id = ba_grad_loss_value(m, loss->kind, loss->output, vals, &on_logits);
        const ba_tensor_t *z = st == BA_OK ? vals[out_id] : NULL;
        if (st == BA_OK && !is_f32(z))
            st = ba_error_set(err, BA_ERR_INPUT, "%s: loss output '%s' is not float32", m->path,
                              m->values[out_id].name);
        if (st == BA_OK && i == 0) st = check_req(m, vals, nreq, req, err);
        if (st == BA_OK) {
            const int64_t C = z->ndim ? z->shape[z->ndim - 1] : 1, R = C ? z->numel / C : 0;
            const int64_t rps = dynamic ? R : (N ? R / N : 0);
            rows = rps * N;
            /* whole-batch backwards: a sample's rows·rank, N times that on a fixed batch */
            const int64_t rank = ba_loss_hess_rank(loss->kind, C);
            const int64_t cost = rps * rank * (dynamic ? 1 : N);
            over = cost > max_backward;
            if (!over && i == 0) *exact = 1;
            if (!over) st = ggn_rows(m, vals, out_id, loss->kind, 0, R, rows, nreq, req, g, sq, err);
        }
        for (int v = 0; v < m->nvalues; v++) {
            ba_tensor_unref(vals[v]);
            vals[v] = NULL;
        }
        for (int k = 0; k < m->ninputs; k++) {
            ba_tensor_unref(one[k]);
            one[k] = NULL;
        }
    }
    if (st == BA_OK && *exact)
        for (int k = 0; k < nreq; k++) tr_out[k] = sq[k];
    if (st != BA_OK || over) *exact = 0;
    free(vals);
    free(g);
    free(one);
    free(sq);
    return st;
}

ba_status ba_grad_session_ggn_sample(ba_grad_session_t *s, ba_rng_t *rng, int nreq, const int *req,
                                     double *sq, ba_error *err) {
    BA_TRY(check_req(s->m, s->vals, nreq, req, err));
    const ba_tensor_t *z = s->vals[s->out_id];
    const int64_t C = z->ndim ? z->shape[z->ndim - 1] : 1, R = C ? z->numel / C : 0;
    const int64_t rank = ba_loss_hess_rank(s->loss.kind, C);
    ba_tensor_t *dz = ba_tensor_new(BA_DT_F32, z->ndim, z->shape, err);
    float *eps = dz ? ba_malloc((size_t)C * sizeof *eps + 1, err) : NULL;
    ba_tensor_t **g = eps ? ba_calloc((size_t)nreq + 1, sizeof *g, err) : NULL;
    if (!g) {
        ba_tensor_unref(dz);
        free(eps);
        return err->code;
    }
    for (int64_t r = 0; r < R; r++) {
        for (int64_t c = 0; c < C; c++) eps[c] = c < rank ? (float)ba_rng_rademacher(rng) : 0.0f;
        ba_loss_hess_factor(s->loss.kind, (const float *)z->data + r * C, C, R, eps,
                            (float *)dz->data + r * C);
    }
    for (int k = 0; k < nreq; k++) sq[k] = 0.0;
    ba_status st = backward_sq(s->m, s->vals, s->out_id, dz, nreq, req, 1.0, g, sq, err);
    free(eps);
    free(g);
    return st;
}

ba_status ba_grad_compute(const ba_model_t *m, ba_tensor_t *const *inputs, const ba_grad_opts_t *opts,
                          const ba_loss_spec_t *loss, int nreq, const int *req, float *const *grads_out,
                          double *loss_out, ba_error *err) {
    static const ba_grad_opts_t no_opts;
    if (!opts) opts = &no_opts;
    for (int k = 0; k < nreq; k++)
        if (req[k] < 0 || req[k] >= m->nvalues || !m->values[req[k]].constant)
            return ba_error_set(err, BA_ERR_INPUT,
                                "%s: gradient requested for value id %d, which is not a constant", m->path,
                                req[k]);
    if (opts->per_sample_sq)
        return per_sample_sq(m, inputs, opts->overrides, opts->sample_axes, loss, nreq, req, grads_out,
                             loss_out, err);
    ba_grad_session_t *s = NULL;
    BA_TRY(ba_grad_session_new(m, inputs, opts->overrides, loss, &s, err));
    ba_status st = ba_grad_session_grad(s, nreq, req, grads_out, err);
    if (st == BA_OK && loss_out) *loss_out = s->base_loss;
    ba_grad_session_free(s);
    return st;
}

ba_status ba_grad_hvp(const ba_model_t *m, ba_tensor_t *const *inputs, ba_tensor_t *const *overrides,
                      const ba_loss_spec_t *loss, int value, const float *v, float *hv_out, ba_error *err) {
    ba_grad_session_t *s = NULL;
    BA_TRY(ba_grad_session_new(m, inputs, overrides, loss, &s, err));
    ba_status st = ba_grad_session_hvp(s, value, v, hv_out, err);
    ba_grad_session_free(s);
    return st;
}

ba_status ba_grad_hvp_layers(const ba_model_t *m, ba_tensor_t *const *inputs, ba_tensor_t *const *overrides,
                             const ba_loss_spec_t *loss, int nreq, const int *req, const float *const *v,
                             float *const *hv_out, ba_error *err) {
    ba_grad_session_t *s = NULL;
    BA_TRY(ba_grad_session_new(m, inputs, overrides, loss, &s, err));
    ba_status st = BA_OK;
    for (int k = 0; k < nreq && st == BA_OK; k++) st = ba_grad_session_hvp(s, req[k], v[k], hv_out[k], err);
    ba_grad_session_free(s);
    return st;
}
