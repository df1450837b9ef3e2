/* proxy_repair.h: keeping three good copies of every live blob, and no
 * orphans (DESIGN.md §4 and §6; CONTRACT.md C3, C9, C13, C14, C18).
 *
 * The Raft leader runs it; on other proxies it only answers status calls.
 * Three duties, all driven from the proxy's tick (proxy_repair_tick):
 *
 *   heal       a blob server lists the blobs that failed their checksum in
 *              BLOB_REPORT; each one the index says is live there is read
 *              from another replica, verified against the index checksum,
 *              and put back (same id, same bytes: the store heals it);
 *   sync       anti-entropy, one partition at a time, a full pass every
 *              repair_interval_ms: the replicas' BLOB_LISTs are compared
 *              with the index; a live blob missing on a replica is copied
 *              there, a copy the index does not know is deleted once it has
 *              been seen for orphan_grace_ms;
 *   replace    a blob server down for replace_after_ms is swapped out of
 *              each of its partitions (REPLACE_REPLICA, epoch + 1) for an up
 *              server, least loaded first; the sync then fills it.
 *
 * Files, top-down: proxy_repair.c (heal, replace, leadership, status),
 * proxy_resync.c (sync, the copy/delete engine both use, the state's
 * lifetime), rplan.c (the decisions, pure functions), proxy_repair_int.h
 * (their shared state).
 *
 * All calls run on the reactor thread. */
#ifndef BD_PROXY_REPAIR_H
#define BD_PROXY_REPAIR_H

#include <cjson/cJSON.h>

struct proxy;
struct index_part;

/* Allocate the repair state (P->repair).  0 or -ENOMEM. */
int proxy_repair_start(struct proxy *p);
/* Stop starting work; what is in flight finishes (or fails as the blob
 * pool is freed) and the state is freed after the last of it.  Call before
 * proxy_blobs_free. */
void proxy_repair_stop(struct proxy *p);
/* Advance every duty a bounded step (does nothing on a follower). */
void proxy_repair_tick(struct proxy *p);
/* Counters and state for /v1/status: adds "repair" to OUT. */
void proxy_repair_status(struct proxy *p, cJSON *out);
/* The last sync of partition PT for /v1/cluster: adds "sync" to OUT (null
 * if this proxy has not synced it as leader). */
void proxy_repair_part_json(struct proxy *p, const struct index_part *pt, cJSON *out);

#endif
