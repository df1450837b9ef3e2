/* test_hist.c: the history checker of the partition tests (tests/tools/hist.h).
 * Each violation it exists to find is planted in a small history and must
 * be found; linearizable histories with concurrency, unknown outcomes and
 * failed writes must pass.  A checker that passes everything would make
 * every partition test pass, so every diagnosis is triggered here. */
#include <stdio.h>
#include <string.h>

#include "hist.h"
#include "tap.h"

static char report[8192];

/* Check history TEXT; the number of violations (-1: it did not parse). */
static long check(const char *text, struct hist_result *r)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    struct hist h = {0};
    if (!f) return -1;
    int rc = hist_parse(f, "test", &h);
    fclose(f);
    if (rc) {
        hist_free(&h);
        return -1;
    }
    FILE *out = fmemopen(report, sizeof(report) - 1, "w");
    memset(report, 0, sizeof(report));
    uint64_t v = hist_check(&h, out, 20, r);
    fclose(out);
    hist_free(&h);
    return (long)v;
}

static bool found(const char *kind)
{
    return strstr(report, kind) != NULL;
}

/* Sequential write then read of the same value: linearizable. */
TEST(sequential_ok)
{
    struct hist_result r;
    CHECK_EQ(check("10 1 invoke write 0 1:1\n20 1 ok write 0 1:1 0\n"
                   "30 1 invoke read 0\n40 1 ok read 0 1:1 0\n"
                   "50 2 invoke read 1\n60 2 ok read 1 0 0\n", &r), 0);
    CHECK_EQ(r.ops, 3);
    CHECK_EQ(r.blocks, 2);
}

/* Two concurrent writes; reads may see either order, once. */
TEST(concurrent_writes_either_order)
{
    struct hist_result r;
    CHECK_EQ(check("10 1 invoke write 0 1:1\n12 2 invoke write 0 2:1\n"
                   "20 1 ok write 0 1:1 0\n25 2 ok write 0 2:1 0\n"
                   "30 3 invoke read 0\n40 3 ok read 0 1:1 0\n", &r), 0);
    CHECK_EQ(check("10 1 invoke write 0 1:1\n12 2 invoke write 0 2:1\n"
                   "20 1 ok write 0 1:1 0\n25 2 ok write 0 2:1 0\n"
                   "30 3 invoke read 0\n40 3 ok read 0 2:1 0\n", &r), 0);
}

/* A read overlapping a write may return the old or the new value. */
TEST(read_concurrent_with_write)
{
    struct hist_result r;
    CHECK_EQ(check("10 1 invoke write 0 1:1\n15 2 invoke read 0\n16 2 ok read 0 1:1 0\n"
                   "20 1 ok write 0 1:1 0\n", &r), 0);
    CHECK_EQ(check("10 1 invoke write 0 1:1\n15 2 invoke read 0\n16 2 ok read 0 0 0\n"
                   "20 1 ok write 0 1:1 0\n", &r), 0);
}

/* Reading zeros after a completed write: a stale read. */
TEST(stale_zero_read)
{
    struct hist_result r;
    CHECK_EQ(check("10 1 invoke write 0 1:1\n20 1 ok write 0 1:1 0\n"
                   "30 2 invoke read 0\n40 2 ok read 0 0 0\n", &r), 1);
    CHECK(found("not-linearizable"));
}

/* W1 < W2 < read of W1: stale. */
TEST(stale_value_read)
{
    struct hist_result r;
    CHECK(check("10 1 invoke write 0 1:1\n20 1 ok write 0 1:1 0\n"
                "30 1 invoke write 0 1:2\n40 1 ok write 0 1:2 0\n"
                "50 2 invoke read 0\n60 2 ok read 0 1:1 0\n", &r) >= 1);
    CHECK(found("not-linearizable"));
}

/* New value seen, then the old one again (forward zones overlap). */
TEST(flip_flop)
{
    struct hist_result r;
    CHECK(check("10 1 invoke write 0 1:1\n11 1 ok write 0 1:1 0\n"
                "12 1 invoke write 0 1:2\n13 1 ok write 0 1:2 0\n"
                "15 2 invoke read 0\n16 2 ok read 0 1:2 0\n"
                "20 3 invoke read 0\n21 3 ok read 0 1:1 0\n", &r) >= 1);
    CHECK(found("not-linearizable"));
}

/* A value read before its write was invoked. */
TEST(read_from_the_future)
{
    struct hist_result r;
    CHECK(check("10 2 invoke read 0\n20 2 ok read 0 1:1 0\n"
                "30 1 invoke write 0 1:1\n40 1 ok write 0 1:1 0\n", &r) >= 1);
    CHECK(found("read-before-write"));
}

/* A value nobody wrote to this block; torn, garbage and alien reads. */
TEST(bad_values)
{
    struct hist_result r;
    CHECK_EQ(check("10 2 invoke read 3\n20 2 ok read 3 1:7 0\n", &r), 1);
    CHECK(found("unissued"));
    CHECK_EQ(check("10 2 invoke read 3\n20 2 ok read 3 torn 0\n", &r), 1);
    CHECK(found("torn"));
    CHECK_EQ(check("10 2 invoke read 3\n20 2 ok read 3 garbage 0\n", &r), 1);
    CHECK(found("garbage"));
    CHECK_EQ(check("10 2 invoke read 3\n20 2 ok read 3 alien:block=4 0\n", &r), 1);
    CHECK(found("alien:block=4"));
}

/* Failed and unanswered writes may or may not have happened; either way
 * passes, but they are counted. */
TEST(unknown_outcomes)
{
    struct hist_result r;
    CHECK_EQ(check("10 1 invoke write 0 1:1\n20 1 info write 0 1:1 110\n"
                   "30 2 invoke read 0\n40 2 ok read 0 0 0\n"
                   "50 2 invoke read 0\n60 2 ok read 0 1:1 0\n", &r), 0);
    CHECK_EQ(r.indeterminate, 1);
    CHECK_EQ(check("10 1 invoke write 0 1:1\n20 1 fail write 0 1:1 5\n"
                   "30 2 invoke read 0\n40 2 ok read 0 0 0\n", &r), 0);
    CHECK_EQ(r.failed, 1);
    /* An op still open at the end is unknown too. */
    CHECK_EQ(check("10 1 invoke write 0 1:1\n30 2 invoke read 0\n40 2 ok read 0 1:1 0\n", &r), 0);
    CHECK_EQ(r.indeterminate, 1);
}

/* A flushed write lost: the final read returns the value before it. */
TEST(lost_flushed_write)
{
    struct hist_result r;
    CHECK(check("10 1 invoke write 0 1:1\n20 1 ok write 0 1:1 0\n"
                "30 1 invoke write 0 1:2\n40 1 ok write 0 1:2 0\n"
                "50 1 invoke flush\n60 1 ok flush 0\n"
                "# final\n100 999 invoke read 0\n110 999 ok read 0 1:1 0\n", &r) >= 1);
    CHECK(found("lost-flushed"));
    /* The same with FUA instead of a flush. */
    CHECK(check("10 1 invoke write 0 1:1\n20 1 ok write 0 1:1 0\n"
                "30 1 invoke write 0 1:2 fua\n40 1 ok write 0 1:2 0\n"
                "100 2 invoke read 0\n110 2 ok read 0 0 0\n", &r) >= 1);
    CHECK(found("lost-flushed"));
}

/* The stall figure: the longest time with nothing completing. */
TEST(stall_figures)
{
    struct hist_result r;
    CHECK_EQ(check("0 1 invoke write 0 1:1\n1000 1 ok write 0 1:1 0\n"
                   "1000 1 invoke read 0\n9000 1 ok read 0 1:1 0\n"
                   "9000 1 invoke read 0\n9500 1 ok read 0 1:1 0\n", &r), 0);
    CHECK_EQ(r.longest_stall_us, 8000);
    CHECK_EQ(r.max_latency_us, 8000);
}

/* Malformed histories are refused, not checked. */
TEST(malformed)
{
    struct hist_result r;
    CHECK_EQ(check("10 1 ok write 0 1:1 0\n", &r), -1);
    CHECK_EQ(check("10 1 invoke write 0 1:1\n11 1 invoke read 0\n", &r), -1);
    CHECK_EQ(check("10 1 invoke write 0 0:1\n", &r), -1);
    CHECK_EQ(check("10 1 bogus\n", &r), -1);
}
