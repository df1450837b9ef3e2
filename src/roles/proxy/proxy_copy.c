/* proxy_copy.c: copy ranges of existing blobs into one new blob.
 *
 *   proxy_copy_start -> GET each range (COPY_READS at a time, from any
 *   replica, verified, proxy_blobs.h) into one buffer -> XXH3-64 of it ->
 *   a blob id from the lease -> PUT to the three servers of a partition
 *   whose servers are all up -> cb
 *
 * Failure modes: a range no replica can serve is zero-filled and marked
 * FAILED (the caller leaves it out of its command, so nothing ever points
 * at those zeroes); every range failing is -EIO.  A put that fails is
 * retried under a new id on another partition (COPY_PUT_TRIES in all),
 * like a client write (proxy_io.c); the ids and copies left behind are
 * orphans for anti-entropy (proxy_resync.c).  No lease, no partition:
 * -EAGAIN, the caller tries again later.
 *
 * Why one new blob per copy and not a put per range: the rewrite's point
 * is to gather scattered live ranges into few, full blobs; and a flatten
 * copies at blob size, as a sequential client write would.  The copy
 * never touches the index: the bytes it wrote mean nothing until the
 * caller's command points at them, and are garbage if it never does. */
#include "roles/proxy/proxy_copy.h"
#include "roles/proxy/proxy_index.h"
#include "roles/proxy/proxy_int.h"
#include "roles/proxy/proxy_mgmt.h"
#include "roles/proxy/proxy_plan.h"
#include "roles/proxy/proxy_view.h"
#include "base/bd.h"
#include "base/util.h"
#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>

#define COPY_READS 16          /* gets in flight per copy */
#define COPY_PUT_TRIES 3

bool proxy_copy_place(struct proxy *p, uint32_t avoid, struct index_part *out)
{
    const struct proxy_view *v = proxy_view_get(p);
    if (!v) return false;
    int i = proxy_plan_place(v->parts, v->n_parts, v->cum, util_rand64(&p->place_rng), avoid);
    if (i < 0) return false;
    *out = v->parts[i];
    return true;
}

static void copy_finish(struct proxy_copy *c, int err)
{
    free(c->buf);
    free(c->gets);
    c->buf = NULL;
    c->gets = NULL;
    c->cb(c, err);
}

static void copy_put(struct proxy_copy *c);

static void on_put(struct proxy_blobs_put *put, int err)
{
    struct proxy_copy *c = put->data;
    if (err == 0) {
        c->blob_id = put->blob_id;
        c->partition = put->partition;
        copy_finish(c, 0);
        return;
    }
    c->avoid = put->partition;
    if (++c->tries < COPY_PUT_TRIES && !c->p->stopping) {
        copy_put(c);
        return;
    }
    c->why = err == -ETIMEDOUT ? "the blob servers' puts timed out"
             : err == -BD_EFENCED || err == -ESTALE ? "the blob servers refused the partition's epoch"
                                                    : "the blob servers' puts failed";
    log_warn(c->p->tag, "copy: put of %u bytes failed on %d partitions: %s", c->len, c->tries,
             bd_strerror(err));
    copy_finish(c, err == -ENOSPC ? -ENOSPC : -EAGAIN);
}

static void copy_put(struct proxy_copy *c)
{
    struct proxy *p = c->p;
    struct index_part placed, *part = &placed;
    bool placed_ok = proxy_copy_place(p, c->avoid, &placed);
    uint64_t id = placed_ok ? proxy_mgmt_lease_take(p) : 0;
    if (!id) {
        c->why = !placed_ok ? "no open partition (three blob servers up, below the fill limit)"
                            : "this proxy's blob id lease is empty (a refill is under way)";
        copy_finish(c, -EAGAIN);
        return;
    }
    c->put = (struct proxy_blobs_put){.cb = on_put, .data = c, .blob_id = id,
                                      .partition = part->id, .epoch = part->epoch,
                                      .csum = c->csum, .buf = c->buf, .len = c->len,
                                      .compressible = true};
    memcpy(c->put.nodes, part->nodes, sizeof(c->put.nodes));
    proxy_blobs_put3(p->blobs, &c->put);
}

static void reads_next(struct proxy_copy *c);

static void on_get(struct proxy_blobs_get *g, int err)
{
    struct proxy_copy *c = g->data;
    struct proxy_copy_src *s = &c->src[g - c->gets];
    c->in_flight--;
    if (err) {
        s->failed = true;
        c->n_failed++;
        memset(c->buf + s->dst_off, 0, s->len);
        log_warn(c->p->tag, "copy: blob %llu [%u, +%u) unreadable: %s",
                 (unsigned long long)s->blob_id, s->off, s->len, bd_strerror(err));
    }
    reads_next(c);
}

/* Issue gets up to COPY_READS in flight; true if any is in flight. */
static bool reads_issue(struct proxy_copy *c)
{
    struct proxy *p = c->p;
    unsigned n_parts = 0;
    /* A stopping proxy has closed its index readers (a get failed by the
     * stop lands here from proxy_blobs' deferred callback): the ranges
     * left fail below without a look at the partition table. */
    const struct index_part *parts = p->stopping ? NULL : proxy_index_parts(p, &n_parts);
    while (c->next < c->n && c->in_flight < COPY_READS) {
        uint32_t i = c->next++;
        struct proxy_copy_src *s = &c->src[i];
        const struct index_part *part = NULL;
        for (unsigned k = 0; k < n_parts; k++)
            if (parts[k].id == s->partition) part = &parts[k];
        if (!part || p->stopping) {
            s->failed = true;
            c->n_failed++;
            memset(c->buf + s->dst_off, 0, s->len);
            continue;
        }
        struct proxy_blobs_get *g = &c->gets[i];
        *g = (struct proxy_blobs_get){.cb = on_get, .data = c, .blob_id = s->blob_id,
                                      .partition = s->partition, .off = s->off, .len = s->len,
                                      .dst = c->buf + s->dst_off};
        memcpy(g->nodes, part->nodes, sizeof(g->nodes));
        c->in_flight++;
        proxy_blobs_get(p->blobs, g);
    }
    return c->in_flight > 0;
}

/* After a get: more gets, or the put once every range is in. */
static void reads_next(struct proxy_copy *c)
{
    if (reads_issue(c) || c->next < c->n) return;
    if (c->n_failed == c->n) {
        copy_finish(c, -EIO);
        return;
    }
    c->csum = util_xxh3(c->buf, c->len);
    copy_put(c);
}

static void on_nothing_read(void *arg)
{
    reads_next(arg);
}

static void on_data(void *arg)
{
    struct proxy_copy *c = arg;
    c->csum = util_xxh3(c->buf, c->len);
    copy_put(c);
}

int proxy_copy_start(struct proxy *p, struct proxy_copy *c)
{
    if (!c->len || (!c->n && !c->bytes)) return -EINVAL;
    if (c->bytes) {
        c->p = p;
        c->n = c->next = c->in_flight = c->n_failed = 0;
        c->tries = 0;
        c->avoid = 0;
        c->blob_id = 0;
        c->gets = NULL;
        c->buf = malloc(c->len);
        if (!c->buf) return -ENOMEM;
        memcpy(c->buf, c->bytes, c->len);
        /* The put (or its failure) starts from the loop: never a callback
         * inside this call. */
        if (reactor_defer(p->rx, on_data, c) < 0) {
            free(c->buf);
            c->buf = NULL;
            return -ENOMEM;
        }
        return 0;
    }
    c->p = p;
    c->next = c->in_flight = c->n_failed = 0;
    c->tries = 0;
    c->avoid = 0;
    c->blob_id = 0;
    for (uint32_t i = 0; i < c->n; i++) c->src[i].failed = false;
    /* Zeroed: gaps between ranges (callers leave none, but might) hold
     * zeroes, never stale heap bytes. */
    c->buf = calloc(1, c->len);
    c->gets = calloc(c->n, sizeof(*c->gets));
    if (!c->buf || !c->gets) goto nomem;
    /* The gets call back later, never inside proxy_blobs_get; only when
     * none could be issued (no range's partition known) is the failure
     * reported from the loop, so never inside this call either. */
    if (!reads_issue(c) && reactor_defer(p->rx, on_nothing_read, c) < 0) goto nomem;
    return 0;
nomem:
    free(c->buf);
    free(c->gets);
    c->buf = NULL;
    c->gets = NULL;
    return -ENOMEM;
}
