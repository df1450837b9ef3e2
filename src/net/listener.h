/* listener.h: accept connections on a TCP or Unix address.
 *
 * A thin wrapper over evconnlistener that parses our address syntax
 * ("host:port", "[v6]:port", "unix:/path"), sets SO_REUSEADDR and
 * close-on-exec, removes a stale Unix socket file before binding and after
 * closing, and reports bind errors as -errno so start-up can fail with a
 * clear message before anything else happens.  A Unix socket may also be
 * made with an owner, group and mode (listener_new_unix): the agent's
 * socket per volume, which only that VM's qemu may open. */
#ifndef BD_LISTENER_H
#define BD_LISTENER_H

#include "runtime/reactor.h"

struct listener;

/* Called on the reactor with a new connected, non-blocking socket, which
 * the callee now owns. */
typedef void (*listener_accept_fn)(int fd, void *arg);

/* Listen on ADDR.  0 with *OUT owned (listener_free), or -EINVAL (bad
 * address), -EADDRINUSE, -EACCES, ... */
int listener_new(struct reactor *rx, const char *addr, listener_accept_fn fn, void *arg,
                 struct listener **out);
/* Who may connect to a Unix socket: its owner, group and mode.  UID or
 * GID -1 leaves that one as the process's. */
struct listener_perm {
    unsigned mode;   /* permission bits, e.g. 0660; connecting needs write permission */
    long long uid;   /* -1: ours */
    long long gid;   /* -1: ours */
};

/* Listen on the Unix socket PATH (no "unix:" prefix) with PERM, without a
 * moment where it exists with other permissions: it is bound under a
 * private directory next to it (DIR/.blockd-bind, made 0700 if missing;
 * it must be ours and closed to others), given PERM there, then renamed
 * to PATH, replacing a stale socket but never another kind of file.  0
 * with *OUT owned (listener_free unlinks PATH), or -ENAMETOOLONG (PATH or
 * the temporary name exceeds a socket address), -EEXIST (PATH is not a
 * socket), -EPERM (chown refused, or the private directory is not ours
 * alone), -errno. */
int listener_new_unix(struct reactor *rx, const char *path, const struct listener_perm *perm,
                      listener_accept_fn fn, void *arg, struct listener **out);
/* Stop accepting and close the socket; unlinks a Unix socket path. */
void listener_free(struct listener *l);
/* The bound port (useful when ADDR asked for port 0); 0 for Unix sockets. */
int listener_port(const struct listener *l);

#endif
