/* blob_pull.h: BLOB_PULL, a blob server copying blobs from another blob
 * server (see blob_pull.c).
 *
 * Rebuilds and moves copy a partition's blobs to a new member.  The proxy
 * (the Raft leader) decides what goes where and sends each new member a
 * BLOB_PULL naming a source server and up to WIRE_PULL_MAX blobs; the
 * bytes then go from server to server, not through the leader, and the
 * leader spreads the pulls over every surviving replica.  Each copy is
 * checked against the checksum in the request (the index's, C14) before
 * it is stored, under the partition epoch the request carries.
 *
 * Reactor thread only.  Every request is answered exactly once, with one
 * wire status per blob (OK, ECSUM: the source's bytes do not match,
 * ENOENT: the source has no such blob, EHOSTDOWN-like EAGAIN: the source
 * could not be reached, or the store's error). */
#ifndef BD_BLOB_PULL_H
#define BD_BLOB_PULL_H

#include "net/conn.h"
#include "runtime/reactor.h"
#include "store/blob/blobstore.h"

struct blob_pull;

/* Blobs copied at once per request (2: the source answers a pull's GETs
 * on the reactor that serves clients' reads, so each one queued there is
 * a blob's worth of wait for a client read behind it; the leader keeps a
 * few pulls in flight per move for throughput), and how long a request
 * waits for its source's connection before its blobs fail with EAGAIN. */
#define BLOB_PULL_CONCURRENCY 2u
#define BLOB_PULL_CONNECT_MS 5000u

/* A puller over store BS (kept), with connections to peers made from OPTS
 * (copied; its auth kept).  TAG is kept (logs).  NULL on ENOMEM. */
struct blob_pull *blob_pull_new(struct reactor *rx, struct blobstore *bs,
                                const struct conn_opts *opts, const char *tag);
/* Serve the BLOB_PULL request F arrived on C (F's body is taken). */
void blob_pull_handle(struct blob_pull *bp, struct conn *c, struct conn_frame *f);
/* Fail requests whose source stayed unreachable past BLOB_PULL_CONNECT_MS
 * (call every second or so). */
void blob_pull_tick(struct blob_pull *bp);
/* Copies done (blobs, bytes) for status and metrics. */
void blob_pull_stats(const struct blob_pull *bp, uint64_t *blobs, uint64_t *bytes,
                     uint64_t *failed);
/* Stop: every request in flight is answered (its unfinished blobs
 * ESHUTDOWN), links closed, BP freed.  Call before closing the store. */
void blob_pull_free(struct blob_pull *bp);

#endif
