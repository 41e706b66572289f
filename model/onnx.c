/* ONNX file -> graph IR. protobuf-c (schema compiled from Debian's onnx.proto)
 * decodes every message; a small bounds-checked wire walker only splits the
 * file so that weights are never held twice.
 *
 * Memory (DESIGN "weights are read once"): the file is mmap'ed. The ModelProto
 * is unpacked without its graph; the graph is walked field by field and each
 * node / value info / initializer is unpacked on its own. An initializer's
 * raw_data is not handed to protobuf-c (it would copy it): the walker strips
 * field 9 from the TensorProto, protobuf-c decodes the small rest, and the
 * bytes are copied once from the mapping into an owned, 64-byte-aligned
 * tensor; then the pages just read are dropped (madvise DONTNEED). Peak RSS is
 * therefore about one copy of the weights plus the largest single tensor.
 * Typed-field tensors (float_data …) and Constant-node tensors are decoded by
 * protobuf-c and copied, one message at a time. int4/uint4 tensors are
 * unpacked on load into int8/uint8 (one element per byte, int4 sign-extended). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/pbwire.h"
#include "core/util.h"
#include "model/graph_internal.h"
#include "model/ops.h"
#include "onnx/onnx.pb-c.h"

/* Field numbers of onnx.proto that the walker needs. */
enum { MODEL_GRAPH = 7 };
enum {
    GRAPH_NODE = 1,
    GRAPH_INITIALIZER = 5,
    GRAPH_SPARSE_INIT = 15,
    GRAPH_INPUT = 11,
    GRAPH_OUTPUT = 12,
    GRAPH_VALUE_INFO = 13
};
enum { TENSOR_RAW_DATA = 9 };
/* Pages dropped after hashing / copying are released in chunks of this size. */
#define DROP_CHUNK ((size_t)16 << 20)

/* ---------------- wire walker: core/pbwire ---------------- */

typedef struct {
    uint8_t *buf;
    size_t len, cap;
} bytes_buf;

static int buf_add(bytes_buf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *nb = realloc(b->buf, cap);
        if (!nb) return 0;
        b->buf = nb;
        b->cap = cap;
    }
    if (n) memcpy(b->buf + b->len, p, n);
    b->len += n;
    return 1;
}

/* Releases the resident pages of [p, p+n) of a read-only private mapping; they
 * come back from the file if touched again. */
static void drop_pages(const uint8_t *base, const uint8_t *p, size_t n) {
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0 || !n) return;
    uintptr_t a = (uintptr_t)p, e = (uintptr_t)p + n;
    uintptr_t lo = (a + (uintptr_t)pg - 1) / (uintptr_t)pg * (uintptr_t)pg,
              hi = e / (uintptr_t)pg * (uintptr_t)pg;
    if (lo < (uintptr_t)base) lo = (uintptr_t)base;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* ---------------- nesting bound ---------------- */

/* protobuf-c decodes nested messages recursively, so a small hostile file that
 * nests thousands of messages (TypeProto sequence elem types, If bodies inside
 * If bodies …) would overflow the stack. Before anything is decoded, the whole
 * file is walked against the schema (protobuf-c's descriptors say which fields
 * are messages; bytes such as raw_data are skipped, not read) and refused when
 * messages nest deeper than ONNX_MAX_DEPTH (ModelProto is level 1; each If/Loop
 * body adds 3 levels, each sequence/optional type 2). The walk itself recurses
 * at most that deep. */
#define ONNX_MAX_DEPTH 100

/* 0: fine; 1: too deep; -1: malformed at *bad. */
static int nest_scan(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end, int depth,
                     const uint8_t **bad) {
    if (depth > ONNX_MAX_DEPTH) return 1;
    ba_pb_field f;
    while (p < end) {
        if (!ba_pb_next(&p, end, &f)) {
            *bad = p;
            return -1;
        }
        if (f.wire != BA_PB_LEN) continue;
        const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, f.field);
        if (!fd || fd->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        int r = nest_scan(fd->descriptor, f.payload, f.payload + f.len, depth + 1, bad);
        if (r) return r;
    }
    return 0;
}

/* ---------------- tensors ---------------- */

static int dtype_supported(int dt) {
    switch (dt) {
    case BA_DT_F32:
    case BA_DT_F16:
    case BA_DT_F64:
    case BA_DT_BF16:
    case BA_DT_I64:
    case BA_DT_I32:
    case BA_DT_I16:
    case BA_DT_U16:
    case BA_DT_I8:
    case BA_DT_U8:
    case BA_DT_BOOL:
    case BA_DT_U32:
    case BA_DT_U64:
    case BA_DT_I4:
    case BA_DT_U4: return 1;
    default: return 0;
    }
}

static const char *tname(const Onnx__TensorProto *tp) {
    return tp->name && tp->name[0] ? tp->name : "(unnamed tensor)";
}

/* Reads an external-data tensor: location relative to the model folder, never
 * absolute, never with a ".." component, and (after symlinks) inside it. */
static ba_status read_external(ba_model_t *m, const Onnx__TensorProto *tp, void *dst, size_t nb,
                               ba_error *err) {
    ba_model_priv_t *pv = m->priv;
    const char *loc = NULL;
    int64_t off = 0, len = -1;
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = tp->external_data[i];
        if (!e->key || !e->value) continue;
        char *endp;
        if (strcmp(e->key, "location") == 0)
            loc = e->value;
        else if (strcmp(e->key, "offset") == 0 || strcmp(e->key, "length") == 0) {
            errno = 0;
            long long v = strtoll(e->value, &endp, 10);
            if (errno || *endp || v < 0)
                return ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s': bad external-data %s '%s'", m->path,
                                    tname(tp), e->key, e->value);
            if (e->key[0] == 'o')
                off = v;
            else
                len = v;
        }
    }
    if (!loc || !loc[0])
        return ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s': external data without a location", m->path,
                            tname(tp));
    if (loc[0] == '/')
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: tensor '%s': external data path '%s' is absolute (refused)", m->path,
                            tname(tp), loc);
    for (const char *c = loc; *c;) {
        const char *s = strchr(c, '/');
        size_t n = s ? (size_t)(s - c) : strlen(c);
        if (n == 2 && c[0] == '.' && c[1] == '.')
            return ba_error_set(err, BA_ERR_INPUT,
                                "%s: tensor '%s': external data path '%s' leaves the model folder (refused)",
                                m->path, tname(tp), loc);
        c += n + (s ? 1 : 0);
        if (!s) break;
    }
    char full[PATH_MAX * 2];
    snprintf(full, sizeof full, "%s/%s", pv->dir, loc);
    char rdir[PATH_MAX], rfile[PATH_MAX];
    if (!realpath(pv->dir, rdir) || !realpath(full, rfile))
        return ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s': external data file '%s' not found", m->path,
                            tname(tp), full);
    size_t dl = strlen(rdir);
    if (strncmp(rfile, rdir, dl) != 0 || (rfile[dl] != '/' && strcmp(rdir, "/") != 0))
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: tensor '%s': external data path '%s' leaves the model folder (refused)",
                            m->path, tname(tp), loc);
    if (len >= 0 && (uint64_t)len != nb)
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: tensor '%s': external data length %lld but shape needs %zu bytes", m->path,
                            tname(tp), (long long)len, nb);
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer
     * forever; only a regular file is read. */
    int fd = open(rfile, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s': cannot open external data '%s': %s", m->path,
                            tname(tp), full, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: tensor '%s': external data '%s' is not a regular file (refused)", m->path,
                            tname(tp), full);
    }
    if ((uint64_t)off > (uint64_t)st.st_size || nb > (uint64_t)st.st_size - (uint64_t)off) {
        close(fd);
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: tensor '%s': external data '%s' too short for offset %lld + %zu bytes",
                            m->path, tname(tp), full, (long long)off, nb);
    }
    size_t done = 0;
    while (done < nb) {
        ssize_t r = pread(fd, (uint8_t *)dst + done, nb - done, (off_t)(off + (int64_t)done));
        if (r <= 0) {
            close(fd);
            return ba_error_set(err, BA_ERR_IO, "%s: tensor '%s': reading '%s' failed", m->path, tname(tp),
                                full);
        }
        done += (size_t)r;
    }
    close(fd);
    return BA_OK;
}

/* Fills t (int8/uint8, numel elements) from int4/uint4 data packed two per
 * byte, low nibble first: nb bytes of raw_data, external data, or int32_data
 * (one packed byte per entry, as the ONNX TensorProto docs say). */
static ba_status load_packed4(ba_model_t *m, const Onnx__TensorProto *tp, const uint8_t *raw, int has_raw,
                              int external, const int32_t *typed, size_t nb, ba_tensor_t *t, ba_error *err) {
    uint8_t *packed = ba_malloc(nb ? nb : 1, err);
    if (!packed) return err->code;
    ba_status st = BA_OK;
    if (external)
        st = read_external(m, tp, packed, nb, err);
    else if (has_raw)
        memcpy(packed, raw, nb);
    else
        for (size_t i = 0; i < nb; i++) packed[i] = (uint8_t)typed[i];
    int is_signed = t->dtype == BA_DT_I8;
    for (int64_t i = 0; st == BA_OK && i < t->numel; i++) {
        unsigned v = i % 2 ? packed[i / 2] >> 4 : packed[i / 2] & 0xfu;
        if (is_signed)
            ((int8_t *)t->data)[i] = (int8_t)(v >= 8 ? (int)v - 16 : (int)v);
        else
            ((uint8_t *)t->data)[i] = (uint8_t)v;
    }
    free(packed);
    return st;
}

ba_status ba_onnx_tensor(ba_model_t *m, const Onnx__TensorProto *tp, const uint8_t *raw, size_t raw_len,
                         int has_raw, ba_tensor_t **out, ba_error *err) {
    *out = NULL;
    int dt = tp->has_data_type ? tp->data_type : 0;
    if (!dtype_supported(dt))
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: tensor '%s': data type %d is not supported",
                            m->path, tname(tp), dt);
    if (tp->n_dims > BA_MAX_DIMS)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: tensor '%s': rank %zu exceeds %d", m->path,
                            tname(tp), tp->n_dims, BA_MAX_DIMS);
    if (tp->segment)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: tensor '%s': segmented tensors are not supported",
                            m->path, tname(tp));
    int64_t shape[BA_MAX_DIMS];
    uint64_t numel = 1;
    const uint64_t max_bytes = (uint64_t)1 << 46; /* 64 TiB: anything larger is a hostile header */
    for (size_t i = 0; i < tp->n_dims; i++) {
        if (tp->dims[i] < 0)
            return ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s': negative dimension %lld", m->path,
                                tname(tp), (long long)tp->dims[i]);
        shape[i] = tp->dims[i];
        if (shape[i] && numel > max_bytes / (uint64_t)shape[i])
            return ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s': element count overflows", m->path,
                                tname(tp));
        numel *= (uint64_t)shape[i];
    }
    /* int4/uint4 are stored packed (two per byte, low nibble first) and kept
     * unpacked in the engine: one int8/uint8 per element, int4 sign-extended. */
    int four = dt == BA_DT_I4 || dt == BA_DT_U4;
    ba_dtype sdt = dt == BA_DT_I4 ? BA_DT_I8 : dt == BA_DT_U4 ? BA_DT_U8 : (ba_dtype)dt;
    size_t es = ba_dtype_size(sdt);
    if (numel > max_bytes / es)
        return ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s': size overflows", m->path, tname(tp));
    size_t nb = four ? (size_t)((numel + 1) / 2) : (size_t)numel * es; /* bytes as stored */
    size_t nstored = four ? nb : (size_t)numel; /* typed values as stored (int4: one packed byte each) */
    int external = tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    if (!raw && tp->has_raw_data) {
        raw = tp->raw_data.data;
        raw_len = tp->raw_data.len;
        has_raw = 1;
    }
    size_t ntyped = 0;
    const void *typed = NULL;
    int kind = 0; /* 1 float, 2 int32, 3 int64, 4 double, 5 uint64 */
    switch (dt) {
    case BA_DT_F32: ntyped = tp->n_float_data, typed = tp->float_data, kind = 1; break;
    case BA_DT_F64: ntyped = tp->n_double_data, typed = tp->double_data, kind = 4; break;
    case BA_DT_I64: ntyped = tp->n_int64_data, typed = tp->int64_data, kind = 3; break;
    case BA_DT_U32:
    case BA_DT_U64: ntyped = tp->n_uint64_data, typed = tp->uint64_data, kind = 5; break;
    default: ntyped = tp->n_int32_data, typed = tp->int32_data, kind = 2; break;
    }
    /* Before allocating: the bytes must be there (a hostile header cannot make us allocate). */
    if (!external) {
        if (has_raw) {
            if (raw_len != nb)
                return ba_error_set(err, BA_ERR_INPUT,
                                    "%s: tensor '%s': raw_data holds %zu bytes but shape needs %zu", m->path,
                                    tname(tp), raw_len, nb);
        } else if (ntyped != nstored) {
            return ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s': %zu stored values but shape needs %zu",
                                m->path, tname(tp), ntyped, nstored);
        }
    }
    ba_tensor_t *t = ba_tensor_new(sdt, (int)tp->n_dims, shape, err);
    if (!t) return ba_error_prefix(err, "%s: tensor '%s'", m->path, tname(tp));
    ba_status st = BA_OK;
    if (four) {
        st = load_packed4(m, tp, raw, has_raw, external, (const int32_t *)typed, nb, t, err);
    } else if (external) {
        st = read_external(m, tp, t->data, nb, err);
    } else if (has_raw) {
        if (nb) memcpy(t->data, raw, nb);
    } else {
        for (size_t i = 0; i < numel; i++) {
            switch (kind) {
            case 1: ((float *)t->data)[i] = ((const float *)typed)[i]; break;
            case 3: ((int64_t *)t->data)[i] = ((const int64_t *)typed)[i]; break;
            case 4: ((double *)t->data)[i] = ((const double *)typed)[i]; break;
            case 5:
                if (dt == BA_DT_U32)
                    ((uint32_t *)t->data)[i] = (uint32_t)((const uint64_t *)typed)[i];
                else
                    ((uint64_t *)t->data)[i] = ((const uint64_t *)typed)[i];
                break;
            default: {
                int32_t v = ((const int32_t *)typed)[i];
                switch (dt) {
                case BA_DT_I32: ((int32_t *)t->data)[i] = v; break;
                case BA_DT_F16:
                case BA_DT_BF16:
                case BA_DT_U16: ((uint16_t *)t->data)[i] = (uint16_t)v; break;
                case BA_DT_I16: ((int16_t *)t->data)[i] = (int16_t)v; break;
                case BA_DT_I8: ((int8_t *)t->data)[i] = (int8_t)v; break;
                case BA_DT_BOOL: ((uint8_t *)t->data)[i] = v != 0; break;
                default: ((uint8_t *)t->data)[i] = (uint8_t)v; break;
                }
            }
            }
        }
    }
    if (st != BA_OK) {
        ba_tensor_unref(t);
        return st;
    }
    *out = t;
    return BA_OK;
}

/* ---------------- nodes, values ---------------- */

/* A dim_param symbol, cut to a sane length (it is only printed). */
static char *dup_symbol(const char *s, ba_error *err) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    return ba_strdup(buf, err);
}

static ba_status set_value_info(ba_model_t *m, const Onnx__ValueInfoProto *vi, int role, ba_error *err) {
    if (!vi->name || !vi->name[0]) {
        if (role == GRAPH_VALUE_INFO) return BA_OK;
        return ba_error_set(err, BA_ERR_INPUT, "%s: graph %s without a name", m->path,
                            role == GRAPH_INPUT ? "input" : "output");
    }
    int id = ba_graph_value(m, vi->name, err);
    if (id < 0) return err->code;
    ba_value_t *v = &m->values[id];
    if (role == GRAPH_INPUT) {
        if (v->is_graph_input)
            return ba_error_set(err, BA_ERR_INPUT, "%s: graph input '%s' listed twice", m->path, vi->name);
        v->is_graph_input = 1;
    }
    if (role == GRAPH_OUTPUT) {
        if (v->is_graph_output)
            return ba_error_set(err, BA_ERR_INPUT, "%s: graph output '%s' listed twice", m->path, vi->name);
        v->is_graph_output = 1;
    }
    if (role == GRAPH_INPUT || role == GRAPH_OUTPUT) {
        int **arr = role == GRAPH_INPUT ? &m->inputs : &m->outputs;
        int *cnt = role == GRAPH_INPUT ? &m->ninputs : &m->noutputs;
        int *na = ba_realloc(*arr, sizeof(int) * (size_t)(*cnt + 1), err);
        if (!na) return err->code;
        *arr = na;
        na[(*cnt)++] = id;
    }
    if (vi->type && vi->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && vi->type->tensor_type) {
        const Onnx__TypeProto__Tensor *tt = vi->type->tensor_type;
        if (tt->has_elem_type && v->dtype == BA_DT_UNDEFINED) v->dtype = (ba_dtype)tt->elem_type;
        if (tt->shape && v->ndim < 0) {
            if (tt->shape->n_dim > BA_MAX_DIMS)
                return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: value '%s': rank %zu exceeds %d", m->path,
                                    vi->name, tt->shape->n_dim, BA_MAX_DIMS);
            v->ndim = (int)tt->shape->n_dim;
            for (size_t i = 0; i < tt->shape->n_dim; i++) {
                const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
                v->shape[i] =
                    d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value > 0
                        ? d->dim_value
                        : -1;
                if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && d->dim_param &&
                    d->dim_param[0]) {
                    v->dim_param[i] = dup_symbol(d->dim_param, err);
                    if (!v->dim_param[i]) return err->code;
                }
            }
        }
    }
    return BA_OK;
}

/* name: the value's name (tp->name, or its renamed branch-local name). */
static ba_status add_initializer_as(ba_model_t *m, const Onnx__TensorProto *tp, const char *name,
                                    const uint8_t *raw, size_t raw_len, int has_raw, ba_error *err) {
    if (!name || !name[0]) return ba_error_set(err, BA_ERR_INPUT, "%s: initializer without a name", m->path);
    int id = ba_graph_value(m, name, err);
    if (id < 0) return err->code;
    if (m->values[id].is_initializer)
        return ba_error_set(err, BA_ERR_INPUT, "%s: initializer '%s' defined twice", m->path, name);
    ba_tensor_t *t;
    BA_TRY(ba_onnx_tensor(m, tp, raw, raw_len, has_raw, &t, err));
    ba_value_t *v = &m->values[id];
    v->constant = t;
    v->is_initializer = 1;
    v->dtype = t->dtype;
    v->ndim = t->ndim;
    memcpy(v->shape, t->shape, sizeof v->shape);
    return BA_OK;
}

static ba_status add_initializer(ba_model_t *m, const Onnx__TensorProto *tp, const uint8_t *raw,
                                 size_t raw_len, int has_raw, ba_error *err) {
    return add_initializer_as(m, tp, tp->name, raw, raw_len, has_raw, err);
}

static char *dup_bytes(const ProtobufCBinaryData *b, ba_error *err) {
    char *s = ba_malloc(b->len + 1, err);
    if (!s) return NULL;
    if (b->len) memcpy(s, b->data, b->len);
    s[b->len] = 0;
    return s;
}

static ba_status convert_attr(ba_model_t *m, const ba_node_t *n, const Onnx__AttributeProto *ap, ba_attr_t *a,
                              ba_error *err) {
    a->name = ba_strdup(ap->name ? ap->name : "", err);
    if (!a->name) return err->code;
    if (ap->ref_attr_name && ap->ref_attr_name[0])
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: node '%s': attribute references are not supported",
                            m->path, n->name);
    int type = ap->has_type ? (int)ap->type : 0;
    if (!type) { /* IR < 2 files leave the type out: infer it from what is set */
        if (ap->has_f)
            type = BA_ATTR_FLOAT;
        else if (ap->has_i)
            type = BA_ATTR_INT;
        else if (ap->has_s)
            type = BA_ATTR_STRING;
        else if (ap->t)
            type = BA_ATTR_TENSOR;
        else if (ap->g)
            type = BA_ATTR_GRAPH;
        else if (ap->n_floats)
            type = BA_ATTR_FLOATS;
        else if (ap->n_ints)
            type = BA_ATTR_INTS;
        else if (ap->n_strings)
            type = BA_ATTR_STRINGS;
    }
    a->type = type;
    switch (type) {
    case BA_ATTR_FLOAT: a->f = ap->f; break;
    case BA_ATTR_INT: a->i = ap->i; break;
    case BA_ATTR_STRING:
        a->s = dup_bytes(&ap->s, err);
        if (!a->s) return err->code;
        break;
    case BA_ATTR_TENSOR:
        if (!ap->t)
            return ba_error_set(err, BA_ERR_INPUT, "%s: node '%s': tensor attribute '%s' is empty", m->path,
                                n->name, a->name);
        BA_TRY(ba_onnx_tensor(m, ap->t, NULL, 0, 0, &a->t, err));
        break;
    case BA_ATTR_GRAPH: a->graph = ap->g; break;
    case BA_ATTR_FLOATS:
        a->n = (int)ap->n_floats;
        if (ap->n_floats > INT_MAX) return ba_error_set(err, BA_ERR_INPUT, "%s: attribute too long", m->path);
        a->floats = ba_malloc(sizeof(float) * (ap->n_floats + 1), err);
        if (!a->floats) return err->code;
        if (ap->n_floats) memcpy(a->floats, ap->floats, sizeof(float) * ap->n_floats);
        break;
    case BA_ATTR_INTS:
        if (ap->n_ints > INT_MAX) return ba_error_set(err, BA_ERR_INPUT, "%s: attribute too long", m->path);
        a->n = (int)ap->n_ints;
        a->ints = ba_malloc(sizeof(int64_t) * (ap->n_ints + 1), err);
        if (!a->ints) return err->code;
        if (ap->n_ints) memcpy(a->ints, ap->ints, sizeof(int64_t) * ap->n_ints);
        break;
    case BA_ATTR_STRINGS:
        if (ap->n_strings > INT_MAX)
            return ba_error_set(err, BA_ERR_INPUT, "%s: attribute too long", m->path);
        a->strings = ba_calloc(ap->n_strings + 1, sizeof(char *), err);
        if (!a->strings) return err->code;
        for (size_t i = 0; i < ap->n_strings; i++) {
            a->strings[i] = dup_bytes(&ap->strings[i], err);
            if (!a->strings[i]) return err->code;
            a->n = (int)i + 1;
        }
        break;
    default: break; /* sparse tensors, type protos: kept as untyped, kernels never ask */
    }
    return BA_OK;
}

/* ---------------- attribute types ---------------- */

/* The type each default-domain attribute name has in the ONNX operator
 * schemas (opsets 9-21, for the ops that have kernels or that the loader
 * handles; one name has one type there, except Pad's float `value` beside
 * Constant's tensor). A typed attribute of another type (Conv strides given
 * as floats …) is refused at load, so that no kernel reads a default instead. */
enum {
    T_FLOAT = 1 << BA_ATTR_FLOAT,
    T_INT = 1 << BA_ATTR_INT,
    T_STRING = 1 << BA_ATTR_STRING,
    T_TENSOR = 1 << BA_ATTR_TENSOR,
    T_GRAPH = 1 << BA_ATTR_GRAPH,
    T_FLOATS = 1 << BA_ATTR_FLOATS,
    T_INTS = 1 << BA_ATTR_INTS,
    T_STRINGS = 1 << BA_ATTR_STRINGS
};
static const struct {
    const char *name;
    unsigned types;
} ATTR_TYPES[] = {{"allowzero", T_INT},
                  {"alpha", T_FLOAT},
                  {"antialias", T_INT},
                  {"approximate", T_STRING},
                  {"auto_pad", T_STRING},
                  {"axes", T_INTS},
                  {"axis", T_INT},
                  {"beta", T_FLOAT},
                  {"block_size", T_INT},
                  {"broadcast", T_INT},
                  {"ceil_mode", T_INT},
                  {"consumed_inputs", T_INTS},
                  {"coordinate_transformation_mode", T_STRING},
                  {"count_include_pad", T_INT},
                  {"cubic_coeff_a", T_FLOAT},
                  {"dilations", T_INTS},
                  {"else_branch", T_GRAPH},
                  {"end", T_INT},
                  {"ends", T_INTS},
                  {"epsilon", T_FLOAT},
                  {"exclude_outside", T_INT},
                  {"exclusive", T_INT},
                  {"extrapolation_value", T_FLOAT},
                  {"fmod", T_INT},
                  {"gamma", T_FLOAT},
                  {"group", T_INT},
                  {"height_scale", T_FLOAT},
                  {"is_test", T_INT},
                  {"k", T_INT},
                  {"keep_aspect_ratio_policy", T_STRING},
                  {"keepdims", T_INT},
                  {"kernel_shape", T_INTS},
                  {"largest", T_INT},
                  {"max", T_FLOAT},
                  {"min", T_FLOAT},
                  {"mode", T_STRING},
                  {"momentum", T_FLOAT},
                  {"nearest_mode", T_STRING},
                  {"noop_with_empty_axes", T_INT},
                  {"num_outputs", T_INT},
                  {"output_dtype", T_INT},
                  {"output_padding", T_INTS},
                  {"output_shape", T_INTS},
                  {"p", T_INT},
                  {"paddings", T_INTS},
                  {"pads", T_INTS},
                  {"perm", T_INTS},
                  {"ratio", T_FLOAT},
                  {"reduction", T_STRING},
                  {"reverse", T_INT},
                  {"saturate", T_INT},
                  {"scales", T_FLOATS},
                  {"seed", T_INT},
                  {"select_last_index", T_INT},
                  {"shape", T_INTS},
                  {"sorted", T_INT},
                  {"spatial", T_INT},
                  {"split", T_INTS},
                  {"start", T_INT},
                  {"starts", T_INTS},
                  {"stash_type", T_INT},
                  {"storage_order", T_INT},
                  {"strides", T_INTS},
                  {"then_branch", T_GRAPH},
                  {"to", T_INT},
                  {"training_mode", T_INT},
                  {"transA", T_INT},
                  {"transB", T_INT},
                  {"upper", T_INT},
                  {"value", T_FLOAT | T_TENSOR},
                  {"value_float", T_FLOAT},
                  {"value_floats", T_FLOATS},
                  {"value_int", T_INT},
                  {"value_ints", T_INTS},
                  {"value_string", T_STRING},
                  {"value_strings", T_STRINGS},
                  {"width_scale", T_FLOAT}};

static const char *attr_type_name(int type) {
    static const char *const names[] = {
        "undefined", "FLOAT",   "INT",     "STRING", "TENSOR",        "GRAPH",          "FLOATS",
        "INTS",      "STRINGS", "TENSORS", "GRAPHS", "SPARSE_TENSOR", "SPARSE_TENSORS", "TYPE_PROTO"};
    return type >= 0 && type < (int)(sizeof names / sizeof names[0]) ? names[type] : "unknown";
}

static ba_status check_attr_type(const ba_model_t *m, const ba_node_t *n, const ba_attr_t *a, ba_error *err) {
    /* Only ops the engine runs: an op it lacks is reported as unsupported, with all the others. */
    if (n->domain[0] || (!ba_op_lookup(n->op_type, n->domain) && strcmp(n->op_type, "If") != 0)) return BA_OK;
    for (size_t i = 0; i < sizeof ATTR_TYPES / sizeof ATTR_TYPES[0]; i++) {
        if (strcmp(ATTR_TYPES[i].name, a->name) != 0) continue;
        if (a->type > 0 && a->type < 32 && (ATTR_TYPES[i].types & (1u << a->type))) return BA_OK;
        char want[64] = "";
        for (int k = 1; k < 32; k++)
            if (ATTR_TYPES[i].types & (1u << k))
                snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", want[0] ? " or " : "",
                         attr_type_name(k));
        return ba_error_set(err, BA_ERR_INPUT, "%s: node '%s' (%s): attribute '%s' is %s but must be %s",
                            m->path, n->name, n->op_type, a->name, attr_type_name(a->type), want);
    }
    return BA_OK;
}

static int keep_proto(ba_model_t *m, Onnx__NodeProto *np) {
    ba_model_priv_t *pv = m->priv;
    if (pv->nprotos == pv->cap_protos) {
        int cap = pv->cap_protos ? pv->cap_protos * 2 : 8;
        void **p = realloc(pv->protos, sizeof(void *) * (size_t)cap);
        if (!p) return 0;
        pv->protos = p;
        pv->cap_protos = cap;
    }
    pv->protos[pv->nprotos++] = np;
    return 1;
}

/* Adds np with its value names seen through scope (NULL: the main graph). */
static ba_status add_node_scoped(ba_model_t *m, const Onnx__NodeProto *np, const ba_scope_t *scope, int guard,
                                 ba_error *err) {
    int idx = ba_graph_new_node(m, err);
    if (idx < 0) return err->code;
    ba_node_t *n = &m->nodes[idx];
    const char *op = np->op_type ? np->op_type : "";
    if (!op[0]) return ba_error_set(err, BA_ERR_INPUT, "%s: node #%d has no op_type", m->path, idx);
    n->op_type = ba_strdup(op, err);
    n->domain = ba_strdup(np->domain && strcmp(np->domain, "ai.onnx") != 0 ? np->domain : "", err);
    if (np->name && np->name[0])
        n->name = ba_strdup(np->name, err);
    else {
        char buf[256];
        snprintf(buf, sizeof buf, "%s_%d", op, idx);
        n->name = ba_strdup(buf, err);
    }
    if (!n->op_type || !n->domain || !n->name) return err->code;
    n->guard = guard;
    n->opset = n->domain[0] ? 1 : (int)m->opset; /* other domains: version not tracked */
    if (np->n_input > INT_MAX / 2 || np->n_output > INT_MAX / 2 || np->n_attribute > INT_MAX / 2)
        return ba_error_set(err, BA_ERR_INPUT, "%s: node '%s': too many inputs/outputs", m->path, n->name);
    n->inputs = ba_calloc(np->n_input + 1, sizeof(int), err);
    n->outputs = ba_calloc(np->n_output + 1, sizeof(int), err);
    n->attrs = ba_calloc(np->n_attribute + 1, sizeof(ba_attr_t), err);
    if (!n->inputs || !n->outputs || !n->attrs) return err->code;
    for (size_t i = 0; i < np->n_input; i++) {
        const char *s = np->input[i];
        n->inputs[i] = -1;
        n->nin = (int)i + 1;
        if (s && s[0]) {
            s = ba_scope_name(scope, s);
            int id = ba_graph_value(m, s, err);
            if (id < 0) return err->code;
            n = &m->nodes[idx]; /* values array may have moved, nodes not; keep the habit */
            n->inputs[i] = id;
        }
    }
    for (size_t i = 0; i < np->n_output; i++) {
        const char *s = np->output[i];
        n->outputs[i] = -1;
        n->nout = (int)i + 1;
        if (s && s[0]) {
            s = ba_scope_name(scope, s);
            int id = ba_graph_value(m, s, err);
            if (id < 0) return err->code;
            if (m->values[id].producer >= 0 || m->values[id].is_initializer)
                return ba_error_set(err, BA_ERR_INPUT, "%s: node '%s': output '%s' is already produced by %s",
                                    m->path, n->name, s,
                                    m->values[id].is_initializer ? "an initializer"
                                                                 : m->nodes[m->values[id].producer].name);
            m->values[id].producer = idx;
            n->outputs[i] = id;
        }
    }
    for (size_t i = 0; i < np->n_attribute; i++) {
        n->nattr = (int)i + 1;
        BA_TRY(convert_attr(m, n, np->attribute[i], &n->attrs[i], err));
        BA_TRY(check_attr_type(m, n, &n->attrs[i], err));
    }
    return BA_OK;
}

ba_status ba_onnx_add_node(ba_model_t *m, const Onnx__NodeProto *np, ba_error *err) {
    return add_node_scoped(m, np, NULL, -1, err);
}

/* ---------------- If branches ---------------- */

/* Deepest If nesting accepted (the expansion recurses). */
enum { MAX_IF_DEPTH = 64 };

const char *ba_scope_name(const ba_scope_t *s, const char *name) {
    for (; s; s = s->parent)
        for (int i = 0; i < s->n; i++)
            if (!strcmp(s->from[i], name)) return s->to[i];
    return name;
}

void ba_scope_free(ba_scope_t *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->from[i]);
        free(s->to[i]);
    }
    free(s->from);
    free(s->to);
    s->from = s->to = NULL;
    s->n = s->cap = 0;
}

static int scope_has(const ba_scope_t *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->from[i], name) || !strcmp(s->to[i], name)) return 1;
    return 0;
}

/* Whether a value or a name of s or an enclosing branch is called name. */
static int name_taken(const ba_model_t *m, const ba_scope_t *s, const char *name) {
    if (ba_model_find_value(m, name) >= 0) return 1;
    for (; s; s = s->parent)
        if (scope_has(s, name)) return 1;
    return 0;
}

/* Declares `name` local to scope s: it keeps its name unless the model or
 * this scope already has a value called so, then "<name>@<if>/<branch>"
 * (".<k>" appended until free). */
static ba_status scope_add(ba_model_t *m, ba_scope_t *s, const char *name, const char *tag, ba_error *err) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->from[i], name)) return BA_OK; /* a second definition: add_node reports it */
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        char **f = ba_realloc(s->from, sizeof(char *) * (size_t)cap, err);
        if (!f) return err->code;
        s->from = f;
        char **t = ba_realloc(s->to, sizeof(char *) * (size_t)cap, err);
        if (!t) return err->code;
        s->to = t;
        s->cap = cap;
    }
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", name);
    for (int k = 0; name_taken(m, s, buf); k++) {
        if (k == 0)
            snprintf(buf, sizeof buf, "%s@%s", name, tag);
        else
            snprintf(buf, sizeof buf, "%s@%s.%d", name, tag, k);
    }
    s->from[s->n] = ba_strdup(name, err);
    s->to[s->n] = s->from[s->n] ? ba_strdup(buf, err) : NULL;
    if (!s->to[s->n]) {
        free(s->from[s->n]);
        return err->code;
    }
    s->n++;
    return BA_OK;
}

/* Records value id as defined inside guard's branch. */
static ba_status note_local(ba_model_t *m, int id, int guard, ba_error *err) {
    ba_model_priv_t *pv = m->priv;
    if (pv->nlocals == pv->cap_locals) {
        int cap = pv->cap_locals ? pv->cap_locals * 2 : 64;
        int *l = ba_realloc(pv->locals, sizeof(int) * 2 * (size_t)cap, err);
        if (!l) return err->code;
        pv->locals = l;
        pv->cap_locals = cap;
    }
    pv->locals[2 * pv->nlocals] = id;
    pv->locals[2 * pv->nlocals + 1] = guard;
    pv->nlocals++;
    return BA_OK;
}

ba_status ba_onnx_add_branch(ba_model_t *m, const Onnx__GraphProto *g, ba_scope_t *scope, int guard,
                             int depth, ba_error *err) {
    const ba_guard_t *gd = &m->guards[guard];
    if (depth > MAX_IF_DEPTH)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: node '%s' (If): If nested more than %d deep",
                            m->path, gd->node, MAX_IF_DEPTH);
    char tag[600];
    snprintf(tag, sizeof tag, "%s/%s", gd->node, gd->branch ? "then" : "else");
    /* This branch's names first, so that references resolve to them in any order. */
    for (size_t i = 0; i < g->n_initializer; i++)
        if (g->initializer[i]->name && g->initializer[i]->name[0])
            BA_TRY(scope_add(m, scope, g->initializer[i]->name, tag, err));
    for (size_t i = 0; i < g->n_node; i++)
        for (size_t j = 0; j < g->node[i]->n_output; j++)
            if (g->node[i]->output[j] && g->node[i]->output[j][0])
                BA_TRY(scope_add(m, scope, g->node[i]->output[j], tag, err));
    if (g->n_sparse_initializer)
        return ba_error_set(err, BA_ERR_UNSUPPORTED,
                            "%s: node '%s' (If): sparse initializers are not supported", m->path, gd->node);
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *tp = g->initializer[i];
        const char *name = tp->name && tp->name[0] ? ba_scope_name(scope, tp->name) : NULL;
        BA_TRY(add_initializer_as(m, tp, name, NULL, 0, 0, err));
        BA_TRY(note_local(m, ba_model_find_value(m, name), guard, err));
    }
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *np = g->node[i];
        BA_TRY(add_node_scoped(m, np, scope, guard, err));
        int idx = m->nnodes - 1;
        for (int j = 0; j < m->nodes[idx].nout; j++)
            if (m->nodes[idx].outputs[j] >= 0) BA_TRY(note_local(m, m->nodes[idx].outputs[j], guard, err));
        if (!strcmp(m->nodes[idx].op_type, "If") && !m->nodes[idx].domain[0])
            BA_TRY(ba_graph_expand_if(m, idx, scope, depth + 1, err));
    }
    return BA_OK;
}

/* ---------------- whole file ---------------- */

static ba_status unpack_fail(const ba_model_t *m, const char *what, size_t off, ba_error *err) {
    return ba_error_set(err, BA_ERR_INPUT, "%s: corrupt or truncated protobuf in %s at byte %zu", m->path,
                        what, off);
}

/* Walks the GraphProto bytes [p, end): nodes, initializers and value infos are
 * unpacked one at a time. */
/* Appends the value id of int4/uint4 initializer name to *ids. */
static ba_status note_packed4(ba_model_t *m, const char *name, int **ids, int *n, ba_error *err) {
    int id = ba_graph_value(m, name, err);
    if (id < 0) return err->code;
    int *g = realloc(*ids, (size_t)(*n + 1) * sizeof *g);
    if (!g) return ba_error_set(err, BA_ERR_NOMEM, "out of memory");
    g[(*n)++] = id;
    *ids = g;
    return BA_OK;
}

/* The engine keeps int4/uint4 unpacked as int8/uint8, so a QuantizeLinear
 * whose zero point is an int4/uint4 initializer would saturate to the 8-bit
 * range: refused (QuantizeLinear to int4 is supported through output_dtype). */
static ba_status check_packed4_uses(const ba_model_t *m, const int *ids, int n, ba_error *err) {
    for (int k = 0; k < m->nnodes; k++) {
        const ba_node_t *nd = &m->nodes[k];
        if (strcmp(nd->op_type, "QuantizeLinear") != 0 || nd->nin < 3) continue;
        for (int i = 0; i < n; i++)
            if (nd->inputs[2] == ids[i])
                return ba_error_set(
                    err, BA_ERR_UNSUPPORTED,
                    "%s: node '%s' (QuantizeLinear): an int4/uint4 zero point is not supported "
                    "(use the output_dtype attribute without a zero point)",
                    m->path, nd->name);
    }
    return BA_OK;
}

static ba_status load_graph_fields(ba_model_t *m, const uint8_t *base, const uint8_t *p, const uint8_t *end,
                                   int **four_ids, int *nfour, ba_error *err);

static ba_status load_graph(ba_model_t *m, const uint8_t *base, const uint8_t *p, const uint8_t *end,
                            ba_error *err) {
    int *four = NULL, nfour = 0;
    ba_status st = load_graph_fields(m, base, p, end, &four, &nfour, err);
    if (st == BA_OK && nfour) st = check_packed4_uses(m, four, nfour, err);
    free(four);
    return st;
}

static ba_status load_graph_fields(ba_model_t *m, const uint8_t *base, const uint8_t *p, const uint8_t *end,
                                   int **four_ids, int *nfour_out, ba_error *err) {
    ba_pb_field f;
    while (p < end) {
        if (!ba_pb_next(&p, end, &f)) return unpack_fail(m, "graph", (size_t)(p - base), err);
        if (f.wire != BA_PB_LEN) continue;
        size_t off = (size_t)(f.payload - base);
        if (f.field == GRAPH_NODE) {
            Onnx__NodeProto *np = onnx__node_proto__unpack(NULL, f.len, f.payload);
            if (!np) return unpack_fail(m, "a node", off, err);
            ba_status st = ba_onnx_add_node(m, np, err);
            int has_graph = 0;
            for (size_t i = 0; i < np->n_attribute; i++)
                if (np->attribute[i]->g || np->attribute[i]->n_graphs) has_graph = 1;
            if (st == BA_OK && has_graph) {
                if (!keep_proto(m, np))
                    st = ba_error_set(err, BA_ERR_NOMEM, "out of memory");
                else
                    np = NULL;
            }
            if (np) onnx__node_proto__free_unpacked(np, NULL);
            if (st != BA_OK) return st;
        } else if (f.field == GRAPH_INITIALIZER) {
            /* Strip raw_data (field 9) so that protobuf-c does not copy the weights. */
            bytes_buf sk = {0};
            const uint8_t *q = f.payload, *qe = f.payload + f.len, *raw = NULL;
            size_t raw_len = 0;
            int has_raw = 0, ok = 1;
            ba_pb_field tf;
            while (q < qe && ok) {
                if (!ba_pb_next(&q, qe, &tf)) {
                    ok = 0;
                    break;
                }
                if (tf.field == TENSOR_RAW_DATA && tf.wire == BA_PB_LEN) {
                    raw = tf.payload;
                    raw_len = tf.len;
                    has_raw = 1;
                } else if (!buf_add(&sk, tf.start, (size_t)(tf.end - tf.start))) {
                    free(sk.buf);
                    return ba_error_set(err, BA_ERR_NOMEM, "out of memory");
                }
            }
            if (!ok) {
                free(sk.buf);
                return unpack_fail(m, "an initializer", off, err);
            }
            static const uint8_t empty[1] = {0};
            Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, sk.len, sk.buf ? sk.buf : empty);
            free(sk.buf);
            if (!tp) return unpack_fail(m, "an initializer", off, err);
            ba_status st = add_initializer(m, tp, raw, raw_len, has_raw, err);
            if (st == BA_OK && tp->has_data_type && (tp->data_type == BA_DT_I4 || tp->data_type == BA_DT_U4))
                st = note_packed4(m, tp->name, four_ids, nfour_out, err);
            onnx__tensor_proto__free_unpacked(tp, NULL);
            drop_pages(base, f.payload, f.len);
            if (st != BA_OK) return st;
        } else if (f.field == GRAPH_INPUT || f.field == GRAPH_OUTPUT || f.field == GRAPH_VALUE_INFO) {
            Onnx__ValueInfoProto *vi = onnx__value_info_proto__unpack(NULL, f.len, f.payload);
            if (!vi) return unpack_fail(m, "a value info", off, err);
            ba_status st = set_value_info(m, vi, (int)f.field, err);
            onnx__value_info_proto__free_unpacked(vi, NULL);
            if (st != BA_OK) return st;
        } else if (f.field == GRAPH_SPARSE_INIT) {
            return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: sparse initializers are not supported",
                                m->path);
        }
    }
    return BA_OK;
}

static ba_status load_mapped(ba_model_t *m, const uint8_t *data, size_t size, ba_error *err) {
    const uint8_t *p = data, *end = data + size;
    const uint8_t *bad = data;
    int deep = nest_scan(&onnx__model_proto__descriptor, data, end, 1, &bad);
    if (deep < 0) return unpack_fail(m, "the model", (size_t)(bad - data), err);
    if (deep)
        return ba_error_set(
            err, BA_ERR_INPUT,
            "%s: protobuf messages nested deeper than %d levels (subgraphs or types inside each "
            "other); refused",
            m->path, ONNX_MAX_DEPTH);
    bytes_buf sk = {0};
    const uint8_t *graphs[64];
    size_t glen[64];
    int ngraph = 0;
    ba_pb_field f;
    while (p < end) {
        if (!ba_pb_next(&p, end, &f)) {
            free(sk.buf);
            return unpack_fail(m, "the model", (size_t)(p - data), err);
        }
        if (f.field == MODEL_GRAPH && f.wire == BA_PB_LEN) {
            if (ngraph == 64) {
                free(sk.buf);
                return ba_error_set(err, BA_ERR_INPUT, "%s: too many graph fields", m->path);
            }
            graphs[ngraph] = f.payload;
            glen[ngraph++] = f.len;
        } else if (!buf_add(&sk, f.start, (size_t)(f.end - f.start))) {
            free(sk.buf);
            return ba_error_set(err, BA_ERR_NOMEM, "out of memory");
        }
    }
    static const uint8_t empty[1] = {0};
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, sk.len, sk.buf ? sk.buf : empty);
    free(sk.buf);
    if (!mp) return unpack_fail(m, "the model header", 0, err);
    ba_status st = BA_OK;
    m->ir_version = mp->has_ir_version ? mp->ir_version : 0;
    m->opset = -1;
    char prod[512];
    snprintf(prod, sizeof prod, "%s%s%s", mp->producer_name ? mp->producer_name : "",
             mp->producer_version && mp->producer_version[0] ? " " : "",
             mp->producer_version ? mp->producer_version : "");
    m->producer = ba_strdup(prod, err);
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
        if (!o->domain || !o->domain[0] || strcmp(o->domain, "ai.onnx") == 0)
            m->opset = o->has_version ? o->version : 0;
    }
    onnx__model_proto__free_unpacked(mp, NULL);
    if (!m->producer) return err->code;
    if (m->opset < 0) m->opset = 1; /* IR 1-2 files had no opset_import: opset 1 */
    if (!ngraph) return ba_error_set(err, BA_ERR_INPUT, "%s: not an ONNX model (no graph)", m->path);
    if (m->opset < 9 || m->opset > 21)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: default-domain opset %lld is not supported (9-21)",
                            m->path, (long long)m->opset);
    for (int g = 0; g < ngraph && st == BA_OK; g++)
        st = load_graph(m, data, graphs[g], graphs[g] + glen[g], err);
    return st;
}

void ba_model_free(ba_model_t *m) {
    if (!m) return;
    for (int i = 0; i < m->nnodes; i++) ba_graph_free_node(&m->nodes[i]);
    free(m->nodes);
    for (int i = 0; i < m->nvalues; i++) {
        free(m->values[i].name);
        for (int d = 0; d < BA_MAX_DIMS; d++) free(m->values[i].dim_param[d]);
        ba_tensor_unref(m->values[i].constant);
    }
    free(m->values);
    for (int i = 0; i < m->nlayers; i++) {
        free(m->layers[i].name);
        free(m->layers[i].uses);
    }
    free(m->layers);
    for (int i = 0; i < m->nguards; i++) free(m->guards[i].node);
    free(m->guards);
    free(m->cost_shapes);
    free(m->inputs);
    free(m->outputs);
    free(m->path);
    free(m->producer);
    ba_model_priv_t *pv = m->priv;
    if (pv) {
        for (int i = 0; i < pv->nprotos; i++) onnx__node_proto__free_unpacked(pv->protos[i], NULL);
        free(pv->protos);
        free(pv->hash);
        free(pv->nofold);
        free(pv->locals);
        free(pv);
    }
    free(m);
}

ba_status ba_model_load(const char *path, const ba_load_opts_t *opts, ba_model_t **out, ba_error *err) {
    *out = NULL;
    ba_model_t *m = ba_calloc(1, sizeof *m, err);
    if (!m) return err->code;
    ba_model_priv_t *pv = ba_calloc(1, sizeof *pv, err);
    m->priv = pv;
    m->path = ba_strdup(path, err);
    if (!pv || !m->path) {
        ba_model_free(m);
        return err->code;
    }
    pv->include_embeddings = opts ? opts->include_embeddings : 0;
    ba_path_dirname(path, pv->dir, sizeof pv->dir);
    ba_mapped_t map;
    ba_status st = ba_file_map(path, &map, err);
    if (st != BA_OK) {
        ba_model_free(m);
        return st;
    }
    m->file_size = map.size;
    if (!map.size) {
        ba_model_free(m);
        return ba_error_set(err, BA_ERR_INPUT, "%s: empty file", path);
    }
    /* Hash in chunks, dropping the pages behind us, so that hashing does not
     * leave the whole file resident. */
    ba_sha256_t sh;
    ba_sha256_init(&sh);
    for (size_t o = 0; o < map.size; o += DROP_CHUNK) {
        size_t n = map.size - o < DROP_CHUNK ? map.size - o : DROP_CHUNK;
        ba_sha256_update(&sh, (const uint8_t *)map.data + o, n);
        drop_pages(map.data, (const uint8_t *)map.data + o, n);
    }
    uint8_t dig[32];
    ba_sha256_final(&sh, dig);
    for (int i = 0; i < 32; i++) snprintf(m->sha256 + 2 * i, 3, "%02x", dig[i]);
    st = load_mapped(m, map.data, map.size, err);
    ba_file_unmap(&map);
    if (st == BA_OK) st = ba_graph_finish(m, err);
    if (st != BA_OK) {
        ba_model_free(m);
        return st;
    }
    *out = m;
    return BA_OK;
}
