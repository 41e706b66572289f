/* SHA-256 (FIPS 180-4), xoshiro256** RNG, file helpers. */
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha_block(ba_sha256_t *s, const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6],
             h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
    s->h[5] += f;
    s->h[6] += g;
    s->h[7] += h;
}

void ba_sha256_init(ba_sha256_t *s) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->len = 0;
    s->fill = 0;
}

void ba_sha256_update(ba_sha256_t *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->len += n;
    if (s->fill) {
        size_t k = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->buf + s->fill, p, k);
        s->fill += k;
        p += k;
        n -= k;
        if (s->fill < 64) return;
        sha_block(s, s->buf);
        s->fill = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha_block(s, p);
    memcpy(s->buf, p, n);
    s->fill = n;
}

void ba_sha256_final(ba_sha256_t *s, uint8_t out[32]) {
    uint64_t bits = s->len * 8;
    uint8_t pad = 0x80, zero = 0;
    ba_sha256_update(s, &pad, 1);
    while (s->fill != 56) ba_sha256_update(s, &zero, 1);
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    ba_sha256_update(s, lenb, 8);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(s->h[i] >> (24 - 8 * j));
}

static void to_hex(const uint8_t d[32], char hex[65]) {
    static const char *x = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = x[d[i] >> 4];
        hex[2 * i + 1] = x[d[i] & 15];
    }
    hex[64] = '\0';
}

void ba_sha256_hex(const void *data, size_t n, char hex[65]) {
    ba_sha256_t s;
    uint8_t d[32];
    ba_sha256_init(&s);
    ba_sha256_update(&s, data, n);
    ba_sha256_final(&s, d);
    to_hex(d, hex);
}

/* Opens path for reading when it is a regular file. O_NONBLOCK so that a FIFO
 * (which would wait for a writer) or a device is refused at once, never waited on. */
static ba_status open_regular(const char *path, int *fd_out, struct stat *st, ba_error *err) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return ba_error_set(err, BA_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return ba_error_set(err, BA_ERR_INPUT, "%s: not a regular file", path);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fd_out = fd;
    return BA_OK;
}

/* open_regular as a stdio stream. */
static ba_status fopen_regular(const char *path, FILE **f, struct stat *st, ba_error *err) {
    int fd;
    BA_TRY(open_regular(path, &fd, st, err));
    if (!(*f = fdopen(fd, "rb"))) {
        close(fd);
        return ba_error_set(err, BA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    return BA_OK;
}

ba_status ba_sha256_file(const char *path, char hex[65], ba_error *err) {
    struct stat st;
    FILE *f;
    BA_TRY(fopen_regular(path, &f, &st, err));
    ba_sha256_t s;
    ba_sha256_init(&s);
    uint8_t buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) ba_sha256_update(&s, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) return ba_error_set(err, BA_ERR_IO, "%s: read error", path);
    uint8_t d[32];
    ba_sha256_final(&s, d);
    to_hex(d, hex);
    return BA_OK;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void ba_rng_seed(ba_rng_t *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t ba_rng_next(ba_rng_t *r) {
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double ba_rng_uniform(ba_rng_t *r) {
    return (double)(ba_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t ba_rng_below(ba_rng_t *r, uint64_t n) {
    if (n == 0) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n, x;
    do x = ba_rng_next(r);
    while (x >= limit);
    return x % n;
}

double ba_rng_normal(ba_rng_t *r) {
    double u1 = ba_rng_uniform(r), u2 = ba_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

int ba_rng_rademacher(ba_rng_t *r) {
    return (ba_rng_next(r) >> 63) ? 1 : -1;
}

ba_status ba_file_read(const char *path, uint8_t **data, size_t *size, ba_error *err) {
    *data = NULL;
    *size = 0;
    struct stat st;
    FILE *f;
    BA_TRY(fopen_regular(path, &f, &st, err));
    size_t n = (size_t)st.st_size;
    uint8_t *buf = ba_malloc(n + 1, err);
    if (!buf) {
        fclose(f);
        return BA_ERR_NOMEM;
    }
    size_t got = n ? fread(buf, 1, n, f) : 0;
    fclose(f);
    if (got != n) {
        free(buf);
        return ba_error_set(err, BA_ERR_IO, "%s: short read", path);
    }
    buf[n] = 0;
    *data = buf;
    *size = n;
    return BA_OK;
}

size_t ba_utf8_invalid_at(const void *text, size_t n) {
    const uint8_t *s = text;
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len = c < 0x80             ? 1
                     : (c & 0xe0) == 0xc0 ? 2
                     : (c & 0xf0) == 0xe0 ? 3
                     : (c & 0xf8) == 0xf0 ? 4
                                          : 0;
        if (!len || len > n - i) return i;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1fu : len == 3 ? c & 0x0fu : c & 0x07u;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += len;
    }
    return n;
}

ba_status ba_file_map(const char *path, ba_mapped_t *m, ba_error *err) {
    m->data = NULL;
    m->size = 0;
    int fd;
    struct stat st;
    BA_TRY(open_regular(path, &fd, &st, err));
    m->size = (size_t)st.st_size;
    if (m->size == 0) {
        close(fd);
        return BA_OK;
    }
    void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return ba_error_set(err, BA_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    m->data = p;
    return BA_OK;
}

void ba_file_unmap(ba_mapped_t *m) {
    if (m->data) munmap(m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

void ba_path_dirname(const char *path, char *out, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(out, cap, ".");
        return;
    }
    size_t n = (size_t)(slash - path);
    if (n == 0) n = 1;
    snprintf(out, cap, "%.*s", (int)n, path);
}

int ba_utf8_seq_len(const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    unsigned c = s[0], n, min, cp;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0)
        n = 1, min = 0x80, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0)
        n = 2, min = 0x800, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0)
        n = 3, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    for (unsigned i = 1; i <= n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return (int)n + 1;
}

int ba_utf8_valid(const char *s) {
    for (int n; *s; s += n)
        if ((n = ba_utf8_seq_len(s)) == 0) return 0;
    return 1;
}

void ba_sbuf_putn(ba_sbuf_t *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void ba_sbuf_put(ba_sbuf_t *b, const char *s) {
    ba_sbuf_putn(b, s, strlen(s));
}

/* The quoting rule of a CSV field, written through put (a FILE or a ba_sbuf_t). */
static void csv_field(const char *s, void (*put)(void *ctx, const char *p, size_t n), void *ctx) {
    if (!s) s = "";
    if (!strpbrk(s, ",\"\r\n")) {
        put(ctx, s, strlen(s));
        return;
    }
    put(ctx, "\"", 1);
    for (; *s; s++) {
        if (*s == '"') put(ctx, "\"", 1); /* a quote inside is doubled */
        put(ctx, s, 1);
    }
    put(ctx, "\"", 1);
}

static void put_file(void *fp, const char *p, size_t n) {
    fwrite(p, 1, n, fp);
}

static void put_sbuf(void *b, const char *p, size_t n) {
    ba_sbuf_putn(b, p, n);
}

void ba_csv_field(FILE *fp, const char *s) {
    csv_field(s, put_file, fp);
}

void ba_sbuf_csv_field(ba_sbuf_t *b, const char *s) {
    csv_field(s, put_sbuf, b);
}

double ba_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
