/* test_sd_notify.c: systemd notifications (src/runtime/sd_notify.c) against
 * real datagram sockets standing in for systemd's: a path and an abstract
 * name, bad addresses, the watchdog's environment and its timer. */
#include "base/bd.h"
#include "runtime/reactor.h"
#include "runtime/sd_notify.h"
#include "tap.h"
#include "testlib.h"

#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A datagram socket bound at NAME ('@' = abstract), non-blocking; -1 on
 * failure. */
static int listen_at(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    memcpy(sa.sun_path, name, n);
    if (name[0] == '@') sa.sun_path[0] = 0;
    if (bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One datagram from FD into BUF (NUL-terminated), waiting up to 1 s;
 * its length or -1. */
static int recv_one(int fd, char *buf, size_t cap)
{
    for (int i = 0; i < 200; i++) {
        ssize_t n = recv(fd, buf, cap - 1, 0);
        if (n >= 0) {
            buf[n] = 0;
            return (int)n;
        }
        usleep(5000);
    }
    return -1;
}

/* Outside systemd every call is a no-op that says so. */
TEST(no_socket_is_a_noop)
{
    unsetenv("NOTIFY_SOCKET");
    CHECK_EQ(sd_notify_send("READY=1"), 0);
    CHECK_EQ(sd_notify_sendf("STATUS=%s", "x"), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    CHECK_EQ(sd_notify_send("READY=1"), 0);
    unsetenv("NOTIFY_SOCKET");
}

/* A path socket gets the exact bytes, lines and all. */
TEST(path_socket)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/notify", tap_tmpdir());
    int fd = listen_at(path);
    CHECK(fd >= 0);
    setenv("NOTIFY_SOCKET", path, 1);
    CHECK_EQ(sd_notify_send("READY=1\nSTATUS=serving"), 1);
    char buf[256];
    CHECK_EQ(recv_one(fd, buf, sizeof(buf)), strlen("READY=1\nSTATUS=serving"));
    CHECK(strcmp(buf, "READY=1\nSTATUS=serving") == 0);
    CHECK_EQ(sd_notify_sendf("STATUS=waiting for %s: %d", "proxy.1", 7), 1);
    CHECK(recv_one(fd, buf, sizeof(buf)) > 0);
    CHECK(strcmp(buf, "STATUS=waiting for proxy.1: 7") == 0);
    unsetenv("NOTIFY_SOCKET");
    close(fd);
}

/* '@' names an abstract socket: the leading NUL, and no terminator in the
 * address (a name with a trailing NUL would be another socket). */
TEST(abstract_socket)
{
    char name[108];
    snprintf(name, sizeof(name), "@blockd-test-sd-notify-%d-%llu", (int)getpid(),
             (unsigned long long)tap_seed());
    int fd = listen_at(name);
    CHECK(fd >= 0);
    setenv("NOTIFY_SOCKET", name, 1);
    CHECK_EQ(sd_notify_send("STOPPING=1"), 1);
    char buf[64];
    CHECK(recv_one(fd, buf, sizeof(buf)) > 0);
    CHECK(strcmp(buf, "STOPPING=1") == 0);
    unsetenv("NOTIFY_SOCKET");
    close(fd);
}

/* A relative path, a lone '@' and a name longer than sun_path are refused;
 * a socket nobody listens on is an error, not a hang. */
TEST(bad_addresses)
{
    setenv("NOTIFY_SOCKET", "relative/notify", 1);
    CHECK_EQ(sd_notify_send("READY=1"), -EINVAL);
    setenv("NOTIFY_SOCKET", "@", 1);
    CHECK_EQ(sd_notify_send("READY=1"), -EINVAL);
    char longname[200];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[0] = '/';
    longname[sizeof(longname) - 1] = 0;
    setenv("NOTIFY_SOCKET", longname, 1);
    CHECK_EQ(sd_notify_send("READY=1"), -EINVAL);
    char path[256];
    snprintf(path, sizeof(path), "%s/nobody-listens", tap_tmpdir());
    setenv("NOTIFY_SOCKET", path, 1);
    CHECK(sd_notify_send("READY=1") < 0);
    unsetenv("NOTIFY_SOCKET");
}

/* WATCHDOG_USEC counts only for the process WATCHDOG_PID names. */
TEST(watchdog_env)
{
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    CHECK_EQ(sd_notify_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "30000000", 1);
    CHECK_EQ(sd_notify_watchdog_usec(), 30000000);
    char pid[24];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    CHECK_EQ(sd_notify_watchdog_usec(), 30000000);
    snprintf(pid, sizeof(pid), "%d", (int)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1);
    CHECK_EQ(sd_notify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "12x", 1);
    CHECK_EQ(sd_notify_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "-5", 1);
    CHECK_EQ(sd_notify_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "0", 1);
    CHECK_EQ(sd_notify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_USEC");
}

static int pings, others;

static void on_datagram(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    char buf[64];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf) - 1, 0)) >= 0) {
        buf[n] = 0;
        if (strcmp(buf, "WATCHDOG=1") == 0) pings++;
        else others++;
    }
}

/* The timer pings at once and then every usec/2 while the reactor runs;
 * freed, it stops. */
TEST(watchdog_timer)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/watchdog", tap_tmpdir());
    int fd = listen_at(path);
    CHECK(fd >= 0);
    setenv("NOTIFY_SOCKET", path, 1);
    struct reactor *rx = reactor_new();
    CHECK(rx);
    struct event *ev = event_new(reactor_base(rx), fd, EV_READ | EV_PERSIST, on_datagram, NULL);
    CHECK(ev && event_add(ev, NULL) == 0);
    struct sd_notify_watchdog *w = NULL;
    CHECK_EQ(sd_notify_watchdog_start(rx, 0, &w), -EINVAL);
    CHECK_EQ(sd_notify_watchdog_start(rx, 100000, &w), 0); /* 100 ms: a ping every 50 */
    CHECK(testlib_run_until_count(rx, &pings, 1, 1000));
    CHECK(testlib_run_until_count(rx, &pings, 5, 2000));
    sd_notify_watchdog_free(w);
    testlib_pump(rx, 30); /* a ping already sent is delivered */
    int after = pings;
    testlib_pump(rx, 200);
    CHECK_EQ(pings, after);
    CHECK_EQ(others, 0);
    event_free(ev);
    reactor_free(rx);
    unsetenv("NOTIFY_SOCKET");
    close(fd);
}
