/* Shared helpers for the Criterion suite (see helpers.h). Output is captured through
 * unlinked temporary files rather than pipes, so a child that writes a lot to both
 * streams can never block on a full pipe. */
#include "tests/helpers.h"

#include "db/db.h"

#include <criterion/criterion.h>
#include <stdarg.h>

#include <fcntl.h>
#include <ftw.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define BA_TEST_SIGNAL_BASE 128 /* shell convention for "killed by signal N" */
#define BA_TEST_NFTW_FDS 16

static const char *tmp_root(void) {
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

static int scratch_fd(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/ba_test_io_XXXXXX", tmp_root());
    int fd = mkstemp(path);
    if (fd >= 0) unlink(path);
    return fd;
}

static char *slurp_fd(int fd) {
    off_t size = lseek(fd, 0, SEEK_END);
    if (size < 0 || lseek(fd, 0, SEEK_SET) < 0) return NULL;
    char *buf = malloc((size_t)size + 1);
    if (!buf) return NULL;
    size_t got = 0;
    while (got < (size_t)size) {
        ssize_t n = read(fd, buf + got, (size_t)size - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    return buf;
}

int ba_test_run(const char *const argv[], char **out, char **err, int *status) {
    int fo = scratch_fd(), fe = scratch_fd(), rc = -1;
    posix_spawn_file_actions_t fa;
    if (fo < 0 || fe < 0 || posix_spawn_file_actions_init(&fa) != 0) goto done;
    posix_spawn_file_actions_adddup2(&fa, fo, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, fe, STDERR_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    int sp = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (sp != 0) goto done;
    int ws;
    if (waitpid(pid, &ws, 0) < 0) goto done;
    if (status) *status = WIFEXITED(ws) ? WEXITSTATUS(ws) : BA_TEST_SIGNAL_BASE + WTERMSIG(ws);
    if (out) *out = slurp_fd(fo);
    if (err) *err = slurp_fd(fe);
    rc = 0;
done:
    if (fo >= 0) close(fo);
    if (fe >= 0) close(fe);
    return rc;
}

int ba_test_tmpdir(char *buf, size_t cap) {
    int n = snprintf(buf, cap, "%s/ba_test_XXXXXX", tmp_root());
    if (n < 0 || (size_t)n >= cap) return -1;
    return mkdtemp(buf) ? 0 : -1;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void ba_test_rmtree(const char *dir) {
    nftw(dir, rm_one, BA_TEST_NFTW_FDS, FTW_DEPTH | FTW_PHYS);
}

int ba_test_write_file(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, fp) == n;
    return fclose(fp) == 0 && ok ? 0 : -1;
}

size_t ba_test_count_lines(const char *s) {
    size_t n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

/* Longest argument list ba_test_cli passes on. */
#define BA_TEST_MAX_ARGS 64

ba_test_run_t ba_test_cli(const char *first, ...) {
    const char *argv[BA_TEST_MAX_ARGS] = {BA_CLI};
    int n = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < BA_TEST_MAX_ARGS - 1; a = va_arg(ap, const char *)) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    ba_test_run_t r = {0};
    cr_assert_eq(ba_test_run(argv, &r.out, &r.err, &r.status), 0, "cannot run %s", BA_CLI);
    return r;
}

void ba_test_run_free(ba_test_run_t *r) {
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

/* ---- a private PostgreSQL cluster (helpers.h) ---- */

#include <glob.h>
#include <pwd.h>
#include <sys/file.h>
#ifdef BA_HAVE_LIBPQ
#include <libpq-fe.h>
#endif

/* Folder of the server binaries (initdb, pg_ctl): $BA_PG_BINDIR, else the newest /usr/lib/postgresql/N/bin.
 */
static int pg_bindir(char *out, size_t cap) {
    const char *e = getenv("BA_PG_BINDIR");
    char p[4096];
    if (e && *e) {
        snprintf(p, sizeof p, "%s/initdb", e);
        if (access(p, X_OK) == 0) return snprintf(out, cap, "%s", e), 0;
        return -1;
    }
    glob_t g;
    int rc = -1;
    if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) == 0 && g.gl_pathc > 0) {
        snprintf(out, cap, "%s", g.gl_pathv[g.gl_pathc - 1]);
        out[strlen(out) - strlen("/initdb")] = '\0';
        rc = 0;
    }
    globfree(&g);
    return rc;
}

/* Runs a server tool, as the postgres user when this process is root (the tools refuse root).
 * The child keeps no descriptor but stdio: a server it leaves running must not hold
 * the test runner's pipes open (the runner would wait for their end forever). */
static int pg_tool(const char *const *args, char *why, size_t wcap) {
    const char *argv[32];
    int n = 0;
    if (geteuid() == 0) {
        argv[n++] = "/usr/sbin/runuser";
        argv[n++] = "-u";
        argv[n++] = "postgres";
        argv[n++] = "--";
    }
    for (int i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
    argv[n] = NULL;
    int fo = scratch_fd();
    if (fo < 0) return snprintf(why, wcap, "cannot make a scratch file"), -1;
    pid_t pid = fork();
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        dup2(nul, STDIN_FILENO);
        dup2(fo, STDOUT_FILENO);
        dup2(fo, STDERR_FILENO);
        closefrom(3);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int ws = 0, st = -1;
    if (pid > 0 && waitpid(pid, &ws, 0) == pid && WIFEXITED(ws)) st = WEXITSTATUS(ws);
    if (st != 0) {
        char *out = slurp_fd(fo);
        snprintf(why, wcap, "%s failed (%d): %s", args[0], st, out ? out : "");
        free(out);
    }
    close(fo);
    return st == 0 ? 0 : -1;
}

/* The cluster of this run of the suite: one per Criterion runner (the tests' parent). */
static void pg_dir(pid_t runner, char *dir, size_t cap) {
    snprintf(dir, cap, "%s/ba_pg_%d", tmp_root(), (int)runner);
}

#define BA_TEST_PG_PORT(runner) (20000 + (int)((runner) % 30000))

int ba_test_pg_db(char *url, size_t cap, char *why, size_t wcap) {
#ifndef BA_HAVE_LIBPQ
    (void)url, (void)cap;
    snprintf(why, wcap, "built without libpq (install libpq-dev)");
    return -1;
#else
    char bin[4096], dir[4096], lockp[4200], ready[4200], data[4200], log[4200], tool[4200], opts[4300];
    if (pg_bindir(bin, sizeof bin) != 0) {
        snprintf(why, wcap,
                 "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql "
                 "(install postgresql-15: scripts/setup)");
        return -1;
    }
    pid_t runner = getppid();
    int port = BA_TEST_PG_PORT(runner);
    pg_dir(runner, dir, sizeof dir);
    snprintf(lockp, sizeof lockp, "%s.lock", dir);
    snprintf(ready, sizeof ready, "%s/ready", dir);
    int lk = open(lockp, O_RDWR | O_CREAT, 0600);
    if (lk < 0 || flock(lk, LOCK_EX) != 0) {
        snprintf(why, wcap, "cannot lock %s", lockp);
        if (lk >= 0) close(lk);
        return -1;
    }
    int rc = 0;
    if (access(ready, F_OK) != 0) {
        ba_test_rmtree(dir);
        rc = mkdir(dir, 0700);
        if (rc == 0 && geteuid() == 0) {
            struct passwd *pw = getpwnam("postgres");
            if (!pw || chown(dir, pw->pw_uid, pw->pw_gid) != 0) {
                snprintf(why, wcap, "running as root and no `postgres` user to run the server as");
                rc = -1;
            }
        }
        snprintf(data, sizeof data, "%s/data", dir);
        snprintf(log, sizeof log, "%s/log", dir);
        snprintf(tool, sizeof tool, "%s/initdb", bin);
        const char *init[] = {
            tool, "-D", data, "-A", "trust", "-U", "bitalloc", "--no-sync", "--no-instructions", NULL};
        if (rc == 0) rc = pg_tool(init, why, wcap);
        snprintf(tool, sizeof tool, "%s/pg_ctl", bin);
        snprintf(opts, sizeof opts, "-k %s -p %d -c listen_addresses='' -c fsync=off -c max_connections=100",
                 dir, port);
        const char *start[] = {tool, "-D", data, "-l", log, "-w", "-o", opts, "start", NULL};
        if (rc == 0) rc = pg_tool(start, why, wcap);
        if (rc == 0) rc = ba_test_write_file(ready, "");
    }
    close(lk);
    if (rc != 0) return -1;
    /* A fresh database for the caller. */
    static int counter;
    char conn[4400], name[64];
    snprintf(name, sizeof name, "t%d_%d_%ld", (int)getpid(), counter++, random() % 100000);
    snprintf(conn, sizeof conn, "host=%s port=%d user=bitalloc dbname=postgres", dir, port);
    PGconn *c = PQconnectdb(conn);
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
        snprintf(why, wcap, "cannot create a database: %s", PQerrorMessage(c));
        rc = -1;
    }
    PQclear(r);
    PQfinish(c);
    if (rc == 0) snprintf(url, cap, "postgresql:///%s?host=%s&port=%d&user=bitalloc", name, dir, port);
    return rc;
#endif
}

/* The end of the run: the cluster this runner started (if any) stops and its dir goes. */
ReportHook(POST_ALL)(struct criterion_global_stats *stats) {
    (void)stats;
    char dir[4096], data[4200], bin[4096], tool[4200], why[512], lockp[4200];
    pg_dir(getpid(), dir, sizeof dir);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(lockp, sizeof lockp, "%s.lock", dir);
    if (access(data, F_OK) == 0 && pg_bindir(bin, sizeof bin) == 0) {
        snprintf(tool, sizeof tool, "%s/pg_ctl", bin);
        const char *stop[] = {tool, "-D", data, "-m", "immediate", "stop", NULL};
        pg_tool(stop, why, sizeof why);
    }
    ba_test_rmtree(dir);
    unlink(lockp);
}

int ba_test_expect_same_choice(const char *a, const char *b, const char *study, int64_t ntrials) {
    ba_db_t *da, *dbb;
    ba_error err;
    ba_study_info_t ia, ib;
    cr_assert_eq(ba_db_open(a, BA_DB_OPEN_READONLY, &da, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_db_open(b, BA_DB_OPEN_READONLY, &dbb, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_db_study_get(da, study, &ia, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_db_study_get(dbb, study, &ib, &err), BA_OK, "%s", err.msg);
    int marked = 0;
    for (int64_t k = 1; k <= ntrials; k++) {
        char *ra, *rb;
        cr_assert_eq(ba_db_trial_chosen(da, ia.id, k, &ra, &err), BA_OK, "%s", err.msg);
        cr_assert_eq(ba_db_trial_chosen(dbb, ib.id, k, &rb, &err), BA_OK, "%s", err.msg);
        cr_expect((!ra && !rb) || (ra && rb && !strcmp(ra, rb)), "trial %lld: chosen %s vs %s", (long long)k,
                  ra ? ra : "NULL", rb ? rb : "NULL");
        marked += ra != NULL;
        free(ra);
        free(rb);
    }
    ba_db_study_info_free(&ia);
    ba_db_study_info_free(&ib);
    ba_db_close(da);
    ba_db_close(dbb);
    return marked;
}
