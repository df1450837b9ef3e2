/* test_usage.c: usage accounting (index.h "usage") against figures worked
 * out by hand: a volume's provisioned, written and unique bytes, what a
 * snapshot holds and what deleting it would free, the cluster's data and
 * blob totals and each blob's live bytes, through writes, overwrites,
 * zeroes, trims, snapshots, clones and deletes.  Every step is also
 * recounted from the extents by itx_audit (the same figures, walked).
 *
 * Blocks are 4 KiB; "B n" below means n blocks. */
#include "tap.h"
#include "idxtest.h"
#include "base/bd.h"

#include <string.h>

/* ---- Fixture ---------------------------------------------------------------- */

static struct itx T;
static uint64_t VOL, GEN;

/* A fresh index with the cluster, volume "v" (256 blocks) attached. */
static bool setup(void)
{
    return itx_fixture(&T, tap_tmpdir(), "v", 256, &VOL, &GEN) == 0;
}

/* ---- Helpers ------------------------------------------------------------------ */

struct fig {
    uint64_t provisioned, written, unique;
};

static struct fig vol_fig(const char *name)
{
    struct fig f = {UINT64_MAX, UINT64_MAX, UINT64_MAX};
    struct index_vol v;
    struct index_vol_usage u;
    if (index_read_begin(T.rd)) return f;
    if (index_vol_by_name(T.rd, name, strlen(name), &v) == 0 && index_vol_usage(T.rd, &v, &u) == 0)
        f = (struct fig){u.provisioned_bytes, u.written_bytes, u.unique_bytes};
    index_read_end(T.rd);
    return f;
}

/* A snapshot's written and freed bytes, as one number pair. */
static bool snap_fig(const char *vol, const char *snap, uint64_t written, uint64_t freed)
{
    struct index_vol v;
    struct index_snap s;
    uint64_t w = UINT64_MAX, f = UINT64_MAX;
    if (index_read_begin(T.rd)) return false;
    if (index_vol_by_name(T.rd, vol, strlen(vol), &v) == 0) {
        uint32_t n;
        char after[1] = "";
        struct index_snap all[16];
        if (index_snap_list(T.rd, v.id, after, 0, all, 16, &n) == 0)
            for (uint32_t i = 0; i < n; i++)
                if (!strcmp(all[i].name, snap)) {
                    s = all[i];
                    index_snap_usage(T.rd, &s, &w, &f);
                }
    }
    index_read_end(T.rd);
    if (w != written || f != freed)
        printf("# snapshot %s@%s: written %llu freed %llu, expected %llu %llu\n", vol, snap,
               (unsigned long long)w, (unsigned long long)f, (unsigned long long)written,
               (unsigned long long)freed);
    return w == written && f == freed;
}

static struct index_meta totals(void)
{
    struct index_meta m = {0};
    if (index_read_begin(T.rd) == 0) {
        index_meta_get(T.rd, &m);
        index_read_end(T.rd);
    }
    return m;
}

static uint64_t blob_live(uint64_t id)
{
    struct index_blob b;
    return itx_blob(&T, id, &b) ? UINT64_MAX : b.live;
}

static int data(uint64_t vol, uint64_t gen, uint64_t blk, uint32_t n, uint64_t blob,
                uint32_t blob_blk, uint32_t blob_blocks)
{
    return itx_write1(&T, itx_data(vol, gen, blk * BS, n * BS, blob, blob_blk * BS,
                                   blob_blocks * BS));
}

static int zero(uint64_t vol, uint64_t gen, uint64_t blk, uint32_t n, uint8_t kind)
{
    return itx_write1(&T, itx_zero(vol, gen, blk * BS, n * BS, kind));
}

/* ---- Assertions ------------------------------------------------------------------ */

#define CHECK_FIG(name, p, w, u)                                                           \
    do {                                                                                   \
        struct fig f_ = vol_fig(name);                                                     \
        if (f_.provisioned != (p) || f_.written != (w) || f_.unique != (u))               \
            printf("# %s: provisioned %llu written %llu unique %llu\n", name,              \
                   (unsigned long long)f_.provisioned, (unsigned long long)f_.written,     \
                   (unsigned long long)f_.unique);                                         \
        CHECK(f_.provisioned == (p) && f_.written == (w) && f_.unique == (u));             \
    } while (0)

/* ---- A plain volume ---------------------------------------------------------------- */

/* A new volume is provisioned and holds nothing. */
TEST(new_volume)
{
    CHECK(setup());
    CHECK_FIG("v", 256 * BS, 0, 0);
    CHECK_EQ(totals().data_bytes, 0);
    itx_close(&T);
}

/* Writes count once however often overwritten; zeroes and trims count
 * nothing; a blob's live bytes follow its ranges, the cluster's blob bytes
 * its whole length until it dies. */
TEST(write_overwrite_zero_trim)
{
    CHECK(setup());
    /* B0-7 <- blob 100 (8 blocks): written 8, unique 8. */
    CHECK_EQ(data(VOL, GEN, 0, 8, 100, 0, 8), 0);
    CHECK_FIG("v", 256 * BS, 8 * BS, 8 * BS);
    CHECK_EQ(blob_live(100), 8 * BS);
    /* B2-3 <- blob 101: still 8 written; blob 100 keeps 6 live. */
    CHECK_EQ(data(VOL, GEN, 2, 2, 101, 0, 2), 0);
    CHECK_FIG("v", 256 * BS, 8 * BS, 8 * BS);
    CHECK_EQ(blob_live(100), 6 * BS);
    CHECK_EQ(blob_live(101), 2 * BS);
    /* B6-7 zeroed, B0-1 trimmed: 4 written (B2-5). */
    CHECK_EQ(zero(VOL, GEN, 6, 2, IDXCMD_W_ZERO), 0);
    CHECK_EQ(zero(VOL, GEN, 0, 2, IDXCMD_W_TRIM), 0);
    CHECK_FIG("v", 256 * BS, 4 * BS, 4 * BS);
    CHECK_EQ(blob_live(100), 2 * BS);
    struct index_meta m = totals();
    CHECK(m.data_bytes == 4 * BS && m.blob_bytes == 10 * BS && m.dead_bytes == 0);
    /* B4-5 overwritten too: blob 100 dies, its 8 blocks move to dead. */
    CHECK_EQ(data(VOL, GEN, 4, 2, 102, 0, 2), 0);
    m = totals();
    CHECK(m.data_bytes == 4 * BS && m.blob_bytes == 4 * BS && m.dead_bytes == 8 * BS);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* A write splitting an extent in the middle keeps the blob's live bytes
 * exact (two records of one blob, minus the middle). */
TEST(split_keeps_live_exact)
{
    CHECK(setup());
    CHECK_EQ(data(VOL, GEN, 0, 16, 100, 0, 16), 0);
    CHECK_EQ(data(VOL, GEN, 5, 3, 101, 0, 3), 0);
    CHECK_EQ(blob_live(100), 13 * BS);
    CHECK_FIG("v", 256 * BS, 16 * BS, 16 * BS);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* ---- Snapshots --------------------------------------------------------------------- */

/* A snapshot holds the volume's written bytes; the new top is empty
 * (unique 0) and shows the same; overwriting and zeroing in the top moves
 * bytes from shared to unique, and what the snapshot would free is what
 * the top masks of it. */
TEST(snapshot_freed_is_what_the_top_masks)
{
    CHECK(setup());
    CHECK_EQ(data(VOL, GEN, 0, 8, 100, 0, 8), 0);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), 0);
    CHECK_FIG("v", 256 * BS, 8 * BS, 0);
    CHECK(snap_fig("v", "s1", 8 * BS, 0));
    /* B4-5 overwritten: written 8, unique 2, s1 would free those 2. */
    CHECK_EQ(data(VOL, GEN, 4, 2, 101, 0, 2), 0);
    CHECK_FIG("v", 256 * BS, 8 * BS, 2 * BS);
    CHECK(snap_fig("v", "s1", 8 * BS, 2 * BS));
    /* B0-1 zeroed (a ZERO extent, since the top has a parent): written 6,
     * unique still 2, s1 would free 4. */
    CHECK_EQ(zero(VOL, GEN, 0, 2, IDXCMD_W_TRIM), 0);
    CHECK_FIG("v", 256 * BS, 6 * BS, 2 * BS);
    CHECK(snap_fig("v", "s1", 8 * BS, 4 * BS));
    /* Writing where s1 had nothing frees nothing more of it. */
    CHECK_EQ(data(VOL, GEN, 100, 4, 102, 0, 4), 0);
    CHECK_FIG("v", 256 * BS, 10 * BS, 6 * BS);
    CHECK(snap_fig("v", "s1", 8 * BS, 4 * BS));
    CHECK_EQ(itx_audit(&T), 0);
    /* Delete s1: the 4 masked blocks go from the cluster's data; the volume
     * now owns all it shows. */
    CHECK_EQ(totals().data_bytes, 14 * BS);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_DELETE, "v", "s1", NULL), 0);
    CHECK_EQ(totals().data_bytes, 10 * BS);
    CHECK_FIG("v", 256 * BS, 10 * BS, 10 * BS);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* A snapshot below another: deleting the older one merges it into the
 * newer, which masks part of it; the newer's figures do not change. */
TEST(two_snapshots)
{
    CHECK(setup());
    CHECK_EQ(data(VOL, GEN, 0, 4, 100, 0, 4), 0);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), 0);
    CHECK_EQ(data(VOL, GEN, 2, 4, 101, 0, 4), 0);     /* B2-5: masks B2-3 of s1 */
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s2", NULL), 0);
    CHECK(snap_fig("v", "s1", 4 * BS, 2 * BS));
    CHECK(snap_fig("v", "s2", 6 * BS, 0));
    CHECK_FIG("v", 256 * BS, 6 * BS, 0);
    /* The top overwrites B4-5: s2 would free those 2. */
    CHECK_EQ(data(VOL, GEN, 4, 2, 102, 0, 2), 0);
    CHECK(snap_fig("v", "s2", 6 * BS, 2 * BS));
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_DELETE, "v", "s1", NULL), 0);
    /* s2's layer took B0-1 from s1: it holds 6 blocks of its own now. */
    CHECK(snap_fig("v", "s2", 6 * BS, 2 * BS));
    CHECK_EQ(totals().data_bytes, 8 * BS);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* ---- Clones ------------------------------------------------------------------------- */

/* A clone shows its snapshot's bytes (written) and owns none (unique 0);
 * while it exists the snapshot frees nothing (two readers); its writes are
 * unique to it and leave the source alone. */
TEST(clone)
{
    CHECK(setup());
    CHECK_EQ(data(VOL, GEN, 0, 8, 100, 0, 8), 0);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), 0);
    CHECK_EQ(data(VOL, GEN, 0, 2, 101, 0, 2), 0);
    CHECK(snap_fig("v", "s1", 8 * BS, 2 * BS));
    CHECK_EQ(itx_snap(&T, IDXCMD_CLONE, "v", "s1", "c"), 0);
    uint64_t cv, cg;
    CHECK_EQ(itx_attach(&T, "c", "a2", &cv, &cg), 0);
    CHECK_FIG("c", 256 * BS, 8 * BS, 0);
    CHECK(snap_fig("v", "s1", 8 * BS, 0));
    /* The clone overwrites B6-7 and writes B20-23. */
    CHECK_EQ(data(cv, cg, 6, 2, 102, 0, 2), 0);
    CHECK_EQ(data(cv, cg, 20, 4, 103, 0, 4), 0);
    CHECK_FIG("c", 256 * BS, 12 * BS, 6 * BS);
    CHECK_FIG("v", 256 * BS, 8 * BS, 2 * BS);
    CHECK_EQ(itx_audit(&T), 0);
    /* The clone goes: s1 has one reader again, freeing what v masks. */
    CHECK_EQ(itx_detach(&T, cv, cg, "a2"), 0);
    CHECK_EQ(itx_assign(&T, "c", "", "", 0), 0); /* a volume is deleted only once detached */
    CHECK_EQ(itx_delete(&T, "c"), 0);
    CHECK(snap_fig("v", "s1", 8 * BS, 2 * BS));
    CHECK_EQ(totals().data_bytes, 10 * BS);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* A snapshot nothing else reads (its volume gone, a clone keeping its
 * layer) frees the whole layer once the clone is deleted: deleting every
 * volume brings the totals back to zero data. */
TEST(delete_everything)
{
    CHECK(setup());
    CHECK_EQ(data(VOL, GEN, 0, 8, 100, 0, 8), 0);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), 0);
    CHECK_EQ(itx_snap(&T, IDXCMD_CLONE, "v", "s1", "c"), 0);
    CHECK_EQ(itx_detach(&T, VOL, GEN, "a1"), 0);
    CHECK_EQ(itx_assign(&T, "v", "", "", 0), 0);
    CHECK_EQ(itx_delete(&T, "v"), 0);
    /* v's layer survives for the clone, merged into it. */
    CHECK_FIG("c", 256 * BS, 8 * BS, 8 * BS);
    CHECK_EQ(itx_audit(&T), 0);
    CHECK_EQ(itx_delete(&T, "c"), 0);
    struct index_meta m = totals();
    CHECK(m.data_bytes == 0 && m.blob_bytes == 0 && m.dead_bytes == 8 * BS);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}
