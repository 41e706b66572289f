/* EvoPress-style evolution on the measured objective (SPEC §6 `evo`): a
 * (1 + λ) scheme — one parent, λ offspring by budget-preserving level swaps,
 * multi-fidelity selection, elitism — with a checkpoint after every trial.
 *
 * Resume invariant: the checkpoint stored with a trial holds the state at the
 * start of the current generation (RNG, parent, first trial number) plus every
 * evaluation made in it so far. Offspring are regenerated from that RNG state
 * (integer work only, so bit-identical), cached evaluations are reused, and
 * trials numbered below `next` are known to be stored already, so a resumed
 * search retraces the uninterrupted one exactly. The last trial of a
 * generation carries the next generation's start state instead. */
#include "search/evo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search/evo_internal.h"

/* ---- units ---- */

void evo_units_free(evo_units_t *u) {
    free(u->unit);
    free(u->fixed);
    free(u->nw);
    free(u->w);
    free(u->mstart);
    free(u->mem);
    memset(u, 0, sizeof *u);
}

ba_status evo_units_build(const ba_problem_t *p, evo_units_t *u, ba_error *err) {
    int L = p->nlayers;
    memset(u, 0, sizeof *u);
    BA_TRY(ba_problem_check(p, err));
    u->unit = ba_malloc((size_t)L * sizeof *u->unit, err);
    u->fixed = ba_calloc((size_t)L, sizeof *u->fixed, err);
    u->nw = ba_calloc((size_t)L, sizeof *u->nw, err);
    u->w = ba_calloc((size_t)L * BA_BITS_MAX_CANDIDATES, sizeof *u->w, err);
    u->mstart = ba_calloc((size_t)L + 1, sizeof *u->mstart, err);
    u->mem = ba_malloc((size_t)L * sizeof *u->mem, err);
    int *root_unit = ba_malloc((size_t)L * sizeof *root_unit, err);
    if (!u->unit || !u->fixed || !u->nw || !u->w || !u->mstart || !u->mem || !root_unit) {
        free(root_unit);
        evo_units_free(u);
        return BA_ERR_NOMEM;
    }
    /* A group's pin (any member pinned fixes the whole group, ba_problem_check made them agree). */
    for (int l = 0; l < L; l++) root_unit[l] = -1;
    for (int l = 0; l < L; l++) {
        int r = p->tie[l] >= 0 ? p->tie[l] : l;
        int pin = 0;
        for (int m = r; m < L; m++)
            if ((m == l || (p->tie[m] >= 0 && p->tie[m] == r)) && p->pin[m]) pin = p->pin[m];
        if (p->tie[l] < 0) pin = p->pin[l];
        if (pin) {
            u->unit[l] = -1;
            u->fixed[l] = ba_problem_find(p, l, pin);
            continue;
        }
        if (root_unit[r] < 0) {
            int k = u->n++;
            root_unit[r] = k;
            /* Widths common to the group. */
            for (int c = p->start[r]; c < p->start[r + 1]; c++) {
                int b = p->bits[c], ok = 1;
                for (int m = r; m < L && ok; m++)
                    if ((m == r || (p->tie[m] >= 0 && p->tie[m] == r)) && ba_problem_find(p, m, b) < 0)
                        ok = 0;
                if (ok) u->w[k * BA_BITS_MAX_CANDIDATES + u->nw[k]++] = b;
            }
        }
        u->unit[l] = root_unit[r];
    }
    for (int l = 0; l < L; l++)
        if (u->unit[l] >= 0) u->mstart[u->unit[l] + 1]++;
    for (int k = 0; k < u->n; k++) u->mstart[k + 1] += u->mstart[k];
    int *fill = root_unit; /* reused as the insertion cursor per unit */
    for (int k = 0; k < u->n; k++) fill[k] = u->mstart[k];
    for (int l = 0; l < L; l++)
        if (u->unit[l] >= 0) u->mem[fill[u->unit[l]]++] = l;
    free(root_unit);
    return BA_OK;
}

int evo_units_level(const ba_problem_t *p, const evo_units_t *u, const int *choice, int k) {
    int l = u->mem[u->mstart[k]];
    int b = p->bits[p->start[l] + choice[l]];
    for (int i = 0; i < u->nw[k]; i++)
        if (u->w[k * BA_BITS_MAX_CANDIDATES + i] == b) return i;
    return 0;
}

void evo_units_set(const ba_problem_t *p, const evo_units_t *u, int *choice, int k, int lv) {
    int b = u->w[k * BA_BITS_MAX_CANDIDATES + lv];
    for (int i = u->mstart[k]; i < u->mstart[k + 1]; i++)
        choice[u->mem[i]] = ba_problem_find(p, u->mem[i], b);
}

void evo_units_apply(const ba_problem_t *p, const evo_units_t *u, const int *lv, int *choice) {
    for (int l = 0; l < p->nlayers; l++)
        if (u->unit[l] < 0) choice[l] = u->fixed[l];
    for (int k = 0; k < u->n; k++) evo_units_set(p, u, choice, k, lv[k]);
}

/* ---- mutation ---- */

/* Index i with probability w[i] / Σw over w[i] > 0; -1 when none. */
static int pick_weighted(ba_rng_t *rng, const double *w, int n) {
    double tot = 0;
    for (int i = 0; i < n; i++) tot += w[i] > 0 ? w[i] : 0;
    if (!(tot > 0)) return -1;
    double r = ba_rng_uniform(rng) * tot;
    int last = -1;
    for (int i = 0; i < n; i++) {
        if (!(w[i] > 0)) continue;
        last = i;
        if ((r -= w[i]) < 0) return i;
    }
    return last; /* rounding */
}

/* Budget use of choice: val[j] = budget j's value. */
static void budget_use(const ba_problem_t *p, const int *choice, double *val) {
    for (int j = 0; j < p->nbudgets; j++) val[j] = ba_problem_budget_value(p, j, choice);
}

/* Size of a change of budget use from a to b: the largest relative change over the budgets. */
static double budget_delta(const ba_problem_t *p, const double *a, const double *b) {
    double d = 0;
    for (int j = 0; j < p->nbudgets; j++) {
        double scale = fabs(p->limit[j]) > 0 ? fabs(p->limit[j]) : 1;
        double x = fabs(b[j] - a[j]) / scale;
        if (x > d) d = x;
    }
    return d;
}

/* Weight of a compensating move of budget size d for a primary move of size
 * want: highest when the two cancel (EvoPress's level switch keeps the budget
 * use constant; with layers of unequal size only "about equal" is possible). */
static double match_weight(double d, double want) {
    return 1.0 / (fabs(d - want) + BA_EVO_MATCH_SLACK * want + 1e-12);
}

/* Moves unit k from level `from` to `to` in (lv, choice) and returns the budget size of the move. */
static double move_unit(const ba_problem_t *p, const evo_units_t *u, int *lv, int *choice, int k, int to,
                        double *use, double *tmp) {
    evo_units_set(p, u, choice, k, to);
    lv[k] = to;
    budget_use(p, choice, tmp);
    double d = budget_delta(p, use, tmp);
    memcpy(use, tmp, (size_t)p->nbudgets * sizeof *use);
    return d;
}

/* One mutation attempt (EvoPress level switch, budget-preserving): lv holds
 * the parent's levels on entry, the child's on return 1. Each of 1..MAX_SWAPS
 * steps moves one random unit a level up or down and compensates with another
 * unit moving the other way, chosen with a preference for the one whose
 * budget change best cancels the first (weighted by params for avg-bits,
 * bytes for memory …). After an up-move the compensation is mandatory (repeated
 * until the budgets hold); after a down-move it is taken when a raise fits,
 * else the child keeps the freed budget. Units touched by a step are not
 * moved back by a later one. */
static int mutate_once(const ba_problem_t *p, const evo_units_t *u, ba_rng_t *rng, int *lv, int *choice,
                       unsigned char *touched, double *w) {
    int n = u->n;
    double use[BA_BUDGET_NKINDS], tmp[BA_BUDGET_NKINDS];
    memset(touched, 0, (size_t)n);
    evo_units_apply(p, u, lv, choice);
    budget_use(p, choice, use);
    int steps = 1 + (int)ba_rng_below(rng, BA_EVO_MAX_SWAPS);
    for (int s = 0; s < steps; s++) {
        for (int k = 0; k < n; k++) w[k] = !touched[k] && u->nw[k] > 1;
        int k = pick_weighted(rng, w, n);
        if (k < 0) break;
        int up = lv[k] == 0 ? 1 : lv[k] + 1 >= u->nw[k] ? 0 : (int)ba_rng_below(rng, 2);
        double want = move_unit(p, u, lv, choice, k, lv[k] + (up ? 1 : -1), use, tmp);
        touched[k] = 1;
        if (up) {
            /* Compensate: lower other units until the budgets hold. */
            while (!ba_problem_feasible(p, choice)) {
                int restoring = 0;
                for (int d = 0; d < n; d++) {
                    w[d] = 0;
                    if (touched[d] || lv[d] == 0) continue;
                    evo_units_set(p, u, choice, d, lv[d] - 1);
                    budget_use(p, choice, tmp);
                    double dd = budget_delta(p, use, tmp);
                    int ok = ba_problem_feasible(p, choice);
                    evo_units_set(p, u, choice, d, lv[d]);
                    if (ok && !restoring) { /* the first unit that restores: forget the others */
                        restoring = 1;
                        for (int e = 0; e < d; e++) w[e] = 0;
                    }
                    if (ok)
                        w[d] = match_weight(dd, want);
                    else if (!restoring)
                        w[d] = dd; /* none restores alone yet: free the most first */
                }
                int d = pick_weighted(rng, w, n);
                if (d < 0) return 0;
                want -= move_unit(p, u, lv, choice, d, lv[d] - 1, use, tmp);
                if (want < 0) want = 0;
                touched[d] = 1;
            }
        } else if (ba_rng_below(rng, BA_EVO_COMPENSATE_DOWN_OF) < BA_EVO_COMPENSATE_DOWN) {
            /* Compensate: spend about the freed budget on another unit's raise. */
            for (int c = 0; c < n; c++) {
                w[c] = 0;
                if (touched[c] || lv[c] + 1 >= u->nw[c]) continue;
                evo_units_set(p, u, choice, c, lv[c] + 1);
                if (ba_problem_feasible(p, choice)) {
                    budget_use(p, choice, tmp);
                    w[c] = match_weight(budget_delta(p, use, tmp), want);
                }
                evo_units_set(p, u, choice, c, lv[c]);
            }
            int c = pick_weighted(rng, w, n);
            if (c >= 0) {
                move_unit(p, u, lv, choice, c, lv[c] + 1, use, tmp);
                touched[c] = 1;
            }
        }
    }
    return ba_problem_feasible(p, choice);
}

static int mutate_units(const ba_problem_t *p, const evo_units_t *u, const int *parent, ba_rng_t *rng,
                        int *child) {
    int n = u->n, L = p->nlayers, found = 0;
    int *lv = malloc(((size_t)n + 1) * sizeof *lv);
    double *w = malloc(((size_t)n + 1) * sizeof *w);
    unsigned char *touched = malloc((size_t)n + 1);
    if (!lv || !w || !touched) {
        free(lv);
        free(w);
        free(touched);
        return -1;
    }
    for (int t = 0; t < BA_EVO_MUTATE_TRIES && !found && n >= 1; t++) {
        for (int k = 0; k < n; k++) lv[k] = evo_units_level(p, u, parent, k);
        memcpy(child, parent, (size_t)L * sizeof *child);
        if (!mutate_once(p, u, rng, lv, child, touched, w)) continue;
        found = memcmp(child, parent, (size_t)L * sizeof *child) != 0;
    }
    free(lv);
    free(w);
    free(touched);
    return found ? 0 : -1;
}

int ba_evo_mutate(const ba_problem_t *p, const int *parent, ba_rng_t *rng, int *child) {
    evo_units_t u;
    ba_error e;
    if (evo_units_build(p, &u, &e) != BA_OK) return -1;
    int r = mutate_units(p, &u, parent, rng, child);
    evo_units_free(&u);
    return r;
}

/* ---- checkpoint pieces ---- */

static json_t *real_or_null(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}
static double real_of(const json_t *j) {
    return json_is_number(j) ? json_number_value(j) : NAN;
}

json_t *evo_res_json(const ba_eval_result_t *r) {
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:I}", "objective", real_or_null(r->objective), "kl",
                     real_or_null(r->kl), "mse", real_or_null(r->mse), "agreement",
                     real_or_null(r->agreement), "accuracy", real_or_null(r->accuracy), "samples",
                     (json_int_t)r->samples);
}

int evo_res_parse(const json_t *j, ba_eval_result_t *r) {
    if (!json_is_object(j) || !json_is_integer(json_object_get(j, "samples"))) return -1;
    r->objective = real_of(json_object_get(j, "objective"));
    r->kl = real_of(json_object_get(j, "kl"));
    r->mse = real_of(json_object_get(j, "mse"));
    r->agreement = real_of(json_object_get(j, "agreement"));
    r->accuracy = real_of(json_object_get(j, "accuracy"));
    r->samples = json_integer_value(json_object_get(j, "samples"));
    return isnan(r->objective) ? -1 : 0;
}

json_t *evo_rng_json(const ba_rng_t *r) {
    json_t *a = json_array();
    for (int i = 0; a && i < 4; i++) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)r->s[i]);
        json_array_append_new(a, json_string(hex));
    }
    return a;
}

int evo_rng_parse(const json_t *j, ba_rng_t *r) {
    if (!json_is_array(j) || json_array_size(j) != 4) return -1;
    for (int i = 0; i < 4; i++) {
        const char *s = json_string_value(json_array_get(j, (size_t)i));
        char *end;
        if (!s || strlen(s) != 16) return -1;
        r->s[i] = strtoull(s, &end, 16);
        if (*end) return -1;
    }
    return 0;
}

json_t *evo_choice_json(const int *choice, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) json_array_append_new(a, json_integer(choice[i]));
    return a;
}

int evo_choice_parse(const json_t *j, int *choice, int n) {
    if (!json_is_array(j) || (int)json_array_size(j) != n) return -1;
    for (int i = 0; i < n; i++) {
        const json_t *v = json_array_get(j, (size_t)i);
        if (!json_is_integer(v)) return -1;
        choice[i] = (int)json_integer_value(v);
    }
    return 0;
}

char *evo_dump(json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(j);
    return s;
}

ba_status evo_store(const ba_search_hooks_t *h, int64_t number, const char *state, const char *method,
                    const int *choice, const ba_eval_result_t *res, const char *checkpoint, ba_error *err) {
    /* A measured trial whose objective is not finite failed, whatever the caller's state (SPEC §8). */
    if (!isfinite(res->objective)) state = "failed";
    ba_search_trial_t t = {.number = number, .state = state, .method = method, .choice = choice, .res = *res};
    return h->store(h->ctx, &t, checkpoint, err);
}

ba_status evo_bad_checkpoint(ba_error *err, const char *what) {
    return ba_error_set(err, BA_ERR_INPUT,
                        "study checkpoint: %s (the database was not written by this search)", what);
}

void ba_search_result_free(ba_search_result_t *r) {
    if (!r) return;
    free(r->choice);
    r->choice = NULL;
}

/* ---- evolution ---- */

typedef struct cache_entry {
    int child;
    int64_t samples;
    ba_eval_result_t res;
} cache_entry_t;

typedef struct elite {
    int64_t trial;
    ba_eval_result_t res;
} elite_t;

typedef struct evo_state {
    const ba_problem_t *p;
    const ba_search_opts_t *o;
    const ba_search_hooks_t *h;
    int L;
    int gen;
    int64_t gen_first; /* number of the generation's first trial */
    int64_t next;      /* trials numbered below are stored */
    ba_rng_t rng;      /* at the start of the generation */
    int nelite;        /* elites: the best distinct configurations measured on all N samples, best first */
    elite_t elite[BA_EVO_ELITES];
    int *echoice; /* [BA_EVO_ELITES * L] */
    cache_entry_t *cache;
    int ncache, capcache;
    int64_t nevals;
    double t_eval;  /* seconds inside the evaluate hook (the rest is bookkeeping) */
    int64_t utrial; /* the uniform configuration's trial, added for the final choice (0: not stored yet) */
    ba_eval_result_t ures; /* its result on all N samples (objective NaN: it failed) */
    ba_eval_result_t sres; /* the seed's result on all N samples, when the final choice scored it */
} evo_state_t;

static json_t *elite_json(const evo_state_t *s, int i) {
    return json_pack("{s:I, s:o, s:o}", "trial", (json_int_t)s->elite[i].trial, "choice",
                     evo_choice_json(s->echoice + (size_t)i * s->L, s->L), "res",
                     evo_res_json(&s->elite[i].res));
}

/* "parent" (the best elite) keeps the key earlier readers (study/study.c's report of a finished study) look
 * up. */
static json_t *state_json(const evo_state_t *s, int gen, int64_t gen_first, int64_t next, const ba_rng_t *rng,
                          int with_cache) {
    json_t *cache = json_array(), *elites = json_array();
    for (int i = 0; with_cache && cache && i < s->ncache; i++)
        json_array_append_new(cache, json_pack("{s:i, s:I, s:o}", "child", s->cache[i].child, "samples",
                                               (json_int_t)s->cache[i].samples, "res",
                                               evo_res_json(&s->cache[i].res)));
    for (int i = 1; elites && i < s->nelite; i++) json_array_append_new(elites, elite_json(s, i));
    json_t *j = json_pack("{s:s, s:i, s:I, s:I, s:o, s:o, s:o, s:o}", "kind", "evo", "gen", gen, "gen_first",
                          (json_int_t)gen_first, "next", (json_int_t)next, "rng", evo_rng_json(rng), "parent",
                          elite_json(s, 0), "elites", elites, "cache", cache);
    if (j && s->utrial > 0)
        json_object_set_new(
            j, "uniform",
            json_pack("{s:I, s:o}", "trial", (json_int_t)s->utrial, "res", evo_res_json(&s->ures)));
    return j;
}

static int parse_elite(evo_state_t *s, const json_t *e, int i) {
    if (!json_is_object(e) || !json_is_integer(json_object_get(e, "trial")) ||
        evo_choice_parse(json_object_get(e, "choice"), s->echoice + (size_t)i * s->L, s->L) ||
        evo_res_parse(json_object_get(e, "res"), &s->elite[i].res) ||
        !ba_problem_feasible(s->p, s->echoice + (size_t)i * s->L))
        return -1;
    s->elite[i].trial = json_integer_value(json_object_get(e, "trial"));
    return 0;
}

static ba_status load_state(evo_state_t *s, const char *text, ba_error *err) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    ba_status st = BA_OK;
    const json_t *cache = j ? json_object_get(j, "cache") : NULL;
    const json_t *elites = j ? json_object_get(j, "elites") : NULL;
    const char *kind = j ? json_string_value(json_object_get(j, "kind")) : NULL;
    if (!j || !kind || strcmp(kind, "evo") != 0 || !json_is_integer(json_object_get(j, "gen")) ||
        !json_is_integer(json_object_get(j, "next")) || !json_is_integer(json_object_get(j, "gen_first")) ||
        evo_rng_parse(json_object_get(j, "rng"), &s->rng) || !json_is_array(cache) ||
        (elites && (!json_is_array(elites) || json_array_size(elites) >= BA_EVO_ELITES))) {
        json_decref(j);
        return evo_bad_checkpoint(err, "not an evolution state");
    }
    s->nelite = 0;
    if (parse_elite(s, json_object_get(j, "parent"), 0))
        st = evo_bad_checkpoint(err, "bad or infeasible parent");
    else
        s->nelite = 1;
    for (size_t i = 0; st == BA_OK && elites && i < json_array_size(elites); i++) {
        if (parse_elite(s, json_array_get(elites, i), s->nelite))
            st = evo_bad_checkpoint(err, "bad or infeasible elite");
        else
            s->nelite++;
    }
    const json_t *uni = json_object_get(j, "uniform");
    if (st == BA_OK && uni) {
        const json_t *ur = json_object_get(uni, "res");
        /* evo_res_parse refuses a NaN objective, which a failed uniform trial has: check the shape alone. */
        if (!json_is_integer(json_object_get(uni, "trial")) ||
            json_integer_value(json_object_get(uni, "trial")) < 1 || !json_is_object(ur) ||
            !json_is_integer(json_object_get(ur, "samples")))
            st = evo_bad_checkpoint(err, "bad uniform trial");
        else {
            (void)evo_res_parse(ur, &s->ures);
            s->utrial = json_integer_value(json_object_get(uni, "trial"));
        }
    }
    s->gen = (int)json_integer_value(json_object_get(j, "gen"));
    s->gen_first = json_integer_value(json_object_get(j, "gen_first"));
    s->next = json_integer_value(json_object_get(j, "next"));
    size_t n = json_array_size(cache);
    if (st == BA_OK && n) {
        s->cache = ba_malloc(n * sizeof *s->cache, err);
        if (!s->cache)
            st = BA_ERR_NOMEM;
        else
            s->capcache = (int)n;
    }
    for (size_t i = 0; st == BA_OK && i < n; i++) {
        const json_t *e = json_array_get(cache, i);
        cache_entry_t *c = &s->cache[s->ncache];
        if (!json_is_integer(json_object_get(e, "child")) ||
            !json_is_integer(json_object_get(e, "samples")) ||
            evo_res_parse(json_object_get(e, "res"), &c->res))
            st = evo_bad_checkpoint(err, "bad cached evaluation");
        else {
            c->child = (int)json_integer_value(json_object_get(e, "child"));
            c->samples = json_integer_value(json_object_get(e, "samples"));
            s->ncache++;
        }
    }
    json_decref(j);
    return st;
}

/* First sample of generation gen's stage sg window of `samples` samples: one
 * of the N / samples disjoint blocks of the search part, drawn from the seed,
 * the generation and the stage alone (not from the search's RNG stream), so
 * every generation ranks on another subset (no bias towards the first samples),
 * a resume draws the same, and a configuration met again in a later generation
 * that draws the same block is found in the memo instead of measured again. */
static int64_t stage_first(const ba_search_opts_t *o, int gen, int sg, int64_t samples) {
    if (samples >= o->nsamples) return 0;
    ba_rng_t r;
    ba_rng_seed(&r, o->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(gen * 4 + sg + 1)));
    return samples * (int64_t)ba_rng_below(&r, (uint64_t)(o->nsamples / samples));
}

static ba_status evaluate_window(const ba_search_hooks_t *h, const ba_search_opts_t *o, const int *choice,
                                 int64_t first, int64_t samples, ba_eval_result_t *out, ba_error *err) {
    if (h->evaluate_at) return h->evaluate_at(h->ctx, choice, first, samples, out, err);
    return h->evaluate(h->ctx, choice, samples == o->nsamples ? 0 : samples, out, err);
}

static ba_status eval_child(evo_state_t *s, int child, const int *choice, int64_t samples, int sg,
                            ba_eval_result_t *out, ba_error *err) {
    for (int i = 0; i < s->ncache; i++)
        if (s->cache[i].child == child && s->cache[i].samples == samples) {
            *out = s->cache[i].res;
            return BA_OK;
        }
    double t0 = ba_now();
    BA_TRY(evaluate_window(s->h, s->o, choice, s->h->evaluate_at ? stage_first(s->o, s->gen, sg, samples) : 0,
                           samples, out, err));
    s->t_eval += ba_now() - t0;
    out->samples = samples;
    s->nevals++;
    if (s->ncache == s->capcache) {
        int cap = s->capcache ? 2 * s->capcache : 32;
        cache_entry_t *c = ba_realloc(s->cache, (size_t)cap * sizeof *c, err);
        if (!c) return BA_ERR_NOMEM;
        s->cache = c, s->capcache = cap;
    }
    s->cache[s->ncache++] = (cache_entry_t){child, samples, *out};
    return BA_OK;
}

/* Announces a stage's evaluations (hooks' prepare): children idx[0..n) of kids on `samples` samples,
 * those the generation's cache does not hold yet. */
static ba_status prepare_stage(evo_state_t *s, const int *kids, const int *idx, int n, int64_t samples,
                               int sg, ba_error *err) {
    if (!s->h->prepare || !s->h->evaluate_at || n <= 0) return BA_OK;
    int L = s->L, m = 0;
    int *ch = ba_malloc((size_t)n * L * sizeof *ch + 1, err);
    int64_t *fi = ba_malloc((size_t)n * sizeof *fi + 1, err),
            *ns = ba_malloc((size_t)n * sizeof *ns + 1, err);
    ba_status st = ch && fi && ns ? BA_OK : BA_ERR_NOMEM;
    for (int i = 0; st == BA_OK && i < n; i++) {
        int cached = 0;
        for (int c = 0; c < s->ncache && !cached; c++)
            cached = s->cache[c].child == idx[i] && s->cache[c].samples == samples;
        if (cached) continue;
        memcpy(ch + (size_t)m * L, kids + (size_t)idx[i] * L, (size_t)L * sizeof *ch);
        fi[m] = stage_first(s->o, s->gen, sg, samples);
        ns[m++] = samples;
    }
    if (st == BA_OK && m) st = s->h->prepare(s->h->ctx, ch, fi, ns, m, err);
    free(ch);
    free(fi);
    free(ns);
    return st;
}

/* Rank order: lower objective first, then lower child index (stable, deterministic). */
static const ba_eval_result_t *g_rank_res;
static int cmp_rank(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    double u = g_rank_res[x].objective, v = g_rank_res[y].objective;
    int un = !isfinite(u), vn = !isfinite(v); /* a failed child ranks last */
    if (un != vn) return un - vn;
    if (u < v) return -1;
    if (u > v) return 1;
    return (x > y) - (x < y);
}
static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static ba_status store_mid(evo_state_t *s, int64_t number, const char *state, const int *choice,
                           const ba_eval_result_t *res, ba_error *err) {
    if (number < s->next) return BA_OK; /* stored before the interruption */
    char *ck = evo_dump(state_json(s, s->gen, s->gen_first, number + 1, &s->rng, 1));
    if (!ck) return ba_error_set(err, BA_ERR_NOMEM, "evolution: out of memory writing a checkpoint");
    ba_status st = evo_store(s->h, number, state, s->o->method, choice, res, ck, err);
    free(ck);
    return st;
}

/* Samples of each fidelity stage for N (the last is N). */
static int fidelity_stages(const ba_search_opts_t *o, int64_t *stages) {
    int64_t N = o->nsamples, lo = o->min_stage > 0 ? o->min_stage : BA_EVO_MIN_STAGE_SAMPLES;
    int64_t s0 = N / BA_EVO_FID0_DIV, s1 = N / BA_EVO_FID1_DIV;
    if (s0 < lo) s0 = lo;
    if (s1 < lo) s1 = lo;
    int n = 0;
    if (s0 < s1 && s0 < N) stages[n++] = s0;
    if (s1 < N) stages[n++] = s1;
    stages[n++] = N;
    return n;
}

/* Survivors of stage sg (of nst) out of nalive for lam offspring. */
static int stage_keep(int sg, int nst, int lam) {
    int keep = (lam + BA_EVO_KEEP0_DIV - 1) / BA_EVO_KEEP0_DIV;
    if (keep < BA_EVO_KEEP0_MIN) keep = BA_EVO_KEEP0_MIN;
    if (sg == nst - 2 || keep < BA_EVO_KEEP1) keep = BA_EVO_KEEP1; /* the stage before full data */
    return keep;
}

/* Inserts a configuration measured on all N samples into the elite pool (best
 * first; equal objectives: earlier trial first). */
static void elite_offer(evo_state_t *s, const int *choice, const ba_eval_result_t *res, int64_t trial) {
    if (!isfinite(res->objective)) return; /* a failed trial is never an elite, so never the result */
    int pos = s->nelite;
    while (pos > 0 &&
           (res->objective < s->elite[pos - 1].res.objective ||
            (res->objective == s->elite[pos - 1].res.objective && trial < s->elite[pos - 1].trial)))
        pos--;
    if (pos >= BA_EVO_ELITES) return;
    int last = s->nelite < BA_EVO_ELITES ? s->nelite : BA_EVO_ELITES - 1;
    for (int i = last; i > pos; i--) {
        s->elite[i] = s->elite[i - 1];
        memcpy(s->echoice + (size_t)i * s->L, s->echoice + (size_t)(i - 1) * s->L,
               (size_t)s->L * sizeof *choice);
    }
    s->elite[pos] = (elite_t){trial, *res};
    memcpy(s->echoice + (size_t)pos * s->L, choice, (size_t)s->L * sizeof *choice);
    if (s->nelite < BA_EVO_ELITES) s->nelite++;
}

/* One generation: returns 1 in *stalled when no offspring could be drawn. */
static ba_status generation(evo_state_t *s, const evo_units_t *u, int *stalled, ba_error *err) {
    int L = s->L, lam = s->o->offspring;
    ba_status st = BA_OK;
    *stalled = 0;
    int *kids = ba_malloc((size_t)lam * L * sizeof *kids, err);
    ba_eval_result_t *res = ba_calloc((size_t)lam, sizeof *res, err);
    int *alive = ba_malloc((size_t)lam * sizeof *alive, err);
    int *out = ba_malloc((size_t)lam * sizeof *out, err);
    if (!kids || !res || !alive || !out) {
        st = BA_ERR_NOMEM;
        goto done;
    }
    ba_rng_t rng = s->rng;
    int nk = 0;
    for (int i = 0; i < lam; i++) {
        int *c = kids + (size_t)nk * L, got = 0;
        for (int t = 0; t < BA_EVO_MUTATE_TRIES && !got; t++) {
            /* Parent: an elite, the better ones more often (min of two uniform draws). */
            int a = (int)ba_rng_below(&rng, (uint64_t)s->nelite),
                b = (int)ba_rng_below(&rng, (uint64_t)s->nelite);
            if (mutate_units(s->p, u, s->echoice + (size_t)(a < b ? a : b) * L, &rng, c) != 0) continue;
            got = 1;
            for (int k = 0; k < nk && got; k++)
                if (memcmp(kids + (size_t)k * L, c, (size_t)L * sizeof *c) == 0) got = 0;
            for (int e = 0; e < s->nelite && got; e++)
                if (memcmp(s->echoice + (size_t)e * L, c, (size_t)L * sizeof *c) == 0) got = 0;
        }
        if (got) nk++;
    }
    if (nk == 0) {
        *stalled = 1;
        goto done;
    }
    int64_t stages[3];
    int nst = fidelity_stages(s->o, stages);
    int nalive = nk;
    for (int i = 0; i < nk; i++) alive[i] = i;
    int64_t number = s->gen_first;
    for (int sg = 0; sg < nst - 1 && st == BA_OK; sg++) {
        int keep = stage_keep(sg, nst, lam);
        if (nalive <= keep) continue; /* nothing to prune: skip the stage */
        st = prepare_stage(s, kids, alive, nalive, stages[sg], sg, err);
        for (int i = 0; i < nalive && st == BA_OK; i++)
            st = eval_child(s, alive[i], kids + (size_t)alive[i] * L, stages[sg], sg, &res[alive[i]], err);
        if (st != BA_OK) break;
        g_rank_res = res;
        qsort(alive, (size_t)nalive, sizeof *alive, cmp_rank);
        int nout = nalive - keep;
        memcpy(out, alive + keep, (size_t)nout * sizeof *out);
        qsort(out, (size_t)nout, sizeof *out, cmp_int);
        for (int i = 0; i < nout && st == BA_OK; i++)
            st = store_mid(s, number++, "pruned", kids + (size_t)out[i] * L, &res[out[i]], err);
        nalive = keep;
        qsort(alive, (size_t)nalive, sizeof *alive, cmp_int);
    }
    if (st == BA_OK) st = prepare_stage(s, kids, alive, nalive, s->o->nsamples, nst - 1, err);
    for (int i = 0; i < nalive && st == BA_OK; i++)
        st = eval_child(s, alive[i], kids + (size_t)alive[i] * L, s->o->nsamples, nst - 1, &res[alive[i]],
                        err);
    if (st != BA_OK) goto done;
    /* The survivors' trials, the last one carrying the next generation's start
     * (elites updated: elitism on all N samples, so the best never gets worse). */
    int64_t end = number + nalive; /* first trial of the next generation */
    evo_state_t nx = *s;           /* the next generation's elites, in a buffer of their own */
    nx.echoice = ba_malloc((size_t)BA_EVO_ELITES * L * sizeof *nx.echoice, err);
    if (!nx.echoice) {
        st = BA_ERR_NOMEM;
        goto done;
    }
    memcpy(nx.echoice, s->echoice, (size_t)BA_EVO_ELITES * L * sizeof *nx.echoice);
    for (int i = 0; i < nalive; i++)
        elite_offer(&nx, kids + (size_t)alive[i] * L, &res[alive[i]], number + i);
    for (int i = 0; i < nalive && st == BA_OK; i++, number++) {
        const int *c = kids + (size_t)alive[i] * L;
        if (i < nalive - 1) {
            st = store_mid(s, number, "complete", c, &res[alive[i]], err);
            continue;
        }
        if (number < s->next) break;
        char *ck = evo_dump(state_json(&nx, s->gen + 1, end, end, &rng, 0));
        if (!ck) {
            st = ba_error_set(err, BA_ERR_NOMEM, "evolution: out of memory writing a checkpoint");
            break;
        }
        st = evo_store(s->h, number, "complete", s->o->method, c, &res[alive[i]], ck, err);
        free(ck);
    }
    if (st == BA_OK) {
        memcpy(s->echoice, nx.echoice, (size_t)BA_EVO_ELITES * L * sizeof *nx.echoice);
        s->nelite = nx.nelite;
        memcpy(s->elite, nx.elite, sizeof s->elite);
        s->rng = rng;
        s->gen++;
        s->gen_first = s->next = end;
        s->ncache = 0;
    }
    free(nx.echoice);
done:
    free(kids);
    free(res);
    free(alive);
    free(out);
    return st;
}

/* The uniform configuration (ba_search_uniform_choice) as a candidate of the
 * final choice: *has = 1 and uni filled when a single width fits the budgets,
 * the configuration is neither the seed nor an elite (those are scored as
 * such) and its trial succeeded. It is measured on all N samples and stored
 * once, as the trial after the last generation (method "uniform"); its number
 * and result go into the checkpoint, so a resume neither measures nor stores
 * it again. */
static ba_status add_uniform(evo_state_t *s, const int *seed, int *uni, int *has, ba_error *err) {
    const ba_search_opts_t *o = s->o;
    const ba_search_hooks_t *h = s->h;
    size_t sz = (size_t)s->L * sizeof *uni;
    int bits = 0;
    ba_error e2;
    *has = 0;
    if (ba_search_uniform_choice(s->p, uni, &bits, &e2) != BA_OK) return BA_OK; /* no single width fits */
    if (!memcmp(uni, seed, sz)) return BA_OK;
    for (int e = 0; e < s->nelite; e++)
        if (!memcmp(s->echoice + (size_t)e * s->L, uni, sz)) return BA_OK;
    if (s->utrial == 0) {
        ba_eval_result_t r;
        int64_t z = 0, number = s->next;
        if (h->prepare) BA_TRY(h->prepare(h->ctx, uni, &z, &o->nsamples, 1, err));
        double t0 = ba_now();
        BA_TRY(evaluate_window(h, o, uni, 0, o->nsamples, &r, err));
        s->t_eval += ba_now() - t0;
        r.samples = o->nsamples;
        s->nevals++;
        s->utrial = number, s->ures = r;
        char *ck = evo_dump(state_json(s, s->gen, number + 1, number + 1, &s->rng, 0));
        ba_status st = ck ? evo_store(h, number, "complete", "uniform", uni, &r, ck, err)
                          : ba_error_set(err, BA_ERR_NOMEM, "evolution: out of memory writing a checkpoint");
        free(ck);
        if (st != BA_OK) {
            s->utrial = 0;
            return st;
        }
        s->gen_first = s->next = number + 1;
    }
    *has = isfinite(s->ures.objective);
    return BA_OK;
}

/* Candidate i of the final choice: -1 the seed, 0 .. nelite-1 the elites, nelite the uniform one. */
static const int *candidate(const evo_state_t *s, int i, const int *seed, const int *uni) {
    return i < 0 ? seed : i < s->nelite ? s->echoice + (size_t)i * s->L : uni;
}

/* Window w of the k windows the validation part [N, N + nvalid) is cut into (sizes differ by one at most). */
static void choice_window(const ba_search_opts_t *o, int k, int w, int64_t *first, int64_t *n) {
    int64_t a = o->nvalid * w / k, b = o->nvalid * (w + 1) / k;
    *first = o->nsamples + a, *n = b - a;
}

int ba_evo_choice_windows(int64_t nvalid) {
    return nvalid < BA_EVO_CHOICE_WINDOWS ? (int)nvalid : BA_EVO_CHOICE_WINDOWS;
}

double ba_evo_paired_p(const double *a, const double *b, int k, uint64_t seed, int resamples) {
    if (k < 1 || resamples < 1) return 1;
    ba_rng_t r;
    ba_rng_seed(&r, seed);
    int64_t worse = 0; /* resamples whose mean difference a − b is not below 0 */
    for (int t = 0; t < resamples; t++) {
        double sum = 0;
        for (int i = 0; i < k; i++) {
            uint64_t j = ba_rng_below(&r, (uint64_t)k);
            sum += a[j] - b[j];
        }
        worse += !(sum < 0);
    }
    return (double)(worse + 1) / (double)(resamples + 1);
}

/* One candidate of the final choice. */
typedef struct final_cand {
    int i; /* candidate() index */
    int64_t trial;
    double v;        /* objective on the whole validation part */
    double full;     /* objective on the search part */
    double *win;     /* [k] objective on each validation window */
    int ok;          /* v and every window finite */
    double p, delta; /* against the default: paired bootstrap p, mean window difference (cand − default) */
} final_cand_t;

/* A candidate's mean over the search and validation parts together (each figure weighted by its samples). */
static double pooled(const ba_search_opts_t *o, const final_cand_t *c) {
    return ((double)o->nsamples * c->full + (double)o->nvalid * c->v) / (double)(o->nsamples + o->nvalid);
}

/* The record of the final choice (search/evo.h, ba_search_hooks_t.chosen) as compact JSON. */
static char *choice_record(const final_cand_t *c, int nc, int nelite, int def, int win, int k, int m,
                           const char *rule, int stat) {
    json_t *cands = json_array();
    for (int i = 0; cands && i < nc; i++) {
        const char *role = c[i].i < 0         ? "seed"
                           : c[i].i == nelite ? "uniform"
                           : c[i].i == 0      ? "best"
                                              : "elite";
        json_array_append_new(cands, json_pack("{s:I, s:s, s:o, s:o, s:o, s:o}", "trial",
                                               (json_int_t)c[i].trial, "role", role, "objective",
                                               real_or_null(c[i].full), "validation", real_or_null(c[i].v),
                                               "delta", i == def ? json_null() : real_or_null(c[i].delta),
                                               "p", i == def ? json_null() : real_or_null(c[i].p)));
    }
    return evo_dump(json_pack(
        "{s:s, s:s, s:s, s:f, s:i, s:i, s:i, s:I, s:I, s:o}", "rule", rule, "test", "paired-bootstrap",
        "statistic", stat == BA_EVO_WINDOW_MSE ? "mse" : "objective", "confidence", BA_EVO_CHOICE_CONFIDENCE,
        "windows", k, "resamples", BA_EVO_CHOICE_RESAMPLES, "challengers", m, "default",
        (json_int_t)c[def].trial, "trial", (json_int_t)c[win].trial, "candidates", cands));
}

/* The final choice on the validation part (search/evo.h): the seed (trial 1), the elites and
 * the uniform configuration (add_uniform) are each scored on samples [N, N + nvalid) and on
 * k windows of it. The default is the best elite on the search part; another candidate replaces
 * it only when a one-sided paired bootstrap over the windows says it is better at
 * BA_EVO_CHOICE_CONFIDENCE, Bonferroni-corrected over the m challengers (p <= (1 − confidence) / m),
 * and its mean over the search and validation parts together is lower too; of those, the lowest
 * validation objective wins (ties: search objective, trial). With fewer than
 * BA_EVO_CHOICE_MIN_WINDOWS windows no test is made and the default stays; when the default's
 * validation is not finite, the lowest validation wins as before. Last, a choice whose validation
 * objective is above the first seed's gives way to the seed lowest on validation (rule "seed"). *pick = the
 * winning elite, -1 for a seed that is no elite any more, -2 for the uniform configuration (out->res and
 * out->trial set for those two). */
static ba_status validate(evo_state_t *s, const int *seeds, int nseeds, const int *uni, int has_uni,
                          int *pick, ba_search_result_t *out, ba_error *err) {
    const int *seed = seeds; /* trial 1 */
    const ba_search_opts_t *o = s->o;
    const ba_search_hooks_t *h = s->h;
    int seed_elite = -1, last = s->nelite - 1 + (has_uni ? 1 : 0);
    for (int e = 0; e < s->nelite && seed_elite < 0; e++)
        if (!memcmp(s->echoice + (size_t)e * s->L, seed, (size_t)s->L * sizeof *seed)) seed_elite = e;
    int k = ba_evo_choice_windows(o->nvalid), L = s->L;
    int ncand = 0;
    final_cand_t c[BA_EVO_ELITES + 2];
    double *wins = ba_calloc((size_t)(BA_EVO_ELITES + 2) * (size_t)(k + 1), sizeof *wins, err);
    if (!wins) return BA_ERR_NOMEM;
    ba_status st = BA_OK;
    *pick = 0;
    if (h->prepare) {
        /* The same evaluations as the loop below, in its order. */
        int m = 0, cap = (s->nelite + 3) * (k + 2);
        int *ch = ba_malloc((size_t)cap * L * sizeof *ch, err);
        int64_t *fi = ba_malloc((size_t)cap * sizeof *fi, err),
                *ns = ba_malloc((size_t)cap * sizeof *ns, err);
        if (!ch || !fi || !ns) st = BA_ERR_NOMEM;
        for (int i = -1; st == BA_OK && i <= last; i++) {
            if (i < 0 && seed_elite >= 0) continue;
            const int *choice = candidate(s, i, seed, uni);
            memcpy(ch + (size_t)m * L, choice, (size_t)L * sizeof *ch);
            fi[m] = o->nsamples, ns[m++] = o->nvalid;
            if (i < 0) {
                memcpy(ch + (size_t)m * L, choice, (size_t)L * sizeof *ch);
                fi[m] = 0, ns[m++] = o->nsamples;
            }
            for (int w = 0; k >= BA_EVO_CHOICE_MIN_WINDOWS && w < k; w++) {
                memcpy(ch + (size_t)m * L, choice, (size_t)L * sizeof *ch);
                choice_window(o, k, w, &fi[m], &ns[m]);
                m++;
            }
        }
        if (st == BA_OK) st = h->prepare(h->ctx, ch, fi, ns, m, err);
        free(ch);
        free(fi);
        free(ns);
    }
    for (int i = -1; st == BA_OK && i <= last; i++) {
        if (i < 0 && seed_elite >= 0) continue; /* the seed is an elite: scored as one */
        const int *choice = candidate(s, i, seed, uni);
        ba_eval_result_t v, full;
        double t0 = ba_now();
        st = h->evaluate_at(h->ctx, choice, o->nsamples, o->nvalid, &v, err);
        if (i < 0) {
            if (st == BA_OK)
                st = h->evaluate_at(h->ctx, choice, 0, o->nsamples, &full, err); /* its search figure */
        } else
            full = i < s->nelite ? s->elite[i].res : s->ures;
        final_cand_t *cd = &c[ncand];
        *cd = (final_cand_t){.i = i, .win = wins + (size_t)ncand * (size_t)(k + 1), .p = NAN, .delta = NAN};
        cd->ok = 1;
        for (int w = 0; st == BA_OK && k >= BA_EVO_CHOICE_MIN_WINDOWS && w < k; w++) {
            int64_t fw, nw;
            ba_eval_result_t rw;
            choice_window(o, k, w, &fw, &nw);
            st = h->evaluate_at(h->ctx, choice, fw, nw, &rw, err);
            cd->win[w] = o->window_stat == BA_EVO_WINDOW_MSE ? rw.mse : rw.objective;
            cd->ok &= isfinite(cd->win[w]) && isfinite(rw.objective);
        }
        s->t_eval += ba_now() - t0;
        if (st != BA_OK) break;
        v.samples = o->nvalid;
        full.samples = o->nsamples;
        cd->trial = i < 0 ? 1 : i < s->nelite ? s->elite[i].trial : s->utrial;
        cd->v = v.objective;
        cd->full = full.objective;
        cd->ok &= isfinite(v.objective);
        if (st == BA_OK && h->validated) st = h->validated(h->ctx, cd->trial, &v, err);
        if (i < 0) s->sres = full; /* the seed's search figure (no elite holds it) */
        ncand++;
    }
    /* The default: the best elite on the search part (candidate 0, or the seed scored as it). */
    int def = -1;
    for (int j = 0; j < ncand; j++)
        if (c[j].i == 0) def = j;
    int win = def, m = 0;
    const char *rule = "default";
    if (st == BA_OK && (def < 0 || !isfinite(c[def].v))) {
        /* No default to test against: the lowest validation, as without a test. */
        win = -1;
        rule = "lowest-validation";
        for (int j = 0; j < ncand; j++) {
            if (!isfinite(c[j].v)) continue;
            if (win < 0 || c[j].v < c[win].v ||
                (c[j].v == c[win].v &&
                 (c[j].full < c[win].full || (c[j].full == c[win].full && c[j].trial < c[win].trial))))
                win = j;
        }
    } else if (st == BA_OK && k >= BA_EVO_CHOICE_MIN_WINDOWS && c[def].ok) {
        for (int j = 0; j < ncand; j++) m += j != def && c[j].ok;
        double alpha = (1 - BA_EVO_CHOICE_CONFIDENCE) / (m > 0 ? m : 1);
        uint64_t bs = o->seed ^ 0x6a09e667f3bcc909ull; /* the bootstrap's own stream, not the search's */
        for (int j = 0; j < ncand; j++) {
            if (j == def || !c[j].ok) continue;
            double d = 0;
            for (int w = 0; w < k; w++) d += c[j].win[w] - c[def].win[w];
            c[j].delta = d / k;
            c[j].p = ba_evo_paired_p(c[j].win, c[def].win, k, bs, BA_EVO_CHOICE_RESAMPLES);
            /* Better on validation beyond its noise, and not undone by the search part: the mean
             * over all N + nvalid samples must be lower too (a validation part of near-zero scores
             * can rank the other way with consistent but tiny differences, and the search part's
             * rare large ones decide the mean). */
            if (!(c[j].p <= alpha && c[j].v < c[def].v && pooled(o, &c[j]) < pooled(o, &c[def]))) continue;
            if (win == def || c[j].v < c[win].v ||
                (c[j].v == c[win].v &&
                 (c[j].full < c[win].full || (c[j].full == c[win].full && c[j].trial < c[win].trial))))
                win = j, rule = "significant";
        }
    } else if (st == BA_OK)
        rule = k < BA_EVO_CHOICE_MIN_WINDOWS ? "default-few-windows" : "default-untestable";
    /* Never worse than the first seed (trial 1) on validation: when the choice's validation figure
     * is above its, the seed lowest on validation is returned (the evolution's elites are ranked on
     * the search part they were selected on; the seeds were not). Other seeds take part in the test
     * above as elites only: a validation part of near-zero scores may rank them against the search
     * part, as on a wake-word head of bench/zoo. */
    int seed1 = -1, seed_c = -1;
    for (int j = 0; j < ncand; j++) {
        const int *cj = candidate(s, c[j].i, seed, uni);
        int is_seed = 0;
        for (int q = 0; q < nseeds && !is_seed; q++)
            is_seed = !memcmp(cj, seeds + (size_t)q * L, (size_t)L * sizeof *cj);
        if (!memcmp(cj, seed, (size_t)L * sizeof *cj)) seed1 = j;
        if (is_seed && isfinite(c[j].v) && (seed_c < 0 || c[j].v < c[seed_c].v)) seed_c = j;
    }
    if (st == BA_OK && win >= 0 && seed1 >= 0 && isfinite(c[seed1].v) && !(c[win].v <= c[seed1].v) &&
        win != seed_c)
        win = seed_c, rule = "seed";
    if (st == BA_OK && win >= 0) {
        const final_cand_t *w = &c[win];
        *pick = w->i >= 0 && w->i < s->nelite ? w->i : w->i < 0 ? -1 : -2;
        out->validation = w->v;
        out->trial = w->trial;
        if (w->i < 0)
            out->res = s->sres;
        else if (w->i == s->nelite)
            out->res = s->ures;
        if (w->i < 0 || w->i == s->nelite) out->res.samples = o->nsamples;
        out->choice_p = def < 0 || w == &c[def] ? NAN : w->p;
        out->choice_default = def >= 0 ? c[def].trial : -1;
        if (h->chosen) {
            char *rec =
                choice_record(c, ncand, s->nelite, def >= 0 ? def : win, win, k, m, rule, o->window_stat);
            st = rec ? h->chosen(h->ctx, w->trial, rec, err)
                     : ba_error_set(err, BA_ERR_NOMEM, "evolution: out of memory recording the final choice");
            free(rec);
        }
    }
    free(wins);
    return st;
}

/* Trials 1..: the distinct seeds, each on all N samples; the best is the first elite. All are
 * measured before any is stored; the last one stored carries the first generation's checkpoint,
 * the others none, so a resume before it measures them again (the measurements are memoised by
 * the callers that resume) and stores the same trials. */
static ba_status run_seeds(evo_state_t *s, const int *seeds, int nseeds, ba_error *err) {
    const ba_problem_t *p = s->p;
    const ba_search_opts_t *o = s->o;
    const ba_search_hooks_t *h = s->h;
    int L = s->L;
    for (int k = 0; k < nseeds; k++)
        if (!ba_problem_feasible(p, seeds + (size_t)k * L))
            return k ? ba_error_set(err, BA_ERR_INPUT, "evolution: seed %d breaks the budgets", k + 1)
                     : ba_error_set(err, BA_ERR_INPUT,
                                    "evolution: the seed configuration breaks the budgets");
    /* Distinct seeds, in order. */
    int *use = ba_malloc((size_t)nseeds * sizeof *use + 1, err);
    ba_eval_result_t *r = ba_calloc((size_t)nseeds + 1, sizeof *r, err);
    int64_t *z = ba_calloc((size_t)nseeds + 1, sizeof *z, err),
            *ns = ba_calloc((size_t)nseeds + 1, sizeof *ns, err);
    int *batch = ba_malloc((size_t)nseeds * L * sizeof *batch + 1, err);
    ba_status st = use && r && z && ns && batch ? BA_OK : BA_ERR_NOMEM;
    int n = 0;
    for (int k = 0; st == BA_OK && k < nseeds; k++) {
        int dup = 0;
        for (int i = 0; i < n && !dup; i++)
            dup = !memcmp(seeds + (size_t)use[i] * L, seeds + (size_t)k * L, (size_t)L * sizeof *seeds);
        if (dup) continue;
        memcpy(batch + (size_t)n * L, seeds + (size_t)k * L, (size_t)L * sizeof *batch);
        ns[n] = o->nsamples;
        use[n++] = k;
    }
    ba_rng_seed(&s->rng, o->seed);
    double t0 = ba_now();
    if (st == BA_OK && h->prepare && h->evaluate_at) st = h->prepare(h->ctx, batch, z, ns, n, err);
    for (int i = 0; st == BA_OK && i < n; i++) {
        st = evaluate_window(h, o, seeds + (size_t)use[i] * L, 0, o->nsamples, &r[i], err);
        r[i].samples = o->nsamples;
        s->nevals += st == BA_OK;
    }
    s->t_eval += ba_now() - t0;
    /* The evolution starts from the best seed alone (the others are trials, not parents). */
    int best = -1;
    for (int i = 0; st == BA_OK && i < n; i++)
        if (isfinite(r[i].objective) && (best < 0 || r[i].objective < r[best].objective)) best = i;
    if (best >= 0) elite_offer(s, seeds + (size_t)use[best] * L, &r[best], best + 1);
    if (st == BA_OK && s->nelite == 0) {
        /* Nothing to evolve from: the failed trials are stored (without a checkpoint, so a
         * resume measures them again) and the run stops. */
        for (int i = 0; st == BA_OK && i < n; i++)
            st = evo_store(h, i + 1, "failed", o->method, seeds + (size_t)use[i] * L, &r[i], NULL, err);
        if (st == BA_OK)
            st = ba_error_set(err, BA_ERR_RUNTIME,
                              n > 1
                                  ? "evolution: every seed configuration (trials 1..%d) gives a non-finite "
                                    "output; nothing to evolve from"
                                  : "evolution: the seed configuration (trial %d) gives a non-finite output; "
                                    "nothing to evolve from",
                              n);
    }
    if (st == BA_OK) {
        s->gen_first = s->next = n + 1;
        char *ck = evo_dump(state_json(s, 0, n + 1, n + 1, &s->rng, 0));
        if (!ck) st = ba_error_set(err, BA_ERR_NOMEM, "evolution: out of memory writing a checkpoint");
        for (int i = 0; st == BA_OK && i < n; i++)
            st = evo_store(h, i + 1, "complete", o->method, seeds + (size_t)use[i] * L, &r[i],
                           i == n - 1 ? ck : NULL, err);
        free(ck);
    }
    free(use);
    free(r);
    free(z);
    free(ns);
    free(batch);
    return st;
}

ba_status ba_evo_run(const ba_problem_t *p, const int *seed, const ba_search_opts_t *o,
                     const ba_search_hooks_t *h, const char *checkpoint, ba_search_result_t *out,
                     ba_error *err) {
    return ba_evo_run_seeds(p, seed, 1, o, h, checkpoint, out, err);
}

ba_status ba_evo_run_seeds(const ba_problem_t *p, const int *seeds, int nseeds, const ba_search_opts_t *o,
                           const ba_search_hooks_t *h, const char *checkpoint, ba_search_result_t *out,
                           ba_error *err) {
    memset(out, 0, sizeof *out);
    if (o->offspring < 1) return ba_error_set(err, BA_ERR_INPUT, "--offspring: must be at least 1");
    if (o->nsamples < 1) return ba_error_set(err, BA_ERR_INPUT, "evolution: no calibration samples");
    if (nseeds < 1) return ba_error_set(err, BA_ERR_INPUT, "evolution: no seed configuration");
    const int *seed = seeds; /* the first: trial 1, the validation's reference */
    double t_start = ba_now();
    evo_units_t u;
    BA_TRY(evo_units_build(p, &u, err));
    evo_state_t s = {.p = p, .o = o, .h = h, .L = p->nlayers};
    ba_status st = BA_OK;
    s.echoice = ba_malloc((size_t)BA_EVO_ELITES * s.L * sizeof *s.echoice, err);
    if (!s.echoice) st = BA_ERR_NOMEM;
    if (st == BA_OK && checkpoint)
        st = load_state(&s, checkpoint, err);
    else if (st == BA_OK)
        st = run_seeds(&s, seeds, nseeds, err);
    while (st == BA_OK && s.gen < o->generations) {
        int stalled = 0;
        st = generation(&s, &u, &stalled, err);
        if (st != BA_OK || stalled)
            break; /* stalled: no configuration differs from the elites under the budgets */
        if (h->progress) h->progress(h->ctx, s.gen, o->generations, &s.elite[0].res, s.echoice);
    }
    int pick = 0; /* elite index of the result; -1: the seed, -2: the uniform configuration */
    int has_uni = 0;
    int *uni = st == BA_OK ? ba_malloc((size_t)s.L * sizeof *uni + 1, err) : NULL;
    if (st == BA_OK && !uni) st = BA_ERR_NOMEM;
    out->validation = NAN;
    out->choice_p = NAN;
    out->choice_default = -1;
    if (st == BA_OK && o->nvalid > 0 && h->evaluate_at) {
        st = add_uniform(&s, seed, uni, &has_uni, err);
        if (st == BA_OK) st = validate(&s, seeds, nseeds, uni, has_uni, &pick, out, err);
    }
    if (st == BA_OK) {
        out->choice = ba_malloc((size_t)s.L * sizeof *out->choice, err);
        if (!out->choice)
            st = BA_ERR_NOMEM;
        else
            memcpy(out->choice,
                   pick == -1   ? seed
                   : pick == -2 ? uni
                                : s.echoice + (size_t)pick * s.L,
                   (size_t)s.L * sizeof *out->choice);
        if (pick >= 0) {
            out->res = s.elite[pick].res;
            out->trial = s.elite[pick].trial;
        }
        out->ntrials = s.next - 1;
        out->nevals = s.nevals;
        out->eval_seconds = s.t_eval;
        out->seconds = ba_now() - t_start;
    }
    free(uni);
    free(s.echoice);
    free(s.cache);
    evo_units_free(&u);
    return st;
}
