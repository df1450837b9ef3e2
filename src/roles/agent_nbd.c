/* agent_nbd.c: the NBD server: listeners, connections, the handshake.
 * Transmission (requests, slots, replies) is in agent_nbd_tx.c.
 *
 * One state machine per connection (enum nbdc_state in agent_nbd_int.h),
 * over a bufferevent.  Input is decoded only once a whole unit (client
 * flags, option header, option payload, request header, WRITE payload) is
 * buffered; until then the bytes wait in the input evbuffer and the
 * decoder runs again on the next read, so decoding resumes across partial
 * reads without any partial-parse state.
 *
 *   accept --> HS_FLAGS --> HS_OPT <----------------------------+
 *                            |  ^                               |
 *                 header ok  v  | reply (no lookup)             | INFO done, LIST done,
 *                          HS_DATA --LIST/INFO/GO/EXPORT_NAME--> HS_WAIT   GO failed
 *                                                               |
 *                                         GO or EXPORT_NAME ok  v
 *               +------------------------------------------> TX_HDR <--------+
 *               | payload in, submitted       valid WRITE |    |  rejected  |
 *               +---------------------------- TX_DATA <---+    +--> TX_SKIP -+
 *
 *   DISC, server stop, option ABORT, an error reply that ends the session,
 *   EOF in transmission (after the buffered requests are taken in)
 *   --> DRAIN --(in-flight done, output flushed, or drain deadline)--> CLOSED
 *   EOF in the handshake, socket error, protocol violation, handshake
 *   deadline, eviction --> CLOSED
 *
 * Transitions happen only in nbdc_set_state(), which asserts them; what is
 * true in each state:
 *   HS_*      conn is in s->hs list and counted in n_hs; vol == NULL;
 *             the handshake deadline timer is armed;
 *   HS_WAIT   reading is off; exactly one agent_vols_* call is pending and
 *             holds a reference; hreq.name points into opt_buf;
 *   TX_*      vol != NULL; caps describe the export; not in the hs list;
 *   TX_DATA   cur is the busy slot whose payload is awaited;
 *   TX_SKIP   skip_left payload bytes remain to drop, then skip_err is sent;
 *   DRAIN     reading is off; the drain deadline timer is armed;
 *   CLOSED    bev == NULL; not in s->conns.
 *
 * Why no volume before GO (CVE-2019-14850/14851): INFO and GO only call
 * agent_vols_info; only GO and EXPORT_NAME call agent_vols_open, after
 * the lookup succeeded.  LIST calls agent_vols_list.  No other option
 * touches the volume layer.
 *
 * Admission (CVE-2024-7409, "connect and never finish the handshake"):
 * each handshake has a deadline (handshake_timeout_ms), and at most
 * max_handshakes connections may be in the handshake.  When a new
 * connection arrives at the cap, we close the *oldest* handshaking
 * connection that is waiting on its client (any state but HS_WAIT).  A
 * legitimate client finishes its handshake in a few round trips (under a
 * millisecond on loopback, a few on a LAN), so it is almost never the
 * oldest; stalled connections are.  Refusing new connections instead
 * would let 100 idle sockets lock everyone out until the deadline, and an
 * attacker who keeps reconnecting could do so forever.  Connections in
 * HS_WAIT are waiting on us (a volume lookup or attach), not stalling, so
 * they are not evicted; if every handshake slot is in HS_WAIT the new
 * connection is refused.  max_connections caps the rest the same way.
 *
 * Rejected: a thread per connection (nbdkit's model: the reactor is the
 * design, DESIGN.md §1); a read-per-field decoder (every partial read
 * would need a resume point per field). */
#include "agent_nbd.h"
#include "../bd.h"
#include "../log.h"
#include "../net/listener.h"
#include "../util.h"
#include "agent_nbd_int.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NBD_STEPS_PER_WAKEUP 64        /* units decoded per callback before yielding */
#define NBD_DEFAULT_PORT "10809"

static const char *const state_names[NBDC_N_STATES] = {
    "HS_FLAGS", "HS_OPT", "HS_DATA", "HS_WAIT", "TX_HDR", "TX_DATA", "TX_SKIP", "DRAIN", "CLOSED",
};

/* ---- state and lifetime ----------------------------------------------------- */

static bool legal(enum nbdc_state from, enum nbdc_state to)
{
    if (to == NBDC_CLOSED) return from != NBDC_CLOSED;
    if (to == NBDC_DRAIN) return from != NBDC_CLOSED && from != NBDC_DRAIN;
    switch (from) {
    case NBDC_HS_FLAGS: return to == NBDC_HS_OPT;
    case NBDC_HS_OPT: return to == NBDC_HS_DATA;
    case NBDC_HS_DATA: return to == NBDC_HS_OPT || to == NBDC_HS_WAIT;
    case NBDC_HS_WAIT: return to == NBDC_HS_OPT || to == NBDC_TX_HDR;
    case NBDC_TX_HDR: return to == NBDC_TX_DATA || to == NBDC_TX_SKIP;
    case NBDC_TX_DATA: return to == NBDC_TX_HDR;
    case NBDC_TX_SKIP: return to == NBDC_TX_HDR;
    default: return false;
    }
}

void nbdc_set_state(struct nbdc *c, enum nbdc_state to)
{
    assert(legal(c->state, to));
    log_debug(c->s->o.tag, "nbd conn %llu: %s -> %s", (unsigned long long)c->id,
              state_names[c->state], state_names[to]);
    c->state = to;
}

void nbdc_ref(struct nbdc *c)
{
    c->refs++;
}

static void nbdc_free(void *arg)
{
    struct nbdc *c = arg;
    nbd_tx_free_slots(c);
    if (c->timer) event_free(c->timer);
    if (c->resume) event_free(c->resume);
    free(c->opt_buf);
    free(c);
}

void nbdc_unref(struct nbdc *c)
{
    if (BD_NEVER(c->refs <= 0)) return;
    if (--c->refs > 0) return;
    if (reactor_defer(c->s->rx, nbdc_free, c) < 0)
        log_error(c->s->o.tag, "nbd conn %llu: cannot defer free; leaking it",
                  (unsigned long long)c->id);
}

static void hs_unlink(struct nbdc *c)
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

static void stop_check(struct agent_nbd *s);

void nbdc_close(struct nbdc *c, const char *why)
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
    nbd_tx_drop_partial(c);
    event_del(c->timer);
    event_del(c->resume);
    hs_unlink(c);
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    s->n_conns--;
    nbdc_set_state(c, NBDC_CLOSED);
    if (c->vol && c->n_vol == 0) {
        agent_vol_put(c->vol);
        c->vol = NULL;
    }
    stop_check(s);
    nbdc_unref(c); /* the "open" reference */
}

void nbdc_proto_error(struct nbdc *c, const char *why)
{
    c->s->st.proto_errors++;
    metric_inc(c->s->m_proto_errors);
    log_warn(c->s->o.tag, "nbd conn %llu (%s): protocol error in %s: %s; closing",
             (unsigned long long)c->id, c->peer, state_names[c->state], why);
    nbdc_close(c, why);
}

void nbdc_read_enable(struct nbdc *c, bool on)
{
    if (!c->bev || c->read_off == !on) return;
    c->read_off = !on;
    if (on) bufferevent_enable(c->bev, EV_READ);
    else bufferevent_disable(c->bev, EV_READ);
}

static bool reading_state(enum nbdc_state st)
{
    return st == NBDC_HS_FLAGS || st == NBDC_HS_OPT || st == NBDC_HS_DATA || st == NBDC_TX_HDR ||
           st == NBDC_TX_DATA || st == NBDC_TX_SKIP;
}

void nbdc_maybe_resume(struct nbdc *c)
{
    if (!c->bev) return;
    if (c->state == NBDC_DRAIN) {
        if (nbd_tx_idle(c) && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            nbdc_close(c, NULL);
        return;
    }
    if (!reading_state(c->state)) return;
    if (c->read_off) nbdc_read_enable(c, true);
    event_active(c->resume, 0, 0); /* input may already be buffered */
}

void nbdc_drain(struct nbdc *c, uint64_t drain_ms, const char *why)
{
    if (!c->bev || c->state == NBDC_DRAIN) return;
    c->close_why = why;
    nbd_tx_drop_partial(c);
    nbdc_set_state(c, NBDC_DRAIN);
    nbdc_read_enable(c, false);
    struct timeval tv = {(time_t)(drain_ms / 1000), (suseconds_t)(drain_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    nbdc_maybe_resume(c); /* closes at once when nothing is owed */
}

bool nbdc_send(struct nbdc *c, const void *p, size_t len)
{
    if (!c->bev) return false;
    if (evbuffer_add(bufferevent_get_output(c->bev), p, len) < 0) {
        nbdc_close(c, "out of memory for output");
        return false;
    }
    return true;
}

/* ---- the handshake ---------------------------------------------------------- */

/* Send an option error reply and read the next option. */
static void hs_error(struct nbdc *c, uint32_t type, const char *fmt, ...) BD_PRINTF(3, 4);
static void hs_error(struct nbdc *c, uint32_t type, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    uint8_t out[NBD_OPT_REPLY_HDR_LEN + sizeof(msg)];
    int n = nbd_encode_rep_error(out, sizeof(out), c->hreq.opt, type, msg);
    if (n > 0) nbdc_send(c, out, (size_t)n);
    log_debug(c->s->o.tag, "nbd conn %llu: %s -> %s: %s", (unsigned long long)c->id,
              nbd_opt_name(c->hreq.opt), nbd_rep_name(type), msg);
}

/* End the session after the reply already queued: flush it, then close,
 * within the handshake's own deadline at most. */
static void hs_end(struct nbdc *c, const char *why)
{
    nbdc_drain(c, BD_MIN(c->s->o.disc_drain_ms, c->s->o.handshake_timeout_ms), why);
}

static void hs_next_option(struct nbdc *c)
{
    nbdc_set_state(c, NBDC_HS_OPT);
    nbdc_maybe_resume(c);
}

static void hs_export_desc(const struct agent_vol_info *vi, struct nbd_export_desc *x)
{
    memset(x, 0, sizeof(*x));
    x->size = vi->size;
    x->tflags = nbd_tx_flags(vi);
    nbd_tx_sizes(vi, &x->min_block, &x->pref_block, &x->max_payload);
    x->name = vi->name;
}

static void on_list(struct agent_list_req *req, int err, const struct agent_list_entry *v,
                    unsigned n)
{
    struct nbdc *c = req->data;
    if (c->state == NBDC_HS_WAIT) {
        if (err < 0) {
            hs_error(c, nbd_rep_err_from_errno(err), "cannot list volumes: %s", bd_strerror(err));
        } else {
            for (unsigned i = 0; i < n && c->bev; i++) {
                uint8_t out[NBD_OPT_REPLY_HDR_LEN + 4 + AGENT_VOL_NAME_MAX];
                size_t len = strnlen(v[i].name, AGENT_VOL_NAME_MAX);
                int k = nbd_encode_rep_server(out, sizeof(out), NBD_OPT_LIST, v[i].name,
                                              (uint32_t)len);
                if (k > 0) nbdc_send(c, out, (size_t)k);
            }
            uint8_t ack[NBD_OPT_REPLY_HDR_LEN];
            nbd_encode_rep_ack(ack, sizeof(ack), NBD_OPT_LIST);
            nbdc_send(c, ack, sizeof(ack));
            nbd_hs_list_grant(&c->hs, n);
        }
        if (c->bev) hs_next_option(c);
    }
    nbdc_unref(c);
}

/* GO or EXPORT_NAME failed: the first gets an error reply, the second can
 * only hang up ("If the server is unwilling to allow the export, it MUST
 * terminate the session"). */
static void hs_open_failed(struct nbdc *c, int err, const char *what)
{
    char q[NBD_QUOTE_MAX + 8];
    nbd_quote(q, sizeof(q), c->name, strlen(c->name));
    if (c->hreq.opt == NBD_OPT_EXPORT_NAME) {
        char why[160];
        snprintf(why, sizeof(why), "NBD_OPT_EXPORT_NAME '%s': %s", q, bd_strerror(err));
        nbdc_close(c, why);
        return;
    }
    hs_error(c, nbd_rep_err_from_errno(err), "%s '%s': %s", what, q,
             err == -ENOENT ? "no such export" : bd_strerror(err));
    hs_next_option(c);
}

/* Geometry the server can advertise: a power-of-two block size the spec
 * allows (<= 64 KiB), a size in whole blocks, max_io of at least a block. */
static bool vol_info_sane(const struct agent_vol_info *vi)
{
    uint32_t b = vi->block_size;
    return b >= 512 && b <= 65536 && (b & (b - 1)) == 0 && vi->size % b == 0 && vi->max_io >= b;
}

static void on_open(struct agent_open_req *req, int err, struct agent_vol *vol)
{
    struct nbdc *c = req->data;
    if (c->state != NBDC_HS_WAIT) { /* closed meanwhile */
        if (err == 0 && vol) agent_vol_put(vol);
        nbdc_unref(c);
        return;
    }
    if (err == 0 && (!vol || !vol_info_sane(agent_vol_info(vol)))) {
        log_error(c->s->o.tag, "nbd conn %llu: volume '%s' has invalid geometry",
                  (unsigned long long)c->id, c->name);
        if (vol) agent_vol_put(vol);
        err = -EIO;
    }
    if (err < 0) {
        hs_open_failed(c, err, "cannot attach");
        nbdc_unref(c);
        return;
    }
    c->vol = vol;
    c->vinfo = *agent_vol_info(vol);
    uint8_t out[NBD_HS_OUT_MAX];
    int n;
    if (c->hreq.opt == NBD_OPT_GO) {
        struct nbd_export_desc x;
        hs_export_desc(&c->vinfo, &x);
        n = nbd_hs_encode_export(&c->hreq, &x, out, sizeof(out));
    } else {
        n = nbd_encode_export_name_reply(out, sizeof(out), c->vinfo.size, nbd_tx_flags(&c->vinfo),
                                         c->hs.cflags & NBD_FLAG_C_NO_ZEROES);
    }
    if (n < 0 || !nbdc_send(c, out, (size_t)n)) {
        nbdc_close(c, "cannot encode the export reply");
        nbdc_unref(c);
        return;
    }
    nbd_hs_go_done(&c->hs, c->hreq.name); /* hreq.name points into opt_buf: before the free */
    free(c->opt_buf);
    c->opt_buf = NULL;
    c->opt_cap = 0;
    hs_unlink(c);
    event_del(c->timer);
    metric_inc(c->s->m_handshakes_ok);
    nbd_tx_setup(c);
    log_line(LOG_INFO, c->s->o.tag, c->vinfo.name, 0,
             "nbd conn %llu (%s): attached%s, %llu bytes%s%s", (unsigned long long)c->id,
             c->peer, c->vinfo.read_only ? " read-only" : "",
             (unsigned long long)c->vinfo.size, c->caps.structured ? ", structured" : "",
             c->caps.meta_base_alloc ? ", base:allocation" : "");
    nbdc_set_state(c, NBDC_TX_HDR);
    nbdc_maybe_resume(c);
    nbdc_unref(c);
}

static void on_info(struct agent_info_req *req, int err, const struct agent_vol_info *info)
{
    struct nbdc *c = req->data;
    if (c->state != NBDC_HS_WAIT) {
        nbdc_unref(c);
        return;
    }
    if (err == 0 && (!info || !vol_info_sane(info))) err = -EIO;
    if (err < 0) {
        hs_open_failed(c, err, "export");
        nbdc_unref(c);
        return;
    }
    if (c->hreq.opt == NBD_OPT_INFO) {
        struct nbd_export_desc x;
        hs_export_desc(info, &x);
        uint8_t out[NBD_HS_OUT_MAX];
        int n = nbd_hs_encode_export(&c->hreq, &x, out, sizeof(out));
        if (n > 0) nbdc_send(c, out, (size_t)n);
        if (c->bev) hs_next_option(c);
        nbdc_unref(c);
        return;
    }
    /* GO / EXPORT_NAME: now, and only now, attach.  The reference moves
     * to the open call. */
    c->open_req.cb = on_open;
    c->open_req.data = c;
    agent_vols_open(c->s->vs, c->name, info->read_only, &c->open_req);
}

/* An INFO, GO or EXPORT_NAME whose name the codec accepted. */
static void hs_lookup(struct nbdc *c)
{
    struct nbd_str nm = c->hreq.name;
    char q[NBD_QUOTE_MAX + 8];
    if (nm.len == 0 || nm.len > AGENT_VOL_NAME_MAX) {
        /* No default export, and no volume name is that long: no lookup. */
        if (c->hreq.opt == NBD_OPT_EXPORT_NAME) {
            nbdc_close(c, nm.len ? "NBD_OPT_EXPORT_NAME: name too long" :
                                   "NBD_OPT_EXPORT_NAME: no default export");
            return;
        }
        if (nm.len == 0)
            hs_error(c, NBD_REP_ERR_UNKNOWN, "no default export; NBD_OPT_LIST lists the volumes");
        else
            hs_error(c, NBD_REP_ERR_UNKNOWN, "export '%s' (%u bytes): no such export",
                     nbd_quote(q, sizeof(q), nm.ptr, nm.len), nm.len);
        hs_next_option(c);
        return;
    }
    memcpy(c->name, nm.ptr, nm.len);
    c->name[nm.len] = 0;
    nbdc_set_state(c, NBDC_HS_WAIT);
    nbdc_read_enable(c, false);
    nbdc_ref(c);
    c->info_req.cb = on_info;
    c->info_req.data = c;
    agent_vols_info(c->s->vs, c->name, &c->info_req);
}

static void hs_option(struct nbdc *c)
{
    uint8_t out[NBD_HS_OUT_MAX];
    size_t n = 0;
    enum nbd_hs_action act =
        nbd_hs_option(&c->hs, &c->opt, c->opt_buf, out, sizeof(out), &n, &c->hreq);
    if (n) nbdc_send(c, out, n);
    if (!c->bev) return;
    log_debug(c->s->o.tag, "nbd conn %llu: %s (%u bytes) -> action %d", (unsigned long long)c->id,
              nbd_opt_name(c->opt.opt), c->opt.len, (int)act);
    switch (act) {
    case NBD_HS_REPLY:
        hs_next_option(c);
        return;
    case NBD_HS_CLOSE:
        c->s->st.proto_errors++;
        metric_inc(c->s->m_proto_errors);
        hs_end(c, "invalid option; session ended");
        return;
    case NBD_HS_ABORT:
        hs_end(c, "client sent NBD_OPT_ABORT");
        return;
    case NBD_HS_LIST:
        nbdc_set_state(c, NBDC_HS_WAIT);
        nbdc_read_enable(c, false);
        nbdc_ref(c);
        c->list_req.cb = on_list;
        c->list_req.data = c;
        agent_vols_list(c->s->vs, &c->list_req);
        return;
    case NBD_HS_INFO:
    case NBD_HS_GO:
    case NBD_HS_EXPORT_NAME:
        hs_lookup(c);
        return;
    }
}

static bool hs_step(struct nbdc *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t avail = evbuffer_get_length(in);
    uint8_t b[NBD_OPT_HDR_LEN];
    switch (c->state) {
    case NBDC_HS_FLAGS: {
        if (avail < NBD_CLIENT_FLAGS_LEN) return false;
        evbuffer_remove(in, b, NBD_CLIENT_FLAGS_LEN);
        uint32_t cflags = 0;
        nbd_decode_client_flags(b, NBD_CLIENT_FLAGS_LEN, &cflags);
        if (nbd_hs_client_flags(&c->hs, cflags) < 0) {
            /* "the server MUST drop the TCP connection" */
            nbdc_proto_error(c, "unknown or unoffered client flags");
            return false;
        }
        nbdc_set_state(c, NBDC_HS_OPT);
        return true;
    }
    case NBDC_HS_OPT: {
        if (avail < NBD_OPT_HDR_LEN) return false;
        evbuffer_remove(in, b, NBD_OPT_HDR_LEN);
        if (nbd_decode_opt_hdr(b, NBD_OPT_HDR_LEN, &c->opt) < 0) {
            nbdc_proto_error(c, "option magic is not IHAVEOPT");
            return false;
        }
        uint8_t out[NBD_HS_OUT_MAX];
        size_t n = 0;
        if (nbd_hs_header(&c->hs, &c->opt, out, sizeof(out), &n) == NBD_HS_CLOSE) {
            c->hreq.opt = c->opt.opt;
            if (n) nbdc_send(c, out, n);
            c->s->st.proto_errors++;
            metric_inc(c->s->m_proto_errors);
            hs_end(c, "option refused from its header");
            return false;
        }
        if (c->opt.len > c->opt_cap) {
            free(c->opt_buf);
            c->opt_cap = 0;
            c->opt_buf = malloc(c->opt.len);
            if (!c->opt_buf) {
                nbdc_close(c, "out of memory for an option");
                return false;
            }
            c->opt_cap = c->opt.len;
        }
        nbdc_set_state(c, NBDC_HS_DATA);
        return true;
    }
    case NBDC_HS_DATA:
        if (avail < c->opt.len) return false;
        if (c->opt.len) evbuffer_remove(in, c->opt_buf, c->opt.len);
        hs_option(c);
        return true;
    default:
        return false;
    }
}

/* ---- connection events -------------------------------------------------------- */

static void nbdc_process(struct nbdc *c)
{
    nbdc_ref(c); /* steps may close the connection */
    unsigned steps = 0;
    bool more = true;
    while (more && c->bev && !c->read_off && reading_state(c->state)) {
        if (++steps > NBD_STEPS_PER_WAKEUP) {
            event_active(c->resume, 0, 0); /* yield to other connections */
            break;
        }
        more = c->state < NBDC_TX_HDR ? hs_step(c) : nbd_tx_step(c);
    }
    /* The client closed its side and everything it sent before that has
     * been taken in: answer what is in flight, then close (as for DISC). */
    if (c->eof && !more && c->bev && !c->read_off && reading_state(c->state))
        nbdc_drain(c, c->s->o.disc_drain_ms, c->state == NBDC_TX_DATA || c->state == NBDC_TX_SKIP
                                                 ? "client closed inside a WRITE payload (dropped)"
                                                 : "client closed its side of the connection");
    nbdc_unref(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    nbdc_process(arg);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    nbdc_process(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    nbdc_maybe_resume(arg); /* output drained below the low-water mark */
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct nbdc *c = arg;
    if (what & BEV_EVENT_EOF) {
        if (c->state < NBDC_TX_HDR) {
            nbdc_close(c, "client closed the connection in the handshake");
            return;
        }
        /* Requests may still be buffered (a client may pipeline, send
         * DISC and shut its side at once): take them in first. */
        c->eof = true;
        nbdc_process(c);
    } else {
        int e = EVUTIL_SOCKET_ERROR();
        char why[96];
        snprintf(why, sizeof(why), "socket error: %s", bd_strerror(e ? -e : -EIO));
        nbdc_close(c, why);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct nbdc *c = arg;
    if (c->state == NBDC_DRAIN) {
        nbdc_close(c, "drain deadline passed");
        return;
    }
    if (c->in_hs) {
        c->s->st.timeouts++;
        metric_inc(c->s->m_timeouts);
        nbdc_close(c, "handshake deadline passed");
    }
}

/* ---- admission ---------------------------------------------------------------- */

/* Close the oldest handshaking connection that waits on its client; see
 * "Admission" above.  True if one was closed. */
static bool evict_one(struct agent_nbd *s)
{
    for (struct nbdc *c = s->hs_head; c; c = c->hs_next) {
        if (c->state == NBDC_HS_WAIT) continue;
        s->st.evicted++;
        metric_inc(s->m_evicted);
        log_info(s->o.tag, "nbd conn %llu (%s): evicted: stalled in %s for %llu ms",
                 (unsigned long long)c->id, c->peer, state_names[c->state],
                 (unsigned long long)(util_mono_ms() - c->accepted_ms));
        nbdc_close(c, "evicted to admit a new client");
        return true;
    }
    return false;
}

static void refuse(struct agent_nbd *s, int fd, const char *why)
{
    s->st.refused++;
    metric_inc(s->m_refused);
    log_warn(s->o.tag, "nbd: refusing a connection: %s", why);
    close(fd);
}

int agent_nbd_adopt(struct agent_nbd *s, int fd)
{
    if (s->stopping) {
        refuse(s, fd, "server stopping");
        return -ESHUTDOWN;
    }
    if (s->n_conns >= s->o.max_connections && !evict_one(s)) {
        refuse(s, fd, "max_connections reached");
        return -EMFILE;
    }
    if (s->n_hs >= s->o.max_handshakes && !evict_one(s)) {
        refuse(s, fd, "max_handshakes reached, all of them waiting on the volume layer");
        return -EMFILE;
    }
    struct nbdc *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    c->s = s;
    c->id = ++s->next_id;
    c->refs = 1;
    c->state = NBDC_HS_FLAGS;
    c->accepted_ms = util_mono_ms();
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family != AF_UNIX)
        util_fmt_addr((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
    else
        util_strlcpy(c->peer, "unix", sizeof(c->peer));
    if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    evutil_make_socket_nonblocking(fd);
    evutil_make_socket_closeonexec(fd);
    struct event_base *base = reactor_base(s->rx);
    c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->timer = evtimer_new(base, on_timer, c);
    c->resume = event_new(base, -1, 0, on_resume, c);
    if (!c->bev || !c->timer || !c->resume) {
        if (c->bev) bufferevent_free(c->bev);
        else close(fd);
        if (c->timer) event_free(c->timer);
        if (c->resume) event_free(c->resume);
        free(c);
        return -ENOMEM;
    }
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, NBD_READ_HIGH_WATER);
    bufferevent_setwatermark(c->bev, EV_WRITE, s->o.out_high_water / 2, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    nbd_hs_init(&c->hs, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    uint8_t g[NBD_GREETING_LEN];
    nbd_encode_greeting(g, sizeof(g), c->hs.hflags_offered);

    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    c->hs_prev = s->hs_tail;
    if (s->hs_tail) s->hs_tail->hs_next = c;
    else s->hs_head = c;
    s->hs_tail = c;
    c->in_hs = true;
    s->n_hs++;
    s->st.accepted++;

    struct timeval tv = {(time_t)(s->o.handshake_timeout_ms / 1000),
                         (suseconds_t)(s->o.handshake_timeout_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    nbdc_send(c, g, sizeof(g));
    log_debug(s->o.tag, "nbd conn %llu (%s): accepted", (unsigned long long)c->id, c->peer);
    return 0;
}

static void on_accept(int fd, void *arg)
{
    agent_nbd_adopt(arg, fd);
}

/* ---- the server ----------------------------------------------------------------- */

static double gauge_conns(void *arg)
{
    return ((struct agent_nbd *)arg)->n_conns;
}

static double gauge_hs(void *arg)
{
    return ((struct agent_nbd *)arg)->n_hs;
}

static void metrics_setup(struct agent_nbd *s)
{
    char l[160];
    for (unsigned i = 0; i <= NBD_CMD_COUNT; i++) {
        snprintf(l, sizeof(l), "role=\"%s\",op=\"%s\"", s->o.tag,
                 i < NBD_CMD_COUNT ? nbd_cmd_name((uint16_t)i) : "unknown");
        s->cmd[i].requests =
            metrics_counter("blockd_nbd_requests_total", "NBD requests by command", l);
        s->cmd[i].errors = metrics_counter("blockd_nbd_request_errors_total",
                                           "NBD requests answered with an error", l);
        s->cmd[i].latency = metrics_hist("blockd_nbd_request_latency_us",
                                         "NBD request latency, header to reply queued", l);
    }
    snprintf(l, sizeof(l), "role=\"%s\"", s->o.tag);
    s->m_bytes_in =
        metrics_counter("blockd_nbd_received_bytes_total", "NBD WRITE payload bytes", l);
    s->m_bytes_out = metrics_counter("blockd_nbd_sent_bytes_total", "NBD READ data bytes", l);
    s->m_proto_errors = metrics_counter("blockd_nbd_protocol_errors_total",
                                        "NBD sessions ended for protocol violations", l);
    s->m_refused = metrics_counter("blockd_nbd_refused_total",
                                   "NBD connections refused at accept", l);
    s->m_evicted = metrics_counter("blockd_nbd_evicted_total",
                                   "Stalled NBD handshakes closed to admit a client", l);
    s->m_timeouts = metrics_counter("blockd_nbd_handshake_timeouts_total",
                                    "NBD handshakes closed at the deadline", l);
    snprintf(l, sizeof(l), "role=\"%s\",result=\"ok\"", s->o.tag);
    s->m_handshakes_ok = metrics_counter("blockd_nbd_handshakes_total", "NBD handshakes", l);
    snprintf(l, sizeof(l), "role=\"%s\",result=\"failed\"", s->o.tag);
    s->m_handshakes_failed = metrics_counter("blockd_nbd_handshakes_total", "NBD handshakes", l);
    snprintf(l, sizeof(l), "role=\"%s\"", s->o.tag);
    metrics_gauge("blockd_nbd_connections", "Open NBD connections", l, gauge_conns, s, s);
    metrics_gauge("blockd_nbd_handshakes_in_progress", "NBD connections still in the handshake",
                  l, gauge_hs, s, s);
}

/* "host" alone means the IANA port; anything with a port is left as is. */
static void listen_addr(const char *in, char *out, size_t cap)
{
    const char *colon = strrchr(in, ':');
    const char *bracket = strrchr(in, ']');
    bool has_port = colon && (!bracket || colon > bracket) && strncmp(in, "unix:", 5) != 0;
    if (has_port || strncmp(in, "unix:", 5) == 0) snprintf(out, cap, "%s", in);
    else snprintf(out, cap, "%s:" NBD_DEFAULT_PORT, in);
}

int agent_nbd_new(struct reactor *rx, struct agent_vols *vs, const struct agent_nbd_opts *opts,
                  struct agent_nbd **out, char *err, size_t errlen)
{
    struct agent_nbd *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->rx = rx;
    s->vs = vs;
    s->o = *opts;
    if (!s->o.tag) s->o.tag = "agent";
    if (!s->o.handshake_timeout_ms) s->o.handshake_timeout_ms = 10000;
    if (!s->o.max_handshakes) s->o.max_handshakes = 100;
    if (!s->o.max_connections) s->o.max_connections = 1024;
    if (!s->o.max_inflight) s->o.max_inflight = 128;
    if (!s->o.max_inflight_bytes) s->o.max_inflight_bytes = 64u << 20;
    if (!s->o.out_high_water) s->o.out_high_water = 8u << 20;
    if (!s->o.disc_drain_ms) s->o.disc_drain_ms = 30000;
    int rc;
    if (opts->listen && *opts->listen) {
        char addr[300];
        listen_addr(opts->listen, addr, sizeof(addr));
        rc = listener_new(rx, addr, on_accept, s, &s->tcp);
        if (rc < 0) {
            snprintf(err, errlen, "nbd_listen %s: %s", addr, bd_strerror(rc));
            goto err;
        }
    }
    if (opts->unix_path && *opts->unix_path) {
        char addr[1100];
        snprintf(addr, sizeof(addr), "unix:%s", opts->unix_path);
        rc = listener_new(rx, addr, on_accept, s, &s->unx);
        if (rc < 0) {
            snprintf(err, errlen, "nbd_unix %s: %s", opts->unix_path, bd_strerror(rc));
            goto err;
        }
    }
    metrics_setup(s);
    *out = s;
    return 0;

err:
    listener_free(s->tcp);
    listener_free(s->unx);
    free(s);
    return rc;
}

int agent_nbd_port(const struct agent_nbd *s)
{
    return s->tcp ? listener_port(s->tcp) : 0;
}

static void stop_done_now(void *arg)
{
    struct agent_nbd *s = arg;
    s->stop_scheduled = false;
    void (*done)(void *) = s->stop_done;
    s->stop_done = NULL;
    if (done) done(s->stop_arg);
}

static void stop_check(struct agent_nbd *s)
{
    if (!s->stopping || s->n_conns > 0 || !s->stop_done || s->stop_scheduled) return;
    s->stop_scheduled = true;
    if (reactor_defer(s->rx, stop_done_now, s) < 0) stop_done_now(s);
}

void agent_nbd_stop(struct agent_nbd *s, uint64_t drain_ms, void (*done)(void *arg), void *arg)
{
    s->stopping = true;
    s->stop_done = done;
    s->stop_arg = arg;
    s->stop_drain_ms = drain_ms;
    listener_free(s->tcp);
    listener_free(s->unx);
    s->tcp = s->unx = NULL;
    log_info(s->o.tag, "nbd: stopping: %u connections, %u in the handshake", s->n_conns, s->n_hs);
    /* "Close stray clients at server-stop" (qemu, CVE-2024-7409); finish
     * the others' in-flight requests ("the server SHOULD wait for inflight
     * requests to be serviced prior to initiating a hard disconnect"). */
    struct nbdc *next;
    for (struct nbdc *c = s->conns; c; c = next) {
        next = c->next;
        if (c->in_hs) nbdc_close(c, "server stopping");
    }
    for (struct nbdc *c = s->conns; c; c = next) {
        next = c->next;
        nbdc_drain(c, drain_ms, "server stopping");
    }
    stop_check(s);
}

void agent_nbd_free(struct agent_nbd *s)
{
    if (!s) return;
    struct nbdc *next;
    for (struct nbdc *c = s->conns; c; c = next) { /* only if stop was never called */
        next = c->next;
        nbdc_close(c, "server freed");
    }
    listener_free(s->tcp);
    listener_free(s->unx);
    metrics_remove_owner(s);
    free(s);
}

void agent_nbd_stats(const struct agent_nbd *s, struct agent_nbd_stats *st)
{
    *st = s->st;
    st->connections = s->n_conns;
    st->handshakes = s->n_hs;
}

void agent_nbd_status(const struct agent_nbd *s, cJSON *out)
{
    cJSON *o = cJSON_AddObjectToObject(out, "nbd");
    if (!o) return;
    cJSON_AddNumberToObject(o, "connections", s->n_conns);
    cJSON_AddNumberToObject(o, "handshakes", s->n_hs);
    cJSON_AddNumberToObject(o, "max_connections", s->o.max_connections);
    cJSON_AddNumberToObject(o, "max_handshakes", s->o.max_handshakes);
    cJSON_AddNumberToObject(o, "accepted", (double)s->st.accepted);
    cJSON_AddNumberToObject(o, "refused", (double)s->st.refused);
    cJSON_AddNumberToObject(o, "evicted", (double)s->st.evicted);
    cJSON_AddNumberToObject(o, "handshake_timeouts", (double)s->st.timeouts);
    cJSON_AddNumberToObject(o, "protocol_errors", (double)s->st.proto_errors);
    if (s->tcp) cJSON_AddNumberToObject(o, "port", listener_port(s->tcp));
    cJSON_AddBoolToObject(o, "stopping", s->stopping);
    cJSON *ex = cJSON_AddObjectToObject(o, "exports");
    for (const struct nbdc *c = s->conns; c && ex; c = c->next) {
        if (!c->vol) continue;
        cJSON *n = cJSON_GetObjectItemCaseSensitive(ex, c->vinfo.name);
        if (n) cJSON_SetNumberValue(n, n->valuedouble + 1);
        else cJSON_AddNumberToObject(ex, c->vinfo.name, 1);
    }
}
