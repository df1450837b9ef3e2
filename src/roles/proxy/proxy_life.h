/* proxy_life.h: the admin API's data-lifecycle calls (see proxy_life.c):
 * snapshots (single, and consistency groups, saying whether an agent
 * barrier happened), snapshot deletes (409 naming clones not yet
 * flattened), rollback, flatten, and the volume and snapshot JSON they
 * add; plus the submit-and-wait helper proxy_backup.c builds on.
 *
 * proxy_admin.c routes to it; it calls down only (proxy_cmd, proxy_mgmt,
 * proxy_index).  Handlers take the request and answer it exactly once,
 * now or after their command applied on this proxy.  Reactor thread only. */
#ifndef BD_PROXY_LIFE_H
#define BD_PROXY_LIFE_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "net/admin.h"
#include "roles/proxy/proxy_cmd.h"
#include "roles/proxy/proxy_mgmt.h"
#include "store/index/idxcmd.h"
#include "store/index/index.h"

struct proxy;

/* The caller's answer with a volume's JSON (proxy_admin.c's, which calls
 * proxy_life_vol_json): how rollback and flatten answer. */
typedef void (*proxy_life_reply_fn)(struct admin_req *r, struct proxy *p, const char *vol,
                                    int code);

/* POST /v1/volumes/VOL/snapshots {"name", "require_barrier"?} */
void proxy_life_snapshot(struct proxy *p, struct admin_req *r, const char *vol);
/* POST /v1/snapshots {"name", "volumes": [...], "require_barrier"?}: one
 * Raft entry for them all (an admin_handler; ARG is the proxy). */
void proxy_life_group(struct admin_req *r, void *arg);
/* DELETE /v1/volumes/VOL/snapshots/SNAP */
void proxy_life_snapshot_delete(struct proxy *p, struct admin_req *r, const char *vol,
                                const char *snap);
/* POST /v1/volumes/VOL/rollback {"snapshot"}; answers through REPLY. */
void proxy_life_rollback(struct proxy *p, struct admin_req *r, const char *vol,
                         proxy_life_reply_fn reply);
/* POST /v1/volumes/VOL/flatten {} (or no body); answers through REPLY. */
void proxy_life_flatten(struct proxy *p, struct admin_req *r, const char *vol,
                        proxy_life_reply_fn reply);

/* Inside a read txn on P->rd: add to a volume's JSON O its "clone_of"
 * ({"volume", "snapshot"} or null) and "flatten" (progress, or null). */
void proxy_life_vol_json(struct proxy *p, const struct index_vol *v, cJSON *o);
/* Inside a read txn: add to a snapshot's JSON O its "identity" (the id
 * export streams name it by), "barrier" and, if imported, "origin". */
void proxy_life_snap_json(struct proxy *p, const struct index_snap *s, cJSON *o);
/* The identity of snapshot S: its origin if it was imported, else
 * XXH3-64 of (cluster id, volume id, name, created index). */
uint64_t proxy_life_snap_identity(struct proxy *p, const struct index_snap *s);

/* An index command from the admin API, answered once this proxy applied
 * it (read-your-writes).  The caller embeds it in its own context
 * (allocated), sets DONE, R and DATA; proxy_life_submit encodes CMD into
 * BUF.  DONE runs exactly once, never inside proxy_life_submit: ERR 0 with
 * RES OK and applied here; the command's refusal as -errno with RES
 * (status and id) filled; or a transport error (-EAGAIN, -ETIMEDOUT,
 * -ESHUTDOWN; -EINVAL: not encodable) with RES zeroed.  DONE answers R and
 * frees the context. */
struct proxy_life_cmd {
    void (*done)(struct proxy_life_cmd *m, int err);
    struct admin_req *r;
    void *data;
    struct idxcmd_result res;
    uint64_t index;            /* the entry's raft index (ERR 0) */
    /* private */
    struct proxy *p;
    struct proxy_cmd cmd;
    struct proxy_mgmt_wait wait;
    uint8_t buf[IDXCMD_MAX_LEN];
};
void proxy_life_submit(struct proxy *p, struct proxy_life_cmd *m, const struct idxcmd *cmd);
/* The HTTP status for a command's -errno. */
int proxy_life_http_code(int err);

#endif
