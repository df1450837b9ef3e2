/* listener.h: accept connections on a TCP or Unix address.
 *
 * A thin wrapper over evconnlistener that parses our address syntax
 * ("host:port", "[v6]:port", "unix:/path"), sets SO_REUSEADDR and
 * close-on-exec, removes a stale Unix socket file before binding and after
 * closing, and reports bind errors as -errno so start-up can fail with a
 * clear message before anything else happens. */
#ifndef BD_LISTENER_H
#define BD_LISTENER_H

#include "reactor.h"

struct listener;

/* Called on the reactor with a new connected, non-blocking socket, which
 * the callee now owns. */
typedef void (*listener_accept_fn)(int fd, void *arg);

/* Listen on ADDR.  0 with *OUT owned (listener_free), or -EINVAL (bad
 * address), -EADDRINUSE, -EACCES, ... */
int listener_new(struct reactor *rx, const char *addr, listener_accept_fn fn, void *arg,
                 struct listener **out);
/* Stop accepting and close the socket; unlinks a Unix socket path. */
void listener_free(struct listener *l);
/* The bound port (useful when ADDR asked for port 0); 0 for Unix sockets. */
int listener_port(const struct listener *l);

#endif
