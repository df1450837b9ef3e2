/* agent_cache.h: the agent's dirty map of one volume.
 *
 * For every block of the volume that the cluster may not have in its
 * newest version yet, the map says where that version is: data in the
 * journal (segment, file offset, and each block's XXH3-64), or "reads as
 * zeroes" (ZERO, TRIM), or LOST (an acknowledged write that the journal
 * lost: reads fail with EIO until the block is rewritten).  Blocks not in
 * the map are clean: the cluster holds their newest version.
 *
 * The map holds extents (runs of blocks written by one journal entry), not
 * single blocks, so a 1 GiB TRIM costs one node.  A newer write replaces
 * whatever it overlaps, cutting extents at its edges.  Every extent keeps
 * a reference on its journal segment (journal_ref), so a segment is
 * reclaimed once nothing in the map points into it.
 *
 * Versions and durability: `seq` is the journal sequence number of the
 * version an extent holds.  `need` is the lowest sequence number this
 * extent stands for: when a dirty version is overwritten before it was
 * shipped, the new extent inherits the old one's need, because a FLUSH
 * that covered the old version is now satisfied only once the newer one
 * is durable (shipping the old one no longer happens).  So "every version
 * up to S is durable" is exactly "no non-LOST extent has need <= S", and
 * the map keeps the minimum need of every subtree to answer that in O(1).
 *
 * Shipping: an extent with ship_id != 0 is being carried by that ship;
 * agent_cache_clean() removes those still in the map when the ship is acked
 * (versions overwritten meanwhile are other extents and stay).
 *
 * Structure: a treap keyed by the first block, nodes from a free list
 * (no allocation per write once warm, except the checksum array of a
 * multi-block write).  Single-threaded. */
#ifndef BD_AGENT_CACHE_H
#define BD_AGENT_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct journal;
struct agent_cache;

enum agent_cache_kind {
    AGENT_CACHE_DATA = 1, /* same values as enum journal_kind */
    AGENT_CACHE_ZERO = 2,
    AGENT_CACHE_TRIM = 3,
    AGENT_CACHE_LOST = 4,
};

struct agent_cache_csums; /* a shared array of block checksums */

struct agent_cache_ext {
    uint64_t start, nblk; /* blocks of the volume */
    uint64_t seq;         /* version: journal sequence number */
    uint64_t need;        /* lowest version this extent makes durable (UINT64_MAX if LOST) */
    uint64_t seg;         /* journal segment of the data or mark */
    uint64_t dpos;        /* DATA: file offset of block `start` in the segment */
    uint64_t ship_id;     /* 0 dirty; else the ship carrying this version */
    uint64_t born_ms;     /* when written (replayed ones: 0) */
    int kind;             /* enum agent_cache_kind */
    /* private: block checksums */
    uint64_t csum1;
    struct agent_cache_csums *cs;
    uint64_t cs_off;
};

/* Block I (0-based within the extent) checksum of a DATA extent. */
uint64_t agent_cache_ext_csum(const struct agent_cache_ext *e, uint64_t i);

/* J (borrowed, may be NULL in tests) gets a reference per extent per
 * segment.  Returns owned, or NULL. */
struct agent_cache *agent_cache_new(struct journal *j);
/* Drop every extent (and its journal references) and free. */
void agent_cache_free(struct agent_cache *c);

/* A new version over [START, START+NBLK).  DATA takes CSUMS (NBLK values,
 * copied).  Replaces what was there; the extent is dirty.  0 or -ENOMEM
 * (then the map is unchanged). */
struct agent_cache_version {
    int kind;
    uint64_t start, nblk, seq, seg, dpos, born_ms;
    const uint64_t *csums;
};
int agent_cache_put(struct agent_cache *c, const struct agent_cache_version *p);

/* Visit, in block order, the extents overlapping [START, END).  FN returns
 * false to stop.  FN may change e->ship_id and e->born_ms, nothing else,
 * and must not call other cache functions. */
typedef bool (*agent_cache_visit_fn)(void *arg, struct agent_cache_ext *e);
void agent_cache_walk(struct agent_cache *c, uint64_t start, uint64_t end, agent_cache_visit_fn fn,
                      void *arg);

/* A ship was acked: remove the extents in [START, END) carried by SHIP_ID.
 * Returns how many. */
unsigned agent_cache_clean(struct agent_cache *c, uint64_t start, uint64_t end, uint64_t ship_id);
/* The cluster holds a newer version of [START, END) than any extent here
 * (a write that went around the journal, journal.h JOURNAL_CLEAN): drop
 * every extent there, cutting those that straddle an edge; what a FLUSH
 * waited for from them is satisfied by that newer version.  0, or
 * -ENOMEM with the map unchanged but for a split extent. */
int agent_cache_forget(struct agent_cache *c, uint64_t start, uint64_t end);
/* Does any extent (of any kind) overlap [START, END)? */
bool agent_cache_overlaps(struct agent_cache *c, uint64_t start, uint64_t end);
/* A ship failed: its extents in [START, END) are dirty again. */
void agent_cache_unship(struct agent_cache *c, uint64_t start, uint64_t end, uint64_t ship_id);
/* Every extent is dirty again (after a re-attach fenced all ships). */
void agent_cache_unship_all(struct agent_cache *c);

/* Lowest need over all non-LOST extents; UINT64_MAX if none. */
uint64_t agent_cache_min_need(const struct agent_cache *c);
/* Same over the extents overlapping [START, END). */
uint64_t agent_cache_min_need_range(struct agent_cache *c, uint64_t start, uint64_t end);

/* The LOST extents referencing journal segment SEG, as up to MAX ranges in
 * OUT (start, nblk pairs); returns how many were found (may exceed MAX). */
size_t agent_cache_lost_in_seg(struct agent_cache *c, uint64_t seg, uint64_t (*out)[2], size_t max);

uint64_t agent_cache_dirty_bytes(const struct agent_cache *c); /* DATA blocks x 4096 */
uint64_t agent_cache_extents(const struct agent_cache *c);     /* all extents */
uint64_t agent_cache_lost_extents(const struct agent_cache *c);

#endif
