/* `bitalloc resume`: see docs/resume.md. Everything comes from the study in
 * the database (settings, digests, trials, checkpoint); the result equals an
 * uninterrupted run's, and a finished study just reports again. */
#include <stdio.h>

#include "cli/cli.h"
#include "cli/guard.h"
#include "cli/search_report.h"
#include "study/llm_study.h"

int ba_cli_study_is_llm(ba_db_t *db, const char *name) {
    ba_study_info_t info;
    ba_error err;
    if (ba_db_study_get(db, name, &info, &err) != BA_OK) return 0;
    int llm = ba_llm_settings_is_llm(info.settings);
    ba_db_study_info_free(&info);
    return llm;
}

int ba_cmd_resume(const ba_cli_opts *o) {
    ba_error err = {0};
    ba_db_t *db = NULL;
    ba_study_settings_t s;
    ba_study_settings_init(&s);
    const char *plan_out = ba_cli_get(o, "plan-out");
    if (ba_db_open(ba_cli_db_path(o), BA_DB_OPEN_READONLY, &db, &err) == BA_OK) {
        int llm = ba_cli_study_is_llm(db, ba_cli_get(o, "study"));
        ba_db_close(db);
        db = NULL;
        if (llm) {
            if (plan_out) {
                ba_cli_error(
                    "--plan-out: study '%s' is an LLM study (use export --format llama or llm-quantize)",
                    ba_cli_get(o, "study"));
                return BA_EXIT_USAGE;
            }
            ba_status s2 = ba_db_open(ba_cli_db_path(o), BA_DB_OPEN_WRITE, &db, &err);
            int rc = s2 == BA_OK ? ba_cmd_llm_resume(o, db)
                                 : (ba_cli_error("%s", err.msg), ba_status_exit_code(s2));
            ba_db_close(db);
            return rc;
        }
    }
    ba_error_clear(&err);
    ba_status st =
        plan_out ? ba_search_study_settings(ba_cli_db_path(o), ba_cli_get(o, "study"), &s, &err) : BA_OK;
    if (st == BA_OK) st = ba_cli_check_output(o, "--plan-out", plan_out, &s, NULL, 0, &err);
    if (st == BA_OK) st = ba_db_open(ba_cli_db_path(o), BA_DB_OPEN_WRITE, &db, &err);
    ba_study_result_t r = {0};
    ba_search_ui_t ui = {.quiet = ba_cli_verbosity(o) < 0};
    ba_study_callbacks_t cb = {ba_search_ui_progress, &ui, ba_search_ui_warning};
    if (st == BA_OK) st = ba_study_resume(db, ba_cli_get(o, "study"), &cb, &r, &err);
    int rc = ba_search_finish(o, st, &err, &ui, &r, plan_out, &s);
    ba_study_result_free(&r);
    ba_db_close(db);
    ba_study_settings_free(&s);
    return rc;
}
