/* Datasets of named model inputs from --data specs, sample batches, and
 * --labels loading. Inputs are copied once into owned tensors; batches along
 * sample axis 0 share that memory so evaluating a batch never copies the data
 * again (another sample axis, e.g. an RNN state [layers, B, H], is copied per
 * batch). Constants (0-d) are fed whole with every batch. */
#include "eval/dataset.h"

#include <errno.h>
#include <float.h>
#include <math.h>
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
    char *path; /* the file, or the whole spec NAME=TYPE:VALUE of a constant */
    ba_tensor_t *t;
    int axis; /* sample axis; -1: a constant (0-d), fed whole */
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

int64_t ba_dataset_samples(const ba_dataset_t *ds) {
    return ds->samples;
}
int ba_dataset_count(const ba_dataset_t *ds) {
    return ds->count;
}
const char *ba_dataset_name(const ba_dataset_t *ds, int idx) {
    return idx >= 0 && idx < ds->count ? ds->in[idx].name : NULL;
}
const char *ba_dataset_path(const ba_dataset_t *ds, int idx) {
    return idx >= 0 && idx < ds->count ? ds->in[idx].path : NULL;
}
int ba_dataset_sample_axis(const ba_dataset_t *ds, int idx) {
    return idx >= 0 && idx < ds->count ? ds->in[idx].axis : -1;
}
const ba_tensor_t *ba_dataset_tensor(const ba_dataset_t *ds, int idx) {
    return idx >= 0 && idx < ds->count ? ds->in[idx].t : NULL;
}
int ba_dataset_find(const ba_dataset_t *ds, const char *name) {
    for (int i = 0; i < ds->count; i++)
        if (ds->in[i].name && name && strcmp(ds->in[i].name, name) == 0) return i;
    return -1;
}
void ba_dataset_sha256(const ba_dataset_t *ds, char hex[65]) {
    memcpy(hex, ds->sha, SHA256_HEX);
}

/* NaN/Inf in calibration data is refused at load (SPEC §1), so no command —
 * eval, sensitivity, search — ever computes on it. */
static ba_status check_finite(const ba_tensor_t *t, const char *path, const char *name, ba_error *err) {
    if (!ba_dtype_is_float(t->dtype)) return BA_OK;
    for (int64_t i = 0; i < t->numel; i++) {
        double v = ba_tensor_get_f64(t, i);
        if (!isfinite(v))
            return ba_error_set(err, BA_ERR_INPUT,
                                "%s: input '%s': element %lld is %s (NaN/Inf in data is refused)", path,
                                name ? name : "(first)", (long long)i,
                                isnan(v) ? "NaN"
                                : v > 0  ? "+Inf"
                                         : "-Inf");
    }
    return BA_OK;
}

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
    in->axis = t->ndim == 0 ? -1 : 0;
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

/* ---- constants: TYPE:VALUE ---- */

static const struct {
    const char *name;
    ba_dtype dt;
} CONST_TYPES[] = {{"float32", BA_DT_F32},
                   {"float64", BA_DT_F64},
                   {"int64", BA_DT_I64},
                   {"int32", BA_DT_I32},
                   {"uint8", BA_DT_U8}};
#define NCONST_TYPES (sizeof CONST_TYPES / sizeof CONST_TYPES[0])

/* The dtype named by text[0, len), or BA_DT_UNDEFINED. */
static ba_dtype const_type(const char *text, size_t len) {
    for (size_t i = 0; i < NCONST_TYPES; i++)
        if (strlen(CONST_TYPES[i].name) == len && !strncmp(text, CONST_TYPES[i].name, len))
            return CONST_TYPES[i].dt;
    return BA_DT_UNDEFINED;
}

ba_status ba_dataset_parse_const(const char *text, ba_tensor_t **out, ba_error *err) {
    *out = NULL;
    const char *colon = strchr(text, ':');
    ba_dtype dt = colon ? const_type(text, (size_t)(colon - text)) : BA_DT_UNDEFINED;
    if (dt == BA_DT_UNDEFINED)
        return ba_error_set(err, BA_ERR_INPUT, "'%s': a constant is TYPE:VALUE with TYPE one of %s", text,
                            BA_DATASET_CONST_TYPES);
    const char *v = colon + 1;
    char *end = NULL;
    errno = 0;
    double f = 0;
    long long i = 0;
    int is_float = ba_dtype_is_float(dt);
    if (is_float)
        f = strtod(v, &end);
    else
        i = strtoll(v, &end, 10);
    if (!*v || end == v || *end || errno == ERANGE || (is_float && !isfinite(f)))
        return ba_error_set(err, BA_ERR_INPUT, "'%s': '%s' is not a finite %s %s", text, v,
                            is_float ? "number for" : "integer for", ba_dtype_name(dt));
    if ((dt == BA_DT_F32 && fabs(f) > FLT_MAX) || (dt == BA_DT_I32 && (i < INT32_MIN || i > INT32_MAX)) ||
        (dt == BA_DT_U8 && (i < 0 || i > UINT8_MAX)))
        return ba_error_set(err, BA_ERR_INPUT, "'%s': %s does not fit in %s", text, v, ba_dtype_name(dt));
    ba_tensor_t *t = ba_tensor_new(dt, 0, NULL, err);
    if (!t) return err->code;
    switch (dt) {
    case BA_DT_F32: *(float *)t->data = (float)f; break;
    case BA_DT_F64: *(double *)t->data = f; break;
    case BA_DT_I64: *(int64_t *)t->data = i; break;
    case BA_DT_I32: *(int32_t *)t->data = (int32_t)i; break;
    default: *(uint8_t *)t->data = (uint8_t)i; break;
    }
    *out = t;
    return BA_OK;
}

int ba_dataset_spec_is_const(const char *value) {
    struct stat st;
    if (!value || stat(value, &st) == 0) return 0;
    const char *colon = strchr(value, ':');
    return colon && const_type(value, (size_t)(colon - value)) != BA_DT_UNDEFINED;
}

/* "word:…" naming no file: meant as a constant (a bad TYPE gets the list of types). */
static int looks_const(const char *value) {
    struct stat st;
    size_t w = strspn(value, "abcdefghijklmnopqrstuvwxyz0123456789");
    return w > 0 && value[w] == ':' && stat(value, &st) != 0;
}

/* "NAME=TYPE:VALUE": a 0-d constant input; its digest line holds the value, canonical. */
static ba_status load_const(ba_dataset_t *ds, const char *spec, const char *name, const char *value,
                            ba_sha256_t *digest, ba_error *err) {
    if (!name)
        return ba_error_set(err, BA_ERR_INPUT, "--data %s: a constant needs the input's name: NAME=%s", spec,
                            value);
    ba_tensor_t *t = NULL;
    if (ba_dataset_parse_const(value, &t, err) != BA_OK) return ba_error_prefix(err, "--data %s", spec);
    char line[160];
    if (ba_dtype_is_float(t->dtype))
        snprintf(line, sizeof line, " const %s:%.17g\n", ba_dtype_name(t->dtype), ba_tensor_get_f64(t, 0));
    else
        snprintf(line, sizeof line, " const %s:%lld\n", ba_dtype_name(t->dtype),
                 (long long)ba_tensor_get_i64(t, 0));
    ba_sha256_update(digest, name, strlen(name));
    ba_sha256_update(digest, line, strlen(line));
    return ds_add(ds, name, spec, t, err);
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
    ba_status st;
    if (name && !wanted(name, names, nnames)) {
        st = ba_error_set(err, BA_ERR_INPUT, "--data %s: the model has no input named '%s'", spec, name);
        free(name);
        free(path);
        return st;
    }
    if (ba_dataset_spec_is_const(path) || looks_const(path)) {
        st = load_const(ds, spec, name, path, digest, err);
        free(name);
        free(path);
        return st;
    }
    ba_mapped_t m;
    st = ba_file_map(path, &m, err);
    if (st != BA_OK) goto done;
    char hex[SHA256_HEX];
    ba_sha256_hex(m.data ? m.data : "", m.size, hex);
    const uint8_t *b = m.data;
    if (m.size >= ZIP_MAGIC_LEN && memcmp(b, ZIP_MAGIC, ZIP_MAGIC_LEN) == 0) {
        if (name) {
            st = ba_error_set(err, BA_ERR_INPUT,
                              "--data %s: an .npz names its inputs by its members; give it without 'name='",
                              spec);
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

static const char *in_name(const ds_input *in) {
    return in->name ? in->name : "(first)";
}

/* --sample-axis NAME=K: moves input NAME's sample axis to K. */
static ba_status apply_axis(ba_dataset_t *ds, const char *spec, ba_error *err) {
    const char *eq = strrchr(spec, '=');
    char *end = NULL;
    errno = 0;
    long k = eq && eq[1] >= '0' && eq[1] <= '9' ? strtol(eq + 1, &end, 10) : -1;
    if (!eq || eq == spec || k < 0 || *end || errno)
        return ba_error_set(err, BA_ERR_INPUT, "--sample-axis %s: expected NAME=K (K an axis number >= 0)",
                            spec);
    int idx = -1;
    for (int i = 0; i < ds->count; i++)
        if (ds->in[i].name && strlen(ds->in[i].name) == (size_t)(eq - spec) &&
            !strncmp(ds->in[i].name, spec, (size_t)(eq - spec)))
            idx = i;
    if (idx < 0)
        return ba_error_set(err, BA_ERR_INPUT, "--sample-axis %s: no --data input named '%.*s'", spec,
                            (int)(eq - spec), spec);
    ds_input *in = &ds->in[idx];
    char sb[160];
    if (in->t->ndim == 0)
        return ba_error_set(err, BA_ERR_INPUT,
                            "--sample-axis %s: input '%s' is a constant (0-d); it has no sample axis", spec,
                            in->name);
    if (k >= in->t->ndim)
        return ba_error_set(err, BA_ERR_INPUT,
                            "--sample-axis %s: input '%s' has shape %s (%s): its sample axis must be 0..%d",
                            spec, in->name, ba_shape_str(in->t->ndim, in->t->shape, sb, sizeof sb), in->path,
                            in->t->ndim - 1);
    in->axis = (int)k;
    return BA_OK;
}

ba_status ba_dataset_load(const char *const *specs, int nspecs, ba_dataset_t **out, ba_error *err) {
    return ba_dataset_load_axes_for(specs, nspecs, NULL, 0, NULL, 0, out, err);
}

ba_status ba_dataset_load_axes(const char *const *specs, int nspecs, const char *const *axes, int naxes,
                               ba_dataset_t **out, ba_error *err) {
    return ba_dataset_load_axes_for(specs, nspecs, axes, naxes, NULL, 0, out, err);
}

ba_status ba_dataset_load_for(const char *const *specs, int nspecs, const char *const *names, int nnames,
                              ba_dataset_t **out, ba_error *err) {
    return ba_dataset_load_axes_for(specs, nspecs, NULL, 0, names, nnames, out, err);
}

ba_status ba_dataset_load_axes_for(const char *const *specs, int nspecs, const char *const *axes, int naxes,
                                   const char *const *names, int nnames, ba_dataset_t **out, ba_error *err) {
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
                              "%s: several inputs given; name each one as --data NAME=FILE.npy",
                              ds->in[i].path);
    for (int i = 0; st == BA_OK && i < ds->count; i++)
        st = check_finite(ds->in[i].t, ds->in[i].path, ds->in[i].name, err);
    for (int a = 0; st == BA_OK && a < naxes; a++) {
        for (int b = 0; b < a; b++) {
            const char *ea = strrchr(axes[a], '='), *eb = strrchr(axes[b], '=');
            if (ea && eb && ea - axes[a] == eb - axes[b] &&
                !strncmp(axes[a], axes[b], (size_t)(ea - axes[a])))
                st = ba_error_set(err, BA_ERR_INPUT, "--sample-axis: input '%.*s' is given twice",
                                  (int)(ea - axes[a]), axes[a]);
        }
        if (st == BA_OK) st = apply_axis(ds, axes[a], err);
    }
    /* Every input with a sample axis has the same number of samples along it. */
    int first = -1;
    for (int i = 0; st == BA_OK && i < ds->count; i++) {
        const ds_input *in = &ds->in[i];
        if (in->axis < 0) continue;
        if (first < 0) {
            first = i;
            continue;
        }
        const ds_input *f = &ds->in[first];
        if (in->t->shape[in->axis] != f->t->shape[f->axis])
            st = ba_error_set(
                err, BA_ERR_INPUT,
                "%s: input '%s' has %lld samples (axis %d) but %s ('%s') has %lld (axis %d): sample "
                "counts must agree (--sample-axis NAME=K picks another axis; a constant is a 0-d array or "
                "NAME=TYPE:VALUE)",
                in->path, in_name(in), (long long)in->t->shape[in->axis], in->axis, f->path, in_name(f),
                (long long)f->t->shape[f->axis], f->axis);
    }
    if (st == BA_OK && first < 0)
        st = ba_error_set(err, BA_ERR_INPUT,
                          "--data: every input is a constant (0-d); at least one needs a sample axis");
    if (st != BA_OK) {
        ba_dataset_free(ds);
        return st;
    }
    ds->samples = ds->in[first].t->shape[ds->in[first].axis];
    for (int i = 0; i < ds->count; i++) {
        if (ds->in[i].axis <= 0) continue;
        char line[64];
        snprintf(line, sizeof line, " %d\n", ds->in[i].axis);
        ba_sha256_update(&digest, "axis ", 5);
        ba_sha256_update(&digest, ds->in[i].name, strlen(ds->in[i].name));
        ba_sha256_update(&digest, line, strlen(line));
    }
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
        return ba_error_set(err, BA_ERR_INPUT, "%s: rows [%lld, %lld) outside the %lld samples",
                            ds->in[idx].path, (long long)start, (long long)start + count,
                            (long long)ds->samples);
    const ds_input *in = &ds->in[idx];
    *out =
        in->axis < 0 ? ba_tensor_clone(in->t, err) : ba_tensor_slice_axis(in->t, in->axis, start, count, err);
    return *out ? BA_OK : err->code;
}

ba_status ba_labels_load(const char *path, int64_t **labels, int64_t *n, ba_error *err) {
    *labels = NULL;
    *n = 0;
    ba_tensor_t *t = NULL;
    BA_TRY(ba_npy_load(path, &t, err));
    ba_status st = BA_OK;
    char sb[256];
    if (!ba_dtype_is_int(t->dtype))
        st = ba_error_set(err, BA_ERR_INPUT, "%s: labels must be integer class ids (int64 or int32), not %s",
                          path, ba_dtype_name(t->dtype));
    else if (!(t->ndim == 1 || (t->ndim == 2 && t->shape[1] == 1)))
        st = ba_error_set(err, BA_ERR_INPUT, "%s: labels must have shape (N,) or (N, 1), not %s", path,
                          ba_shape_str(t->ndim, t->shape, sb, sizeof sb));
    int64_t *l = NULL;
    if (st == BA_OK && !(l = ba_malloc((size_t)t->numel * sizeof *l, err))) st = BA_ERR_NOMEM;
    for (int64_t i = 0; st == BA_OK && i < t->numel; i++) {
        l[i] = ba_tensor_get_i64(t, i);
        if (l[i] < 0)
            st =
                ba_error_set(err, BA_ERR_INPUT, "%s: label %lld at row %lld is negative (class ids are >= 0)",
                             path, (long long)l[i], (long long)i);
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
