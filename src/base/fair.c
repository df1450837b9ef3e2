/* fair.c: deficit round robin over the flows' ready requests, with a
 * cap on bytes in flight while the path is contended (fair.h
 * for the contract).
 *
 * The ring holds the flows with a request ready, in visit order; its head is
 * the flow being served.  A flow's turn begins when it reaches the head:
 * it gets QUANTUM of credit once per turn (`turn` remembers that it had
 * it) and sends ready requests while its credit covers them; when it cannot,
 * its turn ends and it goes to the tail with what is left.  A flow held by
 * the cap goes to the tail without ending its turn (it gets no new credit
 * for being skipped), and when every flow of the ring is held nothing
 * goes.  A flow found with nothing ready leaves the ring and its credit
 * is dropped. */
#include "base/fair.h"

#include <stddef.h>

void fair_init(struct fair *f, uint64_t cap, uint64_t quantum, uint64_t active_ms)
{
    *f = (struct fair){.cap = cap ? cap : 1, .quantum = quantum ? quantum : 1,
                             .active_ms = active_ms};
}

void fair_add(struct fair *f, struct fair_flow *fl)
{
    if (fl->linked) return;
    *fl = (struct fair_flow){.fg_ms = fl->fg_ms, .linked = true, .next = f->flows};
    f->flows = fl;
}

static void ring_unlink(struct fair *f, struct fair_flow *fl)
{
    struct fair_flow *prev = NULL;
    for (struct fair_flow *x = f->rhead; x; prev = x, x = x->rnext) {
        if (x != fl) continue;
        if (prev) prev->rnext = x->rnext;
        else f->rhead = x->rnext;
        if (f->rtail == x) f->rtail = prev;
        break;
    }
    fl->rnext = NULL;
    fl->queued = false;
    fl->turn = false;
    fl->deficit = 0;
}

static void ring_push(struct fair *f, struct fair_flow *fl)
{
    fl->rnext = NULL;
    if (f->rtail) f->rtail->rnext = fl;
    else f->rhead = fl;
    f->rtail = fl;
}

void fair_remove(struct fair *f, struct fair_flow *fl)
{
    if (!fl->linked) return;
    if (fl->queued) ring_unlink(f, fl);
    for (struct fair_flow **pp = &f->flows; *pp; pp = &(*pp)->next) {
        if (*pp == fl) {
            *pp = fl->next;
            break;
        }
    }
    f->in_flight -= fl->in_flight < f->in_flight ? fl->in_flight : f->in_flight;
    fl->in_flight = 0;
    fl->ready = 0;
    fl->next = NULL;
    fl->linked = false;
}

void fair_ready(struct fair *f, struct fair_flow *fl, uint64_t bytes)
{
    if (!fl->linked) return;
    fl->ready = bytes;
    if (bytes && !fl->queued) {
        fl->queued = true;
        fl->turn = false;
        fl->deficit = 0;
        ring_push(f, fl);
    } else if (!bytes && fl->queued && f->rhead != fl) {
        ring_unlink(f, fl); /* the head is dropped by the next pick (it may refill first) */
    }
}

static bool active(const struct fair *f, const struct fair_flow *fl, uint64_t now_ms)
{
    return fl->ready || fl->in_flight ||
           (fl->fg_ms && now_ms >= fl->fg_ms && now_ms - fl->fg_ms < f->active_ms);
}

bool fair_contended(const struct fair *f, uint64_t now_ms)
{
    unsigned n = 0;
    for (const struct fair_flow *fl = f->flows; fl; fl = fl->next)
        if (active(f, fl, now_ms) && ++n > 1) return true;
    return false;
}

struct fair_flow *fair_pick(struct fair *f, uint64_t now_ms)
{
    if (!f->rhead) return NULL;
    bool cont = fair_contended(f, now_ms);
    unsigned held = 0, n = 0;
    for (struct fair_flow *x = f->rhead; x; x = x->rnext) n++;
    while (f->rhead) {
        struct fair_flow *fl = f->rhead;
        if (!fl->ready) { /* served, and nothing more came: out, credit dropped */
            f->rhead = fl->rnext;
            if (!f->rhead) f->rtail = NULL;
            fl->rnext = NULL;
            fl->queued = false;
            fl->turn = false;
            fl->deficit = 0;
            n--;
            continue;
        }
        bool rotate = false;
        if (cont && fl->in_flight && f->in_flight + fl->ready > f->cap) {
            /* Held by the cap: skipped, its turn kept for when it is not. */
            if (++held >= n) return NULL;
            rotate = true;
        } else {
            held = 0;
            if (!fl->turn) {
                fl->turn = true;
                fl->deficit += f->quantum;
            }
            if (fl->deficit >= fl->ready) {
                fl->deficit -= fl->ready;
                fl->in_flight += fl->ready;
                f->in_flight += fl->ready;
                fl->ready = 0;
                return fl; /* stays at the head: its turn goes on if it refills */
            }
            fl->turn = false; /* its turn ends; the credit carries over */
            rotate = true;
        }
        if (rotate && fl->rnext) {
            f->rhead = fl->rnext;
            fl->rnext = NULL;
            f->rtail->rnext = fl;
            f->rtail = fl;
        }
    }
    return NULL;
}

void fair_done(struct fair *f, struct fair_flow *fl, uint64_t bytes)
{
    if (!fl->linked) return;
    uint64_t b = bytes < fl->in_flight ? bytes : fl->in_flight;
    fl->in_flight -= b;
    f->in_flight -= b < f->in_flight ? b : f->in_flight;
}
