/* The op table (model/ops.h, ops_table.c): one row per ba_op_id with a
 * forward, and a backward / HVP rule exactly where its flags and rule kind
 * say; nodes resolved to their row at load. And the layers' uses
 * (ba_layer_use_t) the loader records once for act, lrp and quant/apply. */
#include <criterion/criterion.h>
#include <string.h>

#include "model/ops.h"
#include "tests/helpers.h"

#define CASES BA_FIXTURES "/onnx_cases/"

Test(op_table, every_op_id_has_its_row_and_a_forward) {
    cr_assert_null(ba_op_defs[BA_OP_UNKNOWN].name, "row 0 is BA_OP_UNKNOWN's, empty");
    for (int i = 1; i < BA_OP_COUNT; i++) {
        const ba_op_def_t *d = &ba_op_defs[i];
        cr_assert_not_null(d->name, "op id %d has no row", i);
        cr_expect_eq((int)d->id, i, "%s: row %d says id %d", d->name, i, (int)d->id);
        cr_expect_not_null(d->forward, "%s: no forward", d->name);
        cr_expect_eq(ba_op_lookup(d->name, ""), d, "%s: lookup finds another row", d->name);
        cr_expect_eq(ba_op_lookup(d->name, "ai.onnx"), d, "%s: ai.onnx is the default domain", d->name);
        cr_expect_null(ba_op_lookup(d->name, "com.microsoft"), "%s: another domain has no kernel", d->name);
        for (int j = 1; j < i; j++) cr_expect_str_neq(ba_op_defs[j].name, d->name, "%s: two rows", d->name);
    }
    cr_expect_null(ba_op_lookup("IsInf", ""), "no forward for IsInf: no row");
    cr_expect_null(ba_op_lookup("EyeLike", ""), "no forward for EyeLike: no row");
    cr_expect_null(ba_op_lookup("Loop", ""));
}

Test(op_table, backward_exactly_where_the_flags_say) {
    for (int i = 1; i < BA_OP_COUNT; i++) {
        const ba_op_def_t *d = &ba_op_defs[i];
        const unsigned none = d->flags & (BA_OPF_NOGRAD | BA_OPF_NO_BACKWARD);
        cr_expect_neq(none, BA_OPF_NOGRAD | BA_OPF_NO_BACKWARD, "%s: both NOGRAD and NO_BACKWARD", d->name);
        cr_expect_eq(d->backward != NULL, !none, "%s: backward %s, flags %#x", d->name,
                     d->backward ? "set" : "missing", d->flags);
        /* ops the gradient estimators and the weight chains go through must be differentiable */
        if (d->flags & (BA_OPF_WEIGHT | BA_OPF_CHAIN | BA_OPF_ACTIVATION | BA_OPF_LAYOUT | BA_OPF_CONTROL))
            cr_expect_not_null(d->backward, "%s: flags %#x need a backward", d->name, d->flags);
        if (d->flags & BA_OPF_RECURRENT)
            cr_expect(d->flags & BA_OPF_WEIGHT, "%s: recurrent ops hold weights", d->name);
        if (d->flags & BA_OPF_PIECEWISE)
            cr_expect_eq(d->hvp, BA_HVP_UNARY, "%s: piecewise-linear is unary", d->name);
    }
}

Test(op_table, hvp_rule_exactly_where_the_kind_says) {
    for (int i = 1; i < BA_OP_COUNT; i++) {
        const ba_op_def_t *d = &ba_op_defs[i];
        if (d->hvp != BA_HVP_FD)
            cr_expect_not_null(d->backward, "%s: an HVP rule without a backward", d->name);
        cr_expect_eq(d->hvp == BA_HVP_OWN, d->tangent != NULL, "%s: own tangent iff BA_HVP_OWN", d->name);
        cr_expect_eq(d->hvp == BA_HVP_OWN, d->second != NULL, "%s: own second iff BA_HVP_OWN", d->name);
        cr_expect_eq(d->hvp != BA_HVP_FD && d->hvp != BA_HVP_OWN, d->hvp_mask != 0,
                     "%s: an input mask iff a generic rule (kind %d, mask %#x)", d->name, (int)d->hvp,
                     d->hvp_mask);
    }
    /* the generic rules as the HVP tests measured them */
    cr_expect_eq(ba_op_defs[BA_OP_CONV].hvp, BA_HVP_BILINEAR);
    cr_expect_eq(ba_op_defs[BA_OP_RELU].hvp, BA_HVP_UNARY);
    cr_expect_eq(ba_op_defs[BA_OP_MAX_POOL].hvp, BA_HVP_SELECT);
    cr_expect_eq(ba_op_defs[BA_OP_LAYER_NORMALIZATION].hvp, BA_HVP_FD);
    cr_expect_eq(ba_op_defs[BA_OP_LSTM].hvp, BA_HVP_OWN);
}

static ba_model_t *load(const char *path, int emb) {
    ba_error err = {0};
    ba_model_t *m = NULL;
    ba_load_opts_t o = {.include_embeddings = emb};
    cr_assert_eq(ba_model_load(path, &o, &m, &err), BA_OK, "%s: %s", path, err.msg);
    return m;
}

/* Every node resolved to its row; every layer use leads back to its constant. */
static void check_model(const ba_model_t *m) {
    for (int i = 0; i < m->nnodes; i++) {
        const ba_node_t *n = &m->nodes[i];
        cr_assert_not_null(n->def, "%s: node %s (%s) unresolved", m->path, n->name, n->op_type);
        cr_expect_eq(n->def, ba_op_lookup(n->op_type, n->domain), "%s: node %s", m->path, n->name);
        cr_expect_eq(n->op, (int)n->def->id, "%s: node %s", m->path, n->name);
    }
    for (int l = 0; l < m->nlayers; l++) {
        const ba_layer_t *L = &m->layers[l];
        cr_assert_gt(L->nuses, 0, "%s: layer %s has no use", m->path, L->name);
        int found_at = 0;
        for (int k = 0; k < L->nuses; k++) {
            const ba_layer_use_t *u = &L->uses[k];
            const ba_node_t *n = &m->nodes[u->node];
            cr_assert(ba_node_flags(n) & BA_OPF_WEIGHT, "%s: %s consumed by %s", m->path, L->name,
                      n->op_type);
            if (k > 0) cr_expect_gt(u->node, L->uses[k - 1].node, "%s: uses in node order", L->name);
            found_at |= u->node == L->node;
            int id = n->inputs[u->widx];
            for (int c = 0; c < u->nchain; c++) {
                cr_assert_eq(m->values[id].producer, u->chain[c], "%s: chain step %d", L->name, c);
                cr_assert(ba_node_flags(&m->nodes[u->chain[c]]) & BA_OPF_CHAIN);
                id = m->nodes[u->chain[c]].inputs[0];
            }
            cr_expect_eq(id, L->value, "%s: use %d does not lead back to the constant", L->name, k);
            if (u->didx >= 0)
                cr_expect_eq(u->data, n->inputs[u->didx], "%s: data input", L->name);
            else
                cr_expect_eq(u->data, -1);
        }
        cr_expect(found_at, "%s: the node it was found at is one of its uses", L->name);
    }
}

Test(layer_uses, conv_gemm_each_weight_once_with_its_data_input) {
    ba_model_t *m = load(CASES "conv_gemm.onnx", 0);
    check_model(m);
    for (int l = 0; l < m->nlayers; l++) {
        const ba_layer_t *L = &m->layers[l];
        cr_assert_eq(L->nuses, 1, "%s", L->name);
        cr_expect_eq(L->uses[0].node, L->node);
        cr_expect_eq(L->uses[0].widx, 1);
        cr_expect_eq(L->uses[0].didx, 0);
        cr_expect_eq(L->uses[0].nchain, 0);
        cr_expect_null(m->values[L->uses[0].data].constant, "%s: the data input is an activation", L->name);
    }
    ba_model_free(m);
}

Test(layer_uses, reshape_chain_recorded_from_the_consumer_back) {
    ba_model_t *m = load(CASES "reshape_weight.onnx", 0);
    check_model(m);
    cr_assert_eq(m->nlayers, 1);
    const ba_layer_use_t *u = &m->layers[0].uses[0];
    cr_assert_eq(m->layers[0].nuses, 1);
    cr_expect_eq(u->nchain, 1);
    cr_expect_eq(m->nodes[u->chain[0]].op, BA_OP_RESHAPE);
    cr_expect_eq(u->didx, 1 - u->widx);
    ba_model_free(m);
}

Test(layer_uses, embeddings_gather_use_takes_the_indices) {
    ba_model_t *b = load(BA_FIXTURES "/zoo/gpt_dyn.onnx", 1);
    check_model(b);
    int found = 0;
    for (int l = 0; l < b->nlayers; l++)
        for (int k = 0; k < b->layers[l].nuses; k++) {
            const ba_layer_use_t *u = &b->layers[l].uses[k];
            if (b->nodes[u->node].op != BA_OP_GATHER) continue;
            found = 1;
            cr_expect_eq(u->widx, 0);
            cr_expect_eq(u->didx, 1);
        }
    cr_expect(found);
    ba_model_free(b);
    const char *files[] = {BA_FIXTURES "/zoo/gpt_dyn.onnx", BA_FIXTURES "/digits/cnn.onnx",
                           BA_FIXTURES "/digits/mlp_dyn.onnx", BA_FIXTURES "/zoo/mobilenetv2.onnx"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        ba_model_t *m = load(files[i], 0);
        check_model(m);
        ba_model_free(m);
    }
}

Test(layer_uses, lstm_w_takes_x_and_r_has_no_data_input) {
    ba_model_t *m = load(BA_FIXTURES "/rnn/lstm_clf_dyn.onnx", 0);
    check_model(m);
    int w = 0, r = 0;
    for (int l = 0; l < m->nlayers; l++)
        for (int k = 0; k < m->layers[l].nuses; k++) {
            const ba_layer_use_t *u = &m->layers[l].uses[k];
            const ba_node_t *n = &m->nodes[u->node];
            if (!(ba_node_flags(n) & BA_OPF_RECURRENT)) continue;
            if (u->widx == 1) {
                w++;
                cr_expect_eq(u->didx, 0);
                cr_expect_eq(u->data, n->inputs[0]);
            } else {
                r++;
                cr_expect_eq(u->widx, 2);
                cr_expect_eq(u->didx, -1);
                cr_expect_eq(u->data, -1);
            }
        }
    cr_expect_gt(w, 0);
    cr_expect_eq(w, r);
    ba_model_free(m);
}
