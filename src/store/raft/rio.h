/* rio.h: libraft's struct raft_io (version 2) on the blockd reactor.
 *
 * libraft (Debian's libraft-dev 0.15) runs the consensus algorithm and asks
 * its raft_io for everything that touches the world: the clock and a tick
 * timer, durable term/vote/log/snapshots, and sending and receiving RPCs.
 * Its bundled backend runs on libuv; this one runs on our libevent reactor
 * (DESIGN.md §5):
 *
 *   storage   raftlog.h: a checksummed segment log with group commit; the
 *             fsyncs run on raftlog's task queues, callbacks come back here
 *   sending   each message is encoded with raftmsg.h and sent as one or
 *             more WIRE_RAFT oneway frames (struct wire_raft_req: cluster
 *             hash, from, to, part/parts/total_len) on a struct link per
 *             peer, created on first use and reconnecting by itself; a
 *             large one (a snapshot) is streamed in windows paced by PINGs,
 *             so the reactor never copies it whole in one callback and at
 *             most two windows wait in the socket's buffers
 *   receiving the owner (the proxy's server connection handler) passes
 *             every WIRE_RAFT frame to rio_deliver(), which checks cluster
 *             hash, destination and sender, reassembles parts, decodes and
 *             calls libraft's recv callback; an InstallSnapshot above
 *             RIO_STREAM_MIN is reassembled in a spool file
 *             in the log directory and decoded from a mapping of it, its
 *             data handed to libraft still mapped (snapmem.h), so
 *             receiving a snapshot costs page cache, not heap; a spool
 *             that fails (ENOSPC, EIO) drops the message with a warning
 *             and closes the connection it came on, so the sender's
 *             stream fails and libraft sends the snapshot again once the
 *             link is back (not after the 30-minute install timeout)
 *   work      async_work runs on a task queue of its own (snapshots are
 *             dumped there, fsm.h); an installed snapshot is loaded there
 *             through opts->install before it is stored
 *
 * Send completion: the callback runs on the reactor (never inside send())
 * once the frames are queued to the socket, with 0, or with
 * RAFT_NOCONNECTION when the peer's link is not up; send never blocks and
 * never queues behind a dead peer (libraft retries on its own schedule).
 *
 * Drop rules for received frames (CONTRACT.md §3: "Raft message from an
 * unknown node id or cluster id: drop and log; never fed to libraft"):
 * wrong cluster hash, a destination other than us, a sender id that is not
 * a known server, a sender id that differs from the id the connection
 * authenticated with in HELLO, a message larger than max_msg_bytes (an
 * InstallSnapshot: max_snapshot_bytes), parts
 * out of order, and bytes that do not decode.  Each is counted (struct
 * rio_stats) and logged at WARN, at most once per second per reason.
 *
 * Close (raft_io->close): queued log requests complete with RAFT_CANCELED,
 * running ones finish, pending send callbacks fire, links are freed, and
 * then the close callback runs on the reactor.  rio_free() after that. */
#ifndef BD_RIO_H
#define BD_RIO_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>

#include "net/conn.h"
#include "runtime/reactor.h"
#include "net/wire.h"
#include "store/fileio.h"
#include "store/raft/raftfix.h"

#define RIO_ADDR_MAX 128
#define RIO_MAX_PEERS 16
/* Bytes of a raft message per WIRE_RAFT frame: the frame's fields must fit
 * WIRE_MAX_FIELDS with the 48 bytes of wire_raft_req around the chunk. */
#define RIO_CHUNK (WIRE_MAX_FIELDS - 64u)
#define RIO_MAX_MSG_DEFAULT (1ull << 30)
/* An InstallSnapshot is spooled to disk, not reassembled in memory, so its
 * bound is the disk's, not the heap's: a spool that runs out of space
 * drops the message cleanly (rio_stats.drop_spool). */
#define RIO_MAX_SNAPSHOT_DEFAULT (1ull << 40)
/* Messages above RIO_STREAM_MIN (snapshots) are streamed: a window of
 * RIO_STREAM_WINDOW_PARTS frames, then a PING, at most RIO_STREAM_WINDOWS
 * windows unconfirmed; a PING unanswered in RIO_STREAM_PING_MS fails the
 * send. */
#define RIO_STREAM_MIN (4u << 20)
#define RIO_STREAM_WINDOW_PARTS 64u
#define RIO_STREAM_WINDOWS 2u
#define RIO_STREAM_PING_MS 30000u

struct rio;

struct rio_peer {
    uint64_t id;                 /* raft server id, >= 1 */
    char addr[RIO_ADDR_MAX];     /* its wire address */
};

struct rio_opts {
    uint64_t id;                      /* our raft server id */
    const char *dir;                  /* the raft log directory; borrowed */
    struct fileio *fio;                  /* borrowed; NULL = fileio_posix */
    uint64_t segment_bytes;           /* raftlog segment size; 0 = default */
    const struct conn_opts *link_opts;/* for the links to peers (auth, tag); copied */
    const struct rio_peer *peers;     /* every server that may talk to us, us included */
    unsigned n_peers;                 /* <= RIO_MAX_PEERS */
    uint64_t max_msg_bytes;           /* largest message reassembled; 0 = 1 GiB */
    uint64_t max_snapshot_bytes;      /* largest InstallSnapshot (spooled); 0 = 1 TiB */
    const char *tag;                  /* log tag; borrowed, must outlive rio */
    /* Optional: load an installed snapshot's DATA (borrowed) into the state
     * machine, on a worker thread, before it is stored; 0 or -errno (the
     * install fails).  The FSM's restore then finds it done. */
    int (*install)(void *arg, const struct raft_buffer *data);
    void *install_arg;
};

struct rio_stats {
    uint64_t sent;            /* messages handed to links */
    uint64_t streamed;        /* of which streamed in windows (above RIO_STREAM_MIN) */
    uint64_t sent_frames;
    uint64_t send_noconn;     /* completed with RAFT_NOCONNECTION */
    uint64_t received;        /* messages given to libraft */
    uint64_t spooled;         /* of which reassembled in a spool file (large) */
    uint64_t drop_cluster;    /* wrong cluster hash */
    uint64_t drop_unknown;    /* unknown sender, wrong destination, spoofed sender */
    uint64_t drop_malformed;  /* bad parts, too large, or does not decode */
    uint64_t drop_closed;     /* arrived after close or before start */
    uint64_t drop_spool;      /* a large message that could not be spooled (ENOSPC, EIO) */
    struct raftfix_stats fix; /* libraft 0.15 workarounds applied (raftfix.h) */
};

/* Create the io and open its raft log (nothing is loaded until libraft
 * calls load).  0 with *OUT owned, or -errno / -BD_ECORRUPT / -BD_ECONFIG
 * with a message in ERR.  The cluster hash comes from
 * opts->link_opts->auth. */
int rio_new(struct reactor *rx, const struct rio_opts *opts, struct rio **out, char *err,
            size_t errlen);
/* The raft_io to give raft_init.  Borrowed: valid until rio_free. */
struct raft_io *rio_io(struct rio *r);
/* True if the log directory holds no raft state (see raftlog_pristine). */
bool rio_pristine(struct rio *r);
/* True once the raft log failed: the server has left raft until restarted
 * (raftfix.h "stop"); libraft's own state is frozen where it was. */
bool rio_stopped(struct rio *r);

/* A WIRE_RAFT frame arrived on FROM (may be NULL in tests; then the HELLO
 * check is skipped).  REQ and its chunk are borrowed for the call. */
void rio_deliver(struct rio *r, struct conn *from, const struct wire_raft_req *req);

/* Learn another server (after a membership change).  0, -EEXIST (same id,
 * other address), -ENOSPC. */
int rio_add_peer(struct rio *r, uint64_t id, const char *addr);

void rio_get_stats(struct rio *r, struct rio_stats *out);
/* The raft log's counters (fsyncs, batches, entries). */
struct raftlog_stats;
void rio_get_log_stats(struct rio *r, struct raftlog_stats *out);

/* Free after raft_io->close has called back (or if it was never started:
 * raft_init failed or was never called).  NULL is a no-op. */
void rio_free(struct rio *r);

#endif
