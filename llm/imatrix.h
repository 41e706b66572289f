/* llama.cpp importance matrices: per weight tensor, the mean of x² per input column (per expert
 * for 3-D weights), as llama-quantize uses them (tools/quantize/quantize.cpp).
 *
 *  * GGUF (general.type "imatrix"; llama-imatrix's default): F32 tensors W.in_sum2 [ne0, n_mat]
 *    (Σx² per column) and W.counts [1, n_mat] (tokens seen); mean = in_sum2 / round(count), 1 where
 *    the count is 0. imatrix.datasets, imatrix.chunk_count and imatrix.chunk_size are required, as
 *    llama-quantize requires them.
 *  * Legacy .dat, little-endian: i32 n_entries; n_entries × {i32 len; name[len]; i32 ncall;
 *    i32 nval; f32 v[nval]}; optionally i32 chunk_count, i32 len, dataset[len]. v holds
 *    (Σx²/count)·ncall, so mean = v / ncall (v itself when ncall <= 0). One matrix of nval.
 *
 * Hostile files give BA_ERR_INPUT "FILE: FIELD: WHY"; sizes are checked before any allocation. */
#ifndef BA_LLM_IMATRIX_H
#define BA_LLM_IMATRIX_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "llm/gguf.h"

typedef struct {
    char *name;    /* the weight's GGUF name, e.g. "blk.7.ffn_down.weight" */
    int64_t ne0;   /* columns per matrix */
    int64_t n_mat; /* matrices (experts); 1 for dense weights */
    float *mean;   /* n_mat × ne0 means of x² */
} ba_imatrix_entry_t;

typedef struct {
    int legacy;          /* 1: .dat */
    int64_t chunk_count; /* 0 when the file does not say */
    int n;
    ba_imatrix_entry_t *e;
} ba_imatrix_t;

/* GGUF when the file starts with "GGUF", else legacy .dat. */
ba_status ba_imatrix_open(const char *path, ba_imatrix_t **out, ba_error *err);
ba_status ba_imatrix_parse_dat(const uint8_t *data, size_t size, const char *name, ba_imatrix_t **out,
                               ba_error *err);
ba_status ba_imatrix_from_gguf(const ba_gguf_t *g, ba_imatrix_t **out, ba_error *err);
const ba_imatrix_entry_t *ba_imatrix_find(const ba_imatrix_t *im, const char *name);
void ba_imatrix_free(ba_imatrix_t *im);

/* Writes im as llama-imatrix's GGUF: general.type "imatrix", imatrix.datasets {dataset},
 * imatrix.chunk_count, imatrix.chunk_size; per entry W.in_sum2 [ne0, n_mat] = mean × count and
 * W.counts [1, n_mat] = count (counts[i]: the tokens entry i saw, the same for its matrices). */
ba_status ba_imatrix_write_gguf(const ba_imatrix_t *im, const int64_t *counts, const char *dataset,
                                int64_t chunk_count, int64_t chunk_size, const char *path, ba_error *err);

#endif
