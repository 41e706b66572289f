/* Budgets (SPEC §4): parsing `--budget KEY=VALUE` and `--sweep KEY=FROM:TO:STEP`
 * into canonical units (bits, bytes, bit-operations, microseconds), and
 * formatting values back for messages. */
#ifndef BA_SEARCH_BUDGET_H
#define BA_SEARCH_BUDGET_H

#include <stddef.h>

#include "core/error.h"

typedef enum {
    BA_BUDGET_AVG_BITS = 0, /* Σ b·params / Σ params; a plain number */
    BA_BUDGET_MEMORY = 1,   /* bytes (BA_QTY_BYTES: bare number, B, KiB, MiB, GiB) */
    BA_BUDGET_BOPS = 2,     /* bit-operations (BA_QTY_COUNT: bare number, k/K, M, G, T, P) */
    BA_BUDGET_LATENCY = 3,  /* microseconds (BA_QTY_MICROS: bare number, us or µs, ms) */
} ba_budget_kind_t;

#define BA_BUDGET_NKINDS 4

typedef struct ba_budget {
    ba_budget_kind_t kind;
    double limit; /* canonical unit of the kind; finite and > 0 */
} ba_budget_t;

/* At most one budget per kind (a repeated key is bad input: which one would hold?). */
typedef struct ba_budget_set {
    int n;
    ba_budget_t items[BA_BUDGET_NKINDS];
} ba_budget_set_t;

typedef struct ba_budget_sweep {
    ba_budget_kind_t kind;
    double from, to, step; /* canonical units; step > 0, from <= to */
} ba_budget_sweep_t;

/* "avg-bits", "memory", "bops", "latency". */
const char *ba_budget_key(ba_budget_kind_t kind);
/* Unit of the canonical value ("bits", "bytes", "BOPs", "us"). */
const char *ba_budget_unit(ba_budget_kind_t kind);
ba_status ba_budget_kind_parse(const char *key, ba_budget_kind_t *out, ba_error *err);
/* Parses one value of the given kind (units per ba_budget_kind_t) into its canonical unit.
 * (core/units.h decides the suffixes). Rejected: empty, NaN/inf, negative, zero, an unknown unit. */
ba_status ba_budget_value_parse(ba_budget_kind_t kind, const char *value, double *out, ba_error *err);
/* "KEY=VALUE" (the argument of --budget). */
ba_status ba_budget_parse(const char *spec, ba_budget_t *out, ba_error *err);
/* Parses "KEY=VALUE" and adds it to set; a key already in set is an error. */
ba_status ba_budget_set_add(ba_budget_set_t *set, const char *spec, ba_error *err);
/* Index of kind in set, or -1. */
int ba_budget_set_find(const ba_budget_set_t *set, ba_budget_kind_t kind);
/* "KEY=FROM:TO:STEP" (the argument of --sweep); each part takes the key's units
 * (memory=1MiB:4MiB:256KiB). Also rejects step <= 0, from > to, and more than
 * BA_BUDGET_SWEEP_MAX_POINTS points. */
#define BA_BUDGET_SWEEP_MAX_POINTS 100000
ba_status ba_budget_sweep_parse(const char *spec, ba_budget_sweep_t *out, ba_error *err);
/* Number of points from, from+step, … <= to (with a relative slack of 1e-9 step
 * so that 2:4:0.1 ends on 4). Point i is from + i*step. */
int ba_budget_sweep_npoints(const ba_budget_sweep_t *s);

/* Human form of a value: "4.25", "1.50 MiB (1572864 B)", "1.2e+09", "350.0 us". */
void ba_budget_format(ba_budget_kind_t kind, double value, char *buf, size_t cap);

#endif
