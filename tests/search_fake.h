/* The synthetic search problem shared by the evolution and NSGA-II tests:
 * six layers of widths {2, 3, 4, 8} under an average-bits budget, a smooth
 * objective of the widths with a little sample-count noise, and a trial log
 * that records what the search stores (and can fail the store, as a kill). */
#ifndef BA_TESTS_SEARCH_FAKE_H
#define BA_TESTS_SEARCH_FAKE_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search/evo.h"

#define L 6
#define MAXT 2000

static const int WIDTHS[] = {2, 3, 4, 8};
#define NW 4
static const double PARAMS[L] = {100, 4000, 2500, 800, 50, 9000};

typedef struct {
    int64_t number;
    char state[16];
    char method[16];
    int choice[L];
    double obj;
    int64_t samples;
    char *ckpt;
} rec_t;

typedef struct {
    const ba_problem_t *p;
    rec_t t[MAXT];
    int n;
    int infeasible;
    int64_t stop_after; /* store fails (simulated kill) once this many trials are stored; 0 = never */
} log_t;

/* Objective: a smooth function of the bits, with a little sample-count noise (lower fidelity ≠ full). */
__attribute__((unused)) static ba_status fake_eval(void *ctx, const int *choice, int64_t n,
                                                   ba_eval_result_t *out, ba_error *err) {
    (void)err;
    log_t *lg = ctx;
    double s = 0;
    for (int l = 0; l < L; l++) {
        int b = lg->p->bits[lg->p->start[l] + choice[l]];
        s += (l + 1) * pow(2.0, -2.0 * b) * (1 + 0.1 * sin(l * b));
    }
    if (n > 0) s *= 1 + 0.05 * sin((double)n + s * 1e3);
    *out = (ba_eval_result_t){s, s, s / 2, 1 - s, NAN, n};
    return BA_OK;
}

__attribute__((unused)) static ba_status fake_store(void *ctx, const ba_search_trial_t *t, const char *ck,
                                                    ba_error *err) {
    log_t *lg = ctx;
    if (lg->stop_after && lg->n >= lg->stop_after) return ba_error_set(err, BA_ERR_RUNTIME, "killed");
    cr_assert_lt(lg->n, MAXT);
    rec_t *r = &lg->t[lg->n++];
    r->number = t->number;
    snprintf(r->state, sizeof r->state, "%s", t->state);
    snprintf(r->method, sizeof r->method, "%s", t->method);
    memcpy(r->choice, t->choice, sizeof r->choice);
    r->obj = t->res.objective;
    r->samples = t->res.samples;
    r->ckpt = ck ? strdup(ck) : NULL;
    if (!ba_problem_feasible(lg->p, t->choice)) lg->infeasible++;
    return BA_OK;
}

__attribute__((unused)) static void log_free(log_t *lg) {
    for (int i = 0; i < lg->n; i++) free(lg->t[i].ckpt);
    lg->n = 0;
}

__attribute__((unused)) static ba_problem_t *make_problem(double avg_bits) {
    const char *names[L] = {"a", "b", "c", "d", "e", "f"};
    int ncand[L], bits[L * NW];
    double cost[L * NW], coef[L * NW], total = 0;
    for (int l = 0; l < L; l++) total += PARAMS[l];
    for (int l = 0; l < L; l++) {
        ncand[l] = NW;
        for (int j = 0; j < NW; j++) {
            bits[l * NW + j] = WIDTHS[j];
            cost[l * NW + j] = PARAMS[l] * pow(2.0, -2.0 * WIDTHS[j]) * (l + 1);
            coef[l * NW + j] = WIDTHS[j] * PARAMS[l] / total;
        }
    }
    ba_problem_t *p;
    ba_error err;
    cr_assert_eq(ba_problem_create(L, names, ncand, bits, cost, &p, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_problem_add_budget(p, BA_BUDGET_AVG_BITS, avg_bits, 0, coef, &err), BA_OK, "%s", err.msg);
    return p;
}

#endif
