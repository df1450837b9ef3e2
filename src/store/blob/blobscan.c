/* blobscan.c: recovery of the blob store at open, the store's identity
 * file, and the durable list of bad blobs.
 *
 * Recovery (blobscan_recover), in order:
 *   1. store.meta: the store id (random, in every record) and the ident
 *      (cluster id) the directory belongs to; created on first use, and a
 *      directory with partitions but no store.meta is refused.
 *   2. bad.list: blobs found bad before (see "bad list" below).
 *   3. Every partition p<N>, every segment <SEQ>.seg in ascending order:
 *      - with a valid <SEQ>.idx (written only after the segment was sealed
 *        and fdatasync'ed; its header must name this store, partition,
 *        segment and the segment's exact length, its entries must match
 *        their checksum, and the first and last records it lists must be
 *        at their offsets), the index file is the record list;
 *      - otherwise the segment is scanned, every record's data verified
 *        (these segments may hold unsynced bytes from before a crash),
 *        and cut after its last good record.  A record whose header is
 *        good but whose data is not is kept out of the index: before the
 *        cut it is marked bad (it may have been acked: report it), after
 *        the cut it was a torn, never-acked write and vanishes.
 *      Leftover *.tmp and *.cmp files (an index file or a compaction output
 *      that never got renamed) are removed.
 *   4. Records are applied in order: a tombstone always wins; of several
 *      copies of a blob (a heal, or a compaction that ended between rename
 *      and unlink) the highest (record seq, segment seq) wins.
 *   5. The bad list is applied, live bytes are counted, and every segment
 *      without an index file except the newest of its partition (which
 *      stays the active one) is sealed now.
 *
 * Bad list (bad.list, rewritten atomically through the fio when it
 * changes; its layout is in segment.h).  It names the record that was
 * bad, so a later good copy (a heal) wins over it at restart, and it keeps
 * the checksum so a blob whose only copy was compacted away stays
 * reported (and healable) as bad. */
#include "store/blob/blobstore_int.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define META_FILE "store.meta"
#define BAD_FILE "bad.list"

/* ---- reading small files through the fio --------------------------------- */

/* Read PATH (at most MAX bytes) into a buffer returned owned.  0, -ENOENT,
 * -EFBIG, or -errno. */
static int read_small(struct blobstore *bs, const char *path, size_t max, uint8_t **out,
                      size_t *lenp)
{
    struct fileio *fio = bs->fio;
    int fd = fio->ops->open(fio, path, O_RDONLY, 0);
    if (fd < 0) return fd;
    uint64_t size;
    int rc = fio->ops->size(fio, fd, &size);
    if (rc == 0 && size > max) rc = -EFBIG;
    uint8_t *buf = NULL;
    if (rc == 0) {
        buf = malloc(size + 1);
        if (!buf) rc = -ENOMEM;
    }
    if (rc == 0) rc = fileio_pread_full(fio, fd, buf, size, 0);
    fio->ops->close(fio, fd);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[size] = 0;
    *out = buf;
    *lenp = size;
    return 0;
}

/* ---- store.meta ---------------------------------------------------------- */

static bool has_partitions(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    bool found = false;
    while (d && !found && (de = readdir(d)))
        found = de->d_name[0] == 'p' && de->d_name[1] >= '0' && de->d_name[1] <= '9';
    if (d) closedir(d);
    return found;
}

static int meta_load(struct blobstore *bs, char *err, size_t errlen)
{
    char path[BLOBSTORE_PATH_MAX];
    snprintf(path, sizeof(path), "%s/" META_FILE, bs->dir);
    uint8_t *buf;
    size_t len;
    int rc = read_small(bs, path, 4096, &buf, &len);
    if (rc == -ENOENT) {
        if (has_partitions(bs->dir)) {
            snprintf(err, errlen, "%s: missing, but the directory holds partitions; refusing "
                     "to guess whose data this is", path);
            return -BD_ECORRUPT;
        }
        bs->store_id = util_seed() | 1;
        char text[512];
        int n = snprintf(text, sizeof(text), "blockd blob store 1\nstore_id %016llx\nident %s\n",
                         (unsigned long long)bs->store_id, bs->ident);
        unsigned syncs = 0;
        rc = blobstore_write_atomic(bs, bs->dir, path, text, (size_t)n, &syncs);
        if (rc < 0) snprintf(err, errlen, "%s: cannot create: %s", path, bd_strerror(rc));
        return rc;
    }
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot read: %s", path, bd_strerror(rc));
        return rc;
    }
    unsigned long long id = 0;
    char ident[sizeof(bs->ident)] = "";
    int version = 0;
    const char *t = (const char *)buf;
    const char *l2 = strchr(t, '\n');
    const char *l3 = l2 ? strchr(l2 + 1, '\n') : NULL;
    bool ok = l2 && l3 && sscanf(t, "blockd blob store %d\n", &version) == 1 && version == 1 &&
              sscanf(l2 + 1, "store_id %16llx\n", &id) == 1 && id != 0 &&
              strncmp(l3 + 1, "ident ", 6) == 0;
    if (ok) {
        const char *s = l3 + 7, *e = strchr(s, '\n');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        ok = n < sizeof(ident);
        if (ok) {
            memcpy(ident, s, n);
            ident[n] = 0;
        }
    }
    free(buf);
    if (!ok) {
        snprintf(err, errlen, "%s: not a blob store identity file", path);
        return -BD_ECORRUPT;
    }
    if (strcmp(ident, bs->ident) != 0) {
        snprintf(err, errlen, "%s: this data directory belongs to '%s', the config says '%s'",
                 path, ident, bs->ident);
        return -BD_ECONFIG;
    }
    bs->store_id = id;
    return 0;
}

/* ---- bad list ---------------------------------------------------------- */

static uint8_t *bad_encode(const struct blobstore *bs, size_t *lenp)
{
    size_t len = SEG_BAD_HDR_LEN + (size_t)bs->n_bad * SEG_BAD_ENTRY_LEN;
    uint8_t *buf = malloc(len);
    if (!buf) return NULL;
    seg_bad_encode(buf, bs->bad, bs->n_bad);
    *lenp = len;
    return buf;
}

static int bad_load(struct blobstore *bs)
{
    char path[BLOBSTORE_PATH_MAX];
    snprintf(path, sizeof(path), "%s/" BAD_FILE, bs->dir);
    uint8_t *buf;
    size_t len;
    int rc = read_small(bs, path, SEG_BAD_HDR_LEN + (size_t)SEG_BAD_MAX * SEG_BAD_ENTRY_LEN, &buf,
                        &len);
    if (rc == -ENOENT) return 0;
    if (rc < 0) return rc;
    uint32_t n;
    if (seg_bad_decode_hdr(buf, len, &n) < 0) {
        log_error(bs->tag, "%s is damaged; starting with an empty bad list (the scrubber "
                  "finds bad blobs again)", path);
        free(buf);
        return 0;
    }
    bs->bad = calloc(n ? n : 1, sizeof(*bs->bad));
    if (!bs->bad) {
        free(buf);
        return -ENOMEM;
    }
    bs->cap_bad = n ? n : 1;
    for (uint32_t i = 0; i < n; i++) {
        struct seg_bad *b = &bs->bad[bs->n_bad];
        seg_bad_entry_decode(buf + SEG_BAD_HDR_LEN + (size_t)i * SEG_BAD_ENTRY_LEN, b);
        if (b->blob_id != 0 && b->raw_len <= SEG_REC_MAX_DATA) bs->n_bad++;
    }
    free(buf);
    return 0;
}

struct blobscan_badsave {
    struct taskq_job job;
    struct blobstore *bs;
    uint8_t *buf;
    size_t len;
    unsigned fsyncs;
    int status;
};

static void badsave_run(struct taskq_job *job)
{
    struct blobscan_badsave *s = bd_container_of(job, struct blobscan_badsave, job);
    char path[BLOBSTORE_PATH_MAX];
    snprintf(path, sizeof(path), "%s/" BAD_FILE, s->bs->dir);
    s->status = blobstore_write_atomic(s->bs, s->bs->dir, path, s->buf, s->len, &s->fsyncs);
}

static void bad_save(struct blobstore *bs);

static void badsave_done(struct reactor_work *work)
{
    struct blobscan_badsave *s = bd_container_of(work, struct blobscan_badsave, job.work);
    struct blobstore *bs = s->bs;
    bs->st.fsyncs += s->fsyncs;
    metric_add(bs->m_fsyncs, s->fsyncs);
    if (s->status == -EIO) blobstore_fail(bs, s->status, "writing the bad list");
    else if (s->status < 0)
        log_error(bs->tag, "cannot write the bad list: %s", bd_strerror(s->status));
    free(s->buf);
    free(s);
    bs->badsave = NULL;
    if (bs->bad_dirty && !bs->failed) bad_save(bs);
    blobstore_check_closed(bs);
}

static void bad_save(struct blobstore *bs)
{
    if (bs->badsave) {
        bs->bad_dirty = true;
        return;
    }
    bs->bad_dirty = false;
    if (!bs->sq) return; /* recovery writes it synchronously at the end */
    struct blobscan_badsave *s = calloc(1, sizeof(*s));
    if (s) s->buf = bad_encode(bs, &s->len);
    if (!s || !s->buf) {
        free(s);
        log_error(bs->tag, "no memory to save the bad list");
        return;
    }
    s->bs = bs;
    s->job.run = badsave_run;
    s->job.work.done = badsave_done;
    bs->badsave = s;
    taskq_submit(bs->sq, &s->job);
}

static struct seg_bad *bad_find(const struct blobstore *bs, uint64_t id)
{
    for (uint32_t i = 0; i < bs->n_bad; i++)
        if (bs->bad[i].blob_id == id) return &bs->bad[i];
    return NULL;
}

/* Add or update without saving; false on ENOMEM. */
static bool bad_put(struct blobstore *bs, const struct bsindex_ent *e)
{
    struct seg_bad *b = bad_find(bs, e->blob_id);
    if (!b) {
        if (bs->n_bad == bs->cap_bad) {
            uint32_t cap = bs->cap_bad ? bs->cap_bad * 2 : 16;
            struct seg_bad *n = realloc(bs->bad, cap * sizeof(*n));
            if (!n) return false;
            bs->bad = n;
            bs->cap_bad = cap;
        }
        b = &bs->bad[bs->n_bad++];
    }
    b->blob_id = e->blob_id;
    b->partition = e->partition;
    b->raw_len = e->raw_len;
    b->seg_seq = e->seg ? e->seg->seq : 0;
    b->off = e->seg ? e->off : 0;
    b->csum = e->csum;
    return true;
}

void blobscan_bad_add(struct blobstore *bs, const struct bsindex_ent *e)
{
    if (!bad_put(bs, e)) log_error(bs->tag, "no memory to remember a bad blob");
    bad_save(bs);
}

void blobscan_bad_remove(struct blobstore *bs, uint64_t blob_id)
{
    struct seg_bad *b = bad_find(bs, blob_id);
    if (!b) return;
    *b = bs->bad[--bs->n_bad];
    bad_save(bs);
}

/* ---- applying records ---------------------------------------------------- */

struct scan_ctx {
    struct seg_bad *cand;     /* records with a good header and bad data */
    uint32_t n_cand, cap_cand;
    uint64_t records;
    uint64_t damaged;
};

static bool newer(uint64_t seq, const struct blobstore_seg *seg, const struct bsindex_ent *e)
{
    return seq > e->seq || (seq == e->seq && e->seg && seg->seq > e->seg->seq);
}

static int apply(struct blobstore *bs, struct blobstore_seg *seg, const struct seg_idx_entry *r)
{
    if (r->seq >= bs->next_seq) bs->next_seq = r->seq + 1;
    struct bsindex_ent *e = bsindex_get(&bs->ix, r->blob_id);
    if (!e) {
        e = bsindex_add(&bs->ix, r->blob_id);
        if (!e) return -ENOMEM;
        e->partition = seg->part->id;
        e->state = r->type == SEG_REC_PUT ? BSINDEX_LIVE : BSINDEX_DEAD;
    } else if (e->partition != seg->part->id) {
        log_error(bs->tag, "blob %llu has records in partitions %u and %u; keeping %u",
                  (unsigned long long)r->blob_id, e->partition, seg->part->id, e->partition);
        return 0;
    } else if (r->type == SEG_REC_TOMBSTONE) {
        if (e->state == BSINDEX_DEAD && !newer(r->seq, seg, e)) return 0;
        e->state = BSINDEX_DEAD;
    } else {
        if (e->state == BSINDEX_DEAD) return 0;
        if (e->csum != r->data_csum || e->raw_len != r->raw_len)
            log_error(bs->tag, "blob %llu has two records with different data (seq %llu, %llu); "
                      "keeping the newer", (unsigned long long)r->blob_id,
                      (unsigned long long)e->seq, (unsigned long long)r->seq);
        if (!newer(r->seq, seg, e)) return 0;
    }
    e->seg = seg;
    e->off = r->off;
    e->seq = r->seq;
    e->csum = r->data_csum;
    e->raw_len = r->raw_len;
    e->stored_len = r->stored_len;
    e->flags = r->flags;
    return 0;
}

static int add_cand(struct scan_ctx *c, const struct blobstore_seg *seg,
                    const struct seg_scan_rec *r)
{
    if (c->n_cand == c->cap_cand) {
        uint32_t cap = c->cap_cand ? c->cap_cand * 2 : 16;
        struct seg_bad *n = realloc(c->cand, cap * sizeof(*n));
        if (!n) return -ENOMEM;
        c->cand = n;
        c->cap_cand = cap;
    }
    c->cand[c->n_cand++] = (struct seg_bad){
        .blob_id = r->h.blob_id,
        .partition = r->h.partition,
        .raw_len = r->h.raw_len,
        .seg_seq = seg->seq,
        .off = r->off,
        .csum = r->h.data_csum,
    };
    return 0;
}

static int push_ent(struct blobstore_seg *seg, const struct seg_idx_entry *e)
{
    if (seg->n_ents == seg->cap_ents) {
        uint32_t cap = seg->cap_ents ? seg->cap_ents * 2 : 1024;
        struct seg_idx_entry *n = realloc(seg->ents, cap * sizeof(*n));
        if (!n) return -ENOMEM;
        seg->ents = n;
        seg->cap_ents = cap;
    }
    seg->ents[seg->n_ents++] = *e;
    return 0;
}

/* ---- one segment --------------------------------------------------------- */

struct fio_src {
    struct fileio *fio;
    int fd;
};

static ssize_t fio_src_pread(void *arg, void *buf, size_t len, uint64_t off)
{
    struct fio_src *s = arg;
    return s->fio->ops->pread(s->fio, s->fd, buf, len, off);
}

/* Does the record at E->off start with a header matching E? */
static bool idx_spot_check(struct blobstore *bs, struct blobstore_seg *seg,
                           const struct seg_idx_entry *e)
{
    uint8_t hdr[SEG_REC_HDR_LEN];
    struct seg_rec_hdr h;
    if (fileio_pread_full(bs->fio, seg->fd, hdr, sizeof(hdr), e->off) < 0) return false;
    return seg_rec_decode_hdr(hdr, SEG_REC_MAX_DATA, &h) == 0 && h.blob_id == e->blob_id &&
           h.seq == e->seq && h.type == e->type && h.stored_len == e->stored_len;
}

/* Load SEG's index file.  1 if it was used, 0 if it is absent or does not
 * match (scan instead), or -errno. */
static int load_idx(struct blobstore *bs, struct blobstore_seg *seg, uint64_t size,
                    struct scan_ctx *c)
{
    char path[BLOBSTORE_PATH_MAX];
    blobstore_seg_path(bs, seg->part->id, seg->seq, "idx", path);
    size_t max =
        SEG_IDX_HDR_LEN + (size_t)((size - SEG_HDR_LEN) / SEG_REC_HDR_LEN) * SEG_IDX_ENTRY_LEN;
    uint8_t *buf;
    size_t len;
    int rc = read_small(bs, path, max, &buf, &len);
    if (rc == -ENOENT) return 0;
    if (rc == -ENOMEM) return rc;
    if (rc < 0 || len < SEG_IDX_HDR_LEN) { /* -EFBIG: more entries than the segment can hold */
        if (rc == 0) free(buf);
        log_warn(bs->tag, "%s: unusable (%s); scanning the segment", path,
                 rc < 0 ? bd_strerror(rc) : "too short");
        return 0;
    }
    struct seg_idx_hdr h;
    bool ok = seg_idx_decode_hdr(buf, len, &h) == 0 && h.store_id == bs->store_id &&
              h.partition == seg->part->id && h.seg_seq == seg->seq && h.seg_len == size &&
              seg_idx_check_entries(&h, buf + SEG_IDX_HDR_LEN) == 0;
    struct seg_idx_entry *ents = ok && h.count ? malloc((size_t)h.count * sizeof(*ents)) : NULL;
    if (ok && h.count && !ents) {
        free(buf);
        return -ENOMEM;
    }
    for (uint32_t i = 0; ok && i < h.count; i++)
        ok = seg_idx_entry_decode(buf + SEG_IDX_HDR_LEN + (size_t)i * SEG_IDX_ENTRY_LEN, &h,
                                  SEG_REC_MAX_DATA, &ents[i]) == 0;
    free(buf);
    if (ok && h.count)
        ok = idx_spot_check(bs, seg, &ents[0]) && idx_spot_check(bs, seg, &ents[h.count - 1]);
    if (!ok) {
        free(ents);
        log_warn(bs->tag, "%s does not match its segment; scanning the segment", path);
        return 0;
    }
    for (uint32_t i = 0; i < h.count; i++) {
        rc = apply(bs, seg, &ents[i]);
        if (rc < 0) break;
    }
    free(ents);
    if (rc < 0) return rc;
    c->records += h.count;
    if (h.max_epoch > seg->part->epoch) seg->part->epoch = h.max_epoch;
    seg->w_max_epoch = h.max_epoch;
    seg->has_idx = true;
    return 1;
}

/* Scan SEG (SIZE bytes), verifying data; cut a torn tail. */
static int scan_seg(struct blobstore *bs, struct blobstore_seg *seg, uint64_t size,
                    struct scan_ctx *c)
{
    struct fio_src fs = {bs->fio, seg->fd};
    struct seg_src src = {.pread = fio_src_pread, .arg = &fs, .size = size};
    struct seg_scan s = {
        .src = &src,
        .store_id = bs->store_id,
        .partition = seg->part->id,
        .max_data = SEG_REC_MAX_DATA,
        .verify_data = true,
        .start = SEG_HDR_LEN,
    };
    int rc = seg_scan_init(&s);
    if (rc < 0) return rc;
    struct seg_scan_rec r;
    uint32_t first_cand = c->n_cand;
    while ((rc = seg_scan_next(&s, &r)) == 1) {
        if (!r.data_ok) {
            rc = add_cand(c, seg, &r);
            if (rc < 0) break;
            continue;
        }
        struct seg_idx_entry e = {
            .blob_id = r.h.blob_id,
            .off = r.off,
            .seq = r.h.seq,
            .data_csum = r.h.data_csum,
            .raw_len = r.h.raw_len,
            .stored_len = r.h.stored_len,
            .type = r.h.type,
            .flags = r.h.flags,
        };
        if ((rc = push_ent(seg, &e)) < 0 || (rc = apply(bs, seg, &e)) < 0) break;
        if (r.h.epoch > seg->w_max_epoch) seg->w_max_epoch = r.h.epoch;
        c->records++;
    }
    uint64_t good_end = s.good_end;
    if (s.damaged_ranges) {
        log_warn(bs->tag, "segment p%u/%016llx: skipped %u damaged ranges (%llu bytes) between "
                 "valid records", seg->part->id, (unsigned long long)seg->seq, s.damaged_ranges,
                 (unsigned long long)s.damaged_bytes);
        c->damaged += s.damaged_ranges;
    }
    seg_scan_fini(&s);
    if (rc < 0) return rc;
    /* Records with bad data after the cut were torn writes: never acked. */
    uint32_t keep = first_cand;
    for (uint32_t i = first_cand; i < c->n_cand; i++)
        if (c->cand[i].off < good_end) c->cand[keep++] = c->cand[i];
    c->n_cand = keep;
    if (seg->w_max_epoch > seg->part->epoch) seg->part->epoch = seg->w_max_epoch;
    if (size > good_end) {
        /* A torn write, or the zeros a direct write left past its record. */
        log_info(bs->tag, "segment p%u/%016llx: cutting %llu bytes after the last whole record",
                 seg->part->id, (unsigned long long)seg->seq,
                 (unsigned long long)(size - good_end));
        rc = bs->fio->ops->ftruncate(bs->fio, seg->fd, good_end);
        if (rc == 0) rc = bs->fio->ops->fdatasync(bs->fio, seg->fd);
        if (rc < 0) return rc;
    }
    seg->w_size = good_end;
    return 0;
}

static int recover_seg(struct blobstore *bs, struct blobstore_part *part, uint64_t seq,
                       struct scan_ctx *c)
{
    char path[BLOBSTORE_PATH_MAX];
    blobstore_seg_path(bs, part->id, seq, "seg", path);
    int fd = bs->fio->ops->open(bs->fio, path, O_RDWR, 0);
    if (fd < 0) return fd;
    uint64_t size = 0;
    int rc = bs->fio->ops->size(bs->fio, fd, &size);
    struct blobstore_seg *seg = rc == 0 ? blobstore_seg_new(part, seq, fd) : NULL;
    if (!seg) {
        bs->fio->ops->close(bs->fio, fd);
        return rc < 0 ? rc : -ENOMEM;
    }
    seg->dir_synced = true;
    blobstore_seg_link(seg);
    uint8_t hb[SEG_HDR_LEN];
    struct seg_hdr sh;
    if (size >= SEG_HDR_LEN && fileio_pread_full(bs->fio, fd, hb, sizeof(hb), 0) == 0 &&
        seg_hdr_decode(hb, &sh) == 0 && sh.store_id == bs->store_id && sh.partition == part->id &&
        sh.seq == seq) {
        seg->w_max_epoch = sh.epoch;
        if (sh.epoch > part->epoch) part->epoch = sh.epoch;
    } else {
        log_warn(bs->tag, "%s: segment header damaged or missing; scanning its records", path);
    }
    if (size < SEG_HDR_LEN) {
        /* Crashed while creating it: nothing in it was ever acked. */
        rc = bs->fio->ops->ftruncate(bs->fio, fd, 0);
        if (rc == 0) {
            uint8_t h[SEG_HDR_LEN];
            struct seg_hdr nh = {bs->store_id, part->id, seq, part->epoch, util_wall_ms()};
            seg_hdr_encode(h, &nh);
            rc = fileio_pwrite_full(bs->fio, fd, h, sizeof(h), 0);
        }
        if (rc == 0) rc = bs->fio->ops->fdatasync(bs->fio, fd);
        size = SEG_HDR_LEN;
        if (rc < 0) return rc;
    }
    rc = load_idx(bs, seg, size, c);
    if (rc < 0) return rc;
    if (rc == 1) {
        seg->state = BLOBSTORE_SEG_SEALED;
        seg->w_size = size;
    } else {
        rc = scan_seg(bs, seg, size, c);
        if (rc < 0) return rc;
    }
    seg->file_len = seg->durable_end = seg->w_size;
    bs->used_bytes += seg->file_len;
    bs->rec_bytes += seg->file_len - SEG_HDR_LEN;
    return 0;
}

/* ---- one partition ------------------------------------------------------- */

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* "0000000000000abc.seg" -> 0xabc; false for anything else. */
static bool parse_seg_name(const char *name, const char *ext, uint64_t *seq)
{
    size_t el = strlen(ext);
    if (strlen(name) != 17 + el || name[16] != '.' || strcmp(name + 17, ext) != 0) return false;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char ch = name[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (d < 0) return false;
        v = (v << 4) | (uint64_t)d;
    }
    *seq = v;
    return v != 0;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int recover_part(struct blobstore *bs, uint32_t id, struct scan_ctx *c)
{
    struct blobstore_part *part = blobstore_part_get(bs, id, true);
    if (!part) return -ENOMEM;
    part->dir_synced = true;
    part->w_dir_made = true;
    char dir[BLOBSTORE_PATH_MAX], path[BLOBSTORE_PATH_MAX + 256];
    blobstore_part_dir(bs, id, dir);
    DIR *d = opendir(dir);
    if (!d) return -errno;
    uint64_t *seqs = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d))) {
        uint64_t seq;
        if (parse_seg_name(de->d_name, "seg", &seq)) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                uint64_t *ns = realloc(seqs, cap * sizeof(*ns));
                if (!ns) {
                    rc = -ENOMEM;
                    break;
                }
                seqs = ns;
            }
            seqs[n++] = seq;
        } else if (ends_with(de->d_name, ".tmp") || ends_with(de->d_name, ".cmp")) {
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            log_info(bs->tag, "removing leftover %s", path);
            bs->fio->ops->unlink(bs->fio, path);
        }
    }
    closedir(d);
    if (rc == 0) qsort(seqs, n, sizeof(*seqs), u64_cmp);
    for (size_t i = 0; rc == 0 && i < n; i++) rc = recover_seg(bs, part, seqs[i], c);
    if (n) atomic_store(&part->next_seg_seq, seqs[n - 1] + 1);
    free(seqs);
    part->w_epoch = part->epoch;
    return rc;
}

/* ---- sealing leftovers, accounting, the bad list ------------------------- */

/* Every segment without an index file except the newest of its partition
 * (which stays active) gets one now; its records were all verified. */
static int seal_leftovers(struct blobstore *bs)
{
    for (uint32_t i = 0; i < bs->n_parts; i++) {
        struct blobstore_part *part = bs->parts[i];
        struct blobstore_seg *active = NULL;
        for (struct blobstore_seg *s = part->segs; s; s = s->next)
            if (!s->has_idx) active = s;
        for (struct blobstore_seg *s = part->segs; s; s = s->next) {
            if (s->has_idx) continue;
            if (s == active && s->w_size < bs->o.segment_bytes) {
                s->state = BLOBSTORE_SEG_ACTIVE;
                part->w_active = s;
                continue;
            }
            unsigned syncs = 0;
            int rc = bs->fio->ops->fdatasync(bs->fio, s->fd);
            if (rc == 0)
                rc = blobstore_seg_write_idx(bs, s, s->ents, s->n_ents, s->w_size, s->w_max_epoch,
                                             &syncs);
            if (rc < 0) return rc;
            s->has_idx = true;
            s->state = BLOBSTORE_SEG_SEALED;
            free(s->ents);
            s->ents = NULL;
            s->n_ents = s->cap_ents = 0;
        }
    }
    return 0;
}

/* Records with good headers and bad data, then the saved bad list. */
static int apply_bad(struct blobstore *bs, struct scan_ctx *c, bool *changed)
{
    for (uint32_t i = 0; i < c->n_cand; i++) {
        struct seg_bad *b = &c->cand[i];
        if (bsindex_get(&bs->ix, b->blob_id)) continue; /* another copy or a tombstone */
        struct bsindex_ent *e = bsindex_add(&bs->ix, b->blob_id);
        struct blobstore_part *part = blobstore_part_get(bs, b->partition, false);
        if (!e || !part) return -ENOMEM;
        e->state = BSINDEX_BAD;
        e->partition = b->partition;
        e->raw_len = b->raw_len;
        e->csum = b->csum;
        for (struct blobstore_seg *s = part->segs; s; s = s->next)
            if (s->seq == b->seg_seq) e->seg = s;
        e->off = b->off;
        log_error(bs->tag, "blob %llu: record at p%u/%016llx offset %llu fails its checksum",
                  (unsigned long long)b->blob_id, b->partition, (unsigned long long)b->seg_seq,
                  (unsigned long long)b->off);
        bs->st.csum_errors++;
    }
    uint32_t keep = 0;
    for (uint32_t i = 0; i < bs->n_bad; i++) {
        struct seg_bad *b = &bs->bad[i];
        struct bsindex_ent *e = bsindex_get(&bs->ix, b->blob_id);
        bool at = e && e->seg && e->seg->seq == b->seg_seq && e->off == b->off;
        if (e && e->state == BSINDEX_LIVE && at) {
            e->state = BSINDEX_BAD;
        } else if (!e) {
            e = bsindex_add(&bs->ix, b->blob_id);
            if (!e) return -ENOMEM;
            e->state = BSINDEX_BAD;
            e->partition = b->partition;
            e->raw_len = b->raw_len;
            e->csum = b->csum;
        } else if (e->state != BSINDEX_BAD) {
            *changed = true; /* healed or deleted since */
            continue;
        }
        bs->bad[keep++] = *b;
    }
    bs->n_bad = keep;
    uint32_t it = 0;
    for (struct bsindex_ent *e; (e = bsindex_next(&bs->ix, &it));) {
        if (e->state != BSINDEX_BAD || bad_find(bs, e->blob_id)) continue;
        if (!bad_put(bs, e)) return -ENOMEM;
        *changed = true;
    }
    return 0;
}

static void count_live(struct blobstore *bs)
{
    uint32_t it = 0;
    for (struct bsindex_ent *e; (e = bsindex_next(&bs->ix, &it));) {
        if (e->state == BSINDEX_LIVE && e->seg) {
            blobstore_seg_live_add(bs, e->seg, e->stored_len);
            bs->live_blobs++;
            blobstore_part_list_add(blobstore_part_get(bs, e->partition, false), e);
        } else if (e->state == BSINDEX_DEAD && e->seg) {
            blobstore_seg_live_add(bs, e->seg, 0);
        }
    }
    for (uint32_t i = 0; i < bs->n_parts; i++) bs->parts[i]->ids_sorted = false;
}

int blobscan_recover(struct blobstore *bs, char *err, size_t errlen)
{
    int rc = util_mkdir_p(bs->dir, 0700);
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot create: %s", bs->dir, bd_strerror(rc));
        return rc;
    }
    /* Blobs are tenants' data: nobody but blockd's user may list or read
     * them.  A store made by an older version (0755) is closed too: its
     * files become unreachable behind a 0700 directory. */
    if (chmod(bs->dir, 0700) < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: cannot chmod 0700: %s", bs->dir, bd_strerror(rc));
        return rc;
    }
    rc = meta_load(bs, err, errlen);
    if (rc < 0) return rc;
    bs->next_seq = 1;
    rc = bad_load(bs);
    if (rc < 0) {
        snprintf(err, errlen, "%s/" BAD_FILE ": %s", bs->dir, bd_strerror(rc));
        return rc;
    }
    DIR *d = opendir(bs->dir);
    if (!d) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", bs->dir, bd_strerror(rc));
        return rc;
    }
    uint64_t *ids = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *s = de->d_name;
        if (s[0] != 'p' || s[1] < '0' || s[1] > '9' || (s[1] == '0' && s[2])) continue;
        uint64_t v;
        if (util_parse_u64(s + 1, &v) < 0 || v > UINT32_MAX) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            uint64_t *ni = realloc(ids, cap * sizeof(*ni));
            if (!ni) break;
            ids = ni;
        }
        ids[n++] = v;
    }
    closedir(d);
    struct scan_ctx c = {0};
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = recover_part(bs, (uint32_t)ids[i], &c);
        if (rc < 0) snprintf(err, errlen, "%s/p%llu: %s", bs->dir, (unsigned long long)ids[i],
                             bd_strerror(rc));
    }
    free(ids);
    bool changed = false;
    if (rc == 0) {
        rc = apply_bad(bs, &c, &changed);
        if (rc < 0) snprintf(err, errlen, "applying the bad list: %s", bd_strerror(rc));
    }
    free(c.cand);
    if (rc == 0) {
        rc = seal_leftovers(bs);
        if (rc < 0) snprintf(err, errlen, "sealing recovered segments: %s", bd_strerror(rc));
    }
    if (rc == 0 && changed) {
        size_t len;
        uint8_t *buf = bad_encode(bs, &len);
        char path[BLOBSTORE_PATH_MAX];
        unsigned syncs = 0;
        snprintf(path, sizeof(path), "%s/" BAD_FILE, bs->dir);
        rc = buf ? blobstore_write_atomic(bs, bs->dir, path, buf, len, &syncs) : -ENOMEM;
        free(buf);
        if (rc < 0) snprintf(err, errlen, "%s: %s", path, bd_strerror(rc));
    }
    if (rc < 0) return rc;
    count_live(bs);
    bs->st.recovered_records = c.records;
    bs->st.recovered_damaged = c.damaged;
    return 0;
}
