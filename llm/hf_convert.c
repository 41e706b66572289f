#include "llm/hf_convert.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/tensor.h"
#include "core/util.h"
#include "llm/safetensors.h"
#include "llm/spm.h"

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
    /* rope_scaling: ROPE_LINEAR -> llama.rope.scaling.type/factor; ROPE_LLAMA3 -> the
     * rope_freqs.weight tensor of per-frequency divisors (from factor, the low/high frequency
     * factors and the original context length); ROPE_YARN -> llama.rope.scaling.type/factor/
     * original_context_length and the betas when given (0: not given). */
    int rope_kind;
    double rope_factor, rope_low, rope_high, rope_beta_fast, rope_beta_slow;
    int64_t rope_orig_ctx;
} hf_config_t;

enum { ROPE_NONE = 0, ROPE_LINEAR = 1, ROPE_LLAMA3 = 2, ROPE_YARN = 3 };

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

/* rope_scaling (transformers 5 writes it as rope_parameters, rope_theta inside) as
 * convert_hf_to_gguf.py reads it for LlamaModel: "linear", "llama3" and "yarn"; "default" is none.
 * The type is spelled rope_type or type. Other types (dynamic, longrope, ...) are refused, and so
 * are yarn's attention-factor keys, which transformers and libllama do not read alike, and betas
 * other than the defaults. */
static ba_status read_rope_scaling(hf_config_t *c, json_t *j, ba_error *err) {
    const char *key = "rope_scaling";
    json_t *rs = json_object_get(j, key);
    if (!rs || json_is_null(rs)) {
        key = "rope_parameters";
        rs = json_object_get(j, key);
        if (!rs || json_is_null(rs)) return BA_OK;
        if (json_is_object(rs) && !json_object_get(j, "rope_theta"))
            BA_TRY(cfg_real(c, rs, "rope_theta", 0, &c->rope_theta, err));
    }
    if (!json_is_object(rs))
        return ba_error_set(err, BA_ERR_INPUT, "%s: '%s' must be an object or null", c->cfg_path, key);
    json_t *ty = json_object_get(rs, "rope_type");
    if (!ty || json_is_null(ty)) ty = json_object_get(rs, "type");
    const char *type = json_string_value(ty);
    if (!type)
        return ba_error_set(err, BA_ERR_INPUT, "%s: %s has no 'rope_type' (or 'type') string", c->cfg_path,
                            key);
    if (!strcmp(type, "default")) return BA_OK;
    int kind = !strcmp(type, "linear")   ? ROPE_LINEAR
               : !strcmp(type, "llama3") ? ROPE_LLAMA3
               : !strcmp(type, "yarn")   ? ROPE_YARN
                                         : ROPE_NONE;
    if (kind == ROPE_NONE)
        return ba_error_set(err, BA_ERR_UNSUPPORTED,
                            "%s: %s type '%s' is not supported (only linear, llama3 and yarn)", c->cfg_path,
                            key, type);
    /* positive numbers: factor always, llama3's frequency factors, yarn's optional betas */
    static const char *const reals[] = {"factor", "low_freq_factor", "high_freq_factor", "beta_fast",
                                        "beta_slow"};
    double *dst[] = {&c->rope_factor, &c->rope_low, &c->rope_high, &c->rope_beta_fast, &c->rope_beta_slow};
    for (int i = 0; i < 5; i++) {
        int wanted = i == 0 || (kind == ROPE_LLAMA3 && i < 3) || (kind == ROPE_YARN && i >= 3);
        json_t *x = json_object_get(rs, reals[i]);
        if (!wanted || (i >= 3 && (!x || json_is_null(x)))) continue;
        if (!json_is_number(x) || !(json_number_value(x) > 0))
            return ba_error_set(err, BA_ERR_INPUT, "%s: '%s.%s' must be a positive number (%s type '%s')",
                                c->cfg_path, key, reals[i], key, type);
        *dst[i] = json_number_value(x);
    }
    c->rope_kind = kind;
    if (kind == ROPE_LINEAR) return BA_OK;
    if (kind == ROPE_LLAMA3 && !(c->rope_high > c->rope_low))
        return ba_error_set(err, BA_ERR_INPUT, "%s: %s: high_freq_factor %g must exceed low_freq_factor %g",
                            c->cfg_path, key, c->rope_high, c->rope_low);
    if (kind == ROPE_YARN) {
        static const char *const refused[] = {"attention_factor", "attn_factor", "mscale", "mscale_all_dim",
                                              "extrapolation_factor"};
        for (int i = 0; i < 5; i++)
            if (json_object_get(rs, refused[i]))
                return ba_error_set(err, BA_ERR_UNSUPPORTED,
                                    "%s: %s type 'yarn' with '%s' is not supported (only factor, "
                                    "original_max_position_embeddings, beta_fast, beta_slow)",
                                    c->cfg_path, key, refused[i]);
        /* libllama 0.5.0's llama architecture does not read the yarn_beta keys: only its defaults hold */
        static const char *const betas[] = {"beta_fast", "beta_slow"};
        const double beta[] = {c->rope_beta_fast, c->rope_beta_slow}, beta_def[] = {32.0, 1.0};
        for (int i = 0; i < 2; i++)
            if (beta[i] > 0 && beta[i] != beta_def[i])
                return ba_error_set(err, BA_ERR_UNSUPPORTED,
                                    "%s: %s type 'yarn' with %s %g is not supported (libllama's llama "
                                    "architecture keeps its default %g)",
                                    c->cfg_path, key, betas[i], beta[i], beta_def[i]);
        if (json_is_false(json_object_get(rs, "truncate")))
            return ba_error_set(err, BA_ERR_UNSUPPORTED,
                                "%s: %s type 'yarn' with truncate false is not supported (libllama rounds "
                                "the correction range as truncate true does)",
                                c->cfg_path, key);
    }
    /* transformers reads it from rope_scaling; older configs put it beside */
    const char *ok = "original_max_position_embeddings";
    json_t *orig = json_object_get(rs, ok) ? rs : j;
    c->rope_orig_ctx = 0;
    BA_TRY(cfg_int(c, orig, ok, 0, 1, &c->rope_orig_ctx, err));
    if (!c->rope_orig_ctx)
        return ba_error_set(err, BA_ERR_INPUT, "%s: '%s.%s' is missing (%s type '%s')", c->cfg_path, key, ok,
                            key, type);
    return BA_OK;
}

/* llama3 rope scaling: the divisor of each of the n rotary frequencies base^(-2i/dim) (libllama's
 * rope_freqs.weight): 1 for wavelengths under orig_ctx/high_freq_factor, factor above
 * orig_ctx/low_freq_factor, and between them the reciprocal of the smooth blend of 1/factor and 1. */
static void llama3_rope_factors(const hf_config_t *c, int64_t dim, float *out) {
    const double pi = 3.14159265358979323846;
    double lo_wave = (double)c->rope_orig_ctx / c->rope_low,
           hi_wave = (double)c->rope_orig_ctx / c->rope_high;
    for (int64_t i = 0; i < dim / 2; i++) {
        double freq = pow(c->rope_theta, -(double)(2 * i) / (double)dim), wave = 2 * pi / freq;
        if (wave < hi_wave)
            out[i] = 1.0f;
        else if (wave > lo_wave)
            out[i] = (float)c->rope_factor;
        else {
            double smooth = ((double)c->rope_orig_ctx / wave - c->rope_low) / (c->rope_high - c->rope_low);
            out[i] = (float)(1.0 / ((1.0 - smooth) / c->rope_factor + smooth));
        }
    }
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
        (st = cfg_real(c, j, "rope_theta", 0, &c->rope_theta, err)) != BA_OK ||
        (st = read_rope_scaling(c, j, err)) != BA_OK)
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
    float *scores;     /* NULL: none written (gpt2) */
    const char *model; /* tokenizer.ggml.model: "llama" or "gpt2" */
    const char *pre;   /* tokenizer.ggml.pre */
    char **merges;     /* gpt2: "LEFT RIGHT" */
    int n_merges;
    int64_t unk, bos, eos, pad; /* -1: none */
    int add_space_prefix;       /* llama: 0 writes tokenizer.ggml.add_space_prefix false */
    int add_bos, add_eos;       /* -1: not said (libllama's default) */
} hf_vocab_t;

static void vocab_free(hf_vocab_t *v) {
    for (int i = 0; v->tokens && i < v->n; i++) free(v->tokens[i]);
    for (int i = 0; v->merges && i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens);
    free(v->types);
    free(v->scores);
    free(v->merges);
}

static ba_status vocab_alloc(hf_vocab_t *v, int n, int with_scores, ba_error *err) {
    v->n = n;
    v->tokens = ba_calloc((size_t)n, sizeof *v->tokens, err);
    v->types = ba_calloc((size_t)n, sizeof *v->types, err);
    if (with_scores) v->scores = ba_calloc((size_t)n, sizeof *v->scores, err);
    return v->tokens && v->types && (v->scores || !with_scores) ? BA_OK : BA_ERR_NOMEM;
}

/* Sets token id to a copy of s (replacing what was there). */
static ba_status set_token(hf_vocab_t *v, int64_t id, const char *s, int32_t type, ba_error *err) {
    char *t = ba_strdup(s, err);
    if (!t) return err->code;
    free(v->tokens[id]);
    v->tokens[id] = t;
    v->types[id] = type;
    return BA_OK;
}

/* Ids no tokenizer file names (vocab_size above the tokenizer's): unused [PADn] rows, as convert
 * writes them. */
static ba_status pad_unused(hf_vocab_t *v, float score, ba_error *err) {
    for (int k = 0; k < v->n; k++)
        if (!v->tokens[k]) {
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%d]", k);
            BA_TRY(set_token(v, k, pad, TOK_UNUSED, err));
            if (v->scores) v->scores[k] = score;
        }
    return BA_OK;
}

static int is_byte_token(const char *s) {
    static const char hx[] = "0123456789ABCDEFabcdef";
    return strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[5] == '>' && strchr(hx, s[3]) && strchr(hx, s[4]);
}

/* convert_hf_to_gguf.py's does_token_look_special: an added token that is a control token although
 * not marked special. */
static int looks_special(const char *s) {
    static const char *const names[] = {"<pad>", "<mask>", "<2mass>", "[@BOS@]"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) return 1;
    size_t n = strlen(s);
    static const char *const open[] = {"<|", "<\xef\xbd\x9c"}, *const close[] = {"|>", "\xef\xbd\x9c>"};
    for (int i = 0; i < 2; i++) {
        size_t lo = strlen(open[i]), lc = strlen(close[i]);
        if (n >= lo + lc && !strncmp(s, open[i], lo) && !strcmp(s + n - lc, close[i])) return 1;
    }
    return !strncmp(s, "<unused", 7) && n > 8 && s[n - 1] == '>'; /* gemma's <unusedN> */
}

/* A user-defined token with SentencePiece's '▁' written as the space it stands for (convert
 * pre-normalizes them so). */
static ba_status set_user_token(hf_vocab_t *v, int64_t id, const char *s, ba_error *err) {
    size_t n = strlen(s);
    char *t = malloc(n + 1), *o = t;
    if (!t) return ba_error_set(err, BA_ERR_NOMEM, "out of memory");
    for (const char *p = s; *p;)
        if (!strncmp(p, "\xe2\x96\x81", 3))
            *o++ = ' ', p += 3;
        else
            *o++ = *p++;
    *o = 0;
    ba_status st = set_token(v, id, t, TOK_USER, err);
    free(t);
    return st;
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

/* tokenizer_config.json beside the checkpoint, when there is one: add_bos_token / add_eos_token
 * (-> tokenizer.ggml.add_bos_token / add_eos_token) and, returned in *out for the SentencePiece
 * form, its added_tokens_decoder. */
static ba_status read_tokenizer_config(const hf_config_t *c, hf_vocab_t *v, json_t **out, ba_error *err) {
    *out = NULL;
    v->add_bos = v->add_eos = -1;
    char p[4200];
    snprintf(p, sizeof p, "%s/tokenizer_config.json", c->dir);
    struct stat sb;
    if (stat(p, &sb) != 0) return BA_OK;
    json_t *j;
    BA_TRY(load_json(p, "tokenizer_config.json", &j, err));
    static const char *const keys[] = {"add_bos_token", "add_eos_token"};
    for (int k = 0; k < 2; k++) {
        json_t *x = json_object_get(j, keys[k]);
        if (!x || json_is_null(x)) continue;
        if (!json_is_boolean(x)) {
            json_decref(j);
            return ba_error_set(err, BA_ERR_INPUT, "%s: '%s' must be true or false", p, keys[k]);
        }
        *(k ? &v->add_eos : &v->add_bos) = json_is_true(x);
    }
    *out = j;
    return BA_OK;
}

/* SentencePiece's tokenizer.model, as convert_hf_to_gguf.py's _create_vocab_sentencepiece reads it:
 * pieces by id with their scores and types (user-defined pieces as normal ones), then the ids of
 * added_tokens.json (user-defined, score -1000) and tokenizer_config.json's added_tokens_decoder
 * (control when special or looking special, else user-defined), the rest of vocab_size unused. */
static ba_status read_spm(const hf_config_t *c, hf_vocab_t *v, json_t *tcfg, ba_error *err) {
    const char *p = c->tok_path;
    ba_spm_model_t *m = NULL;
    BA_TRY(ba_spm_load(p, &m, err));
    ba_status st = BA_OK;
    json_t *added = NULL;
    if (m->model_type != BA_SPM_BPE) {
        st = ba_error_set(err, BA_ERR_UNSUPPORTED,
                          "%s: a SentencePiece %s model is not supported (only BPE, as Llama's: libllama's "
                          "SentencePiece tokenizer merges pieces by score)",
                          p, ba_spm_model_type_name(m->model_type));
        goto done;
    }
    if (!m->byte_fallback) {
        st = ba_error_set(err, BA_ERR_UNSUPPORTED,
                          "%s: a SentencePiece model without byte_fallback is not supported (libllama spells "
                          "unknown characters with the <0xXX> byte pieces)",
                          p);
        goto done;
    }
    if (m->n > c->vocab) {
        st = ba_error_set(err, BA_ERR_INPUT, "%s: %d pieces, more than config.json's vocab_size %lld", p,
                          m->n, (long long)c->vocab);
        goto done;
    }
    if ((st = vocab_alloc(v, (int)c->vocab, 1, err)) != BA_OK) goto done;
    for (int i = 0; i < m->n; i++) {
        int t = m->pieces[i].type;
        int32_t gt = t == BA_SPM_UNKNOWN   ? TOK_UNKNOWN
                     : t == BA_SPM_CONTROL ? TOK_CONTROL
                     : t == BA_SPM_UNUSED  ? TOK_UNUSED
                     : t == BA_SPM_BYTE    ? TOK_BYTE
                                           : TOK_NORMAL;
        if ((st = set_token(v, i, m->pieces[i].piece, gt, err)) != BA_OK) goto done;
        v->scores[i] = m->pieces[i].score;
    }
    char ap[4200];
    snprintf(ap, sizeof ap, "%s/added_tokens.json", c->dir);
    struct stat sb;
    if (stat(ap, &sb) == 0) {
        if ((st = load_json(ap, "added_tokens.json", &added, err)) != BA_OK) goto done;
        const char *key;
        json_t *val;
        json_object_foreach(added, key, val) {
            json_int_t id = json_integer_value(val);
            if (!*key || !json_is_integer(val) || id < 0 || id >= c->vocab) {
                st = ba_error_set(err, BA_ERR_INPUT,
                                  "%s: token '%s': needs a text and an id from 0 to vocab_size-1 (%lld)", ap,
                                  key, (long long)c->vocab - 1);
                goto done;
            }
            if ((st = set_token(v, id, key, TOK_USER, err)) != BA_OK) goto done;
            v->scores[id] = -1000.0f;
        }
    }
    json_t *dec = json_object_get(tcfg, "added_tokens_decoder");
    if (dec && !json_is_object(dec)) {
        st = ba_error_set(err, BA_ERR_INPUT,
                          "%s/tokenizer_config.json: added_tokens_decoder must be an object", c->dir);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(dec, key, val) {
        char *e;
        long long id = strtoll(key, &e, 10);
        const char *content = json_string_value(json_object_get(val, "content"));
        if (!*key || *e || id < 0 || id >= c->vocab || !content || !*content) {
            st = ba_error_set(
                err, BA_ERR_INPUT,
                "%s/tokenizer_config.json: added_tokens_decoder '%s': needs an id below vocab_size "
                "and a content",
                c->dir, key);
            goto done;
        }
        if (json_is_true(json_object_get(val, "special")) || looks_special(content))
            st = set_token(v, id, content, TOK_CONTROL, err);
        else
            st = set_user_token(v, id, content, err);
        if (st != BA_OK) goto done;
        v->scores[id] = -1000.0f;
    }
    if ((st = pad_unused(v, -10000.0f, err)) != BA_OK) goto done;
    v->model = "llama";
    v->pre = "default";
    v->unk = m->unk_id;
    if (v->bos < 0) v->bos = m->bos_id;
    if (v->eos < 0) v->eos = m->eos_id;
    if (v->pad < 0) v->pad = m->pad_id;
    v->add_space_prefix = m->add_dummy_prefix;
done:
    json_decref(added);
    ba_spm_free(m);
    return st;
}

/* The byte-level BPE pre-tokenizers recognised, by the pre_tokenizer tokenizer.json gives
 * (llama.cpp names them by hashing a tokenization, convert_hf_to_gguf.py's get_vocab_base_pre; the
 * same tokenizers give these configurations): a Split on regex (behavior Isolated, not inverted),
 * then ByteLevel with no regex and no prefix space. */
static const struct {
    const char *pre, *regex;
} known_pre[] = {
    {"llama-bpe", /* Llama 3, 3.1, 3.2 */
     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
};

static const char *json_type_is(json_t *n, const char *type) {
    const char *t = json_string_value(json_object_get(n, "type"));
    return t && !strcmp(t, type) ? t : NULL;
}

static const char *recognise_pre(json_t *j) {
    json_t *norm = json_object_get(j, "normalizer"), *pt = json_object_get(j, "pre_tokenizer");
    if (norm && !json_is_null(norm)) return NULL;
    json_t *list = json_object_get(pt, "pretokenizers");
    if (!json_type_is(pt, "Sequence") || json_array_size(list) != 2) return NULL;
    json_t *split = json_array_get(list, 0), *bl = json_array_get(list, 1);
    const char *beh = json_string_value(json_object_get(split, "behavior"));
    const char *rx = json_string_value(json_object_get(json_object_get(split, "pattern"), "Regex"));
    if (!json_type_is(split, "Split") || !rx || !beh || strcmp(beh, "Isolated") ||
        json_is_true(json_object_get(split, "invert")))
        return NULL;
    if (!json_type_is(bl, "ByteLevel") || json_is_true(json_object_get(bl, "add_prefix_space")) ||
        !json_is_false(json_object_get(bl, "use_regex")))
        return NULL;
    for (size_t k = 0; k < sizeof known_pre / sizeof known_pre[0]; k++)
        if (!strcmp(rx, known_pre[k].regex)) return known_pre[k].pre;
    return NULL;
}

/* model.merges: "LEFT RIGHT" strings or [LEFT, RIGHT] pairs (tokenizers >= 0.20) -> v->merges. */
static ba_status read_merges(const char *p, json_t *merges, hf_vocab_t *v, ba_error *err) {
    size_t n = json_array_size(merges), i;
    if (n > INT32_MAX) return ba_error_set(err, BA_ERR_INPUT, "%s: too many merges", p);
    v->merges = ba_calloc(n, sizeof *v->merges, err);
    if (!v->merges) return err->code;
    json_t *x;
    json_array_foreach(merges, i, x) {
        const char *s = json_string_value(x), *sp = s ? strchr(s, ' ') : NULL;
        const char *a = json_string_value(json_array_get(x, 0)), *b = json_string_value(json_array_get(x, 1));
        int ok = s ? sp && sp > s && sp[1] && !strchr(sp + 1, ' ')
                   : json_array_size(x) == 2 && a && b && *a && *b && !strchr(a, ' ') && !strchr(b, ' ');
        if (!ok)
            return ba_error_set(
                err, BA_ERR_INPUT,
                "%s: model.merges[%zu]: not \"LEFT RIGHT\" or [LEFT, RIGHT] (two tokens without "
                "spaces)",
                p, i);
        size_t len = s ? strlen(s) : strlen(a) + 1 + strlen(b);
        char *m = ba_malloc(len + 1, err);
        if (!m) return err->code;
        if (s)
            memcpy(m, s, len + 1);
        else
            snprintf(m, len + 1, "%s %s", a, b);
        v->merges[v->n_merges++] = m;
    }
    return BA_OK;
}

/* tokenizer.json: a byte-level SentencePiece-style vocabulary (BPE with byte_fallback, no merges:
 * "llama") or a GPT-2 style byte-level BPE with merges and a recognised pre-tokenizer ("gpt2"). */
static ba_status read_tokenizer_json(const hf_config_t *c, hf_vocab_t *v, ba_error *err) {
    const char *p = c->tok_path;
    json_t *j = NULL;
    BA_TRY(load_json(p, "tokenizer.model or tokenizer.json", &j, err));
    ba_status st = BA_OK;
    json_t *m = json_object_get(j, "model");
    const char *mtype = json_string_value(json_object_get(m, "type"));
    json_t *vocab = json_object_get(m, "vocab"), *merges = json_object_get(m, "merges");
    if (!mtype || strcmp(mtype, "BPE")) {
        st = ba_error_set(err, BA_ERR_UNSUPPORTED,
                          "%s: tokenizer model '%s' is not supported (only BPE: byte-level with merges, or "
                          "with byte_fallback and no merges)",
                          p, mtype ? mtype : "(none)");
        goto done;
    }
    if (merges && !json_is_array(merges)) {
        st = ba_error_set(err, BA_ERR_INPUT, "%s: model.merges must be a list", p);
        goto done;
    }
    int byte_fallback = json_is_true(json_object_get(m, "byte_fallback"));
    if (byte_fallback && json_array_size(merges) > 0) {
        st = ba_error_set(err, BA_ERR_UNSUPPORTED,
                          "%s: BPE merges with byte_fallback (a SentencePiece vocabulary) are not supported "
                          "from tokenizer.json; the checkpoint's tokenizer.model is",
                          p);
        goto done;
    }
    if (!byte_fallback && json_array_size(merges) == 0) {
        st = ba_error_set(err, BA_ERR_UNSUPPORTED,
                          "%s: a BPE tokenizer without byte_fallback and without merges is not supported", p);
        goto done;
    }
    if (!byte_fallback && !(v->pre = recognise_pre(j))) {
        char *pt = json_dumps(json_object_get(j, "pre_tokenizer"), JSON_COMPACT | JSON_ENCODE_ANY);
        json_t *norm = json_object_get(j, "normalizer");
        st =
            ba_error_set(err, BA_ERR_UNSUPPORTED,
                         "%s: the byte-level BPE pre-tokenizer is not recognised (only Llama 3's, llama-bpe: "
                         "no normalizer, a Split on its regex, then ByteLevel without a regex); found %s"
                         "pre_tokenizer %.300s",
                         p, norm && !json_is_null(norm) ? "a normalizer and " : "", pt ? pt : "(none)");
        free(pt);
        goto done;
    }
    if (!json_is_object(vocab) || json_object_size(vocab) == 0) {
        st = ba_error_set(err, BA_ERR_INPUT, "%s: model.vocab is missing or empty", p);
        goto done;
    }
    /* ids of model.vocab and added_tokens, all below vocab_size, each given once */
    if ((st = vocab_alloc(v, (int)c->vocab, byte_fallback, err)) != BA_OK) goto done;
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
        if ((st = set_token(v, id, key, byte_fallback && is_byte_token(key) ? TOK_BYTE : TOK_NORMAL, err)) !=
            BA_OK)
            goto done;
    }
    size_t i;
    json_t *at;
    json_array_foreach(json_object_get(j, "added_tokens"), i, at) {
        json_t *idj = json_object_get(at, "id");
        const char *content = json_string_value(json_object_get(at, "content"));
        json_int_t id = json_integer_value(idj);
        if (!json_is_integer(idj) || !content || !*content || id < 0 || id >= c->vocab) {
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
        int special = json_is_true(json_object_get(at, "special"));
        if (byte_fallback)
            st = set_token(v, id, content, special ? TOK_CONTROL : TOK_USER, err);
        else if (special || looks_special(content))
            st = set_token(v, id, content, TOK_CONTROL, err);
        else
            st = set_user_token(v, id, content, err);
        if (st != BA_OK) goto done;
    }
    if ((st = pad_unused(v, 0.0f, err)) != BA_OK) goto done;
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
    if (byte_fallback) {
        v->model = "llama";
        v->add_space_prefix = prepends_space(json_object_get(j, "normalizer")) ||
                              prepends_space(json_object_get(j, "pre_tokenizer"));
    } else {
        v->model = "gpt2";
        st = read_merges(p, merges, v, err);
    }
done:
    json_decref(j);
    return st;
}

static ba_status read_tokenizer(const hf_config_t *c, hf_vocab_t *v, ba_error *err) {
    v->unk = -1;
    v->bos = c->bos, v->eos = c->eos, v->pad = c->pad;
    json_t *tcfg = NULL;
    BA_TRY(read_tokenizer_config(c, v, &tcfg, err));
    size_t n = strlen(c->tok_path);
    ba_status st = n > 6 && !strcmp(c->tok_path + n - 6, ".model") ? read_spm(c, v, tcfg, err)
                                                                   : read_tokenizer_json(c, v, err);
    json_decref(tcfg);
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
    if (c->rope_kind == ROPE_LINEAR || c->rope_kind == ROPE_YARN) {
        const char *ty = c->rope_kind == ROPE_LINEAR ? "linear" : "yarn";
        BA_TRY(ba_gguf_writer_add_str(w, "llama.rope.scaling.type", ty, err));
        BA_TRY(ba_gguf_writer_add_f32(w, "llama.rope.scaling.factor", (float)c->rope_factor, err));
    }
    if (c->rope_kind == ROPE_YARN) {
        BA_TRY(ba_gguf_writer_add_u32(w, "llama.rope.scaling.original_context_length",
                                      (uint32_t)c->rope_orig_ctx, err));
        if (c->rope_beta_fast > 0)
            BA_TRY(ba_gguf_writer_add_f32(w, "llama.rope.scaling.yarn_beta_fast", (float)c->rope_beta_fast,
                                          err));
        if (c->rope_beta_slow > 0)
            BA_TRY(ba_gguf_writer_add_f32(w, "llama.rope.scaling.yarn_beta_slow", (float)c->rope_beta_slow,
                                          err));
    }
    if (file_type >= 0) BA_TRY(ba_gguf_writer_add_u32(w, "general.file_type", (uint32_t)file_type, err));
    BA_TRY(ba_gguf_writer_add_u32(w, "llama.vocab_size", (uint32_t)c->vocab, err));
    BA_TRY(ba_gguf_writer_add_str(w, "tokenizer.ggml.model", v->model, err));
    if (v->pre) BA_TRY(ba_gguf_writer_add_str(w, "tokenizer.ggml.pre", v->pre, err));
    BA_TRY(add_str_array(w, "tokenizer.ggml.tokens", v->tokens, v->n, err));
    if (v->scores)
        BA_TRY(ba_gguf_writer_add_kv(w, "tokenizer.ggml.scores", BA_GGUF_ARRAY, BA_GGUF_F32, (uint64_t)v->n,
                                     v->scores, (size_t)v->n * 4, err));
    BA_TRY(ba_gguf_writer_add_kv(w, "tokenizer.ggml.token_type", BA_GGUF_ARRAY, BA_GGUF_I32, (uint64_t)v->n,
                                 v->types, (size_t)v->n * 4, err));
    if (v->merges) BA_TRY(add_str_array(w, "tokenizer.ggml.merges", v->merges, v->n_merges, err));
    if (v->bos >= 0) BA_TRY(ba_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos, err));
    if (v->eos >= 0) BA_TRY(ba_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos, err));
    if (v->unk >= 0)
        BA_TRY(ba_gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)v->unk, err));
    if (v->pad >= 0)
        BA_TRY(ba_gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)v->pad, err));
    if (!strcmp(v->model, "llama") && !v->add_space_prefix) {
        uint8_t no = 0;
        BA_TRY(ba_gguf_writer_add_kv(w, "tokenizer.ggml.add_space_prefix", BA_GGUF_BOOL, 0, 1, &no, 1, err));
    }
    static const char *const add_keys[] = {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"};
    for (int k = 0; k < 2; k++) {
        int a = k ? v->add_eos : v->add_bos;
        uint8_t b = (uint8_t)a;
        if (a >= 0) BA_TRY(ba_gguf_writer_add_kv(w, add_keys[k], BA_GGUF_BOOL, 0, 1, &b, 1, err));
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
    /* SentencePiece's tokenizer.model first, as convert_hf_to_gguf.py tries it first */
    snprintf(c->tok_path, sizeof c->tok_path, "%s/tokenizer.model", c->dir);
    if (stat(c->tok_path, &sb) != 0) snprintf(c->tok_path, sizeof c->tok_path, "%s/tokenizer.json", c->dir);
}

/* Files beside the tokenizer that the conversion also reads, when present. */
static const char *const tok_extra[] = {"tokenizer_config.json", "added_tokens.json"};
#define N_TOK_EXTRA 2

static int tok_extra_path(const hf_config_t *c, int k, char *out, size_t cap) {
    struct stat sb;
    snprintf(out, cap, "%s/%s", c->dir, tok_extra[k]);
    return stat(out, &sb) == 0;
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
    char extra[4300];
    for (int k = 0; st == BA_OK && k < N_TOK_EXTRA; k++)
        if (tok_extra_path(&c, k, extra, sizeof extra)) st = sha_line(&h, extra, err);
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
    char extra[4300];
    for (int k = 0; st == BA_OK && k < N_TOK_EXTRA; k++)
        if (tok_extra_path(&c, k, extra, sizeof extra)) st = push_path(files, n, extra, err);
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
    float *rope_freqs = NULL;
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
    if (c->rope_kind == ROPE_LLAMA3) { /* convert's generate_extra_tensors: first */
        int64_t ne = hd / 2;
        if (!(rope_freqs = ba_malloc((size_t)ne * sizeof *rope_freqs, err))) {
            st = BA_ERR_NOMEM;
            goto done;
        }
        llama3_rope_factors(c, hd, rope_freqs);
        if ((st = ba_gguf_writer_add_tensor(w, "rope_freqs.weight", 1, &ne, T_F32, rope_freqs,
                                            (uint64_t)ne * sizeof *rope_freqs, err)) != BA_OK)
            goto done;
    }
    for (int q = 0; q < n_exp && st == BA_OK; q++)
        if (src[q]) st = add_tensor(w, path, &e[q], src[q], &keep[q], err);
    if (st == BA_OK) st = ba_gguf_writer_write(w, out, err);
done:
    ba_gguf_writer_free(w);
    free(rope_freqs);
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
