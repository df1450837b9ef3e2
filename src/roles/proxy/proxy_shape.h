/* proxy_shape.h: the admin API for the cluster's shape (see
 * proxy_shape.c): blob servers (list, drain, undrain, remove) and the
 * placement and rebuild parts of GET /v1/cluster.
 *
 * And the Raft group's membership: /v1/proxies (list, add, remove) and
 * the promotion of added proxies once they have caught up.
 *
 * A request handler beside proxy_admin.c: it reads the index and the view
 * (proxy_view.c), asks proxy_move.c for progress, submits index commands
 * (proxy_cmd.c) and waits for them here (proxy_mgmt.c).  Reactor thread
 * only. */
#ifndef BD_PROXY_SHAPE_H
#define BD_PROXY_SHAPE_H

#include <cjson/cJSON.h>

#include "store/index/index.h"

struct proxy;

/* Add the routes to P->admin.  0 or -ENOMEM. */
int proxy_shape_routes(struct proxy *p);
/* The Raft group as this proxy knows it, one object per member into the
 * array OUT: id, addr, role (voter, standby, spare), state (leader,
 * follower, unreachable; this proxy's own Raft state), and for this proxy
 * term, commit and applied index. */
void proxy_shape_proxies_json(struct proxy *p, cJSON *out);
/* On the leader, every tick: make each spare a voter (libraft catches it
 * up first), one change at a time. */
void proxy_shape_tick(struct proxy *p);
/* Stopping, before the admin endpoint goes (it answers the requests left
 * itself): detach the requests this module still owes an answer. */
void proxy_shape_stop(struct proxy *p);
/* Free the module's state (after consensus closed). */
void proxy_shape_fini(struct proxy *p);
/* GET /v1/status's additions on the leader, for the status page's
 * progress rows: "rebuild" (every move) and "drain" (one per draining
 * server), each {done, total, rate_per_s, eta_s, unit} in bytes. */
void proxy_shape_status(struct proxy *p, cJSON *out);
/* GET /v1/cluster's additions: "placement" and "rebuild" on OUT. */
void proxy_shape_cluster_json(struct proxy *p, cJSON *out);
/* A blob server's entry (OUT): domains, state, slots, partitions. */
void proxy_shape_node_json(struct proxy *p, const struct index_node *n, cJSON *out);
/* A partition's entry (OUT): the separation of its members. */
void proxy_shape_part_json(struct proxy *p, const struct index_part *pt, cJSON *out);

#endif
