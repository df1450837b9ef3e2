/* raftlog_fmt.c: encode and decode the Raft log's file layouts, side by
 * side (the tables are in raftlog_fmt.h).
 *
 * Each encoder is the list of cursor calls of its table; the checksum
 * field is written last, over the bytes the cursor wrote before it.  Each
 * decoder reads the same list, then checks magic, version, reserved
 * fields and checksum and answers -BD_ECORRUPT if any is wrong.  Nothing
 * here knows about files: the callers read and write the bytes and decide
 * what a bad header means (a torn tail, a corrupt log). */
#include "store/raft/raftlog_fmt.h"
#include "base/bd.h"
#include "base/bytes.h"
#include "base/util.h"

/* ---- meta records ---------------------------------------------------------- */

void raftlog_fmt_meta_encode(uint8_t b[RAFTLOG_FMT_META_LEN], const struct raftlog_fmt_meta *m)
{
    struct bytes_w w;
    bw_init(&w, b, RAFTLOG_FMT_META_LEN);
    bw_u32(&w, RAFTLOG_FMT_META_MAGIC);
    bw_u16(&w, RAFTLOG_FMT_VERSION);
    bw_zeros(&w, 2);
    bw_u64(&w, m->seq);
    bw_u64(&w, m->term);
    bw_u64(&w, m->vote);
    bw_u64(&w, m->cluster_hash);
    bw_u64(&w, m->node_id);
    bw_zeros(&w, 8);
    bw_u64(&w, util_xxh3(b, w.used));
    BD_NEVER(w.err || w.left);
}

int raftlog_fmt_meta_decode(const uint8_t b[RAFTLOG_FMT_META_LEN], struct raftlog_fmt_meta *m)
{
    struct bytes_r r;
    br_init(&r, b, RAFTLOG_FMT_META_LEN);
    uint32_t magic = br_u32(&r);
    uint16_t version = br_u16(&r);
    br_zeros(&r, 2);
    m->seq = br_u64(&r);
    m->term = br_u64(&r);
    m->vote = br_u64(&r);
    m->cluster_hash = br_u64(&r);
    m->node_id = br_u64(&r);
    br_zeros(&r, 8);
    size_t covered = r.used;
    uint64_t csum = br_u64(&r);
    if (r.err || magic != RAFTLOG_FMT_META_MAGIC || version != RAFTLOG_FMT_VERSION ||
        csum != util_xxh3(b, covered))
        return -BD_ECORRUPT;
    return 0;
}

/* ---- segment headers --------------------------------------------------------- */

void raftlog_fmt_seg_encode(uint8_t b[RAFTLOG_FMT_SEG_LEN], const struct raftlog_fmt_seg *s)
{
    struct bytes_w w;
    bw_init(&w, b, RAFTLOG_FMT_SEG_LEN);
    bw_u32(&w, RAFTLOG_FMT_SEG_MAGIC);
    bw_u16(&w, RAFTLOG_FMT_VERSION);
    bw_zeros(&w, 2);
    bw_u64(&w, s->seq);
    bw_u64(&w, s->first);
    bw_u64(&w, util_xxh3(b, w.used));
    BD_NEVER(w.err || w.left);
}

int raftlog_fmt_seg_decode(const uint8_t b[RAFTLOG_FMT_SEG_LEN], struct raftlog_fmt_seg *s)
{
    struct bytes_r r;
    br_init(&r, b, RAFTLOG_FMT_SEG_LEN);
    uint32_t magic = br_u32(&r);
    uint16_t version = br_u16(&r);
    br_zeros(&r, 2);
    s->seq = br_u64(&r);
    s->first = br_u64(&r);
    size_t covered = r.used;
    uint64_t csum = br_u64(&r);
    if (r.err || magic != RAFTLOG_FMT_SEG_MAGIC || version != RAFTLOG_FMT_VERSION ||
        csum != util_xxh3(b, covered))
        return -BD_ECORRUPT;
    return 0;
}

/* ---- record headers ------------------------------------------------------------ */

void raftlog_fmt_rec_encode(uint8_t b[RAFTLOG_FMT_REC_LEN], const struct raftlog_fmt_rec *h)
{
    struct bytes_w w;
    bw_init(&w, b, RAFTLOG_FMT_REC_LEN);
    bw_u32(&w, RAFTLOG_FMT_REC_MAGIC);
    bw_u16(&w, h->type);
    bw_zeros(&w, 2);
    bw_u64(&w, h->index);
    bw_u64(&w, h->term);
    bw_u32(&w, h->len);
    bw_u32(&w, (uint32_t)util_xxh3(b, w.used));
    bw_u64(&w, h->data_csum);
    BD_NEVER(w.err || w.left);
}

int raftlog_fmt_rec_decode(const uint8_t b[RAFTLOG_FMT_REC_LEN], struct raftlog_fmt_rec *h)
{
    struct bytes_r r;
    br_init(&r, b, RAFTLOG_FMT_REC_LEN);
    if (br_u32(&r) != RAFTLOG_FMT_REC_MAGIC) return -BD_ECORRUPT;
    h->type = br_u16(&r);
    struct bytes_r zero = r; /* a reserved field under the checksum: judged after it */
    br_zeros(&zero, 2);
    br_skip(&r, 2);
    h->index = br_u64(&r);
    h->term = br_u64(&r);
    h->len = br_u32(&r);
    size_t covered = r.used;
    uint32_t csum = br_u32(&r);
    h->data_csum = br_u64(&r);
    if (csum != (uint32_t)util_xxh3(b, covered)) return -BD_ECORRUPT;
    return zero.err ? -EPROTO : 0;
}

/* ---- snapshot files ------------------------------------------------------------- */

void raftlog_fmt_snap_encode(uint8_t b[RAFTLOG_FMT_SNAP_LEN], const struct raftlog_fmt_snap *s)
{
    struct bytes_w w;
    bw_init(&w, b, RAFTLOG_FMT_SNAP_LEN);
    bw_u32(&w, RAFTLOG_FMT_SNAP_MAGIC);
    bw_u16(&w, RAFTLOG_FMT_VERSION);
    bw_zeros(&w, 2);
    bw_u64(&w, s->term);
    bw_u64(&w, s->index);
    bw_u64(&w, s->conf_index);
    bw_u64(&w, s->log_seq);
    bw_u32(&w, s->conf_len);
    bw_zeros(&w, 4);
    bw_u64(&w, s->data_len);
    bw_u64(&w, util_xxh3(b, w.used));
    BD_NEVER(w.err || w.left);
}

int raftlog_fmt_snap_decode(const uint8_t b[RAFTLOG_FMT_SNAP_LEN], struct raftlog_fmt_snap *s)
{
    struct bytes_r r;
    br_init(&r, b, RAFTLOG_FMT_SNAP_LEN);
    uint32_t magic = br_u32(&r);
    uint16_t version = br_u16(&r);
    br_zeros(&r, 2);
    s->term = br_u64(&r);
    s->index = br_u64(&r);
    s->conf_index = br_u64(&r);
    s->log_seq = br_u64(&r);
    s->conf_len = br_u32(&r);
    br_zeros(&r, 4);
    s->data_len = br_u64(&r);
    size_t covered = r.used;
    uint64_t csum = br_u64(&r);
    if (r.err || magic != RAFTLOG_FMT_SNAP_MAGIC || version != RAFTLOG_FMT_VERSION ||
        csum != util_xxh3(b, covered))
        return -BD_ECORRUPT;
    return 0;
}

void raftlog_fmt_snap_trailer_encode(uint8_t b[RAFTLOG_FMT_SNAP_TRAILER_LEN], uint64_t csum)
{
    struct bytes_w w;
    bw_init(&w, b, RAFTLOG_FMT_SNAP_TRAILER_LEN);
    bw_u64(&w, csum);
}

uint64_t raftlog_fmt_snap_trailer_decode(const uint8_t b[RAFTLOG_FMT_SNAP_TRAILER_LEN])
{
    struct bytes_r r;
    br_init(&r, b, RAFTLOG_FMT_SNAP_TRAILER_LEN);
    return br_u64(&r);
}
