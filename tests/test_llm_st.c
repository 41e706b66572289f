/* llm/hf_convert: the tiny llama's HF checkpoint (tests/fixtures/llm: config.json,
 * tokenizer.json, two safetensors shards with HF names and HF's rotate-half q/k rows) converts to
 * a GGUF with the fixture GGUF's tensors, hyperparameters and vocabulary; libllama loads it; an
 * llm-search of the checkpoint gives the plan the same search of the GGUF gives; bad checkpoints
 * exit 2 naming what is wrong. rope_scaling llama3, linear and yarn (tests/fixtures/llm_rope) convert as
 * convert_hf_to_gguf.py writes them and libllama's logits match an HF-style PyTorch forward. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ggml_types.h"
#include "core/tensor.h"
#include "core/util.h"
#include "eval/npy.h"
#include "helpers.h"
#include "llm/gguf.h"
#include "llm/hf_convert.h"
#include "llm/llama.h"
#include "llm_fixture.h"

#define HF_DIR BA_FIXTURES "/llm"

static void check_same_as_fixture(const char *converted) {
    ba_gguf_t *a, *b;
    ba_error err = {0};
    cr_assert_eq(ba_gguf_open(TINY_GGUF, &a, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_gguf_open(converted, &b, &err), BA_OK, "%s", err.msg);
    /* every key of the fixture (its name aside) with the same type and value bytes */
    for (int i = 0; i < a->n_kv; i++) {
        const ba_gguf_kv_t *x = &a->kv[i];
        if (!strcmp(x->key, "general.name")) continue;
        const ba_gguf_kv_t *y = ba_gguf_find_kv(b, x->key);
        cr_assert(y, "converted GGUF lacks %s", x->key);
        cr_expect_eq(x->type, y->type, "%s", x->key);
        cr_expect_eq(x->arr_type, y->arr_type, "%s", x->key);
        cr_expect_eq(x->n, y->n, "%s", x->key);
        cr_assert_eq(x->val_size, y->val_size, "%s", x->key);
        cr_expect_eq(memcmp(x->val, y->val, x->val_size), 0, "%s", x->key);
    }
    int64_t nv = 0;
    cr_expect_eq(ba_gguf_kv_int(ba_gguf_find_kv(b, "llama.vocab_size"), &nv), 0);
    cr_expect_eq(nv, 354);
    /* the same tensors, in the same types, byte for byte (q/k un-permuted) */
    cr_assert_eq(a->n_tensors, b->n_tensors);
    for (int i = 0; i < a->n_tensors; i++) {
        const ba_gguf_tensor_t *x = &a->tensors[i], *y = ba_gguf_find_tensor(b, x->name);
        cr_assert(y, "converted GGUF lacks %s", x->name);
        cr_expect_eq(x->type, y->type, "%s", x->name);
        cr_assert_eq(x->n_dims, y->n_dims, "%s", x->name);
        for (int d = 0; d < x->n_dims; d++) cr_expect_eq(x->ne[d], y->ne[d], "%s", x->name);
        cr_assert_eq(x->nbytes, y->nbytes, "%s", x->name);
        cr_expect_eq(memcmp(x->data, y->data, x->nbytes), 0, "%s differs", x->name);
    }
    ba_gguf_free(a);
    ba_gguf_free(b);
}

Test(llm_hf, checkpoint_converts_to_the_fixture_gguf) {
    char dir[512], out[600], out2[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/a.gguf", dir);
    snprintf(out2, sizeof out2, "%s/b.gguf", dir);
    ba_error err = {0};
    cr_assert_eq(ba_hf_convert(HF_DIR, out, &err), BA_OK, "%s", err.msg);
    check_same_as_fixture(out);
    /* the index.json names the same checkpoint */
    cr_assert_eq(ba_hf_convert(HF_DIR "/model.safetensors.index.json", out2, &err), BA_OK, "%s", err.msg);
    check_same_as_fixture(out2);
    /* open_any: a GGUF as it is, a checkpoint as a temporary GGUF deleted on free */
    ba_gguf_t *g;
    cr_assert_eq(ba_llm_gguf_open_any(TINY_GGUF, &g, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(g->temporary, 0);
    cr_expect_str_eq(g->path, TINY_GGUF);
    ba_gguf_free(g);
    setenv("TMPDIR", dir, 1);
    cr_assert_eq(ba_llm_gguf_open_any(HF_DIR, &g, &err), BA_OK, "%s", err.msg);
    unsetenv("TMPDIR");
    cr_expect_eq(g->temporary, 1);
    cr_expect(!strncmp(g->path, dir, strlen(dir)), "%s", g->path);
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s", g->path);
    cr_expect_eq(access(tmp, R_OK), 0);
    cr_expect(ba_gguf_find_tensor(g, "blk.1.attn_k.weight"));
    ba_gguf_free(g);
    cr_expect_neq(access(tmp, F_OK), 0, "%s left behind", tmp);
    ba_test_rmtree(dir);
}

/* A one-layer GQA checkpoint written here: hidden 8, 2 query heads, 1 key/value head (head size
 * 4), ffn 8, vocabulary 3 tokens padded to 4; every tensor BF16 with values exact in BF16 (at most
 * 7 significant bits), distinct per row and column. */
static float val_of(int t, int r, int c) {
    return ldexpf((float)(r * 8 + c + 1), t - 8);
}

static void write_gqa_ckpt(const char *dir) {
    static const struct {
        const char *name;
        int rows, cols;
    } ts[] = {{"model.embed_tokens.weight", 4, 8},
              {"model.layers.0.input_layernorm.weight", 8, 0},
              {"model.layers.0.self_attn.q_proj.weight", 8, 8},
              {"model.layers.0.self_attn.k_proj.weight", 4, 8},
              {"model.layers.0.self_attn.v_proj.weight", 4, 8},
              {"model.layers.0.self_attn.o_proj.weight", 8, 8},
              {"model.layers.0.post_attention_layernorm.weight", 8, 0},
              {"model.layers.0.mlp.gate_proj.weight", 8, 8},
              {"model.layers.0.mlp.up_proj.weight", 8, 8},
              {"model.layers.0.mlp.down_proj.weight", 8, 8},
              {"model.norm.weight", 8, 0}};
    int nt = (int)(sizeof ts / sizeof ts[0]);
    char hdr[4096];
    size_t o = (size_t)snprintf(hdr, sizeof hdr, "{");
    uint8_t data[16384];
    size_t off = 0;
    for (int t = 0; t < nt; t++) {
        int n = ts[t].rows * (ts[t].cols ? ts[t].cols : 1);
        if (ts[t].cols)
            o += (size_t)snprintf(hdr + o, sizeof hdr - o, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%d,%d],",
                                  t ? "," : "", ts[t].name, ts[t].rows, ts[t].cols);
        else
            o += (size_t)snprintf(hdr + o, sizeof hdr - o, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%d],",
                                  t ? "," : "", ts[t].name, ts[t].rows);
        o += (size_t)snprintf(hdr + o, sizeof hdr - o, "\"data_offsets\":[%zu,%zu]}", off,
                              off + 2 * (size_t)n);
        for (int k = 0; k < n; k++) {
            int cols = ts[t].cols ? ts[t].cols : 1;
            float f = val_of(t, k / cols, k % cols);
            uint32_t u;
            memcpy(&u, &f, 4);
            uint16_t h = (uint16_t)(u >> 16);
            memcpy(data + off + 2 * (size_t)k, &h, 2);
        }
        off += 2 * (size_t)n;
    }
    o += (size_t)snprintf(hdr + o, sizeof hdr - o, "}");
    while (o % 8) hdr[o++] = ' ';
    char p[700];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    FILE *f = fopen(p, "wb");
    cr_assert(f);
    uint64_t hl = o;
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, o, f);
    fwrite(data, 1, off, f);
    fclose(f);
    snprintf(p, sizeof p, "%s/config.json", dir);
    cr_assert_eq(
        ba_test_write_file(p, "{\"model_type\": \"llama\", \"hidden_size\": 8, \"num_hidden_layers\": 1, "
                              "\"num_attention_heads\": 2, \"num_key_value_heads\": 1, "
                              "\"intermediate_size\": 8, \"rms_norm_eps\": 1e-6, \"rope_theta\": 500000.0, "
                              "\"vocab_size\": 4, \"max_position_embeddings\": 64, "
                              "\"tie_word_embeddings\": true, \"bos_token_id\": 1, \"eos_token_id\": [2, 1], "
                              "\"pad_token_id\": 0}"),
        0);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    cr_assert_eq(
        ba_test_write_file(p, "{\"added_tokens\": [{\"id\": 1, \"content\": \"<s>\", \"special\": true}], "
                              "\"normalizer\": {\"type\": \"Replace\"}, \"model\": {\"type\": \"BPE\", "
                              "\"byte_fallback\": true, \"unk_token\": \"<unk>\", \"merges\": [], "
                              "\"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"<0x41>\": 2}}}"),
        0);
}

Test(llm_hf, gqa_bf16_checkpoint_converts_exactly) {
    char dir[512], out[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    write_gqa_ckpt(dir);
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    ba_error err = {0};
    char st_path[600];
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
    cr_assert_eq(ba_hf_convert(st_path, out, &err), BA_OK, "%s", err.msg);
    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_open(out, &g, &err), BA_OK, "%s", err.msg);
    int64_t v;
    double d;
    cr_expect_eq(ba_gguf_kv_int(ba_gguf_find_kv(g, "llama.attention.head_count_kv"), &v), 0);
    cr_expect_eq(v, 1);
    cr_expect_eq(ba_gguf_kv_int(ba_gguf_find_kv(g, "llama.rope.dimension_count"), &v), 0);
    cr_expect_eq(v, 4);
    cr_expect_eq(ba_gguf_kv_float(ba_gguf_find_kv(g, "llama.rope.freq_base"), &d), 0);
    cr_expect_eq(d, 500000.0);
    cr_expect_eq(ba_gguf_kv_int(ba_gguf_find_kv(g, "general.file_type"), &v), 0);
    cr_expect_eq(v, 32); /* LLAMA_FTYPE_MOSTLY_BF16 */
    cr_expect_eq(ba_gguf_kv_int(ba_gguf_find_kv(g, "tokenizer.ggml.padding_token_id"), &v), 0);
    cr_expect_eq(v, 0);
    cr_expect_eq(ba_gguf_kv_int(ba_gguf_find_kv(g, "tokenizer.ggml.unknown_token_id"), &v), 0);
    cr_expect_eq(v, 0);
    cr_expect_eq(ba_gguf_kv_int(ba_gguf_find_kv(g, "tokenizer.ggml.eos_token_id"), &v),
                 0); /* first of a list */
    cr_expect_eq(v, 2);
    const ba_gguf_kv_t *sp = ba_gguf_find_kv(g, "tokenizer.ggml.add_space_prefix"); /* no Prepend */
    cr_assert(sp);
    cr_expect_eq(sp->type, BA_GGUF_BOOL);
    cr_expect_eq(sp->val[0], 0);
    const ba_gguf_kv_t *tok = ba_gguf_find_kv(g, "tokenizer.ggml.tokens"),
                       *ty = ba_gguf_find_kv(g, "tokenizer.ggml.token_type");
    cr_assert(tok && ty && tok->n == 4 && ty->n == 4);
    static const char *const want_tok[] = {"<unk>", "<s>", "<0x41>", "[PAD3]"};
    static const int32_t want_ty[] = {2, 3, 6, 5};
    for (int i = 0; i < 4; i++) {
        const char *sv;
        uint64_t len;
        cr_assert_eq(ba_gguf_kv_arr_str(tok, (uint64_t)i, &sv, &len), 0);
        cr_expect(len == strlen(want_tok[i]) && !memcmp(sv, want_tok[i], len), "token %d", i);
        int32_t t;
        memcpy(&t, ty->val + 4 * i, 4);
        cr_expect_eq(t, want_ty[i], "token %d type %d", i, t);
    }
    /* norms widened to F32; matrices BF16; q (2 heads) and k (1 head) rows un-permuted per head */
    const ba_gguf_tensor_t *n = ba_gguf_find_tensor(g, "blk.0.ffn_norm.weight");
    cr_assert(n && n->type == 0 && n->ne[0] == 8);
    for (int r = 0; r < 8; r++) {
        float f;
        memcpy(&f, n->data + 4 * r, 4);
        cr_expect_eq(f, val_of(6, r, 0));
    }
    struct {
        const char *name;
        int t, rows, heads;
    } qk[] = {
        {"blk.0.attn_q.weight", 2, 8, 2}, {"blk.0.attn_k.weight", 3, 4, 1}, {"blk.0.attn_v.weight", 4, 4, 0}};
    for (int i = 0; i < 3; i++) {
        const ba_gguf_tensor_t *x = ba_gguf_find_tensor(g, qk[i].name);
        cr_assert(x && x->type == 30 && x->ne[0] == 8 && x->ne[1] == qk[i].rows, "%s", qk[i].name);
        for (int r = 0; r < qk[i].rows; r++) {
            int src = r;
            if (qk[i].heads) { /* GGUF row h*4 + 2j + k = HF row h*4 + k*2 + j */
                int h = r / 4, j = (r % 4) / 2, k = r % 2;
                src = h * 4 + k * 2 + j;
            }
            for (int c = 0; c < 8; c++) {
                uint16_t b;
                memcpy(&b, x->data + 2 * ((size_t)r * 8 + c), 2);
                cr_expect_eq(ba_bf16_to_f32(b), val_of(qk[i].t, src, c), "%s[%d][%d]", qk[i].name, r, c);
            }
        }
    }
    cr_expect_null(ba_gguf_find_tensor(g, "output.weight"));
    ba_gguf_free(g);
    ba_test_rmtree(dir);
}

/* A scratch checkpoint: the fixture's shards (links), index and tokenizer, and config text. */
static void scratch_ckpt(char *dir, size_t cap, const char *config, const char *tokenizer) {
    cr_assert_eq(ba_test_tmpdir(dir, cap), 0);
    static const char *const files[] = {"model-00001-of-00002.safetensors",
                                        "model-00002-of-00002.safetensors", "model.safetensors.index.json"};
    char src[1024], dst[1024];
    for (int i = 0; i < 3; i++) {
        snprintf(src, sizeof src, "%s/%s", HF_DIR, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        cr_assert_eq(symlink(src, dst), 0, "%s", dst);
    }
    uint8_t *text;
    size_t n;
    ba_error err = {0};
    if (config) {
        snprintf(dst, sizeof dst, "%s/config.json", dir);
        cr_assert_eq(ba_test_write_file(dst, config), 0);
    }
    snprintf(dst, sizeof dst, "%s/tokenizer.json", dir);
    if (tokenizer)
        cr_assert_eq(ba_test_write_file(dst, tokenizer), 0);
    else {
        cr_assert_eq(ba_file_read(HF_DIR "/tokenizer.json", &text, &n, &err), BA_OK, "%s", err.msg);
        cr_assert_eq(ba_test_write_file(dst, (const char *)text), 0);
        free(text);
    }
}

/* The fixture's config.json with key set to the JSON value val (NULL: removed). */
static char *config_with(const char *key, const char *val) {
    json_t *j = json_load_file(HF_DIR "/config.json", 0, NULL);
    cr_assert(j);
    if (val)
        json_object_set_new(j, key, json_loads(val, JSON_DECODE_ANY, NULL));
    else
        json_object_del(j, key);
    char *s = json_dumps(j, 0);
    json_decref(j);
    return s;
}

static char *tokenizer_with_merges(void) {
    json_t *j = json_load_file(HF_DIR "/tokenizer.json", 0, NULL);
    cr_assert(j);
    json_t *m = json_array();
    json_array_append_new(m, json_string("a b"));
    json_object_set_new(json_object_get(j, "model"), "merges", m);
    char *s = json_dumps(j, 0);
    json_decref(j);
    return s;
}

/* llm-sensitivity of a scratch checkpoint: exit 2, the error naming want (and want2). */
static void expect_refused(const char *config, const char *tokenizer, const char *want, const char *want2) {
    char dir[512];
    scratch_ckpt(dir, sizeof dir, config, tokenizer);
    ba_test_run_t r = ba_test_cli("llm-sensitivity", dir, "--types", "q8_0", NULL);
    cr_expect_eq(r.status, 2, "%s: %s", want, r.err);
    cr_expect(strstr(r.err, "bitalloc: error: ") && strstr(r.err, want), "want '%s': %s", want, r.err);
    if (want2) cr_expect(strstr(r.err, want2), "want '%s': %s", want2, r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

Test(llm_hf, bad_checkpoints_exit_2_naming_the_problem) {
    expect_refused(NULL, NULL, "config.json: missing", NULL);
    char *c = config_with("model_type", "\"mistral\"");
    expect_refused(c, NULL, "architecture 'mistral' is not supported", "config.json");
    free(c);
    c = config_with("intermediate_size", "640");
    expect_refused(c, NULL,
                   "'model.layers.0.mlp.gate_proj.weight': shape [512, 256], config.json implies [640, 256]",
                   NULL);
    free(c);
    c = config_with("num_hidden_layers", "3");
    expect_refused(c, NULL, "tensor 'blk.2.attn_norm.weight' (GGUF name) is missing", NULL);
    free(c);
    c = config_with("hidden_size", NULL);
    expect_refused(c, NULL, "'hidden_size' is missing", NULL);
    free(c);
    c = config_with("tie_word_embeddings", "false");
    expect_refused(c, NULL, "tensor 'output.weight' (GGUF name) is missing", "tie_word_embeddings");
    free(c);
    /* rope scalings not converted (llm_hf rope tests: llama3, linear, yarn), or malformed;
     * libllama's llama architecture ignores the yarn betas (a beta_slow of 2 gave the logits of 1) */
    static const struct {
        const char *key, *value, *want, *want2;
    } ropes[] = {
        {"rope_scaling", "{\"rope_type\": \"longrope\", \"long_factor\": [1.0]}",
         "rope_scaling type 'longrope' is not supported (only linear, llama3 and yarn", "config.json"},
        {"rope_scaling", "{\"type\": \"dynamic\", \"factor\": 2.0}",
         "rope_scaling type 'dynamic' is not supported", NULL},
        {"rope_scaling",
         "{\"rope_type\": \"yarn\", \"factor\": 4.0, \"attention_factor\": 1.2, "
         "\"original_max_position_embeddings\": 64}",
         "rope_scaling type 'yarn' with 'attention_factor' is not supported", NULL},
        {"rope_scaling",
         "{\"rope_type\": \"yarn\", \"factor\": 4.0, \"truncate\": false, "
         "\"original_max_position_embeddings\": 64}",
         "rope_scaling type 'yarn' with truncate false is not supported", NULL},
        {"rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 4.0}",
         "'rope_scaling.original_max_position_embeddings' is missing (rope_scaling type 'yarn')", NULL},
        {"rope_scaling",
         "{\"rope_type\": \"yarn\", \"factor\": 4.0, \"beta_slow\": 2.0, "
         "\"original_max_position_embeddings\": 64}",
         "'yarn' with beta_slow 2 is not supported (libllama's llama architecture keeps its "
         "default 1)",
         NULL},
        {"rope_scaling",
         "{\"rope_type\": \"yarn\", \"factor\": 4.0, \"beta_slow\": -1, "
         "\"original_max_position_embeddings\": 64}",
         "'rope_scaling.beta_slow' must be a positive number", NULL},
        {"rope_scaling", "{\"factor\": 2.0}", "rope_scaling has no 'rope_type' (or 'type') string", NULL},
        {"rope_scaling", "{\"type\": \"linear\"}", "'rope_scaling.factor' must be a positive number", NULL},
        {"rope_scaling",
         "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
         "\"high_freq_factor\": 4.0}",
         "'rope_scaling.original_max_position_embeddings' is missing", NULL},
        {"rope_scaling",
         "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 4.0, "
         "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 64}",
         "high_freq_factor 4 must exceed low_freq_factor 4", NULL},
        {"rope_parameters", "{\"rope_type\": \"dynamic\", \"factor\": 4.0}",
         "rope_parameters type 'dynamic' is not supported", NULL},
    };
    for (size_t i = 0; i < sizeof ropes / sizeof ropes[0]; i++) {
        c = config_with(ropes[i].key, ropes[i].value);
        expect_refused(c, NULL, ropes[i].want, ropes[i].want2);
        free(c);
    }
    c = config_with("vocab_size", "300");
    expect_refused(c, NULL, "id must be from 0 to vocab_size-1 (299)", "tokenizer.json");
    free(c);
    char *t = tokenizer_with_merges();
    c = config_with("model_type", "\"llama\"");
    expect_refused(c, t, "BPE merges with byte_fallback (a SentencePiece vocabulary) are not supported",
                   "tokenizer.json");
    free(t);
    /* a tokenizer.model that is no SentencePiece model (test_llm_tok.c: the real ones) */
    char dir[512], p[700];
    scratch_ckpt(dir, sizeof dir, c, "{}");
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/tokenizer.model", dir);
    cr_assert_eq(ba_test_write_file(p, "x"), 0);
    ba_test_run_t r = ba_test_cli("llm-sensitivity", dir, NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "tokenizer.model: not a SentencePiece model: truncated or malformed protobuf"),
              "%s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
    free(c);
}

static json_t *search(const char *db, const char *model, const char *study) {
    ba_test_run_t r =
        ba_test_cli("--db", db, "-q", "llm-search", model, "--text", CALIB_TXT, "--budget", "avg-bits=4.5",
                    "--study", study, "--generations", "2", "--offspring", "4", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = json_loads(r.out, 0, NULL);
    cr_assert(j, "%s", r.out);
    ba_test_run_free(&r);
    return j;
}

Test(llm_hf, search_of_the_checkpoint_gives_the_gguf_plan, .timeout = 240) {
    BA_TEST_LLAMA_OR_SKIP();
    setenv(BA_LLAMA_DIR_ENV, ba_test_llama_dir(), 1);
    char dir[512], db[600], q[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    setenv("TMPDIR", dir, 1);
    json_t *a = search(db, TINY_GGUF, "g"), *b = search(db, HF_DIR, "h");
    cr_expect_gt(json_real_value(json_object_get(a, "kl")), 0);
    cr_expect_eq(json_real_value(json_object_get(a, "kl")), json_real_value(json_object_get(b, "kl")));
    cr_expect_eq(json_integer_value(json_object_get(a, "bytes")),
                 json_integer_value(json_object_get(b, "bytes")));
    cr_expect(json_equal(json_object_get(a, "types"), json_object_get(b, "types")));
    cr_expect_eq(json_object_size(json_object_get(b, "types")), 15);
    /* llm-quantize of the checkpoint's study: the planned types in a GGUF libllama wrote */
    snprintf(q, sizeof q, "%s/q.gguf", dir);
    ba_test_run_t r = ba_test_cli("--db", db, "-q", "llm-quantize", "--study", "h", "-o", q, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    ba_gguf_t *g;
    ba_error err = {0};
    cr_assert_eq(ba_gguf_open(q, &g, &err), BA_OK, "%s", err.msg);
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(b, "types"), k, v) {
        const ba_gguf_tensor_t *t = ba_gguf_find_tensor(g, k);
        cr_assert(t, "%s", k);
        cr_expect_str_eq(ba_ggml_type_by_id(t->type)->name, json_string_value(v), "%s", k);
    }
    ba_gguf_free(g);
    /* export --format llama of the checkpoint study: the line, and a note that it needs a GGUF */
    char tt[600];
    snprintf(tt, sizeof tt, "%s/types.txt", dir);
    r = ba_test_cli("--db", db, "export", "--study", "h", "--format", "llama", "-o", tt, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "llama-quantize --tensor-type-file"), "%s", r.out);
    cr_expect(strstr(r.err, "is a safetensors checkpoint; llama-quantize needs it as a GGUF"), "%s", r.err);
    ba_test_run_free(&r);
    /* resume of the finished checkpoint study: its digest still matches, nothing measured */
    r = ba_test_cli("--db", db, "resume", "--study", "h", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *c = json_loads(r.out, 0, NULL);
    cr_assert(c);
    cr_expect_eq(json_real_value(json_object_get(c, "kl")), json_real_value(json_object_get(b, "kl")));
    cr_expect_eq(json_integer_value(json_object_get(c, "evaluations")), 0);
    json_decref(c);
    ba_test_run_free(&r);
    /* llm-imatrix from either input: the same file */
    char i1[600], i2[600];
    snprintf(i1, sizeof i1, "%s/i1.gguf", dir);
    snprintf(i2, sizeof i2, "%s/i2.gguf", dir);
    r = ba_test_cli("-q", "llm-imatrix", TINY_GGUF, "--text", CALIB_TXT, "-o", i1, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("-q", "llm-imatrix", HF_DIR, "--text", CALIB_TXT, "-o", i2, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    uint8_t *d1, *d2;
    size_t n1, n2;
    cr_assert_eq(ba_file_read(i1, &d1, &n1, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_file_read(i2, &d2, &n2, &err), BA_OK, "%s", err.msg);
    cr_expect(n1 == n2 && !memcmp(d1, d2, n1), "imatrix of the checkpoint differs from the GGUF's");
    free(d1);
    free(d2);
    /* llm-sensitivity from either input: the same table */
    ba_test_run_t s1 =
        ba_test_cli("llm-sensitivity", TINY_GGUF, "--types", "q4_k,q8_0", "--format", "json", NULL);
    ba_test_run_t s2 =
        ba_test_cli("llm-sensitivity", HF_DIR, "--types", "q4_k,q8_0", "--format", "json", NULL);
    cr_assert_eq(s1.status, 0, "%s", s1.err);
    cr_assert_eq(s2.status, 0, "%s", s2.err);
    json_t *j1 = json_loads(s1.out, 0, NULL), *j2 = json_loads(s2.out, 0, NULL);
    cr_assert(j1 && j2);
    cr_expect(json_equal(json_object_get(j1, "tensors"), json_object_get(j2, "tensors")));
    json_decref(j1);
    json_decref(j2);
    ba_test_run_free(&s1);
    ba_test_run_free(&s2);
    unsetenv("TMPDIR");
    cr_expect_eq(ba_test_hf_temporaries(dir), 0);
    json_decref(a);
    json_decref(b);
    ba_test_rmtree(dir);
}

/* An output may be no file the checkpoint is read from (config, tokenizer, index, a shard) nor the
 * imatrix: exit 2 naming it, the file untouched; a new file inside the folder is fine. */
Test(llm_hf, output_is_never_a_file_of_the_checkpoint) {
    char dir[512], path[700];
    char *cfg = config_with("model_type", "\"llama\"");
    scratch_ckpt(dir, sizeof dir, cfg, NULL);
    free(cfg);
    static const char *const files[] = {"config.json", "tokenizer.json", "model.safetensors.index.json",
                                        "model-00002-of-00002.safetensors"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        struct stat before, after;
        cr_assert_eq(stat(path, &before), 0);
        ba_test_run_t r = ba_test_cli("llm-sensitivity", dir, "--types", "q8_0", "-o", path, NULL);
        cr_expect_eq(r.status, 2, "%s: %s", files[i], r.err);
        cr_expect(strstr(r.err, "model's checkpoint file") || strstr(r.err, "is the model"), "%s: %s",
                  files[i], r.err);
        cr_assert_eq(stat(path, &after), 0);
        cr_expect(before.st_ino == after.st_ino && before.st_size == after.st_size &&
                      before.st_mtime == after.st_mtime,
                  "%s was replaced", files[i]);
        ba_test_run_free(&r);
    }
    /* the checkpoint given as its index file: the same files are its inputs */
    char index[700];
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    snprintf(path, sizeof path, "%s/config.json", dir);
    ba_test_run_t r = ba_test_cli("llm-sensitivity", index, "--types", "q8_0", "-o", path, NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    ba_test_run_free(&r);
    /* the imatrix is an input too */
    snprintf(path, sizeof path, "%s/im.dat", dir);
    cr_assert_eq(ba_test_write_file(path, "not an imatrix"), 0);
    r = ba_test_cli("llm-sensitivity", dir, "--types", "q8_0", "--imatrix", path, "-o", path, NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "imatrix"), "%s", r.err);
    ba_test_run_free(&r);
    /* a new file beside the shards is an ordinary output */
    if (ba_test_llama_present()) {
        setenv(BA_LLAMA_DIR_ENV, ba_test_llama_dir(), 1);
        snprintf(path, sizeof path, "%s/table.json", dir);
        r = ba_test_cli("llm-sensitivity", dir, "--types", "q8_0", "--format", "json", "-o", path, NULL);
        cr_expect_eq(r.status, 0, "%s", r.err);
        ba_test_run_free(&r);
    }
    ba_test_rmtree(dir);
}

/* ---- rope_scaling: tests/fixtures/llm_rope (make_llm_rope.py) ---- */
#define ROPE_DIR BA_FIXTURES "/llm_rope"

/* The tiny checkpoint with the config.json at config_path, converted into dir/m.gguf (gguf). */
static void rope_convert(const char *config_path, char *dir, size_t cap, char *gguf, size_t gcap) {
    uint8_t *text;
    size_t n;
    ba_error err = {0};
    cr_assert_eq(ba_file_read(config_path, &text, &n, &err), BA_OK, "%s", err.msg);
    scratch_ckpt(dir, cap, (const char *)text, NULL);
    free(text);
    snprintf(gguf, gcap, "%s/m.gguf", dir);
    cr_assert_eq(ba_hf_convert(dir, gguf, &err), BA_OK, "%s", err.msg);
}

static double kv_real(const ba_gguf_t *g, const char *key) {
    double v = NAN;
    cr_assert_eq(ba_gguf_kv_float(ba_gguf_find_kv(g, key), &v), 0, "%s", key);
    return v;
}

/* convert's generate_extra_tensors for rope_type llama3 (factor 8, low/high frequency factors 1/4,
 * original context 64): rope_freqs.weight, one F32 divisor per frequency 10000^(-2i/64); no scaling
 * keys. Wavelengths 2*pi*10000^(i/32): under 64/4 = 16 for i < 4 (divisor 1), over 64 from i = 9
 * (divisor 8), blended between: i = 4, wavelength 2*pi*sqrt(10) = 19.8692, s = (64/19.8692 - 1)/3
 * = 0.740370, divisor 1/((1 - s)/8 + s) = 1.293975. */
static void check_llama3_freqs(const ba_gguf_t *g) {
    const ba_gguf_tensor_t *t = ba_gguf_find_tensor(g, "rope_freqs.weight");
    cr_assert(t, "no rope_freqs.weight");
    cr_assert_eq(t->type, 0);
    cr_assert_eq(t->n_dims, 1);
    cr_assert_eq(t->ne[0], 32);
    float f[32];
    memcpy(f, t->data, sizeof f);
    for (int i = 0; i < 4; i++) cr_expect_eq(f[i], 1.0f, "%d: %g", i, f[i]);
    cr_expect(fabsf(f[4] - 1.293975f) < 1e-5f, "%g", f[4]);
    for (int i = 5; i < 9; i++) cr_expect(f[i] > f[i - 1] && f[i] < 8.0f, "%d: %g", i, f[i]);
    for (int i = 9; i < 32; i++) cr_expect_eq(f[i], 8.0f, "%d: %g", i, f[i]);
    cr_expect_null(ba_gguf_find_kv(g, "llama.rope.scaling.type"));
    cr_expect_null(ba_gguf_find_kv(g, "llama.rope.scaling.factor"));
}

Test(llm_hf, llama3_rope_scaling_writes_rope_freqs) {
    char dir[512], gguf[700];
    rope_convert(ROPE_DIR "/llama3/config.json", dir, sizeof dir, gguf, sizeof gguf);
    ba_gguf_t *g, *plain;
    ba_error err = {0};
    cr_assert_eq(ba_gguf_open(gguf, &g, &err), BA_OK, "%s", err.msg);
    check_llama3_freqs(g);
    /* everything else as without scaling */
    cr_assert_eq(ba_gguf_open(TINY_GGUF, &plain, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(g->n_tensors, plain->n_tensors + 1);
    cr_expect_eq(kv_real(g, "llama.rope.freq_base"), 10000.0);
    ba_gguf_free(plain);
    ba_gguf_free(g);
    ba_test_rmtree(dir);
}

Test(llm_hf, linear_rope_scaling_writes_the_scaling_keys) {
    char dir[512], gguf[700];
    rope_convert(ROPE_DIR "/linear/config.json", dir, sizeof dir, gguf, sizeof gguf);
    ba_gguf_t *g;
    ba_error err = {0};
    cr_assert_eq(ba_gguf_open(gguf, &g, &err), BA_OK, "%s", err.msg);
    const char *s;
    uint64_t n;
    cr_assert_eq(ba_gguf_kv_str(ba_gguf_find_kv(g, "llama.rope.scaling.type"), &s, &n), 0);
    cr_expect(n == 6 && !memcmp(s, "linear", 6), "%.*s", (int)n, s);
    cr_expect_eq(kv_real(g, "llama.rope.scaling.factor"), 4.0);
    cr_expect_null(ba_gguf_find_tensor(g, "rope_freqs.weight"));
    ba_gguf_free(g);
    ba_test_rmtree(dir);
}

/* convert's set_gguf_parameters for yarn: type, factor, original context, the betas when given. */
Test(llm_hf, yarn_rope_scaling_writes_the_scaling_keys) {
    for (int k = 0; k < 2; k++) {
        char dir[512], gguf[700];
        if (!k)
            rope_convert(ROPE_DIR "/yarn/config.json", dir, sizeof dir, gguf, sizeof gguf);
        else { /* the betas given, at their defaults (others are refused) */
            char *c =
                config_with("rope_scaling", "{\"type\": \"yarn\", \"factor\": 4.0, \"beta_fast\": 32, "
                                            "\"beta_slow\": 1.0, \"original_max_position_embeddings\": 64}");
            scratch_ckpt(dir, sizeof dir, c, NULL);
            free(c);
            snprintf(gguf, sizeof gguf, "%s/m.gguf", dir);
            ba_error e = {0};
            cr_assert_eq(ba_hf_convert(dir, gguf, &e), BA_OK, "%s", e.msg);
        }
        ba_gguf_t *g;
        ba_error err = {0};
        cr_assert_eq(ba_gguf_open(gguf, &g, &err), BA_OK, "%s", err.msg);
        const char *s;
        uint64_t n;
        cr_assert_eq(ba_gguf_kv_str(ba_gguf_find_kv(g, "llama.rope.scaling.type"), &s, &n), 0);
        cr_expect(n == 4 && !memcmp(s, "yarn", 4), "%.*s", (int)n, s);
        cr_expect_eq(kv_real(g, "llama.rope.scaling.factor"), 4.0);
        int64_t orig = 0;
        cr_assert_eq(ba_gguf_kv_int(ba_gguf_find_kv(g, "llama.rope.scaling.original_context_length"), &orig),
                     0);
        cr_expect_eq(orig, 64);
        if (k) {
            cr_expect_eq(kv_real(g, "llama.rope.scaling.yarn_beta_fast"), 32.0);
            cr_expect_eq(kv_real(g, "llama.rope.scaling.yarn_beta_slow"), 1.0);
        } else {
            cr_expect_null(ba_gguf_find_kv(g, "llama.rope.scaling.yarn_beta_fast"));
            cr_expect_null(ba_gguf_find_kv(g, "llama.rope.scaling.yarn_beta_slow"));
        }
        cr_expect_null(ba_gguf_find_tensor(g, "rope_freqs.weight"));
        ba_gguf_free(g);
        ba_test_rmtree(dir);
    }
}

/* transformers 5 writes rope_parameters (rope_theta inside); "default" is no scaling. */
Test(llm_hf, rope_parameters_give_theta_and_scaling) {
    char dir[512], gguf[700];
    char *c = config_with("rope_scaling", NULL);
    json_t *j = json_loads(c, 0, NULL);
    free(c);
    cr_assert(j);
    json_object_del(j, "rope_theta");
    json_object_set_new(j, "rope_parameters",
                        json_pack("{s:s, s:f, s:f, s:f, s:f, s:i}", "rope_type", "llama3", "rope_theta",
                                  10000.0, "factor", 8.0, "low_freq_factor", 1.0, "high_freq_factor", 4.0,
                                  "original_max_position_embeddings", 64));
    c = json_dumps(j, 0);
    scratch_ckpt(dir, sizeof dir, c, NULL);
    free(c);
    snprintf(gguf, sizeof gguf, "%s/m.gguf", dir);
    ba_error err = {0};
    cr_assert_eq(ba_hf_convert(dir, gguf, &err), BA_OK, "%s", err.msg);
    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_open(gguf, &g, &err), BA_OK, "%s", err.msg);
    check_llama3_freqs(g);
    cr_expect_eq(kv_real(g, "llama.rope.freq_base"), 10000.0);
    ba_gguf_free(g);
    ba_test_rmtree(dir);
    json_object_set_new(j, "rope_parameters",
                        json_pack("{s:s, s:f}", "rope_type", "default", "rope_theta", 5e5));
    c = json_dumps(j, 0);
    json_decref(j);
    scratch_ckpt(dir, sizeof dir, c, NULL);
    free(c);
    snprintf(gguf, sizeof gguf, "%s/m.gguf", dir);
    cr_assert_eq(ba_hf_convert(dir, gguf, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_gguf_open(gguf, &g, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(kv_real(g, "llama.rope.freq_base"), 5e5);
    cr_expect_null(ba_gguf_find_tensor(g, "rope_freqs.weight"));
    cr_expect_null(ba_gguf_find_kv(g, "llama.rope.scaling.type"));
    ba_gguf_free(g);
    ba_test_rmtree(dir);
}

/* libllama's logits of the converted checkpoint (llm_rope/tokens.npy, 128 tokens) against
 * make_llm_rope.py's HF-style PyTorch forward (transformers' llama3 / linear inverse frequencies,
 * rotate-half q/k, float64): max |difference|; *vs_none: max |difference| from the unscaled
 * reference. */
static double rope_logits_error(const ba_llama_t *ll, const char *config_path, const char *ref_npy,
                                double *vs_none) {
    char dir[512], gguf[700];
    rope_convert(config_path, dir, sizeof dir, gguf, sizeof gguf);
    ba_error err = {0};
    ba_tensor_t *tok, *ref, *none;
    cr_assert_eq(ba_npy_load(ROPE_DIR "/tokens.npy", &tok, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_npy_load(ref_npy, &ref, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_npy_load(ROPE_DIR "/logits_none.npy", &none, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(tok->dtype, BA_DT_I32);
    int n = (int)tok->numel;
    cr_assert_eq(n, 128);
    float *lg;
    int nv;
    cr_assert_eq(ba_llama_logits(ll, gguf, (const int32_t *)tok->data, n, 2, &lg, &nv, &err), BA_OK, "%s",
                 err.msg);
    cr_assert_eq(nv, 354);
    cr_assert_eq(ref->numel, (int64_t)n * nv);
    cr_assert_eq(ref->dtype, BA_DT_F32);
    const float *r = ref->data, *r0 = none->data;
    double worst = 0, apart = 0;
    for (int64_t i = 0; i < ref->numel; i++) {
        worst = fmax(worst, fabs((double)lg[i] - r[i]));
        apart = fmax(apart, fabs((double)r[i] - r0[i]));
    }
    *vs_none = apart;
    free(lg);
    ba_tensor_unref(tok);
    ba_tensor_unref(ref);
    ba_tensor_unref(none);
    ba_test_rmtree(dir);
    return worst;
}

Test(llm_hf, rope_scaled_logits_match_the_pytorch_reference, .timeout = 120) {
    BA_TEST_LLAMA_OR_SKIP();
    const ba_llama_t *ll = ba_test_llama_open();
    static const char *const cases[] = {NULL, "llama3", "linear", "yarn"};
    for (int k = 0; k < 4; k++) {
        char cfg[512], ref[512];
        snprintf(cfg, sizeof cfg, "%s/%s/config.json", k ? ROPE_DIR : HF_DIR, k ? cases[k] : "");
        snprintf(ref, sizeof ref, "%s/logits_%s.npy", ROPE_DIR, k ? cases[k] : "none");
        double apart, e = rope_logits_error(ll, k ? cfg : HF_DIR "/config.json", ref, &apart);
        const char *name = k ? cases[k] : "none";
        cr_log_info("%s: max |logit error| %.4f (the scaling moves the logits up to %.3f)", name, e, apart);
        /* libllama multiplies the F16 matrices with F16-rounded activations: errors up to about
         * 0.03 on logits up to 8.2 (measured: 0.028 unscaled, 0.006 llama3, 0.023 linear, 0.006
         * yarn); a llama3 factor of 7.5 instead of 8 would move them 0.72, yarn without its
         * attention factor 0.22, no scaling 4.6 to 7.4 */
        cr_expect(e < 0.05, "%s: %g", name, e);
        if (k) cr_expect(apart > 1.0, "%s: %g", name, apart);
    }
}
