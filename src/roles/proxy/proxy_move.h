/* proxy_move.h: moving partition replicas on the Raft leader (see
 * proxy_move.c): replacing lost servers, draining servers, rebalancing
 * by capacity, and filling each new replica, checkpointed in the index.
 *
 * Layering: below proxy_repair.c and proxy_admin.c (they ask for status
 * and progress), above proxy_view.c, proxy_cmd.c, proxy_blobs.c and
 * proxy_index.c.  Reactor thread only; the leader acts, every proxy
 * answers status (followers report what the index says). */
#ifndef BD_PROXY_MOVE_H
#define BD_PROXY_MOVE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

struct proxy;

/* ids per BLOB_LIST page, BLOB_PULLs in flight per move and bytes per
 * pull, moves of draining servers at once, and how soon a page that
 * failed is tried again. */
#define PROXY_MOVE_PAGE 1024u
#define PROXY_MOVE_PULLS 4u
#define PROXY_MOVE_PULL_BYTES (32u << 20)
#define PROXY_MOVE_BURST_DIV 4u /* the token bucket holds 1/4 s of rebuild_bytes_per_sec */
#define PROXY_MOVE_DRAINS 4u
#define PROXY_MOVE_RETRY_MS 2000u

/* Allocate the state (P->move).  0 or -ENOMEM. */
int proxy_move_start(struct proxy *p);
/* Stop starting work; the state goes after the last reply in flight.
 * Call before proxy_blobs_free. */
void proxy_move_stop(struct proxy *p);
/* On the leader: note servers down, start moves (lost servers first, then
 * drains, then rebalancing), and advance every move a bounded step. */
void proxy_move_tick(struct proxy *p);

/* Progress of the moves under way (and, for a drain, of the whole
 * drain): bytes copied and left, the copy rate over the last seconds
 * and the time left at that rate (-1: unknown). */
struct proxy_move_progress {
    uint32_t moves;            /* moves under way */
    uint32_t partitions_left;  /* replicas still to move (a drain: on that server) */
    uint64_t bytes_done;
    uint64_t bytes_left;
    double rate;               /* bytes per second */
    double eta_s;              /* -1 when the rate is 0 */
};
/* Progress of every move (NODE 0), or of draining NODE. */
void proxy_move_progress(struct proxy *p, uint64_t node, struct proxy_move_progress *out);
/* "rebuild": the totals and one object per move, for /v1/cluster. */
void proxy_move_status(struct proxy *p, cJSON *out);
/* Members replaced after their server was lost, by this proxy as leader. */
uint64_t proxy_move_replaced(struct proxy *p);
/* Partition PART has a replica being filled (anti-entropy leaves it to
 * the move).  Reads the index. */
bool proxy_move_busy(struct proxy *p, uint32_t part);

#endif
