/* blobstore.h: a durable, immutable, checksummed blob store (DESIGN.md §6).
 *
 * A data directory holds partitions; a partition is a sequence of
 * append-only segment files of self-describing records (segment.h).  An
 * in-memory table maps blob id -> record; it is rebuilt from the segments
 * by blobstore_open(), which also cuts torn tails.  Every file operation
 * goes through the struct fileio the caller passes (fileio.h).
 *
 * Guarantees (CONTRACT.md C3, C9, C14, C15):
 *   - a put is acknowledged (callback with 0) only after its record is
 *     durable: written and fdatasync'ed, and the directory entries of any
 *     new segment or partition fsync'ed;
 *   - blob ids are immutable and never reused: a put of an existing id with
 *     the same bytes is an idempotent success, with other bytes
 *     -BD_EIMMUTABLE, and after a delete any put of the id is refused;
 *   - every read verifies checksums; a mismatch is -BD_ECSUM, never data,
 *     and the record is marked bad (durably) so that a later put of the
 *     same bytes heals it;
 *   - an fdatasync or directory fsync error fails every write that
 *     depended on it, and the store fails stop for writes (-BD_EFAILED)
 *     while reads of durable data continue; nothing is retried and acked;
 *   - ENOSPC fails the write that hit it (-ENOSPC) and nothing else.
 *
 * Partitions are created on the first put or delete that names them: the
 * proxy owns placement, and a blob server that refused unknown partitions
 * would need a second protocol to be told about them.  At most
 * BLOBSTORE_MAX_PARTITIONS exist; more are -ENOSPC.
 *
 * Threads: call everything on the reactor thread.  Writes run on one
 * writer task queue, flushes and index files on a sync queue, reads on a
 * small pool of read queues, scrub and compaction on a background queue;
 * callbacks run on the reactor. */
#ifndef BD_BLOBSTORE_H
#define BD_BLOBSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/reactor.h"
#include "runtime/taskq.h"
#include "store/fileio.h"

#define BLOBSTORE_MAX_PARTITIONS 65536u
#define BLOBSTORE_PUT_COMPRESSIBLE 0x1 /* == WIRE_PUT_COMPRESSIBLE */

struct blobstore;
struct blobstore_part;
struct blobstore_seg;

struct blobstore_opts {
    const char *dir;              /* data directory; created if missing */
    struct fileio *fio;              /* borrowed; must outlive the store */
    struct reactor *rx;           /* borrowed */
    const char *tag;              /* log tag, e.g. "blob.1"; borrowed */
    const char *metrics_labels;   /* e.g. role="blob.1"; borrowed; "" for none */
    const char *ident;            /* stored on creation and compared on every
                                   * open (the cluster id); borrowed */
    uint64_t segment_bytes;       /* a segment is sealed at this size */
    uint32_t max_blob_bytes;      /* largest blob accepted (<= 64 MiB) */
    uint64_t capacity_bytes;      /* refuse puts past this many bytes; 0 = no limit */
    bool compress;                /* zstd-compress blobs the client allows */
    unsigned compress_min_saving_pct; /* ...only when it saves this much */
    uint64_t scrub_bytes_per_sec; /* background scrub rate; 0 = off */
    unsigned compact_live_pct;    /* compact segments less live than this; 0 = off */
    unsigned scrub_tick_ms;       /* scrub pacing period (default 100) */
    unsigned compact_check_ms;    /* how often to look for compaction work (1000) */
    unsigned read_threads;        /* read queues (default 2) */
    uint32_t direct_min_bytes;    /* records of at least this many bytes are
                                   * written with O_DIRECT (blobstore.c); 0 =
                                   * none, 1 = all */
};

/* ---- private: the state of one queued write (put or delete) -------------- */
struct blobstore_wop {
    struct taskq_job job;
    struct blobstore *bs;
    struct blobstore_part *part;
    struct blobstore_seg *seg;       /* where the writer put the record */
    struct blobstore_seg *created;   /* a segment the writer created for it */
    struct blobstore_seg *sealed;    /* the segment that creation sealed */
    uint64_t off;             /* record offset in seg */
    uint64_t seq;             /* record sequence number */
    uint32_t rec_len;         /* seg_rec_total_len() */
    uint32_t stored_len;
    uint16_t rec_flags;
    uint8_t type;             /* SEG_REC_PUT or SEG_REC_TOMBSTONE */
    uint8_t prev_state;       /* delete: the entry's state before it (restored
                               * if the tombstone fails; BSINDEX_FREE: a new entry) */
    bool waiter;              /* rides on another write of the same blob */
    int status;               /* set by the writer */
    uint64_t t_start_ns;
    struct blobstore_wop *next;      /* unsynced or batch list */
    struct blobstore_wop *waiters;   /* identical writes answered with this one */
};

/* ---- writes -------------------------------------------------------------- */

struct blobstore_put {
    /* in: set by the caller; DATA is borrowed until the callback */
    uint64_t blob_id;
    uint32_t partition;
    uint32_t flags;           /* BLOBSTORE_PUT_* */
    uint64_t epoch;           /* partition epoch; lower than seen: -BD_EFENCED */
    uint64_t csum;            /* XXH3-64 of data, verified before storing */
    const uint8_t *data;
    uint32_t len;
    void (*cb)(struct blobstore_put *p, int err);
    void *arg;
    /* out */
    uint32_t stored_len;      /* bytes of data on disk (smaller if compressed) */
    /* private */
    struct blobstore_wop w;
};

/* Store a blob.  Returns 0 if the put was queued: P->cb then runs exactly
 * once, with 0 once the blob is durable, or -BD_ECSUM (data does not match
 * csum; nothing stored), -ENOSPC, -EIO or -BD_EFAILED (storage failed; the
 * blob is not durable and may or may not be found after a restart), or
 * -ENOMEM.  A put of the same bytes while one is queued rides on it and
 * gets the same answer (if the first payload fails its checksum, the
 * second is written instead).  Returns 1 if the
 * same bytes are already durable (idempotent success; no callback), or a
 * negative code with no callback: -EINVAL (too large), -BD_EFENCED,
 * -BD_EIMMUTABLE (id holds other bytes, is in another partition, or was
 * deleted), -ENOSPC (capacity), -BD_EFAILED, -ESHUTDOWN.  P must stay
 * valid until the callback. */
int blobstore_put(struct blobstore *bs, struct blobstore_put *p);

struct blobstore_delete {
    uint64_t blob_id;
    uint32_t partition;
    void (*cb)(struct blobstore_delete *d, int err);
    void *arg;
    struct blobstore_wop w;   /* private */
};

/* Delete a blob: append a tombstone, so the delete survives restarts and
 * the id is never reused (an id never seen gets a tombstone too: a late
 * put of it will be refused).  Returns 0 if queued (cb runs once, with 0
 * when the tombstone is durable, or -ENOSPC/-EIO/-BD_EFAILED, after which
 * the blob is as it was), 1 if already deleted and durable, or at once
 * -ENOENT (the id lives in another partition), -EBUSY (a put of the id is
 * still in flight: retry after it), -BD_EFAILED, -ENOSPC, -ESHUTDOWN. */
int blobstore_delete(struct blobstore *bs, struct blobstore_delete *d);

/* ---- reads --------------------------------------------------------------- */

struct blobstore_get {
    /* in */
    uint64_t blob_id;
    uint32_t partition;
    uint32_t off;             /* range within the blob; off 0 and len 0: whole */
    uint32_t len;
    void (*cb)(struct blobstore_get *g, int err);
    void *arg;
    /* out, on success: BUF is returned owned (free() it); DATA points into it */
    void *buf;
    const uint8_t *data;
    uint32_t data_len;
    uint32_t blob_len;
    uint64_t csum;            /* XXH3-64 of data */
    /* private */
    struct taskq_job job;
    struct blobstore *bs;
    struct blobstore_seg *seg;
    uint64_t rec_off;
    uint64_t rec_seq;
    uint64_t rec_csum;
    uint32_t raw_len, stored_len;
    uint16_t rec_flags;
    unsigned q;
    int status;
};

/* Read a blob or a range of it, verifying checksums.  Returns 0 if queued
 * (cb runs once: 0 with the data, -BD_ECSUM if the bytes on disk fail
 * their checksum, -EIO on a read error), or at once -ENOENT (unknown,
 * deleted, not yet durable, or in another partition), -BD_ECSUM (known
 * bad), -ERANGE (range outside the blob), -ESHUTDOWN. */
int blobstore_get(struct blobstore *bs, struct blobstore_get *g);

struct blobstore_stat {
    uint32_t partition;
    uint32_t flags;           /* BLOBSTORE_PUT_* as stored, plus STORED_COMPRESSED */
    uint32_t len;
    uint32_t stored_len;
    uint64_t csum;
};
#define BLOBSTORE_STAT_COMPRESSED 0x80000000u
/* Metadata of a durable blob: 0, -ENOENT, or -BD_ECSUM (known bad). */
int blobstore_stat(struct blobstore *bs, uint64_t blob_id, struct blobstore_stat *out);

struct blobstore_entry {
    uint64_t blob_id;
    uint32_t len;
    uint64_t csum;
};
/* List up to MAX live blobs of PARTITION with ids above CURSOR, in
 * ascending id order, into OUT.  Returns the count; *NEXT is the cursor
 * for the following page, or 0 when there are no more. */
uint32_t blobstore_list(struct blobstore *bs, uint32_t partition, uint64_t cursor, uint32_t max,
                        struct blobstore_entry *out, uint64_t *next);

struct blobstore_bad {
    uint64_t blob_id;
    uint32_t partition;
};
/* Up to MAX of the blobs currently marked bad; returns the count copied. */
uint32_t blobstore_bad_list(struct blobstore *bs, struct blobstore_bad *out, uint32_t max);

/* ---- state --------------------------------------------------------------- */

struct blobstore_stats {
    uint64_t blobs;               /* live blobs */
    uint64_t live_bytes;          /* record bytes the index references */
    uint64_t dead_bytes;          /* record bytes nothing references */
    uint64_t used_bytes;          /* bytes of segment files */
    uint64_t bad_blobs;
    uint32_t partitions;
    uint32_t segments;
    bool failed;                  /* writes fail stop (C15) */
    int failed_err;               /* the error that failed it */
    bool out_of_space;            /* the last write hit ENOSPC */
    uint64_t puts, deletes, gets; /* completed successfully */
    uint64_t fsyncs;              /* fdatasync + directory fsync calls */
    uint64_t commit_batches;      /* flushes that acknowledged writes */
    uint64_t commit_writes;       /* writes they acknowledged */
    uint64_t max_batch;
    uint64_t csum_errors;         /* checksum failures found by reads and scrub */
    uint64_t scrub_passes;
    uint64_t scrub_bytes;         /* verified by the scrubber, all passes */
    uint64_t scrub_last_pass_ms;  /* wall clock of the last full pass, 0 if none */
    double scrub_progress;        /* 0..1 of the current pass */
    uint64_t compactions;         /* segments compacted away */
    uint64_t compact_reclaimed;   /* bytes given back */
    uint64_t recover_ms;          /* time blobstore_open spent recovering */
    uint64_t recovered_records;
    uint64_t recovered_damaged;   /* damaged byte ranges skipped at recovery */
};
void blobstore_get_stats(struct blobstore *bs, struct blobstore_stats *out);

/* ---- lifetime ------------------------------------------------------------ */

/* Open or create the store in O->dir and recover it: read every
 * segment (or its index file), cut torn tails, rebuild the table.  Runs
 * synchronously (before the reactor serves anything).  0 with *OUT owned,
 * or a negative code with a one-line reason in ERR. */
int blobstore_open(const struct blobstore_opts *o, struct blobstore **out, char *err,
                   size_t errlen);
/* Stop accepting requests (-ESHUTDOWN), let queued writes finish (their
 * fsync included) and every callback run, stop the scrubber and the
 * compactor, then call DONE(ARG) on the reactor. */
void blobstore_close(struct blobstore *bs, void (*done)(void *arg), void *arg);
/* Free the store; after blobstore_close completed, or on a store with no
 * requests outstanding. */
void blobstore_free(struct blobstore *bs);

/* Run the scrubber over everything now, as fast as it goes, and call
 * DONE(ARG) after the pass (tests and the admin API). */
void blobstore_scrub_now(struct blobstore *bs, void (*done)(void *arg), void *arg);
/* Look for compaction work now; DONE(ARG) runs when it is finished (at
 * once if there is none). */
void blobstore_compact_now(struct blobstore *bs, void (*done)(void *arg), void *arg);

#endif
