/* bitalloc's LLM search against llama.cpp's own K mixes at the same bytes (bench/README.md,
 * "LLM mixes"): for each mix, llama_model_quantize writes it, its tensors' bytes become the
 * memory budget of an llm-search study (ilp+evo), and the mix, the ILP seed and the searched plan
 * are scored by mean per-token KL against the F32 model on the calibration text and on a held-out
 * text. One JSON object per mix on stdout.
 *
 *   bench_llm_mixes MODEL.gguf CALIB.txt HELDOUT.txt WORKDIR [MIX ...]   (default Q3_K_M Q4_K_M Q5_K_M)
 *
 * With $BENCH_IMATRIX (a GGUF or .dat imatrix) the mixes and the searches both quantize with it.
 * Needs the llama.cpp libraries ($BA_LLAMA_DIR). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitalloc.h"
#include "study/llm_study.h"

static int fail(const ba_error *e) {
    fprintf(stderr, "bench_llm_mixes: %s\n", e->msg);
    return 1;
}

static double kl_of(ba_llm_kl_t *k, const char *path, ba_error *err) {
    double kl, ag;
    if (ba_llm_kl_measure(k, path, 0, ba_llm_kl_nchunks(k), &kl, &ag, err) != BA_OK) return -1;
    return kl;
}

static ba_status read_text(const char *path, char **out, ba_error *err) {
    size_t len;
    return ba_file_read(path, (uint8_t **)out, &len, err);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: bench_llm_mixes MODEL.gguf CALIB.txt HELDOUT.txt WORKDIR [MIX ...]\n");
        return 2;
    }
    static const char *const defaults[] = {"Q3_K_M", "Q4_K_M", "Q5_K_M"};
    const char *const *mixes = argc > 5 ? (const char *const *)argv + 5 : defaults;
    int nmix = argc > 5 ? argc - 5 : 3;
    ba_error err = {0};
    ba_llama_t *ll;
    ba_gguf_t *g;
    char *calib = NULL, *held = NULL;
    if (ba_llama_open(NULL, &ll, &err) != BA_OK || ba_gguf_open(argv[1], &g, &err) != BA_OK ||
        read_text(argv[2], &calib, &err) != BA_OK || read_text(argv[3], &held, &err) != BA_OK)
        return fail(&err);
    const char *imx_path = getenv("BENCH_IMATRIX");
    ba_imatrix_t *im = NULL;
    if (imx_path && *imx_path && ba_imatrix_open(imx_path, &im, &err) != BA_OK) return fail(&err);
    ba_llm_kl_t *kc, *kh;
    ba_llm_variants_t *v;
    if (ba_llm_kl_new(ll, g, calib, BA_LLM_DEFAULT_CHUNK, 1, &kc, &err) != BA_OK ||
        ba_llm_kl_new(ll, g, held, BA_LLM_DEFAULT_CHUNK, 1, &kh, &err) != BA_OK ||
        ba_llm_variants_new(ll, g, im, &v, &err) != BA_OK)
        return fail(&err);
    char dbpath[4200];
    snprintf(dbpath, sizeof dbpath, "%s/llm_mixes.db", argv[4]);
    remove(dbpath);
    ba_db_t *db;
    if (ba_db_open(dbpath, BA_DB_OPEN_CREATE, &db, &err) != BA_OK) return fail(&err);
    for (int m = 0; m < nmix; m++) {
        char mix_path[4200], plan_path[4200], seed_path[4200];
        snprintf(mix_path, sizeof mix_path, "%s/%s.gguf", argv[4], mixes[m]);
        snprintf(plan_path, sizeof plan_path, "%s/bitalloc-%s.gguf", argv[4], mixes[m]);
        snprintf(seed_path, sizeof seed_path, "%s/ilp-%s.gguf", argv[4], mixes[m]);
        if (ba_llama_quantize_mix(ll, argv[1], mix_path, mixes[m], 1, im, &err) != BA_OK) return fail(&err);
        ba_gguf_t *q;
        if (ba_gguf_open(mix_path, &q, &err) != BA_OK) return fail(&err);
        uint64_t bytes = 0;
        for (int i = 0; i < q->n_tensors; i++) bytes += q->tensors[i].nbytes;
        ba_gguf_free(q);
        ba_llm_settings_t s;
        ba_llm_settings_init(&s);
        char budget[64];
        snprintf(budget, sizeof budget, "memory=%llu", (unsigned long long)bytes);
        if (ba_study_settings_set_path(&s.model, argv[1], &err) != BA_OK ||
            ba_study_settings_set_path(&s.text, argv[2], &err) != BA_OK ||
            ba_budget_set_add(&s.budgets, budget, &err) != BA_OK ||
            (im && ba_study_settings_set_path(&s.imatrix, imx_path, &err) != BA_OK))
            return fail(&err);
        ba_llm_study_result_t r;
        if (ba_llm_study_search(db, ll, mixes[m], &s, NULL, &r, &err) != BA_OK) return fail(&err);
        /* The plan and the ILP seed (trial 1) as GGUFs from the variant store (byte for byte what
         * llm-quantize writes). */
        int *types = calloc((size_t)g->n_tensors, sizeof *types);
        for (int pass = 0; pass < 2; pass++) {
            ba_llm_settings_t s2;
            char **names;
            int *tt, n;
            int64_t number;
            if (ba_llm_study_trial(db, mixes[m], pass ? 1 : 0, &s2, &number, &names, &tt, &n, &err) != BA_OK)
                return fail(&err);
            for (int i = 0; i < g->n_tensors; i++) types[i] = -1;
            for (int l = 0; l < n; l++)
                for (int i = 0; i < g->n_tensors; i++)
                    if (!strcmp(g->tensors[i].name, names[l])) types[i] = tt[l];
            if (ba_llm_variants_write(v, types, pass ? seed_path : plan_path, &err) != BA_OK)
                return fail(&err);
            for (int l = 0; l < n; l++) free(names[l]);
            free(names);
            free(tt);
            ba_llm_settings_free(&s2);
        }
        free(types);
        printf("{\"imatrix\": %s, \"mix\": \"%s\", \"bytes\": %llu, \"plan_bytes\": %.0f, \"plan_avg_bits\": "
               "%.4f, "
               "\"kl_calib\": {\"mix\": %.6g, \"ilp\": %.6g, \"bitalloc\": %.6g}, "
               "\"kl_heldout\": {\"mix\": %.6g, \"ilp\": %.6g, \"bitalloc\": %.6g}, \"trials\": %lld, "
               "\"seconds\": %.1f}\n",
               im ? "true" : "false", mixes[m], (unsigned long long)bytes, r.bytes, r.avg_bits,
               kl_of(kc, mix_path, &err), kl_of(kc, seed_path, &err), kl_of(kc, plan_path, &err),
               kl_of(kh, mix_path, &err), kl_of(kh, seed_path, &err), kl_of(kh, plan_path, &err),
               (long long)r.ntrials, r.seconds);
        fflush(stdout);
        ba_llm_study_result_free(&r);
        ba_llm_settings_free(&s);
    }
    ba_db_close(db);
    ba_imatrix_free(im);
    ba_llm_variants_free(v);
    ba_llm_kl_free(kc);
    ba_llm_kl_free(kh);
    ba_gguf_free(g);
    free(calib);
    free(held);
    return 0;
}
