/* test_stamp.c: the stamped-block format, every diagnosis of
 * stamp_classify(), the fsx model windows and the crash-window log replay
 * (tests/tools/).  These are the checkers that prove C5-C11 in every
 * end-to-end test, so each diagnosis path is triggered here at least once. */
#include <stdio.h>
#include <string.h>

#include "fsx_log.h"
#include "fsx_model.h"
#include "stamp.h"
#include "tap.h"

/* ---- Fixture ---------------------------------------------------------------- */

static const struct stamp me = {.vol = 7, .seed = 1234, .writer = 1, .gen = 3};
static uint8_t buf[STAMP_BLOCK];
static char why[600];

/* Fill buf with my stamp for BLOCK at SEQ. */
static void mine(uint64_t block, uint64_t seq)
{
    struct stamp s = me;
    s.block = block;
    s.seq = seq;
    stamp_fill(buf, &s);
}

static struct stamp_expect exact(uint64_t seq)
{
    return (struct stamp_expect){.lo = seq, .hi = seq, .last_seq = seq};
}

static enum stamp_diag classify(uint64_t block, struct stamp_expect e)
{
    return stamp_classify(buf, block, &me, &e, why, sizeof why);
}

/* ---- Format ------------------------------------------------------------------ */

/* A stamp parses back to the fields it was made from. */
TEST(fill_parse_round_trip)
{
    struct stamp got;
    mine(42, 99);
    CHECK_EQ(stamp_parse(buf, &got), STAMP_VALID);
    CHECK_EQ(got.vol, 7);
    CHECK_EQ(got.block, 42);
    CHECK_EQ(got.seq, 99);
    CHECK_EQ(got.gen, 3);
    CHECK_EQ(got.seed, 1234);
    CHECK_EQ(got.writer, 1);
}

/* Two writes to one block differ in their payloads, not only the header. */
TEST(payload_depends_on_seq)
{
    uint8_t other[STAMP_BLOCK];
    mine(1, 1);
    memcpy(other, buf, sizeof other);
    mine(1, 2);
    CHECK(memcmp(other + STAMP_HDR, buf + STAMP_HDR, STAMP_BLOCK - STAMP_HDR) != 0);
}

/* One flipped payload bit fails the checksum. */
TEST(bit_flip_fails_checksum)
{
    struct stamp got;
    mine(1, 1);
    buf[3000] ^= 0x10;
    CHECK_EQ(stamp_parse(buf, &got), STAMP_BAD_SUM);
}

/* ---- Diagnoses --------------------------------------------------------------- */

/* The exact expected write is OK; so is a seq inside a window. */
TEST(ok_exact_and_window)
{
    mine(5, 10);
    CHECK_EQ(classify(5, exact(10)), STAMP_DIAG_OK);
    CHECK_EQ(classify(5, (struct stamp_expect){.lo = 8, .hi = 12, .last_seq = 12}), STAMP_DIAG_OK);
}

/* Zeros are fine when allowed and a lost write when data is expected. */
TEST(zeros)
{
    memset(buf, 0, sizeof buf);
    CHECK_EQ(classify(5, (struct stamp_expect){.zero_ok = true}), STAMP_DIAG_OK);
    CHECK_EQ(classify(5, exact(10)), STAMP_DIAG_LOST_WRITE);
    CHECK(strstr(why, "read zeros") != NULL);
}

/* Bytes without a stamp are garbage. */
TEST(garbage)
{
    memset(buf, 0xab, sizeof buf);
    CHECK_EQ(classify(5, exact(10)), STAMP_DIAG_GARBAGE);
}

/* New header, old second half: torn, and the message names the sectors. */
TEST(torn_half_block)
{
    uint8_t old[STAMP_BLOCK];
    mine(5, 9);
    memcpy(old, buf, sizeof old);
    mine(5, 10);
    memcpy(buf + 2048, old + 2048, 2048);
    CHECK_EQ(classify(5, exact(10)), STAMP_DIAG_TORN);
    CHECK(strstr(why, "....XXXX") != NULL);
}

/* Another volume's stamp is a C11 violation. */
TEST(other_volume)
{
    struct stamp s = me;
    s.vol = 8, s.block = 5, s.seq = 10;
    stamp_fill(buf, &s);
    CHECK_EQ(classify(5, exact(10)), STAMP_DIAG_OTHER_VOLUME);
}

/* A stamp naming another block is misdirected, even if its seq is right. */
TEST(misdirected)
{
    mine(6, 10);
    CHECK_EQ(classify(5, exact(10)), STAMP_DIAG_MISDIRECTED);
    CHECK(strstr(why, "block 6") != NULL);
}

/* Same volume, another seed: data left by another run. */
TEST(other_run)
{
    struct stamp s = me;
    s.seed = 999, s.block = 5, s.seq = 10;
    stamp_fill(buf, &s);
    CHECK_EQ(classify(5, exact(10)), STAMP_DIAG_OTHER_RUN);
}

/* Another writer id, or a lower generation: a foreign (fenced) writer. */
TEST(foreign_writer_and_generation)
{
    struct stamp s = me;
    s.writer = 2, s.block = 5, s.seq = 10;
    stamp_fill(buf, &s);
    CHECK_EQ(classify(5, exact(10)), STAMP_DIAG_FOREIGN_WRITER);
    s.writer = 1, s.gen = 2;
    stamp_fill(buf, &s);
    CHECK_EQ(classify(5, exact(10)), STAMP_DIAG_FOREIGN_WRITER);
}

/* An older seq than the window is stale; a newer one was never issued. */
TEST(stale_and_unissued)
{
    mine(5, 7);
    CHECK_EQ(classify(5, exact(10)), STAMP_DIAG_STALE);
    mine(5, 11);
    CHECK_EQ(classify(5, exact(10)), STAMP_DIAG_UNISSUED);
}

/* Data older than a trim that must read zeros has been resurrected. */
TEST(resurrected_after_trim)
{
    mine(5, 7);
    struct stamp_expect e = {.zero_ok = true, .last_seq = 9, .last_is_zero = true};
    CHECK_EQ(classify(5, e), STAMP_DIAG_RESURRECTED);
    mine(5, 12);
    CHECK_EQ(classify(5, e), STAMP_DIAG_UNISSUED);
}

/* Unknown initial contents accept anything but this run's own wrong stamp. */
TEST(any_ok)
{
    struct stamp_expect e = {.any_ok = true, .zero_ok = true};
    memset(buf, 0xcd, sizeof buf);
    CHECK_EQ(classify(5, e), STAMP_DIAG_OK);
    mine(5, 3);
    CHECK_EQ(classify(5, e), STAMP_DIAG_UNISSUED);
}

/* ---- Model ------------------------------------------------------------------- */

/* Linearizable: every op resets the window to exactly its value. */
TEST(model_reset)
{
    struct fsx_model m;
    struct stamp_expect e;
    CHECK_EQ(fsx_model_init(&m, 8, false, false), 0);
    fsx_model_expect(&m, 3, &e);
    CHECK(e.zero_ok && !e.lo);
    fsx_model_apply(&m, 2, 3, 10, FSX_WRITE, true);
    fsx_model_apply(&m, 3, 1, 11, FSX_WRITE, true);
    fsx_model_expect(&m, 3, &e);
    CHECK(e.lo == 11 && e.hi == 11 && !e.zero_ok);
    fsx_model_apply(&m, 3, 1, 12, FSX_TRIM, true);
    fsx_model_expect(&m, 3, &e);
    CHECK(!e.lo && e.zero_ok && e.last_is_zero);
    fsx_model_fini(&m);
}

/* Extend keeps old values allowed until settle. */
TEST(model_extend_then_settle)
{
    struct fsx_model m;
    struct stamp_expect e;
    CHECK_EQ(fsx_model_init(&m, 8, false, false), 0);
    fsx_model_apply(&m, 1, 1, 5, FSX_WRITE, true);
    fsx_model_apply(&m, 1, 1, 6, FSX_WRITE, false);
    fsx_model_apply(&m, 1, 1, 7, FSX_ZERO, false);
    fsx_model_apply(&m, 1, 1, 8, FSX_WRITE, false);
    fsx_model_expect(&m, 1, &e);
    CHECK(e.lo == 5 && e.hi == 8 && e.zero_ok);
    fsx_model_settle(&m);
    fsx_model_expect(&m, 1, &e);
    CHECK(e.lo == 8 && e.hi == 8 && !e.zero_ok);
    fsx_model_fini(&m);
}

/* Loose trim keeps the old data allowed next to zeros. */
TEST(model_loose_trim)
{
    struct fsx_model m;
    struct stamp_expect e;
    CHECK_EQ(fsx_model_init(&m, 4, false, true), 0);
    fsx_model_apply(&m, 0, 1, 5, FSX_WRITE, true);
    fsx_model_apply(&m, 0, 1, 6, FSX_TRIM, true);
    fsx_model_expect(&m, 0, &e);
    CHECK(e.lo == 5 && e.zero_ok);
    fsx_model_fini(&m);
}

/* ---- Log replay ---------------------------------------------------------------- */

static const char *write_log(const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/log", tap_tmpdir());
    FILE *f = fopen(path, "w");
    fputs("H blockd-fsx-log 1 seed=1234 vol=7 writer=1 gen=3 size=65536 init=zero trim=strict range=0:16\n", f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Flushed write bounds the window; later acked and issued writes join it. */
TEST(replay_flushed_window)
{
    struct fsx_log_hdr h;
    struct fsx_model m;
    struct fsx_log_stats st;
    struct stamp_expect e;
    char err[256];
    const char *p = write_log("I 1 W 0 2\nA 1\nFI 2\nFA 2\nI 3 W 0 1\nA 3\nI 4 W 0 1\n");
    CHECK_EQ(fsx_log_replay(p, FSX_REQUIRE_FLUSHED, &h, &m, &st, err, sizeof err), 0);
    CHECK_EQ(h.me.vol, 7);
    CHECK_EQ(m.nblocks, 16);
    fsx_model_expect(&m, 0, &e);
    CHECK(e.lo == 1 && e.hi == 4 && !e.zero_ok);
    fsx_model_expect(&m, 1, &e);
    CHECK(e.lo == 1 && e.hi == 1);
    CHECK_EQ(st.durable, 1);
    fsx_model_fini(&m);
    /* C4: acked means durable. */
    CHECK_EQ(fsx_log_replay(p, FSX_REQUIRE_ACKED, &h, &m, &st, err, sizeof err), 0);
    fsx_model_expect(&m, 0, &e);
    CHECK(e.lo == 3 && e.hi == 4);
    fsx_model_fini(&m);
}

/* A write acked after FI is not covered by that flush; FUA is durable alone. */
TEST(replay_flush_covers_only_earlier_acks)
{
    struct fsx_log_hdr h;
    struct fsx_model m;
    struct fsx_log_stats st;
    struct stamp_expect e;
    char err[256];
    const char *p = write_log("I 1 W 0 1\nFI 2\nA 1\nFA 2\nI 3 F 1 1\nA 3\nI 4 W 1 1\n");
    CHECK_EQ(fsx_log_replay(p, FSX_REQUIRE_FLUSHED, &h, &m, &st, err, sizeof err), 0);
    fsx_model_expect(&m, 0, &e);
    CHECK(e.lo == 1 && e.zero_ok); /* never durable: zeros still allowed */
    fsx_model_expect(&m, 1, &e);
    CHECK(e.lo == 3 && e.hi == 4 && !e.zero_ok);
    fsx_model_fini(&m);
}

/* A flushed trim then an unacked write: zeros or the write. */
TEST(replay_trim_window)
{
    struct fsx_log_hdr h;
    struct fsx_model m;
    struct fsx_log_stats st;
    struct stamp_expect e;
    char err[256];
    const char *p = write_log("I 1 W 0 1\nA 1\nI 2 T 0 1\nA 2\nFI 3\nFA 3\nI 4 W 0 1\n");
    CHECK_EQ(fsx_log_replay(p, FSX_REQUIRE_FLUSHED, &h, &m, &st, err, sizeof err), 0);
    fsx_model_expect(&m, 0, &e);
    CHECK(e.lo == 4 && e.hi == 4 && e.zero_ok);
    mine(0, 1);
    CHECK_EQ(stamp_classify(buf, 0, &me, &e, why, sizeof why), STAMP_DIAG_STALE);
    fsx_model_fini(&m);
}

/* A last line cut short by a kill is ignored; a bad line in the middle is not. */
TEST(replay_truncated_and_malformed)
{
    struct fsx_log_hdr h;
    struct fsx_model m;
    struct fsx_log_stats st;
    char err[256];
    CHECK_EQ(fsx_log_replay(write_log("I 1 W 0 1\nA 1\nI 2 W"), FSX_REQUIRE_FLUSHED, &h, &m, &st,
                            err, sizeof err), 0);
    CHECK_EQ(st.ops, 1);
    fsx_model_fini(&m);
    CHECK(fsx_log_replay(write_log("I 1 W 0 1\nA 9\n"), FSX_REQUIRE_FLUSHED, &h, &m, &st, err,
                         sizeof err) < 0);
    CHECK(strstr(err, ":3: malformed line") != NULL);
    CHECK(fsx_log_replay(write_log("I 1 W 15 2\n"), FSX_REQUIRE_FLUSHED, &h, &m, &st, err,
                         sizeof err) < 0);
}
