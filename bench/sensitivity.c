/* bench_sensitivity: how well each sensitivity estimator's additive cost
 * Σ_l Ω(l, b_l) ranks random mixed-precision configurations by the measured
 * mean KL(p_fp ‖ p_q) of the fully (weight-)quantized model (issue 5 part 4).
 *
 * Per fixture: draw N configurations (seeded, bits uniform in 2..8 per layer),
 * measure each one's KL with the evaluator (FP outputs cached) and the weight
 * cache (each (layer, bits) quantized once), then for each estimator compute
 * its table once (timed) and report the Spearman rank correlation (average
 * ranks for ties) and Kendall τ-b between predicted and measured. A row
 * "naive" (Σ_l 4^-b_l: every layer equally sensitive, error ∝ step²) is a
 * data- and weight-free baseline the estimators should beat.
 *
 * Run from the repository root (fixture paths are relative to it):
 *   bench_sensitivity [--configs N] [--seed S] [--only cnn,resnet,...]
 *                     [--methods hessian,lrp,...] [--probes P] [--zoo-probes P]
 *                     [--zoo-samples N] [--bits LO:HI] [--no-labels] [--json PATH]
 * Prints a table on stdout and, with --json, the figures as JSON. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitalloc.h"

/* Candidate widths of every estimator table; configurations draw from
 * [lo, hi] within them (--bits LO:HI, default the whole range). */
#define MIN_BITS 2
#define MAX_BITS 8
#define NCAND (MAX_BITS - MIN_BITS + 1)
/* Uniform configurations whose KL is printed to place the random ones. */
static const int UNIFORM_BITS[] = {8, 4, 2};
#define NUNIFORM ((int)(sizeof UNIFORM_BITS / sizeof UNIFORM_BITS[0]))
#define DEFAULT_CONFIGS 100
#define DEFAULT_SEED 2024
/* Hutchinson probes: the CLI default (at most 200, stopping on --tol) for
 * every model. --zoo-probes caps the zoo models when HVPs are slow (an
 * earlier engine took 640 s for 200 probes on mobilenetv2). */
#define DEFAULT_PROBES BA_SENS_DEFAULT_PROBES
#define DEFAULT_ZOO_PROBES BA_SENS_DEFAULT_PROBES
/* calib_img32.npy holds 32 images: the zoo uses all of them by default. */
#define DEFAULT_ZOO_SAMPLES 32
#define NMETHODS 6

typedef struct fixture {
    const char *name;
    const char *model; /* relative to the fixtures dir */
    const char *data;
    const char *labels; /* NULL: CE on the FP argmax */
    int zoo;
} fixture_t;

static const fixture_t FIXTURES[] = {
    {"mlp", "digits/mlp_dyn.onnx", "digits/calib_x_flat.npy", "digits/calib_y.npy", 0},
    {"cnn", "digits/cnn_dyn.onnx", "digits/calib_x.npy", "digits/calib_y.npy", 0},
    {"resnet", "zoo/resnet_dyn.onnx", "zoo/calib_img32.npy", NULL, 1},
    {"mobilenetv2", "zoo/mobilenetv2_dyn.onnx", "zoo/calib_img32.npy", NULL, 1},
    {"vit", "zoo/vit_dyn.onnx", "zoo/calib_img32.npy", NULL, 1},
};
#define NFIXTURES ((int)(sizeof FIXTURES / sizeof FIXTURES[0]))

static const ba_sens_method_t METHODS[NMETHODS] = {BA_SENS_HESSIAN, BA_SENS_LRP,    BA_SENS_FISHER,
                                                   BA_SENS_ACT,     BA_SENS_WEIGHT, BA_SENS_MEASURED};

typedef struct args {
    const char *fixdir;
    int configs;
    uint64_t seed;
    int probes, zoo_probes;
    int64_t zoo_samples;
    int no_labels;
    int lo, hi; /* configuration widths drawn uniformly from [lo, hi] */
    const char *json;
    const char *only;    /* comma list of fixture names, NULL = all */
    const char *methods; /* comma list, NULL = all */
} args_t;

typedef struct result {
    const char *method;
    double spearman, kendall, seconds;
    char loss[8];
    int64_t samples, max_probes;
    int ok;
    char err[BA_ERROR_MSG_MAX];
} result_t;

typedef struct fixture_result {
    const fixture_t *f;
    int ok;
    char err[BA_ERROR_MSG_MAX];
    int nlayers;
    int64_t samples;
    double fp_seconds, eval_seconds, kl_min, kl_med, kl_max;
    double kl_uniform[NUNIFORM];
    result_t naive;
    int nres;
    result_t res[NMETHODS];
} fixture_result_t;

/* ---------------- rank statistics ---------------- */

typedef struct {
    double v;
    int i;
} idx_val_t;

static int cmp_iv(const void *a, const void *b) {
    double x = ((const idx_val_t *)a)->v, y = ((const idx_val_t *)b)->v;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* ranks 1..n, ties get the average of the ranks they span */
static int average_ranks(const double *x, int n, double *rank) {
    idx_val_t *iv = malloc((size_t)n * sizeof *iv);
    if (!iv) return -1;
    for (int i = 0; i < n; i++) iv[i] = (idx_val_t){x[i], i};
    qsort(iv, (size_t)n, sizeof *iv, cmp_iv);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && iv[j + 1].v == iv[i].v) j++;
        double r = 0.5 * (double)(i + j) + 1.0;
        for (int k = i; k <= j; k++) rank[iv[k].i] = r;
        i = j + 1;
    }
    free(iv);
    return 0;
}

static double pearson(const double *a, const double *b, int n) {
    double ma = 0, mb = 0;
    for (int i = 0; i < n; i++) {
        ma += a[i];
        mb += b[i];
    }
    ma /= n;
    mb /= n;
    double sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

/* Spearman ρ = Pearson correlation of the average ranks. */
static double spearman(const double *x, const double *y, int n) {
    double *rx = malloc((size_t)n * sizeof *rx), *ry = malloc((size_t)n * sizeof *ry);
    double r = NAN;
    if (rx && ry && average_ranks(x, n, rx) == 0 && average_ranks(y, n, ry) == 0) r = pearson(rx, ry, n);
    free(rx);
    free(ry);
    return r;
}

/* Kendall τ-b (ties in either variable handled), O(n²): n is ~100. */
static double kendall_tau_b(const double *x, const double *y, int n) {
    double conc = 0, disc = 0, tx = 0, ty = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            double dx = x[i] - x[j], dy = y[i] - y[j];
            if (dx == 0 && dy == 0) continue;
            if (dx == 0) {
                tx++;
            } else if (dy == 0) {
                ty++;
            } else if ((dx > 0) == (dy > 0)) {
                conc++;
            } else {
                disc++;
            }
        }
    double d = sqrt((conc + disc + tx) * (conc + disc + ty));
    return d > 0 ? (conc - disc) / d : NAN;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* ---------------- one fixture ---------------- */

static int listed(const char *list, const char *name) {
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) return 1;
        p = c ? c + 1 : NULL;
    }
    return 0;
}

static void path_of(char *buf, size_t cap, const char *dir, const char *rel) {
    snprintf(buf, cap, "%s/%s", dir, rel);
}

static void run_fixture(const args_t *a, const fixture_t *f, fixture_result_t *fr) {
    ba_error err;
    ba_error_clear(&err);
    memset(fr, 0, sizeof *fr);
    fr->f = f;
    char mpath[1024], dpath[1024], lpath[1024];
    path_of(mpath, sizeof mpath, a->fixdir, f->model);
    path_of(dpath, sizeof dpath, a->fixdir, f->data);
    ba_model_t *m = NULL;
    ba_dataset_t *ds = NULL;
    int64_t *labels = NULL, nlabels = 0;
    ba_evaluator_t *ev = NULL;
    ba_wcache_t *wc = NULL;
    ba_tensor_t **ovr = NULL;
    int *bits = NULL, *ubits = NULL;
    double *kl = NULL, *pred = NULL, *sorted = NULL;
    const char *spec = dpath;
    ba_load_opts_t lo = {0};
    ba_status st = ba_model_load(mpath, &lo, &m, &err);
    if (st == BA_OK) st = ba_dataset_load(&spec, 1, &ds, &err);
    if (st == BA_OK && f->labels && !a->no_labels) {
        path_of(lpath, sizeof lpath, a->fixdir, f->labels);
        st = ba_labels_load(lpath, &labels, &nlabels, &err);
    }
    int64_t n = 0;
    if (st == BA_OK) {
        n = ba_dataset_samples(ds);
        if (f->zoo && a->zoo_samples > 0 && a->zoo_samples < n) n = a->zoo_samples;
        fr->samples = n;
        fr->nlayers = m->nlayers;
    }
    int N = a->configs, L = m ? m->nlayers : 0;
    if (st == BA_OK) {
        ba_eval_opts_t eo = {.max_samples = n, .labels = labels, .nlabels = nlabels};
        double t0 = ba_now();
        st = ba_evaluator_new(m, ds, &eo, &ev, &err);
        fr->fp_seconds = ba_now() - t0;
    }
    ba_quant_cfg_t qc = ba_quant_cfg_default();
    if (st == BA_OK) st = ba_wcache_new(m, &qc, &wc, &err);
    if (st == BA_OK) {
        ovr = calloc((size_t)m->nvalues, sizeof *ovr);
        bits = malloc((size_t)N * (size_t)L * sizeof *bits);
        ubits = malloc((size_t)L * sizeof *ubits);
        kl = malloc((size_t)N * sizeof *kl);
        pred = malloc((size_t)N * sizeof *pred);
        sorted = malloc((size_t)N * sizeof *sorted);
        if (!ovr || !bits || !ubits || !kl || !pred || !sorted)
            st = ba_error_set(&err, BA_ERR_NOMEM, "out of memory");
    }
    /* the configurations: one stream per fixture, independent of the estimators */
    if (st == BA_OK) {
        ba_rng_t rng;
        ba_rng_seed(&rng, a->seed);
        uint64_t span = (uint64_t)(a->hi - a->lo + 1);
        for (int i = 0; i < N * L; i++) bits[i] = a->lo + (int)ba_rng_below(&rng, span);
    }
    for (int u = 0; u < NUNIFORM && st == BA_OK; u++) {
        for (int l = 0; l < L; l++) ubits[l] = UNIFORM_BITS[u];
        st = ba_wcache_overrides(wc, ubits, ovr, &err);
        ba_metrics_t mt;
        if (st == BA_OK) st = ba_evaluator_run(ev, ovr, NULL, n, &mt, NULL, &err);
        if (st == BA_OK) fr->kl_uniform[u] = mt.kl;
    }
    /* measured KL of each fully quantized configuration */
    double t0 = ba_now();
    for (int i = 0; i < N && st == BA_OK; i++) {
        st = ba_wcache_overrides(wc, bits + (size_t)i * L, ovr, &err);
        ba_metrics_t mt;
        if (st == BA_OK) st = ba_evaluator_run(ev, ovr, NULL, n, &mt, NULL, &err);
        if (st == BA_OK) kl[i] = mt.kl;
    }
    fr->eval_seconds = ba_now() - t0;
    if (st == BA_OK) {
        memcpy(sorted, kl, (size_t)N * sizeof *kl);
        qsort(sorted, (size_t)N, sizeof *sorted, cmp_double);
        fr->kl_min = sorted[0];
        fr->kl_max = sorted[N - 1];
        fr->kl_med = N % 2 ? sorted[N / 2] : 0.5 * (sorted[N / 2 - 1] + sorted[N / 2]);
        /* naive baseline: Σ_l 4^-b_l */
        for (int i = 0; i < N; i++) {
            pred[i] = 0;
            for (int l = 0; l < L; l++) pred[i] += ldexp(1.0, -2 * bits[(size_t)i * L + l]);
        }
        fr->naive = (result_t){.method = "naive", .ok = 1};
        fr->naive.spearman = spearman(pred, kl, N);
        fr->naive.kendall = kendall_tau_b(pred, kl, N);
    }
    for (int k = 0; k < NMETHODS && st == BA_OK; k++) {
        const char *mname = ba_sens_method_name(METHODS[k]);
        if (!listed(a->methods, mname)) continue;
        result_t *r = &fr->res[fr->nres++];
        r->method = mname;
        ba_sens_opts_t so = ba_sens_opts_default();
        so.seed = a->seed;
        so.max_probes = f->zoo ? a->zoo_probes : a->probes;
        so.max_data = n;
        int cand[NCAND]; /* explicit: the library's default candidate list may change */
        for (int b = MIN_BITS; b <= MAX_BITS; b++) cand[b - MIN_BITS] = b;
        so.bits = cand;
        so.nbits = NCAND;
        r->max_probes = METHODS[k] == BA_SENS_HESSIAN ? so.max_probes : 0;
        ba_sens_table_t *t = NULL;
        ba_error e2;
        ba_error_clear(&e2);
        double ts = ba_now();
        ba_status s2 = ba_sens_compute(m, ba_sens_method_needs_data(METHODS[k]) ? ds : NULL,
                                       ba_sens_method_needs_data(METHODS[k]) ? labels : NULL, nlabels,
                                       METHODS[k], &so, &t, &e2);
        r->seconds = ba_now() - ts;
        if (s2 != BA_OK) {
            snprintf(r->err, sizeof r->err, "%s", e2.msg);
            fprintf(stderr, "bench_sensitivity: %s/%s: %s\n", f->name, mname, e2.msg);
            continue;
        }
        int idx[NCAND];
        int okb = 1;
        for (int b = MIN_BITS; b <= MAX_BITS; b++)
            if ((idx[b - MIN_BITS] = ba_sens_bits_index(t, b)) < 0) okb = 0;
        if (!okb || t->nlayers != L) {
            snprintf(r->err, sizeof r->err, "table lacks a width in 2..8 or a layer");
            ba_sens_table_free(t);
            continue;
        }
        for (int i = 0; i < N; i++) {
            pred[i] = 0;
            for (int l = 0; l < L; l++) pred[i] += t->layers[l].cost[idx[bits[(size_t)i * L + l] - MIN_BITS]];
        }
        r->spearman = spearman(pred, kl, N);
        r->kendall = kendall_tau_b(pred, kl, N);
        snprintf(r->loss, sizeof r->loss, "%s", t->loss ? t->loss : "-");
        r->samples = t->samples;
        if (METHODS[k] == BA_SENS_HESSIAN) {
            int64_t pmax = 0;
            for (int l = 0; l < L; l++)
                if (t->layers[l].probes > pmax) pmax = t->layers[l].probes;
            r->max_probes = pmax;
        }
        r->ok = 1;
        ba_sens_table_free(t);
    }
    if (st != BA_OK) {
        snprintf(fr->err, sizeof fr->err, "%s", err.msg);
        fprintf(stderr, "bench_sensitivity: %s: %s\n", f->name, err.msg);
    } else {
        fr->ok = 1;
    }
    free(ovr);
    free(bits);
    free(ubits);
    free(kl);
    free(pred);
    free(sorted);
    ba_wcache_free(wc);
    ba_evaluator_free(ev);
    free(labels);
    ba_dataset_free(ds);
    ba_model_free(m);
}

/* ---------------- output ---------------- */

static void print_row(const char *fx, const result_t *r) {
    if (!r->ok) {
        printf("%-12s %-9s %s\n", fx, r->method, r->err[0] ? r->err : "failed");
        return;
    }
    printf("%-12s %-9s %8.3f %8.3f %9.2f  %-5s", fx, r->method, r->spearman, r->kendall, r->seconds,
           r->loss[0] ? r->loss : "-");
    if (r->max_probes > 0) printf(" probes<=%" PRId64, r->max_probes);
    printf("\n");
}

static void json_num(FILE *fp, double v) {
    if (isfinite(v))
        fprintf(fp, "%.6g", v);
    else
        fputs("null", fp);
}

static void json_result(FILE *fp, const result_t *r) {
    fprintf(fp, "{\"method\": \"%s\", \"ok\": %s", r->method, r->ok ? "true" : "false");
    if (r->ok) {
        fputs(", \"spearman\": ", fp);
        json_num(fp, r->spearman);
        fputs(", \"kendall_tau_b\": ", fp);
        json_num(fp, r->kendall);
        if (strcmp(r->method, "naive") != 0) {
            fputs(", \"seconds\": ", fp);
            json_num(fp, r->seconds);
            fprintf(fp, ", \"loss\": \"%s\", \"samples\": %" PRId64, r->loss, r->samples);
        }
        if (r->max_probes > 0) fprintf(fp, ", \"max_probes_used\": %" PRId64, r->max_probes);
    } else {
        fputs(", \"error\": \"", fp);
        for (const char *p = r->err; *p; p++) {
            if (*p == '"' || *p == '\\') fputc('\\', fp);
            if ((unsigned char)*p >= 0x20) fputc(*p, fp);
        }
        fputc('"', fp);
    }
    fputc('}', fp);
}

static int write_json(const args_t *a, const fixture_result_t *fr, int nfr, double total) {
    FILE *fp = fopen(a->json, "w");
    if (!fp) {
        fprintf(stderr, "bench_sensitivity: cannot write %s\n", a->json);
        return 1;
    }
    fprintf(
        fp,
        "{\"bench\": \"sensitivity\", \"configs\": %d, \"seed\": %" PRIu64
        ", \"bits\": [%d, %d], \"quantizer\": \"symmetric per-channel max (weights only, activations "
        "float)\","
        "\n \"measured\": \"mean KL(p_fp || p_q) of the fully quantized model over the samples\", "
        "\"probes_cap\": {\"digits\": %d, \"zoo\": %d}, \"labels_on_digits\": %s, \"total_seconds\": %.1f,\n "
        "\"fixtures\": [",
        a->configs, a->seed, a->lo, a->hi, a->probes, a->zoo_probes, a->no_labels ? "false" : "true", total);
    for (int i = 0; i < nfr; i++) {
        const fixture_result_t *x = &fr[i];
        fprintf(
            fp,
            "%s\n  {\"name\": \"%s\", \"model\": \"tests/fixtures/%s\", \"data\": \"tests/fixtures/%s\", ",
            i ? "," : "", x->f->name, x->f->model, x->f->data);
        if (x->f->labels && !a->no_labels)
            fprintf(fp, "\"labels\": \"tests/fixtures/%s\", ", x->f->labels);
        else
            fputs("\"labels\": null, ", fp);
        if (!x->ok) {
            fprintf(fp, "\"ok\": false}");
            continue;
        }
        fprintf(fp,
                "\"layers\": %d, \"samples\": %" PRId64 ", \"fp_seconds\": %.3f, \"eval_seconds\": %.3f, ",
                x->nlayers, x->samples, x->fp_seconds, x->eval_seconds);
        fputs("\"kl\": {\"min\": ", fp);
        json_num(fp, x->kl_min);
        fputs(", \"median\": ", fp);
        json_num(fp, x->kl_med);
        fputs(", \"max\": ", fp);
        json_num(fp, x->kl_max);
        fputs("}, \"kl_uniform\": {", fp);
        for (int u = 0; u < NUNIFORM; u++) {
            fprintf(fp, "%s\"%d\": ", u ? ", " : "", UNIFORM_BITS[u]);
            json_num(fp, x->kl_uniform[u]);
        }
        fputs("},\n   \"baseline\": ", fp);
        json_result(fp, &x->naive);
        fputs(",\n   \"methods\": [", fp);
        for (int k = 0; k < x->nres; k++) {
            fputs(k ? ",\n    " : "\n    ", fp);
            json_result(fp, &x->res[k]);
        }
        fputs("]}", fp);
    }
    fputs("\n ]}\n", fp);
    return fclose(fp) == 0 ? 0 : 1;
}

static int usage(void) {
    fprintf(stderr,
            "usage: bench_sensitivity [--fixtures DIR] [--configs N] [--seed S] [--only LIST] "
            "[--methods LIST] [--probes P] [--zoo-probes P] [--zoo-samples N] [--bits LO:HI] [--no-labels] "
            "[--json PATH]\n");
    return 2;
}

int main(int argc, char **argv) {
    args_t a = {.fixdir = "tests/fixtures",
                .configs = DEFAULT_CONFIGS,
                .seed = DEFAULT_SEED,
                .probes = DEFAULT_PROBES,
                .zoo_probes = DEFAULT_ZOO_PROBES,
                .zoo_samples = DEFAULT_ZOO_SAMPLES,
                .lo = MIN_BITS,
                .hi = MAX_BITS};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--no-labels")) {
            a.no_labels = 1;
            continue;
        }
        if (!v) return usage();
        i++;
        if (!strcmp(o, "--fixtures"))
            a.fixdir = v;
        else if (!strcmp(o, "--configs"))
            a.configs = atoi(v);
        else if (!strcmp(o, "--seed"))
            a.seed = strtoull(v, NULL, 10);
        else if (!strcmp(o, "--only"))
            a.only = v;
        else if (!strcmp(o, "--methods"))
            a.methods = v;
        else if (!strcmp(o, "--probes"))
            a.probes = atoi(v);
        else if (!strcmp(o, "--zoo-probes"))
            a.zoo_probes = atoi(v);
        else if (!strcmp(o, "--zoo-samples"))
            a.zoo_samples = atoll(v);
        else if (!strcmp(o, "--bits")) {
            if (sscanf(v, "%d:%d", &a.lo, &a.hi) != 2) return usage();
        } else if (!strcmp(o, "--json"))
            a.json = v;
        else
            return usage();
    }
    if (a.configs < 2 || a.probes < 1 || a.zoo_probes < 1 || a.lo < MIN_BITS || a.hi > MAX_BITS ||
        a.lo > a.hi)
        return usage();
    fixture_result_t *fr = calloc((size_t)NFIXTURES, sizeof *fr);
    if (!fr) return 1;
    int nfr = 0, failed = 0;
    double t0 = ba_now();
    printf("%d random configurations per model (seed %" PRIu64 ", bits uniform in %d..%d per layer), "
           "measured = mean KL(p_fp||p_q), weights quantized, activations float\n\n",
           a.configs, a.seed, a.lo, a.hi);
    printf("%-12s %-9s %8s %8s %9s  %-5s\n", "model", "method", "spearman", "kendall", "cost_s", "loss");
    for (int i = 0; i < NFIXTURES; i++) {
        if (!listed(a.only, FIXTURES[i].name)) continue;
        fixture_result_t *x = &fr[nfr++];
        run_fixture(&a, &FIXTURES[i], x);
        if (!x->ok) {
            printf("%-12s failed: %s\n", FIXTURES[i].name, x->err);
            failed = 1;
            continue;
        }
        char info[64];
        snprintf(info, sizeof info, "%s", FIXTURES[i].name);
        for (int k = 0; k < x->nres; k++) {
            print_row(info, &x->res[k]);
            if (!x->res[k].ok) failed = 1;
        }
        print_row(info, &x->naive);
        printf("%-12s (%d layers, %" PRId64 " samples; KL min/median/max %.3g/%.3g/%.3g; %d evals %.1f s)\n",
               "", x->nlayers, x->samples, x->kl_min, x->kl_med, x->kl_max, a.configs, x->eval_seconds);
        printf("%-12s (KL of uniform", "");
        for (int u = 0; u < NUNIFORM; u++)
            printf(" %d-bit %.3g%s", UNIFORM_BITS[u], x->kl_uniform[u], u + 1 < NUNIFORM ? "," : ")\n\n");
        fflush(stdout);
    }
    double total = ba_now() - t0;
    printf("total %.1f s\n", total);
    if (a.json && write_json(&a, fr, nfr, total) != 0) failed = 1;
    free(fr);
    return failed;
}
