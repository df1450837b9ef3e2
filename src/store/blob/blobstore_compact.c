/* blobstore_compact.c: giving the space of deleted blobs back (DESIGN.md §6).
 *
 * A sealed segment whose live fraction (bytes of records the index still
 * references, over its record bytes) falls below compact_live_pct is
 * rewritten: its live records are copied into a new segment, the index is
 * switched to the copies, and the old file is unlinked.  Several such
 * segments of one partition are merged into one output, up to
 * segment_bytes.  One compaction runs at a time.
 *
 * Phases (bg = background queue, R = reactor), each bounded so that the
 * reactor never holds more than a few milliseconds of work at once:
 *   LIST    bg  read every input's record list (its index file, or a scan
 *               of its headers when it has none);
 *   FILTER  R   up to FILTER_STEP records: which are still live here (the
 *               index points at exactly this record);
 *   COPY    bg  for those: read the record, verify it completely (never
 *               copy corruption; a bad one is reported and marked bad),
 *               append it to the output "<seq>.cmp"; tombstones are
 *               re-encoded (no data to carry);  back to FILTER until done;
 *   FINISH  bg  fdatasync the output, write its index file, rename it to
 *               "<seq>.seg", fsync the directory;
 *   SWITCH  R   in steps of SWITCH_STEP records, point every entry that
 *               still references a copied record at its copy; then retire
 *               every input nothing references any more (its file is
 *               unlinked and the directory fsync'ed once the last reader
 *               is done with it).
 *
 * Crash safety: until the rename the output is a *.cmp file that recovery
 * deletes; after it, recovery sees each record twice and keeps the copy
 * in the higher segment (same record seq), which is what the switch did.
 * Reads and writes go on throughout: reads use whichever location the
 * index holds (both files are complete and durable), writes go to the
 * active segment, which is never an input.
 *
 * Failure modes: a read or verification error marks that record bad and
 * skips it; an ENOSPC or write error abandons the compaction (the output
 * is removed, the inputs stay); an fsync error fails the store (C15). */
#include "store/blob/blobstore_int.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"

#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define MAX_INPUTS 16
#define FILTER_STEP 4096
#define SWITCH_STEP 8192
#define COPY_BYTES (8u << 20)

struct crec {                 /* one record of an input */
    uint64_t blob_id;
    uint64_t off;             /* in the input */
    uint64_t seq;
    uint64_t csum;
    uint64_t new_off;         /* in the output, when copied */
    uint32_t raw_len, stored_len;
    uint16_t flags;
    uint8_t type;
    uint8_t input;            /* index into inputs[] */
    int8_t state;             /* 0 not copied, 1 copied, <0 verification error */
};

enum phase { C_IDLE, C_LIST, C_FILTER, C_COPY, C_FINISH, C_SWITCH };

struct blobstore_compact {
    struct blobstore *bs;
    struct event *timer;      /* looks for work every compact_check_ms */
    struct event *step;       /* continues FILTER and SWITCH on the reactor */
    bool stopped;
    enum phase phase;
    bool job_busy;
    void (*now_done)(void *arg);
    void *now_arg;
    struct blobstore_part *part;
    struct blobstore_seg *inputs[MAX_INPUTS];
    uint32_t n_in;
    struct crec *recs;
    uint32_t n_recs, cap_recs;
    uint32_t cursor;          /* FILTER / SWITCH position */
    uint32_t *batch;          /* indexes into recs for the COPY job */
    uint32_t n_batch;
    /* the output (set up by the bg side) */
    struct blobstore_seg *out;
    uint64_t out_size;
    uint64_t out_epoch;
    struct seg_idx_entry *out_ents;
    uint32_t n_out, cap_out;
    char out_path[BLOBSTORE_PATH_MAX];
    /* the job */
    struct taskq_job job;
    int status;
    bool sync_failed;
    unsigned fsyncs;
    uint8_t *buf, *raw;
    size_t buf_cap, raw_cap;
    void *dctx;
};

static void compact_finish_round(struct blobstore_compact *c, int err);

/* ---- background side ----------------------------------------------------- */

static int grow(void **p, uint32_t *cap, uint32_t n, size_t elem)
{
    if (n < *cap) return 0;
    uint32_t ncap = *cap ? *cap * 2 : 1024;
    void *np = realloc(*p, (size_t)ncap * elem);
    if (!np) return -ENOMEM;
    *p = np;
    *cap = ncap;
    return 0;
}

static int list_input(struct blobstore_compact *c, uint8_t in)
{
    struct blobstore *bs = c->bs;
    struct blobstore_seg *seg = c->inputs[in];
    char path[BLOBSTORE_PATH_MAX];
    blobstore_seg_path(bs, seg->part->id, seg->seq, "idx", path);
    int fd = seg->has_idx ? bs->fio->ops->open(bs->fio, path, O_RDONLY, 0) : -ENOENT;
    if (fd >= 0) {
        uint64_t size = 0;
        uint8_t *buf = NULL;
        struct seg_idx_hdr h;
        bool ok = bs->fio->ops->size(bs->fio, fd, &size) == 0 && size >= SEG_IDX_HDR_LEN &&
                  size <= SEG_IDX_HDR_LEN + (seg->w_size / SEG_REC_HDR_LEN) * SEG_IDX_ENTRY_LEN &&
                  (buf = malloc(size)) && fileio_pread_full(bs->fio, fd, buf, size, 0) == 0 &&
                  seg_idx_decode_hdr(buf, size, &h) == 0 && h.seg_seq == seg->seq &&
                  seg_idx_check_entries(&h, buf + SEG_IDX_HDR_LEN) == 0;
        bs->fio->ops->close(bs->fio, fd);
        for (uint32_t i = 0; ok && i < h.count; i++) {
            struct seg_idx_entry e;
            ok = seg_idx_entry_decode(buf + SEG_IDX_HDR_LEN + (size_t)i * SEG_IDX_ENTRY_LEN, &h,
                                      SEG_REC_MAX_DATA, &e) == 0 &&
                 grow((void **)&c->recs, &c->cap_recs, c->n_recs, sizeof(*c->recs)) == 0;
            if (ok)
                c->recs[c->n_recs++] = (struct crec){
                    .blob_id = e.blob_id, .off = e.off, .seq = e.seq, .csum = e.data_csum,
                    .raw_len = e.raw_len, .stored_len = e.stored_len, .flags = e.flags,
                    .type = e.type, .input = in};
        }
        free(buf);
        if (ok) return 0;
        log_warn(bs->tag, "%s unusable for compaction; scanning the segment", path);
    }
    return -EAGAIN; /* the caller scans */
}

struct fd_src {
    struct fileio *fio;
    int fd;
};

static ssize_t fd_src_pread(void *arg, void *buf, size_t len, uint64_t off)
{
    struct fd_src *s = arg;
    return s->fio->ops->pread(s->fio, s->fd, buf, len, off);
}

static int scan_input(struct blobstore_compact *c, uint8_t in)
{
    struct blobstore *bs = c->bs;
    struct blobstore_seg *seg = c->inputs[in];
    struct fd_src fs = {bs->fio, seg->fd};
    struct seg_src src = {.pread = fd_src_pread, .arg = &fs, .size = seg->w_size};
    struct seg_scan s = {
        .src = &src,
        .store_id = bs->store_id,
        .partition = seg->part->id,
        .max_data = SEG_REC_MAX_DATA,
        .start = SEG_HDR_LEN,
    };
    int rc = seg_scan_init(&s);
    if (rc < 0) return rc;
    struct seg_scan_rec r;
    while ((rc = seg_scan_next(&s, &r)) == 1) {
        rc = grow((void **)&c->recs, &c->cap_recs, c->n_recs, sizeof(*c->recs));
        if (rc < 0) break;
        c->recs[c->n_recs++] = (struct crec){
            .blob_id = r.h.blob_id, .off = r.off, .seq = r.h.seq, .csum = r.h.data_csum,
            .raw_len = r.h.raw_len, .stored_len = r.h.stored_len, .flags = r.h.flags,
            .type = r.h.type, .input = in};
    }
    seg_scan_fini(&s);
    return rc < 0 ? rc : 0;
}

static void list_run(struct taskq_job *job)
{
    struct blobstore_compact *c = bd_container_of(job, struct blobstore_compact, job);
    c->status = 0;
    for (uint8_t i = 0; i < c->n_in && c->status == 0; i++) {
        int rc = list_input(c, i);
        if (rc == -EAGAIN) rc = scan_input(c, i);
        c->status = rc;
    }
}

static int out_create(struct blobstore_compact *c)
{
    struct blobstore *bs = c->bs;
    struct blobstore_part *part = c->part;
    uint64_t seq = atomic_fetch_add(&part->next_seg_seq, 1);
    blobstore_seg_path(bs, part->id, seq, "cmp", c->out_path);
    int fd = bs->fio->ops->open(bs->fio, c->out_path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return fd;
    struct seg_hdr h = {bs->store_id, part->id, seq, c->out_epoch, util_wall_ms()};
    uint8_t hdr[SEG_HDR_LEN];
    seg_hdr_encode(hdr, &h);
    int rc = fileio_pwrite_full(bs->fio, fd, hdr, sizeof(hdr), 0);
    c->out = rc == 0 ? blobstore_seg_new(part, seq, fd) : NULL;
    if (!c->out) {
        bs->fio->ops->close(bs->fio, fd);
        bs->fio->ops->unlink(bs->fio, c->out_path);
        return rc < 0 ? rc : -ENOMEM;
    }
    c->out->w_max_epoch = c->out_epoch;
    c->out_size = SEG_HDR_LEN;
    return 0;
}

static int ensure(uint8_t **p, size_t *cap, size_t need)
{
    if (*cap >= need) return 0;
    uint8_t *n = realloc(*p, need);
    if (!n) return -ENOMEM;
    *p = n;
    *cap = need;
    return 0;
}

/* Copy one record into the output; 0, a negative verification error
 * stored in r->state (returns 0), or a negative write error (returned). */
static int copy_one(struct blobstore_compact *c, struct crec *r)
{
    struct blobstore *bs = c->bs;
    size_t meta_len = seg_rec_meta_len(r->stored_len);
    uint64_t total = seg_rec_total_len(r->stored_len);
    int rc = ensure(&c->buf, &c->buf_cap, total);
    if (rc < 0) return rc;
    if (r->type == SEG_REC_TOMBSTONE) {
        struct seg_rec_hdr h = {.type = SEG_REC_TOMBSTONE, .store_id = bs->store_id,
                                .blob_id = r->blob_id, .partition = c->part->id, .seq = r->seq};
        seg_rec_encode(c->buf, &h, NULL);
    } else {
        if (r->flags & SEG_REC_F_COMPRESSED) rc = ensure(&c->raw, &c->raw_cap, r->raw_len + 1);
        if (rc < 0) return rc;
        struct blobstore_read_expect x = {r->blob_id, r->seq, r->csum, c->part->id, r->raw_len,
                                          r->stored_len, r->flags, SEG_REC_PUT};
        rc = blobstore_read_verify(bs, c->inputs[r->input]->fd, r->off, &x, c->buf, c->raw,
                                   c->dctx);
        if (rc < 0) {
            r->state = (int8_t)(rc == -EIO ? -2 : -1);
            return 0;
        }
    }
    memset(c->buf + meta_len + r->stored_len, 0, total - meta_len - r->stored_len);
    if (!c->out && (rc = out_create(c)) < 0) return rc;
    rc = fileio_pwrite_full(bs->fio, c->out->fd, c->buf, total, c->out_size);
    if (rc < 0) return rc;
    rc = grow((void **)&c->out_ents, &c->cap_out, c->n_out, sizeof(*c->out_ents));
    if (rc < 0) return rc;
    c->out_ents[c->n_out++] = (struct seg_idx_entry){
        .blob_id = r->blob_id, .off = c->out_size, .seq = r->seq, .data_csum = r->csum,
        .raw_len = r->raw_len, .stored_len = r->stored_len, .type = r->type, .flags = r->flags};
    r->new_off = c->out_size;
    r->state = 1;
    c->out_size += total;
    return 0;
}

static void copy_run(struct taskq_job *job)
{
    struct blobstore_compact *c = bd_container_of(job, struct blobstore_compact, job);
    c->status = 0;
    for (uint32_t i = 0; i < c->n_batch && c->status == 0; i++)
        c->status = copy_one(c, &c->recs[c->batch[i]]);
}

static void finish_run(struct taskq_job *job)
{
    struct blobstore_compact *c = bd_container_of(job, struct blobstore_compact, job);
    struct blobstore *bs = c->bs;
    c->status = 0;
    if (!c->out) return;
    c->out->w_size = c->out_size;
    c->status = bs->fio->ops->fdatasync(bs->fio, c->out->fd);
    c->fsyncs++;
    if (c->status < 0) {
        c->sync_failed = true;
        return;
    }
    c->status = blobstore_seg_write_idx(bs, c->out, c->out_ents, c->n_out, c->out_size,
                                        c->out_epoch, &c->fsyncs);
    if (c->status < 0) {
        c->sync_failed = c->status == -EIO;
        return;
    }
    char path[BLOBSTORE_PATH_MAX], dir[BLOBSTORE_PATH_MAX];
    blobstore_seg_path(bs, c->part->id, c->out->seq, "seg", path);
    c->status = bs->fio->ops->rename(bs->fio, c->out_path, path);
    if (c->status < 0) return;
    blobstore_part_dir(bs, c->part->id, dir);
    c->status = bs->fio->ops->fsync_dir(bs->fio, dir);
    c->fsyncs++;
    c->sync_failed = c->status < 0;
}

static void abandon_run(struct taskq_job *job)
{
    struct blobstore_compact *c = bd_container_of(job, struct blobstore_compact, job);
    struct blobstore *bs = c->bs;
    char idx[BLOBSTORE_PATH_MAX];
    bs->fio->ops->close(bs->fio, c->out->fd);
    bs->fio->ops->unlink(bs->fio, c->out_path);
    blobstore_seg_path(bs, c->part->id, c->out->seq, "idx", idx);
    bs->fio->ops->unlink(bs->fio, idx);
}

/* ---- reactor side -------------------------------------------------------- */

static void job_done(struct reactor_work *work);

static void submit(struct blobstore_compact *c, void (*run)(struct taskq_job *))
{
    c->job.run = run;
    c->job.work.done = job_done;
    c->job_busy = true;
    taskq_submit(c->bs->bgq, &c->job);
}

static bool is_live_here(struct blobstore *bs, const struct blobstore_compact *c,
                         const struct crec *r, struct bsindex_ent **ep)
{
    struct bsindex_ent *e = bsindex_get(&bs->ix, r->blob_id);
    *ep = e;
    if (!e || e->seg != c->inputs[r->input] || e->off != r->off) return false;
    if (r->type == SEG_REC_PUT) return e->state == BSINDEX_LIVE;
    return e->state == BSINDEX_DEAD && !e->pending;
}

static void filter_step(struct blobstore_compact *c)
{
    struct blobstore *bs = c->bs;
    c->n_batch = 0;
    uint64_t bytes = 0;
    uint32_t seen = 0;
    while (c->cursor < c->n_recs && seen < FILTER_STEP && bytes < COPY_BYTES) {
        struct crec *r = &c->recs[c->cursor++];
        seen++;
        struct bsindex_ent *e;
        if (!is_live_here(bs, c, r, &e)) continue;
        c->batch[c->n_batch++] = (uint32_t)(r - c->recs);
        bytes += seg_rec_total_len(r->stored_len);
    }
    if (c->n_batch) {
        c->phase = C_COPY;
        submit(c, copy_run);
    } else if (c->cursor < c->n_recs) {
        event_active(c->step, EV_TIMEOUT, 0);
    } else {
        c->phase = C_FINISH;
        submit(c, finish_run);
    }
}

static void switch_step(struct blobstore_compact *c)
{
    struct blobstore *bs = c->bs;
    uint32_t end = BD_MIN(c->n_recs, c->cursor + SWITCH_STEP);
    for (; c->cursor < end; c->cursor++) {
        struct crec *r = &c->recs[c->cursor];
        struct bsindex_ent *e;
        if (r->state != 1 || !is_live_here(bs, c, r, &e)) continue;
        struct blobstore_seg *from = c->inputs[r->input];
        blobstore_seg_live_sub(bs, from, e->stored_len);
        e->seg = c->out;
        e->off = r->new_off;
        blobstore_seg_live_add(bs, c->out, e->stored_len);
    }
    if (c->cursor < c->n_recs) {
        event_active(c->step, EV_TIMEOUT, 0);
        return;
    }
    uint64_t freed = 0;
    uint32_t retired = 0;
    for (uint32_t i = 0; i < c->n_in; i++) {
        struct blobstore_seg *s = c->inputs[i];
        s->compacting = false;
        if (s->live_bytes) {
            log_info(bs->tag, "segment p%u/%016llx still referenced after compaction; kept",
                     s->part->id, (unsigned long long)s->seq);
            continue;
        }
        freed += s->file_len;
        retired++;
        blobstore_seg_retire(bs, s);
    }
    uint64_t out_len = c->out ? c->out->file_len : 0;
    bs->st.compactions += retired;
    bs->st.compact_reclaimed += freed > out_len ? freed - out_len : 0;
    metric_add(bs->m_compactions, retired);
    metric_add(bs->m_reclaimed, freed > out_len ? freed - out_len : 0);
    log_info(bs->tag, "compacted %u segments of partition %u into %s (%llu bytes freed)", retired,
             c->part->id, c->out ? "one" : "none",
             (unsigned long long)(freed > out_len ? freed - out_len : 0));
    c->out = NULL;
    compact_finish_round(c, 0);
}

/* Reactor: the record R failed verification while being copied. */
static void copy_failed(struct blobstore_compact *c, struct crec *r)
{
    struct blobstore *bs = c->bs;
    struct bsindex_ent *e;
    if (is_live_here(bs, c, r, &e) && r->type == SEG_REC_PUT)
        blobstore_mark_bad(bs, e, r->state == -2 ? -EIO : -BD_ECSUM, "compaction");
}

static void job_done(struct reactor_work *work)
{
    struct blobstore_compact *c = bd_container_of(work, struct blobstore_compact, job.work);
    struct blobstore *bs = c->bs;
    c->job_busy = false;
    bs->st.fsyncs += c->fsyncs;
    metric_add(bs->m_fsyncs, c->fsyncs);
    c->fsyncs = 0;
    if (c->phase == C_IDLE) { /* an abandoned output was removed */
        c->out->fd = -1;
        free(c->out->ents);
        free(c->out);
        c->out = NULL;
        compact_finish_round(c, 0);
        return;
    }
    if (c->sync_failed) blobstore_fail(bs, c->status, "fsync during compaction");
    if (c->status < 0 || c->stopped || bs->failed) {
        if (c->status < 0 && !c->sync_failed)
            log_warn(bs->tag, "compaction of partition %u abandoned: %s", c->part->id,
                     bd_strerror(c->status));
        compact_finish_round(c, c->status ? c->status : -ECANCELED);
        return;
    }
    switch (c->phase) {
    case C_LIST:
        c->batch = malloc((size_t)BD_MAX(c->n_recs, 1u) * sizeof(*c->batch));
        if (!c->batch) {
            compact_finish_round(c, -ENOMEM);
            return;
        }
        c->cursor = 0;
        c->phase = C_FILTER;
        filter_step(c);
        break;
    case C_COPY:
        for (uint32_t i = 0; i < c->n_batch; i++)
            if (c->recs[c->batch[i]].state < 0) copy_failed(c, &c->recs[c->batch[i]]);
        c->phase = C_FILTER;
        filter_step(c);
        break;
    case C_FINISH:
        if (c->out) {
            c->out->state = BLOBSTORE_SEG_SEALED;
            c->out->has_idx = true;
            c->out->dir_synced = true;
            c->out->file_len = c->out->durable_end = c->out_size;
            free(c->out->ents);
            c->out->ents = NULL;
            blobstore_seg_link(c->out);
            bs->used_bytes += c->out_size;
            bs->rec_bytes += c->out_size - SEG_HDR_LEN;
        }
        c->cursor = 0;
        c->phase = C_SWITCH;
        switch_step(c);
        break;
    default:
        if (BD_NEVER(true)) compact_finish_round(c, -EINVAL);
        break;
    }
}

static void on_step(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct blobstore_compact *c = arg;
    if (c->stopped && c->phase != C_SWITCH) {
        compact_finish_round(c, -ECANCELED);
        return;
    }
    if (c->phase == C_FILTER) filter_step(c);
    else if (c->phase == C_SWITCH) switch_step(c);
}

/* Pick the inputs of the next compaction; false if there is no work. */
static bool pick(struct blobstore_compact *c)
{
    struct blobstore *bs = c->bs;
    uint64_t pct = bs->o.compact_live_pct;
    for (uint32_t i = 0; i < bs->n_parts; i++) {
        struct blobstore_part *p = bs->parts[i];
        uint64_t live = 0;
        c->n_in = 0;
        for (struct blobstore_seg *s = p->segs; s && c->n_in < MAX_INPUTS; s = s->next) {
            uint64_t recs = s->file_len - SEG_HDR_LEN;
            if (s->state != BLOBSTORE_SEG_SEALED || s->compacting || recs == 0) continue;
            if (s->live_bytes * 100 >= pct * recs) continue;
            if (c->n_in && live + s->live_bytes > bs->o.segment_bytes - SEG_HDR_LEN) break;
            live += s->live_bytes;
            c->inputs[c->n_in++] = s;
        }
        if (c->n_in) {
            c->part = p;
            return true;
        }
    }
    return false;
}

static void start_round(struct blobstore_compact *c)
{
    struct blobstore *bs = c->bs;
    if (c->phase != C_IDLE || c->stopped || bs->failed || bs->closing) return;
    if (!bs->o.compact_live_pct || !pick(c)) {
        if (c->now_done) {
            void (*done)(void *) = c->now_done;
            c->now_done = NULL;
            done(c->now_arg);
        }
        return;
    }
    for (uint32_t i = 0; i < c->n_in; i++) {
        c->inputs[i]->compacting = true;
        blobstore_seg_ref(c->inputs[i]);
        if (c->inputs[i]->w_max_epoch > c->out_epoch) c->out_epoch = c->inputs[i]->w_max_epoch;
    }
    if (c->part->epoch > c->out_epoch) c->out_epoch = c->part->epoch;
    c->n_recs = c->n_out = 0;
    c->out = NULL;
    c->phase = C_LIST;
    submit(c, list_run);
}

/* End a round (ERR 0: done, else abandoned); release the inputs and look
 * for more work if asked to. */
static void compact_finish_round(struct blobstore_compact *c, int err)
{
    struct blobstore *bs = c->bs;
    if (err && c->out) {
        /* Remove the output (not yet linked: nothing references it). */
        c->phase = C_IDLE;
        submit(c, abandon_run);
        return;
    }
    for (uint32_t i = 0; i < c->n_in; i++) {
        c->inputs[i]->compacting = false;
        blobstore_seg_unref(bs, c->inputs[i]);
    }
    c->n_in = 0;
    c->phase = C_IDLE;
    c->out_epoch = 0;
    free(c->batch);
    c->batch = NULL;
    free(c->out_ents);
    c->out_ents = NULL;
    c->n_out = c->cap_out = 0;
    if (c->stopped) {
        blobstore_check_closed(bs);
        if (c->now_done) {
            void (*done)(void *) = c->now_done;
            c->now_done = NULL;
            done(c->now_arg);
        }
        return;
    }
    if (c->now_done) start_round(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    start_round(arg);
}

int blobstore_compact_new(struct blobstore *bs)
{
    struct blobstore_compact *c = calloc(1, sizeof(*c));
    if (!c) return -ENOMEM;
    c->bs = bs;
    bs->compact = c;
    c->dctx = ZSTD_createDCtx();
    c->timer = event_new(reactor_base(bs->rx), -1, EV_PERSIST, on_timer, c);
    c->step = event_new(reactor_base(bs->rx), -1, 0, on_step, c);
    if (!c->dctx || !c->timer || !c->step) return -ENOMEM;
    struct timeval tv = {bs->o.compact_check_ms / 1000, (bs->o.compact_check_ms % 1000) * 1000};
    if (bs->o.compact_live_pct) evtimer_add(c->timer, &tv);
    return 0;
}

void blobstore_compact_stop(struct blobstore *bs)
{
    struct blobstore_compact *c = bs->compact;
    if (!c) return;
    c->stopped = true;
    if (c->timer) evtimer_del(c->timer);
}

bool blobstore_compact_idle(const struct blobstore *bs)
{
    const struct blobstore_compact *c = bs->compact;
    return !c || (c->phase == C_IDLE && !c->job_busy);
}

void blobstore_compact_free(struct blobstore *bs)
{
    struct blobstore_compact *c = bs->compact;
    if (!c) return;
    if (c->timer) event_free(c->timer);
    if (c->step) event_free(c->step);
    ZSTD_freeDCtx(c->dctx);
    free(c->recs);
    free(c->batch);
    free(c->out_ents);
    free(c->buf);
    free(c->raw);
    free(c);
    bs->compact = NULL;
}

void blobstore_compact_now(struct blobstore *bs, void (*done)(void *arg), void *arg)
{
    struct blobstore_compact *c = bs->compact;
    if (c->stopped || c->now_done) {
        done(arg);
        return;
    }
    c->now_done = done;
    c->now_arg = arg;
    start_round(c);
}
