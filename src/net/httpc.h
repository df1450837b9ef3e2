/* httpc.h: a small blocking HTTP/1.1 client for `blockd ctl` and tests.
 *
 * One request per connection (Connection: close), numeric addresses only,
 * every step bounded by TIMEOUT_MS (connect, send, receive).  The response
 * body is capped (HTTPC_MAX_BODY) so a hostile or broken server cannot make
 * the client allocate without bound.  Not for use on the reactor thread:
 * it blocks. */
#ifndef BD_HTTPC_H
#define BD_HTTPC_H

#include <stddef.h>

#define HTTPC_MAX_BODY (16u << 20)

struct httpc_resp {
    int status;        /* HTTP status code */
    char *body;        /* NUL-terminated, owned: free() */
    size_t body_len;
};

/* Send METHOD PATH to the server at ADDR ("host:port").  BODY (may be NULL)
 * goes as application/json; TOKEN (may be NULL) as a bearer token.
 * 0 with *RESP filled, or -errno (-ETIMEDOUT, -ECONNREFUSED, -EPROTO for a
 * malformed response, -EFBIG for an oversized one). */
int httpc_request(const char *addr, const char *method, const char *path, const char *body,
                  const char *token, int timeout_ms, struct httpc_resp *resp);
void httpc_resp_free(struct httpc_resp *resp);

#endif
