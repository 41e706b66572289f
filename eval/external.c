/* The --evaluator child process (see external.h). The child's stdin and stdout
 * are one end of a socket pair: bitalloc writes with MSG_NOSIGNAL, so a child
 * that died is an error to report, never a SIGPIPE that kills the search. */
#include "eval/external.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"

extern char **environ;

struct ba_extev {
    pid_t pid;
    int fd; /* bitalloc's end of the socket pair */
    double timeout;
    int maximize;
    char name[64];
    char dir[4096];   /* temporary folder */
    char model[4200]; /* dir/model.onnx */
    char *buf;        /* bytes read but not yet consumed */
    size_t nbuf, cap;
};

const char *ba_extev_model_path(const ba_extev_t *x) {
    return x->model;
}
int ba_extev_maximize(const ba_extev_t *x) {
    return x->maximize;
}
const char *ba_extev_name(const ba_extev_t *x) {
    return x->name;
}

/* Reaps the child when it has exited: its status as text ("exit status 3", "signal 9"). */
static void child_status(ba_extev_t *x, char *out, size_t cap) {
    int ws = 0;
    snprintf(out, cap, "still running");
    if (x->pid <= 0) return;
    pid_t r = 0;
    for (int i = 0; i < 50 && (r = waitpid(x->pid, &ws, WNOHANG)) == 0; i++) usleep(10000);
    if (r != x->pid) return;
    x->pid = 0;
    if (WIFEXITED(ws))
        snprintf(out, cap, "exit status %d", WEXITSTATUS(ws));
    else if (WIFSIGNALED(ws))
        snprintf(out, cap, "killed by signal %d", WTERMSIG(ws));
}

static void kill_child(ba_extev_t *x) {
    if (x->pid <= 0) return;
    kill(x->pid, SIGKILL);
    waitpid(x->pid, NULL, 0);
    x->pid = 0;
}

static ba_status send_line(ba_extev_t *x, const char *line, ba_error *err) {
    size_t n = strlen(line), off = 0;
    while (off < n) {
        ssize_t w = send(x->fd, line + off, n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            char why[64];
            child_status(x, why, sizeof why);
            return ba_error_set(err, BA_ERR_RUNTIME, "--evaluator: the evaluator stopped reading (%s)", why);
        }
        off += (size_t)w;
    }
    return BA_OK;
}

/* One line (without the newline) into *line (caller frees), waiting at most x->timeout seconds. */
static ba_status read_line(ba_extev_t *x, char **line, ba_error *err) {
    *line = NULL;
    double deadline = ba_now() + x->timeout;
    for (;;) {
        char *nl = x->nbuf ? memchr(x->buf, '\n', x->nbuf) : NULL;
        if (nl) {
            size_t len = (size_t)(nl - x->buf);
            *line = ba_malloc(len + 1, err);
            if (!*line) return BA_ERR_NOMEM;
            memcpy(*line, x->buf, len);
            (*line)[len] = '\0';
            memmove(x->buf, nl + 1, x->nbuf - len - 1);
            x->nbuf -= len + 1;
            return BA_OK;
        }
        if (x->nbuf >= BA_EXTEV_MAX_LINE)
            return ba_error_set(err, BA_ERR_INPUT, "--evaluator: an answer line is longer than %d bytes",
                                BA_EXTEV_MAX_LINE);
        double left = deadline - ba_now();
        if (left <= 0) {
            kill_child(x);
            return ba_error_set(err, BA_ERR_RUNTIME,
                                "--evaluator: no answer within %g s (--evaluator-timeout); "
                                "the evaluator was stopped",
                                x->timeout);
        }
        struct pollfd p = {x->fd, POLLIN, 0};
        int pr = poll(&p, 1, left > 1e6 ? 1000000000 : (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) continue; /* the deadline check above decides */
        if (x->nbuf + 65536 > x->cap) {
            size_t cap = x->cap ? x->cap * 2 : 65536;
            while (cap < x->nbuf + 65536) cap *= 2;
            char *b = ba_realloc(x->buf, cap, err);
            if (!b) return BA_ERR_NOMEM;
            x->buf = b, x->cap = cap;
        }
        ssize_t r = recv(x->fd, x->buf + x->nbuf, x->cap - x->nbuf, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            char why[64];
            child_status(x, why, sizeof why);
            return ba_error_set(err, BA_ERR_RUNTIME,
                                "--evaluator: the evaluator closed its output without an answer (%s)", why);
        }
        x->nbuf += (size_t)r;
    }
}

/* The next answer as a JSON object; garbage is BA_ERR_INPUT quoting the start of the line. */
static ba_status read_object(ba_extev_t *x, json_t **out, ba_error *err) {
    char *line = NULL;
    BA_TRY(read_line(x, &line, err));
    json_error_t je;
    json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(j)) {
        ba_status st =
            ba_error_set(err, BA_ERR_INPUT, "--evaluator: answered '%.60s%s', not a JSON object on one line",
                         line, strlen(line) > 60 ? "…" : "");
        json_decref(j);
        free(line);
        return st;
    }
    free(line);
    *out = j;
    return BA_OK;
}

ba_status ba_extev_start(const char *cmd, double timeout_s, ba_extev_t **out, ba_error *err) {
    *out = NULL;
    ba_extev_t *x = ba_calloc(1, sizeof *x, err);
    if (!x) return BA_ERR_NOMEM;
    x->fd = -1;
    x->timeout = timeout_s > 0 ? timeout_s : BA_EXTEV_DEFAULT_TIMEOUT;
    snprintf(x->name, sizeof x->name, "evaluator");
    const char *tmp = getenv("TMPDIR");
    snprintf(x->dir, sizeof x->dir, "%s/bitalloc-eval-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(x->dir)) {
        ba_status st = ba_error_set(err, BA_ERR_IO, "--evaluator: cannot make a temporary folder %s: %s",
                                    x->dir, strerror(errno));
        x->dir[0] = '\0';
        ba_extev_free(x);
        return st;
    }
    snprintf(x->model, sizeof x->model, "%s/model.onnx", x->dir);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        ba_extev_free(x);
        return ba_error_set(err, BA_ERR_RUNTIME, "--evaluator: cannot make a socket pair: %s",
                            strerror(errno));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 1);
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};
    int rc = posix_spawn(&x->pid, "/bin/sh", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(sv[1]);
    x->fd = sv[0];
    if (rc != 0) {
        x->pid = 0;
        ba_extev_free(x);
        return ba_error_set(err, BA_ERR_RUNTIME, "--evaluator: cannot start /bin/sh: %s", strerror(rc));
    }
    json_t *ans = NULL;
    ba_status st = send_line(x, "{\"type\": \"hello\", \"protocol\": 1}\n", err);
    if (st == BA_OK) st = read_object(x, &ans, err);
    if (st == BA_OK) {
        const json_t *d = json_object_get(ans, "direction"), *n = json_object_get(ans, "name");
        if (d && !(json_is_string(d) &&
                   (!strcmp(json_string_value(d), "minimize") || !strcmp(json_string_value(d), "maximize"))))
            st = ba_error_set(err, BA_ERR_INPUT,
                              "--evaluator: handshake: \"direction\" must be \"minimize\" or \"maximize\"");
        else if (d)
            x->maximize = !strcmp(json_string_value(d), "maximize");
        if (st == BA_OK && json_is_string(n) && json_string_length(n) > 0)
            snprintf(x->name, sizeof x->name, "%s", json_string_value(n));
    }
    json_decref(ans);
    if (st != BA_OK) {
        ba_extev_free(x);
        return st;
    }
    *out = x;
    return BA_OK;
}

ba_status ba_extev_score(ba_extev_t *x, int64_t id, int64_t first, int64_t samples, int64_t total,
                         double *score, double *accuracy, ba_error *err) {
    *score = *accuracy = NAN;
    json_t *req = json_pack("{s:s, s:I, s:s, s:I, s:I, s:I}", "type", "evaluate", "id", (json_int_t)id,
                            "model", x->model, "first", (json_int_t)first, "samples", (json_int_t)samples,
                            "total", (json_int_t)total);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!text) return ba_error_set(err, BA_ERR_NOMEM, "--evaluator: out of memory");
    size_t n = strlen(text);
    char *line = ba_malloc(n + 2, err);
    if (!line) {
        free(text);
        return BA_ERR_NOMEM;
    }
    memcpy(line, text, n);
    line[n] = '\n', line[n + 1] = '\0';
    free(text);
    ba_status st = send_line(x, line, err);
    free(line);
    json_t *ans = NULL;
    if (st == BA_OK) st = read_object(x, &ans, err);
    if (st != BA_OK) return st;
    const json_t *s = json_object_get(ans, "score");
    if (json_is_number(s))
        *score = json_number_value(s);
    else if (!json_is_null(s))
        st =
            ba_error_set(err, BA_ERR_INPUT,
                         "--evaluator: the answer to evaluation %lld has no number \"score\"", (long long)id);
    const json_t *a = json_object_get(json_object_get(ans, "metrics"), "accuracy");
    if (json_is_number(a)) *accuracy = json_number_value(a);
    json_decref(ans);
    return st;
}

void ba_extev_free(ba_extev_t *x) {
    if (!x) return;
    if (x->fd >= 0) {
        shutdown(x->fd, SHUT_WR); /* EOF on the child's stdin: it should exit */
        if (x->pid > 0) {
            char why[64];
            for (int i = 0; i < 4 && x->pid > 0; i++) child_status(x, why, sizeof why); /* up to 2 s */
        }
        close(x->fd);
    }
    kill_child(x);
    if (x->model[0]) unlink(x->model);
    if (x->dir[0]) rmdir(x->dir);
    free(x->buf);
    free(x);
}
