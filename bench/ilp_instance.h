/* The instances of bench_ilp (bench/ilp.c), also solved by tests/test_ilp.c: L layers × 7
 * widths (2..8) × up to 3 budgets (avg-bits, memory, bops), all binding near 4.2 bits.
 * They look like sensitivity tables: Ω(l,b) = s_l·params_l·4^-b·noise (quantization noise
 * power falls 4× per bit), log-normal layer sizes and scores. */
#ifndef BA_BENCH_ILP_INSTANCE_H
#define BA_BENCH_ILP_INSTANCE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/util.h"
#include "search/problem.h"

#define BENCH_ILP_NBITS 7
static const int BENCH_ILP_BITS[BENCH_ILP_NBITS] = {2, 3, 4, 5, 6, 7, 8};

/* Budgets set so that all three bind near 4.2 bits on average. */
#define BENCH_ILP_AVG_BITS 4.2
#define BENCH_ILP_MEMORY_BITS 4.3 /* memory limit as if every weight had this many bits */
#define BENCH_ILP_BOPS_BITS 4.25  /* bops limit as if every weight had this many bits (activations 8) */

/* The instance of L layers for seed; NULL (the reason on stderr) when the library refuses it. */
static ba_problem_t *bench_ilp_instance(int L, uint64_t seed, int nbudgets) {
    ba_rng_t r;
    ba_rng_seed(&r, seed);
    char **names = malloc((size_t)L * sizeof *names);
    const char **cn = malloc((size_t)L * sizeof *cn);
    int *ncand = malloc((size_t)L * sizeof *ncand),
        *bits = malloc((size_t)L * BENCH_ILP_NBITS * sizeof *bits);
    double *cost = malloc((size_t)L * BENCH_ILP_NBITS * sizeof *cost);
    double *c[3];
    for (int j = 0; j < 3; j++) c[j] = malloc((size_t)L * BENCH_ILP_NBITS * sizeof(double));
    double *params = malloc((size_t)L * sizeof *params), *macs = malloc((size_t)L * sizeof *macs);
    double total = 0, total_macs = 0;
    for (int l = 0; l < L; l++) {
        names[l] = malloc(32);
        snprintf(names[l], 32, "layer%d.weight", l);
        cn[l] = names[l];
        ncand[l] = BENCH_ILP_NBITS;
        params[l] = floor(exp(11 + 1.5 * ba_rng_normal(&r))) + 1;
        macs[l] = params[l] * floor(exp(3 + 2 * ba_rng_uniform(&r)));
        total += params[l];
        total_macs += macs[l];
    }
    for (int l = 0; l < L; l++) {
        double s = exp(2 * ba_rng_normal(&r));
        for (int k = 0; k < BENCH_ILP_NBITS; k++) {
            int i = l * BENCH_ILP_NBITS + k, b = BENCH_ILP_BITS[k];
            bits[i] = b;
            cost[i] = s * params[l] * pow(4.0, -b) * (0.8 + 0.4 * ba_rng_uniform(&r));
            c[0][i] = b * params[l] / total;
            c[1][i] = ceil(b * params[l] / 8) + 4 * floor(sqrt(params[l]));
            c[2][i] = macs[l] * b * 8;
        }
    }
    ba_problem_t *p = NULL;
    ba_error err;
    if (ba_problem_create(L, cn, ncand, bits, cost, &p, &err) != BA_OK) {
        fprintf(stderr, "%s\n", err.msg);
        p = NULL;
    }
    double scales = 0;
    if (!p) nbudgets = 0;
    for (int l = 0; l < L; l++) scales += 4 * floor(sqrt(params[l]));
    ba_budget_kind_t kinds[3] = {BA_BUDGET_AVG_BITS, BA_BUDGET_MEMORY, BA_BUDGET_BOPS};
    double limits[3] = {BENCH_ILP_AVG_BITS, BENCH_ILP_MEMORY_BITS * total / 8 + scales,
                        BENCH_ILP_BOPS_BITS * total_macs * 8};
    for (int j = 0; j < nbudgets; j++)
        if (ba_problem_add_budget(p, kinds[j], limits[j], 0, c[j], &err) != BA_OK) {
            fprintf(stderr, "%s\n", err.msg);
            ba_problem_free(p);
            p = NULL;
            break;
        }
    for (int l = 0; l < L; l++) free(names[l]);
    free(names), free(cn), free(ncand), free(bits), free(cost), free(params), free(macs);
    for (int j = 0; j < 3; j++) free(c[j]);
    return p;
}

#endif
