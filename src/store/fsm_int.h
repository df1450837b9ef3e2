/* fsm_int.h: the write-side helpers fsm.c builds commands from
 * (implemented in extmap.c).  Everything here runs inside the one LMDB
 * write transaction of the entry being applied, on the writer thread.
 * Every function returns 0 or a hard error (-ENOSPC, -EIO, -BD_ECORRUPT)
 * that aborts the whole transaction. */
#ifndef BD_FSM_INT_H
#define BD_FSM_INT_H

#include "index_int.h"

struct fsm_txn {
    struct index *ix;
    MDB_txn *txn;
    MDB_cursor *cur;           /* on the extents table, for the whole txn */
    uint64_t index;            /* raft index of the entry being applied */
    struct index_meta meta;    /* allocators and applied index; written back at commit */
};

/* Make [OFF, OFF+LEN) of LAYER hold NX (its layer/off/len are set here),
 * or nothing if NX is NULL: extents it overlaps are trimmed, split or
 * removed, blob refcounts follow (one reference per extent record), and a
 * new ZERO extent absorbs adjacent ZERO extents. */
int ext_put(struct fsm_txn *t, uint64_t layer, uint64_t off, uint64_t len,
            const struct index_ext *nx);
/* Add DELTA (+1 / -1) to a blob's refcount.  Reaching 0 notes it for
 * dead_finish(). */
int blob_ref(struct fsm_txn *t, uint64_t blob_id, int delta);
/* Note a blob that may end the entry unreferenced. */
int dead_note(struct fsm_txn *t, uint64_t blob_id);
/* End of an entry: every noted blob still at refcount 0 is marked DEAD and
 * queued in gc with the entry's index.  Empties the list. */
int dead_finish(struct fsm_txn *t);

int layer_get(struct fsm_txn *t, uint64_t id, struct index_layer *l);
int layer_put(struct fsm_txn *t, const struct index_layer *l);
/* A new top layer over PARENT (0: none) for VOL_ID; counts it as a child
 * of PARENT.  *ID gets its id. */
int layer_new(struct fsm_txn *t, uint64_t parent, uint64_t vol_id, uint64_t *id);
/* Call after dropping one reference of layer ID (is_top, a snapshot or a
 * child): frees it (its extents, then cascades to its parent) when nothing
 * references it, or merges it into its only child when a child is all that
 * is left. */
int layer_release(struct fsm_txn *t, uint64_t id);
/* Layers from ID down to the bottom (ID included). */
int layer_depth(struct fsm_txn *t, uint64_t id, uint32_t *depth);

#endif
