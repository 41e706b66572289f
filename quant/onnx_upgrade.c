/* Opset 9..12 -> 13 for the QDQ writer: per-axis DequantizeLinear needs
 * opset 13, so a model exported at an older opset (paddle2onnx writes 9/11)
 * is rewritten into opset-13 form before its weights become QDQ pairs. One
 * table below lists every op of the engine whose form changed between 9 and
 * 13 (the ONNX changelog: attributes that became inputs, Upsample's removal,
 * Softmax's axis rule) with the function that rewrites it; every other op of
 * the engine keeps its meaning at 13 (BatchNormalization, Gather, Cast, Conv,
 * Pool, Reduce* but ReduceSum … only widened their types or added defaults). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor.h"
#include "core/util.h"
#include "quant/onnx_proto.h"

/* The opset the QDQ writer needs (per-axis DequantizeLinear). */
#define UPGRADE_TARGET 13
/* IR version that came with opset 13 (ONNX 1.8). */
#define UPGRADE_MIN_IR 7
/* Default `axis` of Softmax/LogSoftmax before opset 13 (coerce to 2-D there). */
#define SOFTMAX_OLD_AXIS 1

typedef struct {
    Onnx__GraphProto *g;
    int64_t from; /* the file's opset */
    size_t i; /* index of the node being rewritten; a rewrite that inserts nodes moves it to its last node */
    const char *src;
} up_ctx;

/* ---- node editing ---- */

static Onnx__AttributeProto *find_attr(const Onnx__NodeProto *n, const char *name) {
    for (size_t a = 0; a < n->n_attribute; a++)
        if (n->attribute[a]->name && !strcmp(n->attribute[a]->name, name)) return n->attribute[a];
    return NULL;
}

/* Removes attribute name from n and returns it (caller frees), or NULL. */
static Onnx__AttributeProto *take_attr(Onnx__NodeProto *n, const char *name) {
    for (size_t a = 0; a < n->n_attribute; a++)
        if (n->attribute[a]->name && !strcmp(n->attribute[a]->name, name)) {
            Onnx__AttributeProto *t = n->attribute[a];
            memmove(n->attribute + a, n->attribute + a + 1, (n->n_attribute - a - 1) * sizeof *n->attribute);
            n->n_attribute--;
            return t;
        }
    return NULL;
}

static void drop_attr(Onnx__NodeProto *n, const char *name) {
    Onnx__AttributeProto *a = take_attr(n, name);
    if (a) onnx__attribute_proto__free_unpacked(a, NULL);
}

/* Appends a (owned; freed on failure) to n's attributes. */
static ba_status add_attr(Onnx__NodeProto *n, Onnx__AttributeProto *a, ba_error *err) {
    if (!a) return err ? err->code : BA_ERR_NOMEM;
    Onnx__AttributeProto **na = ba_realloc(n->attribute, (n->n_attribute + 1) * sizeof *na, err);
    if (!na) {
        onnx__attribute_proto__free_unpacked(a, NULL);
        return BA_ERR_NOMEM;
    }
    n->attribute = na;
    n->attribute[n->n_attribute++] = a;
    return BA_OK;
}

static ba_status set_int_attr(Onnx__NodeProto *n, const char *name, int64_t v, ba_error *err) {
    drop_attr(n, name);
    return add_attr(n, ba_onnxw_int_attr(name, v, err), err);
}

static ba_status set_str_attr(Onnx__NodeProto *n, const char *name, const char *v, ba_error *err) {
    drop_attr(n, name);
    Onnx__AttributeProto *a = ba_malloc(sizeof *a, err);
    if (!a) return BA_ERR_NOMEM;
    onnx__attribute_proto__init(a);
    a->name = ba_strdup(name, err);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    a->has_s = 1;
    a->s.len = strlen(v);
    a->s.data = ba_malloc(a->s.len + 1, err);
    if (!a->name || !a->s.data) {
        onnx__attribute_proto__free_unpacked(a, NULL);
        return BA_ERR_NOMEM;
    }
    memcpy(a->s.data, v, a->s.len);
    return add_attr(n, a, err);
}

/* Sets input idx of n to name, padding skipped optional inputs with "". */
static ba_status set_input(Onnx__NodeProto *n, size_t idx, const char *name, ba_error *err) {
    if (idx >= n->n_input) {
        char **ni = ba_realloc(n->input, (idx + 1) * sizeof *ni, err);
        if (!ni) return BA_ERR_NOMEM;
        n->input = ni;
        while (n->n_input <= idx) {
            n->input[n->n_input] = ba_strdup("", err);
            if (!n->input[n->n_input]) return BA_ERR_NOMEM;
            n->n_input++;
        }
    }
    char *s = ba_strdup(name, err);
    if (!s) return BA_ERR_NOMEM;
    free(n->input[idx]);
    n->input[idx] = s;
    return BA_OK;
}

/* A new initializer "<node's first output>_op13_<what>" fed to input idx of n. */
static ba_status const_input(up_ctx *c, Onnx__NodeProto *n, size_t idx, const char *what, int32_t dtype,
                             int ndim, const int64_t *dims, const void *bytes, size_t nbytes, ba_error *err) {
    char name[4096];
    snprintf(name, sizeof name, "%s_op%d_%s", n->n_output ? n->output[0] : n->name, UPGRADE_TARGET, what);
    BA_TRY(ba_onnxw_add_init(c->g, ba_onnxw_tensor(name, dtype, ndim, dims, bytes, nbytes, err), err));
    return set_input(n, idx, name, err);
}

/* An INTS attribute moved to input idx as an int64 vector; absent: nothing (the input stays optional). */
static ba_status ints_to_input(up_ctx *c, Onnx__NodeProto *n, const char *attr, size_t idx, ba_error *err) {
    Onnx__AttributeProto *a = take_attr(n, attr);
    if (!a) return BA_OK;
    int64_t len = (int64_t)a->n_ints;
    ba_status st =
        const_input(c, n, idx, attr, BA_DT_I64, 1, &len, a->ints, sizeof(int64_t) * a->n_ints, err);
    onnx__attribute_proto__free_unpacked(a, NULL);
    return st;
}

/* A FLOAT attribute moved to input idx as a float32 scalar. */
static ba_status float_to_input(up_ctx *c, Onnx__NodeProto *n, const char *attr, size_t idx, ba_error *err) {
    Onnx__AttributeProto *a = take_attr(n, attr);
    if (!a) return BA_OK;
    float v = a->f;
    onnx__attribute_proto__free_unpacked(a, NULL);
    return const_input(c, n, idx, attr, BA_DT_F32, 0, NULL, &v, sizeof v, err);
}

static const char *node_label(const Onnx__NodeProto *n) {
    return n->name && n->name[0] ? n->name : n->n_output ? n->output[0] : "?";
}

/* ---- rewrites, one per changed form ---- */

/* Clip-6: min/max attributes (float). Clip-11: optional inputs 1, 2. */
static ba_status up_clip(up_ctx *c, Onnx__NodeProto *n, ba_error *err) {
    Onnx__AttributeProto *mx = take_attr(n, "max");
    ba_status st = float_to_input(c, n, "min", 1, err);
    if (st == BA_OK && mx) {
        float v = mx->f;
        st = const_input(c, n, 2, "max", BA_DT_F32, 0, NULL, &v, sizeof v, err);
    }
    if (mx) onnx__attribute_proto__free_unpacked(mx, NULL);
    return st;
}

/* Slice-1: starts/ends/axes attributes. Slice-10: inputs 1, 2, 3 (steps 4). */
static ba_status up_slice(up_ctx *c, Onnx__NodeProto *n, ba_error *err) {
    BA_TRY(ints_to_input(c, n, "starts", 1, err));
    BA_TRY(ints_to_input(c, n, "ends", 2, err));
    return ints_to_input(c, n, "axes", 3, err);
}

/* TopK-1: k attribute. TopK-10: input 1, int64 [1]. */
static ba_status up_topk(up_ctx *c, Onnx__NodeProto *n, ba_error *err) {
    Onnx__AttributeProto *a = take_attr(n, "k");
    if (!a) return BA_OK;
    int64_t k = a->i, one = 1;
    onnx__attribute_proto__free_unpacked(a, NULL);
    return const_input(c, n, 1, "k", BA_DT_I64, 1, &one, &k, sizeof k, err);
}

/* Pad-2: pads and value attributes. Pad-11: inputs 1 (int64 pads), 2 (constant_value, the data's type:
 * written only when not 0, as float32, the type of the activations paddle2onnx and PyTorch pad). */
static ba_status up_pad(up_ctx *c, Onnx__NodeProto *n, ba_error *err) {
    Onnx__AttributeProto *v = take_attr(n, "value");
    ba_status st = ints_to_input(c, n, "pads", 1, err);
    if (st == BA_OK && v && v->f != 0.0f) {
        float f = v->f;
        st = const_input(c, n, 2, "value", BA_DT_F32, 0, NULL, &f, sizeof f, err);
    }
    if (v) onnx__attribute_proto__free_unpacked(v, NULL);
    return st;
}

/* Dropout-10: ratio attribute. Dropout-12: input 1 (inference ignores it either way). */
static ba_status up_dropout(up_ctx *c, Onnx__NodeProto *n, ba_error *err) {
    return float_to_input(c, n, "ratio", 1, err);
}

/* Split-2/11: split attribute. Split-13: input 1. */
static ba_status up_split(up_ctx *c, Onnx__NodeProto *n, ba_error *err) {
    return ints_to_input(c, n, "split", 1, err);
}

/* Squeeze/Unsqueeze/ReduceSum-11: axes attribute. -13: input 1. */
static ba_status up_axes(up_ctx *c, Onnx__NodeProto *n, ba_error *err) {
    return ints_to_input(c, n, "axes", 1, err);
}

/* float values of a constant tensor (float_data or raw float32); count in *n, NULL when not float32. */
static const float *const_floats(const Onnx__TensorProto *t, size_t *n) {
    if (!t || t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) return NULL;
    if (t->has_raw_data) {
        *n = t->raw_data.len / sizeof(float);
        return (const float *)t->raw_data.data;
    }
    *n = t->n_float_data;
    return t->float_data;
}

/* Upsample-9 / Resize-10 (X, scales; asymmetric coordinates; nearest takes ORT's rule: floor when
 * upsampling, ceil when downsampling an axis) -> Resize-13 (X, roi "", scales) with those
 * coordinates said explicitly. One nearest_mode serves every axis, so a nearest resize that grows
 * some axes and shrinks others, or whose scales are computed at run time, is refused. */
static ba_status up_resize(up_ctx *c, Onnx__NodeProto *n, ba_error *err) {
    if (n->n_input < 2 || !n->input[1][0])
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: %s '%s': scales must be an input (opset >= 9)",
                            c->src, n->op_type, node_label(n));
    const Onnx__AttributeProto *ma = find_attr(n, "mode");
    char mode[16] = "nearest";
    if (ma && ma->has_s) snprintf(mode, sizeof mode, "%.*s", (int)ma->s.len, (const char *)ma->s.data);
    if (!strcmp(mode, "bilinear")) snprintf(mode, sizeof mode, "linear");
    const char *nearest_mode = NULL;
    if (!strcmp(mode, "nearest")) {
        size_t ii, ni, ns = 0;
        const float *s = const_floats(ba_onnxw_find_const(c->g, n->input[1], &ii, &ni), &ns);
        int up = 0, down = 0;
        for (size_t k = 0; s && k < ns; k++) {
            up |= s[k] > 1.0f;
            down |= s[k] < 1.0f;
        }
        if (!s || (up && down))
            return ba_error_set(
                err, BA_ERR_UNSUPPORTED, "%s: %s '%s': nearest resize with %s has no opset-%d Resize form",
                c->src, n->op_type, node_label(n),
                s ? "some axes grown and others shrunk" : "scales computed at run time", UPGRADE_TARGET);
        nearest_mode = down ? "ceil" : "floor";
    }
    char *scales = ba_strdup(n->input[1], err);
    char *op = ba_strdup("Resize", err);
    ba_status st = scales && op ? BA_OK : BA_ERR_NOMEM;
    if (st == BA_OK) st = set_input(n, 1, "", err);
    if (st == BA_OK) st = set_input(n, 2, scales, err);
    if (st == BA_OK) {
        free(n->op_type);
        n->op_type = op;
        op = NULL;
    }
    if (st == BA_OK) st = set_str_attr(n, "mode", mode, err);
    if (st == BA_OK) st = set_str_attr(n, "coordinate_transformation_mode", "asymmetric", err);
    if (st == BA_OK && nearest_mode) st = set_str_attr(n, "nearest_mode", nearest_mode, err);
    free(scales);
    free(op);
    return st;
}

/* Resize-11/12's tf_half_pixel_for_nn coordinates, x_in = (x + 0.5) / scale, are gone at 13: they
 * are half_pixel shifted by +0.5, so a nearest rounding of them is another rounding of half_pixel
 * (floor(v + 0.5) = round_prefer_ceil(v); round_prefer_floor(v + 0.5) = ceil(v)). Other pairs have
 * no opset-13 form. */
static ba_status up_resize11(up_ctx *c, Onnx__NodeProto *n, ba_error *err) {
    const Onnx__AttributeProto *ct = find_attr(n, "coordinate_transformation_mode");
    if (!ct || !ct->has_s) return BA_OK;
    char v[64];
    snprintf(v, sizeof v, "%.*s", (int)ct->s.len, (const char *)ct->s.data);
    if (strcmp(v, "tf_half_pixel_for_nn") && strcmp(v, "tf_half_pixel_for_nearest")) return BA_OK;
    const Onnx__AttributeProto *ma = find_attr(n, "mode"), *na = find_attr(n, "nearest_mode");
    char mode[16] = "nearest", nm[32] = "round_prefer_floor";
    if (ma && ma->has_s) snprintf(mode, sizeof mode, "%.*s", (int)ma->s.len, (const char *)ma->s.data);
    if (na && na->has_s) snprintf(nm, sizeof nm, "%.*s", (int)na->s.len, (const char *)na->s.data);
    const char *to = !strcmp(mode, "nearest") && !strcmp(nm, "floor")                ? "round_prefer_ceil"
                     : !strcmp(mode, "nearest") && !strcmp(nm, "round_prefer_floor") ? "ceil"
                                                                                     : NULL;
    if (!to)
        return ba_error_set(
            err, BA_ERR_UNSUPPORTED,
            "%s: Resize '%s': coordinate_transformation_mode %s with mode %s / nearest_mode %s has "
            "no opset-%d form",
            c->src, node_label(n), v, mode, nm, UPGRADE_TARGET);
    BA_TRY(set_str_attr(n, "coordinate_transformation_mode", "half_pixel", err));
    return set_str_attr(n, "nearest_mode", to, err);
}

/* Resize-10 (files of opset 10) or Resize-11/12. */
static ba_status up_resize_any(up_ctx *c, Onnx__NodeProto *n, ba_error *err) {
    return c->from < 11 ? up_resize(c, n, err) : up_resize11(c, n, err);
}

/* Rank of value name when the graph declares it (input, output or value_info), else -1. */
static int declared_rank(const Onnx__GraphProto *g, const char *name) {
    Onnx__ValueInfoProto *const *lists[3] = {g->input, g->output, g->value_info};
    size_t counts[3] = {g->n_input, g->n_output, g->n_value_info};
    for (int l = 0; l < 3; l++)
        for (size_t i = 0; i < counts[l]; i++) {
            const Onnx__ValueInfoProto *v = lists[l][i];
            if (!v->name || strcmp(v->name, name) || !v->type || !v->type->tensor_type ||
                !v->type->tensor_type->shape)
                continue;
            return (int)v->type->tensor_type->shape->n_dim;
        }
    return -1;
}

/* Softmax/LogSoftmax-1/11 flatten the input to 2-D at `axis` (default 1) and normalise each row;
 * -13 normalises along `axis` (default -1). The same when axis is the last one; otherwise
 * Shape + Flatten(axis) -> the op along -1 -> Reshape back, which is the old rule spelled out. */
static ba_status up_softmax(up_ctx *c, Onnx__NodeProto *n, ba_error *err) {
    const Onnx__AttributeProto *a = find_attr(n, "axis");
    int64_t axis = a && a->has_i ? a->i : SOFTMAX_OLD_AXIS;
    int rank = n->n_input ? declared_rank(c->g, n->input[0]) : -1;
    if (rank < 0 && n->n_output) rank = declared_rank(c->g, n->output[0]); /* the same shape */
    if (axis == -1 || (rank > 0 && axis == rank - 1)) return set_int_attr(n, "axis", axis, err);
    if (n->n_input < 1 || n->n_output < 1)
        return ba_error_set(err, BA_ERR_INPUT, "%s: %s '%s' lacks its input or output", c->src, n->op_type,
                            node_label(n));
    char x[4096], y[4096], shape[4200], flat[4200], yflat[4200], nm[4400];
    snprintf(x, sizeof x, "%s", n->input[0]);
    snprintf(y, sizeof y, "%s", n->output[0]);
    snprintf(shape, sizeof shape, "%s_op%d_shape", y, UPGRADE_TARGET);
    snprintf(flat, sizeof flat, "%s_op%d_flat", y, UPGRADE_TARGET);
    snprintf(yflat, sizeof yflat, "%s_op%d_rows", y, UPGRADE_TARGET);
    const char *xin[1] = {x}, *rin[2] = {yflat, shape};
    snprintf(nm, sizeof nm, "%s_op%d_Shape", y, UPGRADE_TARGET);
    BA_TRY(ba_onnxw_insert_node(c->g, c->i, "Shape", nm, xin, 1, shape, NULL, 0, err));
    Onnx__AttributeProto *fa = ba_onnxw_int_attr("axis", axis, err);
    snprintf(nm, sizeof nm, "%s_op%d_Flatten", y, UPGRADE_TARGET);
    BA_TRY(ba_onnxw_insert_node(c->g, c->i + 1, "Flatten", nm, xin, 1, flat, &fa, 1, err));
    c->i += 2; /* n is now at c->i */
    BA_TRY(set_input(n, 0, flat, err));
    char *o = ba_strdup(yflat, err);
    if (!o) return BA_ERR_NOMEM;
    free(n->output[0]);
    n->output[0] = o;
    BA_TRY(set_int_attr(n, "axis", -1, err));
    snprintf(nm, sizeof nm, "%s_op%d_Reshape", y, UPGRADE_TARGET);
    BA_TRY(ba_onnxw_insert_node(c->g, c->i + 1, "Reshape", nm, rin, 2, y, NULL, 0, err));
    c->i += 1;
    return BA_OK;
}

/* Ops of the engine whose form changed between opsets 9 and 13. A node is rewritten when the
 * file's opset is below `below` (the opset that brought the opset-13 form). */
static const struct {
    const char *op;
    int64_t below;
    ba_status (*rewrite)(up_ctx *c, Onnx__NodeProto *n, ba_error *err);
} UPGRADES[] = {
    {"Clip", 11, up_clip},         /* min/max attributes -> inputs */
    {"Slice", 10, up_slice},       /* starts/ends/axes attributes -> inputs */
    {"TopK", 10, up_topk},         /* k attribute -> input */
    {"Pad", 11, up_pad},           /* pads/value attributes -> inputs */
    {"Resize", 13, up_resize_any}, /* Resize-10: roi/scales/sizes inputs, coordinate modes; 11/12:
                                      tf_half_pixel_for_nn gone */
    {"Upsample", UPGRADE_TARGET + 1, up_resize}, /* gone at 10: Resize */
    {"Dropout", 12, up_dropout},                 /* ratio attribute -> input */
    {"Split", 13, up_split},                     /* split attribute -> input */
    {"Squeeze", 13, up_axes},                    /* axes attribute -> input */
    {"Unsqueeze", 13, up_axes},                  /* axes attribute -> input */
    {"ReduceSum", 13, up_axes},                  /* axes attribute -> input (other Reduce* at 18) */
    {"Softmax", 13, up_softmax},                 /* 2-D coercion at axis -> one axis */
    {"LogSoftmax", 13, up_softmax},              /* same */
};

static ba_status upgrade_graph(Onnx__GraphProto *g, int64_t from, const char *src, ba_error *err) {
    up_ctx c = {.g = g, .from = from, .src = src};
    for (c.i = 0; c.i < g->n_node; c.i++) {
        Onnx__NodeProto *n = g->node[c.i];
        if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx") != 0) continue;
        for (size_t a = 0; a < n->n_attribute; a++) { /* If/Loop bodies */
            if (n->attribute[a]->g) BA_TRY(upgrade_graph(n->attribute[a]->g, from, src, err));
            for (size_t k = 0; k < n->attribute[a]->n_graphs; k++)
                BA_TRY(upgrade_graph(n->attribute[a]->graphs[k], from, src, err));
        }
        for (size_t u = 0; u < sizeof UPGRADES / sizeof UPGRADES[0]; u++)
            if (!strcmp(n->op_type, UPGRADES[u].op) && from < UPGRADES[u].below) {
                BA_TRY(UPGRADES[u].rewrite(&c, n, err));
                break;
            }
    }
    return BA_OK;
}

ba_status ba_onnxw_upgrade_to_13(Onnx__ModelProto *m, int64_t from_opset, const char *src, ba_error *err) {
    if (from_opset >= UPGRADE_TARGET) return BA_OK;
    BA_TRY(upgrade_graph(m->graph, from_opset, src, err));
    for (size_t i = 0; i < m->n_opset_import; i++) {
        Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if (!o->domain || !o->domain[0] || !strcmp(o->domain, "ai.onnx")) {
            o->has_version = 1;
            o->version = UPGRADE_TARGET;
        }
    }
    if (!m->has_ir_version || m->ir_version < UPGRADE_MIN_IR) {
        m->has_ir_version = 1;
        m->ir_version = UPGRADE_MIN_IR;
    }
    return BA_OK;
}
