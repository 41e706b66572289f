/* The exact ILP on GLPK. Tied layers are merged into one "group" with one
 * binary per common width (y[g,v]), so ties cost no equality rows and pins
 * just shrink a group to one column. Rows: Σ_v y[g,v] = 1 per group, one per budget.
 *
 * Exactness: GLPK works with tolerances (a budget row may be exceeded by
 * ~1e-7 relative, an objective difference below ~1e-7 may be ignored). So
 *  - each column's cost and budget coefficient is shifted by its group's
 *    minimum (an exact reformulation, constants move to the right-hand side)
 *    and each row / the objective is scaled to a largest coefficient of 1;
 *  - every optimum is re-checked in long double against the original tables
 *    (ba_problem_feasible); a choice that breaks a budget by more than
 *    BA_BUDGET_REL_EPS is cut off by a no-good row (Σ y over its columns <= G-1,
 *    which removes that one configuration and nothing else) and the ILP re-solved;
 *  - GLPK's LP optimum is only optimal to reduced costs of -1e-7: over a thousand
 *    columns its bound can sit above the true one by more than the gap to the
 *    integer optimum, and branch-and-bound then prunes the optimum (the whole
 *    model handed to GLPK returned a configuration 1e-5 worse than the optimum on
 *    2 of the 10 bench instances). The root LP is polished at 1e-11, and the core
 *    below is rescaled so that its differences are far above GLPK's tolerances.
 *
 * Speed (bench/ilp.c, 1,000 layers × 7 widths × 3 budgets): exact reductions
 * before branching —
 *  - a column that costs strictly more than another of its group and needs no
 *    less of any budget is in no optimal choice: fixed to 0 (mark_dominated);
 *  - after the root LP, the incumbent (the LP optimum rounded, repaired and its
 *    slack spent greedily, or the sweep's previous optimum) and the Lagrangian
 *    bound at the LP duals drop every column whose bound exceeds the incumbent
 *    (reduced-cost fixing, model_reduce); what is left (the core, typically a
 *    few hundred groups of 2–4 widths) goes to GLPK in an incremental encoding
 *    whose branches split a group's widths in two (core_build); a short probe
 *    of the core finds better incumbents, each shrinking the core again;
 *  - the core's proof is an own branch-and-bound (core_bnb) on GLPK's LP: each node
 *    re-solved by the dual simplex from the last basis, best bound first with diving,
 *    reduced-cost fixing and a rounding of the LP at every node, Driebeck-Tomlin
 *    branching on small cores; glp_intopt spent 2-3x as long per node.
 * tests/test_ilp.c checks the result against enumeration, against the whole model
 * (ba_ilp_opts_t.plain) and against CBC. */
#include "search/ilp.h"

#include "core/util.h"

#include <float.h>
#include <glpk.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How often an optimum may be cut off for breaking a budget by GLPK's tolerance
 * before giving up; in practice 0 or 1 cut is needed. */
#define MAX_NOGOOD_CUTS 1000
/* tol_obj of glp_iocp: relative slack under which a node's LP bound no longer
 * counts as better than the incumbent. GLPK's default (1e-7) could hide a better
 * choice; 1e-10 is still well above double rounding of the scaled objective. */
#define ILP_TOL_OBJ 1e-10

ba_ilp_opts_t ba_ilp_opts_default(void) {
    ba_ilp_opts_t o = {.time_limit_s = BA_ILP_DEFAULT_TIME_LIMIT_S};
    return o;
}

void ba_solution_free(ba_solution_t *s) {
    if (!s) return;
    free(s->choice);
    free(s->bits);
    s->choice = s->bits = NULL;
}

/* ---- groups: tie groups and untied layers ---- */

typedef struct {
    const ba_problem_t *p;
    int ngroups;
    int *group_of; /* [nlayers] group index */
    int *gstart;   /* [ngroups+1] columns of group g: gstart[g] .. gstart[g+1]-1 (0-based) */
    int ncols;
    int *col_bits;                           /* [ncols] width of the column */
    int *col_group;                          /* [ncols] */
    long double *col_cost;                   /* [ncols] Σ Ω over the group's layers */
    long double *col_coef[BA_BUDGET_NKINDS]; /* [ncols] Σ A over the group's layers */
} groups_t;

static void groups_free(groups_t *g) {
    free(g->group_of);
    free(g->gstart);
    free(g->col_bits);
    free(g->col_group);
    free(g->col_cost);
    for (int j = 0; j < BA_BUDGET_NKINDS; j++) free(g->col_coef[j]);
}

/* Allowed widths of the group rooted at r: its root's candidates present in
 * every member, and only the pin when a member is pinned. */
static int in_group(const ba_problem_t *p, int r, int l) {
    return p->tie[r] < 0 ? l == r : p->tie[l] == r;
}

static int group_widths(const ba_problem_t *p, int r, int *w) {
    int n = 0, pin = 0;
    for (int k = p->start[r]; k < p->start[r + 1]; k++) w[n++] = p->bits[k];
    for (int l = r; l < p->nlayers; l++) {
        if (!in_group(p, r, l)) continue;
        if (p->pin[l]) pin = p->pin[l];
        int keep = 0;
        for (int i = 0; i < n; i++)
            if (ba_problem_find(p, l, w[i]) >= 0) w[keep++] = w[i];
        n = keep;
    }
    if (pin) {
        int ok = 0;
        for (int i = 0; i < n; i++) ok |= w[i] == pin;
        w[0] = pin;
        n = ok ? 1 : 0;
    }
    return n;
}

static ba_status groups_build(const ba_problem_t *p, groups_t *g, ba_error *err) {
    memset(g, 0, sizeof *g);
    g->p = p;
    int L = p->nlayers;
    if (!(g->group_of = ba_malloc((size_t)L * sizeof(int), err)) ||
        !(g->gstart = ba_malloc(((size_t)L + 1) * sizeof(int), err)) ||
        !(g->col_bits = ba_malloc((size_t)p->ncand * sizeof(int), err)) ||
        !(g->col_group = ba_malloc((size_t)p->ncand * sizeof(int), err)) ||
        !(g->col_cost = ba_calloc((size_t)p->ncand, sizeof(long double), err)))
        goto fail;
    for (int j = 0; j < p->nbudgets; j++)
        if (!(g->col_coef[j] = ba_calloc((size_t)p->ncand, sizeof(long double), err))) goto fail;
    int c = 0;
    for (int r = 0; r < L; r++) {
        if (p->tie[r] >= 0 && p->tie[r] != r) continue; /* not a root */
        int w[BA_BITS_MAX_CANDIDATES], n = group_widths(p, r, w);
        if (n == 0) {
            ba_error_set(err, BA_ERR_INPUT, "layer %s: pins and ties leave no candidate width", p->names[r]);
            goto fail;
        }
        int gi = g->ngroups++;
        g->gstart[gi] = c;
        for (int i = 0; i < n; i++) {
            g->col_bits[c + i] = w[i];
            g->col_group[c + i] = gi;
        }
        for (int l = r; l < L; l++) {
            if (!in_group(p, r, l)) continue;
            g->group_of[l] = gi;
            for (int i = 0; i < n; i++) {
                int k = p->start[l] + ba_problem_find(p, l, w[i]);
                g->col_cost[c + i] += p->cost[k];
                for (int j = 0; j < p->nbudgets; j++) g->col_coef[j][c + i] += p->coef[j][k];
            }
        }
        c += n;
    }
    g->gstart[g->ngroups] = c;
    g->ncols = c;
    return BA_OK;
fail:
    groups_free(g);
    return err->code;
}

/* Column chosen per group -> candidate index per layer. */
static void groups_decode(const groups_t *g, const int *col_of_group, int *choice) {
    const ba_problem_t *p = g->p;
    for (int l = 0; l < p->nlayers; l++)
        choice[l] = ba_problem_find(p, l, g->col_bits[col_of_group[g->group_of[l]]]);
}

/* Smallest achievable value of budget j: per group the cheapest column. */
static long double groups_min_budget(const groups_t *g, int j, int *col_of_group) {
    long double s = g->p->offset[j];
    for (int gi = 0; gi < g->ngroups; gi++) {
        int best = g->gstart[gi];
        for (int c = best + 1; c < g->gstart[gi + 1]; c++)
            if (g->col_coef[j][c] < g->col_coef[j][best]) best = c;
        s += g->col_coef[j][best];
        if (col_of_group) col_of_group[gi] = best;
    }
    return s;
}

double ba_problem_min_budget(const ba_problem_t *p, int j, int *choice) {
    groups_t g;
    ba_error e;
    if (ba_problem_check(p, &e) != BA_OK || groups_build(p, &g, &e) != BA_OK) return NAN;
    int *cog = malloc((size_t)g.ngroups * sizeof *cog);
    double v = NAN;
    if (cog) {
        v = (double)groups_min_budget(&g, j, cog);
        if (choice) groups_decode(&g, cog, choice);
    }
    free(cog);
    groups_free(&g);
    return v;
}

/* ---- the GLPK model ---- */

typedef struct {
    groups_t g;
    glp_prob *lp;
    int budget_row[BA_BUDGET_NKINDS];        /* GLPK row of budget j, 0 when the row is constant */
    long double row_shift[BA_BUDGET_NKINDS]; /* Σ_g min coef + offset: moved to the rhs */
    double row_scale[BA_BUDGET_NKINDS];      /* the row is divided by this */
    double limit[BA_BUDGET_NKINDS];          /* current limits (a sweep changes one) */
    int *start_col;                          /* [ngroups] incumbent handed to branch-and-bound, or NULL */
    int start_used;
    int have_basis;              /* the LP holds a basis from an earlier solve */
    double *a[BA_BUDGET_NKINDS]; /* [ncols] budget row coefficients as given to GLPK (0 when no row) */
    double *xbuf;                /* [ncols+1] for glp_ios_heur_sol */
    double *obj;                 /* [ncols] objective coefficients as given to GLPK */
    unsigned char *off;          /* [ncols] 1: dominated within its group, fixed to 0 for every limit */
    unsigned char *cut;          /* [ncols] 1: off, or left out of this solve's core by reduced cost */
    int *inc, *tmp;              /* [ngroups] incumbent and scratch choices of the reduction */
    double *val;                 /* [ncols] Lagrangian value of each column */
    int plain;                   /* no reductions (ba_ilp_opts_t.plain) */
} model_t;

static void model_free(model_t *m) {
    if (m->lp) glp_delete_prob(m->lp);
    groups_free(&m->g);
    free(m->start_col);
    free(m->xbuf);
    free(m->obj);
    free(m->off);
    free(m->cut);
    free(m->inc);
    free(m->tmp);
    free(m->val);
    for (int j = 0; j < BA_BUDGET_NKINDS; j++) free(m->a[j]);
}

/* Sets budget j's row bound from m->limit[j]. Returns 0 when the limit cannot be
 * met even by the cheapest column of every group (the row is then left as is). */
static int model_set_limit(model_t *m, int j) {
    long double rhs = (long double)m->limit[j] + BA_BUDGET_REL_EPS * fabs(m->limit[j]) - m->row_shift[j];
    if (rhs < 0) return 0;
    if (m->budget_row[j])
        glp_set_row_bnds(m->lp, m->budget_row[j], GLP_UP, 0.0, (double)(rhs / m->row_scale[j]));
    return 1;
}

static int model_start_basis(model_t *m);
static int model_feasible(const model_t *m, const int *choice);

/* A column dominated within its group — another costs strictly less (on the exact
 * long double sums) and needs no more of any budget — is in no optimal choice:
 * swapping it for the other keeps every budget and lowers Σ Ω. It is fixed to 0
 * for every limit. Strictly: a column that only ties in cost stays, so the set of
 * optimal choices (and which one is returned) is that of the whole model. */
static void mark_dominated(model_t *m) {
    const groups_t *g = &m->g;
    const ba_problem_t *p = g->p;
    for (int gi = 0; gi < g->ngroups; gi++)
        for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++)
            for (int d = g->gstart[gi]; d < g->gstart[gi + 1] && !m->off[c]; d++) {
                if (d == c || !(g->col_cost[d] < g->col_cost[c])) continue;
                int no_more = 1;
                for (int j = 0; j < p->nbudgets && no_more; j++)
                    no_more = g->col_coef[j][d] <= g->col_coef[j][c];
                if (no_more) m->off[c] = 1;
            }
    for (int c = 0; c < g->ncols; c++)
        if (m->off[c]) glp_set_col_bnds(m->lp, c + 1, GLP_FX, 0.0, 0.0);
}

static ba_status model_build(const ba_problem_t *p, int plain, model_t *m, ba_error *err) {
    memset(m, 0, sizeof *m);
    m->plain = plain;
    BA_TRY(groups_build(p, &m->g, err));
    groups_t *g = &m->g;
    size_t nc = (size_t)g->ncols, ng = (size_t)g->ngroups;
    if (!(m->xbuf = ba_calloc(nc + 1, sizeof *m->xbuf, err)) ||
        !(m->obj = ba_calloc(nc, sizeof *m->obj, err)) || !(m->off = ba_calloc(nc, 1, err)) ||
        !(m->cut = ba_calloc(nc, 1, err)) || !(m->inc = ba_malloc(ng * sizeof *m->inc, err)) ||
        !(m->tmp = ba_malloc(ng * sizeof *m->tmp, err)) || !(m->val = ba_malloc(nc * sizeof *m->val, err)))
        goto fail;
    m->lp = glp_create_prob();
    glp_set_obj_dir(m->lp, GLP_MIN);
    glp_add_cols(m->lp, g->ncols);
    /* Objective: cost minus the group's cheapest, scaled to a largest coefficient of 1. */
    long double omax = 0;
    double *obj = ba_malloc((size_t)g->ncols * sizeof *obj, err);
    if (!obj) goto fail;
    for (int gi = 0; gi < g->ngroups; gi++) {
        long double mn = g->col_cost[g->gstart[gi]];
        for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++) mn = fminl(mn, g->col_cost[c]);
        for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++) {
            obj[c] = (double)(g->col_cost[c] - mn);
            if (obj[c] > omax) omax = obj[c];
        }
    }
    for (int c = 0; c < g->ncols; c++) {
        glp_set_col_kind(m->lp, c + 1, GLP_BV);
        m->obj[c] = omax > 0 ? obj[c] / (double)omax : 0.0;
        glp_set_obj_coef(m->lp, c + 1, m->obj[c]);
    }
    free(obj);
    if (!plain) mark_dominated(m);
    /* One-choice rows. */
    int *ind = ba_malloc(((size_t)g->ncols + 1) * sizeof *ind, err);
    double *val = ba_malloc(((size_t)g->ncols + 1) * sizeof *val, err);
    if (!ind || !val) {
        free(ind);
        free(val);
        goto fail;
    }
    glp_add_rows(m->lp, g->ngroups);
    for (int gi = 0; gi < g->ngroups; gi++) {
        int n = 0;
        for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++) ind[++n] = c + 1, val[n] = 1.0;
        glp_set_mat_row(m->lp, gi + 1, n, ind, val);
        glp_set_row_bnds(m->lp, gi + 1, GLP_FX, 1.0, 1.0);
    }
    /* Budget rows: coefficient minus the group's smallest, scaled to a largest of 1. */
    for (int j = 0; j < p->nbudgets; j++) {
        long double shift = p->offset[j], amax = 0;
        for (int gi = 0; gi < g->ngroups; gi++) {
            long double mn = g->col_coef[j][g->gstart[gi]];
            for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++) mn = fminl(mn, g->col_coef[j][c]);
            shift += mn;
            for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++)
                amax = fmaxl(amax, g->col_coef[j][c] - mn);
        }
        m->row_shift[j] = shift;
        m->row_scale[j] = amax > 0 ? (double)amax : 1.0;
        m->limit[j] = p->limit[j];
        if (amax == 0) continue; /* every choice gives the same value: no row */
        if (!(m->a[j] = ba_calloc((size_t)g->ncols, sizeof(double), err))) {
            free(ind);
            free(val);
            goto fail;
        }
        int n = 0;
        for (int gi = 0; gi < g->ngroups; gi++) {
            long double mn = g->col_coef[j][g->gstart[gi]];
            for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++) mn = fminl(mn, g->col_coef[j][c]);
            for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++) {
                double a = (double)((g->col_coef[j][c] - mn) / amax);
                m->a[j][c] = a;
                if (a != 0) ind[++n] = c + 1, val[n] = a;
            }
        }
        m->budget_row[j] = glp_add_rows(m->lp, 1);
        glp_set_mat_row(m->lp, m->budget_row[j], n, ind, val);
    }
    free(ind);
    free(val);
    return BA_OK;
fail:
    model_free(m);
    return err->code;
}

/* The basis of the problem without budgets: per group its cheapest column basic
 * (the one-choice row nonbasic), budget rows' slacks basic. Every reduced cost
 * is then cost - min >= 0, so the basis is dual feasible and the dual simplex
 * only has to repair the few violated budget rows: a handful of pivots instead
 * of a cold start over thousands of columns. */
/* Per group the column minimising cost + λ·Σ_j a_j (scaled rows); returns
 * whether that choice meets every budget row at its current bound. */
static int lagrange_pick(const model_t *m, double lam, int *pick) {
    const groups_t *g = &m->g;
    const ba_problem_t *p = g->p;
    double rowv[BA_BUDGET_NKINDS] = {0};
    for (int gi = 0; gi < g->ngroups; gi++) {
        int best = g->gstart[gi];
        double bv = INFINITY;
        for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++) {
            if (m->off[c]) continue;
            double v = m->obj[c];
            for (int j = 0; j < p->nbudgets; j++)
                if (m->budget_row[j]) v += lam * m->a[j][c];
            if (v < bv) bv = v, best = c;
        }
        pick[gi] = best;
        for (int j = 0; j < p->nbudgets; j++)
            if (m->budget_row[j]) rowv[j] += m->a[j][best];
    }
    for (int j = 0; j < p->nbudgets; j++)
        if (m->budget_row[j] && rowv[j] > glp_get_row_ub(m->lp, m->budget_row[j])) return 0;
    return 1;
}

/* Starting basis: per group one column basic (its one-choice row nonbasic), the
 * budget rows' slacks basic. The column is the Lagrangian choice for the smallest
 * λ (bisection) that meets every budget: a primal feasible vertex close to the LP
 * optimum, so the simplex needs few pivots instead of one or more per group from a
 * cold start. When no λ meets the budgets, λ = 0: the cheapest columns, a dual
 * feasible basis (reduced costs cost - min >= 0) for the dual simplex. */
#define LAGRANGE_SEARCH_STEPS 60
static int model_start_basis(model_t *m) {
    const groups_t *g = &m->g;
    int *pick = malloc((size_t)g->ngroups * sizeof *pick);
    if (!pick) return GLP_DUALP; /* keep GLPK's basis: slower, still correct */
    double hi = 1, lo = 0;
    int found = 0;
    for (int t = 0; t < LAGRANGE_SEARCH_STEPS && !(found = lagrange_pick(m, hi, pick)); t++) lo = hi, hi *= 4;
    if (found) {
        for (int t = 0; t < LAGRANGE_SEARCH_STEPS; t++) {
            double mid = 0.5 * (lo + hi);
            if (lagrange_pick(m, mid, pick))
                hi = mid;
            else
                lo = mid;
        }
        lagrange_pick(m, hi, pick);
    } else {
        lagrange_pick(m, 0, pick);
    }
    int nrows = glp_get_num_rows(m->lp);
    for (int i = 1; i <= nrows; i++) glp_set_row_stat(m->lp, i, i <= g->ngroups ? GLP_NS : GLP_BS);
    for (int gi = 0; gi < g->ngroups; gi++)
        for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++)
            glp_set_col_stat(m->lp, c + 1, c == pick[gi] ? GLP_BS : GLP_NL);
    /* A feasible Lagrangian choice is also an incumbent for branch-and-bound. */
    if (found && !m->start_col) {
        m->start_col = pick;
        int *choice = malloc((size_t)g->p->nlayers * sizeof *choice);
        if (choice) {
            groups_decode(g, pick, choice);
            if (!model_feasible(m, choice)) free(m->start_col), m->start_col = NULL;
            free(choice);
        } else {
            free(m->start_col), m->start_col = NULL;
        }
    } else {
        free(pick);
    }
    return found ? GLP_PRIMAL : GLP_DUAL;
}

/* Whether choice (pins and ties hold by construction) meets the current limits,
 * checked in long double on the original tables. */
static int model_feasible(const model_t *m, const int *choice) {
    const ba_problem_t *p = m->g.p;
    for (int j = 0; j < p->nbudgets; j++)
        if (!ba_budget_holds(ba_problem_budget_value(p, j, choice), m->limit[j])) return 0;
    return 1;
}

/* Offers the previous optimum as the first incumbent (GLPK cannot take a start
 * point directly; its heuristic callback can). */
static void heur_cb(glp_tree *T, void *info) {
    model_t *m = info;
    if (glp_ios_reason(T) != GLP_IHEUR || !m->start_col || m->start_used) return;
    m->start_used = 1;
    memset(m->xbuf, 0, ((size_t)m->g.ncols + 1) * sizeof *m->xbuf);
    for (int gi = 0; gi < m->g.ngroups; gi++) m->xbuf[m->start_col[gi] + 1] = 1.0;
    glp_ios_heur_sol(T, m->xbuf);
}

typedef enum { SOLVE_OPTIMAL, SOLVE_TIMEOUT, SOLVE_INFEASIBLE } solve_result_t;

/* ---- exact reductions after the LP relaxation ---- */

/* Scaled-row use of the choice pick (per group a column), and Σ obj. */
static double choice_rows(const model_t *m, const int *pick, double *rowv) {
    const ba_problem_t *p = m->g.p;
    double z = 0;
    for (int j = 0; j < p->nbudgets; j++) rowv[j] = 0;
    for (int gi = 0; gi < m->g.ngroups; gi++) {
        z += m->obj[pick[gi]];
        for (int j = 0; j < p->nbudgets; j++)
            if (m->budget_row[j]) rowv[j] += m->a[j][pick[gi]];
    }
    return z;
}

/* Σ over the rows of how far rowv exceeds each bound. */
static double excess(const model_t *m, const double *rowv, const double *ub) {
    double e = 0;
    for (int j = 0; j < m->g.p->nbudgets; j++)
        if (m->budget_row[j] && rowv[j] > ub[j]) e += rowv[j] - ub[j];
    return e;
}

/* One width change of a group for the pair search of improve_choice. */
typedef struct {
    int gi, c;
    double dobj, da[BA_BUDGET_NKINDS];
} move_t;

static int move_cmp(const void *x, const void *y) {
    const move_t *a = x, *b = y;
    return a->dobj < b->dobj ? -1 : a->dobj > b->dobj ? 1 : a->c - b->c;
}

/* Makes pick meet the scaled rows (greedy: each step the swap with the least objective
 * per unit of excess removed), then spends the slack left (in passes, the swaps that
 * lower the objective most first, while they keep every row). Returns 1 when pick meets the rows; the caller
 * still checks it on the exact tables. */
static int repair_choice(const model_t *m, int *pick) {
    const groups_t *g = &m->g;
    const ba_problem_t *p = g->p;
    double rowv[BA_BUDGET_NKINDS], ub[BA_BUDGET_NKINDS], nv[BA_BUDGET_NKINDS];
    for (int j = 0; j < p->nbudgets; j++)
        ub[j] = m->budget_row[j] ? glp_get_row_ub(m->lp, m->budget_row[j]) : 0;
    choice_rows(m, pick, rowv);
    for (int step = 0; step < 4 * g->ngroups + 4; step++) {
        double e = excess(m, rowv, ub);
        if (e <= 0) break;
        int bg = -1, bc = -1;
        double br = INFINITY;
        for (int gi = 0; gi < g->ngroups; gi++) {
            int cur = pick[gi];
            for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++) {
                if (c == cur || m->off[c]) continue;
                for (int j = 0; j < p->nbudgets; j++)
                    nv[j] = m->budget_row[j] ? rowv[j] - m->a[j][cur] + m->a[j][c] : 0;
                double gain = e - excess(m, nv, ub);
                if (!(gain > 0)) continue;
                double r = (m->obj[c] - m->obj[cur]) / gain;
                if (r < br) br = r, bg = gi, bc = c;
            }
        }
        if (bg < 0) return 0;
        for (int j = 0; j < p->nbudgets; j++)
            if (m->budget_row[j]) rowv[j] += m->a[j][bc] - m->a[j][pick[bg]];
        pick[bg] = bc;
    }
    if (excess(m, rowv, ub) > 0) return 0;
    /* Spend the slack: in passes, the swaps that lower the objective, most first, each
     * taken when it still keeps every row (one per group per pass). */
    move_t *mv = malloc((size_t)g->ncols * sizeof *mv);
    unsigned char *moved = calloc((size_t)g->ngroups, 1);
    for (int pass = 0; mv && moved && pass < g->ngroups; pass++) {
        int n = 0, changed = 0;
        for (int gi = 0; gi < g->ngroups; gi++) {
            int cur = pick[gi];
            moved[gi] = 0;
            for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++) {
                double d = m->obj[c] - m->obj[cur];
                if (m->off[c] || !(d < 0)) continue;
                mv[n].gi = gi, mv[n].c = c, mv[n].dobj = d;
                n++;
            }
        }
        qsort(mv, (size_t)n, sizeof *mv, move_cmp);
        for (int i = 0; i < n; i++) {
            int gi = mv[i].gi, cur = pick[gi], c = mv[i].c, fits = !moved[gi];
            for (int j = 0; j < p->nbudgets && fits; j++)
                fits = !m->budget_row[j] || rowv[j] - m->a[j][cur] + m->a[j][c] <= ub[j];
            if (!fits) continue;
            for (int j = 0; j < p->nbudgets; j++)
                if (m->budget_row[j]) rowv[j] += m->a[j][c] - m->a[j][cur];
            pick[gi] = c;
            moved[gi] = changed = 1;
        }
        if (!changed) break;
    }
    free(mv);
    free(moved);
    return 1;
}

/* Passes of improve_choice at most (each applies one exchange). */
#define PAIR_MAX_PASSES 256

/* Improves a choice that meets the scaled rows by exchanges of one or two groups'
 * widths (the best exchange that lowers Σ obj and keeps every row, until none is
 * left): the LP rounding leaves the incumbent a few such exchanges above the
 * optimum, and a closer incumbent leaves reduced-cost fixing a smaller core to
 * prove. Columns with skip[c] (marked off by the bound) are not tried.
 * The caller checks the result on the exact tables. Returns the number of
 * exchanges applied (0 also when out of memory). */
static int improve_choice(const model_t *m, int *pick, const unsigned char *skip) {
    const groups_t *g = &m->g;
    const ba_problem_t *p = g->p;
    int nb = p->nbudgets, applied = 0;
    double rowv[BA_BUDGET_NKINDS], slack[BA_BUDGET_NKINDS];
    move_t *mv = malloc((size_t)g->ncols * sizeof *mv);
    if (!mv) return 0;
    for (int pass = 0; pass < PAIR_MAX_PASSES; pass++) {
        choice_rows(m, pick, rowv);
        for (int j = 0; j < nb; j++)
            slack[j] = m->budget_row[j] ? glp_get_row_ub(m->lp, m->budget_row[j]) - rowv[j] : INFINITY;
        int n = 0;
        for (int gi = 0; gi < g->ngroups; gi++) {
            int cur = pick[gi];
            for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++) {
                if (c == cur || m->off[c] || (skip && skip[c])) continue;
                move_t *v = &mv[n++];
                v->gi = gi, v->c = c, v->dobj = m->obj[c] - m->obj[cur];
                for (int j = 0; j < nb; j++) v->da[j] = m->budget_row[j] ? m->a[j][c] - m->a[j][cur] : 0;
            }
        }
        qsort(mv, (size_t)n, sizeof *mv, move_cmp);
        double best = 0;
        int bi = -1, bj = -1;
        /* mv ascends in dobj: a pair improves only while dobj_i + dobj_k < best */
        for (int i = 0; i < n && mv[i].dobj < best; i++) {
            int fits = 1;
            for (int j = 0; j < nb && fits; j++) fits = mv[i].da[j] <= slack[j];
            if (fits && mv[i].dobj < best) best = mv[i].dobj, bi = i, bj = -1;
            for (int k = i + 1; k < n && mv[i].dobj + mv[k].dobj < best; k++) {
                if (mv[k].gi == mv[i].gi) continue;
                fits = 1;
                for (int j = 0; j < nb && fits; j++) fits = mv[i].da[j] + mv[k].da[j] <= slack[j];
                if (fits) best = mv[i].dobj + mv[k].dobj, bi = i, bj = k;
            }
        }
        if (bi < 0) break;
        pick[mv[bi].gi] = mv[bi].c;
        if (bj >= 0) pick[mv[bj].gi] = mv[bj].c;
        applied++;
    }
    free(mv);
    return applied;
}

/* Reduced-cost tolerance of the LP whose duals give the Lagrangian bound (GLPK's default is 1e-7). */
#define LP_POLISH_TOL_DJ 1e-11

/* Nodes of the first probe for a better incumbent before the core is reduced again. */
#define CORE_PROBE_NODES 40
/* Probes (each twice as long as the one before) before the core is solved to the end: one;
 * a second (80 nodes) cost more than it saved once the proof rounds every node's LP. */
#define CORE_PROBE_ROUNDS 1

/* Relative slack of reduced-cost fixing: a column is fixed only when its bound
 * exceeds the incumbent by more than this (far above the rounding of the sums). */
#define FIX_REL_MARGIN 1e-9

/* A group is split by the LP when its largest column is below 1 by more than this. */
#define ROUND_INT_TOL 1e-9
/* Split groups whose every column is tried as a rounding (a basic LP solution
 * splits at most one group per budget row). */
#define ROUND_MAX_SPLIT 8

/* Repairs a copy of pick (m->tmp) and takes it as the incumbent (m->inc, *zinc)
 * when it is feasible on the exact tables and lower. */
static void offer_rounding(model_t *m, const int *pick, int *choice, double *zinc, int *have) {
    double rowv[BA_BUDGET_NKINDS];
    memcpy(m->tmp, pick, (size_t)m->g.ngroups * sizeof *m->tmp);
    if (!repair_choice(m, m->tmp)) return;
    double z = choice_rows(m, m->tmp, rowv);
    if (!(z < *zinc)) return;
    groups_decode(&m->g, m->tmp, choice);
    if (!model_feasible(m, choice)) return;
    memcpy(m->inc, m->tmp, (size_t)m->g.ngroups * sizeof *m->inc);
    *zinc = z;
    *have = 1;
}

/* Marks off every column whose Lagrangian bound exceeds the incumbent's zinc
 * (see model_reduce); the incumbent's own columns never. */
static void mark_cut(model_t *m, double bound, double zinc) {
    const groups_t *g = &m->g;
    double limit = zinc + FIX_REL_MARGIN * fmax(1.0, fabs(zinc));
    for (int gi = 0; gi < g->ngroups; gi++)
        for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++)
            m->cut[c] = m->off[c] || (c != m->inc[gi] && bound + m->val[c] > limit);
}

/* After an optimal LP: takes the better of the incumbent in hand (m->start_col)
 * and the LP optimum rounded and repaired as the incumbent (m->inc, also handed
 * to branch-and-bound), and marks off (m->cut[c] = 1) every column c with
 * L(λ) + d_c > z_inc, where λ are the LP duals of the budget rows,
 * L(λ) = Σ_g min_c (obj_c + λ·a_c) − λ·ub is the Lagrangian bound (valid for any
 * λ >= 0, computed here, not taken from GLPK) and d_c = obj_c + λ·a_c − that
 * group's minimum: every choice holding c costs at least L(λ) + d_c, so none is
 * better than the incumbent, and the optimum is among the columns left. The
 * incumbent's own columns are never marked. first: the LP was just solved (its
 * split groups' roundings are tried; later calls with a better incumbent from the
 * core skip them). Returns 0 when no incumbent was found. */
static int model_reduce(model_t *m, int *choice, int first) {
    const groups_t *g = &m->g;
    const ba_problem_t *p = g->p;
    double lam[BA_BUDGET_NKINDS] = {0}, rowv[BA_BUDGET_NKINDS];
    double bound = 0;
    for (int j = 0; j < p->nbudgets; j++)
        if (m->budget_row[j]) {
            lam[j] = fmax(0.0, -glp_get_row_dual(m->lp, m->budget_row[j]));
            bound -= lam[j] * glp_get_row_ub(m->lp, m->budget_row[j]);
        }
    /* The LP optimum, per group its largest column, repaired; and for each group
     * the LP splits (at most one per binding budget in a basic solution), every
     * one of its columns in turn, repaired: which way such a group rounds decides
     * how much the repair has to move elsewhere. */
    int *base = malloc((size_t)g->ngroups * sizeof *base), nfrac = 0, frac[ROUND_MAX_SPLIT];
    if (!base) return 0;
    for (int gi = 0; gi < g->ngroups; gi++) {
        double mn = INFINITY;
        for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++) {
            if (m->off[c]) continue;
            double v = m->obj[c];
            for (int j = 0; j < p->nbudgets; j++)
                if (m->budget_row[j]) v += lam[j] * m->a[j][c];
            m->val[c] = v;
            mn = fmin(mn, v);
        }
        bound += mn;
        for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++)
            if (!m->off[c]) m->val[c] -= mn;
    }

    for (int gi = 0; gi < g->ngroups; gi++) {
        int best = -1;
        double bx = -1;
        for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++) {
            double x = m->off[c] ? -1 : glp_get_col_prim(m->lp, c + 1);
            if (x > bx) bx = x, best = c;
        }
        base[gi] = best;
        if (bx < 1 - ROUND_INT_TOL && nfrac < ROUND_MAX_SPLIT) frac[nfrac++] = gi;
    }
    int have = 0;
    double zinc = INFINITY;
    if (m->start_col) {
        memcpy(m->inc, m->start_col, (size_t)g->ngroups * sizeof *m->inc);
        zinc = choice_rows(m, m->inc, rowv);
        have = 1;
    }
    offer_rounding(m, base, choice, &zinc, &have);
    for (int f = 0; first && f < nfrac; f++) {
        int gi = frac[f], keep = base[gi];
        for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++) {
            /* every choice holding c costs at least bound + val[c]: no better than the incumbent */
            if (c == keep || m->off[c] || bound + m->val[c] > zinc) continue;
            base[gi] = c;
            offer_rounding(m, base, choice, &zinc, &have);
        }
        base[gi] = keep;
    }
    free(base);
    if (!have) return 0;
    if (!m->start_col && !(m->start_col = malloc((size_t)g->ngroups * sizeof *m->start_col))) return 0;
    memcpy(m->start_col, m->inc, (size_t)g->ngroups * sizeof *m->inc);
    mark_cut(m, bound, zinc);
    /* Exchanges among the columns left can only lower the incumbent; a lower one
     * fixes more columns. */
    memcpy(m->tmp, m->inc, (size_t)g->ngroups * sizeof *m->inc);
    if (improve_choice(m, m->tmp, m->cut)) {
        double z = choice_rows(m, m->tmp, rowv);
        groups_decode(g, m->tmp, choice);
        if (z < zinc && model_feasible(m, choice)) {
            memcpy(m->inc, m->tmp, (size_t)g->ngroups * sizeof *m->inc);
            memcpy(m->start_col, m->inc, (size_t)g->ngroups * sizeof *m->inc);
            mark_cut(m, bound, z);
        }
    }
    return 1;
}

/* ---- the core: branch-and-bound on the columns the reduction left ---- */

/* A GLPK problem over the groups that kept more than one column (the others take
 * their one column, the incumbent's, whose budget use moves to the right-hand side).
 * A group's n columns, in ascending width, are encoded incrementally: binaries
 * z_1 >= z_2 >= … >= z_{n-1}, z_k = 1 when the choice is the k-th column or a later one
 * (the column is k = Σ z). The LP relaxation is the same as with one binary per
 * column, but branching on z_k splits a group's widths into those below and those
 * from k on (GUB branching), instead of removing one column at a time: far fewer
 * nodes. */
typedef struct {
    glp_prob *lp;
    int ncols;  /* model columns in the core */
    int *col;   /* [ncols] model column of core position t */
    int ngr;    /* groups in the core */
    int *first; /* [ngr+1] positions of core group i: first[i] .. first[i+1]-1 */
    int *group; /* [ngr] model group of core group i */
    int nz;     /* binaries: ncols - ngr; group i's z_k (k >= 1) is GLPK column first[i] - i + k */
    double *x;  /* [nz+1] for glp_ios_heur_sol */
    const int *inc;
    int inc_used;
    int node_limit; /* > 0: stop branch-and-bound after this many nodes (a probe for a better incumbent) */
} core_t;

static int core_z(const core_t *k, int i, int kk) {
    return k->first[i] - i + kk; /* 1-based GLPK column */
}

static void core_free(core_t *k) {
    if (k->lp) glp_delete_prob(k->lp);
    free(k->col);
    free(k->first);
    free(k->group);
    free(k->x);
}

/* Adds row Σ_i Σ_t v[t] x_t <= rhs (t over the core positions) in the z form:
 * x at a group's position k is z_k − z_{k+1} (z_0 = 1, z_n = 0), so the row is
 * Σ_i Σ_{k>=1} (v[k] − v[k-1]) z_k <= rhs − Σ_i v[first of i], scaled to a largest
 * coefficient of 1. Nothing is added when every choice of the core gives the same value. */
static void core_add_row(core_t *k, const double *v, double rhs, int *ind, double *val) {
    double amax = 0;
    int n = 0;
    for (int i = 0; i < k->ngr; i++) {
        rhs -= v[k->first[i]];
        for (int t = k->first[i] + 1; t < k->first[i + 1]; t++) {
            double d = v[t] - v[t - 1];
            if (d != 0) ind[++n] = core_z(k, i, t - k->first[i]), val[n] = d;
            amax = fmax(amax, fabs(d));
        }
    }
    if (amax == 0) return;
    for (int q = 1; q <= n; q++) val[q] /= amax;
    int row = glp_add_rows(k->lp, 1);
    glp_set_mat_row(k->lp, row, n, ind, val);
    glp_set_row_bnds(k->lp, row, GLP_UP, 0.0, rhs / amax);
}

static ba_status core_build(const model_t *m, core_t *k, ba_error *err) {
    const groups_t *g = &m->g;
    const ba_problem_t *p = g->p;
    memset(k, 0, sizeof *k);
    k->inc = m->inc;
    size_t nc = (size_t)g->ncols + 1, ng = (size_t)g->ngroups + 1;
    int *ind = NULL;
    double *val = NULL, *v = NULL;
    if (!(k->col = ba_malloc(nc * sizeof *k->col, err)) ||
        !(k->first = ba_malloc(ng * sizeof *k->first, err)) ||
        !(k->group = ba_malloc(ng * sizeof *k->group, err)) || !(k->x = ba_calloc(nc, sizeof *k->x, err)) ||
        !(ind = ba_malloc(nc * sizeof *ind, err)) || !(val = ba_malloc(nc * sizeof *val, err)) ||
        !(v = ba_malloc(nc * sizeof *v, err))) {
        free(ind);
        free(val);
        core_free(k);
        return err->code;
    }
    double ub[BA_BUDGET_NKINDS] = {0};
    for (int j = 0; j < p->nbudgets; j++)
        if (m->budget_row[j]) ub[j] = glp_get_row_ub(m->lp, m->budget_row[j]);
    for (int gi = 0; gi < g->ngroups; gi++) {
        int left = 0;
        for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++) left += !m->cut[c];
        if (left <= 1) { /* the incumbent's column */
            for (int j = 0; j < p->nbudgets; j++)
                if (m->budget_row[j]) ub[j] -= m->a[j][m->inc[gi]];
            continue;
        }
        k->first[k->ngr] = k->ncols;
        k->group[k->ngr++] = gi;
        for (int c = g->gstart[gi]; c < g->gstart[gi + 1]; c++)
            if (!m->cut[c]) k->col[k->ncols++] = c;
    }
    k->first[k->ngr] = k->ncols;
    k->nz = k->ncols - k->ngr;
    k->lp = glp_create_prob();
    glp_set_obj_dir(k->lp, GLP_MIN);
    if (k->nz) glp_add_cols(k->lp, k->nz);
    /* Objective: increments of each group's (ascending-width) costs, scaled to a largest
     * magnitude of 1: the core's differences are far smaller than the whole model's, and
     * GLPK's absolute tolerances (1e-7 on reduced costs) would blur them otherwise. */
    double omax = 0;
    for (int i = 0; i < k->ngr; i++)
        for (int t = k->first[i] + 1; t < k->first[i + 1]; t++)
            omax = fmax(omax, fabs(m->obj[k->col[t]] - m->obj[k->col[t - 1]]));
    for (int i = 0; i < k->ngr; i++)
        for (int t = k->first[i] + 1; t < k->first[i + 1]; t++) {
            int z = core_z(k, i, t - k->first[i]);
            glp_set_col_kind(k->lp, z, GLP_BV);
            glp_set_obj_coef(k->lp, z, omax > 0 ? (m->obj[k->col[t]] - m->obj[k->col[t - 1]]) / omax : 0.0);
        }
    /* z_{k+1} <= z_k */
    for (int i = 0; i < k->ngr; i++)
        for (int kk = 1; kk + 1 < k->first[i + 1] - k->first[i]; kk++) {
            int row = glp_add_rows(k->lp, 1);
            ind[1] = core_z(k, i, kk + 1), val[1] = 1.0;
            ind[2] = core_z(k, i, kk), val[2] = -1.0;
            glp_set_mat_row(k->lp, row, 2, ind, val);
            glp_set_row_bnds(k->lp, row, GLP_UP, 0.0, 0.0);
        }
    for (int j = 0; j < p->nbudgets; j++) {
        if (!m->budget_row[j]) continue;
        for (int t = 0; t < k->ncols; t++) v[t] = m->a[j][k->col[t]];
        core_add_row(k, v, ub[j], ind, val);
    }
    free(ind);
    free(val);
    free(v);
    return BA_OK;
}

/* Position of model column c in core group i. */
static int core_pos(const core_t *k, int i, int c) {
    int t = k->first[i];
    while (t < k->first[i + 1] - 1 && k->col[t] != c) t++;
    return t - k->first[i];
}

/* Offers the incumbent to the core's branch-and-bound once. */
static void core_heur_cb(glp_tree *T, void *info) {
    core_t *k = info;
    if (glp_ios_reason(T) == GLP_ISELECT && k->node_limit > 0) {
        int total = 0;
        glp_ios_tree_size(T, NULL, NULL, &total);
        if (total > k->node_limit) glp_ios_terminate(T);
    }
    if (glp_ios_reason(T) != GLP_IHEUR || k->inc_used) return;
    k->inc_used = 1;
    for (int i = 0; i < k->ngr; i++) {
        int pos = core_pos(k, i, k->inc[k->group[i]]);
        for (int kk = 1; kk < k->first[i + 1] - k->first[i]; kk++) k->x[core_z(k, i, kk)] = kk <= pos;
    }
    glp_ios_heur_sol(T, k->x);
}

/* Choice per model group from the core's MIP solution. */
static void core_read(const model_t *m, const core_t *k, int *col_of_group) {
    memcpy(col_of_group, m->inc, (size_t)m->g.ngroups * sizeof *col_of_group);
    for (int i = 0; i < k->ngr; i++) {
        int pos = 0;
        for (int kk = 1; kk < k->first[i + 1] - k->first[i]; kk++)
            pos += glp_mip_col_val(k->lp, core_z(k, i, kk)) > 0.5;
        col_of_group[k->group[i]] = k->col[k->first[i] + pos];
    }
}

/* Whether glp_intopt's answer (rc, and ms its MIP status) ends the solve: with an error in *st,
 * or with *res infeasible. 0 when a solution stands to be read. */
static int intopt_ends(int rc, int ms, const ba_ilp_opts_t *opts, solve_result_t *res, ba_status *st,
                       ba_error *err) {
    if (rc != 0 && rc != GLP_ETMLIM) {
        *st = ba_error_set(err, BA_ERR_RUNTIME, "ILP: GLPK branch-and-bound failed (code %d)", rc);
        return 1;
    }
    if (ms == GLP_NOFEAS) {
        *res = SOLVE_INFEASIBLE;
        return 1;
    }
    if (ms != GLP_OPT && ms != GLP_FEAS) {
        *st =
            ba_error_set(err, BA_ERR_RUNTIME, "ILP: time limit of %g s reached before any solution was found",
                         opts->time_limit_s);
        return 1;
    }
    return 0;
}

/* Decodes the solution read into col_of_group (rc, ms as for intopt_ends); whether it ends the
 * solve: it keeps every budget (*res set), or no cut is left for one that breaks a budget (an
 * error in *st). 0 when a cut is to be added; *ncuts counts them. */
static int choice_ends(const model_t *m, const int *col_of_group, int *choice, int rc, int ms, int *ncuts,
                       solve_result_t *res, ba_status *st, ba_error *err) {
    groups_decode(&m->g, col_of_group, choice);
    if (model_feasible(m, choice)) {
        *res = ms == GLP_OPT && rc == 0 ? SOLVE_OPTIMAL : SOLVE_TIMEOUT;
        return 1;
    }
    if (++*ncuts > MAX_NOGOOD_CUTS) {
        *st = ba_error_set(err, BA_ERR_RUNTIME, "ILP: GLPK keeps returning choices that break a budget");
        return 1;
    }
    return 0;
}

/* ---- the core's proof: branch-and-bound on GLPK's LP ---- */

/* A z is integral within this (GLPK's tol_int is 1e-5; the choice is re-checked exactly). */
#define BNB_INT_TOL 1e-6

/* One node of the core's branch-and-bound: its parent, the z its branch fixes, and the
 * z the reduced costs fixed when it was solved (fix[rs..re), for its descendants). */
typedef struct {
    int parent, z, v, rs, re;
    double bound; /* parent's LP optimum */
} bnb_node_t;

/* a with room for need elements of sz bytes (*cap of them now): a itself, a larger block
 * (a freed), or NULL when out of memory (a still held). */
static void *bnb_grow(void *a, int *cap, int need, size_t sz) {
    if (need <= *cap) return a;
    int nc = *cap ? 2 * *cap : 256;
    while (nc < need) nc *= 2;
    void *p = realloc(a, (size_t)nc * sz);
    if (p) *cap = nc;
    return p;
}

/* Heap of open nodes by bound (smallest first). */
static void heap_push(int *h, int *n, const bnb_node_t *nd, int x) {
    int i = (*n)++;
    while (i > 0 && nd[h[(i - 1) / 2]].bound > nd[x].bound) h[i] = h[(i - 1) / 2], i = (i - 1) / 2;
    h[i] = x;
}

static int heap_pop(int *h, int *n, const bnb_node_t *nd) {
    int top = h[0], x = h[--*n], i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && nd[h[c + 1]].bound < nd[h[c]].bound) c++;
        if (nd[h[c]].bound >= nd[x].bound) break;
        h[i] = h[c], i = c;
    }
    if (*n > 0) h[i] = x;
    return top;
}

/* Branch-and-bound over the core's z binaries in glp_intopt's order (dive into the child the
 * LP leans to; when a node is fathomed, go on from the open node of least bound), each node's
 * LP re-solved by GLPK's dual simplex from the last basis after changing only the bounds that
 * differ: glp_intopt spends two to three times as long per node (node bookkeeping,
 * preprocessing, its branching heuristic) for the same bound. glp_intopt's rules: a node is
 * pruned when its LP bound is within tol_obj of the incumbent, a nonbasic z whose reduced cost
 * exceeds the gap is fixed for the node's subtree, an integral LP optimum is a candidate. */
typedef struct {
    core_t *k;
    model_t *m;
    glp_smcp sp;
    int *pos;        /* [ngr] position of the incumbent in each core group */
    double zinc;     /* core objective of the incumbent */
    signed char *fx; /* [nz+1] value each z is fixed at now (-1: free) */
    signed char *tg; /* [nz+1] scratch: the fixings of the node to move to */
    int *cur, ncur;  /* [nz] the z fixed now */
    int *path;       /* [nz] scratch */
    bnb_node_t *nd;
    int nn, ncap;
    int *fix, nfix, fcap; /* reduced-cost fixings, 2·z + value */
    int *heap, nh, hcap;
    double deadline; /* ba_now() limit */
    long nodes;
    int status; /* 0 running / proven, 1 time limit, 2 hand over to glp_intopt */
    int *cols;  /* [ngroups] scratch choice */
    int *choice;
    double ub[BA_BUDGET_NKINDS]; /* the model's budget rows' bounds */
    int *ind;                    /* [rows+nz+1] scratch of glp_eval_tab_row */
    double *val;                 /* [rows+nz+1] */
    move_t *mv;                  /* [core columns] scratch of bnb_spend */
    unsigned char *moved;        /* [ngr] */
} bnb_t;

static void bnb_set(bnb_t *d, int z, int v) {
    if (v >= 0) {
        glp_set_col_bnds(d->k->lp, z, GLP_FX, v, v);
    } else {
        glp_set_col_bnds(d->k->lp, z, GLP_DB, 0.0, 1.0);
        /* a nonbasic z stays at the bound it was fixed at: the basis stays primal feasible */
        if (d->fx[z] == 1 && glp_get_col_stat(d->k->lp, z) != GLP_BS) glp_set_col_stat(d->k->lp, z, GLP_NU);
    }
    d->fx[z] = (signed char)v;
}

/* Sets the bounds of node x: its ancestors' branches and reduced-cost fixings. */
static void bnb_move(bnb_t *d, int x) {
    int np = 0;
    for (int a = x; a >= 0; a = d->nd[a].parent) {
        const bnb_node_t *n = &d->nd[a];
        if (n->z > 0) d->tg[n->z] = (signed char)n->v, d->path[np++] = n->z;
        for (int f = n->rs; f < n->re; f++)
            d->tg[d->fix[f] >> 1] = (signed char)(d->fix[f] & 1), d->path[np++] = d->fix[f] >> 1;
    }
    for (int i = 0; i < d->ncur; i++)
        if (d->tg[d->cur[i]] != d->fx[d->cur[i]]) bnb_set(d, d->cur[i], -1);
    for (int i = 0; i < np; i++) {
        int z = d->path[i];
        if (d->fx[z] != d->tg[z]) bnb_set(d, z, d->tg[z]);
        d->tg[z] = -1;
        d->cur[i] = z;
    }
    d->ncur = np;
}

/* An integral LP optimum: the incumbent when it is lower and keeps every budget exactly. */
static void bnb_leaf(bnb_t *d) {
    core_t *k = d->k;
    memcpy(d->cols, d->m->inc, (size_t)d->m->g.ngroups * sizeof *d->cols);
    double z = 0;
    for (int i = 0; i < k->ngr; i++) {
        int p = 0;
        for (int kk = 1; kk < k->first[i + 1] - k->first[i]; kk++)
            p += glp_get_col_prim(k->lp, core_z(k, i, kk)) > 0.5;
        for (int kk = 1; kk <= p; kk++) z += glp_get_obj_coef(k->lp, core_z(k, i, kk));
        d->cols[k->group[i]] = k->col[k->first[i] + p];
    }
    if (!(z < d->zinc)) return;
    groups_decode(&d->m->g, d->cols, d->choice);
    if (!model_feasible(d->m, d->choice)) {
        d->status = 2; /* a no-good cut is needed: glp_intopt's loop does that */
        return;
    }
    for (int i = 0; i < k->ngr; i++) d->pos[i] = core_pos(k, i, d->cols[k->group[i]]);
    d->zinc = z;
}

/* Cores of at most this many rows branch by Driebeck-Tomlin on at most BNB_DTH_MAX_CAND
 * fractional z (half the nodes of the first fractional z on seeds 1000 and 1009 of bench_ilp);
 * larger ones on the fractional z of the largest |objective coefficient| × fractionality (a
 * tableau row costs more there than the nodes it saves; the first fractional z instead took
 * 30,000 nodes without finishing on a 150-layer instance that this rule proves in 92). */
#define BNB_DTH_MAX_ROWS 200
#define BNB_DTH_MAX_CAND 4

/* Fractional groups whose roundings (each to its lower or upper LP position) are all tried. */
#define BNB_ROUND_MAX 6

/* Passes of bnb_spend at most; it runs on every BNB_SPEND_EVERY-th node (the root first):
 * on every node it cost seed 1009 of bench_ilp a fifth more time. */
#define BNB_SPEND_PASSES 4
#define BNB_SPEND_EVERY 32

/* Spends the slack of cand (r: its budget rows) within the core: in passes, the moves to a
 * cheaper width of a core group, most first, each taken when it keeps every row. */
static void bnb_spend(bnb_t *d, int *cand, double *r) {
    const core_t *k = d->k;
    const model_t *m = d->m;
    int nb = m->g.p->nbudgets;
    for (int pass = 0; pass < BNB_SPEND_PASSES; pass++) {
        int n = 0, changed = 0;
        for (int i = 0; i < k->ngr; i++) {
            int cur = cand[k->group[i]];
            d->moved[i] = 0;
            for (int t = k->first[i]; t < k->first[i + 1]; t++) {
                double dobj = m->obj[k->col[t]] - m->obj[cur];
                if (dobj < 0) d->mv[n].gi = i, d->mv[n].c = k->col[t], d->mv[n++].dobj = dobj;
            }
        }
        qsort(d->mv, (size_t)n, sizeof *d->mv, move_cmp);
        for (int q = 0; q < n; q++) {
            int i = d->mv[q].gi, gi = k->group[i], c = d->mv[q].c, cur = cand[gi], fits = !d->moved[i];
            for (int j = 0; j < nb && fits; j++)
                fits = !m->budget_row[j] || r[j] - m->a[j][cur] + m->a[j][c] <= d->ub[j];
            if (!fits) continue;
            for (int j = 0; j < nb; j++)
                if (m->budget_row[j]) r[j] += m->a[j][c] - m->a[j][cur];
            cand[gi] = c;
            d->moved[i] = changed = 1;
        }
        if (!changed) break;
    }
}

/* Takes cand (per model group a column; the core groups' among the core's) as the incumbent
 * when its core objective is lower and it keeps every budget exactly. */
static int bnb_offer(bnb_t *d, const int *cand) {
    const core_t *k = d->k;
    double z = 0;
    for (int i = 0; i < k->ngr; i++) {
        int pos = core_pos(k, i, cand[k->group[i]]);
        for (int kk = 1; kk <= pos; kk++) z += glp_get_obj_coef(k->lp, core_z(k, i, kk));
    }
    if (!(z < d->zinc)) return 0;
    groups_decode(&d->m->g, cand, d->choice);
    if (!model_feasible(d->m, d->choice)) return 0;
    for (int i = 0; i < k->ngr; i++) d->pos[i] = core_pos(k, i, cand[k->group[i]]);
    d->zinc = z;
    return 1;
}

/* Simple rounding of a node's LP optimum (glp_intopt's sr_heur finds most of its incumbents
 * this way): each group the LP splits goes to the lowest or the highest width it uses, every
 * combination of those tried; one that lowers the incumbent and keeps every budget exactly
 * becomes the incumbent. */
static void bnb_round(bnb_t *d) {
    core_t *k = d->k;
    model_t *m = d->m;
    int nb = m->g.p->nbudgets, fr[BNB_ROUND_MAX], hi[BNB_ROUND_MAX], nf = 0, found = 0;
    double base = 0, dz[BNB_ROUND_MAX], rowv[BA_BUDGET_NKINDS];
    memcpy(d->cols, m->inc, (size_t)m->g.ngroups * sizeof *d->cols);
    for (int i = 0; i < k->ngr; i++) {
        /* a: the z at 1 from the first on; b: the last z above 0 */
        int a = 0, b = 0, n = k->first[i + 1] - k->first[i];
        double dzi = 0;
        for (int kk = 1; kk < n; kk++) {
            double x = glp_get_col_prim(k->lp, core_z(k, i, kk));
            if (x >= 1 - BNB_INT_TOL && a == kk - 1) a = kk;
            if (x > BNB_INT_TOL) b = kk;
        }
        for (int kk = 1; kk <= b; kk++) {
            double c = glp_get_obj_coef(k->lp, core_z(k, i, kk));
            if (kk <= a)
                base += c;
            else
                dzi += c;
        }
        if (b > a) {
            if (nf == BNB_ROUND_MAX) return;
            fr[nf] = i, hi[nf] = b, dz[nf++] = dzi;
        }
        d->cols[k->group[i]] = k->col[k->first[i] + a];
    }
    choice_rows(m, d->cols, rowv);
    for (int mask = 0; mask < 1 << nf; mask++) {
        double z = base, r[BA_BUDGET_NKINDS];
        for (int j = 0; j < nb; j++) r[j] = rowv[j];
        for (int f = 0; f < nf; f++) {
            if (!(mask >> f & 1)) continue;
            int gi = k->group[fr[f]], c = k->col[k->first[fr[f]] + hi[f]];
            z += dz[f];
            for (int j = 0; j < nb; j++)
                if (m->budget_row[j]) r[j] += m->a[j][c] - m->a[j][d->cols[gi]];
        }
        int fits = z < d->zinc;
        for (int j = 0; j < nb && fits; j++) fits = !m->budget_row[j] || r[j] <= d->ub[j];
        if (!fits) continue;
        int *cand = m->tmp;
        memcpy(cand, d->cols, (size_t)m->g.ngroups * sizeof *cand);
        for (int f = 0; f < nf; f++)
            if (mask >> f & 1) cand[k->group[fr[f]]] = k->col[k->first[fr[f]] + hi[f]];
        found |= bnb_offer(d, cand);
    }
    /* None lower: the split groups at their lower widths, the slack spent elsewhere in the core
     * (a large layer split by the LP moves the budgets too far either way for a rounding alone). */
    int fits = !found && d->nodes % BNB_SPEND_EVERY == 1;
    for (int j = 0; j < nb && fits; j++) fits = !m->budget_row[j] || rowv[j] <= d->ub[j];
    if (!fits) return;
    int *cand = m->tmp;
    memcpy(cand, d->cols, (size_t)m->g.ngroups * sizeof *cand);
    bnb_spend(d, cand, rowv);
    bnb_offer(d, cand);
}

static int bnb_child(bnb_t *d, int parent, int z, int v, double bound) {
    bnb_node_t *nd = bnb_grow(d->nd, &d->ncap, d->nn + 1, sizeof *d->nd);
    if (!nd) return -1;
    d->nd = nd;
    d->nd[d->nn] = (bnb_node_t){.parent = parent, .z = z, .v = v, .bound = bound};
    return d->nn++;
}

/* Solves node x; returns the child to dive into, or -1 when x is fathomed. */
static int bnb_node(bnb_t *d, int x) {
    core_t *k = d->k;
    glp_prob *lp = k->lp;
    bnb_move(d, x);
    d->nodes++;
    int rc = glp_simplex(lp, &d->sp);
    if (rc == GLP_EBADB || rc == GLP_ESING || rc == GLP_ECOND) {
        glp_std_basis(lp);
        rc = glp_simplex(lp, &d->sp);
    }
    int st = glp_get_status(lp);
    if (rc != 0 || (st != GLP_OPT && st != GLP_NOFEAS)) {
        d->status = rc == GLP_ETMLIM ? 1 : 2;
        return -1;
    }
    if (st == GLP_NOFEAS) return -1;
    double obj = glp_get_obj_val(lp), eps = ILP_TOL_OBJ * (1.0 + fabs(d->zinc));
    if (obj >= d->zinc - eps) return -1;
    int br = 0, up = 0, nrows = glp_get_num_rows(lp);
    double dmax = -1, wmax = -1;
    int ncand = 0, capc = nrows <= BNB_DTH_MAX_ROWS ? BNB_DTH_MAX_CAND : 0;
    for (int z = 1; z <= k->nz; z++) {
        if (d->fx[z] >= 0) continue;
        double xv = glp_get_col_prim(lp, z);
        if (!(fmin(xv, 1 - xv) > BNB_INT_TOL)) continue;
        if (capc == 0 || ncand >= capc || glp_get_col_stat(lp, z) != GLP_BS || !glp_bf_exists(lp)) {
            /* the largest objective step times its fractionality */
            double w = fabs(glp_get_obj_coef(lp, z)) * fmin(xv, 1 - xv);
            if (!br || (dmax < 0 && w > wmax)) br = z, up = xv >= 0.5, wmax = w;
            if (ncand < capc) ncand = capc; /* no tableau rows after one was refused */
            continue;
        }
        ncand++;
        /* Driebeck-Tomlin: the objective change of one dual simplex step in each direction */
        int len = glp_eval_tab_row(lp, nrows + z, d->ind, d->val);
        double dd[2];
        for (int kase = 0; kase < 2; kase++) {
            int t = glp_dual_rtest(lp, len, d->ind, d->val, kase ? 1 : -1, 1e-9);
            if (t == 0) {
                dd[kase] = DBL_MAX;
                continue;
            }
            int q = d->ind[t];
            double dq = q <= nrows ? glp_get_row_dual(lp, q) : glp_get_col_dual(lp, q - nrows);
            dd[kase] = fabs(dq * ((kase ? 1.0 : 0.0) - xv) / d->val[t]);
        }
        if (dd[0] > dmax || dd[1] > dmax) br = z, up = dd[1] < dd[0], dmax = fmax(dd[0], dd[1]);
    }
    if (!br) {
        bnb_leaf(d);
        return -1;
    }
    bnb_round(d); /* a better incumbent may prune the node */
    eps = ILP_TOL_OBJ * (1.0 + fabs(d->zinc));
    if (obj >= d->zinc - eps) return -1;
    double gap = d->zinc - eps - obj;
    d->nd[x].rs = d->nfix;
    for (int z = 1; z <= k->nz; z++) {
        if (d->fx[z] >= 0) continue;
        int s = glp_get_col_stat(lp, z), v;
        double dj = glp_get_col_dual(lp, z);
        if (s == GLP_NL && dj > gap)
            v = 0;
        else if (s == GLP_NU && -dj > gap)
            v = 1;
        else
            continue;
        int *fix = bnb_grow(d->fix, &d->fcap, d->nfix + 1, sizeof *d->fix);
        if (!fix) {
            d->status = 2;
            return -1;
        }
        d->fix = fix;
        d->fix[d->nfix++] = 2 * z + v;
    }
    d->nd[x].re = d->nfix;
    int dive = bnb_child(d, x, br, up, obj), other = bnb_child(d, x, br, !up, obj);
    int *heap = dive < 0 || other < 0 ? NULL : bnb_grow(d->heap, &d->hcap, d->nh + 1, sizeof *d->heap);
    if (!heap) {
        d->status = 2;
        return -1;
    }
    d->heap = heap;
    heap_push(d->heap, &d->nh, d->nd, other);
    return dive;
}

/* Proves the core (its LP just solved) optimal by branch-and-bound. Returns 1 with
 * col_of_group the optimum (*res OPTIMAL) or the best found (*res TIMEOUT); 0 when
 * glp_intopt has to take over, with m->inc the best found (after max_nodes nodes, a
 * candidate that breaks a budget exactly, an LP failure, out of memory). */
static int core_bnb(model_t *m, core_t *k, long max_nodes, double t0, int time_ms, int *col_of_group,
                    int *choice, solve_result_t *res) {
    bnb_t d = {.k = k, .m = m, .choice = choice};
    glp_init_smcp(&d.sp);
    d.sp.msg_lev = GLP_MSG_OFF;
    d.sp.meth = GLP_DUALP;
    d.deadline = time_ms == INT32_MAX ? INFINITY : t0 + time_ms / 1000.0;
    size_t nz1 = (size_t)k->nz + 1;
    d.pos = malloc((size_t)k->ngr * sizeof *d.pos);
    d.cur = malloc(nz1 * sizeof *d.cur);
    d.path = malloc(nz1 * sizeof *d.path);
    d.fx = malloc(nz1);
    d.tg = malloc(nz1);
    d.cols = malloc((size_t)m->g.ngroups * sizeof *d.cols);
    size_t nt = (size_t)glp_get_num_rows(k->lp) + nz1;
    d.ind = malloc(nt * sizeof *d.ind);
    d.val = malloc(nt * sizeof *d.val);
    d.mv = malloc(((size_t)k->ncols + 1) * sizeof *d.mv);
    d.moved = malloc((size_t)k->ngr + 1);
    int ok = 0;
    if (d.pos && d.cur && d.path && d.fx && d.tg && d.cols && d.ind && d.val && d.mv && d.moved) {
        memset(d.fx, -1, nz1);
        memset(d.tg, -1, nz1);
        for (int j = 0; j < m->g.p->nbudgets; j++)
            if (m->budget_row[j]) d.ub[j] = glp_get_row_ub(m->lp, m->budget_row[j]);
        for (int i = 0; i < k->ngr; i++) d.pos[i] = core_pos(k, i, m->inc[k->group[i]]);
        d.zinc = 0;
        for (int i = 0; i < k->ngr; i++)
            for (int kk = 1; kk <= d.pos[i]; kk++) d.zinc += glp_get_obj_coef(k->lp, core_z(k, i, kk));
        int x = bnb_child(&d, -1, 0, 0, -INFINITY);
        if (x < 0) d.status = 2;
        while (!d.status) {
            if ((d.nodes & 31) == 31 && ba_now() > d.deadline) {
                d.status = 1;
                break;
            }
            if (d.nodes >= max_nodes) {
                d.status = 2;
                break;
            }
            x = bnb_node(&d, x);
            if (x >= 0 || d.status) continue;
            double eps = ILP_TOL_OBJ * (1.0 + fabs(d.zinc));
            while (d.nh > 0 && x < 0) {
                int y = heap_pop(d.heap, &d.nh, d.nd);
                if (d.nd[y].bound < d.zinc - eps) x = y;
            }
            if (x < 0) break; /* nothing open: the incumbent is optimal */
        }
        for (int i = 0; i < d.ncur; i++) bnb_set(&d, d.cur[i], -1); /* glp_intopt may take over */
        if (d.status == 2) { /* glp_intopt starts from the best found */
            for (int i = 0; i < k->ngr; i++) m->inc[k->group[i]] = k->col[k->first[i] + d.pos[i]];
        } else {
            memcpy(col_of_group, m->inc, (size_t)m->g.ngroups * sizeof *col_of_group);
            for (int i = 0; i < k->ngr; i++) col_of_group[k->group[i]] = k->col[k->first[i] + d.pos[i]];
            groups_decode(&m->g, col_of_group, choice);
            *res = d.status == 0 ? SOLVE_OPTIMAL : SOLVE_TIMEOUT;
            ok = 1;
        }
    }
    free(d.pos);
    free(d.cur);
    free(d.path);
    free(d.fx);
    free(d.tg);
    free(d.cols);
    free(d.ind);
    free(d.val);
    free(d.mv);
    free(d.moved);
    free(d.nd);
    free(d.fix);
    free(d.heap);
    return ok;
}

/* Solves the core at MIP gap 0, cutting off (no-good rows) a choice that breaks a budget
 * on the exact tables, as the whole model does; *done = 1. With node_limit > 0 it is a
 * probe: branch-and-bound stops after that many nodes and, unless it had finished
 * (*done = 1), col_of_group is the best choice seen that meets every budget exactly and
 * beats the incumbent (the incumbent otherwise), *done = 0. */
static ba_status core_solve(model_t *m, const ba_ilp_opts_t *opts, double t0, int time_ms, int node_limit,
                            int *col_of_group, int *choice, solve_result_t *res, int *done, ba_error *err) {
    core_t k;
    BA_TRY(core_build(m, &k, err));
    k.node_limit = node_limit;
    *done = 1;
    ba_status st = BA_OK;
    if (k.ngr == 0) { /* every group down to the incumbent's column: it is the optimum */
        memcpy(col_of_group, m->inc, (size_t)m->g.ngroups * sizeof *col_of_group);
        groups_decode(&m->g, col_of_group, choice);
        *res = SOLVE_OPTIMAL;
        core_free(&k);
        return BA_OK;
    }
    int *cut_ind = NULL;
    double *cut_val = NULL;
    for (int ncuts = 0;;) {
        int left_ms = time_ms == INT32_MAX ? INT32_MAX : time_ms - (int)((ba_now() - t0) * 1000);
        if (left_ms < 1) left_ms = 1;
        glp_smcp sp;
        glp_init_smcp(&sp);
        sp.msg_lev = GLP_MSG_OFF;
        sp.tm_lim = left_ms;
        int rc = glp_simplex(k.lp, &sp);
        if (rc == GLP_ETMLIM) {
            st = ba_error_set(err, BA_ERR_RUNTIME, "ILP: time limit of %g s reached in the LP relaxation",
                              opts->time_limit_s);
            break;
        }
        if (rc != 0 || (glp_get_status(k.lp) != GLP_OPT && glp_get_status(k.lp) != GLP_NOFEAS)) {
            st = ba_error_set(err, BA_ERR_RUNTIME, "ILP: GLPK simplex failed (code %d, status %d)", rc,
                              glp_get_status(k.lp));
            break;
        }
        if (glp_get_status(k.lp) == GLP_NOFEAS) {
            *res = SOLVE_INFEASIBLE;
            break;
        }
        /* The proof: the own branch-and-bound, glp_intopt when it hands over. */
        if (node_limit == 0 && core_bnb(m, &k, opts->bnb_nodes > 0 ? opts->bnb_nodes : BA_ILP_BNB_NODES, t0,
                                        time_ms, col_of_group, choice, res))
            break;
        glp_iocp ip;
        glp_init_iocp(&ip);
        ip.msg_lev = GLP_MSG_OFF;
        ip.presolve = GLP_OFF; /* so that the callback can hand over the incumbent */
        ip.mip_gap = 0.0;
        ip.tol_obj = ILP_TOL_OBJ;
        ip.tm_lim = left_ms;
        ip.cb_func = core_heur_cb;
        ip.cb_info = &k;
        ip.pp_tech = GLP_PP_ROOT; /* preprocessing at every node cost more than it saved (probes: 2-3 ms) */
        k.inc_used = 0;
        rc = glp_intopt(k.lp, &ip);
        int ms = glp_mip_status(k.lp);
        if (rc == GLP_ESTOP) { /* the probe's node limit */
            double rowv[BA_BUDGET_NKINDS];
            *done = 0;
            memcpy(col_of_group, m->inc, (size_t)m->g.ngroups * sizeof *col_of_group);
            if (ms == GLP_FEAS) {
                int *best = m->tmp;
                core_read(m, &k, best);
                groups_decode(&m->g, best, choice);
                if (choice_rows(m, best, rowv) < choice_rows(m, m->inc, rowv) && model_feasible(m, choice))
                    memcpy(col_of_group, best, (size_t)m->g.ngroups * sizeof *col_of_group);
            }
            break;
        }
        if (intopt_ends(rc, ms, opts, res, &st, err)) break;
        core_read(m, &k, col_of_group);
        if (choice_ends(m, col_of_group, choice, rc, ms, &ncuts, res, &st, err)) break;
        if (!cut_ind && (!(cut_ind = ba_malloc((2 * (size_t)k.ngr + 1) * sizeof *cut_ind, err)) ||
                         !(cut_val = ba_malloc((2 * (size_t)k.ngr + 1) * sizeof *cut_val, err)))) {
            st = err->code;
            break;
        }
        /* Σ_i x_{i,pos_i} <= ngr - 1 with x_{i,pos} = z_pos − z_{pos+1} (z_0 = 1, z_n = 0) */
        int n = 0;
        double rhs = k.ngr - 1.0;
        for (int i = 0; i < k.ngr; i++) {
            int pos = core_pos(&k, i, col_of_group[k.group[i]]), last = k.first[i + 1] - k.first[i] - 1;
            if (pos == 0)
                rhs -= 1.0;
            else
                cut_ind[++n] = core_z(&k, i, pos), cut_val[n] = 1.0;
            if (pos < last) cut_ind[++n] = core_z(&k, i, pos + 1), cut_val[n] = -1.0;
        }
        int row = glp_add_rows(k.lp, 1);
        glp_set_mat_row(k.lp, row, n, cut_ind, cut_val);
        glp_set_row_bnds(k.lp, row, GLP_UP, 0.0, rhs);
    }
    free(cut_ind);
    free(cut_val);
    core_free(&k);
    return st;
}

/* Column chosen per group from GLPK's MIP solution. */
static void read_cols(const model_t *m, int *col_of_group) {
    for (int gi = 0; gi < m->g.ngroups; gi++) {
        int best = m->g.gstart[gi];
        double bv = -1;
        for (int c = m->g.gstart[gi]; c < m->g.gstart[gi + 1]; c++) {
            double v = glp_mip_col_val(m->lp, c + 1);
            if (v > bv) bv = v, best = c;
        }
        col_of_group[gi] = best;
    }
}

/* Solves with the current limits; start (may be NULL) is a per-group column
 * choice to try as the first incumbent when it meets the limits. */
static ba_status model_solve(model_t *m, const ba_ilp_opts_t *opts, const int *start, int *col_of_group,
                             int *choice, solve_result_t *res, ba_error *err) {
    const ba_problem_t *p = m->g.p;
    for (int j = 0; j < p->nbudgets; j++)
        if (!model_set_limit(m, j)) {
            *res = SOLVE_INFEASIBLE;
            return BA_OK;
        }
    double t0 = ba_now();
    int time_ms = opts->time_limit_s > 0 && opts->time_limit_s < INT32_MAX / 1000
                      ? (int)(opts->time_limit_s * 1000)
                      : INT32_MAX;
    int first_cut = glp_get_num_rows(m->lp) + 1, ncuts = 0;
    ba_status st = BA_OK;
    int *cut_ind = NULL, reduced = 0;
    double *cut_val = NULL;
    m->start_used = 0;
    if (start) { /* hand it over only when it meets the current limits */
        groups_decode(&m->g, start, choice);
        if (!model_feasible(m, choice)) start = NULL;
    }
    if (start) {
        if (!m->start_col && !(m->start_col = ba_malloc((size_t)m->g.ngroups * sizeof(int), err)))
            return err->code;
        memcpy(m->start_col, start, (size_t)m->g.ngroups * sizeof(int));
    } else if (m->start_col) {
        free(m->start_col);
        m->start_col = NULL;
    }
    for (;;) {
        int left_ms = time_ms == INT32_MAX ? INT32_MAX : time_ms - (int)((ba_now() - t0) * 1000);
        if (left_ms < 1) left_ms = 1;
        glp_smcp sp;
        glp_init_smcp(&sp);
        sp.msg_lev = GLP_MSG_OFF;
        sp.meth = GLP_DUALP;
        sp.tm_lim = left_ms;
        /* A sweep's next point starts from the last optimal basis (dual feasible: only the rhs changed). */
        if (!m->have_basis) sp.meth = model_start_basis(m);
        m->have_basis = 1;
        int rc = glp_simplex(m->lp, &sp);
        if (rc == GLP_EBADB || rc == GLP_ESING || rc == GLP_ECOND) {
            model_start_basis(m);
            rc = glp_simplex(m->lp, &sp);
        }
        if (rc == GLP_ETMLIM) {
            st = ba_error_set(err, BA_ERR_RUNTIME, "ILP: time limit of %g s reached in the LP relaxation",
                              opts->time_limit_s);
            break;
        }
        if (rc != 0) {
            st = ba_error_set(err, BA_ERR_RUNTIME, "ILP: GLPK simplex failed (code %d)", rc);
            break;
        }
        if (glp_get_status(m->lp) == GLP_NOFEAS) {
            *res = SOLVE_INFEASIBLE;
            break;
        }
        if (glp_get_status(m->lp) != GLP_OPT) {
            st = ba_error_set(err, BA_ERR_RUNTIME, "ILP: LP relaxation not solved (GLPK status %d)",
                              glp_get_status(m->lp));
            break;
        }
        /* The exact reductions, then branch-and-bound on what they leave (once: the core
         * handles its own cuts). Without an incumbent, GLPK on the whole model. */
        if (!m->plain && !reduced) {
            reduced = 1;
            /* GLPK stops when no reduced cost is below -1e-7: with a thousand columns that can
             * leave the LP optimum (and so the bound) above the true one by more than the gap
             * to the integer optimum. The primal simplex from that basis at 1e-11 polishes it. */
            glp_smcp polish = sp;
            polish.meth = GLP_PRIMAL;
            polish.tol_dj = LP_POLISH_TOL_DJ;
            rc = glp_simplex(m->lp, &polish);
            if (rc != 0 || glp_get_status(m->lp) != GLP_OPT) {
                st = ba_error_set(err, BA_ERR_RUNTIME, "ILP: GLPK simplex failed (code %d, status %d)", rc,
                                  glp_get_status(m->lp));
                break;
            }
            if (model_reduce(m, choice, 1)) {
                /* A short probe of the core finds a better incumbent than the rounding; with it
                 * the reduction leaves a far smaller core to prove optimal. */
                int done = 0;
                for (int round = 0; st == BA_OK && !done; round++) {
                    int limit = round < CORE_PROBE_ROUNDS ? CORE_PROBE_NODES << round : 0;
                    if (round > 0 && memcmp(m->start_col, col_of_group, (size_t)m->g.ngroups * sizeof(int))) {
                        memcpy(m->start_col, col_of_group, (size_t)m->g.ngroups * sizeof *col_of_group);
                        model_reduce(m, choice, 0); /* a better incumbent: a smaller core */
                    }
                    st = core_solve(m, opts, t0, time_ms, limit, col_of_group, choice, res, &done, err);
                }
                break;
            }
        }
        glp_iocp ip;
        glp_init_iocp(&ip);
        ip.msg_lev = GLP_MSG_OFF;
        ip.presolve = GLP_OFF; /* the model is already reduced (ties merged, pins applied), and
                                  without presolve the callback can hand over a start point */
        ip.mip_gap = 0.0;
        ip.tol_obj = ILP_TOL_OBJ;
        ip.tm_lim = left_ms;
        ip.cb_func = heur_cb;
        ip.cb_info = m;
        rc = glp_intopt(m->lp, &ip);
        int ms = glp_mip_status(m->lp);
        if (intopt_ends(rc, ms, opts, res, &st, err)) break;
        read_cols(m, col_of_group);
        /* GLPK accepted a choice that breaks a budget within its tolerance: cut it off. */
        if (choice_ends(m, col_of_group, choice, rc, ms, &ncuts, res, &st, err)) break;
        if (!cut_ind && (!(cut_ind = ba_malloc(((size_t)m->g.ngroups + 1) * sizeof *cut_ind, err)) ||
                         !(cut_val = ba_malloc(((size_t)m->g.ngroups + 1) * sizeof *cut_val, err)))) {
            st = err->code;
            break;
        }
        int n = 0;
        for (int gi = 0; gi < m->g.ngroups; gi++)
            if (m->g.gstart[gi + 1] - m->g.gstart[gi] > 1)
                cut_ind[++n] = col_of_group[gi] + 1, cut_val[n] = 1.0;
        if (n == 0) { /* every group fixed, yet infeasible: it is */
            *res = SOLVE_INFEASIBLE;
            break;
        }
        int row = glp_add_rows(m->lp, 1);
        glp_set_mat_row(m->lp, row, n, cut_ind, cut_val);
        glp_set_row_bnds(m->lp, row, GLP_UP, 0.0, n - 1.0);
    }
    free(cut_ind);
    free(cut_val);
    /* Cuts hold for these limits only: a sweep's next point may admit those choices. */
    int nrows = glp_get_num_rows(m->lp);
    if (nrows >= first_cut) {
        int cnt = nrows - first_cut + 1;
        int *rows = malloc(((size_t)cnt + 1) * sizeof *rows);
        if (rows) {
            for (int i = 1; i <= cnt; i++) rows[i] = first_cut + i - 1;
            glp_del_rows(m->lp, cnt, rows);
            free(rows);
            m->have_basis = 0;
        } else if (st == BA_OK) {
            st = ba_error_set(err, BA_ERR_NOMEM, "out of memory: ILP cut rows");
        }
    }
    return st;
}

static ba_status fill_solution(const ba_problem_t *p, const int *choice, int optimal, ba_solution_t *out,
                               ba_error *err) {
    memset(out, 0, sizeof *out);
    if (!(out->choice = ba_malloc((size_t)p->nlayers * sizeof(int), err)) ||
        !(out->bits = ba_malloc((size_t)p->nlayers * sizeof(int), err))) {
        ba_solution_free(out);
        return err->code;
    }
    memcpy(out->choice, choice, (size_t)p->nlayers * sizeof(int));
    for (int l = 0; l < p->nlayers; l++) out->bits[l] = p->bits[p->start[l] + choice[l]];
    out->objective = ba_problem_objective(p, choice);
    for (int j = 0; j < p->nbudgets; j++) out->budget[j] = ba_problem_budget_value(p, j, choice);
    out->optimal = optimal;
    return BA_OK;
}

/* Message for an infeasible problem (limits as in m->limit). */
static ba_status infeasible_error(const model_t *m, ba_error *err) {
    const ba_problem_t *p = m->g.p;
    char msg[BA_ERROR_MSG_MAX] = "", lim[96], mn[96];
    size_t len = 0;
    int alone = 0;
    for (int j = 0; j < p->nbudgets; j++) {
        double v = (double)groups_min_budget(&m->g, j, NULL);
        if (ba_budget_holds(v, m->limit[j])) continue;
        ba_budget_format(p->kind[j], m->limit[j], lim, sizeof lim);
        ba_budget_format(p->kind[j], v, mn, sizeof mn);
        len += (size_t)snprintf(
            msg + len, sizeof msg - len, "%sbudget %s=%s cannot be met: the smallest achievable %s is %s",
            alone ? "; " : "", ba_budget_key(p->kind[j]), lim, ba_budget_key(p->kind[j]), mn);
        if (len >= sizeof msg) len = sizeof msg - 1;
        alone++;
    }
    if (!alone) {
        len += (size_t)snprintf(msg + len, sizeof msg - len, "budgets cannot hold together (");
        for (int j = 0; j < p->nbudgets && len < sizeof msg; j++) {
            ba_budget_format(p->kind[j], m->limit[j], lim, sizeof lim);
            ba_budget_format(p->kind[j], (double)groups_min_budget(&m->g, j, NULL), mn, sizeof mn);
            len += (size_t)snprintf(msg + len, sizeof msg - len, "%s%s=%s, smallest alone %s", j ? "; " : "",
                                    ba_budget_key(p->kind[j]), lim, mn);
        }
        if (len < sizeof msg) snprintf(msg + len, sizeof msg - len, "); loosen one of them");
    }
    int constrained = 0;
    for (int l = 0; l < p->nlayers; l++) constrained |= p->pin[l] || p->tie[l] >= 0;
    return ba_error_set(err, BA_ERR_INFEASIBLE, "%s%s", msg,
                        constrained ? " (under the pins and ties given)" : "");
}

ba_status ba_ilp_solve(const ba_problem_t *p, const ba_ilp_opts_t *opts, ba_solution_t *out, ba_error *err) {
    memset(out, 0, sizeof *out);
    ba_ilp_opts_t dflt = ba_ilp_opts_default();
    if (!opts) opts = &dflt;
    BA_TRY(ba_problem_check(p, err));
    model_t m;
    BA_TRY(model_build(p, opts->plain, &m, err));
    ba_status st = BA_OK;
    int *cols = ba_malloc((size_t)m.g.ngroups * sizeof *cols, err);
    int *choice = ba_malloc((size_t)p->nlayers * sizeof *choice, err);
    solve_result_t res = SOLVE_INFEASIBLE;
    if (!cols || !choice) st = err->code;
    if (st == BA_OK) st = model_solve(&m, opts, NULL, cols, choice, &res, err);
    if (st == BA_OK) {
        if (res == SOLVE_INFEASIBLE)
            st = infeasible_error(&m, err);
        else
            st = fill_solution(p, choice, res == SOLVE_OPTIMAL, out, err);
    }
    free(cols);
    free(choice);
    model_free(&m);
    return st;
}

void ba_sweep_free(ba_sweep_t *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) ba_solution_free(&s->points[i].sol);
    free(s->points);
    free(s);
}

/* A point is on the front when no other feasible point is at least as good in
 * both Σ Ω and the swept budget and better in one; of several points with the
 * same configuration only the first (smallest limit) is marked. */
static void mark_pareto(ba_sweep_t *s) {
    for (int i = 0; i < s->n; i++) {
        ba_sweep_point_t *a = &s->points[i];
        if (!a->feasible) continue;
        a->pareto = 1;
        for (int k = 0; k < s->n && a->pareto; k++) {
            ba_sweep_point_t *b = &s->points[k];
            if (k == i || !b->feasible) continue;
            double ao = a->sol.objective, bo = b->sol.objective;
            double ab = a->sol.budget[s->budget], bb = b->sol.budget[s->budget];
            if (bo <= ao && bb <= ab && (bo < ao || bb < ab))
                a->pareto = 0;
            else if (bo == ao && bb == ab && k < i)
                a->pareto = 0;
        }
    }
}

ba_status ba_ilp_sweep(const ba_problem_t *p, int j, double from, double to, double step,
                       const ba_ilp_opts_t *opts, ba_sweep_t **out, ba_error *err) {
    *out = NULL;
    if (j < 0 || j >= p->nbudgets)
        return ba_error_set(err, BA_ERR_INPUT, "--sweep: budget index %d out of range", j);
    ba_budget_sweep_t sw = {.kind = p->kind[j], .from = from, .to = to, .step = step};
    if (!(step > 0) || !(from > 0) || !(from <= to) || !isfinite(to))
        return ba_error_set(err, BA_ERR_INPUT, "--sweep %s: needs 0 < FROM <= TO and STEP > 0",
                            ba_budget_key(p->kind[j]));
    int npts = ba_budget_sweep_npoints(&sw);
    if (npts > BA_BUDGET_SWEEP_MAX_POINTS)
        return ba_error_set(err, BA_ERR_INPUT, "--sweep %s: more than %d points", ba_budget_key(p->kind[j]),
                            BA_BUDGET_SWEEP_MAX_POINTS);
    ba_ilp_opts_t dflt = ba_ilp_opts_default();
    if (!opts) opts = &dflt;
    BA_TRY(ba_problem_check(p, err));
    model_t m;
    BA_TRY(model_build(p, opts->plain, &m, err));
    ba_status st = BA_OK;
    ba_sweep_t *s = ba_calloc(1, sizeof *s, err);
    int *cols = ba_malloc((size_t)m.g.ngroups * sizeof *cols, err);
    int *prev = ba_malloc((size_t)m.g.ngroups * sizeof *prev, err);
    int *choice = ba_malloc((size_t)p->nlayers * sizeof *choice, err);
    if (!s || !cols || !prev || !choice || !(s->points = ba_calloc((size_t)npts, sizeof *s->points, err))) {
        st = err->code;
        goto done;
    }
    s->budget = j;
    int have_prev = 0;
    for (int i = 0; i < npts && st == BA_OK; i++) {
        ba_sweep_point_t *pt = &s->points[s->n++];
        pt->limit = from + i * step;
        m.limit[j] = pt->limit;
        solve_result_t res;
        st = model_solve(&m, opts, have_prev ? prev : NULL, cols, choice, &res, err);
        if (st != BA_OK) break;
        if (res == SOLVE_INFEASIBLE) continue;
        pt->feasible = 1;
        st = fill_solution(p, choice, res == SOLVE_OPTIMAL, &pt->sol, err);
        memcpy(prev, cols, (size_t)m.g.ngroups * sizeof *prev);
        have_prev = 1;
    }
    if (st == BA_OK) mark_pareto(s);
done:
    free(cols);
    free(prev);
    free(choice);
    model_free(&m);
    if (st != BA_OK)
        ba_sweep_free(s);
    else
        *out = s;
    return st;
}
