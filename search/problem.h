/* The bit-allocation problem every search method solves: L layers, each with
 * candidate bit-widths, a cost Ω(l,b) to minimise, linear budgets
 * Σ A[l,b] + offset <= limit, pins and ties. Model-independent: the model glue
 * (study/problem.c: ba_study_problem_from_model) only fills these tables. */
#ifndef BA_SEARCH_PROBLEM_H
#define BA_SEARCH_PROBLEM_H

#include <stddef.h>
#include <stdint.h>

#include "core/bits.h"
#include "core/error.h"
#include "search/budget.h"

/* Relative slack when checking a budget: value <= limit·(1 + BA_BUDGET_REL_EPS).
 * It absorbs only the rounding of summing doubles (~L·2^-53); any real
 * excess, however small, is a violation. Solver and tests share it. */
#define BA_BUDGET_REL_EPS 1e-12

typedef struct ba_problem {
    int nlayers;
    char **names; /* [nlayers] owned copies */
    int *start;   /* [nlayers+1]: candidates of layer l are start[l] .. start[l+1]-1 */
    int ncand;    /* start[nlayers] */
    int *bits;    /* [ncand] ascending within a layer */
    double *cost; /* [ncand] Ω(l,b) */
    int nbudgets;
    ba_budget_kind_t kind[BA_BUDGET_NKINDS];
    double limit[BA_BUDGET_NKINDS];
    double offset[BA_BUDGET_NKINDS]; /* constant part (e.g. non-layer initializers of memory) */
    double *coef[BA_BUDGET_NKINDS];  /* [ncand] each */
    int *pin;                        /* [nlayers] pinned bits, 0 = free */
    int *tie;  /* [nlayers] tie group id (smallest layer index of the group), -1 = untied */
    int *perm; /* [ncand] private: input order of ba_problem_create -> sorted index */
} ba_problem_t;

/* ncand[l] candidates per layer; bits and cost are flat, layer after layer
 * (bits ascending or not: they are sorted, with their costs). */
ba_status ba_problem_create(int nlayers, const char *const *names, const int *ncand, const int *bits,
                            const double *cost, ba_problem_t **out, ba_error *err);
void ba_problem_free(ba_problem_t *p);
/* coef: [ncand], flat in the order of ba_problem_create's input (it is permuted like the bits).
 * A kind may be added once. */
ba_status ba_problem_add_budget(ba_problem_t *p, ba_budget_kind_t kind, double limit, double offset,
                                const double *coef, ba_error *err);
/* Index of layer l's candidate with this many bits, or -1. */
int ba_problem_find(const ba_problem_t *p, int l, int bits);
/* "--pin GLOB=BITS": fnmatch(3) against layer names. A glob matching no layer,
 * bits that are not among a matched layer's candidates, or a layer pinned to
 * two different widths are errors (BA_ERR_INPUT). */
ba_status ba_problem_pin(ba_problem_t *p, const char *spec, ba_error *err);
/* "--tie GLOB": every matching layer takes the same width. Ties that overlap
 * merge. Errors: no layer matches, no width common to all candidates of the
 * group, or pins inside the group that disagree. */
ba_status ba_problem_tie(ba_problem_t *p, const char *glob, ba_error *err);
/* Checks pins against ties (a tie group whose members pin different widths, or
 * pin a width that is not common to the group). Called by the solvers. */
ba_status ba_problem_check(const ba_problem_t *p, ba_error *err);

/* A configuration: choice[l] = candidate index within layer l (0 .. count-1). */
/* Σ Ω of the choice. */
double ba_problem_objective(const ba_problem_t *p, const int *choice);
/* Value of budget j (offset included). */
double ba_problem_budget_value(const ba_problem_t *p, int j, const int *choice);
/* Whether value meets limit (with the rounding slack above). */
int ba_budget_holds(double value, double limit);
/* Whether choice respects pins, ties and every budget. */
int ba_problem_feasible(const ba_problem_t *p, const int *choice);

/* Building a problem from a model (its layers, the quantizer's costs, the
 * latency sources) is study/'s: ba_study_problem_from_model (study/problem.c). */

#endif
