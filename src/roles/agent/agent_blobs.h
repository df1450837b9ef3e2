/* agent_blobs.h: the agent's connections to blob servers, for reads under
 * a map lease (agent_mapc.h, DESIGN §4).
 *
 * One reconnecting link (net/link.h) per blob server a lease named, made
 * with the agent's own credentials (mutual TLS: the agent's certificate;
 * the server must present the certificate of the node id the lease gave),
 * reused by every read, at most MAX_NODES of them (a server past that is
 * not read directly: the read goes through a proxy).  Blob servers let
 * agents only read (roles/blob/blob.c).
 *
 * A GET tries the replicas whose link is up, starting at one picked by the
 * blob id (reads spread over the replicas) and then in the order given, and
 * falls through to the next on any error: a server down, a blob not (or
 * no longer) there because it moved or was repaired elsewhere, a timeout,
 * or data that fails its checksum.  The data handed to the callback has
 * been checked against the XXH3-64 the blob server computed over the
 * bytes it verified against the record's chunk checksums (the same check
 * the proxy makes on its own reads, proxy_blobs.c): corruption on disk or
 * on the way is never returned (C14).  All on the reactor thread. */
#ifndef BD_AGENT_BLOBS_H
#define BD_AGENT_BLOBS_H

#include <stddef.h>
#include <stdint.h>

#include "net/conn.h"
#include "runtime/reactor.h"

struct agent_blobs;

/* OPTS is the template of every link (auth, tag, faults). */
struct agent_blobs *agent_blobs_new(struct reactor *rx, const struct conn_opts *opts,
                                    unsigned max_nodes);
/* Close every link: pending GETs complete with -ESHUTDOWN first. */
void agent_blobs_free(struct agent_blobs *ab);

/* Server ID is at ADDR (LEN bytes, not NUL-terminated): a new server gets
 * a link (while fewer than MAX_NODES exist), a moved one a new link. */
void agent_blobs_learn(struct agent_blobs *ab, uint64_t id, const char *addr, size_t len);

struct agent_blobs_get {
    /* Runs exactly once, never inside agent_blobs_get: ERR 0 with DATA
     * (LEN verified bytes, valid during the callback only), or the last
     * replica's error (-EHOSTDOWN if none was reachable). */
    void (*cb)(struct agent_blobs_get *g, int err, const uint8_t *data);
    void *data;
    uint64_t blob_id;
    uint32_t partition;
    uint32_t off, len;
    uint64_t nodes[3];
    uint32_t timeout_ms;      /* per replica */
    /* private */
    struct agent_blobs *ab;
    struct conn_call call;
    int next;
    int last_err;
};
void agent_blobs_get(struct agent_blobs *ab, struct agent_blobs_get *g);

/* Counters: GETs answered with verified data, replica failovers, checksum
 * mismatches, and links made. */
struct agent_blobs_stats {
    uint64_t gets_ok, failovers, csum_errors, links;
};
void agent_blobs_stats(const struct agent_blobs *ab, struct agent_blobs_stats *out);

#endif
