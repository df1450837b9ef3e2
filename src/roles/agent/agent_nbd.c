/* agent_nbd.c: the NBD server: listeners, admission, the handshake, and
 * the events of each connection.
 *
 * Place.  The top of the NBD front end (agent_nbd_int.h): a connection's
 * events run the handshake here or a transmission step in agent_nbd_tx.c
 * (requests, replies); both use agent_nbd_conn.c for the connection's
 * state, output and lifetime.  Neither calls back here by name; a closed
 * connection is reported through s->on_conn_closed (stop_check).
 *
 * One state machine per connection (enum agent_nbd_conn_state in
 * agent_nbd_int.h), over a bufferevent.  Input is decoded only once a whole unit (client
 * flags, option header, option payload, request header, WRITE payload) is
 * buffered; until then the bytes wait in the input evbuffer and the
 * decoder runs again on the next read, so decoding resumes across partial
 * reads without any partial-parse state.
 *
 *   accept --> HS_FLAGS --> HS_OPT <----------------------------+
 *                            |  ^  ^                            |
 *                 header ok  v  |  +-- HS_TLS <--STARTTLS--+    | INFO done, LIST done,
 *                            |  | reply (no lookup)        |    | GO failed
 *                          HS_DATA ------------------------+    |
 *                            +----LIST/INFO/GO/EXPORT_NAME--> HS_WAIT
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
 *   deadline, eviction, a failed TLS handshake, a refusal --> CLOSED
 *
 * Transitions happen only in agent_nbd_conn_set_state(), which asserts
 * them; what is true in each state:
 *   HS_*      conn is in s->hs list and counted in n_hs; vol == NULL;
 *             the handshake deadline timer is armed;
 *   HS_WAIT   reading is off; exactly one agent_vols_* call is pending and
 *             holds a reference; hreq.name points into opt_buf;
 *   HS_TLS    the STARTTLS ACK is queued in plaintext; once it is out
 *             (tls_handshaking) bev is a TLS bufferevent on the same
 *             socket, and the handshake runs; nothing is decoded;
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
 * TLS (agent_nbd.h "Who may open what").  STARTTLS is acknowledged in
 * plaintext; the plaintext bufferevent lets go of the socket once the ACK
 * is written, and a TLS one (net/nbd_tls.h) takes it over for the
 * handshake, so after it the connection is as any other, only encrypted.
 * A client must wait for the ACK before it starts TLS: bytes it sent after
 * STARTTLS and before that, already read, are plaintext a man in the
 * middle could have injected into what the client then believes is
 * protected, so the connection is refused (nbdkit CVE-2021-3716; bytes not
 * yet read fail the handshake as garbage).  Every option negotiated before
 * TLS is forgotten (nbd_hs_tls_started).  A connection's TLS policy is
 * fixed at accept: TCP follows tls_mode; Unix sockets offer TLS, never
 * require it.
 *
 * Rejected: a thread per connection (nbdkit's model: the reactor is the
 * design, DESIGN.md §1); a read-per-field decoder (every partial read
 * would need a resume point per field). */
#include "roles/agent/agent_nbd.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "net/listener.h"
#include "base/util.h"
#include "roles/agent/agent_nbd_int.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define NBD_STEPS_PER_WAKEUP 64        /* units decoded per callback before yielding */
#define NBD_DEFAULT_PORT "10809"

/* ---- the handshake ---------------------------------------------------------- */

/* The one log line of a refused client (policy, not protocol): who and why. */
static void deny(struct agent_nbd_conn *c, const char *fmt, ...) BD_PRINTF(2, 3);
static void deny(struct agent_nbd_conn *c, const char *fmt, ...)
{
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    c->s->st.denied++;
    metric_inc(c->s->m_denied);
    log_warn(c->s->o.tag, "nbd conn %llu (%s%s%s): refused: %s", (unsigned long long)c->id,
             c->peer, c->tls ? ", TLS " : "", c->tls ? (c->peer_tls.id[0] ? c->peer_tls.id
                                                                       : "anonymous")
                                                 : "",
             why);
}

/* Over TCP a volume opens only for the client its attachment names; one
 * that names none, only for a client on this host, and with nbd_tls
 * "require" for nobody (agent_nbd.h).  NULL if the connection may open a
 * volume whose attachment names CLIENT ("": none), else why not, into
 * BUF. */
static const char *access_denied(const struct agent_nbd_conn *c, const char *client, char *buf,
                                 size_t cap)
{
    if (c->via != AGENT_NBD_VIA_TCP) return NULL;
    if (client[0]) {
        if (!c->tls)
            snprintf(buf, cap, "attached for a named client, and this connection has no TLS");
        else if (!c->peer_tls.id[0])
            snprintf(buf, cap, "attached for a named client, and this TLS client has no id "
                     "(no PSK, no client certificate)");
        else if (strcmp(c->peer_tls.id, client) != 0)
            snprintf(buf, cap, "attached for another client than %s", c->peer_tls.id);
        else return NULL;
        return buf;
    }
    if (c->s->o.tls_mode == NBD_TLS_REQUIRE) {
        snprintf(buf, cap, "its attachment names no client, and over TCP only named clients "
                 "open volumes (nbd_tls \"require\")");
        return buf;
    }
    if (!c->same_host) {
        snprintf(buf, cap, "its attachment names no client, and from another host only the "
                 "TLS client an attachment names opens a volume (attach it with --client)");
        return buf;
    }
    return NULL;
}

/* Whether the TCP peer of FD is on this host: a loopback address, or the
 * connection's own local address (a process here dialling one of this
 * host's addresses). */
static bool peer_same_host(int fd)
{
    struct sockaddr_storage pa = {0}, la = {0};
    socklen_t pl = sizeof(pa), ll = sizeof(la);
    if (getpeername(fd, (struct sockaddr *)&pa, &pl) < 0 ||
        getsockname(fd, (struct sockaddr *)&la, &ll) < 0 || pa.ss_family != la.ss_family)
        return false;
    if (pa.ss_family == AF_INET) {
        const struct in_addr *p = &((const struct sockaddr_in *)&pa)->sin_addr;
        const struct in_addr *l = &((const struct sockaddr_in *)&la)->sin_addr;
        return (ntohl(p->s_addr) >> 24) == 127 || p->s_addr == l->s_addr;
    }
    if (pa.ss_family == AF_INET6) {
        const struct in6_addr *p = &((const struct sockaddr_in6 *)&pa)->sin6_addr;
        const struct in6_addr *l = &((const struct sockaddr_in6 *)&la)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(p) || memcmp(p, l, sizeof(*p)) == 0) return true;
        /* An IPv4 peer on a dual-stack socket: ::ffff:127.x.y.z. */
        return IN6_IS_ADDR_V4MAPPED(p) && p->s6_addr[12] == 127;
    }
    return false;
}

/* Send an option error reply and read the next option. */
static void hs_error(struct agent_nbd_conn *c, uint32_t type, const char *fmt, ...) BD_PRINTF(3, 4);
static void hs_error(struct agent_nbd_conn *c, uint32_t type, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    uint8_t out[NBD_OPT_REPLY_HDR_LEN + sizeof(msg)];
    int n = nbd_encode_rep_error(out, sizeof(out), c->hreq.opt, type, msg);
    if (n > 0) agent_nbd_conn_send(c, out, (size_t)n);
    log_debug(c->s->o.tag, "nbd conn %llu: %s -> %s: %s", (unsigned long long)c->id,
              nbd_opt_name(c->hreq.opt), nbd_rep_name(type), msg);
}

/* End the session after the reply already queued: flush it, then close,
 * within the handshake's own deadline at most. */
static void hs_end(struct agent_nbd_conn *c, const char *why)
{
    agent_nbd_conn_drain(c, BD_MIN(c->s->o.disc_drain_ms, c->s->o.handshake_timeout_ms), why);
}

static void hs_next_option(struct agent_nbd_conn *c)
{
    agent_nbd_conn_set_state(c, AGENT_NBD_HS_OPT);
    agent_nbd_conn_maybe_resume(c);
}

/* STARTTLS acknowledged (the ACK is queued): refuse plaintext the client
 * sent after it, then wait for the ACK to go out (on_write). */
static void hs_starttls(struct agent_nbd_conn *c)
{
    size_t extra = evbuffer_get_length(bufferevent_get_input(c->bev));
    if (extra) {
        c->s->st.proto_errors++;
        metric_inc(c->s->m_proto_errors);
        deny(c, "%zu bytes of plaintext pipelined after NBD_OPT_STARTTLS (CVE-2021-3716)",
             extra);
        agent_nbd_conn_close(c, "plaintext after STARTTLS");
        return;
    }
    agent_nbd_conn_set_state(c, AGENT_NBD_HS_TLS);
    agent_nbd_conn_read_enable(c, false);
    /* on_write runs once the output is empty: the ACK is on the wire. */
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
}

static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

/* The ACK is out: hand the socket from the plaintext bufferevent to a TLS
 * one, which runs the handshake. */
static void hs_tls_switch(struct agent_nbd_conn *c)
{
    struct agent_nbd *s = c->s;
    struct bufferevent *plain = c->bev;
    int fd = (int)bufferevent_getfd(plain);
    bufferevent_setcb(plain, NULL, NULL, NULL, NULL);
    bufferevent_disable(plain, EV_READ | EV_WRITE);
    bufferevent_setfd(plain, -1); /* the socket is the TLS one's now */
    struct bufferevent *b = nbd_tls_bev(s->o.tls, reactor_base(s->rx), fd);
    if (!b) {
        agent_nbd_conn_close(c, "out of memory for TLS"); /* frees PLAIN; FD is closed */
        return;
    }
    c->bev = b;
    bufferevent_free(plain);
    c->tls_handshaking = true;
    c->read_off = false;
    bufferevent_setcb(b, on_read, on_write, on_event, c);
    bufferevent_setwatermark(b, EV_READ, 0, AGENT_NBD_READ_HIGH_WATER);
    bufferevent_setwatermark(b, EV_WRITE, s->o.out_high_water / 2, 0);
    bufferevent_set_max_single_read(b, AGENT_NBD_READ_HIGH_WATER);
    bufferevent_enable(b, EV_READ | EV_WRITE);
}

/* The TLS handshake is done: who the client is; options start afresh. */
static void hs_tls_up(struct agent_nbd_conn *c)
{
    c->tls = true;
    c->tls_handshaking = false;
    nbd_tls_peer(c->bev, &c->peer_tls);
    nbd_hs_tls_started(&c->hs);
    c->s->st.tls_ok++;
    metric_inc(c->s->m_tls_ok);
    log_debug(c->s->o.tag, "nbd conn %llu (%s): TLS up: %s %s, %s%s", (unsigned long long)c->id,
              c->peer, c->peer_tls.version, c->peer_tls.cipher,
              c->peer_tls.auth == NBD_TLS_PSK    ? "PSK identity "
              : c->peer_tls.auth == NBD_TLS_CERT ? "client certificate "
                                                 : "no client id",
              c->peer_tls.id);
    agent_nbd_conn_set_state(c, AGENT_NBD_HS_OPT);
    agent_nbd_conn_maybe_resume(c);
}

static void hs_export_desc(const struct agent_vol_info *vi, bool structured,
                           struct nbd_export_desc *x)
{
    memset(x, 0, sizeof(*x));
    x->size = vi->size;
    x->tflags = agent_nbd_tx_flags(vi, structured);
    agent_nbd_tx_sizes(vi, &x->min_block, &x->pref_block, &x->max_payload);
    x->name = vi->name;
}

static void on_list(struct agent_vols_list_req *req, int err, const struct agent_vols_list_entry *v,
                    unsigned n)
{
    struct agent_nbd_conn *c = req->data;
    if (c->state == AGENT_NBD_HS_WAIT) {
        if (err < 0) {
            hs_error(c, nbd_rep_err_from_errno(err), "cannot list volumes: %s", bd_strerror(err));
        } else {
            unsigned shown = 0;
            for (unsigned i = 0; i < n && c->bev; i++) {
                /* Only what this connection could open (agent_nbd.h). */
                char why[200];
                if ((c->bound[0] && strcmp(v[i].name, c->bound) != 0) ||
                    access_denied(c, v[i].client, why, sizeof(why)))
                    continue;
                shown++;
                uint8_t out[NBD_OPT_REPLY_HDR_LEN + 4 + AGENT_VOL_NAME_MAX];
                size_t len = strnlen(v[i].name, AGENT_VOL_NAME_MAX);
                int k = nbd_encode_rep_server(out, sizeof(out), NBD_OPT_LIST, v[i].name,
                                              (uint32_t)len);
                if (k > 0) agent_nbd_conn_send(c, out, (size_t)k);
            }
            uint8_t ack[NBD_OPT_REPLY_HDR_LEN];
            nbd_encode_rep_ack(ack, sizeof(ack), NBD_OPT_LIST);
            agent_nbd_conn_send(c, ack, sizeof(ack));
            nbd_hs_list_grant(&c->hs, shown);
        }
        if (c->bev) hs_next_option(c);
    }
    agent_nbd_conn_unref(c);
}

/* GO or EXPORT_NAME failed: the first gets an error reply, the second can
 * only hang up ("If the server is unwilling to allow the export, it MUST
 * terminate the session"). */
static void hs_open_failed(struct agent_nbd_conn *c, int err, const char *what)
{
    char q[NBD_QUOTE_MAX + 8];
    nbd_quote(q, sizeof(q), c->name, strlen(c->name));
    if (c->hreq.opt == NBD_OPT_EXPORT_NAME) {
        char why[160];
        snprintf(why, sizeof(why), "NBD_OPT_EXPORT_NAME '%s': %s", q, bd_strerror(err));
        agent_nbd_conn_close(c, why);
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

static void on_open(struct agent_vols_open_req *req, int err, struct agent_vol *vol)
{
    struct agent_nbd_conn *c = req->data;
    if (c->state != AGENT_NBD_HS_WAIT) { /* closed meanwhile */
        if (err == 0 && vol) agent_vol_put(vol);
        agent_nbd_conn_unref(c);
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
        agent_nbd_conn_unref(c);
        return;
    }
    c->vol = vol;
    c->vinfo = *agent_vol_info(vol);
    uint8_t out[NBD_HS_OUT_MAX];
    int n;
    if (c->hreq.opt == NBD_OPT_GO) {
        struct nbd_export_desc x;
        hs_export_desc(&c->vinfo, c->hs.structured, &x);
        n = nbd_hs_encode_export(&c->hreq, &x, out, sizeof(out));
    } else {
        n = nbd_encode_export_name_reply(out, sizeof(out), c->vinfo.size,
                                         agent_nbd_tx_flags(&c->vinfo, c->hs.structured),
                                         c->hs.cflags & NBD_FLAG_C_NO_ZEROES);
    }
    if (n < 0 || !agent_nbd_conn_send(c, out, (size_t)n)) {
        agent_nbd_conn_close(c, "cannot encode the export reply");
        agent_nbd_conn_unref(c);
        return;
    }
    nbd_hs_go_done(&c->hs, c->hreq.name); /* hreq.name points into opt_buf: before the free */
    free(c->opt_buf);
    c->opt_buf = NULL;
    c->opt_cap = 0;
    agent_nbd_conn_hs_leave(c);
    event_del(c->timer);
    metric_inc(c->s->m_handshakes_ok);
    agent_nbd_tx_setup(c);
    char tls[300] = "";
    if (c->tls)
        snprintf(tls, sizeof(tls), ", %s %s%s%s", c->peer_tls.version, c->peer_tls.cipher,
                 c->peer_tls.auth == NBD_TLS_PSK    ? ", PSK identity "
                 : c->peer_tls.auth == NBD_TLS_CERT ? ", client certificate "
                                                    : "",
                 c->peer_tls.id);
    log_line(LOG_INFO, c->s->o.tag, c->vinfo.name, 0,
             "nbd conn %llu (%s): attached%s, %llu bytes%s%s%s", (unsigned long long)c->id,
             c->peer, c->vinfo.read_only ? " read-only" : "",
             (unsigned long long)c->vinfo.size, c->caps.structured ? ", structured" : "",
             c->caps.meta_base_alloc ? ", base:allocation" : "", tls);
    agent_nbd_conn_set_state(c, AGENT_NBD_TX_HDR);
    agent_nbd_conn_maybe_resume(c);
    agent_nbd_conn_unref(c);
}

static void on_info(struct agent_vols_info_req *req, int err, const struct agent_vol_info *info)
{
    struct agent_nbd_conn *c = req->data;
    if (c->state != AGENT_NBD_HS_WAIT) {
        agent_nbd_conn_unref(c);
        return;
    }
    if (err == 0 && (!info || !vol_info_sane(info))) err = -EIO;
    if (err < 0) {
        hs_open_failed(c, err, "export");
        agent_nbd_conn_unref(c);
        return;
    }
    char why[200];
    if (access_denied(c, info->client, why, sizeof(why))) {
        char q[NBD_QUOTE_MAX + 8];
        deny(c, "%s '%s': %s", nbd_opt_name(c->hreq.opt), nbd_quote(q, sizeof(q), c->name,
                                                                   strlen(c->name)),
             why);
        if (c->hreq.opt == NBD_OPT_EXPORT_NAME) {
            agent_nbd_conn_close(c, "volume not for this client");
        } else {
            hs_error(c, NBD_REP_ERR_POLICY, "volume '%s' is not for this client", q);
            hs_next_option(c);
        }
        agent_nbd_conn_unref(c);
        return;
    }
    if (c->hreq.opt == NBD_OPT_INFO) {
        struct nbd_export_desc x;
        hs_export_desc(info, c->hs.structured, &x);
        uint8_t out[NBD_HS_OUT_MAX];
        int n = nbd_hs_encode_export(&c->hreq, &x, out, sizeof(out));
        if (n > 0) agent_nbd_conn_send(c, out, (size_t)n);
        if (c->bev) hs_next_option(c);
        agent_nbd_conn_unref(c);
        return;
    }
    /* GO / EXPORT_NAME: now, and only now, attach.  The reference moves
     * to the open call. */
    c->open_req.cb = on_open;
    c->open_req.data = c;
    agent_vols_open(c->s->vs, c->name, info->read_only, &c->open_req);
}

/* An INFO, GO or EXPORT_NAME whose name the codec accepted. */
static void hs_lookup(struct agent_nbd_conn *c)
{
    struct nbd_str nm = c->hreq.name;
    char q[NBD_QUOTE_MAX + 8];
    if (c->via == AGENT_NBD_VIA_VOLUME) {
        /* A volume's socket: its name, or the default export, and nothing
         * else. */
        size_t bl = strlen(c->bound);
        if (nm.len != 0 && (nm.len != bl || memcmp(nm.ptr, c->bound, bl) != 0)) {
            if (c->hreq.opt == NBD_OPT_EXPORT_NAME) {
                agent_nbd_conn_close(c, "NBD_OPT_EXPORT_NAME: not this socket's volume");
                return;
            }
            hs_error(c, NBD_REP_ERR_UNKNOWN, "export '%s': this socket serves '%s' only",
                     nbd_quote(q, sizeof(q), nm.ptr, nm.len), c->bound);
            hs_next_option(c);
            return;
        }
        nm = (struct nbd_str){c->bound, (uint32_t)bl};
    }
    if (nm.len == 0 || nm.len > AGENT_VOL_NAME_MAX) {
        /* No default export, and no volume name is that long: no lookup. */
        if (c->hreq.opt == NBD_OPT_EXPORT_NAME) {
            agent_nbd_conn_close(c, nm.len ? "NBD_OPT_EXPORT_NAME: name too long"
                                           : "NBD_OPT_EXPORT_NAME: no default export");
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
    agent_nbd_conn_set_state(c, AGENT_NBD_HS_WAIT);
    agent_nbd_conn_read_enable(c, false);
    agent_nbd_conn_ref(c);
    c->info_req.cb = on_info;
    c->info_req.data = c;
    agent_vols_info(c->s->vs, c->name, &c->info_req);
}

static void hs_option(struct agent_nbd_conn *c)
{
    uint8_t out[NBD_HS_OUT_MAX];
    size_t n = 0;
    unsigned refused = c->hs.tls_refused;
    enum nbd_hs_action act =
        nbd_hs_option(&c->hs, &c->opt, c->opt_buf, out, sizeof(out), &n, &c->hreq);
    if (n) agent_nbd_conn_send(c, out, n);
    if (!c->bev) return;
    log_debug(c->s->o.tag, "nbd conn %llu: %s (%u bytes) -> action %d", (unsigned long long)c->id,
              nbd_opt_name(c->opt.opt), c->opt.len, (int)act);
    switch (act) {
    case NBD_HS_REPLY:
        /* The first option refused for want of TLS is the one line; the
         * client may go on to STARTTLS, or keep asking in vain. */
        if (refused == 0 && c->hs.tls_refused == 1)
            deny(c, "%s in plaintext: TLS is required (NBD_REP_ERR_TLS_REQD)",
                 nbd_opt_name(c->opt.opt));
        hs_next_option(c);
        return;
    case NBD_HS_STARTTLS:
        hs_starttls(c);
        return;
    case NBD_HS_REFUSE:
        deny(c, "NBD_OPT_EXPORT_NAME in plaintext: TLS is required; session ended");
        agent_nbd_conn_close(c, "NBD_OPT_EXPORT_NAME without TLS");
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
        agent_nbd_conn_set_state(c, AGENT_NBD_HS_WAIT);
        agent_nbd_conn_read_enable(c, false);
        agent_nbd_conn_ref(c);
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

static bool hs_step(struct agent_nbd_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t avail = evbuffer_get_length(in);
    uint8_t b[NBD_OPT_HDR_LEN];
    switch (c->state) {
    case AGENT_NBD_HS_FLAGS: {
        if (avail < NBD_CLIENT_FLAGS_LEN) return false;
        evbuffer_remove(in, b, NBD_CLIENT_FLAGS_LEN);
        uint32_t cflags = 0;
        nbd_decode_client_flags(b, NBD_CLIENT_FLAGS_LEN, &cflags);
        if (nbd_hs_client_flags(&c->hs, cflags) < 0) {
            /* "the server MUST drop the TCP connection" */
            agent_nbd_conn_proto_error(c, "unknown or unoffered client flags");
            return false;
        }
        agent_nbd_conn_set_state(c, AGENT_NBD_HS_OPT);
        return true;
    }
    case AGENT_NBD_HS_OPT: {
        if (avail < NBD_OPT_HDR_LEN) return false;
        evbuffer_remove(in, b, NBD_OPT_HDR_LEN);
        if (nbd_decode_opt_hdr(b, NBD_OPT_HDR_LEN, &c->opt) < 0) {
            agent_nbd_conn_proto_error(c, "option magic is not IHAVEOPT");
            return false;
        }
        uint8_t out[NBD_HS_OUT_MAX];
        size_t n = 0;
        if (nbd_hs_header(&c->hs, &c->opt, out, sizeof(out), &n) == NBD_HS_CLOSE) {
            c->hreq.opt = c->opt.opt;
            if (n) agent_nbd_conn_send(c, out, n);
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
                agent_nbd_conn_close(c, "out of memory for an option");
                return false;
            }
            c->opt_cap = c->opt.len;
        }
        agent_nbd_conn_set_state(c, AGENT_NBD_HS_DATA);
        return true;
    }
    case AGENT_NBD_HS_DATA:
        if (avail < c->opt.len) return false;
        if (c->opt.len) evbuffer_remove(in, c->opt_buf, c->opt.len);
        hs_option(c);
        return true;
    default:
        return false;
    }
}

/* ---- connection events -------------------------------------------------------- */

static void agent_nbd_conn_process(struct agent_nbd_conn *c)
{
    agent_nbd_conn_ref(c); /* steps may close the connection */
    unsigned steps = 0;
    bool more = true;
    while (more && c->bev && !c->read_off && agent_nbd_conn_reading(c)) {
        if (++steps > NBD_STEPS_PER_WAKEUP) {
            event_active(c->resume, 0, 0); /* yield to other connections */
            break;
        }
        more = c->state < AGENT_NBD_TX_HDR ? hs_step(c) : agent_nbd_tx_step(c);
    }
    /* The client closed its side and everything it sent before that has
     * been taken in: answer what is in flight, then close (as for DISC). */
    if (c->eof && !more && c->bev && !c->read_off && agent_nbd_conn_reading(c))
        agent_nbd_conn_drain(c, c->s->o.disc_drain_ms,
                             c->state == AGENT_NBD_TX_DATA || c->state == AGENT_NBD_TX_SKIP
                                 ? "client closed inside a WRITE payload (dropped)"
                                 : "client closed its side of the connection");
    agent_nbd_conn_unref(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    agent_nbd_conn_process(arg);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    agent_nbd_conn_process(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct agent_nbd_conn *c = arg;
    if (c->state == AGENT_NBD_HS_TLS && !c->tls_handshaking) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) hs_tls_switch(c);
        return;
    }
    agent_nbd_conn_maybe_resume(c); /* output drained below the low-water mark */
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct agent_nbd_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) { /* only a TLS bufferevent says so: the handshake */
        if (c->state == AGENT_NBD_HS_TLS && c->tls_handshaking) hs_tls_up(c);
        return;
    }
    if (c->state == AGENT_NBD_HS_TLS) {
        char why[300];
        if (c->tls_handshaking) nbd_tls_error(bev, why, sizeof(why));
        else snprintf(why, sizeof(why), "the client closed before the STARTTLS reply went out");
        c->s->st.tls_failed++;
        metric_inc(c->s->m_tls_failed);
        deny(c, "TLS handshake failed: %s", why);
        agent_nbd_conn_close(c, "TLS handshake failed");
        return;
    }
    if (c->tls && (what & BEV_EVENT_ERROR)) {
        char why[300], msg[340];
        snprintf(msg, sizeof(msg), "TLS error: %s", nbd_tls_error(bev, why, sizeof(why)));
        agent_nbd_conn_close(c, msg);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        if (c->state < AGENT_NBD_TX_HDR) {
            agent_nbd_conn_close(c, "client closed the connection in the handshake");
            return;
        }
        /* Requests may still be buffered (a client may pipeline, send
         * DISC and shut its side at once): take them in first. */
        c->eof = true;
        agent_nbd_conn_process(c);
    } else {
        int e = EVUTIL_SOCKET_ERROR();
        char why[96];
        snprintf(why, sizeof(why), "socket error: %s", bd_strerror(e ? -e : -EIO));
        agent_nbd_conn_close(c, why);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct agent_nbd_conn *c = arg;
    if (c->state == AGENT_NBD_DRAIN) {
        agent_nbd_conn_close(c, "drain deadline passed");
        return;
    }
    if (c->in_hs) {
        c->s->st.timeouts++;
        metric_inc(c->s->m_timeouts);
        agent_nbd_conn_close(c, "handshake deadline passed");
    }
}

/* ---- admission ---------------------------------------------------------------- */

/* Close the oldest handshaking connection that waits on its client; see
 * "Admission" above.  True if one was closed. */
static bool evict_one(struct agent_nbd *s)
{
    for (struct agent_nbd_conn *c = s->hs_head; c; c = c->hs_next) {
        if (c->state == AGENT_NBD_HS_WAIT) continue;
        s->st.evicted++;
        metric_inc(s->m_evicted);
        log_info(s->o.tag, "nbd conn %llu (%s): evicted: stalled in %s for %llu ms",
                 (unsigned long long)c->id, c->peer, agent_nbd_conn_state_name(c->state),
                 (unsigned long long)(util_mono_ms() - c->accepted_ms));
        agent_nbd_conn_close(c, "evicted to admit a new client");
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

/* Serve FD, accepted on a socket of kind VIA (BOUND: the volume of a
 * volume socket). */
static int adopt_via(struct agent_nbd *s, int fd, enum agent_nbd_via via, const char *bound)
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
    struct agent_nbd_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    c->s = s;
    c->id = ++s->next_id;
    c->refs = 1;
    c->state = AGENT_NBD_HS_FLAGS;
    c->accepted_ms = util_mono_ms();
    c->via = via;
    if (bound) util_strlcpy(c->bound, bound, sizeof(c->bound));
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family != AF_UNIX)
        util_fmt_addr((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
    else if (bound)
        snprintf(c->peer, sizeof(c->peer), "unix:%.60s", bound);
    else
        util_strlcpy(c->peer, "unix", sizeof(c->peer));
    if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    c->same_host = via == AGENT_NBD_VIA_TCP && peer_same_host(fd);
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
    bufferevent_setwatermark(c->bev, EV_READ, 0, AGENT_NBD_READ_HIGH_WATER);
    bufferevent_setwatermark(c->bev, EV_WRITE, s->o.out_high_water / 2, 0);
    /* libevent reads 16 KiB per call by default: a 1 MiB write would take
     * 64 readv calls (and as many reactor turns); read up to the high
     * water mark at once, as wire connections do (conn.c). */
    bufferevent_set_max_single_read(c->bev, AGENT_NBD_READ_HIGH_WATER);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    nbd_hs_init(&c->hs, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    /* TLS as the socket's kind says: TCP follows tls_mode; a Unix socket
     * offers it at most (its permissions are the check). */
    enum nbd_tls_mode mode = !s->o.tls ? NBD_TLS_OFF : s->o.tls_mode;
    if (via != AGENT_NBD_VIA_TCP && mode == NBD_TLS_REQUIRE) mode = NBD_TLS_ON;
    nbd_hs_set_tls(&c->hs, mode);
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
    agent_nbd_conn_send(c, g, sizeof(g));
    log_debug(s->o.tag, "nbd conn %llu (%s): accepted", (unsigned long long)c->id, c->peer);
    return 0;
}

int agent_nbd_adopt(struct agent_nbd *s, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    bool unx = getpeername(fd, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_UNIX;
    return adopt_via(s, fd, unx ? AGENT_NBD_VIA_UNIX : AGENT_NBD_VIA_TCP, NULL);
}

static void on_accept(int fd, void *arg)
{
    agent_nbd_adopt(arg, fd);
}

/* ---- a socket per volume -------------------------------------------------------- */

struct agent_nbd_vsock {
    struct agent_nbd *s;
    struct agent_nbd_vsock *next;
    struct listener *l;
    char name[AGENT_VOL_NAME_MAX + 1];
};

static void on_vsock_accept(int fd, void *arg)
{
    struct agent_nbd_vsock *v = arg;
    adopt_via(v->s, fd, AGENT_NBD_VIA_VOLUME, v->name);
}

bool agent_nbd_volume_path(const struct agent_nbd *s, const char *name, char *buf, size_t cap)
{
    if (!s->o.volume_dir || !s->o.volume_dir[0]) return false;
    int n = snprintf(buf, cap, "%s/%s.sock", s->o.volume_dir, name);
    return n > 0 && (size_t)n < cap;
}

int agent_nbd_volume_add(struct agent_nbd *s, const char *name)
{
    char path[1200];
    if (s->stopping || !agent_nbd_volume_path(s, name, path, sizeof(path))) return 0;
    for (struct agent_nbd_vsock *v = s->vsocks; v; v = v->next)
        if (strcmp(v->name, name) == 0) return 0;
    struct agent_nbd_vsock *v = calloc(1, sizeof(*v));
    if (!v) return -ENOMEM;
    v->s = s;
    util_strlcpy(v->name, name, sizeof(v->name));
    int rc = listener_new_unix(s->rx, path, &s->o.volume_perm, on_vsock_accept, v, &v->l);
    if (rc < 0) {
        log_error(s->o.tag, "vol %s: cannot make its socket %s: %s; it is served on the "
                  "other sockets only", name, path, bd_strerror(rc));
        free(v);
        return rc;
    }
    v->next = s->vsocks;
    s->vsocks = v;
    log_info(s->o.tag, "vol %s: NBD socket %s (mode %04o)", name, path, s->o.volume_perm.mode);
    return 0;
}

void agent_nbd_volume_revoke(struct agent_nbd *s, const char *name, bool gone)
{
    unsigned n = 0;
    struct agent_nbd_conn *next;
    for (struct agent_nbd_conn *c = s->conns; c; c = next) {
        next = c->next;
        bool its = strcmp(c->bound, name) == 0 || (c->vol && strcmp(c->vinfo.name, name) == 0) ||
                   (c->state == AGENT_NBD_HS_WAIT && strcmp(c->name, name) == 0);
        if (!its) continue;
        n++;
        const char *why = gone ? "the volume was detached from this agent"
                               : "the volume's attachment changed";
        if (c->in_hs) agent_nbd_conn_close(c, why);
        else agent_nbd_conn_drain(c, s->o.disc_drain_ms, why);
    }
    if (n)
        log_info(s->o.tag, "vol %s: %s: closing its %u connection%s", name,
                 gone ? "detached" : "attachment changed", n, n == 1 ? "" : "s");
    for (struct agent_nbd_vsock **pp = &s->vsocks; gone && *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) != 0) continue;
        struct agent_nbd_vsock *v = *pp;
        *pp = v->next;
        listener_free(v->l); /* unlinks the socket */
        free(v);
        log_info(s->o.tag, "vol %s: its NBD socket is gone", name);
        break;
    }
}

/* Sockets a killed predecessor left in DIR (and in its private bind
 * directory): the volumes they name may have been detached meanwhile, so
 * none survives a start; the attachments make them again.  Only sockets
 * are removed, never another kind of file. */
static void vsocks_sweep(struct agent_nbd *s, const char *dir)
{
    for (int pass = 0; pass < 2; pass++) {
        char d[1100];
        snprintf(d, sizeof(d), pass ? "%s/.blockd-bind" : "%s", dir);
        DIR *dp = opendir(d);
        if (!dp) continue;
        struct dirent *e;
        while ((e = readdir(dp))) {
            size_t n = strlen(e->d_name);
            if (!pass && (n < 6 || strcmp(e->d_name + n - 5, ".sock") != 0)) continue;
            char path[1400];
            struct stat st;
            snprintf(path, sizeof(path), "%s/%s", d, e->d_name);
            if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && unlink(path) == 0)
                log_debug(s->o.tag, "nbd: removed the stale socket %s", path);
        }
        closedir(dp);
    }
}

static void vsocks_free(struct agent_nbd *s)
{
    while (s->vsocks) {
        struct agent_nbd_vsock *v = s->vsocks;
        s->vsocks = v->next;
        listener_free(v->l);
        free(v);
    }
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
    snprintf(l, sizeof(l), "role=\"%s\",result=\"ok\"", s->o.tag);
    s->m_tls_ok = metrics_counter("blockd_nbd_tls_handshakes_total", "NBD TLS handshakes", l);
    snprintf(l, sizeof(l), "role=\"%s\",result=\"failed\"", s->o.tag);
    s->m_tls_failed = metrics_counter("blockd_nbd_tls_handshakes_total", "NBD TLS handshakes", l);
    snprintf(l, sizeof(l), "role=\"%s\"", s->o.tag);
    s->m_denied = metrics_counter("blockd_nbd_denied_total",
                                  "NBD clients refused: TLS required, or a volume not for them",
                                  l);
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

static void stop_check(struct agent_nbd *s);

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
    s->on_conn_closed = stop_check;
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
    if (opts->volume_dir && *opts->volume_dir) vsocks_sweep(s, opts->volume_dir);
    metrics_setup(s);
    *out = s;
    return 0;

err:
    listener_free(s->tcp);
    listener_free(s->unx);
    free(s);
    return rc;
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
    vsocks_free(s);
    log_info(s->o.tag, "nbd: stopping: %u connections, %u in the handshake", s->n_conns, s->n_hs);
    /* "Close stray clients at server-stop" (qemu, CVE-2024-7409); finish
     * the others' in-flight requests ("the server SHOULD wait for inflight
     * requests to be serviced prior to initiating a hard disconnect"). */
    struct agent_nbd_conn *next;
    for (struct agent_nbd_conn *c = s->conns; c; c = next) {
        next = c->next;
        if (c->in_hs) agent_nbd_conn_close(c, "server stopping");
    }
    for (struct agent_nbd_conn *c = s->conns; c; c = next) {
        next = c->next;
        agent_nbd_conn_drain(c, drain_ms, "server stopping");
    }
    stop_check(s);
}

void agent_nbd_free(struct agent_nbd *s)
{
    if (!s) return;
    struct agent_nbd_conn *next;
    for (struct agent_nbd_conn *c = s->conns; c; c = next) { /* only if stop was never called */
        next = c->next;
        agent_nbd_conn_close(c, "server freed");
    }
    listener_free(s->tcp);
    listener_free(s->unx);
    vsocks_free(s);
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
    static const char *const modes[] = {"off", "on", "require"};
    cJSON_AddStringToObject(o, "tls", modes[s->o.tls ? s->o.tls_mode : NBD_TLS_OFF]);
    cJSON_AddNumberToObject(o, "tls_handshakes", (double)s->st.tls_ok);
    cJSON_AddNumberToObject(o, "tls_failures", (double)s->st.tls_failed);
    cJSON_AddNumberToObject(o, "denied", (double)s->st.denied);
    cJSON *vsk = cJSON_AddObjectToObject(o, "volume_sockets");
    for (const struct agent_nbd_vsock *v = s->vsocks; v && vsk; v = v->next) {
        char path[1200];
        if (agent_nbd_volume_path(s, v->name, path, sizeof(path)))
            cJSON_AddStringToObject(vsk, v->name, path);
    }
    if (s->tcp) cJSON_AddNumberToObject(o, "port", listener_port(s->tcp));
    cJSON_AddBoolToObject(o, "stopping", s->stopping);
    cJSON *ex = cJSON_AddObjectToObject(o, "exports");
    for (const struct agent_nbd_conn *c = s->conns; c && ex; c = c->next) {
        if (!c->vol) continue;
        cJSON *n = cJSON_GetObjectItemCaseSensitive(ex, c->vinfo.name);
        if (n) cJSON_SetNumberValue(n, n->valuedouble + 1);
        else cJSON_AddNumberToObject(ex, c->vinfo.name, 1);
    }
}
