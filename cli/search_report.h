/* Shared by `search` and `resume`: progress display and the result summary
 * (table or JSON on stdout), and writing the best plan. */
#ifndef BA_CLI_SEARCH_REPORT_H
#define BA_CLI_SEARCH_REPORT_H

#include "bitalloc.h"
#include "cli/cli.h"
#include "cli/progress.h"

typedef struct ba_search_ui {
    ba_progress_t bar;
    char label[160];
    char phase[32];
    int quiet;
} ba_search_ui_t;

/* ba_study_callbacks_t.progress with a ba_search_ui_t as user. */
void ba_search_ui_progress(void *user, const ba_study_progress_t *p);
/* Prints a warning of the study (e.g. a failed cache write) on its own line. */
void ba_search_ui_warning(void *user, const char *msg);
/* Writes the plan (plan_out may be NULL; refused when it is one of the inputs of o or of the
 * study's settings s), prints the summary; returns the exit code. */
int ba_search_report(const ba_cli_opts *o, const ba_study_result_t *r, const char *plan_out,
                     const ba_study_settings_t *s);
/* Ends the progress line of ui, then prints err (st failed) or reports r as ba_search_report;
 * returns the exit code. */
int ba_search_finish(const ba_cli_opts *o, ba_status st, const ba_error *err, ba_search_ui_t *ui,
                     const ba_study_result_t *r, const char *plan_out, const ba_study_settings_t *s);
/* The settings (input files) of study name in the database at path, read without changing the
 * database, so that --plan-out is checked before any work or write. */
ba_status ba_search_study_settings(const char *path, const char *name, ba_study_settings_t *s, ba_error *err);

#endif
