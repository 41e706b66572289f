/* Aligned tables, CSV and JSON printing for the commands (see format.h). Column widths
 * count UTF-8 code points so layer names with non-ASCII characters still line up. */
#include "cli/format.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BA_TABLE_GAP 2 /* spaces between columns */
#define BA_KIB 1024.0

struct ba_table {
    size_t ncols, nrows, cap;
    char **cells; /* (nrows + 1) x ncols, row 0 = headers */
    ba_align *align;
};

static char *dup_or_dash(const char *s) {
    return strdup(s ? s : "-");
}

ba_table_t *ba_table_new(size_t ncols, const char *const *headers, const ba_align *align) {
    ba_table_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ncols = ncols;
    t->cap = 8;
    t->cells = calloc(t->cap * ncols, sizeof *t->cells);
    t->align = calloc(ncols ? ncols : 1, sizeof *t->align);
    if (!t->cells || !t->align) goto oom;
    for (size_t c = 0; c < ncols; c++) {
        t->align[c] = align ? align[c] : BA_ALIGN_AUTO;
        if (!(t->cells[c] = dup_or_dash(headers[c]))) goto oom;
    }
    return t;
oom:
    ba_table_free(t);
    return NULL;
}

void ba_table_free(ba_table_t *t) {
    if (!t) return;
    if (t->cells)
        for (size_t i = 0; i < (t->nrows + 1) * t->ncols; i++) free(t->cells[i]);
    free(t->cells);
    free(t->align);
    free(t);
}

size_t ba_table_rows(const ba_table_t *t) {
    return t->nrows;
}

int ba_table_add(ba_table_t *t, const char *const *cells) {
    if (t->nrows + 2 > t->cap) {
        size_t cap = t->cap * 2;
        char **nc = realloc(t->cells, cap * t->ncols * sizeof *nc);
        if (!nc) return -1;
        t->cells = nc;
        t->cap = cap;
    }
    char **row = t->cells + (t->nrows + 1) * t->ncols;
    for (size_t c = 0; c < t->ncols; c++) {
        if (!(row[c] = dup_or_dash(cells[c]))) {
            while (c--) free(row[c]);
            return -1;
        }
    }
    t->nrows++;
    return 0;
}

int ba_table_addf(ba_table_t *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *line = NULL;
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    const char **cells = calloc(t->ncols ? t->ncols : 1, sizeof *cells);
    if (!cells) {
        free(line);
        return -1;
    }
    char *p = line;
    for (size_t c = 0; c < t->ncols; c++) {
        cells[c] = p;
        char *tab = p ? strchr(p, '\t') : NULL;
        if (tab) *tab = '\0';
        p = tab ? tab + 1 : NULL;
    }
    int rc = ba_table_add(t, cells);
    free(cells);
    free(line);
    return rc;
}

static size_t utf8_width(const char *s) {
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) w++;
    return w;
}

static int is_number(const char *s) {
    if (!*s || strcmp(s, "-") == 0) return -1; /* neutral: does not decide the column */
    char *end;
    strtod(s, &end);
    return end != s && *end == '\0';
}

static ba_align column_align(const ba_table_t *t, size_t c) {
    if (t->align[c] != BA_ALIGN_AUTO) return t->align[c];
    int any = 0;
    for (size_t r = 1; r <= t->nrows; r++) {
        int n = is_number(t->cells[r * t->ncols + c]);
        if (n == 0) return BA_ALIGN_LEFT;
        any |= n == 1;
    }
    return any ? BA_ALIGN_RIGHT : BA_ALIGN_LEFT;
}

void ba_table_print(const ba_table_t *t, FILE *fp) {
    size_t *w = calloc(t->ncols ? t->ncols : 1, sizeof *w);
    ba_align *al = calloc(t->ncols ? t->ncols : 1, sizeof *al);
    if (!w || !al) {
        free(w);
        free(al);
        return;
    }
    for (size_t c = 0; c < t->ncols; c++) {
        al[c] = column_align(t, c);
        for (size_t r = 0; r <= t->nrows; r++) {
            size_t cw = utf8_width(t->cells[r * t->ncols + c]);
            if (cw > w[c]) w[c] = cw;
        }
    }
    for (size_t r = 0; r <= t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            size_t pad = w[c] - utf8_width(s);
            int last = c + 1 == t->ncols;
            if (al[c] == BA_ALIGN_RIGHT) fprintf(fp, "%*s", (int)pad, "");
            fputs(s, fp);
            if (al[c] == BA_ALIGN_LEFT && !last) fprintf(fp, "%*s", (int)pad, "");
            if (!last) fprintf(fp, "%*s", BA_TABLE_GAP, "");
        }
        fputc('\n', fp);
    }
    free(w);
    free(al);
}

int ba_table_print_free(ba_table_t *t, int failed, FILE *fp) {
    if (!failed) ba_table_print(t, fp);
    ba_table_free(t);
    return failed ? -1 : 0;
}

void ba_csv_row(FILE *fp, size_t n, const char *const *cells) {
    for (size_t i = 0; i < n; i++) {
        if (i) fputc(',', fp);
        ba_csv_field(fp, cells[i]);
    }
    fputc('\n', fp);
}

void ba_table_print_csv(const ba_table_t *t, FILE *fp) {
    for (size_t r = 0; r <= t->nrows; r++)
        ba_csv_row(fp, t->ncols, (const char *const *)t->cells + r * t->ncols);
}

json_t *ba_table_to_json(const ba_table_t *t) {
    json_t *arr = json_array();
    for (size_t r = 1; arr && r <= t->nrows; r++) {
        json_t *obj = json_object();
        for (size_t c = 0; obj && c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            json_t *v;
            if (strcmp(s, "-") == 0)
                v = json_null();
            else if (is_number(s) == 1)
                v = strchr(s, '.') || strchr(s, 'e') || strchr(s, 'E') ? json_real(strtod(s, NULL))
                                                                       : json_integer(strtoll(s, NULL, 10));
            else
                v = json_string(s);
            json_object_set_new(obj, t->cells[c], v);
        }
        json_array_append_new(arr, obj);
    }
    return arr;
}

int ba_table_emit(const ba_table_t *t, const char *format, FILE *fp) {
    if (!format || strcmp(format, "table") == 0) {
        ba_table_print(t, fp);
    } else if (strcmp(format, "csv") == 0) {
        ba_table_print_csv(t, fp);
    } else if (strcmp(format, "json") == 0) {
        json_t *j = ba_table_to_json(t);
        int rc = j ? ba_json_print(fp, j) : -1;
        json_decref(j);
        if (rc) return -1;
    } else {
        return -1;
    }
    return ferror(fp) ? -1 : 0;
}

int ba_json_print(FILE *fp, const json_t *j) {
    if (json_dumpf(j, fp, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17)) != 0) return -1;
    return fputc('\n', fp) == EOF ? -1 : 0;
}

int ba_json_print_rows(FILE *fp, int n, ba_json_row_fn *row, void *ctx) {
    json_t *arr = json_array();
    int bad = !arr;
    for (int i = 0; !bad && i < n; i++) {
        json_t *o = json_object();
        bad |= !o || json_array_append_new(arr, o) != 0;
        if (!bad) bad = row(o, i, ctx) != 0;
    }
    if (!bad) bad = ba_json_print(fp, arr) != 0;
    json_decref(arr);
    return bad ? -1 : 0;
}

json_t *ba_json_real_or_null(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

json_t *ba_json_string_lossy(const char *s) {
    if (!s) return json_null();
    if (ba_utf8_valid(s)) return json_string(s);
    size_t n = strlen(s);
    char *buf = malloc(3 * n + 1); /* each bad byte becomes U+FFFD (3 bytes) */
    if (!buf) return NULL;
    size_t o = 0;
    for (int k; *s; s += k) {
        k = ba_utf8_seq_len(s);
        if (k) {
            memcpy(buf + o, s, (size_t)k);
            o += (size_t)k;
        } else {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            k = 1;
        }
    }
    buf[o] = '\0';
    json_t *j = json_string(buf);
    free(buf);
    return j;
}

void ba_fmt_real(double v, char *buf, size_t cap) {
    if (!isfinite(v)) {
        snprintf(buf, cap, "%s", "");
        return;
    }
    snprintf(buf, cap, "%.15g", v);
    if (strtod(buf, NULL) != v) snprintf(buf, cap, "%.17g", v);
}

void ba_fmt_bytes(double bytes, char *buf, size_t cap) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t u = 0;
    while (fabs(bytes) >= BA_KIB && u + 1 < sizeof units / sizeof units[0]) {
        bytes /= BA_KIB;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%.0f B", bytes);
    else
        snprintf(buf, cap, "%.2f %s", bytes, units[u]);
}

void ba_fmt_count(double n, char *buf, size_t cap) {
    static const char *const units[] = {"", "k", "M", "G", "T", "P"};
    size_t u = 0;
    while (fabs(n) >= 1000.0 && u + 1 < sizeof units / sizeof units[0]) {
        n /= 1000.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%.0f", n);
    else
        snprintf(buf, cap, "%.2f%s", n, units[u]);
}
