/* The heavy kernels (Conv, ConvTranspose, Gemm, MatMul, pools, norms, softmax)
 * against references computed independently by PyTorch/numpy in float64
 * (tests/fixtures/make_op_refs_heavy.py → ops_heavy/cases.{h,bin}), plus the
 * promise that bad shapes and dtypes give BA_ERR_INPUT naming the node. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/ops.h"
#include "tests/helpers.h"

/* Allowed error: float32 accumulation over at most a few hundred products of
 * O(1) values, relative to the output's magnitude (floor 1). */
#define HEAVY_RTOL 1e-5
#define HEAVY_MAX_ATTRS 8
#define HEAVY_MAX_INTS 16

typedef struct {
    int ndim; /* -1: absent optional input / not requested output */
    int64_t shape[6];
    long off; /* in floats, into cases.bin */
    int is_int;
} heavy_arr_t;

typedef struct {
    const char *name, *op;
    int opset;
    const char *attrs; /* "name=i:3;name=is:1,2;name=f:0.5;name=s:SAME_UPPER" */
    int nin;
    heavy_arr_t in[5];
    int nout;
    heavy_arr_t out[3];
} heavy_case_t;

#include "fixtures/ops_heavy/cases.h"

typedef struct {
    ba_node_t node;
    ba_attr_t attrs[HEAVY_MAX_ATTRS];
    char names[HEAVY_MAX_ATTRS][32];
    char strs[HEAVY_MAX_ATTRS][32];
    int64_t ints[HEAVY_MAX_ATTRS][HEAVY_MAX_INTS];
    int inputs[5], outputs[3];
} test_node_t;

static float *load_blob(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/ops_heavy/cases.bin", BA_FIXTURES);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    float *b = malloc(sizeof(float) * HEAVY_BLOB_FLOATS);
    cr_assert_not_null(b);
    cr_assert_eq(fread(b, sizeof(float), HEAVY_BLOB_FLOATS, f), (size_t)HEAVY_BLOB_FLOATS, "short %s", path);
    fclose(f);
    return b;
}

/* Parses the attribute string of a case into tn->attrs. */
static void parse_attrs(test_node_t *tn, const char *spec) {
    int n = 0;
    const char *p = spec;
    while (*p) {
        cr_assert_lt(n, HEAVY_MAX_ATTRS);
        ba_attr_t *a = &tn->attrs[n];
        const char *eq = strchr(p, '='), *colon = strchr(p, ':');
        const char *end = strchr(p, ';');
        if (!end) end = p + strlen(p);
        cr_assert(eq && colon && colon < end, "bad attr spec %s", spec);
        snprintf(tn->names[n], sizeof tn->names[n], "%.*s", (int)(eq - p), p);
        a->name = tn->names[n];
        const char *v = colon + 1;
        int vlen = (int)(end - v);
        if (strncmp(eq + 1, "is:", 3) == 0) {
            a->type = BA_ATTR_INTS;
            a->ints = tn->ints[n];
            const char *q = v;
            while (q < end) {
                cr_assert_lt(a->n, HEAVY_MAX_INTS);
                char *e;
                a->ints[a->n++] = strtoll(q, &e, 10);
                q = e + (*e == ',');
            }
        } else if (strncmp(eq + 1, "i:", 2) == 0) {
            a->type = BA_ATTR_INT;
            a->i = strtoll(v, NULL, 10);
        } else if (strncmp(eq + 1, "f:", 2) == 0) {
            a->type = BA_ATTR_FLOAT;
            a->f = strtof(v, NULL);
        } else {
            a->type = BA_ATTR_STRING;
            snprintf(tn->strs[n], sizeof tn->strs[n], "%.*s", vlen, v);
            a->s = tn->strs[n];
        }
        n++;
        p = *end ? end + 1 : end;
    }
    tn->node.nattr = n;
    tn->node.attrs = tn->attrs;
}

static void make_node(test_node_t *tn, const char *name, const char *op, int opset, const char *attrs,
                      int nin, int nout) {
    memset(tn, 0, sizeof *tn);
    tn->node.name = (char *)name;
    tn->node.op_type = (char *)op;
    tn->node.domain = (char *)"";
    tn->node.opset = opset;
    tn->node.def = ba_op_lookup(op, "");
    cr_assert_not_null(tn->node.def, "no kernel for %s", op);
    tn->node.nin = nin;
    tn->node.nout = nout;
    for (int i = 0; i < nin; i++) tn->inputs[i] = i;
    for (int i = 0; i < nout; i++) tn->outputs[i] = nin + i;
    tn->node.inputs = tn->inputs;
    tn->node.outputs = tn->outputs;
    parse_attrs(tn, attrs);
}

static ba_tensor_t *make_tensor(const float *blob, const heavy_arr_t *a) {
    ba_error err = {0};
    ba_tensor_t *t = ba_tensor_new(BA_DT_F32, a->ndim, a->shape, &err);
    cr_assert_not_null(t, "%s", err.msg);
    memcpy(t->data, blob + a->off, ba_tensor_nbytes(t));
    return t;
}

/* Runs one case and compares every output; returns the worst scaled error. */
static double run_case(const float *blob, const heavy_case_t *c) {
    test_node_t tn;
    make_node(&tn, c->name, c->op, c->opset, c->attrs, c->nin, c->nout);
    ba_tensor_t *in[5] = {0}, *out[3] = {0};
    for (int i = 0; i < c->nin; i++) in[i] = c->in[i].ndim >= 0 ? make_tensor(blob, &c->in[i]) : NULL;
    for (int i = 0; i < c->nout; i++)
        if (c->out[i].ndim < 0) tn.outputs[i] = -1;
    ba_error err = {0};
    ba_status st = tn.node.def->forward(&tn.node, in, c->nin, out, c->nout, &err);
    cr_assert_eq(st, BA_OK, "%s: %s", c->name, err.msg);
    double worst = 0.0;
    for (int o = 0; o < c->nout; o++) {
        const heavy_arr_t *r = &c->out[o];
        if (r->ndim < 0) continue;
        ba_tensor_t *t = out[o];
        cr_assert_not_null(t, "%s: output %d missing", c->name, o);
        cr_assert_eq(t->ndim, r->ndim, "%s: output %d rank %d, expected %d", c->name, o, t->ndim, r->ndim);
        for (int d = 0; d < r->ndim; d++)
            cr_assert_eq(t->shape[d], r->shape[d], "%s: output %d dim %d is %lld, expected %lld", c->name, o,
                         d, (long long)t->shape[d], (long long)r->shape[d]);
        const float *ref = blob + r->off;
        double scale = 1.0;
        for (int64_t i = 0; i < t->numel; i++) scale = fmax(scale, fabs(ref[i]));
        for (int64_t i = 0; i < t->numel; i++) {
            if (r->is_int) {
                cr_assert_eq(t->dtype, BA_DT_I64);
                cr_assert_eq(((int64_t *)t->data)[i], (int64_t)ref[i],
                             "%s: index %lld is %lld, expected %lld", c->name, (long long)i,
                             (long long)((int64_t *)t->data)[i], (long long)ref[i]);
                continue;
            }
            double e = fabs(((float *)t->data)[i] - (double)ref[i]) / scale;
            if (e > worst) worst = e;
            cr_assert_leq(e, HEAVY_RTOL, "%s: output %d element %lld is %.9g, expected %.9g", c->name, o,
                          (long long)i, ((float *)t->data)[i], ref[i]);
        }
    }
    for (int i = 0; i < c->nin; i++) ba_tensor_unref(in[i]);
    for (int i = 0; i < c->nout; i++) ba_tensor_unref(out[i]);
    return worst;
}

/* Runs every case of op_type op; at least one must exist. */
static void run_op(const char *op) {
    float *blob = load_blob();
    int n = 0;
    double worst = 0.0;
    for (int i = 0; i < HEAVY_NCASES; i++)
        if (strcmp(heavy_cases[i].op, op) == 0) {
            worst = fmax(worst, run_case(blob, &heavy_cases[i]));
            n++;
        }
    free(blob);
    cr_assert_gt(n, 0, "no fixture cases for %s", op);
    cr_log_info("%s: %d cases, worst scaled error %.3g", op, n, worst);
}

Test(ops_heavy, conv_matches_torch_for_1d_2d_3d_groups_depthwise_pads_auto_pad) {
    run_op("Conv");
}
Test(ops_heavy, conv_transpose_matches_torch_for_strides_pads_output_padding_output_shape) {
    run_op("ConvTranspose");
}
Test(ops_heavy, gemm_matches_numpy_for_alpha_beta_trans_and_c_broadcast) {
    run_op("Gemm");
}
Test(ops_heavy, matmul_follows_numpy_for_1d_and_broadcast_batches) {
    run_op("MatMul");
}
Test(ops_heavy, maxpool_matches_torch_values_and_indices) {
    run_op("MaxPool");
}
Test(ops_heavy, averagepool_matches_torch_for_pads_ceil_mode_and_count_include_pad) {
    run_op("AveragePool");
}
Test(ops_heavy, lppool_is_the_p_norm_of_each_window) {
    run_op("LpPool");
}
Test(ops_heavy, global_average_pool_is_the_plane_mean) {
    run_op("GlobalAveragePool");
}
Test(ops_heavy, global_max_pool_is_the_plane_max) {
    run_op("GlobalMaxPool");
}
Test(ops_heavy, batchnorm_inference_matches_torch) {
    run_op("BatchNormalization");
}
Test(ops_heavy, layernorm_matches_torch_with_stats_outputs) {
    run_op("LayerNormalization");
}
Test(ops_heavy, instancenorm_matches_torch) {
    run_op("InstanceNormalization");
}
Test(ops_heavy, softmax_follows_the_opset_axis_rules) {
    run_op("Softmax");
}
Test(ops_heavy, logsoftmax_follows_the_opset_axis_rules) {
    run_op("LogSoftmax");
}

/* ---- errors: BA_ERR_INPUT naming the node, never a crash ---- */

/* Runs op on tensors of the given shapes (zero-filled, dtype dt for input 0). */
static ba_status run_shapes(const char *op, const char *attrs, int nin, const int64_t shapes[][4],
                            const int *ndims, ba_dtype dt0, ba_error *err) {
    test_node_t tn;
    make_node(&tn, "bad_node_7", op, 17, attrs, nin, 1);
    ba_tensor_t *in[5] = {0}, *out[1] = {0};
    for (int i = 0; i < nin; i++) {
        in[i] = ba_tensor_new(i == 0 ? dt0 : BA_DT_F32, ndims[i], shapes[i], err);
        cr_assert_not_null(in[i]);
    }
    ba_status st = tn.node.def->forward(&tn.node, in, nin, out, 1, err);
    for (int i = 0; i < nin; i++) ba_tensor_unref(in[i]);
    ba_tensor_unref(out[0]);
    return st;
}

static void expect_input_error(ba_status st, const ba_error *err) {
    cr_assert_eq(st, BA_ERR_INPUT, "status %d (%s)", st, err->msg);
    cr_assert_not_null(strstr(err->msg, "bad_node_7"), "message does not name the node: %s", err->msg);
}

Test(ops_heavy, conv_channel_mismatch_is_an_input_error_naming_the_node) {
    const int64_t sh[2][4] = {{1, 3, 8, 8}, {4, 2, 3, 3}};
    const int nd[2] = {4, 4};
    ba_error err = {0};
    expect_input_error(run_shapes("Conv", "", 2, sh, nd, BA_DT_F32, &err), &err);
}

Test(ops_heavy, conv_kernel_larger_than_padded_input_is_an_input_error) {
    const int64_t sh[2][4] = {{1, 1, 2, 2}, {1, 1, 5, 5}};
    const int nd[2] = {4, 4};
    ba_error err = {0};
    expect_input_error(run_shapes("Conv", "", 2, sh, nd, BA_DT_F32, &err), &err);
}

Test(ops_heavy, non_float_input_is_an_input_error) {
    const int64_t sh[2][4] = {{2, 3}, {3, 4}};
    const int nd[2] = {2, 2};
    ba_error err = {0};
    expect_input_error(run_shapes("MatMul", "", 2, sh, nd, BA_DT_I64, &err), &err);
    cr_assert_not_null(strstr(err.msg, "int64"), "%s", err.msg);
}

Test(ops_heavy, matmul_inner_dim_mismatch_is_an_input_error) {
    const int64_t sh[2][4] = {{2, 3, 4}, {5, 2}};
    const int nd[2] = {3, 2};
    ba_error err = {0};
    expect_input_error(run_shapes("MatMul", "", 2, sh, nd, BA_DT_F32, &err), &err);
}

Test(ops_heavy, matmul_unbroadcastable_batches_are_an_input_error) {
    const int64_t sh[2][4] = {{2, 3, 4}, {3, 4, 5}};
    const int nd[2] = {3, 3};
    ba_error err = {0};
    expect_input_error(run_shapes("MatMul", "", 2, sh, nd, BA_DT_F32, &err), &err);
}

Test(ops_heavy, gemm_c_that_does_not_broadcast_is_an_input_error) {
    const int64_t sh[3][4] = {{2, 3}, {3, 4}, {3}};
    const int nd[3] = {2, 2, 1};
    ba_error err = {0};
    expect_input_error(run_shapes("Gemm", "", 3, sh, nd, BA_DT_F32, &err), &err);
}

Test(ops_heavy, pool_without_kernel_shape_is_an_input_error) {
    const int64_t sh[1][4] = {{1, 2, 4, 4}};
    const int nd[1] = {4};
    ba_error err = {0};
    expect_input_error(run_shapes("MaxPool", "", 1, sh, nd, BA_DT_F32, &err), &err);
}

Test(ops_heavy, batchnorm_wrong_channel_count_is_an_input_error) {
    const int64_t sh[5][4] = {{1, 3, 2, 2}, {4}, {3}, {3}, {3}};
    const int nd[5] = {4, 1, 1, 1, 1};
    ba_error err = {0};
    expect_input_error(run_shapes("BatchNormalization", "", 5, sh, nd, BA_DT_F32, &err), &err);
}

Test(ops_heavy, missing_required_input_is_an_input_error) {
    const int64_t sh[1][4] = {{1, 3, 4, 4}};
    const int nd[1] = {4};
    ba_error err = {0};
    expect_input_error(run_shapes("Conv", "", 1, sh, nd, BA_DT_F32, &err), &err);
}
