/* NSGA-II over bit-width configurations (see search/nsga2.h). */
#include "search/nsga2.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pareto.h"
#include "search/evo_internal.h"
#include "search/ilp.h"

typedef struct {
    int *choice;
    ba_eval_result_t res;
    int64_t trial;
    const char *method;
    double f[2]; /* objective (+inf when failed), first budget's value */
    int rank;
    double crowd;
} ind_t;

typedef struct {
    const ba_problem_t *p;
    const ba_search_opts_t *o;
    const ba_search_hooks_t *h;
    evo_units_t u;
    int L, P;
    ind_t *pop; /* [npop] */
    int npop;
    ind_t *kid; /* [nkid] this generation's children */
    int nkid;
    uint64_t *seen; /* hashes of every configuration measured before this generation */
    int nseen, capseen;
    int64_t nevals, total, done;
    int64_t best_trial;
    ba_eval_result_t best_res;
    int *best;
} nsga_t;

static void ind_free(ind_t *x, int n) {
    for (int i = 0; x && i < n; i++) free(x[i].choice);
}

static void objectives(const ba_problem_t *p, ind_t *x) {
    x->f[0] = isfinite(x->res.objective) ? x->res.objective : INFINITY;
    x->f[1] = p->nbudgets ? ba_problem_budget_value(p, 0, x->choice) : 0;
}

static int same(const int *a, const int *b, int L) {
    return !memcmp(a, b, (size_t)L * sizeof *a);
}

/* FNV-1a of a configuration: the search never measures one twice. */
static uint64_t choice_hash(const int *c, int L) {
    uint64_t h = 14695981039346656037ull;
    for (int l = 0; l < L; l++) {
        h ^= (uint64_t)(unsigned)c[l];
        h *= 1099511628211ull;
    }
    return h;
}

static ba_status seen_add(nsga_t *s, uint64_t h, ba_error *err) {
    if (s->nseen == s->capseen) {
        int cap = s->capseen ? 2 * s->capseen : 64;
        uint64_t *n = ba_realloc(s->seen, sizeof *n * (size_t)cap, err);
        if (!n) return BA_ERR_NOMEM;
        s->seen = n, s->capseen = cap;
    }
    s->seen[s->nseen++] = h;
    return BA_OK;
}

static int known(const nsga_t *s, const int *c) {
    uint64_t h = choice_hash(c, s->L);
    for (int i = 0; i < s->nseen; i++)
        if (s->seen[i] == h) return 1;
    for (int i = 0; i < s->npop; i++)
        if (same(s->pop[i].choice, c, s->L)) return 1;
    for (int i = 0; i < s->nkid; i++)
        if (same(s->kid[i].choice, c, s->L)) return 1;
    return 0;
}

/* Appends a child (copy of c) to s->kid; its result is filled later. */
static ba_status add_kid(nsga_t *s, const int *c, const char *method, ba_error *err) {
    int *cp = ba_malloc((size_t)s->L * sizeof *cp, err);
    if (!cp) return BA_ERR_NOMEM;
    memcpy(cp, c, (size_t)s->L * sizeof *cp);
    s->kid[s->nkid++] = (ind_t){.choice = cp, .method = method, .trial = -1};
    return BA_OK;
}

/* ---- ranking ---- */

/* Non-dominated rank (0 = front) and crowding distance of x[0..n); failed ones rank last. */
static ba_status rank_crowd(ind_t *x, int n, ba_error *err) {
    int *done = ba_calloc((size_t)n + 1, sizeof *done, err),
        *fr = ba_malloc(sizeof *fr * ((size_t)n + 1), err);
    if (!done || !fr) {
        free(done);
        free(fr);
        return BA_ERR_NOMEM;
    }
    int left = 0;
    for (int i = 0; i < n; i++) {
        x[i].crowd = 0;
        if (isfinite(x[i].f[0]))
            left++;
        else
            done[i] = 1, x[i].rank = n + 1;
    }
    for (int r = 0; left > 0; r++) {
        int nf = 0;
        for (int i = 0; i < n; i++) {
            if (done[i]) continue;
            int dom = 0;
            for (int j = 0; j < n && !dom; j++)
                dom = j != i && !done[j] && ba_pareto_dominates(x[j].f, x[i].f, 2);
            if (!dom) fr[nf++] = i;
        }
        for (int a = 0; a < nf; a++) done[fr[a]] = 1, x[fr[a]].rank = r;
        left -= nf;
        /* Crowding: per objective, sort the front (insertion sort, ties by trial) and add neighbour gaps. */
        for (int m = 0; m < 2; m++) {
            for (int a = 1; a < nf; a++) {
                int v = fr[a], b = a - 1;
                while (b >= 0 && (x[fr[b]].f[m] > x[v].f[m] ||
                                  (x[fr[b]].f[m] == x[v].f[m] && x[fr[b]].trial > x[v].trial))) {
                    fr[b + 1] = fr[b];
                    b--;
                }
                fr[b + 1] = v;
            }
            double span = nf ? x[fr[nf - 1]].f[m] - x[fr[0]].f[m] : 0;
            if (nf) x[fr[0]].crowd = x[fr[nf - 1]].crowd = INFINITY;
            for (int a = 1; a + 1 < nf; a++)
                if (span > 0) x[fr[a]].crowd += (x[fr[a + 1]].f[m] - x[fr[a - 1]].f[m]) / span;
        }
    }
    free(done);
    free(fr);
    return BA_OK;
}

/* a before b: lower rank, then larger crowding, then earlier trial. */
static int better(const ind_t *a, const ind_t *b) {
    if (a->rank != b->rank) return a->rank < b->rank;
    if (a->crowd != b->crowd) return a->crowd > b->crowd;
    return a->trial < b->trial;
}

static int cmp_ind(const void *a, const void *b) {
    const ind_t *x = a, *y = b;
    return better(x, y) ? -1 : better(y, x) ? 1 : 0;
}

/* pop := the best P of pop ∪ kids. */
static ba_status select_next(nsga_t *s, ba_error *err) {
    for (int i = 0; i < s->nkid; i++) BA_TRY(seen_add(s, choice_hash(s->kid[i].choice, s->L), err));
    int n = s->npop + s->nkid;
    ind_t *all = ba_malloc(sizeof *all * ((size_t)n + 1), err);
    if (!all) return BA_ERR_NOMEM;
    memcpy(all, s->pop, sizeof *all * (size_t)s->npop);
    memcpy(all + s->npop, s->kid, sizeof *all * (size_t)s->nkid);
    ba_status st = rank_crowd(all, n, err);
    if (st != BA_OK) {
        free(all);
        return st;
    }
    qsort(all, (size_t)n, sizeof *all, cmp_ind);
    int keep = n < s->P ? n : s->P;
    ind_free(all + keep, n - keep);
    memcpy(s->pop, all, sizeof *all * (size_t)keep);
    s->npop = keep;
    s->nkid = 0;
    free(all);
    /* Ranks within the new population, for the next tournaments. */
    return rank_crowd(s->pop, s->npop, err);
}

/* ---- variation ---- */

static const ind_t *tournament(const nsga_t *s, ba_rng_t *rng) {
    const ind_t *a = &s->pop[ba_rng_below(rng, (uint64_t)s->npop)];
    const ind_t *b = &s->pop[ba_rng_below(rng, (uint64_t)s->npop)];
    return better(b, a) ? b : a;
}

/* Lowers random units one level while a budget is violated; 0 when feasible. */
static int repair(const nsga_t *s, ba_rng_t *rng, int *c) {
    for (int guard = 0; !ba_problem_feasible(s->p, c); guard++) {
        int up = 0;
        for (int k = 0; k < s->u.n; k++) up += evo_units_level(s->p, &s->u, c, k) > 0;
        if (!up || guard > 64 * s->u.n) return -1;
        int pick = (int)ba_rng_below(rng, (uint64_t)up);
        for (int k = 0; k < s->u.n; k++) {
            int lv = evo_units_level(s->p, &s->u, c, k);
            if (lv > 0 && pick-- == 0) {
                evo_units_set(s->p, &s->u, c, k, lv - 1);
                break;
            }
        }
    }
    return 0;
}

/* Unit k one level up or down (up from the lowest, down from the highest). */
static void step(const nsga_t *s, ba_rng_t *rng, int *c, int k) {
    int lv = evo_units_level(s->p, &s->u, c, k), nw = s->u.nw[k];
    if (nw < 2) return;
    int nl = lv + (ba_rng_uniform(rng) < 0.5 ? -1 : 1);
    if (nl < 0) nl = 1;
    if (nl >= nw) nl = nw - 2;
    evo_units_set(s->p, &s->u, c, k, nl);
}

/* One child of two tournament winners; 0 on success (feasible, new). */
static int make_child(nsga_t *s, ba_rng_t *rng, int *c) {
    if (s->u.n == 0) return -1; /* every layer pinned: one configuration only */
    const ind_t *a = tournament(s, rng), *b = tournament(s, rng);
    memcpy(c, a->choice, (size_t)s->L * sizeof *c);
    if (ba_rng_uniform(rng) < BA_NSGA2_CROSSOVER)
        for (int k = 0; k < s->u.n; k++)
            if (ba_rng_uniform(rng) < 0.5)
                evo_units_set(s->p, &s->u, c, k, evo_units_level(s->p, &s->u, b->choice, k));
    /* Each unit moves one level with probability 1/n; at least one moves. */
    int moved = 0;
    for (int k = 0; k < s->u.n; k++)
        if (ba_rng_below(rng, (uint64_t)s->u.n) == 0) step(s, rng, c, k), moved = 1;
    if (!moved) step(s, rng, c, (int)ba_rng_below(rng, (uint64_t)s->u.n));
    if (repair(s, rng, c) != 0) return -1;
    return known(s, c) ? -1 : 0;
}

/* The seed population: ILP sweep of budget 0, the widest uniform width, random fill. */
static ba_status seed_kids(nsga_t *s, ba_rng_t *rng, ba_error *err) {
    const ba_problem_t *p = s->p;
    int *c = ba_malloc((size_t)s->L * sizeof *c, err);
    if (!c) return BA_ERR_NOMEM;
    ba_status st = BA_OK;
    if (p->nbudgets > 0 && s->P > 1) {
        double lo = ba_problem_min_budget(p, 0, NULL), hi = p->limit[0];
        ba_sweep_t *sw = NULL;
        ba_ilp_opts_t io = ba_ilp_opts_default();
        int nsw = s->P / 2 > 1 ? s->P / 2 : 2;
        if (hi > lo) st = ba_ilp_sweep(p, 0, lo, hi, (hi - lo) / (nsw - 1) * (1 - 1e-9), &io, &sw, err);
        for (int i = 0; st == BA_OK && sw && i < sw->n && s->nkid < s->P; i++)
            if (sw->points[i].feasible && ba_problem_feasible(p, sw->points[i].sol.choice) &&
                !known(s, sw->points[i].sol.choice))
                st = add_kid(s, sw->points[i].sol.choice, "ilp", err);
        ba_sweep_free(sw);
    }
    int ub;
    ba_error e2;
    if (st == BA_OK && s->nkid < s->P && ba_search_uniform_choice(p, c, &ub, &e2) == BA_OK && !known(s, c))
        st = add_kid(s, c, "uniform", err);
    for (int t = 0; st == BA_OK && s->nkid < s->P && t < BA_NSGA2_TRIES * s->P; t++)
        if (ba_search_random_choice(p, rng, c) == 0 && !known(s, c)) st = add_kid(s, c, s->o->method, err);
    free(c);
    if (st == BA_OK && s->nkid == 0)
        st = ba_error_set(err, BA_ERR_INFEASIBLE, "nsga2: no configuration meets the budgets");
    return st;
}

static ba_status draw_kids(nsga_t *s, ba_rng_t *rng, ba_error *err) {
    int *c = ba_malloc((size_t)s->L * sizeof *c, err);
    if (!c) return BA_ERR_NOMEM;
    ba_status st = BA_OK;
    for (int i = 0; st == BA_OK && i < s->P; i++) {
        int ok = 0;
        for (int t = 0; !ok && t < BA_NSGA2_TRIES; t++) ok = make_child(s, rng, c) == 0;
        if (ok) st = add_kid(s, c, s->o->method, err);
    }
    free(c);
    return st;
}

/* ---- checkpoint: {"kind", "gen", "rng" (at the generation's start), "next" (its first trial),
 * "pop": [...], "kids": [...] measured so far, "best": {"trial"}} ---- */

static json_t *inds_json(const ind_t *x, int n, int L) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        json_array_append_new(a, json_pack("{s:I, s:s, s:o, s:o}", "trial", (json_int_t)x[i].trial, "method",
                                           x[i].method, "choice", evo_choice_json(x[i].choice, L), "res",
                                           evo_res_json(&x[i].res)));
    return a;
}

static char *ckpt(const nsga_t *s, int gen, const ba_rng_t *rng, int64_t next, int nmeasured) {
    json_t *seen = json_array();
    for (int i = 0; seen && i < s->nseen; i++) {
        char hx[17];
        snprintf(hx, sizeof hx, "%016llx", (unsigned long long)s->seen[i]);
        json_array_append_new(seen, json_string(hx));
    }
    return evo_dump(json_pack("{s:s, s:i, s:o, s:I, s:o, s:o, s:o, s:{s:I}}", "kind", "nsga2", "gen", gen,
                              "rng", evo_rng_json(rng), "next", (json_int_t)next, "pop",
                              inds_json(s->pop, s->npop, s->L), "kids", inds_json(s->kid, nmeasured, s->L),
                              "seen", seen, "best", "trial", (json_int_t)s->best_trial));
}

/* The method names a stored trial may carry. */
static const char *method_of(const nsga_t *s, const char *m) {
    return !strcmp(m, "ilp") ? "ilp" : !strcmp(m, "uniform") ? "uniform" : s->o->method;
}

static int parse_inds(nsga_t *s, const json_t *a, ind_t *x, int *n, int cap) {
    size_t i;
    json_t *e;
    *n = 0;
    if (!json_is_array(a) || (int)json_array_size(a) > cap) return -1;
    json_array_foreach(a, i, e) {
        const char *m = json_string_value(json_object_get(e, "method"));
        ind_t *y = &x[*n];
        memset(y, 0, sizeof *y);
        y->choice = malloc((size_t)s->L * sizeof *y->choice);
        if (!y->choice) return -1;
        (*n)++;
        if (!m || !json_is_integer(json_object_get(e, "trial")) ||
            evo_choice_parse(json_object_get(e, "choice"), y->choice, s->L) ||
            evo_res_parse(json_object_get(e, "res"), &y->res))
            return -1;
        y->trial = json_integer_value(json_object_get(e, "trial"));
        y->method = method_of(s, m);
        objectives(s->p, y);
    }
    return 0;
}

static ba_status parse_ckpt(nsga_t *s, const char *text, int *gen, ba_rng_t *rng, int64_t *next, ind_t *meas,
                            int *nmeas, ba_error *err) {
    json_t *j = json_loads(text, 0, NULL);
    const char *k = json_string_value(json_object_get(j, "kind"));
    int bad = !j || !k || strcmp(k, "nsga2") || !json_is_integer(json_object_get(j, "gen")) ||
              !json_is_integer(json_object_get(j, "next")) || evo_rng_parse(json_object_get(j, "rng"), rng);
    if (!bad) bad = parse_inds(s, json_object_get(j, "pop"), s->pop, &s->npop, s->P);
    if (!bad) bad = parse_inds(s, json_object_get(j, "kids"), meas, nmeas, s->P);
    const json_t *seen = json_object_get(j, "seen");
    bad = bad || !json_is_array(seen);
    for (size_t i = 0; !bad && i < json_array_size(seen); i++) {
        const char *hx = json_string_value(json_array_get(seen, i));
        char *end = NULL;
        unsigned long long h = hx ? strtoull(hx, &end, 16) : 0;
        bad = !hx || strlen(hx) != 16 || *end || seen_add(s, h, err) != BA_OK;
    }
    if (!bad) {
        *gen = (int)json_integer_value(json_object_get(j, "gen"));
        *next = json_integer_value(json_object_get(j, "next"));
    }
    json_decref(j);
    return bad ? evo_bad_checkpoint(err, "not a state of this method") : BA_OK;
}

static void note_best(nsga_t *s, const ind_t *x) {
    if (!isfinite(x->res.objective)) return;
    if (s->best_trial < 0 || x->res.objective < s->best_res.objective ||
        (x->res.objective == s->best_res.objective && x->f[1] < ba_problem_budget_value(s->p, 0, s->best))) {
        s->best_trial = x->trial;
        s->best_res = x->res;
        memcpy(s->best, x->choice, (size_t)s->L * sizeof *s->best);
    }
}

ba_status ba_nsga2_run(const ba_problem_t *p, const ba_search_opts_t *o, const ba_search_hooks_t *h,
                       const char *checkpoint, ba_search_result_t *out, ba_error *err) {
    memset(out, 0, sizeof *out);
    if (o->offspring < 2)
        return ba_error_set(err, BA_ERR_INPUT, "--offspring: nsga2 needs a population of at least 2");
    nsga_t s = {.p = p, .o = o, .h = h, .L = p->nlayers, .P = o->offspring, .best_trial = -1};
    ind_t *meas = NULL;
    int nmeas = 0;
    ba_status st = evo_units_build(p, &s.u, err);
    if (st != BA_OK) return st;
    s.pop = ba_calloc((size_t)s.P, sizeof *s.pop, err);
    s.kid = ba_calloc((size_t)s.P, sizeof *s.kid, err);
    meas = ba_calloc((size_t)s.P, sizeof *meas, err);
    s.best = ba_malloc((size_t)s.L * sizeof *s.best, err);
    if (!s.pop || !s.kid || !meas || !s.best) st = BA_ERR_NOMEM;
    ba_rng_t rng;
    ba_rng_seed(&rng, o->seed);
    int gen = 0;
    int64_t next = 1;
    if (st == BA_OK && checkpoint) st = parse_ckpt(&s, checkpoint, &gen, &rng, &next, meas, &nmeas, err);
    for (int i = 0; st == BA_OK && i < s.npop; i++) note_best(&s, &s.pop[i]);
    for (int i = 0; st == BA_OK && i < nmeas; i++) note_best(&s, &meas[i]);
    if (st == BA_OK && s.npop) st = rank_crowd(s.pop, s.npop, err);
    s.total = (int64_t)s.P * (1 + o->generations);
    s.done = next - 1 + nmeas;
    for (; st == BA_OK && gen <= o->generations; gen++) {
        ba_rng_t start = rng;
        st = gen == 0 ? seed_kids(&s, &rng, err) : draw_kids(&s, &rng, err);
        for (int i = 0; st == BA_OK && i < s.nkid; i++) {
            ind_t *x = &s.kid[i];
            x->trial = next + i;
            if (i < nmeas) {
                if (!same(meas[i].choice, x->choice, s.L) || meas[i].trial != x->trial) {
                    st = evo_bad_checkpoint(err, "its children differ from this search's");
                    break;
                }
                x->res = meas[i].res;
                objectives(p, x);
                continue;
            }
            st = h->evaluate(h->ctx, x->choice, 0, &x->res, err);
            if (st != BA_OK) break;
            x->res.samples = o->nsamples;
            s.nevals++;
            objectives(p, x);
            note_best(&s, x);
            char *ck = ckpt(&s, gen, &start, next, i + 1);
            st = ck ? evo_store(h, x->trial, "complete", x->method, x->choice, &x->res, ck, err)
                    : ba_error_set(err, BA_ERR_NOMEM, "nsga2: out of memory writing a checkpoint");
            free(ck);
            s.done++;
            if (st == BA_OK && h->progress)
                h->progress(h->ctx, s.done, s.total, s.best_trial >= 0 ? &s.best_res : NULL,
                            s.best_trial >= 0 ? s.best : x->choice);
        }
        ind_free(meas, nmeas);
        nmeas = 0;
        next += s.nkid;
        if (st == BA_OK) st = select_next(&s, err);
    }
    if (st == BA_OK && s.best_trial < 0)
        st = ba_error_set(err, BA_ERR_RUNTIME,
                          "nsga2: every configuration gave a non-finite output (all trials failed)");
    if (st == BA_OK) {
        out->choice = s.best;
        s.best = NULL;
        out->res = s.best_res;
        out->trial = s.best_trial;
        out->ntrials = next - 1;
        out->nevals = s.nevals;
    }
    ind_free(s.pop, s.npop);
    ind_free(s.kid, s.nkid);
    ind_free(meas, nmeas);
    free(s.pop);
    free(s.kid);
    free(meas);
    free(s.best);
    free(s.seen);
    evo_units_free(&s.u);
    return st;
}
