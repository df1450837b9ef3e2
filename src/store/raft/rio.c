/* rio.c: struct raft_io on the reactor (see rio.h for the contract).
 *
 * Mirrors the behaviour of libraft's own uv backend (src/uv.c, uv_send.c,
 * uv_recv.c, uv_append.c) where raft.h leaves the contract implicit:
 *   - every callback runs on the loop thread and never inside the call
 *     that started the request;
 *   - appends complete in submission order (raftlog guarantees it);
 *   - on close, queued appends fail with RAFT_CANCELED, running I/O
 *     finishes, and the close callback comes last;
 *   - a send to a peer that is not connected fails with RAFT_NOCONNECTION
 *     instead of waiting (uv keeps at most 3 queued; we keep none, since
 *     libraft resends on its heartbeat anyway);
 *   - received messages carry the sender's id and address, and their
 *     entries and snapshot data are raft-heap memory libraft frees.
 *
 * Sending, happy path: rio_send -> raftmsg_encode (a gather list that
 * borrows the entries' buffers) -> cut into RIO_CHUNK pieces, each copied
 * into one WIRE_RAFT frame and queued on the peer's link -> the send
 * callback is queued on done_ev and runs after the current callback.
 * Failure modes: link down (RAFT_NOCONNECTION), message over
 * max_msg_bytes (RAFT_TOOBIG), unencodable message (RAFT_MALFORMED), the
 * connection dying mid-message (RAFT_NOCONNECTION; the receiver discards
 * the partial message when the next part 0 arrives).
 *
 * Receiving: rio_deliver -> checks (cluster, destination, sender, HELLO
 * identity) -> one-part messages decode straight from the frame; parts of
 * larger ones are appended to the sender's reassembly buffer, which grows
 * with the bytes that actually arrived (never from total_len alone) ->
 * raftmsg_decode -> libraft's recv callback, which takes the message. */
#include "store/raft/rio.h"
#include "base/bd.h"
#include "base/bytes.h"
#include "runtime/log.h"
#include "net/link.h"
#include "net/raftmsg.h"
#include "runtime/taskq.h"
#include "base/util.h"
#include "store/raft/raftfix.h"
#include "store/raft/raftlog.h"
#include "store/raft/snapmem.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WARN_CLUSTER, WARN_UNKNOWN, WARN_MALFORMED, WARN_N };

/* A message being reassembled from its parts: in BUF, or, above
 * RIO_STREAM_MIN (a snapshot), in a spool file (snapmem.h) that is mapped
 * once complete, so a large message never sits in the heap. */
struct rasm {
    uint8_t *buf;     /* malloc'ed, grows with what arrived */
    struct snapmem_spool *spool; /* instead of buf for a large message */
    size_t cap;
    size_t have;
    uint64_t total;   /* bytes announced by part 0 */
    uint32_t parts;
    uint32_t next;    /* part expected next; 0 = idle */
};

struct rstream;

struct rpeer {
    struct rio *r;
    struct rio_peer p;
    struct link *link;  /* created on the first send to this peer */
    struct rasm rasm;
    struct rstream *stream; /* a large message going out in windows, or NULL */
};

/* A large message (a snapshot) sent a window at a time (see "Sending").
 * ENC borrows libraft's buffers, which stay alive until REQ's callback. */
struct rstream {
    struct rpeer *p;
    struct raft_io_send *req;
    struct raftmsg_enc enc;
    uint32_t parts, next_part;
    int iv;                    /* position in enc: iovec, offset in it */
    size_t iv_off;
    unsigned pings;            /* PINGs outstanding (at most RIO_STREAM_WINDOWS) */
    struct conn_call ping[RIO_STREAM_WINDOWS];
    unsigned ping_next;        /* slot for the next PING */
    int status;                /* first failure (a raft status), 0 so far */
};

struct rsend {                 /* a send whose callback is due */
    struct raft_io_send *req;
    int status;
    struct rsend *next;
};

struct rappend {
    struct raftlog_req lr;
    struct raft_io_append *req;
    struct rio *r;
};
struct rsnap {
    struct raftlog_req lr;
    struct raft_io_snapshot_put *put;
    struct raft_io_snapshot_get *get;
};
struct rwork {
    struct taskq_job job;
    struct rio *r;
    struct raft_io_async_work *req;
    int status;
};
struct rinstall {                  /* an installed snapshot loaded by the owner first */
    struct taskq_job job;
    struct rio *r;
    struct raft_io_snapshot_put *put;
    const struct raft_snapshot *snap;
    int status;
};

struct rio {
    struct raft_io io;                 /* io.impl points back here */
    struct reactor *rx;
    uint64_t id;
    uint64_t cluster_hash;
    struct conn_opts link_opts;
    struct rpeer peers[RIO_MAX_PEERS];
    unsigned n_peers;
    uint64_t max_msg;
    uint64_t max_snap;                 /* for InstallSnapshot, which is spooled */
    const char *tag;
    char dir[4096];                    /* the raft log directory: large messages spool here */
    struct fileio *fio;                /* borrowed; NULL = fileio_posix */
    struct raftlog *log;
    struct taskq *workq;               /* async_work */
    int work_running;
    struct event *tick_ev;
    raft_io_tick_cb tick_cb;
    raft_io_recv_cb recv_cb;
    struct raftfix fix;  /* the libraft 0.15 workarounds (raftfix.h) */
    struct event *done_ev;             /* fires send callbacks */
    struct rsend *done_head, *done_tail;
    bool closing;
    bool log_closed;
    raft_io_close_cb close_cb;
    int (*install)(void *arg, const struct raft_buffer *data);
    void *install_arg;
    uint64_t rand;
    uint64_t last_warn_ms[WARN_N];
    struct rio_stats st;
    uint8_t chunk[RIO_CHUNK];          /* one part, gathered from the encoding */
    uint8_t frame[RIO_CHUNK + 64];     /* the WIRE_RAFT fields around it */
};

static int to_raft_err(int rc)
{
    switch (rc) {
    case 0: return 0;
    case -ECANCELED:
    case -ESHUTDOWN: return RAFT_CANCELED;
    case -ENOSPC: return RAFT_NOSPACE;
    case -ENOMEM: return RAFT_NOMEM;
    case -ENOENT: return RAFT_NOTFOUND;
    case -EEXIST: return RAFT_CANTBOOTSTRAP;
    case -BD_ECORRUPT: return RAFT_CORRUPT;
    default: return RAFT_IOERR;
    }
}

static void warn_limited(struct rio *r, int which, const char *fmt, const char *what,
                         unsigned long long a, unsigned long long b)
{
    uint64_t now = util_mono_ms();
    if (now - r->last_warn_ms[which] < 1000 && r->last_warn_ms[which]) return;
    r->last_warn_ms[which] = now;
    log_warn(r->tag, fmt, what, a, b);
}

/* ---- peers ------------------------------------------------------------------ */

static struct rpeer *peer_by_id(struct rio *r, uint64_t id)
{
    for (unsigned i = 0; i < r->n_peers; i++)
        if (r->peers[i].p.id == id) return &r->peers[i];
    return NULL;
}

int rio_add_peer(struct rio *r, uint64_t id, const char *addr)
{
    struct rpeer *p = peer_by_id(r, id);
    if (p) return strcmp(p->p.addr, addr) == 0 ? 0 : -EEXIST;
    if (r->n_peers == RIO_MAX_PEERS || id == 0 || strlen(addr) >= RIO_ADDR_MAX) return -ENOSPC;
    p = &r->peers[r->n_peers++];
    memset(p, 0, sizeof(*p));
    p->r = r;
    p->p.id = id;
    util_strlcpy(p->p.addr, addr, sizeof(p->p.addr));
    return 0;
}

static bool a_is_spooled(const struct rasm *a)
{
    return a->spool != NULL;
}

static void rasm_reset(struct rasm *a)
{
    free(a->buf);
    snapmem_spool_close(a->spool);
    memset(a, 0, sizeof(*a));
}

/* A large InstallSnapshot cannot be spooled (RC: ENOSPC, EIO): drop it,
 * and close the connection it arrives on.  The sender's stream then fails
 * (its next PING goes unanswered), so libraft aborts that snapshot and
 * sends it again once the link is back, instead of waiting out the
 * install timeout (30 minutes, consensus.c) for an answer that would never
 * come.  FROM may be NULL (tests feeding frames by hand). */
static void spool_failed(struct rio *r, struct conn *from, struct rasm *a, uint64_t from_id,
                         const char *what, int rc)
{
    log_warn(r->tag, "%s a %llu-byte raft snapshot from %llu in %s: %s (dropped; closing "
             "the connection so that the sender starts again)", what,
             (unsigned long long)a->total, (unsigned long long)from_id, r->dir, bd_strerror(rc));
    rasm_reset(a);
    r->st.drop_spool++;
    if (from) conn_close(from, rc);
}

/* ---- receiving ------------------------------------------------------------------- */

/* raftmsg_take_fn for a mapped message: the snapshot data keeps the
 * mapping (ARG is the mapping's registered base) and libraft's raft_free
 * of the data unmaps it. */
static int take_mapped(void *arg, const uint8_t *p, size_t len, struct raft_buffer *out)
{
    int rc = snapmem_rebase(arg, (void *)p);
    if (rc == 0) *out = (struct raft_buffer){(void *)p, len};
    return rc;
}

/* Decode and hand to libraft.  MAPPED: BUF is a registered mapping
 * (snapmem.h) that this call consumes (its data part may go on to libraft). */
static void deliver_msg(struct rio *r, struct rpeer *p, const uint8_t *buf, size_t len,
                        bool mapped)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    bool taken = false;
    int rc = mapped ? raftmsg_decode_take(buf, len, &m, take_mapped, (void *)buf)
                    : raftmsg_decode(buf, len, &m);
    if (mapped) {
        taken = rc == 0 && m.type == RAFT_IO_INSTALL_SNAPSHOT &&
                (const uint8_t *)m.install_snapshot.data.base > buf;
        if (!taken) raft_free((void *)buf); /* copied out, or failed: unmap */
        else snapmem_consumed(buf, (size_t)((const uint8_t *)m.install_snapshot.data.base - buf));
    }
    if (rc < 0) {
        r->st.drop_malformed++;
        warn_limited(r, WARN_MALFORMED, "dropped a raft message that does not decode (%s) "
                     "from %llu (%llu bytes)", bd_strerror(rc), p->p.id, len);
        return;
    }
    m.server_id = p->p.id;
    m.server_address = p->p.addr;
    r->st.received++;
    /* libraft 0.15 bugs (raftfix.h): M may be rewritten, or dropped as
     * stale; rio_send clamps what libraft answers while it is delivered. */
    if (!raftfix_recv(&r->fix, r->io.data, &m)) return;
    r->recv_cb(&r->io, &m); /* libraft takes the entries and snapshot data */
    raftfix_after(&r->fix, r->io.data);
}

void rio_deliver(struct rio *r, struct conn *from, const struct wire_raft_req *w)
{
    if (r->closing || !r->recv_cb) {
        r->st.drop_closed++;
        return;
    }
    if (w->cluster_hash != r->cluster_hash) {
        r->st.drop_cluster++;
        warn_limited(r, WARN_CLUSTER, "dropped a raft message %s from %llu: cluster hash %llx",
                     "for another cluster", w->from_id, w->cluster_hash);
        return;
    }
    struct rpeer *p = peer_by_id(r, w->from_id);
    uint64_t authed = from ? conn_peer_id(from) : w->from_id;
    if (!p || w->from_id == r->id || w->to_id != r->id || authed != w->from_id) {
        r->st.drop_unknown++;
        warn_limited(r, WARN_UNKNOWN, "dropped a raft message %s: from %llu to %llu",
                     "from an unknown or unauthenticated server", w->from_id, w->to_id);
        return;
    }
    struct rasm *a = &p->rasm;
    /* Part 0 names the type (its first two bytes): a large InstallSnapshot
     * is spooled to disk (below) and may be larger than what the heap
     * would hold; later parts keep the bound part 0 was given. */
    bool snap = w->part == 0 ? w->chunk_len >= 2 &&
                                   bytes_get_le16(w->chunk) == RAFT_IO_INSTALL_SNAPSHOT
                             : a_is_spooled(&p->rasm);
    bool bad = w->total_len > (snap ? r->max_snap : r->max_msg) || w->parts == 0 ||
               w->part >= w->parts;
    if (!bad && w->parts == 1) {
        if (a->next) rasm_reset(a); /* a partial message was abandoned */
        if (w->chunk_len != w->total_len) bad = true;
        else deliver_msg(r, p, w->chunk, w->chunk_len, false);
        if (!bad) return;
    }
    if (!bad && w->part == 0) {
        rasm_reset(a);
        a->total = w->total_len;
        a->parts = w->parts;
        /* A large InstallSnapshot (the type is the message's first two
         * bytes) is spooled; other messages are decoded into the heap
         * anyway, so reassembling them there costs nothing more. */
        if (a->total > RIO_STREAM_MIN && snap) {
            int rc = snapmem_spool_open(r->fio, r->dir, &a->spool);
            if (rc < 0) {
                spool_failed(r, from, a, w->from_id, "cannot spool", rc);
                return;
            }
        }
    } else if (!bad && (w->part != a->next || w->parts != a->parts || w->total_len != a->total)) {
        bad = true;
    }
    if (!bad && a->have + w->chunk_len > a->total) bad = true;
    if (bad) {
        rasm_reset(a);
        r->st.drop_malformed++;
        warn_limited(r, WARN_MALFORMED, "dropped a raft message %s from %llu (%llu bytes)",
                     "with inconsistent parts or over the size limit", w->from_id, w->total_len);
        return;
    }
    if (a->spool) {
        int rc = snapmem_spool_write(a->spool, w->chunk, w->chunk_len);
        if (rc < 0) {
            spool_failed(r, from, a, w->from_id, "spooling", rc);
            return;
        }
        a->have += w->chunk_len;
        a->next = w->part + 1;
        if (a->next < a->parts) return;
        struct raft_buffer mb;
        rc = a->have == a->total ? snapmem_spool_map(a->spool, 0, a->have, &mb) : -EPROTO;
        if (rc < 0) {
            spool_failed(r, from, a, w->from_id, "mapping", rc);
            return;
        }
        rasm_reset(a); /* the mapping outlives the spool file's descriptor */
        r->st.spooled++;
        deliver_msg(r, p, mb.base, mb.len, true);
        return;
    }
    if (a->have + w->chunk_len > a->cap) {
        size_t cap = BD_MAX(a->cap * 2, a->have + w->chunk_len);
        if (cap > a->total) cap = a->total;
        uint8_t *n = realloc(a->buf, cap ? cap : 1);
        if (!n) {
            rasm_reset(a);
            r->st.drop_malformed++;
            return;
        }
        a->buf = n;
        a->cap = cap;
    }
    memcpy(a->buf + a->have, w->chunk, w->chunk_len);
    a->have += w->chunk_len;
    a->next = w->part + 1;
    if (a->next < a->parts) return;
    if (a->have == a->total) deliver_msg(r, p, a->buf, a->have, false);
    else r->st.drop_malformed++;
    rasm_reset(a);
}

static void on_link_request(struct link *l, struct conn *c, struct conn_frame *f, void *arg)
{
    (void)l;
    struct rpeer *p = arg;
    if (f->hdr.type == WIRE_RAFT) {
        struct wire_raft_req w;
        if (wire_decode_raft_req(f->body, f->hdr.len, f->hdr.payload_len, &w) == 0)
            rio_deliver(p->r, c, &w);
        else
            p->r->st.drop_malformed++;
    }
    if (!(f->hdr.flags & WIRE_F_ONEWAY)) conn_reply_error(c, &f->hdr, -ENOTSUP, 0, "raft link");
}

static void on_link_up(struct link *l, void *arg)
{
    struct rpeer *p = arg;
    log_debug(p->r->tag, "raft link to %llu (%s) up", (unsigned long long)p->p.id, link_addr(l));
}

static void on_link_down(struct link *l, int err, void *arg)
{
    struct rpeer *p = arg;
    log_info(p->r->tag, "raft link to %llu (%s) down: %s", (unsigned long long)p->p.id,
             link_addr(l), bd_strerror(err));
}

static const struct link_ops rio_link_ops = {
    .on_up = on_link_up, .on_down = on_link_down, .on_request = on_link_request};

/* ---- sending ----------------------------------------------------------------------- */

static void on_done_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rio *r = arg;
    struct rsend *s = r->done_head;
    r->done_head = r->done_tail = NULL;
    while (s) {
        struct rsend *next = s->next;
        if (s->req->cb) s->req->cb(s->req, s->status); /* TimeoutNow has none */
        free(s);
        s = next;
    }
}

static void queue_done(struct rio *r, struct raft_io_send *req, int status)
{
    struct rsend *s = malloc(sizeof(*s));
    if (!s) {
        /* Out of memory: run it on this stack rather than never (never
         * inside rio_send: that path allocates before sending). */
        if (req->cb) req->cb(req, status);
        return;
    }
    s->req = req;
    s->status = status;
    s->next = NULL;
    if (r->done_tail) r->done_tail->next = s;
    else r->done_head = s;
    r->done_tail = s;
    event_active(r->done_ev, 0, 0);
}

/* Queue part PART (of PARTS) of ENC, which starts at *IV / *IV_OFF, on
 * P's link as one WIRE_RAFT frame; advances the position.  0, or -errno
 * (the link is down). */
static int send_part(struct rio *r, struct rpeer *p, const struct raftmsg_enc *enc,
                     uint32_t part, uint32_t parts, int *iv, size_t *iv_off)
{
    size_t n = BD_MIN((size_t)RIO_CHUNK, enc->total_len - (size_t)part * RIO_CHUNK);
    const uint8_t *chunk;
    if (enc->iov[*iv].iov_len - *iv_off >= n) { /* contiguous: no gather copy */
        chunk = (const uint8_t *)enc->iov[*iv].iov_base + *iv_off;
        *iv_off += n;
    } else {
        size_t got = 0;
        while (got < n) {
            size_t take = BD_MIN(n - got, enc->iov[*iv].iov_len - *iv_off);
            memcpy(r->chunk + got, (const uint8_t *)enc->iov[*iv].iov_base + *iv_off, take);
            got += take;
            *iv_off += take;
            if (*iv_off == enc->iov[*iv].iov_len && *iv + 1 < enc->n_iov) {
                (*iv)++;
                *iv_off = 0;
            }
        }
        chunk = r->chunk;
    }
    if (*iv_off == enc->iov[*iv].iov_len && *iv + 1 < enc->n_iov) {
        (*iv)++;
        *iv_off = 0;
    }
    struct wire_raft_req w = {.cluster_hash = r->cluster_hash, .from_id = r->id,
                              .to_id = p->p.id, .part = part, .parts = parts,
                              .total_len = enc->total_len, .chunk_len = (uint32_t)n,
                              .chunk = chunk};
    int flen = wire_encode_raft_req(r->frame, sizeof(r->frame), &w);
    if (BD_NEVER(flen < 0)) return -EPROTO;
    int rc = link_send_oneway(p->link, WIRE_RAFT, r->frame, (size_t)flen, NULL);
    if (rc < 0) return rc;
    /* The link copied the part: a mapped snapshot's pages leave our RSS
     * (snapmem.h; a no-op for heap bytes and for the gathered copy). */
    if (chunk != r->chunk) snapmem_consumed(chunk, n);
    r->st.sent_frames++;
    return 0;
}

/* ---- streaming a large message ------------------------------------------------------ */

static void stream_pump(struct rstream *st);

static void stream_finish(struct rstream *st)
{
    struct rpeer *p = st->p;
    struct rio *r = p->r;
    p->stream = NULL;
    raftmsg_enc_free(&st->enc);
    if (st->status) {
        r->st.send_noconn++;
    } else {
        r->st.sent++;
        r->st.streamed++;
    }
    queue_done(r, st->req, st->status);
    free(st);
}

static void on_stream_ping(struct conn_call *call, int err, struct conn_frame *f)
{
    (void)f;
    struct rstream *st = call->data;
    st->pings--;
    if (err && !st->status) st->status = RAFT_NOCONNECTION;
    stream_pump(st);
}

/* Send windows while fewer than RIO_STREAM_WINDOWS are unconfirmed; each
 * window ends with a PING, which the peer's conn answers only after it
 * has taken every frame before it. */
static void stream_pump(struct rstream *st)
{
    struct rpeer *p = st->p;
    struct rio *r = p->r;
    while (!st->status && st->next_part < st->parts && st->pings < RIO_STREAM_WINDOWS) {
        uint32_t end = BD_MIN(st->next_part + RIO_STREAM_WINDOW_PARTS, st->parts);
        for (; st->next_part < end; st->next_part++)
            if (!p->link || send_part(r, p, &st->enc, st->next_part, st->parts, &st->iv,
                                      &st->iv_off) < 0) {
                st->status = RAFT_NOCONNECTION;
                break;
            }
        if (st->status) break;
        struct wire_ping_req ping = {.stamp = st->next_part};
        uint8_t fields[16];
        int n = wire_encode_ping_req(fields, sizeof(fields), &ping);
        struct conn_call *c = &st->ping[st->ping_next++ % RIO_STREAM_WINDOWS];
        c->cb = on_stream_ping;
        c->data = st;
        if (n < 0 || link_call(p->link, c, WIRE_PING, fields, (size_t)n, NULL,
                               RIO_STREAM_PING_MS) < 0) {
            st->status = RAFT_NOCONNECTION;
            break;
        }
        st->pings++;
    }
    if (!st->pings && (st->status || st->next_part == st->parts)) stream_finish(st);
}

/* Encode M and queue its frames on the peer's link, or start streaming it
 * (then *STREAMING is set, and REQ completes when the stream does).
 * Returns a raft status. */
static int send_now(struct rio *r, const struct raft_message *m, struct raft_io_send *req,
                    bool *streaming)
{
    *streaming = false;
    struct rpeer *p = peer_by_id(r, m->server_id);
    if (p && m->server_address && strcmp(p->p.addr, m->server_address) != 0) {
        /* The configuration moved this server: follow it (a stream to the
         * old address fails as its link goes). */
        struct link *old = p->link;
        p->link = NULL;
        link_free(old);
        util_strlcpy(p->p.addr, m->server_address, sizeof(p->p.addr));
    }
    if (!p && (!m->server_address || rio_add_peer(r, m->server_id, m->server_address) < 0))
        return RAFT_NOCONNECTION;
    if (!p) p = peer_by_id(r, m->server_id);
    if (!p->link) {
        struct conn_opts lo = r->link_opts;
        lo.expect_id = p->p.id; /* with TLS: that server's certificate */
        p->link = link_new(r->rx, p->p.addr, &lo, &rio_link_ops, p);
        if (!p->link) return RAFT_NOMEM;
    }
    if (!link_is_up(p->link) || p->stream) {
        /* Down, or busy with a large message whose parts nothing may
         * interleave with (the receiver reassembles one message at a
         * time): libraft sends again on its own schedule. */
        r->st.send_noconn++;
        return RAFT_NOCONNECTION;
    }
    struct raftmsg_enc enc;
    int rc = raftmsg_encode(m, &enc);
    if (rc < 0) {
        log_error(r->tag, "cannot encode raft %s to %llu: %s", raftmsg_type_name(m->type),
                  (unsigned long long)m->server_id, bd_strerror(rc));
        return rc == -ENOMEM ? RAFT_NOMEM : RAFT_MALFORMED;
    }
    if (enc.total_len > (m->type == RAFT_IO_INSTALL_SNAPSHOT ? r->max_snap : r->max_msg)) {
        raftmsg_enc_free(&enc);
        return RAFT_TOOBIG;
    }
    uint32_t parts = (uint32_t)((enc.total_len + RIO_CHUNK - 1) / RIO_CHUNK);
    if (enc.total_len > RIO_STREAM_MIN) {
        struct rstream *st = calloc(1, sizeof(*st));
        if (!st) {
            raftmsg_enc_free(&enc);
            return RAFT_NOMEM;
        }
        st->p = p;
        st->req = req;
        st->enc = enc;
        st->parts = parts;
        p->stream = st;
        *streaming = true;
        stream_pump(st);
        return 0;
    }
    int iv = 0;
    size_t iv_off = 0;
    int status = 0;
    for (uint32_t part = 0; part < parts; part++)
        if (send_part(r, p, &enc, part, parts, &iv, &iv_off) < 0) {
            status = RAFT_NOCONNECTION;
            r->st.send_noconn++;
            break;
        }
    raftmsg_enc_free(&enc);
    if (status == 0) r->st.sent++;
    return status;
}

static int rio_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
                    raft_io_send_cb cb)
{
    struct rio *r = io->impl;
    if (r->closing) return RAFT_CANCELED;
    req->cb = cb;
    struct raft_message clamped;
    m = raftfix_send(&r->fix, r->io.data, m, &clamped);
    bool streaming = false;
    int status = m ? send_now(r, m, req, &streaming) : RAFT_NOCONNECTION;
    if (!streaming) queue_done(r, req, status);
    return 0;
}

/* ---- storage -------------------------------------------------------------------------- */

static int rio_init(struct raft_io *io, raft_id id, const char *address)
{
    struct rio *r = io->impl;
    (void)address;
    if (id != r->id) {
        snprintf(io->errmsg, sizeof(io->errmsg), "raft id %llu but rio was made for %llu",
                 (unsigned long long)id, (unsigned long long)r->id);
        return RAFT_INVALID;
    }
    return 0;
}

static int rio_load(struct raft_io *io, raft_term *term, raft_id *vote,
                    struct raft_snapshot **snapshot, raft_index *start_index,
                    struct raft_entry *entries[], size_t *n_entries)
{
    struct rio *r = io->impl;
    struct raftlog_state st;
    int rc = raftlog_load(r->log, &st, io->errmsg, sizeof(io->errmsg));
    if (rc < 0) {
        log_error(r->tag, "raft log: %s", io->errmsg);
        return to_raft_err(rc);
    }
    *term = st.term;
    *vote = st.vote;
    *snapshot = st.snapshot;
    *start_index = st.start_index;
    *entries = st.entries;
    *n_entries = st.n_entries;
    log_info(r->tag, "raft log loaded: term %llu, snapshot %llu, entries [%llu, %llu)",
             (unsigned long long)st.term,
             (unsigned long long)(st.snapshot ? st.snapshot->index : 0),
             (unsigned long long)st.start_index,
             (unsigned long long)(st.start_index + st.n_entries));
    return 0;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rio *r = arg;
    if (r->closing || !r->tick_cb || raftfix_stopped(&r->fix)) return;
    r->tick_cb(&r->io);
    if (!r->closing) raftfix_after(&r->fix, r->io.data);
}

static int rio_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                     raft_io_recv_cb recv)
{
    struct rio *r = io->impl;
    r->tick_cb = tick;
    r->recv_cb = recv;
    struct timeval tv = {msecs / 1000, (suseconds_t)(msecs % 1000) * 1000};
    return event_add(r->tick_ev, &tv) == 0 ? 0 : RAFT_IOERR;
}

static int rio_bootstrap(struct raft_io *io, const struct raft_configuration *conf)
{
    struct rio *r = io->impl;
    int rc = raftlog_bootstrap(r->log, conf, io->errmsg, sizeof(io->errmsg));
    return to_raft_err(rc);
}

static int rio_recover(struct raft_io *io, const struct raft_configuration *conf)
{
    struct rio *r = io->impl;
    return to_raft_err(raftlog_recover(r->log, conf, io->errmsg, sizeof(io->errmsg)));
}

/* RC from the raft log.  Any error but closing or memory means the log
 * failed for good (raftlog.h, C15); libraft 0.15 would go on leading with
 * it (raftfix.h "stop"), so this server stops taking part. */
static int log_failed(struct rio *r, int rc)
{
    if (rc < 0 && rc != -ECANCELED && rc != -ESHUTDOWN && rc != -ENOMEM &&
        !raftfix_stopped(&r->fix)) {
        log_error(r->tag, "raft log failed (%s): this server leaves raft until restarted",
                  bd_strerror(rc));
        raftfix_stop(&r->fix);
    }
    return rc;
}

static int rio_set_term(struct raft_io *io, raft_term term)
{
    struct rio *r = io->impl;
    return to_raft_err(log_failed(r, raftlog_set_term(r->log, term)));
}

static int rio_set_vote(struct raft_io *io, raft_id id)
{
    struct rio *r = io->impl;
    return to_raft_err(log_failed(r, raftlog_set_vote(r->log, id)));
}

static void on_append_done(struct raftlog_req *lr, int status)
{
    struct rappend *a = bd_container_of(lr, struct rappend, lr);
    struct raft_io_append *req = a->req;
    struct rio *r = a->r;
    free(a);
    log_failed(r, status);
    raftfix_append_done(&r->fix, req, to_raft_err(status)); /* failures newest first */
}

static int rio_append(struct raft_io *io, struct raft_io_append *req,
                      const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
    struct rio *r = io->impl;
    struct rappend *a = calloc(1, sizeof(*a));
    if (!a) return RAFT_NOMEM;
    a->req = req;
    a->r = r;
    req->cb = cb;
    int rc = raftlog_append(r->log, &a->lr, entries, n, on_append_done);
    if (rc < 0) {
        free(a);
        return to_raft_err(log_failed(r, rc));
    }
    raftfix_append_begin(&r->fix);
    return 0;
}

static int rio_truncate(struct raft_io *io, raft_index index)
{
    struct rio *r = io->impl;
    return to_raft_err(log_failed(r, raftlog_truncate(r->log, index)));
}

static void on_snapshot_done(struct raftlog_req *lr, int status)
{
    struct rsnap *s = bd_container_of(lr, struct rsnap, lr);
    if (s->put) {
        struct raft_io_snapshot_put *put = s->put;
        free(s);
        put->cb(put, to_raft_err(status));
    } else {
        struct raft_io_snapshot_get *get = s->get;
        struct raft_snapshot *snap = status == 0 ? lr->snapshot : NULL;
        free(s);
        get->cb(get, snap, to_raft_err(status));
    }
}

static void maybe_closed(struct rio *r);

static void install_run(struct taskq_job *job)
{
    struct rinstall *in = bd_container_of(job, struct rinstall, job);
    in->status = in->r->install(in->r->install_arg, &in->snap->bufs[0]);
}

static int snapshot_store(struct rio *r, unsigned trailing, struct raft_io_snapshot_put *req,
                          const struct raft_snapshot *snapshot);

static void install_done(struct reactor_work *w)
{
    struct rinstall *in = bd_container_of(w, struct rinstall, job.work);
    struct rio *r = in->r;
    struct raft_io_snapshot_put *put = in->put;
    const struct raft_snapshot *snap = in->snap;
    int status = in->status;
    free(in);
    r->work_running--;
    int rc = status ? status : r->closing ? -ECANCELED : snapshot_store(r, 0, put, snap);
    if (rc) {
        log_warn(r->tag, "installing the leader's snapshot at %llu: %s",
                 (unsigned long long)snap->index, bd_strerror(rc));
        put->cb(put, to_raft_err(rc));
    }
    maybe_closed(r);
}

static int rio_snapshot_put(struct raft_io *io, unsigned trailing,
                            struct raft_io_snapshot_put *req,
                            const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    struct rio *r = io->impl;
    req->cb = cb;
    /* trailing 0 is an install of the leader's snapshot (consensus.c never
     * asks for 0 itself): the owner loads it on the work queue first, so
     * the restore that follows finds it done and the reactor never loads a
     * whole index. */
    if (trailing == 0 && r->install && snapshot->n_bufs == 1) {
        if (r->closing) return RAFT_CANCELED;
        struct rinstall *in = calloc(1, sizeof(*in));
        if (!in) return RAFT_NOMEM;
        in->r = r;
        in->put = req;
        in->snap = snapshot;
        in->job.run = install_run;
        in->job.work.done = install_done;
        r->work_running++;
        taskq_submit(r->workq, &in->job);
        return 0;
    }
    return to_raft_err(snapshot_store(r, trailing, req, snapshot));
}

/* Store SNAPSHOT in the log (req->cb set): 0, or -errno (no callback). */
static int snapshot_store(struct rio *r, unsigned trailing, struct raft_io_snapshot_put *req,
                          const struct raft_snapshot *snapshot)
{
    struct rsnap *s = calloc(1, sizeof(*s));
    if (!s) return -ENOMEM;
    s->put = req;
    int rc = raftlog_snapshot_put(r->log, &s->lr, trailing, snapshot, on_snapshot_done);
    if (rc < 0) {
        free(s);
        return rc;
    }
    return 0;
}

static int rio_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
                            raft_io_snapshot_get_cb cb)
{
    struct rio *r = io->impl;
    struct rsnap *s = calloc(1, sizeof(*s));
    if (!s) return RAFT_NOMEM;
    s->get = req;
    req->cb = cb;
    int rc = raftlog_snapshot_get(r->log, &s->lr, on_snapshot_done);
    if (rc < 0) {
        free(s);
        return to_raft_err(rc);
    }
    return 0;
}

static raft_time rio_time(struct raft_io *io)
{
    (void)io;
    return util_mono_ms();
}

static int rio_random(struct raft_io *io, int min, int max)
{
    struct rio *r = io->impl;
    if (max <= min) return min;
    return min + (int)(util_rand64(&r->rand) % (uint64_t)(max - min));
}

/* ---- async work and close --------------------------------------------------------------- */

static void work_run(struct taskq_job *job)
{
    struct rwork *w = bd_container_of(job, struct rwork, job);
    w->status = w->req->work(w->req);
}

static void work_done(struct reactor_work *rw)
{
    struct rwork *w = bd_container_of(rw, struct rwork, job.work);
    struct rio *r = w->r;
    struct raft_io_async_work *req = w->req;
    int status = w->status;
    free(w);
    r->work_running--;
    req->cb(req, status);
    maybe_closed(r);
}

static int rio_async_work(struct raft_io *io, struct raft_io_async_work *req,
                          raft_io_async_work_cb cb)
{
    struct rio *r = io->impl;
    if (r->closing) return RAFT_CANCELED;
    struct rwork *w = calloc(1, sizeof(*w));
    if (!w) return RAFT_NOMEM;
    w->r = r;
    w->req = req;
    req->cb = cb;
    w->job.run = work_run;
    w->job.work.done = work_done;
    r->work_running++;
    taskq_submit(r->workq, &w->job);
    return 0;
}

static void maybe_closed(struct rio *r)
{
    if (!r->closing || !r->log_closed || r->work_running || !r->close_cb) return;
    /* Links first: a stream's PINGs fail as its link goes, which queues
     * its send callback; then every send callback, then close's. */
    for (unsigned i = 0; i < r->n_peers; i++) {
        struct link *l = r->peers[i].link;
        r->peers[i].link = NULL;
        link_free(l);
        rasm_reset(&r->peers[i].rasm);
    }
    on_done_ev(-1, 0, r);
    raft_io_close_cb cb = r->close_cb;
    r->close_cb = NULL;
    cb(&r->io);
}

static void on_log_closed(void *arg)
{
    struct rio *r = arg;
    r->log_closed = true;
    maybe_closed(r);
}

static void rio_close(struct raft_io *io, raft_io_close_cb cb)
{
    struct rio *r = io->impl;
    r->closing = true;
    r->close_cb = cb;
    event_del(r->tick_ev);
    raftlog_close(r->log, on_log_closed, r); /* calls back from the reactor, later */
}

/* ---- lifetime ------------------------------------------------------------------------------ */

int rio_new(struct reactor *rx, const struct rio_opts *o, struct rio **out, char *err,
            size_t errlen)
{
    *out = NULL;
    if (!o->link_opts || !o->link_opts->auth || o->id == 0 || o->n_peers > RIO_MAX_PEERS) {
        snprintf(err, errlen, "rio: bad options");
        return -EINVAL;
    }
    struct rio *r = calloc(1, sizeof(*r));
    if (!r) return -ENOMEM;
    r->rx = rx;
    r->id = o->id;
    r->cluster_hash = o->link_opts->auth->cluster_hash;
    r->link_opts = *o->link_opts;
    r->max_msg = o->max_msg_bytes ? o->max_msg_bytes : RIO_MAX_MSG_DEFAULT;
    r->max_snap = o->max_snapshot_bytes ? o->max_snapshot_bytes : RIO_MAX_SNAPSHOT_DEFAULT;
    r->tag = o->tag ? o->tag : "rio";
    r->rand = util_seed() ^ o->id;
    r->install = o->install;
    r->fio = o->fio;
    snapmem_heap_install(); /* before libraft and our threads run (snapmem.h) */
    if (util_strlcpy(r->dir, o->dir, sizeof(r->dir)) >= sizeof(r->dir)) {
        snprintf(err, errlen, "rio: directory name too long");
        free(r);
        return -ENAMETOOLONG;
    }
    r->install_arg = o->install_arg;
    raftfix_init(&r->fix);
    int rc = 0;
    for (unsigned i = 0; i < o->n_peers && rc == 0; i++)
        rc = rio_add_peer(r, o->peers[i].id, o->peers[i].addr);
    if (rc < 0) {
        snprintf(err, errlen, "rio: bad or duplicate peer");
        free(r);
        return -EINVAL;
    }
    struct raftlog_opts lo = {.fio = o->fio, .segment_bytes = o->segment_bytes,
                              .cluster_hash = r->cluster_hash, .node_id = o->id, .tag = r->tag};
    rc = raftlog_open(rx, o->dir, &lo, &r->log, err, errlen);
    if (rc < 0) {
        free(r);
        return rc;
    }
    r->workq = taskq_new(rx, "rio-work");
    r->tick_ev = event_new(reactor_base(rx), -1, EV_PERSIST, on_tick, r);
    r->done_ev = event_new(reactor_base(rx), -1, 0, on_done_ev, r);
    if (!r->workq || !r->tick_ev || !r->done_ev) {
        snprintf(err, errlen, "rio: out of memory");
        rio_free(r);
        return -ENOMEM;
    }
    struct raft_io *io = &r->io;
    io->version = 2;
    io->impl = r;
    io->init = rio_init;
    io->close = rio_close;
    io->load = rio_load;
    io->start = rio_start;
    io->bootstrap = rio_bootstrap;
    io->recover = rio_recover;
    io->set_term = rio_set_term;
    io->set_vote = rio_set_vote;
    io->send = rio_send;
    io->append = rio_append;
    io->truncate = rio_truncate;
    io->snapshot_put = rio_snapshot_put;
    io->snapshot_get = rio_snapshot_get;
    io->time = rio_time;
    io->random = rio_random;
    io->async_work = rio_async_work;
    *out = r;
    return 0;
}

struct raft_io *rio_io(struct rio *r)
{
    return &r->io;
}

bool rio_pristine(struct rio *r)
{
    return raftlog_pristine(r->log);
}

bool rio_stopped(struct rio *r)
{
    return raftfix_stopped(&r->fix);
}

void rio_get_stats(struct rio *r, struct rio_stats *out)
{
    *out = r->st;
    out->fix = r->fix.st;
}

void rio_get_log_stats(struct rio *r, struct raftlog_stats *out)
{
    raftlog_get_stats(r->log, out);
}

void rio_free(struct rio *r)
{
    if (!r) return;
    for (unsigned i = 0; i < r->n_peers; i++) {
        struct link *l = r->peers[i].link;
        r->peers[i].link = NULL;
        link_free(l); /* a stream still going fails and queues its callback */
        rasm_reset(&r->peers[i].rasm);
    }
    struct rsend *s = r->done_head;
    while (s) {
        struct rsend *next = s->next;
        free(s);
        s = next;
    }
    if (r->tick_ev) event_free(r->tick_ev);
    if (r->done_ev) event_free(r->done_ev);
    taskq_free(r->workq);
    raftlog_free(r->log);
    free(r);
}
