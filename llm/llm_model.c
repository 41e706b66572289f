#include "llm/llm_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/ggml_types.h"
#include "llm/hf_convert.h"

void ba_llm_model_free(ba_llm_model_t *m) {
    if (!m) return;
    ba_gguf_free(m->gguf);
    ba_safetensors_free(m->st);
    free(m->t);
    free(m);
}

ba_status ba_llm_model_open(const char *path, ba_llm_model_t **out, ba_error *err) {
    *out = NULL;
    ba_llm_model_t *m = ba_calloc(1, sizeof *m, err);
    if (!m) return err->code;
    ba_status st;
    if (ba_hf_is_gguf(path)) {
        m->format = "gguf";
        if ((st = ba_gguf_open(path, &m->gguf, err)) != BA_OK) goto fail;
        m->n = m->gguf->n_tensors;
    } else {
        m->format = "safetensors";
        if ((st = ba_safetensors_open(path, &m->st, err)) != BA_OK) goto fail;
        m->n = m->st->n;
    }
    m->t = ba_calloc((size_t)(m->n ? m->n : 1), sizeof *m->t, err);
    if (!m->t) {
        st = err->code;
        goto fail;
    }
    for (int i = 0; i < m->n; i++) {
        ba_llm_tensor_t *t = &m->t[i];
        for (int d = 0; d < BA_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        if (m->gguf) {
            const ba_gguf_tensor_t *g = &m->gguf->tensors[i];
            snprintf(t->name, sizeof t->name, "%s", g->name);
            t->source_name = g->name;
            t->type = ba_ggml_type_by_id(g->type)->name;
            t->n_dims = g->n_dims;
            memcpy(t->ne, g->ne, sizeof t->ne);
            t->nbytes = g->nbytes;
        } else {
            const ba_st_tensor_t *s = &m->st->t[i];
            if (ba_hf_to_gguf_name(s->name, t->name, sizeof t->name) != 0) t->name[0] = 0;
            t->source_name = s->name;
            t->type = ba_st_dtype_name(s->dtype);
            t->n_dims = s->n_dims;
            if (s->n_dims > BA_GGUF_MAX_DIMS) {
                st = ba_error_set(err, BA_ERR_UNSUPPORTED,
                                  "%s: tensor '%s': %d dimensions (GGUF holds at most 4)", path, s->name,
                                  s->n_dims);
                goto fail;
            }
            for (int d = 0; d < s->n_dims; d++) t->ne[d] = s->shape[s->n_dims - 1 - d];
            t->nbytes = s->nbytes;
        }
        t->n_weights = 1;
        for (int d = 0; d < t->n_dims; d++)
            t->n_weights *= (uint64_t)t->ne[d]; /* bounded by nbytes' checks */
        t->quantizable = t->name[0] && ba_ggml_tensor_quantizable(t->name, t->n_dims);
    }
    *out = m;
    return BA_OK;
fail:
    ba_llm_model_free(m);
    return st;
}
