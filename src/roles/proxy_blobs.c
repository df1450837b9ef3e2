/* proxy_blobs.c: blob server liveness and replica I/O (see proxy_blobs.h).
 *
 * Nodes live in a small array searched linearly: a zone has tens to a few
 * hundred blob servers, and the search is far cheaper than the network
 * round trip it precedes.
 *
 * PUT fan-out without copies: the caller's buffer is handed to each of the
 * three connections by reference (evbuffer_add_reference).  libevent may
 * still hold a reference after the call completed or timed out (a peer that
 * stopped reading), so the put counts references and reports completion
 * only when every call has answered AND every reference has been released;
 * a timed-out call resets that node's connection, which drops its queued
 * output and releases the reference.  The buffer is therefore never freed
 * while a socket may still read from it.
 *
 * Happy path (put): 3 x link_call -> 3 x OK -> 3 x release -> cb(0).
 * Failure modes: a replica down at submit -> cb(-EHOSTDOWN) after releasing
 * the others; any error reply -> cb(first error) once all three finished;
 * a timeout -> that link is reset, cb(-ETIMEDOUT) once references drain. */
#include "proxy_blobs.h"
#include "../bd.h"
#include "../log.h"
#include "../net/link.h"
#include "../net/metrics.h"
#include "../util.h"

#include <stdlib.h>
#include <string.h>

struct node {
    struct pblob_node_info info;
    struct link *link;
};

struct pblobs {
    struct reactor *rx;
    struct conn_opts opts;
    uint64_t node_timeout_ms;
    uint32_t io_timeout_ms;
    struct node *nodes;
    unsigned n_nodes, cap_nodes;
    bool closing;              /* pblobs_free is running: no new work */
};

static struct metric_counter *m_put_ok, *m_put_err, *m_get_ok, *m_get_failover, *m_get_err,
    *m_csum_err;

static void metrics_once(void)
{
    if (m_put_ok) return;
    m_put_ok = metrics_counter("blockd_proxy_blob_puts_total", "Replica puts", "result=\"ok\"");
    m_put_err =
        metrics_counter("blockd_proxy_blob_puts_total", "Replica puts", "result=\"error\"");
    m_get_ok = metrics_counter("blockd_proxy_blob_gets_total", "Blob reads", "result=\"ok\"");
    m_get_failover = metrics_counter("blockd_proxy_blob_gets_total", "Blob reads",
                                     "result=\"failover\"");
    m_get_err =
        metrics_counter("blockd_proxy_blob_gets_total", "Blob reads", "result=\"error\"");
    m_csum_err = metrics_counter("blockd_proxy_blob_checksum_errors_total",
                                 "Blob reads whose data failed its checksum", "");
}

struct pblobs *pblobs_new(struct reactor *rx, const struct conn_opts *opts,
                          uint64_t node_timeout_ms, uint32_t io_timeout_ms)
{
    metrics_once();
    struct pblobs *pb = calloc(1, sizeof(*pb));
    if (!pb) return NULL;
    pb->rx = rx;
    pb->opts = *opts;
    pb->node_timeout_ms = node_timeout_ms;
    pb->io_timeout_ms = io_timeout_ms;
    return pb;
}

void pblobs_free(struct pblobs *pb)
{
    if (!pb) return;
    /* Freeing a link fails its calls, whose callbacks may look nodes up or
     * start new work: mark closing and clear each link before freeing it. */
    pb->closing = true;
    for (unsigned i = 0; i < pb->n_nodes; i++) {
        struct link *l = pb->nodes[i].link;
        pb->nodes[i].link = NULL;
        link_free(l);
    }
    free(pb->nodes);
    free(pb);
}

static struct node *find(struct pblobs *pb, uint64_t id)
{
    for (unsigned i = 0; i < pb->n_nodes; i++)
        if (pb->nodes[i].info.id == id) return &pb->nodes[i];
    return NULL;
}

static const struct link_ops node_link_ops = {0};

static struct node *add(struct pblobs *pb, uint64_t id, const char *addr)
{
    if (pb->closing) return NULL;
    if (pb->n_nodes == pb->cap_nodes) {
        unsigned cap = pb->cap_nodes ? pb->cap_nodes * 2 : 16;
        struct node *n = realloc(pb->nodes, cap * sizeof(*n));
        if (!n) return NULL;
        pb->nodes = n;
        pb->cap_nodes = cap;
    }
    struct node *n = &pb->nodes[pb->n_nodes];
    memset(n, 0, sizeof(*n));
    n->info.id = id;
    util_strlcpy(n->info.addr, addr, sizeof(n->info.addr));
    n->link = link_new(pb->rx, addr, &pb->opts, &node_link_ops, pb);
    if (!n->link) return NULL;
    pb->n_nodes++;
    return n;
}

/* Re-point a node at a new address (a blob server moved). */
static void readdress(struct pblobs *pb, struct node *n, const char *addr)
{
    if (pb->closing) return;
    link_free(n->link);
    util_strlcpy(n->info.addr, addr, sizeof(n->info.addr));
    n->link = link_new(pb->rx, addr, &pb->opts, &node_link_ops, pb);
}

int pblobs_heartbeat(struct pblobs *pb, uint64_t id, const char *addr, uint64_t capacity,
                     uint64_t used, uint64_t blobs, uint32_t n_bad, bool read_only)
{
    struct node *n = find(pb, id);
    int changed = 0;
    if (!n) {
        n = add(pb, id, addr);
        if (!n) return 0;
        changed = 1;
    } else if (strcmp(n->info.addr, addr) != 0) {
        readdress(pb, n, addr);
        changed = 1;
    }
    n->info.capacity = capacity;
    n->info.used = used;
    n->info.blobs = blobs;
    n->info.n_bad = n_bad;
    n->info.read_only = read_only;
    n->info.last_seen_ms = util_mono_ms();
    return changed;
}

void pblobs_learn(struct pblobs *pb, uint64_t id, const char *addr)
{
    struct node *n = find(pb, id);
    if (!n) add(pb, id, addr);
    else if (strcmp(n->info.addr, addr) != 0 && !n->info.last_seen_ms) readdress(pb, n, addr);
}

static bool node_up(struct pblobs *pb, const struct node *n)
{
    return n->link && n->info.last_seen_ms &&
           util_mono_ms() - n->info.last_seen_ms <= pb->node_timeout_ms && link_is_up(n->link);
}

bool pblobs_is_up(struct pblobs *pb, uint64_t id)
{
    struct node *n = find(pb, id);
    return n && node_up(pb, n);
}

unsigned pblobs_list(struct pblobs *pb, struct pblob_node_info *out, unsigned max)
{
    for (unsigned i = 0; i < pb->n_nodes && i < max; i++) {
        out[i] = pb->nodes[i].info;
        out[i].up = node_up(pb, &pb->nodes[i]);
    }
    return pb->n_nodes;
}

unsigned pblobs_up_count(struct pblobs *pb)
{
    unsigned k = 0;
    for (unsigned i = 0; i < pb->n_nodes; i++)
        if (node_up(pb, &pb->nodes[i])) k++;
    return k;
}

/* ---- PUT -------------------------------------------------------------------- */

/* pending counts outstanding calls plus outstanding buffer references. */
static void put_maybe_done(struct pblobs_put *put)
{
    if (--put->pending > 0) return;
    metric_inc(put->err ? m_put_err : m_put_ok);
    put->cb(put, put->err);
}

static void put_release(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    put_maybe_done(arg);
}

static void put_on_reply(struct conn_call *call, int err, struct conn_frame *f)
{
    struct pblobs_put *put = call->data;
    if (err) {
        char why[160];
        log_warn("proxy", "blob put %llu to node %llu failed: %s",
                 (unsigned long long)put->blob_id,
                 (unsigned long long)put->nodes[call - put->calls],
                 f ? conn_error_text(f, why, sizeof(why)) : bd_strerror(err));
        if (err == -ETIMEDOUT) {
            /* The server may be wedged with our buffer still queued to it:
             * reset the connection so the reference is released. */
            struct node *nd = find(put->pb, put->nodes[call - put->calls]);
            if (nd && nd->link) link_reset(nd->link);
        }
        if (!put->err) put->err = err;
    }
    put_maybe_done(put);
}

static void put_fail_deferred(void *arg)
{
    put_maybe_done(arg);
}

void pblobs_put3(struct pblobs *pb, struct pblobs_put *put)
{
    struct wire_blob_put_req req = {
        .blob_id = put->blob_id,
        .partition = put->partition,
        .flags = put->compressible ? WIRE_PUT_COMPRESSIBLE : 0,
        .epoch = put->epoch,
        .csum = put->csum,
        .data_len = put->len,
    };
    uint8_t fields[128];
    int n = wire_encode_blob_put_req(fields, sizeof(fields), &req);
    put->pb = pb;
    put->err = 0;
    /* One extra count held during submission so no callback can complete
     * the put before all three are sent; dropped by a deferred call. */
    put->pending = 1;
    for (int i = 0; i < PBLOBS_REPLICAS; i++) {
        struct node *nd = find(pb, put->nodes[i]);
        if (!nd || !node_up(pb, nd)) {
            if (!put->err) put->err = -EHOSTDOWN;
            continue;
        }
        struct conn_call *call = &put->calls[i];
        call->cb = put_on_reply;
        call->data = put;
        struct conn_payload pl = {.data = put->buf, .len = put->len, .release = put_release,
                                  .arg = put};
        put->pending += 2; /* the reply and the buffer reference */
        int rc = link_call(nd->link, call, WIRE_BLOB_PUT, fields, (size_t)n, &pl,
                           pb->io_timeout_ms);
        if (rc < 0) {
            put->pending -= 2;
            if (!put->err) put->err = rc;
        }
    }
    if (reactor_defer(pb->rx, put_fail_deferred, put) < 0) put_maybe_done(put);
}

/* ---- GET -------------------------------------------------------------------- */

static void get_try(struct pblobs_get *get);

static void get_on_reply(struct conn_call *call, int err, struct conn_frame *f)
{
    struct pblobs_get *get = call->data;
    uint64_t node = get->nodes[get->next - 1];
    if (err == 0) {
        struct wire_blob_get_resp r;
        if (wire_decode_blob_get_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) < 0 ||
            r.data_len != get->len) {
            err = -EPROTO;
        } else if (util_xxh3(r.data, r.data_len) != r.csum) {
            /* Corrupted between the server's verified read and us. */
            metric_inc(m_csum_err);
            err = -BD_ECSUM;
        } else {
            memcpy(get->dst, r.data, r.data_len);
            metric_inc(m_get_ok);
            get->cb(get, 0);
            return;
        }
    }
    char why[160];
    log_warn("proxy", "blob get %llu from node %llu failed: %s", (unsigned long long)get->blob_id,
             (unsigned long long)node,
             f && err != -EPROTO ? conn_error_text(f, why, sizeof(why)) : bd_strerror(err));
    if (err == -ETIMEDOUT) {
        struct node *nd = find(get->pb, node);
        if (nd && nd->link) link_reset(nd->link);
    }
    get->last_err = err;
    metric_inc(m_get_failover);
    get_try(get);
}

static void get_fail_deferred(void *arg)
{
    struct pblobs_get *get = arg;
    metric_inc(m_get_err);
    get->cb(get, get->last_err ? get->last_err : -EIO);
}

/* Try replicas from get->next on: up ones first pass, then any. */
static void get_try(struct pblobs_get *get)
{
    struct pblobs *pb = get->pb;
    struct wire_blob_get_req req = {
        .blob_id = get->blob_id, .partition = get->partition, .off = get->off, .len = get->len};
    uint8_t fields[64];
    int n = wire_encode_blob_get_req(fields, sizeof(fields), &req);
    while (get->next < PBLOBS_REPLICAS) {
        struct node *nd = find(pb, get->nodes[get->next++]);
        if (!nd || !nd->link || !link_is_up(nd->link)) continue;
        get->call.cb = get_on_reply;
        get->call.data = get;
        int rc = link_call(nd->link, &get->call, WIRE_BLOB_GET, fields, (size_t)n, NULL,
                           pb->io_timeout_ms);
        if (rc == 0) return;
        get->last_err = rc;
    }
    if (!get->last_err) get->last_err = -EHOSTDOWN;
    if (reactor_defer(pb->rx, get_fail_deferred, get) < 0) get_fail_deferred(get);
}

void pblobs_get(struct pblobs *pb, struct pblobs_get *get)
{
    get->pb = pb;
    get->next = 0;
    get->last_err = 0;
    /* Prefer replicas that are up by heartbeat: rotate them to the front. */
    uint64_t up[PBLOBS_REPLICAS], down[PBLOBS_REPLICAS];
    int nu = 0, nd = 0;
    for (int i = 0; i < PBLOBS_REPLICAS; i++) {
        if (pblobs_is_up(pb, get->nodes[i])) up[nu++] = get->nodes[i];
        else down[nd++] = get->nodes[i];
    }
    for (int i = 0; i < nu; i++) get->nodes[i] = up[i];
    for (int i = 0; i < nd; i++) get->nodes[nu + i] = down[i];
    get_try(get);
}

/* ---- any request to one server ------------------------------------------------ */

static void call_on_reply(struct conn_call *call, int err, struct conn_frame *f)
{
    struct pblobs_call *pc = call->data;
    if (err == -ETIMEDOUT) {
        struct node *nd = find(pc->pb, pc->node);
        if (nd && nd->link) link_reset(nd->link);
    }
    pc->cb(pc, err, f);
}

static void call_fail_deferred(void *arg)
{
    struct pblobs_call *pc = arg;
    pc->cb(pc, -EHOSTDOWN, NULL);
}

void pblobs_call(struct pblobs *pb, struct pblobs_call *pc, uint16_t type, const void *fields,
                 size_t fields_len, const struct conn_payload *payload)
{
    pc->pb = pb;
    pc->call.cb = call_on_reply;
    pc->call.data = pc;
    struct node *nd = pb->closing ? NULL : find(pb, pc->node);
    if (nd && nd->link &&
        link_call(nd->link, &pc->call, type, fields, fields_len, payload, pb->io_timeout_ms) == 0)
        return;
    if (payload && payload->release) payload->release(payload->data, payload->len, payload->arg);
    if (reactor_defer(pb->rx, call_fail_deferred, pc) < 0) call_fail_deferred(pc);
}

/* ---- DELETE ----------------------------------------------------------------- */

static void del_on_reply(struct conn_call *call, int err, struct conn_frame *f)
{
    (void)f;
    struct pblobs_del *del = call->data;
    del->cb(del, err);
}

static void del_fail_deferred(void *arg)
{
    struct pblobs_del *del = arg;
    del->cb(del, -EHOSTDOWN);
}

void pblobs_delete(struct pblobs *pb, struct pblobs_del *del)
{
    del->pb = pb;
    struct node *nd = find(pb, del->node);
    struct wire_blob_delete_req req = {.blob_id = del->blob_id, .partition = del->partition};
    uint8_t fields[64];
    int n = wire_encode_blob_delete_req(fields, sizeof(fields), &req);
    del->call.cb = del_on_reply;
    del->call.data = del;
    if (!nd || !nd->link || link_call(nd->link, &del->call, WIRE_BLOB_DELETE, fields, (size_t)n, NULL,
                         pb->io_timeout_ms) < 0) {
        if (reactor_defer(pb->rx, del_fail_deferred, del) < 0) del_fail_deferred(del);
    }
}
