/* Quantities with units: see core/units.h. */
#include "core/units.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    double factor;
} unit_t;

#define BA_UNITS_KIB 1024.0

static const unit_t BYTES_UNITS[] = {
    {"B", 1.0},
    {"KiB", BA_UNITS_KIB},
    {"MiB", BA_UNITS_KIB *BA_UNITS_KIB},
    {"GiB", BA_UNITS_KIB *BA_UNITS_KIB *BA_UNITS_KIB},
    {NULL, 0},
};
static const unit_t COUNT_UNITS[] = {
    {"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15}, {NULL, 0},
};
/* "u" and both UTF-8 spellings of micro (U+00B5 micro sign, U+03BC mu). */
static const unit_t MICROS_UNITS[] = {
    {"us", 1.0}, {"\xc2\xb5s", 1.0}, {"\xce\xbcs", 1.0}, {"ms", 1e3}, {NULL, 0},
};
static const unit_t PLAIN_UNITS[] = {{NULL, 0}};

static const unit_t *units_of(ba_qty_t q) {
    switch (q) {
    case BA_QTY_BYTES: return BYTES_UNITS;
    case BA_QTY_COUNT: return COUNT_UNITS;
    case BA_QTY_MICROS: return MICROS_UNITS;
    default: return PLAIN_UNITS;
    }
}

const char *ba_qty_units(ba_qty_t q) {
    switch (q) {
    case BA_QTY_BYTES: return "B, KiB, MiB, GiB; a bare number is bytes";
    case BA_QTY_COUNT: return "k, K, M, G, T, P; a bare number is a count";
    case BA_QTY_MICROS: return "us, \xc2\xb5s, ms; a bare number is microseconds";
    default: return "none: a plain number";
    }
}

/* Length of the decimal number at s: [+-]digits[.digits][(e|E)[+-]digits].
 * Written out rather than trusting strtod, which also takes "inf", "nan" and hex. */
static size_t number_prefix(const char *s) {
    size_t i = 0, digits = 0;
    if (s[i] == '+' || s[i] == '-') i++;
    while (s[i] >= '0' && s[i] <= '9') i++, digits++;
    if (s[i] == '.') {
        i++;
        while (s[i] >= '0' && s[i] <= '9') i++, digits++;
    }
    if (digits == 0) return 0;
    if (s[i] == 'e' || s[i] == 'E') {
        size_t j = i + 1;
        if (s[j] == '+' || s[j] == '-') j++;
        if (s[j] >= '0' && s[j] <= '9') {
            while (s[j] >= '0' && s[j] <= '9') j++;
            i = j;
        }
    }
    return i;
}

#define BA_UNITS_NUM_MAX 64

ba_status ba_qty_parse(ba_qty_t q, const char *text, double *out, ba_error *err) {
    const char *s = text;
    while (*s == ' ' || *s == '\t') s++;
    size_t n = number_prefix(s);
    if (n == 0) return ba_error_set(err, BA_ERR_INPUT, "'%s' is not a number", text);
    char num[BA_UNITS_NUM_MAX];
    if (n >= sizeof num) return ba_error_set(err, BA_ERR_INPUT, "'%s': number too long", text);
    memcpy(num, s, n);
    num[n] = '\0';
    double v = strtod(num, NULL);
    const char *suffix = s + n;
    while (*suffix == ' ' || *suffix == '\t') suffix++;
    size_t sl = strlen(suffix);
    while (sl > 0 && (suffix[sl - 1] == ' ' || suffix[sl - 1] == '\t')) sl--;
    if (sl > 0) {
        const unit_t *u = units_of(q);
        for (; u->name; u++)
            if (strlen(u->name) == sl && strncmp(suffix, u->name, sl) == 0) break;
        if (!u->name)
            return ba_error_set(err, BA_ERR_INPUT, "unknown unit '%.*s' in '%s' (units: %s)", (int)sl, suffix,
                                text, ba_qty_units(q));
        v *= u->factor;
    }
    if (!isfinite(v)) return ba_error_set(err, BA_ERR_INPUT, "'%s' is out of range", text);
    *out = v;
    return BA_OK;
}
