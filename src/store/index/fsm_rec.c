/* fsm_rec.c: the records apply writes for fsm.c and fsm_life.c alike:
 * volumes (with their id index), snapshots, and a written blob's first
 * reference; and whether the index is at its size limit (declared in
 * fsm_int.h).  Below both, so the two apply files
 * never call each other's helpers. */
#include "store/index/fsm_int.h"
#include "base/bd.h"

#include <string.h>

int fsm_rec_vol_put(struct fsm_txn *t, const struct index_vol *v)
{
    uint8_t vb[INDEX_VAL_MAX], kb[INDEX_ID_KEY_LEN];
    size_t nlen = strlen(v->name);
    MDB_val k = {nlen, (void *)v->name}, d = {index_enc_vol(vb, v), vb};
    int rc = index_mdb_err(mdb_put(t->txn, t->ix->dbi[INDEX_T_VOLUMES], &k, &d, 0));
    if (rc) return rc;
    index_key_u64(kb, v->id);
    MDB_val ki = {sizeof(kb), kb}, di = {nlen, (void *)v->name};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[INDEX_T_VOLIDS], &ki, &di, 0));
}

int fsm_rec_snap_put(struct fsm_txn *t, const struct index_snap *s)
{
    uint8_t kb[INDEX_ID_KEY_LEN + INDEX_NAME_MAX], vb[INDEX_VAL_MAX];
    MDB_val k = {index_snap_key(kb, s->vol_id, s->name, strlen(s->name)), kb};
    MDB_val d = {index_enc_snap(vb, s), vb};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[INDEX_T_SNAPSHOTS], &k, &d, 0));
}

int fsm_rec_find_vol(struct fsm_txn *t, struct idxcmd_str name, struct index_vol *v, uint8_t *st)
{
    int rc = index_txn_vol_by_name(t->ix, t->txn, name.ptr, name.len, v);
    if (rc == -ENOENT) {
        *st = IDXCMD_ST_ENOENT;
        return 1;
    }
    return rc;
}

int fsm_rec_blob(struct fsm_txn *t, const struct idxcmd_write *w, uint8_t *st)
{
    if (w->blob_id >= t->meta.next_blob) {
        *st = IDXCMD_ST_EINVAL;
        return 0;
    }
    struct index_blob b;
    int rc = index_txn_blob(t->ix, t->txn, w->blob_id, &b);
    if (rc == 0) {
        if (b.flags & INDEX_BLOB_DEAD) *st = IDXCMD_ST_ESTALE;
        else if (b.partition != w->partition || b.len != w->blob_len || b.csum != w->blob_csum)
            *st = IDXCMD_ST_EINVAL;
        return 0;
    }
    if (rc != -ENOENT) return rc;
    struct index_part p;
    if ((rc = index_txn_part(t->ix, t->txn, w->partition, &p)) == -ENOENT) {
        *st = IDXCMD_ST_EINVAL;
        return 0;
    }
    if (rc) return rc;
    b = (struct index_blob){.id = w->blob_id, .partition = w->partition, .len = w->blob_len,
                            .csum = w->blob_csum};
    uint8_t kb[INDEX_ID_KEY_LEN], vb[INDEX_VAL_MAX];
    index_key_u64(kb, b.id);
    MDB_val k = {sizeof(kb), kb}, v = {index_enc_blob(vb, &b), vb};
    /* Blob ids grow over time, so a new blob usually goes at the end of the
     * table: MDB_APPEND then fills pages instead of splitting them in
     * half (index bytes per extent).  Any other id takes the normal path. */
    int mrc = mdb_put(t->txn, t->ix->dbi[INDEX_T_BLOBS], &k, &v, MDB_APPEND);
    if (mrc == MDB_KEYEXIST) mrc = mdb_put(t->txn, t->ix->dbi[INDEX_T_BLOBS], &k, &v, 0);
    if ((rc = index_mdb_err(mrc))) return rc;
    t->meta.blob_bytes += b.len;
    return extmap_dead_note(t, b.id);
}

/* The index is at its replicated size limit (INDEX_LIMIT): table pages,
 * which every replica counts alike, at or above limit_pages.  Then nothing
 * that grows the index is applied (ENOSPC); deletes, trims and the
 * cluster's own bookkeeping still are, so space can be freed. */
int fsm_rec_full(struct fsm_txn *t, bool *full)
{
    *full = false;
    if (!t->meta.limit_pages) return 0;
    uint64_t pages;
    int rc = index_txn_pages(t->ix, t->txn, &pages);
    if (rc == 0) *full = pages >= t->meta.limit_pages;
    return rc;
}
