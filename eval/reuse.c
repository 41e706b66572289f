/* Reuse across evaluations (eval/evaluate.h, ba_eval_reuse_t): a configuration
 * that gives the first layers (in the order the graph reads them) the same
 * weights as an earlier one computes the same values up to the first node
 * that reads a layer where they differ. Each run leaves, per batch, the
 * values alive at every such cut (references to the tensors the executor
 * made anyway, no copies) in a cache bounded in bytes (least recently used
 * entries go first); a later run resumes from the latest cut whose layers
 * before it all carry its keys. */
#include <stdlib.h>
#include <string.h>

#include "eval/evaluate.h"
#include "eval/reuse.h"

typedef struct {
    int q;                /* cut index: the values alive before node cut_node[q] */
    int64_t start, count; /* the batch */
    int *keys;            /* the run's keys (nlayers); those of layers read before the cut matter */
    int nv;
    int *ids;
    ba_tensor_t **t;
    size_t bytes;
    uint64_t stamp; /* last use */
} entry_t;

struct ba_eval_reuse {
    const ba_model_t *m;
    size_t cap, bytes;
    int *first_node;     /* per layer: the first node reading its weight */
    int ncuts;           /* distinct first nodes */
    int *cut_node;       /* ascending */
    unsigned char *cuts; /* per node: a cut before it (scratch of one run) */
    int *cut_of;         /* per node: its cut index, -1 */
    entry_t *e;
    int ne, cap_e;
    uint64_t clock;
    ba_tensor_t **resume; /* per value: scratch of one run */
    ba_eval_hook_t hook;  /* the one every entry was made with */
    /* the run being saved */
    const int *keys;
    int64_t start, count;
    ba_eval_reuse_stats_t st;
};

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

ba_status ba_eval_reuse_new(const ba_model_t *m, size_t cap_bytes, ba_eval_reuse_t **out, ba_error *err) {
    *out = NULL;
    ba_eval_reuse_t *r = ba_calloc(1, sizeof *r, err);
    if (!r) return BA_ERR_NOMEM;
    r->m = m;
    r->cap = cap_bytes;
    r->first_node = ba_calloc((size_t)m->nlayers + 1, sizeof(int), err);
    r->cut_node = ba_calloc((size_t)m->nlayers + 1, sizeof(int), err);
    r->cuts = ba_calloc((size_t)m->nnodes + 1, 1, err);
    r->cut_of = ba_calloc((size_t)m->nnodes + 1, sizeof(int), err);
    r->resume = ba_calloc((size_t)m->nvalues + 1, sizeof(ba_tensor_t *), err);
    if (!r->first_node || !r->cut_node || !r->cuts || !r->cut_of || !r->resume) {
        ba_eval_reuse_free(r);
        return BA_ERR_NOMEM;
    }
    for (int l = 0; l < m->nlayers; l++) {
        int v = m->layers[l].value, f = m->nnodes;
        for (int i = 0; i < m->nnodes && f == m->nnodes; i++)
            for (int k = 0; k < m->nodes[i].nin; k++)
                if (m->nodes[i].inputs[k] == v) f = i;
        r->first_node[l] = f;
        if (f < m->nnodes) r->cut_node[r->ncuts++] = f;
    }
    qsort(r->cut_node, (size_t)r->ncuts, sizeof(int), cmp_int);
    int n = 0;
    for (int q = 0; q < r->ncuts; q++)
        if (n == 0 || r->cut_node[n - 1] != r->cut_node[q]) r->cut_node[n++] = r->cut_node[q];
    r->ncuts = n;
    for (int i = 0; i < m->nnodes; i++) r->cut_of[i] = -1;
    for (int q = 0; q < r->ncuts; q++) r->cut_of[r->cut_node[q]] = q;
    *out = r;
    return BA_OK;
}

static void entry_drop(ba_eval_reuse_t *r, int k) {
    entry_t *e = &r->e[k];
    for (int i = 0; i < e->nv; i++) ba_tensor_unref(e->t[i]);
    free(e->ids);
    free(e->t);
    free(e->keys);
    r->bytes -= e->bytes;
    r->e[k] = r->e[--r->ne];
}

void ba_eval_reuse_clear(ba_eval_reuse_t *r) {
    while (r && r->ne > 0) entry_drop(r, r->ne - 1);
}

void ba_eval_reuse_free(ba_eval_reuse_t *r) {
    if (!r) return;
    ba_eval_reuse_clear(r);
    free(r->e);
    free(r->first_node);
    free(r->cut_node);
    free(r->cuts);
    free(r->cut_of);
    free(r->resume);
    free(r);
}

void ba_eval_reuse_stats(const ba_eval_reuse_t *r, ba_eval_reuse_stats_t *out) {
    *out = r->st;
    out->bytes = r->bytes;
    out->entries = r->ne;
}

void ba_eval_reuse_hook(ba_eval_reuse_t *r, const ba_eval_hook_t *hook) {
    ba_eval_hook_t h = {0};
    if (hook && hook->on_value) h = *hook;
    if (h.on_value != r->hook.on_value || h.ctx != r->hook.ctx || h.values != r->hook.values) {
        ba_eval_reuse_clear(r);
        r->hook = h;
    }
}

/* Whether entry e holds for keys on batch (start, count). */
static int entry_holds(const ba_eval_reuse_t *r, const entry_t *e, const int *keys, int64_t start,
                       int64_t count) {
    if (e->start != start || e->count != count) return 0;
    const int cut = r->cut_node[e->q];
    for (int l = 0; l < r->m->nlayers; l++)
        if (r->first_node[l] < cut && keys[l] != e->keys[l]) return 0;
    return 1;
}

/* Evicts the least recently used entries but `keep` until bytes <= cap. */
static void evict(ba_eval_reuse_t *r, int keep) {
    while (r->bytes > r->cap && r->ne > 1) {
        int lru = -1;
        for (int k = 0; k < r->ne; k++)
            if (k != keep && (lru < 0 || r->e[k].stamp < r->e[lru].stamp)) lru = k;
        if (lru < 0) break;
        if (keep == r->ne - 1) keep = lru; /* entry_drop moves the last entry into the hole */
        entry_drop(r, lru);
    }
}

/* on_cut: stores the values alive before node `node` as an entry. */
static ba_status save_cut(void *ctx, const ba_model_t *m, int node, ba_tensor_t *const *vals, ba_error *err) {
    ba_eval_reuse_t *r = ctx;
    const int q = r->cut_of[node];
    if (q < 0) return BA_OK;
    size_t bytes = 0;
    int nv = 0;
    for (int v = 0; v < m->nvalues; v++)
        if (m->values[v].producer >= 0 && vals[v]) {
            bytes += ba_tensor_nbytes(vals[v]);
            nv++;
        }
    if (nv == 0 || bytes > r->cap / 2)
        return BA_OK; /* nothing to skip; or one cut alone would crowd out the rest */
    if (r->ne == r->cap_e) {
        int nc = r->cap_e ? 2 * r->cap_e : 64;
        entry_t *ne = realloc(r->e, (size_t)nc * sizeof *ne);
        if (!ne) return BA_OK; /* a cache that cannot grow only costs recomputation */
        r->e = ne;
        r->cap_e = nc;
    }
    entry_t e = {.q = q, .start = r->start, .count = r->count, .nv = nv, .bytes = bytes, .stamp = ++r->clock};
    e.keys = malloc(sizeof(int) * (size_t)(m->nlayers + 1));
    e.ids = malloc(sizeof(int) * (size_t)(nv + 1));
    e.t = malloc(sizeof(ba_tensor_t *) * (size_t)(nv + 1));
    if (!e.keys || !e.ids || !e.t) {
        free(e.keys);
        free(e.ids);
        free(e.t);
        return BA_OK;
    }
    (void)err;
    memcpy(e.keys, r->keys, sizeof(int) * (size_t)m->nlayers);
    int k = 0;
    for (int v = 0; v < m->nvalues; v++)
        if (m->values[v].producer >= 0 && vals[v]) {
            e.ids[k] = v;
            e.t[k++] = ba_tensor_ref(vals[v]);
        }
    r->e[r->ne++] = e;
    r->bytes += bytes;
    r->st.saved++;
    evict(r, r->ne - 1);
    return BA_OK;
}

ba_status ba_eval_reuse_model_run(ba_eval_reuse_t *r, const int *keys, int save, ba_tensor_t *const *inputs,
                                  const ba_run_opts_t *base, int64_t start, int64_t count,
                                  ba_tensor_t **outputs, ba_error *err) {
    const ba_model_t *m = r->m;
    if (m->nguards > 0 || r->ncuts == 0) return ba_model_run(m, inputs, base, outputs, err);
    int best = -1;
    for (int k = 0; k < r->ne; k++)
        if (entry_holds(r, &r->e[k], keys, start, count) && (best < 0 || r->e[k].q > r->e[best].q)) best = k;
    ba_run_opts_t o = *base;
    int q0 = -1;
    if (best >= 0) {
        entry_t *e = &r->e[best];
        e->stamp = ++r->clock;
        q0 = e->q;
        for (int i = 0; i < e->nv; i++) r->resume[e->ids[i]] = e->t[i];
        o.start = r->cut_node[q0];
        o.resume = r->resume;
        r->st.hits++;
    }
    /* cuts after the resumed one: each becomes an entry for this run's keys */
    memset(r->cuts, 0, (size_t)m->nnodes);
    for (int q = q0 + 1; save && q < r->ncuts; q++) r->cuts[r->cut_node[q]] = 1;
    o.cuts = r->cuts;
    o.on_cut = save_cut;
    o.cut_ctx = r;
    r->keys = keys;
    r->start = start;
    r->count = count;
    /* the resumed entry may be evicted while this run saves: hold its tensors */
    ba_tensor_t **held = NULL;
    int nheld = 0;
    if (best >= 0) {
        entry_t *e = &r->e[best];
        held = ba_malloc(sizeof *held * (size_t)(e->nv + 1), err);
        if (!held) return BA_ERR_NOMEM;
        for (int i = 0; i < e->nv; i++) held[nheld++] = ba_tensor_ref(e->t[i]);
    }
    ba_status st = ba_model_run(m, inputs, &o, outputs, err);
    r->st.runs++;
    r->st.nodes_skipped += o.start;
    r->st.nodes_run += m->nnodes - o.start;
    for (int i = 0; i < nheld; i++) ba_tensor_unref(held[i]);
    free(held);
    memset(r->resume, 0, sizeof(ba_tensor_t *) * (size_t)m->nvalues);
    r->keys = NULL;
    return st;
}
