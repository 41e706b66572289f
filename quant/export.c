/* Writers of a plan in other tools' formats (docs/export.md has each format and
 * the reasons behind its choices) and the builder of a stored trial's plan.
 * Every file goes through core/outfile.h: a unique temporary file beside PATH,
 * synced and renamed, so a reader never sees a partial file and a failure
 * leaves nothing behind. */
#include "quant/export.h"

#include "core/outfile.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* json_dumps flags: 2-space indent, insertion order, reals that round-trip. */
#define EXPORT_JSON_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17))
/* ModelOpt calibration algorithm written beside quant_cfg: plain max calibration,
 * the one that matches SPEC §3's clip=max quantizer. */
#define MODELOPT_ALGORITHM "max"
#define MODULE_NAME_MAX 1024

static const struct {
    const char *name;
    ba_export_fmt_t fmt;
} FORMATS[] = {{"plan", BA_EXPORT_PLAN},
               {"csv", BA_EXPORT_CSV},
               {"hawq", BA_EXPORT_HAWQ},
               {"modelopt", BA_EXPORT_MODELOPT},
               {"llama", BA_EXPORT_LLAMA}};

ba_status ba_export_format_parse(const char *name, ba_export_fmt_t *out, ba_error *err) {
    for (size_t i = 0; i < sizeof FORMATS / sizeof FORMATS[0]; i++)
        if (name && strcmp(name, FORMATS[i].name) == 0) {
            *out = FORMATS[i].fmt;
            return BA_OK;
        }
    return ba_error_set(err, BA_ERR_INPUT,
                        "--format: unknown export format '%s' (plan|csv|hawq|modelopt|llama)",
                        name ? name : "");
}

const char *ba_export_ggml_type(int bits) {
    switch (bits) {
    case 2: return "q2_k";
    case 3: return "q3_k";
    case 4: return "q4_k";
    case 5: return "q5_k";
    case 6: return "q6_k";
    case 7: /* no 7-bit ggml type: the next wider one keeps at least the chosen precision */
    case 8: return "q8_0";
    case 16: return "f16";
    case 32: return "f32";
    default: return NULL;
    }
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

static ba_status json_text(json_t *root, char **text, ba_error *err) {
    if (!root) return ba_error_set(err, BA_ERR_NOMEM, "export: out of memory");
    char *s = json_dumps(root, EXPORT_JSON_FLAGS);
    json_decref(root);
    if (!s)
        return ba_error_set(err, BA_ERR_INPUT,
                            "export: a layer name is not valid UTF-8 and cannot be written to JSON");
    size_t n = strlen(s);
    char *t = ba_malloc(n + 2, err);
    if (!t) {
        free(s);
        return BA_ERR_NOMEM;
    }
    memcpy(t, s, n);
    t[n] = '\n';
    t[n + 1] = '\0';
    free(s);
    *text = t;
    return BA_OK;
}

/* json_object_set_new that remembers a failure (NULL value or out of memory). */
static void jset(json_t *o, const char *key, json_t *v, int *bad) {
    if (!v || json_object_set_new(o, key, v) != 0) *bad = 1;
}

static ba_status hawq_text(const ba_plan_t *p, char **text, ba_error *err) {
    json_t *root = json_object();
    int bad = !root;
    for (int i = 0; !bad && i < p->nlayers; i++)
        jset(root, p->layers[i].name, json_integer(p->layers[i].w_bits), &bad);
    if (bad) {
        json_decref(root);
        return ba_error_set(err, BA_ERR_INPUT,
                            "export: a layer name is not valid UTF-8 and cannot be written to JSON");
    }
    return json_text(root, text, err);
}

/* fnmatch pattern text for a literal name: * ? [ are wrapped in brackets. */
static void glob_escape(const char *s, char *out, size_t cap) {
    size_t o = 0;
    for (; *s && o + 4 < cap; s++) {
        if (*s == '*' || *s == '?' || *s == '[') {
            out[o++] = '[';
            out[o++] = *s;
            out[o++] = ']';
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
}

static int model_layer(const ba_model_t *m, const char *name) {
    for (int i = 0; i < m->nlayers; i++)
        if (strcmp(m->layers[i].name, name) == 0) return i;
    return -1;
}

/* ModelOpt applies quant_cfg patterns in order and a later match wins; the
 * pattern of layer A also matches layer B's quantizer when A's module name is a
 * substring of B's ("*conv1*" matches "layer1.0.conv1"), which makes A shorter.
 * Writing entries by increasing module-name length puts each layer's own entry
 * after every pattern that also matches it. */
typedef struct {
    int idx;
    size_t len;
} order_t;

static int by_len(const void *a, const void *b) {
    const order_t *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->idx - y->idx;
}

static ba_status modelopt_text(const ba_plan_t *p, const ba_model_t *m, char **text, ba_error *err) {
    if (!m)
        return ba_error_set(err, BA_ERR_INPUT,
                            "export modelopt: the model is needed for output-channel axes");
    order_t *ord = ba_calloc(p->nlayers > 0 ? (size_t)p->nlayers : 1, sizeof *ord, err);
    if (!ord) return BA_ERR_NOMEM;
    char mod[MODULE_NAME_MAX], esc[3 * MODULE_NAME_MAX], key[3 * MODULE_NAME_MAX + 32];
    for (int i = 0; i < p->nlayers; i++) {
        ord[i].idx = i;
        ord[i].len = strlen(ba_export_module_name(p->layers[i].name, mod, sizeof mod));
    }
    qsort(ord, (size_t)p->nlayers, sizeof *ord, by_len);
    json_t *root = json_object(), *cfg = json_object();
    int bad = !root || !cfg;
    ba_status st = BA_OK;
    /* Quantizers the plan does not name (activations when float, other modules) stay off. */
    json_t *dflt = json_object();
    jset(dflt, "enable", json_false(), &bad);
    jset(cfg, "default", dflt, &bad);
    for (int k = 0; !bad && st == BA_OK && k < p->nlayers; k++) {
        const ba_plan_layer_t *l = &p->layers[ord[k].idx];
        int li = model_layer(m, l->name);
        if (li < 0) {
            st = ba_error_set(err, BA_ERR_INPUT, "export modelopt: layer '%s' is not a layer of %s", l->name,
                              m->path ? m->path : "the model");
            break;
        }
        glob_escape(ba_export_module_name(l->name, mod, sizeof mod), esc, sizeof esc);
        json_t *q = json_object();
        bad |= !q;
        if (l->w_bits >= 2 && l->w_bits <= 8) {
            jset(q, "num_bits", json_integer(l->w_bits), &bad);
            if (p->quantizer.granularity == BA_GRAN_PER_CHANNEL) {
                jset(q, "axis", json_integer(m->layers[li].ch_axis), &bad);
            } else {
                jset(q, "axis", json_null(), &bad);
                if (p->quantizer.granularity == BA_GRAN_GROUP) {
                    json_t *bs = json_object();
                    jset(bs, "-1", json_integer(p->quantizer.group), &bad);
                    jset(q, "block_sizes", bs, &bad);
                }
            }
            jset(q, "enable", json_true(), &bad);
        } else { /* 16 / 32 bits: the weight stays floating point */
            jset(q, "enable", json_false(), &bad);
        }
        snprintf(key, sizeof key, "*%s*weight_quantizer", esc);
        jset(cfg, key, q, &bad);
        if (l->a_bits >= 2 && l->a_bits <= 8) {
            json_t *a = json_object();
            jset(a, "num_bits", json_integer(l->a_bits), &bad);
            jset(a, "axis", json_null(), &bad);
            jset(a, "enable", json_true(), &bad);
            snprintf(key, sizeof key, "*%s*input_quantizer", esc);
            jset(cfg, key, a, &bad);
        }
    }
    free(ord);
    jset(root, "quant_cfg", cfg, &bad);
    jset(root, "algorithm", json_string(MODELOPT_ALGORITHM), &bad);
    if (st != BA_OK || bad) {
        json_decref(root);
        return st != BA_OK
                   ? st
                   : ba_error_set(err, BA_ERR_INPUT,
                                  "export modelopt: a layer name is not valid UTF-8 or memory ran out");
    }
    return json_text(root, text, err);
}

/* llama-quantize matches each NAME as a regular expression (std::regex_search,
 * first match wins) after lowercasing it, so the name is escaped and anchored
 * to select exactly that tensor; '=' (the NAME=TYPE separator) and control
 * characters are written as \xHH. */
static void sb_regex_literal(sbuf_t *b, const char *s) {
    sb_put(b, "^");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char t[8];
        if (*p == '=' || *p < 0x20 || *p == 0x7f) {
            snprintf(t, sizeof t, "\\x%02x", *p);
            sb_put(b, t);
        } else {
            if (strchr(".^$|()[]{}*+?\\", *p)) sb_put(b, "\\");
            sb_putn(b, (const char *)p, 1);
        }
    }
    sb_put(b, "$");
}

static ba_status llama_text(const ba_plan_t *p, char **text, ba_error *err) {
    sbuf_t b = {0};
    for (int i = 0; i < p->nlayers; i++) {
        const char *t = ba_export_ggml_type(p->layers[i].w_bits);
        if (!t) {
            free(b.s);
            return ba_error_set(err, BA_ERR_INPUT, "export llama: layer '%s': %d bits has no ggml type",
                                p->layers[i].name, p->layers[i].w_bits);
        }
        sb_regex_literal(&b, p->layers[i].name);
        sb_put(&b, "=");
        sb_put(&b, t);
        sb_put(&b, "\n");
    }
    return sb_finish(&b, text, err);
}

ba_status ba_export_text(const ba_plan_t *plan, const ba_model_t *m, ba_export_fmt_t f, char **text,
                         ba_error *err) {
    *text = NULL;
    switch (f) {
    case BA_EXPORT_PLAN: return ba_plan_to_json(plan, text, err);
    case BA_EXPORT_CSV: return csv_text(plan, text, err);
    case BA_EXPORT_HAWQ: return hawq_text(plan, text, err);
    case BA_EXPORT_MODELOPT: return modelopt_text(plan, m, text, err);
    case BA_EXPORT_LLAMA: return llama_text(plan, text, err);
    }
    return ba_error_set(err, BA_ERR_INPUT, "export: unknown format %d", (int)f);
}

ba_status ba_export_write(const char *path, const ba_plan_t *plan, const ba_model_t *m, ba_export_fmt_t f,
                          ba_error *err) {
    char *text;
    BA_TRY(ba_export_text(plan, m, f, &text, err));
    ba_status st = ba_out_write(path, text, strlen(text), err);
    free(text);
    return st;
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
