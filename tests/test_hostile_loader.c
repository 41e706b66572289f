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

static void pb_str(pb_t *b, unsigned field, const char *s) {
    pb_bytes(b, field, s, strlen(s));
}

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

Test(hostile_loader, deeply_nested_sequence_types_are_refused_not_a_stack_overflow, .timeout = 60) {
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

Test(hostile_loader, if_bodies_nested_thousands_deep_are_refused, .timeout = 60) {
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
    if (ba_model_load(path, NULL, &m, &err) == BA_OK)
        ba_model_free(m);
    else
        cr_assert_null(strstr(err.msg, "nested deeper"), "%s", err.msg);
}

Test(hostile_loader, moderate_nesting_is_not_refused_for_depth) {
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

Test(hostile_loader, external_data_naming_a_fifo_is_refused_without_blocking, .timeout = 20) {
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

Test(hostile_loader, attribute_of_the_wrong_type_names_node_and_attribute) {
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
    cr_assert(strstr(msg, "'conv1'") && strstr(msg, "'strides'") && strstr(msg, "FLOATS") &&
                  strstr(msg, "INTS"),
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

/* ---------------- .npz bombs ---------------- */

typedef struct {
    uint8_t *p;
    size_t n;
    uint32_t crc;
    uint64_t usize;
} deflated_t;

/* .npy preamble + header for a float32 array of the given shape (v1.0, 64-byte aligned). */
static size_t npy_header_f4(uint8_t *out, int ndim, const int64_t *shape) {
    char dict[256], sh[128] = "";
    size_t o = 0;
    for (int i = 0; i < ndim; i++) o += (size_t)snprintf(sh + o, sizeof sh - o, "%lld,", (long long)shape[i]);
    int dl = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", sh);
    size_t len = (size_t)dl + 1, pad = (64 - (10 + len) % 64) % 64;
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (uint8_t)((len + pad) & 0xff);
    out[9] = (uint8_t)((len + pad) >> 8);
    memcpy(out + 10, dict, (size_t)dl);
    memset(out + 10 + dl, ' ', pad);
    out[10 + dl + pad] = '\n';
    return 10 + len + pad;
}

/* Raw deflate of head followed by `mib` MiB of zeros: one block of 1 MiB of
 * zeros, flushed so that it stands alone, is repeated, so a stream that
 * inflates to hundreds of MiB is built in milliseconds. */
static deflated_t deflate_zeros(const uint8_t *head, size_t hn, uint64_t mib) {
    const size_t MiB = (size_t)1 << 20;
    uint8_t *zero = calloc(1, MiB), *blk = malloc(2 * MiB);
    cr_assert(zero && blk);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    cr_assert_eq(deflateInit2(&zs, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    pb_t out = {0};
    size_t sizes[3] = {0};
    uint8_t *copies[3] = {0};
    /* head, then the zero block twice (the second copy is the one repeated). */
    for (int step = 0; step < 3; step++) {
        zs.next_in = step == 0 ? (Bytef *)(uintptr_t)head : zero;
        zs.avail_in = step == 0 ? (uInt)hn : (uInt)MiB;
        zs.next_out = blk;
        zs.avail_out = (uInt)(2 * MiB);
        cr_assert_eq(deflate(&zs, Z_FULL_FLUSH), Z_OK);
        cr_assert_eq(zs.avail_in, 0u);
        sizes[step] = 2 * MiB - zs.avail_out;
        copies[step] = malloc(sizes[step]);
        memcpy(copies[step], blk, sizes[step]);
    }
    cr_assert(sizes[1] == sizes[2] && memcmp(copies[1], copies[2], sizes[1]) == 0, "flushed blocks differ");
    pb_raw(&out, copies[0], sizes[0]);
    for (uint64_t i = 0; i < mib; i++) pb_raw(&out, copies[1], sizes[1]);
    zs.next_in = zero;
    zs.avail_in = 0;
    zs.next_out = blk;
    zs.avail_out = (uInt)(2 * MiB);
    cr_assert_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
    pb_raw(&out, blk, 2 * MiB - zs.avail_out);
    deflateEnd(&zs);
    uLong zc = crc32(0L, zero, (uInt)MiB), crc = crc32(0L, head, (uInt)hn);
    for (uint64_t i = 0; i < mib; i++) crc = crc32_combine(crc, zc, (z_off_t)MiB);
    for (int i = 0; i < 3; i++) free(copies[i]);
    free(zero);
    free(blk);
    return (deflated_t){out.p, out.n, (uint32_t)crc, hn + mib * MiB};
}

static void le16(pb_t *b, unsigned v) {
    uint8_t t[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    pb_raw(b, t, 2);
}
static void le32(pb_t *b, uint32_t v) {
    le16(b, v & 0xffff);
    le16(b, v >> 16);
}

/* A zip of deflated members (names with ".npy"), written to path. */
static void write_npz(const char *path, int n, const char *const *names, const deflated_t *d) {
    pb_t z = {0}, cd = {0};
    for (int i = 0; i < n; i++) {
        uint32_t off = (uint32_t)z.n;
        size_t nl = strlen(names[i]);
        for (int c = 0; c < 2; c++) {
            pb_t *b = c ? &cd : &z;
            le32(b, c ? 0x02014b50u : 0x04034b50u);
            if (c) le16(b, 20);
            le16(b, 20); /* version needed */
            le16(b, 0);  /* flags */
            le16(b, 8);  /* deflate */
            le32(b, 0);  /* time, date */
            le32(b, d[i].crc);
            le32(b, (uint32_t)d[i].n);
            le32(b, (uint32_t)d[i].usize);
            le16(b, (unsigned)nl);
            le16(b, 0); /* extra */
            if (c) {
                le16(b, 0); /* comment */
                le16(b, 0); /* disk */
                le16(b, 0); /* internal attributes */
                le32(b, 0); /* external attributes */
                le32(b, off);
            }
            pb_raw(b, names[i], nl);
            if (!c) pb_raw(b, d[i].p, d[i].n);
        }
    }
    uint32_t cd_off = (uint32_t)z.n;
    pb_raw(&z, cd.p, cd.n);
    le32(&z, 0x06054b50u);
    le32(&z, 0);
    le16(&z, (unsigned)n);
    le16(&z, (unsigned)n);
    le32(&z, (uint32_t)cd.n);
    le32(&z, cd_off);
    le16(&z, 0);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(z.p, 1, z.n, f), z.n);
    cr_assert_eq(fclose(f), 0);
    free(z.p);
    free(cd.p);
}

/* Peak RSS (MiB) of the children waited for so far (each test runs in its own process). */
static long children_peak_mib(void) {
    struct rusage ru;
    cr_assert_eq(getrusage(RUSAGE_CHILDREN, &ru), 0);
    return ru.ru_maxrss / 1024;
}

Test(hostile_loader, npz_member_naming_no_input_is_refused_before_it_is_inflated, .timeout = 120) {
    char dir[PATH_MAX], path[PATH_MAX + 32];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/bomb.npz", dir);
    uint8_t h[256];
    const int64_t xs[4] = {4, 1, 8, 8}, js[1] = {(int64_t)64 << 20};
    size_t hx = npy_header_f4(h, 4, xs);
    deflated_t d[2];
    /* "input": 4 digits images of zeros (1 KiB of data, under a MiB: no zero block). */
    uint8_t xb[256 + 1024] = {0};
    memcpy(xb, h, hx);
    d[0] = deflate_zeros(xb, hx + 1024, 0);
    /* "junk": 256 MiB of zeros, about 256 KiB deflated; no model input has its name. */
    size_t hj = npy_header_f4(h, 1, js);
    d[1] = deflate_zeros(h, hj, 256);
    const char *names[2] = {"input.npy", "junk.npy"};
    write_npz(path, 2, names, d);
    ba_test_run_t r = ba_test_cli("eval", BA_FIXTURES "/digits/cnn_dyn.onnx", "--data", path, NULL);
    long peak = children_peak_mib();
    cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, path) && strstr(r.err, "'junk'"), "%s", r.err);
    cr_assert_lt(peak, 128, "peak RSS %ld MiB: the unneeded member was inflated", peak);
    ba_test_run_free(&r);
    /* The same archive without the junk member evaluates. */
    write_npz(path, 1, names, d);
    r = ba_test_cli("eval", BA_FIXTURES "/digits/cnn_dyn.onnx", "--data", path, NULL);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    ba_test_run_free(&r);
    free(d[0].p);
    free(d[1].p);
    ba_test_rmtree(dir);
}

Test(hostile_loader, npz_header_smaller_than_the_member_is_refused_before_inflating, .timeout = 120) {
    /* The .npy header says 1 float; the member inflates to 256 MiB more. */
    uint8_t h[256];
    const int64_t one = 1;
    size_t hn = npy_header_f4(h, 1, &one);
    deflated_t d = deflate_zeros(h, hn, 256);
    char dir[PATH_MAX], path[PATH_MAX + 32];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/lie.npz", dir);
    const char *names[1] = {"input.npy"};
    write_npz(path, 1, names, &d);
    free(d.p);
    ba_test_run_t r = ba_test_cli("eval", BA_FIXTURES "/digits/cnn_dyn.onnx", "--data", path, NULL);
    long peak = children_peak_mib();
    cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "member 'input.npy'") && strstr(r.err, "shape/size mismatch"), "%s", r.err);
    cr_assert_lt(peak, 128, "peak RSS %ld MiB: the member was inflated before its header was checked", peak);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

#if defined(__SANITIZE_ADDRESS__)
#define BA_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BA_TEST_ASAN 1
#endif
#endif

Test(hostile_loader, npz_member_larger_than_memory_is_an_input_error_naming_it, .timeout = 120) {
#ifdef BA_TEST_ASAN
    cr_skip_test("ASan reserves terabytes of address space: an address-space limit cannot be set under it");
#else
    /* A process limited to its present address space + 256 MiB, and a member
     * (about 1/1000 of its size deflated) 64 MiB larger than that limit. */
    FILE *sf = fopen("/proc/self/statm", "r");
    cr_assert_not_null(sf);
    unsigned long vm_pages = 0;
    cr_assert_eq(fscanf(sf, "%lu", &vm_pages), 1);
    fclose(sf);
    uint64_t limit = (uint64_t)vm_pages * (uint64_t)sysconf(_SC_PAGESIZE) + ((uint64_t)256 << 20);
    uint64_t mib = (limit >> 20) + 64;
    if (mib >= 4000) cr_skip_test("address space already %lu pages: the member would need zip64", vm_pages);
    uint8_t h[256];
    const int64_t n = (int64_t)(mib << 18); /* float32: 4 bytes each */
    size_t hn = npy_header_f4(h, 1, &n);
    deflated_t d = deflate_zeros(h, hn, mib);
    char dir[PATH_MAX], path[PATH_MAX + 32];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/big.npz", dir);
    const char *names[1] = {"x.npy"};
    write_npz(path, 1, names, &d);
    free(d.p);
    struct rlimit old, rl;
    cr_assert_eq(getrlimit(RLIMIT_AS, &old), 0);
    rl.rlim_cur = (rlim_t)limit;
    rl.rlim_max = old.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_AS, &rl), 0);
    ba_npz_t *z = NULL;
    ba_error err = {0};
    ba_status st = ba_npz_load(path, &z, &err);
    setrlimit(RLIMIT_AS, &old);
    char want[64];
    snprintf(want, sizeof want, "%llu bytes", (unsigned long long)(mib << 20));
    cr_assert_eq(st, BA_ERR_INPUT, "%d: %s", st, err.msg);
    cr_assert(strstr(err.msg, "member 'x.npy'") && strstr(err.msg, want), "%s", err.msg);
    ba_test_rmtree(dir);
#endif
}

/* ---------------- sensitivity files ---------------- */

Test(hostile_loader, sensitivity_score_whose_cost_overflows_is_refused) {
    /* Found by fuzz_sens: score x weight error was +inf, a cost the ILP cannot use. */
    char dir[PATH_MAX], path[PATH_MAX + 32];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/scores.csv", dir);
    cr_assert_eq(ba_test_write_file(path,
                                    "layer,score\nonnx::Conv_31,1\nonnx::Conv_34,1.7e308\nconv3.weight,1\n"
                                    "fc.weight,1\n"),
                 0);
    ba_error err = {0};
    ba_model_t *m = NULL;
    cr_assert_eq(ba_model_load(BA_FIXTURES "/digits/cnn_dyn.onnx", NULL, &m, &err), BA_OK, "%s", err.msg);
    ba_quant_cfg_t cfg = ba_quant_cfg_default();
    ba_sens_table_t *t = NULL;
    ba_status st = ba_sens_read_file(path, m, NULL, 0, &cfg, &t, &err);
    cr_assert_eq(st, BA_ERR_INPUT, "%d: %s", st, err.msg);
    cr_assert_null(t);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "line 3") && strstr(err.msg, "onnx::Conv_34") &&
                  strstr(err.msg, "overflow"),
              "%s", err.msg);
    ba_model_free(m);
    ba_test_rmtree(dir);
}

/* ---------------- config files ---------------- */

Test(hostile_loader, config_with_malformed_utf8_is_refused_not_a_hang, .timeout = 60) {
    /* Found by fuzz_config: libfyaml loops forever on a directive line holding
     * a malformed UTF-8 sequence. The run is wrapped in timeout(1) so that a
     * hang fails the test without leaving a spinning process behind. */
    char dir[PATH_MAX], path[PATH_MAX + 32];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/c.yaml", dir);
    cr_assert_eq(ba_test_write_file(path, "# a config\n%\xe2\nmodel: m.onnx\n"), 0);
    const char *argv[] = {"/usr/bin/timeout", "20", BA_CLI, "search", "--config", path, NULL};
    char *out = NULL, *errs = NULL;
    int status = -1;
    cr_assert_eq(ba_test_run(argv, &out, &errs, &status), 0);
    cr_assert_eq(status, 2, "exit %d (124: hung): %s", status, errs);
    cr_assert(strstr(errs, path) && strstr(errs, ":2:") && strstr(errs, "UTF-8"), "%s", errs);
    free(out);
    free(errs);
    /* Well-formed non-ASCII text is fine: the error is about the model, not the encoding. */
    cr_assert_eq(ba_test_write_file(path, "# \xc3\xa9t\xc3\xa9\nmodel: m\xc3\xa9.onnx\n"), 0);
    cr_assert_eq(ba_test_run(argv, &out, &errs, &status), 0);
    cr_assert_null(strstr(errs, "UTF-8"), "%s", errs);
    free(out);
    free(errs);
    ba_test_rmtree(dir);
}

Test(hostile_loader, hw_profile_with_malformed_utf8_is_refused_not_a_hang, .timeout = 60) {
    char dir[PATH_MAX], path[PATH_MAX + 32];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/chip.yaml", dir);
    cr_assert_eq(ba_test_write_file(path, "%\xe2\npeak_tops: 1\nmem_bw_gbps: 1\n"), 0);
    const char *argv[] = {"/usr/bin/timeout",
                          "20",
                          BA_CLI,
                          "search",
                          BA_FIXTURES "/digits/mlp_dyn.onnx",
                          "--data",
                          BA_FIXTURES "/digits/calib_x_flat.npy",
                          "--budget",
                          "latency=10us",
                          "--hw",
                          path,
                          "--db",
                          dir,
                          NULL};
    char *out = NULL, *errs = NULL;
    int status = -1;
    cr_assert_eq(ba_test_run(argv, &out, &errs, &status), 0);
    cr_assert_eq(status, 2, "exit %d (124: hung): %s", status, errs);
    cr_assert(strstr(errs, path) && strstr(errs, "UTF-8"), "%s", errs);
    free(out);
    free(errs);
    ba_test_rmtree(dir);
}

Test(hostile_loader, plan_config_and_data_naming_a_fifo_are_refused_without_blocking, .timeout = 60) {
    char dir[PATH_MAX], fifo[PATH_MAX + 32];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(fifo, sizeof fifo, "%s/f", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    const char *model = BA_FIXTURES "/digits/mlp_dyn.onnx", *data = BA_FIXTURES "/digits/calib_x_flat.npy";
    char db[PATH_MAX + 32];
    snprintf(db, sizeof db, "%s/x.db", dir);
    const char *runs[][13] = {
        {"/usr/bin/timeout", "20", BA_CLI, "eval", model, "--data", data, "--plan", fifo},
        {"/usr/bin/timeout", "20", BA_CLI, "eval", model, "--data", fifo, "--config", fifo},
        {"/usr/bin/timeout", "20", BA_CLI, "eval", model, "--data", fifo},
        {"/usr/bin/timeout", "20", BA_CLI, "search", model, "--data", data, "--budget", "avg-bits=4",
         "--sensitivity-file", fifo, "--db", db},
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        const char *argv[14] = {0};
        memcpy(argv, runs[i], sizeof runs[i]);
        char *out = NULL, *errs = NULL;
        int status = -1;
        cr_assert_eq(ba_test_run(argv, &out, &errs, &status), 0);
        cr_assert_eq(status, 2, "run %zu: exit %d (124: hung): %s", i, status, errs);
        cr_assert(strstr(errs, fifo), "run %zu: %s", i, errs);
        free(out);
        free(errs);
    }
    ba_test_rmtree(dir);
}
