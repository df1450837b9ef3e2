/* proxy_plan.h: the decisions of the proxy's data path, as pure functions
 * over plain data (no reactor, no index handle, no sockets, no clock), so
 * that tests/unit/test_proxy_plan.c can drive every case by hand.
 * proxy_io.c (and proxy_blobs.c, for the replica order) gathers the facts
 * and acts on the answers, as proxy_repair.c does with rplan.h.
 *
 *   - write cutting: which blobs a write becomes and which index extents
 *     name which slice of them;
 *   - admission: alignment, the volume's bounds, fencing (C10);
 *   - placement: which partition a new blob goes to;
 *   - read resolution: the index's pieces of a range -> blob reads and
 *     zero fills, the VOL_MAP ranges, and the order to try replicas in.
 *
 * The index types used here (struct index_vol, index_part, index_piece)
 * are plain structs, filled by the caller from its read txn.  Nothing here
 * allocates: the caller sizes the output arrays from the counts the plan
 * gives first.  Errors are -errno, each documented where it is returned. */
#ifndef BD_PROXY_PLAN_H
#define BD_PROXY_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "base/bd.h"
#include "net/wire.h"
#include "store/index/idxcmd.h"
#include "store/index/index.h"

#define PROXY_PLAN_REPLICAS 3

/* The longest extent one index write can name: idxcmd_write.len is 32
 * bits and block-aligned.  ZERO and TRIM (index only, no blob) are cut at
 * this; a wire write is never longer, so they stay one extent. */
#define PROXY_PLAN_INDEX_MAX_LEN (UINT32_MAX - BD_BLOCK_SIZE + 1)

/* The longest VOL_READ: its data and its fields (at most WIRE_MAP_MAX map
 * ranges) must fit in one reply frame.  32 MiB, NBD's largest request. */
#define PROXY_PLAN_READ_MAX_LEN (WIRE_MAX_FRAME - WIRE_MAX_FIELDS)

/* ---- admission ----------------------------------------------------------------- */

/* Is [OFF, OFF + LEN) inside a volume of SIZE bytes?  0, or -ERANGE if it
 * runs past the end or wraps past 2^64. */
int proxy_plan_in_volume(uint64_t off, uint64_t len, uint64_t size);

/* The shape of a VOL_WRITE, before the volume is looked up: every extent
 * non-empty, block-aligned, not wrapping past 2^64, the extents ascending
 * without overlap and adding up to M->len (the codec checks these too; the
 * plan does not rely on it).  0, -EINVAL (empty, unaligned, overlapping,
 * or not adding up), or -ERANGE (an extent wraps). */
int proxy_plan_write_check(const struct wire_vol_write_req *m);

/* Every extent of M inside a volume of SIZE bytes: 0 or -ERANGE. */
int proxy_plan_write_in_volume(const struct wire_vol_write_req *m, uint64_t size);

/* Fencing, as early as this proxy can decide it (C10): a request holding
 * attach GENERATION against volume V as this proxy has applied it.
 *
 *   older than V's generation            -BD_EFENCED (never comes back)
 *   equal, V not attached read-write      -BD_EFENCED (detached at this
 *                                         generation: re-attaching bumps it)
 *   equal, V attached read-write          0 if WRITER is V's attach identity
 *                                         (or unknown), else -BD_EFENCED
 *   newer                                 0: this proxy has not applied the
 *                                         attach yet; apply decides (C10)
 *
 * WRITER is the sending agent's identity as its TLS certificate states it
 * (the message itself carries only the generation), or NULL when the
 * connection is not authenticated (insecure_plaintext): then an equal
 * generation is taken as the holder's, whoever sends it.  The FSM
 * re-checks the generation when it applies the write. */
int proxy_plan_fence(const struct index_vol *v, uint64_t generation, const char *writer);

/* The checks on a VOL_READ (DATA true) or VOL_MAP range before anything is
 * allocated for it: 0, -EINVAL (empty or not block-aligned), -ERANGE (wraps
 * past 2^64), or -EMSGSIZE (a VOL_READ longer than
 * PROXY_PLAN_READ_MAX_LEN: its reply could not be sent). */
int proxy_plan_read_check(uint64_t off, uint64_t len, bool data);

/* ---- write cutting -------------------------------------------------------------- */

/* How a write is cut, from proxy_plan_write_size. */
struct proxy_plan_write_size {
    uint32_t chunk;           /* payload bytes per blob (the last may be shorter) */
    uint32_t n_parts;         /* blobs (index-only: parts without a blob) */
    uint32_t max_pieces;      /* room proxy_plan_write_cut needs for the extents */
};

/* The cut of M (checked with proxy_plan_write_check): a DATA write into
 * blobs of BLOB_MAX bytes (the configured blob_max_bytes, at most
 * IDXCMD_MAX_BLOB_LEN); ZERO and TRIM into parts of at most
 * PROXY_PLAN_INDEX_MAX_LEN.  All arithmetic is 64-bit: no length wraps.
 * 0, or -EINVAL (M empty, BLOB_MAX not a block multiple in
 * [BD_BLOCK_SIZE, IDXCMD_MAX_BLOB_LEN]). */
int proxy_plan_write_size(const struct wire_vol_write_req *m, uint64_t blob_max,
                          struct proxy_plan_write_size *out);

/* One blob (or index-only part) of a write: payload bytes [off, off + len),
 * holding the pieces [first_piece, first_piece + n_pieces). */
struct proxy_plan_part {
    uint32_t off;
    uint32_t len;
    uint32_t first_piece;
    uint32_t n_pieces;
};

/* One index extent: LEN bytes at volume offset VOL_OFF, backed by bytes
 * [blob_off, blob_off + len) of part PART's blob. */
struct proxy_plan_piece {
    uint32_t part;
    uint64_t vol_off;
    uint32_t blob_off;
    uint32_t len;
};

/* Cut M as SIZE says: payload bytes [i * chunk, (i + 1) * chunk) are part
 * i, and an extent that crosses a part boundary becomes one piece per part
 * it touches.  Fills PARTS (SIZE->n_parts) and PIECES (at most
 * SIZE->max_pieces, in payload order) and returns the number of pieces. */
uint32_t proxy_plan_write_cut(const struct wire_vol_write_req *m,
                              const struct proxy_plan_write_size *size,
                              struct proxy_plan_part *parts, struct proxy_plan_piece *pieces);

/* ---- placement: partitions by capacity and failure domain --------------------
 *
 * A partition is a fixed-size share of three blob servers' disks (the
 * configured partition_bytes, 100 GiB by default): a server has
 * capacity / partition_bytes slots, and the leader keeps as many
 * partitions as the slots allow, each on three servers in three different
 * failure domains at the highest level where three exist (zone, then
 * rack, then host, then just three servers).  New blobs go to open
 * partitions (all three members up and below the fill limit) chosen at
 * random with weights from their members' free space, so fuller servers
 * take less and full ones nothing, well before ENOSPC.  Rebalancing moves
 * one replica at a time from the server most above its capacity share
 * (a draining server's share is zero) to the one most below it. */

enum proxy_plan_level {
    PROXY_PLAN_LEVEL_NODE = 0,   /* three distinct servers, domains shared */
    PROXY_PLAN_LEVEL_HOST = 1,
    PROXY_PLAN_LEVEL_RACK = 2,
    PROXY_PLAN_LEVEL_ZONE = 3,
    PROXY_PLAN_LEVELS
};
const char *proxy_plan_level_name(enum proxy_plan_level l); /* "node", "host", ... */

/* A blob server as placement sees it.  DOMAIN[l] identifies its domain at
 * level l: equal ids mean the same domain (proxy_plan_domains builds them
 * from the labels). */
struct proxy_plan_node {
    uint64_t id;
    uint64_t capacity;        /* bytes (advertised) */
    uint64_t used;            /* bytes, from its heartbeat */
    uint64_t domain[PROXY_PLAN_LEVELS];
    uint32_t load;            /* partitions it is a member of (the caller counts) */
    bool up;                  /* heartbeats arriving */
    bool accepts;             /* may hold partitions: registered, not draining or retired */
    bool writable;            /* up, not read-only and below the fill limit: takes new blobs */
};

/* The domain ids of a server with these labels (NULL or "" for unset: all
 * unset labels of a level are one domain).  Hosts are named globally,
 * racks within their zone. */
void proxy_plan_domains(uint64_t node_id, const char *zone, const char *rack, const char *host,
                        uint64_t out[PROXY_PLAN_LEVELS]);

/* Partition slots of a server: capacity / partition_bytes, at least 1
 * (a small server still holds one). */
uint32_t proxy_plan_slots(uint64_t capacity, uint64_t partition_bytes);

/* The highest level at which the accepting servers span three domains
 * (PROXY_PLAN_LEVEL_NODE with fewer than three servers too). */
enum proxy_plan_level proxy_plan_separation(const struct proxy_plan_node *nodes, unsigned n);

/* The level at which the three MEMBERS (their indexes in NODES, -1 for
 * one not there) are in three distinct domains; -1 if two are the same
 * server or unknown. */
int proxy_plan_part_level(const struct proxy_plan_node *nodes, const int members[3]);

/* How many partitions NODES can hold: the slots of the accepting servers,
 * divided by three. */
uint32_t proxy_plan_partitions_wanted(const struct proxy_plan_node *nodes, unsigned n,
                                      uint64_t partition_bytes);

/* Three members for a new partition: up, accepting, with a free slot
 * (load < slots) unless NEED_SLOT is false (writes need a partition of
 * three up servers even when every slot is taken), in distinct domains at
 * the highest level possible among those candidates; each the one with the
 * lowest load per slot (then the most free bytes, then the lowest id).
 * OUT gets their indexes in NODES and *LEVEL the separation reached.  0,
 * or -ENOSPC if fewer than three servers qualify. */
int proxy_plan_new_partition(const struct proxy_plan_node *nodes, unsigned n,
                             uint64_t partition_bytes, bool need_slot, int out[3],
                             enum proxy_plan_level *level);

/* The server to take member SLOT of partition PT (members' indexes in
 * NODES: MEMBERS[i], -1 if not there): up, accepting, not a member, with a
 * free slot unless NEED_SLOT is false (a lost server must be replaced even
 * in a full cluster), in a domain apart from the other two members at the
 * highest level possible; the lowest load per slot first.  Returns its
 * index in NODES (and *LEVEL), or -1. */
int proxy_plan_replacement(const struct proxy_plan_node *nodes, unsigned n,
                           const int members[3], int slot, uint64_t partition_bytes,
                           bool need_slot, enum proxy_plan_level *level);

/* One rebalancing move: the index in PARTS, the member slot to move and
 * the index in NODES of the server to move it to. */
struct proxy_plan_move {
    unsigned part;
    int slot;
    int dst;
};

/* The next move toward capacity-proportional partitions, or -ENOENT when
 * every server is within one partition of its share (or nothing can
 * move).  A server's share is the total of replicas times its slots over
 * all slots; a draining one (not accepting) has none, so its replicas go
 * first, to any server that takes blobs (writable) even past its slots,
 * while a rebalancing move needs a free slot.  The move never lowers the
 * partition's separation level below what the cluster allows; it takes
 * from the server most above its share and gives to the one most below
 * it that can take that partition.
 * MEMBERS holds 3 * N_PARTS node indexes (-1: not in NODES), in PARTS'
 * order; SKIP (NULL: none) marks partitions not to move now (a move in
 * progress, a member down).  Pure: the caller applies moves one at a
 * time. */
int proxy_plan_rebalance(const struct index_part *parts, unsigned n_parts, const int *members,
                         const bool *skip, const struct proxy_plan_node *nodes, unsigned n,
                         uint64_t partition_bytes, struct proxy_plan_move *out);

/* Placement weights: CUM[i] is the running total of the weights of
 * PARTS[0..i] (caller storage, N_PARTS entries).  A partition is open when
 * it is ACTIVE and its three members are writable; its weight is its
 * scarcest member's free MiB divided among that member's partitions (its
 * load), at least 1; a closed partition weighs 0.  MEMBERS as for
 * proxy_plan_rebalance.  Returns the total (0: no partition open). */
uint64_t proxy_plan_place_weights(const struct index_part *parts, unsigned n_parts,
                                  const int *members, const struct proxy_plan_node *nodes,
                                  unsigned n, uint64_t *cum);

/* The partition a new blob goes to: the one whose weight range holds
 * R % total (R random), skipping AVOID (0: none; the partition a put just
 * failed on) for the next open one.  Returns its index in PARTS, or -1 if
 * none is open. */
int proxy_plan_place(const struct index_part *parts, unsigned n_parts, const uint64_t *cum,
                     uint64_t r, uint32_t avoid);

/* ---- reads ---------------------------------------------------------------------- */

enum proxy_plan_read_kind {
    PROXY_PLAN_READ_FETCH,    /* read a slice of a blob from a replica */
    PROXY_PLAN_READ_ZERO,     /* zero-fill: a hole, or a zeroed extent */
};

/* What fills bytes [buf_off, buf_off + len) of a read's reply. */
struct proxy_plan_read_step {
    uint8_t kind;             /* enum proxy_plan_read_kind */
    uint32_t buf_off;
    uint32_t len;
    uint64_t blob_id;         /* FETCH: bytes [blob_off, blob_off + len) of it */
    uint32_t partition;
    uint32_t blob_off;
};

/* Resolve the N pieces the index mapped for the read [OFF, OFF + LEN)
 * (LEN at most PROXY_PLAN_READ_MAX_LEN) into STEPS (N of them, one per
 * piece).  0, or -EIO if the pieces do not tile the range exactly
 * (ascending, contiguous, inside it) or a DATA piece is not a slice of its
 * blob: an index that answers so is broken, and no byte of a reply may be
 * left unwritten. */
int proxy_plan_read_resolve(uint64_t off, uint64_t len, const struct index_piece *pieces,
                            uint32_t n, struct proxy_plan_read_step *steps);

/* The VOL_MAP (or VOL_READ with WIRE_READ_MAP) ranges of N pieces: runs of
 * one kind merged, at most MAX of them (a map that needs more is cut
 * short after the MAXth).  Returns the count. */
uint32_t proxy_plan_map_ranges(const struct index_piece *pieces, uint32_t n,
                               struct wire_map_range *out, uint32_t max);

/* The order to try a partition's replicas in for a read: those UP_MASK
 * marks up (bit i: NODES[i]) first, then the others, each group in member
 * order.  OUT may not alias NODES. */
void proxy_plan_replica_order(const uint64_t nodes[PROXY_PLAN_REPLICAS], uint8_t up_mask,
                              uint64_t out[PROXY_PLAN_REPLICAS]);

#endif
