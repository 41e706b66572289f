/* Sensitivity estimators of SPEC §5: per layer l a score s_l and a cost table
 * Ω(l,b) over candidate bit-widths, plus the JSON/CSV forms `bitalloc
 * sensitivity` prints, the readers behind --sensitivity-file, and the key of the
 * cache (which study/ keeps in the database). */
#ifndef BA_SENSITIVITY_SENSITIVITY_H
#define BA_SENSITIVITY_SENSITIVITY_H

#include <stdint.h>
#include <stdio.h>

#include "core/error.h"
#include "eval/dataset.h"
#include "eval/metrics.h"
#include "model/model.h"
#include "quant/quant.h"

typedef enum {
    BA_SENS_HESSIAN = 0, /* default */
    BA_SENS_LRP,
    BA_SENS_FISHER,
    BA_SENS_ACT,
    BA_SENS_WEIGHT,
    BA_SENS_MEASURED,
} ba_sens_method_t;

typedef enum { BA_SENS_LOSS_AUTO = 0, BA_SENS_LOSS_CE, BA_SENS_LOSS_MSE } ba_sens_loss_t;

/* Defaults of SPEC §5 and the CLI. */
#define BA_SENS_DEFAULT_TOL 0.05
#define BA_SENS_DEFAULT_PROBES 200
/* Width whose cost per parameter is the score of the methods that compute Ω
 * directly (weight, act, measured): s_l = Ω(l, 4) / params_l. */
#define BA_SENS_REF_BITS 4
#define BA_SENS_MAX_BITS 16 /* candidate widths in one table (2..8, 16, 32 fit) */

typedef struct ba_sens_layer {
    char *name;
    int64_t params;
    double score;
    double se;      /* standard error of score; NaN = null (not estimated) */
    double top_eig; /* top eigenvalue of the layer's Hessian block when a file gives it; NaN otherwise */
    int64_t probes; /* hessian: Hutchinson probes used; 0 otherwise */
    double *cost;   /* Ω(l, bits[k]) for k < nbits */
} ba_sens_layer_t;

typedef struct ba_sens_table {
    char *method; /* "hessian", … or what an imported file says */
    char *loss;   /* "ce", "mse", "kl"; NULL = none (weight, act, imported CSV) */
    /* The value fisher/hessian's loss reads: "logits" (the input of a Softmax
     * over the last axis that makes the output: CE is −log p_y) or "output";
     * NULL for the other estimators and files without it. */
    char *loss_on;
    int64_t samples; /* data samples used (0: data-free) */
    int nbits;
    int bits[BA_SENS_MAX_BITS];
    int nlayers;
    ba_sens_layer_t *layers; /* in model layer order */
} ba_sens_table_t;

typedef struct ba_sens_opts {
    const int *bits; /* candidate widths; NULL = 2,3,4,5,6,8 */
    int nbits;
    uint64_t seed;        /* Hutchinson probes */
    double tol;           /* Hutchinson stops when every layer's relative standard error is <= tol */
    int max_probes;       /* at most this many probes (--samples) */
    int per_layer_probes; /* hessian: one probe and HVP per layer (--probe per-layer), not one for all */
    ba_sens_loss_t loss;  /* hessian / fisher / lrp */
    ba_quant_cfg_t quant; /* Q_b */
    int64_t batch; /* samples per forward pass; 0 = BA_EVAL_DEFAULT_BATCH (a static batch dimension wins) */
    int64_t max_data; /* use the first max_data samples (0 = all) */
    ba_metric_t
        metric;     /* measured: the output metric (SPEC §8 --metric; AUTO = the default for the output) */
    int act_direct; /* act: compute E‖ΔW x‖² by running the layer on ΔW, not via Σ (for tests) */
    /* Called as work advances (may be NULL). */
    void (*progress)(void *user, uint64_t done, uint64_t total);
    void *progress_user;
} ba_sens_opts_t;

ba_sens_opts_t ba_sens_opts_default(void);
/* "hessian" … "measured" -> method; BA_ERR_INPUT otherwise. */
ba_status ba_sens_method_parse(const char *s, ba_sens_method_t *out, ba_error *err);
const char *ba_sens_method_name(ba_sens_method_t m);
/* The estimators' names in enum order, as the --method / --sensitivity choice list. */
#define BA_SENS_METHOD_NAMES "hessian|lrp|fisher|act|weight|measured"
/* 1 when the method reads calibration data (all but weight). */
int ba_sens_method_needs_data(ba_sens_method_t m);

/* Computes the table. ds may be NULL for `weight`; labels (NULL or one per
 * sample of ds) select the CE loss. Errors: BA_ERR_INPUT for a model with no
 * quantizable layer, non-finite weights or data, labels of the wrong length
 * or range; BA_ERR_UNSUPPORTED when an estimator cannot handle an op. */
ba_status ba_sens_compute(const ba_model_t *m, const ba_dataset_t *ds, const int64_t *labels, int64_t nlabels,
                          ba_sens_method_t method, const ba_sens_opts_t *opts, ba_sens_table_t **out,
                          ba_error *err);
void ba_sens_table_free(ba_sens_table_t *t); /* NULL-safe */

/* Index of bits in t->bits, or -1. */
int ba_sens_bits_index(const ba_sens_table_t *t, int bits);
/* ‖Q_b(W_l) − W_l‖²_F summed in double (the weight estimator's Ω). */
ba_status ba_sens_weight_error(const ba_model_t *m, int layer, int bits, const ba_quant_cfg_t *cfg,
                               double *out, ba_error *err);

/* ---- text forms (SPEC §5) ---- */
/* {"method", "loss", "samples", "layers": [{"name", "params", "score", "stderr", "cost": {"2": …}}]};
 * hessian adds "probes" per layer ("top_eigenvalue" when the table has one). *out malloc'd, ends with a
 * newline. */
ba_status ba_sens_to_json(const ba_sens_table_t *t, char **out, ba_error *err);
ba_status ba_sens_write_json(const ba_sens_table_t *t, FILE *fp, ba_error *err);
/* "layer,bits,cost" header then one row per (layer, bits). */
ba_status ba_sens_write_csv(const ba_sens_table_t *t, FILE *fp, ba_error *err);

/* Reads --sensitivity-file: the JSON above, CSV "layer,bits,cost", or CSV
 * "layer,score" (then Ω(l,b) = score·‖Q_b(W_l) − W_l‖²_F under cfg). The
 * result covers every layer of m in model order and the candidate bits
 * (NULL = 2,3,4,5,6,8); an unknown or missing layer, a missing width, a duplicate
 * row or a bad number is BA_ERR_INPUT naming the file and line or layer. */
ba_status ba_sens_read_file(const char *path, const ba_model_t *m, const int *bits, int nbits,
                            const ba_quant_cfg_t *cfg, ba_sens_table_t **out, ba_error *err);
/* The same for JSON text already in memory; `what` names it in messages. */
ba_status ba_sens_from_json(const char *text, const char *what, const ba_model_t *m, const int *bits,
                            int nbits, ba_sens_table_t **out, ba_error *err);

/* ---- cache (SPEC §7: sensitivities cached by model sha256, method, settings) ---- */
/* key = sha256 of "bitalloc.sens/8" + model sha256 + method + every setting
 * the result depends on (bits, loss, tol, probes, probe mode, seed, quantizer, data
 * samples used, include-embeddings layer set) + data sha256 + labels digest.
 * ds / labels may be NULL. (/2: a dynamic batch axis uses every sample, not
 * whole batches only, so /1 entries may hold fewer samples. /3: hessian
 * probes all layers in one HVP and stops on the relative standard error.) */
void ba_sens_cache_key(const ba_model_t *m, const ba_dataset_t *ds, const int64_t *labels, int64_t nlabels,
                       ba_sens_method_t method, const ba_sens_opts_t *opts, char key[65]);
/* The cache itself (get → compute → put) is study/ (ba_study_sensitivity): sensitivity/ never speaks to the
 * database. */

#endif
