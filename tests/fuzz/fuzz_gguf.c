/* libFuzzer target for the GGUF reader (llm/gguf.c): any byte string must parse or fail with an
 * error that names the source; never crash, leak, hang or read outside the buffer (ASan/UBSan). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "llm/gguf.h"

#define FUZZ_NAME "fuzz.gguf"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ba_error err;
    memset(&err, 0, sizeof err);
    ba_gguf_t *g = NULL;
    if (ba_gguf_parse(data, size, FUZZ_NAME, &g, &err) != BA_OK) {
        if (g || err.code != BA_ERR_INPUT || strncmp(err.msg, FUZZ_NAME ": ", strlen(FUZZ_NAME) + 2) != 0)
            __builtin_trap();
        return 0;
    }
    volatile uint8_t sink = 0;
    for (int i = 0; i < g->n_kv; i++) {
        const ba_gguf_kv_t *kv = &g->kv[i];
        for (size_t k = 0; k < kv->val_size; k++) sink ^= kv->val[k];
        int64_t iv;
        double fv;
        const char *s;
        uint64_t len;
        (void)ba_gguf_kv_int(kv, &iv);
        (void)ba_gguf_kv_float(kv, &fv);
        if (ba_gguf_kv_str(kv, &s, &len) == 0)
            for (uint64_t k = 0; k < len; k++) sink ^= (uint8_t)s[k];
        for (uint64_t j = 0; kv->type == BA_GGUF_ARRAY && j < kv->n && j < 64; j++)
            if (ba_gguf_kv_arr_str(kv, j, &s, &len) == 0)
                for (uint64_t k = 0; k < len; k++) sink ^= (uint8_t)s[k];
        if (ba_gguf_find_kv(g, kv->key) == NULL) __builtin_trap();
    }
    for (int i = 0; i < g->n_tensors; i++) {
        const ba_gguf_tensor_t *t = &g->tensors[i];
        if (t->data < data || t->nbytes > size || (size_t)(t->data - data) > size - t->nbytes)
            __builtin_trap();
        for (uint64_t k = 0; k < t->nbytes; k++) sink ^= t->data[k];
    }
    (void)sink;
    ba_gguf_free(g);
    return 0;
}
