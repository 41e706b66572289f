/* Light kernels (elementwise, shape, reduce) against numpy/torch references
 * in fixtures/ops_light/cases.txt (made by fixtures/make_op_refs_light.py):
 * each Test runs every case of one op, plus broadcasting and error promises. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "model/broadcast.h"
#include "model/ops.h"

#define CASES_FILE BA_FIXTURES "/ops_light/cases.txt"
#define MAX_IO 8
#define MAX_ATTR 8

typedef struct {
    char label[96], op[48];
    int opset, nout;
    double tol;
    int nattr;
    ba_attr_t attrs[MAX_ATTR];
    int nin;
    ba_tensor_t *in[MAX_IO];
    int nexp;
    ba_tensor_t *exp[MAX_IO];
    int err; /* expected status, 0 = outputs */
} op_case;

/* ---- parsing (strtok over one line at a time) ---- */

static char *tok(void) {
    return strtok(NULL, " \t\n");
}

static ba_tensor_t *parse_tensor(void) {
    char *t = tok();
    if (!t || strcmp(t, "-") == 0) return NULL;
    ba_dtype dt = (ba_dtype)atoi(t);
    int nd = atoi(tok());
    int64_t shape[BA_MAX_DIMS];
    for (int d = 0; d < nd; d++) shape[d] = strtoll(tok(), NULL, 10);
    ba_error err;
    ba_tensor_t *x = ba_tensor_new(dt, nd, shape, &err);
    cr_assert(x, "%s", err.msg);
    for (int64_t i = 0; i < x->numel; i++) {
        char *v = tok();
        cr_assert(v, "short tensor");
        if (ba_dtype_is_float(dt))
            ba_elem_store_f64(x, i, strtod(v, NULL));
        else
            ba_elem_store_i64(x, i, strtoll(v, NULL, 10));
    }
    return x;
}

static void parse_attr(ba_attr_t *a) {
    char *kind = tok();
    a->name = strdup(tok());
    switch (kind[0]) {
    case 'i':
        a->type = BA_ATTR_INT;
        a->i = strtoll(tok(), NULL, 10);
        break;
    case 'f':
        a->type = BA_ATTR_FLOAT;
        a->f = strtof(tok(), NULL);
        break;
    case 's':
        a->type = BA_ATTR_STRING;
        a->s = strdup(tok());
        break;
    case 'I':
        a->type = BA_ATTR_INTS;
        a->n = atoi(tok());
        a->ints = calloc((size_t)a->n + 1, sizeof(int64_t));
        for (int k = 0; k < a->n; k++) a->ints[k] = strtoll(tok(), NULL, 10);
        break;
    case 'F':
        a->type = BA_ATTR_FLOATS;
        a->n = atoi(tok());
        a->floats = calloc((size_t)a->n + 1, sizeof(float));
        for (int k = 0; k < a->n; k++) a->floats[k] = strtof(tok(), NULL);
        break;
    case 'T':
        a->type = BA_ATTR_TENSOR;
        a->t = parse_tensor();
        break;
    default: cr_assert_fail("bad attribute kind %s", kind);
    }
}

static void free_case(op_case *c) {
    for (int i = 0; i < c->nattr; i++) {
        free(c->attrs[i].name);
        free(c->attrs[i].s);
        free(c->attrs[i].ints);
        free(c->attrs[i].floats);
        ba_tensor_unref(c->attrs[i].t);
    }
    for (int i = 0; i < c->nin; i++) ba_tensor_unref(c->in[i]);
    for (int i = 0; i < c->nexp; i++) ba_tensor_unref(c->exp[i]);
    memset(c, 0, sizeof *c);
}

/* Reads every case of `op` (all cases when op is NULL); returns the count. */
static int load_cases(const char *op, op_case **out) {
    FILE *f = fopen(CASES_FILE, "r");
    cr_assert(f, "cannot open %s", CASES_FILE);
    size_t cap = 1 << 16;
    char *line = malloc(cap);
    int n = 0, ncap = 16, keep = 0;
    op_case *cs = calloc((size_t)ncap, sizeof *cs), *c = NULL;
    while (getline(&line, &cap, f) > 0) {
        char *t = strtok(line, " \t\n");
        if (!t || t[0] == '#') continue;
        if (strcmp(t, "case") == 0) {
            if (c && !keep)
                free_case(c);
            else if (c)
                n++;
            if (n == ncap) {
                ncap *= 2;
                cs = realloc(cs, sizeof *cs * (size_t)ncap);
            }
            c = &cs[n];
            memset(c, 0, sizeof *c);
            snprintf(c->label, sizeof c->label, "%s", tok());
            snprintf(c->op, sizeof c->op, "%s", tok());
            c->opset = atoi(tok());
            c->nout = atoi(tok());
            c->tol = strtod(tok(), NULL);
            keep = !op || strcmp(op, c->op) == 0;
            continue;
        }
        if (!keep) continue;
        if (strcmp(t, "a") == 0)
            parse_attr(&c->attrs[c->nattr++]);
        else if (strcmp(t, "i") == 0) {
            c->in[c->nin] = parse_tensor();
            c->nin++;
        } else if (strcmp(t, "o") == 0) {
            c->exp[c->nexp] = parse_tensor();
            c->nexp++;
        } else if (strcmp(t, "e") == 0)
            c->err = atoi(tok());
    }
    if (c && keep)
        n++;
    else if (c)
        free_case(c);
    free(line);
    fclose(f);
    *out = cs;
    return n;
}

/* ---- running ---- */

static void make_node(ba_node_t *node, op_case *c, int *outs) {
    memset(node, 0, sizeof *node);
    node->name = c->label;
    node->op_type = c->op;
    node->domain = "";
    node->opset = c->opset;
    node->nin = c->nin;
    node->nout = c->nout;
    for (int i = 0; i < c->nout; i++) outs[i] = i;
    node->outputs = outs;
    node->nattr = c->nattr;
    node->attrs = c->attrs;
}

static int close_enough(double a, double b, double tol) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    if (isinf(a) || isinf(b)) return a == b;
    return fabs(a - b) <= tol * (1 + fabs(b));
}

static void check_case(op_case *c) {
    const ba_op_def_t *def = ba_op_lookup(c->op, "");
    cr_assert(def, "%s: no kernel for %s", c->label, c->op);
    ba_node_t node;
    int outs[MAX_IO];
    make_node(&node, c, outs);
    ba_tensor_t *got[MAX_IO] = {0};
    ba_error err = {0};
    ba_status st = def->forward(&node, c->in, c->nin, got, c->nout, &err);
    if (c->err) {
        cr_expect_eq(st, (ba_status)c->err, "%s: status %d (want %d): %s", c->label, st, c->err, err.msg);
        if (st != BA_OK)
            cr_expect(strstr(err.msg, c->label), "%s: message does not name the node: %s", c->label, err.msg);
        for (int i = 0; i < c->nout; i++) ba_tensor_unref(got[i]);
        return;
    }
    cr_assert_eq(st, BA_OK, "%s: %s", c->label, err.msg);
    for (int k = 0; k < c->nexp; k++) {
        ba_tensor_t *g = got[k], *e = c->exp[k];
        cr_assert(g, "%s: output %d missing", c->label, k);
        cr_expect_eq(g->dtype, e->dtype, "%s: output %d dtype %s, want %s", c->label, k,
                     ba_dtype_name(g->dtype), ba_dtype_name(e->dtype));
        char b1[128], b2[128];
        int same = g->ndim == e->ndim && !memcmp(g->shape, e->shape, sizeof(int64_t) * (size_t)g->ndim);
        cr_expect(same, "%s: output %d shape %s, want %s", c->label, k,
                  ba_shape_str(g->ndim, g->shape, b1, sizeof b1),
                  ba_shape_str(e->ndim, e->shape, b2, sizeof b2));
        if (!same || g->dtype != e->dtype) continue;
        int bad = 0;
        for (int64_t i = 0; i < e->numel && bad < 3; i++) {
            if (ba_dtype_is_float(e->dtype)) {
                double a = ba_tensor_get_f64(g, i), b = ba_tensor_get_f64(e, i);
                if (!close_enough(a, b, c->tol)) {
                    cr_expect_fail("%s: output %d[%lld] = %.9g, want %.9g", c->label, k, (long long)i, a, b);
                    bad++;
                }
            } else if (ba_tensor_get_i64(g, i) != ba_tensor_get_i64(e, i)) {
                cr_expect_fail("%s: output %d[%lld] = %lld, want %lld", c->label, k, (long long)i,
                               (long long)ba_tensor_get_i64(g, i), (long long)ba_tensor_get_i64(e, i));
                bad++;
            }
        }
    }
    for (int i = 0; i < c->nout; i++) ba_tensor_unref(got[i]);
}

static void run_op(const char *op) {
    op_case *cs;
    int n = load_cases(op, &cs);
    cr_assert_gt(n, 0, "no reference cases for %s", op);
    for (int i = 0; i < n; i++) {
        check_case(&cs[i]);
        free_case(&cs[i]);
    }
    free(cs);
}

#define OP_TEST(OP)                                                                                          \
    Test(ops_light, OP##_matches_reference) {                                                                \
        run_op(#OP);                                                                                         \
    }

/* clang-format off */
OP_TEST(Add)
OP_TEST(Sub)
OP_TEST(Mul)
OP_TEST(Div)
OP_TEST(Pow)
OP_TEST(Mod)
OP_TEST(Equal)
OP_TEST(Less)
OP_TEST(LessOrEqual)
OP_TEST(Greater)
OP_TEST(GreaterOrEqual)
OP_TEST(And)
OP_TEST(Or)
OP_TEST(Xor)
OP_TEST(Not)
OP_TEST(Sum)
OP_TEST(Mean)
OP_TEST(Min)
OP_TEST(Max)
OP_TEST(Where)
OP_TEST(PRelu)
OP_TEST(Sqrt)
OP_TEST(Reciprocal)
OP_TEST(Exp)
OP_TEST(Log)
OP_TEST(Neg)
OP_TEST(Abs)
OP_TEST(Erf)
OP_TEST(Tanh)
OP_TEST(Sigmoid)
OP_TEST(Relu)
OP_TEST(LeakyRelu)
OP_TEST(Elu)
OP_TEST(Selu)
OP_TEST(Clip)
OP_TEST(HardSigmoid)
OP_TEST(HardSwish)
OP_TEST(Gelu)
OP_TEST(Softplus)
OP_TEST(Softsign)
OP_TEST(Mish)
OP_TEST(Floor)
OP_TEST(Ceil)
OP_TEST(Round)
OP_TEST(Sign)
OP_TEST(Sin)
OP_TEST(Cos)
OP_TEST(IsNaN)
OP_TEST(Identity)
OP_TEST(Dropout)
OP_TEST(Flatten)
OP_TEST(Reshape)
OP_TEST(Squeeze)
OP_TEST(Unsqueeze)
OP_TEST(Transpose)
OP_TEST(Concat)
OP_TEST(Split)
OP_TEST(Slice)
OP_TEST(Gather)
OP_TEST(GatherElements)
OP_TEST(Expand)
OP_TEST(Tile)
OP_TEST(Pad)
OP_TEST(Resize)
OP_TEST(Upsample)
OP_TEST(Constant)
OP_TEST(ConstantOfShape)
OP_TEST(Shape)
OP_TEST(Size)
OP_TEST(Range)
OP_TEST(Cast)
OP_TEST(CastLike)
OP_TEST(NonZero)
OP_TEST(ScatterND)
OP_TEST(Trilu)
OP_TEST(ReduceSum)
OP_TEST(ReduceMean)
OP_TEST(ReduceMax)
OP_TEST(ReduceMin)
OP_TEST(ReduceProd)
OP_TEST(ReduceL1)
OP_TEST(ReduceL2)
OP_TEST(ReduceSumSquare)
OP_TEST(ReduceLogSumExp)
OP_TEST(ArgMax)
OP_TEST(ArgMin)
OP_TEST(TopK)
OP_TEST(CumSum)
/* clang-format on */
/* ---- promises beyond the reference table ---- */

Test(ops_light, every_reference_op_has_a_kernel) {
    op_case *cs;
    int n = load_cases(NULL, &cs);
    cr_assert_gt(n, 250);
    for (int i = 0; i < n; i++) {
        cr_expect(ba_op_lookup(cs[i].op, "") != NULL, "%s has no kernel", cs[i].op);
        free_case(&cs[i]);
    }
    free(cs);
}

Test(ops_light, broadcast_shape_rejects_mismatch_naming_caller) {
    int64_t a[] = {2, 3}, b[] = {4}, o[BA_MAX_DIMS];
    int n;
    ba_error err;
    cr_assert_eq(ba_broadcast_shape(2, a, 1, b, &n, o, "node_x", &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "node_x") && strstr(err.msg, "[2, 3]"), "%s", err.msg);
    int64_t c[] = {5, 1, 3}, d[] = {4, 1};
    cr_assert_eq(ba_broadcast_shape(3, c, 2, d, &n, o, "x", &err), BA_OK);
    cr_expect(n == 3 && o[0] == 5 && o[1] == 4 && o[2] == 3);
}

Test(ops_light, broadcast_merges_per_channel_into_rows) {
    /* [N,C,H,W] + [1,C,1,1] walks rows of H*W with the vector constant along a row. */
    int64_t x[] = {2, 3, 4, 5}, v[] = {1, 3, 1, 1};
    const int64_t *shapes[] = {x, v};
    int nd[] = {4, 4};
    ba_bcast_t bc;
    ba_error err;
    cr_assert_eq(ba_bcast_init(&bc, 2, nd, shapes, "t", &err), BA_OK);
    cr_expect_eq(bc.ndim, 3);
    cr_expect_eq(bc.row_len, 20);
    cr_expect_eq(bc.strides[0][2], 1);
    cr_expect_eq(bc.strides[1][2], 0);
    int64_t offs[2];
    ba_bcast_row(&bc, 4, offs); /* n=1, c=1 */
    cr_expect_eq(offs[0], 80);
    cr_expect_eq(offs[1], 1);
}

static ba_tensor_t *ramp(int nd, const int64_t *shape) {
    ba_error err;
    ba_tensor_t *t = ba_tensor_new(BA_DT_F32, nd, shape, &err);
    for (int64_t i = 0; i < t->numel; i++) ((float *)t->data)[i] = (float)(i % 97) * 0.25f - 7.0f;
    return t;
}

static ba_status run1(const char *op, int opset, ba_tensor_t **in, int nin, ba_tensor_t **out,
                      ba_error *err) {
    ba_node_t n = {0};
    int outs[1] = {0};
    n.name = "n0";
    n.op_type = (char *)op;
    n.domain = "";
    n.opset = opset;
    n.nin = nin;
    n.nout = 1;
    n.outputs = outs;
    return ba_op_lookup(op, "")->forward(&n, in, nin, out, 1, err);
}

Test(ops_light, large_broadcast_add_matches_scalar_loop) {
    /* Big enough to take the parallel path; checks every element. */
    int64_t xs[] = {4, 16, 64, 64}, vs[] = {16, 1, 1};
    ba_tensor_t *in[2] = {ramp(4, xs), ramp(3, vs)}, *o = NULL;
    ba_error err;
    cr_assert_eq(run1("Add", 13, in, 2, &o, &err), BA_OK, "%s", err.msg);
    const float *x = in[0]->data, *v = in[1]->data, *r = o->data;
    int bad = 0;
    for (int64_t i = 0; i < o->numel; i++) bad += r[i] != x[i] + v[(i / 4096) % 16];
    cr_expect_eq(bad, 0);
    ba_tensor_unref(o);
    ba_tensor_unref(in[0]);
    ba_tensor_unref(in[1]);
}

Test(ops_light, reshape_and_squeeze_return_views) {
    int64_t xs[] = {2, 1, 6};
    ba_tensor_t *x = ramp(3, xs), *o = NULL;
    ba_error err;
    cr_assert_eq(run1("Squeeze", 11, &x, 1, &o, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(o->data, x->data);
    cr_expect_eq(o->base, x);
    ba_tensor_unref(o);
    ba_tensor_unref(x);
}

Test(ops_light, missing_required_input_is_an_error_not_a_crash) {
    static const char *ops[] = {"Add",       "Where", "Reshape",   "Gather", "Slice", "Concat",
                                "Expand",    "Tile",  "Pad",       "Resize", "Range", "CumSum",
                                "ReduceSum", "TopK",  "Transpose", "Clip"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        ba_tensor_t *in[3] = {NULL, NULL, NULL}, *o = NULL;
        ba_error err;
        ba_status st = run1(ops[i], 13, in, 3, &o, &err);
        cr_expect_eq(st, BA_ERR_INPUT, "%s: status %d", ops[i], st);
        cr_expect_null(o, "%s", ops[i]);
    }
}
