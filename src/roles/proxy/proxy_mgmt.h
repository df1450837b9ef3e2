/* proxy_mgmt.h: the services around the data path (see proxy_mgmt.c):
 *
 *   - applied-index waiters: run a callback once this proxy's FSM has
 *     applied a given raft index (reads, C7; attaches; admin mutations);
 *   - the blob id lease: ids leased from the index in ranges
 *     (ALLOC_BLOB_IDS) and handed out locally, one per new blob;
 *   - the leader's duties (node registration, partitions, GC), run from
 *     the tick; heartbeats from blob servers.
 *
 * It calls down only (proxy_cmd.c, proxy_blobs.c, proxy_index.c); the
 * modules above hear back through the callbacks of struct proxy_mgmt_wait
 * and struct proxy_mgmt_lease_wait.  All calls run on the reactor thread. */
#ifndef BD_PROXY_MGMT_H
#define BD_PROXY_MGMT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "net/wire.h"
#include "store/index/idxcmd.h"

struct proxy;

/* Allocate the state (P->mgmt).  0 or -ENOMEM. */
int proxy_mgmt_start(struct proxy *p);
/* Fail every applied-index waiter with -ESHUTDOWN and free the state.
 * Call after proxy_cmd_fail_all (the state holds commands). */
void proxy_mgmt_stop(struct proxy *p);
/* The FSM applied INDEX (RES: its result, borrowed; NULL for entries that
 * are not index commands): wake the waiters it satisfies. */
void proxy_mgmt_on_applied(struct proxy *p, uint64_t index, const struct idxcmd_result *res);
/* Every tick: waiter deadlines; on the leader, its duties and the lease. */
void proxy_mgmt_tick(struct proxy *p);
/* A blob server's heartbeat (HB borrowed): liveness, and on the leader its
 * registration if the index does not know it at that address. */
void proxy_mgmt_heartbeat(struct proxy *p, const struct wire_node_heartbeat_req *hb);
/* Adds "gc_tracked", "gc_deleted" and "index_space" (table pages, the
 * replicated limit, full or not, layers left to reap) to OUT. */
void proxy_mgmt_status(struct proxy *p, cJSON *out);
/* The index was at its replicated size limit at the last tick: new data
 * would be refused with ENOSPC when applied, so refuse it before putting
 * any blob. */
bool proxy_mgmt_index_full(struct proxy *p);

/* ---- applied-index waiters ------------------------------------------------------ */

struct proxy_mgmt_wait {
    void (*cb)(struct proxy_mgmt_wait *w, int err); /* 0 once applied >= index; -ETIMEDOUT,
                                                     * -ESHUTDOWN, -ENOMEM */
    void *data;
    uint64_t index;
    uint64_t deadline_ms;
    struct proxy_mgmt_wait *next; /* private */
};
/* Run W->cb once the applied index reaches W->index (at once, deferred, if
 * it already has), or with -ETIMEDOUT at the deadline.  W is kept until
 * its callback, which never runs inside this call. */
void proxy_mgmt_wait_add(struct proxy *p, struct proxy_mgmt_wait *w);

/* ---- the blob id lease ------------------------------------------------------------ */

/* A caller waiting until N ids are leased.  CB runs exactly once, never
 * inside proxy_mgmt_lease_wait: 0 when at least N ids are available (take
 * them with proxy_mgmt_lease_take in the callback), else the lease
 * command's error (or -EAGAIN), or the error given to
 * proxy_mgmt_lease_cancel. */
struct proxy_mgmt_lease_wait {
    void (*cb)(struct proxy_mgmt_lease_wait *w, int err);
    void *data;
    uint32_t n;
    struct proxy_mgmt_lease_wait *next; /* private */
};
/* Ids leased and not yet handed out. */
uint64_t proxy_mgmt_lease_left(struct proxy *p);
/* One id from the lease, or 0 if it ran dry (a refill is then under way). */
uint64_t proxy_mgmt_lease_take(struct proxy *p);
/* Park W (kept until its callback) until the next lease answer, asking
 * for one if none is in flight. */
void proxy_mgmt_lease_wait(struct proxy *p, struct proxy_mgmt_lease_wait *w);
/* Stopping: run every parked waiter's callback with ERR. */
void proxy_mgmt_lease_cancel(struct proxy *p, int err);

#endif
