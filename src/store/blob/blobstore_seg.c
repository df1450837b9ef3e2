/* blobstore_seg.c: the blob store's partitions and segments: paths, the
 * partition table, segment lifetime (references, retirement, unlinking),
 * live-byte accounting, the ids kept for BLOB_LIST, failure marking, and
 * sealing (the index file written once a full segment is durable).
 *
 * Segment lifetime (blobstore_int.h invariants 3 and 4): a segment in its
 * partition's list holds one reference; every job that reads or syncs its
 * fd holds one more.  Retiring a segment (compaction) takes it out of the
 * list; when the last reference drops, the background queue closes its fd,
 * unlinks its .seg and .idx files and fsyncs the directory.
 *
 * Sealing, happy path: the writer moves to a new segment and reports the
 * full one; seal_run (sync queue) cuts any direct-I/O padding past the
 * last record (segment.h), fdatasyncs the whole segment, then
 * writes <seq>.idx atomically (tmp, fdatasync, rename, directory fsync)
 * from the record list the writer kept.  Failure modes: an fdatasync error
 * fails the store (C15); any other error only costs the index file, and a
 * restart scans the segment instead. */
#include "store/blob/blobstore_int.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- paths, partitions, segments ----------------------------------------- */

void blobstore_part_dir(const struct blobstore *bs, uint32_t part, char *buf)
{
    snprintf(buf, BLOBSTORE_PATH_MAX, "%s/p%u", bs->dir, part);
}

void blobstore_seg_path(const struct blobstore *bs, uint32_t part, uint64_t seq, const char *ext,
                        char *buf)
{
    snprintf(buf, BLOBSTORE_PATH_MAX, "%s/p%u/%016llx.%s", bs->dir, part, (unsigned long long)seq,
             ext);
}

static int part_cmp(const void *key, const void *elem)
{
    uint32_t id = *(const uint32_t *)key;
    uint32_t other = (*(struct blobstore_part *const *)elem)->id;
    return id < other ? -1 : id > other;
}

struct blobstore_part *blobstore_part_get(struct blobstore *bs, uint32_t id, bool create)
{
    struct blobstore_part **pp =
        bs->n_parts ? bsearch(&id, bs->parts, bs->n_parts, sizeof(*pp), part_cmp) : NULL;
    if (pp) return *pp;
    if (!create || bs->n_parts >= BLOBSTORE_MAX_PARTITIONS) return NULL;
    if (bs->n_parts == bs->cap_parts) {
        uint32_t cap = bs->cap_parts ? bs->cap_parts * 2 : 16;
        struct blobstore_part **n = realloc(bs->parts, cap * sizeof(*n));
        if (!n) return NULL;
        bs->parts = n;
        bs->cap_parts = cap;
    }
    struct blobstore_part *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->id = id;
    p->ids_sorted = true;
    atomic_init(&p->next_seg_seq, 1);
    uint32_t i = 0;
    while (i < bs->n_parts && bs->parts[i]->id < id) i++;
    memmove(&bs->parts[i + 1], &bs->parts[i], (bs->n_parts - i) * sizeof(*bs->parts));
    bs->parts[i] = p;
    bs->n_parts++;
    return p;
}

struct blobstore_seg *blobstore_seg_new(struct blobstore_part *part, uint64_t seq, int fd)
{
    struct blobstore_seg *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->part = part;
    s->seq = seq;
    s->fd = fd;
    s->w_dfd = -1;
    s->refs = 1; /* the partition list's */
    s->state = BLOBSTORE_SEG_ACTIVE;
    s->w_size = SEG_HDR_LEN;
    s->file_len = SEG_HDR_LEN;
    s->durable_end = SEG_HDR_LEN;
    return s;
}

void blobstore_seg_direct_release(struct blobstore *bs, struct blobstore_seg *seg)
{
    if (seg->w_dfd >= 0) bs->fio->ops->close(bs->fio, seg->w_dfd);
    seg->w_dfd = -1;
    free(seg->w_tail);
    seg->w_tail = NULL;
    seg->w_tail_ok = false;
}

void blobstore_seg_free(struct blobstore *bs, struct blobstore_seg *seg)
{
    blobstore_seg_direct_release(bs, seg);
    bs->fio->ops->close(bs->fio, seg->fd);
    free(seg->ents);
    free(seg);
}

void blobstore_seg_link(struct blobstore_seg *seg)
{
    struct blobstore_seg **pp = &seg->part->segs;
    while (*pp && (*pp)->seq < seg->seq) pp = &(*pp)->next;
    seg->next = *pp;
    *pp = seg;
}

void blobstore_seg_ref(struct blobstore_seg *seg)
{
    seg->refs++;
}

struct unlink_job {
    struct taskq_job job;
    struct blobstore *bs;
    struct blobstore_seg *seg;
    int status;
};

static void unlink_run(struct taskq_job *job)
{
    struct unlink_job *u = bd_container_of(job, struct unlink_job, job);
    struct blobstore *bs = u->bs;
    char path[BLOBSTORE_PATH_MAX], dir[BLOBSTORE_PATH_MAX];
    blobstore_seg_direct_release(bs, u->seg);
    bs->fio->ops->close(bs->fio, u->seg->fd);
    blobstore_seg_path(bs, u->seg->part->id, u->seg->seq, "idx", path);
    int rc = bs->fio->ops->unlink(bs->fio, path);
    if (rc < 0 && rc != -ENOENT) u->status = rc;
    blobstore_seg_path(bs, u->seg->part->id, u->seg->seq, "seg", path);
    rc = bs->fio->ops->unlink(bs->fio, path);
    if (rc < 0) u->status = rc;
    blobstore_part_dir(bs, u->seg->part->id, dir);
    rc = bs->fio->ops->fsync_dir(bs->fio, dir);
    if (rc < 0 && !u->status) u->status = rc;
}

static void unlink_done(struct reactor_work *work)
{
    struct unlink_job *u = bd_container_of(work, struct unlink_job, job.work);
    struct blobstore *bs = u->bs;
    metric_inc(bs->m_fsyncs);
    bs->st.fsyncs++;
    if (u->status < 0)
        log_warn(bs->tag, "removing compacted segment p%u/%016llx: %s", u->seg->part->id,
                 (unsigned long long)u->seg->seq, bd_strerror(u->status));
    free(u->seg->ents);
    free(u->seg);
    free(u);
    blobstore_job_done(bs);
}

void blobstore_seg_unref(struct blobstore *bs, struct blobstore_seg *seg)
{
    if (BD_NEVER(seg->refs <= 0)) return;
    if (--seg->refs > 0) return;
    if (seg->state == BLOBSTORE_SEG_RETIRED) {
        struct unlink_job *u = calloc(1, sizeof(*u));
        if (!u) {
            log_error(bs->tag, "no memory to remove a compacted segment; it stays");
            return;
        }
        u->bs = bs;
        u->seg = seg;
        u->job.run = unlink_run;
        u->job.work.done = unlink_done;
        bs->jobs++;
        taskq_submit(bs->bgq, &u->job);
        return;
    }
    blobstore_seg_free(bs, seg);
}

void blobstore_seg_retire(struct blobstore *bs, struct blobstore_seg *seg)
{
    struct blobstore_seg **pp = &seg->part->segs;
    while (*pp && *pp != seg) pp = &(*pp)->next;
    if (BD_NEVER(!*pp)) return;
    *pp = seg->next;
    seg->next = NULL;
    seg->state = BLOBSTORE_SEG_RETIRED;
    /* Bad entries may still name a record in it (every bad entry is on the
     * bad list); they become bad with no copy left. */
    for (uint32_t i = 0; i < bs->n_bad; i++) {
        struct bsindex_ent *e = bsindex_get(&bs->ix, bs->bad[i].blob_id);
        if (e && e->state == BSINDEX_BAD && e->seg == seg) e->seg = NULL;
    }
    bs->used_bytes -= seg->file_len;
    bs->rec_bytes -= seg->file_len - SEG_HDR_LEN;
    bs->live_bytes -= seg->live_bytes;
    blobstore_seg_unref(bs, seg);
}

void blobstore_seg_live_add(struct blobstore *bs, struct blobstore_seg *seg, uint32_t stored_len)
{
    uint64_t n = seg_rec_total_len(stored_len);
    seg->live_bytes += n;
    bs->live_bytes += n;
}

void blobstore_seg_live_sub(struct blobstore *bs, struct blobstore_seg *seg, uint32_t stored_len)
{
    uint64_t n = seg_rec_total_len(stored_len);
    if (BD_NEVER(seg->live_bytes < n)) n = seg->live_bytes;
    seg->live_bytes -= n;
    bs->live_bytes -= n;
}

void blobstore_part_list_add(struct blobstore_part *part, struct bsindex_ent *e)
{
    if (e->listed) return;
    if (part->n_ids == part->cap_ids) {
        uint32_t cap = part->cap_ids ? part->cap_ids * 2 : 256;
        uint64_t *n = realloc(part->ids, cap * sizeof(*n));
        if (!n) return; /* listing is best effort; repair falls back to STAT */
        part->ids = n;
        part->cap_ids = cap;
    }
    if (part->n_ids && part->ids[part->n_ids - 1] > e->blob_id) part->ids_sorted = false;
    part->ids[part->n_ids++] = e->blob_id;
    e->listed = 1;
}

/* ---- failure ------------------------------------------------------------- */

void blobstore_fail(struct blobstore *bs, int err, const char *what)
{
    if (bs->failed) return;
    bs->failed = true;
    bs->failed_err = err;
    log_error(bs->tag, "%s failed: %s; the store now refuses writes (reads continue)", what,
              bd_strerror(err));
}

void blobstore_mark_bad(struct blobstore *bs, struct bsindex_ent *e, int err, const char *who)
{
    if (e->state != BSINDEX_LIVE) return;
    log_error(bs->tag, "blob %llu (partition %u, segment %016llx offset %llu) is bad: %s (%s)",
              (unsigned long long)e->blob_id, e->partition,
              (unsigned long long)(e->seg ? e->seg->seq : 0), (unsigned long long)e->off,
              bd_strerror(err), who);
    e->state = BSINDEX_BAD;
    if (e->seg) blobstore_seg_live_sub(bs, e->seg, e->stored_len);
    bs->live_blobs--;
    bs->st.csum_errors++;
    metric_inc(bs->m_csum_errors);
    blobscan_bad_add(bs, e);
}


/* ---- sealing ------------------------------------------------------------- */

struct seal_job {
    struct taskq_job job;
    struct blobstore *bs;
    struct blobstore_seg *seg;
    int status;
    bool sync_failed;
    unsigned fsyncs;
};

int blobstore_write_atomic(struct blobstore *bs, const char *dir, const char *path, const void *buf,
                           size_t len, unsigned *fsyncs)
{
    struct fileio *fio = bs->fio;
    char tmp[BLOBSTORE_PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = fio->ops->open(fio, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return fd;
    int rc = fileio_pwrite_full(fio, fd, buf, len, 0);
    if (rc == 0) {
        rc = fio->ops->fdatasync(fio, fd);
        (*fsyncs)++;
    }
    int crc = fio->ops->close(fio, fd);
    if (rc == 0) rc = crc;
    if (rc == 0) rc = fio->ops->rename(fio, tmp, path);
    if (rc == 0) {
        rc = fio->ops->fsync_dir(fio, dir);
        (*fsyncs)++;
    }
    if (rc < 0) fio->ops->unlink(fio, tmp);
    return rc;
}

int blobstore_seg_write_idx(struct blobstore *bs, struct blobstore_seg *seg,
                            const struct seg_idx_entry *ents, uint32_t n, uint64_t seg_len,
                            uint64_t max_epoch, unsigned *fsyncs)
{
    size_t len = SEG_IDX_HDR_LEN + (size_t)n * SEG_IDX_ENTRY_LEN;
    uint8_t *buf = malloc(len);
    if (!buf) return -ENOMEM;
    struct seg_idx_hdr h = {
        .store_id = bs->store_id,
        .partition = seg->part->id,
        .seg_seq = seg->seq,
        .seg_len = seg_len,
        .max_epoch = max_epoch,
    };
    seg_idx_encode(buf, &h, ents, n);
    char dir[BLOBSTORE_PATH_MAX], path[BLOBSTORE_PATH_MAX];
    blobstore_part_dir(bs, seg->part->id, dir);
    blobstore_seg_path(bs, seg->part->id, seg->seq, "idx", path);
    int rc = blobstore_write_atomic(bs, dir, path, buf, len, fsyncs);
    free(buf);
    return rc;
}

static void seal_run(struct taskq_job *job)
{
    struct seal_job *s = bd_container_of(job, struct seal_job, job);
    struct blobstore *bs = s->bs;
    struct blobstore_seg *seg = s->seg;
    /* Direct-I/O padding past the last record goes before the sync, so the
     * index file's exact length is the durable one.  If the cut fails, the
     * segment only goes without an index file (a restart scans it). */
    int cut = seg->w_padded ? bs->fio->ops->ftruncate(bs->fio, seg->fd, seg->w_size) : 0;
    s->status = bs->fio->ops->fdatasync(bs->fio, seg->fd);
    s->fsyncs++;
    if (s->status < 0) {
        s->sync_failed = true;
        return;
    }
    if (cut < 0) {
        s->status = cut;
        return;
    }
    seg->w_padded = false;
    s->status = blobstore_seg_write_idx(bs, seg, seg->ents, seg->n_ents, seg->w_size,
                                        seg->w_max_epoch, &s->fsyncs);
}

static void seal_done(struct reactor_work *work)
{
    struct seal_job *s = bd_container_of(work, struct seal_job, job.work);
    struct blobstore *bs = s->bs;
    struct blobstore_seg *seg = s->seg;
    bs->st.fsyncs += s->fsyncs;
    metric_add(bs->m_fsyncs, s->fsyncs);
    if (s->sync_failed) {
        blobstore_fail(bs, s->status, "fdatasync of a sealed segment");
    } else {
        if (s->status < 0)
            log_warn(bs->tag, "index file of segment p%u/%016llx not written (%s); a restart "
                     "scans the segment instead", seg->part->id, (unsigned long long)seg->seq,
                     bd_strerror(s->status));
        else
            seg->has_idx = true;
        seg->durable_end = seg->w_size;
    }
    seg->state = BLOBSTORE_SEG_SEALED;
    free(seg->ents);
    seg->ents = NULL;
    seg->n_ents = seg->cap_ents = 0;
    blobstore_seg_unref(bs, seg);
    free(s);
    blobstore_job_done(bs);
}

void blobstore_seg_seal(struct blobstore *bs, struct blobstore_seg *seg)
{
    struct seal_job *s = calloc(1, sizeof(*s));
    seg->state = BLOBSTORE_SEG_SEALING;
    if (!s) {
        /* The segment stays without an index file; a restart scans it. */
        seg->state = BLOBSTORE_SEG_SEALED;
        seg->durable_end = seg->w_size;
        return;
    }
    s->bs = bs;
    s->seg = seg;
    s->job.run = seal_run;
    s->job.work.done = seal_done;
    blobstore_seg_ref(seg);
    bs->jobs++;
    taskq_submit(bs->sq, &s->job);
}
