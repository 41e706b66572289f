/* llm/kl.c: measured KL through libllama on the tiny trained llama with the calibration text
 * tests/fixtures/llm/calib.txt: KL(F32‖F32) = 0, uniform Q8_0 < Q4_K < Q2_K, the same KL twice,
 * chunk windows that add up, and a GGUF assembled from the variant store that is byte for byte
 * what llama_model_quantize writes. Skipped when the llama.cpp libraries are not installed. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ggml_types.h"
#include "core/util.h"
#include "helpers.h"
#include "llm/gguf.h"
#include "llm/kl.h"
#include "llm/variants.h"
#include "llm_fixture.h"

typedef struct {
    const ba_llama_t *ll;
    ba_gguf_t *g;
    ba_llm_variants_t *v;
    ba_llm_kl_t *k;
    char *text;
} fx_t;

static void fx_open(fx_t *f, int chunk) {
    BA_TEST_LLAMA_OR_SKIP();
    ba_error err = {0};
    f->ll = ba_test_llama_open();
    cr_assert_eq(ba_gguf_open(TINY_GGUF, &f->g, &err), BA_OK, "%s", err.msg);
    size_t len;
    cr_assert_eq(ba_file_read(CALIB_TXT, (uint8_t **)&f->text, &len, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_llm_variants_new(f->ll, f->g, NULL, &f->v, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_llm_kl_new(f->ll, f->g, f->text, chunk, 1, &f->k, &err), BA_OK, "%s", err.msg);
}

static void fx_close(fx_t *f) {
    ba_llm_kl_free(f->k);
    ba_llm_variants_free(f->v);
    ba_gguf_free(f->g);
    free(f->text);
}

/* Every quantizable tensor as type (a name), the others as stored. */
static void uniform(const fx_t *f, const char *type, int *types) {
    for (int i = 0; i < f->g->n_tensors; i++)
        types[i] = ba_ggml_tensor_quantizable(f->g->tensors[i].name, f->g->tensors[i].n_dims)
                       ? ba_ggml_type_by_name(type)->id
                       : -1;
}

static double kl_uniform(fx_t *f, const char *type) {
    ba_error err = {0};
    int types[64];
    uniform(f, type, types);
    double kl, agree;
    cr_assert_eq(ba_llm_kl_measure_types(f->k, f->v, types, 0, ba_llm_kl_nchunks(f->k), &kl, &agree, &err),
                 BA_OK, "%s", err.msg);
    cr_expect(agree > 0.5 && agree <= 1, "%s: agreement %g", type, agree);
    return kl;
}

Test(llm_kl, zero_for_f32_ordered_by_type_same_twice, .timeout = 120) {
    fx_t f = {0};
    fx_open(&f, 128);
    ba_error err = {0};
    cr_expect_eq(ba_llm_kl_chunk_len(f.k), 128);
    cr_expect_eq(ba_llm_kl_nchunks(f.k), 1297 / 128, "1296 bytes + the leading '▁' token, cut into chunks");
    double kl, agree;
    cr_assert_eq(
        ba_llm_kl_measure(f.k, ba_llm_kl_reference(f.k), 0, ba_llm_kl_nchunks(f.k), &kl, &agree, &err), BA_OK,
        "%s", err.msg);
    cr_expect_eq(kl, 0.0);
    cr_expect_eq(agree, 1.0);
    double q8 = kl_uniform(&f, "q8_0"), q4 = kl_uniform(&f, "q4_K"), q2 = kl_uniform(&f, "q2_K");
    double f16 = kl_uniform(&f, "f16");
    fprintf(stderr, "tiny llama, %d chunks x %d tokens: KL f16 %.6g q8_0 %.6g q4_K %.6g q2_K %.6g\n",
            ba_llm_kl_nchunks(f.k), ba_llm_kl_chunk_len(f.k), f16, q8, q4, q2);
    cr_expect(f16 >= 0 && f16 < q8 && q8 > 0 && q8 < q4 && q4 < q2, "KL f16 %g q8_0 %g q4_K %g q2_K %g", f16,
              q8, q4, q2);
    cr_expect_eq(kl_uniform(&f, "q4_K"), q4, "the same KL twice");
    cr_expect_eq(ba_llm_variants_quantized(f.v), 15 * 3,
                 "each tensor/type pair quantized once (f16 is stored)");
    fx_close(&f);
}

Test(llm_kl, windows_add_up, .timeout = 120) {
    fx_t f = {0};
    fx_open(&f, 64);
    ba_error err = {0};
    int types[64], n = ba_llm_kl_nchunks(f.k);
    uniform(&f, "q3_K", types);
    double all, a, b;
    cr_assert_eq(ba_llm_kl_measure_types(f.k, f.v, types, 0, n, &all, NULL, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_llm_kl_measure_types(f.k, f.v, types, 0, 3, &a, NULL, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_llm_kl_measure_types(f.k, f.v, types, 3, n - 3, &b, NULL, &err), BA_OK, "%s", err.msg);
    cr_expect(fabs((3 * a + (n - 3) * b) / n - all) <= 1e-6 * all, "%g %g %g", a, b, all);
    cr_expect_eq(ba_llm_kl_measure_types(f.k, f.v, types, n - 1, 2, &a, NULL, &err), BA_ERR_INPUT);
    fx_close(&f);
}

/* The assembled GGUF holds exactly llama_model_quantize's tensor bytes for the same types. */
Test(llm_kl, assembled_gguf_equals_llama_model_quantize, .timeout = 120) {
    fx_t f = {0};
    fx_open(&f, 128);
    ba_error err = {0};
    char dir[512], mine[600], theirs[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(mine, sizeof mine, "%s/mine.gguf", dir);
    snprintf(theirs, sizeof theirs, "%s/theirs.gguf", dir);
    int types[64];
    uniform(&f, "q4_K", types);
    /* One anchored pattern per quantizable tensor (else llama-quantize's mix rules move the rest). */
    int q6 = ba_ggml_type_by_name("q6_K")->id, q2 = ba_ggml_type_by_name("q2_K")->id;
    char pats[64][128];
    const char *pat[64];
    int ptype[64], np = 0;
    for (int i = 0; i < f.g->n_tensors; i++) {
        if (strcmp(f.g->tensors[i].name, "blk.1.ffn_down.weight") == 0) types[i] = q6;
        if (strcmp(f.g->tensors[i].name, "blk.0.attn_v.weight") == 0) types[i] = q2;
        if (types[i] < 0) continue;
        char *o = pats[np];
        *o++ = '^';
        for (const char *c = f.g->tensors[i].name; *c; c++) {
            if (*c == '.') *o++ = '\\';
            *o++ = *c;
        }
        strcpy(o, "$");
        pat[np] = pats[np];
        ptype[np++] = types[i];
    }
    cr_assert_eq(ba_llm_variants_write(f.v, types, mine, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_llama_quantize(f.ll, TINY_GGUF, theirs, ba_ggml_type_by_name("q4_K")->id, pat, ptype, np,
                                   2, NULL, &err),
                 BA_OK, "%s", err.msg);
    ba_gguf_t *a, *b;
    cr_assert_eq(ba_gguf_open(mine, &a, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_gguf_open(theirs, &b, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(a->n_tensors, b->n_tensors);
    for (int i = 0; i < a->n_tensors; i++) {
        const ba_gguf_tensor_t *x = &a->tensors[i], *y = ba_gguf_find_tensor(b, x->name);
        cr_assert(y, "%s", x->name);
        cr_expect_eq(x->type, y->type, "%s", x->name);
        cr_expect(x->nbytes == y->nbytes && memcmp(x->data, y->data, x->nbytes) == 0, "%s: bytes differ",
                  x->name);
    }
    double k1, k2;
    cr_assert_eq(ba_llm_kl_measure(f.k, mine, 0, ba_llm_kl_nchunks(f.k), &k1, NULL, &err), BA_OK, "%s",
                 err.msg);
    cr_assert_eq(ba_llm_kl_measure(f.k, theirs, 0, ba_llm_kl_nchunks(f.k), &k2, NULL, &err), BA_OK, "%s",
                 err.msg);
    cr_expect_eq(k1, k2);
    ba_gguf_free(a);
    ba_gguf_free(b);
    ba_test_rmtree(dir);
    fx_close(&f);
}

static float scattered_weight(int e, int j) {
    return 0.05f + (float)((j * 37 + e * 11) % 29);
}

/* With an imatrix (uneven column weights on two tensors): the store quantizes with the same rows
 * llama_model_quantize uses, so the bytes still match. */
Test(llm_kl, assembled_gguf_with_imatrix_equals_llama_model_quantize, .timeout = 120) {
    BA_TEST_LLAMA_OR_SKIP();
    const ba_llama_t *ll = ba_test_llama_open();
    ba_error err = {0};
    char dir[512], dat[600], mine[600], theirs[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(dat, sizeof dat, "%s/imatrix.dat", dir);
    snprintf(mine, sizeof mine, "%s/mine.gguf", dir);
    snprintf(theirs, sizeof theirs, "%s/theirs.gguf", dir);
    const char *names[2] = {"blk.0.ffn_up.weight", "blk.1.attn_k.weight"};
    ba_test_write_imatrix_dat(dat, 2, names, 256, scattered_weight);
    ba_imatrix_t *im;
    cr_assert_eq(ba_imatrix_open(dat, &im, &err), BA_OK, "%s", err.msg);
    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_open(TINY_GGUF, &g, &err), BA_OK, "%s", err.msg);
    ba_llm_variants_t *v;
    cr_assert_eq(ba_llm_variants_new(ll, g, im, &v, &err), BA_OK, "%s", err.msg);
    static const char *const tn[3] = {"q2_K", "q3_K", "q5_K"};
    int types[64];
    char pats[64][128];
    const char *pat[64];
    int ptype[64], np = 0;
    for (int i = 0; i < g->n_tensors; i++) {
        types[i] = -1;
        if (!ba_ggml_tensor_quantizable(g->tensors[i].name, g->tensors[i].n_dims)) continue;
        types[i] = ba_ggml_type_by_name(tn[i % 3])->id;
        char *o = pats[np];
        *o++ = '^';
        for (const char *c = g->tensors[i].name; *c; c++) {
            if (*c == '.') *o++ = '\\';
            *o++ = *c;
        }
        strcpy(o, "$");
        pat[np] = pats[np];
        ptype[np++] = types[i];
    }
    cr_assert_eq(ba_llm_variants_write(v, types, mine, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_llama_quantize(ll, TINY_GGUF, theirs, ba_ggml_type_by_name("q8_0")->id, pat, ptype, np, 1,
                                   im, &err),
                 BA_OK, "%s", err.msg);
    ba_gguf_t *a, *b, *plain;
    char plain_path[600];
    snprintf(plain_path, sizeof plain_path, "%s/plain.gguf", dir);
    cr_assert_eq(ba_llama_quantize(ll, TINY_GGUF, plain_path, ba_ggml_type_by_name("q8_0")->id, pat, ptype,
                                   np, 1, NULL, &err),
                 BA_OK, "%s", err.msg);
    cr_assert_eq(ba_gguf_open(mine, &a, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_gguf_open(theirs, &b, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_gguf_open(plain_path, &plain, &err), BA_OK, "%s", err.msg);
    for (int i = 0; i < a->n_tensors; i++) {
        const ba_gguf_tensor_t *x = &a->tensors[i], *y = ba_gguf_find_tensor(b, x->name),
                               *z = ba_gguf_find_tensor(plain, x->name);
        cr_assert(y && z, "%s", x->name);
        cr_expect_eq(x->type, y->type, "%s", x->name);
        cr_expect(x->nbytes == y->nbytes && memcmp(x->data, y->data, x->nbytes) == 0, "%s: bytes differ",
                  x->name);
        int covered = !strcmp(x->name, names[0]) || !strcmp(x->name, names[1]);
        if (covered)
            cr_expect(memcmp(y->data, z->data, y->nbytes) != 0, "%s: the imatrix changed nothing", x->name);
    }
    ba_gguf_free(a);
    ba_gguf_free(b);
    ba_gguf_free(plain);
    ba_llm_variants_free(v);
    ba_gguf_free(g);
    ba_imatrix_free(im);
    ba_test_rmtree(dir);
}

/* llama.cpp's own Q4_K_M mix: mostly q4_K, some tensors q6_K (its rules), norms f32. */
Test(llm_kl, llama_mix_baseline, .timeout = 60) {
    BA_TEST_LLAMA_OR_SKIP();
    const ba_llama_t *ll = ba_test_llama_open();
    ba_error err = {0};
    char dir[512], out[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/q4km.gguf", dir);
    cr_expect_eq(ba_llama_quantize_mix(ll, TINY_GGUF, out, "Q4_K_X", 1, NULL, &err), BA_ERR_INPUT);
    cr_assert_eq(ba_llama_quantize_mix(ll, TINY_GGUF, out, "Q4_K_M", 1, NULL, &err), BA_OK, "%s", err.msg);
    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_open(out, &g, &err), BA_OK, "%s", err.msg);
    int q4 = 0, q6 = 0, other = 0;
    for (int i = 0; i < g->n_tensors; i++) {
        const ba_gguf_tensor_t *x = &g->tensors[i];
        if (!ba_ggml_tensor_quantizable(x->name, x->n_dims)) continue;
        const char *n = ba_ggml_type_by_id(x->type)->name;
        q4 += !strcmp(n, "q4_K"), q6 += !strcmp(n, "q6_K"), other += strcmp(n, "q4_K") && strcmp(n, "q6_K");
    }
    cr_expect(q4 > q6 && q6 > 0 && other == 0, "q4_K %d q6_K %d other %d", q4, q6, other);
    ba_gguf_free(g);
    ba_test_rmtree(dir);
}
