/* index_walk.c: read-side walks for the data lifecycle (index.h): the
 * extent scan the blob rewrite resumes from a key, a clone's parent, the
 * clones that keep a snapshot, and the changed ranges between two views.
 *
 * Changed ranges (incremental backup).  A layer's extents are exactly
 * what was written (data, zeroes, trims) between its parent being frozen
 * and itself being frozen, and merges and re-points keep every view's
 * bytes.  So what differs between the views of layers FROM and TO lies
 * inside the extents of the layers above their lowest common layer, on
 * both sides (FROM need not be below TO: after a rollback it is not).
 * The union is a superset (a block written back to its old bytes counts
 * as changed), never missing a change: the guarantee an incremental
 * backup needs.
 *
 * Each walk runs inside the caller's read txn and returns copies; none
 * holds anything across calls, so a caller pages through the index with
 * many short txns and never pins old pages for long (index.h THREADS). */
#include "store/index/index.h"
#include "store/index/index_int.h"
#include "base/bd.h"

#include <string.h>

#define READER_CHECK(rd)                                                                   \
    do {                                                                                   \
        if (BD_NEVER(!(rd)->active)) return -EINVAL;                                       \
    } while (0)

int index_ext_list(struct index_reader *rd, uint64_t layer, uint64_t off,
                   struct index_extent *out, uint32_t max, uint32_t *n)
{
    READER_CHECK(rd);
    *n = 0;
    MDB_cursor *cur;
    int rc = index_mdb_err(mdb_cursor_open(rd->txn, rd->ix->dbi[INDEX_T_EXTENTS], &cur));
    if (rc) return rc;
    uint8_t kb[INDEX_EXT_KEY_LEN];
    index_key_ext(kb, layer, off);
    MDB_val k = {sizeof(kb), kb}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (mrc == 0 && *n < max) {
        struct index_ext e;
        if ((rc = index_dec_ext(&k, &v, &e))) break;
        out[(*n)++] = (struct index_extent){
            .layer = e.layer, .off = e.off, .len = e.len,
            .kind = (e.flags & INDEX_EXT_ZERO) ? INDEX_ZERO : INDEX_DATA,
            .blob_id = e.blob_id, .blob_off = e.blob_off};
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc) return rc;
    return mrc == 0 || mrc == MDB_NOTFOUND ? 0 : index_mdb_err(mrc);
}

int index_snap_get(struct index_reader *rd, uint64_t vol_id, const char *name, size_t len,
                   struct index_snap *out)
{
    READER_CHECK(rd);
    return index_txn_snap(rd->ix, rd->txn, vol_id, name, len, out);
}

int index_vol_parent(struct index_reader *rd, const struct index_vol *v, uint64_t *bottom,
                     uint64_t *parent, uint64_t *parent_vol)
{
    READER_CHECK(rd);
    *bottom = *parent = *parent_vol = 0;
    struct index_layer l;
    int rc = index_txn_layer(rd->ix, rd->txn, v->top_layer, &l);
    for (uint32_t d = 0; rc == 0; d++) {
        *bottom = l.id;
        if (!l.parent) return 0;
        struct index_layer p;
        if (d >= INDEX_MAX_DEPTH) return -BD_ECORRUPT;
        if ((rc = index_txn_layer(rd->ix, rd->txn, l.parent, &p))) break;
        if (p.vol_id != v->id) {
            *parent = p.id;
            *parent_vol = p.vol_id;
            return 0;
        }
        l = p;
    }
    return rc == -ENOENT ? -BD_ECORRUPT : rc;
}

int index_flatten_list(struct index_reader *rd, uint64_t after, struct index_flatten *out,
                       uint32_t max, uint32_t *n)
{
    READER_CHECK(rd);
    *n = 0;
    MDB_cursor *cur;
    int rc = index_mdb_err(mdb_cursor_open(rd->txn, rd->ix->dbi[INDEX_T_FLATTEN], &cur));
    if (rc) return rc;
    uint8_t kb[INDEX_ID_KEY_LEN];
    index_key_u64(kb, after + 1);
    MDB_val k = {sizeof(kb), kb}, v;
    int mrc = after == UINT64_MAX ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (mrc == 0 && *n < max) {
        if (k.mv_size != INDEX_ID_KEY_LEN) {
            rc = -BD_ECORRUPT;
            break;
        }
        if ((rc = index_dec_flatten(index_key_get_u64(k.mv_data), &v, &out[*n]))) break;
        (*n)++;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc) return rc;
    return mrc == 0 || mrc == MDB_NOTFOUND ? 0 : index_mdb_err(mrc);
}

int index_snap_by_layer(struct index_reader *rd, uint64_t vol_id, uint64_t layer,
                        struct index_snap *out)
{
    READER_CHECK(rd);
    struct index_snap page[64];
    char after[INDEX_NAME_MAX + 1] = "";
    uint32_t n;
    int rc;
    do {
        if ((rc = index_snap_list(rd, vol_id, after, strlen(after), page, 64, &n))) return rc;
        for (uint32_t i = 0; i < n; i++)
            if (page[i].layer == layer) {
                *out = page[i];
                return 0;
            }
        if (n) memcpy(after, page[n - 1].name, sizeof(after));
    } while (n == 64);
    return -ENOENT;
}

int index_snap_dependants(struct index_reader *rd, const struct index_snap *s,
                          char (*out)[INDEX_NAME_MAX + 1], uint32_t max, uint32_t *n)
{
    READER_CHECK(rd);
    *n = 0;
    struct index_vol page[32];
    char after[INDEX_NAME_MAX + 1] = "";
    uint32_t got;
    int rc;
    do {
        if ((rc = index_vol_list(rd, after, strlen(after), page, 32, &got))) return rc;
        for (uint32_t i = 0; i < got; i++) {
            if (page[i].id == s->vol_id) continue;
            /* Walk its chain; the layer just above S's decides. */
            uint64_t above = 0;
            struct index_layer l;
            rc = index_txn_layer(rd->ix, rd->txn, page[i].top_layer, &l);
            for (uint32_t d = 0; rc == 0 && d < INDEX_MAX_DEPTH; d++) {
                if (l.id == s->layer) break;
                above = l.id;
                if (!l.parent) break;
                rc = index_txn_layer(rd->ix, rd->txn, l.parent, &l);
            }
            if (rc) return rc == -ENOENT ? -BD_ECORRUPT : rc;
            if (l.id != s->layer || !above) continue;
            struct index_layer a;
            if ((rc = index_txn_layer(rd->ix, rd->txn, above, &a)))
                return rc == -ENOENT ? -BD_ECORRUPT : rc;
            if (a.vol_id == s->vol_id) continue;
            if (*n < max) memcpy(out[*n], page[i].name, INDEX_NAME_MAX + 1);
            (*n)++;
        }
        if (got) memcpy(after, page[got - 1].name, sizeof(after));
    } while (got == 32);
    return 0;
}

/* The chain from layer TOP down: ids into OUT (at most INDEX_MAX_DEPTH). */
static int chain(struct index_reader *rd, uint64_t top, uint64_t *out, uint32_t *n)
{
    *n = 0;
    for (uint64_t id = top; id;) {
        struct index_layer l;
        if (*n == INDEX_MAX_DEPTH) return -BD_ECORRUPT;
        int rc = index_txn_layer(rd->ix, rd->txn, id, &l);
        if (rc) return rc == -ENOENT ? -BD_ECORRUPT : rc;
        out[(*n)++] = id;
        id = l.parent;
    }
    return 0;
}

int index_diff_layers(struct index_reader *rd, uint64_t from, uint64_t to, uint64_t *out,
                      uint32_t *n)
{
    READER_CHECK(rd);
    uint64_t a[INDEX_MAX_DEPTH], b[INDEX_MAX_DEPTH];
    uint32_t na = 0, nb = 0;
    int rc = chain(rd, to, a, &na);
    if (rc || (from && (rc = chain(rd, from, b, &nb)))) return rc;
    /* The lowest common layer is where the two chains' tails meet. */
    uint32_t keep_a = na, keep_b = nb;
    while (keep_a && keep_b && a[keep_a - 1] == b[keep_b - 1]) {
        keep_a--;
        keep_b--;
    }
    *n = 0;
    for (uint32_t i = 0; i < keep_a; i++) out[(*n)++] = a[i];
    for (uint32_t i = 0; i < keep_b; i++) out[(*n)++] = b[i];
    return 0;
}

int index_changed(struct index_reader *rd, const uint64_t *layers, uint32_t n, uint64_t off,
                  uint64_t end, struct index_range *out, uint32_t max, uint32_t *got,
                  uint64_t *next)
{
    READER_CHECK(rd);
    *got = 0;
    *next = end;
    MDB_cursor *cur;
    int rc = index_mdb_err(mdb_cursor_open(rd->txn, rd->ix->dbi[INDEX_T_EXTENTS], &cur));
    if (rc) return rc;
    uint64_t pos = off;
    while (pos < end) {
        /* The first extent of any layer reaching past POS. */
        uint64_t s = end;
        for (uint32_t i = 0; i < n; i++) {
            struct index_ext x;
            if ((rc = index_ext_find(rd->ix, cur, layers[i], pos, &x)) < 0) goto out;
            if (rc == 1 && x.off < s) s = BD_MAX(x.off, pos);
        }
        rc = 0;
        if (s >= end) break;
        if (*got == max) {
            *next = s;
            break;
        }
        /* Grow it while any layer has an extent containing or starting at
         * its end. */
        uint64_t e = s;
        for (bool grew = true; grew && e < end;) {
            grew = false;
            for (uint32_t i = 0; i < n; i++) {
                struct index_ext x;
                if ((rc = index_ext_find(rd->ix, cur, layers[i], e, &x)) < 0) goto out;
                if (rc == 1 && x.off <= e && x.off + x.len > e) {
                    e = BD_MIN(x.off + x.len, end);
                    grew = true;
                }
            }
            rc = 0;
        }
        out[(*got)++] = (struct index_range){s, e - s};
        pos = e;
    }
out:
    mdb_cursor_close(cur);
    return rc < 0 ? rc : 0;
}
