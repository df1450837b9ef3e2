/* test_index.c: the index's schema and extent map through fsm_apply and the
 * read API: opening rules, insert / overlap / split / trim / zero, layers
 * (snapshots freeze, clones read their parent until overwritten, snapshot
 * delete merges), refcounts and garbage, fencing, dumps.  Each test is
 * tiny and states the behaviour it pins (defends C9, C10, C11, C12, C13,
 * C16). */
#include "golden.h"
#include "tap.h"
#include "idxtest.h"
#include "base/bd.h"

#include <string.h>

/* ---- Fixture ---------------------------------------------------------------- */

static struct itx T;
static uint64_t VOL, GEN;
static char DIR[256];          /* this test's directory (tap_tmpdir) */

/* A fresh index with the cluster, volume "v" (256 blocks) attached as "a1". */
static bool setup(void)
{
    snprintf(DIR, sizeof(DIR), "%s", tap_tmpdir());
    if (itx_open(&T, DIR, "test-cluster")) return false;
    if (itx_cluster(&T) || itx_create(&T, "v", 256 * BS) != IDXCMD_ST_OK) return false;
    return itx_attach(&T, "v", "a1", &VOL, &GEN) == IDXCMD_ST_OK;
}

static uint64_t blob_refs(uint64_t id)
{
    struct index_blob b;
    return itx_blob(&T, id, &b) ? 9999 : b.refcount;
}

static bool blob_dead(uint64_t id)
{
    struct index_blob b;
    return itx_blob(&T, id, &b) == 0 && (b.flags & INDEX_BLOB_DEAD) && b.refcount == 0;
}

static uint64_t n_extents(void)
{
    struct index_stats st;
    index_read_begin(T.rd);
    index_stats(T.rd, &st);
    index_read_end(T.rd);
    return st.extents;
}

static uint64_t vol_id(const char *name)
{
    struct index_vol v;
    index_read_begin(T.rd);
    int rc = index_vol_by_name(T.rd, name, strlen(name), &v);
    index_read_end(T.rd);
    return rc ? 0 : v.id;
}

/* ---- Opening -------------------------------------------------------------------- */

/* A data dir keeps its cluster id; another id is refused with both named. */
TEST(open_cluster_mismatch)
{
    const char *dir = tap_tmpdir();
    struct itx a;
    CHECK(itx_open(&a, dir, "alpha") == 0);
    itx_close(&a);
    struct index_opts o = {.dir = dir, .cluster_id = "beta", .allow_tmpfs = true,
                           .map_size = 1 << 26};
    struct index *ix;
    char err[256];
    CHECK_EQ(index_open(&o, &ix, err, sizeof(err)), -BD_ECONFIG);
    CHECK(strstr(err, "was \"alpha\", now \"beta\""));
    o.cluster_id = "alpha";
    CHECK(index_open(&o, &ix, err, sizeof(err)) == 0);
    index_close(ix);
}

/* NFS and friends are refused; tmpfs only when allowed; local disks pass. */
TEST(open_fstype)
{
    char err[256];
    CHECK_EQ(index_check_fstype(0x6969, true, err, sizeof(err)), -EXDEV);
    CHECK(strstr(err, "NFS"));
    CHECK_EQ(index_check_fstype(0xFF534D42, true, err, sizeof(err)), -EXDEV);
    CHECK_EQ(index_check_fstype(0x01021994, false, err, sizeof(err)), -EXDEV);
    CHECK_EQ(index_check_fstype(0x01021994, true, err, sizeof(err)), 0);
    CHECK_EQ(index_check_fstype(0xEF53, false, err, sizeof(err)), 0);
}

/* Missing options are -EINVAL, not a crash. */
TEST(open_bad_options)
{
    struct index_opts o = {.dir = tap_tmpdir(), .cluster_id = ""};
    struct index *ix;
    char err[128];
    CHECK_EQ(index_open(&o, &ix, err, sizeof(err)), -EINVAL);
}

/* ---- Basic map -------------------------------------------------------------------- */

/* A new volume reads as one hole (C11). */
TEST(new_volume_is_hole)
{
    CHECK(setup());
    struct index_piece p[4];
    CHECK_EQ(itx_map(&T, VOL, 0, 256 * BS, p, 4), 1);
    CHECK_EQ(p[0].kind, INDEX_HOLE);
    CHECK_EQ(p[0].len, 256 * BS);
    itx_close(&T);
}

/* A write maps to its blob, clipped to the requested range. */
TEST(write_maps_clipped)
{
    CHECK(setup());
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 8 * BS, 8 * BS, 100, 0, 8 * BS)), IDXCMD_ST_OK);
    struct index_piece p[4];
    CHECK_EQ(itx_map(&T, VOL, 10 * BS, 4 * BS, p, 4), 1);
    CHECK_EQ(p[0].kind, INDEX_DATA);
    CHECK_EQ(p[0].off, 10 * BS);
    CHECK_EQ(p[0].len, 4 * BS);
    CHECK_EQ(p[0].blob_id, 100);
    CHECK_EQ(p[0].blob_off, 2 * BS);
    CHECK_EQ(p[0].blob_len, 8 * BS);
    CHECK_EQ(p[0].partition, 1);
    CHECK_EQ(p[0].blob_csum, 100 * 0x9E3779B97F4A7C15ull);
    CHECK_EQ(itx_map(&T, VOL, 0, 20 * BS, p, 4), 3);
    CHECK(p[0].kind == INDEX_HOLE && p[0].len == 8 * BS);
    CHECK(p[1].kind == INDEX_DATA && p[1].off == 8 * BS && p[1].len == 8 * BS);
    CHECK(p[2].kind == INDEX_HOLE && p[2].off == 16 * BS && p[2].len == 4 * BS);
    itx_close(&T);
}

/* An overwrite in the middle splits the old extent: two records, refcount 2. */
TEST(overwrite_splits)
{
    CHECK(setup());
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 16 * BS, 100, 0, 16 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 4 * BS, 4 * BS, 101, 0, 4 * BS)), IDXCMD_ST_OK);
    struct index_piece p[4];
    CHECK_EQ(itx_map(&T, VOL, 0, 16 * BS, p, 4), 3);
    CHECK(p[0].blob_id == 100 && p[0].len == 4 * BS && p[0].blob_off == 0);
    CHECK(p[1].blob_id == 101 && p[1].off == 4 * BS && p[1].len == 4 * BS);
    CHECK(p[2].blob_id == 100 && p[2].off == 8 * BS && p[2].blob_off == 8 * BS);
    CHECK_EQ(blob_refs(100), 2);
    CHECK_EQ(blob_refs(101), 1);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* The index's space figures; all-ones (which no check expects) on error. */
static struct index_space space(void)
{
    struct index_space sp;
    index_read_begin(T.rd);
    if (index_space(T.rd, &sp) != 0) memset(&sp, 0xff, sizeof(sp));
    index_read_end(T.rd);
    return sp;
}

/* Space: a partly overwritten blob keeps its whole length while any of it
 * is addressed; zeroes address no blob bytes; a dead blob counts as dead
 * until GC deletes it. */
TEST(space_accounting)
{
    CHECK(setup());
    /* One blob of 8 blocks holding two scattered ranges of 4 (as an agent
     * ships scattered blocks). */
    struct idxcmd_write w[2] = {itx_data(VOL, GEN, 0, 4 * BS, 100, 0, 8 * BS),
                             itx_data(VOL, GEN, 64 * BS, 4 * BS, 100, 4 * BS, 8 * BS)};
    CHECK_EQ(itx_writes(&T, w, 2), IDXCMD_ST_OK);
    struct index_space sp = space();
    CHECK_EQ(sp.blob_bytes, 8 * BS);
    CHECK_EQ(sp.data_bytes, 8 * BS);
    CHECK_EQ(sp.dead_bytes, 0);
    /* Overwrite one of its ranges: the blob stays, whole. */
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 4 * BS, 101, 0, 4 * BS)), IDXCMD_ST_OK);
    sp = space();
    CHECK_EQ(sp.blob_bytes, 12 * BS);
    CHECK_EQ(sp.data_bytes, 8 * BS);
    /* Zero the other: blob 100 dies, zeroes address nothing. */
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 64 * BS, 4 * BS, IDXCMD_W_ZERO)), IDXCMD_ST_OK);
    sp = space();
    CHECK(blob_dead(100));
    CHECK_EQ(sp.blob_bytes, 4 * BS);
    CHECK_EQ(sp.dead_bytes, 8 * BS);
    CHECK_EQ(sp.data_bytes, 4 * BS);
    itx_close(&T);
}

/* Overlaps on both sides trim the neighbours; a fully covered blob dies. */
TEST(overwrite_overlaps_and_kills)
{
    CHECK(setup());
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 4 * BS, 100, 0, 4 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 4 * BS, 4 * BS, 101, 0, 4 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 8 * BS, 4 * BS, 102, 0, 4 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 2 * BS, 8 * BS, 103, 0, 8 * BS)), IDXCMD_ST_OK);
    struct index_piece p[4];
    CHECK_EQ(itx_map(&T, VOL, 0, 12 * BS, p, 4), 3);
    CHECK(p[0].blob_id == 100 && p[0].len == 2 * BS);
    CHECK(p[1].blob_id == 103 && p[1].len == 8 * BS);
    CHECK(p[2].blob_id == 102 && p[2].off == 10 * BS && p[2].blob_off == 2 * BS);
    CHECK(blob_dead(101));
    CHECK_EQ(blob_refs(100), 1);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* WRITE_ZEROES maps as ZERO; adjacent zero writes become one extent. */
TEST(zero_and_merge)
{
    CHECK(setup());
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 8 * BS, 100, 0, 8 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 0, 4 * BS, IDXCMD_W_ZERO)), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 4 * BS, 4 * BS, IDXCMD_W_ZERO)), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 8 * BS, 4 * BS, IDXCMD_W_ZERO)), IDXCMD_ST_OK);
    CHECK_EQ(n_extents(), 1);
    struct index_piece p[4];
    CHECK_EQ(itx_map(&T, VOL, 0, 16 * BS, p, 4), 2);
    CHECK(p[0].kind == INDEX_ZERO && p[0].len == 12 * BS);
    CHECK(p[1].kind == INDEX_HOLE);
    CHECK(blob_dead(100));
    itx_close(&T);
}

/* TRIM in a bottom layer deletes: the range reads as a hole again. */
TEST(trim_bottom_is_hole)
{
    CHECK(setup());
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 8 * BS, 100, 0, 8 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 2 * BS, 4 * BS, IDXCMD_W_TRIM)), IDXCMD_ST_OK);
    struct index_piece p[4];
    CHECK_EQ(itx_map(&T, VOL, 0, 8 * BS, p, 4), 3);
    CHECK(p[0].kind == INDEX_DATA && p[1].kind == INDEX_HOLE && p[2].kind == INDEX_DATA);
    CHECK_EQ(n_extents(), 2);
    CHECK_EQ(blob_refs(100), 2);
    itx_close(&T);
}

/* TRIM above a snapshot must hide the snapshot's data (C9): it writes ZERO,
 * and the snapshot still holds its bytes (C12). */
TEST(trim_above_snapshot_is_zero)
{
    CHECK(setup());
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 8 * BS, 100, 0, 8 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 0, 8 * BS, IDXCMD_W_TRIM)), IDXCMD_ST_OK);
    struct index_piece p[4];
    CHECK_EQ(itx_map(&T, VOL, 0, 8 * BS, p, 4), 1);
    CHECK_EQ(p[0].kind, INDEX_ZERO);
    CHECK_EQ(itx_snap(&T, IDXCMD_CLONE, "v", "s1", "c1"), IDXCMD_ST_OK);
    CHECK_EQ(itx_map(&T, vol_id("c1"), 0, 8 * BS, p, 4), 1);
    CHECK(p[0].kind == INDEX_DATA && p[0].blob_id == 100);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* ---- Layers -------------------------------------------------------------------- */

/* A snapshot freezes: later writes go to a new top; a clone of the snapshot
 * reads the frozen data until it overwrites it (C11, C12). */
TEST(snapshot_freezes_clone_reads_parent)
{
    CHECK(setup());
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 8 * BS, 100, 0, 8 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 2 * BS, 2 * BS, 101, 0, 2 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_snap(&T, IDXCMD_CLONE, "v", "s1", "c1"), IDXCMD_ST_OK);
    uint64_t c1, g1;
    CHECK_EQ(itx_attach(&T, "c1", "a2", &c1, &g1), IDXCMD_ST_OK);
    struct index_piece p[4];
    CHECK_EQ(itx_map(&T, c1, 0, 8 * BS, p, 4), 1);
    CHECK(p[0].blob_id == 100 && p[0].len == 8 * BS);
    CHECK_EQ(itx_write1(&T, itx_data(c1, g1, 6 * BS, 2 * BS, 102, 0, 2 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_map(&T, c1, 0, 8 * BS, p, 4), 2);
    CHECK(p[0].blob_id == 100 && p[1].blob_id == 102);
    CHECK_EQ(itx_map(&T, VOL, 0, 8 * BS, p, 4), 3);
    CHECK(p[0].blob_id == 100 && p[1].blob_id == 101 && p[2].blob_id == 100);
    uint64_t chain[8];
    uint32_t n;
    index_read_begin(T.rd);
    CHECK(index_vol_chain(T.rd, c1, chain, 8, &n) == 0);
    index_read_end(T.rd);
    CHECK_EQ(n, 2);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* Deleting the only snapshot merges its layer into the volume: same map,
 * chain back to one layer, overwritten snapshot data freed. */
TEST(snapshot_delete_merges)
{
    CHECK(setup());
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 8 * BS, 100, 0, 8 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 8 * BS, 2 * BS, 99, 0, 2 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 2 * BS, 2 * BS, 101, 0, 2 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 8 * BS, 2 * BS, 102, 0, 2 * BS)), IDXCMD_ST_OK);
    struct index_piece before[8], after[8];
    int nb = itx_map(&T, VOL, 0, 16 * BS, before, 8);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_DELETE, "v", "s1", NULL), IDXCMD_ST_OK);
    CHECK_EQ(itx_map(&T, VOL, 0, 16 * BS, after, 8), nb);
    for (int i = 0; i < nb; i++) {
        CHECK_EQ(after[i].blob_id, before[i].blob_id);
        CHECK_EQ(after[i].off, before[i].off);
        CHECK_EQ(after[i].blob_off, before[i].blob_off);
    }
    uint64_t chain[8];
    uint32_t n;
    index_read_begin(T.rd);
    CHECK(index_vol_chain(T.rd, VOL, chain, 8, &n) == 0);
    index_read_end(T.rd);
    CHECK_EQ(n, 1);
    CHECK(blob_dead(99));
    CHECK_EQ(blob_refs(100), 2);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_DELETE, "v", "s1", NULL), IDXCMD_ST_ENOENT);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* Deleting a volume frees its blobs into gc, but a clone of its snapshot
 * keeps reading the snapshot's data (C11, C12, C13). */
TEST(delete_volume_keeps_clone)
{
    CHECK(setup());
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 4 * BS, 100, 0, 4 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 4 * BS, 4 * BS, 101, 0, 4 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_snap(&T, IDXCMD_CLONE, "v", "s1", "c1"), IDXCMD_ST_OK);
    CHECK_EQ(itx_delete(&T, "v"), IDXCMD_ST_EBUSY); /* attached */
    CHECK_EQ(itx_detach(&T, VOL, GEN, "a1"), IDXCMD_ST_OK);
    CHECK_EQ(itx_delete(&T, "v"), IDXCMD_ST_EBUSY); /* still assigned */
    CHECK_EQ(itx_assign(&T, "v", "", "", 0), IDXCMD_ST_OK);
    CHECK_EQ(itx_delete(&T, "v"), IDXCMD_ST_OK);
    CHECK(blob_dead(101));
    CHECK_EQ(blob_refs(100), 1);
    struct index_piece p[4];
    CHECK_EQ(itx_map(&T, vol_id("c1"), 0, 8 * BS, p, 4), 2);
    CHECK(p[0].blob_id == 100 && p[1].kind == INDEX_HOLE);
    CHECK_EQ(itx_audit(&T), 0);
    CHECK_EQ(itx_delete(&T, "c1"), IDXCMD_ST_OK);
    CHECK(blob_dead(100));
    CHECK_EQ(n_extents(), 0);
    CHECK_EQ(itx_audit(&T), 0);
    /* GC_DONE removes the queued blobs for good. */
    uint64_t ids[2] = {100, 101};
    struct idxcmd c = {.type = IDXCMD_GC_DONE};
    c.u.gc_done.n = 2;
    c.u.gc_done.in = ids;
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_OK);
    CHECK_EQ(T.res.id, 2);
    struct index_blob b;
    CHECK_EQ(itx_blob(&T, 100, &b), -ENOENT);
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_OK); /* again: nothing left to remove */
    CHECK_EQ(T.res.id, 0);
    itx_close(&T);
}

/* ---- Fencing and garbage -------------------------------------------------------- */

/* A write with a stale generation is FENCED and its blob becomes garbage,
 * never data (C10). */
TEST(fenced_write_is_garbage)
{
    CHECK(setup());
    uint64_t g2;
    CHECK_EQ(itx_attach(&T, "v", "a2", NULL, &g2), IDXCMD_ST_OK);
    CHECK(g2 > GEN);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 4 * BS, 100, 0, 4 * BS)), IDXCMD_ST_FENCED);
    CHECK(blob_dead(100));
    struct index_piece p[2];
    CHECK_EQ(itx_map(&T, VOL, 0, 4 * BS, p, 2), 1);
    CHECK_EQ(p[0].kind, INDEX_HOLE);
    /* The blob is dead for good: naming it again is ESTALE. */
    CHECK_EQ(itx_write1(&T, itx_data(VOL, g2, 0, 4 * BS, 100, 0, 4 * BS)), IDXCMD_ST_ESTALE);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, g2, 0, 4 * BS, 101, 0, 4 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* Out of range, unknown volume, unallocated blob id, contradicting blob
 * fields: refused per write, the rest of the batch applies. */
TEST(batch_per_write_results)
{
    CHECK(setup());
    struct idxcmd_write w[5] = {
        itx_data(VOL, GEN, 0, 4 * BS, 100, 0, 8 * BS),
        itx_data(VOL, GEN, 4 * BS, 4 * BS, 100, 4 * BS, 8 * BS),
        itx_data(VOL, GEN, 254 * BS, 4 * BS, 102, 0, 4 * BS),
        itx_data(77, 1, 0, 4 * BS, 103, 0, 4 * BS),
        itx_data(VOL, GEN, 100 * BS, 4 * BS, 1ull << 40, 0, 4 * BS),
    };
    CHECK_EQ(itx_writes(&T, w, 5), IDXCMD_ST_OK);
    /* Sorted order: (VOL,0) (VOL,4) (VOL,100) (VOL,254) (77,0). */
    CHECK_EQ(T.res.n, 5);
    CHECK_EQ(T.res.st[0], IDXCMD_ST_OK);
    CHECK_EQ(T.res.st[1], IDXCMD_ST_OK);
    CHECK_EQ(T.res.st[2], IDXCMD_ST_EINVAL);
    CHECK_EQ(T.res.st[3], IDXCMD_ST_ERANGE);
    CHECK_EQ(T.res.st[4], IDXCMD_ST_ENOENT);
    CHECK_EQ(blob_refs(100), 2);
    CHECK(blob_dead(102));
    CHECK(blob_dead(103));
    struct idxcmd_write bad = itx_data(VOL, GEN, 8 * BS, 4 * BS, 100, 0, 8 * BS);
    bad.blob_csum ^= 1;
    CHECK_EQ(itx_write1(&T, bad), IDXCMD_ST_EINVAL);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* Attach rules: only the agent a volume is assigned to may attach it
 * (read-write only if so assigned); a stale detach is FENCED. */
TEST(attach_detach_rules)
{
    CHECK(setup()); /* "v" assigned to a1 and attached by it */
    struct idxcmd c = {.type = IDXCMD_ATTACH};
    c.u.attach.name = idxcmd_cstr("v");
    c.u.attach.agent = idxcmd_cstr("a2");
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_EACCES);
    c.u.attach.flags = IDXCMD_ATTACH_FORCE;
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_EACCES);
    c.u.attach.flags = IDXCMD_ATTACH_RO;
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_EACCES);
    c.u.attach.agent = idxcmd_cstr("a1");
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_OK);
    CHECK_EQ(T.res.generation, GEN);
    CHECK_EQ(T.res.size, 256 * BS);
    CHECK_EQ(itx_detach(&T, VOL, GEN, "a2"), IDXCMD_ST_FENCED);
    CHECK_EQ(itx_detach(&T, VOL, GEN + 5, "a1"), IDXCMD_ST_FENCED);
    CHECK_EQ(itx_detach(&T, VOL, GEN, "a1"), IDXCMD_ST_OK);
    CHECK_EQ(itx_detach(&T, VOL, GEN, "a1"), IDXCMD_ST_OK); /* idempotent */
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 0, BS, IDXCMD_W_ZERO)), IDXCMD_ST_FENCED);
    c.u.attach.flags = 0;
    c.u.attach.base_generation = GEN;
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_OK);
    CHECK_EQ(T.res.generation, GEN + 1);
    /* Read-only assignment: read-only attaches only. */
    CHECK_EQ(itx_assign(&T, "v", "a1", "", IDXCMD_ASSIGN_RO | IDXCMD_ASSIGN_FORCE), IDXCMD_ST_OK);
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_EACCES);
    c.u.attach.flags = IDXCMD_ATTACH_RO;
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_OK);
    itx_close(&T);
}

/* The attach rule itself, case by case (index_vol_may_attach). */
TEST(may_attach)
{
    struct index_vol v = {.assign_mode = INDEX_ASSIGN_NONE};
    CHECK_EQ(index_vol_may_attach(&v, "a1", 2, false), -EACCES);
    CHECK_EQ(index_vol_may_attach(&v, "a1", 2, true), -EACCES);
    strcpy(v.assign_agent, "a1");
    v.assign_mode = INDEX_ASSIGN_RW;
    CHECK_EQ(index_vol_may_attach(&v, "a1", 2, true), 0);
    CHECK_EQ(index_vol_may_attach(&v, "a1", 2, false), 0);
    CHECK_EQ(index_vol_may_attach(&v, "a10", 3, true), -EACCES); /* not a prefix match */
    CHECK_EQ(index_vol_may_attach(&v, "a", 1, false), -EACCES);
    v.assign_mode = INDEX_ASSIGN_RO;
    CHECK_EQ(index_vol_may_attach(&v, "a1", 2, true), -EPERM);
    CHECK_EQ(index_vol_may_attach(&v, "a1", 2, false), 0);
    /* The read-write holder of a detached volume may re-attach read-write
     * (to fence its own sends while it drains), nothing else. */
    v.assign_mode = INDEX_ASSIGN_NONE;
    v.assign_agent[0] = 0;
    v.attach_mode = INDEX_ATTACH_RW;
    strcpy(v.agent, "a1");
    CHECK_EQ(index_vol_may_attach(&v, "a1", 2, true), 0);
    CHECK_EQ(index_vol_may_attach(&v, "a1", 2, false), -EACCES);
    CHECK_EQ(index_vol_may_attach(&v, "a2", 2, true), -EACCES);
    /* ... and not once the volume is assigned elsewhere. */
    v.assign_mode = INDEX_ASSIGN_RW;
    strcpy(v.assign_agent, "a2");
    CHECK_EQ(index_vol_may_attach(&v, "a1", 2, true), -EACCES);
}

static struct index_vol vol_now(const char *name)
{
    struct index_vol v;
    memset(&v, 0, sizeof(v));
    index_read_begin(T.rd);
    index_vol_by_name(T.rd, name, strlen(name), &v);
    index_read_end(T.rd);
    return v;
}

/* A read-write attach raises the generation only from the base it names
 * (C10 for an agent's own attaches; the partition test's failure): the
 * agent's attach goes to one proxy, times out there, and its resend to
 * another commits and is answered (GEN + 1); the first copy commits
 * later.  It must change nothing, so the answered attach keeps writing;
 * without a base it raised the generation again and fenced the agent. */
TEST(late_copy_of_an_attach_fences_nothing)
{
    CHECK(setup()); /* "v" assigned to a1 and attached by it at GEN */
    struct idxcmd at = {.type = IDXCMD_ATTACH};
    at.u.attach.name = idxcmd_cstr("v");
    at.u.attach.agent = idxcmd_cstr("a1");
    at.u.attach.base_generation = GEN;
    CHECK_EQ(itx_cmd(&T, &at), IDXCMD_ST_OK);          /* the resend, answered */
    uint64_t g = T.res.generation;
    CHECK_EQ(g, GEN + 1);
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, g, 0, BS, IDXCMD_W_ZERO)), IDXCMD_ST_OK);
    CHECK_EQ(itx_cmd(&T, &at), IDXCMD_ST_FENCED);      /* the first copy, late */
    CHECK_EQ(T.res.generation, g);                     /* names the one to base on */
    CHECK_EQ(vol_now("v").generation, g);
    CHECK(!strcmp(vol_now("v").agent, "a1"));
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, g, BS, BS, IDXCMD_W_ZERO)), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 2 * BS, BS, IDXCMD_W_ZERO)), IDXCMD_ST_FENCED);
    /* A base ahead of the volume (a volume made again under the name)
     * is refused the same way; on the generation named, it applies. */
    at.u.attach.base_generation = g + 7;
    CHECK_EQ(itx_cmd(&T, &at), IDXCMD_ST_FENCED);
    CHECK_EQ(T.res.generation, g);
    at.u.attach.base_generation = T.res.generation;
    CHECK_EQ(itx_cmd(&T, &at), IDXCMD_ST_OK);
    CHECK_EQ(T.res.generation, g + 1);
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, g, 3 * BS, BS, IDXCMD_W_ZERO)), IDXCMD_ST_FENCED);
    /* Read-only attaches name no base and change nothing. */
    at.u.attach.flags = IDXCMD_ATTACH_RO;
    at.u.attach.base_generation = 0;
    CHECK_EQ(itx_cmd(&T, &at), IDXCMD_ST_OK);
    CHECK_EQ(T.res.generation, g + 1);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* ASSIGN (fsm.c "Assignment"): another agent's volume, or one whose
 * read-write holder the new assignment would not allow, needs FORCE,
 * which ends that attach (the holder's writes are then fenced); a plain
 * detach leaves the holder to ship and detach; a volume is deleted only
 * once detached. */
TEST(assign_rules)
{
    CHECK(setup()); /* "v" assigned to a1 and attached read-write by it */
    CHECK_EQ(itx_assign(&T, "nope", "a1", "", 0), IDXCMD_ST_ENOENT);
    /* Assigned to a1 and held: a2, or read-only for a1, is EBUSY. */
    CHECK_EQ(itx_assign(&T, "v", "a2", "", 0), IDXCMD_ST_EBUSY);
    CHECK_EQ(itx_assign(&T, "v", "a1", "", IDXCMD_ASSIGN_RO), IDXCMD_ST_EBUSY);
    CHECK_EQ(itx_assign(&T, "v", "a1", "vm1", 0), IDXCMD_ST_OK);
    struct index_vol v = vol_now("v");
    CHECK(v.assign_mode == INDEX_ASSIGN_RW && !strcmp(v.assign_agent, "a1") &&
          !strcmp(v.assign_client, "vm1") && v.attach_mode == INDEX_ATTACH_RW);
    CHECK_EQ(itx_delete(&T, "v"), IDXCMD_ST_EBUSY);
    /* FORCE moves it to a2 and fences a1's attach. */
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 0, BS, IDXCMD_W_ZERO)), IDXCMD_ST_OK);
    CHECK_EQ(itx_assign(&T, "v", "a2", "", IDXCMD_ASSIGN_RO | IDXCMD_ASSIGN_FORCE), IDXCMD_ST_OK);
    v = vol_now("v");
    CHECK(v.assign_mode == INDEX_ASSIGN_RO && !strcmp(v.assign_agent, "a2") &&
          !v.assign_client[0] && v.attach_mode == INDEX_ATTACH_NONE && !v.agent[0] &&
          v.generation == GEN);
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, BS, BS, IDXCMD_W_ZERO)), IDXCMD_ST_FENCED);
    /* Held by nobody now, but assigned to a2: a1 needs FORCE. */
    CHECK_EQ(itx_assign(&T, "v", "a1", "", 0), IDXCMD_ST_EBUSY);
    CHECK_EQ(itx_assign(&T, "v", "a1", "", IDXCMD_ASSIGN_FORCE), IDXCMD_ST_OK);
    struct idxcmd at = {.type = IDXCMD_ATTACH};
    at.u.attach.name = idxcmd_cstr("v");
    at.u.attach.agent = idxcmd_cstr("a1");
    at.u.attach.base_generation = GEN;
    CHECK_EQ(itx_cmd(&T, &at), IDXCMD_ST_OK);
    GEN = T.res.generation;
    /* Detach without FORCE: a1 keeps its attach (it may still ship). */
    CHECK_EQ(itx_assign(&T, "v", "", "", 0), IDXCMD_ST_OK);
    v = vol_now("v");
    CHECK(v.assign_mode == INDEX_ASSIGN_NONE && !v.assign_agent[0] &&
          v.attach_mode == INDEX_ATTACH_RW && !strcmp(v.agent, "a1"));
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, BS, BS, IDXCMD_W_ZERO)), IDXCMD_ST_OK);
    at.u.attach.base_generation = GEN;
    CHECK_EQ(itx_cmd(&T, &at), IDXCMD_ST_OK); /* the holder's re-attach */
    GEN = T.res.generation;
    /* ... and a2 cannot have it until a1 lets go, or by FORCE. */
    CHECK_EQ(itx_assign(&T, "v", "a2", "", 0), IDXCMD_ST_EBUSY);
    CHECK_EQ(itx_assign(&T, "v", "", "", IDXCMD_ASSIGN_FORCE), IDXCMD_ST_OK);
    CHECK_EQ(vol_now("v").attach_mode, INDEX_ATTACH_NONE);
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 2 * BS, BS, IDXCMD_W_ZERO)), IDXCMD_ST_FENCED);
    CHECK_EQ(itx_cmd(&T, &at), IDXCMD_ST_EACCES);
    CHECK_EQ(itx_assign(&T, "v", "a2", "", 0), IDXCMD_ST_OK);
    CHECK_EQ(itx_assign(&T, "v", "", "", 0), IDXCMD_ST_OK);
    CHECK_EQ(itx_delete(&T, "v"), IDXCMD_ST_OK);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* Each agent lists only its own volumes, paged in name order, and the
 * listing follows reassignment, detach and delete. */
TEST(assign_list)
{
    CHECK(setup());
    const char *names[] = {"d", "b", "a", "c", "e"};
    const char *agents[] = {"a1", "a2", "a1", "a1", "a10"};
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(itx_create(&T, names[i], BS), IDXCMD_ST_OK);
        CHECK_EQ(itx_assign(&T, names[i], agents[i], "", 0), IDXCMD_ST_OK);
    }
    struct index_vol v[3];
    uint32_t n;
    index_read_begin(T.rd);
    CHECK_EQ(index_assign_list(T.rd, "a1", 2, "", 0, v, 2, &n), 0);
    CHECK(n == 2 && !strcmp(v[0].name, "a") && !strcmp(v[1].name, "c"));
    CHECK_EQ(index_assign_list(T.rd, "a1", 2, "c", 1, v, 3, &n), 0); /* "v" is a1's too */
    CHECK(n == 2 && !strcmp(v[0].name, "d") && v[0].assign_mode == INDEX_ASSIGN_RW &&
          !strcmp(v[1].name, "v"));
    CHECK_EQ(index_assign_list(T.rd, "a10", 3, "", 0, v, 3, &n), 0);
    CHECK(n == 1 && !strcmp(v[0].name, "e"));
    CHECK_EQ(index_assign_list(T.rd, "a3", 2, "", 0, v, 3, &n), 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(index_assign_list(T.rd, "", 0, "", 0, v, 3, &n), -EINVAL);
    index_read_end(T.rd);
    CHECK_EQ(itx_assign(&T, "a", "a2", "", IDXCMD_ASSIGN_FORCE), IDXCMD_ST_OK);
    CHECK_EQ(itx_assign(&T, "c", "", "", 0), IDXCMD_ST_OK);
    index_read_begin(T.rd);
    CHECK_EQ(index_assign_list(T.rd, "a1", 2, "", 0, v, 3, &n), 0);
    CHECK(n == 2 && !strcmp(v[0].name, "d") && !strcmp(v[1].name, "v"));
    CHECK_EQ(index_assign_list(T.rd, "a2", 2, "", 0, v, 3, &n), 0);
    CHECK(n == 2 && !strcmp(v[0].name, "a") && !strcmp(v[1].name, "b"));
    index_read_end(T.rd);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* Resize grows only; create refuses a taken name; blob ids never repeat. */
TEST(volume_admin)
{
    CHECK(setup());
    struct idxcmd c = {.type = IDXCMD_RESIZE_VOLUME};
    c.u.resize_volume.name = idxcmd_cstr("v");
    c.u.resize_volume.size = 128 * BS;
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_ERANGE);
    c.u.resize_volume.size = 512 * BS;
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_OK);
    CHECK_EQ(itx_create(&T, "v", BS), IDXCMD_ST_EEXIST);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "nope", "s", NULL), IDXCMD_ST_ENOENT);
    struct idxcmd a = {.type = IDXCMD_ALLOC_BLOB_IDS};
    a.u.alloc_blob_ids.count = 10;
    CHECK_EQ(itx_cmd(&T, &a), IDXCMD_ST_OK);
    uint64_t first = T.res.id;
    CHECK_EQ(itx_cmd(&T, &a), IDXCMD_ST_OK);
    CHECK_EQ(T.res.id, first + 10);
    itx_close(&T);
}

/* ---- QoS (issue 13) --------------------------------------------------------------- */

static int profile_put(const char *name, uint8_t flags, uint32_t bit, uint64_t v, uint16_t clear)
{
    struct idxcmd c = {.type = IDXCMD_QOS_PROFILE_PUT};
    c.u.qos_profile_put.name = idxcmd_cstr(name);
    c.u.qos_profile_put.flags = flags;
    c.u.qos_profile_put.clear = clear;
    if (bit) qos_field_set(&c.u.qos_profile_put.qos, bit, v);
    return itx_cmd(&T, &c);
}

/* Volume NAME's profile and effective limits; false if it is missing. */
static bool vol_qos(const char *name, struct index_vol *v, struct qos_limits *eff)
{
    index_read_begin(T.rd);
    int rc = index_vol_by_name(T.rd, name, strlen(name), v);
    if (rc == 0) rc = index_vol_qos(T.rd, v, eff);
    index_read_end(T.rd);
    return rc == 0;
}

static uint32_t profile_users(const char *name)
{
    struct index_profile p;
    index_read_begin(T.rd);
    int rc = index_profile_get(T.rd, name, strlen(name), &p);
    index_read_end(T.rd);
    return rc ? 9999 : p.n_vols;
}

/* Profiles: a volume created with none takes the default, one created with
 * a missing profile is refused (ENOENT, naming the profile) and nothing
 * changes, a volume's own limits override its profile's field by field, a
 * change of the profile is a change of every volume naming it, a clone
 * takes its source's, and a profile in use cannot be deleted. */
TEST(qos_profiles)
{
    CHECK(setup());
    struct index_vol v;
    struct qos_limits eff;
    CHECK(vol_qos("v", &v, &eff) && !v.profile[0] && !qos_limited(&eff));
    CHECK_EQ(eff.io_size, QOS_DEFAULT_IO_SIZE);
    CHECK_EQ(profile_put("gold", IDXCMD_PROFILE_CREATE | IDXCMD_PROFILE_DEFAULT,
                         QOS_SET_LIMIT(QOS_IOPS), 500, 0), IDXCMD_ST_OK);
    CHECK_EQ(profile_put("gold", IDXCMD_PROFILE_CREATE, 0, 0, 0), IDXCMD_ST_EEXIST);
    CHECK_EQ(profile_put("tin", 0, 0, 0, 0), IDXCMD_ST_ENOENT);
    CHECK_EQ(profile_put("tin", IDXCMD_PROFILE_CREATE, QOS_SET_LIMIT(QOS_BPS), 1 << 20, 0),
             IDXCMD_ST_OK);

    struct idxcmd c = {.type = IDXCMD_CREATE_VOLUME};
    c.u.create_volume.name = idxcmd_cstr("d");
    c.u.create_volume.size = 16 * BS;
    c.u.create_volume.block_size = BS;
    c.u.create_volume.flags = IDXCMD_CREATE_DEFAULT_QOS;
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_OK);
    CHECK(vol_qos("d", &v, &eff) && !strcmp(v.profile, "gold") && eff.limit[QOS_IOPS] == 500);
    c.u.create_volume.name = idxcmd_cstr("m");
    c.u.create_volume.flags = 0;
    c.u.create_volume.profile = idxcmd_cstr("missing");
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_ENOENT);
    CHECK_EQ(T.res.id, 1);
    CHECK(!vol_qos("m", &v, &eff));
    c.u.create_volume.profile = idxcmd_cstr("tin");
    qos_field_set(&c.u.create_volume.qos, QOS_SET_LIMIT(QOS_IOPS), 50);
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_OK);
    CHECK(vol_qos("m", &v, &eff) && !strcmp(v.profile, "tin"));
    CHECK(eff.limit[QOS_IOPS] == 50 && eff.limit[QOS_BPS] == 1 << 20);

    /* A profile change reaches every volume naming it. */
    CHECK_EQ(profile_put("tin", 0, QOS_SET_LIMIT(QOS_BPS), 2 << 20, 0), IDXCMD_ST_OK);
    CHECK(vol_qos("m", &v, &eff) && eff.limit[QOS_BPS] == 2 << 20 && eff.limit[QOS_IOPS] == 50);
    CHECK_EQ(profile_put("tin", 0, 0, 0, QOS_SET_LIMIT(QOS_BPS)), IDXCMD_ST_OK);
    CHECK(vol_qos("m", &v, &eff) && eff.limit[QOS_BPS] == 0);

    /* The default moves; volumes keep the profile they were made with. */
    CHECK_EQ(profile_put("tin", IDXCMD_PROFILE_DEFAULT, 0, 0, 0), IDXCMD_ST_OK);
    struct index_profile p;
    index_read_begin(T.rd);
    CHECK(index_profile_default(T.rd, &p) == 0 && !strcmp(p.name, "tin"));
    CHECK(index_profile_get(T.rd, "gold", 4, &p) == 0 && !(p.flags & INDEX_PROFILE_DEFAULT));
    index_read_end(T.rd);
    CHECK(vol_qos("d", &v, &eff) && !strcmp(v.profile, "gold"));

    /* SET_QOS: move between profiles (counts follow), override, clear. */
    struct idxcmd s = {.type = IDXCMD_SET_QOS};
    s.u.set_qos.name = idxcmd_cstr("v");
    s.u.set_qos.flags = IDXCMD_QOS_PROFILE;
    s.u.set_qos.profile = idxcmd_cstr("nope");
    CHECK_EQ(itx_cmd(&T, &s), IDXCMD_ST_ENOENT);
    CHECK_EQ(T.res.id, 1);
    s.u.set_qos.name = idxcmd_cstr("nope");
    s.u.set_qos.profile = idxcmd_cstr("gold");
    CHECK_EQ(itx_cmd(&T, &s), IDXCMD_ST_ENOENT);
    CHECK_EQ(T.res.id, 0); /* the volume is the one missing */
    CHECK(vol_qos("v", &v, &eff) && !v.profile[0] && !v.qos.set); /* unchanged */
    CHECK_EQ(profile_users("gold"), 1);
    s.u.set_qos.name = idxcmd_cstr("v");
    qos_field_set(&s.u.set_qos.qos, QOS_SET_LIMIT(QOS_READ_IOPS), 70);
    CHECK_EQ(itx_cmd(&T, &s), IDXCMD_ST_OK);
    CHECK_EQ(profile_users("gold"), 2);
    CHECK(vol_qos("v", &v, &eff) && eff.limit[QOS_IOPS] == 500 && eff.limit[QOS_READ_IOPS] == 70);
    memset(&s.u.set_qos, 0, sizeof(s.u.set_qos));
    s.u.set_qos.name = idxcmd_cstr("v");
    s.u.set_qos.clear = QOS_SET_LIMIT(QOS_READ_IOPS);
    qos_field_set(&s.u.set_qos.qos, QOS_SET_LIMIT(QOS_IOPS), 0); /* no limit, over the profile's */
    CHECK_EQ(itx_cmd(&T, &s), IDXCMD_ST_OK);
    CHECK(vol_qos("v", &v, &eff) && !qos_limited(&eff) && !strcmp(v.profile, "gold"));

    /* A clone takes its source's profile; deleting a volume lets go of it. */
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "d", "s", NULL), IDXCMD_ST_OK);
    CHECK_EQ(itx_snap(&T, IDXCMD_CLONE, "d", "s", "dc"), IDXCMD_ST_OK);
    CHECK(vol_qos("dc", &v, &eff) && !strcmp(v.profile, "gold"));
    CHECK_EQ(profile_users("gold"), 3);
    struct idxcmd del = {.type = IDXCMD_QOS_PROFILE_DELETE};
    del.u.qos_profile_delete.name = idxcmd_cstr("gold");
    CHECK_EQ(itx_cmd(&T, &del), IDXCMD_ST_EBUSY);
    CHECK_EQ(T.res.id, 3);
    CHECK_EQ(profile_users("gold"), 3); /* still there */
    struct idxcmd dv = {.type = IDXCMD_DELETE_VOLUME};
    dv.u.delete_volume.name = idxcmd_cstr("dc");
    CHECK_EQ(itx_cmd(&T, &dv), IDXCMD_ST_OK);
    CHECK_EQ(profile_users("gold"), 2);
    s.u.set_qos = (typeof(s.u.set_qos)){.name = idxcmd_cstr("d"), .flags = IDXCMD_QOS_PROFILE};
    CHECK_EQ(itx_cmd(&T, &s), IDXCMD_ST_OK);
    s.u.set_qos.name = idxcmd_cstr("v");
    CHECK_EQ(itx_cmd(&T, &s), IDXCMD_ST_OK);
    CHECK_EQ(profile_users("gold"), 0);
    CHECK_EQ(itx_cmd(&T, &del), IDXCMD_ST_OK);
    CHECK_EQ(itx_cmd(&T, &del), IDXCMD_ST_ENOENT);
    itx_close(&T);
}

/* Partitions need three known nodes; replacing a replica bumps the epoch. */
TEST(partitions_and_nodes)
{
    CHECK(setup());
    struct idxcmd c = {.type = IDXCMD_CREATE_PARTITION};
    c.u.create_partition.part_id = 2;
    c.u.create_partition.nodes[0] = 1;
    c.u.create_partition.nodes[1] = 2;
    c.u.create_partition.nodes[2] = 9;
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_ENOENT);
    struct idxcmd r = {.type = IDXCMD_REGISTER_NODE};
    r.u.register_node.node_id = 9;
    r.u.register_node.addr = idxcmd_cstr("10.0.0.9:7000");
    CHECK_EQ(itx_cmd(&T, &r), IDXCMD_ST_OK);
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_OK);
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_EEXIST);
    struct idxcmd rr = {.type = IDXCMD_REPLACE_REPLICA};
    rr.u.replace_replica.part_id = 1;
    rr.u.replace_replica.old_node = 3;
    rr.u.replace_replica.new_node = 9;
    CHECK_EQ(itx_cmd(&T, &rr), IDXCMD_ST_OK);
    CHECK_EQ(T.res.id, 2);
    CHECK_EQ(itx_cmd(&T, &rr), IDXCMD_ST_EINVAL); /* 3 is no longer a member */
    struct idxcmd s = {.type = IDXCMD_SET_NODE_STATE};
    s.u.set_node_state.node_id = 3;
    s.u.set_node_state.state = INDEX_NODE_RETIRED;
    CHECK_EQ(itx_cmd(&T, &s), IDXCMD_ST_OK);
    s.u.set_node_state.state = INDEX_NODE_UP;
    CHECK_EQ(itx_cmd(&T, &s), IDXCMD_ST_EINVAL);
    struct index_part parts[4];
    struct index_node nodes[8];
    uint32_t n;
    index_read_begin(T.rd);
    CHECK(index_part_list(T.rd, 0, parts, 4, &n) == 0);
    CHECK_EQ(n, 2);
    CHECK(parts[0].nodes[2] == 9 && parts[0].epoch == 2);
    CHECK(index_node_list(T.rd, 2, nodes, 8, &n) == 0);
    CHECK_EQ(n, 2);
    CHECK(nodes[0].id == 3 && nodes[0].state == INDEX_NODE_RETIRED);
    CHECK(strcmp(nodes[1].addr, "10.0.0.9:7000") == 0);
    index_read_end(T.rd);
    itx_close(&T);
}

/* ---- Read API ---------------------------------------------------------------------- */

/* Paging a map: MAX pieces, then continue where it stopped. */
TEST(map_paging)
{
    CHECK(setup());
    for (uint64_t i = 0; i < 10; i++)
        CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 2 * i * BS, BS, 100 + i, 0, BS)), IDXCMD_ST_OK);
    struct index_piece p[4];
    uint64_t pos = 0, total = 0, data = 0;
    while (pos < 256 * BS) {
        int n = itx_map(&T, VOL, pos, 256 * BS - pos, p, 4);
        CHECK(n > 0 && n <= 4);
        CHECK_EQ(p[0].off, pos);
        for (int i = 0; i < n; i++) {
            total += p[i].len;
            data += p[i].kind == INDEX_DATA;
        }
        pos = p[n - 1].off + p[n - 1].len;
    }
    CHECK_EQ(total, 256 * BS);
    CHECK_EQ(data, 10);
    CHECK_EQ(itx_map(&T, VOL, 250 * BS, 7 * BS, p, 4), -ERANGE);
    CHECK_EQ(itx_map(&T, VOL, UINT64_MAX - BS, 2 * BS, p, 4), -ERANGE);
    CHECK_EQ(itx_map(&T, 9999, 0, BS, p, 4), -ENOENT);
    CHECK_EQ(itx_map(&T, VOL, 0, 0, p, 4), 0);
    itx_close(&T);
}

/* Volume lists page in name order. */
TEST(vol_list_paged)
{
    CHECK(setup());
    const char *names[] = {"b", "a", "d", "c"};
    for (int i = 0; i < 4; i++) CHECK_EQ(itx_create(&T, names[i], BS), IDXCMD_ST_OK);
    struct index_vol v[3];
    uint32_t n;
    index_read_begin(T.rd);
    CHECK(index_vol_list(T.rd, NULL, 0, v, 3, &n) == 0);
    CHECK_EQ(n, 3);
    CHECK(!strcmp(v[0].name, "a") && !strcmp(v[1].name, "b") && !strcmp(v[2].name, "c"));
    CHECK(index_vol_list(T.rd, "c", 1, v, 3, &n) == 0);
    CHECK_EQ(n, 2);
    CHECK(!strcmp(v[0].name, "d") && !strcmp(v[1].name, "v"));
    CHECK(!strcmp(v[1].agent, "a1") && v[1].attach_mode == INDEX_ATTACH_RW);
    index_read_end(T.rd);
    itx_close(&T);
}

/* A read txn keeps its view while the writer commits (MVCC; NOTLS). */
TEST(reader_isolation)
{
    CHECK(setup());
    CHECK(index_read_begin(T.rd) == 0);
    uint64_t before = index_applied(T.rd);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, BS, 100, 0, BS)), IDXCMD_ST_OK);
    struct index_piece p[2];
    uint32_t n;
    CHECK(index_map(T.rd, VOL, 0, BS, p, 2, &n) == 0);
    CHECK_EQ(p[0].kind, INDEX_HOLE);
    CHECK_EQ(index_applied(T.rd), before);
    index_read_end(T.rd);
    CHECK_EQ(itx_map(&T, VOL, 0, BS, p, 2), 1);
    CHECK_EQ(p[0].kind, INDEX_DATA);
    itx_close(&T);
}

/* ---- Idempotence and dumps ------------------------------------------------------- */

/* An entry at or below the applied index is a no-op (C16). */
TEST(apply_idempotent)
{
    CHECK(setup());
    uint8_t buf[256];
    struct idxcmd c = {.type = IDXCMD_CREATE_VOLUME};
    c.u.create_volume.name = idxcmd_cstr("w");
    c.u.create_volume.size = BS;
    c.u.create_volume.block_size = BS;
    int len = idxcmd_encode(buf, sizeof(buf), &c);
    CHECK(len > 0);
    struct idxcmd_result r;
    uint64_t at = T.next++;
    CHECK(fsm_apply(T.ix, at, buf, (size_t)len, &r) == 0);
    CHECK_EQ(r.status, IDXCMD_ST_OK);
    uint64_t d = itx_digest(&T);
    CHECK(fsm_apply(T.ix, at, buf, (size_t)len, &r) == 0);
    CHECK_EQ(r.status, IDXCMD_ST_SKIPPED);
    CHECK(fsm_apply(T.ix, at - 1, buf, (size_t)len, &r) == 0);
    CHECK_EQ(r.status, IDXCMD_ST_SKIPPED);
    CHECK_EQ(itx_digest(&T), d);
    /* Garbage bytes are applied as an EINVAL no-op, not a crash. */
    CHECK(fsm_apply(T.ix, T.next++, (const uint8_t *)"junk", 4, &r) == 0);
    CHECK_EQ(r.status, IDXCMD_ST_EINVAL);
    itx_close(&T);
}

static int collect(void *arg, const void *buf, size_t len)
{
    struct { uint8_t *p; size_t len; } *b = arg;
    b->p = realloc(b->p, b->len + len);
    memcpy(b->p + b->len, buf, len);
    b->len += len;
    return 0;
}

/* A dump loads into another replica with the same digest; damage, another
 * cluster and an older dump's checks are refused without touching it. */
TEST(dump_load)
{
    CHECK(setup());
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 8 * BS, 100, 0, 8 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), IDXCMD_ST_OK);
    struct { uint8_t *p; size_t len; } b = {NULL, 0};
    CHECK(index_read_begin(T.rd) == 0);
    CHECK(index_dump(T.rd, collect, &b) == 0);
    index_read_end(T.rd);
    uint64_t d = itx_digest(&T);
    struct itx o;
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/other", DIR);
    CHECK(itx_open(&o, dir, "test-cluster") == 0);
    CHECK(itx_create(&o, "junk", BS) == IDXCMD_ST_OK);
    uint64_t od = itx_digest(&o), applied;
    b.p[b.len / 2] ^= 1;
    CHECK_EQ(index_load(o.ix, b.p, b.len, &applied), -BD_ECORRUPT);
    CHECK_EQ(itx_digest(&o), od);
    b.p[b.len / 2] ^= 1;
    CHECK(index_load(o.ix, b.p, b.len, &applied) == 0);
    CHECK_EQ(applied, T.next - 1);
    CHECK_EQ(itx_digest(&o), d);
    itx_close(&o);
    snprintf(dir, sizeof(dir), "%s/third", DIR);
    CHECK(itx_open(&o, dir, "another-cluster") == 0);
    CHECK_EQ(index_load(o.ix, b.p, b.len, &applied), -BD_ECONFIG);
    CHECK_EQ(index_load(o.ix, b.p, 10, &applied), -EINVAL);
    itx_close(&o);
    free(b.p);
    itx_close(&T);
}

/* ---- Golden bytes ---------------------------------------------------------------- */

/* Each record layout of index_int.h as it was stored when this test was
 * written: a fixed record encodes to fixed bytes and those bytes decode to
 * the same record.  A layout change fails here until INDEX_SCHEMA_VERSION
 * and the tables say so: existing data directories would misread. */

static MDB_val val_of(const char *hex, uint8_t *buf, size_t cap)
{
    return (MDB_val){golden_bytes(hex, buf, cap), buf};
}

TEST(golden_vol)
{
    struct index_vol v = {.name = "vol0", .id = 7, .size = 1ull << 30, .block_size = 4096,
                          .state = INDEX_VOL_READY, .attach_mode = INDEX_ATTACH_RW,
                          .top_layer = 9, .generation = 3, .agent = "hv1",
                          .created_index = 0x1234, .assign_mode = INDEX_ASSIGN_RO,
                          .assign_agent = "hv1", .assign_client = "vm7", .profile = "ssd"};
    qos_field_set(&v.qos, QOS_SET_LIMIT(QOS_IOPS), 500);
    qos_field_set(&v.qos, QOS_SET_LIMIT(QOS_BPS), 1 << 20);
    uint8_t b[INDEX_VAL_MAX], g[INDEX_VAL_MAX];
    size_t n = index_enc_vol(b, &v);
    static const char hex[] =
        "0700000000000000 0000004000000000 00100000 01 01 0900000000000000 "
        "0300000000000000 3412000000000000 03 687631 "
        "02 03 687631 03 766d37 " /* assign_mode, agent, client */
        "03 737364 "              /* profile */
        /* qos: set (iops, bps), limits, bursts, burst_seconds, io_size */
        "0900 f401000000000000 [0*16] 0000100000000000 [0*16] [0*48] 00000000 00000000";
    CHECK(golden_eq("vol", b, n, hex));
    MDB_val k = {4, "vol0"}, val = val_of(hex, g, sizeof(g));
    struct index_vol d;
    CHECK_EQ(index_dec_vol(&k, &val, &d), 0);
    CHECK(!strcmp(d.name, "vol0") && d.id == 7 && d.size == 1ull << 30 && d.block_size == 4096 &&
          d.state == INDEX_VOL_READY && d.attach_mode == INDEX_ATTACH_RW && d.top_layer == 9 &&
          d.generation == 3 && !strcmp(d.agent, "hv1") && d.created_index == 0x1234 &&
          d.assign_mode == INDEX_ASSIGN_RO && !strcmp(d.assign_agent, "hv1") &&
          !strcmp(d.assign_client, "vm7") && !strcmp(d.profile, "ssd") &&
          d.qos.set == v.qos.set && d.qos.limit[QOS_IOPS] == 500 &&
          d.qos.limit[QOS_BPS] == 1 << 20);
    /* A limit that is not marked set, or out of range, is a damaged record
     * (byte 81: write_iops, not set). */
    g[81] = 1;
    CHECK_EQ(index_dec_vol(&k, &val, &d), -BD_ECORRUPT);
    /* An assignment mode without an agent, or a client without a mode,
     * is refused: the assigns table could not mirror it. */
    static const char bad_hex[] =
        "0700000000000000 0000004000000000 00100000 01 01 0900000000000000 "
        "0300000000000000 3412000000000000 03 687631 "
        "00 00 03 766d37 00 0000 [0*96] 00000000 00000000";
    val = val_of(bad_hex, g, sizeof(g));
    CHECK_EQ(index_dec_vol(&k, &val, &d), -BD_ECORRUPT);
}

/* A QoS profile. */
TEST(golden_profile)
{
    struct index_profile p = {.name = "gold", .flags = INDEX_PROFILE_DEFAULT, .n_vols = 2,
                              .created_index = 0x55};
    qos_field_set(&p.qos, QOS_SET_LIMIT(QOS_WRITE_IOPS), 100);
    qos_field_set(&p.qos, QOS_SET_IO_SIZE, 1 << 20);
    uint8_t b[INDEX_VAL_MAX], g[INDEX_VAL_MAX];
    size_t n = index_enc_profile(b, &p);
    static const char hex[] =
        "01 02000000 5500000000000000 "
        "0420 [0*16] 6400000000000000 [0*24] [0*48] 00000000 00001000";
    CHECK(golden_eq("profile", b, n, hex));
    MDB_val k = {4, "gold"}, val = val_of(hex, g, sizeof(g));
    struct index_profile d;
    CHECK_EQ(index_dec_profile(&k, &val, &d), 0);
    CHECK(!strcmp(d.name, "gold") && d.flags == INDEX_PROFILE_DEFAULT && d.n_vols == 2 &&
          d.created_index == 0x55 && d.qos.set == p.qos.set &&
          d.qos.limit[QOS_WRITE_IOPS] == 100 && d.qos.io_size == 1 << 20);
}

TEST(golden_layer)
{
    struct index_layer l = {.id = 5, .parent = 4, .vol_id = 7, .n_children = 2, .n_snaps = 1,
                            .is_top = 1, .child_xor = 0x0f0e};
    uint8_t b[INDEX_VAL_MAX], g[INDEX_VAL_MAX];
    size_t n = index_enc_layer(b, &l);
    static const char hex[] =
        "0400000000000000 0700000000000000 02000000 01000000 01 0e0f000000000000";
    CHECK(golden_eq("layer", b, n, hex));
    MDB_val val = val_of(hex, g, sizeof(g));
    struct index_layer d;
    CHECK_EQ(index_dec_layer(5, &val, &d), 0);
    CHECK(d.id == 5 && d.parent == 4 && d.vol_id == 7 && d.n_children == 2 && d.n_snaps == 1 &&
          d.is_top == 1 && d.child_xor == 0x0f0e);
}

/* An extent's key is (layer, offset) big-endian; DATA and ZERO values. */
TEST(golden_ext)
{
    struct index_ext e = {.layer = 9, .off = 0x10000, .len = 8192, .flags = 0,
                          .blob_id = 0x0a0b, .blob_off = 4096};
    uint8_t k[INDEX_EXT_KEY_LEN], b[INDEX_VAL_MAX], gk[32], g[INDEX_VAL_MAX];
    index_key_u64(k, e.layer);
    index_key_u64(k + 8, e.off);
    static const char key_hex[] =
        "0000000000000009 0000000000010000";
    static const char data_hex[] =
        "00 0020000000000000 0b0a000000000000 00100000";
    static const char zero_hex[] =
        "01 0020000000000000";
    bool ok = golden_eq("ext_key", k, sizeof(k), key_hex);
    size_t n = index_enc_ext(b, &e);
    ok &= golden_eq("ext_data", b, n, data_hex);
    struct index_ext z = {.layer = 9, .off = 0x10000, .len = 8192, .flags = INDEX_EXT_ZERO};
    n = index_enc_ext(b, &z);
    CHECK(golden_eq("ext_zero", b, n, zero_hex) && ok);
    MDB_val key = val_of(key_hex, gk, sizeof(gk)), val = val_of(data_hex, g, sizeof(g));
    struct index_ext d;
    CHECK_EQ(index_dec_ext(&key, &val, &d), 0);
    CHECK(d.layer == 9 && d.off == 0x10000 && d.len == 8192 && d.flags == 0 &&
          d.blob_id == 0x0a0b && d.blob_off == 4096);
    val = val_of(zero_hex, g, sizeof(g));
    CHECK_EQ(index_dec_ext(&key, &val, &d), 0);
    CHECK(d.len == 8192 && d.flags == INDEX_EXT_ZERO && d.blob_id == 0 && d.blob_off == 0);
}

TEST(golden_blob_node_part)
{
    struct index_blob x = {.id = 3, .partition = 2, .len = 65536, .refcount = 4,
                           .flags = INDEX_BLOB_DEAD, .csum = 0x1122334455667788ull,
                           .live = 0x8000};
    struct index_node nd = {.id = 4, .addr = "127.0.0.1:7201", .capacity = 1ull << 40,
                            .used = 12345, .state = INDEX_NODE_DOWN, .registered_index = 17,
                            .zone = "z1", .rack = "", .host = "h.3"};
    struct index_part p = {.id = 6, .nodes = {1, 2, 3}, .epoch = 5, .state = INDEX_PART_ACTIVE};
    static const char blob_hex[] =
        "02000000 00000100 04000000 01 8877665544332211 0080000000000000";
    static const char node_hex[] =
        "0000000000010000 3930000000000000 02 1100000000000000 "
        "0e 3132372e302e302e313a37323031 02 7a31 00 03 682e33";
    static const char part_hex[] =
        "0100000000000000 0200000000000000 0300000000000000 "
        "0500000000000000 01";
    uint8_t b[INDEX_VAL_MAX], g[INDEX_VAL_MAX];
    bool ok = golden_eq("blob", b, index_enc_blob(b, &x), blob_hex);
    ok &= golden_eq("node", b, index_enc_node(b, &nd), node_hex);
    CHECK(golden_eq("part", b, index_enc_part(b, &p), part_hex) && ok);
    MDB_val val = val_of(blob_hex, g, sizeof(g));
    struct index_blob db;
    CHECK_EQ(index_dec_blob(3, &val, &db), 0);
    CHECK(db.id == 3 && db.partition == 2 && db.len == 65536 && db.refcount == 4 &&
          db.flags == INDEX_BLOB_DEAD && db.csum == 0x1122334455667788ull && db.live == 0x8000);
    val = val_of(node_hex, g, sizeof(g));
    struct index_node dn;
    CHECK_EQ(index_dec_node(4, &val, &dn), 0);
    CHECK(dn.id == 4 && !strcmp(dn.addr, "127.0.0.1:7201") && dn.capacity == 1ull << 40 &&
          dn.used == 12345 && dn.state == INDEX_NODE_DOWN && dn.registered_index == 17 &&
          !strcmp(dn.zone, "z1") && !strcmp(dn.rack, "") && !strcmp(dn.host, "h.3"));
    nd.state = INDEX_NODE_DRAINING;
    uint8_t n2[INDEX_VAL_MAX];
    MDB_val v2 = {index_enc_node(n2, &nd), n2};
    CHECK_EQ(index_dec_node(4, &v2, &dn), 0);
    CHECK_EQ(dn.state, INDEX_NODE_DRAINING);
    n2[16] = 5; /* no such state */
    CHECK_EQ(index_dec_node(4, &v2, &dn), -BD_ECORRUPT);
    val = val_of(part_hex, g, sizeof(g));
    struct index_part dp;
    CHECK_EQ(index_dec_part(6, &val, &dp), 0);
    CHECK(dp.id == 6 && dp.nodes[0] == 1 && dp.nodes[1] == 2 && dp.nodes[2] == 3 &&
          dp.epoch == 5 && dp.state == INDEX_PART_ACTIVE);
}

/* A snapshot's key is vol id (big-endian) | name; gc records. */
TEST(golden_snap_gc)
{
    struct index_snap s = {.vol_id = 7, .name = "daily.1", .layer = 9, .size = 1ull << 30,
                           .created_index = 99, .origin = 0x0123456789abcdefull,
                           .flags = INDEX_SNAP_BARRIER};
    struct index_gc gc = {.blob_id = 3, .partition = 2, .dead_index = 0x0102030405ull};
    static const char key_hex[] =
        "0000000000000007 6461696c792e31";
    static const char snap_hex[] =
        "0900000000000000 0000004000000000 6300000000000000 efcdab8967452301 01";
    static const char gc_hex[] =
        "02000000 0504030201000000";
    uint8_t k[8 + INDEX_NAME_MAX], b[INDEX_VAL_MAX], gk[8 + INDEX_NAME_MAX], g[INDEX_VAL_MAX];
    bool ok = golden_eq("snap_key", k, index_snap_key(k, 7, "daily.1", 7), key_hex);
    ok &= golden_eq("snap", b, index_enc_snap(b, &s), snap_hex);
    CHECK(golden_eq("gc", b, index_enc_gc(b, &gc), gc_hex) && ok);
    MDB_val key = val_of(key_hex, gk, sizeof(gk)), val = val_of(snap_hex, g, sizeof(g));
    struct index_snap ds;
    CHECK_EQ(index_dec_snap(&key, &val, &ds), 0);
    CHECK(ds.vol_id == 7 && !strcmp(ds.name, "daily.1") && ds.layer == 9 &&
          ds.size == 1ull << 30 && ds.created_index == 99 && ds.origin == 0x0123456789abcdefull &&
          ds.flags == INDEX_SNAP_BARRIER);
    val = val_of(gc_hex, g, sizeof(g));
    struct index_gc dg;
    CHECK_EQ(index_dec_gc(3, &val, &dg), 0);
    CHECK(dg.blob_id == 3 && dg.partition == 2 && dg.dead_index == 0x0102030405ull);
}

/* A move record: key partition (BE) | node (BE); the value as index_int.h
 * lays it out.  A key whose node differs from the value's is corrupt. */
TEST(golden_move)
{
    struct index_move m = {.part = 6, .node = 14, .from = 11, .reason = 2, .cursor = 0x1234,
                           .bytes_done = 1ull << 20, .started_index = 77};
    static const char key_hex[] = "00000006 000000000000000e";
    static const char move_hex[] =
        "0e00000000000000 0b00000000000000 02 3412000000000000 0000100000000000 "
        "4d00000000000000";
    uint8_t k[INDEX_MOVE_KEY_LEN], b[INDEX_VAL_MAX], gk[64], g[INDEX_VAL_MAX];
    index_key_move(k, 6, 14);
    bool ok = golden_eq("move_key", k, sizeof(k), key_hex);
    CHECK(golden_eq("move", b, index_enc_move(b, &m), move_hex) && ok);
    MDB_val key = val_of(key_hex, gk, sizeof(gk)), val = val_of(move_hex, g, sizeof(g));
    struct index_move d;
    CHECK_EQ(index_dec_move(&key, &val, &d), 0);
    CHECK(d.part == 6 && d.node == 14 && d.from == 11 && d.reason == 2 && d.cursor == 0x1234 &&
          d.bytes_done == 1ull << 20 && d.started_index == 77);
    index_key_move(gk, 6, 15);
    CHECK_EQ(index_dec_move(&key, &val, &d), -BD_ECORRUPT);
}

/* A layer's usage, a flatten in progress, and meta "totals". */
TEST(golden_usage_flatten_totals)
{
    struct index_usage u = {.data_bytes = 0x10000, .masked_bytes = 0x2000, .view_bytes = 0x30000};
    struct index_flatten f = {.vol_id = 7, .cursor = 0x100000, .copied_bytes = 0x4000,
                              .started_index = 42};
    struct index_meta m = {.data_bytes = 1, .blob_bytes = 2, .dead_bytes = 3, .rewrite_layer = 4,
                           .rewrite_off = 5, .rewritten_bytes = 6};
    static const char usage_hex[] =
        "0000010000000000 0020000000000000 0000030000000000";
    static const char flatten_hex[] =
        "0000100000000000 0040000000000000 2a00000000000000";
    static const char totals_hex[] =
        "0100000000000000 0200000000000000 0300000000000000 "
        "0400000000000000 0500000000000000 0600000000000000";
    uint8_t b[INDEX_VAL_MAX], g[INDEX_VAL_MAX];
    bool ok = golden_eq("usage", b, index_enc_usage(b, &u), usage_hex);
    ok &= golden_eq("flatten", b, index_enc_flatten(b, &f), flatten_hex);
    CHECK(golden_eq("totals", b, index_enc_totals(b, &m), totals_hex) && ok);
    MDB_val val = val_of(usage_hex, g, sizeof(g));
    struct index_usage du;
    CHECK_EQ(index_dec_usage(&val, &du), 0);
    CHECK(du.data_bytes == 0x10000 && du.masked_bytes == 0x2000 && du.view_bytes == 0x30000);
    val = val_of(flatten_hex, g, sizeof(g));
    struct index_flatten df;
    CHECK_EQ(index_dec_flatten(7, &val, &df), 0);
    CHECK(df.vol_id == 7 && df.cursor == 0x100000 && df.copied_bytes == 0x4000 &&
          df.started_index == 42);
}

/* A whole dump (the Raft snapshot format of index.h) of an index with a
 * record in every table but reap and moves (golden_move and the fsm tests
 * have theirs): the cluster, volume "v" attached and assigned
 * to agent "a1", blob 100 written then overwritten by blob 101 (100 is in
 * gc), snapshot "s1", QoS profile "gold" (the default) which "v" names.
 * Its bytes pin the dump's header, record and trailer layout and every
 * key and value as stored; loading the golden bytes into a fresh index
 * gives back those records. */
static const char dump_hex[] = "42444958444d503102000000000000000e000000000000000007000800000061"
    "70706c6965640e000000000000000007000c000000636c757374657274657374"
    "2d636c7573746572000b00080000006c696d69745f7061676573000000000000"
    "0000000900080000006e6578745f626c6f620100100000000000000a00080000"
    "006e6578745f6c617965720300000000000000000800080000006e6578745f76"
    "6f6c020000000000000000060004000000736368656d61020000000006003000"
    "0000746f74616c73002000000000000000200000000000000020000000000000"
    "000000000000000000000000000000000000000000000000010100a500000076"
    "0100000000000000000010000000000000100000010102000000000000000100"
    "0000000000000600000000000000026131010261310004676f6c640000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000020800010000000000000000000001760308002100000000000000"
    "0000000100000000000000000100000000000000010000000100000000020000"
    "0000000000030800210000000000000000000002010000000000000001000000"
    "0000000000000000000000000100000000000000000410001500000000000000"
    "0000000100000000000000000000200000000000006500000000000000000000"
    "000508001d000000000000000000006401000000002000000000000001347818"
    "b9758cabcd00000000000000000508001d000000000000000000006501000000"
    "00200000010000000049f462382f06e36b002000000000000006040021000000"
    "0000000101000000000000000200000000000000030000000000000001000000"
    "00000000010708002b0000000000000000000001000000000001000000000000"
    "000000000101000000000000000e3132372e302e302e313a3730303000000007"
    "08002b0000000000000000000002000000000001000000000000000000000102"
    "000000000000000e3132372e302e302e313a373030300000000708002b000000"
    "0000000000000003000000000001000000000000000000000103000000000000"
    "000e3132372e302e302e313a37303030000000080a0021000000000000000000"
    "00017331010000000000000000001000000000000b0000000000000000000000"
    "00000000000908000c0000000000000000000064010000000a00000000000000"
    "0a08001800000000000000000000010020000000000000000000000000000000"
    "200000000000000a080018000000000000000000000200000000000000000000"
    "00000000000000200000000000000c040000000000026131760f040077000000"
    "676f6c6401010000000d000000000000000100f4010000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000001900000000"
    "000000f7beb96aa8ae4d2789e820a8d261e8f3";

TEST(golden_dump)
{
    CHECK(setup());
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 2 * BS, 100, 0, 2 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 2 * BS, 101, 0, 2 * BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), IDXCMD_ST_OK);
    CHECK_EQ(itx_assign(&T, "v", "a1", "", 0), IDXCMD_ST_OK);
    struct idxcmd c = {.type = IDXCMD_QOS_PROFILE_PUT};
    c.u.qos_profile_put.name = idxcmd_cstr("gold");
    c.u.qos_profile_put.flags = IDXCMD_PROFILE_CREATE | IDXCMD_PROFILE_DEFAULT;
    qos_field_set(&c.u.qos_profile_put.qos, QOS_SET_LIMIT(QOS_IOPS), 500);
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_OK);
    memset(&c, 0, sizeof(c));
    c.type = IDXCMD_SET_QOS;
    c.u.set_qos.name = idxcmd_cstr("v");
    c.u.set_qos.flags = IDXCMD_QOS_PROFILE;
    c.u.set_qos.profile = idxcmd_cstr("gold");
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_OK);
    struct { uint8_t *p; size_t len; } b = {NULL, 0};
    CHECK(index_read_begin(T.rd) == 0);
    CHECK(index_dump(T.rd, collect, &b) == 0);
    index_read_end(T.rd);
    bool same = golden_eq("dump", b.p, b.len, dump_hex);
    free(b.p);
    itx_close(&T);
    CHECK(same);

    static uint8_t g[4096];
    size_t n = golden_bytes(dump_hex, g, sizeof(g));
    uint64_t applied;
    CHECK_EQ(index_dump_applied(g, n, &applied), 0);
    CHECK_EQ(applied, 14);
    struct itx o;
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/golden", DIR);
    CHECK(itx_open(&o, dir, "test-cluster") == 0);
    CHECK_EQ(index_load(o.ix, g, n, &applied), 0);
    CHECK_EQ(applied, 14);
    CHECK_EQ(itx_audit(&o), 0);
    struct index_vol v;
    struct index_blob bl;
    struct index_node nd;
    struct index_part p;
    struct index_gc gc;
    struct index_snap s;
    uint32_t cnt;
    CHECK(index_read_begin(o.rd) == 0);
    CHECK_EQ(index_vol_by_name(o.rd, "v", 1, &v), 0);
    CHECK(v.size == 256 * BS && v.generation == GEN && !strcmp(v.agent, "a1"));
    CHECK(v.assign_mode == INDEX_ASSIGN_RW && !strcmp(v.assign_agent, "a1"));
    struct index_vol av;
    CHECK_EQ(index_assign_list(o.rd, "a1", 2, "", 0, &av, 1, &cnt), 0);
    CHECK(cnt == 1 && !strcmp(av.name, "v"));
    CHECK_EQ(index_blob_get(o.rd, 100, &bl), 0);
    CHECK(bl.refcount == 0 && (bl.flags & INDEX_BLOB_DEAD) && bl.len == 2 * BS);
    CHECK_EQ(index_node_get(o.rd, 2, &nd), 0);
    CHECK(!strcmp(nd.addr, "127.0.0.1:7000") && nd.state == INDEX_NODE_UP);
    CHECK_EQ(index_part_get(o.rd, 1, &p), 0);
    CHECK(p.nodes[0] == 1 && p.nodes[1] == 2 && p.nodes[2] == 3);
    CHECK_EQ(index_gc_list(o.rd, 0, &gc, 1, &cnt), 0);
    CHECK(cnt == 1 && gc.blob_id == 100 && gc.dead_index == 10);
    CHECK_EQ(index_snap_list(o.rd, v.id, "", 0, &s, 1, &cnt), 0);
    CHECK(cnt == 1 && !strcmp(s.name, "s1") && s.created_index == 11);
    struct index_profile pr;
    struct qos_limits eff;
    CHECK_EQ(index_profile_default(o.rd, &pr), 0);
    CHECK(!strcmp(pr.name, "gold") && pr.n_vols == 1 && pr.qos.limit[QOS_IOPS] == 500);
    CHECK(!strcmp(v.profile, "gold") && index_vol_qos(o.rd, &v, &eff) == 0 &&
          eff.limit[QOS_IOPS] == 500 && eff.io_size == QOS_DEFAULT_IO_SIZE);
    index_read_end(o.rd);
    struct index_piece pc[2];
    CHECK_EQ(itx_map(&o, v.id, 0, 2 * BS, pc, 2), 1);
    CHECK(pc[0].kind == INDEX_DATA && pc[0].blob_id == 101);
    itx_close(&o);
}
