/* proxy_int.h: the proxy role's shared state, private to
 * src/roles/proxy/.  Each module's functions are declared in its own
 * header; this one holds only the state they share, struct proxy (named
 * after the role, as proxy.h is; each field says which module owns it).
 *
 * The role reads top-down; a module calls only modules on a lower line,
 * and hears back from them only through the callbacks their headers name:
 *
 *   proxy.c          role ops, the wire listener and dispatch, the tick,
 *                    start and stop
 *   proxy_io.c       the agents' requests: attach, write, read, map, flush
 *   proxy_admin.c    the admin HTTP API and /v1/status
 *     proxy_health.c /v1/health: the checks' inputs, since when, probes
 *                    (healthplan.c decides, a pure function)
 *     proxy_backup.c its incremental backup calls (diff, data, import)
 *     proxy_qos.c    its QoS calls (profiles, volumes' limits) and the
 *                    agents' QoS reports (VOL_QOS, noted by proxy_io.c)
 *     proxy_life.c   its snapshot, group, rollback and flatten calls
 *   proxy_shape.c    its /v1/nodes and /v1/proxies (drain, remove, Raft
 *                    membership), placement and rebuild in /v1/cluster
 *   proxy_repair.c   heal bad copies (the leader)
 *     proxy_resync.c anti-entropy and the copy/delete engine under repair
 *                    (proxy_repair_int.h: their shared state)
 *   proxy_move.c     replica moves (lost servers, drains, rebalancing) and
 *                    filling new replicas blob to blob, checkpointed
 *   proxy_rewrite.c  the blob rewrite that bounds space (the leader)
 *   proxy_flatten.c  copying what clones inherit into them (the leader)
 *   proxy_copy.c     copy blob ranges into a new blob (rewrite, flatten)
 *   proxy_mgmt.c     applied-index waiters, the blob id lease, leader
 *                    duties (registration, partitions, GC)
 *   proxy_cmd.c      submitting index commands; group commit of writes
 *   proxy_view.c     the cluster as placement sees it: servers, domains,
 *                    fills, partitions and placement weights
 *   proxy_blobs.c    blob server liveness and replica I/O
 *   proxy_peers.c    links to the other proxies of the Raft group
 *   proxy_index.c    read txns on the index, the cached partition table
 *   proxy_volstats.c per-volume I/O over the last minutes (no calls out)
 *   proxy_plan.c     the data path's decisions, pure functions: write
 *     rplan.c        cutting, fencing, placement, read resolution; and
 *                    repair's (no state of their own, no I/O)
 *
 * Callbacks up: struct proxy_cmd / proxy_cmd_write (proxy_cmd.h), struct
 * proxy_mgmt_wait / proxy_mgmt_lease_wait (proxy_mgmt.h), the proxy_blobs_*
 * request structs (proxy_blobs.h), struct proxy_repair's on_heal_done
 * (proxy_repair_int.h), struct consensus_change (consensus.h), and the
 * FSM's on_applied (set by proxy.c).
 *
 * Everything runs on the reactor thread.  The index is written only by the
 * FSM (libraft's apply, on the reactor); the modules only read it, through
 * proxy_index.h. */
#ifndef BD_PROXY_INT_H
#define BD_PROXY_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "net/admin.h"
#include "net/conn.h"
#include "net/link.h"
#include "net/listener.h"
#include "runtime/metrics.h"
#include "runtime/reactor.h"
#include "store/index/fsm.h"
#include "store/index/index.h"
#include "store/raft/consensus.h"
#include "roles/role.h"

struct proxy_conn;        /* an accepted wire connection (proxy.c) */
struct proxy_cmd;         /* proxy_cmd.h */
struct proxy_cmd_write;
struct proxy_mgmt;        /* proxy_mgmt.c */
struct proxy_mgmt_wait;   /* proxy_mgmt.h */
struct proxy_blobs;       /* proxy_blobs.h */
struct proxy_repair;      /* proxy_repair_int.h */
struct proxy_view_state;  /* proxy_view.c */
struct proxy_move;        /* proxy_move.c */
struct proxy_peer;        /* proxy_peers.c */
struct proxy_shape_state; /* proxy_shape.c */
struct proxy_volstats;    /* proxy_volstats.h */
struct proxy_qos_seen;    /* proxy_qos.h */
struct proxy_health;      /* proxy_health.h */
struct proxy_rewrite;     /* proxy_rewrite.c */
struct proxy_flatten;     /* proxy_flatten.c */

struct proxy {
    struct role *role;
    struct reactor *rx;
    const struct cfg *top;
    const struct cfg_proxy *cfg;
    const char *tag;
    struct conn_auth auth;
    struct tls_ctx *tls;           /* this proxy's certificate; NULL with insecure_plaintext */
    struct taskq *scanq;           /* full index scans off the reactor (proxy_admin.c) */
    unsigned scans;                /* ... queued or running */
    struct conn_limits limits;     /* of the wire listener */
    struct conn_opts srv_opts;     /* accepted connections */
    struct conn_opts blob_opts;    /* links to blob servers */
    struct conn_opts peer_opts;    /* links to peer proxies (PROPOSE) */

    struct index *ix;
    struct index_reader *rd;       /* reactor-thread reads (proxy_index.h) */
    struct index_reader *rd_lists; /* proxy_index.c: its whole-table lists */
    struct fsm_raft fr;
    struct consensus *cons;
    struct proxy_blobs *blobs;
    struct turnq *wq;              /* turns between volumes' writes (base/turnq.h) */
    struct listener *lis;
    struct admin *admin;
    struct proxy_peer *peers;      /* proxy_peers.c: links to the other proxies */
    unsigned n_peers;

    struct proxy_conn *conns;      /* accepted connections (proxy.c) */
    /* proxy.c: readiness (role.h ready): the commit index this proxy
     * learned when it first knew a leader, which it must apply before it
     * says it serves; valid once has_ready_target */
    uint64_t ready_target;
    bool has_ready_target;
    bool stopping;
    void (*stop_done)(struct role *r);
    struct event *tick_ev;         /* leader duties, waiter deadlines */

    /* proxy_cmd.c: commands submitted and not yet finished; the queue of
     * writes for the next WRITE_BATCH and the batches being committed */
    struct proxy_cmd *cmds;
    struct proxy_cmd_write *wq_head, *wq_tail;
    unsigned wq_len;
    unsigned batches_in_flight;

    /* proxy_mgmt.c: applied-index waiters, unordered (few at a time) */
    struct proxy_mgmt_wait *waiters;
    /* proxy_mgmt.c: the lease, leader duties */
    struct proxy_mgmt *mgmt;

    /* proxy_index.c: the partition table as placement last read it */
    struct index_part *parts;
    unsigned n_parts;
    bool parts_dirty;              /* an applied entry may have changed it */
    /* proxy_io.c: placement's random state (proxy_plan_place) */
    uint64_t place_rng;
    /* proxy_view.c: the cluster as placement sees it */
    struct proxy_view_state *view;

    /* proxy_repair.c: heal, anti-entropy */
    struct proxy_repair *repair;
    /* proxy_move.c: replica moves and their copies */
    struct proxy_move *move;
    /* proxy_shape.c: requests awaiting an answer, the promotion in flight */
    struct proxy_shape_state *shape;
    /* proxy_rewrite.c: the blob rewrite (leader) */
    struct proxy_rewrite *rewrite;
    /* proxy_flatten.c: clones' flattens (leader) */
    struct proxy_flatten *flatten;

    /* the operator's view, made and freed by proxy_admin.c (NULL without
     * an admin address): per-volume I/O over the last minutes
     * (proxy_volstats.h, fed by proxy_io.c) and health (proxy_health.h) */
    struct proxy_volstats *volstats;
    struct proxy_health *health;
    struct proxy_qos_seen *qos_seen; /* the agents' last QoS reports (proxy_qos.h) */

    /* metrics (made by proxy.c) */
    struct metrics_hist *h_write, *h_read, *h_commit;
    struct metrics_counter *c_leases, *c_writes, *c_reads, *c_write_bytes, *c_read_bytes, *c_fenced,
        *c_batches, *c_batched_writes, *c_errors;
};

/* proxy.c: the newest open connection from agent AGENT (an attach
 * identity) that announced itself with AGENT_HELLO, where VOL_BARRIER goes;
 * NULL if that agent is not connected to this proxy. */
struct conn;
struct conn *proxy_agent_conn(struct proxy *p, const char *agent);

#endif
