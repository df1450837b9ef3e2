/* link.h: a persistent outgoing wire connection to one address.
 *
 * Roles talk to fixed peers (proxy -> blob servers and peer proxies, blob
 * -> proxies, agent -> proxies).  A link keeps one conn to its address:
 * it connects, says HELLO, and after any failure reconnects with capped
 * exponential backoff and jitter (50 ms doubling to 2 s), forever, until
 * link_free().  Calls go on the current connection; while there is none
 * they fail at once with -ENOTCONN, so the caller decides whether to retry
 * elsewhere (a link never queues work behind a dead peer: DESIGN.md §4, a
 * write never waits on a down blob server).
 *
 * Callbacks: on_up when HELLO succeeded; on_down when an up connection
 * failed (not for failed connection attempts, which only log at debug);
 * on_request for requests the peer sends us on this connection. */
#ifndef BD_LINK_H
#define BD_LINK_H

#include <stdbool.h>

#include "net/conn.h"

struct link;

struct link_ops {
    void (*on_up)(struct link *l, void *arg);
    void (*on_down)(struct link *l, int err, void *arg);
    void (*on_request)(struct link *l, struct conn *c, struct conn_frame *f, void *arg);
};

/* Start connecting to ADDR.  OPTS (copied) and OPS (borrowed, must
 * outlive the link) as for conn_connect.  Returns owned, or NULL. */
struct link *link_new(struct reactor *rx, const char *addr, const struct conn_opts *opts,
                      const struct link_ops *ops, void *arg);
/* Close the connection (pending calls fail with -ESHUTDOWN) and free. */
void link_free(struct link *l);

bool link_is_up(const struct link *l);
const char *link_addr(const struct link *l);
/* The peer's node id from HELLO (0 until first up). */
uint64_t link_peer_id(const struct link *l);

/* conn_call on the current connection; -ENOTCONN if it is not up. */
int link_call(struct link *l, struct conn_call *call, uint16_t type, const void *fields,
              size_t fields_len, const struct conn_payload *payload, uint32_t timeout_ms);
int link_send_oneway(struct link *l, uint16_t type, const void *fields, size_t fields_len,
                     const struct conn_payload *payload);
/* Drop the current connection and reconnect now (after a peer looked
 * wedged, say). */
void link_reset(struct link *l);

#endif
