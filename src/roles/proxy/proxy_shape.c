/* proxy_shape.c: the admin API for the cluster's shape (see proxy_shape.h).
 *
 *   GET    /v1/nodes                 blob servers: domains, state, slots,
 *                                    partitions, fill, drain progress
 *   GET    /v1/nodes/ID              one of them
 *   POST   /v1/nodes/ID/drain        move every replica off it (202, with
 *                                    progress; idempotent)
 *   POST   /v1/nodes/ID/undrain      stop draining: it takes partitions again
 *   DELETE /v1/nodes/ID              forget a drained server (204)
 *   GET    /v1/proxies               the Raft group: id, address, role, state
 *   POST   /v1/proxies {"id", "addr"} add a proxy (202): a spare at once, a
 *                                    voter once caught up (proxy_shape_tick)
 *   DELETE /v1/proxies/ID            take a proxy out of the group (204)
 *
 * Refusals say why and change nothing (README "Admin API"): an id that is
 * no registered server is 400; a drain that the other servers cannot hold
 * (fewer than three others up and accepting partitions, or fewer free
 * bytes below their fill limit than it holds) is 409,
 * as is removing a server still in a partition.  The checks read the
 * proxy's view (proxy_view.c), so they are as fresh as its last heartbeat;
 * the FSM itself refuses to retire a server still in a partition, whatever
 * raced with the check.
 *
 * Node mutations are index commands (SET_NODE_STATE), forwarded to the
 * leader by proxy_cmd.c; the answer waits until this proxy applied the
 * entry, as the volume API's do.  Membership changes are Raft's own
 * (consensus.h) and only the leader makes them: another proxy answers 421
 * naming the leader.  A change is refused with 409 while another is in
 * progress, for an id or address already in the group, and when removing
 * would leave no voter, or fewer voters answering the leader than a
 * majority of those that remain; an unknown proxy id is 400. */
#include "roles/proxy/proxy_shape.h"
#include "roles/proxy/proxy_blobs.h"
#include "roles/proxy/proxy_cmd.h"
#include "roles/proxy/proxy_index.h"
#include "roles/proxy/proxy_int.h"
#include "roles/proxy/proxy_mgmt.h"
#include "roles/proxy/proxy_move.h"
#include "roles/proxy/proxy_peers.h"
#include "roles/proxy/proxy_plan.h"
#include "roles/proxy/proxy_view.h"
#include "base/bd.h"
#include "base/jsonv.h"
#include "base/util.h"
#include "net/admin.h"
#include "net/link.h"
#include "runtime/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHAPE_CMD_DEADLINE_MS 10000

static const char *state_name(uint8_t s)
{
    switch (s) {
    case INDEX_NODE_UP: return "active";
    case INDEX_NODE_DOWN: return "down";
    case INDEX_NODE_RETIRED: return "removed";
    case INDEX_NODE_DRAINING: return "draining";
    default: return "unknown";
    }
}

static void progress_json(cJSON *o, const struct proxy_move_progress *pr)
{
    cJSON_AddNumberToObject(o, "moves", pr->moves);
    cJSON_AddNumberToObject(o, "partitions_left", pr->partitions_left);
    cJSON_AddNumberToObject(o, "bytes_done", (double)pr->bytes_done);
    cJSON_AddNumberToObject(o, "bytes_left", (double)pr->bytes_left);
    cJSON_AddNumberToObject(o, "rate_bytes_per_sec", pr->rate);
    if (pr->eta_s >= 0) cJSON_AddNumberToObject(o, "eta_s", pr->eta_s);
    else cJSON_AddNullToObject(o, "eta_s");
}

void proxy_shape_node_json(struct proxy *p, const struct index_node *n, cJSON *out)
{
    cJSON_AddStringToObject(out, "zone", n->zone);
    cJSON_AddStringToObject(out, "rack", n->rack);
    cJSON_AddStringToObject(out, "host", n->host);
    cJSON_AddStringToObject(out, "state", state_name(n->state));
    const struct proxy_view *v = proxy_view_get(p);
    int at = v ? proxy_view_find(v, n->id) : -1;
    if (at >= 0) {
        const struct proxy_plan_node *x = &v->nodes[at];
        cJSON_AddNumberToObject(out, "slots", proxy_plan_slots(x->capacity, p->cfg->partition_bytes));
        cJSON_AddNumberToObject(out, "partitions", x->load);
        cJSON_AddBoolToObject(out, "writable", x->writable);
    }
    if (n->state == INDEX_NODE_DRAINING) {
        struct proxy_move_progress pr;
        proxy_move_progress(p, n->id, &pr);
        progress_json(cJSON_AddObjectToObject(out, "drain"), &pr);
    }
}

void proxy_shape_part_json(struct proxy *p, const struct index_part *pt, cJSON *out)
{
    const struct proxy_view *v = proxy_view_get(p);
    if (!v) return;
    int m[3];
    for (int i = 0; i < 3; i++) m[i] = proxy_view_find(v, pt->nodes[i]);
    int l = proxy_plan_part_level(v->nodes, m);
    cJSON_AddStringToObject(out, "separation", l < 0 ? "unknown" : proxy_plan_level_name(l));
}

void proxy_shape_cluster_json(struct proxy *p, cJSON *out)
{
    const struct proxy_view *v = proxy_view_get(p);
    cJSON *o = cJSON_AddObjectToObject(out, "placement");
    cJSON_AddNumberToObject(o, "partition_bytes", (double)p->cfg->partition_bytes);
    cJSON_AddNumberToObject(o, "fill_limit_pct", (double)p->cfg->fill_limit_pct);
    if (v) {
        unsigned below = 0, domains[PROXY_PLAN_LEVELS] = {0};
        for (unsigned k = 0; k < v->n_parts; k++) {
            int l = proxy_plan_part_level(v->nodes, &v->members[3 * k]);
            below += l < (int)v->level;
        }
        /* Distinct domains per level among the servers that take
         * partitions (counted by sorting would need memory: a quadratic
         * count is fine for a status call over hundreds of servers). */
        for (int l = 1; l < PROXY_PLAN_LEVELS; l++)
            for (unsigned i = 0; i < v->n_nodes; i++) {
                if (!v->nodes[i].accepts) continue;
                bool first = true;
                for (unsigned j = 0; j < i && first; j++)
                    if (v->nodes[j].accepts && v->nodes[j].domain[l] == v->nodes[i].domain[l])
                        first = false;
                domains[l] += first;
            }
        cJSON_AddStringToObject(o, "separation", proxy_plan_level_name(v->level));
        char note[160];
        if (v->level == PROXY_PLAN_LEVEL_ZONE)
            snprintf(note, sizeof(note), "every partition's replicas in three zones");
        else
            snprintf(note, sizeof(note),
                     "only %u zone(s), %u rack(s) and %u host(s) take partitions: replicas are "
                     "kept apart by %s, not by zone", domains[PROXY_PLAN_LEVEL_ZONE],
                     domains[PROXY_PLAN_LEVEL_RACK], domains[PROXY_PLAN_LEVEL_HOST],
                     proxy_plan_level_name(v->level));
        cJSON_AddStringToObject(o, "note", note);
        cJSON_AddNumberToObject(o, "zones", domains[PROXY_PLAN_LEVEL_ZONE]);
        cJSON_AddNumberToObject(o, "racks", domains[PROXY_PLAN_LEVEL_RACK]);
        cJSON_AddNumberToObject(o, "hosts", domains[PROXY_PLAN_LEVEL_HOST]);
        cJSON_AddNumberToObject(o, "partitions_wanted",
                                proxy_plan_partitions_wanted(v->nodes, v->n_nodes,
                                                             p->cfg->partition_bytes));
        cJSON_AddNumberToObject(o, "partitions_below_separation", below);
    }
    proxy_move_status(p, out);
}

/* The status page's progress rows (status_page.html showWork): the
 * fields {done, total, rate_per_s, eta_s, unit} it reads when present. */
static void page_progress(cJSON *o, const struct proxy_move_progress *pr)
{
    cJSON_AddNumberToObject(o, "done", (double)pr->bytes_done);
    cJSON_AddNumberToObject(o, "total", (double)(pr->bytes_done + pr->bytes_left));
    cJSON_AddNumberToObject(o, "rate_per_s", pr->rate);
    if (pr->eta_s >= 0) cJSON_AddNumberToObject(o, "eta_s", pr->eta_s);
    else cJSON_AddNullToObject(o, "eta_s");
    cJSON_AddStringToObject(o, "unit", "bytes");
    cJSON_AddNumberToObject(o, "moves", pr->moves);
}

void proxy_shape_status(struct proxy *p, cJSON *out)
{
    if (!consensus_is_leader(p->cons)) return; /* the leader moves replicas */
    struct proxy_move_progress pr;
    proxy_move_progress(p, 0, &pr);
    page_progress(cJSON_AddObjectToObject(out, "rebuild"), &pr);
    if (proxy_index_read_begin(p) != 0) return;
    cJSON *drains = cJSON_AddArrayToObject(out, "drain");
    struct index_node nd[64];
    uint32_t n = 0;
    uint64_t after = 0;
    do {
        if (index_node_list(p->rd, after, nd, 64, &n) < 0) break;
        for (uint32_t i = 0; i < n; i++) {
            if (nd[i].state != INDEX_NODE_DRAINING) continue;
            cJSON *d = cJSON_CreateObject();
            cJSON_AddNumberToObject(d, "node", (double)nd[i].id);
            proxy_move_progress(p, nd[i].id, &pr);
            page_progress(d, &pr);
            cJSON_AddNumberToObject(d, "partitions_left", pr.partitions_left);
            cJSON_AddItemToArray(drains, d);
        }
        if (n) after = nd[n - 1].id;
    } while (n == 64);
    proxy_index_read_end(p);
}

/* ---- requests ------------------------------------------------------------------------ */

/* The server id at the start of the route's tail ("12" or "12/drain"):
 * true with *ID and *REST (NULL or after the slash); false after a 400. */
static bool node_id(struct admin_req *r, uint64_t *id, const char **rest)
{
    const char *t = admin_req_tail(r);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(t, &end, 10);
    if (t[0] < '1' || t[0] > '9' || errno || v > UINT32_MAX || (*end && *end != '/')) {
        admin_reply_error(r, 400, "a blob server id is a number from 1 to 4294967295");
        return false;
    }
    *id = v;
    *rest = *end == '/' ? end + 1 : NULL;
    return true;
}

/* Registered and not removed: 0 with *N, or a 400 sent. */
static int find_node(struct proxy *p, struct admin_req *r, uint64_t id, struct index_node *n)
{
    if (proxy_index_read_begin(p) < 0) {
        admin_reply_error(r, 503, "index busy");
        return -EAGAIN;
    }
    int rc = index_node_get(p->rd, id, n);
    proxy_index_read_end(p);
    if (rc == -ENOENT || (rc == 0 && n->state == INDEX_NODE_RETIRED)) {
        admin_reply_error(r, 400, "unknown blob server %llu: no such server in this cluster%s",
                          (unsigned long long)id, rc == 0 ? " (it was removed)" : "");
        return -ENOENT;
    }
    if (rc < 0) {
        admin_reply_error(r, 500, "index: %s", bd_strerror(rc));
        return rc;
    }
    return 0;
}

/* A request on /v1/nodes/ID itself: the server's id and record, or false
 * when it was answered (400, 404, 503). */
static bool node_itself(struct proxy *p, struct admin_req *r, uint64_t *id, struct index_node *n)
{
    const char *rest;
    if (!node_id(r, id, &rest)) return false;
    if (rest) {
        admin_reply_error(r, 404, "no such endpoint");
        return false;
    }
    return find_node(p, r, *id, n) == 0;
}

static cJSON *node_json(struct proxy *p, const struct index_node *n)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "id", (double)n->id);
    cJSON_AddStringToObject(j, "addr", n->addr);
    struct proxy_blobs_node info;
    cJSON_AddBoolToObject(j, "up", proxy_blobs_is_up(p->blobs, n->id));
    if (proxy_blobs_info(p->blobs, n->id, &info)) {
        cJSON_AddNumberToObject(j, "capacity", (double)info.capacity);
        cJSON_AddNumberToObject(j, "used", (double)info.used);
    }
    proxy_shape_node_json(p, n, j);
    return j;
}

static void on_list(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    struct index_node *nodes;
    uint32_t n;
    if (proxy_index_read_nodes(p, &nodes, &n) < 0) {
        admin_reply_error(r, 503, "index busy");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "nodes");
    for (uint32_t i = 0; i < n; i++)
        if (nodes[i].state != INDEX_NODE_RETIRED) cJSON_AddItemToArray(arr, node_json(p, &nodes[i]));
    free(nodes);
    admin_reply_json(r, 200, o);
}

static void on_get(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    uint64_t id;
    struct index_node n;
    if (!node_itself(p, r, &id, &n)) return;
    admin_reply_json(r, 200, node_json(p, &n));
}

/* A request answered later (a SET_NODE_STATE being applied, a membership
 * change being committed).  Listed in P->shape so that stopping can
 * detach it from its HTTP request, which admin_free answers itself. */
struct pending {
    struct proxy *p;
    struct admin_req *r;       /* NULL once detached: the answer goes nowhere */
    struct pending *prev, *next;
};

/* The state of this module (P->shape). */
struct proxy_shape_state {
    struct pending *pending;
    bool promoting;            /* a promotion is in flight */
    struct consensus_change promote;
    uint64_t promotee;
};

static struct proxy_shape_state *state(struct proxy *p)
{
    if (!p->shape) p->shape = calloc(1, sizeof(*p->shape));
    return p->shape;
}

/* Register PD (P and R set); false (after a 500) if out of memory. */
static bool pending_add(struct pending *pd)
{
    struct proxy_shape_state *st = state(pd->p);
    if (!st) {
        admin_reply_error(pd->r, 500, "out of memory");
        return false;
    }
    pd->prev = NULL;
    pd->next = st->pending;
    if (st->pending) st->pending->prev = pd;
    st->pending = pd;
    return true;
}

static void pending_del(struct pending *pd)
{
    struct proxy_shape_state *st = pd->p->shape;
    if (!st) return;
    if (pd->prev) pd->prev->next = pd->next;
    else st->pending = pd->next;
    if (pd->next) pd->next->prev = pd->prev;
}

/* A SET_NODE_STATE on its way: answered once applied here. */
struct nmut {
    struct pending pd;         /* first: the registry's */
    struct proxy_cmd cmd;
    struct proxy_mgmt_wait wait;
    uint64_t id;
    int ok_code;
    uint8_t buf[64];
};

static void nmut_after_wait(struct proxy_mgmt_wait *w, int err)
{
    struct nmut *m = w->data;
    struct index_node n;
    pending_del(&m->pd);
    if (!m->pd.r) {
        /* detached: the server stopped */
    } else if (err && err != -ETIMEDOUT) {
        admin_reply_error(m->pd.r, 503, "%s", bd_strerror(err));
    } else if (m->ok_code == 204) {
        admin_reply_json(m->pd.r, 204, NULL);
    } else if (find_node(m->pd.p, m->pd.r, m->id, &n) == 0) {
        admin_reply_json(m->pd.r, m->ok_code, node_json(m->pd.p, &n));
    }
    free(m);
}

static void on_nmut(struct proxy_cmd *c, int err, uint64_t index, const struct idxcmd_result *res)
{
    struct nmut *m = bd_container_of(c, struct nmut, cmd);
    if (err == 0 && res->status != IDXCMD_ST_OK) err = idxcmd_status_to_err(res->status);
    if (err || !m->pd.r) {
        int code = err == -EBUSY || err == -EINVAL ? 409 : err == -ENOENT ? 400
                   : err == -EAGAIN || err == -ETIMEDOUT ? 503 : 500;
        const char *why = err == -EBUSY ? "it is still a member of a partition: drain it first"
                          : err == -EINVAL ? "a removed server cannot change state"
                          : err == -EAGAIN ? "no raft leader reachable; try again"
                                           : bd_strerror(err);
        pending_del(&m->pd);
        if (m->pd.r)
            admin_reply_error(m->pd.r, code, "blob server %llu: %s", (unsigned long long)m->id,
                              why);
        free(m);
        return;
    }
    m->wait = (struct proxy_mgmt_wait){.cb = nmut_after_wait, .data = m, .index = index,
                                       .deadline_ms = util_mono_ms() + SHAPE_CMD_DEADLINE_MS};
    proxy_mgmt_wait_add(m->pd.p, &m->wait);
}

static void set_state(struct proxy *p, struct admin_req *r, uint64_t id, uint8_t state,
                      int ok_code)
{
    struct nmut *m = calloc(1, sizeof(*m));
    if (!m) {
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    *m = (struct nmut){.pd = {.p = p, .r = r}, .id = id, .ok_code = ok_code};
    struct idxcmd cmd = {.type = IDXCMD_SET_NODE_STATE};
    cmd.u.set_node_state.node_id = id;
    cmd.u.set_node_state.state = state;
    int n = idxcmd_encode(m->buf, sizeof(m->buf), &cmd);
    if (n < 0) {
        free(m);
        admin_reply_error(r, 400, "invalid request");
        return;
    }
    if (!pending_add(&m->pd)) {
        free(m);
        return;
    }
    m->cmd = (struct proxy_cmd){.cb = on_nmut, .buf = m->buf, .len = (size_t)n,
                                .deadline_ms = util_mono_ms() + SHAPE_CMD_DEADLINE_MS};
    proxy_cmd_submit(p, &m->cmd);
}

/* Can the other servers take everything ID holds?  NULL if so, else why
 * (into WHY). */
static const char *drain_refusal(struct proxy *p, uint64_t id, char *why, size_t len)
{
    const struct proxy_view *v = proxy_view_get(p);
    if (!v) return "the cluster's state is not known yet; try again";
    int at = proxy_view_find(v, id);
    uint64_t used = at >= 0 ? v->nodes[at].used : 0;
    unsigned others = 0;
    uint64_t free_bytes = 0;
    for (unsigned i = 0; i < v->n_nodes; i++) {
        const struct proxy_plan_node *x = &v->nodes[i];
        if ((int)i == at || !x->accepts || !x->up) continue;
        others++;
        uint64_t limit = x->capacity / 100 * p->cfg->fill_limit_pct;
        free_bytes += limit > x->used ? limit - x->used : 0;
    }
    if (others < 3) {
        snprintf(why, len, "only %u other blob server(s) are up and take partitions; every "
                 "partition needs three", others);
        return why;
    }
    if (free_bytes < used) {
        char a[32], b[32];
        snprintf(why, len, "it holds %s but the other servers have %s free below the fill "
                 "limit", util_fmt_size(used, a, sizeof(a)), util_fmt_size(free_bytes, b,
                                                                           sizeof(b)));
        return why;
    }
    return NULL;
}

static void on_post(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    uint64_t id;
    const char *rest;
    struct index_node n;
    if (!node_id(r, &id, &rest)) return;
    bool drain = rest && strcmp(rest, "drain") == 0, undrain = rest && !strcmp(rest, "undrain");
    if (!drain && !undrain) {
        admin_reply_error(r, 404, "no such endpoint (drain or undrain)");
        return;
    }
    if (find_node(p, r, id, &n) < 0) return;
    if (drain) {
        if (n.state == INDEX_NODE_DRAINING) { /* again: its progress */
            admin_reply_json(r, 202, node_json(p, &n));
            return;
        }
        char why[200];
        const char *no = drain_refusal(p, id, why, sizeof(why));
        if (no) {
            admin_reply_error(r, 409, "cannot drain blob server %llu: %s", (unsigned long long)id,
                              no);
            return;
        }
        set_state(p, r, id, INDEX_NODE_DRAINING, 202);
        return;
    }
    if (n.state == INDEX_NODE_UP) {
        admin_reply_json(r, 200, node_json(p, &n));
        return;
    }
    set_state(p, r, id, INDEX_NODE_UP, 200);
}

static void on_delete(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    uint64_t id;
    struct index_node n;
    if (!node_itself(p, r, &id, &n)) return;
    const struct proxy_view *v = proxy_view_get(p);
    int at = v ? proxy_view_find(v, id) : -1;
    if (at >= 0 && v->nodes[at].load) {
        admin_reply_error(r, 409, "cannot remove blob server %llu: it is still a member of %u "
                          "partition(s); drain it first", (unsigned long long)id,
                          v->nodes[at].load);
        return;
    }
    set_state(p, r, id, INDEX_NODE_RETIRED, 204);
}

/* ---- proxies: the Raft group ---------------------------------------------------------------- */

static const char *role_name(int role)
{
    return role == CONSENSUS_VOTER ? "voter" : role == CONSENSUS_STANDBY ? "standby" : "spare";
}

/* The leader hears from proxy ID: libraft's recent contact, or our own
 * connection to it (libraft clears the former at every election timeout,
 * so right after one it says no for a heartbeat's time). */
static bool answers(struct proxy *p, uint64_t id)
{
    struct link *l = proxy_peers_link(p, id);
    return consensus_reachable(p->cons, id) || (l && link_is_up(l));
}

void proxy_shape_proxies_json(struct proxy *p, cJSON *out)
{
    struct consensus_server srv[RIO_MAX_PEERS];
    unsigned n = BD_MIN(consensus_servers(p->cons, srv, RIO_MAX_PEERS), (unsigned)RIO_MAX_PEERS);
    if (!n) { /* joining, no configuration yet: this proxy alone */
        srv[0] = (struct consensus_server){.id = p->cfg->id, .role = CONSENSUS_SPARE};
        util_strlcpy(srv[0].addr, p->cfg->listen, sizeof(srv[0].addr));
        n = 1;
    }
    uint64_t leader = consensus_leader(p->cons, NULL);
    bool leading = consensus_is_leader(p->cons);
    for (unsigned i = 0; i < n; i++) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "id", (double)srv[i].id);
        cJSON_AddStringToObject(j, "addr", srv[i].addr);
        cJSON_AddStringToObject(j, "role", role_name(srv[i].role));
        cJSON_AddBoolToObject(j, "leader", srv[i].id == leader);
        if (srv[i].id == p->cfg->id) {
            cJSON_AddStringToObject(j, "state", consensus_state_name(consensus_state(p->cons)));
            cJSON_AddNumberToObject(j, "term", (double)consensus_term(p->cons));
            cJSON_AddNumberToObject(j, "commit_index", (double)consensus_commit_index(p->cons));
            cJSON_AddNumberToObject(j, "applied_index", (double)consensus_last_applied(p->cons));
            struct consensus_stats cs;
            consensus_get_stats(p->cons, &cs);
            cJSON_AddNumberToObject(j, "snapshots_stored", (double)cs.log.snapshots);
        } else {
            struct link *l = proxy_peers_link(p, srv[i].id);
            bool up = leading ? answers(p, srv[i].id) : l && link_is_up(l);
            cJSON_AddStringToObject(j, "state", srv[i].id == leader ? "leader"
                                                : up ? "follower" : "unreachable");
        }
        cJSON_AddItemToArray(out, j);
    }
}

/* Membership changes are made by the leader: elsewhere 421 names it, and
 * `blockd ctl` tries the next proxy. */
static bool on_leader(struct proxy *p, struct admin_req *r)
{
    if (consensus_is_leader(p->cons)) return true;
    uint64_t leader = consensus_leader(p->cons, NULL);
    admin_reply_error(r, 421, "proxy %llu is not the Raft leader (the leader is %s%llu); ask "
                      "the leader", (unsigned long long)p->cfg->id, leader ? "proxy " : "unknown",
                      (unsigned long long)leader);
    return false;
}

/* A proxy of the configuration by id: its index in SRV, or -1. */
static int member(const struct consensus_server *srv, unsigned n, uint64_t id)
{
    for (unsigned i = 0; i < n; i++)
        if (srv[i].id == id) return (int)i;
    return -1;
}

/* A membership change on its way (add or remove). */
struct pchange {
    struct pending pd;
    struct consensus_change ch;
    uint64_t id;
    char addr[CFG_ADDR_MAX];
    bool add;
};

static void on_pchange(struct consensus_change *ch, int err)
{
    struct pchange *pc = bd_container_of(ch, struct pchange, ch);
    struct proxy *p = pc->pd.p;
    pending_del(&pc->pd);
    if (!pc->pd.r) {
        /* detached */
    } else if (err) {
        admin_reply_error(pc->pd.r, err == -BD_ENOTLEADER ? 421 : err == -EBUSY ? 409 : 503,
                          "proxy %llu: %s", (unsigned long long)pc->id,
                          err == -BD_ENOTLEADER ? "leadership moved before the change committed; "
                                                  "check GET /v1/proxies and try again"
                          : err == -EBUSY ? "another membership change is in progress"
                                          : bd_strerror(err));
    } else if (pc->add) {
        log_info(p->tag, "proxy %llu at %s added as a spare; it becomes a voter once caught up",
                 (unsigned long long)pc->id, pc->addr);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double)pc->id);
        cJSON_AddStringToObject(o, "addr", pc->addr);
        cJSON_AddStringToObject(o, "role", "spare");
        cJSON_AddStringToObject(o, "note", "catching up: it votes once it holds the log "
                                           "(GET /v1/proxies shows its role)");
        admin_reply_json(pc->pd.r, 202, o);
    } else {
        log_info(p->tag, "proxy %llu removed from the Raft group", (unsigned long long)pc->id);
        admin_reply_json(pc->pd.r, 204, NULL);
    }
    free(pc);
}

static void on_proxies_get(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    if (admin_req_tail(r)[0]) {
        admin_reply_error(r, 404, "no such endpoint");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    proxy_shape_proxies_json(p, cJSON_AddArrayToObject(o, "proxies"));
    cJSON_AddNumberToObject(o, "leader", (double)consensus_leader(p->cons, NULL));
    cJSON_AddBoolToObject(o, "changing", consensus_changing(p->cons));
    admin_reply_json(r, 200, o);
}

static void on_proxies_post(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    static const char *const keys[] = {"id", "addr", NULL};
    size_t len;
    const char *body = admin_req_body(r, &len);
    struct jsonv_doc d;
    uint64_t id;
    const char *addr;
    if (jsonv_parse(&d, "body", body, len, ADMIN_MAX_DEPTH) < 0 ||
        jsonv_check_keys(&d, d.root, "", keys) < 0 ||
        jsonv_get_u64(&d, d.root, "", "id", true, 1, UINT32_MAX, &id) < 0 ||
        jsonv_get_str(&d, d.root, "", "addr", true, 1, CFG_ADDR_MAX - 1, &addr) < 0) {
        admin_reply_error(r, 400, "%s", d.err);
        jsonv_free(&d);
        return;
    }
    struct sockaddr_storage ss;
    socklen_t slen;
    if (util_parse_addr(addr, &ss, &slen) < 0) {
        admin_reply_error(r, 400, "addr: \"%s\" is not \"host:port\" (numeric host) or "
                          "\"unix:/path\"", addr);
        jsonv_free(&d);
        return;
    }
    struct pchange *pc = calloc(1, sizeof(*pc));
    if (!pc) {
        jsonv_free(&d);
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    *pc = (struct pchange){.pd = {.p = p, .r = r}, .id = id, .add = true};
    util_strlcpy(pc->addr, addr, sizeof(pc->addr));
    jsonv_free(&d);
    if (!on_leader(p, r)) {
        free(pc);
        return;
    }
    struct consensus_server srv[RIO_MAX_PEERS];
    unsigned n = BD_MIN(consensus_servers(p->cons, srv, RIO_MAX_PEERS), (unsigned)RIO_MAX_PEERS);
    int at = member(srv, n, id);
    const char *no = NULL;
    char why[200];
    if (at >= 0) {
        snprintf(why, sizeof(why), "proxy %llu is already a member (%s at %s)",
                 (unsigned long long)id, role_name(srv[at].role), srv[at].addr);
        no = why;
    }
    for (unsigned i = 0; !no && i < n; i++)
        if (strcmp(srv[i].addr, pc->addr) == 0) {
            snprintf(why, sizeof(why), "address %s is already in use by proxy %llu", pc->addr,
                     (unsigned long long)srv[i].id);
            no = why;
        }
    if (!no && n >= RIO_MAX_PEERS) {
        snprintf(why, sizeof(why), "the group has %u proxies, the most it may have", n);
        no = why;
    }
    if (!no && consensus_changing(p->cons)) no = "another membership change is in progress";
    if (no) {
        admin_reply_error(r, 409, "cannot add proxy %llu: %s", (unsigned long long)id, no);
        free(pc);
        return;
    }
    if (!pending_add(&pc->pd)) {
        free(pc);
        return;
    }
    int rc = consensus_add(p->cons, &pc->ch, id, pc->addr, on_pchange);
    if (rc < 0) on_pchange(&pc->ch, rc);
}

static void on_proxies_delete(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    const char *t = admin_req_tail(r);
    char *end;
    errno = 0;
    unsigned long long id = strtoull(t, &end, 10);
    if (t[0] < '1' || t[0] > '9' || errno || *end || id > UINT32_MAX) {
        admin_reply_error(r, 400, "a proxy id is a number from 1 to 4294967295");
        return;
    }
    if (!on_leader(p, r)) return;
    struct consensus_server srv[RIO_MAX_PEERS];
    unsigned n = BD_MIN(consensus_servers(p->cons, srv, RIO_MAX_PEERS), (unsigned)RIO_MAX_PEERS);
    int at = member(srv, n, id);
    if (at < 0) {
        admin_reply_error(r, 400, "unknown proxy %llu: not a member of the Raft group", id);
        return;
    }
    /* The voters left must still make a majority among themselves with
     * the ones the leader hears from now, or the group stops. */
    unsigned voters = 0, reachable = 0;
    for (unsigned i = 0; i < n; i++) {
        if (srv[i].role != CONSENSUS_VOTER || srv[i].id == id) continue;
        voters++;
        reachable += answers(p, srv[i].id);
    }
    char why[200];
    const char *no = NULL;
    if (voters == 0) {
        no = "it is the last voter";
    } else if (srv[at].role == CONSENSUS_VOTER && reachable * 2 <= voters) {
        snprintf(why, sizeof(why), "only %u of the %u voters that would remain answer the "
                 "leader: that is no majority", reachable, voters);
        no = why;
    } else if (consensus_changing(p->cons)) {
        no = "another membership change is in progress";
    }
    if (no) {
        admin_reply_error(r, 409, "cannot remove proxy %llu: %s", id, no);
        return;
    }
    struct pchange *pc = calloc(1, sizeof(*pc));
    if (!pc) {
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    *pc = (struct pchange){.pd = {.p = p, .r = r}, .id = id};
    if (!pending_add(&pc->pd)) {
        free(pc);
        return;
    }
    int rc = consensus_remove(p->cons, &pc->ch, id, on_pchange);
    if (rc < 0) on_pchange(&pc->ch, rc);
}

static void on_promoted(struct consensus_change *ch, int err)
{
    struct proxy_shape_state *st = bd_container_of(ch, struct proxy_shape_state, promote);
    struct proxy *p = ch->data;
    st->promoting = false;
    if (err)
        log_warn(p->tag, "promoting proxy %llu to voter: %s (tried again later)",
                 (unsigned long long)st->promotee, bd_strerror(err));
    else
        log_info(p->tag, "proxy %llu caught up and votes", (unsigned long long)st->promotee);
}

void proxy_shape_tick(struct proxy *p)
{
    if (!p->cons || !consensus_is_leader(p->cons) || consensus_changing(p->cons)) return;
    struct proxy_shape_state *st = state(p);
    if (!st || st->promoting) return;
    struct consensus_server srv[RIO_MAX_PEERS];
    unsigned n = BD_MIN(consensus_servers(p->cons, srv, RIO_MAX_PEERS), (unsigned)RIO_MAX_PEERS);
    for (unsigned i = 0; i < n; i++) {
        if (srv[i].role == CONSENSUS_VOTER) continue;
        st->promotee = srv[i].id;
        st->promote.data = p;
        if (consensus_promote(p->cons, &st->promote, srv[i].id, on_promoted) == 0) {
            st->promoting = true;
            log_info(p->tag, "catching proxy %llu up to make it a voter",
                     (unsigned long long)srv[i].id);
        }
        return;
    }
}

void proxy_shape_stop(struct proxy *p)
{
    struct proxy_shape_state *st = p->shape;
    if (!st) return;
    for (struct pending *pd = st->pending; pd; pd = pd->next) pd->r = NULL;
}

void proxy_shape_fini(struct proxy *p)
{
    free(p->shape);
    p->shape = NULL;
}

int proxy_shape_routes(struct proxy *p)
{
    int rc = admin_route(p->admin, "GET", "/v1/nodes", false, on_list, p);
    if (!rc) rc = admin_route(p->admin, "GET", "/v1/nodes/*", false, on_get, p);
    if (!rc) rc = admin_route(p->admin, "POST", "/v1/nodes/*", true, on_post, p);
    if (!rc) rc = admin_route(p->admin, "DELETE", "/v1/nodes/*", true, on_delete, p);
    if (!rc) rc = admin_route(p->admin, "GET", "/v1/proxies", false, on_proxies_get, p);
    if (!rc) rc = admin_route(p->admin, "POST", "/v1/proxies", true, on_proxies_post, p);
    if (!rc) rc = admin_route(p->admin, "DELETE", "/v1/proxies/*", true, on_proxies_delete, p);
    return rc;
}
