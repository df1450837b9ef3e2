/* fsm_raft.c: the struct raft_fsm adapter over fsm_apply / index_dump /
 * index_load (contract and the index-of-the-entry argument in fsm.h).
 *
 * Asynchronous mode (the proxy's): one index-writer thread.  apply()
 * copies the entry into a struct fsm_pending and queues it; the thread
 * takes everything queued, applies it in one write transaction (so one
 * LMDB fsync covers many entries, and none runs on the reactor), then
 * moves the batch to a done list and pokes the reactor, which marks each
 * entry done, calls on_applied (readers can now see it) and the entry's
 * waiter, and frees it.  Everything is in raft order.  Between the apply
 * and the commit the batch also goes on a decided list (one more poke):
 * waiters that need only the result (fsm_pending_wait_decided: a write's
 * answer) run then, without waiting for the commit's fsync.
 *
 *   reactor: apply -> queue ---> writer: fsm_apply_batch -+-> decided list
 *                                         (commit)       '-> done list
 *   reactor: <--- applier_done: decided waiters; on_applied, waiters, free
 *
 * A batch that finds the map full (-ENOSPC: MDB_MAP_FULL) is put back at
 * the head of the queue and tried again every APPLY_RETRY_MS, then the
 * next APPLY_SMALL_AFTER_FULL entries one per transaction (fewer dirty
 * pages at a time, so the deletes that free space get through): nothing
 * of it was applied, so this is safe, and it keeps one replica's full map
 * from being a fail-stop (the replicated size limit, INDEX_LIMIT, keeps
 * every replica short of its map in the first place; see fsm.c).
 *
 * Snapshot and restore first wait until the writer is idle with nothing
 * queued (a condition variable; the writer needs nothing from the reactor
 * to get there, so the wait cannot deadlock).  fsm_raft_fini stops the
 * thread after it drained the queue and delivers what is done itself; if
 * the reactor still owes the applier a poke, the applier is left for that
 * poke to free (it then touches nothing else).
 *
 * Snapshots (fsm version 3): fr_snapshot, on the reactor, only pins the
 * index at the snapshot's index in a read txn of its own reader; the dump
 * itself runs in fr_snapshot_async on libraft's async_work thread (rio's
 * task queue), so a large index is copied without stalling the reactor,
 * and fr_snapshot_finalize ends the txn and frees the chunks whatever
 * happened.  index_dump streams 64 KiB pieces; they are gathered into
 * raft_malloc'd chunks that double from 64 KiB up to 4 MiB, so a small
 * index costs one small buffer and a large one never needs a single
 * gigantic allocation or a realloc copy.  Sending is rio's (chunked and
 * paced, rio.c); storing is raftlog's (on its own thread).
 *
 * With a spool directory (fsm_raft_set_spool, the proxy's raft log
 * directory) the dump goes to an unlinked temporary file instead, and
 * libraft gets one read-only mapping of it (store/raft/snapmem.h: its
 * raft_free unmaps), so making and storing a snapshot costs page cache,
 * not heap, whatever the index's size.  A dump that fails (ENOSPC, EIO)
 * is logged and returned as RAFT_IOERR: libraft drops that snapshot and
 * takes another one later. */
#include "store/index/fsm.h"
#include "store/index/index_int.h"
#include "base/bd.h"
#include "base/util.h"
#include "store/raft/snapmem.h"

#include <pthread.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_MIN (64u << 10)
#define CHUNK_MAX (4u << 20)

struct snap_bufs {
    struct raft_buffer *bufs;  /* raft_malloc'd array */
    unsigned n, cap;
    size_t last_used;          /* bytes used in bufs[n-1] */
    size_t last_cap;
};

static int snap_emit(void *arg, const void *p, size_t len)
{
    struct snap_bufs *s = arg;
    const uint8_t *src = p;
    while (len) {
        if (s->n == 0 || s->last_used == s->last_cap) {
            if (s->n == s->cap) {
                unsigned cap = s->cap ? s->cap * 2 : 8;
                struct raft_buffer *nb = raft_realloc(s->bufs, cap * sizeof(*nb));
                if (!nb) return -ENOMEM;
                s->bufs = nb;
                s->cap = cap;
            }
            size_t sz = s->n ? BD_MIN(s->last_cap * 2, (size_t)CHUNK_MAX) : CHUNK_MIN;
            void *base = raft_malloc(sz);
            if (!base) return -ENOMEM;
            if (s->n) s->bufs[s->n - 1].len = s->last_used;
            s->bufs[s->n].base = base;
            s->bufs[s->n].len = sz;
            s->n++;
            s->last_used = 0;
            s->last_cap = sz;
        }
        size_t take = BD_MIN(len, s->last_cap - s->last_used);
        memcpy((uint8_t *)s->bufs[s->n - 1].base + s->last_used, src, take);
        s->last_used += take;
        src += take;
        len -= take;
    }
    return 0;
}

static void snap_bufs_free(struct snap_bufs *s)
{
    for (unsigned i = 0; i < s->n; i++) raft_free(s->bufs[i].base);
    raft_free(s->bufs);
}

/* ---- the index-writer thread -------------------------------------------------- */

#define APPLY_BATCH_MAX 256
/* A transaction lingers this long for more entries (one LMDB fsync for
 * all of them); whoever needs to see an entry cuts it short.  On a disk
 * shared by the blob store and the Raft log, a commit's fsync per durable
 * write queued behind the next write's own flushes: README "Performance". */
#define APPLY_LINGER_MS 10
#define APPLY_TXN_MAX 4096u /* entries per transaction, lingering or not */
#define APPLY_RETRY_MS 1000u /* a batch that found the map full is tried again after this */
#define APPLY_SMALL_AFTER_FULL 1024u /* then this many entries go one per transaction */

struct fsm_applier {
    struct fsm_raft *fr;           /* NULL once orphaned (see the file comment) */
    struct reactor *rx;
    struct reactor_work work;      /* the poke: "the done list has entries" */
    pthread_t thread;
    pthread_mutex_t lock;          /* protects everything below */
    pthread_cond_t wake;           /* work queued, or stop */
    pthread_cond_t idle;           /* the queue drained and nothing is running */
    struct fsm_pending *head, *tail; /* queued */
    struct fsm_pending *done_head, *done_tail; /* committed, not yet delivered */
    struct fsm_pending *dec_head, *dec_tail;   /* decided (decided_next), not delivered */
    bool running;                  /* the thread holds a batch */
    bool poked;                    /* work is queued on the reactor */
    bool stopping;
    bool stalled;                  /* the last batch hit a full map and waits to retry */
    uint64_t committed;            /* the last index the writer committed (or skipped) */
    uint64_t txns, txn_entries;    /* transactions committed, and the entries in them */
    uint64_t hurry_until;          /* someone waits to see this index: commit once it is in */
    unsigned draining;             /* applier_drain callers: commit at once, linger not */
    uint32_t small;                /* batches of one entry still to do after a full map */
    uint64_t stalls;               /* retries after a full map */
    int err;                       /* first hard error; later batches are not applied */
};

/* One write transaction of the writer: its entries (head..last, in raft
 * order), the group whose results were just decided (sub), the entries'
 * slots for fsm_apply_txn, and when it stops lingering. */
struct applier_txn {
    struct fsm_applier *ap;
    struct fsm_pending *head, *last;
    struct fsm_pending *sub;       /* the group fsm_apply_txn applies now */
    struct fsm_entry *ents;        /* APPLY_BATCH_MAX slots */
    uint32_t total;                /* entries in the transaction */
    struct timespec deadline;      /* CLOCK_REALTIME, for pthread_cond_timedwait */
};

/* Poke the reactor unless a poke is already pending (lock held). */
static void applier_poke(struct fsm_applier *ap)
{
    if (ap->poked) return;
    ap->poked = true;
    reactor_complete(ap->rx, &ap->work);
}

static void on_decided(void *arg)
{
    struct applier_txn *d = arg;
    struct fsm_applier *ap = d->ap;
    pthread_mutex_lock(&ap->lock);
    for (struct fsm_pending *q = d->sub; q; q = q->next) {
        /* A batch retried after a full map is decided again, the same way
         * (apply is deterministic): each entry is queued as decided once. */
        if (q->dec_queued) continue;
        q->dec_queued = true;
        q->decided_next = NULL;
        if (ap->dec_tail) ap->dec_tail->decided_next = q;
        else ap->dec_head = q;
        ap->dec_tail = q;
    }
    applier_poke(ap);
    pthread_mutex_unlock(&ap->lock);
}

/* Take up to MAX queued entries off the queue (lock held) into T's slots
 * and its list; returns how many. */
static uint32_t txn_take(struct applier_txn *t, uint32_t max)
{
    struct fsm_applier *ap = t->ap;
    struct fsm_pending *first = ap->head, *p = first, *last = NULL;
    uint32_t n = 0;
    while (p && n < max) {
        t->ents[n] = (struct fsm_entry){.index = p->index, .cmd = p->cmd, .len = p->len,
                                        .res = &p->res};
        last = p;
        p = p->next;
        n++;
    }
    if (!n) return 0;
    ap->head = p;
    if (!p) ap->tail = NULL;
    last->next = NULL;
    if (t->last) t->last->next = first;
    else t->head = first;
    t->last = last;
    t->sub = first;
    t->total += n;
    return n;
}

/* fsm_apply_txn's MORE, on the writer thread: linger for more entries in
 * the same transaction, so that entries arriving one at a time (a durable
 * write at QD1 is one Raft entry) share one LMDB fsync instead of paying
 * one each.  Results are decided per group as before, so a write's answer
 * never waits here; only visibility (readers of this proxy's index) does,
 * and whoever waits to see an entry says so (fsm_raft_hurry, and every
 * fsm_pending_wait): the transaction then commits as soon as it holds that
 * entry.  Stops lingering after APPLY_LINGER_MS, at APPLY_TXN_MAX entries,
 * while draining or stopping, and after a full map (small transactions). */
static uint32_t applier_more(void *arg, struct fsm_entry **next)
{
    struct applier_txn *t = arg;
    struct fsm_applier *ap = t->ap;
    uint32_t n = 0;
    pthread_mutex_lock(&ap->lock);
    for (;;) {
        if (ap->stopping || ap->draining || ap->small || t->total >= APPLY_TXN_MAX) break;
        if (ap->hurry_until > ap->committed && ap->hurry_until <= t->last->index) break;
        if (ap->head) {
            n = txn_take(t, BD_MIN((uint32_t)APPLY_BATCH_MAX, APPLY_TXN_MAX - t->total));
            break;
        }
        if (pthread_cond_timedwait(&ap->wake, &ap->lock, &t->deadline) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&ap->lock);
    *next = t->ents;
    return n;
}

static void *applier_main(void *arg)
{
    struct fsm_applier *ap = arg;
    pthread_setname_np(pthread_self(), "index-apply");
    struct fsm_entry ents[APPLY_BATCH_MAX];
    pthread_mutex_lock(&ap->lock);
    for (;;) {
        while (!ap->head && !ap->stopping) pthread_cond_wait(&ap->wake, &ap->lock);
        if (!ap->head) break;
        /* After a full map, one entry per transaction for a while: a batch
         * dirties more pages at once than its entries one by one, and the
         * entries that free space (deletes, REAP) must get through. */
        struct applier_txn t = {.ap = ap, .ents = ents};
        uint32_t n = txn_take(&t, ap->small ? 1 : APPLY_BATCH_MAX);
        struct fsm_pending *batch = t.head;
        ap->running = true;
        int err = ap->err;
        pthread_mutex_unlock(&ap->lock);

        if (!err) {
            clock_gettime(CLOCK_REALTIME, &t.deadline);
            t.deadline.tv_nsec += (long)APPLY_LINGER_MS * 1000000L;
            t.deadline.tv_sec += t.deadline.tv_nsec / 1000000000L;
            t.deadline.tv_nsec %= 1000000000L;
            err = fsm_apply_txn(ap->fr->ix, ents, n, on_decided, applier_more, &t);
        }
        struct fsm_pending *last = t.last; /* applier_more may have added entries */
        pthread_mutex_lock(&ap->lock);
        if (err == -ENOSPC && !ap->stopping) {
            /* The map is full here (a reader held freed pages, or this
             * replica's map is smaller than the leader's): nothing of the
             * transaction was applied, and applying it again later is
             * safe, so wait and retry rather than fail stop.  Readers go
             * on. */
            if (!ap->stalled)
                fprintf(stderr, "blockd: index map full while applying entry %llu; retrying "
                                "every %u ms\n", (unsigned long long)batch->index,
                        APPLY_RETRY_MS);
            ap->stalled = true;
            ap->stalls++;
            ap->small = APPLY_SMALL_AFTER_FULL;
            last->next = ap->head;
            ap->head = batch;
            if (!ap->tail) ap->tail = last;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += (long)APPLY_RETRY_MS * 1000000L;
            ts.tv_sec += ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&ap->wake, &ap->lock, &ts);
            ap->running = false;
            continue;
        }
        if (!err) {
            ap->stalled = false;
            if (ap->small) ap->small--;
            ap->committed = last->index;
            ap->txns++;
            ap->txn_entries += t.total;
        }
        /* The reactor may be reading err of a decided entry right now:
         * the writer's verdict goes in werr, copied over at delivery. */
        for (struct fsm_pending *q = batch; q; q = q->next) q->werr = err ? -EIO : 0;
        if (err && !ap->err) ap->err = err;
        ap->running = false;
        if (ap->done_tail) ap->done_tail->next = batch;
        else ap->done_head = batch;
        ap->done_tail = last;
        if (!ap->head) pthread_cond_broadcast(&ap->idle);
        applier_poke(ap);
    }
    pthread_cond_broadcast(&ap->idle);
    pthread_mutex_unlock(&ap->lock);
    return NULL;
}

/* Deliver committed entries (reactor thread).  DURING_FINI: no
 * on_applied (the owner is being torn down). */
static void applier_deliver(struct fsm_applier *ap, bool during_fini)
{
    pthread_mutex_lock(&ap->lock);
    struct fsm_pending *list = ap->done_head, *dec = ap->dec_head;
    ap->done_head = ap->done_tail = NULL;
    ap->dec_head = ap->dec_tail = NULL;
    int err = ap->err;
    pthread_mutex_unlock(&ap->lock);
    /* Decided first: an entry is on the decided list before it is on the
     * done list, and the done list frees it. */
    while (dec) {
        struct fsm_pending *p = dec;
        dec = p->decided_next;
        p->decided = true;
        if (p->cb && p->cb_when_decided) {
            void (*cb)(struct fsm_pending *, void *) = p->cb;
            p->cb = NULL;
            cb(p, p->arg);
        }
    }
    struct fsm_raft *fr = ap->fr;
    if (err && !fr->err) {
        fr->err = err;
        fprintf(stderr, "blockd: index writer failed: %s (raft stops applying)\n",
                bd_strerror(err));
    }
    while (list) {
        struct fsm_pending *p = list;
        list = p->next;
        p->err = p->werr;
        p->done = true;
        if (!p->err && !during_fini && fr->on_applied) fr->on_applied(fr->arg, p->index, &p->res);
        if (p->cb) p->cb(p, p->arg);
        free(p->cmd);
        free(p);
    }
}

static void applier_done(struct reactor_work *w)
{
    struct fsm_applier *ap = bd_container_of(w, struct fsm_applier, work);
    pthread_mutex_lock(&ap->lock);
    ap->poked = false;
    bool orphan = ap->fr == NULL;
    pthread_mutex_unlock(&ap->lock);
    if (orphan) {
        pthread_mutex_destroy(&ap->lock);
        pthread_cond_destroy(&ap->wake);
        pthread_cond_destroy(&ap->idle);
        free(ap);
        return;
    }
    applier_deliver(ap, false);
}

/* Wait until everything queued is committed (reactor thread; see the file
 * comment for why this cannot deadlock).  Returns the writer's error. */
static int applier_drain(struct fsm_applier *ap)
{
    pthread_mutex_lock(&ap->lock);
    ap->draining++;
    pthread_cond_signal(&ap->wake); /* a lingering transaction commits now */
    while (ap->head || ap->running) pthread_cond_wait(&ap->idle, &ap->lock);
    ap->draining--;
    int err = ap->err;
    pthread_mutex_unlock(&ap->lock);
    return err;
}

/* Someone waits to see INDEX: the writer commits as soon as its
 * transaction holds it (applier_more). */
static void applier_hurry(struct fsm_applier *ap, uint64_t index)
{
    pthread_mutex_lock(&ap->lock);
    if (index > ap->hurry_until) {
        ap->hurry_until = index;
        pthread_cond_signal(&ap->wake);
    }
    pthread_mutex_unlock(&ap->lock);
}

void fsm_raft_counts(struct fsm_raft *fr, uint64_t *txns, uint64_t *entries)
{
    *txns = *entries = 0;
    if (!fr->ap) return;
    pthread_mutex_lock(&fr->ap->lock);
    *txns = fr->ap->txns;
    *entries = fr->ap->txn_entries;
    pthread_mutex_unlock(&fr->ap->lock);
}

void fsm_raft_hurry(struct fsm_raft *fr, uint64_t index)
{
    if (fr->ap) applier_hurry(fr->ap, index);
}

void fsm_pending_wait(struct fsm_pending *p, void (*cb)(struct fsm_pending *p, void *arg),
                      void *arg)
{
    if (p->done) {
        cb(p, arg);
        return;
    }
    p->cb = cb;
    p->arg = arg;
    p->cb_when_decided = false;
    if (p->ap) applier_hurry(p->ap, p->index);
}

void fsm_pending_wait_decided(struct fsm_pending *p,
                              void (*cb)(struct fsm_pending *p, void *arg), void *arg)
{
    if (p->decided || p->done) {
        cb(p, arg);
        return;
    }
    p->cb = cb;
    p->arg = arg;
    p->cb_when_decided = true;
}

int fsm_raft_set_async(struct fsm_raft *fr, struct reactor *rx)
{
    struct fsm_applier *ap = calloc(1, sizeof(*ap));
    if (!ap) return -ENOMEM;
    ap->fr = fr;
    ap->rx = rx;
    ap->work.done = applier_done;
    pthread_mutex_init(&ap->lock, NULL);
    pthread_cond_init(&ap->wake, NULL);
    pthread_cond_init(&ap->idle, NULL);
    if (pthread_create(&ap->thread, NULL, applier_main, ap) != 0) {
        pthread_mutex_destroy(&ap->lock);
        pthread_cond_destroy(&ap->wake);
        pthread_cond_destroy(&ap->idle);
        free(ap);
        return -ENOMEM;
    }
    fr->ap = ap;
    return 0;
}

static void applier_stop(struct fsm_raft *fr)
{
    struct fsm_applier *ap = fr->ap;
    if (!ap) return;
    pthread_mutex_lock(&ap->lock);
    ap->stopping = true;
    pthread_cond_signal(&ap->wake);
    pthread_mutex_unlock(&ap->lock);
    pthread_join(ap->thread, NULL);
    applier_deliver(ap, true);
    fr->ap = NULL;
    pthread_mutex_lock(&ap->lock);
    bool poked = ap->poked;
    ap->fr = NULL;
    pthread_mutex_unlock(&ap->lock);
    if (!poked) {
        pthread_mutex_destroy(&ap->lock);
        pthread_cond_destroy(&ap->wake);
        pthread_cond_destroy(&ap->idle);
        free(ap);
    }
}

/* ---- the raft_fsm callbacks ----------------------------------------------------- */

static int fr_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct fsm_raft *fr = fsm->data;
    *result = NULL;
    if (fr->err) return RAFT_IOERR;
    uint64_t index = fr->raft->last_applied + 1;
    if (fr->ap) {
        struct fsm_pending *p = calloc(1, sizeof(*p));
        uint8_t *cmd = malloc(buf->len ? buf->len : 1);
        if (!p || !cmd) {
            free(p);
            free(cmd);
            return RAFT_NOMEM;
        }
        memcpy(cmd, buf->base, buf->len);
        p->index = index;
        p->cmd = cmd;
        p->len = buf->len;
        p->ap = fr->ap;
        struct fsm_applier *ap = fr->ap;
        pthread_mutex_lock(&ap->lock);
        if (ap->tail) ap->tail->next = p;
        else ap->head = p;
        ap->tail = p;
        pthread_cond_signal(&ap->wake);
        pthread_mutex_unlock(&ap->lock);
        *result = p;
        return 0;
    }
    int rc = fsm_apply(fr->ix, index, buf->base, buf->len, &fr->result.res);
    if (rc) {
        fr->err = rc;
        return RAFT_IOERR;
    }
    fr->result.index = index;
    fr->result.done = true;
    *result = &fr->result;
    if (fr->on_applied) fr->on_applied(fr->arg, index, &fr->result.res);
    return 0;
}

static int fr_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs);

/* Version 3, first half, on the reactor: pin the index at the snapshot's
 * index in a read txn (after the writer committed everything queued, so
 * the txn sees exactly raft->last_applied).  No bytes are produced here;
 * libraft then runs fr_snapshot_async on its async_work thread. */
static int fr_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct fsm_raft *fr = fsm->data;
    *bufs = NULL;
    *n_bufs = 0;
    if (fr->ap && applier_drain(fr->ap)) return RAFT_IOERR;
    if (BD_NEVER(fr->snap_open)) return RAFT_BUSY;
    int rc = index_read_begin(fr->snap_rd);
    if (rc) return rc == -EAGAIN ? RAFT_BUSY : RAFT_IOERR;
    fr->snap_open = true;
    /* Without snapshot_async (an io without async_work, such as libraft's
     * test fixture), raft wants the bytes now. */
    if (!fsm->snapshot_async) return fr_snapshot_async(fsm, bufs, n_bufs);
    return 0;
}

/* Second half, on a worker thread (the read txn is MDB_NOTLS, so it may
 * move threads): dump the pinned index into raft_malloc'd chunks while
 * the reactor goes on serving and applying. */
static int spool_emit(void *arg, const void *p, size_t len)
{
    return snapmem_spool_write(arg, p, len);
}

/* The dump into a spool file, then one mapping of it for libraft (on the
 * worker thread, with the read txn pinned).  0 or a raft code; every
 * failure is logged (libraft takes the next snapshot later). */
static int snapshot_spooled(struct fsm_raft *fr, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct snapmem_spool *sp = NULL;
    struct raft_buffer *b = raft_malloc(sizeof(*b));
    int rc = b ? snapmem_spool_open(fr->spool_fio, fr->spool_dir, &sp) : -ENOMEM;
    if (rc == 0) rc = index_dump(fr->snap_rd, spool_emit, sp);
    index_read_end(fr->snap_rd);
    fr->snap_open = false;
    if (rc == 0) rc = snapmem_spool_map(sp, 0, snapmem_spool_len(sp), b);
    snapmem_spool_close(sp);
    if (rc) {
        fprintf(stderr, "blockd: raft snapshot dump into %s failed: %s (retried later)\n",
                fr->spool_dir, bd_strerror(rc));
        raft_free(b);
        return rc == -ENOMEM ? RAFT_NOMEM : RAFT_IOERR;
    }
    *bufs = b;
    *n_bufs = 1;
    return 0;
}

static int fr_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct fsm_raft *fr = fsm->data;
    struct snap_bufs s = {0};
    if (BD_NEVER(!fr->snap_open)) return RAFT_IOERR;
    if (fr->spool_dir[0]) return snapshot_spooled(fr, bufs, n_bufs);
    int rc = index_dump(fr->snap_rd, snap_emit, &s);
    index_read_end(fr->snap_rd);
    fr->snap_open = false;
    if (rc) {
        snap_bufs_free(&s);
        return rc == -ENOMEM ? RAFT_NOMEM : RAFT_IOERR;
    }
    s.bufs[s.n - 1].len = s.last_used;
    *bufs = s.bufs;
    *n_bufs = s.n;
    return 0;
}

/* After the snapshot was stored (or the attempt failed anywhere): end the
 * read txn if the dump never ran, and free the chunks (with a finalize
 * hook, libraft leaves both to us). */
static int fr_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                                unsigned *n_bufs)
{
    struct fsm_raft *fr = fsm->data;
    if (fr->snap_open) {
        index_read_end(fr->snap_rd);
        fr->snap_open = false;
    }
    for (unsigned i = 0; *bufs && i < *n_bufs; i++) raft_free((*bufs)[i].base);
    raft_free(*bufs);
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

static int fr_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct fsm_raft *fr = fsm->data;
    uint64_t dump_applied, ours, loaded;
    if (fr->ap && applier_drain(fr->ap)) return RAFT_IOERR;
    int rc = index_dump_applied(buf->base, buf->len, &dump_applied);
    if (rc) return RAFT_CORRUPT;
    if ((rc = index_read_begin(fr->rd))) return RAFT_IOERR;
    ours = index_applied(fr->rd);
    index_read_end(fr->rd);
    if (ours < dump_applied) {
        rc = index_load(fr->ix, buf->base, buf->len, &loaded);
        if (rc) {
            fr->err = rc;
            return rc == -ENOSPC || rc == -EIO ? RAFT_IOERR : RAFT_CORRUPT;
        }
    }
    raft_free(buf->base);
    return 0;
}

int fsm_raft_install(void *arg, const struct raft_buffer *data)
{
    struct fsm_raft *fr = arg;
    uint64_t dump_applied, loaded;
    if (index_dump_applied(data->base, data->len, &dump_applied)) return -BD_ECORRUPT;
    if (fr->ap && applier_drain(fr->ap)) return -EIO;
    struct index_reader *rd;
    int rc = index_reader_new(fr->ix, &rd);
    if (rc) return rc;
    if ((rc = index_read_begin(rd)) == 0) {
        uint64_t ours = index_applied(rd);
        index_read_end(rd);
        if (ours < dump_applied) rc = index_load(fr->ix, data->base, data->len, &loaded);
    }
    snapmem_consumed(data->base, data->len); /* a mapping's pages leave our RSS */
    index_reader_free(rd);
    return rc;
}

int fsm_raft_init(struct fsm_raft *fr, struct index *ix)
{
    memset(fr, 0, sizeof(*fr));
    fr->ix = ix;
    int rc = index_reader_new(ix, &fr->rd);
    if (rc == 0) rc = index_reader_new(ix, &fr->snap_rd);
    if (rc) {
        index_reader_free(fr->rd);
        fr->rd = NULL;
        return rc;
    }
    fr->fsm.version = 3;
    fr->fsm.data = fr;
    fr->fsm.apply = fr_apply;
    fr->fsm.snapshot = fr_snapshot;
    fr->fsm.restore = fr_restore;
    fr->fsm.snapshot_finalize = fr_snapshot_finalize;
    fr->fsm.snapshot_async = fr_snapshot_async;
    return 0;
}

int fsm_raft_set_spool(struct fsm_raft *fr, const char *dir, struct fileio *fio)
{
    if (util_strlcpy(fr->spool_dir, dir, sizeof(fr->spool_dir)) >= sizeof(fr->spool_dir)) {
        fr->spool_dir[0] = 0;
        return -ENAMETOOLONG;
    }
    fr->spool_fio = fio;
    return 0;
}

void fsm_raft_bind(struct fsm_raft *fr, struct raft *raft)
{
    fr->raft = raft;
}

void fsm_raft_fini(struct fsm_raft *fr)
{
    applier_stop(fr);
    index_reader_free(fr->rd);
    fr->rd = NULL;
    index_reader_free(fr->snap_rd); /* aborts a txn a snapshot left open */
    fr->snap_rd = NULL;
    fr->snap_open = false;
}
