/* `bitalloc llm-sensitivity`: see docs/llm-sensitivity.md. The per-tensor error table of a GGUF
 * checkpoint: each quantizable tensor × candidate ggml type quantized and dequantized by the
 * pinned libggml-base (llm/variants.h), error weighted by the imatrix when one is given. */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/format.h"
#include "cli/guard.h"
#include "core/ggml_types.h"
#include "llm/variants.h"

ba_status ba_cli_llama_open(ba_llama_t **ll, ba_error *err) {
    const char *env = getenv(BA_LLAMA_DIR_ENV);
    if (env && *env) return ba_llama_open(env, ll, err);
    /* Next to the executable: scripts/setup installs the package under build/vendor/llama. */
    char exe[PATH_MAX], dir[PATH_MAX + 128];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return ba_llama_open(NULL, ll, err);
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    snprintf(dir, sizeof dir, "%s/vendor/llama/node_modules/%s/%s", exe, BA_LLAMA_NPM_PACKAGE,
             BA_LLAMA_NPM_BINS);
    return ba_llama_open(dir, ll, err);
}

ba_status ba_cli_llm_open(const ba_cli_opts *o, ba_llama_t **ll, ba_gguf_t **g, ba_imatrix_t **im,
                          ba_error *err) {
    *ll = NULL;
    *g = NULL;
    *im = NULL;
    const char *model = ba_cli_get(o, "model");
    ba_status st = ba_llm_gguf_open_any(model, g, err); /* safetensors: a temporary GGUF */
    if (st == BA_OK && ba_cli_has(o, "imatrix")) st = ba_imatrix_open(ba_cli_get(o, "imatrix"), im, err);
    if (st == BA_OK) st = ba_cli_llama_open(ll, err);
    if (st != BA_OK) {
        ba_imatrix_free(*im);
        ba_gguf_free(*g);
        *im = NULL;
        *g = NULL;
    }
    return st;
}

static json_t *table_json(const char *model, const char *imatrix, const ba_llm_errtab_t *t) {
    json_t *root = json_object(), *arr = json_array();
    json_object_set_new(root, "format", json_string("bitalloc.llm-sensitivity/1"));
    json_object_set_new(root, "model", json_string(model));
    json_object_set_new(root, "imatrix", imatrix ? json_string(imatrix) : json_null());
    for (int i = 0; i < t->n; i++) {
        const ba_llm_errtab_row_t *r = &t->rows[i];
        json_t *o = json_object(), *c = json_array();
        json_object_set_new(o, "name", json_string(r->name));
        json_object_set_new(o, "weights", json_integer((json_int_t)r->n_weights));
        json_object_set_new(o, "imatrix", json_boolean(r->has_imatrix));
        for (int k = 0; k < r->ncand; k++) {
            const ba_ggml_type_t *ty = ba_ggml_type_by_id(r->type[k]);
            json_t *e = json_object();
            json_object_set_new(e, "type", json_string(ty->name));
            json_object_set_new(e, "bpw", json_real(ba_ggml_type_bpw(ty)));
            json_object_set_new(e, "bytes", json_integer((json_int_t)r->bytes[k]));
            json_object_set_new(e, "error", json_real(r->error[k]));
            json_array_append_new(c, e);
        }
        json_object_set_new(o, "candidates", c);
        json_array_append_new(arr, o);
    }
    json_object_set_new(root, "tensors", arr);
    json_object_set_new(root, "quantizable_weights", json_integer((json_int_t)t->n_weights));
    json_object_set_new(root, "other_bytes", json_integer((json_int_t)t->other_bytes));
    return root;
}

static void print_table(const char *model, const ba_llm_errtab_t *t, const int *types, int ntypes) {
    const char *hdr[BA_LLM_MAX_TYPES + 1];
    hdr[0] = "tensor";
    for (int k = 0; k < ntypes; k++) hdr[k + 1] = ba_ggml_type_by_id(types[k])->name;
    ba_table_t *tab = ba_table_new((size_t)ntypes + 1, hdr, NULL);
    if (!tab) return;
    for (int i = 0; i < t->n; i++) {
        const ba_llm_errtab_row_t *r = &t->rows[i];
        char cells[BA_LLM_MAX_TYPES + 1][32];
        const char *row[BA_LLM_MAX_TYPES + 1];
        row[0] = r->name;
        for (int k = 0; k < ntypes; k++) {
            snprintf(cells[k + 1], sizeof cells[k + 1], "-");
            for (int c = 0; c < r->ncand; c++)
                if (r->type[c] == types[k]) snprintf(cells[k + 1], sizeof cells[k + 1], "%.4g", r->error[c]);
            row[k + 1] = cells[k + 1];
        }
        ba_table_add(tab, row);
    }
    printf("model    %s (%d quantizable tensors, %" PRIu64 " weights)\n", model, t->n, t->n_weights);
    printf("error    sum over rows and columns of w_j (x - deq(quant(x)))^2\n\n");
    ba_table_print(tab, stdout);
    ba_table_free(tab);
}

int ba_cmd_llm_sensitivity(const ba_cli_opts *o) {
    ba_error err = {0};
    int types[BA_LLM_MAX_TYPES], ntypes = 0;
    ba_llama_t *ll = NULL;
    ba_gguf_t *g = NULL;
    ba_imatrix_t *im = NULL;
    ba_llm_variants_t *v = NULL;
    ba_llm_errtab_t *t = NULL;
    const char *out = ba_cli_get(o, "output");
    ba_status st = ba_llm_parse_types(ba_cli_get_or(o, "types", BA_LLM_DEFAULT_TYPES), types, &ntypes, &err);
    if (st != BA_OK) {
        char msg[BA_ERROR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", err.msg);
        st = ba_error_set(&err, BA_ERR_INPUT, "--types: %s", msg);
    }
    if (st == BA_OK && out) st = ba_cli_check_output(o, "--output", out, NULL, NULL, 0, &err);
    if (st == BA_OK) st = ba_cli_llm_open(o, &ll, &g, &im, &err);
    if (st == BA_OK) st = ba_llm_variants_new(ll, g, im, &v, &err);
    if (st == BA_OK) st = ba_llm_errtab_compute(v, types, ntypes, &t, &err);
    int rc = BA_EXIT_OK;
    if (st == BA_OK) {
        json_t *j = table_json(ba_cli_get(o, "model"), ba_cli_get(o, "imatrix"), t);
        if (out) {
            char *text = json_dumps(j, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
            st = text ? ba_out_write(out, text, strlen(text), &err)
                      : ba_error_set(&err, BA_ERR_NOMEM, "out of memory");
            free(text);
        } else if (strcmp(ba_cli_get_or(o, "format", "table"), "json") == 0)
            rc = ba_json_print(stdout, j) == 0 ? BA_EXIT_OK : BA_EXIT_RUNTIME;
        else
            print_table(ba_cli_get(o, "model"), t, types, ntypes);
        json_decref(j);
    }
    if (st != BA_OK) {
        ba_cli_error("%s", err.msg);
        rc = ba_status_exit_code(st);
    }
    ba_llm_errtab_free(t);
    ba_llm_variants_free(v);
    ba_imatrix_free(im);
    ba_gguf_free(g);
    return rc;
}
