/* Latency sources: the measured `layer,bits,latency_us` table and roofline
 * profiles (YAML through libfyaml). The roofline formula is documented in
 * search/hw.h and configs/hw/README.md; keep the three in step. */
#include "search/hw.h"

#include <libfyaml.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/bits.h"
#include "core/util.h"

/* ---- measured table ---- */

typedef struct {
    char *layer;
    int bits;
    double us;
    int line;
} lat_row_t;

struct ba_latency_table {
    char *path;
    int n;
    lat_row_t *rows; /* sorted by (layer, bits) for bsearch */
};

static int row_cmp(const void *a, const void *b) {
    const lat_row_t *x = a, *y = b;
    int c = strcmp(x->layer, y->layer);
    return c ? c : (x->bits > y->bits) - (x->bits < y->bits);
}

void ba_latency_table_free(ba_latency_table_t *t) {
    if (!t) return;
    for (int i = 0; i < t->n; i++) free(t->rows[i].layer);
    free(t->rows);
    free(t->path);
    free(t);
}

int ba_latency_table_rows(const ba_latency_table_t *t) {
    return t->n;
}

/* Splits one CSV line (no newline) into at most max fields, in place. RFC 4180
 * quoting: "a ""b"", c" is one field. Returns the field count, -1 on a bad quote. */
static int csv_split(char *line, char **fields, int max) {
    int n = 0;
    char *p = line;
    for (;;) {
        if (n == max) return max + 1;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '"') {
            char *w = ++p;
            fields[n++] = w;
            for (;;) {
                if (!*p) return -1;
                if (*p == '"') {
                    if (p[1] == '"')
                        *w++ = '"', p += 2;
                    else
                        break;
                } else {
                    *w++ = *p++;
                }
            }
            *w = '\0';
            p++;
            while (*p == ' ' || *p == '\t') p++;
            if (*p && *p != ',') return -1;
        } else {
            fields[n++] = p;
            while (*p && *p != ',') p++;
            int at_end = !*p;
            char *e = p;
            while (e > fields[n - 1] && (e[-1] == ' ' || e[-1] == '\t')) e--;
            if (at_end) {
                *e = '\0';
                return n;
            }
            p++; /* past the comma, before e (which may be the comma) is cut */
            *e = '\0';
            continue;
        }
        if (!*p) return n;
        p++; /* the comma */
    }
}

#define LAT_FIELDS 3

ba_status ba_latency_table_load(const char *path, ba_latency_table_t **out, ba_error *err) {
    *out = NULL;
    uint8_t *data;
    size_t size;
    BA_TRY(ba_file_read(path, &data, &size, err));
    ba_latency_table_t *t = ba_calloc(1, sizeof *t, err);
    ba_status st = BA_OK;
    int cap = 0, lineno = 0, header = 0;
    if (!t || !(t->path = ba_strdup(path, err))) {
        st = err->code;
        goto done;
    }
    if (memchr(data, '\0', size)) {
        st = ba_error_set(err, BA_ERR_INPUT, "%s: not a text file (NUL byte)", path);
        goto done;
    }
    char *p = (char *)data;
    if (size >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) p += 3; /* UTF-8 BOM from spreadsheets */
    while (*p) {
        char *line = p, *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0', p = nl + 1;
        else
            p += strlen(p);
        lineno++;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r') line[--len] = '\0';
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (!*s) continue; /* blank lines */
        char *f[LAT_FIELDS];
        int nf = csv_split(line, f, LAT_FIELDS);
        if (!header) {
            if (nf != LAT_FIELDS || strcmp(f[0], "layer") || strcmp(f[1], "bits") ||
                strcmp(f[2], "latency_us")) {
                st = ba_error_set(err, BA_ERR_INPUT, "%s:%d: expected the header 'layer,bits,latency_us'",
                                  path, lineno);
                goto done;
            }
            header = 1;
            continue;
        }
        if (nf != LAT_FIELDS) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s:%d: expected 3 fields (layer,bits,latency_us)%s", path,
                              lineno, nf < 0 ? ", found an unterminated quote" : "");
            goto done;
        }
        char *end;
        long b = strtol(f[1], &end, 10);
        if (end == f[1] || *end || !ba_bits_valid((int)b)) {
            st = ba_error_set(err, BA_ERR_INPUT,
                              "%s:%d: bits '%s' is not a supported width (" BA_BITS_WIDTHS ")", path, lineno,
                              f[1]);
            goto done;
        }
        double us = strtod(f[2], &end);
        if (end == f[2] || *end || !isfinite(us) || us < 0) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s:%d: latency_us '%s' is not a finite number >= 0", path,
                              lineno, f[2]);
            goto done;
        }
        if (!*f[0]) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s:%d: empty layer name", path, lineno);
            goto done;
        }
        if (t->n == cap) {
            int nc = cap ? cap * 2 : 64;
            lat_row_t *r = ba_realloc(t->rows, (size_t)nc * sizeof *r, err);
            if (!r) {
                st = err->code;
                goto done;
            }
            t->rows = r, cap = nc;
        }
        lat_row_t *r = &t->rows[t->n];
        if (!(r->layer = ba_strdup(f[0], err))) {
            st = err->code;
            goto done;
        }
        r->bits = (int)b, r->us = us, r->line = lineno;
        t->n++;
    }
    if (!header) {
        st = ba_error_set(err, BA_ERR_INPUT, "%s: empty file (expected the header 'layer,bits,latency_us')",
                          path);
        goto done;
    }
    qsort(t->rows, (size_t)t->n, sizeof *t->rows, row_cmp);
    for (int i = 1; i < t->n; i++)
        if (row_cmp(&t->rows[i - 1], &t->rows[i]) == 0) {
            int a = t->rows[i - 1].line, c = t->rows[i].line;
            st = ba_error_set(err, BA_ERR_INPUT, "%s:%d: layer %s at %d bits repeats line %d", path,
                              a > c ? a : c, t->rows[i].layer, t->rows[i].bits, a < c ? a : c);
            goto done;
        }
done:
    free(data);
    if (st != BA_OK)
        ba_latency_table_free(t);
    else
        *out = t;
    return st;
}

ba_status ba_latency_table_get(const ba_latency_table_t *t, const char *layer, int bits, double *us,
                               ba_error *err) {
    lat_row_t key = {.layer = (char *)layer, .bits = bits};
    const lat_row_t *r = bsearch(&key, t->rows, (size_t)t->n, sizeof *t->rows, row_cmp);
    if (!r)
        return ba_error_set(err, BA_ERR_INPUT, "%s: no latency for layer %s at %d bits", t->path, layer,
                            bits);
    *us = r->us;
    return BA_OK;
}

/* ---- roofline profiles ---- */

void ba_hw_profile_free(ba_hw_profile_t *hw) {
    if (!hw) return;
    free(hw->name);
    free(hw->description);
    free(hw);
}

static int is_path(const char *s) {
    size_t n = strlen(s);
    return strchr(s, '/') || (n > 5 && strcmp(s + n - 5, ".yaml") == 0) ||
           (n > 4 && strcmp(s + n - 4, ".yml") == 0);
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Scalar of key in mapping m as a finite number >= 0 (required or not). */
static ba_status yaml_number(struct fy_node *m, const char *key, int required, double *out, const char *path,
                             ba_error *err) {
    struct fy_node *n = fy_node_mapping_lookup_by_string(m, key, FY_NT);
    if (!n) {
        if (required) return ba_error_set(err, BA_ERR_INPUT, "%s: missing key '%s'", path, key);
        return BA_OK;
    }
    const char *s = fy_node_is_scalar(n) ? fy_node_get_scalar0(n) : NULL;
    char *end;
    double v = s ? strtod(s, &end) : NAN;
    if (!s || end == s || *end || !isfinite(v) || v < 0)
        return ba_error_set(err, BA_ERR_INPUT, "%s: '%s' must be a finite number >= 0", path, key);
    *out = v;
    return BA_OK;
}

/* Format names of peak_tops: int2..int8, fp16, fp32 (also bf16 for 16 bits). */
static int format_bits(const char *name) {
    if (strncasecmp(name, "int", 3) == 0) {
        char *end;
        long b = strtol(name + 3, &end, 10);
        return *end || b < 2 || b > 8 ? 0 : (int)b;
    }
    if (strcasecmp(name, "fp16") == 0 || strcasecmp(name, "bf16") == 0) return 16;
    if (strcasecmp(name, "fp32") == 0) return 32;
    return 0;
}

static ba_status parse_profile(struct fy_document *doc, const char *path, ba_hw_profile_t *hw,
                               ba_error *err) {
    struct fy_node *root = fy_document_root(doc);
    if (!root || !fy_node_is_mapping(root))
        return ba_error_set(err, BA_ERR_INPUT, "%s: expected a YAML mapping", path);
    struct fy_node *n = fy_node_mapping_lookup_by_string(root, "name", FY_NT);
    if (n && fy_node_is_scalar(n) && !(hw->name = ba_strdup(fy_node_get_scalar0(n), err))) return err->code;
    n = fy_node_mapping_lookup_by_string(root, "description", FY_NT);
    if (n && fy_node_is_scalar(n) && !(hw->description = ba_strdup(fy_node_get_scalar0(n), err)))
        return err->code;
    BA_TRY(yaml_number(root, "memory_bandwidth_gbps", 1, &hw->bandwidth_gbps, path, err));
    if (!(hw->bandwidth_gbps > 0))
        return ba_error_set(err, BA_ERR_INPUT, "%s: 'memory_bandwidth_gbps' must be greater than zero", path);
    BA_TRY(yaml_number(root, "launch_overhead_us", 0, &hw->overhead_us, path, err));
    struct fy_node *peaks = fy_node_mapping_lookup_by_string(root, "peak_tops", FY_NT);
    if (!peaks || !fy_node_is_mapping(peaks))
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: missing mapping 'peak_tops' (format: tera-ops per second)", path);
    void *iter = NULL;
    struct fy_node_pair *pair;
    int nformats = 0;
    while ((pair = fy_node_mapping_iterate(peaks, &iter))) {
        struct fy_node *k = fy_node_pair_key(pair);
        const char *name = k && fy_node_is_scalar(k) ? fy_node_get_scalar0(k) : NULL;
        int b = name ? format_bits(name) : 0;
        if (!b)
            return ba_error_set(err, BA_ERR_INPUT,
                                "%s: peak_tops: unknown format '%s' (int2..int8, fp16, bf16, fp32)", path,
                                name ? name : "?");
        double v = 0;
        BA_TRY(yaml_number(peaks, name, 1, &v, path, err));
        if (!(v > 0))
            return ba_error_set(err, BA_ERR_INPUT, "%s: peak_tops: %s must be greater than zero", path, name);
        hw->peak_tops[b] = v;
        nformats++;
    }
    if (!nformats) return ba_error_set(err, BA_ERR_INPUT, "%s: peak_tops lists no format", path);
    return BA_OK;
}

ba_status ba_hw_profile_load(const char *profile, ba_hw_profile_t **out, ba_error *err) {
    *out = NULL;
    char path[4096];
    if (is_path(profile)) {
        snprintf(path, sizeof path, "%s", profile);
    } else {
        const char *dirs[3] = {getenv("BITALLOC_HW_DIR"), "configs/hw",
#ifdef BA_HW_DEFAULT_DIR
                               BA_HW_DEFAULT_DIR
#else
                               NULL
#endif
        };
        int found = 0;
        for (int i = 0; i < 3 && !found; i++) {
            if (!dirs[i] || !*dirs[i]) continue;
            snprintf(path, sizeof path, "%s/%s.yaml", dirs[i], profile);
            found = file_exists(path);
        }
        if (!found)
            return ba_error_set(
                err, BA_ERR_INPUT,
                "--hw %s: no profile %s.yaml in $BITALLOC_HW_DIR or configs/hw (give a path to a .yaml file)",
                profile, profile);
    }
    if (!file_exists(path)) return ba_error_set(err, BA_ERR_INPUT, "--hw %s: no such file", path);
    /* Read the file ourselves: only UTF-8 text without NUL bytes reaches libfyaml
     * (it can loop forever on a malformed UTF-8 sequence in a directive line). */
    uint8_t *text = NULL;
    size_t size = 0;
    BA_TRY(ba_file_read(path, &text, &size, err));
    size_t bad = memchr(text, '\0', size) ? (size_t)((const uint8_t *)memchr(text, '\0', size) - text)
                                          : ba_utf8_invalid_at(text, size);
    if (bad < size) {
        free(text);
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: not a YAML text file (byte %zu is NUL or not valid UTF-8)", path, bad);
    }
    /* Collect libfyaml's diagnostics instead of letting it print: the library never writes to stderr. */
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    if (!diag) {
        free(text);
        return ba_error_set(err, BA_ERR_NOMEM, "out of memory: YAML diagnostics");
    }
    fy_diag_set_collect_errors(diag, true);
    struct fy_parse_cfg cfg = {.flags = FYPCF_QUIET, .diag = diag};
    struct fy_document *doc = fy_document_build_from_string(&cfg, (const char *)text, size);
    if (!doc) {
        void *it = NULL;
        struct fy_diag_error *de = fy_diag_errors_iterate(diag, &it);
        if (de)
            ba_error_set(err, BA_ERR_INPUT, "%s:%d:%d: not valid YAML: %s", path, de->line, de->column,
                         de->msg);
        else
            ba_error_set(err, BA_ERR_INPUT, "%s: not valid YAML", path);
        fy_diag_destroy(diag);
        free(text);
        return BA_ERR_INPUT;
    }
    ba_hw_profile_t *hw = ba_calloc(1, sizeof *hw, err);
    ba_status st = hw ? parse_profile(doc, path, hw, err) : err->code;
    if (st == BA_OK && !hw->name) {
        /* Default name: the file's base name without extension. */
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        if (!(hw->name = ba_strdup(base, err)))
            st = err->code;
        else {
            char *dot = strrchr(hw->name, '.');
            if (dot) *dot = '\0';
        }
    }
    fy_document_destroy(doc);
    fy_diag_destroy(diag);
    free(text); /* the document pointed into it */
    if (st != BA_OK)
        ba_hw_profile_free(hw);
    else
        *out = hw;
    return st;
}

/* Bytes per GB and ops per tera-op as the profiles' units define them. */
#define BYTES_PER_GB 1e9
#define OPS_PER_TERA 1e12
#define US_PER_S 1e6
/* A MAC is a multiply and an add: vendors' TOPS count both. */
#define OPS_PER_MAC 2.0

ba_status ba_hw_layer_latency(const ba_hw_profile_t *hw, const char *layer, int64_t weight_bytes,
                              int64_t macs, int bits, double *us, ba_error *err) {
    double peak = 0;
    if (bits >= 2 && bits <= 8) {
        for (int f = bits; f <= 8 && peak == 0; f++) peak = hw->peak_tops[f];
        /* No integer format wide enough: fall back to floating point kernels. */
        if (peak == 0) peak = hw->peak_tops[16] ? hw->peak_tops[16] : hw->peak_tops[32];
    } else if (bits == 16) {
        peak = hw->peak_tops[16] ? hw->peak_tops[16] : hw->peak_tops[32];
    } else if (bits == 32) {
        peak = hw->peak_tops[32];
    }
    if (peak == 0)
        return ba_error_set(err, BA_ERR_INPUT, "--hw %s: no format holds %d-bit weights (layer %s)", hw->name,
                            bits, layer);
    double t_mem = (double)weight_bytes / (hw->bandwidth_gbps * BYTES_PER_GB);
    double t_ops = OPS_PER_MAC * (double)macs / (peak * OPS_PER_TERA);
    *us = (t_mem > t_ops ? t_mem : t_ops) * US_PER_S + hw->overhead_us;
    return BA_OK;
}
