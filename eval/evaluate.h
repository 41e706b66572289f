/* Evaluation of a model and of quantized variants of it on a dataset: the FP
 * model runs once and its first output is cached, so scoring a configuration
 * (weight overrides + activation fake-quant) is one forward pass per batch
 * compared against the cache (SPEC §8 metrics). Shared by `eval` and the search. */
#ifndef BA_EVAL_EVALUATE_H
#define BA_EVAL_EVALUATE_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"
#include "eval/dataset.h"
#include "eval/metrics.h"
#include "model/model.h"

/* Samples per forward pass when the model leaves the batch axis dynamic, for
 * evaluation and sensitivity alike (ba_eval_batch_size): large enough for GEMM
 * efficiency, small enough that a zoo model's activations stay in the tens of MB. */
#define BA_EVAL_DEFAULT_BATCH 256

typedef struct ba_evaluator ba_evaluator_t;

typedef struct ba_eval_opts {
    int64_t batch;           /* samples per pass; 0 = BA_EVAL_DEFAULT_BATCH (a static batch axis wins) */
    int64_t max_samples;     /* evaluate the first N samples only; 0 = all */
    const int64_t *labels;   /* class id per sample (copied), or NULL */
    int64_t nlabels;         /* must equal the dataset's sample count when labels are given */
    const char *labels_path; /* for messages ("--labels" when NULL) */
} ba_eval_opts_t;

/* Loads --data specs (ba_dataset_load_for) for model m: data for an input m
 * does not have is refused before it is read or inflated. */
ba_status ba_eval_data_load(const ba_model_t *m, const char *const *specs, int nspecs,
                            const char *const *axes, int naxes, ba_dataset_t **out, ba_error *err);

/* Maps the model's graph inputs to dataset inputs: idx[k] (k < m->ninputs)
 * = dataset index feeding m->inputs[k]. Checks names, ranks, dtypes and every
 * dimension but the sample axis; a constant (0-d) must feed a 0-d, [1, …, 1]
 * or unknown-rank model input. Errors (BA_ERR_INPUT) name the input and the
 * data file. *static_batch = the batch size the model fixes on its inputs'
 * sample axes, or 0. */
ba_status ba_eval_bind(const ba_model_t *m, const ba_dataset_t *ds, int *idx, int64_t *static_batch,
                       ba_error *err);

/* Samples per pass: the batch size the model fixes (static_batch > 0), else
 * requested when > 0, else BA_EVAL_DEFAULT_BATCH. */
int64_t ba_eval_batch_size(int64_t static_batch, int64_t requested);

/* The model inputs for samples [start, start+count) of ds bound by idx
 * (ba_eval_bind): views or slices along each input's sample axis, constants
 * whole (ba_eval_feed_const), and when pad_to > count the sample axis
 * zero-padded to pad_to rows. ins[k] (m->ninputs) hold refs; on error none. */
ba_status ba_eval_batch_inputs(const ba_model_t *m, const ba_dataset_t *ds, const int *idx, int64_t start,
                               int64_t count, int64_t pad_to, ba_tensor_t **ins, ba_error *err);

/* Resolves the layers' costs (ba_model_costs_at) at one sample of the data's
 * shapes: each input's shape is the data's (ds may be NULL), or an
 * --input-shape spec "NAME=D0xD1x…" for it (specs win); an input with
 * neither uses its declared shape, which must then be static apart from the
 * sample axis. Errors (BA_ERR_INPUT) name the input, the dim or the node. */
ba_status ba_eval_resolve_costs(ba_model_t *m, const ba_dataset_t *ds, const char *const *shape_specs,
                                int nspecs, ba_error *err);

/* A constant (0-d) fed to model input k whose declared shape is [1, …, 1]
 * takes that shape (*t replaced by a view); other tensors stay as they are. */
ba_status ba_eval_feed_const(const ba_model_t *m, int k, ba_tensor_t **t, ba_error *err);

/* Binds the data, runs the FP model over the samples and caches its first
 * output. m and ds must outlive the evaluator. */
ba_status ba_evaluator_new(const ba_model_t *m, const ba_dataset_t *ds, const ba_eval_opts_t *opts,
                           ba_evaluator_t **out, ba_error *err);
void ba_evaluator_free(ba_evaluator_t *ev); /* NULL-safe */

int64_t ba_evaluator_samples(const ba_evaluator_t *ev); /* samples cached */
int64_t ba_evaluator_batch(const ba_evaluator_t *ev);
/* The FP model's first output over the cached samples ([N, ...], float32). Borrowed. */
const ba_tensor_t *ba_evaluator_fp_output(const ba_evaluator_t *ev);
/* 1 when the first output already is a class distribution (Softmax), 0 logits. */
int ba_evaluator_is_prob(const ba_evaluator_t *ev);

/* FP metrics (rows, accuracy_fp; the quantized fields NaN) over the first
 * nsamples (0 = all cached). */
ba_status ba_evaluator_fp_metrics(const ba_evaluator_t *ev, int64_t nsamples, ba_metrics_t *out,
                                  ba_error *err);

/* An observer or rewriter of the values of a quantized run (the executor's
 * on_value, model.h): called for each graph input before the run and for each
 * value after it is computed; it may replace *t (quant/apply.h's
 * ba_quant_act_hook fake-quantizes activations) or just look. The tensor
 * handed over may share memory with others: a hook that changes the data
 * works on a private copy. */
typedef struct ba_eval_hook {
    ba_status (*on_value)(void *ctx, const ba_model_t *m, int value_id, ba_tensor_t **t, ba_error *err);
    void *ctx;
    /* Per value id (m->nvalues), 1 where the hook acts; the executor may fuse
     * the other intermediate values away (ba_run_opts_t.hooked). NULL: the
     * hook sees every value. */
    const unsigned char *values;
} ba_eval_hook_t;

/* Metrics of the model run with overrides (per value id, see ba_run_opts_t;
 * NULL = none) and a value hook (NULL = none) against the cached FP outputs, over
 * the first nsamples (0 = all cached). Reads the evaluator only, so several
 * threads may call it at once. q_out (optional): the quantized first output
 * over those samples ([nsamples, ...] float32, caller unrefs). */
ba_status ba_evaluator_run(const ba_evaluator_t *ev, ba_tensor_t *const *overrides,
                           const ba_eval_hook_t *hook, int64_t nsamples, ba_metrics_t *out,
                           ba_tensor_t **q_out, ba_error *err);

/* The same over samples [first, first + nsamples) (nsamples 0 = to the end). */
ba_status ba_evaluator_run_range(const ba_evaluator_t *ev, ba_tensor_t *const *overrides,
                                 const ba_eval_hook_t *hook, int64_t first, int64_t nsamples,
                                 ba_metrics_t *out, ba_tensor_t **q_out, ba_error *err);

/* ---- reuse across evaluations ----
 * Configurations that agree on their first layers (in the order the graph
 * reads them) compute the same values up to the first node reading a layer
 * where they differ. A reuse cache keeps, per batch, the values alive before
 * each such node (references to the executor's own tensors) from the runs
 * made through it, up to a byte cap (least recently used first out), and a
 * run resumes from the latest cut its layer keys allow. Results are
 * bit-identical to ba_evaluator_run_range. Not thread-safe: one cache per
 * thread of evaluations. */
#define BA_EVAL_REUSE_DEFAULT_CAP ((size_t)512 << 20)
typedef struct ba_eval_reuse ba_eval_reuse_t;
typedef struct ba_eval_reuse_stats {
    int64_t runs;          /* batches run through the cache */
    int64_t hits;          /* of them resumed from a cut */
    int64_t nodes_run;     /* nodes executed */
    int64_t nodes_skipped; /* nodes a resumed batch did not run */
    int64_t saved;         /* cuts stored */
    size_t bytes;          /* held now (a tensor alive at several cuts counts at each) */
    int entries;
} ba_eval_reuse_stats_t;
/* A cache for model m holding at most cap_bytes of values. */
ba_status ba_eval_reuse_new(const ba_model_t *m, size_t cap_bytes, ba_eval_reuse_t **out, ba_error *err);
void ba_eval_reuse_free(ba_eval_reuse_t *r); /* NULL-safe */
void ba_eval_reuse_clear(ba_eval_reuse_t *r);
void ba_eval_reuse_stats(const ba_eval_reuse_t *r, ba_eval_reuse_stats_t *out);

/* ba_evaluator_run_range through cache r (NULL: plain). keys[l] (m->nlayers)
 * names layer l's weight in overrides (its width, say): runs whose keys
 * agree on a layer give it the same tensor. Every run through r uses the
 * same hook (r is cleared when the hook, its context or mask changes). */
ba_status ba_evaluator_run_reuse(const ba_evaluator_t *ev, ba_eval_reuse_t *r, const int *keys,
                                 ba_tensor_t *const *overrides, const ba_eval_hook_t *hook, int64_t first,
                                 int64_t nsamples, ba_metrics_t *out, ba_tensor_t **q_out, ba_error *err);

/* One pass through r outside an evaluator: ba_model_run(m, inputs, base,
 * outputs) on the batch (start, count) of the data under keys (as above; base
 * has no hook, or the same for every run through r), resumed from the
 * latest cut it may; save: leave this run's cuts in r (0: use r only). */
ba_status ba_eval_reuse_model_run(ba_eval_reuse_t *r, const int *keys, int save, ba_tensor_t *const *inputs,
                                  const ba_run_opts_t *base, int64_t start, int64_t count,
                                  ba_tensor_t **outputs, ba_error *err);

/* The default --metric for the model's first output (ba_metric_default). */
ba_metric_t ba_evaluator_default_metric(const ba_evaluator_t *ev);

/* 1 when the model's first output is made by a Softmax (its rows are class
 * distributions by construction). */
int ba_output_is_softmax(const ba_model_t *m);
/* The default --metric (SPEC §8, ba_metric_default) of the model's first
 * output, decided from fp, that output of the unquantized model on some
 * samples: made by a Softmax, or non-negative rows summing to 1, or rank-2
 * logits [N, C]: kl; otherwise relmse. */
ba_status ba_output_default_metric(const ba_model_t *m, const ba_tensor_t *fp, ba_metric_t *out,
                                   ba_error *err);

/* Runs the model over the first nsamples (0 = all cached) with opts and
 * calls on_batch after each pass with that pass's inputs (rows start ..
 * start+count of the data; a static batch axis is zero-padded past count
 * when pad is allowed, else samples that do not fill a whole batch are
 * skipped) and outputs. For calibration and other observers. */
typedef ba_status (*ba_eval_batch_fn)(void *ctx, ba_tensor_t *const *inputs, ba_tensor_t *const *outputs,
                                      int64_t start, int64_t count, ba_error *err);
ba_status ba_evaluator_forward(const ba_evaluator_t *ev, int64_t nsamples, int allow_pad,
                               const ba_run_opts_t *opts, ba_eval_batch_fn on_batch, void *ctx,
                               ba_error *err);

#endif
