/* Estimators that need gradients (model/grad.h): `fisher` (empirical Fisher
 * diagonal from per-sample squared gradients), `hessian` (the trace of each
 * layer's Hessian block, HAWQ-V2/V3: its Gauss-Newton part exactly, the rest by
 * Hutchinson). The loss is the mean over the used samples (SPEC §5); a batch's
 * gradient is weighted by its share of the samples. `lrp` lives in lrp.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "eval/evaluate.h"
#include "model/grad.h"
#include "sensitivity/sens_internal.h"

/* Hutchinson stops on --tol only after this many probes (SPEC §5): the
 * standard error of the first few probes is itself too noisy to trust. */
#define HUTCH_MIN_PROBES 8
/* The hessian estimator keeps one gradient session (every activation of a
 * batch) per batch for all its probes when they fit in this many bytes;
 * otherwise each probe re-runs each batch's forward. */
#define SESSION_KEEP_BYTES (1LL << 30)

typedef struct grad_run {
    sens_ctx_t *c;
    ba_loss_spec_t spec;
    ba_sens_loss_t kind; /* resolved CE / MSE */
    int use_labels;
    ba_tensor_t **inputs, **outs;
    int *req; /* layer value ids */
} grad_run_t;

/* The loss the objective stands for when --loss is not given: with labels, CE;
 * else CE on the FP argmax when the objective (--metric, or the default for the
 * output, SPEC §8: decided on the first batch's FP output) compares classes
 * (kl, top1), MSE to the FP output otherwise (an embedding, a probability map,
 * a regression). One rule for what a class output is: ba_output_default_metric. */
static ba_status auto_loss(sens_ctx_t *c, ba_sens_loss_t *out, ba_error *err) {
    if (c->labels) {
        *out = BA_SENS_LOSS_CE;
        return BA_OK;
    }
    const ba_model_t *m = c->m;
    ba_metric_t mt = c->o->metric;
    ba_status st = BA_OK;
    if (mt != BA_METRIC_KL && mt != BA_METRIC_TOP1 && mt != BA_METRIC_MSE && mt != BA_METRIC_RELMSE &&
        mt != BA_METRIC_SQNR && mt != BA_METRIC_COSINE) {
        ba_tensor_t **in = ba_calloc((size_t)m->ninputs + 1, sizeof *in, err);
        ba_tensor_t **outs = ba_calloc((size_t)m->noutputs + 1, sizeof *outs, err);
        st = in && outs ? sens_batch_inputs(c, 0, sens_batch_len(c, 0), in, err) : BA_ERR_NOMEM;
        if (st == BA_OK) st = ba_model_run(m, in, NULL, outs, err);
        if (st == BA_OK) st = ba_output_default_metric(m, outs[0], &mt, err);
        if (in) sens_inputs_free(c, in);
        for (int o = 0; outs && o < m->noutputs; o++) ba_tensor_unref(outs[o]);
        free(in);
        free(outs);
    }
    *out = mt == BA_METRIC_KL || mt == BA_METRIC_TOP1 ? BA_SENS_LOSS_CE : BA_SENS_LOSS_MSE;
    return st;
}

/* Resolves the loss of SPEC §5: --loss, else auto_loss. */
static ba_status resolve_loss(grad_run_t *g, ba_error *err) {
    sens_ctx_t *c = g->c;
    const ba_value_t *ov = &c->m->values[c->m->outputs[0]];
    int64_t last = ov->ndim >= 1 ? ov->shape[ov->ndim - 1] : -1;
    ba_sens_loss_t k = c->o->loss;
    if (k == BA_SENS_LOSS_AUTO) {
        BA_TRY(auto_loss(c, &k, err));
        if (k == BA_SENS_LOSS_CE && last == 1 && !c->labels) k = BA_SENS_LOSS_MSE; /* top1 of one score */
    }
    if (k == BA_SENS_LOSS_CE && last == 1)
        return ba_error_set(err, BA_ERR_INPUT,
                            "--loss ce: output '%s' has one score per row, not class scores (use --loss mse)",
                            ov->name);
    g->kind = k;
    g->use_labels = k == BA_SENS_LOSS_CE && c->labels;
    c->loss_name = k == BA_SENS_LOSS_CE ? "ce" : "mse";
    /* what the sessions will read (model/grad.h: CE on an output Softmax's logits) */
    int on_logits = 0;
    ba_grad_loss_value(c->m, k == BA_SENS_LOSS_CE ? BA_LOSS_CE : BA_LOSS_MSE, 0, NULL, &on_logits);
    c->loss_on = on_logits ? "logits" : "output";
    return BA_OK;
}

static ba_status grad_run_init(grad_run_t *g, sens_ctx_t *c, ba_error *err) {
    memset(g, 0, sizeof *g);
    g->c = c;
    const ba_model_t *m = c->m;
    g->inputs = ba_calloc((size_t)m->ninputs + 1, sizeof *g->inputs, err);
    g->outs = ba_calloc((size_t)m->noutputs + 1, sizeof *g->outs, err);
    g->req = ba_calloc((size_t)m->nlayers, sizeof *g->req, err);
    if (!g->inputs || !g->outs || !g->req) return BA_ERR_NOMEM;
    for (int l = 0; l < m->nlayers; l++) g->req[l] = m->layers[l].value;
    return resolve_loss(g, err);
}

static void grad_run_free(grad_run_t *g) {
    if (!g->c) return;
    if (g->inputs) sens_inputs_free(g->c, g->inputs);
    for (int o = 0; g->outs && o < g->c->m->noutputs; o++) ba_tensor_unref(g->outs[o]);
    free(g->inputs);
    free(g->outs);
    free(g->req);
}

/* Loads batch b into inputs and fills spec, its loss (MSE needs the FP output,
 * run into outs, as reference). */
static ba_status batch_loss(const grad_run_t *g, int64_t b, ba_tensor_t **inputs, ba_tensor_t **outs,
                            ba_loss_spec_t *spec, ba_error *err) {
    sens_ctx_t *c = g->c;
    int64_t start = b * c->batch, count = sens_batch_len(c, b);
    BA_TRY(sens_batch_inputs(c, start, count, inputs, err));
    memset(spec, 0, sizeof *spec);
    if (g->kind == BA_SENS_LOSS_MSE) {
        spec->kind = BA_LOSS_MSE;
        BA_TRY(ba_model_run(c->m, inputs, NULL, outs, err));
        spec->ref = outs[0];
    } else if (g->use_labels) {
        spec->kind = BA_LOSS_CE;
        spec->labels = c->labels + start;
        spec->nlabels = count;
    } else {
        spec->kind = BA_LOSS_CE_ARGMAX;
    }
    return BA_OK;
}

/* Loads batch b and fills the loss spec for it (MSE needs the FP output as reference). */
static ba_status grad_batch(grad_run_t *g, int64_t b, ba_error *err) {
    sens_ctx_t *c = g->c;
    sens_inputs_free(c, g->inputs);
    for (int o = 0; o < c->m->noutputs; o++) {
        ba_tensor_unref(g->outs[o]);
        g->outs[o] = NULL;
    }
    return batch_loss(g, b, g->inputs, g->outs, &g->spec, err);
}

static ba_status weight_errors(sens_ctx_t *c, int l, double *werr, ba_error *err) {
    for (int k = 0; k < c->nbits; k++)
        BA_TRY(ba_sens_weight_error(c->m, l, c->bits[k], &c->o->quant, &werr[k], err));
    return BA_OK;
}

/* ---------------- fisher ---------------- */

ba_status sens_fisher(sens_ctx_t *c, ba_sens_table_t *t, ba_error *err) {
    const ba_model_t *m = c->m;
    int L = m->nlayers;
    grad_run_t g = {0};
    float **gs = ba_calloc((size_t)L, sizeof *gs, err);
    double **fs = ba_calloc((size_t)L, sizeof *fs, err);
    ba_status st = (gs && fs) ? grad_run_init(&g, c, err) : BA_ERR_NOMEM;
    for (int l = 0; l < L && st == BA_OK; l++) {
        gs[l] = ba_malloc((size_t)m->layers[l].params * sizeof(float), err);
        fs[l] = ba_calloc((size_t)m->layers[l].params, sizeof(double), err);
        if (!gs[l] || !fs[l]) st = BA_ERR_NOMEM;
    }
    int64_t nbatch = sens_nbatch(c);
    c->work_total = (uint64_t)nbatch;
    ba_grad_opts_t go = {.per_sample_sq = 1, .sample_axes = c->axes};
    for (int64_t b = 0; b < nbatch && st == BA_OK; b++) {
        st = grad_batch(&g, b, err);
        if (st == BA_OK) st = ba_grad_compute(m, g.inputs, &go, &g.spec, L, g.req, gs, NULL, err);
        for (int l = 0; l < L && st == BA_OK; l++)
            for (int64_t i = 0; i < m->layers[l].params; i++) fs[l][i] += gs[l][i];
        sens_progress(c, 1);
    }
    /* F = Σ_i g_i² / N; Ω(l,b) = Σ F_ii (Q_b(w)_i − w_i)²; s_l = Tr(F_l)/params_l */
    for (int l = 0; l < L && st == BA_OK; l++) {
        const ba_tensor_t *w = m->values[m->layers[l].value].constant;
        double tr = 0;
        for (int64_t i = 0; i < m->layers[l].params; i++) tr += fs[l][i] / (double)c->n;
        t->layers[l].score = tr / (double)m->layers[l].params;
        for (int k = 0; k < t->nbits && st == BA_OK; k++) {
            ba_qweight_t q;
            st = ba_quant_weight(w, m->layers[l].ch_axis, t->bits[k], &c->o->quant, &q, err);
            if (st != BA_OK) break;
            const float *fq = q.fq->data;
            double s = 0;
            for (int64_t i = 0; i < w->numel; i++) {
                double d = (double)fq[i] - ba_tensor_get_f64(w, i);
                s += fs[l][i] / (double)c->n * d * d;
            }
            t->layers[l].cost[k] = s;
            ba_qweight_free(&q);
        }
    }
    for (int l = 0; l < L; l++) {
        if (gs) free(gs[l]);
        if (fs) free(fs[l]);
    }
    free(gs);
    free(fs);
    grad_run_free(&g);
    return st;
}

/* ---------------- hessian ---------------- */

/* One batch's gradient session with what it reads (inputs, MSE reference). */
typedef struct batch_sess {
    ba_tensor_t **inputs, **outs;
    ba_loss_spec_t spec;
    ba_grad_session_t *s;
} batch_sess_t;

typedef struct sess_pool {
    grad_run_t *g;
    batch_sess_t *b;
    int64_t nbatch;
    int keep; /* -1: not known yet, 1: sessions stay for all probes, 0: rebuilt per use */
} sess_pool_t;

static void batch_sess_clear(sens_ctx_t *c, batch_sess_t *b) {
    ba_grad_session_free(b->s);
    b->s = NULL;
    if (b->inputs) sens_inputs_free(c, b->inputs);
    for (int o = 0; b->outs && o < c->m->noutputs; o++) {
        ba_tensor_unref(b->outs[o]);
        b->outs[o] = NULL;
    }
}

static void sess_pool_free(sess_pool_t *p) {
    for (int64_t i = 0; p->b && i < p->nbatch; i++) {
        batch_sess_clear(p->g->c, &p->b[i]);
        free(p->b[i].inputs);
        free(p->b[i].outs);
    }
    free(p->b);
}

/* The session of batch i (built on first use; see SESSION_KEEP_BYTES). */
static ba_status pool_get(sess_pool_t *p, int64_t i, ba_grad_session_t **out, ba_error *err) {
    batch_sess_t *b = &p->b[i];
    if (b->s) {
        *out = b->s;
        return BA_OK;
    }
    grad_run_t *g = p->g;
    sens_ctx_t *c = g->c;
    if (!b->inputs) {
        b->inputs = ba_calloc((size_t)c->m->ninputs + 1, sizeof *b->inputs, err);
        b->outs = ba_calloc((size_t)c->m->noutputs + 1, sizeof *b->outs, err);
        if (!b->inputs || !b->outs) return BA_ERR_NOMEM;
    }
    BA_TRY(batch_loss(g, i, b->inputs, b->outs, &b->spec, err));
    BA_TRY(ba_grad_session_new(c->m, b->inputs, NULL, &b->spec, &b->s, err));
    if (p->keep < 0) p->keep = ba_grad_session_bytes(b->s) * p->nbatch <= SESSION_KEEP_BYTES;
    *out = b->s;
    return BA_OK;
}

/* Drops batch i's session unless the pool keeps them. */
static void pool_release(sess_pool_t *p, int64_t i) {
    if (!p->keep) batch_sess_clear(p->g->c, &p->b[i]);
}

/* --probe per-layer: one Hutchinson sample per layer, x[l] = v_lᵀ H_ll v_l
 * (mean Tr(H_ll)), H the Hessian of the mean loss over all used samples: one
 * vᵀHv per layer per batch (no cross terms, L HVPs a probe). */
static ba_status probe_per_layer(sess_pool_t *p, float *const *v, double *x, ba_error *err) {
    sens_ctx_t *c = p->g->c;
    const ba_model_t *m = c->m;
    const int L = m->nlayers;
    for (int l = 0; l < L; l++) x[l] = 0.0;
    ba_status st = BA_OK;
    /* one probe for every batch: the table does not depend on how the samples
     * are batched (a probe per batch would lower the variance, but change
     * with the batch size) */
    for (int64_t b = 0; b < p->nbatch && st == BA_OK; b++) {
        /* a batch's loss is the mean over its rows: it weighs n_b/N in the mean over all */
        double w = (double)sens_batch_len(c, b) / (double)c->n;
        ba_grad_session_t *s = NULL;
        st = pool_get(p, b, &s, err);
        for (int l = 0; l < L && st == BA_OK; l++) {
            double q = 0.0;
            st = ba_grad_session_vhv(s, m->layers[l].value, v[l], &q, err);
            x[l] += w * q;
        }
        pool_release(p, b);
    }
    return st;
}

/* A layer whose trace is below this fraction of the largest layer's trace is
 * judged against that floor instead of its own (near-zero) trace: its cost
 * Ω = s·‖Q(W)−W‖² is then negligible beside the others', and a relative error
 * of a number near zero never settles (measured: a 54-layer OCR classifier ran
 * every layer to the probe cap for one layer with a trace ~1e-4 of the largest). */
#define HUTCH_NEGLIGIBLE 1e-2
/* The Gauss-Newton part of the trace is computed exactly when that costs at
 * most this many whole-batch backwards per batch (ba_grad_ggn_trace: the
 * factors of the loss's second derivative times the rows per sample), or at
 * most the probe cap when that is larger (the sampled estimate would spend up
 * to one backward a probe: measured on a 96-dimensional speech embedding, 16
 * samples, MSE: exact 19.8 s CPU, sampled 43.2 s at the 200-probe cap with a
 * 6% worst relative standard error); past it (many classes × many rows)
 * each probe adds one sampled term instead. */
#define GGN_EXACT_BACKWARDS 64

/* Whether layer l's estimate offset + mean(samples) has a standard error
 * <= tol times its magnitude, or times floor when that is larger. */
static int converged(double sum, double sum2, int64_t np, double offset, double tol, double floor) {
    if (np < 2) return 0;
    double n = (double)np, mean = sum / n, var = (sum2 - sum * mean) / (n - 1);
    double se = sqrt(var > 0 ? var : 0) / sqrt(n);
    return se <= tol * fmax(fabs(offset + mean), floor);
}

/* Exact Tr(G_ll) over all batches into tg (each batch weighted by its share
 * of the samples); *exact = 0 when a batch's would cost more than GGN_EXACT_BACKWARDS
 * and the probe cap. */
static ba_status ggn_exact(grad_run_t *g, double *tg, int *exact, ba_error *err) {
    sens_ctx_t *c = g->c;
    const int L = c->m->nlayers;
    double *tb = ba_calloc((size_t)L + 1, sizeof *tb, err);
    ba_status st = tb ? BA_OK : err->code;
    const int64_t max_backward =
        c->o->max_probes > GGN_EXACT_BACKWARDS ? c->o->max_probes : GGN_EXACT_BACKWARDS;
    *exact = st == BA_OK;
    for (int64_t b = 0; b < sens_nbatch(c) && st == BA_OK && *exact; b++) {
        double w = (double)sens_batch_len(c, b) / (double)c->n;
        st = grad_batch(g, b, err);
        if (st == BA_OK)
            st = ba_grad_ggn_trace(c->m, g->inputs, c->axes, &g->spec, L, g->req, max_backward, tb, exact,
                                   err);
        for (int l = 0; l < L && st == BA_OK && *exact; l++) tg[l] += w * tb[l];
    }
    if (!*exact)
        for (int l = 0; l < L; l++) tg[l] = 0.0;
    free(tb);
    return st;
}

/* Default probes (all layers at once), the Gauss-Newton split H = G + R:
 * x[l] = the probe's sample of Tr(H_ll) − tg[l]: v_lᵀ(R̃v)_l (see
 * ba_grad_session_resid_multi), plus a sampled ‖(Jᵀu)_l‖² when tg holds no
 * exact Gauss-Newton part. *resid: whether the residual is still probed
 * (cleared when no batch has a residual term on its path). */
static ba_status probe_split(sess_pool_t *p, int sampled, int *resid, ba_rng_t *urng, float *const *v,
                             double *r, double *x, ba_error *err) {
    sens_ctx_t *c = p->g->c;
    const int L = c->m->nlayers;
    for (int l = 0; l < L; l++) x[l] = 0.0;
    ba_status st = BA_OK;
    int64_t none = 0;
    for (int64_t b = 0; b < p->nbatch && st == BA_OK; b++) {
        double w = (double)sens_batch_len(c, b) / (double)c->n;
        ba_grad_session_t *s = NULL;
        st = pool_get(p, b, &s, err);
        if (st == BA_OK && sampled) {
            st = ba_grad_session_ggn_sample(s, urng, L, p->g->req, r, err);
            for (int l = 0; l < L && st == BA_OK; l++) x[l] += w * r[l];
        }
        if (st == BA_OK && *resid) {
            int zero = 0;
            st = ba_grad_session_resid_multi(s, L, p->g->req, (const float *const *)v, r, &zero, err);
            none += zero;
            for (int l = 0; l < L && st == BA_OK; l++) x[l] += w * r[l];
        }
        pool_release(p, b);
    }
    if (st == BA_OK && none == p->nbatch) *resid = 0;
    return st;
}

ba_status sens_hessian(sens_ctx_t *c, ba_sens_table_t *t, ba_error *err) {
    const ba_model_t *m = c->m;
    int L = m->nlayers;
    grad_run_t g = {0};
    float **v = ba_calloc((size_t)L, sizeof *v, err);
    double *sum = ba_calloc((size_t)L, sizeof *sum, err), *sum2 = ba_calloc((size_t)L, sizeof *sum2, err);
    double *xs = ba_calloc((size_t)L, sizeof *xs, err), *tg = ba_calloc((size_t)L, sizeof *tg, err);
    double *r = ba_calloc((size_t)L, sizeof *r, err);
    sess_pool_t pool = {.g = &g, .nbatch = sens_nbatch(c), .keep = -1};
    pool.b = ba_calloc((size_t)pool.nbatch + 1, sizeof *pool.b, err);
    const int per_layer = c->o->per_layer_probes;
    ba_status st = (v && sum && sum2 && xs && tg && r && pool.b) ? grad_run_init(&g, c, err) : BA_ERR_NOMEM;
    for (int l = 0; l < L && st == BA_OK; l++) {
        size_t n = (size_t)m->layers[l].params;
        if (!(v[l] = ba_malloc(n * sizeof(float), err))) st = BA_ERR_NOMEM;
    }
    /* The default splits H = G + R (G the generalised Gauss-Newton): Tr(G_ll)
     * exactly from per-sample backwards of the factors of ∇²_z loss (or sampled,
     * see GGN_EXACT_BACKWARDS), Tr(R_ll) by Hutchinson. MSE to the FP output has
     * dloss/dz = 0 at the base weights, so R = 0 there: no probes at all.
     * --probe per-layer keeps plain per-layer Hutchinson on H. */
    int exact = 0, resid = !per_layer && g.kind != BA_SENS_LOSS_MSE;
    if (st == BA_OK && !per_layer) st = ggn_exact(&g, tg, &exact, err);
    const int sampled = !per_layer && !exact;
    ba_rng_t rng, urng;
    ba_rng_seed(&rng, c->o->seed);
    ba_rng_seed(&urng, c->o->seed ^ 0x9e3779b97f4a7c15ull); /* the sampled Gauss-Newton's output signs */
    int maxp = c->o->max_probes, np = 0;
    c->work_total = (uint64_t)maxp;
    /* every layer takes every probe (a probe costs one HVP whichever layers
     * still need it), so the table does not depend on the order of stops */
    while (np < maxp && st == BA_OK && (per_layer || sampled || resid)) {
        for (int l = 0; l < L; l++)
            for (int64_t i = 0; i < m->layers[l].params; i++) v[l][i] = (float)ba_rng_rademacher(&rng);
        st = per_layer ? probe_per_layer(&pool, v, xs, err)
                       : probe_split(&pool, sampled, &resid, &urng, v, r, xs, err);
        if (st != BA_OK || !(per_layer || sampled || resid)) break; /* nothing random left: exact */
        np++;
        int all = np >= HUTCH_MIN_PROBES;
        double top = 0;
        for (int l = 0; l < L; l++) {
            sum[l] += xs[l];
            sum2[l] += xs[l] * xs[l];
            top = fmax(top, fabs(tg[l] + sum[l] / np));
        }
        for (int l = 0; l < L && all; l++)
            all = converged(sum[l], sum2[l], np, tg[l], c->o->tol, HUTCH_NEGLIGIBLE * top);
        sens_progress(c, 1);
        if (all) break;
    }
    for (int l = 0; l < L && st == BA_OK; l++) {
        double P = (double)m->layers[l].params, n = (double)np;
        ba_sens_layer_t *Lr = &t->layers[l];
        Lr->score = (tg[l] + (np ? sum[l] / n : 0.0)) / P;
        Lr->probes = np;
        if (np == 0) {
            Lr->se = 0.0; /* exact: Tr(G_ll) with no residual */
        } else if (np >= 2) {
            double var = (sum2[l] - sum[l] * sum[l] / n) / (n - 1);
            Lr->se = sqrt(var > 0 ? var : 0) / sqrt(n) / P;
        }
        if (!isfinite(Lr->score)) {
            st = ba_error_set(err, BA_ERR_INPUT,
                              "hessian: layer '%s': the trace is not finite (the loss's derivatives "
                              "overflow on this data)",
                              Lr->name);
            break;
        }
        double werr[BA_SENS_MAX_BITS + 1];
        st = weight_errors(c, l, werr, err);
        /* The Hessian of a loss at a trained point need not be positive definite,
         * and a Hutchinson mean of a flat layer can land below zero: the score
         * keeps the estimate, the cost takes max(score, 0) (a layer whose
         * measured curvature is negative costs nothing to quantize by this
         * model; a negative cost would pay the ILP to lower it further). */
        double curv = Lr->score > 0 ? Lr->score : 0;
        for (int k = 0; k < t->nbits && st == BA_OK; k++) Lr->cost[k] = curv * werr[k];
    }
    for (int l = 0; v && l < L; l++) free(v[l]);
    free(v);
    free(sum);
    free(sum2);
    free(xs);
    free(tg);
    free(r);
    if (pool.b) sess_pool_free(&pool);
    grad_run_free(&g);
    return st;
}
