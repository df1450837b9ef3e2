/* test_conn.c: framed connections (src/net/conn.c) over a real Unix socket.
 *
 * Fixture: one reactor, a listener on a socket in a temp dir whose accepted
 * connections become server conns driven by `srv_*` below, and client conns
 * made with conn_connect.  Raw sockets play hostile peers.  Every wait is
 * bounded by a testlib_run_until_flag() deadline. */
#include "base/bd.h"
#include "net/conn.h"
#include "net/link.h"
#include "net/listener.h"
#include "runtime/reactor.h"
#include "tap.h"
#include "testlib.h"
#include "base/util.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- Fixture -------------------------------------------------------------- */

static struct reactor *rx;
static struct listener *lis;
static char addr[256];
static struct conn_auth auth_a, auth_other;
static struct conn_opts srv_opts, cli_opts;

/* Server behaviour knobs, reset per test. */
static bool srv_hold;                 /* keep requests instead of replying */
static struct {
    struct conn *c;
    struct wire_hdr hdr;
} held[512];
static int n_held;
static int srv_requests;
static int srv_closed;
static struct conn *last_srv;

static void srv_on_request(struct conn *c, struct conn_frame *f, void *arg)
{
    (void)arg;
    srv_requests++;
    if (srv_hold) {
        held[n_held].c = c;
        held[n_held].hdr = f->hdr;
        n_held++;
        return;
    }
    if (f->hdr.type == WIRE_VOL_READ) {
        struct wire_vol_read_req rq;
        if (wire_decode_vol_read_req(f->body, f->hdr.len, f->hdr.payload_len, &rq) < 0) {
            conn_reply_error(c, &f->hdr, -EINVAL, 0, "bad read");
            return;
        }
        static uint8_t data[65536];
        memset(data, (int)(rq.off & 0xff), rq.len);
        struct wire_vol_read_resp r = {.csum = util_xxh3(data, rq.len), .data_len = rq.len};
        uint8_t buf[64];
        int n = wire_encode_vol_read_resp(buf, sizeof(buf), &r);
        struct conn_payload p = {.data = data, .len = rq.len};
        conn_reply(c, &f->hdr, buf, (size_t)n, &p);
        return;
    }
    conn_reply_error(c, &f->hdr, -ENOTSUP, 0, "not here");
}

static void srv_on_close(struct conn *c, int err, void *arg)
{
    (void)c;
    (void)err;
    (void)arg;
    srv_closed++;
}

static const struct conn_ops srv_ops = {.on_request = srv_on_request, .on_close = srv_on_close};

static void on_accept(int fd, void *arg)
{
    (void)arg;
    last_srv = conn_accept(rx, fd, &srv_ops, NULL, &srv_opts);
}

static int cli_up, cli_closed, cli_close_err;
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
    cli_close_err = err;
}
static void cli_on_request(struct conn *c, struct conn_frame *f, void *arg)
{
    (void)arg;
    conn_reply_error(c, &f->hdr, -ENOTSUP, 0, "client");
}
static const struct conn_ops cli_ops = {
    .on_request = cli_on_request, .on_up = cli_on_up, .on_close = cli_on_close};

static void fixture(void)
{
    if (!rx) {
        rx = reactor_new();
        conn_auth_init(&auth_a, "cluster-a", NULL, 1, WIRE_ROLE_PROXY, "a");
        conn_auth_init(&auth_other, "cluster-b", NULL, 2, WIRE_ROLE_PROXY, "b");
    }
    if (lis) listener_free(lis);
    snprintf(addr, sizeof(addr), "unix:%s/s.sock", tap_tmpdir());
    if (listener_new(rx, addr, on_accept, NULL, &lis) < 0) abort();
    srv_opts = (struct conn_opts){.tag = "srv", .auth = &auth_a, .frame_timeout_ms = 500};
    cli_opts = (struct conn_opts){.tag = "cli", .auth = &auth_a, .frame_timeout_ms = 500};
    srv_hold = false;
    n_held = srv_requests = srv_closed = 0;
    cli_up = cli_closed = cli_close_err = 0;
    last_srv = NULL;
}

static struct conn *connect_up(void)
{
    int err = 0;
    struct conn *c = conn_connect(rx, addr, &cli_ops, NULL, &cli_opts, &err);
    if (!c) return NULL;
    if (!testlib_run_until_flag(rx, &cli_up, 2000)) return NULL;
    return c;
}

/* A raw socket to the listener, for hostile peers. */
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

/* Pump the reactor until FD has bytes or EOF; returns read()'s result. */
static ssize_t raw_read(int fd, void *buf, size_t len, int ms)
{
    uint64_t end = util_mono_ms() + (uint64_t)ms;
    while (util_mono_ms() < end) {
        event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
        ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
        if (n >= 0) return n;
        usleep(1000);
    }
    return -2;
}

/* ---- Helpers -------------------------------------------------------------- */

struct waiter {
    struct conn_call call;
    int done;
    int err;
    uint64_t value;
};

static void on_reply(struct conn_call *call, int err, struct conn_frame *f)
{
    struct waiter *w = bd_container_of(call, struct waiter, call);
    w->done = 1;
    w->err = err;
    if (err == 0 && f && f->hdr.type == WIRE_PING) {
        struct wire_ping_resp r;
        if (wire_decode_ping_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) == 0)
            w->value = r.stamp;
    }
    if (err == 0 && f && f->hdr.type == WIRE_VOL_READ) {
        struct wire_vol_read_resp r;
        if (wire_decode_vol_read_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) == 0 &&
            r.csum == util_xxh3(r.data, r.data_len))
            w->value = r.data_len;
    }
}

static int ping(struct conn *c, struct waiter *w, uint64_t stamp, uint32_t timeout_ms)
{
    memset(w, 0, sizeof(*w));
    w->call.cb = on_reply;
    struct wire_ping_req p = {.stamp = stamp};
    uint8_t buf[16];
    int n = wire_encode_ping_req(buf, sizeof(buf), &p);
    return conn_call(c, &w->call, WIRE_PING, buf, (size_t)n, NULL, timeout_ms);
}

static int read_call(struct conn *c, struct waiter *w, uint64_t off, uint32_t len)
{
    memset(w, 0, sizeof(*w));
    w->call.cb = on_reply;
    struct wire_vol_read_req r = {.vol_id = 1, .off = off, .len = len};
    uint8_t buf[64];
    int n = wire_encode_vol_read_req(buf, sizeof(buf), &r);
    return conn_call(c, &w->call, WIRE_VOL_READ, buf, (size_t)n, NULL, 2000);
}

/* ---- Handshake and calls -------------------------------------------------- */

/* HELLO completes and a PING round-trips with its stamp. */
TEST(hello_and_ping)
{
    fixture();
    struct conn *c = connect_up();
    CHECK(c);
    CHECK(conn_is_up(c));
    struct waiter w;
    CHECK_EQ(ping(c, &w, 4242, 2000), 0);
    CHECK(testlib_run_until_flag(rx, &w.done, 2000));
    CHECK_EQ(w.err, 0);
    CHECK_EQ(w.value, 4242);
    conn_close(c, 0);
    CHECK(testlib_run_until_flag(rx, &srv_closed, 2000));
}

/* A request with a payload gets a response with a payload that verifies. */
TEST(payload_round_trip)
{
    fixture();
    struct conn *c = connect_up();
    CHECK(c);
    struct waiter w[8];
    for (int i = 0; i < 8; i++) CHECK_EQ(read_call(c, &w[i], (uint64_t)i * 4096, 65536), 0);
    for (int i = 0; i < 8; i++) {
        CHECK(testlib_run_until_flag(rx, &w[i].done, 2000));
        CHECK_EQ(w[i].err, 0);
        CHECK_EQ(w[i].value, 65536);
    }
    conn_close(c, 0);
}

/* An unknown message type gets ENOTSUP and the connection stays usable. */
TEST(unknown_type_not_fatal)
{
    fixture();
    struct conn *c = connect_up();
    CHECK(c);
    struct waiter w = {.call.cb = on_reply};
    uint8_t body[4] = {1, 2, 3, 4};
    CHECK_EQ(conn_call(c, &w.call, 999, body, 4, NULL, 2000), 0);
    CHECK(testlib_run_until_flag(rx, &w.done, 2000));
    CHECK_EQ(w.err, (unsigned long long)-ENOTSUP);
    CHECK_EQ(ping(c, &w, 1, 2000), 0);
    CHECK(testlib_run_until_flag(rx, &w.done, 2000));
    CHECK_EQ(w.err, 0);
    conn_close(c, 0);
}

/* A peer from another cluster is refused at HELLO, and told why. */
TEST(wrong_cluster_refused)
{
    fixture();
    cli_opts.auth = &auth_other;
    int err = 0;
    struct conn *c = conn_connect(rx, addr, &cli_ops, NULL, &cli_opts, &err);
    CHECK(c);
    CHECK(testlib_run_until_flag(rx, &cli_closed, 2000));
    CHECK_EQ(cli_up, 0);
    CHECK_EQ(cli_close_err, (unsigned long long)-EACCES);
}

/* A call nobody answers times out; the late answer is then dropped. */
TEST(call_timeout_and_late_reply)
{
    fixture();
    srv_hold = true;
    struct conn *c = connect_up();
    CHECK(c);
    struct waiter w;
    CHECK_EQ(read_call(c, &w, 0, 16), 0);
    w.call.deadline_ms = util_mono_ms() + 300; /* shorten the 2 s timeout */
    CHECK(testlib_run_until_flag(rx, &w.done, 2000));
    CHECK_EQ(w.err, (unsigned long long)-ETIMEDOUT);
    CHECK_EQ(n_held, 1);
    conn_reply_error(held[0].c, &held[0].hdr, -EIO, 0, "late");
    struct waiter w2;
    CHECK_EQ(ping(c, &w2, 7, 2000), 0); /* the stream is still in sync */
    CHECK(testlib_run_until_flag(rx, &w2.done, 2000));
    CHECK_EQ(w2.err, 0);
    CHECK_EQ(w2.value, 7);
    conn_close(c, 0);
}

/* Closing fails every pending call exactly once. */
TEST(close_fails_pending)
{
    fixture();
    srv_hold = true;
    struct conn *c = connect_up();
    CHECK(c);
    struct waiter w[5];
    for (int i = 0; i < 5; i++) CHECK_EQ(read_call(c, &w[i], 0, 16), 0);
    CHECK(testlib_run_until_flag(rx, &n_held, 2000));
    conn_close(c, -ESHUTDOWN);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(w[i].done, 1);
        CHECK_EQ(w[i].err, (unsigned long long)-ESHUTDOWN);
    }
    CHECK(testlib_run_until_flag(rx, &srv_closed, 2000));
    /* Replies to requests of a closed conn are harmless no-ops. */
    for (int i = 0; i < n_held; i++) conn_reply_error(held[i].c, &held[i].hdr, -EIO, 0, "gone");
}

/* ---- Hostile peers -------------------------------------------------------- */

/* Bad magic closes the connection. */
TEST(bad_magic_closes)
{
    fixture();
    int fd = raw_connect();
    CHECK(fd >= 0);
    uint8_t junk[WIRE_HDR_LEN];
    memset(junk, 'x', sizeof(junk));
    CHECK(write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk));
    uint8_t buf[256];
    CHECK_EQ(raw_read(fd, buf, sizeof(buf), 2000), 0);
    close(fd);
}

/* Any request before HELLO gets EAUTH and a close. */
TEST(request_before_hello)
{
    fixture();
    int fd = raw_connect();
    CHECK(fd >= 0);
    struct wire_ping_req p = {.stamp = 1};
    uint8_t fields[16], frame[WIRE_HDR_LEN + 16];
    int n = wire_encode_ping_req(fields, sizeof(fields), &p);
    struct wire_hdr h = {.type = WIRE_PING, .len = (uint32_t)n, .req_id = 1};
    wire_encode_hdr(frame, &h, fields, (size_t)n);
    memcpy(frame + WIRE_HDR_LEN, fields, (size_t)n);
    CHECK(write(fd, frame, WIRE_HDR_LEN + (size_t)n) == WIRE_HDR_LEN + n);
    uint8_t buf[512];
    ssize_t got = raw_read(fd, buf, sizeof(buf), 2000);
    CHECK(got >= WIRE_HDR_LEN);
    struct wire_hdr r;
    CHECK_EQ(wire_decode_hdr(buf, &r), 0);
    CHECK_EQ(r.status, WIRE_EAUTH);
    CHECK_EQ(raw_read(fd, buf, sizeof(buf), 2000), 0);
    close(fd);
}

/* A frame that announces more bytes than it sends is closed after the
 * frame timeout; a connection that never says HELLO likewise. */
TEST(stalled_frame_closed)
{
    fixture();
    int fd = raw_connect();
    CHECK(fd >= 0);
    uint8_t hdr[WIRE_HDR_LEN];
    struct wire_hdr h = {.type = WIRE_HELLO, .len = 1000, .req_id = 1};
    uint8_t fields[1000] = {0};
    wire_encode_hdr(hdr, &h, fields, 1000);
    CHECK(write(fd, hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr));
    CHECK(write(fd, fields, 10) == 10);
    uint64_t t0 = util_mono_ms();
    uint8_t buf[64];
    CHECK_EQ(raw_read(fd, buf, sizeof(buf), 3000), 0);
    CHECK(util_mono_ms() - t0 >= 400);
    close(fd);
    int fd2 = raw_connect();
    CHECK(fd2 >= 0);
    CHECK_EQ(raw_read(fd2, buf, sizeof(buf), 3000), 0);
    close(fd2);
}

/* An oversized length is refused from the header alone. */
TEST(oversize_frame_closed)
{
    fixture();
    int fd = raw_connect();
    CHECK(fd >= 0);
    uint8_t hdr[WIRE_HDR_LEN];
    struct wire_hdr h = {.type = WIRE_HELLO, .len = WIRE_MAX_FRAME + 1, .req_id = 1};
    wire_encode_hdr(hdr, &h, "", 0);
    CHECK(write(fd, hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr));
    uint8_t buf[64];
    CHECK_EQ(raw_read(fd, buf, sizeof(buf), 2000), 0);
    close(fd);
}

/* ---- Back-pressure -------------------------------------------------------- */

/* A server with max_inflight N sees at most N unanswered requests; answering
 * lets the rest through, in order. */
TEST(inflight_limit)
{
    fixture();
    srv_hold = true;
    srv_opts.max_inflight = 4;
    struct conn *c = connect_up();
    CHECK(c);
    static struct waiter w[64];
    for (int i = 0; i < 64; i++) CHECK_EQ(read_call(c, &w[i], (uint64_t)i, 16), 0);
    int four = 4;
    int got = 0;
    uint64_t end = util_mono_ms() + 500;
    while (util_mono_ms() < end) event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
    got = n_held;
    CHECK_EQ(got, four);
    srv_hold = false;
    /* Answer the held ones; the rest flow and are answered directly. */
    for (int i = 0; i < 4; i++) conn_reply_error(held[i].c, &held[i].hdr, -EIO, 0, "x");
    int all = 0;
    end = util_mono_ms() + 3000;
    while (!all && util_mono_ms() < end) {
        event_base_loop(reactor_base(rx), EVLOOP_ONCE | EVLOOP_NONBLOCK);
        all = 1;
        for (int i = 0; i < 64; i++)
            if (!w[i].done) all = 0;
    }
    CHECK(all);
    for (int i = 4; i < 64; i++) CHECK_EQ(w[i].err, 0);
    conn_close(c, 0);
}

/* ---- Links ---------------------------------------------------------------- */

static int link_ups, link_downs;
static void l_up(struct link *l, void *arg)
{
    (void)l;
    (void)arg;
    link_ups++;
}
static void l_down(struct link *l, int err, void *arg)
{
    (void)l;
    (void)err;
    (void)arg;
    link_downs++;
}
static const struct link_ops lops = {.on_up = l_up, .on_down = l_down};

/* A link comes up, fails calls fast while its peer is gone, and reconnects
 * by itself when the peer returns. */
TEST(link_reconnects)
{
    fixture();
    link_ups = link_downs = 0;
    struct link *l = link_new(rx, addr, &cli_opts, &lops, NULL);
    CHECK(l);
    CHECK(testlib_run_until_flag(rx, &link_ups, 2000));
    struct waiter w;
    memset(&w, 0, sizeof(w));
    w.call.cb = on_reply;
    struct wire_ping_req p = {.stamp = 5};
    uint8_t buf[16];
    int n = wire_encode_ping_req(buf, sizeof(buf), &p);
    CHECK_EQ(link_call(l, &w.call, WIRE_PING, buf, (size_t)n, NULL, 2000), 0);
    CHECK(testlib_run_until_flag(rx, &w.done, 2000));
    CHECK_EQ(w.value, 5);
    /* Take the server away: the link goes down and calls fail at once. */
    listener_free(lis);
    lis = NULL;
    CHECK(last_srv);
    conn_close(last_srv, 0);
    CHECK(testlib_run_until_flag(rx, &link_downs, 2000));
    CHECK(!link_is_up(l));
    CHECK_EQ(link_call(l, &w.call, WIRE_PING, buf, (size_t)n, NULL, 2000),
             (unsigned long long)-ENOTCONN);
    /* Bring it back: the link reconnects without being asked. */
    CHECK_EQ(listener_new(rx, addr, on_accept, NULL, &lis), 0);
    int ups_before = link_ups;
    int target = ups_before + 1;
    uint64_t end = util_mono_ms() + 5000;
    while (link_ups < target && util_mono_ms() < end)
        event_base_loop(reactor_base(rx), EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
    CHECK(link_is_up(l));
    link_free(l);
}
