/* Shared helpers for the Criterion suite: run a program and capture its output,
 * scratch directories, small files. */
#ifndef BA_TESTS_HELPERS_H
#define BA_TESTS_HELPERS_H

#include <stddef.h>

#include "bitalloc.h"

/* Runs argv[0] (a path) with argv (NULL-terminated) and the current environment.
 * *out / *err receive its stdout / stderr as NUL-terminated malloc'd strings (pass NULL
 * to discard); *status its exit code, or 128 + signal number when a signal ended it.
 * Returns 0, or -1 when the program could not be started. */
int ba_test_run(const char *const argv[], char **out, char **err, int *status);

/* Creates a fresh empty directory under $TMPDIR (or /tmp) and writes its path to buf.
 * Returns 0 or -1. */
int ba_test_tmpdir(char *buf, size_t cap);
/* Removes dir and everything in it (does not follow symlinks). */
void ba_test_rmtree(const char *dir);
/* Writes text to path (truncating). Returns 0 or -1. */
int ba_test_write_file(const char *path, const char *text);
/* Number of '\n'-terminated lines in s. */
size_t ba_test_count_lines(const char *s);

/* What a run of the bitalloc CLI printed and its exit status. */
typedef struct {
    char *out, *err;
    int status;
} ba_test_run_t;
/* Runs the built bitalloc (BA_CLI) with the NULL-terminated arguments; the test
 * fails when it cannot be started. Free with ba_test_run_free. */
ba_test_run_t ba_test_cli(const char *first, ...);
void ba_test_run_free(ba_test_run_t *r);

/* A private PostgreSQL cluster for the tests (tests/helpers.c): the first call
 * in a run of the suite starts one server in a temp dir (initdb with trust
 * auth, Unix socket in that dir only, fsync off; as root the tools run as the
 * `postgres` user), later calls reuse it, and the end of the run stops it
 * (pg_ctl stop -m immediate) and removes the dir. Each call creates a fresh
 * database and writes its postgresql:// URL to url. Returns 0, or -1 with the
 * reason in why (e.g. the server binaries are not installed: the caller skips). */
int ba_test_pg_db(char *url, size_t cap, char *why, size_t wcap);
/* Skips the current test (cr_skip_test) with the reason when no cluster can be had. */
#define BA_TEST_PG_DB_OR_SKIP(url, cap)                                                                      \
    do {                                                                                                     \
        char ba_pg_why_[512];                                                                                \
        if (ba_test_pg_db((url), (cap), ba_pg_why_, sizeof ba_pg_why_) != 0)                                 \
            cr_skip_test("PostgreSQL tests skipped: %s", ba_pg_why_);                                        \
    } while (0)

/* Expects the final-choice marks and accounts (trials.chosen) of trials 1..ntrials of `study` in
 * the databases a and b to be the same byte for byte; returns how many trials of a are marked. */
int ba_test_expect_same_choice(const char *a, const char *b, const char *study, int64_t ntrials);

#endif
