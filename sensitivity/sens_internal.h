/* Private helpers shared by the estimator files: the calibration-data binding
 * (dataset inputs -> model inputs, batches honouring a static batch size),
 * table allocation, and the estimator entry points ba_sens_compute dispatches to. */
#ifndef BA_SENSITIVITY_SENS_INTERNAL_H
#define BA_SENSITIVITY_SENS_INTERNAL_H

#include "quant/wcache.h"
#include "sensitivity/sensitivity.h"

typedef struct sens_ctx {
    const ba_model_t *m;
    const ba_dataset_t *ds; /* NULL for data-free */
    const int64_t *labels;  /* NULL or one per used sample */
    const ba_sens_opts_t *o;
    int bits[BA_SENS_MAX_BITS + 1]; /* the table's widths, then BA_SENS_REF_BITS when not among them */
    int nbits;
    int k_ref;     /* index of BA_SENS_REF_BITS in bits */
    double *cost;  /* nlayers × nbits: Ω filled by weight / act / measured / fisher */
    int64_t n;     /* samples used (whole batches only for a static batch axis) */
    int64_t batch; /* samples per run */
    int *ds_idx;   /* per model input: dataset input index */
    int *axes;     /* per model input: its sample axis, -1 for a constant (ba_grad_opts_t.sample_axes) */
    ba_wcache_t *wc;
    uint64_t work_done, work_total; /* progress */
    const char *loss_name;          /* what the estimator used ("ce", "mse", "kl"), static string */
    const char *loss_on;            /* the value its loss reads ("logits", "output"), static; NULL = none */
} sens_ctx_t;

/* Batches over the c->n used samples, and the sample count of batch b: all
 * c->batch but the last, which is short when the batch axis is dynamic. */
int64_t sens_nbatch(const sens_ctx_t *c);
int64_t sens_batch_len(const sens_ctx_t *c, int64_t b);

/* Inputs for samples [start, start+count): one new ref per model input,
 * float inputs as float32 (cast when the file holds another float type). */
ba_status sens_batch_inputs(const sens_ctx_t *c, int64_t start, int64_t count, ba_tensor_t **inputs,
                            ba_error *err);
void sens_inputs_free(const sens_ctx_t *c, ba_tensor_t **inputs);
void sens_progress(sens_ctx_t *c, uint64_t add);

/* A table for m's layers and c's bits; costs zeroed, se/top_eig NaN. */
ba_status sens_table_new(const ba_model_t *m, const int *bits, int nbits, const char *method,
                         ba_sens_table_t **out, ba_error *err);

/* These fill c->cost; ba_sens_compute copies it out, score = Ω(l, 4)/params_l. */
ba_status sens_weight(sens_ctx_t *c, ba_error *err);
ba_status sens_act(sens_ctx_t *c, ba_error *err);
ba_status sens_measured(sens_ctx_t *c, ba_error *err);
ba_status sens_fisher(sens_ctx_t *c, ba_sens_table_t *t, ba_error *err);
ba_status sens_hessian(sens_ctx_t *c, ba_sens_table_t *t, ba_error *err);
ba_status sens_lrp(sens_ctx_t *c, ba_sens_table_t *t, ba_error *err);

#endif
