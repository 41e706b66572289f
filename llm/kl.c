#include "llm/kl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ba_llm_kl {
    const ba_llama_t *ll;
    int n_threads;
    char dir[4096];
    char ref[4200];
    char cand[4200];
    int32_t *tokens;
    int ntokens; /* nchunks × chunk_len */
    int chunk_len, nchunks;
    int nv;
    float *ref_lp; /* nchunks × chunk_len × nv log-probabilities of the reference */
    int *ref_top;  /* nchunks × chunk_len argmax */
};

/* log-softmax of row (n values) into out (double sums); returns the argmax. */
static int log_softmax(const float *row, int n, float *out) {
    int top = 0;
    float mx = row[0];
    for (int i = 1; i < n; i++)
        if (row[i] > mx) {
            mx = row[i];
            top = i;
        }
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)row[i] - (double)mx);
    double lse = (double)mx + log(s);
    for (int i = 0; i < n; i++) out[i] = (float)((double)row[i] - lse);
    return top;
}

typedef struct {
    ba_llm_kl_t *k;
    int first; /* chunk index of the first decoded chunk */
    double kl_sum, agree;
    int64_t count;
    float *lq; /* nv scratch */
} acc_t;

static ba_status keep_reference(void *user, int chunk, const float *logits, int nv, ba_error *err) {
    acc_t *a = user;
    ba_llm_kl_t *k = a->k;
    if (!k->ref_lp) {
        k->nv = nv;
        k->ref_lp = ba_malloc((size_t)k->ntokens * (size_t)nv * sizeof *k->ref_lp, err);
        k->ref_top = k->ref_lp ? ba_malloc((size_t)k->ntokens * sizeof *k->ref_top, err) : NULL;
        if (!k->ref_top) return err->code;
    }
    for (int i = 0; i < k->chunk_len; i++) {
        size_t pos = (size_t)chunk * (size_t)k->chunk_len + (size_t)i;
        k->ref_top[pos] = log_softmax(logits + (size_t)i * (size_t)nv, nv, k->ref_lp + pos * (size_t)nv);
    }
    return BA_OK;
}

static ba_status add_kl(void *user, int chunk, const float *logits, int nv, ba_error *err) {
    acc_t *a = user;
    ba_llm_kl_t *k = a->k;
    if (nv != k->nv)
        return ba_error_set(err, BA_ERR_INPUT, "the candidate has %d vocabulary entries, the reference %d",
                            nv, k->nv);
    for (int i = 0; i + 1 < k->chunk_len; i++) {
        size_t pos = (size_t)(a->first + chunk) * (size_t)k->chunk_len + (size_t)i;
        int top = log_softmax(logits + (size_t)i * (size_t)nv, nv, a->lq);
        const float *lp = k->ref_lp + pos * (size_t)nv;
        double s = 0;
        for (int v = 0; v < nv; v++) s += exp((double)lp[v]) * ((double)lp[v] - (double)a->lq[v]);
        a->kl_sum += s;
        a->agree += top == k->ref_top[pos];
        a->count++;
    }
    return BA_OK;
}

void ba_llm_kl_free(ba_llm_kl_t *k) {
    if (!k) return;
    if (k->ref[0]) unlink(k->ref);
    if (k->cand[0]) unlink(k->cand);
    if (k->dir[0]) rmdir(k->dir);
    free(k->tokens);
    free(k->ref_lp);
    free(k->ref_top);
    free(k);
}

ba_status ba_llm_kl_new(const ba_llama_t *ll, const ba_gguf_t *g, const char *text, int chunk_len,
                        int n_threads, ba_llm_kl_t **out, ba_error *err) {
    *out = NULL;
    ba_llm_kl_t *k = ba_calloc(1, sizeof *k, err);
    if (!k) return err->code;
    k->ll = ll;
    k->n_threads = n_threads > 0 ? n_threads : 1;
    const char *tmp = getenv("TMPDIR");
    snprintf(k->dir, sizeof k->dir, "%s/bitalloc-llm-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ba_status st = BA_OK;
    if (!mkdtemp(k->dir)) {
        st = ba_error_set(err, BA_ERR_IO, "%s: cannot create a temporary folder", k->dir);
        k->dir[0] = 0;
    }
    if (st == BA_OK) {
        snprintf(k->ref, sizeof k->ref, "%s/reference-f32.gguf", k->dir);
        snprintf(k->cand, sizeof k->cand, "%s/candidate.gguf", k->dir);
        st = ba_gguf_write_f32(g, k->ref, err);
    }
    int n = 0;
    if (st == BA_OK) st = ba_llama_tokenize(ll, k->ref, text, &k->tokens, &n, err);
    if (st == BA_OK && n < 2)
        st = ba_error_set(err, BA_ERR_INPUT, "the calibration text gives %d token%s; at least 2 are needed",
                          n, n == 1 ? "" : "s");
    if (st == BA_OK) {
        k->chunk_len = chunk_len > 1 && chunk_len < n ? chunk_len : n;
        k->nchunks = n / k->chunk_len;
        k->ntokens = k->nchunks * k->chunk_len;
        acc_t a = {k, 0, 0, 0, 0, NULL};
        st = ba_llama_decode_chunks(ll, k->ref, k->tokens, k->chunk_len, k->nchunks, k->n_threads,
                                    keep_reference, &a, err);
    }
    if (st != BA_OK) {
        ba_llm_kl_free(k);
        return st;
    }
    *out = k;
    return BA_OK;
}

int ba_llm_kl_nchunks(const ba_llm_kl_t *k) {
    return k->nchunks;
}
int ba_llm_kl_chunk_len(const ba_llm_kl_t *k) {
    return k->chunk_len;
}
int ba_llm_kl_ntokens(const ba_llm_kl_t *k) {
    return k->ntokens;
}
const char *ba_llm_kl_reference(const ba_llm_kl_t *k) {
    return k->ref;
}

ba_status ba_llm_kl_measure(ba_llm_kl_t *k, const char *path, int first, int n, double *kl, double *agreement,
                            ba_error *err) {
    if (first < 0 || n < 1 || first + n > k->nchunks)
        return ba_error_set(err, BA_ERR_INPUT, "chunks %d..%d are outside the %d calibration chunks", first,
                            first + n - 1, k->nchunks);
    acc_t a = {k, first, 0, 0, 0, NULL};
    a.lq = ba_malloc((size_t)k->nv * sizeof *a.lq, err);
    if (!a.lq) return err->code;
    ba_status st = ba_llama_decode_chunks(k->ll, path, k->tokens + (size_t)first * (size_t)k->chunk_len,
                                          k->chunk_len, n, k->n_threads, add_kl, &a, err);
    free(a.lq);
    BA_TRY(st);
    *kl = a.count ? a.kl_sum / (double)a.count : NAN;
    if (agreement) *agreement = a.count ? a.agree / (double)a.count : NAN;
    return BA_OK;
}

ba_status ba_llm_kl_measure_types(ba_llm_kl_t *k, ba_llm_variants_t *v, const int *types, int first, int n,
                                  double *kl, double *agreement, ba_error *err) {
    BA_TRY(ba_llm_variants_write(v, types, k->cand, err));
    ba_status st = ba_llm_kl_measure(k, k->cand, first, n, kl, agreement, err);
    unlink(k->cand);
    return st;
}
