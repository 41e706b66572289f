#include "llm/hf_convert.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/tensor.h"
#include "core/util.h"
#include "llm/safetensors.h"

/* ggml type ids and llama_ftype values used here */
#define T_F32 0
#define T_F16 1
#define T_BF16 30
/* llama_token_type */
enum { TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3, TOK_USER = 4, TOK_UNUSED = 5, TOK_BYTE = 6 };

int ba_hf_is_gguf(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && memcmp(magic, "GGUF", 4) == 0;
}

typedef struct {
    char dir[4096];
    char cfg_path[4200];
    char tok_path[4200];
    int64_t n_embd, n_layer, n_head, n_head_kv, n_ff, vocab, n_ctx;
    double eps, rope_theta;
    int tied;
    int64_t bos, eos, pad; /* -1: absent */
} hf_config_t;

static ba_status load_json(const char *path, const char *what, json_t **out, ba_error *err) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return ba_error_set(err, BA_ERR_INPUT, "%s: missing (a safetensors checkpoint needs its %s)", path,
                            what);
    json_error_t jerr;
    *out = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!*out || !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return ba_error_set(err, BA_ERR_INPUT, "%s: not a JSON object (line %d: %s)", path, jerr.line,
                            jerr.text);
    }
    return BA_OK;
}

/* An integer field of at least lo (the first element of a list); when absent, an error if
 * required, else *v keeps its default. */
static ba_status cfg_int(const hf_config_t *c, json_t *j, const char *key, int required, int64_t lo,
                         int64_t *v, ba_error *err) {
    json_t *x = json_object_get(j, key);
    if (json_is_array(x)) x = json_array_get(x, 0); /* eos_token_id: [a, b, ...] -> a */
    if (!x || json_is_null(x)) {
        if (required) return ba_error_set(err, BA_ERR_INPUT, "%s: '%s' is missing", c->cfg_path, key);
        return BA_OK;
    }
    if (!json_is_integer(x) || json_integer_value(x) < lo || json_integer_value(x) > (int64_t)1 << 31)
        return ba_error_set(err, BA_ERR_INPUT, "%s: '%s' must be an integer from %lld to 2^31", c->cfg_path,
                            key, (long long)lo);
    *v = json_integer_value(x);
    return BA_OK;
}

static ba_status cfg_real(const hf_config_t *c, json_t *j, const char *key, int required, double *v,
                          ba_error *err) {
    json_t *x = json_object_get(j, key);
    if (!x || json_is_null(x)) {
        if (required) return ba_error_set(err, BA_ERR_INPUT, "%s: '%s' is missing", c->cfg_path, key);
        return BA_OK;
    }
    if (!json_is_number(x) || !(json_number_value(x) > 0))
        return ba_error_set(err, BA_ERR_INPUT, "%s: '%s' must be a positive number", c->cfg_path, key);
    *v = json_number_value(x);
    return BA_OK;
}

static ba_status read_config(hf_config_t *c, ba_error *err) {
    json_t *j = NULL;
    BA_TRY(load_json(c->cfg_path, "config.json", &j, err));
    ba_status st = BA_OK;
    json_t *mt = json_object_get(j, "model_type"), *arch = json_object_get(j, "architectures");
    const char *a0 = json_is_array(arch) ? json_string_value(json_array_get(arch, 0)) : NULL;
    const char *mts = json_string_value(mt);
    if (!(mts && !strcmp(mts, "llama")) && !(!mts && a0 && !strcmp(a0, "LlamaForCausalLM"))) {
        st = ba_error_set(err, BA_ERR_UNSUPPORTED,
                          "%s: architecture '%s' is not supported (only llama: model_type \"llama\", "
                          "LlamaForCausalLM)",
                          c->cfg_path,
                          mts  ? mts
                          : a0 ? a0
                               : "(none given)");
        goto done;
    }
    if (a0 && strcmp(a0, "LlamaForCausalLM")) {
        st = ba_error_set(err, BA_ERR_UNSUPPORTED,
                          "%s: architectures '%s' is not supported (only LlamaForCausalLM)", c->cfg_path, a0);
        goto done;
    }
    const char *act = json_string_value(json_object_get(j, "hidden_act"));
    if (act && strcmp(act, "silu")) {
        st = ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (only silu)",
                          c->cfg_path, act);
        goto done;
    }
    json_t *rs = json_object_get(j, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        st = ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: rope_scaling is not supported", c->cfg_path);
        goto done;
    }
    static const char *const biases[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++)
        if (json_is_true(json_object_get(j, biases[i]))) {
            st =
                ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: %s true is not supported", c->cfg_path, biases[i]);
            goto done;
        }
    c->n_head_kv = -1;
    c->rope_theta = 10000.0;
    c->tied = 0;
    c->bos = c->eos = c->pad = -1;
    if ((st = cfg_int(c, j, "hidden_size", 1, 1, &c->n_embd, err)) != BA_OK ||
        (st = cfg_int(c, j, "num_hidden_layers", 1, 1, &c->n_layer, err)) != BA_OK ||
        (st = cfg_int(c, j, "num_attention_heads", 1, 1, &c->n_head, err)) != BA_OK ||
        (st = cfg_int(c, j, "num_key_value_heads", 0, 1, &c->n_head_kv, err)) != BA_OK ||
        (st = cfg_int(c, j, "intermediate_size", 1, 1, &c->n_ff, err)) != BA_OK ||
        (st = cfg_int(c, j, "vocab_size", 1, 1, &c->vocab, err)) != BA_OK ||
        (st = cfg_int(c, j, "max_position_embeddings", 1, 1, &c->n_ctx, err)) != BA_OK ||
        (st = cfg_int(c, j, "bos_token_id", 0, 0, &c->bos, err)) != BA_OK ||
        (st = cfg_int(c, j, "eos_token_id", 0, 0, &c->eos, err)) != BA_OK ||
        (st = cfg_int(c, j, "pad_token_id", 0, 0, &c->pad, err)) != BA_OK ||
        (st = cfg_real(c, j, "rms_norm_eps", 1, &c->eps, err)) != BA_OK ||
        (st = cfg_real(c, j, "rope_theta", 0, &c->rope_theta, err)) != BA_OK)
        goto done;
    if (c->n_head_kv < 0) c->n_head_kv = c->n_head;
    json_t *tie = json_object_get(j, "tie_word_embeddings");
    c->tied = json_is_true(tie);
    if (c->n_embd % c->n_head || (c->n_embd / c->n_head) % 2 || c->n_head % c->n_head_kv) {
        st = ba_error_set(
            err, BA_ERR_INPUT,
            "%s: hidden_size %lld, num_attention_heads %lld, num_key_value_heads %lld: need an even "
            "head size and heads a multiple of the key/value heads",
            c->cfg_path, (long long)c->n_embd, (long long)c->n_head, (long long)c->n_head_kv);
        goto done;
    }
    int64_t hd = c->n_embd / c->n_head, hd_cfg = hd;
    if ((st = cfg_int(c, j, "head_dim", 0, 1, &hd_cfg, err)) != BA_OK) goto done;
    if (hd_cfg != hd)
        st = ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: head_dim %lld other than hidden_size/heads (%lld)",
                          c->cfg_path, (long long)hd_cfg, (long long)hd);
done:
    json_decref(j);
    return st;
}

/* ---- tokenizer ---- */
typedef struct {
    int n;
    char **tokens;
    int32_t *types;
    int64_t unk;
    int add_space_prefix; /* 1: Prepend/Metaspace found (llama.cpp's SPM default) */
} hf_vocab_t;

static void vocab_free(hf_vocab_t *v) {
    for (int i = 0; v->tokens && i < v->n; i++) free(v->tokens[i]);
    free(v->tokens);
    free(v->types);
}

static int is_byte_token(const char *s) {
    static const char hx[] = "0123456789ABCDEFabcdef";
    return strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[5] == '>' && strchr(hx, s[3]) && strchr(hx, s[4]);
}

/* 1 when the JSON node (normalizer or pre_tokenizer tree) prepends '▁' to the text. */
static int prepends_space(json_t *n) {
    if (!json_is_object(n)) return 0;
    const char *type = json_string_value(json_object_get(n, "type"));
    if (type && !strcmp(type, "Prepend")) return 1;
    if (type && !strcmp(type, "Metaspace")) {
        const char *sch = json_string_value(json_object_get(n, "prepend_scheme"));
        json_t *aps = json_object_get(n, "add_prefix_space");
        return sch ? strcmp(sch, "never") != 0 : json_is_true(aps);
    }
    static const char *const lists[] = {"normalizers", "pretokenizers"};
    for (int k = 0; k < 2; k++) {
        json_t *arr = json_object_get(n, lists[k]), *x;
        size_t i;
        json_array_foreach(arr, i, x) if (prepends_space(x)) return 1;
    }
    return 0;
}

static ba_status read_tokenizer(const hf_config_t *c, hf_vocab_t *v, ba_error *err) {
    const char *p = c->tok_path;
    struct stat sb;
    if (stat(p, &sb) != 0) {
        char spm[4200];
        snprintf(spm, sizeof spm, "%s/tokenizer.model", c->dir);
        if (stat(spm, &sb) == 0)
            return ba_error_set(
                err, BA_ERR_UNSUPPORTED,
                "%s: a SentencePiece tokenizer.model is not supported; a tokenizer.json with a "
                "byte-level vocabulary is",
                spm);
    }
    json_t *j = NULL;
    BA_TRY(load_json(p, "tokenizer.json", &j, err));
    ba_status st = BA_OK;
    json_t *m = json_object_get(j, "model");
    const char *mtype = json_string_value(json_object_get(m, "type"));
    json_t *vocab = json_object_get(m, "vocab"), *merges = json_object_get(m, "merges");
    if (!mtype || strcmp(mtype, "BPE")) {
        st = ba_error_set(err, BA_ERR_UNSUPPORTED,
                          "%s: tokenizer model '%s' is not supported (only a byte-level vocabulary: BPE with "
                          "byte_fallback and no merges)",
                          p, mtype ? mtype : "(none)");
        goto done;
    }
    if (!json_is_true(json_object_get(m, "byte_fallback"))) {
        st = ba_error_set(
            err, BA_ERR_UNSUPPORTED,
            "%s: a BPE tokenizer without byte_fallback (GPT-2 style byte-level BPE) is not supported", p);
        goto done;
    }
    if (json_array_size(merges) > 0 || (merges && !json_is_array(merges))) {
        st =
            ba_error_set(err, BA_ERR_UNSUPPORTED,
                         "%s: BPE merges are not supported (only a byte-level vocabulary with no merges)", p);
        goto done;
    }
    if (!json_is_object(vocab) || json_object_size(vocab) == 0) {
        st = ba_error_set(err, BA_ERR_INPUT, "%s: model.vocab is missing or empty", p);
        goto done;
    }
    /* ids of model.vocab and added_tokens, all below vocab_size, each given once */
    v->n = (int)c->vocab;
    v->tokens = ba_calloc((size_t)v->n, sizeof *v->tokens, err);
    v->types = ba_calloc((size_t)v->n, sizeof *v->types, err);
    if (!v->tokens || !v->types) {
        st = BA_ERR_NOMEM;
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || id >= c->vocab) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: token '%s': id must be from 0 to vocab_size-1 (%lld)",
                              p, key, (long long)c->vocab - 1);
            goto done;
        }
        if (v->tokens[id]) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: token id %lld given twice", p, (long long)id);
            goto done;
        }
        if (!(v->tokens[id] = strdup(key))) {
            st = ba_error_set(err, BA_ERR_NOMEM, "out of memory");
            goto done;
        }
        v->types[id] = is_byte_token(key) ? TOK_BYTE : TOK_NORMAL;
    }
    size_t i;
    json_t *at;
    json_array_foreach(json_object_get(j, "added_tokens"), i, at) {
        json_t *idj = json_object_get(at, "id");
        const char *content = json_string_value(json_object_get(at, "content"));
        json_int_t id = json_integer_value(idj);
        if (!json_is_integer(idj) || !content || id < 0 || id >= c->vocab) {
            st = ba_error_set(err, BA_ERR_INPUT,
                              "%s: added_tokens[%zu]: needs an id below vocab_size and a content", p, i);
            goto done;
        }
        if (v->tokens[id] && strcmp(v->tokens[id], content)) {
            st = ba_error_set(err, BA_ERR_INPUT,
                              "%s: added token '%s' has id %lld, which is '%s' in model.vocab", p, content,
                              (long long)id, v->tokens[id]);
            goto done;
        }
        if (!v->tokens[id] && !(v->tokens[id] = strdup(content))) {
            st = ba_error_set(err, BA_ERR_NOMEM, "out of memory");
            goto done;
        }
        v->types[id] = json_is_true(json_object_get(at, "special")) ? TOK_CONTROL : TOK_USER;
    }
    for (int k = 0; k < v->n; k++)
        if (!v->tokens[k]) { /* vocab_size above the tokenizer's: padding rows, as convert writes them */
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%d]", k);
            if (!(v->tokens[k] = strdup(pad))) {
                st = ba_error_set(err, BA_ERR_NOMEM, "out of memory");
                goto done;
            }
            v->types[k] = TOK_UNUSED;
        }
    v->unk = -1;
    const char *unk = json_string_value(json_object_get(m, "unk_token"));
    if (unk) {
        json_t *u = json_object_get(vocab, unk);
        if (!json_is_integer(u)) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: unk_token '%s' is not in model.vocab", p, unk);
            goto done;
        }
        v->unk = json_integer_value(u);
        v->types[v->unk] = TOK_UNKNOWN;
    }
    v->add_space_prefix = prepends_space(json_object_get(j, "normalizer")) ||
                          prepends_space(json_object_get(j, "pre_tokenizer"));
done:
    json_decref(j);
    return st;
}

/* ---- tensors ---- */
typedef struct {
    char name[BA_GGUF_MAX_NAME + 1];
    int64_t rows, cols; /* cols 0: a 1-D tensor of rows elements */
    int permute_heads;  /* q/k: heads of the rotary un-permutation; 0 none */
    int optional;
} expect_t;

static ba_status check_dtype(const char *path, const ba_st_tensor_t *t, ba_error *err) {
    if (t->dtype == BA_ST_F32 || t->dtype == BA_ST_F16 || t->dtype == BA_ST_BF16) return BA_OK;
    return ba_error_set(err, BA_ERR_UNSUPPORTED,
                        "%s: tensor '%s': dtype %s is not supported (F32, F16, BF16)", path, t->name,
                        ba_st_dtype_name(t->dtype));
}

/* Adds one tensor to w, converted (buffers go to *keep, freed by the caller after the write). */
static ba_status add_tensor(ba_gguf_writer_t *w, const char *path, const expect_t *e, const ba_st_tensor_t *t,
                            void **keep, ba_error *err) {
    BA_TRY(check_dtype(path, t, err));
    int want_dims = e->cols ? 2 : 1;
    if (t->n_dims != want_dims || t->shape[0] != e->rows || (e->cols && t->shape[1] != e->cols)) {
        char have[128] = "", want[64];
        size_t o = 0;
        for (int d = 0; d < t->n_dims && o < sizeof have; d++)
            o += (size_t)snprintf(have + o, sizeof have - o, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        if (e->cols)
            snprintf(want, sizeof want, "%lld, %lld", (long long)e->rows, (long long)e->cols);
        else
            snprintf(want, sizeof want, "%lld", (long long)e->rows);
        return ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s': shape [%s], config.json implies [%s]", path,
                            t->name, have, want);
    }
    int64_t ne[2] = {e->cols ? e->cols : e->rows, e->cols ? e->rows : 1};
    size_t esz = ba_st_dtype_size(t->dtype);
    if (!e->cols) { /* 1-D: F32 */
        float *f = ba_malloc((size_t)e->rows * sizeof *f, err);
        if (!f) return BA_ERR_NOMEM;
        *keep = f;
        for (int64_t k = 0; k < e->rows; k++) {
            const uint8_t *s = t->data + (size_t)k * esz;
            uint16_t h;
            if (t->dtype == BA_ST_F32)
                memcpy(&f[k], s, 4);
            else {
                memcpy(&h, s, 2);
                f[k] = t->dtype == BA_ST_F16 ? ba_f16_to_f32(h) : ba_bf16_to_f32(h);
            }
        }
        return ba_gguf_writer_add_tensor(w, e->name, 1, ne, T_F32, f, (uint64_t)e->rows * 4, err);
    }
    int type = t->dtype == BA_ST_F32 ? T_F32 : t->dtype == BA_ST_F16 ? T_F16 : T_BF16;
    const void *data = t->data;
    if (e->permute_heads) {
        uint8_t *p = ba_malloc(t->nbytes, err);
        if (!p) return BA_ERR_NOMEM;
        *keep = p;
        int64_t half = e->rows / e->permute_heads / 2;
        size_t row = (size_t)e->cols * esz;
        for (int64_t h = 0; h < e->permute_heads; h++)
            for (int64_t i = 0; i < half; i++)
                for (int64_t k = 0; k < 2; k++) /* GGUF row 2i+k of a head = HF row k*half+i */
                    memcpy(p + (size_t)(h * 2 * half + 2 * i + k) * row,
                           t->data + (size_t)(h * 2 * half + k * half + i) * row, row);
        data = p;
    }
    return ba_gguf_writer_add_tensor(w, e->name, 2, ne, type, data, t->nbytes, err);
}

static ba_status add_str_array(ba_gguf_writer_t *w, const char *key, char **s, int n, ba_error *err) {
    size_t size = 0;
    for (int i = 0; i < n; i++) size += 8 + strlen(s[i]);
    uint8_t *buf = ba_malloc(size, err), *q = buf;
    if (!buf) return BA_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        uint64_t len = strlen(s[i]);
        memcpy(q, &len, 8);
        memcpy(q + 8, s[i], len);
        q += 8 + len;
    }
    ba_status st = ba_gguf_writer_add_kv(w, key, BA_GGUF_ARRAY, BA_GGUF_STRING, (uint64_t)n, buf, size, err);
    free(buf);
    return st;
}

static ba_status write_kvs(ba_gguf_writer_t *w, const hf_config_t *c, const hf_vocab_t *v, int file_type,
                           ba_error *err) {
    const char *base = strrchr(c->dir, '/');
    base = base && base[1] ? base + 1 : c->dir;
    BA_TRY(ba_gguf_writer_add_str(w, "general.architecture", "llama", err));
    BA_TRY(ba_gguf_writer_add_str(w, "general.name", base, err));
    BA_TRY(ba_gguf_writer_add_u32(w, "llama.context_length", (uint32_t)c->n_ctx, err));
    BA_TRY(ba_gguf_writer_add_u32(w, "llama.embedding_length", (uint32_t)c->n_embd, err));
    BA_TRY(ba_gguf_writer_add_u32(w, "llama.block_count", (uint32_t)c->n_layer, err));
    BA_TRY(ba_gguf_writer_add_u32(w, "llama.feed_forward_length", (uint32_t)c->n_ff, err));
    BA_TRY(ba_gguf_writer_add_u32(w, "llama.rope.dimension_count", (uint32_t)(c->n_embd / c->n_head), err));
    BA_TRY(ba_gguf_writer_add_u32(w, "llama.attention.head_count", (uint32_t)c->n_head, err));
    BA_TRY(ba_gguf_writer_add_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_head_kv, err));
    BA_TRY(ba_gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", (float)c->eps, err));
    BA_TRY(ba_gguf_writer_add_f32(w, "llama.rope.freq_base", (float)c->rope_theta, err));
    if (file_type >= 0) BA_TRY(ba_gguf_writer_add_u32(w, "general.file_type", (uint32_t)file_type, err));
    BA_TRY(ba_gguf_writer_add_u32(w, "llama.vocab_size", (uint32_t)c->vocab, err));
    BA_TRY(ba_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama", err));
    BA_TRY(add_str_array(w, "tokenizer.ggml.tokens", v->tokens, v->n, err));
    float *scores = ba_calloc((size_t)v->n, sizeof *scores, err);
    if (!scores) return BA_ERR_NOMEM;
    ba_status st = ba_gguf_writer_add_kv(w, "tokenizer.ggml.scores", BA_GGUF_ARRAY, BA_GGUF_F32,
                                         (uint64_t)v->n, scores, (size_t)v->n * 4, err);
    free(scores);
    BA_TRY(st);
    BA_TRY(ba_gguf_writer_add_kv(w, "tokenizer.ggml.token_type", BA_GGUF_ARRAY, BA_GGUF_I32, (uint64_t)v->n,
                                 v->types, (size_t)v->n * 4, err));
    if (c->bos >= 0) BA_TRY(ba_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)c->bos, err));
    if (c->eos >= 0) BA_TRY(ba_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)c->eos, err));
    if (v->unk >= 0)
        BA_TRY(ba_gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)v->unk, err));
    if (c->pad >= 0)
        BA_TRY(ba_gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)c->pad, err));
    if (!v->add_space_prefix) {
        uint8_t no = 0;
        BA_TRY(ba_gguf_writer_add_kv(w, "tokenizer.ggml.add_space_prefix", BA_GGUF_BOOL, 0, 1, &no, 1, err));
    }
    return BA_OK;
}

/* config.json and tokenizer.json beside the checkpoint at path */
static void checkpoint_paths(const char *path, hf_config_t *c) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        snprintf(c->dir, sizeof c->dir, "%s", path);
    else
        ba_path_dirname(path, c->dir, sizeof c->dir);
    size_t dl = strlen(c->dir);
    while (dl > 1 && c->dir[dl - 1] == '/') c->dir[--dl] = 0;
    snprintf(c->cfg_path, sizeof c->cfg_path, "%s/config.json", c->dir);
    snprintf(c->tok_path, sizeof c->tok_path, "%s/tokenizer.json", c->dir);
}

static ba_status sha_line(ba_sha256_t *h, const char *path, ba_error *err) {
    char hex[65];
    BA_TRY(ba_sha256_file(path, hex, err));
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    ba_sha256_update(h, base, strlen(base));
    ba_sha256_update(h, " ", 1);
    ba_sha256_update(h, hex, 64);
    ba_sha256_update(h, "\n", 1);
    return BA_OK;
}

ba_status ba_llm_model_sha256(const char *path, char hex[65], ba_error *err) {
    if (ba_hf_is_gguf(path)) return ba_sha256_file(path, hex, err);
    hf_config_t c;
    memset(&c, 0, sizeof c);
    checkpoint_paths(path, &c);
    ba_safetensors_t *s = NULL;
    BA_TRY(ba_safetensors_open(path, &s, err));
    ba_sha256_t h;
    ba_sha256_init(&h);
    ba_status st = sha_line(&h, c.cfg_path, err);
    if (st == BA_OK) st = sha_line(&h, c.tok_path, err);
    for (int i = 0; st == BA_OK && i < s->n_files; i++) st = sha_line(&h, s->paths[i], err);
    ba_safetensors_free(s);
    if (st == BA_OK) {
        uint8_t d[32];
        ba_sha256_final(&h, d);
        for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    }
    return st;
}

/* Whether path names a safetensors checkpoint rather than one model file (ba_llm_model_files). */
static int is_checkpoint(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) return 0;
    if (S_ISDIR(sb.st_mode)) return 1;
    size_t n = strlen(path);
    return (n > 12 && !strcmp(path + n - 12, ".safetensors")) || (n > 5 && !strcmp(path + n - 5, ".json"));
}

static ba_status push_path(char ***files, int *n, const char *path, ba_error *err) {
    char **f = realloc(*files, ((size_t)*n + 1) * sizeof *f);
    if (!f) return ba_error_set(err, BA_ERR_NOMEM, "out of memory: model file list");
    *files = f;
    if (!(f[*n] = ba_strdup(path, err))) return err->code;
    (*n)++;
    return BA_OK;
}

ba_status ba_llm_model_files(const char *path, char ***files, int *n, ba_error *err) {
    *files = NULL;
    *n = 0;
    ba_status st = push_path(files, n, path, err);
    ba_safetensors_t *s = NULL;
    if (st != BA_OK || !is_checkpoint(path) || ba_hf_is_gguf(path)) return st;
    ba_error ignore = {0};
    if (ba_safetensors_open(path, &s, &ignore) != BA_OK) return BA_OK;
    hf_config_t c;
    memset(&c, 0, sizeof c);
    checkpoint_paths(path, &c);
    char index[4200];
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", c.dir);
    struct stat sb;
    st = push_path(files, n, c.cfg_path, err);
    if (st == BA_OK) st = push_path(files, n, c.tok_path, err);
    if (st == BA_OK && stat(index, &sb) == 0) st = push_path(files, n, index, err);
    for (int i = 0; st == BA_OK && i < s->n_files; i++) st = push_path(files, n, s->paths[i], err);
    ba_safetensors_free(s);
    return st;
}

static ba_status convert(const char *path, hf_config_t *c, hf_vocab_t *v, const char *out, ba_error *err) {
    BA_TRY(read_config(c, err));
    BA_TRY(read_tokenizer(c, v, err));
    ba_safetensors_t *s = NULL;
    BA_TRY(ba_safetensors_open(path, &s, err));
    ba_status st = BA_OK;
    int n_exp = (int)(9 * c->n_layer + 3);
    expect_t *e = ba_calloc((size_t)n_exp, sizeof *e, err);
    void **keep = ba_calloc((size_t)n_exp, sizeof *keep, err);
    const ba_st_tensor_t **src = ba_calloc((size_t)n_exp, sizeof *src, err);
    ba_gguf_writer_t *w = NULL;
    if (!e || !keep || !src) {
        st = BA_ERR_NOMEM;
        goto done;
    }
    int64_t hd = c->n_embd / c->n_head, E = c->n_embd;
    int k = 0;
#define EXP(R, C, P, OPT, ...)                                                                               \
    do {                                                                                                     \
        snprintf(e[k].name, sizeof e[k].name, __VA_ARGS__);                                                  \
        e[k].rows = (R), e[k].cols = (C), e[k].permute_heads = (int)(P), e[k].optional = (OPT);              \
        k++;                                                                                                 \
    } while (0)
    EXP(c->vocab, E, 0, 0, "token_embd.weight");
    for (int64_t l = 0; l < c->n_layer; l++) {
        EXP(E, 0, 0, 0, "blk.%lld.attn_norm.weight", (long long)l);
        EXP(c->n_head * hd, E, c->n_head, 0, "blk.%lld.attn_q.weight", (long long)l);
        EXP(c->n_head_kv * hd, E, c->n_head_kv, 0, "blk.%lld.attn_k.weight", (long long)l);
        EXP(c->n_head_kv * hd, E, 0, 0, "blk.%lld.attn_v.weight", (long long)l);
        EXP(E, c->n_head * hd, 0, 0, "blk.%lld.attn_output.weight", (long long)l);
        EXP(E, 0, 0, 0, "blk.%lld.ffn_norm.weight", (long long)l);
        EXP(c->n_ff, E, 0, 0, "blk.%lld.ffn_gate.weight", (long long)l);
        EXP(c->n_ff, E, 0, 0, "blk.%lld.ffn_up.weight", (long long)l);
        EXP(E, c->n_ff, 0, 0, "blk.%lld.ffn_down.weight", (long long)l);
    }
    EXP(E, 0, 0, 0, "output_norm.weight");
    EXP(c->vocab, E, 0, c->tied, "output.weight");
#undef EXP
    /* every checkpoint tensor maps to exactly one expected tensor */
    for (int i = 0; i < s->n; i++) {
        const ba_st_tensor_t *t = &s->t[i];
        size_t nl = strlen(t->name);
        if (nl >= 20 && !strcmp(t->name + nl - 20, "rotary_emb.inv_freq")) continue; /* convert skips it */
        char gn[BA_GGUF_MAX_NAME + 1];
        int x = -1;
        if (ba_hf_to_gguf_name(t->name, gn, sizeof gn) == 0)
            for (int q = 0; q < n_exp && x < 0; q++)
                if (!strcmp(e[q].name, gn)) x = q;
        if (x < 0) {
            st = ba_error_set(err, BA_ERR_UNSUPPORTED,
                              "%s: tensor '%s' is not part of a %lld-layer llama checkpoint", path, t->name,
                              (long long)c->n_layer);
            goto done;
        }
        src[x] = t;
    }
    for (int q = 0; q < n_exp; q++)
        if (!src[q] && !e[q].optional) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s' (GGUF name) is missing%s", path, e[q].name,
                              !strcmp(e[q].name, "output.weight") ? " (lm_head.weight: config.json says "
                                                                    "tie_word_embeddings is false)"
                                                                  : "");
            goto done;
        }
    /* general.file_type: the matrices' common type (llama_ftype ALL_F32 0, MOSTLY_F16 1, MOSTLY_BF16 32) */
    int file_type = -2;
    for (int q = 0; q < n_exp && (st = src[q] ? check_dtype(path, src[q], err) : BA_OK) == BA_OK; q++) {
        if (!src[q] || !e[q].cols) continue;
        int ft = src[q]->dtype == BA_ST_F32 ? 0 : src[q]->dtype == BA_ST_F16 ? 1 : 32;
        file_type = file_type == -2 || file_type == ft ? ft : -1;
    }
    if (st != BA_OK) goto done;
    if ((st = ba_gguf_writer_new(&w, err)) != BA_OK) goto done;
    if ((st = write_kvs(w, c, v, file_type < 0 ? -1 : file_type, err)) != BA_OK) goto done;
    for (int q = 0; q < n_exp && st == BA_OK; q++)
        if (src[q]) st = add_tensor(w, path, &e[q], src[q], &keep[q], err);
    if (st == BA_OK) st = ba_gguf_writer_write(w, out, err);
done:
    ba_gguf_writer_free(w);
    for (int q = 0; keep && q < n_exp; q++) free(keep[q]);
    free(keep);
    free(src);
    free(e);
    ba_safetensors_free(s);
    return st;
}

ba_status ba_hf_convert(const char *path, const char *out, ba_error *err) {
    hf_config_t c;
    memset(&c, 0, sizeof c);
    struct stat sb;
    if (stat(path, &sb) != 0) return ba_error_set(err, BA_ERR_INPUT, "%s: no such file or folder", path);
    checkpoint_paths(path, &c);
    hf_vocab_t v;
    memset(&v, 0, sizeof v);
    ba_status st = convert(path, &c, &v, out, err);
    vocab_free(&v);
    return st;
}

ba_status ba_llm_gguf_open_any(const char *path, ba_gguf_t **out, ba_error *err) {
    *out = NULL;
    if (ba_hf_is_gguf(path)) return ba_gguf_open(path, out, err);
    const char *tmp = getenv("TMPDIR");
    char tpl[4200];
    snprintf(tpl, sizeof tpl, "%s/bitalloc-hf-XXXXXX.gguf", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemps(tpl, 5);
    if (fd < 0) return ba_error_set(err, BA_ERR_IO, "%s: cannot create a temporary GGUF", tpl);
    close(fd);
    ba_status st = ba_hf_convert(path, tpl, err);
    if (st == BA_OK) st = ba_gguf_open(tpl, out, err);
    if (st != BA_OK) {
        unlink(tpl);
        return st;
    }
    (*out)->temporary = 1;
    return BA_OK;
}
