/* sd_notify.c: see sd_notify.h.
 *
 * Each notification opens a datagram socket, sends one message and closes
 * it, as libsystemd's sd_notify does: notifications are rare (a few at
 * start and stop, one watchdog ping every several seconds), and a socket
 * kept open would have to survive systemd re-executing itself.  systemd
 * learns who sent a datagram from the kernel (SO_PASSCRED on its end), so
 * nothing but the text is sent; with NotifyAccess=main it must come from
 * the main pid, which every thread of this process shares.
 *
 * Rejected: linking libsystemd for sd_notify(3).  It is one more runtime
 * dependency (and a large one) for a sendto(). */
#include "runtime/sd_notify.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct sd_notify_watchdog {
    struct event *timer;   /* persistent, every usec/2 */
};

/* $NOTIFY_SOCKET as a sockaddr_un.  1 and *LEN set, 0 if unset, -EINVAL. */
static int notify_addr(struct sockaddr_un *sa, socklen_t *len)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !path[0]) return 0;
    size_t n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n < 2 || n > sizeof(sa->sun_path)) return -EINVAL;
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, path, n);
    /* An abstract name starts with a NUL and is exactly as long as given
     * (no terminator counts); a path may fill sun_path without one. */
    if (path[0] == '@') sa->sun_path[0] = 0;
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    return 1;
}

int sd_notify_send(const char *state)
{
    struct sockaddr_un sa;
    socklen_t len = 0;
    int rc = notify_addr(&sa, &len);
    if (rc <= 0) return rc;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    size_t n = strlen(state);
    ssize_t w = sendto(fd, state, n, MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    rc = w < 0 ? -errno : (size_t)w == n ? 1 : -EMSGSIZE;
    close(fd);
    return rc;
}

int sd_notify_sendf(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return sd_notify_send(buf);
}

/* A positive decimal integer with nothing after it; 0 otherwise. */
static uint64_t env_u64(const char *name)
{
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || s[0] == '-') return 0;
    return v;
}

uint64_t sd_notify_watchdog_usec(void)
{
    uint64_t usec = env_u64("WATCHDOG_USEC");
    if (!usec) return 0;
    const char *pid = getenv("WATCHDOG_PID");
    /* systemd sets WATCHDOG_PID so that a child inheriting the environment
     * does not ping on its parent's behalf. */
    if (pid && *pid && env_u64("WATCHDOG_PID") != (uint64_t)getpid()) return 0;
    return usec;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    sd_notify_send("WATCHDOG=1");
}

int sd_notify_watchdog_start(struct reactor *rx, uint64_t usec, struct sd_notify_watchdog **out)
{
    if (!usec) return -EINVAL;
    struct sd_notify_watchdog *w = calloc(1, sizeof(*w));
    if (!w) return -ENOMEM;
    w->timer = event_new(reactor_base(rx), -1, EV_PERSIST, on_timer, w);
    uint64_t half = usec / 2 ? usec / 2 : 1;
    struct timeval tv = {(time_t)(half / 1000000), (suseconds_t)(half % 1000000)};
    if (!w->timer || event_add(w->timer, &tv) < 0) {
        sd_notify_watchdog_free(w);
        return -ENOMEM;
    }
    sd_notify_send("WATCHDOG=1");
    *out = w;
    return 0;
}

void sd_notify_watchdog_free(struct sd_notify_watchdog *w)
{
    if (!w) return;
    if (w->timer) event_free(w->timer);
    free(w);
}
