/* segment.h: the blob store's bytes on disk (DESIGN.md §6, CONTRACT.md §3
 * "bytes on disk").  Four self-describing formats, each encoded and
 * decoded side by side in segment.c, all little endian.  Each table below
 * is the order of the bytes.h cursor calls that write and read it;
 * reserved bytes are written as zero and (but for the bad list's, see
 * there) refused unless zero.  test_segment.c pins every layout to golden
 * bytes: change a table and its version together.
 *
 * 1. A segment file  p<PARTITION>/<SEQ>.seg  starts with a segment header
 *    and continues with records, back to back, each starting at a multiple
 *    of 8.  The segment being written may end in up to SEG_DIO_ALIGN - 1
 *    zero bytes past its last record (the direct-I/O writer writes whole
 *    4 KiB blocks, blobstore.c): they are not part of the segment's logical
 *    length, zeros never parse as a record (no magic), the next record
 *    overwrites them, recovery cuts them like a torn tail, and sealing
 *    truncates them before the index file records the exact length.
 *
 *  OFFSET SIZE FIELD        NOTES
 *    0     4   magic        SEG_MAGIC "BDSG"
 *    4     2   version      SEG_VERSION
 *    6     2   reserved     zero
 *    8     8   store_id     random id of the store (store.meta); records of
 *                           another store (a blockd image stored in a blob)
 *                           are never taken for ours
 *   16     4   partition
 *   20     4   reserved     zero
 *   24     8   seq          segment sequence number within the partition
 *   32     8   epoch        the partition's highest epoch when created
 *   40     8   created_ms   wall clock, for humans only
 *   48    12   reserved     zero
 *   60     4   hdr_csum     low 32 bits of XXH3-64 of bytes 0..59
 *
 * 2. A record (a stored blob, or a tombstone for a deleted one):
 *
 *  OFFSET SIZE FIELD        NOTES
 *    0     4   magic        SEG_REC_MAGIC "BDR1"
 *    4     1   version      SEG_REC_VERSION
 *    5     1   type         SEG_REC_PUT or SEG_REC_TOMBSTONE
 *    6     2   flags        SEG_REC_F_COMPRESSED (data is one zstd frame),
 *                           SEG_REC_F_COMPRESSIBLE (the client allowed it)
 *    8     8   store_id     as in the segment header
 *   16     8   blob_id      never 0
 *   24     4   partition
 *   28     4   raw_len      the blob's length
 *   32     4   stored_len   data bytes below (== raw_len unless compressed)
 *   36     4   hdr_csum     low 32 bits of XXH3-64 of bytes 0..35, 40..63
 *                           and the chunk table (SEG_REC_CSUM_OFF)
 *   40     8   epoch        partition epoch the put carried (0: tombstone)
 *   48     8   seq          store-wide record sequence; kept by compaction
 *   56     8   data_csum    XXH3-64 of the raw (uncompressed) blob
 *   64   4*n   chunk table  n = ceil(stored_len / SEG_REC_CHUNK); entry i is
 *                           the low 32 bits of XXH3-64 of stored bytes
 *                           [i*SEG_REC_CHUNK, (i+1)*SEG_REC_CHUNK)
 *    .   stored_len  data
 *    .   0..7  zero padding to the next multiple of 8
 *
 *    Why per-chunk checksums: a ranged GET of 4 KiB from a 1 MiB blob reads
 *    and verifies one 4 KiB chunk (plus the table), not the whole blob.
 *    SEG_REC_CHUNK is the block size: the proxy's extents are 4 KiB aligned.
 *    Why the header checksum covers the table: a flipped table entry must
 *    not make a good chunk look bad, or a bad one good.
 *
 * 3. An index file  <SEQ>.idx  written when a segment is sealed, so a
 *    restart reads one small file instead of every record header:
 *
 *  OFFSET SIZE FIELD        NOTES
 *    0     4   magic        SEG_IDX_MAGIC "BDIX"
 *    4     2   version      SEG_IDX_VERSION
 *    6     2   reserved     zero
 *    8     8   store_id
 *   16     4   partition
 *   20     4   count        entries that follow
 *   24     8   seg_seq      the segment it describes
 *   32     8   seg_len      that segment's exact file length (verified)
 *   40     8   max_epoch    highest epoch in the segment (header included)
 *   48     8   entries_csum XXH3-64 of the entries
 *   56     4   reserved     zero
 *   60     4   hdr_csum     low 32 bits of XXH3-64 of bytes 0..59
 *   64  48*count entries    one per record, in segment order, each:
 *
 *        0     8   blob_id
 *        8     8   off          where the record starts in the segment
 *       16     8   seq          the record's
 *       24     8   data_csum    the record's
 *       32     4   raw_len
 *       36     4   stored_len
 *       40     1   type         enum seg_rec_type
 *       41     1   reserved     zero
 *       42     2   flags        SEG_REC_F_*
 *       44     4   reserved     zero
 *
 * 4. The bad list  bad.list  (one per store, rewritten atomically when it
 *    changes): the blobs found bad, so that they stay unserved (and
 *    healable) across restarts, even once compaction dropped their record:
 *
 *  OFFSET SIZE FIELD        NOTES
 *    0     4   magic        SEG_BAD_MAGIC "BDBL"
 *    4     2   version      SEG_BAD_VERSION
 *    6     2   reserved     zero; not checked on read: no checksum covers
 *                           it and version 1 readers never looked, so a
 *                           list damaged only there stays usable
 *    8     4   count        entries that follow (<= SEG_BAD_MAX)
 *   12     4   entries_csum low 32 bits of XXH3-64 of the entries
 *   16  40*count entries    each:
 *
 *        0     8   blob_id
 *        8     4   partition
 *       12     4   raw_len
 *       16     8   seg_seq      the bad record's segment; 0: no copy left
 *       24     8   off          the bad record's offset in it
 *       32     8   csum         XXH3-64 of the blob
 *
 * Every decoder bounds every length (by SEG_REC_MAX_DATA, by the caller's
 * maximum, and by the bytes actually present) before anything is
 * allocated or read, and returns -BD_ECORRUPT for bytes that do not
 * validate; nothing here asserts on disk bytes.
 *
 * Names: seg_ / SEG_ is this header's short form (segment.h, segment.c):
 * the segment header is seg_hdr_*, records seg_rec_* / SEG_REC_*, index
 * files seg_idx_* / SEG_IDX_*, the bad list seg_bad_* / SEG_BAD_*, the
 * scanner seg_scan_*.
 *
 * The scanner (seg_scan) walks a segment through a read callback, so the
 * same code serves recovery (through struct fileio), the scrubber, and the
 * fuzz target (over a memory buffer).  It returns every record whose
 * header validates; after a damaged region it steps forward 8 bytes at a
 * time looking for the next valid header, so valid records that follow a
 * damaged one are found (CONTRACT.md §3: never truncate at the first bad
 * record when valid records follow). */
#ifndef BD_SEGMENT_H
#define BD_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/bd.h"

#define SEG_MAGIC 0x47534442u /* "BDSG" */
#define SEG_VERSION 1
#define SEG_HDR_LEN 64

#define SEG_REC_MAGIC 0x31524442u /* "BDR1" */
#define SEG_REC_VERSION 1
#define SEG_REC_HDR_LEN 64
#define SEG_REC_CSUM_OFF 36 /* hdr_csum, which the header checksum skips */
#define SEG_REC_CHUNK 4096u
#define SEG_REC_ALIGN 8u
/* The block the direct-I/O writer writes in: offsets, lengths and buffer
 * addresses of its writes are multiples of it (any logical block size up
 * to 4 KiB). */
#define SEG_DIO_ALIGN 4096u
/* The largest blob a record can hold, whatever the configuration says. */
#define SEG_REC_MAX_DATA (64u << 20)

#define SEG_IDX_MAGIC 0x58494442u /* "BDIX" */
#define SEG_IDX_VERSION 1
#define SEG_IDX_HDR_LEN 64
#define SEG_IDX_ENTRY_LEN 48
/* Entries an index file may claim: a segment of 4 GiB of empty records. */
#define SEG_IDX_MAX_ENTRIES ((1ull << 32) / SEG_REC_HDR_LEN)

#define SEG_BAD_MAGIC 0x4c424442u /* "BDBL" */
#define SEG_BAD_VERSION 1
#define SEG_BAD_HDR_LEN 16
#define SEG_BAD_ENTRY_LEN 40
#define SEG_BAD_MAX (1u << 20)

enum seg_rec_type { SEG_REC_PUT = 1, SEG_REC_TOMBSTONE = 2 };
#define SEG_REC_F_COMPRESSED 0x1
#define SEG_REC_F_COMPRESSIBLE 0x2
#define SEG_REC_F_KNOWN (SEG_REC_F_COMPRESSED | SEG_REC_F_COMPRESSIBLE)

struct seg_hdr {
    uint64_t store_id;
    uint32_t partition;
    uint64_t seq;
    uint64_t epoch;
    uint64_t created_ms;
};

struct seg_rec_hdr {
    uint8_t type;        /* enum seg_rec_type */
    uint16_t flags;      /* SEG_REC_F_* */
    uint64_t store_id;
    uint64_t blob_id;
    uint32_t partition;
    uint32_t raw_len;
    uint32_t stored_len;
    uint64_t epoch;
    uint64_t seq;
    uint64_t data_csum;
};

struct seg_idx_hdr {
    uint64_t store_id;
    uint32_t partition;
    uint32_t count;
    uint64_t seg_seq;
    uint64_t seg_len;
    uint64_t max_epoch;
    uint64_t entries_csum;
};

struct seg_idx_entry {
    uint64_t blob_id;
    uint64_t off;        /* record offset in the segment */
    uint64_t seq;
    uint64_t data_csum;
    uint32_t raw_len;
    uint32_t stored_len;
    uint8_t type;        /* enum seg_rec_type */
    uint16_t flags;
};

/* An entry of the bad list (blobscan.c keeps it durable in bad.list). */
struct seg_bad {
    uint64_t blob_id;
    uint32_t partition;
    uint32_t raw_len;
    uint64_t seg_seq;        /* where the bad record is; 0 if no copy is left */
    uint64_t off;
    uint64_t csum;
};

/* ---- sizes --------------------------------------------------------------- */

static inline uint32_t seg_rec_nchunks(uint32_t stored_len)
{
    return (uint32_t)(((uint64_t)stored_len + SEG_REC_CHUNK - 1) / SEG_REC_CHUNK);
}
/* Header plus chunk table: what must be read to validate a header. */
static inline size_t seg_rec_meta_len(uint32_t stored_len)
{
    return SEG_REC_HDR_LEN + 4u * (size_t)seg_rec_nchunks(stored_len);
}
/* The whole record on disk, padding included. */
static inline uint64_t seg_rec_total_len(uint32_t stored_len)
{
    uint64_t n = seg_rec_meta_len(stored_len) + (uint64_t)stored_len;
    return (n + SEG_REC_ALIGN - 1) & ~(uint64_t)(SEG_REC_ALIGN - 1);
}

/* ---- segment header ------------------------------------------------------ */

void seg_hdr_encode(uint8_t out[SEG_HDR_LEN], const struct seg_hdr *h) BD_NONNULL(1, 2);
/* 0, or -BD_ECORRUPT (magic, version, checksum, reserved bytes). */
int seg_hdr_decode(const uint8_t in[SEG_HDR_LEN], struct seg_hdr *h) BD_NONNULL(1, 2);

/* ---- records ------------------------------------------------------------- */

/* Encode the header and chunk table of a record into OUT, which has room
 * for seg_rec_meta_len(h->stored_len) bytes, hashing the chunks of STORED
 * (h->stored_len bytes; may be NULL when that is 0).  The caller writes
 * the data and seg_rec_total_len() - seg_rec_meta_len() - stored_len zero bytes
 * of padding after it. */
void seg_rec_encode(uint8_t *out, const struct seg_rec_hdr *h, const uint8_t *stored)
    BD_NONNULL(1, 2);
/* Decode and validate the fixed header (magic, version, type, flags, ids,
 * lengths against min(MAX_DATA, SEG_REC_MAX_DATA) and against each other).
 * Does not check hdr_csum, which needs the chunk table: see seg_rec_check_meta.
 * 0 or -BD_ECORRUPT. */
int seg_rec_decode_hdr(const uint8_t in[SEG_REC_HDR_LEN], uint32_t max_data, struct seg_rec_hdr *h)
    BD_NONNULL(1, 3);
/* Verify hdr_csum over META, the header and table of a record whose
 * decoded header is H (seg_rec_meta_len(h->stored_len) bytes).  0/-BD_ECORRUPT. */
int seg_rec_check_meta(const uint8_t *meta, const struct seg_rec_hdr *h) BD_NONNULL(1, 2);
/* Verify chunks FIRST.. of the stored data against the table in META:
 * DATA holds LEN bytes starting at chunk FIRST (LEN may end inside the last
 * chunk only if that is the record's last chunk).  0 or -BD_ECSUM. */
int seg_rec_check_chunks(const uint8_t *meta, const struct seg_rec_hdr *h, uint32_t first,
                         const uint8_t *data, size_t len);

/* ---- index files --------------------------------------------------------- */

/* Encode a whole index file (SEG_IDX_HDR_LEN + count * SEG_IDX_ENTRY_LEN bytes)
 * into OUT; H->count and H->entries_csum are set from ENTRIES. */
void seg_idx_encode(uint8_t *out, struct seg_idx_hdr *h, const struct seg_idx_entry *entries,
                    uint32_t count) BD_NONNULL(1, 2);
/* Decode the header of an index file of FILE_LEN bytes and check that the
 * length matches its count.  0 or -BD_ECORRUPT. */
int seg_idx_decode_hdr(const uint8_t in[SEG_IDX_HDR_LEN], uint64_t file_len, struct seg_idx_hdr *h)
    BD_NONNULL(1, 3);
/* Check the entries' checksum.  ENTRIES points just past the header and
 * holds h->count entries.  0 or -BD_ECORRUPT. */
int seg_idx_check_entries(const struct seg_idx_hdr *h, const uint8_t *entries);
/* Decode one entry and validate it against the index header (offset
 * within seg_len, lengths, type).  0 or -BD_ECORRUPT. */
int seg_idx_entry_decode(const uint8_t *in, const struct seg_idx_hdr *h, uint32_t max_data,
                         struct seg_idx_entry *e) BD_NONNULL(1, 2, 4);

/* ---- the bad list --------------------------------------------------------- */

/* Encode a whole bad list of COUNT entries (SEG_BAD_HDR_LEN + count *
 * SEG_BAD_ENTRY_LEN bytes) into OUT. */
void seg_bad_encode(uint8_t *out, const struct seg_bad *entries, uint32_t count) BD_NONNULL(1);
/* Decode the header of a bad list of LEN bytes into *COUNT and check the
 * entries' checksum (the entries follow the header).  0 or -BD_ECORRUPT
 * (magic, version, count above SEG_BAD_MAX or not matching LEN, checksum). */
int seg_bad_decode_hdr(const uint8_t *in, size_t len, uint32_t *count) BD_NONNULL(1, 3);
/* Decode one entry (SEG_BAD_ENTRY_LEN bytes).  Any values: the caller
 * decides which entries still make sense. */
void seg_bad_entry_decode(const uint8_t *in, struct seg_bad *b) BD_NONNULL(1, 2);

/* ---- scanning ------------------------------------------------------------ */

/* Where the scanner reads from.  PREAD returns bytes read (short only at
 * the end) or -errno. */
struct seg_src {
    ssize_t (*pread)(void *arg, void *buf, size_t len, uint64_t off);
    void *arg;
    uint64_t size;       /* bytes in the segment */
};

/* One record found by the scanner.  META is valid until the next call. */
struct seg_scan_rec {
    struct seg_rec_hdr h;
    uint64_t off;        /* where the record starts */
    uint64_t len;        /* seg_rec_total_len(), padding included */
    bool data_ok;        /* chunks verified (only with verify_data) */
    const uint8_t *meta; /* header and chunk table */
};

struct seg_scan {
    /* set by the caller before seg_scan_init */
    const struct seg_src *src;
    uint64_t store_id;   /* records of any other store are skipped */
    uint32_t partition;  /* records of any other partition are skipped */
    uint32_t max_data;   /* largest stored_len accepted */
    bool verify_data;    /* read and check every chunk */
    uint64_t start;      /* first offset to look at (SEG_HDR_LEN) */
    /* results, valid after each call */
    uint64_t good_end;       /* end of the last record found whose header (and,
                              * with verify_data, every chunk) validated; where
                              * a torn tail is cut; until one is found, `start`
                              * (or the size, if the segment is shorter) */
    uint64_t damaged_bytes;  /* bytes skipped between valid records */
    uint32_t damaged_ranges; /* runs of such bytes */
    uint32_t bad_data;       /* records whose header was valid but a chunk was not */
    /* private */
    uint64_t pos;
    uint8_t *buf;
    size_t cap;
    uint64_t buf_off;
    size_t buf_len;
    uint64_t damage_start;   /* UINT64_MAX when not inside a damaged run */
};

/* Prepare S (fields above set).  0 or -ENOMEM. */
int seg_scan_init(struct seg_scan *s);
/* Find the next record at or after the current position.  Returns 1 with
 * *OUT filled, 0 at the end of the segment, or -errno on a read error.
 * Trailing bytes that hold no valid record (a torn tail) count as damage
 * only if a valid record follows them; good_end tells where to truncate. */
int seg_scan_next(struct seg_scan *s, struct seg_scan_rec *out);
void seg_scan_fini(struct seg_scan *s);

/* A seg_src over a memory buffer (for tests and the fuzz target). */
struct seg_mem {
    const uint8_t *data;
    size_t len;
};
ssize_t seg_mem_pread(void *arg, void *buf, size_t len, uint64_t off);

#endif
