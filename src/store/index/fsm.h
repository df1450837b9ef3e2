/* fsm.h: the index state machine: apply committed Raft entries (encoded
 * index commands, idxcmd.h) to the index (index.h), and the struct
 * raft_fsm adapter for libraft 0.15.
 *
 * Contract (C16):
 *   - one entry = one LMDB write transaction that also records the entry's
 *     raft index as `applied`; a batch of entries = one transaction;
 *   - an entry whose index is <= the applied index is a no-op reported as
 *     IDXCMD_ST_SKIPPED (idempotent: replaying the log after a crash, or after a
 *     snapshot that was taken later than raft believes, changes nothing);
 *   - deterministic: the result and the new index depend only on the index
 *     and the command bytes (no clock, no randomness, no local config), so
 *     every replica reaches byte-identical tables;
 *   - a command that is invalid or refused (bad bytes, unknown volume,
 *     stale generation...) is still applied: it changes nothing but the
 *     applied index (and garbage accounting for fenced blobs) and reports
 *     why in the result;
 *   - a hard error (-ENOSPC map full, -EIO, -BD_ECORRUPT, -ENOMEM) aborts
 *     the transaction: nothing of the entry (or batch) is applied and the
 *     caller must fail stop; applying the same entries again later is safe.
 *
 * THREADS: writer thread only (see index.h).
 *
 * Implemented by fsm.c (apply and most commands), fsm_life.c (the
 * data-lifecycle commands: REPOINT, ROLLBACK, SNAPSHOT_GROUP, FLATTEN_*,
 * IMPORT_*), behind fsm_int.h the records (fsm_rec.c), the extent map
 * (extmap.c) and the usage counters (usage.c), and fsm_raft.c (the
 * libraft adapter below). */
#ifndef BD_FSM_H
#define BD_FSM_H

#include "store/index/idxcmd.h"
#include "runtime/reactor.h"
#include "store/index/index.h"
#include "store/fileio.h"

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Apply the entry RAFT_INDEX (> 0) holding CMD[LEN] (borrowed).  *RES gets
 * the result.  0, or a hard error (see above; *RES is then undefined). */
int fsm_apply(struct index *ix, uint64_t raft_index, const uint8_t *cmd, size_t len,
              struct idxcmd_result *res);

/* One entry of a batch.  res is filled by fsm_apply_batch. */
struct fsm_entry {
    uint64_t index;            /* strictly increasing within a batch */
    const uint8_t *cmd;        /* borrowed */
    size_t len;
    struct idxcmd_result *res;    /* caller storage */
};
/* Apply N entries in one write transaction, same semantics per entry as
 * fsm_apply.  0, -EINVAL (indexes not increasing; nothing applied), or a
 * hard error (nothing applied).  DECIDED, if not NULL, runs with ARG once
 * every entry's result is filled in, before the transaction commits: the
 * result of a committed raft entry is decided by the log alone (every
 * replica computes the same one), whatever then happens to this copy. */
int fsm_apply_batch(struct index *ix, struct fsm_entry *entries, uint32_t n,
                    void (*decided)(void *arg), void *arg);
/* The same, with more entries in the same transaction: after DECIDED,
 * MORE(ARG, &next) returns how many further entries to apply (at *next,
 * indexes above the last ones), or 0 to commit.  MORE may block: that is
 * how the index writer keeps one transaction (one fsync) open across
 * entries that arrive one at a time (fsm_raft.c).  DECIDED runs after
 * each group.  A failure anywhere aborts all of it: nothing applied. */
int fsm_apply_txn(struct index *ix, struct fsm_entry *entries, uint32_t n,
                  void (*decided)(void *arg),
                  uint32_t (*more)(void *arg, struct fsm_entry **next), void *arg);

/* ---- libraft adapter -------------------------------------------------------------
 *
 * libraft's apply() is not told the entry's index; it calls it for each
 * committed RAFT_COMMAND entry, in order, and sets raft->last_applied to
 * the entry's index right AFTER apply returns (barrier and configuration
 * entries advance last_applied without calling apply).  So the entry being
 * applied is raft->last_applied + 1, which is why the adapter must be bound
 * to its struct raft (fsm_raft_bind) before raft_start.
 *
 * apply (synchronous mode, the default): fsm_apply; *result points at a
 *   struct fsm_pending whose first member is the entry's struct
 *   idxcmd_result, complete, valid until the next apply (raft hands it to the
 *   raft_apply callback synchronously, right after apply).  A hard error
 *   returns RAFT_IOERR, which stops raft applying; the error is kept in
 *   `err` and the proxy must fail stop.
 * apply (asynchronous mode, fsm_raft_set_async): the entry is copied and
 *   queued to the index-writer thread, which applies everything queued in
 *   one LMDB transaction (one fsync for many entries, never on the reactor
 *   thread) and then completes each entry on the reactor: on_applied runs
 *   (the index now shows the entry to readers) and the entry's
 *   struct fsm_pending is marked done.  *result is that fsm_pending, not
 *   yet done: a raft_apply callback that needs the result calls
 *   fsm_pending_wait().  Replying to a client before the LMDB commit would
 *   be safe for durability (the raft log has the entry) but not for
 *   read-your-writes, so callers wait.  A hard error makes every later
 *   apply return RAFT_IOERR and completes the pending entries with -EIO.
 * snapshot (version 3, asynchronous): snapshot(), on the reactor, waits
 *   for the writer thread to commit everything queued and opens a read
 *   txn, which pins the index at exactly raft->last_applied (the entry
 *   raft takes the snapshot at); snapshot_async(), on raft's async_work
 *   thread, takes the index_dump from that txn into raft_malloc'd buffers
 *   and ends the txn; snapshot_finalize() frees the buffers (and ends the
 *   txn if the dump never ran).  Were the dump ever later than raft
 *   believes, a replica restoring it would replay entries it already has:
 *   no-ops by idempotence, so still correct.  An io without async_work
 *   (libraft's test fixture): clear fsm.snapshot_async, and snapshot()
 *   takes the dump itself.
 * restore: (after the same wait) index_load of the buffer (then raft owns
 *   nothing: the adapter frees it), unless the index has already applied at
 *   least the dump's index (a restart whose LMDB is ahead of raft's last
 *   snapshot): then the dump is an older prefix of what we hold and is
 *   dropped unread. */

struct fsm_applier; /* the index-writer thread (fsm_raft.c) */

/* The result of one applied entry, as raft's apply() hands it on. */
struct fsm_pending {
    struct idxcmd_result res;     /* first: valid once decided */
    uint64_t index;            /* the raft index of the entry */
    int err;                   /* 0, or -EIO after a hard error */
    bool decided;              /* res is final (the index may not hold it yet) */
    bool done;                 /* committed to this proxy's index (or failed) */
    void (*cb)(struct fsm_pending *p, void *arg); /* set by fsm_pending_wait* */
    void *arg;
    bool cb_when_decided;
    /* private (asynchronous mode) */
    uint8_t *cmd;
    size_t len;
    struct fsm_pending *next;
    struct fsm_pending *decided_next;
    bool dec_queued;           /* on the decided list already (under the writer's lock) */
    int werr;                  /* the writer's verdict, under its lock */
    struct fsm_applier *ap;    /* the writer it is queued on */
};

/* Run CB(P, ARG) once P is done: at once if it already is, else on the
 * reactor after the writer thread committed it (readers of this proxy's
 * index then see it).  One waiter per entry. */
void fsm_pending_wait(struct fsm_pending *p, void (*cb)(struct fsm_pending *p, void *arg),
                      void *arg);
/* The same, but as soon as P's result is decided, possibly before this
 * proxy's index has committed it (and paid its fsync): for answers that
 * need the result and not the visibility, such as a write's, whose reader
 * waits for the raft index anyway (C7).  If the index commit then fails,
 * the proxy stops applying; the entry stays committed in the raft log. */
void fsm_pending_wait_decided(struct fsm_pending *p,
                              void (*cb)(struct fsm_pending *p, void *arg), void *arg);

struct fsm_raft {
    struct raft_fsm fsm;       /* give &fsm to raft_init; fsm.data is this */
    struct index *ix;          /* keeps */
    struct raft *raft;         /* keeps; set by fsm_raft_bind */
    struct index_reader *rd;   /* for restore */
    struct index_reader *snap_rd; /* the read txn a snapshot pins (fr_snapshot) */
    bool snap_open;            /* snap_rd is in a txn: between snapshot and its dump */
    struct fsm_pending result; /* synchronous mode: the last apply's result */
    struct fsm_applier *ap;    /* asynchronous mode, else NULL */
    int err;                   /* first hard error, 0 if none */
    char spool_dir[4096];      /* snapshot dumps spool here (fsm_raft_set_spool); "" = heap */
    struct fileio *spool_fio;  /* borrowed; NULL = fileio_posix */
    /* Optional: called after every applied entry (also on no-ops) with its
     * index, once readers can see it, e.g. to release reads waiting for an
     * index (C7). */
    void (*on_applied)(void *arg, uint64_t raft_index, const struct idxcmd_result *res);
    void *arg;
};

/* Initialise FR over IX (kept).  0 or -ENOMEM. */
int fsm_raft_init(struct fsm_raft *fr, struct index *ix);
/* Bind to the raft instance whose entries FR applies (kept). */
void fsm_raft_bind(struct fsm_raft *fr, struct raft *raft);
/* Switch FR to asynchronous mode: applies run on an index-writer thread
 * whose completions come back on RX.  Call before raft_start.  0 or
 * -ENOMEM. */
int fsm_raft_set_async(struct fsm_raft *fr, struct reactor *rx);
/* Dump snapshots into a temporary file in DIR (the raft log directory,
 * made by then) through FIO (borrowed, NULL = fileio_posix), and hand
 * libraft one read-only mapping of it (store/raft/snapmem.h) instead of
 * heap chunks, so a large index's snapshot costs page cache, not RSS.
 * Without it (tests over libraft's fixture) the dump is heap chunks.
 * 0 or -ENAMETOOLONG. */
int fsm_raft_set_spool(struct fsm_raft *fr, const char *dir, struct fileio *fio);
/* Load the snapshot DATA (a dump, borrowed) into FR's index unless the
 * index has already applied as far: for rio's install hook (rio.h), on
 * rio's worker thread, so that a follower receiving the leader's snapshot
 * never loads a whole index on the reactor (restore then finds it done).
 * Waits for the writer thread to commit what it has first; the load is
 * then the only write (LMDB serialises writers in any case).  0, or the
 * error of index_load. */
int fsm_raft_install(void *arg, const struct raft_buffer *data);
/* Someone on the reactor waits to see entry INDEX in FR's index (a read
 * at a raft index, C7): the writer, which otherwise keeps a transaction
 * open a few milliseconds for more entries, commits as soon as it holds
 * INDEX.  fsm_pending_wait says so itself.  No-op in synchronous mode. */
void fsm_raft_hurry(struct fsm_raft *fr, uint64_t index);
/* The writer's transactions committed so far and the entries they held
 * (their ratio is the entries one LMDB fsync covered); 0 in synchronous
 * mode. */
void fsm_raft_counts(struct fsm_raft *fr, uint64_t *txns, uint64_t *entries);
/* Stop the writer thread after it committed everything queued (completions
 * are delivered through RX), then release FR. */
void fsm_raft_fini(struct fsm_raft *fr);

#endif
