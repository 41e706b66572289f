/* LLM studies (llm_study.h): the same store, methods and resume rules as study.c's ONNX studies,
 * with a GGUF checkpoint, the libggml error table as Ω and the KL through libllama as the
 * measured objective. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ggml_types.h"
#include "core/util.h"
#include "llm/hf_convert.h"
#include "llm/kl.h"
#include "quant/export.h"
#include "study/llm_study.h"

/* ---- settings ---- */

void ba_llm_settings_init(ba_llm_settings_t *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->method, sizeof s->method, "ilp+evo");
    s->generations = BA_LLM_DEFAULT_GENERATIONS;
    s->offspring = BA_LLM_DEFAULT_OFFSPRING;
    s->chunk = BA_LLM_DEFAULT_CHUNK;
    s->threads = 1;
    snprintf(s->mix_seed, sizeof s->mix_seed, "%s", BA_LLM_MIX_SEED_DEFAULT);
    s->low_fidelity_tokens = BA_LLM_DEFAULT_LOW_FIDELITY_TOKENS;
    ba_error e;
    ba_llm_settings_set_types(s, BA_LLM_DEFAULT_TYPES, &e);
}

ba_status ba_llm_settings_set_mix_seed(ba_llm_settings_t *s, const char *value, ba_error *err) {
    if (strlen(value) >= sizeof s->mix_seed) return ba_error_set(err, BA_ERR_INPUT, "'%s': too long", value);
    if (strcmp(value, "auto") && strcmp(value, "none")) {
        int n = 0;
        for (const char *p = value; *p; n++) {
            size_t len = strcspn(p, ",");
            int found = 0;
            for (int i = 0; ba_llama_mix_name(i) && !found; i++)
                found = strlen(ba_llama_mix_name(i)) == len && !strncmp(ba_llama_mix_name(i), p, len);
            if (!found)
                return ba_error_set(
                    err, BA_ERR_INPUT,
                    "'%.*s' is not auto, none or one of llama.cpp's mixes (Q2_K, Q3_K_S, Q3_K_M, "
                    "Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, Q8_0)",
                    (int)len, p);
            if (n >= BA_LLM_MAX_MIX_SEEDS)
                return ba_error_set(err, BA_ERR_INPUT, "'%s': at most %d mixes", value, BA_LLM_MAX_MIX_SEEDS);
            p += len;
            if (*p == ',') p++;
        }
        if (n == 0 || value[strlen(value) - 1] == ',')
            return ba_error_set(err, BA_ERR_INPUT, "'%s': an empty mix name", value);
    }
    snprintf(s->mix_seed, sizeof s->mix_seed, "%s", value);
    return BA_OK;
}

void ba_llm_settings_free(ba_llm_settings_t *s) {
    free(s->model);
    free(s->text);
    free(s->imatrix);
    memset(s, 0, sizeof *s);
}

/* The width label of a ggml type (core/ggml_types.h's map read backwards); 0 when none. */
static int width_of(int type) {
    static const int widths[] = {2, 3, 4, 5, 6, 8, 16, 32};
    for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
        const ba_ggml_type_t *t = ba_ggml_type_for_bits(widths[i]);
        if (t && t->id == type) return widths[i];
    }
    return 0;
}

ba_status ba_llm_settings_set_types(ba_llm_settings_t *s, const char *list, ba_error *err) {
    int ids[BA_LLM_MAX_TYPES], n;
    BA_TRY(ba_llm_parse_types(list, ids, &n, err));
    for (int i = 0; i < n; i++)
        if (!width_of(ids[i]))
            return ba_error_set(
                err, BA_ERR_INPUT,
                "'%s': a search takes q2_K, q3_K, q4_K, q5_K, q6_K, q8_0, f16 and f32 (the types of "
                "the bit-widths 2..6, 8, 16, 32)",
                ba_ggml_type_by_id(ids[i])->name);
    memcpy(s->types, ids, sizeof ids);
    s->ntypes = n;
    return BA_OK;
}

ba_status ba_llm_settings_to_json(const ba_llm_settings_t *s, char **out, ba_error *err) {
    json_t *j = json_object(), *b = json_object(), *t = json_array();
    json_object_set_new(j, "kind", json_string(BA_LLM_STUDY_KIND));
    json_object_set_new(j, "model", json_string(s->model));
    json_object_set_new(j, "text", json_string(s->text));
    json_object_set_new(j, "imatrix", s->imatrix ? json_string(s->imatrix) : json_null());
    json_object_set_new(j, "imatrix_sha256", json_string(s->imatrix_sha256));
    for (int i = 0; i < s->budgets.n; i++)
        json_object_set_new(b, ba_budget_key(s->budgets.items[i].kind), json_real(s->budgets.items[i].limit));
    json_object_set_new(j, "budgets", b);
    for (int i = 0; i < s->ntypes; i++)
        json_array_append_new(t, json_string(ba_ggml_type_by_id(s->types[i])->name));
    json_object_set_new(j, "types", t);
    json_object_set_new(j, "method", json_string(s->method));
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)s->seed);
    json_object_set_new(j, "seed", json_string(seed));
    json_object_set_new(j, "generations", json_integer(s->generations));
    json_object_set_new(j, "offspring", json_integer(s->offspring));
    json_object_set_new(j, "chunk", json_integer(s->chunk));
    json_object_set_new(j, "threads", json_integer(s->threads));
    json_object_set_new(j, "mix_seed", json_string(s->mix_seed));
    json_object_set_new(j, "low_fidelity_tokens", json_integer(s->low_fidelity_tokens));
    *out = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(j);
    return *out ? BA_OK : ba_error_set(err, BA_ERR_NOMEM, "out of memory");
}

int ba_llm_settings_is_llm(const char *settings_json) {
    json_t *j = json_loads(settings_json, 0, NULL);
    const char *k = json_string_value(json_object_get(j, "kind"));
    int is = k && !strcmp(k, BA_LLM_STUDY_KIND);
    json_decref(j);
    return is;
}

static ba_status str_field(json_t *j, const char *key, int null_ok, char **out, ba_error *err) {
    json_t *v = json_object_get(j, key);
    if (null_ok && (!v || json_is_null(v))) return BA_OK;
    if (!json_is_string(v))
        return ba_error_set(err, BA_ERR_INPUT, "LLM study settings: '%s' is missing", key);
    *out = ba_strdup(json_string_value(v), err);
    return *out ? BA_OK : BA_ERR_NOMEM;
}

static ba_status int_field(json_t *j, const char *key, int lo, int *out, ba_error *err) {
    json_t *v = json_object_get(j, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > 1000000000)
        return ba_error_set(err, BA_ERR_INPUT, "LLM study settings: '%s' is not an integer >= %d", key, lo);
    *out = (int)json_integer_value(v);
    return BA_OK;
}

ba_status ba_llm_settings_from_json(const char *text, ba_llm_settings_t *s, ba_error *err) {
    ba_llm_settings_init(s);
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j || !ba_llm_settings_is_llm(text)) {
        json_decref(j);
        return ba_error_set(err, BA_ERR_INPUT, "not the settings of an LLM study");
    }
    ba_status st = str_field(j, "model", 0, &s->model, err);
    if (st == BA_OK) st = str_field(j, "text", 0, &s->text, err);
    if (st == BA_OK) st = str_field(j, "imatrix", 1, &s->imatrix, err);
    const char *ish = json_string_value(json_object_get(j, "imatrix_sha256"));
    snprintf(s->imatrix_sha256, sizeof s->imatrix_sha256, "%s", ish ? ish : "");
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(j, "budgets"), key, v) {
        if (st != BA_OK) break;
        ba_budget_kind_t kind;
        st = ba_budget_kind_parse(key, &kind, err);
        if (st == BA_OK && (!json_is_number(v) || s->budgets.n >= BA_BUDGET_NKINDS))
            st = ba_error_set(err, BA_ERR_INPUT, "LLM study settings: budget '%s'", key);
        if (st == BA_OK) s->budgets.items[s->budgets.n++] = (ba_budget_t){kind, json_number_value(v)};
    }
    json_t *types = json_object_get(j, "types");
    char list[512] = "";
    size_t i, o = 0;
    json_array_foreach(types, i, v) {
        if (json_is_string(v) && o < sizeof list)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? "," : "", json_string_value(v));
    }
    if (st == BA_OK) st = ba_llm_settings_set_types(s, list, err);
    const char *m = json_string_value(json_object_get(j, "method"));
    const char *seed = json_string_value(json_object_get(j, "seed"));
    if (st == BA_OK && (!m || !ba_study_method_find(m) || !seed))
        st = ba_error_set(err, BA_ERR_INPUT, "LLM study settings: 'method' or 'seed'");
    if (st == BA_OK) {
        snprintf(s->method, sizeof s->method, "%s", m);
        s->seed = strtoull(seed, NULL, 10);
        st = int_field(j, "generations", 0, &s->generations, err);
    }
    if (st == BA_OK) st = int_field(j, "offspring", 1, &s->offspring, err);
    if (st == BA_OK) st = int_field(j, "chunk", 2, &s->chunk, err);
    if (st == BA_OK) st = int_field(j, "threads", 1, &s->threads, err);
    /* Studies stored before mix seeds existed started from the ILP plan alone. */
    json_t *ms = json_object_get(j, "mix_seed");
    if (st == BA_OK && ms && !json_is_string(ms))
        st = ba_error_set(err, BA_ERR_INPUT, "LLM study settings: 'mix_seed' is not a string");
    if (st == BA_OK) st = ba_llm_settings_set_mix_seed(s, ms ? json_string_value(ms) : "none", err);
    s->low_fidelity_tokens = 0;
    if (st == BA_OK && json_object_get(j, "low_fidelity_tokens"))
        st = int_field(j, "low_fidelity_tokens", 1, &s->low_fidelity_tokens, err);
    json_decref(j);
    if (st != BA_OK) ba_llm_settings_free(s);
    return st;
}

/* ---- the run ---- */

typedef struct {
    ba_db_t *db;
    int64_t sid;
    const ba_llm_settings_t *s;
    const ba_study_callbacks_t *cb;
    const ba_llama_t *ll;
    ba_gguf_t *g;
    ba_imatrix_t *im;
    ba_llm_variants_t *v;
    ba_llm_errtab_t *tab;
    ba_llm_kl_t *kl;
    ba_problem_t *p;
    int *types; /* [g->n_tensors] the configuration being measured (-1: as stored) */
    int *wbits; /* [nlayers] */
    int *abits; /* [nlayers] zeros */
    char *config;
    int64_t measured;
    int j_avg, j_mem;                        /* budget rows in p, -1 */
    int nmix;                                /* mix seeds found (mix_seeds) */
    int *mix_choice;                         /* [nmix * nlayers] */
    char mix_name[BA_LLM_MAX_MIX_SEEDS][16]; /* their names */
} llm_ctx_t;

static void phase(const llm_ctx_t *c, const char *name, int64_t done, int64_t total) {
    if (!c->cb || !c->cb->progress) return;
    ba_study_progress_t pr = {name, done, total, NAN, NAN};
    c->cb->progress(c->cb->user, &pr);
}

static void ctx_free(llm_ctx_t *c) {
    ba_problem_free(c->p);
    ba_llm_kl_free(c->kl);
    ba_llm_errtab_free(c->tab);
    ba_llm_variants_free(c->v);
    ba_imatrix_free(c->im);
    ba_gguf_free(c->g);
    free(c->types);
    free(c->wbits);
    free(c->abits);
    free(c->config);
    free(c->mix_choice);
}

static void choice_types(llm_ctx_t *c, const int *choice) {
    for (int i = 0; i < c->g->n_tensors; i++) c->types[i] = -1;
    for (int l = 0; l < c->p->nlayers; l++) {
        int k = c->p->start[l] + choice[l];
        c->wbits[l] = c->p->bits[k];
        c->types[c->tab->rows[l].tensor] = ba_ggml_type_for_bits(c->p->bits[k])->id;
    }
}

/* Loads the checkpoint and imatrix, computes the error table and builds the problem (no libllama
 * decode yet). */
static ba_status build(llm_ctx_t *c, ba_error *err) {
    const ba_llm_settings_t *s = c->s;
    BA_TRY(ba_llm_gguf_open_any(s->model, &c->g, err)); /* safetensors: a temporary GGUF */
    if (s->imatrix) BA_TRY(ba_imatrix_open(s->imatrix, &c->im, err));
    BA_TRY(ba_llm_variants_new(c->ll, c->g, c->im, &c->v, err));
    phase(c, "sensitivity", 0, 1);
    BA_TRY(ba_llm_errtab_compute(c->v, s->types, s->ntypes, &c->tab, err));
    phase(c, "sensitivity", 1, 1);
    const ba_llm_errtab_t *t = c->tab;
    if (t->n == 0)
        return ba_error_set(err, BA_ERR_INPUT, "%s: no tensor llama-quantize would quantize", s->model);
    for (int l = 0; l < t->n; l++) {
        const ba_gguf_tensor_t *x = &c->g->tensors[t->rows[l].tensor];
        if (x->type != 0 && x->type != 1 && x->type != 30) /* F32, F16, BF16 */
            return ba_error_set(err, BA_ERR_INPUT,
                                "%s: tensor '%s' is stored as %s; search the F32/F16/BF16 checkpoint (its KL "
                                "reference, and llama-quantize does not requantize)",
                                s->model, x->name, ba_ggml_type_by_id(x->type)->name);
    }
    for (int l = 0; l < t->n; l++)
        if (t->rows[l].ncand == 0)
            return ba_error_set(err, BA_ERR_INPUT,
                                "%s: tensor '%s': none of --types fits it (ne0 %lld); add q8_0 or f16",
                                s->model, t->rows[l].name, (long long)c->g->tensors[t->rows[l].tensor].ne[0]);
    int L = t->n, nc = 0;
    for (int l = 0; l < L; l++) nc += t->rows[l].ncand;
    const char **names = ba_calloc((size_t)L, sizeof *names, err);
    int *ncand = ba_calloc((size_t)L, sizeof *ncand, err);
    int *bits = ba_calloc((size_t)nc, sizeof *bits, err);
    double *cost = ba_calloc((size_t)nc, sizeof *cost, err);
    double *avg = ba_calloc((size_t)nc, sizeof *avg, err);
    double *mem = ba_calloc((size_t)nc, sizeof *mem, err);
    ba_status st = names && ncand && bits && cost && avg && mem ? BA_OK : BA_ERR_NOMEM;
    for (int l = 0, k = 0; st == BA_OK && l < L; l++) {
        const ba_llm_errtab_row_t *r = &t->rows[l];
        names[l] = r->name;
        ncand[l] = r->ncand;
        for (int i = 0; i < r->ncand; i++, k++) {
            const ba_ggml_type_t *ty = ba_ggml_type_by_id(r->type[i]);
            bits[k] = width_of(r->type[i]);
            cost[k] = r->error[i];
            avg[k] = ba_ggml_type_bpw(ty) * (double)r->n_weights / (double)t->n_weights;
            mem[k] = (double)r->bytes[i];
        }
    }
    if (st == BA_OK) st = ba_problem_create(L, names, ncand, bits, cost, &c->p, err);
    c->j_avg = c->j_mem = -1;
    for (int i = 0; st == BA_OK && i < s->budgets.n; i++) {
        const ba_budget_t *b = &s->budgets.items[i];
        if (b->kind == BA_BUDGET_AVG_BITS) {
            st = ba_problem_add_budget(c->p, b->kind, b->limit, 0, avg, err);
            c->j_avg = c->p->nbudgets - 1;
        } else if (b->kind == BA_BUDGET_MEMORY) {
            st = ba_problem_add_budget(c->p, b->kind, b->limit, (double)t->other_bytes, mem, err);
            c->j_mem = c->p->nbudgets - 1;
        } else
            st = ba_error_set(err, BA_ERR_INPUT, "--budget %s: an LLM search takes avg-bits and memory",
                              ba_budget_key(b->kind));
    }
    free(names);
    free(ncand);
    free(bits);
    free(cost);
    free(avg);
    free(mem);
    BA_TRY(st);
    c->types = ba_calloc((size_t)c->g->n_tensors + 1, sizeof *c->types, err);
    c->wbits = ba_calloc((size_t)L, sizeof *c->wbits, err);
    c->abits = ba_calloc((size_t)L, sizeof *c->abits, err);
    c->config = ba_malloc((size_t)L * 4 + 2, err);
    return c->types && c->wbits && c->abits && c->config ? BA_OK : BA_ERR_NOMEM;
}

/* Real bits per quantizable weight and bytes of all tensors of a choice. */
static void sizes(const llm_ctx_t *c, const int *choice, double *avg_bits, double *bytes) {
    double bits = 0, b = (double)c->tab->other_bytes;
    for (int l = 0; l < c->p->nlayers; l++) {
        const ba_llm_errtab_row_t *r = &c->tab->rows[l];
        const ba_ggml_type_t *ty = ba_ggml_type_for_bits(c->p->bits[c->p->start[l] + choice[l]]);
        for (int i = 0; i < r->ncand; i++)
            if (r->type[i] == ty->id) b += (double)r->bytes[i];
        bits += ba_ggml_type_bpw(ty) * (double)r->n_weights;
    }
    *avg_bits = bits / (double)c->tab->n_weights;
    *bytes = b;
}

/* The settings' mix seeds (llm_study.h) as choices of the problem: each mix's per-tensor types
 * (ba_llama_mix_types, llama.cpp's own rules); a mix that gives a tensor a type outside its
 * candidates or breaks a budget is passed over by "auto" (which keeps the largest that fits) and
 * refused when named. One equal to the ILP plan or to an earlier mix is dropped, so the mixes are
 * trials 2, 3, … in order. */
static ba_status mix_seeds(llm_ctx_t *c, const int *ilp, ba_error *err) {
    const ba_llm_settings_t *s = c->s;
    c->nmix = 0;
    if (!strcmp(s->mix_seed, "none")) return BA_OK;
    int automatic = !strcmp(s->mix_seed, "auto");
    if (strcmp(s->method, "ilp+evo") != 0) {
        if (automatic) return BA_OK;
        return ba_error_set(err, BA_ERR_INPUT, "--mix-seed %s: only --method ilp+evo starts from seeds",
                            s->mix_seed);
    }
    int L = c->p->nlayers;
    free(c->mix_choice);
    c->mix_choice = ba_calloc((size_t)BA_LLM_MAX_MIX_SEEDS * L + 1, sizeof *c->mix_choice, err);
    int *types = ba_calloc((size_t)c->g->n_tensors + 1, sizeof *types, err);
    int *choice = ba_calloc((size_t)L + 1, sizeof *choice, err);
    ba_status st = c->mix_choice && types && choice ? BA_OK : BA_ERR_NOMEM;
    double best = -1;
    const char *list = s->mix_seed;
    phase(c, "seeds", 0, 1);
    for (int i = 0; st == BA_OK; i++) {
        char name[16];
        if (automatic) {
            if (!ba_llama_mix_name(i)) break;
            snprintf(name, sizeof name, "%s", ba_llama_mix_name(i));
        } else {
            if (!*list) break;
            size_t len = strcspn(list, ",");
            snprintf(name, sizeof name, "%.*s", (int)len, list);
            list += len + (list[len] == ',');
        }
        st = ba_llama_mix_types(c->ll, c->g, name, c->im, types, err);
        if (st != BA_OK) break;
        char why[256] = "";
        for (int l = 0; l < L && !why[0]; l++) {
            const ba_llm_errtab_row_t *r = &c->tab->rows[l];
            int w = width_of(types[r->tensor]);
            choice[l] = w ? ba_problem_find(c->p, l, w) : -1;
            if (choice[l] < 0)
                snprintf(why, sizeof why,
                         "it gives %s the type %s, which is not among its candidates (--types)", r->name,
                         ba_ggml_type_by_id(types[r->tensor])->name);
        }
        double avg, bytes;
        if (!why[0]) {
            sizes(c, choice, &avg, &bytes);
            if (!ba_problem_feasible(c->p, choice))
                snprintf(why, sizeof why,
                         "its %.0f bytes (%.4f bits per quantizable weight) break the budget", bytes, avg);
        }
        if (why[0]) {
            if (!automatic) st = ba_error_set(err, BA_ERR_INPUT, "--mix-seed %s: %s", name, why);
            continue;
        }
        int dup = !memcmp(choice, ilp, (size_t)L * sizeof *choice);
        for (int m = 0; m < c->nmix && !dup && !automatic; m++)
            dup = !memcmp(choice, c->mix_choice + (size_t)m * L, (size_t)L * sizeof *choice);
        if (dup || (automatic && bytes <= best)) continue;
        int slot = automatic ? 0 : c->nmix;
        memcpy(c->mix_choice + (size_t)slot * L, choice, (size_t)L * sizeof *choice);
        snprintf(c->mix_name[slot], sizeof c->mix_name[slot], "%s", name);
        c->nmix = slot + 1;
        best = bytes;
    }
    free(types);
    free(choice);
    if (st == BA_OK) phase(c, "seeds", 1, 1);
    return st;
}

static ba_status hook_eval_at(void *ctx, const int *choice, int64_t first, int64_t n, ba_eval_result_t *out,
                              ba_error *err) {
    llm_ctx_t *c = ctx;
    choice_types(c, choice);
    size_t o = 0;
    for (int l = 0; l < c->p->nlayers; l++)
        o += (size_t)sprintf(c->config + o, l ? ",%d" : "%d", c->wbits[l]);
    ba_memo_entry_t e;
    int found = 0;
    BA_TRY(ba_db_memo_get(c->db, c->sid, c->config, first, n, &e, &found, err));
    if (found) {
        *out = (ba_eval_result_t){e.objective, e.kl, NAN, e.agreement, NAN, n};
        return BA_OK;
    }
    double kl, agree;
    BA_TRY(ba_llm_kl_measure_types(c->kl, c->v, c->types, (int)first, (int)n, &kl, &agree, err));
    c->measured++;
    if (!isfinite(kl)) kl = agree = NAN;
    *out = (ba_eval_result_t){kl, kl, NAN, agree, NAN, n};
    e = (ba_memo_entry_t){kl, kl, NAN, agree, NAN};
    return ba_db_memo_put(c->db, c->sid, c->config, first, n, &e, err);
}

static ba_status hook_eval(void *ctx, const int *choice, int64_t nsamples, ba_eval_result_t *out,
                           ba_error *err) {
    llm_ctx_t *c = ctx;
    return hook_eval_at(ctx, choice, 0, nsamples > 0 ? nsamples : ba_llm_kl_nchunks(c->kl), out, err);
}

static ba_status hook_store(void *ctx, const ba_search_trial_t *st, const char *checkpoint, ba_error *err) {
    llm_ctx_t *c = ctx;
    choice_types(c, st->choice);
    ba_trial_t t = {0};
    t.number = st->number;
    snprintf(t.state, sizeof t.state, "%s", st->state);
    snprintf(t.method, sizeof t.method, "%s", st->method);
    sizes(c, st->choice, &t.avg_bits, &t.memory);
    t.bops = t.latency = NAN;
    t.predicted = ba_problem_objective(c->p, st->choice);
    t.kl = st->res.kl, t.mse = NAN, t.agreement = st->res.agreement, t.accuracy = NAN;
    t.objective = st->res.objective;
    t.validation = NAN;
    t.samples = st->res.samples;
    t.nlayers = c->p->nlayers;
    t.w_bits = c->wbits;
    t.a_bits = c->abits;
    ba_status s = ba_db_trial_add(c->db, c->sid, &t, checkpoint, err);
    if (s != BA_OK) {
        /* Another process on the same study stored it first: the search is deterministic. */
        ba_trial_t old = {0};
        ba_error e2;
        if (ba_db_trial_get(c->db, c->sid, st->number, &old, &e2) == BA_OK) {
            int same = old.nlayers == c->p->nlayers &&
                       !memcmp(old.w_bits, c->wbits, (size_t)c->p->nlayers * sizeof *c->wbits);
            ba_trial_free(&old);
            if (same) {
                ba_error_clear(err);
                return BA_OK;
            }
        }
    }
    return s;
}

static void hook_progress(void *ctx, int64_t done, int64_t total, const ba_eval_result_t *best,
                          const int *choice) {
    llm_ctx_t *c = ctx;
    if (!c->cb || !c->cb->progress) return;
    double use = c->p->nbudgets ? ba_problem_budget_value(c->p, 0, choice) / c->p->limit[0] : NAN;
    ba_study_progress_t pr = {"search", done, total, best ? best->objective : NAN, use};
    c->cb->progress(c->cb->user, &pr);
}

void ba_llm_study_result_free(ba_llm_study_result_t *r) {
    for (int i = 0; r->names && i < r->ntensors; i++) free(r->names[i]);
    free(r->names);
    free(r->types);
    memset(r, 0, sizeof *r);
}

static ba_status report_best(llm_ctx_t *c, const char *name, ba_llm_study_result_t *out, ba_error *err) {
    ba_trial_t *t;
    int n, *choice;
    int L = c->p->nlayers;
    ba_status st = ba_study_best_choice(c->db, c->sid, c->p, name, &t, &n, &choice, err);
    if (st == BA_OK) {
        out->trial = t[0].number;
        out->kl = t[0].kl;
        out->agreement = t[0].agreement;
        out->predicted = t[0].predicted;
        sizes(c, choice, &out->avg_bits, &out->bytes);
        out->ntensors = L;
        out->names = ba_calloc((size_t)L, sizeof *out->names, err);
        out->types = ba_calloc((size_t)L, sizeof *out->types, err);
        if (!out->names || !out->types) st = BA_ERR_NOMEM;
        for (int l = 0; st == BA_OK && l < L; l++) {
            out->names[l] = ba_strdup(c->p->names[l], err);
            if (!out->names[l]) st = BA_ERR_NOMEM;
            out->types[l] = ba_ggml_type_for_bits(c->p->bits[c->p->start[l] + choice[l]])->id;
        }
    }
    /* The evolution's seeds: the ILP plan (trial 1) and the mixes. */
    int nseeds = !strcmp(c->s->method, "ilp+evo") ? 1 + c->nmix : 0;
    for (int k = 0; st == BA_OK && k < nseeds; k++) {
        ba_trial_t tr = {0};
        ba_error e2;
        snprintf(out->seeds[k].name, sizeof out->seeds[k].name, "%s", k ? c->mix_name[k - 1] : "ilp");
        out->seeds[k].trial = k + 1;
        out->seeds[k].kl = out->seeds[k].bytes = NAN;
        if (ba_db_trial_get(c->db, c->sid, k + 1, &tr, &e2) == BA_OK) {
            out->seeds[k].kl = tr.kl;
            out->seeds[k].bytes = tr.memory;
            ba_trial_free(&tr);
        }
        out->nseeds = k + 1;
    }
    ba_study_info_t info;
    if (st == BA_OK && ba_db_study_get(c->db, name, &info, err) == BA_OK) {
        out->ntrials = info.ntrials;
        ba_db_study_info_free(&info);
    }
    free(choice);
    ba_db_trials_free(t, n);
    return st;
}

/* Runs study sid with c built (build) or not yet (c->g NULL); c is freed. */
static ba_status run(llm_ctx_t *cp, ba_db_t *db, int64_t sid, const char *name, int was_complete,
                     const ba_study_callbacks_t *cb, ba_llm_study_result_t *out, ba_error *err) {
    double t0 = ba_now();
    llm_ctx_t c = *cp;
    const ba_llm_settings_t *s = c.s;
    const ba_llama_t *ll = c.ll;
    c.db = db, c.sid = sid, c.cb = cb;
    snprintf(out->study, sizeof out->study, "%s", name);
    out->was_complete = was_complete;
    out->trial = -1;
    ba_search_result_t sr = {0};
    ba_solution_t sol = {0};
    char *ck = NULL;
    char *text = NULL;
    size_t len;
    ba_status st = c.g ? BA_OK : build(&c, err);
    if (st == BA_OK) st = ba_db_checkpoint_get(db, sid, &ck, err);
    if (st == BA_OK) {
        phase(&c, "ilp", 0, 1);
        ba_ilp_opts_t io = ba_ilp_opts_default();
        st = ba_ilp_solve(c.p, &io, &sol, err);
    }
    if (st == BA_OK && !c.mix_choice) st = mix_seeds(&c, sol.choice, err);
    if (st == BA_OK && was_complete && ck) {
        st = report_best(&c, name, out, err);
        goto done;
    }
    if (st == BA_OK) {
        phase(&c, "fp", 0, 1);
        st = ba_file_read(s->text, (uint8_t **)&text, &len, err);
    }
    if (st == BA_OK && strlen(text) != len)
        st = ba_error_set(err, BA_ERR_INPUT, "--text %s: holds a NUL byte", s->text);
    if (st == BA_OK) st = ba_llm_kl_new(ll, c.g, text, s->chunk, s->threads, &c.kl, err);
    if (st == BA_OK) st = ba_db_study_set_metric(db, sid, "kl", err);
    const ba_study_method_t *meth = ba_study_method_find(s->method);
    if (st == BA_OK && !meth)
        st = ba_error_set(err, BA_ERR_INPUT, "--method %s: not one of %s", s->method, BA_STUDY_METHOD_NAMES);
    if (st == BA_OK) {
        ba_search_opts_t so = {.method = s->method,
                               .seed = s->seed,
                               .generations = s->generations,
                               .offspring = s->offspring,
                               .nsamples = ba_llm_kl_nchunks(c.kl),
                               .nvalid = 0};
        if (s->low_fidelity_tokens > 0) {
            int cl = ba_llm_kl_chunk_len(c.kl);
            so.min_stage = (s->low_fidelity_tokens + cl - 1) / cl;
        }
        ba_search_hooks_t h = {.evaluate = hook_eval,
                               .store = hook_store,
                               .progress = hook_progress,
                               .ctx = &c,
                               .evaluate_at = hook_eval_at};
        if (c.nmix > 0) {
            /* ilp+evo from the ILP plan and the mixes (trials 1, 2, …). */
            int L = c.p->nlayers;
            int *seeds = ba_malloc((size_t)(1 + c.nmix) * L * sizeof *seeds, err);
            if (!seeds)
                st = BA_ERR_NOMEM;
            else {
                memcpy(seeds, sol.choice, (size_t)L * sizeof *seeds);
                memcpy(seeds + L, c.mix_choice, (size_t)c.nmix * L * sizeof *seeds);
                st = ba_evo_run_seeds(c.p, seeds, 1 + c.nmix, &so, &h, ck, &sr, err);
                free(seeds);
            }
        } else
            st = meth->run(c.p, sol.choice, &so, &h, ck, &sr, err);
    }
    if (st == BA_OK) st = report_best(&c, name, out, err);
    if (st == BA_OK) st = ba_db_study_set_state(db, sid, "complete", err);
done:
    out->nevals = c.measured;
    out->seconds = ba_now() - t0;
    free(text);
    free(ck);
    ba_search_result_free(&sr);
    ba_solution_free(&sol);
    ctx_free(&c);
    return st;
}

static ba_status digest(const char *path, const char *what, char sha[65], ba_error *err) {
    ba_error e2;
    if (ba_sha256_file(path, sha, &e2) != BA_OK)
        return ba_error_set(err, BA_ERR_INPUT, "%s %s: %s", what, path, e2.msg);
    return BA_OK;
}

ba_status ba_llm_study_search(ba_db_t *db, const ba_llama_t *ll, const char *study,
                              const ba_llm_settings_t *s0, const ba_study_callbacks_t *cb,
                              ba_llm_study_result_t *out, ba_error *err) {
    memset(out, 0, sizeof *out);
    ba_llm_settings_t s = *s0;
    if (s.imatrix) BA_TRY(digest(s.imatrix, "--imatrix", s.imatrix_sha256, err));
    char name[256];
    if (study)
        snprintf(name, sizeof name, "%s", study);
    else
        ba_study_name(s.model, name, sizeof name);
    char *settings = NULL;
    BA_TRY(ba_llm_settings_to_json(&s, &settings, err));
    ba_study_info_t info;
    ba_error e2;
    if (ba_db_study_get(db, name, &info, &e2) == BA_OK) {
        int same = !strcmp(settings, info.settings);
        ba_db_study_info_free(&info);
        free(settings);
        if (same) return ba_llm_study_resume(db, ll, name, cb, out, err);
        return ba_error_set(
            err, BA_ERR_INPUT,
            "--study %s: a study of that name exists with other settings; run the new settings "
            "under another name (--study NEW), or drop the old study first "
            "(`bitalloc studies --delete %s`)",
            name, name);
    }
    /* Everything is checked (and the problem's feasibility found) before the study exists. */
    llm_ctx_t c = {.s = &s, .ll = ll};
    ba_solution_t sol = {0};
    char msha[65], tsha[65];
    ba_db_layer_t *layers = NULL;
    ba_error e3;
    ba_status st = ba_llm_model_sha256(s.model, msha, &e3) == BA_OK
                       ? BA_OK
                       : ba_error_set(err, BA_ERR_INPUT, "model %s: %s", s.model, e3.msg);
    if (st == BA_OK) st = digest(s.text, "--text", tsha, err);
    if (st == BA_OK) st = build(&c, err);
    if (st == BA_OK) {
        ba_ilp_opts_t io = ba_ilp_opts_default();
        st = ba_ilp_solve(c.p, &io, &sol, err);
    }
    if (st == BA_OK) st = mix_seeds(&c, sol.choice, err);
    if (st == BA_OK && !(layers = ba_calloc((size_t)c.p->nlayers, sizeof *layers, err))) st = BA_ERR_NOMEM;
    for (int l = 0; st == BA_OK && l < c.p->nlayers; l++) {
        const ba_gguf_tensor_t *x = &c.g->tensors[c.tab->rows[l].tensor];
        layers[l] =
            (ba_db_layer_t){x->name, ba_ggml_type_by_id(x->type)->name, (int64_t)c.tab->rows[l].n_weights, 0};
    }
    int64_t sid = 0;
    if (st == BA_OK)
        st = ba_db_study_create(db, name, s.model, msha, tsha, settings, layers, c.p->nlayers, &sid, err);
    free(layers);
    free(settings);
    ba_solution_free(&sol);
    if (st != BA_OK) {
        ctx_free(&c);
        return st;
    }
    st = run(&c, db, sid, name, 0, cb, out, err);
    out->created = 1;
    if (st != BA_OK && st != BA_ERR_NOMEM) ba_db_study_set_state(db, sid, "failed", &e2);
    return st;
}

ba_status ba_llm_study_resume(ba_db_t *db, const ba_llama_t *ll, const char *name,
                              const ba_study_callbacks_t *cb, ba_llm_study_result_t *out, ba_error *err) {
    memset(out, 0, sizeof *out);
    ba_study_info_t info;
    BA_TRY(ba_db_study_get(db, name, &info, err));
    ba_llm_settings_t s;
    ba_status st = ba_llm_settings_from_json(info.settings, &s, err);
    if (st != BA_OK) {
        ba_error_prefix(err, "study '%s'", name);
        ba_db_study_info_free(&info);
        return st;
    }
    char sha[65];
    const char *what[3] = {"model", "calibration text", "imatrix"};
    const char *path[3] = {s.model, s.text, s.imatrix};
    const char *want[3] = {info.model_sha256, info.data_sha256, s.imatrix_sha256};
    for (int i = 0; st == BA_OK && i < 3; i++) {
        if (!path[i]) continue;
        ba_error e2;
        if ((i == 0 ? ba_llm_model_sha256(path[i], sha, &e2) : ba_sha256_file(path[i], sha, &e2)) != BA_OK)
            st = ba_error_set(err, BA_ERR_INPUT, "%s: cannot read the %s of study '%s' (%s)", path[i],
                              what[i], name, e2.msg);
        else if (strcmp(sha, want[i]) != 0)
            st = ba_error_set(err, BA_ERR_INPUT,
                              "%s: the %s changed since study '%s' started; refusing to resume", path[i],
                              what[i], name);
    }
    if (st == BA_OK) {
        ba_error e2;
        int complete = !strcmp(info.state, "complete");
        if (!strcmp(info.state, "failed")) ba_db_study_set_state(db, info.id, "running", &e2);
        llm_ctx_t c = {.s = &s, .ll = ll};
        st = run(&c, db, info.id, name, complete, cb, out, err);
    }
    ba_llm_settings_free(&s);
    ba_db_study_info_free(&info);
    return st;
}

/* ---- outputs ---- */

ba_status ba_llm_study_trial(ba_db_t *db, const char *name, int64_t trial, ba_llm_settings_t *s,
                             int64_t *number, char ***names, int **types, int *n, ba_error *err) {
    *names = NULL;
    *types = NULL;
    *n = 0;
    ba_study_info_t info;
    BA_TRY(ba_db_study_get(db, name, &info, err));
    ba_status st = ba_llm_settings_from_json(info.settings, s, err);
    int have_s = st == BA_OK;
    ba_trial_t t = {0};
    if (st == BA_OK && trial > 0) st = ba_db_trial_get(db, info.id, trial, &t, err);
    if (st == BA_OK && trial <= 0) {
        ba_trial_query_t q = {.best = 1};
        ba_trial_t *ts = NULL;
        int nt = 0;
        st = ba_db_trials_query(db, info.id, &q, &ts, &nt, err);
        if (st == BA_OK && nt < 1)
            st = ba_error_set(err, BA_ERR_INPUT, "study '%s': no complete trial", name);
        if (st == BA_OK) {
            t = ts[0];
            memset(&ts[0], 0, sizeof ts[0]);
        }
        ba_db_trials_free(ts, nt);
    }
    char **ln = NULL;
    int nl = 0;
    if (st == BA_OK) st = ba_db_layer_names(db, info.id, &ln, &nl, err);
    if (st == BA_OK && nl != t.nlayers)
        st = ba_error_set(err, BA_ERR_INPUT, "study '%s': trial %lld has %d layers, the study %d", name,
                          (long long)t.number, t.nlayers, nl);
    int *ty = st == BA_OK ? ba_calloc((size_t)nl + 1, sizeof *ty, err) : NULL;
    if (st == BA_OK && !ty) st = BA_ERR_NOMEM;
    for (int l = 0; st == BA_OK && l < nl; l++) {
        const ba_ggml_type_t *g = ba_ggml_type_for_bits(t.w_bits[l]);
        if (!g)
            st = ba_error_set(err, BA_ERR_INPUT, "study '%s': trial %lld: %d bits has no ggml type", name,
                              (long long)t.number, t.w_bits[l]);
        else
            ty[l] = g->id;
    }
    if (st == BA_OK) {
        *names = ln;
        *types = ty;
        *n = nl;
        *number = t.number;
    } else {
        for (int l = 0; l < nl; l++) free(ln[l]);
        free(ln);
        free(ty);
        if (have_s) ba_llm_settings_free(s);
    }
    ba_trial_free(&t);
    ba_db_study_info_free(&info);
    return st;
}

ba_status ba_llm_tensor_type_text(const char *const *names, const int *types, int n, char **text,
                                  ba_error *err) {
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    if (!fp) return ba_error_set(err, BA_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        ba_export_llama_pattern(fp, names[i]);
        /* Lowercase, as llama-quantize reads type names case-insensitively. */
        const char *tn = ba_ggml_type_by_id(types[i])->name;
        fputc('=', fp);
        for (const char *p = tn; *p; p++) fputc(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p, fp);
        fputc('\n', fp);
    }
    if (fclose(fp) != 0) {
        free(buf);
        return ba_error_set(err, BA_ERR_NOMEM, "out of memory");
    }
    *text = buf;
    return BA_OK;
}

/* A word for a POSIX shell: as it is when it holds only safe bytes, else in single quotes. */
static void shell_word(FILE *fp, const char *w) {
    int safe = *w != 0;
    for (const char *p = w; *p; p++)
        safe &= (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                strchr("/._-+=:,@%", *p) != NULL;
    if (safe) {
        fputs(w, fp);
        return;
    }
    fputc('\'', fp);
    for (const char *p = w; *p; p++)
        if (*p == '\'')
            fputs("'\\''", fp);
        else
            fputc(*p, fp);
    fputc('\'', fp);
}

ba_status ba_llm_quantize_command(const ba_llm_settings_t *s, const char *file_path, const char *out_gguf,
                                  char **cmd, ba_error *err) {
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    if (!fp) return ba_error_set(err, BA_ERR_NOMEM, "out of memory");
    fputs("llama-quantize", fp);
    if (s->imatrix) {
        fputs(" --imatrix ", fp);
        shell_word(fp, s->imatrix);
    }
    fputs(" --tensor-type-file ", fp);
    shell_word(fp, file_path);
    fputc(' ', fp);
    shell_word(fp, s->model);
    fputc(' ', fp);
    shell_word(fp, out_gguf);
    fputs(" Q8_0\n", fp);
    if (fclose(fp) != 0) {
        free(buf);
        return ba_error_set(err, BA_ERR_NOMEM, "out of memory");
    }
    *cmd = buf;
    return BA_OK;
}
