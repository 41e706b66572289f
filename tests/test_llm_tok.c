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
#include "tests/pb_write.h"

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
        for (int k = 0; k < n && og < sizeof got - 16; k++)
            og += (size_t)snprintf(got + og, sizeof got - og, " %d", t[k]);
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

Test(llm_tok, spm_tokenizes_as_sentencepiece, .timeout = 60) {
    tokenizes_as_reference(SPM_DIR, "spm");
}
Test(llm_tok, bpe_tokenizes_as_tokenizers_js, .timeout = 60) {
    tokenizes_as_reference(BPE_DIR, "bpe");
}

/* ---- the commands on the checkpoints ---- */

/* A scratch checkpoint: config.json, model.safetensors (and the tokenizer files unless
 * bare) of the fixture checkpoint src, copied. */
static void scratch_copy(const char *src, char *dir, size_t cap, int bare) {
    cr_assert_eq(ba_test_tmpdir(dir, cap), 0);
    static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.model",
                                        "tokenizer.json"};
    for (int i = 0; i < 4; i++) {
        char s[700], d[700];
        snprintf(s, sizeof s, "%s/%s", src, files[i]);
        snprintf(d, sizeof d, "%s/%s", dir, files[i]);
        if ((bare && i >= 2) || access(s, R_OK) != 0) continue;
        uint8_t *data;
        size_t n;
        ba_error err = {0};
        cr_assert_eq(ba_file_read(s, &data, &n, &err), BA_OK, "%s", err.msg);
        FILE *f = fopen(d, "wb");
        cr_assert(f && fwrite(data, 1, n, f) == n, "%s", d);
        fclose(f);
        free(data);
    }
}

static void write_bytes(const char *dir, const char *name, const void *data, size_t n) {
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    cr_assert(f, "%s", p);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

Test(llm_tok, search_and_quantize_take_both_checkpoints, .timeout = 240) {
    BA_TEST_LLAMA_OR_SKIP();
    setenv(BA_LLAMA_DIR_ENV, ba_test_llama_dir(), 1);
    const ba_llama_t *ll = ba_test_llama_open();
    char dir[512], db[600], q[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    setenv("TMPDIR", dir, 1);
    json_t *refs = json_load_file(TOK_DIR "/refs.json", 0, NULL);
    cr_assert(refs);
    static const char *const names[] = {"spm", "bpe"}, *const dirs[] = {SPM_DIR, BPE_DIR};
    for (int k = 0; k < 2; k++) {
        ba_test_run_t r = ba_test_cli("--db", db, "-q", "llm-search", dirs[k], "--text", CALIB_TXT,
                                      "--budget", "avg-bits=12", "--types", "q8_0,f16", "--study", names[k],
                                      "--generations", "2", "--offspring", "4", "--format", "json", NULL);
        cr_assert_eq(r.status, 0, "%s: %s", names[k], r.err);
        json_t *j = json_loads(r.out, 0, NULL);
        cr_assert(j, "%s", r.out);
        double kl = json_real_value(json_object_get(j, "kl"));
        cr_expect(kl > 0 && isfinite(kl), "%s: kl %g", names[k], kl);
        cr_expect_eq(json_object_size(json_object_get(j, "types")), 8, "%s", names[k]);
        json_decref(j);
        ba_test_run_free(&r);
        snprintf(q, sizeof q, "%s/%s.gguf", dir, names[k]);
        r = ba_test_cli("--db", db, "-q", "llm-quantize", "--study", names[k], "-o", q, NULL);
        cr_assert_eq(r.status, 0, "%s: %s", names[k], r.err);
        ba_test_run_free(&r);
        /* the quantized model keeps the vocabulary: the long reference text tokenizes the same */
        json_t *list = json_object_get(refs, names[k]),
               *last = json_array_get(list, json_array_size(list) - 1);
        int32_t *t = NULL;
        int n = 0;
        ba_error err = {0};
        cr_assert_eq(ba_llama_tokenize(ll, q, json_string_value(json_array_get(last, 0)), &t, &n, &err),
                     BA_OK, "%s", err.msg);
        json_t *ids = json_array_get(last, 1);
        cr_assert_eq((size_t)n, json_array_size(ids), "%s", names[k]);
        for (int i = 0; i < n; i++) cr_expect_eq(t[i], json_integer_value(json_array_get(ids, i)));
        free(t);
    }
    unsetenv("TMPDIR");
    cr_expect_eq(ba_test_hf_temporaries(dir), 0);
    json_decref(refs);
    ba_test_rmtree(dir);
}

/* ---- bad tokenizer files ---- */

/* A SentencePiece piece {piece (1), score (2), type (3)} into pieces (field 1). */
static void pb_piece(ba_pb_t *p, const char *piece, float score, int type) {
    ba_pb_t s = {.n = 0};
    ba_pb_str(&s, 1, piece);
    ba_pb_f32(&s, 2, score);
    ba_pb_int(&s, 3, (uint64_t)type);
    ba_pb_msg(p, 1, &s);
    cr_assert(!p->full);
}

/* A small SentencePiece model: <unk> <s> </s>, two byte pieces, "a" (type a_type, score a_score),
 * trainer_spec model_type / byte_fallback / bos_id. */
static ba_pb_t spm_model(int model_type, int byte_fallback, int a_type, float a_score, int64_t bos_id) {
    ba_pb_t p = {.n = 0};
    pb_piece(&p, "<unk>", 0, 2);
    pb_piece(&p, "<s>", 0, 3);
    pb_piece(&p, "</s>", 0, 3);
    pb_piece(&p, "<0x00>", 0, 6);
    pb_piece(&p, "<0x01>", 0, 6);
    pb_piece(&p, "a", a_score, a_type);
    ba_pb_t t = {.n = 0};
    ba_pb_key(&t, 3, 0);
    ba_pb_varint(&t, (uint64_t)model_type);
    ba_pb_key(&t, 35, 0);
    ba_pb_varint(&t, (uint64_t)byte_fallback);
    ba_pb_key(&t, 41, 0);
    ba_pb_varint(&t, (uint64_t)bos_id);
    ba_pb_bytes(&p, 2, t.b, t.n);
    return p;
}

/* llm-sensitivity of the scratch checkpoint dir: exit 2, the error naming file and want, no
 * temporary GGUF left in $TMPDIR. */
static void expect_refused(const char *dir, const char *file, const char *want) {
    char tmp[512];
    cr_assert_eq(ba_test_tmpdir(tmp, sizeof tmp), 0);
    setenv("TMPDIR", tmp, 1);
    ba_test_run_t r = ba_test_cli("llm-sensitivity", dir, "--types", "q8_0", NULL);
    unsetenv("TMPDIR");
    cr_expect_eq(r.status, 2, "%s: %s", want, r.err);
    char path[700];
    snprintf(path, sizeof path, "bitalloc: error: %s/%s", dir, file);
    cr_expect(strstr(r.err, path), "want '%s': %s", path, r.err);
    cr_expect(strstr(r.err, want), "want '%s': %s", want, r.err);
    cr_expect_eq(ba_test_hf_temporaries(tmp), 0);
    ba_test_run_free(&r);
    ba_test_rmtree(tmp);
}

Test(llm_tok, bad_sentencepiece_models_exit_2_naming_the_problem) {
    char dir[512];
    scratch_copy(SPM_DIR, dir, sizeof dir, 0);
    uint8_t *real;
    size_t n;
    ba_error err = {0};
    cr_assert_eq(ba_file_read(SPM_DIR "/tokenizer.model", &real, &n, &err), BA_OK, "%s", err.msg);
    write_bytes(dir, "tokenizer.model", real, n / 2);
    expect_refused(dir, "tokenizer.model", "not a SentencePiece model: truncated or malformed protobuf");
    write_bytes(dir, "tokenizer.model", real, 0);
    expect_refused(dir, "tokenizer.model", "not a SentencePiece model: the file is empty");
    free(real);
    ba_pb_t p = spm_model(2, 1, 1, -1.0f, 1);
    write_bytes(dir, "tokenizer.model", p.b, p.n);
    /* the hand-made model itself converts (it is the base of the bad ones below) */
    char out[700];
    snprintf(out, sizeof out, "%s/ok.gguf", dir);
    cr_expect_eq(ba_hf_convert(dir, out, &err), BA_OK, "%s", err.msg);
    unlink(out);
    p = spm_model(1, 1, 1, -1.0f, 1);
    write_bytes(dir, "tokenizer.model", p.b, p.n);
    expect_refused(dir, "tokenizer.model", "a SentencePiece UNIGRAM model is not supported (only BPE");
    p = spm_model(2, 0, 1, -1.0f, 1);
    write_bytes(dir, "tokenizer.model", p.b, p.n);
    expect_refused(dir, "tokenizer.model", "a SentencePiece model without byte_fallback is not supported");
    p = spm_model(2, 1, 9, -1.0f, 1);
    write_bytes(dir, "tokenizer.model", p.b, p.n);
    expect_refused(dir, "tokenizer.model", "piece 5: type 9 is not one of 1..6");
    p = spm_model(2, 1, 1, NAN, 1);
    write_bytes(dir, "tokenizer.model", p.b, p.n);
    expect_refused(dir, "tokenizer.model", "piece 5 ('a'): score is not finite");
    p = spm_model(2, 1, 1, -1.0f, 5000);
    write_bytes(dir, "tokenizer.model", p.b, p.n);
    expect_refused(dir, "tokenizer.model", "trainer_spec.bos_id 5000 is not a piece (0..5) or -1");
    p = spm_model(2, 1, 1, -1.0f, 1);
    p.b[p.n - 1] = 0x80; /* an unterminated varint at the end */
    write_bytes(dir, "tokenizer.model", p.b, p.n);
    expect_refused(dir, "tokenizer.model", "truncated or malformed");
    ba_pb_t u = {.n = 0};
    pb_piece(&u, "\xff\xfe", 0, 1);
    write_bytes(dir, "tokenizer.model", u.b, u.n);
    expect_refused(dir, "tokenizer.model", "piece 0 is not UTF-8 text without NUL bytes");
    /* the real model with a vocab_size below its pieces; added tokens past vocab_size */
    ba_test_rmtree(dir);
    scratch_copy(SPM_DIR, dir, sizeof dir, 0);
    json_t *c = json_load_file(SPM_DIR "/config.json", 0, NULL);
    json_object_set_new(c, "vocab_size", json_integer(600));
    char cp[700];
    snprintf(cp, sizeof cp, "%s/config.json", dir);
    cr_assert_eq(json_dump_file(c, cp, 0), 0);
    json_decref(c);
    expect_refused(dir, "tokenizer.model", "700 pieces, more than config.json's vocab_size 600");
    ba_test_rmtree(dir);
    scratch_copy(SPM_DIR, dir, sizeof dir, 0);
    snprintf(cp, sizeof cp, "%s/added_tokens.json", dir);
    cr_assert_eq(ba_test_write_file(cp, "{\"<extra>\": 700}"), 0);
    expect_refused(dir, "added_tokens.json",
                   "token '<extra>': needs a text and an id from 0 to vocab_size-1 (699)");
    snprintf(cp, sizeof cp, "%s/tokenizer_config.json", dir);
    cr_assert_eq(ba_test_write_file(cp, "{\"add_bos_token\": \"yes\"}"), 0);
    expect_refused(dir, "tokenizer_config.json", "'add_bos_token' must be true or false");
    ba_test_rmtree(dir);
}

/* The fixture's tokenizer.json with the JSON value val set at model.KEY (model != 0) or KEY. */
static void bpe_with(const char *dir, int model, const char *key, const char *val) {
    json_t *j = json_load_file(BPE_DIR "/tokenizer.json", 0, NULL);
    cr_assert(j);
    json_object_set_new(model ? json_object_get(j, "model") : j, key, json_loads(val, JSON_DECODE_ANY, NULL));
    char p[700];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    cr_assert_eq(json_dump_file(j, p, 0), 0);
    json_decref(j);
}

Test(llm_tok, bad_bpe_tokenizers_exit_2_naming_the_problem) {
    char dir[512];
    scratch_copy(BPE_DIR, dir, sizeof dir, 1);
    /* GPT-2's own pre-tokenizer (ByteLevel with its regex) is another one: refused, not guessed */
    bpe_with(dir, 0, "pre_tokenizer",
             "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": "
             "true}");
    expect_refused(dir, "tokenizer.json",
                   "the byte-level BPE pre-tokenizer is not recognised (only Llama 3's");
    expect_refused(dir, "tokenizer.json", "found pre_tokenizer {\"type\":\"ByteLevel\"");
    bpe_with(dir, 0, "pre_tokenizer",
             "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
             "\"\\\\p{N}{1,3}|\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": "
             "\"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}");
    expect_refused(dir, "tokenizer.json", "pre-tokenizer is not recognised");
    bpe_with(dir, 0, "normalizer", "{\"type\": \"NFC\"}");
    expect_refused(dir, "tokenizer.json", "found a normalizer and pre_tokenizer");
    bpe_with(dir, 1, "merges", "[\"a b\", \"abc\"]");
    expect_refused(dir, "tokenizer.json", "model.merges[1]: not \"LEFT RIGHT\" or [LEFT, RIGHT]");
    bpe_with(dir, 1, "merges", "[[\"a\", \"b\"], [\"a\"]]");
    expect_refused(dir, "tokenizer.json", "model.merges[1]: not \"LEFT RIGHT\" or [LEFT, RIGHT]");
    bpe_with(dir, 1, "merges", "[]");
    expect_refused(dir, "tokenizer.json", "a BPE tokenizer without byte_fallback and without merges");
    bpe_with(dir, 1, "type", "\"WordPiece\"");
    expect_refused(dir, "tokenizer.json", "tokenizer model 'WordPiece' is not supported");
    /* merges as [LEFT, RIGHT] pairs (newer tokenizers) convert like the strings */
    json_t *j = json_load_file(BPE_DIR "/tokenizer.json", 0, NULL), *pairs = json_array(), *x;
    size_t i;
    json_array_foreach(json_object_get(json_object_get(j, "model"), "merges"), i, x) {
        const char *s = json_string_value(x), *sp = strchr(s, ' ');
        json_array_append_new(pairs, json_pack("[s#s]", s, (int)(sp - s), sp + 1));
    }
    json_object_set_new(json_object_get(j, "model"), "merges", pairs);
    char p[700], a[700], b[700];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    cr_assert_eq(json_dump_file(j, p, 0), 0);
    json_decref(j);
    snprintf(a, sizeof a, "%s/a.gguf", dir);
    snprintf(b, sizeof b, "%s/b.gguf", dir);
    ba_error err = {0};
    cr_assert_eq(ba_hf_convert(dir, a, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_hf_convert(BPE_DIR, b, &err), BA_OK, "%s", err.msg);
    /* general.name is the folder's name: compare the merges, not the files */
    ba_gguf_t *ga, *gb;
    cr_assert_eq(ba_gguf_open(a, &ga, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_gguf_open(b, &gb, &err), BA_OK, "%s", err.msg);
    const ba_gguf_kv_t *ma = ba_gguf_find_kv(ga, "tokenizer.ggml.merges"),
                       *mb = ba_gguf_find_kv(gb, "tokenizer.ggml.merges");
    cr_assert(ma && mb && ma->val_size == mb->val_size);
    cr_expect_eq(memcmp(ma->val, mb->val, ma->val_size), 0);
    ba_gguf_free(ga);
    ba_gguf_free(gb);
    ba_test_rmtree(dir);
}

/* llm-quantize of a study whose checkpoint's tokenizer.model went bad since: exit 2, no output. */
Test(llm_tok, quantize_of_a_checkpoint_whose_tokenizer_broke_exits_2, .timeout = 120) {
    BA_TEST_LLAMA_OR_SKIP();
    setenv(BA_LLAMA_DIR_ENV, ba_test_llama_dir(), 1);
    char dir[512], ck[512], db[600], q[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    scratch_copy(SPM_DIR, ck, sizeof ck, 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    snprintf(q, sizeof q, "%s/q.gguf", dir);
    setenv("TMPDIR", dir, 1);
    ba_test_run_t r =
        ba_test_cli("--db", db, "-q", "llm-search", ck, "--text", CALIB_TXT, "--budget", "avg-bits=12",
                    "--types", "q8_0,f16", "--study", "s", "--generations", "1", "--offspring", "2", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    ba_pb_t p = spm_model(1, 1, 1, -1.0f, 1);
    write_bytes(ck, "tokenizer.model", p.b, p.n);
    r = ba_test_cli("--db", db, "-q", "llm-quantize", "--study", "s", "-o", q, NULL);
    unsetenv("TMPDIR");
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "tokenizer.model: a SentencePiece UNIGRAM model is not supported"), "%s", r.err);
    cr_expect_neq(access(q, F_OK), 0);
    cr_expect_eq(ba_test_hf_temporaries(dir), 0);
    ba_test_run_free(&r);
    ba_test_rmtree(ck);
    ba_test_rmtree(dir);
}

/* The digest and the file list cover the tokenizer files the conversion reads. */
Test(llm_tok, digest_and_files_cover_the_tokenizer_files) {
    char dir[512], p[700], h0[65], h1[65], h2[65];
    scratch_copy(SPM_DIR, dir, sizeof dir, 0);
    ba_error err = {0};
    cr_assert_eq(ba_llm_model_sha256(dir, h0, &err), BA_OK, "%s", err.msg);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    cr_assert_eq(ba_test_write_file(p, "{\"add_bos_token\": true}"), 0);
    cr_assert_eq(ba_llm_model_sha256(dir, h1, &err), BA_OK, "%s", err.msg);
    cr_expect_str_neq(h0, h1);
    ba_pb_t m = spm_model(2, 1, 1, -1.0f, 1);
    write_bytes(dir, "tokenizer.model", m.b, m.n);
    cr_assert_eq(ba_llm_model_sha256(dir, h2, &err), BA_OK, "%s", err.msg);
    cr_expect_str_neq(h1, h2);
    char **files;
    int n;
    cr_assert_eq(ba_llm_model_files(dir, &files, &n, &err), BA_OK, "%s", err.msg);
    int seen = 0;
    for (int i = 0; i < n; i++) {
        const char *b = strrchr(files[i], '/');
        b = b ? b + 1 : files[i];
        if (!strcmp(b, "tokenizer.model")) seen |= 1;
        if (!strcmp(b, "tokenizer_config.json")) seen |= 2;
        if (!strcmp(b, "tokenizer.json")) seen |= 4;
        free(files[i]);
    }
    free(files);
    cr_expect_eq(seen, 3);
    /* the converted GGUF says add_bos_token */
    snprintf(p, sizeof p, "%s/m.gguf", dir);
    cr_assert_eq(ba_hf_convert(dir, p, &err), BA_OK, "%s", err.msg);
    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_open(p, &g, &err), BA_OK, "%s", err.msg);
    const ba_gguf_kv_t *kv = ba_gguf_find_kv(g, "tokenizer.ggml.add_bos_token");
    cr_expect(kv && kv->type == BA_GGUF_BOOL && kv->val[0] == 1);
    cr_expect_null(ba_gguf_find_kv(g, "tokenizer.ggml.add_eos_token"));
    ba_gguf_free(g);
    ba_test_rmtree(dir);
}

/* added_tokens.json and tokenizer_config.json's added_tokens_decoder over the SentencePiece
 * pieces, as convert writes them: user-defined (score -1000, '▁' as a space) or control. */
Test(llm_tok, spm_added_tokens_as_convert_writes_them) {
    char dir[512], p[700];
    scratch_copy(SPM_DIR, dir, sizeof dir, 0);
    snprintf(p, sizeof p, "%s/added_tokens.json", dir);
    cr_assert_eq(ba_test_write_file(p, "{\"<extra>\": 697}"), 0);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    cr_assert_eq(ba_test_write_file(p, "{\"added_tokens_decoder\": {"
                                       "\"698\": {\"content\": \"\xe2\x96\x81user\", \"special\": false},"
                                       "\"699\": {\"content\": \"<|im_start|>\", \"special\": false},"
                                       "\"2\": {\"content\": \"</s>\", \"special\": true}}}"),
                 0);
    snprintf(p, sizeof p, "%s/m.gguf", dir);
    ba_error err = {0};
    cr_assert_eq(ba_hf_convert(dir, p, &err), BA_OK, "%s", err.msg);
    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_open(p, &g, &err), BA_OK, "%s", err.msg);
    const ba_gguf_kv_t *sc = ba_gguf_find_kv(g, "tokenizer.ggml.scores");
    cr_assert(sc);
    float s[4];
    memcpy(s, sc->val + 4 * 697, 12);
    memcpy(&s[3], sc->val + 4 * 2, 4);
    cr_expect(token_is(g, 697, "<extra>") && type_of(g, 697) == 4 && s[0] == -1000.0f);
    cr_expect(token_is(g, 698, " user") && type_of(g, 698) == 4 && s[1] == -1000.0f);
    cr_expect(token_is(g, 699, "<|im_start|>") && type_of(g, 699) == 3 && s[2] == -1000.0f);
    cr_expect(token_is(g, 2, "</s>") && type_of(g, 2) == 3 && s[3] == -1000.0f);
    ba_gguf_free(g);
    ba_test_rmtree(dir);
}

Test(llm_tok, a_checkpoint_without_a_tokenizer_exits_2) {
    char dir[512];
    scratch_copy(SPM_DIR, dir, sizeof dir, 1);
    expect_refused(dir, "tokenizer.json",
                   "missing (a safetensors checkpoint needs its tokenizer.model or tokenizer.json)");
    ba_test_rmtree(dir);
}
