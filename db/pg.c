/* The PostgreSQL backend's connection and schema (sql.h): the same tables and
 * migrations as SQLite's, their types translated here in one place
 * (INTEGER PRIMARY KEY → BIGSERIAL, INTEGER → BIGINT, REAL → DOUBLE
 * PRECISION); the application id and schema version live in ba_meta instead
 * of SQLite's PRAGMAs. A migration holds an advisory lock, so workers opening
 * the same database at once migrate it once. */
#include "db/sql.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BA_HAVE_LIBPQ

ba_status ba_db_pg_open(ba_db_t *db, int mode, ba_error *err) {
    (void)mode;
    return ba_error_set(
        err, BA_ERR_INPUT,
        "--db %s: this bitalloc was built without PostgreSQL support: it needs libpq at build "
        "time (install libpq-dev and pkg-config, then rebuild)",
        db->path);
}

void ba_db_pg_close(ba_db_t *db) {
    (void)db;
}

#else

/* s with every whole-word `from` replaced by `to` (caller frees). */
static char *replace_word(const char *s, const char *from, const char *to, ba_error *err) {
    size_t nf = strlen(from), nt = strlen(to), n = 0;
    for (const char *p = strstr(s, from); p; p = strstr(p + nf, from)) n++;
    char *o = ba_malloc(strlen(s) + n * (nt > nf ? nt - nf : 0) + 1, err);
    if (!o) return NULL;
    size_t k = 0;
    const char *p = s;
    for (const char *q; (q = strstr(p, from));) {
        int word = (q == s || !(q[-1] == '_' || (q[-1] >= 'a' && q[-1] <= 'z'))) &&
                   !(q[nf] == '_' || (q[nf] >= 'a' && q[nf] <= 'z'));
        memcpy(o + k, p, (size_t)(q - p));
        k += (size_t)(q - p);
        if (word) {
            memcpy(o + k, to, nt);
            k += nt;
        } else {
            memcpy(o + k, from, nf);
            k += nf;
        }
        p = q + nf;
    }
    strcpy(o + k, p);
    return o;
}

/* One migration's statements in PostgreSQL's types. */
static char *pg_ddl(const char *sqlite_ddl, ba_error *err) {
    static const char *const map[][2] = {
        {"id INTEGER PRIMARY KEY", "id BIGSERIAL PRIMARY KEY"},
        {"INTEGER", "BIGINT"},
        {"REAL", "DOUBLE PRECISION"},
        {"BLOB", "BYTEA"},
    };
    char *cur = ba_strdup(sqlite_ddl, err);
    for (size_t i = 0; cur && i < sizeof map / sizeof map[0]; i++) {
        char *nx = replace_word(cur, map[i][0], map[i][1], err);
        free(cur);
        cur = nx;
    }
    return cur;
}

static int64_t meta_get(ba_db_t *db, const char *key, int *found) {
    *found = 0;
    ba_db_stmt_t *s;
    ba_error e;
    if (ba_db_prep(db, "SELECT value FROM ba_meta WHERE key = ?", &s, &e) != BA_OK) return 0;
    ba_db_bind_text(s, 1, key);
    int64_t v = 0;
    if (ba_db_step(s) == BA_DB_ROW) {
        v = ba_db_col_int(s, 0);
        *found = 1;
    }
    ba_db_finalize(s);
    return v;
}

static ba_status meta_set(ba_db_t *db, const char *key, int64_t v, ba_error *err) {
    ba_db_stmt_t *s;
    BA_TRY(ba_db_prep(db,
                      "INSERT INTO ba_meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                      "excluded.value",
                      &s, err));
    ba_db_bind_text(s, 1, key);
    ba_db_bind_int(s, 2, v);
    ba_status st =
        ba_db_step(s) == BA_DB_DONE ? BA_OK : ba_db_fail(db, err, "cannot write the schema version");
    ba_db_finalize(s);
    return st;
}

/* 1 when the table exists (in the connection's search path). */
static int has_table(ba_db_t *db, const char *name) {
    ba_db_stmt_t *s;
    ba_error e;
    if (ba_db_prep(db, "SELECT to_regclass(?) IS NOT NULL", &s, &e) != BA_OK) return 0;
    ba_db_bind_text(s, 1, name);
    int yes = ba_db_step(s) == BA_DB_ROW && !strcmp(ba_db_col_text(s, 0) ? ba_db_col_text(s, 0) : "", "t");
    ba_db_finalize(s);
    return yes;
}

static ba_status check_header(ba_db_t *db, int *ver, ba_error *err) {
    int found;
    int64_t app = meta_get(db, "application_id", &found);
    if (found && app != BA_DB_APPLICATION_ID)
        return ba_error_set(err, BA_ERR_INPUT, "%s: not a bitalloc database (application id %lld)", db->path,
                            (long long)app);
    *ver = (int)meta_get(db, "schema_version", &found);
    if (*ver > BA_DB_SCHEMA_VERSION)
        return ba_error_set(
            err, BA_ERR_INPUT,
            "%s: database schema version %d is newer than this bitalloc's (%d): upgrade bitalloc", db->path,
            *ver, BA_DB_SCHEMA_VERSION);
    return BA_OK;
}

ba_status ba_db_pg_open(ba_db_t *db, int mode, ba_error *err) {
    db->pg = PQconnectdb(db->url);
    if (!db->pg) return ba_error_set(err, BA_ERR_NOMEM, "%s: out of memory connecting", db->path);
    if (PQstatus(db->pg) != CONNECTION_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", PQerrorMessage(db->pg));
        why[strcspn(why, "\n")] = '\0';
        return ba_error_set(err, BA_ERR_IO, "%s: cannot connect: %s", db->path, why);
    }
    /* Doubles travel as text: the shortest text that reads back the same value. */
    BA_TRY(ba_db_exec(db, "SET client_min_messages = warning; SET extra_float_digits = 3", err));
    int ver = 0;
    if (has_table(db, "ba_meta")) BA_TRY(check_header(db, &ver, err));
    if (mode == BA_DB_OPEN_READONLY || (mode == BA_DB_OPEN_WRITE && ver == 0)) {
        if (ver == 0)
            return ba_error_set(err, BA_ERR_INPUT,
                                "%s: no bitalloc tables in this database (a search creates them; see --db)",
                                db->path);
        db->version = ver;
        return BA_OK;
    }
    if (ver < BA_DB_SCHEMA_VERSION) {
        BA_TRY(ba_db_begin(db, err));
        ba_status st =
            ba_db_exec(db,
                       "SELECT pg_advisory_xact_lock(1650551907);"
                       " CREATE TABLE IF NOT EXISTS ba_meta(key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
                       err);
        /* Re-read under the lock: another process may have migrated meanwhile. */
        if (st == BA_OK) st = check_header(db, &ver, err);
        for (int v = ver; st == BA_OK && v < BA_DB_SCHEMA_VERSION; v++) {
            char *ddl = pg_ddl(ba_db_migrations[v], err);
            st = ddl ? ba_db_exec(db, ddl, err) : BA_ERR_NOMEM;
            free(ddl);
        }
        if (st == BA_OK) st = meta_set(db, "application_id", BA_DB_APPLICATION_ID, err);
        if (st == BA_OK) st = meta_set(db, "schema_version", BA_DB_SCHEMA_VERSION, err);
        if (st == BA_OK)
            st = ba_db_commit(db, err);
        else
            ba_db_rollback(db);
        BA_TRY(st);
    }
    db->version = BA_DB_SCHEMA_VERSION;
    return BA_OK;
}

void ba_db_pg_close(ba_db_t *db) {
    if (db->pg) PQfinish(db->pg);
    db->pg = NULL;
}

#endif
