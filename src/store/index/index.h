/* index.h: the proxy's replicated index in LMDB (DESIGN.md §4, C9-C13, C16).
 *
 * One LMDB environment per proxy, dedicated to the index (the Raft log and
 * vote live elsewhere: a Raft snapshot covers exactly the tables below).
 * Tables (named LMDB databases; all integers in keys are big-endian so
 * cursors walk in numeric order, all values little-endian):
 *
 *   volumes    name                     -> id, size, block size, state, top
 *                                          layer, attach generation, mode and
 *                                          agent id, created-at index,
 *                                          assignment (agent, mode, client),
 *                                          its QoS profile and own QoS limits
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
 *   usage      layer id                 -> data bytes, bytes of its parent it
 *                                          masks, data bytes of its view
 *   flatten    vol id                   -> a clone's flatten in progress:
 *                                          where it is, bytes copied
 *   assigns    agent | volume name      -> nothing: the volumes assigned to
 *                                          each agent, for its VOL_LIST
 *   reap       layer id                 -> index it was condemned at (a layer
 *                                          nothing reads any more, or one to
 *                                          merge into its only child, whose
 *                                          extents are freed in bounded steps)
 *   moves      (partition id, node id)  -> a replica being filled after a move
 *                                          (MOVE_REPLICA): new member, old one,
 *                                          why, the copy's checkpoint
 *   profiles   name                     -> a QoS profile (storage class): its
 *                                          limits, the volumes using it, the
 *                                          default flag
 *   meta       "schema" "cluster" "next_vol" "next_layer" "next_blob"
 *              "applied" "totals"       -> values
 *              "limit_pages"
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
 * caller structs; nothing returned borrows LMDB memory.
 *
 * ERRORS are return codes only (0 or -errno / -BD_E*, each call lists
 * its own); only index_open, which runs before anything can log for it,
 * also writes a message.  An index keeps no message of its own: every
 * caller of a write call (fsm_apply*, index_load) passes the code up to
 * a fail-stop, where the code says which check failed.
 *
 * Implemented by index.c (environment, record codecs, read API),
 * index_dump.c (digest, statistics, dump and load), index_usage.c
 * (usage) and index_walk.c (walks for the blob rewrite, flatten and
 * incremental backup). */
#ifndef BD_INDEX_H
#define BD_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/qos.h"

/* 1: first version (released).  2 (wave 2, one version for all of it): blob live
 * bytes, snapshot origin and flags, the usage and flatten tables, meta
 * "totals" (the lifecycle); the assignment in volumes and the assigns
 * table (volumes attached to agents); node failure domains, the reap and
 * moves tables and meta "limit_pages" (the cluster's shape); a volume's QoS
 * profile and limit set (base/qos.h) instead of two limits, and the
 * profiles table.  index_int.h has the layouts. */
#define INDEX_SCHEMA_VERSION 2
#define INDEX_NAME_MAX 255u      /* volume, snapshot and agent names */
#define INDEX_ADDR_MAX 255u      /* node addresses */
#define INDEX_LABEL_MAX 64u      /* failure-domain labels (zone, rack, host) */
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
/* The control plane's assignment (idxcmd.h ASSIGN): which agent may
 * attach the volume at all, and how. */
enum index_assign_mode { INDEX_ASSIGN_NONE = 0, INDEX_ASSIGN_RW = 1, INDEX_ASSIGN_RO = 2 };

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
    uint64_t created_index;    /* raft index of CREATE_VOLUME / CLONE */
    uint8_t assign_mode;       /* enum index_assign_mode */
    char assign_agent[INDEX_NAME_MAX + 1];  /* the agent it is assigned to; "" if none */
    char assign_client[INDEX_NAME_MAX + 1]; /* the one NBD client it is for; "" any */
    char profile[INDEX_NAME_MAX + 1]; /* its QoS profile, "" for none */
    struct qos_limits qos;     /* its own limits: override the profile's, field
                                  by field (qos_effective) */
};

enum index_profile_flags {
    INDEX_PROFILE_DEFAULT = 0x1, /* volumes created with neither a profile nor
                                    limits get this one; at most one has it */
};

/* A QoS profile (a storage class): changing it changes every volume that
 * names it, at once (the agents read the effective limits). */
struct index_profile {
    char name[INDEX_NAME_MAX + 1];
    uint8_t flags;             /* enum index_profile_flags */
    uint32_t n_vols;           /* volumes naming it (kept by apply) */
    uint64_t created_index;
    struct qos_limits qos;     /* the fields it sets */
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
    uint64_t live;             /* bytes of it those records address (the sum of
                                  their lengths): live / len is what a rewrite
                                  would keep */
};

/* A blob server's administrative state.  UP and DOWN are what
 * SET_NODE_STATE said (liveness itself is the heartbeat's, never stored);
 * DRAINING: every replica it holds is to be moved off, and it gets no new
 * partition; RETIRED: removed for good (it held no replica any more), kept
 * as a tombstone so its heartbeats never register it again. */
enum index_node_state {
    INDEX_NODE_UP = 1,
    INDEX_NODE_DOWN = 2,
    INDEX_NODE_RETIRED = 3,
    INDEX_NODE_DRAINING = 4,
};

struct index_node {
    uint64_t id;
    char addr[INDEX_ADDR_MAX + 1];
    uint64_t capacity;
    uint64_t used;
    uint8_t state;             /* enum index_node_state */
    uint64_t registered_index;
    /* Failure domains, outermost first ("" when not set): no partition puts
     * two replicas in one of them while enough of them exist. */
    char zone[INDEX_LABEL_MAX + 1];
    char rack[INDEX_LABEL_MAX + 1];
    char host[INDEX_LABEL_MAX + 1];
};

enum index_part_state { INDEX_PART_ACTIVE = 1 };

struct index_part {
    uint32_t id;
    uint64_t nodes[3];
    uint64_t epoch;            /* bumped by every replica replacement */
    uint8_t state;             /* enum index_part_state */
};

enum index_snap_flags {
    INDEX_SNAP_BARRIER = 0x1,  /* taken after its agent's barrier: holds every
                                  write the agent acknowledged before it */
};

struct index_snap {
    uint64_t vol_id;
    char name[INDEX_NAME_MAX + 1];
    uint64_t layer;            /* the frozen layer */
    uint64_t size;             /* volume size when taken */
    uint64_t created_index;
    uint64_t origin;           /* imported: the identity of the snapshot it was
                                  exported from; 0 for a snapshot taken here */
    uint8_t flags;             /* enum index_snap_flags */
};

struct index_gc {
    uint64_t blob_id;
    uint32_t partition;
    uint64_t dead_index;       /* raft index whose apply dropped it to 0 */
};

/* A replica being filled after MOVE_REPLICA put NODE in place of FROM in
 * partition PART: every live blob of the partition with an id at or below
 * CURSOR is known to be on NODE (MOVE_MARK moves it on; a new leader
 * resumes from there). */
struct index_move {
    uint32_t part;
    uint64_t node;             /* the new member */
    uint64_t from;             /* the member it replaced (a copy source while up) */
    uint8_t reason;            /* enum idxcmd_move_reason */
    uint64_t cursor;           /* checkpoint: blob ids <= this are copied */
    uint64_t bytes_done;       /* bytes copied up to the checkpoint */
    uint64_t started_index;    /* raft index of the MOVE_REPLICA */
};

struct index_meta {
    uint32_t schema;
    char cluster_id[INDEX_CLUSTER_MAX + 1];
    uint64_t next_vol;
    uint64_t next_layer;
    uint64_t next_blob;        /* blob ids below this were handed out; never reused */
    uint64_t applied;          /* raft index of the last applied entry */
    uint64_t limit_pages;      /* INDEX_LIMIT: table pages above which nothing that
                                  grows the index is applied (ENOSPC); 0: none */
    /* "totals", kept by apply as it goes (never by a walk): */
    uint64_t data_bytes;       /* DATA extents, every layer once */
    uint64_t blob_bytes;       /* live blobs, per copy */
    uint64_t dead_bytes;       /* dead blobs GC has not yet deleted */
    uint64_t rewrite_layer;    /* where the blob rewrite resumes: the extent */
    uint64_t rewrite_off;      /*   key after the last one it re-pointed */
    uint64_t rewritten_bytes;  /* bytes the rewrite has re-pointed, ever */
};

/* A clone being flattened (FLATTEN_START .. FLATTEN_DONE): its inherited
 * data is copied into its own bottom layer, offset by offset. */
struct index_flatten {
    uint64_t vol_id;
    uint64_t cursor;           /* everything below this offset is copied */
    uint64_t copied_bytes;     /* bytes copied so far */
    uint64_t started_index;    /* raft index of FLATTEN_START */
};

/* A layer's usage, kept by apply as its extents change (usage.c): */
struct index_usage {
    uint64_t data_bytes;       /* DATA extents of this layer */
    uint64_t masked_bytes;     /* bytes of its parent's DATA extents under its
                                  own extents: what merging the parent into it
                                  would drop */
    uint64_t view_bytes;       /* DATA bytes of the layer's view through its
                                  chain (the volume or snapshot as read) */
};

/* May AGENT (AGENT_LEN bytes) attach V, read-write if RW?  The rule every
 * proxy checks a VOL_ATTACH against and apply() enforces at the commit of
 * a read-write ATTACH (fsm.c "Assignment"): V must be assigned to AGENT,
 * and read-write for RW; the agent that holds V's read-write attach may
 * also attach it read-write again after a plain detach, to fence its own
 * writes of unknown outcome while it ships what it still holds.  0,
 * -EACCES (not AGENT's), -EPERM (assigned read-only, RW asked).  Pure. */
int index_vol_may_attach(const struct index_vol *v, const char *agent, size_t agent_len,
                         bool rw);

/* ---- READER calls --------------------------------------------------------------
 * All return 0, -ENOENT (no such record), -BD_ECORRUPT (a record failed
 * validation), or -EIO (LMDB error), unless stated. */

/* The applied index; 0 on any error. */
uint64_t index_applied(struct index_reader *rd);

int index_vol_by_name(struct index_reader *rd, const char *name, size_t len,
                      struct index_vol *out);
int index_vol_by_id(struct index_reader *rd, uint64_t id, struct index_vol *out);
/* Up to MAX volumes whose names sort after AFTER (AFTER_LEN 0: from the
 * first), in name order.  *N gets the count; fewer than MAX means the end. */
int index_vol_list(struct index_reader *rd, const char *after, size_t after_len,
                   struct index_vol *out, uint32_t max, uint32_t *n);
/* Up to MAX volumes assigned to AGENT (AGENT_LEN 1..INDEX_NAME_MAX bytes)
 * whose names sort after AFTER (AFTER_LEN 0: from the first), in name
 * order; *N as for index_vol_list.  -EINVAL for an empty or long AGENT. */
int index_assign_list(struct index_reader *rd, const char *agent, size_t agent_len,
                      const char *after, size_t after_len, struct index_vol *out, uint32_t max,
                      uint32_t *n);
/* QoS profiles: one by name, a page of them as index_vol_list pages, and
 * the default one (-ENOENT when no profile is the default). */
int index_profile_get(struct index_reader *rd, const char *name, size_t len,
                      struct index_profile *out);
int index_profile_list(struct index_reader *rd, const char *after, size_t after_len,
                       struct index_profile *out, uint32_t max, uint32_t *n);
int index_profile_default(struct index_reader *rd, struct index_profile *out);
/* Volume V's effective limits (base/qos.h qos_effective: its own over its
 * profile's over the defaults).  A profile V names that is missing is
 * -BD_ECORRUPT (apply keeps them in step). */
int index_vol_qos(struct index_reader *rd, const struct index_vol *v, struct qos_limits *out);
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
/* The same for the view of layer LAYER (a snapshot's layer, or a volume's
 * top): no volume bound is checked (the caller bounds [OFF, OFF+LEN)). */
int index_map_layer(struct index_reader *rd, uint64_t layer, uint64_t off, uint64_t len,
                    struct index_piece *out, uint32_t max, uint32_t *n);

/* One extent record, as the walks below return it. */
struct index_extent {
    uint64_t layer;
    uint64_t off;
    uint64_t len;
    uint8_t kind;              /* INDEX_ZERO or INDEX_DATA */
    uint64_t blob_id;          /* DATA: bytes [blob_off, blob_off + len) of it */
    uint32_t blob_off;
};
/* Up to MAX extent records of every layer in key order, from the first
 * whose key (layer, off) is >= (LAYER, OFF); *N as for index_vol_list
 * (index_walk.c). */
int index_ext_list(struct index_reader *rd, uint64_t layer, uint64_t off,
                   struct index_extent *out, uint32_t max, uint32_t *n);
/* What volume V inherits from: the lowest layer V made itself (*BOTTOM),
 * the layer below it (*PARENT; 0 when V inherits nothing, i.e. is no
 * clone) and the volume that made that one (*PARENT_VOL; it may no longer
 * exist). */
int index_vol_parent(struct index_reader *rd, const struct index_vol *v, uint64_t *bottom,
                     uint64_t *parent, uint64_t *parent_vol);
/* The layers whose extents hold what changed between the view of layer
 * FROM (0: an empty volume) and that of layer TO: those of TO's chain
 * above the lowest layer both chains share, and those of FROM's chain
 * above it.  At most 2 * INDEX_MAX_DEPTH into OUT; *N of them. */
int index_diff_layers(struct index_reader *rd, uint64_t from, uint64_t to, uint64_t *out,
                      uint32_t *n);
/* A range of volume offsets. */
struct index_range {
    uint64_t off;
    uint64_t len;
};
/* The union of the extents of LAYERS[N] inside [OFF, END), as ascending,
 * disjoint, non-adjacent ranges: up to MAX into OUT, *GOT of them;
 * *NEXT is where to continue (END when done). */
int index_changed(struct index_reader *rd, const uint64_t *layers, uint32_t n, uint64_t off,
                  uint64_t end, struct index_range *out, uint32_t max, uint32_t *got,
                  uint64_t *next);
/* Flattens in progress, by volume id, strictly after AFTER; *N as for
 * index_vol_list. */
int index_flatten_list(struct index_reader *rd, uint64_t after, struct index_flatten *out,
                       uint32_t max, uint32_t *n);
/* The snapshot of volume VOL_ID that froze LAYER: 0 with *OUT, -ENOENT. */
int index_snap_by_layer(struct index_reader *rd, uint64_t vol_id, uint64_t layer,
                        struct index_snap *out);
/* The volumes, other than S's own, whose chain runs through S's layer
 * from a layer that is not S's volume's: the clones that keep it (until
 * flattened).  Up to MAX names into OUT; *N how many were found in all
 * (may exceed MAX).  O(volumes x chain depth): for error messages. */
int index_snap_dependants(struct index_reader *rd, const struct index_snap *s,
                          char (*out)[INDEX_NAME_MAX + 1], uint32_t max, uint32_t *n);

int index_blob_get(struct index_reader *rd, uint64_t blob_id, struct index_blob *out);
int index_node_get(struct index_reader *rd, uint64_t node_id, struct index_node *out);
int index_part_get(struct index_reader *rd, uint32_t part_id, struct index_part *out);
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
/* Moves in (partition, node) order, strictly after (AFTER_PART, AFTER_NODE). */
int index_move_list(struct index_reader *rd, uint32_t after_part, uint64_t after_node,
                    struct index_move *out, uint32_t max, uint32_t *n);
int index_move_get(struct index_reader *rd, uint32_t part_id, uint64_t node,
                   struct index_move *out);
/* Snapshot NAME[LEN] of volume VOL_ID (index_walk.c). */
int index_snap_get(struct index_reader *rd, uint64_t vol_id, const char *name, size_t len,
                   struct index_snap *out);

/* XXH3-64 over every key and value of every replicated table, in table
 * order then key order (each record hashed as table, key length, key, value
 * length, value).  Equal at equal applied index on every replica (C16). */
int index_digest(struct index_reader *rd, uint64_t *out);

/* Counts for metrics and the bytes-per-extent figure: records per table
 * and LMDB pages in use (branch + leaf + overflow, all tables). */
struct index_stats {
    uint64_t volumes, layers, extents, blobs, partitions, nodes, snapshots, gc, reap, moves;
    uint64_t pages;            /* in use by the tables (branch + leaf + overflow) */
    uint64_t file_pages;       /* high-water mark of the file, free pages included */
    uint64_t map_bytes;        /* this replica's LMDB map size (local, not replicated) */
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

/* ---- usage (kept incrementally by apply; each call reads a few records) ----
 *
 * Definitions (bytes; "data" means blob-backed, not ZERO or HOLE):
 *   a volume's provisioned bytes are its size; its written bytes the data
 *   of its view (what a read of the whole volume finds in blobs, inherited
 *   data included); its unique bytes the data of its top layer, which no
 *   snapshot or clone shares.  A snapshot's written bytes are its view's
 *   data; its freed bytes what deleting it would drop from the index: its
 *   layer's data if nothing else reads it, the part of it the layer above
 *   masks if that layer is its only reader, else 0 (the blob bytes freed
 *   follow once the blobs' last references go; see the blob rewrite).
 *   A condemned layer (in the reap table: being freed or folded into its
 *   only child in bounded steps) keeps only its data count current;
 *   nothing reads it, so its masked and view counts are left as they were. */

/* The meta record, totals included.  0 or -code. */
int index_meta_get(struct index_reader *rd, struct index_meta *out);
/* Layer LAYER's usage record.  0, -ENOENT, -BD_ECORRUPT, -EIO. */
int index_usage_get(struct index_reader *rd, uint64_t layer, struct index_usage *out);

struct index_vol_usage {
    uint64_t provisioned_bytes;
    uint64_t written_bytes;
    uint64_t unique_bytes;
};
/* Usage of volume V (as read in this txn). */
int index_vol_usage(struct index_reader *rd, const struct index_vol *v,
                    struct index_vol_usage *out);
/* Snapshot S's written bytes and the bytes its deletion would free. */
int index_snap_usage(struct index_reader *rd, const struct index_snap *s, uint64_t *written,
                     uint64_t *freed);
/* Volume VOL_ID's flatten in progress: 0, -ENOENT (none), -code. */
int index_flatten_get(struct index_reader *rd, uint64_t vol_id, struct index_flatten *out);

/* ---- snapshots (Raft) -------------------------------------------------------------
 *
 * A dump is a self-describing, checksummed stream of every record of every
 * table, taken in one read txn (so it is the index at exactly one applied
 * index), smaller than the LMDB file (no free or half-empty pages): a
 * header, the records (tables in order, keys ascending within a table,
 * each record's key and value as index_int.h lays them out), a trailer.
 * Little-endian; index_dump.c writes and reads it with the bytes.h cursors
 * in the order of these tables:
 *
 *  header                     record                       trailer
 *  OFFSET SIZE FIELD          OFFSET SIZE FIELD            OFFSET SIZE FIELD
 *    0     8   "BDIXDMP1"       0     1   table (enum        0     8   record count
 *    8     4   version (2)                index_table)       8     8   digest (index_digest)
 *   12     4   zero             1     2   key length k      16     8   XXH3-64 of every byte
 *   16     8   applied          3     4   value length v               before it
 *                               7     k   key
 *                              7+k    v   value
 *
 * The digest hashes the records exactly as the dump lays them out.  A
 * change of this layout breaks snapshots between replicas: bump the
 * version; the golden test (tests/unit/test_index.c) fails until then.
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
