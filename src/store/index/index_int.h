/* index_int.h: what index.c shares with fsm.c and extmap.c, and nobody else.
 *
 * The table handles, the record layouts (value codecs) and the key
 * builders.  Values are decoded into the public structs of index.h (or the
 * private ones below) by explicit functions that check lengths, never by
 * casting; a value that fails its check is -BD_ECORRUPT.
 *
 * Record layouts.  Keys are big-endian, so a cursor walks them in numeric
 * order; values are little-endian.  index.c encodes and decodes each with
 * the bytes.h cursors in the order of these tables, and a decoder refuses
 * a value of any other length.  A change here changes every replica's
 * data directory and every snapshot: bump INDEX_SCHEMA_VERSION, and the
 * golden test (tests/unit/test_index.c) fails until its bytes say so.
 *
 *  volumes: key = the name (1..INDEX_NAME_MAX bytes, no NUL)
 *  OFFSET SIZE FIELD
 *    0     8   id
 *    8     8   size
 *   16     4   block_size
 *   20     1   state            enum index_vol_state
 *   21     1   attach_mode      enum index_attach_mode
 *   22     8   top_layer
 *   30     8   generation
 *   38     8   created_index
 *   46     1   agent length a
 *   47     a   agent            (no NUL)
 *  47+a    1   assign_mode      enum index_assign_mode
 *  48+a    1   assign_agent length g (0 iff assign_mode is NONE)
 *  49+a    g   assign_agent
 * 49+a+g   1   assign_client length c (0 when assign_mode is NONE)
 * 50+a+g   c   assign_client
 * 50+a+g+c 1   profile length p (0: none)
 * 51+a+g+c p   profile          (no NUL)
 *  51+a+   106 qos              base/qos.h's encoding: the volume's own limits
 *  g+c+p
 *  (schema 1 had iops_limit 8 | bps_limit 8 after generation, and ended
 *  at the agent)
 *
 *  volids: key = vol id (8); value = the volume's name
 *
 *  layers: key = layer id (8)          extents: key = layer id (8) | off (8)
 *  OFFSET SIZE FIELD                   OFFSET SIZE FIELD
 *    0     8   parent                    0     1   flags     enum index_ext_flags
 *    8     8   vol_id                    1     8   len
 *   16     4   n_children                9     8   blob_id   } DATA only: a ZERO
 *   20     4   n_snaps                  17     4   blob_off  } extent is 9 bytes
 *   24     1   is_top (0 or 1)         (21 bytes)
 *   25     8   child_xor
 *  (33 bytes)
 *
 *  blobs: key = blob id (8)            nodes: key = node id (8)
 *  OFFSET SIZE FIELD                   OFFSET SIZE FIELD
 *    0     4   partition                 0     8   capacity
 *    4     4   len                       8     8   used
 *    8     4   refcount                 16     1   state     enum index_node_state
 *   12     1   flags                    17     8   registered_index
 *   13     8   csum                     25     1   addr length a
 *   21     8   live                     26     a   addr
 *  (29 bytes)                           26+a   1   zone length z, then z bytes
 *                                       ...    1   rack length r, then r bytes
 *                                       ...    1   host length h, then h bytes
 *
 *  partitions: key = partition id (4)  snapshots: key = vol id (8) | name
 *  OFFSET SIZE FIELD                   OFFSET SIZE FIELD
 *    0     8   nodes[0]                  0     8   layer
 *    8     8   nodes[1]                  8     8   size
 *   16     8   nodes[2]                 16     8   created_index
 *   24     8   epoch                    24     8   origin
 *   32     1   state                    32     1   flags     enum index_snap_flags
 *  (33 bytes)                          (33 bytes)
 *
 *  gc: key = blob id (8)               usage: key = layer id (8)
 *  OFFSET SIZE FIELD                   OFFSET SIZE FIELD
 *    0     4   partition                 0     8   data_bytes
 *    4     8   dead_index                8     8   masked_bytes
 *  (12 bytes)                           16     8   view_bytes
 *                                      (24 bytes)
 *
 *  flatten: key = vol id (8)           reap: key = layer id (8)
 *  OFFSET SIZE FIELD                   OFFSET SIZE FIELD
 *    0     8   cursor                    0     8   condemned_index
 *    8     8   copied_bytes            (8 bytes)
 *   16     8   started_index
 *  (24 bytes)
 *
 *  profiles: key = the name
 *  OFFSET SIZE FIELD
 *    0     1   flags     enum index_profile_flags
 *    1     4   n_vols
 *    5     8   created_index
 *   13   106   qos       base/qos.h's encoding
 *  (119 bytes)
 *
 *  moves: key = partition id (4) | node (8)
 *  OFFSET SIZE FIELD
 *    0     8   node      (as in the key)
 *    8     8   from
 *   16     1   reason    enum idxcmd_move_reason
 *   17     8   cursor
 *   25     8   bytes_done
 *   33     8   started_index
 *  (41 bytes)
 *
 *  assigns: key = agent length (1) | agent | volume name; value empty.
 *  One record per volume whose assign_mode is not NONE, kept by fsm.c in
 *  the transaction that changes the volume's assignment.
 *
 *  meta: key = a name, value by name
 *    "schema"      4   INDEX_SCHEMA_VERSION
 *    "cluster"     the cluster id's bytes
 *    "next_vol", "next_layer", "next_blob", "applied", "limit_pages"   8 each
 *    "totals"      48: data_bytes 8 | blob_bytes 8 | dead_bytes 8 |
 *                      rewrite_layer 8 | rewrite_off 8 | rewritten_bytes 8 */
#ifndef BD_INDEX_INT_H
#define BD_INDEX_INT_H

#include "base/bytes.h"
#include "store/index/index.h"

#include <lmdb.h>

/* Table numbers: the order of the digest and of a dump.  Stable: the dump
 * format names tables by these numbers, so a new table takes the next
 * number (14) and none is ever renumbered. */
enum index_table {
    INDEX_T_META = 0,
    INDEX_T_VOLUMES = 1,
    INDEX_T_VOLIDS = 2,
    INDEX_T_LAYERS = 3,
    INDEX_T_EXTENTS = 4,
    INDEX_T_BLOBS = 5,
    INDEX_T_PARTITIONS = 6,
    INDEX_T_NODES = 7,
    INDEX_T_SNAPSHOTS = 8,
    INDEX_T_GC = 9,
    INDEX_T_USAGE = 10,          /* schema 2 */
    INDEX_T_FLATTEN = 11,        /* schema 2 */
    INDEX_T_ASSIGNS = 12,        /* schema 2 */
    INDEX_T_REAP = 13,           /* schema 2 */
    INDEX_T_MOVES = 14,          /* schema 2 */
    INDEX_T_PROFILES = 15,       /* schema 2 */
    INDEX_T_N
};

struct index {
    MDB_env *env;
    MDB_dbi dbi[INDEX_T_N];         /* opened once at index_open; valid for all txns */
    char cluster_id[INDEX_CLUSTER_MAX + 1];
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

/* ---- keys (big-endian; the tables above) ----------------------------------- */
#define INDEX_ID_KEY_LEN 8    /* volids, layers, blobs, nodes, gc, usage, flatten, reap */
#define INDEX_EXT_KEY_LEN 16  /* extents */
#define INDEX_PART_KEY_LEN 4  /* partitions */
#define INDEX_MOVE_KEY_LEN 12 /* moves: partition id | node id */
static inline void index_key_u64(uint8_t k[INDEX_ID_KEY_LEN], uint64_t id)
{
    struct bytes_w w;
    bw_init(&w, k, INDEX_ID_KEY_LEN);
    bw_be64(&w, id);
}
static inline uint64_t index_key_get_u64(const uint8_t k[INDEX_ID_KEY_LEN])
{
    struct bytes_r r;
    br_init(&r, k, INDEX_ID_KEY_LEN);
    return br_be64(&r);
}
static inline void index_key_ext(uint8_t k[INDEX_EXT_KEY_LEN], uint64_t layer, uint64_t off)
{
    struct bytes_w w;
    bw_init(&w, k, INDEX_EXT_KEY_LEN);
    bw_be64(&w, layer);
    bw_be64(&w, off);
}
static inline void index_key_get_ext(const uint8_t k[INDEX_EXT_KEY_LEN], uint64_t *layer,
                                     uint64_t *off)
{
    struct bytes_r r;
    br_init(&r, k, INDEX_EXT_KEY_LEN);
    *layer = br_be64(&r);
    *off = br_be64(&r);
}
static inline void index_key_part(uint8_t k[INDEX_PART_KEY_LEN], uint32_t id)
{
    struct bytes_w w;
    bw_init(&w, k, INDEX_PART_KEY_LEN);
    bw_be32(&w, id);
}
static inline uint32_t index_key_get_part(const uint8_t k[INDEX_PART_KEY_LEN])
{
    struct bytes_r r;
    br_init(&r, k, INDEX_PART_KEY_LEN);
    return br_be32(&r);
}

/* ---- record codecs (index.c) --------------------------------------------- */
/* Encoders write into BUF (INDEX_VAL_MAX bytes: every record fits) and
 * return the length; decoders return 0 or -BD_ECORRUPT. */
#define INDEX_VAL_MAX 1280 /* the largest is a volume: 51 + 4 x INDEX_NAME_MAX + QOS_ENC_LEN */
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
size_t index_enc_flatten(uint8_t *buf, const struct index_flatten *f);
int index_dec_flatten(uint64_t vol_id, const MDB_val *val, struct index_flatten *f);
size_t index_enc_usage(uint8_t *buf, const struct index_usage *u);
int index_dec_usage(const MDB_val *val, struct index_usage *u);
size_t index_enc_profile(uint8_t *buf, const struct index_profile *p);
int index_dec_profile(const MDB_val *key, const MDB_val *val, struct index_profile *p);
/* meta "totals": the six counters of struct index_meta. */
#define INDEX_TOTALS_LEN 48
size_t index_enc_totals(uint8_t *buf, const struct index_meta *m);
size_t index_enc_move(uint8_t *buf, const struct index_move *m);
int index_dec_move(const MDB_val *key, const MDB_val *val, struct index_move *m);
/* Snapshot key: vol id (BE) | name, into BUF (INDEX_ID_KEY_LEN +
 * INDEX_NAME_MAX bytes).  Returns the key length. */
size_t index_snap_key(uint8_t *buf, uint64_t vol_id, const char *name, size_t len);
/* Assigns key: agent length | agent | volume name, into BUF
 * (INDEX_ASSIGN_KEY_MAX bytes).  Returns the key length. */
#define INDEX_ASSIGN_KEY_MAX (1 + 2 * INDEX_NAME_MAX)
size_t index_assign_key(uint8_t *buf, const char *agent, size_t agent_len, const char *name,
                        size_t name_len);

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
int index_txn_usage(struct index *ix, MDB_txn *txn, uint64_t layer, struct index_usage *u);
int index_txn_flatten(struct index *ix, MDB_txn *txn, uint64_t vol_id, struct index_flatten *f);
int index_txn_move(struct index *ix, MDB_txn *txn, uint32_t part, uint64_t node,
                   struct index_move *m);
static inline void index_key_move(uint8_t k[INDEX_MOVE_KEY_LEN], uint32_t part, uint64_t node)
{
    struct bytes_w w;
    bw_init(&w, k, INDEX_MOVE_KEY_LEN);
    bw_be32(&w, part);
    bw_be64(&w, node);
}
/* Table pages in use (branch + leaf + overflow over every table): the
 * same on every replica at the same applied index, whatever its free
 * pages (what INDEX_LIMIT is compared with). */
int index_txn_pages(struct index *ix, MDB_txn *txn, uint64_t *pages);
int index_txn_profile(struct index *ix, MDB_txn *txn, const char *name, size_t len,
                      struct index_profile *p);
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
/* meta "totals" from M's counters, inside a write txn. */
int index_put_meta_totals(struct index *ix, MDB_txn *txn, const struct index_meta *m);

#endif
