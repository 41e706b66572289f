/* llm/hf_convert's tokenizers against the libraries that made them (tests/fixtures/llm_tok,
 * make_llm_tok.py): a SentencePiece tokenizer.model trained by the real sentencepiece and Llama 3's
 * byte-level BPE tokenizer.json (cut to 1024 tokens) convert to GGUF vocabularies that libllama
 * loads and tokenizes to the ids sentencepiece / tokenizers.js gave (refs.json); llm-search and
 * llm-quantize take both checkpoints; bad tokenizer files exit 2 naming the file and the reason and
 * leave no temporary GGUF behind. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "helpers.h"
#include "llm/gguf.h"
#include "llm/hf_convert.h"
#include "llm/spm.h"
#include "llm_fixture.h"

#define TOK_DIR BA_FIXTURES "/llm_tok"
#define SPM_DIR TOK_DIR "/spm"
#define BPE_DIR TOK_DIR "/bpe"

static ba_gguf_t *convert(const char *ckpt, char *dir, size_t cap) {
    cr_assert_eq(ba_test_tmpdir(dir, cap), 0);
    char out[700];
    snprintf(out, sizeof out, "%s/m.gguf", dir);
    ba_error err = {0};
    cr_assert_eq(ba_hf_convert(ckpt, out, &err), BA_OK, "%s", err.msg);
    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_open(out, &g, &err), BA_OK, "%s", err.msg);
    return g;
}

static const char *kv_str(const ba_gguf_t *g, const char *key) {
    static char buf[256];
    const char *s;
    uint64_t n;
    cr_assert_eq(ba_gguf_kv_str(ba_gguf_find_kv(g, key), &s, &n), 0, "%s", key);
    snprintf(buf, sizeof buf, "%.*s", (int)n, s);
    return buf;
}

static int64_t kv_int(const ba_gguf_t *g, const char *key) {
    int64_t v = -1;
    cr_assert_eq(ba_gguf_kv_int(ba_gguf_find_kv(g, key), &v), 0, "%s", key);
    return v;
}

static int32_t type_of(const ba_gguf_t *g, uint64_t id) {
    const ba_gguf_kv_t *ty = ba_gguf_find_kv(g, "tokenizer.ggml.token_type");
    cr_assert(ty && ty->arr_type == BA_GGUF_I32 && id < ty->n);
    int32_t t;
    memcpy(&t, ty->val + 4 * id, 4);
    return t;
}

static int token_is(const ba_gguf_t *g, uint64_t id, const char *want) {
    const char *s;
    uint64_t n;
    cr_assert_eq(ba_gguf_kv_arr_str(ba_gguf_find_kv(g, "tokenizer.ggml.tokens"), id, &s, &n), 0);
    return n == strlen(want) && !memcmp(s, want, n);
}

Test(llm_tok, spm_vocabulary_is_the_sentencepiece_models) {
    char dir[512];
    ba_gguf_t *g = convert(SPM_DIR, dir, sizeof dir);
    cr_expect_str_eq(kv_str(g, "tokenizer.ggml.model"), "llama");
    cr_expect_str_eq(kv_str(g, "tokenizer.ggml.pre"), "default");
    const ba_gguf_kv_t *tok = ba_gguf_find_kv(g, "tokenizer.ggml.tokens"),
                       *sc = ba_gguf_find_kv(g, "tokenizer.ggml.scores");
    cr_assert(tok && sc);
    cr_expect_eq(tok->n, 700);
    cr_expect_eq(sc->n, 700);
    cr_expect_eq(kv_int(g, "tokenizer.ggml.bos_token_id"), 1);
    cr_expect_eq(kv_int(g, "tokenizer.ggml.eos_token_id"), 2);
    cr_expect_eq(kv_int(g, "tokenizer.ggml.unknown_token_id"), 0);
    cr_expect_null(ba_gguf_find_kv(g, "tokenizer.ggml.add_space_prefix")); /* add_dummy_prefix: default */
    cr_expect_null(ba_gguf_find_kv(g, "tokenizer.ggml.merges"));
    /* sentencepiece's layout: <unk> <s> </s>, the 256 byte pieces, then merged pieces by score */
    cr_expect(token_is(g, 0, "<unk>") && token_is(g, 1, "<s>") && token_is(g, 2, "</s>"));
    cr_expect_eq(type_of(g, 0), 2);
    cr_expect_eq(type_of(g, 1), 3);
    cr_expect_eq(type_of(g, 2), 3);
    cr_expect(token_is(g, 3, "<0x00>") && token_is(g, 258, "<0xFF>"));
    for (int i = 3; i < 259; i++) cr_expect_eq(type_of(g, i), 6, "%d", i);
    for (int i = 259; i < 700; i++) cr_expect_eq(type_of(g, i), 1, "%d", i);
    float s0, s1;
    memcpy(&s0, sc->val + 4 * 259, 4);
    memcpy(&s1, sc->val + 4 * 260, 4);
    cr_expect(s0 > s1 && s0 <= 0, "scores %g %g", s0, s1); /* BPE: -rank */
    ba_gguf_free(g);
    ba_test_rmtree(dir);
}

Test(llm_tok, bpe_vocabulary_is_llama3s) {
    char dir[512];
    ba_gguf_t *g = convert(BPE_DIR, dir, sizeof dir);
    cr_expect_str_eq(kv_str(g, "tokenizer.ggml.model"), "gpt2");
    cr_expect_str_eq(kv_str(g, "tokenizer.ggml.pre"), "llama-bpe");
    const ba_gguf_kv_t *tok = ba_gguf_find_kv(g, "tokenizer.ggml.tokens"),
                       *mg = ba_gguf_find_kv(g, "tokenizer.ggml.merges");
    cr_assert(tok && mg);
    cr_expect_eq(tok->n, 1280);
    cr_expect_eq(mg->n, 1090);
    const char *s;
    uint64_t n;
    cr_assert_eq(ba_gguf_kv_arr_str(mg, 0, &s, &n), 0);
    cr_expect(n == 5 && !memcmp(s, "\xc4\xa0 \xc4\xa0", 5), "%.*s", (int)n, s); /* "Ġ Ġ" */
    cr_expect_null(ba_gguf_find_kv(g, "tokenizer.ggml.scores"));
    cr_expect_null(ba_gguf_find_kv(g, "tokenizer.ggml.unknown_token_id"));
    cr_expect_eq(kv_int(g, "tokenizer.ggml.bos_token_id"), 1024);
    cr_expect_eq(kv_int(g, "tokenizer.ggml.eos_token_id"), 1025);
    cr_expect(token_is(g, 1024, "<|begin_of_text|>") && token_is(g, 0, "!"));
    for (int i = 0; i < 1024; i++) cr_expect_eq(type_of(g, i), 1, "%d", i);
    for (int i = 1024; i < 1280; i++) cr_expect_eq(type_of(g, i), 3, "%d", i);
    ba_gguf_free(g);
    ba_test_rmtree(dir);
}

/* libllama's tokens of each reference string of the converted checkpoint = the library's. */
static void tokenizes_as_reference(const char *ckpt, const char *which) {
    BA_TEST_LLAMA_OR_SKIP();
    const ba_llama_t *ll = ba_test_llama_open();
    char dir[512], out[700];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/m.gguf", dir);
    ba_error err = {0};
    cr_assert_eq(ba_hf_convert(ckpt, out, &err), BA_OK, "%s", err.msg);
    json_t *refs = json_load_file(TOK_DIR "/refs.json", 0, NULL), *pair;
    cr_assert(refs);
    json_t *list = json_object_get(refs, which);
    cr_assert_geq(json_array_size(list), 8);
    size_t i;
    int total = 0;
    json_array_foreach(list, i, pair) {
        const char *text = json_string_value(json_array_get(pair, 0));
        json_t *ids = json_array_get(pair, 1);
        int32_t *t = NULL;
        int n = 0;
        cr_assert_eq(ba_llama_tokenize(ll, out, text, &t, &n, &err), BA_OK, "%s", err.msg);
        char got[2048] = "", want[2048] = "";
        size_t og = 0, ow = 0;
        for (int k = 0; k < n && og < sizeof got - 16; k++) og += (size_t)snprintf(got + og, sizeof got - og, " %d", t[k]);
        for (size_t k = 0; k < json_array_size(ids) && ow < sizeof want - 16; k++)
            ow += (size_t)snprintf(want + ow, sizeof want - ow, " %lld",
                                   (long long)json_integer_value(json_array_get(ids, k)));
        cr_expect_str_eq(got, want, "%s: '%s'", which, text);
        total += n;
        free(t);
    }
    cr_expect_gt(total, 100);
    json_decref(refs);
    ba_test_rmtree(dir);
}

Test(llm_tok, spm_tokenizes_as_sentencepiece, .timeout = 60) { tokenizes_as_reference(SPM_DIR, "spm"); }
Test(llm_tok, bpe_tokenizes_as_tokenizers_js, .timeout = 60) { tokenizes_as_reference(BPE_DIR, "bpe"); }
