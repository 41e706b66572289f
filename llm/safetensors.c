#include "llm/safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const struct {
    const char *name;
    size_t size;
} DTYPES[BA_ST_NDTYPES] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},  {"I32", 4},     {"I16", 2},     {"I8", 1},
    {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1},   {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
};

const char *ba_st_dtype_name(ba_st_dtype d) {
    return d < BA_ST_NDTYPES ? DTYPES[d].name : "?";
}
size_t ba_st_dtype_size(ba_st_dtype d) {
    return d < BA_ST_NDTYPES ? DTYPES[d].size : 0;
}

void ba_safetensors_free(ba_safetensors_t *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) free(s->t[i].name);
    free(s->t);
    for (int i = 0; i < s->n_files; i++) {
        free(s->paths[i]);
        if (s->maps) ba_file_unmap(&s->maps[i]);
    }
    free(s->paths);
    free(s->maps);
    free(s);
}

const ba_st_tensor_t *ba_safetensors_find(const ba_safetensors_t *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->t[i].name, name) == 0) return &s->t[i];
    return NULL;
}

static int cmp_begin(const void *a, const void *b) {
    const ba_st_tensor_t *x = a, *y = b;
    uint64_t bx = (uint64_t)(uintptr_t)x->data, by = (uint64_t)(uintptr_t)y->data;
    return bx < by ? -1 : bx > by;
}

/* Appends the tensors of one file (data/size) to s, tagged with file index fi. */
static ba_status parse_file(const uint8_t *data, size_t size, const char *name, int fi, ba_safetensors_t *s,
                            ba_error *err) {
    if (size < 8)
        return ba_error_set(err, BA_ERR_INPUT, "%s: header length: truncated file (%zu bytes)", name, size);
    uint64_t n;
    memcpy(&n, data, 8);
    if (n > size - 8)
        return ba_error_set(err, BA_ERR_INPUT, "%s: header length %llu runs past the end of the file", name,
                            (unsigned long long)n);
    if (n > BA_ST_MAX_HEADER)
        return ba_error_set(err, BA_ERR_INPUT, "%s: header length %llu above the 100 MB limit", name,
                            (unsigned long long)n);
    if (n < 2 || data[8] != '{')
        return ba_error_set(err, BA_ERR_INPUT, "%s: header: does not start with '{'", name);
    const uint8_t *base = data + 8 + n;
    uint64_t dsize = size - 8 - n;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return ba_error_set(err, BA_ERR_INPUT, "%s: header: bad JSON: %s (line %d)", name, jerr.text,
                            jerr.line);
    ba_status st = BA_OK;
    int first = s->n;
    if (!json_is_object(root)) {
        st = ba_error_set(err, BA_ERR_INPUT, "%s: header: not a JSON object", name);
        goto done;
    }
    size_t cnt = json_object_size(root);
    ba_st_tensor_t *t = ba_realloc(s->t, ((size_t)s->n + cnt + 1) * sizeof *t, err);
    if (!t) {
        st = err->code;
        goto done;
    }
    s->t = t;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v)) {
                st = ba_error_set(err, BA_ERR_INPUT, "%s: __metadata__: not an object", name);
                goto done;
            }
            continue;
        }
        if (strlen(key) == 0) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: header: empty tensor name", name);
            goto done;
        }
        const char *shown = key;
        if (!json_is_object(v)) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%.200s': not an object", name, shown);
            goto done;
        }
        json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
               *off = json_object_get(v, "data_offsets");
        if (!json_is_string(dt) || !json_is_array(sh) || !json_is_array(off) || json_array_size(off) != 2) {
            st = ba_error_set(
                err, BA_ERR_INPUT,
                "%s: tensor '%.200s': needs dtype (string), shape (array) and data_offsets ([begin, end])",
                name, shown);
            goto done;
        }
        ba_st_tensor_t *x = &s->t[s->n];
        memset(x, 0, sizeof *x);
        int d;
        for (d = 0; d < BA_ST_NDTYPES; d++)
            if (strcmp(json_string_value(dt), DTYPES[d].name) == 0) break;
        if (d == BA_ST_NDTYPES) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%.200s': unknown dtype '%.40s'", name, shown,
                              json_string_value(dt));
            goto done;
        }
        x->dtype = (ba_st_dtype)d;
        size_t nd = json_array_size(sh);
        if (nd > BA_ST_MAX_DIMS) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%.200s': %zu dimensions (at most 8)", name,
                              shown, nd);
            goto done;
        }
        uint64_t numel = 1;
        for (size_t i = 0; i < nd; i++) {
            json_t *e = json_array_get(sh, i);
            if (!json_is_integer(e) || json_integer_value(e) < 0) {
                st = ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%.200s': shape[%zu] is not a size", name,
                                  shown, i);
                goto done;
            }
            x->shape[i] = (int64_t)json_integer_value(e);
            if (__builtin_mul_overflow(numel, (uint64_t)x->shape[i], &numel)) {
                st = ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%.200s': element count overflows", name,
                                  shown);
                goto done;
            }
        }
        x->n_dims = (int)nd;
        json_t *b = json_array_get(off, 0), *e = json_array_get(off, 1);
        if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
            json_integer_value(e) < json_integer_value(b)) {
            st = ba_error_set(err, BA_ERR_INPUT,
                              "%s: tensor '%.200s': data_offsets are not 0 <= begin <= end", name, shown);
            goto done;
        }
        uint64_t ob = (uint64_t)json_integer_value(b), oe = (uint64_t)json_integer_value(e);
        if (oe > dsize) {
            st = ba_error_set(err, BA_ERR_INPUT,
                              "%s: tensor '%.200s': data_offsets end %llu runs past the data (%llu bytes)",
                              name, shown, (unsigned long long)oe, (unsigned long long)dsize);
            goto done;
        }
        uint64_t want;
        if (__builtin_mul_overflow(numel, (uint64_t)DTYPES[d].size, &want) || want != oe - ob) {
            st = ba_error_set(err, BA_ERR_INPUT,
                              "%s: tensor '%.200s': data_offsets span %llu bytes, shape and dtype need %llu",
                              name, shown, (unsigned long long)(oe - ob), (unsigned long long)want);
            goto done;
        }
        x->nbytes = want;
        x->data = base + ob;
        x->file = fi;
        x->name = ba_strdup(key, err);
        if (!x->name) {
            st = err->code;
            goto done;
        }
        s->n++;
    }
    /* No holes, no overlap: sorted by begin, the tensors tile the data section. */
    {
        int k = s->n - first;
        ba_st_tensor_t *sorted = ba_malloc((size_t)(k ? k : 1) * sizeof *sorted, err);
        if (!sorted) {
            st = err->code;
            goto done;
        }
        memcpy(sorted, s->t + first, (size_t)k * sizeof *sorted);
        qsort(sorted, (size_t)k, sizeof *sorted, cmp_begin);
        const uint8_t *at = base;
        for (int i = 0; i < k && st == BA_OK; i++) {
            if (sorted[i].data != at)
                st = ba_error_set(err, BA_ERR_INPUT,
                                  "%s: tensor '%.200s': data_offsets leave a hole or overlap another tensor",
                                  name, sorted[i].name);
            at = sorted[i].data + sorted[i].nbytes;
        }
        if (st == BA_OK && (uint64_t)(at - base) != dsize)
            st = ba_error_set(err, BA_ERR_INPUT, "%s: data: %llu bytes after the last tensor", name,
                              (unsigned long long)(dsize - (uint64_t)(at - base)));
        free(sorted);
    }
done:
    json_decref(root);
    return st;
}

static ba_status add_file(ba_safetensors_t *s, const char *path, ba_error *err) {
    char **p = ba_realloc(s->paths, ((size_t)s->n_files + 1) * sizeof *p, err);
    if (!p) return err->code;
    s->paths = p;
    ba_mapped_t *m = ba_realloc(s->maps, ((size_t)s->n_files + 1) * sizeof *m, err);
    if (!m) return err->code;
    s->maps = m;
    s->paths[s->n_files] = ba_strdup(path, err);
    if (!s->paths[s->n_files]) return err->code;
    memset(&s->maps[s->n_files], 0, sizeof *m);
    s->n_files++;
    return BA_OK;
}

ba_status ba_safetensors_parse(const uint8_t *data, size_t size, const char *name, ba_safetensors_t **out,
                               ba_error *err) {
    *out = NULL;
    ba_safetensors_t *s = ba_calloc(1, sizeof *s, err);
    if (!s) return err->code;
    ba_status st = add_file(s, name, err);
    if (st == BA_OK) st = parse_file(data, size, name, 0, s, err);
    if (st != BA_OK) {
        ba_safetensors_free(s);
        return st;
    }
    *out = s;
    return BA_OK;
}

ba_status ba_safetensors_parse_index(const char *json, size_t len, const char *name, char ***files,
                                     int *n_files, ba_error *err) {
    *files = NULL;
    *n_files = 0;
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return ba_error_set(err, BA_ERR_INPUT, "%s: bad JSON: %s (line %d)", name, jerr.text, jerr.line);
    ba_status st = BA_OK;
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm)) {
        st = ba_error_set(err, BA_ERR_INPUT, "%s: weight_map: missing or not an object", name);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v) {
        const char *f = json_string_value(v);
        if (!f || !*f || strchr(f, '/') || strcmp(f, ".") == 0 || strcmp(f, "..") == 0) {
            st = ba_error_set(err, BA_ERR_INPUT, "%s: weight_map '%.200s': not a plain file name", name, key);
            goto done;
        }
        int seen = 0;
        for (int i = 0; i < *n_files && !seen; i++) seen = strcmp((*files)[i], f) == 0;
        if (seen) continue;
        char **nf = ba_realloc(*files, ((size_t)*n_files + 1) * sizeof *nf, err);
        if (!nf) {
            st = err->code;
            goto done;
        }
        *files = nf;
        if (!((*files)[*n_files] = ba_strdup(f, err))) {
            st = err->code;
            goto done;
        }
        (*n_files)++;
    }
    if (*n_files == 0) st = ba_error_set(err, BA_ERR_INPUT, "%s: weight_map: empty", name);
done:
    json_decref(root);
    if (st != BA_OK) {
        for (int i = 0; i < *n_files; i++) free((*files)[i]);
        free(*files);
        *files = NULL;
        *n_files = 0;
    }
    return st;
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

static ba_status open_one(ba_safetensors_t *s, const char *path, ba_error *err) {
    BA_TRY(add_file(s, path, err));
    int fi = s->n_files - 1;
    BA_TRY(ba_file_map(path, &s->maps[fi], err));
    return parse_file(s->maps[fi].data, s->maps[fi].size, path, fi, s, err);
}

ba_status ba_safetensors_open(const char *path, ba_safetensors_t **out, ba_error *err) {
    *out = NULL;
    ba_safetensors_t *s = ba_calloc(1, sizeof *s, err);
    if (!s) return err->code;
    ba_status st = BA_OK;
    char *index = NULL, *dir = NULL;
    char **files = NULL;
    int n_files = 0;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        st = ba_error_set(err, BA_ERR_INPUT, "%s: no such file or folder", path);
        goto done;
    }
    size_t cap = strlen(path) + 64;
    if (S_ISDIR(sb.st_mode)) {
        index = ba_malloc(cap, err);
        if (!index) {
            st = err->code;
            goto done;
        }
        snprintf(index, cap, "%s/model.safetensors.index.json", path);
        if (stat(index, &sb) != 0) {
            snprintf(index, cap, "%s/model.safetensors", path);
            if (stat(index, &sb) != 0) {
                st = ba_error_set(err, BA_ERR_INPUT,
                                  "%s: holds neither model.safetensors.index.json nor model.safetensors",
                                  path);
                goto done;
            }
            st = open_one(s, index, err);
            goto done;
        }
    } else if (ends_with(path, ".json")) {
        index = ba_strdup(path, err);
        if (!index) {
            st = err->code;
            goto done;
        }
    } else {
        st = open_one(s, path, err);
        goto done;
    }
    {
        uint8_t *text;
        size_t len;
        if ((st = ba_file_read(index, &text, &len, err)) != BA_OK) goto done;
        st = ba_safetensors_parse_index((const char *)text, len, index, &files, &n_files, err);
        free(text);
        if (st != BA_OK) goto done;
        dir = ba_malloc(strlen(index) + 1, err);
        if (!dir) {
            st = err->code;
            goto done;
        }
        ba_path_dirname(index, dir, strlen(index) + 1);
        for (int i = 0; i < n_files && st == BA_OK; i++) {
            size_t pc = strlen(dir) + strlen(files[i]) + 2;
            char *p = ba_malloc(pc, err);
            if (!p) {
                st = err->code;
                break;
            }
            snprintf(p, pc, "%s/%s", dir, files[i]);
            st = open_one(s, p, err);
            free(p);
        }
        if (st != BA_OK) goto done;
        /* Every tensor of the index is in the shard it names, and no tensor is in two shards. */
        json_error_t jerr;
        if ((st = ba_file_read(index, &text, &len, err)) != BA_OK) goto done;
        json_t *root = json_loadb((const char *)text, len, 0, &jerr);
        free(text);
        json_t *wm = json_object_get(root, "weight_map");
        const char *key;
        json_t *v;
        json_object_foreach(wm, key, v) {
            const ba_st_tensor_t *t = ba_safetensors_find(s, key);
            const char *f = json_string_value(v);
            const char *tf = t ? strrchr(s->paths[t->file], '/') : NULL;
            if (!t || strcmp(tf ? tf + 1 : s->paths[t->file], f) != 0) {
                st = ba_error_set(err, BA_ERR_INPUT, "%s: weight_map '%.200s': not found in %s", index, key,
                                  f);
                break;
            }
        }
        json_decref(root);
        for (int i = 0; i < s->n && st == BA_OK; i++)
            for (int j = i + 1; j < s->n; j++)
                if (s->t[i].file != s->t[j].file && strcmp(s->t[i].name, s->t[j].name) == 0) {
                    st = ba_error_set(err, BA_ERR_INPUT, "%s: tensor '%s' is in two shards", index,
                                      s->t[i].name);
                    break;
                }
    }
done:
    free(index);
    free(dir);
    for (int i = 0; i < n_files; i++) free(files[i]);
    free(files);
    if (st != BA_OK) {
        ba_safetensors_free(s);
        return st;
    }
    *out = s;
    return BA_OK;
}

int ba_hf_to_gguf_name(const char *hf, char *out, size_t cap) {
    static const char *const top[][2] = {
        {"model.embed_tokens.", "token_embd."}, {"model.norm.", "output_norm."}, {"lm_head.", "output."}};
    static const char *const blk[][2] = {
        {"input_layernorm.", "attn_norm."}, {"post_attention_layernorm.", "ffn_norm."},
        {"self_attn.q_proj.", "attn_q."},   {"self_attn.k_proj.", "attn_k."},
        {"self_attn.v_proj.", "attn_v."},   {"self_attn.o_proj.", "attn_output."},
        {"mlp.gate_proj.", "ffn_gate."},    {"mlp.up_proj.", "ffn_up."},
        {"mlp.down_proj.", "ffn_down."}};
    const char *suffix = NULL;
    if (ends_with(hf, ".weight"))
        suffix = "weight";
    else if (ends_with(hf, ".bias"))
        suffix = "bias";
    if (!suffix) return -1;
    size_t stem = strlen(hf) - strlen(suffix);
    int w;
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (strlen(top[i][0]) == stem && strncmp(hf, top[i][0], stem) == 0) {
            w = snprintf(out, cap, "%s%s", top[i][1], suffix);
            return w < 0 || (size_t)w >= cap ? -1 : 0;
        }
    const char *p = "model.layers.";
    if (strncmp(hf, p, strlen(p)) != 0) return -1;
    const char *q = hf + strlen(p);
    long layer = 0;
    int digits = 0;
    while (*q >= '0' && *q <= '9' && digits < 9) {
        layer = layer * 10 + (*q - '0');
        q++;
        digits++;
    }
    if (digits == 0 || *q != '.' || (digits > 1 && hf[strlen(p)] == '0')) return -1;
    q++;
    size_t rest = stem - (size_t)(q - hf);
    for (size_t i = 0; i < sizeof blk / sizeof blk[0]; i++)
        if (strlen(blk[i][0]) == rest && strncmp(q, blk[i][0], rest) == 0) {
            w = snprintf(out, cap, "blk.%ld.%s%s", layer, blk[i][1], suffix);
            return w < 0 || (size_t)w >= cap ? -1 : 0;
        }
    return -1;
}
