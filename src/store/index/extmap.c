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
 * and judged at its end (extmap_dead_finish): an entry may drop and re-add the
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
 * Bounded work.  Freeing or merging a layer touches every extent it has,
 * which for a big volume is millions of records: far too much for one
 * Raft entry (every replica would stall applying it, and the entry's
 * transaction would dirty a large share of the map at once).  So each
 * entry has a budget of extent records (t->budget, IDXCMD_REAP_BUDGET),
 * and a layer left unfinished when it runs out goes into the `reap` table;
 * the leader then proposes REAP entries (each with its own budget) until
 * the table is empty.  Every step leaves a consistent index: a layer being
 * freed is unreferenced (nothing reads it), and a layer being merged has
 * its extents either still in it or already in its child.  A layer whose
 * only child is itself being freed waits: merging into it would only be
 * freed again, and the child's release frees the parent when it is done.
 *
 * TRIM in a layer that has a parent must hide the parent's data: a plain
 * delete would let the snapshot's bytes show through again (a resurrection,
 * C9).  So TRIM there writes a ZERO extent; only in a bottom layer is TRIM
 * a delete (a HOLE).  A ZERO extent absorbs adjacent ZERO extents of the
 * same layer, so repeated trims stay one record. */
#include "store/index/fsm_int.h"
#include "base/bd.h"
#include "base/bytes.h"

#include <stdlib.h>
#include <string.h>

static int ext_key_put(struct fsm_txn *t, const struct index_ext *e)
{
    uint8_t kb[INDEX_EXT_KEY_LEN], vb[INDEX_VAL_MAX];
    index_key_ext(kb, e->layer, e->off);
    MDB_val k = {sizeof(kb), kb}, v = {index_enc_ext(vb, e), vb};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[INDEX_T_EXTENTS], &k, &v, 0));
}

static int ext_key_del(struct fsm_txn *t, uint64_t layer, uint64_t off)
{
    uint8_t kb[INDEX_EXT_KEY_LEN];
    index_key_ext(kb, layer, off);
    MDB_val k = {sizeof(kb), kb};
    int rc = index_mdb_err(mdb_del(t->txn, t->ix->dbi[INDEX_T_EXTENTS], &k, NULL));
    return rc == -ENOENT ? -BD_ECORRUPT : rc;
}

/* ---- blobs -------------------------------------------------------------------- */

int extmap_dead_note(struct fsm_txn *t, uint64_t blob_id)
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
    uint8_t kb[INDEX_ID_KEY_LEN], vb[INDEX_VAL_MAX];
    index_key_u64(kb, b->id);
    MDB_val k = {sizeof(kb), kb}, v = {index_enc_blob(vb, b), vb};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[INDEX_T_BLOBS], &k, &v, 0));
}

int extmap_blob_ref(struct fsm_txn *t, uint64_t blob_id, int drefs, int64_t dlive)
{
    struct index_blob b;
    int rc = index_txn_blob(t->ix, t->txn, blob_id, &b);
    if (rc) return rc == -ENOENT ? -BD_ECORRUPT : rc;
    if ((drefs < 0 && b.refcount < (uint32_t)-drefs) ||
        (drefs > 0 && b.refcount > UINT32_MAX - (uint32_t)drefs) ||
        (dlive < 0 && b.live < (uint64_t)-dlive) || (b.flags & INDEX_BLOB_DEAD))
        return -BD_ECORRUPT;
    b.refcount = (uint32_t)((int64_t)b.refcount + drefs);
    b.live += (uint64_t)dlive;
    /* Every record addresses at least one byte. */
    if ((b.refcount == 0) != (b.live == 0)) return -BD_ECORRUPT;
    if (b.refcount == 0 && (rc = extmap_dead_note(t, blob_id))) return rc;
    return blob_put(t, &b);
}

int extmap_dead_finish(struct fsm_txn *t)
{
    struct index *ix = t->ix;
    int rc = 0;
    for (uint32_t i = 0; i < ix->n_dead && !rc; i++) {
        struct index_blob b;
        if ((rc = index_txn_blob(ix, t->txn, ix->dead[i], &b))) break;
        if (b.refcount || (b.flags & INDEX_BLOB_DEAD)) continue;
        b.flags |= INDEX_BLOB_DEAD;
        if (BD_NEVER(t->meta.blob_bytes < b.len)) {
            rc = -BD_ECORRUPT;
            break;
        }
        t->meta.blob_bytes -= b.len;
        t->meta.dead_bytes += b.len;
        if ((rc = blob_put(t, &b))) break;
        uint8_t kb[INDEX_ID_KEY_LEN], vb[INDEX_VAL_MAX];
        struct index_gc g = {.blob_id = b.id, .partition = b.partition, .dead_index = t->index};
        index_key_u64(kb, b.id);
        MDB_val k = {sizeof(kb), kb}, v = {index_enc_gc(vb, &g), vb};
        rc = index_mdb_err(mdb_put(t->txn, ix->dbi[INDEX_T_GC], &k, &v, 0));
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

/* Remove everything of LAYER in [o, e); *REMOVED gets the DATA bytes that
 * went.  Each overlapped extent loses its part inside the range: */
static int ext_clear(struct fsm_txn *t, uint64_t layer, uint64_t o, uint64_t e, uint64_t *removed)
{
    struct index_ext x;
    int rc;
    *removed = 0;
    while ((rc = index_ext_find(t->ix, t->cur, layer, o, &x)) == 1 && x.off < e) {
        uint64_t xend = x.off + x.len;
        uint64_t cut = BD_MIN(xend, e) - BD_MAX(x.off, o);
        bool data = is_data(&x);
        if (data) *removed += cut;
        if (x.off < o) {
            /* It keeps its left part (same key), and its right part if it
             * also straddles e: one more record of the same blob. */
            if (xend > e) {
                struct index_ext right = ext_slice(&x, e, xend - e);
                if ((rc = ext_key_put(t, &right))) return rc;
            }
            struct index_ext left = ext_slice(&x, x.off, o - x.off);
            if ((rc = ext_key_put(t, &left))) return rc;
            if (data && (rc = extmap_blob_ref(t, x.blob_id, xend > e, -(int64_t)cut))) return rc;
            continue;
        }
        /* It starts inside: it goes, or is re-keyed at e. */
        if ((rc = ext_key_del(t, layer, x.off))) return rc;
        if (xend > e) {
            struct index_ext right = ext_slice(&x, e, xend - e);
            if ((rc = ext_key_put(t, &right))) return rc;
        }
        if (data && (rc = extmap_blob_ref(t, x.blob_id, xend > e ? 0 : -1, -(int64_t)cut)))
            return rc;
    }
    return rc < 0 ? rc : 0;
}

int extmap_put(struct fsm_txn *t, const struct index_layer *l, uint64_t off, uint64_t len,
               const struct index_ext *nx)
{
    uint64_t layer = l->id;
    if (BD_NEVER(len == 0 || off + len < off || l->n_children || (!nx && l->parent)))
        return -BD_ECORRUPT;
    /* What the chain showed where L has no extent stops showing (usage.c). */
    uint64_t gap_vis, gap_parent, removed;
    int rc = usage_gaps(t, l, off, off + len, &gap_vis, &gap_parent);
    if (rc || (rc = ext_clear(t, layer, off, off + len, &removed))) return rc;
    uint64_t added = nx && is_data(nx) ? len : 0;
    if ((rc = usage_add(t, layer, (int64_t)added - (int64_t)removed, (int64_t)gap_parent,
                        (int64_t)added - (int64_t)removed - (int64_t)gap_vis)))
        return rc;
    if (!nx) return 0;
    struct index_ext n = *nx;
    n.layer = layer;
    n.off = off;
    n.len = len;
    if (is_data(&n)) {
        if ((rc = extmap_blob_ref(t, n.blob_id, +1, (int64_t)len))) return rc;
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

int extmap_repoint(struct fsm_txn *t, const struct idxcmd_repoint *r, uint64_t new_blob,
                   uint64_t *moved)
{
    uint64_t end = r->off + r->len, pos = r->off;
    /* The relation of volume offset to old-blob offset a matching extent
     * must keep: the same bytes, whatever splits happened since. */
    int64_t rel = (int64_t)r->old_off - (int64_t)r->off;
    struct index_ext x;
    int rc = 0;
    while (pos < end && (rc = index_ext_find(t->ix, t->cur, r->layer, pos, &x)) == 1 &&
           x.off < end) {
        uint64_t xend = x.off + x.len;
        uint64_t a = BD_MAX(x.off, r->off), b = BD_MIN(xend, end);
        pos = b;
        if (!is_data(&x) || x.blob_id != r->old_blob || (int64_t)x.blob_off - (int64_t)x.off != rel)
            continue; /* rewritten, zeroed or trimmed since: the later write wins */
        /* [x.off, a) keeps the old blob (same key), [a, b) names the new
         * one (at key a: over x's record when a == x.off), [b, xend) the
         * old one again. */
        struct index_ext mid = ext_slice(&x, a, b - a);
        mid.blob_id = new_blob;
        mid.blob_off = r->new_off + (uint32_t)(a - r->off);
        if (a > x.off) {
            struct index_ext left = ext_slice(&x, x.off, a - x.off);
            if ((rc = ext_key_put(t, &left))) return rc;
        }
        if ((rc = ext_key_put(t, &mid))) return rc;
        if (xend > b) {
            struct index_ext right = ext_slice(&x, b, xend - b);
            if ((rc = ext_key_put(t, &right))) return rc;
        }
        int old_refs = -1 + (a > x.off) + (xend > b);
        if ((rc = extmap_blob_ref(t, new_blob, +1, (int64_t)(b - a))) ||
            (rc = extmap_blob_ref(t, x.blob_id, old_refs, -(int64_t)(b - a))))
            return rc;
        *moved += b - a;
    }
    return rc < 0 ? rc : 0;
}

/* ---- layers ---------------------------------------------------------------------- */

int extmap_layer_get(struct fsm_txn *t, uint64_t id, struct index_layer *l)
{
    int rc = index_txn_layer(t->ix, t->txn, id, l);
    return rc == -ENOENT ? -BD_ECORRUPT : rc;
}

int extmap_layer_put(struct fsm_txn *t, const struct index_layer *l)
{
    uint8_t kb[INDEX_ID_KEY_LEN], vb[INDEX_VAL_MAX];
    index_key_u64(kb, l->id);
    MDB_val k = {sizeof(kb), kb}, v = {index_enc_layer(vb, l), vb};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[INDEX_T_LAYERS], &k, &v, 0));
}

static int layer_del(struct fsm_txn *t, uint64_t id)
{
    uint8_t kb[INDEX_ID_KEY_LEN];
    index_key_u64(kb, id);
    MDB_val k = {sizeof(kb), kb};
    int rc = index_mdb_err(mdb_del(t->txn, t->ix->dbi[INDEX_T_LAYERS], &k, NULL));
    return rc ? rc : usage_del(t, id);
}

int extmap_layer_new(struct fsm_txn *t, uint64_t parent, uint64_t vol_id, uint64_t *id)
{
    struct index_layer l = {.id = t->meta.next_layer++, .parent = parent, .vol_id = vol_id,
                            .is_top = 1};
    struct index_usage pu = {0};
    int rc;
    if (parent) {
        struct index_layer p;
        if ((rc = extmap_layer_get(t, parent, &p)) || (rc = usage_get(t, parent, &pu))) return rc;
        p.n_children++;
        p.child_xor ^= l.id;
        if ((rc = extmap_layer_put(t, &p))) return rc;
    }
    *id = l.id;
    /* Empty, it shows what its parent shows. */
    if ((rc = usage_new(t, l.id, pu.view_bytes))) return rc;
    return extmap_layer_put(t, &l);
}

int extmap_layer_depth(struct fsm_txn *t, uint64_t id, uint32_t *depth)
{
    *depth = 0;
    while (id) {
        struct index_layer l;
        int rc = extmap_layer_get(t, id, &l);
        if (rc) return rc;
        if (++*depth > INDEX_MAX_DEPTH) return -BD_ECORRUPT;
        id = l.parent;
    }
    return 0;
}

/* ---- the reap table ---------------------------------------------------------------- */

static int reap_put(struct fsm_txn *t, uint64_t id)
{
    uint8_t kb[INDEX_ID_KEY_LEN], vb[8];
    struct bytes_w w;
    index_key_u64(kb, id);
    bw_init(&w, vb, sizeof(vb));
    bw_u64(&w, t->index);
    MDB_val k = {sizeof(kb), kb}, v = {w.used, vb};
    int mrc = mdb_put(t->txn, t->ix->dbi[INDEX_T_REAP], &k, &v, MDB_NOOVERWRITE);
    return mrc == MDB_KEYEXIST ? 0 : index_mdb_err(mrc); /* condemned earlier: keep that index */
}

static int reap_del(struct fsm_txn *t, uint64_t id)
{
    uint8_t kb[INDEX_ID_KEY_LEN];
    index_key_u64(kb, id);
    MDB_val k = {sizeof(kb), kb};
    int rc = index_mdb_err(mdb_del(t->txn, t->ix->dbi[INDEX_T_REAP], &k, NULL));
    return rc == -ENOENT ? 0 : rc;
}

/* Nothing reads layer L: no volume writes to it, no snapshot froze it, no
 * layer sits on it.  It is being freed (or about to be). */
static bool unreferenced(const struct index_layer *l)
{
    return !l->is_top && !l->n_snaps && !l->n_children;
}

/* Delete extents of LAYER while the budget lasts.  1 if it has none left,
 * 0 if the budget ran out first. */
static int layer_clear(struct fsm_txn *t, uint64_t layer)
{
    struct index_ext x;
    int rc;
    uint64_t freed = 0;
    while ((rc = index_ext_find(t->ix, t->cur, layer, 0, &x)) == 1) {
        if (!t->budget) break;
        t->budget--;
        if ((rc = ext_key_del(t, layer, x.off))) return rc;
        if (is_data(&x)) {
            freed += x.len;
            if ((rc = extmap_blob_ref(t, x.blob_id, -1, -(int64_t)x.len))) return rc;
        }
    }
    if (rc < 0) return rc;
    /* The layer's data count follows its extents (and with it the meta
     * total); its masked and view counts stay as they were: nothing reads
     * a condemned layer (index.h "usage"). */
    int urc = usage_add(t, layer, -(int64_t)freed, 0, 0);
    return urc ? urc : rc == 1 ? 0 : 1;
}

/* Fold layer L into its only child C (see the file comment), while the
 * budget lasts: 1 once L is gone, 0 if the budget ran out first.  Each
 * extent of L is copied into C where C has none of its own, a piece at a
 * time; an extent left half done is cut to the part not yet visited (same
 * blob, one record for one: its refcount does not move), so the next step
 * starts where this one stopped.  Reads through C are right at every step:
 * a piece is in C or still in L below it, never in neither.
 *
 * Usage, step by step: C takes over the DATA pieces it did not mask (and
 * C's own children mask what C gained where they have extents); C no
 * longer masks the DATA of L it covered, as that leaves L; L's data count
 * drops by what left it.  Once L is gone C masks its new parent's data,
 * recounted. */
static int layer_merge(struct fsm_txn *t, struct index_layer *l)
{
    uint64_t cid = l->child_xor;
    struct index_layer c;
    int rc = extmap_layer_get(t, cid, &c);
    if (rc) return rc;
    if (c.parent != l->id) return -BD_ECORRUPT;
    uint64_t *kids;
    uint32_t n_kids;
    if ((rc = usage_children(t, &c, &kids, &n_kids))) return rc;
    uint64_t gained = 0, unmasked = 0, left_l = 0;
    bool done = false;
    struct index_ext x, y;
    while ((rc = index_ext_find(t->ix, t->cur, l->id, 0, &x)) == 1) {
        uint64_t pos = x.off, end = x.off + x.len;
        while (pos < end && t->budget) {
            t->budget--;
            int found = index_ext_find(t->ix, t->cur, cid, pos, &y);
            if (found < 0) {
                rc = found;
                goto out;
            }
            if (found && y.off <= pos) {
                uint64_t to = BD_MIN(y.off + y.len, end);
                if (is_data(&x)) unmasked += to - pos;
                pos = to;
                continue;
            }
            uint64_t gap_end = found && y.off < end ? y.off : end;
            struct index_ext piece = ext_slice(&x, pos, gap_end - pos);
            piece.layer = cid;
            if ((rc = ext_key_put(t, &piece))) goto out;
            if (is_data(&x)) {
                gained += piece.len;
                if ((rc = extmap_blob_ref(t, x.blob_id, +1, (int64_t)piece.len)) ||
                    (rc = usage_gained(t, kids, n_kids, pos, gap_end)))
                    goto out;
            }
            pos = gap_end;
        }
        if (pos == x.off) goto counts; /* no budget left for this extent */
        if (is_data(&x)) left_l += pos - x.off;
        if (pos < end) {
            struct index_ext rest = ext_slice(&x, pos, end - pos);
            if ((rc = ext_key_put(t, &rest)) || (rc = ext_key_del(t, l->id, x.off)) ||
                (is_data(&x) && (rc = extmap_blob_ref(t, x.blob_id, 0, -(int64_t)(pos - x.off)))))
                goto out;
            goto counts;
        }
        if ((rc = ext_key_del(t, l->id, x.off))) goto out;
        if (is_data(&x) && (rc = extmap_blob_ref(t, x.blob_id, -1, -(int64_t)x.len))) goto out;
    }
    if (rc < 0) goto out;
    done = true;
counts:
    if ((rc = usage_add(t, cid, (int64_t)gained, -(int64_t)unmasked, 0)) ||
        (rc = usage_add(t, l->id, -(int64_t)left_l, 0, 0)))
        goto out;
    if (!done) goto out; /* rc 0: the budget ran out */
    c.parent = l->parent;
    uint64_t masked = 0;
    if ((rc = extmap_layer_put(t, &c)) ||
        (c.parent && (rc = usage_overlap(t, cid, c.parent, 0, UINT64_MAX, &masked))) ||
        (rc = usage_set_masked(t, cid, masked)))
        goto out;
    if (l->parent) {
        struct index_layer p;
        if ((rc = extmap_layer_get(t, l->parent, &p))) goto out;
        p.child_xor ^= l->id ^ cid;
        if ((rc = extmap_layer_put(t, &p))) goto out;
    }
    if ((rc = layer_del(t, l->id)) || (rc = reap_del(t, l->id))) goto out;
    rc = 1;
out:
    free(kids);
    return rc;
}

int extmap_layer_release(struct fsm_txn *t, uint64_t id)
{
    while (id) {
        struct index_layer l;
        int rc = extmap_layer_get(t, id, &l);
        if (rc) return rc;
        if (l.is_top || l.n_snaps || l.n_children > 1) return reap_del(t, id);
        if (l.n_children == 1) {
            struct index_layer c;
            if ((rc = extmap_layer_get(t, l.child_xor, &c))) return rc;
            /* A child that is being freed takes L's data nowhere: wait for
             * it to go (its release comes back here and frees L). */
            if (unreferenced(&c)) return reap_put(t, id);
            rc = layer_merge(t, &l);
            if (rc < 0) return rc;
            return rc ? 0 : reap_put(t, id);
        }
        /* Unreferenced: free it and drop one child of its parent. */
        rc = layer_clear(t, id);
        if (rc < 0) return rc;
        if (rc == 0) return reap_put(t, id);
        if ((rc = layer_del(t, id)) || (rc = reap_del(t, id))) return rc;
        if (!l.parent) return 0;
        struct index_layer p;
        if ((rc = extmap_layer_get(t, l.parent, &p))) return rc;
        if (p.n_children == 0) return -BD_ECORRUPT;
        p.n_children--;
        p.child_xor ^= id;
        if ((rc = extmap_layer_put(t, &p))) return rc;
        id = p.id;
    }
    return 0;
}

int extmap_reap(struct fsm_txn *t, uint64_t *left)
{
    uint64_t after = 0;
    int rc = 0;
    /* Re-seek after every layer: releasing one changes the table. */
    while (t->budget && after < UINT64_MAX) {
        MDB_cursor *cur;
        if ((rc = index_mdb_err(mdb_cursor_open(t->txn, t->ix->dbi[INDEX_T_REAP], &cur))))
            return rc;
        uint8_t kb[INDEX_ID_KEY_LEN];
        index_key_u64(kb, after + 1);
        MDB_val k = {sizeof(kb), kb}, v;
        int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        uint64_t id = mrc == 0 && k.mv_size == INDEX_ID_KEY_LEN ? index_key_get_u64(k.mv_data) : 0;
        mdb_cursor_close(cur);
        if (mrc == MDB_NOTFOUND) break;
        if (mrc) return index_mdb_err(mrc);
        if (!id) return -BD_ECORRUPT;
        t->budget--; /* a visit costs one, so layers that wait cannot spin */
        struct index_layer l;
        rc = index_txn_layer(t->ix, t->txn, id, &l);
        if (rc == -ENOENT) rc = reap_del(t, id); /* gone already */
        else if (rc == 0) rc = extmap_layer_release(t, id);
        if (rc) return rc;
        after = id;
    }
    MDB_stat ms;
    if ((rc = index_mdb_err(mdb_stat(t->txn, t->ix->dbi[INDEX_T_REAP], &ms)))) return rc;
    *left = ms.ms_entries;
    return 0;
}
