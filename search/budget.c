/* Budget parsing: KEY=VALUE with units, sweeps, and human formatting.
 * Every value is checked here once, so the search only ever sees finite,
 * positive limits in canonical units (bits, bytes, BOPs, microseconds). */
#include "search/budget.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const KEYS[BA_BUDGET_NKINDS] = {"avg-bits", "memory", "bops", "latency"};
static const char *const UNITS[BA_BUDGET_NKINDS] = {"bits", "bytes", "BOPs", "us"};

/* A unit suffix and its factor to the canonical unit. Matching ignores case
 * (kb = KB = kB); KB/MB/GB are SI (1000-based) as in the SI/IEC standard, while
 * KiB/MiB/GiB are 1024-based, the units SPEC §4 names. */
typedef struct {
    const char *name;
    double factor;
} unit_t;

static const unit_t MEMORY_UNITS[] = {
    {"B", 1.0},          {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0},
    {"KB", 1e3},         {"MB", 1e6},     {"GB", 1e9},        {"TiB", 1099511627776.0},
    {"TB", 1e12},        {NULL, 0},
};
/* "u" and the UTF-8 micro sign both spell micro. */
static const unit_t LATENCY_UNITS[] = {
    {"us", 1.0}, {"\xc2\xb5s", 1.0}, {"\xce\xbcs", 1.0}, {"ms", 1e3}, {"s", 1e6}, {NULL, 0},
};
/* BOPs are a plain count; SI multipliers only save typing zeros. */
static const unit_t BOPS_UNITS[] = {
    {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15}, {NULL, 0},
};

const char *ba_budget_key(ba_budget_kind_t kind) {
    return (unsigned)kind < BA_BUDGET_NKINDS ? KEYS[kind] : "?";
}

const char *ba_budget_unit(ba_budget_kind_t kind) {
    return (unsigned)kind < BA_BUDGET_NKINDS ? UNITS[kind] : "?";
}

ba_status ba_budget_kind_parse(const char *key, ba_budget_kind_t *out, ba_error *err) {
    for (int k = 0; k < BA_BUDGET_NKINDS; k++)
        if (strcmp(key, KEYS[k]) == 0) {
            *out = (ba_budget_kind_t)k;
            return BA_OK;
        }
    return ba_error_set(err, BA_ERR_INPUT, "budget '%s': unknown key (expected avg-bits, memory, bops or latency)",
                        key);
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

ba_status ba_budget_value_parse(ba_budget_kind_t kind, const char *value, double *out, ba_error *err) {
    const char *key = ba_budget_key(kind);
    while (*value == ' ' || *value == '\t') value++;
    size_t n = number_prefix(value);
    if (n == 0)
        return ba_error_set(err, BA_ERR_INPUT, "budget %s=%s: not a number", key, value);
    char num[64];
    if (n >= sizeof num) return ba_error_set(err, BA_ERR_INPUT, "budget %s=%s: number too long", key, value);
    memcpy(num, value, n);
    num[n] = '\0';
    double v = strtod(num, NULL);
    const char *suffix = value + n;
    while (*suffix == ' ') suffix++;
    size_t sl = strlen(suffix);
    while (sl > 0 && (suffix[sl - 1] == ' ' || suffix[sl - 1] == '\t')) sl--;

    const unit_t *units = kind == BA_BUDGET_MEMORY    ? MEMORY_UNITS
                          : kind == BA_BUDGET_LATENCY ? LATENCY_UNITS
                          : kind == BA_BUDGET_BOPS    ? BOPS_UNITS
                                                      : NULL;
    int unit_required = kind == BA_BUDGET_MEMORY || kind == BA_BUDGET_LATENCY;
    double factor = 1.0;
    if (sl == 0) {
        if (unit_required)
            return ba_error_set(err, BA_ERR_INPUT, "budget %s=%s: the value needs a unit (%s)", key, value,
                                kind == BA_BUDGET_MEMORY ? "B, KiB, MiB, GiB, KB, MB or GB" : "us, ms or s");
    } else {
        int found = 0;
        for (const unit_t *u = units; u && u->name; u++)
            if (strlen(u->name) == sl && strncasecmp(suffix, u->name, sl) == 0) {
                /* Case-insensitive, except that "M"/"m" and "S"/"s" are never confused with milli/seconds
                 * in a way that changes meaning: latency units are all lower case anyway. */
                factor = u->factor;
                found = 1;
                break;
            }
        if (!found)
            return ba_error_set(err, BA_ERR_INPUT, "budget %s=%s: unknown unit '%.*s'%s", key, value, (int)sl, suffix,
                                kind == BA_BUDGET_AVG_BITS ? " (avg-bits is a plain number)"
                                : kind == BA_BUDGET_BOPS   ? " (bops takes K, M, G, T or P)"
                                : kind == BA_BUDGET_MEMORY ? " (expected B, KiB, MiB, GiB, KB, MB or GB)"
                                                           : " (expected us, ms or s)");
    }
    v *= factor;
    if (!isfinite(v)) return ba_error_set(err, BA_ERR_INPUT, "budget %s=%s: value out of range", key, value);
    if (v < 0) return ba_error_set(err, BA_ERR_INPUT, "budget %s=%s: must not be negative", key, value);
    if (v == 0) return ba_error_set(err, BA_ERR_INPUT, "budget %s=%s: must be greater than zero", key, value);
    *out = v;
    return BA_OK;
}

ba_status ba_budget_parse(const char *spec, ba_budget_t *out, ba_error *err) {
    const char *eq = strchr(spec, '=');
    if (!eq) return ba_error_set(err, BA_ERR_INPUT, "--budget %s: expected KEY=VALUE", spec);
    char key[32];
    size_t kl = (size_t)(eq - spec);
    if (kl >= sizeof key) kl = sizeof key - 1;
    memcpy(key, spec, kl);
    key[kl] = '\0';
    ba_budget_kind_t kind = BA_BUDGET_AVG_BITS;
    BA_TRY(ba_budget_kind_parse(key, &kind, err));
    out->kind = kind;
    return ba_budget_value_parse(kind, eq + 1, &out->limit, err);
}

ba_status ba_budget_set_add(ba_budget_set_t *set, const char *spec, ba_error *err) {
    ba_budget_t b;
    BA_TRY(ba_budget_parse(spec, &b, err));
    if (ba_budget_set_find(set, b.kind) >= 0)
        return ba_error_set(err, BA_ERR_INPUT, "--budget %s: %s is given twice", spec, ba_budget_key(b.kind));
    if (set->n >= BA_BUDGET_NKINDS) return ba_error_set(err, BA_ERR_INPUT, "--budget %s: too many budgets", spec);
    set->items[set->n++] = b;
    return BA_OK;
}

int ba_budget_set_find(const ba_budget_set_t *set, ba_budget_kind_t kind) {
    for (int i = 0; i < set->n; i++)
        if (set->items[i].kind == kind) return i;
    return -1;
}

/* Relative slack on the last sweep point, so that 2:4:0.1 includes 4 despite 0.1 not being exact. */
#define SWEEP_END_SLACK 1e-9

int ba_budget_sweep_npoints(const ba_budget_sweep_t *s) {
    double n = floor((s->to - s->from) / s->step + SWEEP_END_SLACK) + 1;
    return n < 1 ? 1 : n > BA_BUDGET_SWEEP_MAX_POINTS ? BA_BUDGET_SWEEP_MAX_POINTS + 1 : (int)n;
}

ba_status ba_budget_sweep_parse(const char *spec, ba_budget_sweep_t *out, ba_error *err) {
    const char *eq = strchr(spec, '=');
    if (!eq) return ba_error_set(err, BA_ERR_INPUT, "--sweep %s: expected KEY=FROM:TO:STEP", spec);
    char buf[256];
    if (strlen(spec) >= sizeof buf) return ba_error_set(err, BA_ERR_INPUT, "--sweep: argument too long");
    strcpy(buf, spec);
    buf[eq - spec] = '\0';
    ba_budget_kind_t kind = BA_BUDGET_AVG_BITS;
    BA_TRY(ba_budget_kind_parse(buf, &kind, err));
    char *parts[3], *p = buf + (eq - spec) + 1;
    for (int i = 0; i < 3; i++) {
        parts[i] = p;
        char *c = strchr(p, ':');
        if (i < 2) {
            if (!c) return ba_error_set(err, BA_ERR_INPUT, "--sweep %s: expected KEY=FROM:TO:STEP", spec);
            *c = '\0';
            p = c + 1;
        } else if (c) {
            return ba_error_set(err, BA_ERR_INPUT, "--sweep %s: expected KEY=FROM:TO:STEP", spec);
        }
    }
    double v[3];
    for (int i = 0; i < 3; i++)
        if (ba_budget_value_parse(kind, parts[i], &v[i], err) != BA_OK)
            return ba_error_prefix(err, "--sweep %s", spec);
    if (v[0] > v[1]) return ba_error_set(err, BA_ERR_INPUT, "--sweep %s: FROM is larger than TO", spec);
    out->kind = kind;
    out->from = v[0];
    out->to = v[1];
    out->step = v[2];
    if (ba_budget_sweep_npoints(out) > BA_BUDGET_SWEEP_MAX_POINTS)
        return ba_error_set(err, BA_ERR_INPUT, "--sweep %s: more than %d points", spec, BA_BUDGET_SWEEP_MAX_POINTS);
    return BA_OK;
}

void ba_budget_format(ba_budget_kind_t kind, double v, char *buf, size_t cap) {
    switch (kind) {
    case BA_BUDGET_AVG_BITS: snprintf(buf, cap, "%.6g", v); break;
    case BA_BUDGET_MEMORY: {
        static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        double x = v;
        int u = 0;
        while (x >= 1024.0 && u < 4) x /= 1024.0, u++;
        if (u == 0) snprintf(buf, cap, "%.0f B", v);
        else snprintf(buf, cap, "%.3f %s (%.0f B)", x, names[u], v);
        break;
    }
    case BA_BUDGET_BOPS: snprintf(buf, cap, "%.6g", v); break;
    case BA_BUDGET_LATENCY:
        if (v >= 1e4) snprintf(buf, cap, "%.6g ms", v / 1e3);
        else snprintf(buf, cap, "%.6g us", v);
        break;
    default: snprintf(buf, cap, "%g", v);
    }
}
