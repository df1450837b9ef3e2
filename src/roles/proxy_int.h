/* proxy_int.h: the proxy role's shared state, private to src/roles/proxy*.c.
 *
 * Modules:
 *   proxy.c        role ops, listeners, connection dispatch, status
 *   proxy_cmd.c    submitting index commands: propose on the leader,
 *                  forward to it from a follower, group commit of writes
 *   proxy_io.c     the agent's requests: attach, write, read, map, flush
 *   proxy_mgmt.c   leader duties: node registration, partitions, GC,
 *                  blob id leases; the applied-index waiters
 *   proxy_admin.c  the admin HTTP API
 *   proxy_blobs.c  blob server liveness and replica I/O
 *   proxy_repair.c heal bad copies, replace lost servers (the leader)
 *   proxy_resync.c anti-entropy: copy missing blobs, delete orphans
 *
 * Everything runs on the reactor thread.  The index is written only by the
 * FSM (libraft's apply, on the reactor); the modules here only read it,
 * through p->rd between index_read_begin and index_read_end inside one
 * callback (never across an asynchronous step). */
#ifndef BD_PROXY_INT_H
#define BD_PROXY_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "../config.h"
#include "../net/admin.h"
#include "../net/conn.h"
#include "../net/link.h"
#include "../net/listener.h"
#include "../net/metrics.h"
#include "../net/reactor.h"
#include "../store/consensus.h"
#include "../store/fsm.h"
#include "../store/idxcmd.h"
#include "../store/index.h"
#include "proxy_blobs.h"
#include "role.h"

/* How long a write (proxy_io.c) may take from its blob puts to the commit
 * of its index entry.  The orphan grace (proxy_resync.c) must be twice it. */
#define PIO_WRITE_DEADLINE_MS 20000

/* ---- command submission (proxy_cmd.c) -------------------------------------- */

/* One index command on its way to being applied.  The caller owns the
 * struct until CB has run (exactly once, on the reactor, never inside
 * pcmd_submit).  The command is proposed on the leader, or forwarded to it
 * by PROPOSE; an outcome that is unknown (leader lost, connection reset)
 * is retried until DEADLINE_MS, which is safe because every command the
 * proxy submits is idempotent in effect (see proxy_cmd.c).
 *
 * Errors at the deadline say what is known: -EAGAIN if the command was
 * never handed to raft (no leader: nothing can have been applied, the
 * caller may simply retry), -ETIMEDOUT if it was and its fate is unknown
 * (it may still be applied: the caller must treat it as such). */
struct pcmd {
    void (*cb)(struct pcmd *c, int err, uint64_t raft_index, const struct idx_result *res);
    void *data;
    uint8_t *buf;              /* the encoded command; owned by the caller */
    size_t len;
    uint64_t deadline_ms;      /* monotonic; fail with -EAGAIN after it */
    bool when_decided;         /* answer once the result is decided, before this
                                * proxy's index commits it (fsm_pending_wait_decided) */
    /* private */
    struct proxy *p;
    struct consensus_req creq;
    struct conn_call call;
    struct event *retry_ev;
    int attempts;
    bool done;
    bool maybe_applied;        /* proposed or forwarded at least once */
    struct fsm_pending *applying; /* committed; waiting for the index writer */
    uint64_t applied_index;    /* its raft index */
    struct pcmd *prev, *next;  /* in p->pcmds while not done */
};

/* Submit C (buf, len, cb, deadline set). */
void pcmd_submit(struct proxy *p, struct pcmd *c);
/* Stopping: finish every command still waiting to retry with -ESHUTDOWN
 * (call after consensus and the peer links are closed, which finish the
 * others). */
void pcmd_fail_all(struct proxy *p);

/* A single extent write waiting for its WRITE_BATCH. */
struct pwrite_rec {
    void (*cb)(struct pwrite_rec *w, int err, uint64_t raft_index);
    void *data;
    struct idx_write w;
    uint64_t deadline_ms;
    struct pwrite_rec *next;   /* private: batcher queue */
};
/* Queue W for the next WRITE_BATCH (group commit). */
void pbatch_add(struct proxy *p, struct pwrite_rec *w);

/* ---- applied-index waiters (proxy_mgmt.c) ---------------------------------- */

struct pwait {
    void (*cb)(struct pwait *w, int err);  /* 0 once applied >= index; -ETIMEDOUT */
    void *data;
    uint64_t index;
    uint64_t deadline_ms;
    struct pwait *next;        /* private */
};
/* Run W->cb once the applied index reaches W->index (at once, deferred, if
 * it already has), or with -ETIMEDOUT at the deadline. */
void pwait_add(struct proxy *p, struct pwait *w);

/* ---- the proxy ------------------------------------------------------------- */

struct pconn;                  /* an accepted wire connection (proxy.c) */

/* Blob ids leased from the index (ALLOC_BLOB_IDS), handed out locally. */
struct pblob_lease {
    uint64_t next, end;        /* [next, end) is ours */
    bool asking;               /* an ALLOC_BLOB_IDS is in flight */
    struct pcmd cmd;
    uint8_t buf[64];
};

struct proxy {
    struct role *role;
    struct reactor *rx;
    const struct bd_config *top;
    const struct cfg_proxy *cfg;
    const char *tag;
    struct conn_auth auth;
    struct conn_opts srv_opts;     /* accepted connections */
    struct conn_opts peer_opts;    /* links to peer proxies (PROPOSE) */

    struct index *ix;
    struct index_reader *rd;       /* reactor-thread reads */
    struct fsm_raft fr;
    struct consensus *cons;
    struct pblobs *blobs;
    struct listener *lis;
    struct admin *admin;
    struct link *peer_links[CFG_MAX_PEERS]; /* by position in cfg->peers */

    struct pconn *conns;           /* accepted connections */
    struct pcmd *pcmds;            /* submitted, not yet finished (proxy_cmd.c) */
    bool stopping;
    void (*stop_done)(struct role *r);
    struct event *tick_ev;         /* leader duties, waiter deadlines */

    /* applied-index waiters, unordered (few at a time) */
    struct pwait *waiters;

    /* group commit of writes */
    struct pwrite_rec *wq_head, *wq_tail;
    unsigned wq_len;
    unsigned batches_in_flight;

    struct pblob_lease lease;
    struct pwrite_ctx *lease_waiters; /* writes waiting for blob ids (proxy_io.c) */

    /* partition cache for placement, refreshed when partitions change */
    struct index_part *parts;
    unsigned n_parts;
    uint64_t parts_applied;        /* applied index the cache was read at */
    bool parts_dirty;
    unsigned place_rr;             /* round-robin cursor */

    /* leader duties (proxy_mgmt.c) */
    struct pmgmt *mgmt;
    /* heal, anti-entropy, replacement (proxy_repair.c) */
    struct prepair *repair;

    /* metrics */
    struct metric_hist *h_write, *h_read, *h_commit;
    struct metric_counter *c_writes, *c_reads, *c_write_bytes, *c_read_bytes, *c_fenced,
        *c_batches, *c_batched_writes, *c_errors;
};

/* proxy_io.c: requests from agents.  Returns true if it handled F. */
bool pio_handle(struct proxy *p, struct conn *c, struct conn_frame *f);
void pio_lease_refill(struct proxy *p);
void pio_fail_all(struct proxy *p, int err);

/* proxy_mgmt.c */
int pmgmt_start(struct proxy *p);
void pmgmt_stop(struct proxy *p);
void pmgmt_on_applied(struct proxy *p, uint64_t index, const struct idx_result *res);
void pmgmt_tick(struct proxy *p);
void pmgmt_heartbeat(struct proxy *p, const struct wire_node_heartbeat_req *hb);
void pmgmt_status(struct proxy *p, cJSON *out);

/* proxy_admin.c */
int padmin_start(struct proxy *p);

/* Helpers (proxy.c). */
bool proxy_has_leader(struct proxy *p);
/* Begin/end a read txn on p->rd; begin returns 0 or -EIO/-EAGAIN. */
int proxy_read_begin(struct proxy *p);
void proxy_read_end(struct proxy *p);

#endif
