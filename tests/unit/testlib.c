/* testlib.c: the helpers behind testlib.h. */
#include "testlib.h"

#include "base/util.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define TICK_MS 5
#define HTTP_WAIT_MS 3000
#define HTTP_MAX (128 * 1024)

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* The loop behind every wait: COND(ARG) or the deadline. */
static bool run_until(struct reactor *rx, bool (*cond)(const void *arg), const void *arg, int ms)
{
    /* The tick bounds each blocking pass, so the deadline and conditions
     * that change without an event (time, other threads) are seen. */
    struct event *tick = event_new(reactor_base(rx), -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, TICK_MS * 1000};
    evtimer_add(tick, &tv);
    uint64_t end = util_mono_ms() + (uint64_t)(ms > 0 ? ms : 0);
    bool ok;
    while (!(ok = cond(arg)) && util_mono_ms() < end)
        event_base_loop(reactor_base(rx), EVLOOP_ONCE);
    event_free(tick);
    return ok;
}

static bool call_cond(const void *arg)
{
    bool (*const *cond)(void) = arg;
    return (*cond)();
}

bool testlib_run_until(struct reactor *rx, bool (*cond)(void), int ms)
{
    return run_until(rx, call_cond, &cond, ms);
}

static bool flag_set(const void *arg)
{
    return *(const int *)arg != 0;
}

bool testlib_run_until_flag(struct reactor *rx, const int *flag, int ms)
{
    return run_until(rx, flag_set, flag, ms);
}

struct count_want {
    const int *count;
    int want;
};

static bool count_reached(const void *arg)
{
    const struct count_want *c = arg;
    return *c->count >= c->want;
}

bool testlib_run_until_count(struct reactor *rx, const int *count, int want, int ms)
{
    struct count_want c = {count, want};
    return run_until(rx, count_reached, &c, ms);
}

static bool never(const void *arg)
{
    (void)arg;
    return false;
}

void testlib_pump(struct reactor *rx, int ms)
{
    run_until(rx, never, NULL, ms);
}

void testlib_set_flag(void *arg)
{
    *(int *)arg = 1;
}

int testlib_http(struct reactor *rx, int port, const char *req, char *body, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    size_t len = strlen(req);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len) {
        close(fd);
        return -1;
    }
    /* The server runs on RX, in this thread: pump it while reading. */
    static char buf[HTTP_MAX + 1];
    size_t got = 0;
    uint64_t end = util_mono_ms() + HTTP_WAIT_MS;
    while (util_mono_ms() < end && got < HTTP_MAX) {
        event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
        ssize_t n = recv(fd, buf + got, HTTP_MAX - got, MSG_DONTWAIT);
        if (n == 0) break;
        if (n > 0) got += (size_t)n;
        else usleep(200);
    }
    close(fd);
    buf[got] = 0;
    int code = 0;
    if (sscanf(buf, "HTTP/1.1 %d", &code) != 1) return -1;
    const char *b = strstr(buf, "\r\n\r\n");
    if (body) util_strlcpy(body, b ? b + 4 : "", cap);
    return code;
}

int testlib_http_get(struct reactor *rx, int port, const char *path, char *body, size_t cap)
{
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                     path);
    if (n < 0 || (size_t)n >= sizeof(req)) return -1;
    return testlib_http(rx, port, req, body, cap);
}

int64_t testlib_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

int testlib_flip_byte(const char *path, uint64_t off, uint8_t mask)
{
    int fd = open(path, O_RDWR);
    if (fd < 0) return -errno;
    uint8_t b;
    ssize_t n = pread(fd, &b, 1, (off_t)off);
    int rc = n == 1 ? 0 : n == 0 ? -ERANGE : -errno;
    if (rc == 0) {
        b ^= mask;
        if (pwrite(fd, &b, 1, (off_t)off) != 1) rc = -errno;
    }
    close(fd);
    return rc;
}
