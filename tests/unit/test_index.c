/* test_index.c: the index's schema and extent map through fsm_apply and the
 * read API: opening rules, insert / overlap / split / trim / zero, layers
 * (snapshots freeze, clones read their parent until overwritten, snapshot
 * delete merges), refcounts and garbage, fencing, dumps.  Each test is
 * tiny and states the behaviour it pins (defends C9, C10, C11, C12, C13,
 * C16). */
#include "tap.h"
#include "idxtest.h"
#include "bd.h"

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
    if (itx_cluster(&T) || itx_create(&T, "v", 256 * BS) != IDX_OK) return false;
    return itx_attach(&T, "v", "a1", &VOL, &GEN) == IDX_OK;
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
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 8 * BS, 8 * BS, 100, 0, 8 * BS)), IDX_OK);
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
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 16 * BS, 100, 0, 16 * BS)), IDX_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 4 * BS, 4 * BS, 101, 0, 4 * BS)), IDX_OK);
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
    struct idx_write w[2] = {itx_data(VOL, GEN, 0, 4 * BS, 100, 0, 8 * BS),
                             itx_data(VOL, GEN, 64 * BS, 4 * BS, 100, 4 * BS, 8 * BS)};
    CHECK_EQ(itx_writes(&T, w, 2), IDX_OK);
    struct index_space sp = space();
    CHECK_EQ(sp.blob_bytes, 8 * BS);
    CHECK_EQ(sp.data_bytes, 8 * BS);
    CHECK_EQ(sp.dead_bytes, 0);
    /* Overwrite one of its ranges: the blob stays, whole. */
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 4 * BS, 101, 0, 4 * BS)), IDX_OK);
    sp = space();
    CHECK_EQ(sp.blob_bytes, 12 * BS);
    CHECK_EQ(sp.data_bytes, 8 * BS);
    /* Zero the other: blob 100 dies, zeroes address nothing. */
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 64 * BS, 4 * BS, IDX_W_ZERO)), IDX_OK);
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
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 4 * BS, 100, 0, 4 * BS)), IDX_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 4 * BS, 4 * BS, 101, 0, 4 * BS)), IDX_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 8 * BS, 4 * BS, 102, 0, 4 * BS)), IDX_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 2 * BS, 8 * BS, 103, 0, 8 * BS)), IDX_OK);
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
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 8 * BS, 100, 0, 8 * BS)), IDX_OK);
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 0, 4 * BS, IDX_W_ZERO)), IDX_OK);
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 4 * BS, 4 * BS, IDX_W_ZERO)), IDX_OK);
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 8 * BS, 4 * BS, IDX_W_ZERO)), IDX_OK);
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
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 8 * BS, 100, 0, 8 * BS)), IDX_OK);
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 2 * BS, 4 * BS, IDX_W_TRIM)), IDX_OK);
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
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 8 * BS, 100, 0, 8 * BS)), IDX_OK);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), IDX_OK);
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 0, 8 * BS, IDX_W_TRIM)), IDX_OK);
    struct index_piece p[4];
    CHECK_EQ(itx_map(&T, VOL, 0, 8 * BS, p, 4), 1);
    CHECK_EQ(p[0].kind, INDEX_ZERO);
    CHECK_EQ(itx_snap(&T, IDXCMD_CLONE, "v", "s1", "c1"), IDX_OK);
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
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 8 * BS, 100, 0, 8 * BS)), IDX_OK);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), IDX_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 2 * BS, 2 * BS, 101, 0, 2 * BS)), IDX_OK);
    CHECK_EQ(itx_snap(&T, IDXCMD_CLONE, "v", "s1", "c1"), IDX_OK);
    uint64_t c1, g1;
    CHECK_EQ(itx_attach(&T, "c1", "a2", &c1, &g1), IDX_OK);
    struct index_piece p[4];
    CHECK_EQ(itx_map(&T, c1, 0, 8 * BS, p, 4), 1);
    CHECK(p[0].blob_id == 100 && p[0].len == 8 * BS);
    CHECK_EQ(itx_write1(&T, itx_data(c1, g1, 6 * BS, 2 * BS, 102, 0, 2 * BS)), IDX_OK);
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
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 8 * BS, 100, 0, 8 * BS)), IDX_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 8 * BS, 2 * BS, 99, 0, 2 * BS)), IDX_OK);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), IDX_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 2 * BS, 2 * BS, 101, 0, 2 * BS)), IDX_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 8 * BS, 2 * BS, 102, 0, 2 * BS)), IDX_OK);
    struct index_piece before[8], after[8];
    int nb = itx_map(&T, VOL, 0, 16 * BS, before, 8);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_DELETE, "v", "s1", NULL), IDX_OK);
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
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_DELETE, "v", "s1", NULL), IDX_ENOENT);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* Deleting a volume frees its blobs into gc, but a clone of its snapshot
 * keeps reading the snapshot's data (C11, C12, C13). */
TEST(delete_volume_keeps_clone)
{
    CHECK(setup());
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 4 * BS, 100, 0, 4 * BS)), IDX_OK);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), IDX_OK);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 4 * BS, 4 * BS, 101, 0, 4 * BS)), IDX_OK);
    CHECK_EQ(itx_snap(&T, IDXCMD_CLONE, "v", "s1", "c1"), IDX_OK);
    CHECK_EQ(itx_delete(&T, "v"), IDX_EBUSY); /* attached */
    CHECK_EQ(itx_detach(&T, VOL, GEN, "a1"), IDX_OK);
    CHECK_EQ(itx_delete(&T, "v"), IDX_OK);
    CHECK(blob_dead(101));
    CHECK_EQ(blob_refs(100), 1);
    struct index_piece p[4];
    CHECK_EQ(itx_map(&T, vol_id("c1"), 0, 8 * BS, p, 4), 2);
    CHECK(p[0].blob_id == 100 && p[1].kind == INDEX_HOLE);
    CHECK_EQ(itx_audit(&T), 0);
    CHECK_EQ(itx_delete(&T, "c1"), IDX_OK);
    CHECK(blob_dead(100));
    CHECK_EQ(n_extents(), 0);
    CHECK_EQ(itx_audit(&T), 0);
    /* GC_DONE removes the queued blobs for good. */
    uint64_t ids[2] = {100, 101};
    struct idxcmd c = {.type = IDXCMD_GC_DONE};
    c.u.gc_done.n = 2;
    c.u.gc_done.in = ids;
    CHECK_EQ(itx_cmd(&T, &c), IDX_OK);
    CHECK_EQ(T.res.id, 2);
    struct index_blob b;
    CHECK_EQ(itx_blob(&T, 100, &b), -ENOENT);
    CHECK_EQ(itx_cmd(&T, &c), IDX_OK); /* again: nothing left to remove */
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
    CHECK_EQ(itx_attach(&T, "v", "a2", NULL, &g2), IDX_OK);
    CHECK(g2 > GEN);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 4 * BS, 100, 0, 4 * BS)), IDX_FENCED);
    CHECK(blob_dead(100));
    struct index_piece p[2];
    CHECK_EQ(itx_map(&T, VOL, 0, 4 * BS, p, 2), 1);
    CHECK_EQ(p[0].kind, INDEX_HOLE);
    /* The blob is dead for good: naming it again is ESTALE. */
    CHECK_EQ(itx_write1(&T, itx_data(VOL, g2, 0, 4 * BS, 100, 0, 4 * BS)), IDX_ESTALE);
    CHECK_EQ(itx_write1(&T, itx_data(VOL, g2, 0, 4 * BS, 101, 0, 4 * BS)), IDX_OK);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* Out of range, unknown volume, unallocated blob id, contradicting blob
 * fields: refused per write, the rest of the batch applies. */
TEST(batch_per_write_results)
{
    CHECK(setup());
    struct idx_write w[5] = {
        itx_data(VOL, GEN, 0, 4 * BS, 100, 0, 8 * BS),
        itx_data(VOL, GEN, 4 * BS, 4 * BS, 100, 4 * BS, 8 * BS),
        itx_data(VOL, GEN, 254 * BS, 4 * BS, 102, 0, 4 * BS),
        itx_data(77, 1, 0, 4 * BS, 103, 0, 4 * BS),
        itx_data(VOL, GEN, 100 * BS, 4 * BS, 1ull << 40, 0, 4 * BS),
    };
    CHECK_EQ(itx_writes(&T, w, 5), IDX_OK);
    /* Sorted order: (VOL,0) (VOL,4) (VOL,100) (VOL,254) (77,0). */
    CHECK_EQ(T.res.n, 5);
    CHECK_EQ(T.res.st[0], IDX_OK);
    CHECK_EQ(T.res.st[1], IDX_OK);
    CHECK_EQ(T.res.st[2], IDX_EINVAL);
    CHECK_EQ(T.res.st[3], IDX_ERANGE);
    CHECK_EQ(T.res.st[4], IDX_ENOENT);
    CHECK_EQ(blob_refs(100), 2);
    CHECK(blob_dead(102));
    CHECK(blob_dead(103));
    struct idx_write bad = itx_data(VOL, GEN, 8 * BS, 4 * BS, 100, 0, 8 * BS);
    bad.blob_csum ^= 1;
    CHECK_EQ(itx_write1(&T, bad), IDX_EINVAL);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* Attach rules: another agent needs FORCE; stale detach is FENCED. */
TEST(attach_detach_rules)
{
    CHECK(setup());
    struct idxcmd c = {.type = IDXCMD_ATTACH};
    c.u.attach.name = idx_cstr("v");
    c.u.attach.agent = idx_cstr("a2");
    CHECK_EQ(itx_cmd(&T, &c), IDX_EBUSY);
    c.u.attach.flags = IDX_ATTACH_RO;
    CHECK_EQ(itx_cmd(&T, &c), IDX_OK);
    CHECK_EQ(T.res.generation, GEN);
    CHECK_EQ(T.res.size, 256 * BS);
    CHECK_EQ(itx_detach(&T, VOL, GEN, "a2"), IDX_FENCED);
    CHECK_EQ(itx_detach(&T, VOL, GEN + 5, "a1"), IDX_FENCED);
    CHECK_EQ(itx_detach(&T, VOL, GEN, "a1"), IDX_OK);
    CHECK_EQ(itx_detach(&T, VOL, GEN, "a1"), IDX_OK); /* idempotent */
    CHECK_EQ(itx_write1(&T, itx_zero(VOL, GEN, 0, BS, IDX_W_ZERO)), IDX_FENCED);
    c.u.attach.flags = 0;
    CHECK_EQ(itx_cmd(&T, &c), IDX_OK);
    CHECK_EQ(T.res.generation, GEN + 1);
    itx_close(&T);
}

/* Resize grows only; create refuses a taken name; blob ids never repeat. */
TEST(volume_admin)
{
    CHECK(setup());
    struct idxcmd c = {.type = IDXCMD_RESIZE_VOLUME};
    c.u.resize_volume.name = idx_cstr("v");
    c.u.resize_volume.size = 128 * BS;
    CHECK_EQ(itx_cmd(&T, &c), IDX_ERANGE);
    c.u.resize_volume.size = 512 * BS;
    CHECK_EQ(itx_cmd(&T, &c), IDX_OK);
    CHECK_EQ(itx_create(&T, "v", BS), IDX_EEXIST);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "nope", "s", NULL), IDX_ENOENT);
    struct idxcmd a = {.type = IDXCMD_ALLOC_BLOB_IDS};
    a.u.alloc_blob_ids.count = 10;
    CHECK_EQ(itx_cmd(&T, &a), IDX_OK);
    uint64_t first = T.res.id;
    CHECK_EQ(itx_cmd(&T, &a), IDX_OK);
    CHECK_EQ(T.res.id, first + 10);
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
    CHECK_EQ(itx_cmd(&T, &c), IDX_ENOENT);
    struct idxcmd r = {.type = IDXCMD_REGISTER_NODE};
    r.u.register_node.node_id = 9;
    r.u.register_node.addr = idx_cstr("10.0.0.9:7000");
    CHECK_EQ(itx_cmd(&T, &r), IDX_OK);
    CHECK_EQ(itx_cmd(&T, &c), IDX_OK);
    CHECK_EQ(itx_cmd(&T, &c), IDX_EEXIST);
    struct idxcmd rr = {.type = IDXCMD_REPLACE_REPLICA};
    rr.u.replace_replica.part_id = 1;
    rr.u.replace_replica.old_node = 3;
    rr.u.replace_replica.new_node = 9;
    CHECK_EQ(itx_cmd(&T, &rr), IDX_OK);
    CHECK_EQ(T.res.id, 2);
    CHECK_EQ(itx_cmd(&T, &rr), IDX_EINVAL); /* 3 is no longer a member */
    struct idxcmd s = {.type = IDXCMD_SET_NODE_STATE};
    s.u.set_node_state.node_id = 3;
    s.u.set_node_state.state = INDEX_NODE_RETIRED;
    CHECK_EQ(itx_cmd(&T, &s), IDX_OK);
    s.u.set_node_state.state = INDEX_NODE_UP;
    CHECK_EQ(itx_cmd(&T, &s), IDX_EINVAL);
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
        CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 2 * i * BS, BS, 100 + i, 0, BS)), IDX_OK);
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
    for (int i = 0; i < 4; i++) CHECK_EQ(itx_create(&T, names[i], BS), IDX_OK);
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
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, BS, 100, 0, BS)), IDX_OK);
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
    c.u.create_volume.name = idx_cstr("w");
    c.u.create_volume.size = BS;
    c.u.create_volume.block_size = BS;
    int len = idxcmd_encode(buf, sizeof(buf), &c);
    CHECK(len > 0);
    struct idx_result r;
    uint64_t at = T.next++;
    CHECK(fsm_apply(T.ix, at, buf, (size_t)len, &r) == 0);
    CHECK_EQ(r.status, IDX_OK);
    uint64_t d = itx_digest(&T);
    CHECK(fsm_apply(T.ix, at, buf, (size_t)len, &r) == 0);
    CHECK_EQ(r.status, IDX_SKIPPED);
    CHECK(fsm_apply(T.ix, at - 1, buf, (size_t)len, &r) == 0);
    CHECK_EQ(r.status, IDX_SKIPPED);
    CHECK_EQ(itx_digest(&T), d);
    /* Garbage bytes are applied as an EINVAL no-op, not a crash. */
    CHECK(fsm_apply(T.ix, T.next++, (const uint8_t *)"junk", 4, &r) == 0);
    CHECK_EQ(r.status, IDX_EINVAL);
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
    CHECK_EQ(itx_write1(&T, itx_data(VOL, GEN, 0, 8 * BS, 100, 0, 8 * BS)), IDX_OK);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), IDX_OK);
    struct { uint8_t *p; size_t len; } b = {NULL, 0};
    CHECK(index_read_begin(T.rd) == 0);
    CHECK(index_dump(T.rd, collect, &b) == 0);
    index_read_end(T.rd);
    uint64_t d = itx_digest(&T);
    struct itx o;
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/other", DIR);
    CHECK(itx_open(&o, dir, "test-cluster") == 0);
    CHECK(itx_create(&o, "junk", BS) == IDX_OK);
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
