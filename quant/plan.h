/* Quantization plans (SPEC §9, "bitalloc.plan/1"): the per-layer bit-widths a
 * search chose, with the quantizer settings, totals, metrics and provenance.
 * Read, written, checked against a model, and converted to/from bit arrays. */
#ifndef BA_QUANT_PLAN_H
#define BA_QUANT_PLAN_H

#include <stdint.h>

#include "model/model.h"
#include "quant/quant.h"

#define BA_PLAN_FORMAT "bitalloc.plan/1"

typedef struct ba_plan_layer {
    char *name; /* the layer (initializer) name */
    char *node; /* consuming node */
    char *op;   /* its op_type */
    int64_t params;
    int64_t macs;
    int w_bits;
    int a_bits; /* 0 = null (activations stay float) */
} ba_plan_layer_t;

/* One model input's shape that the plan's macs/bops hold for (one sample). */
typedef struct ba_plan_shape {
    char *name;
    int ndim;
    int64_t dims[BA_MAX_DIMS];
} ba_plan_shape_t;

typedef struct ba_plan_totals {
    double avg_bits;
    int64_t memory_bytes;
    double bops;       /* NAN = null (the model's MACs were not resolved) */
    double latency_us; /* NAN = null */
    int ninput_shapes; /* totals.input_shapes: {"x": [1, 3, 320, 640]}; 0 = absent */
    ba_plan_shape_t *input_shapes;
} ba_plan_totals_t;

/* Doubles are NAN for null. */
typedef struct ba_plan_metrics {
    double kl;
    double agreement;
    double accuracy;
    char metric[16];   /* the search's --metric ("" = not recorded: the fields below are absent) */
    double objective;  /* that metric on the data the search ranked on */
    double validation; /* that metric on the validation part (NAN = none) */
} ba_plan_metrics_t;

typedef struct ba_plan_budget {
    char *key;    /* "avg-bits", "memory", "bops", "latency" */
    double value; /* in base units (bits, bytes, BOPs, µs) */
} ba_plan_budget_t;

typedef struct ba_plan_search {
    char *study;   /* NULL = null */
    int64_t trial; /* -1 = null */
    char *method;  /* NULL = null */
    int nbudgets;
    ba_plan_budget_t *budgets;
    int has_seed; /* 0: "seed": null */
    int64_t seed; /* >= 0 (JSON integers are signed 64-bit) */
    char *choice; /* what decided an evolution's final choice (JSON object text); NULL = absent */
} ba_plan_search_t;

typedef struct ba_plan {
    char *file; /* where it was read from (for messages); NULL when built */
    char *model_path;
    char sha256[65]; /* of the model file; "" when unknown */
    ba_quant_cfg_t quantizer;
    int nlayers;
    ba_plan_layer_t *layers;
    ba_plan_totals_t totals;
    ba_plan_metrics_t *metrics; /* NULL = null */
    ba_plan_search_t *search;   /* NULL = null */
} ba_plan_t;

/* Parses a plan file. Bad JSON, a wrong type or a missing field is
 * BA_ERR_INPUT naming the file and the field ("plan.json: layers[2].w_bits:
 * expected an integer"). Widths are checked by ba_plan_validate. */
ba_status ba_plan_read(const char *path, ba_plan_t **out, ba_error *err);
/* Writes the plan with the key order of SPEC §9 (atomically: temp file + rename). */
ba_status ba_plan_write(const char *path, const ba_plan_t *plan, ba_error *err);
/* The same text ba_plan_write writes (caller frees). */
ba_status ba_plan_to_json(const ba_plan_t *plan, char **text, ba_error *err);

/* Checks a plan against a model: every plan layer is a quantizable layer of
 * m (same params), every layer of m is in the plan once, widths are 2..8, 16
 * or 32, every layer's a_bits equals quantizer.act_bits (one activation width
 * per model), and (check_sha) the model sha256 matches. BA_ERR_INPUT naming the
 * plan file and the layer or field otherwise. */
ba_status ba_plan_validate(const ba_plan_t *plan, const ba_model_t *m, int check_sha, ba_error *err);

/* A plan's totals are never believed: avg_bits, memory_bytes and bops are recomputed
 * from its layers' widths and quantizer on m (quant/cost.c) and replace plan->totals
 * (latency_us is kept: it needs a latency table or profile). *differed = 1 when the
 * file's figures disagreed, with msg ("FILE: totals.avg_bits 3, but its layers give 4")
 * for the caller to warn with. Call after ba_plan_validate. */
ba_status ba_plan_check_totals(ba_plan_t *plan, const ba_model_t *m, int *differed, char *msg, size_t cap,
                               ba_error *err);

/* A plan for w_bits[l] of each of m's layers; totals through quant/cost.c,
 * a_bits = cfg->act_bits, no metrics, no search info. cfg NULL = defaults. */
ba_status ba_plan_from_bits(const ba_model_t *m, const int *w_bits, const ba_quant_cfg_t *cfg,
                            ba_plan_t **out, ba_error *err);
/* bits_out[l] = the plan's w_bits for each of m's layers (by name). */
ba_status ba_plan_bits(const ba_plan_t *plan, const ba_model_t *m, int *bits_out, ba_error *err);

/* Attach metrics (NAN = null) and search info (copies the strings; study,
 * method NULL = null; trial < 0 = null; seed < 0 = null). */
ba_status ba_plan_set_metrics(ba_plan_t *plan, double kl, double agreement, double accuracy, ba_error *err);
/* Records the search metric's name and its values (after ba_plan_set_metrics). */
/* Records search.choice (record: a JSON object as text, copied; needs search set first). */
ba_status ba_plan_set_choice(ba_plan_t *plan, const char *record, ba_error *err);
ba_status ba_plan_set_objective(ba_plan_t *plan, const char *metric, double value, double validation,
                                ba_error *err);
ba_status ba_plan_set_search(ba_plan_t *plan, const char *study, int64_t trial, const char *method,
                             int nbudgets, const char *const *budget_keys, const double *budget_values,
                             int64_t seed, ba_error *err);

void ba_plan_free(ba_plan_t *plan);

#endif
