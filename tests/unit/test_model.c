/* test_model.c: the data lifecycle against a byte-array model, at the
 * index (defends C9, C11, C12, C13 and the usage figures).
 *
 * The model keeps, per volume and per snapshot, one stamp per 4 KiB block
 * (0 for zeroes), and per blob the stamp each of its blocks holds, so a
 * map read back from the index names the bytes a read would return.  A
 * seeded run of thousands of operations picks among: batched writes of
 * scattered blobs, zeroes, trims, snapshots (of one volume, or a
 * consistency group of two), snapshot deletes (refused while a clone reads
 * through them), clones, flattens (driven as the leader does, a step at a
 * time, with client writes racing every step), rollbacks, volume deletes,
 * GC of dead blobs, and blob rewrites planned from a stale read and
 * raced by writes and trims.  After every operation: every volume and
 * every snapshot reads what the model says, a volume's written bytes are
 * the model's non-zero blocks, and the reference and usage audits pass
 * (itx_audit: refcounts, dead/gc, layer counts, per-layer usage, blob live
 * bytes, totals).  Replay a failure with TEST_SEED=<seed>. */
#include "tap.h"
#include "idxtest.h"
#include "base/util.h"

#include <string.h>

/* ---- Model ------------------------------------------------------------------- */

#define NBLK 48
#define MAXV 6
#define MAXS 12
#define OPS 3000

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
static uint64_t rng, next_blob = 100, next_stamp = 1, *blob_stamp;
static int name_seq;
static const char *last_op;

#define STAMP(b, k) blob_stamp[(b) * 64 + (k)]

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

static int pick_snap(int vol)
{
    int live[MAXS], n = 0;
    for (int i = 0; i < MAXS; i++)
        if (S[i].live && (vol < 0 || S[i].vol == vol)) live[n++] = i;
    return n ? live[rnd((uint64_t)n)] : -1;
}

static int free_vol(void)
{
    for (int i = 0; i < MAXV; i++)
        if (!V[i].live) return i;
    return -1;
}

static int free_snap(void)
{
    for (int i = 0; i < MAXS; i++)
        if (!S[i].live) return i;
    return -1;
}

/* ---- Reading the index back --------------------------------------------------- */

/* A random sub-range [A, B) of the view mapped in pages of a few pieces
 * at a time, each page starting where the last ended (as the proxy reads
 * a long range): the pieces tile it, in order, and show the stamps the
 * whole map showed (FULL).  Edges of extents, holes and layers below are
 * where a cursor walk can go wrong. */
static bool view_part(uint64_t layer, const uint64_t *full)
{
    uint64_t a = rnd(NBLK), b = a + 1 + rnd(NBLK - a);
    uint32_t page = 1 + (uint32_t)rnd(4);
    struct index_piece p[4];
    uint64_t at = a;
    while (at < b) {
        uint32_t n;
        if (index_read_begin(T.rd)) return false;
        int rc = index_map_layer(T.rd, layer, at * BS, (b - at) * BS, p, page, &n);
        index_read_end(T.rd);
        if (rc || n == 0 || n > page) {
            printf("# after %s: map of blocks [%llu, %llu) by %u: rc %d, %u pieces\n", last_op,
                   (unsigned long long)at, (unsigned long long)b, page, rc, n);
            return false;
        }
        for (uint32_t i = 0; i < n; i++) {
            if (p[i].off != at * BS || p[i].len == 0 || p[i].len % BS || p[i].off + p[i].len > b * BS) {
                printf("# after %s: map of blocks [%llu, %llu): piece %u at %llu+%llu does not "
                       "tile it\n", last_op, (unsigned long long)a, (unsigned long long)b, i,
                       (unsigned long long)p[i].off, (unsigned long long)p[i].len);
                return false;
            }
            for (uint64_t k = 0; k < p[i].len / BS; k++, at++) {
                uint64_t got =
                    p[i].kind == INDEX_DATA ? STAMP(p[i].blob_id, p[i].blob_off / BS + k) : 0;
                if (got != full[at]) {
                    printf("# after %s: map of blocks [%llu, %llu): block %llu reads stamp %llu, "
                           "the whole map %llu\n", last_op, (unsigned long long)a,
                           (unsigned long long)b, (unsigned long long)at,
                           (unsigned long long)got, (unsigned long long)full[at]);
                    return false;
                }
            }
        }
    }
    return true;
}

/* The stamps a view (layer, NBLK blocks) shows, into OUT; and a random
 * part of it mapped alone agrees. */
static bool view(uint64_t layer, uint64_t *out)
{
    struct index_piece p[NBLK + 1];
    uint32_t n;
    if (index_read_begin(T.rd)) return false;
    int rc = index_map_layer(T.rd, layer, 0, NBLK * BS, p, NBLK + 1, &n);
    index_read_end(T.rd);
    if (rc) return false;
    uint64_t blk = 0;
    for (uint32_t i = 0; i < n; i++)
        for (uint64_t k = 0; k < p[i].len / BS; k++, blk++)
            out[blk] = p[i].kind == INDEX_DATA ? STAMP(p[i].blob_id, p[i].blob_off / BS + k) : 0;
    return blk == NBLK && view_part(layer, out);
}

static bool same(const char *what, const char *name, const uint64_t *got, const uint64_t *want)
{
    for (int b = 0; b < NBLK; b++)
        if (got[b] != want[b]) {
            printf("# after %s: %s %s block %d reads stamp %llu, model %llu\n", last_op, what,
                   name, b, (unsigned long long)got[b], (unsigned long long)want[b]);
            return false;
        }
    return true;
}

/* Every volume and snapshot reads as modelled; written bytes agree. */
static bool check_all(void)
{
    uint64_t got[NBLK];
    for (int i = 0; i < MAXV; i++) {
        if (!V[i].live) continue;
        struct index_vol v;
        struct index_vol_usage u;
        if (index_read_begin(T.rd)) return false;
        int rc = index_vol_by_id(T.rd, V[i].id, &v);
        if (!rc) rc = index_vol_usage(T.rd, &v, &u);
        index_read_end(T.rd);
        if (rc || !view(v.top_layer, got) || !same("volume", V[i].name, got, V[i].blk))
            return false;
        uint64_t nonzero = 0;
        for (int b = 0; b < NBLK; b++) nonzero += V[i].blk[b] != 0;
        if (u.written_bytes != nonzero * BS) {
            printf("# after %s: volume %s written %llu, model %llu\n", last_op, V[i].name,
                   (unsigned long long)u.written_bytes, (unsigned long long)(nonzero * BS));
            return false;
        }
    }
    for (int i = 0; i < MAXS; i++) {
        if (!S[i].live) continue;
        struct index_snap s;
        if (index_read_begin(T.rd)) return false;
        int rc = index_snap_get(T.rd, V[S[i].vol].id, S[i].name, strlen(S[i].name), &s);
        index_read_end(T.rd);
        if (rc || !view(s.layer, got) || !same("snapshot", S[i].name, got, S[i].blk))
            return false;
    }
    return true;
}

/* ---- Operations --------------------------------------------------------------------- */

/* A batch of writes, zeroes and trims to volume I (the model follows). */
static bool op_write(int i)
{
    struct mvol *v = &V[i];
    struct idxcmd_write w[4];
    uint32_t n = 0;
    uint64_t pos = rnd(8);
    uint64_t b = next_blob++, used = 0;
    while (n < 1 + rnd(4) && pos < NBLK) {
        uint64_t want = 1 + rnd(8);
        uint32_t len = (uint32_t)BD_MIN(want, NBLK - pos);
        int kind = rnd(10) < 7 ? IDXCMD_W_DATA : rnd(2) ? IDXCMD_W_ZERO : IDXCMD_W_TRIM;
        if (kind == IDXCMD_W_DATA && used + len <= 32) {
            /* Scattered ranges of one blob, as an agent ships them. */
            for (uint32_t k = 0; k < len; k++) {
                STAMP(b, used + k) = next_stamp;
                v->blk[pos + k] = next_stamp++;
            }
            w[n] = itx_data(v->id, v->gen, pos * BS, len * BS, b, (uint32_t)used * BS, 32 * BS);
            used += len;
        } else {
            w[n] = itx_zero(v->id, v->gen, pos * BS, len * BS,
                            kind == IDXCMD_W_DATA ? IDXCMD_W_ZERO : (uint8_t)kind);
            for (uint32_t k = 0; k < len; k++) v->blk[pos + k] = 0;
        }
        n++;
        pos += len + rnd(6);
    }
    if (!n) return true;
    if (itx_writes(&T, w, n) != IDXCMD_ST_OK) return false;
    for (uint32_t k = 0; k < n; k++)
        if (T.res.st[k] != IDXCMD_ST_OK) return false;
    return true;
}

static bool op_snapshot(void)
{
    int a = pick_vol(), b = pick_vol(), s = free_snap(), s2 = -1;
    if (a < 0 || s < 0) return true;
    char name[16];
    snprintf(name, sizeof(name), "s%d", name_seq++);
    /* Every live model volume is attached read-write (op_create, op_clone). */
    struct idxcmd_group_vol g[2] = {{idxcmd_cstr(V[a].name), 0, V[a].gen},
                                    {idxcmd_cstr(V[b].name), 0, V[b].gen}};
    uint8_t n = 1;
    if (b != a && (s2 = (S[s].live = true, free_snap())) >= 0) n = 2; /* a group */
    S[s].live = false;
    struct idxcmd c = {.type = IDXCMD_SNAPSHOT_GROUP};
    c.u.snapshot_group.snap = idxcmd_cstr(name);
    c.u.snapshot_group.n = n;
    c.u.snapshot_group.in = g;
    if (itx_cmd(&T, &c) != IDXCMD_ST_OK) return false;
    S[s] = (struct msnap){.live = true, .vol = a};
    snprintf(S[s].name, sizeof(S[s].name), "%s", name);
    memcpy(S[s].blk, V[a].blk, sizeof(S[s].blk));
    if (n == 2) {
        S[s2] = (struct msnap){.live = true, .vol = b};
        snprintf(S[s2].name, sizeof(S[s2].name), "%s", name);
        memcpy(S[s2].blk, V[b].blk, sizeof(S[s2].blk));
    }
    return true;
}

static bool op_snap_delete(void)
{
    int k = pick_snap(-1);
    if (k < 0) return true;
    bool busy = itx_snap_has_clone(&T, V[S[k].vol].id, S[k].name);
    int st = itx_snap(&T, IDXCMD_SNAPSHOT_DELETE, V[S[k].vol].name, S[k].name, NULL);
    if (busy) return st == IDXCMD_ST_EBUSY;
    S[k].live = false;
    return st == IDXCMD_ST_OK;
}

static bool attach(int i)
{
    return itx_attach(&T, V[i].name, "agent", &V[i].id, &V[i].gen) == IDXCMD_ST_OK;
}

static bool op_clone(void)
{
    int k = pick_snap(-1), i = free_vol();
    if (k < 0 || i < 0) return true;
    V[i] = (struct mvol){.live = true};
    snprintf(V[i].name, sizeof(V[i].name), "c%d", name_seq++);
    memcpy(V[i].blk, S[k].blk, sizeof(V[i].blk));
    if (itx_snap(&T, IDXCMD_CLONE, V[S[k].vol].name, S[k].name, V[i].name) != IDXCMD_ST_OK)
        return false;
    return attach(i);
}

static bool op_create(void)
{
    int i = free_vol();
    if (i < 0) return true;
    V[i] = (struct mvol){.live = true};
    snprintf(V[i].name, sizeof(V[i].name), "v%d", name_seq++);
    return itx_create(&T, V[i].name, NBLK * BS) == IDXCMD_ST_OK && attach(i);
}

static bool op_delete(void)
{
    int i = pick_vol();
    if (i < 0) return true;
    if (itx_detach(&T, V[i].id, V[i].gen, "agent") != IDXCMD_ST_OK ||
        itx_assign(&T, V[i].name, "", "", 0) != IDXCMD_ST_OK ||
        itx_delete(&T, V[i].name) != IDXCMD_ST_OK)
        return false;
    V[i].live = false;
    for (int k = 0; k < MAXS; k++)
        if (S[k].vol == i) S[k].live = false; /* its snapshots go with it */
    return true;
}

static bool op_rollback(void)
{
    int i = pick_vol();
    if (i < 0) return true;
    int k = pick_snap(i);
    if (k < 0) return true;
    struct idxcmd c = {.type = IDXCMD_ROLLBACK};
    c.u.rollback.vol = idxcmd_cstr(V[i].name);
    c.u.rollback.snap = idxcmd_cstr(S[k].name);
    if (itx_cmd(&T, &c) != IDXCMD_ST_EBUSY) return false; /* attached: refused */
    if (itx_detach(&T, V[i].id, V[i].gen, "agent") != IDXCMD_ST_OK || itx_cmd(&T, &c) != 0)
        return false;
    memcpy(V[i].blk, S[k].blk, sizeof(V[i].blk));
    return attach(i);
}

/* Flatten clone I as the leader does: START, then FILL steps of a few
 * blocks each, planned from a read that a client write may overtake,
 * then DONE.  Nothing the clone shows may change. */
static bool op_flatten(void)
{
    int i = pick_vol();
    if (i < 0) return true;
    struct idxcmd c = {.type = IDXCMD_FLATTEN_START};
    c.u.flatten_start.vol = idxcmd_cstr(V[i].name);
    int st = itx_cmd(&T, &c);
    if (st == IDXCMD_ST_EINVAL) return true; /* not a clone */
    if (st != IDXCMD_ST_OK) return false;
    for (uint64_t cursor = 0; cursor < NBLK * BS;) {
        struct index_vol v;
        uint64_t bottom, parent, pvol;
        struct index_piece p[NBLK + 1];
        uint32_t n = 0;
        uint64_t end = BD_MIN(cursor + (1 + rnd(16)) * BS, NBLK * BS);
        if (index_read_begin(T.rd)) return false;
        int rc = index_vol_by_id(T.rd, V[i].id, &v);
        if (!rc) rc = index_vol_parent(T.rd, &v, &bottom, &parent, &pvol);
        if (!rc && parent) rc = index_map_layer(T.rd, bottom, cursor, end - cursor, p, NBLK + 1, &n);
        index_read_end(T.rd);
        if (rc) return false;
        if (!parent) break; /* merged loose meanwhile */
        struct idxcmd_fill f[NBLK];
        uint32_t k = 0, at = 0;
        uint64_t b = next_blob++;
        for (uint32_t q = 0; q < n; q++) {
            if (p[q].kind != INDEX_DATA || p[q].layer == bottom) continue;
            f[k++] = (struct idxcmd_fill){p[q].off, (uint32_t)p[q].len, at * BS};
            for (uint64_t x = 0; x < p[q].len / BS; x++)
                STAMP(b, at + x) = STAMP(p[q].blob_id, p[q].blob_off / BS + x);
            at += (uint32_t)(p[q].len / BS);
        }
        if (rnd(2) && !op_write(i)) return false; /* the client writes meanwhile */
        struct idxcmd fc = {.type = IDXCMD_FLATTEN_FILL};
        fc.u.flatten_fill = (typeof(fc.u.flatten_fill)){.vol_id = V[i].id, .layer = bottom,
                                                       .cursor = end, .n = k, .in = f};
        if (k) {
            fc.u.flatten_fill.blob_id = b;
            fc.u.flatten_fill.partition = 1;
            fc.u.flatten_fill.blob_len = at * BS;
            fc.u.flatten_fill.blob_csum = b * 0x9E3779B97F4A7C15ull;
        }
        if (itx_cmd(&T, &fc) != IDXCMD_ST_OK) return false;
        cursor = end;
    }
    struct index_vol v;
    uint64_t bottom, parent, pvol;
    if (index_read_begin(T.rd)) return false;
    int rc = index_vol_by_id(T.rd, V[i].id, &v);
    if (!rc) rc = index_vol_parent(T.rd, &v, &bottom, &parent, &pvol);
    index_read_end(T.rd);
    if (rc) return false;
    struct idxcmd d = {.type = IDXCMD_FLATTEN_DONE};
    d.u.flatten_done.vol_id = V[i].id;
    d.u.flatten_done.layer = bottom;
    if (itx_cmd(&T, &d) != IDXCMD_ST_OK) return false;
    if (index_read_begin(T.rd)) return false;
    rc = index_vol_parent(T.rd, &v, &bottom, &parent, &pvol);
    index_read_end(T.rd);
    return rc == 0 && parent == 0; /* a clone no more */
}

/* Delete the blobs GC would (the gc table), as GC_DONE. */
static bool op_gc(void)
{
    struct index_gc g[64];
    uint32_t n;
    if (index_read_begin(T.rd)) return false;
    int rc = index_gc_list(T.rd, 0, g, 64, &n);
    index_read_end(T.rd);
    if (rc) return false;
    if (!n) return true;
    uint64_t ids[64];
    for (uint32_t i = 0; i < n; i++) ids[i] = g[i].blob_id;
    struct idxcmd c = {.type = IDXCMD_GC_DONE};
    c.u.gc_done.n = n;
    c.u.gc_done.in = ids;
    return itx_cmd(&T, &c) == IDXCMD_ST_OK && T.res.id == n;
}

/* A rewrite planned from the index now, raced by writes and trims before
 * its REPOINT applies. */
static bool op_rewrite(void)
{
    struct idxcmd_repoint all[MAXV * NBLK], r[MAXV * NBLK];
    uint32_t n = 0;
    struct index_extent ext[256];
    uint32_t got;
    if (index_read_begin(T.rd)) return false;
    int rc = index_ext_list(T.rd, 0, 0, ext, 256, &got);
    index_read_end(T.rd);
    if (rc) return false;
    for (uint32_t i = 0; i < got && n < MAXV * NBLK; i++)
        if (ext[i].kind == INDEX_DATA && rnd(3))
            all[n++] = (struct idxcmd_repoint){ext[i].layer, ext[i].off, (uint32_t)ext[i].len,
                                               ext[i].blob_id, ext[i].blob_off, 0};
    uint32_t k = 0, at = 0;
    uint64_t b = next_blob++;
    for (uint32_t i = 0; i < n && at + all[i].len / BS <= 64; i++) {
        r[k] = all[i];
        r[k].new_off = at * BS;
        for (uint32_t q = 0; q < r[k].len / BS; q++)
            STAMP(b, at + q) = STAMP(r[k].old_blob, r[k].old_off / BS + q);
        at += r[k].len / BS;
        k++;
    }
    for (uint64_t q = rnd(3); q > 0; q--) {
        int i = pick_vol();
        if (i >= 0 && !op_write(i)) return false;
    }
    if (!k) return true;
    struct idxcmd c = {.type = IDXCMD_REPOINT};
    c.u.repoint.blob_id = b;
    c.u.repoint.partition = 1;
    c.u.repoint.blob_len = at * BS;
    c.u.repoint.blob_csum = b * 0x9E3779B97F4A7C15ull;
    c.u.repoint.cursor_layer = r[k - 1].layer;
    c.u.repoint.cursor_off = r[k - 1].off + r[k - 1].len;
    c.u.repoint.n = k;
    c.u.repoint.in = r;
    return itx_cmd(&T, &c) == IDXCMD_ST_OK;
}

/* ---- The run ------------------------------------------------------------------------- */

static bool run(int ops, int *counts)
{
    for (int i = 0; i < 2; i++)
        if (!op_create()) return false;
    for (int op = 0; op < ops; op++) {
        uint64_t r = rnd(100);
        int kind;
        bool ok;
        if (r < 40) {
            int i = pick_vol();
            last_op = "write";
            kind = 0;
            ok = i < 0 ? op_create() : op_write(i);
        } else if (r < 50) last_op = "snapshot", kind = 1, ok = op_snapshot();
        else if (r < 57) last_op = "snapshot delete", kind = 2, ok = op_snap_delete();
        else if (r < 64) last_op = "clone", kind = 3, ok = op_clone();
        else if (r < 69) last_op = "flatten", kind = 4, ok = op_flatten();
        else if (r < 75) last_op = "rollback", kind = 5, ok = op_rollback();
        else if (r < 79) last_op = "delete", kind = 6, ok = op_delete();
        else if (r < 82) last_op = "create", kind = 7, ok = op_create();
        else if (r < 88) last_op = "gc", kind = 8, ok = op_gc();
        else last_op = "rewrite", kind = 9, ok = op_rewrite();
        counts[kind]++;
        if (!ok) {
            printf("# op %d (%s) failed: status %d\n", op, last_op, T.res.status);
            return false;
        }
        if (!check_all()) return false;
        if (itx_audit(&T)) {
            printf("# after op %d (%s)\n", op, last_op);
            return false;
        }
    }
    return true;
}

/* Thousands of random lifecycle operations; every view as modelled and
 * every audit clean after each. */
TEST(random_lifecycle)
{
    rng = tap_seed();
    blob_stamp = calloc(1 << 16, 64 * sizeof(uint64_t));
    CHECK(blob_stamp);
    CHECK(itx_open(&T, tap_tmpdir(), "test-cluster") == 0);
    CHECK(itx_cluster(&T) == 0);
    int counts[10] = {0};
    bool ok = run(OPS, counts);
    printf("# %d ops: %d writes, %d snapshots, %d snapshot deletes, %d clones, %d flattens, "
           "%d rollbacks, %d deletes, %d creates, %d gc, %d rewrites\n", OPS, counts[0],
           counts[1], counts[2], counts[3], counts[4], counts[5], counts[6], counts[7],
           counts[8], counts[9]);
    CHECK(ok);
    itx_close(&T);
    free(blob_stamp);
}
