/* An LLM search as a study (docs/llm-search.md): GGUF checkpoint → the per-tensor error table
 * of libggml's own quantizers (llm/variants.h) → the bit-allocation problem (one layer per
 * quantizable tensor, one candidate per ggml type with its exact bytes and bits per weight) →
 * ILP seed on the errors → the study's method with the measured KL through libllama (llm/kl.h)
 * as the objective, every trial and checkpoint in the same SQLite studies as the ONNX path, so
 * `studies`, `trials`, `resume` and `export` work on it.
 *
 * A candidate's width label in the problem and in the stored trials is the bit-width that
 * core/ggml_types.h maps to its ggml type (2 q2_K, 3 q3_K, 4 q4_K, 5 q5_K, 6 q6_K, 8 q8_0, 16 f16,
 * 32 f32): the labels order the types by size, and the costs are the types' real ones. */
#ifndef BA_STUDY_LLM_STUDY_H
#define BA_STUDY_LLM_STUDY_H

#include <stdint.h>

#include "core/error.h"
#include "db/db.h"
#include "llm/llama.h"
#include "llm/variants.h"
#include "search/budget.h"
#include "study/study.h"

/* The "kind" of an LLM study's settings JSON. */
#define BA_LLM_STUDY_KIND "llm"
/* Smaller defaults than the ONNX path's: a measurement decodes the calibration text. */
#define BA_LLM_DEFAULT_GENERATIONS 10
#define BA_LLM_DEFAULT_OFFSPRING 8

/* Mix seeds: "auto" (the default of a new study) = the largest of llama.cpp's own mixes
 * (ba_llama_mix_name) that meets every budget and whose types are all among the candidates;
 * "none"; or a comma list of mix names ("Q4_K_M,Q4_K_S"), each of which must fit. With method
 * ilp+evo the evolution starts from the ILP plan (trial 1) and these mixes' per-tensor types
 * (trials 2, …, measured like any trial), so its result is never worse than the mix it
 * competes with on the calibration text. Other methods take no mix seed. */
#define BA_LLM_MIX_SEED_DEFAULT "auto"
#define BA_LLM_MAX_MIX_SEEDS 10
/* Fewest calibration tokens a low-fidelity stage of the evolution scores a child on (whole
 * chunks, at least one): the ONNX path's 32-sample floor would be 32 chunks of text, which turns
 * the multi-fidelity selection off for any text under 64 chunks. */
#define BA_LLM_DEFAULT_LOW_FIDELITY_TOKENS 256

typedef struct ba_llm_settings {
    char *model;   /* GGUF, absolute path */
    char *text;    /* calibration text file, absolute path */
    char *imatrix; /* NULL = none */
    char imatrix_sha256[65];
    ba_budget_set_t
        budgets; /* avg-bits (real bits per quantizable weight) and/or memory (bytes of all tensors) */
    int ntypes;
    int types[BA_LLM_MAX_TYPES]; /* ggml ids */
    char method[16];
    uint64_t seed;
    int generations, offspring;
    int chunk;          /* tokens per calibration chunk */
    int threads;        /* libllama threads (part of the settings: the KL's last bits may depend on them) */
    char mix_seed[128]; /* "auto", "none" or mix names (above); a study stored without one: "none" */
    int low_fidelity_tokens; /* above; 0 (a study stored without it): the evolution's 32-chunk floor */
} ba_llm_settings_t;

void ba_llm_settings_init(ba_llm_settings_t *s);
void ba_llm_settings_free(ba_llm_settings_t *s);
ba_status ba_llm_settings_to_json(const ba_llm_settings_t *s, char **out, ba_error *err);
ba_status ba_llm_settings_from_json(const char *text, ba_llm_settings_t *s, ba_error *err);
/* 1 when a study's settings JSON is an LLM study's. */
int ba_llm_settings_is_llm(const char *settings_json);
/* "q4_K,q8_0" → s->types; BA_ERR_INPUT for a type that has no width label (core/ggml_types.h). */
ba_status ba_llm_settings_set_types(ba_llm_settings_t *s, const char *list, ba_error *err);
/* "auto" | "none" | "Q4_K_M,Q5_K_S" -> s->mix_seed; BA_ERR_INPUT naming a name that is no mix. */
ba_status ba_llm_settings_set_mix_seed(ba_llm_settings_t *s, const char *value, ba_error *err);

typedef struct ba_llm_study_result {
    char study[256];
    int created, was_complete;
    int64_t trial, ntrials, nevals;
    double kl, agreement;
    double avg_bits; /* real bits per quantizable weight */
    double bytes;    /* all tensors */
    double predicted;
    int ntensors;
    char **names; /* [ntensors] */
    int *types;   /* [ntensors] ggml ids */
    double seconds;
    /* The seeds of the evolution: the ILP plan (trial 1) and the mixes (trials 2, …) with their KL
     * on the calibration text; nseeds 0 when the method starts from no seed. */
    int nseeds;
    struct {
        char name[16]; /* "ilp" or the mix's name */
        int64_t trial;
        double kl;
        double bytes;
    } seeds[1 + BA_LLM_MAX_MIX_SEEDS];
} ba_llm_study_result_t;
void ba_llm_study_result_free(ba_llm_study_result_t *r);

/* Creates study `name` (NULL: generated) and runs it; the same name with the same settings
 * continues it, other settings are refused. ll: the loaded libraries. */
ba_status ba_llm_study_search(ba_db_t *db, const ba_llama_t *ll, const char *name, const ba_llm_settings_t *s,
                              const ba_study_callbacks_t *cb, ba_llm_study_result_t *out, ba_error *err);
/* Continues an LLM study (refused when the model, text or imatrix changed). */
ba_status ba_llm_study_resume(ba_db_t *db, const ba_llama_t *ll, const char *name,
                              const ba_study_callbacks_t *cb, ba_llm_study_result_t *out, ba_error *err);

/* Stored trial `trial` (<= 0: the best) of LLM study `name`: its settings and each layer's
 * (tensor's) GGUF name and ggml type. The names and types are allocated (free each name, names and types). */
ba_status ba_llm_study_trial(ba_db_t *db, const char *name, int64_t trial, ba_llm_settings_t *s,
                             int64_t *number, char ***names, int **types, int *n, ba_error *err);

/* The llama-quantize --tensor-type-file text: one "^NAME$=type" line per tensor (anchored,
 * lowercase-safe: quant/export_tools.h), and the full llama-quantize command line that uses it
 * (file_path as the --tensor-type-file, FTYPE Q8_0 so that every override applies). */
ba_status ba_llm_tensor_type_text(const char *const *names, const int *types, int n, char **text,
                                  ba_error *err);
ba_status ba_llm_quantize_command(const ba_llm_settings_t *s, const char *file_path, const char *out_gguf,
                                  char **cmd, ba_error *err);

#endif
