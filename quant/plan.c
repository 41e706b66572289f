/* bitalloc.plan/1 files (SPEC §9) through jansson: a strict reader that names
 * the file and the field at fault, a writer with SPEC's key order (one layer
 * per line, like the SPEC example), and the checks against a loaded model. */
#include "quant/plan.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/outfile.h"
#include "core/util.h"
#include "quant/cost.h"

#define SHA256_HEX_LEN 64
#define FIELD_MAX 256

static void free_search(ba_plan_search_t *s) {
    if (!s) return;
    for (int i = 0; i < s->nbudgets; i++) free(s->budgets[i].key);
    free(s->budgets);
    free(s->study);
    free(s->method);
    free(s->choice);
    free(s);
}

void ba_plan_free(ba_plan_t *p) {
    if (!p) return;
    for (int i = 0; i < p->nlayers; i++) {
        free(p->layers[i].name);
        free(p->layers[i].node);
        free(p->layers[i].op);
    }
    free(p->layers);
    for (int i = 0; i < p->totals.ninput_shapes; i++) free(p->totals.input_shapes[i].name);
    free(p->totals.input_shapes);
    free_search(p->search);
    free(p->metrics);
    free(p->model_path);
    free(p->file);
    free(p);
}

static const char *plan_file(const ba_plan_t *p) {
    return p->file ? p->file : "plan";
}

/* ------------------------------------------------------------- reading */

typedef enum { K_STRING, K_INT, K_NUMBER, K_OBJECT, K_ARRAY } kind_t;

static const char *kind_name(kind_t k) {
    static const char *names[] = {"a string", "an integer", "a number", "an object", "an array"};
    return names[k];
}

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static int is_kind(const json_t *v, kind_t k) {
    switch (k) {
    case K_STRING: return json_is_string(v);
    case K_INT: return json_is_integer(v);
    case K_NUMBER: return json_is_number(v);
    case K_OBJECT: return json_is_object(v);
    default: return json_is_array(v);
    }
}

/* obj[key] of kind k; where = the path of obj ("" for the top level) for messages.
 * nullable: a JSON null (or, for optional sections, absence) gives *out = NULL. */
static ba_status field(const char *file, const json_t *obj, const char *where, const char *key, kind_t k,
                       int nullable, json_t **out, ba_error *err) {
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    const char *dot = where[0] ? "." : "";
    if (!v) return ba_error_set(err, BA_ERR_INPUT, "%s: %s%s%s: missing field", file, where, dot, key);
    if (json_is_null(v) && nullable) return BA_OK;
    if (!is_kind(v, k))
        return ba_error_set(err, BA_ERR_INPUT, "%s: %s%s%s: expected %s%s, got %s", file, where, dot, key,
                            kind_name(k), nullable ? " or null" : "", json_type_name(v));
    *out = v;
    return BA_OK;
}

static ba_status str_field(const char *file, const json_t *obj, const char *where, const char *key,
                           int nullable, char **dst, ba_error *err) {
    json_t *v;
    BA_TRY(field(file, obj, where, key, K_STRING, nullable, &v, err));
    *dst = NULL;
    if (!v) return BA_OK;
    *dst = ba_strdup(json_string_value(v), err);
    return *dst ? BA_OK : BA_ERR_NOMEM;
}

static ba_status int_field(const char *file, const json_t *obj, const char *where, const char *key,
                           int64_t lo, int64_t hi, int64_t *dst, ba_error *err) {
    json_t *v;
    BA_TRY(field(file, obj, where, key, K_INT, 0, &v, err));
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return ba_error_set(err, BA_ERR_INPUT, "%s: %s%s%s: %lld outside %lld..%lld", file, where,
                            where[0] ? "." : "", key, (long long)x, (long long)lo, (long long)hi);
    *dst = (int64_t)x;
    return BA_OK;
}

/* A number or null (NAN). */
static ba_status num_field(const char *file, const json_t *obj, const char *where, const char *key,
                           int nullable, double *dst, ba_error *err) {
    json_t *v;
    BA_TRY(field(file, obj, where, key, K_NUMBER, nullable, &v, err));
    *dst = v ? json_number_value(v) : NAN;
    return BA_OK;
}

/* Re-labels a config parse error with the file and field. */
static ba_status cfg_field(const char *file, const json_t *q, const char *key,
                           ba_status (*parse)(const char *, ba_quant_cfg_t *, ba_error *),
                           ba_quant_cfg_t *cfg, ba_error *err) {
    json_t *v;
    BA_TRY(field(file, q, "quantizer", key, K_STRING, 0, &v, err));
    ba_error perr;
    if (parse(json_string_value(v), cfg, &perr) != BA_OK) {
        const char *why = strstr(perr.msg, ": ");
        return ba_error_set(err, BA_ERR_INPUT, "%s: quantizer.%s: %s", file, key, why ? why + 2 : perr.msg);
    }
    return BA_OK;
}

static ba_status read_layers(const char *file, const json_t *arr, ba_plan_t *p, ba_error *err) {
    size_t n = json_array_size(arr);
    if (n > (size_t)INT32_MAX) return ba_error_set(err, BA_ERR_INPUT, "%s: layers: too many entries", file);
    p->layers = ba_calloc(n ? n : 1, sizeof *p->layers, err);
    if (!p->layers) return BA_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        char where[FIELD_MAX];
        snprintf(where, sizeof where, "layers[%zu]", i);
        if (!json_is_object(o))
            return ba_error_set(err, BA_ERR_INPUT, "%s: %s: expected an object, got %s", file, where,
                                json_type_name(o));
        ba_plan_layer_t *l = &p->layers[i];
        p->nlayers = (int)i + 1; /* freed with the plan from here on */
        BA_TRY(str_field(file, o, where, "name", 0, &l->name, err));
        snprintf(where, sizeof where, "layers[%zu] (%s)", i, l->name);
        BA_TRY(str_field(file, o, where, "node", 0, &l->node, err));
        BA_TRY(str_field(file, o, where, "op", 0, &l->op, err));
        BA_TRY(int_field(file, o, where, "params", 0, INT64_MAX, &l->params, err));
        BA_TRY(int_field(file, o, where, "macs", 0, INT64_MAX, &l->macs, err));
        int64_t b;
        BA_TRY(int_field(file, o, where, "w_bits", INT32_MIN, INT32_MAX, &b, err));
        l->w_bits = (int)b;
        json_t *a;
        BA_TRY(field(file, o, where, "a_bits", K_INT, 1, &a, err));
        if (a) {
            BA_TRY(int_field(file, o, where, "a_bits", 1, INT32_MAX, &b, err));
            l->a_bits = (int)b;
        }
    }
    return BA_OK;
}

static ba_status read_search(const char *file, const json_t *s, ba_plan_t *p, ba_error *err) {
    ba_plan_search_t *ps = p->search = ba_calloc(1, sizeof *p->search, err);
    if (!ps) return BA_ERR_NOMEM;
    ps->trial = -1;
    BA_TRY(str_field(file, s, "search", "study", 1, &ps->study, err));
    json_t *v;
    BA_TRY(field(file, s, "search", "trial", K_INT, 1, &v, err));
    if (v) BA_TRY(int_field(file, s, "search", "trial", 0, INT64_MAX, &ps->trial, err));
    BA_TRY(str_field(file, s, "search", "method", 1, &ps->method, err));
    BA_TRY(field(file, s, "search", "budgets", K_OBJECT, 1, &v, err));
    if (v && json_object_size(v)) {
        ps->budgets = ba_calloc(json_object_size(v), sizeof *ps->budgets, err);
        if (!ps->budgets) return BA_ERR_NOMEM;
        const char *key;
        json_t *val;
        json_object_foreach(v, key, val) {
            if (!json_is_number(val))
                return ba_error_set(err, BA_ERR_INPUT, "%s: search.budgets.%s: expected a number, got %s",
                                    file, key, json_type_name(val));
            ba_plan_budget_t *b = &ps->budgets[ps->nbudgets];
            b->key = ba_strdup(key, err);
            if (!b->key) return BA_ERR_NOMEM;
            b->value = json_number_value(val);
            ps->nbudgets++;
        }
    }
    BA_TRY(field(file, s, "search", "seed", K_INT, 1, &v, err));
    if (v) {
        BA_TRY(int_field(file, s, "search", "seed", 0, INT64_MAX, &ps->seed, err));
        ps->has_seed = 1;
    }
    v = NULL;
    if (json_object_get(s, "choice")) BA_TRY(field(file, s, "search", "choice", K_OBJECT, 1, &v, err));
    if (v && !(ps->choice = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17))))
        return ba_error_set(err, BA_ERR_NOMEM, "%s: search.choice: out of memory", file);
    return BA_OK;
}

/* totals.input_shapes (optional): {"NAME": [d0, d1, …], …}. */
static ba_status read_input_shapes(const char *file, json_t *totals, ba_plan_t *p, ba_error *err) {
    json_t *o = json_object_get(totals, "input_shapes");
    if (!o || json_is_null(o)) return BA_OK;
    if (!json_is_object(o))
        return ba_error_set(err, BA_ERR_INPUT, "%s: totals.input_shapes: expected an object, got %s", file,
                            json_type_name(o));
    size_t n = json_object_size(o);
    p->totals.input_shapes = ba_calloc(n + 1, sizeof *p->totals.input_shapes, err);
    if (!p->totals.input_shapes) return BA_ERR_NOMEM;
    const char *key;
    json_t *a;
    json_object_foreach(o, key, a) {
        ba_plan_shape_t *sh = &p->totals.input_shapes[p->totals.ninput_shapes];
        if (!(sh->name = ba_strdup(key, err))) return BA_ERR_NOMEM;
        p->totals.ninput_shapes++;
        if (!json_is_array(a) || json_array_size(a) > BA_MAX_DIMS)
            return ba_error_set(err, BA_ERR_INPUT,
                                "%s: totals.input_shapes.%s: expected an array of at most %d dims", file, key,
                                BA_MAX_DIMS);
        size_t i;
        json_t *d;
        json_array_foreach(a, i, d) {
            if (!json_is_integer(d) || json_integer_value(d) < 0)
                return ba_error_set(err, BA_ERR_INPUT,
                                    "%s: totals.input_shapes.%s[%zu]: expected a dimension", file, key, i);
            sh->dims[i] = json_integer_value(d);
        }
        sh->ndim = (int)json_array_size(a);
    }
    return BA_OK;
}

static ba_status read_plan(const char *file, const json_t *root, ba_plan_t *p, ba_error *err) {
    if (!json_is_object(root))
        return ba_error_set(err, BA_ERR_INPUT, "%s: expected a JSON object, got %s", file,
                            json_type_name(root));
    json_t *v, *o;
    BA_TRY(field(file, root, "", "format", K_STRING, 0, &v, err));
    if (strcmp(json_string_value(v), BA_PLAN_FORMAT) != 0)
        return ba_error_set(err, BA_ERR_INPUT, "%s: format: '%s' is not %s", file, json_string_value(v),
                            BA_PLAN_FORMAT);

    BA_TRY(field(file, root, "", "model", K_OBJECT, 0, &o, err));
    BA_TRY(str_field(file, o, "model", "path", 0, &p->model_path, err));
    BA_TRY(field(file, o, "model", "sha256", K_STRING, 0, &v, err));
    const char *sha = json_string_value(v);
    size_t sl = strlen(sha);
    int hex = 1;
    for (size_t i = 0; i < sl; i++) hex &= isxdigit((unsigned char)sha[i]) != 0;
    if ((sl != SHA256_HEX_LEN && sl != 0) || !hex)
        return ba_error_set(err, BA_ERR_INPUT, "%s: model.sha256: expected %d hex digits", file,
                            SHA256_HEX_LEN);
    for (size_t i = 0; i <= sl; i++) p->sha256[i] = (char)tolower((unsigned char)sha[i]);

    BA_TRY(field(file, root, "", "quantizer", K_OBJECT, 0, &o, err));
    p->quantizer = ba_quant_cfg_default();
    BA_TRY(cfg_field(file, o, "scheme", ba_quant_cfg_parse_scheme, &p->quantizer, err));
    BA_TRY(cfg_field(file, o, "granularity", ba_quant_cfg_parse_granularity, &p->quantizer, err));
    BA_TRY(cfg_field(file, o, "clip", ba_quant_cfg_parse_clip, &p->quantizer, err));
    /* Optional: absent for bitalloc's own packing (plans written before it existed included). */
    if (json_object_get(o, "backend"))
        BA_TRY(cfg_field(file, o, "backend", ba_quant_cfg_parse_backend, &p->quantizer, err));
    BA_TRY(field(file, o, "quantizer", "act_bits", K_INT, 1, &v, err));
    if (v) {
        int64_t ab;
        BA_TRY(int_field(file, o, "quantizer", "act_bits", 1, INT32_MAX, &ab, err));
        p->quantizer.act_bits = (int)ab;
    }

    BA_TRY(field(file, root, "", "layers", K_ARRAY, 0, &v, err));
    BA_TRY(read_layers(file, v, p, err));

    BA_TRY(field(file, root, "", "totals", K_OBJECT, 0, &o, err));
    BA_TRY(num_field(file, o, "totals", "avg_bits", 0, &p->totals.avg_bits, err));
    BA_TRY(int_field(file, o, "totals", "memory_bytes", 0, INT64_MAX, &p->totals.memory_bytes, err));
    BA_TRY(num_field(file, o, "totals", "bops", 1, &p->totals.bops, err));
    BA_TRY(num_field(file, o, "totals", "latency_us", 1, &p->totals.latency_us, err));
    BA_TRY(read_input_shapes(file, o, p, err));

    /* metrics and search are optional sections: absent or null. */
    o = json_object_get(root, "metrics");
    if (o && !json_is_null(o)) {
        if (!json_is_object(o))
            return ba_error_set(err, BA_ERR_INPUT, "%s: metrics: expected an object or null, got %s", file,
                                json_type_name(o));
        p->metrics = ba_calloc(1, sizeof *p->metrics, err);
        if (!p->metrics) return BA_ERR_NOMEM;
        BA_TRY(num_field(file, o, "metrics", "kl", 1, &p->metrics->kl, err));
        BA_TRY(num_field(file, o, "metrics", "agreement", 1, &p->metrics->agreement, err));
        BA_TRY(num_field(file, o, "metrics", "accuracy", 1, &p->metrics->accuracy, err));
        const json_t *mv = json_object_get(o, "metric");
        p->metrics->objective = p->metrics->validation = NAN;
        if (json_is_string(mv) && strlen(json_string_value(mv)) < sizeof p->metrics->metric) {
            snprintf(p->metrics->metric, sizeof p->metrics->metric, "%s", json_string_value(mv));
            if (json_object_get(o, "objective"))
                BA_TRY(num_field(file, o, "metrics", "objective", 1, &p->metrics->objective, err));
            if (json_object_get(o, "validation"))
                BA_TRY(num_field(file, o, "metrics", "validation", 1, &p->metrics->validation, err));
        }
    }
    o = json_object_get(root, "search");
    if (o && !json_is_null(o)) {
        if (!json_is_object(o))
            return ba_error_set(err, BA_ERR_INPUT, "%s: search: expected an object or null, got %s", file,
                                json_type_name(o));
        BA_TRY(read_search(file, o, p, err));
    }
    return BA_OK;
}

ba_status ba_plan_read(const char *path, ba_plan_t **out, ba_error *err) {
    *out = NULL;
    uint8_t *data;
    size_t size;
    BA_TRY(ba_file_read(path, &data, &size, err));
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    free(data);
    if (!root)
        return ba_error_set(err, BA_ERR_INPUT, "%s: bad JSON at line %d column %d: %s", path, jerr.line,
                            jerr.column, jerr.text);
    ba_plan_t *p = ba_calloc(1, sizeof *p, err);
    ba_status st = p ? BA_OK : BA_ERR_NOMEM;
    if (p) {
        p->totals.latency_us = NAN;
        p->file = ba_strdup(path, err);
        st = p->file ? read_plan(path, root, p, err) : BA_ERR_NOMEM;
    }
    json_decref(root);
    if (st != BA_OK) {
        ba_plan_free(p);
        return st;
    }
    *out = p;
    return BA_OK;
}

/* ------------------------------------------------------------- writing */

/* Appends v as compact one-line JSON and releases it; NULL v (a failed
 * json_string on invalid UTF-8) marks the buffer bad. */
static void sb_json(ba_sbuf_t *b, json_t *v, int *bad) {
    if (!v) {
        *bad = 1;
        return;
    }
    char *s = json_dumps(v, JSON_ENCODE_ANY);
    json_decref(v);
    if (!s) {
        b->oom = 1;
        return;
    }
    ba_sbuf_put(b, s);
    free(s);
}

static json_t *num_or_null(double x) {
    return isfinite(x) ? json_real(x) : json_null();
}
static json_t *str_or_null(const char *s) {
    return s ? json_string(s) : json_null();
}
static json_t *bits_or_null(int b) {
    return b > 0 ? json_integer(b) : json_null();
}

/* json_object_set_new that records a NULL value (invalid UTF-8) as bad. */
static void put(json_t *o, const char *key, json_t *v, int *bad) {
    if (!v)
        *bad = 1;
    else
        json_object_set_new(o, key, v);
}

ba_status ba_plan_to_json(const ba_plan_t *p, char **text, ba_error *err) {
    *text = NULL;
    ba_sbuf_t b = {0};
    int bad = 0;
    char gran[64];
    json_t *o;

    ba_sbuf_put(&b, "{\"format\": \"" BA_PLAN_FORMAT "\",\n \"model\": ");
    o = json_object();
    put(o, "path", json_string(p->model_path ? p->model_path : ""), &bad);
    put(o, "sha256", json_string(p->sha256), &bad);
    sb_json(&b, o, &bad);

    ba_sbuf_put(&b, ",\n \"quantizer\": ");
    o = json_object();
    put(o, "scheme", json_string(ba_quant_scheme_name(p->quantizer.scheme)), &bad);
    put(o, "granularity", json_string(ba_quant_granularity_str(&p->quantizer, gran, sizeof gran)), &bad);
    put(o, "clip", json_string(ba_quant_clip_name(p->quantizer.clip)), &bad);
    put(o, "act_bits", bits_or_null(p->quantizer.act_bits), &bad);
    /* Only for llama.cpp targets: totals then count the ggml types' real bits per weight. */
    if (p->quantizer.backend != BA_BACKEND_ONNX)
        put(o, "backend", json_string(ba_quant_backend_name(p->quantizer.backend)), &bad);
    sb_json(&b, o, &bad);

    ba_sbuf_put(&b, ",\n \"layers\": [");
    for (int i = 0; i < p->nlayers; i++) {
        const ba_plan_layer_t *l = &p->layers[i];
        ba_sbuf_put(&b, i ? ",\n  " : "\n  ");
        o = json_object();
        put(o, "name", json_string(l->name ? l->name : ""), &bad);
        put(o, "node", json_string(l->node ? l->node : ""), &bad);
        put(o, "op", json_string(l->op ? l->op : ""), &bad);
        put(o, "params", json_integer(l->params), &bad);
        put(o, "macs", json_integer(l->macs), &bad);
        put(o, "w_bits", json_integer(l->w_bits), &bad);
        put(o, "a_bits", bits_or_null(l->a_bits), &bad);
        sb_json(&b, o, &bad);
    }
    ba_sbuf_put(&b, p->nlayers ? "\n ],\n \"totals\": " : "],\n \"totals\": ");
    o = json_object();
    put(o, "avg_bits", json_real(p->totals.avg_bits), &bad);
    put(o, "memory_bytes", json_integer(p->totals.memory_bytes), &bad);
    put(o, "bops", num_or_null(p->totals.bops), &bad);
    put(o, "latency_us", num_or_null(p->totals.latency_us), &bad);
    if (p->totals.ninput_shapes) {
        json_t *shp = json_object();
        for (int i = 0; i < p->totals.ninput_shapes; i++) {
            const ba_plan_shape_t *sh = &p->totals.input_shapes[i];
            json_t *a = json_array();
            for (int d = 0; d < sh->ndim; d++) json_array_append_new(a, json_integer(sh->dims[d]));
            put(shp, sh->name, a, &bad);
        }
        put(o, "input_shapes", shp, &bad);
    }
    sb_json(&b, o, &bad);

    ba_sbuf_put(&b, ",\n \"metrics\": ");
    if (p->metrics) {
        o = json_object();
        put(o, "kl", num_or_null(p->metrics->kl), &bad);
        put(o, "agreement", num_or_null(p->metrics->agreement), &bad);
        put(o, "accuracy", num_or_null(p->metrics->accuracy), &bad);
        if (p->metrics->metric[0]) {
            put(o, "metric", json_string(p->metrics->metric), &bad);
            put(o, "objective", num_or_null(p->metrics->objective), &bad);
            put(o, "validation", num_or_null(p->metrics->validation), &bad);
        }
        sb_json(&b, o, &bad);
    } else {
        ba_sbuf_put(&b, "null");
    }

    ba_sbuf_put(&b, ",\n \"search\": ");
    if (p->search) {
        const ba_plan_search_t *s = p->search;
        o = json_object();
        put(o, "study", str_or_null(s->study), &bad);
        put(o, "trial", s->trial >= 0 ? json_integer(s->trial) : json_null(), &bad);
        put(o, "method", str_or_null(s->method), &bad);
        json_t *bud = json_object();
        for (int i = 0; i < s->nbudgets; i++)
            put(bud, s->budgets[i].key, num_or_null(s->budgets[i].value), &bad);
        put(o, "budgets", bud, &bad);
        put(o, "seed", s->has_seed ? json_integer(s->seed) : json_null(), &bad);
        if (s->choice) {
            json_error_t je;
            json_t *ch = json_loads(s->choice, 0, &je);
            if (ch) put(o, "choice", ch, &bad);
        }
        sb_json(&b, o, &bad);
    } else {
        ba_sbuf_put(&b, "null");
    }
    ba_sbuf_put(&b, "}\n");
    if (b.oom) {
        free(b.s);
        return ba_error_set(err, BA_ERR_NOMEM, "plan: out of memory while formatting");
    }
    if (bad) {
        free(b.s);
        return ba_error_set(err, BA_ERR_INPUT,
                            "plan: a name is not valid UTF-8 and cannot be written to JSON");
    }
    *text = b.s;
    return BA_OK;
}

ba_status ba_plan_write(const char *path, const ba_plan_t *p, ba_error *err) {
    char *text;
    BA_TRY(ba_plan_to_json(p, &text, err));
    ba_status st = ba_out_write(path, text, strlen(text), err);
    free(text);
    return st;
}

/* ---------------------------------------------------- checks and builders */

static int model_layer_index(const ba_model_t *m, const char *name) {
    for (int i = 0; i < m->nlayers; i++)
        if (strcmp(m->layers[i].name, name) == 0) return i;
    return -1;
}

ba_status ba_plan_validate(const ba_plan_t *p, const ba_model_t *m, int check_sha, ba_error *err) {
    const char *file = plan_file(p);
    const char *mpath = m->path ? m->path : "the model";
    if (check_sha && strcmp(p->sha256, m->sha256) != 0)
        return ba_error_set(
            err, BA_ERR_INPUT,
            "%s: model.sha256 %s does not match %s (sha256 %s): the plan was made for another model "
            "file",
            file, p->sha256[0] ? p->sha256 : "(empty)", mpath, m->sha256);
    const int act = p->quantizer.act_bits;
    if (act != 0 && !ba_bits_valid(act))
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: quantizer.act_bits: %d is not a width (" BA_BITS_WIDTHS ")", file, act);
    if (p->quantizer.granularity == BA_GRAN_GROUP && p->quantizer.group <= 0)
        return ba_error_set(err, BA_ERR_INPUT, "%s: quantizer.granularity: group size must be positive",
                            file);
    int *seen = ba_calloc(m->nlayers > 0 ? (size_t)m->nlayers : 1, sizeof *seen, err);
    if (!seen) return BA_ERR_NOMEM;
    ba_status st = BA_OK;
    for (int i = 0; i < p->nlayers && st == BA_OK; i++) {
        const ba_plan_layer_t *l = &p->layers[i];
        int k = model_layer_index(m, l->name);
        if (k < 0)
            st = ba_error_set(err, BA_ERR_INPUT, "%s: layer '%s' is not a quantizable layer of %s", file,
                              l->name, mpath);
        else if (seen[k]++)
            st = ba_error_set(err, BA_ERR_INPUT, "%s: layer '%s' appears more than once", file, l->name);
        else if (!ba_bits_valid(l->w_bits))
            st = ba_error_set(err, BA_ERR_INPUT,
                              "%s: layer '%s': w_bits %d is not a width (" BA_BITS_WIDTHS ")", file, l->name,
                              l->w_bits);
        else if (l->a_bits != 0 && !ba_bits_valid(l->a_bits))
            st = ba_error_set(err, BA_ERR_INPUT,
                              "%s: layer '%s': a_bits %d is not a width (" BA_BITS_WIDTHS ")", file, l->name,
                              l->a_bits);
        else if (l->a_bits != act) /* one activation width for the whole model: per-layer a_bits is refused */
            st = ba_error_set(
                err, BA_ERR_INPUT,
                "%s: layer '%s': a_bits %s%.0d differs from quantizer.act_bits %s%.0d (activations "
                "take one width for every layer, quantizer.act_bits; per-layer a_bits are not "
                "supported)",
                file, l->name, l->a_bits ? "" : "null", l->a_bits, act ? "" : "null", act);
        else if (l->params != m->layers[k].params)
            st = ba_error_set(err, BA_ERR_INPUT, "%s: layer '%s': params %lld, but %s has %lld", file,
                              l->name, (long long)l->params, mpath, (long long)m->layers[k].params);
    }
    for (int k = 0; k < m->nlayers && st == BA_OK; k++)
        if (!seen[k])
            st = ba_error_set(err, BA_ERR_INPUT, "%s: layer '%s' of %s is missing from the plan", file,
                              m->layers[k].name, mpath);
    free(seen);
    return st;
}

/* Totals written with %.17g read back exactly; this only absorbs a hand-typed "4.0" vs 4. */
#define BA_PLAN_TOTALS_RTOL 1e-9

static int totals_differ(double file, double truth) {
    return !(fabs(file - truth) <= BA_PLAN_TOTALS_RTOL * fmax(fabs(truth), 1.0));
}

ba_status ba_plan_check_totals(ba_plan_t *p, const ba_model_t *m, int *differed, char *msg, size_t cap,
                               ba_error *err) {
    *differed = 0;
    if (cap) msg[0] = '\0';
    int *bits = ba_calloc(m->nlayers > 0 ? (size_t)m->nlayers : 1, sizeof *bits, err);
    if (!bits) return BA_ERR_NOMEM;
    ba_cost_t c;
    ba_status st = ba_plan_bits(p, m, bits, err);
    if (st == BA_OK) st = ba_cost_config(m, bits, &p->quantizer, &c, err);
    free(bits);
    if (st != BA_OK) return st;
    const ba_plan_totals_t *t = &p->totals;
    const char *file = plan_file(p);
    /* MACs unknown here (dynamic dimensions and no data or --input-shape): the plan's own
     * BOPs, computed at its totals.input_shapes, cannot be checked and are kept. */
    if (!isfinite(c.bops)) c.bops = t->bops;
    if (totals_differ(t->avg_bits, c.avg_bits))
        snprintf(msg, cap, "%s: totals.avg_bits %.17g, but its layers give %.17g", file, t->avg_bits,
                 c.avg_bits);
    else if (t->memory_bytes != c.memory_bytes)
        snprintf(msg, cap, "%s: totals.memory_bytes %lld, but its layers give %lld", file,
                 (long long)t->memory_bytes, (long long)c.memory_bytes);
    else if (totals_differ(t->bops, c.bops))
        snprintf(msg, cap, "%s: totals.bops %.17g, but its layers give %.17g", file, t->bops, c.bops);
    else
        return BA_OK;
    *differed = 1;
    p->totals.avg_bits = c.avg_bits;
    p->totals.memory_bytes = c.memory_bytes;
    p->totals.bops = c.bops;
    return BA_OK;
}

ba_status ba_plan_from_bits(const ba_model_t *m, const int *w_bits, const ba_quant_cfg_t *cfg,
                            ba_plan_t **out, ba_error *err) {
    *out = NULL;
    ba_quant_cfg_t dflt = ba_quant_cfg_default();
    if (!cfg) cfg = &dflt;
    ba_cost_t cost;
    BA_TRY(ba_cost_config(m, w_bits, cfg, &cost, err));
    ba_plan_t *p = ba_calloc(1, sizeof *p, err);
    if (!p) return BA_ERR_NOMEM;
    p->quantizer = *cfg;
    snprintf(p->sha256, sizeof p->sha256, "%s", m->sha256);
    p->totals.avg_bits = cost.avg_bits;
    p->totals.memory_bytes = cost.memory_bytes;
    p->totals.bops = cost.bops;
    p->totals.latency_us = NAN;
    if (m->cost_shapes && m->ninputs > 0) {
        p->totals.input_shapes = ba_calloc((size_t)m->ninputs, sizeof *p->totals.input_shapes, err);
        if (!p->totals.input_shapes) {
            ba_plan_free(p);
            return BA_ERR_NOMEM;
        }
        for (int k = 0; k < m->ninputs; k++) {
            ba_plan_shape_t *sh = &p->totals.input_shapes[k];
            const ba_value_t *v = &m->values[m->inputs[k]];
            if (!(sh->name = ba_strdup(v->name, err))) {
                ba_plan_free(p);
                return BA_ERR_NOMEM;
            }
            p->totals.ninput_shapes = k + 1;
            sh->ndim = v->ndim > 0 ? v->ndim : 0;
            memcpy(sh->dims, m->cost_shapes + (size_t)k * BA_MAX_DIMS, sizeof sh->dims);
        }
    }
    p->model_path = ba_strdup(m->path ? m->path : "", err);
    p->layers =
        p->model_path ? ba_calloc(m->nlayers > 0 ? (size_t)m->nlayers : 1, sizeof *p->layers, err) : NULL;
    if (!p->layers) {
        ba_plan_free(p);
        return BA_ERR_NOMEM;
    }
    for (int i = 0; i < m->nlayers; i++) {
        const ba_layer_t *l = &m->layers[i];
        ba_plan_layer_t *pl = &p->layers[i];
        p->nlayers = i + 1;
        const char *node = (l->node >= 0 && l->node < m->nnodes) ? m->nodes[l->node].name : "";
        pl->name = ba_strdup(l->name, err);
        pl->node = ba_strdup(node ? node : "", err);
        pl->op = ba_strdup(l->op ? l->op : "", err);
        if (!pl->name || !pl->node || !pl->op) {
            ba_plan_free(p);
            return BA_ERR_NOMEM;
        }
        pl->params = l->params;
        pl->macs = l->macs;
        pl->w_bits = w_bits[i];
        pl->a_bits = cfg->act_bits;
    }
    *out = p;
    return BA_OK;
}

ba_status ba_plan_bits(const ba_plan_t *p, const ba_model_t *m, int *bits_out, ba_error *err) {
    for (int k = 0; k < m->nlayers; k++) {
        int found = -1;
        for (int i = 0; i < p->nlayers && found < 0; i++)
            if (strcmp(p->layers[i].name, m->layers[k].name) == 0) found = i;
        if (found < 0)
            return ba_error_set(err, BA_ERR_INPUT, "%s: layer '%s' of %s is missing from the plan",
                                plan_file(p), m->layers[k].name, m->path ? m->path : "the model");
        bits_out[k] = p->layers[found].w_bits;
    }
    return BA_OK;
}

ba_status ba_plan_set_metrics(ba_plan_t *p, double kl, double agreement, double accuracy, ba_error *err) {
    if (!p->metrics) p->metrics = ba_calloc(1, sizeof *p->metrics, err);
    if (!p->metrics) return BA_ERR_NOMEM;
    p->metrics->kl = kl;
    p->metrics->agreement = agreement;
    p->metrics->accuracy = accuracy;
    p->metrics->objective = p->metrics->validation = NAN;
    return BA_OK;
}

ba_status ba_plan_set_choice(ba_plan_t *p, const char *record, ba_error *err) {
    if (!p->search) return ba_error_set(err, BA_ERR_INPUT, "plan: search.choice without a search section");
    char *t = record ? ba_strdup(record, err) : NULL;
    if (record && !t) return BA_ERR_NOMEM;
    free(p->search->choice);
    p->search->choice = t;
    return BA_OK;
}

ba_status ba_plan_set_objective(ba_plan_t *p, const char *metric, double value, double validation,
                                ba_error *err) {
    if (!p->metrics) BA_TRY(ba_plan_set_metrics(p, NAN, NAN, NAN, err));
    snprintf(p->metrics->metric, sizeof p->metrics->metric, "%s", metric);
    p->metrics->objective = value;
    p->metrics->validation = validation;
    return BA_OK;
}

ba_status ba_plan_set_search(ba_plan_t *p, const char *study, int64_t trial, const char *method, int nbudgets,
                             const char *const *budget_keys, const double *budget_values, int64_t seed,
                             ba_error *err) {
    ba_plan_search_t *s = ba_calloc(1, sizeof *s, err);
    if (!s) return BA_ERR_NOMEM;
    free_search(p->search);
    p->search = s; /* freed with the plan whatever happens below */
    s->trial = trial >= 0 ? trial : -1;
    s->has_seed = seed >= 0;
    s->seed = seed >= 0 ? seed : 0;
    if (study && !(s->study = ba_strdup(study, err))) return BA_ERR_NOMEM;
    if (method && !(s->method = ba_strdup(method, err))) return BA_ERR_NOMEM;
    if (nbudgets > 0) {
        s->budgets = ba_calloc((size_t)nbudgets, sizeof *s->budgets, err);
        if (!s->budgets) return BA_ERR_NOMEM;
        for (int i = 0; i < nbudgets; i++) {
            s->budgets[i].key = ba_strdup(budget_keys[i], err);
            if (!s->budgets[i].key) return BA_ERR_NOMEM;
            s->budgets[i].value = budget_values[i];
            s->nbudgets = i + 1;
        }
    }
    return BA_OK;
}
