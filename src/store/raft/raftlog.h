/* raftlog.h: the durable Raft state of one proxy: term, vote, log entries
 * and the latest snapshot, in a directory of its own (<data_dir>/raft).
 *
 * Why a write-ahead log of our own and not LMDB: a synced LMDB write
 * transaction costs two flushes (data pages, then the meta page), and the
 * one-flush MDB_NOMETASYNC mode may undo the last transaction after a
 * crash, which a Raft log must never do: an entry is acknowledged to the
 * leader only once it is durable.  Appending checksummed records to a
 * segment file costs ONE fdatasync per batch, and group commit makes that
 * one flush serve every append that arrived while the previous flush ran.
 *
 * fsyncs per operation (steady state):
 *   append      1 fdatasync per batch, shared by all appends in the batch
 *               (+3 once per segment_bytes when a new segment is created:
 *               sync of the old tail, the new header, the directory)
 *   set_term / set_vote   1 fdatasync of a 64-byte meta record, on the
 *               calling (reactor) thread: they are rare and must be
 *               durable before libraft goes on
 *   truncate    3 (old segment, new segment header, directory)
 *   snapshot_put  2 for the file (data, directory) + 1-3 for compaction
 *
 * Files:
 *   meta1, meta2     {term, vote, identity} records written alternately
 *                    with a sequence number; the valid one with the
 *                    highest sequence wins, so a torn write of one leaves
 *                    the other intact
 *   seg-<seq>        header {seq, first_index} + records, each
 *                    {index, term, type, len, header csum, data csum, data}
 *   snap-<index>     header {term, index, conf_index, log_seq, lengths} +
 *                    configuration + data + checksum; written as
 *                    snap-<index>.tmp, fdatasync, rename, fsync dir
 *
 * Truncation never rewrites a file: truncate(i) starts a new segment whose
 * header says first_index = i, and loading lets a later segment override
 * every entry >= its first index.  Installing a snapshot (trailing 0)
 * writes the snapshot with log_seq = the next segment sequence, so loading
 * ignores every older segment even if a crash came before they were
 * deleted.
 *
 * Crash safety (CONTRACT.md §3 "Raft log segment torn ..."): a segment is
 * fully synced before a newer one is created, so only the NEWEST segment
 * can end in a record whose write was never synced (and therefore never
 * acknowledged).  Loading accepts exactly that: an invalid record in the
 * newest segment after which no valid record follows is a torn tail,
 * truncated with a warning.  Anything else (a bad record with a valid one
 * after it, a bad record in an older segment, a gap between segments or
 * between the snapshot and the log, a corrupt snapshot, two corrupt meta
 * records) makes raftlog_load fail with -BD_ECORRUPT and a message: the
 * proxy refuses to start rather than run with a silently shortened log.
 * Bit rot inside the very last synced record is indistinguishable from a
 * torn write; that case is logged at WARN with the index dropped.
 *
 * C15: the first failed write, fdatasync or truncate marks the log failed;
 * that request and every later one fail with -BD_EFAILED (never retried,
 * never acknowledged).
 *
 * Threads: the owner calls everything on the reactor thread; ordered
 * operations (append, truncate, install, compaction) run in submission
 * order on one writer task queue, snapshot file writes and reads on a
 * second queue so a large snapshot never stalls appends.  Callbacks run on
 * the reactor, appends in submission order.
 *
 * Implemented by raftlog.c (writing), raftlog_load.c (opening, loading,
 * recovery) and raftlog_fmt.c (the files' byte layouts, raftlog_fmt.h). */
#ifndef BD_RAFTLOG_H
#define BD_RAFTLOG_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>

#include "runtime/reactor.h"
#include "runtime/taskq.h"
#include "store/fileio.h"

#define RAFTLOG_SEGMENT_BYTES (8u << 20)
#define RAFTLOG_MAX_ENTRY (256u << 20) /* refuse records claiming more */

struct raftlog;

struct raftlog_opts {
    struct fileio *fio;        /* borrowed; NULL means fileio_posix */
    uint64_t segment_bytes; /* start a new segment past this size; 0 = default */
    uint64_t cluster_hash;  /* identity stamped in the meta records: a data  */
    uint64_t node_id;       /* directory of another cluster or node is refused */
    const char *tag;        /* log tag; borrowed, must outlive the log */
};

/* What raftlog_load returns, in libraft's ownership terms (raft.h
 * raft_io->load): SNAPSHOT (or NULL) is raft_malloc'ed with one data
 * buffer; ENTRIES is a raft_malloc'ed array whose entries point into
 * raft_malloc'ed batches (one per segment).  libraft takes both. */
struct raftlog_state {
    raft_term term;
    raft_id vote;
    struct raft_snapshot *snapshot;
    raft_index start_index;
    struct raft_entry *entries;
    size_t n_entries;
};

/* An asynchronous request.  The caller owns it until CB has run, which
 * happens exactly once, on the reactor, with 0 or a negative code
 * (-BD_EFAILED after an I/O error, -ECANCELED when closed first). */
struct raftlog_req {
    void *data;                                       /* the caller's */
    void (*cb)(struct raftlog_req *req, int status);  /* set by the API */
    struct raft_snapshot *snapshot; /* snapshot_get: returned owned (raft heap) on 0 */
    /* private */
    struct raftlog *owner;
    struct taskq_job job;
    int op;
    int status;
    raft_index index;
    const struct raft_entry *entries;
    unsigned n;
    const struct raft_snapshot *snap;
    unsigned trailing;
    struct raftlog_req *next;
};

struct raftlog_stats {
    uint64_t fsyncs;        /* fdatasyncs of segment files (appends, rotation, truncate) */
    uint64_t batches;       /* group-commit batches written */
    uint64_t entries;       /* entries written */
    uint64_t bytes;         /* record bytes written */
    uint64_t meta_fsyncs;   /* set_term / set_vote / bootstrap */
    uint64_t snapshots;     /* snapshot files written */
    uint64_t torn_bytes;    /* bytes dropped as a torn tail at load */
};

/* Open (creating DIR if needed) and read the meta records.  Loads no
 * entries yet.  0 with *OUT owned (raftlog_close + raftlog_free), or
 * -BD_ECONFIG (identity mismatch), -BD_ECORRUPT, -errno, with a message in
 * ERR.  RX: completions are delivered there. */
int raftlog_open(struct reactor *rx, const char *dir, const struct raftlog_opts *opts,
                 struct raftlog **out, char *err, size_t errlen);

/* True if the directory holds no entries, no snapshot, and at most the
 * term 1 of an interrupted bootstrap without a vote. */
bool raftlog_pristine(struct raftlog *l);

/* Load everything for libraft (see struct raftlog_state), recovering a
 * torn tail and removing stale files.  Synchronous; call before any other
 * operation but bootstrap/recover, and again after them.  0, -BD_ECORRUPT
 * or -errno with a message in ERR. */
int raftlog_load(struct raftlog *l, struct raftlog_state *out, char *err, size_t errlen);

/* Write term 1 and entry 1 = CONF (a RAFT_CHANGE entry), durably.  Only on
 * a pristine directory: -EEXIST otherwise.  Synchronous. */
int raftlog_bootstrap(struct raftlog *l, const struct raft_configuration *conf, char *err,
                      size_t errlen);
/* Append CONF as a RAFT_CHANGE entry after the current last entry, in the
 * current term (libraft's raft_recover).  Synchronous; before load. */
int raftlog_recover(struct raftlog *l, const struct raft_configuration *conf, char *err,
                    size_t errlen);

/* Durable before returning (one fdatasync on this thread).  set_term also
 * clears the vote.  0 or -errno / -BD_EFAILED. */
int raftlog_set_term(struct raftlog *l, raft_term term);
int raftlog_set_vote(struct raftlog *l, raft_id vote);

/* Append N entries after the last one (as of the previous append,
 * truncate or install).  ENTRIES and their buffers are borrowed until CB.
 * Returns 0 (CB will run) or -BD_EFAILED / -ESHUTDOWN (it will not). */
int raftlog_append(struct raftlog *l, struct raftlog_req *req, const struct raft_entry *entries,
                   unsigned n, void (*cb)(struct raftlog_req *, int));
/* Delete entries >= INDEX, ordered after earlier appends and before later
 * ones.  A failure shows up as -BD_EFAILED on later requests.  0,
 * -ENOMEM, -BD_EFAILED or -ESHUTDOWN. */
int raftlog_truncate(struct raftlog *l, raft_index index);
/* Store SNAPSHOT (borrowed until CB; its bufs are written back to back)
 * and then drop entries older than index - TRAILING.  TRAILING 0 means an
 * installed snapshot: the whole log is replaced and the next append goes
 * to index + 1.  At most one put at a time. */
int raftlog_snapshot_put(struct raftlog *l, struct raftlog_req *req, unsigned trailing,
                         const struct raft_snapshot *snapshot,
                         void (*cb)(struct raftlog_req *, int));
/* Read the latest snapshot into req->snapshot (returned owned, raft heap,
 * one buffer); -ENOENT in CB if there is none. */
int raftlog_snapshot_get(struct raftlog *l, struct raftlog_req *req,
                         void (*cb)(struct raftlog_req *, int));

/* Cancel queued requests (CB -ECANCELED), let running ones finish, then
 * call DONE(ARG) on the reactor (never from inside this call).  After DONE
 * the only legal call is raftlog_free. */
void raftlog_close(struct raftlog *l, void (*done)(void *arg), void *arg);
void raftlog_free(struct raftlog *l);

/* Counters since open (approximate while requests are running). */
void raftlog_get_stats(struct raftlog *l, struct raftlog_stats *out);
/* The index the next append gets. */
raft_index raftlog_next_index(struct raftlog *l);

#endif
