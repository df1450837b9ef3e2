/* proxy_view.h: the cluster as placement sees it (see proxy_view.c).
 *
 * One snapshot of the facts placement decides on: the registered blob
 * servers (capacity, fill, liveness, failure domains, partition counts),
 * the partition table with the position of each member, the separation
 * the servers allow, and the weights a new blob is placed by.  It joins
 * the index (nodes, partitions: replicated) with proxy_blobs (heartbeats:
 * this proxy's own view); the decisions themselves are proxy_plan.h's
 * pure functions.
 *
 * Layering: above proxy_index.c and proxy_blobs.c, which it reads; below
 * proxy_io.c, proxy_mgmt.c and proxy_repair.c, which read it.  Reactor
 * thread only. */
#ifndef BD_PROXY_VIEW_H
#define BD_PROXY_VIEW_H

#include <stdbool.h>
#include <stdint.h>

#include "roles/proxy/proxy_plan.h"
#include "store/index/idxcmd.h"
#include "store/index/index.h"

struct proxy;

/* A view is rebuilt at most this often unless an applied entry changed
 * nodes or partitions (heartbeats move fills and liveness in between). */
#define PROXY_VIEW_MAX_AGE_MS 250u

struct proxy_view {
    struct index_node *inodes;       /* registered, not retired; ascending by id */
    struct proxy_plan_node *nodes;   /* the same servers, same order */
    unsigned n_nodes;
    struct index_part *parts;        /* every partition, ascending by id */
    unsigned n_parts;
    int *members;                    /* 3 per partition: index in nodes, -1 if not there */
    uint64_t *cum;                   /* placement weights (proxy_plan_place_weights) */
    uint64_t total;                  /* their sum: 0 when no partition is open */
    enum proxy_plan_level level;     /* the separation the accepting servers allow */
    uint64_t built_ms;               /* monotonic */
};

/* The current view, rebuilt if stale.  Borrowed: valid until the next call
 * (of any proxy_view function) on the reactor.  NULL if none could be
 * built (the index unreadable before the first build, or out of memory);
 * after a failed rebuild the previous view is returned. */
const struct proxy_view *proxy_view_get(struct proxy *p);
/* The FSM applied RES (borrowed, may be NULL): rebuild before the next use
 * if it changed nodes or partitions. */
void proxy_view_on_applied(struct proxy *p, const struct idxcmd_result *res);
/* The index of NODE_ID in V's nodes, or -1. */
int proxy_view_find(const struct proxy_view *v, uint64_t node_id);
/* Free the view (stop). */
void proxy_view_fini(struct proxy *p);

#endif
