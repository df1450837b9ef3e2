/* agent_client.c: the agent's client of the proxy cluster (see
 * agent_client.h for the contract).
 *
 * A call is in one of three places: sending (a conn_call is pending on
 * one link), waiting (on the client's retry list, due at due_ms), or done
 * (its callback ran).  One timer serves the whole retry list: it is armed
 * for the earliest due time, and a link coming up fires it at once.
 *
 *   submit -> try_send: pick an up link (the preferred one first) and
 *             conn_call; none up or the send failed -> wait(backoff)
 *   response OK                        -> done(0); prefer this link
 *   ENOTLEADER                         -> wait(backoff), then the hinted link
 *   EAGAIN (nothing was applied) -> wait(backoff), then another link
 *   ESHUTDOWN/ENOMEM:
 *       idempotent     -> wait(backoff), then another link
 *       not idempotent -> done(err) with unknown = true (see below)
 *   no response (dropped, timed out), EIO, ETIMEDOUT:
 *       idempotent     -> wait(backoff), then another link
 *       not idempotent -> done(err) with unknown = true
 *   anything else                      -> done(err)
 *   deadline passed while waiting      -> done(-ETIMEDOUT)
 *
 * The per-send timeout is the time left to the deadline, except that an
 * idempotent call gives up on one proxy after a third of io_timeout_ms
 * (at least a second) so that a wedged proxy costs a failover, not the
 * whole budget. */
#include "roles/agent/agent_client.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "net/link.h"
#include "runtime/metrics.h"
#include "base/util.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 200

struct agent_client {
    struct reactor *rx;
    char tag[32];
    uint64_t io_timeout_ms;
    struct link **links;
    unsigned n;
    unsigned pref;                 /* the link that last answered */
    struct agent_client_req *waiting; /* retry list (unordered) */
    struct event *timer;
    bool freeing;
    uint64_t retries;
    uint64_t rand;
    struct metrics_counter *m_retries;
    /* Bytes sent on each link and not answered yet, and what a VOL_READ
     * found ahead of it there (how long a quiet volume's read queues
     * behind its neighbours' ships: README "QoS"). */
    uint64_t *link_bytes;
    struct metrics_counter *m_ahead_bytes, *m_ahead_reads;
    void (*on_up)(void *arg);
    void (*on_request)(struct conn *c, struct conn_frame *f, void *arg);
    void *arg;
    char agent_id[WIRE_ID_MAX + 1];
};

static void try_send(struct agent_client_req *call);
static void on_response(struct conn_call *cc, int err, struct conn_frame *f);

static void done(struct agent_client_req *call, int err, struct conn_frame *f)
{
    call->cb(call, err, f);
}

/* ---- the retry list ------------------------------------------------------ */

static void arm_timer(struct agent_client *cl)
{
    if (!cl->waiting || cl->freeing) {
        evtimer_del(cl->timer);
        return;
    }
    uint64_t due = UINT64_MAX, now = util_mono_ms();
    for (struct agent_client_req *c = cl->waiting; c; c = c->next)
        if (c->due_ms < due) due = c->due_ms;
    uint64_t d = due > now ? due - now : 0;
    struct timeval tv = {(time_t)(d / 1000), (suseconds_t)(d % 1000) * 1000};
    evtimer_add(cl->timer, &tv);
}

/* Retry CALL after its backoff (or at once if NOW). */
static void wait_retry(struct agent_client_req *call, bool now)
{
    struct agent_client *cl = call->cl;
    uint64_t t = util_mono_ms();
    if (t >= call->deadline_ms) {
        done(call, -ETIMEDOUT, NULL);
        return;
    }
    uint32_t d = now ? 0 : call->backoff_ms;
    if (d) d += (uint32_t)(util_rand64(&cl->rand) % (d / 2 + 1));
    call->backoff_ms = BD_MIN(call->backoff_ms * 2, BACKOFF_MAX_MS);
    call->due_ms = BD_MIN(t + d, call->deadline_ms);
    call->next = cl->waiting;
    cl->waiting = call;
    arm_timer(cl);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct agent_client *cl = arg;
    uint64_t now = util_mono_ms();
    /* Take the due calls off the list first: try_send may put them back. */
    struct agent_client_req *due = NULL, **pp = &cl->waiting;
    while (*pp) {
        struct agent_client_req *c = *pp;
        if (c->due_ms <= now) {
            *pp = c->next;
            c->next = due;
            due = c;
        } else {
            pp = &c->next;
        }
    }
    while (due) {
        struct agent_client_req *c = due;
        due = c->next;
        c->next = NULL;
        if (now >= c->deadline_ms) done(c, -ETIMEDOUT, NULL);
        else try_send(c);
    }
    arm_timer(cl);
}

/* ---- sends and responses ------------------------------------------------- */

static bool retry_status(int err)
{
    return err == -BD_ENOTLEADER || err == -EAGAIN || err == -ESHUTDOWN || err == -ENOMEM ||
           err == -BD_ENOLEADER;
}

static void on_response(struct conn_call *cc, int err, struct conn_frame *f)
{
    struct agent_client_req *call = bd_container_of(cc, struct agent_client_req, cc);
    struct agent_client *cl = call->cl;
    if (call->link < cl->n) {
        uint64_t *lb = &cl->link_bytes[call->link];
        *lb -= BD_MIN(*lb, call->sent_bytes);
    }
    call->sent_bytes = 0;
    if (cl->freeing) {
        done(call, -ESHUTDOWN, NULL);
        return;
    }
    if (err == 0) {
        cl->pref = call->link;
        done(call, 0, f);
        return;
    }
    /* Refusals that prove nothing was done: ENOTLEADER (by definition the
     * proxy did not take it) and EAGAIN (the proxy answers it only when
     * nothing reached raft; a proposal whose fate it does not know is
     * ETIMEDOUT, see proxy_io.c).  ESHUTDOWN and ENOMEM may come from a
     * proxy giving up midway, so a non-idempotent request is handed back
     * as an unknown outcome. */
    if (f && retry_status(err) && !call->idempotent && err != -BD_ENOTLEADER && err != -EAGAIN) {
        call->unknown = true;
        done(call, err, f);
        return;
    }
    if (f && retry_status(err)) {
        if (err == -BD_ENOTLEADER) {
            struct wire_error e;
            if (wire_decode_error(f->body, f->hdr.len, f->hdr.payload_len, &e) == 0 && e.hint)
                for (unsigned i = 0; i < cl->n; i++)
                    if (link_peer_id(cl->links[i]) == e.hint) cl->pref = i;
            if (cl->pref == call->link) cl->pref = (call->link + 1) % cl->n;
        } else {
            cl->pref = (call->link + 1) % cl->n;
        }
        cl->retries++;
        metric_inc(cl->m_retries);
        wait_retry(call, false);
        return;
    }
    bool unknown = !f || err == -EIO || err == -ETIMEDOUT;
    if (unknown && call->idempotent) {
        if (!f) cl->pref = (call->link + 1) % cl->n; /* that proxy looked wedged or gone */
        cl->retries++;
        metric_inc(cl->m_retries);
        wait_retry(call, false);
        return;
    }
    call->unknown = unknown;
    done(call, err, f);
}

/* Send CALL on an up link, the preferred one first.  0 if sent; -ENOTCONN
 * if no link took it; another -errno if the request cannot be sent at all. */
static int send_once(struct agent_client_req *call)
{
    struct agent_client *cl = call->cl;
    uint64_t now = util_mono_ms();
    if (now >= call->deadline_ms) return -ETIMEDOUT;
    uint64_t left = call->deadline_ms - now;
    uint64_t per = left;
    if (call->idempotent) per = BD_MIN(left, BD_MAX(1000, cl->io_timeout_ms / 3));
    for (unsigned k = 0; k < cl->n; k++) {
        unsigned i = (cl->pref + k) % cl->n;
        if (!link_is_up(cl->links[i])) continue;
        const struct conn_payload *pay = call->payload.len ? &call->payload : NULL;
        if (pay && call->payload_ref) call->payload_ref(call->payload.arg);
        call->cc.cb = on_response;
        call->cc.data = call;
        call->link = i;
        const uint8_t *fields = call->fields_big ? call->fields_big : call->fields;
        int rc = link_call(cl->links[i], &call->cc, call->type, fields, call->fields_len,
                           pay, (uint32_t)BD_MIN(per, UINT32_MAX));
        if (rc == 0) {
            call->attempts++;
            if (call->type == WIRE_VOL_READ) {
                metric_add(cl->m_ahead_bytes, cl->link_bytes[i]);
                metric_inc(cl->m_ahead_reads);
            }
            call->sent_bytes = call->fields_len + (pay ? pay->len : 0);
            cl->link_bytes[i] += call->sent_bytes;
            return 0;
        }
        if (pay && call->payload_ref && pay->release)
            pay->release(pay->data, pay->len, pay->arg); /* the send did not take it */
        if (rc != -ENOTCONN) return rc;
    }
    return -ENOTCONN;
}

static void try_send(struct agent_client_req *call)
{
    int rc = send_once(call);
    if (rc == -ENOTCONN) wait_retry(call, false);
    else if (rc < 0) done(call, rc, NULL);
}

void agent_client_call(struct agent_client *cl, struct agent_client_req *call)
{
    call->cl = cl;
    call->unknown = false;
    call->attempts = 0;
    call->backoff_ms = BACKOFF_MIN_MS;
    call->next = NULL;
    uint64_t now = util_mono_ms();
    if (!call->deadline_ms) call->deadline_ms = now + cl->io_timeout_ms;
    if (!cl->freeing && send_once(call) == 0) return;
    /* Not sent: the retry list takes it, so the callback never runs from
     * inside this call (a dead deadline fails there at once). */
    call->due_ms = now;
    call->next = cl->waiting;
    cl->waiting = call;
    if (!cl->freeing) event_active(cl->timer, EV_TIMEOUT, 0);
}

/* ---- links --------------------------------------------------------------- */

static void on_link_up(struct link *l, void *arg)
{
    struct agent_client *cl = arg;
    if (cl->agent_id[0]) {
        /* Tell this proxy which agent this connection reaches (VOL_BARRIER
         * comes back on it); a lost hello is a lost barrier, never worse. */
        struct wire_agent_hello_req h = {.agent_id = wire_cstr(cl->agent_id)};
        uint8_t buf[2 + WIRE_ID_MAX];
        int n = wire_encode_agent_hello_req(buf, sizeof(buf), &h);
        if (n > 0) link_send_oneway(l, WIRE_AGENT_HELLO, buf, (size_t)n, NULL);
    }
    /* Calls waiting for a proxy go now. */
    for (struct agent_client_req *c = cl->waiting; c; c = c->next)
        c->due_ms = 0;
    if (cl->waiting) event_active(cl->timer, EV_TIMEOUT, 0);
    if (cl->on_up) cl->on_up(cl->arg);
}

static void on_link_request(struct link *l, struct conn *c, struct conn_frame *f, void *arg)
{
    (void)l;
    struct agent_client *cl = arg;
    if (cl->on_request && !cl->freeing) cl->on_request(c, f, cl->arg);
    else if (!(f->hdr.flags & WIRE_F_ONEWAY))
        conn_reply_error(c, &f->hdr, -ENOTSUP, 0, "no requests expected by this agent");
}

static const struct link_ops client_link_ops = {.on_up = on_link_up,
                                                .on_request = on_link_request};

struct agent_client *agent_client_new(struct reactor *rx, const struct agent_client_opts *o,
                                      int *err)
{
    struct agent_client *cl = calloc(1, sizeof(*cl));
    if (!cl || !o->n) {
        free(cl);
        *err = o->n ? -ENOMEM : -EINVAL;
        return NULL;
    }
    cl->rx = rx;
    util_strlcpy(cl->tag, o->tag ? o->tag : "agent", sizeof(cl->tag));
    cl->io_timeout_ms = o->io_timeout_ms;
    cl->on_up = o->on_up;
    cl->on_request = o->on_request;
    if (o->agent_id) util_strlcpy(cl->agent_id, o->agent_id, sizeof(cl->agent_id));
    cl->arg = o->arg;
    cl->rand = util_seed();
    char labels[64];
    snprintf(labels, sizeof(labels), "role=\"%s\"", cl->tag);
    cl->m_retries = metrics_counter("blockd_agent_retries_total",
                                    "Agent requests to proxies retried", labels);
    cl->m_ahead_bytes = metrics_counter("blockd_agent_read_ahead_bytes_total",
                                        "Bytes sent and unanswered on the link a VOL_READ went on, "
                                        "at its send (summed over reads)", labels);
    cl->m_ahead_reads = metrics_counter("blockd_agent_read_ahead_reads_total",
                                        "VOL_READs counted in blockd_agent_read_ahead_bytes_total",
                                        labels);
    cl->timer = evtimer_new(reactor_base(rx), on_timer, cl);
    cl->links = calloc(o->n, sizeof(*cl->links));
    cl->link_bytes = calloc(o->n, sizeof(*cl->link_bytes));
    if (!cl->timer || !cl->links || !cl->link_bytes) goto err_nomem;
    struct conn_opts co = {.tag = cl->tag, .auth = o->auth, .fault = o->fault,
                           .connect_timeout_ms = (uint32_t)BD_MIN(o->io_timeout_ms, 5000),
                           .expect_role = WIRE_ROLE_PROXY};
    for (unsigned i = 0; i < o->n; i++) {
        cl->links[i] = link_new(rx, o->proxies[i], &co, &client_link_ops, cl);
        if (!cl->links[i]) goto err_nomem;
        cl->n++;
    }
    return cl;

err_nomem:
    agent_client_free(cl);
    *err = -ENOMEM;
    return NULL;
}

void agent_client_free(struct agent_client *cl)
{
    if (!cl) return;
    cl->freeing = true;
    while (cl->waiting) {
        struct agent_client_req *c = cl->waiting;
        cl->waiting = c->next;
        c->next = NULL;
        done(c, -ESHUTDOWN, NULL);
    }
    for (unsigned i = 0; i < cl->n; i++) link_free(cl->links[i]); /* fails sends: -ESHUTDOWN */
    if (cl->timer) event_free(cl->timer);
    free(cl->links);
    free(cl->link_bytes);
    free(cl);
}

unsigned agent_client_up(const struct agent_client *cl)
{
    unsigned n = 0;
    for (unsigned i = 0; i < cl->n; i++) n += link_is_up(cl->links[i]);
    return n;
}

uint64_t agent_client_retries(const struct agent_client *cl)
{
    return cl->retries;
}

void agent_client_status(const struct agent_client *cl, struct cJSON *out)
{
    for (unsigned i = 0; i < cl->n; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o) return;
        cJSON_AddStringToObject(o, "addr", link_addr(cl->links[i]));
        cJSON_AddBoolToObject(o, "up", link_is_up(cl->links[i]));
        cJSON_AddNumberToObject(o, "id", (double)link_peer_id(cl->links[i]));
        cJSON_AddItemToArray(out, o);
    }
}
