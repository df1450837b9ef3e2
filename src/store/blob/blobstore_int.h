/* blobstore_int.h: the blob store's internal types, shared by blobstore.c
 * (open, write path, group commit), blobstore_seg.c (partitions, segments,
 * sealing), blobstore_read.c (reads, verification), blobscan.c (recovery,
 * bad list, store.meta), blobstore_scrub.c and blobstore_compact.c.
 * Nothing outside src/store includes this but the segment fuzz target
 * (which drives blobstore_read_decompress).
 *
 * Names: everything declared here starts with blobstore_ (the module this
 * header is internal to), most with the file that defines it
 * (blobstore_seg_*, blobstore_read_*, blobstore_scrub_*,
 * blobstore_compact_*); blobscan.c's start with blobscan_. *
 * Ownership across threads (the invariants every file relies on):
 *   1. struct blobstore, blobstore_part and blobstore_seg fields marked
 *      "reactor" are read and written on the reactor thread only.
 *   2. Fields marked "writer" belong to the writer queue's thread while the
 *      store is open; the reactor touches them only in blobstore_open (no
 *      writer yet) and blobstore_free (writer joined).
 *   3. A job on another queue gets everything it needs copied into the job
 *      (fd, offsets, lengths) plus a reference on the segment, so the
 *      segment's fd stays open until the job's completion drops it.
 *   4. A segment's file is unlinked only when it is retired (not in its
 *      partition's list) and its reference count reaches zero.
 *   5. Records are appended only by the writer, at w_size of the active
 *      segment.  A byte below w_size is rewritten only by the direct-I/O
 *      writer's tail block, and only with the value it already has, so a
 *      torn or reordered write never changes a committed record and a
 *      reader of one never sees other bytes (blobstore.c, "direct I/O").
 *   6. An entry is LIVE only if its record is durable; reads are issued only
 *      for LIVE entries, so readers never see bytes still being written. */
#ifndef BD_BLOBSTORE_INT_H
#define BD_BLOBSTORE_INT_H

#include "store/blob/blobstore.h"
#include "store/blob/bsindex.h"
#include "store/blob/segment.h"
#include "runtime/metrics.h"

#include <stdatomic.h>

#define BLOBSTORE_MAX_READERS 8
#define BLOBSTORE_COMPRESS_MIN 8192u  /* smaller blobs are never worth zstd's time */
#define BLOBSTORE_META_MAX (SEG_REC_HDR_LEN + 4u * (SEG_REC_MAX_DATA / SEG_REC_CHUNK))
#define BLOBSTORE_PATH_MAX 4096
#define BLOBSTORE_DIR_MAX 3072 /* leaves room for "/p<id>/<seq>.<ext>.tmp" in a path */

enum blobstore_seg_state {
    BLOBSTORE_SEG_ACTIVE,   /* the writer appends to it */
    BLOBSTORE_SEG_SEALING,  /* full; its index file is being written */
    BLOBSTORE_SEG_SEALED,   /* immutable; may be scrubbed and compacted */
    BLOBSTORE_SEG_RETIRED,  /* compacted away: unlinked when the last reference drops */
};

struct blobstore_seg {
    struct blobstore_part *part;
    uint64_t seq;
    int fd;
    int refs;                /* reactor: 1 for list membership + 1 per job */
    uint8_t state;           /* reactor: enum blobstore_seg_state */
    bool dir_synced;         /* reactor: its directory entry is durable */
    bool has_idx;            /* reactor: a valid .idx file describes it */
    bool compacting;         /* reactor: an input of the running compaction */
    uint64_t durable_end;    /* reactor: bytes known durable (scrub reads below) */
    uint64_t file_len;       /* reactor: bytes in the file */
    uint64_t live_bytes;     /* reactor: record bytes the index references */
    /* writer (see invariant 2); handed to the seal job when sealed */
    uint64_t w_size;         /* where the next record goes */
    uint64_t w_max_epoch;    /* highest epoch in the header and records */
    struct seg_idx_entry *ents;  /* every record appended, for the index file */
    uint32_t n_ents, cap_ents;
    int w_dfd;               /* O_DIRECT descriptor of the file, or -1 */
    uint8_t *w_tail;         /* SEG_DIO_ALIGN bytes: the file's bytes from
                              * w_size rounded down to the block, up to w_size */
    bool w_tail_ok;          /* w_tail holds them (a buffered write clears it) */
    bool w_padded;           /* the file may be longer than w_size (zeros) */
    struct blobstore_seg *next;     /* reactor: in part->segs, ascending seq */
};

struct blobstore_part {
    uint32_t id;
    uint64_t epoch;          /* reactor: highest epoch accepted */
    struct blobstore_seg *segs;     /* reactor: every segment, ascending seq */
    bool dir_synced;         /* reactor: the partition directory entry is durable */
    uint64_t *ids;           /* reactor: ids for BLOB_LIST (may hold dead ones) */
    uint32_t n_ids, cap_ids;
    bool ids_sorted;
    /* writer */
    struct blobstore_seg *w_active; /* the segment appended to; NULL until the first write */
    uint64_t w_epoch;        /* highest epoch written */
    bool w_dir_made;         /* its directory exists */
    _Atomic uint64_t next_seg_seq; /* writer and compactor take numbers here */
};

/* The one flush in flight (group commit). */
struct blobstore_flush {
    struct taskq_job job;
    struct blobstore *bs;
    struct blobstore_wop *batch;    /* writes it will acknowledge */
    uint32_t n_batch;
    struct blobstore_seg **segs;    /* to fdatasync (referenced) */
    uint32_t n_segs, cap_segs;
    char (*dirs)[BLOBSTORE_PATH_MAX]; /* to fsync */
    uint32_t n_dirs, cap_dirs;
    bool busy;
    int status;
    uint64_t t_start_ns;
};

struct blobscan_badsave;
struct blobstore_scrub;
struct blobstore_compact;

struct blobstore {
    struct blobstore_opts o; /* copied; its strings point at the copies below */
    char dir[BLOBSTORE_DIR_MAX];
    char tag[32];
    char labels[128];
    char ident[128];
    struct fileio *fio;
    struct reactor *rx;
    uint64_t store_id;
    struct taskq *wq;        /* writer: puts, deletes, segment creation */
    struct taskq *sq;        /* sync: flushes, index files, bad list */
    struct taskq *bgq;       /* background: scrub, compaction, unlink */
    struct taskq *rq[BLOBSTORE_MAX_READERS];
    void *rq_dctx[BLOBSTORE_MAX_READERS]; /* zstd decompression context per read queue */
    unsigned n_rq, next_rq;
    struct bsindex ix;       /* reactor */
    struct blobstore_part **parts;  /* reactor: sorted by id */
    uint32_t n_parts, cap_parts;
    uint64_t next_seq;       /* reactor: next record sequence number */
    uint64_t used_bytes;     /* reactor: bytes in segment files */
    uint64_t live_blobs;     /* reactor */
    uint64_t live_bytes;     /* reactor: sum of seg live_bytes */
    uint64_t rec_bytes;      /* reactor: record bytes in all segments */
    /* writer scratch */
    uint8_t *w_meta;         /* header + chunk table of the record being written */
    uint8_t *w_abuf;         /* SEG_DIO_ALIGN-aligned: one direct write */
    size_t w_acap;
    bool w_direct_off;       /* the filesystem refused O_DIRECT: all buffered */
    void *w_cctx;            /* zstd compression context */
    uint8_t *w_zbuf;
    size_t w_zcap;
    /* group commit (reactor) */
    struct blobstore_wop *unsynced, *unsynced_tail; /* written, waiting for a flush */
    struct blobstore_flush flush;
    unsigned writes_in_writer;
    unsigned jobs;           /* seal, read, bad-list and unlink jobs in flight */
    /* failure (reactor) */
    bool failed;
    int failed_err;
    bool enospc;
    /* bad list (reactor) */
    struct seg_bad *bad;
    uint32_t n_bad, cap_bad;
    struct blobscan_badsave *badsave; /* the save in flight, or NULL */
    bool bad_dirty;          /* changed since the save in flight started */
    struct blobstore_scrub *scrub;
    struct blobstore_compact *compact;
    /* close */
    bool closing;
    void (*close_done)(void *arg);
    void *close_arg;
    struct blobstore_stats st; /* counters (reactor) */
    struct metrics_counter *m_fsyncs, *m_batches, *m_batch_writes, *m_csum_errors,
        *m_scrub_bytes, *m_scrub_passes, *m_compactions, *m_reclaimed, *m_direct_writes,
        *m_direct_bytes;
    struct metrics_hist *m_flush_lat;
};

/* ---- blobstore_seg.c ----------------------------------------------------- */
/* "<dir>/p<part>" or "<dir>/p<part>/<seq>.<ext>" into BUF (BLOBSTORE_PATH_MAX). */
void blobstore_part_dir(const struct blobstore *bs, uint32_t part, char *buf);
void blobstore_seg_path(const struct blobstore *bs, uint32_t part, uint64_t seq, const char *ext,
                        char *buf);
/* The partition, created in memory if CREATE (NULL on ENOMEM/too many). */
struct blobstore_part *blobstore_part_get(struct blobstore *bs, uint32_t id, bool create);
struct blobstore_seg *blobstore_seg_new(struct blobstore_part *part, uint64_t seq, int fd);
/* Close SEG's descriptors and free it (no references left). */
void blobstore_seg_free(struct blobstore *bs, struct blobstore_seg *seg);
/* Writer: drop SEG's direct-I/O descriptor and tail (it takes no more records). */
void blobstore_seg_direct_release(struct blobstore *bs, struct blobstore_seg *seg);
/* Insert SEG into its partition's list (reactor). */
void blobstore_seg_link(struct blobstore_seg *seg);
void blobstore_seg_ref(struct blobstore_seg *seg);
void blobstore_seg_unref(struct blobstore *bs, struct blobstore_seg *seg);
/* Retire SEG: out of the list, unlinked once unreferenced. */
void blobstore_seg_retire(struct blobstore *bs, struct blobstore_seg *seg);
/* Add or remove a record's bytes from the live count of its segment. */
void blobstore_seg_live_add(struct blobstore *bs, struct blobstore_seg *seg, uint32_t stored_len);
void blobstore_seg_live_sub(struct blobstore *bs, struct blobstore_seg *seg, uint32_t stored_len);
/* Remember ID in its partition's list for BLOB_LIST. */
void blobstore_part_list_add(struct blobstore_part *part, struct bsindex_ent *e);
/* Fail stop for writes after a storage error (C15). */
void blobstore_fail(struct blobstore *bs, int err, const char *what);
/* Mark entry E (LIVE) bad: not served, remembered durably, reported. */
void blobstore_mark_bad(struct blobstore *bs, struct bsindex_ent *e, int err, const char *who);
/* Write BUF to PATH through the fio: PATH.tmp, fdatasync, rename, fsync
 * of DIR.  For worker threads.  *FSYNCS counts the syncs done.  0 or -errno
 * (-EIO from an fsync: the caller fails stop). */
int blobstore_write_atomic(struct blobstore *bs, const char *dir, const char *path, const void *buf,
                           size_t len, unsigned *fsyncs);
/* Write the index file of SEG (ENTS, N) for a segment of SEG_LEN bytes.
 * Worker threads.  0 or -errno. */
int blobstore_seg_write_idx(struct blobstore *bs, struct blobstore_seg *seg,
                            const struct seg_idx_entry *ents, uint32_t n, uint64_t seg_len,
                            uint64_t max_epoch, unsigned *fsyncs);
/* SEG is full (the writer moved on): make it durable and write its index
 * file on the sync queue.  Reactor. */
void blobstore_seg_seal(struct blobstore *bs, struct blobstore_seg *seg);

/* ---- blobstore.c --------------------------------------------------------- */
/* A job that counted in bs->jobs finished; close may be waiting for it. */
void blobstore_job_done(struct blobstore *bs);
void blobstore_check_closed(struct blobstore *bs);

/* ---- blobstore_read.c ---------------------------------------------------- */
/* What the index says a record is. */
struct blobstore_read_expect {
    uint64_t blob_id;
    uint64_t seq;
    uint64_t csum;
    uint32_t partition;
    uint32_t raw_len;
    uint32_t stored_len;
    uint16_t flags;
    uint8_t type;
};
/* Read the whole record at OFF of FD into BUF (seg_rec_meta_len + stored_len
 * bytes) and verify it completely: header and table checksum, fields equal
 * to X, every chunk, and the blob's XXH3-64 (decompressing into RAW,
 * raw_len bytes, with DCTX when compressed).  Worker threads.  0,
 * -BD_ECSUM (bytes do not verify), or -EIO/-errno (read error). */
int blobstore_read_verify(struct blobstore *bs, int fd, uint64_t off,
                          const struct blobstore_read_expect *x, uint8_t *buf, uint8_t *raw,
                          void *dctx);
/* Decompress one zstd frame of exactly RAW_LEN content bytes, refusing
 * frames that lie about their size.  0 or -BD_ECSUM. */
int blobstore_read_decompress(void *dctx, uint8_t *dst, uint32_t raw_len, const uint8_t *src,
                              uint32_t stored_len);

/* ---- blobscan.c ---------------------------------------------------------- */
/* Recover the store in bs->dir (see blobstore_open).  0 or -errno with ERR. */
int blobscan_recover(struct blobstore *bs, char *err, size_t errlen);
/* The bad list: add/remove an entry and schedule a durable save. */
void blobscan_bad_add(struct blobstore *bs, const struct bsindex_ent *e);
void blobscan_bad_remove(struct blobstore *bs, uint64_t blob_id);

/* ---- blobstore_scrub.c / blobstore_compact.c ----------------------------- */
int blobstore_scrub_new(struct blobstore *bs);
void blobstore_scrub_stop(struct blobstore *bs); /* no new jobs; close waits for the running one */
void blobstore_scrub_free(struct blobstore *bs);
bool blobstore_scrub_idle(const struct blobstore *bs);
int blobstore_compact_new(struct blobstore *bs);
void blobstore_compact_stop(struct blobstore *bs);
void blobstore_compact_free(struct blobstore *bs);
bool blobstore_compact_idle(const struct blobstore *bs);

#endif
