/* libFuzzer target for the .npy and .npz readers (eval/npy.c): any byte string
 * must load or fail with an error that names the source; never crash, leak,
 * hang or read outside the buffer (ASan/UBSan build). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "eval/npy.h"

#define FUZZ_NAME "fuzz.bin"

/* An error must carry a message naming the source: "fuzz.bin: WHY". */
static void check_error(const ba_error *err) {
    if (strncmp(err->msg, FUZZ_NAME ": ", strlen(FUZZ_NAME) + 2) != 0 || err->code == BA_OK) __builtin_trap();
}

static void check_tensor(const ba_tensor_t *t) {
    if (!t || t->ndim < 0 || t->ndim > BA_MAX_DIMS) __builtin_trap();
    if (ba_shape_numel(t->ndim, t->shape) != t->numel) __builtin_trap();
    /* Touch every byte: ASan reports any tensor smaller than it claims. */
    volatile uint8_t sink = 0;
    const uint8_t *p = t->data;
    for (size_t i = 0; i < ba_tensor_nbytes(t); i++) sink ^= p[i];
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ba_error err;
    memset(&err, 0, sizeof err);
    ba_tensor_t *t = NULL;
    if (ba_npy_load_mem(data, size, FUZZ_NAME, &t, &err) == BA_OK) {
        check_tensor(t);
        ba_tensor_unref(t);
    } else {
        if (t) __builtin_trap();
        check_error(&err);
    }
    ba_npz_t *z = NULL;
    memset(&err, 0, sizeof err);
    if (ba_npz_load_mem(data, size, FUZZ_NAME, &z, &err) == BA_OK) {
        if (z->count < 1) __builtin_trap();
        for (int i = 0; i < z->count; i++) check_tensor(z->members[i].tensor);
        ba_npz_free(z);
    } else {
        if (z) __builtin_trap();
        check_error(&err);
    }
    /* With the members a model wants: only those may load. */
    static const char *const wanted[] = {"x", "input"};
    z = NULL;
    memset(&err, 0, sizeof err);
    if (ba_npz_load_mem_only(data, size, FUZZ_NAME, wanted, 2, &z, &err) == BA_OK) {
        for (int i = 0; i < z->count; i++) {
            if (strcmp(z->members[i].name, "x") != 0 && strcmp(z->members[i].name, "input") != 0)
                __builtin_trap();
            check_tensor(z->members[i].tensor);
        }
        ba_npz_free(z);
    } else {
        if (z) __builtin_trap();
        check_error(&err);
    }
    return 0;
}
