/* Output files: the one place that decides how bitalloc writes a file a user named
 * (plan JSON, exports, ONNX models, .npy outputs).
 *
 *  * A regular file (or a path that does not exist yet) is replaced atomically: the data go to a
 *    fresh temporary file in the target's folder (mkstemp: O_CREAT|O_EXCL, never through a
 *    planted link), are fsync'ed and renamed over the target. A reader sees the old file or the
 *    new one, never a mix; two writers to one path leave one complete file; a failure leaves the
 *    target as it was. A replaced file keeps its permission bits (and owner, as root). A symlink
 *    to a regular file is kept: the file it points to is replaced.
 *  * A character device or a FIFO (/dev/null, /dev/stdout on a pipe, a named pipe someone reads)
 *    is written through, never replaced; the process's own stdout/stderr too, whatever they are.
 *    A FIFO nobody reads is an error, not a hang.
 *  * Anything else (a folder, a block device, a socket, a symlink to nothing) is refused.
 *  * The target's folder is created when missing, one level only: `out/plan.json` makes `out/`
 *    when `.` exists; `/nonexistent/dir/x` is refused and nothing is created.
 *
 * ba_out_check_inputs refuses an output that is (by device and inode, so through links and
 * other spellings of the path) one of the command's input files. */
#ifndef BA_CORE_OUTFILE_H
#define BA_CORE_OUTFILE_H

#include <stddef.h>
#include <stdio.h>

#include "core/error.h"

typedef struct ba_out ba_out_t;

/* Opens path for writing by the rules above; *out's stream takes the data. */
ba_status ba_out_open(const char *path, ba_out_t **out, ba_error *err);
/* The stream to write to (buffered; errors are collected by ba_out_commit). */
FILE *ba_out_stream(ba_out_t *o);
/* Flushes, syncs and renames into place; frees o whatever happens. */
ba_status ba_out_commit(ba_out_t *o, ba_error *err);
/* Drops what was written (the target stays as it was); frees o. NULL is fine. */
void ba_out_abort(ba_out_t *o);
/* ba_out_open + one write + ba_out_commit. */
ba_status ba_out_write(const char *path, const void *data, size_t size, ba_error *err);

/* One input file of a command: its path (NULL: skipped) and what it is ("model", "database"…). */
typedef struct {
    const char *path;
    const char *role;
} ba_out_input_t;

/* BA_ERR_INPUT "OUT is the ROLE (PATH); choose another path" when the existing file at out is
 * one of the inputs (same device and inode). An output that does not exist yet is refused only
 * when an input that does not exist yet either has the same canonical path (a database about to
 * be created). */
ba_status ba_out_check_inputs(const char *out, const ba_out_input_t *in, int n, ba_error *err);

#endif
