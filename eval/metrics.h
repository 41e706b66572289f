/* Output metrics of SPEC §8: accuracy, top-1 agreement, KL(p_fp‖p_q), MSE,
 * SQNR. Accumulated batch by batch so evaluation memory stays bounded. */
#ifndef BA_EVAL_METRICS_H
#define BA_EVAL_METRICS_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

/* Rows of an output already form distributions when they are non-negative
 * and sum to 1 within this tolerance (SPEC §8). */
#define BA_METRICS_PROB_TOL 1e-3

typedef struct ba_metrics_acc {
    int is_prob;      /* -1 undecided, 0 logits (softmax taken), 1 probabilities */
    int64_t classes;  /* size of the last axis */
    int64_t rows;     /* rows seen (product of all axes but the last) */
    double kl_sum;    /* Σ over rows of KL(p_fp‖p_q) */
    int64_t agree;    /* rows whose argmax matches */
    double se_sum;    /* Σ (fp − q)² over elements */
    double sig_sum;   /* Σ fp² over elements */
    double se_q_sum;  /* Σ (fp − q)² over the rows both outputs are finite in */
    double sig_q_sum; /* Σ fp² over those rows (relMSE's denominator) */
    double cos_sum;   /* Σ over rows of cos(fp, q) */
    int64_t elems;
    int64_t labeled;    /* rows with a label */
    int64_t correct_fp; /* labeled rows where argmax(fp) == label */
    int64_t correct_q;  /* … argmax(q) == label */
    int has_q;
    int64_t nonfinite_fp; /* rows of the FP output holding a NaN or an Inf */
    int64_t nonfinite_q;  /* … of the quantized output */
} ba_metrics_acc_t;

typedef struct ba_metrics {
    int64_t rows;
    double accuracy_fp; /* NaN when no labels */
    double accuracy_q;  /* NaN when no labels or no quantized run */
    double agreement;   /* NaN when no quantized run */
    double kl;
    double mse;
    double sqnr_db; /* +inf when the outputs are identical */
    double relmse;  /* Σ(q − fp)² / Σ fp² (NaN when the FP output is all zeros) */
    double cosine;  /* mean over rows of the cosine similarity of fp and q */
    /* Rows whose FP / quantized output holds a NaN or an Inf. Any such row makes every
     * metric of that output NaN (never a perfect score): SPEC §8, a non-finite output
     * fails the trial. */
    int64_t nonfinite_fp, nonfinite_q;
} ba_metrics_t;

/* is_prob: 1 when the output is produced by Softmax, 0 when known logits,
 * -1 to decide from the first batch's rows. */
void ba_metrics_begin(ba_metrics_acc_t *acc, int is_prob);
/* fp: float32 output of the FP model; q: the quantized model's (or NULL);
 * labels: one per row of this batch (or NULL). */
ba_status ba_metrics_add(ba_metrics_acc_t *acc, const ba_tensor_t *fp, const ba_tensor_t *q,
                         const int64_t *labels, int64_t nlabels, ba_error *err);
void ba_metrics_finish(const ba_metrics_acc_t *acc, ba_metrics_t *out);

/* The search objective (SPEC §8 `--metric`). AUTO = the default for the
 * model's first output (ba_metric_default). */
typedef enum ba_metric {
    BA_METRIC_AUTO = 0,
    BA_METRIC_KL,
    BA_METRIC_MSE,
    BA_METRIC_RELMSE,
    BA_METRIC_SQNR,
    BA_METRIC_TOP1,
    BA_METRIC_COSINE,
    BA_METRIC_EVALUATOR,     /* a --evaluator's score, lower is better */
    BA_METRIC_EVALUATOR_MAX, /* a --evaluator's score, higher is better (its handshake said maximize) */
} ba_metric_t;

#define BA_METRIC_CHOICES "kl|mse|relmse|sqnr|top1|cosine"

/* "kl", "mse", … (and "auto"); BA_ERR_INPUT naming --metric otherwise. */
ba_status ba_metric_parse(const char *s, ba_metric_t *out, ba_error *err);
const char *ba_metric_name(ba_metric_t m);
/* 1 for sqnr, top1 (agreement), cosine and evaluator-max: higher is better. */
int ba_metric_higher_better(ba_metric_t m);
/* The metric's own value in out (kl, mse, …; NaN when unknown). */
double ba_metric_value(ba_metric_t m, const ba_metrics_t *out);
/* The one place where a metric's direction is applied: the objective every
 * search minimises and every "best" ranks by is value for lower-is-better
 * metrics, −value for higher-is-better ones. NaN stays NaN (a failed trial). */
double ba_metric_objective(ba_metric_t m, double value);
/* The metric's value back from an objective (the same sign flip). */
double ba_metric_from_objective(ba_metric_t m, double objective);
/* Default for an output (SPEC §8): kl when it is a class distribution
 * (is_prob == 1, over ≥ 2 classes) or rank-2 logits [N, C] with C > 1, else relmse. */
ba_metric_t ba_metric_default(int is_prob, int ndim, const int64_t *shape);

/* log-softmax of one row of n logits into out (stable: max subtracted). */
void ba_metrics_log_softmax(const float *x, int64_t n, double *out);

#endif
