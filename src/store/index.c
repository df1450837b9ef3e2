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
 * Records.  Every value has an explicit little-endian layout, encoded and
 * decoded side by side below; a decoder checks the exact length and the
 * ranges (name lengths, enum values), and a mismatch is -BD_ECORRUPT: LMDB
 * has no page checksums, so this is the last line before a damaged record
 * would be served.  Keys are big-endian integers so cursor order is numeric.
 *
 * Mapping a range (index_map) walks the volume's layer chain top-down: in
 * the top layer, extents overlapping the range are emitted and every gap
 * between them is resolved recursively in the layer below; a gap below the
 * bottom layer is a HOLE.  Each step re-seeks the cursor (MDB_SET_RANGE,
 * plus one MDB_PREV for an extent that starts before the position), so the
 * recursion needs no cursor per level; the depth is bounded by
 * INDEX_MAX_DEPTH.  Pieces are clipped to the request (CONTRACT.md §4.2:
 * an extent longer than the request must never leak past it). */
#include "index.h"
#include "index_int.h"
#include "../bd.h"
#include "../util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>

/* Table names, by enum index_table. */
static const char *const table_names[IT_N] = {
    "meta", "volumes", "volids", "layers", "extents", "blobs", "partitions", "nodes",
    "snapshots", "gc",
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

/* ---- record codecs ------------------------------------------------------------ */

static bool name_ok(const uint8_t *p, size_t len)
{
    if (len == 0 || len > INDEX_NAME_MAX) return false;
    for (size_t i = 0; i < len; i++)
        if (p[i] == 0) return false;
    return true;
}

size_t index_enc_vol(uint8_t *b, const struct index_vol *v)
{
    size_t alen = strnlen(v->agent, INDEX_NAME_MAX);
    util_put_le64(b, v->id);
    util_put_le64(b + 8, v->size);
    util_put_le32(b + 16, v->block_size);
    b[20] = v->state;
    b[21] = v->attach_mode;
    util_put_le64(b + 22, v->top_layer);
    util_put_le64(b + 30, v->generation);
    util_put_le64(b + 38, v->iops_limit);
    util_put_le64(b + 46, v->bps_limit);
    util_put_le64(b + 54, v->created_index);
    b[62] = (uint8_t)alen;
    memcpy(b + 63, v->agent, alen);
    return 63 + alen;
}
int index_dec_vol(const MDB_val *key, const MDB_val *val, struct index_vol *v)
{
    const uint8_t *b = val->mv_data;
    if (!name_ok(key->mv_data, key->mv_size) || val->mv_size < 63 ||
        val->mv_size != 63u + b[62])
        return -BD_ECORRUPT;
    memcpy(v->name, key->mv_data, key->mv_size);
    v->name[key->mv_size] = 0;
    v->id = util_get_le64(b);
    v->size = util_get_le64(b + 8);
    v->block_size = util_get_le32(b + 16);
    v->state = b[20];
    v->attach_mode = b[21];
    v->top_layer = util_get_le64(b + 22);
    v->generation = util_get_le64(b + 30);
    v->iops_limit = util_get_le64(b + 38);
    v->bps_limit = util_get_le64(b + 46);
    v->created_index = util_get_le64(b + 54);
    memcpy(v->agent, b + 63, b[62]);
    v->agent[b[62]] = 0;
    if (v->id == 0 || v->top_layer == 0 || v->attach_mode > INDEX_ATTACH_RW ||
        memchr(v->agent, 0, b[62]))
        return -BD_ECORRUPT;
    return 0;
}

size_t index_enc_layer(uint8_t *b, const struct index_layer *l)
{
    util_put_le64(b, l->parent);
    util_put_le64(b + 8, l->vol_id);
    util_put_le32(b + 16, l->n_children);
    util_put_le32(b + 20, l->n_snaps);
    b[24] = l->is_top;
    util_put_le64(b + 25, l->child_xor);
    return 33;
}
int index_dec_layer(uint64_t id, const MDB_val *val, struct index_layer *l)
{
    const uint8_t *b = val->mv_data;
    if (val->mv_size != 33 || b[24] > 1) return -BD_ECORRUPT;
    l->id = id;
    l->parent = util_get_le64(b);
    l->vol_id = util_get_le64(b + 8);
    l->n_children = util_get_le32(b + 16);
    l->n_snaps = util_get_le32(b + 20);
    l->is_top = b[24];
    l->child_xor = util_get_le64(b + 25);
    return l->parent == id ? -BD_ECORRUPT : 0;
}

size_t index_enc_ext(uint8_t *b, const struct index_ext *e)
{
    b[0] = e->flags;
    util_put_le64(b + 1, e->len);
    if (e->flags & INDEX_EXT_ZERO) return 9;
    util_put_le64(b + 9, e->blob_id);
    util_put_le32(b + 17, e->blob_off);
    return 21;
}
int index_dec_ext(const MDB_val *key, const MDB_val *val, struct index_ext *e)
{
    const uint8_t *b = val->mv_data;
    if (key->mv_size != INDEX_EXT_KEY_LEN || val->mv_size < 9) return -BD_ECORRUPT;
    e->layer = index_key_get_u64(key->mv_data);
    e->off = index_key_get_u64((const uint8_t *)key->mv_data + 8);
    e->flags = b[0];
    e->len = util_get_le64(b + 1);
    if (e->flags & ~INDEX_EXT_ZERO || e->len == 0 || e->off + e->len < e->off)
        return -BD_ECORRUPT;
    if (e->flags & INDEX_EXT_ZERO) {
        if (val->mv_size != 9) return -BD_ECORRUPT;
        e->blob_id = 0;
        e->blob_off = 0;
        return 0;
    }
    if (val->mv_size != 21) return -BD_ECORRUPT;
    e->blob_id = util_get_le64(b + 9);
    e->blob_off = util_get_le32(b + 17);
    return e->blob_id ? 0 : -BD_ECORRUPT;
}

size_t index_enc_blob(uint8_t *b, const struct index_blob *x)
{
    util_put_le32(b, x->partition);
    util_put_le32(b + 4, x->len);
    util_put_le32(b + 8, x->refcount);
    b[12] = x->flags;
    util_put_le64(b + 13, x->csum);
    return 21;
}
int index_dec_blob(uint64_t id, const MDB_val *val, struct index_blob *x)
{
    const uint8_t *b = val->mv_data;
    if (val->mv_size != 21 || b[12] & ~INDEX_BLOB_DEAD) return -BD_ECORRUPT;
    x->id = id;
    x->partition = util_get_le32(b);
    x->len = util_get_le32(b + 4);
    x->refcount = util_get_le32(b + 8);
    x->flags = b[12];
    x->csum = util_get_le64(b + 13);
    return 0;
}

size_t index_enc_node(uint8_t *b, const struct index_node *n)
{
    size_t alen = strnlen(n->addr, INDEX_ADDR_MAX);
    util_put_le64(b, n->capacity);
    util_put_le64(b + 8, n->used);
    b[16] = n->state;
    util_put_le64(b + 17, n->registered_index);
    b[25] = (uint8_t)alen;
    memcpy(b + 26, n->addr, alen);
    return 26 + alen;
}
int index_dec_node(uint64_t id, const MDB_val *val, struct index_node *n)
{
    const uint8_t *b = val->mv_data;
    if (val->mv_size < 26 || val->mv_size != 26u + b[25]) return -BD_ECORRUPT;
    n->id = id;
    n->capacity = util_get_le64(b);
    n->used = util_get_le64(b + 8);
    n->state = b[16];
    n->registered_index = util_get_le64(b + 17);
    memcpy(n->addr, b + 26, b[25]);
    n->addr[b[25]] = 0;
    if (n->state < INDEX_NODE_UP || n->state > INDEX_NODE_RETIRED) return -BD_ECORRUPT;
    return 0;
}

size_t index_enc_part(uint8_t *b, const struct index_part *p)
{
    for (int i = 0; i < 3; i++) util_put_le64(b + 8 * i, p->nodes[i]);
    util_put_le64(b + 24, p->epoch);
    b[32] = p->state;
    return 33;
}
int index_dec_part(uint32_t id, const MDB_val *val, struct index_part *p)
{
    const uint8_t *b = val->mv_data;
    if (val->mv_size != 33) return -BD_ECORRUPT;
    p->id = id;
    for (int i = 0; i < 3; i++) p->nodes[i] = util_get_le64(b + 8 * i);
    p->epoch = util_get_le64(b + 24);
    p->state = b[32];
    return 0;
}

size_t index_snap_key(uint8_t *buf, uint64_t vol_id, const char *name, size_t len)
{
    index_key_u64(buf, vol_id);
    memcpy(buf + 8, name, len);
    return 8 + len;
}
size_t index_enc_snap(uint8_t *b, const struct index_snap *s)
{
    util_put_le64(b, s->layer);
    util_put_le64(b + 8, s->size);
    util_put_le64(b + 16, s->created_index);
    return 24;
}
int index_dec_snap(const MDB_val *key, const MDB_val *val, struct index_snap *s)
{
    const uint8_t *k = key->mv_data, *b = val->mv_data;
    if (key->mv_size < 9 || !name_ok(k + 8, key->mv_size - 8) || val->mv_size != 24)
        return -BD_ECORRUPT;
    s->vol_id = index_key_get_u64(k);
    memcpy(s->name, k + 8, key->mv_size - 8);
    s->name[key->mv_size - 8] = 0;
    s->layer = util_get_le64(b);
    s->size = util_get_le64(b + 8);
    s->created_index = util_get_le64(b + 16);
    return 0;
}

size_t index_enc_gc(uint8_t *b, const struct index_gc *g)
{
    util_put_le32(b, g->partition);
    util_put_le64(b + 4, g->dead_index);
    return 12;
}
int index_dec_gc(uint64_t id, const MDB_val *val, struct index_gc *g)
{
    const uint8_t *b = val->mv_data;
    if (val->mv_size != 12) return -BD_ECORRUPT;
    g->blob_id = id;
    g->partition = util_get_le32(b);
    g->dead_index = util_get_le64(b + 4);
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
    uint8_t k[8];
    index_key_u64(k, id);
    return get_raw(ix, txn, t, k, 8, val);
}

static int meta_u64(struct index *ix, MDB_txn *txn, const char *key, uint64_t *v)
{
    MDB_val val;
    int rc = get_raw(ix, txn, IT_META, key, strlen(key), &val);
    if (rc) return rc == -ENOENT ? -BD_ECORRUPT : rc;
    if (val.mv_size != 8) return -BD_ECORRUPT;
    *v = util_get_le64(val.mv_data);
    return 0;
}

int index_put_meta_u64(struct index *ix, MDB_txn *txn, const char *key, uint64_t v)
{
    uint8_t b[8];
    util_put_le64(b, v);
    MDB_val k = {strlen(key), (void *)key}, d = {8, b};
    return index_mdb_err(mdb_put(txn, ix->dbi[IT_META], &k, &d, 0));
}

int index_txn_get_meta(struct index *ix, MDB_txn *txn, struct index_meta *m)
{
    MDB_val val;
    int rc = get_raw(ix, txn, IT_META, "schema", 6, &val);
    if (rc) return rc;
    if (val.mv_size != 4) return -BD_ECORRUPT;
    m->schema = util_get_le32(val.mv_data);
    rc = get_raw(ix, txn, IT_META, "cluster", 7, &val);
    if (rc) return rc == -ENOENT ? -BD_ECORRUPT : rc;
    if (val.mv_size > INDEX_CLUSTER_MAX) return -BD_ECORRUPT;
    memcpy(m->cluster_id, val.mv_data, val.mv_size);
    m->cluster_id[val.mv_size] = 0;
    if ((rc = meta_u64(ix, txn, "next_vol", &m->next_vol)) ||
        (rc = meta_u64(ix, txn, "next_layer", &m->next_layer)) ||
        (rc = meta_u64(ix, txn, "next_blob", &m->next_blob)) ||
        (rc = meta_u64(ix, txn, "applied", &m->applied)))
        return rc;
    return 0;
}

int index_txn_vol_by_name(struct index *ix, MDB_txn *txn, const char *name, size_t len,
                          struct index_vol *v)
{
    if (len == 0 || len > INDEX_NAME_MAX) return -ENOENT;
    MDB_val key = {len, (void *)name}, val;
    int rc = index_mdb_err(mdb_get(txn, ix->dbi[IT_VOLUMES], &key, &val));
    return rc ? rc : index_dec_vol(&key, &val, v);
}

int index_txn_vol_by_id(struct index *ix, MDB_txn *txn, uint64_t id, struct index_vol *v)
{
    MDB_val name;
    int rc = get_u64(ix, txn, IT_VOLIDS, id, &name);
    if (rc) return rc;
    rc = index_txn_vol_by_name(ix, txn, name.mv_data, name.mv_size, v);
    if (rc == -ENOENT || (rc == 0 && v->id != id)) return -BD_ECORRUPT;
    return rc;
}

int index_txn_layer(struct index *ix, MDB_txn *txn, uint64_t id, struct index_layer *l)
{
    MDB_val val;
    int rc = get_u64(ix, txn, IT_LAYERS, id, &val);
    return rc ? rc : index_dec_layer(id, &val, l);
}

int index_txn_blob(struct index *ix, MDB_txn *txn, uint64_t id, struct index_blob *b)
{
    MDB_val val;
    int rc = get_u64(ix, txn, IT_BLOBS, id, &val);
    return rc ? rc : index_dec_blob(id, &val, b);
}

int index_txn_part(struct index *ix, MDB_txn *txn, uint32_t id, struct index_part *p)
{
    uint8_t k[4];
    util_put_be32(k, id);
    MDB_val val;
    int rc = get_raw(ix, txn, IT_PARTITIONS, k, 4, &val);
    return rc ? rc : index_dec_part(id, &val, p);
}

int index_txn_node(struct index *ix, MDB_txn *txn, uint64_t id, struct index_node *n)
{
    MDB_val val;
    int rc = get_u64(ix, txn, IT_NODES, id, &val);
    return rc ? rc : index_dec_node(id, &val, n);
}

int index_txn_snap(struct index *ix, MDB_txn *txn, uint64_t vol_id, const char *name,
                   size_t len, struct index_snap *s)
{
    if (len == 0 || len > INDEX_NAME_MAX) return -ENOENT;
    uint8_t k[8 + INDEX_NAME_MAX];
    MDB_val key = {index_snap_key(k, vol_id, name, len), k}, val;
    int rc = index_mdb_err(mdb_get(txn, ix->dbi[IT_SNAPSHOTS], &key, &val));
    return rc ? rc : index_dec_snap(&key, &val, s);
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
        util_put_le32(b, INDEX_SCHEMA_VERSION);
        MDB_val k = {6, "schema"}, d = {4, b};
        MDB_val kc = {7, "cluster"}, dc = {strlen(cluster), (void *)cluster};
        if ((rc = index_mdb_err(mdb_put(txn, ix->dbi[IT_META], &k, &d, 0))) ||
            (rc = index_mdb_err(mdb_put(txn, ix->dbi[IT_META], &kc, &dc, 0))) ||
            (rc = index_put_meta_u64(ix, txn, "next_vol", 1)) ||
            (rc = index_put_meta_u64(ix, txn, "next_layer", 1)) ||
            (rc = index_put_meta_u64(ix, txn, "next_blob", 1)) ||
            (rc = index_put_meta_u64(ix, txn, "applied", 0))) {
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
    if (!o->dir || !o->dir[0] || strlen(o->dir) >= sizeof(((struct index *)0)->dir) ||
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
    util_strlcpy(ix->dir, o->dir, sizeof(ix->dir));
    util_strlcpy(ix->cluster_id, o->cluster_id, sizeof(ix->cluster_id));
    if ((rc = mdb_env_create(&ix->env))) goto err_free;
    if ((rc = mdb_env_set_maxdbs(ix->env, IT_N)) ||
        (rc = mdb_env_set_maxreaders(ix->env, 126)) ||
        (rc = mdb_env_set_mapsize(ix->env, o->map_size ? o->map_size : INDEX_DEFAULT_MAP_SIZE)))
        goto err_env;
    unsigned flags = MDB_NOTLS | MDB_NORDAHEAD | (o->meta_sync ? 0 : MDB_NOMETASYNC);
    if ((rc = mdb_env_open(ix->env, o->dir, flags, 0600))) goto err_env;

    MDB_txn *txn;
    if ((rc = mdb_txn_begin(ix->env, NULL, 0, &txn))) goto err_env;
    for (int t = 0; t < IT_N; t++)
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

const char *index_errmsg(const struct index *ix)
{
    return ix->errbuf;
}

const char *index_dir(const struct index *ix)
{
    return ix->dir;
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

int index_get_meta(struct index_reader *rd, struct index_meta *out)
{
    READER_CHECK(rd);
    return index_txn_get_meta(rd->ix, rd->txn, out);
}

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

int index_snap_get(struct index_reader *rd, uint64_t vol_id, const char *name, size_t len,
                   struct index_snap *out)
{
    READER_CHECK(rd);
    return index_txn_snap(rd->ix, rd->txn, vol_id, name, len, out);
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
    if (k->mv_size != 8) return -BD_ECORRUPT;
    return index_dec_node(index_key_get_u64(k->mv_data), v, (struct index_node *)out + i);
}
static int dec_part_i(const MDB_val *k, const MDB_val *v, void *out, uint32_t i)
{
    if (k->mv_size != 4) return -BD_ECORRUPT;
    return index_dec_part(util_get_be32(k->mv_data), v, (struct index_part *)out + i);
}
static int dec_gc_i(const MDB_val *k, const MDB_val *v, void *out, uint32_t i)
{
    if (k->mv_size != 8) return -BD_ECORRUPT;
    return index_dec_gc(index_key_get_u64(k->mv_data), v, (struct index_gc *)out + i);
}
static int dec_snap_i(const MDB_val *k, const MDB_val *v, void *out, uint32_t i)
{
    return index_dec_snap(k, v, (struct index_snap *)out + i);
}
static bool keep_vol_prefix(const MDB_val *k, const void *arg)
{
    return k->mv_size >= 8 && memcmp(k->mv_data, arg, 8) == 0;
}

int index_vol_list(struct index_reader *rd, const char *after, size_t after_len,
                   struct index_vol *out, uint32_t max, uint32_t *n)
{
    if (after_len > INDEX_NAME_MAX) return -EINVAL;
    return list_walk(rd, IT_VOLUMES, after, after_len, NULL, NULL, dec_vol_i, out, max, n);
}

int index_node_list(struct index_reader *rd, uint64_t after, struct index_node *out,
                    uint32_t max, uint32_t *n)
{
    uint8_t k[8];
    index_key_u64(k, after);
    return list_walk(rd, IT_NODES, k, 8, NULL, NULL, dec_node_i, out, max, n);
}

int index_part_list(struct index_reader *rd, uint32_t after, struct index_part *out,
                    uint32_t max, uint32_t *n)
{
    uint8_t k[4];
    util_put_be32(k, after);
    return list_walk(rd, IT_PARTITIONS, k, 4, NULL, NULL, dec_part_i, out, max, n);
}

int index_gc_list(struct index_reader *rd, uint64_t after, struct index_gc *out, uint32_t max,
                  uint32_t *n)
{
    uint8_t k[8];
    index_key_u64(k, after);
    return list_walk(rd, IT_GC, k, 8, NULL, NULL, dec_gc_i, out, max, n);
}

int index_snap_list(struct index_reader *rd, uint64_t vol_id, const char *after,
                    size_t after_len, struct index_snap *out, uint32_t max, uint32_t *n)
{
    if (after_len > INDEX_NAME_MAX) return -EINVAL;
    uint8_t k[8 + INDEX_NAME_MAX];
    size_t klen = index_snap_key(k, vol_id, after, after_len);
    return list_walk(rd, IT_SNAPSHOTS, k, klen, keep_vol_prefix, k, dec_snap_i, out, max, n);
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
    uint8_t kb[16];
    index_key_u64(kb, layer);
    index_key_u64(kb + 8, pos);
    MDB_val k = {16, kb}, v;
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
    MDB_cursor *cur;
    uint64_t chain[INDEX_MAX_DEPTH];
    uint32_t depth;
    struct index_piece *out;
    uint32_t max, n;
    bool full;
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

static int map_level(struct map_ctx *c, uint32_t lvl, uint64_t a, uint64_t b)
{
    if (lvl == c->depth) {
        struct index_piece p = {.off = a, .len = b - a, .kind = INDEX_HOLE};
        return emit(c, &p);
    }
    uint64_t pos = a;
    while (pos < b && !c->full) {
        struct index_ext e;
        int rc = index_ext_find(c->ix, c->cur, c->chain[lvl], pos, &e);
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
            struct index_blob bl;
            if ((rc = index_txn_blob(c->ix, c->txn, e.blob_id, &bl)))
                return rc == -ENOENT ? -BD_ECORRUPT : rc;
            uint64_t boff = (uint64_t)e.blob_off + (pos - e.off);
            if (boff + (end - pos) > bl.len) return -BD_ECORRUPT;
            p.kind = INDEX_DATA;
            p.blob_id = bl.id;
            p.partition = bl.partition;
            p.blob_off = (uint32_t)boff;
            p.blob_len = bl.len;
            p.blob_csum = bl.csum;
        }
        if ((rc = emit(c, &p))) return rc;
        pos = end;
    }
    return 0;
}

int index_map(struct index_reader *rd, uint64_t vol_id, uint64_t off, uint64_t len,
              struct index_piece *out, uint32_t max, uint32_t *n)
{
    READER_CHECK(rd);
    *n = 0;
    if (max == 0) return -EINVAL;
    struct map_ctx c = {.ix = rd->ix, .txn = rd->txn, .out = out, .max = max};
    struct index_vol v;
    int rc = index_txn_vol_by_id(rd->ix, rd->txn, vol_id, &v);
    if (rc) return rc;
    if (off > v.size || len > v.size - off) return -ERANGE;
    if (len == 0) return 0;
    if ((rc = chain_of(rd->ix, rd->txn, v.top_layer, c.chain, INDEX_MAX_DEPTH, &c.depth)))
        return rc == -ENOBUFS ? -BD_ECORRUPT : rc;
    if ((rc = mdb_cursor_open(rd->txn, rd->ix->dbi[IT_EXTENTS], &c.cur)))
        return index_mdb_err(rc);
    rc = map_level(&c, 0, off, off + len);
    mdb_cursor_close(c.cur);
    *n = c.n;
    return rc;
}
