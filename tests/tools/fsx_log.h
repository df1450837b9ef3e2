/* fsx_log.h: the crash-window write log (CONTRACT.md row 3; Crucible's
 * WriteLog [count_min, count_cur]).
 *
 * blockd-fsx --log FILE appends one text line per event, in the order the
 * events happened, and write(2)s each line before the NBD request it
 * describes is sent, so the file is exact whatever process is killed; it
 * fdatasyncs every `sync_every` lines and at close (power loss of the test
 * host itself is out of scope unless sync_every is 1).
 *
 *   H blockd-fsx-log 1 seed=S vol=V writer=W gen=G size=BYTES init=zero|any trim=strict|loose
 *     range=FIRST:COUNT    (the blocks the run used; only these are verified)
 *   I SEQ KIND FIRST N     op issued; KIND W write, F FUA write, Z write_zeroes, T trim
 *   A SEQ                  op acked (reply received, no error)
 *   E SEQ ERRNO            op failed with an error reply (its effect is unknown)
 *   FI SEQ                 flush issued
 *   FA SEQ                 flush acked: every op acked before its FI is durable (C1)
 *
 * fsx_log_replay() reads a log into a model whose windows are what C5
 * allows after a crash: for every block, the value of the newest durable op
 * (REQUIRE_FLUSHED: flushed or FUA-acked, C1/C2/C5; REQUIRE_ACKED: acked,
 * the agent's process-crash promise C4) or the value of any op issued after
 * it.  A final line cut short by a kill is ignored; any other malformed
 * line is an error. */
#ifndef BD_FSX_LOG_H
#define BD_FSX_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "fsx_model.h"
#include "stamp.h"

struct fsx_log {
    int fd;
    unsigned sync_every;   /* fdatasync after this many lines */
    unsigned unsynced;     /* lines since the last fdatasync */
    char path[1024];
};

/* Header fields of a log. */
struct fsx_log_hdr {
    struct stamp me;       /* vol, seed, writer, gen of the run */
    uint64_t size;         /* export size in bytes */
    bool init_any;
    bool loose_trim;
    uint64_t range_first;  /* blocks the run used */
    uint64_t range_count;
};

/* Create PATH (truncating it) and write the header.  Returns 0 or -errno. */
int fsx_log_open(struct fsx_log *l, const char *path, const struct fsx_log_hdr *h,
                 unsigned sync_every);
/* Append one line (printf format, no newline).  Returns 0 or -errno. */
int fsx_log_printf(struct fsx_log *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* fdatasync now.  Returns 0 or -errno. */
int fsx_log_sync(struct fsx_log *l);
/* Sync and close.  Returns 0 or -errno. */
int fsx_log_close(struct fsx_log *l);

/* The letter for KIND in an I line. */
char fsx_log_kind_char(enum fsx_kind kind);

enum fsx_require {
    FSX_REQUIRE_FLUSHED, /* C5: the last flush (or FUA) bounds what may be lost */
    FSX_REQUIRE_ACKED,   /* C4: nothing acked may be lost */
};

/* Counts from a replay, for the summary line. */
struct fsx_log_stats {
    uint64_t ops, acked, errors, flushes, durable, lines;
};

/* Read PATH into *HDR and a model (initialised here; the caller runs
 * fsx_model_fini).  Returns 0, -errno for I/O, or -EINVAL with a message
 * naming the line in ERR. */
int fsx_log_replay(const char *path, enum fsx_require req, struct fsx_log_hdr *hdr,
                   struct fsx_model *m, struct fsx_log_stats *st, char *err, size_t errlen);

#endif
