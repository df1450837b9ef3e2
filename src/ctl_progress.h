/* ctl_progress.h: progress of `blockd ctl` commands that wait.
 *
 * On a terminal: one line redrawn in place (at most 10 times a second):
 *
 *   export vol0  [##########----------]  51%  5.1 GiB / 10.0 GiB  210 MiB/s  ETA 25 s
 *   snapshot create vol0/s1  waiting for the cluster  2.4 s
 *
 * with a bar, rate and ETA when the total is known, a spinner and the
 * elapsed time when it is not; the line is erased when the work ends, and
 * ctl_progress_finish prints the final line.  Elsewhere (a pipe, a log
 * file, CI) nothing is redrawn: each step is one line, and so is every
 * tenth of the total, or, with no total, every STILL_MS of waiting:
 *
 *   export vol0: 10% 1.0 GiB / 10.0 GiB, 205 MiB/s, ETA 45 s
 *   snapshot create vol0/s1: still waiting after 5 s
 *
 * A wait that ends within QUIET_MS prints nothing at all, so quick
 * commands and their one-line errors read as before.
 *
 * Using it (a new long command, e.g. drain, flatten, export):
 *
 *   struct ctl_progress *pg = ctl_progress_start(stderr, "drain blob 12", total, "bytes");
 *   while (!done) {
 *       ... poll the server ...
 *       ctl_progress_update(pg, done_bytes);          // rate and ETA follow
 *       if (phase changed) ctl_progress_step(pg, "copying partition %u", p);
 *   }
 *   ctl_progress_finish(pg, ok, "drained blob 12");   // frees PG
 *
 * A single blocking call (one HTTP request that waits on the cluster) runs
 * under ctl_progress_wait, which shows the spinner while it runs.
 * Output goes to the stream given (stderr in ctl: stdout stays for
 * results and --json).  Not thread-safe: one thread drives a progress. */
#ifndef BD_CTL_PROGRESS_H
#define BD_CTL_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/bd.h"

#define CTL_PROGRESS_QUIET_MS 1000  /* a wait shorter than this prints nothing */
#define CTL_PROGRESS_STILL_MS 5000  /* not a terminal, no total: a line this often */

struct ctl_progress;

/* Start showing progress of LABEL (copied) on OUT (borrowed: kept until
 * finish).  TOTAL 0 means unknown.  UNIT "bytes" formats sizes; anything
 * else is a plain count followed by UNIT.  Whether OUT is a terminal is
 * asked once, here.  Returns owned (ctl_progress_finish frees it); NULL
 * only on ENOMEM, and every call below accepts NULL. */
struct ctl_progress *ctl_progress_start(FILE *out, const char *label, uint64_t total,
                                        const char *unit);
/* The total learned later (0: still unknown). */
void ctl_progress_set_total(struct ctl_progress *pg, uint64_t total);
/* DONE units of the total are done (monotonic; a smaller value is taken as is). */
void ctl_progress_update(struct ctl_progress *pg, uint64_t done);
/* A step: one line, on a terminal above the redrawn line. */
void ctl_progress_step(struct ctl_progress *pg, const char *fmt, ...) BD_PRINTF(2, 3);
/* Run FN(ARG) on a thread while showing the progress; returns what FN
 * returned.  FN must not touch PG. */
int ctl_progress_wait(struct ctl_progress *pg, int (*fn)(void *arg), void *arg);
/* End: erase the line; print the final line FMT (NULL: none) if the work
 * took long enough to have shown anything, or always when OK is false and
 * FMT is given; free PG. */
void ctl_progress_finish(struct ctl_progress *pg, bool ok, const char *fmt, ...) BD_PRINTF(3, 4);

/* ---- the pure part, for tests ---- */

/* What one line shows. */
struct ctl_progress_view {
    const char *label;
    const char *unit;
    uint64_t done, total;      /* total 0: unknown */
    double rate;               /* units per second; < 0 unknown */
    uint64_t elapsed_ms;
    unsigned spin;             /* spinner phase */
};
/* Format V into BUF (LEN bytes) for a terminal of WIDTH columns (bar and
 * all) or, with WIDTH 0, as a plain log line.  Returns BUF. */
char *ctl_progress_format(char *buf, size_t len, const struct ctl_progress_view *v,
                          unsigned width);

#endif
