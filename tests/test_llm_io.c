/* llm/: ggml type table, GGUF reader/writer, safetensors reader, HF -> GGUF names. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ggml_types.h"
#include "core/tensor.h"
#include "helpers.h"
#include "llm/gguf.h"
#include "llm/safetensors.h"
#include "llm_fixture.h"

#define TINY_ST BA_FIXTURES "/llm"

static int id_of(const char *name) {
    return ba_ggml_type_by_name(name)->id;
}

Test(llm_types, exact_bits_per_weight) {
    struct {
        const char *n;
        double bpw;
    } want[] = {{"Q2_K", 2.625},  {"q3_K", 3.4375},  {"Q4_K", 4.5},     {"q5_K", 5.5},   {"Q6_K", 6.5625},
                {"Q8_0", 8.5},    {"Q4_0", 4.5},     {"Q4_1", 5.0},     {"Q5_0", 5.5},   {"Q5_1", 6.0},
                {"IQ4_XS", 4.25}, {"iq2_s", 2.5625}, {"IQ1_S", 1.5625}, {"MXFP4", 4.25}, {"F16", 16},
                {"BF16", 16},     {"F32", 32},       {"q1_0", 1.125}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const ba_ggml_type_t *t = ba_ggml_type_by_name(want[i].n);
        cr_assert(t, "%s", want[i].n);
        cr_expect_eq(ba_ggml_type_bpw(t), want[i].bpw, "%s: %g", want[i].n, ba_ggml_type_bpw(t));
    }
    cr_expect_null(ba_ggml_type_by_name("q4_k_m"));
    cr_expect_null(ba_ggml_type_by_id(4));
    cr_expect_eq(ba_ggml_type_by_id(12), ba_ggml_type_by_name("Q4_K"));
}

Test(llm_types, nbytes_checks_block_and_overflow) {
    ba_error err = {0};
    uint64_t n;
    int64_t ne[2] = {768, 256};
    cr_assert_eq(ba_ggml_type_nbytes(ba_ggml_type_by_name("q4_K"), 2, ne, &n, &err), BA_OK);
    cr_expect_eq(n, 3u * 144u * 256u);
    int64_t odd[2] = {896, 4};
    cr_expect_eq(ba_ggml_type_nbytes(ba_ggml_type_by_name("q4_K"), 2, odd, &n, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "multiple of 256"), "%s", err.msg);
    cr_expect_eq(ba_ggml_type_nbytes(ba_ggml_type_by_name("q8_0"), 2, odd, &n, &err), BA_OK);
    cr_expect_eq(n, 28u * 34u * 4u);
    int64_t big[4] = {INT64_MAX - 31, 1 << 20, 1 << 20, 2};
    cr_expect_eq(ba_ggml_type_nbytes(ba_ggml_type_by_name("f32"), 4, big, &n, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "overflow"), "%s", err.msg);
}

Test(llm_types, candidates_filtered_by_ne0_and_imatrix) {
    int ids[64];
    int n = ba_ggml_candidates("blk.0.ffn_down.weight", 896, 0, ids, 64);
    int has_q4k = 0, has_q8 = 0, has_iq2 = 0;
    for (int i = 0; i < n; i++) {
        cr_expect_eq(896 % ba_ggml_type_by_id(ids[i])->block, 0);
        has_q4k |= ids[i] == id_of("q4_K");
        has_q8 |= ids[i] == id_of("q8_0");
    }
    cr_expect(!has_q4k && has_q8);
    n = ba_ggml_candidates("blk.0.ffn_down.weight", 1024, 0, ids, 64);
    for (int i = 0; i < n; i++) has_iq2 |= ids[i] == id_of("iq2_xxs");
    cr_expect(!has_iq2, "IQ2_XXS needs an imatrix");
    int with = ba_ggml_candidates("blk.0.ffn_down.weight", 1024, 1, ids, 64);
    cr_expect_gt(with, n);
    cr_expect_eq(ba_ggml_candidates("token_embd.weight", 1024, 0, ids, 64), with, "token_embd is exempt");
    for (int i = 0; i < n; i++) cr_expect(ba_ggml_type_by_id(ids[i])->quant_target);
}

Test(llm_types, quantizable_tensors_and_budgets) {
    cr_expect(ba_ggml_tensor_quantizable("blk.3.attn_q.weight", 2));
    cr_expect(ba_ggml_tensor_quantizable("token_embd.weight", 2));
    cr_expect(!ba_ggml_tensor_quantizable("blk.3.attn_norm.weight", 1));
    cr_expect(!ba_ggml_tensor_quantizable("blk.3.attn_norm.weight", 2));
    cr_expect(!ba_ggml_tensor_quantizable("blk.3.ffn_gate_inp.weight", 2));
    cr_expect(!ba_ggml_tensor_quantizable("blk.3.attn_q.bias", 2));
    cr_expect(!ba_ggml_tensor_quantizable("position_embd.weight", 2));
    cr_expect_eq(ba_ggml_budget_bytes(1000000, 4.5), 562500u);
    cr_expect_eq(ba_ggml_bpw_of(562500, 1000000), 4.5);
}

/* ---- GGUF ---- */
static const char *tmpfile_in(char *dir, size_t cap, char *path, size_t pcap, const char *name) {
    cr_assert_eq(ba_test_tmpdir(dir, cap), 0);
    snprintf(path, pcap, "%s/%s", dir, name);
    return path;
}

Test(llm_gguf, writer_reader_round_trip_every_kv_type) {
    char dir[512], path[700];
    tmpfile_in(dir, sizeof dir, path, sizeof path, "t.gguf");
    ba_error err = {0};
    ba_gguf_writer_t *w;
    cr_assert_eq(ba_gguf_writer_new(&w, &err), BA_OK);
    cr_assert_eq(ba_gguf_writer_add_u32(w, "general.alignment", 64, &err), BA_OK);
    cr_assert_eq(ba_gguf_writer_add_str(w, "general.architecture", "llama", &err), BA_OK);
    cr_assert_eq(ba_gguf_writer_add_f32(w, "x.eps", 1e-5f, &err), BA_OK);
    int8_t i8 = -5;
    uint16_t u16 = 65000;
    int16_t i16 = -300;
    int32_t i32 = -70000;
    uint64_t u64 = 1ull << 40;
    int64_t i64 = -(1ll << 40);
    double f64 = 0.25;
    uint8_t u8 = 200, bo = 1;
    cr_assert_eq(ba_gguf_writer_add_kv(w, "k.u8", BA_GGUF_U8, 0, 1, &u8, 1, &err), BA_OK);
    cr_assert_eq(ba_gguf_writer_add_kv(w, "k.i8", BA_GGUF_I8, 0, 1, &i8, 1, &err), BA_OK);
    cr_assert_eq(ba_gguf_writer_add_kv(w, "k.u16", BA_GGUF_U16, 0, 1, &u16, 2, &err), BA_OK);
    cr_assert_eq(ba_gguf_writer_add_kv(w, "k.i16", BA_GGUF_I16, 0, 1, &i16, 2, &err), BA_OK);
    cr_assert_eq(ba_gguf_writer_add_kv(w, "k.i32", BA_GGUF_I32, 0, 1, &i32, 4, &err), BA_OK);
    cr_assert_eq(ba_gguf_writer_add_kv(w, "k.u64", BA_GGUF_U64, 0, 1, &u64, 8, &err), BA_OK);
    cr_assert_eq(ba_gguf_writer_add_kv(w, "k.i64", BA_GGUF_I64, 0, 1, &i64, 8, &err), BA_OK);
    cr_assert_eq(ba_gguf_writer_add_kv(w, "k.f64", BA_GGUF_F64, 0, 1, &f64, 8, &err), BA_OK);
    cr_assert_eq(ba_gguf_writer_add_kv(w, "k.bool", BA_GGUF_BOOL, 0, 1, &bo, 1, &err), BA_OK);
    int32_t arr[3] = {1, -2, 3};
    cr_assert_eq(ba_gguf_writer_add_kv(w, "k.arr", BA_GGUF_ARRAY, BA_GGUF_I32, 3, arr, sizeof arr, &err),
                 BA_OK);
    uint8_t sarr[8 + 2 + 8 + 0 + 8 + 3];
    uint64_t l;
    l = 2;
    memcpy(sarr, &l, 8);
    memcpy(sarr + 8, "ab", 2);
    l = 0;
    memcpy(sarr + 10, &l, 8);
    l = 3;
    memcpy(sarr + 18, &l, 8);
    memcpy(sarr + 26, "xyz", 3);
    cr_assert_eq(
        ba_gguf_writer_add_kv(w, "k.strs", BA_GGUF_ARRAY, BA_GGUF_STRING, 3, sarr, sizeof sarr, &err), BA_OK);
    cr_expect_eq(ba_gguf_writer_add_u32(w, "k.u8", 1, &err), BA_ERR_INPUT, "duplicate key refused");
    float a[8 * 3];
    for (int i = 0; i < 24; i++) a[i] = (float)i * 0.5f;
    int64_t ne_a[2] = {8, 3};
    cr_assert_eq(ba_gguf_writer_add_tensor(w, "a.weight", 2, ne_a, 0, a, sizeof a, &err), BA_OK);
    uint8_t q[34 * 2];
    for (int i = 0; i < 68; i++) q[i] = (uint8_t)(i * 7);
    int64_t ne_q[2] = {32, 2};
    cr_assert_eq(ba_gguf_writer_add_tensor(w, "q.weight", 2, ne_q, id_of("q8_0"), q, sizeof q, &err), BA_OK);
    cr_expect_eq(ba_gguf_writer_add_tensor(w, "bad", 2, ne_q, id_of("q8_0"), q, 10, &err), BA_ERR_INPUT);
    cr_assert_eq(ba_gguf_writer_write(w, path, &err), BA_OK, "%s", err.msg);
    ba_gguf_writer_free(w);

    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_open(path, &g, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(g->version, 3u);
    cr_expect_eq(g->alignment, 64u);
    cr_expect_eq(g->data_offset % 64, 0u);
    int64_t iv;
    double fv;
    const char *s;
    uint64_t sl;
    cr_expect(ba_gguf_kv_int(ba_gguf_find_kv(g, "general.alignment"), &iv) == 0 && iv == 64);
    cr_expect(ba_gguf_kv_str(ba_gguf_find_kv(g, "general.architecture"), &s, &sl) == 0 && sl == 5 &&
              !memcmp(s, "llama", 5));
    cr_expect(ba_gguf_kv_float(ba_gguf_find_kv(g, "x.eps"), &fv) == 0 && fv == (double)1e-5f);
    cr_expect(ba_gguf_kv_int(ba_gguf_find_kv(g, "k.u8"), &iv) == 0 && iv == 200);
    cr_expect(ba_gguf_kv_int(ba_gguf_find_kv(g, "k.i8"), &iv) == 0 && iv == -5);
    cr_expect(ba_gguf_kv_int(ba_gguf_find_kv(g, "k.u16"), &iv) == 0 && iv == 65000);
    cr_expect(ba_gguf_kv_int(ba_gguf_find_kv(g, "k.i16"), &iv) == 0 && iv == -300);
    cr_expect(ba_gguf_kv_int(ba_gguf_find_kv(g, "k.i32"), &iv) == 0 && iv == -70000);
    cr_expect(ba_gguf_kv_int(ba_gguf_find_kv(g, "k.u64"), &iv) == 0 && iv == (1ll << 40));
    cr_expect(ba_gguf_kv_int(ba_gguf_find_kv(g, "k.i64"), &iv) == 0 && iv == -(1ll << 40));
    cr_expect(ba_gguf_kv_float(ba_gguf_find_kv(g, "k.f64"), &fv) == 0 && fv == 0.25);
    cr_expect(ba_gguf_kv_int(ba_gguf_find_kv(g, "k.bool"), &iv) == 0 && iv == 1);
    const ba_gguf_kv_t *ka = ba_gguf_find_kv(g, "k.arr");
    cr_assert(ka && ka->type == BA_GGUF_ARRAY && ka->arr_type == BA_GGUF_I32 && ka->n == 3);
    int32_t back[3];
    memcpy(back, ka->val, sizeof back);
    cr_expect(back[0] == 1 && back[1] == -2 && back[2] == 3);
    const ba_gguf_kv_t *ks = ba_gguf_find_kv(g, "k.strs");
    cr_assert(ks && ks->n == 3);
    cr_expect(ba_gguf_kv_arr_str(ks, 0, &s, &sl) == 0 && sl == 2 && !memcmp(s, "ab", 2));
    cr_expect(ba_gguf_kv_arr_str(ks, 1, &s, &sl) == 0 && sl == 0);
    cr_expect(ba_gguf_kv_arr_str(ks, 2, &s, &sl) == 0 && sl == 3 && !memcmp(s, "xyz", 3));
    cr_expect_neq(ba_gguf_kv_arr_str(ks, 3, &s, &sl), 0);
    cr_assert_eq(g->n_tensors, 2);
    const ba_gguf_tensor_t *ta = ba_gguf_find_tensor(g, "a.weight"), *tq = ba_gguf_find_tensor(g, "q.weight");
    cr_assert(ta && tq);
    cr_expect(ta->n_dims == 2 && ta->ne[0] == 8 && ta->ne[1] == 3 && ta->type == 0 && ta->nbytes == sizeof a);
    cr_expect_eq(memcmp(ta->data, a, sizeof a), 0);
    cr_expect(tq->type == id_of("q8_0") && tq->nbytes == sizeof q && tq->offset % 64 == 0);
    cr_expect_eq(memcmp(tq->data, q, sizeof q), 0);
    ba_gguf_free(g);
    ba_test_rmtree(dir);
}

/* Every proper prefix of a valid file fails cleanly, naming the file. */
Test(llm_gguf, truncations_and_corruptions_fail_naming_file_and_field) {
    ba_mapped_t m;
    ba_error err = {0};
    cr_assert_eq(ba_file_map(TINY_GGUF, &m, &err), BA_OK, "%s", err.msg);
    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_parse(m.data, m.size, "tiny.gguf", &g, &err), BA_OK, "%s", err.msg);
    size_t hdr = g->data_offset;
    ba_gguf_free(g);
    for (size_t n = 0; n < hdr; n += (n < 64 ? 1 : 97)) {
        memset(&err, 0, sizeof err);
        cr_assert_eq(ba_gguf_parse(m.data, n, "tiny.gguf", &g, &err), BA_ERR_INPUT, "prefix %zu", n);
        cr_assert_null(g);
        cr_assert(strncmp(err.msg, "tiny.gguf: ", 11) == 0, "%s", err.msg);
    }
    cr_expect_eq(ba_gguf_parse(m.data, m.size - 1, "tiny.gguf", &g, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "runs past the end"), "%s", err.msg);
    uint8_t *c = malloc(m.size);
    memcpy(c, m.data, m.size);
    c[0] = 'X';
    cr_expect_eq(ba_gguf_parse(c, m.size, "c.gguf", &g, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "c.gguf: header: not a GGUF file"), "%s", err.msg);
    memcpy(c, m.data, m.size);
    c[4] = 9;
    cr_expect_eq(ba_gguf_parse(c, m.size, "c.gguf", &g, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "version 9"), "%s", err.msg);
    memcpy(c, m.data, m.size);
    uint64_t huge = UINT64_MAX / 2;
    memcpy(c + 16, &huge, 8);
    cr_expect_eq(ba_gguf_parse(c, m.size, "c.gguf", &g, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "metadata count"), "%s", err.msg);
    memcpy(c, m.data, m.size);
    memcpy(c + 8, &huge, 8);
    cr_expect_eq(ba_gguf_parse(c, m.size, "c.gguf", &g, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "tensor count"), "%s", err.msg);
    free(c);
    ba_file_unmap(&m);
}

Test(llm_gguf, reads_the_tiny_llama) {
    ba_gguf_t *g;
    ba_error err = {0};
    cr_assert_eq(ba_gguf_open(TINY_GGUF, &g, &err), BA_OK, "%s", err.msg);
    const char *s;
    uint64_t sl;
    cr_expect(ba_gguf_kv_str(ba_gguf_find_kv(g, "general.architecture"), &s, &sl) == 0 && sl == 5 &&
              !memcmp(s, "llama", 5));
    int64_t v;
    cr_expect(ba_gguf_kv_int(ba_gguf_find_kv(g, "llama.embedding_length"), &v) == 0 && v == 256);
    cr_expect(ba_gguf_kv_int(ba_gguf_find_kv(g, "llama.block_count"), &v) == 0 && v == 2);
    const ba_gguf_kv_t *toks = ba_gguf_find_kv(g, "tokenizer.ggml.tokens");
    cr_assert(toks && toks->n == 354);
    cr_expect(ba_gguf_kv_arr_str(toks, 259, &s, &sl) == 0 && sl == 3 && !memcmp(s, "\xe2\x96\x81", 3));
    cr_expect_eq(g->n_tensors, 2 + 2 * 9);
    const ba_gguf_tensor_t *t = ba_gguf_find_tensor(g, "blk.1.ffn_down.weight");
    cr_assert(t);
    cr_expect(t->type == 1 && t->ne[0] == 512 && t->ne[1] == 256 && t->nbytes == 512 * 256 * 2);
    t = ba_gguf_find_tensor(g, "output_norm.weight");
    cr_expect(t && t->type == 0 && t->n_dims == 1 && t->ne[0] == 256);
    ba_gguf_free(g);
}

/* ---- safetensors ---- */
static void permute_rows_hf_to_gguf(const uint16_t *hf, uint16_t *out, int n_head, int rows, int cols) {
    int half = rows / n_head / 2;
    for (int h = 0; h < n_head; h++)
        for (int j = 0; j < half; j++)
            for (int k = 0; k < 2; k++) /* gguf row h*2*half + 2j + k = hf row h*2*half + k*half + j */
                memcpy(out + ((size_t)h * 2 * half + 2 * j + k) * cols,
                       hf + ((size_t)h * 2 * half + k * half + j) * cols, (size_t)cols * 2);
}

Test(llm_st, shards_match_the_gguf_through_names) {
    ba_safetensors_t *st;
    ba_error err = {0};
    cr_assert_eq(ba_safetensors_open(TINY_ST, &st, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(st->n_files, 2);
    cr_expect_eq(st->n, 2 + 2 * 9);
    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_open(TINY_GGUF, &g, &err), BA_OK, "%s", err.msg);
    for (int i = 0; i < st->n; i++) {
        const ba_st_tensor_t *t = &st->t[i];
        char gn[128];
        cr_assert_eq(ba_hf_to_gguf_name(t->name, gn, sizeof gn), 0, "%s", t->name);
        const ba_gguf_tensor_t *gt = ba_gguf_find_tensor(g, gn);
        cr_assert(gt, "%s -> %s", t->name, gn);
        cr_assert_eq(t->dtype, gt->type == 0 ? BA_ST_F32 : BA_ST_F16, "%s",
                     gn); /* norms F32, as in the GGUF */
        cr_assert_eq(t->n_dims, gt->n_dims);
        for (int d = 0; d < t->n_dims; d++) cr_assert_eq(t->shape[d], gt->ne[t->n_dims - 1 - d], "%s", gn);
        if (gt->type == 0) {
            cr_assert_eq(t->nbytes, gt->nbytes, "%s", gn);
            cr_assert_eq(memcmp(t->data, gt->data, t->nbytes), 0, "%s", gn);
        } else if (strstr(gn, "attn_q") || strstr(gn, "attn_k")) {
            uint16_t *p = malloc(t->nbytes);
            permute_rows_hf_to_gguf((const uint16_t *)t->data, p, 4, (int)t->shape[0], (int)t->shape[1]);
            cr_assert_eq(memcmp(p, gt->data, t->nbytes), 0, "%s: rows not llama.cpp's permutation", gn);
            cr_assert_neq(memcmp(t->data, gt->data, t->nbytes), 0);
            free(p);
        } else {
            cr_assert_eq(memcmp(t->data, gt->data, t->nbytes), 0, "%s", gn);
        }
    }
    ba_gguf_free(g);
    ba_safetensors_free(st);
}

Test(llm_st, hf_names) {
    char out[64];
    struct {
        const char *hf, *gguf;
    } m[] = {{"model.embed_tokens.weight", "token_embd.weight"},
             {"lm_head.weight", "output.weight"},
             {"model.norm.weight", "output_norm.weight"},
             {"model.layers.12.self_attn.q_proj.weight", "blk.12.attn_q.weight"},
             {"model.layers.0.self_attn.o_proj.bias", "blk.0.attn_output.bias"},
             {"model.layers.3.mlp.down_proj.weight", "blk.3.ffn_down.weight"},
             {"model.layers.3.post_attention_layernorm.weight", "blk.3.ffn_norm.weight"}};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        cr_assert_eq(ba_hf_to_gguf_name(m[i].hf, out, sizeof out), 0, "%s", m[i].hf);
        cr_expect_str_eq(out, m[i].gguf);
    }
    cr_expect_eq(ba_hf_to_gguf_name("model.layers.3.self_attn.rotary_emb.inv_freq", out, sizeof out), -1);
    cr_expect_eq(ba_hf_to_gguf_name("model.layers.x.mlp.up_proj.weight", out, sizeof out), -1);
    cr_expect_eq(ba_hf_to_gguf_name("model.layers.03.mlp.up_proj.weight", out, sizeof out), -1);
    cr_expect_eq(ba_hf_to_gguf_name("model.layers.1.mlp.up_proj.weight", out, 8), -1);
}

static ba_status st_parse_text(const char *json, const void *payload, size_t plen, ba_error *err) {
    size_t n = strlen(json);
    uint8_t *buf = malloc(8 + n + plen);
    uint64_t n64 = n;
    memcpy(buf, &n64, 8);
    memcpy(buf + 8, json, n);
    if (plen) memcpy(buf + 8 + n, payload, plen);
    ba_safetensors_t *s = NULL;
    ba_status st = ba_safetensors_parse(buf, 8 + n + plen, "h.safetensors", &s, err);
    if (st == BA_OK)
        cr_assert(s);
    else
        cr_assert_null(s);
    ba_safetensors_free(s);
    free(buf);
    return st;
}

Test(llm_st, hostile_headers) {
    ba_error err = {0};
    uint8_t pay[16] = {0};
    cr_expect_eq(
        st_parse_text("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", pay, 16, &err),
        BA_OK, "%s", err.msg);
    cr_expect_eq(
        st_parse_text("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", pay, 15, &err),
        BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "h.safetensors: tensor 'a'"), "%s", err.msg);
    cr_expect_eq(
        st_parse_text("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", pay, 12, &err),
        BA_ERR_INPUT);
    cr_expect_eq(
        st_parse_text("{\"a\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}", pay, 8, &err),
        BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "unknown dtype"), "%s", err.msg);
    cr_expect_eq(
        st_parse_text("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", pay, 8, &err),
        BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "hole"), "%s", err.msg);
    cr_expect_eq(st_parse_text("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                               "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
                               pay, 6, &err),
                 BA_ERR_INPUT);
    cr_expect_eq(
        st_parse_text("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}",
                      pay, 0, &err),
        BA_ERR_INPUT);
    cr_expect_eq(
        st_parse_text("{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}", pay, 0, &err),
        BA_ERR_INPUT);
    cr_expect_eq(st_parse_text("{\"a\":1,\"a\":2}", pay, 0, &err), BA_ERR_INPUT);
    cr_expect_eq(st_parse_text("[1]", pay, 0, &err), BA_ERR_INPUT);
    uint8_t big[8];
    uint64_t n = UINT64_MAX;
    memcpy(big, &n, 8);
    ba_safetensors_t *s = NULL;
    cr_expect_eq(ba_safetensors_parse(big, 8, "b.st", &s, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "b.st: header length"), "%s", err.msg);
    char **files;
    int nf;
    const char *trav = "{\"weight_map\":{\"a\":\"../x.safetensors\"}}";
    cr_expect_eq(ba_safetensors_parse_index(trav, strlen(trav), "i.json", &files, &nf, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "not a plain file name"), "%s", err.msg);
    const char *ok = "{\"weight_map\":{\"a\":\"s1\",\"b\":\"s2\",\"c\":\"s1\"}}";
    cr_assert_eq(ba_safetensors_parse_index(ok, strlen(ok), "i.json", &files, &nf, &err), BA_OK);
    cr_expect(nf == 2 && !strcmp(files[0], "s1") && !strcmp(files[1], "s2"));
    for (int i = 0; i < nf; i++) free(files[i]);
    free(files);
}

/* ---- bitalloc llm-inspect ---- */
Test(llm_cli, inspect_gguf_and_safetensors_agree) {
    ba_test_run_t a = ba_test_cli("llm-inspect", TINY_GGUF, "--format", "json", NULL);
    cr_assert_eq(a.status, 0, "%s", a.err);
    ba_test_run_t b = ba_test_cli("llm-inspect", TINY_ST, "--format", "json", NULL);
    cr_assert_eq(b.status, 0, "%s", b.err);
    json_error_t je;
    json_t *ja = json_loads(a.out, 0, &je), *jb = json_loads(b.out, 0, &je);
    cr_assert(ja && jb);
    cr_expect_str_eq(json_string_value(json_object_get(ja, "format")), "gguf");
    cr_expect_str_eq(json_string_value(json_object_get(jb, "format")), "safetensors");
    json_t *ta = json_object_get(ja, "totals"), *tb = json_object_get(jb, "totals");
    cr_expect_eq(json_integer_value(json_object_get(ta, "quantizable_weights")), 1401344);
    cr_expect_eq(json_integer_value(json_object_get(tb, "quantizable_weights")), 1401344);
    /* The same tensor from either file: same ne, same candidates and bytes. */
    json_t *arr = json_object_get(ja, "tensors"), *x = NULL, *y = NULL;
    size_t i;
    json_t *v;
    json_array_foreach(
        arr, i, v) if (!strcmp(json_string_value(json_object_get(v, "name")), "blk.1.ffn_down.weight")) x = v;
    json_array_foreach(json_object_get(jb, "tensors"), i, v) {
        json_t *nm = json_object_get(v, "name");
        if (json_is_string(nm) && !strcmp(json_string_value(nm), "blk.1.ffn_down.weight")) y = v;
    }
    cr_assert(x && y);
    cr_expect_str_eq(json_string_value(json_object_get(y, "source_name")),
                     "model.layers.1.mlp.down_proj.weight");
    cr_expect(json_equal(json_object_get(x, "ne"), json_object_get(y, "ne")));
    cr_expect(json_equal(json_object_get(x, "candidates"), json_object_get(y, "candidates")));
    int found = 0;
    json_array_foreach(json_object_get(x, "candidates"), i,
                       v) if (!strcmp(json_string_value(json_object_get(v, "type")), "q2_K")) {
        found = 1;
        cr_expect_eq(json_integer_value(json_object_get(v, "bytes")), 256 * 2 * 84);
        cr_expect_eq(json_real_value(json_object_get(v, "bpw")), 2.625);
    }
    cr_expect(found);
    json_decref(ja);
    json_decref(jb);
    ba_test_run_free(&a);
    ba_test_run_free(&b);
}

Test(llm_cli, inspect_bad_file_exits_2_naming_it) {
    char dir[512], path[700];
    tmpfile_in(dir, sizeof dir, path, sizeof path, "bad.gguf");
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    fwrite("GGUF\3\0\0\0", 1, 8, f);
    fclose(f);
    ba_test_run_t r = ba_test_cli("llm-inspect", path, NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "bitalloc: error: ") && strstr(r.err, "bad.gguf: tensor count: truncated file"),
              "%s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

/* A zero-byte tensor in a file that ends before its data section: refused, never a pointer past
 * the end (found by fuzz_gguf). */
Test(llm_gguf, data_section_must_exist) {
    ba_error err = {0};
    ba_gguf_writer_t *w;
    cr_assert_eq(ba_gguf_writer_new(&w, &err), BA_OK);
    int64_t ne[2] = {0, 4};
    cr_assert_eq(ba_gguf_writer_add_tensor(w, "z.weight", 2, ne, 0, "", 0, &err), BA_OK, "%s", err.msg);
    char dir[512], path[700];
    tmpfile_in(dir, sizeof dir, path, sizeof path, "z.gguf");
    cr_assert_eq(ba_gguf_writer_write(w, path, &err), BA_OK, "%s", err.msg);
    ba_gguf_writer_free(w);
    ba_mapped_t m;
    cr_assert_eq(ba_file_map(path, &m, &err), BA_OK);
    ba_gguf_t *g;
    cr_assert_eq(ba_gguf_parse(m.data, m.size, "z.gguf", &g, &err), BA_OK, "%s", err.msg);
    size_t hdr = 24 + 8 + 8 + 4 + 16 + 4 + 8;
    cr_expect_eq(g->data_offset, 96u);
    cr_expect_eq(m.size, 96u);
    ba_gguf_free(g);
    cr_expect_eq(ba_gguf_parse(m.data, hdr, "z.gguf", &g, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "z.gguf: data section"), "%s", err.msg);
    ba_file_unmap(&m);
    ba_test_rmtree(dir);
}

static float ascending_weight(int e, int j) {
    (void)e;
    return 1.0f + (float)j;
}

/* --imatrix makes the imatrix-only types candidates of the tensors it covers, and only those. */
Test(llm_cli, inspect_imatrix_adds_its_types) {
    char dir[512], path[700];
    tmpfile_in(dir, sizeof dir, path, sizeof path, "i.dat");
    const char *name = "blk.1.ffn_down.weight";
    ba_test_write_imatrix_dat(path, 1, &name, 512, ascending_weight);
    ba_test_run_t r = ba_test_cli("llm-inspect", TINY_GGUF, "--imatrix", path, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    const char *down1 = strstr(r.out, "blk.1.ffn_down.weight"),
               *down0 = strstr(r.out, "blk.0.ffn_down.weight");
    cr_assert(down1 && down0);
    const char *eol1 = strchr(down1, '\n'), *eol0 = strchr(down0, '\n');
    const char *iq1 = strstr(down1, "iq2_xxs:"), *iq0 = strstr(down0, "iq2_xxs:");
    cr_expect(iq1 && iq1 < eol1, "covered tensor lists iq2_xxs");
    cr_expect(!iq0 || iq0 > eol0, "uncovered tensor does not");
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}
