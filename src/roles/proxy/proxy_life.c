/* proxy_life.c: the admin API's data-lifecycle calls (README "Admin API").
 *
 *   POST   /v1/volumes/VOL/snapshots  {"name", "require_barrier"?}   201 SNAPSHOT
 *   POST   /v1/snapshots    {"name", "volumes": [...], "require_barrier"?}
 *                                                   201 {"name", "snapshots": [SNAPSHOT]}
 *   DELETE /v1/volumes/VOL/snapshots/SNAP             204; 409 naming the clones
 *   POST   /v1/volumes/VOL/rollback  {"snapshot"}     200 VOLUME; 409 while attached
 *   POST   /v1/volumes/VOL/flatten   {}               200 VOLUME (with "flatten")
 *
 * Snapshots and the agent barrier (C12).  A snapshot of a volume no agent
 * holds freezes what the index holds, and that is every acknowledged
 * write (an agent ships everything before it detaches; a force-detached
 * one's unshipped writes were fenced, never acknowledged to anyone who
 * can still read them).  A snapshot of an attached volume first asks its
 * agent for a barrier: VOL_BARRIER on the connection the agent made to
 * this proxy (proxy_agent_conn, learned from its AGENT_HELLO), which the
 * agent answers once everything it acknowledged before is committed,
 * with the raft index of those writes; this proxy waits until it applied
 * that index, then proposes SNAPSHOT_GROUP with the attach generation the
 * barrier was for, and the index refuses the snapshot if that attach has
 * been fenced since (fsm_life.c).  Which volumes an agent holds is read
 * from this proxy's index, which on a follower may lag the commit: the
 * entry also carries the attach generation each volume was seen with, the
 * index refuses it (ESTALE) if that is no longer the volume's, and this
 * proxy then waits until it applied the refusal and looks again (up to
 * SNAP_TRIES times), so an attach committed before the call is never
 * mistaken for none.  A barrier that fails (agent not
 * connected here, not attached there, fenced, PROXY_LIFE_BARRIER_MS
 * passed) leaves the snapshot to freeze what the index holds, and the
 * answer says so: every SNAPSHOT has "barrier", "consistency" ("barrier"
 * or "index") and a "note" saying why; "require_barrier": true refuses
 * (409) instead.  A group's barriers run in parallel, then one entry.
 *
 * Consistency groups: every volume of the list in one Raft entry, so one
 * point in time across them, all or none; a refusal names the volume
 * ("volumes[2] (db): ...").
 *
 * Every mutation is one index command submitted through proxy_life_submit,
 * answered once this proxy applied it, so a GET right after sees it. */
#include "roles/proxy/proxy_life.h"
#include "roles/proxy/proxy_index.h"
#include "roles/proxy/proxy_int.h"
#include "base/bd.h"
#include "base/bytes.h"
#include "base/jsonv.h"
#include "base/util.h"
#include "runtime/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIFE_DEADLINE_MS 10000
#define MAX_CLONES_NAMED 8
#define PROXY_LIFE_BARRIER_MS 5000 /* an agent's barrier, then applying its writes */
#define SNAP_TRIES 4               /* looks at the attachments before giving up (ESTALE) */

/* ---- submit and wait -------------------------------------------------------------- */

int proxy_life_http_code(int err)
{
    switch (err) {
    case -ENOENT: return 404;
    case -EEXIST: case -EBUSY: case -ERANGE: case -BD_EFENCED: case -ESTALE: case -E2BIG:
        return 409;
    case -EINVAL: return 400;
    case -EAGAIN: case -ESHUTDOWN: case -ETIMEDOUT: return 503;
    default: return 500;
    }
}

static void on_applied_here(struct proxy_mgmt_wait *w, int err)
{
    struct proxy_life_cmd *m = w->data;
    /* Applied by the majority; a slow local apply only delays visibility. */
    m->done(m, err == -ETIMEDOUT ? 0 : err);
}

static void on_cmd(struct proxy_cmd *c, int err, uint64_t index, const struct idxcmd_result *res)
{
    struct proxy_life_cmd *m = bd_container_of(c, struct proxy_life_cmd, cmd);
    if (err) {
        memset(&m->res, 0, sizeof(m->res));
        m->done(m, err);
        return;
    }
    m->res = *res;
    m->index = index;
    if (res->status != IDXCMD_ST_OK) {
        m->done(m, idxcmd_status_to_err(res->status));
        return;
    }
    m->wait = (struct proxy_mgmt_wait){.cb = on_applied_here, .data = m, .index = index,
                                       .deadline_ms = util_mono_ms() + LIFE_DEADLINE_MS};
    proxy_mgmt_wait_add(m->p, &m->wait);
}

static void on_unencodable(void *arg)
{
    struct proxy_life_cmd *m = arg;
    m->done(m, -EINVAL);
}

void proxy_life_submit(struct proxy *p, struct proxy_life_cmd *m, const struct idxcmd *cmd)
{
    m->p = p;
    int n = idxcmd_encode(m->buf, sizeof(m->buf), cmd);
    if (n < 0) {
        memset(&m->res, 0, sizeof(m->res));
        if (reactor_defer(p->rx, on_unencodable, m) < 0) m->done(m, -EINVAL);
        return;
    }
    m->cmd = (struct proxy_cmd){.cb = on_cmd, .buf = m->buf, .len = (size_t)n,
                                .deadline_ms = util_mono_ms() + LIFE_DEADLINE_MS};
    proxy_cmd_submit(p, &m->cmd);
}

/* A transport error's words. */
static const char *why(int err)
{
    return err == -EAGAIN      ? "no raft leader reachable; try again"
           : err == -ETIMEDOUT ? "the raft leader did not answer in time; the change may "
                                 "still be applied"
                               : bd_strerror(err);
}

/* ---- request helpers --------------------------------------------------------------- */

/* Parse the body allowing only KEYS; 400 and false on failure.  An empty
 * body counts as {} when EMPTY_OK. */
static bool body(struct admin_req *r, struct jsonv_doc *d, const char *const *keys, bool empty_ok)
{
    size_t len;
    const char *b = admin_req_body(r, &len);
    if (empty_ok && len == 0) b = "{}", len = 2;
    if (jsonv_parse(d, "body", b, len, ADMIN_MAX_DEPTH) < 0 ||
        jsonv_check_keys(d, d->root, "", keys) < 0) {
        admin_reply_error(r, 400, "%s", d->err);
        jsonv_free(d);
        return false;
    }
    return true;
}

/* A name field (PATH.KEY for messages) into OUT; 400 and false if bad. */
static bool name_field(struct admin_req *r, struct jsonv_doc *d, const cJSON *o,
                       const char *path, const char *key, char *out)
{
    const char *s;
    if (jsonv_get_str(d, o, path, key, true, 1, INDEX_NAME_MAX, &s) < 0) {
        admin_reply_error(r, 400, "%s", d->err);
        return false;
    }
    if (!idxcmd_name_valid(s, strlen(s))) {
        admin_reply_error(r, 400, "%s%s%s: names are 1-255 of [A-Za-z0-9._-], not starting with "
                          "'.' or '-'", path, *path ? "." : "", key);
        return false;
    }
    util_strlcpy(out, s, INDEX_NAME_MAX + 1);
    return true;
}

/* ---- JSON extras ------------------------------------------------------------------------ */

uint64_t proxy_life_snap_identity(struct proxy *p, const struct index_snap *s)
{
    if (s->origin) return s->origin;
    uint8_t buf[INDEX_CLUSTER_MAX + INDEX_NAME_MAX + 16];
    size_t n = strlen(p->top->cluster_id), k = strlen(s->name);
    memcpy(buf, p->top->cluster_id, n);
    bytes_put_le64(buf + n, s->vol_id);
    memcpy(buf + n + 8, s->name, k);
    bytes_put_le64(buf + n + 8 + k, s->created_index);
    return util_xxh3(buf, n + 16 + k);
}

void proxy_life_snap_json(struct proxy *p, const struct index_snap *s, cJSON *o)
{
    char hex[24];
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)proxy_life_snap_identity(p, s));
    cJSON_AddStringToObject(o, "identity", hex);
    cJSON_AddBoolToObject(o, "barrier", s->flags & INDEX_SNAP_BARRIER);
    if (s->origin) cJSON_AddBoolToObject(o, "imported", true);
}

void proxy_life_vol_json(struct proxy *p, const struct index_vol *v, cJSON *o)
{
    uint64_t bottom, parent, parent_vol;
    struct index_vol pv;
    struct index_snap ps;
    if (index_vol_parent(p->rd, v, &bottom, &parent, &parent_vol) < 0 || !parent) {
        cJSON_AddNullToObject(o, "clone_of");
    } else {
        cJSON *c = cJSON_AddObjectToObject(o, "clone_of");
        bool have_vol = index_vol_by_id(p->rd, parent_vol, &pv) == 0;
        cJSON_AddStringToObject(c, "volume", have_vol ? pv.name : "");
        cJSON_AddStringToObject(c, "snapshot",
                                have_vol && index_snap_by_layer(p->rd, pv.id, parent, &ps) == 0
                                    ? ps.name
                                    : "");
    }
    struct index_flatten f;
    if (index_flatten_get(p->rd, v->id, &f) < 0) {
        cJSON_AddNullToObject(o, "flatten");
        return;
    }
    cJSON *j = cJSON_AddObjectToObject(o, "flatten");
    cJSON_AddStringToObject(j, "state", "running");
    cJSON_AddNumberToObject(j, "offset", (double)f.cursor);
    cJSON_AddNumberToObject(j, "size", (double)v->size);
    cJSON_AddNumberToObject(j, "copied_bytes", (double)f.copied_bytes);
    cJSON_AddNumberToObject(j, "percent",
                            v->size ? (double)(f.cursor * 100 / v->size) : 100);
}

/* ---- snapshots ---------------------------------------------------------------------------- */

struct snap_req;

/* One volume of a snapshot call, and its barrier. */
struct snap_vol {
    struct snap_req *q;
    char vol[INDEX_NAME_MAX + 1];
    char note[400];
    char agent[INDEX_NAME_MAX + 1]; /* the agent holding it read-write; "" none */
    uint64_t vol_id, gen;           /* ... and its attach generation */
    uint64_t barrier_gen;           /* the entry's generation: gen after a barrier, else 0 */
    char failed[160];               /* why the barrier did not happen ("" if it did) */
    struct conn_call call;          /* VOL_BARRIER to the agent */
    struct proxy_mgmt_wait wait;    /* until this proxy applied the agent's raft index */
};

struct snap_req {
    struct proxy_life_cmd m;
    struct proxy *p;
    char snap[INDEX_NAME_MAX + 1];
    uint32_t n;
    bool group;                /* answer with {"name", "snapshots": [...]} */
    bool require;              /* require_barrier */
    uint32_t pending;          /* barriers not finished */
    uint32_t tries;            /* entries proposed (refused ESTALE but the last) */
    struct proxy_mgmt_wait relook; /* until the refused entry applied here */
    struct snap_vol v[IDXCMD_MAX_GROUP];
};

static bool snap_prepare(struct proxy *p, struct admin_req *r, struct snap_req *q);
static void snap_barriers(struct proxy *p, struct snap_req *q);

/* The refused entry has applied here, so this index shows the attachment
 * the leader's did: look again. */
static void on_relook(struct proxy_mgmt_wait *w, int err)
{
    struct snap_req *q = w->data;
    if (err) {
        admin_reply_error(q->m.r, 503, "snapshot %s: the volumes' attachments changed and this "
                          "proxy did not catch up in time; try again", q->snap);
        free(q);
        return;
    }
    for (uint32_t i = 0; i < q->n; i++) {
        struct snap_vol *sv = &q->v[i];
        sv->agent[0] = sv->note[0] = sv->failed[0] = '\0';
        sv->vol_id = sv->gen = sv->barrier_gen = 0;
    }
    if (!snap_prepare(q->p, q->m.r, q)) {
        free(q);
        return;
    }
    snap_barriers(q->p, q);
}

/* The SNAPSHOT answer for volume I of Q (read after the entry applied). */
static cJSON *snap_answer(struct proxy *p, struct snap_req *q, uint32_t i)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", q->snap);
    cJSON_AddStringToObject(o, "volume", q->v[i].vol);
    struct index_vol v;
    struct index_snap s;
    uint64_t written, freed;
    if (index_vol_by_name(p->rd, q->v[i].vol, strlen(q->v[i].vol), &v) == 0 &&
        index_snap_get(p->rd, v.id, q->snap, strlen(q->snap), &s) == 0) {
        cJSON_AddNumberToObject(o, "size", (double)s.size);
        cJSON_AddNumberToObject(o, "created_index", (double)s.created_index);
        if (index_snap_usage(p->rd, &s, &written, &freed) == 0) {
            cJSON_AddNumberToObject(o, "written_bytes", (double)written);
            cJSON_AddNumberToObject(o, "freed_bytes", (double)freed);
        }
        proxy_life_snap_json(p, &s, o);
    }
    cJSON_AddStringToObject(o, "consistency", q->v[i].barrier_gen ? "barrier" : "index");
    cJSON_AddStringToObject(o, "note", q->v[i].note);
    return o;
}

static void on_snapped(struct proxy_life_cmd *m, int err)
{
    struct snap_req *q = bd_container_of(m, struct snap_req, m);
    struct proxy *p = m->p;
    if (err == -ESTALE && q->tries < SNAP_TRIES && m->index) {
        log_info(p->tag, "snapshot %s: an attachment changed since this proxy looked "
                 "(refused at raft index %llu); looking again", q->snap,
                 (unsigned long long)m->index);
        q->relook = (struct proxy_mgmt_wait){.cb = on_relook, .data = q, .index = m->index,
                                             .deadline_ms = util_mono_ms() + LIFE_DEADLINE_MS};
        proxy_mgmt_wait_add(p, &q->relook);
        return;
    }
    if (err) {
        uint32_t at = m->res.id && m->res.id <= q->n ? (uint32_t)m->res.id - 1 : 0;
        const char *what = err == -EEXIST ? "already has a snapshot of that name"
                           : err == -ENOENT ? "no such volume"
                           : err == -E2BIG ? "its layer chain is at its limit (64): delete "
                                             "snapshots or flatten it"
                           : err == -BD_EFENCED ? "its agent was fenced after its barrier"
                           : err == -ESTALE ? "its attachment kept changing while the snapshot "
                                              "was taken; try again"
                                                : why(err);
        char where[300];
        if (q->group && m->res.id)
            snprintf(where, sizeof(where), "volumes[%u] (%s)", at, q->v[at].vol);
        else
            snprintf(where, sizeof(where), "%s", q->v[at].vol);
        admin_reply_error(m->r, proxy_life_http_code(err), "%s: snapshot %s: %s", where, q->snap,
                          what);
        free(q);
        return;
    }
    if (proxy_index_read_begin(p) < 0) {
        admin_reply_error(m->r, 503, "index busy");
        free(q);
        return;
    }
    cJSON *o;
    if (q->group) {
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", q->snap);
        cJSON *arr = cJSON_AddArrayToObject(o, "snapshots");
        for (uint32_t i = 0; i < q->n; i++) cJSON_AddItemToArray(arr, snap_answer(p, q, i));
    } else {
        o = snap_answer(p, q, 0);
    }
    proxy_index_read_end(p);
    admin_reply_json(m->r, 201, o);
    free(q);
}

static void snap_where(const struct snap_req *q, uint32_t i, char *buf, size_t len)
{
    if (q->group) snprintf(buf, len, "volumes[%u] (%s)", i, q->v[i].vol);
    else snprintf(buf, len, "%s", q->v[i].vol);
}

/* Look up Q's volumes (404 naming the one that is missing) and note which
 * an agent holds read-write (those get a barrier).  Returns false after
 * replying. */
static bool snap_prepare(struct proxy *p, struct admin_req *r, struct snap_req *q)
{
    if (proxy_index_read_begin(p) < 0) {
        admin_reply_error(r, 503, "index busy");
        return false;
    }
    for (uint32_t i = 0; i < q->n; i++) {
        struct index_vol v;
        int rc = index_vol_by_name(p->rd, q->v[i].vol, strlen(q->v[i].vol), &v);
        char where[300];
        snap_where(q, i, where, sizeof(where));
        if (rc < 0) {
            proxy_index_read_end(p);
            admin_reply_error(r, proxy_life_http_code(rc), "%s: %s", where,
                              rc == -ENOENT ? "no such volume" : bd_strerror(rc));
            return false;
        }
        q->v[i].q = q;
        if (v.attach_mode != INDEX_ATTACH_RW) {
            snprintf(q->v[i].note, sizeof(q->v[i].note),
                     "no agent attached: the snapshot holds what the index holds, every "
                     "acknowledged write");
            continue;
        }
        util_strlcpy(q->v[i].agent, v.agent, sizeof(q->v[i].agent));
        q->v[i].vol_id = v.id;
        q->v[i].gen = v.generation;
    }
    proxy_index_read_end(p);
    return true;
}

static void snap_submit(struct proxy *p, struct snap_req *q)
{
    struct idxcmd_group_vol g[IDXCMD_MAX_GROUP];
    for (uint32_t i = 0; i < q->n; i++)
        g[i] = (struct idxcmd_group_vol){idxcmd_cstr(q->v[i].vol), q->v[i].barrier_gen,
                                         q->v[i].gen};
    struct idxcmd cmd = {.type = IDXCMD_SNAPSHOT_GROUP};
    cmd.u.snapshot_group.snap = idxcmd_cstr(q->snap);
    cmd.u.snapshot_group.n = (uint8_t)q->n;
    cmd.u.snapshot_group.in = g;
    q->m.done = on_snapped;
    q->tries++;
    proxy_life_submit(p, &q->m, &cmd);
}

/* Every barrier of Q has finished: refuse (require_barrier) or propose. */
static void snap_barriers_done(struct snap_req *q)
{
    for (uint32_t i = 0; i < q->n; i++) {
        struct snap_vol *sv = &q->v[i];
        if (!sv->agent[0] || sv->barrier_gen) continue;
        if (q->require) {
            char where[300];
            snap_where(q, i, where, sizeof(where));
            admin_reply_error(q->m.r, 409, "%s: attached to agent %s, whose barrier failed: %s "
                              "(require_barrier)", where, sv->agent, sv->failed);
            free(q);
            return;
        }
        char agent[65], failed[sizeof(sv->failed)];
        util_strlcpy(agent, sv->agent, sizeof(agent));
        util_strlcpy(failed, sv->failed, sizeof(failed));
        snprintf(sv->note, sizeof(sv->note),
                 "attached to agent %s, whose barrier failed (%s): the snapshot holds what the "
                 "index holds, without writes it acknowledged but had not shipped",
                 agent, failed);
    }
    snap_submit(q->p, q);
}

static void barrier_end(struct snap_vol *sv, int err, const char *why_failed)
{
    if (err) snprintf(sv->failed, sizeof(sv->failed), "%s", why_failed);
    else sv->barrier_gen = sv->gen;
    if (--sv->q->pending == 0) snap_barriers_done(sv->q);
}

static void on_barrier_applied(struct proxy_mgmt_wait *w, int err)
{
    struct snap_vol *sv = w->data;
    if (!err)
        snprintf(sv->note, sizeof(sv->note),
                 "attached to agent %.64s: it shipped every write it acknowledged before the "
                 "call (up to raft index %llu) first", sv->agent,
                 (unsigned long long)w->index);
    barrier_end(sv, err, err == -ETIMEDOUT ? "this proxy did not apply the agent's writes in "
                                             "time" : bd_strerror(err));
}

static void on_barrier(struct conn_call *call, int err, struct conn_frame *f)
{
    struct snap_vol *sv = call->data;
    struct wire_vol_barrier_resp r;
    char text[160];
    if (!err && wire_decode_vol_barrier_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) < 0)
        err = -EPROTO;
    if (err) {
        const char *t = err == -ETIMEDOUT ? "timed out"
                        : err == -BD_EFENCED ? "the agent holds another attach generation"
                        : err == -ENOENT ? "the agent does not have it attached"
                        : f ? conn_error_text(f, text, sizeof(text)) : bd_strerror(err);
        barrier_end(sv, err, t);
        return;
    }
    /* The writes are committed; wait until this proxy applied them, so the
     * entry it proposes next follows them here as in the log. */
    sv->wait = (struct proxy_mgmt_wait){.cb = on_barrier_applied, .data = sv,
                                        .index = r.raft_index,
                                        .deadline_ms = util_mono_ms() + PROXY_LIFE_BARRIER_MS};
    proxy_mgmt_wait_add(sv->q->p, &sv->wait);
}

/* Ask the agent of every attached volume of Q for a barrier, all at once;
 * snap_barriers_done runs once all have ended (at once if there are none). */
static void snap_barriers(struct proxy *p, struct snap_req *q)
{
    q->p = p;
    q->pending = 1; /* held until every call is out, so none can finish Q early */
    for (uint32_t i = 0; i < q->n; i++) {
        struct snap_vol *sv = &q->v[i];
        if (!sv->agent[0]) continue;
        q->pending++;
        struct conn *c = proxy_agent_conn(p, sv->agent);
        if (!c) {
            barrier_end(sv, -ENOTCONN, "the agent is not connected to this proxy");
            continue;
        }
        struct wire_vol_barrier_req m = {.vol_id = sv->vol_id, .generation = sv->gen};
        uint8_t buf[32];
        int n = wire_encode_vol_barrier_req(buf, sizeof(buf), &m);
        sv->call = (struct conn_call){.cb = on_barrier, .data = sv};
        int rc = n < 0 ? n : conn_call(c, &sv->call, WIRE_VOL_BARRIER, buf, (size_t)n, NULL,
                                       PROXY_LIFE_BARRIER_MS);
        if (rc < 0) barrier_end(sv, rc, bd_strerror(rc));
    }
    if (--q->pending == 0) snap_barriers_done(q);
}

void proxy_life_snapshot(struct proxy *p, struct admin_req *r, const char *vol)
{
    static const char *const keys[] = {"name", "require_barrier", NULL};
    struct jsonv_doc d;
    if (!body(r, &d, keys, false)) return;
    struct snap_req *q = calloc(1, sizeof(*q));
    bool require = false;
    if (!q) {
        jsonv_free(&d);
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    q->m.r = r;
    q->n = 1;
    util_strlcpy(q->v[0].vol, vol, sizeof(q->v[0].vol));
    bool ok = name_field(r, &d, d.root, "", "name", q->snap);
    if (ok && jsonv_get_bool(&d, d.root, "", "require_barrier", false, &require) < 0) {
        admin_reply_error(r, 400, "%s", d.err);
        ok = false;
    }
    if (!ok) {
        jsonv_free(&d);
        free(q);
        return;
    }
    jsonv_free(&d);
    q->require = require;
    if (!snap_prepare(p, r, q)) {
        free(q);
        return;
    }
    snap_barriers(p, q);
}

void proxy_life_group(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    static const char *const keys[] = {"name", "volumes", "require_barrier", NULL};
    struct jsonv_doc d;
    if (!body(r, &d, keys, false)) return;
    struct snap_req *q = calloc(1, sizeof(*q));
    const cJSON *vols;
    bool require = false;
    if (!q) {
        jsonv_free(&d);
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    q->m.r = r;
    q->group = true;
    if (!name_field(r, &d, d.root, "", "name", q->snap)) goto out;
    if (jsonv_get_bool(&d, d.root, "", "require_barrier", false, &require) < 0 ||
        jsonv_get_array(&d, d.root, "", "volumes", true, 1, IDXCMD_MAX_GROUP, &vols) < 0) {
        admin_reply_error(r, 400, "%s", d.err);
        goto out;
    }
    int n = cJSON_GetArraySize(vols);
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(vols, i);
        char path[32];
        snprintf(path, sizeof(path), "volumes[%d]", i);
        if (!cJSON_IsString(e) || !idxcmd_name_valid(e->valuestring, strlen(e->valuestring))) {
            admin_reply_error(r, 400, "%s: a volume name (1-255 of [A-Za-z0-9._-], not starting "
                              "with '.' or '-')", path);
            goto out;
        }
        for (int k = 0; k < i; k++)
            if (!strcmp(q->v[k].vol, e->valuestring)) {
                admin_reply_error(r, 400, "%s: %s is listed twice", path, e->valuestring);
                goto out;
            }
        util_strlcpy(q->v[i].vol, e->valuestring, sizeof(q->v[i].vol));
    }
    q->n = (uint32_t)n;
    jsonv_free(&d);
    q->require = require;
    if (!snap_prepare(p, r, q)) {
        free(q);
        return;
    }
    snap_barriers(p, q);
    return;
out:
    jsonv_free(&d);
    free(q);
}

/* ---- snapshot delete ------------------------------------------------------------------------ */

struct del_req {
    struct proxy_life_cmd m;
    char vol[INDEX_NAME_MAX + 1], snap[INDEX_NAME_MAX + 1];
};

static void on_deleted(struct proxy_life_cmd *m, int err)
{
    struct del_req *q = bd_container_of(m, struct del_req, m);
    struct proxy *p = m->p;
    if (err == -EBUSY && proxy_index_read_begin(p) == 0) {
        /* Name the clones that keep it. */
        static char names[MAX_CLONES_NAMED][INDEX_NAME_MAX + 1];
        char list[MAX_CLONES_NAMED * 64 + 64] = "";
        uint32_t n = 0;
        struct index_vol v;
        struct index_snap s;
        if (index_vol_by_name(p->rd, q->vol, strlen(q->vol), &v) == 0 &&
            index_snap_get(p->rd, v.id, q->snap, strlen(q->snap), &s) == 0)
            index_snap_dependants(p->rd, &s, names, MAX_CLONES_NAMED, &n);
        proxy_index_read_end(p);
        for (uint32_t i = 0; i < n && i < MAX_CLONES_NAMED; i++) {
            size_t at = strlen(list);
            snprintf(list + at, sizeof(list) - at, "%s%.60s", i ? ", " : "", names[i]);
        }
        if (n > MAX_CLONES_NAMED) {
            size_t at = strlen(list);
            snprintf(list + at, sizeof(list) - at, " and %u more", n - MAX_CLONES_NAMED);
        }
        admin_reply_error(m->r, 409, "snapshot %s of %s has clones not yet flattened: %s "
                          "(flatten them first: blockd ctl volume flatten CLONE)", q->snap,
                          q->vol, n ? list : "(volumes since deleted)");
    } else if (err) {
        admin_reply_error(m->r, proxy_life_http_code(err), "snapshot %s of %s: %s", q->snap,
                          q->vol, err == -ENOENT ? "no such volume or snapshot" : why(err));
    } else {
        admin_reply_json(m->r, 204, NULL);
    }
    free(q);
}

void proxy_life_snapshot_delete(struct proxy *p, struct admin_req *r, const char *vol,
                                const char *snap)
{
    struct del_req *q = calloc(1, sizeof(*q));
    if (!q) {
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    q->m.r = r;
    q->m.done = on_deleted;
    util_strlcpy(q->vol, vol, sizeof(q->vol));
    util_strlcpy(q->snap, snap, sizeof(q->snap));
    struct idxcmd cmd = {.type = IDXCMD_SNAPSHOT_DELETE};
    cmd.u.snapshot_delete.vol = idxcmd_cstr(q->vol);
    cmd.u.snapshot_delete.snap = idxcmd_cstr(q->snap);
    proxy_life_submit(p, &q->m, &cmd);
}

/* ---- rollback and flatten -------------------------------------------------------------------- */

struct vol_req {
    struct proxy_life_cmd m;
    char vol[INDEX_NAME_MAX + 1], snap[INDEX_NAME_MAX + 1];
    char agent[INDEX_NAME_MAX + 1];
    proxy_life_reply_fn reply;
};

static void on_rolled_back(struct proxy_life_cmd *m, int err)
{
    struct vol_req *q = bd_container_of(m, struct vol_req, m);
    if (err == -EBUSY)
        admin_reply_error(m->r, 409, "%s is attached%s%s: rollback needs a detached volume "
                          "(stop its client, or force-detach it: blockd ctl volume detach %s)",
                          q->vol, q->agent[0] ? " to agent " : "", q->agent, q->vol);
    else if (err == -ENOENT)
        admin_reply_error(m->r, 404, "snapshot: %s has no snapshot %s (or no such volume)",
                          q->vol, q->snap);
    else if (err)
        admin_reply_error(m->r, proxy_life_http_code(err), "rollback of %s to %s: %s", q->vol,
                          q->snap, err == -E2BIG ? "the layer chain is at its limit" : why(err));
    else
        q->reply(m->r, m->p, q->vol, 200);
    free(q);
}

void proxy_life_rollback(struct proxy *p, struct admin_req *r, const char *vol,
                         proxy_life_reply_fn reply)
{
    static const char *const keys[] = {"snapshot", NULL};
    struct jsonv_doc d;
    if (!body(r, &d, keys, false)) return;
    struct vol_req *q = calloc(1, sizeof(*q));
    if (!q) {
        jsonv_free(&d);
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    if (!name_field(r, &d, d.root, "", "snapshot", q->snap)) {
        jsonv_free(&d);
        free(q);
        return;
    }
    jsonv_free(&d);
    q->m.r = r;
    q->m.done = on_rolled_back;
    q->reply = reply;
    util_strlcpy(q->vol, vol, sizeof(q->vol));
    /* For the 409's words only: the index decides. */
    if (proxy_index_read_begin(p) == 0) {
        struct index_vol v;
        if (index_vol_by_name(p->rd, vol, strlen(vol), &v) == 0 &&
            v.attach_mode == INDEX_ATTACH_RW)
            util_strlcpy(q->agent, v.agent, sizeof(q->agent));
        proxy_index_read_end(p);
    }
    struct idxcmd cmd = {.type = IDXCMD_ROLLBACK};
    cmd.u.rollback.vol = idxcmd_cstr(q->vol);
    cmd.u.rollback.snap = idxcmd_cstr(q->snap);
    proxy_life_submit(p, &q->m, &cmd);
}

static void on_flatten(struct proxy_life_cmd *m, int err)
{
    struct vol_req *q = bd_container_of(m, struct vol_req, m);
    if (err == -EINVAL && m->res.type)
        admin_reply_error(m->r, 409, "%s is not a clone: it inherits nothing to flatten", q->vol);
    else if (err)
        admin_reply_error(m->r, proxy_life_http_code(err), "flatten %s: %s", q->vol,
                          err == -ENOENT ? "no such volume" : why(err));
    else
        q->reply(m->r, m->p, q->vol, 200);
    free(q);
}

void proxy_life_flatten(struct proxy *p, struct admin_req *r, const char *vol,
                        proxy_life_reply_fn reply)
{
    static const char *const keys[] = {NULL};
    struct jsonv_doc d;
    if (!body(r, &d, keys, true)) return;
    jsonv_free(&d);
    struct vol_req *q = calloc(1, sizeof(*q));
    if (!q) {
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    q->m.r = r;
    q->m.done = on_flatten;
    q->reply = reply;
    util_strlcpy(q->vol, vol, sizeof(q->vol));
    struct idxcmd cmd = {.type = IDXCMD_FLATTEN_START};
    cmd.u.flatten_start.vol = idxcmd_cstr(q->vol);
    proxy_life_submit(p, &q->m, &cmd);
}
