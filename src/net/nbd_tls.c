/* nbd_tls.c: the NBD server's SSL_CTX, its pre-shared keys and what a
 * handshake tells about the client (contract in nbd_tls.h).
 *
 * One SSL_CTX holds both ways in: the certificate (when the agent has
 * one) and the PSK callbacks (when a PSK file is configured).  A TLS 1.3
 * client that offers a PSK identity gets the PSK handshake (no
 * certificates on either side); one that offers none gets the
 * certificate.  The two PSK callbacks are OpenSSL's two generations:
 *
 *   psk_find_session (TLS 1.3): the identity names a key; the key becomes
 *     an SSL_SESSION with TLS_AES_128_GCM_SHA256, whose SHA-256 is the
 *     hash GnuTLS (qemu, libnbd, nbdkit) binds an external PSK to unless
 *     told otherwise; the client's binder proves it holds the key, and a
 *     wrong key fails there ("binder does not verify").  OpenSSL chooses
 *     the suite first and ignores a PSK of another hash, so the server
 *     prefers the SHA-256 suites (GnuTLS lists AES-256/SHA-384 first).
 *   psk_server (TLS 1.2): the identity arrives in the ClientKeyExchange of
 *     a PSK suite; a wrong key fails at the Finished MAC.
 *
 * Both look the identity up in a sorted table (bsearch).  An identity not
 * in the file fails the handshake at once; the reason goes into a small
 * note attached to the SSL (ex_data), read back for the one log line the
 * server writes about a refused client, because OpenSSL's own reason
 * ("callback failed") names nothing.
 *
 * Key material lives in the table for the process's life and is wiped
 * (OPENSSL_cleanse) when the table is freed and on every parse error
 * path; it is never logged.
 *
 * Rejected: a second SSL_CTX per mode (X.509 or PSK): the server cannot
 * know before the ClientHello which one the client wants.  GnuTLS in the
 * agent, to be the same library as the clients: the agent's other TLS
 * (wire, HTTPS) is OpenSSL through libevent, and one library per binary
 * (tls.h). */
#include "net/nbd_tls.h"
#include "base/bd.h"
#include "base/util.h"
#include "net/tls.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PSK_FILE_MAX (1u << 20)

struct nbd_tls {
    SSL_CTX *ctx;
    struct nbd_tls_psk *psk; /* sorted by identity */
    unsigned n_psk;
    char cluster[TLS_CLUSTER_MAX + 1];
};

/* What the callbacks learnt about one connection (SSL ex_data). */
struct conn_note {
    char psk_id[NBD_TLS_PSK_ID_MAX + 1]; /* the identity whose key we handed over */
    char why[200];                       /* a refusal the callbacks decided */
};
static int note_index = -1;
static pthread_once_t note_once = PTHREAD_ONCE_INIT;

static void note_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    free(ptr);
}

static void note_init(void)
{
    note_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, note_free);
}

static struct conn_note *note_of(SSL *ssl)
{
    return note_index < 0 ? NULL : SSL_get_ex_data(ssl, note_index);
}

/* ---- the PSK file ---------------------------------------------------------- */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static int psk_cmp(const void *a, const void *b)
{
    return strcmp(((const struct nbd_tls_psk *)a)->identity,
                  ((const struct nbd_tls_psk *)b)->identity);
}

int nbd_tls_psk_parse(const char *text, size_t len, struct nbd_tls_psk **out, unsigned *n,
                      char *err, size_t errlen)
{
    struct nbd_tls_psk *v = NULL;
    unsigned cnt = 0, cap = 0, line = 0;
    const char *p = text, *end = text + len;
    const char *why = NULL;
    while (p < end && !why) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        line++;
        size_t l = (size_t)(le - p);
        if (l && p[l - 1] == '\r') l--;
        if (l == 0 || p[0] == '#') {
            p = eol ? eol + 1 : end;
            continue;
        }
        const char *colon = memchr(p, ':', l);
        size_t idl = colon ? (size_t)(colon - p) : 0, hexl = colon ? l - idl - 1 : 0;
        if (!colon || idl == 0) {
            why = "expected identity:hexkey";
            break;
        }
        if (idl > NBD_TLS_PSK_ID_MAX) {
            why = "identity too long";
            break;
        }
        for (size_t i = 0; i < idl && !why; i++)
            if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] > '~')
                why = "identity is not printable";
        if (!why && (hexl % 2 || hexl / 2 < NBD_TLS_PSK_MIN || hexl / 2 > NBD_TLS_PSK_MAX))
            why = "key must be 16 to 64 bytes in hex";
        if (why) break;
        if (cnt == NBD_TLS_PSK_MAX_KEYS) {
            why = "too many keys";
            break;
        }
        if (cnt == cap) {
            unsigned nc = cap ? cap * 2 : 8;
            struct nbd_tls_psk *a = calloc(nc, sizeof(*a));
            if (!a) {
                why = "out of memory";
                break;
            }
            if (v) {
                memcpy(a, v, cnt * sizeof(*v));
                OPENSSL_cleanse(v, cap * sizeof(*v));
                free(v);
            }
            v = a;
            cap = nc;
        }
        struct nbd_tls_psk *k = &v[cnt];
        memcpy(k->identity, p, idl);
        k->identity[idl] = 0;
        for (size_t i = 0; i < hexl / 2 && !why; i++) {
            int hi = hexval(colon[1 + 2 * i]), lo = hexval(colon[2 + 2 * i]);
            if (hi < 0 || lo < 0) why = "key is not hex";
            else k->key[i] = (unsigned char)(hi << 4 | lo);
        }
        k->key_len = (unsigned)(hexl / 2);
        if (why) {
            OPENSSL_cleanse(k, sizeof(*k));
            break;
        }
        cnt++;
        p = eol ? eol + 1 : end;
    }
    if (!why && cnt) {
        qsort(v, cnt, sizeof(*v), psk_cmp);
        for (unsigned i = 1; i < cnt && !why; i++)
            if (strcmp(v[i - 1].identity, v[i].identity) == 0) {
                why = "an identity appears twice";
                line = 0;
            }
    }
    if (why) {
        if (line) snprintf(err, errlen, "line %u: %s", line, why);
        else snprintf(err, errlen, "%s", why);
        if (v) OPENSSL_cleanse(v, cap * sizeof(*v));
        free(v);
        return -EINVAL;
    }
    *out = v;
    *n = cnt;
    return 0;
}

static const struct nbd_tls_psk *psk_find(const struct nbd_tls *t, const char *id, size_t len)
{
    struct nbd_tls_psk key;
    if (len == 0 || len > NBD_TLS_PSK_ID_MAX || memchr(id, 0, len)) return NULL;
    memcpy(key.identity, id, len);
    key.identity[len] = 0;
    return t->n_psk ? bsearch(&key, t->psk, t->n_psk, sizeof(key), psk_cmp) : NULL;
}

/* The identity as a log can show it: printable bytes, at most 64. */
static void quote_id(char *out, size_t cap, const unsigned char *id, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && i < 64 && o + 1 < cap; i++)
        out[o++] = id[i] >= ' ' && id[i] <= '~' && id[i] != '"' ? (char)id[i] : '?';
    out[o] = 0;
}

static void refuse_identity(SSL *ssl, const unsigned char *id, size_t len)
{
    struct conn_note *n = note_of(ssl);
    if (!n) return;
    char q[80];
    quote_id(q, sizeof(q), id, len);
    snprintf(n->why, sizeof(n->why), "unknown PSK identity \"%s\"", q);
}

static void note_identity(SSL *ssl, const struct nbd_tls_psk *k)
{
    struct conn_note *n = note_of(ssl);
    if (n) util_strlcpy(n->psk_id, k->identity, sizeof(n->psk_id));
}

/* TLS 1.3: an external PSK as a session (see the file comment). */
static int on_psk_find(SSL *ssl, const unsigned char *id, size_t len, SSL_SESSION **sess)
{
    static const unsigned char aes128gcm_sha256[] = {0x13, 0x01};
    struct nbd_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    *sess = NULL;
    const struct nbd_tls_psk *k = psk_find(t, (const char *)id, len);
    if (!k) {
        refuse_identity(ssl, id, len);
        return 0;
    }
    const SSL_CIPHER *c = SSL_CIPHER_find(ssl, aes128gcm_sha256);
    SSL_SESSION *s = SSL_SESSION_new();
    if (!c || !s || SSL_SESSION_set1_master_key(s, k->key, k->key_len) != 1 ||
        SSL_SESSION_set_cipher(s, c) != 1 ||
        SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION) != 1) {
        SSL_SESSION_free(s);
        return 0;
    }
    note_identity(ssl, k);
    *sess = s;
    return 1;
}

/* TLS 1.2 PSK key exchanges. */
static unsigned int on_psk_server(SSL *ssl, const char *identity, unsigned char *psk,
                                  unsigned int max)
{
    struct nbd_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    size_t len = identity ? strnlen(identity, NBD_TLS_PSK_ID_MAX + 1) : 0;
    const struct nbd_tls_psk *k = identity ? psk_find(t, identity, len) : NULL;
    if (!k || k->key_len > max) {
        refuse_identity(ssl, (const unsigned char *)(identity ? identity : ""), len);
        return 0;
    }
    memcpy(psk, k->key, k->key_len);
    note_identity(ssl, k);
    return k->key_len;
}

/* ---- the context ------------------------------------------------------------ */

static void set_err(char *err, size_t cap, const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char ossl[160] = "";
    if (e) ERR_error_string_n(e, ossl, sizeof(ossl));
    ERR_clear_error();
    snprintf(err, cap, "%s %s%s%s", what, path, e ? ": " : "", ossl);
}

static int load_psk(struct nbd_tls *t, const char *path, char *err, size_t errlen)
{
    int rc = util_check_private_file(path, err, errlen);
    if (rc < 0) return rc;
    char *text;
    size_t len;
    rc = util_read_file(path, PSK_FILE_MAX, &text, &len);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", path, bd_strerror(rc));
        return rc;
    }
    char why[160];
    rc = nbd_tls_psk_parse(text, len, &t->psk, &t->n_psk, why, sizeof(why));
    OPENSSL_cleanse(text, len);
    free(text);
    if (rc == 0 && t->n_psk == 0) {
        snprintf(why, sizeof(why), "no key");
        rc = -EINVAL;
    }
    if (rc < 0) snprintf(err, errlen, "%s: %s", path, why);
    return rc;
}

int nbd_tls_new(const struct nbd_tls_opts *o, struct nbd_tls **out, char *err, size_t errlen)
{
    *out = NULL;
    bool psk = o->psk_file && *o->psk_file;
    if (!o->x509 && !psk) {
        snprintf(err, errlen, "TLS for NBD needs a certificate or a PSK file");
        return -EINVAL;
    }
    pthread_once(&note_once, note_init);
    if (note_index < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    struct nbd_tls *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    util_strlcpy(t->cluster, o->cluster ? o->cluster : "", sizeof(t->cluster));
    int rc = -EINVAL;
    t->ctx = SSL_CTX_new(TLS_server_method());
    if (!t->ctx) {
        snprintf(err, errlen, "SSL_CTX_new failed");
        goto fail;
    }
    SSL_CTX *ctx = t->ctx;
    SSL_CTX_set_app_data(ctx, t);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* A TLS 1.3 PSK handshake counts as resuming a session, which OpenSSL
     * refuses under SSL_VERIFY_PEER without a context id. */
    static const unsigned char sid_ctx[] = "blockd-nbd";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_RELEASE_BUFFERS);
    if (o->x509) {
        const struct tls_files *f = o->x509;
        if ((rc = util_check_private_file(f->key_file, err, errlen)) < 0) goto fail;
        rc = -EINVAL;
        if (SSL_CTX_use_certificate_chain_file(ctx, f->cert_file) != 1) {
            set_err(err, errlen, "cannot load certificate", f->cert_file);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, f->key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            set_err(err, errlen, "cannot load key, or it does not match", f->key_file);
            goto fail;
        }
        /* A client certificate is optional; one sent must chain to the
         * cluster CA, and only to it (no system roots). */
        if (SSL_CTX_load_verify_locations(ctx, f->ca_file, NULL) != 1) {
            set_err(err, errlen, "cannot load CA", f->ca_file);
            goto fail;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_verify_depth(ctx, 2);
    }
    if (psk) {
        if ((rc = load_psk(t, o->psk_file, err, errlen)) < 0) goto fail;
        rc = -EINVAL;
        SSL_CTX_set_psk_find_session_callback(ctx, on_psk_find);
        SSL_CTX_set_psk_server_callback(ctx, on_psk_server);
        /* TLS 1.3 picks the suite before it looks at the PSK, and drops a
         * PSK whose hash is not the suite's: prefer the SHA-256 suites,
         * or a client listing TLS_AES_256_GCM_SHA384 first (GnuTLS does)
         * would be taken to the certificate it has no use for. */
        if (SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:"
                                          "TLS_AES_256_GCM_SHA384") != 1) {
            set_err(err, errlen, "cannot set the TLS 1.3 suites for", o->psk_file);
            goto fail;
        }
        SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
        /* TLS 1.2: the certificate suites, then the PSK key exchanges
         * (forward secret first); DHE-PSK needs DH parameters. */
        if (SSL_CTX_set_cipher_list(ctx, o->x509 ? "DEFAULT:ECDHE-PSK:DHE-PSK:PSK:!aNULL:!eNULL"
                                                 : "ECDHE-PSK:DHE-PSK:PSK:!eNULL") != 1) {
            set_err(err, errlen, "cannot set the PSK cipher list for", o->psk_file);
            goto fail;
        }
        SSL_CTX_set_dh_auto(ctx, 1);
    }
    *out = t;
    return 0;
fail:
    nbd_tls_free(t);
    return rc;
}

void nbd_tls_free(struct nbd_tls *t)
{
    if (!t) return;
    SSL_CTX_free(t->ctx);
    if (t->psk) OPENSSL_cleanse(t->psk, t->n_psk * sizeof(*t->psk));
    free(t->psk);
    free(t);
}

unsigned nbd_tls_psk_count(const struct nbd_tls *t)
{
    return t->n_psk;
}

/* ---- connections ------------------------------------------------------------ */

struct bufferevent *nbd_tls_bev(struct nbd_tls *t, struct event_base *base, int fd)
{
    SSL *ssl = SSL_new(t->ctx);
    struct conn_note *n = calloc(1, sizeof(*n));
    if (!ssl || !n || SSL_set_ex_data(ssl, note_index, n) != 1) {
        free(n);
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(base, fd, ssl,
                                                             BUFFEREVENT_SSL_ACCEPTING,
                                                             BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl); /* frees the note */
        close(fd);
        return NULL;
    }
    /* A client that drops the connection without close_notify is an EOF:
     * NBD knows its lengths. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

int nbd_tls_peer(struct bufferevent *bev, struct nbd_tls_peer *out)
{
    memset(out, 0, sizeof(*out));
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    struct conn_note *n = ssl ? note_of(ssl) : NULL;
    if (!n) return -EINVAL;
    util_strlcpy(out->version, SSL_get_version(ssl), sizeof(out->version));
    util_strlcpy(out->cipher, SSL_get_cipher_name(ssl), sizeof(out->cipher));
    /* TLS 1.2: a PSK suite carries the identity; TLS 1.3: the external
     * PSK was used (the session counts as resumed from it). */
    const char *id12 = SSL_version(ssl) < TLS1_3_VERSION ? SSL_get_psk_identity(ssl) : NULL;
    bool psk = id12 ? true : SSL_version(ssl) >= TLS1_3_VERSION && SSL_session_reused(ssl);
    if (psk && n->psk_id[0]) {
        out->auth = NBD_TLS_PSK;
        util_strlcpy(out->id, n->psk_id, sizeof(out->id));
        return 0;
    }
    X509 *peer = SSL_get0_peer_certificate(ssl);
    struct tls_identity id;
    struct nbd_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (peer && SSL_get_verify_result(ssl) == X509_V_OK && tls_identity_of_cert(peer, &id) == 0 &&
        id.role == TLS_ROLE_CLIENT && strcmp(id.cluster, t->cluster) == 0) {
        out->auth = NBD_TLS_CERT;
        util_strlcpy(out->id, id.id, sizeof(out->id));
    }
    return 0;
}

const char *nbd_tls_error(struct bufferevent *bev, char *buf, size_t cap)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    struct conn_note *n = ssl ? note_of(ssl) : NULL;
    char why[200];
    tls_bev_error(bev, why, sizeof(why)); /* also drains OpenSSL's queue */
    if (n && n->why[0]) snprintf(buf, cap, "%s", n->why);
    else if (n && n->psk_id[0])
        snprintf(buf, cap, "PSK identity \"%s\": wrong key? (%s)", n->psk_id, why);
    else snprintf(buf, cap, "%s", why);
    return buf;
}
