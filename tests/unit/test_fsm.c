/* test_fsm.c: the state machine against a plain model, and apply's
 * idempotence and determinism (defends C9-C13, C16).
 *
 * The model is a byte-array stand-in: per volume and per snapshot, one
 * stamp per 4 KiB block, (blob id << 8 | block within the blob), 0 for
 * zeroes.  A seeded random run of thousands of operations (batched writes,
 * zeroes, trims, fenced writes from stale generations, snapshots, snapshot
 * deletes, clones, volume deletes, takeovers) applies each to both and
 * compares full-volume maps as it goes; at the end every snapshot is cloned
 * and compared (a snapshot never changes, C12), the refcount audit runs
 * (C13), and after deleting everything no extent or layer is left and
 * every blob is in gc.  The command log of the run is then replayed into
 * fresh indexes, one entry per txn and in batches, and twice: the digests
 * must all be equal.  Replay a failure with TEST_SEED=<seed>. */
#include "tap.h"
#include "idxtest.h"
#include "base/util.h"

#include <string.h>

/* ---- Model -------------------------------------------------------------------- */

#define NBLK 64
#define MAXV 8
#define MAXS 16

struct mvol {
    bool live;
    char name[16];
    uint64_t id, gen;
    uint64_t blk[NBLK];
};
struct msnap {
    bool live;
    int vol;
    char name[16];
    uint64_t blk[NBLK];
};

static struct itx T;
static struct mvol V[MAXV];
static struct msnap S[MAXS];
static uint64_t rng, next_blob = 1, dead_expected[8192];
static int n_dead_expected, name_seq;
static char DIR[256];

static uint64_t rnd(uint64_t n)
{
    return util_rand64(&rng) % n;
}

static int pick_vol(void)
{
    int live[MAXV], n = 0;
    for (int i = 0; i < MAXV; i++)
        if (V[i].live) live[n++] = i;
    return n ? live[rnd((uint64_t)n)] : -1;
}

static int free_slot_v(void)
{
    for (int i = 0; i < MAXV; i++)
        if (!V[i].live) return i;
    return -1;
}

static bool new_vol(int slot, const char *name)
{
    struct mvol *v = &V[slot];
    memset(v, 0, sizeof(*v));
    snprintf(v->name, sizeof(v->name), "%s", name);
    v->live = true;
    return itx_attach(&T, name, "agent", &v->id, &v->gen) == IDXCMD_ST_OK;
}

/* Compare the index's map of volume SLOT with the model. */
static bool check_vol(int slot)
{
    struct index_piece p[NBLK + 1];
    int n = itx_map(&T, V[slot].id, 0, NBLK * BS, p, NBLK + 1);
    if (n <= 0) return false;
    uint64_t blk = 0;
    for (int i = 0; i < n; i++) {
        for (uint64_t k = 0; k < p[i].len / BS; k++, blk++) {
            uint64_t want = V[slot].blk[blk];
            uint64_t got = p[i].kind == INDEX_DATA ? (p[i].blob_id << 8 | (p[i].blob_off / BS + k)) : 0;
            if (want != got) {
                printf("# vol %s block %llu: index %llx, model %llx\n", V[slot].name,
                       (unsigned long long)blk, (unsigned long long)got,
                       (unsigned long long)want);
                for (int j = 0; j < n; j++)
                    printf("#  piece off %llu len %llu kind %d layer %llu blob %llu boff %u\n",
                           (unsigned long long)p[j].off / BS, (unsigned long long)p[j].len / BS,
                           p[j].kind, (unsigned long long)p[j].layer,
                           (unsigned long long)p[j].blob_id, p[j].blob_off / BS);
                return false;
            }
        }
    }
    return blk == NBLK;
}

/* ---- Operations ---------------------------------------------------------------- */

static bool op_writes(void)
{
    int s = pick_vol();
    if (s < 0) return true;
    struct mvol *v = &V[s];
    bool fenced = rnd(10) == 0;
    struct idxcmd_write w[4];
    uint32_t n = 0;
    uint64_t pos = rnd(8);
    while (n < 1 + rnd(4) && pos < NBLK) {
        uint64_t want = 1 + rnd(8);
        uint32_t len = (uint32_t)BD_MIN(want, NBLK - pos); /* BD_MIN evaluates twice */
        int kind = rnd(10) < 6 ? IDXCMD_W_DATA : rnd(2) ? IDXCMD_W_ZERO : IDXCMD_W_TRIM;
        if (kind == IDXCMD_W_DATA) {
            uint32_t extra = (uint32_t)rnd(3);
            w[n] = itx_data(v->id, v->gen - fenced, pos * BS, len * BS, next_blob, extra * BS,
                            (len + extra) * BS);
            next_blob++;
        } else {
            w[n] = itx_zero(v->id, v->gen - fenced, pos * BS, len * BS, (uint8_t)kind);
        }
        n++;
        pos += len + rnd(6);
    }
    if (itx_writes(&T, w, n) != IDXCMD_ST_OK) return false;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t want = fenced ? IDXCMD_ST_FENCED : IDXCMD_ST_OK;
        if (T.res.st[i] != want) {
            printf("# write %u: %s, want %s\n", i, idxcmd_status_name(T.res.st[i]),
                   idxcmd_status_name(want));
            return false;
        }
        if (fenced) {
            if (w[i].kind == IDXCMD_W_DATA && n_dead_expected < 8192)
                dead_expected[n_dead_expected++] = w[i].blob_id;
            continue;
        }
        for (uint32_t k = 0; k < w[i].len / BS; k++)
            v->blk[w[i].off / BS + k] = w[i].kind == IDXCMD_W_DATA
                                            ? (w[i].blob_id << 8 | (w[i].blob_off / BS + k))
                                            : 0;
    }
    return true;
}

static bool op_snapshot(void)
{
    int s = pick_vol(), k;
    for (k = 0; k < MAXS && S[k].live; k++) {}
    if (s < 0 || k == MAXS) return true;
    S[k].live = true;
    S[k].vol = s;
    snprintf(S[k].name, sizeof(S[k].name), "s%d", name_seq++);
    memcpy(S[k].blk, V[s].blk, sizeof(S[k].blk));
    return itx_snap(&T, IDXCMD_SNAPSHOT_CREATE, V[s].name, S[k].name, NULL) == IDXCMD_ST_OK;
}

static int pick_snap(void)
{
    int live[MAXS], n = 0;
    for (int i = 0; i < MAXS; i++)
        if (S[i].live) live[n++] = i;
    return n ? live[rnd((uint64_t)n)] : -1;
}

static bool op_snap_delete(void)
{
    int k = pick_snap();
    if (k < 0) return true;
    if (itx_snap_has_clone(&T, V[S[k].vol].id, S[k].name))
        return itx_snap(&T, IDXCMD_SNAPSHOT_DELETE, V[S[k].vol].name, S[k].name, NULL) ==
               IDXCMD_ST_EBUSY;
    S[k].live = false;
    return itx_snap(&T, IDXCMD_SNAPSHOT_DELETE, V[S[k].vol].name, S[k].name, NULL) == IDXCMD_ST_OK;
}

static bool op_clone(void)
{
    int k = pick_snap(), slot = free_slot_v();
    if (k < 0 || slot < 0) return true;
    char name[16];
    snprintf(name, sizeof(name), "c%d", name_seq++);
    if (itx_snap(&T, IDXCMD_CLONE, V[S[k].vol].name, S[k].name, name) != IDXCMD_ST_OK) return false;
    if (!new_vol(slot, name)) return false;
    memcpy(V[slot].blk, S[k].blk, sizeof(V[slot].blk));
    return check_vol(slot);
}

static bool op_delete(void)
{
    int s = pick_vol();
    if (s < 0) return true;
    if (itx_delete(&T, V[s].name) != IDXCMD_ST_EBUSY) return false; /* still attached */
    if (itx_detach(&T, V[s].id, V[s].gen, "agent") != IDXCMD_ST_OK) return false;
    if (itx_delete(&T, V[s].name) != IDXCMD_ST_EBUSY) return false; /* still assigned */
    if (itx_assign(&T, V[s].name, "", "", 0) != IDXCMD_ST_OK) return false;
    if (itx_delete(&T, V[s].name) != IDXCMD_ST_OK) return false;
    V[s].live = false;
    for (int k = 0; k < MAXS; k++)
        if (S[k].live && S[k].vol == s) S[k].live = false;
    return true;
}

static bool op_create(void)
{
    int slot = free_slot_v();
    if (slot < 0) return true;
    char name[16];
    snprintf(name, sizeof(name), "v%d", name_seq++);
    return itx_create(&T, name, NBLK * BS) == IDXCMD_ST_OK && new_vol(slot, name);
}

static bool op_takeover(void)
{
    int s = pick_vol();
    if (s < 0) return true;
    uint64_t old = V[s].gen;
    if (itx_attach(&T, V[s].name, "agent", NULL, &V[s].gen) != IDXCMD_ST_OK) return false;
    return V[s].gen == old + 1;
}

/* ---- The run ------------------------------------------------------------------------ */

static bool run_model(int ops)
{
    for (int i = 0; i < ops; i++) {
        uint64_t r = rnd(100);
        bool ok = r < 55   ? op_writes()
                  : r < 65 ? op_snapshot()
                  : r < 72 ? op_snap_delete()
                  : r < 79 ? op_clone()
                  : r < 83 ? op_delete()
                  : r < 90 ? op_create()
                           : op_takeover();
        if (!ok) {
            printf("# op %d (kind %llu) failed\n", i, (unsigned long long)r);
            return false;
        }
        if (i % 50 == 0) {
            int s = pick_vol();
            if (s >= 0 && !check_vol(s)) return false;
        }
    }
    return true;
}

/* Thousands of random operations agree with the model; snapshots never
 * change; refcounts audit clean; deleting everything frees everything. */
TEST(random_model)
{
    rng = tap_seed();
    snprintf(DIR, sizeof(DIR), "%s", tap_tmpdir());
    CHECK(itx_open(&T, DIR, "model") == 0);
    T.logging = true;
    CHECK(itx_cluster(&T) == 0);
    CHECK(op_create() && op_create());
    CHECK(run_model(4000));
    for (int s = 0; s < MAXV; s++)
        if (V[s].live) CHECK(check_vol(s));
    /* Every snapshot, cloned now, still reads what it froze. */
    for (int k = 0; k < MAXS; k++) {
        if (!S[k].live) continue;
        int slot = free_slot_v();
        if (slot < 0) {
            CHECK(op_delete());
            slot = free_slot_v();
            if (!S[k].live) continue;
        }
        char name[16];
        snprintf(name, sizeof(name), "x%d", k);
        CHECK_EQ(itx_snap(&T, IDXCMD_CLONE, V[S[k].vol].name, S[k].name, name), IDXCMD_ST_OK);
        CHECK(new_vol(slot, name));
        memcpy(V[slot].blk, S[k].blk, sizeof(V[slot].blk));
        CHECK(check_vol(slot));
    }
    CHECK_EQ(itx_audit(&T), 0);
    for (int i = 0; i < n_dead_expected; i++) {
        struct index_blob b;
        CHECK(itx_blob(&T, dead_expected[i], &b) == 0);
        CHECK(b.flags & INDEX_BLOB_DEAD);
    }
    /* Delete everything: nothing may remain but garbage. */
    for (int s = 0; s < MAXV; s++)
        if (V[s].live) {
            CHECK(itx_detach(&T, V[s].id, V[s].gen, "agent") == IDXCMD_ST_OK);
            CHECK(itx_assign(&T, V[s].name, "", "", 0) == IDXCMD_ST_OK);
            CHECK(itx_delete(&T, V[s].name) == IDXCMD_ST_OK);
            V[s].live = false;
        }
    CHECK_EQ(itx_audit(&T), 0);
    struct index_stats st;
    index_read_begin(T.rd);
    CHECK(index_stats(T.rd, &st) == 0);
    index_read_end(T.rd);
    CHECK_EQ(st.extents, 0);
    CHECK_EQ(st.layers, 0);
    CHECK_EQ(st.snapshots, 0);
    CHECK_EQ(st.volumes, 0);
    CHECK_EQ(st.gc, st.blobs);
    printf("# %zu entries, %llu blobs, all in gc at the end\n", T.n_log,
           (unsigned long long)st.blobs);
}

/* Replaying the same log gives the same digest: entry by entry, in batches
 * of 7, and a second time over (every entry then SKIPPED). */
/* Feeds the model's log to fsm_apply_txn in groups of 1, 2, 3, ... */
struct txn_feed {
    uint64_t next;             /* the next raft index to hand out */
    uint32_t groups, decided, bad_group;
    struct fsm_entry ents[16];
    struct idxcmd_result res[16];
};

static uint32_t txn_feed_fill(struct txn_feed *f, struct fsm_entry *e, uint32_t want)
{
    uint32_t n = 0;
    if (f->next <= T.n_log) f->groups++;
    while (n < want && f->next <= T.n_log) {
        size_t j = f->next - 1;
        e[n] = (struct fsm_entry){f->next, T.log[j], T.log_len[j], &f->res[n]};
        if (f->bad_group && f->groups == f->bad_group) e[n].index = 1; /* not increasing */
        f->next++;
        n++;
    }
    return n;
}

static void txn_feed_decided(void *arg)
{
    ((struct txn_feed *)arg)->decided++;
}

static uint32_t txn_feed_more(void *arg, struct fsm_entry **next)
{
    struct txn_feed *f = arg;
    *next = f->ents;
    return txn_feed_fill(f, f->ents, f->groups % 16 + 1);
}

TEST(replay_idempotent)
{
    CHECK(T.n_log > 0);
    uint64_t want = itx_digest(&T);
    CHECK(want != 0);
    struct itx a, b;
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/replay-a", DIR);
    CHECK(itx_open(&a, dir, "model") == 0);
    snprintf(dir, sizeof(dir), "%s/replay-b", DIR);
    CHECK(itx_open(&b, dir, "model") == 0);
    struct idxcmd_result r;
    for (size_t i = 0; i < T.n_log; i++)
        CHECK(fsm_apply(a.ix, i + 1, T.log[i], T.log_len[i], &r) == 0);
    CHECK_EQ(itx_digest(&a), want);
    for (size_t i = 0; i < T.n_log; i++) {
        CHECK(fsm_apply(a.ix, i + 1, T.log[i], T.log_len[i], &r) == 0);
        CHECK_EQ(r.status, IDXCMD_ST_SKIPPED);
    }
    CHECK_EQ(itx_digest(&a), want);
    static struct idxcmd_result res[7];
    for (size_t i = 0; i < T.n_log; i += 7) {
        struct fsm_entry e[7];
        uint32_t n = 0;
        for (size_t j = i; j < T.n_log && n < 7; j++, n++)
            e[n] = (struct fsm_entry){j + 1, T.log[j], T.log_len[j], &res[n]};
        CHECK(fsm_apply_batch(b.ix, e, n, NULL, NULL) == 0);
    }
    CHECK_EQ(itx_digest(&b), want);
    /* A batch overlapping the applied index skips the old part only. */
    struct fsm_entry e[2] = {{T.n_log, T.log[T.n_log - 1], T.log_len[T.n_log - 1], &res[0]},
                             {T.n_log + 1, T.log[0], T.log_len[0], &res[1]}};
    CHECK(fsm_apply_batch(b.ix, e, 2, NULL, NULL) == 0);
    CHECK_EQ(res[0].status, IDXCMD_ST_SKIPPED);
    CHECK(res[1].status != IDXCMD_ST_SKIPPED);
    CHECK(itx_digest(&b) != want);
    e[1].index = 1;
    CHECK_EQ(fsm_apply_batch(b.ix, e, 2, NULL, NULL), -EINVAL); /* indexes must increase */
    itx_close(&a);
    itx_close(&b);

    /* One transaction fed group by group (the index writer's lingering
     * transaction): the same digest, DECIDED once per group. */
    struct itx c;
    snprintf(dir, sizeof(dir), "%s/txn", tap_tmpdir());
    CHECK(itx_open(&c, dir, "model") == 0);
    struct txn_feed f = {.next = 1};
    struct fsm_entry first[1];
    uint32_t n0 = txn_feed_fill(&f, first, 1);
    CHECK(fsm_apply_txn(c.ix, first, n0, txn_feed_decided, txn_feed_more, &f) == 0);
    CHECK_EQ(f.next, T.n_log + 1);
    CHECK_EQ(f.decided, f.groups);
    CHECK(f.groups > 1);
    CHECK_EQ(itx_digest(&c), want);
    /* A later group whose indexes do not increase aborts all of it. */
    struct itx d;
    snprintf(dir, sizeof(dir), "%s/txn-bad", tap_tmpdir());
    CHECK(itx_open(&d, dir, "model") == 0);
    uint64_t empty = itx_digest(&d);
    struct txn_feed g = {.next = 1, .bad_group = 2};
    n0 = txn_feed_fill(&g, first, 1);
    CHECK_EQ(fsm_apply_txn(d.ix, first, n0, txn_feed_decided, txn_feed_more, &g), -EINVAL);
    CHECK_EQ(g.decided, 1u);
    CHECK_EQ(itx_digest(&d), empty);
    itx_close(&d);
    itx_close(&c);
    itx_close(&T);
}
