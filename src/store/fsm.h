/* fsm.h: the index state machine: apply committed Raft entries (encoded
 * index commands, idxcmd.h) to the index (index.h), and the struct
 * raft_fsm adapter for libraft 0.15.
 *
 * Contract (C16):
 *   - one entry = one LMDB write transaction that also records the entry's
 *     raft index as `applied`; a batch of entries = one transaction;
 *   - an entry whose index is <= the applied index is a no-op reported as
 *     IDX_SKIPPED (idempotent: replaying the log after a crash, or after a
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
 * THREADS: writer thread only (see index.h). */
#ifndef BD_FSM_H
#define BD_FSM_H

#include "idxcmd.h"
#include "index.h"

#include <raft.h>
#include <stddef.h>
#include <stdint.h>

/* Apply the entry RAFT_INDEX (> 0) holding CMD[LEN] (borrowed).  *RES gets
 * the result.  0, or a hard error (see above; *RES is then undefined). */
int fsm_apply(struct index *ix, uint64_t raft_index, const uint8_t *cmd, size_t len,
              struct idx_result *res);

/* One entry of a batch.  res is filled by fsm_apply_batch. */
struct fsm_entry {
    uint64_t index;            /* strictly increasing within a batch */
    const uint8_t *cmd;        /* borrowed */
    size_t len;
    struct idx_result *res;    /* caller storage */
};
/* Apply N entries in one write transaction, same semantics per entry as
 * fsm_apply.  0, -EINVAL (indexes not increasing; nothing applied), or a
 * hard error (nothing applied). */
int fsm_apply_batch(struct index *ix, struct fsm_entry *entries, uint32_t n);

/* ---- libraft adapter -------------------------------------------------------------
 *
 * libraft's apply() is not told the entry's index; it calls it for each
 * committed RAFT_COMMAND entry, in order, and sets raft->last_applied to
 * the entry's index right AFTER apply returns (barrier and configuration
 * entries advance last_applied without calling apply).  So the entry being
 * applied is raft->last_applied + 1, which is why the adapter must be bound
 * to its struct raft (fsm_raft_bind) before raft_start.
 *
 * apply: fsm_apply; *result points at the adapter's struct idx_result,
 *   valid until the next apply (raft hands it to the raft_apply callback
 *   synchronously, right after apply).  A hard error returns RAFT_IOERR,
 *   which stops raft applying; the error is kept in `err` and the proxy
 *   must fail stop.
 * snapshot (synchronous, version 1): an index_dump in one read txn, into
 *   raft_malloc'd buffers (raft frees them).  raft calls it from the
 *   applying thread right after applying up to raft->last_applied, so the
 *   dump is exactly the state at that index.  Were it ever taken later (an
 *   asynchronous snapshot, or a dedicated writer thread), the dump would
 *   be at an index >= the snapshot's, and a replica restoring it would
 *   replay entries it already has: no-ops by idempotence, so still correct.
 * restore: index_load of the buffer (then raft owns nothing: the adapter
 *   frees it), unless the index has already applied at least the dump's
 *   index (a restart whose LMDB is ahead of raft's last snapshot): then the
 *   dump is an older prefix of what we hold and is dropped unread. */
struct fsm_raft {
    struct raft_fsm fsm;       /* give &fsm to raft_init; fsm.data is this */
    struct index *ix;          /* keeps */
    struct raft *raft;         /* keeps; set by fsm_raft_bind */
    struct index_reader *rd;   /* for snapshots */
    struct idx_result result;  /* the last apply's result */
    int err;                   /* first hard error, 0 if none */
    /* Optional: called after every applied entry (also on no-ops) with its
     * index, e.g. to release reads waiting for an index (C7). */
    void (*on_applied)(void *arg, uint64_t raft_index, const struct idx_result *res);
    void *arg;
};

/* Initialise FR over IX (kept).  0 or -ENOMEM. */
int fsm_raft_init(struct fsm_raft *fr, struct index *ix);
/* Bind to the raft instance whose entries FR applies (kept). */
void fsm_raft_bind(struct fsm_raft *fr, struct raft *raft);
void fsm_raft_fini(struct fsm_raft *fr);

#endif
