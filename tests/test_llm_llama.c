/* llm/llama.c: libllama (npm @node-llama-cpp/linux-x64, dlopen) on the tiny trained llama:
 * our GGUF writer's F32 model loads, KL(F32‖F32) = 0, uniform Q8_0 < Q4_K < Q2_K, the same KL twice.
 * Skipped with a message when the libraries are not installed (scripts/setup puts them under
 * build/vendor/llama; BA_LLAMA_DIR overrides). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/ggml_types.h"
#include "core/tensor.h"
#include "eval/metrics.h"
#include "helpers.h"
#include "llm/gguf.h"
#include "llm/llama.h"
#include "llm_fixture.h"

/* Calibration text (MIT license wording: in the training corpus's style, not a verbatim slice). */
static const char CALIB[] =
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this software and "
    "associated documentation files, to deal in the Software without restriction, including without "
    "limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell "
    "copies of the Software, subject to the following conditions.";

static const ba_llama_t *open_or_skip(void) {
    BA_TEST_LLAMA_OR_SKIP();
    return ba_test_llama_open();
}

Test(llm_llama, missing_libraries_are_named) {
    ba_llama_t *ll;
    ba_error err = {0};
    cr_assert_eq(ba_llama_open("/nonexistent/bins", &ll, &err), BA_ERR_UNSUPPORTED);
    cr_expect(strstr(err.msg, "libggml-base.so") && strstr(err.msg, "@node-llama-cpp/linux-x64@3.22.1") &&
                  strstr(err.msg, "BA_LLAMA_DIR"),
              "%s", err.msg);
}

Test(llm_llama, version_and_type_table_match_the_library) {
    const ba_llama_t *ll = open_or_skip();
    cr_expect_str_eq(ba_llama_version(ll), "0.5.0-dev");
    for (int i = 0; i < ba_ggml_type_count(); i++) {
        const ba_ggml_type_t *t = ba_ggml_type_at(i);
        const char *name;
        int64_t block;
        size_t bytes;
        ba_llama_ggml_type(ll, t->id, &name, &block, &bytes);
        cr_expect_str_eq(name, t->name, "type %d", t->id);
        cr_expect_eq(block, t->block, "%s", t->name);
        cr_expect_eq(bytes, (size_t)t->bytes, "%s", t->name);
    }
}

typedef struct {
    char dir[512], f32[700];
    int32_t *tok;
    int n;
    float *ref;
    int nv;
} fx_t;

/* Our reader + writer: tiny.gguf (F16) -> F32 GGUF; libllama loads it and decodes CALIB. */
static void setup_f32(fx_t *f, const ba_llama_t *ll) {
    ba_error err = {0};
    cr_assert_eq(ba_test_tmpdir(f->dir, sizeof f->dir), 0);
    snprintf(f->f32, sizeof f->f32, "%s/tiny-f32.gguf", f->dir);
    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_open(TINY_GGUF, &g, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_gguf_write_f32(g, f->f32, &err), BA_OK, "%s", err.msg);
    ba_gguf_free(g);
    cr_assert_eq(ba_gguf_open(f->f32, &g, &err), BA_OK, "%s", err.msg);
    for (int i = 0; i < g->n_tensors; i++) cr_assert_eq(g->tensors[i].type, 0, "%s", g->tensors[i].name);
    ba_gguf_free(g);
    cr_assert_eq(ba_llama_tokenize(ll, f->f32, CALIB, &f->tok, &f->n, &err), BA_OK, "%s", err.msg);
    /* SPM: a leading '▁' (add_space_prefix), then one token per ASCII character. */
    cr_assert_eq(f->n, (int)strlen(CALIB) + 1, "%d tokens", f->n);
    cr_assert_eq(f->tok[0], 259);
    cr_assert_eq(f->tok[1], 260 + ('P' - '!'));
    cr_assert_eq(ba_llama_logits(ll, f->f32, f->tok, f->n, 2, &f->ref, &f->nv, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(f->nv, 354);
}

static void fx_free(fx_t *f) {
    free(f->tok);
    free(f->ref);
    ba_test_rmtree(f->dir);
}

/* Mean per-token KL(p_ref‖p_q) through eval/metrics (positions 0..n-2 predict the next token). */
static double mean_kl(const float *ref, const float *q, int n, int nv) {
    ba_error err = {0};
    int64_t shape[2] = {n - 1, nv};
    ba_tensor_t *a = ba_tensor_wrap(BA_DT_F32, 2, shape, (void *)ref, &err);
    ba_tensor_t *b = ba_tensor_wrap(BA_DT_F32, 2, shape, (void *)q, &err);
    cr_assert(a && b, "%s", err.msg);
    ba_metrics_acc_t acc;
    ba_metrics_begin(&acc, 0);
    cr_assert_eq(ba_metrics_add(&acc, a, b, NULL, 0, &err), BA_OK, "%s", err.msg);
    ba_metrics_t m;
    ba_metrics_finish(&acc, &m);
    ba_tensor_unref(a);
    ba_tensor_unref(b);
    return m.kl;
}

static double kl_of_type(fx_t *f, const ba_llama_t *ll, const char *type, int check_types) {
    ba_error err = {0};
    char out[800];
    snprintf(out, sizeof out, "%s/tiny-%s.gguf", f->dir, type);
    const ba_ggml_type_t *t = ba_ggml_type_by_name(type);
    cr_assert_eq(ba_llama_quantize(ll, f->f32, out, t->id, NULL, NULL, 0, 2, NULL, &err), BA_OK, "%s",
                 err.msg);
    if (check_types) {
        ba_gguf_t *g;
        cr_assert_eq(ba_gguf_open(out, &g, &err), BA_OK, "%s", err.msg);
        for (int i = 0; i < g->n_tensors; i++) {
            const ba_gguf_tensor_t *x = &g->tensors[i];
            int want = ba_ggml_tensor_quantizable(x->name, x->n_dims) ? t->id : 0;
            cr_expect_eq(x->type, want, "%s: %s", x->name, ba_ggml_type_by_id(x->type)->name);
        }
        ba_gguf_free(g);
    }
    float *q;
    int nv;
    cr_assert_eq(ba_llama_logits(ll, out, f->tok, f->n, 2, &q, &nv, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(nv, f->nv);
    double kl = mean_kl(f->ref, q, f->n, nv);
    free(q);
    return kl;
}

Test(llm_llama, kl_zero_for_f32_and_ordered_by_bits, .timeout = 300) {
    const ba_llama_t *ll = open_or_skip();
    fx_t f = {0};
    setup_f32(&f, ll);
    float *again;
    int nv;
    ba_error err = {0};
    cr_assert_eq(ba_llama_logits(ll, f.f32, f.tok, f.n, 2, &again, &nv, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(mean_kl(f.ref, again, f.n, nv), 0.0);
    free(again);
    double q8 = kl_of_type(&f, ll, "q8_0", 1);
    double q4 = kl_of_type(&f, ll, "q4_K", 1);
    double q2 = kl_of_type(&f, ll, "q2_K", 1);
    fprintf(stderr, "tiny llama, %d tokens: KL q8_0 %.6g  q4_K %.6g  q2_K %.6g\n", f.n, q8, q4, q2);
    cr_expect(q8 > 0 && q8 < q4 && q4 < q2, "KL q8_0 %g q4_K %g q2_K %g", q8, q4, q2);
    fx_free(&f);
}

Test(llm_llama, same_kl_twice, .timeout = 300) {
    const ba_llama_t *ll = open_or_skip();
    fx_t f = {0};
    setup_f32(&f, ll);
    double a = kl_of_type(&f, ll, "q4_K", 0);
    double b = kl_of_type(&f, ll, "q4_K", 0);
    cr_expect_eq(a, b, "%.17g vs %.17g", a, b);
    fx_free(&f);
}

Test(llm_llama, per_tensor_overrides_are_applied, .timeout = 300) {
    const ba_llama_t *ll = open_or_skip();
    fx_t f = {0};
    ba_error err = {0};
    cr_assert_eq(ba_test_tmpdir(f.dir, sizeof f.dir), 0);
    snprintf(f.f32, sizeof f.f32, "%s/tiny-f32.gguf", f.dir);
    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_open(TINY_GGUF, &g, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_gguf_write_f32(g, f.f32, &err), BA_OK, "%s", err.msg);
    ba_gguf_free(g);
    char out[800];
    snprintf(out, sizeof out, "%s/mix.gguf", f.dir);
    const char *pat[2] = {"^blk\\.1\\.ffn_down\\.weight$", "^blk\\.0\\.attn_q\\.weight$"};
    int types[2] = {ba_ggml_type_by_name("q6_K")->id, ba_ggml_type_by_name("q2_K")->id};
    cr_assert_eq(
        ba_llama_quantize(ll, f.f32, out, ba_ggml_type_by_name("q8_0")->id, pat, types, 2, 2, NULL, &err),
        BA_OK, "%s", err.msg);
    cr_assert_eq(ba_gguf_open(out, &g, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(ba_gguf_find_tensor(g, "blk.1.ffn_down.weight")->type, types[0]);
    cr_expect_eq(ba_gguf_find_tensor(g, "blk.0.attn_q.weight")->type, types[1]);
    cr_expect_eq(ba_gguf_find_tensor(g, "blk.0.ffn_down.weight")->type, ba_ggml_type_by_name("q8_0")->id);
    ba_gguf_free(g);
    ba_test_rmtree(f.dir);
}

/* ba_llama_mix_types (a dry run) names, for every tensor and every mix, the type that
 * ba_llama_quantize_mix writes; the mixes differ from one another, and a name that is no mix is refused. */
Test(llm_llama, mix_types_are_the_types_the_mix_writes, .timeout = 300) {
    const ba_llama_t *ll = open_or_skip();
    ba_error err = {0};
    char dir[512], out[800];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/mix.gguf", dir);
    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_open(TINY_GGUF, &g, &err), BA_OK, "%s", err.msg);
    int *types = calloc((size_t)g->n_tensors, sizeof *types),
        *prev = calloc((size_t)g->n_tensors, sizeof *prev);
    int nmix = 0;
    for (const char *mix; (mix = ba_llama_mix_name(nmix)); nmix++) {
        cr_assert_eq(ba_llama_mix_types(ll, g, mix, NULL, types, &err), BA_OK, "%s: %s", mix, err.msg);
        cr_assert_eq(ba_llama_quantize_mix(ll, TINY_GGUF, out, mix, 1, NULL, &err), BA_OK, "%s", err.msg);
        ba_gguf_t *q;
        cr_assert_eq(ba_gguf_open(out, &q, &err), BA_OK, "%s", err.msg);
        cr_assert_eq(q->n_tensors, g->n_tensors);
        int differs = 0;
        for (int i = 0; i < g->n_tensors; i++) {
            const ba_gguf_tensor_t *t = ba_gguf_find_tensor(q, g->tensors[i].name);
            cr_assert(t, "%s", g->tensors[i].name);
            cr_expect_eq(types[i], t->type, "%s %s: dry run %d, written %d", mix, t->name, types[i], t->type);
            differs |= types[i] != prev[i];
        }
        cr_expect(differs || nmix == 0, "%s gives the same types as the mix before it", mix);
        memcpy(prev, types, (size_t)g->n_tensors * sizeof *types);
        ba_gguf_free(q);
    }
    cr_expect_eq(nmix, 10);
    cr_expect_str_eq(ba_llama_mix_name(0), "Q2_K");
    cr_expect_null(ba_llama_mix_name(10));
    cr_expect_eq(ba_llama_mix_types(ll, g, "Q4_K_X", NULL, types, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "Q4_K_X"), "%s", err.msg);
    free(types);
    free(prev);
    ba_gguf_free(g);
    ba_test_rmtree(dir);
}
