/* See hostile.h. */
#include "tests/hostile/hostile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/util.h"
#include "tests/pb_write.h"

static ba_hostile_t *push(ba_hostile_set_t *s) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        ba_hostile_t *v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) return NULL;
        s->v = v;
        s->cap = cap;
    }
    ba_hostile_t *h = &s->v[s->n++];
    memset(h, 0, sizeof *h);
    return h;
}

void ba_hostile_free(ba_hostile_set_t *s) {
    free(s->v);
    memset(s, 0, sizeof *s);
}

int ba_hostile_add(ba_hostile_set_t *s, const char *path, const char *what) {
    ba_hostile_t *h = push(s);
    if (!h) return -1;
    snprintf(h->path, sizeof h->path, "%s", path);
    snprintf(h->what, sizeof h->what, "%s", what);
    return 0;
}

static int write_all(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int bad = n && fwrite(data, 1, n, f) != n;
    bad |= fclose(f) != 0;
    return bad ? -1 : 0;
}

int ba_hostile_bytes(const char *dir, const char *name, const void *data, size_t n, const char *what,
                     ba_hostile_set_t *out) {
    ba_hostile_t *h = push(out);
    if (!h) return -1;
    snprintf(h->path, sizeof h->path, "%s/%s", dir, name);
    snprintf(h->what, sizeof h->what, "%s", what);
    return write_all(h->path, data, n);
}

int ba_hostile_mutants(const char *seed, const char *dir, const char *stem, const char *ext, int nmut,
                       uint64_t rng_seed, ba_hostile_set_t *out) {
    uint8_t *d;
    size_t n;
    ba_error err;
    if (ba_file_read(seed, &d, &n, &err) != BA_OK) return -1;
    uint8_t *m = malloc(n + 1);
    if (!m) {
        free(d);
        return -1;
    }
    const size_t cuts[] = {0, 1, n / 4, n / 2, n ? n - 1 : 0};
    int k = 0, rc = 0;
    char name[256], what[128];
    for (size_t i = 0; rc == 0 && i < sizeof cuts / sizeof cuts[0]; i++, k++) {
        snprintf(name, sizeof name, "%s.%d.%s", stem, k, ext);
        snprintf(what, sizeof what, "truncated at %zu of %zu", cuts[i], n);
        rc = ba_hostile_bytes(dir, name, d, cuts[i], what, out);
    }
    ba_rng_t r;
    ba_rng_seed(&r, rng_seed);
    for (int j = 0; rc == 0 && n && j < nmut; j++, k++) {
        memcpy(m, d, n);
        int flips = 1 + (int)ba_rng_below(&r, 16);
        /* Half of the mutants hit the first 256 bytes, where headers and lengths live. */
        size_t span = (j % 2 == 0 && n > 256) ? 256 : n;
        for (int f = 0; f < flips; f++) {
            size_t at = (size_t)ba_rng_below(&r, span);
            static const uint8_t special[] = {0x00, 0xff, 0x7f, 0x80, 0x01};
            m[at] =
                ba_rng_below(&r, 2) ? special[ba_rng_below(&r, sizeof special)] : (uint8_t)ba_rng_next(&r);
        }
        snprintf(name, sizeof name, "%s.%d.%s", stem, k, ext);
        snprintf(what, sizeof what, "%d bytes overwritten (seed %llu, mutant %d)", flips,
                 (unsigned long long)rng_seed, j);
        rc = ba_hostile_bytes(dir, name, m, n, what, out);
    }
    free(m);
    free(d);
    return rc;
}

static void le16(uint8_t *p, unsigned v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* One zip member (method 0 stored, 8 deflated) with the given payload and claimed size. */
static int write_zip(const char *path, const char *member, const void *payload, size_t pn, int method,
                     uint32_t crc, uint32_t usize) {
    char name[256];
    snprintf(name, sizeof name, "%s.npy", member);
    size_t nl = strlen(name);
    size_t total = 30 + nl + pn + 46 + nl + 22;
    uint8_t *z = calloc(1, total);
    if (!z) return -1;
    uint8_t *p = z;
    le32(p, 0x04034b50u), le16(p + 4, 20), le16(p + 8, (unsigned)method), le32(p + 14, crc);
    le32(p + 18, (uint32_t)pn), le32(p + 22, usize), le16(p + 26, (unsigned)nl);
    memcpy(p + 30, name, nl);
    memcpy(p + 30 + nl, payload, pn);
    size_t cd = 30 + nl + pn;
    p = z + cd;
    le32(p, 0x02014b50u), le16(p + 4, 20), le16(p + 6, 20), le16(p + 10, (unsigned)method), le32(p + 16, crc);
    le32(p + 20, (uint32_t)pn), le32(p + 24, usize), le16(p + 28, (unsigned)nl);
    memcpy(p + 46, name, nl);
    p = z + cd + 46 + nl;
    le32(p, 0x06054b50u), le16(p + 8, 1), le16(p + 10, 1), le32(p + 12, (uint32_t)(46 + nl)),
        le32(p + 16, (uint32_t)cd);
    int rc = write_all(path, z, total);
    free(z);
    return rc;
}

int ba_hostile_npz(const char *path, const char *member, const void *npy, size_t n) {
    return write_zip(path, member, npy, n, 0, (uint32_t)crc32(0L, npy, (uInt)n), (uint32_t)n);
}

int ba_hostile_npz_deflated(const char *path, const char *member, const void *npy, size_t n,
                            uint32_t claimed_size) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
    size_t cap = deflateBound(&zs, (uLong)n);
    uint8_t *c = malloc(cap);
    if (!c) {
        deflateEnd(&zs);
        return -1;
    }
    zs.next_in = (Bytef *)(uintptr_t)npy;
    zs.avail_in = (uInt)n;
    zs.next_out = c;
    zs.avail_out = (uInt)cap;
    int ok = deflate(&zs, Z_FINISH) == Z_STREAM_END;
    size_t cn = zs.total_out;
    deflateEnd(&zs);
    int rc = ok ? write_zip(path, member, c, cn, 8, (uint32_t)crc32(0L, npy, (uInt)n), claimed_size) : -1;
    free(c);
    return rc;
}

/* Protobuf writing backwards: the buffer fills from its end, so each message's length is
 * known when its header is prepended. */
typedef struct {
    uint8_t *buf;
    size_t cap, pos; /* data in buf[pos, cap) */
} back_t;

static void back_bytes(back_t *b, const void *d, size_t n) {
    b->pos -= n;
    memcpy(b->buf + b->pos, d, n);
}

static void back_varint(back_t *b, uint64_t v) {
    uint8_t t[10];
    size_t n = 0;
    do {
        t[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) t[n] |= 0x80;
        n++;
    } while (v);
    back_bytes(b, t, n);
}

/* Prepends the header of a length-delimited field whose payload is everything written so far. */
static void back_len_field(back_t *b, unsigned field) {
    back_varint(b, b->cap - b->pos);
    back_varint(b, (uint64_t)field << 3 | 2);
}

static void back_string_field(back_t *b, unsigned field, const char *s) {
    back_bytes(b, s, strlen(s));
    back_varint(b, strlen(s));
    back_varint(b, (uint64_t)field << 3 | 2);
}

int ba_hostile_onnx_nested(const char *path, int depth) {
    back_t b = {.cap = (size_t)depth * 32 + 256};
    if (!(b.buf = malloc(b.cap))) return -1;
    b.pos = b.cap; /* an empty GraphProto */
    for (int i = 0; i < depth; i++) {
        /* AttributeProto { name (1): "g", type (20): GRAPH = 5, g (6): <the graph so far> } */
        back_len_field(&b, 6);
        back_varint(&b, 5);
        back_varint(&b, 20u << 3 | 0);
        back_string_field(&b, 1, "g");
        /* NodeProto { op_type (4): "If", attribute (5): <attr> } */
        back_len_field(&b, 5);
        back_string_field(&b, 4, "If");
        /* GraphProto { node (1): <node> } */
        back_len_field(&b, 1);
    }
    /* ModelProto { ir_version (1): 8, opset_import (8): {version (2): 13}, graph (7): <graph> } */
    back_len_field(&b, 7);
    static const uint8_t opset[] = {8u << 3 | 2, 2, 2u << 3 | 0, 13};
    back_bytes(&b, opset, sizeof opset);
    back_varint(&b, 8);
    back_varint(&b, 1u << 3 | 0);
    int rc = write_all(path, b.buf + b.pos, b.cap - b.pos);
    free(b.buf);
    return rc;
}

int ba_hostile_onnx_external(const char *path, const char *location, int64_t offset, int64_t length) {
    ba_pb_t kv = {0}, tensor = {0}, node = {0}, dim = {0}, shape = {0}, tt = {0}, type = {0}, out = {0},
            graph = {0}, opset = {0}, model = {0};
    char num[32];
    /* TensorProto { dims (1): 2, data_type (2): FLOAT, name (8): "w", external_data (13), data_location (14)
     * } */
    ba_pb_int(&tensor, 1, 2);
    ba_pb_int(&tensor, 2, 1);
    ba_pb_str(&tensor, 8, "w");
    ba_pb_str(&kv, 1, "location"), ba_pb_str(&kv, 2, location);
    ba_pb_msg(&tensor, 13, &kv);
    if (offset >= 0) {
        kv.n = 0;
        snprintf(num, sizeof num, "%lld", (long long)offset);
        ba_pb_str(&kv, 1, "offset"), ba_pb_str(&kv, 2, num);
        ba_pb_msg(&tensor, 13, &kv);
    }
    if (length >= 0) {
        kv.n = 0;
        snprintf(num, sizeof num, "%lld", (long long)length);
        ba_pb_str(&kv, 1, "length"), ba_pb_str(&kv, 2, num);
        ba_pb_msg(&tensor, 13, &kv);
    }
    ba_pb_int(&tensor, 14, 1);
    /* NodeProto { input (1): "w", output (2): "y", op_type (4): "Identity" } */
    ba_pb_str(&node, 1, "w"), ba_pb_str(&node, 2, "y"), ba_pb_str(&node, 4, "Identity");
    /* ValueInfoProto { name (1): "y", type (2): { tensor_type (1): { elem_type (1), shape (2) } } } */
    ba_pb_int(&dim, 1, 2);
    ba_pb_msg(&shape, 1, &dim);
    ba_pb_int(&tt, 1, 1);
    ba_pb_msg(&tt, 2, &shape);
    ba_pb_msg(&type, 1, &tt);
    ba_pb_str(&out, 1, "y");
    ba_pb_msg(&out, 2, &type);
    /* GraphProto { node (1), name (2), initializer (5), output (12) } */
    ba_pb_msg(&graph, 1, &node);
    ba_pb_str(&graph, 2, "g");
    ba_pb_msg(&graph, 5, &tensor);
    ba_pb_msg(&graph, 12, &out);
    ba_pb_int(&opset, 2, 13);
    ba_pb_int(&model, 1, 8);
    ba_pb_msg(&model, 8, &opset);
    ba_pb_msg(&model, 7, &graph);
    return write_all(path, model.b, model.n);
}

int ba_hostile_specials(const char *dir, ba_hostile_set_t *out) {
    ba_hostile_t *h;
    int rc = 0;
    if (!(h = push(out))) return -1;
    snprintf(h->path, sizeof h->path, "%s/fifo", dir);
    snprintf(h->what, sizeof h->what, "a FIFO nobody writes");
    rc |= mkfifo(h->path, 0600);
    if (!(h = push(out))) return -1;
    snprintf(h->path, sizeof h->path, "%s/folder", dir);
    snprintf(h->what, sizeof h->what, "a folder");
    rc |= mkdir(h->path, 0755);
    if (!(h = push(out))) return -1;
    snprintf(h->path, sizeof h->path, "%s/loop_a", dir);
    snprintf(h->what, sizeof h->what, "a symlink loop");
    char other[1100];
    snprintf(other, sizeof other, "%s/loop_b", dir);
    rc |= symlink("loop_b", h->path) | symlink("loop_a", other);
    if (!(h = push(out))) return -1;
    snprintf(h->path, sizeof h->path, "%s/dangling", dir);
    snprintf(h->what, sizeof h->what, "a symlink to nothing");
    rc |= symlink("no-such-file", h->path);
    if (!(h = push(out))) return -1;
    snprintf(h->path, sizeof h->path, "%s/to_folder", dir);
    snprintf(h->what, sizeof h->what, "a symlink to a folder");
    rc |= symlink("folder", h->path);
    static const char *const devs[] = {"/dev/zero", "/dev/null"};
    for (int i = 0; i < 2; i++) {
        if (!(h = push(out))) return -1;
        snprintf(h->path, sizeof h->path, "%s", devs[i]);
        snprintf(h->what, sizeof h->what, "a character device");
    }
    return rc ? -1 : 0;
}
