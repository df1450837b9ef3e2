/* stamp.h: stamped 4 KiB blocks, the test data format (CONTRACT.md §2,
 * "Stamped blocks").
 *
 * Every block a test writes identifies the write it came from, so a read
 * tells exactly which write it sees.  Layout (little endian):
 *
 *  OFFSET SIZE  FIELD    NOTES
 *     0     8   magic    STAMP_MAGIC ("BDSTAMP1")
 *     8     8   vol      volume id of the writer (C11: another volume's data)
 *    16     8   block    block index the write was aimed at (misdirected I/O)
 *    24     8   seq      the writer's op number; unique and increasing per run
 *    32     8   gen      attach generation / epoch of the writer (C10)
 *    40     8   seed     the run's seed (data left by another run)
 *    48     4   writer   writer id (two writers on one volume)
 *    52     4   zero     reserved, must be 0
 *    56     8   sum      XXH3-64 of bytes [0,56) and [64,4096): a torn or
 *                        corrupted block fails it (C6)
 *    64  4032   payload  pseudo-random bytes from (seed, vol, block, seq)
 *
 * The payload is fully determined by the header, so a checker regenerates
 * the block a header names and diffs it byte for byte.  A block of all
 * zeros is "no data" (never written, trimmed or zeroed); nothing a stamp
 * writer produces is all zeros.
 *
 * stamp_classify() compares one block read from a device against what a
 * model allows (a window of sequence numbers and whether zeros are allowed)
 * and names the first property the block breaks, in a fixed order: zeros,
 * magic, checksum, volume, block index, run, writer/generation, sequence. */
#ifndef BD_STAMP_H
#define BD_STAMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STAMP_BLOCK 4096u
#define STAMP_MAGIC UINT64_C(0x31504d4154534442) /* "BDSTAMP1" */
#define STAMP_HDR 64u

/* The header fields of one stamped block. */
struct stamp {
    uint64_t vol;
    uint64_t block;
    uint64_t seq;
    uint64_t gen;
    uint64_t seed;
    uint32_t writer;
};

/* Fill BUF (STAMP_BLOCK bytes) with the block S describes. */
void stamp_fill(uint8_t *buf, const struct stamp *s);

enum stamp_parse_rc {
    STAMP_VALID,    /* magic and checksum good; *OUT filled */
    STAMP_ZERO,     /* all zeros */
    STAMP_NO_MAGIC, /* not zero, no magic: bytes no stamp writer produced */
    STAMP_BAD_SUM,  /* magic present, checksum wrong; *OUT holds the header as read */
};
/* Parse BUF (borrows, STAMP_BLOCK bytes). */
enum stamp_parse_rc stamp_parse(const uint8_t *buf, struct stamp *out);

/* What a model allows for one block.  Data stamps of this writer whose seq
 * lies in [lo, hi] are allowed (lo == 0: none); zeros if zero_ok; any valid
 * stamp at all if any_ok (contents unknown, e.g. before the first write
 * with --init any). */
struct stamp_expect {
    uint64_t lo, hi;
    bool zero_ok;
    bool any_ok;
    uint64_t last_seq;  /* seq of the newest op on the block (data or zero); 0: none */
    bool last_is_zero;  /* that op was a trim or write_zeroes */
};

/* The diagnoses, each with the contract item it defends. */
#define STAMP_DIAGS(X)                                                                  \
    X(OK, "ok", "")                                                                     \
    X(LOST_WRITE, "lost-write", "C5: zeros where the model has data")                   \
    X(GARBAGE, "garbage", "C5: bytes no write produced")                                \
    X(TORN, "torn", "C6: checksum fails, block is torn or corrupted")                   \
    X(OTHER_VOLUME, "other-volume", "C11: another volume's data")                       \
    X(MISDIRECTED, "misdirected", "C5: data written to another block")                  \
    X(OTHER_RUN, "other-run", "C9/C11: data from another test run")                     \
    X(FOREIGN_WRITER, "foreign-writer", "C10: another writer or generation")            \
    X(STALE, "stale", "C7/C5: older data than the model allows")                        \
    X(RESURRECTED, "resurrected", "C9: data reappeared after trim/write_zeroes")        \
    X(UNISSUED, "unissued", "C5: a write this run never issued to this block")

enum stamp_diag {
#define STAMP_DIAG_ENUM(name, str, why) STAMP_DIAG_##name,
    STAMP_DIAGS(STAMP_DIAG_ENUM)
#undef STAMP_DIAG_ENUM
};

/* Name ("stale") and contract text of D. */
const char *stamp_diag_name(enum stamp_diag d);
const char *stamp_diag_why(enum stamp_diag d);

/* Classify BUF (STAMP_BLOCK bytes) read at block index BLOCK by a run whose
 * identity is ME (vol, seed, writer, gen; block and seq ignored) against
 * EXP.  On anything but OK, writes a one-line explanation (expected vs read)
 * into WHY (at most WHYLEN bytes, always terminated). */
enum stamp_diag stamp_classify(const uint8_t *buf, uint64_t block, const struct stamp *me,
                               const struct stamp_expect *exp, char *why, size_t whylen);

#endif
