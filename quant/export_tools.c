/* HAWQ, ModelOpt and llama.cpp exports (see export_tools.h and
 * docs/export.md, which has each consumer's matching rule these follow). */
#include "quant/export_tools.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ggml_types.h"
#include "quant/cost.h"

#define NAME_MAX_LEN 1024
#define EXPORT_JSON_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17))
/* ModelOpt calibration algorithm: plain max, SPEC §3's clip=max quantizer. */
#define MODELOPT_ALGORITHM "max"
/* HAWQ keeps the residual sums at 16 bits (its own bit_config files). */
#define HAWQ_INT32_ACT_BITS 16
/* HAWQ quantizes every activation; a study with float activations gets its 8. */
#define HAWQ_DEFAULT_ACT_BITS 8

static void warnf(const ba_export_opts_t *o, ba_export_report_t *rep, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warnf(const ba_export_opts_t *o, ba_export_report_t *rep, const char *fmt, ...) {
    char msg[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rep->nwarnings++;
    if (o && o->warn) o->warn(o->warn_ctx, msg);
}

static int model_layer(const ba_model_t *m, const char *name) {
    for (int i = 0; i < m->nlayers; i++)
        if (strcmp(m->layers[i].name, name) == 0) return i;
    return -1;
}

static ba_status no_layer(const ba_model_t *m, const char *fmt, const char *name, ba_error *err) {
    return ba_error_set(err, BA_ERR_INPUT, "export %s: layer '%s' is not a layer of %s", fmt, name,
                        m->path ? m->path : "the model");
}

static const char *node_name(const ba_model_t *m, int li) {
    int n = m->layers[li].node;
    return n >= 0 && n < m->nnodes ? m->nodes[n].name : "";
}

/* The layer's name for the consumer, or 0 after a warning when it has none. */
static int layer_name(const ba_model_t *m, int li, const ba_export_opts_t *o, ba_export_report_t *rep,
                      const char *tool, char *buf, size_t cap) {
    if (ba_namemap_layer(m, li, o ? o->names : NULL, buf, cap) != BA_NAME_NONE) return 1;
    warnf(o, rep,
          "layer '%s' (node '%s'): no %s name can be derived (the exporter kept none); it is left out — "
          "name it with --name-map",
          m->layers[li].name, node_name(m, li), tool);
    return 0;
}

static void strip_weight(char *s) {
    size_t n = strlen(s), k = sizeof ".weight" - 1;
    if (n > k && strcmp(s + n - k, ".weight") == 0) s[n - k] = '\0';
}

/* Closes an open_memstream stream (which sets *buf only then) and hands its text on. */
static ba_status finish_stream(FILE *fp, char **buf, char **text, ba_error *err) {
    int bad = ferror(fp);
    if (fclose(fp) != 0 || bad || !*buf) {
        free(*buf);
        return ba_error_set(err, BA_ERR_NOMEM, "export: out of memory");
    }
    *text = *buf;
    return BA_OK;
}

/* ------------------------------------------------------------------ HAWQ */

int ba_export_hawq_resnet_name(const char *module, char *w, size_t wcap, char *act, size_t acap) {
    int stage, unit, k, n = 0;
    if (strcmp(module, "conv1") == 0) {
        snprintf(w, wcap, "quant_init_block_convbn");
        snprintf(act, acap, "quant_input");
        return 1;
    }
    if (strcmp(module, "fc") == 0) {
        snprintf(w, wcap, "quant_output");
        snprintf(act, acap, "quant_act_output");
        return 1;
    }
    if (sscanf(module, "layer%d.%d.conv%d%n", &stage, &unit, &k, &n) == 3 && module[n] == '\0' &&
        stage >= 1 && unit >= 0 && k >= 1 && k <= 3) {
        snprintf(w, wcap, "stage%d.unit%d.quant_convbn%d", stage, unit + 1, k);
        if (k == 1)
            snprintf(act, acap, "stage%d.unit%d.quant_act", stage, unit + 1);
        else
            snprintf(act, acap, "stage%d.unit%d.quant_act%d", stage, unit + 1, k - 1);
        return 1;
    }
    n = 0;
    if (sscanf(module, "layer%d.%d.downsample.0%n", &stage, &unit, &n) == 2 && n > 0 && module[n] == '\0' &&
        stage >= 1 && unit >= 0) {
        snprintf(w, wcap, "stage%d.unit%d.quant_identity_convbn", stage, unit + 1);
        snprintf(act, acap, "stage%d.unit%d.quant_act", stage, unit + 1);
        return 1;
    }
    return 0;
}

ba_status ba_export_hawq_text(const ba_plan_t *p, const ba_model_t *m, const ba_export_opts_t *o,
                              ba_export_report_t *rep, char **text, ba_error *err) {
    if (!m) return ba_error_set(err, BA_ERR_INPUT, "export hawq: the model is needed for layer names");
    json_t *root = json_object();
    int bad = !root, float_acts = 0, resnet_units = 0;
    char name[NAME_MAX_LEN], w[NAME_MAX_LEN], act[NAME_MAX_LEN], key[NAME_MAX_LEN + 8];
    ba_status st = BA_OK;
    /* The torchvision ResNet names apply only to a ResNet: one with a unit's conv. */
    int resnet = 0;
    for (int li = 0; li < m->nlayers && !resnet; li++) {
        if (ba_namemap_layer(m, li, NULL, name, sizeof name) == BA_NAME_NONE) continue;
        strip_weight(name);
        resnet =
            ba_export_hawq_resnet_name(name, w, sizeof w, act, sizeof act) && strncmp(w, "stage", 5) == 0;
    }
    for (int i = 0; !bad && i < p->nlayers; i++) {
        const ba_plan_layer_t *l = &p->layers[i];
        int li = model_layer(m, l->name);
        if (li < 0) {
            st = no_layer(m, "hawq", l->name, err);
            break;
        }
        ba_name_src_t src = ba_namemap_layer(m, li, o ? o->names : NULL, name, sizeof name);
        int a_bits = l->a_bits > 0 ? l->a_bits : HAWQ_DEFAULT_ACT_BITS;
        float_acts |= l->a_bits <= 0;
        act[0] = '\0';
        if (src == BA_NAME_MAP) { /* a HAWQ name as the user gave it; its activation as "act:<onnx name>" */
            snprintf(w, sizeof w, "%s", name);
            snprintf(key, sizeof key, "act:%s", l->name);
            const char *a = ba_namemap_get(o->names, key);
            if (!a) {
                snprintf(key, sizeof key, "act:%s", node_name(m, li));
                a = ba_namemap_get(o->names, key);
            }
            if (a) snprintf(act, sizeof act, "%s", a);
        } else {
            strip_weight(name);
            if (src == BA_NAME_NONE || !resnet ||
                !ba_export_hawq_resnet_name(name, w, sizeof w, act, sizeof act)) {
                warnf(o, rep,
                      "layer '%s' (module '%s'): no HAWQ module name (HAWQ's models name theirs "
                      "stageN.unitM.quant_convbnK); it is left out — name it with --name-map",
                      l->name, name[0] ? name : "?");
                continue;
            }
            resnet_units |= strncmp(w, "stage", 5) == 0;
        }
        rep->named++;
        if (json_object_get(root, w)) {
            st = ba_error_set(err, BA_ERR_INPUT, "export hawq: two layers have the HAWQ name '%s'", w);
            break;
        }
        if (act[0] && !json_object_get(root, act))
            bad |= json_object_set_new(root, act, json_integer(a_bits)) != 0;
        bad |= json_object_set_new(root, w, json_integer(l->w_bits)) != 0;
        /* A ResNet unit's residual sum: HAWQ's quant_act_int32 at 16 bits. */
        if (resnet_units && strncmp(w, "stage", 5) == 0) {
            const char *dot = strchr(strchr(w, '.') + 1, '.');
            snprintf(key, sizeof key, "%.*s.quant_act_int32", (int)(dot - w), w);
            if (!json_object_get(root, key))
                bad |= json_object_set_new(root, key, json_integer(HAWQ_INT32_ACT_BITS));
        }
    }
    if (st == BA_OK && !bad && resnet_units && !json_object_get(root, "quant_act_int32"))
        bad |= json_object_set_new(root, "quant_act_int32", json_integer(HAWQ_INT32_ACT_BITS)) != 0;
    if (st == BA_OK && float_acts && rep->named > 0)
        warnf(o, rep, "HAWQ quantizes every activation: the study's float activations are written as %d bits",
              HAWQ_DEFAULT_ACT_BITS);
    char *s = st == BA_OK && !bad ? json_dumps(root, EXPORT_JSON_FLAGS) : NULL;
    json_decref(root);
    if (st != BA_OK) return st;
    if (!s)
        return ba_error_set(err, BA_ERR_INPUT, "export hawq: a name is not valid UTF-8 or memory ran out");
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return ba_error_set(err, BA_ERR_NOMEM, "export: out of memory");
    }
    t[n] = '\n';
    t[n + 1] = '\0';
    *text = t;
    return BA_OK;
}

/* -------------------------------------------------------------- ModelOpt */

/* fnmatch pattern text for a literal name: * ? [ are bracketed. */
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

/* The output-channel axis of the PyTorch module's weight: Conv and Linear
 * (Gemm, MatMul) keep out channels on axis 0, ConvTranspose on axis 1; -1 for
 * ops ModelOpt puts no weight quantizer on (Embedding, LSTM/GRU). */
static int torch_out_axis(const char *op) {
    if (!strcmp(op, "Conv") || !strcmp(op, "Gemm") || !strcmp(op, "MatMul")) return 0;
    if (!strcmp(op, "ConvTranspose")) return 1;
    return -1;
}

typedef struct {
    int plan_idx, li;
    size_t len;
    char module[NAME_MAX_LEN];
} mo_entry_t;

static int by_len(const void *a, const void *b) {
    const mo_entry_t *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->plan_idx - y->plan_idx;
}

/* A Python literal of a jansson value (object keys of "block_sizes" that are
 * integers written bare, as ModelOpt's validator wants them). */
static void py_value(FILE *fp, const json_t *v, int indent, int int_keys) {
    if (json_is_object(v)) {
        fputs("{", fp);
        const char *k;
        json_t *x;
        int first = 1;
        json_object_foreach((json_t *)v, k, x) {
            fprintf(fp, "%s\n%*s", first ? "" : ",", indent + 4, "");
            first = 0;
            char *end;
            long iv = strtol(k, &end, 10);
            if (int_keys && *k && !*end)
                fprintf(fp, "%ld", iv);
            else {
                json_t *ks = json_string(k);
                char *q = ks ? json_dumps(ks, JSON_ENCODE_ANY) : NULL;
                fputs(q ? q : "\"\"", fp);
                free(q);
                json_decref(ks);
            }
            fputs(": ", fp);
            py_value(fp, x, indent + 4, strcmp(k, "block_sizes") == 0);
        }
        if (first)
            fputs("}", fp);
        else
            fprintf(fp, "\n%*s}", indent, "");
    } else if (json_is_true(v)) {
        fputs("True", fp);
    } else if (json_is_false(v)) {
        fputs("False", fp);
    } else if (json_is_null(v)) {
        fputs("None", fp);
    } else {
        char *q = json_dumps(v, JSON_ENCODE_ANY);
        fputs(q ? q : "None", fp);
        free(q);
    }
}

ba_status ba_export_modelopt_text(const ba_plan_t *p, const ba_model_t *m, int py, const ba_export_opts_t *o,
                                  ba_export_report_t *rep, char **text, ba_error *err) {
    if (!m)
        return ba_error_set(err, BA_ERR_INPUT,
                            "export modelopt: the model is needed for module names and axes");
    mo_entry_t *ent = ba_calloc(p->nlayers > 0 ? (size_t)p->nlayers : 1, sizeof *ent, err);
    if (!ent) return BA_ERR_NOMEM;
    int n = 0, cnn_low = 0;
    ba_status st = BA_OK;
    for (int i = 0; i < p->nlayers; i++) {
        int li = model_layer(m, p->layers[i].name);
        if (li < 0) {
            st = no_layer(m, "modelopt", p->layers[i].name, err);
            break;
        }
        const char *op = m->layers[li].op;
        if (torch_out_axis(op) < 0) {
            warnf(o, rep,
                  "layer '%s' (%s): ModelOpt puts no weight quantizer on this module type; it is left out",
                  p->layers[i].name, op);
            continue;
        }
        if (!layer_name(m, li, o, rep, "PyTorch module", ent[n].module, sizeof ent[n].module)) continue;
        strip_weight(ent[n].module);
        int b = p->layers[i].w_bits;
        if ((!strcmp(op, "Conv") || !strcmp(op, "ConvTranspose")) && b <= 8 && b != 8) cnn_low++;
        ent[n].plan_idx = i;
        ent[n].li = li;
        ent[n].len = strlen(ent[n].module);
        n++;
    }
    if (st == BA_OK && cnn_low)
        warnf(o, rep,
              "%d convolution layer(s) get a width other than 8: ModelOpt supports only INT8 for CNNs "
              "(TensorRT runs no other integer convolution); expect them to run as fake quantization only",
              cnn_low);
    if (st != BA_OK) {
        free(ent);
        return st;
    }
    rep->named += n;
    /* ModelOpt applies "default" first, then each pattern in order (a later
     * match wins). "*A*weight_quantizer" also matches B's quantizer when A is
     * a substring of B's module path, which makes A shorter: entries go by
     * increasing length so each layer's own entry comes last for it. */
    qsort(ent, (size_t)n, sizeof *ent, by_len);
    json_t *root = json_object(), *cfg = json_object(), *dflt = json_object();
    int bad = !root || !cfg || !dflt;
    bad |= json_object_set_new(dflt, "enable", json_false()) != 0;
    bad |= json_object_set_new(cfg, "default", dflt) != 0;
    char esc[3 * NAME_MAX_LEN], key[3 * NAME_MAX_LEN + 32];
    for (int k = 0; !bad && k < n; k++) {
        const ba_plan_layer_t *l = &p->layers[ent[k].plan_idx];
        glob_escape(ent[k].module, esc, sizeof esc);
        json_t *q = json_object();
        bad |= !q;
        if (l->w_bits >= 2 && l->w_bits <= 8) {
            bad |= json_object_set_new(q, "num_bits", json_integer(l->w_bits)) != 0;
            if (p->quantizer.granularity == BA_GRAN_PER_CHANNEL) {
                bad |= json_object_set_new(q, "axis",
                                           json_integer(torch_out_axis(m->layers[ent[k].li].op))) != 0;
            } else {
                bad |= json_object_set_new(q, "axis", json_null()) != 0;
                if (p->quantizer.granularity == BA_GRAN_GROUP) {
                    /* blocks along the last (input) axis; the key is the integer -1
                     * (JSON can hold only a string: see docs/export.md's loader). */
                    json_t *bs = json_object();
                    bad |= !bs || json_object_set_new(bs, "-1", json_integer(p->quantizer.group)) != 0;
                    bad |= json_object_set_new(q, "block_sizes", bs) != 0;
                }
            }
            bad |= json_object_set_new(q, "enable", json_true()) != 0;
        } else { /* 16 / 32 bits: the weight stays floating point */
            bad |= json_object_set_new(q, "enable", json_false()) != 0;
        }
        snprintf(key, sizeof key, "*%s*weight_quantizer", esc);
        bad |= json_object_set_new(cfg, key, q) != 0;
        if (l->a_bits >= 2 && l->a_bits <= 8) {
            json_t *a = json_object();
            bad |= !a || json_object_set_new(a, "num_bits", json_integer(l->a_bits)) != 0;
            bad |= json_object_set_new(a, "axis", json_null()) != 0;
            bad |= json_object_set_new(a, "enable", json_true()) != 0;
            snprintf(key, sizeof key, "*%s*input_quantizer", esc);
            bad |= json_object_set_new(cfg, key, a) != 0;
        }
    }
    free(ent);
    bad |= json_object_set_new(root, "quant_cfg", cfg) != 0;
    bad |= json_object_set_new(root, "algorithm", json_string(MODELOPT_ALGORITHM)) != 0;
    if (bad) {
        json_decref(root);
        return ba_error_set(err, BA_ERR_INPUT,
                            "export modelopt: a module name is not valid UTF-8 or memory ran out");
    }
    char *buf = NULL;
    size_t len = 0;
    int fp_fail = 0;
    FILE *fp = open_memstream(&buf, &len);
    if (!fp) {
        json_decref(root);
        return ba_error_set(err, BA_ERR_NOMEM, "export: out of memory");
    }
    if (py) {
        fputs("# ModelOpt quantization config written by bitalloc export (docs/export.md):\n"
              "#   from THIS_FILE import QUANT_CFG; mtq.quantize(model, QUANT_CFG, forward_loop)\n"
              "QUANT_CFG = ",
              fp);
        py_value(fp, root, 0, 0);
        fputs("\n", fp);
    } else {
        char *s = json_dumps(root, EXPORT_JSON_FLAGS);
        if (s)
            fprintf(fp, "%s\n", s);
        else
            fp_fail = 1;
        free(s);
    }
    json_decref(root);
    if (fp_fail) {
        fclose(fp);
        free(buf);
        return ba_error_set(err, BA_ERR_INPUT, "export modelopt: a module name is not valid UTF-8");
    }
    return finish_stream(fp, &buf, text, err);
}

/* ----------------------------------------------------------------- llama */

/* The tensor name as a pattern llama-quantize applies as written: it lowercases
 * the pattern, then std::regex_search (ECMAScript, case-sensitive), so the
 * pattern is anchored (^…$), metacharacters get a backslash ("\."), and every
 * byte lowercasing would change (A-Z), '=' (the NAME=TYPE separator) and
 * whitespace or control bytes (the file is split on whitespace) are written
 * \xHH with lowercase hex digits, which lowercasing keeps. */
void ba_export_llama_pattern(FILE *fp, const char *s) {
    fputc('^', fp);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || *p == '=' || *p <= 0x20 || *p == 0x7f)
            fprintf(fp, "\\x%02x", *p);
        else {
            if (strchr(".^$|()[]{}*+?\\", *p)) fputc('\\', fp);
            fputc(*p, fp);
        }
    }
    fputc('$', fp);
}

ba_status ba_export_llama_text(const ba_plan_t *p, const ba_model_t *m, const ba_export_opts_t *o,
                               ba_export_report_t *rep, char **text, ba_error *err) {
    if (!m) return ba_error_set(err, BA_ERR_INPUT, "export llama: the model is needed for tensor names");
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    if (!fp) return ba_error_set(err, BA_ERR_NOMEM, "export: out of memory");
    char name[NAME_MAX_LEN + 8];
    ba_status st = BA_OK;
    double params = 0, nominal = 0, real = 0;
    for (int i = 0; st == BA_OK && i < p->nlayers; i++) {
        const ba_plan_layer_t *l = &p->layers[i];
        const ba_ggml_type_t *asked = ba_ggml_type_for_bits(l->w_bits), *t = NULL;
        int li = model_layer(m, l->name);
        if (!asked)
            st = ba_error_set(err, BA_ERR_INPUT, "export llama: layer '%s': %d bits has no ggml type",
                              l->name, l->w_bits);
        else if (li < 0)
            st = no_layer(m, "llama", l->name, err);
        /* A plan made for llama.cpp (quantizer.backend llama) gets the type llama-quantize ends with on
         * the layer's rows (its own fallback for a row the block does not divide), the type its
         * budgets counted, so the file says what the GGUF will hold; other plans the width's type. */
        else if (!(t = p->quantizer.backend == BA_BACKEND_LLAMA
                           ? ba_cost_layer_ggml_type(&m->layers[li], l->w_bits)
                           : asked))
            st = ba_error_set(err, BA_ERR_INPUT,
                              "export llama: layer '%s': %s needs a row length that is a multiple of %d, not "
                              "%lld, and llama-quantize has no fallback for it",
                              l->name, asked->name, asked->block,
                              (long long)ba_cost_layer_row(&m->layers[li]));
        if (st != BA_OK) break;
        params += (double)l->params;
        nominal += (double)l->w_bits * (double)l->params;
        real += ba_ggml_type_bpw(t) * (double)l->params;
        if (!layer_name(m, li, o, rep, "tensor", name, NAME_MAX_LEN)) continue;
        size_t n = strlen(name), k = sizeof ".weight" - 1;
        if (!(n > k && strcmp(name + n - k, ".weight") == 0)) strcat(name, ".weight");
        ba_export_llama_pattern(fp, name);
        char type[16];
        size_t tn = 0;
        for (const char *s = t->name; *s && tn + 1 < sizeof type; s++)
            type[tn++] = (char)tolower((unsigned char)*s);
        type[tn] = '\0';
        fprintf(fp, "=%s\n", type);
        rep->named++;
    }
    if (st != BA_OK) {
        fclose(fp);
        free(buf);
        return st;
    }
    rep->nominal_bits = params > 0 ? nominal / params : 0;
    rep->ggml_bits = params > 0 ? real / params : 0;
    return finish_stream(fp, &buf, text, err);
}
