/* raftlog_int.h: what raftlog.c (writing) and raftlog_load.c (loading and
 * recovery) share.  Not for other modules.
 *
 * On-disk layouts, all little endian:
 *
 * meta1 / meta2 (64 bytes)
 *   0 u32 magic RL_META_MAGIC   4 u16 version   6 u16 zero
 *   8 u64 seq   16 u64 term   24 u64 vote   32 u64 cluster_hash
 *  40 u64 node_id   48 u64 zero   56 u64 xxh3(bytes 0..55)
 *
 * seg-<seq as 16 hex digits>: a 32-byte header, then records
 *   0 u32 magic RL_SEG_MAGIC    4 u16 version   6 u16 zero
 *   8 u64 seq   16 u64 first_index   24 u64 xxh3(bytes 0..23)
 * record: a 40-byte header, then len data bytes
 *   0 u32 magic RL_REC_MAGIC    4 u16 entry type   6 u16 zero
 *   8 u64 index   16 u64 term   24 u32 len
 *  28 u32 low 32 bits of xxh3(bytes 0..27)   32 u64 xxh3(data)
 *
 * snap-<index as 16 hex digits>: a 64-byte header, conf, data, trailer
 *   0 u32 magic RL_SNAP_MAGIC   4 u16 version   6 u16 zero
 *   8 u64 term   16 u64 index   24 u64 conf_index   32 u64 log_seq
 *  40 u32 conf_len   44 u32 zero   48 u64 data_len   56 u64 xxh3(bytes 0..55)
 *  conf (raftmsg_conf_encode), data, u64 xxh3(conf || data)
 *
 * The record header has its own checksum so a scan can tell a plausible
 * record from garbage before trusting `len`. */
#ifndef BD_RAFTLOG_INT_H
#define BD_RAFTLOG_INT_H

#include "raftlog.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#define RL_META_MAGIC 0x544d5242u /* "BRMT" */
#define RL_SEG_MAGIC 0x47535242u  /* "BRSG" */
#define RL_REC_MAGIC 0x43525242u  /* "BRRC" */
#define RL_SNAP_MAGIC 0x4e535242u /* "BRSN" */
#define RL_VERSION 1
#define RL_META_LEN 64
#define RL_SEG_HDR 32
#define RL_REC_HDR 40
#define RL_SNAP_HDR 64

enum rl_op { RL_APPEND = 1, RL_TRUNCATE, RL_INSTALL, RL_COMPACT, RL_PUT, RL_GET };

/* One segment file as the writer sees it. */
struct rl_seg {
    uint64_t seq;
    raft_index first;  /* from the header */
    raft_index last;   /* last live index; first - 1 when it holds none */
    uint64_t size;     /* bytes in the file (the next record goes here) */
};

struct raftlog {
    struct reactor *rx;
    char dir[PATH_MAX - 64];
    struct fio *fio;
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
    struct rl_seg *segs;     /* by seq; the last one is written to */
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
void rl_path(const struct raftlog *l, const char *name, char *out, size_t len);
void rl_seg_name(uint64_t seq, char *out, size_t len);
void rl_snap_name(raft_index index, bool tmp, char *out, size_t len);

/* Read and verify snapshot file NAME into a raft-heap snapshot.  0,
 * -BD_ECORRUPT or -errno with ERR set. */
int rl_snapshot_read(struct raftlog *l, const char *name, struct raft_snapshot **out,
                     uint64_t *log_seq, char *err, size_t errlen);
/* Write a snapshot file (tmp, fdatasync, rename, fsync dir) and make it
 * current, deleting the previous one.  0 or -errno. */
int rl_snapshot_write(struct raftlog *l, const struct raft_snapshot *s, uint64_t log_seq);

/* Create segment SEQ starting at FIRST (header, fdatasync, fsync dir) and
 * make it the current one.  Writer context. */
int rl_seg_create(struct raftlog *l, uint64_t seq, raft_index first);
/* Append a segment to the table; -ENOMEM. */
int rl_seg_push(struct raftlog *l, const struct rl_seg *s);

#endif
