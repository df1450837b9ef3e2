/* test_segment.c: the blob store's bytes on disk (src/store/blob/segment.c),
 * CONTRACT.md §3 "bytes on disk": round trips of segment headers, records
 * and index files; rejection of damaged bytes; every layout pinned to
 * golden bytes (segment header, record, index file, bad list); and the
 * scanner over segments built here and then torn, truncated, bit-flipped
 * in data and in headers, or claiming huge lengths. */
#include "base/bd.h"
#include "base/bytes.h"
#include "store/blob/segment.h"
#include "golden.h"
#include "tap.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* ---- Fixture -------------------------------------------------------------- */

#define STORE 0x5151515151515151ull
#define PART 7

struct segbuf {
    uint8_t *p;
    size_t len, cap;
    uint64_t offs[64];  /* where each record starts */
    uint64_t ends[64];
    unsigned n;
};

static void sb_reserve(struct segbuf *b, size_t more)
{
    if (b->len + more <= b->cap) return;
    b->cap = (b->len + more) * 2;
    b->p = realloc(b->p, b->cap);
}

static void sb_init(struct segbuf *b)
{
    memset(b, 0, sizeof(*b));
    sb_reserve(b, SEG_HDR_LEN);
    struct seg_hdr h = {STORE, PART, 1, 3, 1234};
    seg_hdr_encode(b->p, &h);
    b->len = SEG_HDR_LEN;
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)util_rand64(&seed);
}

/* Append a PUT record of LEN pseudo-random bytes for blob ID. */
static void sb_put(struct segbuf *b, uint64_t id, uint32_t len)
{
    uint8_t *data = malloc(len ? len : 1);
    fill(data, len, id);
    struct seg_rec_hdr h = {.type = SEG_REC_PUT, .store_id = STORE, .blob_id = id,
                            .partition = PART, .raw_len = len, .stored_len = len, .epoch = 3,
                            .seq = id, .data_csum = util_xxh3(data, len)};
    uint64_t total = seg_rec_total_len(len);
    sb_reserve(b, total);
    memset(b->p + b->len, 0, total);
    seg_rec_encode(b->p + b->len, &h, data);
    memcpy(b->p + b->len + seg_rec_meta_len(len), data, len);
    b->offs[b->n] = b->len;
    b->len += total;
    b->ends[b->n++] = b->len;
    free(data);
}

static void sb_tomb(struct segbuf *b, uint64_t id)
{
    struct seg_rec_hdr h = {.type = SEG_REC_TOMBSTONE, .store_id = STORE, .blob_id = id,
                            .partition = PART, .seq = id};
    sb_reserve(b, SEG_REC_HDR_LEN);
    seg_rec_encode(b->p + b->len, &h, NULL);
    b->offs[b->n] = b->len;
    b->len += SEG_REC_HDR_LEN;
    b->ends[b->n++] = b->len;
}

struct scanned {
    uint64_t ids[64];
    bool ok[64];
    unsigned n;
    uint64_t good_end, damaged;
    uint32_t ranges, bad_data;
    int rc;
};

static struct scanned scan(const uint8_t *p, size_t len, bool verify)
{
    struct scanned out = {0};
    struct seg_mem m = {p, len};
    struct seg_src src = {.pread = seg_mem_pread, .arg = &m, .size = len};
    struct seg_scan s = {.src = &src, .store_id = STORE, .partition = PART,
                         .max_data = 1u << 20, .verify_data = verify, .start = SEG_HDR_LEN};
    if (seg_scan_init(&s) < 0) abort();
    struct seg_scan_rec r;
    while ((out.rc = seg_scan_next(&s, &r)) == 1 && out.n < 64) {
        out.ids[out.n] = r.h.blob_id;
        out.ok[out.n++] = r.data_ok;
    }
    out.good_end = s.good_end;
    out.damaged = s.damaged_bytes;
    out.ranges = s.damaged_ranges;
    out.bad_data = s.bad_data;
    seg_scan_fini(&s);
    return out;
}

/* A segment of five records: sizes chosen to cross chunk boundaries. */
static void five(struct segbuf *b)
{
    sb_init(b);
    sb_put(b, 1, 100);
    sb_put(b, 2, 4096);
    sb_tomb(b, 3);
    sb_put(b, 4, 9000);
    sb_put(b, 5, 1);
}

/* Overwrite raw_len and stored_len (offsets 28 and 32 in segment.h's
 * record table) of the record header at HDR, leaving hdr_csum stale: the
 * length rules come before any checksum in every reader. */
static void poke_lens(uint8_t *hdr, uint32_t raw_len, uint32_t stored_len)
{
    struct bytes_w w;
    bw_init(&w, hdr + 28, 8);
    bw_u32(&w, raw_len);
    bw_u32(&w, stored_len);
}

/* ---- Round trips ----------------------------------------------------------- */

/* A segment header decodes to what was encoded; a flipped bit is refused. */
TEST(seg_hdr_round_trip)
{
    uint8_t b[SEG_HDR_LEN];
    struct seg_hdr h = {STORE, PART, 42, 9, 77}, d;
    seg_hdr_encode(b, &h);
    CHECK(seg_hdr_decode(b, &d) == 0);
    CHECK_EQ(d.store_id, STORE);
    CHECK_EQ(d.partition, PART);
    CHECK_EQ(d.seq, 42);
    CHECK_EQ(d.epoch, 9);
    CHECK_EQ(d.created_ms, 77);
    for (unsigned bit = 0; bit < SEG_HDR_LEN * 8; bit += 7) {
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        CHECK(seg_hdr_decode(b, &d) == -BD_ECORRUPT);
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
}

/* Records of many sizes decode to their fields and their chunks verify. */
TEST(record_round_trip)
{
    static const uint32_t sizes[] = {0, 1, 4095, 4096, 4097, 12288, 1u << 20};
    for (unsigned i = 0; i < BD_ARRAY_SIZE(sizes); i++) {
        uint32_t len = sizes[i];
        uint8_t *data = malloc(len + 1);
        fill(data, len, i);
        struct seg_rec_hdr h = {.type = SEG_REC_PUT, .flags = SEG_REC_F_COMPRESSIBLE,
                                .store_id = STORE, .blob_id = 100 + i, .partition = PART,
                                .raw_len = len, .stored_len = len, .epoch = 5, .seq = 9 + i,
                                .data_csum = util_xxh3(data, len)};
        uint8_t *meta = malloc(seg_rec_meta_len(len));
        seg_rec_encode(meta, &h, data);
        struct seg_rec_hdr d;
        CHECK(seg_rec_decode_hdr(meta, SEG_REC_MAX_DATA, &d) == 0);
        CHECK(seg_rec_check_meta(meta, &d) == 0);
        CHECK_EQ(d.blob_id, 100 + i);
        CHECK_EQ(d.raw_len, len);
        CHECK_EQ(d.stored_len, len);
        CHECK_EQ(d.epoch, 5);
        CHECK_EQ(d.seq, 9 + i);
        CHECK_EQ(d.flags, SEG_REC_F_COMPRESSIBLE);
        CHECK_EQ(d.data_csum, util_xxh3(data, len));
        CHECK(seg_rec_check_chunks(meta, &d, 0, data, len) == 0);
        if (len > SEG_REC_CHUNK) {
            /* A ranged read checks only the chunks it covers. */
            CHECK(seg_rec_check_chunks(meta, &d, 1, data + SEG_REC_CHUNK,
                                       BD_MIN(len - SEG_REC_CHUNK, SEG_REC_CHUNK)) == 0);
            data[SEG_REC_CHUNK] ^= 1;
            CHECK(seg_rec_check_chunks(meta, &d, 1, data + SEG_REC_CHUNK,
                                       BD_MIN(len - SEG_REC_CHUNK, SEG_REC_CHUNK)) == -BD_ECSUM);
            CHECK(seg_rec_check_chunks(meta, &d, 0, data, SEG_REC_CHUNK) == 0);
        }
        /* The length bound is the caller's: a 1 MiB record is too big for 64 KiB. */
        if (len > 65536) CHECK(seg_rec_decode_hdr(meta, 65536, &d) == -BD_ECORRUPT);
        free(meta);
        free(data);
    }
}

/* A flipped bit in the table or the header fails the header checksum. */
TEST(record_meta_damage)
{
    uint8_t data[9000];
    fill(data, sizeof(data), 3);
    struct seg_rec_hdr h = {.type = SEG_REC_PUT, .store_id = STORE, .blob_id = 1, .partition = PART,
                            .raw_len = sizeof(data), .stored_len = sizeof(data), .seq = 1,
                            .data_csum = util_xxh3(data, sizeof(data))};
    size_t ml = seg_rec_meta_len(sizeof(data));
    uint8_t meta[SEG_REC_HDR_LEN + 12];
    CHECK_EQ(ml, sizeof(meta));
    seg_rec_encode(meta, &h, data);
    for (size_t byte = 0; byte < ml; byte++) {
        meta[byte] ^= 0x10;
        struct seg_rec_hdr d;
        bool accepted = seg_rec_decode_hdr(meta, SEG_REC_MAX_DATA, &d) == 0 &&
                        seg_rec_check_meta(meta, &d) == 0;
        CHECK(!accepted);
        meta[byte] ^= 0x10;
    }
}

/* Headers that lie are refused before anything trusts their lengths. */
TEST(record_bad_fields)
{
    uint8_t meta[SEG_REC_HDR_LEN + 4];
    uint8_t data[10] = {0};
    struct seg_rec_hdr base = {.type = SEG_REC_PUT, .store_id = STORE, .blob_id = 1,
                               .partition = PART, .raw_len = 10, .stored_len = 10, .seq = 1,
                               .data_csum = util_xxh3(data, 10)};
    struct seg_rec_hdr d, h;
    seg_rec_encode(meta, &base, data);
    CHECK(seg_rec_decode_hdr(meta, SEG_REC_MAX_DATA, &d) == 0);
    /* huge claimed lengths */
    poke_lens(meta, 0xFFFFFFFFu, 0xFFFFFFFFu);
    CHECK(seg_rec_decode_hdr(meta, SEG_REC_MAX_DATA, &d) == -BD_ECORRUPT);
    poke_lens(meta, SEG_REC_MAX_DATA + 1, SEG_REC_MAX_DATA + 1);
    CHECK(seg_rec_decode_hdr(meta, SEG_REC_MAX_DATA, &d) == -BD_ECORRUPT);
    /* stored != raw without compression; compressed larger than raw */
    h = base;
    h.stored_len = 9;
    seg_rec_encode(meta, &h, data);
    CHECK(seg_rec_decode_hdr(meta, SEG_REC_MAX_DATA, &d) == -BD_ECORRUPT);
    h.flags = SEG_REC_F_COMPRESSED;
    h.raw_len = 8;
    seg_rec_encode(meta, &h, data);
    CHECK(seg_rec_decode_hdr(meta, SEG_REC_MAX_DATA, &d) == -BD_ECORRUPT);
    /* unknown type and flags, blob id 0, tombstone with data */
    h = base;
    h.type = 9;
    seg_rec_encode(meta, &h, data);
    CHECK(seg_rec_decode_hdr(meta, SEG_REC_MAX_DATA, &d) == -BD_ECORRUPT);
    h = base;
    h.flags = 0x80;
    seg_rec_encode(meta, &h, data);
    CHECK(seg_rec_decode_hdr(meta, SEG_REC_MAX_DATA, &d) == -BD_ECORRUPT);
    h = base;
    h.blob_id = 0;
    seg_rec_encode(meta, &h, data);
    CHECK(seg_rec_decode_hdr(meta, SEG_REC_MAX_DATA, &d) == -BD_ECORRUPT);
    h = base;
    h.type = SEG_REC_TOMBSTONE;
    seg_rec_encode(meta, &h, data);
    CHECK(seg_rec_decode_hdr(meta, SEG_REC_MAX_DATA, &d) == -BD_ECORRUPT);
    /* wrong magic and version */
    seg_rec_encode(meta, &base, data);
    meta[0] ^= 1;
    CHECK(seg_rec_decode_hdr(meta, SEG_REC_MAX_DATA, &d) == -BD_ECORRUPT);
    meta[0] ^= 1;
    meta[4] = 2;
    CHECK(seg_rec_decode_hdr(meta, SEG_REC_MAX_DATA, &d) == -BD_ECORRUPT);
}

/* An index file round-trips and refuses damage, wrong lengths and
 * entries pointing outside the segment. */
TEST(idx_round_trip)
{
    struct seg_idx_entry e[3] = {
        {.blob_id = 1, .off = 64, .seq = 1, .data_csum = 11, .raw_len = 100, .stored_len = 100,
         .type = SEG_REC_PUT},
        {.blob_id = 2, .off = 240, .seq = 2, .type = SEG_REC_TOMBSTONE},
        {.blob_id = 3, .off = 304, .seq = 3, .data_csum = 33, .raw_len = 9000, .stored_len = 500,
         .type = SEG_REC_PUT, .flags = SEG_REC_F_COMPRESSED | SEG_REC_F_COMPRESSIBLE},
    };
    size_t len = SEG_IDX_HDR_LEN + 3 * SEG_IDX_ENTRY_LEN;
    uint8_t buf[SEG_IDX_HDR_LEN + 3 * SEG_IDX_ENTRY_LEN];
    struct seg_idx_hdr h = {.store_id = STORE, .partition = PART, .seg_seq = 4,
                            .seg_len = 304 + seg_rec_total_len(500), .max_epoch = 8};
    seg_idx_encode(buf, &h, e, 3);
    struct seg_idx_hdr d;
    CHECK(seg_idx_decode_hdr(buf, len, &d) == 0);
    CHECK_EQ(d.count, 3);
    CHECK_EQ(d.seg_seq, 4);
    CHECK_EQ(d.max_epoch, 8);
    CHECK(seg_idx_check_entries(&d, buf + SEG_IDX_HDR_LEN) == 0);
    for (int i = 0; i < 3; i++) {
        struct seg_idx_entry x;
        CHECK(seg_idx_entry_decode(buf + SEG_IDX_HDR_LEN + i * SEG_IDX_ENTRY_LEN, &d,
                                   SEG_REC_MAX_DATA, &x) == 0);
        CHECK_EQ(x.blob_id, e[i].blob_id);
        CHECK_EQ(x.off, e[i].off);
        CHECK_EQ(x.stored_len, e[i].stored_len);
        CHECK_EQ(x.flags, e[i].flags);
    }
    CHECK(seg_idx_decode_hdr(buf, len - 1, &d) == -BD_ECORRUPT);
    buf[SEG_IDX_HDR_LEN + 5] ^= 1;
    CHECK(seg_idx_check_entries(&d, buf + SEG_IDX_HDR_LEN) == -BD_ECORRUPT);
    buf[SEG_IDX_HDR_LEN + 5] ^= 1;
    d.seg_len = 304; /* the last record would end past the segment */
    struct seg_idx_entry x;
    CHECK(seg_idx_entry_decode(buf + SEG_IDX_HDR_LEN + 2 * SEG_IDX_ENTRY_LEN, &d, SEG_REC_MAX_DATA,
                               &x) == -BD_ECORRUPT);
    buf[20] ^= 1; /* count */
    CHECK(seg_idx_decode_hdr(buf, len, &d) == -BD_ECORRUPT);
}

/* ---- Golden bytes ---------------------------------------------------------- */

/* Each layout of segment.h pinned to bytes: a fixed struct encodes to the
 * hex below and the hex decodes to the struct.  The hex was written by
 * the encoders as they were before they moved to bytes.h cursors, so
 * these tests prove the move kept every byte; a failure means a layout
 * changed: bump the format's version and its table in segment.h, then
 * the hex (golden.h). */

#define G_STORE 0x0123456789abcdefull
#define G_BLOB 0xfedcba9876543210ull
#define G_CSUM 0x0badc0ffee0dd00dull

/* clang-format off */
static const char g_seg_hdr_hex[] =
    "42445347"          /*   0 magic "BDSG" */
    "0100"              /*   4 version 1 */
    "0000"              /*   6 reserved */
    "efcdab8967452301"  /*   8 store_id */
    "07000000"          /*  16 partition */
    "00000000"          /*  20 reserved */
    "8877665544332211"  /*  24 seq */
    "0900000000000000"  /*  32 epoch */
    "5f4e3d2b8c010000"  /*  40 created_ms */
    "000000000000000000000000" /*  48 reserved */
    "d33b562c"          /*  60 hdr_csum */;
/* clang-format on */

/* The segment header: fixed fields <-> fixed bytes, checksum included. */
TEST(golden_seg_hdr)
{
    struct seg_hdr h = {.store_id = G_STORE, .partition = 7, .seq = 0x1122334455667788ull,
                        .epoch = 9, .created_ms = 0x18c2b3d4e5full};
    uint8_t b[SEG_HDR_LEN];
    seg_hdr_encode(b, &h);
    CHECK(golden_same(b, sizeof(b), g_seg_hdr_hex));
    size_t len;
    const uint8_t *in = golden_buf(g_seg_hdr_hex, &len);
    struct seg_hdr d;
    CHECK_EQ(len, SEG_HDR_LEN);
    CHECK(seg_hdr_decode(in, &d) == 0);
    CHECK_EQ(d.store_id, h.store_id);
    CHECK_EQ(d.partition, h.partition);
    CHECK_EQ(d.seq, h.seq);
    CHECK_EQ(d.epoch, h.epoch);
    CHECK_EQ(d.created_ms, h.created_ms);
}

/* clang-format off */
static const char g_rec_put_hex[] =
    "42445231"          /*   0 magic "BDR1" */
    "01"                /*   4 version 1 */
    "01"                /*   5 type PUT */
    "0200"              /*   6 flags COMPRESSIBLE */
    "efcdab8967452301"  /*   8 store_id */
    "1032547698badcfe"  /*  16 blob_id */
    "07000000"          /*  24 partition */
    "88130000"          /*  28 raw_len 5000 */
    "88130000"          /*  32 stored_len 5000 */
    "71397c3a"          /*  36 hdr_csum */
    "0900000000000000"  /*  40 epoch */
    "4200000000000000"  /*  48 seq */
    "0dd00deeffc0ad0b"  /*  56 data_csum */
    "7ee32b84"          /*  64 chunk 0 */
    "5a9591c5"          /*  68 chunk 1 */;
/* clang-format on */

/* A record of 5000 bytes (two chunks): header and chunk table <-> fixed
 * bytes; both checksums cover the fixed data below. */
TEST(golden_rec_put)
{
    static uint8_t data[5000];
    for (size_t i = 0; i < sizeof(data); i++) data[i] = (uint8_t)(i * 7 + 3);
    struct seg_rec_hdr h = {.type = SEG_REC_PUT, .flags = SEG_REC_F_COMPRESSIBLE,
                            .store_id = G_STORE, .blob_id = G_BLOB, .partition = 7,
                            .raw_len = 5000, .stored_len = 5000, .epoch = 9, .seq = 0x42,
                            .data_csum = G_CSUM};
    uint8_t b[SEG_REC_HDR_LEN + 8];
    CHECK_EQ(seg_rec_meta_len(5000), sizeof(b));
    seg_rec_encode(b, &h, data);
    CHECK(golden_same(b, sizeof(b), g_rec_put_hex));
    size_t len;
    const uint8_t *in = golden_buf(g_rec_put_hex, &len);
    struct seg_rec_hdr d;
    CHECK_EQ(len, sizeof(b));
    CHECK(seg_rec_decode_hdr(in, SEG_REC_MAX_DATA, &d) == 0);
    CHECK_EQ(d.type, h.type);
    CHECK_EQ(d.flags, h.flags);
    CHECK_EQ(d.store_id, h.store_id);
    CHECK_EQ(d.blob_id, h.blob_id);
    CHECK_EQ(d.partition, h.partition);
    CHECK_EQ(d.raw_len, h.raw_len);
    CHECK_EQ(d.stored_len, h.stored_len);
    CHECK_EQ(d.epoch, h.epoch);
    CHECK_EQ(d.seq, h.seq);
    CHECK_EQ(d.data_csum, h.data_csum);
    CHECK(seg_rec_check_meta(in, &d) == 0);
    CHECK(seg_rec_check_chunks(in, &d, 0, data, sizeof(data)) == 0);
}

/* clang-format off */
static const char g_rec_tomb_hex[] =
    "42445231"          /*   0 magic "BDR1" */
    "01"                /*   4 version 1 */
    "02"                /*   5 type TOMBSTONE */
    "0000"              /*   6 flags */
    "efcdab8967452301"  /*   8 store_id */
    "7700000000000000"  /*  16 blob_id */
    "07000000"          /*  24 partition */
    "00000000"          /*  28 raw_len */
    "00000000"          /*  32 stored_len */
    "acbb1f99"          /*  36 hdr_csum */
    "0000000000000000"  /*  40 epoch */
    "4300000000000000"  /*  48 seq */
    "0000000000000000"  /*  56 data_csum */;
/* clang-format on */

/* A tombstone: no data, no chunk table. */
TEST(golden_rec_tombstone)
{
    struct seg_rec_hdr h = {.type = SEG_REC_TOMBSTONE, .store_id = G_STORE, .blob_id = 0x77,
                            .partition = 7, .seq = 0x43};
    uint8_t b[SEG_REC_HDR_LEN];
    CHECK_EQ(seg_rec_meta_len(0), sizeof(b));
    seg_rec_encode(b, &h, NULL);
    CHECK(golden_same(b, sizeof(b), g_rec_tomb_hex));
    size_t len;
    const uint8_t *in = golden_buf(g_rec_tomb_hex, &len);
    struct seg_rec_hdr d;
    CHECK_EQ(len, sizeof(b));
    CHECK(seg_rec_decode_hdr(in, SEG_REC_MAX_DATA, &d) == 0);
    CHECK_EQ(d.type, SEG_REC_TOMBSTONE);
    CHECK_EQ(d.flags, 0);
    CHECK_EQ(d.store_id, G_STORE);
    CHECK_EQ(d.blob_id, 0x77);
    CHECK_EQ(d.partition, 7);
    CHECK_EQ(d.raw_len, 0);
    CHECK_EQ(d.stored_len, 0);
    CHECK_EQ(d.epoch, 0);
    CHECK_EQ(d.seq, 0x43);
    CHECK_EQ(d.data_csum, 0);
    CHECK(seg_rec_check_meta(in, &d) == 0);
}

/* clang-format off */
static const char g_idx_hex[] =
    "42444958"          /*   0 magic "BDIX" */
    "0100"              /*   4 version 1 */
    "0000"              /*   6 reserved */
    "efcdab8967452301"  /*   8 store_id */
    "07000000"          /*  16 partition */
    "02000000"          /*  20 count 2 */
    "0300000000000000"  /*  24 seg_seq */
    "0000010000000000"  /*  32 seg_len */
    "0900000000000000"  /*  40 max_epoch */
    "c04130cc403b7580"  /*  48 entries_csum */
    "00000000"          /*  56 reserved */
    "fbccc423"          /*  60 hdr_csum */
    "1032547698badcfe"  /*  64 [0] blob_id */
    "4000000000000000"  /*  72 [0] off */
    "4200000000000000"  /*  80 [0] seq */
    "0dd00deeffc0ad0b"  /*  88 [0] data_csum */
    "88130000"          /*  96 [0] raw_len */
    "88130000"          /* 100 [0] stored_len */
    "01"                /* 104 [0] type */
    "00"                /* 105 [0] pad */
    "0200"              /* 106 [0] flags */
    "00000000"          /* 108 [0] reserved */
    "7700000000000000"  /* 112 [1] blob_id */
    "1014000000000000"  /* 120 [1] off */
    "4300000000000000"  /* 128 [1] seq */
    "0000000000000000"  /* 136 [1] data_csum */
    "00000000"          /* 144 [1] raw_len */
    "00000000"          /* 148 [1] stored_len */
    "02"                /* 152 [1] type */
    "00"                /* 153 [1] pad */
    "0000"              /* 154 [1] flags */
    "00000000"          /* 156 [1] reserved */;
/* clang-format on */

/* An index file of two entries (a put and a tombstone). */
TEST(golden_idx)
{
    const struct seg_idx_entry e[2] = {
        {.blob_id = G_BLOB, .off = 64, .seq = 0x42, .data_csum = G_CSUM, .raw_len = 5000,
         .stored_len = 5000, .type = SEG_REC_PUT, .flags = SEG_REC_F_COMPRESSIBLE},
        {.blob_id = 0x77, .off = 5136, .seq = 0x43, .type = SEG_REC_TOMBSTONE},
    };
    struct seg_idx_hdr h = {.store_id = G_STORE, .partition = 7, .seg_seq = 3,
                            .seg_len = 0x10000, .max_epoch = 9};
    uint8_t b[SEG_IDX_HDR_LEN + 2 * SEG_IDX_ENTRY_LEN];
    seg_idx_encode(b, &h, e, 2);
    CHECK(golden_same(b, sizeof(b), g_idx_hex));
    CHECK_EQ(h.count, 2);
    size_t len;
    const uint8_t *in = golden_buf(g_idx_hex, &len);
    struct seg_idx_hdr d;
    CHECK(seg_idx_decode_hdr(in, len, &d) == 0);
    CHECK_EQ(d.store_id, G_STORE);
    CHECK_EQ(d.partition, 7);
    CHECK_EQ(d.count, 2);
    CHECK_EQ(d.seg_seq, 3);
    CHECK_EQ(d.seg_len, 0x10000);
    CHECK_EQ(d.max_epoch, 9);
    CHECK_EQ(d.entries_csum, h.entries_csum);
    CHECK(seg_idx_check_entries(&d, in + SEG_IDX_HDR_LEN) == 0);
    for (unsigned i = 0; i < 2; i++) {
        struct seg_idx_entry x;
        CHECK(seg_idx_entry_decode(in + SEG_IDX_HDR_LEN + i * SEG_IDX_ENTRY_LEN, &d,
                                   SEG_REC_MAX_DATA, &x) == 0);
        CHECK_EQ(x.blob_id, e[i].blob_id);
        CHECK_EQ(x.off, e[i].off);
        CHECK_EQ(x.seq, e[i].seq);
        CHECK_EQ(x.data_csum, e[i].data_csum);
        CHECK_EQ(x.raw_len, e[i].raw_len);
        CHECK_EQ(x.stored_len, e[i].stored_len);
        CHECK_EQ(x.type, e[i].type);
        CHECK_EQ(x.flags, e[i].flags);
    }
}

/* clang-format off */
static const char g_bad_hex[] =
    "4244424c"          /*   0 magic "BDBL" */
    "0100"              /*   4 version 1 */
    "0000"              /*   6 reserved */
    "02000000"          /*   8 count 2 */
    "91ec203b"          /*  12 entries_csum */
    "1032547698badcfe"  /*  16 [0] blob_id */
    "07000000"          /*  24 [0] partition */
    "88130000"          /*  28 [0] raw_len */
    "0300000000000000"  /*  32 [0] seg_seq */
    "4000000000000000"  /*  40 [0] off */
    "0dd00deeffc0ad0b"  /*  48 [0] csum */
    "9900000000000000"  /*  56 [1] blob_id */
    "08000000"          /*  64 [1] partition */
    "00100000"          /*  68 [1] raw_len */
    "0000000000000000"  /*  72 [1] seg_seq */
    "0000000000000000"  /*  80 [1] off */
    "3412000000000000"  /*  88 [1] csum */;
/* clang-format on */

/* A bad list of two entries (one of a blob with no copy left). */
TEST(golden_bad_list)
{
    const struct seg_bad e[2] = {
        {.blob_id = G_BLOB, .partition = 7, .raw_len = 5000, .seg_seq = 3, .off = 64,
         .csum = G_CSUM},
        {.blob_id = 0x99, .partition = 8, .raw_len = 4096, .csum = 0x1234},
    };
    uint8_t b[SEG_BAD_HDR_LEN + 2 * SEG_BAD_ENTRY_LEN];
    seg_bad_encode(b, e, 2);
    CHECK(golden_same(b, sizeof(b), g_bad_hex));
    size_t len;
    const uint8_t *in = golden_buf(g_bad_hex, &len);
    uint32_t n = 0;
    CHECK(seg_bad_decode_hdr(in, len, &n) == 0);
    CHECK_EQ(n, 2);
    for (unsigned i = 0; i < 2; i++) {
        struct seg_bad x;
        seg_bad_entry_decode(in + SEG_BAD_HDR_LEN + i * SEG_BAD_ENTRY_LEN, &x);
        CHECK_EQ(x.blob_id, e[i].blob_id);
        CHECK_EQ(x.partition, e[i].partition);
        CHECK_EQ(x.raw_len, e[i].raw_len);
        CHECK_EQ(x.seg_seq, e[i].seg_seq);
        CHECK_EQ(x.off, e[i].off);
        CHECK_EQ(x.csum, e[i].csum);
    }
}

/* ---- Scanning ---------------------------------------------------------------- */

/* Every record of an intact segment is found, in order, with good data. */
TEST(scan_intact)
{
    struct segbuf b;
    five(&b);
    struct scanned s = scan(b.p, b.len, true);
    CHECK_EQ(s.rc, 0);
    CHECK_EQ(s.n, 5);
    for (unsigned i = 0; i < 5; i++) {
        CHECK_EQ(s.ids[i], i + 1);
        CHECK(s.ok[i]);
    }
    CHECK_EQ(s.good_end, b.len);
    CHECK_EQ(s.ranges, 0);
    free(b.p);
}

/* Cut at every length inside the last record: the others are all found
 * and good_end is where the last complete record ends. */
TEST(scan_torn_every_length)
{
    struct segbuf b;
    five(&b);
    sb_put(&b, 6, 5000);
    for (size_t cut = b.offs[5]; cut < b.len; cut++) {
        struct scanned s = scan(b.p, cut, true);
        CHECK_EQ(s.rc, 0);
        CHECK_EQ(s.n, 5);
        CHECK_EQ(s.ids[4], 5);
        CHECK_EQ(s.good_end, b.offs[5]);
        CHECK_EQ(s.ranges, 0); /* a torn tail is not damage between records */
    }
    struct scanned s = scan(b.p, b.len, true);
    CHECK_EQ(s.n, 6);
    free(b.p);
}

/* A segment truncated in the middle of its records keeps every record
 * before the cut. */
TEST(scan_truncated)
{
    struct segbuf b;
    five(&b);
    struct scanned s = scan(b.p, b.offs[2] + 10, true);
    CHECK_EQ(s.n, 2);
    CHECK_EQ(s.good_end, b.ends[1]);
    s = scan(b.p, SEG_HDR_LEN, true);
    CHECK_EQ(s.n, 0);
    CHECK_EQ(s.good_end, SEG_HDR_LEN);
    s = scan(b.p, 10, true);
    CHECK_EQ(s.n, 0);
    free(b.p);
}

/* A flipped bit in one record's data: that record is returned with
 * data_ok false, the others are good, and good_end passes it only when a
 * good record follows. */
TEST(scan_data_flip)
{
    struct segbuf b;
    five(&b);
    b.p[b.offs[3] + seg_rec_meta_len(9000) + 5000] ^= 0x40;
    struct scanned s = scan(b.p, b.len, true);
    CHECK_EQ(s.n, 5);
    CHECK(s.ok[0] && s.ok[1] && s.ok[2] && !s.ok[3] && s.ok[4]);
    CHECK_EQ(s.bad_data, 1);
    CHECK_EQ(s.good_end, b.len);
    /* without data verification the header alone is trusted */
    s = scan(b.p, b.len, false);
    CHECK(s.ok[3]);
    /* flipped in the last record: it is not counted as good */
    free(b.p);
    five(&b);
    b.p[b.offs[4] + seg_rec_meta_len(1)] ^= 1;
    s = scan(b.p, b.len, true);
    CHECK_EQ(s.n, 5);
    CHECK(!s.ok[4]);
    CHECK_EQ(s.good_end, b.ends[3]);
    free(b.p);
}

/* A damaged header hides only its own record: the scanner steps over the
 * damage and finds every valid record after it. */
TEST(scan_header_flip_keeps_later_records)
{
    for (unsigned victim = 0; victim < 5; victim++) {
        for (unsigned byte = 0; byte < SEG_REC_HDR_LEN; byte += 5) {
            struct segbuf b;
            five(&b);
            b.p[b.offs[victim] + byte] ^= 0x08;
            struct scanned s = scan(b.p, b.len, true);
            CHECK_EQ(s.n, 4);
            unsigned k = 0;
            for (unsigned i = 0; i < 5; i++) {
                if (i == victim) continue;
                CHECK_EQ(s.ids[k], i + 1);
                CHECK(s.ok[k]);
                k++;
            }
            if (victim < 4) {
                CHECK_EQ(s.ranges, 1);
                CHECK_EQ(s.damaged, b.offs[victim + 1] - b.offs[victim]);
                CHECK_EQ(s.good_end, b.len);
            } else {
                CHECK_EQ(s.good_end, b.ends[3]);
            }
            free(b.p);
        }
    }
}

/* A region of zeros or garbage between records is skipped. */
TEST(scan_garbage_between)
{
    struct segbuf b;
    sb_init(&b);
    sb_put(&b, 1, 300);
    sb_reserve(&b, 4096);
    fill(b.p + b.len, 4096, 99);
    b.len += 4096;
    sb_put(&b, 2, 300);
    sb_reserve(&b, 4096);
    memset(b.p + b.len, 0, 4096);
    b.len += 4096;
    sb_put(&b, 3, 300);
    struct scanned s = scan(b.p, b.len, true);
    CHECK_EQ(s.n, 3);
    CHECK_EQ(s.ranges, 2);
    CHECK_EQ(s.good_end, b.len);
    free(b.p);
}

/* A record claiming a length past the end of the segment (a huge one
 * included) is not trusted; later records are still found. */
TEST(scan_huge_claimed_length)
{
    struct segbuf b;
    five(&b);
    struct seg_rec_hdr h = {.type = SEG_REC_PUT, .store_id = STORE, .blob_id = 77,
                            .partition = PART, .raw_len = 60u << 20, .stored_len = 60u << 20,
                            .seq = 77};
    /* Write only the header of a 60 MiB record over record 2 (its checksum
     * cannot be right without the table, which is not there). */
    uint8_t hdr[SEG_REC_HDR_LEN];
    memcpy(hdr, b.p + b.offs[1], SEG_REC_HDR_LEN);
    poke_lens(b.p + b.offs[1], h.raw_len, h.stored_len);
    struct scanned s = scan(b.p, b.len, true);
    CHECK_EQ(s.n, 4);
    CHECK_EQ(s.ids[1], 3);
    memcpy(b.p + b.offs[1], hdr, SEG_REC_HDR_LEN);
    /* A valid 4 GiB-claiming header is refused by the length rules. */
    struct seg_rec_hdr o;
    CHECK(seg_rec_decode_hdr(hdr, SEG_REC_MAX_DATA, &o) == 0);
    poke_lens(b.p + b.offs[1], o.raw_len, 0xFFFFFFF0u);
    s = scan(b.p, b.len, true);
    CHECK_EQ(s.n, 4);
    free(b.p);
}

/* Records of another store or partition (say, a blockd image stored as a
 * blob) are never taken for ours. */
TEST(scan_foreign_records)
{
    struct segbuf b;
    five(&b);
    uint8_t data[100];
    fill(data, sizeof(data), 1);
    struct seg_rec_hdr h = {.type = SEG_REC_PUT, .store_id = STORE + 1, .blob_id = 50,
                            .partition = PART, .raw_len = 100, .stored_len = 100, .seq = 50,
                            .data_csum = util_xxh3(data, 100)};
    seg_rec_encode(b.p + b.offs[0], &h, data); /* same size as record 1 */
    struct scanned s = scan(b.p, b.len, true);
    CHECK_EQ(s.n, 4);
    CHECK_EQ(s.ids[0], 2);
    h.store_id = STORE;
    h.partition = PART + 1;
    seg_rec_encode(b.p + b.offs[0], &h, data);
    s = scan(b.p, b.len, true);
    CHECK_EQ(s.n, 4);
    free(b.p);
}

/* ---- Corpus ------------------------------------------------------------------ */

/* Append a compressed record: LEN bytes with period 16, zstd level 1. */
static void sb_put_compressed(struct segbuf *b, uint64_t id, uint32_t len)
{
    uint8_t *raw = malloc(len);
    fill(raw, 16, id);
    for (uint32_t i = 16; i < len; i++) raw[i] = raw[i % 16];
    size_t cap = ZSTD_compressBound(len);
    uint8_t *z = malloc(cap);
    size_t zl = ZSTD_compress(z, cap, raw, len, 1);
    struct seg_rec_hdr h = {.type = SEG_REC_PUT,
                            .flags = SEG_REC_F_COMPRESSED | SEG_REC_F_COMPRESSIBLE,
                            .store_id = STORE, .blob_id = id, .partition = PART, .raw_len = len,
                            .stored_len = (uint32_t)zl, .seq = id,
                            .data_csum = util_xxh3(raw, len)};
    uint64_t total = seg_rec_total_len((uint32_t)zl);
    sb_reserve(b, total);
    memset(b->p + b->len, 0, total);
    seg_rec_encode(b->p + b->len, &h, z);
    memcpy(b->p + b->len + seg_rec_meta_len((uint32_t)zl), z, zl);
    b->offs[b->n] = b->len;
    b->len += total;
    b->ends[b->n++] = b->len;
    free(z);
    free(raw);
}

/* fuzz_segment.c's mode 3 input: the raw length it claims (u32), then
 * the frame. */
static void zstd_seed(uint8_t *z, uint32_t raw_len)
{
    struct bytes_w w;
    bw_init(&w, z, 4);
    bw_u32(&w, raw_len);
}

static void seed(const char *dir, const char *name, uint8_t mode, const uint8_t *p, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(&mode, 1, 1, f);
    fwrite(p, 1, len, f);
    fclose(f);
}

/* Write fuzz seeds for tests/fuzz/fuzz_segment.c. */
TAP_CORPUS(write_corpus)
{
    struct segbuf b;
    five(&b);
    seed(dir, "scan_five", 0, b.p, b.len);
    seed(dir, "record_one", 1, b.p + b.offs[3], b.ends[3] - b.offs[3]);
    seed(dir, "scan_torn", 0, b.p, b.offs[4] + 40);
    b.p[b.offs[1] + 20] ^= 1;
    seed(dir, "scan_header_flip", 0, b.p, b.len);
    b.p[b.offs[1] + 20] ^= 1;
    b.p[b.offs[3] + 200] ^= 1;
    seed(dir, "scan_data_flip", 0, b.p, b.len);
    free(b.p);
    sb_init(&b);
    sb_put_compressed(&b, 9, 100000);
    sb_put(&b, 10, 33);
    sb_tomb(&b, 9);
    seed(dir, "scan_compressed", 0, b.p, b.len);
    struct seg_rec_hdr rh;
    if (seg_rec_decode_hdr(b.p + b.offs[0], SEG_REC_MAX_DATA, &rh) < 0) abort();
    uint32_t stored = rh.stored_len;
    const uint8_t *frame = b.p + b.offs[0] + seg_rec_meta_len(stored);
    uint8_t *z = malloc(stored + 4);
    memcpy(z + 4, frame, stored);
    zstd_seed(z, 100000);
    seed(dir, "zstd_ok", 3, z, stored + 4);
    zstd_seed(z, 99999); /* the frame says 100000 */
    seed(dir, "zstd_lie", 3, z, stored + 4);
    free(z);
    free(b.p);
    struct seg_idx_entry e[2] = {
        {.blob_id = 1, .off = 64, .seq = 1, .data_csum = 11, .raw_len = 100, .stored_len = 100,
         .type = SEG_REC_PUT},
        {.blob_id = 2, .off = 240, .seq = 2, .type = SEG_REC_TOMBSTONE},
    };
    uint8_t ib[SEG_IDX_HDR_LEN + 2 * SEG_IDX_ENTRY_LEN];
    struct seg_idx_hdr h = {.store_id = STORE, .partition = PART, .seg_seq = 1, .seg_len = 304};
    seg_idx_encode(ib, &h, e, 2);
    seed(dir, "idx_two", 2, ib, sizeof(ib));
}
