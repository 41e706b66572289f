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
#include "quant/plan.h"
#include "quant/quant.h"
#include "search/budget.h"
#include "search/evo.h"
#include "search/ilp.h"
#include "search/problem.h"
#include "sensitivity/sensitivity.h"

#define BA_STUDY_MAX_DATA 64
#define BA_STUDY_MAX_RULES 256 /* --pin / --tie flags */

/* What a study is a function of (stored as its settings JSON, WAVE2 format). Paths are absolute. */
typedef struct ba_study_settings {
    char *model;
    int ndata;
    char *data[BA_STUDY_MAX_DATA]; /* "FILE", "NAME=FILE" or "NAME=TYPE:VALUE" */
    int nsample_axes;
    char *sample_axes[BA_STUDY_MAX_DATA]; /* "NAME=K" (--sample-axis); stored only when given */
    char *labels;                 /* NULL = none */
    ba_quant_cfg_t quant;
    ba_budget_set_t budgets;
    int has_sweep;
    ba_budget_sweep_t sweep;
    char method[16];              /* ilp+evo | ilp | evo | random | uniform */
    char sensitivity[16];         /* estimator; "" = none needed (random, uniform, evo) or a file */
    char *sensitivity_file;       /* --sensitivity-file, NULL = none */
    char sensitivity_file_sha256[65];
    int nbits;
    int bits[BA_BITS_MAX_CANDIDATES];
    int npins, nties;
    char *pins[BA_STUDY_MAX_RULES];
    char *ties[BA_STUDY_MAX_RULES];
    uint64_t seed;
    int generations, offspring;
    char *latency_table;          /* NULL = none */
    char *hw;                     /* profile name or path, NULL = none */
    ba_sens_loss_t loss;
    double tol;
    int probes;                   /* --samples: Hutchinson probes */
    int include_embeddings;
    int ninput_shapes;            /* --input-shape NAME=D0xD1x…: costs at these shapes instead of the data's */
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

typedef struct ba_study_progress {
    const char *phase;  /* "sensitivity", "ilp", "fp", "search", "sweep" */
    int64_t done, total;
    double best;        /* best objective so far (NaN before the first) */
    double budget_use;  /* best configuration's first budget value / its limit (NaN when none) */
} ba_study_progress_t;

typedef struct ba_study_callbacks {
    void (*progress)(void *user, const ba_study_progress_t *p);
    void *user;
} ba_study_callbacks_t;

typedef struct ba_study_sweep_point {
    double limit;
    int feasible, pareto;
    int64_t trial;      /* -1 when infeasible */
    double predicted;
    double budget[BA_BUDGET_NKINDS];
    ba_eval_result_t res;
    int *bits;          /* [nlayers] */
} ba_study_sweep_point_t;

typedef struct ba_study_result {
    char study[256];
    int created;          /* 1: this call created the study */
    int was_complete;     /* 1: the study had already finished (resume just reports) */
    char method[16];
    int64_t trial;        /* best trial (-1 for a sweep) */
    int64_t ntrials;
    int64_t nevals;       /* evaluations made by this process */
    ba_eval_result_t res; /* best trial's full-data metrics */
    ba_plan_t *plan;      /* best plan (NULL for a sweep) */
    int nlayers;
    char **layer_names;   /* borrowed from plan or owned when no plan (sweep): see ba_study_result_free */
    int sweep_key;        /* ba_budget_kind_t swept, -1 none */
    int nsweep;
    ba_study_sweep_point_t *sweep;
    double seconds;
    double search_seconds; /* evolution: wall time of the evolution itself, and the part of it */
    double eval_seconds;   /* in evaluations (forward passes); the rest is mutation, selection, checkpoints, DB */
} ba_study_result_t;

void ba_study_result_free(ba_study_result_t *r);

/* Loads the inputs and checks labels, the sensitivity file, pins, ties and
 * budgets (BA_ERR_INFEASIBLE with the ILP's message) without touching a database. */
ba_status ba_study_validate(const ba_study_settings_t *s, ba_error *err);

/* A fresh study name: MODELSTEM-YYYYmmdd-HHMMSS-XXXX. */
void ba_study_name(const char *model, char *out, size_t cap);

/* Creates the study (name NULL = generated) and runs it. A study of that name
 * that already exists is refused (BA_ERR_INPUT: "use `bitalloc resume`"). */
ba_status ba_study_search(ba_db_t *db, const char *study, const ba_study_settings_t *s, const ba_study_callbacks_t *cb,
                        ba_study_result_t *out, ba_error *err);
/* Continues study `name` from the database. BA_ERR_INPUT when the study is
 * absent, or the model, data, labels or sensitivity file changed (sha256). */
ba_status ba_study_resume(ba_db_t *db, const char *name, const ba_study_callbacks_t *cb, ba_study_result_t *out,
                        ba_error *err);

#endif
