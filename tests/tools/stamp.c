/* stamp.c: stamped blocks (see stamp.h for the layout).
 *
 * The payload is a splitmix64 stream keyed by (seed, vol, block, seq): cheap
 * (one multiply-xorshift round per 8 bytes), and two different writes never
 * share a payload, so even a block whose header survived but whose payload
 * came from another write fails the checksum.  The checksum is XXH3-64 over
 * everything but its own field, computed as a stream so no copy is needed.
 *
 * Classification order matters: it goes from "not a stamp at all" to "a
 * stamp of the right run, wrong version", so each block gets the most
 * specific diagnosis that explains it.  A block whose header names another
 * block is called misdirected even if its seq would also be stale: the
 * wrong place is the bigger bug. */
#include "stamp.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t block_sum(const uint8_t *buf)
{
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, buf, 56);
    XXH3_64bits_update(&st, buf + STAMP_HDR, STAMP_BLOCK - STAMP_HDR);
    return XXH3_64bits_digest(&st);
}

void stamp_fill(uint8_t *buf, const struct stamp *s)
{
    put64(buf + 0, STAMP_MAGIC);
    put64(buf + 8, s->vol);
    put64(buf + 16, s->block);
    put64(buf + 24, s->seq);
    put64(buf + 32, s->gen);
    put64(buf + 40, s->seed);
    put32(buf + 48, s->writer);
    put32(buf + 52, 0);
    uint64_t key = s->seed;
    key = splitmix64(&key) ^ s->vol;
    key = splitmix64(&key) ^ s->block;
    key = splitmix64(&key) ^ s->seq;
    for (size_t off = STAMP_HDR; off < STAMP_BLOCK; off += 8) put64(buf + off, splitmix64(&key));
    put64(buf + 56, block_sum(buf));
}

static bool all_zero(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (buf[i]) return false;
    return true;
}

enum stamp_parse_rc stamp_parse(const uint8_t *buf, struct stamp *out)
{
    memset(out, 0, sizeof *out);
    if (all_zero(buf, STAMP_BLOCK)) return STAMP_ZERO;
    if (get64(buf) != STAMP_MAGIC) return STAMP_NO_MAGIC;
    out->vol = get64(buf + 8);
    out->block = get64(buf + 16);
    out->seq = get64(buf + 24);
    out->gen = get64(buf + 32);
    out->seed = get64(buf + 40);
    out->writer = get32(buf + 48);
    if (get32(buf + 52) != 0 || get64(buf + 56) != block_sum(buf)) return STAMP_BAD_SUM;
    return STAMP_VALID;
}

static const char *const diag_names[] = {
#define STAMP_DIAG_NAME(name, str, why) str,
    STAMP_DIAGS(STAMP_DIAG_NAME)
#undef STAMP_DIAG_NAME
};
static const char *const diag_whys[] = {
#define STAMP_DIAG_WHY(name, str, why) why,
    STAMP_DIAGS(STAMP_DIAG_WHY)
#undef STAMP_DIAG_WHY
};

const char *stamp_diag_name(enum stamp_diag d)
{
    return (unsigned)d < sizeof diag_names / sizeof diag_names[0] ? diag_names[d] : "?";
}
const char *stamp_diag_why(enum stamp_diag d)
{
    return (unsigned)d < sizeof diag_whys / sizeof diag_whys[0] ? diag_whys[d] : "?";
}

/* "data seq 7..9 or zeros" */
static void fmt_expect(const struct stamp_expect *e, char *out, size_t len)
{
    int n = 0;
    out[0] = '\0';
    if (e->lo && e->lo == e->hi)
        n = snprintf(out, len, "data seq %" PRIu64, e->lo);
    else if (e->lo)
        n = snprintf(out, len, "data seq %" PRIu64 "..%" PRIu64, e->lo, e->hi);
    if (n < 0 || (size_t)n >= len) return;
    if (e->zero_ok) n += snprintf(out + n, len - (size_t)n, "%szeros", n ? " or " : "");
    if (n < 0 || (size_t)n >= len) return;
    if (e->any_ok) snprintf(out + n, len - (size_t)n, "%sanything", n ? " or " : "");
    if (!out[0]) snprintf(out, len, "nothing");
}

static void fmt_stamp(const struct stamp *s, char *out, size_t len)
{
    snprintf(out, len,
             "vol %" PRIu64 " block %" PRIu64 " seq %" PRIu64 " gen %" PRIu64 " writer %" PRIu32
             " seed %" PRIu64,
             s->vol, s->block, s->seq, s->gen, s->writer, s->seed);
}

/* For a torn block: diff against the block its header names. */
static void fmt_torn(const uint8_t *buf, const struct stamp *hdr, char *out, size_t len)
{
    uint8_t want[STAMP_BLOCK];
    stamp_fill(want, hdr);
    size_t first = STAMP_BLOCK, ndiff = 0;
    char sectors[9] = "........";
    for (size_t i = 0; i < STAMP_BLOCK; i++) {
        if (buf[i] == want[i]) continue;
        if (first == STAMP_BLOCK) first = i;
        ndiff++;
        sectors[i / 512] = 'X';
    }
    snprintf(out, len,
             "%zu bytes differ from the write the header names, first at byte %zu; "
             "512-byte sectors differing: %s",
             ndiff, first, sectors);
}

enum stamp_diag stamp_classify(const uint8_t *buf, uint64_t block, const struct stamp *me,
                               const struct stamp_expect *exp, char *why, size_t whylen)
{
    struct stamp got;
    char want[96], have[192], extra[160];
    enum stamp_parse_rc rc = stamp_parse(buf, &got);
    enum stamp_diag d;

    why[0] = '\0';
    fmt_expect(exp, want, sizeof want);
    bool ours = rc == STAMP_VALID && got.vol == me->vol && got.seed == me->seed &&
                got.writer == me->writer && got.gen == me->gen;
    if (exp->any_ok && !(ours && got.block == block)) return STAMP_DIAG_OK;

    switch (rc) {
    case STAMP_ZERO:
        if (exp->zero_ok) return STAMP_DIAG_OK;
        snprintf(why, whylen, "expected %s, read zeros", want);
        return STAMP_DIAG_LOST_WRITE;
    case STAMP_NO_MAGIC:
        snprintf(why, whylen,
                 "expected %s, read bytes without a stamp: %02x%02x%02x%02x%02x%02x%02x%02x"
                 " %02x%02x%02x%02x%02x%02x%02x%02x...",
                 want, buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7], buf[8],
                 buf[9], buf[10], buf[11], buf[12], buf[13], buf[14], buf[15]);
        return STAMP_DIAG_GARBAGE;
    case STAMP_BAD_SUM:
        fmt_stamp(&got, have, sizeof have);
        fmt_torn(buf, &got, extra, sizeof extra);
        snprintf(why, whylen, "expected %s, read a block whose header says %s but %s", want,
                 have, extra);
        return STAMP_DIAG_TORN;
    case STAMP_VALID:
        break;
    }

    fmt_stamp(&got, have, sizeof have);
    if (got.vol != me->vol)
        d = STAMP_DIAG_OTHER_VOLUME;
    else if (got.block != block)
        d = STAMP_DIAG_MISDIRECTED;
    else if (got.seed != me->seed)
        d = STAMP_DIAG_OTHER_RUN;
    else if (got.writer != me->writer || got.gen != me->gen)
        d = STAMP_DIAG_FOREIGN_WRITER;
    else if (exp->lo && got.seq >= exp->lo && got.seq <= exp->hi)
        return STAMP_DIAG_OK;
    else if (!exp->lo)
        d = exp->last_is_zero && got.seq < exp->last_seq ? STAMP_DIAG_RESURRECTED
                                                         : STAMP_DIAG_UNISSUED;
    else if (got.seq < exp->lo)
        d = STAMP_DIAG_STALE;
    else
        d = STAMP_DIAG_UNISSUED;

    if (d == STAMP_DIAG_RESURRECTED)
        snprintf(why, whylen, "expected %s (trim/write_zeroes at seq %" PRIu64 "), read %s",
                 want, exp->last_seq, have);
    else
        snprintf(why, whylen, "expected %s (my vol %" PRIu64 " writer %" PRIu32 " gen %" PRIu64
                 "), read %s", want, me->vol, me->writer, me->gen, have);
    return d;
}
