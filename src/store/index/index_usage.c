/* index_usage.c: the read side of usage accounting (index.h, "usage").
 *
 * Apply keeps, per layer, three counters in the usage table (usage.c says
 * how): its own DATA bytes, the DATA bytes of its parent it masks, and the
 * DATA bytes of its view.  Everything the API reports is a few of those
 * records combined, never a walk of the extents:
 *
 *   volume   provisioned = size; written = view of its top layer; unique =
 *            data of its top layer (nothing but the volume reads it: a
 *            snapshot freezes the top and stacks a new one, a clone stacks
 *            on a frozen layer);
 *   snapshot written = view of its layer; freed = what SNAPSHOT_DELETE's
 *            extmap_layer_release would drop: the layer stays if it is a
 *            top, has another snapshot or two children; with one child it
 *            merges into it, dropping what the child masks; with none it
 *            is freed, and so, in turn, may be its parent. */
#include "store/index/index.h"
#include "store/index/index_int.h"
#include "base/bd.h"

#include <string.h>

#define READER_CHECK(rd)                                                                   \
    do {                                                                                   \
        if (BD_NEVER(!(rd)->active)) return -EINVAL;                                       \
    } while (0)

int index_meta_get(struct index_reader *rd, struct index_meta *out)
{
    READER_CHECK(rd);
    return index_txn_get_meta(rd->ix, rd->txn, out);
}

int index_usage_get(struct index_reader *rd, uint64_t layer, struct index_usage *out)
{
    READER_CHECK(rd);
    return index_txn_usage(rd->ix, rd->txn, layer, out);
}

/* Layer ID's record and usage; a missing one is corruption. */
static int layer_and_usage(struct index_reader *rd, uint64_t id, struct index_layer *l,
                           struct index_usage *u)
{
    int rc = index_txn_layer(rd->ix, rd->txn, id, l);
    if (rc == 0) rc = index_txn_usage(rd->ix, rd->txn, id, u);
    return rc == -ENOENT ? -BD_ECORRUPT : rc;
}

int index_vol_usage(struct index_reader *rd, const struct index_vol *v,
                    struct index_vol_usage *out)
{
    READER_CHECK(rd);
    struct index_usage u;
    int rc = index_txn_usage(rd->ix, rd->txn, v->top_layer, &u);
    if (rc) return rc == -ENOENT ? -BD_ECORRUPT : rc;
    *out = (struct index_vol_usage){.provisioned_bytes = v->size,
                                    .written_bytes = u.view_bytes,
                                    .unique_bytes = u.data_bytes};
    return 0;
}

int index_snap_usage(struct index_reader *rd, const struct index_snap *s, uint64_t *written,
                     uint64_t *freed)
{
    READER_CHECK(rd);
    struct index_layer l;
    struct index_usage u;
    int rc = layer_and_usage(rd, s->layer, &l, &u);
    if (rc) return rc;
    *written = u.view_bytes;
    *freed = 0;
    if (l.n_snaps != 1 || l.is_top || l.n_children > 1) return 0;
    if (l.n_children == 1) {
        /* Merges into its child, which keeps its own extents over it. */
        struct index_usage cu;
        rc = index_txn_usage(rd->ix, rd->txn, l.child_xor, &cu);
        if (rc) return rc == -ENOENT ? -BD_ECORRUPT : rc;
        *freed = cu.masked_bytes;
        return 0;
    }
    /* Nothing reads it: freed, and its parent loses a child. */
    uint64_t sum = u.data_bytes, gone = l.id;
    for (uint64_t id = l.parent; id;) {
        struct index_layer p;
        struct index_usage pu;
        if ((rc = layer_and_usage(rd, id, &p, &pu))) return rc;
        if (p.is_top || p.n_snaps || p.n_children < 1 || p.n_children > 2) break;
        if (p.n_children == 2) {
            struct index_usage other;
            rc = index_txn_usage(rd->ix, rd->txn, p.child_xor ^ gone, &other);
            if (rc) return rc == -ENOENT ? -BD_ECORRUPT : rc;
            sum += other.masked_bytes;
            break;
        }
        sum += pu.data_bytes;
        gone = p.id;
        id = p.parent;
    }
    *freed = sum;
    return 0;
}

int index_flatten_get(struct index_reader *rd, uint64_t vol_id, struct index_flatten *out)
{
    READER_CHECK(rd);
    return index_txn_flatten(rd->ix, rd->txn, vol_id, out);
}
