/* idxtest.h: helpers shared by the index, fsm and fsm-raft tests: open a
 * tmpfs-allowed index, build commands and apply them with increasing raft
 * indexes, and audit the refcount / layer invariants straight from the
 * tables.  Header-only (static functions) so each test stays one file. */
#ifndef BD_IDXTEST_H
#define BD_IDXTEST_H

#include "base/bd.h"
#include "store/index/fsm.h"
#include "store/index/idxcmd.h"
#include "store/index/index.h"
#include "store/index/index_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BS 4096u

/* An index plus the next raft index to apply and an optional command log. */
struct itx {
    struct index *ix;
    struct index_reader *rd;
    uint64_t next;             /* raft index for the next command */
    struct idxcmd_result res;     /* last result */
    uint8_t **log;             /* if logging: every encoded command */
    size_t *log_len;
    size_t n_log, cap_log;
    bool logging;
};

/* itx_open with a map of MAP_SIZE bytes (a benchmark's large index). */
static BD_UNUSED int itx_open_sized(struct itx *t, const char *dir, const char *cluster,
                                    uint64_t map_size)
{
    memset(t, 0, sizeof(*t));
    struct index_opts o = {.dir = dir, .cluster_id = cluster, .allow_tmpfs = true,
                           .map_size = map_size};
    char err[256];
    int rc = index_open(&o, &t->ix, err, sizeof(err));
    if (rc) {
        printf("# index_open %s: %s\n", dir, err);
        return rc;
    }
    t->next = 1;
    return index_reader_new(t->ix, &t->rd);
}

static BD_UNUSED int itx_open(struct itx *t, const char *dir, const char *cluster)
{
    return itx_open_sized(t, dir, cluster, 1ull << 30);
}

static BD_UNUSED void itx_close(struct itx *t)
{
    for (size_t i = 0; i < t->n_log; i++) free(t->log[i]);
    free(t->log);
    free(t->log_len);
    index_reader_free(t->rd);
    index_close(t->ix);
    memset(t, 0, sizeof(*t));
}

/* Encode C and apply it as the next entry; returns the result status, or
 * a negative code (encode refused, hard apply error). */
static BD_UNUSED int itx_cmd(struct itx *t, const struct idxcmd *c)
{
    static uint8_t buf[IDXCMD_MAX_LEN];
    int n = idxcmd_encode(buf, sizeof(buf), c);
    if (n < 0) return n;
    if (t->logging) {
        if (t->n_log == t->cap_log) {
            t->cap_log = t->cap_log ? t->cap_log * 2 : 256;
            t->log = realloc(t->log, t->cap_log * sizeof(*t->log));
            t->log_len = realloc(t->log_len, t->cap_log * sizeof(*t->log_len));
        }
        t->log[t->n_log] = malloc((size_t)n);
        memcpy(t->log[t->n_log], buf, (size_t)n);
        t->log_len[t->n_log++] = (size_t)n;
    }
    int rc = fsm_apply(t->ix, t->next++, buf, (size_t)n, &t->res);
    return rc ? rc : t->res.status;
}

static BD_UNUSED int itx_create(struct itx *t, const char *name, uint64_t size)
{
    struct idxcmd c = {.type = IDXCMD_CREATE_VOLUME};
    c.u.create_volume.name = idxcmd_cstr(name);
    c.u.create_volume.size = size;
    c.u.create_volume.block_size = BS;
    return itx_cmd(t, &c);
}

/* Assign NAME to AGENT and attach it read-write as AGENT (a forced
 * takeover: whoever held it is fenced), on the generation the ASSIGN's
 * result names; *gen gets the new generation. */
static BD_UNUSED int itx_attach(struct itx *t, const char *name, const char *agent,
                                uint64_t *vol, uint64_t *gen)
{
    struct idxcmd a = {.type = IDXCMD_ASSIGN};
    a.u.assign.name = idxcmd_cstr(name);
    a.u.assign.agent = idxcmd_cstr(agent);
    a.u.assign.client = idxcmd_cstr("");
    a.u.assign.flags = IDXCMD_ASSIGN_FORCE;
    int rc = itx_cmd(t, &a);
    if (rc != IDXCMD_ST_OK) return rc;
    struct idxcmd c = {.type = IDXCMD_ATTACH};
    c.u.attach.name = idxcmd_cstr(name);
    c.u.attach.agent = idxcmd_cstr(agent);
    c.u.attach.flags = IDXCMD_ATTACH_FORCE;
    c.u.attach.base_generation = t->res.generation;
    rc = itx_cmd(t, &c);
    if (vol) *vol = t->res.id;
    if (gen) *gen = t->res.generation;
    return rc;
}

/* ASSIGN NAME to AGENT ("" detaches) for CLIENT ("" any) with FLAGS
 * (IDXCMD_ASSIGN_*); the result status. */
static BD_UNUSED int itx_assign(struct itx *t, const char *name, const char *agent,
                                const char *client, uint32_t flags)
{
    struct idxcmd c = {.type = IDXCMD_ASSIGN};
    c.u.assign.name = idxcmd_cstr(name);
    c.u.assign.agent = idxcmd_cstr(agent);
    c.u.assign.client = idxcmd_cstr(client);
    c.u.assign.flags = flags;
    return itx_cmd(t, &c);
}

static BD_UNUSED int itx_detach(struct itx *t, uint64_t vol, uint64_t gen, const char *agent)
{
    struct idxcmd c = {.type = IDXCMD_DETACH};
    c.u.detach.vol_id = vol;
    c.u.detach.generation = gen;
    c.u.detach.agent = idxcmd_cstr(agent);
    return itx_cmd(t, &c);
}

/* Nodes 1-3 and partition 1 on them; blob ids [1, 1 + 2^20) allocated. */
static BD_UNUSED int itx_cluster(struct itx *t)
{
    for (uint64_t id = 1; id <= 3; id++) {
        struct idxcmd c = {.type = IDXCMD_REGISTER_NODE};
        c.u.register_node.node_id = id;
        c.u.register_node.addr = idxcmd_cstr("127.0.0.1:7000");
        c.u.register_node.capacity = 1ull << 40;
        if (itx_cmd(t, &c) != IDXCMD_ST_OK) return -1;
    }
    struct idxcmd p = {.type = IDXCMD_CREATE_PARTITION};
    p.u.create_partition.part_id = 1;
    p.u.create_partition.nodes[0] = 1;
    p.u.create_partition.nodes[1] = 2;
    p.u.create_partition.nodes[2] = 3;
    if (itx_cmd(t, &p) != IDXCMD_ST_OK) return -1;
    struct idxcmd a = {.type = IDXCMD_ALLOC_BLOB_IDS};
    a.u.alloc_blob_ids.count = IDXCMD_MAX_ALLOC;
    return itx_cmd(t, &a) == IDXCMD_ST_OK ? 0 : -1;
}

static BD_UNUSED struct idxcmd_write itx_data(uint64_t vol, uint64_t gen, uint64_t off,
                                           uint32_t len, uint64_t blob, uint32_t blob_off,
                                           uint32_t blob_len)
{
    return (struct idxcmd_write){.vol_id = vol, .generation = gen, .off = off, .len = len,
                              .kind = IDXCMD_W_DATA, .blob_id = blob, .partition = 1,
                              .blob_off = blob_off, .blob_len = blob_len,
                              .blob_csum = blob * 0x9E3779B97F4A7C15ull};
}

static BD_UNUSED struct idxcmd_write itx_zero(uint64_t vol, uint64_t gen, uint64_t off,
                                           uint32_t len, uint8_t kind)
{
    return (struct idxcmd_write){.vol_id = vol, .generation = gen, .off = off, .len = len,
                              .kind = kind};
}

/* Apply a WRITE_BATCH of N writes (sorted here); per-write statuses in t->res.st. */
static BD_UNUSED int itx_writes(struct itx *t, struct idxcmd_write *w, uint32_t n)
{
    qsort(w, n, sizeof(*w), idxcmd_write_cmp);
    struct idxcmd c = {.type = IDXCMD_WRITE_BATCH};
    c.u.write_batch.n = n;
    c.u.write_batch.in = w;
    return itx_cmd(t, &c);
}

static BD_UNUSED int itx_write1(struct itx *t, struct idxcmd_write w)
{
    int rc = itx_writes(t, &w, 1);
    return rc < 0 ? rc : t->res.st[0];
}

static BD_UNUSED int itx_snap(struct itx *t, uint16_t type, const char *vol, const char *snap,
                              const char *new_name)
{
    struct idxcmd c = {.type = type};
    c.u.clone.vol = idxcmd_cstr(vol);
    c.u.clone.snap = idxcmd_cstr(snap);
    if (type == IDXCMD_CLONE) c.u.clone.new_name = idxcmd_cstr(new_name);
    return itx_cmd(t, &c);
}

static BD_UNUSED int itx_delete(struct itx *t, const char *name)
{
    struct idxcmd c = {.type = IDXCMD_DELETE_VOLUME};
    c.u.delete_volume.name = idxcmd_cstr(name);
    return itx_cmd(t, &c);
}

/* A fresh index at DIR with nodes 1-3, partition 1 and blob ids (as
 * itx_cluster), and volume NAME of BLOCKS blocks attached read-write as
 * agent "a1": its id in *VOL, the generation in *GEN.  0 or -1. */
static BD_UNUSED int itx_fixture(struct itx *t, const char *dir, const char *name,
                                 uint64_t blocks, uint64_t *vol, uint64_t *gen)
{
    if (itx_open(t, dir, "test-cluster") || itx_cluster(t) ||
        itx_create(t, name, blocks * BS) != IDXCMD_ST_OK)
        return -1;
    return itx_attach(t, name, "a1", vol, gen) == IDXCMD_ST_OK ? 0 : -1;
}

/* Does a layer of another volume (a clone not yet flattened) sit right on
 * the layer of snapshot NAME of volume VOL_ID, so that deleting it is
 * refused (EBUSY)?  Straight from the tables. */
static BD_UNUSED bool itx_snap_has_clone(struct itx *t, uint64_t vol_id, const char *name)
{
    struct index_snap s;
    MDB_txn *txn;
    if (mdb_txn_begin(t->ix->env, NULL, MDB_RDONLY, &txn)) return false;
    bool busy = false;
    if (index_txn_snap(t->ix, txn, vol_id, name, strlen(name), &s) == 0) {
        MDB_cursor *cur;
        MDB_val key, val;
        mdb_cursor_open(txn, t->ix->dbi[INDEX_T_LAYERS], &cur);
        for (int rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
            struct index_layer l;
            index_dec_layer(index_key_get_u64(key.mv_data), &val, &l);
            if (l.parent == s.layer && l.vol_id != s.vol_id) busy = true;
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return busy;
}

static BD_UNUSED uint64_t itx_digest(struct itx *t)
{
    uint64_t d = 0;
    if (index_read_begin(t->rd)) return 0;
    if (index_digest(t->rd, &d)) d = 0;
    index_read_end(t->rd);
    return d;
}

/* Map a whole range into OUT (up to MAX pieces); the piece count or -code. */
static BD_UNUSED int itx_map(struct itx *t, uint64_t vol, uint64_t off, uint64_t len,
                             struct index_piece *out, uint32_t max)
{
    uint32_t n;
    int rc = index_read_begin(t->rd);
    if (rc) return rc;
    rc = index_map(t->rd, vol, off, len, out, max, &n);
    index_read_end(t->rd);
    return rc ? rc : (int)n;
}

static BD_UNUSED int itx_blob(struct itx *t, uint64_t id, struct index_blob *b)
{
    int rc = index_read_begin(t->rd);
    if (rc) return rc;
    rc = index_blob_get(t->rd, id, b);
    index_read_end(t->rd);
    return rc;
}

/* ---- audit (C13): straight from the tables ------------------------------------ */

struct audit_ref {
    uint64_t blob;
    uint32_t refs;
};

static int audit_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct audit_ref *)a)->blob, y = ((const struct audit_ref *)b)->blob;
    return x < y ? -1 : x > y;
}

/* Check: sum of extent references == refcount for every blob; refcount 0
 * <=> DEAD <=> in gc; every extent's layer exists; layer reference counts
 * match the volumes, snapshots and child layers that exist; a layer is in
 * the reap table exactly when nothing but at most one child refers to it.
 * Returns the number of violations (printed). */
static BD_UNUSED int itx_audit_refs(struct itx *t)
{
    struct index *ix = t->ix;
    MDB_txn *txn;
    if (mdb_txn_begin(ix->env, NULL, MDB_RDONLY, &txn)) return 1;
    int bad = 0;
    MDB_cursor *cur;
    MDB_val k, v;
    size_t n = 0, cap = 1024;
    struct audit_ref *refs = malloc(cap * sizeof(*refs));
    mdb_cursor_open(txn, ix->dbi[INDEX_T_EXTENTS], &cur);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct index_ext e;
        struct index_layer l;
        if (index_dec_ext(&k, &v, &e) || index_txn_layer(ix, txn, e.layer, &l)) {
            printf("# audit: bad extent or missing layer\n");
            bad++;
            continue;
        }
        if (e.flags & INDEX_EXT_ZERO) continue;
        if (n == cap) refs = realloc(refs, (cap *= 2) * sizeof(*refs));
        refs[n++] = (struct audit_ref){e.blob_id, 1};
    }
    mdb_cursor_close(cur);
    qsort(refs, n, sizeof(*refs), audit_cmp);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m && refs[m - 1].blob == refs[i].blob) refs[m - 1].refs++;
        else refs[m++] = refs[i];
    }
    size_t j = 0;
    mdb_cursor_open(txn, ix->dbi[INDEX_T_BLOBS], &cur);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct index_blob b;
        index_dec_blob(index_key_get_u64(k.mv_data), &v, &b);
        while (j < m && refs[j].blob < b.id) {
            printf("# audit: extent names missing blob %llu\n", (unsigned long long)refs[j].blob);
            bad++;
            j++;
        }
        uint32_t want = j < m && refs[j].blob == b.id ? refs[j++].refs : 0;
        if (b.refcount != want) {
            printf("# audit: blob %llu refcount %u, referenced %u\n", (unsigned long long)b.id,
                   b.refcount, want);
            bad++;
        }
        MDB_val gv;
        bool in_gc = mdb_get(txn, ix->dbi[INDEX_T_GC], &k, &gv) == 0;
        bool dead = b.flags & INDEX_BLOB_DEAD;
        if ((b.refcount == 0) != dead || dead != in_gc) {
            printf("# audit: blob %llu refcount %u dead %d in gc %d\n",
                   (unsigned long long)b.id, b.refcount, dead, in_gc);
            bad++;
        }
    }
    mdb_cursor_close(cur);
    if (j < m) {
        printf("# audit: %zu extents name missing blobs\n", m - j);
        bad++;
    }
    free(refs);
    /* Assignments: one assigns record per assigned volume, naming its agent. */
    size_t n_assigned = 0, n_recs = 0;
    mdb_cursor_open(txn, ix->dbi[INDEX_T_VOLUMES], &cur);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct index_vol vol;
        if (index_dec_vol(&k, &v, &vol) || vol.assign_mode == INDEX_ASSIGN_NONE) continue;
        n_assigned++;
        uint8_t kb[INDEX_ASSIGN_KEY_MAX];
        MDB_val ak = {index_assign_key(kb, vol.assign_agent, strlen(vol.assign_agent), vol.name,
                                       strlen(vol.name)),
                      kb},
                av;
        if (mdb_get(txn, ix->dbi[INDEX_T_ASSIGNS], &ak, &av) != 0) {
            printf("# audit: volume %s assigned to %s has no assigns record\n", vol.name,
                   vol.assign_agent);
            bad++;
        }
    }
    mdb_cursor_close(cur);
    mdb_cursor_open(txn, ix->dbi[INDEX_T_ASSIGNS], &cur);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        n_recs++;
    mdb_cursor_close(cur);
    if (n_recs != n_assigned) {
        printf("# audit: %zu assigns records for %zu assigned volumes\n", n_recs, n_assigned);
        bad++;
    }
    /* Layers: recount references. */
    mdb_cursor_open(txn, ix->dbi[INDEX_T_LAYERS], &cur);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct index_layer l;
        index_dec_layer(index_key_get_u64(k.mv_data), &v, &l);
        uint32_t children = 0, snaps = 0, tops = 0;
        uint64_t x = 0;
        MDB_cursor *c2;
        MDB_val k2, v2;
        mdb_cursor_open(txn, ix->dbi[INDEX_T_LAYERS], &c2);
        for (int r2 = mdb_cursor_get(c2, &k2, &v2, MDB_FIRST); r2 == 0;
             r2 = mdb_cursor_get(c2, &k2, &v2, MDB_NEXT)) {
            struct index_layer o;
            index_dec_layer(index_key_get_u64(k2.mv_data), &v2, &o);
            if (o.parent == l.id) {
                children++;
                x ^= o.id;
            }
        }
        mdb_cursor_close(c2);
        mdb_cursor_open(txn, ix->dbi[INDEX_T_SNAPSHOTS], &c2);
        for (int r2 = mdb_cursor_get(c2, &k2, &v2, MDB_FIRST); r2 == 0;
             r2 = mdb_cursor_get(c2, &k2, &v2, MDB_NEXT)) {
            struct index_snap s;
            index_dec_snap(&k2, &v2, &s);
            snaps += s.layer == l.id;
        }
        mdb_cursor_close(c2);
        mdb_cursor_open(txn, ix->dbi[INDEX_T_VOLUMES], &c2);
        for (int r2 = mdb_cursor_get(c2, &k2, &v2, MDB_FIRST); r2 == 0;
             r2 = mdb_cursor_get(c2, &k2, &v2, MDB_NEXT)) {
            struct index_vol vv;
            index_dec_vol(&k2, &v2, &vv);
            tops += vv.top_layer == l.id;
        }
        mdb_cursor_close(c2);
        /* A layer nothing reads, or one left to merge into its only child,
         * exists only while the reap table holds it (bounded work). */
        bool reaping = mdb_get(txn, ix->dbi[INDEX_T_REAP], &k, &v2) == 0;
        if (children != l.n_children || x != l.child_xor || snaps != l.n_snaps ||
            tops != l.is_top ||
            (!reaping && (children + snaps + tops == 0 ||
                          (children == 1 && snaps == 0 && tops == 0))) ||
            (reaping && (tops || snaps || children > 1))) {
            printf("# audit: layer %llu children %u/%u snaps %u/%u top %u/%u\n",
                   (unsigned long long)l.id, children, l.n_children, snaps, l.n_snaps, tops,
                   l.is_top);
            bad++;
        }
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return bad;
}

/* ---- audit of usage (index.h "usage"), recounted from the extents ------------ */

struct audit_ext {
    uint64_t layer, off, len, blob;
    bool data;
};

struct audit_exts {
    struct audit_ext *e;
    size_t n;
};

/* The first extent of LAYER ending after POS (extents are in key order). */
static size_t audit_find(const struct audit_exts *x, uint64_t layer, uint64_t pos)
{
    size_t lo = 0, hi = x->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const struct audit_ext *m = &x->e[mid];
        if (m->layer < layer || (m->layer == layer && m->off + m->len <= pos)) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* DATA bytes of LAYER's own extents inside [A, B) (ALL: any extent). */
static uint64_t audit_bytes(const struct audit_exts *x, uint64_t layer, uint64_t a, uint64_t b,
                            bool all)
{
    uint64_t sum = 0;
    for (size_t i = audit_find(x, layer, a); i < x->n && x->e[i].layer == layer &&
                                             x->e[i].off < b; i++)
        if (all || x->e[i].data)
            sum += BD_MIN(x->e[i].off + x->e[i].len, b) - BD_MAX(x->e[i].off, a);
    return sum;
}

/* DATA bytes the chain CHAIN[0..N) shows over [A, B). */
static uint64_t audit_view(const struct audit_exts *x, const uint64_t *chain, uint32_t n,
                           uint64_t a, uint64_t b)
{
    if (n == 0 || a >= b) return 0;
    uint64_t sum = 0, pos = a;
    for (size_t i = audit_find(x, chain[0], a); i < x->n && x->e[i].layer == chain[0] &&
                                                x->e[i].off < b; i++) {
        const struct audit_ext *e = &x->e[i];
        uint64_t s = BD_MAX(e->off, a), end = BD_MIN(e->off + e->len, b);
        sum += audit_view(x, chain + 1, n - 1, pos, s);
        if (e->data) sum += end - s;
        pos = end;
    }
    return sum + audit_view(x, chain + 1, n - 1, pos, b);
}

/* Check every layer's usage record, the meta totals and every blob's live
 * bytes against a recount from the extents.  Returns the violations
 * (printed). */
static BD_UNUSED int itx_audit_usage(struct itx *t)
{
    struct index *ix = t->ix;
    MDB_txn *txn;
    if (mdb_txn_begin(ix->env, NULL, MDB_RDONLY, &txn)) return 1;
    int bad = 0;
    struct audit_exts x = {0};
    size_t cap = 1024;
    x.e = malloc(cap * sizeof(*x.e));
    MDB_cursor *cur;
    MDB_val k, v;
    mdb_cursor_open(txn, ix->dbi[INDEX_T_EXTENTS], &cur);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct index_ext e;
        if (index_dec_ext(&k, &v, &e)) continue; /* itx_audit_refs reports it */
        if (x.n == cap) x.e = realloc(x.e, (cap *= 2) * sizeof(*x.e));
        x.e[x.n++] = (struct audit_ext){e.layer, e.off, e.len, e.blob_id,
                                        !(e.flags & INDEX_EXT_ZERO)};
    }
    mdb_cursor_close(cur);
    uint64_t total_data = 0;
    mdb_cursor_open(txn, ix->dbi[INDEX_T_LAYERS], &cur);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct index_layer l;
        index_dec_layer(index_key_get_u64(k.mv_data), &v, &l);
        uint64_t chain[INDEX_MAX_DEPTH];
        uint32_t depth = 0;
        for (uint64_t id = l.id; id && depth < INDEX_MAX_DEPTH;) {
            struct index_layer c;
            chain[depth++] = id;
            id = index_txn_layer(ix, txn, id, &c) ? 0 : c.parent;
        }
        struct index_usage want = {.data_bytes = audit_bytes(&x, l.id, 0, UINT64_MAX, false),
                                   .view_bytes = audit_view(&x, chain, depth, 0, UINT64_MAX)};
        for (size_t i = audit_find(&x, l.id, 0); l.parent && i < x.n && x.e[i].layer == l.id;
             i++)
            want.masked_bytes +=
                audit_bytes(&x, l.parent, x.e[i].off, x.e[i].off + x.e[i].len, false);
        total_data += want.data_bytes;
        struct index_usage got;
        int no_usage = index_txn_usage(ix, txn, l.id, &got);
        /* A condemned layer (in the reap table, freed or folded into its
         * child in steps) keeps only its data count: nothing reads it. */
        uint8_t rk[INDEX_ID_KEY_LEN];
        index_key_u64(rk, l.id);
        MDB_val rkey = {sizeof(rk), rk}, rval;
        if (!no_usage && mdb_get(txn, ix->dbi[INDEX_T_REAP], &rkey, &rval) == 0) {
            want.masked_bytes = got.masked_bytes;
            want.view_bytes = got.view_bytes;
        }
        if (no_usage) {
            printf("# audit: layer %llu has no usage record\n", (unsigned long long)l.id);
            bad++;
        } else if (memcmp(&got, &want, sizeof(got)) != 0) {
            printf("# audit: layer %llu usage data/masked/view %llu/%llu/%llu, recounted "
                   "%llu/%llu/%llu\n", (unsigned long long)l.id,
                   (unsigned long long)got.data_bytes, (unsigned long long)got.masked_bytes,
                   (unsigned long long)got.view_bytes, (unsigned long long)want.data_bytes,
                   (unsigned long long)want.masked_bytes, (unsigned long long)want.view_bytes);
            bad++;
        }
    }
    mdb_cursor_close(cur);
    /* No usage record without its layer. */
    mdb_cursor_open(txn, ix->dbi[INDEX_T_USAGE], &cur);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct index_layer l;
        if (index_txn_layer(ix, txn, index_key_get_u64(k.mv_data), &l)) {
            printf("# audit: usage record of missing layer %llu\n",
                   (unsigned long long)index_key_get_u64(k.mv_data));
            bad++;
        }
    }
    mdb_cursor_close(cur);
    /* Blobs: live bytes (the extents' lengths summed per blob, walked in
     * blob order beside the blobs table), and the totals. */
    struct audit_ref *live = malloc((x.n + 1) * sizeof(*live));
    size_t nl = 0;
    for (size_t i = 0; i < x.n; i++)
        if (x.e[i].data) live[nl++] = (struct audit_ref){x.e[i].blob, (uint32_t)(x.e[i].len / 4096)};
    qsort(live, nl, sizeof(*live), audit_cmp);
    size_t li = 0;
    uint64_t live_bytes = 0, dead_bytes = 0;
    mdb_cursor_open(txn, ix->dbi[INDEX_T_BLOBS], &cur);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct index_blob b;
        index_dec_blob(index_key_get_u64(k.mv_data), &v, &b);
        if (b.flags & INDEX_BLOB_DEAD) dead_bytes += b.len;
        else live_bytes += b.len;
        uint64_t lv = 0;
        while (li < nl && live[li].blob < b.id) li++;
        for (; li < nl && live[li].blob == b.id; li++) lv += (uint64_t)live[li].refs * 4096;
        if (lv != b.live) {
            printf("# audit: blob %llu live %llu, recounted %llu\n", (unsigned long long)b.id,
                   (unsigned long long)b.live, (unsigned long long)lv);
            bad++;
        }
    }
    mdb_cursor_close(cur);
    free(live);
    struct index_meta m;
    if (index_txn_get_meta(ix, txn, &m) || m.data_bytes != total_data ||
        m.blob_bytes != live_bytes || m.dead_bytes != dead_bytes) {
        printf("# audit: totals data/blob/dead %llu/%llu/%llu, recounted %llu/%llu/%llu\n",
               (unsigned long long)m.data_bytes, (unsigned long long)m.blob_bytes,
               (unsigned long long)m.dead_bytes, (unsigned long long)total_data,
               (unsigned long long)live_bytes, (unsigned long long)dead_bytes);
        bad++;
    }
    free(x.e);
    mdb_txn_abort(txn);
    return bad;
}

/* Both audits: references (C13) and usage. */
static BD_UNUSED int itx_audit(struct itx *t)
{
    return itx_audit_refs(t) + itx_audit_usage(t);
}

#endif
