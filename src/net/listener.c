/* listener.c: see listener.h. */
#include "net/listener.h"
#include "base/bd.h"
#include "base/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct listener {
    struct evconnlistener *evl;
    listener_accept_fn fn;
    void *arg;
    char unix_path[108]; /* non-empty for Unix sockets: unlinked on free */
    int port;
};

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)evl;
    (void)sa;
    (void)salen;
    struct listener *l = arg;
    l->fn(fd, l->arg);
}

int listener_new(struct reactor *rx, const char *addr, listener_accept_fn fn, void *arg,
                 struct listener **out)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (util_parse_addr(addr, &ss, &len) < 0) return -EINVAL;
    struct listener *l = calloc(1, sizeof(*l));
    if (!l) return -ENOMEM;
    l->fn = fn;
    l->arg = arg;
    if (ss.ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
        struct stat st;
        /* Remove a socket left by a killed predecessor, never a regular file. */
        if (lstat(un->sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(un->sun_path);
        util_strlcpy(l->unix_path, un->sun_path, sizeof(l->unix_path));
    }
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC;
    if (ss.ss_family != AF_UNIX) flags |= LEV_OPT_REUSEABLE;
    l->evl = evconnlistener_new_bind(reactor_base(rx), on_accept, l, flags, 128,
                                     (struct sockaddr *)&ss, (int)len);
    if (!l->evl) {
        int e = errno ? -errno : -EADDRINUSE;
        l->unix_path[0] = 0;
        free(l);
        return e;
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    if (getsockname(evconnlistener_get_fd(l->evl), (struct sockaddr *)&bound, &blen) == 0) {
        if (bound.ss_family == AF_INET) l->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        if (bound.ss_family == AF_INET6)
            l->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    *out = l;
    return 0;
}

/* The private directory next to PATH where a socket is bound before it
 * has its permissions: made if missing, and refused unless it is a
 * directory of ours that nobody else can enter (else someone could
 * connect, or swap the socket, in between). */
static int private_dir(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    int n = slash ? snprintf(dir, cap, "%.*s/.blockd-bind", (int)(slash - path), path)
                  : snprintf(dir, cap, ".blockd-bind");
    if (n < 0 || (size_t)n >= cap) return -ENAMETOOLONG;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) return -errno;
    struct stat st;
    if (lstat(dir, &st) < 0) return -errno;
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077)) return -EPERM;
    return 0;
}

int listener_new_unix(struct reactor *rx, const char *path, const struct listener_perm *perm,
                      listener_accept_fn fn, void *arg, struct listener **out)
{
    static unsigned seq;
    char dir[sizeof(((struct listener *)0)->unix_path)];
    char tmp[sizeof(dir) + 5], addr[sizeof(tmp) + 8];
    if (strlen(path) >= sizeof(dir)) return -ENAMETOOLONG;
    int rc = private_dir(path, dir, sizeof(dir));
    if (rc < 0) return rc;
    int n = snprintf(tmp, sizeof(tmp), "%s/%x.%x", dir, (unsigned)getpid() & 0xffffu, ++seq);
    if (n < 0 || (size_t)n >= sizeof(dir)) return -ENAMETOOLONG;
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) return -EEXIST;
    snprintf(addr, sizeof(addr), "unix:%s", tmp);
    struct listener *l;
    if ((rc = listener_new(rx, addr, fn, arg, &l)) < 0) return rc;
    if ((perm->uid >= 0 || perm->gid >= 0) &&
        chown(tmp, (uid_t)perm->uid, (gid_t)perm->gid) < 0)
        rc = -errno;
    if (rc == 0 && chmod(tmp, perm->mode & 07777) < 0) rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0) rc = -errno;
    if (rc < 0) {
        listener_free(l); /* unlinks TMP */
        return rc;
    }
    util_strlcpy(l->unix_path, path, sizeof(l->unix_path));
    *out = l;
    return 0;
}

void listener_free(struct listener *l)
{
    if (!l) return;
    evconnlistener_free(l->evl);
    if (l->unix_path[0]) unlink(l->unix_path);
    free(l);
}

int listener_port(const struct listener *l)
{
    return l->port;
}
