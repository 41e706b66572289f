/* The bit-allocation problem: tables, pins, ties, and evaluating a choice.
 * Candidates are stored flat, layer after layer, with bits ascending inside a
 * layer, so every solver and the tests index them the same way. */
#include "search/problem.h"

#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ba_problem_free(ba_problem_t *p) {
    if (!p) return;
    if (p->names)
        for (int l = 0; l < p->nlayers; l++) free(p->names[l]);
    free(p->names);
    free(p->start);
    free(p->bits);
    free(p->cost);
    for (int j = 0; j < p->nbudgets; j++) free(p->coef[j]);
    free(p->pin);
    free(p->tie);
    free(p->perm);
    free(p);
}

ba_status ba_problem_create(int nlayers, const char *const *names, const int *ncand, const int *bits,
                            const double *cost, ba_problem_t **out, ba_error *err) {
    *out = NULL;
    if (nlayers <= 0) return ba_error_set(err, BA_ERR_INPUT, "problem: no layers to allocate bits to");
    ba_problem_t *p = ba_calloc(1, sizeof *p, err);
    if (!p) return err->code;
    p->nlayers = nlayers;
    if (!(p->names = ba_calloc((size_t)nlayers, sizeof *p->names, err)) ||
        !(p->start = ba_calloc((size_t)nlayers + 1, sizeof *p->start, err)) ||
        !(p->pin = ba_calloc((size_t)nlayers, sizeof *p->pin, err)) ||
        !(p->tie = ba_calloc((size_t)nlayers, sizeof *p->tie, err)))
        goto fail;
    for (int l = 0; l < nlayers; l++) {
        if (ncand[l] <= 0 || ncand[l] > BA_BITS_MAX_CANDIDATES) {
            ba_error_set(err, BA_ERR_INPUT, "layer %s: %d candidate widths (expected 1..%d)", names[l],
                         ncand[l], BA_BITS_MAX_CANDIDATES);
            goto fail;
        }
        p->start[l + 1] = p->start[l] + ncand[l];
        p->tie[l] = -1;
        if (!(p->names[l] = ba_strdup(names[l], err))) goto fail;
    }
    p->ncand = p->start[nlayers];
    if (!(p->bits = ba_malloc((size_t)p->ncand * sizeof *p->bits, err)) ||
        !(p->cost = ba_malloc((size_t)p->ncand * sizeof *p->cost, err)) ||
        !(p->perm = ba_malloc((size_t)p->ncand * sizeof *p->perm, err)))
        goto fail;
    /* Sort each layer's candidates by bits (insertion sort: at most 9), remembering
     * where each input entry went so budgets given in input order follow. */
    for (int l = 0; l < nlayers; l++) {
        int s = p->start[l], n = ncand[l];
        for (int i = 0; i < n; i++) {
            int b = bits[s + i], at = i;
            if (!ba_bits_valid(b)) {
                ba_error_set(err, BA_ERR_INPUT, "layer %s: %d is not a supported width (" BA_BITS_WIDTHS ")",
                             names[l], b);
                goto fail;
            }
            if (!isfinite(cost[s + i])) {
                ba_error_set(err, BA_ERR_INPUT, "layer %s: cost of %d bits is not a finite number", names[l],
                             b);
                goto fail;
            }
            while (at > 0 && p->bits[s + at - 1] > b) {
                p->bits[s + at] = p->bits[s + at - 1];
                p->cost[s + at] = p->cost[s + at - 1];
                at--;
            }
            if (at > 0 && p->bits[s + at - 1] == b) {
                ba_error_set(err, BA_ERR_INPUT, "layer %s: %d bits listed twice", names[l], b);
                goto fail;
            }
            p->bits[s + at] = b;
            p->cost[s + at] = cost[s + i];
        }
        /* perm[input index] = sorted index, recovered by matching bits (unique per layer). */
        for (int i = 0; i < n; i++)
            for (int k = 0; k < n; k++)
                if (p->bits[s + k] == bits[s + i]) p->perm[s + i] = s + k;
    }
    *out = p;
    return BA_OK;
fail:
    ba_problem_free(p);
    return err->code;
}

ba_status ba_problem_add_budget(ba_problem_t *p, ba_budget_kind_t kind, double limit, double offset,
                                const double *coef, ba_error *err) {
    for (int j = 0; j < p->nbudgets; j++)
        if (p->kind[j] == kind)
            return ba_error_set(err, BA_ERR_INPUT, "budget %s: given twice", ba_budget_key(kind));
    if (p->nbudgets >= BA_BUDGET_NKINDS) return ba_error_set(err, BA_ERR_INPUT, "problem: too many budgets");
    if (!(limit > 0) || !isfinite(limit) || !isfinite(offset))
        return ba_error_set(err, BA_ERR_INPUT, "budget %s: limit must be a finite number > 0",
                            ba_budget_key(kind));
    double *c = ba_malloc((size_t)p->ncand * sizeof *c, err);
    if (!c) return err->code;
    for (int i = 0; i < p->ncand; i++) {
        if (!isfinite(coef[i])) {
            free(c);
            return ba_error_set(err, BA_ERR_INPUT, "budget %s: coefficient of candidate %d is not finite",
                                ba_budget_key(kind), i);
        }
        c[p->perm[i]] = coef[i];
    }
    int j = p->nbudgets++;
    p->kind[j] = kind;
    p->limit[j] = limit;
    p->offset[j] = offset;
    p->coef[j] = c;
    return BA_OK;
}

int ba_problem_find(const ba_problem_t *p, int l, int bits) {
    for (int k = p->start[l]; k < p->start[l + 1]; k++)
        if (p->bits[k] == bits) return k - p->start[l];
    return -1;
}

static void format_bits(const ba_problem_t *p, int l, char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = '\0';
    for (int k = p->start[l]; k < p->start[l + 1] && len + 8 < cap; k++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%d", k > p->start[l] ? "," : "", p->bits[k]);
}

ba_status ba_problem_pin(ba_problem_t *p, const char *spec, ba_error *err) {
    const char *eq = strrchr(spec, '=');
    if (!eq || eq == spec) return ba_error_set(err, BA_ERR_INPUT, "--pin %s: expected NAME_GLOB=BITS", spec);
    char *end;
    long b = strtol(eq + 1, &end, 10);
    if (end == eq + 1 || *end || !ba_bits_valid((int)b))
        return ba_error_set(err, BA_ERR_INPUT, "--pin %s: '%s' is not a supported width (" BA_BITS_WIDTHS ")",
                            spec, eq + 1);
    size_t gl = (size_t)(eq - spec);
    char *glob = ba_malloc(gl + 1, err);
    if (!glob) return err->code;
    memcpy(glob, spec, gl);
    glob[gl] = '\0';
    int matched = 0;
    ba_status st = BA_OK;
    /* Validate every match before changing anything, so a failed pin leaves p as it was. */
    for (int l = 0; l < p->nlayers && st == BA_OK; l++) {
        if (fnmatch(glob, p->names[l], 0) != 0) continue;
        matched++;
        char cands[64];
        format_bits(p, l, cands, sizeof cands);
        if (ba_problem_find(p, l, (int)b) < 0)
            st =
                ba_error_set(err, BA_ERR_INPUT,
                             "--pin %s: layer %s has no %ld-bit candidate (candidates %s; add %ld to --bits)",
                             spec, p->names[l], b, cands, b);
        else if (p->pin[l] && p->pin[l] != b)
            st = ba_error_set(err, BA_ERR_INPUT, "--pin %s: layer %s is already pinned to %d bits", spec,
                              p->names[l], p->pin[l]);
    }
    if (st == BA_OK && !matched)
        st = ba_error_set(err, BA_ERR_INPUT, "--pin %s: no layer matches '%s'", spec, glob);
    if (st == BA_OK)
        for (int l = 0; l < p->nlayers; l++)
            if (fnmatch(glob, p->names[l], 0) == 0) p->pin[l] = (int)b;
    free(glob);
    return st;
}

/* Members of tie groups are linked by their root (smallest index); merging
 * relabels, which is O(L) per tie and fine for a handful of --tie flags. */
ba_status ba_problem_tie(ba_problem_t *p, const char *glob, ba_error *err) {
    int root = -1, matched = 0;
    for (int l = 0; l < p->nlayers; l++) {
        if (fnmatch(glob, p->names[l], 0) != 0) continue;
        matched++;
        int r = p->tie[l] >= 0 ? p->tie[l] : l;
        if (root < 0 || r < root) root = r;
    }
    if (!matched) return ba_error_set(err, BA_ERR_INPUT, "--tie %s: no layer matches", glob);
    /* Group after the merge: matched layers plus every member of groups they belong to. */
    int *old = ba_malloc((size_t)p->nlayers * sizeof *old, err);
    if (!old) return err->code;
    memcpy(old, p->tie, (size_t)p->nlayers * sizeof *old);
    for (int l = 0; l < p->nlayers; l++) {
        if (fnmatch(glob, p->names[l], 0) != 0) continue;
        int r = old[l];
        if (r >= 0)
            for (int m = 0; m < p->nlayers; m++)
                if (old[m] == r) p->tie[m] = root;
        p->tie[l] = root;
    }
    if (matched == 1 && old[root] < 0) p->tie[root] = -1; /* a group of one is no tie */
    free(old);
    ba_status st = ba_problem_check(p, err);
    if (st != BA_OK) ba_error_prefix(err, "--tie %s", glob);
    return st;
}

ba_status ba_problem_check(const ba_problem_t *p, ba_error *err) {
    for (int r = 0; r < p->nlayers; r++) {
        if (p->tie[r] != r) continue;
        /* Widths common to the whole group, and its pin. */
        int common_n = 0, common[BA_BITS_MAX_CANDIDATES], pin = 0, pin_layer = -1;
        for (int k = p->start[r]; k < p->start[r + 1]; k++) common[common_n++] = p->bits[k];
        for (int l = r; l < p->nlayers; l++) {
            if (p->tie[l] != r) continue;
            int keep = 0;
            for (int i = 0; i < common_n; i++)
                if (ba_problem_find(p, l, common[i]) >= 0) common[keep++] = common[i];
            common_n = keep;
            if (common_n == 0)
                return ba_error_set(err, BA_ERR_INPUT,
                                    "tied layers %s and %s have no candidate width in common", p->names[r],
                                    p->names[l]);
            if (p->pin[l]) {
                if (pin && pin != p->pin[l])
                    return ba_error_set(err, BA_ERR_INPUT,
                                        "tied layers %s and %s are pinned to %d and %d bits",
                                        p->names[pin_layer], p->names[l], pin, p->pin[l]);
                pin = p->pin[l];
                pin_layer = l;
            }
        }
        if (pin) {
            int ok = 0;
            for (int i = 0; i < common_n; i++) ok |= common[i] == pin;
            if (!ok)
                return ba_error_set(err, BA_ERR_INPUT,
                                    "layer %s is pinned to %d bits, which a layer tied to it does not have",
                                    p->names[pin_layer], pin);
        }
    }
    return BA_OK;
}

double ba_problem_objective(const ba_problem_t *p, const int *choice) {
    long double s = 0;
    for (int l = 0; l < p->nlayers; l++) s += p->cost[p->start[l] + choice[l]];
    return (double)s;
}

double ba_problem_budget_value(const ba_problem_t *p, int j, const int *choice) {
    long double s = p->offset[j];
    for (int l = 0; l < p->nlayers; l++) s += p->coef[j][p->start[l] + choice[l]];
    return (double)s;
}

int ba_budget_holds(double value, double limit) {
    return value <= limit + BA_BUDGET_REL_EPS * fabs(limit);
}

int ba_problem_feasible(const ba_problem_t *p, const int *choice) {
    for (int l = 0; l < p->nlayers; l++) {
        int n = p->start[l + 1] - p->start[l];
        if (choice[l] < 0 || choice[l] >= n) return 0;
        int b = p->bits[p->start[l] + choice[l]];
        if (p->pin[l] && b != p->pin[l]) return 0;
        if (p->tie[l] >= 0 && b != p->bits[p->start[p->tie[l]] + choice[p->tie[l]]]) return 0;
    }
    for (int j = 0; j < p->nbudgets; j++)
        if (!ba_budget_holds(ba_problem_budget_value(p, j, choice), p->limit[j])) return 0;
    return 1;
}
