/* llm/imatrix.c: legacy .dat and GGUF importance matrices -> mean x² per column, as llama-quantize
 * reads them. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "llm/gguf.h"
#include "llm/imatrix.h"

static size_t put_i32(uint8_t *b, size_t o, int32_t v) {
    memcpy(b + o, &v, 4);
    return o + 4;
}
static size_t put_f32(uint8_t *b, size_t o, float v) {
    memcpy(b + o, &v, 4);
    return o + 4;
}
static size_t put_s(uint8_t *b, size_t o, const char *s) {
    o = put_i32(b, o, (int32_t)strlen(s));
    memcpy(b + o, s, strlen(s));
    return o + strlen(s);
}

/* Two entries (ncall 4, ncall 0) and the optional trailer; *entries_end = bytes before it. */
static size_t make_dat(uint8_t *b, size_t *entries_end) {
    size_t o = put_i32(b, 0, 2);
    o = put_s(b, o, "blk.0.attn_q.weight");
    o = put_i32(b, o, 4);
    o = put_i32(b, o, 3);
    o = put_f32(b, o, 4.0f);
    o = put_f32(b, o, 8.0f);
    o = put_f32(b, o, 2.0f);
    o = put_s(b, o, "blk.0.ffn_down.weight");
    o = put_i32(b, o, 0);
    o = put_i32(b, o, 2);
    o = put_f32(b, o, 0.5f);
    o = put_f32(b, o, 3.0f);
    *entries_end = o;
    o = put_i32(b, o, 7);
    return put_s(b, o, "calib.txt");
}

Test(llm_imatrix, legacy_dat_means_and_hostile_prefixes) {
    uint8_t b[256];
    size_t end, n = make_dat(b, &end);
    ba_imatrix_t *im;
    ba_error err = {0};
    cr_assert_eq(ba_imatrix_parse_dat(b, n, "i.dat", &im, &err), BA_OK, "%s", err.msg);
    cr_expect(im->legacy && im->n == 2 && im->chunk_count == 7);
    const ba_imatrix_entry_t *q = ba_imatrix_find(im, "blk.0.attn_q.weight");
    cr_assert(q && q->ne0 == 3 && q->n_mat == 1);
    cr_expect(q->mean[0] == 1.0f && q->mean[1] == 2.0f && q->mean[2] == 0.5f, "divided by ncall");
    const ba_imatrix_entry_t *d = ba_imatrix_find(im, "blk.0.ffn_down.weight");
    cr_assert(d && d->ne0 == 2);
    cr_expect(d->mean[0] == 0.5f && d->mean[1] == 3.0f, "ncall 0: values as they are");
    ba_imatrix_free(im);
    cr_assert_eq(ba_imatrix_parse_dat(b, end, "i.dat", &im, &err), BA_OK, "the trailer is optional: %s",
                 err.msg);
    cr_expect_eq(im->chunk_count, 0);
    ba_imatrix_free(im);
    for (size_t k = 0; k < n; k++) {
        if (k == end) continue;
        im = NULL;
        cr_assert_eq(ba_imatrix_parse_dat(b, k, "i.dat", &im, &err), BA_ERR_INPUT, "prefix %zu", k);
        cr_assert_null(im);
        cr_assert(strncmp(err.msg, "i.dat: ", 7) == 0, "%s", err.msg);
    }
    put_i32(b, 0, 0x7fffffff);
    cr_expect_eq(ba_imatrix_parse_dat(b, n, "i.dat", &im, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "entry count"), "%s", err.msg);
}

static void write_gguf_imatrix(const char *path, int with_meta, const float *sums, const float *counts) {
    ba_error err = {0};
    ba_gguf_writer_t *w;
    cr_assert_eq(ba_gguf_writer_new(&w, &err), BA_OK);
    cr_assert_eq(ba_gguf_writer_add_str(w, "general.type", "imatrix", &err), BA_OK);
    if (with_meta) {
        uint8_t ds[8 + 5];
        uint64_t l = 5;
        memcpy(ds, &l, 8);
        memcpy(ds + 8, "c.txt", 5);
        cr_assert_eq(ba_gguf_writer_add_kv(w, "imatrix.datasets", BA_GGUF_ARRAY, BA_GGUF_STRING, 1, ds,
                                           sizeof ds, &err),
                     BA_OK);
        cr_assert_eq(ba_gguf_writer_add_u32(w, "imatrix.chunk_count", 3, &err), BA_OK);
        cr_assert_eq(ba_gguf_writer_add_u32(w, "imatrix.chunk_size", 512, &err), BA_OK);
    }
    int64_t ne_s[2] = {4, 2}, ne_c[2] = {1, 2};
    cr_assert_eq(ba_gguf_writer_add_tensor(w, "blk.0.ffn_down.weight.in_sum2", 2, ne_s, 0, sums, 32, &err),
                 BA_OK);
    cr_assert_eq(ba_gguf_writer_add_tensor(w, "blk.0.ffn_down.weight.counts", 2, ne_c, 0, counts, 8, &err),
                 BA_OK);
    cr_assert_eq(ba_gguf_writer_write(w, path, &err), BA_OK, "%s", err.msg);
    ba_gguf_writer_free(w);
}

Test(llm_imatrix, gguf_per_expert_counts) {
    char dir[512], path[700];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/imatrix.gguf", dir);
    float sums[8] = {2, 4, 6, 8, 1, 2, 3, 4}, counts[2] = {2.0f, 0.0f};
    write_gguf_imatrix(path, 1, sums, counts);
    ba_imatrix_t *im;
    ba_error err = {0};
    cr_assert_eq(ba_imatrix_open(path, &im, &err), BA_OK, "%s", err.msg);
    cr_expect(!im->legacy && im->n == 1 && im->chunk_count == 3);
    const ba_imatrix_entry_t *e = ba_imatrix_find(im, "blk.0.ffn_down.weight");
    cr_assert(e && e->ne0 == 4 && e->n_mat == 2);
    float want[8] = {1, 2, 3, 4, 1, 1, 1, 1}; /* expert 1 saw no token: 1, as llama-quantize */
    for (int i = 0; i < 8; i++) cr_expect_eq(e->mean[i], want[i], "%d: %g", i, e->mean[i]);
    ba_imatrix_free(im);
    write_gguf_imatrix(path, 0, sums, counts);
    cr_expect_eq(ba_imatrix_open(path, &im, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "imatrix.datasets: missing"), "%s", err.msg);
    ba_test_rmtree(dir);
}
