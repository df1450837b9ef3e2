/* proxy_repair.c: heal and replacement on the Raft leader, leadership, and
 * the repair status (see proxy_repair.h; anti-entropy and the copy engine
 * are in proxy_resync.c, below it; the decisions themselves in rplan.c).
 *
 * Why the leader: it is the one proxy whose index is never behind what has
 * been committed, and one actor per cluster means no two proxies copy the
 * same blob or race to replace the same server.  A new leader starts from
 * the index and its own liveness view; all it loses is the orphan ledger,
 * which only delays deletions.
 *
 * HEAL.  Every tick, a server whose heartbeat says n_bad > 0 (at most once
 * per PROXY_REPAIR_REPORT_MIN_MS), and every server at the start of a pass, is asked
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
 * Replacing a server lost for good is proxy_move.c's (MOVE_REPLICA and a
 * checkpointed copy from the surviving replicas); anti-entropy checks the
 * partition once the move is done.
 *
 * Lifetime: every operation in flight (list, report, copy, delete,
 * command) holds a reference; proxy_repair_stop drops the owner's, and the
 * state is freed (by proxy_resync_unref, the engine's) after the last
 * completion.  Completions of work started under an older leadership
 * (r->gen) or an older sync only release what they hold. */
#include "roles/proxy/proxy_repair.h"
#include "roles/proxy/proxy_repair_int.h"
#include "roles/proxy/proxy_index.h"
#include "roles/proxy/proxy_move.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* NODE is one of PT's members. */
static bool is_member(const struct index_part *pt, uint64_t node)
{
    for (int i = 0; i < RPLAN_REPLICAS; i++)
        if (pt->nodes[i] == node) return true;
    return false;
}

/* ---- leadership ------------------------------------------------------------------------- */

static void lose_leadership(struct proxy_repair *r)
{
    r->gen++;
    r->leader = false;
    r->n_nodes = 0;
    proxy_resync_reset(r);
}

static struct proxy_repair_node *node_find(struct proxy_repair *r, uint64_t id)
{
    unsigned lo = 0, hi = r->n_nodes;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (r->nodes[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < r->n_nodes && r->nodes[lo].id == id ? &r->nodes[lo] : NULL;
}

/* Refresh the registered servers and how long each has been down; a
 * server back from down gets its partitions synced first. */
static void refresh_nodes(struct proxy_repair *r, uint64_t now)
{
    struct proxy *p = r->p;
    struct index_node *nd;
    uint32_t got;
    if (proxy_index_read_nodes(p, &nd, &got) < 0) return;
    struct proxy_repair_node *next = malloc(BD_MAX(got, 1u) * sizeof(*next));
    uint64_t *back = malloc(BD_MAX(got, 1u) * sizeof(*back));
    if (!next || !back) {
        free(nd);
        free(next);
        free(back);
        return;
    }
    unsigned nn = 0, n_back = 0;
    for (uint32_t i = 0; i < got; i++) { /* ascending by id, as the index lists them */
        if (nd[i].state == INDEX_NODE_RETIRED) continue;
        const struct proxy_repair_node *old = node_find(r, nd[i].id);
        struct proxy_repair_node *x = &next[nn++];
        *x = old ? *old : (struct proxy_repair_node){.id = nd[i].id};
        bool up = proxy_blobs_is_up(p->blobs, x->id);
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
    free(nd);
    free(r->nodes);
    r->nodes = next;
    r->n_nodes = nn;
    struct index_part *parts;
    uint32_t np;
    if (!n_back || proxy_index_read_parts(r->p, &parts, &np) < 0) {
        free(back);
        return;
    }
    /* Its report first (it may have found bad blobs while starting): heals
     * of those are queued before the sync could count them as missing. */
    for (unsigned k = 0; k < n_back; k++) {
        log_info(r->tag, "repair: blob server %llu is back; syncing its partitions first",
                 (unsigned long long)back[k]);
        for (uint32_t i = 0; i < np; i++)
            if (is_member(&parts[i], back[k]))
                proxy_resync_mark_urgent(r, parts[i].id, now + PROXY_REPAIR_REPORT_MIN_MS);
    }
    free(back);
    free(parts);
}

/* ---- heal: BLOB_REPORT ---------------------------------------------------------------------- */

/* A BLOB_REPORT call to one server. */
struct report {
    struct proxy_repair *r;
    uint64_t gen;
    struct proxy_blobs_call call;
};

static void handle_report(struct proxy_repair *r, uint64_t node,
                          const struct wire_blob_report_resp *m)
{
    struct proxy *p = r->p;
    uint64_t now = util_mono_ms();
    if (m->n_bad == 0) return;
    if (proxy_index_read_begin(p) < 0) return;
    for (uint32_t i = 0; i < m->n_bad; i++) {
        struct wire_bad_blob bb;
        wire_blob_report_bad(m, i, &bb);
        struct index_blob b;
        struct index_part pt;
        int rc = index_blob_get(p->rd, bb.blob_id, &b);
        if (rc == -ENOENT || (rc == 0 && b.partition != bb.partition)) {
            proxy_resync_orphan_seen(r, node, bb.partition, bb.blob_id, now);
        } else if (rc < 0) {
            break;
        } else if (b.flags & INDEX_BLOB_DEAD) {
            proxy_resync_delete(r, node, bb.partition, bb.blob_id, false);
        } else if (index_part_get(p->rd, b.partition, &pt) == 0 &&
                   is_member(&pt, node)) {
            if (proxy_resync_copy_pending(r, node, b.id) || r->q_len >= PROXY_REPAIR_QUEUE_MAX)
                continue;
            int slot = 0;
            while (pt.nodes[slot] != node) slot++;
            if (!proxy_resync_want_copy(r, &pt, &b, (uint8_t)(7u & ~(1u << slot)), slot, true))
                break;
        }
        /* else: a stray copy on a former member; it serves nobody. */
    }
    proxy_index_read_end(p);
}

/* r->on_heal_done: a heal to DST finished with ERR.  Pace DST's reports (a
 * heal that cannot succeed, say every other copy is bad too, is not
 * retried every second) and log failures at most once a minute. */
static void heal_done(struct proxy_repair *r, uint64_t dst, int err, const char *what)
{
    struct proxy_repair_node *nd = node_find(r, dst);
    if (err == 0) {
        if (nd) nd->report_every_ms = PROXY_REPAIR_REPORT_MIN_MS;
        return;
    }
    if (nd)
        nd->report_every_ms =
            BD_MIN(BD_MAX(nd->report_every_ms, PROXY_REPAIR_REPORT_MIN_MS) * 2,
                   BD_MAX(r->p->cfg->repair_interval_ms, PROXY_REPAIR_REPORT_MIN_MS));
    uint64_t now = util_mono_ms();
    if (r->heal_warned_ms && now - r->heal_warned_ms < PROXY_REPAIR_LOG_EVERY_MS) {
        r->heal_fails_unlogged++;
        return;
    }
    log_warn(r->tag, "repair: heal of %s (and %u more failed heals since the last report)", what,
             r->heal_fails_unlogged);
    r->heal_warned_ms = now;
    r->heal_fails_unlogged = 0;
}

static void on_report(struct proxy_blobs_call *pc, int err, struct conn_frame *f)
{
    struct report *x = pc->data;
    struct proxy_repair *r = x->r;
    struct proxy_repair_node *nd = node_find(r, pc->node);
    if (nd) nd->report_busy = false;
    if (proxy_repair_current(r, x->gen)) {
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
            proxy_resync_step(r);
        }
    }
    free(x);
    proxy_resync_unref(r);
}

static void send_reports(struct proxy_repair *r, uint64_t now)
{
    for (unsigned i = 0; i < r->n_nodes; i++) {
        struct proxy_repair_node *nd = &r->nodes[i];
        if (nd->report_busy || nd->down_since_ms) continue;
        struct proxy_blobs_node info;
        uint32_t n_bad = proxy_blobs_info(r->p->blobs, nd->id, &info) ? info.n_bad : 0;
        uint64_t every = BD_MAX(nd->report_every_ms, PROXY_REPAIR_REPORT_MIN_MS);
        if (!r->report_all && !nd->report_now && !(n_bad && now - nd->last_report_ms >= every))
            continue;
        struct report *x = calloc(1, sizeof(*x));
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
        proxy_blobs_call(r->p->blobs, &x->call, WIRE_BLOB_REPORT, fields, (size_t)len, NULL);
    }
    r->report_all = false;
}

/* ---- tick, start, stop ---------------------------------------------------------------------- */

void proxy_repair_tick(struct proxy *p)
{
    struct proxy_repair *r = p->repair;
    if (!r || r->stopping) return;
    uint64_t now = util_mono_ms();
    if (!consensus_is_leader(p->cons)) {
        if (r->leader) lose_leadership(r);
        return;
    }
    if (!r->leader) {
        r->leader = true;
        r->leader_since_ms = now;
        r->next_pass_ms = now + BD_MIN(p->cfg->repair_interval_ms, PROXY_REPAIR_FIRST_PASS_MAX_MS);
    }
    refresh_nodes(r, now);
    send_reports(r, now);
    proxy_resync_step(r);
}

static double g_last_pass(void *a)
{
    return (double)((struct proxy_repair *)a)->last_pass_wall_ms / 1000.0;
}
static double g_pass_took(void *a)
{
    return (double)((struct proxy_repair *)a)->last_pass_took_ms / 1000.0;
}
static double g_incomplete(void *a)
{
    const struct proxy_repair *r = a;
    unsigned k = 0;
    for (uint32_t i = 0; i < r->n_parts; i++)
        if (r->parts[i].has_last && !r->parts[i].last.complete) k++;
    return k;
}
static double g_orphans(void *a)
{
    return ((struct proxy_repair *)a)->orphans.n;
}
static double g_queue(void *a)
{
    const struct proxy_repair *r = a;
    return r->q_len + r->n_running;
}

int proxy_repair_start(struct proxy *p)
{
    struct proxy_repair *r = proxy_resync_new(p);
    if (!r) return -ENOMEM;
    r->on_heal_done = heal_done;
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

void proxy_repair_stop(struct proxy *p)
{
    struct proxy_repair *r = p->repair;
    if (!r) return;
    p->repair = NULL;
    metrics_remove_owner(r);
    r->stopping = true;
    r->gen++;
    proxy_resync_drop_queue(r);
    proxy_resync_unref(r);
}

/* ---- status ---------------------------------------------------------------------------------- */

void proxy_repair_status(struct proxy *p, cJSON *out)
{
    struct proxy_repair *r = p->repair;
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
    cJSON_AddNumberToObject(o, "replicas_replaced", (double)proxy_move_replaced(p));
    cJSON_AddNumberToObject(o, "copies_queued", r->q_len);
    cJSON_AddNumberToObject(o, "copies_in_flight", r->n_running);
}

void proxy_repair_part_json(struct proxy *p, const struct index_part *pt, cJSON *out)
{
    struct proxy_repair *r = p->repair;
    unsigned up = 0;
    for (int i = 0; i < RPLAN_REPLICAS; i++)
        if (proxy_blobs_is_up(p->blobs, pt->nodes[i])) up++;
    cJSON_AddNumberToObject(out, "replicas_up", up);
    const struct proxy_repair_part *x = r && r->leader ? proxy_resync_part(r, pt->id, false) : NULL;
    if (!x || !x->has_last) {
        cJSON_AddNullToObject(out, "sync");
        return;
    }
    const struct proxy_repair_result *l = &x->last;
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
