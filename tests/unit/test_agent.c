/* test_agent.c: the agent role (src/roles/agent/agent.c) over the in-memory
 * volume back end: start from a config, serve NBD on a Unix socket, report
 * /v1/status and /metrics, stop in order (connections drained, then the
 * volumes), and unwind a failed start.
 *
 * Fixture: a config parsed from text with the NBD socket in a temp dir and
 * admin HTTP on a port probed from 19000 + pid; a raw NBD client over the
 * Unix socket; HTTP over a raw TCP socket.  The reactor is pumped by the
 * helpers; every wait has a deadline. */
#include "agent_vol_mem.h"
#include "base/bd.h"
#include "config/config.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "net/nbd.h"
#include "runtime/reactor.h"
#include "roles/agent/agent.h"
#include "tap.h"
#include "testlib.h"
#include "base/util.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- Fixture ---------------------------------------------------------------------- */

static struct reactor *rx;
static struct cfg cfg;
static struct role role;
static int admin_port;
static char sock_path[256];
#define TOKEN "agent-test-token-0123456789"

static int load_config(int port, const char *nbd_listen)
{
    char text[2048], dir[200];
    util_strlcpy(dir, tap_tmpdir(), sizeof(dir)); /* each call makes a new one */
    snprintf(sock_path, sizeof(sock_path), "%s/nbd.sock", dir);
    /* Every admin call but /metrics and /healthz needs the token. */
    char token[260];
    snprintf(token, sizeof(token), "%s/token", dir);
    if (util_write_file_atomic(token, TOKEN "\n", sizeof(TOKEN), 0600) < 0) return -EIO;
    snprintf(text, sizeof(text),
             "{\"cluster_id\": \"t\", \"insecure_plaintext\": true, \"admin_token_file\": \"%s\",\n"
             " \"agent\": {\"id\": \"a1\", \"nbd_unix\": \"%s\", %s%s%s"
             "\"admin\": \"127.0.0.1:%d\", \"cache_dir\": \"%s/cache\", "
             "\"proxies\": [\"127.0.0.1:1\"], \"io_timeout_ms\": 500}}",
             token, sock_path, nbd_listen ? "\"nbd_listen\": \"" : "", nbd_listen ? nbd_listen : "",
             nbd_listen ? "\", " : "", port, dir);
    char err[256];
    int rc = config_parse("test", text, strlen(text), &cfg, err, sizeof(err));
    if (rc < 0) fprintf(stderr, "# config: %s\n", err);
    return rc;
}

/* Start the role with admin on the first free port from 19000 + pid. */
static int start(void)
{
    if (!rx) rx = reactor_new();
    log_set_level(LOG_ERROR);
    char err[256];
    for (admin_port = 19000 + (getpid() % 5000); admin_port < 65000; admin_port += 7) {
        if (load_config(admin_port, NULL) < 0) return -1;
        memset(&role, 0, sizeof(role));
        role.ops = &agent_role_ops;
        if (agent_role_ops.start(&role, rx, &cfg, 0, err, sizeof(err)) == 0) return 0;
        config_free(&cfg);
        if (!strstr(err, "admin")) {
            fprintf(stderr, "# start: %s\n", err);
            return -1;
        }
    }
    return -1;
}

/* ---- Helpers ---------------------------------------------------------------------- */

static int recv_all(int fd, void *p, size_t len)
{
    uint8_t *b = p;
    uint64_t end = util_mono_ms() + 3000;
    while (len && util_mono_ms() < end) {
        ssize_t n = recv(fd, b, len, MSG_DONTWAIT);
        if (n == 0) return -1;
        if (n > 0) {
            b += n;
            len -= (size_t)n;
        } else {
            event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
            usleep(100);
        }
    }
    return len ? -1 : 0;
}

/* Connect to the NBD Unix socket and GO on NAME.  The fd, or -1. */
static int nbd_open(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    util_strlcpy(un.sun_path, sock_path, sizeof(un.sun_path));
    if (connect(fd, (struct sockaddr *)&un, sizeof(un)) < 0) return -1;
    uint8_t b[512];
    if (recv_all(fd, b, NBD_GREETING_LEN) < 0) return -1;
    nbd_encode_client_flags(b, 4, NBD_FLAG_C_FIXED_NEWSTYLE);
    int n = nbd_encode_opt_go(b + 4 + 16, sizeof(b) - 20, name, (uint32_t)strlen(name), NULL, 0);
    nbd_encode_opt_hdr(b + 4, 16, NBD_OPT_GO, (uint32_t)n);
    if (send(fd, b, 20 + (size_t)n, MSG_NOSIGNAL) != 20 + n) return -1;
    for (;;) {
        struct nbd_opt_reply r;
        if (recv_all(fd, b, 20) < 0 || nbd_decode_opt_reply_hdr(b, 20, &r) <= 0) return -1;
        if (r.len > sizeof(b) || (r.len && recv_all(fd, b, r.len) < 0)) return -1;
        if (r.type == NBD_REP_ACK) return fd;
        if (r.type != NBD_REP_INFO) return -1;
    }
}

/* GET PATH on the admin port; the status code, body into BODY. */
static int http_get(const char *path, char *body, size_t cap)
{
    char req[512];
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
             "Authorization: Bearer " TOKEN "\r\n\r\n", path);
    return testlib_http(rx, admin_port, req, body, cap);
}

static int done_count;
static void on_done(struct role *r)
{
    (void)r;
    done_count++;
}

/* ---- Scenarios ---------------------------------------------------------------------- */

/* The role serves NBD, reports status and metrics, and stops in order. */
TEST(start_serve_status_stop)
{
    CHECK_EQ(start(), 0);
    CHECK(strcmp(role.tag, "agent") == 0);
    struct agent_vols *vs = agent_vol_mem_last();
    CHECK(vs != NULL);
    agent_vol_mem_add(vs, "vol0", 1u << 20, false);
    int fd = nbd_open("vol0");
    CHECK(fd >= 0);
    uint8_t h[NBD_REQUEST_LEN + 4096];
    struct nbd_request rq = {.type = NBD_CMD_WRITE, .cookie = 9, .len = 4096};
    nbd_encode_request(h, sizeof(h), &rq);
    memset(h + NBD_REQUEST_LEN, 7, 4096);
    CHECK_EQ(send(fd, h, sizeof(h), MSG_NOSIGNAL), (ssize_t)sizeof(h));
    uint8_t rep[NBD_SIMPLE_REPLY_LEN];
    CHECK_EQ(recv_all(fd, rep, sizeof(rep)), 0);
    uint32_t err;
    uint64_t ck;
    CHECK_EQ(nbd_decode_simple_reply(rep, sizeof(rep), &err, &ck), 16);
    CHECK(err == 0 && ck == 9);

    static char body[1 << 17];
    CHECK_EQ(http_get("/v1/status", body, sizeof(body)), 200);
    cJSON *j = cJSON_Parse(body);
    CHECK(j != NULL);
    const cJSON *nbd = cJSON_GetObjectItem(j, "nbd");
    CHECK(nbd && cJSON_GetObjectItem(nbd, "connections")->valueint == 1);
    CHECK(cJSON_GetObjectItem(nbd, "handshakes")->valueint == 0);
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(nbd, "exports"), "vol0")->valueint == 1);
    CHECK(cJSON_GetObjectItem(j, "volumes") != NULL);
    CHECK(strcmp(cJSON_GetObjectItem(j, "id")->valuestring, "a1") == 0);
    cJSON_Delete(j);
    CHECK_EQ(http_get("/metrics", body, sizeof(body)), 200);
    CHECK(strstr(body, "blockd_nbd_requests_total{role=\"agent\",op=\"write\"} 1") != NULL);
    CHECK(strstr(body, "blockd_nbd_request_latency_us_bucket") != NULL);
    CHECK(strstr(body, "blockd_nbd_received_bytes_total{role=\"agent\"} 4096") != NULL);
    CHECK(strstr(body, "blockd_nbd_connections{role=\"agent\"} 1") != NULL);

    done_count = 0;
    agent_role_ops.stop(&role, on_done);
    uint8_t x;
    CHECK_EQ(recv_all(fd, &x, 1), -1); /* the NBD connection is closed */
    testlib_pump(rx, 50);
    CHECK_EQ(done_count, 1);
    struct agent_vol_mem_stats st;
    agent_vol_mem_stats(vs, &st);
    CHECK_EQ(st.attached, 0);
    CHECK_EQ(st.violations, 0);
    CHECK(access(sock_path, F_OK) != 0); /* the listener is gone */
    close(fd);
    agent_role_ops.free(&role);
    CHECK(agent_vol_mem_last() == NULL);
    config_free(&cfg);
}

/* A failed start (NBD port taken) reports why and leaves nothing open. */
TEST(failed_start_unwinds)
{
    if (!rx) rx = reactor_new();
    int blocker = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ(bind(blocker, (struct sockaddr *)&sin, sizeof(sin)), 0);
    listen(blocker, 1);
    socklen_t sl = sizeof(sin);
    getsockname(blocker, (struct sockaddr *)&sin, &sl);
    char taken[64];
    snprintf(taken, sizeof(taken), "127.0.0.1:%u", ntohs(sin.sin_port));
    int port = 19000 + (getpid() % 5000) + 3;
    CHECK_EQ(load_config(port, taken), 0);
    memset(&role, 0, sizeof(role));
    char err[256] = "";
    CHECK(agent_role_ops.start(&role, rx, &cfg, 0, err, sizeof(err)) < 0);
    CHECK(strstr(err, "nbd_listen") != NULL);
    CHECK(agent_vol_mem_last() == NULL); /* the registry was freed */
    CHECK(access(sock_path, F_OK) != 0);
    close(blocker);
    config_free(&cfg);
    reactor_free(rx);
    rx = NULL;
    metrics_reset();
}
