/* agent_cluster.c: TEST ONLY (see agent_cluster.h).
 *
 * The roles are the real modules (proxy_role_ops, blob_role_ops) started
 * as src/blockd.c starts them, one role struct per instance, from a config
 * text run through config_parse, so every default and check of a real
 * deployment applies.  Timings are shortened where the config allows
 * (election, heartbeats) so that a cluster is ready in well under a
 * second, and anti-entropy runs once an hour (repair_interval_ms; its
 * first pass still comes 5 s after a proxy leads, see `quiet`).  The
 * blob servers, which do not depend on one another, are stopped at once
 * rather than one by one; nothing else differs from `blockd --role=all`.
 *
 * Waiting: every call that needs the roles to make progress (a stop, an
 * admin request, a read) runs the reactor until its condition holds or its
 * deadline passes.  The admin client (httpc) blocks, and the admin server
 * is on this very reactor, so each request runs on a short-lived thread
 * while this thread pumps the reactor.
 *
 * Rejected: a stand-in proxy (the fake this replaces): every behaviour it
 * simulated is now produced by the real code, through fault knobs, restarts
 * and a second attach, so the agent is tested against what it will meet. */
#include "agent_cluster.h"
#include "base/bd.h"
#include "base/util.h"
#include "net/conn.h"
#include "net/httpc.h"
#include "net/link.h"
#include "net/wire.h"
#include "roles/blob/blob.h"
#include "roles/proxy/proxy.h"
#include "roles/role.h"
#include "runtime/metrics.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ADMIN_TIMEOUT_MS 10000
#define READ_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 10000
#define READY_TIMEOUT_MS 60000 /* slow-reply faults (2 s per blob reply) on a loaded machine:
                                * 30 s ran out twice in full runs beside heavy tests */

struct agent_cluster {
    struct reactor *rx;
    char dir[256];
    struct cfg cfg;                /* the roles keep pointers into it */
    struct role proxies[AGENT_CLUSTER_MAX_PROXIES];
    bool proxy_running[AGENT_CLUSTER_MAX_PROXIES];
    unsigned n_proxies;
    struct role blobs[AGENT_CLUSTER_MAX_BLOBS];
    bool blob_running[AGENT_CLUSTER_MAX_BLOBS];
    unsigned n_blobs;
    struct conn_auth reader_auth;  /* the wire reader's HELLO: an agent */
    struct link *readers[AGENT_CLUSTER_MAX_PROXIES]; /* one per proxy */
};

/* ---- pumping ------------------------------------------------------------------ */

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

/* Run the reactor until COND(ARG) holds or MS pass; the final COND. */
static bool pump_until(struct reactor *rx, bool (*cond)(void *), void *arg, int ms)
{
    bool expired = false;
    struct event *t = evtimer_new(reactor_base(rx), on_deadline, &expired);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(t, &tv);
    while (!cond(arg) && !expired) event_base_loop(reactor_base(rx), EVLOOP_ONCE);
    event_free(t);
    return cond(arg);
}

static bool flag_set(void *arg)
{
    return atomic_load((_Atomic int *)arg) != 0;
}

/* ---- roles -------------------------------------------------------------------- */

static _Atomic int roles_stopping; /* stops asked for and not yet done */

static void on_role_stopped(struct role *r)
{
    (void)r;
    atomic_fetch_sub(&roles_stopping, 1);
}

static bool all_stopped(void *arg)
{
    (void)arg;
    return atomic_load(&roles_stopping) == 0;
}

static int role_start(struct agent_cluster *cl, struct role *r, const struct role_ops *ops,
                      unsigned instance, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    r->ops = ops;
    err[0] = 0;
    int rc = ops->start(r, cl->rx, &cl->cfg, instance, err, errlen);
    if (rc < 0 && !err[0]) snprintf(err, errlen, "%s: %s", ops->name, bd_strerror(rc));
    return rc;
}

/* Stop the N roles at RS at once (none depends on another) and free them. */
static int roles_stop(struct agent_cluster *cl, struct role **rs, unsigned n)
{
    atomic_store(&roles_stopping, (int)n);
    for (unsigned i = 0; i < n; i++) rs[i]->ops->stop(rs[i], on_role_stopped);
    if (!pump_until(cl->rx, all_stopped, NULL, STOP_TIMEOUT_MS))
        return -ETIMEDOUT; /* leaked: the test fails anyway */
    for (unsigned i = 0; i < n; i++) rs[i]->ops->free(rs[i]);
    return 0;
}

int agent_cluster_proxy_stop(struct agent_cluster *cl, unsigned i)
{
    if (i >= cl->n_proxies || !cl->proxy_running[i]) return -EINVAL;
    cl->proxy_running[i] = false;
    struct role *r = &cl->proxies[i];
    return roles_stop(cl, &r, 1);
}

int agent_cluster_proxy_start(struct agent_cluster *cl, unsigned i, const struct cfg_fault *fault,
                              bool wait_ready)
{
    if (i >= cl->n_proxies || cl->proxy_running[i]) return -EINVAL;
    cl->cfg.proxies[i].fault = fault ? *fault : (struct cfg_fault){0};
    char err[256];
    int rc = role_start(cl, &cl->proxies[i], &proxy_role_ops, i, err, sizeof(err));
    if (rc < 0) {
        printf("# proxy start: %s\n", err);
        return rc;
    }
    cl->proxy_running[i] = true;
    return wait_ready ? agent_cluster_wait_ready(cl, READY_TIMEOUT_MS) : 0;
}

int agent_cluster_blob_stop(struct agent_cluster *cl, unsigned i)
{
    if (i >= cl->n_blobs || !cl->blob_running[i]) return -EINVAL;
    cl->blob_running[i] = false;
    struct role *r = &cl->blobs[i];
    return roles_stop(cl, &r, 1);
}

int agent_cluster_blob_start(struct agent_cluster *cl, unsigned i, const struct cfg_fault *fault)
{
    if (i >= cl->n_blobs || cl->blob_running[i]) return -EINVAL;
    if (fault) cl->cfg.blobs[i].fault = *fault;
    char err[256];
    int rc = role_start(cl, &cl->blobs[i], &blob_role_ops, i, err, sizeof(err));
    if (rc < 0) {
        printf("# blob start: %s\n", err);
        return rc;
    }
    cl->blob_running[i] = true;
    return 0;
}

/* ---- status ------------------------------------------------------------------- */

static cJSON *proxy_status(struct agent_cluster *cl, unsigned i)
{
    if (!cl->proxy_running[i] || !cl->proxies[i].impl) return NULL;
    cJSON *o = cJSON_CreateObject();
    if (o) proxy_status_json(cl->proxies[i].impl, o, false);
    return o;
}

static bool proxy_leads(struct agent_cluster *cl, unsigned i)
{
    cJSON *o = proxy_status(cl, i);
    cJSON *st = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "raft"),
                                                 "state");
    bool is = cJSON_IsString(st) && strcmp(st->valuestring, "leader") == 0;
    cJSON_Delete(o);
    return is;
}

int agent_cluster_leader(struct agent_cluster *cl)
{
    for (unsigned i = 0; i < cl->n_proxies; i++)
        if (proxy_leads(cl, i)) return (int)i;
    return -1;
}

static double status_num(struct agent_cluster *cl, const char *key)
{
    int l = agent_cluster_leader(cl);
    cJSON *o = l < 0 ? NULL : proxy_status(cl, (unsigned)l);
    if (!o) return -1;
    char path[128];
    util_strlcpy(path, key, sizeof(path));
    cJSON *it = o;
    for (char *save = NULL, *part = strtok_r(path, ".", &save); part && it;
         part = strtok_r(NULL, ".", &save))
        it = cJSON_GetObjectItemCaseSensitive(it, part);
    double d = it && cJSON_IsNumber(it) ? it->valuedouble : -1;
    cJSON_Delete(o);
    return d;
}

struct caught_up {
    struct agent_cluster *cl;
    double commit;
};

static bool index_caught_up(void *arg)
{
    struct caught_up *c = arg;
    return status_num(c->cl, "index.applied_index") >= c->commit;
}

double agent_cluster_status_num(struct agent_cluster *cl, const char *key)
{
    /* A write is answered once its entry is committed; the index applies
     * it a moment later (on its writer thread). */
    if (strncmp(key, "index.", 6) == 0) {
        struct caught_up c = {cl, status_num(cl, "raft.commit_index")};
        pump_until(cl->rx, index_caught_up, &c, READ_TIMEOUT_MS);
    }
    return status_num(cl, key);
}

static bool ready(void *arg)
{
    struct agent_cluster *cl = arg;
    unsigned running = 0;
    for (unsigned i = 0; i < cl->n_blobs; i++) running += cl->blob_running[i];
    if (status_num(cl, "blob_servers_up") != running) return false;
    return running < 3 || status_num(cl, "index.partitions") >= 1;
}

int agent_cluster_wait_ready(struct agent_cluster *cl, int ms)
{
    return pump_until(cl->rx, ready, cl, ms) ? 0 : -ETIMEDOUT;
}

/* The leader's first anti-entropy pass is over and nothing of it is left
 * in flight. */
static bool repair_quiet(void *arg)
{
    struct agent_cluster *cl = arg;
    int l = agent_cluster_leader(cl);
    cJSON *o = l < 0 ? NULL : proxy_status(cl, (unsigned)l);
    cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "repair");
    cJSON *passes = cJSON_GetObjectItemCaseSensitive(r, "passes");
    cJSON *running = cJSON_GetObjectItemCaseSensitive(r, "pass_running");
    cJSON *copies = cJSON_GetObjectItemCaseSensitive(r, "copies_in_flight");
    bool q = cJSON_IsNumber(passes) && passes->valuedouble >= 1 && cJSON_IsFalse(running) &&
             cJSON_IsNumber(copies) && copies->valuedouble == 0;
    cJSON_Delete(o);
    return q;
}

double agent_cluster_metric(const char *name, const char *label)
{
    struct evbuffer *b = evbuffer_new();
    metrics_render(b);
    size_t n = evbuffer_get_length(b);
    char *text = malloc(n + 1);
    evbuffer_remove(b, text, n);
    text[n] = 0;
    evbuffer_free(b);
    double sum = 0;
    size_t nl = strlen(name);
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, name, nl) != 0 || (line[nl] != '{' && line[nl] != ' ')) continue;
        char *end = strrchr(line, ' ');
        if (!end) continue;
        *end = 0;
        if (label && !strstr(line + nl, label)) continue;
        sum += strtod(end + 1, NULL);
    }
    free(text);
    return sum;
}

/* ---- admin -------------------------------------------------------------------- */

struct admin_call {
    const char *addr, *method, *path, *body, *token;
    struct httpc_resp resp;
    int rc;
    _Atomic int done;
};

static void *admin_thread(void *arg)
{
    struct admin_call *a = arg;
    struct httpc_target t = {.addr = a->addr, .token = a->token, .timeout_ms = ADMIN_TIMEOUT_MS};
    a->rc = httpc_request(&t, a->method, a->path, a->body, &a->resp);
    atomic_store(&a->done, 1);
    return NULL;
}

/* METHOD PATH with BODY; the parsed JSON reply in *OUT (may be NULL).
 * Returns the HTTP status, or -errno if there was no reply. */
static int admin(struct agent_cluster *cl, const char *method, const char *path,
                 const char *body, cJSON **out)
{
    unsigned i = 0;
    while (i < cl->n_proxies && !cl->proxy_running[i]) i++;
    if (i == cl->n_proxies) return -ENOTCONN;
    struct admin_call a = {.addr = cl->cfg.proxies[i].admin, .method = method, .path = path,
                           .body = body, .token = cl->cfg.admin_token};
    pthread_t t;
    if (pthread_create(&t, NULL, admin_thread, &a) != 0) return -EAGAIN;
    pump_until(cl->rx, flag_set, &a.done, ADMIN_TIMEOUT_MS + 1000);
    pthread_join(t, NULL); /* httpc's own timeout bounds this */
    if (a.rc < 0) return a.rc;
    int status = a.resp.status;
    if (out) *out = cJSON_Parse(a.resp.body);
    httpc_resp_free(&a.resp);
    return status;
}

int agent_cluster_admin(struct agent_cluster *cl, const char *method, const char *path,
                        const char *body, cJSON **out)
{
    return admin(cl, method, path, body, out);
}

static int http_err(int status)
{
    if (status < 0) return status;
    if (status / 100 == 2) return 0;
    return status == 404 ? -ENOENT : status == 409 ? -EBUSY : -EIO;
}

int agent_cluster_create_volume(struct agent_cluster *cl, const char *name, uint64_t size)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"name\": \"%s\", \"size\": %llu}", name,
             (unsigned long long)size);
    return http_err(admin(cl, "POST", "/v1/volumes", body, NULL));
}

int agent_cluster_resize_volume(struct agent_cluster *cl, const char *name, uint64_t size)
{
    char path[300], body[128];
    snprintf(path, sizeof(path), "/v1/volumes/%s", name);
    snprintf(body, sizeof(body), "{\"size\": \"%llu\"}", (unsigned long long)size);
    return http_err(admin(cl, "PATCH", path, body, NULL));
}

int agent_cluster_volume(struct agent_cluster *cl, const char *name, struct agent_cluster_vol *v)
{
    char path[300];
    snprintf(path, sizeof(path), "/v1/volumes/%s", name);
    cJSON *o = NULL;
    int rc = http_err(admin(cl, "GET", path, NULL, &o));
    if (rc == 0 && !o) rc = -EIO;
    if (rc == 0) {
        cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
        cJSON *size = cJSON_GetObjectItemCaseSensitive(o, "size");
        cJSON *gen = cJSON_GetObjectItemCaseSensitive(o, "generation");
        cJSON *att = cJSON_GetObjectItemCaseSensitive(o, "attached_to");
        cJSON *wr = cJSON_GetObjectItemCaseSensitive(o, "writer");
        cJSON *ro = cJSON_GetObjectItemCaseSensitive(o, "read_only");
        if (!cJSON_IsNumber(id) || !cJSON_IsNumber(size) || !cJSON_IsNumber(gen) ||
            !cJSON_IsString(att) || !cJSON_IsString(wr) || !cJSON_IsBool(ro)) {
            rc = -EIO;
        } else {
            v->id = (uint64_t)id->valuedouble;
            v->size = (uint64_t)size->valuedouble;
            v->generation = (uint64_t)gen->valuedouble;
            util_strlcpy(v->attached_to, att->valuestring, sizeof(v->attached_to));
            util_strlcpy(v->writer, wr->valuestring, sizeof(v->writer));
            v->read_only = cJSON_IsTrue(ro);
        }
    }
    cJSON_Delete(o);
    return rc;
}

int agent_cluster_attach(struct agent_cluster *cl, const char *name, const char *agent,
                         bool read_only, bool force)
{
    char path[300], body[300];
    snprintf(path, sizeof(path), "/v1/volumes/%s/attach", name);
    snprintf(body, sizeof(body), "{\"agent\": \"%s\", \"read_only\": %s, \"force\": %s}",
             agent, read_only ? "true" : "false", force ? "true" : "false");
    return http_err(admin(cl, "POST", path, body, NULL));
}

int agent_cluster_detach(struct agent_cluster *cl, const char *name, bool force)
{
    char path[300];
    snprintf(path, sizeof(path), "/v1/volumes/%s/attach%s", name, force ? "?force=1" : "");
    return http_err(admin(cl, "DELETE", path, NULL, NULL));
}

/* ---- reading the cluster ------------------------------------------------------ */

struct read_call {
    struct conn_call call;
    uint64_t off;
    uint32_t len;
    uint8_t *buf, *kinds;
    int err;
    _Atomic int done;
};

static void on_read(struct conn_call *call, int err, struct conn_frame *f)
{
    struct read_call *r = bd_container_of(call, struct read_call, call);
    struct wire_vol_read_resp m;
    if (!err && wire_decode_vol_read_resp(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0)
        err = -EPROTO;
    if (!err && (m.data_len != r->len || util_xxh3(m.data, m.data_len) != m.csum)) err = -EIO;
    if (!err && r->buf) memcpy(r->buf, m.data, r->len);
    if (!err && r->kinds) {
        uint32_t nb = r->len / BD_BLOCK_SIZE;
        memset(r->kinds, WIRE_MAP_HOLE, nb); /* what no range covers */
        for (uint32_t i = 0; i < m.n_ranges; i++) {
            struct wire_map_range x;
            wire_vol_read_range(&m, i, &x);
            for (uint64_t b = x.off / BD_BLOCK_SIZE; b < (x.off + x.len) / BD_BLOCK_SIZE; b++)
                if (b >= r->off / BD_BLOCK_SIZE && b < r->off / BD_BLOCK_SIZE + nb)
                    r->kinds[b - r->off / BD_BLOCK_SIZE] = (uint8_t)x.kind;
        }
    }
    r->err = err;
    atomic_store(&r->done, 1);
}

/* The reader link of the first running proxy, once it is up. */
static bool reader_up(void *arg)
{
    struct agent_cluster *cl = arg;
    for (unsigned i = 0; i < cl->n_proxies; i++)
        if (cl->proxy_running[i]) return link_is_up(cl->readers[i]);
    return false;
}

int agent_cluster_read(struct agent_cluster *cl, uint64_t vol_id, uint64_t off, uint32_t len,
                       uint8_t *buf, uint8_t *kinds)
{
    if (!pump_until(cl->rx, reader_up, cl, READ_TIMEOUT_MS)) return -ENOTCONN;
    unsigned p = 0;
    while (!cl->proxy_running[p]) p++;
    /* Everything committed so far: the proxy answers once it applied it. */
    double commit = status_num(cl, "raft.commit_index");
    struct wire_vol_read_req m = {.vol_id = vol_id, .off = off, .len = len,
                                  .flags = WIRE_READ_MAP,
                                  .min_index = commit > 0 ? (uint64_t)commit : 0};
    uint8_t fields[128];
    int n = wire_encode_vol_read_req(fields, sizeof(fields), &m);
    if (n < 0) return n;
    struct read_call *r = calloc(1, sizeof(*r));
    if (!r) return -ENOMEM;
    r->call.cb = on_read;
    r->off = off;
    r->len = len;
    r->buf = buf;
    r->kinds = kinds;
    int rc = link_call(cl->readers[p], &r->call, WIRE_VOL_READ, fields, (size_t)n, NULL,
                       READ_TIMEOUT_MS);
    if (rc == 0) {
        /* The callback runs exactly once, at the latest at the call's timeout. */
        pump_until(cl->rx, flag_set, &r->done, READ_TIMEOUT_MS + 5000);
        rc = atomic_load(&r->done) ? r->err : -ETIMEDOUT;
    }
    if (atomic_load(&r->done) || rc != -ETIMEDOUT) free(r);
    return rc;
}

/* ---- the cluster -------------------------------------------------------------- */

/* A loopback port nobody listens on right now (for the admin endpoint). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static int write_config(struct agent_cluster *cl, unsigned n_proxies, unsigned n_blobs,
                        char *err, size_t errlen)
{
    char token[300];
    snprintf(token, sizeof(token), "%s/admin.token", cl->dir);
    static const char tok[] = "agent-cluster-test-token-0123456789\n";
    if (util_write_file_atomic(token, tok, sizeof(tok) - 1, 0600) < 0) {
        snprintf(err, errlen, "cannot write %s", token);
        return -EIO;
    }
    size_t cap = 32768, n = 0;
    char *t = malloc(cap);
    if (!t) return -ENOMEM;
    char peers[2048] = "";
    size_t pn = 0;
    for (unsigned i = 0; i < n_proxies; i++)
        pn += (size_t)snprintf(peers + pn, sizeof(peers) - pn,
                               "%s{\"id\": %u, \"addr\": \"unix:%s/proxy%u.sock\"}",
                               i ? ", " : "", i + 1, cl->dir, i + 1);
    n += (size_t)snprintf(t + n, cap - n,
                          "{\"cluster_id\": \"agent-test\", \"admin_token_file\": \"%s\",\n"
                          /* In-process roles over Unix sockets in a private
                           * temp dir; TLS itself is test_tls's, and every
                           * functional test runs with it on. */
                          " \"insecure_plaintext\": true,\n"
                          " \"log\": {\"file\": \"-\", \"level\": \"warn\"},\n"
                          " \"proxy\": [",
                          token);
    for (unsigned i = 0; i < n_proxies; i++) {
        int port = free_port();
        if (port < 0) {
            free(t);
            snprintf(err, errlen, "no free loopback port");
            return -EADDRINUSE;
        }
        n += (size_t)snprintf(
            t + n, cap - n,
            "%s\n  {\"id\": %u, \"listen\": \"unix:%s/proxy%u.sock\",\n"
            "   \"admin\": \"127.0.0.1:%d\", \"data_dir\": \"%s/proxy%u\",\n"
            "   \"peers\": [%s],\n"
            "   \"election_timeout_ms\": 200, \"raft_heartbeat_ms\": 20,\n"
            "   \"node_timeout_ms\": 1000, \"partition_bytes\": \"1P\",\n"
            "   \"repair_interval_ms\": 3600000,\n"
            "   \"index_map_bytes\": 268435456, \"allow_tmpfs\": true}",
            i ? "," : "", i + 1, cl->dir, i + 1, port, cl->dir, i + 1, peers);
    }
    n += (size_t)snprintf(t + n, cap - n, "],\n \"blob\": [");
    char proxies[2048] = "";
    pn = 0;
    for (unsigned i = 0; i < n_proxies; i++)
        pn += (size_t)snprintf(proxies + pn, sizeof(proxies) - pn, "%s\"unix:%s/proxy%u.sock\"",
                               i ? ", " : "", cl->dir, i + 1);
    for (unsigned i = 0; i < n_blobs; i++)
        n += (size_t)snprintf(
            t + n, cap - n,
            "%s\n  {\"id\": %u, \"listen\": \"unix:%s/blob%u.sock\", \"data_dir\": \"%s/blob%u\",\n"
            "   \"proxies\": [%s], \"capacity_bytes\": 1073741824,\n"
            "   \"segment_bytes\": 8388608, \"max_blob_bytes\": 2097152,\n"
            "   \"compression\": \"off\", \"heartbeat_ms\": 50}",
            i ? "," : "", 11 + i, cl->dir, i + 1, cl->dir, i + 1, proxies);
    n += (size_t)snprintf(t + n, cap - n, "]}\n");
    int rc = n < cap ? config_parse("agent_cluster", t, n, &cl->cfg, err, errlen) : -ENOSPC;
    free(t);
    return rc;
}

int agent_cluster_new(struct reactor *rx, const struct agent_cluster_opts *o,
                      struct agent_cluster **out, char *err, size_t errlen)
{
    unsigned n_blobs = o->n_blobs ? o->n_blobs : 3;
    unsigned n_proxies = o->n_proxies ? o->n_proxies : 1;
    if (n_blobs > AGENT_CLUSTER_MAX_BLOBS || (n_proxies != 1 && n_proxies != 3)) return -EINVAL;
    struct agent_cluster *cl = calloc(1, sizeof(*cl));
    if (!cl) return -ENOMEM;
    cl->rx = rx;
    util_strlcpy(cl->dir, o->dir, sizeof(cl->dir));
    err[0] = 0;
    int rc = write_config(cl, n_proxies, n_blobs, err, errlen);
    if (rc < 0) {
        free(cl);
        return rc;
    }
    cl->n_blobs = n_blobs;
    cl->n_proxies = n_proxies;
    /* blockd's order: blob servers, then proxies. */
    for (unsigned i = 0; i < n_blobs && rc == 0; i++)
        rc = agent_cluster_blob_start(cl, i, &o->blob_fault);
    for (unsigned i = 0; i < n_proxies && rc == 0; i++)
        rc = agent_cluster_proxy_start(cl, i, &o->proxy_fault, false);
    conn_auth_init(&cl->reader_auth, cl->cfg.cluster_id, NULL, 0, WIRE_ROLE_AGENT,
                   "agent_cluster reader");
    struct conn_opts co = {.tag = "reader", .auth = &cl->reader_auth};
    static const struct link_ops reader_ops = {0};
    for (unsigned i = 0; i < n_proxies && rc == 0; i++) {
        cl->readers[i] = link_new(rx, cl->cfg.proxies[i].listen, &co, &reader_ops, cl);
        if (!cl->readers[i]) rc = -ENOMEM;
    }
    if (rc == 0) rc = agent_cluster_wait_ready(cl, READY_TIMEOUT_MS);
    if (rc == 0 && o->quiet && !pump_until(rx, repair_quiet, cl, READY_TIMEOUT_MS))
        rc = -ETIMEDOUT;
    if (rc < 0) {
        if (!err[0]) snprintf(err, errlen, "cluster not ready: %s", bd_strerror(rc));
        agent_cluster_free(cl);
        return rc;
    }
    *out = cl;
    return 0;
}

void agent_cluster_free(struct agent_cluster *cl)
{
    if (!cl) return;
    for (unsigned i = 0; i < cl->n_proxies; i++) link_free(cl->readers[i]);
    /* blockd's order backwards: proxies, then blob servers. */
    struct role *rs[AGENT_CLUSTER_MAX_PROXIES + AGENT_CLUSTER_MAX_BLOBS];
    unsigned n = 0;
    for (unsigned i = 0; i < cl->n_proxies; i++)
        if (cl->proxy_running[i]) rs[n++] = &cl->proxies[i];
    roles_stop(cl, rs, n);
    n = 0;
    for (unsigned i = 0; i < cl->n_blobs; i++)
        if (cl->blob_running[i]) rs[n++] = &cl->blobs[i];
    roles_stop(cl, rs, n);
    config_free(&cl->cfg);
    free(cl);
}

const struct cfg *agent_cluster_cfg(const struct agent_cluster *cl)
{
    return &cl->cfg;
}

unsigned agent_cluster_n_proxies(const struct agent_cluster *cl)
{
    return cl->n_proxies;
}

const char *agent_cluster_proxy_addr(const struct agent_cluster *cl, unsigned i)
{
    return i < cl->n_proxies ? cl->cfg.proxies[i].listen : "";
}
