/* proxy_admin.c: the proxy's admin HTTP API (README "Admin API"; CONTRACT
 * §3 admin HTTP JSON).
 *
 *   GET    /v1/status[?scan=1]              this proxy: raft, index, blob servers
 *                                           (scan=1: also the index digest and space)
 *   GET    /v1/cluster                      proxies, blob servers, partitions
 *   GET    /                                the status page (public: it holds no data;
 *                                           its scripts call the API with a token)
 *   GET    /v1/health                       named checks, since when, what to do, and
 *                                           the age of every input (proxy_health.h)
 *   GET    /v1/stats/volumes                per-volume I/O over the last minutes, as
 *                                           this proxy served it (proxy_volstats.h)
 *   GET    /v1/volumes                      all volumes
 *   POST   /v1/volumes                      {"name", "size", "profile"?, "limits"?} or
 *                                           {"name", "snapshot": {"volume", "name"}}
 *                                           (a clone)
 *   GET    /v1/volumes/NAME                 one volume
 *   PATCH  /v1/volumes/NAME                 {"size"}: grow; or {"profile"?, "limits"?}:
 *                                           its QoS (proxy_qos.c), live on its agent
 *   /v1/qos-profiles[/NAME]                 QoS profiles             (proxy_qos.c)
 *   DELETE /v1/volumes/NAME                 delete (409 while attached)
 *   POST   /v1/volumes/NAME/attach          {"agent", "read_only", "client", "force"}:
 *                                           attach it to an agent (409 when attached
 *                                           elsewhere or still held, unless forced,
 *                                           which fences the old holder)
 *   DELETE /v1/volumes/NAME/attach[?force=1] detach it (force: and fence its holder)
 *   GET    /v1/volumes/NAME/snapshots       its snapshots
 *   POST   /v1/volumes/NAME/snapshots       {"name"}              (proxy_life.c)
 *   DELETE /v1/volumes/NAME/snapshots/SNAP                        (proxy_life.c)
 *   POST   /v1/snapshots                    a consistency group   (proxy_life.c)
 *   POST   /v1/volumes/NAME/rollback, /flatten                    (proxy_life.c)
 *   GET    /v1/volumes/NAME/diff, /data                           (proxy_backup.c)
 *   POST   /v1/volumes/NAME/import[/write|/end]                   (proxy_backup.c)
 *
 * Bodies are strict JSON (jsonv): unknown or duplicate keys, wrong types,
 * fractional or out-of-range numbers are 400 naming the field; sizes are
 * exact integers (or strings such as "10G"), multiples of 4096.  Mutations
 * become index commands (proxy_cmd.c): any proxy takes them and forwards to the
 * leader; the answer waits until this proxy has applied the entry, so a
 * GET right after a POST on the same proxy sees the result.  No leader
 * within the deadline is 503. */
#include "roles/proxy/proxy_admin.h"
#include "runtime/taskq.h"
#include "roles/proxy/proxy.h"
#include "roles/proxy/proxy_backup.h"
#include "roles/proxy/proxy_blobs.h"
#include "roles/proxy/proxy_cmd.h"
#include "roles/proxy/proxy_index.h"
#include "roles/proxy/proxy_int.h"
#include "roles/proxy/proxy_life.h"
#include "roles/proxy/proxy_mgmt.h"
#include "roles/proxy/proxy_qos.h"
#include "roles/proxy/proxy_repair.h"
#include "roles/proxy/proxy_shape.h"
#include "roles/proxy/proxy_volstats.h"
#include "roles/proxy/proxy_health.h"
#include "status_page.h"  /* generated from status_page.html (meson.build) */
#include "roles/proxy/proxy_flatten.h"
#include "roles/proxy/proxy_rewrite.h"
#include "base/bd.h"
#include "base/jsonv.h"
#include "runtime/log.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN_CMD_DEADLINE_MS 10000

static void vol_json(cJSON *o, const struct index_vol *v, const struct index_vol_usage *u)
{
    cJSON_AddStringToObject(o, "name", v->name);
    cJSON_AddNumberToObject(o, "id", (double)v->id);
    cJSON_AddNumberToObject(o, "size", (double)v->size);
    cJSON_AddNumberToObject(o, "block_size", v->block_size);
    cJSON_AddNumberToObject(o, "generation", (double)v->generation);
    /* The control plane's attachment (ASSIGN), and the agent that holds
     * the volume read-write right now (its runtime attach, C10). */
    cJSON_AddStringToObject(o, "attached_to", v->assign_agent);
    cJSON_AddBoolToObject(o, "read_only", v->assign_mode == INDEX_ASSIGN_RO);
    cJSON_AddStringToObject(o, "client", v->assign_client);
    cJSON_AddStringToObject(o, "writer", v->attach_mode == INDEX_ATTACH_RW ? v->agent : "");
    cJSON_AddStringToObject(o, "state", "ready");
    cJSON_AddNumberToObject(o, "created_index", (double)v->created_index);
    if (u) {
        /* Kept by the index as it applies (index.h "usage"): no walk. */
        cJSON *j = cJSON_AddObjectToObject(o, "usage");
        cJSON_AddNumberToObject(j, "provisioned_bytes", (double)u->provisioned_bytes);
        cJSON_AddNumberToObject(j, "written_bytes", (double)u->written_bytes);
        cJSON_AddNumberToObject(j, "unique_bytes", (double)u->unique_bytes);
    }
}

static int http_code(int err)
{
    switch (err) {
    case -ENOENT: return 404;
    case -EEXIST: case -EBUSY: case -ERANGE: case -BD_EFENCED: return 409;
    case -EINVAL: return 400;
    case -EAGAIN: case -ESHUTDOWN: case -ETIMEDOUT: return 503;
    case -ENOSPC: return 507; /* the index is at its size limit */
    default: return 500;
    }
}

/* ---- status ------------------------------------------------------------------------ */

/* The figures only a walk of the whole index gives (O(records)). */
struct scan_figures {
    int space_rc, digest_rc;
    struct index_space sp;
    uint64_t digest;
};

static void scan_json(cJSON *ix, const struct scan_figures *f)
{
    if (f->space_rc == 0) {
        /* What the blob servers hold for the index (per copy) against what
         * volumes and snapshots address: partly overwritten blobs are the
         * difference (README "Performance"). */
        cJSON_AddNumberToObject(ix, "blob_bytes", (double)f->sp.blob_bytes);
        cJSON_AddNumberToObject(ix, "dead_blob_bytes", (double)f->sp.dead_bytes);
        cJSON_AddNumberToObject(ix, "data_bytes", (double)f->sp.data_bytes);
        cJSON_AddNumberToObject(ix, "space_amplification",
                                f->sp.data_bytes ? (double)f->sp.blob_bytes /
                                                       (double)f->sp.data_bytes
                                                 : 0);
    }
    if (f->digest_rc == 0) {
        char hex[24];
        snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)f->digest);
        cJSON_AddStringToObject(ix, "digest", hex);
    }
}

/* This proxy's status (raft, index, blob servers, the services, repair).
 * FULL_SCAN adds what needs a walk of the whole index (its digest, the
 * space figures) right here: O(records) on the calling thread.  The
 * admin API never asks for it on the reactor: ?scan=1 walks on the scan
 * thread (on_status); in-process harnesses may. */
static void status_json(struct proxy *p, cJSON *o, bool full_scan)
{
    cJSON_AddStringToObject(o, "role", "proxy");
    cJSON_AddNumberToObject(o, "id", (double)p->cfg->id);
    cJSON_AddStringToObject(o, "version", BD_VERSION);
    cJSON *r = cJSON_AddObjectToObject(o, "raft");
    const char *laddr = NULL;
    uint64_t leader = consensus_leader(p->cons, &laddr);
    cJSON_AddStringToObject(r, "state", consensus_state_name(consensus_state(p->cons)));
    cJSON_AddNumberToObject(r, "term", (double)consensus_term(p->cons));
    cJSON_AddNumberToObject(r, "commit_index", (double)consensus_commit_index(p->cons));
    cJSON_AddNumberToObject(r, "applied_index", (double)consensus_last_applied(p->cons));
    cJSON_AddNumberToObject(r, "last_index", (double)consensus_last_index(p->cons));
    cJSON_AddNumberToObject(r, "leader_id", (double)leader);
    cJSON_AddStringToObject(r, "leader_addr", laddr ? laddr : "");
    proxy_shape_proxies_json(p, cJSON_AddArrayToObject(r, "peers"));
    if (!proxy_index_read_begin(p)) {
        struct index_stats st;
        cJSON *ix = cJSON_AddObjectToObject(o, "index");
        cJSON_AddNumberToObject(ix, "applied_index", (double)index_applied(p->rd));
        if (index_stats(p->rd, &st) == 0) {
            cJSON_AddNumberToObject(ix, "volumes", (double)st.volumes);
            cJSON_AddNumberToObject(ix, "extents", (double)st.extents);
            cJSON_AddNumberToObject(ix, "blobs", (double)st.blobs);
            cJSON_AddNumberToObject(ix, "partitions", (double)st.partitions);
            cJSON_AddNumberToObject(ix, "nodes", (double)st.nodes);
            cJSON_AddNumberToObject(ix, "gc_pending", (double)st.gc);
            cJSON_AddNumberToObject(ix, "bytes", (double)st.pages * st.page_size);
            cJSON_AddNumberToObject(ix, "bytes_per_extent",
                                    st.extents ? (double)st.pages * st.page_size /
                                                     (double)st.extents
                                               : 0);
        }
        if (full_scan) {
            struct scan_figures f;
            f.space_rc = index_space(p->rd, &f.sp);
            f.digest_rc = index_digest(p->rd, &f.digest);
            scan_json(ix, &f);
        }
        proxy_index_read_end(p);
    }
    cJSON_AddNumberToObject(o, "blob_servers_up", proxy_blobs_up_count(p->blobs));
    proxy_mgmt_status(p, o);
    proxy_repair_status(p, o);
    proxy_shape_status(p, o);
    proxy_rewrite_status(p, o);
    proxy_flatten_status(p, o);
}

/* ---- reads ------------------------------------------------------------------------- */

void proxy_status_json(struct proxy *p, cJSON *out, bool full_scan)
{
    status_json(p, out, full_scan);
}

/* ?scan=1: the walk runs on the scan thread, in a read txn of its own
 * (LMDB readers may run on any thread), so the reactor keeps serving I/O
 * however large the index; the answer goes out when it is done.  A few at
 * a time: monitoring that polls it cannot pile walks up. */
#define SCANS_MAX 2

struct scan_job {
    struct taskq_job job;
    struct proxy *p;
    struct admin_req *r;
    struct index_reader *rd;
    uint64_t applied;          /* the index the walk saw */
    int begin_rc;
    struct scan_figures f;
};

static void scan_run(struct taskq_job *job)
{
    struct scan_job *s = bd_container_of(job, struct scan_job, job);
    s->begin_rc = index_read_begin(s->rd);
    if (s->begin_rc < 0) return;
    s->applied = index_applied(s->rd);
    s->f.space_rc = index_space(s->rd, &s->f.sp);
    s->f.digest_rc = index_digest(s->rd, &s->f.digest);
    index_read_end(s->rd);
}

static void scan_done(struct reactor_work *w)
{
    struct scan_job *s = bd_container_of(w, struct scan_job, job.work);
    s->p->scans--;
    cJSON *o = cJSON_CreateObject();
    status_json(s->p, o, false);
    cJSON *ix = cJSON_GetObjectItemCaseSensitive(o, "index");
    if (s->begin_rc < 0 || !ix) {
        cJSON_Delete(o);
        admin_reply_error(s->r, 503, "index busy");
    } else {
        cJSON_AddNumberToObject(ix, "scan_applied_index", (double)s->applied);
        scan_json(ix, &s->f);
        admin_reply_json(s->r, 200, o);
    }
    index_reader_free(s->rd);
    free(s);
}

static void on_status(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    const char *scan = admin_req_query(r, "scan");
    if (!scan || strcmp(scan, "1") != 0) {
        cJSON *o = cJSON_CreateObject();
        status_json(p, o, false);
        admin_reply_json(r, 200, o);
        return;
    }
    if (p->scans >= SCANS_MAX) {
        admin_reply_error(r, 503, "%u full index scans are running; retry later", p->scans);
        return;
    }
    struct scan_job *s = calloc(1, sizeof(*s));
    if (!s || (!p->scanq && !(p->scanq = taskq_new(p->rx, "index-scan"))) ||
        index_reader_new(p->ix, &s->rd) < 0) {
        free(s);
        admin_reply_error(r, 503, "no resources for an index scan");
        return;
    }
    s->p = p;
    s->r = r;
    s->job.run = scan_run;
    s->job.work.done = scan_done;
    p->scans++;
    taskq_submit(p->scanq, &s->job);
}

static void on_list(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    if (proxy_index_read_begin(p) < 0) {
        admin_reply_error(r, 503, "index busy");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "volumes");
    char after[INDEX_NAME_MAX + 1] = "";
    struct index_vol vols[64];
    uint32_t n;
    int rc;
    do {
        rc = index_vol_list(p->rd, after, strlen(after), vols, 64, &n);
        for (uint32_t i = 0; rc == 0 && i < n; i++) {
            struct index_vol_usage u;
            cJSON *v = cJSON_CreateObject();
            rc = index_vol_usage(p->rd, &vols[i], &u);
            vol_json(v, &vols[i], rc == 0 ? &u : NULL);
            proxy_qos_vol_json(p, &vols[i], v);
            cJSON_AddItemToArray(arr, v);
        }
        if (rc == 0 && n) util_strlcpy(after, vols[n - 1].name, sizeof(after));
    } while (rc == 0 && n == 64);
    proxy_index_read_end(p);
    if (rc < 0) {
        cJSON_Delete(o);
        admin_reply_error(r, 500, "index: %s", bd_strerror(rc));
        return;
    }
    admin_reply_json(r, 200, o);
}

/* Split "NAME[/rest]" (the route tail); NAME validated. */
static bool split_tail(const char *tail, char *name, size_t nlen, const char **rest)
{
    const char *slash = strchr(tail, '/');
    size_t n = slash ? (size_t)(slash - tail) : strlen(tail);
    if (n == 0 || n >= nlen || !idxcmd_name_valid(tail, n)) return false;
    memcpy(name, tail, n);
    name[n] = 0;
    *rest = slash ? slash + 1 : NULL;
    return true;
}

static void reply_volume(struct admin_req *r, struct proxy *p, const char *name, int code)
{
    if (proxy_index_read_begin(p) < 0) {
        admin_reply_error(r, 503, "index busy");
        return;
    }
    struct index_vol v;
    struct index_vol_usage u;
    int rc = index_vol_by_name(p->rd, name, strlen(name), &v);
    if (rc == 0) rc = index_vol_usage(p->rd, &v, &u);
    if (rc < 0) {
        proxy_index_read_end(p);
        admin_reply_error(r, http_code(rc), "volume %s: %s", name, bd_strerror(rc));
        return;
    }
    cJSON *o = cJSON_CreateObject();
    vol_json(o, &v, &u);
    proxy_life_vol_json(p, &v, o);
    proxy_qos_vol_json(p, &v, o);
    proxy_index_read_end(p);
    admin_reply_json(r, code, o);
}

static void snaps_json(struct admin_req *r, struct proxy *p, const char *name)
{
    if (proxy_index_read_begin(p) < 0) {
        admin_reply_error(r, 503, "index busy");
        return;
    }
    struct index_vol v;
    int rc = index_vol_by_name(p->rd, name, strlen(name), &v);
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "snapshots");
    struct index_snap s[64];
    uint32_t n = 0;
    char after[INDEX_NAME_MAX + 1] = "";
    while (rc == 0) {
        rc = index_snap_list(p->rd, v.id, after, strlen(after), s, 64, &n);
        for (uint32_t i = 0; rc == 0 && i < n; i++) {
            uint64_t written, freed;
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "name", s[i].name);
            cJSON_AddNumberToObject(j, "size", (double)s[i].size);
            cJSON_AddNumberToObject(j, "created_index", (double)s[i].created_index);
            if ((rc = index_snap_usage(p->rd, &s[i], &written, &freed)) == 0) {
                cJSON_AddNumberToObject(j, "written_bytes", (double)written);
                cJSON_AddNumberToObject(j, "freed_bytes", (double)freed);
            }
            proxy_life_snap_json(p, &s[i], j);
            cJSON_AddItemToArray(arr, j);
        }
        if (rc < 0 || n < 64) break;
        util_strlcpy(after, s[n - 1].name, sizeof(after));
    }
    proxy_index_read_end(p);
    if (rc < 0) {
        cJSON_Delete(o);
        admin_reply_error(r, http_code(rc), "volume %s: %s", name, bd_strerror(rc));
        return;
    }
    admin_reply_json(r, 200, o);
}

static void on_get_vol(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    char name[INDEX_NAME_MAX + 1];
    const char *rest;
    if (!split_tail(admin_req_tail(r), name, sizeof(name), &rest)) {
        admin_reply_error(r, 404, "no such volume");
        return;
    }
    if (!rest) reply_volume(r, p, name, 200);
    else if (strcmp(rest, "snapshots") == 0) snaps_json(r, p, name);
    else if (strcmp(rest, "diff") == 0) proxy_backup_diff(p, r, name);
    else if (strcmp(rest, "data") == 0) proxy_backup_data(p, r, name);
    else admin_reply_error(r, 404, "no such endpoint");
}

static void on_cluster(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    cJSON *o = cJSON_CreateObject();
    proxy_shape_proxies_json(p, cJSON_AddArrayToObject(o, "proxies"));
    cJSON *nodes = cJSON_AddArrayToObject(o, "nodes");
    cJSON *parts = cJSON_AddArrayToObject(o, "partitions");
    /* Capacity and use as each blob server last reported them (heartbeats,
     * not raft): per server, and summed over the registered ones. */
    uint64_t cap_total = 0, used_total = 0, free_total = 0;
    if (proxy_index_read_begin(p) == 0) {
        struct index_node nd[64];
        uint32_t n = 0;
        uint64_t after = 0;
        do {
            if (index_node_list(p->rd, after, nd, 64, &n) < 0) break;
            for (uint32_t i = 0; i < n; i++) {
                cJSON *j = cJSON_CreateObject();
                cJSON_AddNumberToObject(j, "id", (double)nd[i].id);
                cJSON_AddStringToObject(j, "addr", nd[i].addr);
                cJSON_AddBoolToObject(j, "up", proxy_blobs_is_up(p->blobs, nd[i].id));
                struct proxy_blobs_node info;
                if (proxy_blobs_info(p->blobs, nd[i].id, &info)) {
                    uint64_t cap = info.capacity, used = info.used;
                    uint64_t avail = cap > used ? cap - used : 0;
                    cJSON_AddNumberToObject(j, "capacity", (double)cap);
                    cJSON_AddNumberToObject(j, "used", (double)used);
                    cJSON_AddNumberToObject(j, "free", (double)avail);
                    cJSON_AddNumberToObject(j, "blobs", (double)info.blobs);
                    cJSON_AddNumberToObject(j, "bad_blobs", info.n_bad);
                    if (nd[i].state != INDEX_NODE_RETIRED) {
                        cap_total += cap;
                        used_total += used;
                        free_total += avail;
                    }
                }
                proxy_shape_node_json(p, &nd[i], j);
                cJSON_AddItemToArray(nodes, j);
            }
            if (n) after = nd[n - 1].id;
        } while (n == 64);
        struct index_meta m;
        if (index_meta_get(p->rd, &m) == 0) {
            /* What the index addresses against what it keeps on the blob
             * servers (per copy), kept as it applies: no walk. */
            cJSON *sp = cJSON_AddObjectToObject(o, "space");
            cJSON_AddNumberToObject(sp, "data_bytes", (double)m.data_bytes);
            cJSON_AddNumberToObject(sp, "blob_bytes", (double)m.blob_bytes);
            cJSON_AddNumberToObject(sp, "dead_blob_bytes", (double)m.dead_bytes);
            cJSON_AddNumberToObject(sp, "space_amplification",
                                    m.data_bytes ? (double)m.blob_bytes / (double)m.data_bytes
                                                 : 0);
            cJSON_AddNumberToObject(sp, "rewritten_bytes", (double)m.rewritten_bytes);
        }
        struct index_part pt[64];
        uint32_t pafter = 0;
        do {
            if (index_part_list(p->rd, pafter, pt, 64, &n) < 0) break;
            for (uint32_t i = 0; i < n; i++) {
                cJSON *j = cJSON_CreateObject();
                cJSON_AddNumberToObject(j, "id", pt[i].id);
                cJSON *ns = cJSON_AddArrayToObject(j, "nodes");
                for (int q = 0; q < 3; q++)
                    cJSON_AddItemToArray(ns, cJSON_CreateNumber((double)pt[i].nodes[q]));
                cJSON_AddNumberToObject(j, "epoch", (double)pt[i].epoch);
                proxy_repair_part_json(p, &pt[i], j);
                proxy_shape_part_json(p, &pt[i], j);
                cJSON_AddItemToArray(parts, j);
            }
            if (n) pafter = pt[n - 1].id;
        } while (n == 64);
        proxy_index_read_end(p);
    }
    cJSON *cap = cJSON_AddObjectToObject(o, "capacity");
    cJSON_AddNumberToObject(cap, "capacity_bytes", (double)cap_total);
    cJSON_AddNumberToObject(cap, "used_bytes", (double)used_total);
    cJSON_AddNumberToObject(cap, "free_bytes", (double)free_total);
    proxy_shape_cluster_json(p, o);
    admin_reply_json(r, 200, o);
}

/* ---- mutations ---------------------------------------------------------------------- */

struct amut {
    struct proxy_cmd cmd;
    struct proxy_mgmt_wait wait;
    struct proxy *p;
    struct admin_req *r;
    char name[INDEX_NAME_MAX + 1];
    int ok_code;               /* 200, 201 or 204 */
    bool reply_volume;         /* answer with the volume's JSON */
    bool is_create;
    bool is_assign;            /* an attach or detach: a 409 says who has the volume */
    char agent[INDEX_NAME_MAX + 1]; /* the agent it was to be attached to ("" detach) */
    uint64_t size;             /* create: to recognise our own retried create */
    uint8_t buf[1024];
};

static void amut_after_wait(struct proxy_mgmt_wait *w, int err)
{
    struct amut *m = w->data;
    if (err && err != -ETIMEDOUT) {
        admin_reply_error(m->r, http_code(err), "%s", bd_strerror(err));
    } else if (m->reply_volume) {
        reply_volume(m->r, m->p, m->name, m->ok_code);
    } else {
        admin_reply_json(m->r, m->ok_code, NULL);
    }
    free(m);
}

static void on_mut(struct proxy_cmd *c, int err, uint64_t index, const struct idxcmd_result *res)
{
    struct amut *m = bd_container_of(c, struct amut, cmd);
    struct proxy *p = m->p;
    if (err == 0 && res->status != IDXCMD_ST_OK) {
        err = idxcmd_status_to_err(res->status);
        /* A create retried after an unknown outcome finds its own volume. */
        if (err == -EEXIST && m->is_create && c->attempts > 1 && proxy_index_read_begin(p) == 0) {
            struct index_vol v;
            if (index_vol_by_name(p->rd, m->name, strlen(m->name), &v) == 0 && v.size == m->size)
                err = 0;
            proxy_index_read_end(p);
        }
    }
    if (err == -EBUSY && m->is_assign && proxy_index_read_begin(p) == 0) {
        struct index_vol v;
        int rc = index_vol_by_name(p->rd, m->name, strlen(m->name), &v);
        proxy_index_read_end(p);
        if (rc == 0) {
            char why[600];
            if (v.assign_mode != INDEX_ASSIGN_NONE && strcmp(v.assign_agent, m->agent) != 0)
                snprintf(why, sizeof(why), "attached to agent %s; detach it first, or force",
                         v.assign_agent);
            else
                snprintf(why, sizeof(why), "agent %s still holds it read-write (it lets go "
                         "once it has shipped what it holds); retry, or force, which fences it",
                         v.attach_mode == INDEX_ATTACH_RW ? v.agent : "?");
            admin_reply_error(m->r, 409, "%s: %s", m->name, why);
            free(m);
            return;
        }
    }
    if (err) {
        const char *why = err == -EAGAIN ? "no raft leader reachable; try again"
                          : err == -ETIMEDOUT ? "the raft leader did not answer in time; the "
                                                "change may still be applied"
                          : err == -EEXIST ? "already exists"
                          : err == -EBUSY ? "in use (attached to an agent or held by one)"
                          : err == -ERANGE ? "size not allowed (volumes only grow)"
                                           : bd_strerror(err);
        admin_reply_error(m->r, http_code(err), "%s: %s", m->name, why);
        free(m);
        return;
    }
    /* Answer once this proxy applied the entry (read-your-writes). */
    m->wait = (struct proxy_mgmt_wait){.cb = amut_after_wait, .data = m, .index = index,
                                       .deadline_ms = util_mono_ms() + ADMIN_CMD_DEADLINE_MS};
    proxy_mgmt_wait_add(p, &m->wait);
}

static void submit(struct proxy *p, struct admin_req *r, const struct idxcmd *cmd,
                   const char *name, int ok_code, bool reply_volume)
{
    struct amut *m = calloc(1, sizeof(*m));
    if (!m) {
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    int n = idxcmd_encode(m->buf, sizeof(m->buf), cmd);
    if (n < 0) {
        free(m);
        admin_reply_error(r, 400, "invalid request");
        return;
    }
    m->p = p;
    m->r = r;
    util_strlcpy(m->name, name, sizeof(m->name));
    m->ok_code = ok_code;
    m->reply_volume = reply_volume;
    m->is_create = cmd->type == IDXCMD_CREATE_VOLUME;
    m->is_assign = cmd->type == IDXCMD_ASSIGN;
    if (m->is_assign) {
        memcpy(m->agent, cmd->u.assign.agent.ptr, cmd->u.assign.agent.len);
        m->agent[cmd->u.assign.agent.len] = 0;
    }
    if (m->is_create) m->size = cmd->u.create_volume.size;
    m->cmd = (struct proxy_cmd){.cb = on_mut, .buf = m->buf, .len = (size_t)n,
                                .deadline_ms = util_mono_ms() + ADMIN_CMD_DEADLINE_MS};
    proxy_cmd_submit(p, &m->cmd);
}

/* Parse a JSON body allowing only KEYS; on failure replies 400 and
 * returns false. */
static bool parse_body(struct admin_req *r, struct jsonv_doc *d, const char *const *keys)
{
    size_t len;
    const char *body = admin_req_body(r, &len);
    if (jsonv_parse(d, "body", body, len, ADMIN_MAX_DEPTH) < 0 ||
        jsonv_check_keys(d, d->root, "", keys) < 0) {
        admin_reply_error(r, 400, "%s", d->err);
        jsonv_free(d);
        return false;
    }
    return true;
}

static bool get_name(struct admin_req *r, struct jsonv_doc *d, const cJSON *o, const char *path,
                     const char *key, char *out)
{
    const char *s;
    char p[64];
    snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "", key);
    if (jsonv_get_str(d, o, path, key, true, 1, INDEX_NAME_MAX, &s) < 0) {
        admin_reply_error(r, 400, "%s", d->err);
        return false;
    }
    if (!idxcmd_name_valid(s, strlen(s))) {
        admin_reply_error(r, 400,
                          "%s: names are 1-255 of [A-Za-z0-9._-], not starting with '.' or '-'",
                          p);
        return false;
    }
    util_strlcpy(out, s, INDEX_NAME_MAX + 1);
    return true;
}

static bool get_vol_size(struct admin_req *r, struct jsonv_doc *d, uint64_t *size)
{
    if (jsonv_get_size(d, d->root, "", "size", true, IDXCMD_ALIGN, IDXCMD_MAX_VOL_SIZE, size) < 0) {
        admin_reply_error(r, 400, "%s", d->err);
        return false;
    }
    if (*size % IDXCMD_ALIGN) {
        admin_reply_error(r, 400, "size: must be a multiple of %u", IDXCMD_ALIGN);
        return false;
    }
    return true;
}

/* The QoS keys of a create or PATCH body in D: "profile" (a name, or
 * null in a PATCH: none) into PROFILE (*HAS_PROFILE: given), and
 * "limits" into Q (a PATCH: with nulls as unsets, into CLEAR).
 * NOT_ALLOWED: a clone, which takes its snapshot's volume's QoS.  1 if
 * any was given, 0 if none, -1 after answering 400/404. */
static int qos_fields(struct admin_req *r, struct proxy *p, struct jsonv_doc *d,
                      bool not_allowed, char *profile, bool *has_profile,
                      struct qos_limits *q, uint16_t *clear, bool patch)
{
    memset(q, 0, sizeof(*q));
    *clear = 0;
    *has_profile = false;
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(d->root, "profile");
    const cJSON *lj = cJSON_GetObjectItemCaseSensitive(d->root, "limits");
    if (!pj && !lj) return 0;
    if (not_allowed) {
        admin_reply_error(r, 400, "%s: a clone takes its source volume's QoS; PATCH it after",
                          pj ? "profile" : "limits");
        return -1;
    }
    if (lj && proxy_qos_parse(d, lj, "limits", NULL, q, patch ? clear : NULL) < 0) {
        admin_reply_error(r, 400, "%s", d->err);
        return -1;
    }
    if (pj && !(patch && cJSON_IsNull(pj))) {
        if (!get_name(r, d, d->root, "", "profile", profile)) return -1;
        if (proxy_index_read_begin(p) < 0) {
            admin_reply_error(r, 503, "index busy");
            return -1;
        }
        int rc = proxy_qos_profile_exists(p, profile);
        proxy_index_read_end(p);
        if (rc < 0) {
            admin_reply_error(r, rc == -ENOENT ? 404 : http_code(rc), "profile: %s",
                              rc == -ENOENT ? "no such QoS profile" : bd_strerror(rc));
            return -1;
        }
    }
    *has_profile = pj != NULL;
    return 1;
}

static void on_create(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    static const char *const keys[] = {"name", "size", "snapshot", "profile", "limits", NULL};
    struct jsonv_doc d;
    if (!parse_body(r, &d, keys)) return;
    char name[INDEX_NAME_MAX + 1], svol[INDEX_NAME_MAX + 1], sname[INDEX_NAME_MAX + 1];
    const cJSON *snap = NULL;
    int has_snap = jsonv_get_object(&d, d.root, "", "snapshot", false, &snap);
    if (has_snap < 0) {
        admin_reply_error(r, 400, "%s", d.err);
        jsonv_free(&d);
        return;
    }
    if (!get_name(r, &d, d.root, "", "name", name)) {
        jsonv_free(&d);
        return;
    }
    struct idxcmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    if (has_snap == 0) {
        static const char *const skeys[] = {"volume", "name", NULL};
        if (cJSON_GetObjectItemCaseSensitive(d.root, "size")) {
            admin_reply_error(r, 400, "size: a clone takes the snapshot's size");
            jsonv_free(&d);
            return;
        }
        if (jsonv_check_keys(&d, snap, "snapshot", skeys) < 0) {
            admin_reply_error(r, 400, "%s", d.err);
            jsonv_free(&d);
            return;
        }
        if (!get_name(r, &d, snap, "snapshot", "volume", svol) ||
            !get_name(r, &d, snap, "snapshot", "name", sname)) {
            jsonv_free(&d);
            return;
        }
        cmd.type = IDXCMD_CLONE;
        cmd.u.clone.vol = idxcmd_cstr(svol);
        cmd.u.clone.snap = idxcmd_cstr(sname);
        cmd.u.clone.new_name = idxcmd_cstr(name);
    } else {
        uint64_t size;
        if (!get_vol_size(r, &d, &size)) {
            jsonv_free(&d);
            return;
        }
        cmd.type = IDXCMD_CREATE_VOLUME;
        cmd.u.create_volume.name = idxcmd_cstr(name);
        cmd.u.create_volume.size = size;
        cmd.u.create_volume.block_size = BD_BLOCK_SIZE;
    }
    char profile[INDEX_NAME_MAX + 1] = "";
    struct qos_limits q;
    uint16_t clear;
    bool has_profile;
    int has_qos = qos_fields(r, p, &d, has_snap == 0, profile, &has_profile, &q, &clear, false);
    if (has_qos < 0) {
        jsonv_free(&d);
        return;
    }
    if (cmd.type == IDXCMD_CREATE_VOLUME) {
        /* The profile string points into PROFILE, which outlives submit. */
        cmd.u.create_volume.profile = idxcmd_cstr(profile);
        cmd.u.create_volume.qos = q;
        if (!has_qos) cmd.u.create_volume.flags |= IDXCMD_CREATE_DEFAULT_QOS;
    }
    jsonv_free(&d);
    submit(p, r, &cmd, name, 201, true);
}

static void on_patch(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    char name[INDEX_NAME_MAX + 1];
    const char *rest;
    if (!split_tail(admin_req_tail(r), name, sizeof(name), &rest) || rest) {
        admin_reply_error(r, 404, "no such volume");
        return;
    }
    static const char *const keys[] = {"size", "profile", "limits", NULL};
    struct jsonv_doc d;
    if (!parse_body(r, &d, keys)) return;
    if (!cJSON_GetObjectItemCaseSensitive(d.root, "size")) {
        /* QoS: one SET_QOS; the agent serving it follows within a poll. */
        struct idxcmd cmd;
        memset(&cmd, 0, sizeof(cmd));
        char profile[INDEX_NAME_MAX + 1] = "";
        bool has_profile;
        uint16_t clear;
        int has = qos_fields(r, p, &d, false, profile, &has_profile, &cmd.u.set_qos.qos, &clear,
                             true);
        jsonv_free(&d);
        if (has < 0) return;
        if (has == 0) {
            admin_reply_error(r, 400, "body: give size, or profile and/or limits");
            return;
        }
        cmd.type = IDXCMD_SET_QOS;
        cmd.u.set_qos.flags = has_profile ? IDXCMD_QOS_PROFILE : 0;
        cmd.u.set_qos.clear = clear;
        cmd.u.set_qos.name = idxcmd_cstr(name);
        cmd.u.set_qos.profile = idxcmd_cstr(profile);
        submit(p, r, &cmd, name, 200, true);
        return;
    }
    if (cJSON_GetObjectItemCaseSensitive(d.root, "profile") ||
        cJSON_GetObjectItemCaseSensitive(d.root, "limits")) {
        admin_reply_error(r, 400, "size: resize and QoS changes are separate requests");
        jsonv_free(&d);
        return;
    }
    uint64_t size;
    if (!get_vol_size(r, &d, &size)) {
        jsonv_free(&d);
        return;
    }
    jsonv_free(&d);
    struct idxcmd cmd = {.type = IDXCMD_RESIZE_VOLUME};
    cmd.u.resize_volume.name = idxcmd_cstr(name);
    cmd.u.resize_volume.size = size;
    submit(p, r, &cmd, name, 200, true);
}

static void on_delete(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    char name[INDEX_NAME_MAX + 1];
    const char *rest;
    if (!split_tail(admin_req_tail(r), name, sizeof(name), &rest)) {
        admin_reply_error(r, 404, "no such volume");
        return;
    }
    struct idxcmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    if (!rest) {
        cmd.type = IDXCMD_DELETE_VOLUME;
        cmd.u.delete_volume.name = idxcmd_cstr(name);
        submit(p, r, &cmd, name, 204, false);
        return;
    }
    if (strcmp(rest, "attach") == 0) {
        const char *force = admin_req_query(r, "force");
        if (force && strcmp(force, "1") != 0 && strcmp(force, "0") != 0) {
            admin_reply_error(r, 400, "force: expected 0 or 1");
            return;
        }
        cmd.type = IDXCMD_ASSIGN;
        cmd.u.assign.name = idxcmd_cstr(name);
        cmd.u.assign.agent = idxcmd_cstr("");
        cmd.u.assign.client = idxcmd_cstr("");
        cmd.u.assign.flags = force && strcmp(force, "1") == 0 ? IDXCMD_ASSIGN_FORCE : 0;
        submit(p, r, &cmd, name, 200, true);
        return;
    }
    if (strncmp(rest, "snapshots/", 10) == 0 && idxcmd_name_valid(rest + 10, strlen(rest + 10))) {
        proxy_life_snapshot_delete(p, r, name, rest + 10);
        return;
    }
    admin_reply_error(r, 404, "no such endpoint");
}

/* POST /v1/volumes/NAME/attach {"agent", "read_only", "client", "force"}. */
static void on_attach(struct admin_req *r, struct proxy *p, const char *name)
{
    static const char *const keys[] = {"agent", "read_only", "client", "force", NULL};
    struct jsonv_doc d;
    if (!parse_body(r, &d, keys)) return;
    char agent[INDEX_NAME_MAX + 1], client[INDEX_NAME_MAX + 1] = "";
    bool ro = false, force = false;
    if (!get_name(r, &d, d.root, "", "agent", agent)) {
        jsonv_free(&d);
        return;
    }
    const cJSON *cj = cJSON_GetObjectItemCaseSensitive(d.root, "client");
    bool any_client = cj && cJSON_IsString(cj) && !cj->valuestring[0]; /* "" as absent */
    if (cj && !any_client && !get_name(r, &d, d.root, "", "client", client)) {
        jsonv_free(&d);
        return;
    }
    if (jsonv_get_bool(&d, d.root, "", "read_only", false, &ro) < 0 ||
        jsonv_get_bool(&d, d.root, "", "force", false, &force) < 0) {
        admin_reply_error(r, 400, "%s", d.err);
        jsonv_free(&d);
        return;
    }
    jsonv_free(&d);
    /* Agent ids and client ids are what certificates and PSK files name. */
    if (strlen(agent) > WIRE_ID_MAX || strlen(client) > WIRE_ID_MAX) {
        admin_reply_error(r, 400, "%s: at most %u bytes", strlen(agent) > WIRE_ID_MAX ? "agent"
                                                                                   : "client",
                          WIRE_ID_MAX);
        return;
    }
    struct idxcmd cmd = {.type = IDXCMD_ASSIGN};
    cmd.u.assign.name = idxcmd_cstr(name);
    cmd.u.assign.agent = idxcmd_cstr(agent);
    cmd.u.assign.client = idxcmd_cstr(client);
    cmd.u.assign.flags = (ro ? IDXCMD_ASSIGN_RO : 0) | (force ? IDXCMD_ASSIGN_FORCE : 0);
    submit(p, r, &cmd, name, 200, true);
}

static void on_post_vol(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    char name[INDEX_NAME_MAX + 1];
    const char *rest;
    if (!split_tail(admin_req_tail(r), name, sizeof(name), &rest) || !rest) {
        admin_reply_error(r, 404, "no such endpoint");
        return;
    }
    if (strcmp(rest, "snapshots") == 0) proxy_life_snapshot(p, r, name);
    else if (strcmp(rest, "attach") == 0) on_attach(r, p, name);
    else if (strcmp(rest, "rollback") == 0) proxy_life_rollback(p, r, name, reply_volume);
    else if (strcmp(rest, "flatten") == 0) proxy_life_flatten(p, r, name, reply_volume);
    else if (strncmp(rest, "import", 6) == 0) proxy_backup_import(p, r, name, rest);
    else admin_reply_error(r, 404, "no such endpoint");
}

/* ---- the operator's view ------------------------------------------------------------ */

static void on_volstats(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "proxy_id", (double)p->cfg->id);
    proxy_volstats_json(p->volstats, util_mono_ms(), util_wall_ms(), o);
    admin_reply_json(r, 200, o);
}

static void on_page(struct admin_req *r, void *arg)
{
    (void)arg;
    admin_reply_text(r, 200, "text/html; charset=utf-8", proxy_status_page,
                     PROXY_STATUS_PAGE_LEN);
}

static void on_health(struct admin_req *r, void *arg)
{
    cJSON *o = cJSON_CreateObject();
    proxy_health_json(arg, o);
    admin_reply_json(r, 200, o);
}

void proxy_admin_stop(struct proxy *p)
{
    /* Scans first: their answers go out through the admin, and they read
     * the index the role closes after. */
    if (p->scanq) taskq_free(p->scanq);
    p->scanq = NULL;
    if (p->admin) admin_free(p->admin);
    p->admin = NULL;
    proxy_volstats_free(p->volstats);
    p->volstats = NULL;
    proxy_qos_seen_stop(p);
    proxy_health_stop(p);
}

int proxy_admin_start(struct proxy *p)
{
    struct admin_auth aa = {.tls = p->tls, .admin_token = p->top->admin_token,
                            .read_token = p->top->admin_read_token};
    p->volstats = proxy_volstats_new();
    if (!p->volstats) return -ENOMEM;
    if (proxy_qos_seen_start(p) < 0) return -ENOMEM;
    int hrc = proxy_health_start(p);
    if (hrc < 0) return hrc;
    int rc = admin_new(p->rx, p->cfg->admin, p->tag, &aa, &p->admin);
    if (rc < 0) return rc;
    rc = admin_route(p->admin, "GET", "/v1/status", false, on_status, p);
    if (!rc) rc = admin_route(p->admin, "GET", "/v1/cluster", false, on_cluster, p);
    if (!rc) rc = admin_route(p->admin, "GET", "/v1/volumes", false, on_list, p);
    if (!rc) rc = admin_route(p->admin, "POST", "/v1/volumes", true, on_create, p);
    if (!rc) rc = admin_route(p->admin, "GET", "/v1/volumes/*", false, on_get_vol, p);
    if (!rc) rc = admin_route(p->admin, "PATCH", "/v1/volumes/*", true, on_patch, p);
    if (!rc) rc = admin_route(p->admin, "DELETE", "/v1/volumes/*", true, on_delete, p);
    if (!rc) rc = admin_route(p->admin, "POST", "/v1/volumes/*", true, on_post_vol, p);
    if (!rc) rc = admin_route(p->admin, "GET", "/v1/stats/volumes", ADMIN_READ, on_volstats, p);
    if (!rc) rc = admin_route(p->admin, "GET", "/v1/health", ADMIN_READ, on_health, p);
    if (!rc) rc = admin_route(p->admin, "GET", "/", ADMIN_PUBLIC, on_page, p);
    if (!rc) rc = admin_route(p->admin, "POST", "/v1/snapshots", true, proxy_life_group, p);
    if (!rc) rc = proxy_shape_routes(p);
    if (!rc) rc = proxy_qos_routes(p);
    return rc;
}
