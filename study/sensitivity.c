/* The cached sensitivity call shared by `search` (study.c) and `sensitivity`:
 * the cache in the study database is read first; on a miss the estimator runs
 * and its table is stored. The cache only saves time, so a failed write is a
 * warning (info->warning) and the computed table still stands; a failed read
 * or a bad stored entry is an error, as any other bad input. */
#include <stdlib.h>
#include <string.h>

#include "study/study.h"

ba_status ba_study_sens_cache_get(ba_db_t *db, const char *key, const ba_model_t *m,
                                  const ba_sens_opts_t *opts, ba_sens_table_t **out, ba_error *err) {
    *out = NULL;
    char *payload = NULL;
    BA_TRY(ba_db_sens_get(db, key, &payload, err));
    if (!payload) return BA_OK;
    char what[96];
    snprintf(what, sizeof what, "sensitivity cache entry %.16s", key);
    ba_status st =
        ba_sens_from_json(payload, what, m, opts ? opts->bits : NULL, opts ? opts->nbits : 0, out, err);
    free(payload);
    return st;
}

ba_status ba_study_sens_cache_put(ba_db_t *db, const char *key, const ba_model_t *m, const ba_sens_table_t *t,
                                  ba_error *err) {
    char *s;
    BA_TRY(ba_sens_to_json(t, &s, err));
    ba_status st = ba_db_sens_put(db, key, m->sha256, t->method, s, err);
    free(s);
    return st;
}

ba_status ba_study_sensitivity(ba_db_t *db, const ba_model_t *m, const ba_dataset_t *ds,
                               const int64_t *labels, int64_t nlabels, ba_sens_method_t method,
                               const ba_sens_opts_t *opts, ba_sens_table_t **out, ba_study_sens_info_t *info,
                               ba_error *err) {
    *out = NULL;
    memset(info, 0, sizeof *info);
    if (db) {
        ba_sens_cache_key(m, ds, labels, nlabels, method, opts, info->key);
        BA_TRY(ba_study_sens_cache_get(db, info->key, m, opts, out, err));
        if (*out) {
            info->cached = 1;
            return BA_OK;
        }
    }
    BA_TRY(ba_sens_compute(m, ds, labels, nlabels, method, opts, out, err));
    /* Another process may have stored the same key meanwhile, or the database is read-only
     * or full: the table is computed either way, so the write is only worth a warning. */
    if (db && ba_study_sens_cache_put(db, info->key, m, *out, &info->warning) != BA_OK) {
        info->cache_write_failed = 1;
        ba_error_prefix(&info->warning, "sensitivity cache: not stored");
    }
    return BA_OK;
}
