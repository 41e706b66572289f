/* The statement layer of db/ (sql.h): each call goes to SQLite or to libpq.
 * PostgreSQL statements are sent with their parameters out of line
 * (PQexecParams): numbers as exact text (%.17g reads back the same double),
 * typed int8/float8 so that a comparison with a bigint column works. */
#include "db/sql.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ba_db_stmt {
    ba_db_t *db;
    sqlite3_stmt *st;
#ifdef BA_HAVE_LIBPQ
    char *sql; /* translated: $n placeholders */
    int nparams;
    char *val[BA_DB_MAX_PARAMS];
    Oid type[BA_DB_MAX_PARAMS];
    PGresult *res;
    int row, nrows, ran;
#endif
};

const char *ba_db_now_sql(const ba_db_t *db) {
    return db->kind == BA_DB_KIND_PG ? "extract(epoch from clock_timestamp())::float8"
                                     : "((julianday('now') - 2440587.5) * 86400.0)";
}

ba_status ba_db_fail(ba_db_t *db, ba_error *err, const char *what) {
    if (db->kind == BA_DB_KIND_PG) {
        ba_status st = BA_ERR_RUNTIME;
        if (!strncmp(db->sqlstate, "08", 2) || !strncmp(db->sqlstate, "57", 2) || !db->sqlstate[0])
            st = BA_ERR_IO;                                  /* connection lost, server shut down */
        if (!strncmp(db->sqlstate, "53", 2)) st = BA_ERR_IO; /* disk full, out of resources */
        return ba_error_set(err, st, "%s: %s: %s", db->path, what, db->errmsg[0] ? db->errmsg : "failed");
    }
    int code = sqlite3_errcode(db->h);
    ba_status st = BA_ERR_RUNTIME;
    if (code == SQLITE_NOTADB || code == SQLITE_CORRUPT) st = BA_ERR_INPUT;
    if (code == SQLITE_FULL) st = BA_ERR_IO;
    if (code == SQLITE_READONLY || code == SQLITE_CANTOPEN || code == SQLITE_IOERR) st = BA_ERR_IO;
    /* SQLite's text for SQLITE_OK is "not an error": never show it as a reason. */
    const char *why = code == SQLITE_OK ? "failed" : sqlite3_errmsg(db->h);
    return ba_error_set(err, st, "%s: %s: %s", db->path, what, why);
}

#ifdef BA_HAVE_LIBPQ
/* Keeps the message (first line, no trailing newline) and SQLSTATE of a failed result. */
static void pg_note(ba_db_t *db, const PGresult *r) {
    const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *c = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (!m) m = PQerrorMessage(db->pg);
    snprintf(db->errmsg, sizeof db->errmsg, "%s", m && *m ? m : "failed");
    db->errmsg[strcspn(db->errmsg, "\n")] = '\0';
    snprintf(db->sqlstate, sizeof db->sqlstate, "%s", c ? c : "");
}

/* `?` → `$n` (in order), `?N` → `$N`, outside quoted strings. */
static char *pg_translate(const char *sql, int *nparams, ba_error *err) {
    size_t n = strlen(sql);
    char *o = ba_malloc(2 * n + 1, err);
    if (!o) return NULL;
    size_t k = 0;
    int next = 0, maxp = 0;
    char q = 0;
    for (const char *p = sql; *p; p++) {
        if (q) {
            if (*p == q) q = 0;
            o[k++] = *p;
        } else if (*p == '\'' || *p == '"') {
            q = *p;
            o[k++] = *p;
        } else if (*p == '?') {
            int num;
            if (p[1] >= '0' && p[1] <= '9') {
                num = (int)strtol(p + 1, (char **)&p, 10);
                p--;
            } else
                num = ++next;
            if (num > maxp) maxp = num;
            k += (size_t)sprintf(o + k, "$%d", num);
        } else
            o[k++] = *p;
    }
    o[k] = '\0';
    *nparams = maxp;
    return o;
}
#endif

ba_status ba_db_prep(ba_db_t *db, const char *sql, ba_db_stmt_t **out, ba_error *err) {
    *out = NULL;
    ba_db_stmt_t *s = ba_calloc(1, sizeof *s, err);
    if (!s) return BA_ERR_NOMEM;
    s->db = db;
#ifdef BA_HAVE_LIBPQ
    if (db->kind == BA_DB_KIND_PG) {
        s->sql = pg_translate(sql, &s->nparams, err);
        if (!s->sql) {
            free(s);
            return BA_ERR_NOMEM;
        }
        if (s->nparams > BA_DB_MAX_PARAMS) {
            free(s->sql);
            free(s);
            return ba_error_set(err, BA_ERR_RUNTIME, "%s: a statement with %d parameters", db->path,
                                BA_DB_MAX_PARAMS);
        }
        *out = s;
        return BA_OK;
    }
#endif
    if (sqlite3_prepare_v2(db->h, sql, -1, &s->st, NULL) != SQLITE_OK) {
        free(s);
        return ba_db_fail(db, err, "cannot prepare query");
    }
    *out = s;
    return BA_OK;
}

int ba_db_param_count(const ba_db_stmt_t *s) {
#ifdef BA_HAVE_LIBPQ
    if (s->db->kind == BA_DB_KIND_PG) return s->nparams;
#endif
    return sqlite3_bind_parameter_count(s->st);
}

#ifdef BA_HAVE_LIBPQ
static void pg_set(ba_db_stmt_t *s, int i, char *v, Oid type) {
    if (i < 1 || i > s->nparams) {
        free(v);
        return;
    }
    free(s->val[i - 1]);
    s->val[i - 1] = v;
    s->type[i - 1] = type;
}
#endif

void ba_db_bind_int(ba_db_stmt_t *s, int i, int64_t v) {
#ifdef BA_HAVE_LIBPQ
    if (s->db->kind == BA_DB_KIND_PG) {
        char *t = malloc(24);
        if (t) snprintf(t, 24, "%lld", (long long)v);
        pg_set(s, i, t, 20 /* int8 */);
        return;
    }
#endif
    sqlite3_bind_int64(s->st, i, v);
}

void ba_db_bind_double(ba_db_stmt_t *s, int i, double v) {
#ifdef BA_HAVE_LIBPQ
    if (s->db->kind == BA_DB_KIND_PG) {
        char *t = malloc(32);
        if (t) snprintf(t, 32, "%.17g", v);
        pg_set(s, i, t, 701 /* float8 */);
        return;
    }
#endif
    sqlite3_bind_double(s->st, i, v);
}

void ba_db_bind_real(ba_db_stmt_t *s, int i, double v) {
    if (!isfinite(v))
        ba_db_bind_null(s, i);
    else
        ba_db_bind_double(s, i, v);
}

void ba_db_bind_text(ba_db_stmt_t *s, int i, const char *v) {
    if (!v) {
        ba_db_bind_null(s, i);
        return;
    }
#ifdef BA_HAVE_LIBPQ
    if (s->db->kind == BA_DB_KIND_PG) {
        pg_set(s, i, strdup(v), 0);
        return;
    }
#endif
    sqlite3_bind_text(s->st, i, v, -1, SQLITE_TRANSIENT);
}

void ba_db_bind_null(ba_db_stmt_t *s, int i) {
#ifdef BA_HAVE_LIBPQ
    if (s->db->kind == BA_DB_KIND_PG) {
        pg_set(s, i, NULL, 0);
        return;
    }
#endif
    sqlite3_bind_null(s->st, i);
}

int ba_db_step(ba_db_stmt_t *s) {
#ifdef BA_HAVE_LIBPQ
    if (s->db->kind == BA_DB_KIND_PG) {
        if (!s->ran) {
            s->ran = 1;
            s->res = PQexecParams(s->db->pg, s->sql, s->nparams, s->type, (const char *const *)s->val, NULL,
                                  NULL, 0);
            ExecStatusType rs = s->res ? PQresultStatus(s->res) : PGRES_FATAL_ERROR;
            if (rs != PGRES_TUPLES_OK && rs != PGRES_COMMAND_OK) {
                pg_note(s->db, s->res);
                PQclear(s->res);
                s->res = NULL;
                return !strncmp(s->db->sqlstate, "23", 2) ? BA_DB_CONSTRAINT : BA_DB_ERROR;
            }
            const char *ct = PQcmdTuples(s->res);
            s->db->changes = ct && *ct ? strtoll(ct, NULL, 10) : 0;
            s->nrows = PQntuples(s->res);
            s->row = -1;
        }
        if (!s->res) return BA_DB_ERROR;
        return ++s->row < s->nrows ? BA_DB_ROW : BA_DB_DONE;
    }
#endif
    int rc = sqlite3_step(s->st);
    if (rc == SQLITE_ROW) return BA_DB_ROW;
    if (rc == SQLITE_DONE) {
        s->db->changes = sqlite3_changes(s->db->h);
        return BA_DB_DONE;
    }
    return rc == SQLITE_CONSTRAINT ? BA_DB_CONSTRAINT : BA_DB_ERROR;
}

int ba_db_col_null(ba_db_stmt_t *s, int i) {
#ifdef BA_HAVE_LIBPQ
    if (s->db->kind == BA_DB_KIND_PG) return !s->res || PQgetisnull(s->res, s->row, i);
#endif
    return sqlite3_column_type(s->st, i) == SQLITE_NULL;
}

int64_t ba_db_col_int(ba_db_stmt_t *s, int i) {
#ifdef BA_HAVE_LIBPQ
    if (s->db->kind == BA_DB_KIND_PG)
        return ba_db_col_null(s, i) ? 0 : strtoll(PQgetvalue(s->res, s->row, i), NULL, 10);
#endif
    return sqlite3_column_int64(s->st, i);
}

double ba_db_col_real(ba_db_stmt_t *s, int i) {
    if (ba_db_col_null(s, i)) return NAN;
#ifdef BA_HAVE_LIBPQ
    if (s->db->kind == BA_DB_KIND_PG) return strtod(PQgetvalue(s->res, s->row, i), NULL);
#endif
    return sqlite3_column_double(s->st, i);
}

const char *ba_db_col_text(ba_db_stmt_t *s, int i) {
#ifdef BA_HAVE_LIBPQ
    if (s->db->kind == BA_DB_KIND_PG) return ba_db_col_null(s, i) ? NULL : PQgetvalue(s->res, s->row, i);
#endif
    return (const char *)sqlite3_column_text(s->st, i);
}

void ba_db_reset(ba_db_stmt_t *s) {
#ifdef BA_HAVE_LIBPQ
    if (s->db->kind == BA_DB_KIND_PG) {
        PQclear(s->res);
        s->res = NULL;
        s->ran = 0;
        return;
    }
#endif
    sqlite3_reset(s->st);
}

void ba_db_finalize(ba_db_stmt_t *s) {
    if (!s) return;
#ifdef BA_HAVE_LIBPQ
    if (s->db->kind == BA_DB_KIND_PG) {
        PQclear(s->res);
        for (int i = 0; i < s->nparams; i++) free(s->val[i]);
        free(s->sql);
        free(s);
        return;
    }
#endif
    sqlite3_finalize(s->st);
    free(s);
}

ba_status ba_db_exec(ba_db_t *db, const char *sql, ba_error *err) {
#ifdef BA_HAVE_LIBPQ
    if (db->kind == BA_DB_KIND_PG) {
        PGresult *r = PQexec(db->pg, sql);
        ExecStatusType rs = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        ba_status st = BA_OK;
        if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK) {
            pg_note(db, r);
            st = ba_db_fail(db, err, "query failed");
        }
        PQclear(r);
        return st;
    }
#endif
    if (sqlite3_exec(db->h, sql, NULL, NULL, NULL) != SQLITE_OK) return ba_db_fail(db, err, "query failed");
    return BA_OK;
}

ba_status ba_db_begin(ba_db_t *db, ba_error *err) {
    if (db->kind == BA_DB_KIND_PG) return ba_db_exec(db, "BEGIN", err);
    for (int i = 0; i < BA_DB_BEGIN_RETRIES; i++) {
        int rc = sqlite3_exec(db->h, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc == SQLITE_OK) return BA_OK;
        if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
            return ba_db_fail(db, err, "cannot start a transaction");
        usleep(50000);
    }
    return ba_db_fail(db, err, "database stayed busy");
}

void ba_db_rollback(ba_db_t *db) {
    if (db->kind == BA_DB_KIND_PG) {
#ifdef BA_HAVE_LIBPQ
        PQclear(PQexec(db->pg, "ROLLBACK"));
#endif
        return;
    }
    sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}

ba_status ba_db_commit(ba_db_t *db, ba_error *err) {
    ba_error e2;
    if (db->kind == BA_DB_KIND_PG) {
        ba_status st = ba_db_exec(db, "COMMIT", &e2);
        if (st != BA_OK) {
            ba_db_rollback(db);
            return ba_db_fail(db, err, "commit failed");
        }
        return BA_OK;
    }
    if (sqlite3_exec(db->h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        ba_status st = ba_db_fail(db, err, "commit failed");
        ba_db_rollback(db);
        return st;
    }
    return BA_OK;
}
