/* proxy_repair_int.h: the repair state shared by proxy_repair.c (lifetime,
 * leadership, heal, replacement, status) and proxy_resync.c (the copy
 * queue, deletes, anti-entropy passes).  Private to those two files.
 *
 * Everything runs on the reactor thread.  Index reads happen inside one
 * callback between proxy_read_begin and proxy_read_end, never across an
 * asynchronous step. */
#ifndef BD_PROXY_REPAIR_INT_H
#define BD_PROXY_REPAIR_INT_H

#include "proxy_int.h"
#include "rplan.h"

#define RP_PAGE 1024u                       /* ids per BLOB_LIST page */
#define RP_IDS_PER_STEP 2048u               /* diff entries per step (one read txn) */
#define RP_COPIES_IN_FLIGHT 8u
#define RP_COPY_BYTES_IN_FLIGHT (64u << 20)
#define RP_QUEUE_MAX 8192u                  /* queued copies; the diff waits beyond */
#define RP_DELETES_IN_FLIGHT 32u
#define RP_REPORT_MIN_MS 1000u              /* between BLOB_REPORTs to one server */
#define RP_MAX_NODES 256u
#define RP_FIRST_PASS_MAX_MS 5000u          /* a new leader's first pass, at the latest */
#define RP_CMD_DEADLINE_MS 10000u
#define RP_LOG_EVERY_MS 60000u              /* rate limit for repeated warnings */

struct prepair;

/* A blob to copy from the members that hold it to one that lacks it. */
struct rp_copy {
    struct prepair *r;
    struct rp_copy *prev, *next;   /* in r's queue, then in r->running */
    uint64_t gen;                  /* r->gen when queued */
    uint64_t sync_gen;             /* the sync that wants it; 0 for a heal */
    bool heal;
    uint64_t blob_id;
    uint32_t partition;
    uint64_t epoch;
    uint32_t len;
    uint64_t csum;                 /* the index's */
    uint64_t dst;
    uint64_t src[RPLAN_REPLICAS];  /* 0: none */
    uint8_t *buf;                  /* owned until handed to the PUT */
    struct pblobs_get get;
    struct pblobs_call put;
};

struct rp_del {
    struct prepair *r;
    uint64_t gen;
    uint64_t sync_gen;             /* an orphan found by this sync; 0 otherwise */
    bool orphan;                   /* else a dead blob's bad copy */
    struct pblobs_del del;
};

struct rp_report {
    struct prepair *r;
    uint64_t gen;
    struct pblobs_call call;
};

struct rp_node {
    uint64_t id;
    uint64_t down_since_ms;        /* 0: up */
    uint64_t last_report_ms;
    bool report_now;               /* back from down: ask for its report at once */
    uint64_t report_every_ms;      /* while it has bad blobs: RP_REPORT_MIN_MS,
                                      doubled (up to the repair interval) by
                                      every failed heal, reset by a good one */
    bool report_busy;
};

/* What one sync of a partition found and did. */
struct rp_result {
    bool complete;                 /* every live blob seen is on all three */
    uint8_t listed;                /* members listed to the end */
    uint64_t wall_ms, took_ms;     /* when it finished, how long it took */
    uint32_t blobs, missing, copied, copy_errors, orphans_deleted;
    uint64_t bytes;                /* copied */
};

/* Per partition: the sync in progress and the last one finished. */
struct rp_part {
    uint32_t id;
    bool urgent;                   /* sync before the rest of the pass... */
    uint64_t urgent_after_ms;      /* ...but not before this (monotonic) */
    bool has_last;
    struct rp_result last;         /* for /v1/cluster */
    uint64_t gen;                  /* the current or last sync's generation */
    bool listing;                  /* its lists and diff are not done yet */
    bool failed;                   /* a list failed or the members changed */
    uint32_t pending;              /* its copies queued or in flight */
    uint64_t started_ms;
    struct rp_result cur;
    char first_err[128];           /* its first copy error */
};

enum sync_state {
    S_IDLE,                        /* no partition; slots may still await replies */
    S_LISTING,                     /* lists_pending pages outstanding */
    S_DIFF,                        /* diff[diff_pos..diff_n) to classify */
};

struct rp_slot {                   /* one member's list call */
    struct prepair *r;
    bool busy;                     /* a call is in flight on it */
    uint64_t sync_gen;
    int err;
    uint64_t *ids;                 /* RP_PAGE */
    uint32_t n;
    bool more;
    struct pblobs_call call;
};

struct rp_sync {
    enum sync_state state;
    uint64_t gen;                  /* 0 when idle */
    struct index_part part;        /* as read when the sync began */
    uint8_t listed;                /* members being listed */
    uint64_t cursor, bound;
    struct rp_slot slot[RPLAN_REPLICAS];
    unsigned lists_pending;
    struct rplan_id *diff;         /* RPLAN_REPLICAS * RP_PAGE */
    uint32_t diff_n, diff_pos;
    bool failed;                   /* a list failed or the members changed */
};

struct prepair {
    struct proxy *p;
    const char *tag;
    unsigned refs;                 /* the owner's + one per operation in flight */
    bool stopping;
    bool leader;                   /* as of the last tick */
    uint64_t gen;                  /* bumped when leadership is lost and at stop */
    uint64_t leader_since_ms;
    bool stepping, step_again;     /* step() is not re-entered */

    struct rp_node nodes[RP_MAX_NODES];
    unsigned n_nodes;
    struct rp_part *parts;         /* sorted by id */
    uint32_t n_parts, cap_parts;

    uint32_t *pass_ids;
    uint32_t pass_n, pass_pos;
    bool pass_running;
    bool report_all;               /* ask every server for its report */
    uint64_t pass_started_ms, next_pass_ms;
    uint64_t last_pass_wall_ms, last_pass_took_ms;
    uint64_t pass_copied, pass_orphans;

    struct rp_sync sync;
    uint64_t sync_seq;

    struct rp_copy *q_head, *q_tail;
    uint32_t q_len;
    struct rp_copy *running;
    uint32_t n_running;
    uint64_t running_bytes;
    unsigned deletes_in_flight;

    struct rplan_orphans orphans;

    struct pcmd rcmd;
    bool rcmd_busy;
    uint8_t rbuf[64];
    uint32_t r_part;
    uint64_t r_old, r_new;
    uint64_t warned_ms;
    uint64_t heal_warned_ms;
    uint32_t heal_fails_unlogged;

    uint64_t n_passes, n_synced, n_copied, n_bytes, n_healed, n_copy_err, n_orphans,
        n_dead_deleted, n_replaced;
    struct metric_counter *c_copied, *c_bytes, *c_healed, *c_copy_err, *c_orphans, *c_synced,
        *c_replaced, *c_passes;
};

/* Work started under generation GEN may go on. */
static inline bool prepair_current(const struct prepair *r, uint64_t gen)
{
    return !r->stopping && r->leader && r->gen == gen;
}

static inline bool prepair_is_member(const struct index_part *pt, uint64_t node)
{
    for (int i = 0; i < RPLAN_REPLICAS; i++)
        if (pt->nodes[i] == node) return true;
    return false;
}

/* ---- proxy_repair.c ---------------------------------------------------------- */

/* Drop one reference; the state is freed with the last. */
void prepair_unref(struct prepair *r);
/* A heal to DST finished with ERR: pace DST's reports (a heal that cannot
 * succeed, say every other copy is bad too, is not retried every second)
 * and log failures at most once a minute. */
void prepair_heal_done(struct prepair *r, uint64_t dst, int err, const char *what);

/* ---- proxy_resync.c ---------------------------------------------------------- */

/* Start queued copies and advance the anti-entropy sync, a bounded step;
 * safe to call from any completion (it is never re-entered). */
void presync_step(struct prepair *r);
/* The record of partition ID (added if ADD), or NULL.  Valid until the
 * next addition. */
struct rp_part *presync_part(struct prepair *r, uint32_t id, bool add);
/* Sync partition ID before the rest of the pass, from NOT_BEFORE_MS
 * (monotonic; 0: at once). */
void presync_mark_urgent(struct prepair *r, uint32_t id, uint64_t not_before_ms);
/* Every partition in the index: *OUT returned owned (free()).  0, or the
 * read error. */
int presync_read_parts(struct prepair *r, struct index_part **out, uint32_t *n);
/* Queue a copy of blob B of partition PT to member DST_SLOT, from the
 * members in PRESENT; a heal goes first and belongs to no sync.  false if
 * out of memory. */
bool presync_want_copy(struct prepair *r, const struct index_part *pt, const struct index_blob *b,
                       uint8_t present, int dst_slot, bool heal);
/* A copy of BLOB_ID to DST is queued or in flight. */
bool presync_copy_pending(struct prepair *r, uint64_t dst, uint64_t blob_id);
/* Forget every queued (not yet started) copy. */
void presync_drop_queue(struct prepair *r);
/* NODE lists BLOB_ID in PARTITION and the index does not know it there:
 * note it, and delete it once the orphan grace has passed. */
void presync_orphan_seen(struct prepair *r, uint64_t node, uint32_t partition, uint64_t blob_id,
                         uint64_t now);
/* Delete BLOB_ID of PARTITION on NODE (an orphan, or a dead blob's bad
 * copy).  false if RP_DELETES_IN_FLIGHT are running (try again later). */
bool presync_delete(struct prepair *r, uint64_t node, uint32_t partition, uint64_t blob_id,
                    bool orphan);

#endif
