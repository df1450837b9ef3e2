/* idxcmd.h: the index state machine's commands and results (the bytes of a
 * Raft log entry, and of the answer apply() gives), encode and decode side
 * by side.
 *
 * A command is a 4-byte header and a type-specific body, little-endian,
 * exactly as long as its fields (trailing bytes are an error):
 *
 *  OFFSET SIZE FIELD
 *    0     1   version    IDXCMD_VERSION
 *    1     1   reserved   0
 *    2     2   type       enum idxcmd_type
 *    4     -   body       per type, below
 *
 * Strings are u8 length + bytes (no NUL).  Names (volumes, snapshots,
 * agent ids) are 1-255 bytes of [A-Za-z0-9._-], not starting with '.' or
 * '-' (they become NBD export names, log fields and paths).
 *
 * The DECODER is the one validator: everything a command must satisfy to
 * be proposed is checked there (bounded counts, 4096-aligned non-zero
 * lengths, offset + length overflow, sizes, name charset, distinct
 * partition nodes; WRITE_BATCH writes sorted by (volume, offset) and not
 * overlapping within a volume; GC_DONE ids ascending).  The encoder runs
 * the decoder over its own output and refuses (-EINVAL) what would not
 * decode, so a bad command is never proposed.  What depends on the index
 * (does the volume exist, is the generation current) is decided by apply()
 * and reported in the result.
 *
 * Decoding never allocates: strings, WRITE_BATCH writes and GC_DONE ids
 * point into the input buffer (valid as long as it is) and are read with
 * idxcmd_write_get() / idxcmd_gc_id().
 *
 * CHECKLIST when adding or changing a command:
 *   1. its line in IDXCMD_TYPES and its struct in union idxcmd_u;
 *   2. encode and decode side by side in idxcmd.c, same field order;
 *   3. its apply function in fsm.c (deterministic: index + command only);
 *   4. a vector in tests/unit/test_idxcmd.c (it becomes a fuzz seed);
 *   5. bump IDXCMD_VERSION if an existing layout changed: replicas of
 *      different versions must not share a log.
 *
 * Changelog:
 *   1  first version. */
#ifndef BD_IDXCMD_H
#define BD_IDXCMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDXCMD_VERSION 1
#define IDXCMD_HDR_LEN 4
#define IDXCMD_MAX_LEN 65000u        /* fits in a PROPOSE's fields (WIRE_MAX_FIELDS) */
#define IDXCMD_MAX_WRITES 1024u      /* writes in one WRITE_BATCH */
#define IDXCMD_WRITE_LEN 57u         /* bytes per encoded write */
#define IDXCMD_MAX_GC 4096u          /* ids in one GC_DONE */
#define IDXCMD_MAX_ALLOC (1u << 20)  /* ids in one ALLOC_BLOB_IDS */
#define IDXCMD_MAX_VOL_SIZE (1ull << 50) /* 1 PiB */
#define IDXCMD_MAX_BLOB_LEN (32u << 20)
#define IDXCMD_ALIGN 4096u           /* offsets, lengths and sizes are multiples */

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
    X(16, CLONE, clone)

enum idxcmd_type {
#define X(code, NAME, name) IDXCMD_##NAME = code,
    IDXCMD_TYPES(X)
#undef X
};

/* A string borrowed from a command buffer, or given for encoding. */
struct idx_str {
    const char *ptr;
    uint8_t len;
};
struct idx_str idx_cstr(const char *s); /* for encoding; truncates past 255 */

enum idx_write_kind { IDX_W_DATA = 1, IDX_W_ZERO = 2, IDX_W_TRIM = 3 };

/* One extent write of a WRITE_BATCH.  For ZERO and TRIM the blob fields
 * are zero.  Encoded as (all LE) vol u64 | generation u64 | off u64 | len
 * u32 | kind u8 | blob_id u64 | partition u32 | blob_off u32 | blob_len u32
 * | blob_csum u64 = IDXCMD_WRITE_LEN bytes. */
struct idx_write {
    uint64_t vol_id;
    uint64_t generation;       /* the attach generation the agent holds (C10) */
    uint64_t off;
    uint32_t len;
    uint8_t kind;              /* enum idx_write_kind */
    uint64_t blob_id;          /* DATA: bytes [blob_off, blob_off+len) of this blob */
    uint32_t partition;
    uint32_t blob_off;
    uint32_t blob_len;         /* the whole blob */
    uint64_t blob_csum;        /* XXH3-64 of the whole blob */
};

#define IDX_ATTACH_RO 0x1      /* read-only: no generation bump, no state change */
#define IDX_ATTACH_FORCE 0x2   /* take over from another agent (fences it) */

union idxcmd_u {
    struct { struct idx_str name; uint64_t size; uint32_t block_size;
             uint64_t iops_limit, bps_limit; } create_volume;
    struct { struct idx_str name; } delete_volume;
    struct { struct idx_str name; uint64_t size; } resize_volume;
    struct { struct idx_str name; uint64_t iops_limit, bps_limit; } set_qos;
    struct { struct idx_str name, agent; uint32_t flags; } attach;
    struct { uint64_t vol_id, generation; struct idx_str agent; } detach;
    struct { uint32_t n; const uint8_t *raw; const struct idx_write *in; } write_batch;
    struct { uint64_t node_id; struct idx_str addr; uint64_t capacity, used; } register_node;
    struct { uint64_t node_id; uint8_t state; } set_node_state;
    struct { uint32_t part_id; uint64_t nodes[3]; } create_partition;
    struct { uint32_t part_id; uint64_t old_node, new_node; } replace_replica;
    struct { uint32_t count; } alloc_blob_ids;
    struct { uint32_t n; const uint8_t *raw; const uint64_t *in; } gc_done;
    struct { struct idx_str vol, snap; } snapshot_create;
    struct { struct idx_str vol, snap; } snapshot_delete;
    struct { struct idx_str vol, snap, new_name; } clone;
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
void idxcmd_write_get(const struct idxcmd *c, uint32_t i, struct idx_write *w);
uint64_t idxcmd_gc_id(const struct idxcmd *c, uint32_t i);
/* qsort comparator for struct idx_write: (vol_id, off), the order a
 * WRITE_BATCH must have. */
int idxcmd_write_cmp(const void *a, const void *b);
/* The name rule above. */
bool idxcmd_name_valid(const char *p, size_t len);
const char *idxcmd_type_name(uint16_t type); /* "WRITE_BATCH", or "unknown" */

/* ---- results ---------------------------------------------------------------
 * What apply() answers, per command.  Encoded (LE) as type u16 | status u8
 * | 0 u8 | id u64 | generation u64 | size u64 | block_size u32 | n u32 |
 * n x u8 per-write status. */
#define IDX_STATUSES(X)                                                                    \
    X(0, OK)                                                                               \
    X(1, EINVAL)    /* inconsistent with the index (blob fields differ, bad state) */    \
    X(2, ENOENT)    /* no such volume, snapshot, node, partition */                      \
    X(3, EEXIST)    /* name or id taken */                                                \
    X(4, FENCED)    /* stale attach generation, or another agent's attach (C10) */       \
    X(5, ERANGE)    /* outside the volume; shrink */                                      \
    X(6, EBUSY)     /* attached, or attached elsewhere */                                 \
    X(7, ESTALE)    /* blob already garbage: write it again under a new id */            \
    X(8, ELIMIT)    /* a bound: layer chain depth, id space */                            \
    X(9, SKIPPED)   /* entry at or below the applied index: already applied */

enum idx_status {
#define X(code, NAME) IDX_##NAME = code,
    IDX_STATUSES(X)
#undef X
    IDX_N_STATUS
};

struct idx_result {
    uint16_t type;             /* the command's type */
    uint8_t status;            /* enum idx_status, for the command as a whole */
    uint64_t id;               /* CREATE_VOLUME, CLONE, ATTACH: volume id;
                                  ALLOC_BLOB_IDS: first id; SNAPSHOT_CREATE:
                                  frozen layer; GC_DONE: ids removed */
    uint64_t generation;       /* ATTACH: the generation to write with */
    uint64_t size;             /* ATTACH: volume size */
    uint32_t block_size;       /* ATTACH */
    uint32_t n;                /* WRITE_BATCH: writes, each with st[i] */
    uint8_t st[IDXCMD_MAX_WRITES];
};

#define IDX_RESULT_MAX_LEN (36u + IDXCMD_MAX_WRITES)
/* Encode R: bytes written or -EMSGSIZE. */
int idxcmd_encode_result(uint8_t *buf, size_t cap, const struct idx_result *r);
/* Decode: 0 or -EPROTO. */
int idxcmd_decode_result(const uint8_t *buf, size_t len, struct idx_result *r);
const char *idx_status_name(uint8_t st);
/* A status as a blockd code: 0, -EINVAL, -ENOENT, -EEXIST, -BD_EFENCED,
 * -ERANGE, -EBUSY, -ESTALE, -E2BIG, -EALREADY. */
int idx_status_to_err(uint8_t st);

/* Test support: decode BUF, re-encode, compare.  0, -EPROTO (does not
 * decode), -EILSEQ (re-encodes differently: a codec bug). */
int idxcmd_roundtrip(const uint8_t *buf, size_t len);
int idxcmd_result_roundtrip(const uint8_t *buf, size_t len);

#endif
