/* Hostile input files made at test time (nothing large is committed): truncations and
 * seeded byte mutations of valid seed files, hand-written malformed texts, a stored-zip
 * .npz builder, and special paths (FIFO, folder, symlink loop, dangling link, devices).
 * tests/test_hostile.c runs every command over them. */
#ifndef BA_TESTS_HOSTILE_H
#define BA_TESTS_HOSTILE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char path[1024];
    char what[128]; /* how it was made: "truncated at 57", "3 bytes flipped (seed 9)" */
} ba_hostile_t;

typedef struct {
    ba_hostile_t *v;
    int n, cap;
} ba_hostile_set_t;

void ba_hostile_free(ba_hostile_set_t *s);

/* Variants of the file seed as DIR/STEM.N.EXT: empty, truncated at 1, 1/4, 1/2, all but
 * one byte, then nmut copies with 1..16 bytes overwritten at random (xoshiro seeded with
 * rng_seed; the same seed makes the same files). Returns 0, or -1 on an I/O error. */
int ba_hostile_mutants(const char *seed, const char *dir, const char *stem, const char *ext, int nmut,
                       uint64_t rng_seed, ba_hostile_set_t *out);
/* Adds an existing path (made by the caller) to the set. */
int ba_hostile_add(ba_hostile_set_t *s, const char *path, const char *what);
/* DIR/NAME with the given bytes (n may cover embedded NULs). */
int ba_hostile_bytes(const char *dir, const char *name, const void *data, size_t n, const char *what,
                     ba_hostile_set_t *out);
/* A .npz (zip, stored members) holding one member NAME.npy with the bytes of npy. */
int ba_hostile_npz(const char *path, const char *member, const void *npy, size_t n);
/* The same with the member deflated and claimed_size written as its uncompressed size
 * (a lie when it differs from n: a decompression bomb or a short buffer). */
int ba_hostile_npz_deflated(const char *path, const char *member, const void *npy, size_t n,
                            uint32_t claimed_size);
/* An ONNX model whose graph nests depth times (node -> graph attribute -> graph -> node ...),
 * written without recursion. */
int ba_hostile_onnx_nested(const char *path, int depth);
/* A small valid ONNX model (Identity of a float[2] initializer "w") whose initializer's data
 * live in an external file at location (relative to the model's folder, as ONNX says). */
int ba_hostile_onnx_external(const char *path, const char *location, int64_t offset, int64_t length);
/* Paths that are not regular files, under dir: a FIFO, a folder, a symlink loop, a dangling
 * link, a link to a folder, and /dev/zero, /dev/null. */
int ba_hostile_specials(const char *dir, ba_hostile_set_t *out);

#endif
