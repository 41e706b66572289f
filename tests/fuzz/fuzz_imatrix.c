/* libFuzzer target for the imatrix readers (llm/imatrix.c): legacy .dat bytes and GGUF imatrix
 * files must load or fail with an error naming the source; never crash, leak, hang or read outside
 * the buffer (ASan/UBSan). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "llm/imatrix.h"

#define FUZZ_NAME "fuzz.imatrix"

static void check(ba_status st, ba_imatrix_t *im, const ba_error *err) {
    if (st != BA_OK) {
        if (im || err->code != BA_ERR_INPUT || strncmp(err->msg, FUZZ_NAME ": ", strlen(FUZZ_NAME) + 2) != 0)
            __builtin_trap();
        return;
    }
    volatile float sink = 0;
    for (int i = 0; i < im->n; i++) {
        const ba_imatrix_entry_t *e = &im->e[i];
        if (e->ne0 < 1 || e->n_mat < 1) __builtin_trap();
        for (int64_t k = 0; k < e->ne0 * e->n_mat; k++) {
            if (!(e->mean[k] >= 0)) __builtin_trap();
            sink += e->mean[k];
        }
    }
    (void)sink;
    ba_imatrix_free(im);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ba_error err;
    memset(&err, 0, sizeof err);
    ba_imatrix_t *im = NULL;
    check(ba_imatrix_parse_dat(data, size, FUZZ_NAME, &im, &err), im, &err);
    ba_gguf_t *g = NULL;
    memset(&err, 0, sizeof err);
    if (ba_gguf_parse(data, size, FUZZ_NAME, &g, &err) == BA_OK) {
        im = NULL;
        check(ba_imatrix_from_gguf(g, &im, &err), im, &err);
        ba_gguf_free(g);
    }
    return 0;
}
