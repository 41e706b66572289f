/* Private to search/evo.c and search/baselines.c: the "units" a configuration
 * is mutated over (a free layer, or a tie group moving as one; pinned layers
 * are fixed), and the checkpoint pieces both searches write. */
#ifndef BA_SEARCH_EVO_INTERNAL_H
#define BA_SEARCH_EVO_INTERNAL_H

#include <jansson.h>

#include "search/evo.h"

typedef struct evo_units {
    int n;       /* free units */
    int *unit;   /* [nlayers] unit of a layer, -1 for a fixed (pinned) layer */
    int *fixed;  /* [nlayers] candidate index of a fixed layer */
    int *nw;     /* [n] widths common to the unit's layers */
    int *w;      /* [n * BA_BITS_MAX_CANDIDATES] those widths, ascending */
    int *mstart; /* [n + 1] members of unit u: mem[mstart[u] .. mstart[u+1]-1] */
    int *mem;    /* [nlayers] */
} evo_units_t;

ba_status evo_units_build(const ba_problem_t *p, evo_units_t *u, ba_error *err);
void evo_units_free(evo_units_t *u);
/* Level (index into its common widths) of unit k in choice. */
int evo_units_level(const ba_problem_t *p, const evo_units_t *u, const int *choice, int k);
/* Sets every member of unit k to level lv. */
void evo_units_set(const ba_problem_t *p, const evo_units_t *u, int *choice, int k, int lv);
/* A choice with every fixed layer at its pin and every unit at level lv[k]. */
void evo_units_apply(const ba_problem_t *p, const evo_units_t *u, const int *lv, int *choice);

/* ---- checkpoint helpers (JSON) ---- */
json_t *evo_res_json(const ba_eval_result_t *r);
int evo_res_parse(const json_t *j, ba_eval_result_t *r);
json_t *evo_rng_json(const ba_rng_t *r);
int evo_rng_parse(const json_t *j, ba_rng_t *r);
json_t *evo_choice_json(const int *choice, int n);
int evo_choice_parse(const json_t *j, int *choice, int n);
/* Serialises (compact, reals exact) and frees j; NULL when out of memory. */
char *evo_dump(json_t *j);
/* Stores a trial (hook) and fills the counters. */
ba_status evo_store(const ba_search_hooks_t *h, int64_t number, const char *state, const char *method,
                    const int *choice, const ba_eval_result_t *res, const char *checkpoint, ba_error *err);
ba_status evo_bad_checkpoint(ba_error *err, const char *what);

#endif
