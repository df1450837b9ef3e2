/* test_tls.c: identities (src/net/tls.c), the cluster CA (src/cert.c) and
 * authenticated wire connections (src/net/conn.c with TLS), over real
 * sockets on one reactor.
 *
 * Fixture: a CA made with `blockd cert ca` (cert_main, in process), node
 * certificates issued by it, a second foreign CA, and a listener whose
 * accepted sockets become server conns.  Every refusal case checks that
 * the connection closes within a bounded time and that no request reached
 * the server's owner.  The bulk tests echo frames of 1 KiB to 32 MiB, far
 * more than out_high_water in flight, over TCP with the default limits. */
#include "base/bd.h"
#include "base/util.h"
#include "cert.h"
#include "net/conn.h"
#include "net/listener.h"
#include "net/tls.h"
#include "net/wire.h"
#include "runtime/reactor.h"
#include "tap.h"

#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

static struct reactor *rx;
static struct listener *lis;
static char addr[300];
static char dir[256];
static struct conn_opts srv_opts;
static struct conn_auth srv_auth;
static struct conn_limits limits;
static int srv_hellos, srv_requests, srv_closed;

/* ---- fixture: the CA and certificates ------------------------------------- */

static int cert(const char *const *args)
{
    char *argv[32];
    int argc = 0;
    for (; args[argc]; argc++) argv[argc] = (char *)args[argc];
    argv[argc] = NULL;
    /* cert_main prints the paths it wrote; keep TAP output clean. */
    fflush(stdout);
    int saved = dup(1);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    close(devnull);
    int rc = cert_main(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    return rc;
}

static void issue(const char *ca, const char *role, const char *id, const char *name,
                  const char *from_days, const char *days)
{
    char cadir[300], out[300];
    snprintf(cadir, sizeof(cadir), "%s/%s", dir, ca);
    snprintf(out, sizeof(out), "%s/%s", dir, name);
    const char *args[] = {"cert", "issue", "--ca", cadir, "--role", role, "--id", id,
                          "--out", out, "--from-days", from_days, "--days", days, NULL};
    if (cert(args) != 0) abort();
}

static struct tls_ctx *ctx_of(const char *ca, const char *name, int *rcp)
{
    char capem[300], crt[300], key[300], err[256];
    snprintf(capem, sizeof(capem), "%s/%s/ca.pem", dir, ca);
    snprintf(crt, sizeof(crt), "%s/%s.pem", dir, name);
    snprintf(key, sizeof(key), "%s/%s.key", dir, name);
    struct tls_files f = {.ca_file = capem, .cert_file = crt, .key_file = key};
    struct tls_ctx *t = NULL;
    int rc = tls_ctx_new(&f, "test", &t, err, sizeof(err));
    if (rcp) *rcp = rc;
    else if (rc < 0) fprintf(stderr, "# tls_ctx_new %s: %s\n", name, err);
    return t;
}

/* The bulk tests: both ends answer every request with its own fields and
 * payload (echo), and the server end's conn is kept to call through. */
static bool bulk_echo;
static struct conn *srv_conn;
static void echo(struct conn *c, struct conn_frame *f);

static void srv_on_request(struct conn *c, struct conn_frame *f, void *arg)
{
    (void)arg;
    srv_requests++;
    if (bulk_echo) echo(c, f);
    else conn_reply_error(c, &f->hdr, -ENOTSUP, 0, "test server");
}
static int srv_on_hello(struct conn *c, const struct wire_hello_req *h, void *arg)
{
    (void)h;
    (void)arg;
    srv_hellos++;
    srv_conn = c;
    return 0;
}
static void srv_on_close(struct conn *c, int err, void *arg)
{
    (void)err;
    (void)arg;
    srv_closed++;
    if (c == srv_conn) srv_conn = NULL;
}
static const struct conn_ops srv_ops = {
    .on_request = srv_on_request, .on_hello = srv_on_hello, .on_close = srv_on_close};

static void on_accept(int fd, void *arg)
{
    (void)arg;
    conn_accept(rx, fd, &srv_ops, NULL, &srv_opts);
}

static int cli_up, cli_closed, cli_err;
static void cli_on_up(struct conn *c, void *arg)
{
    (void)c;
    (void)arg;
    cli_up++;
}
static void cli_on_close(struct conn *c, int err, void *arg)
{
    (void)c;
    (void)arg;
    cli_closed++;
    cli_err = err;
}
static int cli_requests;
static void cli_on_request(struct conn *c, struct conn_frame *f, void *arg)
{
    (void)arg;
    cli_requests++;
    if (bulk_echo) echo(c, f);
    else conn_reply_error(c, &f->hdr, -ENOTSUP, 0, "client");
}
static const struct conn_ops cli_ops = {
    .on_request = cli_on_request, .on_up = cli_on_up, .on_close = cli_on_close};

static struct tls_ctx *srv_tls;

/* A server that is proxy 1 of cluster "test", over TLS unless PLAIN. */
static void server(bool plain)
{
    if (!rx) {
        rx = reactor_new();
        snprintf(dir, sizeof(dir), "%s", tap_tmpdir());
        char ca[300], ca2[300];
        snprintf(ca, sizeof(ca), "%s/ca", dir);
        snprintf(ca2, sizeof(ca2), "%s/foreign", dir);
        const char *a1[] = {"cert", "ca", "--dir", ca, "--cluster", "test", NULL};
        const char *a2[] = {"cert", "ca", "--dir", ca2, "--cluster", "test", NULL};
        if (cert(a1) != 0 || cert(a2) != 0) abort();
        issue("ca", "proxy", "1", "proxy-1", "0", "30");
        issue("ca", "proxy", "2", "proxy-2", "0", "30");
        issue("ca", "blob", "7", "blob-7", "0", "30");
        issue("ca", "agent", "hv-1", "agent-hv-1", "0", "30");
        issue("ca", "proxy", "3", "proxy-3-expired", "-10", "2");
        issue("foreign", "proxy", "2", "proxy-2-foreign", "0", "30");
        srv_tls = ctx_of("ca", "proxy-1", NULL);
        if (!srv_tls) abort();
    }
    if (lis) listener_free(lis);
    snprintf(addr, sizeof(addr), "unix:%s/s.sock", dir);
    if (listener_new(rx, addr, on_accept, NULL, &lis) < 0) abort();
    conn_auth_init(&srv_auth, "test", plain ? NULL : srv_tls, 1, WIRE_ROLE_PROXY, "srv");
    memset(&limits, 0, sizeof(limits));
    srv_opts = (struct conn_opts){.tag = "srv", .auth = &srv_auth, .hello_timeout_ms = 500,
                                  .limits = &limits};
    srv_hellos = srv_requests = srv_closed = 0;
    cli_up = cli_closed = cli_err = cli_requests = 0;
    bulk_echo = false;
    srv_conn = NULL;
}

/* Connect with the certificate NAME (NULL: plaintext) as ROLE/NODE_ID,
 * expecting to reach EXPECT_ROLE. */
static struct conn *client(const char *ca, const char *name, uint16_t role, uint64_t node_id,
                           uint16_t expect_role, struct conn_auth *auth, struct tls_ctx **tp)
{
    *tp = name ? ctx_of(ca, name, NULL) : NULL;
    conn_auth_init(auth, "test", *tp, node_id, role, "cli");
    struct conn_opts o = {.tag = "cli", .auth = auth, .expect_role = expect_role,
                          .connect_timeout_ms = 2000};
    int err = 0;
    return conn_connect(rx, addr, &cli_ops, NULL, &o, &err);
}

/* Wait for the client to be up, or closed. */
static void settle(void)
{
    int any = 0;
    for (int i = 0; i < 300 && !any; i++) {
        event_base_loop(reactor_base(rx), EVLOOP_ONCE | EVLOOP_NONBLOCK);
        any = cli_up || cli_closed;
        if (!any) usleep(10000);
    }
    /* let the server side finish too */
    for (int i = 0; i < 20; i++) event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
}

/* ---- identities ----------------------------------------------------------- */

TEST(identity_uri_round_trip)
{
    char buf[200];
    struct tls_identity id;
    CHECK(tls_identity_uri(buf, sizeof(buf), "prod-a", WIRE_ROLE_PROXY, "12") == 0);
    CHECK(strcmp(buf, "blockd://prod-a/proxy/12") == 0);
    CHECK(tls_identity_parse_uri(buf, strlen(buf), &id) == 0);
    CHECK_EQ(id.role, WIRE_ROLE_PROXY);
    CHECK_EQ(id.node_id, 12);
    CHECK(strcmp(id.cluster, "prod-a") == 0);
    CHECK(tls_identity_uri(buf, sizeof(buf), "c", WIRE_ROLE_AGENT, "Hv.07") == 0);
    CHECK(tls_identity_parse_uri(buf, strlen(buf), &id) == 0);
    CHECK(strcmp(id.id, "Hv.07") == 0);
    CHECK(tls_identity_uri(buf, sizeof(buf), "c", WIRE_ROLE_AGENT, "hv-07") == 0);
    CHECK(tls_identity_parse_uri(buf, strlen(buf), &id) == 0);
    CHECK(strcmp(id.id, "hv-07") == 0);
    CHECK_EQ(id.node_id, 0);
}

TEST(identity_uri_rejects)
{
    struct tls_identity id;
    const char *bad[] = {
        "blockd://c/proxy/x",       /* node ids are digits */
        "blockd://c/proxy/01",      /* no leading zero */
        "blockd://c/proxy/",        /* empty id */
        "blockd://c/wizard/1",      /* unknown role */
        "blockd:///proxy/1",        /* empty cluster */
        "blockd://C/proxy/1",       /* upper case cluster */
        "blockd://c/agent/a/b",     /* a slash in an id */
        "blockd://c/proxy/1/extra", /* trailing part */
        "https://c/proxy/1",        /* other scheme */
        "blockd://c/agent/a b",     /* space */
        "blockd://c/proxy/99999999999999999999", /* > u64 */
    };
    for (unsigned i = 0; i < BD_ARRAY_SIZE(bad); i++)
        CHECK(tls_identity_parse_uri(bad[i], strlen(bad[i]), &id) == -EINVAL);
    char buf[16];
    CHECK(tls_identity_uri(buf, sizeof(buf), "a-long-cluster", WIRE_ROLE_PROXY, "1") == -ENOSPC);
    CHECK(tls_identity_uri(buf, sizeof(buf), "c", 99, "1") == -EINVAL);
}

/* ---- the CA and contexts -------------------------------------------------- */

TEST(ca_refuses_to_overwrite)
{
    server(false);
    char ca[300];
    snprintf(ca, sizeof(ca), "%s/ca", dir);
    const char *a[] = {"cert", "ca", "--dir", ca, "--cluster", "test", NULL};
    CHECK(cert(a) == 1);
    struct stat st;
    char key[320];
    snprintf(key, sizeof(key), "%s/ca.key", ca);
    CHECK(stat(key, &st) == 0);
    CHECK_EQ(st.st_mode & 0777, 0600);
}

TEST(ctx_refuses_bad_files)
{
    server(false);
    int rc;
    CHECK(ctx_of("ca", "proxy-3-expired", &rc) == NULL); /* expired: start-up error */
    CHECK(rc == -EINVAL);
    CHECK(ctx_of("ca", "proxy-2-foreign", &rc) == NULL); /* another CA */
    CHECK(rc == -EINVAL);
    CHECK(ctx_of("ca", "missing", &rc) == NULL);
    CHECK(rc == -ENOENT);
    char key[320];
    snprintf(key, sizeof(key), "%s/proxy-2.key", dir);
    CHECK(chmod(key, 0640) == 0); /* group-readable key */
    CHECK(ctx_of("ca", "proxy-2", &rc) == NULL);
    CHECK(rc == -EPERM);
    CHECK(chmod(key, 0600) == 0);
    struct tls_ctx *t = ctx_of("ca", "proxy-2", &rc);
    CHECK(t != NULL);
    CHECK_EQ(tls_ctx_self(t)->node_id, 2);
    tls_ctx_free(t);
}

/* ---- authenticated connections -------------------------------------------- */

TEST(mutual_tls_identity_from_certificate)
{
    server(false);
    struct conn_auth a;
    struct tls_ctx *t;
    struct conn *c = client("ca", "proxy-2", WIRE_ROLE_PROXY, 2, WIRE_ROLE_PROXY, &a, &t);
    CHECK(c != NULL);
    settle();
    CHECK_EQ(cli_up, 1);
    CHECK_EQ(srv_hellos, 1);
    CHECK_EQ(conn_peer_role(c), WIRE_ROLE_PROXY);
    CHECK_EQ(conn_peer_id(c), 1);
    CHECK(conn_peer_identity(c) != NULL);
    conn_close(c, 0);
    settle();
    tls_ctx_free(t);
}

TEST(hello_must_match_certificate)
{
    server(false);
    struct conn_auth a;
    struct tls_ctx *t;
    /* An agent certificate claiming to be proxy 2 in HELLO. */
    struct conn *c = client("ca", "agent-hv-1", WIRE_ROLE_PROXY, 2, WIRE_ROLE_PROXY, &a, &t);
    CHECK(c != NULL);
    settle();
    CHECK_EQ(cli_up, 0);
    CHECK_EQ(cli_closed, 1);
    CHECK_EQ(srv_hellos, 0);
    CHECK_EQ(srv_requests, 0);
    tls_ctx_free(t);
}

TEST(client_checks_the_server_role)
{
    server(false);
    struct conn_auth a;
    struct tls_ctx *t;
    /* We meant to reach a blob server; proxy 1 answered. */
    struct conn *c = client("ca", "proxy-2", WIRE_ROLE_PROXY, 2, WIRE_ROLE_BLOB, &a, &t);
    CHECK(c != NULL);
    settle();
    CHECK_EQ(cli_up, 0);
    CHECK_EQ(cli_closed, 1);
    CHECK(cli_err == -EACCES);
    tls_ctx_free(t);
}

TEST(foreign_ca_and_expired_refused)
{
    server(false);
    /* A context that trusts our CA but presents a foreign certificate:
     * build it by hand (tls_ctx_new would refuse it at start-up). */
    char capem[300], crt[300], key[300], err[200];
    snprintf(capem, sizeof(capem), "%s/foreign/ca.pem", dir);
    snprintf(crt, sizeof(crt), "%s/proxy-2-foreign.pem", dir);
    snprintf(key, sizeof(key), "%s/proxy-2-foreign.key", dir);
    struct tls_files f = {.ca_file = capem, .cert_file = crt, .key_file = key};
    struct tls_ctx *t = NULL;
    CHECK(tls_ctx_new(&f, "test", &t, err, sizeof(err)) == 0);
    struct conn_auth a;
    conn_auth_init(&a, "test", t, 2, WIRE_ROLE_PROXY, "cli");
    struct conn_opts o = {.tag = "cli", .auth = &a, .connect_timeout_ms = 2000};
    int e;
    struct conn *c = conn_connect(rx, addr, &cli_ops, NULL, &o, &e);
    CHECK(c != NULL);
    settle();
    CHECK_EQ(cli_up, 0);
    CHECK_EQ(cli_closed, 1);
    CHECK_EQ(srv_hellos, 0);
    tls_ctx_free(t);
}

TEST(plaintext_to_tls_port_refused)
{
    server(false);
    struct conn_auth a;
    struct tls_ctx *t;
    struct conn *c = client("ca", NULL, WIRE_ROLE_PROXY, 2, 0, &a, &t);
    CHECK(c != NULL);
    settle();
    CHECK_EQ(cli_up, 0);
    CHECK_EQ(cli_closed, 1);
    CHECK_EQ(srv_hellos, 0);
}

TEST(tls_to_plaintext_port_refused)
{
    server(true);
    struct conn_auth a;
    struct tls_ctx *t;
    struct conn *c = client("ca", "proxy-2", WIRE_ROLE_PROXY, 2, 0, &a, &t);
    CHECK(c != NULL);
    settle();
    CHECK_EQ(cli_up, 0);
    CHECK_EQ(cli_closed, 1);
    CHECK_EQ(srv_hellos, 0);
    tls_ctx_free(t);
}

/* ---- the pre-authentication limits ---------------------------------------- */

static int raw_connect(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    util_strlcpy(un.sun_path, addr + 5, sizeof(un.sun_path));
    if (connect(fd, (struct sockaddr *)&un, sizeof(un)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Pump the reactor until FD reads EOF (true) or MS pass. */
static bool closed_within(int fd, int ms)
{
    uint64_t end = util_mono_ms() + (uint64_t)ms;
    char buf[4096];
    while (util_mono_ms() < end) {
        event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
        usleep(2000);
    }
    return false;
}

TEST(silent_socket_closed_at_the_deadline)
{
    server(false);
    int fd = raw_connect();
    CHECK(fd >= 0);
    uint64_t t0 = util_mono_ms();
    CHECK(closed_within(fd, 3000));
    CHECK(util_mono_ms() - t0 >= 400); /* the 500 ms deadline, not at once */
    close(fd);
    server(true);                      /* plaintext listeners too */
    fd = raw_connect();
    CHECK(closed_within(fd, 3000));
    close(fd);
}

TEST(response_before_hello_closes)
{
    server(true);
    int fd = raw_connect();
    CHECK(fd >= 0);
    struct wire_hdr h = {.version = WIRE_VERSION, .type = WIRE_PING, .flags = WIRE_F_RESPONSE,
                         .req_id = 1};
    uint8_t b[WIRE_HDR_LEN];
    wire_encode_hdr(b, &h, NULL, 0);
    CHECK(write(fd, b, sizeof(b)) == (ssize_t)sizeof(b));
    uint64_t t0 = util_mono_ms();
    CHECK(closed_within(fd, 3000));
    CHECK(util_mono_ms() - t0 < 400); /* at once, not at the deadline */
    close(fd);
}

TEST(preauth_buffer_is_small)
{
    server(true);
    int fd = raw_connect();
    CHECK(fd >= 0);
    /* Announce a 1 MiB frame before HELLO: the header alone is rejected
     * (HELLO first), and the server never buffers the body. */
    struct wire_hdr h = {.version = WIRE_VERSION, .type = WIRE_BLOB_PUT, .len = 1u << 20,
                         .payload_len = 1u << 20, .req_id = 1};
    uint8_t b[WIRE_HDR_LEN];
    wire_encode_hdr(b, &h, NULL, 0);
    CHECK(write(fd, b, sizeof(b)) == (ssize_t)sizeof(b));
    static uint8_t junk[64 << 10];
    for (int i = 0; i < 4; i++) (void)send(fd, junk, sizeof(junk), MSG_DONTWAIT | MSG_NOSIGNAL);
    CHECK(closed_within(fd, 3000));
    close(fd);
}

TEST(connection_limits)
{
    server(true);
    limits.max_conns = 3;
    limits.max_unauth = 2;
    int fds[4];
    for (int i = 0; i < 4; i++) fds[i] = raw_connect();
    /* The third and fourth are over the unauthenticated limit: closed at
     * once; the first two stay until their deadline. */
    CHECK(closed_within(fds[2], 300));
    CHECK(closed_within(fds[3], 300));
    CHECK(limits.refused >= 2);
    CHECK_EQ(limits.n_unauth, 2);
    for (int i = 0; i < 4; i++) close(fds[i]);
    for (int i = 0; i < 50 && limits.n_conns; i++) {
        event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
        usleep(2000);
    }
    CHECK_EQ(limits.n_conns, 0);
    CHECK_EQ(limits.n_unauth, 0);
    /* Authenticated connections count against max_conns only. */
    struct conn_auth a;
    struct tls_ctx *t;
    struct conn *c = client("ca", NULL, WIRE_ROLE_PROXY, 2, 0, &a, &t);
    settle();
    CHECK_EQ(cli_up, 1);
    CHECK_EQ(limits.n_conns, 1);
    CHECK_EQ(limits.n_unauth, 0);
    conn_close(c, 0);
    settle();
}

/* ---- bulk data: large frames both ways ------------------------------------ */

static void free_arg(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    free(arg);
}

/* Answer request F on C with its own fields and payload, the payload sent
 * from the received body by reference (as a blob server answers a read). */
static void echo(struct conn *c, struct conn_frame *f)
{
    size_t flen = f->hdr.len - f->hdr.payload_len;
    uint8_t *body = conn_frame_take(f);
    struct conn_payload pl = {.data = body + flen, .len = f->hdr.payload_len,
                              .release = free_arg, .arg = body};
    if (pl.len == 0) {
        conn_reply(c, &f->hdr, body, flen, NULL);
        free(body);
        return;
    }
    if (conn_reply(c, &f->hdr, body, flen, &pl) < 0) free(body);
}

struct echo_call {
    struct conn_call call;
    uint32_t idx;  /* sent in the fields, must come back in them */
    size_t len;
    uint64_t want; /* XXH3-64 of the payload sent */
    int done, err;
    bool same;     /* the answer carried the same fields and payload */
};

static void on_echo(struct conn_call *call, int err, struct conn_frame *f)
{
    struct echo_call *e = bd_container_of(call, struct echo_call, call);
    e->done = 1;
    e->err = err;
    if (err != 0) return;
    size_t flen = f->hdr.len - f->hdr.payload_len;
    uint32_t idx;
    memcpy(&idx, f->body, sizeof(idx));
    e->same = flen == 8 && idx == e->idx && f->hdr.payload_len == e->len &&
              util_xxh3(f->body + flen, e->len) == e->want;
}

/* Payload sizes, 1 KiB to 32 MiB: around a TLS record (16 KiB), a blob
 * write (1 MiB) and the largest frame the wire allows. */
static const size_t bulk_sizes[] = {1024,      4096,      16383,         16384,
                                    16385,     65536,     100000,        (256 << 10) + 7,
                                    1u << 20,  (1u << 20) + 40, 3u << 20, 8u << 20,
                                    32u << 20};
#define BULK_PASSES_MAX 4
#define BULK_N (BULK_PASSES_MAX * BD_ARRAY_SIZE(bulk_sizes))

/* Send PASSES x every size of bulk_sizes as echo requests on C, all at
 * once, alternately up and down the sizes: fresh random payloads, handed
 * over by reference.  Returns how many were sent (the rest of CALLS is
 * marked answered). */
static unsigned bulk_send(struct conn *c, struct echo_call *calls, unsigned passes, uint64_t *seed)
{
    const unsigned ns = BD_ARRAY_SIZE(bulk_sizes), n = passes * ns;
    for (uint32_t i = 0; i < BULK_N; i++) {
        if (i >= n) {
            calls[i] = (struct echo_call){.done = 1, .same = true};
            continue;
        }
        uint32_t k = (i / ns) % 2 ? ns - 1 - i % ns : i % ns;
        size_t len = bulk_sizes[k];
        uint8_t *p = malloc(len);
        if (!p) abort();
        uint64_t x = *seed;
        for (size_t o = 0; o + 8 <= len; o += 8) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            memcpy(p + o, &x, 8);
        }
        for (size_t o = len & ~(size_t)7; o < len; o++) p[o] = (uint8_t)(x >> (8 * (o & 7)));
        *seed = x;
        calls[i] = (struct echo_call){.call.cb = on_echo, .idx = i, .len = len,
                                      .want = util_xxh3(p, len)};
        uint8_t fields[8] = {0};
        memcpy(fields, &i, sizeof(i));
        struct conn_payload pl = {.data = p, .len = len, .release = free_arg, .arg = p};
        int rc = conn_call(c, &calls[i].call, WIRE_BLOB_PUT, fields, sizeof(fields), &pl, 60000);
        if (rc < 0) { /* reported with the answers */
            free(p);
            calls[i].done = 1;
            calls[i].err = rc;
        }
    }
    return n;
}

/* Frames of every size from 1 KiB to 32 MiB, UP_PASSES x the sizes sent by
 * the connecting side and DOWN_PASSES x by the accepting side, all in
 * flight at once, each echoed by the other end: every answer must carry
 * its own request's bytes, whole.  With TLS or without, with the default
 * limits: the queues pass out_high_water, so back-pressure must not stall
 * them.  A stall fails the test after 20 s without an answer. */
static void bulk_echo_test(bool plain, unsigned up_passes, unsigned down_passes)
{
    server(plain);
    /* Over TCP, the cluster's transport.  Addresses name a port: take one
     * the kernel picks free. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(in);
    if (fd < 0 || bind(fd, (struct sockaddr *)&in, sizeof(in)) < 0 ||
        getsockname(fd, (struct sockaddr *)&in, &len) < 0)
        abort();
    close(fd);
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(in.sin_port));
    listener_free(lis);
    if (listener_new(rx, addr, on_accept, NULL, &lis) < 0) abort();
    bulk_echo = true;
    struct conn_auth a;
    struct tls_ctx *t;
    struct conn *c = client("ca", plain ? NULL : "proxy-2", WIRE_ROLE_PROXY, 2, 0, &a, &t);
    CHECK(c != NULL);
    settle();
    CHECK_EQ(cli_up, 1);
    CHECK(srv_conn != NULL);
    static struct echo_call up[BULK_N], down[BULK_N];
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    unsigned sent_up = bulk_send(c, up, up_passes, &seed);
    unsigned sent_down = bulk_send(srv_conn, down, down_passes, &seed);
    unsigned done = 0, last = 0;
    uint64_t last_ms = util_mono_ms();
    while (done < 2 * BULK_N && util_mono_ms() - last_ms < 20000) {
        event_base_loop(reactor_base(rx), EVLOOP_ONCE);
        done = 0;
        for (unsigned i = 0; i < BULK_N; i++) done += (unsigned)(up[i].done + down[i].done);
        if (done != last) last = done, last_ms = util_mono_ms();
    }
    /* Counted before closing: the close fails what is still pending. */
    unsigned answered = done, bad = 0;
    int srv_reqs = srv_requests, cli_reqs = cli_requests, closed = cli_closed + srv_closed;
    conn_close(c, 0);
    settle();
    bulk_echo = false;
    if (t) tls_ctx_free(t);
    for (unsigned i = 0; i < BULK_N; i++) {
        struct echo_call *e[2] = {&up[i], &down[i]};
        for (int d = 0; d < 2; d++) {
            if (e[d]->done && e[d]->err == 0 && e[d]->same) continue;
            if (bad++ < 8)
                fprintf(stderr, "# %s frame %u (%zu bytes): %s\n",
                        d ? "server->client" : "client->server", i, e[d]->len,
                        !e[d]->done ? "no answer" : e[d]->err ? bd_strerror(e[d]->err)
                                                              : "bytes differ");
        }
    }
    CHECK_EQ(answered, 2 * BULK_N);
    CHECK_EQ(bad, 0);
    CHECK_EQ(srv_reqs, sent_up);
    CHECK_EQ(cli_reqs, sent_down);
    CHECK_EQ(closed, 0);
}

/* Both ends call each other: 2 x 46 MiB each way. */
TEST(bulk_frames_both_ways_tls_tcp)
{
    bulk_echo_test(false, 2, 2);
}

TEST(bulk_frames_both_ways_plaintext_tcp)
{
    bulk_echo_test(true, 2, 2);
}

/* A link's pattern: only the connecting side calls, 4 x 46 MiB, answers
 * as large as the requests. */
TEST(bulk_frames_one_way_tls_tcp)
{
    bulk_echo_test(false, 4, 0);
}

/* ---- HTTPS admin and the blocking client ---------------------------------- */

#include "net/admin.h"
#include "net/httpc.h"

#include <poll.h>
#include <pthread.h>

struct http_job {
    struct httpc_target t;
    const char *path;
    int rc, status;
    volatile int done;
};

static void *http_thread(void *arg)
{
    struct http_job *j = arg;
    struct httpc_resp r;
    j->rc = httpc_request(&j->t, "GET", j->path, NULL, &r);
    j->status = j->rc == 0 ? r.status : 0;
    if (j->rc == 0) httpc_resp_free(&r);
    j->done = 1;
    return NULL;
}

/* Run J on a thread while the reactor serves it. */
static void http_run(struct http_job *j)
{
    pthread_t th;
    j->done = 0;
    pthread_create(&th, NULL, http_thread, j);
    uint64_t end = util_mono_ms() + 10000;
    while (!j->done && util_mono_ms() < end) {
        event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
        usleep(500);
    }
    pthread_join(th, NULL);
}

static void on_vols(struct admin_req *r, void *arg)
{
    (void)arg;
    admin_reply_json(r, 200, cJSON_CreateObject());
}

TEST(https_admin_with_tokens_and_limits)
{
    server(false);
    struct admin *adm = NULL;
    int port;
    char a[64];
    struct admin_auth auth = {.tls = srv_tls, .admin_token = "admin-token-0123456789",
                              .read_token = "read-token-0123456789", .max_conns = 2};
    for (port = 21000 + (getpid() % 4000);; port++) {
        snprintf(a, sizeof(a), "127.0.0.1:%d", port);
        if (admin_new(rx, a, "adm", &auth, &adm) == 0) break;
    }
    CHECK(admin_route(adm, "GET", "/v1/volumes", ADMIN_READ, on_vols, NULL) == 0);
    char ca[300];
    snprintf(ca, sizeof(ca), "%s/ca/ca.pem", dir);
    struct http_job j = {.t = {.addr = a, .ca_file = ca, .expect_role = WIRE_ROLE_PROXY,
                               .timeout_ms = 3000},
                         .path = "/healthz"};
    http_run(&j);
    CHECK_EQ(j.rc, 0);
    CHECK_EQ(j.status, 200);
    j.path = "/v1/volumes";
    http_run(&j);
    CHECK_EQ(j.status, 401);
    j.t.token = "read-token-0123456789";
    http_run(&j);
    CHECK_EQ(j.status, 200);
    /* The server is a proxy; a client that wants a blob server refuses it. */
    j.t.expect_role = WIRE_ROLE_BLOB;
    http_run(&j);
    CHECK(j.rc == -EACCES);
    /* A client trusting another CA refuses the server. */
    char foreign[300];
    snprintf(foreign, sizeof(foreign), "%s/foreign/ca.pem", dir);
    j.t.expect_role = 0;
    j.t.ca_file = foreign;
    http_run(&j);
    CHECK(j.rc == -EACCES);
    /* Plain HTTP to the HTTPS port gets no answer. */
    j.t.ca_file = NULL;
    http_run(&j);
    CHECK(j.rc != 0 || j.status != 200);
    /* Two idle TCP connections fill the limit: a third is refused in its
     * handshake; closing one frees its slot. */
    int fds[2];
    for (int i = 0; i < 2; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(connect(fds[i], (struct sockaddr *)&sin, sizeof(sin)) == 0);
    }
    for (int i = 0; i < 50; i++) {
        event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
        usleep(1000);
    }
    j.t.ca_file = ca;
    j.path = "/healthz";
    http_run(&j);
    CHECK(j.rc == -EACCES);
    close(fds[0]);
    close(fds[1]);
    for (int i = 0; i < 100; i++) {
        event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
        usleep(1000);
    }
    http_run(&j);
    CHECK_EQ(j.rc, 0);
    CHECK_EQ(j.status, 200);
    admin_free(adm);
}

/* ---- a replayed handshake --------------------------------------------------- */

/* A relay between a client and the server that records what the client
 * sent; then the recording is played to the server on a new connection.
 * TLS 1.3's fresh server randoms make the old Finished worthless: the
 * replay must never get a HELLO through. */
struct relay {
    char path[300];            /* where the relay listens */
    int lfd;
    uint8_t rec[65536];        /* client -> server bytes */
    size_t rec_len;
    volatile int done;
};

static void *relay_thread(void *arg)
{
    struct relay *rl = arg;
    int c = accept(rl->lfd, NULL, NULL);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    util_strlcpy(un.sun_path, addr + 5, sizeof(un.sun_path));
    if (c >= 0 && connect(s, (struct sockaddr *)&un, sizeof(un)) == 0) {
        struct pollfd p[2] = {{c, POLLIN, 0}, {s, POLLIN, 0}};
        uint8_t buf[16384];
        for (;;) {
            if (poll(p, 2, 5000) <= 0) break;
            if (p[0].revents) {
                ssize_t n = read(c, buf, sizeof(buf));
                if (n <= 0) break;
                if (rl->rec_len + (size_t)n <= sizeof(rl->rec)) {
                    memcpy(rl->rec + rl->rec_len, buf, (size_t)n);
                    rl->rec_len += (size_t)n;
                }
                if (write(s, buf, (size_t)n) != n) break;
            }
            if (p[1].revents) {
                ssize_t n = read(s, buf, sizeof(buf));
                if (n <= 0 || write(c, buf, (size_t)n) != n) break;
            }
        }
    }
    if (c >= 0) close(c);
    close(s);
    rl->done = 1;
    return NULL;
}

struct replay {
    const uint8_t *bytes;
    size_t len;
    volatile int closed;       /* 1: the server closed on us */
    volatile int done;
};

static void *replay_thread(void *arg)
{
    struct replay *rp = arg;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    util_strlcpy(un.sun_path, addr + 5, sizeof(un.sun_path));
    if (connect(fd, (struct sockaddr *)&un, sizeof(un)) == 0) {
        (void)send(fd, rp->bytes, rp->len, MSG_NOSIGNAL);
        uint8_t buf[4096];
        struct pollfd p = {fd, POLLIN, 0};
        for (;;) {
            if (poll(&p, 1, 5000) <= 0) break;
            ssize_t n = read(fd, buf, sizeof(buf));
            if (n <= 0) {
                rp->closed = 1;
                break;
            }
        }
    }
    close(fd);
    rp->done = 1;
    return NULL;
}

TEST(replayed_handshake_refused)
{
    server(false);
    static struct relay rl;
    memset(&rl, 0, sizeof(rl));
    snprintf(rl.path, sizeof(rl.path), "%s/relay.sock", dir);
    rl.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    util_strlcpy(un.sun_path, rl.path, sizeof(un.sun_path));
    CHECK(bind(rl.lfd, (struct sockaddr *)&un, sizeof(un)) == 0 && listen(rl.lfd, 4) == 0);
    pthread_t th;
    pthread_create(&th, NULL, relay_thread, &rl);
    /* A genuine session through the relay: proxy 2 says HELLO and is up. */
    struct tls_ctx *t = ctx_of("ca", "proxy-2", NULL);
    struct conn_auth a;
    conn_auth_init(&a, "test", t, 2, WIRE_ROLE_PROXY, "cli");
    struct conn_opts o = {.tag = "cli", .auth = &a, .connect_timeout_ms = 3000};
    char raddr[320];
    snprintf(raddr, sizeof(raddr), "unix:%s", rl.path);
    int e;
    struct conn *c = conn_connect(rx, raddr, &cli_ops, NULL, &o, &e);
    CHECK(c != NULL);
    settle();
    CHECK_EQ(cli_up, 1);
    CHECK_EQ(srv_hellos, 1);
    conn_close(c, 0);
    for (int i = 0; i < 500 && !rl.done; i++) {
        event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
        usleep(2000);
    }
    pthread_join(th, NULL);
    close(rl.lfd);
    CHECK(rl.rec_len > 100);
    /* The recording, replayed: refused, HELLO never reaches the owner. */
    static struct replay rp;
    rp = (struct replay){.bytes = rl.rec, .len = rl.rec_len};
    pthread_create(&th, NULL, replay_thread, &rp);
    for (int i = 0; i < 3000 && !rp.done; i++) {
        event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
        usleep(2000);
    }
    pthread_join(th, NULL);
    CHECK(rp.closed);
    CHECK_EQ(srv_hellos, 1);
    tls_ctx_free(t);
}
