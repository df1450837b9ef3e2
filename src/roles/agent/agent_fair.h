/* agent_fair.h: which volume's ship goes next over the agent's shared
 * links to the proxies (issue 13 item 5, "fair below the agent").
 *
 * Every volume of an agent ships its dirty data over the same proxy
 * connections, and the proxies and blob servers behind them queue what
 * arrives in arrival order.  Left alone, a volume with a deep ship queue
 * keeps up to AGENT_VOL_MAX_SHIPS ships of up to a MiB each in flight, and
 * another volume's read or flush queues behind all of them on the link,
 * in the proxy and at the blob servers.  This module decides, as a pure
 * function of its state, which volume (a flow) may put its next ready
 * ship in flight:
 *
 *   - Deficit round robin among the flows with a ship ready: each visit
 *     in turn adds QUANTUM bytes of credit to a flow, and a flow sends its
 *     ready ship once its credit covers the ship's bytes (the credit spent
 *     is the ship's bytes).  Over time every backlogged flow gets the same
 *     bytes, whatever its ship sizes; a flow with bigger ships than the
 *     quantum waits some rounds, carrying its credit over.  A flow with
 *     nothing ready loses its credit (an idle volume saves nothing up and
 *     costs the others nothing).
 *   - A cap on ship bytes in flight when the link is contended, i.e. when
 *     more than one flow is active (has a ship ready or in flight, or had
 *     client I/O within ACTIVE_MS: a quiet volume's reads go to the same
 *     proxies): the flows' bytes in flight together stay within CAP, so
 *     whatever another volume sends next waits behind at most CAP bytes of
 *     ship payload.  A flow with nothing in flight is never held by the
 *     cap (one ship each at least: no flow starves, a small ship of a
 *     quiet volume never waits for a neighbour's acks).
 *   - A lone active flow is not capped at all: an agent with one busy
 *     volume ships exactly as without this module.
 *
 * It knows nothing of ships: the caller says how big a flow's next ready
 * ship is (agent_fair_ready), asks which flow goes (agent_fair_pick: it
 * charges that flow and the caller sends), and returns the bytes when the
 * ship is done (agent_fair_done).  Time is the caller's (milliseconds),
 * so the unit tests drive it on an injected clock.  No allocation: flows
 * are embedded in the caller's objects.  Single-threaded.  Names start
 * agent_fair. */
#ifndef BD_AGENT_FAIR_H
#define BD_AGENT_FAIR_H

#include <stdbool.h>
#include <stdint.h>

struct agent_fair_flow {
    uint64_t ready;         /* bytes of the flow's next ready ship; 0: none */
    uint64_t deficit;       /* DRR credit, bytes */
    uint64_t in_flight;     /* bytes of its ships in flight */
    uint64_t fg_ms;         /* last client I/O seen (agent_fair_touch); 0: never */
    bool linked;            /* in the scheduler's list */
    bool queued;            /* in the round-robin ring (ready > 0, or its head) */
    bool turn;              /* had its quantum for the turn under way */
    struct agent_fair_flow *next;      /* the scheduler's list of flows */
    struct agent_fair_flow *rnext;     /* the ring of flows with a ship ready */
};

struct agent_fair {
    uint64_t cap;           /* ship bytes in flight, all flows together, when contended */
    uint64_t quantum;       /* DRR credit per visit */
    uint64_t active_ms;     /* client I/O this recent makes a flow active */
    uint64_t in_flight;     /* bytes in flight, all flows */
    struct agent_fair_flow *flows;             /* every flow added */
    struct agent_fair_flow *rhead, *rtail;     /* the ring, in visit order */
};

/* Set up F with these parameters (CAP and QUANTUM > 0). */
void agent_fair_init(struct agent_fair *f, uint64_t cap, uint64_t quantum, uint64_t active_ms);
/* Add FL (zeroed by the caller, or left as agent_fair_remove left it). */
void agent_fair_add(struct agent_fair *f, struct agent_fair_flow *fl);
/* Take FL out (the volume goes away): its bytes in flight are forgotten
 * with it (the caller calls agent_fair_done for ships it still waits on
 * only while FL is added). */
void agent_fair_remove(struct agent_fair *f, struct agent_fair_flow *fl);
/* FL's next ready ship is BYTES long (0: nothing ready).  A flow that
 * becomes ready joins the end of the ring; one that has nothing ready
 * leaves it and loses its credit. */
void agent_fair_ready(struct agent_fair *f, struct agent_fair_flow *fl, uint64_t bytes);
/* FL's volume had client I/O at NOW_MS. */
static inline void agent_fair_touch(struct agent_fair_flow *fl, uint64_t now_ms)
{
    fl->fg_ms = now_ms;
}
/* Is more than one flow active at NOW_MS (the cap applies)? */
bool agent_fair_contended(const struct agent_fair *f, uint64_t now_ms);
/* The flow whose ready ship goes now, or NULL: nothing ready, or every
 * ready flow is held by the cap until bytes come back.  The flow returned
 * is charged its ready bytes (in flight, credit spent) and has nothing
 * ready until the caller says so again (agent_fair_ready). */
struct agent_fair_flow *agent_fair_pick(struct agent_fair *f, uint64_t now_ms);
/* BYTES of FL's ships are no longer in flight (acked, failed or dropped). */
void agent_fair_done(struct agent_fair *f, struct agent_fair_flow *fl, uint64_t bytes);

#endif
