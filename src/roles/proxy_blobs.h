/* proxy_blobs.h: the proxy's view of the blob servers, and its I/O to them.
 *
 * Liveness is local: every blob server sends NODE_HEARTBEAT to every proxy,
 * and each proxy marks a server up while heartbeats keep arriving within
 * node_timeout_ms.  Heartbeats never go through Raft; only membership
 * changes (a new server, a new address) do, and the proxy role decides
 * that from pblobs_heartbeat()'s return value.
 *
 * I/O: one reconnecting link per blob server.  A PUT goes to the three
 * replicas of a partition in parallel and succeeds only when all three
 * acknowledge (each after its own fdatasync): a write is durable on three
 * copies before the proxy commits its index entry (DESIGN.md §4).  A GET
 * tries the replicas in order, skipping servers known to be down, and
 * falls through to the next on any error or checksum mismatch (C14).
 *
 * All calls run on the reactor thread; callbacks run exactly once, never
 * from inside the submitting call. */
#ifndef BD_PROXY_BLOBS_H
#define BD_PROXY_BLOBS_H

#include <stdbool.h>
#include <stdint.h>

#include "../net/conn.h"
#include "../net/reactor.h"

struct pblobs;

#define PBLOBS_REPLICAS 3

struct pblob_node_info {
    uint64_t id;
    char addr[128];
    bool up;              /* heartbeat within node_timeout_ms */
    bool read_only;       /* the server said it cannot take writes */
    uint64_t capacity;
    uint64_t used;
    uint64_t blobs;
    uint32_t n_bad;
    uint64_t last_seen_ms; /* monotonic; 0 if never */
};

/* OPTS is the template for links to blob servers (auth, tag). */
struct pblobs *pblobs_new(struct reactor *rx, const struct conn_opts *opts,
                          uint64_t node_timeout_ms, uint32_t io_timeout_ms);
void pblobs_free(struct pblobs *pb);

/* Record a heartbeat.  Returns 1 if the node is new to this proxy or its
 * address changed (the caller proposes a REGISTER_NODE), else 0. */
int pblobs_heartbeat(struct pblobs *pb, uint64_t id, const char *addr, uint64_t capacity,
                     uint64_t used, uint64_t blobs, uint32_t n_bad, bool read_only);
/* Make sure a node known from the index (id, address) has a link, even if
 * this proxy has not heard its heartbeat yet. */
void pblobs_learn(struct pblobs *pb, uint64_t id, const char *addr);
bool pblobs_is_up(struct pblobs *pb, uint64_t id);
/* Fill up to MAX infos; returns the number of known nodes. */
unsigned pblobs_list(struct pblobs *pb, struct pblob_node_info *out, unsigned max);

/* ---- PUT to all replicas ---------------------------------------------------- */

struct pblobs_put {
    void (*cb)(struct pblobs_put *put, int err);  /* 0 = durable on all three */
    void *data;
    /* inputs */
    uint64_t blob_id;
    uint32_t partition;
    uint64_t epoch;
    uint64_t nodes[PBLOBS_REPLICAS];
    uint64_t csum;
    const uint8_t *buf;   /* borrowed until cb */
    uint32_t len;
    bool compressible;
    /* private */
    struct pblobs *pb;
    struct conn_call calls[PBLOBS_REPLICAS];
    int pending;
    int err;
};
void pblobs_put3(struct pblobs *pb, struct pblobs_put *put);

/* ---- GET from one replica, failing over --------------------------------------- */

struct pblobs_get {
    void (*cb)(struct pblobs_get *get, int err);
    void *data;
    /* inputs */
    uint64_t blob_id;
    uint32_t partition;
    uint64_t nodes[PBLOBS_REPLICAS];
    uint32_t off;
    uint32_t len;
    uint8_t *dst;         /* len bytes, filled before cb with verified data */
    /* private */
    struct pblobs *pb;
    struct conn_call call;
    int next;             /* next replica to try */
    int last_err;
};
void pblobs_get(struct pblobs *pb, struct pblobs_get *get);

/* ---- DELETE on one server ------------------------------------------------------ */

struct pblobs_del {
    void (*cb)(struct pblobs_del *del, int err);  /* 0 or -ENOENT mean gone */
    void *data;
    uint64_t blob_id;
    uint32_t partition;
    uint64_t node;
    /* private */
    struct pblobs *pb;
    struct conn_call call;
};
void pblobs_delete(struct pblobs *pb, struct pblobs_del *del);

/* ---- any request to one server (repair: LIST, REPORT, single PUT) ---------- */

struct pblobs_call {
    /* Runs exactly once, never inside pblobs_call(): ERR 0 with the reply
     * frame F (borrowed: valid during the callback; decode it there), a
     * mapped error status with the error frame, or -EHOSTDOWN (no link to
     * NODE), -ETIMEDOUT, -ECONNRESET, -ESHUTDOWN with F NULL. */
    void (*cb)(struct pblobs_call *pc, int err, struct conn_frame *f);
    void *data;
    uint64_t node;
    /* private */
    struct pblobs *pb;
    struct conn_call call;
};
/* Send request TYPE with FIELDS (copied) and an optional PAYLOAD to NODE.
 * The payload's release callback (if any) runs exactly once in every case,
 * also when the call fails at once.  A timeout resets the node's
 * connection, as for PUT and GET, so a wedged server releases the payload. */
void pblobs_call(struct pblobs *pb, struct pblobs_call *pc, uint16_t type, const void *fields,
                 size_t fields_len, const struct conn_payload *payload);

/* Metrics and status helpers. */
unsigned pblobs_up_count(struct pblobs *pb);

#endif
