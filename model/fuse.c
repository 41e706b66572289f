/* Forward-only fusion of an anchor (Conv, ConvTranspose, Gemm, MatMul) with
 * the elementwise nodes that follow it (model/fuse.h). */
#include "model/fuse.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/kern_conv.h"
#include "model/ops.h"

/* Elementwise nodes one region absorbs at most. */
#define FUSE_MAX_NODES 16
/* Nodes after the anchor searched for members (unrelated nodes in between are skipped). */
#define FUSE_SCAN 64
/* Floats per block of the epilogue: a few blocks of registers stay in L1. */
#define FUSE_BLOCK 256
/* Below this many output elements the epilogue stays on one thread. */
#define FUSE_PAR_MIN 65536
/* ONNX default epsilon of BatchNormalization (as ops_norm.c). */
#define FUSE_BN_EPS 1e-5f

typedef struct {
    int anchor;
    int n;                     /* members */
    int nodes[FUSE_MAX_NODES]; /* member node indices, in order */
    ba_ew_unary_t u[FUSE_MAX_NODES];
} region_t;

struct ba_fuse_plan {
    int nnodes;
    unsigned char *role; /* per node: BA_FUSE_* */
    int *region;         /* per anchor node: index into regions */
    region_t *regions;
    int nregions;
};

int ba_fuse_enabled(const ba_run_opts_t *opts) {
    if (!opts) return 1;
    return !opts->keep && !opts->all_branches && !opts->no_fuse && (!opts->on_value || opts->hooked);
}

static int is_anchor_op(int op) {
    return op == BA_OP_CONV || op == BA_OP_CONV_TRANSPOSE || op == BA_OP_GEMM || op == BA_OP_MATMUL;
}

static int is_binary_op(int op) {
    return op == BA_OP_ADD || op == BA_OP_SUB || op == BA_OP_MUL || op == BA_OP_DIV || op == BA_OP_MAX ||
           op == BA_OP_MIN;
}

/* A float32 constant of the run (a Constant, initializer or its override). */
static int is_f32_const(const ba_model_t *m, ba_tensor_t *const *vals, int id) {
    return id >= 0 && m->values[id].constant && vals[id] && vals[id]->dtype == BA_DT_F32;
}

static int in_set(const int *set, int n, int id) {
    for (int k = 0; k < n; k++)
        if (set[k] == id) return 1;
    return 0;
}

/* Whether node j may join the region of anchor `anchor` whose values are
 * rv[0..nr): an op the epilogue computes, every input a region value or a
 * float32 constant (a binary op's other operand may also be a value made
 * before the anchor: a residual), its first input (the data) a region value;
 * u gets a unary op's formula. */
static int member_ok(const ba_model_t *m, ba_tensor_t *const *vals, int anchor, const ba_node_t *n,
                     const int *rv, int nr, ba_ew_unary_t *u) {
    if (n->guard >= 0 || n->if_guard >= 0 || n->nout < 1 || n->outputs[0] < 0) return 0;
    for (int k = 1; k < n->nout; k++)
        if (n->outputs[k] >= 0) return 0;
    for (int k = 0; k < n->nin; k++) {
        int id = n->inputs[k];
        if (id < 0) {
            if (k == 0) return 0;
            continue;
        }
        if (!in_set(rv, nr, id) && !is_f32_const(m, vals, id) &&
            !(is_binary_op(n->op) && !m->values[id].constant && m->values[id].producer < anchor))
            return 0;
    }
    if (n->op == BA_OP_BATCH_NORMALIZATION) {
        if (n->nin != 5 || !in_set(rv, nr, n->inputs[0]) || ba_node_attr_int(n, "training_mode", 0) != 0)
            return 0;
        for (int k = 1; k < 5; k++)
            if (!is_f32_const(m, vals, n->inputs[k])) return 0;
        return 1;
    }
    if (is_binary_op(n->op)) {
        if (n->nin != 2 || n->inputs[1] < 0) return 0;
        return in_set(rv, nr, n->inputs[0]) || in_set(rv, nr, n->inputs[1]);
    }
    if (!(n->def && n->def->forward == ba_fwd_unary) || !in_set(rv, nr, n->inputs[0])) return 0;
    for (int k = 1; k < n->nin; k++) /* Clip's bounds */
        if (n->inputs[k] >= 0 && in_set(rv, nr, n->inputs[k])) return 0;
    ba_tensor_t x = {.dtype = BA_DT_F32}; /* the region's values are float32 (checked when it runs) */
    ba_tensor_t *in[3] = {&x, NULL, NULL};
    for (int k = 1; k < n->nin && k < 3; k++) in[k] = n->inputs[k] >= 0 ? vals[n->inputs[k]] : NULL;
    if (n->nin > 3) return 0;
    ba_error e = {0};
    return ba_ew_unary_prepare(n, in, n->nin, u, &e) == BA_OK;
}

/* Grows the region of anchor i; 1 when at least one member joins. */
static int plan_region(const ba_model_t *m, const ba_run_opts_t *opts, ba_tensor_t *const *vals,
                       const int *uses, const unsigned char *role, int i, region_t *r) {
    const ba_node_t *a = &m->nodes[i];
    if (!is_anchor_op(a->op) || a->guard >= 0 || a->nout != 1 || a->outputs[0] < 0) return 0;
    const unsigned char *hooked = opts && opts->on_value ? opts->hooked : NULL;
    int rv[FUSE_MAX_NODES + 1], nr = 0, ncand = 0;
    rv[nr++] = a->outputs[0];
    r->anchor = i;
    for (int j = i + 1; j < m->nnodes && j <= i + FUSE_SCAN && ncand < FUSE_MAX_NODES; j++) {
        const ba_node_t *n = &m->nodes[j];
        if (opts && opts->cuts && opts->cuts[j]) break; /* no region spans a cut */
        int touches = 0;
        for (int k = 0; k < n->nin; k++)
            if (n->inputs[k] >= 0 && in_set(rv, nr, n->inputs[k])) touches = 1;
        for (int g = n->guard; g >= 0; g = m->guards[g].parent)
            if (in_set(rv, nr, m->guards[g].cond)) touches = 2;
        if (!touches) continue;
        if (touches == 2 || role[j] != BA_FUSE_NONE || !member_ok(m, vals, i, n, rv, nr, &r->u[ncand])) break;
        r->nodes[ncand++] = j;
        rv[nr++] = n->outputs[0];
    }
    /* The longest prefix whose values, the last one excepted, are used only
     * inside it and not handed to the hook. */
    for (int k = ncand; k >= 1; k--) {
        int ok = 1;
        for (int v = 0; v < k && ok; v++) { /* rv[0..k): the anchor's output and members' but the last */
            int id = rv[v], inside = 0;
            if (hooked && hooked[id]) ok = 0;
            for (int q = 0; q < k; q++) {
                const ba_node_t *n = &m->nodes[r->nodes[q]];
                for (int s = 0; s < n->nin; s++) inside += n->inputs[s] == id;
            }
            if (inside != uses[id]) ok = 0;
        }
        if (ok) {
            r->n = k;
            return 1;
        }
    }
    return 0;
}

void ba_fuse_plan_free(ba_fuse_plan_t *p) {
    if (!p) return;
    free(p->role);
    free(p->region);
    free(p->regions);
    free(p);
}

ba_status ba_fuse_plan_new(const ba_model_t *m, const ba_run_opts_t *opts, ba_tensor_t *const *vals,
                           const int *uses, ba_fuse_plan_t **out, ba_error *err) {
    *out = NULL;
    if (!ba_fuse_enabled(opts) || m->nnodes < 2) return BA_OK;
    int na = 0;
    for (int i = 0; i < m->nnodes; i++) na += is_anchor_op(m->nodes[i].op);
    if (na == 0) return BA_OK;
    ba_fuse_plan_t *p = ba_calloc(1, sizeof *p, err);
    if (!p) return BA_ERR_NOMEM;
    p->nnodes = m->nnodes;
    p->role = ba_calloc((size_t)m->nnodes, 1, err);
    p->region = ba_calloc((size_t)m->nnodes, sizeof(int), err);
    p->regions = ba_calloc((size_t)na, sizeof(region_t), err);
    if (!p->role || !p->region || !p->regions) {
        ba_fuse_plan_free(p);
        return BA_ERR_NOMEM;
    }
    for (int i = opts && opts->start > 0 ? opts->start : 0; i < m->nnodes; i++) {
        region_t *r = &p->regions[p->nregions];
        if (p->role[i] != BA_FUSE_NONE || !plan_region(m, opts, vals, uses, p->role, i, r)) continue;
        p->role[i] = BA_FUSE_ANCHOR;
        p->region[i] = p->nregions++;
        for (int k = 0; k < r->n; k++) p->role[r->nodes[k]] = BA_FUSE_ABSORBED;
    }
    if (p->nregions == 0) {
        ba_fuse_plan_free(p);
        return BA_OK;
    }
    *out = p;
    return BA_OK;
}

int ba_fuse_role(const ba_fuse_plan_t *p, int i) {
    return p && i >= 0 && i < p->nnodes ? p->role[i] : BA_FUSE_NONE;
}

int ba_fuse_members(const ba_fuse_plan_t *p, int i, const int **nodes) {
    if (ba_fuse_role(p, i) != BA_FUSE_ANCHOR) {
        *nodes = NULL;
        return 0;
    }
    const region_t *r = &p->regions[p->region[i]];
    *nodes = r->nodes;
    return r->n;
}

/* ---- the epilogue ---- */

enum { S_UNARY, S_BINARY, S_BN };
enum { O_REG, O_SCALAR, O_CHAN, O_FULL };

typedef struct {
    int kind;       /* O_* */
    int reg;        /* O_REG: register */
    float s;        /* O_SCALAR */
    const float *v; /* O_CHAN: one value per channel; O_FULL: a tensor of the output's shape */
} operand_t;

typedef struct {
    int kind; /* S_* */
    int op;   /* node op (S_BINARY) */
    operand_t a, b;
    const ba_ew_unary_t *u;
    const float *bn_a, *bn_b; /* S_BN: per channel, as the kernel computes them */
} step_t;

typedef struct {
    int row; /* 1: channels on the last axis (blocks along a row), 0: axis 1 (blocks in a plane) */
    int64_t outer, C, inner;
    int nsteps;
    step_t steps[FUSE_MAX_NODES];
} epi_t;

/* An operand of a step for block [c0, c0 + len) of channel c (plane mode) or
 * of the channel run starting at c0 (row mode): a pointer to len floats, or
 * NULL with *s the scalar. */
static const float *operand(const epi_t *e, const operand_t *o, float (*regs)[FUSE_BLOCK], const float *y,
                            int64_t pos, int64_t c, int64_t c0, float *s) {
    switch (o->kind) {
    case O_REG: return o->reg ? regs[o->reg] : y;
    case O_FULL: return o->v + pos;
    case O_SCALAR: *s = o->s; return NULL;
    default:
        if (e->row) return o->v + c0;
        *s = o->v[c];
        return NULL;
    }
}

/* The float32 arithmetic of ops_elementwise.c's bin_f32, per op. */
#define BIN_LOOPS(EXPR)                                                                                      \
    if (a && b) {                                                                                            \
        _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                                \
            const float x = a[i], y = b[i];                                                                  \
            o[i] = (EXPR);                                                                                   \
        }                                                                                                    \
    } else if (a) {                                                                                          \
        _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                                \
            const float x = a[i], y = bs;                                                                    \
            o[i] = (EXPR);                                                                                   \
        }                                                                                                    \
    } else {                                                                                                 \
        _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                                \
            const float x = as, y = b[i];                                                                    \
            o[i] = (EXPR);                                                                                   \
        }                                                                                                    \
    }

__attribute__((target_clones("avx512f", "default"))) static void bin_block(int op, const float *restrict a,
                                                                           float as, const float *restrict b,
                                                                           float bs, float *restrict o,
                                                                           int64_t n) {
    switch (op) {
    case BA_OP_ADD: BIN_LOOPS(x + y) break;
    case BA_OP_SUB: BIN_LOOPS(x - y) break;
    case BA_OP_MUL: BIN_LOOPS(x * y) break;
    case BA_OP_DIV: BIN_LOOPS(x / y) break;
    case BA_OP_MAX: BIN_LOOPS((x != x || x > y) ? x : y) break;
    case BA_OP_MIN: BIN_LOOPS((x != x || x < y) ? x : y) break;
    default: break;
    }
}

/* One block: len floats at y (element pos of the output; channel c in plane
 * mode, channels c0.. in row mode), in place. */
static void epi_block(const epi_t *e, float *y, int64_t pos, int64_t len, int64_t c, int64_t c0) {
    /* register 0 is y itself (read until the last step); the last step writes y unless it reads
     * register 0 (then it writes its register and y gets a copy) */
    float regs[FUSE_MAX_NODES + 1][FUSE_BLOCK];
    const step_t *last = e->nsteps > 0 ? &e->steps[e->nsteps - 1] : NULL;
    const int direct = last && !(last->a.kind == O_REG && last->a.reg == 0) &&
                       !(last->kind == S_BINARY && last->b.kind == O_REG && last->b.reg == 0);
    for (int k = 0; k < e->nsteps; k++) {
        const step_t *s = &e->steps[k];
        float *o = direct && k + 1 == e->nsteps ? y : regs[k + 1];
        if (s->kind == S_UNARY) {
            ba_ew_unary_f32(s->u, s->a.reg ? regs[s->a.reg] : y, o, len);
        } else if (s->kind == S_BN) {
            const float *x = s->a.reg ? regs[s->a.reg] : y;
            if (e->row) {
                const float *sa = s->bn_a + c0, *sb = s->bn_b + c0;
#pragma omp simd
                for (int64_t i = 0; i < len; i++) o[i] = x[i] * sa[i] + sb[i];
            } else {
                const float sa = s->bn_a[c], sb = s->bn_b[c];
#pragma omp simd
                for (int64_t i = 0; i < len; i++) o[i] = x[i] * sa + sb;
            }
        } else {
            float as = 0.0f, bs = 0.0f;
            const float *a = operand(e, &s->a, regs, y, pos, c, c0, &as),
                        *b = operand(e, &s->b, regs, y, pos, c, c0, &bs);
            bin_block(s->op, a, as, b, bs, o, len); /* a member reads a region value: a or b is set */
        }
    }
    if (!direct && e->nsteps > 0) memcpy(y, regs[e->nsteps], (size_t)len * sizeof(float));
}

static void epi_run(const epi_t *e, float *y) {
    const int64_t per =
        e->row ? (e->C + FUSE_BLOCK - 1) / FUSE_BLOCK : (e->inner + FUSE_BLOCK - 1) / FUSE_BLOCK;
    const int64_t lines = e->row ? e->outer : e->outer * e->C, span = e->row ? e->C : e->inner;
    const int64_t nblocks = lines * per;
    const int par = lines * span >= FUSE_PAR_MIN && omp_get_level() == 0;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t bi = 0; bi < nblocks; bi++) {
        const int64_t line = bi / per, off = (bi % per) * FUSE_BLOCK;
        const int64_t len = span - off < FUSE_BLOCK ? span - off : FUSE_BLOCK;
        const int64_t pos = line * span + off;
        if (e->row)
            epi_block(e, y + pos, pos, len, 0, off);
        else
            epi_block(e, y + pos, pos, len, line % e->C, 0);
    }
}

/* Classifies constant tensor c as an operand against output t (channel
 * axis ax): a scalar, or one value per channel broadcast along the rest. 0
 * when it would need any other broadcast. */
static int const_operand(const ba_tensor_t *c, const ba_tensor_t *t, int ax, operand_t *o) {
    if (c->dtype != BA_DT_F32 || c->ndim > t->ndim) return 0;
    if (c->numel == 1) {
        o->kind = O_SCALAR;
        o->s = *(const float *)c->data;
        return 1;
    }
    for (int d = 0; d < c->ndim; d++) {
        int td = t->ndim - c->ndim + d;
        int64_t cd = c->shape[d];
        if (cd == 1) continue;
        if (td != ax || cd != t->shape[td]) return 0;
    }
    o->kind = O_CHAN;
    o->v = c->data;
    return 1;
}

/* Small planes (a late conv's 4x4 or 1x1 maps) would make blocks of a few
 * floats: the epilogue then runs along whole images instead, C * inner floats
 * per row, with each per-channel value repeated over its plane (*buf). */
static ba_status widen(epi_t *e, float **buf, ba_error *err) {
    const int64_t len = e->C * e->inner;
    int nv = 0;
    for (int k = 0; k < e->nsteps; k++) {
        const step_t *s = &e->steps[k];
        nv += s->kind == S_BN ? 2 : (s->a.kind == O_CHAN) + (s->b.kind == O_CHAN);
    }
    float *w = ba_malloc(sizeof(float) * (size_t)(nv > 0 ? nv : 1) * (size_t)len, err);
    if (!w) return BA_ERR_NOMEM;
    float *p = w;
#define WIDEN(SRC, DST)                                                                                      \
    do {                                                                                                     \
        for (int64_t c = 0; c < e->C; c++) {                                                                 \
            const float v_ = (SRC)[c]; /* read once: the stores below may alias it for the compiler */       \
            float *row_ = p + c * e->inner;                                                                  \
            for (int64_t i = 0; i < e->inner; i++) row_[i] = v_;                                             \
        }                                                                                                    \
        (DST) = p;                                                                                           \
        p += len;                                                                                            \
    } while (0)
    for (int k = 0; k < e->nsteps; k++) {
        step_t *s = &e->steps[k];
        if (s->kind == S_BN) {
            WIDEN(s->bn_a, s->bn_a);
            WIDEN(s->bn_b, s->bn_b);
        }
        if (s->kind == S_BINARY && s->a.kind == O_CHAN) WIDEN(s->a.v, s->a.v);
        if (s->kind == S_BINARY && s->b.kind == O_CHAN) WIDEN(s->b.v, s->b.v);
    }
#undef WIDEN
    e->row = 1;
    e->C = len;
    e->inner = 1;
    *buf = w;
    return BA_OK;
}

/* A constant (const_operand) or a value made before the anchor of exactly
 * the output's shape, float32 (O_FULL). */
static int value_operand(const ba_model_t *m, ba_tensor_t *const *vals, int id, const ba_tensor_t *y, int ax,
                         operand_t *o) {
    const ba_tensor_t *c = vals[id];
    if (!c) return 0;
    if (m->values[id].constant) return const_operand(c, y, ax, o);
    if (c->dtype != BA_DT_F32 || c->ndim != y->ndim || c->numel != y->numel) return 0;
    for (int d = 0; d < y->ndim; d++)
        if (c->shape[d] != y->shape[d]) return 0;
    o->kind = O_FULL;
    o->v = c->data;
    return 1;
}

/* Members run one by one through their kernels (an operand the epilogue
 * does not take). */
static ba_status run_unfused(const region_t *r, const ba_model_t *m, ba_tensor_t *const *vals,
                             ba_tensor_t **t, ba_error *err) {
    ba_tensor_t *rt[FUSE_MAX_NODES + 1] = {*t};
    int rid[FUSE_MAX_NODES + 1] = {m->nodes[r->anchor].outputs[0]};
    ba_status st = BA_OK;
    int k = 0;
    for (; k < r->n && st == BA_OK; k++) {
        const ba_node_t *n = &m->nodes[r->nodes[k]];
        ba_tensor_t *in[5] = {NULL}, *out[5] = {NULL};
        for (int s = 0; s < n->nin; s++) {
            int id = n->inputs[s];
            in[s] = id >= 0 ? vals[id] : NULL;
            for (int q = 0; q <= k; q++)
                if (rid[q] == id) in[s] = rt[q];
        }
        st = n->def->forward(n, in, n->nin, out, n->nout, err);
        for (int s = 1; s < n->nout; s++) ba_tensor_unref(out[s]);
        if (st != BA_OK) {
            ba_tensor_unref(out[0]);
            if (!strstr(err->msg, n->name))
                ba_error_prefix(err, "%s: node '%s' (%s)", m->path, n->name, n->op_type);
            break;
        }
        rt[k + 1] = out[0];
        rid[k + 1] = n->outputs[0];
    }
    for (int q = 0; q < k; q++) ba_tensor_unref(rt[q]);
    if (st != BA_OK) {
        ba_tensor_unref(rt[k]);
        *t = NULL;
        return st;
    }
    *t = rt[r->n];
    return BA_OK;
}

/* The epilogue of region r on output y (plane mode for a Conv / ConvTranspose
 * output of rank >= 3, else rows): *ok = 0 when an operand does not fit (the
 * nodes then run one by one); *bn gets the BatchNormalization constants (the
 * caller frees it). */
static ba_status epi_build(const region_t *r, const ba_model_t *m, int i, ba_tensor_t *const *vals,
                           const ba_tensor_t *y, epi_t *out, float **bnp, int *okp, ba_error *err) {
    *bnp = NULL;
    *okp = 0;
    const int row =
        !((m->nodes[i].op == BA_OP_CONV || m->nodes[i].op == BA_OP_CONV_TRANSPOSE) && y->ndim >= 3);
    const int ax = y->ndim == 0 ? -1 : row ? y->ndim - 1 : 1;
    epi_t e = {.row = row, .outer = 1, .C = 1, .inner = 1};
    for (int d = 0; d < y->ndim; d++) {
        if (d < ax) e.outer *= y->shape[d];
        if (d == ax) e.C = y->shape[d];
        if (d > ax) e.inner *= y->shape[d];
    }
    int rid[FUSE_MAX_NODES + 1] = {m->nodes[i].outputs[0]};
    float *bn = NULL; /* per BatchNormalization member: a then b, C each */
    int nbn = 0;
    for (int k = 0; k < r->n; k++) nbn += m->nodes[r->nodes[k]].op == BA_OP_BATCH_NORMALIZATION;
    if (nbn) {
        bn = ba_malloc(sizeof(float) * 2 * (size_t)(e.C > 0 ? e.C : 1) * (size_t)nbn, err);
        if (!bn) return BA_ERR_NOMEM;
    }
    int ok = 1, ibn = 0;
    for (int k = 0; k < r->n && ok; k++) {
        const ba_node_t *n = &m->nodes[r->nodes[k]];
        step_t *s = &e.steps[k];
        operand_t *ops[2] = {&s->a, &s->b};
        for (int q = 0; q < 2 && q < n->nin; q++) {
            int id = n->inputs[q];
            ops[q]->kind = -1;
            for (int j = 0; j <= k; j++)
                if (rid[j] == id) *ops[q] = (operand_t){.kind = O_REG, .reg = j};
        }
        if (n->op == BA_OP_BATCH_NORMALIZATION) {
            s->kind = S_BN;
            const ba_tensor_t *sc = vals[n->inputs[1]], *bi = vals[n->inputs[2]], *mu = vals[n->inputs[3]],
                              *va = vals[n->inputs[4]];
            if (ax != 1 || y->ndim < 2 || sc->ndim != 1 || sc->numel != e.C || bi->ndim != 1 ||
                bi->numel != e.C || mu->ndim != 1 || mu->numel != e.C || va->ndim != 1 || va->numel != e.C) {
                ok = 0;
                break;
            }
            const float eps = ba_node_attr_float(n, "epsilon", FUSE_BN_EPS);
            float *fa = bn + (size_t)ibn * 2 * (size_t)e.C, *fb = fa + e.C;
            const float *scv = sc->data, *biv = bi->data, *muv = mu->data, *vav = va->data;
            for (int64_t c = 0; c < e.C; c++) { /* ops_norm.c's a and b */
                const float a = scv[c] / sqrtf(vav[c] + eps), b = biv[c] - muv[c] * a;
                fa[c] = a;
                fb[c] = b;
            }
            s->bn_a = fa;
            s->bn_b = fb;
            ibn++;
        } else if (is_binary_op(n->op)) {
            s->kind = S_BINARY;
            s->op = n->op;
            for (int q = 0; q < 2 && ok; q++)
                if (ops[q]->kind < 0) ok = value_operand(m, vals, n->inputs[q], y, ax, ops[q]);
        } else {
            s->kind = S_UNARY;
            s->u = &r->u[k];
        }
        rid[k + 1] = n->outputs[0];
    }
    if (!ok) {
        free(bn);
        return BA_OK;
    }
    e.nsteps = r->n;
    *out = e;
    *bnp = bn;
    *okp = 1;
    return BA_OK;
}

/* The in-kernel epilogue of this thread (ba_fuse_tile_arm). */
static _Thread_local struct {
    const ba_fuse_plan_t *p;
    const ba_model_t *m;
    ba_tensor_t *const *vals;
    int i, armed, applied;
    epi_t e;
    float *bn;
} tile;

void ba_fuse_tile_arm(const ba_fuse_plan_t *p, const ba_model_t *m, int i, ba_tensor_t *const *vals) {
    ba_fuse_tile_disarm();
    if (ba_fuse_role(p, i) != BA_FUSE_ANCHOR) return;
    tile.p = p;
    tile.m = m;
    tile.vals = vals;
    tile.i = i;
    tile.armed = 1;
}

void ba_fuse_tile_disarm(void) {
    free(tile.bn);
    tile.bn = NULL;
    tile.armed = tile.applied = 0;
    tile.p = NULL;
}

/* ba_kern_epi_t's fn: len floats of channel c's plane at element pos, in blocks. */
static void tile_apply(const void *ctx, float *y, int64_t pos, int64_t len, int64_t c) {
    const epi_t *e = ctx;
    for (int64_t off = 0; off < len; off += FUSE_BLOCK)
        epi_block(e, y + off, pos + off, len - off < FUSE_BLOCK ? len - off : FUSE_BLOCK, c, 0);
}

const ba_kern_epi_t *ba_fuse_tile_take(const ba_tensor_t *y, ba_kern_epi_t *k) {
    if (!tile.armed || tile.applied || !y || y->dtype != BA_DT_F32 || y->ndim < 3 || y->numel == 0 ||
        tile.m->nodes[tile.i].op != BA_OP_CONV)
        return NULL;
    const region_t *r = &tile.p->regions[tile.p->region[tile.i]];
    ba_error e = {0};
    int ok = 0;
    free(tile.bn);
    tile.bn = NULL;
    if (epi_build(r, tile.m, tile.i, tile.vals, y, &tile.e, &tile.bn, &ok, &e) != BA_OK || !ok ||
        tile.e.row || tile.e.inner <= 0)
        return NULL; /* the separate pass decides (and reports an allocation failure) */
    tile.applied = 1;
    *k = (ba_kern_epi_t){tile_apply, &tile.e, y->data, tile.e.C, tile.e.inner};
    return k;
}

ba_status ba_fuse_region_run(const ba_fuse_plan_t *p, const ba_model_t *m, int i, ba_tensor_t *const *vals,
                             ba_tensor_t **t, int *value, ba_error *err) {
    const region_t *r = &p->regions[p->region[i]];
    *value = m->nodes[r->nodes[r->n - 1]].outputs[0];
    const int done = tile.armed && tile.applied && tile.p == p && tile.i == i;
    ba_fuse_tile_disarm();
    if (done) return BA_OK; /* the anchor's kernel applied the epilogue */
    ba_tensor_t *y = *t;
    if (y->dtype != BA_DT_F32) return run_unfused(r, m, vals, t, err);
    epi_t e;
    float *bn = NULL;
    int ok = 0;
    if (epi_build(r, m, i, vals, y, &e, &bn, &ok, err) != BA_OK) {
        ba_tensor_unref(y);
        *t = NULL;
        return err->code;
    }
    if (!ok) return run_unfused(r, m, vals, t, err);
    float *wide = NULL;
    if (!e.row && e.inner < FUSE_BLOCK && e.C > 1 && widen(&e, &wide, err) != BA_OK) {
        free(bn);
        ba_tensor_unref(y);
        *t = NULL;
        return err->code;
    }
    if (y->refs != 1 || !y->owns || y->base) { /* the epilogue writes in place */
        ba_tensor_t *c = ba_tensor_clone(y, err);
        ba_tensor_unref(y);
        *t = y = c;
        if (!c) {
            free(bn);
            free(wide);
            return err->code;
        }
    }
    if (y->numel > 0) epi_run(&e, y->data);
    free(bn);
    free(wide);
    return BA_OK;
}
