/* Writers of a plan in other tools' formats (docs/export.md has each format and
 * the reasons behind its choices) and the builder of a stored trial's plan.
 * Every file goes through core/outfile.h: a unique temporary file beside PATH,
 * synced and renamed, so a reader never sees a partial file and a failure
 * leaves nothing behind. */
#include "quant/export.h"

#include "core/outfile.h"
#include "eval/dataset.h"
#include "eval/evaluate.h"
#include "quant/apply.h"
#include "quant/export_tools.h"
#include "quant/ggml.h"

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
    const ba_ggml_type_t *t = ba_ggml_type_for_bits(bits);
    return t ? t->name : NULL;
}

const char *ba_export_module_name(const char *layer, char *buf, size_t cap) {
    static const char suffix[] = ".weight";
    size_t n = strlen(layer), s = sizeof suffix - 1;
    if (n > s && strcmp(layer + n - s, suffix) == 0) n -= s;
    snprintf(buf, cap, "%.*s", (int)n, layer);
    return buf;
}

/* ------------------------------------------------------------ growable text */

typedef struct {
    char *s;
    size_t n, cap;
    int bad;
} sbuf_t;

static void sb_putn(sbuf_t *b, const char *s, size_t n) {
    if (b->bad) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->bad = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void sb_put(sbuf_t *b, const char *s) {
    sb_putn(b, s, strlen(s));
}

static ba_status sb_finish(sbuf_t *b, char **text, ba_error *err) {
    if (b->bad || !b->s) {
        free(b->s);
        return ba_error_set(err, BA_ERR_NOMEM, "export: out of memory");
    }
    *text = b->s;
    return BA_OK;
}

/* One CSV field (RFC 4180): quoted when it holds a comma, quote, CR or LF. */
static void sb_csv_field(sbuf_t *b, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        sb_put(b, s);
        return;
    }
    sb_put(b, "\"");
    for (const char *p = s; *p; p++) {
        sb_putn(b, p, 1);
        if (*p == '"') sb_put(b, "\""); /* a quote inside is doubled */
    }
    sb_put(b, "\"");
}

/* ------------------------------------------------------------------ formats */

static ba_status csv_text(const ba_plan_t *p, char **text, ba_error *err) {
    sbuf_t b = {0};
    sb_put(&b, "layer,w_bits,a_bits,params\n");
    for (int i = 0; i < p->nlayers; i++) {
        const ba_plan_layer_t *l = &p->layers[i];
        char tail[96];
        sb_csv_field(&b, l->name);
        if (l->a_bits > 0)
            snprintf(tail, sizeof tail, ",%d,%d,%lld\n", l->w_bits, l->a_bits, (long long)l->params);
        else /* float activations: an empty field, as SPEC §9's a_bits null */
            snprintf(tail, sizeof tail, ",%d,,%lld\n", l->w_bits, (long long)l->params);
        sb_put(&b, tail);
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

/* ---------------------------------------------------------------- settings */

static ba_status settings_str(const json_t *o, const char *key, const char *what, const char **out,
                              ba_error *err) {
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v)) return BA_OK;
    if (!json_is_string(v)) return ba_error_set(err, BA_ERR_INPUT, "%s: %s: expected a string", what, key);
    *out = json_string_value(v);
    return BA_OK;
}

ba_status ba_export_settings_parse(const char *json, const char *what, ba_export_settings_t *out,
                                   ba_error *err) {
    memset(out, 0, sizeof *out);
    out->quantizer = ba_quant_cfg_default();
    out->seed = -1;
    json_error_t je;
    json_t *root = json_loads(json ? json : "{}", 0, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return ba_error_set(err, BA_ERR_INPUT, "%s: not a JSON object (%s)", what,
                            root ? "wrong type" : je.text);
    }
    ba_status st = BA_OK;
    const char *s;
    json_t *q = json_object_get(root, "quantizer");
    if (q && !json_is_null(q)) {
        if (!json_is_object(q))
            st = ba_error_set(err, BA_ERR_INPUT, "%s: quantizer: expected an object", what);
        if (st == BA_OK && (st = settings_str(q, "scheme", what, &s, err)) == BA_OK && s)
            st = ba_quant_cfg_parse_scheme(s, &out->quantizer, err);
        if (st == BA_OK && (st = settings_str(q, "granularity", what, &s, err)) == BA_OK && s)
            st = ba_quant_cfg_parse_granularity(s, &out->quantizer, err);
        if (st == BA_OK && (st = settings_str(q, "clip", what, &s, err)) == BA_OK && s)
            st = ba_quant_cfg_parse_clip(s, &out->quantizer, err);
        json_t *a = st == BA_OK ? json_object_get(q, "act_bits") : NULL;
        if (a && !json_is_null(a)) {
            if (!json_is_integer(a) || !ba_quant_bits_valid((int)json_integer_value(a)))
                st =
                    ba_error_set(err, BA_ERR_INPUT, "%s: quantizer.act_bits: expected null or a width", what);
            else
                out->quantizer.act_bits = (int)json_integer_value(a);
        }
        if (st != BA_OK && err && strncmp(err->msg, what, strlen(what)) != 0)
            ba_error_prefix(err, "%s", what);
    }
    if (st == BA_OK && (st = settings_str(root, "method", what, &s, err)) == BA_OK && s)
        snprintf(out->method, sizeof out->method, "%s", s);
    json_t *b = st == BA_OK ? json_object_get(root, "budgets") : NULL;
    if (b && !json_is_null(b)) {
        if (!json_is_object(b)) st = ba_error_set(err, BA_ERR_INPUT, "%s: budgets: expected an object", what);
        const char *k;
        json_t *v;
        json_object_foreach(b, k, v) {
            if (st != BA_OK) break;
            if (out->nbudgets == BA_EXPORT_MAX_BUDGETS || strlen(k) >= sizeof out->budget_keys[0]) {
                st = ba_error_set(err, BA_ERR_INPUT, "%s: budgets: unexpected key '%s'", what, k);
                break;
            }
            if (!json_is_number(v) || !isfinite(json_number_value(v))) {
                st = ba_error_set(err, BA_ERR_INPUT, "%s: budgets.%s: expected a number", what, k);
                break;
            }
            snprintf(out->budget_keys[out->nbudgets], sizeof out->budget_keys[0], "%s", k);
            out->budget_values[out->nbudgets++] = json_number_value(v);
        }
    }
    json_t *data = st == BA_OK ? json_object_get(root, "data") : NULL;
    if (data && json_is_string(data)) { /* a single spec stored bare */
        out->data = ba_calloc(1, sizeof *out->data, err);
        if (!out->data || !(out->data[0] = ba_strdup(json_string_value(data), err)))
            st = BA_ERR_NOMEM;
        else
            out->ndata = 1;
    } else if (data && json_is_array(data) && json_array_size(data) > 0) {
        size_t i;
        json_t *v;
        out->data = ba_calloc(json_array_size(data), sizeof *out->data, err);
        if (!out->data) st = BA_ERR_NOMEM;
        json_array_foreach(data, i, v) {
            if (st != BA_OK) break;
            if (!json_is_string(v))
                st = ba_error_set(err, BA_ERR_INPUT, "%s: data[%zu]: expected a string", what, i);
            else if (!(out->data[i] = ba_strdup(json_string_value(v), err)))
                st = BA_ERR_NOMEM;
            else
                out->ndata = (int)i + 1;
        }
    }
    json_t *shp = st == BA_OK ? json_object_get(root, "input_shapes") : NULL;
    if (shp && json_is_array(shp) && json_array_size(shp) > 0) {
        size_t i;
        json_t *v;
        out->input_shapes = ba_calloc(json_array_size(shp), sizeof *out->input_shapes, err);
        if (!out->input_shapes) st = BA_ERR_NOMEM;
        json_array_foreach(shp, i, v) {
            if (st != BA_OK) break;
            if (!json_is_string(v))
                st = ba_error_set(err, BA_ERR_INPUT, "%s: input_shapes[%zu]: expected a string", what, i);
            else if (!(out->input_shapes[i] = ba_strdup(json_string_value(v), err)))
                st = BA_ERR_NOMEM;
            else
                out->ninput_shapes = (int)i + 1;
        }
    }
    json_t *axes = st == BA_OK ? json_object_get(root, "sample_axes") : NULL;
    if (axes && json_is_array(axes) && json_array_size(axes) > 0) {
        size_t i;
        json_t *v;
        out->sample_axes = ba_calloc(json_array_size(axes), sizeof *out->sample_axes, err);
        if (!out->sample_axes) st = BA_ERR_NOMEM;
        json_array_foreach(axes, i, v) {
            if (st != BA_OK) break;
            if (!json_is_string(v))
                st = ba_error_set(err, BA_ERR_INPUT, "%s: sample_axes[%zu]: expected a string", what, i);
            else if (!(out->sample_axes[i] = ba_strdup(json_string_value(v), err)))
                st = BA_ERR_NOMEM;
            else
                out->nsample_axes = (int)i + 1;
        }
    }
    json_t *emb = json_object_get(root, "include-embeddings");
    out->include_embeddings = emb && json_is_true(emb);
    json_t *seed = st == BA_OK ? json_object_get(root, "seed") : NULL;
    if (seed && json_is_integer(seed) && json_integer_value(seed) >= 0) out->seed = json_integer_value(seed);
    json_decref(root);
    if (st != BA_OK) ba_export_settings_free(out);
    return st;
}

void ba_export_settings_free(ba_export_settings_t *s) {
    for (int i = 0; s && i < s->ndata; i++) free(s->data[i]);
    for (int i = 0; s && i < s->ninput_shapes; i++) free(s->input_shapes[i]);
    if (s) free(s->input_shapes);
    for (int i = 0; s && i < s->nsample_axes; i++) free(s->sample_axes[i]);
    if (s) {
        free(s->data);
        free(s->sample_axes);
        s->data = NULL;
        s->ndata = 0;
        s->sample_axes = NULL;
        s->nsample_axes = 0;
    }
}

ba_status ba_export_resolve_costs(ba_model_t *m, const ba_export_settings_t *set, ba_error *err) {
    if (m->cost_shapes && !set->ninput_shapes) return BA_OK;
    if (set->ndata <= 0 && !set->ninput_shapes) return BA_OK;
    ba_dataset_t *ds = NULL;
    if (set->ndata > 0)
        BA_TRY(ba_dataset_load_axes((const char *const *)set->data, set->ndata, (const char *const *)set->sample_axes,
                                    set->nsample_axes, &ds, err));
    ba_status st = ba_eval_resolve_costs(m, ds, (const char *const *)set->input_shapes, set->ninput_shapes, err);
    ba_dataset_free(ds);
    return st;
}

ba_status ba_export_calibrate(const ba_model_t *m, const char *const *specs, int nspecs,
                              const char *const *axes, int naxes, const char *data_sha256,
                              ba_act_range_t **ranges, ba_error *err) {
    *ranges = NULL;
    if (nspecs <= 0)
        return ba_error_set(err, BA_ERR_INPUT,
                            "activation ranges need the calibration data, and the study stores none");
    ba_dataset_t *ds = NULL;
    ba_evaluator_t *ev = NULL;
    BA_TRY(ba_dataset_load_axes(specs, nspecs, axes, naxes, &ds, err));
    char sha[65];
    ba_dataset_sha256(ds, sha);
    ba_status st = BA_OK;
    if (data_sha256 && data_sha256[0] && strcmp(sha, data_sha256) != 0)
        st = ba_error_set(err, BA_ERR_INPUT, "%s: the calibration data changed since the study was made",
                          ba_dataset_path(ds, 0));
    if (st == BA_OK) st = ba_evaluator_new(m, ds, NULL, &ev, err);
    ba_act_range_t *r = NULL;
    if (st == BA_OK && !(r = ba_calloc(m->nvalues > 0 ? (size_t)m->nvalues : 1, sizeof *r, err)))
        st = BA_ERR_NOMEM;
    if (st == BA_OK) st = ba_quant_calibrate_acts(ev, m, r, err);
    ba_evaluator_free(ev);
    ba_dataset_free(ds);
    if (st != BA_OK) {
        free(r);
        return st;
    }
    *ranges = r;
    return BA_OK;
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
        else if (!ba_quant_bits_valid(w_bits[i]))
            st = ba_error_set(err, BA_ERR_INPUT, "layer '%s': %d bits is not a width (2..8, 16 or 32)",
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
