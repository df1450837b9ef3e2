/* raftlog_fmt.h: the byte layouts of the Raft log's files (raftlog.h),
 * encoded and decoded side by side in raftlog_fmt.c.  Used by raftlog.c
 * (writing) and raftlog_load.c (loading); not for other modules.
 *
 * All integers little endian; raftlog_fmt.c writes and reads each layout
 * with the bytes.h cursors in the order of its table, reserved fields
 * with bw_zeros / br_zeros.  Every header carries a checksum of the bytes
 * before it (low 32 bits of XXH3-64 for a record header, XXH3-64 for the
 * others), so a reader can tell a header from garbage before trusting a
 * length in it.
 *
 *  meta1, meta2                       seg-<seq, 16 hex digits>: a header,
 *  OFFSET SIZE FIELD                  then records back to back
 *    0     4   magic "BRMT"           OFFSET SIZE FIELD
 *    4     2   version                  0     4   magic "BRSG"
 *    6     2   zero                     4     2   version
 *    8     8   seq                      6     2   zero
 *   16     8   term                     8     8   seq (= the file name's)
 *   24     8   vote                    16     8   first_index
 *   32     8   cluster_hash            24     8   xxh3(bytes 0..23)
 *   40     8   node_id                (RAFTLOG_FMT_SEG_LEN = 32)
 *   48     8   zero
 *   56     8   xxh3(bytes 0..55)
 *  (RAFTLOG_FMT_META_LEN = 64)
 *
 *  record: a header, then len data bytes
 *  OFFSET SIZE FIELD
 *    0     4   magic "BRRC"
 *    4     2   type (RAFT_COMMAND, RAFT_BARRIER, RAFT_CHANGE)
 *    6     2   zero
 *    8     8   index
 *   16     8   term
 *   24     4   len
 *   28     4   low 32 bits of xxh3(bytes 0..27)
 *   32     8   xxh3(data)
 *  (RAFTLOG_FMT_REC_LEN = 40)
 *
 *  snap-<index, 16 hex digits>: a header, conf, data, a trailer
 *  OFFSET SIZE FIELD
 *    0     4   magic "BRSN"
 *    4     2   version
 *    6     2   zero
 *    8     8   term
 *   16     8   index
 *   24     8   conf_index
 *   32     8   log_seq (segments below it are stale)
 *   40     4   conf_len c (<= RAFTLOG_FMT_SNAP_CONF_MAX)
 *   44     4   zero
 *   48     8   data_len d
 *   56     8   xxh3(bytes 0..55)
 *   64     c   conf (raftmsg_conf_encode, the table in raftmsg.h)
 *   64+c   d   data
 *   64+c+d 8   xxh3(conf, data): the trailer
 *  (RAFTLOG_FMT_SNAP_LEN = 64, the header)
 *
 * CHECKLIST when changing a layout: bump RAFTLOG_FMT_VERSION (a log
 * written by the other version is then refused, never misread), update
 * the table above, and the golden files in tests/unit/test_raftlog.c,
 * which fail until then. */
#ifndef BD_RAFTLOG_FMT_H
#define BD_RAFTLOG_FMT_H

#include <raft.h>
#include <stdint.h>

#define RAFTLOG_FMT_META_MAGIC 0x544d5242u /* "BRMT" */
#define RAFTLOG_FMT_SEG_MAGIC 0x47535242u  /* "BRSG" */
#define RAFTLOG_FMT_REC_MAGIC 0x43525242u  /* "BRRC" */
#define RAFTLOG_FMT_SNAP_MAGIC 0x4e535242u /* "BRSN" */
#define RAFTLOG_FMT_VERSION 1
#define RAFTLOG_FMT_META_LEN 64
#define RAFTLOG_FMT_SEG_LEN 32
#define RAFTLOG_FMT_REC_LEN 40
#define RAFTLOG_FMT_SNAP_LEN 64
#define RAFTLOG_FMT_SNAP_TRAILER_LEN 8
#define RAFTLOG_FMT_SNAP_CONF_MAX (1u << 20) /* bytes of a snapshot file's configuration */

/* A meta record (meta1 / meta2). */
struct raftlog_fmt_meta {
    uint64_t seq;              /* the valid record with the highest seq wins */
    raft_term term;
    raft_id vote;
    uint64_t cluster_hash;     /* identity: 0 means not stamped */
    uint64_t node_id;
};
/* Encode M into B, checksum included. */
void raftlog_fmt_meta_encode(uint8_t b[RAFTLOG_FMT_META_LEN], const struct raftlog_fmt_meta *m);
/* 0 with *M filled, or -BD_ECORRUPT (magic, version, a reserved field or
 * the checksum wrong: not a valid record). */
int raftlog_fmt_meta_decode(const uint8_t b[RAFTLOG_FMT_META_LEN], struct raftlog_fmt_meta *m);

/* A segment file's header. */
struct raftlog_fmt_seg {
    uint64_t seq;
    raft_index first;          /* index of its first record */
};
void raftlog_fmt_seg_encode(uint8_t b[RAFTLOG_FMT_SEG_LEN], const struct raftlog_fmt_seg *s);
/* 0 or -BD_ECORRUPT, as for meta. */
int raftlog_fmt_seg_decode(const uint8_t b[RAFTLOG_FMT_SEG_LEN], struct raftlog_fmt_seg *s);

/* A record's header. */
struct raftlog_fmt_rec {
    unsigned short type;       /* enum raft_entry_type */
    raft_index index;
    raft_term term;
    uint32_t len;              /* data bytes that follow */
    uint64_t data_csum;        /* XXH3-64 of them */
};
/* Encode H into B; the header checksum is computed here, DATA_CSUM is H's. */
void raftlog_fmt_rec_encode(uint8_t b[RAFTLOG_FMT_REC_LEN], const struct raftlog_fmt_rec *h);
/* 0 with *H filled; -BD_ECORRUPT if B is not a record header (the magic or
 * the header checksum is wrong; the magic is checked first, so a scan for
 * records costs a hash only where the magic matches); -EPROTO if it is one
 * but its reserved field is not zero.  B must hold RAFTLOG_FMT_REC_LEN
 * bytes. */
int raftlog_fmt_rec_decode(const uint8_t b[RAFTLOG_FMT_REC_LEN], struct raftlog_fmt_rec *h);

/* A snapshot file's header. */
struct raftlog_fmt_snap {
    raft_term term;
    raft_index index;
    raft_index conf_index;
    uint64_t log_seq;
    uint32_t conf_len;
    uint64_t data_len;
};
void raftlog_fmt_snap_encode(uint8_t b[RAFTLOG_FMT_SNAP_LEN], const struct raftlog_fmt_snap *s);
/* 0 or -BD_ECORRUPT, as for meta; the lengths are the caller's to check. */
int raftlog_fmt_snap_decode(const uint8_t b[RAFTLOG_FMT_SNAP_LEN], struct raftlog_fmt_snap *s);
/* The trailer: CSUM = XXH3-64 of conf and data. */
void raftlog_fmt_snap_trailer_encode(uint8_t b[RAFTLOG_FMT_SNAP_TRAILER_LEN], uint64_t csum);
uint64_t raftlog_fmt_snap_trailer_decode(const uint8_t b[RAFTLOG_FMT_SNAP_TRAILER_LEN]);

#endif
