/* raftlog_int.h: what raftlog.c (writing) and raftlog_load.c (loading and
 * recovery) share.  Not for other modules.
 *
 * The files' byte layouts are raftlog_fmt.h's. */
#ifndef BD_RAFTLOG_INT_H
#define BD_RAFTLOG_INT_H

#include "store/raft/raftlog.h"
#include "store/raft/raftlog_fmt.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

/* What a struct raftlog_req asks for (its `op`). */
enum raftlog_op {
    RAFTLOG_OP_APPEND = 1, /* ordered, on the writer queue */
    RAFTLOG_OP_TRUNCATE,   /* ordered; internal, nobody waits for it */
    RAFTLOG_OP_INSTALL,    /* snapshot_put with trailing 0: ordered */
    RAFTLOG_OP_COMPACT,    /* phase 2 of a PUT: ordered */
    RAFTLOG_OP_PUT,        /* snapshot_put: the file, on the side queue */
    RAFTLOG_OP_GET,        /* snapshot_get, on the side queue */
};

/* One segment file as the writer sees it. */
struct raftlog_seg {
    uint64_t seq;
    raft_index first;  /* from the header */
    raft_index last;   /* last live index; first - 1 when it holds none */
    uint64_t size;     /* bytes in the file (the next record goes here) */
};

struct raftlog {
    struct reactor *rx;
    char dir[PATH_MAX - 64];
    struct fileio *fio;
    uint64_t segment_bytes;
    uint64_t cluster_hash, node_id;
    const char *tag;
    struct taskq *wq;        /* ordered operations */
    struct taskq *sq;        /* snapshot file writes and reads */

    /* Meta records: reactor thread only. */
    int meta_fd[2];
    uint64_t meta_seq;       /* sequence of the newest valid record */
    raft_term term;
    raft_id vote;
    bool had_files;          /* segments or snapshots existed at open */

    /* Writer state: the reactor thread until load returns, then only the
     * writer task queue (batch jobs run one at a time). */
    struct raftlog_seg *segs;     /* by seq; the last one is written to */
    size_t n_segs, cap_segs;
    int cur_fd;              /* the last segment, open for writing, or -1 */
    bool cur_dirty;          /* written since its last fdatasync */
    uint64_t next_seq;
    raft_index w_next;       /* index of the next record */
    int w_failed;            /* sticky: first fatal I/O error */

    /* The current snapshot; snap_lock protects these four, the file names
     * they imply, and valid_seq. */
    pthread_mutex_t snap_lock;
    bool have_snap;
    raft_index snap_index;
    raft_term snap_term;
    uint64_t valid_seq;      /* segments below this are stale (install) */

    /* Reactor-side queueing. */
    raft_index next_index;   /* index the next append gets */
    struct raftlog_req *q_head, *q_tail; /* ordered ops not yet started */
    struct taskq_job batch_job;
    struct raftlog_req *batch;           /* the running batch, or NULL */
    int side_running;        /* put/get jobs on sq */
    int failed;              /* reactor's copy of w_failed */
    bool loaded;
    bool closing;
    void (*close_done)(void *arg);
    void *close_arg;

    _Atomic uint64_t st_fsyncs, st_batches, st_entries, st_bytes, st_meta_fsyncs,
        st_snapshots, st_torn;
};

/* Path of NAME inside the log directory. */
void raftlog_path(const struct raftlog *l, const char *name, char *out, size_t len);
void raftlog_seg_name(uint64_t seq, char *out, size_t len);
void raftlog_snap_name(raft_index index, bool tmp, char *out, size_t len);

/* Read and verify snapshot file NAME into a raft-heap snapshot.  0,
 * -BD_ECORRUPT or -errno with ERR set. */
int raftlog_load_snapshot(struct raftlog *l, const char *name, struct raft_snapshot **out,
                     uint64_t *log_seq, char *err, size_t errlen);

/* Create segment SEQ starting at FIRST (header, fdatasync, fsync dir) and
 * make it the current one.  Writer context. */
int raftlog_seg_create(struct raftlog *l, uint64_t seq, raft_index first);
/* Append a segment to the table; -ENOMEM. */
int raftlog_seg_push(struct raftlog *l, const struct raftlog_seg *s);

#endif
