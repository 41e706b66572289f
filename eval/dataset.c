/* Datasets of named model inputs from --data specs, row batches as views, and
 * --labels loading. Inputs are copied once into owned tensors; batches share
 * that memory so evaluating a batch never copies the data again. */
#include "eval/dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/util.h"
#include "eval/npy.h"

static const char NPY_MAGIC[] = "\x93NUMPY";
#define NPY_MAGIC_LEN 6
static const char ZIP_MAGIC[] = "PK\x03\x04";
#define ZIP_MAGIC_LEN 4
#define SHA256_HEX 65

typedef struct {
    char *name; /* NULL: the model's first input */
    char *path;
    ba_tensor_t *t;
} ds_input;

struct ba_dataset {
    int count, cap;
    ds_input *in;
    int64_t samples;
    char sha[SHA256_HEX];
};

void ba_dataset_free(ba_dataset_t *ds) {
    if (!ds) return;
    for (int i = 0; i < ds->count; i++) {
        free(ds->in[i].name);
        free(ds->in[i].path);
        ba_tensor_unref(ds->in[i].t);
    }
    free(ds->in);
    free(ds);
}

int64_t ba_dataset_samples(const ba_dataset_t *ds) { return ds->samples; }
int ba_dataset_count(const ba_dataset_t *ds) { return ds->count; }
const char *ba_dataset_name(const ba_dataset_t *ds, int idx) {
    return idx >= 0 && idx < ds->count ? ds->in[idx].name : NULL;
}
const char *ba_dataset_path(const ba_dataset_t *ds, int idx) {
    return idx >= 0 && idx < ds->count ? ds->in[idx].path : NULL;
}
const ba_tensor_t *ba_dataset_tensor(const ba_dataset_t *ds, int idx) {
    return idx >= 0 && idx < ds->count ? ds->in[idx].t : NULL;
}
int ba_dataset_find(const ba_dataset_t *ds, const char *name) {
    for (int i = 0; i < ds->count; i++)
        if (ds->in[i].name && name && strcmp(ds->in[i].name, name) == 0) return i;
    return -1;
}
void ba_dataset_sha256(const ba_dataset_t *ds, char hex[65]) { memcpy(hex, ds->sha, SHA256_HEX); }

/* Takes ownership of t (and of nothing else). */
static ba_status ds_add(ba_dataset_t *ds, const char *name, const char *path, ba_tensor_t *t, ba_error *err) {
    if (name && ba_dataset_find(ds, name) >= 0) {
        ba_tensor_unref(t);
        return ba_error_set(err, BA_ERR_INPUT, "%s: input '%s' is given twice", path, name);
    }
    if (ds->count == ds->cap) {
        int ncap = ds->cap ? ds->cap * 2 : 4;
        ds_input *n = ba_realloc(ds->in, (size_t)ncap * sizeof *n, err);
        if (!n) {
            ba_tensor_unref(t);
            return BA_ERR_NOMEM;
        }
        ds->in = n;
        ds->cap = ncap;
    }
    ds_input *in = &ds->in[ds->count];
    in->name = name ? ba_strdup(name, err) : NULL;
    in->path = ba_strdup(path, err);
    in->t = t;
    ds->count++; /* freed by ba_dataset_free even if a strdup failed */
    if ((name && !in->name) || !in->path) return BA_ERR_NOMEM;
    return BA_OK;
}

/* Splits "name=path" unless the whole spec names an existing file. */
static ba_status split_spec(const char *spec, char **name, char **path, ba_error *err) {
    *name = NULL;
    *path = NULL;
    struct stat st;
    const char *eq = strchr(spec, '=');
    if (!eq || stat(spec, &st) == 0) {
        *path = ba_strdup(spec, err);
        return *path ? BA_OK : BA_ERR_NOMEM;
    }
    if (eq == spec) return ba_error_set(err, BA_ERR_INPUT, "--data %s: empty input name before '='", spec);
    if (!eq[1]) return ba_error_set(err, BA_ERR_INPUT, "--data %s: no file after '='", spec);
    *name = ba_malloc((size_t)(eq - spec) + 1, err);
    if (!*name) return BA_ERR_NOMEM;
    memcpy(*name, spec, (size_t)(eq - spec));
    (*name)[eq - spec] = '\0';
    *path = ba_strdup(eq + 1, err);
    if (!*path) {
        free(*name);
        *name = NULL;
        return BA_ERR_NOMEM;
    }
    return BA_OK;
}

static int wanted(const char *name, const char *const *names, int nnames) {
    if (!names) return 1;
    for (int k = 0; k < nnames; k++)
        if (strcmp(names[k], name) == 0) return 1;
    return 0;
}

static ba_status load_spec(ba_dataset_t *ds, const char *spec, const char *const *names, int nnames,
                           ba_sha256_t *digest, ba_error *err) {
    char *name, *path;
    BA_TRY(split_spec(spec, &name, &path, err));
    if (name && !wanted(name, names, nnames)) {
        ba_status st = ba_error_set(err, BA_ERR_INPUT, "--data %s: the model has no input named '%s'", spec, name);
        free(name);
        free(path);
        return st;
    }
    ba_mapped_t m;
    ba_status st = ba_file_map(path, &m, err);
    if (st != BA_OK) goto done;
    char hex[SHA256_HEX];
    ba_sha256_hex(m.data ? m.data : "", m.size, hex);
    const uint8_t *b = m.data;
    if (m.size >= ZIP_MAGIC_LEN && memcmp(b, ZIP_MAGIC, ZIP_MAGIC_LEN) == 0) {
        if (name) {
            st = ba_error_set(err, BA_ERR_INPUT,
                              "--data %s: an .npz names its inputs by its members; give it without 'name='", spec);
        } else {
            ba_npz_t *z = NULL;
            st = ba_npz_load_mem_only(m.data, m.size, path, names, nnames, &z, err);
            for (int i = 0; st == BA_OK && i < z->count; i++) {
                st = ds_add(ds, z->members[i].name, path, z->members[i].tensor, err);
                z->members[i].tensor = NULL; /* ownership moved */
            }
            ba_npz_free(z);
            ba_sha256_update(digest, "* ", 2);
        }
    } else if (m.size >= NPY_MAGIC_LEN && memcmp(b, NPY_MAGIC, NPY_MAGIC_LEN) == 0) {
        ba_tensor_t *t = NULL;
        st = ba_npy_load_mem(m.data, m.size, path, &t, err);
        if (st == BA_OK) st = ds_add(ds, name, path, t, err);
        ba_sha256_update(digest, name ? name : "-", name ? strlen(name) : 1);
        ba_sha256_update(digest, " ", 1);
    } else {
        st = ba_error_set(err, BA_ERR_INPUT, "%s: bad magic: neither a .npy nor a .npz file", path);
    }
    ba_sha256_update(digest, hex, SHA256_HEX - 1);
    ba_sha256_update(digest, "\n", 1);
    ba_file_unmap(&m);
done:
    free(name);
    free(path);
    return st;
}

ba_status ba_dataset_load(const char *const *specs, int nspecs, ba_dataset_t **out, ba_error *err) {
    return ba_dataset_load_for(specs, nspecs, NULL, 0, out, err);
}

ba_status ba_dataset_load_for(const char *const *specs, int nspecs, const char *const *names, int nnames,
                              ba_dataset_t **out, ba_error *err) {
    *out = NULL;
    if (nspecs <= 0) return ba_error_set(err, BA_ERR_INPUT, "--data: no data file given");
    ba_dataset_t *ds = ba_calloc(1, sizeof *ds, err);
    if (!ds) return BA_ERR_NOMEM;
    ba_sha256_t digest;
    ba_sha256_init(&digest);
    ba_status st = BA_OK;
    for (int i = 0; st == BA_OK && i < nspecs; i++) st = load_spec(ds, specs[i], names, nnames, &digest, err);
    /* An unnamed .npy stands for "the model's first input": only unambiguous alone. */
    for (int i = 0; st == BA_OK && i < ds->count; i++)
        if (!ds->in[i].name && ds->count > 1)
            st = ba_error_set(err, BA_ERR_INPUT,
                              "%s: several inputs given; name each one as --data NAME=FILE.npy", ds->in[i].path);
    for (int i = 0; st == BA_OK && i < ds->count; i++) {
        const ba_tensor_t *t = ds->in[i].t;
        if (t->ndim < 1) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: input '%s' is a 0-d array; it needs a first axis (the sample axis)",
                              ds->in[i].path, ds->in[i].name ? ds->in[i].name : "(first)");
        } else if (i > 0 && t->shape[0] != ds->in[0].t->shape[0]) {
            st = ba_error_set(err, BA_ERR_INPUT,
                              "%s: input '%s' has %lld samples but %s ('%s') has %lld (first axes must match)",
                              ds->in[i].path, ds->in[i].name ? ds->in[i].name : "(first)",
                              (long long)t->shape[0], ds->in[0].path, ds->in[0].name ? ds->in[0].name : "(first)",
                              (long long)ds->in[0].t->shape[0]);
        }
    }
    if (st != BA_OK) {
        ba_dataset_free(ds);
        return st;
    }
    ds->samples = ds->in[0].t->shape[0];
    uint8_t d[32];
    ba_sha256_final(&digest, d);
    for (int i = 0; i < 32; i++) snprintf(ds->sha + 2 * i, 3, "%02x", d[i]);
    *out = ds;
    return BA_OK;
}

ba_status ba_dataset_batch(const ba_dataset_t *ds, int64_t start, int64_t count, int idx, ba_tensor_t **out,
                           ba_error *err) {
    *out = NULL;
    if (idx < 0 || idx >= ds->count)
        return ba_error_set(err, BA_ERR_INPUT, "dataset: input index %d outside 0..%d", idx, ds->count - 1);
    if (start < 0 || count < 0 || start > ds->samples || count > ds->samples - start)
        return ba_error_set(err, BA_ERR_INPUT, "%s: rows [%lld, %lld) outside the %lld samples", ds->in[idx].path,
                            (long long)start, (long long)start + count, (long long)ds->samples);
    ba_tensor_t *src = ds->in[idx].t;
    int64_t shape[BA_MAX_DIMS];
    memcpy(shape, src->shape, sizeof shape);
    shape[0] = count;
    size_t row = ba_tensor_nbytes(src) / (src->shape[0] ? (size_t)src->shape[0] : 1);
    /* A view: wraps the rows and holds a ref on the owner, as ba_tensor_view does. */
    ba_tensor_t *v = ba_tensor_wrap(src->dtype, src->ndim, shape, (char *)src->data + (size_t)start * row, err);
    if (!v) return BA_ERR_NOMEM;
    v->base = ba_tensor_ref(src);
    *out = v;
    return BA_OK;
}

ba_status ba_labels_load(const char *path, int64_t **labels, int64_t *n, ba_error *err) {
    *labels = NULL;
    *n = 0;
    ba_tensor_t *t = NULL;
    BA_TRY(ba_npy_load(path, &t, err));
    ba_status st = BA_OK;
    char sb[256];
    if (!ba_dtype_is_int(t->dtype))
        st = ba_error_set(err, BA_ERR_INPUT, "%s: labels must be integer class ids (int64 or int32), not %s", path,
                          ba_dtype_name(t->dtype));
    else if (!(t->ndim == 1 || (t->ndim == 2 && t->shape[1] == 1)))
        st = ba_error_set(err, BA_ERR_INPUT, "%s: labels must have shape (N,) or (N, 1), not %s", path,
                          ba_shape_str(t->ndim, t->shape, sb, sizeof sb));
    int64_t *l = NULL;
    if (st == BA_OK && !(l = ba_malloc((size_t)t->numel * sizeof *l, err))) st = BA_ERR_NOMEM;
    for (int64_t i = 0; st == BA_OK && i < t->numel; i++) {
        l[i] = ba_tensor_get_i64(t, i);
        if (l[i] < 0)
            st = ba_error_set(err, BA_ERR_INPUT, "%s: label %lld at row %lld is negative (class ids are >= 0)", path,
                              (long long)l[i], (long long)i);
    }
    if (st == BA_OK) {
        *labels = l;
        *n = t->numel;
    } else {
        free(l);
    }
    ba_tensor_unref(t);
    return st;
}
