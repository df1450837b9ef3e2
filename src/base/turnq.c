/* turnq.c: a turn queue (turnq.h for the contract).
 *
 * A flow per key: base/fair.h's flow, the flow's waiting requests in
 * arrival order, and a hash-chain link.  The head of a flow's queue is its
 * ready request (fair_ready with its cost); pump() asks fair_pick which
 * flow goes and starts that flow's head, until nothing more may go.
 * Starting a request can finish it at once (a refusal), which calls
 * turnq_done and so pump() again from inside pump(): the inner call
 * only marks `again` and the outer loop goes round once more, so the
 * fair state is never walked while it is being changed. */
#include "base/turnq.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "base/bd.h"
#include "base/fair.h"
#include "base/util.h"

#define WQ_QUANTUM (256u * 1024u) /* DRR credit per turn, as the agent's */
#define WQ_ACTIVE_MS 200u         /* a flow with a request this recent is active */
#define WQ_IDLE_MS 1000u          /* an idle flow is freed after this */
#define WQ_BUCKETS 1024u          /* hash chains; flows are the recently active keys */

struct turnq_flow {
    struct fair_flow fl;            /* first: fair_pick returns &fl */
    uint64_t key;
    struct turnq_item *head, *tail;
    uint64_t n_queued;
    struct turnq_flow *hnext;
};

struct turnq {
    uint64_t cap;
    struct fair fair;
    struct turnq_flow *buckets[WQ_BUCKETS];
    uint64_t n_flows, n_queued, waits, wait_us;
    bool pumping, again, stopped;
    const struct turnq_item *submitting; /* started within its own submit: no wait */
};

struct turnq *turnq_new(uint64_t cap)
{
    struct turnq *q = calloc(1, sizeof(*q));
    if (!q) return NULL;
    q->cap = cap;
    fair_init(&q->fair, cap ? cap : 1, WQ_QUANTUM, WQ_ACTIVE_MS);
    return q;
}

static uint64_t cost_of(const struct turnq_item *it)
{
    return it->cost ? it->cost : BD_BLOCK_SIZE;
}

static struct turnq_flow **slot_of(struct turnq *q, uint64_t key)
{
    /* Fibonacci hashing: keys are often small and sequential. */
    uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> 54; /* 10 bits: WQ_BUCKETS */
    struct turnq_flow **pp = &q->buckets[h];
    while (*pp && (*pp)->key != key) pp = &(*pp)->hnext;
    return pp;
}

static void pump(struct turnq *q)
{
    if (q->pumping) {
        q->again = true;
        return;
    }
    q->pumping = true;
    do {
        q->again = false;
        struct fair_flow *fl;
        while (!q->stopped && (fl = fair_pick(&q->fair, util_mono_ms()))) {
            struct turnq_flow *f = (struct turnq_flow *)fl;
            struct turnq_item *it = f->head;
            if (BD_NEVER(!it)) continue; /* a flow is ready only with a head */
            f->head = it->next;
            if (!f->head) f->tail = NULL;
            it->next = NULL;
            f->n_queued--;
            q->n_queued--;
            fair_ready(&q->fair, fl, f->head ? cost_of(f->head) : 0);
            if (it != q->submitting) { /* it waited for an earlier pump */
                q->waits++;
                q->wait_us += util_mono_ns() / 1000 - it->queued_us;
            }
            it->start(it);
        }
    } while (q->again);
    q->pumping = false;
}

void turnq_submit(struct turnq *q, uint64_t key, struct turnq_item *it)
{
    it->next = NULL;
    it->flow = NULL;
    it->queued_us = 0;
    if (!q) {
        it->start(it);
        return;
    }
    if (q->stopped) {
        it->fail(it, -ESHUTDOWN);
        return;
    }
    if (!q->cap) {
        it->start(it);
        return;
    }
    struct turnq_flow **pp = slot_of(q, key);
    struct turnq_flow *f = *pp;
    if (!f) {
        f = calloc(1, sizeof(*f));
        if (!f) {
            it->start(it);
            return;
        }
        f->key = key;
        *pp = f;
        fair_add(&q->fair, &f->fl);
        q->n_flows++;
    }
    fair_touch(&f->fl, util_mono_ms());
    it->flow = f;
    it->queued_us = util_mono_ns() / 1000;
    bool was_empty = !f->head;
    if (f->tail) f->tail->next = it;
    else f->head = it;
    f->tail = it;
    f->n_queued++;
    q->n_queued++;
    if (was_empty) fair_ready(&q->fair, &f->fl, cost_of(it));
    const struct turnq_item *outer = q->submitting;
    q->submitting = it;
    pump(q);
    q->submitting = outer;
}

void turnq_done(struct turnq *q, struct turnq_item *it)
{
    struct turnq_flow *f = it->flow;
    if (!q || !f) return; /* started without a turn */
    it->flow = NULL;
    fair_done(&q->fair, &f->fl, cost_of(it));
    fair_touch(&f->fl, util_mono_ms());
    pump(q);
}

void turnq_stop(struct turnq *q, int err)
{
    q->stopped = true;
    for (unsigned b = 0; b < WQ_BUCKETS; b++) {
        for (struct turnq_flow *f = q->buckets[b]; f; f = f->hnext) {
            while (f->head) {
                struct turnq_item *it = f->head;
                f->head = it->next;
                if (!f->head) f->tail = NULL;
                it->next = NULL;
                it->flow = NULL; /* never started: turnq_done is a no-op for it */
                f->n_queued--;
                q->n_queued--;
                fair_ready(&q->fair, &f->fl, 0);
                it->fail(it, err);
            }
        }
    }
}

void turnq_sweep(struct turnq *q)
{
    if (!q) return;
    uint64_t now = util_mono_ms();
    for (unsigned b = 0; b < WQ_BUCKETS; b++) {
        struct turnq_flow **pp = &q->buckets[b];
        while (*pp) {
            struct turnq_flow *f = *pp;
            bool idle = !f->head && !f->fl.in_flight && now - f->fl.fg_ms >= WQ_IDLE_MS;
            if (!idle) {
                pp = &f->hnext;
                continue;
            }
            *pp = f->hnext;
            fair_remove(&q->fair, &f->fl);
            q->n_flows--;
            free(f);
        }
    }
}

void turnq_free(struct turnq *q)
{
    if (!q) return;
    turnq_stop(q, -ESHUTDOWN);
    for (unsigned b = 0; b < WQ_BUCKETS; b++) {
        struct turnq_flow *f = q->buckets[b];
        while (f) {
            struct turnq_flow *next = f->hnext;
            free(f);
            f = next;
        }
    }
    free(q);
}

void turnq_stats(const struct turnq *q, struct turnq_stats *out)
{
    *out = (struct turnq_stats){.flows = q->n_flows, .queued = q->n_queued,
                                   .in_flight = q->fair.in_flight, .waits = q->waits,
                                   .wait_us = q->wait_us};
}
