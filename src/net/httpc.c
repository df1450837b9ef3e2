/* httpc.c: see httpc.h.  Blocking sockets with poll() deadlines. */
#include "httpc.h"
#include "../bd.h"
#include "../util.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = util_mono_ms();
        if (now >= deadline) return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, (int)(deadline - now));
        if (rc > 0) return 0;
        if (rc == 0) return -ETIMEDOUT;
        if (errno != EINTR) return -errno;
    }
}

static int connect_to(const char *addr, uint64_t deadline)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (util_parse_addr(addr, &ss, &len) < 0) return -EINVAL;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
        int e = -errno;
        close(fd);
        return e;
    }
    int rc = wait_fd(fd, POLLOUT, deadline);
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr) rc = -soerr;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n, uint64_t deadline)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            int rc = wait_fd(fd, POLLOUT, deadline);
            if (rc < 0) return rc;
            continue;
        }
        if (w < 0) return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int httpc_request(const char *addr, const char *method, const char *path, const char *body,
                  const char *token, int timeout_ms, struct httpc_resp *resp)
{
    memset(resp, 0, sizeof(*resp));
    uint64_t deadline = util_mono_ms() + (uint64_t)timeout_ms;
    int fd = connect_to(addr, deadline);
    if (fd < 0) return fd;
    size_t blen = body ? strlen(body) : 0;
    char head[2048];
    int hl = snprintf(head, sizeof(head),
                      "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                      "User-Agent: blockd-ctl/" BD_VERSION "\r\n%s%s%s"
                      "%sContent-Length: %zu\r\n\r\n",
                      method, path, addr, token ? "Authorization: Bearer " : "",
                      token ? token : "", token ? "\r\n" : "",
                      body ? "Content-Type: application/json\r\n" : "", blen);
    int rc = hl > 0 && (size_t)hl < sizeof(head) ? 0 : -ENAMETOOLONG;
    if (rc == 0) rc = send_all(fd, head, (size_t)hl, deadline);
    if (rc == 0 && blen) rc = send_all(fd, body, blen, deadline);
    size_t cap = 65536, got = 0;
    char *buf = rc == 0 ? malloc(cap) : NULL;
    if (rc == 0 && !buf) rc = -ENOMEM;
    while (rc == 0) {
        if (got + 1 >= cap) {
            if (cap >= HTTPC_MAX_BODY + 65536) {
                rc = -EFBIG;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = -ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = recv(fd, buf + got, cap - 1 - got, 0);
        if (r == 0) break;
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            rc = wait_fd(fd, POLLIN, deadline);
            continue;
        }
        if (r < 0) {
            rc = -errno;
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[got] = 0;
    int status = 0;
    char *sep = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || !sep) {
        free(buf);
        return -EPROTO;
    }
    size_t off = (size_t)(sep + 4 - buf);
    memmove(buf, buf + off, got - off + 1);
    resp->status = status;
    resp->body = buf;
    resp->body_len = got - off;
    return 0;
}

void httpc_resp_free(struct httpc_resp *resp)
{
    free(resp->body);
    resp->body = NULL;
}
