/* Storage of studies, trials, checkpoints, cached sensitivities and the work
 * queue, in SQLite or PostgreSQL through the statement layer (db/sql.h): the
 * statements are written once; what differs by engine is named where it is
 * used. Invariants: every write in one transaction (SQLite: BEGIN IMMEDIATE,
 * retried while the file is busy; WAL journal and a busy timeout so readers and
 * writers of one file wait instead of failing); --where is parsed into bound
 * parameters against a whitelist of columns, never pasted into SQL. */
#include "db/db.h"

#include "core/pareto.h"
#include "core/units.h"
#include "db/sql.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_V1                                                                                            \
    "CREATE TABLE studies(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, created TEXT NOT NULL,"         \
    " model_path TEXT NOT NULL, model_sha256 TEXT NOT NULL, data_sha256 TEXT NOT NULL DEFAULT '',"           \
    " settings TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'running');"                                       \
    "CREATE TABLE layers(study_id INTEGER NOT NULL REFERENCES studies(id), idx INTEGER NOT NULL,"            \
    " name TEXT NOT NULL, op TEXT NOT NULL, params INTEGER NOT NULL, macs INTEGER NOT NULL,"                 \
    " PRIMARY KEY(study_id, idx));"                                                                          \
    "CREATE TABLE trials(id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL REFERENCES studies(id),"          \
    " number INTEGER NOT NULL, state TEXT NOT NULL, method TEXT NOT NULL, started TEXT, finished TEXT,"      \
    " avg_bits REAL, memory REAL, bops REAL, latency REAL, predicted REAL, kl REAL, mse REAL,"               \
    " agreement REAL, accuracy REAL, samples INTEGER, UNIQUE(study_id, number));"                            \
    "CREATE TABLE trial_bits(trial_id INTEGER NOT NULL REFERENCES trials(id), layer_idx INTEGER NOT NULL,"   \
    " w_bits INTEGER NOT NULL, a_bits INTEGER NOT NULL, PRIMARY KEY(trial_id, layer_idx));"                  \
    "CREATE TABLE checkpoints(study_id INTEGER PRIMARY KEY REFERENCES studies(id), updated TEXT NOT NULL,"   \
    " state TEXT NOT NULL);"                                                                                 \
    "CREATE TABLE sensitivity_cache(key TEXT PRIMARY KEY, model_sha256 TEXT NOT NULL, method TEXT NOT NULL," \
    " created TEXT NOT NULL, payload TEXT NOT NULL);"

static ba_status dberr(ba_db_t *db, ba_error *err, const char *what) {
    return ba_db_fail(db, err, what);
}

static void now_iso(char out[32]) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static ba_status exec(ba_db_t *db, const char *sql, ba_error *err) {
    return ba_db_exec(db, sql, err);
}

static ba_status begin(ba_db_t *db, ba_error *err) {
    return ba_db_begin(db, err);
}

static void rollback(ba_db_t *db) {
    ba_db_rollback(db);
}

/* A write transaction of the work queue's bookkeeping. On PostgreSQL its commit does
 * not wait for the disk: a claim or completion a server crash loses is made again
 * (the measurement is deterministic), and the WAL is written in order, so a trial
 * stored after it (a durable commit) makes it durable too. */
static ba_status begin_queue(ba_db_t *db, ba_error *err) {
    BA_TRY(ba_db_begin(db, err));
    if (db->kind != BA_DB_KIND_PG) return BA_OK;
    ba_status st = ba_db_exec(db, "SET LOCAL synchronous_commit = off", err);
    if (st != BA_OK) ba_db_rollback(db);
    return st;
}

static ba_status commit(ba_db_t *db, ba_error *err) {
    return ba_db_commit(db, err);
}

/* Ends the transaction: commits it when st is BA_OK (returning the commit's status), else rolls
 * it back and returns st. */
static ba_status end_tx(ba_db_t *db, ba_status st, ba_error *err) {
    if (st == BA_OK) return commit(db, err);
    rollback(db);
    return st;
}

static int64_t pragma_int(ba_db_t *db, const char *sql, int *ok) {
    sqlite3_stmt *s;
    int64_t v = 0;
    *ok = 0;
    if (sqlite3_prepare_v2(db->h, sql, -1, &s, NULL) != SQLITE_OK) return 0;
    if (sqlite3_step(s) == SQLITE_ROW) {
        v = sqlite3_column_int64(s, 0);
        *ok = 1;
    }
    sqlite3_finalize(s);
    return v;
}

/* Switching to WAL needs an exclusive lock and does not wait on the busy
 * handler: retry while another process holds the file. */
static ba_status set_wal(ba_db_t *db, ba_error *err) {
    for (int i = 0; i < BA_DB_BEGIN_RETRIES * 10; i++) {
        int rc = sqlite3_exec(db->h, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
        if (rc == SQLITE_OK) return BA_OK;
        if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) break;
        usleep(20000);
    }
    return dberr(db, err, "cannot enable WAL");
}

/* Version 2: the search objective of each trial (the study's --metric, signed
 * so that lower is better) and its figure on the validation part; the memo of
 * measured configurations (one row per configuration, sample window), so that
 * none is measured twice, across generations and across resume. */
#define SCHEMA_V2                                                                                            \
    "ALTER TABLE trials ADD COLUMN objective REAL;"                                                          \
    "ALTER TABLE trials ADD COLUMN validation REAL;"                                                         \
    "ALTER TABLE studies ADD COLUMN metric TEXT;"                                                            \
    "CREATE TABLE memo(study_id INTEGER NOT NULL REFERENCES studies(id), config TEXT NOT NULL,"              \
    " first INTEGER NOT NULL, samples INTEGER NOT NULL, objective REAL, kl REAL, mse REAL, agreement REAL,"  \
    " accuracy REAL, PRIMARY KEY(study_id, config, first, samples));"

/* Version 3: the work queue of a study run by many workers (`bitalloc worker`):
 * one row per measurement a generation needs (configuration, sample window),
 * written before any worker claims one; a claim holds a lease until lease_until
 * (seconds since the epoch on the database's clock), renewed by a heartbeat;
 * an expired lease is claimed again and the measurement made again. */
#define SCHEMA_V3                                                                                            \
    "CREATE TABLE work(study_id INTEGER NOT NULL REFERENCES studies(id), config TEXT NOT NULL,"              \
    " first INTEGER NOT NULL, samples INTEGER NOT NULL, seq INTEGER NOT NULL, state TEXT NOT NULL,"          \
    " attempt INTEGER NOT NULL DEFAULT 0, worker TEXT, lease_until REAL,"                                    \
    " PRIMARY KEY(study_id, config, first, samples));"                                                       \
    "CREATE INDEX work_open ON work(study_id, state, seq);"

/* Version 4: the evolution's final choice on the validation part: the chosen trial holds its
 * account (JSON: the default, the paired test, each candidate's figures), the others NULL; the
 * best-trial order (BA_DB_BEST_ORDER) puts it first. */
#define SCHEMA_V4 "ALTER TABLE trials ADD COLUMN chosen TEXT;"

/* Forward migrations: index i upgrades schema i to i+1. */
const char *const ba_db_migrations[] = {SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4};
#define MIGRATIONS ba_db_migrations

/* "file:PATH?immutable=1" with PATH percent-encoded where URI syntax needs it. */
static char *immutable_uri(const char *path, ba_error *err) {
    size_t n = strlen(path);
    char *u = ba_malloc(3 * n + 32, err);
    if (!u) return NULL;
    size_t o = (size_t)sprintf(u, "file:");
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if (*p == '%' || *p == '?' || *p == '#' || *p < 0x20 || *p >= 0x7f)
            o += (size_t)sprintf(u + o, "%%%02X", *p);
        else
            u[o++] = (char)*p;
    }
    sprintf(u + o, "?immutable=1");
    return u;
}

/* The header (application id, schema version, table count) in one read
 * transaction: another process may be creating the schema right now, and
 * reads spread over its commit would see a half-made database. On failure
 * why holds SQLite's reason (never the "not an error" of a later call). */
static int read_header(ba_db_t *db, int64_t *app, int64_t *ver, int64_t *ntables, int *code, char *why,
                       size_t cap) {
    int ok = 0, ok2 = 0, ok3 = 0;
    snprintf(why, cap, "cannot read it");
    *code = SQLITE_OK;
    for (int tries = 0; tries < BA_DB_BEGIN_RETRIES && !(ok && ok2 && ok3); tries++) {
        if (tries) usleep(50000);
        if (sqlite3_exec(db->h, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
            *code = sqlite3_errcode(db->h);
            snprintf(why, cap, "%s", sqlite3_errmsg(db->h));
            continue;
        }
        *app = pragma_int(db, "PRAGMA application_id", &ok);
        if (ok) *ver = pragma_int(db, "PRAGMA user_version", &ok2);
        if (ok2) *ntables = pragma_int(db, "SELECT count(*) FROM sqlite_master", &ok3);
        if (!(ok && ok2 && ok3)) {
            *code = sqlite3_errcode(db->h);
            snprintf(why, cap, "%s", sqlite3_errmsg(db->h));
        }
        sqlite3_exec(db->h, "COMMIT", NULL, NULL, NULL);
        if (*code == SQLITE_NOTADB || *code == SQLITE_CORRUPT) break;
    }
    if (!strcmp(why, "not an error") || !why[0]) snprintf(why, cap, "cannot read it");
    return ok && ok2 && ok3;
}

static int sqlite_open(ba_db_t *db, const char *name, int flags) {
    if (db->h) sqlite3_close(db->h);
    db->h = NULL;
    int rc = sqlite3_open_v2(name, &db->h, flags, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(db->h, BA_DB_BUSY_TIMEOUT_MS);
        sqlite3_extended_result_codes(db->h, 0);
    }
    return rc;
}

int ba_db_is_url(const char *path) {
    return path && (!strncmp(path, "postgresql://", 13) || !strncmp(path, "postgres://", 11));
}

int ba_db_is_shared(const ba_db_t *db) {
    return db && db->kind == BA_DB_KIND_PG;
}

ba_status ba_db_open(const char *path, int mode, ba_db_t **out, ba_error *err) {
    *out = NULL;
    int create = mode == BA_DB_OPEN_CREATE, readonly = mode == BA_DB_OPEN_READONLY;
    ba_db_t *db = ba_calloc(1, sizeof *db, err);
    if (!db) return BA_ERR_NOMEM;
    if (ba_db_is_url(path)) {
        db->kind = BA_DB_KIND_PG;
        snprintf(db->url, sizeof db->url, "%s", path);
        ba_db_url_masked(path, db->path, sizeof db->path);
        ba_status st = ba_db_pg_open(db, mode, err);
        if (st != BA_OK) {
            ba_db_close(db);
            return st;
        }
        *out = db;
        return BA_OK;
    }
    snprintf(db->path, sizeof db->path, "%s", path);
    if (!create && access(path, F_OK) != 0) {
        /* Reading commands never create a database as a side effect. */
        free(db);
        return ba_error_set(err, BA_ERR_INPUT, "%s: no such database (a search creates it; see --db)", path);
    }
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        /* SQLite would wait on a FIFO for a writer, or read a device forever. */
        free(db);
        return ba_error_set(err, BA_ERR_INPUT, "%s: not a regular file, so not a database", path);
    }
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite_open(db, path, flags) != SQLITE_OK) {
        ba_status st = ba_error_set(err, create ? BA_ERR_IO : BA_ERR_INPUT, "%s: cannot open database: %s",
                                    path, db->h ? sqlite3_errmsg(db->h) : "out of memory");
        ba_db_close(db);
        return st;
    }
    int64_t app = 0, ver = 0, ntables = 0;
    int code;
    char why[256];
    int ok = read_header(db, &app, &ver, &ntables, &code, why, sizeof why);
    if (!ok && readonly && code != SQLITE_NOTADB && code != SQLITE_CORRUPT) {
        /* A WAL database in a folder (or mount) this process cannot write: SQLite cannot make the
         * -shm file a reader needs. Nothing can be writing it there, so read it as immutable. */
        char *uri = immutable_uri(path, err);
        if (!uri) {
            ba_db_close(db);
            return BA_ERR_NOMEM;
        }
        int rc = sqlite_open(db, uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI);
        free(uri);
        if (rc == SQLITE_OK) ok = read_header(db, &app, &ver, &ntables, &code, why, sizeof why);
    }
    if (!ok) {
        ba_status st = code == SQLITE_NOTADB || code == SQLITE_CORRUPT
                           ? ba_error_set(err, BA_ERR_INPUT, "%s: not a bitalloc database (%s)", path, why)
                           : ba_error_set(err, BA_ERR_IO, "%s: cannot read the database: %s", path, why);
        ba_db_close(db);
        return st;
    }
    if (app != BA_DB_APPLICATION_ID && !(app == 0 && ntables == 0 && ver == 0)) {
        ba_db_close(db);
        return ba_error_set(err, BA_ERR_INPUT, "%s: not a bitalloc database (application id %lld)", path,
                            (long long)app);
    }
    if (ver > BA_DB_SCHEMA_VERSION) {
        ba_db_close(db);
        return ba_error_set(
            err, BA_ERR_INPUT,
            "%s: database schema version %lld is newer than this bitalloc's (%d): upgrade bitalloc", path,
            (long long)ver, BA_DB_SCHEMA_VERSION);
    }
    ba_status st = BA_OK;
    if (readonly || (!create && ver == 0 && ntables == 0)) {
        /* Read-only: no migration, no journal switch; only a creating open turns an empty file
         * into a database. */
        if (ver < BA_DB_SCHEMA_VERSION && ntables == 0)
            st = ba_error_set(err, BA_ERR_INPUT,
                              "%s: no such database (an empty file; a search creates it; see --db)", path);
        else if (ver < BA_DB_SCHEMA_VERSION)
            st = ba_error_set(err, BA_ERR_INPUT, "%s: not a bitalloc database (no bitalloc schema)", path);
    } else if (ver < BA_DB_SCHEMA_VERSION) {
        st = set_wal(db, err);
        if (st == BA_OK) st = begin(db, err);
        /* Re-read under the write lock: another process may have migrated meanwhile. */
        if (st == BA_OK) ver = pragma_int(db, "PRAGMA user_version", &ok);
        for (int64_t v = ver; st == BA_OK && v < BA_DB_SCHEMA_VERSION; v++) st = exec(db, MIGRATIONS[v], err);
        if (st == BA_OK && ver < BA_DB_SCHEMA_VERSION) {
            char sql[128];
            snprintf(sql, sizeof sql, "PRAGMA application_id=%d; PRAGMA user_version=%d",
                     BA_DB_APPLICATION_ID, BA_DB_SCHEMA_VERSION);
            st = exec(db, sql, err);
        }
        st = end_tx(db, st, err);
    } else if (sqlite3_exec(db->h, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK) {
        /* A read-only file keeps its journal mode; reading still works. */
    }
    if (st == BA_OK)
        st = exec(db,
                  readonly ? "PRAGMA foreign_keys=ON" : "PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL",
                  err);
    if (st == BA_OK) {
        int okv;
        db->version = (int)pragma_int(db, "PRAGMA user_version", &okv);
    }
    if (st != BA_OK) {
        ba_db_close(db);
        return st;
    }
    *out = db;
    return BA_OK;
}

void ba_db_close(ba_db_t *db) {
    if (!db) return;
    if (db->kind == BA_DB_KIND_PG)
        ba_db_pg_close(db);
    else
        sqlite3_close(db->h);
    free(db);
}

void ba_db_url_masked(const char *url, char *out, size_t cap) {
    /* scheme://user:PASSWORD@host… → scheme://user:***@host…; password=… in the query too. */
    size_t o = 0;
    const char *p = url;
    const char *auth = strstr(url, "://");
    const char *at = auth ? strchr(auth + 3, '@') : NULL;
    const char *slash = auth ? strchr(auth + 3, '/') : NULL;
    if (at && slash && slash < at) at = NULL;
    const char *colon = at ? memchr(auth + 3, ':', (size_t)(at - auth - 3)) : NULL;
    for (; *p && o + 4 < cap; p++) {
        if (colon && p == colon + 1) {
            o += (size_t)snprintf(out + o, cap - o, "***");
            p = at - 1;
            continue;
        }
        if ((p == url || p[-1] == '?' || p[-1] == '&') && !strncmp(p, "password=", 9)) {
            o += (size_t)snprintf(out + o, cap - o, "password=***");
            p += 9;
            while (*p && *p != '&') p++;
            p--;
            continue;
        }
        out[o++] = *p;
    }
    out[o < cap ? o : cap - 1] = '\0';
}

static ba_status prep(ba_db_t *db, const char *sql, ba_db_stmt_t **s, ba_error *err) {
    return ba_db_prep(db, sql, s, err);
}

static void copy_col(ba_db_stmt_t *s, int i, char *dst, size_t cap) {
    const char *t = ba_db_col_text(s, i);
    snprintf(dst, cap, "%s", t ? t : "");
}

ba_status ba_db_study_create(ba_db_t *db, const char *name, const char *model_path, const char *model_sha256,
                             const char *data_sha256, const char *settings_json, const ba_db_layer_t *layers,
                             int nlayers, int64_t *study_id, ba_error *err) {
    if (!name[0] || strlen(name) >= 256)
        return ba_error_set(err, BA_ERR_INPUT, "--study: name must have 1 to 255 characters");
    BA_TRY(begin(db, err));
    ba_db_stmt_t *s = NULL;
    int64_t id = 0;
    char ts[32];
    now_iso(ts);
    ba_status st = prep(db,
                        "INSERT INTO studies(name, created, model_path, model_sha256, data_sha256, settings)"
                        " VALUES(?,?,?,?,?,?) RETURNING id",
                        &s, err);
    if (st == BA_OK) {
        ba_db_bind_text(s, 1, name);
        ba_db_bind_text(s, 2, ts);
        ba_db_bind_text(s, 3, model_path);
        ba_db_bind_text(s, 4, model_sha256);
        ba_db_bind_text(s, 5, data_sha256 ? data_sha256 : "");
        ba_db_bind_text(s, 6, settings_json ? settings_json : "{}");
        int rc = ba_db_step(s);
        if (rc == BA_DB_ROW) id = ba_db_col_int(s, 0);
        if (rc == BA_DB_CONSTRAINT)
            st = ba_error_set(err, BA_ERR_INPUT, "--study: a study named '%s' already exists in %s", name,
                              db->path);
        else if (rc != BA_DB_ROW)
            st = dberr(db, err, "cannot create study");
    }
    ba_db_finalize(s);
    s = NULL;
    if (st == BA_OK)
        st = prep(db, "INSERT INTO layers(study_id, idx, name, op, params, macs) VALUES(?,?,?,?,?,?)", &s,
                  err);
    for (int i = 0; st == BA_OK && i < nlayers; i++) {
        ba_db_reset(s);
        ba_db_bind_int(s, 1, id);
        ba_db_bind_int(s, 2, i);
        ba_db_bind_text(s, 3, layers[i].name);
        ba_db_bind_text(s, 4, layers[i].op);
        ba_db_bind_int(s, 5, layers[i].params);
        ba_db_bind_int(s, 6, layers[i].macs);
        if (ba_db_step(s) != BA_DB_DONE) st = dberr(db, err, "cannot store layers");
    }
    ba_db_finalize(s);
    st = end_tx(db, st, err);
    if (st == BA_OK && study_id) *study_id = id;
    return st;
}

static const char *STUDY_COLS =
    "SELECT s.id, s.name, s.created, s.model_path, s.model_sha256, s.data_sha256, s.state, s.settings,"
    " (SELECT count(*) FROM trials t WHERE t.study_id = s.id),"
    " (SELECT count(*) FROM trials t WHERE t.study_id = s.id AND t.state = 'complete'), %s FROM studies s";

/* The resolved search metric, a column since schema 2. */
static const char *study_metric_col(const ba_db_t *db) {
    return db->version >= 2 ? "s.metric" : "NULL";
}

static ba_status read_study(ba_db_stmt_t *s, ba_study_info_t *info, ba_error *err) {
    memset(info, 0, sizeof *info);
    info->id = ba_db_col_int(s, 0);
    copy_col(s, 1, info->name, sizeof info->name);
    copy_col(s, 2, info->created, sizeof info->created);
    copy_col(s, 3, info->model_path, sizeof info->model_path);
    copy_col(s, 4, info->model_sha256, sizeof info->model_sha256);
    copy_col(s, 5, info->data_sha256, sizeof info->data_sha256);
    copy_col(s, 6, info->state, sizeof info->state);
    const char *js = ba_db_col_text(s, 7);
    info->settings = ba_strdup(js ? js : "{}", err);
    info->ntrials = ba_db_col_int(s, 8);
    info->ncomplete = ba_db_col_int(s, 9);
    copy_col(s, 10, info->metric, sizeof info->metric);
    return info->settings ? BA_OK : BA_ERR_NOMEM;
}

ba_status ba_db_study_get(ba_db_t *db, const char *name, ba_study_info_t *info, ba_error *err) {
    char sql[1024];
    char cols[768];
    snprintf(cols, sizeof cols, STUDY_COLS, study_metric_col(db));
    snprintf(sql, sizeof sql, "%s WHERE s.name = ?", cols);
    ba_db_stmt_t *s;
    memset(info, 0, sizeof *info);
    BA_TRY(prep(db, sql, &s, err));
    ba_db_bind_text(s, 1, name);
    int rc = ba_db_step(s);
    ba_status st;
    if (rc == BA_DB_ROW)
        st = read_study(s, info, err);
    else if (rc == BA_DB_DONE)
        st = ba_error_set(err, BA_ERR_INPUT, "--study: no study named '%s' in %s", name, db->path);
    else
        st = dberr(db, err, "cannot read study");
    ba_db_finalize(s);
    return st;
}

void ba_db_study_info_free(ba_study_info_t *info) {
    if (!info) return;
    free(info->settings);
    info->settings = NULL;
}

/* Runs each statement of sql (NUL-separated, ending with an empty one) with ?1 = a, ?2 = b
 * in one transaction; *changed = rows the first statement changed. */
static ba_status write_steps(ba_db_t *db, const char *const *sql, const char *a, const char *b, int *changed,
                             const char *what, ba_error *err) {
    BA_TRY(begin(db, err));
    ba_status st = BA_OK;
    *changed = 0;
    for (int i = 0; st == BA_OK && sql[i]; i++) {
        ba_db_stmt_t *s;
        st = prep(db, sql[i], &s, err);
        if (st != BA_OK) break;
        if (ba_db_param_count(s) >= 1) ba_db_bind_text(s, 1, a);
        if (ba_db_param_count(s) >= 2) ba_db_bind_text(s, 2, b);
        int rc = ba_db_step(s);
        if (rc == BA_DB_CONSTRAINT)
            st = ba_error_set(err, BA_ERR_INPUT, "studies: a study named '%s' already exists in %s", b,
                              db->path);
        else if (rc != BA_DB_DONE)
            st = dberr(db, err, what);
        if (st == BA_OK && i == 0) *changed = (int)db->changes;
        ba_db_finalize(s);
    }
    return end_tx(db, st, err);
}

ba_status ba_db_study_delete(ba_db_t *db, const char *name, ba_error *err) {
    /* The study's rows in the other tables first, then the study row. */
#define BA_GONE "(SELECT id FROM studies WHERE name = ?1)"
    static const char *const sql[] = {"DELETE FROM trial_bits WHERE trial_id IN (SELECT id FROM trials WHERE "
                                      "study_id IN " BA_GONE ")",
                                      "DELETE FROM trials WHERE study_id IN " BA_GONE,
                                      "DELETE FROM layers WHERE study_id IN " BA_GONE,
                                      "DELETE FROM checkpoints WHERE study_id IN " BA_GONE,
                                      "DELETE FROM memo WHERE study_id IN " BA_GONE,
                                      "DELETE FROM work WHERE study_id IN " BA_GONE,
                                      "DELETE FROM studies WHERE name = ?1",
                                      NULL};
#undef BA_GONE
    ba_study_info_t info;
    BA_TRY(ba_db_study_get(db, name, &info, err));
    ba_db_study_info_free(&info);
    int changed;
    return write_steps(db, sql, name, NULL, &changed, "cannot delete study", err);
}

ba_status ba_db_study_rename(ba_db_t *db, const char *old_name, const char *new_name, ba_error *err) {
    if (!new_name[0] || strlen(new_name) >= 256)
        return ba_error_set(err, BA_ERR_INPUT, "--rename: a name must have 1 to 255 characters");
    static const char *const sql[] = {"UPDATE studies SET name = ?2 WHERE name = ?1", NULL};
    int changed;
    BA_TRY(write_steps(db, sql, old_name, new_name, &changed, "cannot rename study", err));
    if (!changed)
        return ba_error_set(err, BA_ERR_INPUT, "--study: no study named '%s' in %s", old_name, db->path);
    return BA_OK;
}

ba_status ba_db_study_set_state(ba_db_t *db, int64_t study_id, const char *state, ba_error *err) {
    BA_TRY(begin(db, err));
    ba_db_stmt_t *s;
    ba_status st = prep(db, "UPDATE studies SET state = ? WHERE id = ?", &s, err);
    if (st == BA_OK) {
        ba_db_bind_text(s, 1, state);
        ba_db_bind_int(s, 2, study_id);
        if (ba_db_step(s) != BA_DB_DONE) st = dberr(db, err, "cannot update study");
        ba_db_finalize(s);
    }
    return end_tx(db, st, err);
}

ba_status ba_db_studies_list(ba_db_t *db, ba_study_info_t **out, int *n, ba_error *err) {
    *out = NULL;
    *n = 0;
    char sql[1024];
    char cols[768];
    snprintf(cols, sizeof cols, STUDY_COLS, study_metric_col(db));
    snprintf(sql, sizeof sql, "%s ORDER BY s.id DESC", cols);
    ba_db_stmt_t *s;
    BA_TRY(prep(db, sql, &s, err));
    ba_status st = BA_OK;
    int cap = 0, rc;
    while (st == BA_OK && (rc = ba_db_step(s)) == BA_DB_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            ba_study_info_t *p = ba_realloc(*out, sizeof **out * (size_t)cap, err);
            if (!p) {
                st = BA_ERR_NOMEM;
                break;
            }
            *out = p;
        }
        st = read_study(s, &(*out)[*n], err);
        (*n)++;
    }
    if (st == BA_OK && rc != BA_DB_DONE) st = dberr(db, err, "cannot list studies");
    ba_db_finalize(s);
    if (st != BA_OK) {
        ba_db_studies_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return st;
}

void ba_db_studies_free(ba_study_info_t *s, int n) {
    for (int i = 0; s && i < n; i++) free(s[i].settings);
    free(s);
}

void ba_db_layers_free(ba_db_layer_t *l, int n) {
    for (int i = 0; l && i < n; i++) {
        free((char *)l[i].name);
        free((char *)l[i].op);
    }
    free(l);
}

ba_status ba_db_layers_get(ba_db_t *db, int64_t study_id, ba_db_layer_t **out, int *n, ba_error *err) {
    *out = NULL;
    *n = 0;
    ba_db_stmt_t *s;
    BA_TRY(prep(db, "SELECT name, op, params, macs FROM layers WHERE study_id = ? ORDER BY idx", &s, err));
    ba_db_bind_int(s, 1, study_id);
    ba_status st = BA_OK;
    int cap = 0;
    while (st == BA_OK && ba_db_step(s) == BA_DB_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            ba_db_layer_t *p = ba_realloc(*out, sizeof **out * (size_t)cap, err);
            if (!p) {
                st = BA_ERR_NOMEM;
                break;
            }
            *out = p;
        }
        ba_db_layer_t *l = &(*out)[*n];
        l->name = ba_strdup(ba_db_col_text(s, 0), err);
        l->op = l->name ? ba_strdup(ba_db_col_text(s, 1), err) : NULL;
        l->params = ba_db_col_int(s, 2);
        l->macs = ba_db_col_int(s, 3);
        if (!l->op) {
            free((char *)l->name);
            st = BA_ERR_NOMEM;
        } else
            (*n)++;
    }
    ba_db_finalize(s);
    if (st != BA_OK) {
        ba_db_layers_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return st;
}

ba_status ba_db_layer_names(ba_db_t *db, int64_t study_id, char ***names, int *n, ba_error *err) {
    *names = NULL;
    *n = 0;
    ba_db_layer_t *l;
    int nl;
    BA_TRY(ba_db_layers_get(db, study_id, &l, &nl, err));
    /* The names move out of the layer rows; the rest of each row is dropped. */
    char **out = ba_calloc((size_t)nl + 1, sizeof *out, err);
    if (!out) {
        ba_db_layers_free(l, nl);
        return BA_ERR_NOMEM;
    }
    for (int i = 0; i < nl; i++) {
        out[i] = (char *)l[i].name;
        l[i].name = NULL;
    }
    ba_db_layers_free(l, nl);
    *names = out;
    *n = nl;
    return BA_OK;
}

ba_status ba_db_trial_add(ba_db_t *db, int64_t study_id, ba_trial_t *t, const char *checkpoint_json,
                          ba_error *err) {
    BA_TRY(begin(db, err));
    ba_db_stmt_t *s = NULL;
    ba_status st = BA_OK;
    int64_t tid = 0;
    if (t->number <= 0) {
        st = prep(db, "SELECT coalesce(max(number), 0) + 1 FROM trials WHERE study_id = ?", &s, err);
        if (st == BA_OK) {
            ba_db_bind_int(s, 1, study_id);
            if (ba_db_step(s) == BA_DB_ROW)
                t->number = ba_db_col_int(s, 0);
            else
                st = dberr(db, err, "cannot number trial");
        }
        ba_db_finalize(s);
        s = NULL;
    }
    if (!t->started[0]) now_iso(t->started);
    if (!t->finished[0] && strcmp(t->state, "running") != 0) now_iso(t->finished);
    if (st == BA_OK)
        st = prep(
            db,
            "INSERT INTO trials(study_id, number, state, method, started, finished, avg_bits, memory, bops,"
            " latency, predicted, kl, mse, agreement, accuracy, samples, objective, validation)"
            " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
            &s, err);
    if (st == BA_OK) {
        ba_db_bind_int(s, 1, study_id);
        ba_db_bind_int(s, 2, t->number);
        ba_db_bind_text(s, 3, t->state);
        ba_db_bind_text(s, 4, t->method);
        ba_db_bind_text(s, 5, t->started);
        if (t->finished[0])
            ba_db_bind_text(s, 6, t->finished);
        else
            ba_db_bind_null(s, 6);
        ba_db_bind_real(s, 7, t->avg_bits);
        ba_db_bind_real(s, 8, t->memory);
        ba_db_bind_real(s, 9, t->bops);
        ba_db_bind_real(s, 10, t->latency);
        ba_db_bind_real(s, 11, t->predicted);
        ba_db_bind_real(s, 12, t->kl);
        ba_db_bind_real(s, 13, t->mse);
        ba_db_bind_real(s, 14, t->agreement);
        ba_db_bind_real(s, 15, t->accuracy);
        ba_db_bind_int(s, 16, t->samples);
        ba_db_bind_real(s, 17, t->objective);
        ba_db_bind_real(s, 18, t->validation);
        int rc = ba_db_step(s);
        if (rc == BA_DB_ROW) tid = ba_db_col_int(s, 0);
        if (rc == BA_DB_CONSTRAINT)
            st = ba_error_set(err, BA_ERR_RUNTIME, "%s: trial %lld already stored", db->path,
                              (long long)t->number);
        else if (rc != BA_DB_ROW)
            st = dberr(db, err, "cannot store trial");
    }
    ba_db_finalize(s);
    s = NULL;
    if (st == BA_OK)
        st = prep(db, "INSERT INTO trial_bits(trial_id, layer_idx, w_bits, a_bits) VALUES(?,?,?,?)", &s, err);
    for (int i = 0; st == BA_OK && i < t->nlayers; i++) {
        ba_db_reset(s);
        ba_db_bind_int(s, 1, tid);
        ba_db_bind_int(s, 2, i);
        ba_db_bind_int(s, 3, t->w_bits[i]);
        ba_db_bind_int(s, 4, t->a_bits ? t->a_bits[i] : 0);
        if (ba_db_step(s) != BA_DB_DONE) st = dberr(db, err, "cannot store trial bits");
    }
    ba_db_finalize(s);
    s = NULL;
    if (st == BA_OK && checkpoint_json) {
        char ts[32];
        now_iso(ts);
        st = prep(
            db,
            "INSERT INTO checkpoints(study_id, updated, state) VALUES(?,?,?) ON CONFLICT(study_id) DO UPDATE"
            " SET updated = excluded.updated, state = excluded.state",
            &s, err);
        if (st == BA_OK) {
            ba_db_bind_int(s, 1, study_id);
            ba_db_bind_text(s, 2, ts);
            ba_db_bind_text(s, 3, checkpoint_json);
            if (ba_db_step(s) != BA_DB_DONE) st = dberr(db, err, "cannot store checkpoint");
        }
        ba_db_finalize(s);
    }
    return end_tx(db, st, err);
}

ba_status ba_db_checkpoint_get(ba_db_t *db, int64_t study_id, char **json, ba_error *err) {
    *json = NULL;
    ba_db_stmt_t *s;
    BA_TRY(prep(db, "SELECT state FROM checkpoints WHERE study_id = ?", &s, err));
    ba_db_bind_int(s, 1, study_id);
    ba_status st = BA_OK;
    if (ba_db_step(s) == BA_DB_ROW) {
        *json = ba_strdup(ba_db_col_text(s, 0), err);
        if (!*json) st = BA_ERR_NOMEM;
    }
    ba_db_finalize(s);
    return st;
}

void ba_trial_free(ba_trial_t *t) {
    if (!t) return;
    free(t->w_bits);
    free(t->a_bits);
    t->w_bits = t->a_bits = NULL;
}

void ba_db_trials_free(ba_trial_t *t, int n) {
    for (int i = 0; t && i < n; i++) ba_trial_free(&t[i]);
    free(t);
}

/* ---- --where: comparisons joined by `and`, against whitelisted columns ---- */

static const char *const WHERE_COLS[] = {
    "number", "state", "method",    "avg_bits", "memory",  "bops",      "latency",    "predicted",
    "kl",     "mse",   "agreement", "accuracy", "samples", "objective", "validation", NULL};

static int is_col(const char *s, size_t n) {
    for (int i = 0; WHERE_COLS[i]; i++)
        if (strlen(WHERE_COLS[i]) == n && !strncmp(WHERE_COLS[i], s, n)) return 1;
    return 0;
}

/* The unit a numeric column's values may carry: memory in bytes, bops a count,
 * latency in µs (the units of --budget), every other column a plain number. */
static ba_qty_t where_qty(const char *col) {
    if (!strcmp(col, "memory")) return BA_QTY_BYTES;
    if (!strcmp(col, "bops")) return BA_QTY_COUNT;
    if (!strcmp(col, "latency")) return BA_QTY_MICROS;
    return BA_QTY_PLAIN;
}

typedef struct {
    char col[32];
    char op[3];
    int is_text;
    double num;
    char text[64];
} wterm_t;

#define BA_WHERE_MAX_TERMS 16

static ba_status where_parse(const char *w, wterm_t *terms, int *nterms, ba_error *err) {
    *nterms = 0;
    const char *p = w;
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        if (*nterms == BA_WHERE_MAX_TERMS)
            return ba_error_set(err, BA_ERR_INPUT, "--where: more than %d comparisons", BA_WHERE_MAX_TERMS);
        wterm_t *t = &terms[*nterms];
        memset(t, 0, sizeof *t);
        const char *c0 = p;
        while (isalnum((unsigned char)*p) || *p == '_') p++;
        size_t cl = (size_t)(p - c0);
        if (cl == 0) return ba_error_set(err, BA_ERR_INPUT, "--where: expected a column name at '%s'", c0);
        if (!is_col(c0, cl))
            return ba_error_set(
                err, BA_ERR_INPUT,
                "--where: unknown column '%.*s' (columns: number state method avg_bits memory bops "
                "latency predicted kl mse agreement accuracy samples objective validation)",
                (int)cl, c0);
        memcpy(t->col, c0, cl);
        while (isspace((unsigned char)*p)) p++;
        static const char *const ops[] = {"<=", ">=", "!=", "==", "<", ">", "=", NULL};
        int found = 0;
        for (int i = 0; ops[i]; i++)
            if (!strncmp(p, ops[i], strlen(ops[i]))) {
                snprintf(t->op, sizeof t->op, "%s", strcmp(ops[i], "==") ? ops[i] : "=");
                p += strlen(ops[i]);
                found = 1;
                break;
            }
        if (!found)
            return ba_error_set(err, BA_ERR_INPUT, "--where: expected one of < <= > >= = != after '%s'",
                                t->col);
        while (isspace((unsigned char)*p)) p++;
        int text_col = !strcmp(t->col, "state") || !strcmp(t->col, "method");
        if (*p == '\'' || *p == '"') {
            char q = *p++;
            const char *v0 = p;
            while (*p && *p != q) p++;
            if (!*p) return ba_error_set(err, BA_ERR_INPUT, "--where: unterminated string");
            if ((size_t)(p - v0) >= sizeof t->text)
                return ba_error_set(err, BA_ERR_INPUT, "--where: string too long");
            memcpy(t->text, v0, (size_t)(p - v0));
            t->is_text = 1;
            p++;
        } else if (isalpha((unsigned char)*p)) { /* bare word: state=complete */
            const char *v0 = p;
            while (isalnum((unsigned char)*p) || *p == '_' || *p == '+') p++;
            if ((size_t)(p - v0) >= sizeof t->text)
                return ba_error_set(err, BA_ERR_INPUT, "--where: value too long");
            memcpy(t->text, v0, (size_t)(p - v0));
            t->is_text = 1;
        } else {
            /* A number, with the column's unit suffix if it has one (core/units.h). */
            const char *v0 = p;
            while (*p && !isspace((unsigned char)*p)) p++;
            if ((size_t)(p - v0) >= sizeof t->text)
                return ba_error_set(err, BA_ERR_INPUT, "--where: value too long");
            memcpy(t->text, v0, (size_t)(p - v0));
            if (text_col)
                return ba_error_set(err, BA_ERR_INPUT,
                                    "--where: %s compares with a word or a quoted string, got '%s'", t->col,
                                    t->text);
            ba_status st = ba_qty_parse(where_qty(t->col), t->text, &t->num, err);
            if (st != BA_OK) {
                if (err) ba_error_prefix(err, "--where: %s %s", t->col, t->op);
                return st;
            }
            t->text[0] = '\0';
        }
        /* SQLite compares a text value with a REAL column by type, not by value: every
         * row would match `kl<'0.5'`. A word or string is only for the text columns. */
        if (t->is_text && !text_col)
            return ba_error_set(err, BA_ERR_INPUT, "--where: %s compares with a number, got '%s'", t->col,
                                t->text);
        (*nterms)++;
        while (isspace((unsigned char)*p)) p++;
        if (!*p) return BA_OK;
        if (!strncasecmp(p, "and", 3) && (isspace((unsigned char)p[3]))) {
            p += 3;
            continue;
        }
        return ba_error_set(err, BA_ERR_INPUT, "--where: expected 'and' or the end at '%s'", p);
    }
}

ba_status ba_db_where_check(const char *where, ba_error *err) {
    wterm_t terms[BA_WHERE_MAX_TERMS];
    int n;
    return where_parse(where, terms, &n, err);
}

static ba_status load_bits(ba_db_t *db, int64_t tid, ba_trial_t *t, ba_error *err) {
    ba_db_stmt_t *s;
    BA_TRY(prep(db, "SELECT layer_idx, w_bits, a_bits FROM trial_bits WHERE trial_id = ? ORDER BY layer_idx",
                &s, err));
    ba_db_bind_int(s, 1, tid);
    ba_status st = BA_OK;
    int cap = 0;
    while (st == BA_OK && ba_db_step(s) == BA_DB_ROW) {
        if (t->nlayers == cap) {
            cap = cap ? cap * 2 : 16;
            int *w = ba_realloc(t->w_bits, sizeof(int) * (size_t)cap, err);
            if (w) t->w_bits = w;
            int *a = w ? ba_realloc(t->a_bits, sizeof(int) * (size_t)cap, err) : NULL;
            if (a) t->a_bits = a;
            if (!w || !a) {
                st = BA_ERR_NOMEM;
                break;
            }
        }
        t->w_bits[t->nlayers] = ba_db_col_int(s, 1);
        t->a_bits[t->nlayers] = ba_db_col_int(s, 2);
        t->nlayers++;
    }
    ba_db_finalize(s);
    return st;
}

static double col_real(ba_db_stmt_t *s, int i) {
    return ba_db_col_real(s, i);
}

#define TRIAL_COLS_FMT                                                                                       \
    "SELECT id, number, state, method, started, finished, avg_bits, memory, bops, latency, predicted, kl, "  \
    "mse,"                                                                                                   \
    " agreement, accuracy, samples, %s FROM trials WHERE study_id = ?"

/* The trial columns of this file's schema (objective and validation since 2). */
static void trial_cols(const ba_db_t *db, char *out, size_t cap) {
    snprintf(out, cap, TRIAL_COLS_FMT, db->version >= 2 ? "objective, validation" : "NULL, NULL");
}

static ba_status read_trial(ba_db_t *db, ba_db_stmt_t *s, ba_trial_t *t, ba_error *err) {
    memset(t, 0, sizeof *t);
    int64_t tid = ba_db_col_int(s, 0);
    t->number = ba_db_col_int(s, 1);
    copy_col(s, 2, t->state, sizeof t->state);
    copy_col(s, 3, t->method, sizeof t->method);
    copy_col(s, 4, t->started, sizeof t->started);
    copy_col(s, 5, t->finished, sizeof t->finished);
    t->avg_bits = col_real(s, 6);
    t->memory = col_real(s, 7);
    t->bops = col_real(s, 8);
    t->latency = col_real(s, 9);
    t->predicted = col_real(s, 10);
    t->kl = col_real(s, 11);
    t->mse = col_real(s, 12);
    t->agreement = col_real(s, 13);
    t->accuracy = col_real(s, 14);
    t->samples = ba_db_col_int(s, 15);
    t->objective = col_real(s, 16);
    t->validation = col_real(s, 17);
    return load_bits(db, tid, t, err);
}

/* ---- --pareto: the complete trials no other one dominates on chosen columns ---- */

static const char *const PARETO_COLS[] = {"avg_bits",  "memory",    "bops",       "latency",
                                          "predicted", "kl",        "mse",        "agreement",
                                          "accuracy",  "objective", "validation", NULL};
/* agreement and accuracy are maximized; every other column (the objective is signed) minimized. */
#define PARETO_MAXIMIZED(c) ((c) == 7 || (c) == 8)

/* Index in PARETO_COLS of s[0..n) ('-' stands for '_'), -1 when none. */
static int pareto_col(const char *s, size_t n) {
    for (int i = 0; PARETO_COLS[i]; i++) {
        if (strlen(PARETO_COLS[i]) != n) continue;
        size_t j = 0;
        while (j < n && (s[j] == PARETO_COLS[i][j] || (s[j] == '-' && PARETO_COLS[i][j] == '_'))) j++;
        if (j == n) return i;
    }
    return -1;
}

static ba_status pareto_parse(const char *list, int *cols, int *k, ba_error *err) {
    *k = 0;
    const char *p = list;
    for (;;) {
        size_t n = strcspn(p, ",");
        int c = pareto_col(p, n);
        if (c < 0)
            return ba_error_set(err, BA_ERR_INPUT,
                                "--objectives: unknown column '%.*s' (one of avg_bits, memory, bops, "
                                "latency, predicted, kl, mse, agreement, accuracy)",
                                (int)n, p);
        for (int i = 0; i < *k; i++)
            if (cols[i] == c)
                return ba_error_set(err, BA_ERR_INPUT, "--objectives: '%s' given twice", PARETO_COLS[c]);
        if (*k == BA_DB_PARETO_MAX)
            return ba_error_set(err, BA_ERR_INPUT, "--objectives: more than %d columns", BA_DB_PARETO_MAX);
        cols[(*k)++] = c;
        if (!p[n]) break;
        p += n + 1;
    }
    if (*k < 2)
        return ba_error_set(err, BA_ERR_INPUT, "--objectives: give at least two columns, e.g. kl,memory");
    return BA_OK;
}

ba_status ba_db_pareto_check(const char *objectives, int *k, ba_error *err) {
    int cols[BA_DB_PARETO_MAX], kk;
    BA_TRY(pareto_parse(objectives, cols, &kk, err));
    if (k) *k = kk;
    return BA_OK;
}

static double column_value(const ba_trial_t *t, int c) {
    switch (c) {
    case 0: return t->avg_bits;
    case 1: return t->memory;
    case 2: return t->bops;
    case 3: return t->latency;
    case 4: return t->predicted;
    case 5: return t->kl;
    case 6: return t->mse;
    case 7: return t->agreement;
    case 8: return t->accuracy;
    case 9: return t->objective;
    default: return t->validation;
    }
}

double ba_db_trial_column(const ba_trial_t *t, const char *col, int *maximize) {
    int c = pareto_col(col, strlen(col));
    if (maximize) *maximize = PARETO_MAXIMIZED(c);
    return c < 0 ? NAN : column_value(t, c);
}

/* Column c of t, signed so that smaller is better. */
static double pareto_value(const ba_trial_t *t, int c) {
    return PARETO_MAXIMIZED(c) ? -column_value(t, c) : column_value(t, c);
}

/* Keeps the non-dominated trials of t[0..*n) in their order. */
static ba_status pareto_filter(ba_trial_t *t, int *n, const int *cols, int k, ba_error *err) {
    if (*n == 0) return BA_OK;
    double *v = ba_malloc(sizeof *v * (size_t)*n * (size_t)k, err);
    int *keep = ba_malloc(sizeof *keep * (size_t)*n, err);
    ba_status st = v && keep ? BA_OK : BA_ERR_NOMEM;
    for (int i = 0; st == BA_OK && i < *n; i++)
        for (int j = 0; j < k; j++) v[(size_t)i * k + j] = pareto_value(&t[i], cols[j]);
    if (st == BA_OK) st = ba_pareto_mask(v, *n, k, keep, err);
    if (st == BA_OK) {
        int m = 0;
        for (int i = 0; i < *n; i++) {
            if (keep[i])
                t[m++] = t[i];
            else
                ba_trial_free(&t[i]);
        }
        *n = m;
    }
    free(v);
    free(keep);
    return st;
}

ba_status ba_db_trials_query(ba_db_t *db, int64_t study_id, const ba_trial_query_t *q, ba_trial_t **out,
                             int *n, ba_error *err) {
    *out = NULL;
    *n = 0;
    wterm_t terms[BA_WHERE_MAX_TERMS];
    int nterms = 0;
    if (q && q->where && q->where[0]) BA_TRY(where_parse(q->where, terms, &nterms, err));
    int pcols[BA_DB_PARETO_MAX], pk = 0;
    int pareto = q && q->pareto && !q->best;
    if (pareto) BA_TRY(pareto_parse(q->pareto, pcols, &pk, err));
    char sql[4096];
    char cols[512];
    trial_cols(db, cols, sizeof cols);
    size_t o = (size_t)snprintf(sql, sizeof sql, "%s", cols);
    for (int i = 0; i < nterms; i++)
        o += (size_t)snprintf(sql + o, sizeof sql - o, " AND %s %s ?", terms[i].col, terms[i].op);
    const char *order = "number";
    int desc = 0;
    if (q && q->best) {
        o += (size_t)snprintf(sql + o, sizeof sql - o, " AND state = 'complete'");
        order = NULL;
        o += (size_t)snprintf(sql + o, sizeof sql - o, " ORDER BY %s%s LIMIT 1",
                              db->version >= 4 ? "(chosen IS NULL), " : "",
                              db->version >= 2 ? BA_DB_BEST_ORDER : BA_DB_BEST_ORDER_V1);
    } else {
        if (pareto) {
            o += (size_t)snprintf(sql + o, sizeof sql - o, " AND state = 'complete'");
            order = PARETO_COLS[pcols[pk - 1]];
        }
        if (q && q->sort && q->sort[0]) {
            const char *c = q->sort;
            if (*c == '-') {
                desc = 1;
                c++;
            }
            if (!is_col(c, strlen(c)))
                return ba_error_set(err, BA_ERR_INPUT, "--sort: unknown column '%s'", q->sort);
            order = c;
        }
        o += (size_t)snprintf(sql + o, sizeof sql - o, " ORDER BY (%s IS NULL), %s %s, number", order, order,
                              desc ? "DESC" : "ASC");
        if (q && q->limit > 0 && !pareto)
            o += (size_t)snprintf(sql + o, sizeof sql - o, " LIMIT %lld", (long long)q->limit);
    }
    ba_db_stmt_t *s;
    BA_TRY(prep(db, sql, &s, err));
    ba_db_bind_int(s, 1, study_id);
    for (int i = 0; i < nterms; i++) {
        if (terms[i].is_text)
            ba_db_bind_text(s, 2 + i, terms[i].text);
        else
            ba_db_bind_double(s, 2 + i, terms[i].num);
    }
    ba_status st = BA_OK;
    int cap = 0, rc;
    while (st == BA_OK && (rc = ba_db_step(s)) == BA_DB_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            ba_trial_t *p = ba_realloc(*out, sizeof **out * (size_t)cap, err);
            if (!p) {
                st = BA_ERR_NOMEM;
                break;
            }
            *out = p;
        }
        st = read_trial(db, s, &(*out)[*n], err);
        (*n)++;
    }
    if (st == BA_OK && rc != BA_DB_DONE) st = dberr(db, err, "cannot read trials");
    ba_db_finalize(s);
    if (st == BA_OK && pareto) st = pareto_filter(*out, n, pcols, pk, err);
    if (st == BA_OK && pareto && q->limit > 0 && *n > q->limit) {
        for (int i = (int)q->limit; i < *n; i++) ba_trial_free(&(*out)[i]);
        *n = (int)q->limit;
    }
    if (st != BA_OK) {
        ba_db_trials_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return st;
}

ba_status ba_db_trial_get(ba_db_t *db, int64_t study_id, int64_t number, ba_trial_t *out, ba_error *err) {
    ba_db_stmt_t *s;
    memset(out, 0, sizeof *out);
    char sql[640];
    trial_cols(db, sql, sizeof sql);
    snprintf(sql + strlen(sql), sizeof sql - strlen(sql), " AND number = ?");
    BA_TRY(prep(db, sql, &s, err));
    ba_db_bind_int(s, 1, study_id);
    ba_db_bind_int(s, 2, number);
    ba_status st;
    int rc = ba_db_step(s);
    if (rc == BA_DB_ROW)
        st = read_trial(db, s, out, err);
    else if (rc == BA_DB_DONE)
        st = ba_error_set(err, BA_ERR_INPUT, "--trial: no trial %lld in this study", (long long)number);
    else
        st = dberr(db, err, "cannot read trial");
    ba_db_finalize(s);
    return st;
}

ba_status ba_db_study_set_metric(ba_db_t *db, int64_t study_id, const char *metric, ba_error *err) {
    ba_db_stmt_t *s;
    BA_TRY(prep(db, "UPDATE studies SET metric = ? WHERE id = ?", &s, err));
    ba_db_bind_text(s, 1, metric);
    ba_db_bind_int(s, 2, study_id);
    ba_status st = ba_db_step(s) == BA_DB_DONE ? BA_OK : dberr(db, err, "cannot store the study's metric");
    ba_db_finalize(s);
    return st;
}

ba_status ba_db_trial_set_validation(ba_db_t *db, int64_t study_id, int64_t number, double validation,
                                     ba_error *err) {
    ba_db_stmt_t *s;
    BA_TRY(prep(db, "UPDATE trials SET validation = ? WHERE study_id = ? AND number = ?", &s, err));
    ba_db_bind_real(s, 1, validation);
    ba_db_bind_int(s, 2, study_id);
    ba_db_bind_int(s, 3, number);
    ba_status st = ba_db_step(s) == BA_DB_DONE ? BA_OK : dberr(db, err, "cannot store a validation figure");
    ba_db_finalize(s);
    return st;
}

ba_status ba_db_trial_set_chosen(ba_db_t *db, int64_t study_id, int64_t number, const char *record,
                                 ba_error *err) {
    if (db->version < 4) return BA_OK;
    ba_db_stmt_t *s;
    BA_TRY(prep(db,
                "UPDATE trials SET chosen = CASE WHEN number = ? THEN ? ELSE NULL END WHERE study_id = ?"
                " AND (number = ? OR chosen IS NOT NULL)",
                &s, err));
    ba_db_bind_int(s, 1, number);
    ba_db_bind_text(s, 2, record);
    ba_db_bind_int(s, 3, study_id);
    ba_db_bind_int(s, 4, number);
    ba_status st = ba_db_step(s) == BA_DB_DONE ? BA_OK : dberr(db, err, "cannot store the final choice");
    ba_db_finalize(s);
    return st;
}

ba_status ba_db_trial_chosen(ba_db_t *db, int64_t study_id, int64_t number, char **record, ba_error *err) {
    *record = NULL;
    if (db->version < 4) return BA_OK;
    ba_db_stmt_t *s;
    BA_TRY(prep(db, "SELECT chosen FROM trials WHERE study_id = ? AND number = ?", &s, err));
    ba_db_bind_int(s, 1, study_id);
    ba_db_bind_int(s, 2, number);
    int rc = ba_db_step(s);
    ba_status st = BA_OK;
    if (rc == BA_DB_ROW) {
        const char *t = ba_db_col_text(s, 0);
        if (t && !(*record = ba_strdup(t, err))) st = BA_ERR_NOMEM;
    } else if (rc != BA_DB_DONE)
        st = dberr(db, err, "cannot read the final choice");
    ba_db_finalize(s);
    return st;
}

ba_status ba_db_memo_get(ba_db_t *db, int64_t study_id, const char *config, int64_t first, int64_t samples,
                         ba_memo_entry_t *out, int *found, ba_error *err) {
    ba_db_stmt_t *s;
    *found = 0;
    BA_TRY(prep(db,
                "SELECT objective, kl, mse, agreement, accuracy FROM memo WHERE study_id = ? AND config = ?"
                " AND first = ? AND samples = ?",
                &s, err));
    ba_db_bind_int(s, 1, study_id);
    ba_db_bind_text(s, 2, config);
    ba_db_bind_int(s, 3, first);
    ba_db_bind_int(s, 4, samples);
    int rc = ba_db_step(s);
    ba_status st = BA_OK;
    if (rc == BA_DB_ROW) {
        *out =
            (ba_memo_entry_t){col_real(s, 0), col_real(s, 1), col_real(s, 2), col_real(s, 3), col_real(s, 4)};
        *found = 1;
    } else if (rc != BA_DB_DONE) {
        st = dberr(db, err, "cannot read the memo of measurements");
    }
    ba_db_finalize(s);
    return st;
}

ba_status ba_db_memo_put(ba_db_t *db, int64_t study_id, const char *config, int64_t first, int64_t samples,
                         const ba_memo_entry_t *e, ba_error *err) {
    ba_db_stmt_t *s;
    BA_TRY(prep(db,
                "INSERT INTO memo(study_id, config, first, samples, objective, kl, mse, agreement, "
                "accuracy)"
                " VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                &s, err));
    ba_db_bind_int(s, 1, study_id);
    ba_db_bind_text(s, 2, config);
    ba_db_bind_int(s, 3, first);
    ba_db_bind_int(s, 4, samples);
    ba_db_bind_real(s, 5, e->objective);
    ba_db_bind_real(s, 6, e->kl);
    ba_db_bind_real(s, 7, e->mse);
    ba_db_bind_real(s, 8, e->agreement);
    ba_db_bind_real(s, 9, e->accuracy);
    ba_status st = ba_db_step(s) == BA_DB_DONE ? BA_OK : dberr(db, err, "cannot store a measurement");
    ba_db_finalize(s);
    return st;
}

ba_status ba_db_memo_count(ba_db_t *db, int64_t study_id, int64_t *n, ba_error *err) {
    ba_db_stmt_t *s;
    *n = 0;
    BA_TRY(prep(db, "SELECT COUNT(*) FROM memo WHERE study_id = ?", &s, err));
    ba_db_bind_int(s, 1, study_id);
    ba_status st = BA_OK;
    if (ba_db_step(s) == BA_DB_ROW)
        *n = ba_db_col_int(s, 0);
    else
        st = dberr(db, err, "cannot count the measurements");
    ba_db_finalize(s);
    return st;
}

ba_status ba_db_sens_get(ba_db_t *db, const char *key, char **payload, ba_error *err) {
    *payload = NULL;
    ba_db_stmt_t *s;
    BA_TRY(prep(db, "SELECT payload FROM sensitivity_cache WHERE key = ?", &s, err));
    ba_db_bind_text(s, 1, key);
    ba_status st = BA_OK;
    if (ba_db_step(s) == BA_DB_ROW) {
        *payload = ba_strdup(ba_db_col_text(s, 0), err);
        if (!*payload) st = BA_ERR_NOMEM;
    }
    ba_db_finalize(s);
    return st;
}

ba_status ba_db_sens_latest(ba_db_t *db, const char *model_sha256, const char *method, char **payload,
                            ba_error *err) {
    *payload = NULL;
    ba_db_stmt_t *s;
    /* The newest; a tie within the second goes to the last written (SQLite's rowid; PostgreSQL has none). */
    BA_TRY(prep(db,
                db->kind == BA_DB_KIND_PG
                    ? "SELECT payload FROM sensitivity_cache WHERE model_sha256 = ? AND method = ?"
                      " ORDER BY created DESC, key DESC LIMIT 1"
                    : "SELECT payload FROM sensitivity_cache WHERE model_sha256 = ? AND method = ?"
                      " ORDER BY created DESC, rowid DESC LIMIT 1",
                &s, err));
    ba_db_bind_text(s, 1, model_sha256);
    ba_db_bind_text(s, 2, method);
    ba_status st = BA_OK;
    if (ba_db_step(s) == BA_DB_ROW) {
        *payload = ba_strdup(ba_db_col_text(s, 0), err);
        if (!*payload) st = BA_ERR_NOMEM;
    }
    ba_db_finalize(s);
    return st;
}

ba_status ba_db_sens_put(ba_db_t *db, const char *key, const char *model_sha256, const char *method,
                         const char *payload, ba_error *err) {
    BA_TRY(begin(db, err));
    ba_db_stmt_t *s;
    char ts[32];
    now_iso(ts);
    ba_status st = prep(
        db,
        db->kind == BA_DB_KIND_PG
            ? "INSERT INTO sensitivity_cache(key, model_sha256, method, created, payload) VALUES(?,?,?,?,?)"
              " ON CONFLICT(key) DO UPDATE SET model_sha256 = excluded.model_sha256, method = "
              "excluded.method,"
              " created = excluded.created, payload = excluded.payload"
            : "INSERT OR REPLACE INTO sensitivity_cache(key, model_sha256, method, created, payload)"
              " VALUES(?,?,?,?,?)",
        &s, err);
    if (st == BA_OK) {
        ba_db_bind_text(s, 1, key);
        ba_db_bind_text(s, 2, model_sha256);
        ba_db_bind_text(s, 3, method);
        ba_db_bind_text(s, 4, ts);
        ba_db_bind_text(s, 5, payload);
        if (ba_db_step(s) != BA_DB_DONE) st = dberr(db, err, "cannot store sensitivity");
        ba_db_finalize(s);
    }
    return end_tx(db, st, err);
}

/* ---- the work queue (schema 3) ---- */

void ba_db_work_item_free(ba_db_work_item_t *w) {
    if (!w) return;
    free(w->config);
    w->config = NULL;
}

ba_status ba_db_work_add(ba_db_t *db, int64_t study_id, const char *const *configs, const int64_t *first,
                         const int64_t *samples, int n, ba_error *err) {
    BA_TRY(begin_queue(db, err));
    ba_db_stmt_t *s = NULL;
    /* seq: after every entry queued so far, so claims follow the order the search asked in. */
    ba_status st =
        prep(db,
             "INSERT INTO work(study_id, config, first, samples, seq, state)"
             " VALUES(?1, ?2, ?3, ?4, (SELECT coalesce(max(seq), 0) + 1 FROM work WHERE study_id = ?1),"
             " 'waiting') ON CONFLICT DO NOTHING",
             &s, err);
    for (int i = 0; st == BA_OK && i < n; i++) {
        ba_db_reset(s);
        ba_db_bind_int(s, 1, study_id);
        ba_db_bind_text(s, 2, configs[i]);
        ba_db_bind_int(s, 3, first[i]);
        ba_db_bind_int(s, 4, samples[i]);
        if (ba_db_step(s) != BA_DB_DONE) st = dberr(db, err, "cannot queue a measurement");
    }
    ba_db_finalize(s);
    return end_tx(db, st, err);
}

ba_status ba_db_work_claim(ba_db_t *db, int64_t study_id, const char *worker, double lease_s,
                           int max_attempts, ba_db_work_item_t *out, int *found, ba_error *err) {
    memset(out, 0, sizeof *out);
    *found = 0;
    int pg = db->kind == BA_DB_KIND_PG;
    const char *now = ba_db_now_sql(db);
    char sql[1600];
    snprintf(sql, sizeof sql,
             "UPDATE work SET state = 'running', attempt = attempt + 1, worker = ?2, lease_until = %s + ?3"
             " WHERE (study_id, config, first, samples) = (SELECT study_id, config, first, samples FROM work"
             " WHERE study_id = ?1 AND attempt < ?4 AND (state = 'waiting' OR (state = 'running' AND"
             " lease_until < %s)) ORDER BY seq LIMIT 1%s)"
             " RETURNING config, first, samples, attempt",
             now, now, pg ? " FOR UPDATE SKIP LOCKED" : "");
    BA_TRY(begin_queue(db, err));
    ba_db_stmt_t *s;
    ba_status st = prep(db, sql, &s, err);
    if (st == BA_OK) {
        ba_db_bind_int(s, 1, study_id);
        ba_db_bind_text(s, 2, worker);
        ba_db_bind_double(s, 3, lease_s);
        ba_db_bind_int(s, 4, max_attempts);
        int rc = ba_db_step(s);
        if (rc == BA_DB_ROW) {
            const char *c = ba_db_col_text(s, 0);
            out->config = ba_strdup(c ? c : "", err);
            out->first = ba_db_col_int(s, 1);
            out->samples = ba_db_col_int(s, 2);
            out->attempt = ba_db_col_int(s, 3);
            if (!out->config)
                st = BA_ERR_NOMEM;
            else
                *found = 1;
            /* SQLite runs a RETURNING statement to its end on the next step. */
            if (st == BA_OK && ba_db_step(s) < 0) st = dberr(db, err, "cannot claim a measurement");
        } else if (rc != BA_DB_DONE)
            st = dberr(db, err, "cannot claim a measurement");
        ba_db_finalize(s);
    }
    st = end_tx(db, st, err);
    if (st != BA_OK) {
        ba_db_work_item_free(out);
        *found = 0;
    }
    return st;
}

ba_status ba_db_work_renew(ba_db_t *db, int64_t study_id, const ba_db_work_item_t *w, double lease_s,
                           int *held, ba_error *err) {
    *held = 0;
    char sql[512];
    snprintf(sql, sizeof sql,
             "UPDATE work SET lease_until = %s + ?1 WHERE study_id = ?2 AND config = ?3 AND first = ?4"
             " AND samples = ?5 AND attempt = ?6 AND state = 'running'",
             ba_db_now_sql(db));
    ba_db_stmt_t *s;
    BA_TRY(prep(db, sql, &s, err));
    ba_db_bind_double(s, 1, lease_s);
    ba_db_bind_int(s, 2, study_id);
    ba_db_bind_text(s, 3, w->config);
    ba_db_bind_int(s, 4, w->first);
    ba_db_bind_int(s, 5, w->samples);
    ba_db_bind_int(s, 6, w->attempt);
    ba_status st = ba_db_step(s) == BA_DB_DONE ? BA_OK : dberr(db, err, "cannot renew a lease");
    if (st == BA_OK) *held = db->changes > 0;
    ba_db_finalize(s);
    return st;
}

ba_status ba_db_work_done(ba_db_t *db, int64_t study_id, const ba_db_work_item_t *w, const ba_memo_entry_t *e,
                          ba_error *err) {
    BA_TRY(begin_queue(db, err));
    ba_status st = ba_db_memo_put(db, study_id, w->config, w->first, w->samples, e, err);
    ba_db_stmt_t *s = NULL;
    if (st == BA_OK)
        st = prep(db,
                  "UPDATE work SET state = 'done', lease_until = NULL WHERE study_id = ? AND config = ? AND "
                  "first = ?"
                  " AND samples = ?",
                  &s, err);
    if (st == BA_OK) {
        ba_db_bind_int(s, 1, study_id);
        ba_db_bind_text(s, 2, w->config);
        ba_db_bind_int(s, 3, w->first);
        ba_db_bind_int(s, 4, w->samples);
        if (ba_db_step(s) != BA_DB_DONE) st = dberr(db, err, "cannot close a measurement");
    }
    ba_db_finalize(s);
    return end_tx(db, st, err);
}

ba_status ba_db_work_get(ba_db_t *db, int64_t study_id, const char *config, int64_t first, int64_t samples,
                         char state[16], int64_t *attempts, int *expired, int *found, ba_error *err) {
    *found = *expired = 0;
    state[0] = '\0';
    *attempts = 0;
    ba_db_stmt_t *s;
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT state, attempt, CASE WHEN state = 'running' AND lease_until < %s THEN 1 ELSE 0 END"
             " FROM work WHERE study_id = ? AND config = ? AND first = ? AND samples = ?",
             ba_db_now_sql(db));
    BA_TRY(prep(db, sql, &s, err));
    ba_db_bind_int(s, 1, study_id);
    ba_db_bind_text(s, 2, config);
    ba_db_bind_int(s, 3, first);
    ba_db_bind_int(s, 4, samples);
    int rc = ba_db_step(s);
    ba_status st = BA_OK;
    if (rc == BA_DB_ROW) {
        copy_col(s, 0, state, 16);
        *attempts = ba_db_col_int(s, 1);
        *expired = ba_db_col_int(s, 2) != 0;
        *found = 1;
    } else if (rc != BA_DB_DONE)
        st = dberr(db, err, "cannot read the work queue");
    ba_db_finalize(s);
    return st;
}

ba_status ba_db_work_totals(ba_db_t *db, int64_t study_id, int64_t *n, int64_t *done, int64_t *claims,
                            ba_error *err) {
    *n = *done = *claims = 0;
    if (db->version < 3) return BA_OK;
    ba_db_stmt_t *s;
    BA_TRY(prep(db,
                "SELECT count(*), coalesce(sum(CASE WHEN state = 'done' THEN 1 ELSE 0 END), 0),"
                " coalesce(sum(attempt), 0) FROM work WHERE study_id = ?",
                &s, err));
    ba_db_bind_int(s, 1, study_id);
    ba_status st = BA_OK;
    if (ba_db_step(s) == BA_DB_ROW) {
        *n = ba_db_col_int(s, 0);
        *done = ba_db_col_int(s, 1);
        *claims = ba_db_col_int(s, 2);
    } else
        st = dberr(db, err, "cannot read the work queue");
    ba_db_finalize(s);
    return st;
}

ba_status ba_db_reopen(const ba_db_t *db, ba_db_t **out, ba_error *err) {
    return ba_db_open(db->kind == BA_DB_KIND_PG ? db->url : db->path, BA_DB_OPEN_WRITE, out, err);
}

ba_status ba_db_set_client_name(ba_db_t *db, const char *name, ba_error *err) {
    if (db->kind != BA_DB_KIND_PG) return BA_OK;
    ba_db_stmt_t *s;
    BA_TRY(prep(db, "SELECT set_config('application_name', ?, false)", &s, err));
    ba_db_bind_text(s, 1, name);
    ba_status st = ba_db_step(s) == BA_DB_ROW ? BA_OK : dberr(db, err, "cannot name the connection");
    ba_db_finalize(s);
    return st;
}
