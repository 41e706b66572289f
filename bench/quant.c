/* bench_quant: throughput of the weight quantizer against memcpy of the same
 * bytes (single thread). Per-channel RTN, 4-bit symmetric, on a 4096x4096
 * float32 tensor by default; prints one JSON object on stdout.
 * Usage: bench_quant [ROWS COLS [REPEATS]] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitalloc.h"
#include "quant/quant.h"

#define DEFAULT_DIM 4096
#define DEFAULT_REPEATS 10
#define BENCH_BITS 4
#define BENCH_SEED 1234

static double best_of(double a, double b) {
    return a < b ? a : b;
}

int main(int argc, char **argv) {
    int64_t rows = argc > 2 ? atoll(argv[1]) : DEFAULT_DIM;
    int64_t cols = argc > 2 ? atoll(argv[2]) : DEFAULT_DIM;
    int reps = argc > 3 ? atoi(argv[3]) : DEFAULT_REPEATS;
    if (rows <= 0 || cols <= 0 || reps <= 0) {
        fprintf(stderr, "usage: bench_quant [ROWS COLS [REPEATS]]\n");
        return 2;
    }
    ba_error err;
    int64_t shape[2] = {rows, cols};
    ba_tensor_t *w = ba_tensor_new(BA_DT_F32, 2, shape, &err);
    if (!w) {
        fprintf(stderr, "bitalloc: error: %s\n", err.msg);
        return 1;
    }
    ba_rng_t rng;
    ba_rng_seed(&rng, BENCH_SEED);
    float *wd = w->data;
    for (int64_t i = 0; i < w->numel; i++) wd[i] = (float)(ba_rng_normal(&rng) * 0.02);

    size_t n = (size_t)w->numel, bytes = n * sizeof(float);
    float *dst = malloc(bytes), *fq = malloc(bytes), *scales = malloc((size_t)rows * sizeof(float));
    uint8_t *codes = malloc(n);
    if (!dst || !fq || !scales || !codes) return 1;
    memset(dst, 1, bytes); /* fault the pages in before timing */
    memset(fq, 1, bytes);
    memset(codes, 1, n);

    ba_quant_cfg_t cfg = ba_quant_cfg_default();
    double t_copy = 1e30, t_kernel = 1e30, t_api = 1e30, t_fresh = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = ba_now();
        memcpy(dst, wd, bytes);
        t_copy = best_of(t_copy, ba_now() - t0);
        t0 = ba_now();
        if (ba_quant_rows_f32(wd, rows, cols, 0, BENCH_BITS, &cfg, fq, codes, scales, NULL, &err) != BA_OK) {
            fprintf(stderr, "bitalloc: error: %s\n", err.msg);
            return 1;
        }
        t_kernel = best_of(t_kernel, ba_now() - t0);
        /* Whole API call: allocates (and zero-fills) fq, codes and scales each time. */
        ba_qweight_t q;
        t0 = ba_now();
        if (ba_quant_weight(w, 0, BENCH_BITS, &cfg, &q, &err) != BA_OK) {
            fprintf(stderr, "bitalloc: error: %s\n", err.msg);
            return 1;
        }
        t_api = best_of(t_api, ba_now() - t0);
        ba_qweight_free(&q);
        /* Baseline for the API figure: a clone (fresh buffer, pages faulted in by the copy). */
        t0 = ba_now();
        ba_tensor_t *c = ba_tensor_clone(w, &err);
        t_fresh = best_of(t_fresh, ba_now() - t0);
        if (!c) return 1;
        ba_tensor_unref(c);
    }
    const double gb = (double)bytes / 1e9;
    printf("{\"shape\": [%lld, %lld], \"bits\": %d, \"scheme\": \"symmetric\", \"granularity\": "
           "\"per-channel\", "
           "\"repeats\": %d,\n \"memcpy_gbps\": %.2f, \"rtn_kernel_gbps\": %.2f, \"rtn_api_gbps\": %.2f, "
           "\"clone_gbps\": %.2f,\n"
           " \"kernel_vs_memcpy\": %.3f, \"api_vs_memcpy\": %.3f, \"api_vs_clone\": %.3f}\n",
           (long long)rows, (long long)cols, BENCH_BITS, reps, gb / t_copy, gb / t_kernel, gb / t_api,
           gb / t_fresh, t_copy / t_kernel, t_copy / t_api, t_fresh / t_api);
    free(dst);
    free(fq);
    free(scales);
    free(codes);
    ba_tensor_unref(w);
    return 0;
}
