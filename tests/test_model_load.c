/* model/ loading: each storage form the loader promises, the layer table of
 * SPEC §2, folding / If inlining, and one test per corrupt or hostile file
 * (tests/fixtures/onnx_cases, made by make_onnx_cases.py). */
#include <criterion/criterion.h>
#include <string.h>

#include "tests/helpers.h"

#define CASES BA_FIXTURES "/onnx_cases/"

static ba_model_t *load_ok(const char *path, int emb) {
    ba_error err = {0};
    ba_model_t *m = NULL;
    ba_load_opts_t o = {.include_embeddings = emb};
    ba_status st = ba_model_load(path, &o, &m, &err);
    cr_assert_eq(st, BA_OK, "%s: %s", path, err.msg);
    cr_assert_not_null(m);
    return m;
}

/* Loads a file that must fail; returns the status and copies the message. */
static ba_status load_bad(const char *path, char *msg) {
    ba_error err = {0};
    ba_model_t *m = NULL;
    ba_status st = ba_model_load(path, NULL, &m, &err);
    cr_assert_null(m, "%s loaded but should not", path);
    strcpy(msg, err.msg);
    return st;
}

static const ba_layer_t *layer(const ba_model_t *m, const char *name) {
    for (int i = 0; i < m->nlayers; i++)
        if (!strcmp(m->layers[i].name, name)) return &m->layers[i];
    cr_assert_fail("no layer %s", name);
    return NULL;
}

static int count_op(const ba_model_t *m, const char *op) {
    int c = 0;
    for (int i = 0; i < m->nnodes; i++) c += !strcmp(m->nodes[i].op_type, op);
    return c;
}

Test(model_load, conv_gemm_layer_table) {
    ba_model_t *m = load_ok(CASES "conv_gemm.onnx", 0);
    cr_assert_eq(m->nlayers, 2);
    const ba_layer_t *c = layer(m, "conv.weight"), *g = layer(m, "fc.weight");
    cr_assert_str_eq(c->op, "Conv");
    cr_assert_eq(c->ch_axis, 0);
    cr_assert_eq(c->params, 36);
    cr_assert_eq(c->macs, 4 * 8 * 8 * 9, "conv macs %lld", (long long)c->macs);
    cr_assert_eq(c->ndim, 4);
    cr_assert_str_eq(g->op, "Gemm");
    cr_assert_eq(g->ch_axis, 0); /* transB = 1 */
    cr_assert_eq(g->params, 2560);
    cr_assert_eq(g->macs, 2560, "gemm macs %lld", (long long)g->macs);
    /* biases and the two int64 shape constants */
    cr_assert_eq(m->other_init_bytes, 4 * 4 + 10 * 4 + 8 + 8);
    cr_assert_eq(strlen(m->sha256), 64);
    cr_assert_eq(m->opset, 13);
    ba_model_free(m);
}

Test(model_load, node_names_default_to_op_and_index) {
    ba_model_t *m = load_ok(CASES "conv_gemm.onnx", 0);
    cr_assert_str_eq(m->nodes[0].name, "Conv_0");
    cr_assert_str_eq(m->nodes[m->nnodes - 1].name, "Gemm_6");
    const ba_node_t *conv = &m->nodes[0];
    const int64_t *pads;
    cr_assert_eq(ba_node_attr_ints(conv, "pads", &pads), 4);
    cr_assert_eq(pads[0], 1);
    cr_assert_eq(ba_node_attr_int(conv, "group", 1), 1);
    cr_assert_null(ba_node_attr(conv, "nope"));
    ba_model_free(m);
}

Test(model_load, raw_and_typed_fields_give_the_same_tensors) {
    ba_model_t *a = load_ok(CASES "mlp_raw.onnx", 0), *b = load_ok(CASES "mlp_typed.onnx", 0);
    const char *names[] = {"w1", "b1", "w2", "e_f16", "e_f64", "e_i64", "e_i32", "e_i8", "e_u8", "e_bool"};
    const ba_dtype dts[] = {BA_DT_F32, BA_DT_F32, BA_DT_F32, BA_DT_F16, BA_DT_F64,
                            BA_DT_I64, BA_DT_I32, BA_DT_I8,  BA_DT_U8,  BA_DT_BOOL};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int va = ba_model_find_value(a, names[i]), vb = ba_model_find_value(b, names[i]);
        cr_assert_geq(va, 0, "%s", names[i]);
        cr_assert_geq(vb, 0, "%s", names[i]);
        const ba_tensor_t *ta = a->values[va].constant, *tb = b->values[vb].constant;
        cr_assert_eq(ta->dtype, dts[i], "%s dtype %d", names[i], ta->dtype);
        cr_assert_eq(tb->dtype, dts[i]);
        cr_assert_eq(ta->numel, tb->numel);
        cr_assert_eq(memcmp(ta->data, tb->data, ba_tensor_nbytes(ta)), 0, "%s differs", names[i]);
    }
    int v = ba_model_find_value(a, "e_i64");
    cr_assert_eq(((int64_t *)a->values[v].constant->data)[0], -(1LL << 40));
    v = ba_model_find_value(a, "e_f16");
    cr_assert_float_eq(ba_f16_to_f32(((uint16_t *)a->values[v].constant->data)[3]), 65504.f, 0);
    cr_assert_eq(a->nlayers, 2);
    ba_model_free(a);
    ba_model_free(b);
}

Test(model_load, external_data_matches_inline_weights) {
    ba_model_t *a = load_ok(CASES "ext/model.onnx", 0), *b = load_ok(CASES "ext_inline.onnx", 0);
    for (int k = 0; k < 2; k++) {
        const char *n = k ? "w2" : "w1";
        const ba_tensor_t *ta = a->values[ba_model_find_value(a, n)].constant;
        const ba_tensor_t *tb = b->values[ba_model_find_value(b, n)].constant;
        cr_assert_eq(ta->numel, tb->numel);
        cr_assert_eq(memcmp(ta->data, tb->data, ba_tensor_nbytes(ta)), 0);
    }
    ba_model_free(a);
    ba_model_free(b);
}

Test(model_load, constant_node_weights_are_layers_named_by_output) {
    ba_model_t *m = load_ok(CASES "constant_weights.onnx", 0);
    cr_assert_eq(m->nlayers, 2);
    const ba_layer_t *a = layer(m, "const_w1"), *b = layer(m, "const_w2");
    cr_assert_eq(a->ch_axis, 1);
    cr_assert_eq(a->params, 24);
    cr_assert_eq(a->macs, 24);
    /* stored [3,4] = [out,in], consumed through Transpose: channel axis 0 of the stored layout */
    cr_assert_eq(b->ch_axis, 0);
    cr_assert_eq(b->shape[0], 3);
    cr_assert_eq(b->macs, 12);
    cr_assert_eq(count_op(m, "Transpose"), 1, "the weight Transpose must not be folded");
    cr_assert_eq(count_op(m, "Constant"), 0);
    ba_model_free(m);
}

Test(model_load, shared_weight_is_one_layer) {
    ba_model_t *m = load_ok(CASES "shared_weight.onnx", 0);
    cr_assert_eq(m->nlayers, 1);
    cr_assert_str_eq(m->layers[0].name, "w");
    cr_assert_eq(m->layers[0].params, 25);
    cr_assert_eq(m->layers[0].macs, 50); /* two uses of 5x5 per sample */
    ba_model_free(m);
}

Test(model_load, static_shape_chain_folds_away) {
    ba_model_t *m = load_ok(CASES "static_reshape.onnx", 0);
    cr_assert_eq(m->nnodes, 1, "nodes left: %d", m->nnodes);
    cr_assert_str_eq(m->nodes[0].op_type, "Reshape");
    const ba_value_t *y = &m->values[m->outputs[0]];
    cr_assert_eq(y->ndim, 2);
    cr_assert_eq(y->shape[0], 2);
    cr_assert_eq(y->shape[1], 12);
    ba_model_free(m);
}

Test(model_load, dynamic_batch_folds_static_dims_only) {
    ba_model_t *m = load_ok(CASES "dyn_reshape.onnx", 0);
    /* C*H (Gather 1, Gather 2, Mul, Unsqueeze) folds; the batch part stays. */
    cr_assert_eq(count_op(m, "Mul"), 0);
    cr_assert_eq(count_op(m, "Gather"), 1);
    cr_assert_geq(count_op(m, "Shape"), 1);
    const ba_value_t *y = &m->values[m->outputs[0]];
    cr_assert_eq(y->ndim, 2);
    cr_assert_eq(y->shape[0], -1);
    cr_assert_eq(y->shape[1], 12);
    ba_model_free(m);
}

Test(model_load, if_with_constant_condition_is_inlined) {
    const char *files[] = {CASES "if_const.onnx", CASES "if_shape.onnx"};
    for (int f = 0; f < 2; f++) {
        ba_model_t *m = load_ok(files[f], 0);
        cr_assert_eq(count_op(m, "If"), 0, "%s", files[f]);
        cr_assert_eq(count_op(m, "Relu"), 1, "%s: then-branch expected", files[f]);
        cr_assert_eq(count_op(m, "Neg"), 0);
        ba_model_free(m);
    }
}

Test(model_load, rejects_truncated_file) {
    char msg[BA_ERROR_MSG_MAX];
    cr_assert_eq(load_bad(CASES "bad_truncated.onnx", msg), BA_ERR_INPUT);
    cr_assert(strstr(msg, "bad_truncated.onnx"), "%s", msg);
}

Test(model_load, rejects_random_bytes_and_empty_file) {
    char msg[BA_ERROR_MSG_MAX];
    cr_assert_eq(load_bad(CASES "bad_random.onnx", msg), BA_ERR_INPUT, "%s", msg);
    cr_assert(strstr(msg, "bad_random.onnx"), "%s", msg);
    cr_assert_eq(load_bad(CASES "bad_empty.onnx", msg), BA_ERR_INPUT, "%s", msg);
    cr_assert_eq(load_bad(CASES "does_not_exist.onnx", msg), BA_ERR_INPUT, "%s", msg);
}

Test(model_load, rejects_missing_initializer_naming_it) {
    char msg[BA_ERROR_MSG_MAX];
    cr_assert_eq(load_bad(CASES "bad_missing_init.onnx", msg), BA_ERR_INPUT);
    cr_assert(strstr(msg, "w_missing") && strstr(msg, "MatMul_0") && strstr(msg, "bad_missing_init.onnx"),
              "%s", msg);
}

Test(model_load, rejects_cycle) {
    char msg[BA_ERROR_MSG_MAX];
    cr_assert_eq(load_bad(CASES "bad_cycle.onnx", msg), BA_ERR_INPUT);
    cr_assert(strstr(msg, "cycle"), "%s", msg);
}

Test(model_load, rejects_duplicate_producer) {
    char msg[BA_ERROR_MSG_MAX];
    cr_assert_eq(load_bad(CASES "bad_duplicate_producer.onnx", msg), BA_ERR_INPUT);
    cr_assert(strstr(msg, "'y'") && strstr(msg, "already produced"), "%s", msg);
}

Test(model_load, refuses_external_path_escaping_the_folder) {
    char msg[BA_ERROR_MSG_MAX];
    cr_assert_eq(load_bad(CASES "ext/bad_escape.onnx", msg), BA_ERR_INPUT);
    cr_assert(strstr(msg, "../weights.bin") && strstr(msg, "refused") && strstr(msg, "'w1'"), "%s", msg);
}

Test(model_load, refuses_absolute_external_path) {
    char msg[BA_ERROR_MSG_MAX];
    cr_assert_eq(load_bad(CASES "ext/bad_absolute.onnx", msg), BA_ERR_INPUT);
    cr_assert(strstr(msg, "/etc/passwd") && strstr(msg, "absolute"), "%s", msg);
}

Test(model_load, rejects_missing_or_short_external_file) {
    char msg[BA_ERROR_MSG_MAX];
    cr_assert_eq(load_bad(CASES "ext/bad_missing.onnx", msg), BA_ERR_INPUT);
    cr_assert(strstr(msg, "no_such_file.bin") && strstr(msg, "not found"), "%s", msg);
    cr_assert_eq(load_bad(CASES "ext/bad_short.onnx", msg), BA_ERR_INPUT);
    cr_assert(strstr(msg, "too short"), "%s", msg);
}

Test(model_load, lists_every_unsupported_op_at_once) {
    char msg[BA_ERROR_MSG_MAX];
    cr_assert_eq(load_bad(CASES "bad_unsupported.onnx", msg), BA_ERR_UNSUPPORTED);
    cr_assert(strstr(msg, "FancyOp") && strstr(msg, "com.example::Mystery") && strstr(msg, "AnotherUnknown"),
              "%s", msg);
    cr_assert_null(strstr(msg, "Relu"), "%s", msg);
}

Test(model_load, rejects_shape_mismatch) {
    char msg[BA_ERROR_MSG_MAX];
    ba_status st = load_bad(CASES "bad_shape_mismatch.onnx", msg);
    cr_assert_eq(st, BA_ERR_INPUT, "%d %s", st, msg);
    cr_assert(strstr(msg, "bad_shape_mismatch.onnx") && strstr(msg, "MatMul"), "%s", msg);
}

Test(model_load, rejects_raw_size_mismatch_and_overflow) {
    char msg[BA_ERROR_MSG_MAX];
    cr_assert_eq(load_bad(CASES "bad_raw_size.onnx", msg), BA_ERR_INPUT);
    cr_assert(strstr(msg, "'w'") && strstr(msg, "raw_data"), "%s", msg);
    cr_assert_eq(load_bad(CASES "bad_overflow.onnx", msg), BA_ERR_INPUT);
    cr_assert(strstr(msg, "overflow"), "%s", msg);
}

Test(model_load, digits_and_zoo_models_load) {
    const char *files[] = {BA_FIXTURES "/digits/mlp.onnx", BA_FIXTURES "/digits/cnn.onnx",
                           BA_FIXTURES "/digits/mlp_dyn.onnx", BA_FIXTURES "/digits/cnn_dyn.onnx"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        ba_model_t *m = load_ok(files[i], 0);
        cr_assert_gt(m->nlayers, 0, "%s", files[i]);
        for (int l = 0; l < m->nlayers; l++)
            cr_assert_gt(m->layers[l].macs, 0, "%s %s", files[i], m->layers[l].name);
        ba_model_free(m);
    }
}

Test(model_load, include_embeddings_adds_gather_weights) {
    ba_model_t *a = load_ok(BA_FIXTURES "/zoo/gpt_dyn.onnx", 0),
               *b = load_ok(BA_FIXTURES "/zoo/gpt_dyn.onnx", 1);
    cr_assert_eq(b->nlayers, a->nlayers + 1);
    for (int l = 0; l < a->nlayers; l++) cr_assert_str_neq(a->layers[l].op, "Gather");
    int found = 0;
    for (int l = 0; l < b->nlayers; l++)
        if (!strcmp(b->layers[l].op, "Gather")) {
            found = 1;
            cr_assert_eq(b->layers[l].ch_axis, 0);
            cr_assert_eq(b->layers[l].macs, 0);
            /* its bytes leave other_init_bytes */
            cr_assert_eq(a->other_init_bytes - b->other_init_bytes, b->layers[l].params * 4);
        }
    cr_assert(found);
    /* MatMul weights [K, N]: output channels on the last axis; macs = T*K*N per sample (T = 16) */
    cr_assert_eq(a->layers[0].ch_axis, 1);
    cr_assert_eq(a->layers[0].macs, 16 * a->layers[0].params);
    ba_model_free(a);
    ba_model_free(b);
}

Test(model_load, reshape_chain_weight_maps_channel_axis_to_stored_layout) {
    ba_model_t *m = load_ok(CASES "reshape_weight.onnx", 0);
    cr_assert_eq(m->nlayers, 1);
    const ba_layer_t *l = layer(m, "w3d");
    cr_assert_eq(l->ndim, 3);
    cr_assert_eq(l->ch_axis, 2);
    cr_assert_eq(l->params, 24);
    cr_assert_eq(l->macs, 24);
    cr_assert_eq(count_op(m, "Reshape"), 1, "the weight Reshape must not be folded");
    cr_assert_eq(m->other_init_bytes, 16);
    ba_model_free(m);
}
