/* Private to db/: the one layer that talks to a database engine. Two
 * backends behind the same calls: SQLite (a file) and PostgreSQL (libpq, a
 * server named by a postgresql:// URL; optional at build time). Statements
 * are written once with `?` / `?N` placeholders and translated to `$n` for
 * PostgreSQL in ba_db_prep; values are always bound, never pasted. */
#ifndef BA_DB_SQL_H
#define BA_DB_SQL_H

#include <sqlite3.h>
#include <stdint.h>

#include "core/error.h"
#include "db/db.h"

#ifdef BA_HAVE_LIBPQ
#include <libpq-fe.h>
#endif

/* How long a statement waits on a lock held by another process (ms). */
#define BA_DB_BUSY_TIMEOUT_MS 30000
/* Retries of BEGIN IMMEDIATE beyond the busy timeout before giving up. */
#define BA_DB_BEGIN_RETRIES 20
/* Most bound parameters of one statement. */
#define BA_DB_MAX_PARAMS 40

enum { BA_DB_KIND_SQLITE = 0, BA_DB_KIND_PG = 1 };

struct ba_db {
    int kind;
    sqlite3 *h;
#ifdef BA_HAVE_LIBPQ
    PGconn *pg;
#endif
    char path[4096];  /* the file, or the URL with any password masked (shown in messages) */
    char url[4096];   /* PostgreSQL: the connection string as given */
    int version;      /* schema version (a read-only open of an older file is not migrated) */
    int64_t changes;  /* rows changed by the last write statement */
    char errmsg[512]; /* PostgreSQL: the last error */
    char sqlstate[6]; /* PostgreSQL: its SQLSTATE */
};

/* Step results. */
enum { BA_DB_ROW = 1, BA_DB_DONE = 0, BA_DB_ERROR = -1, BA_DB_CONSTRAINT = -2 };

typedef struct ba_db_stmt ba_db_stmt_t;

ba_status ba_db_prep(ba_db_t *db, const char *sql, ba_db_stmt_t **s, ba_error *err);
void ba_db_bind_int(ba_db_stmt_t *s, int i, int64_t v);
/* NaN and ±Inf bind NULL: unknown, never a value that sorts first. */
void ba_db_bind_real(ba_db_stmt_t *s, int i, double v);
/* A finite number bound as it is (a --where operand). */
void ba_db_bind_double(ba_db_stmt_t *s, int i, double v);
void ba_db_bind_text(ba_db_stmt_t *s, int i, const char *v); /* NULL binds NULL */
void ba_db_bind_null(ba_db_stmt_t *s, int i);
/* Parameters the statement takes. */
int ba_db_param_count(const ba_db_stmt_t *s);
/* BA_DB_ROW, BA_DB_DONE, BA_DB_CONSTRAINT (a unique or foreign key refused the write) or BA_DB_ERROR. */
int ba_db_step(ba_db_stmt_t *s);
int ba_db_col_null(ba_db_stmt_t *s, int i);
int64_t ba_db_col_int(ba_db_stmt_t *s, int i);
double ba_db_col_real(ba_db_stmt_t *s, int i);      /* NaN for NULL */
const char *ba_db_col_text(ba_db_stmt_t *s, int i); /* NULL for NULL; valid until the next step */
/* Clears the result; the bindings stay (as sqlite3_reset). */
void ba_db_reset(ba_db_stmt_t *s);
void ba_db_finalize(ba_db_stmt_t *s);

/* Runs statements without parameters (several, `;`-separated). */
ba_status ba_db_exec(ba_db_t *db, const char *sql, ba_error *err);
/* A write transaction: SQLite BEGIN IMMEDIATE (retried while busy), PostgreSQL BEGIN. */
ba_status ba_db_begin(ba_db_t *db, ba_error *err);
ba_status ba_db_commit(ba_db_t *db, ba_error *err);
void ba_db_rollback(ba_db_t *db);
/* Sets err from the connection's last error: "PATH: WHAT: WHY". */
ba_status ba_db_fail(ba_db_t *db, ba_error *err, const char *what);

/* The engine's clock in seconds since the epoch, as an SQL expression (one clock for every host). */
const char *ba_db_now_sql(const ba_db_t *db);

/* PostgreSQL backend (db/pg.c): opens db->url, creates or migrates the schema
 * (mode as ba_db_open). Without libpq, BA_ERR_INPUT naming what is missing. */
ba_status ba_db_pg_open(ba_db_t *db, int mode, ba_error *err);
void ba_db_pg_close(ba_db_t *db);

/* The schema's statements for version i -> i+1 (SQLite's dialect; db/pg.c translates the types). */
extern const char *const ba_db_migrations[];

#endif
