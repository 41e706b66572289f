/* Sensitivity tables as text: the JSON and CSV that `bitalloc sensitivity`
 * prints (SPEC §5), the readers behind --sensitivity-file (that JSON, CSV
 * layer,bits,cost or layer,score), and the cache key (study/sensitivity.c keeps the entries in the database).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/util.h"
#include "sensitivity/sens_internal.h"

#define JSON_DIGITS 17 /* reals round-trip exactly */

ba_sens_opts_t ba_sens_opts_default(void) {
    ba_sens_opts_t o;
    memset(&o, 0, sizeof o);
    o.tol = BA_SENS_DEFAULT_TOL;
    o.max_probes = BA_SENS_DEFAULT_PROBES;
    o.loss = BA_SENS_LOSS_AUTO;
    o.quant = ba_quant_cfg_default();
    o.batch = 0; /* the model's fixed batch size, else BA_EVAL_DEFAULT_BATCH (ba_eval_batch_size) */
    return o;
}

static const char *const method_names[] = {"hessian", "lrp", "fisher", "act", "weight", "measured"};

ba_status ba_sens_method_parse(const char *s, ba_sens_method_t *out, ba_error *err) {
    for (int i = 0; i < (int)(sizeof method_names / sizeof method_names[0]); i++)
        if (s && !strcmp(s, method_names[i])) {
            *out = (ba_sens_method_t)i;
            return BA_OK;
        }
    return ba_error_set(err, BA_ERR_INPUT, "sensitivity method '%s': not one of " BA_SENS_METHOD_NAMES,
                        s ? s : "");
}

const char *ba_sens_method_name(ba_sens_method_t m) {
    return (m >= 0 && m <= BA_SENS_MEASURED) ? method_names[m] : "?";
}

int ba_sens_method_needs_data(ba_sens_method_t m) {
    return m != BA_SENS_WEIGHT;
}

/* Validated candidate list: NULL = BA_BITS_DEFAULT; each a width of SPEC §3, no repeats. */
static ba_status bits_list(const int *bits, int nbits, int out[BA_SENS_MAX_BITS], int *n, ba_error *err) {
    int dflt[BA_BITS_MAX_CANDIDATES];
    if (!bits || nbits <= 0) {
        BA_TRY(ba_bits_parse(BA_BITS_DEFAULT, dflt, &nbits, err));
        bits = dflt;
    }
    if (nbits > BA_SENS_MAX_BITS)
        return ba_error_set(err, BA_ERR_INPUT, "--bits: more than %d widths", BA_SENS_MAX_BITS);
    for (int i = 0; i < nbits; i++) {
        if (!ba_bits_valid(bits[i]))
            return ba_error_set(err, BA_ERR_INPUT, "--bits: %d is not a width (%s)", bits[i], BA_BITS_WIDTHS);
        for (int j = 0; j < i; j++)
            if (bits[j] == bits[i]) return ba_error_set(err, BA_ERR_INPUT, "--bits: %d given twice", bits[i]);
        out[i] = bits[i];
    }
    *n = nbits;
    return BA_OK;
}

ba_status sens_table_new(const ba_model_t *m, const int *bits, int nbits, const char *method,
                         ba_sens_table_t **out, ba_error *err) {
    *out = NULL;
    ba_sens_table_t *t = ba_calloc(1, sizeof *t, err);
    if (!t) return BA_ERR_NOMEM;
    ba_status st = bits_list(bits, nbits, t->bits, &t->nbits, err);
    if (st == BA_OK && !(t->method = ba_strdup(method, err))) st = BA_ERR_NOMEM;
    if (st == BA_OK &&
        !(t->layers = ba_calloc((size_t)(m->nlayers > 0 ? m->nlayers : 1), sizeof *t->layers, err)))
        st = BA_ERR_NOMEM;
    if (st == BA_OK) {
        t->nlayers = m->nlayers;
        for (int l = 0; l < m->nlayers && st == BA_OK; l++) {
            ba_sens_layer_t *L = &t->layers[l];
            L->params = m->layers[l].params;
            L->se = NAN;
            L->top_eig = NAN;
            if (!(L->name = ba_strdup(m->layers[l].name, err)) ||
                !(L->cost = ba_calloc((size_t)t->nbits, sizeof(double), err)))
                st = BA_ERR_NOMEM;
        }
    }
    if (st != BA_OK) {
        ba_sens_table_free(t);
        return st;
    }
    *out = t;
    return BA_OK;
}

void ba_sens_table_free(ba_sens_table_t *t) {
    if (!t) return;
    for (int l = 0; l < t->nlayers; l++) {
        free(t->layers[l].name);
        free(t->layers[l].cost);
    }
    free(t->layers);
    free(t->method);
    free(t->loss);
    free(t->loss_on);
    free(t);
}

int ba_sens_bits_index(const ba_sens_table_t *t, int bits) {
    for (int k = 0; k < t->nbits; k++)
        if (t->bits[k] == bits) return k;
    return -1;
}

/* ---------------- writers ---------------- */

static json_t *real_or_null(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *table_json(const ba_sens_table_t *t) {
    json_t *root = json_object();
    json_object_set_new(root, "method", json_string(t->method));
    json_object_set_new(root, "loss", t->loss ? json_string(t->loss) : json_null());
    if (t->loss_on) json_object_set_new(root, "loss_on", json_string(t->loss_on));
    json_object_set_new(root, "samples", json_integer(t->samples));
    json_t *layers = json_array();
    for (int l = 0; l < t->nlayers; l++) {
        const ba_sens_layer_t *L = &t->layers[l];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(L->name));
        json_object_set_new(o, "params", json_integer(L->params));
        json_object_set_new(o, "score", real_or_null(L->score));
        json_object_set_new(o, "stderr", real_or_null(L->se));
        if (L->probes > 0) json_object_set_new(o, "probes", json_integer(L->probes));
        if (!isnan(L->top_eig)) json_object_set_new(o, "top_eigenvalue", real_or_null(L->top_eig));
        json_t *cost = json_object();
        for (int k = 0; k < t->nbits; k++) {
            char key[16];
            snprintf(key, sizeof key, "%d", t->bits[k]);
            json_object_set_new(cost, key, real_or_null(L->cost[k]));
        }
        json_object_set_new(o, "cost", cost);
        json_array_append_new(layers, o);
    }
    json_object_set_new(root, "layers", layers);
    return root;
}

ba_status ba_sens_to_json(const ba_sens_table_t *t, char **out, ba_error *err) {
    *out = NULL;
    json_t *j = table_json(t);
    char *s =
        j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(JSON_DIGITS)) : NULL;
    json_decref(j);
    if (!s) return ba_error_set(err, BA_ERR_NOMEM, "sensitivity table: out of memory writing JSON");
    size_t n = strlen(s);
    char *r = ba_malloc(n + 2, err);
    if (!r) {
        free(s);
        return BA_ERR_NOMEM;
    }
    memcpy(r, s, n);
    r[n] = '\n';
    r[n + 1] = 0;
    free(s);
    *out = r;
    return BA_OK;
}

ba_status ba_sens_write_json(const ba_sens_table_t *t, FILE *fp, ba_error *err) {
    char *s;
    BA_TRY(ba_sens_to_json(t, &s, err));
    int bad = fputs(s, fp) < 0;
    free(s);
    return bad ? ba_error_set(err, BA_ERR_IO, "sensitivity table: write failed") : BA_OK;
}

ba_status ba_sens_write_csv(const ba_sens_table_t *t, FILE *fp, ba_error *err) {
    fputs("layer,bits,cost\n", fp);
    for (int l = 0; l < t->nlayers; l++)
        for (int k = 0; k < t->nbits; k++) {
            ba_csv_field(fp, t->layers[l].name);
            fprintf(fp, ",%d,%.17g\n", t->bits[k], t->layers[l].cost[k]);
        }
    return ferror(fp) ? ba_error_set(err, BA_ERR_IO, "sensitivity table: write failed") : BA_OK;
}

/* ---------------- readers ---------------- */

static int find_layer(const ba_model_t *m, const char *name) {
    for (int l = 0; l < m->nlayers; l++)
        if (!strcmp(m->layers[l].name, name)) return l;
    return -1;
}

/* Every layer of the model must have been given (seen[l]). */
static ba_status check_all_seen(const ba_model_t *m, const unsigned char *seen, const char *what,
                                ba_error *err) {
    for (int l = 0; l < m->nlayers; l++)
        if (!seen[l])
            return ba_error_set(err, BA_ERR_INPUT, "%s: layer %s of the model is missing", what,
                                m->layers[l].name);
    return BA_OK;
}

static ba_status json_num(const json_t *v, const char *what, const char *layer, const char *field,
                          double *out, ba_error *err) {
    if (!json_is_number(v))
        return ba_error_set(err, BA_ERR_INPUT, "%s: layer %s: \"%s\" is not a number", what, layer, field);
    double d = json_number_value(v);
    if (!isfinite(d))
        return ba_error_set(err, BA_ERR_INPUT, "%s: layer %s: \"%s\" is not finite", what, layer, field);
    *out = d;
    return BA_OK;
}

static ba_status from_json_obj(const json_t *root, const char *what, const ba_model_t *m, ba_sens_table_t *t,
                               ba_error *err) {
    if (!json_is_object(root)) return ba_error_set(err, BA_ERR_INPUT, "%s: not a JSON object", what);
    const json_t *meth = json_object_get(root, "method");
    if (meth && json_is_string(meth)) {
        free(t->method);
        if (!(t->method = ba_strdup(json_string_value(meth), err))) return BA_ERR_NOMEM;
    }
    const json_t *loss = json_object_get(root, "loss");
    if (loss && json_is_string(loss) && !(t->loss = ba_strdup(json_string_value(loss), err)))
        return BA_ERR_NOMEM;
    const json_t *lon = json_object_get(root, "loss_on");
    if (lon && json_is_string(lon) && !(t->loss_on = ba_strdup(json_string_value(lon), err)))
        return BA_ERR_NOMEM;
    const json_t *smp = json_object_get(root, "samples");
    if (smp && json_is_integer(smp)) t->samples = json_integer_value(smp);
    const json_t *layers = json_object_get(root, "layers");
    if (!json_is_array(layers))
        return ba_error_set(err, BA_ERR_INPUT, "%s: \"layers\" is missing or not an array", what);
    unsigned char *seen = ba_calloc((size_t)m->nlayers + 1, 1, err);
    if (!seen) return BA_ERR_NOMEM;
    ba_status st = BA_OK;
    for (size_t i = 0; i < json_array_size(layers) && st == BA_OK; i++) {
        const json_t *o = json_array_get(layers, i);
        const json_t *nm = json_object_get(o, "name");
        if (!json_is_object(o) || !json_is_string(nm)) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: layers[%zu] has no \"name\"", what, i);
            break;
        }
        const char *name = json_string_value(nm);
        int l = find_layer(m, name);
        if (l < 0) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: layer %s is not a quantizable layer of %s", what, name,
                              m->path);
            break;
        }
        if (seen[l]) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: layer %s is given twice", what, name);
            break;
        }
        seen[l] = 1;
        ba_sens_layer_t *L = &t->layers[l];
        const json_t *sc = json_object_get(o, "score");
        if (sc && !json_is_null(sc))
            st = json_num(sc, what, name, "score", &L->score, err);
        else
            L->score = NAN;
        const json_t *se = json_object_get(o, "stderr");
        if (st == BA_OK && se && !json_is_null(se)) st = json_num(se, what, name, "stderr", &L->se, err);
        const json_t *eig = json_object_get(o, "top_eigenvalue");
        if (st == BA_OK && eig && !json_is_null(eig))
            st = json_num(eig, what, name, "top_eigenvalue", &L->top_eig, err);
        const json_t *pr = json_object_get(o, "probes");
        if (st == BA_OK && pr && json_is_integer(pr)) L->probes = json_integer_value(pr);
        const json_t *cost = json_object_get(o, "cost");
        if (st == BA_OK && !json_is_object(cost))
            st = ba_error_set(err, BA_ERR_INPUT, "%s: layer %s has no \"cost\" object", what, name);
        for (int k = 0; k < t->nbits && st == BA_OK; k++) {
            char key[16], field[32];
            snprintf(key, sizeof key, "%d", t->bits[k]);
            snprintf(field, sizeof field, "cost.%d", t->bits[k]);
            const json_t *v = json_object_get(cost, key);
            if (!v)
                st = ba_error_set(err, BA_ERR_INPUT, "%s: layer %s: no cost for %d bits (candidate width)",
                                  what, name, t->bits[k]);
            else
                st = json_num(v, what, name, field, &L->cost[k], err);
            if (st == BA_OK && L->cost[k] < 0)
                st = ba_error_set(err, BA_ERR_INPUT,
                                  "%s: layer %s: \"%s\" is %.17g; a cost must not be negative", what, name,
                                  field, L->cost[k]);
        }
    }
    if (st == BA_OK) st = check_all_seen(m, seen, what, err);
    free(seen);
    return st;
}

ba_status ba_sens_from_json(const char *text, const char *what, const ba_model_t *m, const int *bits,
                            int nbits, ba_sens_table_t **out, ba_error *err) {
    *out = NULL;
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root) return ba_error_set(err, BA_ERR_INPUT, "%s: line %d: %s", what, je.line, je.text);
    ba_sens_table_t *t;
    ba_status st = sens_table_new(m, bits, nbits, "imported", &t, err);
    if (st == BA_OK) st = from_json_obj(root, what, m, t, err);
    json_decref(root);
    if (st != BA_OK) {
        ba_sens_table_free(t);
        return st;
    }
    *out = t;
    return BA_OK;
}

/* One CSV record of line `lineno` into at most `max` fields (RFC 4180 quotes);
 * fields point into buf, which is modified. Returns the count or -1. */
static int csv_split(char *line, char **fields, int max) {
    int n = 0;
    char *p = line;
    for (;;) {
        if (n == max) return -1;
        char *w = p;
        fields[n++] = w;
        if (*p == '"') {
            p++;
            for (;;) {
                if (!*p) return -1;
                if (*p == '"') {
                    if (p[1] == '"') {
                        *w++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                *w++ = *p++;
            }
            if (*p != ',' && *p) return -1;
        } else {
            while (*p && *p != ',') *w++ = *p++;
        }
        int more = *p == ',';
        *w = 0;
        if (!more) return n;
        p++;
    }
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (end == s || *trim(end) || errno == ERANGE || !isfinite(d)) return 0;
    *out = d;
    return 1;
}

static int parse_int(const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *trim(end) || errno || v < 0 || v > 64) return 0;
    *out = (int)v;
    return 1;
}

enum { CSV_MAX_FIELDS = 4, CSV_SCORE_COLS = 2, CSV_COST_COLS = 3 };

static ba_status from_csv(char *text, const char *what, const ba_model_t *m, const ba_quant_cfg_t *cfg,
                          ba_sens_table_t *t, ba_error *err) {
    int ncols = 0;
    unsigned char *seen = ba_calloc((size_t)m->nlayers * t->nbits + 1, 1, err);
    if (!seen) return BA_ERR_NOMEM;
    ba_status st = BA_OK;
    int lineno = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && st == BA_OK; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r') line[len - 1] = 0;
        if (!*trim(line)) continue;
        char *f[CSV_MAX_FIELDS];
        int nf = csv_split(line, f, CSV_MAX_FIELDS);
        if (nf < 0) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: line %d: malformed CSV record", what, lineno);
            break;
        }
        for (int i = 0; i < nf; i++) f[i] = trim(f[i]);
        if (ncols == 0) {
            /* header: layer,score or layer,bits,cost */
            if (nf == CSV_SCORE_COLS && !strcmp(f[0], "layer") && !strcmp(f[1], "score"))
                ncols = CSV_SCORE_COLS;
            else if (nf == CSV_COST_COLS && !strcmp(f[0], "layer") && !strcmp(f[1], "bits") &&
                     !strcmp(f[2], "cost"))
                ncols = CSV_COST_COLS;
            else
                st = ba_error_set(err, BA_ERR_INPUT,
                                  "%s: line %d: header must be 'layer,score' or 'layer,bits,cost'", what,
                                  lineno);
            continue;
        }
        if (nf != ncols) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: line %d: %d fields, expected %d", what, lineno, nf,
                              ncols);
            break;
        }
        int l = find_layer(m, f[0]);
        if (l < 0) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: line %d: layer %s is not a quantizable layer of %s",
                              what, lineno, f[0], m->path);
            break;
        }
        if (ncols == CSV_SCORE_COLS) {
            double s;
            if (!parse_double(f[1], &s)) {
                st = ba_error_set(err, BA_ERR_INPUT,
                                  "%s: line %d: layer %s: score '%s' is not a finite number", what, lineno,
                                  f[0], f[1]);
                break;
            }
            if (s < 0) { /* Ω = s·‖Q_b(W)−W‖²: a negative score makes every cost negative */
                st = ba_error_set(err, BA_ERR_INPUT,
                                  "%s: line %d: layer %s: score %s is negative (costs must not be)", what,
                                  lineno, f[0], f[1]);
                break;
            }
            if (seen[(size_t)l * t->nbits]) {
                st = ba_error_set(err, BA_ERR_INPUT, "%s: line %d: layer %s is given twice", what, lineno,
                                  f[0]);
                break;
            }
            t->layers[l].score = s;
            for (int k = 0; k < t->nbits && st == BA_OK; k++) {
                double w;
                st = ba_sens_weight_error(m, l, t->bits[k], cfg, &w, err);
                t->layers[l].cost[k] = s * w;
                if (st == BA_OK && !isfinite(s * w))
                    st = ba_error_set(err, BA_ERR_INPUT,
                                      "%s: line %d: layer %s: score %s makes the %d-bit cost overflow", what,
                                      lineno, f[0], f[1], t->bits[k]);
                seen[(size_t)l * t->nbits + k] = 1;
            }
        } else {
            int b;
            double c;
            if (!parse_int(f[1], &b)) {
                st = ba_error_set(err, BA_ERR_INPUT, "%s: line %d: bits '%s' is not a width", what, lineno,
                                  f[1]);
                break;
            }
            if (!parse_double(f[2], &c)) {
                st =
                    ba_error_set(err, BA_ERR_INPUT, "%s: line %d: layer %s: cost '%s' is not a finite number",
                                 what, lineno, f[0], f[2]);
                break;
            }
            if (c < 0) {
                st = ba_error_set(err, BA_ERR_INPUT, "%s: line %d: layer %s, %d bits: cost %s is negative",
                                  what, lineno, f[0], b, f[2]);
                break;
            }
            int k = ba_sens_bits_index(t, b);
            if (k < 0) continue; /* a width that is not a candidate: not needed */
            if (seen[(size_t)l * t->nbits + k]) {
                st = ba_error_set(err, BA_ERR_INPUT, "%s: line %d: layer %s, %d bits given twice", what,
                                  lineno, f[0], b);
                break;
            }
            seen[(size_t)l * t->nbits + k] = 1;
            t->layers[l].cost[k] = c;
            t->layers[l].score = NAN;
        }
    }
    if (st == BA_OK && ncols == 0) st = ba_error_set(err, BA_ERR_INPUT, "%s: empty file", what);
    for (int l = 0; l < m->nlayers && st == BA_OK; l++) {
        int any = 0;
        for (int k = 0; k < t->nbits; k++) any |= seen[(size_t)l * t->nbits + k];
        for (int k = 0; k < t->nbits && st == BA_OK; k++)
            if (!seen[(size_t)l * t->nbits + k])
                st = !any ? ba_error_set(err, BA_ERR_INPUT, "%s: layer %s of the model is missing", what,
                                         m->layers[l].name)
                          : ba_error_set(err, BA_ERR_INPUT,
                                         "%s: layer %s: no cost for %d bits (candidate width)", what,
                                         m->layers[l].name, t->bits[k]);
    }
    free(seen);
    return st;
}

ba_status ba_sens_read_file(const char *path, const ba_model_t *m, const int *bits, int nbits,
                            const ba_quant_cfg_t *cfg, ba_sens_table_t **out, ba_error *err) {
    *out = NULL;
    uint8_t *data;
    size_t size;
    BA_TRY(ba_file_read(path, &data, &size, err));
    char *text = ba_malloc(size + 1, err);
    if (!text) {
        free(data);
        return BA_ERR_NOMEM;
    }
    memcpy(text, data, size);
    text[size] = 0;
    free(data);
    ba_status st;
    if (strlen(text) != size) {
        st =
            ba_error_set(err, BA_ERR_INPUT, "%s: holds a NUL byte: not a JSON or CSV sensitivity file", path);
    } else {
        const char *p = text;
        while (isspace((unsigned char)*p)) p++;
        if (*p == '{') {
            st = ba_sens_from_json(text, path, m, bits, nbits, out, err);
        } else {
            ba_sens_table_t *t;
            st = sens_table_new(m, bits, nbits, "imported", &t, err);
            if (st == BA_OK) st = from_csv(text, path, m, cfg, t, err);
            if (st == BA_OK)
                *out = t;
            else
                ba_sens_table_free(t);
        }
    }
    free(text);
    return st;
}

/* ---------------- cache ---------------- */

void ba_sens_cache_key(const ba_model_t *m, const ba_dataset_t *ds, const int64_t *labels, int64_t nlabels,
                       ba_sens_method_t method, const ba_sens_opts_t *opts, char key[65]) {
    ba_sens_opts_t d = ba_sens_opts_default();
    if (!opts) opts = &d;
    ba_sha256_t h;
    ba_sha256_init(&h);
    char buf[512], gran[32];
    int bits[BA_SENS_MAX_BITS], nb = 0;
    ba_error e;
    if (bits_list(opts->bits, opts->nbits, bits, &nb, &e) != BA_OK) nb = 0;
    int n = snprintf(buf, sizeof buf, "bitalloc.sens/8\nmodel=%s\nmethod=%s\nbits=", m->sha256,
                     ba_sens_method_name(method));
    ba_sha256_update(&h, buf, (size_t)n);
    for (int k = 0; k < nb; k++) {
        n = snprintf(buf, sizeof buf, "%d,", bits[k]);
        ba_sha256_update(&h, buf, (size_t)n);
    }
    /* Settings that only some methods read are still part of the key: a
     * simpler key can never alias two different computations. */
    n = snprintf(
        buf, sizeof buf, "\nloss=%d\ntol=%.17g\nprobes=%d,%d\nseed=%llu\nquant=%s,%s,%s,%d\nmax_data=%lld\n",
        (int)opts->loss, opts->tol, opts->max_probes, opts->per_layer_probes, (unsigned long long)opts->seed,
        ba_quant_scheme_name(opts->quant.scheme), ba_quant_granularity_str(&opts->quant, gran, sizeof gran),
        ba_quant_clip_name(opts->quant.clip), opts->quant.act_bits, (long long)opts->max_data);
    ba_sha256_update(&h, buf, (size_t)n);
    /* The output metric: `measured`'s own, and what the gradient methods' default loss follows. */
    if (method == BA_SENS_MEASURED ||
        (opts->loss == BA_SENS_LOSS_AUTO &&
         (method == BA_SENS_HESSIAN || method == BA_SENS_FISHER || method == BA_SENS_LRP))) {
        n = snprintf(buf, sizeof buf, "metric=%s\n", ba_metric_name(opts->metric));
        ba_sha256_update(&h, buf, (size_t)n);
    }
    /* The layer set (e.g. with --include-embeddings) changes the table. */
    for (int l = 0; l < m->nlayers; l++) {
        ba_sha256_update(&h, m->layers[l].name, strlen(m->layers[l].name) + 1);
    }
    char dsha[65] = "-";
    if (ds && ba_sens_method_needs_data(method)) ba_dataset_sha256(ds, dsha);
    n = snprintf(buf, sizeof buf, "data=%s\nlabels=", dsha);
    ba_sha256_update(&h, buf, (size_t)n);
    if (labels && nlabels > 0 && ba_sens_method_needs_data(method)) {
        char lsha[65];
        ba_sha256_hex(labels, (size_t)nlabels * sizeof *labels, lsha);
        ba_sha256_update(&h, lsha, 64);
    } else {
        ba_sha256_update(&h, "-", 1);
    }
    uint8_t dig[32];
    ba_sha256_final(&h, dig);
    for (int i = 0; i < 32; i++) snprintf(key + 2 * i, 3, "%02x", dig[i]);
}
