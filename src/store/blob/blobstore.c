/* blobstore.c: the blob store's write path, group commit, segments and
 * partitions, open and close (see blobstore.h for the contract and
 * blobstore_int.h for the ownership invariants).
 *
 * A put, happy path:
 *   reactor   blobstore_put: checks (fenced? immutable? capacity?), an index
 *             entry in state PENDING, a record sequence number; queue it on
 *             the writer.
 *   writer    verify the XXH3-64 of the data against the carried checksum,
 *             compress if allowed and worth it, encode header and chunk
 *             table, roll to a new segment if the active one is full, one
 *             pwritev.  No fsync here: the writer streams.
 *   reactor   writer_done: append to the unsynced list; if no flush is
 *             running, start one with everything unsynced.
 *   sync      flush_run: fdatasync every segment the batch wrote, fsync the
 *             directories of new segments and partitions.
 *   reactor   flush_done: every write of the batch becomes durable: entries
 *             go LIVE, callbacks run; writes that arrived meanwhile form the
 *             next batch.  This is the group commit: one fdatasync per
 *             segment serves every put that completed its write while the
 *             previous flush ran, and the writer keeps writing during the
 *             flush, so the disk is never idle waiting for acks.
 *
 * Failure modes:
 *   - checksum mismatch (writer): -BD_ECSUM, nothing written; an identical
 *     put that was waiting on this one is promoted and written itself (its
 *     payload may be the good one);
 *   - pwritev error, ENOSPC included: that write fails, the segment's write
 *     offset does not move, so the next record overwrites the partial one
 *     (never acked, never durable);
 *   - fdatasync/fsync error: every write of the batch fails with it, the
 *     store fails stop (blobstore_fail): queued and later writes fail at once,
 *     nothing is fsync'ed again and acked (C15, fsyncgate); reads go on.
 *
 * Deletes take the same path with a tombstone record.  A delete racing a
 * put or heal of the same id that is still in flight is -EBUSY: the proxy
 * deletes only blobs whose put it saw complete, so this is a retry, and it
 * keeps the entry state machine small:
 *
 *   (none) --put--> PENDING --durable--> LIVE --delete durable--> DEAD
 *                      |                  |  \--checksum error--> BAD
 *                      +--failed--> (none)                        |  \--delete--> DEAD
 *                                         LIVE <--put same bytes--+
 *
 * Segments: the writer seals the active segment when the next record does
 * not fit; the sealed segment's index file is written on the sync queue
 * after an fdatasync of the whole segment (blobstore_seg.c), so an index file only
 * ever describes durable records.
 *
 * Direct I/O (opts.direct_min_bytes): a record at least that large is
 * written with O_DIRECT, not through the page cache, whose copy into fresh
 * pages was the largest CPU cost of large writes.  The writer copies the
 * segment's partial last block (kept in seg->w_tail), the record and zeros
 * up to the next SEG_DIO_ALIGN boundary into one aligned buffer and writes
 * that whole at the block's offset.  Records stay back to back: the next
 * direct write rewrites the last block with its first bytes unchanged, and
 * a buffered record goes at w_size over the zeros.  Why this is crash safe:
 *   - a torn or lost rewrite of the last block can only leave, in each of
 *     its sectors, the old bytes or the new ones, and below w_size those
 *     are the same (invariant 5), so every record before this one reads as
 *     before; the new record is not acknowledged before the fdatasync and a
 *     scan cuts it if it is incomplete (as for a torn buffered write);
 *   - the zeros past the record never parse as one (no magic) and are not
 *     in the segment's logical length (w_size, durable_end, the index
 *     file's seg_len): sealing and recovery truncate them (segment.h);
 *   - the fdatasync of the group commit is still needed: it flushes the
 *     disk's write cache and makes a grown file size durable.
 * Readers keep the buffered descriptor seg->fd.  The kernel writes back
 * and invalidates cached pages of the range before a direct write and
 * invalidates them again after it completes (before pwrite returns), so a
 * page a reader brought in meanwhile (say, the last block, for a record
 * that ends in it) is dropped before the new record can be LIVE; and a
 * page read while the block was being rewritten holds the right bytes of
 * every older record anyway (same bytes).  Nothing maps segments or writes
 * them buffered concurrently, the cases in which that invalidation can
 * fail.  A filesystem that refuses O_DIRECT (EINVAL at open or write) turns
 * it off for the store with one log line.  Records below the threshold
 * stay buffered: the page cache then serves small random reads of freshly
 * written data (measured in the README).  Compaction writes its output
 * through the page cache (background, paced). */
#include "store/blob/blobstore_int.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>

/* ---- completion of writes ------------------------------------------------ */

static uint64_t wop_blob_id(struct blobstore_wop *w)
{
    if (w->type == SEG_REC_PUT) return bd_container_of(w, struct blobstore_put, w)->blob_id;
    return bd_container_of(w, struct blobstore_delete, w)->blob_id;
}

static void wop_reply(struct blobstore *bs, struct blobstore_wop *w, int err, uint32_t stored_len)
{
    if (w->type == SEG_REC_PUT) {
        struct blobstore_put *p = bd_container_of(w, struct blobstore_put, w);
        p->stored_len = stored_len;
        if (err == 0) bs->st.puts++;
        p->cb(p, err);
    } else {
        struct blobstore_delete *d = bd_container_of(w, struct blobstore_delete, w);
        if (err == 0) bs->st.deletes++;
        d->cb(d, err);
    }
}

/* Answer W and everything riding on it.  Callbacks may queue new writes
 * or free their requests: take each next pointer first. */
static void wop_reply_all(struct blobstore *bs, struct blobstore_wop *w, int err)
{
    struct blobstore_wop *waiters = w->waiters;
    uint32_t stored = w->stored_len;
    w->waiters = NULL;
    wop_reply(bs, w, err, stored);
    while (waiters) {
        struct blobstore_wop *next = waiters->next;
        wop_reply(bs, waiters, err, stored);
        waiters = next;
    }
}

static void submit_write(struct blobstore *bs, struct blobstore_wop *w);

static void wop_fail(struct blobstore *bs, struct blobstore_wop *w, int err)
{
    struct bsindex_ent *e = bsindex_get(&bs->ix, wop_blob_id(w));
    if (err == -BD_ECSUM && w->waiters && !bs->failed && !bs->closing) {
        /* This payload was damaged in transit; an identical put waiting on
         * it carries its own copy, which may be good: write that one. */
        struct blobstore_wop *nw = w->waiters;
        w->waiters = NULL;
        nw->waiters = nw->next;
        nw->next = NULL;
        nw->waiter = false;
        nw->seq = bs->next_seq++;
        if (e && e->pending == w) e->pending = nw;
        submit_write(bs, nw);
    } else if (e && e->pending == w) {
        e->pending = NULL;
        if (w->type == SEG_REC_PUT && e->state == BSINDEX_PENDING)
            bsindex_remove(&bs->ix, e->blob_id);
        else if (w->type == SEG_REC_TOMBSTONE && w->prev_state == BSINDEX_FREE)
            bsindex_remove(&bs->ix, e->blob_id); /* a delete of an id never seen */
        else if (w->type == SEG_REC_TOMBSTONE)
            e->state = w->prev_state;
    }
    wop_reply_all(bs, w, err);
}

/* W's record is durable: settle the index, then answer. */
static void wop_durable(struct blobstore *bs, struct blobstore_wop *w)
{
    struct bsindex_ent *e = bsindex_get(&bs->ix, wop_blob_id(w));
    if (w->type == SEG_REC_PUT) {
        if (e && e->pending == w && (e->state == BSINDEX_PENDING || e->state == BSINDEX_BAD)) {
            bool heal = e->state == BSINDEX_BAD;
            e->state = BSINDEX_LIVE;
            e->pending = NULL;
            e->seg = w->seg;
            e->off = w->off;
            e->seq = w->seq;
            e->stored_len = w->stored_len;
            e->flags = w->rec_flags;
            blobstore_seg_live_add(bs, w->seg, w->stored_len);
            bs->live_blobs++;
            blobstore_part_list_add(w->part, e);
            if (heal) {
                blobscan_bad_remove(bs, e->blob_id);
                log_info(bs->tag, "blob %llu healed by a put of the same bytes",
                         (unsigned long long)e->blob_id);
            }
        }
    } else if (e && e->pending == w) {
        uint8_t before = w->prev_state;
        if (before == BSINDEX_LIVE && e->seg) {
            blobstore_seg_live_sub(bs, e->seg, e->stored_len);
            bs->live_blobs--;
        }
        if (before == BSINDEX_BAD) blobscan_bad_remove(bs, e->blob_id);
        e->pending = NULL;
        e->seg = w->seg;
        e->off = w->off;
        e->seq = w->seq;
        e->stored_len = 0;
        e->raw_len = 0;
        e->flags = 0;
        blobstore_seg_live_add(bs, w->seg, 0);
    }
    wop_reply_all(bs, w, 0);
}

/* ---- group commit -------------------------------------------------------- */

static void flush_run(struct taskq_job *job)
{
    struct blobstore_flush *f = bd_container_of(job, struct blobstore_flush, job);
    struct fileio *fio = f->bs->fio;
    f->status = 0;
    for (uint32_t i = 0; i < f->n_segs && f->status == 0; i++)
        f->status = fio->ops->fdatasync(fio, f->segs[i]->fd);
    for (uint32_t i = 0; i < f->n_dirs && f->status == 0; i++)
        f->status = fio->ops->fsync_dir(fio, f->dirs[i]);
}

static int flush_add_dir(struct blobstore_flush *f, const char *dir)
{
    for (uint32_t i = 0; i < f->n_dirs; i++)
        if (strcmp(f->dirs[i], dir) == 0) return 0;
    if (f->n_dirs == f->cap_dirs) {
        uint32_t cap = f->cap_dirs ? f->cap_dirs * 2 : 4;
        void *n = realloc(f->dirs, cap * sizeof(*f->dirs));
        if (!n) return -ENOMEM;
        f->dirs = n;
        f->cap_dirs = cap;
    }
    util_strlcpy(f->dirs[f->n_dirs++], dir, BLOBSTORE_PATH_MAX);
    return 0;
}

static int flush_add_seg(struct blobstore_flush *f, struct blobstore_seg *seg)
{
    for (uint32_t i = 0; i < f->n_segs; i++)
        if (f->segs[i] == seg) return 0;
    if (f->n_segs == f->cap_segs) {
        uint32_t cap = f->cap_segs ? f->cap_segs * 2 : 8;
        void *n = realloc(f->segs, cap * sizeof(*f->segs));
        if (!n) return -ENOMEM;
        f->segs = n;
        f->cap_segs = cap;
    }
    f->segs[f->n_segs++] = seg;
    blobstore_seg_ref(seg);
    if (!seg->dir_synced) {
        char dir[BLOBSTORE_PATH_MAX];
        blobstore_part_dir(f->bs, seg->part->id, dir);
        if (flush_add_dir(f, dir) < 0) return -ENOMEM;
        if (!seg->part->dir_synced && flush_add_dir(f, f->bs->dir) < 0) return -ENOMEM;
    }
    return 0;
}

static void flush_release(struct blobstore *bs, struct blobstore_flush *f)
{
    for (uint32_t i = 0; i < f->n_segs; i++) blobstore_seg_unref(bs, f->segs[i]);
    f->n_segs = f->n_dirs = 0;
}

static void flush_kick(struct blobstore *bs)
{
    struct blobstore_flush *f = &bs->flush;
    if (f->busy || !bs->unsynced) return;
    struct blobstore_wop *batch = bs->unsynced;
    bs->unsynced = bs->unsynced_tail = NULL;
    if (bs->failed) {
        /* Never fsync again after a failed fsync: the error may not repeat
         * while the data is gone (C15). */
        while (batch) {
            struct blobstore_wop *next = batch->next;
            wop_fail(bs, batch, bs->failed_err);
            batch = next;
        }
        blobstore_check_closed(bs);
        return;
    }
    f->batch = batch;
    f->n_batch = 0;
    int rc = 0;
    for (struct blobstore_wop *w = batch; w; w = w->next) {
        f->n_batch++;
        if (rc == 0) rc = flush_add_seg(f, w->seg);
    }
    if (rc < 0) {
        /* No memory to describe the flush: these writes fail, not the store. */
        flush_release(bs, f);
        f->batch = NULL;
        while (batch) {
            struct blobstore_wop *next = batch->next;
            wop_fail(bs, batch, rc);
            batch = next;
        }
        return;
    }
    f->busy = true;
    f->t_start_ns = util_mono_ns();
    taskq_submit(bs->sq, &f->job);
}

static void flush_done(struct reactor_work *work)
{
    struct blobstore_flush *f = bd_container_of(work, struct blobstore_flush, job.work);
    struct blobstore *bs = f->bs;
    unsigned syncs = f->n_segs + f->n_dirs;
    bs->st.fsyncs += syncs;
    metric_add(bs->m_fsyncs, syncs);
    metrics_observe_us(bs->m_flush_lat, (util_mono_ns() - f->t_start_ns) / 1000);
    struct blobstore_wop *batch = f->batch;
    f->batch = NULL;
    f->busy = false;
    if (f->status < 0) {
        flush_release(bs, f);
        blobstore_fail(bs, f->status, "fdatasync");
        while (batch) {
            struct blobstore_wop *next = batch->next;
            wop_fail(bs, batch, f->status);
            batch = next;
        }
    } else {
        for (uint32_t i = 0; i < f->n_segs; i++) {
            f->segs[i]->dir_synced = true;
            f->segs[i]->part->dir_synced = true;
        }
        bs->st.commit_batches++;
        bs->st.commit_writes += f->n_batch;
        if (f->n_batch > bs->st.max_batch) bs->st.max_batch = f->n_batch;
        metric_inc(bs->m_batches);
        metric_add(bs->m_batch_writes, f->n_batch);
        for (struct blobstore_wop *w = batch; w; w = w->next)
            if (w->off + w->rec_len > w->seg->durable_end)
                w->seg->durable_end = w->off + w->rec_len;
        flush_release(bs, f);
        while (batch) {
            struct blobstore_wop *next = batch->next;
            wop_durable(bs, batch);
            batch = next;
        }
    }
    flush_kick(bs);
    blobstore_check_closed(bs);
}

/* ---- the writer ---------------------------------------------------------- */

/* Writer thread: make sure W's partition has an active segment with room
 * for W's record, creating the directory and a new segment as needed. */
static int writer_place(struct blobstore *bs, struct blobstore_wop *w)
{
    struct blobstore_part *part = w->part;
    struct fileio *fio = bs->fio;
    char path[BLOBSTORE_PATH_MAX];
    if (!part->w_dir_made) {
        blobstore_part_dir(bs, part->id, path);
        if (mkdir(path, 0700) < 0 && errno != EEXIST) return -errno;
        part->w_dir_made = true;
    }
    struct blobstore_seg *seg = part->w_active;
    if (seg && (seg->w_size + w->rec_len <= bs->o.segment_bytes || seg->w_size == SEG_HDR_LEN))
        return 0;
    if (seg) blobstore_seg_direct_release(bs, seg); /* it takes no more records */
    uint64_t seq = atomic_fetch_add(&part->next_seg_seq, 1);
    blobstore_seg_path(bs, part->id, seq, "seg", path);
    int fd = fio->ops->open(fio, path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return fd;
    struct seg_hdr h = {
        .store_id = bs->store_id,
        .partition = part->id,
        .seq = seq,
        .epoch = part->w_epoch,
        .created_ms = util_wall_ms(),
    };
    uint8_t hdr[SEG_HDR_LEN];
    seg_hdr_encode(hdr, &h);
    int rc = fileio_pwrite_full(fio, fd, hdr, sizeof(hdr), 0);
    struct blobstore_seg *n = rc == 0 ? blobstore_seg_new(part, seq, fd) : NULL;
    if (!n) {
        fio->ops->close(fio, fd);
        fio->ops->unlink(fio, path);
        return rc < 0 ? rc : -ENOMEM;
    }
    n->w_max_epoch = part->w_epoch;
    w->created = n;
    w->sealed = seg;
    part->w_active = n;
    return 0;
}

/* Writer: open SEG's O_DIRECT descriptor and load its tail block if not
 * yet done.  0, -EINVAL if the filesystem refuses O_DIRECT, or -errno. */
static int direct_prepare(struct blobstore *bs, struct blobstore_seg *seg)
{
    if (seg->w_dfd < 0) {
        char path[BLOBSTORE_PATH_MAX];
        blobstore_seg_path(bs, seg->part->id, seg->seq, "seg", path);
        int fd = bs->fio->ops->open(bs->fio, path, O_WRONLY | O_DIRECT, 0);
        if (fd < 0) return fd;
        seg->w_dfd = fd;
    }
    if (!seg->w_tail && posix_memalign((void **)&seg->w_tail, SEG_DIO_ALIGN, SEG_DIO_ALIGN))
        return -ENOMEM;
    if (!seg->w_tail_ok) {
        /* After a buffered write or a restart: the page cache has it. */
        uint64_t base = seg->w_size & ~(uint64_t)(SEG_DIO_ALIGN - 1);
        int rc = fileio_pread_full(bs->fio, seg->fd, seg->w_tail, (size_t)(seg->w_size - base),
                                   base);
        if (rc < 0) return rc;
        seg->w_tail_ok = true;
    }
    return 0;
}

/* Writer: write the record IOV (3 pieces, rec_len bytes) at seg->w_size
 * with O_DIRECT (see the top of this file).  0, -EINVAL if the filesystem
 * refuses O_DIRECT (nothing written), or -errno. */
static int write_direct(struct blobstore *bs, struct blobstore_seg *seg, const struct iovec *iov,
                        uint32_t rec_len)
{
    int rc = direct_prepare(bs, seg);
    if (rc < 0) return rc;
    const uint64_t mask = SEG_DIO_ALIGN - 1;
    uint64_t base = seg->w_size & ~mask;
    size_t pre = (size_t)(seg->w_size - base);
    size_t len = pre + rec_len;
    size_t padded = (len + mask) & ~(size_t)mask;
    if (BD_NEVER(padded > bs->w_acap)) return -EINVAL;
    uint8_t *p = bs->w_abuf;
    memcpy(p, seg->w_tail, pre);
    p += pre;
    for (int i = 0; i < 3; i++) {
        if (iov[i].iov_len) memcpy(p, iov[i].iov_base, iov[i].iov_len);
        p += iov[i].iov_len;
    }
    memset(p, 0, padded - len);
    rc = fileio_pwrite_full(bs->fio, seg->w_dfd, bs->w_abuf, padded, base);
    if (rc < 0) return rc; /* the tail is unchanged: the next record goes here */
    uint64_t end = seg->w_size + rec_len;
    uint64_t nbase = end & ~mask;
    memcpy(seg->w_tail, bs->w_abuf + (nbase - base), (size_t)(end - nbase));
    if (padded > len) seg->w_padded = true;
    metric_inc(bs->m_direct_writes);
    metric_add(bs->m_direct_bytes, padded);
    return 0;
}

static void writer_run(struct taskq_job *job)
{
    struct blobstore_wop *w = bd_container_of(job, struct blobstore_wop, job);
    struct blobstore *bs = w->bs;
    struct seg_rec_hdr h = {
        .type = w->type,
        .store_id = bs->store_id,
        .partition = w->part->id,
        .seq = w->seq,
    };
    const uint8_t *stored = NULL;
    if (w->type == SEG_REC_PUT) {
        struct blobstore_put *p = bd_container_of(w, struct blobstore_put, w);
        if (util_xxh3(p->data, p->len) != p->csum) {
            w->status = -BD_ECSUM;
            return;
        }
        h.blob_id = p->blob_id;
        h.raw_len = h.stored_len = p->len;
        h.epoch = p->epoch;
        h.data_csum = p->csum;
        stored = p->data;
        if (p->flags & BLOBSTORE_PUT_COMPRESSIBLE) h.flags |= SEG_REC_F_COMPRESSIBLE;
        if (bs->w_cctx && (p->flags & BLOBSTORE_PUT_COMPRESSIBLE) &&
            p->len >= BLOBSTORE_COMPRESS_MIN) {
            size_t n = ZSTD_compressCCtx(bs->w_cctx, bs->w_zbuf, bs->w_zcap, p->data, p->len, 1);
            if (!ZSTD_isError(n) &&
                (uint64_t)n * 100 <= (uint64_t)p->len * (100 - bs->o.compress_min_saving_pct)) {
                stored = bs->w_zbuf;
                h.stored_len = (uint32_t)n;
                h.flags |= SEG_REC_F_COMPRESSED;
            }
        }
    } else {
        h.blob_id = bd_container_of(w, struct blobstore_delete, w)->blob_id;
    }
    size_t meta_len = seg_rec_meta_len(h.stored_len);
    seg_rec_encode(bs->w_meta, &h, stored);
    w->rec_len = (uint32_t)seg_rec_total_len(h.stored_len);
    w->stored_len = h.stored_len;
    w->rec_flags = h.flags;
    int rc = writer_place(bs, w);
    if (rc < 0) {
        w->status = rc;
        return;
    }
    struct blobstore_seg *seg = w->part->w_active;
    static const uint8_t zeros[SEG_REC_ALIGN];
    struct iovec iov[3] = {
        {bs->w_meta, meta_len},
        {(void *)stored, h.stored_len},
        {(void *)zeros, w->rec_len - meta_len - h.stored_len},
    };
    bool direct = bs->w_abuf && !bs->w_direct_off && w->rec_len >= bs->o.direct_min_bytes;
    if (direct) {
        rc = write_direct(bs, seg, iov, w->rec_len);
        if (rc == -EINVAL) {
            /* A filesystem without O_DIRECT (tmpfs before Linux 6.6, some
             * FUSE and network ones): say so once, then write buffered. */
            bs->w_direct_off = true;
            direct = false;
            blobstore_seg_direct_release(bs, seg);
            log_warn(bs->tag, "the filesystem of %s refuses O_DIRECT; segments are written "
                     "through the page cache", bs->dir);
        }
    }
    if (!direct) {
        rc = fileio_pwritev_full(bs->fio, seg->fd, iov, 3, seg->w_size);
        seg->w_tail_ok = false;
    }
    if (rc == 0 && seg->n_ents == seg->cap_ents) {
        uint32_t cap = seg->cap_ents ? seg->cap_ents * 2 : 1024;
        struct seg_idx_entry *n = realloc(seg->ents, cap * sizeof(*n));
        if (n) {
            seg->ents = n;
            seg->cap_ents = cap;
        } else {
            rc = -ENOMEM;
        }
    }
    if (rc < 0) {
        w->status = rc; /* w_size stays: the next record overwrites this one */
        return;
    }
    seg->ents[seg->n_ents++] = (struct seg_idx_entry){
        .blob_id = h.blob_id,
        .off = seg->w_size,
        .seq = h.seq,
        .data_csum = h.data_csum,
        .raw_len = h.raw_len,
        .stored_len = h.stored_len,
        .type = h.type,
        .flags = h.flags,
    };
    w->seg = seg;
    w->off = seg->w_size;
    seg->w_size += w->rec_len;
    if (h.epoch > seg->w_max_epoch) seg->w_max_epoch = h.epoch;
    if (h.epoch > w->part->w_epoch) w->part->w_epoch = h.epoch;
}

static void writer_done(struct reactor_work *work)
{
    struct blobstore_wop *w = bd_container_of(work, struct blobstore_wop, job.work);
    struct blobstore *bs = w->bs;
    bs->writes_in_writer--;
    if (w->sealed) blobstore_seg_seal(bs, w->sealed);
    if (w->created) {
        blobstore_seg_link(w->created);
        bs->used_bytes += SEG_HDR_LEN;
    }
    if (w->status == 0) {
        uint64_t end = w->off + w->rec_len;
        if (end > w->seg->file_len) {
            bs->used_bytes += end - w->seg->file_len;
            w->seg->file_len = end;
        }
        bs->rec_bytes += w->rec_len;
        bs->enospc = false;
        if (bs->failed) w->status = bs->failed_err;
    } else if (w->status == -ENOSPC) {
        bs->enospc = true;
    }
    if (w->status < 0) {
        wop_fail(bs, w, w->status);
        blobstore_check_closed(bs);
        return;
    }
    w->next = NULL;
    if (bs->unsynced_tail) bs->unsynced_tail->next = w;
    else bs->unsynced = w;
    bs->unsynced_tail = w;
    flush_kick(bs);
}

static void submit_write(struct blobstore *bs, struct blobstore_wop *w)
{
    w->job.run = writer_run;
    w->job.work.done = writer_done;
    w->status = 0;
    w->seg = w->created = w->sealed = NULL;
    w->next = NULL;
    bs->writes_in_writer++;
    taskq_submit(bs->wq, &w->job);
}

static void wop_init(struct blobstore *bs, struct blobstore_wop *w, struct blobstore_part *part,
                     uint8_t type)
{
    memset(w, 0, sizeof(*w));
    w->bs = bs;
    w->part = part;
    w->type = type;
    w->t_start_ns = util_mono_ns();
}

static void wop_attach(struct blobstore_wop *primary, struct blobstore_wop *w)
{
    w->waiter = true;
    w->next = primary->waiters;
    primary->waiters = w;
}

int blobstore_put(struct blobstore *bs, struct blobstore_put *p)
{
    if (bs->closing) return -ESHUTDOWN;
    if (bs->failed) return -BD_EFAILED;
    if (p->blob_id == 0 || p->len > bs->o.max_blob_bytes) return -EINVAL;
    struct blobstore_part *part = blobstore_part_get(bs, p->partition, true);
    if (!part) return bs->n_parts >= BLOBSTORE_MAX_PARTITIONS ? -ENOSPC : -ENOMEM;
    if (p->epoch < part->epoch) return -BD_EFENCED;
    wop_init(bs, &p->w, part, SEG_REC_PUT);
    struct bsindex_ent *e = bsindex_get(&bs->ix, p->blob_id);
    if (e) {
        bool same = e->partition == p->partition && e->raw_len == p->len && e->csum == p->csum;
        if (e->state == BSINDEX_DEAD || !same) return -BD_EIMMUTABLE;
        if (e->state == BSINDEX_LIVE) return 1;
        if (e->pending) { /* PENDING, or a heal of a BAD one in flight */
            wop_attach(e->pending, &p->w);
            return 0;
        }
    }
    uint64_t need = seg_rec_total_len(p->len) + SEG_HDR_LEN;
    if (bs->o.capacity_bytes && bs->used_bytes + need > bs->o.capacity_bytes) return -ENOSPC;
    if (!e) {
        e = bsindex_add(&bs->ix, p->blob_id);
        if (!e) return -ENOMEM;
        e->state = BSINDEX_PENDING;
        e->partition = p->partition;
        e->raw_len = p->len;
        e->csum = p->csum;
    }
    e->pending = &p->w; /* for BAD: a heal */
    if (p->epoch > part->epoch) part->epoch = p->epoch;
    p->w.seq = bs->next_seq++;
    submit_write(bs, &p->w);
    return 0;
}

int blobstore_delete(struct blobstore *bs, struct blobstore_delete *d)
{
    if (bs->closing) return -ESHUTDOWN;
    if (bs->failed) return -BD_EFAILED;
    if (d->blob_id == 0) return -EINVAL;
    struct bsindex_ent *e = bsindex_get(&bs->ix, d->blob_id);
    if (e && e->partition != d->partition) return -ENOENT;
    if (e && e->state == BSINDEX_DEAD) {
        if (!e->pending) return 1;
        wop_init(bs, &d->w, NULL, SEG_REC_TOMBSTONE);
        wop_attach(e->pending, &d->w);
        return 0;
    }
    if (e && e->pending) return -EBUSY;
    struct blobstore_part *part = blobstore_part_get(bs, d->partition, true);
    if (!part) return bs->n_parts >= BLOBSTORE_MAX_PARTITIONS ? -ENOSPC : -ENOMEM;
    if (bs->o.capacity_bytes &&
        bs->used_bytes + seg_rec_total_len(0) + SEG_HDR_LEN > bs->o.capacity_bytes)
        return -ENOSPC;
    wop_init(bs, &d->w, part, SEG_REC_TOMBSTONE);
    if (!e) {
        e = bsindex_add(&bs->ix, d->blob_id);
        if (!e) return -ENOMEM;
        e->partition = d->partition;
        d->w.prev_state = BSINDEX_FREE;
    } else {
        d->w.prev_state = e->state;
    }
    e->state = BSINDEX_DEAD;
    e->pending = &d->w;
    d->w.seq = bs->next_seq++;
    submit_write(bs, &d->w);
    return 0;
}

/* ---- open, close --------------------------------------------------------- */

void blobstore_job_done(struct blobstore *bs)
{
    if (BD_NEVER(bs->jobs == 0)) return;
    bs->jobs--;
    blobstore_check_closed(bs);
}

void blobstore_check_closed(struct blobstore *bs)
{
    if (!bs->closing || !bs->close_done) return;
    if (bs->writes_in_writer || bs->unsynced || bs->flush.busy || bs->jobs || bs->badsave)
        return;
    if (!blobstore_scrub_idle(bs) || !blobstore_compact_idle(bs)) return;
    void (*done)(void *) = bs->close_done;
    bs->close_done = NULL;
    if (reactor_defer(bs->rx, done, bs->close_arg) < 0) done(bs->close_arg);
}

void blobstore_close(struct blobstore *bs, void (*done)(void *arg), void *arg)
{
    bs->closing = true;
    bs->close_done = done;
    bs->close_arg = arg;
    blobstore_scrub_stop(bs);
    blobstore_compact_stop(bs);
    blobstore_check_closed(bs);
}

void blobstore_free(struct blobstore *bs)
{
    if (!bs) return;
    blobstore_scrub_free(bs);
    blobstore_compact_free(bs);
    taskq_free(bs->wq);
    taskq_free(bs->sq);
    taskq_free(bs->bgq);
    for (unsigned i = 0; i < bs->n_rq; i++) {
        taskq_free(bs->rq[i]);
        ZSTD_freeDCtx(bs->rq_dctx[i]);
    }
    for (uint32_t i = 0; i < bs->n_parts; i++) {
        struct blobstore_part *p = bs->parts[i];
        while (p->segs) {
            struct blobstore_seg *s = p->segs;
            p->segs = s->next;
            blobstore_seg_free(bs, s);
        }
        free(p->ids);
        free(p);
    }
    free(bs->parts);
    free(bs->flush.segs);
    free(bs->flush.dirs);
    free(bs->bad);
    bsindex_fini(&bs->ix);
    ZSTD_freeCCtx(bs->w_cctx);
    free(bs->w_zbuf);
    free(bs->w_meta);
    free(bs->w_abuf);
    metrics_remove_owner(bs);
    free(bs);
}

static void register_metrics(struct blobstore *bs)
{
    const char *l = bs->labels;
    bs->m_fsyncs = metrics_counter("blockd_blob_fsyncs_total",
                                   "fdatasync and directory fsync calls of the blob store", l);
    bs->m_batches = metrics_counter("blockd_blob_commit_batches_total",
                                    "Group commits (flushes that acknowledged writes)", l);
    bs->m_batch_writes = metrics_counter("blockd_blob_commit_writes_total",
                                         "Writes acknowledged by group commits", l);
    bs->m_csum_errors = metrics_counter("blockd_blob_checksum_errors_total",
                                        "Records that failed a checksum on read or scrub", l);
    bs->m_scrub_bytes = metrics_counter("blockd_blob_scrub_bytes_total",
                                        "Bytes verified by the scrubber", l);
    bs->m_scrub_passes = metrics_counter("blockd_blob_scrub_passes_total",
                                         "Full scrub passes completed", l);
    bs->m_compactions = metrics_counter("blockd_blob_compacted_segments_total",
                                        "Segments compacted away", l);
    bs->m_reclaimed = metrics_counter("blockd_blob_compacted_bytes_total",
                                      "Bytes given back by compaction", l);
    bs->m_direct_writes = metrics_counter("blockd_blob_direct_writes_total",
                                          "Records written with O_DIRECT", l);
    bs->m_direct_bytes = metrics_counter("blockd_blob_direct_bytes_total",
                                         "Bytes written with O_DIRECT, block padding included", l);
    bs->m_flush_lat = metrics_hist("blockd_blob_flush_seconds",
                                   "Time of one group-commit flush", l);
}

int blobstore_open(const struct blobstore_opts *o, struct blobstore **out, char *err,
                   size_t errlen)
{
    *out = NULL;
    if (!o->dir || !*o->dir || strlen(o->dir) >= BLOBSTORE_DIR_MAX || !o->fio || !o->rx) {
        snprintf(err, errlen, "blob store: missing directory, fio or reactor");
        return -EINVAL;
    }
    if (o->max_blob_bytes == 0 || o->max_blob_bytes > SEG_REC_MAX_DATA ||
        o->segment_bytes < 2 * (uint64_t)SEG_HDR_LEN || o->segment_bytes > (1ull << 32)) {
        snprintf(err, errlen, "blob store: max_blob_bytes or segment_bytes out of range");
        return -EINVAL;
    }
    struct blobstore *bs = calloc(1, sizeof(*bs));
    if (!bs) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    bs->o = *o;
    util_strlcpy(bs->dir, o->dir, sizeof(bs->dir));
    util_strlcpy(bs->tag, o->tag ? o->tag : "blobstore", sizeof(bs->tag));
    util_strlcpy(bs->labels, o->metrics_labels ? o->metrics_labels : "", sizeof(bs->labels));
    util_strlcpy(bs->ident, o->ident ? o->ident : "", sizeof(bs->ident));
    bs->o.dir = bs->dir;
    bs->o.tag = bs->tag;
    bs->o.metrics_labels = bs->labels;
    bs->o.ident = bs->ident;
    if (!bs->o.scrub_tick_ms) bs->o.scrub_tick_ms = 100;
    if (!bs->o.compact_check_ms) bs->o.compact_check_ms = 1000;
    if (!bs->o.read_threads) bs->o.read_threads = 2;
    if (bs->o.read_threads > BLOBSTORE_MAX_READERS) bs->o.read_threads = BLOBSTORE_MAX_READERS;
    bs->fio = o->fio;
    bs->rx = o->rx;
    bs->flush.bs = bs;
    bs->flush.job.run = flush_run;
    bs->flush.job.work.done = flush_done;
    int rc = -ENOMEM;
    snprintf(err, errlen, "out of memory");
    if (bsindex_init(&bs->ix) < 0) goto fail;
    bs->w_meta = malloc(BLOBSTORE_META_MAX);
    if (!bs->w_meta) goto fail;
    if (o->direct_min_bytes) {
        /* The largest record plus a partial block before it, in whole
         * blocks; untouched pages cost nothing until a record needs them. */
        uint64_t need = SEG_DIO_ALIGN + seg_rec_total_len(o->max_blob_bytes) + SEG_DIO_ALIGN;
        bs->w_acap = (size_t)(need & ~(uint64_t)(SEG_DIO_ALIGN - 1));
        if (posix_memalign((void **)&bs->w_abuf, SEG_DIO_ALIGN, bs->w_acap)) {
            bs->w_abuf = NULL;
            goto fail;
        }
    }
    if (o->compress) {
        bs->w_cctx = ZSTD_createCCtx();
        bs->w_zcap = ZSTD_compressBound(o->max_blob_bytes);
        bs->w_zbuf = malloc(bs->w_zcap);
        if (!bs->w_cctx || !bs->w_zbuf) goto fail;
    }
    register_metrics(bs);
    uint64_t t0 = util_mono_ms();
    rc = blobscan_recover(bs, err, errlen);
    if (rc < 0) goto fail;
    bs->st.recover_ms = util_mono_ms() - t0;
    rc = -ENOMEM;
    snprintf(err, errlen, "cannot start the blob store's threads");
    bs->wq = taskq_new(bs->rx, "blob-write");
    bs->sq = taskq_new(bs->rx, "blob-sync");
    bs->bgq = taskq_new(bs->rx, "blob-bg");
    if (!bs->wq || !bs->sq || !bs->bgq) goto fail;
    for (unsigned i = 0; i < bs->o.read_threads; i++) {
        char name[16];
        snprintf(name, sizeof(name), "blob-read%u", i % BLOBSTORE_MAX_READERS);
        bs->rq[i] = taskq_new(bs->rx, name);
        bs->rq_dctx[i] = ZSTD_createDCtx();
        bs->n_rq++;
        if (!bs->rq[i] || !bs->rq_dctx[i]) goto fail;
    }
    if (blobstore_scrub_new(bs) < 0 || blobstore_compact_new(bs) < 0) goto fail;
    err[0] = 0;
    *out = bs;
    return 0;

fail:
    blobstore_free(bs);
    return rc;
}

void blobstore_get_stats(struct blobstore *bs, struct blobstore_stats *out)
{
    *out = bs->st;
    out->blobs = bs->live_blobs;
    out->live_bytes = bs->live_bytes;
    out->dead_bytes = bs->rec_bytes > bs->live_bytes ? bs->rec_bytes - bs->live_bytes : 0;
    out->used_bytes = bs->used_bytes;
    out->bad_blobs = bs->n_bad;
    out->partitions = bs->n_parts;
    uint32_t segs = 0;
    for (uint32_t i = 0; i < bs->n_parts; i++)
        for (struct blobstore_seg *s = bs->parts[i]->segs; s; s = s->next) segs++;
    out->segments = segs;
    out->failed = bs->failed;
    out->failed_err = bs->failed_err;
    out->out_of_space = bs->enospc;
}
