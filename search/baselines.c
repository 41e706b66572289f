/* Baselines of SPEC §6: `uniform` (the widest single width meeting the
 * budgets), `random` (random feasible configurations, as many as evolution
 * would evaluate), and one configuration evaluated on its own (`ilp`). They
 * share evolution's trial store and checkpoints, so they resume the same way. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "search/evo.h"
#include "search/evo_internal.h"

ba_status ba_search_uniform_choice(const ba_problem_t *p, int *choice, int *bits, ba_error *err) {
    evo_units_t u;
    BA_TRY(evo_units_build(p, &u, err));
    int *lv = ba_calloc((size_t)u.n + 1, sizeof *lv, err);
    if (!lv) {
        evo_units_free(&u);
        return BA_ERR_NOMEM;
    }
    ba_status st = BA_ERR_INFEASIBLE;
    /* Distinct widths, descending: the widest one every unit offers and the budgets allow wins. */
    int widths[BA_BITS_MAX_CANDIDATES * 4], nwid = 0;
    for (int c = 0; c < p->ncand; c++) {
        int seen = 0;
        for (int i = 0; i < nwid; i++) seen |= widths[i] == p->bits[c];
        if (!seen && nwid < (int)(sizeof widths / sizeof *widths)) widths[nwid++] = p->bits[c];
    }
    for (int i = 1; i < nwid; i++)
        for (int j = i; j > 0 && widths[j - 1] < widths[j]; j--) {
            int t = widths[j];
            widths[j] = widths[j - 1], widths[j - 1] = t;
        }
    for (int i = 0; i < nwid && st != BA_OK; i++) {
        int ok = 1;
        for (int k = 0; k < u.n && ok; k++) {
            lv[k] = -1;
            for (int v = 0; v < u.nw[k]; v++)
                if (u.w[k * BA_BITS_MAX_CANDIDATES + v] == widths[i]) lv[k] = v;
            ok = lv[k] >= 0;
        }
        if (!ok) continue;
        evo_units_apply(p, &u, lv, choice);
        if (ba_problem_feasible(p, choice)) {
            *bits = widths[i];
            st = BA_OK;
        }
    }
    if (st != BA_OK)
        ba_error_set(
            err, BA_ERR_INFEASIBLE,
            "uniform: no single bit-width meets the budgets for every layer (try --method ilp, which mixes "
            "widths)");
    free(lv);
    evo_units_free(&u);
    return st;
}

int ba_search_random_choice(const ba_problem_t *p, ba_rng_t *rng, int *choice) {
    evo_units_t u;
    ba_error e;
    if (evo_units_build(p, &u, &e) != BA_OK) return -1;
    int n = u.n, r = 0;
    int *lv = malloc(((size_t)n + 1) * 2 * sizeof *lv);
    if (!lv) {
        evo_units_free(&u);
        return -1;
    }
    int *order = lv + n + 1;
    for (int k = 0; k < n; k++) lv[k] = (int)ba_rng_below(rng, (uint64_t)u.nw[k]);
    evo_units_apply(p, &u, lv, choice);
    while (!ba_problem_feasible(p, choice)) {
        int cnt = 0;
        for (int k = 0; k < n; k++) cnt += lv[k] > 0;
        if (!cnt) {
            r = -1;
            break;
        }
        int pick = (int)ba_rng_below(rng, (uint64_t)cnt);
        for (int k = 0; k < n; k++)
            if (lv[k] > 0 && pick-- == 0) {
                evo_units_set(p, &u, choice, k, --lv[k]);
                break;
            }
    }
    if (r == 0) {
        for (int k = 0; k < n; k++) order[k] = k;
        for (int i = n - 1; i > 0; i--) {
            int j = (int)ba_rng_below(rng, (uint64_t)i + 1), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        for (int i = 0; i < n; i++) {
            int k = order[i];
            if (lv[k] + 1 >= u.nw[k]) continue;
            evo_units_set(p, &u, choice, k, lv[k] + 1);
            if (ba_problem_feasible(p, choice))
                lv[k]++;
            else
                evo_units_set(p, &u, choice, k, lv[k]);
        }
    }
    free(lv);
    evo_units_free(&u);
    return r;
}

/* Checkpoint of random/single: {"kind", "i": draws done, "next", "rng", "best": {trial, choice, res} | null}.
 */
static char *simple_ckpt(const char *kind, int64_t i, int64_t next, const ba_rng_t *rng, int64_t best_trial,
                         const int *best, const ba_eval_result_t *best_res, int L) {
    json_t *b = best ? json_pack("{s:I, s:o, s:o}", "trial", (json_int_t)best_trial, "choice",
                                 evo_choice_json(best, L), "res", evo_res_json(best_res))
                     : json_null();
    return evo_dump(json_pack("{s:s, s:I, s:I, s:o, s:o}", "kind", kind, "i", (json_int_t)i, "next",
                              (json_int_t)next, "rng", evo_rng_json(rng), "best", b));
}

static ba_status parse_simple(const char *text, const char *kind, int L, int64_t *i, int64_t *next,
                              ba_rng_t *rng, int64_t *best_trial, int *best, ba_eval_result_t *best_res,
                              int *has_best, ba_error *err) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    const char *k = j ? json_string_value(json_object_get(j, "kind")) : NULL;
    const json_t *b = j ? json_object_get(j, "best") : NULL;
    int bad = !j || !k || strcmp(k, kind) != 0 || !json_is_integer(json_object_get(j, "i")) ||
              !json_is_integer(json_object_get(j, "next")) || evo_rng_parse(json_object_get(j, "rng"), rng) ||
              !b;
    *has_best = 0;
    if (!bad && json_is_object(b)) {
        bad = !json_is_integer(json_object_get(b, "trial")) ||
              evo_choice_parse(json_object_get(b, "choice"), best, L) ||
              evo_res_parse(json_object_get(b, "res"), best_res);
        *has_best = !bad;
        if (!bad) *best_trial = json_integer_value(json_object_get(b, "trial"));
    }
    if (!bad) {
        *i = json_integer_value(json_object_get(j, "i"));
        *next = json_integer_value(json_object_get(j, "next"));
    }
    json_decref(j);
    return bad ? evo_bad_checkpoint(err, "not a state of this method") : BA_OK;
}

ba_status ba_search_random(const ba_problem_t *p, const ba_search_opts_t *o, const ba_search_hooks_t *h,
                           const char *checkpoint, ba_search_result_t *out, ba_error *err) {
    memset(out, 0, sizeof *out);
    int L = p->nlayers;
    int64_t total = 1 + (int64_t)o->generations * o->offspring;
    int *best = ba_malloc((size_t)L * sizeof *best, err);
    int *cur = ba_malloc((size_t)L * sizeof *cur, err);
    if (!best || !cur) {
        free(best);
        free(cur);
        return BA_ERR_NOMEM;
    }
    ba_rng_t rng;
    ba_rng_seed(&rng, o->seed);
    int64_t i = 0, next = 1, best_trial = -1, nevals = 0;
    ba_eval_result_t best_res = {0};
    int has_best = 0;
    ba_status st = BA_OK;
    if (checkpoint)
        st = parse_simple(checkpoint, "random", L, &i, &next, &rng, &best_trial, best, &best_res, &has_best,
                          err);
    for (; st == BA_OK && i < total; i++) {
        if (ba_search_random_choice(p, &rng, cur) != 0) {
            st = ba_error_set(err, BA_ERR_INFEASIBLE, "random: the lowest widths already break a budget");
            break;
        }
        ba_eval_result_t r;
        st = h->evaluate(h->ctx, cur, 0, &r, err);
        if (st != BA_OK) break;
        r.samples = o->nsamples;
        nevals++;
        if (isfinite(r.objective) &&
            (!has_best || r.objective < best_res.objective)) { /* failed: never best */
            memcpy(best, cur, (size_t)L * sizeof *best);
            best_res = r, best_trial = next, has_best = 1;
        }
        char *ck =
            simple_ckpt("random", i + 1, next + 1, &rng, best_trial, has_best ? best : NULL, &best_res, L);
        st = ck ? evo_store(h, next, "complete", o->method, cur, &r, ck, err)
                : ba_error_set(err, BA_ERR_NOMEM, "random: out of memory writing a checkpoint");
        free(ck);
        next++;
        if (st == BA_OK && h->progress) /* no best yet when every draw so far failed */
            h->progress(h->ctx, i + 1, total, has_best ? &best_res : NULL, has_best ? best : cur);
    }
    if (st == BA_OK && !has_best)
        st = total > 0 ? ba_error_set(
                             err, BA_ERR_RUNTIME,
                             "random: every configuration drawn gave a non-finite output (all trials failed)")
                       : ba_error_set(err, BA_ERR_INPUT, "random: no configuration drawn");
    if (st == BA_OK) {
        out->choice = best;
        best = NULL;
        out->res = best_res;
        out->trial = best_trial;
        out->ntrials = next - 1;
        out->nevals = nevals;
    }
    free(best);
    free(cur);
    return st;
}

ba_status ba_search_single(const ba_problem_t *p, const int *choice, const ba_search_opts_t *o,
                           const ba_search_hooks_t *h, const char *checkpoint, ba_search_result_t *out,
                           ba_error *err) {
    memset(out, 0, sizeof *out);
    int L = p->nlayers;
    int *best = ba_malloc((size_t)L * sizeof *best, err);
    if (!best) return BA_ERR_NOMEM;
    ba_rng_t rng;
    ba_rng_seed(&rng, o->seed);
    int64_t i = 0, next = 1, trial = -1;
    int has = 0;
    ba_eval_result_t r = {0};
    ba_status st = BA_OK;
    if (checkpoint) st = parse_simple(checkpoint, "single", L, &i, &next, &rng, &trial, best, &r, &has, err);
    if (st == BA_OK && !has) {
        if (!ba_problem_feasible(p, choice))
            st = ba_error_set(err, BA_ERR_INPUT, "%s: the configuration breaks the budgets", o->method);
        if (st == BA_OK) st = h->evaluate(h->ctx, choice, 0, &r, err);
        if (st == BA_OK && !isfinite(r.objective)) {
            /* The one configuration failed: stored as such (no checkpoint), and no result. */
            r.samples = o->nsamples;
            st = evo_store(h, 1, "failed", o->method, choice, &r, NULL, err);
            if (st == BA_OK)
                st = ba_error_set(err, BA_ERR_RUNTIME,
                                  "%s: the configuration's quantized output is not finite (trial 1 failed)",
                                  o->method);
        }
        if (st == BA_OK) {
            r.samples = o->nsamples;
            memcpy(best, choice, (size_t)L * sizeof *best);
            trial = 1, next = 2;
            char *ck = simple_ckpt("single", 1, 2, &rng, 1, best, &r, L);
            st = ck ? evo_store(h, 1, "complete", o->method, choice, &r, ck, err)
                    : ba_error_set(err, BA_ERR_NOMEM, "%s: out of memory writing a checkpoint", o->method);
            free(ck);
            out->nevals = 1;
        }
    }
    if (st == BA_OK) {
        out->choice = best;
        best = NULL;
        out->res = r;
        out->trial = trial;
        out->ntrials = next - 1;
        if (h->progress) h->progress(h->ctx, 1, 1, &r, out->choice);
    }
    free(best);
    return st;
}
