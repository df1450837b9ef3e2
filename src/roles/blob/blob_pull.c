/* blob_pull.c: BLOB_PULL (see blob_pull.h).
 *
 * A request names a source server (id and address) and up to
 * WIRE_PULL_MAX blobs with their lengths and checksums.  Happy path, per
 * blob, BLOB_PULL_CONCURRENCY at a time: BLOB_GET on the link to the
 * source -> the reply's length and XXH3 checked against the request's
 * (which are the index's) -> the reply body taken and handed to
 * blobstore_put under the request's epoch -> durable.  When every blob
 * has a status the request is answered with all of them.
 *
 * Links to sources are made on first use and kept (a rebuild pulls from
 * the same few servers many times); a request whose source is not
 * connected yet waits for its link to come up, at most
 * BLOB_PULL_CONNECT_MS (blob_pull_tick), and then fails its blobs with
 * EAGAIN: the leader tries another source.
 *
 * Failure modes: the source lacks the blob (ENOENT) or serves bytes that
 * fail the checksum (ECSUM: never stored); the link drops (EAGAIN for what
 * had not started, the call's error for what had); the store refuses
 * (EFENCED for an old epoch, ENOSPC, EIMMUTABLE for a deleted id: each
 * its status).  A blob already stored with the same bytes is OK (puts
 * are idempotent), so a pull repeated after a lost answer is harmless.
 *
 * Lifetime: a request lives until its last store callback; blob_pull_free
 * frees the links (failing the gets in flight), answers what is done, and
 * leaves the puller to be freed by the last request. */
#include "roles/blob/blob_pull.h"
#include "base/bd.h"
#include "base/util.h"
#include "net/link.h"
#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>

struct pull_req;

struct peer {
    struct blob_pull *bp;
    uint64_t id;
    char addr[128];
    struct link *link;
    struct peer *next;
};

struct pull_one {              /* one blob being copied */
    struct pull_req *q;
    uint32_t i;                /* entry index in the request */
    struct wire_blob_entry e;
    struct conn_call call;
    uint8_t *body;             /* the GET reply's body (taken): the put's data */
    struct blobstore_put put;
    bool busy;
};

struct pull_req {
    struct blob_pull *bp;
    struct conn *c;
    struct wire_hdr hdr;
    uint8_t *body;             /* the request's body: m.entries point into it */
    struct wire_blob_pull_req m;
    struct peer *src;
    uint32_t next;             /* next entry to start */
    uint32_t running;
    uint32_t finished;
    uint64_t wait_until_ms;    /* waiting for src's link until then; 0: not waiting */
    uint8_t status[WIRE_PULL_MAX];
    struct pull_one one[BLOB_PULL_CONCURRENCY];
    struct pull_req *prev, *next_req;
};

struct blob_pull {
    struct reactor *rx;
    struct blobstore *bs;
    struct conn_opts opts;
    const char *tag;
    struct peer *peers;
    struct pull_req *reqs;
    bool freeing;              /* blob_pull_free ran: free with the last request */
    bool in_free;              /* blob_pull_free is running: it frees, not the requests */
    uint64_t n_blobs, n_bytes, n_failed;
};

static void pump(struct pull_req *q);

static void peer_on_up(struct link *l, void *arg)
{
    (void)l;
    struct peer *pr = arg;
    struct blob_pull *bp = pr->bp;
    for (struct pull_req *q = bp->reqs, *nx; q; q = nx) {
        nx = q->next_req; /* pump may finish and free q */
        if (q->src == pr && q->wait_until_ms) {
            q->wait_until_ms = 0;
            pump(q);
        }
    }
}

static const struct link_ops peer_ops = {.on_up = peer_on_up};

/* A link to blob server ID at ADDR: with TLS, whoever answers there must
 * hold ID's certificate (an address taken over is not the source). */
static struct link *link_to(struct blob_pull *bp, uint64_t id, const char *addr, struct peer *pr)
{
    struct conn_opts o = bp->opts;
    o.expect_id = id;
    return link_new(bp->rx, addr, &o, &peer_ops, pr);
}

static struct peer *peer_get(struct blob_pull *bp, uint64_t id, const char *addr)
{
    struct peer *pr;
    for (pr = bp->peers; pr; pr = pr->next)
        if (pr->id == id) break;
    if (pr && strcmp(pr->addr, addr) != 0) {
        /* The source moved: a link to its new address. */
        struct link *old = pr->link;
        pr->link = NULL;
        link_free(old);
        util_strlcpy(pr->addr, addr, sizeof(pr->addr));
        pr->link = link_to(bp, id, addr, pr);
        return pr->link ? pr : NULL;
    }
    if (pr) return pr;
    pr = calloc(1, sizeof(*pr));
    if (!pr) return NULL;
    pr->bp = bp;
    pr->id = id;
    util_strlcpy(pr->addr, addr, sizeof(pr->addr));
    pr->link = link_to(bp, id, addr, pr);
    if (!pr->link) {
        free(pr);
        return NULL;
    }
    pr->next = bp->peers;
    bp->peers = pr;
    return pr;
}

static void maybe_free_puller(struct blob_pull *bp)
{
    if (!bp->freeing || bp->in_free || bp->reqs) return;
    free(bp);
}

static void reply_and_free(struct pull_req *q)
{
    struct blob_pull *bp = q->bp;
    struct wire_blob_pull_resp r = {.n = q->m.n, .status = q->status};
    uint8_t fields[16 + WIRE_PULL_MAX];
    int n = wire_encode_blob_pull_resp(fields, sizeof(fields), &r);
    if (n < 0) conn_reply_error(q->c, &q->hdr, -EIO, 0, "pull reply does not encode");
    else conn_reply(q->c, &q->hdr, fields, (size_t)n, NULL);
    if (q->prev) q->prev->next_req = q->next_req;
    else bp->reqs = q->next_req;
    if (q->next_req) q->next_req->prev = q->prev;
    free(q->body);
    free(q);
    maybe_free_puller(bp);
}

/* Entry I ends with ERR (0: stored). */
static void one_done(struct pull_one *o, int err)
{
    struct pull_req *q = o->q;
    struct blob_pull *bp = q->bp;
    q->status[o->i] = (uint8_t)wire_status_from_err(err);
    if (err == 0) {
        bp->n_blobs++;
        bp->n_bytes += o->e.len;
    } else {
        bp->n_failed++;
        log_debug(bp->tag, "pull of blob %llu (partition %u) from %llu: %s",
                  (unsigned long long)o->e.blob_id, q->m.partition,
                  (unsigned long long)q->m.src_id, bd_strerror(err));
    }
    free(o->body);
    o->body = NULL;
    o->busy = false;
    q->running--;
    q->finished++;
    pump(q);
}

static void on_put(struct blobstore_put *p, int err)
{
    one_done(bd_container_of(p, struct pull_one, put), err);
}

static void on_get(struct conn_call *call, int err, struct conn_frame *f)
{
    struct pull_one *o = call->data;
    struct pull_req *q = o->q;
    if (err) {
        one_done(o, err == -ECONNRESET || err == -ESHUTDOWN || err == -ECANCELED ? -EAGAIN
                                                                                 : err);
        return;
    }
    struct wire_blob_get_resp r;
    if (wire_decode_blob_get_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) < 0) {
        one_done(o, -EPROTO);
        return;
    }
    /* C14: the bytes must be what the index says, whatever the source
     * believes about them. */
    if (r.data_len != o->e.len || util_xxh3(r.data, r.data_len) != o->e.csum) {
        one_done(o, -BD_ECSUM);
        return;
    }
    if (q->bp->freeing) {
        one_done(o, -ESHUTDOWN);
        return;
    }
    o->body = conn_frame_take(f); /* r.data points into it */
    o->put = (struct blobstore_put){.blob_id = o->e.blob_id, .partition = q->m.partition,
                                    .flags = BLOBSTORE_PUT_COMPRESSIBLE, .epoch = q->m.epoch,
                                    .csum = o->e.csum, .data = r.data, .len = r.data_len,
                                    .cb = on_put};
    int rc = blobstore_put(q->bp->bs, &o->put);
    if (rc == 0) return;
    one_done(o, rc == 1 ? 0 : rc); /* 1: already stored, same bytes */
}

/* Start blobs while there is room; answer when all are done. */
static void pump(struct pull_req *q)
{
    struct blob_pull *bp = q->bp;
    while (q->running < BLOB_PULL_CONCURRENCY && q->next < q->m.n && !q->wait_until_ms) {
        struct pull_one *o = NULL;
        for (unsigned k = 0; k < BLOB_PULL_CONCURRENCY && !o; k++)
            if (!q->one[k].busy) o = &q->one[k];
        if (BD_NEVER(!o)) break;
        uint32_t i = q->next++;
        *o = (struct pull_one){.q = q, .i = i, .busy = true};
        wire_blob_pull_entry(&q->m, i, &o->e);
        q->running++;
        struct wire_blob_get_req g = {.blob_id = o->e.blob_id, .partition = q->m.partition};
        uint8_t fields[64];
        int n = wire_encode_blob_get_req(fields, sizeof(fields), &g);
        o->call.cb = on_get;
        o->call.data = o;
        int rc = bp->freeing || !q->src || !q->src->link ? -ESHUTDOWN
                 : n < 0                      ? n
                                              : link_call(q->src->link, &o->call, WIRE_BLOB_GET,
                                                          fields, (size_t)n, NULL, 30000);
        if (rc < 0) {
            o->busy = false;
            q->running--;
            q->finished++;
            q->status[i] = (uint8_t)wire_status_from_err(rc == -ENOTCONN ? -EAGAIN : rc);
            bp->n_failed++;
        }
    }
    if (q->finished == q->m.n) reply_and_free(q);
}

struct blob_pull *blob_pull_new(struct reactor *rx, struct blobstore *bs,
                                const struct conn_opts *opts, const char *tag)
{
    struct blob_pull *bp = calloc(1, sizeof(*bp));
    if (!bp) return NULL;
    bp->rx = rx;
    bp->bs = bs;
    bp->opts = *opts;
    bp->opts.connect_timeout_ms = 2000;
    bp->opts.expect_role = WIRE_ROLE_BLOB; /* the sources are blob servers */
    bp->tag = tag;
    return bp;
}

void blob_pull_handle(struct blob_pull *bp, struct conn *c, struct conn_frame *f)
{
    struct wire_blob_pull_req m;
    if (wire_decode_blob_pull_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed BLOB_PULL");
        return;
    }
    char addr[128];
    if (!wire_str_copy(m.src_addr, addr, sizeof(addr))) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "BLOB_PULL: bad source address");
        return;
    }
    struct pull_req *q = calloc(1, sizeof(*q));
    struct peer *pr = q && !bp->freeing ? peer_get(bp, m.src_id, addr) : NULL;
    if (!pr) {
        free(q);
        conn_reply_error(c, &f->hdr, bp->freeing ? -ESHUTDOWN : -ENOMEM, 0, "BLOB_PULL");
        return;
    }
    q->bp = bp;
    q->c = c;
    q->hdr = f->hdr;
    q->body = conn_frame_take(f);
    q->m = m; /* its entries point into the body we now own */
    q->src = pr;
    q->next_req = bp->reqs;
    if (bp->reqs) bp->reqs->prev = q;
    bp->reqs = q;
    if (!link_is_up(pr->link)) q->wait_until_ms = util_mono_ms() + BLOB_PULL_CONNECT_MS;
    pump(q);
}

void blob_pull_tick(struct blob_pull *bp)
{
    uint64_t now = util_mono_ms();
    for (struct pull_req *q = bp->reqs, *nx; q; q = nx) {
        nx = q->next_req;
        if (!q->wait_until_ms || now < q->wait_until_ms) continue;
        /* The source never came up: fail what has not started. */
        while (q->next < q->m.n) {
            q->status[q->next++] = WIRE_EAGAIN;
            q->finished++;
            bp->n_failed++;
        }
        q->wait_until_ms = 0;
        pump(q);
    }
}

void blob_pull_stats(const struct blob_pull *bp, uint64_t *blobs, uint64_t *bytes,
                     uint64_t *failed)
{
    *blobs = bp->n_blobs;
    *bytes = bp->n_bytes;
    *failed = bp->n_failed;
}

void blob_pull_free(struct blob_pull *bp)
{
    if (!bp) return;
    bp->freeing = true;
    bp->in_free = true;
    for (struct pull_req *q = bp->reqs; q; q = q->next_req) q->src = NULL;
    /* Freeing a link fails its gets (their one_done starts nothing new). */
    while (bp->peers) {
        struct peer *pr = bp->peers;
        bp->peers = pr->next;
        struct link *l = pr->link;
        pr->link = NULL;
        link_free(l);
        free(pr);
    }
    /* Requests still waiting for a link, or with nothing running: answer
     * now.  Those with puts in the store finish when the store calls back. */
    for (struct pull_req *q = bp->reqs, *nx; q; q = nx) {
        nx = q->next_req;
        if (q->running) continue;
        while (q->next < q->m.n) {
            q->status[q->next++] = WIRE_ESHUTDOWN;
            q->finished++;
        }
        q->wait_until_ms = 0;
        pump(q);
    }
    bp->in_free = false;
    maybe_free_puller(bp);
}
