/* test_rewrite.c: REPOINT, the index half of the blob rewrite (fsm_life.c):
 * an extent's blob reference is replaced only while it still names the
 * old bytes, so a write, zero or trim that lands between the rewriter's
 * read and its REPOINT wins (C9); the old blob dies when its last range
 * moves, a new blob nothing took dies too (C13); views, usage and
 * snapshots read the same bytes before and after (C12).  A seeded race
 * runs rewrites planned from stale reads against random writes, zeroes,
 * trims and snapshots, checking every block's content and the audits
 * after each step.  Replay a failure with TEST_SEED=<seed>. */
#include "tap.h"
#include "idxtest.h"
#include "base/util.h"

#include <string.h>

/* ---- Fixture ---------------------------------------------------------------- */

static struct itx T;
static uint64_t VOL, GEN;

static bool setup(void)
{
    return itx_fixture(&T, tap_tmpdir(), "v", 256, &VOL, &GEN) == 0;
}

/* ---- Helpers ------------------------------------------------------------------ */

static uint64_t top_layer(void)
{
    struct index_vol v;
    index_read_begin(T.rd);
    int rc = index_vol_by_id(T.rd, VOL, &v);
    index_read_end(T.rd);
    return rc ? 0 : v.top_layer;
}

static int repoint(uint64_t blob, uint32_t blob_blocks, const struct idxcmd_repoint *r, uint32_t n)
{
    struct idxcmd c = {.type = IDXCMD_REPOINT};
    c.u.repoint.blob_id = blob;
    c.u.repoint.partition = 1;
    c.u.repoint.blob_len = blob_blocks * BS;
    c.u.repoint.blob_csum = blob * 0x9E3779B97F4A7C15ull;
    c.u.repoint.cursor_layer = r[n - 1].layer;
    c.u.repoint.cursor_off = r[n - 1].off + r[n - 1].len;
    c.u.repoint.n = n;
    c.u.repoint.in = r;
    return itx_cmd(&T, &c);
}

static struct idxcmd_repoint RP(uint64_t layer, uint64_t blk, uint32_t n, uint64_t old,
                                uint32_t old_blk, uint32_t new_blk)
{
    return (struct idxcmd_repoint){layer, blk * BS, n * BS, old, old_blk * BS, new_blk * BS};
}

/* Block BLK of volume VOL maps to block BB of blob B (0, 0 for none). */
static bool maps_to(uint64_t vol, uint64_t blk, uint64_t b, uint64_t bb)
{
    struct index_piece p;
    if (itx_map(&T, vol, blk * BS, BS, &p, 1) != 1) return false;
    if (p.kind != INDEX_DATA) return b == 0;
    return p.blob_id == b && p.blob_off == bb * BS;
}

static bool dead(uint64_t id)
{
    struct index_blob b;
    return itx_blob(&T, id, &b) == 0 && (b.flags & INDEX_BLOB_DEAD);
}

static uint64_t live(uint64_t id)
{
    struct index_blob b;
    return itx_blob(&T, id, &b) ? UINT64_MAX : b.live;
}

/* ---- Re-pointing ----------------------------------------------------------------- */

/* The live ranges of a half-overwritten blob move to a new blob: the old
 * one dies, the map names the new bytes, the cursor is recorded. */
TEST(live_ranges_move)
{
    CHECK(setup());
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 8 * BS, 100, 0, 8 * BS)), 0);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 2 * BS, 4 * BS, 101, 0, 4 * BS)), 0);
    uint64_t top = top_layer();
    struct idxcmd_repoint r[2] = {RP(top, 0, 2, 100, 0, 0), RP(top, 6, 2, 100, 6, 2)};
    CHECK_EQ(repoint(200, 4, r, 2), 0);
    CHECK_EQ(T.res.id, 4 * BS);
    CHECK(dead(100) && live(200) == 4 * BS);
    CHECK(maps_to(VOL, 0, 200, 0) && maps_to(VOL, 1, 200, 1) && maps_to(VOL, 2, 101, 0));
    CHECK(maps_to(VOL, 6, 200, 2) && maps_to(VOL, 7, 200, 3));
    struct index_meta m;
    index_read_begin(T.rd);
    index_meta_get(T.rd, &m);
    index_read_end(T.rd);
    CHECK(m.rewrite_layer == top && m.rewrite_off == 8 * BS && m.rewritten_bytes == 4 * BS);
    CHECK(m.data_bytes == 8 * BS && m.blob_bytes == 8 * BS && m.dead_bytes == 8 * BS);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* A write and a trim that reached the range after the rewriter read it
 * win: their blocks keep what they wrote; the rest moves. */
TEST(later_write_and_trim_win)
{
    CHECK(setup());
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 8 * BS, 100, 0, 8 * BS)), 0);
    uint64_t top = top_layer();
    /* The rewriter read B0-7 -> blob 100 here; then: */
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 3 * BS, BS, 101, 0, BS)), 0);
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 5 * BS, BS, IDXCMD_W_TRIM)), 0);
    struct idxcmd_repoint r = RP(top, 0, 8, 100, 0, 0);
    CHECK_EQ(repoint(200, 8, &r, 1), 0);
    CHECK_EQ(T.res.id, 6 * BS);
    CHECK(maps_to(VOL, 3, 101, 0) && maps_to(VOL, 5, 0, 0));
    CHECK(maps_to(VOL, 2, 200, 2) && maps_to(VOL, 4, 200, 4) && maps_to(VOL, 7, 200, 7));
    CHECK(dead(100) && live(200) == 6 * BS);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* Only the bytes at the same place match: an extent naming the old blob
 * at another offset (a scattered write) is left alone. */
TEST(offset_relation_must_hold)
{
    CHECK(setup());
    struct idxcmd_write w[2] = {itx_data(VOL, GEN, 0, BS, 100, 0, 2 * BS),
                                itx_data(VOL, GEN, 10 * BS, BS, 100, BS, 2 * BS)};
    CHECK_EQ(itx_writes(&T, w, 2), 0);
    /* Claims B10 holds blob 100 block 0: it holds block 1. */
    struct idxcmd_repoint r = RP(top_layer(), 10, 1, 100, 0, 0);
    CHECK_EQ(repoint(200, 1, &r, 1), 0);
    CHECK_EQ(T.res.id, 0);
    CHECK(maps_to(VOL, 10, 100, 1) && dead(200));
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* A frozen layer re-points like a top: the snapshot reads the same bytes
 * through the new blob; a clone of it too; usage is unchanged. */
TEST(frozen_layer)
{
    CHECK(setup());
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 4 * BS, 100, 0, 4 * BS)), 0);
    uint64_t frozen = top_layer();
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), 0);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 2 * BS, 101, 0, 2 * BS)), 0);
    CHECK_EQ(itx_snap(&T, IDXCMD_CLONE, "v", "s1", "c"), 0);
    uint64_t c = T.res.id;
    struct idxcmd_repoint r = RP(frozen, 0, 4, 100, 0, 0);
    CHECK_EQ(repoint(200, 4, &r, 1), 0);
    CHECK(maps_to(c, 0, 200, 0) && maps_to(c, 3, 200, 3));
    CHECK(maps_to(VOL, 0, 101, 0) && maps_to(VOL, 2, 200, 2));
    CHECK(dead(100));
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* Applied twice (a retried proposal): the second finds nothing to move. */
TEST(retry_is_a_noop)
{
    CHECK(setup());
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 4 * BS, 100, 0, 4 * BS)), 0);
    struct idxcmd_repoint r = RP(top_layer(), 0, 4, 100, 0, 0);
    CHECK_EQ(repoint(200, 4, &r, 1), 0);
    uint64_t d1 = itx_digest(&T);
    CHECK_EQ(repoint(200, 4, &r, 1), 0);
    CHECK_EQ(T.res.id, 0);
    CHECK(live(200) == 4 * BS && maps_to(VOL, 0, 200, 0));
    CHECK(d1 != 0);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* A new blob that is already dead (a rewrite whose REPOINT matched nothing
 * and was GC'd), or was never allocated, is refused whole. */
TEST(dead_or_unallocated_new_blob)
{
    CHECK(setup());
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 4 * BS, 100, 0, 4 * BS)), 0);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 4 * BS, 101, 0, 4 * BS)), 0);
    struct idxcmd_repoint r = RP(top_layer(), 0, 4, 100, 0, 0);
    CHECK_EQ(repoint(200, 4, &r, 1), 0);
    CHECK(dead(200));
    r.old_blob = 101;
    CHECK_EQ(repoint(200, 4, &r, 1), IDXCMD_ST_ESTALE);
    CHECK(maps_to(VOL, 0, 101, 0));
    CHECK_EQ(repoint(1ull << 40, 4, &r, 1), IDXCMD_ST_EINVAL);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* ---- The race ---------------------------------------------------------------------- */

#define NBLK 48
#define NSNAP 4

/* The model: what each block holds (a stamp per written block, 0 for
 * zeroes), for the volume and its snapshots; and what each blob block
 * holds, so that a map can be read back as stamps (a rewrite copies the
 * stamps along with the bytes, as the real one copies data). */
static uint64_t vol_blk[NBLK], snap_blk[NSNAP][NBLK];
static bool snap_live[NSNAP];
static uint64_t snap_vol[NSNAP];     /* a clone reading each snapshot */
static uint64_t *blob_stamp;         /* [blob * 64 + block] */
static uint64_t rng, next_blob = 100, next_stamp = 1;

static uint64_t rnd(uint64_t n)
{
    return util_rand64(&rng) % n;
}

static bool content_ok(uint64_t vol, const uint64_t *want, const char *what)
{
    struct index_piece p[NBLK + 1];
    int n = itx_map(&T, vol, 0, NBLK * BS, p, NBLK + 1);
    if (n <= 0) {
        printf("# %s: map %d\n", what, n);
        return false;
    }
    uint64_t blk = 0;
    for (int i = 0; i < n; i++)
        for (uint64_t k = 0; k < p[i].len / BS; k++, blk++) {
            uint64_t got = p[i].kind == INDEX_DATA
                               ? blob_stamp[p[i].blob_id * 64 + p[i].blob_off / BS + k]
                               : 0;
            if (got != want[blk]) {
                printf("# %s block %llu: stamp %llu, model %llu\n", what,
                       (unsigned long long)blk, (unsigned long long)got,
                       (unsigned long long)want[blk]);
                return false;
            }
        }
    return blk == NBLK;
}

/* A random write, zero or trim of the volume (the model follows). */
static bool random_write(void)
{
    uint64_t pos = rnd(NBLK), want = 1 + rnd(6);
    uint32_t len = (uint32_t)BD_MIN(want, NBLK - pos); /* BD_MIN evaluates twice */
    int kind = rnd(10) < 7 ? IDXCMD_W_DATA : rnd(2) ? IDXCMD_W_ZERO : IDXCMD_W_TRIM;
    struct idxcmd_write w;
    if (kind == IDXCMD_W_DATA) {
        uint64_t b = next_blob++;
        uint32_t extra = (uint32_t)rnd(3);
        for (uint32_t k = 0; k < len + extra; k++) blob_stamp[b * 64 + k] = next_stamp++;
        w = itx_data(VOL, GEN, pos * BS, len * BS, b, extra * BS, (len + extra) * BS);
        for (uint32_t k = 0; k < len; k++) vol_blk[pos + k] = blob_stamp[b * 64 + extra + k];
    } else {
        w = itx_zero(VOL, GEN, pos * BS, len * BS, (uint8_t)kind);
        for (uint32_t k = 0; k < len; k++) vol_blk[pos + k] = 0;
    }
    int st = itx_write1(&T, w);
    if (st != IDXCMD_ST_OK)
        printf("# write blob %llu at %llu: status %d\n", (unsigned long long)w.blob_id,
               (unsigned long long)pos, st);
    return st == IDXCMD_ST_OK;
}

/* Plan a rewrite from the index as it is now: the DATA pieces of the
 * volume and its snapshots' clones, copied (stamps and all) into one new
 * blob in (layer, offset) order.  Returns the number of re-points. */
static uint32_t plan(struct idxcmd_repoint *r, uint64_t *new_blob)
{
    struct index_piece p[NBLK + 1];
    struct idxcmd_repoint all[(NSNAP + 1) * NBLK];
    uint32_t n = 0;
    for (int s = -1; s < NSNAP; s++) {
        uint64_t vol = s < 0 ? VOL : snap_live[s] ? snap_vol[s] : 0;
        if (!vol) continue;
        int m = itx_map(&T, vol, 0, NBLK * BS, p, NBLK + 1);
        for (int i = 0; i < m; i++)
            if (p[i].kind == INDEX_DATA && rnd(3))
                all[n++] = (struct idxcmd_repoint){p[i].layer, p[i].off, (uint32_t)p[i].len,
                                                   p[i].blob_id, p[i].blob_off, 0};
    }
    /* (layer, offset) order, one re-point per range (clones share layers). */
    for (uint32_t i = 1; i < n; i++)
        for (uint32_t j = i; j > 0 && (all[j].layer < all[j - 1].layer ||
                                       (all[j].layer == all[j - 1].layer &&
                                        all[j].off < all[j - 1].off)); j--) {
            struct idxcmd_repoint x = all[j];
            all[j] = all[j - 1];
            all[j - 1] = x;
        }
    uint32_t k = 0, at = 0;
    uint64_t b = next_blob++;
    for (uint32_t i = 0; i < n && at / BS + all[i].len / BS <= 64; i++) {
        if (k && all[i].layer == r[k - 1].layer && all[i].off < r[k - 1].off + r[k - 1].len)
            continue;
        r[k] = all[i];
        r[k].new_off = at;
        for (uint32_t q = 0; q < r[k].len / BS; q++)
            blob_stamp[b * 64 + at / BS + q] = blob_stamp[r[k].old_blob * 64 + r[k].old_off / BS + q];
        at += r[k].len;
        k++;
    }
    *new_blob = b;
    return k;
}

/* Rewrites planned from a stale read race writes, zeroes, trims, snapshot
 * creates and deletes; after every step each volume and snapshot reads
 * what the model says and both audits pass. */
TEST(race_rewrites_against_writes)
{
    rng = tap_seed();
    blob_stamp = calloc(65536 * 64, sizeof(uint64_t));
    CHECK(blob_stamp);
    CHECK(setup());
    int steps = 0, repoints = 0;
    uint64_t moved = 0;
    for (int round = 0; round < 300; round++) {
        static struct idxcmd_repoint r[(NSNAP + 1) * NBLK];
        uint64_t nb = 0;
        uint32_t n = rnd(2) ? plan(r, &nb) : 0;
        /* Between the read and the REPOINT: other entries. */
        for (uint64_t k = rnd(4); k > 0; k--) {
            uint64_t what = rnd(20);
            if (what < 16) {
                CHECK(random_write());
            } else {
                int s = (int)rnd(NSNAP);
                char name[16];
                snprintf(name, sizeof(name), "s%d", s);
                if (snap_live[s]) {
                    char cname[16];
                    snprintf(cname, sizeof(cname), "c%d", s);
                    CHECK_EQ(itx_delete(&T, cname), 0);
                    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_DELETE, "v", name, NULL), 0);
                    snap_live[s] = false;
                } else {
                    char cname[16];
                    snprintf(cname, sizeof(cname), "c%d", s);
                    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", name, NULL), 0);
                    CHECK_EQ(itx_snap(&T, IDXCMD_CLONE, "v", name, cname), 0);
                    snap_vol[s] = T.res.id;
                    memcpy(snap_blk[s], vol_blk, sizeof(vol_blk));
                    snap_live[s] = true;
                }
            }
            steps++;
        }
        if (n) {
            CHECK_EQ(repoint(nb, 64, r, n), 0);
            moved += T.res.id;
            repoints++;
        }
        CHECK(content_ok(VOL, vol_blk, "volume"));
        for (int s = 0; s < NSNAP; s++)
            if (snap_live[s]) CHECK(content_ok(snap_vol[s], snap_blk[s], "snapshot"));
        CHECK_EQ(itx_audit(&T), 0);
    }
    printf("# %d other entries, %d REPOINTs moving %llu blocks\n", steps, repoints,
           (unsigned long long)(moved / BS));
    CHECK(repoints > 50 && moved > 0);
    itx_close(&T);
    free(blob_stamp);
}
