/* rplan.h: the repair decisions, as pure functions over plain data (no
 * index, no sockets, no clock), so tests/unit/test_rplan.c can drive every
 * case by hand.  proxy_repair.c gathers the facts and acts on the answers.
 *
 *   - the per-partition diff: the blob lists of a partition's replicas
 *     arrive in pages; rplan_bound says up to which id the pages together
 *     describe every replica, rplan_merge gives each id there with a bit
 *     per replica that holds it, rplan_classify says what to do with it;
 *   - the orphan ledger: how long each index-unknown copy has been seen,
 *     so that one is deleted only after the orphan grace;
 *   - replacing a lost server: which member to replace (by whom is
 *     proxy_plan_replacement's: capacity and failure domains).
 *
 * Nothing here allocates except the orphan ledger, which says so. */
#ifndef BD_RPLAN_H
#define BD_RPLAN_H

#include <stdbool.h>
#include <stdint.h>

#define RPLAN_REPLICAS 3

/* ---- the per-partition diff -------------------------------------------------- */

/* One page of one replica's BLOB_LIST (ids borrowed). */
struct rplan_page {
    const uint64_t *ids;      /* ascending */
    uint32_t n;
    bool more;                /* the replica has ids after the last one */
    bool listed;              /* false: the replica could not be listed (down) */
};

/* Check a page a server sent for the range after CURSOR: ids strictly
 * ascending and above CURSOR, and a page that says "more" is not empty.
 * 0 or -EPROTO (the server's answer must not be acted on). */
int rplan_page_check(const struct rplan_page *pg, uint64_t cursor);

/* The highest id up to which the pages together describe every listed
 * replica: the smallest last id of a page that has more, or UINT64_MAX
 * when none has more (the lists are complete). */
uint64_t rplan_bound(const struct rplan_page pages[RPLAN_REPLICAS]);

struct rplan_id {
    uint64_t id;
    uint8_t present;          /* bit r: replica r lists it */
};
/* The union of the pages' ids up to BOUND, ascending, each once with its
 * presence bits, into OUT (CAP entries; the union of three pages never
 * exceeds the sum of their lengths).  Returns the count. */
uint32_t rplan_merge(const struct rplan_page pages[RPLAN_REPLICAS], uint64_t bound,
                     struct rplan_id *out, uint32_t cap);

/* What the index says about one blob id. */
struct rplan_blob {
    bool known;               /* a blob record exists */
    bool dead;                /* its refcount reached zero: in the gc table */
    uint32_t partition;       /* where the index places it */
};

enum rplan_action {
    RPLAN_KEEP,               /* live here: nothing to delete; copy where missing */
    RPLAN_ORPHAN,             /* the index does not know it here: delete after the grace */
    RPLAN_GC,                 /* dead: GC deletes it (proxy_mgmt.c); leave it alone */
};
/* Decide for a blob id listed in partition PART.  An id the index places
 * in another partition is an orphan here (a blob id lives in exactly one
 * partition). */
enum rplan_action rplan_classify(const struct rplan_blob *b, uint32_t part);

/* The replicas that miss a KEEP blob: listed ones not in PRESENT. */
static inline uint8_t rplan_missing(uint8_t listed, uint8_t present)
{
    return (uint8_t)(listed & ~present & ((1u << RPLAN_REPLICAS) - 1));
}

/* ---- the orphan ledger --------------------------------------------------------- */

/* (node, blob id) -> when this leader first and last saw the copy while
 * the index did not know it.  An open-addressing hash table (linear
 * probing, at most half full), bounded by MAX entries. */
struct rplan_orphan {
    uint64_t node;            /* 0: empty slot */
    uint64_t blob_id;
    uint32_t partition;       /* where the server lists it */
    uint64_t first_ms;
    uint64_t last_ms;
};
struct rplan_orphans {
    struct rplan_orphan *slot;
    uint32_t cap;             /* a power of two, or 0 */
    uint32_t n;
    uint32_t max;             /* entries tracked at most */
};

/* MAX entries at most (0: a default of 65536).  Caller storage; nothing
 * allocated until the first note. */
void rplan_orphans_init(struct rplan_orphans *o, uint32_t max);
void rplan_orphans_fini(struct rplan_orphans *o);
/* Note that NODE lists BLOB_ID in PARTITION at NOW and the index does not
 * know it.  Returns 1 if it was first seen at least GRACE_MS ago (delete
 * it now), 0 if it must wait, -ENOSPC if the ledger is full or out of
 * memory (not tracked; it will be seen again in a later pass). */
int rplan_orphan_note(struct rplan_orphans *o, uint64_t node, uint32_t partition,
                      uint64_t blob_id, uint64_t now_ms, uint64_t grace_ms);
/* Forget one (deleted, or the index knows it after all). */
void rplan_orphan_forget(struct rplan_orphans *o, uint64_t node, uint64_t blob_id);
/* The entry for (NODE, BLOB_ID), or NULL.  Borrowed until the next change. */
const struct rplan_orphan *rplan_orphan_find(const struct rplan_orphans *o, uint64_t node,
                                             uint64_t blob_id);
/* Drop every entry last seen before CUTOFF_MS (the copy went away). */
void rplan_orphans_prune(struct rplan_orphans *o, uint64_t cutoff_ms);

/* ---- replacing a lost server ------------------------------------------------------ */

/* Which member of a partition to replace now: the first whose server has
 * been down for at least AFTER_MS (DOWN_MS[i]: how long member i has been
 * down, 0 if up), provided another member is up to copy from.  A partition
 * with no member up is left alone: its data is on the down servers, and
 * re-pointing it would only orphan those copies.  Returns the slot or -1. */
int rplan_replace_slot(const uint64_t down_ms[RPLAN_REPLICAS], uint64_t after_ms);

#endif
