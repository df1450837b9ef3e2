/* index.h: the proxy's replicated index in LMDB (DESIGN.md §4, C9-C13, C16).
 *
 * One LMDB environment per proxy, dedicated to the index (the Raft log and
 * vote live elsewhere: a Raft snapshot covers exactly the tables below).
 * Tables (named LMDB databases; all integers in keys are big-endian so
 * cursors walk in numeric order, all values little-endian):
 *
 *   volumes    name                     -> id, size, block size, state, top
 *                                          layer, attach generation, mode and
 *                                          agent id, QoS, created-at index
 *   volids     vol id                   -> name
 *   layers     layer id                 -> parent layer, owner volume,
 *                                          reference counts (see fsm.c)
 *   extents    (layer id, volume off)   -> flags, length, blob id, off in blob
 *   blobs      blob id                  -> partition, length, refcount, csum
 *   partitions partition id (u32)       -> three node ids, epoch, state
 *   nodes      node id                  -> address, capacity, used, state,
 *                                          registered-at index
 *   snapshots  (vol id, name)           -> frozen layer, size, created-at
 *   gc         blob id                  -> partition, index it died at
 *   meta       "schema" "cluster" "next_vol" "next_layer" "next_blob"
 *              "applied"                -> values
 *
 * Every table is replicated: only fsm.c writes them, one LMDB write
 * transaction per applied Raft entry (or per batch of consecutive
 * entries), and the same entries produce byte-identical tables on every
 * replica (index_digest compares them).
 *
 * Durability (C16): never MDB_NOSYNC, never MDB_WRITEMAP|MDB_MAPASYNC.  The
 * default is MDB_NOMETASYNC: one fsync per commit; a system crash may undo
 * the last committed transaction but never corrupts the file, and the undone
 * entry is replayed from the Raft log because the applied index commits in
 * the same transaction.  The data directory must be local: NFS, SMB/CIFS,
 * 9p, Ceph and AFS are refused (statfs), tmpfs only with allow_tmpfs (tests).
 *
 * THREADS.  Exactly one thread writes (the "index writer": the reactor
 * thread, or a dedicated thread; fsm_apply*, index_load and index_open's
 * first-time initialisation are the writes).  Any number of threads read,
 * each through its own struct index_reader; readers never block the writer
 * nor each other (LMDB MVCC; read txns are MDB_NOTLS, so a reader may move
 * between threads as long as one thread uses it at a time).  A read txn
 * sees the index as of the last commit before index_read_begin(), unchanged
 * until index_read_end(), even across index_load().  Keep read txns short:
 * pages freed while one is open cannot be reused.
 *
 * Functions marked READER take a reader between index_read_begin() and
 * index_read_end() and may run on any thread.  Results are copied into
 * caller structs; nothing returned borrows LMDB memory. */
#ifndef BD_INDEX_H
#define BD_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INDEX_SCHEMA_VERSION 1
#define INDEX_NAME_MAX 255u      /* volume, snapshot and agent names */
#define INDEX_ADDR_MAX 255u      /* node addresses */
#define INDEX_CLUSTER_MAX 255u   /* cluster id */
#define INDEX_MAX_DEPTH 64u      /* layers in one volume's chain */
#define INDEX_DEFAULT_MAP_SIZE (256ull << 30) /* virtual; the file grows as used */

struct index;
struct index_reader;

struct index_opts {
    const char *dir;          /* data directory; created (0700) if missing */
    const char *cluster_id;   /* stored at first open, must match afterwards */
    uint64_t map_size;        /* LMDB map size; 0: INDEX_DEFAULT_MAP_SIZE */
    bool allow_tmpfs;         /* tests only: accept a tmpfs/ramfs directory */
    bool meta_sync;           /* true: also fsync the meta page (2 fsyncs per
                                 commit); false: MDB_NOMETASYNC (default) */
};

/* Open (creating if needed) the index in O->dir.  Refuses remote
 * filesystems, tmpfs unless allowed, a stored cluster id that differs
 * ("cluster id was X, now Y") and an unknown schema version.  On failure
 * ERR (ERRLEN bytes) says why.  *OUT is returned owned (index_close).
 * Returns 0, -EINVAL (bad options), -EXDEV (unsupported filesystem),
 * -BD_ECONFIG (cluster id or schema mismatch), -BD_ECORRUPT, -errno.
 * Call on the writer thread, before any reader exists. */
int index_open(const struct index_opts *o, struct index **out, char *err, size_t errlen);
/* Close. Every reader must have been freed. */
void index_close(struct index *ix);
/* Context for the last failed write call (borrowed, static storage of IX). */
const char *index_errmsg(const struct index *ix);
/* The data directory (borrowed, valid until index_close). */
const char *index_dir(const struct index *ix);

/* ---- readers ---------------------------------------------------------------- */

/* A read handle. Returns owned (index_reader_free), 0 or -ENOMEM. */
int index_reader_new(struct index *ix, struct index_reader **out);
void index_reader_free(struct index_reader *rd);
/* Start a read txn (snapshot of the last commit).  0, -EAGAIN (too many
 * readers), -EIO.  Must not already be in one. */
int index_read_begin(struct index_reader *rd);
/* End it; every result copied out stays valid. */
void index_read_end(struct index_reader *rd);

/* ---- records as the read API returns them ------------------------------------ */

enum index_vol_state { INDEX_VOL_READY = 1 };
enum index_attach_mode { INDEX_ATTACH_NONE = 0, INDEX_ATTACH_RW = 1 };

struct index_vol {
    char name[INDEX_NAME_MAX + 1];
    uint64_t id;
    uint64_t size;             /* bytes, a multiple of block_size */
    uint32_t block_size;
    uint8_t state;             /* enum index_vol_state */
    uint8_t attach_mode;       /* enum index_attach_mode */
    uint64_t top_layer;        /* the layer writes go to */
    uint64_t generation;       /* bumped by every read-write attach; never decreases */
    char agent[INDEX_NAME_MAX + 1]; /* attach identity while attached RW, else "" */
    uint64_t iops_limit;       /* 0: none */
    uint64_t bps_limit;        /* bytes per second; 0: none */
    uint64_t created_index;    /* raft index of CREATE_VOLUME / CLONE */
};

enum index_piece_kind { INDEX_HOLE = 0, INDEX_ZERO = 1, INDEX_DATA = 2 };

/* One piece of a mapped range.  DATA pieces name the bytes
 * [blob_off, blob_off + len) of blob blob_id. */
struct index_piece {
    uint64_t off;              /* volume offset */
    uint64_t len;
    uint8_t kind;              /* enum index_piece_kind */
    uint64_t layer;            /* layer it came from (0 for HOLE) */
    uint64_t blob_id;          /* DATA only, below */
    uint32_t partition;
    uint32_t blob_off;
    uint32_t blob_len;         /* the whole blob */
    uint64_t blob_csum;        /* XXH3-64 of the whole blob */
};

enum index_blob_flags { INDEX_BLOB_DEAD = 0x1 }; /* refcount reached 0: in gc, never revived */

struct index_blob {
    uint64_t id;
    uint32_t partition;
    uint32_t len;
    uint32_t refcount;         /* extent records referencing it, all layers */
    uint8_t flags;             /* enum index_blob_flags */
    uint64_t csum;
};

enum index_node_state { INDEX_NODE_UP = 1, INDEX_NODE_DOWN = 2, INDEX_NODE_RETIRED = 3 };

struct index_node {
    uint64_t id;
    char addr[INDEX_ADDR_MAX + 1];
    uint64_t capacity;
    uint64_t used;
    uint8_t state;             /* enum index_node_state */
    uint64_t registered_index;
};

enum index_part_state { INDEX_PART_ACTIVE = 1 };

struct index_part {
    uint32_t id;
    uint64_t nodes[3];
    uint64_t epoch;            /* bumped by every replica replacement */
    uint8_t state;             /* enum index_part_state */
};

struct index_snap {
    uint64_t vol_id;
    char name[INDEX_NAME_MAX + 1];
    uint64_t layer;            /* the frozen layer */
    uint64_t size;             /* volume size when taken */
    uint64_t created_index;
};

struct index_gc {
    uint64_t blob_id;
    uint32_t partition;
    uint64_t dead_index;       /* raft index whose apply dropped it to 0 */
};

struct index_meta {
    uint32_t schema;
    char cluster_id[INDEX_CLUSTER_MAX + 1];
    uint64_t next_vol;
    uint64_t next_layer;
    uint64_t next_blob;        /* blob ids below this were handed out; never reused */
    uint64_t applied;          /* raft index of the last applied entry */
};

/* ---- READER calls --------------------------------------------------------------
 * All return 0, -ENOENT (no such record), -BD_ECORRUPT (a record failed
 * validation), or -EIO (LMDB error), unless stated. */

int index_get_meta(struct index_reader *rd, struct index_meta *out);
/* The applied index; 0 on any error. */
uint64_t index_applied(struct index_reader *rd);

int index_vol_by_name(struct index_reader *rd, const char *name, size_t len,
                      struct index_vol *out);
int index_vol_by_id(struct index_reader *rd, uint64_t id, struct index_vol *out);
/* Up to MAX volumes whose names sort after AFTER (AFTER_LEN 0: from the
 * first), in name order.  *N gets the count; fewer than MAX means the end. */
int index_vol_list(struct index_reader *rd, const char *after, size_t after_len,
                   struct index_vol *out, uint32_t max, uint32_t *n);
/* The layer chain of a volume, top first: LAYERS[0] is the top layer. */
int index_vol_chain(struct index_reader *rd, uint64_t vol_id, uint64_t *layers,
                    uint32_t max, uint32_t *n);

/* Map [OFF, OFF+LEN) of a volume: walk its layer chain top-down and write
 * the ordered pieces covering the range, clipped to it, into OUT (at most
 * MAX, MAX >= 1).  Adjacent HOLE pieces, and adjacent ZERO pieces, are
 * merged.  If the range needs more than MAX pieces, *N == MAX and the
 * caller continues at out[MAX-1].off + out[MAX-1].len.  LEN 0 gives *N 0.
 * -ERANGE if the range is outside the volume or overflows; -ENOENT if no
 * such volume; -EINVAL if MAX is 0. */
int index_map(struct index_reader *rd, uint64_t vol_id, uint64_t off, uint64_t len,
              struct index_piece *out, uint32_t max, uint32_t *n);

int index_blob_get(struct index_reader *rd, uint64_t blob_id, struct index_blob *out);
int index_node_get(struct index_reader *rd, uint64_t node_id, struct index_node *out);
int index_part_get(struct index_reader *rd, uint32_t part_id, struct index_part *out);
int index_snap_get(struct index_reader *rd, uint64_t vol_id, const char *name, size_t len,
                   struct index_snap *out);
/* Paged lists in key order, strictly after AFTER (0 / "" to start); *N as
 * for index_vol_list. */
int index_node_list(struct index_reader *rd, uint64_t after, struct index_node *out,
                    uint32_t max, uint32_t *n);
int index_part_list(struct index_reader *rd, uint32_t after, struct index_part *out,
                    uint32_t max, uint32_t *n);
int index_gc_list(struct index_reader *rd, uint64_t after, struct index_gc *out, uint32_t max,
                  uint32_t *n);
int index_snap_list(struct index_reader *rd, uint64_t vol_id, const char *after,
                    size_t after_len, struct index_snap *out, uint32_t max, uint32_t *n);

/* XXH3-64 over every key and value of every replicated table, in table
 * order then key order (each record hashed as table, key length, key, value
 * length, value).  Equal at equal applied index on every replica (C16). */
int index_digest(struct index_reader *rd, uint64_t *out);

/* Counts for metrics and the bytes-per-extent figure: records per table
 * and LMDB pages in use (branch + leaf + overflow, all tables). */
struct index_stats {
    uint64_t volumes, layers, extents, blobs, partitions, nodes, snapshots, gc;
    uint64_t pages;            /* in use by the tables (branch + leaf + overflow) */
    uint64_t file_pages;       /* high-water mark of the file, free pages included */
    uint32_t page_size;
};
int index_stats(struct index_reader *rd, struct index_stats *out);

/* Space, by a walk of the extents and blobs (O(records)): what the blob
 * servers hold for the index (each byte three times) against what the
 * volumes and snapshots address.  A blob lives until the last extent into
 * it goes, so BLOB_BYTES / DATA_BYTES above 1 is space held by partly
 * overwritten blobs. */
struct index_space {
    uint64_t blob_bytes;       /* live blobs */
    uint64_t dead_bytes;       /* dead blobs not yet deleted by GC */
    uint64_t data_bytes;       /* DATA extents, every layer once */
};
int index_space(struct index_reader *rd, struct index_space *out);

/* ---- snapshots (Raft) -------------------------------------------------------------
 *
 * A dump is a self-describing, checksummed stream of every record of every
 * table, taken in one read txn (so it is the index at exactly one applied
 * index), smaller than the LMDB file (no free or half-empty pages):
 *
 *   header:  "BDIXDMP1" | u32 version (1) | u32 0 | u64 applied
 *   records: u8 table | u16 key len | u32 value len | key | value
 *            (all little-endian; tables in order, keys ascending)
 *   trailer: u64 record count | u64 digest (index_digest) |
 *            u64 XXH3-64 of every byte before it
 *
 * READER: EMIT is called with consecutive pieces of the stream (borrowed,
 * valid during the call); a non-zero return stops the dump and is returned. */
int index_dump(struct index_reader *rd, int (*emit)(void *arg, const void *buf, size_t len),
               void *arg);
/* The applied index in a dump's header, without validating the rest.
 * 0 or -EINVAL (not a dump). */
int index_dump_applied(const void *buf, size_t len, uint64_t *applied);
/* WRITER: replace the whole index by a dump, in one write txn: the stream
 * is validated first (checksum, known tables, keys strictly ascending,
 * bounded lengths, same cluster id, digest of the loaded tables equal to
 * the dump's), then every table is emptied and refilled.  A crash leaves
 * the old index or the new one.  Readers in a txn keep seeing the old one.
 * *APPLIED gets the dump's applied index.  0, -EINVAL / -BD_ECORRUPT (bad
 * dump), -BD_ECONFIG (another cluster), -ENOSPC (map full), -EIO. */
int index_load(struct index *ix, const void *buf, size_t len, uint64_t *applied);

#endif
