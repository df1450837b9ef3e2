/* agent_ship.h: shipping a volume's dirty data to the proxies (agent_ship.c),
 * the lowest layer of the volume back end (agent_vol_int.h).  It calls only
 * the cluster client, the dirty map and base/fair.h; what its callers must
 * learn (a ship acked, a write of unknown outcome, a volume that cannot go
 * on) it reports through vs->up.  Everything runs on the reactor thread. */
#ifndef BD_AGENT_SHIP_H
#define BD_AGENT_SHIP_H

#include "roles/agent/agent_vol_int.h"

/* Put a new version of [START, START+NBLK) into V's dirty map, cut at ship
 * boundaries (a DATA piece never spans two ship_bytes-aligned chunks, a
 * ZERO/TRIM piece two 1 GiB chunks), so that every extent fits a ship
 * whole.  KIND is enum agent_cache_kind; CSUMS (DATA: NBLK values) and the
 * journal position (SEQ, SEG, DPOS) as journal_append returned them.
 * 0, or -ENOMEM with the pieces before the failure already in the map. */
int agent_ship_put_version(struct agent_vol_shared *v, int kind, uint64_t start, uint64_t nblk,
                           uint64_t seq, uint64_t seg, uint64_t dpos, const uint64_t *csums,
                           uint64_t born_ms);

/* Pick ships if V is ACTIVE, room is left (AGENT_VOL_MAX_SHIPS, ready and
 * in flight) and something asks for it: a drain, pressure, waiting writes
 * or flushes, or stopping; they go as the volumes' turns come (base/fair.h,
 * see agent_ship.c).  _age: the tick also ships extents older than
 * flush_age_ms. */
void agent_ship_kick(struct agent_vol_shared *v);
void agent_ship_kick_age(struct agent_vol_shared *v);

/* A write shipped as it arrives, around the journal and the dirty map
 * (agent_io.c's direct writes).  The caller sets CB, DATA, START and NBLK
 * (blocks within one ship_blocks-aligned chunk) and BUF (NBLK blocks,
 * borrowed until CB).  It goes as one VOL_WRITE in V's turn like any ship
 * (base/fair.h), its blocks counted in flight (the ordering rule).  CB
 * runs exactly once, once no connection holds BUF any more; it may run
 * from inside agent_ship_direct or any shipper call (a ship dropped
 * before it was sent), so it must only record the result and defer the
 * work (it must not call into the shipper):
 *   0            acked: durable in the cluster at V's generation; the
 *                leased maps of the range were dropped first and
 *                max_index raised (C7), as for any ship;
 *   -EAGAIN      not taken (dropped before it was sent, refused as not
 *                done, fenced by our own re-attach), or its outcome is
 *                unknown (a re-attach was started to fence it): the data
 *                must go through the journal, as the newest version;
 *   -EIO         the volume failed (fenced by another agent, refused);
 *   -ESHUTDOWN   the registry is being freed. */
struct agent_ship_direct {
    void (*cb)(struct agent_ship_direct *d, int err);
    void *data;
    uint64_t start, nblk;
    const uint8_t *buf;
    /* private */
    int refs;      /* the call, and every send of it a connection still holds */
    int err;
};
/* Slots left for ships (AGENT_VOL_MAX_SHIPS, in flight and ready). */
unsigned agent_ship_room(const struct agent_vol_shared *v);
/* Queue D (see above).  -EAGAIN, with no callback, if V is not ACTIVE, has
 * no slot left, or no memory: the caller journals the write instead. */
int agent_ship_direct(struct agent_vol_shared *v, struct agent_ship_direct *d);

/* Copy the LOST marks of the journal's oldest segment forward, then delete
 * the segments nothing references (after acks freed them). */
void agent_ship_reclaim(struct agent_vol_shared *v);

/* Journal data of [START, START+NBLK) (version SEQ in segment SEG) failed
 * its checksum: mark the blocks LOST (reads fail -EIO until rewritten),
 * count them, and never ship them. */
void agent_ship_mark_lost(struct agent_vol_shared *v, uint64_t start, uint64_t nblk, uint64_t seq,
                          uint64_t seg);

/* Every ship in flight becomes a zombie (its answer is ignored) and every
 * extent is dirty again: a newer attach generation fenced them all. */
void agent_ship_zombify_all(struct agent_vol_shared *v);

/* Free V's ship pool, buffers and in-flight ranges (V is being freed;
 * buffers a connection still holds are freed with its last reference). */
void agent_ship_free_vol(struct agent_vol_shared *v);

#endif
