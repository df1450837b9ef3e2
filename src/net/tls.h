/* tls.h: TLS for blockd's sockets, and who a peer is.
 *
 * One TLS library for the whole binary: OpenSSL, through libevent's
 * bufferevent_openssl, because every blockd connection is a bufferevent
 * (wire conns, admin HTTP through evhttp, the agent's NBD server) and
 * libevent's OpenSSL glue is the only one it ships.
 *
 * Identity.  Every node has a certificate issued by the cluster CA
 * (`blockd cert`).  Who it is is written in one URI subject alternative
 * name, and nowhere else that we read:
 *
 *     blockd://CLUSTER/ROLE/ID        e.g. blockd://prod-a/proxy/1
 *
 * ROLE is proxy, blob, agent or ctl; ID is the node id for proxies and
 * blob servers (digits), and the agent id (its attach identity,
 * [A-Za-z0-9._-]) for agents and tools.  ROLE client names an NBD client
 * (a VM's qemu, nbdcopy) by the id a volume's attachment names; it is no
 * wire role (HELLO refuses it).  The common name ("proxy-1.prod-a") is for people only.  A
 * connection's peer role and id come from the certificate it presented,
 * never from what it claims in HELLO; a certificate of another cluster, of
 * no cluster, or without exactly one such URI is refused.
 *
 * Contexts.  struct tls_ctx holds what a process needs for one identity:
 *   - a mutual context for wire connections, both directions: the peer must
 *     present a certificate chaining to the cluster CA (TLS 1.3 only: every
 *     node runs this binary);
 *   - a server-only context for HTTPS and NBD with X.509, where clients
 *     authenticate otherwise (a bearer token; a per-volume identity) and
 *     may present a certificate (checked against the CA when they do).
 * Both are created once at start-up (key files are read then, so a
 * permission problem is a start-up error), and are immutable afterwards:
 * any number of connections on the reactor thread may use them.
 *
 * Errors are returned as -errno codes; a human-readable reason goes into
 * the caller's ERR buffer (start-up) or is returned by tls_bev_error()
 * (a failed handshake, for the one log line that names the peer). */
#ifndef BD_TLS_H
#define BD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bufferevent;
struct event_base;
struct ssl_st;
struct x509_st;

#define TLS_ID_MAX 64       /* an id: digits for nodes, [A-Za-z0-9._-] for agents */
#define TLS_CLUSTER_MAX 64  /* as config.h's cluster_id */
#define TLS_ROLE_CLIENT 5   /* an NBD client's certificate: after enum wire_role's */

/* Who a certificate says its holder is. */
struct tls_identity {
    uint16_t role;                  /* enum wire_role, or TLS_ROLE_CLIENT */
    uint64_t node_id;               /* proxies and blob servers; 0 otherwise */
    char id[TLS_ID_MAX + 1];        /* the ID as written ("1", "hv-07") */
    char cluster[TLS_CLUSTER_MAX + 1];
};

/* Role names as written in identities: "proxy", "blob", "agent", "ctl",
 * "client"; NULL for an unknown role. */
const char *tls_role_name(uint16_t role);
/* The role named NAME, or 0. */
uint16_t tls_role_parse(const char *name);

/* Format the identity URI "blockd://CLUSTER/ROLE/ID" into BUF.  0, or
 * -EINVAL if a part is empty, too long or has characters outside its
 * class (cluster [a-z0-9_-], node ids digits, other ids [A-Za-z0-9._-]),
 * -ENOSPC if BUF is too small. */
int tls_identity_uri(char *buf, size_t cap, const char *cluster, uint16_t role, const char *id);
/* Parse such a URI.  0 or -EINVAL. */
int tls_identity_parse_uri(const char *uri, size_t len, struct tls_identity *out);
/* The identity in certificate X (its one blockd:// URI SAN).  0, or
 * -ENOENT (no such SAN), -EINVAL (malformed, or more than one). */
int tls_identity_of_cert(struct x509_st *x, struct tls_identity *out);

struct tls_ctx;

struct tls_files {
    const char *ca_file;    /* the cluster CA certificate (PEM) */
    const char *cert_file;  /* our certificate (PEM; may hold the chain) */
    const char *key_file;   /* our private key (PEM): owned by us, not group or world readable */
};

/* Load FILES and check them: the key matches the certificate, the
 * certificate chains to the CA, is valid now, and names an identity of
 * CLUSTER (returned in tls_ctx_self).  Returns 0 with *OUT owned
 * (tls_ctx_free), or -ENOENT/-EACCES/-EPERM/-EINVAL with a reason in ERR. */
int tls_ctx_new(const struct tls_files *files, const char *cluster, struct tls_ctx **out,
                char *err, size_t errlen);
/* tls_ctx_new for a role instance: the certificate must also name ROLE and
 * ID (the node id as text for proxies and blob servers, the agent id for
 * agents), so a node started with another node's files refuses to run.
 * Same returns. */
int tls_ctx_for(const struct tls_files *files, const char *cluster, uint16_t role,
                const char *id, struct tls_ctx **out, char *err, size_t errlen);
void tls_ctx_free(struct tls_ctx *t);
const struct tls_identity *tls_ctx_self(const struct tls_ctx *t);

/* A bufferevent over FD (or -1: connect later with
 * bufferevent_socket_connect) speaking TLS with T's mutual context, as
 * server (accepting) or client.  The bufferevent owns FD and the SSL
 * (BEV_OPT_CLOSE_ON_FREE).  Returns NULL on ENOMEM (FD is then closed). */
struct bufferevent *tls_bev_wire(struct tls_ctx *t, struct event_base *base, int fd, bool server);
/* The same over T's server-only context (HTTPS, NBD after STARTTLS):
 * the client may present a certificate, which must then chain to the CA. */
struct bufferevent *tls_bev_server(struct tls_ctx *t, struct event_base *base, int fd);

/* T's mutual context (OpenSSL's SSL_CTX), for tools and tests that speak
 * TLS on a blocking socket (SSL_new, SSL_set_fd, SSL_connect).  Owned by
 * T; valid until tls_ctx_free. */
struct ssl_ctx_st *tls_ctx_ssl(struct tls_ctx *t);

/* tls_bev_server, calling ON_FREE(ARG) once when the connection's TLS
 * state is freed (the bufferevent went away), for counting connections
 * whose lifetime the caller does not see (evhttp's). */
struct bufferevent *tls_bev_server_counted(struct tls_ctx *t, struct event_base *base, int fd,
                                           void (*on_free)(void *arg), void *arg);
/* A server bufferevent (fd set later) whose handshake always fails, for
 * refusing a connection that must be given a bufferevent. */
struct bufferevent *tls_bev_refuse(struct tls_ctx *t, struct event_base *base);

/* After the handshake of BEV: the peer's identity.  0, or -ENOENT when the
 * peer presented no certificate (server-only contexts), -EINVAL when its
 * certificate names no valid identity, -EACCES when it names another
 * cluster than T's. */
int tls_bev_peer(struct tls_ctx *t, struct bufferevent *bev, struct tls_identity *out);

/* Why the TLS layer of BEV failed (a handshake refused, a bad record),
 * as one line: "certificate verify failed: certificate has expired".
 * Returns BUF. */
const char *tls_bev_error(struct bufferevent *bev, char *buf, size_t cap);

/* True if the first bytes a client sent (at least 1) look like a TLS
 * handshake record, for a clear error when TLS reaches a plaintext port. */
bool tls_looks_like_handshake(const uint8_t *p, size_t len);

#endif
