/* agent_io.h: the volume back end's request paths (agent_io.c): READ,
 * WRITE, WRITE_ZEROES, TRIM, FLUSH and BLOCK_STATUS (their entry points are
 * agent_vol.h's agent_vol_read ...), their completions, the writes waiting
 * for journal space and the durability waiters (FLUSH, FUA).  Below the
 * registry and agent_attach.c, above agent_ship.c (agent_vol_int.h).
 * Everything runs on the reactor thread. */
#ifndef BD_AGENT_IO_H
#define BD_AGENT_IO_H

#include "roles/agent/agent_vol_int.h"

/* Writes waiting for journal space try again (or all fail: -ESHUTDOWN
 * when stopping, -EIO when V failed). */
void agent_io_drain_waiters(struct agent_vol_shared *v);
/* Complete the FLUSH and FUA requests whose condition now holds; start a
 * fence check (VOL_FLUSH) if one waits for it.  All fail -EIO if V failed. */
void agent_io_check_durable(struct agent_vol_shared *v);
/* The up-call `progress` (agent_vol_int.h): both of the above. */
void agent_io_progress(struct agent_vol_shared *v);
/* A snapshot barrier (VOL_BARRIER): REQ (its off, len and flags unused)
 * completes as a FLUSH submitted now would, so once every write V
 * acknowledged before this call is durable in the cluster; V must be
 * attached read-write. */
void agent_io_barrier(struct agent_vol_shared *v, struct agent_vol_req *req);
/* Fail requests that waited io_timeout_ms without the cluster taking
 * anything from V (NOW: util_mono_ms). */
void agent_io_tick(struct agent_vol_shared *v, uint64_t now);
/* Complete every waiting write and durability waiter with ERR. */
void agent_io_fail_all(struct agent_vol_shared *v, int err);
/* Forget V's leased maps (agent_mapc.h): its attach changed (attach,
 * re-attach, detach, fence, failure, free) or its size did.  A lease
 * answer asked for before this call is not kept. */
void agent_io_map_drop(struct agent_vol_shared *v);
/* Finish the direct writes whose pieces have all ended (the registry's
 * done event calls it; agent_io.c "large writes around the journal"):
 * answer, tombstone, or journal them.  While the registry is freed they
 * are answered -ESHUTDOWN. */
void agent_io_deliver(struct agent_vols *vs);
/* Free V's pools of read and direct write contexts (V is being freed;
 * none is in flight). */
void agent_io_free_vol(struct agent_vol_shared *v);

#endif
