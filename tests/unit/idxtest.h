/* idxtest.h: helpers shared by the index, fsm and fsm-raft tests: open a
 * tmpfs-allowed index, build commands and apply them with increasing raft
 * indexes, and audit the refcount / layer invariants straight from the
 * tables.  Header-only (static functions) so each test stays one file. */
#ifndef BD_IDXTEST_H
#define BD_IDXTEST_H

#include "bd.h"
#include "store/fsm.h"
#include "store/idxcmd.h"
#include "store/index.h"
#include "store/index_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BS 4096u

/* An index plus the next raft index to apply and an optional command log. */
struct itx {
    struct index *ix;
    struct index_reader *rd;
    uint64_t next;             /* raft index for the next command */
    struct idx_result res;     /* last result */
    uint8_t **log;             /* if logging: every encoded command */
    size_t *log_len;
    size_t n_log, cap_log;
    bool logging;
};

static BD_UNUSED int itx_open(struct itx *t, const char *dir, const char *cluster)
{
    memset(t, 0, sizeof(*t));
    struct index_opts o = {.dir = dir, .cluster_id = cluster, .allow_tmpfs = true,
                           .map_size = 1ull << 30};
    char err[256];
    int rc = index_open(&o, &t->ix, err, sizeof(err));
    if (rc) {
        printf("# index_open %s: %s\n", dir, err);
        return rc;
    }
    t->next = 1;
    return index_reader_new(t->ix, &t->rd);
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
    c.u.create_volume.name = idx_cstr(name);
    c.u.create_volume.size = size;
    c.u.create_volume.block_size = BS;
    return itx_cmd(t, &c);
}

/* Attach read-write as AGENT (forced takeover); *gen gets the generation. */
static BD_UNUSED int itx_attach(struct itx *t, const char *name, const char *agent,
                                uint64_t *vol, uint64_t *gen)
{
    struct idxcmd c = {.type = IDXCMD_ATTACH};
    c.u.attach.name = idx_cstr(name);
    c.u.attach.agent = idx_cstr(agent);
    c.u.attach.flags = IDX_ATTACH_FORCE;
    int rc = itx_cmd(t, &c);
    if (vol) *vol = t->res.id;
    if (gen) *gen = t->res.generation;
    return rc;
}

static BD_UNUSED int itx_detach(struct itx *t, uint64_t vol, uint64_t gen, const char *agent)
{
    struct idxcmd c = {.type = IDXCMD_DETACH};
    c.u.detach.vol_id = vol;
    c.u.detach.generation = gen;
    c.u.detach.agent = idx_cstr(agent);
    return itx_cmd(t, &c);
}

/* Nodes 1-3 and partition 1 on them; blob ids [1, 1 + 2^20) allocated. */
static BD_UNUSED int itx_cluster(struct itx *t)
{
    for (uint64_t id = 1; id <= 3; id++) {
        struct idxcmd c = {.type = IDXCMD_REGISTER_NODE};
        c.u.register_node.node_id = id;
        c.u.register_node.addr = idx_cstr("127.0.0.1:7000");
        c.u.register_node.capacity = 1ull << 40;
        if (itx_cmd(t, &c) != IDX_OK) return -1;
    }
    struct idxcmd p = {.type = IDXCMD_CREATE_PARTITION};
    p.u.create_partition.part_id = 1;
    p.u.create_partition.nodes[0] = 1;
    p.u.create_partition.nodes[1] = 2;
    p.u.create_partition.nodes[2] = 3;
    if (itx_cmd(t, &p) != IDX_OK) return -1;
    struct idxcmd a = {.type = IDXCMD_ALLOC_BLOB_IDS};
    a.u.alloc_blob_ids.count = IDXCMD_MAX_ALLOC;
    return itx_cmd(t, &a) == IDX_OK ? 0 : -1;
}

static BD_UNUSED struct idx_write itx_data(uint64_t vol, uint64_t gen, uint64_t off,
                                           uint32_t len, uint64_t blob, uint32_t blob_off,
                                           uint32_t blob_len)
{
    return (struct idx_write){.vol_id = vol, .generation = gen, .off = off, .len = len,
                              .kind = IDX_W_DATA, .blob_id = blob, .partition = 1,
                              .blob_off = blob_off, .blob_len = blob_len,
                              .blob_csum = blob * 0x9E3779B97F4A7C15ull};
}

static BD_UNUSED struct idx_write itx_zero(uint64_t vol, uint64_t gen, uint64_t off,
                                           uint32_t len, uint8_t kind)
{
    return (struct idx_write){.vol_id = vol, .generation = gen, .off = off, .len = len,
                              .kind = kind};
}

/* Apply a WRITE_BATCH of N writes (sorted here); per-write statuses in t->res.st. */
static BD_UNUSED int itx_writes(struct itx *t, struct idx_write *w, uint32_t n)
{
    qsort(w, n, sizeof(*w), idxcmd_write_cmp);
    struct idxcmd c = {.type = IDXCMD_WRITE_BATCH};
    c.u.write_batch.n = n;
    c.u.write_batch.in = w;
    return itx_cmd(t, &c);
}

static BD_UNUSED int itx_write1(struct itx *t, struct idx_write w)
{
    int rc = itx_writes(t, &w, 1);
    return rc < 0 ? rc : t->res.st[0];
}

static BD_UNUSED int itx_snap(struct itx *t, uint16_t type, const char *vol, const char *snap,
                              const char *new_name)
{
    struct idxcmd c = {.type = type};
    c.u.clone.vol = idx_cstr(vol);
    c.u.clone.snap = idx_cstr(snap);
    if (type == IDXCMD_CLONE) c.u.clone.new_name = idx_cstr(new_name);
    return itx_cmd(t, &c);
}

static BD_UNUSED int itx_delete(struct itx *t, const char *name)
{
    struct idxcmd c = {.type = IDXCMD_DELETE_VOLUME};
    c.u.delete_volume.name = idx_cstr(name);
    return itx_cmd(t, &c);
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
 * match the volumes, snapshots and child layers that exist.  Returns the
 * number of violations (printed). */
static BD_UNUSED int itx_audit(struct itx *t)
{
    struct index *ix = t->ix;
    MDB_txn *txn;
    if (mdb_txn_begin(ix->env, NULL, MDB_RDONLY, &txn)) return 1;
    int bad = 0;
    MDB_cursor *cur;
    MDB_val k, v;
    size_t n = 0, cap = 1024;
    struct audit_ref *refs = malloc(cap * sizeof(*refs));
    mdb_cursor_open(txn, ix->dbi[IT_EXTENTS], &cur);
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
    mdb_cursor_open(txn, ix->dbi[IT_BLOBS], &cur);
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
        bool in_gc = mdb_get(txn, ix->dbi[IT_GC], &k, &gv) == 0;
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
    /* Layers: recount references. */
    mdb_cursor_open(txn, ix->dbi[IT_LAYERS], &cur);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct index_layer l;
        index_dec_layer(index_key_get_u64(k.mv_data), &v, &l);
        uint32_t children = 0, snaps = 0, tops = 0;
        uint64_t x = 0;
        MDB_cursor *c2;
        MDB_val k2, v2;
        mdb_cursor_open(txn, ix->dbi[IT_LAYERS], &c2);
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
        mdb_cursor_open(txn, ix->dbi[IT_SNAPSHOTS], &c2);
        for (int r2 = mdb_cursor_get(c2, &k2, &v2, MDB_FIRST); r2 == 0;
             r2 = mdb_cursor_get(c2, &k2, &v2, MDB_NEXT)) {
            struct index_snap s;
            index_dec_snap(&k2, &v2, &s);
            snaps += s.layer == l.id;
        }
        mdb_cursor_close(c2);
        mdb_cursor_open(txn, ix->dbi[IT_VOLUMES], &c2);
        for (int r2 = mdb_cursor_get(c2, &k2, &v2, MDB_FIRST); r2 == 0;
             r2 = mdb_cursor_get(c2, &k2, &v2, MDB_NEXT)) {
            struct index_vol vv;
            index_dec_vol(&k2, &v2, &vv);
            tops += vv.top_layer == l.id;
        }
        mdb_cursor_close(c2);
        if (children != l.n_children || x != l.child_xor || snaps != l.n_snaps ||
            tops != l.is_top || children + snaps + tops == 0 ||
            (children == 1 && snaps == 0 && tops == 0)) {
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

#endif
