/* admin.h: the JSON admin HTTP endpoint every role serves (DESIGN.md §8).
 *
 * libevent's evhttp does the HTTP; this module adds what CONTRACT.md §3
 * (admin HTTP JSON) asks of every endpoint, so handlers only see requests
 * that already passed it:
 *
 *   - a route table: METHOD + path, or a path prefix ending in "/" + "*";
 *     an unknown path is 404, a known path with another method is 405;
 *   - bodies above 64 KiB are 413 and headers above 16 KiB are refused
 *     (evhttp limits), and a connection idle or trickling for 10 s is
 *     closed (slowloris);
 *   - HTTPS when a TLS context is given (the node's certificate, which
 *     clients check against the cluster CA; client certificates are not
 *     asked for: the token is the credential);
 *   - every route needs "Authorization: Bearer TOKEN" except the public
 *     ones (GET /metrics and GET /healthz, a bare liveness check).  Two
 *     tokens, two scopes: the admin token may call everything, the read
 *     token only ADMIN_READ routes (403 for the others).  Compared in
 *     constant time; a missing or wrong token, or a token in the query
 *     string, is 401; with no token configured only public routes answer;
 *     a token never reaches logs or metrics;
 *   - at most max_conns connections at once over HTTPS (more are refused
 *     in the TLS handshake, with a log line at most once a second);
 *   - a mutating call with a body must say Content-Type: application/json
 *     (415 otherwise);
 *   - GET /metrics renders the metrics registry (metrics.h).
 *
 * Handlers run on the reactor.  They may reply at once or keep the request
 * and reply later (for calls that wait on Raft); if the client goes away
 * first, the later reply is dropped safely.  Every reply is JSON except
 * /metrics.  Errors are {"error": "message"} with the status code. */
#ifndef BD_ADMIN_H
#define BD_ADMIN_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "runtime/reactor.h"

#define ADMIN_MAX_BODY 65536
#define ADMIN_MAX_DEPTH 16

struct admin;
struct admin_req;

typedef void (*admin_handler)(struct admin_req *r, void *arg);

/* Who may call a route.  READ is 0 and WRITE 1 so that a bool "mutating"
 * reads as a scope. */
enum admin_scope {
    ADMIN_READ = 0,   /* the read or the admin token */
    ADMIN_WRITE = 1,  /* the admin token */
    ADMIN_PUBLIC = 2, /* anyone (metrics, liveness) */
};

struct tls_ctx;

struct admin_auth {
    struct tls_ctx *tls;     /* borrowed; NULL serves plain HTTP */
    const char *admin_token; /* borrowed; may be NULL or "" (none) */
    const char *read_token;  /* borrowed; may be NULL or "" (none) */
    unsigned max_conns;      /* HTTPS connections at once (0: 64) */
};

/* Serve on ADDR with AUTH (copied; the strings and TLS context it points
 * at are borrowed and must outlive the admin).  TAG names the owner in
 * logs.  0 with *OUT owned, or -errno. */
int admin_new(struct reactor *rx, const char *addr, const char *tag,
              const struct admin_auth *auth, struct admin **out);
/* Stop serving; pending requests get 503. */
void admin_free(struct admin *a);

/* Add a route.  METHOD is "GET", "POST", "PUT", "DELETE" or "PATCH"; PATH
 * is exact, or a prefix when it ends in "/" "*".  SCOPE (enum admin_scope)
 * says which token it needs.  0 or -ENOMEM. */
int admin_route(struct admin *a, const char *method, const char *path, int scope,
                admin_handler fn, void *arg);

/* The part of the path after a prefix route's "/" (e.g. the volume name
 * in /v1/volumes/NAME), percent-decoded; "" for exact routes. */
const char *admin_req_tail(const struct admin_req *r);
/* Query parameter NAME, or NULL. */
const char *admin_req_query(const struct admin_req *r, const char *name);
/* The body (NUL-terminated copy) and its length. */
const char *admin_req_body(const struct admin_req *r, size_t *len);

/* Reply and release R.  admin_reply_json takes BODY (may be NULL for no
 * body).  Exactly one reply per request. */
void admin_reply_json(struct admin_req *r, int code, cJSON *body);
void admin_reply_error(struct admin_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void admin_reply_text(struct admin_req *r, int code, const char *content_type, const char *text,
                      size_t len);

#endif
