/* Metrics accumulation. KL and agreement treat the last axis as a class
 * distribution (softmax of logits unless the rows already are distributions);
 * everything is accumulated in double so batch order does not matter much. */
#include "eval/metrics.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void ba_metrics_begin(ba_metrics_acc_t *acc, int is_prob) {
    memset(acc, 0, sizeof *acc);
    acc->is_prob = is_prob;
}

void ba_metrics_log_softmax(const float *x, int64_t n, double *out) {
    double mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += exp((double)x[i] - mx);
    double lse = mx + log(s);
    for (int64_t i = 0; i < n; i++) out[i] = (double)x[i] - lse;
}

static int64_t argmax(const float *x, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static int row_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

static int rows_are_prob(const float *x, int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) {
            if (!(x[r * n + i] >= 0)) return 0;
            s += x[r * n + i];
        }
        if (fabs(s - 1.0) > BA_METRICS_PROB_TOL) return 0;
    }
    return 1;
}

/* Log-probabilities of a row, floored so log 0 stays finite (KL of a class
 * the FP model gives mass to but the quantized one does not is then large, not inf). */
#define BA_METRICS_LOG_FLOOR (-100.0)

static void row_logp(const float *x, int64_t n, int is_prob, double *out) {
    if (!is_prob) {
        ba_metrics_log_softmax(x, n, out);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] > 0 ? fmax(log((double)x[i]), BA_METRICS_LOG_FLOOR) : BA_METRICS_LOG_FLOOR;
}

ba_status ba_metrics_add(ba_metrics_acc_t *acc, const ba_tensor_t *fp, const ba_tensor_t *q,
                         const int64_t *labels, int64_t nlabels, ba_error *err) {
    if (fp->dtype != BA_DT_F32)
        return ba_error_set(err, BA_ERR_INPUT, "metrics: output is %s, expected float32",
                            ba_dtype_name(fp->dtype));
    int64_t n = fp->ndim ? fp->shape[fp->ndim - 1] : 1;
    if (n <= 0) return ba_error_set(err, BA_ERR_INPUT, "metrics: output has an empty last axis");
    int64_t rows = fp->numel / n;
    if (q && (q->numel != fp->numel || q->dtype != BA_DT_F32))
        return ba_error_set(err, BA_ERR_INPUT, "metrics: quantized output shape differs from the FP output");
    if (labels && nlabels != rows)
        return ba_error_set(err, BA_ERR_INPUT, "metrics: %lld labels for %lld output rows",
                            (long long)nlabels, (long long)rows);
    if (acc->classes && acc->classes != n)
        return ba_error_set(err, BA_ERR_INPUT, "metrics: output last axis changed between batches");
    acc->classes = n;
    const float *a = fp->data, *b = q ? q->data : NULL;
    if (acc->is_prob < 0) acc->is_prob = rows_are_prob(a, rows, n);
    double *lp = NULL, *lq = NULL;
    if (b) {
        lp = ba_malloc(sizeof(double) * (size_t)n * 2, err);
        if (!lp) return BA_ERR_NOMEM;
        lq = lp + n;
        acc->has_q = 1;
    }
    for (int64_t r = 0; r < rows; r++) {
        const float *x = a + r * n;
        int fp_ok = row_finite(x, n);
        acc->nonfinite_fp += !fp_ok;
        int64_t am = argmax(x, n);
        if (labels) {
            if (labels[r] < 0 || labels[r] >= n) {
                free(lp);
                return ba_error_set(err, BA_ERR_INPUT, "labels: label %lld at row %lld outside 0..%lld",
                                    (long long)labels[r], (long long)(acc->rows + r), (long long)(n - 1));
            }
            acc->labeled++;
            acc->correct_fp += am == labels[r];
        }
        for (int64_t i = 0; i < n; i++) acc->sig_sum += (double)x[i] * x[i];
        if (!b) continue;
        const float *y = b + r * n;
        if (!row_finite(y, n)) {
            acc->nonfinite_q++; /* every metric of the quantized output becomes NaN in finish */
            continue;
        }
        if (!fp_ok) continue;
        int64_t bm = argmax(y, n);
        acc->agree += am == bm;
        if (labels) acc->correct_q += bm == labels[r];
        row_logp(x, n, acc->is_prob, lp);
        row_logp(y, n, acc->is_prob, lq);
        double kl = 0;
        for (int64_t i = 0; i < n; i++) {
            double p = exp(lp[i]);
            kl += p * (lp[i] - lq[i]);
            double d = (double)x[i] - y[i];
            acc->se_sum += d * d;
        }
        acc->kl_sum += kl < 0 ? 0 : kl; /* rounding can make a zero KL slightly negative; NaN stays NaN */
        double xy = 0, xx = 0, yy = 0;
        for (int64_t i = 0; i < n; i++) {
            double d = (double)x[i] - y[i];
            acc->se_q_sum += d * d;
            acc->sig_q_sum += (double)x[i] * x[i];
            xy += (double)x[i] * y[i], xx += (double)x[i] * x[i], yy += (double)y[i] * y[i];
        }
        /* Two zero rows are the same direction; one zero row against another is orthogonal. */
        acc->cos_sum += xx == 0 && yy == 0 ? 1.0 : xx == 0 || yy == 0 ? 0.0 : xy / sqrt(xx * yy);
    }
    acc->rows += rows;
    acc->elems += fp->numel;
    free(lp);
    return BA_OK;
}

void ba_metrics_finish(const ba_metrics_acc_t *acc, ba_metrics_t *out) {
    out->rows = acc->rows;
    out->nonfinite_fp = acc->nonfinite_fp;
    out->nonfinite_q = acc->nonfinite_q;
    out->accuracy_fp = acc->labeled ? (double)acc->correct_fp / (double)acc->labeled : NAN;
    out->accuracy_q = acc->labeled && acc->has_q ? (double)acc->correct_q / (double)acc->labeled : NAN;
    out->agreement = acc->has_q && acc->rows ? (double)acc->agree / (double)acc->rows : NAN;
    out->kl = acc->has_q && acc->rows ? acc->kl_sum / (double)acc->rows : NAN;
    out->mse = acc->has_q && acc->elems ? acc->se_sum / (double)acc->elems : NAN;
    if (!acc->has_q)
        out->sqnr_db = NAN;
    else if (acc->se_sum == 0)
        out->sqnr_db = INFINITY;
    else
        out->sqnr_db = 10.0 * log10(acc->sig_sum / acc->se_sum);
    out->relmse = acc->has_q && acc->sig_q_sum > 0 ? acc->se_q_sum / acc->sig_q_sum : NAN;
    out->cosine = acc->has_q && acc->rows ? acc->cos_sum / (double)acc->rows : NAN;
    if (acc->nonfinite_fp) out->accuracy_fp = NAN;
    if (acc->nonfinite_q || acc->nonfinite_fp)
        out->accuracy_q = out->agreement = out->kl = out->mse = out->sqnr_db = out->relmse = out->cosine =
            NAN;
}

static const char *const METRIC_NAMES[] = {"auto", "kl",     "mse",       "relmse",       "sqnr",
                                           "top1", "cosine", "evaluator", "evaluator-max"};

ba_status ba_metric_parse(const char *s, ba_metric_t *out, ba_error *err) {
    for (int i = 0; i < (int)(sizeof METRIC_NAMES / sizeof *METRIC_NAMES); i++)
        if (s && !strcmp(s, METRIC_NAMES[i])) {
            *out = (ba_metric_t)i;
            return BA_OK;
        }
    return ba_error_set(err, BA_ERR_INPUT, "--metric: unknown metric '%s' (expected %s)", s ? s : "",
                        BA_METRIC_CHOICES);
}

const char *ba_metric_name(ba_metric_t m) {
    return (int)m >= 0 && (int)m < (int)(sizeof METRIC_NAMES / sizeof *METRIC_NAMES) ? METRIC_NAMES[m] : "?";
}

int ba_metric_higher_better(ba_metric_t m) {
    return m == BA_METRIC_SQNR || m == BA_METRIC_TOP1 || m == BA_METRIC_COSINE ||
           m == BA_METRIC_EVALUATOR_MAX;
}

double ba_metric_value(ba_metric_t m, const ba_metrics_t *o) {
    switch (m) {
    case BA_METRIC_KL: return o->kl;
    case BA_METRIC_MSE: return o->mse;
    case BA_METRIC_RELMSE: return o->relmse;
    case BA_METRIC_SQNR: return o->sqnr_db;
    case BA_METRIC_TOP1: return o->agreement;
    case BA_METRIC_COSINE: return o->cosine;
    default: return NAN;
    }
}

double ba_metric_objective(ba_metric_t m, double value) {
    if (isinf(value))
        value = value > 0 ? DBL_MAX : -DBL_MAX; /* identical outputs: SQNR +inf is a result, not a failure */
    return ba_metric_higher_better(m) ? -value : value;
}

double ba_metric_from_objective(ba_metric_t m, double objective) {
    return ba_metric_higher_better(m) ? -objective : objective;
}

ba_metric_t ba_metric_default(int is_prob, int ndim, const int64_t *shape) {
    int64_t last = ndim >= 1 ? shape[ndim - 1] : 1;
    if (is_prob == 1 && last > 1) return BA_METRIC_KL;
    if (ndim == 2 && shape[1] > 1) return BA_METRIC_KL;
    return BA_METRIC_RELMSE;
}
