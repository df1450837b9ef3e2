/* proxy.h: the proxy role (see proxy.c and proxy_int.h). */
#ifndef BD_PROXY_H
#define BD_PROXY_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "role.h"

extern const struct role_ops proxy_role_ops;

struct proxy;
/* Fill O with this proxy's status (raft, index, blob servers).  FULL_SCAN
 * adds what needs a walk of the whole index (its digest, the space
 * figures): O(records) on the reactor, so only on request. */
void proxy_status_json(struct proxy *p, cJSON *o, bool full_scan);

#endif
