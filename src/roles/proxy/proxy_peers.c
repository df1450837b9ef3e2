/* proxy_peers.c: links to the other proxies (see proxy_peers.h).
 *
 * One array of (id, address, link), rebuilt from the configuration and the
 * config file's peers when the configuration changes: a member kept at the
 * same address keeps its link (and its connection); a new member gets a
 * link; a member gone, or moved, loses it.  The group is small (a handful
 * of proxies), so lookups are linear. */
#include "roles/proxy/proxy_peers.h"
#include "roles/proxy/proxy_int.h"
#include "base/bd.h"
#include "base/util.h"
#include "net/link.h"

#include <stdlib.h>
#include <string.h>

struct proxy_peer {
    uint64_t id;
    char addr[CFG_ADDR_MAX];
    struct link *link;
};

static const struct link_ops peer_link_ops = {0};

static struct proxy_peer *find(struct proxy *p, uint64_t id)
{
    for (unsigned i = 0; i < p->n_peers; i++)
        if (p->peers[i].id == id) return &p->peers[i];
    return NULL;
}

/* Add (ID, ADDR) to NEXT unless there already, reusing P's link for it. */
static void keep(struct proxy *p, struct proxy_peer *next, unsigned *n, uint64_t id,
                 const char *addr)
{
    if (id == p->cfg->id || !addr[0]) return;
    for (unsigned i = 0; i < *n; i++)
        if (next[i].id == id) return;
    struct proxy_peer *x = &next[(*n)++];
    memset(x, 0, sizeof(*x));
    x->id = id;
    util_strlcpy(x->addr, addr, sizeof(x->addr));
    struct proxy_peer *old = find(p, id);
    if (old && strcmp(old->addr, addr) == 0) {
        x->link = old->link;
        old->link = NULL;
    } else {
        struct conn_opts o = p->peer_opts;
        o.expect_id = id; /* that proxy, not just any */
        x->link = link_new(p->rx, addr, &o, &peer_link_ops, p);
    }
}

void proxy_peers_sync(struct proxy *p)
{
    struct consensus_server srv[RIO_MAX_PEERS];
    unsigned ns = p->cons ? consensus_servers(p->cons, srv, RIO_MAX_PEERS) : 0;
    ns = BD_MIN(ns, (unsigned)RIO_MAX_PEERS);
    /* Links of members that stay, at the same address, are carried over. */
    struct proxy_peer next[RIO_MAX_PEERS + CFG_MAX_PEERS];
    unsigned n = 0;
    for (unsigned i = 0; i < ns; i++) keep(p, next, &n, srv[i].id, srv[i].addr);
    for (unsigned i = 0; i < p->cfg->n_peers; i++)
        keep(p, next, &n, p->cfg->peers[i].id, p->cfg->peers[i].addr);
    /* Links not carried over go (their calls fail and are retried). */
    for (unsigned i = 0; i < p->n_peers; i++) {
        struct link *l = p->peers[i].link;
        p->peers[i].link = NULL;
        link_free(l);
    }
    struct proxy_peer *arr = realloc(p->peers, BD_MAX(n, 1u) * sizeof(*arr));
    if (!arr) { /* keep nothing rather than dangling links */
        for (unsigned i = 0; i < n; i++) link_free(next[i].link);
        p->n_peers = 0;
        return;
    }
    memcpy(arr, next, n * sizeof(*arr));
    p->peers = arr;
    p->n_peers = n;
}

struct link *proxy_peers_link(struct proxy *p, uint64_t id)
{
    struct proxy_peer *x = find(p, id);
    return x ? x->link : NULL;
}

bool proxy_peers_known(struct proxy *p, uint64_t id)
{
    if (id == p->cfg->id) return false;
    if (p->cons && consensus_is_member(p->cons, id)) return true;
    for (unsigned i = 0; i < p->cfg->n_peers; i++)
        if (p->cfg->peers[i].id == id) return true;
    return false;
}

void proxy_peers_free(struct proxy *p)
{
    for (unsigned i = 0; i < p->n_peers; i++) {
        struct link *l = p->peers[i].link;
        p->peers[i].link = NULL;
        link_free(l);
    }
    free(p->peers);
    p->peers = NULL;
    p->n_peers = 0;
}
