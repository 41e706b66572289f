/* Shared helpers for the Criterion suite (see helpers.h). Output is captured through
 * unlinked temporary files rather than pipes, so a child that writes a lot to both
 * streams can never block on a full pipe. */
#include "tests/helpers.h"

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
