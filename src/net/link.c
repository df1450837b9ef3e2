/* link.c: see link.h.
 *
 * States: CONNECTING (conn exists, HELLO not answered) -> UP -> (failure)
 * -> WAITING (timer armed, no conn) -> CONNECTING ...  A failure while
 * CONNECTING also goes to WAITING with a doubled delay; reaching UP resets
 * the delay.  The conn's on_close is the only way out of CONNECTING/UP. */
#include "net/link.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#define LINK_BACKOFF_MIN_MS 50
#define LINK_BACKOFF_MAX_MS 2000

struct link {
    struct reactor *rx;
    char addr[128];
    struct conn_opts opts;
    const struct link_ops *ops;
    void *arg;
    struct conn *conn;      /* current connection (connecting or up), or NULL */
    bool up;
    bool freeing;
    uint64_t peer_id;
    uint32_t backoff_ms;
    struct event *retry_ev;
    uint64_t rand;
};

static void link_connect(struct link *l);

static void schedule_retry(struct link *l)
{
    uint32_t d = l->backoff_ms;
    d += (uint32_t)(util_rand64(&l->rand) % (d / 2 + 1)); /* jitter: never in lockstep */
    struct timeval tv = {d / 1000, (d % 1000) * 1000};
    evtimer_add(l->retry_ev, &tv);
    l->backoff_ms = BD_MIN(l->backoff_ms * 2, LINK_BACKOFF_MAX_MS);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    link_connect(arg);
}

static void on_conn_up(struct conn *c, void *arg)
{
    struct link *l = arg;
    l->up = true;
    l->peer_id = conn_peer_id(c);
    l->backoff_ms = LINK_BACKOFF_MIN_MS;
    log_debug(l->opts.tag, "link %s up (peer id %llu)", l->addr, (unsigned long long)l->peer_id);
    if (l->ops->on_up) l->ops->on_up(l, l->arg);
}

static void on_conn_close(struct conn *c, int err, void *arg)
{
    (void)c;
    struct link *l = arg;
    bool was_up = l->up;
    l->conn = NULL;
    l->up = false;
    if (l->freeing) return;
    if (was_up) {
        log_info(l->opts.tag, "link %s down: %s", l->addr, bd_strerror(err));
        if (l->ops->on_down) l->ops->on_down(l, err, l->arg);
    } else {
        log_debug(l->opts.tag, "link %s: connect failed: %s", l->addr, bd_strerror(err));
    }
    if (!l->conn) schedule_retry(l); /* on_down may have called link_reset */
}

static void on_conn_request(struct conn *c, struct conn_frame *f, void *arg)
{
    struct link *l = arg;
    if (l->ops->on_request) l->ops->on_request(l, c, f, l->arg);
    else if (!(f->hdr.flags & WIRE_F_ONEWAY))
        conn_reply_error(c, &f->hdr, -ENOTSUP, 0, "no requests expected on this link");
}

static const struct conn_ops link_conn_ops = {
    .on_request = on_conn_request,
    .on_up = on_conn_up,
    .on_close = on_conn_close,
};

static void link_connect(struct link *l)
{
    if (l->conn || l->freeing) return;
    int err = 0;
    l->conn = conn_connect(l->rx, l->addr, &link_conn_ops, l, &l->opts, &err);
    if (!l->conn) {
        log_debug(l->opts.tag, "link %s: %s", l->addr, bd_strerror(err));
        schedule_retry(l);
    }
}

struct link *link_new(struct reactor *rx, const char *addr, const struct conn_opts *opts,
                      const struct link_ops *ops, void *arg)
{
    struct link *l = calloc(1, sizeof(*l));
    if (!l) return NULL;
    l->rx = rx;
    util_strlcpy(l->addr, addr, sizeof(l->addr));
    l->opts = *opts;
    l->ops = ops;
    l->arg = arg;
    l->backoff_ms = LINK_BACKOFF_MIN_MS;
    l->rand = util_seed();
    l->retry_ev = evtimer_new(reactor_base(rx), on_retry, l);
    if (!l->retry_ev) {
        free(l);
        return NULL;
    }
    link_connect(l);
    return l;
}

void link_free(struct link *l)
{
    if (!l) return;
    l->freeing = true;
    evtimer_del(l->retry_ev);
    event_free(l->retry_ev);
    if (l->conn) conn_close(l->conn, -ESHUTDOWN);
    free(l);
}

bool link_is_up(const struct link *l)
{
    return l->up;
}

const char *link_addr(const struct link *l)
{
    return l->addr;
}

uint64_t link_peer_id(const struct link *l)
{
    return l->peer_id;
}

int link_call(struct link *l, struct conn_call *call, uint16_t type, const void *fields,
              size_t fields_len, const struct conn_payload *payload, uint32_t timeout_ms)
{
    if (!l->up || !l->conn) return -ENOTCONN;
    return conn_call(l->conn, call, type, fields, fields_len, payload, timeout_ms);
}

int link_send_oneway(struct link *l, uint16_t type, const void *fields, size_t fields_len,
                     const struct conn_payload *payload)
{
    if (!l->up || !l->conn) return -ENOTCONN;
    return conn_send_oneway(l->conn, type, fields, fields_len, payload);
}

void link_reset(struct link *l)
{
    if (l->conn) {
        conn_close(l->conn, -ECONNRESET); /* on_close schedules the retry */
    } else {
        evtimer_del(l->retry_ev);
        link_connect(l);
    }
}
