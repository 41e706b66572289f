/* `bitalloc report`: a study's HTML report (see docs/report.md), written
 * through core/outfile.h like every other output. Reads the database only. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/guard.h"
#include "core/outfile.h"
#include "report/report.h"

int ba_cmd_report(const ba_cli_opts *o) {
    const char *out = ba_cli_get(o, "output");
    const char *trial = ba_cli_get_or(o, "trial", "best");
    ba_report_opts_t ro = {.study = ba_cli_get(o, "study"),
                           .trial = strcmp(trial, "best") ? ba_cli_get_int(o, "trial", 0) : 0,
                           .objectives = ba_cli_get(o, "objectives")};
    ba_error err;
    ba_error_clear(&err);
    ba_db_t *db = NULL;
    ba_out_t *of = NULL;
    ba_status st = ba_cli_check_output(o, "--output", out, NULL, NULL, 0, &err);
    if (st == BA_OK) st = ba_db_open(ba_cli_db_path(o), BA_DB_OPEN_READONLY, &db, &err);
    if (st == BA_OK) st = ba_out_open(out, &of, &err);
    if (st == BA_OK) st = ba_report_write(db, &ro, ba_out_stream(of), &err);
    if (st == BA_OK) {
        st = ba_out_commit(of, &err);
        of = NULL;
    }
    ba_out_abort(of);
    ba_db_close(db);
    if (st != BA_OK) {
        ba_cli_error("%s", err.msg);
        return ba_status_exit_code(st);
    }
    if (ba_cli_verbosity(o) >= 0) fprintf(stderr, "wrote %s\n", out);
    return BA_EXIT_OK;
}
