/* fsm.c: apply index commands to the index, one LMDB write txn per entry
 * or batch (contract in fsm.h; extent and layer mechanics in extmap.c).
 *
 * Each command follows "check, then act": every refusal is decided before
 * the first write, so a refused command leaves the tables untouched (only
 * `applied` moves).  The one exception is deliberate: a DATA write that is
 * refused (fenced, out of range, unknown volume) still registers its blob
 * with refcount 0, so dead_finish queues it for deletion: the bytes a
 * fenced agent managed to put on blob servers become garbage, never data
 * (C10), and never leak.
 *
 * Fencing (C10).  Every read-write ATTACH bumps the volume's generation
 * (never decreasing), and a write is accepted only while the volume is
 * attached read-write AND carries exactly the current generation.  A second
 * agent cannot attach while another holds the volume, unless it asks for a
 * takeover (IDX_ATTACH_FORCE, after the first agent was declared dead):
 * the bump is what fences the old agent, at the Raft commit of the attach.
 * The same agent re-attaching (a restart) also bumps, fencing its own
 * in-flight writes from before the restart.  A read-only attach changes
 * nothing and just reports the volume.
 *
 * Volumes and layers.  CREATE makes a volume with one (bottom, top) layer.
 * SNAPSHOT_CREATE freezes the top layer (the snapshot references it) and
 * stacks a fresh top on it; CLONE makes a new volume whose top sits on a
 * snapshot's layer.  DELETE_VOLUME releases the top layer first, then the
 * volume's snapshots, so layers still read by clones survive (by merging
 * into the clone) and everything else is freed.
 *
 * Blob ids come from ALLOC_BLOB_IDS ranges (meta next_blob, never reused);
 * a write naming an id never handed out is EINVAL, one naming a DEAD blob
 * is ESTALE, one whose partition, length or checksum contradict the blob's
 * record is EINVAL. */
#include "fsm.h"
#include "fsm_int.h"
#include "../bd.h"
#include "../util.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- record helpers ---------------------------------------------------------- */

static int vol_put(struct fsm_txn *t, const struct index_vol *v)
{
    uint8_t vb[INDEX_VAL_MAX], kb[8];
    size_t nlen = strlen(v->name);
    MDB_val k = {nlen, (void *)v->name}, d = {index_enc_vol(vb, v), vb};
    int rc = index_mdb_err(mdb_put(t->txn, t->ix->dbi[IT_VOLUMES], &k, &d, 0));
    if (rc) return rc;
    index_key_u64(kb, v->id);
    MDB_val ki = {8, kb}, di = {nlen, (void *)v->name};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[IT_VOLIDS], &ki, &di, 0));
}

static int vol_del(struct fsm_txn *t, const struct index_vol *v)
{
    uint8_t kb[8];
    MDB_val k = {strlen(v->name), (void *)v->name};
    int rc = index_mdb_err(mdb_del(t->txn, t->ix->dbi[IT_VOLUMES], &k, NULL));
    if (rc) return rc;
    index_key_u64(kb, v->id);
    MDB_val ki = {8, kb};
    return index_mdb_err(mdb_del(t->txn, t->ix->dbi[IT_VOLIDS], &ki, NULL));
}

static int snap_put(struct fsm_txn *t, const struct index_snap *s)
{
    uint8_t kb[8 + INDEX_NAME_MAX], vb[32];
    MDB_val k = {index_snap_key(kb, s->vol_id, s->name, strlen(s->name)), kb};
    MDB_val d = {index_enc_snap(vb, s), vb};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[IT_SNAPSHOTS], &k, &d, 0));
}

static int snap_del(struct fsm_txn *t, const struct index_snap *s)
{
    uint8_t kb[8 + INDEX_NAME_MAX];
    MDB_val k = {index_snap_key(kb, s->vol_id, s->name, strlen(s->name)), kb};
    return index_mdb_err(mdb_del(t->txn, t->ix->dbi[IT_SNAPSHOTS], &k, NULL));
}

/* Drop one snapshot's reference on its layer. */
static int snap_release(struct fsm_txn *t, const struct index_snap *s)
{
    struct index_layer l;
    int rc;
    if ((rc = snap_del(t, s)) || (rc = layer_get(t, s->layer, &l))) return rc;
    if (l.n_snaps == 0) return -BD_ECORRUPT;
    l.n_snaps--;
    if ((rc = layer_put(t, &l))) return rc;
    return layer_release(t, l.id);
}

static void str_copy(char *dst, struct idx_str s)
{
    memcpy(dst, s.ptr, s.len);
    dst[s.len] = 0;
}

static bool str_eq(const char *a, struct idx_str s)
{
    return strlen(a) == s.len && memcmp(a, s.ptr, s.len) == 0;
}

/* A volume by name: 0, or the refusal (IDX_ENOENT) in *ST with 1, or -code. */
static int find_vol(struct fsm_txn *t, struct idx_str name, struct index_vol *v, uint8_t *st)
{
    int rc = index_txn_vol_by_name(t->ix, t->txn, name.ptr, name.len, v);
    if (rc == -ENOENT) {
        *st = IDX_ENOENT;
        return 1;
    }
    return rc;
}

/* ---- volumes ------------------------------------------------------------------ */

static int new_volume(struct fsm_txn *t, struct idx_str name, uint64_t size, uint32_t bs,
                      uint64_t iops, uint64_t bps, uint64_t parent_layer,
                      struct idx_result *res)
{
    struct index_vol v = {.id = t->meta.next_vol++, .size = size, .block_size = bs,
                          .state = INDEX_VOL_READY, .iops_limit = iops, .bps_limit = bps,
                          .created_index = t->index};
    str_copy(v.name, name);
    int rc = layer_new(t, parent_layer, v.id, &v.top_layer);
    if (rc) return rc;
    res->id = v.id;
    return vol_put(t, &v);
}

static int do_create_volume(struct fsm_txn *t, const struct idxcmd *c, struct idx_result *res)
{
    const typeof(c->u.create_volume) *a = &c->u.create_volume;
    struct index_vol v;
    uint8_t st;
    int rc = find_vol(t, a->name, &v, &st);
    if (rc < 0) return rc;
    if (rc == 0) {
        res->status = IDX_EEXIST;
        return 0;
    }
    return new_volume(t, a->name, a->size, a->block_size, a->iops_limit, a->bps_limit, 0, res);
}

static int do_delete_volume(struct fsm_txn *t, const struct idxcmd *c, struct idx_result *res)
{
    struct index_vol v;
    int rc = find_vol(t, c->u.delete_volume.name, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    if (v.attach_mode == INDEX_ATTACH_RW) {
        res->status = IDX_EBUSY;
        return 0;
    }
    struct index_layer top;
    if ((rc = vol_del(t, &v)) || (rc = layer_get(t, v.top_layer, &top))) return rc;
    top.is_top = 0;
    if ((rc = layer_put(t, &top)) || (rc = layer_release(t, top.id))) return rc;
    /* Then its snapshots, one at a time (each release may merge layers). */
    for (;;) {
        struct index_snap s;
        uint8_t kb[8];
        index_key_u64(kb, v.id);
        MDB_val k = {8, kb}, d;
        MDB_cursor *cur;
        if ((rc = index_mdb_err(mdb_cursor_open(t->txn, t->ix->dbi[IT_SNAPSHOTS], &cur))))
            return rc;
        rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
        bool more = rc == 0 && k.mv_size > 8 && index_key_get_u64(k.mv_data) == v.id;
        rc = rc == MDB_NOTFOUND ? 0 : index_mdb_err(rc);
        if (more) rc = index_dec_snap(&k, &d, &s);
        mdb_cursor_close(cur);
        if (rc || !more) return rc;
        if ((rc = snap_release(t, &s))) return rc;
    }
}

static int do_resize_volume(struct fsm_txn *t, const struct idxcmd *c, struct idx_result *res)
{
    struct index_vol v;
    int rc = find_vol(t, c->u.resize_volume.name, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    uint64_t size = c->u.resize_volume.size;
    if (size < v.size) res->status = IDX_ERANGE;
    else if (size % v.block_size) res->status = IDX_EINVAL;
    if (res->status || size == v.size) return 0;
    v.size = size;
    return vol_put(t, &v);
}

static int do_set_qos(struct fsm_txn *t, const struct idxcmd *c, struct idx_result *res)
{
    struct index_vol v;
    int rc = find_vol(t, c->u.set_qos.name, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    v.iops_limit = c->u.set_qos.iops_limit;
    v.bps_limit = c->u.set_qos.bps_limit;
    return vol_put(t, &v);
}

static int do_attach(struct fsm_txn *t, const struct idxcmd *c, struct idx_result *res)
{
    const typeof(c->u.attach) *a = &c->u.attach;
    struct index_vol v;
    int rc = find_vol(t, a->name, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    res->id = v.id;
    res->size = v.size;
    res->block_size = v.block_size;
    res->generation = v.generation;
    if (a->flags & IDX_ATTACH_RO) return 0;
    if (v.attach_mode == INDEX_ATTACH_RW && !str_eq(v.agent, a->agent) &&
        !(a->flags & IDX_ATTACH_FORCE)) {
        res->status = IDX_EBUSY;
        return 0;
    }
    v.generation++;
    v.attach_mode = INDEX_ATTACH_RW;
    str_copy(v.agent, a->agent);
    res->generation = v.generation;
    return vol_put(t, &v);
}

static int do_detach(struct fsm_txn *t, const struct idxcmd *c, struct idx_result *res)
{
    const typeof(c->u.detach) *a = &c->u.detach;
    struct index_vol v;
    int rc = index_txn_vol_by_id(t->ix, t->txn, a->vol_id, &v);
    if (rc == -ENOENT) res->status = IDX_ENOENT;
    if (rc) return rc == -ENOENT ? 0 : rc;
    if (a->generation != v.generation) {
        res->status = IDX_FENCED;
        return 0;
    }
    if (v.attach_mode != INDEX_ATTACH_RW) return 0; /* already detached: idempotent */
    if (!str_eq(v.agent, a->agent)) {
        res->status = IDX_FENCED;
        return 0;
    }
    v.attach_mode = INDEX_ATTACH_NONE;
    v.agent[0] = 0;
    return vol_put(t, &v);
}

/* ---- writes ------------------------------------------------------------------------- */

/* Account for W's blob before anything else: EINVAL / ESTALE in *ST, or
 * the blob registered (refcount 0, noted as possibly dead) if new. */
static int write_blob(struct fsm_txn *t, const struct idx_write *w, uint8_t *st)
{
    if (w->blob_id >= t->meta.next_blob) {
        *st = IDX_EINVAL;
        return 0;
    }
    struct index_blob b;
    int rc = index_txn_blob(t->ix, t->txn, w->blob_id, &b);
    if (rc == 0) {
        if (b.flags & INDEX_BLOB_DEAD) *st = IDX_ESTALE;
        else if (b.partition != w->partition || b.len != w->blob_len || b.csum != w->blob_csum)
            *st = IDX_EINVAL;
        return 0;
    }
    if (rc != -ENOENT) return rc;
    struct index_part p;
    if ((rc = index_txn_part(t->ix, t->txn, w->partition, &p)) == -ENOENT) {
        *st = IDX_EINVAL;
        return 0;
    }
    if (rc) return rc;
    b = (struct index_blob){.id = w->blob_id, .partition = w->partition, .len = w->blob_len,
                            .csum = w->blob_csum};
    uint8_t kb[8], vb[32];
    index_key_u64(kb, b.id);
    MDB_val k = {8, kb}, v = {index_enc_blob(vb, &b), vb};
    /* Blob ids grow over time, so a new blob usually goes at the end of the
     * table: MDB_APPEND then fills pages instead of splitting them in
     * half (index bytes per extent).  Any other id takes the normal path. */
    int mrc = mdb_put(t->txn, t->ix->dbi[IT_BLOBS], &k, &v, MDB_APPEND);
    if (mrc == MDB_KEYEXIST) mrc = mdb_put(t->txn, t->ix->dbi[IT_BLOBS], &k, &v, 0);
    if ((rc = index_mdb_err(mrc))) return rc;
    return dead_note(t, b.id);
}

struct blob_order {
    uint64_t id;
    uint32_t i;
};

static int blob_order_cmp(const void *a, const void *b)
{
    const struct blob_order *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int do_write_batch(struct fsm_txn *t, const struct idxcmd *c, struct idx_result *res)
{
    struct index_vol v = {0};
    struct index_layer top = {0};
    int have = 0; /* 1: v/top valid for v.id; -1: v.id does not exist */
    res->n = c->u.write_batch.n;
    /* Register the batch's blobs first, in ascending id order (the batch
     * itself is in volume offset order): the blobs table grows at its end.
     * The outcome per write is the same in any order. */
    struct blob_order order[IDXCMD_MAX_WRITES];
    uint8_t blob_st[IDXCMD_MAX_WRITES];
    uint32_t m = 0;
    for (uint32_t i = 0; i < res->n; i++) {
        struct idx_write w;
        idxcmd_write_get(c, i, &w);
        blob_st[i] = IDX_OK;
        if (w.kind == IDX_W_DATA) order[m++] = (struct blob_order){w.blob_id, i};
    }
    qsort(order, m, sizeof(order[0]), blob_order_cmp);
    for (uint32_t k = 0; k < m; k++) {
        struct idx_write w;
        idxcmd_write_get(c, order[k].i, &w);
        int rc = write_blob(t, &w, &blob_st[order[k].i]);
        if (rc) return rc;
    }
    for (uint32_t i = 0; i < res->n; i++) {
        struct idx_write w;
        idxcmd_write_get(c, i, &w);
        uint8_t st = blob_st[i];
        int rc;
        if (st == IDX_OK && (!have || v.id != w.vol_id)) {
            rc = index_txn_vol_by_id(t->ix, t->txn, w.vol_id, &v);
            v.id = w.vol_id;
            if (rc && rc != -ENOENT) return rc;
            have = rc ? -1 : 1;
            if (have == 1 && (rc = layer_get(t, v.top_layer, &top))) return rc;
        }
        if (st == IDX_OK) {
            if (have < 0) st = IDX_ENOENT;
            else if (v.attach_mode != INDEX_ATTACH_RW || w.generation != v.generation)
                st = IDX_FENCED;
            else if (w.off > v.size || w.len > v.size - w.off) st = IDX_ERANGE;
        }
        res->st[i] = st;
        if (st != IDX_OK) continue;
        struct index_ext e = {.blob_id = w.blob_id, .blob_off = w.blob_off};
        if (w.kind == IDX_W_ZERO || (w.kind == IDX_W_TRIM && top.parent))
            e.flags = INDEX_EXT_ZERO;
        rc = ext_put(t, top.id, w.off, w.len, w.kind == IDX_W_TRIM && !top.parent ? NULL : &e);
        if (rc) return rc;
    }
    return 0;
}

/* ---- nodes, partitions, blob ids --------------------------------------------------- */

static int node_put(struct fsm_txn *t, const struct index_node *n)
{
    uint8_t kb[8], vb[INDEX_VAL_MAX];
    index_key_u64(kb, n->id);
    MDB_val k = {8, kb}, d = {index_enc_node(vb, n), vb};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[IT_NODES], &k, &d, 0));
}

static int part_put(struct fsm_txn *t, const struct index_part *p)
{
    uint8_t kb[4], vb[40];
    util_put_be32(kb, p->id);
    MDB_val k = {4, kb}, d = {index_enc_part(vb, p), vb};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[IT_PARTITIONS], &k, &d, 0));
}

static int do_register_node(struct fsm_txn *t, const struct idxcmd *c, struct idx_result *res)
{
    const typeof(c->u.register_node) *a = &c->u.register_node;
    struct index_node n;
    int rc = index_txn_node(t->ix, t->txn, a->node_id, &n);
    if (rc == -ENOENT)
        n = (struct index_node){.id = a->node_id, .state = INDEX_NODE_UP,
                                .registered_index = t->index};
    else if (rc)
        return rc;
    memcpy(n.addr, a->addr.ptr, a->addr.len);
    n.addr[a->addr.len] = 0;
    n.capacity = a->capacity;
    n.used = a->used;
    res->id = n.id;
    return node_put(t, &n);
}

static int do_set_node_state(struct fsm_txn *t, const struct idxcmd *c, struct idx_result *res)
{
    struct index_node n;
    int rc = index_txn_node(t->ix, t->txn, c->u.set_node_state.node_id, &n);
    if (rc == -ENOENT) res->status = IDX_ENOENT;
    if (rc) return rc == -ENOENT ? 0 : rc;
    if (n.state == INDEX_NODE_RETIRED && c->u.set_node_state.state != INDEX_NODE_RETIRED) {
        res->status = IDX_EINVAL; /* retirement is final */
        return 0;
    }
    n.state = c->u.set_node_state.state;
    return node_put(t, &n);
}

/* A node a partition may use: 0 with *ST set on refusal, or -code. */
static int usable_node(struct fsm_txn *t, uint64_t id, uint8_t *st)
{
    struct index_node n;
    int rc = index_txn_node(t->ix, t->txn, id, &n);
    if (rc == -ENOENT) *st = IDX_ENOENT;
    else if (rc == 0 && n.state == INDEX_NODE_RETIRED) *st = IDX_EINVAL;
    return rc == -ENOENT ? 0 : rc;
}

static int do_create_partition(struct fsm_txn *t, const struct idxcmd *c,
                               struct idx_result *res)
{
    const typeof(c->u.create_partition) *a = &c->u.create_partition;
    struct index_part p;
    int rc = index_txn_part(t->ix, t->txn, a->part_id, &p);
    if (rc == 0) res->status = IDX_EEXIST;
    if (rc != -ENOENT) return rc;
    for (int i = 0; i < 3 && !res->status; i++)
        if ((rc = usable_node(t, a->nodes[i], &res->status))) return rc;
    if (res->status) return 0;
    p = (struct index_part){.id = a->part_id, .epoch = 1, .state = INDEX_PART_ACTIVE};
    memcpy(p.nodes, a->nodes, sizeof(p.nodes));
    res->id = p.id;
    return part_put(t, &p);
}

static int do_replace_replica(struct fsm_txn *t, const struct idxcmd *c,
                              struct idx_result *res)
{
    const typeof(c->u.replace_replica) *a = &c->u.replace_replica;
    struct index_part p;
    int rc = index_txn_part(t->ix, t->txn, a->part_id, &p);
    if (rc == -ENOENT) res->status = IDX_ENOENT;
    if (rc) return rc == -ENOENT ? 0 : rc;
    int slot = -1;
    for (int i = 0; i < 3; i++) {
        if (p.nodes[i] == a->old_node) slot = i;
        if (p.nodes[i] == a->new_node) res->status = IDX_EINVAL;
    }
    if (slot < 0) res->status = IDX_EINVAL;
    if (!res->status && (rc = usable_node(t, a->new_node, &res->status))) return rc;
    if (res->status) return 0;
    p.nodes[slot] = a->new_node;
    p.epoch++;
    res->id = p.epoch;
    return part_put(t, &p);
}

static int do_alloc_blob_ids(struct fsm_txn *t, const struct idxcmd *c, struct idx_result *res)
{
    if (t->meta.next_blob > (1ull << 62)) {
        res->status = IDX_ELIMIT;
        return 0;
    }
    res->id = t->meta.next_blob;
    t->meta.next_blob += c->u.alloc_blob_ids.count;
    return 0;
}

static int do_gc_done(struct fsm_txn *t, const struct idxcmd *c, struct idx_result *res)
{
    for (uint32_t i = 0; i < c->u.gc_done.n; i++) {
        uint8_t kb[8];
        index_key_u64(kb, idxcmd_gc_id(c, i));
        MDB_val k = {8, kb};
        int rc = index_mdb_err(mdb_del(t->txn, t->ix->dbi[IT_GC], &k, NULL));
        if (rc == -ENOENT) continue; /* not queued (or done before): idempotent */
        if (rc || (rc = index_mdb_err(mdb_del(t->txn, t->ix->dbi[IT_BLOBS], &k, NULL))))
            return rc == -ENOENT ? -BD_ECORRUPT : rc;
        res->id++;
    }
    return 0;
}

/* ---- snapshots and clones -------------------------------------------------------- */

static int do_snapshot_create(struct fsm_txn *t, const struct idxcmd *c,
                              struct idx_result *res)
{
    const typeof(c->u.snapshot_create) *a = &c->u.snapshot_create;
    struct index_vol v;
    struct index_snap s;
    int rc = find_vol(t, a->vol, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    rc = index_txn_snap(t->ix, t->txn, v.id, a->snap.ptr, a->snap.len, &s);
    if (rc == 0) res->status = IDX_EEXIST;
    if (rc != -ENOENT) return rc;
    uint32_t depth;
    if ((rc = layer_depth(t, v.top_layer, &depth))) return rc;
    if (depth >= INDEX_MAX_DEPTH) {
        res->status = IDX_ELIMIT;
        return 0;
    }
    struct index_layer old;
    uint64_t frozen = v.top_layer;
    if ((rc = layer_new(t, frozen, v.id, &v.top_layer)) || (rc = layer_get(t, frozen, &old)))
        return rc;
    old.is_top = 0;
    old.n_snaps++;
    if ((rc = layer_put(t, &old)) || (rc = vol_put(t, &v))) return rc;
    s = (struct index_snap){.vol_id = v.id, .layer = frozen, .size = v.size,
                            .created_index = t->index};
    str_copy(s.name, a->snap);
    res->id = frozen;
    return snap_put(t, &s);
}

static int do_snapshot_delete(struct fsm_txn *t, const struct idxcmd *c,
                              struct idx_result *res)
{
    const typeof(c->u.snapshot_delete) *a = &c->u.snapshot_delete;
    struct index_vol v;
    struct index_snap s;
    int rc = find_vol(t, a->vol, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    rc = index_txn_snap(t->ix, t->txn, v.id, a->snap.ptr, a->snap.len, &s);
    if (rc == -ENOENT) res->status = IDX_ENOENT;
    if (rc) return rc == -ENOENT ? 0 : rc;
    return snap_release(t, &s);
}

static int do_clone(struct fsm_txn *t, const struct idxcmd *c, struct idx_result *res)
{
    const typeof(c->u.clone) *a = &c->u.clone;
    struct index_vol v, other;
    struct index_snap s;
    int rc = find_vol(t, a->vol, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    rc = index_txn_snap(t->ix, t->txn, v.id, a->snap.ptr, a->snap.len, &s);
    if (rc == -ENOENT) res->status = IDX_ENOENT;
    if (rc) return rc == -ENOENT ? 0 : rc;
    uint8_t st;
    if ((rc = find_vol(t, a->new_name, &other, &st)) < 0) return rc;
    if (rc == 0) {
        res->status = IDX_EEXIST;
        return 0;
    }
    uint32_t depth;
    if ((rc = layer_depth(t, s.layer, &depth))) return rc;
    if (depth >= INDEX_MAX_DEPTH) {
        res->status = IDX_ELIMIT;
        return 0;
    }
    return new_volume(t, a->new_name, s.size, v.block_size, v.iops_limit, v.bps_limit, s.layer,
                      res);
}

/* ---- apply ------------------------------------------------------------------------------ */

static int apply_one(struct fsm_txn *t, const uint8_t *buf, size_t len, struct idx_result *res)
{
    struct idxcmd c;
    memset(res, 0, offsetof(struct idx_result, st));
    if (idxcmd_decode(buf, len, &c) != 0) {
        /* Never proposed by a correct proxy (the codec refuses it); a
         * deterministic no-op all the same. */
        res->status = IDX_EINVAL;
        return 0;
    }
    res->type = c.type;
    int rc;
    switch (c.type) {
#define X(code, NAME, name) case code: rc = do_##name(t, &c, res); break;
        IDXCMD_TYPES(X)
#undef X
    default: rc = -BD_ECORRUPT;
    }
    if (rc == 0) rc = dead_finish(t);
    t->ix->n_dead = 0;
    return rc;
}

static int txn_begin(struct index *ix, struct fsm_txn *t)
{
    memset(t, 0, sizeof(*t));
    t->ix = ix;
    ix->n_dead = 0;
    int rc = index_mdb_err(mdb_txn_begin(ix->env, NULL, 0, &t->txn));
    if (rc) return rc;
    if ((rc = index_txn_get_meta(ix, t->txn, &t->meta)) ||
        (rc = index_mdb_err(mdb_cursor_open(t->txn, ix->dbi[IT_EXTENTS], &t->cur)))) {
        mdb_txn_abort(t->txn);
        return rc == -ENOENT ? -BD_ECORRUPT : rc;
    }
    return 0;
}

static int txn_commit(struct fsm_txn *t, struct index_meta *m0)
{
    int rc = 0;
    if (t->meta.next_vol != m0->next_vol)
        rc = index_put_meta_u64(t->ix, t->txn, "next_vol", t->meta.next_vol);
    if (!rc && t->meta.next_layer != m0->next_layer)
        rc = index_put_meta_u64(t->ix, t->txn, "next_layer", t->meta.next_layer);
    if (!rc && t->meta.next_blob != m0->next_blob)
        rc = index_put_meta_u64(t->ix, t->txn, "next_blob", t->meta.next_blob);
    if (!rc) rc = index_put_meta_u64(t->ix, t->txn, "applied", t->meta.applied);
    mdb_cursor_close(t->cur);
    if (rc) {
        mdb_txn_abort(t->txn);
        return rc;
    }
    return index_mdb_err(mdb_txn_commit(t->txn));
}

static void txn_abort(struct fsm_txn *t, int rc)
{
    snprintf(t->ix->errbuf, sizeof(t->ix->errbuf), "apply of entry %llu: %s",
             (unsigned long long)t->index, bd_strerror(rc));
    mdb_cursor_close(t->cur);
    mdb_txn_abort(t->txn);
    t->ix->n_dead = 0;
}

int fsm_apply_batch(struct index *ix, struct fsm_entry *e, uint32_t n,
                    void (*decided)(void *arg), void *arg)
{
    for (uint32_t i = 0; i < n; i++)
        if (e[i].index == 0 || (i && e[i].index <= e[i - 1].index)) return -EINVAL;
    struct fsm_txn t;
    int rc = txn_begin(ix, &t);
    if (rc) return rc;
    struct index_meta m0 = t.meta;
    bool changed = false;
    for (uint32_t i = 0; i < n; i++) {
        if (e[i].index <= t.meta.applied) {
            memset(e[i].res, 0, offsetof(struct idx_result, st));
            e[i].res->status = IDX_SKIPPED;
            continue;
        }
        t.index = e[i].index;
        if ((rc = apply_one(&t, e[i].cmd, e[i].len, e[i].res))) {
            txn_abort(&t, rc);
            return rc;
        }
        t.meta.applied = e[i].index;
        changed = true;
    }
    if (decided) decided(arg);
    if (!changed) {
        mdb_cursor_close(t.cur);
        mdb_txn_abort(t.txn);
        return 0;
    }
    return txn_commit(&t, &m0);
}

int fsm_apply(struct index *ix, uint64_t raft_index, const uint8_t *cmd, size_t len,
              struct idx_result *res)
{
    struct fsm_entry e = {.index = raft_index, .cmd = cmd, .len = len, .res = res};
    return fsm_apply_batch(ix, &e, 1, NULL, NULL);
}
