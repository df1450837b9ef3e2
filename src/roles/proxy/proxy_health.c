/* proxy_health.c: /v1/health's inputs, since when, clock probes and the
 * health gauges (see proxy_health.h; the checks are healthplan.c's).
 *
 * One evaluation (evaluate()) gathers struct healthplan_in from this
 * proxy's state: consensus (term, leader, indexes, the leader's view of
 * each follower's match index), the peer links (reachable), the blob pool
 * (heartbeat age, figures, up), the index's node list (servers registered
 * but never heard since we started), the cached partition table, the
 * index's page count against its map size, and the clock probes.  It runs
 * on every answer and on the tick; each run updates `since` per code: a
 * code keeps the time it first appeared while it keeps failing, and is
 * forgotten the first time it passes.  Where the inputs say when a
 * condition began (a server's last heartbeat, the last known leader),
 * that time is used instead.
 *
 * Clock probes: CLOCK to each target every PROXY_HEALTH_PROBE_MS; skew =
 * theirs - (sent + received) / 2 of ours, so a slow network biases it by
 * at most half the round trip, which the answer states.  A measurement
 * older than three intervals (the node went quiet) is dropped, not shown.  A probe in
 * flight when the module stops is orphaned (its owner pointer cleared)
 * and frees itself when its callback runs, which the blob pool and the
 * links promise exactly once.
 *
 * Agent journals: agents do not report their journals to the proxies yet;
 * the input says so ("available": false) and the check is skipped.  When
 * a report exists, gather_journals() is the one place to fill it. */
#include "roles/proxy/proxy_health.h"
#include "roles/proxy/healthplan.h"
#include "roles/proxy/proxy_blobs.h"
#include "roles/proxy/proxy_index.h"
#include "roles/proxy/proxy_int.h"
#include "roles/proxy/proxy_peers.h"
#include "base/bd.h"
#include "base/util.h"
#include "net/link.h"
#include "net/wire.h"
#include "runtime/log.h"
#include "runtime/metrics.h"

#include <event2/event.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PARTS_LOW_MAX 16

enum target_kind { TARGET_BLOB, TARGET_PROXY };

/* A node we probe and export gauges for; allocated one by one so gauge
 * callbacks can hold a stable pointer. */
struct target {
    struct proxy_health *h;
    enum target_kind kind;
    uint64_t id;
    bool has_skew;
    int64_t skew_ms;
    uint64_t rtt_ms;
    uint64_t skew_at_ms;       /* monotonic, when measured */
    bool probing;
    struct target *next;
};

struct probe {
    struct proxy_health *h;    /* NULL once the module stopped */
    struct target *t;
    uint64_t sent_us;          /* our wall clock at send */
    struct proxy_blobs_call bc;
    struct conn_call cc;
    struct probe *next;        /* in h->probes */
};

struct parts_gauge {
    struct proxy_health *h;
    unsigned up;                /* replicas up: the gauge's label */
};

struct since {
    const char *code;
    uint64_t since_ms;         /* monotonic */
};

struct proxy_health {
    struct proxy *p;
    struct event *tick;
    uint64_t start_ms;
    uint64_t leader_seen_ms;   /* monotonic, last time a leader was known; 0 never */
    uint64_t last_probe_ms;
    struct target *targets;
    struct probe *probes;
    struct since since[HEALTHPLAN_MAX_CHECKS];
    unsigned n_since;
    enum healthplan_sev status;
    /* the last evaluation's partition counts and index figures (gauges) */
    unsigned parts_by_up[4];
    bool parts_known;
    uint64_t index_used, index_map;
    bool index_known;
    struct parts_gauge pg[4];
};

static uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- targets and their gauges ------------------------------------------------------ */

/* A skew measured within the last three probe intervals: an older one (a
 * node gone quiet) is not shown as current. */
#define SKEW_FRESH_MS (3 * PROXY_HEALTH_PROBE_MS)
static bool skew_fresh(const struct target *t, uint64_t now)
{
    return t->has_skew && now - t->skew_at_ms <= SKEW_FRESH_MS;
}

static double g_skew(void *arg)
{
    struct target *t = arg;
    return skew_fresh(t, util_mono_ms()) ? (double)t->skew_ms / 1000.0 : NAN;
}

static double g_node_up(void *arg)
{
    struct target *t = arg;
    return proxy_blobs_is_up(t->h->p->blobs, t->id) ? 1 : 0;
}

static double g_node_age(void *arg)
{
    struct target *t = arg;
    struct proxy_blobs_node info;
    if (proxy_blobs_info(t->h->p->blobs, t->id, &info) && info.last_seen_ms)
        return (double)(util_mono_ms() - info.last_seen_ms) / 1000.0;
    return NAN;
}

static double g_peer_lag(void *arg)
{
    struct target *t = arg;
    uint64_t match;
    bool recent;
    struct proxy *p = t->h->p;
    if (consensus_peer_progress(p->cons, t->id, &match, &recent) < 0) return NAN;
    uint64_t last = consensus_last_index(p->cons);
    return last > match ? (double)(last - match) : 0;
}

static struct target *target_get(struct proxy_health *h, enum target_kind kind, uint64_t id)
{
    for (struct target *t = h->targets; t; t = t->next)
        if (t->kind == kind && t->id == id) return t;
    struct target *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    t->h = h;
    t->kind = kind;
    t->id = id;
    t->next = h->targets;
    h->targets = t;
    char l[128];
    snprintf(l, sizeof(l), "role=\"%s\",node=\"%s.%llu\"", h->p->tag,
             kind == TARGET_BLOB ? "blob" : "proxy", (unsigned long long)id);
    metrics_gauge("blockd_clock_skew_seconds",
                  "The node's wall clock minus this proxy's (CLOCK probes; NaN until measured)",
                  l, g_skew, t, h);
    if (kind == TARGET_BLOB) {
        snprintf(l, sizeof(l), "role=\"%s\",node=\"%llu\"", h->p->tag, (unsigned long long)id);
        metrics_gauge("blockd_proxy_blob_server_up",
                      "1 while the blob server's heartbeats arrive within node_timeout_ms", l,
                      g_node_up, t, h);
        metrics_gauge("blockd_proxy_blob_server_heartbeat_age_seconds",
                      "Seconds since the blob server's last heartbeat (NaN: never heard)", l,
                      g_node_age, t, h);
    } else {
        snprintf(l, sizeof(l), "role=\"%s\",peer=\"%llu\"", h->p->tag, (unsigned long long)id);
        metrics_gauge("blockd_raft_peer_lag_entries",
                      "On the leader: entries a peer proxy lacks (NaN on followers)", l,
                      g_peer_lag, t, h);
    }
    return t;
}

/* ---- clock probes ---------------------------------------------------------------- */

static void probe_unlink(struct probe *pr)
{
    if (!pr->h) return;
    for (struct probe **pp = &pr->h->probes; *pp; pp = &(*pp)->next)
        if (*pp == pr) {
            *pp = pr->next;
            break;
        }
    pr->t->probing = false;
}

static void probe_done(struct probe *pr, int err, struct conn_frame *f)
{
    if (!pr->h) { /* the module stopped meanwhile */
        free(pr);
        return;
    }
    probe_unlink(pr);
    struct wire_clock_resp r;
    if (err == 0 && wire_decode_clock_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) == 0) {
        uint64_t recv_us = wall_us();
        int64_t mid = (int64_t)(pr->sent_us / 2 + recv_us / 2);
        struct target *t = pr->t;
        t->skew_ms = ((int64_t)r.wall_us - mid) / 1000;
        t->rtt_ms = (recv_us - pr->sent_us) / 1000;
        t->has_skew = true;
        t->skew_at_ms = util_mono_ms();
    } else if (err != -ESHUTDOWN && err != -ECANCELED) {
        log_debug(pr->h->p->tag, "clock probe of %s %llu: %s",
                  pr->t->kind == TARGET_BLOB ? "blob server" : "proxy",
                  (unsigned long long)pr->t->id, bd_strerror(err));
    }
    free(pr);
}

static void on_blob_probe(struct proxy_blobs_call *pc, int err, struct conn_frame *f)
{
    probe_done(pc->data, err, f);
}

static void on_peer_probe(struct conn_call *cc, int err, struct conn_frame *f)
{
    probe_done(cc->data, err, f);
}

static void probe(struct proxy_health *h, struct target *t, struct link *peer)
{
    if (t->probing) return;
    struct probe *pr = calloc(1, sizeof(*pr));
    if (!pr) return;
    pr->h = h;
    pr->t = t;
    pr->sent_us = wall_us();
    struct wire_clock_req q = {.wall_us = pr->sent_us};
    uint8_t fields[16];
    int n = wire_encode_clock_req(fields, sizeof(fields), &q);
    t->probing = true;
    pr->next = h->probes;
    h->probes = pr;
    if (t->kind == TARGET_BLOB) {
        pr->bc = (struct proxy_blobs_call){.cb = on_blob_probe, .data = pr, .node = t->id};
        proxy_blobs_call(h->p->blobs, &pr->bc, WIRE_CLOCK, fields, (size_t)n, NULL);
        return;
    }
    pr->cc = (struct conn_call){.cb = on_peer_probe, .data = pr};
    if (link_call(peer, &pr->cc, WIRE_CLOCK, fields, (size_t)n, NULL, 5000) < 0) {
        probe_unlink(pr);
        free(pr);
    }
}

static void probe_all(struct proxy_health *h)
{
    struct proxy *p = h->p;
    struct proxy_blobs_node *info;
    unsigned n;
    if (proxy_blobs_list(p->blobs, &info, &n) == 0) {
        for (unsigned i = 0; i < n; i++) {
            struct target *t = target_get(h, TARGET_BLOB, info[i].id);
            if (t && info[i].up) probe(h, t, NULL);
        }
        free(info);
    }
    /* The proxies of the Raft configuration, which changes (proxy_peers). */
    struct consensus_server sv[CFG_MAX_PEERS];
    unsigned ns = BD_MIN(consensus_servers(p->cons, sv, CFG_MAX_PEERS), CFG_MAX_PEERS);
    for (unsigned i = 0; i < ns; i++) {
        if (sv[i].id == p->cfg->id) continue;
        struct target *t = target_get(h, TARGET_PROXY, sv[i].id);
        struct link *l = proxy_peers_link(p, sv[i].id);
        if (t && l && link_is_up(l)) probe(h, t, l);
    }
}

/* ---- evaluation ------------------------------------------------------------------- */

/* Everything an evaluation gathered, with the storage its pointers use. */
struct gathered {
    struct healthplan_in in;
    struct healthplan_proxy proxies[CFG_MAX_PEERS];
    struct healthplan_node *nodes; /* heap, cap_nodes of them (no fixed cap) */
    char (*addrs)[128];
    unsigned cap_nodes;
    uint32_t parts_low[PARTS_LOW_MAX];
    bool index_read;           /* the node list came from the index */
    uint64_t applied;          /* the index's applied entry */
    struct healthplan_check checks[HEALTHPLAN_MAX_CHECKS];
    unsigned n_checks;
};

static void gathered_free(struct gathered *g)
{
    free(g->nodes);
    free(g->addrs);
    free(g);
}

static struct healthplan_node *node_slot(struct gathered *g, uint64_t id)
{
    for (unsigned i = 0; i < g->in.n_nodes; i++)
        if (g->nodes[i].id == id) return &g->nodes[i];
    if (g->in.n_nodes == g->cap_nodes) {
        unsigned cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
        struct healthplan_node *nn = realloc(g->nodes, cap * sizeof(*nn));
        if (nn) g->nodes = nn;
        char(*na)[128] = nn ? realloc(g->addrs, cap * sizeof(*na)) : NULL;
        if (na) g->addrs = na;
        if (!nn || !na) return NULL;
        g->cap_nodes = cap;
        for (unsigned i = 0; i < g->in.n_nodes; i++) g->nodes[i].addr = g->addrs[i];
    }
    struct healthplan_node *n = &g->nodes[g->in.n_nodes];
    memset(n, 0, sizeof(*n));
    n->id = id;
    n->age_ms = HEALTHPLAN_NEVER;
    n->addr = g->addrs[g->in.n_nodes];
    g->addrs[g->in.n_nodes][0] = 0;
    g->in.n_nodes++;
    return n;
}

static void gather_raft(struct proxy_health *h, struct gathered *g, uint64_t now)
{
    struct proxy *p = h->p;
    struct healthplan_in *in = &g->in;
    in->self_id = p->cfg->id;
    in->leader_id = consensus_leader(p->cons, NULL);
    in->has_leader = in->leader_id != 0;
    in->is_leader = consensus_is_leader(p->cons);
    in->term = consensus_term(p->cons);
    in->commit_index = consensus_commit_index(p->cons);
    in->applied_index = consensus_last_applied(p->cons);
    in->last_index = consensus_last_index(p->cons);
    if (in->has_leader) h->leader_seen_ms = now;
    in->no_leader_ms = in->has_leader ? 0 : now - (h->leader_seen_ms ? h->leader_seen_ms : h->start_ms);
    in->lag_entries = PROXY_HEALTH_LAG_ENTRIES;
    struct consensus_server sv[CFG_MAX_PEERS];
    unsigned ns = BD_MIN(consensus_servers(p->cons, sv, CFG_MAX_PEERS), CFG_MAX_PEERS);
    for (unsigned i = 0; i < ns; i++) {
        struct healthplan_proxy *hp = &g->proxies[in->n_proxies++];
        memset(hp, 0, sizeof(*hp));
        hp->id = sv[i].id;
        hp->self = hp->id == p->cfg->id;
        bool recent = false;
        uint64_t match = 0;
        if (consensus_peer_progress(p->cons, hp->id, &match, &recent) == 0) {
            /* The leader knows who answered within the election timeout. */
            hp->has_match = !hp->self;
            hp->match_index = match;
            hp->reachable = recent;
        } else {
            struct link *l = proxy_peers_link(p, hp->id);
            hp->reachable = l && link_is_up(l);
        }
        for (struct target *t = h->targets; t; t = t->next)
            if (t->kind == TARGET_PROXY && t->id == hp->id && skew_fresh(t, now)) {
                hp->has_skew = true;
                hp->skew_ms = t->skew_ms;
            }
    }
    in->proxies = g->proxies;
}

static void gather_nodes(struct proxy_health *h, struct gathered *g, uint64_t now)
{
    struct proxy *p = h->p;
    /* Registered servers first (so one never heard still counts)... */
    if (proxy_index_read_begin(p) == 0) {
        g->index_read = true;
        g->applied = index_applied(p->rd);
        struct index_node nd[64];
        uint32_t n = 0;
        uint64_t after = 0;
        do {
            if (index_node_list(p->rd, after, nd, 64, &n) < 0) break;
            for (uint32_t i = 0; i < n; i++) {
                struct healthplan_node *hn = node_slot(g, nd[i].id);
                if (hn) util_strlcpy((char *)hn->addr, nd[i].addr, 128);
            }
            if (n) after = nd[n - 1].id;
        } while (n == 64);
        struct index_stats st;
        if (index_stats(p->rd, &st) == 0) {
            g->in.index_known = true;
            g->in.index_used = st.pages * st.page_size;
            g->in.index_map = p->cfg->index_map_bytes;
        }
        proxy_index_read_end(p);
    }
    /* ...then what heartbeats say. */
    struct proxy_blobs_node *info;
    unsigned n = 0;
    if (proxy_blobs_list(p->blobs, &info, &n) < 0) info = NULL;
    for (unsigned i = 0; i < n; i++) {
        struct healthplan_node *hn = node_slot(g, info[i].id);
        if (!hn) continue;
        util_strlcpy((char *)hn->addr, info[i].addr, 128);
        hn->up = info[i].up;
        hn->read_only = info[i].read_only;
        hn->age_ms = info[i].last_seen_ms ? now - info[i].last_seen_ms : HEALTHPLAN_NEVER;
        hn->capacity = info[i].capacity;
        hn->used = info[i].used;
        hn->n_bad = info[i].n_bad;
    }
    free(info);
    for (unsigned i = 0; i < g->in.n_nodes; i++) {
        struct healthplan_node *hn = &g->nodes[i];
        struct target *t = target_get(h, TARGET_BLOB, hn->id);
        if (t && skew_fresh(t, now)) {
            hn->has_skew = true;
            hn->skew_ms = t->skew_ms;
        }
    }
    g->in.nodes = g->nodes;
    g->in.uptime_ms = now - h->start_ms;
    g->in.node_timeout_ms = p->cfg->node_timeout_ms;
    g->in.near_full_pct = 85;
    g->in.full_pct = 95;
    g->in.skew_bound_ms = PROXY_HEALTH_SKEW_MS;
}

static void gather_parts(struct proxy_health *h, struct gathered *g)
{
    struct proxy *p = h->p;
    unsigned n;
    const struct index_part *parts = proxy_index_parts(p, &n);
    g->in.parts_known = n > 0 || g->index_read;
    for (unsigned i = 0; i < n; i++) {
        unsigned up = 0;
        for (int k = 0; k < 3; k++)
            if (proxy_blobs_is_up(p->blobs, parts[i].nodes[k])) up++;
        g->in.parts_by_up[up]++;
        if (up < 3 && g->in.n_parts_low < PARTS_LOW_MAX) g->parts_low[g->in.n_parts_low++] = parts[i].id;
    }
    g->in.parts_low = g->parts_low;
}

/* Agents do not report their journals to the proxies yet (see the file
 * comment); journals_known stays false until they do. */
static void gather_journals(struct proxy_health *h, struct gathered *g)
{
    (void)h;
    g->in.journals_known = false;
    g->in.n_journals = 0;
}

static void track_since(struct proxy_health *h, struct gathered *g, uint64_t now)
{
    struct since next[HEALTHPLAN_MAX_CHECKS];
    unsigned n = 0;
    for (unsigned i = 0; i < g->n_checks; i++) {
        struct healthplan_check *c = &g->checks[i];
        uint64_t since = now;
        for (unsigned k = 0; k < h->n_since; k++)
            if (strcmp(h->since[k].code, c->code) == 0) since = h->since[k].since_ms;
        if (c->since_ago_ms && now - c->since_ago_ms < since) since = now - c->since_ago_ms;
        next[n++] = (struct since){.code = c->code, .since_ms = since};
        c->since_ago_ms = now - since;
    }
    memcpy(h->since, next, n * sizeof(next[0]));
    h->n_since = n;
}

static void evaluate(struct proxy_health *h, struct gathered *g)
{
    uint64_t now = util_mono_ms();
    memset(g, 0, sizeof(*g));
    gather_raft(h, g, now);
    gather_nodes(h, g, now);
    gather_parts(h, g);
    gather_journals(h, g);
    g->n_checks = healthplan_eval(&g->in, g->checks, HEALTHPLAN_MAX_CHECKS);
    track_since(h, g, now);
    h->status = healthplan_worst(g->checks, g->n_checks);
    memcpy(h->parts_by_up, g->in.parts_by_up, sizeof(h->parts_by_up));
    h->parts_known = g->in.parts_known;
    h->index_known = g->in.index_known;
    h->index_used = g->in.index_used;
    h->index_map = g->in.index_map;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct proxy_health *h = arg;
    struct gathered *g = malloc(sizeof(*g));
    if (g) {
        evaluate(h, g);
        gathered_free(g);
    }
    uint64_t now = util_mono_ms();
    if (now - h->last_probe_ms >= PROXY_HEALTH_PROBE_MS) {
        h->last_probe_ms = now;
        probe_all(h);
    }
}

/* ---- gauges ---------------------------------------------------------------------- */

static double g_has_leader(void *arg)
{
    struct proxy_health *h = arg;
    return consensus_leader(h->p->cons, NULL) ? 1 : 0;
}
static double g_last_index(void *arg)
{
    return (double)consensus_last_index(((struct proxy_health *)arg)->p->cons);
}
static double g_status(void *arg)
{
    return (double)((struct proxy_health *)arg)->status;
}
static double g_index_used(void *arg)
{
    struct proxy_health *h = arg;
    return h->index_known ? (double)h->index_used : NAN;
}
static double g_index_map(void *arg)
{
    return (double)((struct proxy_health *)arg)->p->cfg->index_map_bytes;
}


static double g_parts(void *arg)
{
    struct parts_gauge *pg = arg;
    return pg->h->parts_known ? (double)pg->h->parts_by_up[pg->up] : NAN;
}

static void gauges(struct proxy_health *h)
{
    struct parts_gauge *pg = h->pg;
    char l[96];
    snprintf(l, sizeof(l), "role=\"%s\"", h->p->tag);
    metrics_gauge("blockd_raft_has_leader", "1 while this proxy knows a Raft leader", l,
                  g_has_leader, h, h);
    metrics_gauge("blockd_raft_last_index", "Last entry in this proxy's Raft log", l,
                  g_last_index, h, h);
    metrics_gauge("blockd_health_status", "Worst /v1/health check: 0 ok, 1 warn, 2 error", l,
                  g_status, h, h);
    metrics_gauge("blockd_index_used_bytes", "Index pages in use (LMDB tables)", l, g_index_used,
                  h, h);
    metrics_gauge("blockd_index_map_bytes", "The index's map size (index_map_bytes)", l,
                  g_index_map, h, h);
    for (unsigned up = 0; up < 4; up++) {
        pg[up] = (struct parts_gauge){.h = h, .up = up};
        char pl[128];
        snprintf(pl, sizeof(pl), "%s,replicas_up=\"%u\"", l, up);
        metrics_gauge("blockd_proxy_partitions",
                      "Partitions by how many of their 3 blob servers are up", pl, g_parts,
                      &pg[up], h);
    }
}

/* ---- the answer ------------------------------------------------------------------ */

static void num_or_null(cJSON *o, const char *k, bool have, double v)
{
    if (have) cJSON_AddNumberToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

static const char *state_word(enum healthplan_sev s)
{
    return s == HEALTHPLAN_ERR ? "at risk" : s == HEALTHPLAN_WARN ? "degraded" : "ok";
}

static void inputs_json(struct proxy_health *h, const struct gathered *g, cJSON *out,
                        uint64_t now)
{
    struct proxy *p = h->p;
    const struct healthplan_in *in = &g->in;
    /* The index is current while this proxy follows a leader and has
     * applied what it knows committed; otherwise say how stale it may be. */
    bool current = in->has_leader && in->applied_index + in->lag_entries >= in->commit_index;
    cJSON *inp = cJSON_AddObjectToObject(out, "inputs");

    cJSON *r = cJSON_AddObjectToObject(inp, "raft");
    cJSON_AddStringToObject(r, "source", "this proxy's Raft state");
    cJSON_AddNumberToObject(r, "age_ms", 0);
    cJSON_AddStringToObject(r, "state", consensus_state_name(consensus_state(p->cons)));
    cJSON_AddNumberToObject(r, "term", (double)in->term);
    cJSON_AddNumberToObject(r, "leader_id", (double)in->leader_id);
    cJSON_AddNumberToObject(r, "commit_index", (double)in->commit_index);
    cJSON_AddNumberToObject(r, "applied_index", (double)in->applied_index);
    cJSON_AddNumberToObject(r, "last_index", (double)in->last_index);
    cJSON_AddNumberToObject(r, "no_leader_ms", (double)in->no_leader_ms);
    cJSON *peers = cJSON_AddArrayToObject(r, "proxies");
    for (unsigned i = 0; i < in->n_proxies; i++) {
        const struct healthplan_proxy *hp = &in->proxies[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "id", (double)hp->id);
        cJSON_AddBoolToObject(j, "self", hp->self);
        cJSON_AddBoolToObject(j, "reachable", hp->self || hp->reachable);
        num_or_null(j, "match_index", hp->has_match, (double)hp->match_index);
        num_or_null(j, "lag_entries", hp->has_match,
                    in->last_index > hp->match_index ? (double)(in->last_index - hp->match_index) : 0);
        num_or_null(j, "skew_ms", hp->has_skew, (double)hp->skew_ms);
        const struct target *t = NULL;
        for (const struct target *x = h->targets; x; x = x->next)
            if (x->kind == TARGET_PROXY && x->id == hp->id) t = x;
        num_or_null(j, "skew_age_ms", hp->has_skew, t ? (double)(now - t->skew_at_ms) : 0);
        cJSON_AddItemToArray(peers, j);
    }

    cJSON *b = cJSON_AddObjectToObject(inp, "blob_servers");
    cJSON_AddStringToObject(b, "source", "heartbeats to this proxy, and the index's node list");
    cJSON_AddNumberToObject(b, "node_timeout_ms", (double)in->node_timeout_ms);
    cJSON_AddNumberToObject(b, "proxy_uptime_ms", (double)in->uptime_ms);
    cJSON *nodes = cJSON_AddArrayToObject(b, "nodes");
    for (unsigned i = 0; i < in->n_nodes; i++) {
        const struct healthplan_node *n = &in->nodes[i];
        bool heard = n->age_ms != HEALTHPLAN_NEVER;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "id", (double)n->id);
        cJSON_AddStringToObject(j, "addr", n->addr);
        cJSON_AddBoolToObject(j, "up", n->up);
        num_or_null(j, "age_ms", heard, (double)n->age_ms);
        /* Figures from the last heartbeat: as old as age_ms says. */
        num_or_null(j, "capacity", heard, (double)n->capacity);
        num_or_null(j, "used", heard, (double)n->used);
        num_or_null(j, "bad_blobs", heard, n->n_bad);
        cJSON_AddBoolToObject(j, "read_only", n->read_only);
        const struct target *t = NULL;
        for (const struct target *x = h->targets; x; x = x->next)
            if (x->kind == TARGET_BLOB && x->id == n->id) t = x;
        bool fresh = t && skew_fresh(t, now);
        num_or_null(j, "skew_ms", fresh, t ? (double)t->skew_ms : 0);
        num_or_null(j, "skew_age_ms", fresh, t ? (double)(now - t->skew_at_ms) : 0);
        num_or_null(j, "rtt_ms", fresh, t ? (double)t->rtt_ms : 0);
        cJSON_AddItemToArray(nodes, j);
    }

    cJSON *pt = cJSON_AddObjectToObject(inp, "partitions");
    cJSON_AddStringToObject(pt, "source", "the index's partition table, on this proxy");
    cJSON_AddNumberToObject(pt, "applied_index", (double)in->applied_index);
    cJSON_AddBoolToObject(pt, "current", current);
    num_or_null(pt, "stale_for_ms", !current, (double)in->no_leader_ms);
    cJSON_AddBoolToObject(pt, "known", in->parts_known);
    unsigned total = 0;
    for (int i = 0; i < 4; i++) total += in->parts_by_up[i];
    cJSON_AddNumberToObject(pt, "total", total);
    cJSON *by = cJSON_AddArrayToObject(pt, "by_replicas_up");
    for (int i = 0; i < 4; i++) cJSON_AddItemToArray(by, cJSON_CreateNumber(in->parts_by_up[i]));
    cJSON *low = cJSON_AddArrayToObject(pt, "fewer_than_3");
    for (unsigned i = 0; i < in->n_parts_low; i++)
        cJSON_AddItemToArray(low, cJSON_CreateNumber(in->parts_low[i]));

    cJSON *ix = cJSON_AddObjectToObject(inp, "index");
    cJSON_AddStringToObject(ix, "source", "this proxy's LMDB index");
    cJSON_AddNumberToObject(ix, "applied_index", (double)g->applied);
    cJSON_AddBoolToObject(ix, "current", current);
    num_or_null(ix, "used_bytes", in->index_known, (double)in->index_used);
    cJSON_AddNumberToObject(ix, "map_bytes", (double)p->cfg->index_map_bytes);

    cJSON *aj = cJSON_AddObjectToObject(inp, "agent_journals");
    cJSON_AddBoolToObject(aj, "available", in->journals_known);
    if (!in->journals_known)
        cJSON_AddStringToObject(aj, "why", "agents do not report their journals to the proxies "
                                           "yet; each agent exports "
                                           "blockd_agent_journal_fill_ratio for Prometheus");

    cJSON *ck = cJSON_AddObjectToObject(inp, "clock");
    cJSON_AddStringToObject(ck, "source", "CLOCK probes from this proxy");
    cJSON_AddNumberToObject(ck, "bound_ms", PROXY_HEALTH_SKEW_MS);
    cJSON_AddNumberToObject(ck, "probe_interval_ms", PROXY_HEALTH_PROBE_MS);
    cJSON_AddStringToObject(ck, "accuracy", "within half of each probe's rtt_ms");
}

void proxy_health_json(struct proxy *p, cJSON *out)
{
    struct proxy_health *h = p->health;
    struct gathered *g = h ? malloc(sizeof(*g)) : NULL;
    if (!g) {
        cJSON_AddStringToObject(out, "status", "HEALTH_UNKNOWN");
        cJSON_AddStringToObject(out, "summary", "out of memory");
        return;
    }
    evaluate(h, g);
    uint64_t now = util_mono_ms(), wall = util_wall_ms();
    enum healthplan_sev worst = healthplan_worst(g->checks, g->n_checks);
    cJSON_AddStringToObject(out, "status", healthplan_status_name(worst));
    cJSON_AddStringToObject(out, "state", state_word(worst));
    char sum[800];
    if (!g->n_checks) snprintf(sum, sizeof(sum), "all checks pass");
    else snprintf(sum, sizeof(sum), "%s: %s%s", state_word(worst), g->checks[0].summary,
                  g->n_checks > 1 ? " (and more)" : "");
    cJSON_AddStringToObject(out, "summary", sum);
    cJSON_AddNumberToObject(out, "proxy_id", (double)p->cfg->id);
    cJSON_AddNumberToObject(out, "generated_unix_ms", (double)wall);
    cJSON *arr = cJSON_AddArrayToObject(out, "checks");
    for (unsigned i = 0; i < g->n_checks; i++) {
        const struct healthplan_check *c = &g->checks[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "code", c->code);
        cJSON_AddStringToObject(j, "severity", healthplan_sev_name(c->sev));
        cJSON_AddStringToObject(j, "summary", c->summary);
        cJSON_AddNumberToObject(j, "count", c->count);
        cJSON_AddNumberToObject(j, "since_unix_ms", (double)(wall - c->since_ago_ms));
        cJSON_AddNumberToObject(j, "since_seconds", (double)(c->since_ago_ms / 1000));
        cJSON_AddStringToObject(j, "action", c->action);
        cJSON_AddItemToArray(arr, j);
    }
    inputs_json(h, g, out, now);
    gathered_free(g);
}

/* ---- start, stop ------------------------------------------------------------------- */

int proxy_health_start(struct proxy *p)
{
    struct proxy_health *h = calloc(1, sizeof(*h));
    if (!h) return -ENOMEM;
    h->p = p;
    h->start_ms = util_mono_ms();
    h->last_probe_ms = h->start_ms - PROXY_HEALTH_PROBE_MS + 2000; /* first probes after 2 s */
    h->tick = event_new(reactor_base(p->rx), -1, EV_PERSIST, on_tick, h);
    struct timeval tv = {PROXY_HEALTH_TICK_MS / 1000, (PROXY_HEALTH_TICK_MS % 1000) * 1000};
    if (!h->tick || event_add(h->tick, &tv) < 0) {
        if (h->tick) event_free(h->tick);
        free(h);
        return -ENOMEM;
    }
    gauges(h);
    p->health = h;
    return 0;
}

void proxy_health_stop(struct proxy *p)
{
    struct proxy_health *h = p->health;
    if (!h) return;
    p->health = NULL;
    metrics_remove_owner(h);
    event_free(h->tick);
    for (struct probe *pr = h->probes; pr; pr = pr->next) pr->h = NULL;
    while (h->targets) {
        struct target *t = h->targets;
        h->targets = t->next;
        free(t);
    }
    free(h);
}
