/* test_fsm_shape.c: the state machine's commands for the cluster's shape
 * (issue 15): bounded deletes (REAP), the replicated size limit
 * (INDEX_LIMIT, ENOSPC), failure domains (NODE_DOMAIN), draining and
 * retiring servers, and replica moves with their checkpoints
 * (MOVE_REPLICA, MOVE_MARK).  Every scenario ends with the refcount and
 * layer audit of idxtest.h (C13). */
#include "tap.h"
#include "idxtest.h"

#include <string.h>

/* ---- Fixture ------------------------------------------------------------------ */

static struct itx T;
static char DIR[256];
static uint64_t next_blob = 1;

static bool setup(const char *name)
{
    snprintf(DIR, sizeof(DIR), "%s/%s", tap_tmpdir(), name);
    next_blob = 1;
    return itx_open(&T, DIR, "shape") == 0 && itx_cluster(&T) == 0;
}

/* ---- Helpers ------------------------------------------------------------------ */

/* N one-block extents at every other block of VOL (so no two are adjacent),
 * each its own blob, in WRITE_BATCHes of up to 1024. */
static bool fill(uint64_t vol, uint64_t gen, uint32_t n)
{
    static struct idxcmd_write w[IDXCMD_MAX_WRITES];
    for (uint32_t done = 0; done < n;) {
        uint32_t k = 0;
        for (; k < IDXCMD_MAX_WRITES && done < n; k++, done++) {
            uint64_t b = next_blob++;
            w[k] = itx_data(vol, gen, 2ull * done * BS, BS, b, 0, BS);
        }
        if (itx_writes(&T, w, k) != IDXCMD_ST_OK) return false;
        for (uint32_t i = 0; i < k; i++)
            if (T.res.st[i] != IDXCMD_ST_OK) return false;
    }
    return true;
}

static struct index_stats stats(void)
{
    struct index_stats st = {0};
    if (index_read_begin(T.rd) == 0) {
        index_stats(T.rd, &st);
        index_read_end(T.rd);
    }
    return st;
}

static int reap(uint32_t budget)
{
    struct idxcmd c = {.type = IDXCMD_REAP};
    c.u.reap.budget = budget;
    return itx_cmd(&T, &c);
}

/* The map of [0, LEN) of VOL into a malloc'd array; *N its pieces. */
static struct index_piece *map_all(uint64_t vol, uint64_t len, int *n)
{
    struct index_piece *p = malloc(65536 * sizeof(*p));
    *n = itx_map(&T, vol, 0, len, p, 65536);
    return p;
}

static bool same_map(const struct index_piece *a, int na, const struct index_piece *b, int nb)
{
    if (na != nb || na < 0) return false;
    for (int i = 0; i < na; i++)
        if (a[i].off != b[i].off || a[i].len != b[i].len || a[i].kind != b[i].kind ||
            a[i].blob_id != b[i].blob_id || a[i].blob_off != b[i].blob_off)
            return false;
    return true;
}

static int node_cmd(uint16_t type, uint64_t id, uint8_t state)
{
    struct idxcmd c = {.type = type};
    c.u.set_node_state.node_id = id;
    c.u.set_node_state.state = state;
    return itx_cmd(&T, &c);
}

static int register_node(uint64_t id)
{
    struct idxcmd c = {.type = IDXCMD_REGISTER_NODE};
    c.u.register_node.node_id = id;
    c.u.register_node.addr = idxcmd_cstr("127.0.0.1:7100");
    c.u.register_node.capacity = 1ull << 40;
    return itx_cmd(&T, &c);
}

static int move(uint32_t part, uint64_t old_node, uint64_t new_node, uint8_t reason)
{
    struct idxcmd c = {.type = IDXCMD_MOVE_REPLICA};
    c.u.move_replica.part_id = part;
    c.u.move_replica.old_node = old_node;
    c.u.move_replica.new_node = new_node;
    c.u.move_replica.reason = reason;
    return itx_cmd(&T, &c);
}

static int mark(uint32_t part, uint64_t node, uint64_t cursor, uint64_t bytes, bool done)
{
    struct idxcmd c = {.type = IDXCMD_MOVE_MARK};
    c.u.move_mark.part_id = part;
    c.u.move_mark.node = node;
    c.u.move_mark.cursor = cursor;
    c.u.move_mark.bytes_done = bytes;
    c.u.move_mark.done = done;
    return itx_cmd(&T, &c);
}

/* ---- Bounded deletes ------------------------------------------------------------ */

#define BIG (3 * IDXCMD_REAP_BUDGET + 100)

/* Deleting a volume much bigger than one entry's budget frees at most the
 * budget at once and leaves its layer to REAP; each REAP frees at most its
 * budget; in the end every blob is garbage and nothing else is left. */
TEST(delete_volume_in_steps)
{
    CHECK(setup("delete"));
    uint64_t vol, gen;
    CHECK_EQ(itx_create(&T, "big", 1ull << 40), IDXCMD_ST_OK);
    CHECK_EQ(itx_attach(&T, "big", "a", &vol, &gen), IDXCMD_ST_OK);
    CHECK(fill(vol, gen, BIG));
    CHECK_EQ(itx_detach(&T, vol, gen, "a"), IDXCMD_ST_OK);
    CHECK_EQ(itx_assign(&T, "big", "", "", 0), IDXCMD_ST_OK); /* unassigned: deletable */
    CHECK_EQ(itx_delete(&T, "big"), IDXCMD_ST_OK);
    struct index_stats st = stats();
    CHECK_EQ(st.volumes, 0);
    CHECK_EQ(st.reap, 1);
    CHECK_EQ(st.extents, BIG - IDXCMD_REAP_BUDGET);
    CHECK_EQ(st.gc, IDXCMD_REAP_BUDGET);
    CHECK_EQ(itx_audit(&T), 0);
    /* The name is free at once. */
    CHECK_EQ(itx_create(&T, "big", 1ull << 30), IDXCMD_ST_OK);
    int steps = 0;
    uint64_t before = st.extents;
    do {
        CHECK_EQ(reap(1000), IDXCMD_ST_OK);
        st = stats();
        CHECK(before - st.extents <= 1000);
        before = st.extents;
        steps++;
    } while (T.res.id && steps < 100);
    CHECK_EQ(T.res.id, 0);
    CHECK(steps >= (int)((BIG - IDXCMD_REAP_BUDGET) / 1000));
    st = stats();
    CHECK_EQ(st.extents, 0);
    CHECK_EQ(st.layers, 1); /* the new "big" */
    CHECK_EQ(st.gc, BIG);
    CHECK_EQ(itx_audit(&T), 0);
    /* An empty reap table: REAP is a no-op. */
    CHECK_EQ(reap(10), IDXCMD_ST_OK);
    CHECK_EQ(T.res.id, 0);
    itx_close(&T);
}

/* A big snapshot layer whose last other reader is the volume on it merges
 * into the volume's top in steps once the snapshot is deleted; the volume
 * reads the same map after every step, its own writes keep masking the
 * merged extents, and a write during the merge wins.  (A clone's snapshot
 * cannot be deleted until the clone is flattened, so this is the fold.) */
TEST(merge_into_child_in_steps)
{
    CHECK(setup("merge"));
    uint64_t vol, gen;
    CHECK_EQ(itx_create(&T, "v", 1ull << 40), IDXCMD_ST_OK);
    CHECK_EQ(itx_attach(&T, "v", "a", &vol, &gen), IDXCMD_ST_OK);
    CHECK(fill(vol, gen, BIG));
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s", NULL), IDXCMD_ST_OK);
    /* The volume overwrites a few blocks above the snapshot. */
    for (uint64_t k = 0; k < 8; k++)
        CHECK_EQ(itx_write1(&T, itx_data(vol, gen, 2 * k * 100 * BS, BS, next_blob++, 0, BS)),
                 IDXCMD_ST_OK);
    uint64_t len = 2ull * BIG * BS;
    int n0;
    struct index_piece *m0 = map_all(vol, len, &n0);
    CHECK(n0 > (int)BIG);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_DELETE, "v", "s", NULL), IDXCMD_ST_OK);
    CHECK_EQ(stats().reap, 1);
    CHECK_EQ(itx_audit(&T), 0);
    int n;
    struct index_piece *m = map_all(vol, len, &n);
    CHECK(same_map(m0, n0, m, n));
    free(m);
    int steps = 0;
    bool wrote = false;
    uint64_t left;
    do {
        CHECK_EQ(reap(300), IDXCMD_ST_OK);
        left = T.res.id;
        if (!wrote && left) {
            /* Mid-merge, the volume writes over a block still to merge. */
            uint64_t off = len - 2 * BS, b = next_blob++;
            CHECK_EQ(itx_write1(&T, itx_data(vol, gen, off, BS, b, 0, BS)), IDXCMD_ST_OK);
            for (int i = 0; i < n0; i++)
                if (m0[i].off == off) {
                    m0[i].blob_id = b;
                    m0[i].layer = 0;
                }
            wrote = true;
        }
        m = map_all(vol, len, &n);
        CHECK(same_map(m0, n0, m, n));
        free(m);
        steps++;
    } while (left && steps < 200);
    CHECK(wrote);
    CHECK_EQ(left, 0);
    CHECK(steps > 3);
    struct index_stats st = stats();
    CHECK_EQ(st.layers, 1); /* the volume's top, bottom of its chain now */
    CHECK_EQ(st.reap, 0);
    CHECK_EQ(itx_audit(&T), 0);
    free(m0);
    itx_close(&T);
}

/* A snapshot whose only other reader is a volume being deleted waits for
 * it rather than merging into it; both go, in steps, and nothing leaks. */
TEST(layer_waits_for_dying_child)
{
    CHECK(setup("dying"));
    uint64_t vol, gen;
    CHECK_EQ(itx_create(&T, "v", 1ull << 40), IDXCMD_ST_OK);
    CHECK_EQ(itx_attach(&T, "v", "a", &vol, &gen), IDXCMD_ST_OK);
    CHECK(fill(vol, gen, BIG / 2));
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s", NULL), IDXCMD_ST_OK);
    CHECK(fill(vol, gen, BIG / 2)); /* rewrites every block: the top has as many */
    CHECK_EQ(itx_detach(&T, vol, gen, "a"), IDXCMD_ST_OK);
    CHECK_EQ(itx_assign(&T, "v", "", "", 0), IDXCMD_ST_OK); /* unassigned: deletable */
    CHECK_EQ(itx_delete(&T, "v"), IDXCMD_ST_OK);
    struct index_stats st = stats();
    CHECK_EQ(st.reap, 2);
    CHECK_EQ(itx_audit(&T), 0);
    int steps = 0;
    do {
        CHECK_EQ(reap(2000), IDXCMD_ST_OK);
        CHECK_EQ(itx_audit(&T), 0);
        steps++;
    } while (T.res.id && steps < 100);
    st = stats();
    CHECK_EQ(st.extents, 0);
    CHECK_EQ(st.layers, 0);
    CHECK_EQ(st.gc, st.blobs);
    CHECK_EQ(st.blobs, 2 * (BIG / 2));
    itx_close(&T);
}

/* ---- The size limit ---------------------------------------------------------------- */

/* With the limit below the tables' size, new data, volumes, snapshots and
 * clones are ENOSPC and nothing of them is stored (not even the blob);
 * trims, zeroes, deletes and REAP go on; lifting the limit lets data in. */
TEST(index_limit_refuses_growth_only)
{
    CHECK(setup("limit"));
    uint64_t vol, gen;
    CHECK_EQ(itx_create(&T, "v", 1ull << 30), IDXCMD_ST_OK);
    CHECK_EQ(itx_attach(&T, "v", "a", &vol, &gen), IDXCMD_ST_OK);
    CHECK(fill(vol, gen, 500));
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s", NULL), IDXCMD_ST_OK);
    struct index_stats st = stats();
    struct idxcmd c = {.type = IDXCMD_INDEX_LIMIT};
    c.u.index_limit.max_pages = st.pages;
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_OK);
    struct index_meta m;
    CHECK(index_read_begin(T.rd) == 0);
    CHECK_EQ(index_meta_get(T.rd, &m), 0);
    index_read_end(T.rd);
    CHECK_EQ(m.limit_pages, st.pages);
    uint64_t b = next_blob++;
    CHECK_EQ(itx_write1(&T, itx_data(vol, gen, 0, BS, b, 0, BS)), IDXCMD_ST_ENOSPC);
    struct index_blob bl;
    CHECK_EQ(itx_blob(&T, b, &bl), -ENOENT);
    CHECK_EQ(itx_create(&T, "w", 1ull << 30), IDXCMD_ST_ENOSPC);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, "v", "s2", NULL), IDXCMD_ST_ENOSPC);
    CHECK_EQ(itx_snap(&T, IDXCMD_CLONE, "v", "s", "c"), IDXCMD_ST_ENOSPC);
    /* What frees space still applies. */
    CHECK_EQ(itx_write1(&T, itx_zero(vol, gen, 0, 64 * BS, IDXCMD_W_TRIM)), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_zero(vol, gen, 128 * BS, 8 * BS, IDXCMD_W_ZERO)), IDXCMD_ST_OK);
    CHECK_EQ(itx_snap(&T, IDXCMD_SNAPSHOT_DELETE, "v", "s", NULL), IDXCMD_ST_OK);
    CHECK_EQ(reap(100), IDXCMD_ST_OK);
    CHECK_EQ(itx_audit(&T), 0);
    c.u.index_limit.max_pages = 0;
    CHECK_EQ(itx_cmd(&T, &c), IDXCMD_ST_OK);
    CHECK_EQ(itx_write1(&T, itx_data(vol, gen, 0, BS, next_blob++, 0, BS)), IDXCMD_ST_OK);
    CHECK_EQ(itx_create(&T, "w", 1ull << 30), IDXCMD_ST_OK);
    itx_close(&T);
}

/* ---- Nodes and moves --------------------------------------------------------------- */

/* NODE_DOMAIN sets a registered node's labels (ENOENT for others); a
 * draining node takes no new partition and no move; a node still in a
 * partition cannot retire (EBUSY), and retirement is final. */
TEST(node_domain_drain_retire)
{
    CHECK(setup("nodes"));
    struct idxcmd d = {.type = IDXCMD_NODE_DOMAIN};
    d.u.node_domain.node_id = 2;
    d.u.node_domain.zone = idxcmd_cstr("z1");
    d.u.node_domain.rack = idxcmd_cstr("r2");
    d.u.node_domain.host = idxcmd_cstr("h3");
    CHECK_EQ(itx_cmd(&T, &d), IDXCMD_ST_OK);
    struct index_node n;
    CHECK(index_read_begin(T.rd) == 0);
    CHECK_EQ(index_node_get(T.rd, 2, &n), 0);
    index_read_end(T.rd);
    CHECK(!strcmp(n.zone, "z1") && !strcmp(n.rack, "r2") && !strcmp(n.host, "h3"));
    CHECK(!strcmp(n.addr, "127.0.0.1:7000"));
    d.u.node_domain.node_id = 99;
    CHECK_EQ(itx_cmd(&T, &d), IDXCMD_ST_ENOENT);

    CHECK_EQ(register_node(4), IDXCMD_ST_OK);
    CHECK_EQ(register_node(5), IDXCMD_ST_OK);
    CHECK_EQ(node_cmd(IDXCMD_SET_NODE_STATE, 4, INDEX_NODE_DRAINING), IDXCMD_ST_OK);
    CHECK_EQ(move(1, 3, 4, IDXCMD_MOVE_REBALANCE), IDXCMD_ST_EINVAL);
    struct idxcmd p = {.type = IDXCMD_CREATE_PARTITION};
    p.u.create_partition.part_id = 2;
    p.u.create_partition.nodes[0] = 1;
    p.u.create_partition.nodes[1] = 2;
    p.u.create_partition.nodes[2] = 4;
    CHECK_EQ(itx_cmd(&T, &p), IDXCMD_ST_EINVAL);
    /* Node 3 is in partition 1: it cannot go before it is moved off. */
    CHECK_EQ(node_cmd(IDXCMD_SET_NODE_STATE, 3, INDEX_NODE_RETIRED), IDXCMD_ST_EBUSY);
    CHECK_EQ(move(1, 3, 5, IDXCMD_MOVE_DRAIN), IDXCMD_ST_OK);
    CHECK_EQ(node_cmd(IDXCMD_SET_NODE_STATE, 3, INDEX_NODE_RETIRED), IDXCMD_ST_OK);
    CHECK_EQ(node_cmd(IDXCMD_SET_NODE_STATE, 3, INDEX_NODE_UP), IDXCMD_ST_EINVAL);
    CHECK_EQ(node_cmd(IDXCMD_SET_NODE_STATE, 4, INDEX_NODE_RETIRED), IDXCMD_ST_OK);
    itx_close(&T);
}

/* MOVE_REPLICA swaps a member (epoch + 1) and opens a move record;
 * MOVE_MARK checkpoints it (forward only) and closes it; moving the
 * filling member away again drops its record. */
TEST(move_and_checkpoint)
{
    CHECK(setup("moves"));
    CHECK_EQ(register_node(4), IDXCMD_ST_OK);
    CHECK_EQ(register_node(5), IDXCMD_ST_OK);
    CHECK_EQ(move(1, 2, 2, IDXCMD_MOVE_LOST), -EINVAL); /* the codec refuses it */
    CHECK_EQ(move(1, 9, 4, IDXCMD_MOVE_LOST), IDXCMD_ST_EINVAL);  /* not a member */
    CHECK_EQ(move(1, 2, 3, IDXCMD_MOVE_LOST), IDXCMD_ST_EINVAL);  /* already one */
    CHECK_EQ(move(2, 2, 4, IDXCMD_MOVE_LOST), IDXCMD_ST_ENOENT);  /* no partition 2 */
    CHECK_EQ(move(1, 2, 4, IDXCMD_MOVE_LOST), IDXCMD_ST_OK);
    CHECK_EQ(T.res.id, 2); /* epoch */
    struct index_move mv;
    struct index_part pt;
    CHECK(index_read_begin(T.rd) == 0);
    CHECK_EQ(index_move_get(T.rd, 1, 4, &mv), 0);
    CHECK_EQ(index_part_get(T.rd, 1, &pt), 0);
    index_read_end(T.rd);
    CHECK(mv.from == 2 && mv.reason == IDXCMD_MOVE_LOST && mv.cursor == 0 && mv.bytes_done == 0);
    CHECK(pt.nodes[1] == 4 && pt.epoch == 2);
    CHECK_EQ(mark(1, 4, 500, 1 << 20, false), IDXCMD_ST_OK);
    CHECK_EQ(mark(1, 4, 400, 2 << 20, false), IDXCMD_ST_EINVAL); /* backwards */
    CHECK_EQ(mark(1, 5, 600, 2 << 20, false), IDXCMD_ST_ENOENT);
    CHECK(index_read_begin(T.rd) == 0);
    CHECK_EQ(index_move_get(T.rd, 1, 4, &mv), 0);
    index_read_end(T.rd);
    CHECK(mv.cursor == 500 && mv.bytes_done == 1 << 20);
    /* The filling member is lost in turn: its record goes with it. */
    CHECK_EQ(move(1, 4, 5, IDXCMD_MOVE_LOST), IDXCMD_ST_OK);
    struct index_move list[4];
    uint32_t n;
    CHECK(index_read_begin(T.rd) == 0);
    CHECK_EQ(index_move_list(T.rd, 0, 0, list, 4, &n), 0);
    index_read_end(T.rd);
    CHECK(n == 1 && list[0].node == 5 && list[0].from == 4 && list[0].cursor == 0);
    CHECK_EQ(mark(1, 5, 100, 10, true), IDXCMD_ST_OK);
    CHECK_EQ(stats().moves, 0);
    itx_close(&T);
}
