/* wire.h: THE blockd wire codec (DESIGN.md §3).
 *
 * One framed binary protocol for agent<->proxy, proxy<->blob,
 * proxy<->proxy (Raft included) and blob<->blob (repair).  Every frame is a
 * fixed 40-byte little-endian header and a body:
 *
 *  OFFSET SIZE FIELD        NOTES
 *    0     4   magic        WIRE_MAGIC ("BLKD" on the wire)
 *    4     2   version      WIRE_VERSION; see the changelog below
 *    6     2   type         enum wire_type
 *    8     2   flags        WIRE_F_RESPONSE, WIRE_F_ONEWAY
 *   10     2   status       enum wire_status; 0 in requests
 *   12     4   len          body bytes; > WIRE_MAX_FRAME is rejected before
 *                           any allocation
 *   16     8   req_id       chosen by the requester, echoed in the response
 *   24     4   payload_len  trailing body bytes that are bulk data carrying
 *                           their own XXH3-64 in the fields (<= len)
 *   28     4   fields_csum  low 32 bits of XXH3-64 over the first
 *                           len - payload_len body bytes (the fields)
 *   32     4   reserved     zero
 *   36     4   hdr_csum     low 32 bits of XXH3-64 over header bytes 0..35
 *
 *  body = fields (per-type layout below) | payload (bulk data, or nothing)
 *
 * Fields.  A message's fields are the members of its struct below, in
 * declaration order, back to back, no padding (wire.c reads and writes
 * them with the bytes.h cursors, one call per member):
 *
 *    uintN_t members        N/8 bytes, little-endian
 *    struct wire_str        u16 length, then the bytes (<= WIRE_STR_MAX)
 *    FOO_len + FOO          u32 length, then the bytes (RAFT chunk,
 *                           PROPOSE cmd and result) -- except data_len +
 *                           data, whose bytes are the payload, after
 *                           every field
 *    n + packed entries     u32 count, then count entries laid out below
 *    `unused`, `*_in`       not on the wire (an empty body; the encoder's
 *                           unpacked input)
 *
 * VOL_WRITE carries n_ext and its extents only with WIRE_WRITE_SCATTER.
 * Packed entries:
 *
 *  blob entry (BLOB_LIST,      bad blob (BLOB_REPORT)     map range (VOL_READ,
 *  BLOB_PULL), 20 bytes        12 bytes                   VOL_MAP), 20 bytes
 *  OFFSET SIZE FIELD           OFFSET SIZE FIELD          OFFSET SIZE FIELD
 *    0     8   blob_id           0     8   blob_id          0     8   off
 *    8     4   len               8     4   partition        8     8   len
 *   12     8   csum                                        16     4   kind
 *
 *  write extent (scattered     volume entry (VOL_LIST), variable:
 *  VOL_WRITE), 12 bytes          name (struct wire_str), vol_id u64, size u64,
 *                                flags u32 (WIRE_ATTACH_RO), client (struct
 *                                wire_str)
 *  OFFSET SIZE FIELD
 *    0     8   off
 *    8     4   len
 *
 *  QoS report (VOL_QOS request),   QoS entry (VOL_QOS response),
 *  WIRE_QOS_REPORT_LEN             WIRE_QOS_ENTRY_LEN
 *  OFFSET SIZE FIELD               OFFSET SIZE FIELD
 *    0     8   vol_id                0     8   vol_id
 *    8    16   ops[2] (r, w)         8     1   found (0 or 1)
 *   24    16   bytes[2]              9   106   qos (base/qos.h's encoding;
 *   40     8   delayed                          every field set when found,
 *   48     8   throttled_us                     none when not)
 *   56     4   waiting
 *   60     8   p50_us[2]
 *   68     8   p99_us[2]
 *   76    48   level[6] (signed)
 *
 * Why two checksums: the header checksum lets a receiver reject a frame
 * before trusting `len`; the fields checksum covers offsets, ids and
 * lengths, which no other check would catch.  Bulk data is not hashed per
 * hop: it carries the XXH3-64 the agent computed (C14), which the proxy and
 * the blob server verify, so hashing it again at every hop would only burn
 * CPU.
 *
 * Errors: a response with status != WIRE_OK has the body of
 * struct wire_error (a hint and a message), whatever its type.
 *
 * Codec rules (STYLE.md §9):
 *   - wire_encode_<msg>_{req,resp} write the fields (never the payload)
 *     into a caller buffer and return the bytes written or -EMSGSIZE; they
 *     never allocate.  The payload travels beside them as an iovec.
 *   - wire_decode_<msg>_{req,resp} parse a whole body and return 0 or
 *     -EPROTO.  They check that the fields end exactly where the payload
 *     begins, that declared lengths match, that counts fit their bounds,
 *     and that offset + length does not overflow.  Strings and payloads
 *     point into the body and are valid as long as it is.
 *   - Strings are u16 length + bytes (no NUL on the wire); decoded strings
 *     are NOT NUL-terminated: use the (ptr, len) pair.
 *
 * CHECKLIST when adding or changing a message:
 *   1. add or edit its line in WIRE_MESSAGES and its structs below;
 *   2. write encode and decode side by side in wire.c, same field order;
 *   3. add a vector in tests/unit/test_wire.c build_vectors() and its
 *      golden bytes (the round-trip, truncation and fuzz seed tests pick
 *      it up from there);
 *   4. bump WIRE_VERSION if an existing layout changed, with a line in the
 *      changelog here; the golden test fails until its bytes are updated.
 *
 * Changelog:
 *   1  first version.  Later additions that need no bump (new types only):
 *      CLOCK (3).
 *   2  (wave 2) NODE_HEARTBEAT carries the server's failure domains (zone,
 *      rack, host), and its response the current proxies' addresses;
 *      BLOB_PULL (16); VOL_LIST asks as an agent (agent_id) and its entries
 *      carry the assignment (flags, client); VOL_ATTACH's answer carries the
 *      client; VOL_ATTACH's request carries base_generation (a read-write
 *      attach is a compare-and-set; its EFENCED answer's hint is the
 *      volume's generation); VOL_QOS (47, issue 13: QoS limits out, per-volume figures
 *      back).  Message type codes are never reused or renumbered: a new
 *      type takes a free code in its group of WIRE_MESSAGES.  Later additions
 *      that need no bump (new types only): VOL_BARRIER (48), AGENT_HELLO
 *      (49), for snapshot barriers; VOL_LEASE (50), map leases (DESIGN §4).
 */
#ifndef BD_WIRE_H
#define BD_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/qos.h"

#define WIRE_MAGIC 0x444b4c42u /* bytes 'B','L','K','D' */
#define WIRE_VERSION 2
#define WIRE_HDR_LEN 40
/* Largest body: a 16 MiB blob or write plus generous room for fields. */
#define WIRE_MAX_FRAME ((32u << 20) + 65536u)
#define WIRE_MAX_FIELDS 65536u /* the fields part of any body */
#define WIRE_STR_MAX 4096u     /* any string field */
#define WIRE_NAME_MAX 255u     /* volume names (they become NBD export names) */
#define WIRE_ID_MAX 64u        /* agent ids and NBD client ids (tls.h TLS_ID_MAX) */
#define WIRE_LIST_MAX 4096u    /* entries in a BLOB_LIST response */
#define WIRE_MAP_MAX 2048u     /* ranges in a VOL_MAP response */
#define WIRE_VOLS_MAX 1024u    /* volumes in a VOL_LIST response */
#define WIRE_VOLS_PAGE 64u     /* ... as a proxy answers it at most: an agent asks
                                  for this many and pages on while it gets them */
#define WIRE_BAD_MAX 1024u     /* bad blobs in a BLOB_REPORT response */
#define WIRE_PULL_MAX 256u     /* blobs in one BLOB_PULL */

#define WIRE_F_RESPONSE 0x1 /* this frame answers the request with req_id */
#define WIRE_F_ONEWAY 0x2   /* a request that gets no response */
#define WIRE_F_KNOWN (WIRE_F_RESPONSE | WIRE_F_ONEWAY)

/* The message list.  X(code, NAME, name): one line per request/response
 * pair; the code is stable on the wire. */
#define WIRE_MESSAGES(X)                                                                   \
    X(1, HELLO, hello)                 /* identify and authenticate a peer */             \
    X(2, PING, ping)                   /* liveness and round-trip time */                 \
    X(3, CLOCK, clock)                 /* the peer's wall clock (health: clock skew) */  \
    X(10, BLOB_PUT, blob_put)          /* proxy -> blob: store an immutable blob */       \
    X(11, BLOB_GET, blob_get)          /* read a blob or a range of it */                 \
    X(12, BLOB_DELETE, blob_delete)    /* proxy GC -> blob */                             \
    X(13, BLOB_STAT, blob_stat)        /* one blob's metadata */                          \
    X(14, BLOB_LIST, blob_list)        /* a partition's blobs, paged, for repair */       \
    X(15, BLOB_REPORT, blob_report)    /* capacity, health, bad blobs */                  \
    X(16, BLOB_PULL, blob_pull)        /* proxy -> blob: copy blobs from another server */\
    X(20, NODE_HEARTBEAT, node_heartbeat) /* blob -> proxy: I am up */                    \
    X(30, RAFT, raft)                  /* proxy <-> proxy: one raft message (oneway) */   \
    X(31, PROPOSE, propose)            /* follower proxy -> leader: an index command */   \
    X(40, VOL_ATTACH, vol_attach)      /* agent -> proxy */                               \
    X(41, VOL_DETACH, vol_detach)                                                         \
    X(42, VOL_WRITE, vol_write)        /* an extent write, zero or trim */                \
    X(43, VOL_READ, vol_read)                                                             \
    X(44, VOL_MAP, vol_map)            /* data / zero / hole ranges */                    \
    X(45, VOL_FLUSH, vol_flush)        /* fence check before a flush is acked */          \
    X(46, VOL_LIST, vol_list)          /* volumes, for NBD_OPT_LIST */                    \
    X(47, VOL_QOS, vol_qos)            /* QoS limits of attached volumes; their stats */  \
    X(48, VOL_BARRIER, vol_barrier)    /* proxy -> agent: ship what you acked (C12) */    \
    X(49, AGENT_HELLO, agent_hello)    /* agent -> proxy, oneway: which agent I am */      \
    X(50, VOL_LEASE, vol_lease)        /* agent -> proxy: a range's blob map, leased */

enum wire_type {
#define X(code, NAME, name) WIRE_##NAME = code,
    WIRE_MESSAGES(X)
#undef X
};

/* Response status.  Stable on the wire; map with wire_status_{from,to}_err. */
#define WIRE_STATUSES(X)                                                                   \
    X(0, OK)                                                                               \
    X(1, EINVAL)     /* a field is out of range or inconsistent */                        \
    X(2, ENOENT)     /* no such volume, blob or partition */                              \
    X(3, EEXIST)                                                                           \
    X(4, ECSUM)      /* data does not match its checksum */                               \
    X(5, EFENCED)    /* stale attach generation or partition epoch (C10) */               \
    X(6, ENOSPC)                                                                           \
    X(7, EIO)                                                                              \
    X(8, ENOTLEADER) /* hint = leader id, if known */                                     \
    X(9, EAGAIN)     /* try again: no leader yet, not ready, overloaded */                \
    X(10, ENOTSUP)   /* unknown type or feature */                                        \
    X(11, ETIMEDOUT)                                                                       \
    X(12, EBUSY)     /* conflict: attached elsewhere, in use */                           \
    X(13, ERANGE)    /* offset or length outside the volume */                            \
    X(14, EAUTH)     /* HELLO missing or wrong */                                         \
    X(15, EPERM)     /* read-only attach, forbidden operation */                          \
    X(16, EIMMUTABLE) /* blob id reused with different bytes */                           \
    X(17, ESHUTDOWN) /* the server is stopping */                                         \
    X(18, ENOMEM)    /* a bounded resource is exhausted */

enum wire_status {
#define X(code, NAME) WIRE_##NAME = code,
    WIRE_STATUSES(X)
#undef X
};

/* The fixed header, decoded.  All fields are copies. */
struct wire_hdr {
    uint16_t version;
    uint16_t type;
    uint16_t flags;
    uint16_t status;
    uint32_t len;
    uint64_t req_id;
    uint32_t payload_len;
    uint32_t fields_csum;
};

/* A length-delimited string borrowed from a body (not NUL-terminated). */
struct wire_str {
    const char *ptr;
    uint16_t len;
};
/* Build a wire_str from a C string (for encoding). */
struct wire_str wire_cstr(const char *s);
/* Copy S into BUF (LEN bytes) as a C string; false if it does not fit or
 * contains a NUL. */
bool wire_str_copy(struct wire_str s, char *buf, size_t len);

/* ---- header --------------------------------------------------------------- */

/* Encode HDR into OUT[WIRE_HDR_LEN], computing fields_csum over FIELDS and
 * hdr_csum.  hdr->len must already include the payload. */
void wire_encode_hdr(uint8_t out[WIRE_HDR_LEN], const struct wire_hdr *hdr, const void *fields,
                     size_t fields_len);
/* Decode and validate a header: magic, version, checksum, known flags,
 * len <= WIRE_MAX_FRAME, payload_len <= len, fields part <= WIRE_MAX_FIELDS.
 * 0, or -EPROTO (bad magic, version or checksum) or -EMSGSIZE (too long). */
int wire_decode_hdr(const uint8_t in[WIRE_HDR_LEN], struct wire_hdr *hdr);
/* Verify the fields checksum of a whole BODY against HDR.  0 or -EPROTO. */
int wire_check_fields(const struct wire_hdr *hdr, const uint8_t *body);

/* ---- messages ------------------------------------------------------------- */

enum wire_role { WIRE_ROLE_AGENT = 1, WIRE_ROLE_PROXY = 2, WIRE_ROLE_BLOB = 3, WIRE_ROLE_CTL = 4 };

struct wire_error {           /* the body of every non-OK response */
    uint64_t hint;            /* ENOTLEADER: leader id (0 unknown); EFENCED to a
                               * read-write VOL_ATTACH: the volume's generation;
                               * otherwise 0 */
    struct wire_str msg;      /* one line for logs and users */
};

struct wire_hello_req {
    uint64_t cluster_hash;    /* XXH3-64 of the cluster id */
    uint64_t node_id;         /* sender's id (0 for agents and ctl) */
    uint16_t role;            /* enum wire_role */
    uint64_t auth;            /* XXH3-64 of cluster id + secret; 0 if no secret */
    struct wire_str name;     /* sender's name for logs ("agent hv1") */
};
struct wire_hello_resp {
    uint64_t node_id;
    uint16_t role;
};

struct wire_ping_req { uint64_t stamp; };
struct wire_ping_resp { uint64_t stamp; };

/* CLOCK: any peer answers with its wall clock (conn.c, like PING), so the
 * asker can estimate the skew as wall_us - (sent + received) / 2 of its
 * own clock.  Added in version 1 as a new type: an older peer answers
 * ENOTSUP (skew unknown), never fatal. */
struct wire_clock_req { uint64_t wall_us; };  /* the asker's wall clock (for its logs) */
struct wire_clock_resp { uint64_t wall_us; }; /* the answerer's, microseconds since 1970 */

#define WIRE_PUT_COMPRESSIBLE 0x1 /* the server may store it zstd-compressed */
struct wire_blob_put_req {
    uint64_t blob_id;
    uint32_t partition;
    uint32_t flags;           /* WIRE_PUT_* */
    uint64_t epoch;           /* partition epoch; stale epochs are refused */
    uint64_t csum;            /* XXH3-64 of data */
    uint32_t data_len;        /* == payload length */
    const uint8_t *data;      /* payload */
};
struct wire_blob_put_resp {
    uint32_t stored_len;      /* bytes on disk (smaller if compressed) */
};

struct wire_blob_get_req {
    uint64_t blob_id;
    uint32_t partition;
    uint32_t off;             /* range within the blob */
    uint32_t len;             /* 0 with off 0: the whole blob */
};
struct wire_blob_get_resp {
    uint64_t csum;            /* XXH3-64 of the returned bytes */
    uint32_t blob_len;        /* the whole blob's length */
    uint32_t data_len;        /* == payload length */
    const uint8_t *data;
};

struct wire_blob_delete_req {
    uint64_t blob_id;
    uint32_t partition;
};
struct wire_blob_delete_resp { uint8_t unused; };

struct wire_blob_stat_req { uint64_t blob_id; };
struct wire_blob_stat_resp {
    uint64_t blob_id;
    uint32_t partition;
    uint32_t flags;           /* WIRE_PUT_* as stored; bit 31: stored compressed */
    uint32_t len;
    uint32_t stored_len;
    uint64_t csum;
};

struct wire_blob_entry { uint64_t blob_id; uint32_t len; uint64_t csum; };
struct wire_blob_list_req {
    uint32_t partition;
    uint32_t max;             /* <= WIRE_LIST_MAX */
    uint64_t cursor;          /* 0 to start; the previous next_cursor after */
};
struct wire_blob_list_resp {
    uint64_t next_cursor;     /* 0: no more */
    uint32_t n;
    const uint8_t *entries;   /* n packed entries; read with wire_blob_list_entry() */
};
/* Entry I of a decoded list (I < n). */
void wire_blob_list_entry(const struct wire_blob_list_resp *r, uint32_t i,
                          struct wire_blob_entry *out);
/* Pack N entries into BUF (N * WIRE_BLOB_ENTRY_LEN bytes), ready to be a
 * list response's `entries` for encoding. */
#define WIRE_BLOB_ENTRY_LEN 20
void wire_blob_list_pack(uint8_t *buf, const struct wire_blob_entry *entries, uint32_t n);

/* Copy blobs to the receiving server from the server SRC_ID at SRC_ADDR,
 * blob to blob (rebuilds and moves: the proxy sends only this).  Entries
 * are packed blob entries (as BLOB_LIST's); each copy is read from the
 * source, checked against the entry's csum (the index's, C14) and stored
 * under EPOCH.  The response has one wire status per entry, in order. */
struct wire_blob_pull_req {
    uint32_t partition;
    uint64_t epoch;
    uint64_t src_id;
    struct wire_str src_addr;
    uint32_t n;               /* 1..WIRE_PULL_MAX */
    const uint8_t *entries;   /* decode side: read with wire_blob_pull_entry() */
    const struct wire_blob_entry *entries_in; /* encode side */
};
struct wire_blob_pull_resp {
    uint32_t n;
    const uint8_t *status;    /* n enum wire_status bytes */
};
void wire_blob_pull_entry(const struct wire_blob_pull_req *r, uint32_t i,
                          struct wire_blob_entry *out);

struct wire_bad_blob { uint64_t blob_id; uint32_t partition; };
struct wire_blob_report_req { uint8_t unused; };
struct wire_blob_report_resp {
    uint64_t node_id;
    uint64_t capacity;
    uint64_t used;
    uint64_t live_bytes;
    uint64_t dead_bytes;
    uint64_t blobs;
    uint64_t bad_blobs;
    uint64_t scrub_passes;    /* full scrub passes completed */
    uint32_t n_bad;           /* <= WIRE_BAD_MAX listed below */
    const uint8_t *bad;       /* read with wire_blob_report_bad() */
    const struct wire_bad_blob *bad_in; /* encode side: array of n_bad */
};
void wire_blob_report_bad(const struct wire_blob_report_resp *r, uint32_t i,
                          struct wire_bad_blob *out);

#define WIRE_LABEL_MAX 64u   /* a failure-domain label: [A-Za-z0-9._-]*, may be empty */
struct wire_node_heartbeat_req {
    uint64_t node_id;
    struct wire_str addr;     /* the blob server's wire address */
    uint64_t capacity;
    uint64_t used;
    uint64_t blobs;
    uint32_t n_bad;
    uint32_t flags;           /* bit 0: read-only (out of space or failed) */
    struct wire_str zone;     /* failure domains, outermost first; each <= WIRE_LABEL_MAX */
    struct wire_str rack;
    struct wire_str host;
};
struct wire_node_heartbeat_resp {
    uint64_t leader_id;       /* 0 if unknown */
    struct wire_str proxies;  /* the Raft group's wire addresses, comma-separated
                                 (empty: unknown): servers heartbeat to these */
};

/* A raft message, possibly one part of a large one (snapshots). */
struct wire_raft_req {
    uint64_t cluster_hash;
    uint64_t from_id;
    uint64_t to_id;
    uint32_t part;            /* 0-based part number */
    uint32_t parts;           /* >= 1 */
    uint64_t total_len;       /* bytes of the whole message */
    uint32_t chunk_len;
    const uint8_t *chunk;     /* fields, checksummed */
};
struct wire_raft_resp { uint8_t unused; }; /* raft frames are oneway */

struct wire_propose_req {
    uint64_t from_id;
    uint32_t cmd_len;
    const uint8_t *cmd;       /* an encoded index command */
};
struct wire_propose_resp {
    uint64_t raft_index;      /* the entry that carried it */
    uint32_t result_len;
    const uint8_t *result;    /* an encoded command result */
};

/* VOL_ATTACH is the runtime attach: a proxy grants it only for a volume
 * assigned to the asking agent (idxcmd.h ASSIGN; the agent is the one its
 * certificate names), and read-write only if the assignment is.  In the
 * answer, and in VOL_LIST entries, RO says the assignment is read-only.
 *
 * A read-write attach raises the generation from BASE_GENERATION, the
 * volume's generation as the agent last learned it (0 if never), and only
 * from it (idxcmd.h ATTACH): a copy of the request that commits late (a
 * resend to another proxy after a timeout, a proxy's own retry) finds the
 * generation moved and changes nothing, so it can never fence the attach
 * the agent was answered.  When the generation is no longer BASE_GENERATION
 * the answer is EFENCED with the volume's generation as the hint; the agent
 * may attach again on that base.  Read-only and INFO attaches ignore it. */
#define WIRE_ATTACH_RO 0x1   /* read-only attach: no generation bump, no writes */
#define WIRE_ATTACH_INFO 0x2 /* only look the volume up: attach nothing (NBD_OPT_INFO) */
struct wire_vol_attach_req {
    struct wire_str name;
    struct wire_str agent_id; /* attach identity */
    uint32_t flags;           /* WIRE_ATTACH_* */
    uint64_t base_generation; /* read-write: the generation this attach raises */
};
struct wire_vol_attach_resp {
    uint64_t vol_id;
    uint64_t size;
    uint64_t generation;      /* carried on every write and flush */
    uint32_t block_size;
    uint32_t flags;           /* WIRE_ATTACH_* granted; RO also when assigned read-only */
    uint64_t raft_index;
    struct wire_str client;   /* the assignment's NBD client ("": any), <= WIRE_ID_MAX */
};

struct wire_vol_detach_req {
    uint64_t vol_id;
    uint64_t generation;
    struct wire_str agent_id;
};
struct wire_vol_detach_resp { uint64_t raft_index; };

#define WIRE_WRITE_ZERO 0x1    /* write zeroes: index only, no payload */
#define WIRE_WRITE_TRIM 0x2    /* discard: index only, no payload */
#define WIRE_WRITE_SCATTER 0x4 /* data for several extents, listed after the fields */
#define WIRE_SCATTER_MAX 1024u /* extents in one scattered write */

/* One extent of a scattered write: LEN bytes at volume offset OFF, taken
 * from the payload in list order. */
struct wire_write_ext { uint64_t off; uint32_t len; };

/* A write of one extent, or with WIRE_WRITE_SCATTER of N_EXT extents whose
 * data is the payload in list order (they ascend and do not overlap; OFF is
 * the first one's offset and LEN their total; the decoder checks both).  A
 * scattered write is how an agent ships many small dirty ranges as one
 * blob. */
struct wire_vol_write_req {
    uint64_t vol_id;
    uint64_t generation;
    uint64_t off;
    uint32_t len;
    uint32_t flags;           /* WIRE_WRITE_*; with ZERO or TRIM, data_len is 0 */
    uint64_t csum;            /* XXH3-64 of data (0 for ZERO/TRIM) */
    uint32_t data_len;        /* == payload length */
    const uint8_t *data;
    uint32_t n_ext;           /* SCATTER only: 1..WIRE_SCATTER_MAX */
    const uint8_t *ext;       /* decode side: read with wire_vol_write_ext() */
    const struct wire_write_ext *ext_in; /* encode side */
};
/* The extents of a write: a scattered write's list, or the plain write's
 * own single range. */
static inline uint32_t wire_vol_write_count(const struct wire_vol_write_req *m)
{
    return (m->flags & WIRE_WRITE_SCATTER) ? m->n_ext : 1;
}
void wire_vol_write_ext(const struct wire_vol_write_req *m, uint32_t i,
                        struct wire_write_ext *out);
/* The write's trace id (log.h "ship"): a nonzero hash of vol_id,
 * generation, off, len, flags and csum.  The agent and the proxy compute
 * it from the same request, so a write can be followed through both logs
 * with no id on the wire.  A resend under a new generation gets a new id;
 * the same bytes written to the same place under one attach share one
 * (the raft index in the log tells those apart). */
uint64_t wire_vol_write_trace_id(const struct wire_vol_write_req *m);
struct wire_vol_write_resp { uint64_t raft_index; };

enum wire_map_kind { WIRE_MAP_DATA = 0, WIRE_MAP_ZERO = 1, WIRE_MAP_HOLE = 2 };
struct wire_map_range { uint64_t off; uint64_t len; uint32_t kind; };

#define WIRE_READ_MAP 0x1 /* also return the data/zero/hole map of the range */
struct wire_vol_read_req {
    uint64_t vol_id;
    uint64_t off;
    uint32_t len;
    uint32_t flags;           /* WIRE_READ_* */
    uint64_t min_index;       /* answer only once this raft index is applied (C7) */
};
struct wire_vol_read_resp {
    uint64_t csum;            /* XXH3-64 of data (zeroes included) */
    uint64_t raft_index;      /* applied index the read saw */
    uint32_t n_ranges;        /* with WIRE_READ_MAP: ranges covering the read, else 0 */
    const uint8_t *ranges;    /* read with wire_vol_read_range() */
    const struct wire_map_range *ranges_in; /* encode side */
    uint32_t data_len;
    const uint8_t *data;
};
void wire_vol_read_range(const struct wire_vol_read_resp *r, uint32_t i,
                         struct wire_map_range *out);
struct wire_vol_map_req {
    uint64_t vol_id;
    uint64_t off;
    uint64_t len;
    uint64_t min_index;
};
struct wire_vol_map_resp {
    uint32_t n;               /* <= WIRE_MAP_MAX; ranges ascend and do not overlap */
    const uint8_t *ranges;    /* read with wire_vol_map_range() */
    const struct wire_map_range *ranges_in; /* encode side */
};
void wire_vol_map_range(const struct wire_vol_map_resp *r, uint32_t i,
                        struct wire_map_range *out);

/* VOL_LEASE (DESIGN §4, "reads in two hops"): the resolved map of the
 * volume range [OFF, OFF + LEN) at an applied index >= MIN_INDEX (C7, as
 * VOL_READ), so the agent can read the blobs straight from a blob server
 * until the lease ends.  The answer covers [OFF, END) (END <= OFF + LEN:
 * a map with more than WIRE_LEASE_MAX pieces or WIRE_LEASE_NODES_MAX
 * servers stops short) with entries that tile it in order; an entry with
 * blob_id 0 reads as zeroes (a hole or a zeroed extent), any other is
 * bytes [blob_off, blob_off + len) of blob blob_id in PARTITION, held by
 * NODES (0: no member).  NODES lists the address of each server the
 * entries name (a server the proxy has no address for is left out).
 *
 * The lease: the agent may start a blob read under this map until
 * LEASE_MS after it SENT the request (its own monotonic clock, so it errs
 * short) and must give such a read up after TIMEOUT_MS; the proxy's
 * config keeps lease + timeout below gc_grace_ms (C13), so a blob the map
 * names outlives every read made under it.  The agent's own writes to the
 * range end the lease for it (agent_mapc.h).  A proxy whose map_lease_ms
 * is 0 answers ENOTSUP: the agent reads through it (VOL_READ). */
#define WIRE_LEASE_MAX 512u       /* entries in a VOL_LEASE answer */
#define WIRE_LEASE_NODES_MAX 64u  /* servers in it */
#define WIRE_LEASE_MAX_LEN (16u << 20) /* bytes one VOL_LEASE asks for */
#define WIRE_LEASE_ADDR_MAX 127u  /* a server address in it */
#define WIRE_LEASE_ENTRY_LEN 52u
struct wire_lease_entry {
    uint64_t off;
    uint32_t len;
    uint64_t blob_id;         /* 0: zeroes */
    uint32_t blob_off;
    uint32_t partition;
    uint64_t nodes[3];
};
struct wire_lease_node {
    uint64_t id;
    struct wire_str addr;
};
struct wire_vol_lease_req {
    uint64_t vol_id;
    uint64_t off;
    uint32_t len;             /* 1..WIRE_LEASE_MAX_LEN */
    uint64_t min_index;
};
struct wire_vol_lease_resp {
    uint64_t raft_index;      /* applied index the map was resolved at */
    uint32_t lease_ms;
    uint32_t timeout_ms;
    uint64_t end;             /* the map covers [req.off, end) */
    uint32_t n_nodes;         /* <= WIRE_LEASE_NODES_MAX: id u64, addr (wire_str) */
    const uint8_t *nodes;     /* read with wire_vol_lease_node() */
    size_t nodes_len;
    const struct wire_lease_node *nodes_in; /* encode side */
    uint32_t n;               /* <= WIRE_LEASE_MAX, packed WIRE_LEASE_ENTRY_LEN each:
                                 off u64, len u32, blob_id u64, blob_off u32,
                                 partition u32, nodes 3 x u64; ascending, contiguous */
    const uint8_t *entries;   /* read with wire_vol_lease_entry() */
    const struct wire_lease_entry *entries_in; /* encode side */
};
void wire_vol_lease_entry(const struct wire_vol_lease_resp *r, uint32_t i,
                          struct wire_lease_entry *out);
/* Iterate the nodes: *POS starts at 0; 1 with *OUT filled, 0 at the end. */
int wire_vol_lease_node(const struct wire_vol_lease_resp *r, size_t *pos,
                        struct wire_lease_node *out);

struct wire_vol_flush_req {
    uint64_t vol_id;
    uint64_t generation;
};
struct wire_vol_flush_resp { uint64_t raft_index; };

/* VOL_BARRIER, the one request a proxy sends an agent (on the connection
 * the agent made): answered once every write the agent acknowledged to an
 * NBD client before the request arrived is committed (as for an NBD
 * FLUSH), with the highest raft index acked to the agent then; or ENOENT
 * (not attached read-write here), EFENCED (GENERATION is not its attach),
 * or the flush's error.  The proxy bounds the wait with its call timeout. */
struct wire_vol_barrier_req {
    uint64_t vol_id;
    uint64_t generation;
};
struct wire_vol_barrier_resp { uint64_t raft_index; };

/* AGENT_HELLO, oneway, sent by an agent on every connection it makes to a
 * proxy: the proxy then knows which connection reaches which agent (with
 * TLS it must equal the certificate's id). */
struct wire_agent_hello_req { struct wire_str agent_id; };
struct wire_agent_hello_resp { uint8_t unused; }; /* oneway */

/* A volume assigned to the agent that asked (its assignment's flags and
 * client as in VOL_ATTACH's answer). */
struct wire_vol_entry {
    struct wire_str name;
    uint64_t vol_id;
    uint64_t size;
    uint32_t flags;           /* WIRE_ATTACH_RO */
    struct wire_str client;   /* "": any client */
};
struct wire_vol_list_req {
    uint32_t max;             /* <= WIRE_VOLS_MAX */
    struct wire_str after;    /* names after this one; empty to start */
    struct wire_str agent_id; /* whose volumes (a peer proxy forwards for an agent) */
};
struct wire_vol_list_resp {
    uint32_t n;
    const uint8_t *entries;   /* read with wire_vol_list_next() */
    size_t entries_len;
    const struct wire_vol_entry *entries_in; /* encode side */
};
/* Iterate a decoded list: *POS starts at 0; returns 1 with *OUT filled, or
 * 0 at the end.  (Entries were validated by the decoder.) */
int wire_vol_list_next(const struct wire_vol_list_resp *r, size_t *pos,
                       struct wire_vol_entry *out);

/* VOL_QOS: an agent asks for the effective QoS limits (base/qos.h) of the
 * volumes it has attached, at each attach and every AGENT_QOS_POLL_MS
 * (that is how a change made through the admin API reaches it live,
 * issue 13), and reports with the same call each volume's I/O and
 * throttle figures, which the proxy keeps for GET /v1/volumes/NAME ("qos"."agent").
 * Counters are since the volume was first attached on that agent; the
 * latency percentiles are over the last report's interval (0: no I/O). */
#define WIRE_QOS_MAX 256u          /* volumes in one VOL_QOS */
#define WIRE_QOS_REPORT_LEN 124u
#define WIRE_QOS_ENTRY_LEN 115u
struct wire_qos_report {
    uint64_t vol_id;
    uint64_t ops[2];          /* [0] read, [1] write (TRIM and WRITE_ZEROES count) */
    uint64_t bytes[2];
    uint64_t delayed;         /* I/Os that waited for the limiter */
    uint64_t throttled_us;    /* time with at least one I/O waiting */
    uint32_t waiting;         /* I/Os waiting now */
    uint32_t p50_us[2], p99_us[2];
    int64_t level[QOS_N_KINDS]; /* each bucket's credit, in its unit; < 0: debt */
};
struct wire_vol_qos_req {
    struct wire_str agent_id;
    uint32_t n;               /* <= WIRE_QOS_MAX */
    const uint8_t *reports;   /* read with wire_vol_qos_report() */
    const struct wire_qos_report *reports_in; /* encode side */
};
struct wire_qos_entry {
    uint64_t vol_id;
    uint8_t found;            /* 0: no such volume (any more) */
    struct qos_limits qos;    /* found: the effective limits */
};
struct wire_vol_qos_resp {
    uint32_t n;               /* <= WIRE_QOS_MAX */
    const uint8_t *entries;   /* read with wire_vol_qos_entry() */
    const struct wire_qos_entry *entries_in; /* encode side */
};
void wire_vol_qos_report(const struct wire_vol_qos_req *r, uint32_t i, struct wire_qos_report *out);
void wire_vol_qos_entry(const struct wire_vol_qos_resp *r, uint32_t i, struct wire_qos_entry *out);

/* Encoders and decoders, generated by name from WIRE_MESSAGES. */
#define X(code, NAME, name)                                                                \
    int wire_encode_##name##_req(uint8_t *buf, size_t cap, const struct wire_##name##_req *m); \
    int wire_decode_##name##_req(const uint8_t *body, size_t len, size_t payload_len,      \
                                 struct wire_##name##_req *m);                             \
    int wire_encode_##name##_resp(uint8_t *buf, size_t cap,                                \
                                  const struct wire_##name##_resp *m);                     \
    int wire_decode_##name##_resp(const uint8_t *body, size_t len, size_t payload_len,     \
                                  struct wire_##name##_resp *m);
WIRE_MESSAGES(X)
#undef X

int wire_encode_error(uint8_t *buf, size_t cap, const struct wire_error *m);
int wire_decode_error(const uint8_t *body, size_t len, size_t payload_len, struct wire_error *m);

/* ---- names and statuses ------------------------------------------------- */
const char *wire_type_name(uint16_t type);   /* "BLOB_PUT", or "unknown" */
bool wire_type_known(uint16_t type);
const char *wire_status_name(uint16_t status);
/* -errno / -BD_E* -> status, and back. */
uint16_t wire_status_from_err(int err);
int wire_status_to_err(uint16_t status);

/* ---- test support ------------------------------------------------------- */
/* Decode BODY as the request (or, with RESPONSE, the response) of TYPE,
 * then re-encode it and check the bytes match.  0, -EPROTO if it does not
 * decode, -EILSEQ if it decodes but re-encodes differently (a codec bug).
 * Used by the unit tests and the fuzz target. */
int wire_roundtrip(uint16_t type, bool response, const uint8_t *body, size_t len,
                   size_t payload_len);

#endif
