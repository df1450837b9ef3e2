/* conn.h: a framed wire connection on the reactor.
 *
 * A conn owns one socket (a libevent bufferevent) and speaks wire.h frames
 * on it, in both directions at once: it can send requests and match their
 * responses (client side) and receive requests and send responses (server
 * side).  Many requests may be in flight; responses are matched by req_id.
 *
 * Handshake: with TLS (auth->tls set, the normal case) the connection
 * first completes a mutual TLS handshake, in which both ends prove a
 * certificate of the cluster CA (tls.h); the peer's role and id are the
 * ones its certificate names.  Then the side that connects sends HELLO
 * (conn_connect does it for you); the accepting side refuses every other
 * frame until HELLO has arrived with the right cluster hash and a role and
 * id equal to its certificate's, and then asks the owner (ops->on_hello)
 * whether this peer may talk to it.  The connecting side checks that the
 * peer's certificate names the role (and id) it meant to reach.  Without
 * TLS (an explicit, insecure configuration) the role and id are what HELLO
 * claims, and nothing is authenticated.
 *
 * Before authentication a connection is held to a deadline
 * (hello_timeout_ms from accept to HELLO), a small input buffer (one HELLO,
 * not one maximal frame), and a share of the listener's connection limits
 * (struct conn_limits), so unauthenticated sockets cost little and go away.
 *
 * Happy path (client):  conn_connect -> HELLO sent -> on_up ->
 *   conn_call(call) ... response frame -> call->cb(call, 0, frame)
 * Happy path (server):  conn_accept(fd) -> HELLO received -> on_hello ->
 *   on_request(frame) ... conn_reply(req) exactly once per non-oneway request
 *
 * Failure modes:
 *   - bad magic, version, header or fields checksum, oversized len, a frame
 *     that does not complete within frame_timeout_ms, or any frame but HELLO
 *     first: the connection closes (metric + log with peer and reason);
 *   - an unknown message type: ENOTSUP error reply, the connection stays;
 *   - a response whose req_id matches no pending call (late, duplicate or
 *     never sent): dropped and counted;
 *   - a call not answered within its timeout: cb(-ETIMEDOUT); a late answer
 *     is then dropped as above;
 *   - close for any reason: every pending call gets cb(err) before
 *     on_close runs; on_close runs exactly once.
 *
 * Back-pressure: a server conn stops reading the socket while it has
 * max_inflight requests unanswered or more than out_high_water bytes queued
 * for output, so a peer that pipelines without reading replies stalls
 * instead of growing our memory.  Each read callback handles at most 64
 * frames before yielding to other connections.
 *
 * Lifetime: the owner must reply to every request it was given, even after
 * the connection closed (conn_reply is then a no-op that releases the
 * request); the conn's memory lives until then.  Never free a conn: call
 * conn_close(); the conn frees itself after on_close and the last reply. */
#ifndef BD_CONN_H
#define BD_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/reactor.h"
#include "net/wire.h"

struct conn;

/* A received frame.  BODY (hdr.len bytes) is owned by the conn and freed
 * after the callback returns, unless the callee takes it (conn_frame_take),
 * after which the callee frees it with free(). */
struct conn_frame {
    struct wire_hdr hdr;
    uint8_t *body;
};
/* Take ownership of F->body (free() it when done); F->body becomes NULL. */
uint8_t *conn_frame_take(struct conn_frame *f);

/* Bulk data sent beside the fields without copying.  If RELEASE is set the
 * bytes are referenced and RELEASE(data, len, arg) runs once libevent no
 * longer needs them; if it is NULL the bytes are copied at once. */
struct conn_payload {
    const void *data;
    size_t len;
    void (*release)(const void *data, size_t len, void *arg);
    void *arg;
};

struct tls_ctx;
struct tls_identity;

/* Who we are and whom we accept. */
struct conn_auth {
    uint64_t cluster_hash; /* XXH3-64 of the cluster id; peers must match */
    uint64_t node_id;      /* our id in HELLO (0 for agents) */
    uint16_t role;         /* enum wire_role */
    char name[64];         /* our name in HELLO, for the peer's logs */
    struct tls_ctx *tls;   /* borrowed; NULL: plaintext, nothing authenticated */
};
/* Fill AUTH.  TLS (borrowed, may be NULL) must outlive every conn using
 * AUTH; with TLS, NODE_ID and ROLE must be those of its certificate. */
void conn_auth_init(struct conn_auth *auth, const char *cluster_id, struct tls_ctx *tls,
                    uint64_t node_id, uint16_t role, const char *name);

/* Limits shared by every connection of one listener: at most MAX_CONNS
 * open, of which at most MAX_UNAUTH have not finished HELLO.  A connection
 * over either limit is closed at accept, with a log line at most once a
 * second.  Zero means no limit.  The owner keeps the struct alive while
 * any conn of the listener exists. */
struct conn_limits {
    unsigned max_conns;
    unsigned max_unauth;
    unsigned n_conns;      /* private: current counts */
    unsigned n_unauth;
    uint64_t refused;      /* connections refused so far */
    uint64_t last_log_ms;
};

/* Test-build fault knobs (CONTRACT.md row 6); all zero is off. */
struct conn_fault {
    uint64_t socket_failure_every; /* close after every Nth received frame */
    uint64_t delay_ms;             /* hold every outgoing response this long */
};

struct conn_opts {
    const char *tag;              /* log tag of the owner; borrowed, must outlive */
    const struct conn_auth *auth; /* borrowed, must outlive the conn */
    uint32_t max_inflight;        /* server: unanswered requests before reading stops (256) */
    size_t out_high_water;        /* output bytes before reading stops (64 MiB) */
    uint32_t frame_timeout_ms;    /* a started frame must complete in this time (30 s) */
    uint32_t connect_timeout_ms;  /* client: connect + HELLO deadline (5 s) */
    uint32_t hello_timeout_ms;    /* server: accept to HELLO, TLS included
                                   * (10 s or frame_timeout_ms if shorter) */
    uint16_t expect_role;         /* client: the peer must be this role (0: any) */
    uint64_t expect_id;           /* client: ... and this node id (0: any) */
    struct conn_limits *limits;   /* server: the listener's limits (NULL: none) */
    struct conn_fault fault;
};

struct conn_ops {
    /* A request or oneway frame arrived (after HELLO).  Reply with
     * conn_reply*() exactly once unless hdr.flags has WIRE_F_ONEWAY (a
     * reply to a oneway frame is dropped: a handler that answers every
     * frame it refuses is safe against a peer that marks one oneway). */
    void (*on_request)(struct conn *c, struct conn_frame *f, void *arg);
    /* Server side: a valid HELLO arrived.  Return 0 to accept the peer, or
     * a negative code to refuse it (EAUTH reply, then close).  NULL accepts
     * every peer whose cluster hash and auth match. */
    int (*on_hello)(struct conn *c, const struct wire_hello_req *hello, void *arg);
    /* Client side: the peer accepted our HELLO. */
    void (*on_up)(struct conn *c, void *arg);
    /* The connection is gone; ERR says why (0 for a clean close by us). */
    void (*on_close)(struct conn *c, int err, void *arg);
};

/* A request in flight.  The caller owns the struct (embed it in its own
 * request object) and sets cb and data; conn owns the rest until cb runs. */
struct conn_call {
    /* Runs exactly once: ERR 0 with the response frame, a status mapped to
     * -errno with the error frame (decode struct wire_error for details),
     * or -ETIMEDOUT / -ECONNRESET / -ECANCELED with F NULL. */
    void (*cb)(struct conn_call *call, int err, struct conn_frame *f);
    void *data;
    /* private */
    struct conn *c;
    uint64_t req_id;
    uint64_t deadline_ms;
    struct conn_call *next;
};

/* Wrap an accepted socket FD (server side).  Takes FD even on failure.
 * Returns the conn, or NULL on ENOMEM. */
struct conn *conn_accept(struct reactor *rx, int fd, const struct conn_ops *ops, void *arg,
                         const struct conn_opts *opts);
/* Connect to ADDR ("host:port" or "unix:/path") and send HELLO (client
 * side).  Returns the conn (connecting), or NULL with *ERR set. */
struct conn *conn_connect(struct reactor *rx, const char *addr, const struct conn_ops *ops,
                          void *arg, const struct conn_opts *opts, int *err);

/* Send a request.  Returns 0 and later runs call->cb exactly once, or
 * returns -ENOTCONN/-EMSGSIZE/-ENOMEM and never runs it.  On 0 the payload
 * belongs to the conn; on error it stays the caller's. */
int conn_call(struct conn *c, struct conn_call *call, uint16_t type, const void *fields,
              size_t fields_len, const struct conn_payload *payload, uint32_t timeout_ms);
/* Send a oneway request (no response).  Same ownership rule. */
int conn_send_oneway(struct conn *c, uint16_t type, const void *fields, size_t fields_len,
                     const struct conn_payload *payload);
/* Abandon a pending call: cb(-ECANCELED) runs now. */
void conn_call_cancel(struct conn_call *call);

/* Reply OK to request REQ (the frame's header, copied).  Unlike
 * conn_call, the reply always takes a payload that has RELEASE: when it is
 * not queued (a closed connection: 0 returned; -EMSGSIZE; out of memory,
 * which also closes the connection: 0 returned) RELEASE runs before this
 * returns.  A payload without RELEASE is copied or not sent at all. */
int conn_reply(struct conn *c, const struct wire_hdr *req, const void *fields, size_t fields_len,
               const struct conn_payload *payload);
/* Reply with an error status from ERR (-errno/-BD_E*), a hint and a short
 * message (printf-style, truncated to one line). */
int conn_reply_error(struct conn *c, const struct wire_hdr *req, int err, uint64_t hint,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Close now with reason ERR; see the lifetime rules above. */
void conn_close(struct conn *c, int err);

bool conn_is_up(const struct conn *c);        /* HELLO done and not closed */
const char *conn_peer(const struct conn *c);  /* "127.0.0.1:7001" */
/* The peer's role and node id: from its certificate with TLS, from its
 * HELLO without.  Meaningful once the handshake is done. */
uint64_t conn_peer_id(const struct conn *c);
uint16_t conn_peer_role(const struct conn *c);
/* The peer's identity as its certificate states it (role, node id, and the
 * id string: an agent's attach identity), or NULL without TLS.  Valid
 * while the conn is. */
const struct tls_identity *conn_peer_identity(const struct conn *c);

/* Decode the error body of F (a non-OK response) into a readable line. */
const char *conn_error_text(const struct conn_frame *f, char *buf, size_t len);

/* Shared field buffer size for encoders that run on the reactor thread. */
#define CONN_FIELDS_MAX 4096

#endif
