/* proxy_io.h: the agents' requests (VOL_*), on any proxy (see proxy_io.c).
 *
 * A request handler: proxy.c hands it the frames it does not serve
 * itself; it orchestrates the index (proxy_index.c), the decisions
 * (proxy_plan.c), blob I/O (proxy_blobs.c), command submission
 * (proxy_cmd.c), the blob id lease and applied-index waiters
 * (proxy_mgmt.c), and calls nothing above it.  Reactor thread only. */
#ifndef BD_PROXY_IO_H
#define BD_PROXY_IO_H

#include <stdbool.h>

#include "net/conn.h"

struct proxy;

/* How long a write may take from its blob puts to the commit of its index
 * entry.  The orphan grace (proxy_resync.c) must be twice it: proxy_io.c
 * asserts so against the configured minimum (CFG_ORPHAN_GRACE_MIN_MS). */
#define PROXY_IO_WRITE_DEADLINE_MS 20000

/* Serve F from connection C if it is an agent's request (VOL_WRITE,
 * VOL_READ, VOL_MAP, VOL_ATTACH, VOL_DETACH, VOL_FLUSH, VOL_LIST): the
 * reply goes to C, now or later (C outlives it: a closed connection drops
 * late replies).  F's body may be taken (conn_frame_take).  Returns false,
 * without touching C or F, for any other frame type. */
bool proxy_io_handle(struct proxy *p, struct conn *c, struct conn_frame *f);

#endif
