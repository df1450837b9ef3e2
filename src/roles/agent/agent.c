/* agent.c: the agent role: glue between the volume registry (agent_vol.h),
 * the NBD server (agent_nbd.h) and the admin endpoint.
 *
 * It owns no I/O of its own.  Start order is the order of dependence:
 * the registry first (it replays journals and re-attaches volumes with
 * unshipped data before any client can write), then NBD's TLS (the
 * agent's certificate and the PSK file, net/nbd_tls.h) and the NBD
 * listeners, then admin HTTP.  A failed step unwinds the earlier ones, so
 * a failed start leaves nothing open (role.h).
 *
 * Attachments: the registry's watch (agent_vols_watch) reaches the NBD
 * server through on_attachment: a volume attached to this agent gets its
 * socket, one detached loses its socket and its connections, one whose
 * attachment changed (read-only, client) loses its connections, which
 * were admitted under the old terms.
 *
 * Stop runs the other way, asynchronously:
 *   agent_nbd_stop   no new connections; handshakes closed; connections
 *                    in transmission stop reading, finish what is in
 *                    flight (bounded by io_timeout_ms + 1 s: a request
 *                    that outlives io_timeout_ms has already failed), then
 *                    close
 *   agent_vols_stop  ship every journal's dirty data, detach; requests
 *                    still inside it complete with -ESHUTDOWN
 *   admin_free, then DONE.
 * The admin endpoint stays up until the end so an operator can watch the
 * drain in /v1/status. */
#include "roles/agent/agent.h"
#include "base/util.h"
#include "net/nbd_tls.h"
#include "net/tls.h"
#include "net/wire.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "net/admin.h"
#include "roles/agent/agent_nbd.h"
#include "roles/agent/agent_vol.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct agent {
    struct role *r;
    struct reactor *rx;
    const struct cfg *top;  /* borrowed from blockd.c, outlives the role */
    const struct cfg_agent *cfg;  /* this instance's section of TOP */
    struct agent_vols *vols;
    struct agent_nbd *nbd;
    struct admin *admin;
    struct tls_ctx *tls;    /* this agent's certificate; NULL with insecure_plaintext */
    struct nbd_tls *nbd_tls; /* NBD's TLS (certificate, PSKs); NULL when nbd_tls is off */
    void (*done)(struct role *r); /* stop's completion */
};

static unsigned agent_instances(const struct cfg *cfg)
{
    return cfg->n_agents;
}

static void on_status(struct admin_req *req, void *arg)
{
    struct agent *a = arg;
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        admin_reply_error(req, 500, "out of memory");
        return;
    }
    cJSON_AddStringToObject(o, "role", "agent");
    cJSON_AddStringToObject(o, "tag", a->r->tag);
    cJSON_AddStringToObject(o, "id", a->cfg->id);
    cJSON_AddBoolToObject(o, "stopping", a->done != NULL);
    agent_nbd_status(a->nbd, o);
    cJSON *v = cJSON_AddObjectToObject(o, "volumes");
    if (v) agent_vols_status(a->vols, v);
    admin_reply_json(req, 200, o);
}

static void agent_free_parts(struct agent *a)
{
    admin_free(a->admin);
    a->admin = NULL;
    if (a->vols) agent_vols_watch(a->vols, NULL, NULL);
    agent_nbd_free(a->nbd);
    a->nbd = NULL;
    if (a->vols) agent_vols_free(a->vols);
    a->vols = NULL;
    nbd_tls_free(a->nbd_tls); /* after every NBD connection: each SSL holds the context */
    a->nbd_tls = NULL;
}

static void on_attachment(void *arg, enum agent_vols_change what,
                          const struct agent_vols_list_entry *e)
{
    struct agent *a = arg;
    if (!a->nbd) return;
    switch (what) {
    case AGENT_VOLS_ATTACHED: agent_nbd_volume_add(a->nbd, e->name); break;
    case AGENT_VOLS_CHANGED: agent_nbd_volume_revoke(a->nbd, e->name, false); break;
    case AGENT_VOLS_DETACHED: agent_nbd_volume_revoke(a->nbd, e->name, true); break;
    }
}

/* A user or group name, or a number, as an id; -1 for none ("").  0 or
 * -ENOENT. */
static int id_of(const char *name, bool group, long long *out)
{
    *out = -1;
    if (!name[0]) return 0;
    char *end;
    errno = 0;
    unsigned long v = strtoul(name, &end, 10);
    if (!*end && !errno) {
        *out = (long long)v;
        return 0;
    }
    if (group) {
        struct group *g = getgrnam(name);
        if (!g) return -ENOENT;
        *out = g->gr_gid;
    } else {
        struct passwd *p = getpwnam(name);
        if (!p) return -ENOENT;
        *out = p->pw_uid;
    }
    return 0;
}

/* The NBD server's options beyond the listeners: TLS and the volume
 * sockets.  0, or a negative code with ERR. */
static int nbd_security(struct agent *a, struct agent_nbd_opts *o, char *err, size_t errlen)
{
    const struct cfg_agent *c = a->cfg;
    o->tls_mode = NBD_TLS_OFF;
    if (!a->top->insecure_plaintext && c->nbd_tls != CFG_NBD_TLS_OFF) {
        struct tls_files tf = {.ca_file = a->top->tls_ca_file, .cert_file = c->cert_file,
                               .key_file = c->key_file};
        struct nbd_tls_opts no = {.x509 = &tf, .cluster = a->top->cluster_id,
                                  .psk_file = c->nbd_tls_psk_file};
        char why[600];
        int rc = nbd_tls_new(&no, &a->nbd_tls, why, sizeof(why));
        if (rc < 0) {
            snprintf(err, errlen, "nbd_tls: %s", why);
            return rc;
        }
        o->tls = a->nbd_tls;
        o->tls_mode = c->nbd_tls == CFG_NBD_TLS_REQUIRE ? NBD_TLS_REQUIRE : NBD_TLS_ON;
    }
    if (!c->nbd_volume_dir[0]) return 0;
    o->volume_dir = c->nbd_volume_dir;
    o->volume_perm.mode = (unsigned)strtoul(c->nbd_volume_mode, NULL, 8);
    if (id_of(c->nbd_volume_owner, false, &o->volume_perm.uid) < 0) {
        snprintf(err, errlen, "nbd_volume_owner: no such user \"%s\"", c->nbd_volume_owner);
        return -ENOENT;
    }
    if (id_of(c->nbd_volume_group, true, &o->volume_perm.gid) < 0) {
        snprintf(err, errlen, "nbd_volume_group: no such group \"%s\"", c->nbd_volume_group);
        return -ENOENT;
    }
    /* Clients must reach their socket; its own mode keeps others out. */
    int rc = util_mkdir_p(c->nbd_volume_dir, 0755);
    if (rc < 0) {
        snprintf(err, errlen, "nbd_volume_dir %s: %s", c->nbd_volume_dir, bd_strerror(rc));
        return rc;
    }
    return 0;
}

static int agent_start(struct role *r, struct reactor *rx, const struct cfg *top,
                       unsigned instance, char *err, size_t errlen)
{
    if (instance >= top->n_agents) {
        snprintf(err, errlen, "no agent instance %u", instance);
        return -EINVAL;
    }
    struct agent *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    a->r = r;
    a->rx = rx;
    a->top = top;
    a->cfg = &top->agents[instance];
    if (top->n_agents > 1) snprintf(r->tag, sizeof(r->tag), "agent.%u", instance + 1);
    else snprintf(r->tag, sizeof(r->tag), "agent");

    int rc = 0;
    if (!top->insecure_plaintext) {
        struct tls_files tf = {.ca_file = top->tls_ca_file, .cert_file = a->cfg->cert_file,
                               .key_file = a->cfg->key_file};
        rc = tls_ctx_for(&tf, top->cluster_id, WIRE_ROLE_AGENT, a->cfg->id, &a->tls, err, errlen);
        if (rc < 0) goto err;
    }
    rc = agent_vols_new(rx, top, a->cfg, a->tls, r->tag, &a->vols, err, errlen);
    if (rc < 0) goto err;
    struct agent_nbd_opts o = {
        .tag = r->tag,
        .listen = a->cfg->nbd_listen,
        .unix_path = a->cfg->nbd_unix,
        .handshake_timeout_ms = a->cfg->handshake_timeout_ms,
        .max_handshakes = (uint32_t)a->cfg->max_handshakes,
        .max_connections = (uint32_t)a->cfg->max_connections,
    };
    rc = nbd_security(a, &o, err, errlen);
    if (rc < 0) goto err;
    rc = agent_nbd_new(rx, a->vols, &o, &a->nbd, err, errlen);
    if (rc < 0) goto err;
    agent_vols_watch(a->vols, on_attachment, a);
    if (a->cfg->admin[0]) {
        struct admin_auth aa = {.tls = a->tls, .admin_token = top->admin_token,
                                .read_token = top->admin_read_token};
        rc = admin_new(rx, a->cfg->admin, r->tag, &aa, &a->admin);
        if (rc < 0) {
            snprintf(err, errlen, "admin %s: %s", a->cfg->admin, bd_strerror(rc));
            goto err;
        }
        rc = admin_route(a->admin, "GET", "/v1/status", false, on_status, a);
        if (rc < 0) {
            snprintf(err, errlen, "admin routes: %s", bd_strerror(rc));
            goto err;
        }
    }
    r->impl = a;
    static const char *const tls_modes[] = {"off", "on", "require"};
    log_info(r->tag, "agent %s: NBD on %s%s%s (TLS %s%s%s%s%s), %u proxies", a->cfg->id,
             a->cfg->nbd_listen[0] ? a->cfg->nbd_listen : "-", a->cfg->nbd_unix[0] ? " and " : "",
             a->cfg->nbd_unix, tls_modes[o.tls_mode],
             a->nbd_tls && nbd_tls_psk_count(a->nbd_tls) ? ", PSK keys: " : "",
             a->nbd_tls && nbd_tls_psk_count(a->nbd_tls) ? a->cfg->nbd_tls_psk_file : "",
             o.volume_dir ? "; volume sockets in " : "", o.volume_dir ? o.volume_dir : "",
             a->cfg->n_proxies);
    return 0;

err:
    agent_free_parts(a);
    tls_ctx_free(a->tls);
    free(a);
    return rc;
}

static void on_vols_stopped(void *arg)
{
    struct agent *a = arg;
    admin_free(a->admin);
    a->admin = NULL;
    a->done(a->r);
}

static void on_nbd_stopped(void *arg)
{
    struct agent *a = arg;
    log_info(a->r->tag, "NBD connections closed; stopping volumes");
    agent_vols_stop(a->vols, on_vols_stopped, a);
}

static void agent_stop(struct role *r, void (*done)(struct role *r))
{
    struct agent *a = r->impl;
    a->done = done;
    agent_nbd_stop(a->nbd, a->cfg->io_timeout_ms + 1000, on_nbd_stopped, a);
}

static void agent_free(struct role *r)
{
    struct agent *a = r->impl;
    if (!a) return;
    agent_free_parts(a);
    tls_ctx_free(a->tls); /* after every connection: each SSL holds a reference */
    free(a);
    r->impl = NULL;
}

/* Ready (role.h) as soon as it started: agent_start replays the journals
 * and binds the NBD listeners before it returns, so a started agent takes
 * clients.  A volume attaches when a client opens it (one whose journal
 * holds unshipped data re-attaches at start); that is per volume, in
 * /v1/status, not a property of the process. */
static bool agent_ready(struct role *r, char *why, size_t whylen)
{
    (void)r;
    (void)why;
    (void)whylen;
    return true;
}

const struct role_ops agent_role_ops = {
    .name = "agent",
    .instances = agent_instances,
    .start = agent_start,
    .stop = agent_stop,
    .free = agent_free,
    .ready = agent_ready,
};
