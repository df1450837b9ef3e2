/* test_util.c: src/base/util.c helpers. */
#include "base/bd.h"
#include "tap.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Sizes take binary units, reject junk, negatives, fractions and overflow. */
TEST(parse_size)
{
    uint64_t v;
    CHECK_EQ(util_parse_size("4096", &v), 0);
    CHECK_EQ(v, 4096);
    CHECK_EQ(util_parse_size("10G", &v), 0);
    CHECK_EQ(v, 10ull << 30);
    CHECK_EQ(util_parse_size("64KiB", &v), 0);
    CHECK_EQ(v, 64ull << 10);
    CHECK_EQ(util_parse_size("1T", &v), 0);
    CHECK_EQ(v, 1ull << 40);
    CHECK(util_parse_size("-1", &v) < 0);
    CHECK(util_parse_size("1.5G", &v) < 0);
    CHECK(util_parse_size("", &v) < 0);
    CHECK(util_parse_size("10X", &v) < 0);
    CHECK(util_parse_size("99999999999999999999", &v) < 0);
    CHECK(util_parse_size("16777216T", &v) < 0);
}

/* Addresses: IPv4, IPv6, localhost and unix sockets; ports 1..65535. */
TEST(parse_addr)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char buf[128];
    CHECK_EQ(util_parse_addr("127.0.0.1:7001", &ss, &len), 0);
    CHECK(strcmp(util_fmt_addr((struct sockaddr *)&ss, buf, sizeof(buf)), "127.0.0.1:7001") == 0);
    CHECK_EQ(util_parse_addr("[::1]:80", &ss, &len), 0);
    CHECK_EQ(util_parse_addr("localhost:10809", &ss, &len), 0);
    CHECK_EQ(util_parse_addr("unix:/tmp/x.sock", &ss, &len), 0);
    CHECK(util_parse_addr("127.0.0.1:0", &ss, &len) < 0);
    CHECK(util_parse_addr("127.0.0.1:70000", &ss, &len) < 0);
    CHECK(util_parse_addr("example.com:80", &ss, &len) < 0);
    CHECK(util_parse_addr("127.0.0.1", &ss, &len) < 0);
    CHECK(util_parse_addr("unix:", &ss, &len) < 0);
}

/* A unix peer's sun_path may fill the field with no NUL after it (found by
 * fuzz_roles: an accepted socketpair's peer): the name is bounded by the
 * field, never read past it. */
TEST(fmt_addr_unix_unterminated)
{
    struct {
        struct sockaddr_un un;
        char after[8];
    } s;
    memset(&s, 'x', sizeof(s));
    s.un.sun_family = AF_UNIX;
    memset(s.after, 'Y', sizeof(s.after));
    char buf[256];
    util_fmt_addr((struct sockaddr *)&s.un, buf, sizeof(buf));
    CHECK_EQ(strlen(buf), 5 + sizeof(s.un.sun_path));
    CHECK(strchr(buf, 'Y') == NULL);
}

/* Constant-time compare gets equality right for every length relation. */
TEST(ct_equal)
{
    CHECK(util_ct_equal("abc", 3, "abc", 3));
    CHECK(!util_ct_equal("abc", 3, "abd", 3));
    CHECK(!util_ct_equal("abc", 3, "abcd", 4));
    CHECK(!util_ct_equal("", 0, "a", 1));
    CHECK(util_ct_equal("", 0, "", 0));
}

/* Hashing zeroes without a buffer equals hashing a zero buffer. */
TEST(xxh3_zeroes)
{
    static uint8_t z[20000];
    CHECK_EQ(util_xxh3_zeroes(0), util_xxh3(z, 0));
    CHECK_EQ(util_xxh3_zeroes(4096), util_xxh3(z, 4096));
    CHECK_EQ(util_xxh3_zeroes(20000), util_xxh3(z, 20000));
}

/* Atomic file writes land whole, and read back. */
TEST(write_file_atomic)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/f", tap_tmpdir());
    CHECK_EQ(util_write_file_atomic(path, "hello", 5, 0600), 0);
    char *buf;
    size_t len;
    CHECK_EQ(util_read_file(path, 100, &buf, &len), 0);
    CHECK_EQ(len, 5);
    CHECK(strcmp(buf, "hello") == 0);
    free(buf);
    CHECK_EQ(util_read_file(path, 2, &buf, &len), (unsigned long long)-EFBIG);
}

/* Sizes print in the largest exact unit. */
TEST(fmt_size)
{
    char b[32];
    CHECK(strcmp(util_fmt_size(1ull << 30, b, sizeof(b)), "1 GiB") == 0);
    CHECK(strcmp(util_fmt_size(4096, b, sizeof(b)), "4 KiB") == 0);
    CHECK(strcmp(util_fmt_size(100, b, sizeof(b)), "100 B") == 0);
}
