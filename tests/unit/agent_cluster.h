/* agent_cluster.h: TEST ONLY.  A real cluster inside the test process, for
 * the agent's unit tests and benchmark: blob server roles and proxy roles
 * (one proxy: a single-proxy Raft group; or three), started on the
 * caller's reactor the way
 * `blockd --role=all` starts them (src/blockd.c: blob servers first, then
 * the proxy; stopped in the reverse order), from a config parsed by the
 * real config loader.  Never linked into blockd.
 *
 * Layout under DIR: proxyN/ (index, raft log), blobN/ (segments), the Unix
 * sockets the roles listen on (proxyN.sock, blobN.sock: no port to
 * choose), and admin.token.  Each proxy's admin HTTP endpoint, the only
 * TCP listeners, is on a free loopback port.
 *
 * What a test can do to the cluster, all through public paths:
 *   - configure the roles' test-build fault knobs (struct cfg_fault:
 *     delay every reply, close a connection every N frames) before a role
 *     starts, and stop and restart the proxy or any blob server (their
 *     data stays under DIR);
 *   - create, inspect, attach to an agent and detach volumes through the
 *     proxy's admin API (POST /v1/volumes, GET /v1/volumes/NAME, POST and
 *     DELETE /v1/volumes/NAME/attach);
 *   - read a volume's bytes and map straight from the cluster with its own
 *     wire client (VOL_READ with WIRE_READ_MAP, as any agent would, at the
 *     proxy's applied index), bypassing the agent under test;
 *   - read the proxy's status (proxy_status_json) and the process-wide
 *     metrics registry (what GET /metrics serves).
 *
 * Every call that waits runs the reactor meanwhile, bounded by a timeout,
 * so the roles keep working; none may be called from a reactor callback. */
#ifndef BD_AGENT_CLUSTER_H
#define BD_AGENT_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "runtime/reactor.h"

#define AGENT_CLUSTER_MAX_BLOBS 4
#define AGENT_CLUSTER_MAX_PROXIES 3

struct agent_cluster;

struct agent_cluster_opts {
    const char *dir;               /* an empty directory; borrowed */
    unsigned n_blobs;              /* 1..AGENT_CLUSTER_MAX_BLOBS; 0: 3 */
    unsigned n_proxies;            /* 1 or 3 (one Raft group); 0: 1 */
    struct cfg_fault proxy_fault;  /* every proxy's knobs (replies to agents and blob servers) */
    struct cfg_fault blob_fault;   /* every blob server's knobs (replies to the proxy) */
    /* Also wait (at most 10 s: it starts 5 s after the proxy leads) until
     * the proxy's first anti-entropy pass is over.  The next one is an hour
     * later (repair_interval_ms), so until then the proxy sends the blob
     * servers nothing but what the test causes, and a blob server's reply
     * held by blob_fault.delay_ms is released exactly that long after the
     * first reply it held (conn.c releases all it holds at once). */
    bool quiet;
};

/* Start the blob servers and the proxies and wait (at most 10 s) until a
 * proxy leads, hears every blob server and has placed partitions.  0 with
 * *OUT owned (agent_cluster_free), or -errno with a line in ERR. */
int agent_cluster_new(struct reactor *rx, const struct agent_cluster_opts *o,
                      struct agent_cluster **out, char *err, size_t errlen);
/* Stop every running role, in blockd's order, and free. */
void agent_cluster_free(struct agent_cluster *cl);

/* The config the roles run from: cluster_id and secret for the agent's
 * conn_auth (agent_vols_new's TOP).  Valid until agent_cluster_free. */
const struct cfg *agent_cluster_cfg(const struct agent_cluster *cl);
/* How many proxies, and proxy I's wire address (for the agent's
 * "proxies"). */
unsigned agent_cluster_n_proxies(const struct agent_cluster *cl);
const char *agent_cluster_proxy_addr(const struct agent_cluster *cl, unsigned i);
/* The proxy that leads right now, or -1. */
int agent_cluster_leader(struct agent_cluster *cl);

/* Stop proxy I and wait until it reported done (connections closed,
 * in-flight replies dropped).  0, or -ETIMEDOUT. */
int agent_cluster_proxy_stop(struct agent_cluster *cl, unsigned i);
/* Start it again from its data, with FAULT (NULL: none), and wait until
 * the cluster is ready again (WAIT_READY) or just return once it listens. */
int agent_cluster_proxy_start(struct agent_cluster *cl, unsigned i, const struct cfg_fault *fault,
                              bool wait_ready);
/* The same for blob server I (0-based); FAULT NULL keeps its knobs. */
int agent_cluster_blob_stop(struct agent_cluster *cl, unsigned i);
int agent_cluster_blob_start(struct agent_cluster *cl, unsigned i, const struct cfg_fault *fault);
/* Wait until a proxy leads and hears every running blob server. */
int agent_cluster_wait_ready(struct agent_cluster *cl, int ms);

/* Admin API, on the first running proxy (followers forward mutations).
 * 0, or -errno: -ENOENT (404), -EBUSY (409), -EIO otherwise. */
struct agent_cluster_vol {
    uint64_t id, size, generation;
    char attached_to[65];          /* the agent it is attached to; "" when detached */
    bool read_only;                /* ... read-only */
    char writer[65];               /* the agent holding it read-write; "" when none */
};
int agent_cluster_create_volume(struct agent_cluster *cl, const char *name, uint64_t size);
/* Grow volume NAME to SIZE bytes (PATCH /v1/volumes/NAME). */
int agent_cluster_resize_volume(struct agent_cluster *cl, const char *name, uint64_t size);
int agent_cluster_volume(struct agent_cluster *cl, const char *name, struct agent_cluster_vol *v);
/* Attach NAME to AGENT (read-only if READ_ONLY); FORCE takes it from
 * another agent and fences that one. */
int agent_cluster_attach(struct agent_cluster *cl, const char *name, const char *agent,
                         bool read_only, bool force);
/* Detach NAME from its agent; FORCE also fences the agent holding it. */
int agent_cluster_detach(struct agent_cluster *cl, const char *name, bool force);

/* Any admin call: METHOD PATH with BODY (may be NULL), the parsed JSON
 * reply in *OUT (may be NULL; cJSON_Delete it).  The HTTP status, or
 * -errno if there was no reply. */
struct cJSON;
int agent_cluster_admin(struct agent_cluster *cl, const char *method, const char *path,
                        const char *body, struct cJSON **out);

/* Read [OFF, OFF+LEN) of volume VOL_ID from the cluster (through the
 * first running proxy, at least at the commit index of the moment): the
 * bytes into
 * BUF (LEN bytes, may be NULL) and each 4 KiB block's kind into KINDS
 * (LEN/4096 entries of WIRE_MAP_DATA/ZERO/HOLE, may be NULL).  0 or -errno. */
int agent_cluster_read(struct agent_cluster *cl, uint64_t vol_id, uint64_t off, uint32_t len,
                       uint8_t *buf, uint8_t *kinds);

/* A number from the leading proxy's status (proxy_status_json): KEY is a
 * path such as "index.blobs", "index.extents" or "raft.applied_index".
 * "index.*" figures are read once the index has applied every entry
 * committed when the call was made.  -1 if absent or no proxy leads. */
double agent_cluster_status_num(struct agent_cluster *cl, const char *key);

/* The sum of the process-wide metric NAME over the label sets containing
 * LABEL (e.g. "role=\"agent\""; NULL: all), as GET /metrics renders it. */
double agent_cluster_metric(const char *name, const char *label);

#endif
