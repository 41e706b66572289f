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
                    if ((m == r || (p->tie[m] >= 0 && p->tie[m] == r)) && ba_problem_find(p, m, b) < 0) ok = 0;
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
    for (int i = u->mstart[k]; i < u->mstart[k + 1]; i++) choice[u->mem[i]] = ba_problem_find(p, u->mem[i], b);
}

void evo_units_apply(const ba_problem_t *p, const evo_units_t *u, const int *lv, int *choice) {
    for (int l = 0; l < p->nlayers; l++)
        if (u->unit[l] < 0) choice[l] = u->fixed[l];
    for (int k = 0; k < u->n; k++) evo_units_set(p, u, choice, k, lv[k]);
}

/* ---- mutation ---- */

static int pick(ba_rng_t *rng, const int *ok, int n) {
    int count = 0;
    for (int i = 0; i < n; i++) count += ok[i] != 0;
    if (!count) return -1;
    int r = (int)ba_rng_below(rng, (uint64_t)count);
    for (int i = 0; i < n; i++)
        if (ok[i] && r-- == 0) return i;
    return -1;
}

/* One mutation attempt on units u; lv holds the parent's levels on entry, the child's on return 1. */
static int mutate_once(const ba_problem_t *p, const evo_units_t *u, ba_rng_t *rng, int *lv, int *choice,
                       unsigned char *raised, unsigned char *lowered, int *ok) {
    int n = u->n;
    memset(raised, 0, (size_t)n);
    memset(lowered, 0, (size_t)n);
    int swaps = 1 + (int)ba_rng_below(rng, BA_EVO_MAX_SWAPS);
    for (int s = 0; s < swaps; s++) {
        for (int k = 0; k < n; k++) ok[k] = lv[k] + 1 < u->nw[k];
        int up = pick(rng, ok, n);
        if (up < 0) return 0;
        for (int k = 0; k < n; k++) ok[k] = k != up && lv[k] > 0;
        int down = pick(rng, ok, n);
        if (down < 0) return 0;
        lv[up]++, lv[down]--;
        raised[up] = 1, lowered[down] = 1;
    }
    evo_units_apply(p, u, lv, choice);
    /* Repair: unequal layer sizes make a swap change the budgets; step down
     * random units (not the raised ones, so the mutation keeps its direction). */
    while (!ba_problem_feasible(p, choice)) {
        for (int k = 0; k < n; k++) ok[k] = lv[k] > 0 && !raised[k];
        int k = pick(rng, ok, n);
        if (k < 0) {
            for (int i = 0; i < n; i++) ok[i] = lv[i] > 0;
            k = pick(rng, ok, n);
        }
        if (k < 0) return 0;
        evo_units_set(p, u, choice, k, --lv[k]);
        lowered[k] = 1;
    }
    /* Fill: spend slack the swap or the repair freed, one level per unit, in random order. */
    for (int k = 0; k < n; k++) ok[k] = k;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)ba_rng_below(rng, (uint64_t)i + 1), t = ok[i];
        ok[i] = ok[j], ok[j] = t;
    }
    for (int i = 0; i < n; i++) {
        int k = ok[i];
        if (lowered[k] || lv[k] + 1 >= u->nw[k]) continue;
        evo_units_set(p, u, choice, k, lv[k] + 1);
        if (ba_problem_feasible(p, choice)) lv[k]++;
        else evo_units_set(p, u, choice, k, lv[k]);
    }
    return 1;
}

static int mutate_units(const ba_problem_t *p, const evo_units_t *u, const int *parent, ba_rng_t *rng, int *child) {
    int n = u->n, L = p->nlayers, found = 0;
    int *lv = malloc(((size_t)n + 1) * 2 * sizeof *lv);
    unsigned char *flags = malloc(2 * (size_t)n + 2);
    if (!lv || !flags) {
        free(lv);
        free(flags);
        return -1;
    }
    int *ok = lv + n + 1;
    for (int t = 0; t < BA_EVO_MUTATE_TRIES && !found && n >= 2; t++) {
        for (int k = 0; k < n; k++) lv[k] = evo_units_level(p, u, parent, k);
        memcpy(child, parent, (size_t)L * sizeof *child);
        if (!mutate_once(p, u, rng, lv, child, flags, flags + n + 1, ok)) continue;
        found = memcmp(child, parent, (size_t)L * sizeof *child) != 0;
    }
    free(lv);
    free(flags);
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

static json_t *real_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }
static double real_of(const json_t *j) { return json_is_number(j) ? json_number_value(j) : NAN; }

json_t *evo_res_json(const ba_eval_result_t *r) {
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:I}", "objective", real_or_null(r->objective), "kl",
                     real_or_null(r->kl), "mse", real_or_null(r->mse), "agreement", real_or_null(r->agreement),
                     "accuracy", real_or_null(r->accuracy), "samples", (json_int_t)r->samples);
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
    ba_search_trial_t t = {.number = number, .state = state, .method = method, .choice = choice, .res = *res};
    return h->store(h->ctx, &t, checkpoint, err);
}

ba_status evo_bad_checkpoint(ba_error *err, const char *what) {
    return ba_error_set(err, BA_ERR_INPUT, "study checkpoint: %s (the database was not written by this search)", what);
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

typedef struct evo_state {
    const ba_problem_t *p;
    const ba_search_opts_t *o;
    const ba_search_hooks_t *h;
    int L;
    int gen;
    int64_t gen_first;  /* number of the generation's first trial */
    int64_t next;       /* trials numbered below are stored */
    ba_rng_t rng;       /* at the start of the generation */
    int *parent;
    ba_eval_result_t parent_res;
    int64_t parent_trial;
    cache_entry_t *cache;
    int ncache, capcache;
    int64_t nevals;
} evo_state_t;

static json_t *state_json(const evo_state_t *s, int gen, int64_t gen_first, int64_t next, const ba_rng_t *rng,
                          const int *parent, const ba_eval_result_t *pres, int64_t ptrial, int with_cache) {
    json_t *cache = json_array();
    for (int i = 0; with_cache && cache && i < s->ncache; i++)
        json_array_append_new(cache, json_pack("{s:i, s:I, s:o}", "child", s->cache[i].child, "samples",
                                               (json_int_t)s->cache[i].samples, "res", evo_res_json(&s->cache[i].res)));
    return json_pack("{s:s, s:i, s:I, s:I, s:o, s:{s:I, s:o, s:o}, s:o}", "kind", "evo", "gen", gen, "gen_first",
                     (json_int_t)gen_first, "next", (json_int_t)next, "rng", evo_rng_json(rng), "parent", "trial",
                     (json_int_t)ptrial, "choice", evo_choice_json(parent, s->L), "res", evo_res_json(pres), "cache",
                     cache);
}

static ba_status load_state(evo_state_t *s, const char *text, ba_error *err) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    ba_status st = BA_OK;
    const json_t *par = j ? json_object_get(j, "parent") : NULL;
    const json_t *cache = j ? json_object_get(j, "cache") : NULL;
    if (!j || strcmp(json_string_value(json_object_get(j, "kind")) ? json_string_value(json_object_get(j, "kind")) : "",
                     "evo") != 0 ||
        !json_is_integer(json_object_get(j, "gen")) || !json_is_integer(json_object_get(j, "next")) ||
        !json_is_integer(json_object_get(j, "gen_first")) || evo_rng_parse(json_object_get(j, "rng"), &s->rng) ||
        !json_is_object(par) || evo_choice_parse(json_object_get(par, "choice"), s->parent, s->L) ||
        evo_res_parse(json_object_get(par, "res"), &s->parent_res) || !json_is_array(cache)) {
        json_decref(j);
        return evo_bad_checkpoint(err, "not an evolution state");
    }
    s->gen = (int)json_integer_value(json_object_get(j, "gen"));
    s->gen_first = json_integer_value(json_object_get(j, "gen_first"));
    s->next = json_integer_value(json_object_get(j, "next"));
    s->parent_trial = json_integer_value(json_object_get(par, "trial"));
    if (!ba_problem_feasible(s->p, s->parent)) st = evo_bad_checkpoint(err, "parent configuration breaks the budgets");
    size_t n = json_array_size(cache);
    if (st == BA_OK && n) {
        s->cache = ba_malloc(n * sizeof *s->cache, err);
        if (!s->cache) st = BA_ERR_NOMEM;
        else s->capcache = (int)n;
    }
    for (size_t i = 0; st == BA_OK && i < n; i++) {
        const json_t *e = json_array_get(cache, i);
        cache_entry_t *c = &s->cache[s->ncache];
        if (!json_is_integer(json_object_get(e, "child")) || !json_is_integer(json_object_get(e, "samples")) ||
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

static ba_status eval_child(evo_state_t *s, int child, const int *choice, int64_t samples, ba_eval_result_t *out,
                            ba_error *err) {
    for (int i = 0; i < s->ncache; i++)
        if (s->cache[i].child == child && s->cache[i].samples == samples) {
            *out = s->cache[i].res;
            return BA_OK;
        }
    BA_TRY(s->h->evaluate(s->h->ctx, choice, samples == s->o->nsamples ? 0 : samples, out, err));
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

/* Rank order: lower objective first, then lower child index (stable, deterministic). */
static const ba_eval_result_t *g_rank_res;
static int cmp_rank(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    double u = g_rank_res[x].objective, v = g_rank_res[y].objective;
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
    char *ck = evo_dump(state_json(s, s->gen, s->gen_first, number + 1, &s->rng, s->parent, &s->parent_res,
                                   s->parent_trial, 1));
    if (!ck) return ba_error_set(err, BA_ERR_NOMEM, "evolution: out of memory writing a checkpoint");
    ba_status st = evo_store(s->h, number, state, s->o->method, choice, res, ck, err);
    free(ck);
    return st;
}

/* Samples of each fidelity stage for N (the last is N). */
static int fidelity_stages(int64_t N, int64_t *stages) {
    int64_t s0 = N / BA_EVO_FID0_DIV, s1 = N / BA_EVO_FID1_DIV;
    if (s0 < BA_EVO_MIN_STAGE_SAMPLES) s0 = BA_EVO_MIN_STAGE_SAMPLES;
    if (s1 < BA_EVO_MIN_STAGE_SAMPLES) s1 = BA_EVO_MIN_STAGE_SAMPLES;
    int n = 0;
    if (s0 < s1 && s0 < N) stages[n++] = s0;
    if (s1 < N) stages[n++] = s1;
    stages[n++] = N;
    return n;
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
            if (mutate_units(s->p, u, s->parent, &rng, c) != 0) break;
            got = 1;
            for (int k = 0; k < nk && got; k++)
                if (memcmp(kids + (size_t)k * L, c, (size_t)L * sizeof *c) == 0) got = 0;
        }
        if (got) nk++;
    }
    if (nk == 0) {
        *stalled = 1;
        goto done;
    }
    int64_t stages[3];
    int nst = fidelity_stages(s->o->nsamples, stages);
    int nalive = nk;
    for (int i = 0; i < nk; i++) alive[i] = i;
    int64_t number = s->gen_first;
    for (int sg = 0; sg < nst - 1 && st == BA_OK; sg++) {
        int keep = sg == 0 && nst == 3 ? (lam + BA_EVO_KEEP0_DIV - 1) / BA_EVO_KEEP0_DIV : BA_EVO_KEEP1;
        if (sg == 0 && nst == 3 && keep < BA_EVO_KEEP0_MIN) keep = BA_EVO_KEEP0_MIN;
        if (nalive <= keep) continue; /* nothing to prune: skip the stage */
        for (int i = 0; i < nalive && st == BA_OK; i++)
            st = eval_child(s, alive[i], kids + (size_t)alive[i] * L, stages[sg], &res[alive[i]], err);
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
    for (int i = 0; i < nalive && st == BA_OK; i++)
        st = eval_child(s, alive[i], kids + (size_t)alive[i] * L, s->o->nsamples, &res[alive[i]], err);
    if (st != BA_OK) goto done;
    /* Elitism: the parent survives unless a child beats it on all N samples. */
    int best = -1;
    for (int i = 0; i < nalive; i++)
        if (res[alive[i]].objective < s->parent_res.objective &&
            (best < 0 || res[alive[i]].objective < res[best].objective))
            best = alive[i];
    int64_t end = number + nalive; /* first trial of the next generation */
    int *new_parent = best >= 0 ? kids + (size_t)best * L : s->parent;
    ba_eval_result_t new_res = best >= 0 ? res[best] : s->parent_res;
    int64_t new_trial = s->parent_trial;
    for (int i = 0; i < nalive; i++)
        if (alive[i] == best) new_trial = number + i;
    for (int i = 0; i < nalive && st == BA_OK; i++, number++) {
        const int *c = kids + (size_t)alive[i] * L;
        if (i < nalive - 1) {
            st = store_mid(s, number, "complete", c, &res[alive[i]], err);
            continue;
        }
        if (number < s->next) break;
        char *ck = evo_dump(state_json(s, s->gen + 1, end, end, &rng, new_parent, &new_res, new_trial, 0));
        if (!ck) {
            st = ba_error_set(err, BA_ERR_NOMEM, "evolution: out of memory writing a checkpoint");
            break;
        }
        st = evo_store(s->h, number, "complete", s->o->method, c, &res[alive[i]], ck, err);
        free(ck);
    }
    if (st != BA_OK) goto done;
    memcpy(s->parent, new_parent, (size_t)L * sizeof *s->parent);
    s->parent_res = new_res;
    s->parent_trial = new_trial;
    s->rng = rng;
    s->gen++;
    s->gen_first = s->next = end;
    s->ncache = 0;
done:
    free(kids);
    free(res);
    free(alive);
    free(out);
    return st;
}

ba_status ba_evo_run(const ba_problem_t *p, const int *seed, const ba_search_opts_t *o, const ba_search_hooks_t *h,
                     const char *checkpoint, ba_search_result_t *out, ba_error *err) {
    memset(out, 0, sizeof *out);
    if (o->offspring < 1) return ba_error_set(err, BA_ERR_INPUT, "--offspring: must be at least 1");
    if (o->nsamples < 1) return ba_error_set(err, BA_ERR_INPUT, "evolution: no calibration samples");
    evo_units_t u;
    BA_TRY(evo_units_build(p, &u, err));
    evo_state_t s = {.p = p, .o = o, .h = h, .L = p->nlayers};
    ba_status st = BA_OK;
    s.parent = ba_malloc((size_t)s.L * sizeof *s.parent, err);
    if (!s.parent) st = BA_ERR_NOMEM;
    if (st == BA_OK && checkpoint) st = load_state(&s, checkpoint, err);
    else if (st == BA_OK) {
        /* Trial 1: the seed on all N samples. */
        if (!ba_problem_feasible(p, seed))
            st = ba_error_set(err, BA_ERR_INPUT, "evolution: the seed configuration breaks the budgets");
        memcpy(s.parent, seed, (size_t)s.L * sizeof *seed);
        ba_rng_seed(&s.rng, o->seed);
        if (st == BA_OK) st = h->evaluate(h->ctx, seed, 0, &s.parent_res, err);
        if (st == BA_OK) {
            s.parent_res.samples = o->nsamples;
            s.nevals++;
            s.parent_trial = 1;
            s.gen_first = s.next = 2;
            char *ck = evo_dump(state_json(&s, 0, 2, 2, &s.rng, s.parent, &s.parent_res, 1, 0));
            st = ck ? evo_store(h, 1, "complete", o->method, seed, &s.parent_res, ck, err)
                    : ba_error_set(err, BA_ERR_NOMEM, "evolution: out of memory writing a checkpoint");
            free(ck);
        }
    }
    while (st == BA_OK && s.gen < o->generations) {
        int stalled = 0;
        st = generation(&s, &u, &stalled, err);
        if (st != BA_OK || stalled) break; /* stalled: no configuration differs from the parent under the budgets */
        if (h->progress) h->progress(h->ctx, s.gen, o->generations, &s.parent_res, s.parent);
    }
    if (st == BA_OK) {
        out->choice = s.parent;
        s.parent = NULL;
        out->res = s.parent_res;
        out->trial = s.parent_trial;
        out->ntrials = s.next - 1;
        out->nevals = s.nevals;
    }
    free(s.parent);
    free(s.cache);
    evo_units_free(&u);
    return st;
}
