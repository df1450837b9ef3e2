/* idxcmd.h: the index state machine's commands and results (the bytes of a
 * Raft log entry, and of the answer apply() gives), encode and decode side
 * by side.
 *
 * A command is a 4-byte header and a type-specific body, little-endian,
 * exactly as long as its fields (trailing bytes are an error), written
 * and read with the bytes.h cursors in the order of these tables:
 *
 *  OFFSET SIZE FIELD
 *    0     1   version    IDXCMD_VERSION
 *    1     1   reserved   0
 *    2     2   type       enum idxcmd_type
 *    4     -   body       per type, below
 *
 *  TYPE                  BODY: fields back to back, SIZE in bytes
 *                        (str: 1-byte length, then the bytes, no NUL)
 *  CREATE_VOLUME (1)     name str | size 8 | block_size 4 | flags 1 |
 *                        profile str (may be empty) | qos QOS_ENC_LEN
 *  DELETE_VOLUME (2)     name str
 *  RESIZE_VOLUME (3)     name str | size 8
 *  SET_QOS (4)           name str | flags 1 | profile str (may be empty) |
 *                        clear 2 | qos QOS_ENC_LEN
 *  ATTACH (5)            name str | agent str | flags 4 | base_generation 8
 *  DETACH (6)            vol_id 8 | generation 8 | agent str
 *  WRITE_BATCH (7)       n 4 | n writes of IDXCMD_WRITE_LEN (below)
 *  REGISTER_NODE (8)     node_id 8 | addr str | capacity 8 | used 8
 *  SET_NODE_STATE (9)    node_id 8 | state 1 (enum index_node_state, 1-4)
 *  CREATE_PARTITION (10) part_id 4 | nodes[0..2] 8 each
 *  REPLACE_REPLICA (11)  part_id 4 | old_node 8 | new_node 8
 *  ALLOC_BLOB_IDS (12)   count 4
 *  GC_DONE (13)          n 4 | n blob ids of 8, ascending
 *  SNAPSHOT_CREATE (14)  vol str | snap str
 *  SNAPSHOT_DELETE (15)  vol str | snap str
 *  CLONE (16)            vol str | snap str | new_name str
 *  REPOINT (17)          blob_id 8 | partition 4 | blob_len 4 | blob_csum 8 |
 *                        cursor_layer 8 | cursor_off 8 | n 4 |
 *                        n re-points of IDXCMD_REPOINT_LEN (below)
 *  ROLLBACK (18)         vol str | snap str
 *  SNAPSHOT_GROUP (19)   snap str | flags 1 (0) | n 1 | n times:
 *                          vol str | generation 8 (0: no agent barrier) |
 *                          seen 8 (the read-write attach generation the
 *                          proposer saw, 0: none; generation is 0 or seen)
 *  FLATTEN_START (20)    vol str
 *  FLATTEN_FILL (21)     vol_id 8 | layer 8 | cursor 8 | blob_id 8 |
 *                        partition 4 | blob_len 4 | blob_csum 8 | n 4 |
 *                        n fills of IDXCMD_FILL_LEN: off 8 | len 4 | new_off 4
 *                        (n 0: the blob fields are 0, the cursor moves)
 *  FLATTEN_DONE (22)     vol_id 8 | layer 8
 *  IMPORT_BEGIN (23)     vol str | agent str | from str (may be empty) | size 8
 *  IMPORT_END (24)       vol str | agent str | generation 8 | flags 1 |
 *                        snap str (may be empty) | origin 8
 *  ASSIGN (25)           name str | agent str | client str | flags 4
 *  QOS_PROFILE_PUT (26)  name str | flags 1 | clear 2 | qos QOS_ENC_LEN
 *  QOS_PROFILE_DELETE (27) name str
 *
 *  qos is a limit set in base/qos.h's encoding (validated as it decodes);
 *  clear, QOS_SET_* bits of fields to unset, never one qos sets.
 *
 *  (40 and up: the cluster's shape, issue 15)
 *  REAP (40)             budget 4
 *  INDEX_LIMIT (41)      max_pages 8
 *  NODE_DOMAIN (42)      node_id 8 | zone str | rack str | host str
 *  MOVE_REPLICA (43)     part_id 4 | old_node 8 | new_node 8 | reason 1
 *  MOVE_MARK (44)        part_id 4 | node 8 | cursor 8 | bytes_done 8 | done 1
 *
 *  one write of a WRITE_BATCH (struct idxcmd_write)
 *  OFFSET SIZE FIELD
 *    0     8   vol_id
 *    8     8   generation
 *   16     8   off
 *   24     4   len
 *   28     1   kind       enum idxcmd_write_kind
 *   29     8   blob_id
 *   37     4   partition
 *   41     4   blob_off
 *   45     4   blob_len
 *   49     8   blob_csum  (57 bytes: IDXCMD_WRITE_LEN)
 *
 *  one re-point of a REPOINT (struct idxcmd_repoint): the extents of LAYER
 *  in [off, off+len) that still name bytes [old_off, old_off+len) of
 *  old_blob are to name [new_off, new_off+len) of the command's blob
 *  OFFSET SIZE FIELD
 *    0     8   layer
 *    8     8   off
 *   16     4   len
 *   20     8   old_blob
 *   28     4   old_off
 *   32     4   new_off    (36 bytes: IDXCMD_REPOINT_LEN)
 *
 * Names (volumes, snapshots, agent ids) are 1-255 bytes of [A-Za-z0-9._-],
 * not starting with '.' or '-' (they become NBD export names, log fields
 * and paths).  ASSIGN's agent and client may also be empty: no agent
 * (the volume is detached from every agent), any client.
 *
 * The DECODER is the one validator: everything a command must satisfy to
 * be proposed is checked there (bounded counts, 4096-aligned non-zero
 * lengths, offset + length overflow, sizes, name charset, distinct
 * partition nodes; WRITE_BATCH writes sorted by (volume, offset) and not
 * overlapping within a volume; GC_DONE ids ascending; REPOINT re-points
 * sorted by (layer, offset), not overlapping, inside the new blob and in
 * ascending order of it, never re-pointing a blob to itself; FLATTEN_FILL
 * fills the same, below its cursor; SNAPSHOT_GROUP volumes distinct).  The encoder runs
 * the decoder over its own output and refuses (-EINVAL) what would not
 * decode, so a bad command is never proposed.  What depends on the index
 * (does the volume exist, is the generation current) is decided by apply()
 * and reported in the result.
 *
 * Decoding never allocates: strings, WRITE_BATCH writes, GC_DONE ids and
 * REPOINT re-points point into the input buffer (valid as long as it is)
 * and are read with idxcmd_write_get() / idxcmd_gc_id() /
 * idxcmd_repoint_get().
 *
 * CHECKLIST when adding or changing a command:
 *   1. its line in IDXCMD_TYPES and its struct in union idxcmd_u;
 *   2. encode and decode side by side in idxcmd.c, same field order;
 *   3. its apply function in fsm.c (deterministic: index + command only);
 *   4. a vector in tests/unit/test_idxcmd.c (it becomes a fuzz seed) and
 *      its golden bytes;
 *   5. bump IDXCMD_VERSION if an existing layout changed, and its table
 *      above: replicas of different versions must not share a log; the
 *      golden test fails until its bytes are updated.
 *
 * Changelog:
 *   1  first version.  New commands (added at the end of IDXCMD_TYPES)
 *      leave existing layouts alone and so the version too: a replica
 *      that does not know one decodes it as invalid and applies it as a
 *      no-op, so every replica of a group must run the same binary before
 *      any new command is proposed.  Added so far: REPOINT .. IMPORT_END
 *      (17-24, the lifecycle), ASSIGN (25, volumes to agents), REAP ..
 *      MOVE_MARK (40-44, the cluster's shape) and state 4 of
 *      SET_NODE_STATE; index schema 2 (index.h) keeps an older binary off a
 *      data directory whose log may hold them.  Codes are never reused or
 *      renumbered; the next volume command takes 28, the next shape one 45.
 *   2  (wave 2) QoS (issue 13): CREATE_VOLUME and SET_QOS carry a profile
 *      and a limit set instead of two limits; QOS_PROFILE_PUT (26) and
 *      QOS_PROFILE_DELETE (27).
 *      ATTACH carries base_generation: a read-write attach applies only
 *      while the volume's generation is still that one (FENCED otherwise),
 *      so a late copy of an agent's attach cannot fence the attach it was
 *      answered.
 */
#ifndef BD_IDXCMD_H
#define BD_IDXCMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/qos.h"

#define IDXCMD_VERSION 2
#define IDXCMD_HDR_LEN 4
#define IDXCMD_MAX_LEN 65000u        /* fits in a PROPOSE's fields (WIRE_MAX_FIELDS) */
#define IDXCMD_MAX_WRITES 1024u      /* writes in one WRITE_BATCH */
#define IDXCMD_WRITE_LEN 57u         /* bytes per encoded write */
#define IDXCMD_MAX_GC 4096u          /* ids in one GC_DONE */
#define IDXCMD_MAX_ALLOC (1u << 20)  /* ids in one ALLOC_BLOB_IDS */
#define IDXCMD_MAX_VOL_SIZE (1ull << 50) /* 1 PiB */
#define IDXCMD_MAX_BLOB_LEN (32u << 20)
#define IDXCMD_ALIGN 4096u           /* offsets, lengths and sizes are multiples */
/* Extent records one entry may free or merge (fsm.c "Bounded work"): a
 * DELETE_VOLUME or SNAPSHOT_DELETE does at most this much and leaves the
 * rest to REAP entries; a REAP asks for at most IDXCMD_MAX_REAP. */
#define IDXCMD_REAP_BUDGET 1024u
#define IDXCMD_MAX_REAP 65536u
#define IDXCMD_LABEL_MAX 64u         /* a failure-domain label: [A-Za-z0-9._-]*, may be empty */

/* Why a replica moves (MOVE_REPLICA): the rebuild record keeps it. */
enum idxcmd_move_reason {
    IDXCMD_MOVE_LOST = 1,            /* its server was down past replace_after_ms */
    IDXCMD_MOVE_DRAIN = 2,           /* its server is being drained */
    IDXCMD_MOVE_REBALANCE = 3,       /* to even partitions out by capacity */
};
#define IDXCMD_MAX_REPOINT 1024u     /* re-points in one REPOINT */
#define IDXCMD_REPOINT_LEN 36u       /* bytes per encoded re-point */
#define IDXCMD_MAX_GROUP 32u         /* volumes in one SNAPSHOT_GROUP */
#define IDXCMD_MAX_FILL 1024u        /* fills in one FLATTEN_FILL */
#define IDXCMD_FILL_LEN 16u          /* bytes per encoded fill */

#define IDXCMD_TYPES(X)                                                                    \
    X(1, CREATE_VOLUME, create_volume)                                                     \
    X(2, DELETE_VOLUME, delete_volume)                                                     \
    X(3, RESIZE_VOLUME, resize_volume)                                                     \
    X(4, SET_QOS, set_qos)                                                                 \
    X(5, ATTACH, attach)                                                                   \
    X(6, DETACH, detach)                                                                   \
    X(7, WRITE_BATCH, write_batch)                                                         \
    X(8, REGISTER_NODE, register_node)                                                     \
    X(9, SET_NODE_STATE, set_node_state)                                                   \
    X(10, CREATE_PARTITION, create_partition)                                              \
    X(11, REPLACE_REPLICA, replace_replica)                                                \
    X(12, ALLOC_BLOB_IDS, alloc_blob_ids)                                                  \
    X(13, GC_DONE, gc_done)                                                                \
    X(14, SNAPSHOT_CREATE, snapshot_create)                                                \
    X(15, SNAPSHOT_DELETE, snapshot_delete)                                                \
    X(16, CLONE, clone)                                                                    \
    X(17, REPOINT, repoint)                                                                \
    X(18, ROLLBACK, rollback)                                                              \
    X(19, SNAPSHOT_GROUP, snapshot_group)                                                  \
    X(20, FLATTEN_START, flatten_start)                                                    \
    X(21, FLATTEN_FILL, flatten_fill)                                                      \
    X(22, FLATTEN_DONE, flatten_done)                                                      \
    X(23, IMPORT_BEGIN, import_begin)                                                      \
    X(24, IMPORT_END, import_end)                                                          \
    X(25, ASSIGN, assign)                                                                  \
    X(26, QOS_PROFILE_PUT, qos_profile_put)                                                \
    X(27, QOS_PROFILE_DELETE, qos_profile_delete)                                          \
    X(40, REAP, reap)                                                                      \
    X(41, INDEX_LIMIT, index_limit)                                                        \
    X(42, NODE_DOMAIN, node_domain)                                                        \
    X(43, MOVE_REPLICA, move_replica)                                                      \
    X(44, MOVE_MARK, move_mark)

enum idxcmd_type {
#define X(code, NAME, name) IDXCMD_##NAME = code,
    IDXCMD_TYPES(X)
#undef X
};

/* A string borrowed from a command buffer, or given for encoding. */
struct idxcmd_str {
    const char *ptr;
    uint8_t len;
};
struct idxcmd_str idxcmd_cstr(const char *s); /* for encoding; truncates past 255 */

enum idxcmd_write_kind { IDXCMD_W_DATA = 1, IDXCMD_W_ZERO = 2, IDXCMD_W_TRIM = 3 };

/* One extent write of a WRITE_BATCH (its layout is the table above).  For
 * ZERO and TRIM the blob fields are zero. */
struct idxcmd_write {
    uint64_t vol_id;
    uint64_t generation;       /* the attach generation the agent holds (C10) */
    uint64_t off;
    uint32_t len;
    uint8_t kind;              /* enum idxcmd_write_kind */
    uint64_t blob_id;          /* DATA: bytes [blob_off, blob_off+len) of this blob */
    uint32_t partition;
    uint32_t blob_off;
    uint32_t blob_len;         /* the whole blob */
    uint64_t blob_csum;        /* XXH3-64 of the whole blob */
};

/* One re-point of a REPOINT (its layout is the table above). */
struct idxcmd_repoint {
    uint64_t layer;
    uint64_t off;              /* volume offset in LAYER */
    uint32_t len;
    uint64_t old_blob;
    uint32_t old_off;          /* where OFF lies in OLD_BLOB */
    uint32_t new_off;          /* where OFF is to lie in the command's blob */
};

/* One volume of a SNAPSHOT_GROUP. */
struct idxcmd_group_vol {
    struct idxcmd_str vol;
    uint64_t generation;       /* !0: taken after the barrier of the agent
                                  holding this attach generation (C12) */
    uint64_t seen;             /* the read-write attach generation the
                                  proposer's index showed when it decided
                                  on barriers (0: none).  The entry is
                                  refused ESTALE if the volume's differs when
                                  it applies: a proposer that read a stale
                                  index (a follower behind the commit) must
                                  not snapshot an attached volume as if no
                                  agent held acknowledged writes for it. */
};

/* One fill of a FLATTEN_FILL: bytes [new_off, new_off+len) of the blob
 * hold what the clone's parent shows at [off, off+len). */
struct idxcmd_fill {
    uint64_t off;
    uint32_t len;
    uint32_t new_off;
};

#define IDXCMD_IMPORT_COMMIT 0x1  /* IMPORT_END: keep the data (else roll back) */

/* CREATE_VOLUME: neither a profile nor limits were asked for: apply takes
 * the default profile, if one exists (then profile is empty and qos sets
 * nothing). */
#define IDXCMD_CREATE_DEFAULT_QOS 0x1
/* SET_QOS: the volume's profile becomes `profile` ("" for none); without
 * it `profile` is empty and the profile stays. */
#define IDXCMD_QOS_PROFILE 0x1
/* QOS_PROFILE_PUT: CREATE makes a new profile (EEXIST if the name is
 * taken), else the existing one is changed (ENOENT if none); DEFAULT makes
 * it the default profile (the old default stops being one), UNDEFAULT
 * stops it being the default; not both. */
#define IDXCMD_PROFILE_CREATE 0x1
#define IDXCMD_PROFILE_DEFAULT 0x2
#define IDXCMD_PROFILE_UNDEFAULT 0x4

/* ATTACH: the runtime attach of an agent (wire VOL_ATTACH).  Read-write,
 * it raises the generation to BASE_GENERATION + 1, but only while the
 * volume's generation is BASE_GENERATION (the one the agent last learned):
 * otherwise it changes nothing and the result is FENCED with the volume's
 * generation.  Each copy of one attach (a resend, a retried proposal)
 * carries the same base, so at most one of them ever applies, and none can
 * apply after a later attach of the same agent (fsm.c "Fencing"). */
#define IDXCMD_ATTACH_RO 0x1      /* read-only: no generation bump, no state change */
#define IDXCMD_ATTACH_FORCE 0x2   /* take over from another agent (fences it) */

/* ASSIGN: the control plane attaches a volume to an agent, as a disk to an
 * instance (fsm.c "Assignment").  Only that agent may attach it (VOL_ATTACH,
 * the runtime attach above), read-only if RO; CLIENT, if not empty, is the
 * one NBD client (a PSK identity or a client certificate's id) the agent
 * lets open it over TCP.  An empty AGENT detaches the volume from every
 * agent (CLIENT empty, RO clear).  FORCE takes the volume from an agent
 * that still holds it read-write, fencing that agent (C10). */
#define IDXCMD_ASSIGN_RO 0x1
#define IDXCMD_ASSIGN_FORCE 0x2

union idxcmd_u {
    struct { struct idxcmd_str name; uint64_t size; uint32_t block_size; uint8_t flags;
             struct idxcmd_str profile; struct qos_limits qos; } create_volume;
    struct { struct idxcmd_str name; } delete_volume;
    struct { struct idxcmd_str name; uint64_t size; } resize_volume;
    struct { struct idxcmd_str name; uint8_t flags; struct idxcmd_str profile;
             uint16_t clear; struct qos_limits qos; } set_qos;
    struct { struct idxcmd_str name, agent; uint32_t flags; uint64_t base_generation; } attach;
    struct { uint64_t vol_id, generation; struct idxcmd_str agent; } detach;
    struct { uint32_t n; const uint8_t *raw; const struct idxcmd_write *in; } write_batch;
    struct { uint64_t node_id; struct idxcmd_str addr; uint64_t capacity, used; } register_node;
    struct { uint64_t node_id; uint8_t state; } set_node_state;
    struct { uint32_t part_id; uint64_t nodes[3]; } create_partition;
    struct { uint32_t part_id; uint64_t old_node, new_node; } replace_replica;
    struct { uint32_t count; } alloc_blob_ids;
    struct { uint32_t n; const uint8_t *raw; const uint64_t *in; } gc_done;
    struct { struct idxcmd_str vol, snap; } snapshot_create;
    struct { struct idxcmd_str vol, snap; } snapshot_delete;
    struct { struct idxcmd_str vol, snap, new_name; } clone;
    struct { uint32_t budget; } reap;                 /* 1..IDXCMD_MAX_REAP */
    struct { uint64_t max_pages; } index_limit;       /* 0: no limit */
    struct { uint64_t node_id; struct idxcmd_str zone, rack, host; } node_domain;
    struct { uint32_t part_id; uint64_t old_node, new_node; uint8_t reason; } move_replica;
    struct { uint32_t part_id; uint64_t node, cursor, bytes_done; uint8_t done; } move_mark;
    struct { uint64_t blob_id; uint32_t partition, blob_len; uint64_t blob_csum;
             uint64_t cursor_layer, cursor_off; uint32_t n; const uint8_t *raw;
             const struct idxcmd_repoint *in; } repoint;
    struct { struct idxcmd_str vol, snap; } rollback;
    struct { struct idxcmd_str snap; uint8_t flags, n; const uint8_t *raw; size_t raw_len;
             const struct idxcmd_group_vol *in; } snapshot_group;
    struct { struct idxcmd_str vol; } flatten_start;
    struct { uint64_t vol_id, layer, cursor, blob_id; uint32_t partition, blob_len;
             uint64_t blob_csum; uint32_t n; const uint8_t *raw;
             const struct idxcmd_fill *in; } flatten_fill;
    struct { uint64_t vol_id, layer; } flatten_done;
    struct { struct idxcmd_str vol, agent, from; uint64_t size; } import_begin;
    struct { struct idxcmd_str vol, agent; uint64_t generation; uint8_t flags;
             struct idxcmd_str snap; uint64_t origin; } import_end;
    struct { struct idxcmd_str name, agent, client; uint32_t flags; } assign;
    struct { struct idxcmd_str name; uint8_t flags; uint16_t clear;
             struct qos_limits qos; } qos_profile_put;
    struct { struct idxcmd_str name; } qos_profile_delete;
};

/* A command.  Encode side: fill type and the matching union member
 * (write_batch.in / gc_done.in point at arrays of n); decode side: raw
 * points into the input. */
struct idxcmd {
    uint16_t type;             /* enum idxcmd_type */
    union idxcmd_u u;
};

/* Encode C into BUF (CAP bytes).  Returns the length, -EMSGSIZE if it does
 * not fit, -EINVAL if C is not a valid command (the decoder's rules).
 * Never allocates. */
int idxcmd_encode(uint8_t *buf, size_t cap, const struct idxcmd *c);
/* Decode and validate BUF[LEN].  0 or -EPROTO.  C borrows BUF. */
int idxcmd_decode(const uint8_t *buf, size_t len, struct idxcmd *c);
/* Write I (< n) of a decoded WRITE_BATCH / id I of a decoded GC_DONE. */
void idxcmd_write_get(const struct idxcmd *c, uint32_t i, struct idxcmd_write *w);
uint64_t idxcmd_gc_id(const struct idxcmd *c, uint32_t i);
/* Re-point I (< n) of a decoded REPOINT. */
void idxcmd_repoint_get(const struct idxcmd *c, uint32_t i, struct idxcmd_repoint *r);
/* Volume I (< n) of a SNAPSHOT_GROUP (V->vol borrows the command). */
void idxcmd_group_get(const struct idxcmd *c, uint32_t i, struct idxcmd_group_vol *v);
/* Fill I (< n) of a FLATTEN_FILL. */
void idxcmd_fill_get(const struct idxcmd *c, uint32_t i, struct idxcmd_fill *f);
/* qsort comparator for struct idxcmd_write: (vol_id, off), the order a
 * WRITE_BATCH must have. */
int idxcmd_write_cmp(const void *a, const void *b);
/* The name rule above. */
bool idxcmd_name_valid(const char *p, size_t len);
const char *idxcmd_type_name(uint16_t type); /* "WRITE_BATCH", or "unknown" */

/* ---- results ---------------------------------------------------------------
 * What apply() answers, per command, little-endian:
 *
 *  OFFSET SIZE FIELD
 *    0     2   type        the command's
 *    2     1   status      enum idxcmd_status
 *    3     1   reserved    0
 *    4     8   id
 *   12     8   generation
 *   20     8   size
 *   28     4   block_size
 *   32     4   n           WRITE_BATCH writes (<= IDXCMD_MAX_WRITES), else 0
 *   36     n   st          one enum idxcmd_status byte per write */
#define IDXCMD_STATUSES(X)                                                                    \
    X(0, OK)                                                                               \
    X(1, EINVAL)    /* inconsistent with the index (blob fields differ, bad state) */    \
    X(2, ENOENT)    /* no such volume, snapshot, node, partition */                      \
    X(3, EEXIST)    /* name or id taken */                                                \
    X(4, FENCED)    /* stale attach generation, or another agent's attach (C10) */       \
    X(5, ERANGE)    /* outside the volume; shrink */                                      \
    X(6, EBUSY)     /* attached, or attached elsewhere */                                 \
    X(7, ESTALE)    /* blob already garbage: write it again under a new id */            \
    X(8, ELIMIT)    /* a bound: layer chain depth, id space */                            \
    X(9, SKIPPED)   /* entry at or below the applied index: already applied */             \
    X(10, EACCES)   /* ATTACH by an agent the volume is not assigned to, or read-write \
                       on a read-only assignment (index_vol_may_attach) */               \
    X(11, ENOSPC)   /* the index is near its size limit: nothing that grows it */

enum idxcmd_status {
#define X(code, NAME) IDXCMD_ST_##NAME = code,
    IDXCMD_STATUSES(X)
#undef X
    IDXCMD_N_STATUS
};

struct idxcmd_result {
    uint16_t type;             /* the command's type */
    uint8_t status;            /* enum idxcmd_status, for the command as a whole */
    uint64_t id;               /* CREATE_VOLUME, CLONE, ATTACH: volume id;
                                  CREATE_VOLUME, SET_QOS refused ENOENT: 1
                                  when the profile is missing (not the volume);
                                  QOS_PROFILE_DELETE refused EBUSY: the
                                  volumes that use it;
                                  ALLOC_BLOB_IDS: first id; SNAPSHOT_CREATE:
                                  frozen layer; GC_DONE: ids removed;
                                  REPOINT: bytes re-pointed; FLATTEN_FILL:
                                  bytes filled; SNAPSHOT_GROUP refused: the
                                  position (from 1) of the volume that
                                  refused; IMPORT_BEGIN: volume id; REAP:
                                  layers still to reap; MOVE_REPLICA: the
                                  partition's new epoch */
    uint64_t generation;       /* ATTACH, IMPORT_BEGIN: the generation to write with
                                  (ATTACH refused: the volume's generation) */
    uint64_t size;             /* ATTACH: volume size */
    uint32_t block_size;       /* ATTACH */
    uint32_t n;                /* WRITE_BATCH: writes, each with st[i] */
    uint8_t st[IDXCMD_MAX_WRITES];
};

#define IDXCMD_RESULT_MAX_LEN (36u + IDXCMD_MAX_WRITES)
/* Encode R: bytes written or -EMSGSIZE. */
int idxcmd_encode_result(uint8_t *buf, size_t cap, const struct idxcmd_result *r);
/* Decode: 0 or -EPROTO. */
int idxcmd_decode_result(const uint8_t *buf, size_t len, struct idxcmd_result *r);
const char *idxcmd_status_name(uint8_t st);
/* A status as a blockd code: 0, -EINVAL, -ENOENT, -EEXIST, -BD_EFENCED,
 * -ERANGE, -EBUSY, -ESTALE, -E2BIG, -EALREADY, -EACCES, -ENOSPC. */
int idxcmd_status_to_err(uint8_t st);

/* Test support: decode BUF, re-encode, compare.  0, -EPROTO (does not
 * decode), -EILSEQ (re-encodes differently: a codec bug). */
int idxcmd_roundtrip(const uint8_t *buf, size_t len);
int idxcmd_result_roundtrip(const uint8_t *buf, size_t len);

#endif
