/* index_int.h: what index.c shares with fsm.c and extmap.c, and nobody else.
 *
 * The table handles, the record layouts (value codecs) and the key
 * builders.  Values are decoded into the public structs of index.h (or the
 * private ones below) by explicit functions that check lengths, never by
 * casting; a value that fails its check is -BD_ECORRUPT. */
#ifndef BD_INDEX_INT_H
#define BD_INDEX_INT_H

#include "index.h"

#include <lmdb.h>

/* Table numbers: the order of the digest and of a dump.  Stable: the dump
 * format names tables by these numbers. */
enum index_table {
    IT_META = 0,
    IT_VOLUMES,
    IT_VOLIDS,
    IT_LAYERS,
    IT_EXTENTS,
    IT_BLOBS,
    IT_PARTITIONS,
    IT_NODES,
    IT_SNAPSHOTS,
    IT_GC,
    IT_N
};

struct index {
    MDB_env *env;
    MDB_dbi dbi[IT_N];         /* opened once at index_open; valid for all txns */
    char dir[4096];
    char cluster_id[INDEX_CLUSTER_MAX + 1];
    char errbuf[256];          /* context of the last failed write call (writer thread) */
    /* Writer thread only: blobs whose refcount reached 0 during the entry
     * being applied (extmap.c), kept between entries to avoid allocating. */
    uint64_t *dead;
    uint32_t n_dead, cap_dead;
};

struct index_reader {
    struct index *ix;
    MDB_txn *txn;              /* reset between reads, renewed by read_begin */
    bool active;               /* between read_begin and read_end */
};

/* A layer: see fsm.c for the reference rules. */
struct index_layer {
    uint64_t id;
    uint64_t parent;           /* 0: bottom of its chain */
    uint64_t vol_id;           /* volume that created it (informational) */
    uint32_t n_children;       /* layers whose parent this is */
    uint32_t n_snaps;          /* snapshots that froze it */
    uint8_t is_top;            /* a volume writes to it */
    uint64_t child_xor;        /* XOR of the children's ids: the child when n_children == 1 */
};

enum index_ext_flags { INDEX_EXT_ZERO = 0x1 };

/* One extent record, decoded. */
struct index_ext {
    uint64_t layer;
    uint64_t off;
    uint64_t len;
    uint8_t flags;             /* enum index_ext_flags */
    uint64_t blob_id;          /* DATA only */
    uint32_t blob_off;
};

/* ---- keys (big-endian) ---------------------------------------------------- */
#define INDEX_EXT_KEY_LEN 16
static inline void index_key_u64(uint8_t k[8], uint64_t v)
{
    for (int i = 0; i < 8; i++) k[i] = (uint8_t)(v >> (56 - 8 * i));
}
static inline uint64_t index_key_get_u64(const uint8_t k[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | k[i];
    return v;
}

/* ---- record codecs (index.c) --------------------------------------------- */
/* Encoders write into BUF (large enough: INDEX_VAL_MAX) and return the length. */
#define INDEX_VAL_MAX 640
size_t index_enc_vol(uint8_t *buf, const struct index_vol *v);
int index_dec_vol(const MDB_val *key, const MDB_val *val, struct index_vol *v);
size_t index_enc_layer(uint8_t *buf, const struct index_layer *l);
int index_dec_layer(uint64_t id, const MDB_val *val, struct index_layer *l);
size_t index_enc_ext(uint8_t *buf, const struct index_ext *e);
int index_dec_ext(const MDB_val *key, const MDB_val *val, struct index_ext *e);
size_t index_enc_blob(uint8_t *buf, const struct index_blob *b);
int index_dec_blob(uint64_t id, const MDB_val *val, struct index_blob *b);
size_t index_enc_node(uint8_t *buf, const struct index_node *n);
int index_dec_node(uint64_t id, const MDB_val *val, struct index_node *n);
size_t index_enc_part(uint8_t *buf, const struct index_part *p);
int index_dec_part(uint32_t id, const MDB_val *val, struct index_part *p);
size_t index_enc_snap(uint8_t *buf, const struct index_snap *s);
int index_dec_snap(const MDB_val *key, const MDB_val *val, struct index_snap *s);
size_t index_enc_gc(uint8_t *buf, const struct index_gc *g);
int index_dec_gc(uint64_t id, const MDB_val *val, struct index_gc *g);
/* Snapshot key: vol id (BE) | name.  Returns the key length. */
size_t index_snap_key(uint8_t *buf, uint64_t vol_id, const char *name, size_t len);

/* ---- txn-level accessors shared by readers and the writer ------------------
 * 0, -ENOENT, -BD_ECORRUPT, -EIO. */
int index_txn_get_meta(struct index *ix, MDB_txn *txn, struct index_meta *m);
int index_txn_vol_by_name(struct index *ix, MDB_txn *txn, const char *name, size_t len,
                          struct index_vol *v);
int index_txn_vol_by_id(struct index *ix, MDB_txn *txn, uint64_t id, struct index_vol *v);
int index_txn_layer(struct index *ix, MDB_txn *txn, uint64_t id, struct index_layer *l);
int index_txn_blob(struct index *ix, MDB_txn *txn, uint64_t id, struct index_blob *b);
int index_txn_part(struct index *ix, MDB_txn *txn, uint32_t id, struct index_part *p);
int index_txn_node(struct index *ix, MDB_txn *txn, uint64_t id, struct index_node *n);
int index_txn_snap(struct index *ix, MDB_txn *txn, uint64_t vol_id, const char *name,
                   size_t len, struct index_snap *s);
/* Map an LMDB return code to -errno (MDB_NOTFOUND -> -ENOENT, MDB_MAP_FULL
 * -> -ENOSPC, MDB_CORRUPTED/MDB_PAGE_NOTFOUND -> -BD_ECORRUPT, else -EIO). */
int index_mdb_err(int rc);
/* Position CUR (on the extents table) on the extent of LAYER containing
 * POS, or else the first one after POS.  1 with *E, 0 if none, or -code. */
int index_ext_find(struct index *ix, MDB_cursor *cur, uint64_t layer, uint64_t pos,
                   struct index_ext *e);
/* Test support: the statfs check of index_open, for a given f_type. */
int index_check_fstype(long type, bool allow_tmpfs, char *err, size_t errlen);
/* meta "applied" and the u64 allocators, inside a write txn. */
int index_put_meta_u64(struct index *ix, MDB_txn *txn, const char *key, uint64_t v);

#endif
