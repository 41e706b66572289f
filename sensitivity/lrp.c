/* The `lrp` estimator (LRP-QViT style): LRP-ε relevance of the predicted class
 * is propagated from the output back through the graph, and a layer's
 * contribution is the total |relevance| of the activations its weight
 * multiplies (the consumer node's data input), averaged over samples and
 * normalised to sum 1 over layers: s_l. Ω(l,b) = s_l·‖Q_b(W)−W‖²/‖W‖².
 *
 * Rules, per node in reverse order (the backward kernels of model/grad.h do
 * the Jacobian-transpose products, so every op with a backward is covered):
 *  - activations and normalisations (BA_OPF_ACTIVATION: Relu, Gelu, Sigmoid,
 *    Softmax, LayerNorm …) pass relevance through unchanged (the usual LRP identity rule);
 *  - layout ops (BA_OPF_LAYOUT: Reshape, Flatten, Transpose, Concat, Slice …) route it: R_in = Jᵀ R;
 *  - every other op (Conv, Gemm, MatMul, Add, pools, reductions …) takes the
 *    ε-rule R_in = x ⊙ Jᵀ(R / (z + ε·sign(z))) on each non-constant input;
 *    a product of two activations (MatMul/Mul with no constant operand) gives
 *    each operand half (AttnLRP's uniform rule for bilinear ops). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/grad.h"
#include "sensitivity/sens_internal.h"

/* Stabiliser of the ε-rule (Montavon et al. 2019 use a small ε for upper
 * layers; this one only keeps z = 0 finite, so LRP-ε ≈ LRP-0 = gradient×input). */
#define LRP_EPS 1e-6

/* R[id] += scale · (x ⊙ g) (mul) or scale · g; allocated on first use. */
static ba_status add_rel(ba_tensor_t **R, const ba_tensor_t *like, const ba_tensor_t *g, const ba_tensor_t *x,
                         double scale, ba_error *err) {
    if (!*R) {
        *R = ba_tensor_new(BA_DT_F32, like->ndim, like->shape, err);
        if (!*R) return err->code;
    }
    float *r = (*R)->data;
    const float *gd = g->data, *xd = x ? x->data : NULL;
    if (g->numel != (*R)->numel) return ba_error_set(err, BA_ERR_RUNTIME, "lrp: relevance shape mismatch");
    for (int64_t i = 0; i < g->numel; i++) r[i] += (float)(scale * (xd ? (double)xd[i] * gd[i] : gd[i]));
    return BA_OK;
}

static ba_status lrp_batch(sens_ctx_t *c, ba_tensor_t **vals, ba_tensor_t **R, double *contrib,
                           ba_error *err) {
    const ba_model_t *m = c->m;
    /* seed: the predicted class's logit on each row of output 0 */
    int oid = m->outputs[0];
    const ba_tensor_t *z = vals[oid];
    if (!z || z->dtype != BA_DT_F32 || z->ndim < 1)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "lrp: output '%s' is not a float32 tensor",
                            m->values[oid].name);
    R[oid] = ba_tensor_new(BA_DT_F32, z->ndim, z->shape, err);
    if (!R[oid]) return err->code;
    int64_t C = z->shape[z->ndim - 1], rows = C > 0 ? z->numel / C : 0;
    const float *zd = z->data;
    float *rd = R[oid]->data;
    for (int64_t r = 0; r < rows; r++) {
        int64_t best = 0;
        for (int64_t j = 1; j < C; j++)
            if (zd[r * C + j] > zd[r * C + best]) best = j;
        rd[r * C + best] = zd[r * C + best];
    }
    for (int i = m->nnodes - 1; i >= 0; i--) {
        const ba_node_t *n = &m->nodes[i];
        int any = 0;
        for (int j = 0; j < n->nout; j++)
            if (n->outputs[j] >= 0 && R[n->outputs[j]]) any = 1;
        if (!any) continue;
        ba_tensor_t *in[16] = {0}, *out[8] = {0}, *dout[8] = {0}, *din[16] = {0};
        unsigned char need[16] = {0};
        if (n->nin > 16 || n->nout > 8)
            return ba_error_set(err, BA_ERR_UNSUPPORTED, "lrp: node %s has too many inputs", n->name);
        int nvar = 0;
        for (int j = 0; j < n->nin; j++) {
            int id = n->inputs[j];
            in[j] = id < 0 ? NULL : vals[id] ? vals[id] : m->values[id].constant;
            need[j] = id >= 0 && !m->values[id].constant && in[j] && in[j]->dtype == BA_DT_F32;
            nvar += need[j];
        }
        if (nvar == 0) continue;
        if (ba_node_flags(n) & BA_OPF_ACTIVATION) {
            if (need[0] && R[n->outputs[0]])
                BA_TRY(add_rel(&R[n->inputs[0]], in[0], R[n->outputs[0]], NULL, 1.0, err));
            continue;
        }
        ba_status st = BA_OK;
        const ba_op_def_t *gd = n->def;
        if (!gd || !gd->backward)
            return ba_error_set(err, BA_ERR_UNSUPPORTED,
                                "lrp: node %s: op %s has no backward rule to carry relevance", n->name,
                                n->op_type);
        int route = (ba_node_flags(n) & BA_OPF_LAYOUT) != 0;
        for (int j = 0; j < n->nout && st == BA_OK; j++) {
            int id = n->outputs[j];
            out[j] = id >= 0 ? vals[id] : NULL;
            if (id < 0 || !R[id]) continue;
            if (route) {
                dout[j] = ba_tensor_ref(R[id]);
                continue;
            }
            dout[j] = ba_tensor_new(BA_DT_F32, R[id]->ndim, R[id]->shape, err);
            if (!dout[j]) {
                st = err->code;
                break;
            }
            const float *r = R[id]->data, *zz = out[j]->data;
            float *s = dout[j]->data;
            for (int64_t e = 0; e < R[id]->numel; e++) {
                double den = zz[e] + (zz[e] >= 0 ? LRP_EPS : -LRP_EPS);
                s[e] = (float)(r[e] / den);
            }
        }
        if (st == BA_OK) st = gd->backward(n, in, n->nin, out, n->nout, dout, need, din, err);
        /* bilinear ops between two activations: half the relevance each */
        double share = (!route && nvar > 1 && (n->op == BA_OP_MATMUL || n->op == BA_OP_MUL)) ? 0.5 : 1.0;
        for (int j = 0; j < n->nin && st == BA_OK; j++)
            if (need[j] && din[j])
                st = add_rel(&R[n->inputs[j]], in[j], din[j], route ? NULL : in[j], share, err);
        for (int j = 0; j < n->nout; j++) ba_tensor_unref(dout[j]);
        for (int j = 0; j < n->nin; j++) ba_tensor_unref(din[j]);
        if (st != BA_OK) return st;
    }
    /* every reader of a layer's data input has been visited: its relevance is complete */
    for (int l = 0; l < m->nlayers; l++)
        for (int k = 0; k < m->layers[l].nuses; k++) {
            const ba_layer_use_t *u = &m->layers[l].uses[k];
            if (u->data < 0) continue;
            const ba_node_t *un = &m->nodes[u->node];
            if (un->guard >= 0 && un->outputs[0] >= 0 && !vals[un->outputs[0]])
                continue; /* If branch not taken */
            const ba_tensor_t *r = R[u->data];
            if (!r) continue;
            const float *d = r->data;
            double s = 0;
            for (int64_t e = 0; e < r->numel; e++) s += fabs(d[e]);
            contrib[l] += s;
        }
    return BA_OK;
}

ba_status sens_lrp(sens_ctx_t *c, ba_sens_table_t *t, ba_error *err) {
    const ba_model_t *m = c->m;
    int L = m->nlayers;
    c->loss_name = NULL;
    double *contrib = ba_calloc((size_t)L, sizeof *contrib, err);
    ba_tensor_t **vals = ba_calloc((size_t)m->nvalues, sizeof *vals, err);
    ba_tensor_t **R = ba_calloc((size_t)m->nvalues, sizeof *R, err);
    ba_tensor_t **inputs = ba_calloc((size_t)m->ninputs + 1, sizeof *inputs, err);
    ba_tensor_t **outs = ba_calloc((size_t)m->noutputs + 1, sizeof *outs, err);
    ba_status st = (contrib && vals && R && inputs && outs) ? BA_OK : BA_ERR_NOMEM;
    int64_t nbatch = sens_nbatch(c);
    c->work_total = (uint64_t)nbatch;
    for (int64_t b = 0; b < nbatch && st == BA_OK; b++) {
        st = sens_batch_inputs(c, b * c->batch, sens_batch_len(c, b), inputs, err);
        ba_run_opts_t ro = {.keep = vals};
        if (st == BA_OK) st = ba_model_run(m, inputs, &ro, outs, err);
        /* graph inputs are not in keep: add them so their relevance can be measured */
        for (int k = 0; k < m->ninputs && st == BA_OK; k++) {
            ba_tensor_unref(vals[m->inputs[k]]);
            vals[m->inputs[k]] = ba_tensor_ref(inputs[k]);
        }
        if (st == BA_OK) st = lrp_batch(c, vals, R, contrib, err);
        for (int v = 0; v < m->nvalues; v++) {
            ba_tensor_unref(vals[v]);
            ba_tensor_unref(R[v]);
            vals[v] = R[v] = NULL;
        }
        for (int o = 0; o < m->noutputs; o++) {
            ba_tensor_unref(outs[o]);
            outs[o] = NULL;
        }
        sens_inputs_free(c, inputs);
        sens_progress(c, 1);
    }
    double total = 0;
    for (int l = 0; l < L; l++) total += contrib[l];
    for (int l = 0; l < L && st == BA_OK; l++) {
        ba_sens_layer_t *Lr = &t->layers[l];
        Lr->score = total > 0 ? contrib[l] / total : 0;
        const ba_tensor_t *w = m->values[m->layers[l].value].constant;
        double wn = 0;
        for (int64_t i = 0; i < w->numel; i++) {
            double x = ba_tensor_get_f64(w, i);
            wn += x * x;
        }
        for (int k = 0; k < t->nbits && st == BA_OK; k++) {
            double e;
            st = ba_sens_weight_error(m, l, t->bits[k], &c->o->quant, &e, err);
            Lr->cost[k] = wn > 0 ? Lr->score * e / wn : 0;
        }
    }
    free(contrib);
    free(vals);
    free(R);
    free(inputs);
    free(outs);
    return st;
}
