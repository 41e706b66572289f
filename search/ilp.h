/* Exact bit allocation by integer linear programming (SPEC §6 `ilp`, `--sweep`):
 * minimise Σ Ω(l,b)·x_lb subject to one width per layer, pins, ties and every
 * budget, by branch-and-bound at MIP gap 0 on GLPK's LP. Before branching, two exact
 * reductions (neither removes a configuration that could be optimal): a width
 * that costs more than another of its layer and needs no less of any budget is
 * dropped, and after the LP relaxation, a width whose Lagrangian bound exceeds
 * the best configuration in hand (LP rounding repaired by a greedy, or the
 * previous optimum) is fixed to 0 (reduced-cost fixing). */
#ifndef BA_SEARCH_ILP_H
#define BA_SEARCH_ILP_H

#include "core/error.h"
#include "search/problem.h"

typedef struct ba_ilp_opts {
    double time_limit_s; /* per ILP; reaching it with a solution in hand returns it with optimal = 0 */
    int plain;           /* 1: hand GLPK the whole model, without the exact reductions below (tests, bench) */
    long bnb_nodes;      /* nodes of the own branch-and-bound before glp_intopt takes over the rest of the
                            proof from its best incumbent; 0: BA_ILP_BNB_NODES (tests set 1) */
} ba_ilp_opts_t;

/* Default of bnb_nodes: none of bench_ilp's instances needs a third of them. */
#define BA_ILP_BNB_NODES 2000

/* Default time limit per ILP: far above the fraction of a second that 1,000 layers × 7
 * candidates × 3 budgets take (bench/ilp.c), so hitting it means a pathological instance. */
#define BA_ILP_DEFAULT_TIME_LIMIT_S 300.0

ba_ilp_opts_t ba_ilp_opts_default(void);

typedef struct ba_solution {
    int *choice;                     /* [nlayers] candidate index within the layer */
    int *bits;                       /* [nlayers] its width */
    double objective;                /* Σ Ω of the choice (recomputed from the problem's tables) */
    double budget[BA_BUDGET_NKINDS]; /* value of each of the problem's budgets, offset included */
    int optimal;                     /* 1: proven optimal (gap 0); 0: time limit reached, best found so far */
} ba_solution_t;

void ba_solution_free(ba_solution_t *s);

/* Solves p. BA_ERR_INFEASIBLE when no choice meets every budget; the message names
 * each budget that cannot be met and the smallest value it can reach under the
 * pins and ties ("budget memory=1.000 MiB (1048576 B) cannot be met: the smallest
 * achievable memory is …"), or, when each can be met alone, that they cannot hold together. */
ba_status ba_ilp_solve(const ba_problem_t *p, const ba_ilp_opts_t *opts, ba_solution_t *out, ba_error *err);

/* Smallest achievable value of budget j alone under pins and ties (exact: with no
 * other budget, the layers — tie groups — are independent). choice may be NULL. */
double ba_problem_min_budget(const ba_problem_t *p, int j, int *choice);

typedef struct ba_sweep_point {
    double limit; /* the swept budget's limit at this point */
    int feasible; /* 0: no configuration meets the budgets at this limit (sol is empty) */
    int pareto;   /* 1: not dominated by another point and first of its configuration */
    ba_solution_t sol;
} ba_sweep_point_t;

typedef struct ba_sweep {
    int budget; /* index of the swept budget in the problem */
    int n;
    ba_sweep_point_t *points;
} ba_sweep_t;

/* One ILP per limit from, from+step, … <= to (ba_budget_sweep_npoints) on
 * budget j of p, the other budgets held: a Pareto front of Σ Ω against that
 * budget. The GLPK problem is built once; each point changes one row bound,
 * re-optimises the LP from the previous basis, and hands the previous optimum
 * (still feasible when the limit grows) to branch-and-bound as its first incumbent. */
ba_status ba_ilp_sweep(const ba_problem_t *p, int j, double from, double to, double step,
                       const ba_ilp_opts_t *opts, ba_sweep_t **out, ba_error *err);
void ba_sweep_free(ba_sweep_t *s);

#endif
