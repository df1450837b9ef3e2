/* rplan.c: the repair decisions (see rplan.h).
 *
 * The diff.  Each replica of a partition lists its blob ids in ascending
 * order, a page at a time.  Pages of different replicas end at different
 * ids, so after one page from each, only the ids up to the smallest "last
 * id" among pages that have more are known for every replica; the next
 * round starts after that bound (ids past it are fetched again, which
 * costs a little bandwidth and keeps the merge stateless).  Within the
 * bound, an id a listed replica lacks is missing there.
 *
 * The orphan ledger.  An id listed on a replica that the index does not
 * know may be a write in flight: its blob was put before the index entry
 * that makes it live is committed.  So a copy is deleted only after this
 * leader has seen it unknown for the whole orphan grace (configured above
 * twice the proxy's write deadline, see config.h); the ledger remembers
 * when it was first seen.  A new leader starts an empty ledger, which only
 * delays deletions.  Entries of copies that went away are pruned after
 * each pass.
 *
 * Replacement.  A member is replaced only while another member is up:
 * with all three down the data is on the down servers, and pointing the
 * partition elsewhere would turn every copy into a stray. */
#include "roles/proxy/rplan.h"
#include "base/bd.h"

#include <stdlib.h>
#include <string.h>

#define ORPHANS_DEFAULT_MAX 65536u

/* ---- the per-partition diff ------------------------------------------------------ */

int rplan_page_check(const struct rplan_page *pg, uint64_t cursor)
{
    if (!pg->listed) return 0;
    if (pg->more && pg->n == 0) return -EPROTO;
    uint64_t prev = cursor;
    for (uint32_t i = 0; i < pg->n; i++) {
        if (pg->ids[i] <= prev) return -EPROTO;
        prev = pg->ids[i];
    }
    return 0;
}

uint64_t rplan_bound(const struct rplan_page pages[RPLAN_REPLICAS])
{
    uint64_t bound = UINT64_MAX;
    for (int r = 0; r < RPLAN_REPLICAS; r++) {
        const struct rplan_page *pg = &pages[r];
        if (pg->listed && pg->more && pg->n && pg->ids[pg->n - 1] < bound)
            bound = pg->ids[pg->n - 1];
    }
    return bound;
}

uint32_t rplan_merge(const struct rplan_page pages[RPLAN_REPLICAS], uint64_t bound,
                     struct rplan_id *out, uint32_t cap)
{
    uint32_t pos[RPLAN_REPLICAS] = {0};
    uint32_t n = 0;
    while (n < cap) {
        uint64_t next = UINT64_MAX;
        bool any = false;
        for (int r = 0; r < RPLAN_REPLICAS; r++) {
            const struct rplan_page *pg = &pages[r];
            if (!pg->listed || pos[r] >= pg->n || pg->ids[pos[r]] > bound) continue;
            if (!any || pg->ids[pos[r]] < next) next = pg->ids[pos[r]];
            any = true;
        }
        if (!any) break;
        uint8_t present = 0;
        for (int r = 0; r < RPLAN_REPLICAS; r++) {
            const struct rplan_page *pg = &pages[r];
            if (pg->listed && pos[r] < pg->n && pg->ids[pos[r]] == next) {
                present |= (uint8_t)(1u << r);
                pos[r]++;
            }
        }
        out[n++] = (struct rplan_id){.id = next, .present = present};
    }
    return n;
}

enum rplan_action rplan_classify(const struct rplan_blob *b, uint32_t part)
{
    if (!b->known || b->partition != part) return RPLAN_ORPHAN;
    if (b->dead) return RPLAN_GC;
    return RPLAN_KEEP;
}

/* ---- the orphan ledger ------------------------------------------------------------- */

void rplan_orphans_init(struct rplan_orphans *o, uint32_t max)
{
    memset(o, 0, sizeof(*o));
    o->max = max ? max : ORPHANS_DEFAULT_MAX;
}

void rplan_orphans_fini(struct rplan_orphans *o)
{
    free(o->slot);
    memset(o, 0, sizeof(*o));
}

static uint32_t hash(uint64_t node, uint64_t id)
{
    uint64_t h = id * 0x9E3779B97F4A7C15ull ^ node * 0xC2B2AE3D27D4EB4Full;
    return (uint32_t)(h ^ (h >> 29));
}

/* The slot holding (NODE, ID), or the empty slot where it would go. */
static uint32_t probe(const struct rplan_orphans *o, uint64_t node, uint64_t id)
{
    uint32_t mask = o->cap - 1, i = hash(node, id) & mask;
    while (o->slot[i].node && !(o->slot[i].node == node && o->slot[i].blob_id == id))
        i = (i + 1) & mask;
    return i;
}

static int grow(struct rplan_orphans *o)
{
    uint32_t cap = o->cap ? o->cap * 2 : 1024;
    struct rplan_orphan *old = o->slot, *ns = calloc(cap, sizeof(*ns));
    if (!ns) return -ENOMEM;
    uint32_t old_cap = o->cap;
    o->slot = ns;
    o->cap = cap;
    for (uint32_t i = 0; i < old_cap; i++)
        if (old[i].node) o->slot[probe(o, old[i].node, old[i].blob_id)] = old[i];
    free(old);
    return 0;
}

int rplan_orphan_note(struct rplan_orphans *o, uint64_t node, uint32_t partition,
                      uint64_t blob_id, uint64_t now_ms, uint64_t grace_ms)
{
    if (!BD_ALWAYS(node != 0)) return -ENOSPC; /* 0 marks an empty slot */
    if (o->cap) {
        struct rplan_orphan *e = &o->slot[probe(o, node, blob_id)];
        if (e->node) {
            e->last_ms = now_ms;
            if (e->partition != partition) { /* listed elsewhere now: start over */
                e->partition = partition;
                e->first_ms = now_ms;
            }
            return now_ms >= e->first_ms && now_ms - e->first_ms >= grace_ms ? 1 : 0;
        }
    }
    if (o->n >= o->max) return -ENOSPC;
    if ((o->n + 1) * 2 > o->cap && grow(o) < 0) return -ENOSPC;
    o->slot[probe(o, node, blob_id)] = (struct rplan_orphan){
        .node = node, .blob_id = blob_id, .partition = partition, .first_ms = now_ms,
        .last_ms = now_ms};
    o->n++;
    return grace_ms == 0 ? 1 : 0;
}

const struct rplan_orphan *rplan_orphan_find(const struct rplan_orphans *o, uint64_t node,
                                             uint64_t blob_id)
{
    if (!o->cap) return NULL;
    const struct rplan_orphan *e = &o->slot[probe(o, node, blob_id)];
    return e->node ? e : NULL;
}

void rplan_orphan_forget(struct rplan_orphans *o, uint64_t node, uint64_t blob_id)
{
    if (!o->cap) return;
    uint32_t mask = o->cap - 1, i = probe(o, node, blob_id);
    if (!o->slot[i].node) return;
    /* Backward-shift deletion: move later members of the probe run into
     * the hole when their home slot does not lie in (hole, j]. */
    uint32_t j = i;
    for (;;) {
        o->slot[i].node = 0;
        for (;;) {
            j = (j + 1) & mask;
            if (!o->slot[j].node) {
                o->n--;
                return;
            }
            uint32_t home = hash(o->slot[j].node, o->slot[j].blob_id) & mask;
            bool in_run = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (!in_run) break;
        }
        o->slot[i] = o->slot[j];
        i = j;
    }
}

void rplan_orphans_prune(struct rplan_orphans *o, uint64_t cutoff_ms)
{
    if (!o->cap) return;
    /* Rebuild in place of deleting one by one: simpler, and a prune runs
     * once per pass. */
    struct rplan_orphan *old = o->slot;
    uint32_t cap = o->cap;
    struct rplan_orphan *ns = calloc(cap, sizeof(*ns));
    if (!ns) return; /* keep them; the next prune tries again */
    o->slot = ns;
    o->n = 0;
    for (uint32_t i = 0; i < cap; i++) {
        if (!old[i].node || old[i].last_ms < cutoff_ms) continue;
        o->slot[probe(o, old[i].node, old[i].blob_id)] = old[i];
        o->n++;
    }
    free(old);
}

/* ---- replacing a lost server ---------------------------------------------------------- */

int rplan_replace_slot(const uint64_t down_ms[RPLAN_REPLICAS], uint64_t after_ms)
{
    bool any_up = false;
    for (int i = 0; i < RPLAN_REPLICAS; i++)
        if (down_ms[i] == 0) any_up = true;
    if (!any_up) return -1;
    for (int i = 0; i < RPLAN_REPLICAS; i++)
        if (down_ms[i] && down_ms[i] >= after_ms) return i;
    return -1;
}

