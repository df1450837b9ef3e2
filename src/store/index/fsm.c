/* fsm.c: apply index commands to the index, one LMDB write txn per entry
 * or batch (contract in fsm.h; extent and layer mechanics in extmap.c).
 *
 * Each command follows "check, then act": every refusal is decided before
 * the first write, so a refused command leaves the tables untouched (only
 * `applied` moves).  The one exception is deliberate: a DATA write that is
 * refused (fenced, out of range, unknown volume) still registers its blob
 * with refcount 0, so extmap_dead_finish queues it for deletion: the bytes a
 * fenced agent managed to put on blob servers become garbage, never data
 * (C10), and never leak.
 *
 * Fencing (C10).  Every read-write ATTACH bumps the volume's generation
 * (never decreasing), and a write is accepted only while the volume is
 * attached read-write AND carries exactly the current generation.  A second
 * agent cannot attach while another holds the volume, unless it asks for a
 * takeover (IDXCMD_ATTACH_FORCE, after the first agent was declared dead):
 * the bump is what fences the old agent, at the Raft commit of the attach.
 * The same agent re-attaching (a restart) also bumps, fencing its own
 * in-flight writes from before the restart.  A read-write attach raises
 * the generation only from the base it names (a compare-and-set): the
 * copies of one attach (the agent's resends, the proxy's retries) share
 * their base, so one applies at most, and a copy committed after the agent
 * attached again, on a newer base, is refused as FENCED instead of fencing
 * the attach it was answered (idxcmd.h ATTACH).  A read-only attach
 * changes nothing and just reports the volume.
 *
 * Assignment.  ASSIGN is the control plane's decision of which agent may
 * attach a volume at all (proxies check VOL_ATTACH against it, and apply
 * checks again at ATTACH: index_vol_may_attach), read-only or read-write,
 * and for which NBD client.  It never takes a volume from an agent that holds it read-write
 * (a runtime attach whose agent or mode the new assignment would not
 * allow) unless FORCE says so: then that attach ends here (mode NONE), so
 * the holder's later writes and flushes are fenced at their commit, as by
 * a force-detach (C10).  Without FORCE the answer is EBUSY, and so it is
 * for a volume assigned to another agent.  Detaching (an empty agent)
 * without FORCE lets the holder ship what it still holds and detach on
 * its own.  The assigns table mirrors every assignment for the agents'
 * listing; a volume is deleted only once detached.
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
#include "store/index/fsm.h"
#include "store/index/fsm_int.h"
#include "base/bd.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- record helpers ---------------------------------------------------------- */

static int vol_put(struct fsm_txn *t, const struct index_vol *v)
{
    return fsm_rec_vol_put(t, v);
}

static int vol_del(struct fsm_txn *t, const struct index_vol *v)
{
    uint8_t kb[INDEX_ID_KEY_LEN];
    MDB_val k = {strlen(v->name), (void *)v->name};
    int rc = index_mdb_err(mdb_del(t->txn, t->ix->dbi[INDEX_T_VOLUMES], &k, NULL));
    if (rc) return rc;
    index_key_u64(kb, v->id);
    MDB_val ki = {sizeof(kb), kb};
    return index_mdb_err(mdb_del(t->txn, t->ix->dbi[INDEX_T_VOLIDS], &ki, NULL));
}

/* The assigns record of volume V (for its current assign_agent). */
static int assign_rec(struct fsm_txn *t, const struct index_vol *v, bool put)
{
    uint8_t kb[INDEX_ASSIGN_KEY_MAX];
    MDB_val k = {index_assign_key(kb, v->assign_agent, strlen(v->assign_agent), v->name,
                                  strlen(v->name)),
                 kb},
            d = {0, (void *)""};
    MDB_dbi dbi = t->ix->dbi[INDEX_T_ASSIGNS];
    return index_mdb_err(put ? mdb_put(t->txn, dbi, &k, &d, 0) : mdb_del(t->txn, dbi, &k, NULL));
}

static int snap_del(struct fsm_txn *t, const struct index_snap *s)
{
    uint8_t kb[INDEX_ID_KEY_LEN + INDEX_NAME_MAX];
    MDB_val k = {index_snap_key(kb, s->vol_id, s->name, strlen(s->name)), kb};
    return index_mdb_err(mdb_del(t->txn, t->ix->dbi[INDEX_T_SNAPSHOTS], &k, NULL));
}

/* Drop one snapshot's reference on its layer. */
static int snap_release(struct fsm_txn *t, const struct index_snap *s)
{
    struct index_layer l;
    int rc;
    if ((rc = snap_del(t, s)) || (rc = extmap_layer_get(t, s->layer, &l))) return rc;
    if (l.n_snaps == 0) return -BD_ECORRUPT;
    l.n_snaps--;
    if ((rc = extmap_layer_put(t, &l))) return rc;
    return extmap_layer_release(t, l.id);
}

static void str_copy(char *dst, struct idxcmd_str s)
{
    memcpy(dst, s.ptr, s.len);
    dst[s.len] = 0;
}

static bool str_eq(const char *a, struct idxcmd_str s)
{
    return strlen(a) == s.len && memcmp(a, s.ptr, s.len) == 0;
}

/* A volume by name: 0, or the refusal (IDXCMD_ST_ENOENT) in *ST with 1, or -code. */
static int find_vol(struct fsm_txn *t, struct idxcmd_str name, struct index_vol *v, uint8_t *st)
{
    return fsm_rec_find_vol(t, name, v, st);
}

static int move_put(struct fsm_txn *t, const struct index_move *m)
{
    uint8_t kb[INDEX_MOVE_KEY_LEN], vb[INDEX_VAL_MAX];
    index_key_move(kb, m->part, m->node);
    MDB_val k = {sizeof(kb), kb}, d = {index_enc_move(vb, m), vb};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[INDEX_T_MOVES], &k, &d, 0));
}

static int move_del(struct fsm_txn *t, uint32_t part, uint64_t node)
{
    uint8_t kb[INDEX_MOVE_KEY_LEN];
    index_key_move(kb, part, node);
    MDB_val k = {sizeof(kb), kb};
    int rc = index_mdb_err(mdb_del(t->txn, t->ix->dbi[INDEX_T_MOVES], &k, NULL));
    return rc == -ENOENT ? 0 : rc;
}

/* ---- volumes ------------------------------------------------------------------ */

/* A new volume NAME over PARENT_LAYER (0: none) with QOS's profile and
 * limits (counted in its profile). */
static int new_volume(struct fsm_txn *t, struct idxcmd_str name, uint64_t size, uint32_t bs,
                      const struct index_vol *qos, uint64_t parent_layer,
                      struct idxcmd_result *res)
{
    struct index_vol v = {.id = t->meta.next_vol++, .size = size, .block_size = bs,
                          .state = INDEX_VOL_READY, .created_index = t->index, .qos = qos->qos};
    memcpy(v.profile, qos->profile, sizeof(v.profile));
    str_copy(v.name, name);
    int rc = extmap_layer_new(t, parent_layer, v.id, &v.top_layer);
    if (rc || (rc = fsm_qos_vol_added(t, &v))) return rc;
    res->id = v.id;
    return vol_put(t, &v);
}

static int do_create_volume(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.create_volume) *a = &c->u.create_volume;
    struct index_vol v;
    uint8_t st;
    bool full;
    int rc = find_vol(t, a->name, &v, &st);
    if (rc < 0) return rc;
    if (rc == 0) {
        res->status = IDXCMD_ST_EEXIST;
        return 0;
    }
    if ((rc = fsm_rec_full(t, &full))) return rc;
    if (full) {
        res->status = IDXCMD_ST_ENOSPC;
        return 0;
    }
    if ((rc = fsm_qos_new_volume(t, c, &v, res)) || res->status) return rc;
    return new_volume(t, a->name, a->size, a->block_size, &v, 0, res);
}

static int do_delete_volume(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    struct index_vol v;
    int rc = find_vol(t, c->u.delete_volume.name, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    if (v.attach_mode == INDEX_ATTACH_RW || v.assign_mode != INDEX_ASSIGN_NONE) {
        res->status = IDXCMD_ST_EBUSY;
        return 0;
    }
    struct index_layer top;
    if ((rc = vol_del(t, &v)) || (rc = extmap_layer_get(t, v.top_layer, &top)) ||
        (rc = fsm_life_forget(t, v.id)) || (rc = fsm_qos_vol_removed(t, &v)))
        return rc;
    top.is_top = 0;
    if ((rc = extmap_layer_put(t, &top)) || (rc = extmap_layer_release(t, top.id))) return rc;
    /* Then its snapshots, one at a time (each release may merge layers). */
    for (;;) {
        struct index_snap s;
        uint8_t kb[INDEX_ID_KEY_LEN];
        index_key_u64(kb, v.id);
        MDB_val k = {sizeof(kb), kb}, d;
        MDB_cursor *cur;
        if ((rc = index_mdb_err(mdb_cursor_open(t->txn, t->ix->dbi[INDEX_T_SNAPSHOTS], &cur))))
            return rc;
        rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
        bool more = rc == 0 && k.mv_size > INDEX_ID_KEY_LEN && index_key_get_u64(k.mv_data) == v.id;
        rc = rc == MDB_NOTFOUND ? 0 : index_mdb_err(rc);
        if (more) rc = index_dec_snap(&k, &d, &s);
        mdb_cursor_close(cur);
        if (rc || !more) return rc;
        if ((rc = snap_release(t, &s))) return rc;
    }
}

static int do_resize_volume(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    struct index_vol v;
    int rc = find_vol(t, c->u.resize_volume.name, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    uint64_t size = c->u.resize_volume.size;
    if (size < v.size) res->status = IDXCMD_ST_ERANGE;
    else if (size % v.block_size) res->status = IDXCMD_ST_EINVAL;
    if (res->status || size == v.size) return 0;
    v.size = size;
    return vol_put(t, &v);
}

static int do_set_qos(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    return fsm_qos_set(t, c, res);
}

static int do_attach(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.attach) *a = &c->u.attach;
    struct index_vol v;
    int rc = find_vol(t, a->name, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    res->id = v.id;
    res->size = v.size;
    res->block_size = v.block_size;
    res->generation = v.generation;
    if (index_vol_may_attach(&v, a->agent.ptr, a->agent.len, !(a->flags & IDXCMD_ATTACH_RO))) {
        res->status = IDXCMD_ST_EACCES;
        return 0;
    }
    if (a->flags & IDXCMD_ATTACH_RO) return 0;
    if (v.attach_mode == INDEX_ATTACH_RW && !str_eq(v.agent, a->agent) &&
        !(a->flags & IDXCMD_ATTACH_FORCE)) {
        res->status = IDXCMD_ST_EBUSY;
        return 0;
    }
    if (v.generation != a->base_generation) {
        res->status = IDXCMD_ST_FENCED; /* res->generation: the one to base on */
        return 0;
    }
    v.generation++;
    v.attach_mode = INDEX_ATTACH_RW;
    str_copy(v.agent, a->agent);
    res->generation = v.generation;
    return vol_put(t, &v);
}

static int do_detach(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.detach) *a = &c->u.detach;
    struct index_vol v;
    int rc = index_txn_vol_by_id(t->ix, t->txn, a->vol_id, &v);
    if (rc == -ENOENT) res->status = IDXCMD_ST_ENOENT;
    if (rc) return rc == -ENOENT ? 0 : rc;
    if (a->generation != v.generation) {
        res->status = IDXCMD_ST_FENCED;
        return 0;
    }
    if (v.attach_mode != INDEX_ATTACH_RW) return 0; /* already detached: idempotent */
    if (!str_eq(v.agent, a->agent)) {
        res->status = IDXCMD_ST_FENCED;
        return 0;
    }
    v.attach_mode = INDEX_ATTACH_NONE;
    v.agent[0] = 0;
    return vol_put(t, &v);
}

static int do_assign(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.assign) *a = &c->u.assign;
    struct index_vol v;
    int rc = find_vol(t, a->name, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    res->id = v.id;
    res->size = v.size;
    res->block_size = v.block_size;
    res->generation = v.generation;
    bool force = a->flags & IDXCMD_ASSIGN_FORCE, ro = a->flags & IDXCMD_ASSIGN_RO;
    bool elsewhere = v.assign_mode != INDEX_ASSIGN_NONE && a->agent.len &&
                     !str_eq(v.assign_agent, a->agent);
    /* The read-write attach the new assignment would not allow. */
    bool holder_out = v.attach_mode == INDEX_ATTACH_RW && a->agent.len &&
                      (ro || !str_eq(v.agent, a->agent));
    if ((elsewhere || holder_out) && !force) {
        res->status = IDXCMD_ST_EBUSY;
        return 0;
    }
    if (v.attach_mode == INDEX_ATTACH_RW && force && (holder_out || !a->agent.len)) {
        v.attach_mode = INDEX_ATTACH_NONE; /* fences the holder's later writes */
        v.agent[0] = 0;
    }
    if (v.assign_mode != INDEX_ASSIGN_NONE && (rc = assign_rec(t, &v, false))) return rc;
    v.assign_mode = !a->agent.len ? INDEX_ASSIGN_NONE : ro ? INDEX_ASSIGN_RO : INDEX_ASSIGN_RW;
    str_copy(v.assign_agent, a->agent);
    str_copy(v.assign_client, a->client);
    if (v.assign_mode != INDEX_ASSIGN_NONE && (rc = assign_rec(t, &v, true))) return rc;
    return vol_put(t, &v);
}

/* ---- writes ------------------------------------------------------------------------- */

/* Account for W's blob before anything else: EINVAL / ESTALE in *ST, or
 * the blob registered (refcount 0, noted as possibly dead) if new. */
static int write_blob(struct fsm_txn *t, const struct idxcmd_write *w, uint8_t *st)
{
    return fsm_rec_blob(t, w, st);
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

static int do_write_batch(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
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
    bool full;
    int frc = fsm_rec_full(t, &full);
    if (frc) return frc;
    for (uint32_t i = 0; i < res->n; i++) {
        struct idxcmd_write w;
        idxcmd_write_get(c, i, &w);
        blob_st[i] = IDXCMD_ST_OK;
        if (w.kind != IDXCMD_W_DATA) continue;
        /* Full: new data is refused before its blob is even registered
         * (the copies on the servers become orphans for repair to sweep);
         * zeroes and trims go on, they free space. */
        if (full) blob_st[i] = IDXCMD_ST_ENOSPC;
        else order[m++] = (struct blob_order){w.blob_id, i};
    }
    qsort(order, m, sizeof(order[0]), blob_order_cmp);
    for (uint32_t k = 0; k < m; k++) {
        struct idxcmd_write w;
        idxcmd_write_get(c, order[k].i, &w);
        int rc = write_blob(t, &w, &blob_st[order[k].i]);
        if (rc) return rc;
    }
    for (uint32_t i = 0; i < res->n; i++) {
        struct idxcmd_write w;
        idxcmd_write_get(c, i, &w);
        uint8_t st = blob_st[i];
        int rc;
        if (st == IDXCMD_ST_OK && (!have || v.id != w.vol_id)) {
            rc = index_txn_vol_by_id(t->ix, t->txn, w.vol_id, &v);
            v.id = w.vol_id;
            if (rc && rc != -ENOENT) return rc;
            have = rc ? -1 : 1;
            if (have == 1 && (rc = extmap_layer_get(t, v.top_layer, &top))) return rc;
        }
        if (st == IDXCMD_ST_OK) {
            if (have < 0) st = IDXCMD_ST_ENOENT;
            else if (v.attach_mode != INDEX_ATTACH_RW || w.generation != v.generation)
                st = IDXCMD_ST_FENCED;
            else if (w.off > v.size || w.len > v.size - w.off) st = IDXCMD_ST_ERANGE;
        }
        res->st[i] = st;
        if (st != IDXCMD_ST_OK) continue;
        struct index_ext e = {.blob_id = w.blob_id, .blob_off = w.blob_off};
        if (w.kind == IDXCMD_W_ZERO || (w.kind == IDXCMD_W_TRIM && top.parent))
            e.flags = INDEX_EXT_ZERO;
        rc = extmap_put(t, &top, w.off, w.len, w.kind == IDXCMD_W_TRIM && !top.parent ? NULL : &e);
        if (rc) return rc;
    }
    return 0;
}

/* ---- nodes, partitions, blob ids --------------------------------------------------- */

static int node_put(struct fsm_txn *t, const struct index_node *n)
{
    uint8_t kb[INDEX_ID_KEY_LEN], vb[INDEX_VAL_MAX];
    index_key_u64(kb, n->id);
    MDB_val k = {sizeof(kb), kb}, d = {index_enc_node(vb, n), vb};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[INDEX_T_NODES], &k, &d, 0));
}

static int part_put(struct fsm_txn *t, const struct index_part *p)
{
    uint8_t kb[INDEX_PART_KEY_LEN], vb[INDEX_VAL_MAX];
    index_key_part(kb, p->id);
    MDB_val k = {sizeof(kb), kb}, d = {index_enc_part(vb, p), vb};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[INDEX_T_PARTITIONS], &k, &d, 0));
}

static int do_register_node(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
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

/* Is node ID a member of any partition?  0 with *USED, or -code. */
static int node_in_use(struct fsm_txn *t, uint64_t id, bool *used)
{
    MDB_cursor *cur;
    *used = false;
    int rc = index_mdb_err(mdb_cursor_open(t->txn, t->ix->dbi[INDEX_T_PARTITIONS], &cur));
    if (rc) return rc;
    MDB_val k, v;
    int mrc;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && !*used;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct index_part p;
        if (k.mv_size != INDEX_PART_KEY_LEN ||
            (rc = index_dec_part(index_key_get_part(k.mv_data), &v, &p))) {
            rc = rc ? rc : -BD_ECORRUPT;
            break;
        }
        *used = p.nodes[0] == id || p.nodes[1] == id || p.nodes[2] == id;
    }
    mdb_cursor_close(cur);
    if (rc) return rc;
    return mrc == 0 || mrc == MDB_NOTFOUND ? 0 : index_mdb_err(mrc);
}

static int do_set_node_state(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    struct index_node n;
    int rc = index_txn_node(t->ix, t->txn, c->u.set_node_state.node_id, &n);
    if (rc == -ENOENT) res->status = IDXCMD_ST_ENOENT;
    if (rc) return rc == -ENOENT ? 0 : rc;
    if (n.state == INDEX_NODE_RETIRED && c->u.set_node_state.state != INDEX_NODE_RETIRED) {
        res->status = IDXCMD_ST_EINVAL; /* retirement is final */
        return 0;
    }
    if (c->u.set_node_state.state == INDEX_NODE_RETIRED && n.state != INDEX_NODE_RETIRED) {
        bool used;
        if ((rc = node_in_use(t, n.id, &used))) return rc;
        if (used) {
            res->status = IDXCMD_ST_EBUSY; /* drain it first: it still holds replicas */
            return 0;
        }
    }
    n.state = c->u.set_node_state.state;
    return node_put(t, &n);
}

/* A node a partition may use: 0 with *ST set on refusal, or -code.  A
 * retired server is gone; a draining one is being emptied. */
static int usable_node(struct fsm_txn *t, uint64_t id, uint8_t *st)
{
    struct index_node n;
    int rc = index_txn_node(t->ix, t->txn, id, &n);
    if (rc == -ENOENT) *st = IDXCMD_ST_ENOENT;
    else if (rc == 0 && (n.state == INDEX_NODE_RETIRED || n.state == INDEX_NODE_DRAINING))
        *st = IDXCMD_ST_EINVAL;
    return rc == -ENOENT ? 0 : rc;
}

static int do_create_partition(struct fsm_txn *t, const struct idxcmd *c,
                               struct idxcmd_result *res)
{
    const typeof(c->u.create_partition) *a = &c->u.create_partition;
    struct index_part p;
    int rc = index_txn_part(t->ix, t->txn, a->part_id, &p);
    if (rc == 0) res->status = IDXCMD_ST_EEXIST;
    if (rc != -ENOENT) return rc;
    for (int i = 0; i < 3 && !res->status; i++)
        if ((rc = usable_node(t, a->nodes[i], &res->status))) return rc;
    if (res->status) return 0;
    p = (struct index_part){.id = a->part_id, .epoch = 1, .state = INDEX_PART_ACTIVE};
    memcpy(p.nodes, a->nodes, sizeof(p.nodes));
    res->id = p.id;
    return part_put(t, &p);
}

/* Partition PART_ID's member OLD becomes NEW (a usable node, not yet a
 * member), at a new epoch (res->id), into *P; a move to OLD ends with it.
 * REPLACE_REPLICA and MOVE_REPLICA both. */
static int swap_member(struct fsm_txn *t, uint32_t part_id, uint64_t old_node,
                       uint64_t new_node, struct index_part *p, struct idxcmd_result *res)
{
    int rc = index_txn_part(t->ix, t->txn, part_id, p);
    if (rc == -ENOENT) res->status = IDXCMD_ST_ENOENT;
    if (rc) return rc == -ENOENT ? 0 : rc;
    int slot = -1;
    for (int i = 0; i < 3; i++) {
        if (p->nodes[i] == old_node) slot = i;
        if (p->nodes[i] == new_node) res->status = IDXCMD_ST_EINVAL;
    }
    if (slot < 0) res->status = IDXCMD_ST_EINVAL;
    if (!res->status && (rc = usable_node(t, new_node, &res->status))) return rc;
    if (res->status) return 0;
    p->nodes[slot] = new_node;
    p->epoch++;
    res->id = p->epoch;
    if ((rc = part_put(t, p))) return rc;
    return move_del(t, p->id, old_node);
}

static int do_replace_replica(struct fsm_txn *t, const struct idxcmd *c,
                              struct idxcmd_result *res)
{
    const typeof(c->u.replace_replica) *a = &c->u.replace_replica;
    struct index_part p;
    return swap_member(t, a->part_id, a->old_node, a->new_node, &p, res);
}

static int do_alloc_blob_ids(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    if (t->meta.next_blob > (1ull << 62)) {
        res->status = IDXCMD_ST_ELIMIT;
        return 0;
    }
    res->id = t->meta.next_blob;
    t->meta.next_blob += c->u.alloc_blob_ids.count;
    return 0;
}

static int do_gc_done(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    for (uint32_t i = 0; i < c->u.gc_done.n; i++) {
        uint8_t kb[INDEX_ID_KEY_LEN];
        index_key_u64(kb, idxcmd_gc_id(c, i));
        MDB_val k = {sizeof(kb), kb};
        int rc = index_mdb_err(mdb_del(t->txn, t->ix->dbi[INDEX_T_GC], &k, NULL));
        if (rc == -ENOENT) continue; /* not queued (or done before): idempotent */
        struct index_blob b;
        if (rc || (rc = index_txn_blob(t->ix, t->txn, idxcmd_gc_id(c, i), &b)) ||
            (rc = index_mdb_err(mdb_del(t->txn, t->ix->dbi[INDEX_T_BLOBS], &k, NULL))))
            return rc == -ENOENT ? -BD_ECORRUPT : rc;
        if (BD_NEVER(t->meta.dead_bytes < b.len)) return -BD_ECORRUPT;
        t->meta.dead_bytes -= b.len;
        res->id++;
    }
    return 0;
}

/* ---- snapshots and clones -------------------------------------------------------- */

static int do_snapshot_create(struct fsm_txn *t, const struct idxcmd *c,
                              struct idxcmd_result *res)
{
    const typeof(c->u.snapshot_create) *a = &c->u.snapshot_create;
    struct index_vol v;
    int rc = find_vol(t, a->vol, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    if ((rc = fsm_life_freeze_check(t, &v, a->snap, &res->status)) || res->status) return rc;
    return fsm_life_freeze(t, &v, a->snap, 0, 0, &res->id);
}

static int do_snapshot_delete(struct fsm_txn *t, const struct idxcmd *c,
                              struct idxcmd_result *res)
{
    const typeof(c->u.snapshot_delete) *a = &c->u.snapshot_delete;
    struct index_vol v;
    struct index_snap s;
    int rc = find_vol(t, a->vol, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    rc = index_txn_snap(t->ix, t->txn, v.id, a->snap.ptr, a->snap.len, &s);
    if (rc == -ENOENT) res->status = IDXCMD_ST_ENOENT;
    if (rc) return rc == -ENOENT ? 0 : rc;
    /* A clone not yet flattened reads through it: 409 until it is. */
    if ((rc = fsm_life_snap_busy(t, &s, &res->status)) || res->status) return rc;
    return snap_release(t, &s);
}

static int do_clone(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.clone) *a = &c->u.clone;
    struct index_vol v, other;
    struct index_snap s;
    int rc = find_vol(t, a->vol, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    rc = index_txn_snap(t->ix, t->txn, v.id, a->snap.ptr, a->snap.len, &s);
    if (rc == -ENOENT) res->status = IDXCMD_ST_ENOENT;
    if (rc) return rc == -ENOENT ? 0 : rc;
    uint8_t st;
    if ((rc = find_vol(t, a->new_name, &other, &st)) < 0) return rc;
    if (rc == 0) {
        res->status = IDXCMD_ST_EEXIST;
        return 0;
    }
    bool full;
    if ((rc = fsm_rec_full(t, &full))) return rc;
    if (full) {
        res->status = IDXCMD_ST_ENOSPC;
        return 0;
    }
    uint32_t depth;
    if ((rc = extmap_layer_depth(t, s.layer, &depth))) return rc;
    if (depth >= INDEX_MAX_DEPTH) {
        res->status = IDXCMD_ST_ELIMIT;
        return 0;
    }
    /* A clone takes its source's profile and limits. */
    return new_volume(t, a->new_name, s.size, v.block_size, &v, s.layer, res);
}

/* ---- the cluster's shape (commands 40 and up) ------------------------------------------ */

static int do_reap(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    t->budget = c->u.reap.budget;
    return extmap_reap(t, &res->id);
}

static int do_index_limit(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    (void)res;
    t->meta.limit_pages = c->u.index_limit.max_pages;
    return 0;
}

static int do_node_domain(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.node_domain) *a = &c->u.node_domain;
    struct index_node n;
    int rc = index_txn_node(t->ix, t->txn, a->node_id, &n);
    if (rc == -ENOENT) res->status = IDXCMD_ST_ENOENT;
    if (rc) return rc == -ENOENT ? 0 : rc;
    str_copy(n.zone, a->zone);
    str_copy(n.rack, a->rack);
    str_copy(n.host, a->host);
    res->id = n.id;
    return node_put(t, &n);
}

/* Put NEW in place of OLD in a partition (epoch + 1, as REPLACE_REPLICA)
 * and open its move record: NEW holds nothing yet, and the leader fills it
 * from the other members (and OLD while it is up), checkpointing with
 * MOVE_MARK.  A move record OLD had (it was itself being filled) goes:
 * what it had copied leaves with it. */
static int do_move_replica(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.move_replica) *a = &c->u.move_replica;
    struct index_part p;
    int rc = swap_member(t, a->part_id, a->old_node, a->new_node, &p, res);
    if (rc || res->status) return rc;
    struct index_move m = {.part = p.id, .node = a->new_node, .from = a->old_node,
                           .reason = a->reason, .started_index = t->index};
    return move_put(t, &m);
}

/* Checkpoint a move: every live blob with an id at or below CURSOR is on
 * NODE.  A checkpoint only goes forward; DONE closes the move. */
static int do_move_mark(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.move_mark) *a = &c->u.move_mark;
    struct index_move m;
    int rc = index_txn_move(t->ix, t->txn, a->part_id, a->node, &m);
    if (rc == -ENOENT) res->status = IDXCMD_ST_ENOENT;
    if (rc) return rc == -ENOENT ? 0 : rc;
    if (a->cursor < m.cursor || a->bytes_done < m.bytes_done) {
        res->status = IDXCMD_ST_EINVAL;
        return 0;
    }
    if (a->done) return move_del(t, a->part_id, a->node);
    m.cursor = a->cursor;
    m.bytes_done = a->bytes_done;
    return move_put(t, &m);
}

/* ---- the data-lifecycle commands (fsm_life.c) ---------------------------------------- */

static int do_repoint(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    return fsm_life_repoint(t, c, res);
}
static int do_rollback(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    return fsm_life_rollback(t, c, res);
}
static int do_snapshot_group(struct fsm_txn *t, const struct idxcmd *c,
                             struct idxcmd_result *res)
{
    return fsm_life_snapshot_group(t, c, res);
}
static int do_flatten_start(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    return fsm_life_flatten_start(t, c, res);
}
static int do_flatten_fill(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    return fsm_life_flatten_fill(t, c, res);
}
static int do_flatten_done(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    return fsm_life_flatten_done(t, c, res);
}
static int do_import_begin(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    return fsm_life_import_begin(t, c, res);
}
static int do_import_end(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    return fsm_life_import_end(t, c, res);
}

/* ---- QoS (fsm_qos.c) -------------------------------------------------------------------- */

static int do_qos_profile_put(struct fsm_txn *t, const struct idxcmd *c,
                              struct idxcmd_result *res)
{
    return fsm_qos_profile_put(t, c, res);
}
static int do_qos_profile_delete(struct fsm_txn *t, const struct idxcmd *c,
                                 struct idxcmd_result *res)
{
    return fsm_qos_profile_delete(t, c, res);
}


/* ---- apply ------------------------------------------------------------------------------ */

static int apply_one(struct fsm_txn *t, const uint8_t *buf, size_t len, struct idxcmd_result *res)
{
    struct idxcmd c;
    memset(res, 0, offsetof(struct idxcmd_result, st));
    if (idxcmd_decode(buf, len, &c) != 0) {
        /* Never proposed by a correct proxy (the codec refuses it); a
         * deterministic no-op all the same. */
        res->status = IDXCMD_ST_EINVAL;
        return 0;
    }
    res->type = c.type;
    t->budget = IDXCMD_REAP_BUDGET;
    int rc;
    switch (c.type) {
#define X(code, NAME, name) case code: rc = do_##name(t, &c, res); break;
        IDXCMD_TYPES(X)
#undef X
    default: rc = -BD_ECORRUPT;
    }
    if (rc == 0) rc = extmap_dead_finish(t);
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
        (rc = index_mdb_err(mdb_cursor_open(t->txn, ix->dbi[INDEX_T_EXTENTS], &t->cur)))) {
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
    if (!rc && t->meta.limit_pages != m0->limit_pages)
        rc = index_put_meta_u64(t->ix, t->txn, "limit_pages", t->meta.limit_pages);
    if (!rc && (t->meta.data_bytes != m0->data_bytes || t->meta.blob_bytes != m0->blob_bytes ||
                t->meta.dead_bytes != m0->dead_bytes || t->meta.rewrite_layer != m0->rewrite_layer ||
                t->meta.rewrite_off != m0->rewrite_off ||
                t->meta.rewritten_bytes != m0->rewritten_bytes))
        rc = index_put_meta_totals(t->ix, t->txn, &t->meta);
    if (!rc) rc = index_put_meta_u64(t->ix, t->txn, "applied", t->meta.applied);
    mdb_cursor_close(t->cur);
    if (rc) {
        mdb_txn_abort(t->txn);
        return rc;
    }
    return index_mdb_err(mdb_txn_commit(t->txn));
}

static void txn_abort(struct fsm_txn *t)
{
    mdb_cursor_close(t->cur);
    mdb_txn_abort(t->txn);
    t->ix->n_dead = 0;
}

static bool entries_increase(const struct fsm_entry *e, uint32_t n, uint64_t after)
{
    for (uint32_t i = 0; i < n; i++) {
        if (e[i].index == 0 || e[i].index <= after) return false;
        after = e[i].index;
    }
    return true;
}

int fsm_apply_txn(struct index *ix, struct fsm_entry *e, uint32_t n, void (*decided)(void *arg),
                  uint32_t (*more)(void *arg, struct fsm_entry **next), void *arg)
{
    if (!entries_increase(e, n, 0)) return -EINVAL;
    struct fsm_txn t;
    int rc = txn_begin(ix, &t);
    if (rc) return rc;
    struct index_meta m0 = t.meta;
    bool changed = false;
    uint64_t prev = 0;
    for (;;) {
        if (!entries_increase(e, n, prev)) {
            txn_abort(&t);
            return -EINVAL;
        }
        for (uint32_t i = 0; i < n; i++) {
            prev = e[i].index;
            if (e[i].index <= t.meta.applied) {
                memset(e[i].res, 0, offsetof(struct idxcmd_result, st));
                e[i].res->status = IDXCMD_ST_SKIPPED;
                continue;
            }
            t.index = e[i].index;
            if ((rc = apply_one(&t, e[i].cmd, e[i].len, e[i].res))) {
                txn_abort(&t);
                return rc;
            }
            t.meta.applied = e[i].index;
            changed = true;
        }
        if (decided) decided(arg);
        if (!more || (n = more(arg, &e)) == 0) break;
    }
    if (!changed) {
        mdb_cursor_close(t.cur);
        mdb_txn_abort(t.txn);
        return 0;
    }
    return txn_commit(&t, &m0);
}

int fsm_apply_batch(struct index *ix, struct fsm_entry *e, uint32_t n,
                    void (*decided)(void *arg), void *arg)
{
    return fsm_apply_txn(ix, e, n, decided, NULL, arg);
}

int fsm_apply(struct index *ix, uint64_t raft_index, const uint8_t *cmd, size_t len,
              struct idxcmd_result *res)
{
    struct fsm_entry e = {.index = raft_index, .cmd = cmd, .len = len, .res = res};
    return fsm_apply_batch(ix, &e, 1, NULL, NULL);
}
