/* agent_mapc.h: the agent's cache of leased blob maps (DESIGN §4, "reads
 * in two hops"; wire.h VOL_LEASE).
 *
 * A proxy answers VOL_LEASE with the resolved map of a volume range: which
 * blob bytes (or zeroes) make up each piece of it, on which servers.  The
 * agent keeps that map here until the lease ends, so a later read of the
 * range goes straight to a blob server: one hop instead of two.
 *
 * The contract this cache keeps for its caller (agent_io.c):
 *   - a lookup returns a map only while its lease runs (NOW < the expiry
 *     the caller gave at put, counted from when it SENT the request);
 *   - a range the agent itself wrote is invalidated (agent_mapc_invalidate)
 *     when the write is acknowledged and BEFORE the dirty copy of the range
 *     is released (agent_ship.c ship_clean): as long as the range is dirty
 *     reads take it from the journal, and once it is clean no map older
 *     than the write can be found (C7, C9).  A map resolved before such an
 *     ack and arriving after it is refused by the caller (its raft index is
 *     below the agent's max_index);
 *   - a volume's maps are dropped (agent_mapc_drop_vol) when its attach
 *     changes in any way (attach, re-attach, detach, fence, failure, free,
 *     resize), so nothing survives a generation change or a rollback.
 *
 * Layout: maps are kept per window of AGENT_MAPC_WINDOW bytes of a volume
 * (aligned), in a hash table on (volume, window) with one LRU list; the
 * total of what the windows hold is bounded by the byte budget given at
 * creation (least recently used windows go first).  Invalidation works on
 * whole windows.  Lookups copy the pieces they return, clipped to the
 * asked range, so callers hold no pointer into the cache.  Nothing here
 * reads a clock: NOW is always the caller's (util_mono_ms), so tests
 * inject time.  Not thread-safe (the reactor thread only). */
#ifndef BD_AGENT_MAPC_H
#define BD_AGENT_MAPC_H

#include <stdint.h>

#define AGENT_MAPC_WINDOW (1u << 20)
#define AGENT_MAPC_REPLICAS 3

/* One piece of a map: LEN bytes at volume offset OFF are bytes
 * [blob_off, blob_off + len) of BLOB_ID in PARTITION (held by NODES, 0 for
 * no member), or zeroes when BLOB_ID is 0. */
struct agent_mapc_piece {
    uint64_t off;
    uint64_t blob_id;
    uint32_t len;
    uint32_t blob_off;
    uint32_t partition;
    uint64_t nodes[AGENT_MAPC_REPLICAS];
};

struct agent_mapc;

/* A cache holding at most MAX_BYTES of maps.  NULL when out of memory. */
struct agent_mapc *agent_mapc_new(uint64_t max_bytes);
void agent_mapc_free(struct agent_mapc *mc);

/* Keep the map of VOL_ID's range [OFF, END) (OFF a multiple of
 * AGENT_MAPC_WINDOW), given as N pieces that tile it in order, until
 * EXPIRES_MS.  It replaces what the windows it touches held; a window the
 * map covers only in part keeps that part (lookups beyond it miss).
 * Returns 0, -EINVAL (pieces that do not tile the range, or OFF not
 * aligned), or -ENOMEM (nothing was kept for the windows not stored). */
int agent_mapc_put(struct agent_mapc *mc, uint64_t vol_id, uint64_t off, uint64_t end,
                   uint64_t expires_ms, const struct agent_mapc_piece *p, uint32_t n);

/* The map of VOL_ID's [OFF, OFF + LEN) at NOW: 0 with *N pieces in OUT,
 * clipped to the range; -ENOENT if some part is not cached; -ETIME if some
 * part's lease has ended (that window is dropped); -E2BIG if it takes more
 * than MAX pieces.  A hit makes its windows the most recently used. */
int agent_mapc_get(struct agent_mapc *mc, uint64_t vol_id, uint64_t off, uint64_t len,
                   uint64_t now, struct agent_mapc_piece *out, uint32_t max, uint32_t *n);

/* The same lookup over N pieces held by the caller (a VOL_LEASE answer
 * used for the read that asked for it): 0, -ENOENT (not covered), -E2BIG. */
int agent_mapc_clip(const struct agent_mapc_piece *p, uint32_t n, uint64_t off, uint64_t len,
                    struct agent_mapc_piece *out, uint32_t max, uint32_t *nout);

/* Forget every window of VOL_ID that overlaps [OFF, OFF + LEN). */
void agent_mapc_invalidate(struct agent_mapc *mc, uint64_t vol_id, uint64_t off, uint64_t len);
/* Forget every window of VOL_ID. */
void agent_mapc_drop_vol(struct agent_mapc *mc, uint64_t vol_id);

/* What it holds: bytes (accounted as the budget counts them), windows. */
uint64_t agent_mapc_bytes(const struct agent_mapc *mc);
uint64_t agent_mapc_windows(const struct agent_mapc *mc);

#endif
