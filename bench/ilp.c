/* Benchmark of search/ilp: one ILP on 1,000 layers × 7 candidates × 3 budgets
 * per seed (target: worst of 10 seeds < 0.1 s, proven optimal; --compare also
 * times the whole model handed to GLPK without the reductions) and a 100-point
 * avg-bits sweep on 200 layers (target < 10 s); the instances are bench/ilp_instance.h's. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/ilp_instance.h"
#include "core/util.h"
#include "search/ilp.h"
#include "search/problem.h"

/* CPU seconds of this process (the machine may be shared: wall time alone would
 * charge the solver for other processes). */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The instance as a CPLEX LP file (one binary per layer and width, the raw tables), for
 * an independent solver: cbc FILE ratioGap 0 allowableGap 0 primalTolerance 1e-10 solve. */
static int write_lp(const ba_problem_t *p, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "Minimize\n obj:");
    for (int i = 0; i < p->ncand; i++) fprintf(f, " + %.17g x%d", p->cost[i], i);
    fprintf(f, "\nSubject To\n");
    for (int l = 0; l < p->nlayers; l++) {
        fprintf(f, " g%d:", l);
        for (int k = p->start[l]; k < p->start[l + 1]; k++) fprintf(f, " + x%d", k);
        fprintf(f, " = 1\n");
    }
    for (int j = 0; j < p->nbudgets; j++) {
        fprintf(f, " b%d:", j);
        for (int i = 0; i < p->ncand; i++) fprintf(f, " + %.17g x%d", p->coef[j][i], i);
        fprintf(f, " <= %.17g\n", p->limit[j] - p->offset[j]);
    }
    fprintf(f, "Binary\n");
    for (int i = 0; i < p->ncand; i++) fprintf(f, " x%d\n", i);
    fprintf(f, "End\n");
    return fclose(f) == 0 ? 0 : -1;
}

static int usage(const char *why) {
    fprintf(stderr,
            "bench_ilp: %s\n"
            "usage: bench_ilp [--seeds N | N] [--compare] [--lp DIR]\n"
            "  N          instances (seeds 1000 .. 1000+N-1), a positive integer (default 10)\n"
            "  --compare  also solve each with the whole model handed to GLPK (ba_ilp_opts_t.plain)\n"
            "  --lp DIR   also write each instance as DIR/seed-S.lp (CPLEX LP) for another solver\n",
            why);
    return 2;
}

/* A positive integer and nothing else. */
static int parse_count(const char *s, int *out) {
    char *end;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (end == s || *end || errno || n < 1 || n > 1000000 || !isdigit((unsigned char)s[0])) return 0;
    *out = (int)n;
    return 1;
}

int main(int argc, char **argv) {
    /* Strict arguments, so that a mistyped call cannot print an empty "worst 0.000 s". */
    int reps = 10, compare = 0, have_reps = 0;
    const char *lp_dir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--compare"))
            compare = 1;
        else if (!strcmp(a, "--lp")) {
            if (i + 1 >= argc) return usage("--lp needs a folder");
            lp_dir = argv[++i];
        } else if (!strcmp(a, "--seeds") || !strncmp(a, "--seeds=", 8)) {
            const char *v = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) return usage("--seeds needs a value");
            if (have_reps) return usage("the number of seeds is given twice");
            if (!parse_count(v, &reps)) return usage("--seeds: expected a positive integer");
            have_reps = 1;
        } else if (a[0] == '-')
            return usage("unknown option");
        else {
            if (have_reps) return usage("the number of seeds is given twice");
            if (!parse_count(a, &reps)) return usage("expected a positive integer number of seeds");
            have_reps = 1;
        }
    }
    ba_error err;
    double worst = 0, worst_cpu = 0, worst_plain = 0, worst_plain_cpu = 0;
    int mismatches = 0;
    printf("ILP, 1000 layers x 7 candidates x 3 budgets (avg-bits, memory, bops), %d seeds:\n", reps);
    for (int i = 0; i < reps; i++) {
        ba_problem_t *p = bench_ilp_instance(1000, 1000 + (uint64_t)i, 3);
        if (!p) return 1;
        if (lp_dir) {
            char path[4096];
            snprintf(path, sizeof path, "%s/seed-%d.lp", lp_dir, 1000 + i);
            if (write_lp(p, path) != 0) {
                fprintf(stderr, "bench_ilp: cannot write %s\n", path);
                return 1;
            }
        }
        ba_solution_t sol;
        double t0 = ba_now(), c0 = cpu_now();
        ba_status st = ba_ilp_solve(p, NULL, &sol, &err);
        double dt = ba_now() - t0, dc = cpu_now() - c0;
        if (st != BA_OK) {
            fprintf(stderr, "solve failed: %s\n", err.msg);
            return 1;
        }
        printf("  seed %d: %.3f s (cpu %.3f s)  objective %.10g  avg-bits %.4f  optimal %d", 1000 + i, dt, dc,
               sol.objective, sol.budget[0], sol.optimal);
        if (dt > worst) worst = dt;
        if (dc > worst_cpu) worst_cpu = dc;
        if (compare) {
            ba_ilp_opts_t plain = ba_ilp_opts_default();
            plain.plain = 1;
            ba_solution_t ps;
            t0 = ba_now(), c0 = cpu_now();
            if (ba_ilp_solve(p, &plain, &ps, &err) != BA_OK) {
                fprintf(stderr, "plain solve failed: %s\n", err.msg);
                return 1;
            }
            double dp = ba_now() - t0, dpc = cpu_now() - c0;
            if (dp > worst_plain) worst_plain = dp;
            if (dpc > worst_plain_cpu) worst_plain_cpu = dpc;
            const char *cmp = ps.objective == sol.objective  ? "same"
                              : ps.objective > sol.objective ? "plain WORSE"
                                                             : "plain BETTER";
            mismatches += ps.objective < sol.objective;
            printf("  | plain %.3f s (cpu %.3f s)  objective %.10g  %s", dp, dpc, ps.objective, cmp);
            ba_solution_free(&ps);
        }
        printf("\n");
        ba_solution_free(&sol);
        ba_problem_free(p);
    }
    printf("  worst %.3f s, cpu %.3f s (target < 0.1 s)", worst, worst_cpu);
    if (compare)
        printf("; plain GLPK worst %.3f s, cpu %.3f s, better objective on %d seeds", worst_plain,
               worst_plain_cpu, mismatches);
    printf("\n");

    printf("Sweep, 200 layers x 7 candidates, avg-bits 2.05..7.0 step 0.05 (100 ILPs), memory held:\n");
    ba_problem_t *p = bench_ilp_instance(200, 7, 2);
    if (!p) return 1;
    p->limit[1] *= 1.2; /* memory binds only at the top of the sweep */
    ba_sweep_t *s;
    double t0 = ba_now();
    if (ba_ilp_sweep(p, 0, 2.05, 7.0, 0.05, NULL, &s, &err) != BA_OK) {
        fprintf(stderr, "sweep failed: %s\n", err.msg);
        return 1;
    }
    double dt = ba_now() - t0;
    int feasible = 0, front = 0, optimal = 0;
    for (int i = 0; i < s->n; i++) {
        feasible += s->points[i].feasible;
        front += s->points[i].pareto;
        optimal += s->points[i].feasible && s->points[i].sol.optimal;
    }
    printf("  %d points in %.3f s (%.1f ms/point): %d feasible, %d proven optimal, %d on the Pareto front "
           "(target < 10 s)\n",
           s->n, dt, 1e3 * dt / s->n, feasible, optimal, front);
    /* The same points solved one by one, for the gain of reusing the model. */
    t0 = ba_now();
    for (int i = 0; i < s->n; i++) {
        p->limit[0] = s->points[i].limit;
        ba_solution_t sol;
        ba_status st = ba_ilp_solve(p, NULL, &sol, &err);
        if (st == BA_OK) {
            if (fabs(sol.objective - s->points[i].sol.objective) > 1e-9 * fabs(sol.objective))
                printf("  MISMATCH at %g: %.17g vs %.17g\n", s->points[i].limit, sol.objective,
                       s->points[i].sol.objective);
            ba_solution_free(&sol);
        } else if (st != BA_ERR_INFEASIBLE || s->points[i].feasible) {
            printf("  MISMATCH at %g: %s\n", s->points[i].limit, err.msg);
        }
    }
    printf("  same points as independent solves: %.3f s\n", ba_now() - t0);
    ba_sweep_free(s);
    ba_problem_free(p);
    return 0;
}
