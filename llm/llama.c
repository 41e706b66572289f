#include "llm/llama.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ggml_types.h"
#include "llm/imatrix.h"

/* ---- declarations from llama.cpp v0.5.0 include/llama.h and ggml/include/ggml*.h (only what
 * is used; enums are int-sized in both languages) ---- */
#define GGML_TYPE_COUNT 43

struct llama_model;
struct llama_context;
struct llama_vocab;
typedef int32_t llama_token;

struct llama_model_params {
    void *devices;
    const void *tensor_buft_overrides;
    int32_t n_gpu_layers;
    int split_mode;
    int load_mode;
    int lazy_mode;
    int32_t main_gpu;
    const float *tensor_split;
    bool (*progress_callback)(float progress, void *user_data);
    void *progress_callback_user_data;
    const void *kv_overrides;
    bool vocab_only, check_tensors, use_extra_bufts, no_host, no_alloc, load_mtp;
};

struct llama_context_params {
    uint32_t n_ctx, n_batch, n_ubatch, n_seq_max, n_rs_seq, n_outputs_max, n_outputs_max_per_seq;
    int32_t n_threads, n_threads_batch;
    int ctx_type, rope_scaling_type, pooling_type, attention_type, flash_attn_type;
    float rope_freq_base, rope_freq_scale, yarn_ext_factor, yarn_attn_factor, yarn_beta_fast, yarn_beta_slow;
    uint32_t yarn_orig_ctx;
    float defrag_thold;
    bool (*cb_eval)(void *tensor, bool ask, void *user_data);
    void *cb_eval_user_data;
    int type_k, type_v;
    bool (*abort_callback)(void *data);
    void *abort_callback_data;
    bool embeddings, offload_kqv, no_perf, op_offload, swa_full, kv_unified;
    void *samplers;
    size_t n_samplers;
    struct llama_context *ctx_other;
};

struct llama_batch {
    int32_t n_tokens;
    llama_token *token;
    float *embd;
    int32_t *pos;
    int32_t *n_seq_id;
    int32_t **seq_id;
    int8_t *logits;
};

struct llama_model_tensor_override {
    const char *pattern;
    int type;
};

/* ggml/include/ggml.h's struct ggml_tensor (GGML_MAX_DIMS 4, GGML_MAX_OP_PARAMS 64, GGML_MAX_SRC 10,
 * GGML_MAX_NAME 64), read by the imatrix collector's eval callback. */
struct ggml_tensor {
    int type;
    void *buffer;
    int64_t ne[4];
    size_t nb[4];
    int op;
    int32_t op_params[16];
    int32_t flags;
    struct ggml_tensor *src[10];
    struct ggml_tensor *view_src;
    size_t view_offs;
    void *data;
    char name[64];
    void *extra;
    char padding[8];
};

struct llama_model_imatrix_data {
    const char *name;
    const float *data;
    size_t size;
};

struct llama_model_quantize_params {
    int32_t nthread;
    int ftype;
    int output_tensor_type;
    int token_embedding_type;
    bool allow_requantize, quantize_output_tensor, only_copy, pure, keep_split, dry_run;
    const void *imatrix;
    const void *kv_overrides;
    const struct llama_model_tensor_override *tt_overrides;
    const int32_t *prune_layers;
    size_t max_buf_size;
};

typedef void (*ggml_log_callback)(int level, const char *text, void *user_data);

typedef void (*ggml_to_float_t)(const void *x, float *y, int64_t k);
typedef void (*ggml_from_float_t)(const float *x, void *y, int64_t k);
struct ggml_type_traits {
    const char *type_name;
    int64_t blck_size;
    int64_t blck_size_interleave;
    size_t type_size;
    bool is_quantized;
    ggml_to_float_t to_float;
    ggml_from_float_t from_float_ref;
};

struct ba_llama {
    void *base, *ggml, *llama;
    const char *(*llama_version)(void);
    void (*llama_backend_init)(void);
    void (*llama_log_set)(ggml_log_callback cb, void *user_data);
    void (*ggml_backend_load_all_from_path)(const char *dir);
    struct llama_model_params (*llama_model_default_params)(void);
    struct llama_context_params (*llama_context_default_params)(void);
    struct llama_model_quantize_params (*llama_model_quantize_default_params)(void);
    struct llama_model *(*llama_model_load_from_file)(const char *path, struct llama_model_params p);
    void (*llama_model_free)(struct llama_model *m);
    struct llama_context *(*llama_init_from_model)(struct llama_model *m, struct llama_context_params p);
    void (*llama_free)(struct llama_context *c);
    const struct llama_vocab *(*llama_model_get_vocab)(const struct llama_model *m);
    int32_t (*llama_vocab_n_tokens)(const struct llama_vocab *v);
    int32_t (*llama_tokenize)(const struct llama_vocab *v, const char *text, int32_t len, llama_token *tokens,
                              int32_t n_max, bool add_special, bool parse_special);
    struct llama_batch (*llama_batch_init)(int32_t n_tokens, int32_t embd, int32_t n_seq_max);
    void (*llama_batch_free)(struct llama_batch b);
    int32_t (*llama_decode)(struct llama_context *c, struct llama_batch b);
    float *(*llama_get_logits_ith)(struct llama_context *c, int32_t i);
    void *(*llama_get_memory)(const struct llama_context *c);
    void (*llama_memory_clear)(void *mem, bool data);
    uint32_t (*llama_model_quantize)(const char *in, const char *out,
                                     const struct llama_model_quantize_params *p);
    const char *(*ggml_type_name)(int type);
    int64_t (*ggml_blck_size)(int type);
    size_t (*ggml_type_size)(int type);
    size_t (*ggml_quantize_chunk)(int type, const float *src, void *dst, int64_t start, int64_t nrows,
                                  int64_t n_per_row, const float *imatrix);
    bool (*ggml_quantize_requires_imatrix)(int type);
    const char *(*ggml_op_name)(int op);
    bool (*ggml_backend_buffer_is_host)(void *buffer);
    const struct ggml_type_traits *(*ggml_get_type_traits)(int type);
};

static struct ba_llama g_ll;
static int g_loaded;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
/* The last error line libllama logged (reported with a failure). */
static __thread char g_log_err[512];

/* While set (ba_llama_mix_types), every line libllama logs on this thread is appended here. */
static __thread FILE *g_log_capture;

static void log_cb(int level, const char *text, void *user_data) {
    (void)user_data;
    if (g_log_capture && text) fputs(text, g_log_capture);
    if (level == 4 /* GGML_LOG_LEVEL_ERROR */ && text) {
        snprintf(g_log_err, sizeof g_log_err, "%s", text);
        size_t n = strlen(g_log_err);
        while (n && (g_log_err[n - 1] == '\n' || g_log_err[n - 1] == ' ')) g_log_err[--n] = 0;
    }
}

static const char *log_why(void) {
    return g_log_err[0] ? g_log_err : "no message from libllama";
}

static ba_status missing(ba_error *err, const char *dir, const char *what) {
    return ba_error_set(
        err, BA_ERR_UNSUPPORTED,
        "llama.cpp libraries: %s in %s; the LLM commands need %s@%s (scripts/setup installs it "
        "under build/vendor/llama; point %s at its %s folder)",
        what, dir, BA_LLAMA_NPM_PACKAGE, BA_LLAMA_NPM_VERSION, BA_LLAMA_DIR_ENV, BA_LLAMA_NPM_BINS);
}

static ba_status load_lib(const char *dir, const char *file, void **h, ba_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (!*h) {
        char what[4600];
        const char *e = dlerror();
        snprintf(what, sizeof what, "cannot load %s (%s)", file, e ? e : "?");
        return missing(err, dir, what);
    }
    return BA_OK;
}

#define SYM(lib, name)                                                                                       \
    do {                                                                                                     \
        *(void **)(&g_ll.name) = dlsym(g_ll.lib, #name);                                                     \
        if (!g_ll.name) return missing(err, dir, "symbol " #name " not found");                              \
    } while (0)

static ba_status load_all(const char *dir, ba_error *err) {
    BA_TRY(load_lib(dir, "libggml-base.so", &g_ll.base, err));
    BA_TRY(load_lib(dir, "libggml.v0.5.0.so", &g_ll.ggml, err));
    BA_TRY(load_lib(dir, "libllama.v0.5.0.so", &g_ll.llama, err));
    SYM(llama, llama_version);
    const char *v = g_ll.llama_version();
    if (!v || strcmp(v, BA_LLAMA_VERSION) != 0)
        return ba_error_set(err, BA_ERR_UNSUPPORTED,
                            "llama.cpp libraries in %s: llama_version() is '%s', bitalloc needs '%s' (%s@%s)",
                            dir, v ? v : "(null)", BA_LLAMA_VERSION, BA_LLAMA_NPM_PACKAGE,
                            BA_LLAMA_NPM_VERSION);
    SYM(llama, llama_backend_init);
    SYM(llama, llama_log_set);
    SYM(ggml, ggml_backend_load_all_from_path);
    SYM(llama, llama_model_default_params);
    SYM(llama, llama_context_default_params);
    SYM(llama, llama_model_quantize_default_params);
    SYM(llama, llama_model_load_from_file);
    SYM(llama, llama_model_free);
    SYM(llama, llama_init_from_model);
    SYM(llama, llama_free);
    SYM(llama, llama_model_get_vocab);
    SYM(llama, llama_vocab_n_tokens);
    SYM(llama, llama_tokenize);
    SYM(llama, llama_batch_init);
    SYM(llama, llama_batch_free);
    SYM(llama, llama_decode);
    SYM(llama, llama_get_logits_ith);
    SYM(llama, llama_get_memory);
    SYM(llama, llama_memory_clear);
    SYM(llama, llama_model_quantize);
    SYM(base, ggml_type_name);
    SYM(base, ggml_blck_size);
    SYM(base, ggml_type_size);
    SYM(base, ggml_quantize_chunk);
    SYM(base, ggml_quantize_requires_imatrix);
    SYM(base, ggml_op_name);
    SYM(base, ggml_backend_buffer_is_host);
    SYM(base, ggml_get_type_traits);
    g_ll.llama_log_set(log_cb, NULL);
    g_ll.ggml_backend_load_all_from_path(dir);
    g_ll.llama_backend_init();
    return BA_OK;
}

ba_status ba_llama_open(const char *dir, ba_llama_t **out, ba_error *err) {
    *out = NULL;
    if (!dir || !*dir) dir = getenv(BA_LLAMA_DIR_ENV);
    if (!dir || !*dir)
        return ba_error_set(
            err, BA_ERR_UNSUPPORTED,
            "llama.cpp libraries: %s is not set; the LLM commands need %s@%s (scripts/setup installs "
            "it under build/vendor/llama; point %s at its %s folder)",
            BA_LLAMA_DIR_ENV, BA_LLAMA_NPM_PACKAGE, BA_LLAMA_NPM_VERSION, BA_LLAMA_DIR_ENV,
            BA_LLAMA_NPM_BINS);
    pthread_mutex_lock(&g_mu);
    ba_status st = BA_OK;
    if (!g_loaded) {
        st = load_all(dir, err);
        if (st == BA_OK) g_loaded = 1;
    }
    pthread_mutex_unlock(&g_mu);
    if (st == BA_OK) *out = &g_ll;
    return st;
}

const char *ba_llama_version(const ba_llama_t *ll) {
    return ll->llama_version();
}

void ba_llama_ggml_type(const ba_llama_t *ll, int id, const char **name, int64_t *block, size_t *bytes) {
    *name = ll->ggml_type_name(id);
    *block = ll->ggml_blck_size(id);
    *bytes = ll->ggml_type_size(id);
}

static ba_status load_model(const ba_llama_t *ll, const char *path, int vocab_only, struct llama_model **m,
                            ba_error *err) {
    struct llama_model_params mp = ll->llama_model_default_params();
    mp.n_gpu_layers = 0;
    mp.vocab_only = vocab_only != 0;
    g_log_err[0] = 0;
    *m = ll->llama_model_load_from_file(path, mp);
    if (!*m)
        return ba_error_set(err, BA_ERR_INPUT, "%s: libllama cannot load the model: %s", path, log_why());
    return BA_OK;
}

ba_status ba_llama_tokenize(const ba_llama_t *ll, const char *model_path, const char *text, int32_t **tokens,
                            int *n_tokens, ba_error *err) {
    *tokens = NULL;
    *n_tokens = 0;
    size_t len = strlen(text);
    if (len > INT32_MAX / 4)
        return ba_error_set(err, BA_ERR_INPUT, "text of %zu bytes is too long to tokenize", len);
    struct llama_model *m;
    BA_TRY(load_model(ll, model_path, 1, &m, err));
    const struct llama_vocab *v = ll->llama_model_get_vocab(m);
    int32_t cap = (int32_t)len + 8;
    int32_t *t = ba_malloc((size_t)cap * sizeof *t, err);
    if (!t) {
        ll->llama_model_free(m);
        return err->code;
    }
    int32_t n = ll->llama_tokenize(v, text, (int32_t)len, t, cap, false, false);
    if (n < 0) { /* -n tokens needed */
        cap = -n;
        int32_t *t2 = ba_realloc(t, (size_t)cap * sizeof *t, err);
        if (!t2) {
            free(t);
            ll->llama_model_free(m);
            return err->code;
        }
        t = t2;
        n = ll->llama_tokenize(v, text, (int32_t)len, t, cap, false, false);
    }
    ll->llama_model_free(m);
    if (n < 0) {
        free(t);
        return ba_error_set(err, BA_ERR_RUNTIME, "%s: llama_tokenize failed", model_path);
    }
    *tokens = t;
    *n_tokens = n;
    return BA_OK;
}

static ba_status decode_impl(const ba_llama_t *ll, const char *model_path, const int32_t *tokens,
                             int chunk_len, int n_chunks, int n_threads, ba_llama_chunk_fn fn, void *user,
                             bool (*cb_eval)(void *, bool, void *), void *cb_user, ba_error *err) {
    if (chunk_len < 1 || n_chunks < 1) return ba_error_set(err, BA_ERR_INPUT, "no tokens to decode");
    struct llama_model *m;
    BA_TRY(load_model(ll, model_path, 0, &m, err));
    int nv = ll->llama_vocab_n_tokens(ll->llama_model_get_vocab(m));
    int64_t n_tokens = (int64_t)chunk_len * n_chunks;
    for (int64_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= nv) {
            ll->llama_model_free(m);
            return ba_error_set(err, BA_ERR_INPUT,
                                "token %d at position %lld is outside the vocabulary (%d tokens) of %s",
                                tokens[i], (long long)i, nv, model_path);
        }
    struct llama_context_params cp = ll->llama_context_default_params();
    cp.n_ctx = (uint32_t)chunk_len;
    cp.n_batch = (uint32_t)chunk_len;
    cp.n_ubatch = (uint32_t)chunk_len;
    cp.n_seq_max = 1;
    cp.n_threads = cp.n_threads_batch = n_threads > 0 ? n_threads : 1;
    cp.no_perf = true;
    cp.cb_eval = cb_eval;
    cp.cb_eval_user_data = cb_user;
    g_log_err[0] = 0;
    struct llama_context *c = ll->llama_init_from_model(m, cp);
    if (!c) {
        ll->llama_model_free(m);
        return ba_error_set(err, BA_ERR_RUNTIME, "%s: libllama cannot create a context: %s", model_path,
                            log_why());
    }
    ba_status st = BA_OK;
    struct llama_batch b = ll->llama_batch_init(chunk_len, 0, 1);
    float *out = ba_malloc((size_t)chunk_len * (size_t)nv * sizeof *out, err);
    if (!out) st = err->code;
    for (int k = 0; st == BA_OK && k < n_chunks; k++) {
        const int32_t *t = tokens + (int64_t)k * chunk_len;
        for (int i = 0; i < chunk_len; i++) {
            b.token[i] = t[i];
            b.pos[i] = i;
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = 0;
            b.logits[i] = 1;
        }
        b.n_tokens = chunk_len;
        if (k > 0) ll->llama_memory_clear(ll->llama_get_memory(c), true);
        int32_t rc = ll->llama_decode(c, b);
        if (rc != 0) {
            st = ba_error_set(err, BA_ERR_RUNTIME, "%s: llama_decode returned %d: %s", model_path, rc,
                              log_why());
            break;
        }
        for (int i = 0; i < chunk_len; i++) {
            const float *row = ll->llama_get_logits_ith(c, i);
            if (!row) {
                st = ba_error_set(err, BA_ERR_RUNTIME, "%s: no logits for position %d", model_path, i);
                break;
            }
            memcpy(out + (size_t)i * (size_t)nv, row, (size_t)nv * sizeof *out);
        }
        if (st == BA_OK) st = fn(user, k, out, nv, err);
    }
    free(out);
    ll->llama_batch_free(b);
    ll->llama_free(c);
    ll->llama_model_free(m);
    return st;
}

ba_status ba_llama_decode_chunks(const ba_llama_t *ll, const char *model_path, const int32_t *tokens,
                                 int chunk_len, int n_chunks, int n_threads, ba_llama_chunk_fn fn, void *user,
                                 ba_error *err) {
    return decode_impl(ll, model_path, tokens, chunk_len, n_chunks, n_threads, fn, user, NULL, NULL, err);
}

/* ---- imatrix collection: Σx² per input column of every weight matrix product ---- */

typedef struct {
    const ba_llama_t *ll;
    int n;
    ba_imatrix_entry_t *e; /* mean holds Σx² while collecting */
    int64_t *count;        /* rows (tokens) seen per entry */
    int failed;            /* out of memory inside the callback */
} collect_t;

static int weight_name(const char *name) {
    size_t n = strnlen(name, 64);
    return n > 7 && n < 64 && !memcmp(name + n - 7, ".weight", 7);
}

static bool collect_cb(void *tp, bool ask, void *user) {
    collect_t *c = user;
    struct ggml_tensor *t = tp;
    const struct ggml_tensor *w = t->src[0], *x = t->src[1];
    int want = strcmp(c->ll->ggml_op_name(t->op), "MUL_MAT") == 0 && w && x && x->type == 0 /* F32 */ &&
               weight_name(w->name) && x->ne[0] == w->ne[0] && w->ne[2] == 1 && w->ne[3] == 1;
    if (ask) return want;
    if (!want || c->failed || !c->ll->ggml_backend_buffer_is_host(x->buffer)) return true;
    ba_imatrix_entry_t *e = NULL;
    for (int i = 0; i < c->n && !e; i++)
        if (!strcmp(c->e[i].name, w->name)) e = &c->e[i];
    if (!e) {
        ba_error err;
        ba_imatrix_entry_t *ne = ba_realloc(c->e, (size_t)(c->n + 1) * sizeof *ne, &err);
        int64_t *nc = ne ? ba_realloc(c->count, (size_t)(c->n + 1) * sizeof *nc, &err) : NULL;
        if (ne) c->e = ne;
        if (nc) c->count = nc;
        float *sums = nc ? ba_calloc((size_t)x->ne[0], sizeof *sums, &err) : NULL;
        char *name = sums ? ba_strdup(w->name, &err) : NULL;
        if (!name) {
            free(sums);
            c->failed = 1;
            return true;
        }
        e = &c->e[c->n];
        *e = (ba_imatrix_entry_t){name, x->ne[0], 1, sums};
        c->count[c->n++] = 0;
    }
    int k = (int)(e - c->e);
    for (int64_t i3 = 0; i3 < x->ne[3]; i3++)
        for (int64_t i2 = 0; i2 < x->ne[2]; i2++)
            for (int64_t i1 = 0; i1 < x->ne[1]; i1++) {
                const float *row =
                    (const float *)((const char *)x->data + i1 * x->nb[1] + i2 * x->nb[2] + i3 * x->nb[3]);
                for (int64_t j = 0; j < x->ne[0]; j++) e->mean[j] += row[j] * row[j];
                c->count[k]++;
            }
    return true;
}

static ba_status no_logits(void *user, int chunk, const float *logits, int nv, ba_error *err) {
    (void)user, (void)chunk, (void)logits, (void)nv, (void)err;
    return BA_OK;
}

ba_status ba_llama_collect_imatrix(const ba_llama_t *ll, const char *model_path, const int32_t *tokens,
                                   int chunk_len, int n_chunks, int n_threads, ba_imatrix_t **out,
                                   int64_t **counts, ba_error *err) {
    *out = NULL;
    *counts = NULL;
    collect_t c = {ll, 0, NULL, NULL, 0};
    ba_status st = decode_impl(ll, model_path, tokens, chunk_len, n_chunks, n_threads, no_logits, NULL,
                               collect_cb, &c, err);
    if (st == BA_OK && c.failed) st = ba_error_set(err, BA_ERR_NOMEM, "out of memory collecting the imatrix");
    ba_imatrix_t *im = st == BA_OK ? ba_calloc(1, sizeof *im, err) : NULL;
    if (st == BA_OK && !im) st = BA_ERR_NOMEM;
    if (st != BA_OK) {
        for (int i = 0; i < c.n; i++) {
            free(c.e[i].name);
            free(c.e[i].mean);
        }
        free(c.e);
        free(c.count);
        return st;
    }
    for (int i = 0; i < c.n; i++)
        for (int64_t j = 0; j < c.e[i].ne0; j++) c.e[i].mean[j] /= (float)(c.count[i] ? c.count[i] : 1);
    im->n = c.n;
    im->e = c.e;
    im->chunk_count = n_chunks;
    *out = im;
    *counts = c.count;
    return BA_OK;
}

typedef struct {
    float *out;
    int n_tokens;
    int nv;
} logits_acc_t;

static ba_status keep_logits(void *user, int chunk, const float *logits, int nv, ba_error *err) {
    (void)chunk;
    logits_acc_t *a = user;
    a->nv = nv;
    a->out = ba_malloc((size_t)a->n_tokens * (size_t)nv * sizeof *a->out, err);
    if (!a->out) return err->code;
    memcpy(a->out, logits, (size_t)a->n_tokens * (size_t)nv * sizeof *a->out);
    return BA_OK;
}

ba_status ba_llama_logits(const ba_llama_t *ll, const char *model_path, const int32_t *tokens, int n_tokens,
                          int n_threads, float **logits, int *n_vocab, ba_error *err) {
    *logits = NULL;
    *n_vocab = 0;
    logits_acc_t a = {NULL, n_tokens, 0};
    BA_TRY(ba_llama_decode_chunks(ll, model_path, tokens, n_tokens, 1, n_threads, keep_logits, &a, err));
    *logits = a.out;
    *n_vocab = a.nv;
    return BA_OK;
}

int ba_llama_needs_imatrix(const ba_llama_t *ll, int type) {
    return ll->ggml_quantize_requires_imatrix(type) ? 1 : 0;
}

ba_status ba_llama_to_f32(const ba_llama_t *ll, int type, const void *src, int64_t n, float *dst,
                          ba_error *err) {
    if (type == 0 /* F32 */) {
        memcpy(dst, src, (size_t)n * sizeof *dst);
        return BA_OK;
    }
    const ba_ggml_type_t *t = ba_ggml_type_by_id(type);
    const struct ggml_type_traits *tr = t ? ll->ggml_get_type_traits(type) : NULL;
    if (!tr || !tr->to_float)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "ggml type %s has no conversion to f32",
                            t ? t->name : "(unknown)");
    if (n % tr->blck_size != 0)
        return ba_error_set(err, BA_ERR_INPUT, "%lld values are not whole blocks of %s", (long long)n,
                            t->name);
    tr->to_float(src, dst, n);
    return BA_OK;
}

ba_status ba_llama_quantize_rows(const ba_llama_t *ll, int type, const float *src, int64_t nrows,
                                 int64_t n_per_row, const float *imatrix, void *dst, size_t *nbytes,
                                 ba_error *err) {
    *nbytes = 0;
    const ba_ggml_type_t *t = ba_ggml_type_by_id(type);
    if (!t || !t->quant_target)
        return ba_error_set(err, BA_ERR_INPUT, "ggml type %s is not a weight type llama-quantize writes",
                            t ? t->name : "(unknown)");
    if (n_per_row % t->block != 0)
        return ba_error_set(err, BA_ERR_INPUT, "a row of %lld values is not whole %s blocks of %d",
                            (long long)n_per_row, t->name, t->block);
    if (!imatrix && ll->ggml_quantize_requires_imatrix(type))
        return ba_error_set(err, BA_ERR_INPUT, "ggml type %s needs an imatrix", t->name);
    *nbytes = ll->ggml_quantize_chunk(type, src, dst, 0, nrows, n_per_row, imatrix);
    return BA_OK;
}

/* llama_ftype whose default type is the ggml type (llama-quant.cpp); -1 when none. */
static int ftype_of(int type) {
    static const int map[][2] = {{0, 0},   {1, 1},   {2, 2},   {3, 3},   {8, 7},   {6, 8},   {7, 9},
                                 {10, 10}, {11, 11}, {12, 14}, {13, 16}, {14, 18}, {16, 19}, {17, 20},
                                 {18, 23}, {19, 24}, {20, 25}, {21, 26}, {22, 28}, {23, 30}, {29, 31},
                                 {30, 32}, {34, 36}, {35, 37}, {39, 38}, {40, 39}, {41, 40}, {42, 41}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i][0] == type) return map[i][1];
    return -1;
}

static const struct {
    const char *name;
    int ftype;
} MIXES[] = {{"Q2_K", 10},   {"Q3_K_S", 11}, {"Q3_K_M", 12}, {"Q3_K_L", 13}, {"Q4_K_S", 14},
             {"Q4_K_M", 15}, {"Q5_K_S", 16}, {"Q5_K_M", 17}, {"Q6_K", 18},   {"Q8_0", 7}};

const char *ba_llama_mix_name(int i) {
    return i >= 0 && i < (int)(sizeof MIXES / sizeof MIXES[0]) ? MIXES[i].name : NULL;
}

/* libllama's view of an imatrix: {name, mean x², size} rows ending in {NULL, NULL, 0}; NULL for none. */
static ba_status imatrix_rows(const ba_imatrix_t *im, struct llama_model_imatrix_data **out, ba_error *err) {
    *out = NULL;
    if (!im) return BA_OK;
    struct llama_model_imatrix_data *imx = ba_calloc((size_t)im->n + 1, sizeof *imx, err);
    if (!imx) return err->code;
    for (int i = 0; i < im->n; i++)
        imx[i] = (struct llama_model_imatrix_data){im->e[i].name, im->e[i].mean,
                                                   (size_t)(im->e[i].ne0 * im->e[i].n_mat)};
    *out = imx;
    return BA_OK;
}

/* llama_model_quantize(in -> out) with mix's ftype and no overrides (dry_run: nothing is quantized
 * or written, the per-tensor decisions are only logged). */
static ba_status quantize_mix(const ba_llama_t *ll, const char *in, const char *out, const char *mix,
                              int n_threads, const ba_imatrix_t *im, int dry_run, ba_error *err) {
    int ft = -1;
    for (size_t i = 0; i < sizeof MIXES / sizeof MIXES[0]; i++)
        if (!strcmp(MIXES[i].name, mix)) ft = MIXES[i].ftype;
    if (ft < 0) return ba_error_set(err, BA_ERR_INPUT, "'%s' is not a llama.cpp K mix (Q2_K ... Q8_0)", mix);
    struct llama_model_quantize_params p = ll->llama_model_quantize_default_params();
    p.nthread = n_threads > 0 ? n_threads : 1;
    p.ftype = ft;
    p.dry_run = dry_run != 0;
    struct llama_model_imatrix_data *imx;
    BA_TRY(imatrix_rows(im, &imx, err));
    p.imatrix = imx;
    g_log_err[0] = 0;
    uint32_t rc = ll->llama_model_quantize(in, out, &p);
    free(imx);
    if (rc != 0)
        return ba_error_set(err, BA_ERR_RUNTIME, "%s: llama_model_quantize to %s (%s) failed: %s", in, out,
                            mix, log_why());
    return BA_OK;
}

ba_status ba_llama_quantize_mix(const ba_llama_t *ll, const char *in, const char *out, const char *mix,
                                int n_threads, const ba_imatrix_t *im, ba_error *err) {
    return quantize_mix(ll, in, out, mix, n_threads, im, 0, err);
}

/* One tensor line of llama_model_quantize's log (llama-quant.cpp, v0.5.0):
 *   "[   3/  21]   blk.0.attn_q.weight - [  256,   256,     1,     1], type =    f32, "
 *   then "size =     0.25 MiB ->     0.05 MiB (q3_K)" (dry run, converted) or "size =  0.001 MiB" (kept).
 * name (cap bytes) and the ggml type name it ends with (the stored one when kept); 0, or -1 when
 * the line is no tensor line. */
static int parse_quant_line(const char *line, char *name, size_t cap, char *type, size_t tcap) {
    const char *p = line;
    if (*p++ != '[') return -1;
    p = strstr(p, "] ");
    if (!p) return -1;
    p += 2;
    while (*p == ' ') p++;
    size_t n = strcspn(p, " ");
    const char *sep = p + n;
    if (!n || n >= cap || strncmp(sep, " - [", 4) != 0) {
        while (*sep == ' ') sep++;
        if (!n || n >= cap || strncmp(sep, "- [", 3) != 0) return -1;
    }
    memcpy(name, p, n);
    name[n] = 0;
    const char *t = strstr(sep, ", type = ");
    if (!t) return -1;
    t += 9;
    while (*t == ' ') t++;
    size_t tn = strcspn(t, ",");
    const char *sz = strstr(t, "size = ");
    if (!tn || !sz) return -1;
    const char *open = strrchr(sz, '('), *close = open ? strchr(open, ')') : NULL;
    if (open && close && close > open + 1) {
        t = open + 1;
        tn = (size_t)(close - open - 1);
    }
    if (tn >= tcap) return -1;
    memcpy(type, t, tn);
    type[tn] = 0;
    return 0;
}

ba_status ba_llama_mix_types(const ba_llama_t *ll, const ba_gguf_t *g, const char *mix,
                             const ba_imatrix_t *im, int *types, ba_error *err) {
    char *log = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&log, &len);
    if (!fp) return ba_error_set(err, BA_ERR_NOMEM, "out of memory");
    for (int i = 0; i < g->n_tensors; i++) types[i] = -1;
    g_log_capture = fp;
    /* The output path is never opened in a dry run. */
    ba_status st = quantize_mix(ll, g->path, "/dev/null", mix, 1, im, 1, err);
    g_log_capture = NULL;
    if (fclose(fp) != 0 && st == BA_OK) st = ba_error_set(err, BA_ERR_NOMEM, "out of memory");
    int seen = 0;
    for (char *line = log, *nl; st == BA_OK && line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char name[BA_GGUF_MAX_NAME + 2], tname[32];
        if (parse_quant_line(line, name, sizeof name, tname, sizeof tname) != 0) continue;
        const ba_gguf_tensor_t *t = ba_gguf_find_tensor(g, name);
        const ba_ggml_type_t *ty = ba_ggml_type_by_name(tname);
        if (!t || !ty)
            st = ba_error_set(err, BA_ERR_RUNTIME, "%s: %s: libllama planned %s as '%s', which %s", g->path,
                              mix, name, tname,
                              t ? "is no ggml type bitalloc knows" : "the file does not hold");
        else {
            int i = (int)(t - g->tensors);
            seen += types[i] < 0;
            types[i] = ty->id;
        }
    }
    free(log);
    if (st == BA_OK && seen != g->n_tensors)
        st = ba_error_set(err, BA_ERR_RUNTIME, "%s: %s: libllama's dry run listed %d of the %d tensors",
                          g->path, mix, seen, g->n_tensors);
    return st;
}

ba_status ba_llama_quantize(const ba_llama_t *ll, const char *in, const char *out, int default_type,
                            const char *const *patterns, const int *types, int n_over, int n_threads,
                            const ba_imatrix_t *im, ba_error *err) {
    int ft = ftype_of(default_type);
    const ba_ggml_type_t *dt = ba_ggml_type_by_id(default_type);
    if (ft < 0 || !dt)
        return ba_error_set(err, BA_ERR_INPUT, "ggml type %d has no llama.cpp file type", default_type);
    struct llama_model_tensor_override *ov = ba_calloc((size_t)n_over + 1, sizeof *ov, err);
    if (!ov) return err->code;
    for (int i = 0; i < n_over; i++) {
        if (!ba_ggml_type_by_id(types[i])) {
            free(ov);
            return ba_error_set(err, BA_ERR_INPUT, "override '%s': unknown ggml type %d", patterns[i],
                                types[i]);
        }
        ov[i].pattern = patterns[i];
        ov[i].type = types[i];
    }
    ov[n_over].pattern = NULL;
    ov[n_over].type = GGML_TYPE_COUNT;
    struct llama_model_imatrix_data *imx;
    if (imatrix_rows(im, &imx, err) != BA_OK) {
        free(ov);
        return err->code;
    }
    struct llama_model_quantize_params p = ll->llama_model_quantize_default_params();
    p.imatrix = imx;
    p.nthread = n_threads > 0 ? n_threads : 1;
    p.ftype = ft;
    p.pure = n_over == 0;
    p.tt_overrides = n_over ? ov : NULL;
    g_log_err[0] = 0;
    uint32_t rc = ll->llama_model_quantize(in, out, &p);
    free(ov);
    free(imx);
    if (rc != 0)
        return ba_error_set(err, BA_ERR_RUNTIME, "%s: llama_model_quantize to %s (%s) failed: %s", in, out,
                            dt->name, log_why());
    return BA_OK;
}
