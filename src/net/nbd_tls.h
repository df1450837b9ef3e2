/* nbd_tls.h: TLS for an NBD server after NBD_OPT_STARTTLS (nbd.h "TLS"),
 * with X.509 and with pre-shared keys, and who the client turned out to be.
 *
 * X.509: the server presents its own certificate (the agent's: tls.h).  A
 * client certificate is optional; one that is sent must chain to the
 * cluster CA (else the handshake fails), and if it names a blockd
 * identity of role client (blockd://CLUSTER/client/ID) of this cluster,
 * ID is the client's id.
 *
 * PSK: the file qemu's tls-creds-psk and nbdkit's --tls-psk read, one
 * `identity:hexkey` line per client (GnuTLS's psktool writes it), is
 * loaded at start-up.  TLS 1.3 uses it as an external PSK (RFC 8446
 * 4.2.11) with SHA-256, the hash GnuTLS gives a PSK it has no other word
 * for; TLS 1.2 through the PSK key exchanges (ECDHE-PSK, DHE-PSK, PSK,
 * RFC 4279/5489).  The identity is the client's id.  An identity the file
 * does not hold ends the handshake (rather than falling back to X.509):
 * a client that offers a key means to be known by it.
 *
 * Not resumable (no tickets, no session cache): a resumed session would
 * skip the check the id comes from.  TLS 1.2 at least (NBD "TLS
 * versions": "MUST support TLS version 1.2").
 *
 * Built once at start-up (files are read then, so a bad key file is a
 * start-up error); immutable afterwards, shared by every connection on
 * the reactor thread. */
#ifndef BD_NBD_TLS_H
#define BD_NBD_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct bufferevent;
struct event_base;
struct tls_files;
struct nbd_tls;

#define NBD_TLS_ID_MAX 64      /* an id a volume's attachment can name (WIRE_ID_MAX) */
#define NBD_TLS_PSK_ID_MAX 128 /* identities longer than this are refused in the file */
#define NBD_TLS_PSK_MIN 16     /* key bytes at least (128 bits) */
#define NBD_TLS_PSK_MAX 64     /* ... at most (OpenSSL's PSK_MAX_PSK_LEN is 512) */
#define NBD_TLS_PSK_MAX_KEYS 4096

struct nbd_tls_opts {
    const struct tls_files *x509; /* our certificate, key and the cluster CA; NULL: PSK only */
    const char *cluster;          /* the cluster a client certificate must name */
    const char *psk_file;         /* NULL or "": no PSK */
};

/* Load O's files.  0 with *OUT owned (nbd_tls_free), or -EINVAL / -ENOENT
 * / -EACCES / -ENOMEM with one line in ERR (naming the file and, for the
 * PSK file, the line).  At least one of x509 and psk_file is needed. */
int nbd_tls_new(const struct nbd_tls_opts *o, struct nbd_tls **out, char *err, size_t errlen);
void nbd_tls_free(struct nbd_tls *t);
/* Keys loaded from the PSK file. */
unsigned nbd_tls_psk_count(const struct nbd_tls *t);

/* A server bufferevent over FD (already connected, the STARTTLS ACK
 * already sent) for the TLS handshake; owns FD (BEV_OPT_CLOSE_ON_FREE).
 * BEV_EVENT_CONNECTED: the handshake is done (nbd_tls_peer);
 * BEV_EVENT_ERROR: it failed (nbd_tls_error).  NULL on ENOMEM (FD closed). */
struct bufferevent *nbd_tls_bev(struct nbd_tls *t, struct event_base *base, int fd);

enum nbd_tls_auth {
    NBD_TLS_ANON,  /* X.509 with no client certificate, or one naming no client id */
    NBD_TLS_PSK,   /* a pre-shared key: id is its identity */
    NBD_TLS_CERT,  /* a client certificate of this cluster's CA naming client ID */
};

struct nbd_tls_peer {
    enum nbd_tls_auth auth;
    char id[NBD_TLS_PSK_ID_MAX + 1]; /* "" for ANON */
    char version[16];                /* "TLSv1.3" */
    char cipher[64];                 /* "TLS_AES_128_GCM_SHA256" */
};
/* After BEV_EVENT_CONNECTED on BEV (from nbd_tls_bev): who the client is.
 * 0, or -EINVAL when BEV is no such connection. */
int nbd_tls_peer(struct bufferevent *bev, struct nbd_tls_peer *out);
/* Why BEV's handshake failed, as one line ("unknown PSK identity
 * \"vm9\"", "certificate verify failed: unable to get local issuer
 * certificate", "the peer does not speak TLS ..."); returns BUF. */
const char *nbd_tls_error(struct bufferevent *bev, char *buf, size_t cap);

/* One PSK file line's worth, for nbd_tls_psk_parse. */
struct nbd_tls_psk {
    char identity[NBD_TLS_PSK_ID_MAX + 1];
    unsigned char key[NBD_TLS_PSK_MAX];
    unsigned key_len;
};
/* Parse the PSK file TEXT (LEN bytes): lines `identity:hexkey`, empty
 * lines and lines starting with '#' skipped.  An identity is 1 to
 * NBD_TLS_PSK_ID_MAX printable bytes without ':'; a key NBD_TLS_PSK_MIN
 * to NBD_TLS_PSK_MAX bytes in hex; identities are unique.  0 with *OUT
 * (malloc'd, the caller frees) and *N, or -EINVAL with "line N: why" in
 * ERR (no key material in it). */
int nbd_tls_psk_parse(const char *text, size_t len, struct nbd_tls_psk **out, unsigned *n,
                      char *err, size_t errlen);

#endif
