/* nbdtest.h: helpers for the one-error-per-program NBD tests
 * (tests/func/errors-*.c), after libnbd's tests/errors-*.c.
 *
 * Each program tests one row of CONTRACT.md §3 4.1 or 4.2 against the
 * server named by the environment, so the same binaries run against the
 * protocol test server (tests/tools/nbd_test_server) and, later, a real
 * agent in a real cluster:
 *
 *   NBD_TEST_HOST, NBD_TEST_PORT   the server (required; absent = skip)
 *   NBD_TEST_EXPORT                a writable export of >= 96 MiB (vol0)
 *   NBD_TEST_RO_EXPORT             a read-only export, or empty (skip)
 *   NBD_TEST_ERR_EXPORT            an export whose reads at offset 0..64K
 *                                  fail with EIO (test server knob), or empty
 *   NBD_TEST_ADMIN                 host:port of GET /v1/status, or empty
 *   NBD_TEST_SERVER_PID            the server's pid (RSS checks), or empty
 *
 * Raw sockets build the bytes libnbd refuses to send; they are written
 * here by hand, independently of src/net/nbd.c, so a codec bug cannot
 * hide itself.  Every read has a timeout; a failure prints file:line and
 * exits 1, a skip exits 77. */
#ifndef BD_NBDTEST_H
#define BD_NBDTEST_H

#include <arpa/inet.h>
#include <errno.h>
#include <libnbd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define T_FAIL(...)                                                                        \
    do {                                                                                   \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                               \
        fprintf(stderr, __VA_ARGS__);                                                      \
        fputc('\n', stderr);                                                               \
        exit(1);                                                                           \
    } while (0)
#define T_SKIP(...)                                                                        \
    do {                                                                                   \
        fprintf(stderr, "SKIP: ");                                                         \
        fprintf(stderr, __VA_ARGS__);                                                      \
        fputc('\n', stderr);                                                               \
        exit(77);                                                                          \
    } while (0)
#define T_CHECK(cond)                                                                      \
    do {                                                                                   \
        if (!(cond)) T_FAIL("check failed: %s", #cond);                                    \
    } while (0)
#define T_NBD(call)                                                                        \
    do {                                                                                   \
        if ((call) == -1) T_FAIL("%s: %s", #call, nbd_get_error());                       \
    } while (0)

/* Every helper is static and some programs use only a few of them. */
#define T_FN static __attribute__((unused))

/* Constants, written out here rather than taken from src/net/nbd.h. */
#define T_NBDMAGIC 0x4e42444d41474943ull
#define T_IHAVEOPT 0x49484156454f5054ull
#define T_REPMAGIC 0x0003e889045565a9ull
#define T_REQ_MAGIC 0x25609513u
#define T_SIMPLE_MAGIC 0x67446698u
#define T_CHUNK_MAGIC 0x668e33efu
#define T_REP_ERR(n) (0x80000000u | (n))
enum {
    T_OPT_EXPORT_NAME = 1, T_OPT_ABORT = 2, T_OPT_LIST = 3, T_OPT_STARTTLS = 5, T_OPT_INFO = 6,
    T_OPT_GO = 7, T_OPT_STRUCTURED_REPLY = 8, T_OPT_LIST_META = 9, T_OPT_SET_META = 10,
    T_REP_ACK = 1, T_REP_SERVER = 2, T_REP_INFO = 3, T_REP_META = 4,
    T_CMD_READ = 0, T_CMD_WRITE = 1, T_CMD_DISC = 2, T_CMD_FLUSH = 3, T_CMD_TRIM = 4,
    T_CMD_WRITE_ZEROES = 6, T_CMD_BLOCK_STATUS = 7,
};
#define T_REP_ERR_UNSUP T_REP_ERR(1)
#define T_REP_ERR_POLICY T_REP_ERR(2)
#define T_REP_ERR_INVALID T_REP_ERR(3)
#define T_REP_ERR_UNKNOWN T_REP_ERR(6)
#define T_REP_ERR_TOO_BIG T_REP_ERR(9)

static const char *t_host, *t_export, *t_ro_export, *t_err_export, *t_admin;
static int t_port;
static int t_server_pid;

T_FN const char *t_env(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

T_FN void t_init(void)
{
    t_host = t_env("NBD_TEST_HOST", "127.0.0.1");
    const char *p = t_env("NBD_TEST_PORT", NULL);
    if (!p) T_SKIP("NBD_TEST_PORT not set");
    t_port = atoi(p);
    t_export = t_env("NBD_TEST_EXPORT", "vol0");
    t_ro_export = t_env("NBD_TEST_RO_EXPORT", NULL);
    t_err_export = t_env("NBD_TEST_ERR_EXPORT", NULL);
    t_admin = t_env("NBD_TEST_ADMIN", NULL);
    t_server_pid = atoi(t_env("NBD_TEST_SERVER_PID", "0"));
}

T_FN uint64_t t_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- libnbd ------------------------------------------------------------------------- */

/* A connected handle on EXPORT; STRUCTURED asks for structured replies,
 * META for base:allocation. */
T_FN struct nbd_handle *t_open(const char *export, bool structured, bool meta)
{
    struct nbd_handle *h = nbd_create();
    if (!h) T_FAIL("nbd_create: %s", nbd_get_error());
    T_NBD(nbd_set_export_name(h, export));
    T_NBD(nbd_set_request_structured_replies(h, structured));
    if (meta) T_NBD(nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION));
    char port[16];
    snprintf(port, sizeof(port), "%d", t_port);
    T_NBD(nbd_connect_tcp(h, t_host, port));
    return h;
}

/* Run CALL, which must fail with errno ERR and leave the handle usable. */
#define T_EXPECT_ERRNO(h, call, err)                                                       \
    do {                                                                                   \
        if ((call) != -1) T_FAIL("%s succeeded; expected %s", #call, strerror(err));      \
        int e_ = nbd_get_errno();                                                          \
        if (e_ != (err))                                                                   \
            T_FAIL("%s: errno %d (%s), expected %d (%s): %s", #call, e_, strerror(e_),    \
                   (err), strerror(err), nbd_get_error());                                 \
        if (!nbd_aio_is_ready(h)) T_FAIL("%s: connection not usable afterwards", #call);  \
    } while (0)

/* ---- raw sockets ---------------------------------------------------------------------- */

T_FN void t_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
T_FN void t_put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}
T_FN void t_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}
T_FN uint32_t t_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
T_FN uint64_t t_be64(const uint8_t *p)
{
    return (uint64_t)t_be32(p) << 32 | t_be32(p + 4);
}

T_FN int t_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)t_port)};
    if (fd < 0 || inet_pton(AF_INET, t_host, &sin.sin_addr) != 1) T_FAIL("socket/address");
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
        T_FAIL("connect %s:%d: %s", t_host, t_port, strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* Send all of P; false if the peer closed. */
T_FN bool t_send(int fd, const void *p, size_t len)
{
    const uint8_t *b = p;
    while (len) {
        ssize_t n = send(fd, b, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        b += n;
        len -= (size_t)n;
    }
    return true;
}

/* Read exactly LEN bytes within MS: 0, -1 on EOF or reset, -2 on timeout. */
T_FN int t_recv_ms(int fd, void *p, size_t len, int ms)
{
    uint8_t *b = p;
    uint64_t end = t_now_ms() + (uint64_t)ms;
    while (len) {
        int left = (int)(end - t_now_ms());
        if ((int64_t)(end - t_now_ms()) <= 0) return -2;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, left) == 0) return -2;
        ssize_t n = recv(fd, b, len, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return -1;
        if (n < 0) continue;
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

T_FN void t_recv(int fd, void *p, size_t len)
{
    int rc = t_recv_ms(fd, p, len, 5000);
    if (rc == -1) T_FAIL("server closed the connection unexpectedly");
    if (rc == -2) T_FAIL("timed out waiting for %zu bytes", len);
}

/* True if the server closes the connection within MS (pending bytes are
 * read and dropped). */
T_FN bool t_closed_within(int fd, int ms)
{
    uint8_t buf[65536];
    uint64_t end = t_now_ms() + (uint64_t)ms;
    while (t_now_ms() < end) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)(end - t_now_ms())) <= 0) continue;
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
    }
    return false;
}

/* Read the greeting and send CFLAGS.  Returns the handshake flags. */
T_FN uint16_t t_greeting(int fd, uint32_t cflags)
{
    uint8_t g[18], f[4];
    t_recv(fd, g, sizeof(g));
    if (t_be64(g) != T_NBDMAGIC || t_be64(g + 8) != T_IHAVEOPT) T_FAIL("bad greeting");
    t_put_be32(f, cflags);
    t_send(fd, f, 4);
    return (uint16_t)(g[16] << 8 | g[17]);
}

T_FN void t_opt(int fd, uint32_t opt, const void *p, uint32_t len)
{
    uint8_t h[16];
    t_put_be64(h, T_IHAVEOPT);
    t_put_be32(h + 8, opt);
    t_put_be32(h + 12, len);
    t_send(fd, h, 16);
    if (len && p) t_send(fd, p, len);
}

/* Read one option reply to OPT; payload into BUF (CAP, rest dropped).
 * Returns the reply type. */
T_FN uint32_t t_reply(int fd, uint32_t opt, uint8_t *buf, size_t cap, uint32_t *lenp)
{
    uint8_t h[20];
    t_recv(fd, h, 20);
    if (t_be64(h) != T_REPMAGIC) T_FAIL("bad option reply magic");
    if (t_be32(h + 8) != opt) T_FAIL("reply to option %u, expected %u", t_be32(h + 8), opt);
    uint32_t len = t_be32(h + 16);
    if (len > (1u << 20)) T_FAIL("option reply of %u bytes", len);
    uint8_t *tmp = malloc(len ? len : 1);
    t_recv(fd, tmp, len);
    if (buf) memcpy(buf, tmp, len < cap ? len : cap);
    free(tmp);
    if (lenp) *lenp = len;
    return t_be32(h + 12);
}

/* Build an INFO/GO payload. */
T_FN uint32_t t_go_payload(uint8_t *out, const char *name, uint32_t name_len)
{
    t_put_be32(out, name_len);
    memcpy(out + 4, name, name_len);
    t_put_be16(out + 4 + name_len, 0);
    return 4 + name_len + 2;
}

/* Raw handshake into transmission on NAME.  STRUCTURED: structured
 * replies (and base:allocation if META).  Returns the transmission flags;
 * *SIZE gets the export size. */
T_FN uint16_t t_raw_go(int fd, const char *name, bool structured, bool meta, uint64_t *size)
{
    uint8_t b[1024];
    t_greeting(fd, 1);
    if (structured) {
        t_opt(fd, T_OPT_STRUCTURED_REPLY, NULL, 0);
        if (t_reply(fd, T_OPT_STRUCTURED_REPLY, NULL, 0, NULL) != T_REP_ACK)
            T_FAIL("structured replies refused");
    }
    if (meta) {
        uint32_t nl = (uint32_t)strlen(name);
        t_put_be32(b, nl);
        memcpy(b + 4, name, nl);
        t_put_be32(b + 4 + nl, 1);
        t_put_be32(b + 8 + nl, 15);
        memcpy(b + 12 + nl, "base:allocation", 15);
        t_opt(fd, T_OPT_SET_META, b, 27 + nl);
        uint32_t t;
        while ((t = t_reply(fd, T_OPT_SET_META, NULL, 0, NULL)) == T_REP_META) {}
        if (t != T_REP_ACK) T_FAIL("SET_META_CONTEXT failed: %#x", t);
    }
    uint32_t n = t_go_payload(b, name, (uint32_t)strlen(name));
    t_opt(fd, T_OPT_GO, b, n);
    uint16_t tflags = 0;
    for (;;) {
        uint32_t len;
        uint32_t t = t_reply(fd, T_OPT_GO, b, sizeof(b), &len);
        if (t == T_REP_ACK) return tflags;
        if (t != T_REP_INFO) T_FAIL("GO %s failed: reply %#x", name, t);
        if (len == 12 && b[0] == 0 && b[1] == 0) {
            if (size) *size = t_be64(b + 2);
            tflags = (uint16_t)(b[10] << 8 | b[11]);
        }
    }
}

T_FN void t_req(int fd, uint16_t type, uint16_t flags, uint64_t cookie, uint64_t off,
                  uint32_t len)
{
    uint8_t h[28];
    t_put_be32(h, T_REQ_MAGIC);
    t_put_be16(h + 4, flags);
    t_put_be16(h + 6, type);
    t_put_be64(h + 8, cookie);
    t_put_be64(h + 16, off);
    t_put_be32(h + 24, len);
    t_send(fd, h, 28);
}

/* Read a simple reply: its error; *COOKIE. */
T_FN uint32_t t_simple(int fd, uint64_t *cookie)
{
    uint8_t h[16];
    t_recv(fd, h, 16);
    if (t_be32(h) != T_SIMPLE_MAGIC) T_FAIL("expected a simple reply, magic %#x", t_be32(h));
    if (cookie) *cookie = t_be64(h + 8);
    return t_be32(h + 4);
}

/* ---- the server from outside ----------------------------------------------------------- */

/* Resident set of the server in KiB, or -1 when unknown. */
T_FN long t_server_rss_kb(void)
{
    if (!t_server_pid) return -1;
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", t_server_pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* The number after "KEY": in GET /v1/status, or -1 (no admin, no key). */
T_FN double t_status_num(const char *key)
{
    if (!t_admin) return -1;
    char host[64];
    int port;
    if (sscanf(t_admin, "%63[^:]:%d", host, &port) != 2) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sin.sin_addr);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) T_FAIL("admin connect");
    const char req[] = "GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    t_send(fd, req, sizeof(req) - 1);
    static char buf[1 << 16];
    size_t got = 0;
    while (got < sizeof(buf) - 1) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 3000) <= 0) break;
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = 0;
    char pat[80];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(buf, pat);
    return p ? strtod(p + strlen(pat), NULL) : -1;
}

#endif
