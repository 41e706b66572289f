/* `bitalloc sensitivity`: see docs/sensitivity.md. Loads the model and the
 * calibration data, computes (or reads from the DB cache, when a database is
 * named) the per-layer scores and cost table Ω(l,b) of one estimator, and
 * prints them as a table, JSON or CSV (SPEC §5). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/format.h"
#include "cli/progress.h"

/* Fills opts from the flags; BA_ERR_INPUT naming the flag on a bad value. */
static ba_status read_opts(const ba_cli_opts *o, ba_sens_opts_t *so, int *bits, ba_error *err) {
    *so = ba_sens_opts_default();
    if (ba_cli_has(o, "bits")) {
        if (ba_bits_parse_list(ba_cli_get(o, "bits"), bits, &so->nbits, err) != BA_OK)
            return ba_error_prefix(err, "--bits");
        so->bits = bits;
    }
    so->seed = ba_cli_get_u64(o, "seed", 0);
    so->tol = ba_cli_get_double(o, "tol", BA_SENS_DEFAULT_TOL);
    so->max_probes = (int)ba_cli_get_int(o, "samples", BA_SENS_DEFAULT_PROBES);
    if (so->max_probes < 1) return ba_error_set(err, BA_ERR_INPUT, "--samples: at least 1 probe");
    if (ba_cli_has(o, "metric")) BA_TRY(ba_metric_parse(ba_cli_get(o, "metric"), &so->metric, err));
    const char *probe = ba_cli_get(o, "probe");
    so->per_layer_probes = probe && !strcmp(probe, "per-layer");
    const char *loss = ba_cli_get(o, "loss");
    if (loss) so->loss = strcmp(loss, "mse") == 0 ? BA_SENS_LOSS_MSE : BA_SENS_LOSS_CE;
    const char *v;
    if ((v = ba_cli_get(o, "scheme")) && ba_quant_cfg_parse_scheme(v, &so->quant, err) != BA_OK)
        return ba_error_prefix(err, "--scheme");
    if ((v = ba_cli_get(o, "granularity")) && ba_quant_cfg_parse_granularity(v, &so->quant, err) != BA_OK)
        return ba_error_prefix(err, "--granularity");
    if ((v = ba_cli_get(o, "clip")) && ba_quant_cfg_parse_clip(v, &so->quant, err) != BA_OK)
        return ba_error_prefix(err, "--clip");
    so->quant.act_bits = (int)ba_cli_get_int(o, "act-bits", 0);
    if (so->quant.act_bits == 32) so->quant.act_bits = 0;
    return BA_OK;
}

static int print_table(const ba_sens_table_t *t) {
    enum { FIXED_COLS = 4 };
    const char *hdr[FIXED_COLS + BA_SENS_MAX_BITS];
    char names[BA_SENS_MAX_BITS][24];
    hdr[0] = "layer";
    hdr[1] = "params";
    hdr[2] = "score";
    hdr[3] = "stderr";
    for (int k = 0; k < t->nbits; k++) {
        snprintf(names[k], sizeof names[k], "cost@%d", t->bits[k]);
        hdr[FIXED_COLS + k] = names[k];
    }
    ba_table_t *tb = ba_table_new((size_t)(FIXED_COLS + t->nbits), hdr, NULL);
    if (!tb) {
        ba_cli_error("out of memory");
        return BA_EXIT_RUNTIME;
    }
    char cells[FIXED_COLS + BA_SENS_MAX_BITS][40];
    const char *row[FIXED_COLS + BA_SENS_MAX_BITS];
    for (int l = 0; l < t->nlayers; l++) {
        const ba_sens_layer_t *L = &t->layers[l];
        row[0] = L->name;
        snprintf(cells[1], sizeof cells[1], "%" PRId64, L->params);
        snprintf(cells[2], sizeof cells[2], "%.4g", L->score);
        snprintf(cells[3], sizeof cells[3], "%.2g", L->se);
        row[1] = cells[1];
        row[2] = isfinite(L->score) ? cells[2] : NULL;
        row[3] = isfinite(L->se) ? cells[3] : NULL;
        for (int k = 0; k < t->nbits; k++) {
            snprintf(cells[FIXED_COLS + k], sizeof cells[0], "%.4g", L->cost[k]);
            row[FIXED_COLS + k] = cells[FIXED_COLS + k];
        }
        if (ba_table_add(tb, row) != 0) {
            ba_table_free(tb);
            ba_cli_error("out of memory");
            return BA_EXIT_RUNTIME;
        }
    }
    printf("method %s, loss %s%s%s, %" PRId64 " samples; cost = Omega(layer, bits)\n\n", t->method,
           t->loss ? t->loss : "-", t->loss_on ? " on the " : "", t->loss_on ? t->loss_on : "", t->samples);
    ba_table_print(tb, stdout);
    ba_table_free(tb);
    return BA_EXIT_OK;
}

/* A database is used for the cache only when one is named (--db or $BITALLOC_DB):
 * a plain `sensitivity` run leaves no file behind. */
static int cache_wanted(const ba_cli_opts *o) {
    const char *env = getenv(BA_CLI_DB_ENV);
    return ba_cli_has(o, "db") || (env && *env);
}

int ba_cmd_sensitivity(const ba_cli_opts *o) {
    ba_error err;
    ba_error_clear(&err);
    ba_sens_method_t method;
    ba_sens_opts_t so;
    int bits[BA_SENS_MAX_BITS];
    ba_status st = ba_sens_method_parse(ba_cli_get_or(o, "method", "hessian"), &method, &err);
    if (st != BA_OK) ba_error_prefix(&err, "--method");
    if (st == BA_OK) st = read_opts(o, &so, bits, &err);
    ba_load_opts_t lo = {.include_embeddings = ba_cli_has(o, "include-embeddings")};
    ba_model_t *m = NULL;
    ba_dataset_t *ds = NULL;
    int64_t *labels = NULL, nlabels = 0;
    ba_db_t *db = NULL;
    ba_sens_table_t *t = NULL;
    if (st == BA_OK) st = ba_model_load(ba_cli_get(o, "model"), &lo, &m, &err);
    if (st == BA_OK && ba_cli_has(o, "data") && ba_sens_method_needs_data(method)) {
        size_t nd = ba_cli_count(o, "data");
        const char **specs = calloc(nd, sizeof *specs);
        if (!specs) st = ba_error_set(&err, BA_ERR_NOMEM, "out of memory");
        for (size_t i = 0; st == BA_OK && i < nd; i++) specs[i] = ba_cli_value(o, "data", i);
        const ba_cli_entry *ax = ba_cli_find(o, "sample-axis");
        if (st == BA_OK)
            st = ba_eval_data_load(m, specs, (int)nd, ax ? (const char *const *)ax->vals : NULL,
                                   ax ? (int)ax->n : 0, &ds, &err);
        if (st == BA_OK) st = ba_eval_resolve_costs(m, ds, NULL, 0, &err); /* data shapes checked early */
        free(specs);
    }
    if (st == BA_OK && ba_cli_has(o, "labels") && ba_sens_method_needs_data(method))
        st = ba_labels_load(ba_cli_get(o, "labels"), &labels, &nlabels, &err);
    int quiet = ba_cli_verbosity(o) < 0;
    if (st == BA_OK && cache_wanted(o)) st = ba_db_open(ba_cli_db_path(o), 1, &db, &err);
    if (st == BA_OK) {
        ba_progress_t pr;
        ba_progress_start(&pr, "sensitivity", 0, quiet);
        so.progress = ba_progress_cb;
        so.progress_user = &pr;
        ba_study_sens_info_t info;
        st = ba_study_sensitivity(db, m, ds, labels, nlabels, method, &so, &t, &info, &err);
        ba_progress_end(&pr);
        if (st == BA_OK && info.cached && ba_cli_verbosity(o) > 0)
            fprintf(stderr, "bitalloc: sensitivity: cached result %.16s from %s\n", info.key,
                    ba_cli_db_path(o));
        if (st == BA_OK && info.cache_write_failed)
            fprintf(stderr, "bitalloc: warning: %s\n", info.warning.msg);
    }
    int rc = BA_EXIT_OK;
    if (st != BA_OK) {
        ba_cli_error("%s", err.msg);
        rc = ba_status_exit_code(st);
    } else {
        const char *fmt = ba_cli_get_or(o, "format", "table");
        if (!strcmp(fmt, "json"))
            st = ba_sens_write_json(t, stdout, &err);
        else if (!strcmp(fmt, "csv"))
            st = ba_sens_write_csv(t, stdout, &err);
        else
            rc = print_table(t);
        if (st != BA_OK) {
            ba_cli_error("%s", err.msg);
            rc = ba_status_exit_code(st);
        }
    }
    ba_sens_table_free(t);
    ba_db_close(db);
    free(labels);
    ba_dataset_free(ds);
    ba_model_free(m);
    return rc;
}
