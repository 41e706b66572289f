/* search/nsga2 on a synthetic problem with a synthetic objective: the same
 * seed gives the same trials, every trial meets the budgets and is new, the
 * seed population holds the ILP sweep and the uniform baseline, a checkpoint
 * taken after any trial resumes to the same trials, and the result is the
 * lowest objective measured. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pareto.h"
#include "search/nsga2.h"

#include "search_fake.h"
static void run_nsga2(const ba_problem_t *p, uint64_t seed, const char *ck, log_t *lg,
                      ba_search_result_t *res) {
    ba_search_hooks_t h = {fake_eval, fake_store, NULL, lg, NULL, NULL, NULL, NULL};
    ba_search_opts_t o = {.method = "nsga2", .seed = seed, .generations = 6, .offspring = 8, .nsamples = 512};
    ba_error err;
    ba_status st = ba_nsga2_run(p, &o, &h, ck, res, &err);
    cr_assert_eq(st, BA_OK, "%s", err.msg);
}

Test(nsga2, same_seed_same_trials_all_feasible_and_new_seeded_by_ilp_and_uniform) {
    ba_problem_t *p = make_problem(4.5);
    static log_t a, b, c;
    a.p = b.p = c.p = p;
    ba_search_result_t ra, rb, rc;
    run_nsga2(p, 3, NULL, &a, &ra);
    run_nsga2(p, 3, NULL, &b, &rb);
    run_nsga2(p, 4, NULL, &c, &rc);
    cr_assert_gt(a.n, 8 * 4);
    cr_assert_eq(a.n, b.n);
    int differs = a.n != c.n, nilp = 0, nuni = 0;
    for (int i = 0; i < a.n; i++) {
        cr_expect_eq(a.t[i].number, i + 1);
        cr_expect(memcmp(a.t[i].choice, b.t[i].choice, sizeof a.t[i].choice) == 0, "trial %d", i + 1);
        cr_expect_str_eq(a.t[i].state, "complete");
        cr_expect_eq(a.t[i].samples, 512);
        if (i < c.n) differs |= memcmp(a.t[i].choice, c.t[i].choice, sizeof a.t[i].choice) != 0;
        for (int j = 0; j < i; j++)
            cr_expect(memcmp(a.t[i].choice, a.t[j].choice, sizeof a.t[i].choice) != 0,
                      "trials %d and %d equal", j + 1, i + 1);
        nilp += !strcmp(a.t[i].method, "ilp");
        nuni += !strcmp(a.t[i].method, "uniform");
        if (!strcmp(a.t[i].method, "ilp") || !strcmp(a.t[i].method, "uniform"))
            cr_expect_leq(a.t[i].number, 8, "baselines are in the seed population");
    }
    cr_expect_geq(nilp, 2, "the ILP sweep seeds the population");
    cr_expect_eq(nuni, 1);
    cr_expect(differs, "another seed explores differently");
    cr_expect_eq(a.infeasible, 0);
    cr_expect_eq(c.infeasible, 0);
    /* The result: the lowest objective measured. */
    for (int i = 0; i < a.n; i++) cr_expect_leq(ra.res.objective, a.t[i].obj);
    ba_search_result_free(&ra), ba_search_result_free(&rb), ba_search_result_free(&rc);
    log_free(&a), log_free(&b), log_free(&c);
    ba_problem_free(p);
}

Test(nsga2, the_front_improves_on_the_seed_population) {
    ba_problem_t *p = make_problem(4.5);
    static log_t a;
    a.p = p;
    ba_search_result_t r;
    run_nsga2(p, 1, NULL, &a, &r);
    /* Points (objective, avg bits): some later trial is on the front of all trials
     * and not dominated by (or equal to) any seed. */
    double v[MAXT * 2];
    int on[MAXT];
    for (int i = 0; i < a.n; i++)
        v[2 * i] = a.t[i].obj, v[2 * i + 1] = ba_problem_budget_value(p, 0, a.t[i].choice);
    ba_error err;
    cr_assert_eq(ba_pareto_mask(v, a.n, 2, on, &err), BA_OK);
    int new_on_front = 0;
    for (int i = 8; i < a.n; i++) new_on_front += on[i];
    cr_expect_gt(new_on_front, 0);
    ba_search_result_free(&r);
    log_free(&a);
    ba_problem_free(p);
}

Test(nsga2, resuming_from_any_checkpoint_gives_the_uninterrupted_trials) {
    ba_problem_t *p = make_problem(4.5);
    static log_t full, rest;
    full.p = rest.p = p;
    ba_search_result_t rf;
    run_nsga2(p, 5, NULL, &full, &rf);
    for (int k = 1; k < full.n; k += 5) {
        ba_search_result_t rr;
        rest.n = 0;
        run_nsga2(p, 5, full.t[k - 1].ckpt, &rest, &rr);
        cr_assert_eq(k + rest.n, full.n, "resume after trial %d", k);
        for (int i = 0; i < rest.n; i++) {
            cr_expect_eq(rest.t[i].number, full.t[k + i].number);
            cr_expect(memcmp(rest.t[i].choice, full.t[k + i].choice, sizeof rest.t[i].choice) == 0,
                      "trial %lld", (long long)rest.t[i].number);
        }
        cr_expect_eq(rr.trial, rf.trial);
        ba_search_result_free(&rr);
        log_free(&rest);
    }
    /* A checkpoint of another method is refused. */
    ba_search_hooks_t h = {fake_eval, fake_store, NULL, &rest, NULL, NULL, NULL, NULL};
    ba_search_opts_t o = {.method = "nsga2", .seed = 5, .generations = 1, .offspring = 4, .nsamples = 512};
    ba_search_result_t rr;
    ba_error err;
    cr_expect_eq(ba_nsga2_run(p, &o, &h, "{\"kind\": \"random\"}", &rr, &err), BA_ERR_INPUT);
    log_free(&rest);
    ba_search_result_free(&rf);
    log_free(&full);
    ba_problem_free(p);
}

Test(pareto, mask_keeps_the_non_dominated_finite_rows) {
    const double v[] = {1,   5, /* front */ 2,      2, /* front */ 3, 3, /* dominated by (2,2) */ 2,
                        2, /* equal: front */
                        NAN, 0, /* not finite */ 5, 1 /* front */};
    int on[6];
    ba_error err;
    cr_assert_eq(ba_pareto_mask(v, 6, 2, on, &err), BA_OK);
    int want[] = {1, 1, 0, 1, 0, 1};
    for (int i = 0; i < 6; i++) cr_expect_eq(on[i], want[i], "row %d", i);
    cr_expect(ba_pareto_dominates((double[]){1, 1}, (double[]){1, 2}, 2));
    cr_expect(!ba_pareto_dominates((double[]){1, 2}, (double[]){1, 2}, 2));
}
