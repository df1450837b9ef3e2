/* usage.c: the usage counters as apply changes extents (write side of
 * index.h "usage"; the read side is index_usage.c).
 *
 * Per layer, in the usage table:
 *   data    the DATA bytes of its own extents;
 *   masked  the DATA bytes of its parent's own extents that lie under its
 *           own extents (DATA or ZERO): what a merge of the parent into it
 *           drops, so what deleting the parent's snapshot frees;
 *   view    the DATA bytes of its view (itself over its chain): a volume's
 *           written bytes when it is a top, a snapshot's when frozen.
 * And in meta "totals" (t->meta, written back at commit): every layer's
 * data, live and dead blob bytes.
 *
 * Who changes what (every other command leaves all three alone):
 *   - a write to a top layer T over [o, e) (extmap_put): T's own extents
 *     there go (their DATA leaves data and view), the new extent comes
 *     (DATA adds to both), and wherever T had no extent before, what its
 *     chain showed there stops showing: that leaves the view, and T's
 *     parent's own DATA there becomes masked.  usage_gaps measures the
 *     last two before the write clears the range.  A top has no children,
 *     so nothing above it changes;
 *   - a new layer starts empty with its parent's view (it shows exactly
 *     what its parent does);
 *   - a merge of L into its only child C: C's own data grows by the pieces
 *     it takes over, C now masks its new parent's data (recounted), and
 *     every child of C masks C's new pieces where it has extents;
 *   - a fill of a layer's gaps (flatten): the same, for the filled pieces,
 *     plus the parent data the fill now masks;
 *   - deleting a layer deletes its record, and its data from the total.
 * No view ever changes except the top's on a write: merges, fills and
 * re-points keep every view's bytes as they were.
 *
 * Costs: a write to a layer without parent costs one record update; with a
 * parent, a walk of the chain's extents inside the gaps the write fills
 * (proportional to what it overwrites, never to the volume).  Merges and
 * fills walk the extents they move, and the children they concern. */
#include "store/index/fsm_int.h"
#include "base/bd.h"

#include <stdlib.h>
#include <string.h>

int usage_get(struct fsm_txn *t, uint64_t layer, struct index_usage *u)
{
    int rc = index_txn_usage(t->ix, t->txn, layer, u);
    return rc == -ENOENT ? -BD_ECORRUPT : rc;
}

static int usage_put(struct fsm_txn *t, uint64_t layer, const struct index_usage *u)
{
    uint8_t kb[INDEX_ID_KEY_LEN], vb[INDEX_VAL_MAX];
    index_key_u64(kb, layer);
    MDB_val k = {sizeof(kb), kb}, v = {index_enc_usage(vb, u), vb};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[INDEX_T_USAGE], &k, &v, 0));
}

int usage_new(struct fsm_txn *t, uint64_t layer, uint64_t view)
{
    struct index_usage u = {.view_bytes = view};
    return usage_put(t, layer, &u);
}

int usage_del(struct fsm_txn *t, uint64_t layer)
{
    struct index_usage u;
    int rc = usage_get(t, layer, &u);
    if (rc) return rc;
    if (BD_NEVER(t->meta.data_bytes < u.data_bytes)) return -BD_ECORRUPT;
    t->meta.data_bytes -= u.data_bytes;
    uint8_t kb[INDEX_ID_KEY_LEN];
    index_key_u64(kb, layer);
    MDB_val k = {sizeof(kb), kb};
    return index_mdb_err(mdb_del(t->txn, t->ix->dbi[INDEX_T_USAGE], &k, NULL));
}

/* V + D, refusing to leave [0, 2^64): a counter that would is corrupt. */
static int add_signed(uint64_t *v, int64_t d)
{
    if (d < 0 ? *v < (uint64_t)-d : *v + (uint64_t)d < *v) return -BD_ECORRUPT;
    *v += (uint64_t)d;
    return 0;
}

int usage_add(struct fsm_txn *t, uint64_t layer, int64_t data, int64_t masked, int64_t view)
{
    if (!data && !masked && !view) return 0;
    struct index_usage u;
    int rc = usage_get(t, layer, &u);
    if (rc) return rc;
    if ((rc = add_signed(&u.data_bytes, data)) || (rc = add_signed(&u.masked_bytes, masked)) ||
        (rc = add_signed(&u.view_bytes, view)) || (rc = add_signed(&t->meta.data_bytes, data)))
        return rc;
    return usage_put(t, layer, &u);
}

int usage_set_masked(struct fsm_txn *t, uint64_t layer, uint64_t masked)
{
    struct index_usage u;
    int rc = usage_get(t, layer, &u);
    if (rc || u.masked_bytes == masked) return rc;
    u.masked_bytes = masked;
    return usage_put(t, layer, &u);
}

/* ---- measuring --------------------------------------------------------------- */

int usage_ext_bytes(struct fsm_txn *t, uint64_t layer, uint64_t a, uint64_t b, bool data_only,
                    uint64_t *out)
{
    *out = 0;
    struct index_ext x;
    int rc = 0;
    uint64_t pos = a;
    while (pos < b && (rc = index_ext_find(t->ix, t->cur, layer, pos, &x)) == 1 && x.off < b) {
        uint64_t s = BD_MAX(x.off, a), e = BD_MIN(x.off + x.len, b);
        if (!data_only || !(x.flags & INDEX_EXT_ZERO)) *out += e - s;
        pos = x.off + x.len;
    }
    return rc < 0 ? rc : 0;
}

int usage_overlap(struct fsm_txn *t, uint64_t upper, uint64_t lower, uint64_t a, uint64_t b,
                  uint64_t *out)
{
    *out = 0;
    struct index_ext x;
    int rc = 0;
    uint64_t pos = a;
    while (pos < b && (rc = index_ext_find(t->ix, t->cur, upper, pos, &x)) == 1 && x.off < b) {
        uint64_t s = BD_MAX(x.off, a), e = BD_MIN(x.off + x.len, b), n;
        if ((rc = usage_ext_bytes(t, lower, s, e, true, &n))) return rc;
        *out += n;
        pos = x.off + x.len;
    }
    return rc < 0 ? rc : 0;
}

/* Data visible through CHAIN[LVL..DEPTH) over [A, B); what CHAIN[0]'s own
 * extents give is also added to *LVL0. */
static int visible(struct fsm_txn *t, const uint64_t *chain, uint32_t depth, uint32_t lvl,
                   uint64_t a, uint64_t b, uint64_t *vis, uint64_t *lvl0)
{
    if (lvl == depth) return 0;
    uint64_t pos = a;
    while (pos < b) {
        struct index_ext x;
        int rc = index_ext_find(t->ix, t->cur, chain[lvl], pos, &x);
        if (rc < 0) return rc;
        if (rc == 0 || x.off >= b) return visible(t, chain, depth, lvl + 1, pos, b, vis, lvl0);
        if (x.off > pos) {
            if ((rc = visible(t, chain, depth, lvl + 1, pos, x.off, vis, lvl0))) return rc;
            pos = x.off;
        }
        uint64_t end = BD_MIN(x.off + x.len, b);
        if (!(x.flags & INDEX_EXT_ZERO)) {
            *vis += end - pos;
            if (lvl == 0) *lvl0 += end - pos;
        }
        pos = end;
    }
    return 0;
}

int usage_gaps(struct fsm_txn *t, const struct index_layer *l, uint64_t a, uint64_t b,
               uint64_t *vis, uint64_t *parent_data)
{
    *vis = *parent_data = 0;
    if (!l->parent) return 0;
    uint64_t chain[INDEX_MAX_DEPTH];
    uint32_t depth = 0;
    for (uint64_t id = l->parent; id;) {
        struct index_layer p;
        if (depth == INDEX_MAX_DEPTH) return -BD_ECORRUPT;
        int rc = index_txn_layer(t->ix, t->txn, id, &p);
        if (rc) return rc == -ENOENT ? -BD_ECORRUPT : rc;
        chain[depth++] = id;
        id = p.parent;
    }
    uint64_t pos = a;
    while (pos < b) {
        struct index_ext x;
        int rc = index_ext_find(t->ix, t->cur, l->id, pos, &x);
        if (rc < 0) return rc;
        uint64_t gap_end = rc == 1 && x.off < b ? x.off : b;
        if (gap_end > pos &&
            (rc = visible(t, chain, depth, 0, pos, gap_end, vis, parent_data)))
            return rc;
        if (gap_end == b) break;
        pos = x.off + x.len;
    }
    return 0;
}

int usage_children(struct fsm_txn *t, const struct index_layer *l, uint64_t **ids, uint32_t *n)
{
    *ids = NULL;
    *n = 0;
    if (l->n_children == 0) return 0;
    uint64_t *out = malloc(l->n_children * sizeof(*out));
    if (!out) return -ENOMEM;
    if (l->n_children == 1) {
        out[0] = l->child_xor;
        *ids = out;
        *n = 1;
        return 0;
    }
    /* No child index: the layers table is small (a few per volume). */
    MDB_cursor *cur;
    int rc = index_mdb_err(mdb_cursor_open(t->txn, t->ix->dbi[INDEX_T_LAYERS], &cur));
    if (rc) {
        free(out);
        return rc;
    }
    MDB_val k, v;
    int mrc;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct index_layer c;
        if (k.mv_size != INDEX_ID_KEY_LEN ||
            (rc = index_dec_layer(index_key_get_u64(k.mv_data), &v, &c)))
            break;
        if (c.parent != l->id) continue;
        if (*n == l->n_children) {
            rc = -BD_ECORRUPT;
            break;
        }
        out[(*n)++] = c.id;
    }
    mdb_cursor_close(cur);
    if (!rc && mrc != MDB_NOTFOUND) rc = index_mdb_err(mrc);
    if (!rc && *n != l->n_children) rc = -BD_ECORRUPT;
    if (rc) {
        free(out);
        *n = 0;
        return rc;
    }
    *ids = out;
    return 0;
}

int usage_gained(struct fsm_txn *t, const uint64_t *children, uint32_t n, uint64_t a, uint64_t b)
{
    for (uint32_t i = 0; i < n; i++) {
        uint64_t under;
        int rc = usage_ext_bytes(t, children[i], a, b, false, &under);
        if (rc || (rc = usage_add(t, children[i], 0, (int64_t)under, 0))) return rc;
    }
    return 0;
}
