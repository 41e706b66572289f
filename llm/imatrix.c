#include "llm/imatrix.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

void ba_imatrix_free(ba_imatrix_t *im) {
    if (!im) return;
    for (int i = 0; i < im->n; i++) {
        free(im->e[i].name);
        free(im->e[i].mean);
    }
    free(im->e);
    free(im);
}

const ba_imatrix_entry_t *ba_imatrix_find(const ba_imatrix_t *im, const char *name) {
    for (int i = 0; i < im->n; i++)
        if (strcmp(im->e[i].name, name) == 0) return &im->e[i];
    return NULL;
}

static int dup_name(const ba_imatrix_t *im, const char *name) {
    for (int i = 0; i < im->n; i++)
        if (strcmp(im->e[i].name, name) == 0) return 1;
    return 0;
}

static ba_status rd_i32(const uint8_t *d, size_t size, size_t *pos, int32_t *v, const char *name,
                        const char *field, ba_error *err) {
    if (size - *pos < 4)
        return ba_error_set(err, BA_ERR_INPUT, "%s: %s: truncated file (at byte %zu)", name, field, *pos);
    memcpy(v, d + *pos, 4);
    *pos += 4;
    return BA_OK;
}

ba_status ba_imatrix_parse_dat(const uint8_t *d, size_t size, const char *name, ba_imatrix_t **out,
                               ba_error *err) {
    *out = NULL;
    ba_imatrix_t *im = ba_calloc(1, sizeof *im, err);
    if (!im) return err->code;
    im->legacy = 1;
    ba_status st;
    size_t pos = 0;
    int32_t n = 0;
    char field[160];
    if ((st = rd_i32(d, size, &pos, &n, name, "entry count", err)) != BA_OK) goto fail;
    /* An entry takes >= 16 bytes (len, 1-byte name, ncall, nval, 1 value minus slack). */
    if (n < 1 || (size_t)n > (size - pos) / 13) {
        st = ba_error_set(err, BA_ERR_INPUT, "%s: entry count %d: not between 1 and what the file can hold",
                          name, n);
        goto fail;
    }
    im->e = ba_calloc((size_t)n, sizeof *im->e, err);
    if (!im->e) {
        st = err->code;
        goto fail;
    }
    for (int32_t i = 0; i < n; i++) {
        int32_t len = 0, ncall = 0, nval = 0;
        snprintf(field, sizeof field, "entry %d", i);
        if ((st = rd_i32(d, size, &pos, &len, name, field, err)) != BA_OK) goto fail;
        if (len < 1 || (size_t)len > size - pos || memchr(d + pos, 0, (size_t)len)) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: entry %d: name length %d is not valid here", name, i,
                              len);
            goto fail;
        }
        char *nm = ba_malloc((size_t)len + 1, err);
        if (!nm) {
            st = err->code;
            goto fail;
        }
        memcpy(nm, d + pos, (size_t)len);
        nm[len] = 0;
        pos += (size_t)len;
        if (dup_name(im, nm)) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: entry '%.200s': duplicate name", name, nm);
            free(nm);
            goto fail;
        }
        ba_imatrix_entry_t *e = &im->e[im->n++];
        e->name = nm;
        snprintf(field, sizeof field, "entry '%.120s'", nm);
        if ((st = rd_i32(d, size, &pos, &ncall, name, field, err)) != BA_OK) goto fail;
        if ((st = rd_i32(d, size, &pos, &nval, name, field, err)) != BA_OK) goto fail;
        if (nval < 1 || (size_t)nval > (size - pos) / 4) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: %s: %d values do not fit the file", name, field, nval);
            goto fail;
        }
        e->ne0 = nval;
        e->n_mat = 1;
        e->mean = ba_malloc((size_t)nval * sizeof *e->mean, err);
        if (!e->mean) {
            st = err->code;
            goto fail;
        }
        memcpy(e->mean, d + pos, (size_t)nval * 4);
        pos += (size_t)nval * 4;
        for (int32_t k = 0; k < nval; k++) {
            if (ncall > 0) e->mean[k] /= (float)ncall;
            if (!isfinite(e->mean[k]) || e->mean[k] < 0) {
                st = ba_error_set(err, BA_ERR_INPUT, "%s: %s: value %d is negative or not finite", name,
                                  field, k);
                goto fail;
            }
        }
    }
    if (pos < size) { /* optional trailer: chunk count, dataset name */
        int32_t chunks = 0, len = 0;
        if ((st = rd_i32(d, size, &pos, &chunks, name, "chunk count", err)) != BA_OK) goto fail;
        if ((st = rd_i32(d, size, &pos, &len, name, "dataset name", err)) != BA_OK) goto fail;
        if (len < 0 || (size_t)len != size - pos) {
            st = ba_error_set(err, BA_ERR_INPUT,
                              "%s: dataset name: length %d does not match the %zu bytes left", name, len,
                              size - pos);
            goto fail;
        }
        im->chunk_count = chunks > 0 ? chunks : 0;
    }
    *out = im;
    return BA_OK;
fail:
    ba_imatrix_free(im);
    return st;
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

ba_status ba_imatrix_from_gguf(const ba_gguf_t *g, ba_imatrix_t **out, ba_error *err) {
    *out = NULL;
    static const char *const req[] = {"imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"};
    for (int i = 0; i < 3; i++)
        if (!ba_gguf_find_kv(g, req[i]))
            return ba_error_set(err, BA_ERR_INPUT,
                                "%s: %s: missing (llama-quantize refuses an imatrix without it)", g->path,
                                req[i]);
    int64_t cc;
    if (ba_gguf_kv_int(ba_gguf_find_kv(g, "imatrix.chunk_count"), &cc) != 0 || cc < 0)
        return ba_error_set(err, BA_ERR_INPUT, "%s: imatrix.chunk_count: not a count", g->path);
    ba_imatrix_t *im = ba_calloc(1, sizeof *im, err);
    if (!im) return err->code;
    im->chunk_count = cc;
    im->e = ba_calloc((size_t)(g->n_tensors ? g->n_tensors : 1), sizeof *im->e, err);
    if (!im->e) {
        ba_imatrix_free(im);
        return err->code;
    }
    ba_status st = BA_OK;
    char wname[BA_GGUF_MAX_NAME + 16];
    for (int i = 0; i < g->n_tensors && st == BA_OK; i++) {
        const ba_gguf_tensor_t *s = &g->tensors[i];
        if (ends_with(s->name, ".counts")) {
            snprintf(wname, sizeof wname, "%.*s.in_sum2", (int)(strlen(s->name) - 7), s->name);
            if (!ba_gguf_find_tensor(g, wname))
                st = ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s': no matching .in_sum2", g->path,
                                  s->name);
            continue;
        }
        if (!ends_with(s->name, ".in_sum2")) continue;
        size_t stem = strlen(s->name) - 8;
        snprintf(wname, sizeof wname, "%.*s.counts", (int)stem, s->name);
        const ba_gguf_tensor_t *c = ba_gguf_find_tensor(g, wname);
        if (!c) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s': no matching .counts", g->path, s->name);
            break;
        }
        if (s->type != 0 || c->type != 0) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s': sums and counts must be F32", g->path,
                              s->name);
            break;
        }
        int64_t ne0 = s->ne[0], nm = (int64_t)(s->nbytes / 4) / (ne0 ? ne0 : 1);
        if (ne0 < 1 || (uint64_t)(c->nbytes / 4) != (uint64_t)nm || nm < 1) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s': %llu counts for %lld matrices", g->path,
                              c->name, (unsigned long long)(c->nbytes / 4), (long long)nm);
            break;
        }
        ba_imatrix_entry_t *e = &im->e[im->n];
        e->name = ba_malloc(stem + 1, err);
        e->mean = ba_malloc((size_t)(s->nbytes ? s->nbytes : 4), err);
        if (!e->name || !e->mean) {
            free(e->name);
            free(e->mean);
            e->name = NULL;
            e->mean = NULL;
            st = err->code;
            break;
        }
        memcpy(e->name, s->name, stem);
        e->name[stem] = 0;
        e->ne0 = ne0;
        e->n_mat = nm;
        im->n++;
        for (int64_t m = 0; m < nm && st == BA_OK; m++) {
            float cnt;
            memcpy(&cnt, c->data + 4 * m, 4);
            if (!isfinite(cnt) || cnt < 0 || cnt > 9.0e15f) {
                st = ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s': count %lld is not a count", g->path,
                                  c->name, (long long)m);
                break;
            }
            double cr = (double)llround(cnt);
            for (int64_t k = 0; k < ne0; k++) {
                float v;
                memcpy(&v, s->data + 4 * (m * ne0 + k), 4);
                if (!isfinite(v) || v < 0) {
                    st = ba_error_set(err, BA_ERR_INPUT,
                                      "%s: tensor '%s': value %lld is negative or not finite", g->path,
                                      s->name, (long long)(m * ne0 + k));
                    break;
                }
                e->mean[m * ne0 + k] = cr > 0 ? (float)(v / cr) : 1.0f;
            }
        }
    }
    if (st != BA_OK) {
        ba_imatrix_free(im);
        return st;
    }
    *out = im;
    return BA_OK;
}

ba_status ba_imatrix_open(const char *path, ba_imatrix_t **out, ba_error *err) {
    *out = NULL;
    ba_mapped_t m;
    BA_TRY(ba_file_map(path, &m, err));
    ba_status st;
    if (m.size >= 4 && memcmp(m.data, "GGUF", 4) == 0) {
        ba_gguf_t *g;
        st = ba_gguf_parse(m.data, m.size, path, &g, err);
        if (st == BA_OK) {
            st = ba_imatrix_from_gguf(g, out, err);
            ba_gguf_free(g);
        }
    } else {
        st = ba_imatrix_parse_dat(m.data, m.size, path, out, err);
    }
    ba_file_unmap(&m);
    return st;
}

ba_status ba_imatrix_write_gguf(const ba_imatrix_t *im, const int64_t *counts, const char *dataset,
                                int64_t chunk_count, int64_t chunk_size, const char *path, ba_error *err) {
    if (chunk_count < 0 || chunk_count > UINT32_MAX || chunk_size < 0 || chunk_size > UINT32_MAX)
        return ba_error_set(err, BA_ERR_INPUT, "imatrix: chunk count or size out of range");
    ba_gguf_writer_t *w;
    BA_TRY(ba_gguf_writer_new(&w, err));
    size_t dl = strlen(dataset);
    uint8_t *ds = ba_malloc(8 + dl, err);
    float **bufs = ds ? ba_calloc((size_t)(2 * im->n + 1), sizeof *bufs, err) : NULL;
    ba_status st = bufs ? BA_OK : err->code;
    if (st == BA_OK) {
        uint64_t l = dl;
        memcpy(ds, &l, 8);
        memcpy(ds + 8, dataset, dl);
        st = ba_gguf_writer_add_str(w, "general.type", "imatrix", err);
    }
    if (st == BA_OK)
        st = ba_gguf_writer_add_kv(w, "imatrix.datasets", BA_GGUF_ARRAY, BA_GGUF_STRING, 1, ds, 8 + dl, err);
    if (st == BA_OK) st = ba_gguf_writer_add_u32(w, "imatrix.chunk_count", (uint32_t)chunk_count, err);
    if (st == BA_OK) st = ba_gguf_writer_add_u32(w, "imatrix.chunk_size", (uint32_t)chunk_size, err);
    for (int i = 0; st == BA_OK && i < im->n; i++) {
        const ba_imatrix_entry_t *e = &im->e[i];
        size_t n = (size_t)(e->ne0 * e->n_mat);
        float *sum = bufs[2 * i] = ba_malloc(n * sizeof *sum, err);
        float *cnt = sum ? (bufs[2 * i + 1] = ba_malloc((size_t)e->n_mat * sizeof *cnt, err)) : NULL;
        if (!cnt) {
            st = err->code;
            break;
        }
        for (size_t j = 0; j < n; j++) sum[j] = e->mean[j] * (float)counts[i];
        for (int64_t m = 0; m < e->n_mat; m++) cnt[m] = (float)counts[i];
        char name[512];
        int64_t ne_s[2] = {e->ne0, e->n_mat}, ne_c[2] = {1, e->n_mat};
        snprintf(name, sizeof name, "%s.in_sum2", e->name);
        st = ba_gguf_writer_add_tensor(w, name, 2, ne_s, 0, sum, n * sizeof *sum, err);
        snprintf(name, sizeof name, "%s.counts", e->name);
        if (st == BA_OK)
            st = ba_gguf_writer_add_tensor(w, name, 2, ne_c, 0, cnt, (uint64_t)e->n_mat * sizeof *cnt, err);
    }
    if (st == BA_OK) st = ba_gguf_writer_write(w, path, err);
    ba_gguf_writer_free(w);
    for (int i = 0; bufs && i < 2 * im->n; i++) free(bufs[i]);
    free(bufs);
    free(ds);
    return st;
}
