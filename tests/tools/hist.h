/* hist.h: invoke/complete histories of NBD clients on stamped blocks, and
 * the checker that decides them (CONTRACT.md rows 5 and 15: per-block
 * register linearizability, C5, C6, C7).
 *
 * A history is a text file, one event per line, written by blockd-hist
 * run / read-all (any number of processes may append, each line written
 * whole; times are CLOCK_MONOTONIC microseconds, shared by every process
 * and network namespace of the host):
 *
 *   T C invoke write B W:S [fua]   client C starts writing value W:S to block B
 *   T C invoke read B
 *   T C invoke flush
 *   T C ok write B W:S             completed
 *   T C ok read B V                V: 0 (zeros), W:S (a valid stamp of this run
 *                                  aimed at B), torn (checksum fails: a mix,
 *                                  C6), garbage (no stamp), alien:WHY (a valid
 *                                  stamp of another block, volume or run)
 *   T C ok flush
 *   T C fail OP ...                the server answered an error
 *   T C info OP ...                no answer (timeout, connection lost):
 *                                  the outcome is unknown
 *   # final                        what follows is the final read of every
 *                                  block (left out of the stall figures)
 *   # anything                     a comment
 *
 * Each client has at most one operation outstanding, so a completion pairs
 * with its client's last invoke.  Write values are unique (writer id and a
 * per-writer sequence number), which is what makes the check polynomial
 * (Gibbons and Korach: a read names the one write it returns).
 *
 * The checker, per block, treats the block as a read/write register whose
 * initial value is zeros, and reports:
 *   linearizability (C7): the zone test.  A value's cluster is its write and
 *     the reads that returned it; its zone runs between the earliest
 *     completion and the latest invocation in the cluster: forward if the
 *     earliest completion comes first, else backward.  The history is
 *     linearizable iff no two forward zones overlap and no backward zone
 *     lies inside a forward zone (Gibbons and Korach 1997; Golab, Li and
 *     Shah 2011), given that no read completes before its write was
 *     invoked (checked first, "read-before-write");
 *   lost-flushed (C1, C5): a read returns a value whose write completed
 *     before another write to the block was invoked that was made durable
 *     (completed before a successful FLUSH was invoked, or FUA) before the
 *     read was invoked;
 *   torn (C6), garbage and alien (C5, C11), unissued (a value nobody wrote
 *     to this block).
 * A write that failed or got no answer may or may not have happened: its
 * completion is taken as +infinity (it constrains nothing unless read).
 * Failed and unanswered reads constrain nothing. */
#ifndef BD_HIST_H
#define BD_HIST_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum hist_type { HIST_WRITE, HIST_READ, HIST_FLUSH };
enum hist_status { HIST_PENDING, HIST_OK, HIST_FAIL, HIST_INFO };
/* Read results that are not values (HIST_READ with status OK). */
enum hist_rkind { HIST_R_VALUE, HIST_R_TORN, HIST_R_GARBAGE, HIST_R_ALIEN };

#define HIST_T_INF INT64_MAX
#define HIST_T_NEGINF INT64_MIN

struct hist_op {
    int64_t t0, t1;          /* invoke, completion (HIST_T_INF: none) */
    uint32_t client;
    uint8_t type;            /* enum hist_type */
    uint8_t status;          /* enum hist_status */
    uint8_t rkind;           /* enum hist_rkind, reads */
    bool fua;
    bool final;              /* after "# final" */
    uint64_t block;
    uint64_t value;          /* hist_value(W, S); 0: zeros */
    char alien[48];          /* HIST_R_ALIEN: what it was */
    uint32_t line;           /* line number of the invoke */
};

/* The key of value W:S (writer W >= 1, S < 2^48). */
static inline uint64_t hist_value(uint32_t writer, uint64_t seq)
{
    return ((uint64_t)writer << 48) | (seq & ((UINT64_C(1) << 48) - 1));
}

struct hist {
    struct hist_op *ops;
    size_t n, cap;
};

/* What the check found. */
struct hist_result {
    uint64_t ops, writes, reads, flushes, indeterminate, failed, blocks;
    uint64_t violations;
    int64_t max_latency_us;  /* longest successful op (not the final read) */
    int64_t longest_stall_us;/* longest time with no op completing (not final) */
};

/* Parse history file F into H (appends).  0, or -1 with a message on
 * stderr naming the line. */
int hist_parse(FILE *f, const char *name, struct hist *h);
void hist_free(struct hist *h);

/* Check H; print each violation (at most MAX_REPORT, then a count) and the
 * summary to OUT; fill R.  Returns the number of violations. */
uint64_t hist_check(struct hist *h, FILE *out, unsigned max_report, struct hist_result *r);

#endif
