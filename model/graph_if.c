/* If nodes whose condition is known only at run time (SPEC §1): both
 * branches are expanded into the flat node list, each node tagged with its
 * branch's guard, and the If node becomes the merge of the two branches'
 * outputs (ba_guard_t). Branch-local names that are already taken are
 * renamed (onnx.c's scopes), so the two bodies and the outer graph coexist.
 * An If whose condition folds to a constant (at load, or once shapes are
 * known) is replaced by its chosen branch. The executor skips the nodes of
 * the branch not taken; gradients follow the taken one (grad_control.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/graph_internal.h"
#include "model/ops.h"
#include "onnx/onnx.pb-c.h"

static const char *const branch_attr[2] = {"else_branch", "then_branch"};

ba_status ba_graph_expand_if(ba_model_t *m, int idx, const ba_scope_t *scope, int depth, ba_error *err) {
    char name[512];
    snprintf(name, sizeof name, "%s", m->nodes[idx].name);
    const ba_node_t *n = &m->nodes[idx];
    if (n->nin < 1 || n->inputs[0] < 0)
        return ba_error_set(err, BA_ERR_INPUT, "%s: node '%s' (If): no condition input", m->path, name);
    const Onnx__GraphProto *g[2];
    for (int b = 1; b >= 0; b--) {
        const ba_attr_t *a = ba_node_attr(n, branch_attr[b]);
        if (!a || a->type != BA_ATTR_GRAPH || !a->graph)
            return ba_error_set(err, BA_ERR_INPUT, "%s: node '%s' (If): missing %s", m->path, name,
                                branch_attr[b]);
        g[b] = a->graph;
        if ((int64_t)g[b]->n_output != n->nout)
            return ba_error_set(err, BA_ERR_INPUT, "%s: node '%s' (If): %s has %zu outputs, the node has %d",
                                m->path, name, branch_attr[b], g[b]->n_output, n->nout);
    }
    const int nout = n->nout, cond = n->inputs[0], parent = n->guard;
    ba_guard_t *ng = ba_realloc(m->guards, sizeof(ba_guard_t) * (size_t)(m->nguards + 2), err);
    if (!ng) return err->code;
    m->guards = ng;
    const int g0 = m->nguards;
    for (int b = 0; b < 2; b++) {
        ba_guard_t *gd = &m->guards[g0 + b];
        gd->cond = cond;
        gd->branch = b == 0; /* g0: then, g0 + 1: else */
        gd->parent = parent;
        gd->node = ba_strdup(name, err);
        if (!gd->node) {
            if (b) free(m->guards[g0].node);
            return err->code;
        }
    }
    m->nguards += 2;
    int *ins = ba_calloc((size_t)(1 + 2 * nout) + 1, sizeof(int), err);
    if (!ins) return err->code;
    ins[0] = cond;
    ba_status st = BA_OK;
    for (int b = 0; b < 2 && st == BA_OK; b++) {
        const Onnx__GraphProto *body = g[b == 0 ? 1 : 0];
        ba_scope_t sc = {.parent = scope};
        st = ba_onnx_add_branch(m, body, &sc, g0 + b, depth, err);
        for (int j = 0; j < nout && st == BA_OK; j++) {
            const char *on = body->output[j]->name;
            if (!on || !on[0]) {
                st = ba_error_set(err, BA_ERR_INPUT, "%s: node '%s' (If): %s output %d has no name", m->path,
                                  name, branch_attr[b == 0], j);
                break;
            }
            int id = ba_graph_value(m, ba_scope_name(&sc, on), err);
            if (id < 0) st = err->code;
            ins[1 + b * nout + j] = id;
        }
        ba_scope_free(&sc);
    }
    if (st != BA_OK) {
        free(ins);
        return st;
    }
    ba_node_t *mn = &m->nodes[idx]; /* the node list may have moved */
    free(mn->inputs);
    mn->inputs = ins;
    mn->nin = 1 + 2 * nout;
    mn->if_guard = g0;
    return BA_OK;
}

ba_status ba_graph_expand_ifs(ba_model_t *m, ba_error *err) {
    const int n0 = m->nnodes; /* nodes added past n0 are branch nodes, expanded as they come */
    for (int i = 0; i < n0; i++) {
        const ba_node_t *n = &m->nodes[i];
        if (!strcmp(n->op_type, "If") && !n->domain[0] && n->if_guard < 0)
            BA_TRY(ba_graph_expand_if(m, i, NULL, 0, err));
    }
    return BA_OK;
}

int ba_graph_guard_deps(const ba_model_t *m, const ba_node_t *n, int *deps, int max) {
    int k = 0;
    for (int g = n->guard; g >= 0 && k < max; g = m->guards[g].parent) deps[k++] = m->guards[g].cond;
    return k;
}

/* Whether guard g is root or inside root's branch. */
static int in_subtree(const ba_model_t *m, int g, int root) {
    for (; g >= 0; g = m->guards[g].parent)
        if (g == root) return 1;
    return 0;
}

/* Appends Identity(src) -> dst under guard; returns its index or -1. */
static int add_identity(ba_model_t *m, const char *name, int src, int dst, int guard, ba_error *err) {
    int k = ba_graph_new_node(m, err);
    if (k < 0) return -1;
    ba_node_t *id = &m->nodes[k];
    id->name = ba_strdup(name, err);
    id->op_type = ba_strdup("Identity", err);
    id->domain = ba_strdup("", err);
    id->inputs = ba_calloc(1, sizeof(int), err);
    id->outputs = ba_calloc(1, sizeof(int), err);
    if (!id->name || !id->op_type || !id->domain || !id->inputs || !id->outputs) return -1;
    id->opset = (int)m->opset;
    ba_node_resolve(id);
    id->nin = id->nout = 1;
    id->inputs[0] = src;
    id->outputs[0] = dst;
    id->guard = guard;
    return k;
}

ba_status ba_graph_inline_ifs(ba_model_t *m, int *changed, ba_error *err) {
    ba_model_priv_t *pv = m->priv;
    *changed = 0;
    const int n0 = m->nnodes;
    int extra = 0;
    for (int i = 0; i < n0; i++)
        if (m->nodes[i].if_guard >= 0) extra += m->nodes[i].nout;
    if (!extra) return BA_OK;
    unsigned char *dead = ba_calloc((size_t)(n0 + extra) + 1, 1, err);
    if (!dead) return err->code;
    ba_status st = BA_OK;
    for (int i = 0; i < n0 && st == BA_OK; i++) {
        if (m->nodes[i].if_guard < 0 || dead[i]) continue;
        const ba_tensor_t *c = m->values[m->nodes[i].inputs[0]].constant;
        if (!c) continue;
        int truth;
        st = ba_if_truth(m->nodes[i].name, c, &truth, err);
        if (st != BA_OK) {
            ba_error_prefix(err, "%s", m->path);
            break;
        }
        const int nout = m->nodes[i].nout, up = m->nodes[i].guard;
        const int taken = m->nodes[i].if_guard + (truth ? 0 : 1),
                  other = m->nodes[i].if_guard + (truth ? 1 : 0);
        for (int k = 0; k < m->nnodes; k++) {
            if (in_subtree(m, m->nodes[k].guard, other))
                dead[k] = 1;
            else if (m->nodes[k].guard == taken)
                m->nodes[k].guard = up;
        }
        for (int q = 0; q < m->nguards; q++)
            if (m->guards[q].parent == taken) m->guards[q].parent = up;
        /* the other branch's constants (weights) are gone with it */
        for (int l = 0; l < pv->nlocals; l++) {
            int v = pv->locals[2 * l], g = pv->locals[2 * l + 1];
            if (in_subtree(m, g, other)) {
                ba_tensor_unref(m->values[v].constant);
                m->values[v].constant = NULL;
                m->values[v].is_initializer = 0;
                pv->nofold[v] = 0;
                pv->locals[2 * l + 1] = -1;
            } else if (g == taken) {
                pv->locals[2 * l + 1] = up;
            }
        }
        char nm[600];
        for (int j = 0; j < nout; j++) {
            const ba_node_t *n = &m->nodes[i];
            if (n->outputs[j] < 0) continue;
            snprintf(nm, sizeof nm, "%s/out%d", n->name, j);
            int src = n->inputs[1 + (truth ? 0 : nout) + j], dst = n->outputs[j];
            if (add_identity(m, nm, src, dst, up, err) < 0) {
                st = err->code;
                break;
            }
        }
        dead[i] = 1;
        (*changed)++;
    }
    if (st == BA_OK && *changed) ba_graph_compact(m, dead);
    free(dead);
    return st;
}

/* ---------------- unsupported ops ---------------- */

typedef struct {
    char list[BA_ERROR_MSG_MAX - 256];
    size_t o;
    int count;
} op_list;

/* Adds "item (node 'name')" unless item is listed already. */
static void list_add(op_list *l, const char *item, const char *node) {
    size_t L = strlen(item);
    for (const char *p = l->list; (p = strstr(p, item)) != NULL; p++)
        if ((p == l->list || (p >= l->list + 2 && p[-1] == ' ' && p[-2] == ',')) && p[L] == ' ' &&
            p[L + 1] == '(')
            return;
    if (l->o >= sizeof l->list - 1) return;
    l->count++;
    int w = snprintf(l->list + l->o, sizeof l->list - l->o, "%s%s (node '%s')", l->o ? ", " : "", item, node);
    if (w < 0 || (size_t)w >= sizeof l->list - l->o)
        l->o = sizeof l->list - 1;
    else
        l->o += (size_t)w;
}

static void op_item(const char *domain, const char *op, char *item, size_t cap) {
    int other = domain && domain[0] && strcmp(domain, "ai.onnx") != 0;
    snprintf(item, cap, "%s%s%s", other ? domain : "", other ? "::" : "", op);
}

/* Ops of a body that is never expanded (Loop/Scan), recursively. */
static void walk_body(const Onnx__GraphProto *g, op_list *l, int depth) {
    if (!g || depth > 64) return;
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *np = g->node[i];
        const char *op = np->op_type ? np->op_type : "";
        char item[256], nm[256];
        if (!ba_op_lookup(op, np->domain)) {
            op_item(np->domain, op, item, sizeof item);
            snprintf(nm, sizeof nm, "%s", np->name && np->name[0] ? np->name : op);
            list_add(l, item, nm);
        }
        for (size_t a = 0; a < np->n_attribute; a++) {
            walk_body(np->attribute[a]->g, l, depth + 1);
            for (size_t k = 0; k < np->attribute[a]->n_graphs; k++)
                walk_body(np->attribute[a]->graphs[k], l, depth + 1);
        }
    }
}

ba_status ba_graph_check_supported(const ba_model_t *m, ba_error *err) {
    op_list *l = ba_calloc(1, sizeof *l, err);
    if (!l) return err->code;
    for (int i = 0; i < m->nnodes; i++) {
        const ba_node_t *n = &m->nodes[i];
        if (n->def && (strcmp(n->op_type, "If") || n->domain[0] || n->if_guard >= 0)) continue;
        char item[256];
        op_item(n->domain, n->op_type, item, sizeof item);
        list_add(l, item, n->name);
        for (int a = 0; a < n->nattr; a++)
            if (n->attrs[a].type == BA_ATTR_GRAPH) walk_body(n->attrs[a].graph, l, 1);
    }
    ba_status st = BA_OK;
    if (l->count)
        st = ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: unsupported op%s: %s", m->path,
                          l->count > 1 ? "s" : "", l->list);
    free(l);
    return st;
}
