/* proxy_rewrite.h: the blob rewrite, a leader duty (see proxy_rewrite.c):
 * bounds space amplification by copying the live ranges of sparsely used
 * blobs into new blobs and re-pointing the extents (REPOINT), in the
 * background, under a byte budget, resuming where the index says it got
 * to.  Calls down only (proxy_copy, proxy_cmd, proxy_index).  Reactor
 * thread only. */
#ifndef BD_PROXY_REWRITE_H
#define BD_PROXY_REWRITE_H

#include <cjson/cJSON.h>

struct proxy;

/* Allocate the state (P->rewrite).  0 or -ENOMEM. */
int proxy_rewrite_start(struct proxy *p);
/* Every tick: on the leader, the next step within the budget. */
void proxy_rewrite_tick(struct proxy *p);
/* Free the state.  Call after proxy_cmd_fail_all and after the blob pool
 * is freed (they finish what is in flight). */
void proxy_rewrite_stop(struct proxy *p);
/* Adds "rewrite": {batches_in_flight, passes, batches, copied_bytes,
 * moved_bytes, lost_bytes (copied, then lost to a later write), layer,
 * offset (where the scan is)} to OUT. */
void proxy_rewrite_status(struct proxy *p, cJSON *out);

#endif
