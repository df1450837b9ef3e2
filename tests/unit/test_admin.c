/* test_admin.c: the admin HTTP endpoint (src/net/admin.c), CONTRACT.md §3
 * admin HTTP JSON: routing codes, bearer token, body limits, content type. */
#include "bd.h"
#include "net/admin.h"
#include "net/metrics.h"
#include "net/reactor.h"
#include "tap.h"
#include "util.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct reactor *rx;
static struct admin *adm;
static int port;
static const char *token = "s3cret-token-0123456789";
static int mutations;

static void on_get(struct admin_req *r, void *arg)
{
    (void)arg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "tail", admin_req_tail(r));
    admin_reply_json(r, 200, o);
}

static void on_post(struct admin_req *r, void *arg)
{
    (void)arg;
    mutations++;
    admin_reply_json(r, 201, cJSON_CreateObject());
}

static void fixture(void)
{
    if (rx) return;
    rx = reactor_new();
    for (port = 19000 + (getpid() % 5000);; port++) {
        char addr[64];
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
        if (admin_new(rx, addr, "test", token, &adm) == 0) break;
    }
    admin_route(adm, "GET", "/v1/volumes/*", false, on_get, NULL);
    admin_route(adm, "GET", "/v1/volumes", false, on_get, NULL);
    admin_route(adm, "POST", "/v1/volumes", true, on_post, NULL);
    metrics_counter("blockd_test_total", "A test counter", "");
}

/* Send REQ, pump the reactor, return the status code; body copied to BODY. */
static int http(const char *req, char *body, size_t bodylen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) return -1;
    if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) return -1;
    static char buf[1 << 16];
    size_t got = 0;
    uint64_t end = util_mono_ms() + 3000;
    while (util_mono_ms() < end) {
        event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, MSG_DONTWAIT);
        if (n == 0) break;
        if (n > 0) got += (size_t)n;
        else usleep(500);
    }
    close(fd);
    buf[got] = 0;
    int code = 0;
    if (sscanf(buf, "HTTP/1.1 %d", &code) != 1) return -1;
    const char *b = strstr(buf, "\r\n\r\n");
    if (body) util_strlcpy(body, b ? b + 4 : "", bodylen);
    return code;
}

/* Exact and prefix routes match; the tail is the part after the prefix. */
TEST(routes)
{
    fixture();
    char body[4096];
    CHECK_EQ(http("GET /v1/volumes/vol0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", body,
                  sizeof(body)), 200);
    CHECK(strstr(body, "\"vol0\"") != NULL);
    CHECK_EQ(http("GET /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", NULL, 0),
             200);
}

/* Unknown path is 404, known path with another method 405. */
TEST(not_found_and_method)
{
    fixture();
    CHECK_EQ(http("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", NULL, 0), 404);
    CHECK_EQ(http("DELETE /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", NULL, 0),
             405);
}

/* Mutations need the bearer token; wrong, missing or query tokens are 401. */
TEST(token)
{
    fixture();
    int before = mutations;
    CHECK_EQ(http("POST /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  "Content-Length: 0\r\n\r\n", NULL, 0), 401);
    CHECK_EQ(http("POST /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  "Authorization: Bearer wrong\r\nContent-Length: 0\r\n\r\n", NULL, 0), 401);
    CHECK_EQ(http("POST /v1/volumes?token=s3cret-token-0123456789 HTTP/1.1\r\nHost: x\r\n"
                  "Connection: close\r\nContent-Length: 0\r\n\r\n", NULL, 0), 401);
    CHECK_EQ(mutations, before);
    CHECK_EQ(http("POST /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  "Authorization: Bearer s3cret-token-0123456789\r\n"
                  "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", NULL, 0), 201);
    CHECK_EQ(mutations, before + 1);
}

/* A body without Content-Type: application/json is 415; over 64 KiB, 413. */
TEST(content_type_and_size)
{
    fixture();
    CHECK_EQ(http("POST /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  "Authorization: Bearer s3cret-token-0123456789\r\n"
                  "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}", NULL, 0), 415);
    static char big[80000];
    int n = snprintf(big, sizeof(big), "POST /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Authorization: Bearer s3cret-token-0123456789\r\n"
                     "Content-Type: application/json\r\nContent-Length: 70000\r\n\r\n");
    memset(big + n, ' ', 70000);
    big[n + 70000] = 0;
    CHECK_EQ(http(big, NULL, 0), 413);
}

/* /metrics renders Prometheus text and never contains the token. */
TEST(metrics)
{
    fixture();
    char body[65536];
    CHECK_EQ(http("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", body,
                  sizeof(body)), 200);
    CHECK(strstr(body, "# TYPE blockd_test_total counter") != NULL);
    CHECK(strstr(body, "blockd_admin_replies_total{code=\"4xx\"}") != NULL);
    CHECK(strstr(body, token) == NULL);
}
