/* segment.h: the blob store's bytes on disk (DESIGN.md §6, CONTRACT.md §3
 * "bytes on disk").  Three self-describing formats, each encoded and
 * decoded side by side in segment.c, all little endian:
 *
 * 1. A segment file  p<PARTITION>/<SEQ>.seg  starts with a segment header
 *    and continues with records, each starting at a multiple of 8:
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
 *    0     4   magic        REC_MAGIC "BDR1"
 *    4     1   version      REC_VERSION
 *    5     1   type         REC_PUT or REC_TOMBSTONE
 *    6     2   flags        REC_F_COMPRESSED (data is one zstd frame),
 *                           REC_F_COMPRESSIBLE (the client allowed it)
 *    8     8   store_id     as in the segment header
 *   16     8   blob_id      never 0
 *   24     4   partition
 *   28     4   raw_len      the blob's length
 *   32     4   stored_len   data bytes below (== raw_len unless compressed)
 *   36     4   hdr_csum     low 32 bits of XXH3-64 of bytes 0..35, 40..63
 *                           and the chunk table
 *   40     8   epoch        partition epoch the put carried (0: tombstone)
 *   48     8   seq          store-wide record sequence; kept by compaction
 *   56     8   data_csum    XXH3-64 of the raw (uncompressed) blob
 *   64   4*n   chunk table  n = ceil(stored_len / REC_CHUNK); entry i is
 *                           the low 32 bits of XXH3-64 of stored bytes
 *                           [i*REC_CHUNK, (i+1)*REC_CHUNK)
 *    .   stored_len  data
 *    .   0..7  zero padding to the next multiple of 8
 *
 *    Why per-chunk checksums: a ranged GET of 4 KiB from a 1 MiB blob reads
 *    and verifies one 4 KiB chunk (plus the table), not the whole blob.
 *    REC_CHUNK is the block size: the proxy's extents are 4 KiB aligned.
 *    Why the header checksum covers the table: a flipped table entry must
 *    not make a good chunk look bad, or a bad one good.
 *
 * 3. An index file  <SEQ>.idx  written when a segment is sealed, so a
 *    restart reads one small file instead of every record header:
 *
 *  OFFSET SIZE FIELD        NOTES
 *    0     4   magic        IDX_MAGIC "BDIX"
 *    4     2   version      IDX_VERSION
 *    6     2   reserved
 *    8     8   store_id
 *   16     4   partition
 *   20     4   count        entries that follow
 *   24     8   seg_seq      the segment it describes
 *   32     8   seg_len      that segment's exact file length (verified)
 *   40     8   max_epoch    highest epoch in the segment (header included)
 *   48     8   entries_csum XXH3-64 of the entries
 *   56     4   reserved
 *   60     4   hdr_csum     low 32 bits of XXH3-64 of bytes 0..59
 *   64  48*count entries    blob_id u64, off u64, seq u64, data_csum u64,
 *                           raw_len u32, stored_len u32, type u8, pad u8,
 *                           flags u16, reserved u32
 *
 * Every decoder bounds every length (by REC_MAX_DATA, by the caller's
 * maximum, and by the bytes actually present) before anything is
 * allocated or read, and returns -BD_ECORRUPT for bytes that do not
 * validate; nothing here asserts on disk bytes.
 *
 * The scanner (seg_scan) walks a segment through a read callback, so the
 * same code serves recovery (through struct fio), the scrubber, and the
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

#define SEG_MAGIC 0x47534442u /* "BDSG" */
#define SEG_VERSION 1
#define SEG_HDR_LEN 64

#define REC_MAGIC 0x31524442u /* "BDR1" */
#define REC_VERSION 1
#define REC_HDR_LEN 64
#define REC_CHUNK 4096u
#define REC_ALIGN 8u
/* The largest blob a record can hold, whatever the configuration says. */
#define REC_MAX_DATA (64u << 20)

#define IDX_MAGIC 0x58494442u /* "BDIX" */
#define IDX_VERSION 1
#define IDX_HDR_LEN 64
#define IDX_ENTRY_LEN 48
/* Entries an index file may claim: a segment of 4 GiB of empty records. */
#define IDX_MAX_ENTRIES ((1ull << 32) / REC_HDR_LEN)

enum rec_type { REC_PUT = 1, REC_TOMBSTONE = 2 };
#define REC_F_COMPRESSED 0x1
#define REC_F_COMPRESSIBLE 0x2
#define REC_F_KNOWN (REC_F_COMPRESSED | REC_F_COMPRESSIBLE)

struct seg_hdr {
    uint64_t store_id;
    uint32_t partition;
    uint64_t seq;
    uint64_t epoch;
    uint64_t created_ms;
};

struct rec_hdr {
    uint8_t type;        /* enum rec_type */
    uint16_t flags;      /* REC_F_* */
    uint64_t store_id;
    uint64_t blob_id;
    uint32_t partition;
    uint32_t raw_len;
    uint32_t stored_len;
    uint64_t epoch;
    uint64_t seq;
    uint64_t data_csum;
};

struct idx_hdr {
    uint64_t store_id;
    uint32_t partition;
    uint32_t count;
    uint64_t seg_seq;
    uint64_t seg_len;
    uint64_t max_epoch;
    uint64_t entries_csum;
};

struct idx_entry {
    uint64_t blob_id;
    uint64_t off;        /* record offset in the segment */
    uint64_t seq;
    uint64_t data_csum;
    uint32_t raw_len;
    uint32_t stored_len;
    uint8_t type;        /* enum rec_type */
    uint16_t flags;
};

/* ---- sizes ---------------------------------------------------------------- */

static inline uint32_t rec_nchunks(uint32_t stored_len)
{
    return (uint32_t)(((uint64_t)stored_len + REC_CHUNK - 1) / REC_CHUNK);
}
/* Header plus chunk table: what must be read to validate a header. */
static inline size_t rec_meta_len(uint32_t stored_len)
{
    return REC_HDR_LEN + 4u * (size_t)rec_nchunks(stored_len);
}
/* The whole record on disk, padding included. */
static inline uint64_t rec_total_len(uint32_t stored_len)
{
    uint64_t n = rec_meta_len(stored_len) + (uint64_t)stored_len;
    return (n + REC_ALIGN - 1) & ~(uint64_t)(REC_ALIGN - 1);
}

/* ---- segment header ------------------------------------------------------- */

void seg_hdr_encode(uint8_t out[SEG_HDR_LEN], const struct seg_hdr *h);
/* 0, or -BD_ECORRUPT (magic, version, checksum, reserved bytes). */
int seg_hdr_decode(const uint8_t in[SEG_HDR_LEN], struct seg_hdr *h);

/* ---- records -------------------------------------------------------------- */

/* Encode the header and chunk table of a record into OUT, which has room
 * for rec_meta_len(h->stored_len) bytes, hashing the chunks of STORED
 * (h->stored_len bytes; may be NULL when that is 0).  The caller writes
 * the data and rec_total_len() - rec_meta_len() - stored_len zero bytes
 * of padding after it. */
void rec_encode(uint8_t *out, const struct rec_hdr *h, const uint8_t *stored);
/* Decode and validate the fixed header (magic, version, type, flags, ids,
 * lengths against min(MAX_DATA, REC_MAX_DATA) and against each other).
 * Does not check hdr_csum, which needs the chunk table: see rec_check_meta.
 * 0 or -BD_ECORRUPT. */
int rec_decode_hdr(const uint8_t in[REC_HDR_LEN], uint32_t max_data, struct rec_hdr *h);
/* Verify hdr_csum over META, the header and table of a record whose
 * decoded header is H (rec_meta_len(h->stored_len) bytes).  0/-BD_ECORRUPT. */
int rec_check_meta(const uint8_t *meta, const struct rec_hdr *h);
/* Verify chunks FIRST.. of the stored data against the table in META:
 * DATA holds LEN bytes starting at chunk FIRST (LEN may end inside the last
 * chunk only if that is the record's last chunk).  0 or -BD_ECSUM. */
int rec_check_chunks(const uint8_t *meta, const struct rec_hdr *h, uint32_t first,
                     const uint8_t *data, size_t len);

/* ---- index files ---------------------------------------------------------- */

/* Encode a whole index file (IDX_HDR_LEN + count * IDX_ENTRY_LEN bytes)
 * into OUT; H->count and H->entries_csum are set from ENTRIES. */
void idx_encode(uint8_t *out, struct idx_hdr *h, const struct idx_entry *entries, uint32_t count);
/* Decode the header of an index file of FILE_LEN bytes and check that the
 * length matches its count.  0 or -BD_ECORRUPT. */
int idx_decode_hdr(const uint8_t in[IDX_HDR_LEN], uint64_t file_len, struct idx_hdr *h);
/* Check the entries' checksum.  ENTRIES points just past the header and
 * holds h->count entries.  0 or -BD_ECORRUPT. */
int idx_check_entries(const struct idx_hdr *h, const uint8_t *entries);
/* Decode one entry and validate it against the index header (offset
 * within seg_len, lengths, type).  0 or -BD_ECORRUPT. */
int idx_entry_decode(const uint8_t *in, const struct idx_hdr *h, uint32_t max_data,
                     struct idx_entry *e);

/* ---- scanning ------------------------------------------------------------- */

/* Where the scanner reads from.  PREAD returns bytes read (short only at
 * the end) or -errno. */
struct seg_src {
    ssize_t (*pread)(void *arg, void *buf, size_t len, uint64_t off);
    void *arg;
    uint64_t size;       /* bytes in the segment */
};

/* One record found by the scanner.  META is valid until the next call. */
struct seg_rec {
    struct rec_hdr h;
    uint64_t off;        /* where the record starts */
    uint64_t len;        /* rec_total_len(), padding included */
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
int seg_scan_next(struct seg_scan *s, struct seg_rec *out);
void seg_scan_fini(struct seg_scan *s);

/* A seg_src over a memory buffer (for tests and the fuzz target). */
struct seg_mem {
    const uint8_t *data;
    size_t len;
};
ssize_t seg_mem_pread(void *arg, void *buf, size_t len, uint64_t off);

#endif
