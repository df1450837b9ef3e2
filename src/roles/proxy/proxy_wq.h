/* proxy_wq.h: turns between volumes for the writes a proxy starts (issue
 * 13 item 5: one volume's ship queue must not starve "another agent's
 * writes at the proxy").
 *
 * Every agent's writes through this proxy share the same blob servers'
 * write queues and the same Raft log, and both serve in arrival order.
 * An agent keeps up to 32 ships of up to a MiB in flight per volume (its
 * own turns, base/fair.h, only divide the agent's links between ITS
 * volumes), so without turns here a volume writing 1 MiB blocks puts the
 * next write of every other agent's volume behind up to 32 MiB at the
 * blob servers.  The queue keeps one flow per volume that wrote recently
 * and starts a write when its volume's turn comes (base/fair.h):
 *
 *   - while more than one volume is writing, the writes in progress hold
 *     at most CAP payload bytes together, so a newcomer waits behind at
 *     most CAP; a volume with nothing in progress always starts one;
 *   - backlogged volumes share bytes equally (deficit round robin, a
 *     quantum of 256 KiB), whichever agent they come from;
 *   - a lone writing volume is never held: it runs as without the queue;
 *   - CAP 0 turns the queue off: every write starts at once.
 *
 * A queued write waits in memory the proxy already holds (the frame it
 * arrived in); what bounds it is the agents' own in-flight limits and the
 * connections' back-pressure, as before.  Its deadlines are the agent's:
 * a write that waits its turn too long times out at the agent like any
 * slow write (outcome unknown until it is answered; it is still answered).
 *
 * Allocation: one flow per volume active in the last second (a hash
 * table), freed by proxy_wq_sweep once idle; nothing per write (the item
 * is embedded in the caller's write).  Reactor thread only.  Names start
 * proxy_wq. */
#ifndef BD_PROXY_WQ_H
#define BD_PROXY_WQ_H

#include <stdint.h>

struct proxy_wq;
struct proxy_wq_flow;

/* A write, embedded in the caller's context. */
struct proxy_wq_item {
    /* Set by the caller before proxy_wq_submit. */
    uint64_t cost;                              /* payload bytes; 0 counts as one block */
    void (*start)(struct proxy_wq_item *it);    /* its turn: go (may finish at once) */
    void (*fail)(struct proxy_wq_item *it, int err); /* never started: the queue stopped */
    /* The queue's. */
    struct proxy_wq_item *next;
    struct proxy_wq_flow *flow;
    uint64_t queued_us;                         /* when it was submitted */
};

struct proxy_wq_stats {
    uint64_t flows;          /* volumes with a flow now */
    uint64_t queued;         /* writes waiting their turn now */
    uint64_t in_flight;      /* payload bytes of writes started and not done */
    uint64_t waits;          /* writes that waited their turn, ever */
    uint64_t wait_us;        /* their waiting, summed */
};

/* A queue with this cap (bytes; 0: off).  NULL if out of memory. */
struct proxy_wq *proxy_wq_new(uint64_t cap);
/* Fail what still waits (-ESHUTDOWN), then free.  Writes started are the
 * caller's; proxy_wq_done must not be called for them afterwards. */
void proxy_wq_free(struct proxy_wq *q);

/* Start IT (its start callback, perhaps before this returns) or queue it
 * behind VOL's earlier writes until its turn.  Out of memory for a new
 * flow starts it at once (no turn is better than no write). */
void proxy_wq_submit(struct proxy_wq *q, uint64_t vol_id, struct proxy_wq_item *it);
/* A started IT is finished (answered, whatever the outcome): its bytes
 * come back and waiting writes may go.  IT may be a copy of the item (the
 * caller may have freed its context).  Q may be NULL (no queue). */
void proxy_wq_done(struct proxy_wq *q, struct proxy_wq_item *it);
/* Fail every waiting write with ERR and start nothing more (stopping);
 * proxy_wq_done still accounts for writes already started. */
void proxy_wq_stop(struct proxy_wq *q, int err);
/* Free the flows of volumes idle for a second (call from the tick). */
void proxy_wq_sweep(struct proxy_wq *q);
void proxy_wq_stats(const struct proxy_wq *q, struct proxy_wq_stats *out);

#endif
