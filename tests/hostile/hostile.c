/* See hostile.h. */
#include "tests/hostile/hostile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/util.h"

static ba_hostile_t *push(ba_hostile_set_t *s) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        ba_hostile_t *v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) return NULL;
        s->v = v;
        s->cap = cap;
    }
    ba_hostile_t *h = &s->v[s->n++];
    memset(h, 0, sizeof *h);
    return h;
}

void ba_hostile_free(ba_hostile_set_t *s) {
    free(s->v);
    memset(s, 0, sizeof *s);
}

int ba_hostile_add(ba_hostile_set_t *s, const char *path, const char *what) {
    ba_hostile_t *h = push(s);
    if (!h) return -1;
    snprintf(h->path, sizeof h->path, "%s", path);
    snprintf(h->what, sizeof h->what, "%s", what);
    return 0;
}

static int write_all(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int bad = n && fwrite(data, 1, n, f) != n;
    bad |= fclose(f) != 0;
    return bad ? -1 : 0;
}

int ba_hostile_bytes(const char *dir, const char *name, const void *data, size_t n, const char *what,
                     ba_hostile_set_t *out) {
    ba_hostile_t *h = push(out);
    if (!h) return -1;
    snprintf(h->path, sizeof h->path, "%s/%s", dir, name);
    snprintf(h->what, sizeof h->what, "%s", what);
    return write_all(h->path, data, n);
}

int ba_hostile_mutants(const char *seed, const char *dir, const char *stem, const char *ext, int nmut,
                       uint64_t rng_seed, ba_hostile_set_t *out) {
    uint8_t *d;
    size_t n;
    ba_error err;
    if (ba_file_read(seed, &d, &n, &err) != BA_OK) return -1;
    uint8_t *m = malloc(n + 1);
    if (!m) {
        free(d);
        return -1;
    }
    const size_t cuts[] = {0, 1, n / 4, n / 2, n ? n - 1 : 0};
    int k = 0, rc = 0;
    char name[256], what[128];
    for (size_t i = 0; rc == 0 && i < sizeof cuts / sizeof cuts[0]; i++, k++) {
        snprintf(name, sizeof name, "%s.%d.%s", stem, k, ext);
        snprintf(what, sizeof what, "truncated at %zu of %zu", cuts[i], n);
        rc = ba_hostile_bytes(dir, name, d, cuts[i], what, out);
    }
    ba_rng_t r;
    ba_rng_seed(&r, rng_seed);
    for (int j = 0; rc == 0 && n && j < nmut; j++, k++) {
        memcpy(m, d, n);
        int flips = 1 + (int)ba_rng_below(&r, 16);
        /* Half of the mutants hit the first 256 bytes, where headers and lengths live. */
        size_t span = (j % 2 == 0 && n > 256) ? 256 : n;
        for (int f = 0; f < flips; f++) {
            size_t at = (size_t)ba_rng_below(&r, span);
            static const uint8_t special[] = {0x00, 0xff, 0x7f, 0x80, 0x01};
            m[at] = ba_rng_below(&r, 2) ? special[ba_rng_below(&r, sizeof special)] : (uint8_t)ba_rng_next(&r);
        }
        snprintf(name, sizeof name, "%s.%d.%s", stem, k, ext);
        snprintf(what, sizeof what, "%d bytes overwritten (seed %llu, mutant %d)", flips,
                 (unsigned long long)rng_seed, j);
        rc = ba_hostile_bytes(dir, name, m, n, what, out);
    }
    free(m);
    free(d);
    return rc;
}

static void le16(uint8_t *p, unsigned v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

int ba_hostile_npz(const char *path, const char *member, const void *npy, size_t n) {
    char name[256];
    snprintf(name, sizeof name, "%s.npy", member);
    size_t nl = strlen(name);
    size_t total = 30 + nl + n + 46 + nl + 22;
    uint8_t *z = calloc(1, total);
    if (!z) return -1;
    uint32_t crc = (uint32_t)crc32(0L, npy, (uInt)n);
    uint8_t *p = z;
    le32(p, 0x04034b50u), le16(p + 4, 20), le32(p + 14, crc), le32(p + 18, (uint32_t)n), le32(p + 22, (uint32_t)n);
    le16(p + 26, (unsigned)nl);
    memcpy(p + 30, name, nl);
    memcpy(p + 30 + nl, npy, n);
    size_t cd = 30 + nl + n;
    p = z + cd;
    le32(p, 0x02014b50u), le16(p + 4, 20), le16(p + 6, 20), le32(p + 16, crc), le32(p + 20, (uint32_t)n);
    le32(p + 24, (uint32_t)n), le16(p + 28, (unsigned)nl);
    memcpy(p + 46, name, nl);
    p = z + cd + 46 + nl;
    le32(p, 0x06054b50u), le16(p + 8, 1), le16(p + 10, 1), le32(p + 12, (uint32_t)(46 + nl)), le32(p + 16, (uint32_t)cd);
    int rc = write_all(path, z, total);
    free(z);
    return rc;
}

int ba_hostile_specials(const char *dir, ba_hostile_set_t *out) {
    ba_hostile_t *h;
    int rc = 0;
    if (!(h = push(out))) return -1;
    snprintf(h->path, sizeof h->path, "%s/fifo", dir);
    snprintf(h->what, sizeof h->what, "a FIFO nobody writes");
    rc |= mkfifo(h->path, 0600);
    if (!(h = push(out))) return -1;
    snprintf(h->path, sizeof h->path, "%s/folder", dir);
    snprintf(h->what, sizeof h->what, "a folder");
    rc |= mkdir(h->path, 0755);
    if (!(h = push(out))) return -1;
    snprintf(h->path, sizeof h->path, "%s/loop_a", dir);
    snprintf(h->what, sizeof h->what, "a symlink loop");
    char other[1100];
    snprintf(other, sizeof other, "%s/loop_b", dir);
    rc |= symlink("loop_b", h->path) | symlink("loop_a", other);
    if (!(h = push(out))) return -1;
    snprintf(h->path, sizeof h->path, "%s/dangling", dir);
    snprintf(h->what, sizeof h->what, "a symlink to nothing");
    rc |= symlink("no-such-file", h->path);
    if (!(h = push(out))) return -1;
    snprintf(h->path, sizeof h->path, "%s/to_folder", dir);
    snprintf(h->what, sizeof h->what, "a symlink to a folder");
    rc |= symlink("folder", h->path);
    static const char *const devs[] = {"/dev/zero", "/dev/null"};
    for (int i = 0; i < 2; i++) {
        if (!(h = push(out))) return -1;
        snprintf(h->path, sizeof h->path, "%s", devs[i]);
        snprintf(h->what, sizeof h->what, "a character device");
    }
    return rc ? -1 : 0;
}
