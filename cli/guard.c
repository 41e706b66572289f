/* See guard.h. */
#include "cli/guard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Inputs of one command: a model, up to BA_STUDY_MAX_DATA data specs twice (whole and after
 * NAME=), a dozen single files, the database's four files and the caller's extras. */
#define GUARD_MAX_INPUTS (4 * BA_STUDY_MAX_DATA + 64)

typedef struct {
    ba_out_input_t in[GUARD_MAX_INPUTS];
    int n;
    char db_side[3][4200]; /* PATH-wal, PATH-shm, PATH-journal */
} inputs_t;

static void add(inputs_t *l, const char *path, const char *role) {
    if (!path || !*path || l->n >= GUARD_MAX_INPUTS) return;
    l->in[l->n].path = path;
    l->in[l->n].role = role;
    l->n++;
}

void ba_cli_data_inputs(const char *const *specs, int n, const char *role, ba_out_input_t *in, int *nin,
                        int cap) {
    for (int i = 0; i < n && *nin + 2 <= cap; i++) {
        if (!specs[i]) continue;
        in[(*nin)++] = (ba_out_input_t){specs[i], role};
        const char *eq = strchr(specs[i], '=');
        if (eq) in[(*nin)++] = (ba_out_input_t){eq + 1, role};
    }
}

static void add_data(inputs_t *l, const char *spec) {
    ba_cli_data_inputs(&spec, 1, "data file", l->in, &l->n, GUARD_MAX_INPUTS);
}

static void add_opt(inputs_t *l, const ba_cli_opts *o, const char *key, const char *role) {
    for (size_t i = 0; i < ba_cli_count(o, key); i++) add(l, ba_cli_value(o, key, i), role);
}

ba_status ba_cli_check_output(const ba_cli_opts *o, const char *flag, const char *out,
                              const ba_study_settings_t *s, const ba_out_input_t *extra, int nextra,
                              ba_error *err) {
    if (!out) return BA_OK;
    inputs_t *l = ba_calloc(1, sizeof *l, err);
    if (!l) return BA_ERR_NOMEM;
    add_opt(l, o, "model", "model");
    for (size_t i = 0; i < ba_cli_count(o, "data"); i++) add_data(l, ba_cli_value(o, "data", i));
    add_opt(l, o, "labels", "labels file");
    add_opt(l, o, "plan", "plan");
    add_opt(l, o, "sensitivity-file", "sensitivity file");
    add_opt(l, o, "latency-table", "latency table");
    add_opt(l, o, "hw", "hardware profile");
    add_opt(l, o, "config", "config file");
    const char *db = ba_cli_db_path(o);
    add(l, db, "database");
    static const char *const side[3] = {"-wal", "-shm", "-journal"};
    for (int i = 0; i < 3; i++) {
        snprintf(l->db_side[i], sizeof l->db_side[i], "%s%s", db, side[i]);
        add(l, l->db_side[i], "database's journal");
    }
    if (s) {
        add(l, s->model, "study's model");
        ba_cli_data_inputs((const char *const *)s->data, s->ndata, "study's data file", l->in, &l->n,
                           GUARD_MAX_INPUTS);
        add(l, s->labels, "study's labels file");
        add(l, s->sensitivity_file, "study's sensitivity file");
        add(l, s->latency_table, "study's latency table");
        add(l, s->hw, "study's hardware profile");
    }
    for (int i = 0; i < nextra; i++) add(l, extra[i].path, extra[i].role);
    ba_status st = ba_out_check_inputs(out, l->in, l->n, err);
    free(l);
    return st == BA_OK ? BA_OK : ba_error_prefix(err, "%s", flag);
}

ba_status ba_cli_check_utf8(const ba_cli_opts *o, ba_error *err) {
    for (size_t i = 0; i < o->n; i++)
        for (size_t j = 0; j < o->e[i].n; j++)
            if (!ba_utf8_valid(o->e[i].vals[j]))
                return ba_error_set(err, BA_ERR_INPUT,
                                    "--%s: not valid UTF-8 (names and paths are stored as UTF-8 text)",
                                    o->e[i].key);
    return BA_OK;
}
