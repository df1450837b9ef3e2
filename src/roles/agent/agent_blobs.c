/* agent_blobs.c: links to blob servers and verified GETs (see agent_blobs.h).
 *
 * Nodes live in a small array sorted by id (a lease names a few servers;
 * an agent reads from at most max_nodes).  Freeing sets `closing` first:
 * freeing a link fails its calls, whose callbacks try the next replica,
 * and must find no link to try. */
#include "roles/agent/agent_blobs.h"
#include "base/bd.h"
#include "base/util.h"
#include "net/link.h"
#include "runtime/log.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct node {
    uint64_t id;
    char addr[128];
    struct link *link;
};

struct agent_blobs {
    struct reactor *rx;
    struct conn_opts opts;
    struct node *nodes;
    unsigned n, max;
    bool closing;
    struct agent_blobs_stats st;
};

static const struct link_ops node_ops = {0};

struct agent_blobs *agent_blobs_new(struct reactor *rx, const struct conn_opts *opts,
                                    unsigned max_nodes)
{
    struct agent_blobs *ab = calloc(1, sizeof(*ab));
    if (!ab) return NULL;
    ab->nodes = calloc(max_nodes ? max_nodes : 1, sizeof(*ab->nodes));
    if (!ab->nodes) {
        free(ab);
        return NULL;
    }
    ab->rx = rx;
    ab->opts = *opts;
    ab->opts.expect_role = WIRE_ROLE_BLOB;
    ab->max = max_nodes;
    return ab;
}

void agent_blobs_free(struct agent_blobs *ab)
{
    if (!ab) return;
    ab->closing = true;
    for (unsigned i = 0; i < ab->n; i++) {
        struct link *l = ab->nodes[i].link;
        ab->nodes[i].link = NULL;
        link_free(l);
    }
    free(ab->nodes);
    free(ab);
}

static unsigned slot_of(const struct agent_blobs *ab, uint64_t id)
{
    unsigned lo = 0, hi = ab->n;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (ab->nodes[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static struct node *find(struct agent_blobs *ab, uint64_t id)
{
    unsigned i = slot_of(ab, id);
    return i < ab->n && ab->nodes[i].id == id ? &ab->nodes[i] : NULL;
}

/* With TLS, whoever answers at ADDR must hold node ID's certificate. */
static struct link *link_to(struct agent_blobs *ab, uint64_t id, const char *addr)
{
    struct conn_opts o = ab->opts;
    o.expect_id = id;
    ab->st.links++;
    return link_new(ab->rx, addr, &o, &node_ops, ab);
}

void agent_blobs_learn(struct agent_blobs *ab, uint64_t id, const char *addr, size_t len)
{
    if (ab->closing || id == 0 || len == 0 || len >= sizeof(ab->nodes[0].addr)) return;
    char a[128];
    memcpy(a, addr, len);
    a[len] = 0;
    struct node *nd = find(ab, id);
    if (nd) {
        if (strcmp(nd->addr, a) == 0) return;
        struct link *l = link_to(ab, id, a);
        if (!l) return;
        struct link *old = nd->link;
        nd->link = l;
        util_strlcpy(nd->addr, a, sizeof(nd->addr));
        link_free(old); /* its GETs fail over to the other replicas */
        return;
    }
    if (ab->n == ab->max) return;
    struct link *l = link_to(ab, id, a);
    if (!l) return;
    unsigned i = slot_of(ab, id);
    memmove(&ab->nodes[i + 1], &ab->nodes[i], (ab->n - i) * sizeof(*ab->nodes));
    ab->nodes[i] = (struct node){.id = id, .link = l};
    util_strlcpy(ab->nodes[i].addr, a, sizeof(ab->nodes[i].addr));
    ab->n++;
}

static void get_try(struct agent_blobs_get *g);

static void get_on_reply(struct conn_call *call, int err, struct conn_frame *f)
{
    struct agent_blobs_get *g = call->data;
    struct agent_blobs *ab = g->ab;
    if (err == 0) {
        struct wire_blob_get_resp r;
        if (wire_decode_blob_get_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) < 0 ||
            r.data_len != g->len) {
            err = -EPROTO;
        } else if (util_xxh3(r.data, r.data_len) != r.csum) {
            ab->st.csum_errors++;
            err = -BD_ECSUM;
        } else {
            ab->st.gets_ok++;
            g->cb(g, 0, r.data);
            return;
        }
    }
    if (err == -ETIMEDOUT && !ab->closing) {
        struct node *nd = find(ab, g->nodes[g->next - 1]);
        if (nd && nd->link) link_reset(nd->link); /* a wedged server: start afresh */
    }
    log_debug(ab->opts.tag, "direct blob get %llu from node %llu failed: %s",
              (unsigned long long)g->blob_id, (unsigned long long)g->nodes[g->next - 1],
              bd_strerror(err));
    g->last_err = err;
    if (!ab->closing) ab->st.failovers++;
    get_try(g);
}

static void get_fail_deferred(void *arg)
{
    struct agent_blobs_get *g = arg;
    g->cb(g, g->last_err ? g->last_err : -EHOSTDOWN, NULL);
}

static void get_try(struct agent_blobs_get *g)
{
    struct agent_blobs *ab = g->ab;
    struct wire_blob_get_req req = {
        .blob_id = g->blob_id, .partition = g->partition, .off = g->off, .len = g->len};
    uint8_t fields[64];
    int n = wire_encode_blob_get_req(fields, sizeof(fields), &req);
    while (!ab->closing && n > 0 && g->next < 3) {
        struct node *nd = g->nodes[g->next] ? find(ab, g->nodes[g->next]) : NULL;
        g->next++;
        if (!nd || !nd->link || !link_is_up(nd->link)) continue;
        g->call.cb = get_on_reply;
        g->call.data = g;
        int rc = link_call(nd->link, &g->call, WIRE_BLOB_GET, fields, (size_t)n, NULL,
                           g->timeout_ms);
        if (rc == 0) return;
        g->last_err = rc;
    }
    if (ab->closing) g->last_err = -ESHUTDOWN;
    if (ab->closing || reactor_defer(ab->rx, get_fail_deferred, g) < 0) get_fail_deferred(g);
}

void agent_blobs_get(struct agent_blobs *ab, struct agent_blobs_get *g)
{
    g->ab = ab;
    g->next = 0;
    g->last_err = 0;
    /* Spread reads over the replicas (each server then caches a third of
     * the data and does a third of the work): start at one picked by the
     * blob id, keep the order of the rest. */
    unsigned n = 0;
    while (n < 3 && g->nodes[n]) n++;
    unsigned start = n > 1 ? (unsigned)(((g->blob_id * 0x9E3779B97F4A7C15ull) >> 32) % n) : 0;
    if (start) {
        uint64_t rot[3] = {0, 0, 0};
        for (unsigned i = 0; i < n; i++) rot[i] = g->nodes[(start + i) % n];
        memcpy(g->nodes, rot, sizeof(rot));
    }
    get_try(g);
}

void agent_blobs_stats(const struct agent_blobs *ab, struct agent_blobs_stats *out)
{
    *out = ab->st;
}
