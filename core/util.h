/* Small shared services: SHA-256, a seeded RNG, whole-file reads, mmap, UTF-8 checks, CSV fields. */
#ifndef BA_CORE_UTIL_H
#define BA_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/error.h"

/* ---- SHA-256 (FIPS 180-4) ---- */
typedef struct {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t fill;
} ba_sha256_t;
void ba_sha256_init(ba_sha256_t *s);
void ba_sha256_update(ba_sha256_t *s, const void *data, size_t n);
void ba_sha256_final(ba_sha256_t *s, uint8_t out[32]);
/* Lower-case hex digest (65 bytes with NUL). */
void ba_sha256_hex(const void *data, size_t n, char hex[65]);
ba_status ba_sha256_file(const char *path, char hex[65], ba_error *err);

/* ---- RNG: xoshiro256** seeded through splitmix64; state is plain data so a
 * study can store it and resume the exact same stream. ---- */
typedef struct {
    uint64_t s[4];
} ba_rng_t;
void ba_rng_seed(ba_rng_t *r, uint64_t seed);
uint64_t ba_rng_next(ba_rng_t *r);
double ba_rng_uniform(ba_rng_t *r);             /* [0, 1) */
uint64_t ba_rng_below(ba_rng_t *r, uint64_t n); /* [0, n), unbiased */
double ba_rng_normal(ba_rng_t *r);              /* N(0,1), Box-Muller */
int ba_rng_rademacher(ba_rng_t *r);             /* -1 or +1 */

/* ---- files ---- */
/* Reads a whole file (adds a NUL after the data). Caller frees *data. */
ba_status ba_file_read(const char *path, uint8_t **data, size_t *size, ba_error *err);
/* Offset of the first byte of text[0..n) that is not well-formed UTF-8
 * (RFC 3629: no overlongs, surrogates or code points above U+10FFFF), or n. */
size_t ba_utf8_invalid_at(const void *text, size_t n);
/* Read-only mapping of a whole file; ba_file_unmap releases it. */
typedef struct {
    void *data;
    size_t size;
} ba_mapped_t;
ba_status ba_file_map(const char *path, ba_mapped_t *m, ba_error *err);
void ba_file_unmap(ba_mapped_t *m);
/* Directory part of path ("." when none) into out. */
void ba_path_dirname(const char *path, char *out, size_t cap);
/* ---- UTF-8 ---- */
/* Length (1..4) of the well-formed UTF-8 sequence at s, 0 when s starts an invalid one (an
 * overlong form, a surrogate, a code point above U+10FFFF, a bad or missing continuation). */
int ba_utf8_seq_len(const char *s);
/* 1 when the NUL-terminated s is well-formed UTF-8. */
int ba_utf8_valid(const char *s);
/* ---- growable text ---- */
/* Zero-initialise; s stays NUL-terminated. A failed allocation sets oom and
 * drops everything appended after it (the caller reports it once at the end). */
typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} ba_sbuf_t;
void ba_sbuf_putn(ba_sbuf_t *b, const char *s, size_t n);
void ba_sbuf_put(ba_sbuf_t *b, const char *s);

/* ---- CSV (RFC 4180) ---- */
/* One CSV field, quoted when it holds a comma, quote, CR or LF (NULL: empty). */
void ba_csv_field(FILE *fp, const char *s);
/* The same field appended to b. */
void ba_sbuf_csv_field(ba_sbuf_t *b, const char *s);
/* Monotonic seconds. */
double ba_now(void);

#endif
