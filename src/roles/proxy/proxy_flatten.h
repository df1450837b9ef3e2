/* proxy_flatten.h: a clone's flatten, a leader duty (see proxy_flatten.c):
 * copies what each clone being flattened inherits into its own bottom
 * layer, at flatten_bytes_per_sec, then cuts it from its parent.  Calls
 * down only (proxy_copy, proxy_cmd, proxy_index).  Reactor thread only. */
#ifndef BD_PROXY_FLATTEN_H
#define BD_PROXY_FLATTEN_H

#include <cjson/cJSON.h>

struct proxy;

/* Allocate the state (P->flatten).  0 or -ENOMEM. */
int proxy_flatten_start(struct proxy *p);
/* Every tick: on the leader, the next step of a flatten within the rate. */
void proxy_flatten_tick(struct proxy *p);
/* Free the state; call after proxy_cmd_fail_all and the blob pool's free
 * (they finish what is in flight). */
void proxy_flatten_stop(struct proxy *p);
/* Adds "flatten": {steps, copied_bytes, done} to OUT. */
void proxy_flatten_status(struct proxy *p, cJSON *out);

#endif
