/* The HTML report of a study (docs/report.md): one self-contained file (inline
 * SVG and CSS, no script, no network, no font) showing the measured Pareto front
 * with the baselines marked, a trial's per-layer bits beside each layer's cached
 * sensitivity, the search's progress over trials, the study's settings and the
 * trial's totals. Everything drawn is what `trials`, `trials --pareto`,
 * `studies` and `sensitivity` print; nothing is computed here but layout. */
#ifndef BA_REPORT_REPORT_H
#define BA_REPORT_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "core/error.h"
#include "db/db.h"

typedef struct ba_report_opts {
    const char *study;
    int64_t trial; /* <= 0: the best complete trial */
    const char
        *objectives; /* the front's columns, metric first ("kl,avg_bits"); NULL = BA_DB_PARETO_DEFAULT */
} ba_report_opts_t;

/* Writes the report of study o->study to fp. BA_ERR_INPUT when the study or
 * trial is absent or the objectives are bad; BA_ERR_INPUT when the study has no
 * complete trial to show. */
ba_status ba_report_write(ba_db_t *db, const ba_report_opts_t *o, FILE *fp, ba_error *err);

#endif
