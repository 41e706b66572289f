/* A one-line progress display for long runs: drawn on stderr only when stderr is a
 * terminal (never into pipes or logs), redrawn in place with \r, with an ETA. */
#ifndef BA_CLI_PROGRESS_H
#define BA_CLI_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *label;
    uint64_t total; /* 0 when unknown: no percentage, no ETA */
    double t0, last_draw;
    int enabled, drawn;
} ba_progress_t;

/* enabled when stderr is a TTY and quiet is 0. */
void ba_progress_start(ba_progress_t *p, const char *label, uint64_t total, int quiet);
void ba_progress_update(ba_progress_t *p, uint64_t done);
/* Clears the line so the next output starts clean. */
void ba_progress_end(ba_progress_t *p);
/* Adapter for library callbacks shaped (user, done, total); user is a ba_progress_t. */
void ba_progress_cb(void *user, uint64_t done, uint64_t total);
/* The text of one line ("search  37/200  18%  0:12 elapsed  ETA 0:53"); pure, for tests. */
void ba_progress_format(char *buf, size_t cap, const char *label, uint64_t done, uint64_t total,
                        double elapsed);

#endif
