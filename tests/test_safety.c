/* A user's files survive every command (SPEC §10): an output path that is one of the
 * command's inputs (model, data, labels, plan, config, database; by inode, so through
 * links) is refused with exit 2 naming both; every writer goes through core/outfile.h
 * (a unique temporary file, fsync, rename; devices and FIFOs written through, never
 * replaced; a planted PATH.tmp link is not followed; concurrent writers leave one whole
 * file; only the file's own folder is created); read-only commands never create or
 * change a database and read one on a read-only mount; names that are not UTF-8 are
 * refused before any work. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/helpers.h"

#define DIGITS BA_FIXTURES "/digits"

typedef struct {
    char dir[512];
    char model[600], data[600], labels[600], db[600], plan[600];
} env_t;

static void copy_file(const char *from, const char *to) {
    uint8_t *d;
    size_t n;
    ba_error err;
    cr_assert_eq(ba_file_read(from, &d, &n, &err), BA_OK, "%s", err.msg);
    FILE *f = fopen(to, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(d, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
    free(d);
}

static void sha(const char *path, char hex[65]) {
    ba_error err;
    cr_assert_eq(ba_sha256_file(path, hex, &err), BA_OK, "%s", err.msg);
}

static void expect_same(const char *path, const char *before) {
    char now[65];
    sha(path, now);
    cr_expect_str_eq(now, before, "%s changed", path);
}

/* Last connection closes: the WAL is checkpointed into the file and removed. */
static void checkpoint(const char *db) {
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_exec(h, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    sqlite3_close(h);
}

/* The digits MLP, its data and labels copied to a scratch folder, and a study "s" (uniform
 * 4-bit search: fast) in x.db with its plan at plan.json. */
static env_t make_env(void) {
    env_t e;
    cr_assert_eq(ba_test_tmpdir(e.dir, sizeof e.dir), 0);
    snprintf(e.model, sizeof e.model, "%s/mlp.onnx", e.dir);
    snprintf(e.data, sizeof e.data, "%s/x.npy", e.dir);
    snprintf(e.labels, sizeof e.labels, "%s/y.npy", e.dir);
    snprintf(e.db, sizeof e.db, "%s/x.db", e.dir);
    snprintf(e.plan, sizeof e.plan, "%s/plan.json", e.dir);
    copy_file(DIGITS "/mlp.onnx", e.model);
    copy_file(DIGITS "/calib_x_flat.npy", e.data);
    copy_file(DIGITS "/calib_y.npy", e.labels);
    ba_test_run_t r =
        ba_test_cli("search", e.model, "--data", e.data, "--labels", e.labels, "--budget", "avg-bits=4",
                    "--method", "uniform", "--study", "s", "--db", e.db, "--plan-out", e.plan, "-q", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    checkpoint(e.db);
    return e;
}

static void expect_refused(const ba_test_run_t *r, const char *flag, const char *role) {
    cr_expect_eq(r->status, 2, "exit %d: %s", r->status, r->err);
    cr_expect(strstr(r->err, flag) && strstr(r->err, role), "want '%s' and '%s': %s", flag, role, r->err);
}

/* ------------------------------------------------- outputs that are inputs */

Test(safety, plan_out_that_is_the_database_or_the_model_is_refused_before_any_work) {
    env_t e = make_env();
    char db_sha[65], model_sha[65], alias[700];
    sha(e.db, db_sha);
    sha(e.model, model_sha);
    /* The database itself, spelled differently. */
    snprintf(alias, sizeof alias, "%s/./x.db", e.dir);
    ba_test_run_t r = ba_test_cli("search", e.model, "--data", e.data, "--budget", "avg-bits=4", "--method",
                                  "uniform", "--study", "t", "--db", e.db, "--plan-out", alias, "-q", NULL);
    expect_refused(&r, "--plan-out", "database");
    cr_expect(strstr(r.err, e.db), "names the database: %s", r.err);
    ba_test_run_free(&r);
    expect_same(e.db, db_sha);
    /* The model through a symlink: same inode, other name. */
    snprintf(alias, sizeof alias, "%s/link.onnx", e.dir);
    cr_assert_eq(symlink(e.model, alias), 0);
    r = ba_test_cli("search", e.model, "--data", e.data, "--budget", "avg-bits=4", "--method", "uniform",
                    "--study", "t", "--db", e.db, "--plan-out", alias, "-q", NULL);
    expect_refused(&r, "--plan-out", "model");
    ba_test_run_free(&r);
    expect_same(e.model, model_sha);
    /* resume: the study's data file (a hard link to it). */
    snprintf(alias, sizeof alias, "%s/hard.npy", e.dir);
    cr_assert_eq(link(e.data, alias), 0);
    char data_sha[65];
    sha(e.data, data_sha);
    r = ba_test_cli("resume", "--study", "s", "--db", e.db, "--plan-out", alias, "-q", NULL);
    expect_refused(&r, "--plan-out", "data file");
    ba_test_run_free(&r);
    expect_same(e.data, data_sha);
    expect_same(e.db, db_sha);
    ba_test_rmtree(e.dir);
}

Test(safety, a_database_about_to_be_created_cannot_be_the_plan) {
    env_t e = make_env();
    char db[700], alias[700];
    snprintf(db, sizeof db, "%s/new.db", e.dir);
    snprintf(alias, sizeof alias, "%s/../%s/new.db", e.dir, strrchr(e.dir, '/') + 1);
    ba_test_run_t r = ba_test_cli("search", e.model, "--data", e.data, "--budget", "avg-bits=4", "--method",
                                  "uniform", "--study", "t", "--db", db, "--plan-out", alias, "-q", NULL);
    expect_refused(&r, "--plan-out", "database");
    ba_test_run_free(&r);
    cr_expect_neq(access(db, F_OK), 0, "no database was created");
    ba_test_rmtree(e.dir);
}

Test(safety, eval_quantize_and_export_refuse_their_inputs_as_output) {
    env_t e = make_env();
    char data_sha[65], labels_sha[65], model_sha[65], plan_sha[65], db_sha[65];
    sha(e.data, data_sha);
    sha(e.labels, labels_sha);
    sha(e.model, model_sha);
    sha(e.plan, plan_sha);
    sha(e.db, db_sha);
    ba_test_run_t r = ba_test_cli("eval", e.model, "--data", e.data, "--save-output", e.data, NULL);
    expect_refused(&r, "--save-output", "data file");
    ba_test_run_free(&r);
    r = ba_test_cli("eval", e.model, "--data", e.data, "--labels", e.labels, "--save-output", e.labels, NULL);
    expect_refused(&r, "--save-output", "labels file");
    ba_test_run_free(&r);
    r = ba_test_cli("quantize", e.model, "--plan", e.plan, "-o", e.model, NULL);
    expect_refused(&r, "--output", "model");
    ba_test_run_free(&r);
    r = ba_test_cli("quantize", e.model, "--plan", e.plan, "-o", e.plan, NULL);
    expect_refused(&r, "--output", "plan");
    ba_test_run_free(&r);
    r = ba_test_cli("export", "--study", "s", "--db", e.db, "--format", "csv", "-o", e.data, NULL);
    expect_refused(&r, "--output", "data file");
    ba_test_run_free(&r);
    /* The config file that named the database. */
    char cfg[700], text[800];
    snprintf(cfg, sizeof cfg, "%s/c.yaml", e.dir);
    snprintf(text, sizeof text, "db: %s\n", e.db);
    cr_assert_eq(ba_test_write_file(cfg, text), 0);
    char cfg_sha[65];
    sha(cfg, cfg_sha);
    r = ba_test_cli("export", "--config", cfg, "--study", "s", "--format", "csv", "-o", cfg, NULL);
    expect_refused(&r, "--output", "config file");
    ba_test_run_free(&r);
    expect_same(e.data, data_sha);
    expect_same(e.labels, labels_sha);
    expect_same(e.model, model_sha);
    expect_same(e.plan, plan_sha);
    expect_same(e.db, db_sha);
    expect_same(cfg, cfg_sha);
    ba_test_rmtree(e.dir);
}

/* ------------------------------------------------------------ the writer */

static char *slurp(const char *path) {
    uint8_t *d;
    size_t n;
    ba_error err;
    return ba_file_read(path, &d, &n, &err) == BA_OK ? (char *)d : NULL;
}

Test(safety, a_planted_tmp_link_is_not_followed_and_a_link_target_is_replaced_in_place) {
    char dir[512], out[700], tmp[700], victim[700], real[700], lnk[700];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/plan.json", dir);
    snprintf(tmp, sizeof tmp, "%s/plan.json.tmp", dir);
    snprintf(victim, sizeof victim, "%s/victim", dir);
    cr_assert_eq(ba_test_write_file(victim, "precious\n"), 0);
    cr_assert_eq(symlink(victim, tmp), 0);
    ba_error err;
    cr_assert_eq(ba_out_write(out, "new\n", 4, &err), BA_OK, "%s", err.msg);
    char *v = slurp(victim), *o = slurp(out);
    cr_expect_str_eq(v, "precious\n", "the planted link was followed");
    cr_expect_str_eq(o, "new\n");
    free(v), free(o);
    /* A symlink to a regular file: the link stays, the file it names gets the data. */
    snprintf(real, sizeof real, "%s/real.json", dir);
    snprintf(lnk, sizeof lnk, "%s/link.json", dir);
    cr_assert_eq(ba_test_write_file(real, "old\n"), 0);
    cr_assert_eq(chmod(real, 0640), 0);
    cr_assert_eq(symlink("real.json", lnk), 0);
    cr_assert_eq(ba_out_write(lnk, "fresh\n", 6, &err), BA_OK, "%s", err.msg);
    struct stat st;
    cr_assert_eq(lstat(lnk, &st), 0);
    cr_expect(S_ISLNK(st.st_mode), "the link was replaced by a file");
    cr_assert_eq(stat(real, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0640, "mode kept: %o", st.st_mode & 0777);
    char *t = slurp(real);
    cr_expect_str_eq(t, "fresh\n");
    free(t);
    /* A link to nothing, and a folder: refused, nothing made. */
    snprintf(lnk, sizeof lnk, "%s/dangling", dir);
    cr_assert_eq(symlink("nowhere", lnk), 0);
    cr_expect_eq(ba_out_write(lnk, "x", 1, &err), BA_ERR_INPUT);
    char nowhere[700];
    snprintf(nowhere, sizeof nowhere, "%s/nowhere", dir);
    cr_expect_neq(access(nowhere, F_OK), 0, "the link's target was created");
    cr_expect_eq(ba_out_write(dir, "x", 1, &err), BA_ERR_INPUT);
    ba_test_rmtree(dir);
}

Test(safety, devices_and_fifos_are_written_through_never_replaced, .timeout = 20) {
    char dir[512], full[700], null[700], fifo[700];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    ba_error err;
    /* Private copies of /dev/full and /dev/null, so a broken writer harms nothing. */
    snprintf(full, sizeof full, "%s/full", dir);
    snprintf(null, sizeof null, "%s/null", dir);
    int have_nodes =
        mknod(full, S_IFCHR | 0666, makedev(1, 7)) == 0 && mknod(null, S_IFCHR | 0666, makedev(1, 3)) == 0;
    if (!have_nodes) {
        snprintf(null, sizeof null, "/dev/null");
        cr_log_warn("mknod not permitted (%s): /dev/full case skipped, /dev/null used", strerror(errno));
    }
    struct stat st;
    if (have_nodes) {
        cr_expect_eq(ba_out_write(full, "data", 4, &err), BA_ERR_IO, "a full device is a write error");
        cr_expect(strstr(err.msg, "No space"), "%s", err.msg);
        cr_assert_eq(lstat(full, &st), 0);
        cr_expect(S_ISCHR(st.st_mode), "the device node was replaced");
    }
    cr_expect_eq(ba_out_write(null, "data", 4, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(lstat(null, &st), 0);
    cr_expect(S_ISCHR(st.st_mode), "the device node was replaced");
    /* A FIFO nobody reads: an error at once, not a hang; one that is read gets the data. */
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_expect_eq(ba_out_write(fifo, "data", 4, &err), BA_ERR_IO);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t k = fork();
    if (k == 0) {
        close(p[0]);
        int fd = open(fifo, O_RDONLY);
        char buf[16] = {0};
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        _exit(n == 4 && memcmp(buf, "data", 4) == 0 ? 0 : 1);
    }
    int ok = 0;
    for (int i = 0; i < 200 && !ok; i++) { /* until the reader has opened its end */
        ok = ba_out_write(fifo, "data", 4, &err) == BA_OK;
        if (!ok) usleep(10000);
    }
    int ws;
    waitpid(k, &ws, 0);
    cr_expect(ok, "%s", err.msg);
    cr_expect(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "the reader got the data");
    cr_assert_eq(lstat(fifo, &st), 0);
    cr_expect(S_ISFIFO(st.st_mode));
    close(p[0]), close(p[1]);
    ba_test_rmtree(dir);
}

Test(safety, cli_output_to_a_device_keeps_the_device) {
    env_t e = make_env();
    char full[700];
    snprintf(full, sizeof full, "%s/full", e.dir);
    if (mknod(full, S_IFCHR | 0666, makedev(1, 7)) != 0) {
        ba_test_rmtree(e.dir);
        cr_skip_test("mknod not permitted: %s", strerror(errno));
    }
    ba_test_run_t r = ba_test_cli("resume", "--study", "s", "--db", e.db, "--plan-out", full, "-q", NULL);
    cr_expect_eq(r.status, 1, "a full device is a runtime failure: exit %d %s", r.status, r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("export", "--study", "s", "--db", e.db, "--format", "csv", "-o", full, NULL);
    cr_expect_eq(r.status, 1, "exit %d %s", r.status, r.err);
    ba_test_run_free(&r);
    struct stat st;
    cr_assert_eq(lstat(full, &st), 0);
    cr_expect(S_ISCHR(st.st_mode), "the device node became a %o", st.st_mode & S_IFMT);
    ba_test_rmtree(e.dir);
}

/* Concurrent writers of one path: every one succeeds and the file is one writer's whole data. */
Test(safety, concurrent_writers_leave_one_whole_file, .timeout = 60) {
    char dir[512], out[700];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/out.bin", dir);
    enum { WRITERS = 6, ROUNDS = 15, SIZE = 256 * 1024 };
    pid_t kids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        if ((kids[w] = fork()) == 0) {
            char *buf = malloc(SIZE);
            if (!buf) _exit(3);
            memset(buf, 'a' + w, SIZE);
            for (int i = 0; i < ROUNDS; i++) {
                ba_error err;
                if (ba_out_write(out, buf, SIZE, &err) != BA_OK) _exit(1);
            }
            free(buf);
            _exit(0);
        }
    }
    for (int w = 0; w < WRITERS; w++) {
        int ws;
        waitpid(kids[w], &ws, 0);
        cr_expect(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "writer %d failed", w);
    }
    uint8_t *d;
    size_t n;
    ba_error err;
    cr_assert_eq(ba_file_read(out, &d, &n, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(n, (size_t)SIZE);
    int whole = n == SIZE;
    for (size_t i = 1; whole && i < n; i++) whole = d[i] == d[0];
    cr_expect(whole, "the file mixes writers' data");
    free(d);
    /* No temporary file is left behind. */
    char cmd[800];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", dir);
    cr_expect_eq(system(cmd), 0, "temporary files left in %s", dir);
    ba_test_rmtree(dir);
}

/* Only the file's own folder is made: `DIR/n1/x` makes n1; `DIR/n2/n3/x` makes nothing. */
Test(safety, only_the_files_own_folder_is_created) {
    env_t e = make_env();
    char out[700], n2[700];
    snprintf(out, sizeof out, "%s/n2/n3/x.csv", e.dir);
    snprintf(n2, sizeof n2, "%s/n2", e.dir);
    ba_test_run_t r = ba_test_cli("export", "--study", "s", "--db", e.db, "--format", "csv", "-o", out, NULL);
    cr_expect_eq(r.status, 1, "exit %d %s", r.status, r.err);
    cr_expect(strstr(r.err, n2), "names the missing folder: %s", r.err);
    ba_test_run_free(&r);
    cr_expect_neq(access(n2, F_OK), 0, "a folder outside the named one was created");
    r = ba_test_cli("resume", "--study", "s", "--db", e.db, "--plan-out", out, "-q", NULL);
    cr_expect_eq(r.status, 1, "exit %d %s", r.status, r.err);
    ba_test_run_free(&r);
    cr_expect_neq(access(n2, F_OK), 0, "a folder outside the named one was created");
    snprintf(out, sizeof out, "%s/n1/x.csv", e.dir);
    r = ba_test_cli("export", "--study", "s", "--db", e.db, "--format", "csv", "-o", out, NULL);
    cr_expect_eq(r.status, 0, "exit %d %s", r.status, r.err);
    ba_test_run_free(&r);
    cr_expect_eq(access(out, F_OK), 0);
    ba_test_rmtree(e.dir);
}

/* ------------------------------------------------------- read-only opens */

Test(safety, readers_leave_an_empty_file_empty) {
    char dir[512], db[700];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/empty.db", dir);
    cr_assert_eq(ba_test_write_file(db, ""), 0);
    const char *cmds[][8] = {{"studies", NULL},
                             {"studies", "--format", "json", NULL},
                             {"trials", "--study", "s", NULL},
                             {"export", "--study", "s", "--format", "csv", "-o", "/dev/null", NULL},
                             {"resume", "--study", "s", NULL}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        const char **c = cmds[i];
        ba_test_run_t r = ba_test_cli("--db", db, c[0], c[1], c[2], c[3], c[4], c[5], c[6], NULL);
        cr_expect_eq(r.status, 2, "%s: exit %d %s", c[0], r.status, r.err);
        cr_expect(strstr(r.err, db) && !strstr(r.err, "not an error"), "%s: %s", c[0], r.err);
        ba_test_run_free(&r);
        struct stat st;
        cr_assert_eq(stat(db, &st), 0);
        cr_expect_eq(st.st_size, 0, "%s turned the empty file into a database", c[0]);
    }
    char side[720];
    snprintf(side, sizeof side, "%s-wal", db);
    cr_expect_neq(access(side, F_OK), 0);
    ba_test_rmtree(dir);
}

/* A database on a read-only mount (a private mount namespace: tmpfs remounted read-only)
 * is read by studies, trials and export; SQLite's "not an error" never shows. */
Test(safety, a_database_on_a_read_only_mount_is_read, .timeout = 60) {
    env_t e = make_env();
    char ro[700], script[16384];
    snprintf(ro, sizeof ro, "%s/ro", e.dir);
    cr_assert_eq(mkdir(ro, 0755), 0);
    snprintf(script, sizeof script,
             "mount -t tmpfs none '%s' 2>/dev/null || exit 77; cp '%s' '%s/x.db' || exit 78; "
             "mount -o remount,ro '%s' || exit 77; touch '%s/probe' 2>/dev/null && exit 79; "
             "'%s' --db '%s/x.db' studies --format csv || exit $?; "
             "'%s' --db '%s/x.db' trials --study s --format csv || exit $?; "
             "'%s' --db '%s/x.db' export --study s --format csv -o /dev/stdout || exit $?; "
             "ls -A '%s'",
             ro, e.db, ro, ro, ro, BA_CLI, ro, BA_CLI, ro, BA_CLI, ro, ro);
    const char *argv[] = {"/usr/bin/unshare", "-m", "/bin/sh", "-c", script, NULL};
    char *out = NULL, *err = NULL;
    int st = -1;
    int started = access(argv[0], X_OK) == 0 && ba_test_run(argv, &out, &err, &st) == 0;
    if (!started || st == 77) {
        ba_test_rmtree(e.dir);
        cr_skip_test("no private read-only mount here (unshare -m: exit %d %s)", st, err ? err : "");
    }
    cr_expect_eq(st, 0, "exit %d: %s", st, err);
    cr_expect(!strstr(err, "not an error"), "%s", err);
    cr_expect(strstr(out, "s,") && strstr(out, "number,state"), "%s", out);
    cr_expect(strstr(out, "layer,w_bits"), "the export was written through to stdout: %s", out);
    cr_expect(strstr(out, "x.db\n") && !strstr(out, "x.db-"), "nothing was made beside the database: %s",
              out);
    free(out), free(err);
    ba_test_rmtree(e.dir);
}

/* ----------------------------------------------------------------- UTF-8 */

Test(safety, a_name_that_is_not_utf8_is_refused_before_any_work) {
    env_t e = make_env();
    char db[700], plan[700];
    snprintf(db, sizeof db, "%s/fresh.db", e.dir);
    snprintf(plan, sizeof plan, "%s/p2.json", e.dir);
    ba_test_run_t r =
        ba_test_cli("search", e.model, "--data", e.data, "--budget", "avg-bits=4", "--method", "uniform",
                    "--study", "bad\xff\xfe", "--db", db, "--plan-out", plan, "-q", NULL);
    cr_expect_eq(r.status, 2, "exit %d %s", r.status, r.err);
    cr_expect(strstr(r.err, "--study") && strstr(r.err, "UTF-8"), "%s", r.err);
    ba_test_run_free(&r);
    cr_expect_neq(access(db, F_OK), 0, "a database was created");
    cr_expect_neq(access(plan, F_OK), 0, "a plan was written");
    ba_test_rmtree(e.dir);
}

Test(safety, studies_json_survives_a_stored_name_that_is_not_utf8) {
    env_t e = make_env();
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(e.db, &h), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(h, "UPDATE studies SET name = X'6261649F'", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    ba_test_run_t r = ba_test_cli("--db", e.db, "studies", "--format", "json", NULL);
    cr_expect_eq(r.status, 0, "exit %d %s", r.status, r.err);
    json_error_t je;
    json_t *j = json_loads(r.out, 0, &je);
    cr_assert(json_is_array(j), "not JSON: %s (%s)", r.out, je.text);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "name")), "bad\xef\xbf\xbd");
    json_decref(j);
    ba_test_run_free(&r);
    ba_test_rmtree(e.dir);
}
