/* httpc.c: see httpc.h.  Non-blocking sockets driven with poll()
 * deadlines, so one deadline bounds every step; with TLS the same loop
 * drives SSL_connect / SSL_write / SSL_read (WANT_READ and WANT_WRITE
 * become waits). */
#include "net/httpc.h"
#include "base/bd.h"
#include "base/util.h"
#include "net/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

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

/* One connection: a socket, and an SSL on it for HTTPS. */
struct chan {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
};

/* Wait for what SSL asked for after a call returned RC. */
static int ssl_wait(struct chan *ch, int rc, uint64_t deadline)
{
    int e = SSL_get_error(ch->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) return wait_fd(ch->fd, POLLIN, deadline);
    if (e == SSL_ERROR_WANT_WRITE) return wait_fd(ch->fd, POLLOUT, deadline);
    if (e == SSL_ERROR_ZERO_RETURN) return -ECONNRESET;
    return -EPROTO;
}

static int tls_open(struct chan *ch, const struct httpc_target *t, uint64_t deadline)
{
    ch->ctx = SSL_CTX_new(TLS_client_method());
    if (!ch->ctx) return -ENOMEM;
    SSL_CTX_set_min_proto_version(ch->ctx, TLS1_2_VERSION);
    /* The server may close after the response without close_notify. */
    SSL_CTX_set_options(ch->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (SSL_CTX_load_verify_locations(ch->ctx, t->ca_file, NULL) != 1) return -ENOENT;
    SSL_CTX_set_verify(ch->ctx, SSL_VERIFY_PEER, NULL);
    ch->ssl = SSL_new(ch->ctx);
    if (!ch->ssl || SSL_set_fd(ch->ssl, ch->fd) != 1) return -ENOMEM;
    for (;;) {
        int rc = SSL_connect(ch->ssl);
        if (rc == 1) break;
        if (SSL_get_verify_result(ch->ssl) != X509_V_OK) return -EACCES;
        rc = ssl_wait(ch, rc, deadline);
        if (rc < 0) return rc == -EPROTO ? -EACCES : rc;
    }
    /* Chained to the cluster CA; now: a blockd node of the expected role. */
    X509 *peer = SSL_get0_peer_certificate(ch->ssl);
    struct tls_identity id;
    if (!peer || tls_identity_of_cert(peer, &id) < 0) return -EACCES;
    if (t->expect_role && id.role != t->expect_role) return -EACCES;
    return 0;
}

static void chan_close(struct chan *ch)
{
    if (ch->ssl) SSL_free(ch->ssl);
    if (ch->ctx) SSL_CTX_free(ch->ctx);
    ERR_clear_error();
    if (ch->fd >= 0) close(ch->fd);
}

static int send_all(struct chan *ch, const char *p, size_t n, uint64_t deadline)
{
    while (n > 0) {
        ssize_t w;
        if (ch->ssl) {
            int r = SSL_write(ch->ssl, p, (int)BD_MIN(n, (size_t)1 << 30));
            if (r <= 0) {
                int rc = ssl_wait(ch, r, deadline);
                if (rc < 0) return rc;
                continue;
            }
            w = r;
        } else {
            w = send(ch->fd, p, n, MSG_NOSIGNAL);
            if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                int rc = wait_fd(ch->fd, POLLOUT, deadline);
                if (rc < 0) return rc;
                continue;
            }
            if (w < 0) return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Receive up to N bytes: >0 bytes, 0 at the end of the response, -errno. */
static ssize_t recv_some(struct chan *ch, char *p, size_t n, uint64_t deadline)
{
    for (;;) {
        if (ch->ssl) {
            int r = SSL_read(ch->ssl, p, (int)BD_MIN(n, (size_t)1 << 30));
            if (r > 0) return r;
            int e = SSL_get_error(ch->ssl, r);
            /* The server closes after the response (Connection: close),
             * with or without close_notify. */
            if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))
                return 0;
            int rc = ssl_wait(ch, r, deadline);
            if (rc < 0) return rc;
            continue;
        }
        ssize_t r = recv(ch->fd, p, n, 0);
        if (r >= 0) return r;
        if (errno != EAGAIN && errno != EINTR) return -errno;
        int rc = wait_fd(ch->fd, POLLIN, deadline);
        if (rc < 0) return rc;
    }
}

int httpc_request(const struct httpc_target *t, const char *method, const char *path,
                  const char *body, struct httpc_resp *resp)
{
    memset(resp, 0, sizeof(*resp));
    uint64_t deadline = util_mono_ms() + (uint64_t)t->timeout_ms;
    const char *addr = t->addr, *token = t->token;
    struct chan ch = {.fd = connect_to(addr, deadline)};
    if (ch.fd < 0) return ch.fd;
    int rc = t->ca_file ? tls_open(&ch, t, deadline) : 0;
    if (rc < 0) {
        chan_close(&ch);
        return rc;
    }
    size_t blen = body ? strlen(body) : 0;
    char head[2048];
    int hl = snprintf(head, sizeof(head),
                      "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                      "User-Agent: blockd-ctl/" BD_VERSION "\r\n%s%s%s"
                      "%sContent-Length: %zu\r\n\r\n",
                      method, path, addr, token ? "Authorization: Bearer " : "",
                      token ? token : "", token ? "\r\n" : "",
                      body ? "Content-Type: application/json\r\n" : "", blen);
    rc = hl > 0 && (size_t)hl < sizeof(head) ? 0 : -ENAMETOOLONG;
    if (rc == 0) rc = send_all(&ch, head, (size_t)hl, deadline);
    if (rc == 0 && blen) rc = send_all(&ch, body, blen, deadline);
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
        ssize_t r = recv_some(&ch, buf + got, cap - 1 - got, deadline);
        if (r == 0) break;
        if (r < 0) {
            rc = (int)r;
            break;
        }
        got += (size_t)r;
    }
    chan_close(&ch);
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
