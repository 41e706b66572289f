/* Studies in SQLite or PostgreSQL (SPEC §7): the only module that speaks SQL.
 * The file is the source of truth: each trial is written with its search
 * checkpoint in one transaction, so a kill at any instant loses no completed
 * trial and a resume continues from the last committed checkpoint. */
#ifndef BA_DB_DB_H
#define BA_DB_DB_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* PRAGMA application_id of a bitalloc database ("balc"). */
#define BA_DB_APPLICATION_ID 0x62616c63
/* Schema version written by this build (PRAGMA user_version). */
#define BA_DB_SCHEMA_VERSION 4

typedef struct ba_db ba_db_t;

/* How ba_db_open opens the file. */
enum {
    BA_DB_OPEN_WRITE = 0,    /* an existing database, read-write, migrated forward */
    BA_DB_OPEN_CREATE = 1,   /* the same, created when absent */
    BA_DB_OPEN_READONLY = 2, /* an existing database, never created or changed (SQLITE_OPEN_READONLY;
                              * immutable when its folder cannot hold the WAL's -shm file) */
};

/* Opens (mode: BA_DB_OPEN_*) and, unless read-only, migrates forward. Refuses a
 * file that is not a bitalloc database or has a newer schema (BA_ERR_INPUT).
 * A path starting postgresql:// or postgres:// is a PostgreSQL connection URL
 * (libpq; the database must exist, its tables are created by a creating open);
 * anything else is an SQLite file. */
ba_status ba_db_open(const char *path, int mode, ba_db_t **out, ba_error *err);
void ba_db_close(ba_db_t *db);
/* 1 when path names a PostgreSQL database (postgresql:// or postgres://). */
int ba_db_is_url(const char *path);
/* 1 for a database server many hosts share (PostgreSQL), 0 for an SQLite file. */
int ba_db_is_shared(const ba_db_t *db);
/* url with any password replaced by *** (for messages). */
void ba_db_url_masked(const char *url, char *out, size_t cap);

typedef struct ba_study_info {
    int64_t id;
    char name[256];
    char created[32];
    char model_path[4096];
    char model_sha256[65];
    char data_sha256[65];
    char state[16]; /* running | complete | failed */
    char *settings; /* JSON text, caller frees (ba_db_study_info_free) */
    int64_t ntrials;
    int64_t ncomplete;
    char metric[16]; /* the search metric the study ranks by ("" before its first run, schema 1) */
} ba_study_info_t;

typedef struct ba_db_layer {
    const char *name;
    const char *op;
    int64_t params;
    int64_t macs;
} ba_db_layer_t;

/* Creates a study; BA_ERR_INPUT when the name exists. */
ba_status ba_db_study_create(ba_db_t *db, const char *name, const char *model_path, const char *model_sha256,
                             const char *data_sha256, const char *settings_json, const ba_db_layer_t *layers,
                             int nlayers, int64_t *study_id, ba_error *err);
/* BA_ERR_INPUT "study 'x' not found" when absent. info->settings allocated. */
ba_status ba_db_study_get(ba_db_t *db, const char *name, ba_study_info_t *info, ba_error *err);
void ba_db_study_info_free(ba_study_info_t *info);
ba_status ba_db_study_set_state(ba_db_t *db, int64_t study_id, const char *state, ba_error *err);
/* All studies, newest first. *out allocated (free each settings + array with ba_db_studies_free). */
ba_status ba_db_studies_list(ba_db_t *db, ba_study_info_t **out, int *n, ba_error *err);
void ba_db_studies_free(ba_study_info_t *s, int n);
ba_status ba_db_layer_names(ba_db_t *db, int64_t study_id, char ***names, int *n, ba_error *err);
/* The study's layer table in order; name and op allocated (free with ba_db_layers_free). */
ba_status ba_db_layers_get(ba_db_t *db, int64_t study_id, ba_db_layer_t **out, int *n, ba_error *err);
void ba_db_layers_free(ba_db_layer_t *l, int n);

/* A trial; NaN in a double field = NULL in the DB. */
typedef struct ba_trial {
    int64_t number;
    char state[16]; /* running | complete | failed | pruned */
    char method[32];
    char started[32];
    char finished[32];
    double avg_bits;
    double memory; /* bytes */
    double bops;
    double latency;   /* µs */
    double predicted; /* Σ Ω */
    double kl, mse, agreement, accuracy;
    int64_t samples;   /* calibration samples the metrics were measured on */
    double objective;  /* the study's metric, signed so that lower is better (eval/metrics.h) */
    double validation; /* the objective on the validation part (the final choice among the elites) */
    int nlayers;
    int *w_bits; /* nlayers */
    int *a_bits; /* nlayers, 0 = float */
} ba_trial_t;

void ba_trial_free(ba_trial_t *t); /* frees w_bits/a_bits */

/* Writes trial t (number assigned as max+1 when t->number <= 0; the number
 * used is stored back) and, when checkpoint_json is non-NULL, replaces the
 * study's checkpoint — both in one transaction. */
ba_status ba_db_trial_add(ba_db_t *db, int64_t study_id, ba_trial_t *t, const char *checkpoint_json,
                          ba_error *err);
/* The checkpoint JSON (caller frees) or NULL when none. */
ba_status ba_db_checkpoint_get(ba_db_t *db, int64_t study_id, char **json, ba_error *err);

typedef struct ba_trial_query {
    const char *where;  /* "avg_bits<=4 and kl<0.01" (NULL = all) */
    const char *sort;   /* column name, optionally "-kl" for descending; default number */
    int64_t limit;      /* <= 0: no limit */
    int best;           /* only the best complete trial (BA_DB_BEST_ORDER) */
    const char *pareto; /* "kl,memory": only the complete trials no other complete trial (after --where)
                         * dominates on these columns (agreement, accuracy maximized, the rest
                         * minimized; a NULL value keeps a trial off); sorted by the last one
                         * unless sort is given. NULL = no filter. */
} ba_trial_query_t;

/* Default objectives of a Pareto query: the measured objective against the average width. */
#define BA_DB_PARETO_DEFAULT "kl,avg_bits"
/* Most objectives in a Pareto query. */
#define BA_DB_PARETO_MAX 8

/* The one order that picks a study's best trial (search, `trials --best`,
 * `studies`, `export --trial best`): the trial the evolution's final choice
 * marked (schema 4, ba_db_trial_set_chosen; put before this order), then the
 * lowest validation figure, then the lowest objective (the study's metric,
 * signed: lower is better), then kl (studies of schema 1), Σ Ω, the earliest. */
#define BA_DB_BEST_ORDER                                                                                     \
    "(validation IS NULL), validation, (objective IS NULL), objective, (kl IS NULL), kl, (predicted IS "     \
    "NULL), "                                                                                                \
    "predicted, number"
/* The same for a file of schema 1 opened read-only (no objective columns). */
#define BA_DB_BEST_ORDER_V1 "(kl IS NULL), kl, (predicted IS NULL), predicted, number"

/* Complete list in number order unless sorted. *out allocated; free with ba_db_trials_free. */
ba_status ba_db_trials_query(ba_db_t *db, int64_t study_id, const ba_trial_query_t *q, ba_trial_t **out,
                             int *n, ba_error *err);
void ba_db_trials_free(ba_trial_t *t, int n);
ba_status ba_db_trial_get(ba_db_t *db, int64_t study_id, int64_t number, ba_trial_t *out, ba_error *err);

/* Records the metric (its name, e.g. "relmse") the study's objective is. */
ba_status ba_db_study_set_metric(ba_db_t *db, int64_t study_id, const char *metric, ba_error *err);
/* Sets the validation figure of trial `number` (NaN = NULL). */
ba_status ba_db_trial_set_validation(ba_db_t *db, int64_t study_id, int64_t number, double validation,
                                     ba_error *err);

/* Marks trial `number` as the evolution's final choice with its account (JSON text) and
 * unmarks any other trial of the study (schema 4; a file of an older schema is left as is). */
ba_status ba_db_trial_set_chosen(ba_db_t *db, int64_t study_id, int64_t number, const char *record,
                                 ba_error *err);
/* The account of the final choice when trial `number` is the chosen one (*record: caller frees),
 * else NULL. */
ba_status ba_db_trial_chosen(ba_db_t *db, int64_t study_id, int64_t number, char **record, ba_error *err);

/* The memo of measured configurations: config is the configuration's text
 * (e.g. "4,8,2"), [first, first + samples) the calibration samples it was
 * measured on. A double NaN is stored as NULL. */
typedef struct ba_memo_entry {
    double objective, kl, mse, agreement, accuracy;
} ba_memo_entry_t;
/* *found = 1 and *out filled when the study has a measurement of config on that window. */
ba_status ba_db_memo_get(ba_db_t *db, int64_t study_id, const char *config, int64_t first, int64_t samples,
                         ba_memo_entry_t *out, int *found, ba_error *err);
/* Records a measurement (a second writer of the same key keeps the first: measurements are deterministic). */
ba_status ba_db_memo_put(ba_db_t *db, int64_t study_id, const char *config, int64_t first, int64_t samples,
                         const ba_memo_entry_t *e, ba_error *err);
/* Measurements recorded for the study. */
ba_status ba_db_memo_count(ba_db_t *db, int64_t study_id, int64_t *n, ba_error *err);

/* ---- the work queue of a study many workers run (schema 3) ----
 * A measurement is keyed like the memo (configuration text, sample window).
 * Times are seconds on the database's clock, the same for every host. */
typedef struct ba_db_work_item {
    char *config; /* allocated by claim (free with ba_db_work_item_free) */
    int64_t first, samples;
    int64_t attempt; /* claims made of it so far, this one included */
} ba_db_work_item_t;
void ba_db_work_item_free(ba_db_work_item_t *w);

/* Queues n measurements (configs[i] on [first[i], first[i] + samples[i])) in one transaction, in order;
 * one already queued (by another worker, or done) is left as it is. */
ba_status ba_db_work_add(ba_db_t *db, int64_t study_id, const char *const *configs, const int64_t *first,
                         const int64_t *samples, int n, ba_error *err);
/* Claims the first open measurement of the study in queue order — waiting, or running
 * with a lease that expired (its worker died or lost its connection) — made fewer than
 * max_attempts times: it becomes running, its attempt counts one more, and it is leased
 * to `worker` for lease_s seconds. Concurrent claims never get the same one (PostgreSQL:
 * FOR UPDATE SKIP LOCKED; SQLite: one writer at a time). *found = 0 when none is open. */
ba_status ba_db_work_claim(ba_db_t *db, int64_t study_id, const char *worker, double lease_s,
                           int max_attempts, ba_db_work_item_t *out, int *found, ba_error *err);
/* Extends the lease of a claim (the heartbeat). *held = 0 when the claim is no longer
 * this attempt's (it expired and was claimed again, or it is done). */
ba_status ba_db_work_renew(ba_db_t *db, int64_t study_id, const ba_db_work_item_t *w, double lease_s,
                           int *held, ba_error *err);
/* Records a measurement (the memo row) and closes its queue entry, in one transaction. A late
 * second completion of the same measurement changes nothing (measurements are deterministic). */
ba_status ba_db_work_done(ba_db_t *db, int64_t study_id, const ba_db_work_item_t *w, const ba_memo_entry_t *e,
                          ba_error *err);
/* State of a queued measurement: *found 0 when it was never queued; else state
 * ("waiting", "running", "done"), the claims made of it, and *expired 1 when it is
 * running under a lease that ran out (its worker is gone). */
ba_status ba_db_work_get(ba_db_t *db, int64_t study_id, const char *config, int64_t first, int64_t samples,
                         char state[16], int64_t *attempts, int *expired, int *found, ba_error *err);
/* The queue's totals: entries, done ones, and claims made (Σ attempt). */
ba_status ba_db_work_totals(ba_db_t *db, int64_t study_id, int64_t *n, int64_t *done, int64_t *claims,
                            ba_error *err);
/* Names this connection on the server (PostgreSQL's application_name, seen in
 * pg_stat_activity); nothing for SQLite. */
ba_status ba_db_set_client_name(ba_db_t *db, const char *name, ba_error *err);
/* A second connection to the database db is open on (a heartbeat runs on its own connection). */
ba_status ba_db_reopen(const ba_db_t *db, ba_db_t **out, ba_error *err);

/* Sensitivity cache keyed by a caller-made key (model sha, method, settings, data sha). */
ba_status ba_db_sens_get(ba_db_t *db, const char *key, char **payload,
                         ba_error *err); /* *payload NULL: miss */
/* The newest cached sensitivity of a model by one method (any settings); *payload NULL when none. */
ba_status ba_db_sens_latest(ba_db_t *db, const char *model_sha256, const char *method, char **payload,
                            ba_error *err);
ba_status ba_db_sens_put(ba_db_t *db, const char *key, const char *model_sha256, const char *method,
                         const char *payload, ba_error *err);

/* Validates a --where expression (column names, operators, numbers); used by
 * the query and by the CLI to report errors early. */
ba_status ba_db_where_check(const char *where, ba_error *err);
/* The value of trial column col ("kl", "avg_bits", …; '-' for '_') as stored; NaN when
 * unknown or NULL. *maximize (may be NULL) is set for agreement and accuracy. */
double ba_db_trial_column(const ba_trial_t *t, const char *col, int *maximize);
/* Validates a --objectives list ("kl,memory"; '-' may stand for '_'); *k objectives. */
ba_status ba_db_pareto_check(const char *objectives, int *k, ba_error *err);

/* Deletes a study with its layers, trials and checkpoint (BA_ERR_INPUT when absent). */
ba_status ba_db_study_delete(ba_db_t *db, const char *name, ba_error *err);
/* Renames a study (BA_ERR_INPUT when absent or when new_name is taken). */
ba_status ba_db_study_rename(ba_db_t *db, const char *old_name, const char *new_name, ba_error *err);

#endif
