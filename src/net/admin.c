/* admin.c: see admin.h.
 *
 * evhttp calls one generic callback for every request.  It decodes the
 * URI, finds the route, applies the checks in the order a client can fix
 * them (404/405, 401, 415), copies the body, and hands an admin_req to the
 * handler.  The admin_req outlives the callback when the handler replies
 * later; a close callback on the connection marks it orphaned, so a late
 * reply frees our state without touching the evhttp request.
 *
 * Replies are counted per code class in metrics; request paths are not
 * logged with their query strings (a token in a query would leak). */
#include "net/admin.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"
#include "runtime/metrics.h"
#include "net/tls.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct route {
    char method[8];
    char *path;       /* without the trailing "*" for prefix routes */
    bool prefix;
    int scope;        /* enum admin_scope */
    admin_handler fn;
    void *arg;
    struct route *next;
};

struct admin {
    struct evhttp *http;
    char tag[32];
    struct admin_auth auth;    /* tokens and TLS context borrowed from the config */
    unsigned n_conns;          /* HTTPS connections open (their SSL not yet freed) */
    uint64_t refused, last_refuse_log_ms;
    struct route *routes;
    struct admin_req *live; /* requests handed to handlers, not yet replied */
};

struct admin_req {
    struct admin *a;
    struct evhttp_request *req; /* NULL once the client went away */
    char method[8];
    char *path;
    char *tail;
    char *body;
    size_t body_len;
    struct evkeyvalq query;
    bool have_query;
    struct admin_req *next, *prev; /* in a->live */
};

static struct metrics_counter *m_replies[6];

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_HEAD: return "HEAD";
    default: return "OTHER";
    }
}

static void count_reply(int code)
{
    int cls = code / 100;
    if (cls >= 1 && cls <= 5) metric_inc(m_replies[cls]);
}

/* ---- replies -------------------------------------------------------------- */

static void req_release(struct admin_req *r)
{
    if (r->a) {
        if (r->prev) r->prev->next = r->next;
        else r->a->live = r->next;
        if (r->next) r->next->prev = r->prev;
    }
    if (r->req) evhttp_connection_set_closecb(evhttp_request_get_connection(r->req), NULL, NULL);
    if (r->have_query) evhttp_clear_headers(&r->query);
    free(r->path);
    free(r->tail);
    free(r->body);
    free(r);
}

static void send_reply(struct evhttp_request *req, int code, const char *ctype, const char *body,
                       size_t len)
{
    count_reply(code);
    struct evbuffer *buf = evbuffer_new();
    if (buf && len) evbuffer_add(buf, body, len);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (ctype) evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "Cache-Control", "no-store");
    const char *reason = code == 200 ? "OK" : code == 201 ? "Created" : code == 204 ? "No Content"
                       : code == 400 ? "Bad Request" : code == 401 ? "Unauthorized"
                       : code == 404 ? "Not Found" : code == 405 ? "Method Not Allowed"
                       : code == 409 ? "Conflict" : code == 413 ? "Payload Too Large"
                       : code == 415 ? "Unsupported Media Type" : code == 503 ? "Service Unavailable"
                       : code >= 500 ? "Error" : "Status";
    if (code == 401) evhttp_add_header(h, "WWW-Authenticate", "Bearer");
    evhttp_send_reply(req, code, reason, buf);
    if (buf) evbuffer_free(buf);
}

static void send_error_raw(struct evhttp_request *req, int code, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", msg);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (s) {
        size_t n = strlen(s);
        send_reply(req, code, "application/json", s, n);
        free(s);
    } else {
        send_reply(req, code, "application/json", "{}", 2);
    }
}

void admin_reply_text(struct admin_req *r, int code, const char *content_type, const char *text,
                      size_t len)
{
    if (r->req) send_reply(r->req, code, content_type, text, len);
    req_release(r);
}

void admin_reply_json(struct admin_req *r, int code, cJSON *body)
{
    char *s = body ? cJSON_Print(body) : NULL;
    if (body) cJSON_Delete(body);
    if (r->req) {
        if (body && !s) {
            send_error_raw(r->req, 500, "out of memory");
        } else if (s) {
            size_t n = strlen(s);
            s[n] = 0;
            char *t = realloc(s, n + 2); /* a trailing newline for curl users */
            if (t) {
                s = t;
                s[n++] = '\n';
                s[n] = 0;
            }
            send_reply(r->req, code, "application/json", s, n);
        } else {
            send_reply(r->req, code, NULL, NULL, 0);
        }
    }
    free(s);
    req_release(r);
}

void admin_reply_error(struct admin_req *r, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (r->req) send_error_raw(r->req, code, msg);
    req_release(r);
}

/* ---- dispatch ------------------------------------------------------------- */

static void on_client_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct admin_req *r = arg;
    r->req = NULL; /* evhttp frees the request; our later reply only cleans up */
}

static bool token_is(const char *t, const char *want)
{
    return want && want[0] && util_ct_equal(t, strlen(t), want, strlen(want));
}

/* The scope the request's bearer token grants: ADMIN_WRITE (admin token),
 * ADMIN_READ (read token) or -1 (none, or wrong). */
static int bearer_scope(struct admin *a, struct evhttp_request *req)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) return -1;
    const char *t = h + 7;
    /* Both comparisons always run: timing says nothing about which. */
    bool admin = token_is(t, a->auth.admin_token);
    bool read = token_is(t, a->auth.read_token);
    return admin ? ADMIN_WRITE : read ? ADMIN_READ : -1;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct admin *a = arg;
    const char *method = method_name(evhttp_request_get_command(req));
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *raw_path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *raw_query = uri ? evhttp_uri_get_query(uri) : NULL;
    if (!raw_path || !*raw_path) raw_path = "/";
    char *path = evhttp_uridecode(raw_path, 0, NULL);
    if (!path) {
        send_error_raw(req, 500, "out of memory");
        return;
    }
    if (strlen(path) != strlen(raw_path) && memchr(path, 0, strlen(raw_path))) {
        send_error_raw(req, 400, "NUL in path");
        free(path);
        return;
    }

    /* Find the route: exact path, or the longest matching prefix. */
    struct route *match = NULL;
    bool path_known = false;
    for (struct route *rt = a->routes; rt; rt = rt->next) {
        bool hit = rt->prefix ? strncmp(path, rt->path, strlen(rt->path)) == 0 &&
                                    path[strlen(rt->path)] != 0
                              : strcmp(path, rt->path) == 0;
        if (!hit) continue;
        path_known = true;
        if (strcmp(rt->method, method) == 0 &&
            (!match || strlen(rt->path) > strlen(match->path)))
            match = rt;
    }
    if (!match) {
        send_error_raw(req, path_known ? 405 : 404,
                       path_known ? "method not allowed" : "no such endpoint");
        free(path);
        return;
    }
    if (match->scope != ADMIN_PUBLIC) {
        if (raw_query && (strstr(raw_query, "token") || strstr(raw_query, "auth"))) {
            send_error_raw(req, 401, "credentials belong in the Authorization header");
            free(path);
            return;
        }
        int granted = bearer_scope(a, req);
        if (granted < 0) {
            log_warn(a->tag, "admin: %s %s refused: missing or wrong bearer token", method, path);
            send_error_raw(req, 401, "a valid bearer token is required");
            free(path);
            return;
        }
        if (match->scope == ADMIN_WRITE && granted != ADMIN_WRITE) {
            log_warn(a->tag, "admin: %s %s refused: the read token cannot change anything", method,
                     path);
            send_error_raw(req, 403, "this call needs the admin token, not the read token");
            free(path);
            return;
        }
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t blen = evbuffer_get_length(in);
    if (blen > ADMIN_MAX_BODY) {
        send_error_raw(req, 413, "body too large");
        free(path);
        return;
    }
    if (blen > 0) {
        const char *ct =
            evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
        if (!ct || strncmp(ct, "application/json", 16) != 0) {
            send_error_raw(req, 415, "Content-Type must be application/json");
            free(path);
            return;
        }
    }

    struct admin_req *r = calloc(1, sizeof(*r));
    char *body = malloc(blen + 1);
    if (!r || !body) {
        free(r);
        free(body);
        free(path);
        send_error_raw(req, 500, "out of memory");
        return;
    }
    evbuffer_remove(in, body, blen);
    body[blen] = 0;
    r->a = a;
    r->req = req;
    util_strlcpy(r->method, method, sizeof(r->method));
    r->path = path;
    r->body = body;
    r->body_len = blen;
    r->tail = strdup(match->prefix ? path + strlen(match->path) : "");
    if (raw_query && evhttp_parse_query_str(raw_query, &r->query) == 0) r->have_query = true;
    if (!r->tail) {
        req_release(r);
        send_error_raw(req, 500, "out of memory");
        return;
    }
    r->next = a->live;
    if (a->live) a->live->prev = r;
    a->live = r;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_client_close, r);
    match->fn(r, match->arg);
}

static void on_metrics(struct admin_req *r, void *arg)
{
    (void)arg;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    metrics_render(b);
    size_t n = evbuffer_get_length(b);
    const char *text = (const char *)evbuffer_pullup(b, -1);
    admin_reply_text(r, 200, "text/plain; version=0.0.4", text ? text : "", text ? n : 0);
    evbuffer_free(b);
}

static void on_healthz(struct admin_req *r, void *arg)
{
    (void)arg;
    admin_reply_text(r, 200, "text/plain", "ok\n", 3);
}

/* ---- HTTPS ---------------------------------------------------------------- */

static void on_tls_conn_freed(void *arg)
{
    struct admin *a = arg;
    if (BD_ALWAYS(a->n_conns > 0)) a->n_conns--;
}

/* evhttp asks for the bufferevent of every accepted connection (its fd is
 * set afterwards).  Over the connection limit, the connection still gets
 * one, refusing in its handshake: evhttp offers no way to turn a
 * connection away before it has a bufferevent. */
static struct bufferevent *on_new_bev(struct event_base *base, void *arg)
{
    struct admin *a = arg;
    unsigned max = a->auth.max_conns ? a->auth.max_conns : 64;
    if (a->n_conns >= max) {
        a->refused++;
        uint64_t now = util_mono_ms();
        if (now - a->last_refuse_log_ms >= 1000) {
            a->last_refuse_log_ms = now;
            log_warn(a->tag, "admin: refused a connection: %u open (limit %u); %llu refused so far",
                     a->n_conns, max, (unsigned long long)a->refused);
        }
        return tls_bev_refuse(a->auth.tls, base);
    }
    struct bufferevent *bev = tls_bev_server_counted(a->auth.tls, base, -1, on_tls_conn_freed, a);
    if (bev) a->n_conns++;
    return bev;
}

/* ---- setup ---------------------------------------------------------------- */

int admin_new(struct reactor *rx, const char *addr, const char *tag,
              const struct admin_auth *auth, struct admin **out)
{
    if (!m_replies[2]) {
        static const char *const cls[] = {"", "1xx", "2xx", "3xx", "4xx", "5xx"};
        for (int i = 1; i <= 5; i++) {
            char l[32];
            snprintf(l, sizeof(l), "code=\"%s\"", cls[i]);
            m_replies[i] = metrics_counter("blockd_admin_replies_total",
                                           "Admin HTTP replies by status class", l);
        }
    }
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (util_parse_addr(addr, &ss, &sslen) < 0 || ss.ss_family == AF_UNIX) return -EINVAL;
    char host[128];
    const char *colon = strrchr(addr, ':');
    size_t hl = (size_t)(colon - addr);
    if (hl >= sizeof(host)) return -EINVAL;
    memcpy(host, addr, hl);
    host[hl] = 0;
    if (host[0] == '[') {
        memmove(host, host + 1, hl);
        char *e = strchr(host, ']');
        if (e) *e = 0;
    }
    if (strcmp(host, "localhost") == 0 || !host[0]) util_strlcpy(host, "127.0.0.1", sizeof(host));
    int port = atoi(colon + 1);

    struct admin *a = calloc(1, sizeof(*a));
    if (!a) return -ENOMEM;
    util_strlcpy(a->tag, tag, sizeof(a->tag));
    a->auth = *auth;
    a->http = evhttp_new(reactor_base(rx));
    if (!a->http) {
        free(a);
        return -ENOMEM;
    }
    if (a->auth.tls) evhttp_set_bevcb(a->http, on_new_bev, a);
    evhttp_set_max_body_size(a->http, ADMIN_MAX_BODY);
    evhttp_set_max_headers_size(a->http, 16384);
    evhttp_set_timeout(a->http, 10);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(a->http, on_request, a);
    errno = 0;
    if (!evhttp_bind_socket_with_handle(a->http, host, (ev_uint16_t)port)) {
        int e = errno ? -errno : -EADDRINUSE;
        evhttp_free(a->http);
        free(a);
        return e;
    }
    int rc = admin_route(a, "GET", "/metrics", ADMIN_PUBLIC, on_metrics, NULL);
    if (rc == 0) rc = admin_route(a, "GET", "/healthz", ADMIN_PUBLIC, on_healthz, NULL);
    if (rc < 0) {
        admin_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void admin_free(struct admin *a)
{
    if (!a) return;
    while (a->live) admin_reply_error(a->live, 503, "server stopping");
    evhttp_free(a->http);
    while (a->routes) {
        struct route *rt = a->routes;
        a->routes = rt->next;
        free(rt->path);
        free(rt);
    }
    free(a);
}

int admin_route(struct admin *a, const char *method, const char *path, int scope,
                admin_handler fn, void *arg)
{
    struct route *rt = calloc(1, sizeof(*rt));
    if (!rt) return -ENOMEM;
    util_strlcpy(rt->method, method, sizeof(rt->method));
    size_t n = strlen(path);
    rt->prefix = n >= 2 && strcmp(path + n - 2, "/*") == 0;
    rt->path = strndup(path, rt->prefix ? n - 1 : n);
    if (!rt->path) {
        free(rt);
        return -ENOMEM;
    }
    rt->scope = scope;
    rt->fn = fn;
    rt->arg = arg;
    struct route **pp = &a->routes;
    while (*pp) pp = &(*pp)->next;
    *pp = rt;
    return 0;
}

const char *admin_req_tail(const struct admin_req *r)
{
    return r->tail;
}
const char *admin_req_query(const struct admin_req *r, const char *name)
{
    if (!r->have_query) return NULL;
    return evhttp_find_header(&r->query, name);
}
const char *admin_req_body(const struct admin_req *r, size_t *len)
{
    if (len) *len = r->body_len;
    return r->body;
}
