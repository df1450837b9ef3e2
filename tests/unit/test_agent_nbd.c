/* test_agent_nbd.c: the NBD server (src/roles/agent_nbd*.c) driven in
 * process: a raw client on one end of a socketpair, the server on the
 * other (agent_nbd_adopt), the in-memory volume back end behind it, one
 * reactor pumped by the helpers below.  Covers what the protocol tests
 * over TCP cannot see from outside: what reached the volume layer, slot
 * and memory bounds, deadlines and eviction, stop and drain.  Defends C8,
 * C17 and the "no volume before GO" rule (CVE-2019-14850).
 *
 * Also a volume's own socket, and STARTTLS with PSKs (an OpenSSL client in
 * the test: TLS 1.3 and 1.2, wrong and unknown keys, plaintext pipelined
 * after STARTTLS, FORCEDTLS over TCP).
 *
 * Every wait is bounded (pump_until's deadline).  Every test ends by
 * checking the back end saw no violation of agent_vol.h. */
#include "agent_vol_mem.h"
#include "base/bd.h"
#include "base/bytes.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "net/nbd.h"
#include "runtime/reactor.h"
#include "roles/agent/agent_nbd.h"
#include "net/nbd_tls.h"
#include "tap.h"
#include "base/util.h"
#include "roles/agent/agent_qos.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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
    if (agent_nbd_new(rx, vols, o ? o : &def, &srv, err, sizeof(err)) < 0) {
        printf("# agent_nbd_new: %s\n", err);
        abort();
    }
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
    if (bytes_get_be32(h) == NBD_SIMPLE_REPLY_MAGIC) {
        cli_recv(fd, h + 4, 12);
        c->cookie = bytes_get_be64(h + 8);
        c->len = bytes_get_be32(h + 4);
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

/* A structured READ reply into BUF (the request was [OFF, OFF+LEN)):
 * every chunk inside the range, together covering it exactly once.  The
 * number of chunks, or -1. */
static int recv_structured_read(int fd, uint64_t cookie, uint64_t off, uint32_t len, uint8_t *buf)
{
    static uint8_t p[1 << 20];
    struct nbd_chunk c;
    uint64_t covered = 0;
    int n = 0;
    for (;;) {
        int t = recv_chunk(fd, &c, p, sizeof(p));
        if (t < 0 || c.cookie != cookie) return -1;
        uint64_t o;
        uint32_t l;
        const uint8_t *d = NULL;
        if (t == NBD_REPLY_TYPE_OFFSET_DATA) {
            if (nbd_decode_chunk_data(p, c.len, &o, &d, &l) != 0) return -1;
        } else if (t != NBD_REPLY_TYPE_OFFSET_HOLE || nbd_decode_chunk_hole(p, c.len, &o, &l) != 0) {
            return -1;
        }
        if (o < off || o + l > off + len) return -1;
        if (d) memcpy(buf + (o - off), d, l);
        else memset(buf + (o - off), 0, l);
        covered += l;
        n++;
        if (c.flags & NBD_REPLY_FLAG_DONE) break;
    }
    return covered == len ? n : -1;
}

/* Requests of any offset and length, against a model: 1- and 512-byte
 * writes and reads, across block edges, unaligned zeroes (partial blocks
 * written as zeroes) and trims (whole blocks only); unaligned requests
 * past the end keep their errors. */
TEST(unaligned_io)
{
    fixture(NULL);
    static uint8_t model[64 << 10];
    memset(model, 0, sizeof(model));
    int fd = cli_open("vol0", false);
    struct { uint64_t off; uint32_t len; } w[] = {
        {512, 512}, {100, 1}, {4096 - 3, 7}, {8000, 5000}, {20480 + 512, 3 * 4096}, {0, 4096},
        {1, 4095}, {65536 - 512, 512},
    };
    for (unsigned i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
        for (uint32_t k = 0; k < w[i].len; k++) wbuf[k] = (uint8_t)(i * 37 + k + 1);
        memcpy(model + w[i].off, wbuf, w[i].len);
        CHECK(send_req(fd, NBD_CMD_WRITE, i % 2 ? NBD_CMD_FLAG_FUA : 0, i, w[i].off, w[i].len, wbuf));
        CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    }
    CHECK(send_req(fd, NBD_CMD_WRITE_ZEROES, 0, 20, 6000, 9000, NULL)); /* head, 2 blocks, tail */
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    memset(model + 6000, 0, 9000);
    CHECK(send_req(fd, NBD_CMD_WRITE_ZEROES, 0, 21, 30000, 10, NULL)); /* inside one block */
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    memset(model + 30000, 0, 10);
    CHECK(send_req(fd, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 22, 100, 10, NULL));
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_ENOTSUP);           /* an RMW is not fast */
    CHECK(send_req(fd, NBD_CMD_TRIM, 0, 23, 40000, 100, NULL));       /* no whole block: no-op */
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    CHECK(send_req(fd, NBD_CMD_TRIM, 0, 24, 20000, 10000, NULL));    /* trims [20480, 28672) */
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    memset(model + 20480, 0, 8192);
    struct { uint64_t off; uint32_t len; } r[] = {
        {0, 1}, {100, 1}, {511, 2}, {512, 512}, {4000, 200}, {0, 65536}, {7999, 5002},
        {65535, 1}, {3, 40000},
    };
    for (unsigned i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
        memset(rbuf, 0xee, r[i].len);
        CHECK(send_req(fd, NBD_CMD_READ, 0, 100 + i, r[i].off, r[i].len, NULL));
        CHECK_EQ(recv_simple(fd, NULL, rbuf, r[i].len), 0);
        CHECK(memcmp(rbuf, model + r[i].off, r[i].len) == 0);
    }
    CHECK(send_req(fd, NBD_CMD_WRITE, 0, 30, VOL_SIZE - 100, 512, wbuf));
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_ENOSPC);
    CHECK(send_req(fd, NBD_CMD_READ, 0, 31, VOL_SIZE - 1, 2, NULL));
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EINVAL);
    CHECK(send_req(fd, NBD_CMD_WRITE, 0, 32, 513, 0, NULL));
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EINVAL);
    CHECK(send_req(fd, NBD_CMD_READ, 0, 33, VOL_SIZE - 1, 1, NULL)); /* the last byte */
    CHECK_EQ(recv_simple(fd, NULL, rbuf, 1), 0);
    struct agent_vol_mem_stats st;
    agent_vol_mem_stats(vols, &st);
    CHECK(st.unaligned >= 8);
    close(fd);
    pump_ms(10);
    check_no_violations();
}

/* Structured replies to unaligned READs stay inside the range asked
 * for; with DF the answer is one data chunk, holes included. */
TEST(structured_unaligned_and_df)
{
    fixture(NULL);
    int fd = cli_open("vol0", true);
    uint16_t tf = 0;
    memset(wbuf, 0xcd, 4096);
    CHECK(send_req(fd, NBD_CMD_WRITE, 0, 1, 8192 + 100, 4096, wbuf));
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    static uint8_t want[40000];
    memset(want, 0, sizeof(want));
    memset(want + 8192 + 100 - 7, 0xcd, 4096);
    CHECK(send_req(fd, NBD_CMD_READ, 0, 2, 7, 30000, NULL));
    CHECK(recv_structured_read(fd, 2, 7, 30000, rbuf) >= 2); /* holes as well */
    CHECK(memcmp(rbuf, want, 30000) == 0);
    CHECK(send_req(fd, NBD_CMD_READ, NBD_CMD_FLAG_DF, 3, 7, 30000, NULL));
    CHECK_EQ(recv_structured_read(fd, 3, 7, 30000, rbuf), 1);
    CHECK(memcmp(rbuf, want, 30000) == 0);
    close(fd);
    /* DF is offered with structured replies only */
    fd = cli_start();
    CHECK_EQ(cli_go(fd, NBD_OPT_GO, "vol0", NULL, &tf), NBD_REP_ACK);
    CHECK(!(tf & NBD_FLAG_SEND_DF));
    CHECK(tf & NBD_FLAG_SEND_CACHE);
    CHECK(send_req(fd, NBD_CMD_READ, NBD_CMD_FLAG_DF, 4, 0, 4096, NULL));
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EINVAL);
    close(fd);
    pump_ms(10);
    check_no_violations();
}

/* CACHE reads the range through and answers without data; longer than
 * max_payload or past the end it is EINVAL, like a READ. */
TEST(cache_bounded)
{
    fixture(NULL);
    int fd = cli_open("vol0", false);
    struct agent_vol_mem_stats st0, st;
    agent_vol_mem_stats(vols, &st0);
    CHECK(send_req(fd, NBD_CMD_CACHE, 0, 1, 100, 100000, NULL));
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    agent_vol_mem_stats(vols, &st);
    CHECK_EQ(st.ops[0] - st0.ops[0], 1);                          /* one read of the cover */
    CHECK(send_req(fd, NBD_CMD_CACHE, 0, 2, 0, 64u << 20, NULL)); /* > max_payload */
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EINVAL);
    CHECK(send_req(fd, NBD_CMD_CACHE, 0, 3, VOL_SIZE - 10, 20, NULL));
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EINVAL);
    CHECK(send_req(fd, NBD_CMD_CACHE, 0, 4, 0, 0, NULL));
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EINVAL);
    agent_vol_mem_inject(vols, "vol0", AVM_READ, 0, 4096, -EIO, 1);
    CHECK(send_req(fd, NBD_CMD_CACHE, 0, 5, 0, 4096, NULL));
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), NBD_EIO);
    CHECK(send_req(fd, NBD_CMD_READ, 0, 6, 0, 4096, NULL));        /* still in sync */
    CHECK_EQ(recv_simple(fd, NULL, rbuf, 4096), 0);
    close(fd);
    pump_ms(10);
    check_no_violations();
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

/* ---- Volume sockets --------------------------------------------------------------------- */

/* What agent.c does with the registry's watch. */
static void on_attachment(void *arg, enum agent_vols_change what,
                          const struct agent_vols_list_entry *e)
{
    (void)arg;
    if (what == AGENT_VOLS_ATTACHED) agent_nbd_volume_add(srv, e->name);
    else agent_nbd_volume_revoke(srv, e->name, what == AGENT_VOLS_DETACHED);
}

/* A client of the Unix socket PATH, through the greeting and flags. */
static int unix_start(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    util_strlcpy(a.sun_path, path, sizeof(a.sun_path));
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) return -1;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    uint8_t g[NBD_GREETING_LEN];
    uint16_t hf;
    if (cli_recv(fd, g, sizeof(g)) < 0 || nbd_decode_greeting(g, sizeof(g), &hf) <= 0) return -1;
    uint8_t f[4];
    nbd_encode_client_flags(f, 4, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    cli_send(fd, f, 4);
    return fd;
}

/* Each attached volume gets a socket with the configured mode, serving
 * that volume alone (by its name or the default export); a change of its
 * attachment closes its connections, a detach also removes the socket;
 * sockets left from before the start are removed. */
TEST(volume_sockets)
{
    char dir[400], path[600], other[600];
    snprintf(dir, sizeof(dir), "%s/vols", tap_tmpdir());
    struct agent_nbd_opts o = {.tag = "test", .handshake_timeout_ms = 5000, .volume_dir = dir,
                               .volume_perm = {.mode = 0640, .uid = -1, .gid = -1}};
    mkdir(dir, 0755);
    /* A predecessor's stale socket goes at start; other files stay. */
    char stale[600], keep[600];
    snprintf(stale, sizeof(stale), "%s/gone.sock", dir);
    snprintf(keep, sizeof(keep), "%s/file.sock", dir);
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    util_strlcpy(sa.sun_path, stale, sizeof(sa.sun_path));
    CHECK(ls >= 0 && bind(ls, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    close(ls);
    close(open(keep, O_WRONLY | O_CREAT, 0600));
    fixture(&o);
    struct stat st;
    CHECK(stat(stale, &st) < 0 && stat(keep, &st) == 0);
    agent_vols_watch(vols, on_attachment, NULL);
    CHECK(agent_nbd_volume_path(srv, "vol0", path, sizeof(path)));
    CHECK(agent_nbd_volume_path(srv, "ro0", other, sizeof(other)));
    CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 07777) == 0640);
    CHECK(stat(other, &st) == 0 && S_ISSOCK(st.st_mode));
    int fd = unix_start(path);
    CHECK(fd >= 0);
    uint8_t p[512];
    uint32_t t, len;
    send_opt(fd, NBD_OPT_LIST, NULL, 0);
    unsigned servers = 0;
    while ((t = recv_reply(fd, p, sizeof(p), &len)) == NBD_REP_SERVER) {
        struct nbd_str nm;
        CHECK(nbd_decode_rep_server(p, len, &nm) == 0 && nm.len == 4 && !memcmp(nm.ptr, "vol0", 4));
        servers++;
    }
    CHECK(t == NBD_REP_ACK && servers == 1);
    CHECK_EQ(cli_go(fd, NBD_OPT_INFO, "ro0", NULL, NULL), NBD_REP_ERR_UNKNOWN);
    uint64_t size = 0;
    CHECK_EQ(cli_go(fd, NBD_OPT_GO, "", &size, NULL), NBD_REP_ACK); /* the default export */
    CHECK_EQ(size, VOL_SIZE);
    memset(wbuf, 0x5a, 4096);
    send_req(fd, NBD_CMD_WRITE, 0, 1, 0, 4096, wbuf);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    /* Made read-only: the connection, admitted as read-write, goes. */
    CHECK_EQ(agent_vol_mem_set_attachment(vols, "vol0", true, ""), 0);
    CHECK(cli_eof(fd, 2000));
    close(fd);
    CHECK(stat(path, &st) == 0);
    fd = unix_start(path);
    CHECK_EQ(cli_go(fd, NBD_OPT_GO, "vol0", NULL, NULL), NBD_REP_ACK);
    /* Detached: its connections and its socket go. */
    CHECK_EQ(agent_vol_mem_detach(vols, "vol0"), 0);
    CHECK(cli_eof(fd, 2000));
    close(fd);
    CHECK(stat(path, &st) < 0 && errno == ENOENT);
    CHECK(stat(other, &st) == 0);
    CHECK_EQ(unix_start(path), -1);
    struct agent_nbd_stats s;
    agent_nbd_stats(srv, &s);
    CHECK_EQ(s.connections, 0);
    check_no_violations();
}

/* ---- STARTTLS ---------------------------------------------------------------------------- */

static const char psk_vm1[] = "00112233445566778899aabbccddeeff";
static char psk_file[400];
static const char *cli_psk_id, *cli_psk_hex;

static unsigned int cli_psk_cb(SSL *ssl, const char *hint, char *identity, unsigned int max_id,
                               unsigned char *psk, unsigned int max_psk)
{
    (void)ssl;
    (void)hint;
    snprintf(identity, max_id, "%s", cli_psk_id);
    unsigned n = (unsigned)strlen(cli_psk_hex) / 2;
    if (n > max_psk) return 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned x;
        sscanf(cli_psk_hex + 2 * i, "%2x", &x);
        psk[i] = (unsigned char)x;
    }
    return n;
}

/* A server with NBD TLS from a PSK file (vm1's key), TLS MODE over TCP. */
static struct nbd_tls *tls_fixture(enum nbd_tls_mode mode, struct agent_nbd_opts *o)
{
    snprintf(psk_file, sizeof(psk_file), "%s/keys.psk", tap_tmpdir());
    int f = open(psk_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dprintf(f, "# test keys\nvm1:%s\nvm2:%s\n", psk_vm1, "ffeeddccbbaa99887766554433221100");
    close(f);
    struct nbd_tls_opts to = {.cluster = "test", .psk_file = psk_file};
    struct nbd_tls *t = NULL;
    char err[256];
    if (nbd_tls_new(&to, &t, err, sizeof(err)) < 0) {
        printf("# nbd_tls_new: %s\n", err);
        return NULL;
    }
    /* A free port: the kernel's pick for a socket we close again. */
    static char listen[32];
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(a);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(s, (struct sockaddr *)&a, &alen) < 0)
        abort();
    close(s);
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", ntohs(a.sin_port));
    *o = (struct agent_nbd_opts){.tag = "test", .handshake_timeout_ms = 3000, .tls = t,
                                 .tls_mode = mode, .listen = listen};
    fixture(o);
    return t;
}

/* A client over TCP to the fixture's listener, through the flags. */
static int tcp_start(void)
{
    cJSON *st = cJSON_CreateObject();
    agent_nbd_status(srv, st);
    int port = cJSON_GetObjectItem(cJSON_GetObjectItem(st, "nbd"), "port")->valueint;
    cJSON_Delete(st);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    connect(fd, (struct sockaddr *)&a, sizeof(a));
    uint8_t g[NBD_GREETING_LEN];
    uint16_t hf;
    if (cli_recv(fd, g, sizeof(g)) < 0 || nbd_decode_greeting(g, sizeof(g), &hf) <= 0) return -1;
    uint8_t f[4];
    nbd_encode_client_flags(f, 4, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    cli_send(fd, f, 4);
    return fd;
}

/* STARTTLS, then a TLS 1.3 (or MAX) PSK handshake as ID with key HEX on
 * FD.  The client SSL, or NULL if the handshake failed. */
static SSL *cli_tls(int fd, const char *id, const char *hex, int max_version)
{
    send_opt(fd, NBD_OPT_STARTTLS, NULL, 0);
    uint8_t p[256];
    if (recv_reply(fd, p, sizeof(p), NULL) != NBD_REP_ACK) return NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(ctx, max_version);
    SSL_CTX_set_cipher_list(ctx, "PSK");
    cli_psk_id = id;
    cli_psk_hex = hex;
    SSL_CTX_set_psk_client_callback(ctx, cli_psk_cb);
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx);
    SSL_set_fd(ssl, fd);
    uint64_t end = util_mono_ms() + 3000;
    for (;;) {
        int rc = SSL_connect(ssl);
        if (rc == 1) return ssl;
        int e = SSL_get_error(ssl, rc);
        if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || util_mono_ms() > end) {
            SSL_free(ssl);
            return NULL;
        }
        pump();
        usleep(100);
    }
}

static bool ssl_io(SSL *ssl, void *p, size_t len, bool wr)
{
    uint8_t *b = p;
    uint64_t end = util_mono_ms() + 3000;
    while (len && util_mono_ms() < end) {
        int n = wr ? SSL_write(ssl, b, (int)len) : SSL_read(ssl, b, (int)len);
        if (n > 0) {
            b += n;
            len -= (size_t)n;
            continue;
        }
        int e = SSL_get_error(ssl, n);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return false;
        pump();
        usleep(100);
    }
    pump();
    return len == 0;
}

/* GO on NAME over SSL: the final reply type. */
static uint32_t ssl_go(SSL *ssl, const char *name)
{
    uint8_t b[600], h[NBD_OPT_HDR_LEN];
    int n = nbd_encode_opt_go(b, sizeof(b), name, (uint32_t)strlen(name), NULL, 0);
    nbd_encode_opt_hdr(h, sizeof(h), NBD_OPT_GO, (uint32_t)n);
    if (!ssl_io(ssl, h, sizeof(h), true) || !ssl_io(ssl, b, (size_t)n, true)) return 0;
    for (;;) {
        uint8_t rh[NBD_OPT_REPLY_HDR_LEN], p[1200];
        struct nbd_opt_reply r;
        if (!ssl_io(ssl, rh, sizeof(rh), false) ||
            nbd_decode_opt_reply_hdr(rh, sizeof(rh), &r) <= 0 ||
            r.len > sizeof(p) || (r.len && !ssl_io(ssl, p, r.len, false)))
            return 0;
        if (r.type != NBD_REP_INFO) return r.type;
    }
}

/* STARTTLS with a PSK: TLS 1.3 and 1.2 both give the client its
 * identity, a volume attached for it opens and one for another client
 * does not; a wrong key and an unknown identity fail the handshake. */
TEST(starttls_psk)
{
    struct agent_nbd_opts o;
    struct nbd_tls *t = tls_fixture(NBD_TLS_ON, &o);
    CHECK(t && nbd_tls_psk_count(t) == 2);
    agent_vol_mem_add(vols, "vm1-disk", VOL_SIZE, false);
    agent_vol_mem_set_attachment(vols, "vm1-disk", false, "vm1");
    int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};
    for (int i = 0; i < 2; i++) {
        int fd = tcp_start();
        SSL *ssl = cli_tls(fd, "vm1", psk_vm1, versions[i]);
        CHECK(ssl != NULL);
        if (!ssl) continue;
        CHECK_EQ(SSL_version(ssl), versions[i]);
        CHECK_EQ(ssl_go(ssl, "vm1-disk"), NBD_REP_ACK);
        SSL_free(ssl);
        close(fd);
        fd = tcp_start();
        ssl = cli_tls(fd, "vm2", "ffeeddccbbaa99887766554433221100", versions[i]);
        CHECK(ssl && ssl_go(ssl, "vm1-disk") == NBD_REP_ERR_POLICY);
        CHECK(ssl && ssl_go(ssl, "vol0") == NBD_REP_ACK); /* names no client: anyone's, mode on */
        if (ssl) SSL_free(ssl);
        close(fd);
    }
    struct agent_nbd_stats s;
    agent_nbd_stats(srv, &s);
    uint64_t failed0 = s.tls_failed;
    int fd = tcp_start();
    CHECK(cli_tls(fd, "vm1", "ffffffffffffffffffffffffffffffff", TLS1_3_VERSION) == NULL);
    CHECK(cli_eof(fd, 2000));
    close(fd);
    fd = tcp_start();
    CHECK(cli_tls(fd, "vm9", psk_vm1, TLS1_3_VERSION) == NULL);
    CHECK(cli_eof(fd, 2000));
    close(fd);
    pump_ms(20);
    agent_nbd_stats(srv, &s);
    CHECK_EQ(s.tls_failed, failed0 + 2);
    CHECK(s.tls_ok >= 4);
    check_no_violations();
    agent_nbd_free(srv);
    srv = NULL;
    nbd_tls_free(t);
}

/* Plaintext the client sent after STARTTLS, before the ACK, is refused
 * (CVE-2021-3716); STARTTLS twice is ERR_INVALID; TLS forgets what was
 * negotiated before it. */
TEST(starttls_refuses_pipelined_plaintext)
{
    struct agent_nbd_opts o;
    struct nbd_tls *t = tls_fixture(NBD_TLS_ON, &o);
    CHECK(t != NULL);
    int fd = tcp_start();
    uint8_t b[2 * NBD_OPT_HDR_LEN];
    nbd_encode_opt_hdr(b, NBD_OPT_HDR_LEN, NBD_OPT_STARTTLS, 0);
    nbd_encode_opt_hdr(b + NBD_OPT_HDR_LEN, NBD_OPT_HDR_LEN, NBD_OPT_STRUCTURED_REPLY, 0);
    cli_send(fd, b, sizeof(b));
    CHECK(cli_eof(fd, 2000));
    close(fd);
    struct agent_nbd_stats s;
    agent_nbd_stats(srv, &s);
    CHECK_EQ(s.denied, 1);
    fd = tcp_start();
    uint8_t p[256];
    send_opt(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    CHECK_EQ(recv_reply(fd, p, sizeof(p), NULL), NBD_REP_ACK);
    SSL *ssl = cli_tls(fd, "vm1", psk_vm1, TLS1_3_VERSION);
    CHECK(ssl != NULL);
    uint8_t h[NBD_OPT_HDR_LEN], rh[NBD_OPT_REPLY_HDR_LEN];
    struct nbd_opt_reply r;
    nbd_encode_opt_hdr(h, sizeof(h), NBD_OPT_STARTTLS, 0);
    CHECK(ssl && ssl_io(ssl, h, sizeof(h), true) && ssl_io(ssl, rh, sizeof(rh), false));
    CHECK(nbd_decode_opt_reply_hdr(rh, sizeof(rh), &r) > 0 && r.type == NBD_REP_ERR_INVALID);
    uint8_t msg[1100];
    CHECK(r.len < sizeof(msg) && ssl_io(ssl, msg, r.len, false));
    /* STRUCTURED_REPLY again: accepted, since TLS dropped the first. */
    nbd_encode_opt_hdr(h, sizeof(h), NBD_OPT_STRUCTURED_REPLY, 0);
    CHECK(ssl && ssl_io(ssl, h, sizeof(h), true) && ssl_io(ssl, rh, sizeof(rh), false));
    CHECK(nbd_decode_opt_reply_hdr(rh, sizeof(rh), &r) > 0 && r.type == NBD_REP_ACK);
    if (ssl) SSL_free(ssl);
    close(fd);
    check_no_violations();
    agent_nbd_free(srv);
    srv = NULL;
    nbd_tls_free(t);
}

/* FORCEDTLS over TCP: every option but STARTTLS and ABORT is
 * ERR_TLS_REQD, EXPORT_NAME ends the session; after TLS a volume opens
 * only for the client its attachment names.  A Unix socket offers TLS but
 * does not require it. */
TEST(starttls_required)
{
    struct agent_nbd_opts o;
    struct nbd_tls *t = tls_fixture(NBD_TLS_REQUIRE, &o);
    CHECK(t != NULL);
    agent_vol_mem_add(vols, "vm1-disk", VOL_SIZE, false);
    agent_vol_mem_set_attachment(vols, "vm1-disk", false, "vm1");
    int fd = tcp_start();
    uint8_t p[1200];
    send_opt(fd, NBD_OPT_LIST, NULL, 0);
    CHECK_EQ(recv_reply(fd, p, sizeof(p), NULL), NBD_REP_ERR_TLS_REQD);
    CHECK_EQ(cli_go(fd, NBD_OPT_GO, "vol0", NULL, NULL), NBD_REP_ERR_TLS_REQD);
    SSL *ssl = cli_tls(fd, "vm1", psk_vm1, TLS1_3_VERSION);
    CHECK(ssl != NULL);
    CHECK(ssl && ssl_go(ssl, "vol0") == NBD_REP_ERR_POLICY); /* names no client */
    CHECK(ssl && ssl_go(ssl, "vm1-disk") == NBD_REP_ACK);
    if (ssl) SSL_free(ssl);
    close(fd);
    fd = tcp_start();
    send_opt(fd, NBD_OPT_EXPORT_NAME, "vol0", 4);
    CHECK(cli_eof(fd, 2000));
    close(fd);
    fd = cli_open("vol0", false); /* a socketpair: a Unix socket */
    CHECK(fd >= 0);
    close(fd);
    pump_ms(20);
    check_no_violations();
    agent_nbd_free(srv);
    srv = NULL;
    nbd_tls_free(t);
}

/* One volume's QoS (agent_qos.h) is shared by its connections: 10 writes
 * over two connections at 20 I/Os per second take about (10 - 2) / 20 s
 * (a full bucket lets two go at once), the limiter counts 8 delayed, and
 * a FLUSH queued behind held writes is answered at once. */
TEST(qos_shared_by_connections)
{
    fixture(NULL);
    struct agent_qos_opts qo = {.tag = "test"};
    struct agent_qos *qs = agent_qos_new(rx, &qo);
    struct agent_qos_vol *qv = agent_qos_vol_get(qs, "vol0");
    CHECK(qs && qv);
    struct qos_limits own, eff;
    memset(&own, 0, sizeof(own));
    qos_field_set(&own, QOS_SET_LIMIT(QOS_IOPS), 20);
    qos_effective(&own, NULL, &eff);
    agent_qos_vol_set(qv, &eff);
    agent_vol_mem_set_qos(vols, qv);
    int a = cli_open("vol0", false), b = cli_open("vol0", false);
    uint64_t t0 = util_mono_ms();
    for (uint64_t i = 0; i < 5; i++) {
        send_req(a, NBD_CMD_WRITE, 0, 1 + i, i * 4096, 4096, wbuf);
        send_req(b, NBD_CMD_WRITE, 0, 11 + i, (8 + i) * 4096, 4096, wbuf);
    }
    send_req(a, NBD_CMD_FLUSH, 0, 100, 0, 0, NULL);
    int flush_at = -1;
    for (int i = 0; i < 6; i++) {
        uint64_t ck = 0;
        CHECK_EQ(recv_simple(a, &ck, NULL, 0), 0);
        if (ck == 100) flush_at = i;
    }
    for (int i = 0; i < 5; i++) CHECK_EQ(recv_simple(b, NULL, NULL, 0), 0);
    uint64_t took = util_mono_ms() - t0;
    CHECK(flush_at >= 0 && flush_at <= 2);
    CHECK(took >= 350 && took <= 1500);
    struct cJSON *j = cJSON_CreateObject();
    agent_qos_vol_json(qv, j);
    struct cJSON *q = cJSON_GetObjectItem(j, "qos");
    CHECK_EQ((int)cJSON_GetObjectItem(q, "delayed")->valuedouble, 8);
    CHECK_EQ((int)cJSON_GetObjectItem(cJSON_GetObjectItem(q, "ios"), "write")->valuedouble, 10);
    CHECK(cJSON_GetObjectItem(q, "throttled_seconds")->valuedouble > 0.3);
    cJSON_Delete(j);
    close(a);
    close(b);
    pump_ms(20);
    agent_vol_mem_set_qos(vols, NULL);
    agent_qos_vol_put(qv);
    agent_qos_stop(qs);
    agent_qos_free(qs);
    check_no_violations();
}

/* Metrics count requests per command. */
TEST(metrics_per_command)
{
    fixture(NULL);
    int fd = cli_open("vol0", false);
    send_req(fd, NBD_CMD_FLUSH, 0, 1, 0, 0, NULL);
    CHECK_EQ(recv_simple(fd, NULL, NULL, 0), 0);
    struct metrics_counter *m =
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
