#include "llm/variants.h"

#include <stdlib.h>
#include <string.h>

#include "core/ggml_types.h"

typedef struct {
    int type;
    void *data;
    uint64_t nbytes;
    double error;
} variant_t;

typedef struct {
    int n;
    variant_t v[BA_LLM_MAX_TYPES * 2];
} tensor_variants_t;

struct ba_llm_variants {
    const ba_llama_t *ll;
    const ba_gguf_t *g;
    const ba_imatrix_t *im;
    tensor_variants_t *t; /* [g->n_tensors] */
    int64_t nquantized;
};

ba_status ba_llm_variants_new(const ba_llama_t *ll, const ba_gguf_t *g, const ba_imatrix_t *im,
                              ba_llm_variants_t **out, ba_error *err) {
    *out = NULL;
    ba_llm_variants_t *v = ba_calloc(1, sizeof *v, err);
    if (!v) return err->code;
    v->t = ba_calloc((size_t)(g->n_tensors ? g->n_tensors : 1), sizeof *v->t, err);
    if (!v->t) {
        free(v);
        return err->code;
    }
    v->ll = ll;
    v->g = g;
    v->im = im;
    *out = v;
    return BA_OK;
}

void ba_llm_variants_free(ba_llm_variants_t *v) {
    if (!v) return;
    for (int i = 0; i < v->g->n_tensors; i++)
        for (int k = 0; k < v->t[i].n; k++) free(v->t[i].v[k].data);
    free(v->t);
    free(v);
}

int64_t ba_llm_variants_quantized(const ba_llm_variants_t *v) {
    return v->nquantized;
}

const float *ba_llm_variants_imatrix(const ba_llm_variants_t *v, int tensor) {
    if (!v->im) return NULL;
    const ba_gguf_tensor_t *t = &v->g->tensors[tensor];
    const ba_imatrix_entry_t *e = ba_imatrix_find(v->im, t->name);
    int64_t n_mat = t->n_dims > 2 ? t->ne[2] : 1;
    if (!e || e->ne0 != t->ne[0] || e->n_mat != n_mat) return NULL;
    return e->mean;
}

int ba_llm_variants_candidates(const ba_llm_variants_t *v, int tensor, const int *types, int ntypes,
                               int *out) {
    const ba_gguf_tensor_t *t = &v->g->tensors[tensor];
    if (!ba_ggml_tensor_quantizable(t->name, t->n_dims) || t->n_dims > 3) return 0;
    const float *row = ba_llm_variants_imatrix(v, tensor);
    int all[64];
    int na = ba_ggml_candidates(t->name, t->ne[0], row != NULL, all, 64);
    if (na > 64) na = 64;
    int n = 0;
    for (int i = 0; i < ntypes; i++) {
        int ok = 0;
        for (int k = 0; k < na; k++) ok |= all[k] == types[i];
        if (ok && !row && ba_llama_needs_imatrix(v->ll, types[i])) ok = 0;
        if (ok) out[n++] = types[i];
    }
    return n;
}

static ba_status quantize(ba_llm_variants_t *v, int tensor, int type, variant_t *out, ba_error *err) {
    const ba_gguf_tensor_t *t = &v->g->tensors[tensor];
    const ba_ggml_type_t *ty = ba_ggml_type_by_id(type);
    uint64_t nbytes;
    BA_TRY(ba_ggml_type_nbytes(ty, t->n_dims, t->ne, &nbytes, err));
    int64_t ne0 = t->ne[0], rows_per_mat = t->ne[1] * (t->n_dims > 3 ? t->ne[3] : 1);
    int64_t n_mat = t->n_dims > 2 ? t->ne[2] : 1;
    int64_t n = ne0 * rows_per_mat * n_mat;
    const float *imx = ba_llm_variants_imatrix(v, tensor);
    const ba_imatrix_entry_t *ie = v->im ? ba_imatrix_find(v->im, t->name) : NULL;
    if (ie && !imx && strcmp(t->name, "token_embd.weight") != 0)
        /* llama_model_quantize refuses it too ("imatrix size … is different from tensor size"). */
        return ba_error_set(
            err, BA_ERR_INPUT, "imatrix entry '%s' has %lld x %lld values, the tensor needs %lld x %lld",
            t->name, (long long)ie->n_mat, (long long)ie->ne0, (long long)n_mat, (long long)ne0);
    float *x = ba_malloc((size_t)n * sizeof *x, err);
    float *y = x ? ba_malloc((size_t)n * sizeof *y, err) : NULL;
    void *q = y ? ba_malloc(nbytes ? (size_t)nbytes : 1, err) : NULL;
    ba_status st = q ? BA_OK : err->code;
    if (st == BA_OK) st = ba_llama_to_f32(v->ll, t->type, t->data, n, x, err);
    /* One call per matrix (expert), each with its imatrix row, as llama_model_quantize does. */
    uint64_t done = 0;
    for (int64_t e = 0; st == BA_OK && e < n_mat; e++) {
        size_t nb;
        st = ba_llama_quantize_rows(v->ll, type, x + e * rows_per_mat * ne0, rows_per_mat, ne0,
                                    imx ? imx + e * ne0 : NULL, (uint8_t *)q + done, &nb, err);
        done += nb;
    }
    if (st == BA_OK && done != nbytes)
        st = ba_error_set(err, BA_ERR_RUNTIME, "%s as %s: ggml wrote %llu bytes, expected %llu", t->name,
                          ty->name, (unsigned long long)done, (unsigned long long)nbytes);
    if (st == BA_OK) st = ba_llama_to_f32(v->ll, type, q, n, y, err);
    double e2 = 0;
    if (st == BA_OK) {
        for (int64_t m = 0; m < n_mat; m++)
            for (int64_t r = 0; r < rows_per_mat; r++) {
                const float *xr = x + (m * rows_per_mat + r) * ne0, *yr = y + (m * rows_per_mat + r) * ne0;
                const float *w = imx ? imx + m * ne0 : NULL;
                double s = 0;
                for (int64_t j = 0; j < ne0; j++) {
                    double d = (double)xr[j] - (double)yr[j];
                    s += (w ? (double)w[j] : 1.0) * d * d;
                }
                e2 += s;
            }
    }
    free(x);
    free(y);
    if (st != BA_OK) {
        free(q);
        return st;
    }
    out->type = type;
    out->data = q;
    out->nbytes = nbytes;
    out->error = e2;
    v->nquantized++;
    return BA_OK;
}

ba_status ba_llm_variant_get(ba_llm_variants_t *v, int tensor, int type, const void **data, uint64_t *nbytes,
                             double *error, ba_error *err) {
    if (tensor < 0 || tensor >= v->g->n_tensors)
        return ba_error_set(err, BA_ERR_INPUT, "tensor index %d out of range", tensor);
    tensor_variants_t *tv = &v->t[tensor];
    variant_t *hit = NULL;
    for (int k = 0; k < tv->n; k++)
        if (tv->v[k].type == type) hit = &tv->v[k];
    if (!hit) {
        if (tv->n == (int)(sizeof tv->v / sizeof tv->v[0]))
            return ba_error_set(err, BA_ERR_INPUT, "%s: more than %d types", v->g->tensors[tensor].name,
                                tv->n);
        BA_TRY(quantize(v, tensor, type, &tv->v[tv->n], err));
        hit = &tv->v[tv->n++];
    }
    if (data) *data = hit->data;
    if (nbytes) *nbytes = hit->nbytes;
    if (error) *error = hit->error;
    return BA_OK;
}

ba_status ba_llm_variants_write(ba_llm_variants_t *v, const int *types, const char *path, ba_error *err) {
    const ba_gguf_t *g = v->g;
    ba_gguf_writer_t *w;
    BA_TRY(ba_gguf_writer_new(&w, err));
    ba_status st = BA_OK;
    for (int i = 0; i < g->n_kv && st == BA_OK; i++) {
        const ba_gguf_kv_t *kv = &g->kv[i];
        st = ba_gguf_writer_add_kv(w, kv->key, kv->type, kv->arr_type, kv->n, kv->val, kv->val_size, err);
    }
    for (int i = 0; i < g->n_tensors && st == BA_OK; i++) {
        const ba_gguf_tensor_t *t = &g->tensors[i];
        if (types[i] < 0 || types[i] == t->type) {
            st = ba_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, t->type, t->data, t->nbytes, err);
            continue;
        }
        const void *data;
        uint64_t nbytes;
        st = ba_llm_variant_get(v, i, types[i], &data, &nbytes, NULL, err);
        if (st == BA_OK)
            st = ba_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, types[i], data, nbytes, err);
    }
    if (st == BA_OK) st = ba_gguf_writer_write(w, path, err);
    ba_gguf_writer_free(w);
    return st;
}

void ba_llm_errtab_free(ba_llm_errtab_t *t) {
    if (!t) return;
    free(t->rows);
    free(t);
}

ba_status ba_llm_errtab_compute(ba_llm_variants_t *v, const int *types, int ntypes, ba_llm_errtab_t **out,
                                ba_error *err) {
    *out = NULL;
    if (ntypes > BA_LLM_MAX_TYPES)
        return ba_error_set(err, BA_ERR_INPUT, "more than %d types", BA_LLM_MAX_TYPES);
    const ba_gguf_t *g = v->g;
    ba_llm_errtab_t *t = ba_calloc(1, sizeof *t, err);
    if (!t) return err->code;
    t->rows = ba_calloc((size_t)(g->n_tensors ? g->n_tensors : 1), sizeof *t->rows, err);
    if (!t->rows) {
        free(t);
        return err->code;
    }
    ba_status st = BA_OK;
    for (int i = 0; i < g->n_tensors && st == BA_OK; i++) {
        const ba_gguf_tensor_t *x = &g->tensors[i];
        if (!ba_ggml_tensor_quantizable(x->name, x->n_dims)) {
            t->other_bytes += x->nbytes;
            continue;
        }
        ba_llm_errtab_row_t *r = &t->rows[t->n++];
        r->tensor = i;
        r->name = x->name;
        r->n_weights = 1;
        for (int d = 0; d < x->n_dims; d++) r->n_weights *= (uint64_t)x->ne[d];
        t->n_weights += r->n_weights;
        r->has_imatrix = ba_llm_variants_imatrix(v, i) != NULL;
        r->ncand = ba_llm_variants_candidates(v, i, types, ntypes, r->type);
        for (int k = 0; k < r->ncand && st == BA_OK; k++)
            st = ba_llm_variant_get(v, i, r->type[k], NULL, &r->bytes[k], &r->error[k], err);
    }
    if (st != BA_OK) {
        ba_llm_errtab_free(t);
        return st;
    }
    *out = t;
    return BA_OK;
}

ba_status ba_llm_parse_types(const char *list, int *ids, int *n, ba_error *err) {
    *n = 0;
    const char *p = list;
    while (1) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char item[32];
        if (len == 0 || len >= sizeof item)
            return ba_error_set(err, BA_ERR_INPUT, "'%s': an empty or unknown type in the list", list);
        memcpy(item, p, len);
        item[len] = 0;
        const ba_ggml_type_t *t = ba_ggml_type_by_name(item);
        if (!t || !t->quant_target)
            return ba_error_set(err, BA_ERR_INPUT, "'%s': not a ggml weight type llama-quantize writes",
                                item);
        for (int k = 0; k < *n; k++)
            if (ids[k] == t->id) return ba_error_set(err, BA_ERR_INPUT, "'%s': listed twice", item);
        if (*n == BA_LLM_MAX_TYPES)
            return ba_error_set(err, BA_ERR_INPUT, "more than %d types", BA_LLM_MAX_TYPES);
        ids[(*n)++] = t->id;
        if (!e) break;
        p = e + 1;
    }
    return BA_OK;
}
