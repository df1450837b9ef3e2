/* blob.c: the blob server role (see blob.h).
 *
 * This file only translates: wire frames into blob store calls and back,
 * store statistics into heartbeats, /v1/status and /metrics.  Every
 * decision about bytes on disk is the store's.
 *
 * A request, happy path:  conn on_request -> decode the fields (malformed:
 * EINVAL reply, the connection stays) -> blobstore_* -> its callback ->
 * conn_reply -> free.  PUT takes the frame body from the conn
 * (conn_frame_take) so the payload goes to the writer thread and into
 * pwritev without a copy; GET hands the store's read buffer to the conn as
 * a payload with a release callback, again without a copy.  Every request
 * is answered exactly once (conn.h), also when its connection closed
 * meanwhile.
 *
 * Failure modes: malformed frames and bad headers are the conn's (close);
 * malformed fields get EINVAL; a store error becomes its wire status
 * (wire_status_from_err: ECSUM, EFENCED, EIMMUTABLE, ENOSPC, EIO, ...);
 * requests after stop began get ESHUTDOWN.
 *
 * Stop: listener closed, heartbeats and links stopped, admin closed, then
 * blobstore_close() waits for queued writes and reads; once their replies
 * are queued we give the sockets DRAIN_MS to flush them, close every
 * connection, and report done. */
#include "roles/blob/blob.h"
#include "roles/blob/blob_pull.h"
#include "base/bd.h"
#include "base/turnq.h"
#include "runtime/log.h"
#include "net/admin.h"
#include "net/conn.h"
#include "net/link.h"
#include "net/listener.h"
#include "net/tls.h"
#include "runtime/metrics.h"
#include "net/wire.h"
#include "store/blob/blobstore.h"
#include "store/fileio.h"
#include "base/util.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define DRAIN_MS 200
#define CAPACITY_REFRESH_MS 10000
#define LIST_MAX ((WIRE_MAX_FIELDS - 12) / WIRE_BLOB_ENTRY_LEN)
#define STATUS_BAD_MAX 100

enum op { OP_PUT, OP_GET, OP_DELETE, OP_STAT, OP_LIST, OP_REPORT, OP_N };
static const char *const op_names[OP_N] = {"put", "get", "delete", "stat", "list", "report"};

struct blob_srv;

struct srv_conn {                 /* one accepted connection */
    struct blob_srv *s;
    struct conn *c;
    uint64_t serial;              /* its flow in s->turns (base/turnq.h) */
    struct srv_conn *prev, *next;
};

struct heartbeat {                /* one proxy we announce ourselves to */
    struct blob_srv *s;
    struct link *link;
    struct conn_call call;
    bool busy;                    /* a heartbeat is in flight on it */
    bool learned;                 /* from the leader's answer, not the config file */
};

/* Proxies heartbeated at most: the config file's and those the leader
 * names (the Raft group grows and shrinks: proxy add / remove). */
#define BLOB_HB_MAX 16

struct blob_srv {
    struct role *r;
    struct reactor *rx;
    const struct cfg *top;
    const struct cfg_blob *cfg;   /* borrowed from the config, which outlives us */
    char labels[64];
    struct tls_ctx *tls;          /* NULL with insecure_plaintext */
    struct conn_auth auth;
    struct conn_opts copts;       /* heartbeat links to the proxies */
    struct conn_opts srv_opts;    /* accepted connections */
    struct conn_limits limits;    /* of the wire listener */
    struct listener *lis;
    struct admin *admin;
    struct blobstore *bs;
    struct blob_pull *pull;       /* BLOB_PULL: copies from other blob servers */
    struct fileio *fio;              /* fileio_posix, or a fault wrapper over it */
    struct fileio_faults faults;
    struct heartbeat *hb[BLOB_HB_MAX]; /* each its own allocation: calls point at it */
    unsigned n_hb;
    struct event *hb_timer;
    struct event *drain_timer;
    struct srv_conn *conns;
    unsigned n_conns;
    uint64_t capacity;
    uint64_t capacity_at_ms;
    char host[65];                /* the host label: the config's, or this machine's name */
    bool stopping;
    void (*stop_done)(struct role *r);
    struct metrics_counter *m_req[OP_N], *m_err[OP_N], *m_bytes_in, *m_bytes_out;
    /* Puts take turns between connections (base/turnq.h): two agents
     * writing through different proxies meet only here. */
    struct turnq *turns;
    uint64_t next_serial;
    struct metrics_hist *m_lat[OP_N];
    /* reply buffers (reactor thread only; conn_reply copies fields) */
    uint8_t fields[WIRE_MAX_FIELDS];
    uint8_t packed[LIST_MAX * WIRE_BLOB_ENTRY_LEN];
    struct blobstore_entry entries[LIST_MAX];
    struct wire_bad_blob bad[WIRE_BAD_MAX];
    struct blobstore_bad badl[WIRE_BAD_MAX];
};

/* A request waiting for the store. */
struct blob_req {
    struct blob_srv *s;
    struct conn *c;
    struct wire_hdr hdr;
    uint8_t *body;                /* the taken frame body (PUT) */
    uint64_t t0_ns;
    struct turnq_item turn;       /* PUT: its connection's turn */
    enum op op;
    union {
        struct blobstore_put put;
        struct blobstore_get get;
        struct blobstore_delete del;
    } u;
};

/* ---- helpers ------------------------------------------------------------------------ */

static uint64_t capacity(struct blob_srv *s)
{
    if (s->cfg->capacity_bytes) return s->cfg->capacity_bytes;
    uint64_t now = util_mono_ms();
    if (!s->capacity || now - s->capacity_at_ms > CAPACITY_REFRESH_MS) {
        struct statvfs sv;
        if (statvfs(s->cfg->data_dir, &sv) == 0)
            s->capacity = (uint64_t)sv.f_blocks * (uint64_t)sv.f_frsize;
        s->capacity_at_ms = now;
    }
    return s->capacity;
}

static bool read_only(struct blob_srv *s, const struct blobstore_stats *st)
{
    return st->failed || st->out_of_space || st->used_bytes >= capacity(s);
}

static void count_done(struct blob_srv *s, enum op op, uint64_t t0_ns, int err)
{
    metric_inc(s->m_req[op]);
    if (err < 0) metric_inc(s->m_err[op]);
    metrics_observe_us(s->m_lat[op], (util_mono_ns() - t0_ns) / 1000);
}

static void reply_err(struct blob_srv *s, struct conn *c, const struct wire_hdr *h, enum op op,
                      uint64_t t0, int err, const char *what)
{
    count_done(s, op, t0, err);
    conn_reply_error(c, h, err, 0, "%s: %s", what, bd_strerror(err));
}

static struct blob_req *req_new(struct blob_srv *s, struct conn *c, const struct wire_hdr *h,
                                enum op op, uint64_t t0)
{
    struct blob_req *q = calloc(1, sizeof(*q));
    if (!q) return NULL;
    q->s = s;
    q->c = c;
    q->hdr = *h;
    q->op = op;
    q->t0_ns = t0;
    return q;
}

static void req_free(struct blob_req *q)
{
    free(q->body);
    free(q);
}

/* ---- BLOB_PUT ------------------------------------------------------------------------ */

static void reply_put(struct blob_srv *s, struct conn *c, const struct wire_hdr *h, uint64_t t0,
                      uint32_t stored_len)
{
    struct wire_blob_put_resp r = {.stored_len = stored_len};
    int n = wire_encode_blob_put_resp(s->fields, sizeof(s->fields), &r);
    count_done(s, OP_PUT, t0, 0);
    conn_reply(c, h, s->fields, (size_t)n, NULL);
}

static void put_finished(struct blob_req *q);

static void on_put_done(struct blobstore_put *p, int err)
{
    struct blob_req *q = bd_container_of(p, struct blob_req, u.put);
    /* The blob id is what the proxy's "put" line names (log.h). */
    struct log_ids ids = {.blob = p->blob_id};
    log_debug_ids(q->s->r->tag, &ids, "put %u bytes in partition %u: %s", p->len, p->partition,
                  err < 0 ? bd_strerror(err) : "durable");
    if (err < 0) reply_err(q->s, q->c, &q->hdr, OP_PUT, q->t0_ns, err, "put");
    else reply_put(q->s, q->c, &q->hdr, q->t0_ns, p->stored_len);
    put_finished(q);
}

/* A put is done, answered: free it, then give its bytes back to the turns
 * (which may start the next put, and that may finish before this returns). */
static void put_finished(struct blob_req *q)
{
    struct blob_srv *s = q->s;
    struct turnq_item turn = q->turn;
    req_free(q);
    turnq_done(s->turns, &turn);
}

/* Its connection's turn came: hand the put to the store. */
static void put_turn(struct turnq_item *it)
{
    struct blob_req *q = bd_container_of(it, struct blob_req, turn);
    struct blob_srv *s = q->s;
    int rc = blobstore_put(s->bs, &q->u.put);
    if (rc == 0) return;
    if (rc == 1) { /* already stored, same bytes */
        struct blobstore_stat st;
        reply_put(s, q->c, &q->hdr, q->t0_ns,
                  blobstore_stat(s->bs, q->u.put.blob_id, &st) == 0 ? st.stored_len
                                                                    : q->u.put.len);
    } else {
        reply_err(s, q->c, &q->hdr, OP_PUT, q->t0_ns, rc, "put");
    }
    put_finished(q);
}

/* The server stops before the put's turn came: nothing was stored. */
static void put_turn_fail(struct turnq_item *it, int err)
{
    struct blob_req *q = bd_container_of(it, struct blob_req, turn);
    reply_err(q->s, q->c, &q->hdr, OP_PUT, q->t0_ns, err, "put");
    req_free(q); /* never started: nothing to give back */
}

static void handle_put(struct blob_srv *s, struct srv_conn *sc, struct conn_frame *f, uint64_t t0)
{
    struct conn *c = sc->c;
    struct wire_blob_put_req m;
    if (wire_decode_blob_put_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
        reply_err(s, c, &f->hdr, OP_PUT, t0, -EINVAL, "malformed BLOB_PUT");
        return;
    }
    if (m.data_len > s->cfg->max_blob_bytes) {
        reply_err(s, c, &f->hdr, OP_PUT, t0, -EINVAL, "blob larger than max_blob_bytes");
        return;
    }
    struct blob_req *q = req_new(s, c, &f->hdr, OP_PUT, t0);
    if (!q) {
        reply_err(s, c, &f->hdr, OP_PUT, t0, -ENOMEM, "put");
        return;
    }
    metric_add(s->m_bytes_in, m.data_len);
    q->body = conn_frame_take(f); /* m.data points into it */
    q->u.put = (struct blobstore_put){
        .blob_id = m.blob_id, .partition = m.partition,
        .flags = (m.flags & WIRE_PUT_COMPRESSIBLE) ? BLOBSTORE_PUT_COMPRESSIBLE : 0,
        .epoch = m.epoch, .csum = m.csum, .data = m.data, .len = m.data_len,
        .cb = on_put_done};
    q->turn = (struct turnq_item){.cost = m.data_len, .start = put_turn, .fail = put_turn_fail};
    turnq_submit(s->turns, sc->serial, &q->turn);
}

/* ---- BLOB_GET ------------------------------------------------------------------------ */

static void release_buf(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    free(arg);
}

static void on_get_done(struct blobstore_get *g, int err)
{
    struct blob_req *q = bd_container_of(g, struct blob_req, u.get);
    struct blob_srv *s = q->s;
    if (err < 0) {
        reply_err(s, q->c, &q->hdr, OP_GET, q->t0_ns, err, "get");
    } else {
        struct wire_blob_get_resp r = {.csum = g->csum, .blob_len = g->blob_len,
                                       .data_len = g->data_len};
        int n = wire_encode_blob_get_resp(s->fields, sizeof(s->fields), &r);
        struct conn_payload p = {.data = g->data, .len = g->data_len, .release = release_buf,
                                 .arg = g->buf};
        metric_add(s->m_bytes_out, g->data_len);
        count_done(s, OP_GET, q->t0_ns, 0);
        if (g->data_len) {
            conn_reply(q->c, &q->hdr, s->fields, (size_t)n, &p); /* p.release frees g->buf */
        } else { /* conn sends no empty payload, so it would never release it */
            free(g->buf);
            conn_reply(q->c, &q->hdr, s->fields, (size_t)n, NULL);
        }
    }
    req_free(q);
}

static void handle_get(struct blob_srv *s, struct conn *c, struct conn_frame *f, uint64_t t0)
{
    struct wire_blob_get_req m;
    if (wire_decode_blob_get_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
        reply_err(s, c, &f->hdr, OP_GET, t0, -EINVAL, "malformed BLOB_GET");
        return;
    }
    struct blob_req *q = req_new(s, c, &f->hdr, OP_GET, t0);
    if (!q) {
        reply_err(s, c, &f->hdr, OP_GET, t0, -ENOMEM, "get");
        return;
    }
    q->u.get = (struct blobstore_get){.blob_id = m.blob_id, .partition = m.partition,
                                      .off = m.off, .len = m.len, .cb = on_get_done};
    int rc = blobstore_get(s->bs, &q->u.get);
    if (rc == 0) return;
    reply_err(s, c, &q->hdr, OP_GET, t0, rc, "get");
    req_free(q);
}

/* ---- BLOB_DELETE ------------------------------------------------------------------------ */

static void on_delete_done(struct blobstore_delete *d, int err)
{
    struct blob_req *q = bd_container_of(d, struct blob_req, u.del);
    if (err < 0) {
        reply_err(q->s, q->c, &q->hdr, OP_DELETE, q->t0_ns, err, "delete");
    } else {
        count_done(q->s, OP_DELETE, q->t0_ns, 0);
        conn_reply(q->c, &q->hdr, NULL, 0, NULL);
    }
    req_free(q);
}

static void handle_delete(struct blob_srv *s, struct conn *c, struct conn_frame *f, uint64_t t0)
{
    struct wire_blob_delete_req m;
    if (wire_decode_blob_delete_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0 ||
        m.blob_id == 0) {
        reply_err(s, c, &f->hdr, OP_DELETE, t0, -EINVAL, "malformed BLOB_DELETE");
        return;
    }
    struct blob_req *q = req_new(s, c, &f->hdr, OP_DELETE, t0);
    if (!q) {
        reply_err(s, c, &f->hdr, OP_DELETE, t0, -ENOMEM, "delete");
        return;
    }
    q->u.del = (struct blobstore_delete){.blob_id = m.blob_id, .partition = m.partition,
                                         .cb = on_delete_done};
    int rc = blobstore_delete(s->bs, &q->u.del);
    if (rc == 0) return;
    if (rc == 1) {
        count_done(s, OP_DELETE, t0, 0);
        conn_reply(c, &q->hdr, NULL, 0, NULL);
    } else {
        reply_err(s, c, &q->hdr, OP_DELETE, t0, rc, "delete");
    }
    req_free(q);
}

/* ---- BLOB_STAT, BLOB_LIST, BLOB_REPORT (answered at once) -------------------------------- */

static void handle_stat(struct blob_srv *s, struct conn *c, struct conn_frame *f, uint64_t t0)
{
    struct wire_blob_stat_req m;
    if (wire_decode_blob_stat_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
        reply_err(s, c, &f->hdr, OP_STAT, t0, -EINVAL, "malformed BLOB_STAT");
        return;
    }
    struct blobstore_stat st;
    int rc = blobstore_stat(s->bs, m.blob_id, &st);
    if (rc < 0) {
        reply_err(s, c, &f->hdr, OP_STAT, t0, rc, "stat");
        return;
    }
    struct wire_blob_stat_resp r = {.blob_id = m.blob_id, .partition = st.partition,
                                    .flags = st.flags, .len = st.len,
                                    .stored_len = st.stored_len, .csum = st.csum};
    int n = wire_encode_blob_stat_resp(s->fields, sizeof(s->fields), &r);
    count_done(s, OP_STAT, t0, 0);
    conn_reply(c, &f->hdr, s->fields, (size_t)n, NULL);
}

static void handle_list(struct blob_srv *s, struct conn *c, struct conn_frame *f, uint64_t t0)
{
    struct wire_blob_list_req m;
    if (wire_decode_blob_list_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
        reply_err(s, c, &f->hdr, OP_LIST, t0, -EINVAL, "malformed BLOB_LIST");
        return;
    }
    uint64_t next = 0;
    uint32_t n = blobstore_list(s->bs, m.partition, m.cursor, BD_MIN(m.max, (uint32_t)LIST_MAX),
                                s->entries, &next);
    struct wire_blob_entry we[64];
    for (uint32_t i = 0; i < n; i += 64) { /* pack in slices: no large stack array */
        uint32_t k = BD_MIN(64u, n - i);
        for (uint32_t j = 0; j < k; j++)
            we[j] = (struct wire_blob_entry){s->entries[i + j].blob_id, s->entries[i + j].len,
                                             s->entries[i + j].csum};
        wire_blob_list_pack(s->packed + (size_t)i * WIRE_BLOB_ENTRY_LEN, we, k);
    }
    struct wire_blob_list_resp r = {.next_cursor = next, .n = n, .entries = s->packed};
    int len = wire_encode_blob_list_resp(s->fields, sizeof(s->fields), &r);
    if (len < 0) {
        reply_err(s, c, &f->hdr, OP_LIST, t0, len, "list");
        return;
    }
    count_done(s, OP_LIST, t0, 0);
    conn_reply(c, &f->hdr, s->fields, (size_t)len, NULL);
}

static void handle_report(struct blob_srv *s, struct conn *c, struct conn_frame *f, uint64_t t0)
{
    struct wire_blob_report_req m;
    if (wire_decode_blob_report_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
        reply_err(s, c, &f->hdr, OP_REPORT, t0, -EINVAL, "malformed BLOB_REPORT");
        return;
    }
    struct blobstore_stats st;
    blobstore_get_stats(s->bs, &st);
    uint32_t n = blobstore_bad_list(s->bs, s->badl, WIRE_BAD_MAX);
    for (uint32_t i = 0; i < n; i++)
        s->bad[i] = (struct wire_bad_blob){s->badl[i].blob_id, s->badl[i].partition};
    struct wire_blob_report_resp r = {
        .node_id = s->cfg->id, .capacity = capacity(s), .used = st.used_bytes,
        .live_bytes = st.live_bytes, .dead_bytes = st.dead_bytes, .blobs = st.blobs,
        .bad_blobs = st.bad_blobs, .scrub_passes = st.scrub_passes, .n_bad = n,
        .bad_in = s->bad};
    int len = wire_encode_blob_report_resp(s->fields, sizeof(s->fields), &r);
    if (len < 0) {
        reply_err(s, c, &f->hdr, OP_REPORT, t0, len, "report");
        return;
    }
    count_done(s, OP_REPORT, t0, 0);
    conn_reply(c, &f->hdr, s->fields, (size_t)len, NULL);
}

/* ---- connections ----------------------------------------------------------------------- */

static void srv_on_request(struct conn *c, struct conn_frame *f, void *arg)
{
    struct srv_conn *sc = arg;
    struct blob_srv *s = sc->s;
    uint64_t t0 = util_mono_ns();
    if (f->hdr.flags & WIRE_F_ONEWAY) {
        log_debug(s->r->tag, "wire %s: ignoring oneway %s", conn_peer(c),
                  wire_type_name(f->hdr.type));
        return;
    }
    if (s->stopping) {
        conn_reply_error(c, &f->hdr, -ESHUTDOWN, 0, "blob server is stopping");
        return;
    }
    /* Who may do what: proxies (and operator tools) everything; agents
     * (map leases, DESIGN §4) and blob servers pulling a replica only
     * read; the HELLO check refused others. */
    bool read_only = f->hdr.type == WIRE_BLOB_GET || f->hdr.type == WIRE_BLOB_STAT;
    uint16_t role = conn_peer_role(c);
    if (!read_only && (role == WIRE_ROLE_AGENT || role == WIRE_ROLE_BLOB)) {
        conn_reply_error(c, &f->hdr, -EPERM, 0,
                         role == WIRE_ROLE_AGENT ? "agents may only read blobs"
                                                 : "blob servers may only read blobs");
        return;
    }
    switch (f->hdr.type) {
    case WIRE_BLOB_PUT: handle_put(s, sc, f, t0); break;
    case WIRE_BLOB_GET: handle_get(s, c, f, t0); break;
    case WIRE_BLOB_DELETE: handle_delete(s, c, f, t0); break;
    case WIRE_BLOB_STAT: handle_stat(s, c, f, t0); break;
    case WIRE_BLOB_LIST: handle_list(s, c, f, t0); break;
    case WIRE_BLOB_REPORT: handle_report(s, c, f, t0); break;
    case WIRE_BLOB_PULL: blob_pull_handle(s->pull, c, f); break;
    default:
        conn_reply_error(c, &f->hdr, -ENOTSUP, 0, "a blob server does not serve %s",
                         wire_type_name(f->hdr.type));
        break;
    }
}

static void srv_on_close(struct conn *c, int err, void *arg)
{
    (void)c;
    struct srv_conn *sc = arg;
    struct blob_srv *s = sc->s;
    log_debug(s->r->tag, "wire %s closed: %s", conn_peer(c), bd_strerror(err));
    if (sc->prev) sc->prev->next = sc->next;
    else s->conns = sc->next;
    if (sc->next) sc->next->prev = sc->prev;
    s->n_conns--;
    free(sc);
}

/* Proxies and operator tools (ctl certificates) write and read; agents
 * read; another blob server reads (BLOB_PULL: it copies a replica from
 * this one, blob_pull.c). */
static int srv_on_hello(struct conn *c, const struct wire_hello_req *h, void *arg)
{
    (void)h;
    struct srv_conn *sc = arg;
    uint16_t role = conn_peer_role(c);
    if (role == WIRE_ROLE_PROXY || role == WIRE_ROLE_CTL || role == WIRE_ROLE_AGENT ||
        role == WIRE_ROLE_BLOB)
        return 0;
    log_warn(sc->s->r->tag, "wire %s: refused: a %s may not talk to a blob server", conn_peer(c),
             role == WIRE_ROLE_BLOB ? "blob server" : "peer of unknown role");
    return -EACCES;
}

static const struct conn_ops srv_conn_ops = {
    .on_request = srv_on_request, .on_hello = srv_on_hello, .on_close = srv_on_close};

static void on_accept(int fd, void *arg)
{
    struct blob_srv *s = arg;
    struct srv_conn *sc = calloc(1, sizeof(*sc));
    if (!sc) {
        close(fd);
        return;
    }
    sc->s = s;
    sc->serial = ++s->next_serial;
    sc->c = conn_accept(s->rx, fd, &srv_conn_ops, sc, &s->srv_opts);
    if (!sc->c) {
        free(sc);
        return;
    }
    sc->next = s->conns;
    if (s->conns) s->conns->prev = sc;
    s->conns = sc;
    s->n_conns++;
}

/* ---- heartbeats ---------------------------------------------------------------------------- */

/* The host label when the config sets none: this machine's name, in the
 * label alphabet (other bytes become '-'), so the blob servers of one
 * machine share the host failure domain (proxy_plan.h). */
static void default_host(char *out, size_t len)
{
    char name[256] = "";
    if (gethostname(name, sizeof(name) - 1) < 0 || !name[0]) util_strlcpy(name, "localhost", sizeof(name));
    size_t n = 0;
    for (const char *c = name; *c && n + 1 < len && n < WIRE_LABEL_MAX; c++, n++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                  *c == '.' || *c == '_' || *c == '-';
        out[n] = ok ? *c : '-';
    }
    out[n] = 0;
}

static const struct link_ops hb_link_ops = {0};

static bool hb_add(struct blob_srv *s, const char *addr, bool learned)
{
    if (s->n_hb == BLOB_HB_MAX) return false;
    struct heartbeat *hb = calloc(1, sizeof(*hb));
    if (!hb) return false;
    hb->s = s;
    hb->learned = learned;
    hb->link = link_new(s->rx, addr, &s->copts, &hb_link_ops, hb);
    if (!hb->link) {
        free(hb);
        return false;
    }
    s->hb[s->n_hb++] = hb;
    return true;
}

/* Free entry I (its call, if any, fails inside link_free). */
static void hb_remove(struct blob_srv *s, unsigned i)
{
    struct heartbeat *hb = s->hb[i];
    s->hb[i] = s->hb[--s->n_hb];
    link_free(hb->link);
    free(hb);
}

/* The leader named the group's proxies (comma-separated LIST): heartbeat
 * to each, and stop with learned ones it no longer names (the config
 * file's stay: they may come back). */
static void hb_follow(struct blob_srv *s, struct wire_str list)
{
    char buf[BLOB_HB_MAX * (CFG_ADDR_MAX + 1)];
    if (!list.len || !wire_str_copy(list, buf, sizeof(buf))) return;
    char *names[BLOB_HB_MAX];
    unsigned n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && n < BLOB_HB_MAX;
         t = strtok_r(NULL, ",", &save))
        names[n++] = t;
    for (unsigned k = 0; k < n; k++) {
        bool have = false;
        for (unsigned i = 0; i < s->n_hb && !have; i++)
            have = strcmp(link_addr(s->hb[i]->link), names[k]) == 0;
        struct sockaddr_storage ss;
        socklen_t len;
        if (!have && util_parse_addr(names[k], &ss, &len) == 0 && hb_add(s, names[k], true))
            log_info(s->r->tag, "heartbeats to %s too: a proxy of the Raft group", names[k]);
    }
    for (unsigned i = 0; i < s->n_hb;) {
        bool named = false;
        for (unsigned k = 0; k < n && !named; k++)
            named = strcmp(link_addr(s->hb[i]->link), names[k]) == 0;
        if (s->hb[i]->learned && !named) {
            log_info(s->r->tag, "no more heartbeats to %s: it left the Raft group",
                     link_addr(s->hb[i]->link));
            hb_remove(s, i);
        } else {
            i++;
        }
    }
}

static void on_hb_resp(struct conn_call *call, int err, struct conn_frame *f)
{
    struct heartbeat *hb = call->data;
    hb->busy = false;
    if (err < 0) {
        log_debug(hb->s->r->tag, "heartbeat to %s: %s", link_addr(hb->link), bd_strerror(err));
        return;
    }
    struct wire_node_heartbeat_resp r;
    if (wire_decode_node_heartbeat_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) == 0) {
        log_debug(hb->s->r->tag, "heartbeat to %s: leader %llu", link_addr(hb->link),
                  (unsigned long long)r.leader_id);
        /* The leader's word only: a removed proxy may still answer. */
        if (r.leader_id && r.leader_id == link_peer_id(hb->link)) hb_follow(hb->s, r.proxies);
    }
}

static void on_hb_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct blob_srv *s = arg;
    turnq_sweep(s->turns); /* flows of connections idle for a second */
    struct blobstore_stats st;
    blobstore_get_stats(s->bs, &st);
    struct wire_node_heartbeat_req m = {
        .node_id = s->cfg->id, .addr = wire_cstr(s->cfg->listen), .capacity = capacity(s),
        .used = st.used_bytes, .blobs = st.blobs, .n_bad = (uint32_t)BD_MIN(st.bad_blobs, UINT32_MAX),
        .flags = read_only(s, &st) ? 1u : 0u, .zone = wire_cstr(s->cfg->zone),
        .rack = wire_cstr(s->cfg->rack), .host = wire_cstr(s->host)};
    uint8_t buf[256];
    int n = wire_encode_node_heartbeat_req(buf, sizeof(buf), &m);
    if (s->pull) blob_pull_tick(s->pull);
    if (n < 0) return;
    for (unsigned i = 0; i < s->n_hb; i++) {
        struct heartbeat *hb = s->hb[i];
        if (hb->busy || !link_is_up(hb->link)) continue;
        hb->call.cb = on_hb_resp;
        hb->call.data = hb;
        uint32_t timeout = (uint32_t)BD_MAX(2 * s->cfg->heartbeat_ms, 1000u);
        if (link_call(hb->link, &hb->call, WIRE_NODE_HEARTBEAT, buf, (size_t)n, NULL, timeout) == 0)
            hb->busy = true;
    }
}

/* ---- admin ------------------------------------------------------------------------------- */

static void on_status(struct admin_req *ar, void *arg)
{
    struct blob_srv *s = arg;
    struct blobstore_stats st;
    blobstore_get_stats(s->bs, &st);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "role", "blob");
    cJSON_AddNumberToObject(o, "id", (double)s->cfg->id);
    cJSON_AddStringToObject(o, "listen", s->cfg->listen);
    cJSON_AddStringToObject(o, "zone", s->cfg->zone);
    cJSON_AddStringToObject(o, "rack", s->cfg->rack);
    cJSON_AddStringToObject(o, "host", s->host);
    if (s->pull) {
        uint64_t pb, pbytes, pfail;
        blob_pull_stats(s->pull, &pb, &pbytes, &pfail);
        cJSON *pj = cJSON_AddObjectToObject(o, "pulls");
        cJSON_AddNumberToObject(pj, "blobs", (double)pb);
        cJSON_AddNumberToObject(pj, "bytes", (double)pbytes);
        cJSON_AddNumberToObject(pj, "failed", (double)pfail);
    }
    cJSON_AddNumberToObject(o, "capacity", (double)capacity(s));
    cJSON_AddNumberToObject(o, "used", (double)st.used_bytes);
    cJSON_AddNumberToObject(o, "live_bytes", (double)st.live_bytes);
    cJSON_AddNumberToObject(o, "dead_bytes", (double)st.dead_bytes);
    cJSON_AddNumberToObject(o, "blobs", (double)st.blobs);
    cJSON_AddNumberToObject(o, "bad_blobs", (double)st.bad_blobs);
    cJSON *bad = cJSON_AddArrayToObject(o, "bad");
    uint32_t n = blobstore_bad_list(s->bs, s->badl, STATUS_BAD_MAX);
    for (uint32_t i = 0; i < n; i++) {
        cJSON *b = cJSON_CreateObject();
        cJSON_AddNumberToObject(b, "blob_id", (double)s->badl[i].blob_id);
        cJSON_AddNumberToObject(b, "partition", s->badl[i].partition);
        cJSON_AddItemToArray(bad, b);
    }
    cJSON_AddNumberToObject(o, "partitions", st.partitions);
    cJSON_AddNumberToObject(o, "segments", st.segments);
    cJSON_AddBoolToObject(o, "failed", st.failed);
    if (st.failed) cJSON_AddStringToObject(o, "failed_reason", bd_strerror(st.failed_err));
    else cJSON_AddNullToObject(o, "failed_reason");
    cJSON_AddBoolToObject(o, "out_of_space", st.out_of_space);
    cJSON_AddBoolToObject(o, "read_only", read_only(s, &st));
    cJSON *sc = cJSON_AddObjectToObject(o, "scrub");
    cJSON_AddNumberToObject(sc, "bytes_per_sec", (double)s->cfg->scrub_bytes_per_sec);
    cJSON_AddNumberToObject(sc, "progress", st.scrub_progress);
    cJSON_AddNumberToObject(sc, "passes", (double)st.scrub_passes);
    cJSON_AddNumberToObject(sc, "bytes", (double)st.scrub_bytes);
    if (st.scrub_last_pass_ms)
        cJSON_AddNumberToObject(sc, "last_pass_unix_ms", (double)st.scrub_last_pass_ms);
    else cJSON_AddNullToObject(sc, "last_pass_unix_ms");
    cJSON *cp = cJSON_AddObjectToObject(o, "compaction");
    cJSON_AddNumberToObject(cp, "segments", (double)st.compactions);
    cJSON_AddNumberToObject(cp, "bytes_reclaimed", (double)st.compact_reclaimed);
    cJSON *cm = cJSON_AddObjectToObject(o, "commit");
    cJSON_AddNumberToObject(cm, "fsyncs", (double)st.fsyncs);
    cJSON_AddNumberToObject(cm, "batches", (double)st.commit_batches);
    cJSON_AddNumberToObject(cm, "writes", (double)st.commit_writes);
    cJSON_AddNumberToObject(cm, "max_batch", (double)st.max_batch);
    cJSON *rc = cJSON_AddObjectToObject(o, "recovery");
    cJSON_AddNumberToObject(rc, "ms", (double)st.recover_ms);
    cJSON_AddNumberToObject(rc, "records", (double)st.recovered_records);
    cJSON_AddNumberToObject(rc, "damaged_ranges", (double)st.recovered_damaged);
    cJSON *px = cJSON_AddArrayToObject(o, "proxies");
    for (unsigned i = 0; i < s->n_hb; i++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "addr", link_addr(s->hb[i]->link));
        cJSON_AddBoolToObject(p, "up", link_is_up(s->hb[i]->link));
        cJSON_AddItemToArray(px, p);
    }
    cJSON_AddNumberToObject(o, "connections", s->n_conns);
    admin_reply_json(ar, 200, o);
}

/* Gauges read the store at scrape time. */
static struct blobstore_stats gauge_stats(struct blob_srv *s)
{
    struct blobstore_stats st;
    blobstore_get_stats(s->bs, &st);
    return st;
}
static double g_capacity(void *a) { return (double)capacity(a); }
static double g_used(void *a) { return (double)gauge_stats(a).used_bytes; }
static double g_live(void *a) { return (double)gauge_stats(a).live_bytes; }
static double g_dead(void *a) { return (double)gauge_stats(a).dead_bytes; }
static double g_blobs(void *a) { return (double)gauge_stats(a).blobs; }
static double g_bad(void *a) { return (double)gauge_stats(a).bad_blobs; }
static double g_scrub(void *a) { return gauge_stats(a).scrub_progress; }
static double g_failed(void *a) { return gauge_stats(a).failed ? 1 : 0; }
static double g_segments(void *a) { return (double)gauge_stats(a).segments; }
static double g_max_batch(void *a) { return (double)gauge_stats(a).max_batch; }

static struct turnq_stats turn_stats(void *a)
{
    struct turnq_stats st = {0};
    struct blob_srv *s = a;
    if (s->turns) turnq_stats(s->turns, &st);
    return st;
}
static double g_turn_queued(void *a) { return (double)turn_stats(a).queued; }
static double g_turn_in_flight(void *a) { return (double)turn_stats(a).in_flight; }
static double c_turn_waits(void *a) { return (double)turn_stats(a).waits; }
static double c_turn_wait_s(void *a) { return (double)turn_stats(a).wait_us / 1e6; }

static void register_metrics(struct blob_srv *s)
{
    const char *l = s->labels;
    for (int i = 0; i < OP_N; i++) {
        char ol[128];
        snprintf(ol, sizeof(ol), "%s,op=\"%s\"", l, op_names[i]);
        s->m_req[i] = metrics_counter("blockd_blob_requests_total", "Blob requests answered", ol);
        s->m_err[i] = metrics_counter("blockd_blob_request_errors_total",
                                      "Blob requests answered with an error", ol);
        s->m_lat[i] = metrics_hist("blockd_blob_request_seconds", "Blob request latency", ol);
    }
    s->m_bytes_in = metrics_counter("blockd_blob_received_bytes_total", "Blob bytes put", l);
    s->m_bytes_out = metrics_counter("blockd_blob_sent_bytes_total", "Blob bytes returned", l);
    static const struct {
        const char *name, *help;
        double (*fn)(void *);
    } g[] = {
        {"blockd_blob_capacity_bytes", "Advertised capacity", g_capacity},
        {"blockd_blob_used_bytes", "Bytes in segment files", g_used},
        {"blockd_blob_live_bytes", "Record bytes the index references", g_live},
        {"blockd_blob_dead_bytes", "Record bytes waiting for compaction", g_dead},
        {"blockd_blob_blobs", "Live blobs", g_blobs},
        {"blockd_blob_bad_blobs", "Blobs that failed a checksum and await repair", g_bad},
        {"blockd_blob_scrub_progress_ratio", "Progress of the current scrub pass", g_scrub},
        {"blockd_blob_failed", "1 if the store failed stop for writes", g_failed},
        {"blockd_blob_segments", "Segment files", g_segments},
        {"blockd_blob_commit_batch_max", "Largest group-commit batch so far", g_max_batch},
    };
    for (unsigned i = 0; i < BD_ARRAY_SIZE(g); i++) metrics_gauge(g[i].name, g[i].help, l, g[i].fn, s, s);
    metrics_gauge("blockd_blob_put_turn_queued", "Puts waiting their connection's turn", l,
                  g_turn_queued, s, s);
    metrics_gauge("blockd_blob_put_turn_in_flight_bytes",
                  "Bytes of puts handed to the store and not yet answered", l, g_turn_in_flight,
                  s, s);
    metrics_counter_fn("blockd_blob_put_turn_waits_total",
                       "Puts that waited for their connection's turn", l, c_turn_waits, s, s);
    metrics_counter_fn("blockd_blob_put_turn_wait_seconds_total",
                       "Time puts waited for their connection's turn", l, c_turn_wait_s, s, s);
}

/* ---- start and stop --------------------------------------------------------------------------- */

static unsigned blob_instances(const struct cfg *cfg)
{
    return cfg->n_blobs;
}

static void blob_free(struct role *r)
{
    struct blob_srv *s = r->impl;
    if (!s) return;
    if (s->lis) listener_free(s->lis);
    if (s->admin) admin_free(s->admin);
    while (s->n_hb) hb_remove(s, s->n_hb - 1);
    if (s->hb_timer) event_free(s->hb_timer);
    if (s->drain_timer) event_free(s->drain_timer);
    while (s->conns) conn_close(s->conns->c, -ESHUTDOWN); /* on_close unlinks and frees */
    blob_pull_free(s->pull); /* a failed start: nothing in flight */
    blobstore_free(s->bs);
    turnq_free(s->turns); /* after the store: its put callbacks give their turns back */
    if (s->fio != &fileio_posix) fileio_faulty_free(s->fio);
    metrics_remove_owner(s);
    tls_ctx_free(s->tls); /* after every conn: each SSL holds its own reference */
    free(s);
    r->impl = NULL;
}

/* The store keeps one descriptor per segment file: take all the process
 * may have rather than the default soft limit. */
static void raise_fd_limit(const char *tag)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max) return;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        log_warn(tag, "cannot raise the open file limit: %s", bd_strerror(-errno));
}

static int blob_start(struct role *r, struct reactor *rx, const struct cfg *cfg,
                      unsigned instance, char *err, size_t errlen)
{
    const struct cfg_blob *bc = &cfg->blobs[instance];
    snprintf(r->tag, sizeof(r->tag), "blob.%llu", (unsigned long long)bc->id);
    struct blob_srv *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r->impl = s;
    s->r = r;
    s->rx = rx;
    s->top = cfg;
    s->cfg = bc;
    snprintf(s->labels, sizeof(s->labels), "role=\"%s\"", r->tag);
    if (bc->host[0]) util_strlcpy(s->host, bc->host, sizeof(s->host));
    else default_host(s->host, sizeof(s->host));
    raise_fd_limit(r->tag);
    s->fio = &fileio_posix;
    if (bc->fault.fsync_eio_after) {
        s->faults.fsync_eio_after = bc->fault.fsync_eio_after;
        s->fio = fileio_faulty_new(&fileio_posix, &s->faults);
        if (!s->fio) {
            s->fio = &fileio_posix;
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        log_warn(r->tag, "fault injection: fdatasync %llu and later fail with EIO",
                 (unsigned long long)bc->fault.fsync_eio_after);
    }
    struct blobstore_opts o = {
        .dir = bc->data_dir, .fio = s->fio, .rx = rx, .tag = r->tag, .metrics_labels = s->labels,
        .ident = cfg->cluster_id, .segment_bytes = bc->segment_bytes,
        .max_blob_bytes = (uint32_t)bc->max_blob_bytes, .capacity_bytes = bc->capacity_bytes,
        .compress = bc->compression == CFG_COMPRESS_AUTO,
        .compress_min_saving_pct = (unsigned)bc->compress_min_saving_pct,
        .scrub_bytes_per_sec = bc->scrub_bytes_per_sec,
        .compact_live_pct = (unsigned)bc->compact_live_pct,
        .direct_min_bytes = (uint32_t)bc->direct_io_min_bytes,
    };
    int rc = blobstore_open(&o, &s->bs, err, errlen);
    if (rc < 0) goto fail_rc;
    s->turns = turnq_new(bc->put_turn_cap_bytes);
    if (!s->turns) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto fail_rc;
    }
    struct blobstore_stats st;
    blobstore_get_stats(s->bs, &st);
    log_info(r->tag, "recovered %llu blobs (%llu records, %u segments) in %llu ms",
             (unsigned long long)st.blobs, (unsigned long long)st.recovered_records, st.segments,
             (unsigned long long)st.recover_ms);
    if (!cfg->insecure_plaintext) {
        char id[24];
        snprintf(id, sizeof(id), "%llu", (unsigned long long)bc->id);
        struct tls_files tf = {.ca_file = cfg->tls_ca_file, .cert_file = bc->cert_file,
                               .key_file = bc->key_file};
        rc = tls_ctx_for(&tf, cfg->cluster_id, WIRE_ROLE_BLOB, id, &s->tls, err, errlen);
        if (rc < 0) goto fail_rc;
    }
    conn_auth_init(&s->auth, cfg->cluster_id, s->tls, bc->id, WIRE_ROLE_BLOB, r->tag);
    s->copts = (struct conn_opts){.tag = r->tag, .auth = &s->auth, .expect_role = WIRE_ROLE_PROXY};
    s->copts.fault.socket_failure_every = bc->fault.socket_failure_every;
    s->copts.fault.delay_ms = bc->fault.delay_ms;
    s->pull = blob_pull_new(rx, s->bs, &s->copts, r->tag);
    if (!s->pull) goto fail;
    s->limits = (struct conn_limits){.max_conns = (unsigned)bc->max_connections,
                                     .max_unauth = (unsigned)bc->max_handshakes};
    s->srv_opts = s->copts;
    s->srv_opts.expect_role = 0;
    s->srv_opts.limits = &s->limits;
    rc = listener_new(rx, bc->listen, on_accept, s, &s->lis);
    if (rc < 0) {
        snprintf(err, errlen, "listen %s: %s", bc->listen, bd_strerror(rc));
        goto fail_rc;
    }
    if (bc->admin[0]) {
        struct admin_auth aa = {.tls = s->tls, .admin_token = cfg->admin_token,
                                .read_token = cfg->admin_read_token};
        rc = admin_new(rx, bc->admin, r->tag, &aa, &s->admin);
        if (rc < 0) {
            snprintf(err, errlen, "admin %s: %s", bc->admin, bd_strerror(rc));
            goto fail_rc;
        }
        rc = admin_route(s->admin, "GET", "/v1/status", false, on_status, s);
        if (rc < 0) goto fail_rc;
    }
    for (unsigned i = 0; i < bc->n_proxies; i++) {
        if (!hb_add(s, bc->proxies[i], false)) {
            snprintf(err, errlen, "out of memory");
            rc = -ENOMEM;
            goto fail_rc;
        }
    }
    s->hb_timer = event_new(reactor_base(rx), -1, EV_PERSIST, on_hb_timer, s);
    if (!s->hb_timer) {
        rc = -ENOMEM;
        goto fail_rc;
    }
    struct timeval tv = {(time_t)(bc->heartbeat_ms / 1000), (suseconds_t)(bc->heartbeat_ms % 1000) * 1000};
    evtimer_add(s->hb_timer, &tv);
    register_metrics(s);
    log_info(r->tag, "serving blobs on %s (data %s, %s)", bc->listen, bc->data_dir,
             bc->admin[0] ? bc->admin : "no admin");
    return 0;

fail:
    rc = -ENOMEM;
fail_rc:
    if (!err[0]) snprintf(err, errlen, "%s", bd_strerror(rc));
    blob_free(r);
    return rc;
}

static void on_drained(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct blob_srv *s = arg;
    while (s->conns) conn_close(s->conns->c, 0);
    void (*done)(struct role *) = s->stop_done;
    s->stop_done = NULL;
    if (done) done(s->r);
}

static void on_store_closed(void *arg)
{
    struct blob_srv *s = arg;
    s->drain_timer = evtimer_new(reactor_base(s->rx), on_drained, s);
    struct timeval tv = {0, DRAIN_MS * 1000};
    if (!s->drain_timer || evtimer_add(s->drain_timer, &tv) < 0) on_drained(-1, 0, s);
}

static void blob_stop(struct role *r, void (*done)(struct role *r))
{
    struct blob_srv *s = r->impl;
    s->stopping = true;
    s->stop_done = done;
    if (s->lis) listener_free(s->lis);
    s->lis = NULL;
    if (s->hb_timer) evtimer_del(s->hb_timer);
    while (s->n_hb) hb_remove(s, s->n_hb - 1);
    if (s->admin) admin_free(s->admin);
    s->admin = NULL;
    /* Pulls first: their puts are the store's to finish. */
    blob_pull_free(s->pull);
    s->pull = NULL;
    turnq_stop(s->turns, -ESHUTDOWN); /* puts still waiting their turn: never stored */
    blobstore_close(s->bs, on_store_closed, s);
}

/* Ready (role.h) as soon as it started: blob_start recovers every segment
 * and binds the listener before it returns, so a started blob server
 * serves.  Registration with the proxies follows on its own (heartbeats);
 * whether its partitions have their three replicas back is the cluster's
 * view (/v1/cluster on a proxy), not this process's. */
static bool blob_ready(struct role *r, char *why, size_t whylen)
{
    (void)r;
    (void)why;
    (void)whylen;
    return true;
}

const struct role_ops blob_role_ops = {
    .name = "blob",
    .instances = blob_instances,
    .start = blob_start,
    .stop = blob_stop,
    .free = blob_free,
    .ready = blob_ready,
};
