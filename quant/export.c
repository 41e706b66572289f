/* Writers of a plan in other tools' formats (docs/export.md has each format and
 * the reasons behind its choices) and the builder of a stored trial's plan.
 * Every file goes through core/outfile.h: a unique temporary file beside PATH,
 * synced and renamed, so a reader never sees a partial file and a failure
 * leaves nothing behind. */
#include "quant/export.h"

#include "core/ggml_types.h"
#include "core/outfile.h"
#include "core/util.h"
#include "quant/export_tools.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* json_dumps flags: 2-space indent, insertion order, reals that round-trip. */
#define EXPORT_JSON_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17))

static const struct {
    const char *name;
    ba_export_fmt_t fmt;
} FORMATS[] = {{"plan", BA_EXPORT_PLAN},
               {"csv", BA_EXPORT_CSV},
               {"hawq", BA_EXPORT_HAWQ},
               {"modelopt", BA_EXPORT_MODELOPT},
               {"modelopt-py", BA_EXPORT_MODELOPT_PY},
               {"llama", BA_EXPORT_LLAMA}};

ba_status ba_export_format_parse(const char *name, ba_export_fmt_t *out, ba_error *err) {
    for (size_t i = 0; i < sizeof FORMATS / sizeof FORMATS[0]; i++)
        if (name && strcmp(name, FORMATS[i].name) == 0) {
            *out = FORMATS[i].fmt;
            return BA_OK;
        }
    return ba_error_set(err, BA_ERR_INPUT,
                        "--format: unknown export format '%s' (plan|csv|hawq|modelopt|modelopt-py|llama)",
                        name ? name : "");
}

const char *ba_export_ggml_type(int bits) {
    return ba_ggml_type_name_for_bits(bits);
}

const char *ba_export_module_name(const char *layer, char *buf, size_t cap) {
    static const char suffix[] = ".weight";
    size_t n = strlen(layer), s = sizeof suffix - 1;
    if (n > s && strcmp(layer + n - s, suffix) == 0) n -= s;
    snprintf(buf, cap, "%.*s", (int)n, layer);
    return buf;
}

/* ------------------------------------------------------------ growable text */

static ba_status sb_finish(ba_sbuf_t *b, char **text, ba_error *err) {
    if (b->oom || !b->s) {
        free(b->s);
        return ba_error_set(err, BA_ERR_NOMEM, "export: out of memory");
    }
    *text = b->s;
    return BA_OK;
}

/* ------------------------------------------------------------------ formats */

static ba_status csv_text(const ba_plan_t *p, char **text, ba_error *err) {
    ba_sbuf_t b = {0};
    ba_sbuf_put(&b, "layer,w_bits,a_bits,params\n");
    for (int i = 0; i < p->nlayers; i++) {
        const ba_plan_layer_t *l = &p->layers[i];
        char tail[96];
        ba_sbuf_csv_field(&b, l->name);
        if (l->a_bits > 0)
            snprintf(tail, sizeof tail, ",%d,%d,%lld\n", l->w_bits, l->a_bits, (long long)l->params);
        else /* float activations: an empty field, as SPEC §9's a_bits null */
            snprintf(tail, sizeof tail, ",%d,,%lld\n", l->w_bits, (long long)l->params);
        ba_sbuf_put(&b, tail);
    }
    return sb_finish(&b, text, err);
}

static int model_layer(const ba_model_t *m, const char *name) {
    for (int i = 0; i < m->nlayers; i++)
        if (strcmp(m->layers[i].name, name) == 0) return i;
    return -1;
}

ba_status ba_export_text_opts(const ba_plan_t *plan, const ba_model_t *m, ba_export_fmt_t f,
                              const ba_export_opts_t *opts, ba_export_report_t *report, char **text,
                              ba_error *err) {
    ba_export_report_t dummy;
    if (!report) report = &dummy;
    memset(report, 0, sizeof *report);
    report->nlayers = plan->nlayers;
    *text = NULL;
    switch (f) {
    case BA_EXPORT_PLAN: report->named = plan->nlayers; return ba_plan_to_json(plan, text, err);
    case BA_EXPORT_CSV: report->named = plan->nlayers; return csv_text(plan, text, err);
    case BA_EXPORT_HAWQ: return ba_export_hawq_text(plan, m, opts, report, text, err);
    case BA_EXPORT_MODELOPT: return ba_export_modelopt_text(plan, m, 0, opts, report, text, err);
    case BA_EXPORT_MODELOPT_PY: return ba_export_modelopt_text(plan, m, 1, opts, report, text, err);
    case BA_EXPORT_LLAMA: return ba_export_llama_text(plan, m, opts, report, text, err);
    }
    return ba_error_set(err, BA_ERR_INPUT, "export: unknown format %d", (int)f);
}

ba_status ba_export_text(const ba_plan_t *plan, const ba_model_t *m, ba_export_fmt_t f, char **text,
                         ba_error *err) {
    return ba_export_text_opts(plan, m, f, NULL, NULL, text, err);
}

ba_status ba_export_write_opts(const char *path, const ba_plan_t *plan, const ba_model_t *m,
                               ba_export_fmt_t f, const ba_export_opts_t *opts, ba_export_report_t *report,
                               ba_error *err) {
    char *text;
    BA_TRY(ba_export_text_opts(plan, m, f, opts, report, &text, err));
    ba_status st = ba_out_write(path, text, strlen(text), err);
    free(text);
    return st;
}

ba_status ba_export_write(const char *path, const ba_plan_t *plan, const ba_model_t *m, ba_export_fmt_t f,
                          ba_error *err) {
    return ba_export_write_opts(path, plan, m, f, NULL, NULL, err);
}

/* ------------------------------------------------------------ trial → plan */

ba_status ba_export_plan_from_named_bits(const ba_model_t *m, const char *const *names, const int *w_bits,
                                         int n, const ba_quant_cfg_t *cfg, ba_plan_t **out, ba_error *err) {
    *out = NULL;
    int *bits = ba_malloc((m->nlayers > 0 ? (size_t)m->nlayers : 1) * sizeof *bits, err);
    if (!bits) return BA_ERR_NOMEM;
    for (int k = 0; k < m->nlayers; k++) bits[k] = 0;
    ba_status st = BA_OK;
    for (int i = 0; st == BA_OK && i < n; i++) {
        int k = model_layer(m, names[i]);
        if (k < 0)
            st = ba_error_set(err, BA_ERR_INPUT, "layer '%s' is not a quantizable layer of %s", names[i],
                              m->path ? m->path : "the model");
        else if (bits[k])
            st = ba_error_set(err, BA_ERR_INPUT, "layer '%s' is named twice", names[i]);
        else if (!ba_bits_valid(w_bits[i]))
            st = ba_error_set(err, BA_ERR_INPUT, "layer '%s': %d bits is not a width (" BA_BITS_WIDTHS ")",
                              names[i], w_bits[i]);
        else
            bits[k] = w_bits[i];
    }
    for (int k = 0; st == BA_OK && k < m->nlayers; k++)
        if (!bits[k])
            st = ba_error_set(err, BA_ERR_INPUT, "layer '%s' of %s has no bit-width", m->layers[k].name,
                              m->path ? m->path : "the model");
    if (st == BA_OK) st = ba_plan_from_bits(m, bits, cfg, out, err);
    free(bits);
    return st;
}
