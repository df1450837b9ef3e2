/* test_bytes.c: src/base/bytes.h, the primitives and cursors every byte
 * layout is encoded with.  The primitives against fixed bytes in both
 * byte orders; the cursors' stickiness (the first overrun stops every
 * later call, and one check of `err` at the end catches it), reserved
 * bytes, and the reader's offset. */
#include "base/bytes.h"
#include "golden.h"
#include "tap.h"

#include <string.h>

/* Each primitive puts a known value at known bytes and gets it back. */
TEST(primitives)
{
    uint8_t b[8];
    bytes_put_le64(b, 0x0102030405060708ull);
    CHECK(golden_eq("le64", b, 8, "0807060504030201"));
    CHECK_EQ(bytes_get_le64(b), 0x0102030405060708ull);
    bytes_put_be64(b, 0x0102030405060708ull);
    CHECK(golden_eq("be64", b, 8, "0102030405060708"));
    CHECK_EQ(bytes_get_be64(b), 0x0102030405060708ull);
    bytes_put_le32(b, 0xdeadbeef);
    CHECK(golden_eq("le32", b, 4, "efbeadde"));
    CHECK_EQ(bytes_get_le32(b), 0xdeadbeef);
    bytes_put_be32(b, 0xdeadbeef);
    CHECK(golden_eq("be32", b, 4, "deadbeef"));
    CHECK_EQ(bytes_get_be32(b), 0xdeadbeef);
    bytes_put_le16(b, 0xabcd);
    CHECK(golden_eq("le16", b, 2, "cdab"));
    CHECK_EQ(bytes_get_le16(b), 0xabcd);
    bytes_put_be16(b, 0xabcd);
    CHECK(golden_eq("be16", b, 2, "abcd"));
    CHECK_EQ(bytes_get_be16(b), 0xabcd);
}

/* A writer lays fields end to end in the order of the calls. */
TEST(writer_layout)
{
    uint8_t b[32];
    struct bytes_w w;
    bw_init(&w, b, sizeof(b));
    bw_u8(&w, 0x11);
    bw_u16(&w, 0x2233);
    bw_u32(&w, 0x44556677);
    bw_u64(&w, 0x8899aabbccddeeffull);
    bw_zeros(&w, 2);
    bw_be16(&w, 0x0102);
    bw_be32(&w, 0x03040506);
    bw_mem(&w, "xy", 2);
    CHECK_EQ(w.err, 0);
    CHECK_EQ(w.used, 25);
    CHECK_EQ(w.left, 7);
    CHECK(golden_eq("writer", b, w.used,
                    "11 3322 77665544 ffeeddccbbaa9988 0000 0102 03040506 7879"));
}

/* The first overrun sets -EMSGSIZE; later calls write nothing, even ones
 * that would fit. */
TEST(writer_sticky)
{
    uint8_t b[8];
    memset(b, 0x5a, sizeof(b));
    struct bytes_w w;
    bw_init(&w, b, 6);
    bw_u32(&w, 1);
    bw_u32(&w, 2); /* 4 + 4 > 6 */
    bw_u8(&w, 3);  /* would fit, but the writer has failed */
    CHECK_EQ(w.err, -EMSGSIZE);
    CHECK_EQ(w.used, 4);
    CHECK(bw_take(&w, 0) == NULL);
    CHECK(golden_eq("sticky", b, 8, "01000000 5a5a 5a5a"));
}

/* A reader reads what the writer wrote, tracks its offset, and the first
 * underrun sets -EPROTO and makes every later read 0. */
TEST(reader)
{
    uint8_t b[64];
    size_t n = golden_bytes("11 3322 77665544 ffeeddccbbaa9988 0000 0102 03040506 7879", b,
                            sizeof(b));
    struct bytes_r r;
    br_init(&r, b, n);
    CHECK_EQ(br_u8(&r), 0x11);
    CHECK_EQ(br_u16(&r), 0x2233);
    CHECK_EQ(r.used, 3);
    CHECK_EQ(br_u32(&r), 0x44556677);
    CHECK_EQ(br_u64(&r), 0x8899aabbccddeeffull);
    br_zeros(&r, 2);
    CHECK_EQ(br_be16(&r), 0x0102);
    CHECK_EQ(br_be32(&r), 0x03040506);
    char xy[2];
    br_mem(&r, xy, 2);
    CHECK(xy[0] == 'x' && xy[1] == 'y');
    CHECK_EQ(r.err, 0);
    CHECK_EQ(r.left, 0);
    CHECK_EQ(br_u8(&r), 0);
    CHECK_EQ(r.err, -EPROTO);
    br_init(&r, b, n);
    br_skip(&r, 1);
    CHECK_EQ(br_be64(&r), 0x332277665544ffeeull); /* bytes 1..8 read big-endian */
    CHECK_EQ(r.err, 0);
}

/* Reserved bytes must be zero; br_fail marks a field out of range. */
TEST(reader_zeros_and_fail)
{
    uint8_t b[4] = {0, 0, 1, 0};
    struct bytes_r r;
    br_init(&r, b, sizeof(b));
    br_zeros(&r, 2);
    CHECK_EQ(r.err, 0);
    br_zeros(&r, 2);
    CHECK_EQ(r.err, -EPROTO);
    br_init(&r, b, sizeof(b));
    br_fail(&r);
    CHECK_EQ(r.err, -EPROTO);
    CHECK_EQ(br_u8(&r), 0);
    uint8_t out[2] = {9, 9};
    br_mem(&r, out, 2); /* a failed copy-out zeroes its destination */
    CHECK(out[0] == 0 && out[1] == 0);
}
