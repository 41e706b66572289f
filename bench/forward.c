/* bench_forward: forward-pass throughput of the executor on one ONNX model.
 * Builds a batch (tiled from a .npy or seeded random normal data of the
 * model's input shape), warms up, times N runs, prints one JSON object.
 * Usage: bench_forward MODEL.onnx [--batch N] [--threads T] [--input X.npy]
 *        [--warmup W] [--iters I] [--seed S] [--per-op] [--no-fuse] [--check-fuse] */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitalloc.h"

#define DEFAULT_BATCH 32
#define DEFAULT_WARMUP 3
#define DEFAULT_ITERS 10
#define DEFAULT_SEED 1234
#define MS_PER_S 1000.0
#define EXIT_USAGE 2
#define PER_OP_TOP 12 /* slowest nodes --per-op lists */

static const char USAGE[] =
    "usage: bench_forward MODEL.onnx [--batch N] [--threads T] [--input X.npy] [--warmup W] [--iters I]\n"
    "                     [--seed S] [--per-op] [--no-fuse] [--check-fuse]\n"
    "  --batch N    samples per run, replaces the model's dynamic batch dim (default 32)\n"
    "  --threads T  OpenMP and OpenBLAS threads (default: the number of online CPUs)\n"
    "  --input F    .npy whose samples are tiled to the batch (default: seeded N(0,1) data)\n"
    "  --per-op     also print per-op-type time of one run (on stderr)\n"
    "  --no-fuse    time the executor without its forward fusion (model/fuse.h)\n"
    "  --check-fuse also run once fused and once unfused and report whether the outputs are\n"
    "               bit-identical (\"fuse_identical\")\n";

typedef struct {
    double t_last;
    double *op_time; /* per node */
    const ba_model_t *m;
    int *node_of_value;
} per_op_ctx;

/* Times each node as the gap between consecutive on_value calls. */
static ba_status per_op_hook(void *vctx, const ba_model_t *m, int value_id, ba_tensor_t **t, ba_error *err) {
    (void)m, (void)t, (void)err;
    per_op_ctx *c = vctx;
    double now = ba_now();
    int node = c->node_of_value[value_id];
    if (node >= 0) c->op_time[node] += now - c->t_last;
    c->t_last = now;
    return BA_OK;
}

static void print_per_op(const ba_model_t *m, ba_tensor_t *input, ba_error *err) {
    per_op_ctx c = {0};
    c.m = m;
    c.op_time = calloc((size_t)m->nnodes, sizeof(double));
    c.node_of_value = malloc((size_t)m->nvalues * sizeof(int));
    ba_tensor_t **outs = calloc((size_t)m->noutputs, sizeof(ba_tensor_t *));
    if (!c.op_time || !c.node_of_value || !outs) goto done;
    for (int v = 0; v < m->nvalues; v++) c.node_of_value[v] = -1;
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].nout > 0 && m->nodes[i].outputs[0] >= 0) c.node_of_value[m->nodes[i].outputs[0]] = i;
    ba_run_opts_t opts = {.on_value = per_op_hook, .ctx = &c};
    c.t_last = ba_now();
    double t0 = c.t_last;
    if (ba_model_run(m, &input, &opts, outs, err) != BA_OK) {
        fprintf(stderr, "bench_forward: error: %s\n", err->msg);
        goto done;
    }
    double total = ba_now() - t0;
    /* Sum per op type (first-seen order), then per node for the 8 slowest. */
    fprintf(stderr, "per-op (one run, %.2f ms):\n", total * MS_PER_S);
    for (int i = 0; i < m->nnodes; i++) {
        int first = 1;
        for (int j = 0; j < i; j++)
            if (strcmp(m->nodes[j].op_type, m->nodes[i].op_type) == 0) first = 0;
        if (!first) continue;
        double s = 0;
        int cnt = 0;
        for (int j = i; j < m->nnodes; j++)
            if (strcmp(m->nodes[j].op_type, m->nodes[i].op_type) == 0) s += c.op_time[j], cnt++;
        fprintf(stderr, "  %-22s x%-3d %8.3f ms %5.1f%%\n", m->nodes[i].op_type, cnt, s * MS_PER_S,
                100.0 * s / total);
    }
    /* the slowest nodes, with their first input's and weight's shapes */
    fprintf(stderr, "slowest nodes:\n");
    for (int r = 0; r < PER_OP_TOP; r++) {
        int best = -1;
        for (int i = 0; i < m->nnodes; i++)
            if (c.op_time[i] >= 0 && (best < 0 || c.op_time[i] > c.op_time[best])) best = i;
        if (best < 0) break;
        const ba_node_t *n = &m->nodes[best];
        char a[96] = "", b[96] = "";
        if (n->nin > 0 && n->inputs[0] >= 0) ba_value_shape_str(&m->values[n->inputs[0]], a, sizeof a);
        if (n->nin > 1 && n->inputs[1] >= 0) ba_value_shape_str(&m->values[n->inputs[1]], b, sizeof b);
        fprintf(stderr, "  %8.3f ms  %-14s %-28s in %s w %s\n", c.op_time[best] * MS_PER_S, n->op_type,
                n->name, a, b);
        c.op_time[best] = -1;
    }
done:
    for (int k = 0; outs && k < m->noutputs; k++) ba_tensor_unref(outs[k]);
    free(outs);
    free(c.op_time);
    free(c.node_of_value);
}

/* A batch of `batch` samples for input value v: tiled from src (whose first
 * dim is its sample count) or seeded random normal data. */
static ba_tensor_t *make_input(const ba_value_t *v, int64_t batch, ba_tensor_t *src, uint64_t seed,
                               ba_error *err) {
    int64_t shape[BA_MAX_DIMS];
    int ndim = v->ndim;
    if (src) {
        ndim = src->ndim;
        for (int d = 0; d < ndim; d++) shape[d] = src->shape[d];
    } else {
        if (ndim < 1) {
            ba_error_set(err, BA_ERR_INPUT, "input '%s' has an unknown rank: pass --input", v->name);
            return NULL;
        }
        for (int d = 0; d < ndim; d++) shape[d] = v->shape[d];
        for (int d = 1; d < ndim; d++)
            if (shape[d] < 0) {
                ba_error_set(err, BA_ERR_INPUT, "input '%s' has a dynamic non-batch dim %d: pass --input",
                             v->name, d);
                return NULL;
            }
    }
    shape[0] = batch;
    ba_dtype dt = src ? src->dtype : v->dtype;
    if (!src && dt != BA_DT_F32) {
        ba_error_set(err, BA_ERR_INPUT, "input '%s' is %s: random data is float32 only, pass --input",
                     v->name, ba_dtype_name(dt));
        return NULL;
    }
    ba_tensor_t *t = ba_tensor_new(dt, ndim, shape, err);
    if (!t) return NULL;
    if (src) {
        int64_t have = src->shape[0];
        size_t per = ba_tensor_nbytes(src) / (size_t)(have > 0 ? have : 1);
        if (have < 1) {
            ba_tensor_unref(t);
            ba_error_set(err, BA_ERR_INPUT, "--input holds no samples");
            return NULL;
        }
        for (int64_t i = 0; i < batch; i++)
            memcpy((char *)t->data + (size_t)i * per, (const char *)src->data + (size_t)(i % have) * per,
                   per);
        return t;
    }
    ba_rng_t rng;
    ba_rng_seed(&rng, seed);
    float *d = t->data;
    for (int64_t i = 0; i < t->numel; i++) d[i] = (float)ba_rng_normal(&rng);
    return t;
}

/* 1 when one fused and one unfused run give bit-identical outputs, 0 when
 * not, -1 on error. */
static int same_fused(const ba_model_t *m, ba_tensor_t *x, ba_error *err) {
    ba_tensor_t **o = calloc(2 * (size_t)m->noutputs, sizeof(ba_tensor_t *));
    if (!o) return -1;
    const ba_run_opts_t off = {.no_fuse = 1};
    int same = -1;
    if (ba_model_run(m, &x, NULL, o, err) == BA_OK &&
        ba_model_run(m, &x, &off, o + m->noutputs, err) == BA_OK) {
        same = 1;
        for (int k = 0; k < m->noutputs; k++) {
            const ba_tensor_t *a = o[k], *b = o[m->noutputs + k];
            if (a->dtype != b->dtype || a->numel != b->numel ||
                memcmp(a->data, b->data, ba_tensor_nbytes(a)) != 0)
                same = 0;
        }
    }
    for (int k = 0; k < 2 * m->noutputs; k++) ba_tensor_unref(o[k]);
    free(o);
    return same;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *input_path = NULL;
    int64_t batch = DEFAULT_BATCH;
    int threads = omp_get_num_procs(), warmup = DEFAULT_WARMUP, iters = DEFAULT_ITERS, per_op = 0;
    int no_fuse = 0, check_fuse = 0, identical = -1;
    uint64_t seed = DEFAULT_SEED;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (strcmp(a, "--batch") == 0 && val)
            batch = atoll(val);
        else if (strcmp(a, "--threads") == 0 && val)
            threads = atoi(val);
        else if (strcmp(a, "--input") == 0 && val)
            input_path = val;
        else if (strcmp(a, "--warmup") == 0 && val)
            warmup = atoi(val);
        else if (strcmp(a, "--iters") == 0 && val)
            iters = atoi(val);
        else if (strcmp(a, "--seed") == 0 && val)
            seed = strtoull(val, NULL, 10);
        else if (strcmp(a, "--per-op") == 0)
            per_op = 1, takes = 0;
        else if (strcmp(a, "--no-fuse") == 0)
            no_fuse = 1, takes = 0;
        else if (strcmp(a, "--check-fuse") == 0)
            check_fuse = 1, takes = 0;
        else if (a[0] != '-' && !model_path)
            model_path = a, takes = 0;
        else {
            fputs(USAGE, stderr);
            return EXIT_USAGE;
        }
        i += takes;
    }
    if (!model_path || batch < 1 || threads < 1 || warmup < 0 || iters < 1) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);

    ba_error err = {0};
    ba_model_t *m = NULL;
    ba_tensor_t *src = NULL, *x = NULL, **outs = NULL;
    double *times = NULL;
    int rc = 1;
    if (ba_model_load(model_path, NULL, &m, &err) != BA_OK) goto fail;
    if (m->ninputs != 1) {
        ba_error_set(&err, BA_ERR_INPUT, "%s: %d graph inputs, the bench feeds exactly one", model_path,
                     m->ninputs);
        goto fail;
    }
    if (input_path && ba_npy_load(input_path, &src, &err) != BA_OK) goto fail;
    x = make_input(&m->values[m->inputs[0]], batch, src, seed, &err);
    outs = calloc((size_t)m->noutputs, sizeof(ba_tensor_t *));
    times = malloc((size_t)iters * sizeof(double));
    if (!x || !outs || !times) goto fail;
    const ba_run_opts_t run_opts = {.no_fuse = no_fuse};
    if (check_fuse && (identical = same_fused(m, x, &err)) < 0) goto fail;
    for (int r = 0; r < warmup + iters; r++) {
        double t0 = ba_now();
        if (ba_model_run(m, &x, &run_opts, outs, &err) != BA_OK) goto fail;
        double dt = ba_now() - t0;
        for (int k = 0; k < m->noutputs; k++) {
            ba_tensor_unref(outs[k]);
            outs[k] = NULL;
        }
        if (r >= warmup) times[r - warmup] = dt;
    }
    qsort(times, (size_t)iters, sizeof(double), cmp_double);
    double med = iters % 2 ? times[iters / 2] : 0.5 * (times[iters / 2 - 1] + times[iters / 2]);
    double mean = 0;
    for (int i = 0; i < iters; i++) mean += times[i];
    mean /= iters;
    if (per_op) print_per_op(m, x, &err);
    const char *base = strrchr(model_path, '/');
    printf("{\"model\": \"%s\", \"batch\": %lld, \"threads\": %d, \"warmup\": %d, \"iters\": %d, "
           "\"ms_per_run\": %.4f, \"mean_ms\": %.4f, \"min_ms\": %.4f, \"max_ms\": %.4f, \"samples_per_s\": "
           "%.2f, \"fused\": %s%s}\n",
           base ? base + 1 : model_path, (long long)batch, threads, warmup, iters, med * MS_PER_S,
           mean * MS_PER_S, times[0] * MS_PER_S, times[iters - 1] * MS_PER_S, (double)batch / med,
           no_fuse ? "false" : "true",
           identical < 0 ? ""
           : identical   ? ", \"fuse_identical\": true"
                         : ", \"fuse_identical\": false");
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "bench_forward: error: %s\n", err.msg);
done:
    for (int k = 0; outs && m && k < m->noutputs; k++) ba_tensor_unref(outs[k]);
    free(outs);
    free(times);
    ba_tensor_unref(x);
    ba_tensor_unref(src);
    ba_model_free(m);
    return rc;
}
