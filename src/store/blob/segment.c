/* segment.c: encode and decode segment headers, records, index files and
 * the bad list, side by side, and scan a segment for records (see
 * segment.h for the byte layouts).
 *
 * Every encoder and decoder is a straight list of bytes.h cursor calls in
 * the order of its format's table in segment.h (bw_zeros / br_zeros for
 * reserved bytes), so the code reads as the table does; a checksum field
 * is computed over what the cursor has written (or read) before it.
 * Decoders check every field in one place per format and set their output
 * only on success; seg_rec_lens_valid() holds the rules shared by record
 * headers and index entries (type, flags, lengths and how they relate), so
 * an index entry can never describe a record the record decoder would
 * refuse.
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
#include "store/blob/segment.h"
#include "base/bd.h"
#include "base/bytes.h"
#include "base/util.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define SCAN_WIN (1u << 20) /* a multiple of SEG_REC_CHUNK */

static uint32_t low32(uint64_t v)
{
    return (uint32_t)v;
}

/* ---- segment header ------------------------------------------------------ */

void seg_hdr_encode(uint8_t out[SEG_HDR_LEN], const struct seg_hdr *h)
{
    struct bytes_w w;
    bw_init(&w, out, SEG_HDR_LEN);
    bw_u32(&w, SEG_MAGIC);
    bw_u16(&w, SEG_VERSION);
    bw_zeros(&w, 2);
    bw_u64(&w, h->store_id);
    bw_u32(&w, h->partition);
    bw_zeros(&w, 4);
    bw_u64(&w, h->seq);
    bw_u64(&w, h->epoch);
    bw_u64(&w, h->created_ms);
    bw_zeros(&w, 12);
    bw_u32(&w, low32(util_xxh3(out, w.used))); /* hdr_csum */
    assert(!w.err && w.used == SEG_HDR_LEN);
}

int seg_hdr_decode(const uint8_t in[SEG_HDR_LEN], struct seg_hdr *h)
{
    struct bytes_r r;
    struct seg_hdr d;
    br_init(&r, in, SEG_HDR_LEN);
    uint32_t magic = br_u32(&r);
    uint16_t version = br_u16(&r);
    br_zeros(&r, 2);
    d.store_id = br_u64(&r);
    d.partition = br_u32(&r);
    br_zeros(&r, 4);
    d.seq = br_u64(&r);
    d.epoch = br_u64(&r);
    d.created_ms = br_u64(&r);
    br_zeros(&r, 12);
    uint32_t want = low32(util_xxh3(in, r.used));
    uint32_t csum = br_u32(&r);
    if (magic != SEG_MAGIC || version != SEG_VERSION || csum != want) br_fail(&r);
    if (r.err) return -BD_ECORRUPT;
    *h = d;
    return 0;
}

/* ---- records ------------------------------------------------------------- */

/* The rules every record description obeys, from a header or an index. */
static bool seg_rec_lens_valid(uint8_t type, uint16_t flags, uint64_t blob_id, uint32_t raw_len,
                               uint32_t stored_len, uint32_t max_data)
{
    if (max_data > SEG_REC_MAX_DATA) max_data = SEG_REC_MAX_DATA;
    if (blob_id == 0 || (flags & ~SEG_REC_F_KNOWN)) return false;
    if (type == SEG_REC_TOMBSTONE) return flags == 0 && raw_len == 0 && stored_len == 0;
    if (type != SEG_REC_PUT) return false;
    if (raw_len > max_data || stored_len > max_data) return false;
    if (flags & SEG_REC_F_COMPRESSED) return stored_len > 0 && stored_len <= raw_len;
    return stored_len == raw_len;
}

/* The record header, in table order, with HDR_CSUM in its field. */
static void rec_hdr_put(struct bytes_w *w, const struct seg_rec_hdr *h, uint32_t hdr_csum)
{
    bw_u32(w, SEG_REC_MAGIC);
    bw_u8(w, SEG_REC_VERSION);
    bw_u8(w, h->type);
    bw_u16(w, h->flags);
    bw_u64(w, h->store_id);
    bw_u64(w, h->blob_id);
    bw_u32(w, h->partition);
    bw_u32(w, h->raw_len);
    bw_u32(w, h->stored_len);
    bw_u32(w, hdr_csum);
    bw_u64(w, h->epoch);
    bw_u64(w, h->seq);
    bw_u64(w, h->data_csum);
}

/* Read the record header at IN (SEG_REC_HDR_LEN bytes) in table order into
 * *H and its hdr_csum field into *HDR_CSUM.  0, or -BD_ECORRUPT if the
 * magic or the version is not ours (the fields are read anyway). */
static int rec_hdr_get(const uint8_t *in, struct seg_rec_hdr *h, uint32_t *hdr_csum)
{
    struct bytes_r r;
    br_init(&r, in, SEG_REC_HDR_LEN);
    uint32_t magic = br_u32(&r);
    uint8_t version = br_u8(&r);
    h->type = br_u8(&r);
    h->flags = br_u16(&r);
    h->store_id = br_u64(&r);
    h->blob_id = br_u64(&r);
    h->partition = br_u32(&r);
    h->raw_len = br_u32(&r);
    h->stored_len = br_u32(&r);
    *hdr_csum = br_u32(&r);
    h->epoch = br_u64(&r);
    h->seq = br_u64(&r);
    h->data_csum = br_u64(&r);
    if (magic != SEG_REC_MAGIC || version != SEG_REC_VERSION) br_fail(&r);
    return r.err ? -BD_ECORRUPT : 0;
}

/* hdr_csum: the header but its own field, then the chunk table. */
static uint32_t meta_csum(const uint8_t *meta, uint32_t stored_len)
{
    struct iovec iov[3] = {
        {(void *)meta, SEG_REC_CSUM_OFF},
        {(void *)(meta + SEG_REC_CSUM_OFF + 4), SEG_REC_HDR_LEN - SEG_REC_CSUM_OFF - 4},
        {(void *)(meta + SEG_REC_HDR_LEN), 4u * (size_t)seg_rec_nchunks(stored_len)},
    };
    return low32(util_xxh3_iov(iov, 3));
}

void seg_rec_encode(uint8_t *out, const struct seg_rec_hdr *h, const uint8_t *stored)
{
    size_t len = seg_rec_meta_len(h->stored_len);
    struct bytes_w w;
    bw_init(&w, out, len);
    rec_hdr_put(&w, h, 0); /* hdr_csum is known once the table is written */
    uint32_t n = seg_rec_nchunks(h->stored_len);
    for (uint32_t i = 0; i < n; i++) {
        size_t off = (size_t)i * SEG_REC_CHUNK;
        size_t clen = BD_MIN((size_t)SEG_REC_CHUNK, h->stored_len - off);
        bw_u32(&w, low32(util_xxh3(stored + off, clen)));
    }
    assert(!w.err && w.used == len);
    bw_init(&w, out, SEG_REC_HDR_LEN);
    rec_hdr_put(&w, h, meta_csum(out, h->stored_len));
}

int seg_rec_decode_hdr(const uint8_t in[SEG_REC_HDR_LEN], uint32_t max_data, struct seg_rec_hdr *h)
{
    struct seg_rec_hdr d;
    uint32_t hdr_csum; /* checked by seg_rec_check_meta, which has the table */
    if (rec_hdr_get(in, &d, &hdr_csum) < 0 ||
        !seg_rec_lens_valid(d.type, d.flags, d.blob_id, d.raw_len, d.stored_len, max_data))
        return -BD_ECORRUPT;
    *h = d;
    return 0;
}

int seg_rec_check_meta(const uint8_t *meta, const struct seg_rec_hdr *h)
{
    struct seg_rec_hdr d;
    uint32_t hdr_csum;
    (void)rec_hdr_get(meta, &d, &hdr_csum); /* H says what the header holds */
    return hdr_csum == meta_csum(meta, h->stored_len) ? 0 : -BD_ECORRUPT;
}

int seg_rec_check_chunks(const uint8_t *meta, const struct seg_rec_hdr *h, uint32_t first,
                         const uint8_t *data, size_t len)
{
    uint32_t n = seg_rec_nchunks(h->stored_len);
    struct bytes_r table;
    br_init(&table, meta + SEG_REC_HDR_LEN, 4u * (size_t)n);
    br_skip(&table, 4u * (size_t)first);
    for (uint32_t i = first; len > 0; i++) {
        if (i >= n) return -BD_ECSUM;
        size_t clen = BD_MIN((size_t)SEG_REC_CHUNK, h->stored_len - (size_t)i * SEG_REC_CHUNK);
        if (clen > len) return -BD_ECSUM; /* a partial chunk cannot be checked */
        uint32_t want = br_u32(&table);
        if (low32(util_xxh3(data, clen)) != want) return -BD_ECSUM;
        data += clen;
        len -= clen;
    }
    return 0;
}

/* ---- index files --------------------------------------------------------- */

static void idx_entry_put(struct bytes_w *w, const struct seg_idx_entry *e)
{
    bw_u64(w, e->blob_id);
    bw_u64(w, e->off);
    bw_u64(w, e->seq);
    bw_u64(w, e->data_csum);
    bw_u32(w, e->raw_len);
    bw_u32(w, e->stored_len);
    bw_u8(w, e->type);
    bw_zeros(w, 1);
    bw_u16(w, e->flags);
    bw_zeros(w, 4);
}

void seg_idx_encode(uint8_t *out, struct seg_idx_hdr *h, const struct seg_idx_entry *entries,
                    uint32_t count)
{
    /* The entries first: the header carries their checksum. */
    size_t ents_len = (size_t)count * SEG_IDX_ENTRY_LEN;
    struct bytes_w w;
    bw_init(&w, out + SEG_IDX_HDR_LEN, ents_len);
    for (uint32_t i = 0; i < count; i++) idx_entry_put(&w, &entries[i]);
    assert(!w.err && w.used == ents_len);
    h->count = count;
    h->entries_csum = util_xxh3(out + SEG_IDX_HDR_LEN, ents_len);
    bw_init(&w, out, SEG_IDX_HDR_LEN);
    bw_u32(&w, SEG_IDX_MAGIC);
    bw_u16(&w, SEG_IDX_VERSION);
    bw_zeros(&w, 2);
    bw_u64(&w, h->store_id);
    bw_u32(&w, h->partition);
    bw_u32(&w, h->count);
    bw_u64(&w, h->seg_seq);
    bw_u64(&w, h->seg_len);
    bw_u64(&w, h->max_epoch);
    bw_u64(&w, h->entries_csum);
    bw_zeros(&w, 4);
    bw_u32(&w, low32(util_xxh3(out, w.used))); /* hdr_csum */
    assert(!w.err && w.used == SEG_IDX_HDR_LEN);
}

int seg_idx_decode_hdr(const uint8_t in[SEG_IDX_HDR_LEN], uint64_t file_len, struct seg_idx_hdr *h)
{
    struct bytes_r r;
    struct seg_idx_hdr d;
    br_init(&r, in, SEG_IDX_HDR_LEN);
    uint32_t magic = br_u32(&r);
    uint16_t version = br_u16(&r);
    br_zeros(&r, 2);
    d.store_id = br_u64(&r);
    d.partition = br_u32(&r);
    d.count = br_u32(&r);
    d.seg_seq = br_u64(&r);
    d.seg_len = br_u64(&r);
    d.max_epoch = br_u64(&r);
    d.entries_csum = br_u64(&r);
    br_zeros(&r, 4);
    uint32_t want = low32(util_xxh3(in, r.used));
    uint32_t csum = br_u32(&r);
    if (magic != SEG_IDX_MAGIC || version != SEG_IDX_VERSION || csum != want) br_fail(&r);
    if (d.count > SEG_IDX_MAX_ENTRIES ||
        file_len != SEG_IDX_HDR_LEN + (uint64_t)d.count * SEG_IDX_ENTRY_LEN ||
        d.seg_len < SEG_HDR_LEN)
        br_fail(&r);
    if (r.err) return -BD_ECORRUPT;
    *h = d;
    return 0;
}

int seg_idx_check_entries(const struct seg_idx_hdr *h, const uint8_t *entries)
{
    return util_xxh3(entries, (size_t)h->count * SEG_IDX_ENTRY_LEN) == h->entries_csum
               ? 0
               : -BD_ECORRUPT;
}

int seg_idx_entry_decode(const uint8_t *in, const struct seg_idx_hdr *h, uint32_t max_data,
                         struct seg_idx_entry *e)
{
    struct bytes_r r;
    struct seg_idx_entry d;
    br_init(&r, in, SEG_IDX_ENTRY_LEN);
    d.blob_id = br_u64(&r);
    d.off = br_u64(&r);
    d.seq = br_u64(&r);
    d.data_csum = br_u64(&r);
    d.raw_len = br_u32(&r);
    d.stored_len = br_u32(&r);
    d.type = br_u8(&r);
    br_zeros(&r, 1);
    d.flags = br_u16(&r);
    br_zeros(&r, 4);
    if (!seg_rec_lens_valid(d.type, d.flags, d.blob_id, d.raw_len, d.stored_len, max_data))
        br_fail(&r);
    if (d.off < SEG_HDR_LEN || d.off % SEG_REC_ALIGN || d.off > h->seg_len ||
        seg_rec_total_len(d.stored_len) > h->seg_len - d.off)
        br_fail(&r);
    if (r.err) return -BD_ECORRUPT;
    *e = d;
    return 0;
}

/* ---- the bad list -------------------------------------------------------- */

void seg_bad_encode(uint8_t *out, const struct seg_bad *entries, uint32_t count)
{
    /* The entries first: the header carries their checksum. */
    size_t ents_len = (size_t)count * SEG_BAD_ENTRY_LEN;
    struct bytes_w w;
    bw_init(&w, out + SEG_BAD_HDR_LEN, ents_len);
    for (uint32_t i = 0; i < count; i++) {
        const struct seg_bad *b = &entries[i];
        bw_u64(&w, b->blob_id);
        bw_u32(&w, b->partition);
        bw_u32(&w, b->raw_len);
        bw_u64(&w, b->seg_seq);
        bw_u64(&w, b->off);
        bw_u64(&w, b->csum);
    }
    assert(!w.err && w.used == ents_len);
    bw_init(&w, out, SEG_BAD_HDR_LEN);
    bw_u32(&w, SEG_BAD_MAGIC);
    bw_u16(&w, SEG_BAD_VERSION);
    bw_zeros(&w, 2);
    bw_u32(&w, count);
    bw_u32(&w, low32(util_xxh3(out + SEG_BAD_HDR_LEN, ents_len))); /* entries_csum */
    assert(!w.err && w.used == SEG_BAD_HDR_LEN);
}

int seg_bad_decode_hdr(const uint8_t *in, size_t len, uint32_t *count)
{
    struct bytes_r r;
    br_init(&r, in, len);
    uint32_t magic = br_u32(&r);
    uint16_t version = br_u16(&r);
    br_skip(&r, 2); /* reserved: see segment.h */
    uint32_t n = br_u32(&r);
    uint32_t csum = br_u32(&r);
    if (r.err || magic != SEG_BAD_MAGIC || version != SEG_BAD_VERSION || n > SEG_BAD_MAX ||
        r.left != (size_t)n * SEG_BAD_ENTRY_LEN || csum != low32(util_xxh3(r.p, r.left)))
        return -BD_ECORRUPT;
    *count = n;
    return 0;
}

void seg_bad_entry_decode(const uint8_t *in, struct seg_bad *b)
{
    struct bytes_r r;
    br_init(&r, in, SEG_BAD_ENTRY_LEN);
    b->blob_id = br_u64(&r);
    b->partition = br_u32(&r);
    b->raw_len = br_u32(&r);
    b->seg_seq = br_u64(&r);
    b->off = br_u64(&r);
    b->csum = br_u64(&r);
}

/* ---- scanning ------------------------------------------------------------ */

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
#define META_MAX (SEG_REC_HDR_LEN + 4u * ((SEG_REC_MAX_DATA + SEG_REC_CHUNK - 1) / SEG_REC_CHUNK))

int seg_scan_init(struct seg_scan *s)
{
    s->cap = SCAN_WIN + META_MAX;
    s->buf = malloc(s->cap + META_MAX);
    if (!s->buf) return -ENOMEM;
    s->buf_off = 0;
    s->buf_len = 0;
    s->pos = (s->start + SEG_REC_ALIGN - 1) & ~(uint64_t)(SEG_REC_ALIGN - 1);
    s->good_end = BD_MIN(s->start, s->src->size);
    s->damaged_bytes = 0;
    s->damaged_ranges = 0;
    s->bad_data = 0;
    s->damage_start = UINT64_MAX;
    if (s->max_data == 0 || s->max_data > SEG_REC_MAX_DATA) s->max_data = SEG_REC_MAX_DATA;
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
    if (off >= s->buf_off && off + len <= s->buf_off + s->buf_len)
        return s->buf + (off - s->buf_off);
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

/* Does a record header start at P (4 bytes)?  Cheaper than decoding one,
 * for the 8-byte steps through a damaged region. */
static bool rec_magic_at(const uint8_t *p)
{
    struct bytes_r r;
    br_init(&r, p, 4);
    return br_u32(&r) == SEG_REC_MAGIC;
}

/* Verify every chunk of the record whose meta is at META, in pieces. */
static int verify_data(struct seg_scan *s, const uint8_t *meta, const struct seg_rec_hdr *h,
                       uint64_t data_off, bool *ok)
{
    uint64_t done = 0;
    *ok = true;
    while (done < h->stored_len) {
        size_t piece = (size_t)BD_MIN((uint64_t)SCAN_WIN, h->stored_len - done);
        int err = 0;
        const uint8_t *p = win(s, data_off + done, piece, &err);
        if (!p) return err;
        if (seg_rec_check_chunks(meta, h, (uint32_t)(done / SEG_REC_CHUNK), p, piece) < 0) {
            *ok = false;
            return 0;
        }
        done += piece;
    }
    return 0;
}

int seg_scan_next(struct seg_scan *s, struct seg_scan_rec *out)
{
    uint8_t *meta_copy = s->buf + s->cap;
    const uint64_t size = s->src->size;
    while (s->pos + SEG_REC_HDR_LEN <= size) {
        uint64_t pos = s->pos;
        int err = 0;
        const uint8_t *p = win(s, pos, SEG_REC_HDR_LEN, &err);
        if (!p) return err;
        struct seg_rec_hdr h;
        bool valid = rec_magic_at(p) && seg_rec_decode_hdr(p, s->max_data, &h) == 0 &&
                     h.store_id == s->store_id && h.partition == s->partition &&
                     seg_rec_total_len(h.stored_len) <= size - pos;
        size_t meta_len = valid ? seg_rec_meta_len(h.stored_len) : 0;
        if (valid) {
            const uint8_t *m = win(s, pos, meta_len, &err);
            if (!m) return err;
            valid = seg_rec_check_meta(m, &h) == 0;
            if (valid) memcpy(meta_copy, m, meta_len);
        }
        if (!valid) {
            if (s->damage_start == UINT64_MAX) s->damage_start = pos;
            s->pos = pos + SEG_REC_ALIGN;
            continue;
        }
        if (s->damage_start != UINT64_MAX) {
            s->damaged_bytes += pos - s->damage_start;
            s->damaged_ranges++;
            s->damage_start = UINT64_MAX;
        }
        out->h = h;
        out->off = pos;
        out->len = seg_rec_total_len(h.stored_len);
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
