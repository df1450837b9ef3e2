/* fsm_int.h: the write-side helpers fsm.c and fsm_life.c build commands
 * from (implemented in extmap.c, usage.c for the usage counters and
 * fsm_rec.c for records), and fsm_life.c's commands (fsm.c dispatches).  Everything here runs inside the one LMDB
 * write transaction of the entry being applied, on the writer thread.
 * Every function returns 0 or a hard error (-ENOSPC, -EIO, -BD_ECORRUPT)
 * that aborts the whole transaction. */
#ifndef BD_FSM_INT_H
#define BD_FSM_INT_H

#include "store/index/idxcmd.h"
#include "store/index/index_int.h"

struct fsm_txn {
    struct index *ix;
    MDB_txn *txn;
    MDB_cursor *cur;           /* on the extents table, for the whole txn */
    uint64_t index;            /* raft index of the entry being applied */
    struct index_meta meta;    /* allocators and applied index; written back at commit */
    uint32_t budget;           /* extent records this entry may still free or merge
                                  (IDXCMD_REAP_BUDGET, or a REAP's own) */
};

/* Make [OFF, OFF+LEN) of top layer L hold NX (its layer/off/len are set
 * here), or nothing if NX is NULL (only in a layer without parent):
 * extents it overlaps are trimmed, split or removed, blob refcounts and
 * live bytes follow (one reference per extent record), a new ZERO extent
 * absorbs adjacent ZERO extents, and L's usage follows (usage.c). */
int extmap_put(struct fsm_txn *t, const struct index_layer *l, uint64_t off, uint64_t len,
               const struct index_ext *nx);
/* REPOINT one range: the extents of R->layer in [R->off, +R->len) that
 * still name R->old_blob at R's offsets come to name NEW_BLOB (whose record
 * exists) at R->new_off; everything else is left alone.  *MOVED grows by
 * the bytes re-pointed.  Usage does not change (same bytes, same place). */
int extmap_repoint(struct fsm_txn *t, const struct idxcmd_repoint *r, uint64_t new_blob,
                   uint64_t *moved);
/* Add DREFS to a blob's refcount and DLIVE to its live bytes.  Reaching 0
 * notes it for extmap_dead_finish(). */
int extmap_blob_ref(struct fsm_txn *t, uint64_t blob_id, int drefs, int64_t dlive);
/* Note a blob that may end the entry unreferenced. */
int extmap_dead_note(struct fsm_txn *t, uint64_t blob_id);
/* End of an entry: every noted blob still at refcount 0 is marked DEAD and
 * queued in gc with the entry's index.  Empties the list. */
int extmap_dead_finish(struct fsm_txn *t);

int extmap_layer_get(struct fsm_txn *t, uint64_t id, struct index_layer *l);
int extmap_layer_put(struct fsm_txn *t, const struct index_layer *l);
/* A new top layer over PARENT (0: none) for VOL_ID; counts it as a child
 * of PARENT.  *ID gets its id. */
int extmap_layer_new(struct fsm_txn *t, uint64_t parent, uint64_t vol_id, uint64_t *id);
/* Call after dropping one reference of layer ID (is_top, a snapshot or a
 * child): frees it (its extents, then cascades to its parent) when nothing
 * references it, or merges it into its only child when a child is all that
 * is left.  At most t->budget extent records are touched (and t->budget is
 * spent); a layer not finished then is left in the reap table for REAP. */
int extmap_layer_release(struct fsm_txn *t, uint64_t id);
/* REAP: go on with the layers in the reap table, in id order, until
 * t->budget is spent or the table is empty.  *LEFT gets the records left. */
int extmap_reap(struct fsm_txn *t, uint64_t *left);

/* fsm_rec.c: the index is at its replicated size limit (INDEX_LIMIT):
 * then nothing that grows it is applied (ENOSPC).  0 or -code. */
int fsm_rec_full(struct fsm_txn *t, bool *full);
/* Layers from ID down to the bottom (ID included). */
int extmap_layer_depth(struct fsm_txn *t, uint64_t id, uint32_t *depth);

/* ---- fsm_rec.c: records, for fsm.c and fsm_life.c ----------------------- */
/* Account for W's blob (DATA): registered with refcount 0 if new (and
 * noted as possibly dead), *ST EINVAL (never allocated, contradicting
 * record, unknown partition) or ESTALE (dead) otherwise unchanged. */
int fsm_rec_blob(struct fsm_txn *t, const struct idxcmd_write *w, uint8_t *st);
/* A volume by name: 0, 1 with the refusal (IDXCMD_ST_ENOENT) in *ST, or -code. */
int fsm_rec_find_vol(struct fsm_txn *t, struct idxcmd_str name, struct index_vol *v,
                     uint8_t *st);
/* Write a volume record (and its id index) / a snapshot record. */
int fsm_rec_vol_put(struct fsm_txn *t, const struct index_vol *v);
int fsm_rec_snap_put(struct fsm_txn *t, const struct index_snap *s);

/* ---- fsm_qos.c: profiles and volumes' limits (issue 13) ----------------- */
/* CREATE_VOLUME C: set V's profile (the default one, or the one named;
 * refused ENOENT with res->id 1 if that is missing) and own limits.
 * Writes nothing. */
int fsm_qos_new_volume(struct fsm_txn *t, const struct idxcmd *c, struct index_vol *v,
                       struct idxcmd_result *res);
/* Volume V was written for the first time / is deleted: count it in / out
 * of the profile it names. */
int fsm_qos_vol_added(struct fsm_txn *t, const struct index_vol *v);
int fsm_qos_vol_removed(struct fsm_txn *t, const struct index_vol *v);
/* SET_QOS, QOS_PROFILE_PUT, QOS_PROFILE_DELETE. */
int fsm_qos_set(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res);
int fsm_qos_profile_put(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res);
int fsm_qos_profile_delete(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res);

/* ---- fsm_life.c: the data-lifecycle commands (their do_ in fsm.c) -------- */
int fsm_life_repoint(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res);
int fsm_life_rollback(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res);
int fsm_life_snapshot_group(struct fsm_txn *t, const struct idxcmd *c,
                            struct idxcmd_result *res);
int fsm_life_flatten_start(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res);
int fsm_life_flatten_fill(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res);
int fsm_life_flatten_done(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res);
int fsm_life_import_begin(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res);
int fsm_life_import_end(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res);
/* Can V take snapshot NAME: *ST EEXIST (taken) or ELIMIT (chain too deep),
 * unchanged if it can. */
int fsm_life_freeze_check(struct fsm_txn *t, const struct index_vol *v, struct idxcmd_str name,
                          uint8_t *st);
/* Take it (after fsm_life_freeze_check): V's top is frozen under NAME with
 * ORIGIN and FLAGS (index_snap), a new top stacked; *V is updated and
 * written; *LAYER gets the frozen layer. */
int fsm_life_freeze(struct fsm_txn *t, struct index_vol *v, struct idxcmd_str name,
                    uint64_t origin, uint8_t flags, uint64_t *layer);
/* *ST EBUSY if a layer of another volume (a clone not flattened) sits on
 * snapshot S's layer, unchanged otherwise. */
int fsm_life_snap_busy(struct fsm_txn *t, const struct index_snap *s, uint8_t *st);
/* Volume VOL_ID is being deleted: drop its flatten, if any. */
int fsm_life_forget(struct fsm_txn *t, uint64_t vol_id);

/* ---- usage.c: the usage counters (see its file comment) ------------------
 * Same error rules; a counter that would leave [0, 2^64) is -BD_ECORRUPT. */
int usage_get(struct fsm_txn *t, uint64_t layer, struct index_usage *u);
/* A new layer's record: empty, showing VIEW data bytes. */
int usage_new(struct fsm_txn *t, uint64_t layer, uint64_t view);
/* Delete LAYER's record and take its data out of the total. */
int usage_del(struct fsm_txn *t, uint64_t layer);
/* Add to LAYER's counters (DATA also to the total). */
int usage_add(struct fsm_txn *t, uint64_t layer, int64_t data, int64_t masked, int64_t view);
int usage_set_masked(struct fsm_txn *t, uint64_t layer, uint64_t masked);
/* Bytes of LAYER's extents inside [A, B) (DATA_ONLY: of its DATA ones). */
int usage_ext_bytes(struct fsm_txn *t, uint64_t layer, uint64_t a, uint64_t b, bool data_only,
                    uint64_t *out);
/* DATA bytes of layer LOWER's own extents under layer UPPER's extents,
 * inside [A, B). */
int usage_overlap(struct fsm_txn *t, uint64_t upper, uint64_t lower, uint64_t a, uint64_t b,
                  uint64_t *out);
/* Over the parts of [A, B) where L has no extent: *VIS the DATA bytes its
 * chain shows there, *PARENT_DATA those of its parent's own extents. */
int usage_gaps(struct fsm_txn *t, const struct index_layer *l, uint64_t a, uint64_t b,
               uint64_t *vis, uint64_t *parent_data);
/* The ids of L's children: *IDS returned owned (free()), *N of them. */
int usage_children(struct fsm_txn *t, const struct index_layer *l, uint64_t **ids, uint32_t *n);
/* Their parent gained DATA over [A, B): each of CHILDREN[N] now masks it
 * where it has extents. */
int usage_gained(struct fsm_txn *t, const uint64_t *children, uint32_t n, uint64_t a, uint64_t b);

#endif
