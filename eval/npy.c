/* .npy / .npz reading and .npy writing (NumPy format spec, NEP 1; PKWARE APPNOTE).
 * Inputs are untrusted: every length is checked against the bytes actually
 * present before it is used, and every failure names the file and the fault. */
#include "eval/npy.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

#include "core/outfile.h"
#include "core/util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the .npy reader assumes a little-endian host"
#endif

/* ---- .npy layout: "\x93NUMPY", major, minor, header length (u16 for 1.x,
 * u32 for 2.x/3.x), then the header dict (latin-1, utf-8 for 3.x), then data. */
static const char NPY_MAGIC[] = "\x93NUMPY";
#define NPY_MAGIC_LEN 6
#define NPY_PREAMBLE_V1 (NPY_MAGIC_LEN + 2 + 2)
#define NPY_PREAMBLE_V2 (NPY_MAGIC_LEN + 2 + 4)
#define NPY_HEADER_ALIGN 64 /* numpy.lib.format.ARRAY_ALIGN */
#define NPY_V1_MAX_HEADER 0xFFFF

/* Longest descr string we bother to copy for messages / matching. */
#define NPY_DESCR_MAX 64

typedef struct {
    const char *descr; /* as numpy writes it */
    ba_dtype dt;
} npy_dtype_map;

static const npy_dtype_map NPY_DTYPES[] = {
    {"<f4", BA_DT_F32}, {"<f8", BA_DT_F64}, {"<f2", BA_DT_F16}, {"<i8", BA_DT_I64},
    {"<i4", BA_DT_I32}, {"|i1", BA_DT_I8},  {"|u1", BA_DT_U8},  {"|b1", BA_DT_BOOL},
};
#define NPY_NDTYPES (sizeof NPY_DTYPES / sizeof NPY_DTYPES[0])

static const char *npy_descr_of(ba_dtype dt) {
    for (size_t i = 0; i < NPY_NDTYPES; i++)
        if (NPY_DTYPES[i].dt == dt) return NPY_DTYPES[i].descr;
    return NULL;
}

static uint16_t rd16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) {
    return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32);
}

/* ---- header dict parser: a Python literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * keys in any order, either quote style, free spacing, trailing commas. */
typedef struct {
    const char *p, *end;
    const char *what;
    ba_error *err;
} hdr_cursor;

static void hdr_ws(hdr_cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static ba_status hdr_fail(hdr_cursor *c, const char *why) {
    return ba_error_set(c->err, BA_ERR_INPUT, "%s: unparsable .npy header: %s", c->what, why);
}

static int hdr_eat(hdr_cursor *c, char ch) {
    hdr_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* Quoted string without escapes (numpy never writes any) into out. */
static ba_status hdr_string(hdr_cursor *c, char *out, size_t cap) {
    hdr_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return hdr_fail(c, "expected a quoted string");
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\') return hdr_fail(c, "escape sequences are not supported");
        if (n + 1 >= cap) return hdr_fail(c, "string too long");
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return hdr_fail(c, "unterminated string");
    c->p++;
    out[n] = '\0';
    return BA_OK;
}

static int hdr_word(hdr_cursor *c, const char *w) {
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, w, n) == 0) {
        const char *after = c->p + n;
        if (after == c->end || !((*after >= 'a' && *after <= 'z') || (*after >= 'A' && *after <= 'Z') ||
                                 (*after >= '0' && *after <= '9') || *after == '_')) {
            c->p = after;
            return 1;
        }
    }
    return 0;
}

/* Shape tuple: "()", "(5,)", "(2, 3)", "(2, 3,)"; old Python-2 files may carry "3L". */
static ba_status hdr_shape(hdr_cursor *c, int *ndim, int64_t *shape) {
    if (!hdr_eat(c, '(')) {
        hdr_ws(c);
        if (c->p < c->end && *c->p == '[') return hdr_fail(c, "'shape' is a list, not a tuple");
        return hdr_fail(c, "'shape' is not a tuple");
    }
    int n = 0, comma_after_last = 0;
    for (;;) {
        if (hdr_eat(c, ')')) break;
        hdr_ws(c);
        int neg = 0;
        if (c->p < c->end && *c->p == '-') {
            neg = 1;
            c->p++;
        }
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return hdr_fail(c, "expected an integer in 'shape'");
        uint64_t v = 0;
        int overflow = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            unsigned d = (unsigned)(*c->p++ - '0');
            if (v > ((uint64_t)INT64_MAX - d) / 10)
                overflow = 1;
            else
                v = v * 10 + d;
        }
        if (c->p < c->end && (*c->p == 'L' || *c->p == 'l')) c->p++;
        if (overflow)
            return ba_error_set(c->err, BA_ERR_INPUT,
                                "%s: dimension %d of 'shape' overflows a 64-bit integer", c->what, n);
        if (neg && v != 0)
            return ba_error_set(c->err, BA_ERR_INPUT, "%s: negative dimension -%llu in 'shape'", c->what,
                                (unsigned long long)v);
        if (n >= BA_MAX_DIMS)
            return ba_error_set(c->err, BA_ERR_INPUT, "%s: array has more than %d dimensions", c->what,
                                BA_MAX_DIMS);
        shape[n++] = (int64_t)v;
        comma_after_last = hdr_eat(c, ',');
        if (!comma_after_last) {
            if (!hdr_eat(c, ')')) return hdr_fail(c, "expected ',' or ')' in 'shape'");
            break;
        }
    }
    /* Python: "(3)" is the int 3, not a tuple; numpy rejects it, so do we. */
    if (n == 1 && !comma_after_last) return hdr_fail(c, "'shape' (N) is not a tuple (missing comma)");
    *ndim = n;
    return BA_OK;
}

typedef struct {
    char descr[NPY_DESCR_MAX];
    int fortran;
    int ndim;
    int64_t shape[BA_MAX_DIMS];
} npy_header;

static ba_status hdr_parse(const char *text, size_t len, const char *what, npy_header *h, ba_error *err) {
    hdr_cursor c = {text, text + len, what, err};
    enum { K_DESCR = 1, K_FORTRAN = 2, K_SHAPE = 4, K_ALL = 7 };
    int seen = 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] >= 0x80 || text[i] == '\0')
            return hdr_fail(&c, "non-ASCII or NUL byte (structured dtypes are not supported)");
    if (!hdr_eat(&c, '{')) return ba_error_set(err, BA_ERR_INPUT, "%s: .npy header is not a dict", what);
    for (;;) {
        if (hdr_eat(&c, '}')) break;
        char key[NPY_DESCR_MAX];
        BA_TRY(hdr_string(&c, key, sizeof key));
        if (!hdr_eat(&c, ':')) return hdr_fail(&c, "expected ':' after a key");
        hdr_ws(&c);
        int bit;
        if (strcmp(key, "descr") == 0) {
            bit = K_DESCR;
            if (c.p < c.end && *c.p == '[')
                return ba_error_set(err, BA_ERR_INPUT,
                                    "%s: unsupported dtype: structured (record) arrays are not supported",
                                    what);
            BA_TRY(hdr_string(&c, h->descr, sizeof h->descr));
        } else if (strcmp(key, "fortran_order") == 0) {
            bit = K_FORTRAN;
            if (hdr_word(&c, "True"))
                h->fortran = 1;
            else if (hdr_word(&c, "False"))
                h->fortran = 0;
            else
                return hdr_fail(&c, "'fortran_order' is not True or False");
        } else if (strcmp(key, "shape") == 0) {
            bit = K_SHAPE;
            BA_TRY(hdr_shape(&c, &h->ndim, h->shape));
        } else {
            return ba_error_set(err, BA_ERR_INPUT, "%s: unparsable .npy header: unexpected key '%s'", what,
                                key);
        }
        if (seen & bit)
            return ba_error_set(err, BA_ERR_INPUT, "%s: unparsable .npy header: key '%s' repeated", what,
                                key);
        seen |= bit;
        if (!hdr_eat(&c, ',')) {
            if (!hdr_eat(&c, '}')) return hdr_fail(&c, "expected ',' or '}' after a value");
            break;
        }
    }
    hdr_ws(&c);
    if (c.p != c.end) return hdr_fail(&c, "text after the closing '}'");
    if (seen != K_ALL)
        return ba_error_set(err, BA_ERR_INPUT, "%s: unparsable .npy header: missing key '%s'", what,
                            !(seen & K_DESCR)     ? "descr"
                            : !(seen & K_FORTRAN) ? "fortran_order"
                                                  : "shape");
    return BA_OK;
}

/* Maps a descr to a dtype; 1-byte types carry no byte order, so any order mark is fine. */
static ba_status descr_dtype(const char *descr, const char *what, ba_dtype *dt, ba_error *err) {
    char norm[NPY_DESCR_MAX];
    snprintf(norm, sizeof norm, "%s", descr);
    if (norm[0] == '=') norm[0] = '<'; /* native order on a little-endian host */
    size_t n = strlen(norm);
    if (n == 3 && norm[2] == '1' && (norm[0] == '<' || norm[0] == '>' || norm[0] == '|')) norm[0] = '|';
    for (size_t i = 0; i < NPY_NDTYPES; i++) {
        if (strcmp(norm, NPY_DTYPES[i].descr) == 0) {
            *dt = NPY_DTYPES[i].dt;
            return BA_OK;
        }
    }
    if (norm[0] == '>')
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: big-endian dtype '%s' is not supported (save it little-endian, e.g. "
                            "a.astype(a.dtype.newbyteorder('<')))",
                            what, descr);
    return ba_error_set(err, BA_ERR_INPUT,
                        "%s: unsupported dtype '%s' (supported: float32, float64, float16, int64, int32, "
                        "int8, uint8, bool)",
                        what, descr);
}

/* A parsed .npy preamble and header: where the data starts and what it holds. */
typedef struct {
    ba_dtype dt;
    int ndim;
    int64_t shape[BA_MAX_DIMS];
    size_t data_off; /* preamble + header bytes */
    uint64_t numel, nbytes;
} npy_info;

/* Parses the preamble and the header from the first `size` bytes of a .npy
 * (the whole file, or only its start: the data is not looked at). */
static ba_status npy_info_read(const uint8_t *b, size_t size, const char *what, npy_info *in, ba_error *err) {
    size_t head = size < NPY_MAGIC_LEN ? size : NPY_MAGIC_LEN;
    if (head && memcmp(b, NPY_MAGIC, head) != 0)
        return ba_error_set(err, BA_ERR_INPUT, "%s: bad magic: not a .npy file", what);
    if (size < NPY_MAGIC_LEN + 2)
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: truncated header: %zu bytes, shorter than the .npy preamble", what, size);
    int major = b[NPY_MAGIC_LEN], minor = b[NPY_MAGIC_LEN + 1];
    if (major < 1 || major > 3 || minor != 0)
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: unsupported .npy format version %d.%d (1.0, 2.0, 3.0 are)", what, major,
                            minor);
    size_t pre = major == 1 ? NPY_PREAMBLE_V1 : NPY_PREAMBLE_V2;
    if (size < pre)
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: truncated header: %zu bytes, shorter than the .npy preamble", what, size);
    size_t hlen = major == 1 ? rd16(b + NPY_MAGIC_LEN + 2) : rd32(b + NPY_MAGIC_LEN + 2);
    if (hlen > BA_NPY_MAX_HEADER)
        return ba_error_set(err, BA_ERR_INPUT, "%s: header of %zu bytes exceeds the %d-byte limit", what,
                            hlen, BA_NPY_MAX_HEADER);
    if (hlen > size - pre)
        return ba_error_set(err, BA_ERR_INPUT, "%s: truncated header: declares %zu bytes, %zu present", what,
                            hlen, size - pre);
    npy_header h;
    memset(&h, 0, sizeof h);
    BA_TRY(hdr_parse((const char *)b + pre, hlen, what, &h, err));
    if (h.fortran)
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: fortran_order=True is not supported (save a C-ordered array: "
                            "np.ascontiguousarray)",
                            what);
    ba_dtype dt = BA_DT_UNDEFINED;
    BA_TRY(descr_dtype(h.descr, what, &dt, err));
    size_t isz = ba_dtype_size(dt);
    /* Byte count with overflow checks; it must then equal what the file holds. */
    uint64_t numel = 1;
    for (int i = 0; i < h.ndim; i++) {
        uint64_t d = (uint64_t)h.shape[i];
        if (d && numel > (uint64_t)INT64_MAX / 16 / d) {
            char sb[256];
            return ba_error_set(err, BA_ERR_INPUT, "%s: shape %s overflows", what,
                                ba_shape_str(h.ndim, h.shape, sb, sizeof sb));
        }
        numel *= d;
    }
    in->dt = dt;
    in->ndim = h.ndim;
    memcpy(in->shape, h.shape, sizeof in->shape);
    in->data_off = pre + hlen;
    in->numel = numel;
    in->nbytes = numel * isz;
    return BA_OK;
}

/* Bytes this process can hope to allocate: the machine's physical memory, or
 * less under an address-space or data-segment limit. */
static uint64_t mem_cap(void) {
    uint64_t cap = UINT64_MAX;
    long pages = sysconf(_SC_PHYS_PAGES), pg = sysconf(_SC_PAGESIZE);
    if (pages > 0 && pg > 0) cap = (uint64_t)pages * (uint64_t)pg;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (uint64_t)rl.rlim_cur < cap)
        cap = (uint64_t)rl.rlim_cur;
    if (getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (uint64_t)rl.rlim_cur < cap)
        cap = (uint64_t)rl.rlim_cur;
    return cap;
}

/* The array's tensor, refused (BA_ERR_INPUT naming the source) when it could
 * not fit in memory, rather than failing as "out of memory" half-way. */
static ba_status npy_tensor_new(const npy_info *in, const char *what, ba_tensor_t **out, ba_error *err) {
    char sb[256];
    uint64_t cap = mem_cap();
    if (in->nbytes > cap)
        return ba_error_set(
            err, BA_ERR_INPUT,
            "%s: shape %s of %s needs %llu bytes, more than the %llu bytes of memory available "
            "(refused)",
            what, ba_shape_str(in->ndim, in->shape, sb, sizeof sb), ba_dtype_name(in->dt),
            (unsigned long long)in->nbytes, (unsigned long long)cap);
    *out = ba_tensor_new(in->dt, in->ndim, in->shape, err);
    if (!*out)
        return ba_error_set(err, BA_ERR_INPUT, "%s: cannot allocate %llu bytes for shape %s of %s", what,
                            (unsigned long long)in->nbytes, ba_shape_str(in->ndim, in->shape, sb, sizeof sb),
                            ba_dtype_name(in->dt));
    return BA_OK;
}

/* The tensor contract: bools are 0 or 1. */
static void npy_fix_bools(ba_tensor_t *t) {
    if (t->dtype != BA_DT_BOOL) return;
    uint8_t *p = t->data;
    for (int64_t i = 0; i < t->numel; i++) p[i] = p[i] != 0;
}

ba_status ba_npy_load_mem(const void *buf, size_t size, const char *what, ba_tensor_t **out, ba_error *err) {
    const uint8_t *b = buf;
    *out = NULL;
    if (!what) what = "<memory>";
    npy_info in;
    BA_TRY(npy_info_read(b, size, what, &in, err));
    uint64_t want = in.nbytes;
    size_t have = size - in.data_off;
    if (want != have) {
        char sb[256];
        ba_shape_str(in.ndim, in.shape, sb, sizeof sb);
        if (want > have)
            return ba_error_set(err, BA_ERR_INPUT,
                                "%s: truncated body: shape %s of %s needs %llu bytes, %zu present", what, sb,
                                ba_dtype_name(in.dt), (unsigned long long)want, have);
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: shape/size mismatch: shape %s of %s needs %llu bytes, file holds %zu", what,
                            sb, ba_dtype_name(in.dt), (unsigned long long)want, have);
    }
    ba_tensor_t *t = NULL;
    BA_TRY(npy_tensor_new(&in, what, &t, err));
    if (want) memcpy(t->data, b + in.data_off, (size_t)want);
    npy_fix_bools(t);
    *out = t;
    return BA_OK;
}

ba_status ba_npy_load(const char *path, ba_tensor_t **out, ba_error *err) {
    *out = NULL;
    ba_mapped_t m;
    BA_TRY(ba_file_map(path, &m, err));
    ba_status st = ba_npy_load_mem(m.data, m.size, path, out, err);
    ba_file_unmap(&m);
    return st;
}

ba_status ba_npy_save(const char *path, const ba_tensor_t *t, ba_error *err) {
    const char *descr = npy_descr_of(t->dtype);
    if (!descr)
        return ba_error_set(err, BA_ERR_UNSUPPORTED, "%s: cannot save dtype %s as .npy", path,
                            ba_dtype_name(t->dtype));
    char shape[BA_MAX_DIMS * 24 + 4];
    size_t o = 0;
    o += (size_t)snprintf(shape + o, sizeof shape - o, "(");
    for (int i = 0; i < t->ndim; i++)
        o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%lld%s", i ? " " : "", (long long)t->shape[i],
                              (t->ndim == 1 || i + 1 < t->ndim) ? "," : "");
    snprintf(shape + o, sizeof shape - o, ")");
    /* Header padded with spaces and ended by '\n' so the data starts 64-byte aligned. */
    char hdr[512];
    int dl =
        snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    size_t len = (size_t)dl + 1; /* + '\n' */
    size_t pad = (NPY_HEADER_ALIGN - (NPY_PREAMBLE_V1 + len) % NPY_HEADER_ALIGN) % NPY_HEADER_ALIGN;
    memset(hdr + dl, ' ', pad);
    hdr[dl + pad] = '\n';
    len += pad;
    uint8_t pre[NPY_PREAMBLE_V1];
    memcpy(pre, NPY_MAGIC, NPY_MAGIC_LEN);
    pre[NPY_MAGIC_LEN] = 1;
    pre[NPY_MAGIC_LEN + 1] = 0;
    pre[NPY_MAGIC_LEN + 2] = (uint8_t)(len & 0xff);
    pre[NPY_MAGIC_LEN + 3] = (uint8_t)(len >> 8);
    ba_out_t *out;
    BA_TRY(ba_out_open(path, &out, err));
    FILE *f = ba_out_stream(out);
    size_t nb = ba_tensor_nbytes(t);
    fwrite(pre, 1, sizeof pre, f);
    fwrite(hdr, 1, len, f);
    if (nb) fwrite(t->data, 1, nb, f);
    return ba_out_commit(out, err); /* collects any write error */
}

/* ---- .npz: a zip archive. The central directory is the source of truth for
 * sizes, CRCs and offsets (the local header may defer them to a data
 * descriptor); zip64 extra fields replace 0xFFFFFFFF values as numpy's
 * force_zip64 writes them. */
#define ZIP_LOCAL_SIG 0x04034b50u
#define ZIP_CENTRAL_SIG 0x02014b50u
#define ZIP_EOCD_SIG 0x06054b50u
#define ZIP64_LOCATOR_SIG 0x07064b50u
#define ZIP64_EOCD_SIG 0x06064b50u
#define ZIP_LOCAL_LEN 30
#define ZIP_CENTRAL_LEN 46
#define ZIP_EOCD_LEN 22
#define ZIP64_LOCATOR_LEN 20
#define ZIP64_EOCD_LEN 56
#define ZIP_MAX_COMMENT 0xFFFF
#define ZIP64_EXTRA_ID 0x0001
#define ZIP_FLAG_ENCRYPTED 0x0001
#define ZIP_METHOD_STORED 0
#define ZIP_METHOD_DEFLATED 8
#define ZIP_U32_MAX 0xFFFFFFFFu
#define ZIP_U16_MAX 0xFFFFu
/* Deflate cannot expand more than 1032:1 (zlib FAQ), so a larger declared
 * size is a lie (or a bomb); refuse it before allocating. */
#define DEFLATE_MAX_RATIO 1032
#define DEFLATE_SLACK 1024
#define ZLIB_CHUNK ((size_t)1 << 30) /* z_stream counts are 32-bit */

typedef struct {
    char name[BA_NPZ_MAX_NAME + 1];
    uint16_t method, flags;
    uint32_t crc;
    uint64_t csize, usize, offset;
} zip_entry;

static ba_status zip_fail(ba_error *err, const char *what, const char *why) {
    return ba_error_set(err, BA_ERR_INPUT, "%s: %s", what, why);
}

/* Replaces 0xFFFFFFFF fields by the zip64 extra field's values, in APPNOTE order. */
static ba_status zip64_extra(const uint8_t *x, size_t xlen, zip_entry *e, const char *what, ba_error *err) {
    int need_u = e->usize == ZIP_U32_MAX, need_c = e->csize == ZIP_U32_MAX, need_o = e->offset == ZIP_U32_MAX;
    size_t i = 0;
    while (i + 4 <= xlen) {
        uint16_t id = rd16(x + i), len = rd16(x + i + 2);
        if (len > xlen - i - 4) return zip_fail(err, what, "bad extra field in the central directory");
        if (id == ZIP64_EXTRA_ID) {
            const uint8_t *p = x + i + 4, *end = p + len;
            if (need_u) {
                if (end - p < 8) return zip_fail(err, what, "zip64 extra field too short");
                e->usize = rd64(p);
                p += 8;
            }
            if (need_c) {
                if (end - p < 8) return zip_fail(err, what, "zip64 extra field too short");
                e->csize = rd64(p);
                p += 8;
            }
            if (need_o) {
                if (end - p < 8) return zip_fail(err, what, "zip64 extra field too short");
                e->offset = rd64(p);
            }
            return BA_OK;
        }
        i += 4 + (size_t)len;
    }
    if (need_u || need_c || need_o) return zip_fail(err, what, "0xFFFFFFFF size without a zip64 extra field");
    return BA_OK;
}

/* A raw-deflate stream read in pieces of exactly the size asked for. */
typedef struct {
    z_stream zs;
    uint64_t in_left; /* compressed bytes not yet handed to zlib */
    int ended;        /* Z_STREAM_END seen */
} zin;

static ba_status zin_init(zin *z, const uint8_t *in, uint64_t csize, const char *what, ba_error *err) {
    memset(z, 0, sizeof *z);
    if (inflateInit2(&z->zs, -MAX_WBITS) != Z_OK)
        return ba_error_set(err, BA_ERR_RUNTIME, "%s: zlib init failed", what);
    z->zs.next_in = (Bytef *)(uintptr_t)in;
    z->in_left = csize;
    return BA_OK;
}

static void zin_end(zin *z) {
    inflateEnd(&z->zs);
}

/* Inflates exactly n bytes into out (n == 0 with `at_end`: checks that the
 * stream ends here and holds nothing more). */
static ba_status zin_read(zin *z, uint8_t *out, uint64_t n, int at_end, const char *what, ba_error *err) {
    uint8_t spare;
    for (;;) {
        if (z->ended) {
            if (n) return zip_fail(err, what, "deflated data is shorter than its declared size");
            return BA_OK;
        }
        if (!n && !at_end) return BA_OK;
        if (z->zs.avail_in == 0 && z->in_left) {
            size_t k = z->in_left < ZLIB_CHUNK ? (size_t)z->in_left : ZLIB_CHUNK;
            z->zs.avail_in = (uInt)k;
            z->in_left -= k;
        }
        size_t k = n < ZLIB_CHUNK ? (size_t)n : ZLIB_CHUNK;
        z->zs.next_out = n ? out : &spare;
        z->zs.avail_out = n ? (uInt)k : 1;
        uInt ai = z->zs.avail_in, ao = z->zs.avail_out;
        int rc = inflate(&z->zs, Z_NO_FLUSH);
        size_t made = ao - z->zs.avail_out;
        if (!n && made) return zip_fail(err, what, "deflated data is larger than its declared size");
        if (made) {
            out += made;
            n -= made;
        }
        if (rc == Z_STREAM_END) {
            z->ended = 1;
            continue;
        }
        if (rc == Z_BUF_ERROR && ai == z->zs.avail_in && ao == z->zs.avail_out) {
            if (z->zs.avail_in == 0 && z->in_left == 0) return zip_fail(err, what, "truncated deflate data");
            return zip_fail(err, what, "corrupt deflate data (no progress)");
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return ba_error_set(err, BA_ERR_INPUT, "%s: corrupt deflate data (%s)", what,
                                z->zs.msg ? z->zs.msg : "zlib error");
    }
}

static uint32_t crc32_more(uint32_t crc, const uint8_t *p, uint64_t n) {
    uLong c = crc;
    while (n) {
        size_t k = n < ZLIB_CHUNK ? (size_t)n : ZLIB_CHUNK;
        c = crc32(c, p, (uInt)k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

static uint32_t crc32_big(const uint8_t *p, uint64_t n) {
    return crc32_more((uint32_t)crc32(0L, Z_NULL, 0), p, n);
}

/* Inflates a deflated .npy member straight into its tensor: the preamble and
 * header come first, so the array's size is known (and checked against the
 * member's declared size and the memory there is) before anything is
 * allocated, and the data is never held twice. */
static ba_status inflate_npy(const uint8_t *data, const zip_entry *e, const char *what, ba_tensor_t **out,
                             ba_error *err) {
    *out = NULL;
    zin z;
    BA_TRY(zin_init(&z, data, e->csize, what, err));
    uint8_t head[NPY_PREAMBLE_V2 + BA_NPY_MAX_HEADER];
    size_t hn = e->usize < sizeof head ? (size_t)e->usize : sizeof head;
    npy_info in;
    ba_tensor_t *t = NULL;
    ba_status st = zin_read(&z, head, hn, 0, what, err);
    if (st == BA_OK) st = npy_info_read(head, hn, what, &in, err);
    if (st == BA_OK && in.nbytes != e->usize - in.data_off) {
        char sb[256];
        st = ba_error_set(err, BA_ERR_INPUT,
                          "%s: shape/size mismatch: shape %s of %s needs %llu bytes, the member holds %llu",
                          what, ba_shape_str(in.ndim, in.shape, sb, sizeof sb), ba_dtype_name(in.dt),
                          (unsigned long long)in.nbytes, (unsigned long long)(e->usize - in.data_off));
    }
    if (st == BA_OK) st = npy_tensor_new(&in, what, &t, err);
    if (st == BA_OK) {
        size_t got = hn - in.data_off; /* data bytes that came with the header */
        if (got) memcpy(t->data, head + in.data_off, got);
        st = zin_read(&z, (uint8_t *)t->data + got, in.nbytes - got, 0, what, err);
    }
    if (st == BA_OK) st = zin_read(&z, NULL, 0, 1, what, err);
    zin_end(&z);
    if (st == BA_OK && crc32_more(crc32_big(head, in.data_off), t->data, in.nbytes) != e->crc)
        st = zip_fail(err, what, "CRC-32 mismatch (corrupt member)");
    if (st != BA_OK) {
        ba_tensor_unref(t);
        return st;
    }
    npy_fix_bools(t);
    *out = t;
    return BA_OK;
}

/* Finds the central directory: (offset, size, entry count). */
static ba_status zip_directory(const uint8_t *b, size_t size, const char *what, uint64_t *cd_off,
                               uint64_t *cd_size, uint64_t *count, ba_error *err) {
    if (size < ZIP_EOCD_LEN) return zip_fail(err, what, "truncated or not a zip archive (too short)");
    size_t lo = size - ZIP_EOCD_LEN > ZIP_MAX_COMMENT ? size - ZIP_EOCD_LEN - ZIP_MAX_COMMENT : 0;
    size_t pos = size - ZIP_EOCD_LEN + 1;
    int found = 0;
    while (pos-- > lo) {
        if (rd32(b + pos) == ZIP_EOCD_SIG && pos + ZIP_EOCD_LEN + rd16(b + pos + 20) <= size) {
            found = 1;
            break;
        }
    }
    if (!found) return zip_fail(err, what, "truncated or not a zip archive (no end of central directory)");
    const uint8_t *e = b + pos;
    if (rd16(e + 4) != 0 || rd16(e + 6) != 0)
        return zip_fail(err, what, "multi-disk zip archives are not supported");
    *count = rd16(e + 10);
    *cd_size = rd32(e + 12);
    *cd_off = rd32(e + 16);
    if (*count == ZIP_U16_MAX || *cd_size == ZIP_U32_MAX || *cd_off == ZIP_U32_MAX) {
        if (pos < ZIP64_LOCATOR_LEN || rd32(b + pos - ZIP64_LOCATOR_LEN) != ZIP64_LOCATOR_SIG)
            return zip_fail(err, what, "zip64 end of central directory locator missing");
        uint64_t off = rd64(b + pos - ZIP64_LOCATOR_LEN + 8);
        if (size < ZIP64_EOCD_LEN || off > size - ZIP64_EOCD_LEN || rd32(b + off) != ZIP64_EOCD_SIG)
            return zip_fail(err, what, "bad zip64 end of central directory record");
        const uint8_t *z = b + off;
        *count = rd64(z + 32);
        *cd_size = rd64(z + 40);
        *cd_off = rd64(z + 48);
    }
    if (*cd_off > size || *cd_size > size - *cd_off)
        return zip_fail(err, what, "central directory lies outside the file (truncated archive?)");
    return BA_OK;
}

void ba_npz_free(ba_npz_t *z) {
    if (!z) return;
    for (int i = 0; i < z->count; i++) {
        free(z->members[i].name);
        ba_tensor_unref(z->members[i].tensor);
    }
    free(z->members);
    free(z);
}

ba_tensor_t *ba_npz_get(const ba_npz_t *z, const char *name) {
    for (int i = 0; z && i < z->count; i++)
        if (strcmp(z->members[i].name, name) == 0) return z->members[i].tensor;
    return NULL;
}

/* Reads one central-directory entry at *pos and advances it. */
static ba_status zip_central(const uint8_t *b, size_t cd_end, size_t *pos, zip_entry *e, const char *what,
                             ba_error *err) {
    size_t p = *pos;
    if (cd_end - p < ZIP_CENTRAL_LEN || rd32(b + p) != ZIP_CENTRAL_SIG)
        return zip_fail(err, what, "bad central directory entry");
    const uint8_t *c = b + p;
    e->flags = rd16(c + 8);
    e->method = rd16(c + 10);
    e->crc = rd32(c + 16);
    e->csize = rd32(c + 20);
    e->usize = rd32(c + 24);
    size_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
    e->offset = rd32(c + 42);
    if (nlen + xlen + clen > cd_end - p - ZIP_CENTRAL_LEN)
        return zip_fail(err, what, "truncated central directory");
    if (nlen > BA_NPZ_MAX_NAME)
        return ba_error_set(err, BA_ERR_INPUT, "%s: member name of %zu bytes is too long (limit %d)", what,
                            nlen, BA_NPZ_MAX_NAME);
    memcpy(e->name, c + ZIP_CENTRAL_LEN, nlen);
    e->name[nlen] = '\0';
    if (strlen(e->name) != nlen) return zip_fail(err, what, "member name contains a NUL byte");
    BA_TRY(zip64_extra(c + ZIP_CENTRAL_LEN + nlen, xlen, e, what, err));
    *pos = p + ZIP_CENTRAL_LEN + nlen + xlen + clen;
    return BA_OK;
}

/* Locates, checks and (if deflated) inflates one member's .npy bytes. */
static ba_status zip_member(const uint8_t *b, size_t size, const zip_entry *e, const char *mwhat,
                            ba_tensor_t **out, ba_error *err) {
    if (e->flags & ZIP_FLAG_ENCRYPTED) return zip_fail(err, mwhat, "encrypted members are not supported");
    if (e->method != ZIP_METHOD_STORED && e->method != ZIP_METHOD_DEFLATED)
        return ba_error_set(err, BA_ERR_INPUT,
                            "%s: unsupported compression method %u (stored and deflate are)", mwhat,
                            e->method);
    if (e->offset > size || size - e->offset < ZIP_LOCAL_LEN || rd32(b + e->offset) != ZIP_LOCAL_SIG)
        return zip_fail(err, mwhat, "bad local file header");
    const uint8_t *l = b + e->offset;
    size_t nlen = rd16(l + 26), xlen = rd16(l + 28);
    size_t name_at = (size_t)e->offset + ZIP_LOCAL_LEN;
    if (nlen + xlen > size - name_at) return zip_fail(err, mwhat, "bad local file header (truncated)");
    if (nlen != strlen(e->name) || memcmp(b + name_at, e->name, nlen) != 0)
        return zip_fail(err, mwhat, "bad local file header (name differs from the central directory)");
    if (rd16(l + 8) != e->method) return zip_fail(err, mwhat, "bad local file header (method differs)");
    size_t data_at = name_at + nlen + xlen;
    if (e->csize > size - data_at) return zip_fail(err, mwhat, "truncated member data");
    const uint8_t *data = b + data_at;
    if (e->method == ZIP_METHOD_STORED) {
        if (e->csize != e->usize) return zip_fail(err, mwhat, "stored member with differing sizes");
        if (crc32_big(data, e->usize) != e->crc)
            return zip_fail(err, mwhat, "CRC-32 mismatch (corrupt member)");
        return ba_npy_load_mem(data, (size_t)e->usize, mwhat, out, err);
    }
    if (e->usize / DEFLATE_MAX_RATIO > e->csize + DEFLATE_SLACK)
        return zip_fail(err, mwhat,
                        "declared uncompressed size is impossible for deflate (corrupt or a zip bomb)");
    return inflate_npy(data, e, mwhat, out, err);
}

/* Before any member is inflated: every member must be one of names (when
 * given), so that an array nobody asked for costs nothing to refuse. */
static ba_status npz_check_names(const uint8_t *b, size_t cd_off, size_t cd_end, uint64_t count, zip_entry *e,
                                 const char *what, const char *const *names, int nnames, ba_error *err) {
    size_t pos = cd_off;
    for (uint64_t i = 0; i < count; i++) {
        BA_TRY(zip_central(b, cd_end, &pos, e, what, err));
        size_t nl = strlen(e->name);
        if (nl < 4 || strcmp(e->name + nl - 4, ".npy") != 0) continue; /* the main pass says why */
        int found = 0;
        for (int k = 0; k < nnames && !found; k++)
            found = strlen(names[k]) == nl - 4 && memcmp(names[k], e->name, nl - 4) == 0;
        if (!found)
            return ba_error_set(err, BA_ERR_INPUT,
                                "%s: member '%s': not needed: the model has no input named '%.*s'", what,
                                e->name, (int)(nl - 4), e->name);
    }
    return BA_OK;
}

ba_status ba_npz_load_mem(const void *buf, size_t size, const char *what, ba_npz_t **out, ba_error *err) {
    return ba_npz_load_mem_only(buf, size, what, NULL, 0, out, err);
}

ba_status ba_npz_load_mem_only(const void *buf, size_t size, const char *what, const char *const *names,
                               int nnames, ba_npz_t **out, ba_error *err) {
    const uint8_t *b = buf;
    *out = NULL;
    if (!what) what = "<memory>";
    uint64_t cd_off = 0, cd_size = 0, count = 0;
    BA_TRY(zip_directory(b, size, what, &cd_off, &cd_size, &count, err));
    ba_npz_t *z = ba_calloc(1, sizeof *z, err);
    if (!z) return BA_ERR_NOMEM;
    size_t pos = (size_t)cd_off, cd_end = (size_t)(cd_off + cd_size);
    int cap = 0;
    ba_status st = BA_OK;
    zip_entry *e = ba_malloc(sizeof *e, err);
    if (!e) st = BA_ERR_NOMEM;
    if (st == BA_OK && names) st = npz_check_names(b, pos, cd_end, count, e, what, names, nnames, err);
    for (uint64_t i = 0; st == BA_OK && i < count; i++) {
        st = zip_central(b, cd_end, &pos, e, what, err);
        if (st != BA_OK) break;
        char mwhat[BA_NPZ_MAX_NAME + 512];
        snprintf(mwhat, sizeof mwhat, "%s: member '%s'", what, e->name);
        size_t nl = strlen(e->name);
        if (nl < 4 || strcmp(e->name + nl - 4, ".npy") != 0) {
            st = zip_fail(err, mwhat, "not a .npy member (an .npz holds only .npy arrays)");
            break;
        }
        char *name = ba_malloc(nl - 3, err);
        if (!name) {
            st = BA_ERR_NOMEM;
            break;
        }
        memcpy(name, e->name, nl - 4);
        name[nl - 4] = '\0';
        if (ba_npz_get(z, name)) {
            free(name);
            st = zip_fail(err, mwhat, "duplicate member name");
            break;
        }
        if (z->count == cap) {
            if (cap > INT_MAX / 2) {
                free(name);
                st = zip_fail(err, what, "too many members");
                break;
            }
            int ncap = cap ? cap * 2 : 4;
            ba_npz_member_t *m = ba_realloc(z->members, (size_t)ncap * sizeof *m, err);
            if (!m) {
                free(name);
                st = BA_ERR_NOMEM;
                break;
            }
            z->members = m;
            cap = ncap;
        }
        ba_tensor_t *t = NULL;
        st = zip_member(b, size, e, mwhat, &t, err);
        if (st != BA_OK) {
            free(name);
            break;
        }
        z->members[z->count].name = name;
        z->members[z->count].tensor = t;
        z->count++;
    }
    free(e);
    if (st == BA_OK && z->count == 0) st = zip_fail(err, what, "the .npz holds no arrays");
    if (st != BA_OK) {
        ba_npz_free(z);
        return st;
    }
    *out = z;
    return BA_OK;
}

ba_status ba_npz_load(const char *path, ba_npz_t **out, ba_error *err) {
    *out = NULL;
    ba_mapped_t m;
    BA_TRY(ba_file_map(path, &m, err));
    ba_status st = ba_npz_load_mem(m.data, m.size, path, out, err);
    ba_file_unmap(&m);
    return st;
}
