/* turnq.h: a turn queue: requests of several flows wait here for their
 * flow's turn before they start (issue 13 item 5, "fair below the agent":
 * one volume's deep queue must not starve the others' writes).
 *
 * Two users, each with one queue per role instance:
 *   - a proxy (proxy_io.c), flows = volumes: every agent's writes through
 *     it share the same blob servers and Raft log, and an agent keeps up to
 *     32 ships of up to a MiB in flight per volume (the agent's own turns,
 *     base/fair.h in agent_ship.c, only divide its links between ITS
 *     volumes);
 *   - a blob server (blob.c), flows = connections (proxies): two agents
 *     may write through different proxies, which meet only here, where
 *     puts are written by one writer thread in arrival order and
 *     acknowledged by group-commit flushes.
 * Without turns, a flow with a deep queue puts the next request of every
 * other flow behind all of it.  With them (base/fair.h):
 *
 *   - while more than one flow is active (a request waiting or in
 *     progress, or one submitted within the last 200 ms), the requests in
 *     progress hold at most CAP payload bytes together, so a newcomer
 *     waits behind at most CAP; a flow with nothing in progress always
 *     starts one (none starves, a quiet flow's small request never waits
 *     for a neighbour's completions);
 *   - backlogged flows share bytes equally (deficit round robin, a quantum
 *     of 256 KiB), whatever their request sizes;
 *   - a lone active flow is never held: it runs as without the queue;
 *   - CAP 0 turns the queue off: every request starts at once.
 *
 * A waiting request lives in memory its caller already holds (the frame
 * it arrived in); what bounds that is the senders' own in-flight limits
 * and the connections' back-pressure, as before.  Deadlines are the
 * sender's: a request that waits its turn too long times out there like
 * any slow one (and is still answered).
 *
 * Allocation: one flow per key active in the last second (a hash table),
 * freed by turnq_sweep once idle; nothing per request (the item is
 * embedded in the caller's context).  Single-threaded (the reactor).
 * Names start turnq. */
#ifndef BD_TURNQ_H
#define BD_TURNQ_H

#include <stdint.h>

struct turnq;
struct turnq_flow;

/* A request, embedded in the caller's context. */
struct turnq_item {
    /* Set by the caller before turnq_submit. */
    uint64_t cost;                              /* payload bytes; 0 counts as one block */
    void (*start)(struct turnq_item *it);    /* its turn: go (may finish at once) */
    void (*fail)(struct turnq_item *it, int err); /* never started: the queue stopped */
    /* The queue's. */
    struct turnq_item *next;
    struct turnq_flow *flow;
    uint64_t queued_us;                         /* when it was submitted */
};

struct turnq_stats {
    uint64_t flows;          /* keys with a flow now */
    uint64_t queued;         /* requests waiting their turn now */
    uint64_t in_flight;      /* payload bytes of requests started and not done */
    uint64_t waits;          /* requests that waited their turn, ever */
    uint64_t wait_us;        /* their waiting, summed */
};

/* A queue with this cap (bytes; 0: off).  NULL if out of memory. */
struct turnq *turnq_new(uint64_t cap);
/* Fail what still waits (-ESHUTDOWN), then free.  Requests started are the
 * caller's; turnq_done must not be called for them afterwards. */
void turnq_free(struct turnq *q);

/* Start IT (its start callback, perhaps before this returns) or queue it
 * behind the earlier requests of flow KEY until its turn.  Out of memory
 * for a new flow starts it at once (no turn is better than no request).
 * Q may be NULL (no queue): IT starts at once. */
void turnq_submit(struct turnq *q, uint64_t key, struct turnq_item *it);
/* A started IT is finished (answered, whatever the outcome): its bytes
 * come back and waiting writes may go.  IT may be a copy of the item (the
 * caller may have freed its context).  Q may be NULL (no queue). */
void turnq_done(struct turnq *q, struct turnq_item *it);
/* Fail every waiting request with ERR and start nothing more (stopping),
 * and fail later submissions with -ESHUTDOWN; turnq_done still accounts
 * for requests already started. */
void turnq_stop(struct turnq *q, int err);
/* Free the flows of keys idle for a second (call from a periodic tick). */
void turnq_sweep(struct turnq *q);
void turnq_stats(const struct turnq *q, struct turnq_stats *out);

#endif
