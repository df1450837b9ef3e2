/* proxy_qos.c: the admin API's QoS calls (see proxy_qos.h; README "QoS").
 *
 *   GET    /v1/qos-profiles              every profile
 *   POST   /v1/qos-profiles              {"name", "limits": {...}, "default"?}
 *   GET    /v1/qos-profiles/NAME         one
 *   PATCH  /v1/qos-profiles/NAME         {"limits"?: {...}, "default"?}: every
 *                                        volume naming it follows at once
 *   DELETE /v1/qos-profiles/NAME         409 while volumes name it
 *
 * A limit set in JSON is an object of base/qos.h's fields ("iops",
 * "read_iops", "write_iops", "bps", "read_bps", "write_bps", each with a
 * "_burst", "burst_seconds", "io_size"); bytes fields also take "100M".
 * In a PATCH, null unsets a field (the volume falls back to its profile's
 * value, a profile to the default: none).  Bad values are 400 naming the
 * field (with the allowed range), a missing profile 404, deleting a
 * profile in use 409; nothing changes then.
 *
 * Mutations are index commands (QOS_PROFILE_PUT / _DELETE) submitted with
 * proxy_life_submit: answered once applied on this proxy.  Agents pick a
 * change up with their next VOL_QOS poll (proxy_io.c). */
#include "roles/proxy/proxy_qos.h"
#include "base/bd.h"
#include "base/util.h"
#include "roles/proxy/proxy_index.h"
#include "roles/proxy/proxy_int.h"
#include "roles/proxy/proxy_life.h"
#include "net/wire.h"
#include "store/index/idxcmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 64u

/* ---- limit sets in JSON ------------------------------------------------------------------ */

/* Is field bit B counted in bytes (a size string is accepted)? */
static bool field_bytes(uint32_t b)
{
    if (b == QOS_SET_IO_SIZE) return true;
    if (b == QOS_SET_BURST_SECONDS) return false;
    int i = __builtin_ctz(b);
    return qos_kind_bytes((enum qos_kind)(i % QOS_N_KINDS));
}

static bool in_list(const char *k, const char *const *list)
{
    for (; list && *list; list++)
        if (strcmp(*list, k) == 0) return true;
    return false;
}

int proxy_qos_parse(struct jsonv_doc *d, const cJSON *o, const char *path,
                    const char *const *skip, struct qos_limits *out, uint16_t *clear)
{
    memset(out, 0, sizeof(*out));
    if (clear) *clear = 0;
    if (!cJSON_IsObject(o)) return jsonv_fail(d, o, path, "expected an object of QoS limits");
    char p[256], why[128];
    for (const cJSON *n = o->child; n; n = n->next) {
        const char *k = n->string;
        if (in_list(k, skip)) continue;
        snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "", k);
        uint32_t b = qos_field_bit(k);
        if (!b)
            return jsonv_fail(d, n, p, "unknown QoS field (iops, read_iops, write_iops, bps, "
                                       "read_bps, write_bps, each also with _burst; "
                                       "burst_seconds, io_size)");
        if (out->set & b || (clear && (*clear & b)))
            return jsonv_fail(d, n, p, "given twice");
        if (cJSON_IsNull(n)) {
            if (!clear) return jsonv_fail(d, n, p, "null (unset) only in a PATCH");
            *clear |= (uint16_t)b;
            continue;
        }
        uint64_t v;
        int rc = field_bytes(b) ? jsonv_get_size(d, o, path, k, true, 0, UINT64_MAX, &v)
                                : jsonv_get_u64(d, o, path, k, true, 0, UINT64_MAX, &v);
        if (rc < 0) return rc;
        if (qos_field_check(b, v, why, sizeof(why)) < 0)
            return jsonv_fail(d, n, p, "expected %s", why);
        qos_field_set(out, b, v);
    }
    uint32_t bad = 0;
    if (qos_check(out, &bad, why, sizeof(why)) < 0) {
        snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "",
                 bad ? qos_field_name(bad) : "?");
        return jsonv_fail(d, o, p, "expected %s", why);
    }
    return 0;
}

void proxy_qos_json(cJSON *o, const struct qos_limits *l)
{
    for (uint32_t b = 1; b & QOS_SET_ALL; b <<= 1)
        if (l->set & b) cJSON_AddNumberToObject(o, qos_field_name(b), (double)qos_field_get(l, b));
}

static void seen_json(struct proxy *p, uint64_t vol_id, cJSON *q);

void proxy_qos_vol_json(struct proxy *p, const struct index_vol *v, cJSON *o)
{
    cJSON *q = cJSON_AddObjectToObject(o, "qos");
    if (!q) return;
    if (v->profile[0]) cJSON_AddStringToObject(q, "profile", v->profile);
    else cJSON_AddNullToObject(q, "profile");
    proxy_qos_json(cJSON_AddObjectToObject(q, "limits"), &v->qos);
    struct qos_limits eff;
    if (index_vol_qos(p->rd, v, &eff) == 0) {
        proxy_qos_json(cJSON_AddObjectToObject(q, "effective"), &eff);
        cJSON_AddBoolToObject(q, "limited", qos_limited(&eff));
    }
    seen_json(p, v->id, q);
}

/* ---- the agents' reports ----------------------------------------------------------------- */

struct seen {
    uint64_t vol_id;           /* 0: free */
    uint64_t at_ms;            /* heard */
    char agent[WIRE_NAME_MAX + 1];
    struct wire_qos_report rp;
};
struct proxy_qos_seen {
    struct seen e[PROXY_QOS_SEEN_MAX];
};

int proxy_qos_seen_start(struct proxy *p)
{
    p->qos_seen = calloc(1, sizeof(*p->qos_seen));
    return p->qos_seen ? 0 : -ENOMEM;
}

void proxy_qos_seen_stop(struct proxy *p)
{
    free(p->qos_seen);
    p->qos_seen = NULL;
}

static struct seen *seen_find(struct proxy *p, uint64_t vol_id)
{
    if (!p->qos_seen) return NULL;
    for (unsigned i = 0; i < PROXY_QOS_SEEN_MAX; i++)
        if (p->qos_seen->e[i].vol_id == vol_id) return &p->qos_seen->e[i];
    return NULL;
}

void proxy_qos_note(struct proxy *p, const char *agent, const struct wire_qos_report *rp)
{
    if (!p->qos_seen || !rp->vol_id) return;
    struct seen *s = seen_find(p, rp->vol_id);
    if (!s) {
        /* A free slot (at_ms 0), else the one heard from longest ago. */
        s = &p->qos_seen->e[0];
        for (unsigned i = 1; i < PROXY_QOS_SEEN_MAX && s->at_ms; i++)
            if (p->qos_seen->e[i].at_ms < s->at_ms) s = &p->qos_seen->e[i];
    }
    s->vol_id = rp->vol_id;
    s->at_ms = util_mono_ms();
    util_strlcpy(s->agent, agent, sizeof(s->agent));
    s->rp = *rp;
}

static void seen_json(struct proxy *p, uint64_t vol_id, cJSON *q)
{
    struct seen *s = seen_find(p, vol_id);
    if (!s) return;
    static const char *const dirs[2] = {"read", "write"};
    cJSON *a = cJSON_AddObjectToObject(q, "agent");
    cJSON_AddStringToObject(a, "agent", s->agent);
    cJSON_AddNumberToObject(a, "age_ms", (double)(util_mono_ms() - s->at_ms));
    cJSON *ios = cJSON_AddObjectToObject(a, "ios"), *bytes = cJSON_AddObjectToObject(a, "bytes");
    cJSON *lat = cJSON_AddObjectToObject(a, "latency_us");
    for (int d = 0; d < 2; d++) {
        cJSON_AddNumberToObject(ios, dirs[d], (double)s->rp.ops[d]);
        cJSON_AddNumberToObject(bytes, dirs[d], (double)s->rp.bytes[d]);
        cJSON *l = cJSON_AddObjectToObject(lat, dirs[d]);
        cJSON_AddNumberToObject(l, "p50", s->rp.p50_us[d]);
        cJSON_AddNumberToObject(l, "p99", s->rp.p99_us[d]);
    }
    cJSON_AddNumberToObject(a, "delayed", (double)s->rp.delayed);
    cJSON_AddNumberToObject(a, "throttled_seconds", (double)s->rp.throttled_us / 1e6);
    cJSON_AddNumberToObject(a, "waiting", s->rp.waiting);
}

int proxy_qos_profile_exists(struct proxy *p, const char *name)
{
    struct index_profile pr;
    return index_profile_get(p->rd, name, strlen(name), &pr);
}

/* ---- profiles ---------------------------------------------------------------------------- */

static void profile_json(cJSON *o, const struct index_profile *pr)
{
    cJSON_AddStringToObject(o, "name", pr->name);
    cJSON_AddBoolToObject(o, "default", pr->flags & INDEX_PROFILE_DEFAULT);
    cJSON_AddNumberToObject(o, "volumes", pr->n_vols);
    cJSON_AddNumberToObject(o, "created_index", (double)pr->created_index);
    proxy_qos_json(cJSON_AddObjectToObject(o, "limits"), &pr->qos);
}

static void reply_profile(struct admin_req *r, struct proxy *p, const char *name, int code)
{
    if (proxy_index_read_begin(p) < 0) {
        admin_reply_error(r, 503, "index busy");
        return;
    }
    struct index_profile pr;
    int rc = index_profile_get(p->rd, name, strlen(name), &pr);
    proxy_index_read_end(p);
    if (rc < 0) {
        admin_reply_error(r, proxy_life_http_code(rc), "QoS profile %s: %s", name,
                          rc == -ENOENT ? "no such profile" : bd_strerror(rc));
        return;
    }
    cJSON *o = cJSON_CreateObject();
    profile_json(o, &pr);
    admin_reply_json(r, code, o);
}

static void on_list(struct admin_req *r, void *arg)
{
    struct proxy *p = arg;
    if (proxy_index_read_begin(p) < 0) {
        admin_reply_error(r, 503, "index busy");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "profiles");
    struct index_profile *pr = malloc(PAGE * sizeof(*pr));
    char after[INDEX_NAME_MAX + 1] = "";
    uint32_t n = 0;
    int rc = pr ? 0 : -ENOMEM;
    while (rc == 0) {
        rc = index_profile_list(p->rd, after, strlen(after), pr, PAGE, &n);
        for (uint32_t i = 0; rc == 0 && i < n; i++) {
            cJSON *j = cJSON_CreateObject();
            profile_json(j, &pr[i]);
            cJSON_AddItemToArray(arr, j);
        }
        if (rc < 0 || n < PAGE) break;
        util_strlcpy(after, pr[n - 1].name, sizeof(after));
    }
    proxy_index_read_end(p);
    free(pr);
    if (rc < 0) {
        cJSON_Delete(o);
        admin_reply_error(r, 500, "QoS profiles: %s", bd_strerror(rc));
        return;
    }
    admin_reply_json(r, 200, o);
}

/* The profile name of the route tail, or 404 and false. */
static bool tail_name(struct admin_req *r, char *name)
{
    const char *t = admin_req_tail(r);
    size_t n = strlen(t);
    if (n == 0 || n > INDEX_NAME_MAX || !idxcmd_name_valid(t, n)) {
        admin_reply_error(r, 404, "no such QoS profile");
        return false;
    }
    memcpy(name, t, n + 1);
    return true;
}

static void on_get(struct admin_req *r, void *arg)
{
    char name[INDEX_NAME_MAX + 1];
    if (tail_name(r, name)) reply_profile(r, arg, name, 200);
}

struct pcmd {
    struct proxy_life_cmd m;
    char name[INDEX_NAME_MAX + 1];
    int ok_code;               /* 201 create, 200 change, 204 delete */
};

static void on_done(struct proxy_life_cmd *m, int err)
{
    struct pcmd *c = bd_container_of(m, struct pcmd, m);
    if (err == 0 && c->ok_code != 204) {
        reply_profile(m->r, m->data, c->name, c->ok_code);
    } else if (err == 0) {
        admin_reply_json(m->r, 204, NULL);
    } else {
        const char *why = err == -EEXIST   ? "a profile of that name exists"
                          : err == -ENOENT ? "no such profile"
                          : err == -EBUSY  ? "volumes use it (give them another profile first)"
                          : err == -EAGAIN ? "no raft leader reachable; try again"
                                           : bd_strerror(err);
        admin_reply_error(m->r, proxy_life_http_code(err), "QoS profile %s: %s", c->name, why);
    }
    free(c);
}

static void submit(struct proxy *p, struct admin_req *r, const struct idxcmd *cmd,
                   const char *name, int ok_code)
{
    struct pcmd *c = calloc(1, sizeof(*c));
    if (!c) {
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    util_strlcpy(c->name, name, sizeof(c->name));
    c->ok_code = ok_code;
    c->m.done = on_done;
    c->m.r = r;
    c->m.data = p;
    proxy_life_submit(p, &c->m, cmd);
}

/* POST (CREATE: NAME from the body) or PATCH (NAME from the route). */
static void put(struct proxy *p, struct admin_req *r, bool create)
{
    static const char *const ckeys[] = {"name", "limits", "default", NULL};
    static const char *const pkeys[] = {"limits", "default", NULL};
    char name[INDEX_NAME_MAX + 1];
    if (!create && !tail_name(r, name)) return;
    size_t len;
    const char *b = admin_req_body(r, &len);
    struct jsonv_doc d;
    if (jsonv_parse(&d, "body", b, len, ADMIN_MAX_DEPTH) < 0 ||
        jsonv_check_keys(&d, d.root, "", create ? ckeys : pkeys) < 0)
        goto bad;
    if (create) {
        const char *s;
        if (jsonv_get_str(&d, d.root, "", "name", true, 1, INDEX_NAME_MAX, &s) < 0) goto bad;
        if (!idxcmd_name_valid(s, strlen(s))) {
            jsonv_fail(&d, d.root, "name",
                       "names are 1-255 of [A-Za-z0-9._-], not starting with '.' or '-'");
            goto bad;
        }
        util_strlcpy(name, s, sizeof(name));
    }
    struct idxcmd cmd = {.type = IDXCMD_QOS_PROFILE_PUT};
    const cJSON *lim = NULL;
    int has = jsonv_get_object(&d, d.root, "", "limits", create, &lim);
    if (has < 0) goto bad;
    if (has == 0 && proxy_qos_parse(&d, lim, "limits", NULL, &cmd.u.qos_profile_put.qos,
                                    create ? NULL : &cmd.u.qos_profile_put.clear) < 0)
        goto bad;
    bool dflt = false;
    int hd = jsonv_get_bool(&d, d.root, "", "default", false, &dflt);
    if (hd < 0) goto bad;
    if (has == 1 && hd == 1) {
        jsonv_fail(&d, d.root, "limits", "nothing to change (give limits or default)");
        goto bad;
    }
    jsonv_free(&d);
    uint8_t flags = create ? IDXCMD_PROFILE_CREATE : 0;
    if (hd == 0) flags |= dflt ? IDXCMD_PROFILE_DEFAULT : IDXCMD_PROFILE_UNDEFAULT;
    cmd.u.qos_profile_put.name = idxcmd_cstr(name);
    cmd.u.qos_profile_put.flags = flags;
    submit(p, r, &cmd, name, create ? 201 : 200);
    return;
bad:
    admin_reply_error(r, 400, "%s", d.err);
    jsonv_free(&d);
}

static void on_post(struct admin_req *r, void *arg)
{
    put(arg, r, true);
}

static void on_patch(struct admin_req *r, void *arg)
{
    put(arg, r, false);
}

static void on_delete(struct admin_req *r, void *arg)
{
    char name[INDEX_NAME_MAX + 1];
    if (!tail_name(r, name)) return;
    struct idxcmd cmd = {.type = IDXCMD_QOS_PROFILE_DELETE};
    cmd.u.qos_profile_delete.name = idxcmd_cstr(name);
    submit(arg, r, &cmd, name, 204);
}

int proxy_qos_routes(struct proxy *p)
{
    int rc = admin_route(p->admin, "GET", "/v1/qos-profiles", ADMIN_READ, on_list, p);
    if (!rc) rc = admin_route(p->admin, "POST", "/v1/qos-profiles", ADMIN_WRITE, on_post, p);
    if (!rc) rc = admin_route(p->admin, "GET", "/v1/qos-profiles/*", ADMIN_READ, on_get, p);
    if (!rc) rc = admin_route(p->admin, "PATCH", "/v1/qos-profiles/*", ADMIN_WRITE, on_patch, p);
    if (!rc)
        rc = admin_route(p->admin, "DELETE", "/v1/qos-profiles/*", ADMIN_WRITE, on_delete, p);
    return rc;
}
