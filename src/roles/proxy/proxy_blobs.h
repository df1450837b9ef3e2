/* proxy_blobs.h: the proxy's view of the blob servers, and its I/O to them.
 *
 * Liveness is local: every blob server sends NODE_HEARTBEAT to every proxy,
 * and each proxy marks a server up while heartbeats keep arriving within
 * node_timeout_ms.  Heartbeats never go through Raft; only membership
 * changes (a new server, a new address) do: the leader compares what
 * heartbeats say with the index and registers the difference
 * (proxy_mgmt.c).
 *
 * I/O: one reconnecting link per blob server.  A PUT goes to the three
 * replicas of a partition in parallel and succeeds only when all three
 * acknowledge (each after its own fdatasync): a write is durable on three
 * copies before the proxy commits its index entry (DESIGN.md §4).  A GET
 * tries the replicas whose servers are up first (the order is
 * proxy_plan_replica_order's), skips any without a connected link, and
 * falls through to the next on any error or checksum mismatch (C14).
 *
 * All calls run on the reactor thread; callbacks run exactly once, never
 * from inside the submitting call. */
#ifndef BD_PROXY_BLOBS_H
#define BD_PROXY_BLOBS_H

#include <stdbool.h>
#include <stdint.h>

#include "net/conn.h"
#include "runtime/reactor.h"

struct proxy_blobs;

#define PROXY_BLOBS_REPLICAS 3 /* == PROXY_PLAN_REPLICAS */

struct proxy_blobs_node {
    uint64_t id;
    char addr[128];
    bool up;              /* heartbeat within node_timeout_ms */
    bool read_only;       /* the server said it cannot take writes */
    uint64_t capacity;
    uint64_t used;
    uint64_t blobs;
    uint32_t n_bad;
    uint64_t last_seen_ms; /* monotonic; 0 if never */
    char zone[65], rack[65], host[65]; /* failure domains, as its heartbeat says */
};

/* OPTS is the template for links to blob servers (auth, tag). */
struct proxy_blobs *proxy_blobs_new(struct reactor *rx, const struct conn_opts *opts,
                                    uint64_t node_timeout_ms, uint32_t io_timeout_ms);
void proxy_blobs_free(struct proxy_blobs *pb);

/* Record a heartbeat HB (borrowed) from the server at ADDR (its address
 * as a C string): a node new to this proxy gets a link, a node at a new
 * address a new one. */
void proxy_blobs_heartbeat(struct proxy_blobs *pb, const struct wire_node_heartbeat_req *hb,
                           const char *addr);
bool proxy_blobs_is_up(struct proxy_blobs *pb, uint64_t id);

/* The members a replica move is filling: (partition, new member) pairs.
 * A read tries such a member after the partition's other members that are
 * up (it lacks the blobs not copied yet, and reading there first costs
 * every such read a failed round trip: client p99 during a rebuild).
 * Replaces the previous set; PAIRS (sorted by partition, then node) is
 * copied.  0 or -ENOMEM (the previous set stays). */
struct proxy_blobs_filling {
    uint32_t part;
    uint64_t node;
};
int proxy_blobs_set_filling(struct proxy_blobs *pb, const struct proxy_blobs_filling *pairs,
                            unsigned n);
/* Every node this proxy has heard of, ascending by id: *OUT returned owned
 * (free()), *N its count.  0 or -ENOMEM. */
int proxy_blobs_list(struct proxy_blobs *pb, struct proxy_blobs_node **out, unsigned *n);
/* One node's info into *OUT (up computed now); false if never heard of. */
bool proxy_blobs_info(struct proxy_blobs *pb, uint64_t id, struct proxy_blobs_node *out);

/* ---- PUT to all replicas ---------------------------------------------------- */

struct proxy_blobs_put {
    void (*cb)(struct proxy_blobs_put *put, int err);  /* 0 = durable on all three */
    void *data;
    /* inputs */
    uint64_t blob_id;
    uint32_t partition;
    uint64_t epoch;
    uint64_t nodes[PROXY_BLOBS_REPLICAS];
    uint64_t csum;
    const uint8_t *buf;   /* borrowed until cb */
    uint32_t len;
    bool compressible;
    /* private */
    struct proxy_blobs *pb;
    struct conn_call calls[PROXY_BLOBS_REPLICAS];
    int pending;
    int err;
};
void proxy_blobs_put3(struct proxy_blobs *pb, struct proxy_blobs_put *put);

/* ---- GET from one replica, failing over --------------------------------------- */

struct proxy_blobs_get {
    void (*cb)(struct proxy_blobs_get *get, int err);
    void *data;
    /* inputs */
    uint64_t blob_id;
    uint32_t partition;
    uint64_t nodes[PROXY_BLOBS_REPLICAS];
    uint32_t off;
    uint32_t len;
    uint8_t *dst;         /* len bytes, filled before cb with verified data; or NULL: */
    /* outputs when dst is NULL, set before cb(get, 0): the reply's frame body,
     * now the caller's to free(), the len verified bytes inside it, and their
     * XXH3-64 (checked here against the bytes).  No copy of the payload. */
    uint8_t *body;
    const uint8_t *got;
    uint64_t csum;
    /* private */
    struct proxy_blobs *pb;
    struct conn_call call;
    int next;             /* next replica to try */
    int last_err;
};
void proxy_blobs_get(struct proxy_blobs *pb, struct proxy_blobs_get *get);
/* Put a partition's NODES in the order a GET tries them: up by heartbeat
 * first, a member a move is still filling after them.  Returns how many
 * lead the order as good to read (up, not being filled). */
unsigned proxy_blobs_read_order(struct proxy_blobs *pb, uint32_t partition,
                                uint64_t nodes[PROXY_BLOBS_REPLICAS]);

/* ---- DELETE on one server ------------------------------------------------------ */

struct proxy_blobs_del {
    void (*cb)(struct proxy_blobs_del *del, int err);  /* 0 or -ENOENT mean gone */
    void *data;
    uint64_t blob_id;
    uint32_t partition;
    uint64_t node;
    /* private */
    struct proxy_blobs *pb;
    struct conn_call call;
};
void proxy_blobs_delete(struct proxy_blobs *pb, struct proxy_blobs_del *del);

/* ---- any request to one server (repair: LIST, REPORT, single PUT) ---------- */

struct proxy_blobs_call {
    /* Runs exactly once, never inside proxy_blobs_call(): ERR 0 with the reply
     * frame F (borrowed: valid during the callback; decode it there), a
     * mapped error status with the error frame, or -EHOSTDOWN (no link to
     * NODE), -ETIMEDOUT, -ECONNRESET, -ESHUTDOWN with F NULL. */
    void (*cb)(struct proxy_blobs_call *pc, int err, struct conn_frame *f);
    void *data;
    uint64_t node;
    /* private */
    struct proxy_blobs *pb;
    struct conn_call call;
};
/* Send request TYPE with FIELDS (copied) and an optional PAYLOAD to NODE.
 * The payload's release callback (if any) runs exactly once in every case,
 * also when the call fails at once.  A timeout resets the node's
 * connection, as for PUT and GET, so a wedged server releases the payload. */
void proxy_blobs_call(struct proxy_blobs *pb, struct proxy_blobs_call *pc, uint16_t type,
                      const void *fields, size_t fields_len, const struct conn_payload *payload);

/* Metrics and status helpers. */
unsigned proxy_blobs_up_count(struct proxy_blobs *pb);
/* The ids of the servers that are up, ascending, into OUT (at most MAX
 * written).  Returns how many are up: more than MAX means OUT holds only
 * some of them (ask again with room for all). */
unsigned proxy_blobs_up_ids(struct proxy_blobs *pb, uint64_t *out, unsigned max);

#endif
