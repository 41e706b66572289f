/* Hostile input files, generated at test time (nothing large is committed):
 * ONNX files nesting messages thousands deep, external data naming a FIFO,
 * attributes of the wrong type, and .npz bombs. Each must be refused with
 * BA_ERR_INPUT (exit 2) naming the file and the fault — never a crash, a hang
 * or an allocation the size the file claims. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "eval/dataset.h"
#include "eval/npy.h"
#include "tests/helpers.h"

/* ---------------- protobuf wire format, by hand ---------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} pb_t;

static void pb_raw(pb_t *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void pb_varint(pb_t *b, uint64_t v) {
    uint8_t t[10];
    int k = 0;
    do {
        t[k] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) t[k] |= 0x80;
        k++;
    } while (v);
    pb_raw(b, t, (size_t)k);
}

static void pb_int(pb_t *b, unsigned field, uint64_t v) {
    pb_varint(b, (uint64_t)field << 3);
    pb_varint(b, v);
}

static void pb_bytes(pb_t *b, unsigned field, const void *d, size_t n) {
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    pb_raw(b, d, n);
}

static void pb_str(pb_t *b, unsigned field, const char *s) { pb_bytes(b, field, s, strlen(s)); }

/* Appends a sub-message and frees it. */
static void pb_msg(pb_t *b, unsigned field, pb_t *sub) {
    pb_bytes(b, field, sub->p, sub->n);
    free(sub->p);
    memset(sub, 0, sizeof *sub);
}

/* onnx.proto field numbers used below. */
enum { M_IR = 1, M_GRAPH = 7, M_OPSET = 8, OP_VERSION = 2 };
enum { G_NODE = 1, G_NAME = 2, G_INIT = 5, G_INPUT = 11, G_OUTPUT = 12 };
enum { N_INPUT = 1, N_OUTPUT = 2, N_NAME = 3, N_OP = 4, N_ATTR = 5 };
enum { A_NAME = 1, A_G = 6, A_FLOATS = 7, A_INTS = 8, A_TYPE = 20 };
enum { VI_NAME = 1, VI_TYPE = 2 };
enum { TP_TENSOR = 1, TP_SEQUENCE = 4, SEQ_ELEM = 1, TT_ELEM = 1, TT_SHAPE = 2, SH_DIM = 1, DIM_VALUE = 1 };
enum { T_DIMS = 1, T_DTYPE = 2, T_NAME = 8, T_RAW = 9, T_EXTERNAL = 13, T_LOCATION = 14 };

/* ValueInfoProto of a float tensor of the given shape. */
static void value_info(pb_t *g, unsigned field, const char *name, int ndim, const int64_t *shape) {
    pb_t sh = {0}, tt = {0}, tp = {0}, vi = {0};
    for (int i = 0; i < ndim; i++) {
        pb_t d = {0};
        pb_int(&d, DIM_VALUE, (uint64_t)shape[i]);
        pb_msg(&sh, SH_DIM, &d);
    }
    pb_int(&tt, TT_ELEM, 1);
    pb_msg(&tt, TT_SHAPE, &sh);
    pb_msg(&tp, TP_TENSOR, &tt);
    pb_str(&vi, VI_NAME, name);
    pb_msg(&vi, VI_TYPE, &tp);
    pb_msg(g, field, &vi);
}

/* ModelProto (IR 8, opset 13) around a graph, written to path. */
static void write_model(const char *path, pb_t *graph) {
    pb_t m = {0}, op = {0};
    pb_int(&m, M_IR, 8);
    pb_int(&op, OP_VERSION, 13);
    pb_msg(&m, M_OPSET, &op);
    pb_msg(&m, M_GRAPH, graph);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(m.p, 1, m.n, f), m.n);
    cr_assert_eq(fclose(f), 0);
    free(m.p);
}

static ba_status load_bad(const char *path, char *msg) {
    ba_error err = {0};
    ba_model_t *m = NULL;
    ba_status st = ba_model_load(path, NULL, &m, &err);
    cr_assert_null(m, "%s loaded but should not", path);
    strcpy(msg, err.msg);
    return st;
}

/* A graph whose input "x" has a TypeProto nested `depth` sequence types deep. */
static pb_t deep_sequence_graph(int depth) {
    pb_t tp = {0}, tt = {0};
    pb_int(&tt, TT_ELEM, 1);
    pb_msg(&tp, TP_TENSOR, &tt);
    for (int i = 0; i < depth; i++) {
        pb_t seq = {0}, outer = {0};
        pb_msg(&seq, SEQ_ELEM, &tp);
        pb_msg(&outer, TP_SEQUENCE, &seq);
        tp = outer;
    }
    pb_t g = {0}, vi = {0};
    pb_str(&g, G_NAME, "g");
    pb_str(&vi, VI_NAME, "x");
    pb_msg(&vi, VI_TYPE, &tp);
    pb_msg(&g, G_INPUT, &vi);
    int64_t one = 1;
    value_info(&g, G_OUTPUT, "x", 1, &one);
    return g;
}

/* A graph of If nodes, each then_branch holding the next, `depth` deep. */
static pb_t deep_if_graph(int depth) {
    pb_t body = {0}, id = {0};
    pb_str(&id, N_INPUT, "c");
    pb_str(&id, N_OUTPUT, "y");
    pb_str(&id, N_OP, "Identity");
    pb_msg(&body, G_NODE, &id);
    for (int i = 0; i < depth; i++) {
        pb_t attr = {0}, node = {0}, g = {0};
        pb_str(&attr, A_NAME, "then_branch");
        pb_int(&attr, A_TYPE, 5);
        pb_msg(&attr, A_G, &body);
        pb_str(&node, N_INPUT, "c");
        pb_str(&node, N_OUTPUT, "y");
        pb_str(&node, N_OP, "If");
        pb_msg(&node, N_ATTR, &attr);
        pb_msg(&g, G_NODE, &node);
        body = g;
    }
    int64_t one = 1;
    value_info(&body, G_INPUT, "c", 1, &one);
    value_info(&body, G_OUTPUT, "y", 1, &one);
    return body;
}

Test(hostile, deeply_nested_sequence_types_are_refused_not_a_stack_overflow, .timeout = 60) {
    char dir[PATH_MAX], path[PATH_MAX + 32], msg[BA_ERROR_MSG_MAX];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/deep_seq.onnx", dir);
    pb_t g = deep_sequence_graph(5000);
    write_model(path, &g);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_lt(st.st_size, 64 * 1024, "a small file: %lld bytes", (long long)st.st_size);
    cr_assert_eq(load_bad(path, msg), BA_ERR_INPUT, "%s", msg);
    cr_assert(strstr(msg, path) && strstr(msg, "nested deeper than 100 levels"), "%s", msg);
    ba_test_run_t r = ba_test_cli("inspect", path, NULL);
    cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "bitalloc: error: ") && strstr(r.err, "100"), "%s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

Test(hostile, if_bodies_nested_thousands_deep_are_refused, .timeout = 60) {
    char dir[PATH_MAX], path[PATH_MAX + 32], msg[BA_ERROR_MSG_MAX];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/deep_if.onnx", dir);
    pb_t g = deep_if_graph(3000);
    write_model(path, &g);
    cr_assert_eq(load_bad(path, msg), BA_ERR_INPUT, "%s", msg);
    cr_assert(strstr(msg, path) && strstr(msg, "nested deeper than 100 levels"), "%s", msg);
    ba_test_rmtree(dir);
}

static void not_refused_for_depth(const char *path) {
    ba_error err = {0};
    ba_model_t *m = NULL;
    if (ba_model_load(path, NULL, &m, &err) == BA_OK) ba_model_free(m);
    else cr_assert_null(strstr(err.msg, "nested deeper"), "%s", err.msg);
}

Test(hostile, moderate_nesting_is_not_refused_for_depth) {
    /* 30 sequence levels (62 message levels) and 10 nested Ifs (33 levels) are
     * within the bound: whatever the loader says of them, it is not the depth. */
    char dir[PATH_MAX], path[PATH_MAX + 32];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/seq30.onnx", dir);
    pb_t g = deep_sequence_graph(30);
    write_model(path, &g);
    not_refused_for_depth(path);
    snprintf(path, sizeof path, "%s/if10.onnx", dir);
    g = deep_if_graph(10);
    write_model(path, &g);
    not_refused_for_depth(path);
    ba_test_rmtree(dir);
}

Test(hostile, external_data_naming_a_fifo_is_refused_without_blocking, .timeout = 20) {
    char dir[PATH_MAX], path[PATH_MAX + 32], fifo[PATH_MAX + 32], msg[BA_ERROR_MSG_MAX];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(fifo, sizeof fifo, "%s/w.bin", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    /* Initializer "w" (2 floats) whose bytes live in w.bin, a FIFO. */
    pb_t g = {0}, t = {0}, kv = {0};
    pb_int(&t, T_DIMS, 2);
    pb_int(&t, T_DTYPE, 1);
    pb_str(&t, T_NAME, "w");
    pb_str(&kv, 1, "location");
    pb_str(&kv, 2, "w.bin");
    pb_msg(&t, T_EXTERNAL, &kv);
    pb_int(&t, T_LOCATION, 1);
    pb_str(&g, G_NAME, "g");
    pb_msg(&g, G_INIT, &t);
    int64_t two = 2;
    value_info(&g, G_OUTPUT, "w", 1, &two);
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    write_model(path, &g);
    cr_assert_eq(load_bad(path, msg), BA_ERR_INPUT, "%s", msg);
    cr_assert(strstr(msg, "'w'") && strstr(msg, fifo) && strstr(msg, "not a regular file"), "%s", msg);
    /* The same for a data file given on the command line. */
    ba_dataset_t *ds = NULL;
    ba_error err = {0};
    const char *spec[] = {fifo};
    cr_assert_eq(ba_dataset_load(spec, 1, &ds, &err), BA_ERR_INPUT, "%s", err.msg);
    cr_assert(strstr(err.msg, fifo) && strstr(err.msg, "not a regular file"), "%s", err.msg);
    ba_test_rmtree(dir);
}

/* Conv y = conv(x, w) with one extra attribute given by the caller. */
static void conv_with_attr(const char *path, pb_t *attr) {
    pb_t g = {0}, node = {0}, t = {0};
    pb_str(&node, N_INPUT, "x");
    pb_str(&node, N_INPUT, "w");
    pb_str(&node, N_OUTPUT, "y");
    pb_str(&node, N_NAME, "conv1");
    pb_str(&node, N_OP, "Conv");
    pb_msg(&node, N_ATTR, attr);
    pb_msg(&g, G_NODE, &node);
    pb_str(&g, G_NAME, "g");
    const int64_t ws[4] = {1, 1, 1, 1}, xs[4] = {1, 1, 4, 4}, ys[4] = {1, 1, 2, 2};
    for (int i = 0; i < 4; i++) pb_int(&t, T_DIMS, (uint64_t)ws[i]);
    pb_int(&t, T_DTYPE, 1);
    pb_str(&t, T_NAME, "w");
    float one = 1.0f;
    pb_bytes(&t, T_RAW, &one, sizeof one);
    pb_msg(&g, G_INIT, &t);
    value_info(&g, G_INPUT, "x", 4, xs);
    value_info(&g, G_OUTPUT, "y", 4, ys);
    write_model(path, &g);
}

Test(hostile, attribute_of_the_wrong_type_names_node_and_attribute) {
    char dir[PATH_MAX], path[PATH_MAX + 32], msg[BA_ERROR_MSG_MAX];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/conv.onnx", dir);
    /* strides as FLOATS [2.0, 2.0]: was read as "absent", i.e. stride 1. */
    pb_t a = {0}, fl = {0};
    const float two[2] = {2.0f, 2.0f};
    pb_raw(&fl, two, sizeof two);
    pb_str(&a, A_NAME, "strides");
    pb_int(&a, A_TYPE, 6);
    pb_msg(&a, A_FLOATS, &fl);
    conv_with_attr(path, &a);
    cr_assert_eq(load_bad(path, msg), BA_ERR_INPUT, "%s", msg);
    cr_assert(strstr(msg, "'conv1'") && strstr(msg, "'strides'") && strstr(msg, "FLOATS") && strstr(msg, "INTS"),
              "%s", msg);
    ba_test_run_t r = ba_test_cli("inspect", path, NULL);
    cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "'strides'"), "%s", r.err);
    ba_test_run_free(&r);
    /* The same attribute with its right type loads. */
    pb_t ints = {0};
    a = (pb_t){0};
    pb_varint(&ints, 2);
    pb_varint(&ints, 2);
    pb_str(&a, A_NAME, "strides");
    pb_int(&a, A_TYPE, 7);
    pb_msg(&a, A_INTS, &ints);
    conv_with_attr(path, &a);
    ba_error err = {0};
    ba_model_t *m = NULL;
    cr_assert_eq(ba_model_load(path, NULL, &m, &err), BA_OK, "%s", err.msg);
    ba_model_free(m);
    ba_test_rmtree(dir);
}
