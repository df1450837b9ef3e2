/* agent_io.c: the request paths of the volume back end (agent_vol.h):
 * READ, WRITE, WRITE_ZEROES, TRIM, FLUSH, BLOCK_STATUS.
 *
 * Place.  Below the registry and agent_attach.c, above agent_ship.c
 * (agent_vol_int.h).  It calls down to the shipper (to put versions into
 * the map, kick and reclaim), the client (VOL_READ, VOL_MAP, VOL_FLUSH)
 * and the journal; the shipper reports acks back through up->progress
 * (agent_io_progress), and a volume that must stop goes up through
 * up->fail, one that may be freed through up->release.
 *
 * Writes.  A write is appended to the journal (one pwritev: header, data,
 * trailer) and put into the dirty map; then it completes (C4), or, with
 * FUA, waits until its blocks are durable.  The block checksums are
 * computed once here and serve the journal, the map, every later read
 * from the cache and every ship (C14).  When the journal is full the
 * write waits in a FIFO (its NBD connection's own queue bounds how many
 * there are) while shipping frees space; a write that waited
 * io_timeout_ms fails with -EIO.  Acknowledged data is never dropped.
 *
 * Reads.  The dirty map is consulted at submission: blocks dirty now are
 * copied from the journal (verified against their checksums) or zeroed
 * now, and only the others are asked of the cluster, with min_index = the
 * highest raft index acked to us (C7).  Taking the dirty blocks at
 * submission matters: a block shipped and cleaned while the cluster read
 * is in flight must not fall back to cluster data the read was not
 * guaranteed to see.  A block whose journal bytes fail their checksum
 * becomes LOST and the read fails -EIO: never garbage.  LOST blocks fail
 * reads with -EIO until they are rewritten (a whole-block write replaces
 * them; a partial one fails, as its read does).
 *
 * Unaligned writes are read-modify-writes serialised per block: see
 * "unaligned writes" below.  Large aligned writes may skip the journal:
 * see "large writes around the journal" below.
 *
 * FLUSH and FUA (C1, C2, C8).  A FLUSH records the journal's last sequence
 * number S at submission: every write completed before it has a number
 * <= S (writes still waiting for space have none yet and are not
 * covered).  It completes when
 *   1. no dirty extent has need <= S (agent_cache.h: versions overwritten
 *      before shipping hand their need to the newer version),
 *   2. a journal sync that began after its submission has completed, and
 *   3. the generation is proven current: a VOL_WRITE was acked after the
 *      flush was submitted, or else a VOL_FLUSH (fence check) succeeded.
 * A FUA write needs 1 over its own blocks (with S its own number) and 2.
 * Why the journal sync: after power loss an older segment may survive
 * while a newer one holding a flushed version is lost; replay would then
 * ship the older version over the flushed one (C5).  Syncing the journal
 * before the flush completes rules that out; it runs on the task queue in
 * parallel with the shipping, one sync for all waiters (group commit).
 * Because the map is shared by every connection of the volume, a flush on
 * one connection covers writes completed on another (C8). */
#include "base/bd.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "base/util.h"
#include "roles/agent/agent_blobs.h"
#include "roles/agent/agent_io.h"
#include "roles/agent/agent_mapc.h"
#include "roles/agent/agent_ship.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

/* agent_vol_req private fields. */
#define RQ_HANDLE 0   /* priv[]: the handle */
#define RQ_DUR 1      /* priv[]: DUR_FLUSH / DUR_FUA while on the durable list */
#define RQ_KIND 2     /* priv[]: CACHE_* of a waiting write */
#define RQ_FENCE 3    /* priv[]: fence check number a flush waits for (0 none) */
#define RQ_RMW 3      /* priv[]: the RMW of an unaligned write (writes never use RQ_FENCE) */
#define RQ_ERR 4      /* priv[]: error to deliver */
#define RQ_T0 5       /* priv[]: submission time (µs), for the flush histogram */
#define RQ_TARGET 0   /* priv_u64[]: sequence number to make durable */
#define RQ_SUBMIT 1   /* priv_u64[]: submission time, ms */
#define RQ_TICKET 2   /* priv_u64[]: journal sync wanted */
#define RQ_ACKS 3     /* priv_u64[]: vol->acks at submission */

#define DUR_FLUSH 1
#define DUR_FUA 2

/* A READ or BLOCK_STATUS that needs the cluster. */
struct agent_io_read {
    struct agent_vol_shared *v;
    struct agent_vol_req *req;
    bool status;     /* BLOCK_STATUS */
    uint64_t b0, nb; /* the request's blocks */
    uint64_t c0, cn; /* blocks asked of the cluster */
    uint8_t *kind;   /* per block: enum agent_vol_extent_kind, or RK_CLUSTER */
    int tries;
    uint64_t deadline_ms;   /* of the VOL_READ; 0: io_timeout_ms from its send */
    struct agent_client_req call;
    struct agent_io_read *next_free;
    /* A direct read (map leases, agent_mapc.h): the lease asked for, and
     * the blob GETs in flight with the volume offset each fills. */
    uint64_t lease_off, lease_sent_ms, lease_min_index, lease_epoch;
    unsigned pending;
    int derr;
    struct agent_blobs_get gets[AGENT_IO_DIRECT_GETS];
    uint64_t get_off[AGENT_IO_DIRECT_GETS];
};

#define RK_CLUSTER 0xff /* agent_io_read.kind: not dirty here, asked of the cluster */

static uintptr_t P(const struct agent_vol_req *r, int i)
{
    return (uintptr_t)r->priv[i];
}

/* ---- completions --------------------------------------------------------- */

static void complete(struct agent_vols *vs, struct agent_vol_req *req, int err)
{
    req->priv[RQ_ERR] = (void *)(intptr_t)err;
    req->next = NULL;
    if (vs->done_tail) vs->done_tail->next = req;
    else vs->done_head = req;
    vs->done_tail = req;
    if (!vs->freeing) event_active(vs->done_ev, 0, 0);
}

static void gate_run(struct agent_vol_shared *v);

static int state_err(const struct agent_vol_shared *v)
{
    if (v->vs->stopping || v->vs->freeing) return -ESHUTDOWN;
    if (v->state == AGENT_VOL_FENCED || v->state == AGENT_VOL_FAILED) return -EIO;
    return 0;
}

static int check_range(const struct agent_vol_shared *v, const struct agent_vol_req *req,
                       uint64_t max)
{
    if (req->len == 0 || req->len > max || req->off % BD_BLOCK_SIZE || req->len % BD_BLOCK_SIZE)
        return -EINVAL;
    if (req->off > v->size || req->len > v->size - req->off) return -ERANGE;
    return 0;
}

/* ---- journal sync -------------------------------------------------------- */

static void sync_kick(struct agent_vol_shared *v);

static void on_sync(struct journal_sync_req *r, int err)
{
    struct agent_vol_shared *v = r->data;
    v->sync_busy = false;
    if (v->vs->freeing) return;
    if (err) {
        v->jfailed = true;
        log_error(v->vs->tag, "vol %s: journal sync failed (%s): writes and flushes now fail",
                  v->name, bd_strerror(err));
        agent_io_fail_all(v, -EIO);
        return;
    }
    v->sync_done = v->sync_started;
    /* Reclaim waited for the sync; durability may be reached. */
    agent_ship_reclaim(v);
    agent_io_progress(v);
    agent_ship_kick(v);
    sync_kick(v);
    v->vs->up->release(v);
}

static void sync_kick(struct agent_vol_shared *v)
{
    if (v->sync_busy || v->sync_started == v->sync_want || !v->j || v->vs->freeing) return;
    v->sync_busy = true;
    v->sync_started = v->sync_want;
    v->sync_req.cb = on_sync;
    v->sync_req.data = v;
    journal_sync(v->j, &v->sync_req); /* may call on_sync before returning */
}

static void dur_add(struct agent_vol_shared *v, struct agent_vol_req *req, int kind,
                    uint64_t target)
{
    req->priv[RQ_DUR] = (void *)(uintptr_t)kind;
    req->priv[RQ_FENCE] = NULL;
    req->priv[RQ_T0] = (void *)(uintptr_t)(util_mono_ns() / 1000);
    req->priv_u64[RQ_TARGET] = target;
    req->priv_u64[RQ_SUBMIT] = util_mono_ms();
    req->priv_u64[RQ_TICKET] = ++v->sync_want;
    req->priv_u64[RQ_ACKS] = v->acks;
    req->next = NULL;
    if (v->dur_tail) v->dur_tail->next = req;
    else v->dur_head = req;
    v->dur_tail = req;
    v->drain = true; /* ship everything dirty now */
    sync_kick(v);
}

/* ---- fence check (VOL_FLUSH) ---------------------------------------------- */

static void on_fence(struct agent_client_req *call, int err, struct conn_frame *f)
{
    struct agent_vol_shared *v = call->data;
    v->fence_busy = false;
    if (v->vs->freeing) return;
    if (err == 0) {
        struct wire_vol_flush_resp r;
        if (wire_decode_vol_flush_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) == 0) {
            if (r.raft_index > v->max_index) v->max_index = r.raft_index;
            v->fence_ok = v->fence_epoch;
            v->progress_ms = util_mono_ms();
        } else {
            err = -EIO;
        }
    }
    if (err == -BD_EFENCED && (v->state == AGENT_VOL_REATTACH || v->fence_gen != v->gen)) {
        /* Our own re-attach raised the generation under the check: the
         * flushes ask again once it is done. */
        for (struct agent_vol_req *r = v->dur_head; r; r = r->next)
            if (P(r, RQ_FENCE) == v->fence_epoch) r->priv[RQ_FENCE] = NULL;
    } else if (err == -BD_EFENCED) {
        v->vs->up->fail(v, -BD_EFENCED, "VOL_FLUSH refused: another agent attached the volume");
    } else if (err) {
        /* The flushes waiting for this check fail; later ones try again. */
        struct agent_vol_req **pp = &v->dur_head, *last = NULL;
        while (*pp) {
            struct agent_vol_req *r = *pp;
            if (P(r, RQ_FENCE) == v->fence_epoch) {
                *pp = r->next;
                complete(v->vs, r, err == -ETIMEDOUT ? -ETIMEDOUT : -EIO);
            } else {
                last = r;
                pp = &r->next;
            }
        }
        v->dur_tail = last;
    }
    agent_io_check_durable(v);
    v->vs->up->release(v);
}

static void fence_start(struct agent_vol_shared *v)
{
    struct wire_vol_flush_req m = {.vol_id = v->vol_id, .generation = v->gen};
    struct agent_client_req *c = &v->fence_call;
    memset(c, 0, sizeof(*c));
    int n = wire_encode_vol_flush_req(c->fields, sizeof(c->fields), &m);
    if (!BD_ALWAYS(n > 0)) return;
    c->fields_len = (size_t)n;
    c->type = WIRE_VOL_FLUSH;
    c->idempotent = true; /* a check, it changes nothing */
    c->cb = on_fence;
    c->data = v;
    v->fence_busy = true;
    v->fence_gen = v->gen;
    agent_client_call(v->vs->cl, c);
}

/* ---- durability waiters -------------------------------------------------- */

void agent_io_check_durable(struct agent_vol_shared *v)
{
    if (!v->dur_head || v->vs->freeing) return;
    if (v->state == AGENT_VOL_FENCED || v->state == AGENT_VOL_FAILED || v->jfailed) {
        agent_io_fail_all(v, -EIO);
        return;
    }
    uint64_t min_need = v->c ? agent_cache_min_need(v->c) : UINT64_MAX;
    uint64_t now_us = util_mono_ns() / 1000;
    bool need_fence = false;
    struct agent_vol_req **pp = &v->dur_head, *last = NULL;
    while (*pp) {
        struct agent_vol_req *r = *pp;
        uint64_t target = r->priv_u64[RQ_TARGET];
        bool fua = P(r, RQ_DUR) == DUR_FUA;
        bool durable = fua ? agent_cache_min_need_range(v->c, r->off / BD_BLOCK_SIZE,
                                                        (r->off + r->len) / BD_BLOCK_SIZE) > target
                           : min_need > target;
        bool done = false;
        if (durable && r->priv_u64[RQ_TICKET] <= v->sync_done) {
            if (fua || v->acks > r->priv_u64[RQ_ACKS]) {
                done = true;
            } else if (P(r, RQ_FENCE) && P(r, RQ_FENCE) <= v->fence_ok) {
                done = true;
            } else if (!P(r, RQ_FENCE)) {
                /* Wait for the next check sent from now on. */
                r->priv[RQ_FENCE] = (void *)(uintptr_t)(v->fence_epoch + 1);
                need_fence = true;
            } else if (P(r, RQ_FENCE) > v->fence_epoch) {
                need_fence = true;
            }
        }
        if (done) {
            *pp = r->next;
            if (!fua) metrics_observe_us(v->vs->m_flush, now_us - P(r, RQ_T0));
            complete(v->vs, r, 0);
        } else {
            last = r;
            pp = &r->next;
        }
    }
    v->dur_tail = last;
    if (need_fence && !v->fence_busy && v->state == AGENT_VOL_ACTIVE) {
        v->fence_epoch++;
        fence_start(v);
    }
}

static void gate_fail_all(struct agent_vol_shared *v, int err);

void agent_io_fail_all(struct agent_vol_shared *v, int err)
{
    gate_fail_all(v, err);
    while (v->wait_head) {
        struct agent_vol_req *r = v->wait_head;
        v->wait_head = r->next;
        complete(v->vs, r, err);
    }
    v->wait_tail = NULL;
    while (v->dur_head) {
        struct agent_vol_req *r = v->dur_head;
        v->dur_head = r->next;
        complete(v->vs, r, err);
    }
    v->dur_tail = NULL;
}

/* Requests waiting on the cluster fail once it has taken nothing from us
 * for io_timeout_ms since they were submitted ("unreachable"), not after a
 * fixed time: a slow but working cluster, or a re-attach, is progress. */
static bool expired(const struct agent_vol_shared *v, const struct agent_vol_req *r, uint64_t now)
{
    uint64_t since = BD_MAX(r->priv_u64[RQ_SUBMIT], v->progress_ms);
    return now >= since + v->vs->cfg->io_timeout_ms;
}

void agent_io_tick(struct agent_vol_shared *v, uint64_t now)
{
    /* Writes waiting for journal space: FIFO, so the oldest go first. */
    while (v->wait_head && expired(v, v->wait_head, now)) {
        struct agent_vol_req *r = v->wait_head;
        v->wait_head = r->next;
        if (!v->wait_head) v->wait_tail = NULL;
        complete(v->vs, r, -EIO);
    }
    gate_run(v); /* an RMW may have waited for one of those */
    struct agent_vol_req **pp = &v->dur_head, *last = NULL;
    while (*pp) {
        struct agent_vol_req *r = *pp;
        if (expired(v, r, now)) {
            *pp = r->next;
            complete(v->vs, r, -ETIMEDOUT);
        } else {
            last = r;
            pp = &r->next;
        }
    }
    v->dur_tail = last;
}

/* ---- writes -------------------------------------------------------------- */

static void wait_drain(struct agent_vol_shared *v);

/* Append REQ to the journal and the map.  Returns -EAGAIN (nothing done)
 * if the journal is full; otherwise REQ was completed or moved to the
 * durable list. */
static int try_append(struct agent_vol_shared *v, struct agent_vol_req *req)
{
    struct agent_vols *vs = v->vs;
    int kind = (int)P(req, RQ_KIND);
    uint64_t nb = req->len / BD_BLOCK_SIZE;
    const uint64_t *cs = NULL;
    if (kind == AGENT_CACHE_DATA) {
        for (uint64_t i = 0; i < nb; i++)
            v->csum_scratch[i] = util_xxh3(req->wbuf + i * BD_BLOCK_SIZE, BD_BLOCK_SIZE);
        cs = v->csum_scratch;
    }
    struct journal_rec rec;
    int rc = journal_append(v->j, kind, req->off, req->len, req->wbuf, cs, false, &rec);
    if (rc == -EAGAIN) {
        agent_ship_reclaim(v);
        rc = journal_append(v->j, kind, req->off, req->len, req->wbuf, cs, false, &rec);
    }
    if (rc == -EAGAIN) return rc;
    if (rc < 0) {
        if (rc != -ENOSPC) {
            if (journal_failed(v->j)) v->jfailed = true;
            log_error(vs->tag, "vol %s: journal append failed: %s", v->name, bd_strerror(rc));
        }
        complete(vs, req, rc == -ENOSPC ? -ENOSPC : -EIO);
        return rc;
    }
    rc = agent_ship_put_version(v, kind, req->off / BD_BLOCK_SIZE, nb, rec.seq, rec.seg,
                                rec.data_pos, cs, util_mono_ms());
    if (rc < 0) {
        /* The entry is in the journal but not in the map: reads and ships
         * would miss it.  Stop the volume; replay after a restart has it. */
        vs->up->fail(v, -EIO, "no memory for the dirty map");
        complete(vs, req, -EIO);
        return rc;
    }
    if (req->flags & AGENT_VOL_REQ_FUA)
        dur_add(v, req, DUR_FUA, rec.seq);
    else
        complete(vs, req, 0);
    if (agent_cache_dirty_bytes(v->c) >= vs->hw_bytes || journal_used_bytes(v->j) >= vs->hw_bytes)
        v->drain = true;
    return 0;
}

void agent_io_drain_waiters(struct agent_vol_shared *v)
{
    if (!v->wait_head) return;
    wait_drain(v);
    gate_run(v); /* an RMW may have waited for a write that is in the map now */
}

static void wait_drain(struct agent_vol_shared *v)
{
    if (state_err(v) || v->jfailed) {
        agent_io_fail_all(v, v->vs->stopping ? -ESHUTDOWN : -EIO);
        return;
    }
    while (v->wait_head) {
        struct agent_vol_req *r = v->wait_head;
        v->wait_head = r->next;
        if (!v->wait_head) v->wait_tail = NULL;
        if (try_append(v, r) == -EAGAIN) {
            r->next = v->wait_head;
            v->wait_head = r;
            if (!v->wait_tail) v->wait_tail = r;
            v->drain = true;
            break;
        }
    }
}

void agent_io_progress(struct agent_vol_shared *v)
{
    agent_io_drain_waiters(v);
    agent_io_check_durable(v);
}

static bool dwrite_start(struct agent_vol_shared *v, struct agent_vol *h,
                         struct agent_vol_req *req);

/* MAY_DIRECT: an aligned write the gate let through may skip the journal
 * (dwrite_start); not a read-modify-write's, nor one being journaled
 * because its direct attempt was not taken. */
static void start_write(struct agent_vol *h, struct agent_vol_req *req, int kind, bool may_direct)
{
    struct agent_vol_shared *v = h->v;
    struct agent_vols *vs = v->vs;
    int err = state_err(v);
    if (!err && (h->info.read_only || !v->rw)) err = -EPERM;
    if (!err && v->jfailed) err = -EIO;
    if (!err) {
        /* DATA: the block cover of an unaligned max_io write (rmw_write) too */
        uint64_t max = kind == AGENT_CACHE_DATA ? vs->max_io + AGENT_VOL_COVER_SLACK
                                                : UINT32_MAX - (BD_BLOCK_SIZE - 1);
        err = check_range(v, req, max);
        if (err == -ERANGE) err = kind == AGENT_CACHE_TRIM ? -EINVAL : -ENOSPC;
    }
    if (!err && kind == AGENT_CACHE_DATA && !req->wbuf) err = -EINVAL;
    if (err) {
        complete(vs, req, err);
        return;
    }
    req->priv[RQ_HANDLE] = h;
    req->priv[RQ_KIND] = (void *)(uintptr_t)kind;
    req->priv[RQ_RMW] = NULL; /* an aligned write, as the gate sees it in the FIFO */
    req->priv_u64[RQ_SUBMIT] = util_mono_ms();
    req->next = NULL;
    if (may_direct && kind == AGENT_CACHE_DATA && dwrite_start(v, h, req)) return;
    if (v->wait_head || try_append(v, req) == -EAGAIN) {
        if (v->wait_tail) v->wait_tail->next = req;
        else v->wait_head = req;
        v->wait_tail = req;
        v->drain = true;
    }
    agent_ship_kick(v);
}

/* ---- unaligned writes: read-modify-write ------------------------------------
 *
 * A WRITE whose offset or length is not a multiple of the block becomes a
 * write of its block cover [b0, b1): the partial head and tail blocks are
 * read (the ordinary read path: dirty blocks from the journal, the others
 * from the cluster at the acked raft index, C7, C14), the caller's bytes
 * are copied over them, and the cover is appended as one journal entry by
 * start_write.  So each block of it is wholly old or wholly new (C6), and a
 * read that fails (the cluster down midway) fails the write as a whole
 * before anything was appended: the old bytes stay.
 *
 * Serialisation.  Between the read and the append, another write to the
 * same blocks would be lost (the RMW writes back the bytes it read), so a
 * running RMW holds its cover (v->holds, a short list: at most the
 * requests in flight) until its write has completed, and every write,
 * zero or trim that touches a held block waits in a FIFO (v->gate_*).  An
 * RMW also waits while a write to its blocks sits in the journal-full FIFO
 * (v->wait_head: not yet in the map its read would see), and for the
 * waiters queued before it that overlap it, so overlapping requests start
 * in arrival order.  Two overlapping unaligned writes therefore behave as
 * if applied one after the other, never torn.  An aligned write while
 * nothing is held or waiting (the usual case) pays two pointer tests and
 * takes the path it always took.
 *
 * Every wait is bounded: a held cover is released when its RMW's read or
 * write ends, and those end by io_timeout_ms. */

struct agent_io_rmw {
    struct agent_io_hold hold;    /* its cover, in v->holds while it runs */
    struct agent_vols *vs;
    struct agent_vol_shared *v;   /* NULL once the volume was freed */
    struct agent_vol *h;
    struct agent_vol_req *user;   /* the caller's write */
    uint64_t b0, b1;              /* the cover, blocks */
    uint64_t rd[2][2];            /* block ranges to read: head, tail */
    unsigned n_rd, i_rd;
    struct agent_vol_req sub;     /* the read or write in flight */
    uint8_t buf[];                /* the cover's bytes */
};

/* Release a hold (rmw_finish, direct writes). */
static void hold_drop(struct agent_vol_shared *v, struct agent_io_hold *k)
{
    struct agent_io_hold **pp = &v->holds;
    while (*pp && *pp != k) pp = &(*pp)->next;
    if (*pp) *pp = k->next;
}

static bool blk_overlap(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1)
{
    return a0 < b1 && b0 < a1;
}

/* The blocks a waiting request touches. */
static void req_blocks(const struct agent_vol_req *r, uint64_t *b0, uint64_t *b1)
{
    const struct agent_io_rmw *m = r->priv[RQ_RMW];
    if (m) {
        *b0 = m->b0;
        *b1 = m->b1;
        return;
    }
    *b0 = r->off / BD_BLOCK_SIZE;
    *b1 = *b0 + (r->len + BD_BLOCK_SIZE - 1) / BD_BLOCK_SIZE;
}

/* Must a request touching blocks [B0, B1) wait?  It must if a running RMW
 * holds one of them, or a waiter queued before UPTO (NULL: any) touches
 * one, or, for an RMW, a write waiting for journal space does. */
static bool gate_blocked(const struct agent_vol_shared *v, uint64_t b0, uint64_t b1,
                         const struct agent_vol_req *upto, bool rmw)
{
    for (const struct agent_io_hold *k = v->holds; k; k = k->next)
        if (blk_overlap(b0, b1, k->b0, k->b1)) return true;
    for (const struct agent_vol_req *r = v->gate_head; r && r != upto; r = r->next) {
        uint64_t r0, r1;
        req_blocks(r, &r0, &r1);
        if (blk_overlap(b0, b1, r0, r1)) return true;
    }
    if (rmw)
        for (const struct agent_vol_req *r = v->wait_head; r; r = r->next) {
            uint64_t r0, r1;
            req_blocks(r, &r0, &r1);
            if (blk_overlap(b0, b1, r0, r1)) return true;
        }
    return false;
}

static void gate_push(struct agent_vol_shared *v, struct agent_vol_req *req)
{
    req->next = NULL;
    if (v->gate_tail) v->gate_tail->next = req;
    else v->gate_head = req;
    v->gate_tail = req;
}

static void rmw_start(struct agent_io_rmw *m);

/* Start every waiter that need not wait any more, in FIFO order. */
static void gate_run(struct agent_vol_shared *v)
{
    if (v->gate_busy || !v->gate_head) return;
    v->gate_busy = true;
    struct agent_vol_req *prev = NULL, *r = v->gate_head;
    while (r) {
        struct agent_vol_req *next = r->next;
        uint64_t b0, b1;
        req_blocks(r, &b0, &b1);
        struct agent_io_rmw *m = r->priv[RQ_RMW];
        if (gate_blocked(v, b0, b1, r, m != NULL)) {
            prev = r;
            r = next;
            continue;
        }
        if (prev) prev->next = next;
        else v->gate_head = next;
        if (v->gate_tail == r) v->gate_tail = prev;
        r->next = NULL;
        if (m) rmw_start(m);
        else start_write(r->priv[RQ_HANDLE], r, (int)P(r, RQ_KIND), true);
        r = next;
    }
    v->gate_busy = false;
}

/* An aligned write, zero or trim: straight on unless blocks it touches
 * are held or waited for. */
static void gated_write(struct agent_vol *h, struct agent_vol_req *req, int kind)
{
    struct agent_vol_shared *v = h->v;
    if (!v->holds && !v->gate_head) {
        start_write(h, req, kind, true);
        return;
    }
    req->priv[RQ_RMW] = NULL;
    uint64_t b0, b1;
    req_blocks(req, &b0, &b1);
    if (!gate_blocked(v, b0, b1, NULL, false)) {
        start_write(h, req, kind, true);
        return;
    }
    req->priv[RQ_HANDLE] = h;
    req->priv[RQ_KIND] = (void *)(uintptr_t)kind;
    gate_push(v, req);
}

/* The RMW is over: release its cover, answer the caller, let waiters go. */
static void rmw_finish(struct agent_io_rmw *m, int err)
{
    struct agent_vol_req *user = m->user;
    struct agent_vol_shared *v = m->v;
    struct agent_vols *vs = m->vs;
    if (v) hold_drop(v, &m->hold);
    free(m);
    if (!v || vs->freeing) {
        /* The registry is being freed: nothing delivers a queued
         * completion any more. */
        user->cb(user, err ? err : -ESHUTDOWN);
        return;
    }
    complete(vs, user, err);
    gate_run(v);
}

static void rmw_on_write(struct agent_vol_req *sub, int err)
{
    rmw_finish(sub->data, err);
}

static void rmw_step(struct agent_io_rmw *m);

static void rmw_on_read(struct agent_vol_req *sub, int err)
{
    struct agent_io_rmw *m = sub->data;
    if (err) {
        rmw_finish(m, err);
        return;
    }
    m->i_rd++;
    rmw_step(m);
}

/* The next read of a partial block, or, once both are in, the write. */
static void rmw_step(struct agent_io_rmw *m)
{
    if (!m->v || m->vs->freeing) {
        rmw_finish(m, -ESHUTDOWN);
        return;
    }
    struct agent_vol_req *sub = &m->sub;
    memset(sub, 0, sizeof(*sub));
    sub->data = m;
    if (m->i_rd < m->n_rd) {
        uint64_t r0 = m->rd[m->i_rd][0], r1 = m->rd[m->i_rd][1];
        sub->cb = rmw_on_read;
        sub->off = r0 * BD_BLOCK_SIZE;
        sub->len = (r1 - r0) * BD_BLOCK_SIZE;
        sub->rbuf = m->buf + (r0 - m->b0) * BD_BLOCK_SIZE;
        agent_vol_read(m->h, sub);
        return;
    }
    const struct agent_vol_req *u = m->user;
    memcpy(m->buf + (u->off - m->b0 * BD_BLOCK_SIZE), u->wbuf, u->len);
    sub->cb = rmw_on_write;
    sub->off = m->b0 * BD_BLOCK_SIZE;
    sub->len = (m->b1 - m->b0) * BD_BLOCK_SIZE;
    sub->wbuf = m->buf;
    sub->flags = u->flags & AGENT_VOL_REQ_FUA;
    start_write(m->h, sub, AGENT_CACHE_DATA, false);
}

/* Take the cover and begin (the caller checked it is free). */
static void rmw_start(struct agent_io_rmw *m)
{
    struct agent_vol_shared *v = m->v;
    m->hold = (struct agent_io_hold){.b0 = m->b0, .b1 = m->b1, .rmw = m, .next = v->holds};
    v->holds = &m->hold;
    rmw_step(m);
}

static void rmw_write(struct agent_vol *h, struct agent_vol_req *req)
{
    struct agent_vol_shared *v = h->v;
    struct agent_vols *vs = v->vs;
    int err = state_err(v);
    if (!err && (h->info.read_only || !v->rw)) err = -EPERM;
    if (!err && v->jfailed) err = -EIO;
    if (!err && (req->len == 0 || req->len > vs->max_io || !req->wbuf)) err = -EINVAL;
    if (!err && (req->off > v->size || req->len > v->size - req->off)) err = -ENOSPC;
    struct agent_io_rmw *m = NULL;
    uint64_t b0 = req->off / BD_BLOCK_SIZE;
    uint64_t b1 = (req->off + req->len + BD_BLOCK_SIZE - 1) / BD_BLOCK_SIZE;
    if (!err) {
        m = calloc(1, sizeof(*m) + (b1 - b0) * BD_BLOCK_SIZE);
        if (!m) err = -ENOMEM;
    }
    if (err) {
        complete(vs, req, err);
        return;
    }
    m->vs = vs;
    m->v = v;
    m->h = h;
    m->user = req;
    m->b0 = b0;
    m->b1 = b1;
    bool head = req->off % BD_BLOCK_SIZE != 0;
    bool tail = (req->off + req->len) % BD_BLOCK_SIZE != 0;
    if (head && tail && b1 - b0 <= 2) {
        m->rd[m->n_rd][0] = b0; /* one read for both */
        m->rd[m->n_rd++][1] = b1;
    } else {
        if (head) {
            m->rd[m->n_rd][0] = b0;
            m->rd[m->n_rd++][1] = b0 + 1;
        }
        if (tail) {
            m->rd[m->n_rd][0] = b1 - 1;
            m->rd[m->n_rd++][1] = b1;
        }
    }
    req->priv[RQ_HANDLE] = h;
    req->priv[RQ_RMW] = m;
    if ((v->holds || v->gate_head || v->wait_head) && gate_blocked(v, b0, b1, NULL, true))
        gate_push(v, req);
    else
        rmw_start(m);
}

/* ---- large writes around the journal ---------------------------------------
 *
 * A block-aligned write of at least direct_write_bytes is shipped as it
 * arrives, from the caller's buffer (one VOL_WRITE per ship_bytes-aligned
 * chunk of it, agent_ship_direct), and completes once the cluster has
 * acked every piece: durable in the cluster, as a FUA write.  It costs no
 * journal append, no journal read, no page-cache copy and no checksum
 * pass but the ship's own; the guest waits for the cluster at its next
 * FLUSH anyway, and the ships of a QD8 stream overlap as the journal's
 * did.
 *
 * When.  Only when nothing older of its blocks is in the journal or
 * waiting for it: no extent of the dirty map overlaps it (of any kind,
 * being shipped or not), no write waits for journal space, the gate let
 * it through (nothing held or waiting overlaps), the volume is ACTIVE,
 * and the journal is below its high-water mark (room for the tombstone);
 * and only while the cluster looks able to take it: a proxy is
 * connected, ships are not backing off after a failure, and no direct
 * write was turned back in the last AGENT_IO_DWRITE_OFF_MS.  Otherwise
 * it takes the journal like any write: during an outage the journal
 * absorbs large writes as it always did, instead of each one waiting out
 * a ship's timeout first.
 *
 * While it flies it holds its blocks (v->holds): later writes to them
 * wait at the gate, so arrival order holds however it ends.  Reads are
 * not held: a read beside a write in flight may see either (C7).
 *
 * The tombstone.  Replay ships every entry the journal still has,
 * shipped or not; that is harmless while every version goes through the
 * journal (replay keeps the newest).  A direct write is newer than all
 * the journal has of its blocks, so once it is acked a JOURNAL_CLEAN
 * record of its range is appended before it completes, and replay drops
 * every older entry of the range (agent_vol.c).  Like any append it
 * survives an agent crash (C4); the next FLUSH's journal sync (for FUA,
 * its own) makes it survive power loss (C5).  A power cut before that
 * may bring back an older journaled version of blocks whose newer write
 * was never flushed: a disk may lose an unflushed write too.
 *
 * Not taken.  A piece dropped, refused as not done, or of unknown
 * outcome (agent_ship.h -EAGAIN; an unknown outcome has started the
 * re-attach that fences it) sends the whole write through the journal
 * after all, still holding its blocks until it is in, so it stays ahead
 * of later writes to them; pieces already acked are shipped again (the
 * same bytes).  -EIO (the volume failed) fails the write. */

#define AGENT_IO_DIRECT_PIECES 64 /* VOL_WRITEs one direct write may take */
#define AGENT_IO_DWRITE_OFF_MS 5000 /* large writes journaled after one was turned back */

struct agent_io_direct {
    struct agent_io_hold hold;    /* its blocks, in v->holds while it flies */
    struct agent_vols *vs;
    struct agent_vol_shared *v;
    struct agent_vol *h;
    struct agent_vol_req *req;
    unsigned pending;             /* pieces not ended */
    int err;                      /* the worst end: -ESHUTDOWN, -EIO, -EAGAIN, 0 */
    struct agent_io_direct *next; /* v->free_direct, or vs->direct_head */
    struct agent_ship_direct piece[AGENT_IO_DIRECT_PIECES];
};

static int err_rank(int err)
{
    return err == -ESHUTDOWN ? 3 : err == -EIO ? 2 : err ? 1 : 0;
}

/* The shipper's callback: record, and once every piece has ended finish
 * from the done event (agent_io_deliver), never from inside the shipper. */
static void on_dwrite_piece(struct agent_ship_direct *p, int err)
{
    struct agent_io_direct *d = p->data;
    if (err_rank(err) > err_rank(d->err)) d->err = err;
    if (--d->pending) return;
    struct agent_vols *vs = d->vs;
    if (vs->freeing) {
        /* The registry is going (V still exists: it outlives its ships). */
        hold_drop(d->v, &d->hold);
        d->req->cb(d->req, -ESHUTDOWN);
        free(d);
        return;
    }
    d->next = NULL;
    if (vs->direct_tail) vs->direct_tail->next = d;
    else vs->direct_head = d;
    vs->direct_tail = d;
    event_active(vs->done_ev, 0, 0);
}

/* Try to send REQ (aligned DATA, checked, through the gate) around the
 * journal.  False: nothing was done, journal it. */
static bool dwrite_start(struct agent_vol_shared *v, struct agent_vol *h,
                         struct agent_vol_req *req)
{
    struct agent_vols *vs = v->vs;
    uint64_t min = vs->cfg->direct_write_bytes, sb = vs->ship_blocks, now = util_mono_ms();
    if (!min || req->len < min || v->wait_head || v->state != AGENT_VOL_ACTIVE || !v->j ||
        journal_used_bytes(v->j) >= vs->hw_bytes || now < v->ship_retry_at ||
        now < v->dwrite_off_until || agent_client_up(vs->cl) == 0)
        return false;
    uint64_t b0 = req->off / BD_BLOCK_SIZE, b1 = b0 + req->len / BD_BLOCK_SIZE;
    uint64_t n = (b1 - 1) / sb - b0 / sb + 1;
    if (n > AGENT_IO_DIRECT_PIECES || n > agent_ship_room(v) || agent_cache_overlaps(v->c, b0, b1))
        return false;
    struct agent_io_direct *d = v->free_direct;
    if (d) v->free_direct = d->next;
    else if (!(d = malloc(sizeof(*d)))) return false;
    d->vs = vs;
    d->v = v;
    d->h = h;
    d->req = req;
    d->err = 0;
    d->pending = (unsigned)n;
    d->hold = (struct agent_io_hold){.b0 = b0, .b1 = b1, .next = v->holds};
    v->holds = &d->hold;
    v->busy++;
    for (uint64_t i = 0, b = b0; i < n; i++) {
        struct agent_ship_direct *p = &d->piece[i];
        uint64_t nb = BD_MIN(b1 - b, sb - b % sb);
        *p = (struct agent_ship_direct){.cb = on_dwrite_piece, .data = d, .start = b, .nblk = nb,
                                        .buf = req->wbuf + (b - b0) * BD_BLOCK_SIZE};
        b += nb;
        if (agent_ship_direct(v, p) < 0) on_dwrite_piece(p, -EAGAIN);
    }
    return true;
}

/* Every piece of D's write was acked: the tombstone, then the answer. */
static void dwrite_acked(struct agent_vol_shared *v, struct agent_vol_req *req)
{
    struct agent_vols *vs = v->vs;
    struct journal_rec rec;
    int rc = journal_append(v->j, JOURNAL_CLEAN, req->off, req->len, NULL, NULL, false, &rec);
    if (rc == -EAGAIN) {
        agent_ship_reclaim(v);
        rc = journal_append(v->j, JOURNAL_CLEAN, req->off, req->len, NULL, NULL, true, &rec);
    }
    if (rc < 0) {
        if (journal_failed(v->j)) v->jfailed = true;
        log_error(vs->tag, "vol %s: write [%llu+%llu] is in the cluster but its journal "
                  "tombstone failed (%s): answered EIO (an older journaled version could "
                  "come back at replay)", v->name, (unsigned long long)req->off,
                  (unsigned long long)req->len, bd_strerror(rc));
        complete(vs, req, -EIO);
        return;
    }
    metric_inc(vs->m_dwrites);
    if (req->flags & AGENT_VOL_REQ_FUA)
        dur_add(v, req, DUR_FUA, rec.seq); /* the tombstone's sync */
    else
        complete(vs, req, 0);
}

void agent_io_deliver(struct agent_vols *vs)
{
    struct agent_io_direct *d;
    while ((d = vs->direct_head)) {
        vs->direct_head = d->next;
        if (!vs->direct_head) vs->direct_tail = NULL;
        struct agent_vol_shared *v = d->v;
        struct agent_vol_req *req = d->req;
        struct agent_vol *h = d->h;
        int err = d->err;
        hold_drop(v, &d->hold);
        if (vs->freeing) {
            req->cb(req, -ESHUTDOWN);
            free(d);
            continue;
        }
        d->next = v->free_direct;
        v->free_direct = d;
        bool dead = v->state == AGENT_VOL_FENCED || v->state == AGENT_VOL_FAILED || v->jfailed;
        if (err == -EAGAIN) {
            /* Through the journal after all, ahead of later writes to
             * its blocks (the gate runs below). */
            metric_inc(vs->m_dwrite_fb);
            v->dwrite_off_until = util_mono_ms() + AGENT_IO_DWRITE_OFF_MS;
            start_write(h, req, AGENT_CACHE_DATA, false);
        } else if (err == 0 && !dead) {
            dwrite_acked(v, req); /* even while stopping: it is in the cluster */
        } else {
            complete(vs, req, err ? err : -EIO);
        }
        gate_run(v);
        v->busy--;
        agent_ship_kick(v);
        vs->up->release(v);
    }
}

/* Fail every waiter (the volume stops). */
static void gate_fail_all(struct agent_vol_shared *v, int err)
{
    while (v->gate_head) {
        struct agent_vol_req *r = v->gate_head;
        v->gate_head = r->next;
        free(r->priv[RQ_RMW]);
        complete(v->vs, r, err);
    }
    v->gate_tail = NULL;
}

void agent_vol_write(struct agent_vol *h, struct agent_vol_req *req)
{
    if ((req->off | req->len) % BD_BLOCK_SIZE) rmw_write(h, req);
    else gated_write(h, req, AGENT_CACHE_DATA);
}

void agent_vol_zero(struct agent_vol *h, struct agent_vol_req *req)
{
    /* Zeroes are index-only, so they are always fast: FAST_ZERO and
     * NO_HOLE need nothing more. */
    gated_write(h, req, AGENT_CACHE_ZERO);
}

void agent_vol_trim(struct agent_vol *h, struct agent_vol_req *req)
{
    gated_write(h, req, AGENT_CACHE_TRIM);
}

void agent_vol_flush(struct agent_vol *h, struct agent_vol_req *req)
{
    struct agent_vol_shared *v = h->v;
    int err = state_err(v);
    if (!err && v->jfailed) err = -EIO;
    if (err || !v->rw) {
        /* A read-only attach holds nothing to make durable. */
        complete(v->vs, req, err);
        return;
    }
    req->priv[RQ_HANDLE] = h;
    dur_add(v, req, DUR_FLUSH, journal_last_seq(v->j));
    agent_ship_kick(v);
    agent_io_check_durable(v);
}

void agent_io_barrier(struct agent_vol_shared *v, struct agent_vol_req *req)
{
    int err = state_err(v);
    if (!err && (v->jfailed || !v->rw || !v->j)) err = v->rw ? -EIO : -ENOENT;
    if (err) {
        complete(v->vs, req, err);
        return;
    }
    req->priv[RQ_HANDLE] = NULL; /* no NBD connection behind it */
    dur_add(v, req, DUR_FLUSH, journal_last_seq(v->j));
    agent_ship_kick(v);
    agent_io_check_durable(v);
}

/* ---- reads and block status ---------------------------------------------- */

static struct agent_io_read *rctx_get(struct agent_vol_shared *v)
{
    struct agent_io_read *r = v->free_rctx;
    if (r) {
        v->free_rctx = r->next_free;
        return r;
    }
    uint64_t nb =
        BD_MAX(v->vs->max_io + AGENT_VOL_COVER_SLACK, (uint64_t)AGENT_VOL_STATUS_MAX) / BD_BLOCK_SIZE;
    r = calloc(1, sizeof(*r) + nb);
    if (!r) return NULL;
    r->kind = (uint8_t *)(r + 1);
    return r;
}

static void rctx_put(struct agent_io_read *r)
{
    struct agent_vol_shared *v = r->v;
    r->req = NULL;
    r->next_free = v->free_rctx;
    v->free_rctx = r;
}

/* Build req->ext from r->kind[0..NB). */
static void build_map(struct agent_io_read *r, uint64_t nb)
{
    struct agent_vol_req *req = r->req;
    req->n_ext = 0;
    if (!req->ext || !req->max_ext) return;
    uint64_t i = 0;
    while (i < nb) {
        uint64_t j = i + 1;
        while (j < nb && r->kind[j] == r->kind[i]) j++;
        int kind = r->kind[i];
        if (req->n_ext + 1 == req->max_ext && j < nb) {
            if (r->status) {
                /* BLOCK_STATUS may stop short. */
            } else {
                /* READ: the last extent covers the rest; DATA is always true. */
                kind = AGENT_VOL_EXT_DATA;
                j = nb;
            }
        }
        struct agent_vol_extent *e = &req->ext[req->n_ext++];
        e->off = req->off + i * BD_BLOCK_SIZE;
        e->len = (j - i) * BD_BLOCK_SIZE;
        e->kind = kind;
        i = j;
        if (req->n_ext == req->max_ext) break;
    }
}

static void finish_read(struct agent_io_read *r, int err, uint64_t nb)
{
    struct agent_vol_shared *v = r->v;
    if (!err) build_map(r, nb);
    complete(v->vs, r->req, err);
    rctx_put(r);
    v->vs->up->release(v);
}

struct overlay {
    struct agent_io_read *r;
    struct agent_vol_shared *v;
    uint8_t *buf;                 /* READ data, or NULL for BLOCK_STATUS */
    int err;
    bool bad;                     /* a block failed its checksum */
    uint64_t bad_blk, bad_seq, bad_seg;
};

static bool overlay_fn(void *arg, struct agent_cache_ext *e)
{
    struct overlay *o = arg;
    struct agent_io_read *r = o->r;
    uint64_t a = BD_MAX(e->start, r->b0), b = BD_MIN(e->start + e->nblk, r->b0 + r->nb);
    uint8_t *dst = o->buf ? o->buf + (a - r->b0) * BD_BLOCK_SIZE : NULL;
    switch (e->kind) {
    case AGENT_CACHE_LOST:
        if (o->buf) {
            o->err = -EIO; /* acknowledged data that the journal lost */
            return false;
        }
        memset(r->kind + (a - r->b0), AGENT_VOL_EXT_DATA, b - a);
        return true;
    case AGENT_CACHE_ZERO:
    case AGENT_CACHE_TRIM:
        if (dst) memset(dst, 0, (b - a) * BD_BLOCK_SIZE);
        memset(r->kind + (a - r->b0), AGENT_VOL_EXT_ZERO, b - a);
        return true;
    default:
        break;
    }
    if (dst) {
        uint64_t pos = e->dpos + (a - e->start) * BD_BLOCK_SIZE;
        if (journal_read(o->v->j, e->seg, pos, dst, (b - a) * BD_BLOCK_SIZE) < 0) {
            o->err = -EIO;
            return false;
        }
        for (uint64_t k = a; k < b; k++) {
            if (util_xxh3(dst + (k - a) * BD_BLOCK_SIZE, BD_BLOCK_SIZE) !=
                agent_cache_ext_csum(e, k - e->start)) {
                o->bad = true;
                o->bad_blk = k;
                o->bad_seq = e->seq;
                o->bad_seg = e->seg;
                o->err = -EIO;
                return false;
            }
        }
    }
    memset(r->kind + (a - r->b0), AGENT_VOL_EXT_DATA, b - a);
    return true;
}

static void on_read_resp(struct agent_client_req *call, int err, struct conn_frame *f);

static void read_send(struct agent_io_read *r)
{
    struct agent_vol_shared *v = r->v;
    struct agent_client_req *c = &r->call;
    memset(c, 0, sizeof(*c));
    int n;
    if (r->status) {
        struct wire_vol_map_req m = {.vol_id = v->vol_id, .off = r->c0 * BD_BLOCK_SIZE,
                                     .len = r->cn * BD_BLOCK_SIZE, .min_index = v->max_index};
        n = wire_encode_vol_map_req(c->fields, sizeof(c->fields), &m);
        c->type = WIRE_VOL_MAP;
    } else {
        struct wire_vol_read_req m = {.vol_id = v->vol_id, .off = r->c0 * BD_BLOCK_SIZE,
                                      .len = (uint32_t)(r->cn * BD_BLOCK_SIZE),
                                      .flags = r->req->ext ? WIRE_READ_MAP : 0,
                                      .min_index = v->max_index};
        n = wire_encode_vol_read_req(c->fields, sizeof(c->fields), &m);
        c->type = WIRE_VOL_READ;
    }
    if (!BD_ALWAYS(n > 0)) {
        finish_read(r, -EIO, 0);
        return;
    }
    c->fields_len = (size_t)n;
    c->idempotent = true;
    c->deadline_ms = r->deadline_ms;
    c->cb = on_read_resp;
    c->data = r;
    v->busy++;
    agent_client_call(v->vs->cl, c);
}

static int map_kind(uint32_t k)
{
    return k == WIRE_MAP_DATA   ? AGENT_VOL_EXT_DATA
           : k == WIRE_MAP_ZERO ? AGENT_VOL_EXT_ZERO
                                : AGENT_VOL_EXT_HOLE;
}

/* Fill the kinds of the cluster blocks from RANGES (ascending).  Blocks
 * no range covers are holes, except past END (not answered). */
static void apply_ranges(struct agent_io_read *r, const struct wire_map_range *ranges, uint32_t n)
{
    for (uint64_t i = r->c0; i < r->c0 + r->cn; i++)
        if (r->kind[i - r->b0] == RK_CLUSTER) r->kind[i - r->b0] = AGENT_VOL_EXT_HOLE;
    for (uint32_t k = 0; k < n; k++) {
        uint64_t a = ranges[k].off / BD_BLOCK_SIZE;
        uint64_t b = (ranges[k].off + ranges[k].len + BD_BLOCK_SIZE - 1) / BD_BLOCK_SIZE;
        a = BD_MAX(a, r->c0);
        b = BD_MIN(b, r->c0 + r->cn);
        for (uint64_t i = a; i < b; i++) {
            uint8_t *kd = &r->kind[i - r->b0];
            if (*kd == AGENT_VOL_EXT_HOLE || *kd == RK_CLUSTER)
                *kd = (uint8_t)map_kind(ranges[k].kind);
        }
    }
}

/* The cluster-sourced blocks were set to HOLE/kind by apply_ranges, but
 * the ones dirty at submission must keep their overlay kind: apply_ranges
 * only touches RK_CLUSTER blocks, which it marks first. */
static void on_read_resp(struct agent_client_req *call, int err, struct conn_frame *f)
{
    struct agent_io_read *r = call->data;
    struct agent_vol_shared *v = r->v;
    struct agent_vol_req *req = r->req;
    v->busy--;
    if (v->vs->freeing) {
        finish_read(r, -ESHUTDOWN, 0);
        return;
    }
    if (err) {
        if (err != -ETIMEDOUT && err != -ESHUTDOWN) {
            char why[160];
            log_warn(v->vs->tag, "vol %s: %s failed: %s", v->name, r->status ? "map" : "read",
                     f ? conn_error_text(f, why, sizeof(why)) : bd_strerror(err));
            err = -EIO;
        }
        finish_read(r, err, 0);
        return;
    }
    static struct wire_map_range ranges[WIRE_MAP_MAX];
    uint32_t nr = 0;
    uint64_t nb = r->nb;
    if (r->status) {
        struct wire_vol_map_resp m;
        if (wire_decode_vol_map_resp(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
            finish_read(r, -EIO, 0);
            return;
        }
        nr = m.n;
        for (uint32_t i = 0; i < nr; i++) wire_vol_map_range(&m, i, &ranges[i]);
        /* A full page may stop short of the span: answer up to its end. */
        if (nr == WIRE_MAP_MAX) {
            uint64_t end = (ranges[nr - 1].off + ranges[nr - 1].len) / BD_BLOCK_SIZE;
            if (end < r->c0 + r->cn) nb = BD_MAX(end, r->c0 + 1) - r->b0;
        }
        apply_ranges(r, ranges, nr);
        finish_read(r, 0, nb);
        return;
    }
    struct wire_vol_read_resp m;
    uint64_t span = r->cn * BD_BLOCK_SIZE;
    if (wire_decode_vol_read_resp(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0 ||
        m.data_len != span || util_xxh3(m.data, m.data_len) != m.csum) {
        /* C14: never return bytes that fail their checksum; ask again. */
        log_warn(v->vs->tag, "vol %s: read [%llu+%llu]: bad response or checksum%s", v->name,
                 (unsigned long long)(r->c0 * BD_BLOCK_SIZE), (unsigned long long)span,
                 r->tries < 2 ? ", retrying" : "");
        if (++r->tries < 3) read_send(r);
        else finish_read(r, -EIO, 0);
        return;
    }
    if (m.raft_index > v->max_index) v->max_index = m.raft_index;
    bool all_cluster = true;
    for (uint64_t i = r->c0; i < r->c0 + r->cn; i++)
        if (r->kind[i - r->b0] != RK_CLUSTER) all_cluster = false;
    uint8_t *dst = req->rbuf + (r->c0 - r->b0) * BD_BLOCK_SIZE;
    if (all_cluster) {
        memcpy(dst, m.data, span);
    } else {
        for (uint64_t i = 0; i < r->cn; i++)
            if (r->kind[r->c0 - r->b0 + i] == RK_CLUSTER)
                memcpy(dst + i * BD_BLOCK_SIZE, m.data + i * BD_BLOCK_SIZE, BD_BLOCK_SIZE);
    }
    if (req->ext) {
        nr = m.n_ranges;
        for (uint32_t i = 0; i < nr; i++) wire_vol_read_range(&m, i, &ranges[i]);
        apply_ranges(r, ranges, nr);
    }
    finish_read(r, 0, nb);
}

/* ---- direct reads under a map lease (DESIGN §4, agent_mapc.h) ------------
 *
 * A READ whose cluster blocks a cached map covers reads them straight from
 * the blob servers (agent_blobs.h): one hop.  On a miss (or an ended
 * lease) the agent asks a proxy for the map of the aligned window around
 * the read (VOL_LEASE, min_index as for VOL_READ: C7), keeps it, and reads
 * under it; later reads in the window hit.  Anything else falls back to
 * the proxy path (VOL_READ), which is always correct: a lease refused or
 * failed, a map too fragmented for one read's GETs, a blob not where the
 * map said (moved, repaired, collected), every replica down or failing its
 * checksum.  The bytes of a direct read are checked as the proxy checks
 * its own (agent_blobs.h, C14); blocks dirty at submission were filled
 * from the journal before and are never overwritten here. */

static bool direct_ok(struct agent_vol_shared *v, const struct agent_io_read *r)
{
    struct agent_vols *vs = v->vs;
    return vs->mapc && v->rw && v->state == AGENT_VOL_ACTIVE &&
           r->cn * BD_BLOCK_SIZE <= AGENT_IO_DIRECT_MAX && v->size &&
           (!vs->lease_off_until || util_mono_ms() >= vs->lease_off_until);
}

static void direct_fallback(struct agent_io_read *r, struct metrics_counter *why)
{
    metric_inc(why);
    read_send(r);
}

static void direct_done(struct agent_io_read *r)
{
    if (--r->pending) return;
    struct agent_vol_shared *v = r->v;
    struct agent_vols *vs = v->vs;
    v->busy--;
    if (vs->freeing) {
        finish_read(r, -ESHUTDOWN, 0);
        return;
    }
    if (r->derr) {
        /* The map named a blob no replica served: the next read asks for a
         * fresh one. */
        agent_mapc_invalidate(vs->mapc, v->vol_id, r->c0 * BD_BLOCK_SIZE, r->cn * BD_BLOCK_SIZE);
        direct_fallback(r, vs->m_fb_blob);
        return;
    }
    metric_inc(vs->m_direct);
    finish_read(r, 0, r->nb);
}

/* Copy blocks [FROM, FROM + N) of the volume from SRC into the read's
 * buffer, those asked of the cluster only (the others came from the
 * journal at submission); mark them KIND for a structured read's map. */
static void direct_fill(struct agent_io_read *r, uint64_t from, uint64_t n, const uint8_t *src,
                        uint8_t kind)
{
    uint8_t *dst = r->req->rbuf + (from - r->b0) * BD_BLOCK_SIZE;
    uint8_t *kd = r->kind + (from - r->b0);
    uint64_t i = 0;
    while (i < n) {
        if (kd[i] != RK_CLUSTER) {
            i++;
            continue;
        }
        uint64_t j = i + 1;
        while (j < n && kd[j] == RK_CLUSTER) j++;
        if (src) memcpy(dst + i * BD_BLOCK_SIZE, src + i * BD_BLOCK_SIZE, (j - i) * BD_BLOCK_SIZE);
        else memset(dst + i * BD_BLOCK_SIZE, 0, (j - i) * BD_BLOCK_SIZE);
        if (r->req->ext) memset(kd + i, kind, j - i);
        i = j;
    }
}

static void on_direct_get(struct agent_blobs_get *g, int err, const uint8_t *data)
{
    struct agent_io_read *r = g->data;
    if (err) {
        if (!r->derr) r->derr = err;
    } else if (!r->v->vs->freeing && !r->derr) {
        uint64_t off = r->get_off[g - r->gets];
        direct_fill(r, off / BD_BLOCK_SIZE, g->len / BD_BLOCK_SIZE, data, AGENT_VOL_EXT_DATA);
    }
    direct_done(r);
}

/* Read the cluster blocks of R under the N pieces PC (clipped to them). */
static void direct_go(struct agent_io_read *r, const struct agent_mapc_piece *pc, uint32_t n)
{
    struct agent_vol_shared *v = r->v;
    struct agent_vols *vs = v->vs;
    for (uint32_t i = 0; i < n; i++)
        if ((pc[i].off | pc[i].len) % BD_BLOCK_SIZE) {
            direct_fallback(r, vs->m_fb_map); /* not block-shaped: let a proxy cut it */
            return;
        }
    r->pending = 1; /* held while the GETs go out */
    r->derr = 0;
    v->busy++;
    uint32_t timeout = (uint32_t)BD_MIN(vs->lease_timeout_ms, (uint64_t)AGENT_IO_DIRECT_TIMEOUT_MS);
    for (uint32_t i = 0; i < n; i++) {
        if (pc[i].blob_id == 0) {
            direct_fill(r, pc[i].off / BD_BLOCK_SIZE, pc[i].len / BD_BLOCK_SIZE, NULL,
                        AGENT_VOL_EXT_ZERO);
            continue;
        }
        struct agent_blobs_get *g = &r->gets[i];
        g->cb = on_direct_get;
        g->data = r;
        g->blob_id = pc[i].blob_id;
        g->partition = pc[i].partition;
        g->off = pc[i].blob_off;
        g->len = pc[i].len;
        memcpy(g->nodes, pc[i].nodes, sizeof(g->nodes));
        g->timeout_ms = timeout ? timeout : AGENT_IO_DIRECT_TIMEOUT_MS;
        r->get_off[i] = pc[i].off;
        r->pending++;
        agent_blobs_get(vs->blobs, g);
    }
    direct_done(r);
}

static void on_lease_resp(struct agent_client_req *call, int err, struct conn_frame *f)
{
    struct agent_io_read *r = call->data;
    struct agent_vol_shared *v = r->v;
    struct agent_vols *vs = v->vs;
    v->busy--;
    if (vs->freeing) {
        finish_read(r, -ESHUTDOWN, 0);
        return;
    }
    if (err) {
        if (err == -ENOTSUP) {
            /* Leases are off on that proxy: ask again in a while. */
            vs->lease_off_until = util_mono_ms() + AGENT_IO_LEASE_OFF_MS;
        }
        direct_fallback(r, vs->m_fb_lease);
        return;
    }
    struct wire_vol_lease_resp m;
    if (wire_decode_vol_lease_resp(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0 || m.n == 0 ||
        m.raft_index < r->lease_min_index) {
        log_warn(vs->tag, "vol %s: a malformed or stale map lease answer: reading through "
                 "the proxy", v->name);
        direct_fallback(r, vs->m_fb_lease);
        return;
    }
    static __thread struct agent_mapc_piece pieces[WIRE_LEASE_MAX];
    for (uint32_t i = 0; i < m.n; i++) {
        struct wire_lease_entry e;
        wire_vol_lease_entry(&m, i, &e);
        pieces[i] = (struct agent_mapc_piece){.off = e.off, .blob_id = e.blob_id, .len = e.len,
                                              .blob_off = e.blob_off, .partition = e.partition};
        memcpy(pieces[i].nodes, e.nodes, sizeof(e.nodes));
    }
    if (pieces[0].off != r->lease_off) {
        direct_fallback(r, vs->m_fb_lease);
        return;
    }
    size_t pos = 0;
    struct wire_lease_node nd;
    while (wire_vol_lease_node(&m, &pos, &nd)) agent_blobs_learn(vs->blobs, nd.id, nd.addr.ptr,
                                                                 nd.addr.len);
    vs->lease_timeout_ms = m.timeout_ms;
    uint64_t now = util_mono_ms(), expires = r->lease_sent_ms + m.lease_ms;
    if (now >= expires) {
        direct_fallback(r, vs->m_fb_lease); /* answered too late to be used */
        return;
    }
    /* Keep it only if no attach change dropped the volume's maps since the
     * ask and it saw every write acknowledged to us (a write acked after
     * the proxy resolved the map made the map stale for its range, and
     * its invalidation has already run). */
    if (v->map_epoch == r->lease_epoch && m.raft_index >= v->max_index &&
        v->state == AGENT_VOL_ACTIVE)
        (void)agent_mapc_put(vs->mapc, v->vol_id, r->lease_off, m.end, expires, pieces, m.n);
    /* This read may use it whatever happened since: it was resolved at an
     * index at least the one the read was submitted under, and a write
     * acked since is concurrent with the read. */
    struct agent_mapc_piece pc[AGENT_IO_DIRECT_GETS];
    uint32_t k = 0;
    int rc = agent_mapc_clip(pieces, m.n, r->c0 * BD_BLOCK_SIZE, r->cn * BD_BLOCK_SIZE, pc,
                             AGENT_IO_DIRECT_GETS, &k);
    if (rc < 0) {
        direct_fallback(r, vs->m_fb_map);
        return;
    }
    direct_go(r, pc, k);
}

static void lease_send(struct agent_io_read *r, uint64_t now)
{
    struct agent_vol_shared *v = r->v;
    struct agent_vols *vs = v->vs;
    uint64_t a = r->c0 * BD_BLOCK_SIZE / AGENT_MAPC_WINDOW * AGENT_MAPC_WINDOW;
    uint64_t b = ((r->c0 + r->cn) * BD_BLOCK_SIZE + AGENT_MAPC_WINDOW - 1) / AGENT_MAPC_WINDOW *
                 AGENT_MAPC_WINDOW;
    b = BD_MIN(b, BD_MAX(v->size, (r->c0 + r->cn) * BD_BLOCK_SIZE));
    struct agent_client_req *c = &r->call;
    memset(c, 0, sizeof(*c));
    struct wire_vol_lease_req m = {.vol_id = v->vol_id, .off = a, .len = (uint32_t)(b - a),
                                   .min_index = v->max_index};
    int n = wire_encode_vol_lease_req(c->fields, sizeof(c->fields), &m);
    if (!BD_ALWAYS(n > 0)) {
        read_send(r);
        return;
    }
    r->lease_off = a;
    r->lease_sent_ms = now;
    r->lease_min_index = v->max_index;
    r->lease_epoch = v->map_epoch;
    /* Half the budget for the lease: the VOL_READ a failure falls back to
     * gets the rest, so a read still fails within io_timeout_ms. */
    r->deadline_ms = now + vs->cfg->io_timeout_ms;
    c->deadline_ms = now + vs->cfg->io_timeout_ms / 2;
    c->fields_len = (size_t)n;
    c->type = WIRE_VOL_LEASE;
    c->idempotent = true;
    c->cb = on_lease_resp;
    c->data = r;
    v->busy++;
    agent_client_call(vs->cl, c);
}

static void direct_start(struct agent_io_read *r)
{
    struct agent_vol_shared *v = r->v;
    struct agent_vols *vs = v->vs;
    struct agent_mapc_piece pc[AGENT_IO_DIRECT_GETS];
    uint32_t n = 0;
    uint64_t now = util_mono_ms();
    int rc = agent_mapc_get(vs->mapc, v->vol_id, r->c0 * BD_BLOCK_SIZE, r->cn * BD_BLOCK_SIZE,
                            now, pc, AGENT_IO_DIRECT_GETS, &n);
    if (rc == 0) {
        metric_inc(vs->m_map_hit);
        direct_go(r, pc, n);
        return;
    }
    if (rc == -E2BIG) {
        direct_fallback(r, vs->m_fb_map);
        return;
    }
    metric_inc(rc == -ETIME ? vs->m_map_expired : vs->m_map_miss);
    lease_send(r, now);
}

void agent_io_map_drop(struct agent_vol_shared *v)
{
    v->map_epoch++;
    if (v->vs->mapc && v->vol_id) agent_mapc_drop_vol(v->vs->mapc, v->vol_id);
}

static void start_read(struct agent_vol *h, struct agent_vol_req *req, bool status)
{
    struct agent_vol_shared *v = h->v;
    struct agent_vols *vs = v->vs;
    req->n_ext = 0;
    int err = state_err(v);
    uint64_t len = req->len;
    if (!err && status) {
        if (!req->ext || !req->max_ext) err = -EINVAL;
        if (len > AGENT_VOL_STATUS_MAX) len = AGENT_VOL_STATUS_MAX; /* answer a prefix */
    }
    if (!err) {
        struct agent_vol_req probe = *req;
        probe.len = len;
        err = check_range(v, &probe,
                          status ? AGENT_VOL_STATUS_MAX : vs->max_io + AGENT_VOL_COVER_SLACK);
        if (err == -ERANGE) err = -EINVAL;
    }
    if (!err && !status && !req->rbuf) err = -EINVAL;
    struct agent_io_read *r = err ? NULL : rctx_get(v);
    if (!err && !r) err = -ENOMEM;
    if (err) {
        complete(vs, req, err);
        return;
    }
    r->v = v;
    r->req = req;
    r->status = status;
    r->b0 = req->off / BD_BLOCK_SIZE;
    r->nb = len / BD_BLOCK_SIZE;
    r->tries = 0;
    r->deadline_ms = 0;
    memset(r->kind, RK_CLUSTER, r->nb);
    req->priv[RQ_HANDLE] = h;
    if (v->c) {
        struct overlay o = {.r = r, .v = v, .buf = status ? NULL : req->rbuf};
        agent_cache_walk(v->c, r->b0, r->b0 + r->nb, overlay_fn, &o);
        if (o.bad) agent_ship_mark_lost(v, o.bad_blk, 1, o.bad_seq, o.bad_seg);
        if (o.err) {
            finish_read(r, o.err, 0);
            return;
        }
    }
    uint64_t first = r->nb, last = 0;
    for (uint64_t i = 0; i < r->nb; i++)
        if (r->kind[i] == RK_CLUSTER) {
            if (first == r->nb) first = i;
            last = i;
        }
    if (first == r->nb) {
        /* Every block is dirty here: no cluster trip. */
        finish_read(r, 0, r->nb);
        return;
    }
    r->c0 = r->b0 + first;
    r->cn = last - first + 1;
    if (!status && direct_ok(v, r)) direct_start(r);
    else read_send(r);
}

void agent_vol_read(struct agent_vol *h, struct agent_vol_req *req)
{
    start_read(h, req, false);
}

void agent_vol_block_status(struct agent_vol *h, struct agent_vol_req *req)
{
    start_read(h, req, true);
}

void agent_io_free_vol(struct agent_vol_shared *v)
{
    /* RMWs still running finish without their volume (rmw_finish);
     * direct writes still in flight (only while the registry is freed)
     * end from the shipper, which V outlives. */
    for (struct agent_io_hold *k = v->holds; k; k = k->next)
        if (k->rmw) k->rmw->v = NULL;
    v->holds = NULL;
    while (v->free_direct) {
        struct agent_io_direct *d = v->free_direct;
        v->free_direct = d->next;
        free(d);
    }
    while (v->free_rctx) {
        struct agent_io_read *r = v->free_rctx;
        v->free_rctx = r->next_free;
        free(r);
    }
}
