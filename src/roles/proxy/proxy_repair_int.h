/* proxy_repair_int.h: the repair state (struct proxy_repair) shared by
 * proxy_repair.c (leadership, heal, replacement, status) and the engine
 * under it, proxy_resync.c (the state's lifetime, the copy queue, deletes,
 * anti-entropy passes).  Private to those two files.  Names declared here
 * start proxy_repair_ (the state's name) or proxy_resync_ (the engine's
 * functions, defined in proxy_resync.c); constants PROXY_REPAIR_.
 *
 * proxy_repair.c calls down into proxy_resync.c, never the reverse: the
 * engine reports a finished heal through on_heal_done, which proxy_repair.c
 * sets.  Everything runs on the reactor thread.  Index reads happen inside
 * one callback (proxy_index.h), never across an asynchronous step. */
#ifndef BD_PROXY_REPAIR_INT_H
#define BD_PROXY_REPAIR_INT_H

#include "roles/proxy/proxy_blobs.h"
#include "roles/proxy/proxy_cmd.h"
#include "roles/proxy/proxy_int.h"
#include "roles/proxy/rplan.h"

#define PROXY_REPAIR_PAGE 1024u                   /* ids per BLOB_LIST page */
#define PROXY_REPAIR_IDS_PER_STEP 2048u           /* diff entries per step (one read txn) */
#define PROXY_REPAIR_COPIES_IN_FLIGHT 8u
#define PROXY_REPAIR_COPY_BYTES_IN_FLIGHT (64u << 20)
#define PROXY_REPAIR_QUEUE_MAX 8192u              /* queued copies; the diff waits beyond */
#define PROXY_REPAIR_DELETES_IN_FLIGHT 32u
#define PROXY_REPAIR_REPORT_MIN_MS 1000u          /* between BLOB_REPORTs to one server */
#define PROXY_REPAIR_FIRST_PASS_MAX_MS 5000u      /* a new leader's first pass, at the latest */
#define PROXY_REPAIR_CMD_DEADLINE_MS 10000u
#define PROXY_REPAIR_LOG_EVERY_MS 60000u          /* rate limit for repeated warnings */

struct proxy_repair;

struct proxy_repair_copy; /* a queued or running copy (proxy_resync.c) */

struct proxy_repair_node {
    uint64_t id;
    uint64_t down_since_ms;        /* 0: up */
    uint64_t last_report_ms;
    bool report_now;               /* back from down: ask for its report at once */
    uint64_t report_every_ms;      /* while it has bad blobs: PROXY_REPAIR_REPORT_MIN_MS,
                                      doubled (up to the repair interval) by
                                      every failed heal, reset by a good one */
    bool report_busy;
};

/* What one sync of a partition found and did. */
struct proxy_repair_result {
    bool complete;                 /* every live blob seen is on all three */
    uint8_t listed;                /* members listed to the end */
    uint64_t wall_ms, took_ms;     /* when it finished, how long it took */
    uint32_t blobs, missing, copied, copy_errors, orphans_deleted;
    uint64_t bytes;                /* copied */
};

/* Per partition: the sync in progress and the last one finished. */
struct proxy_repair_part {
    uint32_t id;
    bool urgent;                   /* sync before the rest of the pass... */
    uint64_t urgent_after_ms;      /* ...but not before this (monotonic) */
    bool has_last;
    struct proxy_repair_result last;         /* for /v1/cluster */
    uint64_t gen;                  /* the current or last sync's generation */
    bool listing;                  /* its lists and diff are not done yet */
    bool failed;                   /* a list failed or the members changed */
    uint32_t pending;              /* its copies queued or in flight */
    uint64_t started_ms;
    struct proxy_repair_result cur;
    char first_err[128];           /* its first copy error */
};

enum proxy_repair_sync_state {
    PROXY_REPAIR_SYNC_IDLE,                        /* no partition; slots may still await replies */
    PROXY_REPAIR_SYNC_LISTING,                     /* lists_pending pages outstanding */
    PROXY_REPAIR_SYNC_DIFF,                        /* diff[diff_pos..diff_n) to classify */
};

struct proxy_repair_slot {                   /* one member's list call */
                          struct proxy_repair *r;
    bool busy;                     /* a call is in flight on it */
    uint64_t sync_gen;
    int err;
    uint64_t *ids;                 /* PROXY_REPAIR_PAGE */
    uint32_t n;
    bool more;
    struct proxy_blobs_call call;
};

struct proxy_repair_sync {
    enum proxy_repair_sync_state state;
    uint64_t gen;                  /* 0 when idle */
    struct index_part part;        /* as read when the sync began */
    uint8_t listed;                /* members being listed */
    uint64_t cursor, bound;
    struct proxy_repair_slot slot[RPLAN_REPLICAS];
    unsigned lists_pending;
    struct rplan_id *diff;         /* RPLAN_REPLICAS * PROXY_REPAIR_PAGE */
    uint32_t diff_n, diff_pos;
    bool failed;                   /* a list failed or the members changed */
};

struct proxy_repair {
    struct proxy *p;
    const char *tag;
    unsigned refs;                 /* the owner's + one per operation in flight */
    /* Set by proxy_repair.c; the engine calls it when a heal to DST ends
     * with ERR (0: healed), WHAT naming the blob (NULL on success). */
    void (*on_heal_done)(struct proxy_repair *r, uint64_t dst, int err, const char *what);
    bool stopping;
    bool leader;                   /* as of the last tick */
    uint64_t gen;                  /* bumped when leadership is lost and at stop */
    uint64_t leader_since_ms;
    bool stepping, step_again;     /* step() is not re-entered */

    struct proxy_repair_node *nodes;         /* registered, not retired; ascending by id */
    unsigned n_nodes;
    struct proxy_repair_part *parts;         /* sorted by id */
    uint32_t n_parts, cap_parts;

    uint32_t *pass_ids;
    uint32_t pass_n, pass_pos;
    bool pass_running;
    bool report_all;               /* ask every server for its report */
    uint64_t pass_started_ms, next_pass_ms;
    uint64_t last_pass_wall_ms, last_pass_took_ms;
    uint64_t pass_copied, pass_orphans;

    struct proxy_repair_sync sync;
    uint64_t sync_seq;

    struct proxy_repair_copy *q_head, *q_tail;
    uint32_t q_len;
    struct proxy_repair_copy *running;
    uint32_t n_running;
    uint64_t running_bytes;
    unsigned deletes_in_flight;

    struct rplan_orphans orphans;

    uint64_t warned_ms;
    uint64_t heal_warned_ms;
    uint32_t heal_fails_unlogged;

    uint64_t n_passes, n_synced, n_copied, n_bytes, n_healed, n_copy_err, n_orphans,
        n_dead_deleted;
    struct metrics_counter *c_copied, *c_bytes, *c_healed, *c_copy_err, *c_orphans, *c_synced,
        *c_passes;
};

/* Work started under generation GEN may go on. */
static inline bool proxy_repair_current(const struct proxy_repair *r, uint64_t gen)
{
    return !r->stopping && r->leader && r->gen == gen;
}

/* ---- proxy_resync.c ---------------------------------------------------------- */

/* The repair state of P with the engine's buffers, one reference (the
 * owner's) held; returned owned (drop it with proxy_resync_unref).  NULL
 * if out of memory. */
struct proxy_repair *proxy_resync_new(struct proxy *p);
/* Drop one reference; the state and everything the engine holds are freed
 * with the last. */
void proxy_resync_unref(struct proxy_repair *r);
/* Leadership lost: forget the queue, the sync in progress, the pass, the
 * partitions' records and the orphan ledger (a new leader starts over
 * from the index).  Replies still owed finish and are ignored. */
void proxy_resync_reset(struct proxy_repair *r);

/* Start queued copies and advance the anti-entropy sync, a bounded step;
 * safe to call from any completion (it is never re-entered). */
void proxy_resync_step(struct proxy_repair *r);
/* The record of partition ID (added if ADD), or NULL.  Valid until the
 * next addition. */
struct proxy_repair_part *proxy_resync_part(struct proxy_repair *r, uint32_t id, bool add);
/* Sync partition ID before the rest of the pass, from NOT_BEFORE_MS
 * (monotonic; 0: at once). */
void proxy_resync_mark_urgent(struct proxy_repair *r, uint32_t id, uint64_t not_before_ms);
/* Queue a copy of blob B of partition PT to member DST_SLOT, from the
 * members in PRESENT; a heal goes first and belongs to no sync.  false if
 * out of memory. */
bool proxy_resync_want_copy(struct proxy_repair *r, const struct index_part *pt,
                            const struct index_blob *b, uint8_t present, int dst_slot, bool heal);
/* A copy of BLOB_ID to DST is queued or in flight. */
bool proxy_resync_copy_pending(struct proxy_repair *r, uint64_t dst, uint64_t blob_id);
/* Forget every queued (not yet started) copy. */
void proxy_resync_drop_queue(struct proxy_repair *r);
/* NODE lists BLOB_ID in PARTITION and the index does not know it there:
 * note it, and delete it once the orphan grace has passed. */
void proxy_resync_orphan_seen(struct proxy_repair *r, uint64_t node, uint32_t partition,
                              uint64_t blob_id, uint64_t now);
/* Delete BLOB_ID of PARTITION on NODE (an orphan, or a dead blob's bad
 * copy).  false if PROXY_REPAIR_DELETES_IN_FLIGHT are running (try again later). */
bool proxy_resync_delete(struct proxy_repair *r, uint64_t node, uint32_t partition,
                         uint64_t blob_id, bool orphan);

#endif
