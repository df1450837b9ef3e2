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
