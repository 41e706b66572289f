/* Progress line on stderr (see progress.h). The ETA is a linear extrapolation of the
 * elapsed time over the completed fraction; redraws are throttled so a fast loop does
 * not spend its time writing to the terminal. */
#include "cli/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "bitalloc.h"

#define BA_PROGRESS_MIN_INTERVAL_S 0.1 /* at most 10 redraws per second */
#define BA_SECONDS_PER_MINUTE 60
#define BA_SECONDS_PER_HOUR 3600

static void fmt_duration(char *buf, size_t cap, double s) {
    if (s < 0) s = 0;
    unsigned long t = (unsigned long)(s + 0.5);
    if (t >= BA_SECONDS_PER_HOUR)
        snprintf(buf, cap, "%lu:%02lu:%02lu", t / BA_SECONDS_PER_HOUR, t / BA_SECONDS_PER_MINUTE % 60,
                 t % BA_SECONDS_PER_MINUTE);
    else
        snprintf(buf, cap, "%lu:%02lu", t / BA_SECONDS_PER_MINUTE, t % BA_SECONDS_PER_MINUTE);
}

void ba_progress_format(char *buf, size_t cap, const char *label, uint64_t done, uint64_t total,
                        double elapsed) {
    char el[32], eta[32];
    fmt_duration(el, sizeof el, elapsed);
    if (total == 0) {
        snprintf(buf, cap, "%s  %llu  %s elapsed", label, (unsigned long long)done, el);
        return;
    }
    if (done > total) done = total;
    double frac = (double)done / (double)total;
    if (done == 0)
        snprintf(eta, sizeof eta, "?");
    else
        fmt_duration(eta, sizeof eta, elapsed / frac - elapsed);
    snprintf(buf, cap, "%s  %llu/%llu  %3.0f%%  %s elapsed  ETA %s", label, (unsigned long long)done,
             (unsigned long long)total, 100.0 * frac, el, eta);
}

void ba_progress_start(ba_progress_t *p, const char *label, uint64_t total, int quiet) {
    p->label = label;
    p->total = total;
    p->t0 = ba_now();
    p->last_draw = 0;
    p->drawn = 0;
    p->enabled = !quiet && isatty(STDERR_FILENO);
}

void ba_progress_update(ba_progress_t *p, uint64_t done) {
    if (!p->enabled) return;
    double now = ba_now();
    int final = p->total && done >= p->total;
    if (p->drawn && !final && now - p->last_draw < BA_PROGRESS_MIN_INTERVAL_S) return;
    char line[256];
    ba_progress_format(line, sizeof line, p->label, done, p->total, now - p->t0);
    fprintf(stderr, "\r%s\033[K", line); /* \033[K clears what a longer previous line left */
    fflush(stderr);
    p->last_draw = now;
    p->drawn = 1;
}

void ba_progress_end(ba_progress_t *p) {
    if (p->enabled && p->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    p->drawn = 0;
}

void ba_progress_cb(void *user, uint64_t done, uint64_t total) {
    ba_progress_t *p = user;
    p->total = total;
    ba_progress_update(p, done);
}
