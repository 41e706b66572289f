/* A hand-built three-layer model (no ONNX loader) for the quant/, cost and
 * plan tests: conv1.weight [8,3,3,3] (Conv, axis 0), fc.weight [10,21]
 * (Gemm transB=1, axis 0), mm.weight [20,6] (MatMul, axis 1), 100 bytes of
 * other initializers. Weights are seeded normals. */
#ifndef BA_TESTS_QUANT_MODEL_H
#define BA_TESTS_QUANT_MODEL_H

#include <stdlib.h>
#include <string.h>

#include "tests/helpers.h"

#define QM_NLAYERS 3
#define QM_OTHER_BYTES 100
#define QM_SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char *qm_dup(const char *s) {
    char *d = malloc(strlen(s) + 1);
    strcpy(d, s);
    return d;
}

static ba_model_t *qm_new(void) {
    static const char *names[QM_NLAYERS] = {"conv1.weight", "fc.weight", "mm.weight"};
    static const char *nodes[QM_NLAYERS] = {"Conv_0", "Gemm_1", "MatMul_2"};
    static const char *ops[QM_NLAYERS] = {"Conv", "Gemm", "MatMul"};
    static const int ndims[QM_NLAYERS] = {4, 2, 2};
    static const int64_t shapes[QM_NLAYERS][4] = {{8, 3, 3, 3}, {10, 21}, {20, 6}};
    static const int axes[QM_NLAYERS] = {0, 0, 1};
    static const int64_t macs[QM_NLAYERS] = {216 * 32 * 32, 210, 120 * 5};
    ba_error err;
    ba_model_t *m = calloc(1, sizeof *m);
    m->path = qm_dup("net.onnx");
    strcpy(m->sha256, QM_SHA);
    m->nvalues = QM_NLAYERS + 1; /* value 0: the graph input */
    m->values = calloc((size_t)m->nvalues, sizeof *m->values);
    m->values[0].name = qm_dup("x");
    m->values[0].is_graph_input = 1;
    m->nnodes = QM_NLAYERS;
    m->nodes = calloc(QM_NLAYERS, sizeof *m->nodes);
    m->nlayers = QM_NLAYERS;
    m->layers = calloc(QM_NLAYERS, sizeof *m->layers);
    m->other_init_bytes = QM_OTHER_BYTES;
    ba_rng_t rng;
    ba_rng_seed(&rng, 99);
    for (int i = 0; i < QM_NLAYERS; i++) {
        ba_value_t *v = &m->values[i + 1];
        v->name = qm_dup(names[i]);
        v->dtype = BA_DT_F32;
        v->ndim = ndims[i];
        memcpy(v->shape, shapes[i], sizeof shapes[i]);
        v->constant = ba_tensor_new(BA_DT_F32, ndims[i], shapes[i], &err);
        for (int64_t k = 0; k < v->constant->numel; k++)
            ((float *)v->constant->data)[k] = (float)(ba_rng_normal(&rng) * 0.1);
        v->producer = -1;
        v->is_initializer = 1;
        m->nodes[i].name = qm_dup(nodes[i]);
        m->nodes[i].op_type = qm_dup(ops[i]);
        m->nodes[i].domain = qm_dup("");
        ba_layer_t *l = &m->layers[i];
        l->name = qm_dup(names[i]);
        l->value = i + 1;
        l->node = i;
        l->op = m->nodes[i].op_type;
        l->ndim = ndims[i];
        memcpy(l->shape, shapes[i], sizeof shapes[i]);
        l->ch_axis = axes[i];
        l->params = v->constant->numel;
        l->macs = macs[i];
    }
    return m;
}

static void qm_free(ba_model_t *m) {
    for (int i = 0; i < m->nvalues; i++) {
        free(m->values[i].name);
        ba_tensor_unref(m->values[i].constant);
    }
    for (int i = 0; i < m->nnodes; i++) {
        free(m->nodes[i].name);
        free(m->nodes[i].op_type);
        free(m->nodes[i].domain);
    }
    for (int i = 0; i < m->nlayers; i++) free(m->layers[i].name);
    free(m->values);
    free(m->nodes);
    free(m->layers);
    free(m->path);
    free(m);
}

#endif
