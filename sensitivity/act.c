/* The `act` estimator: Ω(l,b) = mean over samples of ‖(Q_b(W)−W)·x‖², the
 * squared change of the layer's output (bias aside) that quantizing its
 * weight causes, summed over the sample's rows / im2col patches and over the
 * layer's consumers. For Conv (per group), Gemm and rank-2 MatMul weights it
 * accumulates Σ = Σ x xᵀ / N once (executor on_value hook) and then each
 * (l,b) is tr(ΔW Σ ΔWᵀ); other consumers (ConvTranspose, Gather, transA,
 * weight on the left, batched weights, or Σ wider than BA_SENS_ACT_MAX_K)
 * run the node's own kernel on ΔW during the pass (same quantity, direct). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/kern_conv.h"
#include "model/ops.h"
#include "sensitivity/sens_internal.h"

/* Largest Σ side kept (K² doubles: 8 MiB at 1024); wider inputs use the direct pass. */
#define BA_SENS_ACT_MAX_K 1024
/* Floats of im2col columns built at once. */
#define ACT_COLS_BUDGET ((int64_t)1 << 22)

typedef enum { USE_CONV, USE_ROWS, USE_DIRECT } use_mode;

typedef struct act_use {
    int layer, node, widx, didx;
    use_mode mode;
    int64_t K, groups; /* Σ side and count */
    int cols_are_rows; /* ROWS: δ_r is a column of the stored weight ([K, N]) */
    double alpha2;     /* Gemm alpha² */
    double *sigma;     /* groups·K·K, sum over rows/patches */
    double direct[BA_SENS_MAX_BITS + 1];
    ba_tensor_t *wfp;                      /* consumed weight, FP */
    ba_tensor_t *dw[BA_SENS_MAX_BITS + 1]; /* consumed Q_b(W) − W, float32 */
    ba_tensor_t *pending; /* node in an If branch: its input, counted once the node has run */
} act_use_t;

typedef struct act_state {
    sens_ctx_t *c;
    act_use_t *u;
    int nu;
    float *tmp; /* K·K float scratch */
    float *cols;
    int64_t cols_cap;
} act_state_t;

/* One act_use_t per use of a layer's weight with a data input (model/model.h). */
static ba_status find_uses(act_state_t *s, ba_error *err) {
    const ba_model_t *m = s->c->m;
    for (int l = 0; l < m->nlayers; l++)
        for (int k = 0; k < m->layers[l].nuses; k++) {
            const ba_layer_use_t *lu = &m->layers[l].uses[k];
            if (lu->didx < 0) continue;
            act_use_t *nu = ba_realloc(s->u, sizeof *s->u * (size_t)(s->nu + 1), err);
            if (!nu) return BA_ERR_NOMEM;
            s->u = nu;
            act_use_t *u = &s->u[s->nu++];
            memset(u, 0, sizeof *u);
            u->layer = l;
            u->node = lu->node;
            u->widx = lu->widx;
            u->didx = lu->didx;
            u->alpha2 = 1;
            u->mode = USE_DIRECT;
        }
    return BA_OK;
}

/* Consumed weights (after any weight chain) for FP and each candidate width. */
static ba_status consumed_weights(act_state_t *s, ba_error *err) {
    sens_ctx_t *c = s->c;
    const ba_model_t *m = c->m;
    int chained = 0;
    for (int i = 0; i < s->nu; i++)
        if (m->nodes[s->u[i].node].inputs[s->u[i].widx] != m->layers[s->u[i].layer].value) chained = 1;
    ba_tensor_t **keep = NULL, **ovr = NULL, **inputs = NULL, **outs = NULL;
    int *bits = NULL;
    ba_status st = BA_OK;
    if (chained) {
        keep = ba_calloc((size_t)m->nvalues, sizeof *keep, err);
        ovr = ba_calloc((size_t)m->nvalues, sizeof *ovr, err);
        inputs = ba_calloc((size_t)m->ninputs + 1, sizeof *inputs, err);
        outs = ba_calloc((size_t)m->noutputs + 1, sizeof *outs, err);
        bits = ba_calloc((size_t)m->nlayers, sizeof *bits, err);
        if (!keep || !ovr || !inputs || !outs || !bits) st = BA_ERR_NOMEM;
        if (st == BA_OK) st = sens_batch_inputs(c, 0, sens_batch_len(c, 0), inputs, err);
    }
    for (int k = -1; k < c->nbits && st == BA_OK; k++) {
        /* k = -1: FP */
        if (chained) {
            for (int l = 0; l < m->nlayers; l++) bits[l] = k < 0 ? 32 : c->bits[k];
            st = ba_wcache_overrides(c->wc, bits, ovr, err);
            ba_run_opts_t ro = {.overrides = ovr, .keep = keep};
            if (st == BA_OK) st = ba_model_run(m, inputs, &ro, outs, err);
            for (int o = 0; o < m->noutputs; o++) {
                ba_tensor_unref(outs[o]);
                outs[o] = NULL;
            }
        }
        for (int i = 0; i < s->nu && st == BA_OK; i++) {
            act_use_t *u = &s->u[i];
            int wid = m->nodes[u->node].inputs[u->widx];
            const ba_tensor_t *w;
            if (wid == m->layers[u->layer].value) {
                if (k < 0)
                    w = m->values[wid].constant;
                else
                    st = ba_wcache_get(c->wc, u->layer, c->bits[k], &w, err);
            } else {
                w = keep[wid];
            }
            if (st != BA_OK) break;
            if (!w || w->dtype != BA_DT_F32) {
                st = ba_error_set(err, BA_ERR_UNSUPPORTED, "layer %s: act estimator needs a float32 weight",
                                  m->layers[u->layer].name);
                break;
            }
            if (k < 0) {
                u->wfp = ba_tensor_clone(w, err);
                if (!u->wfp) st = err->code;
                continue;
            }
            ba_tensor_t *d = ba_tensor_new(BA_DT_F32, w->ndim, w->shape, err);
            if (!d) {
                st = err->code;
                break;
            }
            const float *a = w->data, *b = u->wfp->data;
            float *o = d->data;
            for (int64_t e = 0; e < d->numel; e++) o[e] = a[e] - b[e];
            u->dw[k] = d;
        }
    }
    if (keep)
        for (int v = 0; v < m->nvalues; v++) ba_tensor_unref(keep[v]);
    if (inputs) sens_inputs_free(c, inputs);
    free(keep);
    free(ovr);
    free(inputs);
    free(outs);
    free(bits);
    return st;
}

/* Chooses Σ or the direct pass for each use and allocates Σ. */
static ba_status plan_uses(act_state_t *s, ba_error *err) {
    const ba_model_t *m = s->c->m;
    int64_t maxk = 0;
    for (int i = 0; i < s->nu && !s->c->o->act_direct; i++) {
        act_use_t *u = &s->u[i];
        const ba_node_t *n = &m->nodes[u->node];
        const ba_tensor_t *w = u->wfp;
        if (n->op == BA_OP_CONV && w->ndim >= 3 && w->ndim <= 2 + BA_KERN_MAX_SP) {
            u->groups = ba_node_attr_int(n, "group", 1);
            if (u->groups < 1 || w->shape[0] % u->groups) continue;
            u->K = w->numel / w->shape[0];
            u->mode = USE_CONV;
        } else if (n->op == BA_OP_GEMM && w->ndim == 2 && !ba_node_attr_int(n, "transA", 0)) {
            int tb = (int)ba_node_attr_int(n, "transB", 0);
            u->K = tb ? w->shape[1] : w->shape[0];
            u->cols_are_rows = !tb;
            double a = ba_node_attr_float(n, "alpha", 1.0f);
            u->alpha2 = a * a;
            u->groups = 1;
            u->mode = USE_ROWS;
        } else if (n->op == BA_OP_MATMUL && u->widx == 1 && w->ndim == 2) {
            u->K = w->shape[0];
            u->cols_are_rows = 1;
            u->groups = 1;
            u->mode = USE_ROWS;
        }
        if (u->mode != USE_DIRECT && u->K > BA_SENS_ACT_MAX_K) u->mode = USE_DIRECT;
        if (u->mode == USE_DIRECT) continue;
        u->sigma = ba_calloc((size_t)(u->groups * u->K * u->K), sizeof(double), err);
        if (!u->sigma) return BA_ERR_NOMEM;
        if (u->K > maxk) maxk = u->K;
    }
    if (maxk > 0 && !(s->tmp = ba_malloc((size_t)(maxk * maxk) * sizeof(float), err))) return BA_ERR_NOMEM;
    return BA_OK;
}

static void add_gram(double *sigma, float *tmp, int64_t K, const float *a, int64_t lda, int64_t nrows,
                     int trans) {
    /* tmp = Aᵀ A (rows of A are x) when trans, else A Aᵀ (columns are x; A is K×nrows). */
    if (trans)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)K, (int)nrows, 1.0f, a, (int)lda, a,
                    (int)lda, 0.0f, tmp, (int)K);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)K, (int)K, (int)nrows, 1.0f, a, (int)lda, a,
                    (int)lda, 0.0f, tmp, (int)K);
    for (int64_t i = 0; i < K * K; i++) sigma[i] += tmp[i];
}

static ba_status accumulate(act_state_t *s, act_use_t *u, const ba_tensor_t *x, ba_error *err) {
    const ba_model_t *m = s->c->m;
    const ba_node_t *n = &m->nodes[u->node];
    if (u->mode == USE_DIRECT) {
        ba_tensor_t *in[8] = {0}, *out[4] = {0};
        if (n->nin > 8 || n->nout > 4)
            return ba_error_set(err, BA_ERR_UNSUPPORTED, "node %s: too many inputs", n->name);
        const ba_op_def_t *def = n->def;
        if (!def)
            return ba_error_set(err, BA_ERR_UNSUPPORTED, "node %s: op %s has no kernel", n->name, n->op_type);
        for (int k = 0; k < s->c->nbits; k++) {
            in[u->didx] = (ba_tensor_t *)x;
            in[u->widx] = u->dw[k];
            /* bias and C stay out: Ω is the change due to the weight alone */
            int nin = u->didx > u->widx ? u->didx + 1 : u->widx + 1;
            BA_TRY(def->forward(n, in, nin, out, n->nout, err));
            double ss = 0;
            const float *y = out[0]->data;
            for (int64_t e = 0; e < out[0]->numel; e++) ss += (double)y[e] * y[e];
            u->direct[k] += ss;
            for (int j = 0; j < n->nout; j++) {
                ba_tensor_unref(out[j]);
                out[j] = NULL;
            }
        }
        return BA_OK;
    }
    if (x->dtype != BA_DT_F32)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "node %s: act estimator needs a float32 input", n->name);
    const float *xd = x->data;
    if (u->mode == USE_ROWS) {
        if (x->ndim < 1 || x->shape[x->ndim - 1] != u->K)
            return ba_error_set(err, BA_ERR_INPUT, "node %s: input's last axis is not %lld", n->name,
                                (long long)u->K);
        add_gram(u->sigma, s->tmp, u->K, xd, u->K, x->numel / u->K, 1);
        return BA_OK;
    }
    /* Conv: X (N, C, *sp), W (M, C/g, *k) */
    const ba_tensor_t *w = u->wfp;
    int nsp = w->ndim - 2;
    if (x->ndim != w->ndim)
        return ba_error_set(err, BA_ERR_INPUT, "node %s: input rank does not match the weight", n->name);
    ba_kern_geom_t g;
    BA_TRY(ba_kern_geom_make(n, nsp, x->shape + 2, w->shape + 2, 0, &g, err));
    int64_t N = x->shape[0], C = x->shape[1], Kk = g.k[0] * g.k[1] * g.k[2];
    int64_t P = g.out[0] * g.out[1] * g.out[2], Pin = g.in[0] * g.in[1] * g.in[2];
    int64_t Cg = C / u->groups;
    if (Cg * Kk != u->K)
        return ba_error_set(err, BA_ERR_INPUT, "node %s: input channels do not fit the weight", n->name);
    int64_t rows = C * Kk;
    int64_t chunk = ACT_COLS_BUDGET / (rows * P > 0 ? rows * P : 1);
    if (chunk < 1) chunk = 1;
    if (chunk > N) chunk = N;
    if (rows * P * chunk > s->cols_cap) {
        free(s->cols);
        s->cols_cap = rows * P * chunk;
        if (!(s->cols = ba_malloc((size_t)s->cols_cap * sizeof(float), err))) {
            s->cols_cap = 0;
            return BA_ERR_NOMEM;
        }
    }
    for (int64_t i0 = 0; i0 < N; i0 += chunk) {
        int64_t nb = N - i0 < chunk ? N - i0 : chunk;
        int64_t ld = nb * P;
        for (int64_t i = 0; i < nb; i++) ba_kern_im2col(xd + (i0 + i) * C * Pin, C, &g, s->cols + i * P, ld);
        for (int64_t gi = 0; gi < u->groups; gi++)
            add_gram(u->sigma + gi * u->K * u->K, s->tmp, u->K, s->cols + gi * u->K * ld, ld, ld, 0);
    }
    return BA_OK;
}

/* Counts x for use u, or holds it until u's node has run when the node is in
 * an If branch (a branch not taken adds nothing). */
static ba_status take_input(act_state_t *s, act_use_t *u, const ba_tensor_t *x, ba_error *err) {
    if (s->c->m->nodes[u->node].guard < 0) return accumulate(s, u, x, err);
    ba_tensor_unref(u->pending);
    u->pending = ba_tensor_ref((ba_tensor_t *)x);
    return BA_OK;
}

static ba_status on_value(void *ctx, const ba_model_t *m, int id, ba_tensor_t **t, ba_error *err) {
    act_state_t *s = ctx;
    (void)m;
    for (int i = 0; i < s->nu; i++) {
        const ba_node_t *n = &s->c->m->nodes[s->u[i].node];
        if (n->inputs[s->u[i].didx] == id) BA_TRY(take_input(s, &s->u[i], *t, err));
        if (s->u[i].pending && n->outputs[0] == id) { /* the branch ran */
            ba_status st = accumulate(s, &s->u[i], s->u[i].pending, err);
            ba_tensor_unref(s->u[i].pending);
            s->u[i].pending = NULL;
            BA_TRY(st);
        }
    }
    return BA_OK;
}

/* tr(Δ Σ Δᵀ) for one use and width: Δ rows are δ_r (R × K) per group. */
static ba_status sigma_cost(const act_use_t *u, const ba_tensor_t *dw, double *out, ba_error *err) {
    int64_t K = u->K, R = dw->numel / K / u->groups;
    double *d = ba_malloc((size_t)(R * K) * sizeof(double), err);
    double *tm = ba_malloc((size_t)(R * K) * sizeof(double), err);
    if (!d || !tm) {
        free(d);
        free(tm);
        return BA_ERR_NOMEM;
    }
    const float *w = dw->data;
    double total = 0;
    for (int64_t g = 0; g < u->groups; g++) {
        for (int64_t r = 0; r < R; r++)
            for (int64_t j = 0; j < K; j++)
                d[r * K + j] = u->cols_are_rows ? w[j * R + r] : w[(g * R + r) * K + j];
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)K, (int)K, 1.0, d, (int)K,
                    u->sigma + g * K * K, (int)K, 0.0, tm, (int)K);
        for (int64_t e = 0; e < R * K; e++) total += tm[e] * d[e];
    }
    free(d);
    free(tm);
    *out = total * u->alpha2;
    return BA_OK;
}

ba_status sens_act(sens_ctx_t *c, ba_error *err) {
    const ba_model_t *m = c->m;
    act_state_t s;
    memset(&s, 0, sizeof s);
    s.c = c;
    ba_tensor_t **inputs = ba_calloc((size_t)m->ninputs + 1, sizeof *inputs, err);
    ba_tensor_t **outs = ba_calloc((size_t)m->noutputs + 1, sizeof *outs, err);
    ba_status st = (inputs && outs) ? BA_OK : BA_ERR_NOMEM;
    if (st == BA_OK) st = find_uses(&s, err);
    if (st == BA_OK) st = consumed_weights(&s, err);
    if (st == BA_OK) st = plan_uses(&s, err);
    int64_t nbatch = sens_nbatch(c);
    c->work_total = (uint64_t)nbatch;
    for (int64_t b = 0; b < nbatch && st == BA_OK; b++) {
        st = sens_batch_inputs(c, b * c->batch, sens_batch_len(c, b), inputs, err);
        /* uses reading a graph input or a constant directly */
        for (int i = 0; i < s.nu && st == BA_OK; i++) {
            int id = m->nodes[s.u[i].node].inputs[s.u[i].didx];
            const ba_tensor_t *x = NULL;
            for (int k = 0; k < m->ninputs; k++)
                if (m->inputs[k] == id) x = inputs[k];
            if (!x && m->values[id].constant) x = m->values[id].constant;
            if (x) st = take_input(&s, &s.u[i], x, err);
        }
        ba_run_opts_t ro = {.on_value = on_value, .ctx = &s};
        if (st == BA_OK) st = ba_model_run(m, inputs, &ro, outs, err);
        for (int i = 0; i < s.nu; i++) { /* nodes of branches not taken */
            ba_tensor_unref(s.u[i].pending);
            s.u[i].pending = NULL;
        }
        for (int o = 0; o < m->noutputs; o++) {
            ba_tensor_unref(outs[o]);
            outs[o] = NULL;
        }
        sens_inputs_free(c, inputs);
        sens_progress(c, 1);
    }
    for (int i = 0; i < s.nu && st == BA_OK; i++) {
        act_use_t *u = &s.u[i];
        for (int k = 0; k < c->nbits && st == BA_OK; k++) {
            double v = u->direct[k];
            if (u->mode != USE_DIRECT) st = sigma_cost(u, u->dw[k], &v, err);
            c->cost[(size_t)u->layer * c->nbits + k] += v / (double)c->n;
        }
    }
    for (int i = 0; i < s.nu; i++) {
        free(s.u[i].sigma);
        ba_tensor_unref(s.u[i].wfp);
        for (int k = 0; k <= BA_SENS_MAX_BITS; k++) ba_tensor_unref(s.u[i].dw[k]);
    }
    free(s.u);
    free(s.tmp);
    free(s.cols);
    free(inputs);
    free(outs);
    return st;
}
