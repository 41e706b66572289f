/* Exports a configuration (a bitalloc.plan/1 plan) in the formats other tools
 * read (SPEC §9): plan JSON, CSV, HAWQ bit_config, NVIDIA ModelOpt quant_cfg,
 * llama.cpp --tensor-type lines; plus the plan of one stored configuration. The
 * study's settings and calibration that `export` also needs are study/'s (study.h). */
#ifndef BA_QUANT_EXPORT_H
#define BA_QUANT_EXPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/error.h"
#include "model/model.h"
#include "quant/namemap.h"
#include "quant/plan.h"
#include "quant/quant.h"

typedef enum {
    BA_EXPORT_PLAN,     /* bitalloc.plan/1 JSON */
    BA_EXPORT_CSV,      /* layer,w_bits,a_bits,params */
    BA_EXPORT_HAWQ,     /* HAWQ bit_config: HAWQ module name -> bits (weights and activations) */
    BA_EXPORT_MODELOPT, /* {"quant_cfg": {"default": {"enable": false}, "*MODULE*weight_quantizer": {...}}} */
    BA_EXPORT_LLAMA,    /* ^TENSOR$=TYPE lines for llama-quantize --tensor-type-file */
    BA_EXPORT_MODELOPT_PY, /* the modelopt config as a Python module (QUANT_CFG, integer block_sizes keys) */
} ba_export_fmt_t;

/* What a text export needs beyond the plan: the names of layers in the
 * consumer's world (quant/namemap.h) and where warnings go. */
typedef void (*ba_export_warn_fn)(void *ctx, const char *msg);
typedef struct ba_export_opts {
    const ba_namemap_t *names; /* --name-map (NULL: the exporter's conventions only) */
    ba_export_warn_fn warn;    /* each warning, one line without "warning: " (NULL: dropped) */
    void *warn_ctx;
} ba_export_opts_t;

/* How many layers an export could address in its consumer. */
typedef struct ba_export_report {
    int nlayers;   /* layers in the plan */
    int named;     /* layers written under a name the consumer matches */
    int nwarnings; /* warnings given (unnamed layers included) */
    /* llama: the plan's average weight bits as written (Σ b·params / Σ params)
     * and what llama-quantize stores them in (ggml bits per weight, core/ggml_types.h). */
    double nominal_bits, ggml_bits;
} ba_export_report_t;

/* "plan", "csv", "hawq", "modelopt", "modelopt-py", "llama"; BA_ERR_INPUT naming --format otherwise. */
ba_status ba_export_format_parse(const char *name, ba_export_fmt_t *out, ba_error *err);

/* The ggml type name for a weight width (core/ggml_types.h). NULL for no type. */
const char *ba_export_ggml_type(int bits);

/* The ModelOpt module name of a layer: the initializer name without a trailing
 * ".weight" (PyTorch exports name a module's weight "<module>.weight", and the
 * quantizer is "<module>.weight_quantizer"). Writes into buf; returns buf. */
const char *ba_export_module_name(const char *layer, char *buf, size_t cap);

/* The text of plan in format f (caller frees). m is needed by hawq, modelopt
 * and llama (layer names and ops) and may be NULL for plan and csv. */
ba_status ba_export_text(const ba_plan_t *plan, const ba_model_t *m, ba_export_fmt_t f, char **text,
                         ba_error *err);

/* ba_export_text with opts (NULL: none) filling *report (may be NULL). */
ba_status ba_export_text_opts(const ba_plan_t *plan, const ba_model_t *m, ba_export_fmt_t f,
                              const ba_export_opts_t *opts, ba_export_report_t *report, char **text,
                              ba_error *err);

/* ba_export_text_opts then ba_out_write. */
ba_status ba_export_write_opts(const char *path, const ba_plan_t *plan, const ba_model_t *m,
                               ba_export_fmt_t f, const ba_export_opts_t *opts, ba_export_report_t *report,
                               ba_error *err);

/* ba_export_text then ba_out_write (core/outfile.h: atomic replace, devices written through). */
ba_status ba_export_write(const char *path, const ba_plan_t *plan, const ba_model_t *m, ba_export_fmt_t f,
                          ba_error *err);

/* The plan of one stored configuration: names[i] gets w_bits[i] (n layers, in
 * any order); every layer of m must be named exactly once, else BA_ERR_INPUT
 * naming the layer. Totals through quant/cost.c; a_bits = cfg->act_bits. */
ba_status ba_export_plan_from_named_bits(const ba_model_t *m, const char *const *names, const int *w_bits,
                                         int n, const ba_quant_cfg_t *cfg, ba_plan_t **out, ba_error *err);

/* A GGUF tensor name as the llama-quantize pattern that matches exactly it: anchored (^…$),
 * metacharacters escaped, and every byte the CLI's lowercasing would change written \xHH. */
void ba_export_llama_pattern(FILE *fp, const char *name);

#endif
