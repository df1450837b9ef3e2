/* blobstore_scrub.c: the background scrubber (DESIGN.md §6, CONTRACT.md C14).
 *
 * A reactor timer fires every scrub_tick_ms and, unless the previous job
 * is still running, hands the background queue one job: verify the
 * records of one segment from the cursor on, up to rate * tick bytes.  The
 * rate is therefore an upper bound and the scrubber never competes with
 * itself.  The cursor walks partitions by id and segments by sequence
 * number; when it runs off the last segment a full pass is counted.
 *
 * What a job verifies, per record: header and chunk-table checksum, the
 * header against what was written, every chunk, and the blob's XXH3-64
 * (decompressing when stored compressed) -- the same checks as a GET.
 *   - A sealed segment with an index file is checked against that file:
 *     each record the writer put there must be at its offset and verify,
 *     so a record whose header was destroyed is found too.  The index
 *     entries of the segment being scrubbed are cached on the job side.
 *   - Other segments (the active one, up to its durable end) are scanned:
 *     every record whose header validates is verified.
 * A record that fails is reported to the reactor, which marks its entry
 * bad only if the index still points at that very record (it may have
 * been healed, deleted or compacted meanwhile). */
#include "store/blob/blobstore_int.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"

#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define SCRUB_MAX_BAD 64
#define SCRUB_NOW_BUDGET (64u << 20)

struct scrub_bad {
    uint64_t off;
    uint64_t blob_id;
    int err;
};

struct blobstore_scrub {
    struct blobstore *bs;
    struct event *timer;
    bool stopped;
    bool busy;                /* the job below is queued or running */
    /* cursor (reactor) */
    uint32_t part_id;
    uint64_t seg_seq;         /* the segment being scrubbed, or the next one */
    uint64_t off;             /* next offset in it */
    uint64_t pass_bytes;
    bool reset;               /* start a new pass at the next tick */
    void (*now_done)(void *arg);
    void *now_arg;
    /* the job (fields up to results set by the reactor) */
    struct taskq_job job;
    struct blobstore_seg *seg;
    uint64_t from, end, budget;
    bool use_idx;
    /* results */
    uint64_t next_off;
    uint64_t bytes;
    struct scrub_bad bad[SCRUB_MAX_BAD];
    uint32_t n_bad;
    /* background thread only */
    struct seg_idx_entry *ents;   /* cached index entries of one segment */
    uint32_t n_ents;
    uint32_t ents_part;
    uint64_t ents_seq;        /* 0: nothing cached */
    uint8_t *buf, *raw;
    size_t buf_cap, raw_cap;
    void *dctx;
};

/* ---- background side ----------------------------------------------------- */

static int ensure(uint8_t **p, size_t *cap, size_t need)
{
    if (*cap >= need) return 0;
    uint8_t *n = realloc(*p, need);
    if (!n) return -ENOMEM;
    *p = n;
    *cap = need;
    return 0;
}

static void verify_one(struct blobstore_scrub *sc, const struct blobstore_read_expect *x,
                       uint64_t off)
{
    struct blobstore *bs = sc->bs;
    int rc = ensure(&sc->buf, &sc->buf_cap, seg_rec_meta_len(x->stored_len) + x->stored_len + 1);
    if (rc == 0 && (x->flags & SEG_REC_F_COMPRESSED))
        rc = ensure(&sc->raw, &sc->raw_cap, x->raw_len + 1);
    if (rc == 0) rc = blobstore_read_verify(bs, sc->seg->fd, off, x, sc->buf, sc->raw, sc->dctx);
    sc->bytes += seg_rec_total_len(x->stored_len);
    if (rc == 0 || rc == -ENOMEM || sc->n_bad == SCRUB_MAX_BAD) return;
    sc->bad[sc->n_bad++] = (struct scrub_bad){off, x->blob_id, rc};
}

static bool load_ents(struct blobstore_scrub *sc)
{
    struct blobstore *bs = sc->bs;
    struct blobstore_seg *seg = sc->seg;
    if (sc->ents_seq == seg->seq && sc->ents_part == seg->part->id) return true;
    free(sc->ents);
    sc->ents = NULL;
    sc->n_ents = 0;
    sc->ents_seq = 0;
    char path[BLOBSTORE_PATH_MAX];
    blobstore_seg_path(bs, seg->part->id, seg->seq, "idx", path);
    int fd = bs->fio->ops->open(bs->fio, path, O_RDONLY, 0);
    if (fd < 0) return false;
    uint64_t size = 0;
    uint8_t *buf = NULL;
    struct seg_idx_hdr h;
    bool ok = bs->fio->ops->size(bs->fio, fd, &size) == 0 && size >= SEG_IDX_HDR_LEN &&
              size <= SEG_IDX_HDR_LEN + (seg->w_size / SEG_REC_HDR_LEN) * SEG_IDX_ENTRY_LEN &&
              (buf = malloc(size)) && fileio_pread_full(bs->fio, fd, buf, size, 0) == 0 &&
              seg_idx_decode_hdr(buf, size, &h) == 0 && h.seg_seq == seg->seq &&
              seg_idx_check_entries(&h, buf + SEG_IDX_HDR_LEN) == 0;
    bs->fio->ops->close(bs->fio, fd);
    if (ok && h.count) ok = (sc->ents = malloc((size_t)h.count * sizeof(*sc->ents))) != NULL;
    for (uint32_t i = 0; ok && i < h.count; i++)
        ok = seg_idx_entry_decode(buf + SEG_IDX_HDR_LEN + (size_t)i * SEG_IDX_ENTRY_LEN, &h,
                                  SEG_REC_MAX_DATA, &sc->ents[i]) == 0;
    free(buf);
    if (!ok) {
        free(sc->ents);
        sc->ents = NULL;
        return false;
    }
    sc->n_ents = h.count;
    sc->ents_seq = seg->seq;
    sc->ents_part = seg->part->id;
    return true;
}

static void scrub_by_idx(struct blobstore_scrub *sc)
{
    uint32_t lo = 0, hi = sc->n_ents;
    while (lo < hi) { /* first entry at or after `from` */
        uint32_t mid = lo + (hi - lo) / 2;
        if (sc->ents[mid].off < sc->from) lo = mid + 1;
        else hi = mid;
    }
    sc->next_off = sc->end;
    for (uint32_t i = lo; i < sc->n_ents; i++) {
        const struct seg_idx_entry *e = &sc->ents[i];
        if (sc->bytes >= sc->budget) {
            sc->next_off = e->off;
            return;
        }
        struct blobstore_read_expect x = {
            .blob_id = e->blob_id,
            .seq = e->seq,
            .csum = e->data_csum,
            .partition = sc->seg->part->id,
            .raw_len = e->raw_len,
            .stored_len = e->stored_len,
            .flags = e->flags,
            .type = e->type,
        };
        verify_one(sc, &x, e->off);
    }
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

static void scrub_by_scan(struct blobstore_scrub *sc)
{
    struct blobstore *bs = sc->bs;
    struct fd_src fs = {bs->fio, sc->seg->fd};
    struct seg_src src = {.pread = fd_src_pread, .arg = &fs, .size = sc->end};
    struct seg_scan s = {
        .src = &src,
        .store_id = bs->store_id,
        .partition = sc->seg->part->id,
        .max_data = SEG_REC_MAX_DATA,
        .start = sc->from,
    };
    sc->next_off = sc->end;
    if (seg_scan_init(&s) < 0) {
        sc->next_off = sc->from; /* out of memory: try again next tick */
        return;
    }
    struct seg_scan_rec r;
    while (sc->bytes < sc->budget && seg_scan_next(&s, &r) == 1) {
        struct blobstore_read_expect x = {
            .blob_id = r.h.blob_id,
            .seq = r.h.seq,
            .csum = r.h.data_csum,
            .partition = r.h.partition,
            .raw_len = r.h.raw_len,
            .stored_len = r.h.stored_len,
            .flags = r.h.flags,
            .type = r.h.type,
        };
        verify_one(sc, &x, r.off);
        sc->next_off = r.off + r.len;
    }
    if (sc->bytes < sc->budget) sc->next_off = sc->end;
    seg_scan_fini(&s);
}

static void scrub_run(struct taskq_job *job)
{
    struct blobstore_scrub *sc = bd_container_of(job, struct blobstore_scrub, job);
    sc->bytes = 0;
    sc->n_bad = 0;
    if (sc->use_idx && load_ents(sc)) scrub_by_idx(sc);
    else scrub_by_scan(sc);
}

/* ---- reactor side -------------------------------------------------------- */

static void pass_complete(struct blobstore_scrub *sc)
{
    struct blobstore *bs = sc->bs;
    if (sc->pass_bytes || sc->now_done) { /* an empty store has nothing to pass over */
        bs->st.scrub_passes++;
        bs->st.scrub_last_pass_ms = util_wall_ms();
        metric_inc(bs->m_scrub_passes);
        log_debug(bs->tag, "scrub pass %llu complete: %llu bytes verified, %u bad blobs known",
                  (unsigned long long)bs->st.scrub_passes, (unsigned long long)sc->pass_bytes,
                  bs->n_bad);
    }
    sc->part_id = 0;
    sc->seg_seq = 0;
    sc->off = 0;
    sc->pass_bytes = 0;
    if (sc->now_done) {
        void (*done)(void *) = sc->now_done;
        sc->now_done = NULL;
        done(sc->now_arg);
    }
}

/* The next segment to scrub at or after the cursor, with its scannable end;
 * NULL at the end of the pass. */
static struct blobstore_seg *next_target(struct blobstore_scrub *sc, uint64_t *end)
{
    struct blobstore *bs = sc->bs;
    for (uint32_t i = 0; i < bs->n_parts; i++) {
        struct blobstore_part *p = bs->parts[i];
        if (p->id < sc->part_id) continue;
        if (p->id > sc->part_id) {
            sc->part_id = p->id;
            sc->seg_seq = 0;
            sc->off = 0;
        }
        for (struct blobstore_seg *s = p->segs; s; s = s->next) {
            if (s->seq < sc->seg_seq) continue;
            if (s->seq > sc->seg_seq) {
                sc->seg_seq = s->seq;
                sc->off = 0;
            }
            *end = s->durable_end;
            if (sc->off < *end && *end > SEG_HDR_LEN) return s;
            sc->seg_seq = s->seq + 1;
            sc->off = 0;
        }
        sc->part_id = p->id + 1;
        sc->seg_seq = 0;
        if (p->id == UINT32_MAX) break;
    }
    return NULL;
}

static void scrub_done(struct reactor_work *work)
{
    struct blobstore_scrub *sc = bd_container_of(work, struct blobstore_scrub, job.work);
    struct blobstore *bs = sc->bs;
    struct blobstore_seg *seg = sc->seg;
    sc->busy = false;
    bs->st.scrub_bytes += sc->bytes;
    sc->pass_bytes += sc->bytes;
    metric_add(bs->m_scrub_bytes, sc->bytes);
    for (uint32_t i = 0; i < sc->n_bad; i++) {
        struct bsindex_ent *e = bsindex_get(&bs->ix, sc->bad[i].blob_id);
        if (e && e->state == BSINDEX_LIVE && e->seg == seg && e->off == sc->bad[i].off)
            blobstore_mark_bad(bs, e, sc->bad[i].err, "scrub");
    }
    if (sc->seg_seq == seg->seq && sc->part_id == seg->part->id) sc->off = sc->next_off;
    uint64_t total = bs->rec_bytes ? bs->rec_bytes : 1;
    bs->st.scrub_progress = BD_MIN(1.0, (double)sc->pass_bytes / (double)total);
    sc->seg = NULL;
    blobstore_seg_unref(bs, seg);
    if (sc->stopped) {
        blobstore_check_closed(bs);
        return;
    }
    if (sc->now_done || sc->reset) event_active(sc->timer, EV_TIMEOUT, 0);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct blobstore_scrub *sc = arg;
    struct blobstore *bs = sc->bs;
    if (sc->stopped || sc->busy) return;
    if (sc->reset) {
        sc->reset = false;
        sc->part_id = 0;
        sc->seg_seq = 0;
        sc->off = 0;
        sc->pass_bytes = 0;
    }
    if (!bs->o.scrub_bytes_per_sec && !sc->now_done) return;
    uint64_t budget = sc->now_done ? SCRUB_NOW_BUDGET
                                   : bs->o.scrub_bytes_per_sec * bs->o.scrub_tick_ms / 1000;
    uint64_t end = 0;
    struct blobstore_seg *seg = next_target(sc, &end);
    if (!seg) {
        pass_complete(sc);
        if (sc->now_done) event_active(sc->timer, EV_TIMEOUT, 0);
        return;
    }
    sc->seg = seg;
    blobstore_seg_ref(seg);
    sc->from = BD_MAX(sc->off, (uint64_t)SEG_HDR_LEN);
    sc->end = end;
    sc->budget = BD_MAX(budget, (uint64_t)SEG_REC_CHUNK);
    sc->use_idx = seg->has_idx && seg->state == BLOBSTORE_SEG_SEALED;
    sc->busy = true;
    taskq_submit(bs->bgq, &sc->job);
}

int blobstore_scrub_new(struct blobstore *bs)
{
    struct blobstore_scrub *sc = calloc(1, sizeof(*sc));
    if (!sc) return -ENOMEM;
    sc->bs = bs;
    sc->job.run = scrub_run;
    sc->job.work.done = scrub_done;
    sc->dctx = ZSTD_createDCtx();
    sc->timer = event_new(reactor_base(bs->rx), -1, EV_PERSIST, on_tick, sc);
    bs->scrub = sc;
    if (!sc->dctx || !sc->timer) return -ENOMEM;
    struct timeval tv = {bs->o.scrub_tick_ms / 1000, (bs->o.scrub_tick_ms % 1000) * 1000};
    if (bs->o.scrub_bytes_per_sec) evtimer_add(sc->timer, &tv);
    return 0;
}

void blobstore_scrub_stop(struct blobstore *bs)
{
    struct blobstore_scrub *sc = bs->scrub;
    if (!sc) return;
    sc->stopped = true;
    if (sc->timer) evtimer_del(sc->timer);
}

bool blobstore_scrub_idle(const struct blobstore *bs)
{
    return !bs->scrub || !bs->scrub->busy;
}

void blobstore_scrub_free(struct blobstore *bs)
{
    struct blobstore_scrub *sc = bs->scrub;
    if (!sc) return;
    if (sc->timer) event_free(sc->timer);
    ZSTD_freeDCtx(sc->dctx);
    free(sc->ents);
    free(sc->buf);
    free(sc->raw);
    free(sc);
    bs->scrub = NULL;
}

void blobstore_scrub_now(struct blobstore *bs, void (*done)(void *arg), void *arg)
{
    struct blobstore_scrub *sc = bs->scrub;
    if (sc->stopped || sc->now_done) {
        done(arg);
        return;
    }
    sc->now_done = done;
    sc->now_arg = arg;
    sc->reset = true;
    if (!sc->busy) event_active(sc->timer, EV_TIMEOUT, 0);
}
