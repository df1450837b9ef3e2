/* fair.h: whose request goes next when several flows share a path, and
 * how much may be in flight on it (issue 13 item 5, "fair below the
 * agent"): deficit round robin with a cap on bytes in flight while the
 * path is contended.
 *
 * Two users: the agent, whose volumes (flows) ship dirty data over the
 * same links to the proxies (agent_ship.c), and a proxy, where every
 * volume of every agent (flows) writes through the same blob servers and
 * Raft log (proxy_io.c).  Left alone, each queues what arrives in arrival
 * order, so a flow with a deep queue (a volume with up to 32 ships of a
 * MiB in flight) puts everyone else's next request behind all of it.
 * This module decides, as a pure function of its state, which flow may
 * put its next ready request in flight:
 *
 *   - Deficit round robin among the flows with a request ready: each
 *     visit in turn adds QUANTUM bytes of credit to a flow, and a flow
 *     sends its ready request once its credit covers the request's bytes
 *     (the credit spent is those bytes).  Over time every backlogged flow
 *     gets the same bytes, whatever its request sizes; a flow with bigger
 *     requests than the quantum waits some rounds, carrying its credit
 *     over.  A flow with nothing ready loses its credit (an idle flow
 *     saves nothing up and costs the others nothing).
 *   - A cap on bytes in flight when the path is contended, i.e. when more
 *     than one flow is active (has a request ready or in flight, or was
 *     touched within ACTIVE_MS: a quiet volume's reads use the same path):
 *     the flows' bytes in flight together stay within CAP, so whatever
 *     another flow sends next waits behind at most CAP bytes.  A flow with
 *     nothing in flight is never held by the cap (one request each at
 *     least: no flow starves, a small request of a quiet flow never waits
 *     for a neighbour's completions).
 *   - A lone active flow is not capped at all: one busy flow runs exactly
 *     as without this module.
 *
 * It knows nothing of what it schedules: the caller says how big a flow's
 * next ready request is (fair_ready), asks which flow goes (fair_pick: it
 * charges that flow and the caller sends), and returns the bytes when the
 * request is done (fair_done).  Time is the caller's (milliseconds), so
 * the unit tests drive it on an injected clock.  No allocation: flows are
 * embedded in the caller's objects.  Single-threaded.  fair_contended and
 * fair_pick walk the flows added: callers keep that list to the flows
 * recently active.  Names start fair_. */
#ifndef BD_FAIR_H
#define BD_FAIR_H

#include <stdbool.h>
#include <stdint.h>

struct fair_flow {
    uint64_t ready;         /* bytes of the flow's next ready request; 0: none */
    uint64_t deficit;       /* DRR credit, bytes */
    uint64_t in_flight;     /* bytes of its requests in flight */
    uint64_t fg_ms;         /* last activity (fair_touch); 0: never */
    bool linked;            /* in the scheduler's list */
    bool queued;            /* in the round-robin ring (ready > 0, or its head) */
    bool turn;              /* had its quantum for the turn under way */
    struct fair_flow *next;      /* the scheduler's list of flows */
    struct fair_flow *rnext;     /* the ring of flows with a request ready */
};

struct fair {
    uint64_t cap;           /* bytes in flight, all flows together, when contended */
    uint64_t quantum;       /* DRR credit per visit */
    uint64_t active_ms;     /* activity this recent makes a flow active */
    uint64_t in_flight;     /* bytes in flight, all flows */
    struct fair_flow *flows;             /* every flow added */
    struct fair_flow *rhead, *rtail;     /* the ring, in visit order */
};

/* Set up F with these parameters (CAP and QUANTUM > 0). */
void fair_init(struct fair *f, uint64_t cap, uint64_t quantum, uint64_t active_ms);
/* Add FL (zeroed by the caller, or left as fair_remove left it). */
void fair_add(struct fair *f, struct fair_flow *fl);
/* Take FL out (it goes away): its bytes in flight are forgotten
 * with it (the caller calls fair_done for requests it still waits on
 * only while FL is added). */
void fair_remove(struct fair *f, struct fair_flow *fl);
/* FL's next ready request is BYTES long (0: nothing ready).  A flow that
 * becomes ready joins the end of the ring; one that has nothing ready
 * leaves it and loses its credit. */
void fair_ready(struct fair *f, struct fair_flow *fl, uint64_t bytes);
/* FL was active at NOW_MS (client I/O, a read). */
static inline void fair_touch(struct fair_flow *fl, uint64_t now_ms)
{
    fl->fg_ms = now_ms;
}
/* Is more than one flow active at NOW_MS (the cap applies)? */
bool fair_contended(const struct fair *f, uint64_t now_ms);
/* The flow whose ready request goes now, or NULL: nothing ready, or every
 * ready flow is held by the cap until bytes come back.  The flow returned
 * is charged its ready bytes (in flight, credit spent) and has nothing
 * ready until the caller says so again (fair_ready). */
struct fair_flow *fair_pick(struct fair *f, uint64_t now_ms);
/* BYTES of FL's requests are no longer in flight (acked, failed or dropped). */
void fair_done(struct fair *f, struct fair_flow *fl, uint64_t bytes);

#endif
