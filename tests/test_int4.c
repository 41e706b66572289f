/* int4/uint4 QDQ at opset >= 21 (SPEC §9 onnx-qdq): `quantize --format qdq`
 * of 3/4-bit plans on the digits MLP raised to opset 21 stores packed
 * int4/uint4 codes (blocked DequantizeLinear for group:16); our engine loads
 * them back and computes what `eval --plan` measured, bit for bit, and ONNX
 * Runtime agrees. Plus the kernels' blocked and int4 paths on hand-made inputs. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "eval/npy.h"
#include "model/model.h"
#include "model/ops.h"
#include "onnx/onnx.pb-c.h"
#include "quant/plan.h"
#include "quant/quant.h"
#include "tests/helpers.h"

#define DIG BA_FIXTURES "/digits/"
#define MODEL21 DIG "mlp_dyn_op21.onnx"
#define DATA DIG "test_x_flat.npy"
#define NLAYERS 3
#define GROUP 16
/* ORT's GEMM sums in another order: measured ≤ 2.5e-7 relative on these plans. */
#define ORT_REL_TOL 1e-5

typedef struct {
    const char *scheme, *gran;
    int bits[NLAYERS];
} variant_t;

static const variant_t VARIANTS[] = {
    {"symmetric", "per-channel", {4, 3, 4}},
    {"asymmetric", "per-tensor", {3, 4, 8}}, /* one zero point: an odd nibble count; int8 beside uint4 */
    {"asymmetric", "group:16", {4, 3, 4}},
    {"symmetric", "group:16", {4, 4, 3}},
};

static ba_tensor_t *load_npy(const char *path) {
    ba_error err;
    ba_tensor_t *t = NULL;
    cr_assert_eq(ba_npy_load(path, &t, &err), BA_OK, "%s", err.msg);
    return t;
}

static void cli_ok(const char *const *argv) {
    char *out = NULL, *err = NULL;
    int st = -1;
    cr_assert_eq(ba_test_run(argv, &out, &err, &st), 0);
    cr_assert_eq(st, 0, "%s %s: exit %d: %s", argv[1], argv[2], st, err);
    free(out);
    free(err);
}

static Onnx__ModelProto *read_proto(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, (size_t)n, b);
    free(b);
    cr_assert(m, "%s: protobuf parse failed", path);
    return m;
}

static const Onnx__TensorProto *find_init(const Onnx__ModelProto *m, const char *name) {
    for (size_t i = 0; i < m->graph->n_initializer; i++)
        if (!strcmp(m->graph->initializer[i]->name, name)) return m->graph->initializer[i];
    cr_assert_fail("no initializer %s", name);
    return NULL;
}

static int64_t dq_block_size(const Onnx__ModelProto *m, const char *input) {
    for (size_t i = 0; i < m->graph->n_node; i++) {
        const Onnx__NodeProto *n = m->graph->node[i];
        if (strcmp(n->op_type, "DequantizeLinear") || strcmp(n->input[0], input)) continue;
        for (size_t a = 0; a < n->n_attribute; a++)
            if (!strcmp(n->attribute[a]->name, "block_size")) return n->attribute[a]->i;
        return 0;
    }
    cr_assert_fail("no DequantizeLinear reads %s", input);
    return -1;
}

static int have_ort(void) {
    struct stat sb;
    return stat(BA_SOURCE_DIR "/tests/node/node_modules/onnxruntime-node", &sb) == 0;
}

static void check_variant(const variant_t *v) {
    ba_error err;
    char dir[512], plan[600], qdq[600], ref[600], out[600], ort[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(plan, sizeof plan, "%s/p.plan.json", dir);
    snprintf(qdq, sizeof qdq, "%s/q.onnx", dir);
    snprintf(ref, sizeof ref, "%s/ref.npy", dir);
    snprintf(out, sizeof out, "%s/out.npy", dir);
    snprintf(ort, sizeof ort, "%s/ort.npy", dir);

    ba_model_t *m = NULL;
    cr_assert_eq(ba_model_load(MODEL21, NULL, &m, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(m->nlayers, NLAYERS);
    ba_quant_cfg_t cfg = ba_quant_cfg_default();
    cr_assert_eq(ba_quant_cfg_parse_scheme(v->scheme, &cfg, &err), BA_OK);
    cr_assert_eq(ba_quant_cfg_parse_granularity(v->gran, &cfg, &err), BA_OK);
    cfg.act_bits = 0;
    ba_plan_t *p = NULL;
    cr_assert_eq(ba_plan_from_bits(m, v->bits, &cfg, &p, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_plan_write(plan, p, &err), BA_OK, "%s", err.msg);
    ba_plan_free(p);

    const char *ev[] = {BA_CLI, "eval", MODEL21, "--data", DATA, "--plan", plan, "--save-output", ref, NULL};
    cli_ok(ev);
    const char *qa[] = {BA_CLI, "quantize", MODEL21, "--plan", plan, "-o",
                        qdq,    "--format", "qdq",   "-q",     NULL};
    cli_ok(qa);
    const char *eq[] = {BA_CLI, "eval", qdq, "--data", DATA, "--save-output", out, NULL};
    cli_ok(eq);

    /* The file: packed int4/uint4 codes and zero points, blocked DQ for groups. */
    Onnx__ModelProto *mp = read_proto(qdq);
    int asym = !strcmp(v->scheme, "asymmetric"), group = !strncmp(v->gran, "group:", 6);
    ba_model_t *mq = NULL;
    cr_assert_eq(ba_model_load(qdq, NULL, &mq, &err), BA_OK, "%s", err.msg);
    for (int l = 0; l < NLAYERS; l++) {
        const ba_layer_t *L = &m->layers[l];
        char qn[300], zn[300];
        snprintf(qn, sizeof qn, "%s_quantized", L->name);
        snprintf(zn, sizeof zn, "%s_zero_point", L->name);
        const Onnx__TensorProto *q = find_init(mp, qn), *z = find_init(mp, zn);
        int four = v->bits[l] <= 4;
        int want = four ? (asym ? BA_DT_U4 : BA_DT_I4) : (asym ? BA_DT_U8 : BA_DT_I8);
        cr_expect_eq(q->data_type, want, "%s: data_type %d", qn, q->data_type);
        cr_expect_eq(z->data_type, want, "%s: data_type %d", zn, z->data_type);
        int64_t zcount = 1;
        for (size_t d = 0; d < z->n_dims; d++) zcount *= z->dims[d];
        size_t qbytes = four ? (size_t)(L->params + 1) / 2 : (size_t)L->params;
        size_t zbytes = four ? (size_t)(zcount + 1) / 2 : (size_t)zcount;
        cr_expect_eq(q->raw_data.len, qbytes, "%s: %zu bytes", qn, q->raw_data.len);
        cr_expect_eq(z->raw_data.len, zbytes, "%s: %zu bytes", zn, z->raw_data.len);
        cr_expect_eq(dq_block_size(mp, qn), group ? GROUP : 0, "%s: block_size", qn);

        /* Loaded back unpacked: exactly the codes ba_quant_weight makes. */
        ba_qweight_t qw;
        cr_assert_eq(ba_quant_weight(m->values[L->value].constant, L->ch_axis, v->bits[l], &cfg, &qw, &err),
                     BA_OK, "%s", err.msg);
        int id = ba_model_find_value(mq, qn);
        cr_assert(id >= 0 && mq->values[id].constant, "%s not a constant in the loaded file", qn);
        const ba_tensor_t *c = mq->values[id].constant;
        cr_expect_eq(c->dtype, asym ? BA_DT_U8 : BA_DT_I8);
        cr_assert_eq(c->numel, qw.codes->numel);
        cr_expect_eq(memcmp(c->data, qw.codes->data, (size_t)c->numel), 0, "%s: codes differ after unpacking",
                     qn);
        ba_qweight_free(&qw);
    }
    ba_model_free(mq);
    onnx__model_proto__free_unpacked(mp, NULL);

    ba_tensor_t *r = load_npy(ref), *o = load_npy(out);
    cr_assert_eq(r->numel, o->numel);
    cr_expect_eq(memcmp(r->data, o->data, (size_t)r->numel * sizeof(float)), 0,
                 "%s %s: QDQ file in our engine is not bit-exact with eval --plan", v->scheme, v->gran);
    if (have_ort()) {
        const char *ra[] = {"/usr/bin/env", "node", BA_SOURCE_DIR "/tests/node/run_ort.js", qdq, ort,
                            DATA,           NULL};
        cli_ok(ra);
        ba_tensor_t *t = load_npy(ort);
        double md = 0, mr = 0;
        for (int64_t i = 0; i < r->numel; i++) {
            md = fmax(md, fabs((double)((float *)t->data)[i] - ((float *)r->data)[i]));
            mr = fmax(mr, fabs((double)((float *)r->data)[i]));
        }
        cr_expect(md <= ORT_REL_TOL * mr, "%s %s: onnxruntime differs by %g relative", v->scheme, v->gran,
                  md / mr);
        ba_tensor_unref(t);
    }
    ba_tensor_unref(r);
    ba_tensor_unref(o);
    ba_model_free(m);
    ba_test_rmtree(dir);
}

Test(int4, symmetric_per_channel_qdq_is_int4_and_exact, .timeout = 120) {
    check_variant(&VARIANTS[0]);
}
Test(int4, asymmetric_per_tensor_qdq_is_uint4_beside_uint8_and_exact, .timeout = 120) {
    check_variant(&VARIANTS[1]);
}
Test(int4, asymmetric_group_qdq_is_blocked_uint4_and_exact, .timeout = 120) {
    check_variant(&VARIANTS[2]);
}
Test(int4, symmetric_group_qdq_is_blocked_int4_and_exact, .timeout = 120) {
    check_variant(&VARIANTS[3]);
}

/* ---- kernels on hand-made inputs ---- */

static ba_tensor_t *tensor(ba_dtype dt, int nd, const int64_t *shape, const double *vals) {
    ba_error err;
    ba_tensor_t *t = ba_tensor_new(dt, nd, shape, &err);
    cr_assert(t);
    for (int64_t i = 0; i < t->numel; i++) {
        switch (dt) {
        case BA_DT_F32: ((float *)t->data)[i] = (float)vals[i]; break;
        case BA_DT_I8: ((int8_t *)t->data)[i] = (int8_t)vals[i]; break;
        default: ((uint8_t *)t->data)[i] = (uint8_t)vals[i]; break;
        }
    }
    return t;
}

static ba_status run_q(const char *op, ba_attr_t *attrs, int nattr, ba_tensor_t **in, int nin,
                       ba_tensor_t **out, ba_error *err) {
    ba_node_t n = {0};
    int outs[1] = {0};
    n.name = "n0";
    n.op_type = (char *)op;
    n.domain = "";
    n.opset = 21;
    n.nin = nin;
    n.nout = 1;
    n.outputs = outs;
    n.nattr = nattr;
    n.attrs = attrs;
    return ba_op_lookup(op, "")->forward(&n, in, nin, out, 1, err);
}

Test(int4, blocked_dequantize_uses_one_scale_per_block_and_a_short_last_block) {
    /* x [2, 5], blocks of 2 along axis 1: 3 blocks, the last one short. */
    int64_t xs[] = {2, 5}, ss[] = {2, 3};
    double xv[] = {1, 2, 3, 4, 5, -1, -2, -3, -4, -5};
    double sv[] = {0.5, 2, 10, 1, 0.25, 4};
    double zv[] = {1, 0, -1, 0, 2, 3};
    ba_tensor_t *in[3] = {tensor(BA_DT_I8, 2, xs, xv), tensor(BA_DT_F32, 2, ss, sv),
                          tensor(BA_DT_I8, 2, ss, zv)};
    ba_attr_t at[2] = {{.name = "axis", .type = BA_ATTR_INT, .i = 1},
                       {.name = "block_size", .type = BA_ATTR_INT, .i = 2}};
    ba_tensor_t *y = NULL;
    ba_error err;
    cr_assert_eq(run_q("DequantizeLinear", at, 2, in, 3, &y, &err), BA_OK, "%s", err.msg);
    const float want[] = {0, 0.5f, 6, 8, 60, -1, -2, -1.25f, -1.5f, -32};
    for (int i = 0; i < 10; i++)
        cr_expect_eq(((float *)y->data)[i], want[i], "y[%d] = %g", i, ((float *)y->data)[i]);
    ba_tensor_unref(y);
    /* A scale with the wrong block count is refused, naming the node and the shapes. */
    int64_t bad[] = {2, 2};
    ba_tensor_t *bs = tensor(BA_DT_F32, 2, bad, sv), *bz = tensor(BA_DT_I8, 2, bad, zv);
    ba_tensor_t *in2[3] = {in[0], bs, bz};
    y = NULL;
    cr_expect_eq(run_q("DequantizeLinear", at, 2, in2, 3, &y, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "n0") && strstr(err.msg, "block_size 2") && strstr(err.msg, "[2, 2]"), "%s",
              err.msg);
    cr_expect_null(y);
    for (int i = 0; i < 3; i++) ba_tensor_unref(in[i]);
    ba_tensor_unref(bs);
    ba_tensor_unref(bz);
}

Test(int4, quantize_linear_to_int4_saturates_to_the_4_bit_range) {
    int64_t xs[] = {6}, one[] = {1};
    double xv[] = {-100, -8.4, -0.6, 0.5, 7.4, 100};
    double sv[] = {1};
    ba_tensor_t *in[2] = {tensor(BA_DT_F32, 1, xs, xv), tensor(BA_DT_F32, 0, one, sv)};
    ba_attr_t at[1] = {{.name = "output_dtype", .type = BA_ATTR_INT, .i = BA_DT_I4}};
    ba_tensor_t *y = NULL;
    ba_error err;
    cr_assert_eq(run_q("QuantizeLinear", at, 1, in, 2, &y, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(y->dtype, BA_DT_I8, "int4 is held unpacked in int8");
    const int8_t want[] = {-8, -8, -1, 0, 7, 7};
    for (int i = 0; i < 6; i++)
        cr_expect_eq(((int8_t *)y->data)[i], want[i], "q[%d] = %d", i, ((int8_t *)y->data)[i]);
    ba_tensor_unref(y);
    at[0].i = BA_DT_U4;
    cr_assert_eq(run_q("QuantizeLinear", at, 1, in, 2, &y, &err), BA_OK, "%s", err.msg);
    const uint8_t wantu[] = {0, 0, 0, 0, 7, 15};
    for (int i = 0; i < 6; i++)
        cr_expect_eq(((uint8_t *)y->data)[i], wantu[i], "q[%d] = %d", i, ((uint8_t *)y->data)[i]);
    ba_tensor_unref(y);
    ba_tensor_unref(in[0]);
    ba_tensor_unref(in[1]);
}
