/* fsm_life.c: apply the data-lifecycle commands (their dispatch is fsm.c's
 * apply_one; contract in fsm.h): the blob rewrite's REPOINT, ROLLBACK,
 * SNAPSHOT_GROUP, a clone's flatten, and the import session.  Like every
 * command, each decides every refusal before its first write ("check,
 * then act", fsm.c), so a refused command changes nothing.
 *
 * REPOINT (the blob rewrite, proxy_rewrite.c).  The leader copies the
 * live ranges of sparsely used blobs into a new blob and asks, range by
 * range, that the extents still naming the old bytes name the new ones.
 * "Still naming" is checked here, at apply, against the extent as it is
 * now: a write, zero or trim that reached the range after the leader read
 * it changed the extent, so the re-point skips it (the client's write
 * wins, C9).  The new blob is registered like a written one (refcount 0,
 * noted as possibly dead): if nothing matched, it dies with the entry and
 * GC deletes it; an old blob whose last range moved dies the same way.
 * Both are the same bytes, so every view, and so every usage figure, is
 * unchanged.  The command also records where the rewrite got to (meta
 * "totals": rewrite_layer / rewrite_off), so a new leader resumes there.
 *
 * ROLLBACK V S (detached volumes only).  V gets a new, empty top over S's
 * layer and S's size; its old top (never shared: a snapshot freezes the
 * top and stacks a new one) is released, which frees what only it held.
 * Snapshots newer than S stay, as in RBD.
 *
 * SNAPSHOT_GROUP.  One name, up to IDXCMD_MAX_GROUP volumes, one entry:
 * every volume is checked (exists, name free, chain not too deep; for a
 * volume whose agent did a barrier, still attached at that generation, so
 * a barrier by a fenced agent never counts; and attached read-write at the
 * generation the proposer saw, or not at all if it saw none, so a
 * proposer that decided on barriers from a stale index is refused ESTALE
 * and looks again), then all are frozen.  All or none.  A volume frozen
 * after its agent's barrier carries INDEX_SNAP_BARRIER.
 *
 * Flatten (proxy_flatten.c drives it).  A clone's "own bottom" layer B is
 * the lowest layer of its chain it created itself (vol_id); what lies
 * below B is inherited.  FLATTEN_START records the job.  Each
 * FLATTEN_FILL copies (as a new blob the leader wrote) what the chain
 * below B shows into B's gaps: only into gaps, so the clone's own writes
 * (B may be its top) always win, and the chain below B is frozen, so the
 * bytes read are still the bytes shown.  FLATTEN_DONE checks that no data
 * of the chain below B shows through B any more, then cuts B from its
 * parent (which loses a child: it may merge or be freed) and ends the job.
 * Every view is unchanged throughout.  Until then SNAPSHOT_DELETE of the
 * parent snapshot answers EBUSY (fsm_life_snap_busy).
 *
 * Import (proxy_backup.c drives it).  IMPORT_BEGIN checks that V is
 * detached and holds exactly snapshot FROM (its top empty, on FROM's
 * layer), or is empty without snapshots when FROM is empty, grows V to
 * the stream's size, and attaches it read-write for the importer (a new
 * generation, as ATTACH: C10 fences everything else).  The data then
 * comes as ordinary WRITE_BATCHes under that generation.  IMPORT_END with
 * COMMIT takes the stream's snapshot (with its origin) and detaches; without,
 * it rolls V back to FROM (or to empty) and detaches: a refused or broken
 * stream leaves nothing behind. */
#include "store/index/fsm.h"
#include "store/index/fsm_int.h"
#include "base/bd.h"

#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------ */

static void str_copy(char *dst, struct idxcmd_str s)
{
    memcpy(dst, s.ptr, s.len);
    dst[s.len] = 0;
}

/* V's own bottom layer: from its top down while the layers are V's. */
static int own_bottom(struct fsm_txn *t, const struct index_vol *v, struct index_layer *b)
{
    int rc = extmap_layer_get(t, v->top_layer, b);
    for (uint32_t d = 0; rc == 0 && b->parent; d++) {
        struct index_layer p;
        if (d >= INDEX_MAX_DEPTH) return -BD_ECORRUPT;
        if ((rc = extmap_layer_get(t, b->parent, &p))) break;
        if (p.vol_id != v->id) break;
        *b = p;
    }
    return rc;
}

/* Does LAYER hold any extent. */
static int has_extents(struct fsm_txn *t, uint64_t layer, bool *yes)
{
    struct index_ext x;
    int rc = index_ext_find(t->ix, t->cur, layer, 0, &x);
    *yes = rc == 1;
    return rc < 0 ? rc : 0;
}

/* Does volume VOL_ID have any snapshot. */
static int has_snapshots(struct fsm_txn *t, uint64_t vol_id, bool *yes)
{
    uint8_t kb[INDEX_ID_KEY_LEN];
    index_key_u64(kb, vol_id);
    MDB_val k = {sizeof(kb), kb}, d;
    MDB_cursor *cur;
    int rc = index_mdb_err(mdb_cursor_open(t->txn, t->ix->dbi[INDEX_T_SNAPSHOTS], &cur));
    if (rc) return rc;
    int mrc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
    *yes = mrc == 0 && k.mv_size > INDEX_ID_KEY_LEN && index_key_get_u64(k.mv_data) == vol_id;
    mdb_cursor_close(cur);
    return mrc == 0 || mrc == MDB_NOTFOUND ? 0 : index_mdb_err(mrc);
}

/* V's data becomes that of layer BASE (0: nothing) at SIZE: a new empty
 * top over BASE, the old top released.  *V is updated and written. */
static int rollback_to(struct fsm_txn *t, struct index_vol *v, uint64_t base, uint64_t size)
{
    uint64_t old = v->top_layer;
    struct index_layer top;
    int rc;
    if ((rc = extmap_layer_new(t, base, v->id, &v->top_layer))) return rc;
    v->size = size;
    if ((rc = fsm_rec_vol_put(t, v)) || (rc = extmap_layer_get(t, old, &top))) return rc;
    top.is_top = 0;
    if ((rc = extmap_layer_put(t, &top))) return rc;
    return extmap_layer_release(t, old);
}

/* ---- snapshots --------------------------------------------------------------------- */

int fsm_life_freeze_check(struct fsm_txn *t, const struct index_vol *v, struct idxcmd_str name,
                          uint8_t *st)
{
    struct index_snap s;
    int rc = index_txn_snap(t->ix, t->txn, v->id, name.ptr, name.len, &s);
    if (rc == 0) *st = IDXCMD_ST_EEXIST;
    if (rc != -ENOENT) return rc;
    bool full;
    if ((rc = fsm_rec_full(t, &full))) return rc;
    if (full) {
        *st = IDXCMD_ST_ENOSPC;
        return 0;
    }
    uint32_t depth;
    if ((rc = extmap_layer_depth(t, v->top_layer, &depth))) return rc;
    if (depth >= INDEX_MAX_DEPTH) *st = IDXCMD_ST_ELIMIT;
    return 0;
}

int fsm_life_freeze(struct fsm_txn *t, struct index_vol *v, struct idxcmd_str name,
                    uint64_t origin, uint8_t flags, uint64_t *layer)
{
    struct index_layer old;
    uint64_t frozen = v->top_layer;
    int rc;
    if ((rc = extmap_layer_new(t, frozen, v->id, &v->top_layer)) ||
        (rc = extmap_layer_get(t, frozen, &old)))
        return rc;
    old.is_top = 0;
    old.n_snaps++;
    if ((rc = extmap_layer_put(t, &old)) || (rc = fsm_rec_vol_put(t, v))) return rc;
    struct index_snap s = {.vol_id = v->id, .layer = frozen, .size = v->size,
                           .created_index = t->index, .origin = origin, .flags = flags};
    str_copy(s.name, name);
    if (layer) *layer = frozen;
    return fsm_rec_snap_put(t, &s);
}

int fsm_life_snap_busy(struct fsm_txn *t, const struct index_snap *s, uint8_t *st)
{
    struct index_layer l;
    uint64_t *kids;
    uint32_t n;
    int rc = extmap_layer_get(t, s->layer, &l);
    if (rc || (rc = usage_children(t, &l, &kids, &n))) return rc;
    for (uint32_t i = 0; i < n && !rc; i++) {
        struct index_layer c;
        if ((rc = extmap_layer_get(t, kids[i], &c)) == 0 && c.vol_id != s->vol_id)
            *st = IDXCMD_ST_EBUSY;
    }
    free(kids);
    return rc;
}

int fsm_life_snapshot_group(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.snapshot_group) *a = &c->u.snapshot_group;
    struct index_vol v[IDXCMD_MAX_GROUP];
    struct idxcmd_group_vol g[IDXCMD_MAX_GROUP];
    int rc;
    for (uint32_t i = 0; i < a->n; i++) {
        idxcmd_group_get(c, i, &g[i]);
        if ((rc = fsm_rec_find_vol(t, g[i].vol, &v[i], &res->status)) < 0) return rc;
        if (!res->status && (rc = fsm_life_freeze_check(t, &v[i], a->snap, &res->status)))
            return rc;
        uint64_t rw_gen = v[i].attach_mode == INDEX_ATTACH_RW ? v[i].generation : 0;
        if (!res->status && g[i].generation && rw_gen != g[i].generation)
            res->status = IDXCMD_ST_FENCED; /* the barrier was another attach's */
        if (!res->status && rw_gen != g[i].seen)
            res->status = IDXCMD_ST_ESTALE; /* the proposer decided on another attach */
        if (res->status) {
            res->id = i + 1;
            return 0;
        }
    }
    for (uint32_t i = 0; i < a->n; i++)
        if ((rc = fsm_life_freeze(t, &v[i], a->snap, 0,
                                  g[i].generation ? INDEX_SNAP_BARRIER : 0, NULL)))
            return rc;
    return 0;
}

int fsm_life_rollback(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.rollback) *a = &c->u.rollback;
    struct index_vol v;
    struct index_snap s;
    int rc = fsm_rec_find_vol(t, a->vol, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    rc = index_txn_snap(t->ix, t->txn, v.id, a->snap.ptr, a->snap.len, &s);
    if (rc == -ENOENT) res->status = IDXCMD_ST_ENOENT;
    if (rc) return rc == -ENOENT ? 0 : rc;
    if (v.attach_mode == INDEX_ATTACH_RW) {
        res->status = IDXCMD_ST_EBUSY;
        return 0;
    }
    uint32_t depth;
    if ((rc = extmap_layer_depth(t, s.layer, &depth))) return rc;
    if (depth >= INDEX_MAX_DEPTH) {
        res->status = IDXCMD_ST_ELIMIT;
        return 0;
    }
    res->id = v.id;
    return rollback_to(t, &v, s.layer, s.size);
}

/* ---- the blob rewrite ----------------------------------------------------------------- */

int fsm_life_repoint(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.repoint) *a = &c->u.repoint;
    struct idxcmd_write w = {.kind = IDXCMD_W_DATA, .blob_id = a->blob_id,
                             .partition = a->partition, .blob_len = a->blob_len,
                             .blob_csum = a->blob_csum};
    int rc = fsm_rec_blob(t, &w, &res->status);
    if (rc || res->status) return rc;
    uint64_t moved = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        struct idxcmd_repoint r;
        idxcmd_repoint_get(c, i, &r);
        if ((rc = extmap_repoint(t, &r, a->blob_id, &moved))) return rc;
    }
    t->meta.rewrite_layer = a->cursor_layer;
    t->meta.rewrite_off = a->cursor_off;
    t->meta.rewritten_bytes += moved;
    res->id = moved;
    return 0;
}

/* ---- flatten --------------------------------------------------------------------------- */

static int flatten_put(struct fsm_txn *t, const struct index_flatten *f)
{
    uint8_t kb[INDEX_ID_KEY_LEN], vb[INDEX_VAL_MAX];
    index_key_u64(kb, f->vol_id);
    MDB_val k = {sizeof(kb), kb}, v = {index_enc_flatten(vb, f), vb};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[INDEX_T_FLATTEN], &k, &v, 0));
}

int fsm_life_forget(struct fsm_txn *t, uint64_t vol_id)
{
    uint8_t kb[INDEX_ID_KEY_LEN];
    index_key_u64(kb, vol_id);
    MDB_val k = {sizeof(kb), kb};
    int rc = index_mdb_err(mdb_del(t->txn, t->ix->dbi[INDEX_T_FLATTEN], &k, NULL));
    return rc == -ENOENT ? 0 : rc;
}

int fsm_life_flatten_start(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    struct index_vol v;
    struct index_layer b;
    struct index_flatten f;
    int rc = fsm_rec_find_vol(t, c->u.flatten_start.vol, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    if ((rc = own_bottom(t, &v, &b))) return rc;
    res->id = v.id;
    if (!b.parent) {
        res->status = IDXCMD_ST_EINVAL; /* not a clone (any more) */
        return 0;
    }
    rc = index_txn_flatten(t->ix, t->txn, v.id, &f);
    if (rc != -ENOENT) return rc; /* running already: nothing to do */
    f = (struct index_flatten){.vol_id = v.id, .started_index = t->index};
    return flatten_put(t, &f);
}

/* The job of volume VOL_ID and its target B; ENOENT (no volume or job) or
 * ESTALE (B is not LAYER: it merged, or the volume was rolled back) in *ST. */
static int flatten_target(struct fsm_txn *t, uint64_t vol_id, uint64_t layer,
                          struct index_vol *v, struct index_flatten *f, struct index_layer *b,
                          uint8_t *st)
{
    int rc = index_txn_vol_by_id(t->ix, t->txn, vol_id, v);
    if (rc == 0) rc = index_txn_flatten(t->ix, t->txn, vol_id, f);
    if (rc == -ENOENT) *st = IDXCMD_ST_ENOENT;
    if (rc) return rc == -ENOENT ? 0 : rc;
    if ((rc = own_bottom(t, v, b))) return rc;
    if (b->id != layer) *st = IDXCMD_ST_ESTALE;
    return 0;
}

int fsm_life_flatten_fill(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.flatten_fill) *a = &c->u.flatten_fill;
    struct index_vol v;
    struct index_flatten f;
    struct index_layer b;
    int rc = flatten_target(t, a->vol_id, a->layer, &v, &f, &b, &res->status);
    if (rc || res->status) return rc;
    if (!b.parent) {
        res->status = IDXCMD_ST_ESTALE; /* nothing inherited any more */
        return 0;
    }
    bool full;
    if (a->n && (rc = fsm_rec_full(t, &full))) return rc;
    if (a->n && full) {
        res->status = IDXCMD_ST_ENOSPC;
        return 0;
    }
    if (a->n) {
        struct idxcmd_write w = {.kind = IDXCMD_W_DATA, .blob_id = a->blob_id,
                                 .partition = a->partition, .blob_len = a->blob_len,
                                 .blob_csum = a->blob_csum};
        if ((rc = fsm_rec_blob(t, &w, &res->status)) || res->status) return rc;
    }
    uint64_t *kids;
    uint32_t n_kids;
    if ((rc = usage_children(t, &b, &kids, &n_kids))) return rc;
    uint64_t filled = 0, masked = 0;
    for (uint32_t i = 0; i < a->n && !rc; i++) {
        struct idxcmd_fill fl;
        idxcmd_fill_get(c, i, &fl);
        uint64_t pos = fl.off, end = fl.off + fl.len;
        /* Into B's gaps only: what B holds (the clone's own writes) wins. */
        while (pos < end && !rc) {
            struct index_ext x;
            int found = index_ext_find(t->ix, t->cur, b.id, pos, &x);
            if (found < 0) {
                rc = found;
                break;
            }
            if (found && x.off <= pos) {
                pos = x.off + x.len;
                continue;
            }
            uint64_t gap_end = found && x.off < end ? x.off : end, parent_data;
            struct index_ext piece = {.layer = b.id, .off = pos, .len = gap_end - pos,
                                      .blob_id = a->blob_id,
                                      .blob_off = fl.new_off + (uint32_t)(pos - fl.off)};
            uint8_t kb[INDEX_EXT_KEY_LEN], vb[INDEX_VAL_MAX];
            index_key_ext(kb, piece.layer, piece.off);
            MDB_val k = {sizeof(kb), kb}, val = {index_enc_ext(vb, &piece), vb};
            if ((rc = index_mdb_err(mdb_put(t->txn, t->ix->dbi[INDEX_T_EXTENTS], &k, &val, 0))) ||
                (rc = extmap_blob_ref(t, a->blob_id, +1, (int64_t)piece.len)) ||
                (rc = usage_ext_bytes(t, b.parent, pos, gap_end, true, &parent_data)) ||
                (rc = usage_gained(t, kids, n_kids, pos, gap_end)))
                break;
            filled += piece.len;
            masked += parent_data;
            pos = gap_end;
        }
    }
    free(kids);
    if (rc || (rc = usage_add(t, b.id, (int64_t)filled, (int64_t)masked, 0))) return rc;
    f.cursor = a->cursor;
    f.copied_bytes += filled;
    res->id = filled;
    return flatten_put(t, &f);
}

int fsm_life_flatten_done(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.flatten_done) *a = &c->u.flatten_done;
    struct index_vol v;
    struct index_flatten f;
    struct index_layer b;
    int rc = flatten_target(t, a->vol_id, a->layer, &v, &f, &b, &res->status);
    if (rc || res->status) return rc;
    res->id = v.id;
    if (b.parent) {
        /* Cut only when nothing of the chain below shows through B: the
         * parent's ZERO and HOLE read as zeroes without it too. */
        uint64_t showing, parent_data;
        if ((rc = usage_gaps(t, &b, 0, UINT64_MAX, &showing, &parent_data))) return rc;
        if (showing) {
            res->status = IDXCMD_ST_EINVAL;
            return 0;
        }
        struct index_layer p;
        if ((rc = extmap_layer_get(t, b.parent, &p))) return rc;
        if (p.n_children == 0) return -BD_ECORRUPT;
        p.n_children--;
        p.child_xor ^= b.id;
        b.parent = 0;
        if ((rc = extmap_layer_put(t, &b)) || (rc = extmap_layer_put(t, &p)) ||
            (rc = usage_set_masked(t, b.id, 0)) || (rc = extmap_layer_release(t, p.id)))
            return rc;
    }
    return fsm_life_forget(t, v.id);
}

/* ---- import ------------------------------------------------------------------------------ */

int fsm_life_import_begin(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.import_begin) *a = &c->u.import_begin;
    struct index_vol v;
    struct index_layer top;
    bool busy;
    int rc = fsm_rec_find_vol(t, a->vol, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    bool full;
    if ((rc = fsm_rec_full(t, &full))) return rc;
    if (full) res->status = IDXCMD_ST_ENOSPC;
    else if (v.attach_mode == INDEX_ATTACH_RW) res->status = IDXCMD_ST_EBUSY;
    else if (a->size < v.size) res->status = IDXCMD_ST_ERANGE;
    else if (a->size % v.block_size) res->status = IDXCMD_ST_EINVAL;
    if (res->status) return 0;
    if ((rc = extmap_layer_get(t, v.top_layer, &top)) || (rc = has_extents(t, top.id, &busy)))
        return rc;
    uint64_t base = 0;
    if (a->from.len) {
        struct index_snap s;
        rc = index_txn_snap(t->ix, t->txn, v.id, a->from.ptr, a->from.len, &s);
        if (rc == -ENOENT) res->status = IDXCMD_ST_ENOENT;
        if (rc) return rc == -ENOENT ? 0 : rc;
        base = s.layer;
    } else if (!busy && (rc = has_snapshots(t, v.id, &busy))) {
        return rc;
    }
    /* The volume must read exactly as the stream's base: written nothing
     * since FROM (or anything at all, without FROM). */
    if (busy || top.parent != base) {
        res->status = IDXCMD_ST_ESTALE;
        return 0;
    }
    v.size = a->size;
    v.generation++;
    v.attach_mode = INDEX_ATTACH_RW;
    str_copy(v.agent, a->agent);
    res->id = v.id;
    res->generation = v.generation;
    res->size = v.size;
    res->block_size = v.block_size;
    return fsm_rec_vol_put(t, &v);
}

int fsm_life_import_end(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.import_end) *a = &c->u.import_end;
    struct index_vol v;
    int rc = fsm_rec_find_vol(t, a->vol, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    if (v.attach_mode != INDEX_ATTACH_RW || v.generation != a->generation ||
        strlen(v.agent) != a->agent.len || memcmp(v.agent, a->agent.ptr, a->agent.len)) {
        res->status = IDXCMD_ST_FENCED;
        return 0;
    }
    res->id = v.id;
    if (a->flags & IDXCMD_IMPORT_COMMIT) {
        if (a->snap.len) {
            if ((rc = fsm_life_freeze_check(t, &v, a->snap, &res->status)) || res->status)
                return rc;
            if ((rc = fsm_life_freeze(t, &v, a->snap, a->origin, 0, NULL))) return rc;
        }
    } else {
        struct index_snap s = {.size = v.size};
        if (a->snap.len) {
            rc = index_txn_snap(t->ix, t->txn, v.id, a->snap.ptr, a->snap.len, &s);
            if (rc == -ENOENT) res->status = IDXCMD_ST_ENOENT;
            if (rc) return rc == -ENOENT ? 0 : rc;
        }
        if ((rc = rollback_to(t, &v, s.layer, s.size))) return rc;
    }
    v.attach_mode = INDEX_ATTACH_NONE;
    v.agent[0] = 0;
    return fsm_rec_vol_put(t, &v);
}
