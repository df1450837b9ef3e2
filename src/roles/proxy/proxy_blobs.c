/* proxy_blobs.c: blob server liveness and replica I/O (see proxy_blobs.h).
 *
 * Nodes live in one array sorted by id and found by binary search: every
 * put, get and placement looks nodes up, and a zone may have thousands of
 * blob servers (no cap: the array grows).  A node is never removed (a
 * retired server just stops heartbeating), so the array only grows.
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
#include "roles/proxy/proxy_blobs.h"
#include "roles/proxy/proxy_plan.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "net/link.h"
#include "runtime/metrics.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

struct node {
    struct proxy_blobs_node info;
    struct link *link;
};

struct proxy_blobs {
    struct reactor *rx;
    struct conn_opts opts;
    uint64_t node_timeout_ms;
    uint32_t io_timeout_ms;
    struct node *nodes;
    unsigned n_nodes, cap_nodes;
    struct proxy_blobs_filling *filling; /* members being filled, sorted */
    unsigned n_filling;
    bool closing;              /* proxy_blobs_free is running: no new work */
};

static struct metrics_counter *m_put_ok, *m_put_err, *m_get_ok, *m_get_failover, *m_get_err,
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

struct proxy_blobs *proxy_blobs_new(struct reactor *rx, const struct conn_opts *opts,
                                    uint64_t node_timeout_ms, uint32_t io_timeout_ms)
{
    metrics_once();
    struct proxy_blobs *pb = calloc(1, sizeof(*pb));
    if (!pb) return NULL;
    pb->rx = rx;
    pb->opts = *opts;
    pb->node_timeout_ms = node_timeout_ms;
    pb->io_timeout_ms = io_timeout_ms;
    return pb;
}

void proxy_blobs_free(struct proxy_blobs *pb)
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
    free(pb->filling);
    free(pb);
}

int proxy_blobs_set_filling(struct proxy_blobs *pb, const struct proxy_blobs_filling *pairs,
                            unsigned n)
{
    if (n == 0 && pb->n_filling == 0) return 0;
    struct proxy_blobs_filling *f = NULL;
    if (n) {
        f = malloc(n * sizeof(*f));
        if (!f) return -ENOMEM;
        memcpy(f, pairs, n * sizeof(*f));
    }
    free(pb->filling);
    pb->filling = f;
    pb->n_filling = n;
    return 0;
}

static bool is_filling(const struct proxy_blobs *pb, uint32_t part, uint64_t node)
{
    unsigned lo = 0, hi = pb->n_filling;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        const struct proxy_blobs_filling *m = &pb->filling[mid];
        if (m->part == part && m->node == node) return true;
        if (m->part < part || (m->part == part && m->node < node)) lo = mid + 1;
        else hi = mid;
    }
    return false;
}

/* The slot of ID in the sorted array: where it is, or where it would go. */
static unsigned slot_of(const struct proxy_blobs *pb, uint64_t id)
{
    unsigned lo = 0, hi = pb->n_nodes;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (pb->nodes[mid].info.id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static struct node *find(struct proxy_blobs *pb, uint64_t id)
{
    unsigned i = slot_of(pb, id);
    return i < pb->n_nodes && pb->nodes[i].info.id == id ? &pb->nodes[i] : NULL;
}

static const struct link_ops node_link_ops = {0};

/* A link to blob server ID at ADDR: with TLS, whoever answers there must
 * hold ID's certificate (an address taken over is not the server). */
static struct link *link_to(struct proxy_blobs *pb, uint64_t id, const char *addr)
{
    struct conn_opts o = pb->opts;
    o.expect_id = id;
    return link_new(pb->rx, addr, &o, &node_link_ops, pb);
}

static struct node *add(struct proxy_blobs *pb, uint64_t id, const char *addr)
{
    if (pb->closing) return NULL;
    if (pb->n_nodes == pb->cap_nodes) {
        unsigned cap = pb->cap_nodes ? pb->cap_nodes * 2 : 16;
        struct node *n = realloc(pb->nodes, cap * sizeof(*n));
        if (!n) return NULL;
        pb->nodes = n;
        pb->cap_nodes = cap;
    }
    struct link *l = link_to(pb, id, addr);
    if (!l) return NULL;
    unsigned i = slot_of(pb, id);
    memmove(&pb->nodes[i + 1], &pb->nodes[i], (pb->n_nodes - i) * sizeof(*pb->nodes));
    struct node *n = &pb->nodes[i];
    memset(n, 0, sizeof(*n));
    n->info.id = id;
    util_strlcpy(n->info.addr, addr, sizeof(n->info.addr));
    n->link = l;
    pb->n_nodes++;
    return n;
}

/* Re-point a node at a new address (a blob server moved). */
static void readdress(struct proxy_blobs *pb, struct node *n, const char *addr)
{
    if (pb->closing) return;
    link_free(n->link);
    util_strlcpy(n->info.addr, addr, sizeof(n->info.addr));
    n->link = link_to(pb, n->info.id, addr);
}

void proxy_blobs_heartbeat(struct proxy_blobs *pb, const struct wire_node_heartbeat_req *hb,
                           const char *addr)
{
    struct node *n = find(pb, hb->node_id);
    if (!n) {
        n = add(pb, hb->node_id, addr);
        if (!n) return;
    } else if (strcmp(n->info.addr, addr) != 0) {
        readdress(pb, n, addr);
    }
    n->info.capacity = hb->capacity;
    n->info.used = hb->used;
    n->info.blobs = hb->blobs;
    n->info.n_bad = hb->n_bad;
    n->info.read_only = hb->flags & 1;
    /* The decoder bounded them to WIRE_LABEL_MAX (64) name characters. */
    wire_str_copy(hb->zone, n->info.zone, sizeof(n->info.zone));
    wire_str_copy(hb->rack, n->info.rack, sizeof(n->info.rack));
    wire_str_copy(hb->host, n->info.host, sizeof(n->info.host));
    n->info.last_seen_ms = util_mono_ms();
}

static bool node_up(struct proxy_blobs *pb, const struct node *n)
{
    return n->link && n->info.last_seen_ms &&
           util_mono_ms() - n->info.last_seen_ms <= pb->node_timeout_ms && link_is_up(n->link);
}

bool proxy_blobs_is_up(struct proxy_blobs *pb, uint64_t id)
{
    struct node *n = find(pb, id);
    return n && node_up(pb, n);
}

int proxy_blobs_list(struct proxy_blobs *pb, struct proxy_blobs_node **out, unsigned *n)
{
    *out = malloc(BD_MAX(pb->n_nodes, 1u) * sizeof(**out));
    if (!*out) return -ENOMEM;
    for (unsigned i = 0; i < pb->n_nodes; i++) {
        (*out)[i] = pb->nodes[i].info;
        (*out)[i].up = node_up(pb, &pb->nodes[i]);
    }
    *n = pb->n_nodes;
    return 0;
}

bool proxy_blobs_info(struct proxy_blobs *pb, uint64_t id, struct proxy_blobs_node *out)
{
    struct node *n = find(pb, id);
    if (!n) return false;
    *out = n->info;
    out->up = node_up(pb, n);
    return true;
}

unsigned proxy_blobs_up_ids(struct proxy_blobs *pb, uint64_t *out, unsigned max)
{
    unsigned n = 0;
    for (unsigned i = 0; i < pb->n_nodes; i++) { /* ascending: the array is sorted */
        if (!node_up(pb, &pb->nodes[i])) continue;
        if (n < max) out[n] = pb->nodes[i].info.id;
        n++;
    }
    return n;
}

unsigned proxy_blobs_up_count(struct proxy_blobs *pb)
{
    unsigned k = 0;
    for (unsigned i = 0; i < pb->n_nodes; i++)
        if (node_up(pb, &pb->nodes[i])) k++;
    return k;
}

/* ---- PUT -------------------------------------------------------------------- */

/* pending counts outstanding calls plus outstanding buffer references. */
static void put_maybe_done(struct proxy_blobs_put *put)
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
    struct proxy_blobs_put *put = call->data;
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

void proxy_blobs_put3(struct proxy_blobs *pb, struct proxy_blobs_put *put)
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
    for (int i = 0; i < PROXY_BLOBS_REPLICAS; i++) {
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

static void get_try(struct proxy_blobs_get *get);

static void get_on_reply(struct conn_call *call, int err, struct conn_frame *f)
{
    struct proxy_blobs_get *get = call->data;
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
            if (get->dst) {
                memcpy(get->dst, r.data, r.data_len);
            } else {
                get->csum = r.csum;
                get->got = r.data; /* points into the body taken next */
                get->body = conn_frame_take(f);
            }
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
    struct proxy_blobs_get *get = arg;
    metric_inc(m_get_err);
    get->cb(get, get->last_err ? get->last_err : -EIO);
}

/* Try replicas from get->next on: up ones first pass, then any. */
static void get_try(struct proxy_blobs_get *get)
{
    struct proxy_blobs *pb = get->pb;
    struct wire_blob_get_req req = {
        .blob_id = get->blob_id, .partition = get->partition, .off = get->off, .len = get->len};
    uint8_t fields[64];
    int n = wire_encode_blob_get_req(fields, sizeof(fields), &req);
    while (get->next < PROXY_BLOBS_REPLICAS) {
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

unsigned proxy_blobs_read_order(struct proxy_blobs *pb, uint32_t partition,
                                uint64_t nodes[PROXY_BLOBS_REPLICAS])
{
    uint64_t order[PROXY_BLOBS_REPLICAS];
    uint8_t up = 0;
    for (int i = 0; i < PROXY_BLOBS_REPLICAS; i++)
        if (proxy_blobs_is_up(pb, nodes[i]) &&
            !(pb->n_filling && is_filling(pb, partition, nodes[i])))
            up |= (uint8_t)(1u << i);
    proxy_plan_replica_order(nodes, up, order);
    memcpy(nodes, order, sizeof(order));
    return (unsigned)__builtin_popcount(up);
}

void proxy_blobs_get(struct proxy_blobs *pb, struct proxy_blobs_get *get)
{
    get->pb = pb;
    get->body = NULL;
    get->got = NULL;
    get->next = 0;
    get->last_err = 0;
    (void)proxy_blobs_read_order(pb, get->partition, get->nodes);
    get_try(get);
}

/* ---- any request to one server ------------------------------------------------ */

static void call_on_reply(struct conn_call *call, int err, struct conn_frame *f)
{
    struct proxy_blobs_call *pc = call->data;
    if (err == -ETIMEDOUT) {
        struct node *nd = find(pc->pb, pc->node);
        if (nd && nd->link) link_reset(nd->link);
    }
    pc->cb(pc, err, f);
}

static void call_fail_deferred(void *arg)
{
    struct proxy_blobs_call *pc = arg;
    pc->cb(pc, -EHOSTDOWN, NULL);
}

void proxy_blobs_call(struct proxy_blobs *pb, struct proxy_blobs_call *pc, uint16_t type,
                      const void *fields, size_t fields_len, const struct conn_payload *payload)
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
    struct proxy_blobs_del *del = call->data;
    del->cb(del, err);
}

static void del_fail_deferred(void *arg)
{
    struct proxy_blobs_del *del = arg;
    del->cb(del, -EHOSTDOWN);
}

void proxy_blobs_delete(struct proxy_blobs *pb, struct proxy_blobs_del *del)
{
    del->pb = pb;
    struct node *nd = find(pb, del->node);
    struct wire_blob_delete_req req = {.blob_id = del->blob_id, .partition = del->partition};
    uint8_t fields[64];
    int n = wire_encode_blob_delete_req(fields, sizeof(fields), &req);
    del->call.cb = del_on_reply;
    del->call.data = del;
    if (!nd || !nd->link ||
        link_call(nd->link, &del->call, WIRE_BLOB_DELETE, fields, (size_t)n, NULL,
                  pb->io_timeout_ms) < 0) {
        if (reactor_defer(pb->rx, del_fail_deferred, del) < 0) del_fail_deferred(del);
    }
}
