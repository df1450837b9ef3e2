/* golden.h: golden-bytes checks for the unit tests of byte layouts (the
 * blob segment, journal, Raft log, index records and dump, index commands,
 * wire, raftmsg and NBD).
 *
 * A golden test pins a format: a fixed value encodes to a fixed hex string
 * and that hex decodes back to the value.  The hex strings were taken from
 * the code as it was when each test was written, so a change that moves a
 * byte fails the test until the format's version, its offset table and the
 * hex say so (bytes.h states the idiom).  Write the hex one string per
 * field, in table order, with the offset in a comment; whitespace is
 * ignored and "[0*N]" stands for N zero bytes:
 *
 *   static const char hdr_hex[] =
 *       "42445347"  //  0 magic
 *       "0100"      //  4 version
 *       "[0*12]"    //  6 reserved
 *       ...;
 *   CHECK(golden_eq("segment header", buf, sizeof(buf), hdr_hex));
 *   size_t n = golden_bytes(hdr_hex, out, sizeof(out));   // into OUT
 *   const uint8_t *in = golden_buf(hdr_hex, &len);        // a static buffer
 *
 * On a mismatch golden_eq prints both strings as TAP comments, so a
 * deliberate layout change shows the new hex to paste.  Header-only
 * (static functions), so each test stays one file. */
#ifndef BD_GOLDEN_H
#define BD_GOLDEN_H

#include "base/bd.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static BD_UNUSED int golden_nibble(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode HEX into OUT[CAP].  Returns the byte count; a malformed string
 * (an odd digit count, a non-hex character, a bad "[0*N]") or one that
 * overflows CAP aborts the test program: a typo in a test vector must not
 * pass for a short one. */
static BD_UNUSED size_t golden_bytes(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    int hi = -1;
    for (const char *p = hex; *p; p++) {
        if (*p == ' ' || *p == '\n' || *p == '\t') continue;
        if (*p == '[' && hi < 0) {
            char *end;
            unsigned long z = strncmp(p, "[0*", 3) == 0 ? strtoul(p + 3, &end, 10) : 0;
            if (z == 0 || *end != ']' || n + z > cap) {
                printf("# golden: bad zero run or buffer too small at \"%.16s\"\n", p);
                abort();
            }
            memset(out + n, 0, z);
            n += z;
            p = end;
            continue;
        }
        int v = golden_nibble(*p);
        if (v < 0 || (hi >= 0 && n == cap)) {
            printf("# golden: bad hex string or buffer too small at \"%.16s\"\n", p);
            abort();
        }
        if (hi < 0) {
            hi = v;
        } else {
            out[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    if (hi >= 0) {
        printf("# golden: odd number of hex digits\n");
        abort();
    }
    return n;
}

/* HEX as bytes in a static buffer (64 KiB), valid until the next call;
 * *LEN is their count. */
static BD_UNUSED const uint8_t *golden_buf(const char *hex, size_t *len)
{
    static uint8_t out[1 << 16];
    *len = golden_bytes(hex, out, sizeof(out));
    return out;
}

static BD_UNUSED void golden_print(const char *label, const uint8_t *p, size_t len)
{
    printf("# %s ", label);
    for (size_t i = 0; i < len; i++) printf("%s%02x", i && i % 32 == 0 ? "\n#      " : "", p[i]);
    printf("\n");
}

/* True if GOT[LEN] is exactly the bytes of HEX; otherwise prints WHAT with
 * both byte strings and returns false. */
static BD_UNUSED bool golden_eq(const char *what, const uint8_t *got, size_t len, const char *hex)
{
    static uint8_t want[1 << 16];
    size_t n = golden_bytes(hex, want, sizeof(want));
    if (n == len && memcmp(got, want, n) == 0) return true;
    printf("# golden mismatch: %s (%zu bytes, expected %zu)\n", what, len, n);
    golden_print("  got ", got, len);
    golden_print("  want", want, n);
    return false;
}

/* golden_eq without a label. */
static BD_UNUSED bool golden_same(const uint8_t *got, size_t len, const char *hex)
{
    return golden_eq("bytes", got, len, hex);
}

#endif
