/* listener.c: see listener.h. */
#include "listener.h"
#include "../bd.h"
#include "../util.h"

#include <arpa/inet.h>
#include <event2/listener.h>
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
