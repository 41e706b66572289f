/* bitalloc's LLM search against llama.cpp's own K mixes (bench/README.md, "LLM mixes"). For each
 * mix and its bits-per-weight point (Q3_K_M 3.5, Q4_K_M 4.5, Q5_K_M 5.5 by default),
 * two llm-search studies (ilp+evo):
 *
 *   "size": budget = the bytes of the mix's tensors as llama_model_quantize writes it, with that
 *           mix as the mix seed (trial 2);
 *   "bpw":  budget = avg-bits at the point, with the default mix seed (auto: the largest mix that fits).
 *
 * The mix itself, each study's ILP plan (trial 1: the imatrix-weighted error ILP alone when there
 * is an imatrix), its mix seed and its searched plan are scored by mean per-token KL against the
 * F32 model on the calibration text and on a held-out text the search never saw. One JSON object
 * per study on stdout.
 *
 *   bench_llm_mixes MODEL.gguf CALIB.txt HELDOUT.txt WORKDIR [MIX:BPW ...]   (default Q3_K_M:3.5
 *   Q4_K_M:4.5 Q5_K_M:5.5)
 *
 * $BENCH_IMATRIX (a GGUF or .dat imatrix): the mixes and the searches quantize with it.
 * $BENCH_GENERATIONS, $BENCH_OFFSPRING: the search's (default: llm-search's). Needs the llama.cpp
 * libraries ($BA_LLAMA_DIR). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitalloc.h"
#include "study/llm_study.h"

typedef struct {
    ba_llama_t *ll;
    ba_gguf_t *g;
    ba_llm_variants_t *v;
    ba_llm_kl_t *kc, *kh; /* calibration, held-out */
    ba_db_t *db;
    const char *model, *calib, *imx_path, *work;
    ba_imatrix_t *im;
} bench_t;

static int fail(const ba_error *e) {
    fprintf(stderr, "bench_llm_mixes: %s\n", e->msg);
    return 1;
}

static double kl_of(ba_llm_kl_t *k, const char *path, ba_error *err) {
    double kl, ag;
    if (ba_llm_kl_measure(k, path, 0, ba_llm_kl_nchunks(k), &kl, &ag, err) != BA_OK) return NAN;
    return kl;
}

static ba_status read_text(const char *path, char **out, ba_error *err) {
    size_t len;
    return ba_file_read(path, (uint8_t **)out, &len, err);
}

/* Trial `number` of study `name` written as a GGUF (byte for byte what llm-quantize writes); its
 * bits per quantizable weight and bytes from the stored trial. */
static ba_status write_trial(bench_t *b, const char *name, int64_t number, const char *path, double *avg_bits,
                             double *bytes, ba_error *err) {
    ba_llm_settings_t s;
    char **names;
    int *tt, n;
    int64_t got;
    BA_TRY(ba_llm_study_trial(b->db, name, number, &s, &got, &names, &tt, &n, err));
    int *types = calloc((size_t)b->g->n_tensors, sizeof *types);
    for (int i = 0; i < b->g->n_tensors; i++) types[i] = -1;
    for (int l = 0; l < n; l++)
        for (int i = 0; i < b->g->n_tensors; i++)
            if (!strcmp(b->g->tensors[i].name, names[l])) types[i] = tt[l];
    ba_status st = ba_llm_variants_write(b->v, types, path, err);
    for (int l = 0; l < n; l++) free(names[l]);
    free(names);
    free(tt);
    free(types);
    ba_llm_settings_free(&s);
    ba_study_info_t info;
    ba_trial_t t = {0};
    if (st == BA_OK) st = ba_db_study_get(b->db, name, &info, err);
    if (st == BA_OK) {
        st = ba_db_trial_get(b->db, info.id, got, &t, err);
        ba_db_study_info_free(&info);
    }
    if (st == BA_OK) {
        *avg_bits = t.avg_bits;
        *bytes = t.memory;
        ba_trial_free(&t);
    }
    return st;
}

/* One study: budget (a --budget value), mix_seed; prints its JSON line. mix: the named mix it is
 * compared with, mix_bytes its tensors' bytes, kl_mix_c/h its KL. */
static int study(bench_t *b, const char *kind, const char *mix, uint64_t mix_bytes, const char *budget,
                 const char *mix_seed, double kl_mix_c, double kl_mix_h) {
    ba_error err = {0};
    char name[128];
    snprintf(name, sizeof name, "%s-%s", mix, kind);
    ba_llm_settings_t s;
    ba_llm_settings_init(&s);
    const char *gen = getenv("BENCH_GENERATIONS"), *off = getenv("BENCH_OFFSPRING");
    if (gen && *gen) s.generations = atoi(gen);
    if (off && *off) s.offspring = atoi(off);
    if (ba_study_settings_set_path(&s.model, b->model, &err) != BA_OK ||
        ba_study_settings_set_path(&s.text, b->calib, &err) != BA_OK ||
        ba_budget_set_add(&s.budgets, budget, &err) != BA_OK ||
        ba_llm_settings_set_mix_seed(&s, mix_seed, &err) != BA_OK ||
        (b->im && ba_study_settings_set_path(&s.imatrix, b->imx_path, &err) != BA_OK))
        return fail(&err);
    ba_llm_study_result_t r;
    if (ba_llm_study_search(b->db, b->ll, name, &s, NULL, &r, &err) != BA_OK) return fail(&err);
    /* The plan, the ILP plan and the mix seed as GGUFs. */
    const char *what[3] = {"bitalloc", "ilp", "seed"};
    int64_t number[3] = {r.trial, 1, r.nseeds > 1 ? r.seeds[1].trial : 0};
    double avg[3] = {NAN, NAN, NAN}, bytes[3] = {NAN, NAN, NAN}, klc[3] = {NAN, NAN, NAN},
           klh[3] = {NAN, NAN, NAN};
    for (int i = 0; i < 3; i++) {
        if (number[i] <= 0) continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s-%s.gguf", b->work, name, what[i]);
        if (write_trial(b, name, number[i], path, &avg[i], &bytes[i], &err) != BA_OK) return fail(&err);
        klc[i] = kl_of(b->kc, path, &err);
        klh[i] = kl_of(b->kh, path, &err);
        if (isnan(klc[i]) || isnan(klh[i])) return fail(&err);
    }
    printf(
        "{\"imatrix\": %s, \"mix\": \"%s\", \"budget\": \"%s\", \"mix_bytes\": %llu, "
        "\"kl_mix\": {\"calib\": %.6g, \"heldout\": %.6g}, "
        "\"ilp\": {\"bytes\": %.0f, \"avg_bits\": %.4f, \"calib\": %.6g, \"heldout\": %.6g}, "
        "\"seed\": {\"name\": \"%s\", \"bytes\": %.0f, \"avg_bits\": %.4f, \"calib\": %.6g, \"heldout\": "
        "%.6g}, "
        "\"bitalloc\": {\"trial\": %lld, \"bytes\": %.0f, \"avg_bits\": %.4f, \"calib\": %.6g, \"heldout\": "
        "%.6g}, \"trials\": %lld, \"seconds\": %.1f}\n",
        b->im ? "true" : "false", mix, budget, (unsigned long long)mix_bytes, kl_mix_c, kl_mix_h, bytes[1],
        avg[1], klc[1], klh[1], r.nseeds > 1 ? r.seeds[1].name : "", bytes[2], avg[2], klc[2], klh[2],
        (long long)r.trial, bytes[0], avg[0], klc[0], klh[0], (long long)r.ntrials, r.seconds);
    fflush(stdout);
    ba_llm_study_result_free(&r);
    ba_llm_settings_free(&s);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: bench_llm_mixes MODEL.gguf CALIB.txt HELDOUT.txt WORKDIR [MIX:BPW ...]\n");
        return 2;
    }
    static const char *const defaults[] = {"Q3_K_M:3.5", "Q4_K_M:4.5", "Q5_K_M:5.5"};
    const char *const *points = argc > 5 ? (const char *const *)argv + 5 : defaults;
    int npoints = argc > 5 ? argc - 5 : 3;
    ba_error err = {0};
    bench_t b = {.model = argv[1], .calib = argv[2], .work = argv[4]};
    char *calib = NULL, *held = NULL;
    if (ba_llama_open(NULL, &b.ll, &err) != BA_OK || ba_gguf_open(argv[1], &b.g, &err) != BA_OK ||
        read_text(argv[2], &calib, &err) != BA_OK || read_text(argv[3], &held, &err) != BA_OK)
        return fail(&err);
    b.imx_path = getenv("BENCH_IMATRIX");
    if (b.imx_path && *b.imx_path && ba_imatrix_open(b.imx_path, &b.im, &err) != BA_OK) return fail(&err);
    if (ba_llm_kl_new(b.ll, b.g, calib, BA_LLM_DEFAULT_CHUNK, 1, &b.kc, &err) != BA_OK ||
        ba_llm_kl_new(b.ll, b.g, held, BA_LLM_DEFAULT_CHUNK, 1, &b.kh, &err) != BA_OK ||
        ba_llm_variants_new(b.ll, b.g, b.im, &b.v, &err) != BA_OK)
        return fail(&err);
    char dbpath[4200];
    snprintf(dbpath, sizeof dbpath, "%s/llm_mixes.db", argv[4]);
    remove(dbpath);
    if (ba_db_open(dbpath, BA_DB_OPEN_CREATE, &b.db, &err) != BA_OK) return fail(&err);
    int rc = 0;
    for (int m = 0; m < npoints && rc == 0; m++) {
        char mix[32];
        const char *colon = strchr(points[m], ':');
        if (!colon) {
            fprintf(stderr, "bench_llm_mixes: '%s': not MIX:BPW\n", points[m]);
            return 2;
        }
        snprintf(mix, sizeof mix, "%.*s", (int)(colon - points[m]), points[m]);
        char mix_path[4200], budget[64];
        snprintf(mix_path, sizeof mix_path, "%s/%s.gguf", argv[4], mix);
        if (ba_llama_quantize_mix(b.ll, argv[1], mix_path, mix, 1, b.im, &err) != BA_OK) return fail(&err);
        ba_gguf_t *q;
        if (ba_gguf_open(mix_path, &q, &err) != BA_OK) return fail(&err);
        uint64_t bytes = 0;
        for (int i = 0; i < q->n_tensors; i++) bytes += q->tensors[i].nbytes;
        ba_gguf_free(q);
        double kc = kl_of(b.kc, mix_path, &err), kh = kl_of(b.kh, mix_path, &err);
        if (isnan(kc) || isnan(kh)) return fail(&err);
        snprintf(budget, sizeof budget, "memory=%llu", (unsigned long long)bytes);
        rc = study(&b, "size", mix, bytes, budget, mix, kc, kh);
        snprintf(budget, sizeof budget, "avg-bits=%s", colon + 1);
        if (rc == 0) rc = study(&b, "bpw", mix, bytes, budget, "auto", kc, kh);
    }
    ba_db_close(b.db);
    ba_imatrix_free(b.im);
    ba_llm_variants_free(b.v);
    ba_llm_kl_free(b.kc);
    ba_llm_kl_free(b.kh);
    ba_gguf_free(b.g);
    free(calib);
    free(held);
    return rc;
}
