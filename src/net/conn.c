/* conn.c: framed wire connections (see conn.h for the contract).
 *
 * State of the input side, kept on the conn so decoding resumes across
 * partial reads (STYLE.md §8):
 *
 *   AT_BOUNDARY --40 header bytes, valid--> HAVE_HDR --hdr.len body bytes--> dispatch
 *        ^                                                                  |
 *        +------------------------------------------------------------------+
 *
 * The body is allocated only once all of it has arrived, and only after the
 * header passed its checksum and the WIRE_MAX_FRAME bound, so a peer that
 * announces a huge frame and stalls costs nothing but the bytes it sent
 * (and the bufferevent read watermark caps those).  A frame that has begun
 * must finish within frame_timeout_ms: silence trips the bufferevent read
 * timeout, a trickle trips the elapsed-time check on every read.
 *
 * Pending calls live in a small hash table keyed by req_id (ids are
 * sequential, so the low bits spread well).  One sweep timer, armed while
 * calls are pending, fails those past their deadline; 200 ms resolution is
 * plenty for timeouts measured in seconds.
 *
 * Authentication (TLS) happens below the frames: the bufferevent is an
 * OpenSSL one and the handshake completes before any frame is read or
 * written.  A failed handshake surfaces as BEV_EVENT_ERROR before HELLO:
 * it is logged once, with the peer and OpenSSL's reason.  Until HELLO the
 * read watermark admits one HELLO-sized frame (a stranger cannot make us
 * buffer a maximal frame) and a one-shot timer bounds the whole handshake.
 *
 * Reference count: one reference while open, plus one per request handed
 * to the owner and not yet replied to.  The memory is freed (deferred to
 * the reactor, never under a callback) when the count reaches zero. */
#include "net/conn.h"
#include "net/tls.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"
#include "runtime/metrics.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <time.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONN_FRAMES_PER_WAKEUP 64
#define CONN_SWEEP_MS 200

struct conn {
    struct reactor *rx;
    struct bufferevent *bev;     /* NULL once closed */
    const struct conn_ops *ops;
    void *arg;
    struct conn_opts opts;
    char peer[80];               /* peer address for logs */
    uint64_t peer_id;            /* from the certificate (TLS) or HELLO */
    uint16_t peer_role;
    struct tls_identity *peer_cert; /* TLS: the peer's identity; NULL without */
    bool counted_unauth;         /* holds a slot of limits->n_unauth */
    bool counted;                /* holds a slot of limits->n_conns */
    bool is_client;
    bool hello_done;             /* handshake complete; requests may flow */
    bool closing;                /* conn_close ran or is pending a flush */
    bool flush_then_close;       /* close once output drains (error replies) */
    int close_err;               /* reason for a flush-then-close */
    bool read_paused;            /* back-pressure has disabled EV_READ */
    bool timeout_armed;          /* a partial frame's read timeout is set */
    int refs;                    /* see the file comment */
    uint32_t inflight;           /* requests given to the owner, unanswered */

    bool have_hdr;               /* input state: header decoded, body pending */
    struct wire_hdr hdr;
    uint64_t frame_start_ms;     /* when the current frame began; 0 at a boundary */

    struct conn_call **buckets;  /* pending calls by req_id */
    unsigned nbuckets;           /* a power of two */
    unsigned npending;
    uint64_t next_req_id;
    struct event *sweep_ev;      /* call deadlines */
    struct event *resume_ev;     /* continue with buffered input */
    struct conn_call hello_call; /* client: our HELLO */

    uint64_t frames_in;          /* for fault.socket_failure_every */
    struct evbuffer *delay_buf;  /* fault.delay_ms: responses waiting */
    struct event *delay_ev;
    struct event *hello_ev;      /* server: the pre-authentication deadline */
};

/* Before HELLO a peer may have one frame of this size buffered (a HELLO is
 * under 200 bytes). */
#define CONN_PREAUTH_BUFFER (WIRE_HDR_LEN + 1024)

static struct metrics_counter *m_refused, *m_tls_failures;
static int tls_handshake_done(struct conn *c);
static void preauth_end(struct conn *c);
static struct metrics_counter *m_proto_errors, *m_dropped_responses, *m_frames_in, *m_frames_out,
    *m_bytes_in, *m_bytes_out;

static void metrics_init_once(void)
{
    if (m_frames_in) return;
    m_proto_errors = metrics_counter("blockd_wire_protocol_errors_total",
                                     "Wire connections closed for malformed input", "");
    m_dropped_responses = metrics_counter("blockd_wire_dropped_responses_total",
                                          "Responses matching no pending request", "");
    m_frames_in = metrics_counter("blockd_wire_frames_received_total", "Wire frames received", "");
    m_frames_out = metrics_counter("blockd_wire_frames_sent_total", "Wire frames sent", "");
    m_bytes_in = metrics_counter("blockd_wire_received_bytes_total", "Wire bytes received", "");
    m_bytes_out = metrics_counter("blockd_wire_sent_bytes_total", "Wire bytes sent", "");
    m_refused = metrics_counter("blockd_wire_refused_connections_total",
                                "Connections closed at accept by a connection limit", "");
    m_tls_failures = metrics_counter("blockd_wire_tls_failures_total",
                                     "Wire connections whose TLS handshake failed", "");
}

uint8_t *conn_frame_take(struct conn_frame *f)
{
    uint8_t *b = f->body;
    f->body = NULL;
    return b;
}

void conn_auth_init(struct conn_auth *a, const char *cluster_id, struct tls_ctx *tls,
                    uint64_t node_id, uint16_t role, const char *name)
{
    memset(a, 0, sizeof(*a));
    a->cluster_hash = util_xxh3(cluster_id, strlen(cluster_id));
    a->tls = tls;
    a->node_id = node_id;
    a->role = role;
    util_strlcpy(a->name, name, sizeof(a->name));
}

/* ---- lifetime ------------------------------------------------------------ */

static void conn_free_now(void *arg)
{
    struct conn *c = arg;
    free(c->peer_cert);
    free(c->buckets);
    free(c);
}

/* Give back the listener slots C holds. */
static void limits_release(struct conn *c, bool unauth_only)
{
    struct conn_limits *l = c->opts.limits;
    if (!l) return;
    if (c->counted_unauth) {
        c->counted_unauth = false;
        l->n_unauth--;
    }
    if (!unauth_only && c->counted) {
        c->counted = false;
        l->n_conns--;
    }
}

static void conn_unref(struct conn *c)
{
    if (BD_NEVER(c->refs <= 0)) return;
    if (--c->refs == 0) {
        if (reactor_defer(c->rx, conn_free_now, c) < 0) {
            /* Out of memory for the deferral: leak rather than free under a
             * callback that may still touch the conn. */
            log_error(c->opts.tag, "conn %s: cannot defer free", c->peer);
        }
    }
}

/* ---- pending calls ------------------------------------------------------- */

static int table_grow(struct conn *c)
{
    unsigned n = c->nbuckets ? c->nbuckets * 2 : 64;
    struct conn_call **b = calloc(n, sizeof(*b));
    if (!b) return -ENOMEM;
    for (unsigned i = 0; i < c->nbuckets; i++) {
        struct conn_call *call = c->buckets[i];
        while (call) {
            struct conn_call *next = call->next;
            unsigned k = (unsigned)call->req_id & (n - 1);
            call->next = b[k];
            b[k] = call;
            call = next;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
    return 0;
}

static struct conn_call *table_remove(struct conn *c, uint64_t req_id)
{
    if (!c->nbuckets) return NULL;
    struct conn_call **pp = &c->buckets[(unsigned)req_id & (c->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->req_id == req_id) {
            struct conn_call *call = *pp;
            *pp = call->next;
            call->next = NULL;
            c->npending--;
            return call;
        }
    }
    return NULL;
}

/* Unlink every pending call for which PRED holds; return them as a list. */
static struct conn_call *table_take_if(struct conn *c, uint64_t now, bool all)
{
    struct conn_call *out = NULL;
    for (unsigned i = 0; i < c->nbuckets; i++) {
        struct conn_call **pp = &c->buckets[i];
        while (*pp) {
            struct conn_call *call = *pp;
            if (all || (call->deadline_ms && call->deadline_ms <= now)) {
                *pp = call->next;
                call->next = out;
                out = call;
                c->npending--;
            } else {
                pp = &call->next;
            }
        }
    }
    return out;
}

static void fail_calls(struct conn_call *list, int err)
{
    while (list) {
        struct conn_call *next = list->next;
        list->next = NULL;
        list->c = NULL;
        list->cb(list, err, NULL);
        list = next;
    }
}

static void arm_sweep(struct conn *c)
{
    if (c->npending && c->sweep_ev && !evtimer_pending(c->sweep_ev, NULL)) {
        struct timeval tv = {0, CONN_SWEEP_MS * 1000};
        evtimer_add(c->sweep_ev, &tv);
    }
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    c->refs++; /* callbacks below may close the conn */
    fail_calls(table_take_if(c, util_mono_ms(), false), -ETIMEDOUT);
    if (!c->closing) arm_sweep(c);
    conn_unref(c);
}

/* ---- output -------------------------------------------------------------- */

static void on_delay(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    if (c->bev) evbuffer_add_buffer(bufferevent_get_output(c->bev), c->delay_buf);
}

static int send_frame(struct conn *c, uint16_t type, uint16_t flags, uint16_t status,
                      uint64_t req_id, const void *fields, size_t flen,
                      const struct conn_payload *payload)
{
    size_t plen = payload ? payload->len : 0;
    if (flen > WIRE_MAX_FIELDS || flen + plen > WIRE_MAX_FRAME) return -EMSGSIZE;
    struct wire_hdr h = {
        .version = WIRE_VERSION,
        .type = type,
        .flags = flags,
        .status = status,
        .len = (uint32_t)(flen + plen),
        .req_id = req_id,
        .payload_len = (uint32_t)plen,
    };
    uint8_t buf[WIRE_HDR_LEN + 512];
    wire_encode_hdr(buf, &h, fields, flen);
    bool delayed = c->opts.fault.delay_ms && (flags & WIRE_F_RESPONSE);
    struct evbuffer *out = delayed ? c->delay_buf : bufferevent_get_output(c->bev);
    int rc;
    if (flen <= sizeof(buf) - WIRE_HDR_LEN) {
        if (flen) memcpy(buf + WIRE_HDR_LEN, fields, flen);
        rc = evbuffer_add(out, buf, WIRE_HDR_LEN + flen);
    } else {
        rc = evbuffer_add(out, buf, WIRE_HDR_LEN);
        if (rc == 0) rc = evbuffer_add(out, fields, flen);
    }
    if (rc == 0 && plen) {
        if (payload->release)
            rc = evbuffer_add_reference(out, payload->data, plen, payload->release, payload->arg);
        else
            rc = evbuffer_add(out, payload->data, plen);
    }
    if (rc < 0) return -ENOMEM; /* the frame may be half queued: the caller closes */
    if (delayed && !evtimer_pending(c->delay_ev, NULL)) {
        struct timeval tv = {(time_t)(c->opts.fault.delay_ms / 1000),
                             (suseconds_t)(c->opts.fault.delay_ms % 1000) * 1000};
        evtimer_add(c->delay_ev, &tv);
    }
    metric_inc(m_frames_out);
    metric_add(m_bytes_out, WIRE_HDR_LEN + flen + plen);
    return 0;
}

/* ---- close --------------------------------------------------------------- */

static void close_now(struct conn *c, int err)
{
    if (!c->bev) return;
    c->closing = true;
    bufferevent_free(c->bev); /* closes the socket; drops unsent output */
    c->bev = NULL;
    limits_release(c, false);
    struct event *evs[] = {c->sweep_ev, c->resume_ev, c->delay_ev, c->hello_ev};
    for (unsigned i = 0; i < BD_ARRAY_SIZE(evs); i++)
        if (evs[i]) event_free(evs[i]);
    c->sweep_ev = c->resume_ev = c->delay_ev = c->hello_ev = NULL;
    if (c->delay_buf) evbuffer_free(c->delay_buf);
    c->delay_buf = NULL;
    fail_calls(table_take_if(c, 0, true), err ? err : -ECONNRESET);
    if (c->ops->on_close) c->ops->on_close(c, err, c->arg);
    conn_unref(c); /* the "open" reference */
}

void conn_close(struct conn *c, int err)
{
    if (!c->bev) return;
    close_now(c, err);
}

/* Reply already queued; close once it has been written (or at once if the
 * peer stops reading: the frame timeout bounds the wait). */
static void close_after_flush(struct conn *c, int err)
{
    if (!c->bev || c->flush_then_close) return;
    c->flush_then_close = true;
    c->closing = true;
    c->close_err = err;
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        close_now(c, err);
        return;
    }
    struct timeval tv = {(time_t)(c->opts.frame_timeout_ms / 1000),
                         (suseconds_t)(c->opts.frame_timeout_ms % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, NULL, &tv);
}

static void proto_error(struct conn *c, int err, const char *what)
{
    metric_inc(m_proto_errors);
    log_warn(c->opts.tag, "wire %s: %s (%s); closing", c->peer, what, bd_strerror(err));
    close_now(c, err);
}

/* ---- input --------------------------------------------------------------- */

/* The output bound is the accepting side's only (conn.h: "a server conn").
 * A connecting side that stopped reading because its own requests piled
 * up would stop reading the answers too: the peer's output then fills,
 * the peer stops reading in turn, and neither queue drains again.  With
 * answers as large as the requests (echo, blob reads beside blob writes)
 * that happened once about 2 x out_high_water was queued (test_tls
 * bulk_frames_*).  Reading answers never adds output, so it need not
 * stop. */
static bool should_pause(struct conn *c)
{
    if (c->opts.max_inflight && c->inflight >= c->opts.max_inflight) return true;
    return !c->is_client &&
           evbuffer_get_length(bufferevent_get_output(c->bev)) > c->opts.out_high_water;
}

static void pause_read(struct conn *c)
{
    if (c->read_paused) return;
    c->read_paused = true;
    bufferevent_disable(c->bev, EV_READ);
}

static void maybe_resume(struct conn *c)
{
    if (!c->read_paused || !c->bev || c->closing || should_pause(c)) return;
    c->read_paused = false;
    bufferevent_enable(c->bev, EV_READ);
    event_active(c->resume_ev, 0, 0); /* frames may already be buffered */
}

static void set_frame_timeout(struct conn *c, bool partial)
{
    if (partial == c->timeout_armed) return;
    c->timeout_armed = partial;
    if (partial) {
        struct timeval tv = {(time_t)(c->opts.frame_timeout_ms / 1000),
                             (suseconds_t)(c->opts.frame_timeout_ms % 1000) * 1000};
        bufferevent_set_timeouts(c->bev, &tv, NULL);
    } else {
        bufferevent_set_timeouts(c->bev, NULL, NULL);
    }
}

static void handle_response(struct conn *c, struct conn_frame *f)
{
    struct conn_call *call = table_remove(c, f->hdr.req_id);
    if (!call) {
        metric_inc(m_dropped_responses);
        log_debug(c->opts.tag, "wire %s: dropped response %s req=%llu matching no call", c->peer,
                  wire_type_name(f->hdr.type), (unsigned long long)f->hdr.req_id);
        return;
    }
    call->c = NULL;
    call->cb(call, wire_status_to_err(f->hdr.status), f);
}

static void handle_hello(struct conn *c, struct conn_frame *f)
{
    struct wire_hello_req h;
    const struct conn_auth *me = c->opts.auth;
    /* Normally set by the CONNECTED event; never read a frame without it. */
    if (me->tls && !c->peer_cert && tls_handshake_done(c) < 0) return;
    c->inflight++; /* every path below replies exactly once */
    c->refs++;
    if (f->hdr.type != WIRE_HELLO || (f->hdr.flags & WIRE_F_ONEWAY)) {
        conn_reply_error(c, &f->hdr, -EACCES, 0, "HELLO required first");
        close_after_flush(c, -EACCES);
        return;
    }
    if (wire_decode_hello_req(f->body, f->hdr.len, f->hdr.payload_len, &h) < 0) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed HELLO");
        close_after_flush(c, -EPROTO);
        return;
    }
    if (h.cluster_hash != me->cluster_hash) {
        log_warn(c->opts.tag, "wire %s: HELLO from %.*s refused: other cluster", c->peer,
                 (int)h.name.len, h.name.ptr);
        conn_reply_error(c, &f->hdr, -EACCES, 0, "not a member of this cluster");
        close_after_flush(c, -EACCES);
        return;
    }
    if (c->peer_cert) {
        /* The certificate says who the peer is; HELLO may only agree. */
        const struct tls_identity *id = c->peer_cert;
        if (h.role != id->role || h.node_id != id->node_id) {
            log_warn(c->opts.tag,
                     "wire %s: HELLO refused: claims %s %llu, certificate says %s %s", c->peer,
                     tls_role_name(h.role) ? tls_role_name(h.role) : "?",
                     (unsigned long long)h.node_id, tls_role_name(id->role), id->id);
            conn_reply_error(c, &f->hdr, -EACCES, 0, "HELLO does not match the certificate");
            close_after_flush(c, -EACCES);
            return;
        }
    }
    c->peer_id = h.node_id;
    c->peer_role = h.role;
    if (c->ops->on_hello) {
        int rc = c->ops->on_hello(c, &h, c->arg);
        if (rc < 0) {
            conn_reply_error(c, &f->hdr, -EACCES, 0, "peer refused: %s", bd_strerror(rc));
            close_after_flush(c, -EACCES);
            return;
        }
    }
    c->hello_done = true;
    preauth_end(c);
    struct wire_hello_resp r = {.node_id = me->node_id, .role = me->role};
    uint8_t buf[64];
    int n = wire_encode_hello_resp(buf, sizeof(buf), &r);
    conn_reply(c, &f->hdr, buf, (size_t)n, NULL);
}

static void dispatch(struct conn *c, struct conn_frame *f)
{
    if (f->hdr.flags & WIRE_F_RESPONSE) {
        if (!c->hello_done && !c->is_client) {
            /* Nothing was asked of this peer: a response now is noise from
             * an unauthenticated socket. */
            proto_error(c, -EPROTO, "response before HELLO");
            return;
        }
        handle_response(c, f);
        return;
    }
    if (!c->hello_done) {
        if (c->is_client) {
            proto_error(c, -EPROTO, "request before our HELLO was answered");
            return;
        }
        handle_hello(c, f);
        return;
    }
    bool oneway = f->hdr.flags & WIRE_F_ONEWAY;
    if (!oneway) {
        c->inflight++;
        c->refs++;
    }
    if (f->hdr.type == WIRE_HELLO) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "HELLO already done");
        return;
    }
    if (f->hdr.type == WIRE_PING) {
        struct wire_ping_req p;
        if (wire_decode_ping_req(f->body, f->hdr.len, f->hdr.payload_len, &p) < 0) {
            conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed PING");
            return;
        }
        struct wire_ping_resp r = {.stamp = p.stamp};
        uint8_t buf[16];
        int n = wire_encode_ping_resp(buf, sizeof(buf), &r);
        conn_reply(c, &f->hdr, buf, (size_t)n, NULL);
        return;
    }
    if (f->hdr.type == WIRE_CLOCK) {
        struct wire_clock_req q;
        if (wire_decode_clock_req(f->body, f->hdr.len, f->hdr.payload_len, &q) < 0) {
            conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed CLOCK");
            return;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct wire_clock_resp r = {.wall_us = (uint64_t)ts.tv_sec * 1000000u +
                                               (uint64_t)ts.tv_nsec / 1000u};
        uint8_t buf[16];
        int n = wire_encode_clock_resp(buf, sizeof(buf), &r);
        conn_reply(c, &f->hdr, buf, (size_t)n, NULL);
        return;
    }
    if (!wire_type_known(f->hdr.type)) {
        if (!oneway)
            conn_reply_error(c, &f->hdr, -ENOTSUP, 0, "unknown message type %u", f->hdr.type);
        return;
    }
    c->ops->on_request(c, f, c->arg);
}

static void process_input(struct conn *c)
{
    unsigned frames = 0;
    c->refs++; /* owner callbacks may close us; keep the memory until we return */
    while (c->bev && !c->closing) {
        if (should_pause(c)) {
            pause_read(c);
            break;
        }
        struct evbuffer *in = bufferevent_get_input(c->bev);
        size_t avail = evbuffer_get_length(in);
        if (!c->have_hdr) {
            if (avail < WIRE_HDR_LEN) {
                set_frame_timeout(c, avail > 0);
                if (avail > 0 && !c->frame_start_ms) c->frame_start_ms = util_mono_ms();
                break;
            }
            uint8_t hb[WIRE_HDR_LEN];
            evbuffer_copyout(in, hb, WIRE_HDR_LEN);
            int rc = wire_decode_hdr(hb, &c->hdr);
            if (rc < 0) {
                proto_error(c, rc, rc == -EMSGSIZE ? "frame too long"
                                   : tls_looks_like_handshake(hb, sizeof(hb))
                                       ? "a TLS handshake on a plaintext port"
                                       : "bad frame header");
                break;
            }
            if (!c->hello_done && !c->is_client &&
                ((c->hdr.flags & WIRE_F_RESPONSE) ||
                 c->hdr.len > CONN_PREAUTH_BUFFER - WIRE_HDR_LEN)) {
                /* Decided by the header alone: never wait for (or buffer)
                 * the body of a frame a stranger may not send.  (A small
                 * request gets its EAUTH answer in handle_hello.) */
                proto_error(c, -EACCES, (c->hdr.flags & WIRE_F_RESPONSE)
                                            ? "response before HELLO"
                                            : "a frame too large for a HELLO first");
                break;
            }
            evbuffer_drain(in, WIRE_HDR_LEN);
            avail -= WIRE_HDR_LEN;
            c->have_hdr = true;
            if (!c->frame_start_ms) c->frame_start_ms = util_mono_ms();
        }
        if (avail < c->hdr.len) {
            set_frame_timeout(c, true);
            if (util_mono_ms() - c->frame_start_ms > c->opts.frame_timeout_ms) {
                proto_error(c, -ETIMEDOUT, "frame not completed in time");
                break;
            }
            break;
        }
        struct conn_frame f = {.hdr = c->hdr, .body = malloc(c->hdr.len ? c->hdr.len : 1)};
        if (!f.body) {
            proto_error(c, -ENOMEM, "no memory for a frame body");
            break;
        }
        evbuffer_remove(in, f.body, c->hdr.len);
        c->have_hdr = false;
        c->frame_start_ms = 0;
        metric_inc(m_frames_in);
        metric_add(m_bytes_in, WIRE_HDR_LEN + c->hdr.len);
        if (wire_check_fields(&f.hdr, f.body) < 0) {
            free(f.body);
            proto_error(c, -EPROTO, "fields checksum mismatch");
            break;
        }
        dispatch(c, &f);
        free(f.body);
        c->frames_in++;
        if (c->opts.fault.socket_failure_every && c->bev && !c->closing &&
            c->frames_in % c->opts.fault.socket_failure_every == 0) {
            log_info(c->opts.tag, "wire %s: fault injection: closing after %llu frames", c->peer,
                     (unsigned long long)c->frames_in);
            close_now(c, -ECONNRESET);
            break;
        }
        if (++frames >= CONN_FRAMES_PER_WAKEUP) {
            if (c->bev && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
                event_active(c->resume_ev, 0, 0);
            break;
        }
    }
    if (c->bev && !c->closing && !c->have_hdr &&
        evbuffer_get_length(bufferevent_get_input(c->bev)) == 0) {
        set_frame_timeout(c, false);
        c->frame_start_ms = 0;
    }
    conn_unref(c);
}

/* The TLS handshake finished: read the identity the peer's certificate
 * names, and on the client side check it is the peer we meant to reach.
 * Returns 0, or closes C and returns -EACCES. */
static int tls_handshake_done(struct conn *c)
{
    struct tls_identity id;
    int rc = tls_bev_peer(c->opts.auth->tls, c->bev, &id);
    const char *why = NULL;
    if (rc == -ENOENT) why = "no certificate";
    else if (rc == -EACCES) why = "a certificate of another cluster";
    else if (rc < 0) why = "a certificate naming no blockd identity";
    else if (c->is_client && c->opts.expect_role && id.role != c->opts.expect_role)
        why = "a certificate for the wrong role";
    else if (c->is_client && c->opts.expect_id && id.node_id != c->opts.expect_id)
        why = "a certificate for another node";
    if (why) {
        metric_inc(m_tls_failures);
        if (rc == 0)
            log_warn(c->opts.tag, "wire %s: refused: peer presented %s (%s %s; expected %s %llu)",
                     c->peer, why, tls_role_name(id.role), id.id,
                     tls_role_name(c->opts.expect_role), (unsigned long long)c->opts.expect_id);
        else
            log_warn(c->opts.tag, "wire %s: refused: peer presented %s", c->peer, why);
        close_now(c, -EACCES);
        return -EACCES;
    }
    c->peer_cert = malloc(sizeof(*c->peer_cert));
    if (!c->peer_cert) {
        close_now(c, -ENOMEM);
        return -ENOMEM;
    }
    *c->peer_cert = id;
    c->peer_role = id.role;
    c->peer_id = id.node_id;
    return 0;
}

/* HELLO done (server side): the connection leaves the pre-authentication
 * limits and may buffer whole frames. */
static void preauth_end(struct conn *c)
{
    limits_release(c, true);
    if (c->hello_ev) evtimer_del(c->hello_ev);
    if (c->bev) bufferevent_setwatermark(c->bev, EV_READ, 0, WIRE_HDR_LEN + WIRE_MAX_FRAME);
}

static void on_hello_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    if (c->hello_done || !c->bev) return;
    metric_inc(m_proto_errors);
    log_warn(c->opts.tag, "wire %s: no %s within %u ms; closing", c->peer,
             c->opts.auth->tls && !c->peer_cert ? "TLS handshake" : "HELLO",
             c->opts.hello_timeout_ms);
    close_now(c, -ETIMEDOUT);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    process_input(arg);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    if (c->bev && !c->closing && !c->read_paused) process_input(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->flush_then_close) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) close_now(c, c->close_err);
        return;
    }
    maybe_resume(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (c->opts.auth->tls && !c->peer_cert && tls_handshake_done(c) < 0) return;
        return;
    }
    int err;
    if (!c->hello_done && c->opts.auth->tls && (what & BEV_EVENT_ERROR)) {
        char why[200];
        metric_inc(m_tls_failures);
        log_warn(c->opts.tag, "wire %s: TLS handshake failed: %s; closing", c->peer,
                 tls_bev_error(bev, why, sizeof(why)));
        close_now(c, -EACCES);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        err = -ETIMEDOUT;
        if (!c->flush_then_close) metric_inc(m_proto_errors);
        log_warn(c->opts.tag, "wire %s: timed out %s; closing", c->peer,
                 (what & BEV_EVENT_READING) ? "inside a frame" : "writing");
    } else if (what & BEV_EVENT_EOF) {
        err = c->flush_then_close ? c->close_err : -ECONNRESET;
    } else {
        int e = EVUTIL_SOCKET_ERROR();
        err = e ? -e : -EIO;
        if (!c->flush_then_close)
            log_debug(c->opts.tag, "wire %s: socket error: %s", c->peer, bd_strerror(err));
    }
    close_now(c, err);
}

/* ---- construction -------------------------------------------------------- */

static struct conn *conn_new(struct reactor *rx, const struct conn_ops *ops, void *arg,
                             const struct conn_opts *opts)
{
    metrics_init_once();
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->rx = rx;
    c->ops = ops;
    c->arg = arg;
    c->opts = *opts;
    if (!c->opts.tag) c->opts.tag = "wire";
    if (!c->opts.max_inflight) c->opts.max_inflight = 256;
    if (!c->opts.out_high_water) c->opts.out_high_water = 64u << 20;
    if (!c->opts.frame_timeout_ms) c->opts.frame_timeout_ms = 30000;
    if (!c->opts.connect_timeout_ms) c->opts.connect_timeout_ms = 5000;
    /* Never longer for a stranger than for a stalled frame. */
    if (!c->opts.hello_timeout_ms) c->opts.hello_timeout_ms = BD_MIN(10000u, c->opts.frame_timeout_ms);
    c->refs = 1;
    c->next_req_id = 1;
    struct event_base *base = reactor_base(rx);
    c->sweep_ev = evtimer_new(base, on_sweep, c);
    c->resume_ev = event_new(base, -1, 0, on_resume, c);
    c->delay_ev = evtimer_new(base, on_delay, c);
    c->delay_buf = evbuffer_new();
    if (!c->sweep_ev || !c->resume_ev || !c->delay_ev || !c->delay_buf || table_grow(c) < 0) {
        if (c->sweep_ev) event_free(c->sweep_ev);
        if (c->resume_ev) event_free(c->resume_ev);
        if (c->delay_ev) event_free(c->delay_ev);
        if (c->delay_buf) evbuffer_free(c->delay_buf);
        free(c->buckets);
        free(c);
        return NULL;
    }
    return c;
}

static void conn_setup_bev(struct conn *c)
{
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    /* Stop reading once a whole maximal frame is buffered: the peer cannot
     * make us hold more than one frame's worth of input. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, WIRE_HDR_LEN + WIRE_MAX_FRAME);
    bufferevent_setwatermark(c->bev, EV_WRITE, c->opts.out_high_water / 2, 0);
    /* libevent reads 16 KiB per call by default: a 1 MiB frame would take
     * 64 reads and as many buffer chains. */
    bufferevent_set_max_single_read(c->bev, 256 * 1024);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* Count a new connection against its listener's limits; false (and a
 * rate-limited log line) if it is over one. */
static bool limits_admit(struct conn *c)
{
    struct conn_limits *l = c->opts.limits;
    if (!l) return true;
    if ((l->max_conns && l->n_conns >= l->max_conns) ||
        (l->max_unauth && l->n_unauth >= l->max_unauth)) {
        l->refused++;
        metric_inc(m_refused);
        uint64_t now = util_mono_ms();
        if (now - l->last_log_ms >= 1000) {
            l->last_log_ms = now;
            log_warn(c->opts.tag, "wire %s: refused: %u connections open (limit %u), %u not "
                     "authenticated (limit %u); %llu refused so far",
                     c->peer, l->n_conns, l->max_conns, l->n_unauth, l->max_unauth,
                     (unsigned long long)l->refused);
        }
        return false;
    }
    l->n_conns++;
    l->n_unauth++;
    c->counted = c->counted_unauth = true;
    return true;
}

struct conn *conn_accept(struct reactor *rx, int fd, const struct conn_ops *ops, void *arg,
                         const struct conn_opts *opts)
{
    struct conn *c = conn_new(rx, ops, arg, opts);
    if (!c) {
        close(fd);
        return NULL;
    }
    struct sockaddr_storage ss = {0}; /* a socketpair's peer fills only the family */
    socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
        util_fmt_addr((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
    else
        util_strlcpy(c->peer, "?", sizeof(c->peer));
    if (ss.ss_family == AF_UNIX) util_strlcpy(c->peer, "unix", sizeof(c->peer));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    evutil_make_socket_nonblocking(fd);
    evutil_make_socket_closeonexec(fd);
    if (!limits_admit(c)) {
        close(fd);
        goto fail;
    }
    c->hello_ev = evtimer_new(reactor_base(rx), on_hello_deadline, c);
    if (!c->hello_ev) {
        close(fd);
        goto fail;
    }
    if (opts->auth->tls)
        c->bev = tls_bev_wire(opts->auth->tls, reactor_base(rx), fd, true);
    else
        c->bev = bufferevent_socket_new(reactor_base(rx), fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        if (!opts->auth->tls) close(fd);
        goto fail;
    }
    conn_setup_bev(c);
    /* Until HELLO: one small frame buffered at most, and a deadline for
     * the TLS handshake and HELLO together. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, CONN_PREAUTH_BUFFER);
    struct timeval tv = {(time_t)(c->opts.hello_timeout_ms / 1000),
                         (suseconds_t)(c->opts.hello_timeout_ms % 1000) * 1000};
    evtimer_add(c->hello_ev, &tv);
    return c;

fail:
    limits_release(c, false);
    if (c->hello_ev) event_free(c->hello_ev);
    event_free(c->sweep_ev);
    event_free(c->resume_ev);
    event_free(c->delay_ev);
    evbuffer_free(c->delay_buf);
    c->refs = 0;
    conn_free_now(c);
    return NULL;
}

static void on_hello_resp(struct conn_call *call, int err, struct conn_frame *f)
{
    struct conn *c = call->data;
    if (err == 0) {
        struct wire_hello_resp r;
        if (wire_decode_hello_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) < 0) {
            proto_error(c, -EPROTO, "malformed HELLO response");
            return;
        }
        c->peer_id = r.node_id;
        c->peer_role = r.role;
        c->hello_done = true;
        if (c->ops->on_up) c->ops->on_up(c, c->arg);
        return;
    }
    if (!c->bev) return; /* closing: on_close reports it */
    char why[160];
    log_warn(c->opts.tag, "wire %s: HELLO refused: %s", c->peer,
             f ? conn_error_text(f, why, sizeof(why)) : bd_strerror(err));
    close_now(c, err);
}

struct conn *conn_connect(struct reactor *rx, const char *addr, const struct conn_ops *ops,
                          void *arg, const struct conn_opts *opts, int *err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (util_parse_addr(addr, &ss, &len) < 0) {
        *err = -EINVAL;
        return NULL;
    }
    struct conn *c = conn_new(rx, ops, arg, opts);
    if (!c) {
        *err = -ENOMEM;
        return NULL;
    }
    c->is_client = true;
    util_strlcpy(c->peer, addr, sizeof(c->peer));
    if (opts->auth->tls)
        c->bev = tls_bev_wire(opts->auth->tls, reactor_base(rx), -1, false);
    else
        c->bev = bufferevent_socket_new(reactor_base(rx), -1, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) goto err_nomem;
    conn_setup_bev(c);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)len) < 0) {
        int e = EVUTIL_SOCKET_ERROR();
        *err = e ? -e : -ECONNREFUSED;
        bufferevent_free(c->bev);
        c->bev = NULL;
        c->refs = 0;
        event_free(c->sweep_ev);
        event_free(c->resume_ev);
        event_free(c->delay_ev);
        evbuffer_free(c->delay_buf);
        conn_free_now(c);
        return NULL;
    }
    const struct conn_auth *me = c->opts.auth;
    struct wire_hello_req h = {
        .cluster_hash = me->cluster_hash,
        .node_id = me->node_id,
        .role = me->role,
        .name = wire_cstr(me->name),
    };
    uint8_t buf[256];
    int n = wire_encode_hello_req(buf, sizeof(buf), &h);
    c->hello_call.cb = on_hello_resp;
    c->hello_call.data = c;
    if (n < 0 || conn_call(c, &c->hello_call, WIRE_HELLO, buf, (size_t)n, NULL,
                           c->opts.connect_timeout_ms) < 0) {
        *err = -ENOMEM;
        close_now(c, -ENOMEM);
        return NULL;
    }
    return c;

err_nomem:
    c->refs = 0;
    event_free(c->sweep_ev);
    event_free(c->resume_ev);
    event_free(c->delay_ev);
    evbuffer_free(c->delay_buf);
    conn_free_now(c);
    *err = -ENOMEM;
    return NULL;
}

/* ---- requests and replies ------------------------------------------------ */

int conn_call(struct conn *c, struct conn_call *call, uint16_t type, const void *fields,
              size_t fields_len, const struct conn_payload *payload, uint32_t timeout_ms)
{
    if (!c->bev || c->closing) return -ENOTCONN;
    if (c->npending >= c->nbuckets * 2 && table_grow(c) < 0) return -ENOMEM;
    uint64_t id = c->next_req_id++;
    int rc = send_frame(c, type, 0, 0, id, fields, fields_len, payload);
    if (rc < 0) {
        if (rc == -ENOMEM) close_now(c, rc); /* a half-queued frame poisons the stream */
        return rc;
    }
    call->c = c;
    call->req_id = id;
    call->deadline_ms = timeout_ms ? util_mono_ms() + timeout_ms : 0;
    unsigned k = (unsigned)id & (c->nbuckets - 1);
    call->next = c->buckets[k];
    c->buckets[k] = call;
    c->npending++;
    if (timeout_ms) arm_sweep(c);
    return 0;
}

int conn_send_oneway(struct conn *c, uint16_t type, const void *fields, size_t fields_len,
                     const struct conn_payload *payload)
{
    if (!c->bev || c->closing) return -ENOTCONN;
    int rc = send_frame(c, type, WIRE_F_ONEWAY, 0, c->next_req_id++, fields, fields_len, payload);
    if (rc == -ENOMEM) close_now(c, rc);
    return rc;
}

void conn_call_cancel(struct conn_call *call)
{
    struct conn *c = call->c;
    if (!c || !table_remove(c, call->req_id)) return;
    call->c = NULL;
    call->cb(call, -ECANCELED, NULL);
}

static void reply_done(struct conn *c)
{
    if (BD_NEVER(c->inflight == 0)) return;
    c->inflight--;
    if (c->bev) maybe_resume(c);
    conn_unref(c);
}

int conn_reply(struct conn *c, const struct wire_hdr *req, const void *fields, size_t fields_len,
               const struct conn_payload *payload)
{
    int rc = 0;
    bool sent = false;
    if (req->flags & WIRE_F_ONEWAY) {
        /* Nobody waits for it, and it was never counted in flight. */
        if (payload && payload->release) payload->release(payload->data, payload->len, payload->arg);
        return 0;
    }
    if (c->bev && !(c->closing && !c->flush_then_close)) {
        rc = send_frame(c, req->type, WIRE_F_RESPONSE, WIRE_OK, req->req_id, fields, fields_len,
                        payload);
        sent = rc == 0;
        if (rc == -ENOMEM) close_now(c, rc);
    }
    /* Not queued (closed, too big, or out of memory: send_frame references
     * the payload last, so a failure means libevent never took it): the
     * reply's payload is released here in every case, as the header says. */
    if (!sent && payload && payload->release)
        payload->release(payload->data, payload->len, payload->arg);
    reply_done(c);
    return rc == -ENOMEM ? 0 : rc;
}

int conn_reply_error(struct conn *c, const struct wire_hdr *req, int err, uint64_t hint,
                     const char *fmt, ...)
{
    if (req->flags & WIRE_F_ONEWAY) return 0; /* as conn_reply */
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20) *p = '?';
    struct wire_error e = {.hint = hint, .msg = wire_cstr(msg)};
    uint8_t buf[300];
    int n = wire_encode_error(buf, sizeof(buf), &e);
    uint16_t status = wire_status_from_err(err);
    if (status == WIRE_OK) status = WIRE_EIO; /* an error reply never says OK */
    if (c->bev && !(c->closing && !c->flush_then_close) && n >= 0) {
        int rc = send_frame(c, req->type, WIRE_F_RESPONSE, status, req->req_id, buf, (size_t)n,
                            NULL);
        if (rc == -ENOMEM) close_now(c, rc);
    }
    reply_done(c);
    return 0;
}

/* ---- accessors ----------------------------------------------------------- */

bool conn_is_up(const struct conn *c)
{
    return c->bev && !c->closing && c->hello_done;
}
const char *conn_peer(const struct conn *c)
{
    return c->peer;
}
uint64_t conn_peer_id(const struct conn *c)
{
    return c->peer_id;
}
uint16_t conn_peer_role(const struct conn *c)
{
    return c->peer_role;
}
const struct tls_identity *conn_peer_identity(const struct conn *c)
{
    return c->peer_cert;
}

const char *conn_error_text(const struct conn_frame *f, char *buf, size_t len)
{
    struct wire_error e;
    if (!f || wire_decode_error(f->body, f->hdr.len, f->hdr.payload_len, &e) < 0) {
        snprintf(buf, len, "%s", f ? wire_status_name(f->hdr.status) : "no response");
        return buf;
    }
    snprintf(buf, len, "%s: %.*s", wire_status_name(f->hdr.status), (int)e.msg.len, e.msg.ptr);
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20) *p = '?';
    return buf;
}
