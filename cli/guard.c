/* See guard.h. */
#include "cli/guard.h"

#include "llm/hf_convert.h"

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
    char **model_files;    /* the files of safetensors checkpoints among the models */
    int nmodel_files;
} inputs_t;

static void add(inputs_t *l, const char *path, const char *role) {
    if (!path || !*path || l->n >= GUARD_MAX_INPUTS) return;
    l->in[l->n].path = path;
    l->in[l->n].role = role;
    l->n++;
}

/* A model, and when it is a safetensors checkpoint every file of it (config, tokenizer, index, shards). */
static ba_status add_model(inputs_t *l, const char *path, const char *role, ba_error *err) {
    if (!path || !*path) return BA_OK;
    add(l, path, role);
    char **files = NULL;
    int n = 0;
    ba_status st = ba_llm_model_files(path, &files, &n, err);
    for (int i = 1; i < n; i++) {
        char **grown =
            st == BA_OK ? realloc(l->model_files, ((size_t)l->nmodel_files + 1) * sizeof *grown) : NULL;
        if (!grown) {
            free(files[i]);
            if (st == BA_OK) st = ba_error_set(err, BA_ERR_NOMEM, "out of memory: model file list");
            continue;
        }
        l->model_files = grown;
        l->model_files[l->nmodel_files++] = files[i];
        add(l, files[i], "model's checkpoint file");
    }
    if (n > 0) free(files[0]);
    free(files);
    return st;
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
    ba_status st = BA_OK;
    for (size_t i = 0; st == BA_OK && i < ba_cli_count(o, "model"); i++)
        st = add_model(l, ba_cli_value(o, "model", i), "model", err);
    add_opt(l, o, "text", "calibration text");
    add_opt(l, o, "imatrix", "imatrix");
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
    if (s && st == BA_OK) {
        st = add_model(l, s->model, "study's model", err);
        ba_cli_data_inputs((const char *const *)s->data, s->ndata, "study's data file", l->in, &l->n,
                           GUARD_MAX_INPUTS);
        add(l, s->labels, "study's labels file");
        add(l, s->sensitivity_file, "study's sensitivity file");
        add(l, s->latency_table, "study's latency table");
        add(l, s->hw, "study's hardware profile");
    }
    for (int i = 0; st == BA_OK && i < nextra; i++) {
        if (extra[i].role && !strcmp(extra[i].role, "model"))
            st = add_model(l, extra[i].path, extra[i].role, err);
        else
            add(l, extra[i].path, extra[i].role);
    }
    if (st == BA_OK) st = ba_out_check_inputs(out, l->in, l->n, err);
    for (int i = 0; i < l->nmodel_files; i++) free(l->model_files[i]);
    free(l->model_files);
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
