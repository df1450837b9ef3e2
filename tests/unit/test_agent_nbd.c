/* test_agent_nbd.c: the NBD server (src/roles/agent_nbd*.c) driven in
 * process: a raw client on one end of a socketpair, the server on the
 * other (agent_nbd_adopt), the in-memory volume back end behind it, one
 * reactor pumped by the helpers below.  Covers what the protocol tests
 * over TCP cannot see from outside: what reached the volume layer, slot
 * and memory bounds, deadlines and eviction, stop and drain.  Defends C8,
 * C17 and the "no volume before GO" rule (CVE-2019-14850).
 *
 * Every wait is bounded (pump_until's deadline).  Every test ends by
 * checking the back end saw no violation of agent_vol.h. */
#include "agent_vol_mem.h"
#include "bd.h"
#include "log.h"
#include "net/metrics.h"
#include "net/nbd.h"
#include "net/reactor.h"
#include "roles/agent_nbd.h"
#include "tap.h"
#include "util.h"

#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- Fixture ---------------------------------------------------------------------- */

#define VOL_SIZE (8u << 20)

static struct reactor *rx;
static struct agent_vols *vols;
static struct agent_nbd *srv;

static void pump_ms(int ms);

/* A fresh server and registry; the previous ones are let finish first. */
static void fixture(const struct agent_nbd_opts *o)
{
    if (srv) pump_ms(30);
    if (srv) agent_nbd_free(srv);
    if (srv) pump_ms(10);
    if (vols) agent_vols_free(vols);
    if (!rx) rx = reactor_new();
    log_set_level(LOG_ERROR);
    vols = agent_vol_mem_new(rx);
    agent_vol_mem_add(vols, "vol0", VOL_SIZE, false);
    agent_vol_mem_add(vols, "ro0", 1u << 20, true);
    struct agent_nbd_opts def = {.tag = "test", .handshake_timeout_ms = 5000};
    char err[128];
    if (agent_nbd_new(rx, vols, o ? o : &def, &srv, err, sizeof(err)) < 0) abort();
}

/* ---- Helpers: pumping and raw I/O ----------------------------------------------------- */

static void pump(void)
{
    event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
}

static int cli_new(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) abort();
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    if (agent_nbd_adopt(srv, sv[1]) < 0) {
        close(sv[0]);
        return -1;
    }
    return sv[0];
}

static bool cli_send(int fd, const void *p, size_t len)
{
    const uint8_t *b = p;
    uint64_t end = util_mono_ms() + 3000;
    while (len && util_mono_ms() < end) {
        ssize_t n = send(fd, b, len, MSG_NOSIGNAL);
        if (n > 0) {
            b += n;
            len -= (size_t)n;
        } else {
            pump();
            usleep(100);
        }
    }
    pump();
    return len == 0;
}

/* Read exactly LEN bytes: 0, or -1 on EOF or after MS. */
static int cli_recv_ms(int fd, void *p, size_t len, int ms)
{
    uint8_t *b = p;
    uint64_t end = util_mono_ms() + (uint64_t)ms;
    while (len) {
        ssize_t n = recv(fd, b, len, 0);
        if (n == 0) return -1;
        if (n > 0) {
            b += n;
            len -= (size_t)n;
            continue;
        }
        if (util_mono_ms() >= end) return -1;
        pump();
        usleep(50);
    }
    return 0;
}

static int cli_recv(int fd, void *p, size_t len)
{
    return cli_recv_ms(fd, p, len, 3000);
}

/* True if the server closed the connection within MS. */
static bool cli_eof(int fd, int ms)
{
    uint8_t b[4096];
    uint64_t end = util_mono_ms() + (uint64_t)ms;
    while (util_mono_ms() < end) {
        ssize_t n = recv(fd, b, sizeof(b), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
        if (n < 0) {
            pump();
            usleep(200);
        }
    }
    return false;
}

static void pump_ms(int ms)
{
    uint64_t end = util_mono_ms() + (uint64_t)ms;
    while (util_mono_ms() < end) {
        pump();
        usleep(200);
    }
}

/* ---- Helpers: protocol ----------------------------------------------------------------- */

static bool send_opt(int fd, uint32_t opt, const void *p, uint32_t len)
{
    uint8_t h[NBD_OPT_HDR_LEN];
    nbd_encode_opt_hdr(h, sizeof(h), opt, len);
    return cli_send(fd, h, sizeof(h)) && (len == 0 || cli_send(fd, p, len));
}

/* Read one option reply; payload (up to CAP) into P.  Reply type or 0. */
static uint32_t recv_reply(int fd, uint8_t *p, size_t cap, uint32_t *len)
{
    uint8_t h[NBD_OPT_REPLY_HDR_LEN];
    struct nbd_opt_reply r;
    if (cli_recv(fd, h, sizeof(h)) < 0 || nbd_decode_opt_reply_hdr(h, sizeof(h), &r) <= 0)
        return 0;
    if (r.len > cap || (r.len && cli_recv(fd, p, r.len) < 0)) return 0;
    if (len) *len = r.len;
    return r.type;
}

/* Greeting and client flags. */
static int cli_start(void)
{
    int fd = cli_new();
    uint8_t g[NBD_GREETING_LEN];
    uint16_t hf;
    if (fd < 0 || cli_recv(fd, g, sizeof(g)) < 0 || nbd_decode_greeting(g, sizeof(g), &hf) <= 0)
        return -1;
    uint8_t f[4];
    nbd_encode_client_flags(f, 4, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    cli_send(fd, f, 4);
    return fd;
}

/* Run GO on NAME; the final reply type (ACK on success); *SIZE, *FLAGS. */
static uint32_t cli_go(int fd, uint32_t opt, const char *name, uint64_t *size, uint16_t *tflags)
{
    static uint8_t b[5000];
    uint16_t info[] = {NBD_INFO_BLOCK_SIZE};
    int n = nbd_encode_opt_go(b, sizeof(b), name, (uint32_t)strlen(name), info, 1);
    send_opt(fd, opt, b, (uint32_t)n);
    for (;;) {
        uint8_t p[1200];
        uint32_t len;
        uint32_t t = recv_reply(fd, p, sizeof(p), &len);
        if (t != NBD_REP_INFO) return t;
        struct nbd_info in;
        if (nbd_decode_rep_info(p, len, &in) == 0 && in.type == NBD_INFO_EXPORT) {
            if (size) *size = in.size;
            if (tflags) *tflags = in.tflags;
        }
    }
}

/* Negotiate: structured replies and base:allocation if STRUCTURED, then GO. */
static int cli_open(const char *name, bool structured)
{
    int fd = cli_start();
    uint8_t p[256];
    if (structured) {
        send_opt(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
        if (recv_reply(fd, p, sizeof(p), NULL) != NBD_REP_ACK) return -1;
        const char *q[] = {"base:allocation"};
        int n = nbd_encode_opt_meta(p, sizeof(p), name, (uint32_t)strlen(name), q, 1);
        send_opt(fd, NBD_OPT_SET_META_CONTEXT, p, (uint32_t)n);
        if (recv_reply(fd, p, sizeof(p), NULL) != NBD_REP_META_CONTEXT) return -1;
        if (recv_reply(fd, p, sizeof(p), NULL) != NBD_REP_ACK) return -1;
    }
    if (cli_go(fd, NBD_OPT_GO, name, NULL, NULL) != NBD_REP_ACK) return -1;
    return fd;
}

static bool send_req(int fd, uint16_t type, uint16_t flags, uint64_t cookie, uint64_t off,
                     uint32_t len, const void *data)
{
    struct nbd_request r = {.type = type, .flags = flags, .cookie = cookie, .off = off, .len = len};
    uint8_t h[NBD_REQUEST_LEN];
    nbd_encode_request(h, sizeof(h), &r);
    return cli_send(fd, h, sizeof(h)) && (!data || !len || cli_send(fd, data, len));
}

/* A simple reply: its error, or -1.  READ data of LEN bytes into DATA. */
static int64_t recv_simple(int fd, uint64_t *cookie, void *data, uint32_t len)
{
    uint8_t h[NBD_SIMPLE_REPLY_LEN];
    uint32_t err;
    uint64_t ck;
    if (cli_recv(fd, h, sizeof(h)) < 0 || nbd_decode_simple_reply(h, sizeof(h), &err, &ck) <= 0)
        return -1;
    if (cookie) *cookie = ck;
    if (err == 0 && data && len && cli_recv(fd, data, len) < 0) return -1;
    return err;
}

/* Read one structured chunk; payload into P (CAP).  Chunk type, or -1;
 * a simple reply in its place is -2. */
static int recv_chunk(int fd, struct nbd_chunk *c, uint8_t *p, size_t cap)
{
    uint8_t h[NBD_CHUNK_HDR_LEN];
    if (cli_recv(fd, h, 4) < 0) return -1;
    if (util_get_be32(h) == NBD_SIMPLE_REPLY_MAGIC) {
        cli_recv(fd, h + 4, 12);
        c->cookie = util_get_be64(h + 8);
        c->len = util_get_be32(h + 4);
        return -2;
    }
    if (cli_recv(fd, h + 4, sizeof(h) - 4) < 0 || nbd_decode_chunk_hdr(h, sizeof(h), c) <= 0)
        return -1;
    if (c->len > cap || (c->len && cli_recv(fd, p, c->len) < 0)) return -1;
    return c->type;
}

static void check_no_violations(void)
{
    struct agent_vol_mem_stats st;
    agent_vol_mem_stats(vols, &st);
    if (st.violations) tap_fail(__FILE__, __LINE__, "volume interface violation");
}

static uint8_t wbuf[1 << 20], rbuf[1 << 20];

/* ---- Handshake ------------------------------------------------------------------------- */

/* INFO, LIST and SET_META_CONTEXT open no volume; only GO does
 * (CVE-2019-14850). */
TEST(no_volume_before_go)
{
    fixture(NULL);
    int fd = cli_start();
    uint8_t p[512];
    uint64_t size = 0;
    CHECK_EQ(cli_go(fd, NBD_OPT_INFO, "vol0", &size, NULL), NBD_REP_ACK);
    CHECK_EQ(size, VOL_SIZE);
    send_opt(fd, NBD_OPT_LIST, NULL, 0);
    unsigned servers = 0;
    uint32_t t;
    while ((t = recv_reply(fd, p, sizeof(p), NULL)) == NBD_REP_SERVER) servers++;
    CHECK_EQ(t, NBD_REP_ACK);
    CHECK_EQ(servers, 2);
    struct agent_vol_mem_stats st;
    agent_vol_mem_stats(vols, &st);
    CHECK_EQ(st.opens, 0);
    CHECK_EQ(st.attached, 0);
    CHECK_EQ(cli_go(fd, NBD_OPT_GO, "vol0", NULL, NULL), NBD_REP_ACK);
    pump();
    agent_vol_mem_stats(vols, &st);
    CHECK_EQ(st.opens, 1);
    CHECK_EQ(st.attached, 1);
    close(fd);
    pump_ms(20);
    agent_vol_mem_stats(vols, &st);
    CHECK_EQ(st.attached, 0); /* the reference is put at close */
    check_no_violations();
}

/* A failed GO (unknown export, too long a name, no default) answers and
 * keeps the session in sync; the next GO works. */
TEST(go_errors_stay_in_sync)
{
    fixture(NULL);
    int fd = cli_start();
    CHECK_EQ(cli_go(fd, NBD_OPT_GO, "nope", NULL, NULL), NBD_REP_ERR_UNKNOWN);
    CHECK_EQ(cli_go(fd, NBD_OPT_GO, "", NULL, NULL), NBD_REP_ERR_UNKNOWN);
    char longname[1000];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    CHECK_EQ(cli_go(fd, NBD_OPT_GO, longname, NULL, NULL), NBD_REP_ERR_UNKNOWN);
    uint16_t tf = 0;
    CHECK_EQ(cli_go(fd, NBD_OPT_GO, "ro0", NULL, &tf), NBD_REP_ACK);
    CHECK(tf & NBD_FLAG_READ_ONLY);
    CHECK(!(tf & NBD_FLAG_SEND_TRIM));
    close(fd);
    check_no_violations();
}

/* The error text quotes at most 80 bytes of a 4096-byte name
 * (CVE-2020-10761). */
TEST(long_name_error_is_bounded)
{
    fixture(NULL);
    int fd = cli_start();
    static uint8_t b[4200];
    static char name[4097];
    memset(name, 'q', 4096);
    int n = nbd_encode_opt_go(b, sizeof(b), name, 4096, NULL, 0);
    send_opt(fd, NBD_OPT_GO, b, (uint32_t)n);
    uint8_t p[2048];
    uint32_t len = 0;
    CHECK_EQ(recv_reply(fd, p, sizeof(p), &len), NBD_REP_ERR_UNKNOWN);
    CHECK(len < 200);
    close(fd);
}

/* A lookup failing in the volume layer is an error reply, not a close. */
TEST(lookup_failure_is_an_error_reply)
{
    fixture(NULL);
    agent_vol_mem_fail_lookups(vols, -ESHUTDOWN);
    int fd = cli_start();
    CHECK_EQ(cli_go(fd, NBD_OPT_GO, "vol0", NULL, NULL), NBD_REP_ERR_SHUTDOWN);
    agent_vol_mem_fail_lookups(vols, -EIO);
    CHECK_EQ(cli_go(fd, NBD_OPT_INFO, "vol0", NULL, NULL), NBD_REP_ERR_UNKNOWN);
    agent_vol_mem_fail_lookups(vols, 0);
    CHECK_EQ(cli_go(fd, NBD_OPT_GO, "vol0", NULL, NULL), NBD_REP_ACK);
    close(fd);
}

/* EXPORT_NAME: success gets size and flags (no zeroes when negotiated);
 * a missing export closes only that connection. */
TEST(export_name)
{
    fixture(NULL);
    int fd = cli_start();
    send_opt(fd, NBD_OPT_EXPORT_NAME, "vol0", 4);
    uint8_t b[10];
    uint64_t size;
    uint16_t tf;
    CHECK_EQ(cli_recv(fd, b, 10), 0);
    CHECK_EQ(nbd_decode_export_name_reply(b, 10, &size, &tf), 10);
    CHECK_EQ(size, VOL_SIZE);
    CHECK(tf & NBD_FLAG_CAN_MULTI_CONN);
    CHECK(send_req(fd, NBD_CMD_FLUSH, 0, 1, 0, 0, NULL));
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    int fd2 = cli_start();
    send_opt(fd2, NBD_OPT_EXPORT_NAME, "missing", 7);
    CHECK(cli_eof(fd2, 2000));
    CHECK(send_req(fd, NBD_CMD_FLUSH, 0, 2, 0, 0, NULL)); /* the first one still works */
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    close(fd);
    close(fd2);
}

/* Unknown client flags close the connection. */
TEST(bad_client_flags_close)
{
    fixture(NULL);
    int fd = cli_new();
    uint8_t g[NBD_GREETING_LEN];
    CHECK_EQ(cli_recv(fd, g, sizeof(g)), 0);
    uint8_t f[4];
    nbd_encode_client_flags(f, 4, 0x4);
    cli_send(fd, f, 4);
    CHECK(cli_eof(fd, 2000));
    struct agent_nbd_stats st;
    agent_nbd_stats(srv, &st);
    CHECK_EQ(st.proto_errors, 1);
    close(fd);
}

/* A handshake that never finishes is closed at the deadline. */
TEST(handshake_deadline)
{
    struct agent_nbd_opts o = {.tag = "test", .handshake_timeout_ms = 150};
    fixture(&o);
    int fd = cli_new();
    uint64_t t0 = util_mono_ms();
    CHECK(cli_eof(fd, 3000));
    CHECK(util_mono_ms() - t0 >= 140);
    struct agent_nbd_stats st;
    agent_nbd_stats(srv, &st);
    CHECK_EQ(st.timeouts, 1);
    CHECK_EQ(st.connections, 0);
    close(fd);
}

/* At max_handshakes, a new connection evicts the oldest stalled one and
 * gets in. */
TEST(handshake_cap_evicts_oldest)
{
    struct agent_nbd_opts o = {.tag = "test", .max_handshakes = 3};
    fixture(&o);
    int idle[3];
    for (int i = 0; i < 3; i++) idle[i] = cli_new();
    pump();
    int fd = cli_open("vol0", false);
    CHECK(fd >= 0);
    CHECK(cli_eof(idle[0], 2000)); /* the oldest went */
    struct agent_nbd_stats st;
    agent_nbd_stats(srv, &st);
    CHECK_EQ(st.evicted, 1);
    CHECK_EQ(st.handshakes, 2);
    for (int i = 0; i < 3; i++) close(idle[i]);
    close(fd);
}

/* max_connections refuses once nothing can be evicted. */
TEST(connection_cap)
{
    struct agent_nbd_opts o = {.tag = "test", .max_connections = 2};
    fixture(&o);
    int a = cli_open("vol0", false), b = cli_open("vol0", false);
    CHECK(a >= 0 && b >= 0);
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    CHECK_EQ(agent_nbd_adopt(srv, sv[1]), -EMFILE);
    CHECK(cli_eof(sv[0], 1000));
    close(sv[0]);
    close(a);
    close(b);
}

/* ---- Transmission ---------------------------------------------------------------------- */

/* Write, read back (simple replies), flush, trim, zero, FUA. */
TEST(simple_io)
{
    fixture(NULL);
    int fd = cli_open("vol0", false);
    for (size_t i = 0; i < 65536; i++) wbuf[i] = (uint8_t)(i * 7 + 1);
    CHECK(send_req(fd, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 11, 4096, 65536, wbuf));
    uint64_t ck = 0;
    CHECK_EQ(recv_simple(fd, &ck, NULL, 0), 0);
    CHECK_EQ(ck, 11);
    CHECK(send_req(fd, NBD_CMD_READ, 0, 12, 4096, 65536, NULL));
    CHECK_EQ(recv_simple(fd, &ck, rbuf, 65536), 0);
    CHECK(memcmp(wbuf, rbuf, 65536) == 0);
    CHECK(send_req(fd, NBD_CMD_TRIM, 0, 13, 4096, 8192, NULL));
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    CHECK(send_req(fd, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 14, 16384, 4096, NULL));
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    CHECK(send_req(fd, NBD_CMD_FLUSH, 0, 15, 0, 0, NULL));
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    CHECK(send_req(fd, NBD_CMD_READ, 0, 16, 4096, 16384, NULL));
    CHECK_EQ(recv_simple(fd, NULL, rbuf, 16384), 0);
    for (int i = 0; i < 8192; i++) CHECK_EQ(rbuf[i], 0);
    CHECK(memcmp(rbuf + 8192, wbuf + 8192, 4096) == 0);
    for (int i = 12288; i < 16384; i++) CHECK_EQ(rbuf[i], 0);
    struct agent_vol_mem_stats st;
    agent_vol_mem_stats(vols, &st);
    CHECK_EQ(st.fua, 1);
    CHECK_EQ(st.no_hole, 1);
    CHECK_EQ(st.ops[2], 1); /* flush */
    close(fd);
    pump_ms(10);
    check_no_violations();
}

/* Structured READ of a partly written range: data chunks for DATA,
 * hole chunks for HOLE/ZERO, the last chunk flagged DONE. */
TEST(structured_read_holes)
{
    fixture(NULL);
    int fd = cli_open("vol0", true);
    memset(wbuf, 0xab, 8192);
    CHECK(send_req(fd, NBD_CMD_WRITE, 0, 1, 8192, 8192, wbuf));
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    CHECK(send_req(fd, NBD_CMD_READ, 0, 2, 0, 32768, NULL));
    memset(rbuf, 0x55, 32768);
    struct nbd_chunk c;
    static uint8_t p[65536];
    unsigned data = 0, holes = 0;
    uint64_t covered = 0;
    for (;;) {
        int t = recv_chunk(fd, &c, p, sizeof(p));
        CHECK(t >= 0);
        CHECK_EQ(c.cookie, 2);
        uint64_t off;
        uint32_t len;
        if (t == NBD_REPLY_TYPE_OFFSET_DATA) {
            const uint8_t *d;
            CHECK_EQ(nbd_decode_chunk_data(p, c.len, &off, &d, &len), 0);
            memcpy(rbuf + off, d, len);
            data++;
        } else {
            CHECK_EQ(t, NBD_REPLY_TYPE_OFFSET_HOLE);
            CHECK_EQ(nbd_decode_chunk_hole(p, c.len, &off, &len), 0);
            memset(rbuf + off, 0, len);
            holes++;
        }
        covered += len;
        if (c.flags & NBD_REPLY_FLAG_DONE) break;
    }
    CHECK_EQ(covered, 32768);
    CHECK_EQ(data, 1);
    CHECK_EQ(holes, 2);
    for (int i = 0; i < 32768; i++) CHECK_EQ(rbuf[i], (i >= 8192 && i < 16384) ? 0xab : 0);
    close(fd);
}

/* BLOCK_STATUS reports DATA, ZERO and HOLE truthfully after writes, trims
 * and zeroes; extents longer than the request are clipped
 * (CVE-2025-47711); REQ_ONE returns one descriptor. */
TEST(block_status)
{
    fixture(NULL);
    int fd = cli_open("vol0", true);
    memset(wbuf, 1, 4096);
    send_req(fd, NBD_CMD_WRITE, 0, 1, 0, 4096, wbuf);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    send_req(fd, NBD_CMD_TRIM, 0, 2, 4096, 4096, NULL);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    send_req(fd, NBD_CMD_BLOCK_STATUS, 0, 3, 0, 16384, NULL);
    struct nbd_chunk c;
    uint8_t p[4200];
    CHECK_EQ(recv_chunk(fd, &c, p, sizeof(p)), NBD_REPLY_TYPE_BLOCK_STATUS);
    CHECK(c.flags & NBD_REPLY_FLAG_DONE);
    uint32_t id, n, len, state;
    CHECK_EQ(nbd_decode_chunk_bs(p, c.len, &id, &n), 0);
    CHECK_EQ(id, NBD_META_ID_BASE_ALLOC);
    CHECK_EQ(n, 3);
    nbd_chunk_bs_extent(p, 0, &len, &state);
    CHECK(len == 4096 && state == 0);
    nbd_chunk_bs_extent(p, 1, &len, &state);
    CHECK(len == 4096 && state == NBD_STATE_ZERO);
    nbd_chunk_bs_extent(p, 2, &len, &state);
    CHECK(len == 8192 && state == (NBD_STATE_HOLE | NBD_STATE_ZERO));

    agent_vol_mem_set_long_extents(vols, true);
    send_req(fd, NBD_CMD_BLOCK_STATUS, 0, 4, 8192, 4096, NULL);
    CHECK_EQ(recv_chunk(fd, &c, p, sizeof(p)), NBD_REPLY_TYPE_BLOCK_STATUS);
    nbd_decode_chunk_bs(p, c.len, &id, &n);
    CHECK_EQ(n, 1);
    nbd_chunk_bs_extent(p, 0, &len, &state);
    CHECK_EQ(len, 4096);
    send_req(fd, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 5, 0, 16384, NULL);
    CHECK_EQ(recv_chunk(fd, &c, p, sizeof(p)), NBD_REPLY_TYPE_BLOCK_STATUS);
    nbd_decode_chunk_bs(p, c.len, &id, &n);
    CHECK_EQ(n, 1);
    nbd_chunk_bs_extent(p, 0, &len, &state);
    CHECK(len == 4096 && state == 0);
    close(fd);
    check_no_violations();
}

/* Volume errors map to NBD errors: an ERROR chunk with structured
 * replies (never a simple reply to a READ), a simple error otherwise;
 * the connection stays usable. */
TEST(volume_errors)
{
    fixture(NULL);
    agent_vol_mem_inject(vols, "vol0", AVM_READ, 0, 4096, -EIO, 1);
    agent_vol_mem_inject(vols, "vol0", AVM_WRITE, 0, 4096, -ENOSPC, 1);
    agent_vol_mem_inject(vols, "vol0", AVM_FLUSH, 0, 0, -ETIMEDOUT, 1);
    agent_vol_mem_inject(vols, "vol0", AVM_TRIM, 0, 4096, -ESHUTDOWN, 1);
    int fd = cli_open("vol0", true);
    struct nbd_chunk c;
    uint8_t p[512];
    uint32_t err;
    struct nbd_str msg;
    send_req(fd, NBD_CMD_READ, 0, 1, 0, 4096, NULL);
    CHECK_EQ(recv_chunk(fd, &c, p, sizeof(p)), NBD_REPLY_TYPE_ERROR);
    CHECK_EQ(nbd_decode_chunk_error(p, c.len, &err, &msg), 0);
    CHECK_EQ(err, NBD_EIO);
    CHECK(msg.len > 0);
    send_req(fd, NBD_CMD_WRITE, 0, 2, 0, 4096, wbuf);
    CHECK_EQ(recv_chunk(fd, &c, p, sizeof(p)), NBD_REPLY_TYPE_ERROR);
    nbd_decode_chunk_error(p, c.len, &err, &msg);
    CHECK_EQ(err, NBD_ENOSPC);
    send_req(fd, NBD_CMD_FLUSH, 0, 3, 0, 0, NULL);
    CHECK_EQ(recv_chunk(fd, &c, p, sizeof(p)), NBD_REPLY_TYPE_ERROR);
    nbd_decode_chunk_error(p, c.len, &err, &msg);
    CHECK_EQ(err, NBD_EIO);
    send_req(fd, NBD_CMD_TRIM, 0, 4, 0, 4096, NULL);
    CHECK_EQ(recv_chunk(fd, &c, p, sizeof(p)), NBD_REPLY_TYPE_ERROR);
    nbd_decode_chunk_error(p, c.len, &err, &msg);
    CHECK_EQ(err, NBD_ESHUTDOWN);
    send_req(fd, NBD_CMD_READ, 0, 5, 0, 4096, NULL); /* usable after the errors */
    CHECK_EQ(recv_chunk(fd, &c, p, sizeof(p)), NBD_REPLY_TYPE_OFFSET_HOLE);
    close(fd);

    agent_vol_mem_inject(vols, "vol0", AVM_READ, 0, 4096, -EIO, 1);
    fd = cli_open("vol0", false);
    send_req(fd, NBD_CMD_READ, 0, 6, 0, 4096, NULL);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EIO); /* no payload follows */
    send_req(fd, NBD_CMD_READ, 0, 7, 0, 4096, NULL);
    CHECK_EQ(recv_simple(fd, NULL, rbuf, 4096), 0);
    close(fd);
    check_no_violations();
}

/* FAST_ZERO the volume cannot do fast is ENOTSUP; without the flag the
 * same error is not ENOTSUP. */
TEST(fast_zero_enotsup)
{
    fixture(NULL);
    agent_vol_mem_set_fast_zero_enotsup(vols, true);
    int fd = cli_open("vol0", false);
    send_req(fd, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 1, 0, 4096, NULL);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_ENOTSUP);
    send_req(fd, NBD_CMD_WRITE_ZEROES, 0, 2, 0, 4096, NULL);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    agent_vol_mem_inject(vols, "vol0", AVM_ZERO, 0, 4096, -ENOTSUP, 1);
    send_req(fd, NBD_CMD_WRITE_ZEROES, 0, 3, 0, 4096, NULL);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EIO);
    close(fd);
}

/* TRIM and WRITE_ZEROES longer than max_io are split into max_io pieces. */
TEST(long_trim_is_split)
{
    fixture(NULL);
    agent_nbd_free(srv);
    agent_vols_free(vols);
    vols = agent_vol_mem_new(rx);
    agent_vol_mem_set_max_io(vols, 65536);
    agent_vol_mem_add(vols, "vol0", VOL_SIZE, false);
    struct agent_nbd_opts o = {.tag = "test"};
    char e[64];
    agent_nbd_new(rx, vols, &o, &srv, e, sizeof(e));
    int fd = cli_open("vol0", false);
    send_req(fd, NBD_CMD_TRIM, NBD_CMD_FLAG_FUA, 1, 0, 1u << 20, NULL);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    struct agent_vol_mem_stats st;
    agent_vol_mem_stats(vols, &st);
    CHECK_EQ(st.ops[3], 16);
    CHECK_EQ(st.fua, 16);
    /* a WRITE over the advertised maximum (64 KiB) but under 32 MiB:
     * payload dropped, EINVAL, connection usable */
    send_req(fd, NBD_CMD_WRITE, 0, 2, 0, 131072, wbuf);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EINVAL);
    send_req(fd, NBD_CMD_READ, 0, 3, 0, 4096, NULL);
    CHECK_EQ(recv_simple(fd, NULL, rbuf, 4096), 0);
    agent_vol_mem_stats(vols, &st);
    CHECK_EQ(st.ops[1], 0);
    close(fd);
    check_no_violations();
}

/* A WRITE longer than 32 MiB closes without reading or allocating. */
TEST(huge_write_closes)
{
    fixture(NULL);
    int fd = cli_open("vol0", false);
    send_req(fd, NBD_CMD_WRITE, 0, 1, 0, 0xfffff000u, NULL);
    CHECK(cli_eof(fd, 2000));
    close(fd);
}

/* Bad request magic closes; invalid requests get errors and the
 * connection stays usable. */
TEST(bad_magic_and_invalid_requests)
{
    fixture(NULL);
    int fd = cli_open("vol0", false);
    send_req(fd, 99, 0, 1, 0, 4096, NULL);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EINVAL);
    send_req(fd, NBD_CMD_READ, 0, 2, VOL_SIZE, 4096, NULL);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EINVAL);
    send_req(fd, NBD_CMD_WRITE, 0, 3, UINT64_MAX - 511, 512, wbuf);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_ENOSPC);
    send_req(fd, NBD_CMD_READ, 0, 4, 0, 0, NULL);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EINVAL);
    send_req(fd, NBD_CMD_WRITE, 0, 4, 0, 0, NULL);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EINVAL);
    send_req(fd, NBD_CMD_BLOCK_STATUS, 0, 5, 0, 4096, NULL); /* no meta context */
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EINVAL);
    uint8_t junk[NBD_REQUEST_LEN] = {0x25, 0x60, 0x95, 0x14};
    cli_send(fd, junk, sizeof(junk));
    CHECK(cli_eof(fd, 2000));
    close(fd);
    check_no_violations();
}

/* Writes on a read-only export are EPERM, the WRITE payload dropped. */
TEST(read_only_export)
{
    fixture(NULL);
    int fd = cli_open("ro0", false);
    send_req(fd, NBD_CMD_WRITE, 0, 1, 0, 4096, wbuf);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EPERM);
    send_req(fd, NBD_CMD_TRIM, 0, 2, 0, 4096, NULL);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EPERM);
    send_req(fd, NBD_CMD_WRITE_ZEROES, 0, 3, 0, 4096, NULL);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EPERM);
    send_req(fd, NBD_CMD_READ, 0, 4, 0, 4096, NULL);
    CHECK_EQ(recv_simple(fd, NULL, rbuf, 4096), 0);
    struct agent_vol_mem_stats st;
    agent_vol_mem_stats(vols, &st);
    CHECK_EQ(st.ops[1] + st.ops[3] + st.ops[4], 0);
    close(fd);
}

/* A WRITE whose payload stops short and whose client closes is dropped:
 * nothing reaches the volume, nothing is acknowledged. */
TEST(partial_write_dropped)
{
    fixture(NULL);
    int fd = cli_open("vol0", false);
    send_req(fd, NBD_CMD_WRITE, 0, 1, 0, 65536, NULL);
    cli_send(fd, wbuf, 10000);
    pump_ms(20);
    close(fd);
    pump_ms(20);
    struct agent_vol_mem_stats st;
    agent_vol_mem_stats(vols, &st);
    CHECK_EQ(st.ops[1], 0);
    CHECK_EQ(st.attached, 0);
    struct agent_nbd_stats ns;
    agent_nbd_stats(srv, &ns);
    CHECK_EQ(ns.connections, 0);
    check_no_violations();
}

/* Duplicate cookies in flight: every reply echoes the cookie. */
TEST(duplicate_cookies)
{
    fixture(NULL);
    int fd = cli_open("vol0", false);
    for (int i = 0; i < 8; i++) send_req(fd, NBD_CMD_WRITE, 0, 42, 4096u * i, 4096, wbuf);
    for (int i = 0; i < 8; i++) {
        uint64_t ck = 0;
        CHECK_EQ(recv_simple(fd, &ck, NULL, 0), 0);
        CHECK_EQ(ck, 42);
    }
    close(fd);
}

/* A client that pipelines without reading replies is held to
 * max_inflight requests and the output high-water mark: the server stops
 * reading, and every request is answered once the client reads. */
TEST(back_pressure)
{
    struct agent_nbd_opts o = {.tag = "test", .max_inflight = 8, .out_high_water = 256u << 10};
    fixture(&o);
    int fd = cli_open("vol0", false);
    int buf = 64 << 10;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    unsigned sent = 0;
    uint8_t h[NBD_REQUEST_LEN];
    for (; sent < 50000; sent++) { /* far more than the buffers on the way hold */
        struct nbd_request r = {.type = NBD_CMD_READ, .cookie = sent, .off = 0, .len = 4096};
        nbd_encode_request(h, sizeof(h), &r);
        pump();
        if (send(fd, h, sizeof(h), MSG_NOSIGNAL) != (ssize_t)sizeof(h)) break;
    }
    pump_ms(50);
    CHECK(sent < 50000); /* the server stopped reading; our socket filled */
    struct agent_vol_mem_stats st;
    agent_vol_mem_stats(vols, &st);
    CHECK(st.inflight <= 8);
    CHECK(st.ops[0] < sent);
    for (unsigned i = 0; i < sent; i++) CHECK_EQ(recv_simple(fd, NULL, rbuf, 4096), 0);
    close(fd);
    check_no_violations();
}

/* DISC with writes in flight: they finish and are answered, then close. */
TEST(disc_finishes_inflight)
{
    fixture(NULL);
    agent_vol_mem_set_delay(vols, 50);
    int fd = cli_open("vol0", false);
    for (int i = 0; i < 4; i++) send_req(fd, NBD_CMD_WRITE, 0, (uint64_t)i, 4096u * i, 4096, wbuf);
    send_req(fd, NBD_CMD_DISC, 0, 99, 0, 0, NULL);
    send_req(fd, NBD_CMD_READ, 0, 100, 0, 4096, NULL); /* after DISC: ignored */
    for (int i = 0; i < 4; i++) CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    CHECK(cli_eof(fd, 2000));
    struct agent_vol_mem_stats st;
    agent_vol_mem_stats(vols, &st);
    CHECK_EQ(st.ops[1], 4);
    CHECK_EQ(st.ops[0], 0);
    close(fd);
    check_no_violations();
}

/* A client that pipelines, sends DISC and shuts its side at once (as
 * libnbd's shutdown does) still gets every reply: EOF is not a hard
 * close while requests are buffered or in flight. */
TEST(eof_after_pipelined_requests)
{
    fixture(NULL);
    agent_vol_mem_set_delay(vols, 20);
    for (int disc = 0; disc <= 1; disc++) {
        int fd = cli_open("vol0", false);
        for (int i = 0; i < 200; i++)
            send_req(fd, NBD_CMD_WRITE, 0, (uint64_t)i, 4096u * i, 4096, wbuf);
        if (disc) send_req(fd, NBD_CMD_DISC, 0, 999, 0, 0, NULL);
        shutdown(fd, SHUT_WR);
        for (int i = 0; i < 200; i++) CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
        CHECK(cli_eof(fd, 2000));
        close(fd);
    }
    struct agent_vol_mem_stats st;
    agent_vol_mem_stats(vols, &st);
    CHECK_EQ(st.ops[1], 400);
    check_no_violations();
}

/* Multi-conn: a write on A, a flush on B and a read on C agree (C8). */
TEST(multi_conn)
{
    fixture(NULL);
    int a = cli_open("vol0", false), b = cli_open("vol0", false), c = cli_open("vol0", true);
    memset(wbuf, 0x5a, 4096);
    send_req(a, NBD_CMD_WRITE, 0, 1, 12288, 4096, wbuf);
    CHECK_EQ(recv_simple(a, NULL, NULL, 0), 0);
    send_req(b, NBD_CMD_FLUSH, 0, 2, 0, 0, NULL);
    CHECK_EQ(recv_simple(b, NULL, NULL, 0), 0);
    send_req(c, NBD_CMD_READ, 0, 3, 12288, 4096, NULL);
    struct nbd_chunk ch;
    static uint8_t p[8192];
    CHECK_EQ(recv_chunk(c, &ch, p, sizeof(p)), NBD_REPLY_TYPE_OFFSET_DATA);
    CHECK(memcmp(p + 8, wbuf, 4096) == 0);
    struct agent_vol_mem_stats st;
    agent_vol_mem_stats(vols, &st);
    CHECK_EQ(st.opens, 3);
    close(a);
    close(b);
    close(c);
}

static int stopped;
static void on_stopped(void *arg)
{
    (void)arg;
    stopped++;
}

/* Stop closes handshakes at once, lets in-flight requests finish and
 * their replies flush, then closes and reports done once. */
TEST(stop_drains)
{
    fixture(NULL);
    agent_vol_mem_set_delay(vols, 50);
    int hs = cli_new();
    int fd = cli_open("vol0", false);
    send_req(fd, NBD_CMD_WRITE, 0, 7, 0, 4096, wbuf);
    pump_ms(5);
    stopped = 0;
    agent_nbd_stop(srv, 2000, on_stopped, NULL);
    CHECK(cli_eof(hs, 1000));
    uint64_t ck = 0;
    CHECK_EQ(recv_simple(fd, &ck, NULL, 0), 0);
    CHECK_EQ(ck, 7);
    CHECK(cli_eof(fd, 2000));
    pump_ms(10);
    CHECK_EQ(stopped, 1);
    int late[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, late);
    CHECK_EQ(agent_nbd_adopt(srv, late[1]), -ESHUTDOWN);
    close(late[0]);
    close(hs);
    close(fd);
    check_no_violations();
}

/* Metrics count requests per command. */
TEST(metrics_per_command)
{
    fixture(NULL);
    int fd = cli_open("vol0", false);
    send_req(fd, NBD_CMD_FLUSH, 0, 1, 0, 0, NULL);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    struct metric_counter *m =
        metrics_counter("blockd_nbd_requests_total", "", "role=\"test\",op=\"flush\"");
    CHECK(m && m->value >= 1);
    close(fd);
    pump_ms(10);
    agent_nbd_free(srv);
    agent_vols_free(vols);
    srv = NULL;
    vols = NULL;
    reactor_free(rx);
    rx = NULL;
    metrics_reset();
}
