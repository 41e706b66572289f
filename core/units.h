/* Quantities with units (SPEC §4): the one parser of "NUMBER[UNIT]" for budgets,
 * sweeps, config values and --where, so every place accepts the same suffixes
 * and every message lists exactly those. A bare number is in the canonical unit. */
#ifndef BA_CORE_UNITS_H
#define BA_CORE_UNITS_H

#include "core/error.h"

typedef enum {
    BA_QTY_PLAIN = 0,  /* a plain number (avg-bits, kl …): no suffix */
    BA_QTY_BYTES = 1,  /* bytes; suffixes B, KiB, MiB, GiB (1024-based) */
    BA_QTY_COUNT = 2,  /* a count (bops); suffixes k/K, M, G, T, P (1000-based) */
    BA_QTY_MICROS = 3, /* microseconds; suffixes us (or µs), ms */
} ba_qty_t;

/* The accepted suffixes of q as a message lists them ("B, KiB, MiB, GiB"; "none"). */
const char *ba_qty_units(ba_qty_t q);

/* Parses a decimal number ([+-]digits[.digits][e[+-]digits], no hex, inf or nan),
 * optional blanks, then an optional suffix of q (exact case), into q's canonical
 * unit. A finite result is guaranteed; the sign is the caller's to check.
 * err's message says what is wrong without naming the value's owner (the caller
 * prefixes that). */
ba_status ba_qty_parse(ba_qty_t q, const char *text, double *out, ba_error *err);

#endif
