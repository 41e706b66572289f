/* llm/variants.c and `bitalloc llm-sensitivity`: the per-tensor error table by libggml-base's own
 * quantizers on the tiny trained llama. Skipped when the llama.cpp libraries are not installed,
 * except the messages that name them. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ggml_types.h"
#include "helpers.h"
#include "llm/gguf.h"
#include "llm/variants.h"
#include "llm_fixture.h"

static int tid(const char *name) {
    return ba_ggml_type_by_name(name)->id;
}

static ba_llm_errtab_t *table(const ba_llama_t *ll, ba_gguf_t *g, const ba_imatrix_t *im,
                              ba_llm_variants_t **vp) {
    ba_error err = {0};
    int types[BA_LLM_MAX_TYPES], n;
    cr_assert_eq(ba_llm_parse_types(BA_LLM_DEFAULT_TYPES, types, &n, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(n, 7);
    ba_llm_variants_t *v;
    cr_assert_eq(ba_llm_variants_new(ll, g, im, &v, &err), BA_OK, "%s", err.msg);
    ba_llm_errtab_t *t;
    cr_assert_eq(ba_llm_errtab_compute(v, types, n, &t, &err), BA_OK, "%s", err.msg);
    *vp = v;
    return t;
}

static double err_of(const ba_llm_errtab_row_t *r, const char *type) {
    for (int k = 0; k < r->ncand; k++)
        if (r->type[k] == tid(type)) return r->error[k];
    cr_assert_fail("%s: no %s", r->name, type);
    return NAN;
}

Test(llm_sensitivity, errors_ordered_by_type_and_repeatable) {
    BA_TEST_LLAMA_OR_SKIP();
    const ba_llama_t *ll = ba_test_llama_open();
    ba_error err = {0};
    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_open(TINY_GGUF, &g, &err), BA_OK, "%s", err.msg);
    ba_llm_variants_t *v1, *v2;
    ba_llm_errtab_t *a = table(ll, g, NULL, &v1), *b = table(ll, g, NULL, &v2);
    cr_assert_eq(a->n, 15, "token_embd + 2 blocks × 7 (tied output)");
    cr_expect_eq(ba_llm_variants_quantized(v1), 15 * 7, "each pair quantized once");
    for (int i = 0; i < a->n; i++) {
        const ba_llm_errtab_row_t *r = &a->rows[i];
        cr_assert_eq(r->ncand, 7, "%s", r->name);
        double q2 = err_of(r, "q2_K"), q3 = err_of(r, "q3_K"), q4 = err_of(r, "q4_K"), q5 = err_of(r, "q5_K"),
               q6 = err_of(r, "q6_K"), q8 = err_of(r, "q8_0"), f16 = err_of(r, "f16");
        cr_expect(q8 < q6 && q6 < q5 && q5 < q4 && q4 < q3 && q3 < q2, "%s: %g %g %g %g %g %g", r->name, q8,
                  q6, q5, q4, q3, q2);
        cr_expect(q8 > 0, "%s", r->name);
        cr_expect_eq(f16, 0.0, "%s: the source is f16, so f16 is exact", r->name);
        const ba_gguf_tensor_t *x = &g->tensors[r->tensor];
        for (int k = 0; k < r->ncand; k++) {
            uint64_t want;
            cr_assert_eq(ba_ggml_type_nbytes(ba_ggml_type_by_id(r->type[k]), x->n_dims, x->ne, &want, &err),
                         BA_OK);
            cr_expect_eq(r->bytes[k], want, "%s", r->name);
            cr_expect_eq(r->error[k], b->rows[i].error[k], "%s: same numbers twice", r->name);
        }
    }
    /* Asking again reads the store: nothing is quantized twice. */
    ba_llm_errtab_t *c;
    int q4 = tid("q4_K");
    cr_assert_eq(ba_llm_errtab_compute(v1, &q4, 1, &c, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(ba_llm_variants_quantized(v1), 15 * 7);
    ba_llm_errtab_free(c);
    ba_llm_errtab_free(a);
    ba_llm_errtab_free(b);
    ba_llm_variants_free(v1);
    ba_llm_variants_free(v2);
    ba_gguf_free(g);
}

/* A legacy .dat imatrix with weight 2 on every column of blk.0.attn_q (256 columns). */
static float weight_two(int e, int j) {
    (void)e, (void)j;
    return 2.0f;
}

static float weight_one(int e, int j) {
    (void)e, (void)j;
    return 1.0f;
}

static void write_dat(const char *path) {
    const char *name = "blk.0.attn_q.weight";
    ba_test_write_imatrix_dat(path, 1, &name, 256, weight_two);
}

Test(llm_sensitivity, imatrix_weights_the_error) {
    BA_TEST_LLAMA_OR_SKIP();
    const ba_llama_t *ll = ba_test_llama_open();
    ba_error err = {0};
    char dir[512], dat[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(dat, sizeof dat, "%s/imatrix.dat", dir);
    write_dat(dat);
    ba_imatrix_t *im;
    cr_assert_eq(ba_imatrix_open(dat, &im, &err), BA_OK, "%s", err.msg);
    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_open(TINY_GGUF, &g, &err), BA_OK, "%s", err.msg);
    ba_llm_variants_t *v0, *v1;
    ba_llm_errtab_t *plain = table(ll, g, NULL, &v0), *w = table(ll, g, im, &v1);
    for (int i = 0; i < w->n; i++) {
        int covered = strcmp(w->rows[i].name, "blk.0.attn_q.weight") == 0;
        cr_expect_eq(w->rows[i].has_imatrix, covered, "%s", w->rows[i].name);
        /* q8_0 ignores the weights when it quantizes: only the error's weighting changes. */
        double want = (covered ? 2.0 : 1.0) * err_of(&plain->rows[i], "q8_0");
        cr_expect_eq(err_of(&w->rows[i], "q8_0"), want, "%s", w->rows[i].name);
        if (!covered) cr_expect_eq(err_of(&w->rows[i], "q4_K"), err_of(&plain->rows[i], "q4_K"));
    }
    ba_llm_errtab_free(plain);
    ba_llm_errtab_free(w);
    ba_llm_variants_free(v0);
    ba_llm_variants_free(v1);
    ba_gguf_free(g);
    ba_imatrix_free(im);
    ba_test_rmtree(dir);
}

Test(llm_sensitivity, cli_table_json) {
    BA_TEST_LLAMA_OR_SKIP();
    char dir[512], out[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/t.json", dir);
    setenv(BA_LLAMA_DIR_ENV, ba_test_llama_dir(), 1);
    ba_test_run_t r = ba_test_cli("llm-sensitivity", TINY_GGUF, "--types", "q4_K,q8_0", "-o", out, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_error_t je;
    json_t *j = json_load_file(out, 0, &je);
    cr_assert(j, "%s", je.text);
    json_t *t = json_object_get(j, "tensors");
    cr_assert_eq(json_array_size(t), 15);
    json_t *c = json_object_get(json_array_get(t, 1), "candidates");
    cr_assert_eq(json_array_size(c), 2);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(c, 0), "type")), "q4_K");
    cr_expect(json_real_value(json_object_get(json_array_get(c, 0), "error")) >
              json_real_value(json_object_get(json_array_get(c, 1), "error")));
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(c, 1), "bytes")), 256 * 256 / 32 * 34);
    json_decref(j);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

Test(llm_sensitivity, cli_names_missing_libraries) {
    setenv(BA_LLAMA_DIR_ENV, "/nonexistent/bins", 1);
    ba_test_run_t r = ba_test_cli("llm-sensitivity", TINY_GGUF, NULL);
    unsetenv(BA_LLAMA_DIR_ENV);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "bitalloc: error: llama.cpp libraries: cannot load libggml-base.so") &&
                  strstr(r.err, "@node-llama-cpp/linux-x64@3.22.1"),
              "%s", r.err);
    ba_test_run_free(&r);
}

Test(llm_sensitivity, cli_bad_types) {
    ba_test_run_t r = ba_test_cli("llm-sensitivity", TINY_GGUF, "--types", "q4_K,q9_9", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--types: 'q9_9'"), "%s", r.err);
    ba_test_run_free(&r);
}

/* An imatrix entry whose columns do not fit its tensor is refused, as llama-quantize refuses it. */
Test(llm_sensitivity, imatrix_of_the_wrong_width_is_refused) {
    BA_TEST_LLAMA_OR_SKIP();
    const ba_llama_t *ll = ba_test_llama_open();
    ba_error err = {0};
    char dir[512], dat[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(dat, sizeof dat, "%s/imatrix.dat", dir);
    const char *name = "blk.1.ffn_down.weight";
    ba_test_write_imatrix_dat(dat, 1, &name, 256, weight_one);
    ba_imatrix_t *im;
    cr_assert_eq(ba_imatrix_open(dat, &im, &err), BA_OK, "%s", err.msg);
    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_open(TINY_GGUF, &g, &err), BA_OK, "%s", err.msg);
    ba_llm_variants_t *v;
    cr_assert_eq(ba_llm_variants_new(ll, g, im, &v, &err), BA_OK, "%s", err.msg);
    int q4 = tid("q4_K");
    ba_llm_errtab_t *t = NULL;
    cr_expect_eq(ba_llm_errtab_compute(v, &q4, 1, &t, &err), BA_ERR_INPUT);
    cr_expect(
        strstr(err.msg, "imatrix entry 'blk.1.ffn_down.weight' has 1 x 256 values, the tensor needs 1 x 512"),
        "%s", err.msg);
    ba_llm_errtab_free(t);
    ba_llm_variants_free(v);
    ba_gguf_free(g);
    ba_imatrix_free(im);
    ba_test_rmtree(dir);
}

/* llm-imatrix: mean x² per input column of every weight product, in llama-imatrix's GGUF format,
 * the same twice, read back by our reader and accepted by llama_model_quantize. */
Test(llm_sensitivity, collected_imatrix_round_trips_and_quantizes, .timeout = 120) {
    BA_TEST_LLAMA_OR_SKIP();
    const ba_llama_t *ll = ba_test_llama_open();
    setenv(BA_LLAMA_DIR_ENV, ba_test_llama_dir(), 1);
    ba_error err = {0};
    char dir[512], a[600], b[600], q[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(a, sizeof a, "%s/a.gguf", dir);
    snprintf(b, sizeof b, "%s/b.gguf", dir);
    snprintf(q, sizeof q, "%s/q.gguf", dir);
    ba_test_run_t r = ba_test_cli("llm-imatrix", TINY_GGUF, "--text", CALIB_TXT, "-o", a, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.err, "15 weight matrices, 10 chunks of 128 tokens"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("-q", "llm-imatrix", TINY_GGUF, "--text", CALIB_TXT, "-o", b, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    ba_imatrix_t *ia, *ib;
    cr_assert_eq(ba_imatrix_open(a, &ia, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_imatrix_open(b, &ib, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(ia->chunk_count, 10);
    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_open(TINY_GGUF, &g, &err), BA_OK, "%s", err.msg);
    int covered = 0;
    for (int i = 0; i < g->n_tensors; i++) {
        const ba_gguf_tensor_t *x = &g->tensors[i];
        if (!ba_ggml_tensor_quantizable(x->name, x->n_dims)) continue;
        const ba_imatrix_entry_t *e = ba_imatrix_find(ia, x->name), *f = ba_imatrix_find(ib, x->name);
        cr_assert(e && f, "%s: no entry", x->name);
        covered++;
        cr_expect_eq(e->ne0, x->ne[0], "%s", x->name);
        cr_expect_eq(e->n_mat, 1);
        for (int64_t j = 0; j < e->ne0; j++) {
            cr_expect(e->mean[j] >= 0 && isfinite(e->mean[j]), "%s[%lld]", x->name, (long long)j);
            cr_expect_eq(e->mean[j], f->mean[j], "%s[%lld]: the same twice", x->name, (long long)j);
        }
    }
    cr_expect_eq(covered, 15);
    cr_expect_eq(ia->n, 15);
    const char *pat[1] = {"^blk\\.0\\.ffn_down\\.weight$"};
    int ty[1] = {tid("q3_K")};
    cr_expect_eq(ba_llama_quantize(ll, TINY_GGUF, q, tid("q4_K"), pat, ty, 1, 1, ia, &err), BA_OK, "%s",
                 err.msg);
    ba_gguf_free(g);
    ba_imatrix_free(ia);
    ba_imatrix_free(ib);
    ba_test_rmtree(dir);
}
