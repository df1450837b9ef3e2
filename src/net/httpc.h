/* httpc.h: a small blocking HTTP/1.1 client for `blockd ctl` and tests.
 *
 * One request per connection (Connection: close), numeric addresses only,
 * every step bounded by TIMEOUT_MS (connect, TLS handshake, send,
 * receive).  HTTPS when a CA file is given: the server's certificate must
 * chain to that CA (the cluster CA, and nothing else) and name a blockd
 * identity of the expected role (tls.h); host names are not checked, as
 * the cluster CA issues node certificates only.  The response
 * body is capped (HTTPC_MAX_BODY) so a hostile or broken server cannot make
 * the client allocate without bound.  Not for use on the reactor thread:
 * it blocks. */
#ifndef BD_HTTPC_H
#define BD_HTTPC_H

#include <stddef.h>
#include <stdint.h>

#define HTTPC_MAX_BODY (16u << 20)

struct httpc_resp {
    int status;        /* HTTP status code */
    char *body;        /* NUL-terminated, owned: free() */
    size_t body_len;
};

struct httpc_target {
    const char *addr;      /* "host:port" */
    const char *ca_file;   /* NULL: plain HTTP; else HTTPS against this CA */
    uint16_t expect_role;  /* HTTPS: the server's role (enum wire_role); 0 any */
    const char *token;     /* bearer token, or NULL */
    int timeout_ms;
};

/* Send METHOD PATH to T.  BODY (may be NULL) goes as application/json.
 * 0 with *RESP filled, or -errno (-ETIMEDOUT, -ECONNREFUSED, -EPROTO for a
 * malformed response, -EFBIG for an oversized one, -EACCES for a server
 * certificate that does not verify or names the wrong role). */
int httpc_request(const struct httpc_target *t, const char *method, const char *path,
                  const char *body, struct httpc_resp *resp);
void httpc_resp_free(struct httpc_resp *resp);

#endif
