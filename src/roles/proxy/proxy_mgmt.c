/* proxy_mgmt.c: what happens around the data path: reads waiting for an
 * applied index, the blob id lease, blob server heartbeats, and the
 * leader's duties (see proxy_mgmt.h).
 *
 * Applied-index waiters (C7): a read carries the highest raft index its
 * agent was acknowledged; proxy_mgmt_wait_add parks it until this proxy's
 * FSM has applied that index.  The FSM adapter calls proxy_mgmt_on_applied
 * after every entry; the tick fails waiters past their deadline.
 *
 * The blob id lease: every new blob needs an id no other blob ever had.
 * Asking the leader for each one would put a raft round trip in every
 * write, so each proxy leases LEASE_BATCH ids at a time (ALLOC_BLOB_IDS;
 * ids are never reused, so a lease lost with its proxy only wastes a
 * range) and asks for the next range when fewer than LEASE_LOW are left.
 * A write that finds too few parks a struct proxy_mgmt_lease_wait until
 * the answer.
 *
 * Leader duties, every tick, only while this proxy leads:
 *   - register blob servers heard by heartbeat but unknown to the index (or
 *     known under another address): REGISTER_NODE; then their failure
 *     domains: NODE_DOMAIN;
 *   - keep as many partitions as the servers' capacity allows (each
 *     partition_bytes of three servers' disks), members in distinct
 *     failure domains (proxy_plan_new_partition): CREATE_PARTITION;
 *   - GC (C13): for every blob in the index's gc table, wait gc_grace_ms
 *     after this leader first saw it (longer than any read's lifetime, and
 *     restarted from zero by a new leader, which only ever delays), delete
 *     it on its three servers, and once all three confirmed (or never had
 *     it), drop it from the table with GC_DONE;
 *   - reap: while the index's reap table holds layers (a deleted volume or
 *     snapshot too big for one entry; fsm.c "Bounded work"), propose REAP
 *     entries one after another, each as soon as the last is applied, so
 *     writes interleave with them;
 *   - the size limit: propose INDEX_LIMIT whenever the replicated limit
 *     differs from INDEX_FULL_PCT of this proxy's map (index_map_bytes;
 *     at least INDEX_ROOM_MIN_PAGES left over, at most half of a tiny map), so
 *     an index growing towards its map refuses new data (ENOSPC) while it
 *     can still apply everything else, on every replica at the same entry.
 * Followers do none of this; a new leader starts over from the index.
 *
 * Every proxy refreshes its view of the index's size each tick (table
 * pages against the limit) for /metrics and for refusing new writes early
 * (proxy_mgmt_index_full), before any blob is put for them. */
#include "roles/proxy/proxy_mgmt.h"
#include "roles/proxy/proxy_blobs.h"
#include "roles/proxy/proxy_cmd.h"
#include "roles/proxy/proxy_index.h"
#include "roles/proxy/proxy_int.h"
#include "roles/proxy/proxy_view.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEASE_BATCH 65536u     /* ids per ALLOC_BLOB_IDS */
#define LEASE_LOW 16384u       /* ask for more below this many, on any proxy */
#define LEASE_LOW_TICK 1024u   /* the leader's tick asks below this many */
/* An ALLOC_BLOB_IDS may take as long as the write it is for
 * (PROXY_IO_WRITE_DEADLINE_MS, proxy_io.h). */
#define LEASE_DEADLINE_MS 20000u
#define GC_SCAN 256
#define GC_DONE_MAX 1024
#define GC_DELETES_IN_FLIGHT 64
/* The replicated size limit, as a share of the map: the rest covers pages
 * freed but still held by readers, the entries in flight when the limit is
 * reached, and the copies-on-write of the deletes that free space. */
#define INDEX_FULL_PCT 90u
#define INDEX_ROOM_MIN_PAGES 1024u

struct gc_entry {
    uint64_t blob_id;
    uint32_t partition;
    uint64_t first_seen_ms;     /* when this leader first listed it */
    uint8_t confirmed;          /* bit per replica: deleted or absent */
    uint8_t in_flight;          /* bit per replica: delete outstanding */
    bool done_pending;          /* in a GC_DONE being committed */
};

struct gc_del {
    struct proxy_blobs_del del;
    struct proxy_mgmt *m;
    uint64_t blob_id;
    int replica;
};

/* Blob ids leased from the index (ALLOC_BLOB_IDS), handed out locally. */
struct lease {
    uint64_t next, end;        /* [next, end) is ours */
    bool asking;               /* an ALLOC_BLOB_IDS is in flight */
    struct proxy_cmd cmd;
    uint8_t buf[64];
    struct proxy_mgmt_lease_wait *waiters; /* until the next answer; newest first */
};

struct proxy_mgmt {
    struct proxy *p;
    struct lease lease;
    /* commands in flight (at most one of each kind) */
    struct proxy_cmd node_cmd, part_cmd, gc_cmd, reap_cmd, limit_cmd;
    bool node_busy, part_busy, gc_busy, reap_busy, limit_busy;
    uint8_t node_buf[600], part_buf[64], gc_buf[IDXCMD_MAX_LEN], reap_buf[16], limit_buf[16];
    uint64_t reaped;            /* REAP entries applied by this leader, for status */
    /* The index's size as of the last tick (every proxy) */
    uint64_t ix_pages, ix_limit_pages, ix_map_pages, ix_reap;
    bool ix_full;
    uint64_t *gc_done_ids;      /* ids in the GC_DONE in flight */
    uint32_t n_gc_done;
    /* GC tracking (leader only) */
    struct gc_entry *gc;
    uint32_t n_gc, cap_gc;
    unsigned deletes_in_flight;
    bool was_leader;
    uint64_t gc_deleted;        /* blobs removed from the index, for metrics */
};

/* ---- applied-index waiters --------------------------------------------------------- */

static void wait_deferred(void *arg)
{
    struct proxy_mgmt_wait *w = arg;
    w->cb(w, 0);
}

void proxy_mgmt_wait_add(struct proxy *p, struct proxy_mgmt_wait *w)
{
    if (!proxy_index_read_begin(p)) {
        uint64_t applied = index_applied(p->rd);
        proxy_index_read_end(p);
        if (applied >= w->index) {
            if (reactor_defer(p->rx, wait_deferred, w) < 0) w->cb(w, -ENOMEM);
            return;
        }
    }
    w->next = p->waiters;
    p->waiters = w;
    fsm_raft_hurry(&p->fr, w->index); /* the index writer commits it without lingering */
}

/* Fire the waiters whose index is applied (or, with ERR, all of them). */
static void wake(struct proxy *p, uint64_t applied, uint64_t now, int err)
{
    struct proxy_mgmt_wait **pp = &p->waiters, *ready = NULL;
    while (*pp) {
        struct proxy_mgmt_wait *w = *pp;
        if (err || w->index <= applied || (now && now >= w->deadline_ms)) {
            *pp = w->next;
            w->next = ready;
            ready = w;
        } else {
            pp = &w->next;
        }
    }
    while (ready) {
        struct proxy_mgmt_wait *w = ready;
        ready = w->next;
        w->cb(w, err ? err : w->index <= applied ? 0 : -ETIMEDOUT);
    }
}

void proxy_mgmt_on_applied(struct proxy *p, uint64_t index, const struct idxcmd_result *res)
{
    (void)res;
    if (p->waiters) wake(p, index, 0, 0);
}

/* ---- the blob id lease -------------------------------------------------------------- */

static void on_lease(struct proxy_cmd *c, int err, uint64_t index,
                     const struct idxcmd_result *res)
{
    (void)index;
    struct proxy_mgmt *m = c->data;
    struct lease *l = &m->lease;
    l->asking = false;
    if (err == 0 && res->status == IDXCMD_ST_OK && res->id) {
        l->next = res->id;
        l->end = res->id + LEASE_BATCH;
    } else if (!m->p->stopping) {
        log_warn(m->p->tag, "blob id lease failed: %s",
                 bd_strerror(err ? err : idxcmd_status_to_err(res->status)));
    }
    /* Start (or fail) what waited for ids. */
    struct proxy_mgmt_lease_wait *list = l->waiters;
    l->waiters = NULL;
    while (list) {
        struct proxy_mgmt_lease_wait *w = list;
        list = w->next;
        w->cb(w, l->end - l->next >= w->n ? 0 : err ? err : -EAGAIN);
    }
}

static void lease_refill(struct proxy_mgmt *m)
{
    struct lease *l = &m->lease;
    if (l->asking || m->p->stopping) return;
    struct idxcmd cmd = {.type = IDXCMD_ALLOC_BLOB_IDS};
    cmd.u.alloc_blob_ids.count = LEASE_BATCH;
    int n = idxcmd_encode(l->buf, sizeof(l->buf), &cmd);
    if (n < 0) return;
    l->asking = true;
    l->cmd = (struct proxy_cmd){.cb = on_lease, .data = m, .buf = l->buf, .len = (size_t)n,
                                .deadline_ms = util_mono_ms() + LEASE_DEADLINE_MS};
    proxy_cmd_submit(m->p, &l->cmd);
}

uint64_t proxy_mgmt_lease_left(struct proxy *p)
{
    const struct lease *l = &p->mgmt->lease;
    return l->end - l->next;
}

uint64_t proxy_mgmt_lease_take(struct proxy *p)
{
    struct lease *l = &p->mgmt->lease;
    if (l->next >= l->end) {
        /* Ask now: a follower that never held a lease has no tick that
         * would (the leader's asks), and a caller that gets 0 answers
         * EAGAIN and is tried again. */
        lease_refill(p->mgmt);
        return 0;
    }
    uint64_t id = l->next++;
    if (l->end - l->next < LEASE_LOW) lease_refill(p->mgmt);
    return id;
}

void proxy_mgmt_lease_wait(struct proxy *p, struct proxy_mgmt_lease_wait *w)
{
    struct lease *l = &p->mgmt->lease;
    w->next = l->waiters;
    l->waiters = w;
    lease_refill(p->mgmt);
}

void proxy_mgmt_lease_cancel(struct proxy *p, int err)
{
    if (!p->mgmt) return; /* a start that failed before the state was made */
    struct lease *l = &p->mgmt->lease;
    struct proxy_mgmt_lease_wait *list = l->waiters;
    l->waiters = NULL;
    while (list) {
        struct proxy_mgmt_lease_wait *w = list;
        list = w->next;
        w->cb(w, err);
    }
}

/* ---- heartbeats ----------------------------------------------------------------------- */

static void on_node_cmd(struct proxy_cmd *c, int err, uint64_t index,
                        const struct idxcmd_result *res)
{
    (void)index;
    struct proxy_mgmt *m = c->data;
    m->node_busy = false;
    if (err || res->status != IDXCMD_ST_OK)
        log_warn(m->p->tag, "registering a blob server failed: %s",
                 bd_strerror(err ? err : idxcmd_status_to_err(res->status)));
    else if (!m->p->stopping)
        proxy_mgmt_tick(m->p); /* the next one now, not at the next tick */
}

static void submit_node_cmd(struct proxy_mgmt *m, const struct idxcmd *cmd)
{
    int len = idxcmd_encode(m->node_buf, sizeof(m->node_buf), cmd);
    if (len < 0) return;
    m->node_busy = true;
    m->node_cmd = (struct proxy_cmd){.cb = on_node_cmd, .data = m, .buf = m->node_buf,
                                     .len = (size_t)len, .deadline_ms = util_mono_ms() + 5000};
    proxy_cmd_submit(m->p, &m->node_cmd);
}

static int node_cmp(const void *key, const void *elem)
{
    uint64_t id = *(const uint64_t *)key, other = ((const struct index_node *)elem)->id;
    return id < other ? -1 : id > other;
}

/* Leader: make the index agree with what heartbeats say, one command at a
 * time: REGISTER_NODE for a server it does not know (or knows at another
 * address), then NODE_DOMAIN when its failure-domain labels differ.  A
 * retired server is a tombstone: its heartbeats change nothing.  Returns
 * true while a command is in flight or was just submitted (partitions
 * wait: a server's domains must be known before it is placed). */
static bool sync_nodes(struct proxy_mgmt *m)
{
    struct proxy *p = m->p;
    if (m->node_busy) return true;
    struct proxy_blobs_node *infos;
    unsigned ni;
    struct index_node *nodes;
    uint32_t nn;
    if (proxy_blobs_list(p->blobs, &infos, &ni) < 0) return true;
    if (proxy_index_read_nodes(p, &nodes, &nn) < 0) {
        free(infos);
        return true;
    }
    for (unsigned i = 0; i < ni && !m->node_busy; i++) {
        const struct proxy_blobs_node *h = &infos[i];
        if (!h->last_seen_ms) continue;
        const struct index_node *in = bsearch(&h->id, nodes, nn, sizeof(*nodes), node_cmp);
        if (in && in->state == INDEX_NODE_RETIRED) continue;
        struct idxcmd cmd;
        memset(&cmd, 0, sizeof(cmd));
        if (!in || strcmp(in->addr, h->addr) != 0) {
            cmd.type = IDXCMD_REGISTER_NODE;
            cmd.u.register_node.node_id = h->id;
            cmd.u.register_node.addr = idxcmd_cstr(h->addr);
            cmd.u.register_node.capacity = h->capacity;
            cmd.u.register_node.used = h->used;
            log_info(p->tag, "registering blob server %llu at %s", (unsigned long long)h->id,
                     h->addr);
        } else if (strcmp(in->zone, h->zone) || strcmp(in->rack, h->rack) ||
                   strcmp(in->host, h->host)) {
            cmd.type = IDXCMD_NODE_DOMAIN;
            cmd.u.node_domain.node_id = h->id;
            cmd.u.node_domain.zone = idxcmd_cstr(h->zone);
            cmd.u.node_domain.rack = idxcmd_cstr(h->rack);
            cmd.u.node_domain.host = idxcmd_cstr(h->host);
            log_info(p->tag, "blob server %llu is in zone \"%s\", rack \"%s\", host \"%s\"",
                     (unsigned long long)h->id, h->zone, h->rack, h->host);
        } else {
            continue;
        }
        submit_node_cmd(m, &cmd);
    }
    free(infos);
    free(nodes);
    return m->node_busy;
}

void proxy_mgmt_heartbeat(struct proxy *p, const struct wire_node_heartbeat_req *hb)
{
    char addr[128];
    if (!wire_str_copy(hb->addr, addr, sizeof(addr))) return;
    struct sockaddr_storage ss;
    socklen_t len;
    if (util_parse_addr(addr, &ss, &len) < 0) return;
    proxy_blobs_heartbeat(p->blobs, hb, addr);
}

/* ---- partitions ------------------------------------------------------------------------ */

static void on_part_cmd(struct proxy_cmd *c, int err, uint64_t index,
                        const struct idxcmd_result *res)
{
    (void)index;
    struct proxy_mgmt *m = c->data;
    m->part_busy = false;
    if (err || res->status != IDXCMD_ST_OK)
        log_warn(m->p->tag, "creating a partition failed: %s",
                 bd_strerror(err ? err : idxcmd_status_to_err(res->status)));
    else if (!m->p->stopping)
        proxy_mgmt_tick(m->p);
}

/* Leader: keep as many partitions as the servers' slots allow
 * (proxy_plan_partitions_wanted), and in any case enough whose three
 * members are up for every up server to be in one: while a server is down
 * (until repair replaces it) its partitions take no writes, and the
 * survivors might share none.  One CREATE_PARTITION at a time; members
 * chosen by proxy_plan_new_partition (slots, domains, load). */
static void ensure_partitions(struct proxy_mgmt *m)
{
    struct proxy *p = m->p;
    if (m->part_busy) return;
    const struct proxy_view *v = proxy_view_get(p);
    if (!v) return;
    uint64_t pb = p->cfg->partition_bytes;
    uint32_t wanted = proxy_plan_partitions_wanted(v->nodes, v->n_nodes, pb);
    unsigned up = 0, healthy = 0;
    for (unsigned i = 0; i < v->n_nodes; i++) up += v->nodes[i].up && v->nodes[i].accepts;
    for (unsigned k = 0; k < v->n_parts; k++) {
        const int *mb = &v->members[3 * k];
        bool all = true;
        for (int r = 0; r < 3; r++) all = all && mb[r] >= 0 && v->nodes[mb[r]].up;
        healthy += all;
    }
    bool more = v->n_parts < wanted, short_healthy = healthy < (up + 2) / 3;
    uint32_t max_id = v->n_parts ? v->parts[v->n_parts - 1].id : 0;
    if ((!more && !short_healthy) || max_id == UINT32_MAX) return;
    int pick[3];
    enum proxy_plan_level level;
    int rc = proxy_plan_new_partition(v->nodes, v->n_nodes, pb, true, pick, &level);
    if (rc < 0 && short_healthy)
        rc = proxy_plan_new_partition(v->nodes, v->n_nodes, pb, false, pick, &level);
    if (rc < 0) return;
    struct idxcmd cmd = {.type = IDXCMD_CREATE_PARTITION};
    cmd.u.create_partition.part_id = max_id + 1;
    for (int r = 0; r < 3; r++) cmd.u.create_partition.nodes[r] = v->nodes[pick[r]].id;
    int len = idxcmd_encode(m->part_buf, sizeof(m->part_buf), &cmd);
    if (len < 0) return;
    log_info(p->tag, "creating partition %u on blob servers %llu, %llu, %llu (apart by %s%s)",
             max_id + 1, (unsigned long long)cmd.u.create_partition.nodes[0],
             (unsigned long long)cmd.u.create_partition.nodes[1],
             (unsigned long long)cmd.u.create_partition.nodes[2], proxy_plan_level_name(level),
             more ? "" : "; over the servers' slots, so that writes have a partition");
    m->part_busy = true;
    m->part_cmd = (struct proxy_cmd){.cb = on_part_cmd, .data = m, .buf = m->part_buf,
                                     .len = (size_t)len, .deadline_ms = util_mono_ms() + 5000};
    proxy_cmd_submit(p, &m->part_cmd);
}

/* ---- garbage collection ---------------------------------------------------------------- */

static struct gc_entry *gc_find(struct proxy_mgmt *m, uint64_t id)
{
    for (uint32_t i = 0; i < m->n_gc; i++)
        if (m->gc[i].blob_id == id) return &m->gc[i];
    return NULL;
}

static void gc_drop(struct proxy_mgmt *m, uint64_t id)
{
    for (uint32_t i = 0; i < m->n_gc; i++)
        if (m->gc[i].blob_id == id) {
            m->gc[i] = m->gc[--m->n_gc];
            return;
        }
}

static void on_gc_done(struct proxy_cmd *c, int err, uint64_t index,
                       const struct idxcmd_result *res)
{
    (void)index;
    struct proxy_mgmt *m = c->data;
    m->gc_busy = false;
    bool ok = err == 0 && res->status == IDXCMD_ST_OK;
    for (uint32_t i = 0; i < m->n_gc_done; i++) {
        if (ok) {
            gc_drop(m, m->gc_done_ids[i]);
        } else {
            struct gc_entry *e = gc_find(m, m->gc_done_ids[i]);
            if (e) e->done_pending = false;
        }
    }
    if (ok) m->gc_deleted += m->n_gc_done;
    else log_warn(m->p->tag, "GC_DONE failed: %s",
                  bd_strerror(err ? err : idxcmd_status_to_err(res->status)));
    free(m->gc_done_ids);
    m->gc_done_ids = NULL;
    m->n_gc_done = 0;
}

static void on_gc_delete(struct proxy_blobs_del *d, int err)
{
    struct gc_del *gd = bd_container_of(d, struct gc_del, del);
    struct proxy_mgmt *m = gd->m;
    m->deletes_in_flight--;
    struct gc_entry *e = gc_find(m, gd->blob_id);
    if (e) {
        e->in_flight &= (uint8_t) ~(1u << gd->replica);
        if (err == 0 || err == -ENOENT) e->confirmed |= (uint8_t)(1u << gd->replica);
    }
    free(gd);
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void gc_step(struct proxy_mgmt *m)
{
    struct proxy *p = m->p;
    uint64_t now = util_mono_ms();
    /* Learn new gc entries (the table is ordered by id; scan a page). */
    struct index_gc page[GC_SCAN];
    uint32_t n = 0;
    if (proxy_index_read_begin(p) < 0) return;
    int rc = index_gc_list(p->rd, 0, page, GC_SCAN, &n);
    struct index_part parts[GC_SCAN];
    bool have_part[GC_SCAN];
    for (uint32_t i = 0; rc == 0 && i < n; i++)
        have_part[i] = index_part_get(p->rd, page[i].partition, &parts[i]) == 0;
    proxy_index_read_end(p);
    if (rc < 0) return;
    for (uint32_t i = 0; i < n; i++) {
        if (gc_find(m, page[i].blob_id)) continue;
        if (m->n_gc == m->cap_gc) {
            uint32_t cap = m->cap_gc ? m->cap_gc * 2 : 256;
            struct gc_entry *ng = realloc(m->gc, cap * sizeof(*ng));
            if (!ng) return;
            m->gc = ng;
            m->cap_gc = cap;
        }
        m->gc[m->n_gc++] = (struct gc_entry){.blob_id = page[i].blob_id,
                                             .partition = page[i].partition,
                                             .first_seen_ms = now};
    }
    /* Delete what has waited out the grace period. */
    for (uint32_t i = 0; i < n && m->deletes_in_flight < GC_DELETES_IN_FLIGHT; i++) {
        struct gc_entry *e = gc_find(m, page[i].blob_id);
        if (!e || e->done_pending || now - e->first_seen_ms < p->cfg->gc_grace_ms) continue;
        if (!have_part[i]) {
            e->confirmed = 7; /* its partition is gone: nothing left to delete */
            continue;
        }
        for (int r = 0; r < 3; r++) {
            uint8_t bit = (uint8_t)(1u << r);
            if ((e->confirmed | e->in_flight) & bit) continue;
            if (!proxy_blobs_is_up(p->blobs, parts[i].nodes[r])) continue;
            struct gc_del *gd = calloc(1, sizeof(*gd));
            if (!gd) return;
            gd->m = m;
            gd->blob_id = e->blob_id;
            gd->replica = r;
            gd->del.cb = on_gc_delete;
            gd->del.blob_id = e->blob_id;
            gd->del.partition = e->partition;
            gd->del.node = parts[i].nodes[r];
            e->in_flight |= bit;
            m->deletes_in_flight++;
            proxy_blobs_delete(p->blobs, &gd->del);
        }
    }
    /* Commit the fully deleted ones. */
    if (m->gc_busy) return;
    uint64_t *ids = malloc(GC_DONE_MAX * sizeof(*ids));
    if (!ids) return;
    uint32_t k = 0;
    for (uint32_t i = 0; i < m->n_gc && k < GC_DONE_MAX; i++)
        if (m->gc[i].confirmed == 7 && !m->gc[i].done_pending) ids[k++] = m->gc[i].blob_id;
    if (k == 0) {
        free(ids);
        return;
    }
    qsort(ids, k, sizeof(*ids), u64_cmp);
    struct idxcmd cmd = {.type = IDXCMD_GC_DONE};
    cmd.u.gc_done.n = k;
    cmd.u.gc_done.in = ids;
    int len = idxcmd_encode(m->gc_buf, sizeof(m->gc_buf), &cmd);
    if (len < 0) {
        free(ids);
        return;
    }
    for (uint32_t i = 0; i < k; i++) gc_find(m, ids[i])->done_pending = true;
    m->gc_done_ids = ids;
    m->n_gc_done = k;
    m->gc_busy = true;
    m->gc_cmd = (struct proxy_cmd){.cb = on_gc_done,
                                   .data = m,
                                   .buf = m->gc_buf,
                                   .len = (size_t)len,
                                   .deadline_ms = util_mono_ms() + 10000};
    proxy_cmd_submit(p, &m->gc_cmd);
}

static void reap_step(struct proxy_mgmt *m);

/* ---- reap and the size limit ----------------------------------------------------------- */

static void on_reap(struct proxy_cmd *c, int err, uint64_t index, const struct idxcmd_result *res)
{
    (void)index;
    struct proxy_mgmt *m = c->data;
    m->reap_busy = false;
    if (err || res->status != IDXCMD_ST_OK) {
        log_warn(m->p->tag, "REAP failed: %s",
                 bd_strerror(err ? err : idxcmd_status_to_err(res->status)));
        return;
    }
    m->reaped++;
    m->ix_reap = res->id;
    /* More to do: the next step now (the reactor serves writes between). */
    if (res->id && !m->p->stopping && consensus_is_leader(m->p->cons)) reap_step(m);
}

static void reap_step(struct proxy_mgmt *m)
{
    if (m->reap_busy || !m->ix_reap) return;
    struct idxcmd cmd = {.type = IDXCMD_REAP};
    cmd.u.reap.budget = IDXCMD_REAP_BUDGET;
    int len = idxcmd_encode(m->reap_buf, sizeof(m->reap_buf), &cmd);
    if (len < 0) return;
    m->reap_busy = true;
    m->reap_cmd = (struct proxy_cmd){.cb = on_reap, .data = m, .buf = m->reap_buf,
                                     .len = (size_t)len, .deadline_ms = util_mono_ms() + 10000};
    proxy_cmd_submit(m->p, &m->reap_cmd);
}

static void on_limit(struct proxy_cmd *c, int err, uint64_t index,
                     const struct idxcmd_result *res)
{
    (void)index;
    struct proxy_mgmt *m = c->data;
    m->limit_busy = false;
    if (err || res->status != IDXCMD_ST_OK)
        log_warn(m->p->tag, "INDEX_LIMIT failed: %s",
                 bd_strerror(err ? err : idxcmd_status_to_err(res->status)));
}

/* The limit this leader wants, in pages: INDEX_FULL_PCT of its map, but
 * leaving at least INDEX_ROOM_MIN_PAGES free (the deletes that free space
 * dirty pages first), and never below half the map (a tiny map). */
static void limit_step(struct proxy_mgmt *m, uint32_t page_size)
{
    struct proxy *p = m->p;
    if (m->limit_busy || !page_size) return;
    uint64_t map = p->cfg->index_map_bytes / page_size;
    uint64_t want = BD_MIN(map / 100 * INDEX_FULL_PCT,
                           map > INDEX_ROOM_MIN_PAGES ? map - INDEX_ROOM_MIN_PAGES : 0);
    want = BD_MAX(want, map / 2);
    if (want == m->ix_limit_pages) return;
    struct idxcmd cmd = {.type = IDXCMD_INDEX_LIMIT};
    cmd.u.index_limit.max_pages = want;
    int len = idxcmd_encode(m->limit_buf, sizeof(m->limit_buf), &cmd);
    if (len < 0) return;
    log_info(p->tag, "index size limit: %llu pages of %u bytes (of %llu in index_map_bytes)",
             (unsigned long long)want, page_size, (unsigned long long)map);
    m->limit_busy = true;
    m->limit_cmd = (struct proxy_cmd){.cb = on_limit, .data = m, .buf = m->limit_buf,
                                      .len = (size_t)len, .deadline_ms = util_mono_ms() + 10000};
    proxy_cmd_submit(p, &m->limit_cmd);
}

/* Every proxy, every tick: how full the index is. */
static void refresh_space(struct proxy_mgmt *m, uint32_t *page_size)
{
    struct proxy *p = m->p;
    *page_size = 0;
    if (proxy_index_read_begin(p) < 0) return;
    struct index_stats st;
    struct index_meta meta;
    if (index_stats(p->rd, &st) == 0 && index_meta_get(p->rd, &meta) == 0) {
        bool was = m->ix_full;
        m->ix_pages = st.pages;
        m->ix_limit_pages = meta.limit_pages;
        m->ix_map_pages = st.page_size ? st.map_bytes / st.page_size : 0;
        m->ix_reap = st.reap;
        m->ix_full = meta.limit_pages && st.pages >= meta.limit_pages;
        *page_size = st.page_size;
        if (m->ix_full != was)
            log_line(m->ix_full ? LOG_ERROR : LOG_INFO, p->tag, NULL, 0,
                     m->ix_full ? "index full: %llu of %llu pages; new data is refused (ENOSPC) "
                                  "until volumes or snapshots are deleted"
                                : "index below its limit again: %llu of %llu pages",
                     (unsigned long long)st.pages, (unsigned long long)meta.limit_pages);
    }
    proxy_index_read_end(p);
}

bool proxy_mgmt_index_full(struct proxy *p)
{
    return p->mgmt && p->mgmt->ix_full;
}

static double g_ix_full(void *a)
{
    return ((struct proxy_mgmt *)a)->ix_full ? 1 : 0;
}
static double g_ix_used(void *a)
{
    const struct proxy_mgmt *m = a;
    return m->ix_limit_pages ? (double)m->ix_pages / (double)m->ix_limit_pages : 0;
}
static double g_ix_reap(void *a)
{
    return (double)((struct proxy_mgmt *)a)->ix_reap;
}

/* ---- tick ------------------------------------------------------------------------------ */

void proxy_mgmt_tick(struct proxy *p)
{
    struct proxy_mgmt *m = p->mgmt;
    wake(p, 0, util_mono_ms(), 0); /* deadlines */
    uint32_t page_size;
    refresh_space(m, &page_size);
    bool leader = consensus_is_leader(p->cons);
    if (!leader) {
        if (m->was_leader) {
            /* Another leader owns GC now; forget what we tracked. */
            m->n_gc = 0;
            m->was_leader = false;
        }
        return;
    }
    m->was_leader = true;
    /* Register servers known only by heartbeat; partitions once the index
     * knows every server's domains. */
    if (!sync_nodes(m)) ensure_partitions(m);
    gc_step(m);
    reap_step(m);
    limit_step(m, page_size);
    if (m->lease.end - m->lease.next < LEASE_LOW_TICK) lease_refill(m);
}

static double c_ix_txns(void *arg)
{
    struct proxy_mgmt *m = arg;
    uint64_t txns, entries;
    fsm_raft_counts(&m->p->fr, &txns, &entries);
    return (double)txns;
}

static double c_ix_entries(void *arg)
{
    struct proxy_mgmt *m = arg;
    uint64_t txns, entries;
    fsm_raft_counts(&m->p->fr, &txns, &entries);
    return (double)entries;
}

int proxy_mgmt_start(struct proxy *p)
{
    struct proxy_mgmt *m = calloc(1, sizeof(*m));
    if (!m) return -ENOMEM;
    m->p = p;
    p->mgmt = m;
    char l[96];
    snprintf(l, sizeof(l), "role=\"%s\"", p->tag);
    metrics_gauge("blockd_proxy_index_full",
                  "1 while the index is at its size limit and refuses new data (ENOSPC)", l,
                  g_ix_full, m, m);
    metrics_gauge("blockd_proxy_index_used_ratio",
                  "Index table pages over the replicated limit (INDEX_LIMIT); 1 is full", l,
                  g_ix_used, m, m);
    metrics_gauge("blockd_proxy_index_reap_layers",
                  "Deleted layers whose extents are still being freed in bounded steps", l,
                  g_ix_reap, m, m);
    metrics_counter_fn("blockd_proxy_index_commits_total",
                       "Index writer transactions committed (one LMDB fsync each)", l,
                       c_ix_txns, m, m);
    metrics_counter_fn("blockd_proxy_index_committed_entries_total",
                       "Raft entries in those transactions", l, c_ix_entries, m, m);
    return 0;
}

void proxy_mgmt_stop(struct proxy *p)
{
    struct proxy_mgmt *m = p->mgmt;
    if (!m) return;
    wake(p, 0, 0, -ESHUTDOWN);
    metrics_remove_owner(m);
    free(m->gc);
    free(m->gc_done_ids);
    free(m);
    p->mgmt = NULL;
}

void proxy_mgmt_status(struct proxy *p, cJSON *out)
{
    struct proxy_mgmt *m = p->mgmt;
    cJSON_AddNumberToObject(out, "gc_tracked", m ? m->n_gc : 0);
    cJSON_AddNumberToObject(out, "gc_deleted", m ? (double)m->gc_deleted : 0);
    if (!m) return;
    cJSON_AddNumberToObject(out, "blob_ids_leased", (double)(m->lease.end - m->lease.next));
    cJSON *s = cJSON_AddObjectToObject(out, "index_space");
    cJSON_AddNumberToObject(s, "table_pages", (double)m->ix_pages);
    cJSON_AddNumberToObject(s, "limit_pages", (double)m->ix_limit_pages);
    cJSON_AddNumberToObject(s, "map_pages", (double)m->ix_map_pages);
    cJSON_AddBoolToObject(s, "full", m->ix_full);
    cJSON_AddNumberToObject(s, "reap_layers", (double)m->ix_reap);
    cJSON_AddNumberToObject(s, "reap_entries", (double)m->reaped);
}
