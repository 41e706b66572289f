/* Non-dominated filtering of points with k objectives, all minimized (negate a
 * quantity to maximize it). The one home of Pareto dominance: db/ filters a
 * study's trials with it (`trials --pareto`, the report), search/ ranks
 * populations (nsga2) and marks the sweep's measured front. */
#ifndef BA_CORE_PARETO_H
#define BA_CORE_PARETO_H

#include "core/error.h"

/* 1 when a dominates b: no worse in every objective and better in one. */
int ba_pareto_dominates(const double *a, const double *b, int k);

/* on_front[i] = 1 when row i of v (n rows of k values, row-major) is finite
 * and no other finite row dominates it; equal rows are all on the front. */
ba_status ba_pareto_mask(const double *v, int n, int k, int *on_front, ba_error *err);

#endif
