/* Error values: formatting, prefixing, exit codes and checked allocation. */
#include "core/error.h"

#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ba_status ba_error_set(ba_error *err, ba_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

ba_status ba_error_prefix(ba_error *err, const char *fmt, ...) {
    if (!err) return BA_ERR_RUNTIME;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[BA_ERROR_MSG_MAX];
    memcpy(old, err->msg, sizeof old);
    size_t pl = strlen(prefix);
    if (pl > sizeof err->msg - 3) pl = sizeof err->msg - 3;
    memcpy(err->msg, prefix, pl);
    memcpy(err->msg + pl, ": ", 2);
    size_t rest = sizeof err->msg - pl - 3, ol = strlen(old);
    if (ol > rest) ol = rest;
    memcpy(err->msg + pl + 2, old, ol);
    err->msg[pl + 2 + ol] = '\0';
    return err->code;
}

void ba_error_clear(ba_error *err) {
    if (err) {
        err->code = BA_OK;
        err->msg[0] = '\0';
    }
}

int ba_status_exit_code(ba_status s) {
    switch (s) {
    case BA_OK: return 0;
    case BA_ERR_INPUT:
    case BA_ERR_UNSUPPORTED: return 2;
    case BA_ERR_INFEASIBLE: return 3;
    default: return 1;
    }
}

void *ba_malloc(size_t n, ba_error *err) {
    void *p = malloc(n ? n : 1);
    if (!p) ba_error_set(err, BA_ERR_NOMEM, "out of memory: allocating %zu bytes", n);
    return p;
}

void *ba_calloc(size_t count, size_t size, ba_error *err) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) ba_error_set(err, BA_ERR_NOMEM, "out of memory: allocating %zu x %zu bytes", count, size);
    return p;
}

void *ba_realloc(void *p, size_t n, ba_error *err) {
    void *q = realloc(p, n ? n : 1);
    if (!q) ba_error_set(err, BA_ERR_NOMEM, "out of memory: reallocating %zu bytes", n);
    return q;
}

char *ba_strdup(const char *s, ba_error *err) {
    size_t n = strlen(s) + 1;
    char *p = ba_malloc(n, err);
    if (p) memcpy(p, s, n);
    return p;
}

/* glibc hands blocks above its mmap threshold back to the kernel on free and
 * trims the heap top above its trim threshold, so each activation-sized
 * block came back as fresh pages, faulted and zeroed one by one: 40% of an
 * HVP-bound ViT run, 7% of a batch-1 forward pass of a small CNN (perf).
 * Keeping freed memory in the process up to these sizes removes that. */
#define MALLOC_MMAP_THRESHOLD (32 * 1024 * 1024) /* glibc's maximum for this setting */
#define MALLOC_TRIM_THRESHOLD (512 * 1024 * 1024)
static pthread_once_t malloc_once = PTHREAD_ONCE_INIT;
static void malloc_tune(void) {
    mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD);
}

void ba_malloc_keep_freed(void) {
    pthread_once(&malloc_once, malloc_tune);
}
