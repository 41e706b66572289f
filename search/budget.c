/* Budget parsing: KEY=VALUE with units, sweeps, and human formatting.
 * Every value is checked here once, so the search only ever sees finite,
 * positive limits in canonical units (bits, bytes, BOPs, microseconds). */
#include "search/budget.h"

#include "core/units.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const KEYS[BA_BUDGET_NKINDS] = {"avg-bits", "memory", "bops", "latency"};
static const char *const UNITS[BA_BUDGET_NKINDS] = {"bits", "bytes", "BOPs", "us"};

/* The unit of each kind's values; the suffixes themselves live in core/units.c. */
/* No layer is wider than 32 bits, so no average is either. */
#define BA_BUDGET_MAX_AVG_BITS 32

static const ba_qty_t QTY[BA_BUDGET_NKINDS] = {BA_QTY_PLAIN, BA_QTY_BYTES, BA_QTY_COUNT, BA_QTY_MICROS};

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
    return ba_error_set(err, BA_ERR_INPUT, "unknown budget key '%s' (keys: avg-bits, memory, bops, latency)",
                        key);
}

ba_status ba_budget_value_parse(ba_budget_kind_t kind, const char *value, double *out, ba_error *err) {
    const char *key = ba_budget_key(kind);
    double v;
    if ((unsigned)kind >= BA_BUDGET_NKINDS) return ba_error_set(err, BA_ERR_INPUT, "budget: unknown kind");
    ba_status st = ba_qty_parse(QTY[kind], value, &v, err);
    if (st != BA_OK) {
        if (err) ba_error_prefix(err, "budget %s=%s", key, value);
        return st;
    }
    if (v < 0) return ba_error_set(err, BA_ERR_INPUT, "budget %s=%s: must not be negative", key, value);
    if (v == 0) return ba_error_set(err, BA_ERR_INPUT, "budget %s=%s: must be greater than zero", key, value);
    if (kind == BA_BUDGET_AVG_BITS && v > BA_BUDGET_MAX_AVG_BITS)
        return ba_error_set(err, BA_ERR_INPUT, "budget %s=%s: must be at most %d (the widest width)", key,
                            value, BA_BUDGET_MAX_AVG_BITS);
    *out = v;
    return BA_OK;
}

ba_status ba_budget_parse(const char *spec, ba_budget_t *out, ba_error *err) {
    const char *eq = strchr(spec, '=');
    if (!eq) return ba_error_set(err, BA_ERR_INPUT, "expected KEY=VALUE, got '%s'", spec);
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
        return ba_error_set(err, BA_ERR_INPUT, "'%s': %s is given twice", spec, ba_budget_key(b.kind));
    if (set->n >= BA_BUDGET_NKINDS) return ba_error_set(err, BA_ERR_INPUT, "'%s': too many budgets", spec);
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
    if (!eq) return ba_error_set(err, BA_ERR_INPUT, "expected KEY=FROM:TO:STEP, got '%s'", spec);
    char buf[256];
    if (strlen(spec) >= sizeof buf) return ba_error_set(err, BA_ERR_INPUT, "sweep '%.32s…': too long", spec);
    strcpy(buf, spec);
    buf[eq - spec] = '\0';
    ba_budget_kind_t kind = BA_BUDGET_AVG_BITS;
    BA_TRY(ba_budget_kind_parse(buf, &kind, err));
    char *parts[3], *p = buf + (eq - spec) + 1;
    for (int i = 0; i < 3; i++) {
        parts[i] = p;
        char *c = strchr(p, ':');
        if (i < 2) {
            if (!c) return ba_error_set(err, BA_ERR_INPUT, "expected KEY=FROM:TO:STEP, got '%s'", spec);
            *c = '\0';
            p = c + 1;
        } else if (c) {
            return ba_error_set(err, BA_ERR_INPUT, "expected KEY=FROM:TO:STEP, got '%s'", spec);
        }
    }
    double v[3];
    for (int i = 0; i < 3; i++) BA_TRY(ba_budget_value_parse(kind, parts[i], &v[i], err));
    if (v[0] > v[1]) return ba_error_set(err, BA_ERR_INPUT, "FROM must not exceed TO in '%s'", spec);
    out->kind = kind;
    out->from = v[0];
    out->to = v[1];
    out->step = v[2];
    if (ba_budget_sweep_npoints(out) > BA_BUDGET_SWEEP_MAX_POINTS)
        return ba_error_set(err, BA_ERR_INPUT, "'%s' gives more than %d points", spec,
                            BA_BUDGET_SWEEP_MAX_POINTS);
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
        if (u == 0)
            snprintf(buf, cap, "%.0f B", v);
        else
            snprintf(buf, cap, "%.3f %s (%.0f B)", x, names[u], v);
        break;
    }
    case BA_BUDGET_BOPS: snprintf(buf, cap, "%.6g", v); break;
    case BA_BUDGET_LATENCY:
        if (v >= 1e4)
            snprintf(buf, cap, "%.6g ms", v / 1e3);
        else
            snprintf(buf, cap, "%.6g us", v);
        break;
    default: snprintf(buf, cap, "%g", v);
    }
}
