/* blobstore_read.c: reading blobs back, and the record verification every reader
 * shares (GET, the scrubber, compaction).
 *
 * A GET reads on one of the read queues (never on the reactor: a cold read
 * is a disk seek) into one buffer it allocates, verifies, and hands the
 * buffer to the caller, who sends it without a copy:
 *   - whole blob, stored plain: one pread of header + table + data; the
 *     blob's XXH3-64 is checked against the header (which is checked
 *     against the index);
 *   - a range of a plain blob: the header and table, then only the 4 KiB
 *     chunks covering the range, each checked against its table entry; the
 *     reply's XXH3-64 is computed over the returned bytes;
 *   - compressed: the whole stored frame, chunk-checked, decompressed into
 *     a buffer of exactly raw_len bytes (a frame claiming another size is
 *     refused before decompressing), then the blob's XXH3-64 is checked.
 *
 * A record that fails any check is reported -BD_ECSUM, never returned, and
 * marked bad (blobstore_mark_bad), which removes it from the served index and
 * records it durably in the bad list.  A read error (-EIO) marks it bad as
 * well: a sector that cannot be read is lost data the proxy must repair. */
#include "store/blob/blobstore_int.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* META holds the record's header and table; does it describe X? */
static int check_meta(struct blobstore *bs, const uint8_t *meta,
                      const struct blobstore_read_expect *x)
{
    struct seg_rec_hdr h;
    if (seg_rec_decode_hdr(meta, SEG_REC_MAX_DATA, &h) < 0) return -BD_ECSUM;
    if (h.store_id != bs->store_id || h.type != x->type || h.blob_id != x->blob_id ||
        h.partition != x->partition || h.seq != x->seq || h.stored_len != x->stored_len ||
        h.flags != x->flags)
        return -BD_ECSUM;
    if (x->type == SEG_REC_PUT && (h.raw_len != x->raw_len || h.data_csum != x->csum))
        return -BD_ECSUM;
    return seg_rec_check_meta(meta, &h) < 0 ? -BD_ECSUM : 0;
}

static int pread_rec(struct blobstore *bs, int fd, void *buf, size_t len, uint64_t off)
{
    int rc = fileio_pread_full(bs->fio, fd, buf, len, off);
    return rc == -ENODATA ? -BD_ECSUM : rc; /* the file ends early: the record is damaged */
}

int blobstore_read_decompress(void *dctx, uint8_t *dst, uint32_t raw_len, const uint8_t *src,
                              uint32_t stored_len)
{
    unsigned long long fcs = ZSTD_getFrameContentSize(src, stored_len);
    if (fcs == ZSTD_CONTENTSIZE_ERROR || fcs == ZSTD_CONTENTSIZE_UNKNOWN || fcs != raw_len)
        return -BD_ECSUM;
    size_t fsz = ZSTD_findFrameCompressedSize(src, stored_len);
    if (ZSTD_isError(fsz) || fsz != stored_len) return -BD_ECSUM;
    size_t n = ZSTD_decompressDCtx(dctx, dst, raw_len, src, stored_len);
    if (ZSTD_isError(n) || n != raw_len) return -BD_ECSUM;
    return 0;
}

int blobstore_read_verify(struct blobstore *bs, int fd, uint64_t off,
                          const struct blobstore_read_expect *x, uint8_t *buf, uint8_t *raw,
                          void *dctx)
{
    size_t meta_len = seg_rec_meta_len(x->stored_len);
    int rc = pread_rec(bs, fd, buf, meta_len + x->stored_len, off);
    if (rc < 0) return rc;
    rc = check_meta(bs, buf, x);
    if (rc < 0) return rc;
    struct seg_rec_hdr h = {.stored_len = x->stored_len};
    const uint8_t *data = buf + meta_len;
    if (seg_rec_check_chunks(buf, &h, 0, data, x->stored_len) < 0) return -BD_ECSUM;
    if (x->type != SEG_REC_PUT) return 0;
    if (x->flags & SEG_REC_F_COMPRESSED) {
        rc = blobstore_read_decompress(dctx, raw, x->raw_len, data, x->stored_len);
        if (rc < 0) return rc;
        data = raw;
    }
    return util_xxh3(data, x->raw_len) == x->csum ? 0 : -BD_ECSUM;
}

/* ---- GET ----------------------------------------------------------------- */

static int read_whole(struct blobstore *bs, struct blobstore_get *g,
                      const struct blobstore_read_expect *x)
{
    size_t meta_len = seg_rec_meta_len(g->stored_len);
    uint8_t *buf = malloc(meta_len + g->stored_len + 1);
    if (!buf) return -ENOMEM;
    int rc = pread_rec(bs, g->seg->fd, buf, meta_len + g->stored_len, g->rec_off);
    if (rc == 0) rc = check_meta(bs, buf, x);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    if (util_xxh3(buf + meta_len, g->raw_len) != g->rec_csum) {
        free(buf);
        return -BD_ECSUM;
    }
    g->buf = buf;
    g->data = buf + meta_len;
    g->csum = g->rec_csum;
    return 0;
}

static int read_range(struct blobstore *bs, struct blobstore_get *g,
                      const struct blobstore_read_expect *x)
{
    size_t meta_len = seg_rec_meta_len(g->stored_len);
    uint32_t c0 = g->off / SEG_REC_CHUNK;
    uint64_t span_end =
        BD_MIN(((uint64_t)g->off + g->data_len + SEG_REC_CHUNK - 1) / SEG_REC_CHUNK * SEG_REC_CHUNK,
               (uint64_t)g->raw_len);
    size_t span = (size_t)(span_end - (uint64_t)c0 * SEG_REC_CHUNK);
    uint8_t *buf = malloc(meta_len + span);
    if (!buf) return -ENOMEM;
    int rc = pread_rec(bs, g->seg->fd, buf, meta_len, g->rec_off);
    if (rc == 0) rc = check_meta(bs, buf, x);
    if (rc == 0)
        rc = pread_rec(bs, g->seg->fd, buf + meta_len, span,
                       g->rec_off + meta_len + (uint64_t)c0 * SEG_REC_CHUNK);
    struct seg_rec_hdr h = {.stored_len = g->stored_len};
    if (rc == 0 && seg_rec_check_chunks(buf, &h, c0, buf + meta_len, span) < 0) rc = -BD_ECSUM;
    if (rc < 0) {
        free(buf);
        return rc;
    }
    g->buf = buf;
    g->data = buf + meta_len + (g->off - (size_t)c0 * SEG_REC_CHUNK);
    g->csum = util_xxh3(g->data, g->data_len);
    return 0;
}

static int read_compressed(struct blobstore *bs, struct blobstore_get *g,
                           const struct blobstore_read_expect *x)
{
    size_t meta_len = seg_rec_meta_len(g->stored_len);
    uint8_t *buf = malloc(meta_len + g->stored_len);
    uint8_t *raw = malloc(g->raw_len + 1);
    int rc = buf && raw ? 0 : -ENOMEM;
    if (rc == 0) rc = pread_rec(bs, g->seg->fd, buf, meta_len + g->stored_len, g->rec_off);
    if (rc == 0) rc = check_meta(bs, buf, x);
    struct seg_rec_hdr h = {.stored_len = g->stored_len};
    if (rc == 0 && seg_rec_check_chunks(buf, &h, 0, buf + meta_len, g->stored_len) < 0)
        rc = -BD_ECSUM;
    if (rc == 0)
        rc = blobstore_read_decompress(bs->rq_dctx[g->q], raw, g->raw_len, buf + meta_len,
                                       g->stored_len);
    if (rc == 0 && util_xxh3(raw, g->raw_len) != g->rec_csum) rc = -BD_ECSUM;
    free(buf);
    if (rc < 0) {
        free(raw);
        return rc;
    }
    g->buf = raw;
    g->data = raw + g->off;
    g->csum = (g->off == 0 && g->data_len == g->raw_len) ? g->rec_csum
                                                         : util_xxh3(g->data, g->data_len);
    return 0;
}

static void read_run(struct taskq_job *job)
{
    struct blobstore_get *g = bd_container_of(job, struct blobstore_get, job);
    struct blobstore *bs = g->bs;
    struct blobstore_read_expect x = {
        .blob_id = g->blob_id,
        .seq = g->rec_seq,
        .csum = g->rec_csum,
        .partition = g->partition,
        .raw_len = g->raw_len,
        .stored_len = g->stored_len,
        .flags = g->rec_flags,
        .type = SEG_REC_PUT,
    };
    if (g->rec_flags & SEG_REC_F_COMPRESSED)
        g->status = read_compressed(bs, g, &x);
    else if (g->off == 0 && g->data_len == g->raw_len)
        g->status = read_whole(bs, g, &x);
    else
        g->status = read_range(bs, g, &x);
}

static void read_done(struct reactor_work *work)
{
    struct blobstore_get *g = bd_container_of(work, struct blobstore_get, job.work);
    struct blobstore *bs = g->bs;
    int rc = g->status;
    if (rc < 0 && rc != -ENOMEM) {
        struct bsindex_ent *e = bsindex_get(&bs->ix, g->blob_id);
        if (e && e->state == BSINDEX_LIVE && e->seg == g->seg && e->off == g->rec_off)
            blobstore_mark_bad(bs, e, rc, "read");
        if (rc != -EIO) rc = -BD_ECSUM;
    }
    if (rc == 0) bs->st.gets++;
    blobstore_seg_unref(bs, g->seg);
    g->seg = NULL;
    g->cb(g, rc);
    blobstore_job_done(bs);
}

int blobstore_get(struct blobstore *bs, struct blobstore_get *g)
{
    if (bs->closing) return -ESHUTDOWN;
    struct bsindex_ent *e = bsindex_get(&bs->ix, g->blob_id);
    if (!e || e->partition != g->partition) return -ENOENT;
    if (e->state == BSINDEX_BAD) return -BD_ECSUM;
    if (e->state != BSINDEX_LIVE || !e->seg) return -ENOENT;
    uint32_t len = g->len;
    if (g->off == 0 && g->len == 0) len = e->raw_len;
    else if (g->len == 0 || (uint64_t)g->off + g->len > e->raw_len) return -ERANGE;
    g->buf = NULL;
    g->data = NULL;
    g->data_len = len;
    g->blob_len = e->raw_len;
    g->csum = 0;
    g->bs = bs;
    g->seg = e->seg;
    g->rec_off = e->off;
    g->rec_seq = e->seq;
    g->rec_csum = e->csum;
    g->raw_len = e->raw_len;
    g->stored_len = e->stored_len;
    g->rec_flags = e->flags;
    g->status = 0;
    g->q = bs->next_rq++ % bs->n_rq;
    g->job.run = read_run;
    g->job.work.done = read_done;
    blobstore_seg_ref(e->seg);
    bs->jobs++;
    taskq_submit(bs->rq[g->q], &g->job);
    return 0;
}

/* ---- metadata ------------------------------------------------------------ */

int blobstore_stat(struct blobstore *bs, uint64_t blob_id, struct blobstore_stat *out)
{
    struct bsindex_ent *e = bsindex_get(&bs->ix, blob_id);
    if (!e) return -ENOENT;
    if (e->state == BSINDEX_BAD) return -BD_ECSUM;
    if (e->state != BSINDEX_LIVE) return -ENOENT;
    out->partition = e->partition;
    out->flags = (e->flags & SEG_REC_F_COMPRESSIBLE) ? BLOBSTORE_PUT_COMPRESSIBLE : 0;
    if (e->flags & SEG_REC_F_COMPRESSED) out->flags |= BLOBSTORE_STAT_COMPRESSED;
    out->len = e->raw_len;
    out->stored_len = e->stored_len;
    out->csum = e->csum;
    return 0;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Drop ids that are no longer live and sort the rest. */
static void list_tidy(struct blobstore *bs, struct blobstore_part *part)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < part->n_ids; i++) {
        struct bsindex_ent *e = bsindex_get(&bs->ix, part->ids[i]);
        if (!e) continue;
        if (e->state != BSINDEX_LIVE) {
            e->listed = 0;
            continue;
        }
        part->ids[n++] = part->ids[i];
    }
    part->n_ids = n;
    qsort(part->ids, n, sizeof(*part->ids), u64_cmp);
    part->ids_sorted = true;
}

uint32_t blobstore_list(struct blobstore *bs, uint32_t partition, uint64_t cursor, uint32_t max,
                        struct blobstore_entry *out, uint64_t *next)
{
    *next = 0;
    struct blobstore_part *part = blobstore_part_get(bs, partition, false);
    if (!part || max == 0) return 0;
    if (!part->ids_sorted) list_tidy(bs, part);
    uint32_t lo = 0, hi = part->n_ids;
    while (lo < hi) { /* first id > cursor */
        uint32_t mid = lo + (hi - lo) / 2;
        if (part->ids[mid] <= cursor) lo = mid + 1;
        else hi = mid;
    }
    uint32_t n = 0, i = lo;
    for (; i < part->n_ids && n < max; i++) {
        struct bsindex_ent *e = bsindex_get(&bs->ix, part->ids[i]);
        if (!e || e->state != BSINDEX_LIVE || e->partition != partition) continue;
        out[n].blob_id = e->blob_id;
        out[n].len = e->raw_len;
        out[n].csum = e->csum;
        n++;
    }
    if (i < part->n_ids && n > 0) *next = out[n - 1].blob_id;
    return n;
}

uint32_t blobstore_bad_list(struct blobstore *bs, struct blobstore_bad *out, uint32_t max)
{
    uint32_t n = BD_MIN(max, bs->n_bad);
    for (uint32_t i = 0; i < n; i++) {
        out[i].blob_id = bs->bad[i].blob_id;
        out[i].partition = bs->bad[i].partition;
    }
    return n;
}
