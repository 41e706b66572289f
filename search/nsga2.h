/* `nsga2`: a multi-objective search (NSGA-II, Deb et al. 2002) that returns a
 * measured Pareto front of (measured objective, the problem's first budget
 * quantity) in one run, every configuration meeting all the budgets.
 *
 * Generation 0 is the seed population: the ILP sweep of the first budget from
 * its smallest achievable value to its limit (method "ilp"), the widest
 * uniform width (method "uniform"), then random feasible configurations up to
 * the population size. Each generation draws `offspring` children (binary
 * tournaments on rank and crowding, uniform crossover over layers and tie
 * groups, one-level mutations, repaired into the budgets, never a
 * configuration already in the population), measures each on all N samples
 * and keeps the best `offspring` of parents and children by non-dominated
 * rank, then crowding distance. Every child is a complete trial.
 *
 * Determinism and resume as for evo (search/evo.h): the checkpoint after each
 * trial holds the generation, the random state at its start, the population
 * and the children measured so far; a resumed run draws the same children and
 * reuses the stored measurements. */
#ifndef BA_SEARCH_NSGA2_H
#define BA_SEARCH_NSGA2_H

#include "search/evo.h"

/* Probability that a child is a crossover of two parents (else a copy of one, then mutated). */
#define BA_NSGA2_CROSSOVER 0.9
/* Attempts at drawing a child that is feasible and new to the population. */
#define BA_NSGA2_TRIES 64

/* o->offspring is the population size, o->generations the generations after the
 * seed population. out: the front's member with the lowest objective. */
ba_status ba_nsga2_run(const ba_problem_t *p, const ba_search_opts_t *o, const ba_search_hooks_t *h,
                       const char *checkpoint, ba_search_result_t *out, ba_error *err);

#endif
