/* Exports a configuration (a bitalloc.plan/1 plan) in the formats other tools
 * read (SPEC §9): plan JSON, CSV, HAWQ bit_config, NVIDIA ModelOpt quant_cfg,
 * llama.cpp --tensor-type lines; plus the plan of one stored configuration. The
 * study's settings and calibration that `export` also needs are study/'s (study.h). */
#ifndef BA_QUANT_EXPORT_H
#define BA_QUANT_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "model/model.h"
#include "quant/plan.h"
#include "quant/quant.h"

typedef enum {
    BA_EXPORT_PLAN,     /* bitalloc.plan/1 JSON */
    BA_EXPORT_CSV,      /* layer,w_bits,a_bits,params */
    BA_EXPORT_HAWQ,     /* JSON object: layer -> bits */
    BA_EXPORT_MODELOPT, /* {"quant_cfg": {"*NAME*weight_quantizer": {...}, "default": {"enable": false}}} */
    BA_EXPORT_LLAMA,    /* NAME=TYPE lines for llama-quantize --tensor-type / --tensor-type-file */
} ba_export_fmt_t;

/* "plan", "csv", "hawq", "modelopt", "llama"; BA_ERR_INPUT naming --format otherwise. */
ba_status ba_export_format_parse(const char *name, ba_export_fmt_t *out, ba_error *err);

/* The ggml type llama-quantize gets for a weight width: 2 q2_k, 3 q3_k, 4 q4_k,
 * 5 q5_k, 6 q6_k, 7 and 8 q8_0 (7 has no ggml type: the next wider one, never
 * fewer bits), 16 f16, 32 f32. NULL for any other width. */
const char *ba_export_ggml_type(int bits);

/* The ModelOpt module name of a layer: the initializer name without a trailing
 * ".weight" (PyTorch exports name a module's weight "<module>.weight", and the
 * quantizer is "<module>.weight_quantizer"). Writes into buf; returns buf. */
const char *ba_export_module_name(const char *layer, char *buf, size_t cap);

/* The text of plan in format f (caller frees). m is needed by modelopt (each
 * layer's output-channel axis, matched by name) and may be NULL otherwise. */
ba_status ba_export_text(const ba_plan_t *plan, const ba_model_t *m, ba_export_fmt_t f, char **text,
                         ba_error *err);

/* ba_export_text then ba_out_write (core/outfile.h: atomic replace, devices written through). */
ba_status ba_export_write(const char *path, const ba_plan_t *plan, const ba_model_t *m, ba_export_fmt_t f,
                          ba_error *err);

/* The plan of one stored configuration: names[i] gets w_bits[i] (n layers, in
 * any order); every layer of m must be named exactly once, else BA_ERR_INPUT
 * naming the layer. Totals through quant/cost.c; a_bits = cfg->act_bits. */
ba_status ba_export_plan_from_named_bits(const ba_model_t *m, const char *const *names, const int *w_bits,
                                         int n, const ba_quant_cfg_t *cfg, ba_plan_t **out, ba_error *err);

#endif
