/* --config FILE.yaml: a mapping whose keys are the command's long flag names, read with
 * libfyaml into the same ba_cli_opts the argv parser fills (one validator for both).
 * Relative paths are rebased on the config file's folder; aliases are refused so a
 * hostile file cannot expand into gigabytes. See docs/config.md. */
#include <libfyaml.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

#define BA_CLI_PATH_MAX 4096
/* Slots of the duplicate-key set: a power of two, grown at half load. */
#define BA_CLI_KEYSET_MIN 64

/* The keys seen in one mapping. libfyaml's own duplicate check compares every
 * key with every other (quadratic in a big mapping), so it is turned off and the
 * duplicates are found here by hashing. */
typedef struct {
    char **slot;
    size_t cap, n;
} keyset_t;

static uint64_t key_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void keyset_free(keyset_t *ks) {
    for (size_t i = 0; i < ks->cap; i++) free(ks->slot[i]);
    free(ks->slot);
    memset(ks, 0, sizeof *ks);
}

static char **keyset_find(char **slot, size_t cap, const char *key) {
    size_t i = (size_t)key_hash(key) & (cap - 1);
    while (slot[i] && strcmp(slot[i], key) != 0) i = (i + 1) & (cap - 1);
    return &slot[i];
}

/* Adds key; *dup = 1 when it was there already. */
static ba_status keyset_add(keyset_t *ks, const char *key, int *dup, ba_error *err) {
    *dup = 0;
    if (2 * (ks->n + 1) > ks->cap) {
        size_t cap = ks->cap ? 2 * ks->cap : BA_CLI_KEYSET_MIN;
        char **slot = ba_calloc(cap, sizeof *slot, err);
        if (!slot) return BA_ERR_NOMEM;
        for (size_t i = 0; i < ks->cap; i++)
            if (ks->slot[i]) *keyset_find(slot, cap, ks->slot[i]) = ks->slot[i];
        free(ks->slot);
        ks->slot = slot;
        ks->cap = cap;
    }
    char **at = keyset_find(ks->slot, ks->cap, key);
    if (*at) {
        *dup = 1;
        return BA_OK;
    }
    if (!(*at = ba_strdup(key, err))) return BA_ERR_NOMEM;
    ks->n++;
    return BA_OK;
}

typedef struct {
    const ba_cli_command *cmd;
    const char *path; /* config file, for messages */
    char dir[BA_CLI_PATH_MAX];
    ba_cli_opts *o;
    ba_error *err;
} cfg_ctx;

/* 1-based line of a node (0 when unknown). */
static int node_line(struct fy_node *n) {
    struct fy_token *t = n && fy_node_get_type(n) == FYNT_SCALAR ? fy_node_get_scalar_token(n) : NULL;
    const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
    return m ? m->line + 1 : 0;
}

static ba_status cfg_fail(cfg_ctx *c, struct fy_node *at, const char *fmt, const char *a, const char *b) {
    char msg[BA_ERROR_MSG_MAX / 2];
    snprintf(msg, sizeof msg, fmt, a, b);
    int line = node_line(at);
    if (line) return ba_error_set(c->err, BA_ERR_INPUT, "%s:%d: %s", c->path, line, msg);
    return ba_error_set(c->err, BA_ERR_INPUT, "%s: %s", c->path, msg);
}

/* Scalar text of n (NUL-terminated copy into buf); NULL when n is not a plain scalar. */
static const char *scalar(struct fy_node *n, char *buf, size_t cap) {
    if (!n || fy_node_get_type(n) != FYNT_SCALAR || fy_node_is_alias(n)) return NULL;
    size_t len;
    const char *s = fy_node_get_scalar(n, &len);
    if (!s || len >= cap) return NULL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return buf;
}

static int is_path_like(const ba_cli_flag *f, const char *v) {
    if (f->type == BA_CLI_T_PATH || f->type == BA_CLI_T_DATA) return 1;
    return f->type == BA_CLI_T_HW && strchr(v, '/');
}

/* Rebases the file part of v (after "NAME=" for data) on the config folder. */
static ba_status rebase(cfg_ctx *c, const ba_cli_flag *f, const char *v, char *out, size_t cap) {
    const char *file = v;
    if (f->type == BA_CLI_T_DATA && ba_cli_merge_key(f, v)) file = strchr(v, '=') + 1;
    size_t pre = (size_t)(file - v);
    int n;
    /* A constant (NAME=TYPE:VALUE) is no path; a file of that name beside the config still is one. */
    char beside[BA_CLI_PATH_MAX * 2];
    snprintf(beside, sizeof beside, "%s/%s", c->dir, file);
    struct stat sb;
    int constant = f->type == BA_CLI_T_DATA && ba_dataset_spec_is_const(file) && stat(beside, &sb) != 0;
    if (constant || !is_path_like(f, v) || file[0] == '/' || strcmp(file, "-") == 0 ||
        strcmp(c->dir, ".") == 0)
        n = snprintf(out, cap, "%s", v);
    else
        n = snprintf(out, cap, "%.*s%s/%s", (int)pre, v, c->dir, file);
    if (n < 0 || (size_t)n >= cap)
        return ba_error_set(c->err, BA_ERR_INPUT, "%s: path too long: %s", c->path, v);
    return BA_OK;
}

static ba_status add_value(cfg_ctx *c, const ba_cli_flag *f, struct fy_node *at, const char *v) {
    char full[BA_CLI_PATH_MAX * 2];
    BA_TRY(rebase(c, f, v, full, sizeof full));
    if (ba_cli_check_value(f, full, c->err) != BA_OK) {
        char why[BA_ERROR_MSG_MAX];
        snprintf(why, sizeof why, "%s", c->err->msg);
        return cfg_fail(c, at, "%s%s", why, "");
    }
    return ba_cli_opts_add(c->o, f->name, f->type == BA_CLI_T_FLAG ? "1" : full, !(f->flags & BA_CLI_REPEAT),
                           c->err);
}

static int is_true(const char *s) {
    return !strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE") || !strcmp(s, "yes") ||
           !strcmp(s, "on") || !strcmp(s, "1");
}
static int is_false(const char *s) {
    return !strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE") || !strcmp(s, "no") ||
           !strcmp(s, "off") || !strcmp(s, "0");
}

static int takes_mapping(const ba_cli_flag *f) {
    return f->type == BA_CLI_T_BUDGET || f->type == BA_CLI_T_PIN || f->type == BA_CLI_T_SWEEP ||
           f->type == BA_CLI_T_DATA || f->type == BA_CLI_T_SHAPE || f->type == BA_CLI_T_AXIS;
}

static ba_status load_key(cfg_ctx *c, const char *key, struct fy_node *kn, struct fy_node *vn) {
    char buf[BA_CLI_PATH_MAX], kbuf[BA_CLI_PATH_MAX], joined[BA_CLI_PATH_MAX * 2];
    const ba_cli_flag *f = ba_cli_flag_find(c->cmd, key);
    if (!f || (f->flags & BA_CLI_NO_CONFIG))
        return cfg_fail(c, kn, "unknown key '%s' (not a flag of 'bitalloc %s')", key, c->cmd->name);
    if (!vn || fy_node_is_alias(vn))
        return cfg_fail(c, kn, "%s: %s", key, vn ? "aliases are not supported" : "needs a value");
    switch (fy_node_get_type(vn)) {
    case FYNT_SCALAR: {
        const char *v = scalar(vn, buf, sizeof buf);
        if (!v) return cfg_fail(c, vn, "%s: %s", key, "value too long");
        if (!*v && fy_node_get_style(vn) == FYNS_PLAIN)
            return cfg_fail(c, kn, "%s: %s", key, "needs a value");
        if (f->type == BA_CLI_T_FLAG) {
            if (is_false(v)) return BA_OK;
            if (!is_true(v)) return cfg_fail(c, vn, "%s: expected true or false, got '%s'", key, v);
        }
        return add_value(c, f, vn, v);
    }
    case FYNT_SEQUENCE: {
        int is_bits = f->type == BA_CLI_T_BITS;
        if (!(f->flags & BA_CLI_REPEAT) && !is_bits)
            return cfg_fail(c, kn, "%s: %s", key, "takes one value, not a list");
        joined[0] = '\0';
        void *it = NULL;
        struct fy_node *item;
        while ((item = fy_node_sequence_iterate(vn, &it))) {
            const char *v = scalar(item, buf, sizeof buf);
            if (!v) return cfg_fail(c, kn, "%s: %s", key, "list items must be plain values");
            if (is_bits) {
                size_t jl = strlen(joined);
                if (jl + strlen(v) + 2 >= sizeof joined)
                    return cfg_fail(c, kn, "%s: %s", key, "list too long");
                snprintf(joined + jl, sizeof joined - jl, "%s%s", jl ? "," : "", v);
            } else {
                BA_TRY(add_value(c, f, item, v));
            }
        }
        return is_bits ? add_value(c, f, kn, joined) : BA_OK;
    }
    case FYNT_MAPPING: {
        if (!takes_mapping(f)) return cfg_fail(c, kn, "%s: %s", key, "takes a value, not a mapping");
        if (!(f->flags & BA_CLI_REPEAT) && fy_node_mapping_item_count(vn) != 1)
            return cfg_fail(c, kn, "%s: %s", key, "takes exactly one KEY: VALUE entry");
        void *it = NULL;
        struct fy_node_pair *p;
        keyset_t seen = {0};
        ba_status st = BA_OK;
        while (st == BA_OK && (p = fy_node_mapping_iterate(vn, &it))) {
            struct fy_node *k2 = fy_node_pair_key(p), *v2 = fy_node_pair_value(p);
            const char *sk = scalar(k2, kbuf, sizeof kbuf), *sv = scalar(v2, buf, sizeof buf);
            int dup = 0;
            if (!sk || !sv || !*sk) {
                st = cfg_fail(c, k2 ? k2 : kn, "%s: %s", key, "mapping entries must be plain KEY: VALUE");
                break;
            }
            if (f->type == BA_CLI_T_SWEEP && !*sv) {
                st = cfg_fail(c, k2, "%s: %s", key, "needs a value");
                break;
            }
            st = keyset_add(&seen, sk, &dup, c->err);
            if (st == BA_OK && dup) st = cfg_fail(c, k2, "%s: duplicate key '%s'", key, sk);
            if (st != BA_OK) break;
            snprintf(joined, sizeof joined, "%s=%s", sk, sv);
            st = add_value(c, f, k2, joined);
        }
        keyset_free(&seen);
        return st;
    }
    }
    return cfg_fail(c, kn, "%s: %s", key, "unsupported value");
}

/* First collected parser diagnostic as "FILE:LINE:COL: malformed YAML: MSG" (libfyaml
 * reports collected diagnostics 1-based, unlike fy_mark). */
static ba_status yaml_error(cfg_ctx *c, struct fy_diag *diag) {
    void *it = NULL;
    struct fy_diag_error *e;
    while ((e = fy_diag_errors_iterate(diag, &it))) {
        if (e->type < FYET_ERROR) continue;
        return ba_error_set(c->err, BA_ERR_INPUT, "%s:%d:%d: malformed YAML: %s", c->path, e->line, e->column,
                            e->msg ? e->msg : "parse error");
    }
    return ba_error_set(c->err, BA_ERR_INPUT, "%s: malformed YAML", c->path);
}

/* 1 when text holds only blanks and comments (libfyaml builds no document from it). */
static int only_comments(const char *text) {
    for (const char *p = text; *p; p++) {
        if (*p == '#') {
            while (*p && *p != '\n') p++;
            if (!*p) break;
        } else if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            return 0;
        }
    }
    return 1;
}

ba_status ba_cli_config_load(const ba_cli_command *cmd, const char *path, ba_cli_opts *o, ba_error *err) {
    cfg_ctx c = {.cmd = cmd, .path = path, .o = o, .err = err};
    ba_path_dirname(path, c.dir, sizeof c.dir);
    /* Read the file ourselves: a NUL byte or a blank file must not reach the parser. */
    uint8_t *text = NULL;
    size_t size = 0;
    ba_error rerr;
    if (ba_file_read(path, &text, &size, &rerr) != BA_OK)
        return ba_error_set(err, BA_ERR_INPUT, "--config: cannot read '%s'", path);
    if (memchr(text, '\0', size)) {
        free(text);
        return ba_error_set(err, BA_ERR_INPUT, "%s: not a YAML text file (holds a NUL byte)", path);
    }
    /* YAML is Unicode text, and libfyaml can loop forever on a malformed UTF-8
     * sequence inside a directive line: such a file never reaches it. */
    size_t bad = ba_utf8_invalid_at(text, size);
    if (bad < size) {
        int line = 1;
        for (size_t i = 0; i < bad; i++) line += text[i] == '\n';
        free(text);
        return ba_error_set(err, BA_ERR_INPUT, "%s:%d: not a YAML text file (byte %zu is not valid UTF-8)",
                            path, line, bad);
    }
    if (only_comments((const char *)text)) {
        free(text);
        return BA_OK;
    }

    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.colorize = false;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    if (!diag) {
        free(text);
        return ba_error_set(err, BA_ERR_NOMEM, "%s: cannot create the YAML diagnostics", path);
    }
    fy_diag_set_collect_errors(diag, true);
    /* Duplicate keys are found by ba_cli_config_load and load_key (libfyaml's check is quadratic). */
    struct fy_parse_cfg pcfg = {.flags = FYPCF_QUIET | FYPCF_DEFAULT_VERSION_AUTO | FYPCF_JSON_NONE |
                                         FYPCF_ALLOW_DUPLICATE_KEYS,
                                .diag = diag};
    struct fy_document *doc = fy_document_build_from_string(&pcfg, (const char *)text, size);
    ba_status st = BA_OK;
    if (!doc) {
        st = yaml_error(&c, diag);
        goto done;
    }
    struct fy_node *root = fy_document_root(doc);
    if (!root) goto done; /* an empty file sets nothing */
    if (fy_node_get_type(root) != FYNT_MAPPING) {
        st = ba_error_set(err, BA_ERR_INPUT, "%s: the top level must be a mapping of flag names to values",
                          path);
        goto done;
    }
    void *it = NULL;
    struct fy_node_pair *p;
    char kbuf[256];
    keyset_t seen = {0};
    while (st == BA_OK && (p = fy_node_mapping_iterate(root, &it))) {
        struct fy_node *kn = fy_node_pair_key(p);
        const char *key = scalar(kn, kbuf, sizeof kbuf);
        int dup = 0;
        if (!key) {
            st = cfg_fail(&c, kn, "%s%s", "keys must be plain flag names", "");
            break;
        }
        st = keyset_add(&seen, key, &dup, err);
        if (st == BA_OK && dup) st = cfg_fail(&c, kn, "duplicate key '%s'%s", key, "");
        if (st == BA_OK) st = load_key(&c, key, kn, fy_node_pair_value(p));
    }
    keyset_free(&seen);
done:
    if (doc) fy_document_destroy(doc);
    fy_diag_destroy(diag);
    free(text);
    return st;
}

static void print_scalar(FILE *fp, const char *s) {
    fputc('"', fp);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(fp, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(fp, "\\x%02x", ch);
        else
            fputc(ch, fp);
    }
    fputc('"', fp);
}

static void print_entry(const ba_cli_flag *f, const ba_cli_entry *e, FILE *fp) {
    fprintf(fp, "%s: ", f->name);
    if (f->type == BA_CLI_T_FLAG && !(f->flags & BA_CLI_REPEAT)) {
        fputs("true\n", fp);
        return;
    }
    if (!(f->flags & BA_CLI_REPEAT)) {
        print_scalar(fp, e->vals[e->n - 1]);
        fputc('\n', fp);
        return;
    }
    fputc('[', fp);
    for (size_t i = 0; i < e->n; i++) {
        if (i) fputs(", ", fp);
        if (f->type == BA_CLI_T_FLAG)
            fputs("true", fp);
        else
            print_scalar(fp, e->vals[i]);
    }
    fputs("]\n", fp);
}

void ba_cli_config_print(const ba_cli_command *cmd, const ba_cli_opts *o, FILE *fp) {
    fprintf(fp, "# bitalloc %s: effective flags (paths relative to the working directory)\n", cmd->name);
    const ba_cli_flag *tables[2] = {cmd->flags, ba_cli_global_flags};
    for (int t = 0; t < 2; t++)
        for (const ba_cli_flag *f = tables[t]; f && f->name; f++) {
            const ba_cli_entry *e = ba_cli_find(o, f->name);
            if (e && e->n && !(f->flags & BA_CLI_NO_CONFIG)) print_entry(f, e, fp);
        }
}
