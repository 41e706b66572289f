/* bench_hessian: per-layer Hutchinson traces Tr(H_ll) of the mean CE loss
 * over a data set, with probes read from a file so that bench/hessian.py can
 * give PyTorch the very same probes; times the probe loop and prints JSON.
 * Usage: bench_hessian MODEL.onnx --list
 *        bench_hessian MODEL.onnx X.npy LABELS.npy PROBES.npy BATCH [--threads T] [--hvp]
 *        bench_hessian MODEL.onnx --exact X.npy LABELS.npy BATCH
 * --exact: the exact Tr(H_ll) of every layer, Σ_i e_iᵀ H_ll e_i with one
 * ba_grad_session_hvp per unit vector (the reference for the estimator).
 * PROBES.npy: float32 (P, Σ params) — probe p of layer l is the slice of row
 * p at the layer's offset (layers in model order, as --list prints them). */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bitalloc.h"
#include "eval/npy.h"
#include "model/grad.h"

#define EXIT_USAGE 2

static const char USAGE[] =
    "usage: bench_hessian MODEL.onnx --list\n"
    "       bench_hessian MODEL.onnx X.npy LABELS.npy PROBES.npy BATCH [--threads T] [--hvp]\n"
    "       bench_hessian MODEL.onnx --exact X.npy LABELS.npy BATCH\n"
    "  --hvp  trace samples as v . (H v) from ba_grad_session_hvp instead of ba_grad_session_vhv\n";

static int list_layers(const ba_model_t *m) {
    printf("{\"layers\": [");
    for (int l = 0; l < m->nlayers; l++)
        printf("%s{\"name\": \"%s\", \"params\": %lld, \"op\": \"%s\"}", l ? ", " : "", m->layers[l].name,
               (long long)m->layers[l].params, m->layers[l].op);
    printf("]}\n");
    return 0;
}

/* Samples [start, start+n) of x as a view (sample axis first). */
static ba_tensor_t *rows(ba_tensor_t *x, int64_t start, int64_t n, ba_error *err) {
    int64_t sh[BA_MAX_DIMS];
    memcpy(sh, x->shape, sizeof sh);
    sh[0] = n;
    size_t per = (size_t)(x->numel / x->shape[0]) * ba_dtype_size(x->dtype);
    return ba_tensor_wrap(x->dtype, x->ndim, sh, (char *)x->data + (size_t)start * per, err);
}

/* The gradient session of the batch of samples [b0, b0 + batch) of x (CE on
 * labels y): *xb its inputs (a view), *w its share of the mean loss. */
static ba_status batch_session(const ba_model_t *m, ba_tensor_t *x, const ba_tensor_t *y, int64_t b0,
                               int64_t batch, ba_tensor_t **xb, ba_grad_session_t **s, double *w,
                               ba_error *err) {
    const int64_t N = x->shape[0], nb = N - b0 < batch ? N - b0 : batch;
    *s = NULL;
    *w = (double)nb / (double)N;
    if (!(*xb = rows(x, b0, nb, err))) return err->code;
    ba_loss_spec_t ls = {.kind = BA_LOSS_CE, .labels = (const int64_t *)y->data + b0, .nlabels = nb};
    return ba_grad_session_new(m, xb, NULL, &ls, s, err);
}

/* Exact per-layer traces of the mean CE over x (labels y) in batches. */
static int exact_traces(const ba_model_t *m, const char *xp, const char *yp, int64_t batch) {
    ba_error err = {0};
    ba_tensor_t *x = NULL, *y = NULL;
    const int L = m->nlayers;
    double *tr = calloc((size_t)L + 1, sizeof *tr);
    int rc = 1;
    if (!tr || ba_npy_load(xp, &x, &err) != BA_OK || ba_npy_load(yp, &y, &err) != BA_OK) goto done;
    if (y->dtype != BA_DT_I64 || y->numel != x->shape[0] || batch < 1) {
        fprintf(stderr, "bench_hessian: labels must be int64, one per sample; batch >= 1\n");
        goto done;
    }
    const int64_t N = x->shape[0];
    double t0 = ba_now();
    for (int64_t b0 = 0; b0 < N; b0 += batch) {
        ba_tensor_t *xb;
        ba_grad_session_t *s;
        double w;
        ba_status st = batch_session(m, x, y, b0, batch, &xb, &s, &w, &err);
        for (int l = 0; l < L && st == BA_OK; l++) {
            const int64_t P = m->layers[l].params;
            float *e = calloc((size_t)P, sizeof *e), *h = malloc((size_t)P * sizeof *h);
            if (!e || !h) st = BA_ERR_NOMEM;
            for (int64_t i = 0; i < P && st == BA_OK; i++) {
                e[i] = 1.0f;
                st = ba_grad_session_hvp(s, m->layers[l].value, e, h, &err);
                tr[l] += w * (double)h[i];
                e[i] = 0.0f;
            }
            free(e);
            free(h);
        }
        ba_grad_session_free(s);
        ba_tensor_unref(xb);
        if (st != BA_OK) goto done;
    }
    printf("{\"seconds\": %.3f, \"method\": \"exact\", \"traces\": [", ba_now() - t0);
    for (int l = 0; l < L; l++) printf("%s%.12g", l ? ", " : "", tr[l]);
    printf("]}\n");
    rc = 0;
done:
    if (rc && err.msg[0]) fprintf(stderr, "bench_hessian: %s\n", err.msg);
    free(tr);
    ba_tensor_unref(x);
    ba_tensor_unref(y);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    ba_error err = {0};
    ba_model_t *m = NULL;
    if (ba_model_load(argv[1], NULL, &m, &err) != BA_OK) {
        fprintf(stderr, "bench_hessian: %s\n", err.msg);
        return 1;
    }
    if (!strcmp(argv[2], "--list")) {
        int rc = list_layers(m);
        ba_model_free(m);
        return rc;
    }
    if (!strcmp(argv[2], "--exact") && argc == 6) {
        int rc = exact_traces(m, argv[3], argv[4], atoll(argv[5]));
        ba_model_free(m);
        return rc;
    }
    if (argc < 6) {
        fputs(USAGE, stderr);
        ba_model_free(m);
        return EXIT_USAGE;
    }
    int64_t batch = atoll(argv[5]);
    int use_hvp = 0;
    for (int a = 6; a < argc; a++) {
        if (!strcmp(argv[a], "--threads") && a + 1 < argc)
            omp_set_num_threads(atoi(argv[++a]));
        else if (!strcmp(argv[a], "--hvp"))
            use_hvp = 1;
    }
    ba_tensor_t *x = NULL, *y = NULL, *pr = NULL;
    const int L = m->nlayers;
    int rc = 1;
    double *tr = NULL;
    float **hv = NULL;
    if (ba_npy_load(argv[2], &x, &err) != BA_OK || ba_npy_load(argv[3], &y, &err) != BA_OK ||
        ba_npy_load(argv[4], &pr, &err) != BA_OK)
        goto done;
    if (y->dtype != BA_DT_I64 || pr->dtype != BA_DT_F32 || pr->ndim != 2 || batch < 1) {
        fprintf(stderr, "bench_hessian: labels must be int64, probes float32 (P, total), batch >= 1\n");
        goto done;
    }
    const int64_t N = x->shape[0], P = pr->shape[0], total = pr->shape[1];
    int64_t sum = 0;
    for (int l = 0; l < L; l++) sum += m->layers[l].params;
    if (sum != total || y->numel != N) {
        fprintf(stderr,
                "bench_hessian: probes hold %lld values per row, layers %lld; %lld labels, %lld samples\n",
                (long long)total, (long long)sum, (long long)y->numel, (long long)N);
        goto done;
    }
    tr = calloc((size_t)L, sizeof *tr);
    hv = calloc((size_t)L, sizeof *hv);
    if (!tr || !hv) goto done;
    for (int l = 0; l < L; l++)
        if (!(hv[l] = malloc((size_t)m->layers[l].params * sizeof(float)))) goto done;
    const float *probes = pr->data;
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    double t0 = ba_now(), t_sessions = 0;
    for (int64_t b0 = 0; b0 < N; b0 += batch) {
        ba_tensor_t *xb;
        ba_grad_session_t *s;
        double w, ts = ba_now();
        ba_status st = batch_session(m, x, y, b0, batch, &xb, &s, &w, &err);
        t_sessions += ba_now() - ts;
        for (int64_t p = 0; p < P && st == BA_OK; p++) {
            int64_t off = 0;
            for (int l = 0; l < L && st == BA_OK; l++) {
                const float *v = probes + p * total + off;
                double d = 0;
                if (use_hvp) {
                    st = ba_grad_session_hvp(s, m->layers[l].value, v, hv[l], &err);
                    for (int64_t i = 0; i < m->layers[l].params; i++) d += (double)v[i] * hv[l][i];
                } else {
                    st = ba_grad_session_vhv(s, m->layers[l].value, v, &d, &err);
                }
                tr[l] += w * d / (double)P;
                off += m->layers[l].params;
            }
        }
        ba_grad_session_free(s);
        ba_tensor_unref(xb);
        if (st != BA_OK) goto done;
    }
    double secs = ba_now() - t0;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) * 1e-9;
    printf("{\"seconds\": %.6f, \"cpu_seconds\": %.6f, \"session_seconds\": %.6f, \"threads\": %d, "
           "\"method\": \"%s\", \"traces\": [",
           secs, cpu, t_sessions, omp_get_max_threads(), use_hvp ? "hvp" : "vhv");
    for (int l = 0; l < L; l++) printf("%s%.9g", l ? ", " : "", tr[l]);
    printf("]}\n");
    rc = 0;
done:
    if (rc && err.msg[0]) fprintf(stderr, "bench_hessian: %s\n", err.msg);
    for (int l = 0; hv && l < L; l++) free(hv[l]);
    free(hv);
    free(tr);
    ba_tensor_unref(x);
    ba_tensor_unref(y);
    ba_tensor_unref(pr);
    ba_model_free(m);
    return rc;
}
