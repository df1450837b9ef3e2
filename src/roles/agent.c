/* agent.c: the agent role: glue between the volume registry (agent_vol.h),
 * the NBD server (agent_nbd.h) and the admin endpoint.
 *
 * It owns no I/O of its own.  Start order is the order of dependence:
 * the registry first (it replays journals and re-attaches volumes with
 * unshipped data before any client can write), then the NBD listeners,
 * then admin HTTP.  A failed step unwinds the earlier ones, so a failed
 * start leaves nothing open (role.h).
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
#include "agent.h"
#include "../bd.h"
#include "../log.h"
#include "../net/admin.h"
#include "agent_nbd.h"
#include "agent_vol.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct agent {
    struct role *r;
    struct reactor *rx;
    const struct bd_config *top;  /* borrowed from blockd.c, outlives the role */
    const struct cfg_agent *cfg;  /* this instance's section of TOP */
    struct agent_vols *vols;
    struct agent_nbd *nbd;
    struct admin *admin;
    void (*done)(struct role *r); /* stop's completion */
};

static unsigned agent_instances(const struct bd_config *cfg)
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
    agent_nbd_free(a->nbd);
    a->nbd = NULL;
    if (a->vols) agent_vols_free(a->vols);
    a->vols = NULL;
}

static int agent_start(struct role *r, struct reactor *rx, const struct bd_config *top,
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

    int rc = agent_vols_new(rx, top, a->cfg, r->tag, &a->vols, err, errlen);
    if (rc < 0) goto err;
    struct agent_nbd_opts o = {
        .tag = r->tag,
        .listen = a->cfg->nbd_listen,
        .unix_path = a->cfg->nbd_unix,
        .handshake_timeout_ms = a->cfg->handshake_timeout_ms,
        .max_handshakes = (uint32_t)a->cfg->max_handshakes,
        .max_connections = (uint32_t)a->cfg->max_connections,
    };
    rc = agent_nbd_new(rx, a->vols, &o, &a->nbd, err, errlen);
    if (rc < 0) goto err;
    if (a->cfg->admin[0]) {
        rc = admin_new(rx, a->cfg->admin, r->tag, top->admin_token, &a->admin);
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
    log_info(r->tag, "agent %s: NBD on %s%s%s, %u proxies", a->cfg->id,
             a->cfg->nbd_listen[0] ? a->cfg->nbd_listen : "-", a->cfg->nbd_unix[0] ? " and " : "",
             a->cfg->nbd_unix, a->cfg->n_proxies);
    return 0;

err:
    agent_free_parts(a);
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
    free(a);
    r->impl = NULL;
}

const struct role_ops agent_role_ops = {
    .name = "agent",
    .instances = agent_instances,
    .start = agent_start,
    .stop = agent_stop,
    .free = agent_free,
};
