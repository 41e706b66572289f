/* The evaluator: binds dataset inputs to graph inputs, runs the FP model once
 * and keeps its first output, then scores quantized variants batch by batch
 * against that cache. A static batch axis (batch-1 exports) is honoured by
 * passing that many samples at a time, zero-padding the last pass and
 * dropping the padded rows (samples are independent in inference graphs). */
#include "eval/evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/reuse.h"

struct ba_evaluator {
    const ba_model_t *m;
    const ba_dataset_t *ds;
    int *idx;             /* per model input: dataset index */
    int64_t n;            /* samples cached */
    int64_t batch;        /* samples per pass */
    int64_t static_batch; /* > 0: the inputs' first axis is fixed to this */
    int64_t *labels;      /* n labels, or NULL */
    ba_tensor_t *fp;      /* [n, ...] first output of the FP model */
    int64_t row_elems;    /* elements of one sample's output */
    int is_prob;
};

static const char *input_name(const ba_model_t *m, int k) {
    return m->values[m->inputs[k]].name;
}

/* Checks one bound input: rank, every dimension but the sample axis, dtype; a
 * constant (axis -1) feeds the whole input, so it must fit the declared shape. */
static ba_status bind_check(const ba_model_t *m, const ba_dataset_t *ds, int k, int d, int64_t *static_batch,
                            ba_error *err) {
    const ba_value_t *v = &m->values[m->inputs[k]];
    const ba_tensor_t *t = ba_dataset_tensor(ds, d);
    const char *path = ba_dataset_path(ds, d);
    int axis = ba_dataset_sample_axis(ds, d);
    char a[160], b[160];
    int ones = 1; /* a 0-d constant also feeds a fixed shape of one element, [1] or [1, 1] … */
    for (int i = 0; i < v->ndim; i++) ones &= v->shape[i] == 1;
    if (axis < 0 && !ones)
        return ba_error_set(err, BA_ERR_INPUT,
                            "--data %s: input '%s' is a constant (0-d, fed with every sample) but the model "
                            "wants shape %s: give a file with a sample axis instead",
                            path, v->name, ba_shape_str(v->ndim, v->shape, b, sizeof b));
    if (axis >= 0) { /* a constant is fed whole: only its type is checked */
        if (v->ndim >= 0 && t->ndim != v->ndim)
            return ba_error_set(
                err, BA_ERR_INPUT,
                "--data %s: input '%s': data has shape %s (rank %d), the model wants rank %d %s "
                "(samples along axis %d)",
                path, v->name, ba_shape_str(t->ndim, t->shape, a, sizeof a), t->ndim, v->ndim,
                ba_shape_str(v->ndim, v->shape, b, sizeof b), axis);
        for (int i = 0; v->ndim >= 0 && i < v->ndim; i++)
            if (i != axis && v->shape[i] >= 0 && v->shape[i] != t->shape[i])
                return ba_error_set(
                    err, BA_ERR_INPUT,
                    "--data %s: input '%s': data shape %s does not match the model's %s (axis "
                    "%d; samples along axis %d%s)",
                    path, v->name, ba_shape_str(t->ndim, t->shape, a, sizeof a),
                    ba_shape_str(v->ndim, v->shape, b, sizeof b), i, axis,
                    axis == 0 ? ": --sample-axis NAME=K picks another" : "");
        if (v->ndim > axis && v->shape[axis] > 0) {
            if (*static_batch && *static_batch != v->shape[axis])
                return ba_error_set(err, BA_ERR_UNSUPPORTED,
                                    "%s: inputs fix different batch sizes (%lld and %lld)", m->path,
                                    (long long)*static_batch, (long long)v->shape[axis]);
            *static_batch = v->shape[axis];
        }
    }
    int want_float = v->dtype == BA_DT_F32 || v->dtype == BA_DT_UNDEFINED;
    if (want_float && t->dtype != BA_DT_F32 && t->dtype != BA_DT_F64)
        return ba_error_set(err, BA_ERR_INPUT, "--data %s: input '%s': data is %s, the model wants float32",
                            path, v->name, ba_dtype_name(t->dtype));
    if (!want_float && v->dtype != t->dtype)
        return ba_error_set(err, BA_ERR_INPUT, "--data %s: input '%s': data is %s, the model wants %s", path,
                            v->name, ba_dtype_name(t->dtype), ba_dtype_name(v->dtype));
    return BA_OK;
}

ba_status ba_eval_data_load(const ba_model_t *m, const char *const *specs, int nspecs,
                            const char *const *axes, int naxes, ba_dataset_t **out, ba_error *err) {
    *out = NULL;
    const char **names = ba_calloc((size_t)m->ninputs + 1, sizeof *names, err);
    if (!names) return err->code;
    for (int k = 0; k < m->ninputs; k++) names[k] = input_name(m, k);
    ba_status st = ba_dataset_load_axes_for(specs, nspecs, axes, naxes, names, m->ninputs, out, err);
    free(names);
    return st;
}

ba_status ba_eval_bind(const ba_model_t *m, const ba_dataset_t *ds, int *idx, int64_t *static_batch,
                       ba_error *err) {
    *static_batch = 0;
    int nd = ba_dataset_count(ds);
    if (m->ninputs == 0)
        return ba_error_set(err, BA_ERR_INPUT, "%s: the model has no input that takes data", m->path);
    if (nd == 1 && !ba_dataset_name(ds, 0)) {
        if (m->ninputs != 1)
            return ba_error_set(
                err, BA_ERR_INPUT,
                "--data: %s has %d inputs ('%s', …): give --data NAME=FILE.npy for each, or an .npz", m->path,
                m->ninputs, input_name(m, 0));
        idx[0] = 0;
    } else {
        for (int k = 0; k < m->ninputs; k++) {
            idx[k] = ba_dataset_find(ds, input_name(m, k));
            if (idx[k] < 0)
                return ba_error_set(
                    err, BA_ERR_INPUT,
                    "model input '%s' has no data: give --data %s=FILE.npy (or %s=TYPE:VALUE for "
                    "a constant)",
                    input_name(m, k), input_name(m, k), input_name(m, k));
        }
        for (int d = 0; d < nd; d++) {
            int used = 0;
            for (int k = 0; k < m->ninputs; k++) used |= idx[k] == d;
            if (!used)
                return ba_error_set(err, BA_ERR_INPUT, "--data %s: the model has no input named '%s'",
                                    ba_dataset_path(ds, d),
                                    ba_dataset_name(ds, d) ? ba_dataset_name(ds, d) : "");
        }
    }
    for (int k = 0; k < m->ninputs; k++) BA_TRY(bind_check(m, ds, k, idx[k], static_batch, err));
    return BA_OK;
}

ba_status ba_eval_resolve_costs(ba_model_t *m, const ba_dataset_t *ds, const char *const *shape_specs,
                                int nspecs, ba_error *err) {
    int n = m->ninputs;
    int64_t *shapes = ba_calloc((size_t)n * BA_MAX_DIMS + 1, sizeof(int64_t), err);
    int *idx = ba_calloc((size_t)n + 1, sizeof(int), err);
    unsigned char *given = ba_calloc((size_t)n + 1, 1, err);
    ba_tensor_t **data = ba_calloc((size_t)n + 1, sizeof *data, err);
    ba_status st = shapes && idx && given && data ? BA_OK : BA_ERR_NOMEM;
    for (int i = 0; st == BA_OK && i < nspecs; i++) {
        int k;
        int64_t s[BA_MAX_DIMS];
        st = ba_model_input_shape_spec(m, shape_specs[i], &k, s, err);
        if (st == BA_OK) {
            memcpy(shapes + (size_t)k * BA_MAX_DIMS, s, sizeof s);
            given[k] = 1;
        }
    }
    if (st == BA_OK && ds) {
        int64_t sb;
        st = ba_eval_bind(m, ds, idx, &sb, err);
        for (int k = 0; st == BA_OK && k < n; k++) {
            if (given[k]) continue;
            const ba_tensor_t *t = ba_dataset_tensor(ds, idx[k]);
            const ba_value_t *v = &m->values[m->inputs[k]];
            int64_t *sk = shapes + (size_t)k * BA_MAX_DIMS;
            int ax = ba_dataset_sample_axis(ds, idx[k]);
            given[k] = 1;
            if (ax < 0) { /* a constant, fed whole (a 0-d one takes a [1, …, 1] input's shape) */
                st = ba_dataset_batch(ds, 0, 1, idx[k], &data[k], err);
                if (st == BA_OK) st = ba_eval_feed_const(m, k, &data[k], err);
                if (st == BA_OK) st = ba_model_sample_shape(m, k, -1, data[k]->ndim, data[k]->shape, sk, err);
                if (st == BA_OK && v->ndim >= 0 && data[k]->ndim != v->ndim)
                    st = ba_error_set(err, BA_ERR_INPUT,
                                      "%s: input '%s': constant of rank %d for an input of rank %d", m->path,
                                      v->name, data[k]->ndim, v->ndim);
                if (st != BA_OK) ba_error_prefix(err, "--data %s", ba_dataset_path(ds, idx[k]));
                continue;
            }
            st = ba_model_sample_shape(m, k, ax, t->ndim, t->shape, sk, err);
            if (st != BA_OK) ba_error_prefix(err, "--data %s", ba_dataset_path(ds, idx[k]));
            /* the first sample(s) themselves, so data-dependent ops see real values */
            if (st == BA_OK && ax < t->ndim && sk[ax] <= t->shape[ax])
                st = ba_dataset_batch(ds, 0, sk[ax], idx[k], &data[k], err);
        }
    }
    for (int k = 0; st == BA_OK && k < n; k++) {
        if (given[k]) continue;
        const ba_value_t *v = &m->values[m->inputs[k]];
        char b[160];
        int dyn = v->ndim < 0;
        for (int d = 1; d < v->ndim; d++) dyn |= v->shape[d] < 0;
        if (dyn)
            st =
                ba_error_set(err, BA_ERR_INPUT,
                             "%s: input '%s' %s has dynamic dimensions: give --data or --input-shape %s=DIMS",
                             m->path, v->name, ba_value_shape_str(v, b, sizeof b), v->name);
        else {
            int64_t s[BA_MAX_DIMS];
            memcpy(s, v->shape, sizeof s);
            if (v->ndim >= 1 && s[0] < 0) s[0] = 1;
            st = ba_model_sample_shape(m, k, v->ndim >= 1 ? 0 : -1, v->ndim, s,
                                       shapes + (size_t)k * BA_MAX_DIMS, err);
        }
    }
    /* costs already resolved at these shapes (at load, or before): nothing to run */
    int same = st == BA_OK && m->cost_shapes &&
               memcmp(m->cost_shapes, shapes, sizeof(int64_t) * (size_t)n * BA_MAX_DIMS) == 0;
    if (st == BA_OK && !same) st = ba_model_costs_at(m, shapes, data, err);
    for (int k = 0; k < n && data; k++) ba_tensor_unref(data[k]);
    free(data);
    free(shapes);
    free(idx);
    free(given);
    return st;
}

ba_status ba_eval_feed_const(const ba_model_t *m, int k, ba_tensor_t **t, ba_error *err) {
    const ba_value_t *v = &m->values[m->inputs[k]];
    if ((*t)->ndim != 0 || v->ndim <= 0) return BA_OK;
    ba_tensor_t *r = ba_tensor_view(*t, v->ndim, v->shape, err);
    if (!r) return err->code;
    ba_tensor_unref(*t);
    *t = r;
    return BA_OK;
}

/* src zero-padded along axis to len entries (len >= src's). */
static ba_tensor_t *pad_axis(const ba_tensor_t *src, int axis, int64_t len, ba_error *err) {
    int64_t shape[BA_MAX_DIMS], outer = 1;
    memcpy(shape, src->shape, sizeof shape);
    shape[axis] = len;
    ba_tensor_t *p = ba_tensor_new(src->dtype, src->ndim, shape, err);
    if (!p) return NULL;
    for (int d = 0; d < axis; d++) outer *= src->shape[d];
    size_t block = outer ? ba_tensor_nbytes(src) / (size_t)outer : 0,
           pblock = outer ? ba_tensor_nbytes(p) / (size_t)outer : 0;
    for (int64_t o = 0; o < outer && block; o++)
        memcpy((char *)p->data + (size_t)o * pblock, (const char *)src->data + (size_t)o * block, block);
    return p;
}

int64_t ba_eval_batch_size(int64_t static_batch, int64_t requested) {
    return static_batch > 0 ? static_batch : requested > 0 ? requested : BA_EVAL_DEFAULT_BATCH;
}

ba_status ba_eval_batch_inputs(const ba_model_t *m, const ba_dataset_t *ds, const int *idx, int64_t start,
                               int64_t count, int64_t pad_to, ba_tensor_t **ins, ba_error *err) {
    for (int k = 0; k < m->ninputs; k++) ins[k] = NULL;
    ba_status st = BA_OK;
    for (int k = 0; st == BA_OK && k < m->ninputs; k++) {
        ba_tensor_t *v = NULL;
        if ((st = ba_dataset_batch(ds, start, count, idx[k], &v, err)) != BA_OK) break;
        int axis = ba_dataset_sample_axis(ds, idx[k]);
        if (axis < 0 && (st = ba_eval_feed_const(m, k, &v, err)) != BA_OK) {
            ba_tensor_unref(v);
            break;
        }
        if (axis >= 0 && pad_to > count) {
            ba_tensor_t *p = pad_axis(v, axis, pad_to, err);
            ba_tensor_unref(v);
            if (!p) {
                st = err->code;
                break;
            }
            v = p;
        }
        ins[k] = v;
    }
    if (st != BA_OK)
        for (int k = 0; k < m->ninputs; k++) {
            ba_tensor_unref(ins[k]);
            ins[k] = NULL;
        }
    return st;
}

/* Inputs for samples [start, start+count), padded to a static batch. ins[k] hold refs. */
static ba_status batch_inputs(const ba_evaluator_t *ev, int64_t start, int64_t count, ba_tensor_t **ins,
                              ba_error *err) {
    return ba_eval_batch_inputs(ev->m, ev->ds, ev->idx, start, count, ev->static_batch, ins, err);
}

static void unref_all(ba_tensor_t **t, int n) {
    for (int i = 0; i < n; i++) {
        ba_tensor_unref(t[i]);
        t[i] = NULL;
    }
}

/* Rows [0, count) of a batch output as a view (shape[0] = count). */
static ba_status first_rows(const ba_tensor_t *out, int64_t count, ba_tensor_t **view, ba_error *err) {
    int64_t shape[BA_MAX_DIMS];
    memcpy(shape, out->shape, sizeof shape);
    shape[0] = count;
    *view = ba_tensor_wrap(BA_DT_F32, out->ndim, shape, out->data, err);
    return *view ? BA_OK : err->code;
}

ba_status ba_evaluator_forward(const ba_evaluator_t *ev, int64_t nsamples, int allow_pad,
                               const ba_run_opts_t *opts, ba_eval_batch_fn on_batch, void *ctx,
                               ba_error *err) {
    const ba_model_t *m = ev->m;
    if (nsamples <= 0 || nsamples > ev->n) nsamples = ev->n;
    ba_tensor_t **ins = ba_calloc((size_t)m->ninputs + (size_t)m->noutputs, sizeof(ba_tensor_t *), err);
    if (!ins) return BA_ERR_NOMEM;
    ba_tensor_t **outs = ins + m->ninputs;
    ba_status st = BA_OK;
    for (int64_t start = 0; start < nsamples && st == BA_OK; start += ev->batch) {
        int64_t count = nsamples - start < ev->batch ? nsamples - start : ev->batch;
        if (!allow_pad && ev->static_batch > count) break;
        st = batch_inputs(ev, start, count, ins, err);
        if (st == BA_OK) st = ba_model_run(m, ins, opts, outs, err);
        if (st == BA_OK && on_batch) st = on_batch(ctx, ins, outs, start, count, err);
        unref_all(ins, m->ninputs + m->noutputs);
    }
    free(ins);
    return st;
}

/* ---- construction: the FP pass ---- */

static ba_status fp_batch(void *vctx, ba_tensor_t *const *ins, ba_tensor_t *const *outs, int64_t start,
                          int64_t count, ba_error *err) {
    (void)ins;
    ba_evaluator_t *ev = vctx;
    const ba_model_t *m = ev->m;
    ba_tensor_t *o = outs[0];
    const char *oname = m->values[m->outputs[0]].name;
    if (!ba_dtype_is_float(o->dtype))
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: output '%s' is %s; metrics need a float output",
                            m->path, oname, ba_dtype_name(o->dtype));
    int64_t rows_expected = ev->static_batch > count ? ev->static_batch : count;
    if (o->ndim < 1 || o->shape[0] != rows_expected)
        return ba_error_set(
            err, BA_ERR_UNSUPPORTED,
            "%s: output '%s' does not keep the sample axis first (a pass of %lld samples gave shape "
            "%s)",
            m->path, oname, (long long)rows_expected, ba_shape_str(o->ndim, o->shape, (char[160]){0}, 160));
    int64_t per = o->numel / o->shape[0];
    if (!ev->fp) {
        int64_t shape[BA_MAX_DIMS];
        memcpy(shape, o->shape, sizeof shape);
        shape[0] = ev->n;
        ev->fp = ba_tensor_new(BA_DT_F32, o->ndim, shape, err);
        if (!ev->fp) return err->code;
        ev->row_elems = per;
    } else if (per != ev->row_elems || o->ndim != ev->fp->ndim) {
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: output '%s' changes shape between batches", m->path,
                            oname);
    }
    float *dst = (float *)ev->fp->data + start * per;
    if (o->dtype == BA_DT_F32) {
        memcpy(dst, o->data, sizeof(float) * (size_t)(count * per));
    } else {
        for (int64_t i = 0; i < count * per; i++) dst[i] = (float)ba_tensor_get_f64(o, i);
    }
    return BA_OK;
}

ba_status ba_evaluator_new(const ba_model_t *m, const ba_dataset_t *ds, const ba_eval_opts_t *opts,
                           ba_evaluator_t **out, ba_error *err) {
    *out = NULL;
    ba_eval_opts_t dflt = {0};
    if (!opts) opts = &dflt;
    if (m->noutputs < 1) return ba_error_set(err, BA_ERR_INPUT, "%s: the model has no output", m->path);
    ba_evaluator_t *ev = ba_calloc(1, sizeof *ev, err);
    if (!ev) return BA_ERR_NOMEM;
    ev->m = m;
    ev->ds = ds;
    ba_status st = BA_OK;
    ev->idx = ba_calloc((size_t)m->ninputs + 1, sizeof(int), err);
    if (!ev->idx) st = BA_ERR_NOMEM;
    if (st == BA_OK) st = ba_eval_bind(m, ds, ev->idx, &ev->static_batch, err);
    int64_t total = ba_dataset_samples(ds);
    if (st == BA_OK && total <= 0) st = ba_error_set(err, BA_ERR_INPUT, "--data: no samples");
    if (st == BA_OK && opts->labels && opts->nlabels != total)
        st = ba_error_set(err, BA_ERR_INPUT, "%s: %lld labels for %lld samples of --data",
                          opts->labels_path ? opts->labels_path : "--labels", (long long)opts->nlabels,
                          (long long)total);
    if (st != BA_OK) {
        ba_evaluator_free(ev);
        return st;
    }
    ev->n = opts->max_samples > 0 && opts->max_samples < total ? opts->max_samples : total;
    ev->batch = ba_eval_batch_size(ev->static_batch, opts->batch);
    if (opts->labels) {
        ev->labels = ba_malloc(sizeof(int64_t) * (size_t)ev->n, err);
        if (!ev->labels)
            st = BA_ERR_NOMEM;
        else
            memcpy(ev->labels, opts->labels, sizeof(int64_t) * (size_t)ev->n);
    }
    if (st == BA_OK) st = ba_evaluator_forward(ev, ev->n, 1, NULL, fp_batch, ev, err);
    if (st == BA_OK) {
        const ba_value_t *ov = &m->values[m->outputs[0]];
        ev->is_prob = ba_output_is_softmax(m) ? 1 : -1;
        /* Decide once over every cached row so every run scores the same way. */
        ba_metrics_acc_t acc;
        ba_metrics_begin(&acc, ev->is_prob);
        int64_t classes = ev->fp->ndim ? ev->fp->shape[ev->fp->ndim - 1] : 1;
        if (ev->labels && ev->row_elems != classes)
            st = ba_error_set(
                err, BA_ERR_INPUT,
                "--labels: the model's output '%s' has %lld class-score rows per sample; labels need one",
                ov->name, (long long)(classes ? ev->row_elems / classes : 0));
        if (st == BA_OK) st = ba_metrics_add(&acc, ev->fp, NULL, NULL, 0, err);
        /* The reference every metric is measured against must be finite (the data is). */
        if (st == BA_OK && acc.nonfinite_fp)
            st = ba_error_set(
                err, BA_ERR_INPUT,
                "%s: output '%s' of the unquantized model is not finite (NaN or Inf) in %lld of %lld "
                "rows on the calibration data",
                m->path, ov->name, (long long)acc.nonfinite_fp, (long long)acc.rows);
        ev->is_prob = acc.is_prob;
    }
    if (st != BA_OK) {
        ba_evaluator_free(ev);
        return st;
    }
    *out = ev;
    return BA_OK;
}

void ba_evaluator_free(ba_evaluator_t *ev) {
    if (!ev) return;
    ba_tensor_unref(ev->fp);
    free(ev->labels);
    free(ev->idx);
    free(ev);
}

int64_t ba_evaluator_samples(const ba_evaluator_t *ev) {
    return ev->n;
}
int64_t ba_evaluator_batch(const ba_evaluator_t *ev) {
    return ev->batch;
}
const ba_tensor_t *ba_evaluator_fp_output(const ba_evaluator_t *ev) {
    return ev->fp;
}
int ba_evaluator_is_prob(const ba_evaluator_t *ev) {
    return ev->is_prob;
}

/* Rows [start, start+count) of the FP cache as a view. */
static ba_tensor_t *fp_rows(const ba_evaluator_t *ev, int64_t start, int64_t count, ba_error *err) {
    int64_t shape[BA_MAX_DIMS];
    memcpy(shape, ev->fp->shape, sizeof shape);
    shape[0] = count;
    return ba_tensor_wrap(BA_DT_F32, ev->fp->ndim, shape, (float *)ev->fp->data + start * ev->row_elems, err);
}

ba_status ba_evaluator_fp_metrics(const ba_evaluator_t *ev, int64_t nsamples, ba_metrics_t *out,
                                  ba_error *err) {
    if (nsamples <= 0 || nsamples > ev->n) nsamples = ev->n;
    ba_metrics_acc_t acc;
    ba_metrics_begin(&acc, ev->is_prob);
    ba_tensor_t *v = fp_rows(ev, 0, nsamples, err);
    if (!v) return err->code;
    ba_status st = ba_metrics_add(&acc, v, NULL, ev->labels, ev->labels ? nsamples : 0, err);
    ba_tensor_unref(v);
    if (st == BA_OK) ba_metrics_finish(&acc, out);
    return st;
}

/* ---- quantized runs ---- */

typedef struct {
    const ba_evaluator_t *ev;
    ba_metrics_acc_t acc;
    ba_tensor_t *q_out;
    int64_t first; /* first sample of the run (q_out row 0) */
} run_ctx_t;

static ba_status q_batch(void *vctx, ba_tensor_t *const *ins, ba_tensor_t *const *outs, int64_t start,
                         int64_t count, ba_error *err) {
    (void)ins;
    run_ctx_t *c = vctx;
    const ba_evaluator_t *ev = c->ev;
    ba_tensor_t *o = outs[0];
    ba_tensor_t *o32 = NULL;
    if (o->dtype != BA_DT_F32) {
        o32 = ba_tensor_cast(o, BA_DT_F32, err);
        if (!o32) return err->code;
        o = o32;
    }
    int64_t rows_expected = ev->static_batch > count ? ev->static_batch : count;
    if (o->ndim != ev->fp->ndim || o->shape[0] != rows_expected ||
        o->numel / rows_expected != ev->row_elems) {
        ba_tensor_unref(o32);
        return ba_error_set(err, BA_ERR_RUNTIME,
                            "%s: the quantized model's output shape differs from the FP model's",
                            ev->m->path);
    }
    ba_tensor_t *qv = NULL, *fv = fp_rows(ev, start, count, err);
    ba_status st = fv ? first_rows(o, count, &qv, err) : err->code;
    if (st == BA_OK)
        st = ba_metrics_add(&c->acc, fv, qv, ev->labels ? ev->labels + start : NULL, ev->labels ? count : 0,
                            err);
    if (st == BA_OK && c->q_out)
        memcpy((float *)c->q_out->data + (start - c->first) * ev->row_elems, qv->data,
               sizeof(float) * (size_t)(count * ev->row_elems));
    ba_tensor_unref(qv);
    ba_tensor_unref(fv);
    ba_tensor_unref(o32);
    return st;
}

ba_status ba_evaluator_run(const ba_evaluator_t *ev, ba_tensor_t *const *overrides,
                           const ba_eval_hook_t *hook, int64_t nsamples, ba_metrics_t *out,
                           ba_tensor_t **q_out, ba_error *err) {
    return ba_evaluator_run_range(ev, overrides, hook, 0, nsamples, out, q_out, err);
}

ba_metric_t ba_evaluator_default_metric(const ba_evaluator_t *ev) {
    return ba_metric_default(ev->is_prob, ev->fp->ndim, ev->fp->shape);
}

int ba_output_is_softmax(const ba_model_t *m) {
    if (m->noutputs < 1) return 0;
    int p = m->values[m->outputs[0]].producer;
    return p >= 0 && !strcmp(m->nodes[p].op_type, "Softmax");
}

ba_status ba_output_default_metric(const ba_model_t *m, const ba_tensor_t *fp, ba_metric_t *out,
                                   ba_error *err) {
    ba_metrics_acc_t acc;
    ba_metrics_begin(&acc, ba_output_is_softmax(m) ? 1 : -1);
    BA_TRY(ba_metrics_add(&acc, fp, NULL, NULL, 0, err));
    *out = ba_metric_default(acc.is_prob, fp->ndim, fp->shape);
    return BA_OK;
}

ba_status ba_evaluator_run_range(const ba_evaluator_t *ev, ba_tensor_t *const *overrides,
                                 const ba_eval_hook_t *hook, int64_t first, int64_t nsamples,
                                 ba_metrics_t *out, ba_tensor_t **q_out, ba_error *err) {
    return ba_evaluator_run_reuse(ev, NULL, NULL, overrides, hook, first, nsamples, out, q_out, err);
}

ba_status ba_evaluator_run_reuse(const ba_evaluator_t *ev, ba_eval_reuse_t *reuse, const int *keys,
                                 ba_tensor_t *const *overrides, const ba_eval_hook_t *hook, int64_t first,
                                 int64_t nsamples, ba_metrics_t *out, ba_tensor_t **q_out, ba_error *err) {
    const ba_model_t *m = ev->m;
    if (first < 0 || first >= ev->n)
        return ba_error_set(err, BA_ERR_INPUT, "evaluation: first sample %lld outside 0..%lld",
                            (long long)first, (long long)(ev->n - 1));
    if (nsamples <= 0 || nsamples > ev->n - first) nsamples = ev->n - first;
    if (q_out) *q_out = NULL;
    run_ctx_t rc = {.ev = ev, .first = first};
    ba_metrics_begin(&rc.acc, ev->is_prob);
    if (q_out) {
        int64_t shape[BA_MAX_DIMS];
        memcpy(shape, ev->fp->shape, sizeof shape);
        shape[0] = nsamples;
        rc.q_out = ba_tensor_new(BA_DT_F32, ev->fp->ndim, shape, err);
        if (!rc.q_out) return err->code;
    }
    ba_run_opts_t opts = {.overrides = overrides};
    if (hook && hook->on_value) {
        opts.on_value = hook->on_value;
        opts.ctx = hook->ctx;
        opts.hooked = hook->values;
    }
    if (reuse) ba_eval_reuse_hook(reuse, hook);

    ba_status st = BA_OK;
    ba_tensor_t **ins = ba_calloc((size_t)m->ninputs + (size_t)m->noutputs, sizeof(ba_tensor_t *), err);
    if (!ins) st = BA_ERR_NOMEM;
    ba_tensor_t **outs = ins ? ins + m->ninputs : NULL;
    for (int64_t start = first; st == BA_OK && start < first + nsamples; start += ev->batch) {
        int64_t count = first + nsamples - start < ev->batch ? first + nsamples - start : ev->batch;
        st = batch_inputs(ev, start, count, ins, err);
        /* Graph inputs go through the hook before the run (the executor's on_value sees node outputs only).
         */
        for (int k = 0; st == BA_OK && opts.on_value && k < m->ninputs; k++)
            st = opts.on_value(opts.ctx, m, m->inputs[k], &ins[k], err);
        if (st == BA_OK)
            st = reuse && keys ? ba_eval_reuse_model_run(reuse, keys, 1, ins, &opts, start, count, outs, err)
                               : ba_model_run(m, ins, &opts, outs, err);
        if (st == BA_OK) st = q_batch(&rc, ins, outs, start, count, err);
        unref_all(ins, m->ninputs + m->noutputs);
    }
    free(ins);
    if (st == BA_OK) {
        ba_metrics_finish(&rc.acc, out);
        if (q_out)
            *q_out = rc.q_out;
        else
            ba_tensor_unref(rc.q_out);
    } else {
        ba_tensor_unref(rc.q_out);
    }
    return st;
}
