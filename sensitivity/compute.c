/* ba_sens_compute: checks the inputs every estimator relies on (a layer to
 * score, finite weights and data, labels that fit), binds the calibration data
 * to the model's inputs, then dispatches to one estimator file. Also the
 * data-free `weight` estimator and the ‖Q_b(W)−W‖² helper the others share. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/evaluate.h"
#include "sensitivity/sens_internal.h"

void sens_progress(sens_ctx_t *c, uint64_t add) {
    c->work_done += add;
    if (c->o->progress) c->o->progress(c->o->progress_user, c->work_done, c->work_total);
}

ba_status ba_sens_weight_error(const ba_model_t *m, int layer, int bits, const ba_quant_cfg_t *cfg,
                               double *out, ba_error *err) {
    *out = 0;
    const ba_layer_t *L = &m->layers[layer];
    const ba_tensor_t *w = m->values[L->value].constant;
    if (!w) return ba_error_set(err, BA_ERR_RUNTIME, "layer %s: weight has no constant data", L->name);
    ba_qweight_t q;
    ba_status st = ba_quant_weight(w, L->ch_axis, bits, cfg, &q, err);
    if (st != BA_OK) return ba_error_prefix(err, "layer %s", L->name);
    const float *fq = q.fq->data;
    double s = 0;
    for (int64_t i = 0; i < w->numel; i++) {
        double d = (double)fq[i] - ba_tensor_get_f64(w, i);
        s += d * d;
    }
    ba_qweight_free(&q);
    *out = s;
    return BA_OK;
}

ba_status sens_weight(sens_ctx_t *c, ba_error *err) {
    const ba_model_t *m = c->m;
    c->work_total = (uint64_t)m->nlayers;
    for (int l = 0; l < m->nlayers; l++) {
        for (int k = 0; k < c->nbits; k++)
            BA_TRY(ba_sens_weight_error(m, l, c->bits[k], &c->o->quant, &c->cost[(size_t)l * c->nbits + k],
                                        err));
        sens_progress(c, 1);
    }
    return BA_OK;
}

/* ---------------- data binding ---------------- */

static ba_status check_finite_tensor(const ba_tensor_t *t, const char *what, ba_error *err) {
    if (!ba_dtype_is_float(t->dtype)) return BA_OK;
    for (int64_t i = 0; i < t->numel; i++) {
        double v = ba_tensor_get_f64(t, i);
        if (!isfinite(v))
            return ba_error_set(err, BA_ERR_INPUT, "%s: element %lld is %s (sensitivity needs finite values)",
                                what, (long long)i, isnan(v) ? "NaN" : "infinite");
    }
    return BA_OK;
}

static ba_status bind_data(sens_ctx_t *c, ba_error *err) {
    const ba_model_t *m = c->m;
    const ba_dataset_t *ds = c->ds;
    size_t nin = (size_t)(m->ninputs > 0 ? m->ninputs : 1);
    c->ds_idx = ba_calloc(nin, sizeof(int), err);
    c->axes = ba_calloc(nin, sizeof(int), err);
    if (!c->ds_idx || !c->axes) return BA_ERR_NOMEM;
    int64_t fixed = 0;
    BA_TRY(ba_eval_bind(m, ds, c->ds_idx, &fixed, err));
    for (int k = 0; k < m->ninputs; k++) c->axes[k] = ba_dataset_sample_axis(ds, c->ds_idx[k]);
    int64_t n = ba_dataset_samples(ds);
    if (c->o->max_data > 0 && c->o->max_data < n) n = c->o->max_data;
    /* A static batch dimension fixes the run size; otherwise the option. */
    int64_t batch = ba_eval_batch_size(fixed, c->o->batch);
    int static_batch = fixed > 0;
    if (n < batch && batch > 0) {
        if (static_batch)
            return ba_error_set(err, BA_ERR_INPUT,
                                "--data: %lld samples, fewer than the model's fixed batch size %lld",
                                (long long)n, (long long)batch);
        batch = n;
    }
    if (n <= 0) return ba_error_set(err, BA_ERR_INPUT, "--data: no samples");
    /* A fixed batch size cannot take a short tail: whole batches only. With a
     * dynamic batch axis every sample is used, the last batch possibly short. */
    c->n = static_batch ? n - n % batch : n;
    c->batch = batch; /* the data is finite: ba_dataset_load refuses NaN/Inf */
    return BA_OK;
}

int64_t sens_nbatch(const sens_ctx_t *c) {
    return c->batch > 0 ? (c->n + c->batch - 1) / c->batch : 0;
}

int64_t sens_batch_len(const sens_ctx_t *c, int64_t b) {
    int64_t left = c->n - b * c->batch;
    return left < c->batch ? left : c->batch;
}

ba_status sens_batch_inputs(const sens_ctx_t *c, int64_t start, int64_t count, ba_tensor_t **inputs,
                            ba_error *err) {
    const ba_model_t *m = c->m;
    /* The evaluator's batching (no padding: whole batches of a fixed batch size only). */
    BA_TRY(ba_eval_batch_inputs(m, c->ds, c->ds_idx, start, count, 0, inputs, err));
    /* Float data of another width feeds a float32 input as float32 (the gradients are float32). */
    for (int k = 0; k < m->ninputs; k++) {
        ba_tensor_t *t = inputs[k];
        if (m->values[m->inputs[k]].dtype != BA_DT_F32 || t->dtype == BA_DT_F32 ||
            !ba_dtype_is_float(t->dtype))
            continue;
        ba_tensor_t *f = ba_tensor_cast(t, BA_DT_F32, err);
        if (!f) {
            sens_inputs_free(c, inputs);
            return err->code;
        }
        ba_tensor_unref(t);
        inputs[k] = f;
    }
    return BA_OK;
}

void sens_inputs_free(const sens_ctx_t *c, ba_tensor_t **inputs) {
    for (int k = 0; k < c->m->ninputs; k++) {
        ba_tensor_unref(inputs[k]);
        inputs[k] = NULL;
    }
}

/* Labels must cover the samples used and name classes of the output. */
static ba_status check_labels(const sens_ctx_t *c, int64_t nlabels, ba_error *err) {
    const ba_model_t *m = c->m;
    int64_t total = ba_dataset_samples(c->ds);
    if (nlabels != total)
        return ba_error_set(err, BA_ERR_INPUT, "--labels: %lld labels for %lld data samples",
                            (long long)nlabels, (long long)total);
    const ba_value_t *ov = &m->values[m->outputs[0]];
    int64_t classes = ov->ndim >= 1 ? ov->shape[ov->ndim - 1] : -1;
    for (int64_t i = 0; i < nlabels; i++) {
        if (c->labels[i] < 0 || (classes > 0 && c->labels[i] >= classes))
            return ba_error_set(
                err, BA_ERR_INPUT,
                "--labels: label %lld of sample %lld is outside 0..%lld (classes of output '%s')",
                (long long)c->labels[i], (long long)i, (long long)(classes - 1), ov->name);
    }
    return BA_OK;
}

ba_status ba_sens_compute(const ba_model_t *m, const ba_dataset_t *ds, const int64_t *labels, int64_t nlabels,
                          ba_sens_method_t method, const ba_sens_opts_t *opts, ba_sens_table_t **out,
                          ba_error *err) {
    *out = NULL;
    ba_sens_opts_t dflt = ba_sens_opts_default();
    if (!opts) opts = &dflt;
    if (m->nlayers == 0)
        return ba_error_set(
            err, BA_ERR_INPUT,
            "%s: no quantizable layer (constant Conv/ConvTranspose/Gemm/MatMul weight of rank >= 2)",
            m->path);
    if (method < BA_SENS_HESSIAN || method > BA_SENS_MEASURED)
        return ba_error_set(err, BA_ERR_INPUT, "sensitivity: unknown method %d", (int)method);
    if (!(opts->tol >= 0) || !isfinite(opts->tol))
        return ba_error_set(err, BA_ERR_INPUT, "--tol: must be a finite number >= 0");
    if (opts->max_probes < 1 && (method == BA_SENS_HESSIAN))
        return ba_error_set(err, BA_ERR_INPUT, "--samples: at least 1 probe");
    for (int l = 0; l < m->nlayers; l++) {
        const ba_tensor_t *w = m->values[m->layers[l].value].constant;
        char what[256];
        snprintf(what, sizeof what, "%s: layer %s", m->path, m->layers[l].name);
        if (!w) return ba_error_set(err, BA_ERR_INPUT, "%s: weight has no constant data", what);
        BA_TRY(check_finite_tensor(w, what, err));
    }
    sens_ctx_t c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.ds = ds;
    c.o = opts;
    ba_sens_table_t *t = NULL;
    ba_status st = sens_table_new(m, opts->bits, opts->nbits, ba_sens_method_name(method), &t, err);
    if (st != BA_OK) return st;
    memcpy(c.bits, t->bits, sizeof t->bits);
    c.nbits = t->nbits;
    c.k_ref = ba_sens_bits_index(t, BA_SENS_REF_BITS);
    if (c.k_ref < 0) {
        c.k_ref = c.nbits;
        c.bits[c.nbits++] = BA_SENS_REF_BITS;
    }
    c.cost = ba_calloc((size_t)m->nlayers * (size_t)c.nbits, sizeof(double), err);
    if (!c.cost) st = BA_ERR_NOMEM;
    /* act and lrp measure the activations a weight multiplies; an LSTM/GRU's R
     * multiplies the hidden state inside the op, which neither of them sees. */
    for (int l = 0; l < m->nlayers && st == BA_OK && (method == BA_SENS_ACT || method == BA_SENS_LRP); l++)
        if (ba_op_is_recurrent(m->layers[l].op))
            st = ba_error_set(err, BA_ERR_UNSUPPORTED,
                              "the %s estimator: layer %s (%s node %s): recurrent weights are not covered; "
                              "use hessian, fisher, weight or measured",
                              ba_sens_method_name(method), m->layers[l].name, m->layers[l].op,
                              m->nodes[m->layers[l].node].name);
    if (st == BA_OK && ba_sens_method_needs_data(method)) {
        if (!ds)
            st = ba_error_set(err, BA_ERR_INPUT, "--data: required by the '%s' estimator",
                              ba_sens_method_name(method));
        if (st == BA_OK) st = bind_data(&c, err);
        if (st == BA_OK && labels) {
            c.labels = labels;
            st = check_labels(&c, nlabels, err);
        }
        if (st == BA_OK) st = ba_wcache_new(m, &opts->quant, &c.wc, err);
        t->samples = c.n;
    }
    if (st == BA_OK) {
        switch (method) {
        case BA_SENS_WEIGHT: st = sens_weight(&c, err); break;
        case BA_SENS_ACT: st = sens_act(&c, err); break;
        case BA_SENS_MEASURED: st = sens_measured(&c, err); break;
        case BA_SENS_FISHER: st = sens_fisher(&c, t, err); break;
        case BA_SENS_HESSIAN: st = sens_hessian(&c, t, err); break;
        case BA_SENS_LRP: st = sens_lrp(&c, t, err); break;
        }
    }
    if (st == BA_OK && (method == BA_SENS_WEIGHT || method == BA_SENS_ACT || method == BA_SENS_MEASURED))
        for (int l = 0; l < m->nlayers; l++) {
            for (int k = 0; k < t->nbits; k++) t->layers[l].cost[k] = c.cost[(size_t)l * c.nbits + k];
            t->layers[l].score = c.cost[(size_t)l * c.nbits + c.k_ref] / (double)m->layers[l].params;
        }
    if (st == BA_OK && c.loss_name) {
        free(t->loss);
        t->loss = ba_strdup(c.loss_name, err);
        if (!t->loss) st = BA_ERR_NOMEM;
    }
    if (st == BA_OK && c.loss_on) {
        free(t->loss_on);
        t->loss_on = ba_strdup(c.loss_on, err);
        if (!t->loss_on) st = BA_ERR_NOMEM;
    }
    ba_wcache_free(c.wc);
    free(c.cost);
    free(c.ds_idx);
    free(c.axes);
    if (st != BA_OK) {
        ba_sens_table_free(t);
        return st;
    }
    *out = t;
    return BA_OK;
}
