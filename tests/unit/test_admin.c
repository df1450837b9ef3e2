/* test_admin.c: the admin HTTP endpoint (src/net/admin.c), CONTRACT.md §3
 * admin HTTP JSON: routing codes, bearer token, body limits, content type. */
#include "base/bd.h"
#include "net/admin.h"
#include "runtime/metrics.h"
#include "runtime/reactor.h"
#include "tap.h"
#include "testlib.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct reactor *rx;
static struct admin *adm;
static int port;
static const char *token = "s3cret-token-0123456789";
static const char *read_token = "r3ad-only-token-0123456";
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
        struct admin_auth auth = {.admin_token = token, .read_token = read_token};
        if (admin_new(rx, addr, "test", &auth, &adm) == 0) break;
    }
    admin_route(adm, "GET", "/v1/volumes/*", false, on_get, NULL);
    admin_route(adm, "GET", "/v1/volumes", false, on_get, NULL);
    admin_route(adm, "POST", "/v1/volumes", true, on_post, NULL);
    metrics_counter("blockd_test_total", "A test counter", "");
}

/* Exact and prefix routes match; the tail is the part after the prefix. */
TEST(routes)
{
    fixture();
    char body[4096];
    CHECK_EQ(testlib_http(rx, port, "GET /v1/volumes/vol0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  "Authorization: Bearer r3ad-only-token-0123456\r\n\r\n", body, sizeof(body)),
             200);
    CHECK(strstr(body, "\"vol0\"") != NULL);
    CHECK_EQ(testlib_http(rx, port, "GET /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  "Authorization: Bearer s3cret-token-0123456789\r\n\r\n", NULL, 0),
             200);
}

/* Reads need a token too (a volume list is what impersonation needs);
 * the read token reads and cannot mutate; liveness and metrics are open. */
TEST(scopes)
{
    fixture();
    int before = mutations;
    CHECK_EQ(testlib_http(rx, port, "GET /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", NULL, 0),
             401);
    CHECK_EQ(testlib_http(rx, port, "GET /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  "Authorization: Bearer nope\r\n\r\n", NULL, 0), 401);
    CHECK_EQ(testlib_http(rx, port, "POST /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  "Authorization: Bearer r3ad-only-token-0123456\r\n"
                  "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", NULL, 0), 403);
    CHECK_EQ(mutations, before);
    char body[64];
    CHECK_EQ(testlib_http(rx, port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", body,
                  sizeof(body)), 200);
    CHECK(strcmp(body, "ok\n") == 0);
}

/* Unknown path is 404, known path with another method 405. */
TEST(not_found_and_method)
{
    fixture();
    CHECK_EQ(testlib_http_get(rx, port, "/nope", NULL, 0), 404);
    CHECK_EQ(testlib_http(rx, port,
                          "DELETE /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                          NULL, 0),
             405);
}

/* Mutations need the bearer token; wrong, missing or query tokens are 401. */
TEST(token)
{
    fixture();
    int before = mutations;
    CHECK_EQ(testlib_http(rx, port,
                          "POST /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                          "Content-Length: 0\r\n\r\n",
                          NULL, 0),
             401);
    CHECK_EQ(testlib_http(rx, port,
                          "POST /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                          "Authorization: Bearer wrong\r\nContent-Length: 0\r\n\r\n",
                          NULL, 0),
             401);
    CHECK_EQ(testlib_http(rx, port,
                          "POST /v1/volumes?token=s3cret-token-0123456789 HTTP/1.1\r\nHost: x\r\n"
                          "Connection: close\r\nContent-Length: 0\r\n\r\n",
                          NULL, 0),
             401);
    CHECK_EQ(mutations, before);
    CHECK_EQ(testlib_http(rx, port,
                          "POST /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                          "Authorization: Bearer s3cret-token-0123456789\r\n"
                          "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
                          NULL, 0),
             201);
    CHECK_EQ(mutations, before + 1);
}

/* A body without Content-Type: application/json is 415; over 64 KiB, 413. */
TEST(content_type_and_size)
{
    fixture();
    CHECK_EQ(testlib_http(rx, port,
                          "POST /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                          "Authorization: Bearer s3cret-token-0123456789\r\n"
                          "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}",
                          NULL, 0),
             415);
    static char big[80000];
    int n = snprintf(big, sizeof(big), "POST /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Authorization: Bearer s3cret-token-0123456789\r\n"
                     "Content-Type: application/json\r\nContent-Length: 70000\r\n\r\n");
    memset(big + n, ' ', 70000);
    big[n + 70000] = 0;
    CHECK_EQ(testlib_http(rx, port, big, NULL, 0), 413);
}

/* /metrics renders Prometheus text and never contains the token. */
TEST(metrics)
{
    fixture();
    char body[65536];
    CHECK_EQ(testlib_http_get(rx, port, "/metrics", body, sizeof(body)), 200);
    CHECK(strstr(body, "# TYPE blockd_test_total counter") != NULL);
    CHECK(strstr(body, "blockd_admin_replies_total{code=\"4xx\"}") != NULL);
    CHECK(strstr(body, token) == NULL);
}
