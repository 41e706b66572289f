/* A search run as a study (SPEC §6, §7): settings → study in the database →
 * sensitivity (cached) → problem → ILP (seed, or the infeasibility message) →
 * the method's search with every trial and checkpoint stored → best plan.
 * `resume` re-enters the same path with the settings read from the study;
 * the search is a deterministic function of (settings, seed), so the result
 * equals an uninterrupted run's. */
#ifndef BA_STUDY_STUDY_H
#define BA_STUDY_STUDY_H

#include <stdint.h>

#include "core/error.h"
#include "db/db.h"
#include "eval/dataset.h"
#include "eval/evaluate.h"
#include "quant/apply.h"
#include "quant/export.h"
#include "quant/plan.h"
#include "quant/quant.h"
#include "search/budget.h"
#include "search/evo.h"
#include "search/hw.h"
#include "search/ilp.h"
#include "search/problem.h"
#include "sensitivity/sensitivity.h"

#define BA_STUDY_MAX_DATA 64
#define BA_STUDY_MAX_RULES 256 /* --pin / --tie flags */
/* --validation-fraction default: the share of the calibration samples the
 * evolution does not rank on, kept for the final choice among the elites
 * (docs/search.md, "validation"). */
#define BA_STUDY_DEFAULT_VALIDATION_FRACTION 0.25

/* What a study is a function of (stored as its settings JSON). Paths are absolute. */
typedef struct ba_study_settings {
    char *model;
    int ndata;
    char *data[BA_STUDY_MAX_DATA]; /* "FILE", "NAME=FILE" or "NAME=TYPE:VALUE" */
    int nsample_axes;
    char *sample_axes[BA_STUDY_MAX_DATA]; /* "NAME=K" (--sample-axis); stored only when given */
    char *labels;                         /* NULL = none */
    ba_quant_cfg_t quant;
    ba_budget_set_t budgets;
    int has_sweep;
    ba_budget_sweep_t sweep;
    char method[16];        /* ilp+evo | ilp | evo | random | uniform | nsga2 */
    char sensitivity[16];   /* estimator; "" = none needed (random, uniform, evo) or a file */
    char *sensitivity_file; /* --sensitivity-file, NULL = none */
    char sensitivity_file_sha256[65];
    int nbits;
    int bits[BA_BITS_MAX_CANDIDATES];
    int npins, nties;
    char *pins[BA_STUDY_MAX_RULES];
    char *ties[BA_STUDY_MAX_RULES];
    uint64_t seed;
    int generations, offspring;
    char *latency_table; /* NULL = none */
    char *hw;            /* profile name or path, NULL = none */
    ba_sens_loss_t loss;
    double tol;
    int probes; /* --samples: Hutchinson probes */
    int include_embeddings;
    char metric[16];            /* --metric: "auto" (SPEC §8 default), kl, mse, …; "" = a study made before
                                 * --metric existed (kl for class outputs, mse otherwise; no validation) */
    char *evaluator;            /* --evaluator CMD (NULL = none): the objective is its score */
    double evaluator_timeout;   /* --evaluator-timeout seconds (0 = BA_EXTEV_DEFAULT_TIMEOUT) */
    double validation_fraction; /* --validation-fraction: share of the data kept for the final choice (evo) */
    char extra_seed[16];        /* --extra-seed: "measured" (ilp+evo also starts from the ILP plan of the
                                 * measured-sensitivity table) or "none"; "none" for studies made before it */
    int ninput_shapes; /* --input-shape NAME=D0xD1x…: costs at these shapes instead of the data's */
    char *input_shapes[BA_STUDY_MAX_DATA];
} ba_study_settings_t;

/* Defaults of SPEC §3, §5, §6 (method ilp+evo, sensitivity hessian, bits BA_BITS_DEFAULT, seed 0). */
void ba_study_settings_init(ba_study_settings_t *s);
void ba_study_settings_free(ba_study_settings_t *s);
/* Setters that copy (paths made absolute when they name existing files). */
ba_status ba_study_settings_set_path(char **slot, const char *path, ba_error *err);
ba_status ba_study_settings_add_data(ba_study_settings_t *s, const char *spec, ba_error *err);
ba_status ba_study_settings_add_sample_axis(ba_study_settings_t *s, const char *spec, ba_error *err);
/* The study's data as ba_dataset_load_axes reads it (data specs + sample axes). */
ba_status ba_study_settings_load_data(const ba_study_settings_t *s, ba_dataset_t **out, ba_error *err);
/* Settings JSON (caller frees) and back. */
ba_status ba_study_settings_to_json(const ba_study_settings_t *s, char **out, ba_error *err);
ba_status ba_study_settings_from_json(const char *text, ba_study_settings_t *s, ba_error *err);
/* The seed as a plan records it (a signed 64-bit JSON integer): -1 (null) when it does not fit. */
int64_t ba_study_plan_seed(const ba_study_settings_t *s);

typedef struct ba_study_progress {
    const char *phase; /* "sensitivity", "ilp", "fp", "search", "sweep" */
    int64_t done, total;
    double best;       /* best objective so far (NaN before the first) */
    double budget_use; /* best configuration's first budget value / its limit (NaN when none) */
} ba_study_progress_t;

typedef struct ba_study_callbacks {
    void (*progress)(void *user, const ba_study_progress_t *p);
    void *user;
    void (*warning)(void *user, const char *msg); /* NULL: warnings dropped (e.g. a failed cache write) */
} ba_study_callbacks_t;

typedef struct ba_study_sweep_point {
    double limit;
    int feasible, pareto; /* pareto: not dominated in (measured objective, used) by another point */
    int64_t trial;        /* -1 when infeasible */
    double used;          /* the swept quantity's value at this point (≤ limit) */
    double predicted;
    double budget[BA_BUDGET_NKINDS];
    ba_eval_result_t res;
    int *bits; /* [nlayers] */
} ba_study_sweep_point_t;

typedef struct ba_study_result {
    char study[256];
    int created;      /* 1: this call created the study */
    int was_complete; /* 1: the study had already finished (resume just reports) */
    char method[16];
    int64_t trial; /* best trial (-1 for a sweep) */
    int64_t ntrials;
    int64_t nevals;       /* evaluations made by this process (measurements, memo hits not counted) */
    int64_t nmeasured;    /* measurements the study holds (its memo: configuration × sample window) */
    char metric[16];      /* the metric the study ranks by */
    double validation;    /* best trial's metric value on the validation part (NaN: none) */
    ba_eval_result_t res; /* best trial's full-data metrics */
    ba_plan_t *plan;      /* best plan (NULL for a sweep) */
    int nlayers;
    char **layer_names; /* borrowed from plan or owned when no plan (sweep): see ba_study_result_free */
    int sweep_key;      /* ba_budget_kind_t swept, -1 none */
    int nsweep;
    ba_study_sweep_point_t *sweep;
    double seconds;
    double search_seconds; /* evolution: wall time of the evolution itself, and the part of it */
    double
        eval_seconds; /* in evaluations (forward passes); the rest is mutation, selection, checkpoints, DB */
} ba_study_result_t;

void ba_study_result_free(ba_study_result_t *r);
/* The best trial's value of the study's metric (r->res.objective with the metric's direction undone). */
double ba_study_result_metric(const ba_study_result_t *r);

/* ---- the problem of a model (study/problem.c) ---- */
typedef struct ba_study_problem_spec {
    const int *bits; /* candidate widths (ba_bits_parse) */
    int nbits;
    /* Ω: cost[l*nbits + j] for layer l of the model and bits[j]; NAN = no value
     * (that candidate is dropped for that layer). */
    const double *cost;
    const ba_quant_cfg_t *qcfg; /* memory and bops follow it */
    const ba_budget_set_t *budgets;
    const ba_latency_table_t *latency_table; /* one of these when a latency budget is set */
    const ba_hw_profile_t *hw;
    const char *const *pins; /* "GLOB=BITS" */
    int npins;
    const char *const *ties; /* "GLOB" */
    int nties;
} ba_study_problem_spec_t;

/* One layer per quantizable layer of m (SPEC §2), budgets per SPEC §4:
 * avg-bits A = b·params/Σparams (b = ba_cost_layer_bits: the real ggml bits per
 * weight under backend llama, where a width no llama.cpp type can store on a
 * layer's rows is not a candidate of that layer); memory A = ba_cost_layer_memory, offset =
 * m->other_init_bytes; bops A = ba_cost_layer_bops; latency A from the table
 * or the roofline profile. */
ba_status ba_study_problem_from_model(const ba_model_t *m, const ba_study_problem_spec_t *spec,
                                      ba_problem_t **out, ba_error *err);

/* ---- the cached sensitivity call (search and `bitalloc sensitivity`) ---- */

typedef struct ba_study_sens_info {
    char key[65];           /* the cache key ("" without a database) */
    int cached;             /* 1: read from the cache */
    int cache_write_failed; /* 1: computed but not stored; warning says why (the table still stands) */
    ba_error warning;
} ba_study_sens_info_t;
/* Ω of `method` on (m, ds, labels): from the cache in db when it holds the key
 * (ba_sens_cache_key), else computed (ba_sens_compute) and stored. db NULL: no
 * cache. Policy: a failed cache write is a warning in info, never an error. */
ba_status ba_study_sensitivity(ba_db_t *db, const ba_model_t *m, const ba_dataset_t *ds,
                               const int64_t *labels, int64_t nlabels, ba_sens_method_t method,
                               const ba_sens_opts_t *opts, ba_sens_table_t **out, ba_study_sens_info_t *info,
                               ba_error *err);
/* The cache entries themselves: *out NULL on a miss; a hit is checked against m and opts' bits like a file.
 */
ba_status ba_study_sens_cache_get(ba_db_t *db, const char *key, const ba_model_t *m,
                                  const ba_sens_opts_t *opts, ba_sens_table_t **out, ba_error *err);
ba_status ba_study_sens_cache_put(ba_db_t *db, const char *key, const ba_model_t *m, const ba_sens_table_t *t,
                                  ba_error *err);

/* ---- the methods (one row each: name, whether its objective or start needs Ω, runner) ---- */

/* `ilp` (the ILP optimum, evaluated), `evo` (evolution from the widest uniform width),
 * `ilp+evo` (evolution from the ILP optimum), `random`, `uniform`, `nsga2` (a measured
 * Pareto front, seeded from the ILP sweep of Ω); in this order. */
#define BA_STUDY_METHOD_NAMES "ilp|evo|ilp+evo|random|uniform|nsga2"
typedef ba_status (*ba_study_runner_fn)(const ba_problem_t *p, const int *ilp_choice,
                                        const ba_search_opts_t *so, const ba_search_hooks_t *h,
                                        const char *checkpoint, ba_search_result_t *out, ba_error *err);
typedef struct ba_study_method {
    const char *name;
    int needs_sensitivity; /* the ILP on the cost table Ω is its result or its start */
    ba_study_runner_fn run;
} ba_study_method_t;
extern const ba_study_method_t ba_study_methods[];
extern const int ba_study_nmethods;
/* NULL when no method has that name. */
const ba_study_method_t *ba_study_method_find(const char *name);
/* 1 when the study needs a cost table: a sweep, or a method that needs one. */
int ba_study_needs_sensitivity(const ba_study_settings_t *s);

/* Loads the inputs and checks labels, the sensitivity file, pins, ties and
 * budgets (BA_ERR_INFEASIBLE with the ILP's message) without touching a database. */
ba_status ba_study_validate(const ba_study_settings_t *s, ba_error *err);

/* A fresh study name: MODELSTEM-YYYYmmdd-HHMMSS-XXXX. */
void ba_study_name(const char *model, char *out, size_t cap);

/* ---- many workers on one study ----
 * Workers (processes on any host sharing the database) run the same study.
 * Each replays the deterministic search; a batch of measurements the search is
 * about to ask for (a fidelity stage of a generation, the validation of the
 * elites) is first queued in the database (ba_db_work_add), then every worker
 * claims queued measurements one at a time under a lease renewed by a
 * heartbeat, measures them and stores them in the study's memo, until the
 * whole batch is measured; the search then reads the batch from the memo and
 * goes on. A measurement whose worker died (its lease expired) is claimed
 * again and measured again. Selection depends only on the stored measurements,
 * so trials and plan are the same for any number of workers and any kills, and
 * the same as one process's search with the same settings. Trials are stored
 * by whichever worker reaches them first (a trial number is unique; a second
 * writer finds the same trial stored). */
typedef struct ba_study_work {
    const char *worker; /* this worker's name in the queue; NULL: "HOST:PID:RANDOM" */
    double lease_s;     /* a claim's lease (0: BA_STUDY_WORK_LEASE_S); the heartbeat renews it every third */
    int max_attempts;   /* claims of one measurement before the study gives up on it (0: the default) */
} ba_study_work_t;

#define BA_STUDY_WORK_LEASE_S 30.0
#define BA_STUDY_WORK_MAX_ATTEMPTS 3

/* Joins study `name` as one of its workers and works until the search ends;
 * out is the study's result, as `resume` reports it. BA_ERR_INPUT as ba_study_resume. */
ba_status ba_study_work(ba_db_t *db, const char *name, const ba_study_work_t *w,
                        const ba_study_callbacks_t *cb, ba_study_result_t *out, ba_error *err);

/* Creates the study (name NULL = generated) and runs it. A study of that name
 * that already exists is refused (BA_ERR_INPUT: "use `bitalloc resume`").
 * On a shared database (PostgreSQL) search and resume work as one worker of
 * the study (ba_study_work with the defaults), so workers may join them. */
ba_status ba_study_search(ba_db_t *db, const char *study, const ba_study_settings_t *s,
                          const ba_study_callbacks_t *cb, ba_study_result_t *out, ba_error *err);
/* The same, run as a worker of the study with w's lease and attempts when w is non-NULL
 * (NULL: as ba_study_search). */
ba_status ba_study_search_as(ba_db_t *db, const char *study, const ba_study_settings_t *s,
                             const ba_study_work_t *w, const ba_study_callbacks_t *cb, ba_study_result_t *out,
                             ba_error *err);
/* Continues study `name` from the database. BA_ERR_INPUT when the study is
 * absent, or the model, data, labels or sensitivity file changed (sha256). */
ba_status ba_study_resume(ba_db_t *db, const char *name, const ba_study_callbacks_t *cb,
                          ba_study_result_t *out, ba_error *err);

/* ---- calibration ---- */

/* Per-tensor ranges of the activations quant/ fake-quantizes (ba_quant_act_targets)
 * on the evaluator's samples (FP model; whole batches only when the model fixes
 * its batch size). ranges: m->nvalues entries, all written; count > 0 exactly for
 * the values to fake-quantize (a target that never held a finite value stays float). */
ba_status ba_study_calibrate_acts(const ba_evaluator_t *ev, const ba_model_t *m, ba_act_range_t *ranges,
                                  ba_error *err);

/* ---- export (a stored trial as a plan or file) ---- */

/* The plan of stored trial t (names[i] gets t->w_bits[i], nnames layers) under the
 * study's quantizer, with its metrics, its objective and validation values in the
 * study's metric (ba_study_info_t.metric; NULL or "" = none recorded) and the search
 * block (method, budgets, seed) from the settings; BA_ERR_INPUT naming the study and
 * trial when it does not fit m. */
ba_status ba_study_trial_plan(const ba_model_t *m, const char *study, const char *metric,
                              const char *const *names, int nnames, const ba_trial_t *t,
                              const ba_study_settings_t *s, ba_plan_t **out, ba_error *err);
/* The layers' MACs at the study's shapes (ba_eval_resolve_costs: its --input-shape
 * specs, else its data's shapes) when it stored shapes or the model's own
 * declaration leaves them unknown, so an exported plan carries the figures the search used. */
ba_status ba_study_export_resolve_costs(ba_model_t *m, const ba_study_settings_t *s, ba_error *err);
/* Activation ranges for a QDQ export with activations quantized: loads the study's
 * data, checks its digest against data_sha256 when that is non-empty (BA_ERR_INPUT
 * naming the data when it changed) and calibrates on the FP model.
 * *ranges: m->nvalues entries, caller frees. */
ba_status ba_study_export_calibrate(const ba_model_t *m, const ba_study_settings_t *s,
                                    const char *data_sha256, ba_act_range_t **ranges, ba_error *err);

/* The best trial of study sid (ba_db_trials_query best: the order of `trials --best`, `studies`
 * and `export --trial best`) as a choice on p (name, the study's, for the errors): *t and *n as
 * ba_db_trials_query gives them (free with ba_db_trials_free) and *choice, p->nlayers indices
 * (free; NULL on an early error). An error when there is no complete trial or it does not fit p. */
ba_status ba_study_best_choice(ba_db_t *db, int64_t sid, const ba_problem_t *p, const char *name,
                               ba_trial_t **t, int *n, int **choice, ba_error *err);

#endif
