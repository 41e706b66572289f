/* Status codes and error values shared by every module.
 * Library functions return a ba_status and fill a ba_error; only the CLI
 * prints ("bitalloc: error: " + msg) and exits with ba_status_exit_code(). */
#ifndef BA_CORE_ERROR_H
#define BA_CORE_ERROR_H

#include <stddef.h>

typedef enum {
    BA_OK = 0,
    BA_ERR_RUNTIME = 1,     /* runtime failure (I/O, out of memory, solver) -> exit 1 */
    BA_ERR_INPUT = 2,       /* bad usage or bad input file -> exit 2 */
    BA_ERR_INFEASIBLE = 3,  /* budget cannot be met -> exit 3 */
    BA_ERR_UNSUPPORTED = 4, /* input uses something not implemented -> exit 2 */
    BA_ERR_NOMEM = 5,       /* allocation failed -> exit 1 */
    BA_ERR_IO = 6,          /* read/write failed -> exit 1 */
} ba_status;

#define BA_ERROR_MSG_MAX 2048

/* msg holds "WHAT: WHY" (e.g. "net.onnx: truncated protobuf at byte 120"). */
typedef struct {
    ba_status code;
    char msg[BA_ERROR_MSG_MAX];
} ba_error;

/* Sets err (when non-NULL) and returns code. printf-style. */
ba_status ba_error_set(ba_error *err, ba_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes the existing message with "WHAT: " (e.g. a file name); returns err->code. */
ba_status ba_error_prefix(ba_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ba_error_clear(ba_error *err);
/* Exit code of SPEC §10 for a status. */
int ba_status_exit_code(ba_status s);

/* Allocation helpers that never return NULL silently: they set err. */
void *ba_malloc(size_t n, ba_error *err);
void *ba_calloc(size_t count, size_t size, ba_error *err);
void *ba_realloc(void *p, size_t n, ba_error *err);
char *ba_strdup(const char *s, ba_error *err);
/* Tunes glibc malloc once per process to keep freed blocks (up to 32 MiB)
 * and the heap top (up to 512 MiB) instead of returning them to the kernel:
 * for code that allocates and frees activation-sized buffers on every pass
 * (the executor, gradients). */
void ba_malloc_keep_freed(void);

#define BA_TRY(expr)                                                                                         \
    do {                                                                                                     \
        ba_status ba_try_st_ = (expr);                                                                       \
        if (ba_try_st_ != BA_OK) return ba_try_st_;                                                          \
    } while (0)

#endif
