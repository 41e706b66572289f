/* Graph passes run once after parsing: reference checks, topological sort,
 * Constant nodes -> constants, constant folding (kernels run at load time),
 * If handling (graph_if.c: both branches of a run-time If expanded, an If
 * whose condition folds inlined), shape inference, and the quantizable-layer
 * table (SPEC §2).
 *
 * Shapes are never guessed from probe values. A fully static model runs once
 * at its declared shapes (zeros) at load: every value's shape is then exact
 * and the shape-based folds follow. A model with dynamic dimensions keeps
 * them symbolic (ONNX dim_param names); Shape of a declared static dimension
 * still folds. The layers' MACs come from one run at one sample's concrete
 * shapes (ba_model_costs_at: the data's, or --input-shape); at load only when
 * every dimension but the sample axis is declared.
 * A node on the path from a layer's weight constant to its consumer
 * (Identity/Transpose/Reshape) is never folded, so quant/ can override the
 * constant and the chain recomputes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/graph_internal.h"
#include "model/ops.h"
#include "onnx/onnx.pb-c.h"

/* Per-value flag bits in priv->nofold. */
enum { VF_NOFOLD = 1, VF_CONST_NODE = 2 };
/* Fold / inline rounds before giving up (each round strictly removes nodes). */
enum { MAX_ROUNDS = 16 };
/* Conditions a node of nested If branches waits for (the nesting depth onnx.c accepts). */
enum { MAX_GUARD_DEPS = 80 };

/* ---------------- values, nodes, attributes ---------------- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int rehash(ba_model_priv_t *pv, const ba_model_t *m, int cap, ba_error *err) {
    int *h = ba_calloc((size_t)cap, sizeof(int), err);
    if (!h) return 0;
    for (int i = 0; i < m->nvalues; i++) {
        uint64_t k = hash_str(m->values[i].name) & (uint64_t)(cap - 1);
        while (h[k]) k = (k + 1) & (uint64_t)(cap - 1);
        h[k] = i + 1;
    }
    free(pv->hash);
    pv->hash = h;
    pv->hash_cap = cap;
    return 1;
}

int ba_model_find_value(const ba_model_t *m, const char *name) {
    const ba_model_priv_t *pv = m->priv;
    if (pv && pv->hash_cap) {
        uint64_t k = hash_str(name) & (uint64_t)(pv->hash_cap - 1);
        while (pv->hash[k]) {
            int id = pv->hash[k] - 1;
            if (strcmp(m->values[id].name, name) == 0) return id;
            k = (k + 1) & (uint64_t)(pv->hash_cap - 1);
        }
        return -1;
    }
    for (int i = 0; i < m->nvalues; i++)
        if (strcmp(m->values[i].name, name) == 0) return i;
    return -1;
}

int ba_graph_value(ba_model_t *m, const char *name, ba_error *err) {
    ba_model_priv_t *pv = m->priv;
    int id = ba_model_find_value(m, name);
    if (id >= 0) return id;
    if (m->nvalues == pv->cap_values) {
        int cap = pv->cap_values ? pv->cap_values * 2 : 64;
        ba_value_t *nv = ba_realloc(m->values, sizeof(ba_value_t) * (size_t)cap, err);
        if (!nv) return -1;
        m->values = nv;
        unsigned char *nf = ba_realloc(pv->nofold, (size_t)cap, err);
        if (!nf) return -1;
        pv->nofold = nf;
        pv->cap_values = cap;
    }
    ba_value_t *v = &m->values[m->nvalues];
    memset(v, 0, sizeof *v);
    v->name = ba_strdup(name, err);
    if (!v->name) return -1;
    v->ndim = -1;
    v->producer = -1;
    pv->nofold[m->nvalues] = 0;
    m->nvalues++;
    if ((int64_t)m->nvalues * 2 > pv->hash_cap) {
        if (!rehash(pv, m, pv->hash_cap ? pv->hash_cap * 2 : 128, err)) return -1;
    } else {
        uint64_t k = hash_str(name) & (uint64_t)(pv->hash_cap - 1);
        while (pv->hash[k]) k = (k + 1) & (uint64_t)(pv->hash_cap - 1);
        pv->hash[k] = m->nvalues;
    }
    return m->nvalues - 1;
}

int ba_graph_new_node(ba_model_t *m, ba_error *err) {
    ba_model_priv_t *pv = m->priv;
    if (m->nnodes == pv->cap_nodes) {
        int cap = pv->cap_nodes ? pv->cap_nodes * 2 : 32;
        ba_node_t *nn = ba_realloc(m->nodes, sizeof(ba_node_t) * (size_t)cap, err);
        if (!nn) return -1;
        m->nodes = nn;
        pv->cap_nodes = cap;
    }
    memset(&m->nodes[m->nnodes], 0, sizeof(ba_node_t));
    m->nodes[m->nnodes].guard = -1;
    m->nodes[m->nnodes].if_guard = -1;
    return m->nnodes++;
}

void ba_graph_free_node(ba_node_t *n) {
    free(n->name);
    free(n->op_type);
    free(n->domain);
    free(n->inputs);
    free(n->outputs);
    for (int i = 0; i < n->nattr; i++) {
        ba_attr_t *a = &n->attrs[i];
        free(a->name);
        free(a->s);
        ba_tensor_unref(a->t);
        free(a->floats);
        free(a->ints);
        if (a->strings)
            for (int j = 0; j < a->n; j++) free(a->strings[j]);
        free(a->strings);
    }
    free(n->attrs);
    memset(n, 0, sizeof *n);
    n->guard = n->if_guard = -1;
}

const ba_attr_t *ba_node_attr(const ba_node_t *n, const char *name) {
    for (int i = 0; i < n->nattr; i++)
        if (n->attrs[i].name && strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
    return NULL;
}

int64_t ba_node_attr_int(const ba_node_t *n, const char *name, int64_t dflt) {
    const ba_attr_t *a = ba_node_attr(n, name);
    if (!a) return dflt;
    if (a->type == BA_ATTR_INT) return a->i;
    if (a->type == BA_ATTR_FLOAT) return (int64_t)a->f;
    return dflt;
}

float ba_node_attr_float(const ba_node_t *n, const char *name, float dflt) {
    const ba_attr_t *a = ba_node_attr(n, name);
    if (!a) return dflt;
    if (a->type == BA_ATTR_FLOAT) return a->f;
    if (a->type == BA_ATTR_INT) return (float)a->i;
    return dflt;
}

const char *ba_node_attr_string(const ba_node_t *n, const char *name, const char *dflt) {
    const ba_attr_t *a = ba_node_attr(n, name);
    return a && a->type == BA_ATTR_STRING && a->s ? a->s : dflt;
}

int ba_node_attr_ints(const ba_node_t *n, const char *name, const int64_t **vals) {
    const ba_attr_t *a = ba_node_attr(n, name);
    *vals = NULL;
    if (!a || a->type != BA_ATTR_INTS) return 0;
    *vals = a->ints;
    return a->n;
}

int ba_node_attr_floats(const ba_node_t *n, const char *name, const float **vals) {
    const ba_attr_t *a = ba_node_attr(n, name);
    *vals = NULL;
    if (!a || a->type != BA_ATTR_FLOATS) return 0;
    *vals = a->floats;
    return a->n;
}

/* ---------------- helpers ---------------- */

static void set_value_tensor(ba_value_t *v, ba_tensor_t *t) {
    v->constant = t;
    v->dtype = t->dtype;
    v->ndim = t->ndim;
    memcpy(v->shape, t->shape, sizeof v->shape);
}

/* Drops nodes marked dead, keeps order, re-derives every value's producer. */
static void compact(ba_model_t *m, unsigned char *dead) {
    int k = 0;
    for (int i = 0; i < m->nnodes; i++) {
        if (dead[i]) {
            ba_graph_free_node(&m->nodes[i]);
            continue;
        }
        if (k != i) m->nodes[k] = m->nodes[i];
        k++;
    }
    m->nnodes = k;
    for (int v = 0; v < m->nvalues; v++) m->values[v].producer = -1;
    for (int i = 0; i < m->nnodes; i++)
        for (int j = 0; j < m->nodes[i].nout; j++)
            if (m->nodes[i].outputs[j] >= 0) m->values[m->nodes[i].outputs[j]].producer = i;
}

void ba_graph_compact(ba_model_t *m, unsigned char *dead) {
    compact(m, dead);
}

/* Constant node -> tensor (value, value_float(s), value_int(s)). */
static ba_status constant_tensor(const ba_model_t *m, const ba_node_t *n, ba_tensor_t **out, ba_error *err) {
    *out = NULL;
    for (int i = 0; i < n->nattr; i++) {
        const ba_attr_t *a = &n->attrs[i];
        int64_t len;
        if (strcmp(a->name, "value") == 0 && a->t) {
            *out = ba_tensor_ref(a->t);
        } else if (strcmp(a->name, "value_float") == 0) {
            *out = ba_tensor_new(BA_DT_F32, 0, NULL, err);
            if (*out) ((float *)(*out)->data)[0] = a->f;
        } else if (strcmp(a->name, "value_int") == 0) {
            *out = ba_tensor_new(BA_DT_I64, 0, NULL, err);
            if (*out) ((int64_t *)(*out)->data)[0] = a->i;
        } else if (strcmp(a->name, "value_floats") == 0) {
            len = a->n;
            *out = ba_tensor_new(BA_DT_F32, 1, &len, err);
            if (*out && len) memcpy((*out)->data, a->floats, sizeof(float) * (size_t)len);
        } else if (strcmp(a->name, "value_ints") == 0) {
            len = a->n;
            *out = ba_tensor_new(BA_DT_I64, 1, &len, err);
            if (*out && len) memcpy((*out)->data, a->ints, sizeof(int64_t) * (size_t)len);
        } else {
            continue;
        }
        if (!*out) return err->code;
        return BA_OK;
    }
    return ba_error_set(err, BA_ERR_UNSUPPORTED,
                        "%s: node '%s': Constant without a supported value attribute", m->path, n->name);
}

/* Every input is produced by a node, an initializer/constant or a graph input;
 * every graph output is produced. */
static ba_status check_refs(const ba_model_t *m, ba_error *err) {
    for (int i = 0; i < m->nnodes; i++) {
        const ba_node_t *n = &m->nodes[i];
        for (int j = 0; j < n->nin; j++) {
            int id = n->inputs[j];
            if (id < 0) continue;
            const ba_value_t *v = &m->values[id];
            if (v->producer < 0 && !v->constant && !v->is_graph_input)
                return ba_error_set(
                    err, BA_ERR_INPUT,
                    "%s: node '%s' (%s): input '%s' is not produced by any node, initializer or graph input",
                    m->path, n->name, n->op_type, v->name);
        }
    }
    for (int k = 0; k < m->noutputs; k++) {
        const ba_value_t *v = &m->values[m->outputs[k]];
        if (v->producer < 0 && !v->constant && !v->is_graph_input)
            return ba_error_set(err, BA_ERR_INPUT, "%s: graph output '%s' is not produced by any node",
                                m->path, v->name);
    }
    return BA_OK;
}

/* Kahn's algorithm, ties in file order; a leftover node is on a cycle. */
static ba_status topo_sort(ba_model_t *m, ba_error *err) {
    int n = m->nnodes;
    if (n == 0) return BA_OK;
    int *indeg = ba_calloc((size_t)n, sizeof(int), err);
    int *start = ba_calloc((size_t)n + 1, sizeof(int), err);
    int *order = ba_calloc((size_t)n, sizeof(int), err);
    int *adj = NULL;
    ba_node_t *sorted = NULL;
    ba_status st = BA_OK;
    if (!indeg || !start || !order) goto fail;
    int nedges = 0, deps[MAX_GUARD_DEPS];
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < m->nodes[i].nin; j++) {
            int id = m->nodes[i].inputs[j];
            if (id >= 0 && m->values[id].producer >= 0) {
                indeg[i]++;
                start[m->values[id].producer + 1]++;
                nedges++;
            }
        }
        /* a node of an If branch comes after the If's condition */
        int nd = ba_graph_guard_deps(m, &m->nodes[i], deps, MAX_GUARD_DEPS);
        for (int j = 0; j < nd; j++)
            if (m->values[deps[j]].producer >= 0) {
                indeg[i]++;
                start[m->values[deps[j]].producer + 1]++;
                nedges++;
            }
    }
    for (int i = 0; i < n; i++) start[i + 1] += start[i];
    adj = ba_calloc((size_t)nedges + 1, sizeof(int), err);
    if (!adj) goto fail;
    int *fill = order; /* reuse as write cursors before it holds the order */
    for (int i = 0; i < n; i++) fill[i] = start[i];
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < m->nodes[i].nin; j++) {
            int id = m->nodes[i].inputs[j];
            if (id >= 0 && m->values[id].producer >= 0) adj[fill[m->values[id].producer]++] = i;
        }
        int nd = ba_graph_guard_deps(m, &m->nodes[i], deps, MAX_GUARD_DEPS);
        for (int j = 0; j < nd; j++)
            if (m->values[deps[j]].producer >= 0) adj[fill[m->values[deps[j]].producer]++] = i;
    }
    /* A ready queue that keeps file order: min-index first via a simple scan
     * pointer plus a FIFO (good enough and deterministic). */
    int head = 0, tail = 0;
    for (int i = 0; i < n; i++)
        if (!indeg[i]) order[tail++] = i;
    while (head < tail) {
        int u = order[head++];
        for (int e = start[u]; e < start[u + 1]; e++)
            if (--indeg[adj[e]] == 0) order[tail++] = adj[e];
    }
    if (tail < n) {
        for (int i = 0; i < n; i++)
            if (indeg[i]) {
                st = ba_error_set(err, BA_ERR_INPUT, "%s: the graph has a cycle through node '%s' (%s)",
                                  m->path, m->nodes[i].name, m->nodes[i].op_type);
                break;
            }
        goto done;
    }
    sorted = ba_malloc(sizeof(ba_node_t) * (size_t)((ba_model_priv_t *)m->priv)->cap_nodes, err);
    if (!sorted) goto fail;
    for (int i = 0; i < n; i++) sorted[i] = m->nodes[order[i]];
    free(m->nodes);
    m->nodes = sorted;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m->nodes[i].nout; j++)
            if (m->nodes[i].outputs[j] >= 0) m->values[m->nodes[i].outputs[j]].producer = i;
    goto done;
fail:
    st = err->code;
done:
    free(indeg);
    free(start);
    free(order);
    free(adj);
    return st;
}

/* Follows a weight input back through Identity/Transpose/Reshape producers.
 * Returns the root value id (a constant) or -1; chain[] gets the node indices
 * from the consumer side. */
static int trace_weight(const ba_model_t *m, int id, int *chain, int *nchain, int cap) {
    *nchain = 0;
    while (id >= 0) {
        const ba_value_t *v = &m->values[id];
        if (v->producer < 0) return v->constant ? id : -1;
        const ba_node_t *p = &m->nodes[v->producer];
        if (!(ba_node_flags(p) & BA_OPF_CHAIN) || p->nin < 1 || *nchain == cap) return -1;
        chain[(*nchain)++] = v->producer;
        id = p->inputs[0];
    }
    return -1;
}

enum { MAX_CHAIN = BA_LAYER_MAX_CHAIN };

/* Which inputs of a node may hold a layer weight (SPEC §2); a Gather's
 * (an embedding) only when `embeddings` is set. A MatMul takes one weight:
 * the first of its candidates that is one. */
static int weight_inputs(const ba_node_t *n, int embeddings, int idx[2]) {
    if (!(ba_node_flags(n) & BA_OPF_WEIGHT)) return 0;
    switch (n->op) {
    case BA_OP_CONV:
    case BA_OP_CONV_TRANSPOSE:
    case BA_OP_GEMM: idx[0] = 1; return n->nin > 1;
    case BA_OP_MATMUL:
        idx[0] = 1;
        idx[1] = 0;
        return n->nin == 2 ? 2 : 0;
    case BA_OP_GATHER: idx[0] = 0; return embeddings && n->nin >= 1;
    default:
        if (!(n->def->flags & BA_OPF_RECURRENT) || n->nin < 3) return 0;
        idx[0] = 1; /* W (dirs, gates*hidden, input) */
        idx[1] = 2; /* R (dirs, gates*hidden, hidden) */
        return 2;
    }
}

/* The data input that weight input widx of node n multiplies: a Gather's
 * indices, an LSTM/GRU's X for W (R multiplies the hidden state inside the
 * op: -1), the other operand of Conv/Gemm/MatMul. */
static int data_input(const ba_node_t *n, int widx) {
    if (n->op == BA_OP_GATHER) return 1;
    if (ba_node_flags(n) & BA_OPF_RECURRENT) return widx == 1 ? 0 : -1;
    return widx == 1 ? 0 : 1;
}

static int root_ok(const ba_value_t *v) {
    return v->constant && v->constant->ndim >= 2 && ba_dtype_is_float(v->constant->dtype);
}

/* Marks the outputs of every chain node between a layer weight and its consumer. */
static void mark_nofold(ba_model_t *m) {
    ba_model_priv_t *pv = m->priv;
    int chain[MAX_CHAIN], nc, idx[2];
    for (int i = 0; i < m->nnodes; i++) {
        int k = weight_inputs(&m->nodes[i], pv->include_embeddings, idx);
        for (int j = 0; j < k; j++) {
            int id = m->nodes[i].inputs[idx[j]];
            int root = trace_weight(m, id, chain, &nc, MAX_CHAIN);
            if (root < 0 || !root_ok(&m->values[root])) continue;
            for (int c = 0; c < nc; c++)
                for (int o = 0; o < m->nodes[chain[c]].nout; o++)
                    if (m->nodes[chain[c]].outputs[o] >= 0)
                        pv->nofold[m->nodes[chain[c]].outputs[o]] |= VF_NOFOLD;
            if (m->nodes[i].op == BA_OP_MATMUL) break; /* one weight per MatMul */
        }
    }
}

static int node_nofold(const ba_model_t *m, const ba_node_t *n) {
    const ba_model_priv_t *pv = m->priv;
    for (int j = 0; j < n->nout; j++)
        if (n->outputs[j] >= 0 && (pv->nofold[n->outputs[j]] & VF_NOFOLD)) return 1;
    return 0;
}

/* Shape's [start, end) (opset 15) clamped to the rank. */
static void shape_range(const ba_node_t *n, int r, int *s, int *e) {
    int64_t a = ba_node_attr_int(n, "start", 0), b = ba_node_attr_int(n, "end", r);
    if (a < 0) a += r;
    if (b < 0) b += r;
    if (a < 0) a = 0;
    if (b > r) b = r;
    if (a > r) a = r;
    if (b < a) b = a;
    *s = (int)a;
    *e = (int)b;
}

/* Shape of a value whose needed dims are statically known -> int64 constant. */
static ba_status fold_shape(const ba_model_t *m, const ba_node_t *n, ba_tensor_t **out, ba_error *err) {
    *out = NULL;
    if (n->nin < 1 || n->inputs[0] < 0) return BA_OK;
    const ba_value_t *v = &m->values[n->inputs[0]];
    if (v->ndim < 0) return BA_OK;
    int s, e;
    shape_range(n, v->ndim, &s, &e);
    for (int d = s; d < e; d++)
        if (v->shape[d] < 0) return BA_OK;
    int64_t len = e - s;
    ba_tensor_t *t = ba_tensor_new(BA_DT_I64, 1, &len, err);
    if (!t) return err->code;
    for (int d = s; d < e; d++) ((int64_t *)t->data)[d - s] = v->shape[d];
    *out = t;
    return BA_OK;
}

/* Gather(Shape(x), const idx) where the gathered dims are static, even when
 * other dims of x are dynamic (x.size(1) with a dynamic batch). */
static ba_status fold_shape_gather(const ba_model_t *m, const ba_node_t *n, ba_tensor_t **out,
                                   ba_error *err) {
    *out = NULL;
    if (n->nin < 2 || n->inputs[0] < 0 || n->inputs[1] < 0) return BA_OK;
    const ba_value_t *sv = &m->values[n->inputs[0]], *iv = &m->values[n->inputs[1]];
    if (sv->producer < 0 || !iv->constant || ba_node_attr_int(n, "axis", 0) != 0) return BA_OK;
    const ba_node_t *sh = &m->nodes[sv->producer];
    if (sh->op != BA_OP_SHAPE || sh->nin < 1 || sh->inputs[0] < 0) return BA_OK;
    const ba_value_t *x = &m->values[sh->inputs[0]];
    if (x->ndim < 0 || iv->constant->ndim > 1 || !ba_dtype_is_int(iv->constant->dtype)) return BA_OK;
    int s, e;
    shape_range(sh, x->ndim, &s, &e);
    int64_t cnt = iv->constant->numel;
    for (int64_t k = 0; k < cnt; k++) {
        int64_t ix = ba_tensor_get_i64(iv->constant, k);
        if (ix < 0) ix += e - s;
        if (ix < 0 || ix >= e - s || x->shape[s + ix] < 0) return BA_OK;
    }
    ba_tensor_t *t = ba_tensor_new(BA_DT_I64, iv->constant->ndim, iv->constant->shape, err);
    if (!t) return err->code;
    for (int64_t k = 0; k < cnt; k++) {
        int64_t ix = ba_tensor_get_i64(iv->constant, k);
        if (ix < 0) ix += e - s;
        ((int64_t *)t->data)[k] = x->shape[s + ix];
    }
    *out = t;
    return BA_OK;
}

/* One sweep in topological order: every foldable node runs its kernel now and
 * its outputs become constants. *changed counts folded nodes. */
static ba_status fold_pass(ba_model_t *m, int only_constant_nodes, int *changed, ba_error *err) {
    unsigned char *dead = ba_calloc((size_t)m->nnodes + 1, 1, err);
    if (!dead) return err->code;
    ba_status st = BA_OK;
    *changed = 0;
    for (int i = 0; i < m->nnodes && st == BA_OK; i++) {
        ba_node_t *n = &m->nodes[i];
        if (n->domain[0] || node_nofold(m, n)) continue;
        if (only_constant_nodes && n->op != BA_OP_CONSTANT) continue;
        ba_tensor_t *single = NULL;
        if (n->op == BA_OP_CONSTANT) {
            st = constant_tensor(m, n, &single, err);
            if (st == BA_OK && n->nout >= 1 && n->outputs[0] >= 0)
                ((ba_model_priv_t *)m->priv)->nofold[n->outputs[0]] |= VF_CONST_NODE;
        } else if (n->op == BA_OP_SHAPE) {
            st = fold_shape(m, n, &single, err);
        } else if (n->op == BA_OP_GATHER) {
            st = fold_shape_gather(m, n, &single, err);
        }
        if (st != BA_OK) break;
        if (single) {
            if (n->nout >= 1 && n->outputs[0] >= 0)
                set_value_tensor(&m->values[n->outputs[0]], single);
            else
                ba_tensor_unref(single);
            dead[i] = 1;
            (*changed)++;
            continue;
        }
        if (!n->def || (n->def->flags & BA_OPF_CONTROL)) continue;
        int all_const = 1;
        for (int j = 0; j < n->nin; j++)
            if (n->inputs[j] >= 0 && !m->values[n->inputs[j]].constant) all_const = 0;
        if (!all_const) continue;
        ba_tensor_t **in = ba_calloc((size_t)n->nin + 1, sizeof(ba_tensor_t *), err);
        ba_tensor_t **out = ba_calloc((size_t)n->nout + 1, sizeof(ba_tensor_t *), err);
        if (!in || !out) {
            free(in);
            free(out);
            st = err->code;
            break;
        }
        for (int j = 0; j < n->nin; j++) in[j] = n->inputs[j] >= 0 ? m->values[n->inputs[j]].constant : NULL;
        st = n->def->forward(n, in, n->nin, out, n->nout, err);
        if (st != BA_OK && n->guard >= 0) {
            /* a branch that may never be taken: it fails at run time if it is */
            for (int j = 0; j < n->nout; j++) ba_tensor_unref(out[j]);
            free(in);
            free(out);
            st = BA_OK;
            continue;
        }
        if (st == BA_OK) {
            for (int j = 0; j < n->nout; j++) {
                if (n->outputs[j] >= 0 && !out[j]) {
                    st = ba_error_set(err, BA_ERR_RUNTIME, "%s: node '%s' (%s): kernel left output %d unset",
                                      m->path, n->name, n->op_type, j);
                    break;
                }
            }
        } else {
            ba_error_prefix(err, "%s", m->path);
        }
        for (int j = 0; j < n->nout; j++) {
            if (st == BA_OK && n->outputs[j] >= 0)
                set_value_tensor(&m->values[n->outputs[j]], out[j]);
            else
                ba_tensor_unref(out[j]);
        }
        free(in);
        free(out);
        if (st == BA_OK) {
            dead[i] = 1;
            (*changed)++;
        }
    }
    if (st == BA_OK && *changed) compact(m, dead);
    free(dead);
    return st;
}

/* ---------------- shape resolution ---------------- */

/* Shapes are never guessed: a run happens only at concrete input shapes,
 * either the declared ones of a fully static model (load: shape-based
 * folding) or one sample's (ba_model_costs_at: the layers' MACs). At load a
 * run is skipped when its inputs exceed LOAD_RUN_INPUT_BYTES and stopped
 * (shapes left unknown, not an error) once a tensor exceeds
 * LOAD_RUN_TENSOR_BYTES, so memory at load never grows with a declared
 * dimension. */
#define LOAD_RUN_INPUT_BYTES ((int64_t)16 << 20)
#define LOAD_RUN_TENSOR_BYTES ((int64_t)256 << 20)

typedef struct {
    int ok;
    int8_t *ndim;   /* per value, -1 unknown */
    int64_t *shape; /* per value, BA_MAX_DIMS each */
    ba_dtype *dtype;
} shape_run;

static void shape_run_free(shape_run *r) {
    free(r->ndim);
    free(r->shape);
    free(r->dtype);
    memset(r, 0, sizeof *r);
}

typedef struct {
    shape_run *r;
    int64_t tensor_cap; /* 0 = none */
    int capped;         /* the run stopped at a tensor over tensor_cap */
} shape_ctx;

static void record(shape_run *r, int v, const ba_tensor_t *t) {
    r->ndim[v] = (int8_t)t->ndim;
    r->dtype[v] = t->dtype;
    memcpy(r->shape + (size_t)v * BA_MAX_DIMS, t->shape, sizeof(int64_t) * BA_MAX_DIMS);
}

static ba_status on_shape(void *vctx, const ba_model_t *m, int v, ba_tensor_t **t, ba_error *err) {
    shape_ctx *c = vctx;
    (void)m;
    record(c->r, v, *t);
    if (c->tensor_cap && (int64_t)ba_tensor_nbytes(*t) > c->tensor_cap) {
        c->capped = 1;
        return ba_error_set(err, BA_ERR_RUNTIME, "shape run capped");
    }
    return BA_OK;
}

static int64_t shape_bytes(ba_dtype dt, int nd, const int64_t *s) {
    int64_t n = ba_shape_numel(nd, s);
    size_t es = ba_dtype_size(dt == BA_DT_UNDEFINED ? BA_DT_F32 : dt);
    if (n < 0 || (es && n > INT64_MAX / (int64_t)es)) return INT64_MAX;
    return n * (int64_t)es;
}

/* Runs the graph at shapes (ninputs x BA_MAX_DIMS; rank = the input's) on
 * data[k] where given (NULL array or entry: zeros; a given tensor has that
 * shape) and records every value's shape and dtype. input_cap/tensor_cap
 * (0 = none): see LOAD_RUN_*; *capped tells a run skipped or stopped by them
 * (status BA_OK, r->ok 0). */
static ba_status run_shapes(const ba_model_t *m, const int64_t *shapes, ba_tensor_t *const *data,
                            int64_t input_cap, int64_t tensor_cap, shape_run *r, int *capped, ba_error *err) {
    memset(r, 0, sizeof *r);
    *capped = 0;
    int nv = m->nvalues;
    int64_t in_bytes = 0;
    for (int k = 0; k < m->ninputs; k++) {
        const ba_value_t *v = &m->values[m->inputs[k]];
        if (v->ndim < 0 && !(data && data[k]))
            return ba_error_set(err, BA_ERR_INPUT, "%s: input '%s' has no declared rank: give --data",
                                m->path, v->name);
        int64_t b = data && data[k] ? (int64_t)ba_tensor_nbytes(data[k])
                                    : shape_bytes(v->dtype, v->ndim, shapes + (size_t)k * BA_MAX_DIMS);
        in_bytes = b > INT64_MAX - in_bytes ? INT64_MAX : in_bytes + b;
    }
    if (input_cap && in_bytes > input_cap) {
        *capped = 1;
        return BA_OK;
    }
    r->ndim = ba_malloc((size_t)nv + 1, err);
    r->shape = ba_calloc((size_t)nv * BA_MAX_DIMS + 1, sizeof(int64_t), err);
    r->dtype = ba_calloc((size_t)nv + 1, sizeof(ba_dtype), err);
    ba_tensor_t **in = ba_calloc((size_t)m->ninputs + 1, sizeof(ba_tensor_t *), err);
    ba_tensor_t **out = ba_calloc((size_t)m->noutputs + 1, sizeof(ba_tensor_t *), err);
    ba_status st = BA_OK;
    if (!r->ndim || !r->shape || !r->dtype || !in || !out) {
        st = err->code;
        goto done;
    }
    memset(r->ndim, -1, (size_t)nv);
    for (int v = 0; v < nv; v++)
        if (m->values[v].constant) record(r, v, m->values[v].constant);
    for (int k = 0; k < m->ninputs; k++) {
        const ba_value_t *v = &m->values[m->inputs[k]];
        in[k] = data && data[k] ? ba_tensor_ref(data[k])
                                : ba_tensor_new(v->dtype == BA_DT_UNDEFINED ? BA_DT_F32 : v->dtype, v->ndim,
                                                shapes + (size_t)k * BA_MAX_DIMS, err);
        if (!in[k]) {
            st = ba_error_prefix(err, "%s: input '%s'", m->path, v->name);
            goto done;
        }
        record(r, m->inputs[k], in[k]);
    }
    shape_ctx c = {r, tensor_cap, 0};
    ba_run_opts_t o = {0};
    o.all_branches = 1;
    o.on_value = on_shape;
    o.ctx = &c;
    st = ba_exec_run(m, in, &o, out, err);
    if (st != BA_OK && c.capped) {
        st = BA_OK;
        *capped = 1;
        goto done;
    }
    if (st != BA_OK) goto done;
    r->ok = 1;
done:
    for (int k = 0; in && k < m->ninputs; k++) ba_tensor_unref(in[k]);
    for (int k = 0; out && k < m->noutputs; k++) ba_tensor_unref(out[k]);
    free(in);
    free(out);
    if (!r->ok) shape_run_free(r);
    return st;
}

static int all_inputs_static(const ba_model_t *m) {
    for (int k = 0; k < m->ninputs; k++) {
        const ba_value_t *v = &m->values[m->inputs[k]];
        if (v->ndim < 0) return 0;
        for (int d = 0; d < v->ndim; d++)
            if (v->shape[d] < 0) return 0;
    }
    return 1;
}

/* The declared input shapes (dynamic dims -1) in the ninputs x BA_MAX_DIMS layout. */
static int64_t *declared_shapes(const ba_model_t *m, ba_error *err) {
    int64_t *s = ba_calloc((size_t)m->ninputs * BA_MAX_DIMS + 1, sizeof(int64_t), err);
    for (int k = 0; s && k < m->ninputs; k++)
        memcpy(s + (size_t)k * BA_MAX_DIMS, m->values[m->inputs[k]].shape, sizeof(int64_t) * BA_MAX_DIMS);
    return s;
}

/* A fully static model's value shapes come from one run at its declared
 * shapes; *exact tells whether that run happened. A failing run is the
 * model's own error (its declared shapes cannot run). */
static ba_status infer_static_shapes(ba_model_t *m, int *exact, ba_error *err) {
    *exact = 0;
    if (!all_inputs_static(m)) return BA_OK;
    int64_t *shapes = declared_shapes(m, err);
    if (!shapes) return err->code;
    shape_run r;
    int capped;
    ba_status st = run_shapes(m, shapes, NULL, LOAD_RUN_INPUT_BYTES, LOAD_RUN_TENSOR_BYTES, &r, &capped, err);
    free(shapes);
    if (st != BA_OK || !r.ok) return st;
    for (int v = 0; v < m->nvalues; v++) {
        ba_value_t *val = &m->values[v];
        if (val->constant || val->is_graph_input || r.ndim[v] < 0) continue;
        val->dtype = r.dtype[v];
        val->ndim = r.ndim[v];
        memcpy(val->shape, r.shape + (size_t)v * BA_MAX_DIMS, sizeof val->shape);
    }
    shape_run_free(&r);
    *exact = 1;
    return BA_OK;
}

const char *ba_value_shape_str(const ba_value_t *v, char *buf, size_t cap) {
    if (v->ndim < 0) return snprintf(buf, cap, "?"), buf;
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < v->ndim && o < cap; d++) {
        if (v->shape[d] >= 0)
            o += (size_t)snprintf(buf + o, cap - o, "%s%lld", d ? ", " : "", (long long)v->shape[d]);
        else
            o += (size_t)snprintf(buf + o, cap - o, "%s%s", d ? ", " : "",
                                  v->dim_param[d] ? v->dim_param[d] : "?");
    }
    if (o < cap) snprintf(buf + o, cap - o, "]");
    return buf;
}

/* ---------------- layers ---------------- */

/* Shapes of a weight chain's values (chain[] from the consumer side), computed
 * by running the chain's kernels on the constant: sh[c] = output of chain[c].
 * Returns 0 when some chain input is not a constant. */
static int chain_shapes(const ba_model_t *m, int root, const int *chain, int nc, int nd[MAX_CHAIN],
                        int64_t sh[MAX_CHAIN][BA_MAX_DIMS]) {
    ba_tensor_t *cur = ba_tensor_ref(m->values[root].constant);
    int ok = 1;
    for (int c = nc - 1; c >= 0 && ok; c--) {
        const ba_node_t *n = &m->nodes[chain[c]];
        ba_tensor_t *in[8] = {0}, *out[8] = {0};
        ba_error e;
        if (n->nin > 8 || n->nout > 8 || !n->def) {
            ok = 0;
            break;
        }
        in[0] = cur;
        for (int j = 1; j < n->nin; j++) {
            if (n->inputs[j] >= 0 && !m->values[n->inputs[j]].constant) ok = 0;
            in[j] = n->inputs[j] >= 0 ? m->values[n->inputs[j]].constant : NULL;
        }
        if (ok && n->def->forward(n, in, n->nin, out, n->nout, &e) == BA_OK && out[0]) {
            nd[c] = out[0]->ndim;
            memcpy(sh[c], out[0]->shape, sizeof sh[c]);
            ba_tensor_unref(cur);
            cur = ba_tensor_ref(out[0]);
        } else {
            ok = 0;
        }
        for (int j = 0; j < n->nout; j++) ba_tensor_unref(out[j]);
    }
    ba_tensor_unref(cur);
    return ok;
}

/* Maps an axis of chain node c's output back to its data input (-1 if lost). */
static int map_axis_back(const ba_model_t *m, const ba_node_t *n, int axis, int ind, const int64_t *si,
                         int ond, const int64_t *so) {
    (void)m;
    if (n->op == BA_OP_IDENTITY) return axis;
    if (n->op == BA_OP_TRANSPOSE) {
        const int64_t *perm;
        int np = ba_node_attr_ints(n, "perm", &perm);
        if (np) return axis < np ? (int)perm[axis] : -1;
        return ind - 1 - axis; /* default: reversed */
    }
    /* Reshape: the axis survives when the element count before it and its size match. */
    if (ind < 0 || ond < 0 || axis >= ond) return -1;
    int64_t pre = 1;
    for (int d = 0; d < axis; d++) pre *= so[d];
    int64_t p2 = 1;
    for (int d = 0; d < ind; d++) {
        if (p2 == pre && si[d] == so[axis]) return d;
        p2 *= si[d];
    }
    return -1;
}

static int64_t numel_of(int nd, const int64_t *s) {
    int64_t n = 1;
    for (int d = 0; d < nd; d++) n *= s[d];
    return n;
}

static int find_layer(const ba_model_t *m, int root) {
    for (int l = 0; l < m->nlayers; l++)
        if (m->layers[l].value == root) return l;
    return -1;
}

/* Records every consumer of a layer's weight in its uses (node order): one
 * weight per MatMul, embeddings' Gathers whether or not they make layers. */
static ba_status record_uses(ba_model_t *m, ba_error *err) {
    int chain[MAX_CHAIN], nc, idx[2];
    for (int i = 0; i < m->nnodes; i++) {
        const ba_node_t *n = &m->nodes[i];
        int k = weight_inputs(n, 1, idx);
        for (int j = 0; j < k; j++) {
            int root = trace_weight(m, n->inputs[idx[j]], chain, &nc, MAX_CHAIN);
            int l = root < 0 ? -1 : find_layer(m, root);
            if (l < 0) continue;
            ba_layer_t *L = &m->layers[l];
            ba_layer_use_t *nu = ba_realloc(L->uses, sizeof *nu * (size_t)(L->nuses + 1), err);
            if (!nu) return err->code;
            L->uses = nu;
            ba_layer_use_t *u = &L->uses[L->nuses++];
            memset(u, 0, sizeof *u);
            u->node = i;
            u->widx = idx[j];
            u->didx = data_input(n, idx[j]);
            if (u->didx >= n->nin || (u->didx >= 0 && n->inputs[u->didx] < 0)) u->didx = -1;
            u->data = u->didx >= 0 ? n->inputs[u->didx] : -1;
            u->nchain = nc;
            memcpy(u->chain, chain, sizeof(int) * (size_t)nc);
            if (n->op == BA_OP_MATMUL) break;
        }
    }
    return BA_OK;
}

/* The layer table (SPEC §2) and each layer's uses; macs stay -1 until ba_model_costs_at. */
static ba_status find_layers(ba_model_t *m, ba_error *err) {
    const ba_model_priv_t *pv = m->priv;
    int chain[MAX_CHAIN], nc, idx[2];
    int cnd[MAX_CHAIN];
    int64_t csh[MAX_CHAIN][BA_MAX_DIMS];
    for (int i = 0; i < m->nnodes; i++) {
        const ba_node_t *n = &m->nodes[i];
        int k = weight_inputs(n, pv->include_embeddings, idx);
        for (int j = 0; j < k; j++) {
            int wid = n->inputs[idx[j]];
            int root = trace_weight(m, wid, chain, &nc, MAX_CHAIN);
            if (root < 0 || !root_ok(&m->values[root])) continue;
            const ba_tensor_t *w = m->values[root].constant;
            int known = nc == 0 || chain_shapes(m, root, chain, nc, cnd, csh);
            /* consumed weight rank */
            int wnd = nc == 0 ? w->ndim : known ? cnd[0] : -1;
            int ch;
            switch (n->op) {
            case BA_OP_CONV: ch = 0; break;
            case BA_OP_CONV_TRANSPOSE: ch = 1; break;
            case BA_OP_GEMM: ch = ba_node_attr_int(n, "transB", 0) ? 0 : 1; break;
            case BA_OP_MATMUL: ch = wnd >= 2 ? (idx[j] == 1 ? wnd - 1 : wnd - 2) : w->ndim - 1; break;
            case BA_OP_GATHER: ch = 0; break; /* one row per token */
            default: ch = 1;                  /* LSTM/GRU: the gate rows */
            }
            for (int c = 0; c < nc && ch >= 0; c++) {
                if (!known) {
                    ch = -1;
                    break;
                }
                int ind = c + 1 < nc ? cnd[c + 1] : w->ndim;
                const int64_t *si = c + 1 < nc ? csh[c + 1] : w->shape;
                ch = map_axis_back(m, &m->nodes[chain[c]], ch, ind, si, cnd[c], csh[c]);
            }
            if (ch < 0 || ch >= w->ndim) ch = n->op == BA_OP_MATMUL ? w->ndim - 1 : 0;
            if (find_layer(m, root) < 0) {
                ba_layer_t *nl = ba_realloc(m->layers, sizeof(ba_layer_t) * (size_t)(m->nlayers + 1), err);
                if (!nl) return err->code;
                m->layers = nl;
                ba_layer_t *L = &m->layers[m->nlayers];
                memset(L, 0, sizeof *L);
                L->name = ba_strdup(m->values[root].name, err);
                if (!L->name) return err->code;
                m->nlayers++;
                L->value = root;
                L->node = i;
                L->op = n->op_type;
                L->ndim = w->ndim;
                memcpy(L->shape, w->shape, sizeof L->shape);
                L->ch_axis = ch;
                L->params = w->numel;
                L->macs = -1;
            }
            if (n->op == BA_OP_MATMUL) break;
        }
    }
    return record_uses(m, err);
}

/* MACs of one consumer of a weight at the shapes of run r, for one sample (bsz samples in the run). */
static int64_t consumer_macs(const ba_node_t *n, int widx, const ba_tensor_t *w, const shape_run *r,
                             int64_t bsz) {
    int wid = n->inputs[widx], out = n->outputs[0], in0 = n->inputs[0];
    int ond = out >= 0 ? r->ndim[out] : -1, ind = in0 >= 0 ? r->ndim[in0] : -1, cnd = r->ndim[wid];
    const int64_t *os = out >= 0 ? r->shape + (size_t)out * BA_MAX_DIMS : NULL;
    const int64_t *is = in0 >= 0 ? r->shape + (size_t)in0 * BA_MAX_DIMS : NULL;
    const int64_t *cs = r->shape + (size_t)wid * BA_MAX_DIMS;
    if (n->op == BA_OP_CONV && ond >= 0 && w->shape[0] > 0)
        return numel_of(ond, os) / bsz * (w->numel / w->shape[0]);
    if (n->op == BA_OP_CONV_TRANSPOSE && ind >= 0 && w->shape[0] > 0)
        return numel_of(ind, is) / bsz * (w->numel / w->shape[0]);
    if (n->op == BA_OP_GEMM && ond >= 0 && cnd == 2)
        return numel_of(ond, os) / bsz * (ba_node_attr_int(n, "transB", 0) ? cs[1] : cs[0]);
    if (n->op == BA_OP_MATMUL && ond >= 0 && cnd >= 1)
        return numel_of(ond, os) / bsz * (widx == 1 ? (cnd >= 2 ? cs[cnd - 2] : cs[0]) : cs[cnd - 1]);
    if ((ba_node_flags(n) & BA_OPF_RECURRENT) && ind == 3 && is[2] > 0)
        return numel_of(ind, is) / is[2] / bsz * w->numel; /* every (step, batch) row: dirs·G·H·(I or H) */
    return 0;
}

/* Every layer's macs from run r (summed over a shared weight's uses). */
static void fill_macs(ba_model_t *m, const shape_run *r, int64_t bsz) {
    for (int l = 0; l < m->nlayers; l++) {
        ba_layer_t *L = &m->layers[l];
        L->macs = 0;
        for (int u = 0; u < L->nuses; u++)
            L->macs += consumer_macs(&m->nodes[L->uses[u].node], L->uses[u].widx,
                                     m->values[L->value].constant, r, bsz);
    }
}

/* ---------------- costs at concrete shapes ---------------- */

static const char *dim_symbol(const ba_value_t *v, int d, char *buf, size_t cap) {
    if (v->dim_param[d]) return v->dim_param[d];
    snprintf(buf, cap, "dim %d", d);
    return buf;
}

ba_status ba_model_sample_shape(const ba_model_t *m, int k, int axis, int ndim, const int64_t *shape,
                                int64_t *out, ba_error *err) {
    const ba_value_t *v = &m->values[m->inputs[k]];
    char a[160], b[160], sym[32];
    if (v->ndim >= 0 && ndim != v->ndim)
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: input '%s': shape %s has rank %d, the model wants %s (rank %d)", m->path,
                            v->name, ba_shape_str(ndim, shape, a, sizeof a), ndim,
                            ba_value_shape_str(v, b, sizeof b), v->ndim);
    if (ndim < 0 || ndim > BA_MAX_DIMS)
        return ba_error_set(err, BA_ERR_INPUT, "%s: input '%s': rank %d outside 0..%d", m->path, v->name,
                            ndim, BA_MAX_DIMS);
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return ba_error_set(err, BA_ERR_INPUT, "%s: input '%s': negative dimension %lld", m->path,
                                v->name, (long long)shape[d]);
        /* the sample axis of data may differ from a fixed batch: the evaluator pads to it */
        if (d != axis && v->ndim >= 0 && v->shape[d] >= 0 && v->shape[d] != shape[d])
            return ba_error_set(
                err, BA_ERR_INPUT,
                "%s: input '%s': shape %s does not match the model's %s (%s is %lld, not %lld)", m->path,
                v->name, ba_shape_str(ndim, shape, a, sizeof a), ba_value_shape_str(v, b, sizeof b),
                dim_symbol(v, d, sym, sizeof sym), (long long)v->shape[d], (long long)shape[d]);
    }
    for (int d = 0; d < BA_MAX_DIMS; d++) out[d] = d < ndim ? shape[d] : 0;
    if (axis >= 0 && axis < ndim) out[axis] = v->ndim > axis && v->shape[axis] >= 0 ? v->shape[axis] : 1;
    return BA_OK;
}

ba_status ba_model_input_shape_spec(const ba_model_t *m, const char *spec, int *k, int64_t *out,
                                    ba_error *err) {
    const char *eq = strrchr(spec, '=');
    if (!eq || eq == spec)
        return ba_error_set(err, BA_ERR_INPUT, "--input-shape %s: expected NAME=D0xD1x… (e.g. x=1x3x224x224)",
                            spec);
    *k = -1;
    for (int i = 0; i < m->ninputs; i++) {
        const char *n = m->values[m->inputs[i]].name;
        if (strlen(n) == (size_t)(eq - spec) && !strncmp(n, spec, (size_t)(eq - spec))) *k = i;
    }
    if (*k < 0)
        return ba_error_set(err, BA_ERR_INPUT, "--input-shape %s: %s has no input named '%.*s'", spec,
                            m->path, (int)(eq - spec), spec);
    int nd;
    int64_t shape[BA_MAX_DIMS];
    if (ba_shape_parse(eq + 1, &nd, shape, err) != BA_OK) return ba_error_prefix(err, "--input-shape");
    if (ba_model_sample_shape(m, *k, nd >= 1 ? 0 : -1, nd, shape, out, err) != BA_OK)
        return ba_error_prefix(err, "--input-shape %s", spec);
    return BA_OK;
}

/* Appends "; at input 'x' N=1, H=48, W=3" (its dynamic dims) to err. */
static void append_dims(const ba_model_t *m, const int64_t *shapes, ba_error *err) {
    size_t o = strlen(err->msg);
    for (int k = 0; k < m->ninputs; k++) {
        const ba_value_t *v = &m->values[m->inputs[k]];
        int first = 1;
        for (int d = 0; d < v->ndim; d++) {
            if (v->shape[d] >= 0) continue;
            char sym[32];
            long long val = (long long)shapes[(size_t)k * BA_MAX_DIMS + d];
            int w = first ? snprintf(err->msg + o, sizeof err->msg - o, "; at input '%s' %s=%lld", v->name,
                                     dim_symbol(v, d, sym, sizeof sym), val)
                          : snprintf(err->msg + o, sizeof err->msg - o, ", %s=%lld",
                                     dim_symbol(v, d, sym, sizeof sym), val);
            first = 0;
            if (w < 0 || (size_t)w >= sizeof err->msg - o) return;
            o += (size_t)w;
        }
    }
}

static ba_status costs_at(ba_model_t *m, const int64_t *shapes, ba_tensor_t *const *data, int64_t input_cap,
                          int64_t tensor_cap, int *capped, ba_error *err) {
    shape_run r;
    for (int k = 0; data && k < m->ninputs; k++) {
        const int64_t *s = shapes + (size_t)k * BA_MAX_DIMS;
        int nd = m->values[m->inputs[k]].ndim;
        if (data[k] && ((nd >= 0 && data[k]->ndim != nd) ||
                        memcmp(data[k]->shape, s, sizeof(int64_t) * (size_t)data[k]->ndim) != 0))
            return ba_error_set(err, BA_ERR_INPUT, "%s: input '%s': the sample's shape is not the one given",
                                m->path, m->values[m->inputs[k]].name);
    }
    ba_status st = run_shapes(m, shapes, data, input_cap, tensor_cap, &r, capped, err);
    if (st != BA_OK) {
        /* the executor named the node; a shape the graph cannot run is bad input */
        if (st == BA_ERR_RUNTIME) st = err->code = BA_ERR_INPUT;
        append_dims(m, shapes, err);
        if (!strstr(err->msg, m->path)) ba_error_prefix(err, "%s", m->path);
        return st;
    }
    if (!r.ok) return BA_OK;
    int64_t *cs = ba_malloc(sizeof(int64_t) * ((size_t)m->ninputs * BA_MAX_DIMS + 1), err);
    if (!cs) {
        shape_run_free(&r);
        return err->code;
    }
    memcpy(cs, shapes, sizeof(int64_t) * (size_t)m->ninputs * BA_MAX_DIMS);
    int64_t bsz = 1; /* samples in the run */
    if (m->ninputs > 0 && m->values[m->inputs[0]].ndim >= 1 && shapes[0] > 0) bsz = shapes[0];
    fill_macs(m, &r, bsz);
    /* dtypes do not depend on shapes: fill the ones the file left out */
    for (int v = 0; v < m->nvalues; v++)
        if (m->values[v].dtype == BA_DT_UNDEFINED && r.ndim[v] >= 0) m->values[v].dtype = r.dtype[v];
    free(m->cost_shapes);
    m->cost_shapes = cs;
    shape_run_free(&r);
    return BA_OK;
}

ba_status ba_model_costs_at(ba_model_t *m, const int64_t *shapes, ba_tensor_t *const *data, ba_error *err) {
    int capped;
    int64_t *own = NULL;
    if (!shapes) {
        own = declared_shapes(m, err);
        if (!own) return err->code;
        for (int k = 0; k < m->ninputs; k++) {
            const ba_value_t *v = &m->values[m->inputs[k]];
            int64_t *s = own + (size_t)k * BA_MAX_DIMS;
            if (v->ndim >= 1 && s[0] < 0) s[0] = 1;
            for (int d = 0; d < v->ndim; d++)
                if (s[d] < 0) {
                    char sym[32];
                    free(own);
                    return ba_error_set(
                        err, BA_ERR_INPUT,
                        "%s: input '%s': dimension %s is dynamic: give --data or --input-shape %s=DIMS",
                        m->path, v->name, dim_symbol(v, d, sym, sizeof sym), v->name);
                }
        }
        shapes = own;
    }
    ba_status st = costs_at(m, shapes, data, 0, 0, &capped, err);
    free(own);
    return st;
}

/* At load: the costs of one sample when every dimension but the sample axis
 * is declared, within the load caps; otherwise they stay unknown (the
 * commands resolve them at the data's shapes). */
static ba_status default_costs(ba_model_t *m, ba_error *err) {
    int64_t *s = declared_shapes(m, err);
    if (!s) return err->code;
    int ok = 1;
    for (int k = 0; k < m->ninputs && ok; k++) {
        const ba_value_t *v = &m->values[m->inputs[k]];
        if (v->ndim < 0) ok = 0;
        if (v->ndim >= 1 && s[(size_t)k * BA_MAX_DIMS] < 0) s[(size_t)k * BA_MAX_DIMS] = 1;
        for (int d = 0; ok && d < v->ndim; d++)
            if (s[(size_t)k * BA_MAX_DIMS + d] < 0) ok = 0;
    }
    ba_status st = BA_OK;
    if (ok) {
        /* One sample's shape is fully declared: a graph that cannot run at it is broken. */
        int capped;
        st = costs_at(m, s, NULL, LOAD_RUN_INPUT_BYTES, LOAD_RUN_TENSOR_BYTES, &capped, err);
    }
    free(s);
    return st;
}

/* Removes nodes none of whose outputs is read (e.g. a Shape whose Gathers
 * folded), walking backwards so whole dead chains go in one pass. */
static ba_status dead_code(ba_model_t *m, int *removed, ba_error *err) {
    *removed = 0;
    int *uses = ba_calloc((size_t)m->nvalues + 1, sizeof(int), err);
    unsigned char *dead = ba_calloc((size_t)m->nnodes + 1, 1, err);
    if (!uses || !dead) {
        free(uses);
        free(dead);
        return err->code;
    }
    for (int i = 0; i < m->nnodes; i++)
        for (int j = 0; j < m->nodes[i].nin; j++)
            if (m->nodes[i].inputs[j] >= 0) uses[m->nodes[i].inputs[j]]++;
    for (int k = 0; k < m->noutputs; k++) uses[m->outputs[k]]++;
    for (int i = m->nnodes - 1; i >= 0; i--) {
        const ba_node_t *n = &m->nodes[i];
        int live = 0;
        for (int j = 0; j < n->nout; j++)
            if (n->outputs[j] >= 0 && uses[n->outputs[j]] > 0) live = 1;
        if (live) continue;
        dead[i] = 1;
        (*removed)++;
        for (int j = 0; j < n->nin; j++)
            if (n->inputs[j] >= 0) uses[n->inputs[j]]--;
    }
    if (*removed) compact(m, dead);
    free(uses);
    free(dead);
    return BA_OK;
}

/* ---------------- driver ---------------- */

static ba_status fold_and_inline(ba_model_t *m, ba_error *err) {
    for (int round = 0; round < MAX_ROUNDS * 64; round++) {
        int folded = 0, inlined = 0;
        int removed = 0;
        BA_TRY(fold_pass(m, 0, &folded, err));
        BA_TRY(ba_graph_inline_ifs(m, &inlined, err));
        if (!inlined) BA_TRY(dead_code(m, &removed, err));
        if (inlined) {
            BA_TRY(check_refs(m, err));
            BA_TRY(topo_sort(m, err));
            BA_TRY(fold_pass(m, 1, &folded, err));
            mark_nofold(m);
        }
        if (!folded && !inlined) return BA_OK;
    }
    return ba_error_set(err, BA_ERR_INPUT, "%s: constant folding does not settle", m->path);
}

ba_status ba_graph_finish(ba_model_t *m, ba_error *err) {
    /* A value listed as input and initializer is a constant with a default. */
    int k = 0;
    for (int i = 0; i < m->ninputs; i++) {
        ba_value_t *v = &m->values[m->inputs[i]];
        if (v->is_initializer) {
            v->is_graph_input = 0;
            continue;
        }
        m->inputs[k++] = m->inputs[i];
    }
    m->ninputs = k;
    BA_TRY(ba_graph_expand_ifs(m, err));
    for (int i = 0; i < m->nnodes; i++) ba_node_resolve(&m->nodes[i]);
    BA_TRY(check_refs(m, err));
    BA_TRY(topo_sort(m, err));
    int nconst;
    /* Constant nodes first: they are the roots that layer chains are traced to. */
    BA_TRY(fold_pass(m, 1, &nconst, err));
    mark_nofold(m);
    BA_TRY(fold_and_inline(m, err));
    BA_TRY(ba_graph_check_supported(m, err));
    /* A fully static model: value shapes from its declared shapes, then the
     * folds they allow, until nothing changes. A dynamic one keeps its
     * symbolic shapes: nothing is guessed. */
    for (int round = 0; round < MAX_ROUNDS; round++) {
        int exact = 0;
        if (infer_static_shapes(m, &exact, err) != BA_OK)
            return ba_error_prefix(err, "%s: shape check", m->path);
        if (!exact) break;
        int n0 = m->nnodes;
        BA_TRY(fold_and_inline(m, err));
        BA_TRY(ba_graph_check_supported(m, err));
        if (m->nnodes == n0) break;
    }
    BA_TRY(find_layers(m, err));
    BA_TRY(default_costs(m, err));
    const ba_model_priv_t *pv = m->priv;
    m->other_init_bytes = 0;
    for (int v = 0; v < m->nvalues; v++) {
        const ba_value_t *val = &m->values[v];
        if (!val->constant || !(val->is_initializer || (pv->nofold[v] & VF_CONST_NODE))) continue;
        int is_layer = 0;
        for (int l = 0; l < m->nlayers; l++)
            if (m->layers[l].value == v) is_layer = 1;
        if (!is_layer) m->other_init_bytes += (int64_t)ba_tensor_nbytes(val->constant);
    }
    return BA_OK;
}
