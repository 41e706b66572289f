/* ba_cli_opts: the key -> values store, the per-type value checks, the argv parser
 * and the config/flag merge. Every value reaching a command went through
 * ba_cli_check_value, so commands convert values without re-checking them. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "quant/quant.h"
#include "search/budget.h"

/* ---------------------------------------------------------------- store */

void ba_cli_opts_init(ba_cli_opts *o) {
    memset(o, 0, sizeof *o);
}

static void entry_clear(ba_cli_entry *e) {
    for (size_t i = 0; i < e->n; i++) free(e->vals[i]);
    free(e->vals);
    e->vals = NULL;
    e->n = e->cap = 0;
}

void ba_cli_opts_free(ba_cli_opts *o) {
    for (size_t i = 0; i < o->n; i++) {
        entry_clear(&o->e[i]);
        free(o->e[i].key);
    }
    free(o->e);
    memset(o, 0, sizeof *o);
}

static ba_cli_entry *find_mut(ba_cli_opts *o, const char *key) {
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->e[i].key, key) == 0) return &o->e[i];
    return NULL;
}

static ba_cli_entry *entry_get(ba_cli_opts *o, const char *key, ba_error *err) {
    ba_cli_entry *e = find_mut(o, key);
    if (e) return e;
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 16;
        ba_cli_entry *ne = ba_realloc(o->e, cap * sizeof *ne, err);
        if (!ne) return NULL;
        o->e = ne;
        o->cap = cap;
    }
    char *k = ba_strdup(key, err);
    if (!k) return NULL;
    e = &o->e[o->n++];
    memset(e, 0, sizeof *e);
    e->key = k;
    return e;
}

ba_status ba_cli_opts_add(ba_cli_opts *o, const char *key, const char *value, int replace, ba_error *err) {
    ba_cli_entry *e = entry_get(o, key, err);
    if (!e) return err ? err->code : BA_ERR_NOMEM;
    if (replace) entry_clear(e);
    char *v = ba_strdup(value, err);
    if (!v) return BA_ERR_NOMEM;
    if (e->n == e->cap) { /* doubling: a config with 200,000 pins stays linear */
        size_t cap = e->cap ? 2 * e->cap : 4;
        char **nv = ba_realloc(e->vals, cap * sizeof *nv, err);
        if (!nv) {
            free(v);
            return BA_ERR_NOMEM;
        }
        e->vals = nv;
        e->cap = cap;
    }
    e->vals[e->n++] = v;
    return BA_OK;
}

const ba_cli_entry *ba_cli_find(const ba_cli_opts *o, const char *key) {
    return find_mut((ba_cli_opts *)o, key);
}

const char *ba_cli_get(const ba_cli_opts *o, const char *key) {
    const ba_cli_entry *e = ba_cli_find(o, key);
    return e && e->n ? e->vals[e->n - 1] : NULL;
}

const char *ba_cli_get_or(const ba_cli_opts *o, const char *key, const char *def) {
    const char *v = ba_cli_get(o, key);
    return v ? v : def;
}

size_t ba_cli_count(const ba_cli_opts *o, const char *key) {
    const ba_cli_entry *e = ba_cli_find(o, key);
    return e ? e->n : 0;
}

const char *ba_cli_value(const ba_cli_opts *o, const char *key, size_t i) {
    const ba_cli_entry *e = ba_cli_find(o, key);
    return e && i < e->n ? e->vals[i] : NULL;
}

int ba_cli_has(const ba_cli_opts *o, const char *key) {
    return ba_cli_count(o, key) > 0;
}

int64_t ba_cli_get_int(const ba_cli_opts *o, const char *key, int64_t def) {
    const char *v = ba_cli_get(o, key);
    return v ? strtoll(v, NULL, 10) : def;
}

uint64_t ba_cli_get_u64(const ba_cli_opts *o, const char *key, uint64_t def) {
    const char *v = ba_cli_get(o, key);
    return v ? strtoull(v, NULL, 10) : def;
}

double ba_cli_get_double(const ba_cli_opts *o, const char *key, double def) {
    const char *v = ba_cli_get(o, key);
    return v ? strtod(v, NULL) : def;
}

const char *ba_cli_db_path(const ba_cli_opts *o) {
    const char *v = ba_cli_get(o, "db");
    if (v) return v;
    v = getenv(BA_CLI_DB_ENV);
    return v && *v ? v : BA_CLI_DEFAULT_DB;
}

int ba_cli_verbosity(const ba_cli_opts *o) {
    if (ba_cli_has(o, "quiet")) return -1;
    return (int)ba_cli_count(o, "verbose");
}

/* ---------------------------------------------------------------- value checks */

static int parse_u64(const char *s, uint64_t *out) {
    if (!s || !isdigit((unsigned char)s[0])) return 0;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return 0;
    *out = v;
    return 1;
}

static int parse_int(const char *s, int64_t *out) {
    uint64_t v;
    if (!parse_u64(s, &v) || v > INT64_MAX) return 0;
    *out = (int64_t)v;
    return 1;
}

/* A number followed by an optional suffix; *suffix points into s. */
static int parse_number(const char *s, double *v, const char **suffix) {
    if (!s || !*s || isspace((unsigned char)s[0])) return 0;
    errno = 0;
    char *end;
    *v = strtod(s, &end);
    if (end == s || errno || !isfinite(*v)) return 0;
    *suffix = end;
    return 1;
}

/* The range of every integer flag (and config key): what the command can use, so a value
 * never wraps on its way to an int (--generations 4294967298 would run 2). An integer
 * flag missing here takes 0..INT32_MAX. */
static const struct {
    const char *name;
    int64_t min, max;
} INT_RANGES[] = {
    {"generations", 0, 1000000}, /* 0: the seed only */
    {"offspring", 1, 100000},    {"samples", 1, 1000000}, {"limit", 0, INT32_MAX}, {NULL, 0, 0},
};

void ba_cli_int_range(const ba_cli_flag *f, int64_t *min, int64_t *max) {
    *min = 0;
    *max = INT32_MAX;
    for (int i = 0; INT_RANGES[i].name; i++)
        if (!strcmp(INT_RANGES[i].name, f->name)) {
            *min = INT_RANGES[i].min;
            *max = INT_RANGES[i].max;
        }
}

static ba_status check_int(const ba_cli_flag *f, const char *v, ba_error *err) {
    int64_t i, lo, hi;
    ba_cli_int_range(f, &lo, &hi);
    /* A digit string too long for int64 is out of range too, not "not an integer". */
    int digits = v[0] == '-' || v[0] == '+' ? v[1] != '\0' : v[0] != '\0';
    for (const char *p = v + (v[0] == '-' || v[0] == '+'); *p && digits; p++)
        digits = isdigit((unsigned char)*p);
    if (!digits)
        return ba_error_set(err, BA_ERR_INPUT, "expected an integer in %lld..%lld, got '%s'", (long long)lo,
                            (long long)hi, v);
    if (v[0] == '-' || !parse_int(v[0] == '+' ? v + 1 : v, &i) || i < lo || i > hi)
        return ba_error_set(err, BA_ERR_INPUT, "%s is out of range (%lld..%lld)", v, (long long)lo,
                            (long long)hi);
    return BA_OK;
}

static int parse_width(const char *s, int64_t *b) {
    return parse_int(s, b) && ba_bits_valid(*b);
}

static int choice_ok(const char *choices, const char *v) {
    size_t vl = strlen(v);
    const char *p = choices;
    while (p && *p) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == vl && strncmp(p, v, l) == 0) return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

/* core/bits.c: the one parser of a width list. */
static ba_status check_bits_list(const char *v, ba_error *err) {
    int bits[BA_BITS_MAX_CANDIDATES], n;
    return ba_bits_parse_list(v, bits, &n, err);
}

static ba_status check_value_raw(const ba_cli_flag *f, const char *v, ba_error *err) {
    uint64_t u;
    int64_t i;
    double d;
    const char *suf;
    ba_budget_t budget;
    ba_budget_sweep_t sweep;
    if (f->type != BA_CLI_T_FLAG && (!v || !*v)) return ba_error_set(err, BA_ERR_INPUT, "empty value");
    switch (f->type) {
    case BA_CLI_T_FLAG:
    case BA_CLI_T_STR:
    case BA_CLI_T_PATH:
    case BA_CLI_T_HW: return BA_OK;
    case BA_CLI_T_INT: return check_int(f, v, err);
    case BA_CLI_T_U64:
        return parse_u64(v, &u) ? BA_OK
                                : ba_error_set(err, BA_ERR_INPUT, "expected an integer in 0..%llu, got '%s'",
                                               (unsigned long long)UINT64_MAX, v);
    case BA_CLI_T_FLOAT:
        if (!parse_number(v, &d, &suf) || *suf || d < 0)
            return ba_error_set(err, BA_ERR_INPUT, "expected a non-negative number, got '%s'", v);
        return BA_OK;
    case BA_CLI_T_CHOICE:
        return choice_ok(f->choices, v)
                   ? BA_OK
                   : ba_error_set(err, BA_ERR_INPUT, "expected one of %s, got '%s'", f->choices, v);
    case BA_CLI_T_WIDTH:
        return parse_width(v, &i)
                   ? BA_OK
                   : ba_error_set(err, BA_ERR_INPUT, "expected a bit-width (2-8, 16, 32), got '%s'", v);
    case BA_CLI_T_BITS: return check_bits_list(v, err);
    case BA_CLI_T_BUDGET: return ba_budget_parse(v, &budget, err); /* search/budget.c: the one parser */
    case BA_CLI_T_SWEEP: return ba_budget_sweep_parse(v, &sweep, err);
    case BA_CLI_T_PIN: {
        const char *eq = strrchr(v, '=');
        if (!eq || eq == v) return ba_error_set(err, BA_ERR_INPUT, "expected NAME_GLOB=BITS, got '%s'", v);
        if (!parse_width(eq + 1, &i))
            return ba_error_set(err, BA_ERR_INPUT,
                                "expected a bit-width (" BA_BITS_WIDTHS ") after '=', got '%s'", v);
        return BA_OK;
    }
    case BA_CLI_T_DATA: {
        const char *eq = strchr(v, '=');
        if (eq && (eq == v || !eq[1]))
            return ba_error_set(err, BA_ERR_INPUT, "expected FILE or NAME=FILE, got '%s'", v);
        return BA_OK;
    }
    case BA_CLI_T_AXIS: {
        const char *eq = strrchr(v, '=');
        if (!eq || eq == v || !parse_int(eq + 1, &i))
            return ba_error_set(err, BA_ERR_INPUT, "expected NAME=K (K an axis number >= 0), got '%s'", v);
        return BA_OK;
    }
    case BA_CLI_T_SHAPE: {
        const char *eq = strrchr(v, '=');
        int nd;
        int64_t shape[BA_MAX_DIMS];
        if (!eq || eq == v)
            return ba_error_set(err, BA_ERR_INPUT, "expected NAME=D0xD1x… (e.g. x=1x3x224x224), got '%s'", v);
        return ba_shape_parse(eq + 1, &nd, shape, err);
    }
    case BA_CLI_T_GRAN: {
        ba_quant_cfg_t q = ba_quant_cfg_default(); /* quant/quant.c: the one parser, G in 1..INT_MAX */
        return ba_quant_cfg_parse_granularity(v, &q, err);
    }
    case BA_CLI_T_TRIAL:
        return strcmp(v, "best") == 0 || parse_int(v, &i)
                   ? BA_OK
                   : ba_error_set(err, BA_ERR_INPUT, "expected a trial number or 'best', got '%s'", v);
    }
    return ba_error_set(err, BA_ERR_INPUT, "unknown flag type");
}

ba_status ba_cli_check_value(const ba_cli_flag *f, const char *value, ba_error *err) {
    ba_status st = check_value_raw(f, value, err);
    if (st != BA_OK) {
        if (f->flags & BA_CLI_POSITIONAL) return ba_error_prefix(err, "%s", f->metavar);
        size_t nl = strlen(f->name);
        if (err && !strncmp(err->msg, "--", 2) && !strncmp(err->msg + 2, f->name, nl) &&
            err->msg[2 + nl] == ':')
            return st; /* a library parser's message names the flag already */
        return ba_error_prefix(err, "--%s", f->name);
    }
    return BA_OK;
}

size_t ba_cli_merge_key(const ba_cli_flag *f, const char *value) {
    const char *eq;
    switch (f->type) {
    case BA_CLI_T_BUDGET:
    case BA_CLI_T_SWEEP:
    case BA_CLI_T_DATA: eq = strchr(value, '='); break;
    case BA_CLI_T_PIN:
    case BA_CLI_T_SHAPE:
    case BA_CLI_T_AXIS:
        eq = strrchr(value, '=');
        break; /* a glob or name may hold '=', the value never does */
    default: eq = NULL;
    }
    return eq ? (size_t)(eq - value) : 0;
}

/* ---------------------------------------------------------------- argv */

static const ba_cli_flag *table_find(const ba_cli_flag *t, const char *name, size_t nl, char sh) {
    for (; t && t->name; t++) {
        if (t->flags & BA_CLI_POSITIONAL) continue;
        if (sh ? t->short_name == sh : (strlen(t->name) == nl && strncmp(t->name, name, nl) == 0)) return t;
    }
    return NULL;
}

static const ba_cli_flag *flag_lookup(const ba_cli_command *cmd, const char *name, size_t nl, char sh) {
    const ba_cli_flag *f = table_find(cmd ? cmd->flags : NULL, name, nl, sh);
    return f ? f : table_find(ba_cli_global_flags, name, nl, sh);
}

const ba_cli_flag *ba_cli_flag_find(const ba_cli_command *cmd, const char *name) {
    const ba_cli_flag *t = cmd ? cmd->flags : NULL;
    for (; t && t->name; t++)
        if (strcmp(t->name, name) == 0) return t;
    return flag_lookup(cmd, name, strlen(name), 0);
}

static ba_status store(const ba_cli_flag *f, const char *v, ba_cli_opts *o, ba_error *err) {
    BA_TRY(ba_cli_check_value(f, v, err));
    return ba_cli_opts_add(o, f->name, f->type == BA_CLI_T_FLAG ? "1" : v, !(f->flags & BA_CLI_REPEAT), err);
}

static ba_status store_positional(const ba_cli_command *cmd, const char *v, ba_cli_opts *o, ba_error *err) {
    for (const ba_cli_flag *f = cmd->flags; f && f->name; f++)
        if ((f->flags & BA_CLI_POSITIONAL) && !ba_cli_has(o, f->name)) return store(f, v, o, err);
    return ba_error_set(err, BA_ERR_INPUT, "%s: unexpected argument '%s' (see 'bitalloc %s --help')",
                        cmd->name, v, cmd->name);
}

ba_status ba_cli_parse_argv(const ba_cli_command *cmd, int argc, char **argv, ba_cli_opts *o, ba_error *err) {
    int only_positional = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (only_positional || a[0] != '-' || a[1] == '\0') {
            BA_TRY(store_positional(cmd, a, o, err));
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_positional = 1;
            continue;
        }
        const ba_cli_flag *f;
        const char *inline_val = NULL;
        if (a[1] == '-') {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t nl = eq ? (size_t)(eq - name) : strlen(name);
            f = flag_lookup(cmd, name, nl, 0);
            if (!f)
                return ba_error_set(err, BA_ERR_INPUT,
                                    "--%.*s: unknown flag for '%s' (see 'bitalloc %s --help')", (int)nl, name,
                                    cmd->name, cmd->name);
            if (eq) inline_val = eq + 1;
        } else {
            /* Short flags: "-o FILE", "-oFILE", and bundles of value-less flags ("-vv", "-qv"). */
            f = flag_lookup(cmd, NULL, 0, a[1]);
            if (!f)
                return ba_error_set(err, BA_ERR_INPUT,
                                    "-%c: unknown flag for '%s' (see 'bitalloc %s --help')", a[1], cmd->name,
                                    cmd->name);
            if (f->type == BA_CLI_T_FLAG) {
                for (const char *p = a + 1; *p; p++) {
                    const ba_cli_flag *g = flag_lookup(cmd, NULL, 0, *p);
                    if (!g || g->type != BA_CLI_T_FLAG)
                        return ba_error_set(err, BA_ERR_INPUT, "%s: unknown flag for '%s'", a, cmd->name);
                    BA_TRY(store(g, "1", o, err));
                }
                continue;
            }
            if (a[2]) inline_val = a + 2;
        }
        if (f->type == BA_CLI_T_FLAG) {
            if (inline_val) return ba_error_set(err, BA_ERR_INPUT, "--%s: takes no value", f->name);
            BA_TRY(store(f, "1", o, err));
            continue;
        }
        if (!inline_val) {
            if (i + 1 >= argc)
                return ba_error_set(err, BA_ERR_INPUT, "--%s: missing value (%s)", f->name,
                                    f->metavar ? f->metavar : "VALUE");
            inline_val = argv[++i];
        }
        BA_TRY(store(f, inline_val, o, err));
    }
    return BA_OK;
}

/* ---------------------------------------------------------------- merge */

static int has_same_key(const ba_cli_flag *f, const ba_cli_entry *cli, const char *v) {
    size_t kl = ba_cli_merge_key(f, v);
    for (size_t i = 0; i < cli->n; i++)
        if (ba_cli_merge_key(f, cli->vals[i]) == kl && strncmp(cli->vals[i], v, kl) == 0) return 1;
    return 0;
}

ba_status ba_cli_merge(const ba_cli_command *cmd, const ba_cli_opts *file, const ba_cli_opts *cli,
                       ba_cli_opts *out, ba_error *err) {
    ba_cli_opts_init(out);
    out->command = cli->command ? cli->command : file->command;
    ba_status st = BA_OK;
    /* Start from the file, dropping what the command line replaces. */
    for (size_t i = 0; i < file->n && st == BA_OK; i++) {
        const ba_cli_entry *fe = &file->e[i];
        const ba_cli_entry *ce = ba_cli_find(cli, fe->key);
        const ba_cli_flag *f = ba_cli_flag_find(cmd, fe->key);
        if (ce && ce->n && f && (f->flags & BA_CLI_REPEAT)) {
            int all_keyed = 1;
            for (size_t j = 0; j < ce->n; j++)
                if (!ba_cli_merge_key(f, ce->vals[j])) all_keyed = 0;
            if (!all_keyed) continue; /* an unkeyed list on the command line replaces the file's list */
            for (size_t j = 0; j < fe->n && st == BA_OK; j++)
                if (!ba_cli_merge_key(f, fe->vals[j]) || !has_same_key(f, ce, fe->vals[j]))
                    st = ba_cli_opts_add(out, fe->key, fe->vals[j], 0, err);
            continue;
        }
        if (ce && ce->n) continue;
        for (size_t j = 0; j < fe->n && st == BA_OK; j++)
            st = ba_cli_opts_add(out, fe->key, fe->vals[j], 0, err);
    }
    for (size_t i = 0; i < cli->n && st == BA_OK; i++)
        for (size_t j = 0; j < cli->e[i].n && st == BA_OK; j++)
            st = ba_cli_opts_add(out, cli->e[i].key, cli->e[i].vals[j], 0, err);
    if (st != BA_OK) ba_cli_opts_free(out);
    return st;
}

ba_status ba_cli_check_required(const ba_cli_command *cmd, const ba_cli_opts *o, ba_error *err) {
    for (const ba_cli_flag *f = cmd->flags; f && f->name; f++) {
        if (!(f->flags & BA_CLI_REQUIRED) || ba_cli_has(o, f->name)) continue;
        if (f->flags & BA_CLI_POSITIONAL)
            return ba_error_set(err, BA_ERR_INPUT, "%s: missing %s (see 'bitalloc %s --help')", cmd->name,
                                f->metavar, cmd->name);
        return ba_error_set(err, BA_ERR_INPUT, "--%s: required by '%s' (see 'bitalloc %s --help')", f->name,
                            cmd->name, cmd->name);
    }
    return cmd->check ? cmd->check(o, err) : BA_OK;
}
