/* agent_nbd_conn.c: one NBD connection's plumbing, under the handshake
 * (agent_nbd.c) and transmission (agent_nbd_tx.c): its state, its
 * lifetime, its output, reading on and off, draining and closing, and its
 * pool of request slots.
 *
 * Place.  The bottom of the NBD front end: agent_nbd.c (server,
 * handshake, event dispatch) -> agent_nbd_tx.c (requests, replies) ->
 * this file.  It calls neither of them; the one thing the server must
 * learn from below, that a connection closed (which may complete a stop),
 * goes through the callback s->on_conn_closed that agent_nbd.c installs.
 * Input is not read here: maybe_resume fires the connection's resume
 * event, whose callback (agent_nbd.c) decodes what is buffered.
 *
 * States.  agent_nbd_conn_set_state() is the one place a state changes;
 * it asserts that the transition is one of the diagram's in agent_nbd.c
 * (legal() below is that diagram as a table).
 *
 * Lifetime (reference counting): one reference while the socket is open,
 * one per request inside the volume layer (n_vol), one while an
 * agent_vols_{list,info,open} call is pending, one while slot buffers are
 * queued by reference in the output.  Closing frees the socket at once;
 * the memory goes, deferred to the reactor, with the last reference, so a
 * callback never finds its connection freed under it.  The volume handle
 * is put once the socket is closed and n_vol is zero ("In-flight requests
 * of the caller must have completed", agent_vol.h).
 *
 * Slots.  A request in flight holds a slot from the connection's pool;
 * slots and their buffers are reused, so the hot path allocates nothing
 * after warm-up.  Buffers above SLOT_KEEP, or beyond CONN_KEEP kept per
 * connection, are freed when their request ends so that a burst of
 * 32 MiB requests does not pin memory.  A slot returns to the pool only
 * when its request is out of the volume layer and the output no longer
 * references its buffer; each return may let a paused connection read
 * again (back-pressure, agent_nbd_tx.c). */
#include "base/bd.h"
#include "runtime/log.h"
#include "roles/agent/agent_nbd_int.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>

#define SLOT_KEEP (4u << 20)  /* largest buffer an idle slot keeps */
#define CONN_KEEP (16u << 20) /* buffer bytes idle slots of a connection keep */

static const char *const state_names[AGENT_NBD_N_STATES] = {
    "HS_FLAGS", "HS_OPT", "HS_DATA", "HS_WAIT", "HS_TLS", "TX_HDR", "TX_DATA", "TX_SKIP", "DRAIN",
    "CLOSED",
};

/* ---- request slots --------------------------------------------------------------- */

struct agent_nbd_slot *agent_nbd_conn_slot_get(struct agent_nbd_conn *c)
{
    struct agent_nbd_slot *sl = c->free_slots;
    if (sl) {
        c->free_slots = sl->next;
        c->kept_bytes -= sl->cap;
    } else {
        sl = calloc(1, sizeof(*sl));
        if (!sl) return NULL;
        sl->c = c;
        c->n_slots++;
    }
    sl->next = NULL;
    sl->done = 0;
    sl->reserved = 0;
    c->n_busy++;
    return sl;
}

/* The request is over and nothing references its buffer. */
static void slot_put(struct agent_nbd_slot *sl)
{
    struct agent_nbd_conn *c = sl->c;
    c->n_busy--;
    c->busy_bytes -= sl->reserved;
    sl->reserved = 0;
    if (sl->cap > SLOT_KEEP || c->kept_bytes + sl->cap > CONN_KEEP) {
        free(sl->buf);
        sl->buf = NULL;
        sl->cap = 0;
    }
    c->kept_bytes += sl->cap;
    sl->next = c->free_slots;
    c->free_slots = sl;
    agent_nbd_conn_maybe_resume(c);
}

void agent_nbd_conn_slot_release(struct agent_nbd_slot *sl)
{
    if (sl->refs == 0 && !sl->in_vol) slot_put(sl);
}

int agent_nbd_conn_slot_buf(struct agent_nbd_slot *sl, size_t len)
{
    if (sl->cap >= len) return 0;
    free(sl->buf);
    sl->buf = malloc(len);
    sl->cap = sl->buf ? len : 0;
    return sl->buf ? 0 : -ENOMEM;
}

static void on_ref_done(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    struct agent_nbd_slot *sl = arg;
    struct agent_nbd_conn *c = sl->c;
    if (BD_NEVER(sl->refs == 0)) return;
    if (--sl->refs == 0) {
        agent_nbd_conn_slot_release(sl);
        agent_nbd_conn_unref(c); /* taken with the first reference */
    }
}

bool agent_nbd_conn_send_ref(struct agent_nbd_slot *sl, const uint8_t *p, size_t len)
{
    struct agent_nbd_conn *c = sl->c;
    if (!c->bev) return false;
    if (sl->refs++ == 0) agent_nbd_conn_ref(c);
    if (evbuffer_add_reference(bufferevent_get_output(c->bev), p, len, on_ref_done, sl) < 0) {
        on_ref_done(p, len, sl);
        agent_nbd_conn_close(c, "out of memory for output");
        return false;
    }
    return true;
}

/* Drop the WRITE waiting for its payload in TX_DATA, if any: never
 * submitted, never acknowledged. */
static void drop_partial(struct agent_nbd_conn *c)
{
    struct agent_nbd_slot *sl = c->cur;
    if (!sl) return;
    c->cur = NULL;
    log_line(LOG_INFO, c->s->o.tag, c->vol ? c->vinfo.name : NULL, 0,
             "nbd conn %llu: dropped a WRITE at %llu+%u whose payload never arrived",
             (unsigned long long)c->id, (unsigned long long)sl->rq.off, sl->rq.len);
    agent_nbd_conn_slot_release(sl);
}

/* Free every slot (teardown; none may be busy). */
static void free_slots(struct agent_nbd_conn *c)
{
    if (BD_NEVER(c->n_busy != 0))
        log_error(c->s->o.tag, "nbd conn %llu: freed with %u busy slots", (unsigned long long)c->id,
                  c->n_busy);
    struct agent_nbd_slot *next;
    for (struct agent_nbd_slot *sl = c->free_slots; sl; sl = next) {
        next = sl->next;
        free(sl->buf);
        free(sl);
    }
    c->free_slots = NULL;
}

/* Nothing in flight and no WRITE payload awaited. */
static bool idle(const struct agent_nbd_conn *c)
{
    return c->n_busy == 0 && !c->cur;
}

/* ---- state and lifetime ----------------------------------------------------- */

static bool legal(enum agent_nbd_conn_state from, enum agent_nbd_conn_state to)
{
    if (to == AGENT_NBD_CLOSED) return from != AGENT_NBD_CLOSED;
    if (to == AGENT_NBD_DRAIN) return from != AGENT_NBD_CLOSED && from != AGENT_NBD_DRAIN;
    switch (from) {
    case AGENT_NBD_HS_FLAGS: return to == AGENT_NBD_HS_OPT;
    case AGENT_NBD_HS_OPT: return to == AGENT_NBD_HS_DATA;
    case AGENT_NBD_HS_DATA:
        return to == AGENT_NBD_HS_OPT || to == AGENT_NBD_HS_WAIT || to == AGENT_NBD_HS_TLS;
    case AGENT_NBD_HS_TLS: return to == AGENT_NBD_HS_OPT;
    case AGENT_NBD_HS_WAIT: return to == AGENT_NBD_HS_OPT || to == AGENT_NBD_TX_HDR;
    case AGENT_NBD_TX_HDR: return to == AGENT_NBD_TX_DATA || to == AGENT_NBD_TX_SKIP;
    case AGENT_NBD_TX_DATA: return to == AGENT_NBD_TX_HDR;
    case AGENT_NBD_TX_SKIP: return to == AGENT_NBD_TX_HDR;
    default: return false;
    }
}

const char *agent_nbd_conn_state_name(enum agent_nbd_conn_state st)
{
    return (unsigned)st < AGENT_NBD_N_STATES ? state_names[st] : "?";
}

void agent_nbd_conn_set_state(struct agent_nbd_conn *c, enum agent_nbd_conn_state to)
{
    assert(legal(c->state, to));
    log_debug(c->s->o.tag, "nbd conn %llu: %s -> %s", (unsigned long long)c->id,
              state_names[c->state], state_names[to]);
    c->state = to;
}

void agent_nbd_conn_ref(struct agent_nbd_conn *c)
{
    c->refs++;
}

static void conn_free(void *arg)
{
    struct agent_nbd_conn *c = arg;
    free_slots(c);
    if (c->timer) event_free(c->timer);
    if (c->resume) event_free(c->resume);
    free(c->opt_buf);
    free(c);
}

void agent_nbd_conn_unref(struct agent_nbd_conn *c)
{
    if (BD_NEVER(c->refs <= 0)) return;
    if (--c->refs > 0) return;
    if (reactor_defer(c->s->rx, conn_free, c) < 0)
        log_error(c->s->o.tag, "nbd conn %llu: cannot defer free; leaking it",
                  (unsigned long long)c->id);
}

void agent_nbd_conn_hs_leave(struct agent_nbd_conn *c)
{
    struct agent_nbd *s = c->s;
    if (!c->in_hs) return;
    if (c->hs_prev) c->hs_prev->hs_next = c->hs_next;
    else s->hs_head = c->hs_next;
    if (c->hs_next) c->hs_next->hs_prev = c->hs_prev;
    else s->hs_tail = c->hs_prev;
    c->hs_prev = c->hs_next = NULL;
    c->in_hs = false;
    s->n_hs--;
}

void agent_nbd_conn_close(struct agent_nbd_conn *c, const char *why)
{
    struct agent_nbd *s = c->s;
    if (!c->bev) return;
    bool in_hs = c->in_hs;
    log_line(in_hs ? LOG_DEBUG : LOG_INFO, s->o.tag, c->vol ? c->vinfo.name : NULL, 0,
             "nbd conn %llu (%s): closed in %s: %s", (unsigned long long)c->id, c->peer,
             state_names[c->state], why ? why : c->close_why ? c->close_why : "closed");
    if (in_hs) metric_inc(s->m_handshakes_failed);
    /* Frees the socket and the queued output; references to slot buffers
     * are released from inside this call, and see bev == NULL. */
    struct bufferevent *bev = c->bev;
    c->bev = NULL;
    bufferevent_free(bev);
    drop_partial(c);
    event_del(c->timer);
    event_del(c->resume);
    agent_nbd_conn_hs_leave(c);
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    s->n_conns--;
    agent_nbd_conn_set_state(c, AGENT_NBD_CLOSED);
    if (c->vol && c->n_vol == 0) {
        agent_vol_put(c->vol);
        c->vol = NULL;
    }
    s->on_conn_closed(s); /* the server: a stop may be complete */
    agent_nbd_conn_unref(c); /* the "open" reference */
}

void agent_nbd_conn_proto_error(struct agent_nbd_conn *c, const char *why)
{
    c->s->st.proto_errors++;
    metric_inc(c->s->m_proto_errors);
    log_warn(c->s->o.tag, "nbd conn %llu (%s): protocol error in %s: %s; closing",
             (unsigned long long)c->id, c->peer, state_names[c->state], why);
    agent_nbd_conn_close(c, why);
}

void agent_nbd_conn_read_enable(struct agent_nbd_conn *c, bool on)
{
    if (!c->bev || c->read_off == !on) return;
    c->read_off = !on;
    if (on) bufferevent_enable(c->bev, EV_READ);
    else bufferevent_disable(c->bev, EV_READ);
}

bool agent_nbd_conn_reading(const struct agent_nbd_conn *c)
{
    enum agent_nbd_conn_state st = c->state;
    return st == AGENT_NBD_HS_FLAGS || st == AGENT_NBD_HS_OPT || st == AGENT_NBD_HS_DATA ||
           st == AGENT_NBD_TX_HDR || st == AGENT_NBD_TX_DATA || st == AGENT_NBD_TX_SKIP;
}

void agent_nbd_conn_maybe_resume(struct agent_nbd_conn *c)
{
    if (!c->bev) return;
    if (c->state == AGENT_NBD_DRAIN) {
        if (idle(c) && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            agent_nbd_conn_close(c, NULL);
        return;
    }
    if (!agent_nbd_conn_reading(c)) return;
    if (c->read_off) agent_nbd_conn_read_enable(c, true);
    event_active(c->resume, 0, 0); /* input may already be buffered */
}

void agent_nbd_conn_drain(struct agent_nbd_conn *c, uint64_t drain_ms, const char *why)
{
    if (!c->bev || c->state == AGENT_NBD_DRAIN) return;
    c->close_why = why;
    drop_partial(c);
    agent_nbd_conn_set_state(c, AGENT_NBD_DRAIN);
    agent_nbd_conn_read_enable(c, false);
    struct timeval tv = {(time_t)(drain_ms / 1000), (suseconds_t)(drain_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    agent_nbd_conn_maybe_resume(c); /* closes at once when nothing is owed */
}

bool agent_nbd_conn_send(struct agent_nbd_conn *c, const void *p, size_t len)
{
    if (!c->bev) return false;
    if (evbuffer_add(bufferevent_get_output(c->bev), p, len) < 0) {
        agent_nbd_conn_close(c, "out of memory for output");
        return false;
    }
    return true;
}

