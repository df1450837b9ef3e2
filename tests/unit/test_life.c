/* test_life.c: the data-lifecycle commands at the index (fsm_life.c), one
 * behaviour per test: consistency groups (all or none, barriers fenced by
 * generation), rollback (detached only; newer snapshots stay), flatten
 * (fills only the clone's gaps, then cuts it loose; its parent snapshot is
 * busy until then), and the import session (only onto exactly its base;
 * an abort leaves the volume as it was).  Every test ends with the
 * reference and usage audits (C12, C13). */
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

static int data(uint64_t vol, uint64_t gen, uint64_t blk, uint32_t n, uint64_t blob)
{
    return itx_write1(&T, itx_data(vol, gen, blk * BS, n * BS, blob, 0, n * BS));
}

/* Block BLK of VOL reads blob B's block BB (B 0: zeroes). */
static bool reads(uint64_t vol, uint64_t blk, uint64_t b, uint64_t bb)
{
    struct index_piece p;
    if (itx_map(&T, vol, blk * BS, BS, &p, 1) != 1) return false;
    if (p.kind != INDEX_DATA) return b == 0;
    return p.blob_id == b && p.blob_off == bb * BS;
}

static bool get_vol(const char *name, struct index_vol *v)
{
    index_read_begin(T.rd);
    int rc = index_vol_by_name(T.rd, name, strlen(name), v);
    index_read_end(T.rd);
    return rc == 0;
}

static bool get_snap(uint64_t vol, const char *name, struct index_snap *s)
{
    struct index_snap all[8];
    uint32_t n = 0;
    index_read_begin(T.rd);
    index_snap_list(T.rd, vol, "", 0, all, 8, &n);
    index_read_end(T.rd);
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(all[i].name, name)) {
            *s = all[i];
            return true;
        }
    return false;
}

static int group(const char *snap, const struct idxcmd_group_vol *g, uint8_t n)
{
    struct idxcmd c = {.type = IDXCMD_SNAPSHOT_GROUP};
    c.u.snapshot_group.snap = idxcmd_cstr(snap);
    c.u.snapshot_group.n = n;
    c.u.snapshot_group.in = g;
    return itx_cmd(&T, &c);
}

static int rollback(const char *vol, const char *snap)
{
    struct idxcmd c = {.type = IDXCMD_ROLLBACK};
    c.u.rollback.vol = idxcmd_cstr(vol);
    c.u.rollback.snap = idxcmd_cstr(snap);
    return itx_cmd(&T, &c);
}

static int flatten_start(const char *vol)
{
    struct idxcmd c = {.type = IDXCMD_FLATTEN_START};
    c.u.flatten_start.vol = idxcmd_cstr(vol);
    return itx_cmd(&T, &c);
}

static int fill(uint64_t vol, uint64_t layer, uint64_t cursor, uint64_t blob, uint32_t blob_blocks,
                const struct idxcmd_fill *f, uint32_t n)
{
    struct idxcmd c = {.type = IDXCMD_FLATTEN_FILL};
    c.u.flatten_fill = (typeof(c.u.flatten_fill)){.vol_id = vol, .layer = layer,
                                                  .cursor = cursor, .n = n, .in = f};
    if (n) {
        c.u.flatten_fill.blob_id = blob;
        c.u.flatten_fill.partition = 1;
        c.u.flatten_fill.blob_len = blob_blocks * BS;
        c.u.flatten_fill.blob_csum = blob * 0x9E3779B97F4A7C15ull;
    }
    return itx_cmd(&T, &c);
}

static int flatten_done(uint64_t vol, uint64_t layer)
{
    struct idxcmd c = {.type = IDXCMD_FLATTEN_DONE};
    c.u.flatten_done.vol_id = vol;
    c.u.flatten_done.layer = layer;
    return itx_cmd(&T, &c);
}

static int import_begin(const char *vol, const char *from, uint64_t size)
{
    struct idxcmd c = {.type = IDXCMD_IMPORT_BEGIN};
    c.u.import_begin.vol = idxcmd_cstr(vol);
    c.u.import_begin.agent = idxcmd_cstr("blockd-import");
    c.u.import_begin.from = idxcmd_cstr(from);
    c.u.import_begin.size = size;
    return itx_cmd(&T, &c);
}

static int import_end(const char *vol, uint64_t gen, bool commit, const char *snap,
                      uint64_t origin)
{
    struct idxcmd c = {.type = IDXCMD_IMPORT_END};
    c.u.import_end.vol = idxcmd_cstr(vol);
    c.u.import_end.agent = idxcmd_cstr("blockd-import");
    c.u.import_end.generation = gen;
    c.u.import_end.flags = commit ? IDXCMD_IMPORT_COMMIT : 0;
    c.u.import_end.snap = idxcmd_cstr(snap);
    c.u.import_end.origin = origin;
    return itx_cmd(&T, &c);
}

/* ---- Consistency groups -------------------------------------------------------- */

/* One entry snapshots every volume of the group under one name. */
TEST(group_snapshots_all)
{
    CHECK(setup());
    CHECK_EQ(itx_create(&T, "w", 64 * BS), 0);
    CHECK_EQ(data(VOL, GEN, 0, 2, 100), 0);
    struct idxcmd_group_vol g[2] = {{idxcmd_cstr("v"), 0, GEN}, {idxcmd_cstr("w"), 0, 0}};
    uint64_t before = T.next;
    CHECK_EQ(group("cg", g, 2), 0);
    CHECK_EQ(T.next, before + 1);
    struct index_vol v, w;
    struct index_snap sv, sw;
    CHECK(get_vol("v", &v) && get_vol("w", &w));
    CHECK(get_snap(v.id, "cg", &sv) && get_snap(w.id, "cg", &sw));
    CHECK(sv.created_index == sw.created_index && !(sv.flags & INDEX_SNAP_BARRIER));
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* If one volume cannot take it (missing, name taken), none does; the
 * result says which one refused. */
TEST(group_all_or_none)
{
    CHECK(setup());
    CHECK_EQ(itx_create(&T, "w", 64 * BS), 0);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "w", "cg", NULL), 0);
    struct idxcmd_group_vol g[2] = {{idxcmd_cstr("v"), 0, GEN}, {idxcmd_cstr("w"), 0, 0}};
    uint64_t d = itx_digest(&T);
    CHECK_EQ(group("cg", g, 2), IDXCMD_ST_EEXIST);
    CHECK_EQ(T.res.id, 2);
    g[1].vol = idxcmd_cstr("nope");
    CHECK_EQ(group("cg2", g, 2), IDXCMD_ST_ENOENT);
    struct index_snap s;
    CHECK(!get_snap(VOL, "cg", &s) && !get_snap(VOL, "cg2", &s));
    /* Only the applied index moved: the digest covers it, so compare maps. */
    CHECK(d != 0);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* A barrier counts only from the attach that is still current: an agent
 * that has been fenced since (a newer generation) makes the group refuse;
 * the current one's barrier marks the snapshot. */
TEST(group_barrier_generation)
{
    CHECK(setup());
    struct idxcmd_group_vol g = {idxcmd_cstr("v"), GEN, GEN};
    uint64_t vol2, gen2;
    CHECK_EQ(itx_attach(&T, "v", "a2", &vol2, &gen2), 0); /* a takeover: GEN is fenced */
    CHECK_EQ(group("s1", &g, 1), IDXCMD_ST_FENCED);
    g.generation = g.seen = gen2;
    CHECK_EQ(group("s1", &g, 1), 0);
    struct index_snap s;
    CHECK(get_snap(VOL, "s1", &s) && (s.flags & INDEX_SNAP_BARRIER));
    itx_close(&T);
}

/* The proposer decided on barriers from the attachment it saw: an entry
 * that saw none while an agent holds the volume read-write (a follower
 * whose index lagged the attach), or saw another generation (fenced or
 * detached since), is refused ESTALE and changes nothing; seen right, with
 * or without a barrier, it applies. */
TEST(group_seen_attachment)
{
    CHECK(setup());
    struct idxcmd_group_vol g = {idxcmd_cstr("v"), 0, 0};
    struct index_snap s;
    CHECK_EQ(group("s1", &g, 1), IDXCMD_ST_ESTALE); /* attached at GEN, seen as not */
    CHECK_EQ(T.res.id, 1);
    g.seen = GEN + 1;
    CHECK_EQ(group("s1", &g, 1), IDXCMD_ST_ESTALE);
    CHECK(!get_snap(VOL, "s1", &s));
    g.seen = GEN;                                 /* seen right, its barrier failed */
    CHECK_EQ(group("s1", &g, 1), 0);
    CHECK(get_snap(VOL, "s1", &s) && !(s.flags & INDEX_SNAP_BARRIER));
    CHECK_EQ(itx_detach(&T, VOL, GEN, "a1"), 0);
    CHECK_EQ(group("s2", &g, 1), IDXCMD_ST_ESTALE); /* detached since it looked */
    g.seen = 0;
    CHECK_EQ(group("s2", &g, 1), 0);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* ---- Rollback ------------------------------------------------------------------------ */

/* A detached volume rolls back to a snapshot: its data and size are the
 * snapshot's, later snapshots stay, what only the old top held is freed. */
TEST(rollback_detached)
{
    CHECK(setup());
    CHECK_EQ(data(VOL, GEN, 0, 2, 100), 0);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), 0);
    CHECK_EQ(data(VOL, GEN, 0, 1, 101), 0);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s2", NULL), 0);
    CHECK_EQ(data(VOL, GEN, 1, 1, 102), 0);
    struct idxcmd rs = {.type = IDXCMD_RESIZE_VOLUME};
    rs.u.resize_volume.name = idxcmd_cstr("v");
    rs.u.resize_volume.size = 512 * BS;
    CHECK_EQ(itx_cmd(&T, &rs), 0);
    CHECK_EQ(rollback("v", "s1"), IDXCMD_ST_EBUSY); /* attached */
    CHECK_EQ(itx_detach(&T, VOL, GEN, "a1"), 0);
    CHECK_EQ(rollback("v", "nope"), IDXCMD_ST_ENOENT);
    CHECK_EQ(rollback("v", "s1"), 0);
    CHECK(reads(VOL, 0, 100, 0) && reads(VOL, 1, 100, 1));
    struct index_vol v;
    struct index_snap s;
    CHECK(get_vol("v", &v) && v.size == 256 * BS);
    CHECK(get_snap(VOL, "s2", &s));
    struct index_blob b;
    CHECK(itx_blob(&T, 102, &b) == 0 && (b.flags & INDEX_BLOB_DEAD));
    /* And forward again to s2. */
    CHECK_EQ(rollback("v", "s2"), 0);
    CHECK(reads(VOL, 0, 101, 0) && reads(VOL, 1, 100, 1));
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* ---- Flatten --------------------------------------------------------------------------- */

/* A volume that is no clone cannot be flattened. */
TEST(flatten_not_a_clone)
{
    CHECK(setup());
    CHECK_EQ(flatten_start("v"), IDXCMD_ST_EINVAL);
    CHECK_EQ(flatten_start("nope"), IDXCMD_ST_ENOENT);
    itx_close(&T);
}

/* Fills go only where the clone has written nothing; DONE refuses while
 * inherited data still shows, then cuts the clone loose: its parent
 * snapshot, busy until then, can go, and the clone reads the same. */
TEST(flatten_fills_gaps_then_cuts)
{
    CHECK(setup());
    CHECK_EQ(data(VOL, GEN, 0, 4, 100), 0);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), 0);
    CHECK_EQ(itx_snap(&T, IDXCMD_CLONE, "v", "s1", "c"), 0);
    uint64_t cv, cg;
    CHECK_EQ(itx_attach(&T, "c", "a2", &cv, &cg), 0);
    CHECK_EQ(data(cv, cg, 1, 1, 101), 0); /* the clone's own block 1 */
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_DELETE, "v", "s1", NULL), IDXCMD_ST_EBUSY);
    struct index_vol c;
    CHECK(get_vol("c", &c));
    CHECK_EQ(flatten_start("c"), 0);
    /* The copy of blocks 0-3 (read before the clone wrote block 1). */
    struct idxcmd_fill f = {0, 4 * BS, 0};
    CHECK_EQ(flatten_done(cv, c.top_layer), IDXCMD_ST_EINVAL); /* not copied yet */
    CHECK_EQ(fill(cv, c.top_layer, 4 * BS, 200, 4, &f, 1), 0);
    CHECK_EQ(T.res.id, 3 * BS);
    CHECK(reads(cv, 0, 200, 0) && reads(cv, 1, 101, 0) && reads(cv, 3, 200, 3));
    CHECK_EQ(itx_audit(&T), 0);
    CHECK_EQ(flatten_done(cv, c.top_layer), 0);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_DELETE, "v", "s1", NULL), 0);
    CHECK(reads(cv, 0, 200, 0) && reads(cv, 1, 101, 0) && reads(cv, 2, 200, 2));
    CHECK(reads(VOL, 0, 100, 0));
    struct index_flatten fl;
    index_read_begin(T.rd);
    CHECK_EQ(index_flatten_get(T.rd, cv, &fl), -ENOENT);
    index_read_end(T.rd);
    CHECK_EQ(flatten_start("c"), IDXCMD_ST_EINVAL); /* a clone no more */
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* A fill for a layer that is no longer the clone's own bottom (it took a
 * snapshot, then was rolled back) is refused as stale; the cursor and the
 * bytes copied are the job's progress. */
TEST(flatten_stale_target_and_progress)
{
    CHECK(setup());
    CHECK_EQ(data(VOL, GEN, 0, 4, 100), 0);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s1", NULL), 0);
    CHECK_EQ(itx_snap(&T, IDXCMD_CLONE, "v", "s1", "c"), 0);
    struct index_vol c;
    CHECK(get_vol("c", &c));
    CHECK_EQ(flatten_start("c"), 0);
    CHECK_EQ(fill(c.id, c.top_layer, 2 * BS, 0, 0, NULL, 0), 0); /* a window with nothing */
    struct idxcmd_fill f = {2 * BS, 2 * BS, 0};
    CHECK_EQ(fill(c.id, c.top_layer, 4 * BS, 200, 2, &f, 1), 0);
    struct index_flatten fl;
    index_read_begin(T.rd);
    CHECK_EQ(index_flatten_get(T.rd, c.id, &fl), 0);
    index_read_end(T.rd);
    CHECK(fl.cursor == 4 * BS && fl.copied_bytes == 2 * BS);
    CHECK_EQ(fill(c.id, c.top_layer + 100, 4 * BS, 201, 2, &f, 1), IDXCMD_ST_ESTALE);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* ---- Import ----------------------------------------------------------------------------- */

/* A full import needs an empty volume without snapshots; it attaches it
 * for the importer (fencing every agent), takes its writes, and COMMIT
 * takes the stream's snapshot with its origin and detaches. */
TEST(import_full_commit)
{
    CHECK(setup());
    CHECK_EQ(itx_create(&T, "n", 64 * BS), 0);
    CHECK_EQ(import_begin("v", "", 256 * BS), IDXCMD_ST_EBUSY); /* attached */
    CHECK_EQ(import_begin("n", "", 32 * BS), IDXCMD_ST_ERANGE);  /* would shrink */
    CHECK_EQ(import_begin("n", "", 128 * BS), 0);
    uint64_t nv = T.res.id, gen = T.res.generation;
    struct index_vol n;
    CHECK(get_vol("n", &n) && n.size == 128 * BS && n.attach_mode == INDEX_ATTACH_RW);
    CHECK_EQ(data(nv, gen, 100, 2, 300), 0);
    CHECK_EQ(import_end("n", gen + 1, true, "d1", 0x77), IDXCMD_ST_FENCED);
    CHECK_EQ(import_end("n", gen, true, "d1", 0x77), 0);
    struct index_snap s;
    CHECK(get_vol("n", &n) && n.attach_mode == INDEX_ATTACH_NONE);
    CHECK(get_snap(nv, "d1", &s) && s.origin == 0x77);
    CHECK(reads(nv, 100, 300, 0));
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* An incremental import lands only on a volume that still is exactly its
 * base snapshot; an abort rolls it back to that base and detaches. */
TEST(import_diff_abort)
{
    CHECK(setup());
    CHECK_EQ(data(VOL, GEN, 0, 2, 100), 0);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "d1", NULL), 0);
    CHECK_EQ(itx_detach(&T, VOL, GEN, "a1"), 0);
    CHECK_EQ(import_begin("v", "d0", 256 * BS), IDXCMD_ST_ENOENT);
    CHECK_EQ(import_begin("v", "", 256 * BS), IDXCMD_ST_ESTALE); /* not empty */
    CHECK_EQ(import_begin("v", "d1", 256 * BS), 0);
    uint64_t gen = T.res.generation;
    CHECK_EQ(data(VOL, gen, 0, 1, 101), 0);
    CHECK_EQ(import_end("v", gen, false, "d1", 0), 0);
    CHECK(reads(VOL, 0, 100, 0));
    struct index_vol v;
    CHECK(get_vol("v", &v) && v.attach_mode == INDEX_ATTACH_NONE);
    /* Written since d1: no incremental import onto it. */
    uint64_t vv, g2;
    CHECK_EQ(itx_attach(&T, "v", "a1", &vv, &g2), 0);
    CHECK_EQ(data(VOL, g2, 5, 1, 102), 0);
    CHECK_EQ(itx_detach(&T, VOL, g2, "a1"), 0);
    CHECK_EQ(import_begin("v", "d1", 256 * BS), IDXCMD_ST_ESTALE);
    CHECK_EQ(itx_audit(&T), 0);
    itx_close(&T);
}

/* ---- Resize -------------------------------------------------------------------------- */

/* Growing an attached volume is allowed; the new size is what the next
 * attach (read-write, or the agent's look-up) reports, which is how an
 * agent learns it (README "Resize"). */
TEST(resize_attached_seen_by_next_attach)
{
    CHECK(setup());
    struct idxcmd rs = {.type = IDXCMD_RESIZE_VOLUME};
    rs.u.resize_volume.name = idxcmd_cstr("v");
    rs.u.resize_volume.size = 1024 * BS;
    CHECK_EQ(itx_cmd(&T, &rs), 0);
    struct idxcmd info = {.type = IDXCMD_ATTACH};
    info.u.attach.name = idxcmd_cstr("v");
    info.u.attach.agent = idxcmd_cstr("a1");
    info.u.attach.flags = IDXCMD_ATTACH_RO;
    CHECK_EQ(itx_cmd(&T, &info), 0);
    CHECK_EQ(T.res.size, 1024 * BS);
    uint64_t vol, gen;
    CHECK_EQ(itx_attach(&T, "v", "a1", &vol, &gen), 0);
    CHECK(T.res.size == 1024 * BS && gen == GEN + 1);
    /* A write into the grown part lands. */
    CHECK_EQ(data(vol, gen, 1000, 1, 100), 0);
    CHECK(reads(vol, 1000, 100, 0));
    rs.u.resize_volume.size = 512 * BS; /* never shrinks */
    CHECK_EQ(itx_cmd(&T, &rs), IDXCMD_ST_ERANGE);
    itx_close(&T);
}
