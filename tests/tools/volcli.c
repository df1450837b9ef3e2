/* volcli.c: speak the agent's side of the wire protocol to a proxy, for
 * tests that exercise the proxy without an agent in between.
 *
 *   volcli [TLS] --cluster ID PROXY check VOLUME [SEED]
 *   volcli [TLS] --cluster ID PROXY write VOLUME SEED MIB [OFF_MIB]
 *   volcli [TLS] --cluster ID PROXY verify VOLUME SEED MIB [OFF_MIB [MIN_INDEX]]
 *   volcli [TLS] --cluster ID PROXY attach VOLUME rw|ro
 *   volcli [TLS] --cluster ID PROXY list
 *   volcli [TLS] --cluster ID PROXY read VOLUME_ID
 *
 * TLS is --ca FILE --cert FILE --key FILE: the cluster CA and an agent
 * certificate whose id is the attach identity volcli uses ("volcli").
 *
 * `write` attaches read-write and fills MIB MiB from OFF_MIB (default 0)
 * with data that is a function of (SEED, block number), 1 MiB per write,
 * four in flight, then flushes; `verify` attaches read-only (no new
 * generation) and reads the same range back, comparing every block, so a
 * later process can check what an earlier one wrote: pass the writer's
 * "max raft index" as MIN_INDEX (a read-only attach on a follower answers
 * with that proxy's applied index, which may not cover another client's
 * last writes yet).  Both print MB/s.
 *
 * `check` attaches VOLUME read-write, then runs a fixed script against it,
 * printing one line per step and exiting non-zero at the first surprise:
 *   1. a fresh range reads as zeroes, mapped as a hole;
 *   2. writes of 4 KiB, 64 KiB, 1 MiB + 4 KiB (two blobs) and unaligned
 *      neighbours read back byte for byte (seeded random data), also from
 *      the read's min_index, and map as data;
 *   3. an overwrite of the middle of an extent (split) reads back merged;
 *   4. WRITE_ZEROES and TRIM read back as zeroes and map as zero/hole;
 *   5. a write whose checksum does not match its data is refused (ECSUM);
 *   6. writes past the end, unaligned, of length 0 are refused;
 *   7. after a second attach (a new generation) the old generation's
 *      writes and flushes are refused as fenced (C10), and its data is not
 *      visible;
 *   8. VOL_LIST names the volume; VOL_FLUSH with the current generation
 *      succeeds.
 *
 * `attach` tries one attach and prints "ok: attached ..." (exit 0) or
 * "refused: WHY" (exit 1); `list` prints the names VOL_LIST gives volcli,
 * one a line: what a proxy lets this agent identity attach and see; `read`
 * reads the first block of a volume by id without attaching it (what a
 * proxy must refuse unless the volume is attached to volcli): "ok" (exit
 * 0) or "refused: WHY" (exit 1).
 * Every wait is bounded (calls time out after 20 s). */
#include "base/bd.h"
#include "base/bytes.h"
#include "net/conn.h"
#include "net/tls.h"
#include "runtime/reactor.h"
#include "base/util.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct reactor *rx;
static struct conn *conn;
static int up, closed;

static void on_up(struct conn *c, void *arg)
{
    (void)c;
    (void)arg;
    up = 1;
}
static void on_close(struct conn *c, int err, void *arg)
{
    (void)c;
    (void)arg;
    fprintf(stderr, "volcli: connection closed: %s\n", bd_strerror(err));
    closed = 1;
}
static void on_req(struct conn *c, struct conn_frame *f, void *arg)
{
    (void)arg;
    conn_reply_error(c, &f->hdr, -ENOTSUP, 0, "client");
}
static const struct conn_ops ops = {.on_request = on_req, .on_up = on_up, .on_close = on_close};

struct call {
    struct conn_call cc;
    int done, err;
    uint8_t *body;
    struct wire_hdr hdr;
    char errtext[200];
};

static void on_reply(struct conn_call *cc, int err, struct conn_frame *f)
{
    struct call *c = bd_container_of(cc, struct call, cc);
    c->done = 1;
    c->err = err;
    if (f) {
        c->hdr = f->hdr;
        if (err) conn_error_text(f, c->errtext, sizeof(c->errtext));
        c->body = conn_frame_take(f);
    }
}

static void pump(const int *flag)
{
    uint64_t end = util_mono_ms() + 25000;
    while (!*flag && !closed && util_mono_ms() < end)
        event_base_loop(reactor_base(rx), EVLOOP_ONCE);
}

/* Send and wait; returns the error; C->body owned by the caller. */
static int call(struct call *c, uint16_t type, const uint8_t *fields, int n, const void *data,
                size_t len)
{
    memset(c, 0, sizeof(*c));
    c->cc.cb = on_reply;
    struct conn_payload pl = {.data = data, .len = len};
    if (conn_call(conn, &c->cc, type, fields, (size_t)n, len ? &pl : NULL, 20000) < 0)
        return -ENOTCONN;
    pump(&c->done);
    return c->done ? c->err : -ETIMEDOUT;
}

static uint64_t vol_id, gen, max_index;
static uint64_t vol_size;

#define FAIL(...)                                                                          \
    do {                                                                                   \
        printf("FAIL: " __VA_ARGS__);                                                      \
        printf("\n");                                                                      \
        exit(1);                                                                           \
    } while (0)

/* The generation the next read-write attach raises (wire.h VOL_ATTACH):
 * the volume's, as the last answer named it. */
static uint64_t base_gen;

/* One VOL_ATTACH of NAME with FLAGS, answer in C (C->body owned by the
 * caller).  A read-write attach refused because the generation is not its
 * base goes again on the generation the refusal names (three times at
 * most: a proxy behind the leader may name an older one first). */
static int attach_call(struct call *c, const char *name, uint32_t flags)
{
    for (int tries = 1;; tries++) {
        struct wire_vol_attach_req a = {.name = wire_cstr(name),
                                        .agent_id = wire_cstr("volcli"), /* the certificate's id */
                                        .flags = flags, .base_generation = base_gen};
        uint8_t f[600];
        int n = wire_encode_vol_attach_req(f, sizeof(f), &a);
        int rc = call(c, WIRE_VOL_ATTACH, f, n, NULL, 0);
        struct wire_error e;
        if (rc != -BD_EFENCED || (flags & WIRE_ATTACH_RO) || tries == 3 || !c->body ||
            wire_decode_error(c->body, c->hdr.len, c->hdr.payload_len, &e) < 0)
            return rc;
        base_gen = e.hint;
        free(c->body);
    }
}

/* Attach NAME read-write (a new generation, into *G) or, with
 * WIRE_ATTACH_RO, read-only (G may be NULL); note its id and size. */
static int attach_as(const char *name, uint32_t flags, uint64_t *g)
{
    struct call c;
    int rc = attach_call(&c, name, flags);
    if (rc == 0) {
        struct wire_vol_attach_resp r;
        if (wire_decode_vol_attach_resp(c.body, c.hdr.len, c.hdr.payload_len, &r) < 0)
            FAIL("malformed attach answer");
        vol_id = r.vol_id;
        vol_size = r.size;
        if (g) *g = r.generation;
        if (r.generation > base_gen) base_gen = r.generation;
        if (r.raft_index > max_index) max_index = r.raft_index;
    } else {
        printf("attach: %s\n", c.errtext);
    }
    free(c.body);
    return rc;
}

static int attach(const char *name, uint64_t *g)
{
    return attach_as(name, 0, g);
}

/* Send W (DATA: its payload, data_len bytes) and note the raft index. */
static int send_write(const struct wire_vol_write_req *w, const uint8_t *data)
{
    uint8_t f[1024];
    int n = wire_encode_vol_write_req(f, sizeof(f), w);
    if (n < 0) FAIL("encode a write");
    struct call c;
    int rc = call(&c, WIRE_VOL_WRITE, f, n, data, w->data_len);
    if (rc == 0) {
        struct wire_vol_write_resp r;
        if (wire_decode_vol_write_resp(c.body, c.hdr.len, c.hdr.payload_len, &r) < 0)
            FAIL("malformed write answer");
        if (r.raft_index > max_index) max_index = r.raft_index;
    }
    free(c.body);
    return rc;
}

static int vwrite(uint64_t g, uint64_t off, uint32_t len, const uint8_t *data, uint32_t flags,
                  uint64_t csum_override)
{
    struct wire_vol_write_req w = {.vol_id = vol_id, .generation = g, .off = off, .len = len,
                                   .flags = flags};
    if (data) {
        w.data_len = len;
        w.csum = csum_override ? csum_override : util_xxh3(data, len);
    }
    return send_write(&w, data);
}

/* A scattered write: N extents (offsets absolute), DATA in list order. */
static int vwritev(uint64_t g, const struct wire_write_ext *ext, uint32_t n, const uint8_t *data)
{
    uint32_t total = 0;
    for (uint32_t i = 0; i < n; i++) total += ext[i].len;
    struct wire_vol_write_req w = {.vol_id = vol_id, .generation = g, .off = ext[0].off,
                                   .len = total, .flags = WIRE_WRITE_SCATTER,
                                   .csum = util_xxh3(data, total), .data_len = total,
                                   .n_ext = n, .ext_in = ext};
    return send_write(&w, data);
}

/* Read into OUT; if MAP, fill kinds per 4 KiB block (D, Z, H). */
static int vread(uint64_t off, uint32_t len, uint8_t *out, char *map)
{
    struct wire_vol_read_req r = {.vol_id = vol_id, .off = off, .len = len,
                                  .flags = map ? WIRE_READ_MAP : 0, .min_index = max_index};
    uint8_t f[64];
    int n = wire_encode_vol_read_req(f, sizeof(f), &r);
    struct call c;
    int rc = call(&c, WIRE_VOL_READ, f, n, NULL, 0);
    if (rc == 0) {
        struct wire_vol_read_resp m;
        if (wire_decode_vol_read_resp(c.body, c.hdr.len, c.hdr.payload_len, &m) < 0 ||
            m.data_len != len || util_xxh3(m.data, m.data_len) != m.csum)
            FAIL("read answer malformed or its checksum does not match");
        memcpy(out, m.data, len);
        if (map) {
            memset(map, '?', len / 4096);
            map[len / 4096] = 0;
            for (uint32_t i = 0; i < m.n_ranges; i++) {
                struct wire_map_range mr;
                wire_vol_read_range(&m, i, &mr);
                for (uint64_t o = mr.off; o < mr.off + mr.len; o += 4096)
                    if (o >= off && o < off + len)
                        map[(o - off) / 4096] = mr.kind == WIRE_MAP_DATA   ? 'D'
                                                : mr.kind == WIRE_MAP_ZERO ? 'Z'
                                                                           : 'H';
            }
        }
    }
    free(c.body);
    return rc;
}

/* Read-only attach: the volume's id and size, no new generation. */
static int attach_ro(const char *name)
{
    return attach_as(name, WIRE_ATTACH_RO, NULL);
}

static int vflush(uint64_t g)
{
    struct wire_vol_flush_req r = {.vol_id = vol_id, .generation = g};
    uint8_t f[32];
    int n = wire_encode_vol_flush_req(f, sizeof(f), &r);
    struct call c;
    int rc = call(&c, WIRE_VOL_FLUSH, f, n, NULL, 0);
    free(c.body);
    return rc;
}

static uint64_t rng;
static void fill(uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = util_rand64(&rng);
        memcpy(b + i, &v, BD_MIN(8, n - i));
    }
}

static void expect_eq(const char *what, const uint8_t *a, const uint8_t *b, size_t n)
{
    if (memcmp(a, b, n) != 0) {
        for (size_t i = 0; i < n; i++)
            if (a[i] != b[i]) FAIL("%s: byte %zu differs", what, i);
    }
    printf("ok: %s\n", what);
}

static int check(const char *name)
{
    uint8_t *model = calloc(1, 4u << 20), *buf = malloc(4u << 20), *data = malloc(2u << 20);
    char map[1100];
    uint64_t base = 16u << 20; /* work in [16 MiB, 20 MiB) */
    if (attach(name, &gen) != 0) FAIL("attach %s", name);
    printf("ok: attached %s id %llu generation %llu size %llu\n", name,
           (unsigned long long)vol_id, (unsigned long long)gen, (unsigned long long)vol_size);
    if (vol_size < base + (4u << 20)) FAIL("volume too small for the check (needs 20 MiB)");

    if (vread(base, 1u << 20, buf, map) != 0) FAIL("read fresh range");
    expect_eq("fresh range reads zeroes", buf, model, 1u << 20);
    if (strspn(map, "H") != strlen(map)) FAIL("fresh range maps as %s", map);

    struct { uint64_t off; uint32_t len; } ws[] = {
        {0, 4096}, {8192, 65536}, {1u << 20, (1u << 20) + 4096}, {4096, 4096}, {73728, 8192}};
    for (unsigned i = 0; i < BD_ARRAY_SIZE(ws); i++) {
        fill(data, ws[i].len);
        if (vwrite(gen, base + ws[i].off, ws[i].len, data, 0, 0) != 0)
            FAIL("write %u (off %llu len %u)", i, (unsigned long long)ws[i].off, ws[i].len);
        memcpy(model + ws[i].off, data, ws[i].len);
    }
    if (vread(base, 3u << 20, buf, NULL) != 0) FAIL("read back");
    expect_eq("writes read back (incl. a two-blob write)", buf, model, 3u << 20);

    fill(data, 8192);
    if (vwrite(gen, base + 16384, 8192, data, 0, 0) != 0) FAIL("overwrite");
    memcpy(model + 16384, data, 8192);
    if (vread(base, 1u << 20, buf, map) != 0) FAIL("read after overwrite");
    expect_eq("overwrite splits an extent", buf, model, 1u << 20);
    if (map[0] != 'D' || map[2] != 'D' || map[4] != 'D' || map[40] != 'H')
        FAIL("map after writes: %.48s", map);

    if (vwrite(gen, base + 8192, 16384, NULL, WIRE_WRITE_ZERO, 0) != 0) FAIL("write zeroes");
    memset(model + 8192, 0, 16384);
    if (vwrite(gen, base + (1u << 20), 8192, NULL, WIRE_WRITE_TRIM, 0) != 0) FAIL("trim");
    memset(model + (1u << 20), 0, 8192);
    if (vread(base, 2u << 20, buf, map) != 0) FAIL("read after zero/trim");
    expect_eq("zeroes and trims read as zeroes", buf, model, 2u << 20);
    if (map[2] != 'Z' || map[5] != 'Z') FAIL("zeroed range maps as %.8s", map);
    if (map[256] != 'H' && map[256] != 'Z') FAIL("trimmed range maps as %c", map[256]);

    /* A scattered write (what an agent ships for scattered dirty blocks):
     * 1.26 MiB in four ranges of [2 MiB, 4 MiB), so two blobs, the last
     * range cut by the blob boundary; the gaps stay holes. */
    uint64_t sb = base + (2u << 20);
    struct wire_write_ext sx[] = {
        {sb, 4096}, {sb + 12288, 8192}, {sb + 65536, 524288}, {sb + 655360, 786432}};
    uint32_t spos = 0;
    fill(data, 4096 + 8192 + 524288 + 786432);
    for (unsigned i = 0; i < BD_ARRAY_SIZE(sx); i++) {
        memcpy(model + (sx[i].off - base), data + spos, sx[i].len);
        spos += sx[i].len;
    }
    if (vwritev(gen, sx, BD_ARRAY_SIZE(sx), data) != 0) FAIL("scattered write");
    if (vread(sb, 2u << 20, buf, map) != 0) FAIL("read after a scattered write");
    expect_eq("a scattered write reads back", buf, model + (2u << 20), 2u << 20);
    if (map[0] != 'D' || map[2] != 'H' || map[3] != 'D' || map[5] != 'H' || map[16] != 'D' ||
        map[144] != 'H' || map[160] != 'D' || map[351] != 'D' || map[352] != 'H')
        FAIL("map after a scattered write: %.360s", map);
    printf("ok: a scattered write maps its ranges as data and its gaps as holes\n");
    struct wire_write_ext bad_align[] = {{sb, 4096}, {sb + 8192 + 512, 4096}};
    if (vwritev(gen, bad_align, 2, data) != -EINVAL) FAIL("unaligned scattered range accepted");
    struct wire_write_ext bad_end[] = {{sb, 4096}, {vol_size - 4096, 8192}};
    if (vwritev(gen, bad_end, 2, data) != -ERANGE) FAIL("scattered range past the end accepted");
    printf("ok: unaligned and past-the-end scattered writes are refused\n");

    fill(data, 4096);
    if (vwrite(gen, base, 4096, data, 0, 12345) != -BD_ECSUM) FAIL("bad checksum accepted");
    printf("ok: a wrong checksum is refused\n");
    if (vwrite(gen, vol_size - 4096, 8192, NULL, WIRE_WRITE_ZERO, 0) != -ERANGE)
        FAIL("write past the end accepted");
    if (vwrite(gen, base + 100, 4096, NULL, WIRE_WRITE_ZERO, 0) != -EINVAL)
        FAIL("unaligned write accepted");
    printf("ok: past-the-end and unaligned writes are refused\n");
    if (vread(base, 4u << 20, buf, NULL) != 0) FAIL("read after refusals");
    expect_eq("refused writes changed nothing", buf, model, 4u << 20);

    if (vflush(gen) != 0) FAIL("flush with the current generation");
    uint64_t old = gen, newgen;
    if (attach(name, &newgen) != 0 || newgen <= old) FAIL("second attach");
    fill(data, 4096);
    if (vwrite(old, base, 4096, data, 0, 0) != -BD_EFENCED) FAIL("stale generation accepted");
    if (vflush(old) != -BD_EFENCED) FAIL("stale flush accepted");
    if (vread(base, 4096, buf, NULL) != 0) FAIL("read after fence");
    expect_eq("a fenced write is not visible (C10)", buf, model, 4096);
    gen = newgen;
    if (vwrite(gen, base, 4096, data, 0, 0) != 0) FAIL("write with the new generation");
    memcpy(model, data, 4096);
    if (vread(base, 8192, buf, NULL) != 0) FAIL("read new");
    expect_eq("the new generation writes", buf, model, 8192);

    struct wire_vol_list_req lr = {.max = 100, .after = wire_cstr(""),
                                   .agent_id = wire_cstr("volcli")};
    uint8_t f[600];
    int n = wire_encode_vol_list_req(f, sizeof(f), &lr);
    struct call c;
    if (call(&c, WIRE_VOL_LIST, f, n, NULL, 0) != 0) FAIL("list");
    struct wire_vol_list_resp l;
    if (wire_decode_vol_list_resp(c.body, c.hdr.len, c.hdr.payload_len, &l) < 0) FAIL("list body");
    size_t pos = 0;
    struct wire_vol_entry e;
    bool found = false;
    while (wire_vol_list_next(&l, &pos, &e))
        if (e.name.len == strlen(name) && memcmp(e.name.ptr, name, e.name.len) == 0) found = true;
    free(c.body);
    if (!found) FAIL("VOL_LIST does not name %s", name);
    printf("ok: VOL_LIST names the volume\n");
    printf("all checks passed (max raft index %llu)\n", (unsigned long long)max_index);
    free(model);
    free(buf);
    free(data);
    return 0;
}

/* ---- bulk write and verify ------------------------------------------------------- */

#define BULK_CHUNK (1u << 20)
#define BULK_QD 4

/* The content of 4 KiB block BLOCK under SEED. */
static void bulk_block(uint8_t *b, uint64_t seed, uint64_t block)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull ^ (block + 1) * 0xD1B54A32D192ED03ull;
    for (size_t i = 0; i < 4096; i += 8) bytes_put_le64(b + i, util_rand64(&s));
}

static void bulk_fill(uint8_t *buf, uint64_t seed, uint64_t off, uint32_t len)
{
    for (uint32_t i = 0; i < len; i += 4096) bulk_block(buf + i, seed, (off + i) / 4096);
}

/* Issue up to BULK_QD calls, then wait for all of them. */
static int bulk(const char *name, uint64_t seed, uint64_t mib, uint64_t off_mib, bool write,
                uint64_t min_index)
{
    if (write ? attach(name, &gen) != 0 : attach_ro(name) != 0) FAIL("attach %s", name);
    if (min_index > max_index) max_index = min_index;
    uint64_t start = off_mib << 20, end = start + (mib << 20);
    if (end > vol_size || end < start) FAIL("range past the end of %s", name);
    uint8_t *bufs[BULK_QD], *exp = malloc(BULK_CHUNK);
    struct call calls[BULK_QD];
    uint8_t fields[BULK_QD][128];
    for (int q = 0; q < BULK_QD; q++) bufs[q] = malloc(BULK_CHUNK);
    uint64_t t0 = util_mono_ms();
    for (uint64_t off = start; off < end;) {
        int k = 0;
        uint64_t offs[BULK_QD];
        for (; k < BULK_QD && off < end; k++, off += BULK_CHUNK) {
            struct call *c = &calls[k];
            memset(c, 0, sizeof(*c));
            c->cc.cb = on_reply;
            offs[k] = off;
            int n;
            struct conn_payload pl = {0};
            uint16_t type;
            if (write) {
                bulk_fill(bufs[k], seed, off, BULK_CHUNK);
                struct wire_vol_write_req w = {.vol_id = vol_id, .generation = gen, .off = off,
                                               .len = BULK_CHUNK, .data_len = BULK_CHUNK,
                                               .csum = util_xxh3(bufs[k], BULK_CHUNK)};
                n = wire_encode_vol_write_req(fields[k], sizeof(fields[k]), &w);
                pl = (struct conn_payload){.data = bufs[k], .len = BULK_CHUNK};
                type = WIRE_VOL_WRITE;
            } else {
                struct wire_vol_read_req r = {.vol_id = vol_id, .off = off, .len = BULK_CHUNK,
                                              .min_index = max_index};
                n = wire_encode_vol_read_req(fields[k], sizeof(fields[k]), &r);
                type = WIRE_VOL_READ;
            }
            if (conn_call(conn, &c->cc, type, fields[k], (size_t)n, write ? &pl : NULL, 20000) < 0)
                FAIL("send at offset %llu", (unsigned long long)off);
        }
        for (int q = 0; q < k; q++) {
            struct call *c = &calls[q];
            pump(&c->done);
            if (!c->done) FAIL("no answer at offset %llu", (unsigned long long)offs[q]);
            if (c->err) FAIL("%s at offset %llu: %s (%s)", write ? "write" : "read",
                             (unsigned long long)offs[q], bd_strerror(c->err), c->errtext);
            if (write) {
                struct wire_vol_write_resp r;
                if (wire_decode_vol_write_resp(c->body, c->hdr.len, c->hdr.payload_len, &r) < 0)
                    FAIL("malformed write answer");
                if (r.raft_index > max_index) max_index = r.raft_index;
            } else {
                struct wire_vol_read_resp m;
                if (wire_decode_vol_read_resp(c->body, c->hdr.len, c->hdr.payload_len, &m) < 0 ||
                    m.data_len != BULK_CHUNK || util_xxh3(m.data, m.data_len) != m.csum)
                    FAIL("read answer at %llu malformed or its checksum does not match",
                         (unsigned long long)offs[q]);
                bulk_fill(exp, seed, offs[q], BULK_CHUNK);
                if (memcmp(m.data, exp, BULK_CHUNK) != 0) {
                    for (uint32_t i = 0; i < BULK_CHUNK; i += 4096)
                        if (memcmp(m.data + i, exp + i, 4096) != 0)
                            FAIL("block at offset %llu differs", (unsigned long long)(offs[q] + i));
                }
            }
            free(c->body);
        }
    }
    if (write && vflush(gen) != 0) FAIL("flush");
    uint64_t ms = BD_MAX(util_mono_ms() - t0, 1);
    printf("ok: %s %llu MiB at %llu MiB in %llu ms (%.1f MB/s; max raft index %llu)\n",
           write ? "wrote" : "verified", (unsigned long long)mib, (unsigned long long)off_mib,
           (unsigned long long)ms, (double)(mib << 20) / 1e3 / (double)ms,
           (unsigned long long)max_index);
    for (int q = 0; q < BULK_QD; q++) free(bufs[q]);
    free(exp);
    return 0;
}

/* `attach VOLUME rw|ro`: one attach, its outcome. */
static int try_attach(const char *name, const char *how)
{
    bool ro = strcmp(how, "ro") == 0;
    if (!ro && strcmp(how, "rw") != 0) FAIL("attach: rw or ro, not %s", how);
    struct call c;
    int rc = attach_call(&c, name, ro ? WIRE_ATTACH_RO : 0);
    struct wire_vol_attach_resp r;
    if (rc == 0 && wire_decode_vol_attach_resp(c.body, c.hdr.len, c.hdr.payload_len, &r) < 0)
        FAIL("malformed attach answer");
    if (rc == 0)
        printf("ok: attached %s %s generation %llu%s\n", name, how,
               (unsigned long long)r.generation, (r.flags & WIRE_ATTACH_RO) ? " read-only" : "");
    else
        printf("refused: %s (%s)\n", c.errtext, bd_strerror(rc));
    free(c.body);
    return rc == 0 ? 0 : 1;
}

/* `read VOLUME_ID`: one block, with no attach. */
static int try_read(uint64_t id)
{
    struct wire_vol_read_req r = {.vol_id = id, .off = 0, .len = 4096};
    uint8_t f[64];
    int n = wire_encode_vol_read_req(f, sizeof(f), &r);
    struct call c;
    int rc = call(&c, WIRE_VOL_READ, f, n, NULL, 0);
    if (rc == 0) printf("ok: read vol %llu\n", (unsigned long long)id);
    else printf("refused: %s (%s)\n", c.errtext, bd_strerror(rc));
    free(c.body);
    return rc == 0 ? 0 : 1;
}

/* `list`: every volume VOL_LIST gives volcli, paged. */
static int list(void)
{
    char after[WIRE_NAME_MAX + 1] = "";
    for (;;) {
        struct wire_vol_list_req lr = {.max = WIRE_VOLS_PAGE, .after = wire_cstr(after),
                                       .agent_id = wire_cstr("volcli")};
        uint8_t f[600];
        int n = wire_encode_vol_list_req(f, sizeof(f), &lr);
        struct call c;
        if (call(&c, WIRE_VOL_LIST, f, n, NULL, 0) != 0) FAIL("list: %s", c.errtext);
        struct wire_vol_list_resp l;
        if (wire_decode_vol_list_resp(c.body, c.hdr.len, c.hdr.payload_len, &l) < 0)
            FAIL("list body");
        size_t pos = 0;
        struct wire_vol_entry e;
        while (wire_vol_list_next(&l, &pos, &e)) {
            wire_str_copy(e.name, after, sizeof(after));
            printf("%s%s\n", after, (e.flags & WIRE_ATTACH_RO) ? " ro" : "");
        }
        free(c.body);
        if (l.n < WIRE_VOLS_PAGE) return 0;
    }
}

int main(int argc, char **argv)
{
    const char *cluster = "local", *ca = NULL, *cert = NULL, *key = NULL;
    int i = 1;
    for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        if (strcmp(argv[i], "--cluster") == 0) cluster = argv[i + 1];
        else if (strcmp(argv[i], "--ca") == 0) ca = argv[i + 1];
        else if (strcmp(argv[i], "--cert") == 0) cert = argv[i + 1];
        else if (strcmp(argv[i], "--key") == 0) key = argv[i + 1];
    }
    const char *cmd = argc - i >= 2 ? argv[i + 1] : "";
    bool is_bulk = strcmp(cmd, "write") == 0 || strcmp(cmd, "verify") == 0;
    bool ok = (strcmp(cmd, "check") == 0 && argc - i >= 3) || (is_bulk && argc - i >= 5) ||
              (strcmp(cmd, "attach") == 0 && argc - i >= 4) || strcmp(cmd, "list") == 0 ||
              (strcmp(cmd, "read") == 0 && argc - i >= 3);
    if (!ok) {
        fprintf(stderr, "usage: volcli [--cluster ID] [--ca F --cert F --key F] PROXY check VOLUME "
                        "[SEED]\n"
                        "       volcli [--cluster ID] [--ca F --cert F --key F] PROXY write|verify "
                        "VOLUME SEED MIB [OFF_MIB]\n"
                        "       volcli [...] PROXY attach VOLUME rw|ro\n"
                        "       volcli [...] PROXY list\n"
                        "       volcli [...] PROXY read VOLUME_ID\n");
        return 2;
    }
    struct tls_ctx *tls = NULL;
    if (ca) {
        char err[256];
        struct tls_files tf = {.ca_file = ca, .cert_file = cert, .key_file = key};
        if (tls_ctx_new(&tf, cluster, &tls, err, sizeof(err)) < 0) {
            fprintf(stderr, "volcli: %s\n", err);
            return 2;
        }
    }
    rng = argc - i > 3 && (strcmp(cmd, "check") == 0 || is_bulk)
              ? strtoull(argv[i + 3], NULL, 0)
              : util_seed();
    if (strcmp(cmd, "check") == 0 || is_bulk) printf("seed %llu\n", (unsigned long long)rng);
    rx = reactor_new();
    struct conn_auth auth;
    conn_auth_init(&auth, cluster, tls, 0, WIRE_ROLE_AGENT, "volcli");
    struct conn_opts o = {.tag = "volcli", .auth = &auth};
    int err;
    conn = conn_connect(rx, argv[i], &ops, NULL, &o, &err);
    if (!conn) FAIL("connect %s: %s", argv[i], bd_strerror(err));
    pump(&up);
    if (!up) FAIL("no HELLO answer from %s", argv[i]);
    int rc = is_bulk ? bulk(argv[i + 2], strtoull(argv[i + 3], NULL, 0),
                            strtoull(argv[i + 4], NULL, 0),
                            argc - i > 5 ? strtoull(argv[i + 5], NULL, 0) : 0, cmd[1] == 'r',
                            argc - i > 6 ? strtoull(argv[i + 6], NULL, 0) : 0)
             : strcmp(cmd, "attach") == 0 ? try_attach(argv[i + 2], argv[i + 3])
             : strcmp(cmd, "list") == 0   ? list()
             : strcmp(cmd, "read") == 0   ? try_read(strtoull(argv[i + 2], NULL, 0))
                                          : check(argv[i + 2]);
    conn_close(conn, 0);
    reactor_free(rx);
    tls_ctx_free(tls); /* the connection's SSL held its own reference */
    return rc;
}
