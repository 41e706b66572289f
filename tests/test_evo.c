/* search/evo + baselines on synthetic problems with a synthetic objective:
 * the same seed gives the same trial list, every trial meets the budgets, the
 * final configuration is never worse than the seed, a checkpoint taken after
 * any trial resumes to the same list, and the baselines behave as documented. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search/evo.h"
#include "search/ilp.h"

#include "search_fake.h"
static ba_search_opts_t opts(uint64_t seed) {
    return (ba_search_opts_t){
        .method = "ilp+evo", .seed = seed, .generations = 12, .offspring = 8, .nsamples = 512};
}

static void run_evo(const ba_problem_t *p, uint64_t seed, const char *ck, log_t *lg,
                    ba_search_result_t *res) {
    ba_solution_t sol;
    ba_error err;
    ba_ilp_opts_t io = ba_ilp_opts_default();
    cr_assert_eq(ba_ilp_solve(p, &io, &sol, &err), BA_OK, "%s", err.msg);
    ba_search_hooks_t h = {fake_eval, fake_store, NULL, lg, NULL, NULL, NULL, NULL};
    ba_search_opts_t o = opts(seed);
    ba_status st = ba_evo_run(p, sol.choice, &o, &h, ck, res, &err);
    ba_solution_free(&sol);
    if (!lg->stop_after) cr_assert_eq(st, BA_OK, "%s", err.msg);
}

Test(evo, same_seed_gives_the_same_trials_and_every_trial_is_feasible) {
    ba_problem_t *p = make_problem(3.5);
    static log_t a, b, c;
    a.p = b.p = c.p = p;
    ba_search_result_t ra, rb, rc;
    run_evo(p, 7, NULL, &a, &ra);
    run_evo(p, 7, NULL, &b, &rb);
    run_evo(p, 8, NULL, &c, &rc);
    cr_assert_gt(a.n, 12);
    cr_expect_eq(a.n, b.n);
    int differs = a.n != c.n;
    for (int i = 0; i < a.n && i < b.n; i++) {
        cr_expect_eq(a.t[i].number, i + 1);
        cr_expect_eq(a.t[i].number, b.t[i].number);
        cr_expect(memcmp(a.t[i].choice, b.t[i].choice, sizeof a.t[i].choice) == 0, "trial %d", i + 1);
        cr_expect_eq(a.t[i].obj, b.t[i].obj);
        if (i < c.n) differs |= memcmp(a.t[i].choice, c.t[i].choice, sizeof a.t[i].choice) != 0;
    }
    cr_expect(differs, "another seed should explore differently");
    cr_expect_eq(a.infeasible, 0);
    cr_expect_eq(c.infeasible, 0);
    int pruned = 0;
    for (int i = 0; i < a.n; i++) pruned += !strcmp(a.t[i].state, "pruned") && a.t[i].samples < 512;
    cr_expect_gt(pruned, 0, "multi-fidelity: some offspring are pruned at low fidelity");
    ba_search_result_free(&ra), ba_search_result_free(&rb), ba_search_result_free(&rc);
    log_free(&a), log_free(&b), log_free(&c);
    ba_problem_free(p);
}

Test(evo, final_configuration_is_never_worse_than_the_seed_and_is_the_best_complete_trial) {
    ba_problem_t *p = make_problem(4.0);
    static log_t a;
    a.p = p;
    ba_search_result_t r;
    run_evo(p, 1, NULL, &a, &r);
    cr_expect_str_eq(a.t[0].state, "complete");
    cr_expect_leq(r.res.objective, a.t[0].obj);
    for (int i = 0; i < a.n; i++)
        if (!strcmp(a.t[i].state, "complete")) cr_expect_leq(r.res.objective, a.t[i].obj);
    cr_expect(ba_problem_feasible(p, r.choice));
    ba_search_result_free(&r);
    log_free(&a);
    ba_problem_free(p);
}

Test(evo, resuming_from_any_checkpoint_gives_the_uninterrupted_trials) {
    ba_problem_t *p = make_problem(3.5);
    static log_t full, part, rest;
    full.p = part.p = rest.p = p;
    ba_search_result_t rf;
    run_evo(p, 5, NULL, &full, &rf);
    for (int k = 1; k < full.n; k += 3) {
        /* Trials 1..k were stored, then the process died: resume from trial k's checkpoint. */
        ba_search_result_t rr;
        rest.n = 0;
        run_evo(p, 5, full.t[k - 1].ckpt, &rest, &rr);
        cr_assert_eq(k + rest.n, full.n, "resume after trial %d", k);
        for (int i = 0; i < rest.n; i++) {
            cr_expect_eq(rest.t[i].number, full.t[k + i].number);
            cr_expect(memcmp(rest.t[i].choice, full.t[k + i].choice, sizeof rest.t[i].choice) == 0);
        }
        cr_expect_eq(rr.trial, rf.trial);
        cr_expect(memcmp(rr.choice, rf.choice, L * sizeof(int)) == 0);
        ba_search_result_free(&rr);
        log_free(&rest);
    }
    ba_search_result_free(&rf);
    log_free(&full);
    ba_problem_free(p);
}

Test(evo, random_draws_feasible_configurations_and_uniform_takes_the_widest_fitting_width) {
    ba_problem_t *p = make_problem(4.5);
    ba_error err;
    int choice[L], bits = 0;
    cr_assert_eq(ba_search_uniform_choice(p, choice, &bits, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(bits, 4);
    for (int l = 0; l < L; l++) cr_expect_eq(p->bits[p->start[l] + choice[l]], 4);
    static log_t a;
    a.p = p;
    ba_search_hooks_t h = {fake_eval, fake_store, NULL, &a, NULL, NULL, NULL, NULL};
    ba_search_opts_t o = opts(3);
    o.method = "random";
    ba_search_result_t r;
    cr_assert_eq(ba_search_random(p, &o, &h, NULL, &r, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(a.n, 1 + o.generations * o.offspring);
    cr_expect_eq(a.infeasible, 0);
    for (int i = 0; i < a.n; i++) cr_expect_leq(r.res.objective, a.t[i].obj);
    ba_search_result_free(&r);
    log_free(&a);
    ba_problem_free(p);
    /* Below the smallest width no uniform configuration fits. */
    p = make_problem(1.5);
    cr_expect_eq(ba_search_uniform_choice(p, choice, &bits, &err), BA_ERR_INFEASIBLE);
    ba_problem_free(p);
}

/* A configuration whose quantized output is not finite: the run's hook reports objective
 * and metrics NaN. Here: layer f (the largest) at 2 bits, or every configuration. */
static int g_nan_all;
static ba_status nan_eval(void *ctx, const int *choice, int64_t n, ba_eval_result_t *out, ba_error *err) {
    log_t *lg = ctx;
    BA_TRY(fake_eval(ctx, choice, n, out, err));
    if (g_nan_all || lg->p->bits[lg->p->start[L - 1] + choice[L - 1]] == 2)
        *out = (ba_eval_result_t){NAN, NAN, NAN, NAN, NAN, n};
    return BA_OK;
}

static void expect_failed_never_best(const log_t *a, const ba_search_result_t *r) {
    int failed = 0;
    for (int i = 0; i < a->n; i++) {
        if (isnan(a->t[i].obj)) {
            cr_expect_str_eq(a->t[i].state, "failed", "trial %lld has a NaN objective",
                             (long long)a->t[i].number);
            failed++;
        } else {
            cr_expect_str_neq(a->t[i].state, "failed");
            if (!strcmp(a->t[i].state, "complete")) cr_expect_leq(r->res.objective, a->t[i].obj);
        }
        if (a->t[i].number == r->trial)
            cr_expect_str_eq(a->t[i].state, "complete", "the result is a complete trial");
    }
    cr_expect_gt(failed, 0, "some configurations failed");
    cr_expect(isfinite(r->res.objective), "the result is finite");
}

Test(evo, non_finite_trials_are_failed_and_never_the_result) {
    ba_problem_t *p = make_problem(3.0);
    static log_t a, b;
    a.p = b.p = p;
    g_nan_all = 0;
    ba_error err;
    ba_solution_t sol;
    ba_ilp_opts_t io = ba_ilp_opts_default();
    cr_assert_eq(ba_ilp_solve(p, &io, &sol, &err), BA_OK, "%s", err.msg);
    cr_assert_neq(p->bits[p->start[L - 1] + sol.choice[L - 1]], 2, "the seed itself is finite");
    ba_search_hooks_t h = {nan_eval, fake_store, NULL, &a, NULL, NULL, NULL, NULL};
    ba_search_opts_t o = opts(11);
    ba_search_result_t r;
    cr_assert_eq(ba_evo_run(p, sol.choice, &o, &h, NULL, &r, &err), BA_OK, "%s", err.msg);
    expect_failed_never_best(&a, &r);
    ba_search_result_free(&r);
    /* random: the failed draws are never its best either. */
    ba_search_hooks_t hb = {nan_eval, fake_store, NULL, &b, NULL, NULL, NULL, NULL};
    o.method = "random";
    cr_assert_eq(ba_search_random(p, &o, &hb, NULL, &r, &err), BA_OK, "%s", err.msg);
    expect_failed_never_best(&b, &r);
    /* Every checkpoint written loads back (resume after a failed draw). */
    for (int i = 0; i < b.n; i++) {
        if (!b.t[i].ckpt) continue;
        static log_t c;
        c.p = p;
        c.n = 0;
        ba_search_hooks_t hc = {nan_eval, fake_store, NULL, &c, NULL, NULL, NULL, NULL};
        ba_search_result_t rr;
        cr_assert_eq(ba_search_random(p, &o, &hc, b.t[i].ckpt, &rr, &err), BA_OK, "after trial %d: %s", i + 1,
                     err.msg);
        cr_expect_eq(rr.trial, r.trial);
        ba_search_result_free(&rr);
        log_free(&c);
    }
    ba_search_result_free(&r);
    ba_solution_free(&sol);
    log_free(&a), log_free(&b);
    ba_problem_free(p);
}

Test(evo, a_failed_seed_or_single_trial_is_stored_failed_and_gives_no_result) {
    ba_problem_t *p = make_problem(3.5);
    static log_t a;
    a.p = p;
    g_nan_all = 1;
    ba_error err;
    ba_solution_t sol;
    ba_ilp_opts_t io = ba_ilp_opts_default();
    cr_assert_eq(ba_ilp_solve(p, &io, &sol, &err), BA_OK, "%s", err.msg);
    ba_search_hooks_t h = {nan_eval, fake_store, NULL, &a, NULL, NULL, NULL, NULL};
    ba_search_opts_t o = opts(2);
    ba_search_result_t r;
    cr_expect_eq(ba_evo_run(p, sol.choice, &o, &h, NULL, &r, &err), BA_ERR_RUNTIME);
    cr_expect(strstr(err.msg, "non-finite"), "%s", err.msg);
    cr_assert_eq(a.n, 1);
    cr_expect_str_eq(a.t[0].state, "failed");
    log_free(&a);
    o.method = "ilp";
    cr_expect_eq(ba_search_single(p, sol.choice, &o, &h, NULL, &r, &err), BA_ERR_RUNTIME);
    cr_expect(strstr(err.msg, "not finite"), "%s", err.msg);
    cr_assert_eq(a.n, 1);
    cr_expect_str_eq(a.t[0].state, "failed");
    log_free(&a);
    o.method = "random";
    cr_expect_eq(ba_search_random(p, &o, &h, NULL, &r, &err), BA_ERR_RUNTIME);
    for (int i = 0; i < a.n; i++) cr_expect_str_eq(a.t[i].state, "failed");
    log_free(&a);
    g_nan_all = 0;
    ba_solution_free(&sol);
    ba_problem_free(p);
}

/* Several seeds (ba_evo_run_seeds): the distinct ones are trials 1, 2, … (a duplicate is measured
 * once), a failed seed does not stop the run, only the last seed trial carries a checkpoint (a
 * resume before it starts over), the result is never worse than any seed, resuming from the last
 * seed's checkpoint gives the uninterrupted trials, and when every seed fails the run stops. */
Test(evo, several_seeds_are_the_first_trials_and_the_result_beats_each) {
    ba_problem_t *p = make_problem(3.5);
    static log_t a, rest;
    a.p = rest.p = p;
    g_nan_all = 0;
    ba_error err;
    ba_solution_t sol;
    ba_ilp_opts_t io = ba_ilp_opts_default();
    cr_assert_eq(ba_ilp_solve(p, &io, &sol, &err), BA_OK, "%s", err.msg);
    int seeds[4 * L];
    for (int l = 0; l < L; l++) seeds[l] = 0; /* every layer at 2 bits: layer f at 2 fails */
    memcpy(seeds + L, sol.choice, L * sizeof *seeds);
    memcpy(seeds + 2 * L, sol.choice, L * sizeof *seeds);          /* a duplicate */
    for (int l = 0; l < L; l++) seeds[3 * L + l] = l == 1 ? 1 : 0; /* b at 3 bits, f at 2: fails too */
    ba_search_hooks_t h = {nan_eval, fake_store, NULL, &a, NULL, NULL, NULL, NULL};
    ba_search_opts_t o = opts(3);
    ba_search_result_t r;
    cr_assert_eq(ba_evo_run_seeds(p, seeds, 3, &o, &h, NULL, &r, &err), BA_OK, "%s", err.msg);
    cr_assert_gt(a.n, 3);
    cr_expect_eq(a.t[0].number, 1);
    cr_expect_str_eq(a.t[0].state, "failed");
    cr_expect_null(a.t[0].ckpt, "an earlier seed trial carries no checkpoint");
    cr_expect_eq(a.t[1].number, 2);
    cr_expect_str_eq(a.t[1].state, "complete");
    cr_expect(memcmp(a.t[1].choice, sol.choice, sizeof a.t[1].choice) == 0);
    cr_expect_not_null(a.t[1].ckpt, "the last seed trial carries the first generation's checkpoint");
    cr_expect_eq(a.t[2].number, 3);
    for (int i = 2; i < a.n; i++)
        cr_expect(memcmp(a.t[i].choice, sol.choice, sizeof a.t[i].choice) != 0,
                  "the duplicate seed is no trial");
    cr_expect_leq(r.res.objective, a.t[1].obj);
    cr_expect(isfinite(r.res.objective));
    /* A resume from trial 2's checkpoint retraces the rest. */
    ba_search_hooks_t hr = {nan_eval, fake_store, NULL, &rest, NULL, NULL, NULL, NULL};
    ba_search_result_t rr;
    cr_assert_eq(ba_evo_run_seeds(p, seeds, 3, &o, &hr, a.t[1].ckpt, &rr, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(rest.n + 2, a.n);
    for (int i = 0; i < rest.n; i++) {
        cr_expect_eq(rest.t[i].number, a.t[i + 2].number);
        cr_expect(memcmp(rest.t[i].choice, a.t[i + 2].choice, sizeof rest.t[i].choice) == 0);
    }
    cr_expect_eq(rr.trial, r.trial);
    ba_search_result_free(&rr);
    ba_search_result_free(&r);
    log_free(&rest);
    log_free(&a);
    /* Two finite seeds: both are trials, only the better one is the first generation's parent. */
    int two[2 * L];
    for (int l = 0; l < L; l++) two[l] = 1; /* every layer at 3 bits */
    memcpy(two + L, sol.choice, L * sizeof *two);
    cr_assert_eq(ba_evo_run_seeds(p, two, 2, &o, &h, NULL, &r, &err), BA_OK, "%s", err.msg);
    int better = a.t[1].obj < a.t[0].obj ? 2 : 1;
    json_t *ck = json_loads(a.t[1].ckpt, 0, NULL);
    cr_assert(ck);
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(ck, "parent"), "trial")), better);
    cr_expect_eq(json_array_size(json_object_get(ck, "elites")), 0, "the worse seed is no parent");
    json_decref(ck);
    cr_expect_leq(r.res.objective, a.t[better - 1].obj);
    ba_search_result_free(&r);
    log_free(&a);
    /* Every seed fails: both stored failed, no result. */
    int bad[2 * L];
    memcpy(bad, seeds, L * sizeof *bad);
    memcpy(bad + L, seeds + 3 * L, L * sizeof *bad);
    cr_expect_eq(ba_evo_run_seeds(p, bad, 2, &o, &h, NULL, &r, &err), BA_ERR_RUNTIME);
    cr_expect(strstr(err.msg, "every seed"), "%s", err.msg);
    cr_assert_eq(a.n, 2);
    cr_expect_str_eq(a.t[0].state, "failed");
    cr_expect_str_eq(a.t[1].state, "failed");
    log_free(&a);
    ba_solution_free(&sol);
    ba_problem_free(p);
}

/* min_stage: with 10 samples the 32-sample floor leaves one stage (every child on all 10);
 * min_stage 2 ranks children on 2 samples first (10/8 rounded up to the floor) and 5 next. */
Test(evo, min_stage_lowers_the_floor_of_the_low_fidelity_stages) {
    ba_problem_t *p = make_problem(3.5);
    static log_t a;
    a.p = p;
    ba_error err;
    ba_solution_t sol;
    ba_ilp_opts_t io = ba_ilp_opts_default();
    cr_assert_eq(ba_ilp_solve(p, &io, &sol, &err), BA_OK, "%s", err.msg);
    ba_search_hooks_t h = {fake_eval, fake_store, NULL, &a, NULL, NULL, NULL, NULL};
    for (int floor = 0; floor <= 2; floor += 2) {
        ba_search_opts_t o = opts(4);
        o.nsamples = 10;
        o.offspring = 16;
        o.generations = 3;
        o.min_stage = floor;
        ba_search_result_t r;
        cr_assert_eq(ba_evo_run(p, sol.choice, &o, &h, NULL, &r, &err), BA_OK, "%s", err.msg);
        int n2 = 0, n5 = 0, n10 = 0;
        for (int i = 0; i < a.n; i++) {
            n2 += a.t[i].samples == 2;
            n5 += a.t[i].samples == 5;
            n10 += a.t[i].samples == 10;
        }
        if (floor == 0)
            cr_expect(n2 == 0 && n5 == 0 && n10 == a.n, "%d %d %d of %d", n2, n5, n10, a.n);
        else
            cr_expect(n2 > 0 && n5 > 0 && n10 < a.n / 2, "%d %d %d of %d", n2, n5, n10, a.n);
        ba_search_result_free(&r);
        log_free(&a);
    }
    ba_solution_free(&sol);
    ba_problem_free(p);
}

Test(evo, mutation_keeps_pins_ties_and_budgets) {
    ba_problem_t *p = make_problem(3.2);
    ba_error err;
    cr_assert_eq(ba_problem_pin(p, "a=8", &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_problem_tie(p, "[bc]", &err), BA_OK, "%s", err.msg);
    ba_solution_t sol;
    ba_ilp_opts_t io = ba_ilp_opts_default();
    cr_assert_eq(ba_ilp_solve(p, &io, &sol, &err), BA_OK, "%s", err.msg);
    ba_rng_t rng;
    ba_rng_seed(&rng, 11);
    int child[L], ok = 0;
    for (int i = 0; i < 500; i++) {
        if (ba_evo_mutate(p, sol.choice, &rng, child) != 0) continue;
        ok++;
        cr_assert(ba_problem_feasible(p, child));
        cr_expect_eq(p->bits[p->start[0] + child[0]], 8);
        cr_expect_eq(p->bits[p->start[1] + child[1]], p->bits[p->start[2] + child[2]]);
    }
    cr_expect_gt(ok, 100);
    ba_solution_free(&sol);
    ba_problem_free(p);
}

/* EvoPress level switch: a child differs from its parent in a few units and
 * spends about the parent's budget (the compensating move is matched by size),
 * instead of drifting to configurations worse by construction. */
Test(evo, mutation_is_a_small_budget_preserving_level_switch) {
    ba_problem_t *p = make_problem(3.5);
    ba_error err;
    ba_solution_t sol;
    ba_ilp_opts_t io = ba_ilp_opts_default();
    cr_assert_eq(ba_ilp_solve(p, &io, &sol, &err), BA_OK, "%s", err.msg);
    ba_rng_t rng;
    ba_rng_seed(&rng, 5);
    int child[L], n = 0, moved = 0, max_moved = 0;
    double pb = ba_problem_budget_value(p, 0, sol.choice), dsum = 0;
    for (int i = 0; i < 400; i++) {
        if (ba_evo_mutate(p, sol.choice, &rng, child) != 0) continue;
        n++;
        int m = 0;
        for (int l = 0; l < L; l++) m += child[l] != sol.choice[l];
        moved += m;
        if (m > max_moved) max_moved = m;
        dsum += fabs(ba_problem_budget_value(p, 0, child) - pb);
        cr_assert(ba_problem_feasible(p, child));
    }
    cr_assert_gt(n, 300);
    cr_log_info("mean units moved %.2f (max %d), mean |Δavg-bits| %.3f", (double)moved / n, max_moved,
                dsum / n);
    cr_expect_leq((double)moved / n, 3.0, "a child moves a few layers, not all of them");
    cr_expect_leq(dsum / n, 0.6, "a child's budget use stays near its parent's");
    ba_solution_free(&sol);
    ba_problem_free(p);
}

/* ---- sample windows and the validation part (evaluate_at) ---- */

typedef struct {
    log_t lg;
    int64_t first[4096], samples[4096];
    int n;
    int64_t nvalid_calls;
    int64_t validated[16];
    double vobj[16];
    int nval;
    double vcenter;   /* the width the validation part favours (0: 4) */
    const int *watch; /* counts the measurements of this choice on the whole search part */
    int watch_full;
    int64_t stop_validated; /* the validated hook fails (a kill) after this many calls; 0 = never */
} win_t;

static ba_status win_eval_at(void *ctx, const int *choice, int64_t first, int64_t n, ba_eval_result_t *out,
                             ba_error *err) {
    win_t *w = ctx;
    cr_assert_lt(w->n, 4096);
    w->first[w->n] = first, w->samples[w->n] = n, w->n++;
    if (w->watch && first == 0 && n == 384 && !memcmp(choice, w->watch, L * sizeof *choice)) w->watch_full++;
    BA_TRY(fake_eval(&w->lg, choice, n, out, err));
    /* The validation part disagrees with the search part: a different smooth function. */
    if (first >= 384) {
        double s = 0;
        for (int l = 0; l < L; l++)
            s += fabs(w->lg.p->bits[w->lg.p->start[l] + choice[l]] - (w->vcenter > 0 ? w->vcenter : 4.0)) *
                 (l % 3 + 1);
        out->objective = s;
    }
    return BA_OK;
}

static ba_status win_store(void *ctx, const ba_search_trial_t *t, const char *ck, ba_error *err) {
    return fake_store(&((win_t *)ctx)->lg, t, ck, err);
}

static ba_status win_validated(void *ctx, int64_t trial, const ba_eval_result_t *res, ba_error *err) {
    win_t *w = ctx;
    if (w->stop_validated && w->nval >= w->stop_validated) return ba_error_set(err, BA_ERR_RUNTIME, "killed");
    cr_assert_lt(w->nval, 16);
    w->validated[w->nval] = trial, w->vobj[w->nval] = res->objective, w->nval++;
    return BA_OK;
}

/* ba_evo_run from the ILP optimum with a validation part; ck: a checkpoint to resume from. */
static ba_status run_win_from(const ba_problem_t *p, uint64_t seed, const char *ck, win_t *w,
                              ba_search_result_t *res) {
    ba_solution_t sol;
    ba_error err;
    ba_ilp_opts_t io = ba_ilp_opts_default();
    cr_assert_eq(ba_ilp_solve(p, &io, &sol, &err), BA_OK, "%s", err.msg);
    w->lg.p = p;
    ba_search_hooks_t h = {fake_eval, win_store, NULL, w, win_eval_at, win_validated, NULL, NULL};
    ba_search_opts_t o = opts(seed);
    o.nsamples = 384, o.nvalid = 128;
    ba_status st = ba_evo_run(p, sol.choice, &o, &h, ck, res, &err);
    if (!w->lg.stop_after && !w->stop_validated) cr_assert_eq(st, BA_OK, "%s", err.msg);
    ba_solution_free(&sol);
    return st;
}

static void run_win(const ba_problem_t *p, uint64_t seed, win_t *w, ba_search_result_t *res) {
    run_win_from(p, seed, NULL, w, res);
}

Test(evo, low_fidelity_windows_move_with_the_generation_and_the_seed) {
    ba_problem_t *p = make_problem(3.5);
    static win_t a, b;
    ba_search_result_t ra, rb;
    run_win(p, 4, &a, &ra);
    run_win(p, 4, &b, &rb);
    cr_assert_eq(a.n, b.n, "deterministic");
    int moved = 0;
    for (int i = 0; i < a.n; i++) {
        cr_expect_eq(a.first[i], b.first[i]);
        if (a.first[i] >= 384) continue; /* validation */
        cr_expect_leq(a.first[i] + a.samples[i], 384, "inside the search part");
        cr_expect_eq(a.first[i] % a.samples[i], 0, "a block");
        moved |= a.samples[i] < 384 && a.first[i] > 0;
    }
    cr_expect(moved, "low-fidelity stages do not always take the first samples");
    log_free(&a.lg);
    log_free(&b.lg);
    ba_search_result_free(&ra);
    ba_search_result_free(&rb);
    ba_problem_free(p);
}

/* ---- the prepare hook (many workers measure a batch at once) ---- */

typedef struct {
    win_t w;
    int choice[4096][L];
    int64_t first[4096], samples[4096];
    int head, tail, nbatches;
} prep_t;

static ba_status prep_prepare(void *ctx, const int *choices, const int64_t *first, const int64_t *nsamples,
                              int n, ba_error *err) {
    (void)err;
    prep_t *q = ctx;
    cr_assert_eq(q->head, q->tail, "a batch announced before the last one was all asked for");
    cr_assert_gt(n, 0);
    for (int i = 0; i < n; i++) {
        cr_assert_lt(q->tail, 4096);
        memcpy(q->choice[q->tail], choices + (size_t)i * L, sizeof q->choice[0]);
        q->first[q->tail] = first[i], q->samples[q->tail++] = nsamples[i];
    }
    q->nbatches++;
    return BA_OK;
}

static ba_status prep_eval_at(void *ctx, const int *choice, int64_t first, int64_t n, ba_eval_result_t *out,
                              ba_error *err) {
    prep_t *q = ctx;
    cr_assert_lt(q->head, q->tail, "an evaluation that was not announced");
    cr_expect_eq(memcmp(q->choice[q->head], choice, sizeof q->choice[0]), 0, "evaluation %d: another choice",
                 q->head);
    cr_expect_eq(q->first[q->head], first);
    cr_expect_eq(q->samples[q->head], n);
    q->head++;
    return win_eval_at(&q->w, choice, first, n, out, err);
}

static ba_status prep_store(void *ctx, const ba_search_trial_t *t, const char *ck, ba_error *err) {
    return win_store(&((prep_t *)ctx)->w, t, ck, err);
}

static ba_status prep_validated(void *ctx, int64_t trial, const ba_eval_result_t *res, ba_error *err) {
    return win_validated(&((prep_t *)ctx)->w, trial, res, err);
}

Test(evo, prepare_announces_each_batch_in_the_order_it_is_then_asked_for) {
    ba_problem_t *p = make_problem(3.5);
    static prep_t q;
    static win_t plain;
    ba_search_result_t rq, rp;
    ba_solution_t sol;
    ba_error err;
    ba_ilp_opts_t io = ba_ilp_opts_default();
    cr_assert_eq(ba_ilp_solve(p, &io, &sol, &err), BA_OK, "%s", err.msg);
    q.w.lg.p = p;
    ba_search_hooks_t h = {fake_eval, prep_store, NULL, &q, prep_eval_at, prep_validated, prep_prepare, NULL};
    ba_search_opts_t o = opts(4);
    o.nsamples = 384, o.nvalid = 128;
    cr_assert_eq(ba_evo_run(p, sol.choice, &o, &h, NULL, &rq, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(q.head, q.tail, "announced evaluations never asked for");
    cr_expect_gt(q.nbatches, o.generations, "one batch per stage, at least one per generation");
    /* The same search without the hook stores the same trials and finds the same result. */
    run_win(p, 4, &plain, &rp);
    cr_expect_eq(rq.trial, rp.trial);
    cr_expect_eq(memcmp(rq.choice, rp.choice, sizeof(int) * L), 0);
    cr_expect_eq(q.w.n, plain.n);
    ba_solution_free(&sol);
    log_free(&q.w.lg);
    log_free(&plain.lg);
    ba_search_result_free(&rq);
    ba_search_result_free(&rp);
    ba_problem_free(p);
}

Test(evo, validation_chooses_among_seed_and_elites_never_worse_than_the_seed) {
    ba_problem_t *p = make_problem(3.5);
    for (uint64_t seed = 0; seed < 4; seed++) {
        static win_t w;
        memset(&w, 0, sizeof w);
        ba_search_result_t r;
        run_win(p, seed, &w, &r);
        cr_assert_geq(w.nval, 1);
        double seed_v = NAN, best_v = INFINITY;
        for (int i = 0; i < w.nval; i++) {
            if (w.validated[i] == 1) seed_v = w.vobj[i];
            best_v = fmin(best_v, w.vobj[i]);
        }
        cr_assert(isfinite(seed_v), "the seed (trial 1) is scored on validation");
        cr_expect_eq(r.validation, best_v, "seed %llu: the validation minimum is returned",
                     (unsigned long long)seed);
        cr_expect_leq(r.validation, seed_v);
        for (int i = 0; i < w.nval; i++)
            if (w.validated[i] == r.trial) cr_expect_eq(w.vobj[i], r.validation);
        log_free(&w.lg);
        ba_search_result_free(&r);
    }
    ba_problem_free(p);
}

/* ---- uniform among the final candidates ---- */

/* The trial (index into lg->t) holding choice with method "uniform", -1 when none. */
static int uniform_trial(const log_t *lg, const int *choice) {
    for (int i = 0; i < lg->n; i++)
        if (!strcmp(lg->t[i].method, "uniform") && !memcmp(lg->t[i].choice, choice, sizeof lg->t[i].choice))
            return i;
    return -1;
}

Test(evo, uniform_is_measured_once_and_returned_when_best_on_validation) {
    ba_problem_t *p = make_problem(3.5);
    int uni[L], ubits = 0;
    ba_error err;
    cr_assert_eq(ba_search_uniform_choice(p, uni, &ubits, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ubits, 3);
    for (uint64_t seed = 0; seed < 3; seed++) {
        /* The validation part favours 3 bits everywhere: uniform scores 0 there, anything else more. */
        static win_t w;
        memset(&w, 0, sizeof w);
        w.vcenter = 3.0;
        w.watch = uni;
        ba_search_result_t r;
        run_win(p, seed, &w, &r);
        int u = uniform_trial(&w.lg, uni);
        cr_assert_geq(u, 0, "seed %llu: the uniform configuration is stored as a trial",
                      (unsigned long long)seed);
        const rec_t *t = &w.lg.t[u];
        cr_expect_eq(u, w.lg.n - 1, "it is the trial after the last generation");
        cr_expect_eq(t->number, w.lg.n);
        cr_expect_str_eq(t->state, "complete");
        cr_expect_eq(t->samples, 384, "measured on the whole search part");
        cr_expect_eq(r.ntrials, w.lg.n, "counted");
        cr_expect_eq(r.trial, t->number, "seed %llu: uniform wins on validation", (unsigned long long)seed);
        cr_expect_eq(memcmp(r.choice, uni, sizeof uni), 0);
        cr_expect_eq(r.validation, 0.0);
        cr_expect_eq(r.res.objective, t->obj, "the result carries uniform's search figure");
        cr_expect_eq(r.res.samples, 384);
        int scored = 0;
        for (int i = 0; i < w.nval; i++) scored += w.validated[i] == t->number;
        cr_expect_eq(scored, 1, "uniform is scored once on validation");
        int complete = 0;
        for (int i = 0; i < w.lg.n; i++)
            complete += !strcmp(w.lg.t[i].state, "complete") && !memcmp(w.lg.t[i].choice, uni, sizeof uni);
        cr_expect_eq(w.watch_full, complete, "measured on the search part once per complete trial");
        log_free(&w.lg);
        ba_search_result_free(&r);
    }
    ba_problem_free(p);
}

Test(evo, uniform_that_is_the_seed_adds_no_trial) {
    ba_problem_t *p = make_problem(2.5);
    int uni[L], ubits = 0;
    ba_error err;
    cr_assert_eq(ba_search_uniform_choice(p, uni, &ubits, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ubits, 2);
    static win_t w;
    memset(&w, 0, sizeof w);
    /* `evo` starts from uniform: it is the seed (trial 1), scored on validation as such, stored once. */
    w.lg.p = p;
    ba_search_hooks_t h = {fake_eval, win_store, NULL, &w, win_eval_at, win_validated, NULL, NULL};
    ba_search_opts_t o = opts(2);
    o.method = "evo", o.nsamples = 384, o.nvalid = 128;
    ba_search_result_t r;
    cr_assert_eq(ba_evo_run(p, uni, &o, &h, NULL, &r, &err), BA_OK, "%s", err.msg);
    int stored = 0;
    for (int i = 0; i < w.lg.n; i++) stored += !memcmp(w.lg.t[i].choice, uni, sizeof uni);
    cr_expect_eq(stored, 1, "the uniform seed is not stored a second time");
    cr_expect_eq(uniform_trial(&w.lg, uni), -1, "no extra 'uniform' trial");
    cr_expect_eq(r.ntrials, w.lg.n);
    log_free(&w.lg);
    ba_search_result_free(&r);
    ba_problem_free(p);
}

Test(evo, resume_after_any_trial_or_during_validation_gives_the_same_trials_and_plan) {
    ba_problem_t *p = make_problem(3.5);
    int uni[L], ubits = 0;
    ba_error err;
    cr_assert_eq(ba_search_uniform_choice(p, uni, &ubits, &err), BA_OK, "%s", err.msg);
    static win_t full, rest;
    memset(&full, 0, sizeof full);
    full.vcenter = 3.0;
    ba_search_result_t rf;
    run_win(p, 6, &full, &rf);
    int u = uniform_trial(&full.lg, uni);
    cr_assert_geq(u, 0);
    cr_assert_eq(rf.trial, full.lg.t[u].number);
    /* Killed after trial k was stored (k = n: the uniform trial, during validation) or, at the
     * end, after j validation scores: the resumed run stores the rest and returns the same plan. */
    for (int k = 1; k <= full.lg.n; k += (k + 4 < full.lg.n ? 4 : 1)) {
        for (int j = 0; j < (k == full.lg.n ? full.nval : 1); j++) {
            ba_search_result_t rr;
            memset(&rest, 0, sizeof rest);
            rest.vcenter = 3.0;
            if (j > 0) {
                /* First a run killed in the validation after j scores, from the same checkpoint. */
                rest.stop_validated = j;
                cr_expect_neq(run_win_from(p, 6, full.lg.t[k - 1].ckpt, &rest, &rr), BA_OK);
                cr_expect_eq(rest.lg.n, 0, "nothing left to store");
                log_free(&rest.lg);
                memset(&rest, 0, sizeof rest);
                rest.vcenter = 3.0;
            }
            rest.watch = uni;
            run_win_from(p, 6, full.lg.t[k - 1].ckpt, &rest, &rr);
            cr_assert_eq(k + rest.lg.n, full.lg.n, "resume after trial %d", k);
            for (int i = 0; i < rest.lg.n; i++) {
                cr_expect_eq(rest.lg.t[i].number, full.lg.t[k + i].number);
                cr_expect_str_eq(rest.lg.t[i].method, full.lg.t[k + i].method);
                cr_expect(memcmp(rest.lg.t[i].choice, full.lg.t[k + i].choice, sizeof rest.lg.t[i].choice) ==
                          0);
                cr_expect_eq(rest.lg.t[i].obj, full.lg.t[k + i].obj);
            }
            cr_expect_eq(rr.trial, rf.trial, "resume after trial %d", k);
            cr_expect_eq(rr.validation, rf.validation);
            cr_expect_eq(rr.res.objective, rf.res.objective);
            cr_expect_eq(rr.ntrials, rf.ntrials);
            cr_expect(memcmp(rr.choice, rf.choice, L * sizeof(int)) == 0);
            if (k == full.lg.n)
                cr_expect_eq(rest.watch_full, 0,
                             "the stored uniform trial's search figure is not measured again");
            ba_search_result_free(&rr);
            log_free(&rest.lg);
        }
    }
    ba_search_result_free(&rf);
    log_free(&full.lg);
    ba_problem_free(p);
}

/* ---- the final choice: a paired test on validation windows ---- */

Test(evo, paired_bootstrap_p_tells_a_consistent_difference_from_noise) {
    double a[32], b[32], z[32];
    for (int i = 0; i < 32; i++) {
        b[i] = 1 + 0.1 * sin(i * 1.7);
        a[i] = b[i] - 0.01;                 /* lower in every pair */
        z[i] = b[i] + (i % 2 ? 0.3 : -0.3); /* lower in half the pairs, higher in the other half */
    }
    double p = ba_evo_paired_p(a, b, 32, 7, 2000);
    cr_expect_float_eq(p, 1.0 / 2001, 1e-15, "every resample favours a: the smallest p");
    cr_expect_eq(ba_evo_paired_p(b, b, 32, 7, 2000), 1.0, "no difference: p = 1");
    double pz = ba_evo_paired_p(z, b, 32, 7, 2000);
    cr_expect_gt(pz, 0.3, "a difference that changes sign pair to pair is noise: p = %g", pz);
    cr_expect_eq(pz, ba_evo_paired_p(z, b, 32, 7, 2000), "deterministic for a seed");
    cr_expect_eq(ba_evo_choice_windows(128), BA_EVO_CHOICE_WINDOWS);
    cr_expect_eq(ba_evo_choice_windows(20), 20, "one window per sample when fewer");
}

/* The search part ranks by the distance from the seed's widths (the seed is the best elite);
 * sample i of the validation part scores base(choice) + noise · u(choice, i), u uniform in
 * [-0.5, 0.5) from a hash: the validation means of equal candidates differ by noise alone. */
typedef struct {
    log_t lg;
    int seed[L], uni[L];
    double noise;                     /* amplitude of the per-sample validation noise */
    double uni_gain;                  /* uniform's validation base is lower by this much (others: 1) */
    double uni_penalty;               /* uniform's search objective is higher by this much */
    double uni_mse;                   /* uniform's validation MSE is higher by this much (others: 1) */
    int window_stat;                  /* ba_search_opts_t.window_stat */
    double seed_penalty;              /* the seed's search objective is higher by this much */
    double seed_gain;                 /* the seed's validation base is lower by this much */
    int seed2[L];                     /* a second seed (nz_run2) */
    double seed2_penalty, seed2_gain; /* as seed_penalty and seed_gain, for seed2 */
    int64_t validated[16];
    double vobj[16];
    int nval;
    int64_t chosen;
    char record[4096];
} nz_t;

static double nz_u(const int *choice, int64_t i) {
    uint64_t h = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
    for (int l = 0; l < L; l++) h = (h ^ (uint64_t)choice[l]) * 0xbf58476d1ce4e5b9ull + (uint64_t)l;
    h ^= h >> 31;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 29;
    return (double)(h >> 11) / 9007199254740992.0 - 0.5;
}

static ba_status nz_eval_at(void *ctx, const int *choice, int64_t first, int64_t n, ba_eval_result_t *out,
                            ba_error *err) {
    (void)err;
    nz_t *z = ctx;
    int is_uni = !memcmp(choice, z->uni, sizeof z->uni), is_seed = !memcmp(choice, z->seed, sizeof z->seed);
    int is_seed2 =
        (z->seed2_penalty != 0 || z->seed2_gain != 0) && !memcmp(choice, z->seed2, sizeof z->seed2);
    double s = 0, mse = 0;
    if (first < 384) {
        s = 0.001 + (is_uni ? z->uni_penalty : 0) + (is_seed ? z->seed_penalty : 0) +
            (is_seed2 ? z->seed2_penalty : 0);
        for (int l = 0; l < L; l++) s += 0.01 * (l + 1) * abs(choice[l] - z->seed[l]);
        mse = s;
    } else {
        for (int64_t i = first; i < first + n; i++) {
            s += (1 - (is_uni ? z->uni_gain : 0) - (is_seed ? z->seed_gain : 0) -
                  (is_seed2 ? z->seed2_gain : 0)) +
                 z->noise * nz_u(choice, i);
            mse += (1 + (is_uni ? z->uni_mse : 0)) + z->noise * nz_u(choice, i + 7);
        }
        s /= (double)n, mse /= (double)n;
    }
    *out = (ba_eval_result_t){s, s, mse, NAN, NAN, n};
    return BA_OK;
}

static ba_status nz_eval(void *ctx, const int *choice, int64_t n, ba_eval_result_t *out, ba_error *err) {
    return nz_eval_at(ctx, choice, 0, n ? n : 384, out, err);
}

static ba_status nz_store(void *ctx, const ba_search_trial_t *t, const char *ck, ba_error *err) {
    return fake_store(&((nz_t *)ctx)->lg, t, ck, err);
}

static ba_status nz_validated(void *ctx, int64_t trial, const ba_eval_result_t *res, ba_error *err) {
    (void)err;
    nz_t *z = ctx;
    cr_assert_lt(z->nval, 16);
    z->validated[z->nval] = trial, z->vobj[z->nval++] = res->objective;
    return BA_OK;
}

static ba_status nz_chosen(void *ctx, int64_t trial, const char *record, ba_error *err) {
    (void)err;
    nz_t *z = ctx;
    z->chosen = trial;
    snprintf(z->record, sizeof z->record, "%s", record);
    return BA_OK;
}

static void nz_run(const ba_problem_t *p, uint64_t seed, const char *ck, nz_t *z, ba_search_result_t *r) {
    ba_solution_t sol;
    ba_error err;
    ba_ilp_opts_t io = ba_ilp_opts_default();
    int bits = 0;
    cr_assert_eq(ba_ilp_solve(p, &io, &sol, &err), BA_OK, "%s", err.msg);
    memcpy(z->seed, sol.choice, sizeof z->seed);
    cr_assert_eq(ba_search_uniform_choice(p, z->uni, &bits, &err), BA_OK, "%s", err.msg);
    cr_assert(memcmp(z->seed, z->uni, sizeof z->uni), "the fixture needs uniform apart from the seed");
    z->lg.p = p;
    ba_search_hooks_t h = {nz_eval, nz_store, NULL, z, nz_eval_at, nz_validated, NULL, nz_chosen};
    ba_search_opts_t o = opts(seed);
    o.generations = 6, o.nsamples = 384, o.nvalid = 128, o.window_stat = z->window_stat;
    cr_assert_eq(ba_evo_run(p, sol.choice, &o, &h, ck, r, &err), BA_OK, "%s", err.msg);
    ba_solution_free(&sol);
}

/* The record's field `key` (an integer) and the p of trial t's candidate entry. */
static int64_t rec_int(const char *rec, const char *key) {
    json_error_t je;
    json_t *j = json_loads(rec, 0, &je);
    cr_assert(j, "record: %s", je.text);
    int64_t v = json_integer_value(json_object_get(j, key));
    json_decref(j);
    return v;
}

static int rec_rule_is(const char *rec, const char *rule) {
    json_error_t je;
    json_t *j = json_loads(rec, 0, &je);
    cr_assert(j, "record: %s", je.text);
    int is = !strcmp(json_string_value(json_object_get(j, "rule")), rule);
    json_decref(j);
    return is;
}

Test(evo, final_choice_keeps_the_seed_when_validation_means_differ_by_noise) {
    ba_problem_t *p = make_problem(3.5);
    int lower_elsewhere = 0;
    for (uint64_t seed = 0; seed < 4; seed++) {
        static nz_t z;
        memset(&z, 0, sizeof z);
        z.noise = 1.0;
        ba_search_result_t r;
        nz_run(p, seed, NULL, &z, &r);
        double seed_v = NAN, min_v = INFINITY;
        for (int i = 0; i < z.nval; i++) {
            if (z.validated[i] == 1) seed_v = z.vobj[i];
            min_v = fmin(min_v, z.vobj[i]);
        }
        cr_assert(isfinite(seed_v));
        lower_elsewhere += min_v < seed_v;
        cr_expect_eq(r.trial, 1, "seed %llu: the seed (the best elite) stays", (unsigned long long)seed);
        cr_expect(memcmp(r.choice, z.seed, sizeof z.seed) == 0);
        cr_expect_eq(r.validation, seed_v);
        cr_expect_eq(r.choice_default, 1);
        cr_expect(isnan(r.choice_p));
        cr_expect_eq(z.chosen, 1, "the hook names the chosen trial");
        cr_expect(rec_rule_is(z.record, "default"), "%s", z.record);
        cr_expect_eq(rec_int(z.record, "default"), 1);
        cr_expect_eq(rec_int(z.record, "windows"), BA_EVO_CHOICE_WINDOWS);
        log_free(&z.lg);
        ba_search_result_free(&r);
    }
    /* Else the lowest validation mean would have been the seed anyway and nothing was tested. */
    cr_expect_gt(lower_elsewhere, 0, "some candidate's validation mean is below the seed's by noise");
    ba_problem_free(p);
}

Test(evo, final_choice_takes_a_candidate_that_is_clearly_better_on_validation) {
    ba_problem_t *p = make_problem(3.5);
    static nz_t z, again;
    memset(&z, 0, sizeof z);
    z.noise = 1.0, z.uni_gain = 0.5;
    ba_search_result_t r;
    nz_run(p, 3, NULL, &z, &r);
    int u = uniform_trial(&z.lg, z.uni);
    cr_assert_geq(u, 0);
    cr_expect_eq(r.trial, z.lg.t[u].number, "uniform is better beyond the noise: chosen");
    cr_expect(memcmp(r.choice, z.uni, sizeof z.uni) == 0);
    cr_expect_eq(r.choice_default, 1);
    cr_expect_lt(r.choice_p, 0.01, "p %g", r.choice_p);
    cr_expect_eq(z.chosen, r.trial);
    cr_expect(rec_rule_is(z.record, "significant"), "%s", z.record);
    cr_expect_eq(rec_int(z.record, "trial"), r.trial);
    /* A resume from the last checkpoint (after the uniform trial) decides the same, recorded the same. */
    memset(&again, 0, sizeof again);
    again.noise = 1.0, again.uni_gain = 0.5;
    ba_search_result_t rr;
    nz_run(p, 3, z.lg.t[z.lg.n - 1].ckpt, &again, &rr);
    cr_expect_eq(again.lg.n, 0);
    cr_expect_eq(rr.trial, r.trial);
    cr_expect_str_eq(again.record, z.record);
    ba_search_result_free(&rr);
    log_free(&z.lg);
    ba_search_result_free(&r);
    ba_problem_free(p);
}

Test(evo, final_choice_keeps_the_default_when_the_search_part_outweighs_a_tiny_validation_gain) {
    ba_problem_t *p = make_problem(3.5);
    static nz_t z;
    memset(&z, 0, sizeof z);
    /* Uniform is lower on every validation window, by 1e-6, and far worse on the search part. */
    z.noise = 0, z.uni_gain = 1e-6, z.uni_penalty = 1.0;
    ba_search_result_t r;
    nz_run(p, 2, NULL, &z, &r);
    int u = uniform_trial(&z.lg, z.uni);
    cr_assert_geq(u, 0);
    double uv = NAN, sv = NAN;
    for (int i = 0; i < z.nval; i++) {
        if (z.validated[i] == z.lg.t[u].number) uv = z.vobj[i];
        if (z.validated[i] == 1) sv = z.vobj[i];
    }
    cr_assert_lt(uv, sv, "uniform is the validation minimum");
    cr_expect_eq(r.trial, 1, "kept: the pooled mean favours the seed");
    cr_expect(rec_rule_is(z.record, "default"), "%s", z.record);
    log_free(&z.lg);
    ba_search_result_free(&r);
    ba_problem_free(p);
}

Test(evo, final_choice_tests_the_window_statistic_the_objective_sums) {
    /* Uniform is lower on every window's own objective but higher on its MSE: with a ratio
     * objective (relmse) the windows' MSE is what adds up to the whole part's figure. */
    ba_problem_t *p = make_problem(3.5);
    static nz_t z;
    for (int stat = BA_EVO_WINDOW_OBJECTIVE; stat <= BA_EVO_WINDOW_MSE; stat++) {
        memset(&z, 0, sizeof z);
        z.noise = 1.0, z.uni_gain = 0.5, z.uni_mse = 0.5, z.window_stat = stat;
        ba_search_result_t r;
        nz_run(p, 3, NULL, &z, &r);
        int u = uniform_trial(&z.lg, z.uni);
        cr_assert_geq(u, 0);
        if (stat == BA_EVO_WINDOW_OBJECTIVE) {
            cr_expect_eq(r.trial, z.lg.t[u].number, "the windows' objective favours uniform");
            cr_expect(strstr(z.record, "\"statistic\":\"objective\""), "%s", z.record);
        } else {
            cr_expect_eq(r.trial, 1, "the windows' MSE does not");
            cr_expect(strstr(z.record, "\"statistic\":\"mse\""), "%s", z.record);
        }
        log_free(&z.lg);
        ba_search_result_free(&r);
    }
    ba_problem_free(p);
}

/* The seed is worse on the search part (another elite is the default) but a little better on every
 * validation window: the paired test would switch to it, but the search part outweighs that in the
 * pooled mean, so the default stays; yet a plan worse than its seed on validation is never
 * returned: the seed is (rule "seed"). */
Test(evo, final_choice_is_never_worse_than_the_seed_on_validation) {
    ba_problem_t *p = make_problem(3.5);
    static nz_t z;
    memset(&z, 0, sizeof z);
    z.noise = 0, z.seed_penalty = 0.5, z.seed_gain = 1e-3;
    ba_search_result_t r;
    nz_run(p, 1, NULL, &z, &r);
    double sv = NAN, rv = NAN;
    for (int i = 0; i < z.nval; i++) {
        if (z.validated[i] == 1) sv = z.vobj[i];
        if (z.validated[i] == z.chosen) rv = z.vobj[i];
    }
    cr_assert(isfinite(sv));
    cr_expect_neq(r.choice_default, 1, "another elite is best on the search part");
    cr_expect_eq(r.trial, 1, "the seed is returned");
    cr_expect(memcmp(r.choice, z.seed, sizeof z.seed) == 0);
    cr_expect_leq(rv, sv);
    cr_expect(rec_rule_is(z.record, "seed"), "%s", z.record);
    log_free(&z.lg);
    ba_search_result_free(&r);
    ba_problem_free(p);
}

/* Two seeds (ba_evo_run_seeds): the first is worse on the search part (another elite is the
 * default) and a little better on validation, so the seed rule triggers; the second seed, also worse
 * on the search part, is lower still on validation, so it is the one returned. */
Test(evo, seed_rule_returns_the_seed_lowest_on_validation) {
    ba_problem_t *p = make_problem(3.5);
    static nz_t z;
    memset(&z, 0, sizeof z);
    ba_solution_t sol;
    ba_error err;
    ba_ilp_opts_t io = ba_ilp_opts_default();
    int bits = 0;
    cr_assert_eq(ba_ilp_solve(p, &io, &sol, &err), BA_OK, "%s", err.msg);
    memcpy(z.seed, sol.choice, sizeof z.seed);
    cr_assert_eq(ba_search_uniform_choice(p, z.uni, &bits, &err), BA_OK, "%s", err.msg);
    /* the second seed: the first with one layer a width lower (still within the budget) */
    memcpy(z.seed2, z.seed, sizeof z.seed2);
    int moved = 0;
    for (int l = 0; l < L && !moved; l++)
        if (z.seed2[l] > 0) {
            z.seed2[l]--;
            moved = ba_problem_feasible(p, z.seed2) && memcmp(z.seed2, z.uni, sizeof z.uni);
            if (!moved) z.seed2[l]++;
        }
    cr_assert(moved, "the fixture needs a second feasible seed");
    z.noise = 0, z.seed_penalty = 0.5, z.seed_gain = 1e-3, z.seed2_penalty = 0.035, z.seed2_gain = 2e-3;
    z.lg.p = p;
    ba_search_hooks_t h = {nz_eval, nz_store, NULL, &z, nz_eval_at, nz_validated, NULL, nz_chosen};
    ba_search_opts_t o = opts(1);
    o.generations = 6, o.nsamples = 384, o.nvalid = 128;
    int seeds[2 * L];
    memcpy(seeds, z.seed, sizeof z.seed);
    memcpy(seeds + L, z.seed2, sizeof z.seed2);
    ba_search_result_t r;
    cr_assert_eq(ba_evo_run_seeds(p, seeds, 2, &o, &h, NULL, &r, &err), BA_OK, "%s", err.msg);
    cr_expect(memcmp(r.choice, z.seed2, sizeof z.seed2) == 0, "the second seed is returned");
    cr_expect(rec_rule_is(z.record, "seed"), "%s", z.record);
    cr_expect_neq(r.choice_default, 1);
    log_free(&z.lg);
    ba_search_result_free(&r);
    ba_solution_free(&sol);
    ba_problem_free(p);
}
