#include "llm/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/ggml_types.h"
#include "core/outfile.h"
#include "core/tensor.h"

static const size_t TYPE_SIZE[BA_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

size_t ba_gguf_type_size(uint32_t type) {
    return type < BA_GGUF_NTYPES ? TYPE_SIZE[type] : 0;
}

/* ---- bounds-checked cursor ---- */
typedef struct {
    const uint8_t *p;
    size_t size, pos;
    const char *name;
    ba_error *err;
} cur_t;

static ba_status cur_fail(cur_t *c, const char *field, const char *why) {
    return ba_error_set(c->err, BA_ERR_INPUT, "%s: %s: %s (at byte %zu)", c->name, field, why, c->pos);
}

static ba_status cur_bytes(cur_t *c, size_t n, const uint8_t **out, const char *field) {
    *out = NULL;
    if (n > c->size - c->pos) return cur_fail(c, field, "truncated file");
    *out = c->p + c->pos;
    c->pos += n;
    return BA_OK;
}

static ba_status cur_u32(cur_t *c, uint32_t *v, const char *field) {
    const uint8_t *b = NULL;
    BA_TRY(cur_bytes(c, 4, &b, field));
    memcpy(v, b, 4);
    return BA_OK;
}

static ba_status cur_u64(cur_t *c, uint64_t *v, const char *field) {
    const uint8_t *b = NULL;
    BA_TRY(cur_bytes(c, 8, &b, field));
    memcpy(v, b, 8);
    return BA_OK;
}

static ba_status cur_str(cur_t *c, const char **s, uint64_t *len, const char *field) {
    BA_TRY(cur_u64(c, len, field));
    if (*len > c->size - c->pos) return cur_fail(c, field, "string length runs past the end of the file");
    *s = (const char *)c->p + c->pos;
    c->pos += (size_t)*len;
    return BA_OK;
}

void ba_gguf_free(ba_gguf_t *g) {
    if (!g) return;
    for (int i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str_off);
    }
    free(g->kv);
    for (int i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    ba_file_unmap(&g->map);
    if (g->temporary && g->path) unlink(g->path);
    free(g->path);
    free(g);
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The first name that occurs twice among names[0..n), or NULL. */
static ba_status find_duplicate(char **names, int n, const char **dup, ba_error *err) {
    *dup = NULL;
    if (n < 2) return BA_OK;
    char **s = ba_malloc((size_t)n * sizeof *s, err);
    if (!s) return err->code;
    memcpy(s, names, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_str_ptr);
    for (int i = 1; i < n && !*dup; i++)
        if (strcmp(s[i - 1], s[i]) == 0) *dup = s[i];
    free(s);
    return BA_OK;
}

static ba_status parse_value(cur_t *c, ba_gguf_kv_t *kv, const char *field) {
    if (kv->type >= BA_GGUF_NTYPES) {
        char why[64];
        snprintf(why, sizeof why, "unknown value type %u", kv->type);
        return cur_fail(c, field, why);
    }
    size_t start;
    if (kv->type == BA_GGUF_STRING) {
        start = c->pos;
        const char *s;
        uint64_t len;
        BA_TRY(cur_str(c, &s, &len, field));
    } else if (kv->type == BA_GGUF_ARRAY) {
        BA_TRY(cur_u32(c, &kv->arr_type, field));
        BA_TRY(cur_u64(c, &kv->n, field));
        if (kv->arr_type >= BA_GGUF_NTYPES || kv->arr_type == BA_GGUF_ARRAY) {
            char why[64];
            snprintf(why, sizeof why, "array element type %u not supported", kv->arr_type);
            return cur_fail(c, field, why);
        }
        start = c->pos;
        if (kv->arr_type == BA_GGUF_STRING) {
            /* Each element takes at least 8 bytes, which bounds the offsets array by the file. */
            if (kv->n > (c->size - c->pos) / 8)
                return cur_fail(c, field, "array count runs past the end of the file");
            kv->str_off = ba_malloc((size_t)(kv->n ? kv->n : 1) * sizeof *kv->str_off, c->err);
            if (!kv->str_off) return c->err->code;
            for (uint64_t i = 0; i < kv->n; i++) {
                kv->str_off[i] = c->pos - start;
                const char *s;
                uint64_t len;
                BA_TRY(cur_str(c, &s, &len, field));
            }
        } else {
            size_t es = TYPE_SIZE[kv->arr_type];
            if (kv->n > (c->size - c->pos) / es)
                return cur_fail(c, field, "array count runs past the end of the file");
            c->pos += (size_t)kv->n * es;
        }
    } else {
        start = c->pos;
        const uint8_t *b = NULL;
        BA_TRY(cur_bytes(c, TYPE_SIZE[kv->type], &b, field));
        if (kv->type == BA_GGUF_BOOL && *b > 1) return cur_fail(c, field, "bool value is neither 0 nor 1");
    }
    kv->val = c->p + start;
    kv->val_size = c->pos - start;
    return BA_OK;
}

ba_status ba_gguf_parse(const uint8_t *data, size_t size, const char *name, ba_gguf_t **out, ba_error *err) {
    *out = NULL;
    ba_gguf_t *g = ba_calloc(1, sizeof *g, err);
    if (!g) return err->code;
    g->path = ba_strdup(name, err);
    if (!g->path) {
        free(g);
        return err->code;
    }
    cur_t c = {data, size, 0, name, err};
    ba_status st;
    const uint8_t *magic = NULL;
    char field[BA_GGUF_MAX_NAME + 96];
    if ((st = cur_bytes(&c, 4, &magic, "header")) != BA_OK) goto fail;
    if (memcmp(magic, "GGUF", 4) != 0) {
        st = cur_fail(&c, "header", "not a GGUF file (magic is not \"GGUF\")");
        goto fail;
    }
    if ((st = cur_u32(&c, &g->version, "version")) != BA_OK) goto fail;
    if (g->version != 2 && g->version != 3) {
        char why[64];
        snprintf(why, sizeof why, "GGUF version %u not supported (2 and 3 are)", g->version);
        st = cur_fail(&c, "version", why);
        goto fail;
    }
    uint64_t n_tensors, n_kv;
    if ((st = cur_u64(&c, &n_tensors, "tensor count")) != BA_OK) goto fail;
    if ((st = cur_u64(&c, &n_kv, "metadata count")) != BA_OK) goto fail;
    /* A kv takes >= 13 bytes (key length, type, 1-byte value), a tensor info >= 32. */
    if (n_kv > (size - c.pos) / 13 || n_kv > INT32_MAX) {
        st = cur_fail(&c, "metadata count", "more entries than the file can hold");
        goto fail;
    }
    if (n_tensors > (size - c.pos) / 32 || n_tensors > INT32_MAX) {
        st = cur_fail(&c, "tensor count", "more tensors than the file can hold");
        goto fail;
    }
    g->kv = ba_calloc(n_kv ? n_kv : 1, sizeof *g->kv, err);
    g->tensors = ba_calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors, err);
    if (!g->kv || !g->tensors) {
        st = err->code;
        goto fail;
    }

    g->alignment = BA_GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < n_kv; i++) {
        ba_gguf_kv_t *kv = &g->kv[i];
        const char *key;
        uint64_t klen;
        snprintf(field, sizeof field, "metadata %llu key", (unsigned long long)i);
        if ((st = cur_str(&c, &key, &klen, field)) != BA_OK) goto fail;
        if (klen == 0 || memchr(key, 0, (size_t)klen)) {
            st = cur_fail(&c, field, "empty key or NUL inside the key");
            goto fail;
        }
        kv->key = ba_malloc((size_t)klen + 1, err);
        if (!kv->key) {
            st = err->code;
            goto fail;
        }
        memcpy(kv->key, key, (size_t)klen);
        kv->key[klen] = 0;
        g->n_kv = (int)i + 1;
        kv->n = 1;
        snprintf(field, sizeof field, "metadata '%.*s'", (int)(klen < 80 ? klen : 80), key);
        if ((st = cur_u32(&c, &kv->type, field)) != BA_OK) goto fail;
        if ((st = parse_value(&c, kv, field)) != BA_OK) goto fail;
        if (strcmp(kv->key, "general.alignment") == 0) {
            uint32_t a;
            if (kv->type != BA_GGUF_U32) {
                st = cur_fail(&c, field, "must be a u32");
                goto fail;
            }
            memcpy(&a, kv->val, 4);
            if (a == 0 || (a & (a - 1)) != 0) {
                st = cur_fail(&c, field, "alignment must be a power of two");
                goto fail;
            }
            g->alignment = a;
        }
    }
    const char *dup;
    {
        char **keys = ba_malloc((size_t)(g->n_kv ? g->n_kv : 1) * sizeof *keys, err);
        if (!keys) {
            st = err->code;
            goto fail;
        }
        for (int i = 0; i < g->n_kv; i++) keys[i] = g->kv[i].key;
        st = find_duplicate(keys, g->n_kv, &dup, err);
        if (st == BA_OK && dup)
            st = ba_error_set(err, BA_ERR_INPUT, "%s: metadata '%.80s': duplicate key", name, dup);
        free(keys);
        if (st != BA_OK) goto fail;
    }

    for (uint64_t i = 0; i < n_tensors; i++) {
        ba_gguf_tensor_t *t = &g->tensors[i];
        const char *tn;
        uint64_t tlen;
        snprintf(field, sizeof field, "tensor %llu name", (unsigned long long)i);
        if ((st = cur_str(&c, &tn, &tlen, field)) != BA_OK) goto fail;
        if (tlen == 0 || tlen > BA_GGUF_MAX_NAME || memchr(tn, 0, (size_t)tlen)) {
            st = cur_fail(&c, field, "name empty, longer than 63 bytes or with a NUL inside");
            goto fail;
        }
        t->name = ba_malloc((size_t)tlen + 1, err);
        if (!t->name) {
            st = err->code;
            goto fail;
        }
        memcpy(t->name, tn, (size_t)tlen);
        t->name[tlen] = 0;
        g->n_tensors = (int)i + 1;
        snprintf(field, sizeof field, "tensor '%s'", t->name);
        uint32_t nd;
        if ((st = cur_u32(&c, &nd, field)) != BA_OK) goto fail;
        if (nd < 1 || nd > BA_GGUF_MAX_DIMS) {
            st = cur_fail(&c, field, "dimension count not in 1..4");
            goto fail;
        }
        t->n_dims = (int)nd;
        for (int d = 0; d < BA_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t v;
            if ((st = cur_u64(&c, &v, field)) != BA_OK) goto fail;
            if (v > (uint64_t)INT64_MAX) {
                st = cur_fail(&c, field, "size does not fit int64");
                goto fail;
            }
            t->ne[d] = (int64_t)v;
        }
        uint32_t type;
        if ((st = cur_u32(&c, &type, field)) != BA_OK) goto fail;
        const ba_ggml_type_t *ty = ba_ggml_type_by_id((int)type);
        if (!ty) {
            char why[64];
            snprintf(why, sizeof why, "unknown ggml type %u", type);
            st = cur_fail(&c, field, why);
            goto fail;
        }
        t->type = (int)type;
        if ((st = cur_u64(&c, &t->offset, field)) != BA_OK) goto fail;
        if ((st = ba_ggml_type_nbytes(ty, t->n_dims, t->ne, &t->nbytes, err)) != BA_OK) {
            st = ba_error_prefix(err, "%s: %s", name, field);
            goto fail;
        }
        if (t->offset % g->alignment != 0) {
            st = cur_fail(&c, field, "data offset is not a multiple of the alignment");
            goto fail;
        }
    }
    {
        char **names = ba_malloc((size_t)(g->n_tensors ? g->n_tensors : 1) * sizeof *names, err);
        if (!names) {
            st = err->code;
            goto fail;
        }
        for (int i = 0; i < g->n_tensors; i++) names[i] = g->tensors[i].name;
        st = find_duplicate(names, g->n_tensors, &dup, err);
        if (st == BA_OK && dup)
            st = ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s': duplicate name", name, dup);
        free(names);
        if (st != BA_OK) goto fail;
    }
    uint64_t pad = (g->alignment - c.pos % g->alignment) % g->alignment;
    g->data_offset = c.pos + pad;
    if (g->n_tensors > 0 && g->data_offset > size) {
        st = ba_error_set(err, BA_ERR_INPUT, "%s: data section: the file ends inside the padding before it",
                          name);
        goto fail;
    }
    for (int i = 0; i < g->n_tensors; i++) {
        ba_gguf_tensor_t *t = &g->tensors[i];
        uint64_t avail = size - g->data_offset;
        if (t->offset > avail || t->nbytes > avail - t->offset) {
            st = ba_error_set(
                err, BA_ERR_INPUT,
                "%s: tensor '%s': data (%llu bytes at offset %llu) runs past the end of the file", name,
                t->name, (unsigned long long)t->nbytes, (unsigned long long)t->offset);
            goto fail;
        }
        t->data = data + g->data_offset + t->offset;
    }
    *out = g;
    return BA_OK;
fail:
    ba_gguf_free(g);
    return st;
}

ba_status ba_gguf_open(const char *path, ba_gguf_t **out, ba_error *err) {
    *out = NULL;
    ba_mapped_t m;
    BA_TRY(ba_file_map(path, &m, err));
    ba_status st = ba_gguf_parse(m.data, m.size, path, out, err);
    if (st != BA_OK) {
        ba_file_unmap(&m);
        return st;
    }
    (*out)->map = m;
    return BA_OK;
}

const ba_gguf_kv_t *ba_gguf_find_kv(const ba_gguf_t *g, const char *key) {
    for (int i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const ba_gguf_tensor_t *ba_gguf_find_tensor(const ba_gguf_t *g, const char *name) {
    for (int i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

int ba_gguf_kv_int(const ba_gguf_kv_t *kv, int64_t *out) {
    if (!kv) return -1;
    const uint8_t *v = kv->val;
    switch (kv->type) {
    case BA_GGUF_U8:
    case BA_GGUF_BOOL: *out = v[0]; return 0;
    case BA_GGUF_I8: *out = (int8_t)v[0]; return 0;
    case BA_GGUF_U16: {
        uint16_t x;
        memcpy(&x, v, 2);
        *out = x;
        return 0;
    }
    case BA_GGUF_I16: {
        int16_t x;
        memcpy(&x, v, 2);
        *out = x;
        return 0;
    }
    case BA_GGUF_U32: {
        uint32_t x;
        memcpy(&x, v, 4);
        *out = x;
        return 0;
    }
    case BA_GGUF_I32: {
        int32_t x;
        memcpy(&x, v, 4);
        *out = x;
        return 0;
    }
    case BA_GGUF_U64: {
        uint64_t x;
        memcpy(&x, v, 8);
        if (x > (uint64_t)INT64_MAX) return -1;
        *out = (int64_t)x;
        return 0;
    }
    case BA_GGUF_I64: {
        int64_t x;
        memcpy(&x, v, 8);
        *out = x;
        return 0;
    }
    default: return -1;
    }
}

int ba_gguf_kv_float(const ba_gguf_kv_t *kv, double *out) {
    if (!kv) return -1;
    if (kv->type == BA_GGUF_F32) {
        float f;
        memcpy(&f, kv->val, 4);
        *out = f;
        return 0;
    }
    if (kv->type == BA_GGUF_F64) {
        memcpy(out, kv->val, 8);
        return 0;
    }
    return -1;
}

int ba_gguf_kv_str(const ba_gguf_kv_t *kv, const char **s, uint64_t *len) {
    if (!kv || kv->type != BA_GGUF_STRING) return -1;
    memcpy(len, kv->val, 8);
    *s = (const char *)kv->val + 8;
    return 0;
}

int ba_gguf_kv_arr_str(const ba_gguf_kv_t *kv, uint64_t i, const char **s, uint64_t *len) {
    if (!kv || kv->type != BA_GGUF_ARRAY || kv->arr_type != BA_GGUF_STRING || i >= kv->n) return -1;
    memcpy(len, kv->val + kv->str_off[i], 8);
    *s = (const char *)kv->val + kv->str_off[i] + 8;
    return 0;
}

/* ---- writer ---- */
typedef struct {
    char *key;
    uint32_t type, arr_type;
    uint64_t n;
    uint8_t *val;
    size_t val_size;
} wkv_t;

typedef struct {
    char *name;
    int n_dims, type;
    int64_t ne[BA_GGUF_MAX_DIMS];
    const void *data;
    uint64_t nbytes;
} wtensor_t;

struct ba_gguf_writer {
    wkv_t *kv;
    int n_kv, cap_kv;
    wtensor_t *t;
    int n_t, cap_t;
    uint32_t alignment;
};

ba_status ba_gguf_writer_new(ba_gguf_writer_t **out, ba_error *err) {
    *out = ba_calloc(1, sizeof **out, err);
    if (!*out) return err->code;
    (*out)->alignment = BA_GGUF_DEFAULT_ALIGNMENT;
    return BA_OK;
}

void ba_gguf_writer_free(ba_gguf_writer_t *w) {
    if (!w) return;
    for (int i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (int i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

ba_status ba_gguf_writer_add_kv(ba_gguf_writer_t *w, const char *key, uint32_t type, uint32_t arr_type,
                                uint64_t n, const void *val, size_t val_size, ba_error *err) {
    if (!key || !*key) return ba_error_set(err, BA_ERR_INPUT, "GGUF metadata: empty key");
    if (type >= BA_GGUF_NTYPES ||
        (type == BA_GGUF_ARRAY && (arr_type >= BA_GGUF_NTYPES || arr_type == BA_GGUF_ARRAY)))
        return ba_error_set(err, BA_ERR_INPUT, "GGUF metadata '%s': bad value type", key);
    for (int i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0)
            return ba_error_set(err, BA_ERR_INPUT, "GGUF metadata '%s': duplicate key", key);
    if (strcmp(key, "general.alignment") == 0) {
        uint32_t a = 0;
        if (type != BA_GGUF_U32 || val_size != 4)
            return ba_error_set(err, BA_ERR_INPUT, "general.alignment must be a u32");
        memcpy(&a, val, 4);
        if (a == 0 || (a & (a - 1)))
            return ba_error_set(err, BA_ERR_INPUT, "general.alignment %u is not a power of two", a);
        w->alignment = a;
    }
    if (w->n_kv == w->cap_kv) {
        int cap = w->cap_kv ? 2 * w->cap_kv : 16;
        wkv_t *k = ba_realloc(w->kv, (size_t)cap * sizeof *k, err);
        if (!k) return err->code;
        w->kv = k;
        w->cap_kv = cap;
    }
    wkv_t *k = &w->kv[w->n_kv];
    memset(k, 0, sizeof *k);
    k->key = ba_strdup(key, err);
    k->val = ba_malloc(val_size ? val_size : 1, err);
    if (!k->key || !k->val) {
        free(k->key);
        free(k->val);
        return err->code;
    }
    memcpy(k->val, val, val_size);
    k->type = type;
    k->arr_type = arr_type;
    k->n = type == BA_GGUF_ARRAY ? n : 1;
    k->val_size = val_size;
    w->n_kv++;
    return BA_OK;
}

ba_status ba_gguf_writer_add_u32(ba_gguf_writer_t *w, const char *key, uint32_t v, ba_error *err) {
    return ba_gguf_writer_add_kv(w, key, BA_GGUF_U32, 0, 1, &v, 4, err);
}

ba_status ba_gguf_writer_add_f32(ba_gguf_writer_t *w, const char *key, float v, ba_error *err) {
    return ba_gguf_writer_add_kv(w, key, BA_GGUF_F32, 0, 1, &v, 4, err);
}

ba_status ba_gguf_writer_add_str(ba_gguf_writer_t *w, const char *key, const char *v, ba_error *err) {
    uint64_t len = strlen(v);
    uint8_t *buf = ba_malloc(8 + (size_t)len, err);
    if (!buf) return err->code;
    memcpy(buf, &len, 8);
    memcpy(buf + 8, v, (size_t)len);
    ba_status st = ba_gguf_writer_add_kv(w, key, BA_GGUF_STRING, 0, 1, buf, 8 + (size_t)len, err);
    free(buf);
    return st;
}

ba_status ba_gguf_writer_add_tensor(ba_gguf_writer_t *w, const char *name, int n_dims, const int64_t *ne,
                                    int type, const void *data, uint64_t nbytes, ba_error *err) {
    if (!name || !*name || strlen(name) > BA_GGUF_MAX_NAME)
        return ba_error_set(err, BA_ERR_INPUT, "GGUF tensor '%s': name empty or longer than 63 bytes",
                            name ? name : "");
    const ba_ggml_type_t *ty = ba_ggml_type_by_id(type);
    if (!ty) return ba_error_set(err, BA_ERR_INPUT, "GGUF tensor '%s': unknown ggml type %d", name, type);
    uint64_t want;
    if (ba_ggml_type_nbytes(ty, n_dims, ne, &want, err) != BA_OK)
        return ba_error_prefix(err, "GGUF tensor '%s'", name);
    if (want != nbytes)
        return ba_error_set(err, BA_ERR_INPUT, "GGUF tensor '%s': %llu bytes given, %s needs %llu", name,
                            (unsigned long long)nbytes, ty->name, (unsigned long long)want);
    for (int i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return ba_error_set(err, BA_ERR_INPUT, "GGUF tensor '%s': duplicate name", name);
    if (w->n_t == w->cap_t) {
        int cap = w->cap_t ? 2 * w->cap_t : 16;
        wtensor_t *t = ba_realloc(w->t, (size_t)cap * sizeof *t, err);
        if (!t) return err->code;
        w->t = t;
        w->cap_t = cap;
    }
    wtensor_t *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = ba_strdup(name, err);
    if (!t->name) return err->code;
    t->n_dims = n_dims;
    for (int d = 0; d < BA_GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->type = type;
    t->data = data;
    t->nbytes = nbytes;
    w->n_t++;
    return BA_OK;
}

static void put_u32(FILE *f, uint32_t v) {
    fwrite(&v, 4, 1, f);
}
static void put_u64(FILE *f, uint64_t v) {
    fwrite(&v, 8, 1, f);
}
static void put_str(FILE *f, const char *s) {
    put_u64(f, strlen(s));
    fwrite(s, 1, strlen(s), f);
}
static void put_pad(FILE *f, uint64_t *pos, uint32_t align) {
    static const uint8_t zero[256];
    uint64_t pad = (align - *pos % align) % align;
    *pos += pad;
    while (pad) {
        size_t k = pad < sizeof zero ? (size_t)pad : sizeof zero;
        fwrite(zero, 1, k, f);
        pad -= k;
    }
}

ba_status ba_gguf_writer_write(ba_gguf_writer_t *w, const char *path, ba_error *err) {
    ba_out_t *o;
    BA_TRY(ba_out_open(path, &o, err));
    FILE *f = ba_out_stream(o);
    uint64_t pos = 0;
    fwrite("GGUF", 1, 4, f);
    put_u32(f, 3);
    put_u64(f, (uint64_t)w->n_t);
    put_u64(f, (uint64_t)w->n_kv);
    pos = 24;
    for (int i = 0; i < w->n_kv; i++) {
        const wkv_t *k = &w->kv[i];
        put_str(f, k->key);
        put_u32(f, k->type);
        pos += 8 + strlen(k->key) + 4;
        if (k->type == BA_GGUF_ARRAY) {
            put_u32(f, k->arr_type);
            put_u64(f, k->n);
            pos += 12;
        }
        fwrite(k->val, 1, k->val_size, f);
        pos += k->val_size;
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n_t; i++) {
        const wtensor_t *t = &w->t[i];
        put_str(f, t->name);
        put_u32(f, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(f, (uint64_t)t->ne[d]);
        put_u32(f, (uint32_t)t->type);
        put_u64(f, off);
        pos += 8 + strlen(t->name) + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
        off += t->nbytes;
        off += (w->alignment - off % w->alignment) % w->alignment;
    }
    put_pad(f, &pos, w->alignment);
    for (int i = 0; i < w->n_t; i++) {
        fwrite(w->t[i].data, 1, (size_t)w->t[i].nbytes, f);
        pos += w->t[i].nbytes;
        put_pad(f, &pos, w->alignment);
    }
    ba_status st = ba_out_commit(o, err);
    if (st != BA_OK) return ba_error_prefix(err, "%s", path);
    return BA_OK;
}

ba_status ba_gguf_write_f32(const ba_gguf_t *g, const char *path, ba_error *err) {
    ba_gguf_writer_t *w;
    BA_TRY(ba_gguf_writer_new(&w, err));
    ba_status st = BA_OK;
    float **wide = ba_calloc((size_t)(g->n_tensors ? g->n_tensors : 1), sizeof *wide, err);
    if (!wide) {
        ba_gguf_writer_free(w);
        return err->code;
    }
    int quantized = 0;
    for (int i = 0; i < g->n_tensors; i++)
        quantized |= g->tensors[i].type != 0 && g->tensors[i].type != 1 && g->tensors[i].type != 30;
    for (int i = 0; i < g->n_kv && st == BA_OK; i++) {
        const ba_gguf_kv_t *kv = &g->kv[i];
        if (!quantized && strcmp(kv->key, "general.file_type") == 0)
            st = ba_gguf_writer_add_u32(w, kv->key, 0, err);
        else
            st = ba_gguf_writer_add_kv(w, kv->key, kv->type, kv->arr_type, kv->n, kv->val, kv->val_size, err);
    }
    for (int i = 0; i < g->n_tensors && st == BA_OK; i++) {
        const ba_gguf_tensor_t *t = &g->tensors[i];
        if (t->type != 1 && t->type != 30) {
            st = ba_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, t->type, t->data, t->nbytes, err);
            continue;
        }
        uint64_t n = t->nbytes / 2;
        wide[i] = ba_malloc((size_t)n * sizeof(float), err);
        if (!wide[i]) {
            st = err->code;
            break;
        }
        for (uint64_t k = 0; k < n; k++) {
            uint16_t h;
            memcpy(&h, t->data + 2 * k, 2);
            wide[i][k] = t->type == 1 ? ba_f16_to_f32(h) : ba_bf16_to_f32(h);
        }
        st = ba_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, 0, wide[i], n * sizeof(float), err);
    }
    if (st == BA_OK) st = ba_gguf_writer_write(w, path, err);
    ba_gguf_writer_free(w);
    for (int i = 0; i < g->n_tensors; i++) free(wide[i]);
    free(wide);
    return st;
}
