/* Output files (see outfile.h for the rules). */
#include "core/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"

struct ba_out {
    FILE *f;
    char *path;     /* as the user named it (for messages) */
    char *target;   /* the file renamed over (atomic), NULL when written through */
    char *tmp;      /* the temporary file (atomic) */
    char *made_dir; /* the folder this writer created, removed again on failure */
};

static void out_free(ba_out_t *o) {
    if (!o) return;
    free(o->path);
    free(o->target);
    free(o->tmp);
    free(o->made_dir);
    free(o);
}

static int same_inode(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* fd 1 or 2 when st is the process's own stdout or stderr, else -1. */
static int std_stream_fd(const struct stat *st) {
    for (int fd = 1; fd <= 2; fd++) {
        struct stat s;
        if (fstat(fd, &s) == 0 && same_inode(&s, st)) return fd;
    }
    return -1;
}

static char *dup_dirname(const char *path, ba_error *err) {
    size_t cap = strlen(path) + 2;
    char *d = ba_malloc(cap, err);
    if (d) ba_path_dirname(path, d, cap);
    return d;
}

/* The target's folder exists afterwards, or an error says why not. Creates one level only. */
static ba_status ensure_folder(ba_out_t *o, const char *dir, ba_error *err) {
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return ba_error_set(err, BA_ERR_IO, "%s: %s is not a folder", o->path, dir);
        return BA_OK;
    }
    if (errno != ENOENT)
        return ba_error_set(err, BA_ERR_IO, "%s: folder %s: %s", o->path, dir, strerror(errno));
    char *parent = dup_dirname(dir, err);
    if (!parent) return BA_ERR_NOMEM;
    int parent_ok = stat(parent, &st) == 0 && S_ISDIR(st.st_mode);
    ba_status rc = BA_OK;
    if (!parent_ok)
        rc = ba_error_set(err, BA_ERR_IO,
                          "%s: folder %s does not exist (bitalloc creates only the file's own folder)",
                          o->path, parent);
    else if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        rc = ba_error_set(err, BA_ERR_IO, "%s: cannot create folder %s: %s", o->path, dir, strerror(errno));
    else if (!(o->made_dir = ba_strdup(dir, err)))
        rc = BA_ERR_NOMEM;
    free(parent);
    return rc;
}

/* Mode of a new file: 0666 less the umask (read from /proc, so no other thread sees umask changed). */
static mode_t new_file_mode(void) {
    mode_t mask = 022;
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        unsigned m;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "Umask: %o", &m) == 1) {
                mask = (mode_t)m;
                break;
            }
        fclose(f);
    }
    return 0666 & ~mask;
}

static ba_status open_atomic(ba_out_t *o, const struct stat *existing, ba_error *err) {
    char *dir = dup_dirname(o->target, err);
    if (!dir) return BA_ERR_NOMEM;
    ba_status rc = existing ? BA_OK : ensure_folder(o, dir, err);
    const char *slash = strrchr(o->target, '/');
    const char *base = slash ? slash + 1 : o->target;
    if (rc == BA_OK && *base == '\0')
        rc = ba_error_set(err, BA_ERR_INPUT, "%s: names a folder, not a file", o->path);
    if (rc == BA_OK) {
        /* ".NAME.XXXXXX" beside the target (same file system, so rename is atomic). */
        size_t blen = strlen(base);
        if (blen + 8 > NAME_MAX) blen = NAME_MAX - 8;
        size_t cap = strlen(dir) + blen + 16;
        o->tmp = ba_malloc(cap, err);
        if (!o->tmp)
            rc = BA_ERR_NOMEM;
        else
            snprintf(o->tmp, cap, "%s/.%.*s.XXXXXX", dir, (int)blen, base);
    }
    int fd = -1;
    if (rc == BA_OK && (fd = mkostemp(o->tmp, O_CLOEXEC)) < 0)
        rc = ba_error_set(err, BA_ERR_IO, "%s: cannot write in %s: %s", o->path, dir, strerror(errno));
    if (rc == BA_OK) {
        mode_t mode = existing ? (existing->st_mode & 0777) : new_file_mode(); /* never set-id bits */
        /* A replaced file keeps its owner where this process may give it (root). */
        if (existing && (existing->st_uid != geteuid() || existing->st_gid != getegid()) &&
            fchown(fd, existing->st_uid, existing->st_gid) != 0) {
            /* not permitted: the file becomes this user's, as any rewrite would make it */
        }
        if (fchmod(fd, mode) != 0 || !(o->f = fdopen(fd, "wb"))) {
            rc = ba_error_set(err, BA_ERR_IO, "%s: cannot write: %s", o->path, strerror(errno));
            close(fd);
            unlink(o->tmp);
        }
    }
    if (rc != BA_OK) {
        free(o->tmp);
        o->tmp = NULL;
        if (o->made_dir) rmdir(o->made_dir);
    }
    free(dir);
    return rc;
}

static ba_status open_through(ba_out_t *o, int fd, ba_error *err) {
    if (!(o->f = fdopen(fd, "wb"))) {
        int e = errno;
        close(fd);
        return ba_error_set(err, BA_ERR_IO, "%s: cannot write: %s", o->path, strerror(e));
    }
    return BA_OK;
}

ba_status ba_out_open(const char *path, ba_out_t **out, ba_error *err) {
    *out = NULL;
    if (!path || !*path) return ba_error_set(err, BA_ERR_INPUT, "output path is empty");
    ba_out_t *o = ba_calloc(1, sizeof *o, err);
    if (!o) return BA_ERR_NOMEM;
    if (!(o->path = ba_strdup(path, err))) {
        out_free(o);
        return BA_ERR_NOMEM;
    }
    struct stat st, lst;
    ba_status rc = BA_OK;
    int stdfd;
    if (stat(path, &st) != 0) {
        int e = errno;
        if (e == ENOENT && lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode))
            rc = ba_error_set(err, BA_ERR_INPUT,
                              "%s: is a symbolic link to a missing file; choose another path", path);
        else if (e == ENOENT)
            rc = (o->target = ba_strdup(path, err)) ? open_atomic(o, NULL, err) : BA_ERR_NOMEM;
        else
            rc = ba_error_set(err, BA_ERR_IO, "%s: cannot write: %s", path, strerror(e));
    } else if ((stdfd = std_stream_fd(&st)) >= 0) {
        /* The process's own stdout/stderr (/dev/stdout, /proc/self/fd/1, or the file it goes to). */
        fflush(stdfd == 1 ? stdout : stderr);
        int fd = fcntl(stdfd, F_DUPFD_CLOEXEC, 3);
        rc = fd < 0 ? ba_error_set(err, BA_ERR_IO, "%s: cannot write: %s", path, strerror(errno))
                    : open_through(o, fd, err);
    } else if (S_ISREG(st.st_mode)) {
        /* Through a symlink: the linked file is replaced, the link stays. */
        if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode))
            o->target = realpath(path, NULL);
        else
            o->target = strdup(path);
        rc = o->target ? open_atomic(o, &st, err)
                       : ba_error_set(err, BA_ERR_IO, "%s: cannot resolve: %s", path, strerror(errno));
    } else if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) {
        /* Written through (never replaced); O_NONBLOCK so a FIFO nobody reads fails instead of hanging. */
        int fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0 && errno == ENXIO)
            rc = ba_error_set(err, BA_ERR_IO, "%s: a FIFO that no process reads", path);
        else if (fd < 0)
            rc = ba_error_set(err, BA_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        else {
            int fl = fcntl(fd, F_GETFL);
            if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
            rc = open_through(o, fd, err);
        }
    } else if (S_ISDIR(st.st_mode)) {
        rc = ba_error_set(err, BA_ERR_INPUT, "%s: is a folder; name a file", path);
    } else {
        rc = ba_error_set(err, BA_ERR_INPUT,
                          "%s: is not a regular file, a character device or a FIFO; choose another path",
                          path);
    }
    if (rc != BA_OK) {
        out_free(o);
        return rc;
    }
    *out = o;
    return BA_OK;
}

FILE *ba_out_stream(ba_out_t *o) {
    return o->f;
}

/* fsync of the folder, so the rename itself survives a power loss (best effort). */
static void sync_folder(const char *file) {
    char *dir = dup_dirname(file, NULL);
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

ba_status ba_out_commit(ba_out_t *o, ba_error *err) {
    int e = 0;
    int bad = fflush(o->f) != 0 || ferror(o->f);
    if (bad) e = errno;
    if (!bad && o->tmp && fsync(fileno(o->f)) != 0) {
        bad = 1;
        e = errno;
    }
    if (fclose(o->f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    o->f = NULL;
    if (!bad && o->tmp && rename(o->tmp, o->target) != 0) {
        bad = 1;
        e = errno;
    }
    ba_status rc = BA_OK;
    if (bad) {
        if (o->tmp) unlink(o->tmp);
        if (o->made_dir) rmdir(o->made_dir);
        rc = ba_error_set(err, BA_ERR_IO, "%s: write failed: %s", o->path, strerror(e ? e : EIO));
    } else if (o->tmp) {
        sync_folder(o->target);
    }
    out_free(o);
    return rc;
}

void ba_out_abort(ba_out_t *o) {
    if (!o) return;
    if (o->f) fclose(o->f);
    if (o->tmp) unlink(o->tmp);
    if (o->made_dir) rmdir(o->made_dir);
    out_free(o);
}

ba_status ba_out_write(const char *path, const void *data, size_t size, ba_error *err) {
    ba_out_t *o;
    BA_TRY(ba_out_open(path, &o, err));
    if (size) fwrite(data, 1, size, ba_out_stream(o));
    return ba_out_commit(o, err);
}

/* A path that does not exist yet, spelled canonically: realpath of its folder + "/" + its name
 * (NULL when the folder does not exist either, or out of memory). */
static char *canonical_new(const char *path) {
    char *dir = dup_dirname(path, NULL);
    char *real = dir ? realpath(dir, NULL) : NULL;
    free(dir);
    if (!real) return NULL;
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t cap = strlen(real) + strlen(base) + 2;
    char *c = malloc(cap);
    if (c) snprintf(c, cap, "%s/%s", real, base);
    free(real);
    return c;
}

static ba_status refuse(const char *out, const ba_out_input_t *in, ba_error *err) {
    if (strcmp(out, in->path) == 0)
        return ba_error_set(err, BA_ERR_INPUT, "%s is the %s; choose another path", out, in->role);
    return ba_error_set(err, BA_ERR_INPUT, "%s is the %s (%s); choose another path", out, in->role, in->path);
}

ba_status ba_out_check_inputs(const char *out, const ba_out_input_t *in, int n, ba_error *err) {
    struct stat so, si;
    if (!out) return BA_OK;
    if (stat(out, &so) == 0) {
        for (int i = 0; i < n; i++)
            if (in[i].path && stat(in[i].path, &si) == 0 && same_inode(&so, &si))
                return refuse(out, &in[i], err);
        return BA_OK;
    }
    /* Neither exists yet (a database the command is about to create): compare the spellings. */
    char *co = canonical_new(out);
    ba_status st = BA_OK;
    for (int i = 0; co && st == BA_OK && i < n; i++) {
        if (!in[i].path || stat(in[i].path, &si) == 0) continue;
        char *ci = canonical_new(in[i].path);
        if (ci && strcmp(co, ci) == 0) st = refuse(out, &in[i], err);
        free(ci);
    }
    free(co);
    return st;
}
