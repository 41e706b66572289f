/* Searches on the measured objective (SPEC §6): EvoPress-style evolution with
 * budget-preserving mutations and multi-fidelity selection, and the `random`,
 * `uniform` and single-configuration (`ilp`) baselines. Model-free: a caller
 * supplies the evaluation and the trial store through hooks, so the same code
 * runs in the product (study/study.c), in tests and in benchmarks.
 *
 * Determinism and resume: every random draw comes from one ba_rng_t seeded
 * with the seed; trial numbers are assigned in a fixed order; each trial is
 * handed to the store with a checkpoint (JSON) from which the search continues
 * exactly as if it had never stopped. */
#ifndef BA_SEARCH_EVO_H
#define BA_SEARCH_EVO_H

#include <stdint.h>

#include "core/error.h"
#include "core/util.h"
#include "search/problem.h"

/* Defaults of --generations / --offspring: EvoPress uses ~16 offspring and a
 * few hundred generations on LLMs; for the small CNNs this tool targets, 30
 * generations of 16 (≈ 500 candidates, 6 full-data evaluations' worth of
 * compute per generation with the fidelity schedule below, ≈ 180 in all);
 * 10 × 8 (3 per generation) already matches or beats 81 random full-data
 * configurations on the digits models (bench/README.md, section "search"). */
#define BA_EVO_DEFAULT_GENERATIONS 30
#define BA_EVO_DEFAULT_OFFSPRING 16

/* Multi-fidelity schedule (EvoPress): offspring are first scored on the first
 * N/BA_EVO_FID0_DIV calibration samples, the best quarter (at least
 * BA_EVO_KEEP0_MIN) are re-scored on N/BA_EVO_FID1_DIV, and the best
 * BA_EVO_KEEP1 of those on all N, where they compete with the elites. A stage
 * never uses fewer than BA_EVO_MIN_STAGE_SAMPLES samples, or ba_search_opts_t.min_stage
 * when set (a caller whose samples are large, such as chunks of text, sets fewer), or all N
 * when there are fewer; a stage that would use as many samples as the next is skipped.
 * Two survivors at full data (not one): the low-fidelity ranking of children
 * that differ in a layer or two is noisy, and a second full evaluation per
 * generation costs 1/6 of a generation with 16 offspring. */
#define BA_EVO_FID0_DIV 8
#define BA_EVO_FID1_DIV 2
#define BA_EVO_KEEP0_DIV 4
#define BA_EVO_KEEP0_MIN 2
#define BA_EVO_KEEP1 2
#define BA_EVO_MIN_STAGE_SAMPLES 32
/* Elites: the best BA_EVO_ELITES distinct configurations measured on all N
 * samples; each child mutates one of them (the better ones more often). The
 * best elite is the result, so it is never worse than the seed. */
#define BA_EVO_ELITES 4
/* The final choice on the validation part (ba_evo_run): the validation part is cut into
 * min(nvalid, BA_EVO_CHOICE_WINDOWS) windows, each scored alone, and another candidate replaces the
 * best elite only when a one-sided paired bootstrap (BA_EVO_CHOICE_RESAMPLES resamples of the
 * per-window differences, seeded from the search seed) says it is better at BA_EVO_CHOICE_CONFIDENCE,
 * Bonferroni-corrected over the challengers, and its mean over the search and validation parts
 * together is lower as well. 32 windows: one per sample at the default split of 128
 * samples (32 validation samples), few enough that scoring them costs about as much as one more
 * pass over the validation part. Fewer than BA_EVO_CHOICE_MIN_WINDOWS windows: no test, the best
 * elite stays (a bootstrap over a handful of values cannot tell noise from a difference). */
#define BA_EVO_CHOICE_WINDOWS 32
#define BA_EVO_WINDOW_OBJECTIVE 0
#define BA_EVO_WINDOW_MSE 1
#define BA_EVO_CHOICE_MIN_WINDOWS 8
#define BA_EVO_CHOICE_CONFIDENCE 0.95
#define BA_EVO_CHOICE_RESAMPLES 2000
/* An offspring applies 1..BA_EVO_MAX_SWAPS level switches (EvoPress samples a
 * small number of mutations per child). */
#define BA_EVO_MAX_SWAPS 2
/* A switch's compensating move is drawn with weight 1/(|Δ - Δ0| + SLACK·Δ0),
 * Δ0 the budget change of the first move: close matches are preferred but
 * not forced, so unequal layer sizes still leave room to explore. */
#define BA_EVO_MATCH_SLACK 0.25
/* After a down-move, a compensating up-move is made with probability
 * COMPENSATE_DOWN / COMPENSATE_DOWN_OF (else the child keeps the freed budget). */
#define BA_EVO_COMPENSATE_DOWN 3
#define BA_EVO_COMPENSATE_DOWN_OF 4
/* Attempts at drawing an offspring that differs from its parent and siblings. */
#define BA_EVO_MUTATE_TRIES 64

/* One evaluation: objective = mean KL(p_fp‖p_q) for class outputs, MSE otherwise. */
typedef struct ba_eval_result {
    double objective;
    double kl, mse, agreement, accuracy; /* NaN = unknown */
    int64_t samples;                     /* calibration samples it was measured on */
} ba_eval_result_t;

/* A decided trial, as handed to the store. */
typedef struct ba_search_trial {
    int64_t number;
    const char *state; /* "complete" (full fidelity) or "pruned" (dropped at low fidelity) */
    const char *method;
    const int *choice; /* [nlayers] candidate index within each layer */
    ba_eval_result_t res;
} ba_search_trial_t;

typedef struct ba_search_hooks {
    /* Scores choice on the first nsamples calibration samples (0 = all). A configuration
     * whose output is not finite is not an error: out->objective NaN, the trial fails. */
    ba_status (*evaluate)(void *ctx, const int *choice, int64_t nsamples, ba_eval_result_t *out,
                          ba_error *err);
    /* Stores t and the checkpoint to continue from after it, atomically. */
    ba_status (*store)(void *ctx, const ba_search_trial_t *t, const char *checkpoint, ba_error *err);
    /* After each generation (or baseline step); may be NULL. best is NULL (and
     * best_choice the last one tried) while no trial has succeeded yet. */
    void (*progress)(void *ctx, int64_t done, int64_t total, const ba_eval_result_t *best,
                     const int *best_choice);
    void *ctx;
    /* Optional: scores choice on samples [first, first + nsamples) (the evolution's
     * random low-fidelity windows and the validation part). NULL: the low-fidelity
     * stages use the first samples and there is no validation (evaluate is used). */
    ba_status (*evaluate_at)(void *ctx, const int *choice, int64_t first, int64_t nsamples,
                             ba_eval_result_t *out, ba_error *err);
    /* Optional: trial `trial` scored res on the validation part (after the last generation). */
    ba_status (*validated)(void *ctx, int64_t trial, const ba_eval_result_t *res, ba_error *err);
    /* Optional: the n evaluations the search is about to ask evaluate_at for, in the order it
     * will ask: choices[i * nlayers ..] on samples [first[i], first[i] + nsamples[i]). Called
     * before each batch whose members do not depend on one another (a fidelity stage of a
     * generation, the validation of the elites), so that many workers can measure a batch at
     * once; the evaluate_at calls that follow come in the same order whatever it did. */
    ba_status (*prepare)(void *ctx, const int *choices, const int64_t *first, const int64_t *nsamples, int n,
                         ba_error *err);
    /* Optional: the final choice on the validation part picked trial `trial`; record is its
     * account as compact JSON ({"rule", "test", "statistic", "confidence", "windows", "resamples",
     * "challengers", "default", "trial", "candidates": [{"trial", "role", "objective",
     * "validation", "delta", "p"}]}, docs/search.md). Called after the last validated call. */
    ba_status (*chosen)(void *ctx, int64_t trial, const char *record, ba_error *err);
} ba_search_hooks_t;

typedef struct ba_search_opts {
    const char *method; /* written into every trial: "ilp+evo", "evo", "random", "uniform", "ilp" */
    uint64_t seed;
    int generations; /* evo; random draws 1 + generations·offspring configurations */
    int offspring;
    int64_t nsamples; /* N: calibration samples of a full-fidelity evaluation (the search part: 0..N-1) */
    int64_t nvalid;   /* evo: samples N .. N+nvalid-1 are the validation part (0 = none; needs evaluate_at) */
    int64_t min_stage; /* evo: fewest samples of a low-fidelity stage (0 = BA_EVO_MIN_STAGE_SAMPLES) */
    /* evo: the figure of each validation window the final choice's paired test compares: one
     * whose mean over the windows orders configurations as the objective on their union does
     * (BA_EVO_WINDOW_OBJECTIVE for a mean over samples such as KL; BA_EVO_WINDOW_MSE for relmse
     * and sqnr, ratios whose denominator, the FP output's energy, is the same for every configuration). */
    int window_stat;
} ba_search_opts_t;

typedef struct ba_search_result {
    int *choice;            /* [nlayers] best configuration found */
    ba_eval_result_t res;   /* its full-fidelity result */
    int64_t trial;          /* its trial number */
    double validation;      /* its objective on the validation part (NaN when there is none) */
    int64_t choice_default; /* the final choice's default (the best elite's trial); -1: no validation */
    double choice_p; /* the paired test's p of the candidate that replaced it (NaN: the default stayed) */
    int64_t ntrials; /* trials stored (this run and earlier ones of the study) */
    int64_t nevals;  /* evaluations made by this process (stored results reused on resume are not counted) */
    double seconds;  /* evolution only: wall time of ba_evo_run, and the part of it */
    double eval_seconds; /* spent inside the evaluate hook (the rest is the search's own bookkeeping) */
} ba_search_result_t;

void ba_search_result_free(ba_search_result_t *r);

/* Validation (o->nvalid > 0 and h->evaluate_at): after the last generation the
 * uniform configuration (ba_search_uniform_choice; when one fits and is neither
 * the seed nor an elite) is measured on all N samples and stored as the next
 * trial (method "uniform"), then the seed, every elite and it are scored on the
 * validation part and on its windows (BA_EVO_CHOICE_WINDOWS). The best elite on
 * the search part is the result unless another candidate is better on the
 * validation windows by the paired test and on all samples together; of those
 * that are, the lowest on the validation part (ties: the lower search
 * objective, then the earlier trial).
 * The result is therefore not always the validation minimum, nor always at
 * least as good as the seed there. Without a test (fewer than BA_EVO_CHOICE_MIN_WINDOWS windows) the
 * best elite stays; when its validation is not finite, the lowest validation
 * wins. Low-fidelity stages score a window of the
 * search part drawn from the seed, the generation and the stage (with
 * evaluate_at; else the first samples).
 *
 * Evolution from seed (a feasible choice): the seed is trial 1 (complete) and
 * the first elite, then each generation draws `offspring` distinct children of
 * the elites by budget-preserving mutation, selects through the fidelity
 * schedule, and the survivors measured on all N samples join the elites when
 * they beat the worst one. checkpoint: NULL for a fresh start, else
 * the text the last store call received. */
ba_status ba_evo_run(const ba_problem_t *p, const int *seed, const ba_search_opts_t *o,
                     const ba_search_hooks_t *h, const char *checkpoint, ba_search_result_t *out,
                     ba_error *err);
/* The same from nseeds seeds (seeds[k * nlayers ..], each feasible): the distinct ones are
 * trials 1, 2, … (complete, on all N samples) and the best of them is the first elite, the parent
 * of the first generation, so the result is never worse than any seed on the search part
 * (ties: the earlier seed); seeds[0] is the validation's seed. A seed whose output
 * is not finite is a failed trial; the run stops only when every seed's is. */
ba_status ba_evo_run_seeds(const ba_problem_t *p, const int *seeds, int nseeds, const ba_search_opts_t *o,
                           const ba_search_hooks_t *h, const char *checkpoint, ba_search_result_t *out,
                           ba_error *err);

/* Windows of the final choice's paired test for a validation part of nvalid samples. */
int ba_evo_choice_windows(int64_t nvalid);
/* One-sided paired bootstrap: the share (with the +1 correction, (c + 1) / (resamples + 1)) of
 * `resamples` resamples of the k pairs whose mean difference a − b is not below 0; small when a
 * is lower than b beyond the noise of the pairs. Deterministic for a seed. */
double ba_evo_paired_p(const double *a, const double *b, int k, uint64_t seed, int resamples);

/* `random`: 1 + generations·offspring random feasible configurations (ba_search_random_choice),
 * each a complete trial on all N samples; the best is the result. */
ba_status ba_search_random(const ba_problem_t *p, const ba_search_opts_t *o, const ba_search_hooks_t *h,
                           const char *checkpoint, ba_search_result_t *out, ba_error *err);

/* One configuration evaluated on all N samples as trial 1 (`ilp`, `uniform`). */
ba_status ba_search_single(const ba_problem_t *p, const int *choice, const ba_search_opts_t *o,
                           const ba_search_hooks_t *h, const char *checkpoint, ba_search_result_t *out,
                           ba_error *err);

/* `uniform`: the widest single width w such that every free layer at w (pinned
 * layers at their pin) meets every budget. *bits = w. BA_ERR_INFEASIBLE when no width does. */
ba_status ba_search_uniform_choice(const ba_problem_t *p, int *choice, int *bits, ba_error *err);

/* A random feasible configuration: each free unit (a layer, or a tie group)
 * takes a uniformly random common width; while a budget is violated a random
 * unit above its lowest width goes one level down; then, in random order, each
 * unit goes one level up when the budgets still hold (uses the slack).
 * Returns 0, or -1 when even the lowest widths break a budget. */
int ba_search_random_choice(const ba_problem_t *p, ba_rng_t *rng, int *choice);

/* The mutation (EvoPress level switch): 1..BA_EVO_MAX_SWAPS steps, each moves
 * a random unit one level up or down and compensates with other units moving
 * the other way, preferring those whose budget change best cancels it (after
 * an up-move until the budgets hold again; after a down-move one raise when
 * it fits, with probability 3/4). child is feasible on return 0; -1 when no
 * feasible child differing from parent was found. */
int ba_evo_mutate(const ba_problem_t *p, const int *parent, ba_rng_t *rng, int *child);

#endif
