/* The forward executor: walks the nodes in topological order, calls each
 * kernel, and frees an intermediate tensor right after its last consumer
 * (use counts computed per run), so peak memory is the live set, not the sum. */
#include <stdlib.h>
#include <string.h>

#include "model/fuse.h"
#include "model/graph_internal.h"
#include "model/ops.h"

/* Checks one graph input against the model's declaration; casts float64 data
 * to float32 when the model wants float32. *use gets a new ref. */
static ba_status check_input(const ba_model_t *m, const ba_value_t *v, ba_tensor_t *t, ba_tensor_t **use,
                             ba_error *err) {
    char a[128], b[128];
    *use = NULL;
    if (!t) return ba_error_set(err, BA_ERR_INPUT, "%s: input '%s': no data given", m->path, v->name);
    if (v->ndim >= 0 && t->ndim != v->ndim)
        return ba_error_set(err, BA_ERR_INPUT, "%s: input '%s': data has rank %d %s, model wants rank %d %s",
                            m->path, v->name, t->ndim, ba_shape_str(t->ndim, t->shape, a, sizeof a), v->ndim,
                            ba_shape_str(v->ndim, v->shape, b, sizeof b));
    for (int d = 0; v->ndim >= 0 && d < v->ndim; d++)
        if (v->shape[d] >= 0 && v->shape[d] != t->shape[d])
            return ba_error_set(err, BA_ERR_INPUT,
                                "%s: input '%s': data shape %s does not match the model's %s (dim %d)",
                                m->path, v->name, ba_shape_str(t->ndim, t->shape, a, sizeof a),
                                ba_shape_str(v->ndim, v->shape, b, sizeof b), d);
    if (v->dtype != BA_DT_UNDEFINED && t->dtype != v->dtype) {
        if (v->dtype == BA_DT_F32 && t->dtype == BA_DT_F64) {
            *use = ba_tensor_cast(t, BA_DT_F32, err);
            return *use ? BA_OK : err->code;
        }
        return ba_error_set(err, BA_ERR_INPUT, "%s: input '%s': data is %s, model wants %s", m->path, v->name,
                            ba_dtype_name(t->dtype), ba_dtype_name(v->dtype));
    }
    *use = ba_tensor_ref(t);
    return BA_OK;
}

/* Guard states while running (per guard id). */
enum { G_UNKNOWN = 0, G_HOLDS = 1, G_FAILS = 2 };

/* Whether the nodes of guard g run: its parent holds, its condition was
 * computed (a condition made inside a branch not taken never is) and picks
 * its branch. gs caches each guard's state for this run. */
static ba_status guard_holds(const ba_model_t *m, int g, unsigned char *gs, ba_tensor_t *const *vals,
                             int *holds, ba_error *err) {
    if (gs[g] == G_UNKNOWN) {
        const ba_guard_t *gd = &m->guards[g];
        int up = 1;
        if (gd->parent >= 0) BA_TRY(guard_holds(m, gd->parent, gs, vals, &up, err));
        int t = 0;
        if (up && vals[gd->cond]) {
            ba_status st = ba_if_truth(gd->node, vals[gd->cond], &t, err);
            if (st != BA_OK) return ba_error_prefix(err, "%s", m->path);
            t = t == gd->branch;
        }
        gs[g] = up && t ? G_HOLDS : G_FAILS;
    }
    *holds = gs[g] == G_HOLDS;
    return BA_OK;
}

/* Drops one use of every input of node n and of its guards' conditions
 * (values are freed after their last use). */
static void release(const ba_model_t *m, const ba_node_t *n, int *uses, ba_tensor_t **vals) {
    for (int j = 0; j < n->nin; j++) {
        int id = n->inputs[j];
        if (id >= 0 && --uses[id] == 0) {
            ba_tensor_unref(vals[id]);
            vals[id] = NULL;
        }
    }
    for (int g = n->guard; g >= 0; g = m->guards[g].parent) {
        int id = m->guards[g].cond;
        if (--uses[id] == 0) {
            ba_tensor_unref(vals[id]);
            vals[id] = NULL;
        }
    }
}

ba_status ba_exec_run(const ba_model_t *m, ba_tensor_t *const *inputs, const ba_run_opts_t *opts,
                      ba_tensor_t **outputs, ba_error *err) {
    static const ba_run_opts_t no_opts;
    if (!opts) opts = &no_opts;
    ba_malloc_keep_freed(); /* kernels' workspaces and small activations come and go on every pass */
    for (int k = 0; k < m->noutputs; k++) outputs[k] = NULL;
    int nv = m->nvalues;
    ba_tensor_t **vals = ba_calloc((size_t)nv + 1, sizeof(ba_tensor_t *), err);
    int *uses = ba_calloc((size_t)nv + 1, sizeof(int), err);
    int maxio = 1;
    for (int i = 0; i < m->nnodes; i++) {
        if (m->nodes[i].nin > maxio) maxio = m->nodes[i].nin;
        if (m->nodes[i].nout > maxio) maxio = m->nodes[i].nout;
    }
    ba_tensor_t **in = ba_calloc((size_t)maxio, sizeof(ba_tensor_t *), err);
    ba_tensor_t **out = ba_calloc((size_t)maxio, sizeof(ba_tensor_t *), err);
    unsigned char *gs = ba_calloc((size_t)m->nguards + 1, 1, err);
    ba_fuse_plan_t *fp = NULL;
    int fused_out = -1;
    ba_status st = BA_OK;
    if (!vals || !uses || !in || !out || !gs) {
        st = err->code;
        goto done;
    }
    const int start = opts->start > 0 ? opts->start : 0;
    if (start > 0 && (m->nguards > 0 || start > m->nnodes || !opts->resume)) {
        st = ba_error_set(err, BA_ERR_RUNTIME,
                          "%s: a run resumed at node %d needs its values and no run-time If", m->path, start);
        goto done;
    }
    /* Use counts: one per consuming input slot; graph outputs are held to the end. */
    for (int i = start; i < m->nnodes; i++) {
        for (int j = 0; j < m->nodes[i].nin; j++)
            if (m->nodes[i].inputs[j] >= 0) uses[m->nodes[i].inputs[j]]++;
        for (int g = m->nodes[i].guard; g >= 0; g = m->guards[g].parent) uses[m->guards[g].cond]++;
    }
    for (int k = 0; k < m->noutputs; k++) uses[m->outputs[k]]++;
    /* Constants (or their overrides) and graph inputs. */
    for (int v = 0; v < nv; v++) {
        if (!m->values[v].constant) continue;
        ba_tensor_t *c = opts->overrides && opts->overrides[v] ? opts->overrides[v] : m->values[v].constant;
        vals[v] = ba_tensor_ref(c);
    }
    for (int k = 0; k < m->ninputs; k++) {
        int v = m->inputs[k];
        ba_tensor_unref(vals[v]);
        vals[v] = NULL;
        st = check_input(m, &m->values[v], inputs ? inputs[k] : NULL, &vals[v], err);
        if (st != BA_OK) goto done;
    }
    for (int v = 0; start > 0 && v < nv; v++)
        if (m->values[v].producer >= 0 && m->values[v].producer < start && uses[v] > 0) {
            if (!opts->resume[v]) {
                st = ba_error_set(err, BA_ERR_RUNTIME, "%s: resumed at node %d without value '%s'", m->path,
                                  start, m->values[v].name);
                goto done;
            }
            vals[v] = ba_tensor_ref(opts->resume[v]);
        }
    st = ba_fuse_plan_new(m, opts, vals, uses, &fp, err);
    if (st != BA_OK) goto done;
    for (int i = start; i < m->nnodes; i++) {
        const ba_node_t *n = &m->nodes[i];
        const int role = ba_fuse_role(fp, i);
        if (opts->cuts && opts->cuts[i] && opts->on_cut) {
            st = opts->on_cut(opts->cut_ctx, m, i, vals, err);
            if (st != BA_OK) goto done;
        }
        if (role == BA_FUSE_ABSORBED) continue; /* ran with its anchor */
        if (!n->def || !n->def->forward) {
            st = ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: node '%s': op %s has no kernel", m->path, n->name,
                              n->op_type);
            goto done;
        }
        int run = 1;
        if (n->guard >= 0) {
            st = guard_holds(m, n->guard, gs, vals, &run, err);
            if (st != BA_OK) goto done;
        }
        /* shape inference runs the branch not taken too, where its inputs are there */
        int speculative = !run && opts->all_branches;
        if (speculative) {
            run = 1;
            for (int j = 0; j < n->nin; j++)
                if (n->inputs[j] >= 0 && !vals[n->inputs[j]]) run = 0;
        }
        if (!run) {
            release(m, n, uses, vals);
            continue;
        }
        for (int j = 0; j < n->nin; j++) {
            int id = n->inputs[j];
            in[j] = id >= 0 ? vals[id] : NULL;
            /* a merge's slots of the branch not taken stay empty */
            if (id >= 0 && !in[j] && !(n->if_guard >= 0 && j > 0)) {
                st = ba_error_set(err, BA_ERR_RUNTIME, "%s: node '%s' (%s): input '%s' has no value", m->path,
                                  n->name, n->op_type, m->values[id].name);
                goto done;
            }
        }
        for (int j = 0; j < n->nout; j++) out[j] = NULL;
        if (role == BA_FUSE_ANCHOR) ba_fuse_tile_arm(fp, m, i, vals); /* the kernel may apply the epilogue */
        st = n->def->forward(n, in, n->nin, out, n->nout, err);
        if (st != BA_OK) {
            ba_fuse_tile_disarm();
            for (int j = 0; j < n->nout; j++) ba_tensor_unref(out[j]);
            if (speculative) { /* that branch would fail if taken: it is not */
                st = BA_OK;
                release(m, n, uses, vals);
                continue;
            }
            /* a kernel's own messages name the node; an allocation's does not */
            if (!strstr(err->msg, n->name)) {
                if (n->guard >= 0)
                    ba_error_prefix(err, "node '%s' (%s)", n->name, n->op_type);
                else
                    ba_error_prefix(err, "%s: node '%s' (%s)", m->path, n->name, n->op_type);
            }
            if (n->guard >= 0) {
                const ba_guard_t *gd = &m->guards[n->guard];
                ba_error_prefix(err, "%s: node '%s' (If), %s", m->path, gd->node,
                                gd->branch ? "then_branch" : "else_branch");
            }
            goto done;
        }
        if (role == BA_FUSE_ANCHOR) { /* the region's elementwise nodes on the anchor's output */
            int fid = -1;
            st = ba_fuse_region_run(fp, m, i, vals, &out[0], &fid, err);
            if (st != BA_OK) goto done;
            fused_out = fid;
        }
        for (int j = 0; j < n->nout; j++) {
            int id = j == 0 && role == BA_FUSE_ANCHOR ? fused_out : n->outputs[j];
            if (id < 0) {
                ba_tensor_unref(out[j]);
                continue;
            }
            if (!out[j]) {
                st = ba_error_set(err, BA_ERR_RUNTIME, "%s: node '%s' (%s): kernel left output %d unset",
                                  m->path, n->name, n->op_type, j);
                for (int q = j + 1; q < n->nout; q++) ba_tensor_unref(out[q]);
                goto done;
            }
            ba_tensor_t *t = out[j];
            if (opts->on_value) {
                st = opts->on_value(opts->ctx, m, id, &t, err);
                if (st != BA_OK) {
                    ba_tensor_unref(t);
                    for (int q = j + 1; q < n->nout; q++) ba_tensor_unref(out[q]);
                    goto done;
                }
            }
            if (opts->keep) {
                ba_tensor_unref(opts->keep[id]);
                opts->keep[id] = ba_tensor_ref(t);
            }
            ba_tensor_unref(vals[id]);
            vals[id] = t;
            if (uses[id] == 0) { /* nobody reads it */
                ba_tensor_unref(vals[id]);
                vals[id] = NULL;
            }
        }
        release(m, n, uses, vals);
        const int *mem = NULL;
        for (int k = ba_fuse_members(fp, i, &mem) - 1; k >= 0; k--) release(m, &m->nodes[mem[k]], uses, vals);
    }
    for (int k = 0; k < m->noutputs; k++) {
        outputs[k] = ba_tensor_ref(vals[m->outputs[k]]);
        if (!outputs[k]) {
            st = ba_error_set(err, BA_ERR_RUNTIME, "%s: graph output '%s' was not computed", m->path,
                              m->values[m->outputs[k]].name);
            goto done;
        }
    }
done:
    if (st != BA_OK)
        for (int k = 0; k < m->noutputs; k++) {
            ba_tensor_unref(outputs[k]);
            outputs[k] = NULL;
        }
    for (int v = 0; vals && v < nv; v++) ba_tensor_unref(vals[v]);
    free(vals);
    free(uses);
    free(in);
    free(out);
    free(gs);
    ba_fuse_plan_free(fp);
    return st;
}

ba_status ba_model_run(const ba_model_t *m, ba_tensor_t *const *inputs, const ba_run_opts_t *opts,
                       ba_tensor_t **outputs, ba_error *err) {
    return ba_exec_run(m, inputs, opts, outputs, err);
}
