/* index.c: the LMDB environment, the record codecs and the read API (see
 * index.h for the schema and the threading rules).
 *
 * Opening.  The environment is a directory (data.mdb + lock.mdb) on a local
 * filesystem; statfs refuses network filesystems, where LMDB's locking and
 * mmap coherence do not hold (lmdb.h: "Do not use LMDB databases on remote
 * filesystems"), and tmpfs unless the caller allows it (a replica on tmpfs
 * loses its index on reboot and would have to be rebuilt from peers).  The
 * first open stores the schema version and the cluster id in `meta`; later
 * opens refuse a different one rather than mixing two clusters' indexes.
 * Flags: MDB_NOTLS (read txns are not tied to a thread: a reader may be
 * handed between threads), MDB_NORDAHEAD (lookups are random), and
 * MDB_NOMETASYNC unless meta_sync is asked for.  Never MDB_NOSYNC, never
 * MDB_WRITEMAP (so never MDB_MAPASYNC): both can corrupt on power loss.
 * The map size is a large virtual reservation: without MDB_WRITEMAP the
 * file only grows as pages are used, and a fixed size avoids
 * mdb_env_set_mapsize, which may not run while another thread reads.
 *
 * Records.  Every value has an explicit little-endian layout (the tables
 * of index_int.h), encoded and decoded side by side below through the
 * bytes.h cursors; a decoder checks the exact length and the
 * ranges (name lengths, enum values), and a mismatch is -BD_ECORRUPT: LMDB
 * has no page checksums, so this is the last line before a damaged record
 * would be served.  Keys are big-endian integers so cursor order is numeric.
 *
 * Mapping a range (index_map) walks the volume's layer chain top-down: in
 * the top layer, extents overlapping the range are emitted and every gap
 * between them is resolved recursively in the layer below; a gap below the
 * bottom layer is a HOLE.  Each level has its own cursor: a range is one
 * seek per level visited (MDB_SET_RANGE, plus MDB_PREV for an extent that
 * starts before the position), then one MDB_NEXT per further extent, so
 * a 1 MiB read over 256 extents is not 256 B-tree descents; consecutive
 * pieces of one blob share its record lookup.  The depth is bounded by
 * INDEX_MAX_DEPTH.  Pieces are clipped to the request (CONTRACT.md §4.2:
 * an extent longer than the request must never leak past it). */
#include "store/index/index.h"
#include "store/index/index_int.h"
#include "base/bd.h"
#include "base/bytes.h"
#include "base/util.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>

/* Table names, by enum index_table. */
static const char *const table_names[INDEX_T_N] = {
    "meta", "volumes", "volids", "layers", "extents", "blobs", "partitions", "nodes",
    "snapshots", "gc", "usage", "flatten", "assigns", "reap", "moves", "profiles",
};

int index_mdb_err(int rc)
{
    switch (rc) {
    case 0: return 0;
    case MDB_NOTFOUND: return -ENOENT;
    case MDB_MAP_FULL: return -ENOSPC;
    case MDB_READERS_FULL: return -EAGAIN;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH: return -BD_ECORRUPT;
    default: return rc > 0 ? -rc : -EIO;
    }
}

/* ---- filesystem check ------------------------------------------------------ */

#define FS_NFS 0x6969L
#define FS_SMB 0x517BL
#define FS_CIFS 0xFF534D42L
#define FS_SMB2 0xFE534D42L
#define FS_9P 0x01021997L
#define FS_CEPH 0x00C36400L
#define FS_AFS 0x5346414FL
#define FS_KAFS 0x6B414653L
#define FS_CODA 0x73757245L
#define FS_TMPFS 0x01021994L
#define FS_RAMFS 0x858458F6L

int index_check_fstype(long type, bool allow_tmpfs, char *err, size_t errlen)
{
    const char *what = NULL;
    switch ((unsigned long)type & 0xffffffffUL) {
    case (unsigned long)FS_NFS: what = "NFS"; break;
    case (unsigned long)FS_SMB:
    case (unsigned long)FS_CIFS:
    case (unsigned long)FS_SMB2: what = "SMB/CIFS"; break;
    case (unsigned long)FS_9P: what = "9p"; break;
    case (unsigned long)FS_CEPH: what = "CephFS"; break;
    case (unsigned long)FS_AFS:
    case (unsigned long)FS_KAFS: what = "AFS"; break;
    case (unsigned long)FS_CODA: what = "Coda"; break;
    case (unsigned long)FS_TMPFS:
    case (unsigned long)FS_RAMFS:
        if (allow_tmpfs) return 0;
        snprintf(err, errlen, "index directory is on tmpfs/ramfs (lost on reboot); "
                              "only tests may allow it");
        return -EXDEV;
    default: return 0;
    }
    snprintf(err, errlen, "index directory is on a remote filesystem (%s); LMDB needs a "
                          "local one", what);
    return -EXDEV;
}

/* ---- record codecs (the tables of index_int.h) ----------------------------------
 * Each encoder is a list of cursor calls in its table's order; each decoder
 * reads the same list, then refuses a value of any other length (r.err or
 * bytes left over) and out-of-range fields.  Encoders write into a buffer
 * of INDEX_VAL_MAX bytes, which every record fits. */

static bool name_ok(const uint8_t *p, size_t len)
{
    if (len == 0 || len > INDEX_NAME_MAX) return false;
    for (size_t i = 0; i < len; i++)
        if (p[i] == 0) return false;
    return true;
}

/* The value's bytes are all read and nothing more was asked for. */
static bool read_exactly(const struct bytes_r *r)
{
    return !r->err && r->left == 0;
}

size_t index_enc_vol(uint8_t *b, const struct index_vol *v)
{
    size_t alen = strnlen(v->agent, INDEX_NAME_MAX), plen = strnlen(v->profile, INDEX_NAME_MAX);
    struct bytes_w w;
    bw_init(&w, b, INDEX_VAL_MAX);
    bw_u64(&w, v->id);
    bw_u64(&w, v->size);
    bw_u32(&w, v->block_size);
    bw_u8(&w, v->state);
    bw_u8(&w, v->attach_mode);
    bw_u64(&w, v->top_layer);
    bw_u64(&w, v->generation);
    bw_u64(&w, v->created_index);
    bw_u8(&w, (uint8_t)alen);
    bw_mem(&w, v->agent, alen);
    size_t glen = strnlen(v->assign_agent, INDEX_NAME_MAX);
    size_t clen = strnlen(v->assign_client, INDEX_NAME_MAX);
    bw_u8(&w, v->assign_mode);
    bw_u8(&w, (uint8_t)glen);
    bw_mem(&w, v->assign_agent, glen);
    bw_u8(&w, (uint8_t)clen);
    bw_mem(&w, v->assign_client, clen);
    bw_u8(&w, (uint8_t)plen);
    bw_mem(&w, v->profile, plen);
    qos_put(&w, &v->qos);
    return w.used;
}
int index_dec_vol(const MDB_val *key, const MDB_val *val, struct index_vol *v)
{
    if (!name_ok(key->mv_data, key->mv_size)) return -BD_ECORRUPT;
    struct bytes_r r;
    br_init(&r, val->mv_data, val->mv_size);
    v->id = br_u64(&r);
    v->size = br_u64(&r);
    v->block_size = br_u32(&r);
    v->state = br_u8(&r);
    v->attach_mode = br_u8(&r);
    v->top_layer = br_u64(&r);
    v->generation = br_u64(&r);
    v->created_index = br_u64(&r);
    uint8_t alen = br_u8(&r);
    br_mem(&r, v->agent, alen);
    v->assign_mode = br_u8(&r);
    uint8_t glen = br_u8(&r);
    br_mem(&r, v->assign_agent, glen);
    uint8_t clen = br_u8(&r);
    br_mem(&r, v->assign_client, clen);
    uint8_t plen = br_u8(&r);
    br_mem(&r, v->profile, plen);
    qos_get_valid(&r, &v->qos);
    if (!read_exactly(&r)) return -BD_ECORRUPT;
    memcpy(v->name, key->mv_data, key->mv_size);
    v->name[key->mv_size] = 0;
    v->agent[alen] = 0;
    v->assign_agent[glen] = 0;
    v->assign_client[clen] = 0;
    v->profile[plen] = 0;
    if (v->id == 0 || v->top_layer == 0 || v->attach_mode > INDEX_ATTACH_RW ||
        memchr(v->agent, 0, alen) || v->assign_mode > INDEX_ASSIGN_RO ||
        (v->assign_mode == INDEX_ASSIGN_NONE) != (glen == 0) ||
        (v->assign_mode == INDEX_ASSIGN_NONE && clen) || memchr(v->assign_agent, 0, glen) ||
        memchr(v->assign_client, 0, clen) || memchr(v->profile, 0, plen))
        return -BD_ECORRUPT;
    return 0;
}

size_t index_enc_profile(uint8_t *b, const struct index_profile *p)
{
    struct bytes_w w;
    bw_init(&w, b, INDEX_VAL_MAX);
    bw_u8(&w, p->flags);
    bw_u32(&w, p->n_vols);
    bw_u64(&w, p->created_index);
    qos_put(&w, &p->qos);
    return w.used;
}
int index_dec_profile(const MDB_val *key, const MDB_val *val, struct index_profile *p)
{
    if (!name_ok(key->mv_data, key->mv_size)) return -BD_ECORRUPT;
    struct bytes_r r;
    br_init(&r, val->mv_data, val->mv_size);
    p->flags = br_u8(&r);
    p->n_vols = br_u32(&r);
    p->created_index = br_u64(&r);
    qos_get_valid(&r, &p->qos);
    if (!read_exactly(&r) || p->flags & ~INDEX_PROFILE_DEFAULT) return -BD_ECORRUPT;
    memcpy(p->name, key->mv_data, key->mv_size);
    p->name[key->mv_size] = 0;
    return 0;
}

size_t index_enc_layer(uint8_t *b, const struct index_layer *l)
{
    struct bytes_w w;
    bw_init(&w, b, INDEX_VAL_MAX);
    bw_u64(&w, l->parent);
    bw_u64(&w, l->vol_id);
    bw_u32(&w, l->n_children);
    bw_u32(&w, l->n_snaps);
    bw_u8(&w, l->is_top);
    bw_u64(&w, l->child_xor);
    return w.used;
}
int index_dec_layer(uint64_t id, const MDB_val *val, struct index_layer *l)
{
    struct bytes_r r;
    br_init(&r, val->mv_data, val->mv_size);
    l->id = id;
    l->parent = br_u64(&r);
    l->vol_id = br_u64(&r);
    l->n_children = br_u32(&r);
    l->n_snaps = br_u32(&r);
    l->is_top = br_u8(&r);
    l->child_xor = br_u64(&r);
    if (!read_exactly(&r) || l->is_top > 1) return -BD_ECORRUPT;
    return l->parent == id ? -BD_ECORRUPT : 0;
}

size_t index_enc_ext(uint8_t *b, const struct index_ext *e)
{
    struct bytes_w w;
    bw_init(&w, b, INDEX_VAL_MAX);
    bw_u8(&w, e->flags);
    bw_u64(&w, e->len);
    if (!(e->flags & INDEX_EXT_ZERO)) {
        bw_u64(&w, e->blob_id);
        bw_u32(&w, e->blob_off);
    }
    return w.used;
}
int index_dec_ext(const MDB_val *key, const MDB_val *val, struct index_ext *e)
{
    if (key->mv_size != INDEX_EXT_KEY_LEN) return -BD_ECORRUPT;
    index_key_get_ext(key->mv_data, &e->layer, &e->off);
    struct bytes_r r;
    br_init(&r, val->mv_data, val->mv_size);
    e->flags = br_u8(&r);
    e->len = br_u64(&r);
    if (r.err || e->flags & ~INDEX_EXT_ZERO || e->len == 0 || e->off + e->len < e->off)
        return -BD_ECORRUPT;
    if (e->flags & INDEX_EXT_ZERO) {
        e->blob_id = 0;
        e->blob_off = 0;
    } else {
        e->blob_id = br_u64(&r);
        e->blob_off = br_u32(&r);
        if (e->blob_id == 0) br_fail(&r);
    }
    return read_exactly(&r) ? 0 : -BD_ECORRUPT;
}

size_t index_enc_blob(uint8_t *b, const struct index_blob *x)
{
    struct bytes_w w;
    bw_init(&w, b, INDEX_VAL_MAX);
    bw_u32(&w, x->partition);
    bw_u32(&w, x->len);
    bw_u32(&w, x->refcount);
    bw_u8(&w, x->flags);
    bw_u64(&w, x->csum);
    bw_u64(&w, x->live);
    return w.used;
}
int index_dec_blob(uint64_t id, const MDB_val *val, struct index_blob *x)
{
    struct bytes_r r;
    br_init(&r, val->mv_data, val->mv_size);
    x->id = id;
    x->partition = br_u32(&r);
    x->len = br_u32(&r);
    x->refcount = br_u32(&r);
    x->flags = br_u8(&r);
    x->csum = br_u64(&r);
    x->live = br_u64(&r);
    if (!read_exactly(&r) || x->flags & ~INDEX_BLOB_DEAD) return -BD_ECORRUPT;
    return 0;
}

/* A failure-domain label as the node record holds it. */
static void label_put(struct bytes_w *w, const char *s)
{
    size_t n = strnlen(s, INDEX_LABEL_MAX);
    bw_u8(w, (uint8_t)n);
    bw_mem(w, s, n);
}
static void label_get(struct bytes_r *r, char out[INDEX_LABEL_MAX + 1])
{
    uint8_t n = br_u8(r);
    if (n > INDEX_LABEL_MAX) br_fail(r);
    if (!r->err) br_mem(r, out, n);
    out[r->err ? 0 : n] = 0;
    if (!r->err && memchr(out, 0, n)) br_fail(r);
}

size_t index_enc_node(uint8_t *b, const struct index_node *n)
{
    size_t alen = strnlen(n->addr, INDEX_ADDR_MAX);
    struct bytes_w w;
    bw_init(&w, b, INDEX_VAL_MAX);
    bw_u64(&w, n->capacity);
    bw_u64(&w, n->used);
    bw_u8(&w, n->state);
    bw_u64(&w, n->registered_index);
    bw_u8(&w, (uint8_t)alen);
    bw_mem(&w, n->addr, alen);
    label_put(&w, n->zone);
    label_put(&w, n->rack);
    label_put(&w, n->host);
    return w.used;
}
int index_dec_node(uint64_t id, const MDB_val *val, struct index_node *n)
{
    struct bytes_r r;
    br_init(&r, val->mv_data, val->mv_size);
    n->id = id;
    n->capacity = br_u64(&r);
    n->used = br_u64(&r);
    n->state = br_u8(&r);
    n->registered_index = br_u64(&r);
    uint8_t alen = br_u8(&r);
    br_mem(&r, n->addr, alen);
    n->addr[r.err ? 0 : alen] = 0;
    label_get(&r, n->zone);
    label_get(&r, n->rack);
    label_get(&r, n->host);
    if (!read_exactly(&r)) return -BD_ECORRUPT;
    if (n->state < INDEX_NODE_UP || n->state > INDEX_NODE_DRAINING) return -BD_ECORRUPT;
    return 0;
}

size_t index_enc_part(uint8_t *b, const struct index_part *p)
{
    struct bytes_w w;
    bw_init(&w, b, INDEX_VAL_MAX);
    for (int i = 0; i < 3; i++) bw_u64(&w, p->nodes[i]);
    bw_u64(&w, p->epoch);
    bw_u8(&w, p->state);
    return w.used;
}
int index_dec_part(uint32_t id, const MDB_val *val, struct index_part *p)
{
    struct bytes_r r;
    br_init(&r, val->mv_data, val->mv_size);
    p->id = id;
    for (int i = 0; i < 3; i++) p->nodes[i] = br_u64(&r);
    p->epoch = br_u64(&r);
    p->state = br_u8(&r);
    return read_exactly(&r) ? 0 : -BD_ECORRUPT;
}

size_t index_snap_key(uint8_t *buf, uint64_t vol_id, const char *name, size_t len)
{
    struct bytes_w w;
    bw_init(&w, buf, INDEX_ID_KEY_LEN + INDEX_NAME_MAX);
    bw_be64(&w, vol_id);
    bw_mem(&w, name, len);
    return w.used;
}
size_t index_assign_key(uint8_t *buf, const char *agent, size_t agent_len, const char *name,
                        size_t name_len)
{
    struct bytes_w w;
    bw_init(&w, buf, INDEX_ASSIGN_KEY_MAX);
    bw_u8(&w, (uint8_t)agent_len);
    bw_mem(&w, agent, agent_len);
    bw_mem(&w, name, name_len);
    return w.used;
}
size_t index_enc_snap(uint8_t *b, const struct index_snap *s)
{
    struct bytes_w w;
    bw_init(&w, b, INDEX_VAL_MAX);
    bw_u64(&w, s->layer);
    bw_u64(&w, s->size);
    bw_u64(&w, s->created_index);
    bw_u64(&w, s->origin);
    bw_u8(&w, s->flags);
    return w.used;
}
int index_dec_snap(const MDB_val *key, const MDB_val *val, struct index_snap *s)
{
    struct bytes_r k;
    br_init(&k, key->mv_data, key->mv_size);
    uint64_t vol_id = br_be64(&k);
    size_t nlen = k.left;
    const uint8_t *name = br_take(&k, nlen);
    if (k.err || !name_ok(name, nlen)) return -BD_ECORRUPT;
    struct bytes_r r;
    br_init(&r, val->mv_data, val->mv_size);
    s->vol_id = vol_id;
    memcpy(s->name, name, nlen);
    s->name[nlen] = 0;
    s->layer = br_u64(&r);
    s->size = br_u64(&r);
    s->created_index = br_u64(&r);
    s->origin = br_u64(&r);
    s->flags = br_u8(&r);
    return read_exactly(&r) && !(s->flags & ~INDEX_SNAP_BARRIER) ? 0 : -BD_ECORRUPT;
}

size_t index_enc_gc(uint8_t *b, const struct index_gc *g)
{
    struct bytes_w w;
    bw_init(&w, b, INDEX_VAL_MAX);
    bw_u32(&w, g->partition);
    bw_u64(&w, g->dead_index);
    return w.used;
}
int index_dec_gc(uint64_t id, const MDB_val *val, struct index_gc *g)
{
    struct bytes_r r;
    br_init(&r, val->mv_data, val->mv_size);
    g->blob_id = id;
    g->partition = br_u32(&r);
    g->dead_index = br_u64(&r);
    return read_exactly(&r) ? 0 : -BD_ECORRUPT;
}

size_t index_enc_flatten(uint8_t *b, const struct index_flatten *f)
{
    struct bytes_w w;
    bw_init(&w, b, INDEX_VAL_MAX);
    bw_u64(&w, f->cursor);
    bw_u64(&w, f->copied_bytes);
    bw_u64(&w, f->started_index);
    return w.used;
}
int index_dec_flatten(uint64_t vol_id, const MDB_val *val, struct index_flatten *f)
{
    struct bytes_r r;
    br_init(&r, val->mv_data, val->mv_size);
    f->vol_id = vol_id;
    f->cursor = br_u64(&r);
    f->copied_bytes = br_u64(&r);
    f->started_index = br_u64(&r);
    return read_exactly(&r) ? 0 : -BD_ECORRUPT;
}

size_t index_enc_usage(uint8_t *b, const struct index_usage *u)
{
    struct bytes_w w;
    bw_init(&w, b, INDEX_VAL_MAX);
    bw_u64(&w, u->data_bytes);
    bw_u64(&w, u->masked_bytes);
    bw_u64(&w, u->view_bytes);
    return w.used;
}
int index_dec_usage(const MDB_val *val, struct index_usage *u)
{
    struct bytes_r r;
    br_init(&r, val->mv_data, val->mv_size);
    u->data_bytes = br_u64(&r);
    u->masked_bytes = br_u64(&r);
    u->view_bytes = br_u64(&r);
    return read_exactly(&r) ? 0 : -BD_ECORRUPT;
}

size_t index_enc_totals(uint8_t *b, const struct index_meta *m)
{
    struct bytes_w w;
    bw_init(&w, b, INDEX_TOTALS_LEN);
    bw_u64(&w, m->data_bytes);
    bw_u64(&w, m->blob_bytes);
    bw_u64(&w, m->dead_bytes);
    bw_u64(&w, m->rewrite_layer);
    bw_u64(&w, m->rewrite_off);
    bw_u64(&w, m->rewritten_bytes);
    return w.used;
}
static int dec_totals(const MDB_val *val, struct index_meta *m)
{
    struct bytes_r r;
    br_init(&r, val->mv_data, val->mv_size);
    m->data_bytes = br_u64(&r);
    m->blob_bytes = br_u64(&r);
    m->dead_bytes = br_u64(&r);
    m->rewrite_layer = br_u64(&r);
    m->rewrite_off = br_u64(&r);
    m->rewritten_bytes = br_u64(&r);
    return read_exactly(&r) ? 0 : -BD_ECORRUPT;
}

size_t index_enc_move(uint8_t *b, const struct index_move *m)
{
    struct bytes_w w;
    bw_init(&w, b, INDEX_VAL_MAX);
    bw_u64(&w, m->node);
    bw_u64(&w, m->from);
    bw_u8(&w, m->reason);
    bw_u64(&w, m->cursor);
    bw_u64(&w, m->bytes_done);
    bw_u64(&w, m->started_index);
    return w.used;
}
int index_dec_move(const MDB_val *key, const MDB_val *val, struct index_move *m)
{
    struct bytes_r k, r;
    br_init(&k, key->mv_data, key->mv_size);
    m->part = br_be32(&k);
    uint64_t knode = br_be64(&k);
    if (!read_exactly(&k)) return -BD_ECORRUPT;
    br_init(&r, val->mv_data, val->mv_size);
    m->node = br_u64(&r);
    if (m->node != knode) br_fail(&r);
    m->from = br_u64(&r);
    m->reason = br_u8(&r);
    m->cursor = br_u64(&r);
    m->bytes_done = br_u64(&r);
    m->started_index = br_u64(&r);
    if (!read_exactly(&r) || !m->node || m->reason < 1 || m->reason > 3) return -BD_ECORRUPT;
    return 0;
}

/* ---- txn-level accessors -------------------------------------------------------- */

static int get_raw(struct index *ix, MDB_txn *txn, int t, const void *k, size_t klen,
                   MDB_val *val)
{
    MDB_val key = {klen, (void *)k};
    return index_mdb_err(mdb_get(txn, ix->dbi[t], &key, val));
}

static int get_u64(struct index *ix, MDB_txn *txn, int t, uint64_t id, MDB_val *val)
{
    uint8_t k[INDEX_ID_KEY_LEN];
    index_key_u64(k, id);
    return get_raw(ix, txn, t, k, sizeof(k), val);
}

static int meta_u64(struct index *ix, MDB_txn *txn, const char *key, uint64_t *v)
{
    MDB_val val;
    int rc = get_raw(ix, txn, INDEX_T_META, key, strlen(key), &val);
    if (rc) return rc == -ENOENT ? -BD_ECORRUPT : rc;
    struct bytes_r r;
    br_init(&r, val.mv_data, val.mv_size);
    *v = br_u64(&r);
    return read_exactly(&r) ? 0 : -BD_ECORRUPT;
}

int index_put_meta_u64(struct index *ix, MDB_txn *txn, const char *key, uint64_t v)
{
    uint8_t b[8];
    struct bytes_w w;
    bw_init(&w, b, sizeof(b));
    bw_u64(&w, v);
    MDB_val k = {strlen(key), (void *)key}, d = {w.used, b};
    return index_mdb_err(mdb_put(txn, ix->dbi[INDEX_T_META], &k, &d, 0));
}

int index_txn_get_meta(struct index *ix, MDB_txn *txn, struct index_meta *m)
{
    MDB_val val;
    int rc = get_raw(ix, txn, INDEX_T_META, "schema", 6, &val);
    if (rc) return rc;
    struct bytes_r r;
    br_init(&r, val.mv_data, val.mv_size);
    m->schema = br_u32(&r);
    if (!read_exactly(&r)) return -BD_ECORRUPT;
    /* Another schema's other records may not be ours to read: the caller
     * refuses it by m->schema. */
    if (m->schema != INDEX_SCHEMA_VERSION) return 0;
    rc = get_raw(ix, txn, INDEX_T_META, "cluster", 7, &val);
    if (rc) return rc == -ENOENT ? -BD_ECORRUPT : rc;
    if (val.mv_size > INDEX_CLUSTER_MAX) return -BD_ECORRUPT;
    memcpy(m->cluster_id, val.mv_data, val.mv_size);
    m->cluster_id[val.mv_size] = 0;
    if ((rc = meta_u64(ix, txn, "next_vol", &m->next_vol)) ||
        (rc = meta_u64(ix, txn, "next_layer", &m->next_layer)) ||
        (rc = meta_u64(ix, txn, "next_blob", &m->next_blob)) ||
        (rc = meta_u64(ix, txn, "applied", &m->applied)) ||
        (rc = meta_u64(ix, txn, "limit_pages", &m->limit_pages)))
        return rc;
    rc = get_raw(ix, txn, INDEX_T_META, "totals", 6, &val);
    if (rc) return rc == -ENOENT ? -BD_ECORRUPT : rc;
    return dec_totals(&val, m);
}

int index_put_meta_totals(struct index *ix, MDB_txn *txn, const struct index_meta *m)
{
    uint8_t b[INDEX_TOTALS_LEN];
    MDB_val k = {6, "totals"}, d = {index_enc_totals(b, m), b};
    return index_mdb_err(mdb_put(txn, ix->dbi[INDEX_T_META], &k, &d, 0));
}

int index_txn_vol_by_name(struct index *ix, MDB_txn *txn, const char *name, size_t len,
                          struct index_vol *v)
{
    if (len == 0 || len > INDEX_NAME_MAX) return -ENOENT;
    MDB_val key = {len, (void *)name}, val;
    int rc = index_mdb_err(mdb_get(txn, ix->dbi[INDEX_T_VOLUMES], &key, &val));
    return rc ? rc : index_dec_vol(&key, &val, v);
}

int index_txn_vol_by_id(struct index *ix, MDB_txn *txn, uint64_t id, struct index_vol *v)
{
    MDB_val name;
    int rc = get_u64(ix, txn, INDEX_T_VOLIDS, id, &name);
    if (rc) return rc;
    rc = index_txn_vol_by_name(ix, txn, name.mv_data, name.mv_size, v);
    if (rc == -ENOENT || (rc == 0 && v->id != id)) return -BD_ECORRUPT;
    return rc;
}

int index_txn_layer(struct index *ix, MDB_txn *txn, uint64_t id, struct index_layer *l)
{
    MDB_val val;
    int rc = get_u64(ix, txn, INDEX_T_LAYERS, id, &val);
    return rc ? rc : index_dec_layer(id, &val, l);
}

int index_txn_blob(struct index *ix, MDB_txn *txn, uint64_t id, struct index_blob *b)
{
    MDB_val val;
    int rc = get_u64(ix, txn, INDEX_T_BLOBS, id, &val);
    return rc ? rc : index_dec_blob(id, &val, b);
}

int index_txn_part(struct index *ix, MDB_txn *txn, uint32_t id, struct index_part *p)
{
    uint8_t k[INDEX_PART_KEY_LEN];
    index_key_part(k, id);
    MDB_val val;
    int rc = get_raw(ix, txn, INDEX_T_PARTITIONS, k, sizeof(k), &val);
    return rc ? rc : index_dec_part(id, &val, p);
}

int index_txn_node(struct index *ix, MDB_txn *txn, uint64_t id, struct index_node *n)
{
    MDB_val val;
    int rc = get_u64(ix, txn, INDEX_T_NODES, id, &val);
    return rc ? rc : index_dec_node(id, &val, n);
}

int index_txn_snap(struct index *ix, MDB_txn *txn, uint64_t vol_id, const char *name,
                   size_t len, struct index_snap *s)
{
    if (len == 0 || len > INDEX_NAME_MAX) return -ENOENT;
    uint8_t k[INDEX_ID_KEY_LEN + INDEX_NAME_MAX];
    MDB_val key = {index_snap_key(k, vol_id, name, len), k}, val;
    int rc = index_mdb_err(mdb_get(txn, ix->dbi[INDEX_T_SNAPSHOTS], &key, &val));
    return rc ? rc : index_dec_snap(&key, &val, s);
}

int index_txn_usage(struct index *ix, MDB_txn *txn, uint64_t layer, struct index_usage *u)
{
    MDB_val val;
    int rc = get_u64(ix, txn, INDEX_T_USAGE, layer, &val);
    return rc ? rc : index_dec_usage(&val, u);
}

int index_txn_flatten(struct index *ix, MDB_txn *txn, uint64_t vol_id, struct index_flatten *f)
{
    MDB_val val;
    int rc = get_u64(ix, txn, INDEX_T_FLATTEN, vol_id, &val);
    return rc ? rc : index_dec_flatten(vol_id, &val, f);
}

int index_txn_move(struct index *ix, MDB_txn *txn, uint32_t part, uint64_t node,
                   struct index_move *m)
{
    uint8_t k[INDEX_MOVE_KEY_LEN];
    index_key_move(k, part, node);
    MDB_val key = {sizeof(k), k}, val;
    int rc = index_mdb_err(mdb_get(txn, ix->dbi[INDEX_T_MOVES], &key, &val));
    return rc ? rc : index_dec_move(&key, &val, m);
}

int index_txn_pages(struct index *ix, MDB_txn *txn, uint64_t *pages)
{
    *pages = 0;
    for (int t = 0; t < INDEX_T_N; t++) {
        MDB_stat ms;
        int mrc = mdb_stat(txn, ix->dbi[t], &ms);
        if (mrc) return index_mdb_err(mrc);
        *pages += ms.ms_branch_pages + ms.ms_leaf_pages + ms.ms_overflow_pages;
    }
    return 0;
}

int index_txn_profile(struct index *ix, MDB_txn *txn, const char *name, size_t len,
                      struct index_profile *p)
{
    if (len == 0 || len > INDEX_NAME_MAX) return -ENOENT;
    MDB_val key = {len, (void *)name}, val;
    int rc = index_mdb_err(mdb_get(txn, ix->dbi[INDEX_T_PROFILES], &key, &val));
    return rc ? rc : index_dec_profile(&key, &val, p);
}

/* ---- open / close ----------------------------------------------------------------- */

static int init_or_check(struct index *ix, MDB_txn *txn, const char *cluster, char *err,
                         size_t errlen)
{
    struct index_meta m;
    int rc = index_txn_get_meta(ix, txn, &m);
    if (rc == -ENOENT) {
        /* First open: the same initial content on every replica. */
        uint8_t b[4];
        struct bytes_w w;
        bw_init(&w, b, sizeof(b));
        bw_u32(&w, INDEX_SCHEMA_VERSION);
        MDB_val k = {6, "schema"}, d = {w.used, b};
        MDB_val kc = {7, "cluster"}, dc = {strlen(cluster), (void *)cluster};
        if ((rc = index_mdb_err(mdb_put(txn, ix->dbi[INDEX_T_META], &k, &d, 0))) ||
            (rc = index_mdb_err(mdb_put(txn, ix->dbi[INDEX_T_META], &kc, &dc, 0))) ||
            (rc = index_put_meta_u64(ix, txn, "next_vol", 1)) ||
            (rc = index_put_meta_u64(ix, txn, "next_layer", 1)) ||
            (rc = index_put_meta_u64(ix, txn, "next_blob", 1)) ||
            (rc = index_put_meta_u64(ix, txn, "applied", 0)) ||
            (rc = index_put_meta_u64(ix, txn, "limit_pages", 0)) ||
            (rc = index_put_meta_totals(ix, txn, &(struct index_meta){0}))) {
            snprintf(err, errlen, "initialising index: %s", bd_strerror(rc));
            return rc;
        }
        return 0;
    }
    if (rc) {
        snprintf(err, errlen, "reading index meta: %s", bd_strerror(rc));
        return rc;
    }
    if (m.schema != INDEX_SCHEMA_VERSION) {
        snprintf(err, errlen, "index schema version was %u, this binary has %u", m.schema,
                 INDEX_SCHEMA_VERSION);
        return -BD_ECONFIG;
    }
    if (strcmp(m.cluster_id, cluster) != 0) {
        snprintf(err, errlen, "index cluster id was \"%s\", now \"%s\"", m.cluster_id, cluster);
        return -BD_ECONFIG;
    }
    return 0;
}

int index_open(const struct index_opts *o, struct index **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!o->dir || !o->dir[0] || strlen(o->dir) >= PATH_MAX ||
        !o->cluster_id || !o->cluster_id[0] || strlen(o->cluster_id) > INDEX_CLUSTER_MAX) {
        snprintf(err, errlen, "index: directory and cluster id (1-%u bytes) are required",
                 INDEX_CLUSTER_MAX);
        return -EINVAL;
    }
    int rc = util_mkdir_p(o->dir, 0700);
    if (rc) {
        snprintf(err, errlen, "index directory %s: %s", o->dir, bd_strerror(rc));
        return rc;
    }
    struct statfs sfs;
    if (statfs(o->dir, &sfs) != 0) {
        rc = -errno;
        snprintf(err, errlen, "statfs %s: %s", o->dir, bd_strerror(rc));
        return rc;
    }
    if ((rc = index_check_fstype((long)sfs.f_type, o->allow_tmpfs, err, errlen))) return rc;

    struct index *ix = calloc(1, sizeof(*ix));
    if (!ix) return -ENOMEM;
    util_strlcpy(ix->cluster_id, o->cluster_id, sizeof(ix->cluster_id));
    if ((rc = mdb_env_create(&ix->env))) goto err_free;
    if ((rc = mdb_env_set_maxdbs(ix->env, INDEX_T_N)) ||
        (rc = mdb_env_set_maxreaders(ix->env, 126)) ||
        (rc = mdb_env_set_mapsize(ix->env, o->map_size ? o->map_size : INDEX_DEFAULT_MAP_SIZE)))
        goto err_env;
    unsigned flags = MDB_NOTLS | MDB_NORDAHEAD | (o->meta_sync ? 0 : MDB_NOMETASYNC);
    if ((rc = mdb_env_open(ix->env, o->dir, flags, 0600))) goto err_env;

    MDB_txn *txn;
    if ((rc = mdb_txn_begin(ix->env, NULL, 0, &txn))) goto err_env;
    for (int t = 0; t < INDEX_T_N; t++)
        if ((rc = mdb_dbi_open(txn, table_names[t], MDB_CREATE, &ix->dbi[t]))) {
            mdb_txn_abort(txn);
            goto err_env;
        }
    if ((rc = init_or_check(ix, txn, o->cluster_id, err, errlen))) {
        mdb_txn_abort(txn);
        mdb_env_close(ix->env);
        free(ix);
        return rc;
    }
    if ((rc = mdb_txn_commit(txn))) goto err_env;
    *out = ix;
    return 0;

err_env:
    snprintf(err, errlen, "LMDB %s: %s", o->dir, mdb_strerror(rc));
    mdb_env_close(ix->env);
    free(ix);
    return index_mdb_err(rc);
err_free:
    snprintf(err, errlen, "LMDB: %s", mdb_strerror(rc));
    free(ix);
    return index_mdb_err(rc);
}

void index_close(struct index *ix)
{
    if (!ix) return;
    mdb_env_close(ix->env);
    free(ix->dead);
    free(ix);
}

/* ---- readers ---------------------------------------------------------------------- */

int index_reader_new(struct index *ix, struct index_reader **out)
{
    struct index_reader *rd = calloc(1, sizeof(*rd));
    if (!rd) return -ENOMEM;
    rd->ix = ix;
    *out = rd;
    return 0;
}

void index_reader_free(struct index_reader *rd)
{
    if (!rd) return;
    if (rd->txn) mdb_txn_abort(rd->txn);
    free(rd);
}

int index_read_begin(struct index_reader *rd)
{
    if (BD_NEVER(rd->active)) return -EINVAL;
    int rc;
    if (rd->txn) {
        rc = mdb_txn_renew(rd->txn);
        if (rc) {
            mdb_txn_abort(rd->txn);
            rd->txn = NULL;
        }
    }
    if (!rd->txn) {
        rc = mdb_txn_begin(rd->ix->env, NULL, MDB_RDONLY, &rd->txn);
        if (rc) {
            rd->txn = NULL;
            return index_mdb_err(rc);
        }
    }
    rd->active = true;
    return 0;
}

void index_read_end(struct index_reader *rd)
{
    if (!rd->active) return;
    mdb_txn_reset(rd->txn);
    rd->active = false;
}

#define READER_CHECK(rd)                                                                   \
    do {                                                                                   \
        if (BD_NEVER(!(rd)->active)) return -EINVAL;                                       \
    } while (0)

uint64_t index_applied(struct index_reader *rd)
{
    uint64_t v;
    if (!rd->active || meta_u64(rd->ix, rd->txn, "applied", &v)) return 0;
    return v;
}

int index_vol_by_name(struct index_reader *rd, const char *name, size_t len,
                      struct index_vol *out)
{
    READER_CHECK(rd);
    return index_txn_vol_by_name(rd->ix, rd->txn, name, len, out);
}

int index_vol_by_id(struct index_reader *rd, uint64_t id, struct index_vol *out)
{
    READER_CHECK(rd);
    return index_txn_vol_by_id(rd->ix, rd->txn, id, out);
}

int index_blob_get(struct index_reader *rd, uint64_t blob_id, struct index_blob *out)
{
    READER_CHECK(rd);
    return index_txn_blob(rd->ix, rd->txn, blob_id, out);
}

int index_node_get(struct index_reader *rd, uint64_t node_id, struct index_node *out)
{
    READER_CHECK(rd);
    return index_txn_node(rd->ix, rd->txn, node_id, out);
}

int index_part_get(struct index_reader *rd, uint32_t part_id, struct index_part *out)
{
    READER_CHECK(rd);
    return index_txn_part(rd->ix, rd->txn, part_id, out);
}

/* ---- paged lists -------------------------------------------------------------------
 * One walker: position strictly after START (or at the first key), then
 * decode up to MAX records while KEEP accepts the key. */

typedef int (*list_dec_fn)(const MDB_val *k, const MDB_val *v, void *out, uint32_t i);

static int list_walk(struct index_reader *rd, int t, const void *start, size_t start_len,
                     bool (*keep)(const MDB_val *k, const void *arg), const void *arg,
                     list_dec_fn dec, void *out, uint32_t max, uint32_t *n)
{
    READER_CHECK(rd);
    *n = 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(rd->txn, rd->ix->dbi[t], &cur);
    if (rc) return index_mdb_err(rc);
    MDB_val k = {start_len, (void *)start}, v;
    int mrc;
    if (start_len) {
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (mrc == 0 && k.mv_size == start_len && memcmp(k.mv_data, start, start_len) == 0)
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    } else {
        mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    while (mrc == 0 && *n < max) {
        if (keep && !keep(&k, arg)) break;
        if ((rc = dec(&k, &v, out, *n))) break;
        (*n)++;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc) return rc;
    return mrc == MDB_NOTFOUND ? 0 : index_mdb_err(mrc);
}

static int dec_vol_i(const MDB_val *k, const MDB_val *v, void *out, uint32_t i)
{
    return index_dec_vol(k, v, (struct index_vol *)out + i);
}
static int dec_node_i(const MDB_val *k, const MDB_val *v, void *out, uint32_t i)
{
    if (k->mv_size != INDEX_ID_KEY_LEN) return -BD_ECORRUPT;
    return index_dec_node(index_key_get_u64(k->mv_data), v, (struct index_node *)out + i);
}
static int dec_part_i(const MDB_val *k, const MDB_val *v, void *out, uint32_t i)
{
    if (k->mv_size != INDEX_PART_KEY_LEN) return -BD_ECORRUPT;
    return index_dec_part(index_key_get_part(k->mv_data), v, (struct index_part *)out + i);
}
static int dec_gc_i(const MDB_val *k, const MDB_val *v, void *out, uint32_t i)
{
    if (k->mv_size != INDEX_ID_KEY_LEN) return -BD_ECORRUPT;
    return index_dec_gc(index_key_get_u64(k->mv_data), v, (struct index_gc *)out + i);
}
static int dec_snap_i(const MDB_val *k, const MDB_val *v, void *out, uint32_t i)
{
    return index_dec_snap(k, v, (struct index_snap *)out + i);
}
static int dec_move_i(const MDB_val *k, const MDB_val *v, void *out, uint32_t i)
{
    return index_dec_move(k, v, (struct index_move *)out + i);
}
static bool keep_vol_prefix(const MDB_val *k, const void *arg)
{
    return k->mv_size >= INDEX_ID_KEY_LEN && memcmp(k->mv_data, arg, INDEX_ID_KEY_LEN) == 0;
}

int index_vol_list(struct index_reader *rd, const char *after, size_t after_len,
                   struct index_vol *out, uint32_t max, uint32_t *n)
{
    if (after_len > INDEX_NAME_MAX) return -EINVAL;
    return list_walk(rd, INDEX_T_VOLUMES, after, after_len, NULL, NULL, dec_vol_i, out, max, n);
}

static int dec_profile_i(const MDB_val *k, const MDB_val *v, void *out, uint32_t i)
{
    return index_dec_profile(k, v, (struct index_profile *)out + i);
}

int index_profile_list(struct index_reader *rd, const char *after, size_t after_len,
                       struct index_profile *out, uint32_t max, uint32_t *n)
{
    if (after_len > INDEX_NAME_MAX) return -EINVAL;
    return list_walk(rd, INDEX_T_PROFILES, after, after_len, NULL, NULL, dec_profile_i, out, max,
                     n);
}

int index_profile_get(struct index_reader *rd, const char *name, size_t len,
                      struct index_profile *out)
{
    READER_CHECK(rd);
    return index_txn_profile(rd->ix, rd->txn, name, len, out);
}

int index_profile_default(struct index_reader *rd, struct index_profile *out)
{
    /* Profiles are few (storage classes): a walk is cheaper than keeping
     * a second record in step. */
    char after[INDEX_NAME_MAX + 1] = "";
    struct index_profile page[16];
    uint32_t n;
    int rc;
    do {
        if ((rc = index_profile_list(rd, after, strlen(after), page, 16, &n))) return rc;
        for (uint32_t i = 0; i < n; i++)
            if (page[i].flags & INDEX_PROFILE_DEFAULT) {
                *out = page[i];
                return 0;
            }
        if (n) memcpy(after, page[n - 1].name, sizeof(after));
    } while (n == 16);
    return -ENOENT;
}

int index_vol_qos(struct index_reader *rd, const struct index_vol *v, struct qos_limits *out)
{
    READER_CHECK(rd);
    struct index_profile p;
    const struct qos_limits *base = NULL;
    if (v->profile[0]) {
        int rc = index_txn_profile(rd->ix, rd->txn, v->profile, strlen(v->profile), &p);
        if (rc) return rc == -ENOENT ? -BD_ECORRUPT : rc;
        base = &p.qos;
    }
    qos_effective(&v->qos, base, out);
    return 0;
}

int index_vol_may_attach(const struct index_vol *v, const char *agent, size_t agent_len,
                         bool rw)
{
    bool named = v->assign_mode != INDEX_ASSIGN_NONE && strlen(v->assign_agent) == agent_len &&
                 memcmp(v->assign_agent, agent, agent_len) == 0;
    bool holder = rw && v->attach_mode == INDEX_ATTACH_RW && strlen(v->agent) == agent_len &&
                  memcmp(v->agent, agent, agent_len) == 0;
    if (!named) return holder && v->assign_mode == INDEX_ASSIGN_NONE ? 0 : -EACCES;
    if (rw && v->assign_mode == INDEX_ASSIGN_RO) return -EPERM;
    return 0;
}

/* The assigns records of one agent, each read back as the volume it
 * names (a walk of the agent's key prefix, not of every volume). */
int index_assign_list(struct index_reader *rd, const char *agent, size_t agent_len,
                      const char *after, size_t after_len, struct index_vol *out, uint32_t max,
                      uint32_t *n)
{
    READER_CHECK(rd);
    *n = 0;
    if (agent_len == 0 || agent_len > INDEX_NAME_MAX || after_len > INDEX_NAME_MAX) return -EINVAL;
    uint8_t prefix[1 + INDEX_NAME_MAX], start[INDEX_ASSIGN_KEY_MAX];
    size_t plen = index_assign_key(prefix, agent, agent_len, "", 0);
    size_t start_len = index_assign_key(start, agent, agent_len, after, after_len);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(rd->txn, rd->ix->dbi[INDEX_T_ASSIGNS], &cur);
    if (rc) return index_mdb_err(rc);
    MDB_val k = {start_len, start}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (mrc == 0 && after_len && k.mv_size == start_len && memcmp(k.mv_data, start, start_len) == 0)
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    while (mrc == 0 && *n < max && k.mv_size > plen && memcmp(k.mv_data, prefix, plen) == 0) {
        struct index_vol *vol = &out[*n];
        rc = index_txn_vol_by_name(rd->ix, rd->txn, (const char *)k.mv_data + plen,
                                   k.mv_size - plen, vol);
        /* Every assigns record names a volume assigned to this agent. */
        if (rc == -ENOENT || (rc == 0 && (vol->assign_mode == INDEX_ASSIGN_NONE ||
                                          strlen(vol->assign_agent) != agent_len ||
                                          memcmp(vol->assign_agent, agent, agent_len) != 0)))
            rc = -BD_ECORRUPT;
        if (rc) break;
        (*n)++;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc) return rc;
    return mrc == MDB_NOTFOUND ? 0 : index_mdb_err(mrc);
}

int index_node_list(struct index_reader *rd, uint64_t after, struct index_node *out,
                    uint32_t max, uint32_t *n)
{
    uint8_t k[INDEX_ID_KEY_LEN];
    index_key_u64(k, after);
    return list_walk(rd, INDEX_T_NODES, k, sizeof(k), NULL, NULL, dec_node_i, out, max, n);
}

int index_part_list(struct index_reader *rd, uint32_t after, struct index_part *out,
                    uint32_t max, uint32_t *n)
{
    uint8_t k[INDEX_PART_KEY_LEN];
    index_key_part(k, after);
    return list_walk(rd, INDEX_T_PARTITIONS, k, sizeof(k), NULL, NULL, dec_part_i, out, max, n);
}

int index_gc_list(struct index_reader *rd, uint64_t after, struct index_gc *out, uint32_t max,
                  uint32_t *n)
{
    uint8_t k[INDEX_ID_KEY_LEN];
    index_key_u64(k, after);
    return list_walk(rd, INDEX_T_GC, k, sizeof(k), NULL, NULL, dec_gc_i, out, max, n);
}

int index_snap_list(struct index_reader *rd, uint64_t vol_id, const char *after,
                    size_t after_len, struct index_snap *out, uint32_t max, uint32_t *n)
{
    if (after_len > INDEX_NAME_MAX) return -EINVAL;
    uint8_t k[INDEX_ID_KEY_LEN + INDEX_NAME_MAX];
    size_t klen = index_snap_key(k, vol_id, after, after_len);
    return list_walk(rd, INDEX_T_SNAPSHOTS, k, klen, keep_vol_prefix, k, dec_snap_i, out, max, n);
}

int index_move_list(struct index_reader *rd, uint32_t after_part, uint64_t after_node,
                    struct index_move *out, uint32_t max, uint32_t *n)
{
    uint8_t k[INDEX_MOVE_KEY_LEN];
    index_key_move(k, after_part, after_node);
    return list_walk(rd, INDEX_T_MOVES, k, sizeof(k), NULL, NULL, dec_move_i, out, max, n);
}

int index_move_get(struct index_reader *rd, uint32_t part_id, uint64_t node,
                   struct index_move *out)
{
    READER_CHECK(rd);
    return index_txn_move(rd->ix, rd->txn, part_id, node, out);
}

/* ---- layer chains and mapping ----------------------------------------------------- */

static int chain_of(struct index *ix, MDB_txn *txn, uint64_t top, uint64_t *layers,
                    uint32_t max, uint32_t *n)
{
    *n = 0;
    for (uint64_t id = top; id; ) {
        if (*n == max || *n == INDEX_MAX_DEPTH) return *n == max ? -ENOBUFS : -BD_ECORRUPT;
        struct index_layer l;
        int rc = index_txn_layer(ix, txn, id, &l);
        if (rc) return rc == -ENOENT ? -BD_ECORRUPT : rc;
        layers[(*n)++] = id;
        id = l.parent;
    }
    return 0;
}

int index_vol_chain(struct index_reader *rd, uint64_t vol_id, uint64_t *layers, uint32_t max,
                    uint32_t *n)
{
    READER_CHECK(rd);
    struct index_vol v;
    int rc = index_txn_vol_by_id(rd->ix, rd->txn, vol_id, &v);
    return rc ? rc : chain_of(rd->ix, rd->txn, v.top_layer, layers, max, n);
}

int index_ext_find(struct index *ix, MDB_cursor *cur, uint64_t layer, uint64_t pos,
                   struct index_ext *e)
{
    (void)ix;
    uint8_t kb[INDEX_EXT_KEY_LEN];
    index_key_ext(kb, layer, pos);
    MDB_val k = {sizeof(kb), kb}, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    bool have_next = false;
    struct index_ext next;
    if (rc == 0) {
        if ((rc = index_dec_ext(&k, &v, &next))) return rc;
        if (next.layer == layer && next.off == pos) {
            *e = next;
            return 1;
        }
        have_next = next.layer == layer;
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    } else if (rc == MDB_NOTFOUND) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    }
    if (rc == 0) {
        struct index_ext prev;
        if ((rc = index_dec_ext(&k, &v, &prev))) return rc;
        if (prev.layer == layer && prev.off < pos && prev.off + prev.len > pos) {
            *e = prev;
            return 1;
        }
    } else if (rc != MDB_NOTFOUND) {
        return index_mdb_err(rc);
    }
    if (have_next) *e = next;
    return have_next;
}

struct map_ctx {
    struct index *ix;
    MDB_txn *txn;
    MDB_cursor *cur[INDEX_MAX_DEPTH]; /* one per level, opened when first needed */
    uint64_t chain[INDEX_MAX_DEPTH];
    uint32_t depth;
    struct index_piece *out;
    uint32_t max, n;
    bool full;
    bool have_blob;                   /* BLOB holds the record looked up last */
    struct index_blob blob;
};

static int emit(struct map_ctx *c, const struct index_piece *p)
{
    if (c->n) {
        struct index_piece *last = &c->out[c->n - 1];
        if (last->kind == p->kind && p->kind != INDEX_DATA && last->off + last->len == p->off) {
            last->len += p->len;
            return 0;
        }
    }
    if (c->n == c->max) {
        c->full = true;
        return 0;
    }
    c->out[c->n++] = *p;
    return 0;
}

/* The extent under CUR's position if it belongs to LAYER: 1 and *E, or 0. */
static int ext_here(MDB_cursor *cur, MDB_cursor_op op, uint64_t layer, struct index_ext *e)
{
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, op);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return index_mdb_err(rc);
    if ((rc = index_dec_ext(&k, &v, e))) return rc;
    return e->layer == layer;
}

/* Like index_ext_find (the extent of LAYER covering POS, else the first
 * after it), but leaves CUR on the extent returned, so the walk goes on
 * with MDB_NEXT: a range of N extents costs one seek and N-1 steps, not N
 * seeks. */
static int ext_seek(MDB_cursor *cur, uint64_t layer, uint64_t pos, struct index_ext *e)
{
    uint8_t kb[INDEX_EXT_KEY_LEN];
    index_key_ext(kb, layer, pos);
    MDB_val k = {sizeof(kb), kb}, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    bool have_next = false;
    if (rc == 0) {
        if ((rc = index_dec_ext(&k, &v, e))) return rc;
        if (e->layer == layer && e->off == pos) return 1;
        have_next = e->layer == layer;
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    } else if (rc == MDB_NOTFOUND) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    }
    if (rc == 0) {
        struct index_ext prev;
        if ((rc = index_dec_ext(&k, &v, &prev))) return rc;
        if (prev.layer == layer && prev.off < pos && prev.off + prev.len > pos) {
            *e = prev;
            return 1;
        }
        /* Back onto the one after POS (SET_RANGE's answer). */
        if (have_next) return ext_here(cur, MDB_NEXT, layer, e);
        return 0;
    }
    if (rc != MDB_NOTFOUND) return index_mdb_err(rc);
    /* Nothing before it: SET_RANGE's answer was the first key.  Go back. */
    return have_next ? ext_here(cur, MDB_FIRST, layer, e) : 0;
}

/* Map [A, B) at level LVL of the chain: the level's extents in order
 * (one seek, then cursor steps), the gaps between them from the levels
 * below, HOLE below the bottom. */
static int map_level(struct map_ctx *c, uint32_t lvl, uint64_t a, uint64_t b)
{
    if (lvl == c->depth) {
        struct index_piece p = {.off = a, .len = b - a, .kind = INDEX_HOLE};
        return emit(c, &p);
    }
    if (!c->cur[lvl]) {
        int rc = mdb_cursor_open(c->txn, c->ix->dbi[INDEX_T_EXTENTS], &c->cur[lvl]);
        if (rc) return index_mdb_err(rc);
    }
    MDB_cursor *cur = c->cur[lvl];
    uint64_t pos = a;
    struct index_ext e;
    int rc = ext_seek(cur, c->chain[lvl], pos, &e);
    while (pos < b && !c->full) {
        if (rc < 0) return rc;
        if (rc == 0 || e.off >= b) return map_level(c, lvl + 1, pos, b);
        if (e.off > pos) {
            if ((rc = map_level(c, lvl + 1, pos, e.off))) return rc;
            pos = e.off;
            if (c->full) break;
        }
        uint64_t end = BD_MIN(e.off + e.len, b);
        struct index_piece p = {.off = pos, .len = end - pos, .layer = e.layer};
        if (e.flags & INDEX_EXT_ZERO) {
            p.kind = INDEX_ZERO;
        } else {
            if (!c->have_blob || c->blob.id != e.blob_id) {
                c->have_blob = false;
                if ((rc = index_txn_blob(c->ix, c->txn, e.blob_id, &c->blob)))
                    return rc == -ENOENT ? -BD_ECORRUPT : rc;
                c->have_blob = true;
            }
            const struct index_blob *bl = &c->blob;
            uint64_t boff = (uint64_t)e.blob_off + (pos - e.off);
            if (boff + (end - pos) > bl->len) return -BD_ECORRUPT;
            p.kind = INDEX_DATA;
            p.blob_id = bl->id;
            p.partition = bl->partition;
            p.blob_off = (uint32_t)boff;
            p.blob_len = bl->len;
            p.blob_csum = bl->csum;
        }
        if ((rc = emit(c, &p))) return rc;
        pos = end;
        /* Extents of a layer do not overlap, so the next key is the first
         * extent at or after END: exactly what a seek to POS would find. */
        if (pos < b && !c->full) rc = ext_here(cur, MDB_NEXT, c->chain[lvl], &e);
    }
    return 0;
}

/* index_map over the chain from TOP. */
static int map_top(struct index_reader *rd, uint64_t top, uint64_t off, uint64_t len,
                   struct index_piece *out, uint32_t max, uint32_t *n)
{
    struct map_ctx c = {.ix = rd->ix, .txn = rd->txn, .out = out, .max = max};
    int rc;
    if ((rc = chain_of(rd->ix, rd->txn, top, c.chain, INDEX_MAX_DEPTH, &c.depth)))
        return rc == -ENOBUFS ? -BD_ECORRUPT : rc;
    rc = map_level(&c, 0, off, off + len);
    for (uint32_t i = 0; i < c.depth; i++)
        if (c.cur[i]) mdb_cursor_close(c.cur[i]);
    *n = c.n;
    return rc;
}

int index_map_layer(struct index_reader *rd, uint64_t layer, uint64_t off, uint64_t len,
                    struct index_piece *out, uint32_t max, uint32_t *n)
{
    READER_CHECK(rd);
    *n = 0;
    if (max == 0) return -EINVAL;
    if (off + len < off) return -ERANGE;
    if (len == 0) return 0;
    return map_top(rd, layer, off, len, out, max, n);
}

int index_map(struct index_reader *rd, uint64_t vol_id, uint64_t off, uint64_t len,
              struct index_piece *out, uint32_t max, uint32_t *n)
{
    READER_CHECK(rd);
    *n = 0;
    if (max == 0) return -EINVAL;
    struct index_vol v;
    int rc = index_txn_vol_by_id(rd->ix, rd->txn, vol_id, &v);
    if (rc) return rc;
    if (off > v.size || len > v.size - off) return -ERANGE;
    if (len == 0) return 0;
    return map_top(rd, v.top_layer, off, len, out, max, n);
}
