/* Layer names for the tools that read exports (see namemap.h). */
#include "quant/namemap.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

void ba_namemap_free(ba_namemap_t *map) {
    if (!map) return;
    for (int i = 0; i < map->n; i++) {
        free(map->from[i]);
        free(map->to[i]);
    }
    free(map->from);
    free(map->to);
    free(map);
}

const char *ba_namemap_get(const ba_namemap_t *map, const char *key) {
    for (int i = 0; map && key && i < map->n; i++)
        if (strcmp(map->from[i], key) == 0) return map->to[i];
    return NULL;
}

static ba_status map_add(ba_namemap_t *map, const char *from, const char *to, int *cap, const char *path,
                         const char *where, ba_error *err) {
    if (!from[0] || !to[0]) return ba_error_set(err, BA_ERR_INPUT, "%s: %s: an empty name", path, where);
    if (ba_namemap_get(map, from))
        return ba_error_set(err, BA_ERR_INPUT, "%s: %s: '%s' is mapped twice", path, where, from);
    if (map->n == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        char **f = ba_realloc(map->from, (size_t)nc * sizeof *f, err);
        if (!f) return BA_ERR_NOMEM;
        map->from = f;
        char **t = ba_realloc(map->to, (size_t)nc * sizeof *t, err);
        if (!t) return BA_ERR_NOMEM;
        map->to = t;
        *cap = nc;
    }
    map->from[map->n] = ba_strdup(from, err);
    map->to[map->n] = ba_strdup(to, err);
    if (!map->from[map->n] || !map->to[map->n]) {
        free(map->from[map->n]);
        free(map->to[map->n]);
        return BA_ERR_NOMEM;
    }
    map->n++;
    return BA_OK;
}

static ba_status load_json(const char *text, const char *path, ba_namemap_t *map, ba_error *err) {
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return ba_error_set(err, BA_ERR_INPUT, "%s: not a JSON object of names (%s)", path,
                            root ? "wrong type" : je.text);
    }
    int cap = 0;
    ba_status st = BA_OK;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (st != BA_OK) break;
        char where[64];
        snprintf(where, sizeof where, "key %.40s", k);
        if (!json_is_string(v))
            st = ba_error_set(err, BA_ERR_INPUT, "%s: '%s': expected a string name", path, k);
        else
            st = map_add(map, k, json_string_value(v), &cap, path, where, err);
    }
    json_decref(root);
    return st;
}

/* One CSV field starting at *p (RFC 4180); advances *p past it and its comma. */
static size_t csv_field(const char **p, char *out, size_t cap) {
    const char *s = *p;
    size_t o = 0;
    if (*s == '"') {
        s++;
        while (*s && !(*s == '"' && s[1] != '"')) {
            if (*s == '"') s++; /* a doubled quote */
            if (o + 1 < cap) out[o++] = *s;
            s++;
        }
        if (*s == '"') s++;
    } else {
        while (*s && *s != ',') {
            if (o + 1 < cap) out[o++] = *s;
            s++;
        }
    }
    out[o] = '\0';
    if (*s == ',') s++;
    *p = s;
    return o;
}

static ba_status load_csv(char *text, const char *path, ba_namemap_t *map, ba_error *err) {
    int cap = 0, lineno = 0;
    ba_status st = BA_OK;
    char *line = text;
    while (st == BA_OK && line && *line) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        lineno++;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r') line[--len] = '\0';
        if (len && line[0] != '#') {
            char from[1024], to[1024], where[32];
            const char *p = line;
            csv_field(&p, from, sizeof from);
            csv_field(&p, to, sizeof to);
            snprintf(where, sizeof where, "line %d", lineno);
            if (lineno == 1 && strcmp(from, "onnx") == 0) {
                /* header */
            } else if (*p) {
                st = ba_error_set(err, BA_ERR_INPUT, "%s: line %d: expected two fields (onnx name,name)",
                                  path, lineno);
            } else {
                st = map_add(map, from, to, &cap, path, where, err);
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    return st;
}

ba_status ba_namemap_load(const char *path, ba_namemap_t **out, ba_error *err) {
    *out = NULL;
    uint8_t *data;
    size_t n;
    if (ba_file_read(path, &data, &n, err) != BA_OK) {
        char why[BA_ERROR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err->msg);
        return ba_error_set(err, BA_ERR_INPUT, "--name-map: %s", why);
    }
    char *text = ba_malloc(n + 1, err);
    if (!text) {
        free(data);
        return BA_ERR_NOMEM;
    }
    memcpy(text, data, n);
    text[n] = '\0';
    free(data);
    if (strlen(text) != n) {
        free(text);
        return ba_error_set(err, BA_ERR_INPUT, "%s: a name map is text (it holds a NUL byte)", path);
    }
    ba_namemap_t *map = ba_calloc(1, sizeof *map, err);
    ba_status st = map ? BA_OK : BA_ERR_NOMEM;
    const char *first = text + strspn(text, " \t\r\n");
    if (st == BA_OK) st = *first == '{' ? load_json(text, path, map, err) : load_csv(text, path, map, err);
    free(text);
    if (st != BA_OK) {
        ba_namemap_free(map);
        return st;
    }
    *out = map;
    return BA_OK;
}

int ba_namemap_scope(const char *node_name, char *buf, size_t cap) {
    buf[0] = '\0';
    if (!node_name || !strchr(node_name, '/')) return 0;
    int torch = node_name[0] == '/';
    const char *s = node_name + torch;
    static const char tf_prefix[] = "StatefulPartitionedCall/";
    if (!torch && strncmp(s, tf_prefix, sizeof tf_prefix - 1) == 0) s += sizeof tf_prefix - 1;
    const char *last = strrchr(s, '/');
    if (!last || last == s) return 0; /* only the op's own name: no scope */
    size_t o = 0, prev = 0;           /* prev: where the previous segment starts in buf */
    int overflow = 0;
    for (const char *seg = s; seg < last;) {
        const char *end = strchr(seg, '/');
        size_t n = (size_t)(end - seg);
        if (n == 0) {
            seg = end + 1;
            continue;
        }
        size_t plen = o - prev;
        /* torch.onnx names a Sequential's child "<seq>.<k>" after the segment "<seq>". */
        if (torch && o > 0 && n > plen && strncmp(seg, buf + prev, plen) == 0 && seg[plen] == '.') {
            o = prev;
        } else if (o > 0) {
            if (o + 1 >= cap)
                overflow = 1;
            else
                buf[o++] = '.';
        }
        prev = o;
        if (o + n >= cap)
            overflow = 1;
        else {
            memcpy(buf + o, seg, n);
            o += n;
        }
        buf[o < cap ? o : cap - 1] = '\0';
        seg = end + 1;
    }
    if (overflow || o == 0) {
        buf[0] = '\0';
        return 0;
    }
    return 1;
}

/* "<module>.weight" (torch) or "<layer>.w_0" (paddle): the module part. */
static int param_module(const char *name, char *buf, size_t cap) {
    static const char *const suffixes[] = {".weight", ".w_0"};
    size_t n = strlen(name);
    for (size_t k = 0; k < sizeof suffixes / sizeof suffixes[0]; k++) {
        size_t s = strlen(suffixes[k]);
        if (n > s && strcmp(name + n - s, suffixes[k]) == 0 && n - s < cap && !strstr(name, "::")) {
            memcpy(buf, name, n - s);
            buf[n - s] = '\0';
            return 1;
        }
    }
    return 0;
}

ba_name_src_t ba_namemap_layer(const ba_model_t *m, int li, const ba_namemap_t *map, char *buf, size_t cap) {
    const ba_layer_t *l = &m->layers[li];
    const char *node = l->node >= 0 && l->node < m->nnodes ? m->nodes[l->node].name : NULL;
    const char *v = ba_namemap_get(map, l->name);
    if (!v) v = ba_namemap_get(map, node);
    if (v) {
        snprintf(buf, cap, "%s", v);
        return BA_NAME_MAP;
    }
    if (param_module(l->name, buf, cap)) return BA_NAME_PARAM;
    if (ba_namemap_scope(node, buf, cap)) return BA_NAME_SCOPE;
    buf[0] = '\0';
    return BA_NAME_NONE;
}
