/* eval/reuse.c: evaluations through a reuse cache give the same bits as
 * plain ones while skipping the nodes before the first changed layer, and
 * the executor's resume/cut options hand over exactly the live values. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "eval/dataset.h"
#include "eval/evaluate.h"
#include "eval/npy.h"
#include "quant/apply.h"
#include "quant/wcache.h"
#include "tests/helpers.h"

#define DIG BA_FIXTURES "/digits/"
#define ZOO BA_FIXTURES "/zoo/"

typedef struct {
    ba_model_t *m;
    ba_dataset_t *ds;
    ba_evaluator_t *ev;
    ba_wcache_t *wc;
    ba_tensor_t **ovr;
} fx_t;

static void fx_open(fx_t *f, const char *model, const char *data, int64_t batch) {
    ba_error err;
    memset(f, 0, sizeof *f);
    cr_assert_eq(ba_model_load(model, NULL, &f->m, &err), BA_OK, "%s", err.msg);
    const char *spec[1] = {data};
    cr_assert_eq(ba_dataset_load(spec, 1, &f->ds, &err), BA_OK, "%s", err.msg);
    ba_eval_opts_t o = {.batch = batch};
    cr_assert_eq(ba_evaluator_new(f->m, f->ds, &o, &f->ev, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_wcache_new(f->m, NULL, &f->wc, &err), BA_OK, "%s", err.msg);
    f->ovr = calloc((size_t)f->m->nvalues, sizeof *f->ovr);
}

static void fx_close(fx_t *f) {
    free(f->ovr);
    ba_wcache_free(f->wc);
    ba_evaluator_free(f->ev);
    ba_dataset_free(f->ds);
    ba_model_free(f->m);
}

/* Scores bits through r (or plainly when r is NULL); returns the quantized output. */
static ba_tensor_t *score(fx_t *f, ba_eval_reuse_t *r, const int *bits, const ba_eval_hook_t *hook,
                          ba_metrics_t *met) {
    ba_error err;
    memset(f->ovr, 0, (size_t)f->m->nvalues * sizeof *f->ovr);
    cr_assert_eq(ba_wcache_overrides(f->wc, bits, f->ovr, &err), BA_OK, "%s", err.msg);
    ba_tensor_t *q = NULL;
    cr_assert_eq(ba_evaluator_run_reuse(f->ev, r, bits, f->ovr, hook, 0, 0, met, &q, &err), BA_OK, "%s",
                 err.msg);
    return q;
}

/* A walk of configurations like an evolution's: each differs from an earlier
 * one in one or two layers. */
static void walk(fx_t *f, size_t cap, const ba_eval_hook_t *hook, ba_eval_reuse_stats_t *stats) {
    const int L = f->m->nlayers;
    int *bits = malloc(sizeof(int) * (size_t)L), *parent = malloc(sizeof(int) * (size_t)L);
    for (int l = 0; l < L; l++) parent[l] = 8;
    ba_eval_reuse_t *r = NULL;
    ba_error err;
    cr_assert_eq(ba_eval_reuse_new(f->m, cap, &r, &err), BA_OK, "%s", err.msg);
    static const int widths[] = {2, 3, 4, 6, 8};
    for (int t = 0; t < 12; t++) {
        memcpy(bits, parent, sizeof(int) * (size_t)L);
        int l1 = (t * 7 + 3) % L, l2 = (t * 5 + 1) % L;
        bits[l1] = widths[t % 5];
        if (t % 3 == 0) bits[l2] = widths[(t + 2) % 5];
        ba_metrics_t a, b;
        ba_tensor_t *qa = score(f, r, bits, hook, &a), *qb = score(f, NULL, bits, hook, &b);
        cr_assert_eq(qa->numel, qb->numel);
        cr_assert(memcmp(qa->data, qb->data, ba_tensor_nbytes(qa)) == 0, "trial %d: outputs differ", t);
        cr_assert(memcmp(&a, &b, sizeof a) == 0, "trial %d: metrics differ", t);
        ba_tensor_unref(qa);
        ba_tensor_unref(qb);
        if (t % 2 == 0) memcpy(parent, bits, sizeof(int) * (size_t)L);
    }
    ba_eval_reuse_stats(r, stats);
    cr_log_info("%s: %lld of %lld batches resumed, %lld of %lld nodes skipped, %d cuts held (%.1f MiB)",
                f->m->path, (long long)stats->hits, (long long)stats->runs, (long long)stats->nodes_skipped,
                (long long)(stats->nodes_skipped + stats->nodes_run), stats->entries,
                (double)stats->bytes / (1 << 20));
    cr_assert_leq(stats->bytes, cap);
    ba_eval_reuse_free(r);
    free(bits);
    free(parent);
}

Test(reuse, digits_cnn_bit_identical_and_skips) {
    fx_t f;
    fx_open(&f, DIG "cnn_dyn.onnx", DIG "calib_x.npy", 128);
    ba_eval_reuse_stats_t s;
    walk(&f, BA_EVAL_REUSE_DEFAULT_CAP, NULL, &s);
    cr_expect_eq(s.runs, 12 * 4); /* 512 samples in batches of 128 */
    cr_expect_gt(s.hits, 0);
    cr_expect_gt(s.nodes_skipped, 0);
    fx_close(&f);
}

Test(reuse, resnet_with_act_hook) {
    fx_t f;
    fx_open(&f, ZOO "resnet_dyn.onnx", ZOO "calib_img32.npy", 16);
    ba_error err;
    ba_act_range_t *ranges = calloc((size_t)f.m->nvalues, sizeof *ranges);
    unsigned char *mark = calloc((size_t)f.m->nvalues, 1);
    cr_assert_eq(ba_quant_act_targets(f.m, mark) > 0, 1);
    for (int v = 0; v < f.m->nvalues; v++)
        if (mark[v]) ranges[v] = (ba_act_range_t){.min = -2.0f, .max = 4.0f, .count = 1};
    ba_quant_acts_t acts = {.act_bits = 6, .act_ranges = ranges};
    ba_quant_acts_mark(f.m, &acts, mark);
    ba_eval_hook_t hook = {ba_quant_act_hook, &acts, mark};
    ba_eval_reuse_stats_t s;
    walk(&f, BA_EVAL_REUSE_DEFAULT_CAP, &hook, &s);
    cr_expect_gt(s.hits, 0);
    cr_expect_gt(s.nodes_skipped, s.nodes_run / 4, "skipped %lld of %lld", (long long)s.nodes_skipped,
                 (long long)(s.nodes_skipped + s.nodes_run));
    (void)err;
    free(mark);
    free(ranges);
    fx_close(&f);
}

/* A cap too small for any cut: nothing is kept, nothing is skipped, same results. */
Test(reuse, tiny_cap_keeps_nothing) {
    fx_t f;
    fx_open(&f, DIG "cnn_dyn.onnx", DIG "calib_x.npy", 256);
    ba_eval_reuse_stats_t s;
    walk(&f, 64, NULL, &s);
    cr_expect_eq(s.hits, 0);
    cr_expect_eq(s.saved, 0);
    cr_expect_eq(s.bytes, 0);
    fx_close(&f);
}

/* A cap that holds a few cuts: eviction keeps the total under it and runs stay exact. */
Test(reuse, small_cap_evicts) {
    fx_t f;
    fx_open(&f, ZOO "resnet_dyn.onnx", ZOO "calib_img32.npy", 16);
    ba_eval_reuse_stats_t s;
    walk(&f, (size_t)1 << 20, NULL, &s);
    cr_expect_gt(s.saved, s.entries, "saved %lld, held %d", (long long)s.saved, s.entries);
    fx_close(&f);
}
