/* tls.c: OpenSSL contexts, identities and bufferevents (contract in tls.h).
 *
 * Two SSL_CTX per tls_ctx, both built from the same three files:
 *
 *   wire    TLS 1.3 only, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT:
 *           both ends present a certificate of the cluster CA.  Used in
 *           both directions (SSL_set_accept_state / SSL_set_connect_state
 *           per connection).  No session resumption: a resumed session
 *           would skip the certificate check we read identities from, and
 *           node connections are long-lived, so it would save nothing.
 *   server  TLS 1.2 or 1.3, SSL_VERIFY_PEER without FAIL_IF_NO_PEER_CERT:
 *           a client certificate is optional but verified if sent.  For
 *           HTTPS (token auth) and NBD (qemu and libnbd speak TLS 1.2 and
 *           1.3 through GnuTLS).
 *
 * Verification is OpenSSL's own chain check against an X509_STORE that
 * holds only the cluster CA (no system roots: a certificate from a public
 * CA must never make someone a member of the cluster), with its time
 * checks (an expired certificate fails the handshake).  The identity is
 * read after the handshake from the verified leaf (tls_bev_peer), so a
 * handshake that fails never yields one.
 *
 * Rejected: trusting the common name (free text, no structure); hostname
 * checks between nodes (addresses change, identities do not; the wire
 * layer instead checks that the peer's role and id are the ones it meant
 * to reach). */
#include "net/tls.h"
#include "base/bd.h"
#include "base/util.h"
#include "net/wire.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <pthread.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct tls_ctx {
    SSL_CTX *wire;
    SSL_CTX *server;
    struct tls_identity self;
};

static const char *const role_names[] = {
    [WIRE_ROLE_AGENT] = "agent",
    [WIRE_ROLE_PROXY] = "proxy",
    [WIRE_ROLE_BLOB] = "blob",
    [WIRE_ROLE_CTL] = "ctl",
    [TLS_ROLE_CLIENT] = "client",
};

const char *tls_role_name(uint16_t role)
{
    return role < BD_ARRAY_SIZE(role_names) ? role_names[role] : NULL;
}

uint16_t tls_role_parse(const char *name)
{
    for (uint16_t r = 1; r < BD_ARRAY_SIZE(role_names); r++)
        if (role_names[r] && strcmp(role_names[r], name) == 0) return r;
    return 0;
}

static bool is_node_role(uint16_t role)
{
    return role == WIRE_ROLE_PROXY || role == WIRE_ROLE_BLOB;
}

enum part_kind {
    PART_CLUSTER, /* [a-z0-9_-]: as config.h's cluster_id */
    PART_NODE,    /* digits, no leading zero, fits u64: a node id */
    PART_NAME,    /* [A-Za-z0-9._-]: an agent id, as config.h's */
};

static bool part_valid(const char *p, size_t len, size_t max, enum part_kind kind)
{
    bool digits = kind == PART_NODE;
    if (len == 0 || len > max) return false;
    for (size_t i = 0; i < len; i++) {
        char ch = p[i];
        bool ok = (ch >= '0' && ch <= '9') ||
                  (!digits && ((ch >= 'a' && ch <= 'z') || ch == '_' || ch == '-')) ||
                  (kind == PART_NAME && ((ch >= 'A' && ch <= 'Z') || ch == '.'));
        if (!ok) return false;
    }
    if (digits && (p[0] == '0' || len > 19)) return false;
    return true;
}

int tls_identity_uri(char *buf, size_t cap, const char *cluster, uint16_t role, const char *id)
{
    const char *rn = tls_role_name(role);
    if (!rn || !cluster || !id) return -EINVAL;
    if (!part_valid(cluster, strlen(cluster), TLS_CLUSTER_MAX, PART_CLUSTER) ||
        !part_valid(id, strlen(id), TLS_ID_MAX, is_node_role(role) ? PART_NODE : PART_NAME))
        return -EINVAL;
    int n = snprintf(buf, cap, "blockd://%s/%s/%s", cluster, rn, id);
    if (n < 0 || (size_t)n >= cap) return -ENOSPC;
    return 0;
}

int tls_identity_parse_uri(const char *uri, size_t len, struct tls_identity *out)
{
    static const char scheme[] = "blockd://";
    memset(out, 0, sizeof(*out));
    if (len < sizeof(scheme) - 1 || memcmp(uri, scheme, sizeof(scheme) - 1) != 0) return -EINVAL;
    const char *p = uri + sizeof(scheme) - 1, *end = uri + len;
    const char *parts[3];
    size_t lens[3];
    for (int i = 0; i < 3; i++) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *stop = (i < 2) ? slash : end;
        if (!stop || (i == 2 && slash)) return -EINVAL;
        parts[i] = p;
        lens[i] = (size_t)(stop - p);
        p = stop + (i < 2);
    }
    char role[8];
    if (lens[1] >= sizeof(role)) return -EINVAL;
    memcpy(role, parts[1], lens[1]);
    role[lens[1]] = 0;
    out->role = tls_role_parse(role);
    if (!out->role) return -EINVAL;
    if (!part_valid(parts[0], lens[0], TLS_CLUSTER_MAX, PART_CLUSTER) ||
        !part_valid(parts[2], lens[2], TLS_ID_MAX,
                    is_node_role(out->role) ? PART_NODE : PART_NAME))
        return -EINVAL;
    memcpy(out->cluster, parts[0], lens[0]);
    memcpy(out->id, parts[2], lens[2]);
    if (is_node_role(out->role)) out->node_id = strtoull(out->id, NULL, 10);
    return 0;
}

int tls_identity_of_cert(X509 *x, struct tls_identity *out)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int found = 0, rc = -ENOENT;
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type != GEN_URI) continue;
        const ASN1_IA5STRING *s = gn->d.uniformResourceIdentifier;
        const char *u = (const char *)ASN1_STRING_get0_data(s);
        size_t n = (size_t)ASN1_STRING_length(s);
        if (n < 9 || memcmp(u, "blockd://", 9) != 0) continue;
        if (++found > 1) {
            rc = -EINVAL; /* two identities: refuse rather than pick one */
            break;
        }
        rc = tls_identity_parse_uri(u, n, out);
    }
    GENERAL_NAMES_free(names);
    return rc;
}

/* ---- contexts ------------------------------------------------------------- */

static void set_err(char *err, size_t cap, const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char ossl[160] = "";
    if (e) ERR_error_string_n(e, ossl, sizeof(ossl));
    ERR_clear_error();
    snprintf(err, cap, "%s%s%s%s%s", what, path ? " " : "", path ? path : "", e ? ": " : "",
             ossl);
}

static SSL_CTX *ctx_make(const struct tls_files *f, bool mutual, char *err, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (!ctx) {
        set_err(err, cap, "SSL_CTX_new failed", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, mutual ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 (mutual ? SSL_OP_NO_TICKET : 0));
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* libevent writes from evbuffer chains that move between calls.  Wire
     * connections are few and busy: keep their record buffers (releasing
     * them would cost an allocation pair per burst); server connections
     * (HTTPS, NBD) may be many and mostly idle: give theirs back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              (mutual ? 0 : SSL_MODE_RELEASE_BUFFERS));
    if (SSL_CTX_use_certificate_chain_file(ctx, f->cert_file) != 1) {
        set_err(err, cap, "cannot load certificate", f->cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, f->key_file, SSL_FILETYPE_PEM) != 1) {
        set_err(err, cap, "cannot load key", f->key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        set_err(err, cap, "key does not match certificate", f->key_file);
        goto fail;
    }
    /* Only the cluster CA: never the system roots. */
    if (SSL_CTX_load_verify_locations(ctx, f->ca_file, NULL) != 1) {
        set_err(err, cap, "cannot load CA", f->ca_file);
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (mutual ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                       NULL);
    SSL_CTX_set_verify_depth(ctx, 2);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* Check our own certificate against the CA now, so an expired or foreign
 * certificate is a start-up error, not a cluster of refused handshakes. */
static int check_self(SSL_CTX *ctx, const char *cluster, struct tls_identity *self, char *err,
                      size_t cap)
{
    X509 *leaf = SSL_CTX_get0_certificate(ctx);
    X509_STORE_CTX *sc = X509_STORE_CTX_new();
    STACK_OF(X509) *chain = NULL;
    SSL_CTX_get0_chain_certs(ctx, &chain);
    if (!sc || X509_STORE_CTX_init(sc, SSL_CTX_get_cert_store(ctx), leaf, chain) != 1) {
        X509_STORE_CTX_free(sc);
        snprintf(err, cap, "out of memory checking the certificate");
        return -ENOMEM;
    }
    int ok = X509_verify_cert(sc);
    int verr = X509_STORE_CTX_get_error(sc);
    X509_STORE_CTX_free(sc);
    if (ok != 1) {
        snprintf(err, cap, "our certificate does not verify against the CA: %s",
                 X509_verify_cert_error_string(verr));
        return -EINVAL;
    }
    int rc = tls_identity_of_cert(leaf, self);
    if (rc < 0) {
        snprintf(err, cap, "our certificate names %s blockd:// identity",
                 rc == -ENOENT ? "no" : "more than one, or a malformed,");
        return -EINVAL;
    }
    if (strcmp(self->cluster, cluster) != 0) {
        snprintf(err, cap, "our certificate is for cluster \"%s\", not \"%s\"", self->cluster,
                 cluster);
        return -EINVAL;
    }
    return 0;
}

int tls_ctx_new(const struct tls_files *f, const char *cluster, struct tls_ctx **out, char *err,
                size_t cap)
{
    *out = NULL;
    const char *files[] = {f->ca_file, f->cert_file, f->key_file};
    for (unsigned i = 0; i < 3; i++) {
        if (!files[i] || !*files[i]) {
            snprintf(err, cap, "TLS needs a CA, a certificate and a key file");
            return -EINVAL;
        }
        if (access(files[i], R_OK) != 0) {
            int e = errno;
            snprintf(err, cap, "%s: %s", files[i], strerror(e));
            return -e;
        }
    }
    int rc = util_check_private_file(f->key_file, err, cap);
    if (rc < 0) return rc;
    struct tls_ctx *t = calloc(1, sizeof(*t));
    if (!t) return -ENOMEM;
    t->wire = ctx_make(f, true, err, cap);
    if (!t->wire) goto fail;
    t->server = ctx_make(f, false, err, cap);
    if (!t->server) goto fail;
    rc = check_self(t->wire, cluster, &t->self, err, cap);
    if (rc < 0) goto fail_rc;
    *out = t;
    return 0;
fail:
    rc = -EINVAL;
fail_rc:
    tls_ctx_free(t);
    return rc;
}

int tls_ctx_for(const struct tls_files *f, const char *cluster, uint16_t role, const char *id,
                struct tls_ctx **out, char *err, size_t cap)
{
    int rc = tls_ctx_new(f, cluster, out, err, cap);
    if (rc < 0) return rc;
    const struct tls_identity *me = &(*out)->self;
    if (me->role != role || strcmp(me->id, id) != 0) {
        snprintf(err, cap, "%s is the certificate of %s %s, not of %s %s", f->cert_file,
                 tls_role_name(me->role), me->id, tls_role_name(role), id);
        tls_ctx_free(*out);
        *out = NULL;
        return -EINVAL;
    }
    return 0;
}

void tls_ctx_free(struct tls_ctx *t)
{
    if (!t) return;
    SSL_CTX_free(t->wire);
    SSL_CTX_free(t->server);
    free(t);
}

const struct tls_identity *tls_ctx_self(const struct tls_ctx *t)
{
    return &t->self;
}

SSL_CTX *tls_ctx_ssl(struct tls_ctx *t)
{
    return t->wire;
}

/* ---- connections ---------------------------------------------------------- */

static struct bufferevent *bev_new(SSL_CTX *ctx, struct event_base *base, int fd, bool server)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        if (fd >= 0) close(fd);
        return NULL;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, fd, ssl, server ? BUFFEREVENT_SSL_ACCEPTING : BUFFEREVENT_SSL_CONNECTING,
        BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        if (fd >= 0) close(fd);
        return NULL;
    }
    /* A peer that drops the TCP connection without close_notify is an
     * ordinary EOF for a framed protocol that knows its lengths. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

struct bufferevent *tls_bev_wire(struct tls_ctx *t, struct event_base *base, int fd, bool server)
{
    return bev_new(t->wire, base, fd, server);
}

struct bufferevent *tls_bev_server(struct tls_ctx *t, struct event_base *base, int fd)
{
    return bev_new(t->server, base, fd, true);
}

/* SSL ex_data slot holding a struct free_note, run when the SSL is freed. */
struct free_note {
    void (*fn)(void *arg);
    void *arg;
};
static int free_note_index = -1;
static pthread_once_t free_note_once = PTHREAD_ONCE_INIT;

static void free_note_run(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    struct free_note *n = ptr;
    if (!n) return;
    n->fn(n->arg);
    free(n);
}

static void free_note_init(void)
{
    free_note_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, free_note_run);
}

struct bufferevent *tls_bev_server_counted(struct tls_ctx *t, struct event_base *base, int fd,
                                           void (*on_free)(void *arg), void *arg)
{
    pthread_once(&free_note_once, free_note_init);
    struct free_note *n = malloc(sizeof(*n));
    if (!n || free_note_index < 0) {
        free(n);
        if (fd >= 0) close(fd);
        return NULL;
    }
    n->fn = on_free;
    n->arg = arg;
    struct bufferevent *bev = bev_new(t->server, base, fd, true);
    if (!bev) {
        free(n);
        return NULL;
    }
    SSL_set_ex_data(bufferevent_openssl_get_ssl(bev), free_note_index, n);
    return bev;
}

struct bufferevent *tls_bev_refuse(struct tls_ctx *t, struct event_base *base)
{
    struct bufferevent *bev = bev_new(t->server, base, -1, true);
    if (!bev) return NULL;
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    /* No cipher at all: the handshake ends with a handshake_failure alert. */
    SSL_set_cipher_list(ssl, "");
    SSL_set_ciphersuites(ssl, "");
    return bev;
}

int tls_bev_peer(struct tls_ctx *t, struct bufferevent *bev, struct tls_identity *out)
{
    memset(out, 0, sizeof(*out));
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (!ssl) return -ENOENT;
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (!peer) return -ENOENT;
    if (SSL_get_verify_result(ssl) != X509_V_OK) return -EINVAL;
    int rc = tls_identity_of_cert(peer, out);
    if (rc < 0) return -EINVAL;
    if (strcmp(out->cluster, t->self.cluster) != 0) return -EACCES;
    return 0;
}

const char *tls_bev_error(struct bufferevent *bev, char *buf, size_t cap)
{
    unsigned long e = bufferevent_get_openssl_error(bev);
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (!e) {
        snprintf(buf, cap, "%s", v != X509_V_OK ? X509_verify_cert_error_string(v)
                                                : "connection closed during the TLS handshake");
        return buf;
    }
    const char *reason = ERR_reason_error_string(e);
    /* What OpenSSL says when the peer does not speak TLS at all. */
    if (reason && (strcmp(reason, "wrong version number") == 0 ||
                   strcmp(reason, "http request") == 0 ||
                   strcmp(reason, "packet length too long") == 0 ||
                   strcmp(reason, "unknown protocol") == 0))
        reason = "the peer does not speak TLS (plaintext on a TLS port?)";
    if (v != X509_V_OK)
        snprintf(buf, cap, "%s: %s", reason ? reason : "TLS error",
                 X509_verify_cert_error_string(v));
    else
        snprintf(buf, cap, "%s", reason ? reason : "TLS error");
    /* Drain the rest of this connection's error queue: it is per thread
     * and would otherwise be blamed on the next connection. */
    while (bufferevent_get_openssl_error(bev)) {
    }
    return buf;
}

bool tls_looks_like_handshake(const uint8_t *p, size_t len)
{
    /* A TLS record: content type 22 (handshake), version 3.x. */
    return len >= 1 && p[0] == 0x16 && (len < 2 || p[1] == 0x03);
}
