/* test_journal.c: the agent's write-back journal (src/store/journal.c).
 *
 * Defends C4 (acked entries survive a process crash: replay finds them),
 * C5/C14 (damage is reported as LOST, never replayed as data), C9 (FIFO
 * reclamation) and CONTRACT.md §3 "bytes on disk": torn tails, bit flips
 * in data and headers, valid entries after a damaged one, idempotent
 * replay.
 *
 * Fixture: a fresh directory per test, small segments (64 KiB) so that
 * rollover and reclamation happen after a few entries.  Records from
 * replay are collected into an array and compared with what was
 * appended. */
#include "bd.h"
#include "log.h"
#include "net/reactor.h"
#include "net/taskq.h"
#include "store/fileio.h"
#include "store/journal.h"
#include "tap.h"
#include "util.h"

#include <event2/event.h>
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

static struct journal_opts opts(struct fio *f)
{
    return (struct journal_opts){.fio = f ? f : &fio_posix, .dir = dir, .tag = "test",
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
    for (unsigned i = 0; i < n * JOURNAL_BLOCK; i++) buf[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 12));
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

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static void xor_byte(const char *path, uint64_t off, uint8_t mask)
{
    int fd = open(path, O_RDWR);
    uint8_t b = 0;
    if (pread(fd, &b, 1, (off_t)off) != 1) abort();
    b ^= mask;
    if (pwrite(fd, &b, 1, (off_t)off) != 1) abort();
    close(fd);
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
    CHECK_EQ(journal_last_seq(j), 3);
    journal_close(j);

    struct journal_stats st;
    j = reopen(&st, NULL);
    CHECK(j);
    CHECK_EQ(journal_vol_id(j), VOL);
    CHECK(strcmp(journal_name(j), "vol-a") == 0);
    CHECK_EQ(nrecs, 3);
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
    CHECK_EQ(st.entries, 3);
    CHECK_EQ(st.torn_bytes, 0);
    uint8_t got[8192];
    CHECK(journal_read(j, seg, pos, got, sizeof(got)) == 0);
    CHECK(memcmp(got, buf, sizeof(got)) == 0);
    /* Appends continue the numbering. */
    CHECK(append_write(j, 9, 1, 1, &r) == 0);
    CHECK_EQ(r.seq, 4);
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
    uint64_t full = file_size(path);
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
        CHECK_EQ(file_size(path), pos[3]);
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
    uint64_t full = file_size(path);
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(write(fd, "xyz", 3) == 3);
    close(fd);
    struct journal_stats st;
    struct journal *j = reopen(&st, NULL);
    CHECK(j);
    CHECK_EQ(nrecs, 2);
    CHECK_EQ(st.torn_bytes, 3);
    CHECK_EQ(file_size(path), full);
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
    xor_byte(path, pos[2] + JOURNAL_ENT_HDR + 1000, 0x10);
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
    uint64_t full = file_size(path);
    xor_byte(path, pos[2] + JOURNAL_ENT_HDR + 5, 1);
    struct journal *j = reopen(NULL, NULL);
    CHECK(j);
    CHECK_EQ(nrecs, 3);
    CHECK_EQ(recs[2].r.kind, JOURNAL_LOST);
    CHECK_EQ(file_size(path), full);
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
        xor_byte(path, pos[1] + b, (uint8_t)(1u << (b % 8)));
        struct journal_stats st;
        struct journal *j = reopen(&st, NULL);
        CHECK(j);
        CHECK_EQ(nrecs, 4);
        for (int i = 0; i < 4; i++) CHECK(rec_is_write(i, (uint64_t)i + 1, (uint64_t)i, 100 + (uint64_t)i));
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
    xor_byte(path, pos[1] + 3, 0xff);
    xor_byte(path, pos[2] - 30, 0xff); /* entry 1's trailer ends where entry 2 begins */
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
    xor_byte(path, pos[1] - 10, 0x40);
    struct journal_stats st;
    struct journal *j = reopen(&st, NULL);
    CHECK(j);
    CHECK_EQ(nrecs, 3);
    for (int i = 0; i < 3; i++) CHECK(rec_is_write(i, (uint64_t)i + 1, (uint64_t)i, 100 + (uint64_t)i));
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
    uint64_t full = file_size(path);
    int fd = open(path, O_RDWR);
    uint8_t ent[JOURNAL_ENT_OVERHEAD + 4096];
    CHECK(pread(fd, ent, sizeof(ent), (off_t)pos[0]) == (ssize_t)sizeof(ent));
    CHECK(pwrite(fd, ent, sizeof(ent), (off_t)full) == (ssize_t)sizeof(ent));
    close(fd);
    struct journal *j = reopen(NULL, NULL);
    CHECK(j);
    CHECK_EQ(nrecs, 3);
    CHECK(rec_is_write(2, 3, 2, 102));
    CHECK_EQ(file_size(path), full);
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
    xor_byte(path, pos[1] + JOURNAL_ENT_HDR + 9, 2);     /* damaged data */
    xor_byte(path, pos[3] + 20, 4);                      /* recoverable header */
    truncate_to(path, file_size(path) - 100);            /* torn tail */
    struct journal *j = reopen(NULL, NULL);
    CHECK(j);
    journal_close(j);
    static struct rec first[16];
    int n1 = nrecs;
    memcpy(first, recs, sizeof(first));
    uint64_t size1 = file_size(path);
    j = reopen(NULL, NULL);
    CHECK(j);
    journal_close(j);
    CHECK_EQ(nrecs, n1);
    CHECK_EQ(n1, 5);
    CHECK(memcmp(first, recs, sizeof(first[0]) * (size_t)n1) == 0);
    CHECK_EQ(file_size(path), size1);
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
    while (r.seg == 1) CHECK(journal_append(j, JOURNAL_WRITE, 0, 4 * 4096, buf, cs, false, &r) == 0);
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
    xor_byte(path, 10, 1);
    struct journal *j = reopen(NULL, NULL);
    CHECK(j);
    CHECK_EQ(nrecs, 2);
    journal_close(j);
    xor_byte(path, 512 + 10, 1);
    int rc;
    CHECK(!reopen(NULL, &rc));
    CHECK_EQ(rc, -BD_ECORRUPT);
}

/* ---- Failures ------------------------------------------------------------- */

/* A failed append (ENOSPC) leaves nothing behind and its number is reused. */
TEST(append_enospc_leaves_nothing)
{
    fixture();
    struct fio_faults faults = {0};
    struct fio *f = fio_faulty_new(&fio_posix, &faults);
    struct journal *j;
    struct journal_opts o = opts(f);
    CHECK(journal_create(&o, &j) == 0);
    struct journal_rec r;
    CHECK(append_write(j, 0, 1, 1, &r) == 0);
    char path[600];
    seg_file(1, path, sizeof(path));
    uint64_t size = file_size(path);
    faults.enospc = 1;
    CHECK(append_write(j, 1, 1, 2, &r) == -ENOSPC);
    CHECK_EQ(file_size(path), size);
    faults.enospc = 0;
    CHECK(append_write(j, 1, 1, 2, &r) == 0);
    CHECK_EQ(r.seq, 2);
    journal_close(j);
    fio_faulty_free(f);
}

/* An fdatasync error fails the journal stop: never retried (C15). */
TEST(sync_eio_fails_stop)
{
    fixture();
    struct fio_faults faults = {.fsync_eio_after = 1};
    struct fio *f = fio_faulty_new(&fio_posix, &faults);
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
    fio_faulty_free(f);
}

/* ---- Group commit --------------------------------------------------------- */

static int sync_done_n, sync_err;
static void on_sync(struct journal_sync_req *r, int err)
{
    (void)r;
    sync_done_n++;
    if (err) sync_err = err;
}

static void run_until(struct reactor *rx, int *flag, int want, int ms)
{
    uint64_t end = util_mono_ms() + (uint64_t)ms;
    while (*flag < want && util_mono_ms() < end)
        event_base_loop(reactor_base(rx), EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(200);
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
    run_until(rx, &sync_done_n, 5, 5000);
    CHECK_EQ(sync_done_n, 5);
    CHECK_EQ(sync_err, 0);
    CHECK(journal_sync_now(j) == 0);
    journal_sync(j, &reqs[0]);
    CHECK_EQ(sync_done_n, 6); /* nothing to do: immediate */
    taskq_free(q);
    journal_close(j);
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
