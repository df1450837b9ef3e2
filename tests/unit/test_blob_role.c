/* test_blob_role.c: the blob role in-process (src/roles/blob/blob.c): the
 * NODE_HEARTBEAT it sends to every proxy (node id, listen address,
 * capacity, used bytes, blob count, bad count, read-only flag), a put and a
 * get through a real connection, and the asynchronous stop.
 *
 * Fixture: one reactor; the role listens on a Unix socket in a temp dir; a
 * fake proxy (a listener whose connections record heartbeats and answer
 * them) stands where the proxies will be. */
#include "base/bd.h"
#include "config/config.h"
#include "net/conn.h"
#include "net/listener.h"
#include "runtime/reactor.h"
#include "roles/blob/blob.h"
#include "tap.h"
#include "testlib.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Fixture ------------------------------------------------------------------ */

static struct reactor *rx;
static struct conn_auth auth;
static struct conn_opts copts;
static struct listener *proxy_lis;
static struct wire_node_heartbeat_req last_hb;
static char last_addr[128];
static int n_hb;

static void proxy_on_request(struct conn *c, struct conn_frame *f, void *arg)
{
    (void)arg;
    if (f->hdr.type != WIRE_NODE_HEARTBEAT ||
        wire_decode_node_heartbeat_req(f->body, f->hdr.len, f->hdr.payload_len, &last_hb) < 0) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "not a heartbeat");
        return;
    }
    wire_str_copy(last_hb.addr, last_addr, sizeof(last_addr));
    n_hb++;
    struct wire_node_heartbeat_resp r = {.leader_id = 3};
    uint8_t buf[16];
    int n = wire_encode_node_heartbeat_resp(buf, sizeof(buf), &r);
    conn_reply(c, &f->hdr, buf, (size_t)n, NULL);
}

static const struct conn_ops proxy_ops = {.on_request = proxy_on_request};

static void proxy_on_accept(int fd, void *arg)
{
    (void)arg;
    conn_accept(rx, fd, &proxy_ops, NULL, &copts);
}

static struct cfg cfg;
static struct cfg_blob bcfg;
static struct role role;

static int start_role(uint64_t fsync_eio_after)
{
    const char *tmp = tap_tmpdir();
    if (!rx) rx = reactor_new();
    memset(&cfg, 0, sizeof(cfg));
    memset(&bcfg, 0, sizeof(bcfg));
    memset(&role, 0, sizeof(role));
    util_strlcpy(cfg.cluster_id, "roletest", sizeof(cfg.cluster_id));
    cfg.insecure_plaintext = true;
    cfg.blobs = &bcfg;
    cfg.n_blobs = 1;
    bcfg.id = 42;
    snprintf(bcfg.listen, sizeof(bcfg.listen), "unix:%s/blob.sock", tmp);
    snprintf(bcfg.data_dir, sizeof(bcfg.data_dir), "%s/data", tmp);
    snprintf(bcfg.proxies[0], sizeof(bcfg.proxies[0]), "unix:%s/proxy.sock", tmp);
    bcfg.n_proxies = 1;
    bcfg.capacity_bytes = 1u << 30;
    bcfg.segment_bytes = 1u << 20;
    bcfg.max_blob_bytes = 1u << 16;
    bcfg.compress_min_saving_pct = 10;
    bcfg.heartbeat_ms = 50;
    bcfg.fault.fsync_eio_after = fsync_eio_after;
    conn_auth_init(&auth, cfg.cluster_id, NULL, 0, WIRE_ROLE_PROXY, "fake-proxy");
    copts = (struct conn_opts){.tag = "proxy", .auth = &auth};
    char addr[300];
    snprintf(addr, sizeof(addr), "unix:%s/proxy.sock", tmp);
    if (listener_new(rx, addr, proxy_on_accept, NULL, &proxy_lis) < 0) return -1;
    n_hb = 0;
    char err[256] = "";
    role.ops = &blob_role_ops;
    int rc = blob_role_ops.start(&role, rx, &cfg, 0, err, sizeof(err));
    if (rc < 0) printf("# start: %s\n", err);
    return rc;
}

static int stopped;
static void on_stopped(struct role *r)
{
    (void)r;
    stopped = 1;
}
static bool is_stopped(void)
{
    return stopped != 0;
}

static void stop_role(void)
{
    stopped = 0;
    blob_role_ops.stop(&role, on_stopped);
    testlib_run_until(rx, is_stopped, 10000);
    blob_role_ops.free(&role);
    listener_free(proxy_lis);
    proxy_lis = NULL;
}

/* A client call to the role, waited for. */
static struct conn *cli;
static int cli_up, call_done, call_err;
static void cli_on_up(struct conn *c, void *arg)
{
    (void)c;
    (void)arg;
    cli_up = 1;
}
static const struct conn_ops cli_ops = {.on_up = cli_on_up};
static bool is_up(void)
{
    return cli_up != 0;
}
static bool is_done(void)
{
    return call_done != 0;
}
static void on_call(struct conn_call *c, int err, struct conn_frame *f)
{
    (void)c;
    (void)f;
    call_err = err;
    call_done = 1;
}

static int put_blob(uint64_t id, uint32_t len)
{
    if (!cli) {
        struct conn_auth a;
        conn_auth_init(&a, cfg.cluster_id, NULL, 0, WIRE_ROLE_CTL, "test");
        static struct conn_auth keep;
        keep = a;
        static struct conn_opts o;
        o = (struct conn_opts){.tag = "cli", .auth = &keep};
        int err;
        cli_up = 0;
        cli = conn_connect(rx, bcfg.listen, &cli_ops, NULL, &o, &err);
        if (!cli || !testlib_run_until(rx, is_up, 5000)) return -ENOTCONN;
    }
    uint8_t *data = malloc(len);
    memset(data, 7, len);
    struct wire_blob_put_req m = {.blob_id = id, .partition = 1, .epoch = 1,
                                  .csum = util_xxh3(data, len), .data_len = len};
    uint8_t buf[64];
    int n = wire_encode_blob_put_req(buf, sizeof(buf), &m);
    struct conn_payload p = {.data = data, .len = len};
    static struct conn_call call;
    call = (struct conn_call){.cb = on_call};
    call_done = 0;
    int rc = conn_call(cli, &call, WIRE_BLOB_PUT, buf, (size_t)n, &p, 5000);
    free(data);
    if (rc < 0) return rc;
    testlib_run_until(rx, is_done, 10000);
    return call_done ? call_err : -ETIMEDOUT;
}

static void close_cli(void)
{
    if (cli) conn_close(cli, 0);
    cli = NULL;
}

/* ---- Heartbeats ------------------------------------------------------------------ */

static bool three_beats(void)
{
    return n_hb >= 3;
}
static bool beat_shows_blob(void)
{
    return n_hb > 0 && last_hb.blobs == 1;
}
static bool beat_read_only(void)
{
    return n_hb > 0 && (last_hb.flags & 1);
}

/* Heartbeats reach the proxy every heartbeat_ms and describe the server;
 * the blob count follows puts. */
TEST(heartbeat_fields)
{
    CHECK(start_role(0) == 0);
    CHECK(testlib_run_until(rx, three_beats, 5000));
    CHECK_EQ(last_hb.node_id, 42);
    CHECK(strcmp(last_addr, bcfg.listen) == 0);
    CHECK_EQ(last_hb.capacity, 1u << 30);
    CHECK_EQ(last_hb.blobs, 0);
    CHECK_EQ(last_hb.n_bad, 0);
    CHECK_EQ(last_hb.flags, 0);
    CHECK_EQ(put_blob(1, 5000), 0);
    n_hb = 0;
    CHECK(testlib_run_until(rx, beat_shows_blob, 5000));
    CHECK(last_hb.used > 5000);
    close_cli();
    stop_role();
    CHECK(stopped);
}

/* After an fsync error the server says read-only in its heartbeats. */
TEST(heartbeat_read_only_after_eio)
{
    CHECK(start_role(3) == 0); /* store.meta takes two syncs; the first put's fails */
    CHECK_EQ(put_blob(1, 5000), -EIO);
    n_hb = 0;
    CHECK(testlib_run_until(rx, beat_read_only, 5000));
    close_cli();
    stop_role();
    CHECK(stopped);
}
