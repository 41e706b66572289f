/* ONNX writers for quantized models. The original file is unpacked with
 * protobuf-c, the layers' weights are replaced (fakequant) or turned into
 * integer initializers feeding DequantizeLinear nodes that produce the
 * original tensor name (qdq), so no consumer needs rewiring; external data is
 * inlined so the output stands alone. A qdq file of a model older than opset
 * 13 is rewritten to opset 13 first (onnx_upgrade.c). The file is written
 * through core/outfile.h (a unique temporary file, synced and renamed), so a
 * failure never leaves a half-written model at DST. */
#include "quant/onnx_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/outfile.h"
#include "core/util.h"
#include "quant/onnx_proto.h"

/* First opset where DequantizeLinear takes a per-axis scale. */
#define BA_QDQ_MIN_OPSET_PER_AXIS 13
/* First opset with int4/uint4 and blocked (block_size) quantization. */
#define BA_QDQ_MIN_OPSET_INT4 21

typedef struct {
    Onnx__ModelProto *m;
    char dir[4096];
    const char *src;
    int64_t opset;
} wctx_t;

static void *xrealloc_array(void *p, size_t n, size_t elem, ba_error *err) {
    return ba_realloc(p, n * elem, err);
}

static ba_status load(wctx_t *c, const char *src, ba_error *err) {
    uint8_t *buf;
    size_t n;
    memset(c, 0, sizeof *c);
    c->src = src;
    BA_TRY(ba_file_read(src, &buf, &n, err));
    c->m = onnx__model_proto__unpack(NULL, n, buf);
    free(buf);
    if (!c->m || !c->m->graph) {
        if (c->m) onnx__model_proto__free_unpacked(c->m, NULL);
        c->m = NULL;
        return ba_error_set(err, BA_ERR_INPUT, "%s: not a valid ONNX model (protobuf parse failed)", src);
    }
    ba_path_dirname(src, c->dir, sizeof c->dir);
    c->opset = 1;
    for (size_t i = 0; i < c->m->n_opset_import; i++) {
        Onnx__OperatorSetIdProto *o = c->m->opset_import[i];
        if ((!o->domain || !o->domain[0] || !strcmp(o->domain, "ai.onnx")) && o->has_version)
            c->opset = o->version;
    }
    return BA_OK;
}

static void free_external(Onnx__TensorProto *t) {
    for (size_t i = 0; i < t->n_external_data; i++)
        onnx__string_string_entry_proto__free_unpacked(t->external_data[i], NULL);
    free(t->external_data);
    t->external_data = NULL;
    t->n_external_data = 0;
    t->has_data_location = 0;
    t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
}

/* Reads an external tensor's bytes into raw_data (paths confined to the model's folder). */
static ba_status inline_external(wctx_t *c, Onnx__TensorProto *t, ba_error *err) {
    if (!t->has_data_location || t->data_location != ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return BA_OK;
    const char *loc = NULL;
    int64_t off = 0, len = -1;
    for (size_t i = 0; i < t->n_external_data; i++) {
        const char *k = t->external_data[i]->key, *v = t->external_data[i]->value;
        if (!k || !v) continue;
        if (!strcmp(k, "location"))
            loc = v;
        else if (!strcmp(k, "offset"))
            off = strtoll(v, NULL, 10);
        else if (!strcmp(k, "length"))
            len = strtoll(v, NULL, 10);
    }
    if (!loc || loc[0] == '/' || strstr(loc, "..") || off < 0)
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: tensor '%s': external data location not inside the model's folder", c->src,
                            t->name ? t->name : "");
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", c->dir, loc);
    ba_mapped_t mp;
    BA_TRY(ba_file_map(path, &mp, err));
    if (len < 0) len = (int64_t)mp.size - off;
    if (off + len > (int64_t)mp.size || len < 0) {
        ba_file_unmap(&mp);
        return ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s': external data beyond the end of %s", c->src,
                            t->name ? t->name : "", loc);
    }
    uint8_t *d = ba_malloc((size_t)len, err);
    if (!d) {
        ba_file_unmap(&mp);
        return BA_ERR_NOMEM;
    }
    if (len) memcpy(d, (uint8_t *)mp.data + off, (size_t)len);
    ba_file_unmap(&mp);
    if (t->has_raw_data) free(t->raw_data.data);
    t->raw_data.data = d;
    t->raw_data.len = (size_t)len;
    t->has_raw_data = 1;
    free_external(t);
    return BA_OK;
}

static ba_status inline_all_external(wctx_t *c, ba_error *err) {
    Onnx__GraphProto *g = c->m->graph;
    for (size_t i = 0; i < g->n_initializer; i++) BA_TRY(inline_external(c, g->initializer[i], err));
    for (size_t i = 0; i < g->n_node; i++)
        for (size_t a = 0; a < g->node[i]->n_attribute; a++)
            if (g->node[i]->attribute[a]->t) BA_TRY(inline_external(c, g->node[i]->attribute[a]->t, err));
    return BA_OK;
}

/* Deepest If body searched for a weight. */
#define MAX_BODY_DEPTH 64

/* Branch b (0: then_branch, 1: else_branch) of node n when it is an If, else NULL.
 * Bodies are searched in the order the loader names their values (model/onnx.c:
 * the main graph, then each If in file order, its then_branch before its
 * else_branch, a branch's own names before those of the Ifs inside it), so that
 * a name two bodies use resolves to the body whose value kept it. */
static Onnx__GraphProto *if_branch(const Onnx__NodeProto *n, int b) {
    if (strcmp(n->op_type, "If")) return NULL;
    for (size_t a = 0; a < n->n_attribute; a++)
        if (n->attribute[a]->name && !strcmp(n->attribute[a]->name, b ? "else_branch" : "then_branch"))
            return n->attribute[a]->g;
    return NULL;
}

/* The TensorProto holding a weight: an initializer, or a Constant node's
 * value, of the main graph or of an If body (*owner: the graph holding it). */
static Onnx__TensorProto *find_weight(Onnx__GraphProto *g, const char *name, size_t *init_idx,
                                      size_t *node_idx, Onnx__GraphProto **owner, int depth) {
    *init_idx = *node_idx = (size_t)-1;
    *owner = g;
    for (size_t i = 0; i < g->n_initializer; i++)
        if (g->initializer[i]->name && !strcmp(g->initializer[i]->name, name)) {
            *init_idx = i;
            return g->initializer[i];
        }
    for (size_t i = 0; i < g->n_node; i++) {
        Onnx__NodeProto *n = g->node[i];
        if (strcmp(n->op_type, "Constant") || n->n_output < 1 || strcmp(n->output[0], name)) continue;
        for (size_t a = 0; a < n->n_attribute; a++)
            if (!strcmp(n->attribute[a]->name, "value") && n->attribute[a]->t) {
                *node_idx = i;
                return n->attribute[a]->t;
            }
    }
    for (size_t i = 0; i < g->n_node && depth < MAX_BODY_DEPTH; i++)
        for (int b = 0; b < 2; b++) {
            Onnx__GraphProto *body = if_branch(g->node[i], b);
            Onnx__TensorProto *t =
                body ? find_weight(body, name, init_idx, node_idx, owner, depth + 1) : NULL;
            if (t) return t;
        }
    *owner = g;
    return NULL;
}

/* The TensorProto holding a constant of graph g itself (not of its bodies). */
Onnx__TensorProto *ba_onnxw_find_const(Onnx__GraphProto *g, const char *name, size_t *init_idx,
                                       size_t *node_idx) {
    Onnx__GraphProto *owner;
    return find_weight(g, name, init_idx, node_idx, &owner, MAX_BODY_DEPTH);
}

/* The If node called name (searched through bodies), or NULL. */
static Onnx__NodeProto *find_if(Onnx__GraphProto *g, const char *name, int depth) {
    for (size_t i = 0; i < g->n_node && depth < MAX_BODY_DEPTH; i++) {
        Onnx__NodeProto *n = g->node[i];
        if (strcmp(n->op_type, "If")) continue;
        if (n->name && !strcmp(n->name, name)) return n;
        for (size_t a = 0; a < n->n_attribute; a++) {
            Onnx__NodeProto *f = n->attribute[a]->g ? find_if(n->attribute[a]->g, name, depth + 1) : NULL;
            if (f) return f;
        }
    }
    return NULL;
}

/* The loader names a branch-local value that is already taken (the other
 * branch uses the name too) "NAME@IF/then" or "NAME@IF/else" (model/onnx.c):
 * for such an x, the branch's graph, with NAME in local; else NULL. */
static Onnx__GraphProto *renamed_branch(wctx_t *c, const char *x, char *local, size_t cap) {
    const char *at = strrchr(x, '@'), *slash = at ? strrchr(at, '/') : NULL;
    if (!at || !slash || (strcmp(slash, "/then") && strcmp(slash, "/else"))) return NULL;
    char ifname[4096];
    snprintf(ifname, sizeof ifname, "%.*s", (int)(slash - at - 1), at + 1);
    Onnx__NodeProto *n = find_if(c->m->graph, ifname, 0);
    if (!n) return NULL;
    snprintf(local, cap, "%.*s", (int)(at - x), x);
    return if_branch(n, slash[1] == 'e');
}

/* Frees a repeated field of a protobuf-c message and empties it. */
#define CLEAR_REPEATED(msg, field)                                                                           \
    do {                                                                                                     \
        free((msg)->field);                                                                                  \
        (msg)->field = NULL;                                                                                 \
        (msg)->n_##field = 0;                                                                                \
    } while (0)

static void clear_data(Onnx__TensorProto *t) {
    CLEAR_REPEATED(t, float_data);
    CLEAR_REPEATED(t, int32_data);
    CLEAR_REPEATED(t, int64_data);
    CLEAR_REPEATED(t, double_data);
    CLEAR_REPEATED(t, uint64_data);
    if (t->has_raw_data) free(t->raw_data.data);
    t->raw_data.data = NULL;
    t->raw_data.len = 0;
    t->has_raw_data = 0;
    free_external(t);
}

static ba_status set_raw(Onnx__TensorProto *t, int32_t dtype, const void *bytes, size_t n, ba_error *err) {
    uint8_t *d = ba_malloc(n, err);
    if (!d) return BA_ERR_NOMEM;
    memcpy(d, bytes, n);
    clear_data(t);
    t->has_data_type = 1;
    t->data_type = dtype;
    t->raw_data.data = d;
    t->raw_data.len = n;
    t->has_raw_data = 1;
    return BA_OK;
}

static int64_t proto_numel(const Onnx__TensorProto *t) {
    int64_t n = 1;
    for (size_t i = 0; i < t->n_dims; i++) n *= t->dims[i];
    return n;
}

static ba_status write_out(wctx_t *c, const char *dst, ba_error *err) {
    size_t n = onnx__model_proto__get_packed_size(c->m);
    uint8_t *buf = ba_malloc(n, err);
    if (!buf) return BA_ERR_NOMEM;
    onnx__model_proto__pack(c->m, buf);
    ba_status st = ba_out_write(dst, buf, n, err);
    free(buf);
    return st;
}

/* local (cap bytes, or NULL): the weight's name in the file (w->name unless the
 * loader renamed a branch-local name). */
/* A layer whose weight the loader computed from constants (PyTorch writes an
 * LSTM's W as Unsqueeze(Concat(Slice(...))) of constants, for instance) has no
 * initializer or Constant in the file: the node producing it (in g or one of
 * its bodies) becomes a Constant of its shape, which the writers then fill
 * (fakequant) or replace by the DequantizeLinear pair (qdq). Its old inputs
 * are left to the dead code that feeds nothing else. 1 when a node was turned. */
static int materialize_folded(Onnx__GraphProto *g, const char *name, const ba_tensor_t *shape_of, int depth,
                              ba_error *err) {
    for (size_t i = 0; g && i < g->n_node && depth < MAX_BODY_DEPTH; i++) {
        Onnx__NodeProto *n = g->node[i];
        for (size_t o = 0; o < n->n_output; o++) {
            if (!n->output[o] || strcmp(n->output[o], name)) continue;
            float *zeros = ba_calloc((size_t)shape_of->numel + 1, sizeof(float), err);
            if (!zeros) return -1;
            Onnx__TensorProto *t =
                ba_onnxw_tensor(name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, shape_of->ndim, shape_of->shape,
                                zeros, (size_t)shape_of->numel * sizeof(float), err);
            free(zeros);
            Onnx__AttributeProto *a = ba_calloc(1, sizeof *a, err);
            char *an = ba_strdup("value", err), *op = ba_strdup("Constant", err), *out = ba_strdup(name, err);
            char **outs = ba_calloc(1, sizeof *outs, err);
            Onnx__AttributeProto **attrs = ba_calloc(1, sizeof *attrs, err);
            if (!t || !a || !an || !op || !out || !outs || !attrs) {
                if (t) onnx__tensor_proto__free_unpacked(t, NULL);
                free(a), free(an), free(op), free(out), free(outs), free(attrs);
                return -1;
            }
            onnx__attribute_proto__init(a);
            a->name = an;
            a->has_type = 1;
            a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
            a->t = t;
            for (size_t k = 0; k < n->n_input; k++) free(n->input[k]);
            free(n->input);
            n->input = NULL;
            n->n_input = 0;
            for (size_t k = 0; k < n->n_output; k++) free(n->output[k]);
            free(n->output);
            outs[0] = out;
            n->output = outs;
            n->n_output = 1;
            for (size_t k = 0; k < n->n_attribute; k++)
                onnx__attribute_proto__free_unpacked(n->attribute[k], NULL);
            free(n->attribute);
            attrs[0] = a;
            n->attribute = attrs;
            n->n_attribute = 1;
            free(n->op_type);
            n->op_type = op;
            if (n->domain) n->domain[0] = 0;
            return 1;
        }
        for (size_t k = 0; k < n->n_attribute; k++) {
            Onnx__AttributeProto *at = n->attribute[k];
            int r = at->g ? materialize_folded(at->g, name, shape_of, depth + 1, err) : 0;
            if (r) return r;
        }
    }
    return 0;
}

static ba_status check_weight(wctx_t *c, const ba_onnx_qweight_t *w, Onnx__TensorProto **tp, size_t *ii,
                              size_t *ni, Onnx__GraphProto **owner, char *local, size_t cap, ba_error *err) {
    char buf[4096];
    if (!local) {
        local = buf;
        cap = sizeof buf;
    }
    snprintf(local, cap, "%s", w->name);
    *tp = find_weight(c->m->graph, w->name, ii, ni, owner, 0);
    Onnx__GraphProto *b = *tp ? NULL : renamed_branch(c, w->name, local, cap);
    if (b) *tp = find_weight(b, local, ii, ni, owner, MAX_BODY_DEPTH); /* that body only */
    const ba_tensor_t *shape_of = w->fq ? w->fq : w->codes;
    if (!*tp && shape_of) {
        int r = materialize_folded(b ? b : c->m->graph, local, shape_of, 0, err);
        if (r < 0) return err->code;
        if (r) *tp = find_weight(b ? b : c->m->graph, local, ii, ni, owner, 0);
    }
    if (!*tp)
        return ba_error_set(err, BA_ERR_INPUT, "%s: layer '%s': no such initializer or Constant", c->src,
                            w->name);
    if ((*tp)->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: layer '%s': weight is not float32", c->src,
                            w->name);
    return BA_OK;
}

ba_status ba_onnx_write_fakequant(const char *src, const char *dst, const ba_onnx_qweight_t *w, int nw,
                                  ba_error *err) {
    wctx_t c;
    BA_TRY(load(&c, src, err));
    ba_status st = inline_all_external(&c, err);
    for (int i = 0; st == BA_OK && i < nw; i++) {
        if (w[i].bits == 32) continue;
        Onnx__TensorProto *t;
        size_t ii, ni;
        Onnx__GraphProto *owner;
        st = check_weight(&c, &w[i], &t, &ii, &ni, &owner, NULL, 0, err);
        if (st != BA_OK) break;
        if (!w[i].fq || w[i].fq->dtype != BA_DT_F32 || w[i].fq->numel != proto_numel(t)) {
            st = ba_error_set(err, BA_ERR_INPUT,
                              "layer '%s': quantized weight does not match the model's shape", w[i].name);
            break;
        }
        st = set_raw(t, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, w[i].fq->data, ba_tensor_nbytes(w[i].fq), err);
    }
    if (st == BA_OK) st = write_out(&c, dst, err);
    onnx__model_proto__free_unpacked(c.m, NULL);
    return st;
}

/* ---- building new graph pieces ---- */

static char *dupstr(const char *s, ba_error *err) {
    return ba_strdup(s, err);
}

Onnx__TensorProto *ba_onnxw_tensor(const char *name, int32_t dtype, int ndim, const int64_t *dims,
                                   const void *bytes, size_t nbytes, ba_error *err) {
    Onnx__TensorProto *t = ba_malloc(sizeof *t, err);
    if (!t) return NULL;
    onnx__tensor_proto__init(t);
    t->name = dupstr(name, err);
    t->dims = ba_malloc(sizeof(int64_t) * (size_t)(ndim ? ndim : 1), err);
    uint8_t *d = ba_malloc(nbytes, err);
    if (!t->name || !t->dims || !d) {
        free(d);
        onnx__tensor_proto__free_unpacked(t, NULL);
        return NULL;
    }
    t->n_dims = (size_t)ndim;
    for (int i = 0; i < ndim; i++) t->dims[i] = dims[i];
    t->has_data_type = 1;
    t->data_type = dtype;
    memcpy(d, bytes, nbytes);
    t->raw_data.data = d;
    t->raw_data.len = nbytes;
    t->has_raw_data = 1;
    return t;
}

ba_status ba_onnxw_add_init(Onnx__GraphProto *g, Onnx__TensorProto *t, ba_error *err) {
    if (!t) return err ? err->code : BA_ERR_NOMEM;
    Onnx__TensorProto **a = xrealloc_array(g->initializer, g->n_initializer + 1, sizeof *a, err);
    if (!a) {
        onnx__tensor_proto__free_unpacked(t, NULL);
        return BA_ERR_NOMEM;
    }
    g->initializer = a;
    g->initializer[g->n_initializer++] = t;
    return BA_OK;
}

Onnx__AttributeProto *ba_onnxw_int_attr(const char *name, int64_t v, ba_error *err) {
    Onnx__AttributeProto *a = ba_malloc(sizeof *a, err);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    a->name = dupstr(name, err);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
    return a;
}

/* Inserts a node at position pos of the graph's node list. */
ba_status ba_onnxw_insert_node(Onnx__GraphProto *g, size_t pos, const char *op, const char *name,
                               const char *const *ins, int nin, const char *out, Onnx__AttributeProto **attrs,
                               int nattr, ba_error *err) {
    Onnx__NodeProto *n = ba_malloc(sizeof *n, err);
    if (!n) return BA_ERR_NOMEM;
    onnx__node_proto__init(n);
    n->op_type = dupstr(op, err);
    n->name = dupstr(name, err);
    n->input = ba_calloc((size_t)nin, sizeof(char *), err);
    n->output = ba_calloc(1, sizeof(char *), err);
    n->attribute = ba_calloc((size_t)(nattr ? nattr : 1), sizeof *attrs, err);
    if (n->input) n->n_input = (size_t)nin;
    for (int i = 0; n->input && i < nin; i++) n->input[i] = dupstr(ins[i], err);
    if (n->output) {
        n->n_output = 1;
        n->output[0] = dupstr(out, err);
    }
    if (n->attribute) {
        n->n_attribute = (size_t)nattr;
        for (int i = 0; i < nattr; i++) n->attribute[i] = attrs[i];
    } else {
        for (int i = 0; i < nattr; i++) onnx__attribute_proto__free_unpacked(attrs[i], NULL);
    }
    Onnx__NodeProto **a = xrealloc_array(g->node, g->n_node + 1, sizeof *a, err);
    int ok = n->op_type && n->name && n->input && n->output && n->output[0] && n->attribute && a;
    for (int i = 0; ok && i < nin; i++) ok = n->input[i] != NULL;
    for (int i = 0; ok && i < nattr; i++) ok = attrs[i] != NULL;
    if (a) g->node = a;
    if (!ok) {
        onnx__node_proto__free_unpacked(n, NULL);
        return BA_ERR_NOMEM;
    }
    memmove(g->node + pos + 1, g->node + pos, (g->n_node - pos) * sizeof *g->node);
    g->node[pos] = n;
    g->n_node++;
    return BA_OK;
}

static void remove_graph_input(Onnx__GraphProto *g, const char *name) {
    for (size_t i = 0; i < g->n_input; i++)
        if (g->input[i]->name && !strcmp(g->input[i]->name, name)) {
            onnx__value_info_proto__free_unpacked(g->input[i], NULL);
            memmove(g->input + i, g->input + i + 1, (g->n_input - i - 1) * sizeof *g->input);
            g->n_input--;
            return;
        }
}

/* Packs codes (int8 / uint8 bit patterns, as ba_quant_weight makes them) into
 * the container dtype: one per byte, or int4/uint4 two per byte with the low
 * nibble first (ONNX). */
static uint8_t *pack_codes(const uint8_t *q, int64_t n, int four, size_t *nbytes, ba_error *err) {
    *nbytes = four ? (size_t)((n + 1) / 2) : (size_t)n;
    uint8_t *b = ba_calloc(*nbytes ? *nbytes : 1, 1, err);
    if (!b) return NULL;
    for (int64_t i = 0; i < n; i++) {
        if (four)
            b[i / 2] |= (uint8_t)(i % 2 ? (q[i] & 0xf) << 4 : (q[i] & 0xf));
        else
            b[i] = q[i];
    }
    return b;
}

static ba_status qdq_weight(wctx_t *c, const ba_onnx_qweight_t *w, int int8_only, ba_error *err) {
    Onnx__GraphProto *g; /* the graph holding the weight (an If body's for a layer inside one) */
    Onnx__TensorProto *t;
    size_t ii, ni;
    char local[4096];
    BA_TRY(check_weight(c, w, &t, &ii, &ni, &g, local, sizeof local, err));
    if (w->bits == 32) return BA_OK;
    if (w->bits == 16) { /* fp16 round trip kept in a float32 tensor */
        if (!w->fq) return ba_error_set(err, BA_ERR_INPUT, "layer '%s': missing fp16 values", w->name);
        return set_raw(t, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, w->fq->data, ba_tensor_nbytes(w->fq), err);
    }
    if (w->bits < 2 || w->bits > 8 || !w->codes || !w->scales)
        return ba_error_set(err, BA_ERR_INPUT, "layer '%s': bits %d cannot be written as QDQ", w->name,
                            w->bits);
    int64_t numel = proto_numel(t);
    int asym = w->zero_points != NULL;
    if (w->codes->numel != numel || w->codes->dtype != (asym ? BA_DT_U8 : BA_DT_I8))
        return ba_error_set(err, BA_ERR_INPUT, "layer '%s': codes do not match the weight's shape", w->name);
    if (w->axis >= 0 && c->opset < BA_QDQ_MIN_OPSET_PER_AXIS)
        return ba_error_set(err, BA_ERR_UNSUPPORTED,
                            "%s: layer '%s': per-channel QDQ needs opset >= %d, the model has opset %lld",
                            c->src, w->name, BA_QDQ_MIN_OPSET_PER_AXIS, (long long)c->opset);
    if (w->block_size > 0 && c->opset < BA_QDQ_MIN_OPSET_INT4)
        return ba_error_set(
            err, BA_ERR_UNSUPPORTED,
            "%s: layer '%s': group granularity in QDQ needs opset >= %d (blocked DequantizeLinear), "
            "the model has opset %lld",
            c->src, w->name, BA_QDQ_MIN_OPSET_INT4, (long long)c->opset);
    int four = !int8_only && w->bits <= 4 && c->opset >= BA_QDQ_MIN_OPSET_INT4;
    int32_t dtype = four ? (asym ? BA_DT_U4 : BA_DT_I4) : (asym ? BA_DT_U8 : BA_DT_I8);

    int ndim = (int)t->n_dims;
    int64_t dims[BA_MAX_DIMS];
    for (int i = 0; i < ndim && i < BA_MAX_DIMS; i++) dims[i] = t->dims[i];
    char *qname = NULL, *sname = NULL, *zname = NULL, *orig = NULL;
    size_t L = strlen(w->name) + 16;
    qname = ba_malloc(L, err);
    sname = ba_malloc(L, err);
    zname = ba_malloc(L, err);
    orig = ba_strdup(local, err); /* the name the consumers read */
    ba_status st = BA_OK;
    uint8_t *qb = NULL, *zb = NULL;
    if (!qname || !sname || !zname || !orig) {
        st = BA_ERR_NOMEM;
        goto done;
    }
    snprintf(qname, L, "%s_quantized", w->name);
    snprintf(sname, L, "%s_scale", w->name);
    snprintf(zname, L, "%s_zero_point", w->name);
    size_t qn, zn;
    qb = pack_codes(w->codes->data, numel, four, &qn, err);
    uint8_t *zp = ba_calloc((size_t)w->nscales + 1, 1, err);
    if (zp && asym) memcpy(zp, w->zero_points, (size_t)w->nscales);
    zb = zp ? pack_codes(zp, w->nscales, four, &zn, err) : NULL;
    free(zp);
    if (!qb || !zb) {
        st = BA_ERR_NOMEM;
        goto done;
    }
    /* Scale shape: scalar (per-tensor), [C] (per-axis) or the weight's shape
     * with dims[axis] replaced by the block count (blocked). */
    int64_t sdims[BA_MAX_DIMS];
    int sndim = 0;
    if (w->block_size > 0) {
        sndim = ndim;
        for (int i = 0; i < ndim; i++) sdims[i] = dims[i];
        sdims[w->axis] = (dims[w->axis] + w->block_size - 1) / w->block_size;
    } else if (w->axis >= 0) {
        sndim = 1;
        sdims[0] = w->nscales;
    }
    if (ba_shape_numel(sndim, sdims) != w->nscales) {
        st = ba_error_set(err, BA_ERR_INPUT, "layer '%s': %lld scales do not fit the weight's layout",
                          w->name, (long long)w->nscales);
        goto done;
    }
    st = ba_onnxw_add_init(g, ba_onnxw_tensor(qname, dtype, ndim, dims, qb, qn, err), err);
    if (st == BA_OK)
        st = ba_onnxw_add_init(g,
                               ba_onnxw_tensor(sname, BA_DT_F32, sndim, sdims, w->scales,
                                               sizeof(float) * (size_t)w->nscales, err),
                               err);
    if (st == BA_OK) st = ba_onnxw_add_init(g, ba_onnxw_tensor(zname, dtype, sndim, sdims, zb, zn, err), err);
    if (st != BA_OK) goto done;
    /* Drop the float weight: the initializer (and a stale graph input of the
     * same name, as old IR versions list initializers), or the Constant node. */
    size_t pos = 0;
    if (ii != (size_t)-1) {
        onnx__tensor_proto__free_unpacked(g->initializer[ii], NULL);
        memmove(g->initializer + ii, g->initializer + ii + 1,
                (g->n_initializer - ii - 1) * sizeof *g->initializer);
        g->n_initializer--;
        remove_graph_input(g, orig);
    } else {
        onnx__node_proto__free_unpacked(g->node[ni], NULL);
        memmove(g->node + ni, g->node + ni + 1, (g->n_node - ni - 1) * sizeof *g->node);
        g->n_node--;
        pos = ni;
    }
    Onnx__AttributeProto *attrs[2];
    int nattr = 0;
    if (w->axis >= 0) attrs[nattr++] = ba_onnxw_int_attr("axis", w->axis, err);
    if (w->block_size > 0) attrs[nattr++] = ba_onnxw_int_attr("block_size", w->block_size, err);
    const char *ins[3] = {qname, sname, zname};
    char nodename[4096];
    snprintf(nodename, sizeof nodename, "%s_DequantizeLinear", w->name);
    st = ba_onnxw_insert_node(g, pos, "DequantizeLinear", nodename, ins, 3, orig, attrs, nattr, err);
done:
    free(qb);
    free(zb);
    free(qname);
    free(sname);
    free(zname);
    free(orig);
    return st;
}

/* Points every consumer of X at Y (the new nodes are inserted afterwards, so
 * they keep reading X). */
static ba_status rewire(Onnx__GraphProto *g, const char *x, const char *y, ba_error *err) {
    for (size_t i = 0; i < g->n_node; i++)
        for (size_t k = 0; k < g->node[i]->n_input; k++)
            if (!strcmp(g->node[i]->input[k], x)) {
                char *s = ba_strdup(y, err);
                if (!s) return BA_ERR_NOMEM;
                free(g->node[i]->input[k]);
                g->node[i]->input[k] = s;
            }
    return BA_OK;
}

/* rewire() in g and in every body nested in g's nodes that reads X from
 * outside (a body that makes its own X is left alone). */
static ba_status rewire_deep(Onnx__GraphProto *g, const char *x, const char *y, int depth, ba_error *err) {
    BA_TRY(rewire(g, x, y, err));
    for (size_t i = 0; i < g->n_node && depth < MAX_BODY_DEPTH; i++)
        for (size_t a = 0; a < g->node[i]->n_attribute; a++) {
            Onnx__GraphProto *b = g->node[i]->attribute[a]->g;
            if (!b) continue;
            int own = 0;
            for (size_t k = 0; k < b->n_node && !own; k++)
                for (size_t o = 0; o < b->node[k]->n_output; o++) own |= !strcmp(b->node[k]->output[o], x);
            if (!own) BA_TRY(rewire_deep(b, x, y, depth + 1, err));
        }
    return BA_OK;
}

/* The graph, g or an If body inside it, whose node makes X; NULL when none does. */
static Onnx__GraphProto *producer_graph(Onnx__GraphProto *g, const char *x, int depth) {
    for (size_t i = 0; i < g->n_node; i++)
        for (size_t k = 0; k < g->node[i]->n_output; k++)
            if (!strcmp(g->node[i]->output[k], x)) return g;
    for (size_t i = 0; i < g->n_node && depth < MAX_BODY_DEPTH; i++)
        for (int b = 0; b < 2; b++) {
            Onnx__GraphProto *body = if_branch(g->node[i], b),
                             *f = body ? producer_graph(body, x, depth + 1) : NULL;
            if (f) return f;
        }
    return NULL;
}

/* Where activation X lives: *g the graph whose node makes it (the main graph
 * for its inputs), *local its name there. */
static ba_status act_home(wctx_t *c, const char *x, Onnx__GraphProto **g, char *local, size_t cap,
                          ba_error *err) {
    snprintf(local, cap, "%s", x);
    *g = producer_graph(c->m->graph, x, 0);
    if (*g) return BA_OK;
    *g = c->m->graph;
    for (size_t i = 0; i < (*g)->n_input; i++)
        if (!strcmp((*g)->input[i]->name, x)) return BA_OK;
    Onnx__GraphProto *b = renamed_branch(c, x, local, cap);
    for (size_t i = 0; b && i < b->n_node; i++)
        for (size_t k = 0; k < b->node[i]->n_output; k++)
            if (!strcmp(b->node[i]->output[k], local)) {
                *g = b;
                return BA_OK;
            }
    return ba_error_set(err, BA_ERR_INPUT, "%s: activation '%s': no node of the file makes it", c->src, x);
}

/* Position right after X's producer (0 for graph inputs). */
static size_t after_producer(const Onnx__GraphProto *g, const char *x) {
    size_t pos = 0;
    for (size_t i = 0; i < g->n_node; i++)
        for (size_t k = 0; k < g->node[i]->n_output; k++)
            if (!strcmp(g->node[i]->output[k], x)) pos = i + 1;
    return pos;
}

/* fp16 activations: X -> Cast(float16) -> Cast(float) -> X_fp16, the round
 * trip ba_quant_act_apply does for 16 bits (Cast rounds to nearest even). */
static ba_status fp16_act(Onnx__GraphProto *g, const char *x, ba_error *err) {
    char n_h[4200], n_f[4200], nm[4400];
    snprintf(n_h, sizeof n_h, "%s_act_half", x);
    snprintf(n_f, sizeof n_f, "%s_act_fp16", x);
    BA_TRY(rewire_deep(g, x, n_f, 0, err));
    size_t pos = after_producer(g, x);
    Onnx__AttributeProto *to_h = ba_onnxw_int_attr("to", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16, err);
    snprintf(nm, sizeof nm, "%s_act_CastHalf", x);
    const char *in1[1] = {x}, *in2[1] = {n_h};
    BA_TRY(ba_onnxw_insert_node(g, pos, "Cast", nm, in1, 1, n_h, &to_h, 1, err));
    Onnx__AttributeProto *to_f = ba_onnxw_int_attr("to", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, err);
    snprintf(nm, sizeof nm, "%s_act_CastFloat", x);
    return ba_onnxw_insert_node(g, pos + 1, "Cast", nm, in2, 1, n_f, &to_f, 1, err);
}

/* TensorRT's activation pair: X -> QuantizeLinear(int8, zero point 0) ->
 * DequantizeLinear -> X_dq (int8 saturation is the grid's clamp; no Clip). */
static ba_status qdq_act_int8(Onnx__GraphProto *g, const ba_onnx_qact_t *a, ba_error *err) {
    char n_s[4200], n_z[4200], n_q[4200], n_dq[4200];
    snprintf(n_s, sizeof n_s, "%s_act_scale", a->name);
    snprintf(n_z, sizeof n_z, "%s_act_zero_point", a->name);
    snprintf(n_q, sizeof n_q, "%s_act_quantized", a->name);
    snprintf(n_dq, sizeof n_dq, "%s_act_dequantized", a->name);
    int8_t zp = 0;
    BA_TRY(rewire_deep(g, a->name, n_dq, 0, err));
    BA_TRY(ba_onnxw_add_init(g, ba_onnxw_tensor(n_s, BA_DT_F32, 0, NULL, &a->scale, 4, err), err));
    BA_TRY(ba_onnxw_add_init(g, ba_onnxw_tensor(n_z, BA_DT_I8, 0, NULL, &zp, 1, err), err));
    size_t pos = after_producer(g, a->name);
    char nm[4400];
    const char *q_in[3] = {a->name, n_s, n_z}, *dq_in[3] = {n_q, n_s, n_z};
    snprintf(nm, sizeof nm, "%s_act_QuantizeLinear", a->name);
    BA_TRY(ba_onnxw_insert_node(g, pos, "QuantizeLinear", nm, q_in, 3, n_q, NULL, 0, err));
    snprintf(nm, sizeof nm, "%s_act_DequantizeLinear", a->name);
    return ba_onnxw_insert_node(g, pos + 1, "DequantizeLinear", nm, dq_in, 3, n_dq, NULL, 0, err);
}

/* Activation pair: X -> Clip(lo,hi) -> QuantizeLinear -> DequantizeLinear -> X_dq,
 * every consumer of X reading X_dq. The Clip keeps codes inside the b-bit
 * range although the container is uint8: lo/hi are the exact ends of the grid,
 * so round(clip(x)/s) equals ba_quant_act_apply's clamp(round(x/s)). */
static ba_status qdq_act(wctx_t *c, const ba_onnx_qact_t *act, ba_error *err) {
    Onnx__GraphProto *g; /* the graph making the activation: the main graph or an If body */
    char local[4096];
    if (act->bits == 32) return BA_OK;
    BA_TRY(act_home(c, act->name, &g, local, sizeof local, err));
    ba_onnx_qact_t la = *act;
    la.name = local;
    const ba_onnx_qact_t *a = &la;
    for (size_t i = 0; i < g->n_output; i++)
        if (!strcmp(g->output[i]->name, a->name))
            return ba_error_set(err, BA_ERR_UNSUPPORTED,
                                "%s: activation '%s' is a graph output; it cannot be rewired", c->src,
                                act->name);
    if (a->bits == 16) return fp16_act(g, a->name, err);
    if (a->bits < 2 || a->bits > 8 || !(a->scale > 0))
        return ba_error_set(err, BA_ERR_INPUT, "activation '%s': bits %d / scale %g cannot be written",
                            a->name, a->bits, (double)a->scale);
    if (a->symmetric) return qdq_act_int8(g, a, err);
    int32_t qmax = (1 << a->bits) - 1;
    float lo = (float)(0 - a->zero_point) * a->scale, hi = (float)(qmax - a->zero_point) * a->scale;
    char n_lo[4200], n_hi[4200], n_clip[4200], n_s[4200], n_z[4200], n_q[4200], n_dq[4200];
    snprintf(n_lo, sizeof n_lo, "%s_act_lo", a->name);
    snprintf(n_hi, sizeof n_hi, "%s_act_hi", a->name);
    snprintf(n_clip, sizeof n_clip, "%s_act_clipped", a->name);
    snprintf(n_s, sizeof n_s, "%s_act_scale", a->name);
    snprintf(n_z, sizeof n_z, "%s_act_zero_point", a->name);
    snprintf(n_q, sizeof n_q, "%s_act_quantized", a->name);
    snprintf(n_dq, sizeof n_dq, "%s_act_dequantized", a->name);
    uint8_t zp = (uint8_t)a->zero_point;
    BA_TRY(rewire_deep(g, a->name, n_dq, 0, err));
    BA_TRY(ba_onnxw_add_init(g, ba_onnxw_tensor(n_lo, BA_DT_F32, 0, NULL, &lo, 4, err), err));
    BA_TRY(ba_onnxw_add_init(g, ba_onnxw_tensor(n_hi, BA_DT_F32, 0, NULL, &hi, 4, err), err));
    BA_TRY(ba_onnxw_add_init(g, ba_onnxw_tensor(n_s, BA_DT_F32, 0, NULL, &a->scale, 4, err), err));
    BA_TRY(ba_onnxw_add_init(g, ba_onnxw_tensor(n_z, BA_DT_U8, 0, NULL, &zp, 1, err), err));
    size_t pos = after_producer(g, a->name);
    char nm[4400];
    const char *clip_in[3] = {a->name, n_lo, n_hi}, *q_in[3] = {n_clip, n_s, n_z},
               *dq_in[3] = {n_q, n_s, n_z};
    snprintf(nm, sizeof nm, "%s_act_Clip", a->name);
    BA_TRY(ba_onnxw_insert_node(g, pos, "Clip", nm, clip_in, 3, n_clip, NULL, 0, err));
    snprintf(nm, sizeof nm, "%s_act_QuantizeLinear", a->name);
    BA_TRY(ba_onnxw_insert_node(g, pos + 1, "QuantizeLinear", nm, q_in, 3, n_q, NULL, 0, err));
    snprintf(nm, sizeof nm, "%s_act_DequantizeLinear", a->name);
    return ba_onnxw_insert_node(g, pos + 2, "DequantizeLinear", nm, dq_in, 3, n_dq, NULL, 0, err);
}

ba_status ba_onnx_write_qdq(const char *src, const char *dst, const ba_onnx_qweight_t *w, int nw,
                            const ba_onnx_qact_t *acts, int nacts, ba_error *err) {
    return ba_onnx_write_qdq_profile(src, dst, w, nw, acts, nacts, 0, err);
}

ba_status ba_onnx_write_qdq_profile(const char *src, const char *dst, const ba_onnx_qweight_t *w, int nw,
                                    const ba_onnx_qact_t *acts, int nacts, int int8_only, ba_error *err) {
    wctx_t c;
    BA_TRY(load(&c, src, err));
    ba_status st = inline_all_external(&c, err);
    /* Per-axis DequantizeLinear (and the activations' Clip with inputs) need opset 13. */
    if (st == BA_OK && c.opset < BA_QDQ_MIN_OPSET_PER_AXIS) {
        st = ba_onnxw_upgrade_to_13(c.m, c.opset, src, err);
        if (st == BA_OK) c.opset = BA_QDQ_MIN_OPSET_PER_AXIS;
    }
    for (int i = 0; st == BA_OK && i < nw; i++) st = qdq_weight(&c, &w[i], int8_only, err);
    for (int i = 0; st == BA_OK && i < nacts; i++) st = qdq_act(&c, &acts[i], err);
    if (st == BA_OK) st = write_out(&c, dst, err);
    onnx__model_proto__free_unpacked(c.m, NULL);
    return st;
}
