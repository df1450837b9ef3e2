/* proxy_peers.h: links to the other proxies of the Raft group (see
 * proxy_peers.c), for forwarding index commands (PROPOSE) and reads to
 * the leader.
 *
 * The group is the Raft configuration, which changes as proxies are added
 * and removed (consensus.h), plus the peers of the config file (a proxy
 * joining hears from those first).  At the bottom of the role: it calls
 * only consensus and link.  Reactor thread only. */
#ifndef BD_PROXY_PEERS_H
#define BD_PROXY_PEERS_H

#include <stdbool.h>
#include <stdint.h>

struct proxy;
struct link;

/* Follow the configuration: a link to every member but this proxy, none
 * to a proxy that left it (unless the config file names it).  Cheap when
 * nothing changed; call it every tick. */
void proxy_peers_sync(struct proxy *p);
/* The link to proxy ID, or NULL (unknown, or this proxy). */
struct link *proxy_peers_link(struct proxy *p, uint64_t id);
/* ID may send RAFT and PROPOSE frames: a member of the configuration, or
 * a peer of the config file. */
bool proxy_peers_known(struct proxy *p, uint64_t id);
/* Free every link (stop). */
void proxy_peers_free(struct proxy *p);

#endif
