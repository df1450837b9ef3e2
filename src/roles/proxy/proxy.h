/* proxy.h: the proxy role (see proxy.c; its modules are listed in
 * proxy_int.h).  blockd.c starts it by name through proxy_role_ops. */
#ifndef BD_PROXY_H
#define BD_PROXY_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "roles/role.h"

extern const struct role_ops proxy_role_ops;

struct proxy;

/* The proxy's /v1/status document (Raft state, index figures, repair) into
 * OUT, as GET /v1/status serves it; FULL_SCAN adds the digest and space
 * figures that walk the whole index.  For in-process harnesses that hold
 * the role instance (role->impl); implemented in proxy_admin.c. */
void proxy_status_json(struct proxy *p, cJSON *out, bool full_scan);

#endif
