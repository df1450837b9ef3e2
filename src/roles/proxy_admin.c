/* proxy_admin.c: the proxy's admin HTTP API (README "Admin API"; CONTRACT
 * §3 admin HTTP JSON).
 *
 *   GET    /v1/status[?scan=1]              this proxy: raft, index, blob servers
 *                                           (scan=1: also the index digest and space)
 *   GET    /v1/cluster                      proxies, blob servers, partitions
 *   GET    /v1/volumes                      all volumes
 *   POST   /v1/volumes                      {"name", "size"} or {"name", "snapshot":
 *                                           {"volume", "name"}} (a clone)
 *   GET    /v1/volumes/NAME                 one volume
 *   PATCH  /v1/volumes/NAME                 {"size"}: grow
 *   DELETE /v1/volumes/NAME                 delete (409 while attached)
 *   DELETE /v1/volumes/NAME/attachment      force-detach a dead agent (fences it)
 *   GET    /v1/volumes/NAME/snapshots       its snapshots
 *   POST   /v1/volumes/NAME/snapshots       {"name"}
 *   DELETE /v1/volumes/NAME/snapshots/SNAP
 *
 * Bodies are strict JSON (jsonv): unknown or duplicate keys, wrong types,
 * fractional or out-of-range numbers are 400 naming the field; sizes are
 * exact integers (or strings such as "10G"), multiples of 4096.  Mutations
 * become index commands (pcmd): any proxy takes them and forwards to the
 * leader; the answer waits until this proxy has applied the entry, so a
 * GET right after a POST on the same proxy sees the result.  No leader
 * within the deadline is 503. */
#include "proxy.h"
#include "proxy_int.h"
#include "proxy_repair.h"
#include "../bd.h"
#include "../jsonv.h"
#include "../log.h"
#include "../util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN_CMD_DEADLINE_MS 10000

static void vol_json(cJSON *o, const struct index_vol *v)
{
    cJSON_AddStringToObject(o, "name", v->name);
    cJSON_AddNumberToObject(o, "id", (double)v->id);
    cJSON_AddNumberToObject(o, "size", (double)v->size);
    cJSON_AddNumberToObject(o, "block_size", v->block_size);
    cJSON_AddNumberToObject(o, "generation", (double)v->generation);
    cJSON_AddStringToObject(o, "attached_to", v->attach_mode == INDEX_ATTACH_RW ? v->agent : "");
    cJSON_AddBoolToObject(o, "read_only", false);
    cJSON_AddStringToObject(o, "state", "ready");
    cJSON_AddNumberToObject(o, "created_index", (double)v->created_index);
}

static int http_code(int err)
{
    switch (err) {
    case -ENOENT: return 404;
    case -EEXIST: case -EBUSY: case -ERANGE: case -BD_EFENCED: return 409;
    case -EINVAL: return 400;
    case -EAGAIN: case -ESHUTDOWN: case -ETIMEDOUT: return 503;
    default: return 500;
    }
}

/* ---- reads ------------------------------------------------------------------------- */

static void on_status(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    cJSON *o = cJSON_CreateObject();
    const char *scan = admin_req_query(r, "scan");
    proxy_status_json(p, o, scan && strcmp(scan, "1") == 0);
    admin_reply_json(r, 200, o);
}

static void on_list(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    if (proxy_read_begin(p) < 0) {
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
            cJSON *v = cJSON_CreateObject();
            vol_json(v, &vols[i]);
            cJSON_AddItemToArray(arr, v);
        }
        if (rc == 0 && n) util_strlcpy(after, vols[n - 1].name, sizeof(after));
    } while (rc == 0 && n == 64);
    proxy_read_end(p);
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
    if (proxy_read_begin(p) < 0) {
        admin_reply_error(r, 503, "index busy");
        return;
    }
    struct index_vol v;
    int rc = index_vol_by_name(p->rd, name, strlen(name), &v);
    proxy_read_end(p);
    if (rc < 0) {
        admin_reply_error(r, http_code(rc), "volume %s: %s", name, bd_strerror(rc));
        return;
    }
    cJSON *o = cJSON_CreateObject();
    vol_json(o, &v);
    admin_reply_json(r, code, o);
}

static void snaps_json(struct admin_req *r, struct proxy *p, const char *name)
{
    if (proxy_read_begin(p) < 0) {
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
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "name", s[i].name);
            cJSON_AddNumberToObject(j, "size", (double)s[i].size);
            cJSON_AddNumberToObject(j, "created_index", (double)s[i].created_index);
            cJSON_AddItemToArray(arr, j);
        }
        if (rc < 0 || n < 64) break;
        util_strlcpy(after, s[n - 1].name, sizeof(after));
    }
    proxy_read_end(p);
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
    else admin_reply_error(r, 404, "no such endpoint");
}

static void on_cluster(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    cJSON *o = cJSON_CreateObject();
    cJSON *proxies = cJSON_AddArrayToObject(o, "proxies");
    uint64_t leader = consensus_leader(p->cons, NULL);
    for (unsigned i = 0; i < p->cfg->n_peers; i++) {
        cJSON *j = cJSON_CreateObject();
        uint64_t id = p->cfg->peers[i].id;
        cJSON_AddNumberToObject(j, "id", (double)id);
        cJSON_AddStringToObject(j, "addr", p->cfg->peers[i].addr);
        if (id == p->cfg->id) {
            cJSON_AddStringToObject(j, "state", consensus_state_name(consensus_state(p->cons)));
            cJSON_AddNumberToObject(j, "term", (double)consensus_term(p->cons));
            cJSON_AddNumberToObject(j, "commit_index", (double)consensus_commit_index(p->cons));
            cJSON_AddNumberToObject(j, "applied_index", (double)consensus_last_applied(p->cons));
        } else {
            bool up = p->peer_links[i] && link_is_up(p->peer_links[i]);
            cJSON_AddStringToObject(j, "state", id == leader ? "leader"
                                                : up          ? "follower"
                                                              : "unreachable");
        }
        cJSON_AddItemToArray(proxies, j);
    }
    cJSON *nodes = cJSON_AddArrayToObject(o, "nodes");
    cJSON *parts = cJSON_AddArrayToObject(o, "partitions");
    if (proxy_read_begin(p) == 0) {
        struct index_node nd[64];
        uint32_t n = 0;
        uint64_t after = 0;
        do {
            if (index_node_list(p->rd, after, nd, 64, &n) < 0) break;
            for (uint32_t i = 0; i < n; i++) {
                cJSON *j = cJSON_CreateObject();
                cJSON_AddNumberToObject(j, "id", (double)nd[i].id);
                cJSON_AddStringToObject(j, "addr", nd[i].addr);
                cJSON_AddBoolToObject(j, "up", pblobs_is_up(p->blobs, nd[i].id));
                struct pblob_node_info info[256];
                unsigned k = pblobs_list(p->blobs, info, 256);
                for (unsigned q = 0; q < k && q < 256; q++)
                    if (info[q].id == nd[i].id) {
                        cJSON_AddNumberToObject(j, "capacity", (double)info[q].capacity);
                        cJSON_AddNumberToObject(j, "used", (double)info[q].used);
                        cJSON_AddNumberToObject(j, "blobs", (double)info[q].blobs);
                        cJSON_AddNumberToObject(j, "bad_blobs", info[q].n_bad);
                    }
                cJSON_AddItemToArray(nodes, j);
            }
            if (n) after = nd[n - 1].id;
        } while (n == 64);
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
                prepair_part_json(p, &pt[i], j);
                cJSON_AddItemToArray(parts, j);
            }
            if (n) pafter = pt[n - 1].id;
        } while (n == 64);
        proxy_read_end(p);
    }
    admin_reply_json(r, 200, o);
}

/* ---- mutations ---------------------------------------------------------------------- */

struct amut {
    struct pcmd cmd;
    struct pwait wait;
    struct proxy *p;
    struct admin_req *r;
    char name[INDEX_NAME_MAX + 1];
    int ok_code;               /* 200, 201 or 204 */
    bool reply_volume;         /* answer with the volume's JSON */
    bool is_create;
    uint64_t size;             /* create: to recognise our own retried create */
    uint8_t buf[1024];
};

static void amut_after_wait(struct pwait *w, int err)
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

static void on_mut(struct pcmd *c, int err, uint64_t index, const struct idx_result *res)
{
    struct amut *m = bd_container_of(c, struct amut, cmd);
    struct proxy *p = m->p;
    if (err == 0 && res->status != IDX_OK) {
        err = idx_status_to_err(res->status);
        /* A create retried after an unknown outcome finds its own volume. */
        if (err == -EEXIST && m->is_create && c->attempts > 1 && proxy_read_begin(p) == 0) {
            struct index_vol v;
            if (index_vol_by_name(p->rd, m->name, strlen(m->name), &v) == 0 && v.size == m->size)
                err = 0;
            proxy_read_end(p);
        }
    }
    if (err) {
        const char *why = err == -EAGAIN ? "no raft leader reachable; try again"
                          : err == -ETIMEDOUT ? "the raft leader did not answer in time; the "
                                                "change may still be applied"
                          : err == -EEXIST ? "already exists"
                          : err == -EBUSY ? "in use (attached, or has dependants)"
                          : err == -ERANGE ? "size not allowed (volumes only grow)"
                                           : bd_strerror(err);
        admin_reply_error(m->r, http_code(err), "%s: %s", m->name, why);
        free(m);
        return;
    }
    /* Answer once this proxy applied the entry (read-your-writes). */
    m->wait = (struct pwait){.cb = amut_after_wait, .data = m, .index = index,
                             .deadline_ms = util_mono_ms() + ADMIN_CMD_DEADLINE_MS};
    pwait_add(p, &m->wait);
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
    if (m->is_create) m->size = cmd->u.create_volume.size;
    m->cmd = (struct pcmd){.cb = on_mut, .buf = m->buf, .len = (size_t)n,
                           .deadline_ms = util_mono_ms() + ADMIN_CMD_DEADLINE_MS};
    pcmd_submit(p, &m->cmd);
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

static void on_create(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    static const char *const keys[] = {"name", "size", "snapshot", NULL};
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
        cmd.u.clone.vol = idx_cstr(svol);
        cmd.u.clone.snap = idx_cstr(sname);
        cmd.u.clone.new_name = idx_cstr(name);
    } else {
        uint64_t size;
        if (!get_vol_size(r, &d, &size)) {
            jsonv_free(&d);
            return;
        }
        cmd.type = IDXCMD_CREATE_VOLUME;
        cmd.u.create_volume.name = idx_cstr(name);
        cmd.u.create_volume.size = size;
        cmd.u.create_volume.block_size = BD_BLOCK_SIZE;
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
    static const char *const keys[] = {"size", NULL};
    struct jsonv_doc d;
    if (!parse_body(r, &d, keys)) return;
    uint64_t size;
    if (!get_vol_size(r, &d, &size)) {
        jsonv_free(&d);
        return;
    }
    jsonv_free(&d);
    struct idxcmd cmd = {.type = IDXCMD_RESIZE_VOLUME};
    cmd.u.resize_volume.name = idx_cstr(name);
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
        cmd.u.delete_volume.name = idx_cstr(name);
        submit(p, r, &cmd, name, 204, false);
        return;
    }
    if (strcmp(rest, "attachment") == 0) {
        if (proxy_read_begin(p) < 0) {
            admin_reply_error(r, 503, "index busy");
            return;
        }
        struct index_vol v;
        int rc = index_vol_by_name(p->rd, name, strlen(name), &v);
        proxy_read_end(p);
        if (rc < 0) {
            admin_reply_error(r, http_code(rc), "volume %s: %s", name, bd_strerror(rc));
            return;
        }
        if (v.attach_mode != INDEX_ATTACH_RW) {
            admin_reply_error(r, 409, "%s is not attached", name);
            return;
        }
        cmd.type = IDXCMD_DETACH;
        cmd.u.detach.vol_id = v.id;
        cmd.u.detach.generation = v.generation;
        cmd.u.detach.agent = idx_cstr(v.agent);
        submit(p, r, &cmd, name, 200, true);
        return;
    }
    if (strncmp(rest, "snapshots/", 10) == 0 && idxcmd_name_valid(rest + 10, strlen(rest + 10))) {
        cmd.type = IDXCMD_SNAPSHOT_DELETE;
        cmd.u.snapshot_delete.vol = idx_cstr(name);
        cmd.u.snapshot_delete.snap = idx_cstr(rest + 10);
        submit(p, r, &cmd, name, 204, false);
        return;
    }
    admin_reply_error(r, 404, "no such endpoint");
}

static void on_post_vol(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    char name[INDEX_NAME_MAX + 1], sname[INDEX_NAME_MAX + 1];
    const char *rest;
    if (!split_tail(admin_req_tail(r), name, sizeof(name), &rest) || !rest ||
        strcmp(rest, "snapshots") != 0) {
        admin_reply_error(r, 404, "no such endpoint");
        return;
    }
    static const char *const keys[] = {"name", NULL};
    struct jsonv_doc d;
    if (!parse_body(r, &d, keys)) return;
    if (!get_name(r, &d, d.root, "", "name", sname)) {
        jsonv_free(&d);
        return;
    }
    jsonv_free(&d);
    struct idxcmd cmd = {.type = IDXCMD_SNAPSHOT_CREATE};
    cmd.u.snapshot_create.vol = idx_cstr(name);
    cmd.u.snapshot_create.snap = idx_cstr(sname);
    submit(p, r, &cmd, name, 201, true);
}

int padmin_start(struct proxy *p)
{
    int rc = admin_new(p->rx, p->cfg->admin, p->tag, p->top->admin_token, &p->admin);
    if (rc < 0) return rc;
    rc = admin_route(p->admin, "GET", "/v1/status", false, on_status, p);
    if (!rc) rc = admin_route(p->admin, "GET", "/v1/cluster", false, on_cluster, p);
    if (!rc) rc = admin_route(p->admin, "GET", "/v1/volumes", false, on_list, p);
    if (!rc) rc = admin_route(p->admin, "POST", "/v1/volumes", true, on_create, p);
    if (!rc) rc = admin_route(p->admin, "GET", "/v1/volumes/*", false, on_get_vol, p);
    if (!rc) rc = admin_route(p->admin, "PATCH", "/v1/volumes/*", true, on_patch, p);
    if (!rc) rc = admin_route(p->admin, "DELETE", "/v1/volumes/*", true, on_delete, p);
    if (!rc) rc = admin_route(p->admin, "POST", "/v1/volumes/*", true, on_post_vol, p);
    return rc;
}
