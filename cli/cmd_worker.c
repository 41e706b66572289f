/* `bitalloc worker`: see docs/worker.md. Joins a study (created by `search`)
 * and measures its queued configurations until the search ends; any number of
 * workers on any hosts sharing a PostgreSQL --db give the result one process
 * would. */
#include <stdio.h>

#include "cli/cli.h"
#include "cli/guard.h"
#include "cli/search_report.h"

ba_status ba_cli_check_work(const ba_study_work_t *w, ba_error *err) {
    if (!(w->lease_s >= 0.1))
        return ba_error_set(err, BA_ERR_INPUT, "--lease: give at least 0.1 seconds, got %g", w->lease_s);
    if (w->max_attempts < 1) return ba_error_set(err, BA_ERR_INPUT, "--max-attempts: give at least 1");
    return BA_OK;
}

int ba_cmd_worker(const ba_cli_opts *o) {
    ba_error err = {0};
    ba_db_t *db = NULL;
    ba_study_settings_t s;
    ba_study_settings_init(&s);
    const char *plan_out = ba_cli_get(o, "plan-out");
    ba_study_work_t w = {.worker = ba_cli_get(o, "name"),
                         .lease_s = ba_cli_get_double(o, "lease", BA_STUDY_WORK_LEASE_S),
                         .max_attempts = (int)ba_cli_get_int(o, "max-attempts", BA_STUDY_WORK_MAX_ATTEMPTS)};
    ba_status st = ba_cli_check_work(&w, &err);
    if (st == BA_OK && plan_out)
        st = ba_search_study_settings(ba_cli_db_path(o), ba_cli_get(o, "study"), &s, &err);
    if (st == BA_OK) st = ba_cli_check_output(o, "--plan-out", plan_out, &s, NULL, 0, &err);
    if (st == BA_OK) st = ba_db_open(ba_cli_db_path(o), BA_DB_OPEN_WRITE, &db, &err);
    ba_study_result_t r = {0};
    ba_search_ui_t ui = {.quiet = ba_cli_verbosity(o) < 0};
    ba_study_callbacks_t cb = {ba_search_ui_progress, &ui, ba_search_ui_warning};
    if (st == BA_OK) st = ba_study_work(db, ba_cli_get(o, "study"), &w, &cb, &r, &err);
    int rc = ba_search_finish(o, st, &err, &ui, &r, plan_out, &s);
    ba_study_result_free(&r);
    ba_db_close(db);
    ba_study_settings_free(&s);
    return rc;
}
