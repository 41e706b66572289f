/* libFuzzer target for the safetensors reader and its shard index (llm/safetensors.c): any byte
 * string must parse or fail with an error that names the source; never crash, leak, hang or read
 * outside the buffer (ASan/UBSan). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llm/safetensors.h"

#define FUZZ_NAME "fuzz.safetensors"

static void check_error(const ba_error *err) {
    if (err->code == BA_OK || strncmp(err->msg, FUZZ_NAME ": ", strlen(FUZZ_NAME) + 2) != 0) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ba_error err;
    memset(&err, 0, sizeof err);
    ba_safetensors_t *s = NULL;
    if (ba_safetensors_parse(data, size, FUZZ_NAME, &s, &err) == BA_OK) {
        volatile uint8_t sink = 0;
        for (int i = 0; i < s->n; i++) {
            const ba_st_tensor_t *t = &s->t[i];
            if (t->data < data || t->nbytes > size || (size_t)(t->data - data) > size - t->nbytes)
                __builtin_trap();
            for (uint64_t k = 0; k < t->nbytes; k++) sink ^= t->data[k];
            char out[64];
            (void)ba_hf_to_gguf_name(t->name, out, sizeof out);
        }
        (void)sink;
        ba_safetensors_free(s);
    } else {
        if (s) __builtin_trap();
        check_error(&err);
    }
    char **files = NULL;
    int n = 0;
    memset(&err, 0, sizeof err);
    if (ba_safetensors_parse_index((const char *)data, size, FUZZ_NAME, &files, &n, &err) == BA_OK) {
        if (n < 1) __builtin_trap();
        for (int i = 0; i < n; i++) {
            if (strchr(files[i], '/')) __builtin_trap();
            free(files[i]);
        }
        free(files);
    } else {
        if (files || n) __builtin_trap();
        check_error(&err);
    }
    return 0;
}
