/* `bitalloc llm-inspect`: see docs/llm-inspect.md. Lists an LLM checkpoint's tensors (GGUF, or
 * safetensors with HF llama names mapped to GGUF's) with their ggml sizes, stored type and bytes,
 * and for each tensor llama-quantize would quantize the candidate ggml types (block size divides
 * ne0; imatrix-only types left out) with the exact bytes each would take. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/format.h"

#define MAX_CAND 64

static void ne_text(const ba_llm_tensor_t *t, char *buf, size_t cap) {
    size_t o = 0;
    for (int d = 0; d < t->n_dims && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, d ? "x" : "", t->ne[d]);
}

static const ba_imatrix_t *g_imatrix; /* --imatrix, or NULL */

/* 1 when the imatrix has an entry for t with t's ne0 (llama-quantize's test). */
static int has_imatrix(const ba_llm_tensor_t *t) {
    const ba_imatrix_entry_t *e = g_imatrix ? ba_imatrix_find(g_imatrix, t->name) : NULL;
    return e && e->ne0 * e->n_mat == t->ne[0] * (t->n_dims > 2 ? t->ne[2] : 1);
}

/* Candidate ids of tensor t and their bytes; returns the count. */
static int candidates(const ba_llm_tensor_t *t, int *ids, uint64_t *bytes) {
    if (!t->quantizable) return 0;
    int n = ba_ggml_candidates(t->name, t->ne[0], has_imatrix(t), ids, MAX_CAND);
    if (n > MAX_CAND) n = MAX_CAND;
    int k = 0;
    for (int i = 0; i < n; i++) {
        ba_error err;
        if (ba_ggml_type_nbytes(ba_ggml_type_by_id(ids[i]), t->n_dims, t->ne, &bytes[k], &err) != BA_OK)
            continue;
        ids[k++] = ids[i];
    }
    return k;
}

static int print_json(const char *path, const ba_llm_model_t *m) {
    json_t *root = json_object(), *arr = json_array();
    json_object_set_new(root, "model", json_string(path));
    json_object_set_new(root, "format", json_string(m->format));
    uint64_t qw = 0, qb = 0, ob = 0;
    for (int i = 0; i < m->n; i++) {
        const ba_llm_tensor_t *t = &m->t[i];
        json_t *o = json_object(), *ne = json_array(), *c = json_array();
        json_object_set_new(o, "name", t->name[0] ? json_string(t->name) : json_null());
        json_object_set_new(o, "source_name", json_string(t->source_name));
        json_object_set_new(o, "type", json_string(t->type));
        for (int d = 0; d < t->n_dims; d++) json_array_append_new(ne, json_integer(t->ne[d]));
        json_object_set_new(o, "ne", ne);
        json_object_set_new(o, "weights", json_integer((json_int_t)t->n_weights));
        json_object_set_new(o, "bytes", json_integer((json_int_t)t->nbytes));
        json_object_set_new(o, "quantizable", json_boolean(t->quantizable));
        int ids[MAX_CAND];
        uint64_t bytes[MAX_CAND];
        int n = candidates(t, ids, bytes);
        for (int k = 0; k < n; k++) {
            const ba_ggml_type_t *ty = ba_ggml_type_by_id(ids[k]);
            json_t *e = json_object();
            json_object_set_new(e, "type", json_string(ty->name));
            json_object_set_new(e, "bpw", json_real(ba_ggml_type_bpw(ty)));
            json_object_set_new(e, "bytes", json_integer((json_int_t)bytes[k]));
            json_array_append_new(c, e);
        }
        json_object_set_new(o, "candidates", c);
        json_array_append_new(arr, o);
        if (t->quantizable) {
            qw += t->n_weights;
            qb += t->nbytes;
        } else
            ob += t->nbytes;
    }
    json_object_set_new(root, "tensors", arr);
    json_t *tot = json_object();
    json_object_set_new(tot, "quantizable_weights", json_integer((json_int_t)qw));
    json_object_set_new(tot, "quantizable_bytes", json_integer((json_int_t)qb));
    json_object_set_new(tot, "other_bytes", json_integer((json_int_t)ob));
    json_object_set_new(root, "totals", tot);
    int rc = ba_json_print(stdout, root);
    json_decref(root);
    return rc == 0 ? BA_EXIT_OK : BA_EXIT_RUNTIME;
}

static int print_table(const char *path, const ba_llm_model_t *m) {
    static const char *const hdr[] = {"tensor", "type", "ne", "bytes", "candidates (type:bytes)"};
    ba_table_t *tab = ba_table_new(5, hdr, NULL);
    if (!tab) {
        ba_cli_error("out of memory");
        return BA_EXIT_RUNTIME;
    }
    uint64_t qw = 0, qb = 0, ob = 0;
    for (int i = 0; i < m->n; i++) {
        const ba_llm_tensor_t *t = &m->t[i];
        char ne[128] = "", cand[2048] = "-";
        ne_text(t, ne, sizeof ne);
        int ids[MAX_CAND];
        uint64_t bytes[MAX_CAND];
        int n = candidates(t, ids, bytes);
        size_t o = 0;
        for (int k = 0; k < n && o < sizeof cand; k++)
            o += (size_t)snprintf(cand + o, sizeof cand - o, "%s%s:%" PRIu64, k ? " " : "",
                                  ba_ggml_type_by_id(ids[k])->name, bytes[k]);
        ba_table_addf(tab, "%s\t%s\t%s\t%" PRIu64 "\t%s", t->name[0] ? t->name : t->source_name, t->type, ne,
                      t->nbytes, cand);
        if (t->quantizable) {
            qw += t->n_weights;
            qb += t->nbytes;
        } else
            ob += t->nbytes;
    }
    printf("model    %s (%s, %d tensors)\n\n", path, m->format, m->n);
    ba_table_print(tab, stdout);
    ba_table_free(tab);
    printf("\nquantizable: %" PRIu64 " weights, %" PRIu64 " B (%.4g bits per weight); other tensors %" PRIu64
           " B\n",
           qw, qb, ba_ggml_bpw_of(qb, qw), ob);
    return BA_EXIT_OK;
}

int ba_cmd_llm_inspect(const ba_cli_opts *o) {
    const char *path = ba_cli_get(o, "model");
    ba_llm_model_t *m;
    ba_error err = {0};
    ba_imatrix_t *im = NULL;
    ba_status st = ba_llm_model_open(path, &m, &err);
    if (st == BA_OK && ba_cli_has(o, "imatrix")) {
        st = ba_imatrix_open(ba_cli_get(o, "imatrix"), &im, &err);
        if (st != BA_OK) ba_llm_model_free(m);
    }
    if (st != BA_OK) {
        ba_cli_error("%s", err.msg);
        return ba_status_exit_code(st);
    }
    g_imatrix = im;
    int rc =
        strcmp(ba_cli_get_or(o, "format", "table"), "json") == 0 ? print_json(path, m) : print_table(path, m);
    g_imatrix = NULL;
    ba_imatrix_free(im);
    ba_llm_model_free(m);
    return rc;
}
