/* test_journal.c: the agent's write-back journal (src/store/journal/journal.c).
 *
 * Defends C4 (acked entries survive a process crash: replay finds them),
 * C5/C14 (damage is reported as LOST, never replayed as data), C9 (FIFO
 * reclamation) and CONTRACT.md §3 "bytes on disk": torn tails, bit flips
 * in data and headers, valid entries after a damaged one, idempotent
 * replay; and every layout pinned to golden bytes (journal_int.h).
 *
 * Fixture: a fresh directory per test, small segments (64 KiB) so that
 * rollover and reclamation happen after a few entries.  Records from
 * replay are collected into an array and compared with what was
 * appended. */
#include "base/bd.h"
#include "runtime/log.h"
#include "runtime/reactor.h"
#include "runtime/taskq.h"
#include "store/fileio.h"
#include "store/journal/journal.h"
#include "store/journal/journal_int.h"
#include "golden.h"
#include "tap.h"
#include "testlib.h"
#include "base/util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- Fixture -------------------------------------------------------------- */

#define VOL 0x1234
#define SEG (64u << 10)
#define CAP (512u << 10)

static char dir[512];

static struct journal_opts opts(struct fileio *f)
{
    return (struct journal_opts){.fio = f ? f : &fileio_posix, .dir = dir, .tag = "test",
                                 .vol_id = VOL, .name = "vol-a", .cap_bytes = CAP,
                                 .seg_bytes = SEG};
}

static void fixture(void)
{
    log_set_level(LOG_WARN); /* the torn-tail sweep would log thousands of cuts */
    snprintf(dir, sizeof(dir), "%s/j", tap_tmpdir());
}

struct rec {
    struct journal_rec r;
    uint64_t csum0; /* first block's checksum, for WRITE */
};

static struct rec recs[4096];
static int nrecs;

static void on_rec(void *arg, const struct journal_rec *r)
{
    struct journal *j = arg;
    if (nrecs < (int)BD_ARRAY_SIZE(recs)) {
        recs[nrecs].r = *r;
        recs[nrecs].r.csums = NULL;
        recs[nrecs].csum0 = r->csums ? r->csums[0] : 0;
        nrecs++;
    }
    if (j) journal_ref(j, r->seg, 1, r->kind == JOURNAL_LOST);
}

/* Open and replay DIR; records land in recs[].  Returns the journal. */
static struct journal *reopen(struct journal_stats *st, int *rcp)
{
    struct journal *j = NULL;
    struct journal_opts o = opts(NULL);
    nrecs = 0;
    int rc = journal_open(&o, &j);
    if (rc == 0) rc = journal_replay(j, on_rec, j, st);
    if (rcp) *rcp = rc;
    if (rc < 0 && j) {
        journal_close(j);
        j = NULL;
    }
    return j;
}

/* ---- Helpers -------------------------------------------------------------- */

static uint8_t buf[64 << 10];
static uint64_t cs[16];

/* Fill N blocks with a pattern from SEED and compute their checksums. */
static void pattern(unsigned n, uint64_t seed)
{
    for (unsigned i = 0; i < n * JOURNAL_BLOCK; i++)
        buf[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 12));
    for (unsigned i = 0; i < n; i++) cs[i] = util_xxh3(buf + i * JOURNAL_BLOCK, JOURNAL_BLOCK);
}

static int append_write(struct journal *j, uint64_t blk, unsigned n, uint64_t seed,
                        struct journal_rec *out)
{
    pattern(n, seed);
    return journal_append(j, JOURNAL_WRITE, blk * JOURNAL_BLOCK, (uint64_t)n * JOURNAL_BLOCK, buf,
                          cs, false, out);
}

static void seg_file(uint64_t no, char *path, size_t len)
{
    snprintf(path, len, "%s/%016llx.seg", dir, (unsigned long long)no);
}

static void truncate_to(const char *path, uint64_t len)
{
    if (truncate(path, (off_t)len) < 0) abort();
}

/* Save and restore a file's bytes, to replay many variants of one journal. */
static uint8_t saved[256 << 10];
static size_t saved_len;
static void save(const char *path)
{
    int fd = open(path, O_RDONLY);
    ssize_t n = read(fd, saved, sizeof(saved));
    close(fd);
    saved_len = n > 0 ? (size_t)n : 0;
}
static void restore(const char *path)
{
    int fd = open(path, O_WRONLY | O_TRUNC);
    if (write(fd, saved, saved_len) != (ssize_t)saved_len) abort();
    close(fd);
}

/* Build a journal of N one-block writes to blocks 0..N-1 (seeds 100+i) in
 * one segment and close it; *POS gets each entry's header offset. */
static int build(unsigned n, uint64_t *pos)
{
    struct journal *j;
    struct journal_opts o = opts(NULL);
    int rc = journal_create(&o, &j);
    if (rc < 0) return rc;
    for (unsigned i = 0; i < n; i++) {
        struct journal_rec r;
        rc = append_write(j, i, 1, 100 + i, &r);
        if (rc < 0) break;
        if (pos) pos[i] = r.data_pos - JOURNAL_ENT_HDR;
    }
    journal_close(j);
    return rc;
}

/* ---- Assertions ----------------------------------------------------------- */

/* Record I is a good one-block write of block I with seed 100+I. */
static bool rec_is_write(int i, uint64_t seq, uint64_t blk, uint64_t seed)
{
    pattern(1, seed);
    const struct rec *r = &recs[i];
    return r->r.kind == JOURNAL_WRITE && r->r.seq == seq && r->r.off == blk * JOURNAL_BLOCK &&
           r->r.len == JOURNAL_BLOCK && r->csum0 == cs[0];
}

/* ---- Golden bytes ---------------------------------------------------------- */

/* The journal's layouts (journal_int.h) pinned to bytes: a fixed segment
 * header, entry header, trailer, LOST record and checksum-array hash, with
 * the salt fixed, encode to the hex below and decode back.  The hex was
 * written by the encoders as they were before they moved to bytes.h
 * cursors, so these tests prove the move kept every byte; a failure means
 * a layout changed: bump JOURNAL_SEG_VERSION and the tables, then the hex
 * (golden.h). */

#define G_SALT 0x5a5a5a5a00c0ffeeull
#define G_VOL 0x1234

/* clang-format off */
static const char g_seghdr_hex[] =
    "42444a53"          /*   0 magic "BDJS" */
    "0100"              /*   4 version 1 */
    "0002"              /*   6 copy_len 512 */
    "3412000000000000"  /*   8 vol_id */
    "0500000000000000"  /*  16 no */
    "0001000000000000"  /*  24 first_seq */
    "eeffc0005a5a5a5a"  /*  32 salt */
    "00100000"          /*  40 block 4096 */
    "0500"              /*  44 name_len 5 */
    "766f6c2d61"        /*  46 name "vol-a" */
    "[0*251]"           /*  51 name padding */
    "[0*202]"           /* 302 reserved */
    "256b93dd5b2e7dc3"  /* 504 hdr_csum */;
/* clang-format on */

/* A segment header: one 512-byte copy, pinned, then the same bytes again. */
TEST(golden_segment_header)
{
    struct journal_seghdr h = {.vol_id = G_VOL, .no = 5, .first_seq = 0x100, .salt = G_SALT,
                               .name = "vol-a"};
    uint8_t b[JOURNAL_SEG_HDR];
    journal_seghdr_encode(b, &h);
    CHECK(golden_same(b, JOURNAL_SEG_COPY, g_seghdr_hex));
    CHECK(golden_same(b + JOURNAL_SEG_COPY, JOURNAL_SEG_COPY, g_seghdr_hex));
    size_t len;
    const uint8_t *copy = golden_buf(g_seghdr_hex, &len);
    CHECK_EQ(len, JOURNAL_SEG_COPY);
    memcpy(b, copy, len);
    memset(b + JOURNAL_SEG_COPY, 0, JOURNAL_SEG_COPY); /* the first copy alone decodes */
    struct journal_seghdr d;
    CHECK(journal_seghdr_decode(b, &d));
    CHECK_EQ(d.vol_id, G_VOL);
    CHECK_EQ(d.no, 5);
    CHECK_EQ(d.first_seq, 0x100);
    CHECK_EQ(d.salt, G_SALT);
    CHECK(strcmp(d.name, "vol-a") == 0);
}

/* The checksum array of a WRITE: XXH3-64 of the block checksums as an
 * array of little-endian u64. */
TEST(golden_csums_hash)
{
    const uint64_t c[3] = {0x1111111111111111ull, 0x2222222222222222ull, 0x0123456789abcdefull};
    CHECK_EQ(journal_csums_hash(c, 0), 0x2d06800538d394c2ull);
    CHECK_EQ(journal_csums_hash(c, 2), 0x6628a683a569c6d2ull);
    CHECK_EQ(journal_csums_hash(c, 3), 0xd69a1a5609f98355ull);
}

/* clang-format off */
static const char g_ent_hex[] =
    "42444a45"          /*   0 magic "BDJE" */
    "0100"              /*   4 kind WRITE */
    "0000"              /*   6 flags */
    "0101000000000000"  /*   8 seq */
    "3412000000000000"  /*  16 vol_id */
    "0030000000000000"  /*  24 off */
    "0020000000000000"  /*  32 len */
    "00200000"          /*  40 data_len */
    "00000000"          /*  44 reserved */
    "d2c669a583a62866"  /*  48 data_csum */
    "1d2c8ce45529171f"  /*  56 hdr_csum (seeded) */;
/* clang-format on */

/* clang-format off */
static const char g_trl_hex[] =
    "42444a54"          /*   0 magic "BDJT" */
    "0100"              /*   4 kind WRITE */
    "0000"              /*   6 flags */
    "0101000000000000"  /*   8 seq */
    "3412000000000000"  /*  16 vol_id */
    "0030000000000000"  /*  24 off */
    "0020000000000000"  /*  32 len */
    "00200000"          /*  40 data_len */
    "00000000"          /*  44 reserved */
    "d2c669a583a62866"  /*  48 data_csum */
    "24f9709282a08e98"  /*  56 hdr_csum (seeded) */;
/* clang-format on */

/* A WRITE of two blocks: its header and trailer differ only in the magic
 * (and so in the checksum, which covers it). */
TEST(golden_entry_and_trailer)
{
    const uint64_t c[2] = {0x1111111111111111ull, 0x2222222222222222ull};
    struct journal_ent e = {.kind = JOURNAL_WRITE, .seq = 0x101, .vol_id = G_VOL, .off = 0x3000,
                            .len = 0x2000, .data_len = 0x2000,
                            .data_csum = journal_csums_hash(c, 2)};
    uint8_t b[JOURNAL_ENT_HDR];
    journal_ent_encode(b, JOURNAL_ENT_MAGIC, G_SALT, &e);
    CHECK(golden_same(b, sizeof(b), g_ent_hex));
    journal_ent_encode(b, JOURNAL_TRL_MAGIC, G_SALT, &e);
    CHECK(golden_same(b, sizeof(b), g_trl_hex));
    const char *hex[2] = {g_ent_hex, g_trl_hex};
    const uint32_t magic[2] = {JOURNAL_ENT_MAGIC, JOURNAL_TRL_MAGIC};
    for (int i = 0; i < 2; i++) {
        size_t len;
        const uint8_t *in = golden_buf(hex[i], &len);
        struct journal_ent d;
        CHECK_EQ(len, JOURNAL_ENT_HDR);
        CHECK(journal_ent_decode(in, magic[i], G_SALT, G_VOL, &d));
        CHECK_EQ(d.kind, e.kind);
        CHECK_EQ(d.seq, e.seq);
        CHECK_EQ(d.vol_id, e.vol_id);
        CHECK_EQ(d.off, e.off);
        CHECK_EQ(d.len, e.len);
        CHECK_EQ(d.data_len, e.data_len);
        CHECK_EQ(d.data_csum, e.data_csum);
        CHECK(!journal_ent_decode(in, magic[!i], G_SALT, G_VOL, &d));
        CHECK(!journal_ent_decode(in, magic[i], G_SALT + 1, G_VOL, &d));
    }
}

/* clang-format off */
static const char g_lost_hex[] =
    "42444a45"          /*   0 magic "BDJE" */
    "0400"              /*   4 kind LOST */
    "0000"              /*   6 flags */
    "0201000000000000"  /*   8 seq */
    "3412000000000000"  /*  16 vol_id */
    "0000000000000000"  /*  24 off */
    "0000000000000040"  /*  32 len JOURNAL_LOST_ALL_LEN */
    "00000000"          /*  40 data_len */
    "00000000"          /*  44 reserved */
    "0000000000000000"  /*  48 data_csum */
    "f0eac0ca89822a8f"  /*  56 hdr_csum (seeded) */;
/* clang-format on */

/* A LOST record over the whole volume: an entry without data. */
TEST(golden_lost_record)
{
    struct journal_ent e = {.kind = JOURNAL_LOST, .seq = 0x102, .vol_id = G_VOL, .off = 0,
                            .len = JOURNAL_LOST_ALL_LEN};
    uint8_t b[JOURNAL_ENT_HDR];
    journal_ent_encode(b, JOURNAL_ENT_MAGIC, G_SALT, &e);
    CHECK(golden_same(b, sizeof(b), g_lost_hex));
    size_t len;
    const uint8_t *in = golden_buf(g_lost_hex, &len);
    struct journal_ent d;
    CHECK(journal_ent_decode(in, JOURNAL_ENT_MAGIC, G_SALT, G_VOL, &d));
    CHECK_EQ(d.kind, JOURNAL_LOST);
    CHECK_EQ(d.seq, 0x102);
    CHECK_EQ(d.vol_id, G_VOL);
    CHECK_EQ(d.off, 0);
    CHECK_EQ(d.len, JOURNAL_LOST_ALL_LEN);
    CHECK_EQ(d.data_len, 0);
    CHECK_EQ(d.data_csum, 0);
}

/* ---- Append and replay ---------------------------------------------------- */

/* Every kind of entry comes back from replay in order, with its data. */
TEST(append_replay_roundtrip)
{
    fixture();
    struct journal *j;
    struct journal_opts o = opts(NULL);
    CHECK(journal_create(&o, &j) == 0);
    struct journal_rec r;
    CHECK(append_write(j, 3, 2, 7, &r) == 0);
    CHECK_EQ(r.seq, 1);
    uint64_t pos = r.data_pos, seg = r.seg;
    CHECK(journal_append(j, JOURNAL_ZERO, 0, 1 << 20, NULL, NULL, false, &r) == 0);
    CHECK(journal_append(j, JOURNAL_TRIM, 8192, 4096, NULL, NULL, false, &r) == 0);
    CHECK(journal_append(j, JOURNAL_CLEAN, 3 * 4096, 8192, NULL, NULL, false, &r) == 0);
    CHECK_EQ(journal_last_seq(j), 4);
    journal_close(j);

    struct journal_stats st;
    j = reopen(&st, NULL);
    CHECK(j);
    CHECK(strcmp(journal_name(j), "vol-a") == 0);
    CHECK_EQ(recs[0].r.kind, JOURNAL_WRITE);
    CHECK_EQ(recs[0].r.off, 3 * 4096);
    CHECK_EQ(recs[0].r.len, 8192);
    CHECK_EQ(recs[0].r.data_pos, pos);
    CHECK_EQ(recs[0].r.seg, seg);
    pattern(2, 7);
    CHECK_EQ(recs[0].csum0, cs[0]);
    CHECK_EQ(recs[1].r.kind, JOURNAL_ZERO);
    CHECK_EQ(recs[1].r.len, 1 << 20);
    CHECK_EQ(recs[2].r.kind, JOURNAL_TRIM);
    CHECK_EQ(recs[3].r.kind, JOURNAL_CLEAN); /* a tombstone: a range, no data */
    CHECK_EQ(recs[3].r.off, 3 * 4096);
    CHECK_EQ(recs[3].r.len, 8192);
    CHECK_EQ(nrecs, 4);
    CHECK_EQ(st.entries, 4);
    CHECK_EQ(st.torn_bytes, 0);
    uint8_t got[8192];
    CHECK(journal_read(j, seg, pos, got, sizeof(got)) == 0);
    CHECK(memcmp(got, buf, sizeof(got)) == 0);
    /* Appends continue the numbering. */
    CHECK(append_write(j, 9, 1, 1, &r) == 0);
    CHECK_EQ(r.seq, 5);
    journal_close(j);
}

/* Bad arguments are refused without touching the file. */
TEST(append_rejects_bad_args)
{
    fixture();
    struct journal *j;
    struct journal_opts o = opts(NULL);
    CHECK(journal_create(&o, &j) == 0);
    struct journal_rec r;
    pattern(1, 1);
    CHECK(journal_append(j, JOURNAL_WRITE, 100, 4096, buf, cs, false, &r) == -EINVAL);
    CHECK(journal_append(j, JOURNAL_WRITE, 0, 0, buf, cs, false, &r) == -EINVAL);
    CHECK(journal_append(j, 9, 0, 4096, buf, cs, false, &r) == -EINVAL);
    CHECK(journal_append(j, JOURNAL_WRITE, 0, 4096, NULL, cs, false, &r) == -EINVAL);
    CHECK(journal_append(j, JOURNAL_WRITE, 0, SEG, buf, cs, false, &r) == -EMSGSIZE);
    CHECK_EQ(journal_last_seq(j), 0);
    journal_close(j);
    /* A second create over an existing journal is refused. */
    CHECK(journal_create(&o, &j) == -EEXIST);
}

/* Opening a directory without segments says so; options are checked. */
TEST(open_empty_and_bad_opts)
{
    fixture();
    struct journal *j;
    struct journal_opts o = opts(NULL);
    CHECK(util_mkdir_p(dir, 0700) == 0);
    CHECK(journal_open(&o, &j) == -ENOENT);
    o.cap_bytes = SEG; /* fewer than two segments */
    CHECK(journal_open(&o, &j) == -EINVAL);
}

/* ---- Torn tails ----------------------------------------------------------- */

/* A tail entry cut at every length is dropped (never acked), the file is
 * cut back to the last whole entry, and numbering resumes there. */
TEST(torn_tail_every_length)
{
    fixture();
    uint64_t pos[4];
    CHECK(build(4, pos) == 0);
    char path[600];
    seg_file(1, path, sizeof(path));
    uint64_t full = testlib_file_size(path);
    save(path);
    for (uint64_t cut = pos[3]; cut < full; cut++) {
        restore(path);
        truncate_to(path, cut);
        struct journal_stats st;
        struct journal *j = reopen(&st, NULL);
        CHECK(j);
        CHECK_EQ(nrecs, 3);
        CHECK(rec_is_write(2, 3, 2, 102));
        CHECK_EQ(st.torn_bytes, cut - pos[3]);
        CHECK_EQ(st.lost_all + st.damaged, 0);
        CHECK_EQ(testlib_file_size(path), pos[3]);
        struct journal_rec r;
        CHECK(append_write(j, 7, 1, 5, &r) == 0);
        CHECK_EQ(r.seq, 4);
        journal_close(j);
    }
}

/* A tail entry whose header is whole but whose data was not all written
 * is torn too; so are a few stray bytes after the last entry. */
TEST(torn_tail_stray_bytes)
{
    fixture();
    CHECK(build(2, NULL) == 0);
    char path[600];
    seg_file(1, path, sizeof(path));
    uint64_t full = testlib_file_size(path);
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(write(fd, "xyz", 3) == 3);
    close(fd);
    struct journal_stats st;
    struct journal *j = reopen(&st, NULL);
    CHECK(j);
    CHECK_EQ(nrecs, 2);
    CHECK_EQ(st.torn_bytes, 3);
    CHECK_EQ(testlib_file_size(path), full);
    journal_close(j);
}

/* ---- Damage in the middle ------------------------------------------------- */

/* A bit flip in an entry's data: the entry comes back as LOST with its
 * exact range, and the valid entries after it are all replayed. */
TEST(data_bit_flip_is_lost_range)
{
    fixture();
    uint64_t pos[5];
    CHECK(build(5, pos) == 0);
    char path[600];
    seg_file(1, path, sizeof(path));
    CHECK_EQ(testlib_flip_byte(path, pos[2] + JOURNAL_ENT_HDR + 1000, 0x10), 0);
    struct journal_stats st;
    struct journal *j = reopen(&st, NULL);
    CHECK(j);
    CHECK_EQ(nrecs, 5);
    CHECK(rec_is_write(1, 2, 1, 101));
    CHECK_EQ(recs[2].r.kind, JOURNAL_LOST);
    CHECK_EQ(recs[2].r.seq, 3);
    CHECK_EQ(recs[2].r.off, 2 * 4096);
    CHECK_EQ(recs[2].r.len, 4096);
    CHECK(rec_is_write(3, 4, 3, 103));
    CHECK(rec_is_write(4, 5, 4, 104));
    CHECK_EQ(st.damaged, 1);
    journal_close(j);
}

/* A damaged last entry that is complete was written whole, so it may have
 * been acked: it is reported LOST, not cut as torn. */
TEST(data_bit_flip_in_last_entry_is_lost)
{
    fixture();
    uint64_t pos[3];
    CHECK(build(3, pos) == 0);
    char path[600];
    seg_file(1, path, sizeof(path));
    uint64_t full = testlib_file_size(path);
    CHECK_EQ(testlib_flip_byte(path, pos[2] + JOURNAL_ENT_HDR + 5, 1), 0);
    struct journal *j = reopen(NULL, NULL);
    CHECK(j);
    CHECK_EQ(nrecs, 3);
    CHECK_EQ(recs[2].r.kind, JOURNAL_LOST);
    CHECK_EQ(testlib_file_size(path), full);
    journal_close(j);
}

/* A flip anywhere in an entry header: the entry is rebuilt from its
 * trailer (data verified) and every entry after it is replayed. */
TEST(header_bit_flip_recovered_from_trailer)
{
    fixture();
    uint64_t pos[4];
    CHECK(build(4, pos) == 0);
    char path[600];
    seg_file(1, path, sizeof(path));
    save(path);
    for (unsigned b = 0; b < JOURNAL_ENT_HDR; b++) {
        restore(path);
        CHECK_EQ(testlib_flip_byte(path, pos[1] + b, (uint8_t)(1u << (b % 8))), 0);
        struct journal_stats st;
        struct journal *j = reopen(&st, NULL);
        CHECK(j);
        CHECK_EQ(nrecs, 4);
        for (int i = 0; i < 4; i++)
            CHECK(rec_is_write(i, (uint64_t)i + 1, (uint64_t)i, 100 + (uint64_t)i));
        CHECK_EQ(st.recovered, 1);
        CHECK_EQ(st.lost_all + st.damaged, 0);
        journal_close(j);
    }
}

/* Header and trailer both destroyed: the range is unknown, so the whole
 * volume is marked LOST at that number, and later entries still apply on
 * top of the mark. */
TEST(header_and_trailer_lost_marks_everything)
{
    fixture();
    uint64_t pos[4];
    CHECK(build(4, pos) == 0);
    char path[600];
    seg_file(1, path, sizeof(path));
    CHECK_EQ(testlib_flip_byte(path, pos[1] + 3, 0xff), 0);
    CHECK_EQ(testlib_flip_byte(path, pos[2] - 30, 0xff),
             0); /* entry 1's trailer ends where entry 2 begins */
    struct journal_stats st;
    struct journal *j = reopen(&st, NULL);
    CHECK(j);
    CHECK_EQ(nrecs, 4);
    CHECK(rec_is_write(0, 1, 0, 100));
    CHECK_EQ(recs[1].r.kind, JOURNAL_LOST);
    CHECK_EQ(recs[1].r.seq, 2);
    CHECK_EQ(recs[1].r.off, 0);
    CHECK_EQ(recs[1].r.len, JOURNAL_LOST_ALL_LEN);
    CHECK_EQ(recs[1].r.seg, 1);
    CHECK(rec_is_write(2, 3, 2, 102));
    CHECK(rec_is_write(3, 4, 3, 103));
    CHECK_EQ(st.lost_all, 1);
    /* The journal continues after the highest number seen. */
    struct journal_rec r;
    CHECK(append_write(j, 9, 1, 9, &r) == 0);
    CHECK_EQ(r.seq, 5);
    journal_close(j);
}

/* A flip in a trailer alone changes nothing: the header and data are good. */
TEST(trailer_bit_flip_is_harmless)
{
    fixture();
    uint64_t pos[3];
    CHECK(build(3, pos) == 0);
    char path[600];
    seg_file(1, path, sizeof(path));
    CHECK_EQ(testlib_flip_byte(path, pos[1] - 10, 0x40), 0);
    struct journal_stats st;
    struct journal *j = reopen(&st, NULL);
    CHECK(j);
    CHECK_EQ(nrecs, 3);
    for (int i = 0; i < 3; i++)
        CHECK(rec_is_write(i, (uint64_t)i + 1, (uint64_t)i, 100 + (uint64_t)i));
    CHECK_EQ(st.damaged + st.lost_all + st.recovered, 0);
    journal_close(j);
}

/* A stale copy of an older entry after the newest one is never replayed
 * over newer data (its number is not above the last). */
TEST(stale_entry_copy_ignored)
{
    fixture();
    uint64_t pos[3];
    CHECK(build(3, pos) == 0);
    char path[600];
    seg_file(1, path, sizeof(path));
    uint64_t full = testlib_file_size(path);
    int fd = open(path, O_RDWR);
    uint8_t ent[JOURNAL_ENT_OVERHEAD + 4096];
    CHECK(pread(fd, ent, sizeof(ent), (off_t)pos[0]) == (ssize_t)sizeof(ent));
    CHECK(pwrite(fd, ent, sizeof(ent), (off_t)full) == (ssize_t)sizeof(ent));
    close(fd);
    struct journal *j = reopen(NULL, NULL);
    CHECK(j);
    CHECK_EQ(nrecs, 3);
    CHECK(rec_is_write(2, 3, 2, 102));
    CHECK_EQ(testlib_file_size(path), full);
    journal_close(j);
}

/* ---- Idempotence ---------------------------------------------------------- */

/* Replaying twice gives the same records and leaves the files as the
 * first replay left them, damage included. */
TEST(replay_is_idempotent)
{
    fixture();
    uint64_t pos[6];
    CHECK(build(6, pos) == 0);
    char path[600];
    seg_file(1, path, sizeof(path));
    CHECK_EQ(testlib_flip_byte(path, pos[1] + JOURNAL_ENT_HDR + 9, 2), 0); /* damaged data */
    CHECK_EQ(testlib_flip_byte(path, pos[3] + 20, 4), 0);                  /* recoverable header */
    truncate_to(path, testlib_file_size(path) - 100);                      /* torn tail */
    struct journal *j = reopen(NULL, NULL);
    CHECK(j);
    journal_close(j);
    static struct rec first[16];
    int n1 = nrecs;
    memcpy(first, recs, sizeof(first));
    uint64_t size1 = testlib_file_size(path);
    j = reopen(NULL, NULL);
    CHECK(j);
    journal_close(j);
    CHECK_EQ(nrecs, n1);
    CHECK_EQ(n1, 5);
    CHECK(memcmp(first, recs, sizeof(first[0]) * (size_t)n1) == 0);
    CHECK_EQ(testlib_file_size(path), size1);
}

/* ---- Segments ------------------------------------------------------------- */

/* Appends roll to new segments; a full journal says -EAGAIN; the reserve
 * allows one more segment; reclamation deletes only the oldest
 * unreferenced segments, in order. */
TEST(segments_roll_fill_and_reclaim)
{
    fixture();
    struct journal *j;
    struct journal_opts o = opts(NULL);
    CHECK(journal_create(&o, &j) == 0);
    struct journal_rec r;
    uint64_t segs_seen[64];
    unsigned n = 0;
    int rc;
    pattern(4, 1);
    while ((rc = journal_append(j, JOURNAL_WRITE, 0, 4 * 4096, buf, cs, false, &r)) == 0) {
        journal_ref(j, r.seg, 1, false);
        if (n == 0 || segs_seen[n - 1] != r.seg) segs_seen[n++] = r.seg;
        CHECK(n < 64);
    }
    CHECK_EQ(rc, -EAGAIN);
    CHECK_EQ(journal_segments(j), CAP / SEG);
    CHECK(journal_used_bytes(j) <= CAP);
    CHECK(journal_append(j, JOURNAL_WRITE, 0, 4 * 4096, buf, cs, true, &r) == 0);
    CHECK_EQ(journal_segments(j), CAP / SEG + 1);
    journal_ref(j, r.seg, 1, false);
    /* Unreference segment 2 first: nothing goes (1 is older). */
    unsigned per = (unsigned)((SEG - JOURNAL_SEG_HDR) / (JOURNAL_ENT_OVERHEAD + 4 * 4096));
    journal_ref(j, 2, -(int64_t)per, false);
    CHECK_EQ(journal_reclaim(j), 0);
    journal_ref(j, 1, -(int64_t)per, false);
    CHECK_EQ(journal_reclaim(j), 2);
    CHECK_EQ(journal_segments(j), CAP / SEG - 1);
    char path[600];
    seg_file(1, path, sizeof(path));
    CHECK(access(path, F_OK) != 0);
    seg_file(3, path, sizeof(path));
    CHECK(access(path, F_OK) == 0);
    /* There is room again. */
    CHECK(journal_append(j, JOURNAL_WRITE, 0, 4 * 4096, buf, cs, false, &r) == 0);
    journal_close(j);
}

/* A segment referenced only by LOST marks asks to be copied forward. */
TEST(forward_needed_for_lost_only_segment)
{
    fixture();
    struct journal *j;
    struct journal_opts o = opts(NULL);
    CHECK(journal_create(&o, &j) == 0);
    struct journal_rec r;
    uint64_t seg;
    CHECK(journal_append(j, JOURNAL_LOST, 0, 4096, NULL, NULL, false, &r) == 0);
    journal_ref(j, r.seg, 1, true);
    CHECK(!journal_forward_needed(j, &seg)); /* still the active segment */
    pattern(4, 3);
    while (r.seg == 1)
        CHECK(journal_append(j, JOURNAL_WRITE, 0, 4 * 4096, buf, cs, false, &r) == 0);
    CHECK(journal_forward_needed(j, &seg));
    CHECK_EQ(seg, 1);
    journal_ref(j, 1, -1, true);
    CHECK(!journal_forward_needed(j, &seg));
    CHECK_EQ(journal_reclaim(j), 1);
    journal_close(j);
}

/* A missing middle segment means entries are gone with unknown ranges:
 * LOST everything at the first missing number, referencing the segment
 * before the gap. */
TEST(missing_middle_segment)
{
    fixture();
    struct journal *j;
    struct journal_opts o = opts(NULL);
    CHECK(journal_create(&o, &j) == 0);
    struct journal_rec r;
    uint64_t last_in[8] = {0};
    pattern(4, 5);
    for (int i = 0; i < 40; i++) {
        CHECK(journal_append(j, JOURNAL_WRITE, 0, 4 * 4096, buf, cs, false, &r) == 0);
        last_in[r.seg] = r.seq;
        if (r.seg == 4) break;
    }
    journal_close(j);
    char path[600];
    seg_file(2, path, sizeof(path));
    CHECK(unlink(path) == 0);
    struct journal_stats st;
    j = reopen(&st, NULL);
    CHECK(j);
    CHECK_EQ(st.lost_all, 1);
    int k = 0;
    while (k < nrecs && recs[k].r.kind != JOURNAL_LOST) k++;
    CHECK(k < nrecs);
    CHECK_EQ(recs[k].r.seq, last_in[1] + 1);
    CHECK_EQ(recs[k].r.seg, 1);
    CHECK_EQ(recs[k + 1].r.seq, last_in[2] + 1);
    journal_close(j);
}

/* A non-last segment whose last entry runs past its end lost that entry
 * (later segments prove it had been written): LOST for its range. */
TEST(short_entry_in_middle_segment)
{
    fixture();
    struct journal *j;
    struct journal_opts o = opts(NULL);
    CHECK(journal_create(&o, &j) == 0);
    struct journal_rec r, prev = {0};
    pattern(4, 5);
    for (;;) {
        CHECK(journal_append(j, JOURNAL_WRITE, 8192, 4 * 4096, buf, cs, false, &r) == 0);
        if (r.seg == 2) break;
        prev = r;
    }
    journal_close(j);
    char path[600];
    seg_file(1, path, sizeof(path));
    truncate_to(path, prev.data_pos + 100);
    struct journal_stats st;
    j = reopen(&st, NULL);
    CHECK(j);
    CHECK_EQ(recs[nrecs - 2].r.kind, JOURNAL_LOST);
    CHECK_EQ(recs[nrecs - 2].r.seq, prev.seq);
    CHECK_EQ(recs[nrecs - 2].r.off, 8192);
    CHECK_EQ(recs[nrecs - 1].r.kind, JOURNAL_WRITE);
    CHECK_EQ(st.damaged, 1);
    journal_close(j);
}

/* One damaged copy of a segment header is survived; both copies of the
 * only header make the journal unreadable (kept for an operator). */
TEST(segment_header_copies)
{
    fixture();
    CHECK(build(2, NULL) == 0);
    char path[600];
    seg_file(1, path, sizeof(path));
    CHECK_EQ(testlib_flip_byte(path, 10, 1), 0);
    struct journal *j = reopen(NULL, NULL);
    CHECK(j);
    CHECK_EQ(nrecs, 2);
    journal_close(j);
    CHECK_EQ(testlib_flip_byte(path, 512 + 10, 1), 0);
    int rc;
    CHECK(!reopen(NULL, &rc));
    CHECK_EQ(rc, -BD_ECORRUPT);
}

/* ---- Failures ------------------------------------------------------------- */

/* A failed append (ENOSPC) leaves nothing behind and its number is reused. */
TEST(append_enospc_leaves_nothing)
{
    fixture();
    struct fileio_faults faults = {0};
    struct fileio *f = fileio_faulty_new(&fileio_posix, &faults);
    struct journal *j;
    struct journal_opts o = opts(f);
    CHECK(journal_create(&o, &j) == 0);
    struct journal_rec r;
    CHECK(append_write(j, 0, 1, 1, &r) == 0);
    char path[600];
    seg_file(1, path, sizeof(path));
    uint64_t size = testlib_file_size(path);
    faults.enospc = 1;
    CHECK(append_write(j, 1, 1, 2, &r) == -ENOSPC);
    CHECK_EQ(testlib_file_size(path), size);
    faults.enospc = 0;
    CHECK(append_write(j, 1, 1, 2, &r) == 0);
    CHECK_EQ(r.seq, 2);
    journal_close(j);
    fileio_faulty_free(f);
}

/* An fdatasync error fails the journal stop: never retried (C15). */
TEST(sync_eio_fails_stop)
{
    fixture();
    struct fileio_faults faults = {.fsync_eio_after = 1};
    struct fileio *f = fileio_faulty_new(&fileio_posix, &faults);
    struct journal *j;
    struct journal_opts o = opts(f);
    CHECK(journal_create(&o, &j) == 0);
    struct journal_rec r;
    CHECK(append_write(j, 0, 1, 1, &r) == 0);
    CHECK_EQ(journal_sync_now(j), -EIO);
    CHECK(journal_failed(j));
    CHECK_EQ(append_write(j, 1, 1, 2, &r), -BD_EFAILED);
    CHECK_EQ(journal_sync_now(j), -BD_EFAILED);
    journal_close(j);
    fileio_faulty_free(f);
}

/* ---- Group commit --------------------------------------------------------- */

static int sync_done_n, sync_err;
static void on_sync(struct journal_sync_req *r, int err)
{
    (void)r;
    sync_done_n++;
    if (err) sync_err = err;
}

/* Syncs requested while one runs share the next job; with nothing new
 * appended a sync completes at once. */
TEST(sync_group_commit)
{
    fixture();
    struct reactor *rx = reactor_new();
    struct taskq *q = taskq_new(rx, "jsync");
    struct journal *j;
    struct journal_opts o = opts(NULL);
    o.syncq = q;
    CHECK(journal_create(&o, &j) == 0);
    struct journal_rec r;
    struct journal_sync_req reqs[5];
    sync_done_n = sync_err = 0;
    CHECK(append_write(j, 0, 1, 1, &r) == 0);
    for (int i = 0; i < 5; i++) {
        reqs[i].cb = on_sync;
        journal_sync(j, &reqs[i]);
        CHECK(append_write(j, (uint64_t)i + 1, 1, 1, &r) == 0);
    }
    CHECK(testlib_run_until_count(rx, &sync_done_n, 5, 5000));
    CHECK_EQ(sync_done_n, 5);
    CHECK_EQ(sync_err, 0);
    CHECK(journal_sync_now(j) == 0);
    journal_sync(j, &reqs[0]);
    CHECK_EQ(sync_done_n, 6); /* nothing to do: immediate */
    taskq_free(q);
    journal_close(j);
    reactor_free(rx);
}

/* A sync callback that appends and asks for another sync with the same
 * request (what the agent does while writes keep coming) gets that second
 * sync too.  Regression: the waiter list was walked while the callback
 * re-queued onto it, which lost the request, and every later FLUSH hung
 * until the I/O timeout. */
static struct journal *requeue_j;
static struct journal_sync_req requeue_req;
static int requeue_left;
static void on_sync_requeue(struct journal_sync_req *r, int err)
{
    sync_done_n++;
    if (err) sync_err = err;
    if (requeue_left-- > 0) {
        struct journal_rec rec;
        if (append_write(requeue_j, 100 + (uint64_t)requeue_left, 1, 2, &rec) == 0)
            journal_sync(requeue_j, r);
    }
}

TEST(sync_requeued_from_callback)
{
    fixture();
    struct reactor *rx = reactor_new();
    struct taskq *q = taskq_new(rx, "jsync");
    struct journal_opts o = opts(NULL);
    o.syncq = q;
    CHECK(journal_create(&o, &requeue_j) == 0);
    struct journal_rec r;
    sync_done_n = sync_err = 0;
    requeue_left = 5;
    CHECK(append_write(requeue_j, 0, 1, 1, &r) == 0);
    requeue_req.cb = on_sync_requeue;
    journal_sync(requeue_j, &requeue_req);
    CHECK(testlib_run_until_count(rx, &sync_done_n, 6, 5000));
    CHECK_EQ(sync_done_n, 6);
    CHECK_EQ(sync_err, 0);
    taskq_free(q);
    journal_close(requeue_j);
    reactor_free(rx);
}

/* journal_destroy removes every file and the directory. */
TEST(destroy_removes_everything)
{
    fixture();
    struct journal *j;
    struct journal_opts o = opts(NULL);
    CHECK(journal_create(&o, &j) == 0);
    struct journal_rec r;
    for (int i = 0; i < 10; i++) CHECK(append_write(j, (uint64_t)i, 4, 1, &r) == 0);
    CHECK(journal_segments(j) > 1);
    CHECK(journal_destroy(j) == 0);
    CHECK(access(dir, F_OK) != 0);
}
