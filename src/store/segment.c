/* segment.c: encode and decode segment headers, records and index files,
 * side by side, and scan a segment for records (see segment.h for the
 * byte layouts).
 *
 * Every decoder reads fields with util_get_le*, never by casting, and
 * checks them in one place: rec_lens_valid() holds the rules shared by
 * record headers and index entries (type, flags, lengths and how they
 * relate), so an index entry can never describe a record the record
 * decoder would refuse.
 *
 * The scanner keeps a window of the segment in memory (SCAN_WIN bytes,
 * refilled with one large pread when a read falls outside it), so a
 * sequential pass over a segment costs one read per window, not one per
 * record.  The current record's header and chunk table are copied out of
 * the window before its data is verified piece by piece: a blob larger
 * than the window never needs a buffer of its own size.  Stepping through
 * a damaged region costs one 4-byte compare per 8 bytes of damage.
 *
 * Rejected: a length-prefixed format without magic (one bad length loses
 * the rest of the segment); padding records to 4 KiB (costs up to 4 KiB per
 * small blob; the page cache makes unaligned reads cheap). */
#include "segment.h"
#include "../bd.h"
#include "../util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define SCAN_WIN (1u << 20) /* a multiple of REC_CHUNK */

static uint32_t low32(uint64_t v)
{
    return (uint32_t)v;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

/* ---- segment header -------------------------------------------------------- */

void seg_hdr_encode(uint8_t out[SEG_HDR_LEN], const struct seg_hdr *h)
{
    memset(out, 0, SEG_HDR_LEN);
    util_put_le32(out + 0, SEG_MAGIC);
    util_put_le16(out + 4, SEG_VERSION);
    util_put_le64(out + 8, h->store_id);
    util_put_le32(out + 16, h->partition);
    util_put_le64(out + 24, h->seq);
    util_put_le64(out + 32, h->epoch);
    util_put_le64(out + 40, h->created_ms);
    util_put_le32(out + 60, low32(util_xxh3(out, 60)));
}

int seg_hdr_decode(const uint8_t in[SEG_HDR_LEN], struct seg_hdr *h)
{
    if (util_get_le32(in + 0) != SEG_MAGIC || util_get_le16(in + 4) != SEG_VERSION)
        return -BD_ECORRUPT;
    if (util_get_le32(in + 60) != low32(util_xxh3(in, 60))) return -BD_ECORRUPT;
    if (!all_zero(in + 6, 2) || !all_zero(in + 20, 4) || !all_zero(in + 48, 12))
        return -BD_ECORRUPT;
    h->store_id = util_get_le64(in + 8);
    h->partition = util_get_le32(in + 16);
    h->seq = util_get_le64(in + 24);
    h->epoch = util_get_le64(in + 32);
    h->created_ms = util_get_le64(in + 40);
    return 0;
}

/* ---- records ------------------------------------------------------------- */

/* The rules every record description obeys, from a header or an index. */
static bool rec_lens_valid(uint8_t type, uint16_t flags, uint64_t blob_id, uint32_t raw_len,
                           uint32_t stored_len, uint32_t max_data)
{
    if (max_data > REC_MAX_DATA) max_data = REC_MAX_DATA;
    if (blob_id == 0 || (flags & ~REC_F_KNOWN)) return false;
    if (type == REC_TOMBSTONE) return flags == 0 && raw_len == 0 && stored_len == 0;
    if (type != REC_PUT) return false;
    if (raw_len > max_data || stored_len > max_data) return false;
    if (flags & REC_F_COMPRESSED) return stored_len > 0 && stored_len <= raw_len;
    return stored_len == raw_len;
}

static uint32_t meta_csum(const uint8_t *meta, uint32_t stored_len)
{
    struct iovec iov[3] = {
        {(void *)meta, 36},
        {(void *)(meta + 40), REC_HDR_LEN - 40},
        {(void *)(meta + REC_HDR_LEN), 4u * (size_t)rec_nchunks(stored_len)},
    };
    return low32(util_xxh3_iov(iov, 3));
}

void rec_encode(uint8_t *out, const struct rec_hdr *h, const uint8_t *stored)
{
    util_put_le32(out + 0, REC_MAGIC);
    out[4] = REC_VERSION;
    out[5] = h->type;
    util_put_le16(out + 6, h->flags);
    util_put_le64(out + 8, h->store_id);
    util_put_le64(out + 16, h->blob_id);
    util_put_le32(out + 24, h->partition);
    util_put_le32(out + 28, h->raw_len);
    util_put_le32(out + 32, h->stored_len);
    util_put_le32(out + 36, 0);
    util_put_le64(out + 40, h->epoch);
    util_put_le64(out + 48, h->seq);
    util_put_le64(out + 56, h->data_csum);
    uint32_t n = rec_nchunks(h->stored_len);
    for (uint32_t i = 0; i < n; i++) {
        size_t off = (size_t)i * REC_CHUNK;
        size_t len = BD_MIN((size_t)REC_CHUNK, h->stored_len - off);
        util_put_le32(out + REC_HDR_LEN + 4 * (size_t)i, low32(util_xxh3(stored + off, len)));
    }
    util_put_le32(out + 36, meta_csum(out, h->stored_len));
}

int rec_decode_hdr(const uint8_t in[REC_HDR_LEN], uint32_t max_data, struct rec_hdr *h)
{
    if (util_get_le32(in + 0) != REC_MAGIC || in[4] != REC_VERSION) return -BD_ECORRUPT;
    h->type = in[5];
    h->flags = util_get_le16(in + 6);
    h->store_id = util_get_le64(in + 8);
    h->blob_id = util_get_le64(in + 16);
    h->partition = util_get_le32(in + 24);
    h->raw_len = util_get_le32(in + 28);
    h->stored_len = util_get_le32(in + 32);
    h->epoch = util_get_le64(in + 40);
    h->seq = util_get_le64(in + 48);
    h->data_csum = util_get_le64(in + 56);
    if (!rec_lens_valid(h->type, h->flags, h->blob_id, h->raw_len, h->stored_len, max_data))
        return -BD_ECORRUPT;
    return 0;
}

int rec_check_meta(const uint8_t *meta, const struct rec_hdr *h)
{
    return util_get_le32(meta + 36) == meta_csum(meta, h->stored_len) ? 0 : -BD_ECORRUPT;
}

int rec_check_chunks(const uint8_t *meta, const struct rec_hdr *h, uint32_t first,
                     const uint8_t *data, size_t len)
{
    uint32_t n = rec_nchunks(h->stored_len);
    for (uint32_t i = first; len > 0; i++) {
        if (i >= n) return -BD_ECSUM;
        size_t clen = BD_MIN((size_t)REC_CHUNK, h->stored_len - (size_t)i * REC_CHUNK);
        if (clen > len) return -BD_ECSUM; /* a partial chunk cannot be checked */
        uint32_t want = util_get_le32(meta + REC_HDR_LEN + 4 * (size_t)i);
        if (low32(util_xxh3(data, clen)) != want) return -BD_ECSUM;
        data += clen;
        len -= clen;
    }
    return 0;
}

/* ---- index files ---------------------------------------------------------- */

static void idx_entry_encode(uint8_t *p, const struct idx_entry *e)
{
    util_put_le64(p + 0, e->blob_id);
    util_put_le64(p + 8, e->off);
    util_put_le64(p + 16, e->seq);
    util_put_le64(p + 24, e->data_csum);
    util_put_le32(p + 32, e->raw_len);
    util_put_le32(p + 36, e->stored_len);
    p[40] = e->type;
    p[41] = 0;
    util_put_le16(p + 42, e->flags);
    util_put_le32(p + 44, 0);
}

void idx_encode(uint8_t *out, struct idx_hdr *h, const struct idx_entry *entries, uint32_t count)
{
    uint8_t *ents = out + IDX_HDR_LEN;
    for (uint32_t i = 0; i < count; i++) idx_entry_encode(ents + (size_t)i * IDX_ENTRY_LEN, &entries[i]);
    h->count = count;
    h->entries_csum = util_xxh3(ents, (size_t)count * IDX_ENTRY_LEN);
    memset(out, 0, IDX_HDR_LEN);
    util_put_le32(out + 0, IDX_MAGIC);
    util_put_le16(out + 4, IDX_VERSION);
    util_put_le64(out + 8, h->store_id);
    util_put_le32(out + 16, h->partition);
    util_put_le32(out + 20, h->count);
    util_put_le64(out + 24, h->seg_seq);
    util_put_le64(out + 32, h->seg_len);
    util_put_le64(out + 40, h->max_epoch);
    util_put_le64(out + 48, h->entries_csum);
    util_put_le32(out + 60, low32(util_xxh3(out, 60)));
}

int idx_decode_hdr(const uint8_t in[IDX_HDR_LEN], uint64_t file_len, struct idx_hdr *h)
{
    if (util_get_le32(in + 0) != IDX_MAGIC || util_get_le16(in + 4) != IDX_VERSION)
        return -BD_ECORRUPT;
    if (util_get_le32(in + 60) != low32(util_xxh3(in, 60))) return -BD_ECORRUPT;
    if (!all_zero(in + 6, 2) || !all_zero(in + 56, 4)) return -BD_ECORRUPT;
    h->store_id = util_get_le64(in + 8);
    h->partition = util_get_le32(in + 16);
    h->count = util_get_le32(in + 20);
    h->seg_seq = util_get_le64(in + 24);
    h->seg_len = util_get_le64(in + 32);
    h->max_epoch = util_get_le64(in + 40);
    h->entries_csum = util_get_le64(in + 48);
    if (h->count > IDX_MAX_ENTRIES) return -BD_ECORRUPT;
    if (file_len != IDX_HDR_LEN + (uint64_t)h->count * IDX_ENTRY_LEN) return -BD_ECORRUPT;
    if (h->seg_len < SEG_HDR_LEN) return -BD_ECORRUPT;
    return 0;
}

int idx_check_entries(const struct idx_hdr *h, const uint8_t *entries)
{
    return util_xxh3(entries, (size_t)h->count * IDX_ENTRY_LEN) == h->entries_csum
               ? 0
               : -BD_ECORRUPT;
}

int idx_entry_decode(const uint8_t *p, const struct idx_hdr *h, uint32_t max_data,
                     struct idx_entry *e)
{
    e->blob_id = util_get_le64(p + 0);
    e->off = util_get_le64(p + 8);
    e->seq = util_get_le64(p + 16);
    e->data_csum = util_get_le64(p + 24);
    e->raw_len = util_get_le32(p + 32);
    e->stored_len = util_get_le32(p + 36);
    e->type = p[40];
    e->flags = util_get_le16(p + 42);
    if (p[41] || util_get_le32(p + 44)) return -BD_ECORRUPT;
    if (!rec_lens_valid(e->type, e->flags, e->blob_id, e->raw_len, e->stored_len, max_data))
        return -BD_ECORRUPT;
    if (e->off < SEG_HDR_LEN || e->off % REC_ALIGN || e->off > h->seg_len ||
        rec_total_len(e->stored_len) > h->seg_len - e->off)
        return -BD_ECORRUPT;
    return 0;
}

/* ---- scanning ------------------------------------------------------------- */

ssize_t seg_mem_pread(void *arg, void *buf, size_t len, uint64_t off)
{
    const struct seg_mem *m = arg;
    if (off >= m->len) return 0;
    size_t n = BD_MIN(len, (size_t)(m->len - off));
    memcpy(buf, m->data + off, n);
    return (ssize_t)n;
}

/* The window holds SCAN_WIN bytes plus room for the largest header and
 * table, so any header+table fits wherever it starts; META_MAX is the
 * private copy of the current record's header and table after it. */
#define META_MAX (REC_HDR_LEN + 4u * ((REC_MAX_DATA + REC_CHUNK - 1) / REC_CHUNK))

int seg_scan_init(struct seg_scan *s)
{
    s->cap = SCAN_WIN + META_MAX;
    s->buf = malloc(s->cap + META_MAX);
    if (!s->buf) return -ENOMEM;
    s->buf_off = 0;
    s->buf_len = 0;
    s->pos = (s->start + REC_ALIGN - 1) & ~(uint64_t)(REC_ALIGN - 1);
    s->good_end = BD_MIN(s->start, s->src->size);
    s->damaged_bytes = 0;
    s->damaged_ranges = 0;
    s->bad_data = 0;
    s->damage_start = UINT64_MAX;
    if (s->max_data == 0 || s->max_data > REC_MAX_DATA) s->max_data = REC_MAX_DATA;
    return 0;
}

void seg_scan_fini(struct seg_scan *s)
{
    free(s->buf);
    s->buf = NULL;
}

/* Make [OFF, OFF+LEN) readable (LEN <= s->cap, OFF+LEN <= size) and
 * return a pointer to it, or NULL with *ERR on a read error. */
static const uint8_t *win(struct seg_scan *s, uint64_t off, size_t len, int *err)
{
    if (off >= s->buf_off && off + len <= s->buf_off + s->buf_len) return s->buf + (off - s->buf_off);
    size_t want = (size_t)BD_MIN((uint64_t)s->cap, s->src->size - off);
    size_t got = 0;
    while (got < want) {
        ssize_t n = s->src->pread(s->src->arg, s->buf + got, want - got, off + got);
        if (n < 0) {
            *err = (int)n;
            return NULL;
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    s->buf_off = off;
    s->buf_len = got;
    if (got < len) {
        *err = -EIO; /* the source is shorter than it said */
        return NULL;
    }
    return s->buf;
}

/* Verify every chunk of the record whose meta is at META, in pieces. */
static int verify_data(struct seg_scan *s, const uint8_t *meta, const struct rec_hdr *h,
                       uint64_t data_off, bool *ok)
{
    uint64_t done = 0;
    *ok = true;
    while (done < h->stored_len) {
        size_t piece = (size_t)BD_MIN((uint64_t)SCAN_WIN, h->stored_len - done);
        int err = 0;
        const uint8_t *p = win(s, data_off + done, piece, &err);
        if (!p) return err;
        if (rec_check_chunks(meta, h, (uint32_t)(done / REC_CHUNK), p, piece) < 0) {
            *ok = false;
            return 0;
        }
        done += piece;
    }
    return 0;
}

int seg_scan_next(struct seg_scan *s, struct seg_rec *out)
{
    uint8_t *meta_copy = s->buf + s->cap;
    const uint64_t size = s->src->size;
    while (s->pos + REC_HDR_LEN <= size) {
        uint64_t pos = s->pos;
        int err = 0;
        const uint8_t *p = win(s, pos, REC_HDR_LEN, &err);
        if (!p) return err;
        struct rec_hdr h;
        bool valid = util_get_le32(p) == REC_MAGIC && rec_decode_hdr(p, s->max_data, &h) == 0 &&
                     h.store_id == s->store_id && h.partition == s->partition &&
                     rec_total_len(h.stored_len) <= size - pos;
        size_t meta_len = valid ? rec_meta_len(h.stored_len) : 0;
        if (valid) {
            const uint8_t *m = win(s, pos, meta_len, &err);
            if (!m) return err;
            valid = rec_check_meta(m, &h) == 0;
            if (valid) memcpy(meta_copy, m, meta_len);
        }
        if (!valid) {
            if (s->damage_start == UINT64_MAX) s->damage_start = pos;
            s->pos = pos + REC_ALIGN;
            continue;
        }
        if (s->damage_start != UINT64_MAX) {
            s->damaged_bytes += pos - s->damage_start;
            s->damaged_ranges++;
            s->damage_start = UINT64_MAX;
        }
        out->h = h;
        out->off = pos;
        out->len = rec_total_len(h.stored_len);
        out->meta = meta_copy;
        out->data_ok = true;
        if (s->verify_data) {
            int rc = verify_data(s, meta_copy, &h, pos + meta_len, &out->data_ok);
            if (rc < 0) return rc;
            if (!out->data_ok) s->bad_data++;
        }
        s->pos = pos + out->len;
        if (out->data_ok) s->good_end = s->pos;
        return 1;
    }
    return 0;
}
