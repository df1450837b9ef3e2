/* extmap.c: the write side of the extent map: extents, blob refcounts and
 * the layer lifecycle (see fsm_int.h).  Runs only inside apply's write txn.
 *
 * Extents.  Per layer, extents never overlap; a key is (layer, offset), so
 * a cursor walks a layer in offset order.  Writing [o, e) first clears the
 * range: an extent straddling o keeps its left part (same key, shorter) and,
 * if it also straddles e, gets a new right part (a second record of the
 * same blob: refcount + 1); an extent starting inside the range is deleted
 * (refcount - 1) or, if it straddles e, re-keyed at e with its blob offset
 * advanced (refcount unchanged).  Then the new extent goes in (+1).  Each
 * step re-seeks the cursor, so no cursor is trusted across a modification.
 *
 * Refcounts.  A blob's refcount is the number of extent records naming it,
 * over all layers.  A blob that drops to 0 is only NOTED during the entry
 * and judged at its end (dead_finish): an entry may drop and re-add the
 * same blob (a retried write, a split), and only a blob still unreferenced
 * when the entry ends is marked DEAD and queued in `gc`.  DEAD is final: a
 * later write naming that blob gets ESTALE (C9: a blob may be deleted from
 * its servers any time after it is queued, so it must never become data
 * again).
 *
 * Layers.  A layer is referenced by: the volume writing to it (is_top),
 * snapshots that froze it (n_snaps), and layers stacked on it (n_children;
 * child_xor is the XOR of their ids, so when exactly one child is left,
 * child_xor IS that child's id, with no child index to maintain).
 *   - No reference left: the layer's extents are deleted (refcounts drop),
 *     the record goes, and its parent loses a child (which may cascade).
 *   - Only one child left and no snapshot, not a top: nothing can read the
 *     layer except through that child, so it is MERGED into the child: each
 *     of its extents is copied into the child where the child has no extent
 *     of its own (the child's data, ZERO extents included, masks it), and
 *     the child takes over its parent.  This is how deleting a snapshot
 *     frees space (C12: the volume and its clones read the same bytes
 *     before and after), and it keeps chains short.
 *
 * TRIM in a layer that has a parent must hide the parent's data: a plain
 * delete would let the snapshot's bytes show through again (a resurrection,
 * C9).  So TRIM there writes a ZERO extent; only in a bottom layer is TRIM
 * a delete (a HOLE).  A ZERO extent absorbs adjacent ZERO extents of the
 * same layer, so repeated trims stay one record. */
#include "fsm_int.h"
#include "../bd.h"
#include "../util.h"

#include <stdlib.h>
#include <string.h>

static int ext_key_put(struct fsm_txn *t, const struct index_ext *e)
{
    uint8_t kb[16], vb[32];
    index_key_u64(kb, e->layer);
    index_key_u64(kb + 8, e->off);
    MDB_val k = {16, kb}, v = {index_enc_ext(vb, e), vb};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[IT_EXTENTS], &k, &v, 0));
}

static int ext_key_del(struct fsm_txn *t, uint64_t layer, uint64_t off)
{
    uint8_t kb[16];
    index_key_u64(kb, layer);
    index_key_u64(kb + 8, off);
    MDB_val k = {16, kb};
    int rc = index_mdb_err(mdb_del(t->txn, t->ix->dbi[IT_EXTENTS], &k, NULL));
    return rc == -ENOENT ? -BD_ECORRUPT : rc;
}

/* ---- blobs -------------------------------------------------------------------- */

int dead_note(struct fsm_txn *t, uint64_t blob_id)
{
    struct index *ix = t->ix;
    if (ix->n_dead == ix->cap_dead) {
        uint32_t cap = ix->cap_dead ? ix->cap_dead * 2 : 256;
        uint64_t *p = realloc(ix->dead, cap * sizeof(*p));
        if (!p) return -ENOMEM;
        ix->dead = p;
        ix->cap_dead = cap;
    }
    ix->dead[ix->n_dead++] = blob_id;
    return 0;
}

static int blob_put(struct fsm_txn *t, const struct index_blob *b)
{
    uint8_t kb[8], vb[32];
    index_key_u64(kb, b->id);
    MDB_val k = {8, kb}, v = {index_enc_blob(vb, b), vb};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[IT_BLOBS], &k, &v, 0));
}

int blob_ref(struct fsm_txn *t, uint64_t blob_id, int delta)
{
    struct index_blob b;
    int rc = index_txn_blob(t->ix, t->txn, blob_id, &b);
    if (rc) return rc == -ENOENT ? -BD_ECORRUPT : rc;
    if ((delta < 0 && b.refcount == 0) || (delta > 0 && b.refcount == UINT32_MAX) ||
        (b.flags & INDEX_BLOB_DEAD))
        return -BD_ECORRUPT;
    b.refcount = (uint32_t)((int64_t)b.refcount + delta);
    if (b.refcount == 0 && (rc = dead_note(t, blob_id))) return rc;
    return blob_put(t, &b);
}

int dead_finish(struct fsm_txn *t)
{
    struct index *ix = t->ix;
    int rc = 0;
    for (uint32_t i = 0; i < ix->n_dead && !rc; i++) {
        struct index_blob b;
        if ((rc = index_txn_blob(ix, t->txn, ix->dead[i], &b))) break;
        if (b.refcount || (b.flags & INDEX_BLOB_DEAD)) continue;
        b.flags |= INDEX_BLOB_DEAD;
        if ((rc = blob_put(t, &b))) break;
        uint8_t kb[8], vb[16];
        struct index_gc g = {.blob_id = b.id, .partition = b.partition, .dead_index = t->index};
        index_key_u64(kb, b.id);
        MDB_val k = {8, kb}, v = {index_enc_gc(vb, &g), vb};
        rc = index_mdb_err(mdb_put(t->txn, ix->dbi[IT_GC], &k, &v, 0));
    }
    ix->n_dead = 0;
    return rc == -ENOENT ? -BD_ECORRUPT : rc;
}

/* ---- extents ------------------------------------------------------------------- */

/* The part [off, off + len) of extent X, as a new record. */
static struct index_ext ext_slice(const struct index_ext *x, uint64_t off, uint64_t len)
{
    struct index_ext s = *x;
    s.off = off;
    s.len = len;
    if (!(x->flags & INDEX_EXT_ZERO)) s.blob_off = x->blob_off + (uint32_t)(off - x->off);
    return s;
}

static bool is_data(const struct index_ext *x)
{
    return !(x->flags & INDEX_EXT_ZERO);
}

/* Remove everything of LAYER in [o, e). */
static int ext_clear(struct fsm_txn *t, uint64_t layer, uint64_t o, uint64_t e)
{
    struct index_ext x;
    int rc;
    while ((rc = index_ext_find(t->ix, t->cur, layer, o, &x)) == 1 && x.off < e) {
        uint64_t xend = x.off + x.len;
        if (x.off < o) {
            if (xend > e) {
                struct index_ext right = ext_slice(&x, e, xend - e);
                if ((rc = ext_key_put(t, &right))) return rc;
                if (is_data(&x) && (rc = blob_ref(t, x.blob_id, +1))) return rc;
            }
            struct index_ext left = ext_slice(&x, x.off, o - x.off);
            if ((rc = ext_key_put(t, &left))) return rc;
            continue;
        }
        if ((rc = ext_key_del(t, layer, x.off))) return rc;
        if (xend > e) {
            struct index_ext right = ext_slice(&x, e, xend - e);
            if ((rc = ext_key_put(t, &right))) return rc;
        } else if (is_data(&x) && (rc = blob_ref(t, x.blob_id, -1))) {
            return rc;
        }
    }
    return rc < 0 ? rc : 0;
}

int ext_put(struct fsm_txn *t, uint64_t layer, uint64_t off, uint64_t len,
            const struct index_ext *nx)
{
    if (BD_NEVER(len == 0 || off + len < off)) return -BD_ECORRUPT;
    int rc = ext_clear(t, layer, off, off + len);
    if (rc || !nx) return rc;
    struct index_ext n = *nx;
    n.layer = layer;
    n.off = off;
    n.len = len;
    if (is_data(&n)) {
        if ((rc = blob_ref(t, n.blob_id, +1))) return rc;
        return ext_key_put(t, &n);
    }
    /* ZERO: absorb a ZERO neighbour ending at off and one starting at off+len. */
    struct index_ext x;
    if (off > 0 && (rc = index_ext_find(t->ix, t->cur, layer, off - 1, &x)) == 1 &&
        !is_data(&x) && x.off + x.len == off) {
        n.off = x.off;
        n.len += x.len;
    }
    if (rc < 0) return rc;
    if ((rc = index_ext_find(t->ix, t->cur, layer, off + len, &x)) == 1 && !is_data(&x) &&
        x.off == off + len) {
        if ((rc = ext_key_del(t, layer, x.off))) return rc;
        n.len += x.len;
    }
    if (rc < 0) return rc;
    return ext_key_put(t, &n);
}

/* ---- layers ---------------------------------------------------------------------- */

int layer_get(struct fsm_txn *t, uint64_t id, struct index_layer *l)
{
    int rc = index_txn_layer(t->ix, t->txn, id, l);
    return rc == -ENOENT ? -BD_ECORRUPT : rc;
}

int layer_put(struct fsm_txn *t, const struct index_layer *l)
{
    uint8_t kb[8], vb[40];
    index_key_u64(kb, l->id);
    MDB_val k = {8, kb}, v = {index_enc_layer(vb, l), vb};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[IT_LAYERS], &k, &v, 0));
}

static int layer_del(struct fsm_txn *t, uint64_t id)
{
    uint8_t kb[8];
    index_key_u64(kb, id);
    MDB_val k = {8, kb};
    return index_mdb_err(mdb_del(t->txn, t->ix->dbi[IT_LAYERS], &k, NULL));
}

int layer_new(struct fsm_txn *t, uint64_t parent, uint64_t vol_id, uint64_t *id)
{
    struct index_layer l = {.id = t->meta.next_layer++, .parent = parent, .vol_id = vol_id,
                            .is_top = 1};
    int rc;
    if (parent) {
        struct index_layer p;
        if ((rc = layer_get(t, parent, &p))) return rc;
        p.n_children++;
        p.child_xor ^= l.id;
        if ((rc = layer_put(t, &p))) return rc;
    }
    *id = l.id;
    return layer_put(t, &l);
}

int layer_depth(struct fsm_txn *t, uint64_t id, uint32_t *depth)
{
    *depth = 0;
    while (id) {
        struct index_layer l;
        int rc = layer_get(t, id, &l);
        if (rc) return rc;
        if (++*depth > INDEX_MAX_DEPTH) return -BD_ECORRUPT;
        id = l.parent;
    }
    return 0;
}

/* Delete every extent of LAYER. */
static int layer_clear(struct fsm_txn *t, uint64_t layer)
{
    struct index_ext x;
    int rc;
    while ((rc = index_ext_find(t->ix, t->cur, layer, 0, &x)) == 1) {
        if ((rc = ext_key_del(t, layer, x.off))) return rc;
        if (is_data(&x) && (rc = blob_ref(t, x.blob_id, -1))) return rc;
    }
    return rc;
}

/* Fold layer L into its only child C (see the file comment). */
static int layer_merge(struct fsm_txn *t, struct index_layer *l)
{
    uint64_t cid = l->child_xor;
    struct index_layer c;
    int rc = layer_get(t, cid, &c);
    if (rc) return rc;
    if (c.parent != l->id) return -BD_ECORRUPT;
    struct index_ext x, y;
    while ((rc = index_ext_find(t->ix, t->cur, l->id, 0, &x)) == 1) {
        uint64_t pos = x.off, end = x.off + x.len;
        while (pos < end) {
            int found = index_ext_find(t->ix, t->cur, cid, pos, &y);
            if (found < 0) return found;
            if (found && y.off <= pos) {
                pos = BD_MIN(y.off + y.len, end);
                continue;
            }
            uint64_t gap_end = found && y.off < end ? y.off : end;
            struct index_ext piece = ext_slice(&x, pos, gap_end - pos);
            piece.layer = cid;
            if ((rc = ext_key_put(t, &piece))) return rc;
            if (is_data(&x) && (rc = blob_ref(t, x.blob_id, +1))) return rc;
            pos = gap_end;
        }
        if ((rc = ext_key_del(t, l->id, x.off))) return rc;
        if (is_data(&x) && (rc = blob_ref(t, x.blob_id, -1))) return rc;
    }
    if (rc < 0) return rc;
    c.parent = l->parent;
    if ((rc = layer_put(t, &c))) return rc;
    if (l->parent) {
        struct index_layer p;
        if ((rc = layer_get(t, l->parent, &p))) return rc;
        p.child_xor ^= l->id ^ cid;
        if ((rc = layer_put(t, &p))) return rc;
    }
    return layer_del(t, l->id);
}

int layer_release(struct fsm_txn *t, uint64_t id)
{
    while (id) {
        struct index_layer l;
        int rc = layer_get(t, id, &l);
        if (rc) return rc;
        if (l.is_top || l.n_snaps || l.n_children > 1) return 0;
        if (l.n_children == 1) return layer_merge(t, &l);
        /* Unreferenced: free it and drop one child of its parent. */
        if ((rc = layer_clear(t, id)) || (rc = layer_del(t, id))) return rc;
        if (!l.parent) return 0;
        struct index_layer p;
        if ((rc = layer_get(t, l.parent, &p))) return rc;
        if (p.n_children == 0) return -BD_ECORRUPT;
        p.n_children--;
        p.child_xor ^= id;
        if ((rc = layer_put(t, &p))) return rc;
        id = p.id;
    }
    return 0;
}
