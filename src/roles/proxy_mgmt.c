/* proxy_mgmt.c: what happens around the data path: reads waiting for an
 * applied index, blob server heartbeats, and the leader's duties.
 *
 * Applied-index waiters (C7): a read carries the highest raft index its
 * agent was acknowledged; pwait_add parks it until this proxy's FSM has
 * applied that index.  The FSM adapter calls pmgmt_on_applied after every
 * entry; the tick fails waiters past their deadline.
 *
 * Leader duties, every tick, only while this proxy leads:
 *   - register blob servers heard by heartbeat but unknown to the index (or
 *     known under another address): REGISTER_NODE;
 *   - keep partitions_per_node partitions per registered server, each on
 *     three distinct servers that are up, least-loaded servers first:
 *     CREATE_PARTITION;
 *   - GC (C13): for every blob in the index's gc table, wait gc_grace_ms
 *     after this leader first saw it (longer than any read's lifetime, and
 *     restarted from zero by a new leader, which only ever delays), delete
 *     it on its three servers, and once all three confirmed (or never had
 *     it), drop it from the table with GC_DONE.
 * Followers do none of this; a new leader starts over from the index. */
#include "proxy_int.h"
#include "../bd.h"
#include "../log.h"
#include "../util.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define GC_SCAN 256
#define GC_DONE_MAX 1024
#define GC_DELETES_IN_FLIGHT 64

struct gc_entry {
    uint64_t blob_id;
    uint32_t partition;
    uint64_t first_seen_ms;     /* when this leader first listed it */
    uint8_t confirmed;          /* bit per replica: deleted or absent */
    uint8_t in_flight;          /* bit per replica: delete outstanding */
    bool done_pending;          /* in a GC_DONE being committed */
};

struct gc_del {
    struct pblobs_del del;
    struct pmgmt *m;
    uint64_t blob_id;
    int replica;
};

struct pmgmt {
    struct proxy *p;
    /* commands in flight (at most one of each kind) */
    struct pcmd node_cmd, part_cmd, gc_cmd;
    bool node_busy, part_busy, gc_busy;
    uint8_t node_buf[600], part_buf[64], gc_buf[IDXCMD_MAX_LEN];
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
    struct pwait *w = arg;
    w->cb(w, 0);
}

void pwait_add(struct proxy *p, struct pwait *w)
{
    if (!proxy_read_begin(p)) {
        uint64_t applied = index_applied(p->rd);
        proxy_read_end(p);
        if (applied >= w->index) {
            if (reactor_defer(p->rx, wait_deferred, w) < 0) w->cb(w, -ENOMEM);
            return;
        }
    }
    w->next = p->waiters;
    p->waiters = w;
}

/* Fire the waiters whose index is applied (or, with ERR, all of them). */
static void wake(struct proxy *p, uint64_t applied, uint64_t now, int err)
{
    struct pwait **pp = &p->waiters, *ready = NULL;
    while (*pp) {
        struct pwait *w = *pp;
        if (err || w->index <= applied || (now && now >= w->deadline_ms)) {
            *pp = w->next;
            w->next = ready;
            ready = w;
        } else {
            pp = &w->next;
        }
    }
    while (ready) {
        struct pwait *w = ready;
        ready = w->next;
        w->cb(w, err ? err : w->index <= applied ? 0 : -ETIMEDOUT);
    }
}

void pmgmt_on_applied(struct proxy *p, uint64_t index, const struct idx_result *res)
{
    if (res && (res->type == IDXCMD_CREATE_PARTITION || res->type == IDXCMD_REPLACE_REPLICA ||
                res->type == IDXCMD_REGISTER_NODE))
        p->parts_dirty = true;
    if (p->waiters) wake(p, index, 0, 0);
}

/* ---- heartbeats ----------------------------------------------------------------------- */

static void on_node_cmd(struct pcmd *c, int err, uint64_t index, const struct idx_result *res)
{
    (void)index;
    struct pmgmt *m = c->data;
    m->node_busy = false;
    if (err || res->status != IDX_OK)
        log_warn(m->p->tag, "registering a blob server failed: %s",
                 bd_strerror(err ? err : idx_status_to_err(res->status)));
    else if (!m->p->stopping)
        pmgmt_tick(m->p); /* the next one now, not at the next tick */
}

/* Leader: register NODE if the index does not know it at ADDR. */
static void maybe_register(struct pmgmt *m, uint64_t id, const char *addr, uint64_t capacity,
                           uint64_t used)
{
    struct proxy *p = m->p;
    if (m->node_busy || !consensus_is_leader(p->cons)) return;
    if (proxy_read_begin(p) < 0) return;
    struct index_node n;
    int rc = index_node_get(p->rd, id, &n);
    proxy_read_end(p);
    if (rc == 0 && strcmp(n.addr, addr) == 0) return;
    struct idxcmd cmd = {.type = IDXCMD_REGISTER_NODE};
    cmd.u.register_node.node_id = id;
    cmd.u.register_node.addr = idx_cstr(addr);
    cmd.u.register_node.capacity = capacity;
    cmd.u.register_node.used = used;
    int len = idxcmd_encode(m->node_buf, sizeof(m->node_buf), &cmd);
    if (len < 0) {
        log_warn(p->tag, "blob server %llu has an address the index refuses: %s",
                 (unsigned long long)id, addr);
        return;
    }
    log_info(p->tag, "registering blob server %llu at %s", (unsigned long long)id, addr);
    m->node_busy = true;
    m->node_cmd = (struct pcmd){.cb = on_node_cmd, .data = m, .buf = m->node_buf,
                                .len = (size_t)len, .deadline_ms = util_mono_ms() + 5000};
    pcmd_submit(p, &m->node_cmd);
}

void pmgmt_heartbeat(struct proxy *p, const struct wire_node_heartbeat_req *hb)
{
    char addr[128];
    if (!wire_str_copy(hb->addr, addr, sizeof(addr))) return;
    struct sockaddr_storage ss;
    socklen_t len;
    if (util_parse_addr(addr, &ss, &len) < 0) return;
    pblobs_heartbeat(p->blobs, hb->node_id, addr, hb->capacity, hb->used, hb->blobs, hb->n_bad,
                     hb->flags & 1);
    maybe_register(p->mgmt, hb->node_id, addr, hb->capacity, hb->used);
}

/* ---- partitions ------------------------------------------------------------------------ */

static void on_part_cmd(struct pcmd *c, int err, uint64_t index, const struct idx_result *res)
{
    (void)index;
    struct pmgmt *m = c->data;
    m->part_busy = false;
    if (err || res->status != IDX_OK)
        log_warn(m->p->tag, "creating a partition failed: %s",
                 bd_strerror(err ? err : idx_status_to_err(res->status)));
    else if (!m->p->stopping)
        pmgmt_tick(m->p);
}

static void ensure_partitions(struct pmgmt *m)
{
    struct proxy *p = m->p;
    if (m->part_busy) return;
    if (proxy_read_begin(p) < 0) return;
    struct index_node nodes[256];
    uint32_t nn = 0;
    int rc = index_node_list(p->rd, 0, nodes, 256, &nn);
    struct index_part parts[1024];
    uint32_t np = 0;
    uint32_t max_id = 0;
    if (rc == 0) rc = index_part_list(p->rd, 0, parts, 1024, &np);
    proxy_read_end(p);
    if (rc < 0) return;
    for (uint32_t i = 0; i < np; i++)
        if (parts[i].id > max_id) max_id = parts[i].id;
    /* Registered servers that are up, with their partition counts. */
    uint64_t cand[256];
    uint32_t load[256];
    uint32_t nc = 0, registered = 0;
    for (uint32_t i = 0; i < nn; i++) {
        if (nodes[i].state == INDEX_NODE_RETIRED) continue;
        registered++;
        if (!pblobs_is_up(p->blobs, nodes[i].id)) continue;
        cand[nc] = nodes[i].id;
        load[nc] = 0;
        for (uint32_t k = 0; k < np; k++)
            for (int r = 0; r < 3; r++)
                if (parts[k].nodes[r] == nodes[i].id) load[nc]++;
        nc++;
    }
    uint64_t target = p->cfg->partitions_per_node * registered / 3;
    if (registered >= 3 && target == 0) target = 1;
    /* Placement needs partitions whose three servers are all up.  While a
     * server is down (until proxy_repair.c replaces it) its partitions take
     * no writes, and the survivors might share none: keep at least enough
     * healthy partitions for every up server to be in one. */
    uint32_t healthy = 0;
    for (uint32_t k = 0; k < np; k++)
        if (pblobs_is_up(p->blobs, parts[k].nodes[0]) &&
            pblobs_is_up(p->blobs, parts[k].nodes[1]) && pblobs_is_up(p->blobs, parts[k].nodes[2]))
            healthy++;
    if ((np >= target && healthy >= (nc + 2) / 3) || nc < 3 || np >= 1024) return;
    /* Three least-loaded distinct servers (ties by id: deterministic). */
    uint64_t pick[3];
    for (int r = 0; r < 3; r++) {
        int best = -1;
        for (uint32_t i = 0; i < nc; i++) {
            bool used = false;
            for (int q = 0; q < r; q++)
                if (pick[q] == cand[i]) used = true;
            if (used) continue;
            if (best < 0 || load[i] < load[best]) best = (int)i;
        }
        pick[r] = cand[best];
    }
    struct idxcmd cmd = {.type = IDXCMD_CREATE_PARTITION};
    cmd.u.create_partition.part_id = max_id + 1;
    memcpy(cmd.u.create_partition.nodes, pick, sizeof(pick));
    int len = idxcmd_encode(m->part_buf, sizeof(m->part_buf), &cmd);
    if (len < 0) return;
    log_info(p->tag, "creating partition %u on blob servers %llu, %llu, %llu", max_id + 1,
             (unsigned long long)pick[0], (unsigned long long)pick[1],
             (unsigned long long)pick[2]);
    m->part_busy = true;
    m->part_cmd = (struct pcmd){.cb = on_part_cmd, .data = m, .buf = m->part_buf,
                                .len = (size_t)len, .deadline_ms = util_mono_ms() + 5000};
    pcmd_submit(p, &m->part_cmd);
}

/* ---- garbage collection ---------------------------------------------------------------- */

static struct gc_entry *gc_find(struct pmgmt *m, uint64_t id)
{
    for (uint32_t i = 0; i < m->n_gc; i++)
        if (m->gc[i].blob_id == id) return &m->gc[i];
    return NULL;
}

static void gc_drop(struct pmgmt *m, uint64_t id)
{
    for (uint32_t i = 0; i < m->n_gc; i++)
        if (m->gc[i].blob_id == id) {
            m->gc[i] = m->gc[--m->n_gc];
            return;
        }
}

static void on_gc_done(struct pcmd *c, int err, uint64_t index, const struct idx_result *res)
{
    (void)index;
    struct pmgmt *m = c->data;
    m->gc_busy = false;
    bool ok = err == 0 && res->status == IDX_OK;
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
                  bd_strerror(err ? err : idx_status_to_err(res->status)));
    free(m->gc_done_ids);
    m->gc_done_ids = NULL;
    m->n_gc_done = 0;
}

static void on_gc_delete(struct pblobs_del *d, int err)
{
    struct gc_del *gd = bd_container_of(d, struct gc_del, del);
    struct pmgmt *m = gd->m;
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

static void gc_step(struct pmgmt *m)
{
    struct proxy *p = m->p;
    uint64_t now = util_mono_ms();
    /* Learn new gc entries (the table is ordered by id; scan a page). */
    struct index_gc page[GC_SCAN];
    uint32_t n = 0;
    if (proxy_read_begin(p) < 0) return;
    int rc = index_gc_list(p->rd, 0, page, GC_SCAN, &n);
    struct index_part parts[GC_SCAN];
    bool have_part[GC_SCAN];
    for (uint32_t i = 0; rc == 0 && i < n; i++)
        have_part[i] = index_part_get(p->rd, page[i].partition, &parts[i]) == 0;
    proxy_read_end(p);
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
            if (!pblobs_is_up(p->blobs, parts[i].nodes[r])) continue;
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
            pblobs_delete(p->blobs, &gd->del);
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
    m->gc_cmd = (struct pcmd){.cb = on_gc_done, .data = m, .buf = m->gc_buf, .len = (size_t)len,
                              .deadline_ms = util_mono_ms() + 10000};
    pcmd_submit(p, &m->gc_cmd);
}

/* ---- tick ------------------------------------------------------------------------------ */

void pmgmt_tick(struct proxy *p)
{
    struct pmgmt *m = p->mgmt;
    wake(p, 0, util_mono_ms(), 0); /* deadlines */
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
    /* Register servers known only by heartbeat. */
    struct pblob_node_info infos[256];
    unsigned nn = pblobs_list(p->blobs, infos, 256);
    for (unsigned i = 0; i < nn && i < 256; i++)
        if (infos[i].last_seen_ms)
            maybe_register(m, infos[i].id, infos[i].addr, infos[i].capacity, infos[i].used);
    ensure_partitions(m);
    gc_step(m);
    if (p->lease.end - p->lease.next < 1024) pio_lease_refill(p);
}

int pmgmt_start(struct proxy *p)
{
    struct pmgmt *m = calloc(1, sizeof(*m));
    if (!m) return -ENOMEM;
    m->p = p;
    p->mgmt = m;
    return 0;
}

void pmgmt_stop(struct proxy *p)
{
    struct pmgmt *m = p->mgmt;
    if (!m) return;
    wake(p, 0, 0, -ESHUTDOWN);
    free(m->gc);
    free(m->gc_done_ids);
    free(m);
    p->mgmt = NULL;
}

void pmgmt_status(struct proxy *p, cJSON *out)
{
    struct pmgmt *m = p->mgmt;
    cJSON_AddNumberToObject(out, "gc_tracked", m ? m->n_gc : 0);
    cJSON_AddNumberToObject(out, "gc_deleted", m ? (double)m->gc_deleted : 0);
}
