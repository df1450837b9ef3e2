/* proxy_view.c: the cluster as placement sees it (see proxy_view.h).
 *
 * A build reads the node and partition tables in one pass each (heap
 * arrays: no cap on servers or partitions), takes each registered
 * server's capacity, fill and liveness from its latest heartbeat (the
 * index's registration figures if this proxy has heard none), interns its
 * failure-domain labels (proxy_plan_domains), counts its partitions with
 * a binary search per member, and computes the placement weights.  The
 * cost is O(servers + partitions log servers): 200 servers and 2,000
 * partitions rebuild in well under a millisecond, so a view at most
 * PROXY_VIEW_MAX_AGE_MS old is cheap enough for every write to use.
 *
 * Which servers take what:
 *   accepts   (may hold partitions) registered as UP: not DOWN, DRAINING
 *             or RETIRED (retired ones are not in the view at all);
 *   writable  (takes new blobs) accepts, up by heartbeat, not read-only,
 *             and at most fill_limit_pct full, so a filling server stops
 *             receiving writes well before its disk says ENOSPC. */
#include "roles/proxy/proxy_view.h"
#include "roles/proxy/proxy_blobs.h"
#include "roles/proxy/proxy_index.h"
#include "roles/proxy/proxy_int.h"
#include "base/bd.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

struct proxy_view_state {
    struct proxy_view v;
    bool built;
    bool dirty;                /* an applied entry changed nodes or partitions */
};

static void view_free(struct proxy_view *v)
{
    free(v->inodes);
    free(v->nodes);
    free(v->parts);
    free(v->members);
    free(v->cum);
    memset(v, 0, sizeof(*v));
}

int proxy_view_find(const struct proxy_view *v, uint64_t node_id)
{
    unsigned lo = 0, hi = v->n_nodes;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (v->nodes[mid].id < node_id) lo = mid + 1;
        else hi = mid;
    }
    return lo < v->n_nodes && v->nodes[lo].id == node_id ? (int)lo : -1;
}

static int build(struct proxy *p, struct proxy_view *v)
{
    struct index_node *all;
    struct index_part *parts;
    uint32_t n_all, n_parts;
    int rc = proxy_index_read_nodes(p, &all, &n_all);
    if (rc < 0) return rc;
    if ((rc = proxy_index_read_parts(p, &parts, &n_parts)) < 0) {
        free(all);
        return rc;
    }
    memset(v, 0, sizeof(*v));
    v->inodes = all; /* filtered in place below */
    v->parts = parts;
    v->n_parts = n_parts;
    v->nodes = calloc(BD_MAX(n_all, 1u), sizeof(*v->nodes));
    v->members = malloc(BD_MAX(3 * n_parts, 1u) * sizeof(*v->members));
    v->cum = malloc(BD_MAX(n_parts, 1u) * sizeof(*v->cum));
    if (!v->nodes || !v->members || !v->cum) {
        view_free(v);
        return -ENOMEM;
    }
    uint64_t fill_pct = p->cfg->fill_limit_pct;
    unsigned n = 0;
    for (uint32_t i = 0; i < n_all; i++) {
        const struct index_node *in = &all[i];
        if (in->state == INDEX_NODE_RETIRED) continue;
        struct proxy_plan_node *x = &v->nodes[n];
        struct proxy_blobs_node hb = {0};
        bool heard = proxy_blobs_info(p->blobs, in->id, &hb) && hb.last_seen_ms;
        x->id = in->id;
        x->capacity = heard && hb.capacity ? hb.capacity : in->capacity;
        x->used = heard ? hb.used : in->used;
        x->up = heard && hb.up;
        x->accepts = in->state == INDEX_NODE_UP;
        /* used * 100 <= capacity * pct, in 128 bits: capacities reach 2^60. */
        bool room = (unsigned __int128)x->used * 100 <= (unsigned __int128)x->capacity * fill_pct;
        x->writable = x->accepts && x->up && !hb.read_only && room;
        proxy_plan_domains(in->id, in->zone, in->rack, in->host, x->domain);
        v->inodes[n++] = *in;
    }
    v->n_nodes = n;
    for (unsigned k = 0; k < n_parts; k++)
        for (int r = 0; r < 3; r++) {
            int at = proxy_view_find(v, parts[k].nodes[r]);
            v->members[3 * k + r] = at;
            if (at >= 0) v->nodes[at].load++;
        }
    v->total = proxy_plan_place_weights(parts, n_parts, v->members, v->nodes, n, v->cum);
    v->level = proxy_plan_separation(v->nodes, n);
    v->built_ms = util_mono_ms();
    return 0;
}

const struct proxy_view *proxy_view_get(struct proxy *p)
{
    struct proxy_view_state *s = p->view;
    if (!s) {
        s = p->view = calloc(1, sizeof(*s));
        if (!s) return NULL;
    }
    uint64_t now = util_mono_ms();
    if (s->built && !s->dirty && now - s->v.built_ms < PROXY_VIEW_MAX_AGE_MS) return &s->v;
    struct proxy_view next;
    if (build(p, &next) == 0) {
        view_free(&s->v);
        s->v = next;
        s->built = true;
        s->dirty = false;
    }
    return s->built ? &s->v : NULL;
}

void proxy_view_on_applied(struct proxy *p, const struct idxcmd_result *res)
{
    if (!p->view || !res) return;
    switch (res->type) {
    case IDXCMD_REGISTER_NODE:
    case IDXCMD_SET_NODE_STATE:
    case IDXCMD_CREATE_PARTITION:
    case IDXCMD_REPLACE_REPLICA:
    case IDXCMD_NODE_DOMAIN:
    case IDXCMD_MOVE_REPLICA: p->view->dirty = true; break;
    default: break;
    }
}

void proxy_view_fini(struct proxy *p)
{
    if (!p->view) return;
    view_free(&p->view->v);
    free(p->view);
    p->view = NULL;
}
