/* proxy_repair.c: heal and replacement on the Raft leader, and the repair
 * state's lifetime and status (see proxy_repair.h; anti-entropy is in
 * proxy_resync.c, the decisions themselves in rplan.c).
 *
 * Why the leader: it is the one proxy whose index is never behind what has
 * been committed, and one actor per cluster means no two proxies copy the
 * same blob or race to replace the same server.  A new leader starts from
 * the index and its own liveness view; all it loses is the orphan ledger,
 * which only delays deletions.
 *
 * HEAL.  Every tick, a server whose heartbeat says n_bad > 0 (at most once
 * per RP_REPORT_MIN_MS), and every server at the start of a pass, is asked
 * for BLOB_REPORT.  Each bad blob is looked up in the index:
 *   live here (its partition, this server a member)  -> heal copy;
 *   dead (in the gc table)                           -> delete it now (GC
 *                                                       would; the copy is
 *                                                       unreadable anyway);
 *   unknown, or placed in another partition          -> an orphan: the
 *                                                       ledger decides when.
 * A heal reads the blob from the other members (failing over; C14: the
 * bytes are checked against the index checksum, not just the server's) and
 * puts it to the server that reported it, which accepts the same bytes
 * under the same id as a heal.
 *
 * REPLACE.  A registered server down for replace_after_ms (counted from
 * when this leader first saw it down, or took over) is swapped out of its
 * partitions, one REPLACE_REPLICA at a time, for the up, writable
 * non-member with the fewest partitions (rplan_pick); the partition is then
 * synced at once.  A partition with no member up is left alone: its data is
 * on the down servers.
 *
 * Lifetime: every operation in flight (list, report, copy, delete,
 * command) holds a reference; prepair_stop drops the owner's, and the
 * state is freed after the last completion.  Completions of work started
 * under an older leadership (r->gen) or an older sync only release what
 * they hold. */
#include "proxy_repair.h"
#include "proxy_repair_int.h"
#include "../bd.h"
#include "../log.h"
#include "../util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- lifetime ------------------------------------------------------------------------ */

static void rp_free(struct prepair *r)
{
    presync_drop_queue(r);
    for (int i = 0; i < RPLAN_REPLICAS; i++) free(r->sync.slot[i].ids);
    free(r->sync.diff);
    free(r->pass_ids);
    free(r->parts);
    rplan_orphans_fini(&r->orphans);
    free(r);
}

void prepair_unref(struct prepair *r)
{
    if (--r->refs == 0) rp_free(r);
}

/* ---- leadership ------------------------------------------------------------------------- */

static void lose_leadership(struct prepair *r)
{
    r->gen++;
    r->leader = false;
    presync_drop_queue(r);
    r->sync.state = S_IDLE; /* busy slots finish and are ignored (sync.gen) */
    r->sync.gen = 0;
    r->pass_running = false;
    r->n_parts = 0;
    r->n_nodes = 0;
    rplan_orphans_fini(&r->orphans);
    rplan_orphans_init(&r->orphans, 0);
}

static struct rp_node *node_find(struct prepair *r, uint64_t id)
{
    for (unsigned i = 0; i < r->n_nodes; i++)
        if (r->nodes[i].id == id) return &r->nodes[i];
    return NULL;
}

/* Refresh the registered servers and how long each has been down; a
 * server back from down gets its partitions synced first. */
static void refresh_nodes(struct prepair *r, uint64_t now)
{
    struct proxy *p = r->p;
    struct index_node nd[64];
    struct rp_node next[RP_MAX_NODES];
    unsigned nn = 0;
    uint64_t back[RP_MAX_NODES];
    unsigned n_back = 0;
    uint64_t after = 0;
    uint32_t got = 0;
    if (proxy_read_begin(p) < 0) return;
    do {
        if (index_node_list(p->rd, after, nd, 64, &got) < 0) {
            proxy_read_end(p);
            return;
        }
        for (uint32_t i = 0; i < got && nn < RP_MAX_NODES; i++) {
            if (nd[i].state == INDEX_NODE_RETIRED) continue;
            const struct rp_node *old = node_find(r, nd[i].id);
            struct rp_node *x = &next[nn++];
            *x = old ? *old : (struct rp_node){.id = nd[i].id};
            bool up = pblobs_is_up(p->blobs, x->id);
            if (up) {
                if (old && old->down_since_ms) {
                    back[n_back++] = x->id;
                    x->report_now = true;
                }
                x->down_since_ms = 0;
            } else if (!x->down_since_ms) {
                x->down_since_ms = now;
            }
        }
        if (got) after = nd[got - 1].id;
    } while (got == 64 && nn < RP_MAX_NODES);
    proxy_read_end(p);
    memcpy(r->nodes, next, nn * sizeof(*next));
    r->n_nodes = nn;
    if (!n_back) return;
    struct index_part *parts;
    uint32_t np;
    if (presync_read_parts(r, &parts, &np) < 0) return;
    /* Its report first (it may have found bad blobs while starting): heals
     * of those are queued before the sync could count them as missing. */
    for (unsigned k = 0; k < n_back; k++) {
        log_info(r->tag, "repair: blob server %llu is back; syncing its partitions first",
                 (unsigned long long)back[k]);
        for (uint32_t i = 0; i < np; i++)
            if (prepair_is_member(&parts[i], back[k]))
                presync_mark_urgent(r, parts[i].id, now + RP_REPORT_MIN_MS);
    }
    free(parts);
}

/* How long NODE has been down (0 if up).  A member the index no longer
 * lists (retired) counts as down since this leader took over. */
static uint64_t down_for(struct prepair *r, uint64_t node, uint64_t now)
{
    const struct rp_node *x = node_find(r, node);
    if (!x && pblobs_is_up(r->p->blobs, node)) return 0; /* past RP_MAX_NODES */
    uint64_t since = x ? x->down_since_ms : r->leader_since_ms;
    return since ? BD_MAX(now - since, 1) : 0;
}

/* ---- heal: BLOB_REPORT ---------------------------------------------------------------------- */

static void handle_report(struct prepair *r, uint64_t node, const struct wire_blob_report_resp *m)
{
    struct proxy *p = r->p;
    uint64_t now = util_mono_ms();
    if (m->n_bad == 0) return;
    if (proxy_read_begin(p) < 0) return;
    for (uint32_t i = 0; i < m->n_bad; i++) {
        struct wire_bad_blob bb;
        wire_blob_report_bad(m, i, &bb);
        struct index_blob b;
        struct index_part pt;
        int rc = index_blob_get(p->rd, bb.blob_id, &b);
        if (rc == -ENOENT || (rc == 0 && b.partition != bb.partition)) {
            presync_orphan_seen(r, node, bb.partition, bb.blob_id, now);
        } else if (rc < 0) {
            break;
        } else if (b.flags & INDEX_BLOB_DEAD) {
            presync_delete(r, node, bb.partition, bb.blob_id, false);
        } else if (index_part_get(p->rd, b.partition, &pt) == 0 && prepair_is_member(&pt, node)) {
            if (presync_copy_pending(r, node, b.id) || r->q_len >= RP_QUEUE_MAX) continue;
            int slot = 0;
            while (pt.nodes[slot] != node) slot++;
            if (!presync_want_copy(r, &pt, &b, (uint8_t)(7u & ~(1u << slot)), slot, true)) break;
        }
        /* else: a stray copy on a former member; it serves nobody. */
    }
    proxy_read_end(p);
}

void prepair_heal_done(struct prepair *r, uint64_t dst, int err, const char *what)
{
    struct rp_node *nd = node_find(r, dst);
    if (err == 0) {
        if (nd) nd->report_every_ms = RP_REPORT_MIN_MS;
        return;
    }
    if (nd)
        nd->report_every_ms = BD_MIN(BD_MAX(nd->report_every_ms, RP_REPORT_MIN_MS) * 2,
                                     BD_MAX(r->p->cfg->repair_interval_ms, RP_REPORT_MIN_MS));
    uint64_t now = util_mono_ms();
    if (r->heal_warned_ms && now - r->heal_warned_ms < RP_LOG_EVERY_MS) {
        r->heal_fails_unlogged++;
        return;
    }
    log_warn(r->tag, "repair: heal of %s (and %u more failed heals since the last report)", what,
             r->heal_fails_unlogged);
    r->heal_warned_ms = now;
    r->heal_fails_unlogged = 0;
}

static void on_report(struct pblobs_call *pc, int err, struct conn_frame *f)
{
    struct rp_report *x = pc->data;
    struct prepair *r = x->r;
    struct rp_node *nd = node_find(r, pc->node);
    if (nd) nd->report_busy = false;
    if (prepair_current(r, x->gen)) {
        struct wire_blob_report_resp m;
        if (err) {
            log_debug(r->tag, "repair: BLOB_REPORT from %llu: %s", (unsigned long long)pc->node,
                      bd_strerror(err));
        } else if (wire_decode_blob_report_resp(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0 ||
                   m.node_id != pc->node) {
            log_warn(r->tag, "repair: malformed BLOB_REPORT from blob server %llu",
                     (unsigned long long)pc->node);
        } else {
            handle_report(r, pc->node, &m);
            presync_step(r);
        }
    }
    free(x);
    prepair_unref(r);
}

static void send_reports(struct prepair *r, uint64_t now)
{
    struct pblob_node_info info[RP_MAX_NODES];
    unsigned n = BD_MIN(pblobs_list(r->p->blobs, info, RP_MAX_NODES), RP_MAX_NODES);
    for (unsigned i = 0; i < r->n_nodes; i++) {
        struct rp_node *nd = &r->nodes[i];
        if (nd->report_busy || nd->down_since_ms) continue;
        uint32_t n_bad = 0;
        for (unsigned k = 0; k < n; k++)
            if (info[k].id == nd->id) n_bad = info[k].n_bad;
        uint64_t every = BD_MAX(nd->report_every_ms, RP_REPORT_MIN_MS);
        if (!r->report_all && !nd->report_now && !(n_bad && now - nd->last_report_ms >= every))
            continue;
        struct rp_report *x = calloc(1, sizeof(*x));
        if (!x) return;
        x->r = r;
        x->gen = r->gen;
        x->call.cb = on_report;
        x->call.data = x;
        x->call.node = nd->id;
        struct wire_blob_report_req req = {0};
        uint8_t fields[16];
        int len = wire_encode_blob_report_req(fields, sizeof(fields), &req);
        nd->report_busy = true;
        nd->report_now = false;
        nd->last_report_ms = now;
        r->refs++;
        pblobs_call(r->p->blobs, &x->call, WIRE_BLOB_REPORT, fields, (size_t)len, NULL);
    }
    r->report_all = false;
}

/* ---- replace -------------------------------------------------------------------------------- */

static void on_replaced(struct pcmd *c, int err, uint64_t index, const struct idx_result *res)
{
    (void)index;
    struct prepair *r = c->data;
    r->rcmd_busy = false;
    if (!r->stopping) {
        int e = err ? err : idx_status_to_err(res->status);
        if (e == 0) {
            r->n_replaced++;
            metric_inc(r->c_replaced);
            log_info(r->tag, "repair: partition %u: blob server %llu replaced by %llu (epoch %llu)",
                     r->r_part, (unsigned long long)r->r_old, (unsigned long long)r->r_new,
                     (unsigned long long)res->id);
            if (r->leader) presync_mark_urgent(r, r->r_part, 0);
        } else {
            log_warn(r->tag, "repair: replacing blob server %llu in partition %u: %s",
                     (unsigned long long)r->r_old, r->r_part, bd_strerror(e));
        }
    }
    prepair_unref(r);
}

static void maybe_replace(struct prepair *r, uint64_t now)
{
    struct proxy *p = r->p;
    uint64_t after = p->cfg->replace_after_ms;
    if (r->rcmd_busy) return;
    bool any = false;
    for (unsigned i = 0; i < r->n_nodes; i++)
        if (r->nodes[i].down_since_ms && now - r->nodes[i].down_since_ms >= after) any = true;
    if (!any) return;
    struct index_part *parts;
    uint32_t np;
    if (presync_read_parts(r, &parts, &np) < 0) return;
    for (uint32_t k = 0; k < np; k++) {
        uint64_t down[RPLAN_REPLICAS];
        for (int i = 0; i < RPLAN_REPLICAS; i++) down[i] = down_for(r, parts[k].nodes[i], now);
        int slot = rplan_replace_slot(down, after);
        if (slot < 0) continue;
        struct pblob_node_info info[RP_MAX_NODES];
        unsigned ni = BD_MIN(pblobs_list(p->blobs, info, RP_MAX_NODES), RP_MAX_NODES);
        struct rplan_node cand[RP_MAX_NODES];
        for (unsigned i = 0; i < r->n_nodes; i++) {
            struct rplan_node *c = &cand[i];
            *c = (struct rplan_node){.id = r->nodes[i].id, .up = !r->nodes[i].down_since_ms};
            for (unsigned q = 0; q < ni; q++)
                if (info[q].id == c->id) {
                    c->writable = !info[q].read_only;
                    c->free_bytes = info[q].capacity > info[q].used
                                        ? info[q].capacity - info[q].used : 0;
                }
            for (uint32_t q = 0; q < np; q++)
                if (prepair_is_member(&parts[q], c->id)) c->load++;
        }
        int pick = rplan_pick(cand, r->n_nodes, parts[k].nodes);
        if (pick < 0) {
            if (!r->warned_ms || now - r->warned_ms >= RP_LOG_EVERY_MS) {
                r->warned_ms = now;
                log_warn(r->tag, "repair: blob server %llu has been down %llu ms but no up "
                         "server outside partition %u can replace it",
                         (unsigned long long)parts[k].nodes[slot],
                         (unsigned long long)down[slot], parts[k].id);
            }
            continue;
        }
        struct idxcmd cmd = {.type = IDXCMD_REPLACE_REPLICA};
        cmd.u.replace_replica.part_id = parts[k].id;
        cmd.u.replace_replica.old_node = parts[k].nodes[slot];
        cmd.u.replace_replica.new_node = cand[pick].id;
        int len = idxcmd_encode(r->rbuf, sizeof(r->rbuf), &cmd);
        if (len < 0) continue;
        r->r_part = parts[k].id;
        r->r_old = parts[k].nodes[slot];
        r->r_new = cand[pick].id;
        log_info(r->tag, "repair: blob server %llu down for %llu ms: replacing it in partition "
                 "%u by %llu", (unsigned long long)r->r_old, (unsigned long long)down[slot],
                 r->r_part, (unsigned long long)r->r_new);
        r->rcmd = (struct pcmd){.cb = on_replaced, .data = r, .buf = r->rbuf, .len = (size_t)len,
                                .deadline_ms = now + RP_CMD_DEADLINE_MS};
        r->rcmd_busy = true;
        r->refs++;
        pcmd_submit(p, &r->rcmd);
        break;
    }
    free(parts);
}

/* ---- tick, start, stop ---------------------------------------------------------------------- */

void prepair_tick(struct proxy *p)
{
    struct prepair *r = p->repair;
    if (!r || r->stopping) return;
    uint64_t now = util_mono_ms();
    if (!consensus_is_leader(p->cons)) {
        if (r->leader) lose_leadership(r);
        return;
    }
    if (!r->leader) {
        r->leader = true;
        r->leader_since_ms = now;
        r->next_pass_ms = now + BD_MIN(p->cfg->repair_interval_ms, RP_FIRST_PASS_MAX_MS);
    }
    refresh_nodes(r, now);
    maybe_replace(r, now);
    send_reports(r, now);
    presync_step(r);
}

static double g_last_pass(void *a)
{
    return (double)((struct prepair *)a)->last_pass_wall_ms / 1000.0;
}
static double g_pass_took(void *a)
{
    return (double)((struct prepair *)a)->last_pass_took_ms / 1000.0;
}
static double g_incomplete(void *a)
{
    const struct prepair *r = a;
    unsigned k = 0;
    for (uint32_t i = 0; i < r->n_parts; i++)
        if (r->parts[i].has_last && !r->parts[i].last.complete) k++;
    return k;
}
static double g_orphans(void *a)
{
    return ((struct prepair *)a)->orphans.n;
}
static double g_queue(void *a)
{
    const struct prepair *r = a;
    return r->q_len + r->n_running;
}

int prepair_start(struct proxy *p)
{
    struct prepair *r = calloc(1, sizeof(*r));
    if (!r) return -ENOMEM;
    r->p = p;
    r->tag = p->tag;
    r->refs = 1;
    rplan_orphans_init(&r->orphans, 0);
    r->sync.diff = malloc(RPLAN_REPLICAS * RP_PAGE * sizeof(*r->sync.diff));
    bool ok = r->sync.diff != NULL;
    for (int i = 0; i < RPLAN_REPLICAS; i++) {
        r->sync.slot[i].r = r;
        r->sync.slot[i].ids = malloc(RP_PAGE * sizeof(uint64_t));
        if (!r->sync.slot[i].ids) ok = false;
    }
    if (!ok) {
        rp_free(r);
        return -ENOMEM;
    }
    char l[96];
    snprintf(l, sizeof(l), "role=\"%s\"", p->tag);
    r->c_copied = metrics_counter("blockd_proxy_repair_blobs_copied_total",
                                  "Blob copies made to replicas that missed them", l);
    r->c_bytes = metrics_counter("blockd_proxy_repair_bytes_copied_total",
                                 "Bytes copied by repair (copies and heals)", l);
    r->c_healed = metrics_counter("blockd_proxy_repair_blobs_healed_total",
                                  "Bad copies rewritten from another replica", l);
    r->c_copy_err = metrics_counter("blockd_proxy_repair_copy_errors_total",
                                    "Repair copies or heals that failed", l);
    r->c_orphans = metrics_counter("blockd_proxy_repair_orphans_deleted_total",
                                   "Copies unknown to the index deleted after the grace", l);
    r->c_synced = metrics_counter("blockd_proxy_repair_partitions_synced_total",
                                  "Partition syncs finished", l);
    r->c_replaced = metrics_counter("blockd_proxy_repair_replicas_replaced_total",
                                    "Partition members replaced after a server was lost", l);
    r->c_passes = metrics_counter("blockd_proxy_repair_passes_total",
                                  "Full anti-entropy passes finished", l);
    metrics_gauge("blockd_proxy_repair_last_full_pass_timestamp_seconds",
                  "Wall clock when the last full pass ended (0: none yet)", l, g_last_pass, r, r);
    metrics_gauge("blockd_proxy_repair_last_full_pass_seconds", "Duration of the last full pass",
                  l, g_pass_took, r, r);
    metrics_gauge("blockd_proxy_repair_partitions_incomplete",
                  "Partitions whose last sync left a live blob short of three copies", l,
                  g_incomplete, r, r);
    metrics_gauge("blockd_proxy_repair_orphans_tracked",
                  "Copies unknown to the index waiting out the orphan grace", l, g_orphans, r, r);
    metrics_gauge("blockd_proxy_repair_copies_queued", "Repair copies queued or in flight", l,
                  g_queue, r, r);
    p->repair = r;
    return 0;
}

void prepair_stop(struct proxy *p)
{
    struct prepair *r = p->repair;
    if (!r) return;
    p->repair = NULL;
    metrics_remove_owner(r);
    r->stopping = true;
    r->gen++;
    presync_drop_queue(r);
    prepair_unref(r);
}

/* ---- status ---------------------------------------------------------------------------------- */

void prepair_status(struct proxy *p, cJSON *out)
{
    struct prepair *r = p->repair;
    if (!r) return;
    cJSON *o = cJSON_AddObjectToObject(out, "repair");
    cJSON_AddBoolToObject(o, "active", r->leader);
    cJSON_AddNumberToObject(o, "interval_ms", (double)p->cfg->repair_interval_ms);
    cJSON_AddNumberToObject(o, "orphan_grace_ms", (double)p->cfg->orphan_grace_ms);
    cJSON_AddNumberToObject(o, "replace_after_ms", (double)p->cfg->replace_after_ms);
    cJSON_AddNumberToObject(o, "passes", (double)r->n_passes);
    if (r->last_pass_wall_ms)
        cJSON_AddNumberToObject(o, "last_full_pass_unix_ms", (double)r->last_pass_wall_ms);
    else cJSON_AddNullToObject(o, "last_full_pass_unix_ms");
    cJSON_AddNumberToObject(o, "last_full_pass_ms", (double)r->last_pass_took_ms);
    cJSON_AddBoolToObject(o, "pass_running", r->pass_running);
    cJSON_AddNumberToObject(o, "pass_position", r->pass_pos);
    cJSON_AddNumberToObject(o, "pass_partitions", r->pass_n);
    cJSON_AddNumberToObject(o, "partitions_synced", (double)r->n_synced);
    cJSON_AddNumberToObject(o, "partitions_incomplete", g_incomplete(r));
    cJSON_AddNumberToObject(o, "blobs_copied", (double)r->n_copied);
    cJSON_AddNumberToObject(o, "bytes_copied", (double)r->n_bytes);
    cJSON_AddNumberToObject(o, "blobs_healed", (double)r->n_healed);
    cJSON_AddNumberToObject(o, "copy_errors", (double)r->n_copy_err);
    cJSON_AddNumberToObject(o, "orphans_deleted", (double)r->n_orphans);
    cJSON_AddNumberToObject(o, "orphans_tracked", r->orphans.n);
    cJSON_AddNumberToObject(o, "dead_bad_copies_deleted", (double)r->n_dead_deleted);
    cJSON_AddNumberToObject(o, "replicas_replaced", (double)r->n_replaced);
    cJSON_AddNumberToObject(o, "copies_queued", r->q_len);
    cJSON_AddNumberToObject(o, "copies_in_flight", r->n_running);
}

void prepair_part_json(struct proxy *p, const struct index_part *pt, cJSON *out)
{
    struct prepair *r = p->repair;
    unsigned up = 0;
    for (int i = 0; i < RPLAN_REPLICAS; i++)
        if (pblobs_is_up(p->blobs, pt->nodes[i])) up++;
    cJSON_AddNumberToObject(out, "replicas_up", up);
    const struct rp_part *x = r && r->leader ? presync_part(r, pt->id, false) : NULL;
    if (!x || !x->has_last) {
        cJSON_AddNullToObject(out, "sync");
        return;
    }
    const struct rp_result *l = &x->last;
    cJSON *o = cJSON_AddObjectToObject(out, "sync");
    cJSON_AddBoolToObject(o, "complete", l->complete);
    cJSON_AddNumberToObject(o, "unix_ms", (double)l->wall_ms);
    cJSON_AddNumberToObject(o, "took_ms", (double)l->took_ms);
    cJSON_AddNumberToObject(o, "replicas_listed", __builtin_popcount(l->listed));
    cJSON_AddNumberToObject(o, "live_blobs", l->blobs);
    cJSON_AddNumberToObject(o, "missing", l->missing);
    cJSON_AddNumberToObject(o, "copied", l->copied);
    cJSON_AddNumberToObject(o, "copy_errors", l->copy_errors);
    cJSON_AddNumberToObject(o, "orphans_deleted", l->orphans_deleted);
    cJSON_AddBoolToObject(o, "in_progress", x->listing || x->pending);
}
