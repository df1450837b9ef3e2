/* journal_int.h: what journal.c and journal_replay.c share: the byte
 * layouts with their encoders and decoders (in journal.c), and the
 * journal's state.  Nothing else includes it but test_journal.c, which
 * pins every layout to golden bytes: change a table below together with
 * JOURNAL_SEG_VERSION.  Why the layouts are what they are, and how replay
 * reads them, is at the top of journal.c.
 *
 * Files: DIR/<segment number, 16 hex digits>.seg, each a segment header
 * then entries back to back, each entry starting at a multiple of
 * JOURNAL_ALIGN.  All integers little endian.  Each table is the order of
 * the bytes.h cursor calls that write and read it; reserved bytes are
 * written as zero and refused unless zero (a checksum covers all of them,
 * so only forged bytes could tell).
 *
 * 1. The segment header: JOURNAL_SEG_HDR bytes, two identical copies of
 *    JOURNAL_SEG_COPY (512), so that one damaged sector cannot orphan a
 *    journal whose entries are intact (the salt and volume id are only
 *    here).  One copy:
 *
 *  OFFSET SIZE FIELD        NOTES
 *    0     4   magic        JOURNAL_SEG_MAGIC "BDJS"
 *    4     2   version      JOURNAL_SEG_VERSION
 *    6     2   copy_len     JOURNAL_SEG_COPY
 *    8     8   vol_id       not 0
 *   16     8   no           the segment number (its file name)
 *   24     8   first_seq    sequence number of its first entry; not 0
 *   32     8   salt         random per journal; seeds every entry checksum
 *   40     4   block        JOURNAL_BLOCK
 *   44     2   name_len     1..JOURNAL_NAME_MAX
 *   46   256   name         the volume name (name_len bytes, no NUL), then
 *                           zeros
 *  302   202   reserved     zero
 *  504     8   hdr_csum     XXH3-64 of bytes 0..503 (unseeded)
 *
 * 2. An entry: header (JOURNAL_ENT_HDR), data (data_len), trailer
 *    (JOURNAL_ENT_HDR).  The header and the trailer are the same 64 bytes
 *    but for the magic (and so the checksum):
 *
 *  OFFSET SIZE FIELD        NOTES
 *    0     4   magic        JOURNAL_ENT_MAGIC "BDJE" (header) or
 *                           JOURNAL_TRL_MAGIC "BDJT" (trailer)
 *    4     2   kind         enum journal_kind
 *    6     2   flags        none defined: zero
 *    8     8   seq          not 0
 *   16     8   vol_id       the journal's
 *   24     8   off          volume offset, a multiple of JOURNAL_BLOCK
 *   32     8   len          bytes of the volume, a multiple of JOURNAL_BLOCK,
 *                           not 0; off + len <= 2^63
 *   40     4   data_len     WRITE: = len; other kinds: 0
 *   44     4   reserved     zero
 *   48     8   data_csum    WRITE: the checksum array's hash (3.); else 0
 *   56     8   hdr_csum     XXH3-64 of bytes 0..55, seeded with the salt
 *
 *    A LOST record is an entry of kind JOURNAL_LOST without data: off and
 *    len are the range lost (len JOURNAL_LOST_ALL_LEN: the whole volume).
 *    A CLEAN record (kind JOURNAL_CLEAN, no data) voids every older entry
 *    of off..off+len: the cluster took a newer version around the journal.
 *    Journals written before CLEAN existed never hold one; a binary that
 *    predates it reads one as damage (a gap in the sequence numbers: the
 *    whole volume marked lost, never older data served).
 *
 * 3. The checksum array of a WRITE (never stored: data_csum is its hash):
 *
 *  OFFSET SIZE FIELD        NOTES
 *   8*i    8   csum[i]      XXH3-64 of data block i (JOURNAL_BLOCK bytes)
 *
 *    data_csum = XXH3-64 of the 8*n bytes, n = data_len / JOURNAL_BLOCK.
 *
 * Names: journal_ throughout; journal_seghdr_* is the segment header,
 * journal_ent_* an entry header or trailer. */
#ifndef BD_JOURNAL_INT_H
#define BD_JOURNAL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/bd.h"
#include "runtime/taskq.h"
#include "store/journal/journal.h"

#define JOURNAL_SEG_MAGIC 0x534a4442u /* "BDJS" */
#define JOURNAL_ENT_MAGIC 0x454a4442u /* "BDJE" */
#define JOURNAL_TRL_MAGIC 0x544a4442u /* "BDJT" */
#define JOURNAL_SEG_VERSION 1
#define JOURNAL_SEG_COPY (JOURNAL_SEG_HDR / 2) /* the header is two identical copies */
#define JOURNAL_SEG_NAME_FIELD 256             /* the name field of a header copy */

struct journal_seg {
    uint64_t no;
    int fd;
    uint64_t size;       /* bytes in the file */
    uint64_t first_seq;  /* from its header (0 if unreadable) */
    int64_t refs;        /* owner references (journal_ref) */
    int64_t lost_refs;   /* ... of which LOST marks */
    bool dirty;          /* written since the last sync job began */
};

struct journal_sync_job {
    struct taskq_job job;
    struct journal *j;
    int *fds;
    unsigned nfds, cap;
    bool dir;
    uint64_t target;     /* appends covered when the job started */
    int err;
};

struct journal {
    struct fileio *fio;
    struct taskq *syncq;
    char dir[1024];
    char tag[32];
    char name[JOURNAL_NAME_MAX + 1];
    uint64_t vol_id;
    uint64_t salt;
    uint64_t cap, seg_bytes;
    struct journal_seg *segs;   /* ascending segment numbers; the last takes appends */
    unsigned nsegs, segcap;
    uint64_t used;       /* sum of segment sizes */
    uint64_t next_seq;
    bool roll;           /* the last segment takes no appends (bad header, too big) */
    bool failed;         /* failed stop (C15) */
    bool replayed;
    /* Group commit (journal_sync). */
    uint64_t appends;    /* appends and segment creations so far */
    uint64_t synced;     /* appends made durable by the last good sync */
    bool dir_dirty;      /* a segment was created since the last sync began */
    bool sync_running;
    struct journal_sync_req *waiters, **wtail;
    struct journal_sync_job sj;
};

struct journal_ent {
    int kind;
    uint64_t seq, vol_id, off, len;
    uint32_t data_len;
    uint64_t data_csum;
};

/* What a segment header says. */
struct journal_seghdr {
    uint64_t vol_id;
    uint64_t no;        /* the segment's number (its file name) */
    uint64_t first_seq; /* sequence number of its first entry */
    uint64_t salt;      /* the journal's, seeds every entry checksum */
    char name[JOURNAL_NAME_MAX + 1]; /* the volume's, 1..JOURNAL_NAME_MAX bytes */
};

/* Encode both copies of a segment header into OUT (JOURNAL_SEG_HDR bytes). */
void journal_seghdr_encode(uint8_t *out, const struct journal_seghdr *h) BD_NONNULL(1, 2);
/* Decode the first copy at IN (JOURNAL_SEG_HDR bytes) that validates
 * (magic, version, copy length, block size, name, reserved bytes,
 * checksum, vol_id and first_seq not 0) into *H; false if neither does. */
bool journal_seghdr_decode(const uint8_t *in, struct journal_seghdr *h) BD_NONNULL(1, 2);

/* XXH3-64 of the checksum array (3.) of the N block checksums C. */
uint64_t journal_csums_hash(const uint64_t *c, size_t n);
/* Encode entry E as a header (MAGIC JOURNAL_ENT_MAGIC) or a trailer
 * (JOURNAL_TRL_MAGIC) into OUT (JOURNAL_ENT_HDR bytes), its checksum
 * seeded with SALT. */
void journal_ent_encode(uint8_t *out, uint32_t magic, uint64_t salt, const struct journal_ent *e)
    BD_NONNULL(1, 4);
/* Parse and validate a header or trailer (MAGIC) at IN (JOURNAL_ENT_HDR
 * bytes) of the journal with SALT and VOL_ID into *E; false if it is not a
 * valid one of that journal. */
bool journal_ent_decode(const uint8_t *in, uint32_t magic, uint64_t salt, uint64_t vol_id,
                        struct journal_ent *e) BD_NONNULL(1, 5);

#endif
