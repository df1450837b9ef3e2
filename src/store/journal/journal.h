/* journal.h: the agent's per-volume write-back journal (DESIGN.md §1, §2;
 * CONTRACT.md C4, C5, C9, §3 "bytes on disk").
 *
 * One journal per attached volume, in its own directory: a sequence of
 * segment files, appended in order, each entry self-describing and
 * checksummed.  An entry is acknowledged once pwritev() returned: it is in
 * the kernel's page cache and survives a crash of the agent process (C4).
 * journal_sync() makes everything appended so far survive power loss too
 * (the agent runs it before a FLUSH or FUA completes; see agent_vol.c for
 * why that matters to C5).
 *
 * What the journal knows: byte formats, segments, sequence numbers, space,
 * and how to replay.  What it does not know: which entries are still
 * needed.  The owner says so with journal_ref() (per segment reference
 * counts), and the journal deletes the oldest segments once nothing
 * references them.  Segments are reclaimed strictly oldest first: deleting
 * a newer segment while an older one survives could let replay resurrect
 * an older version of a block whose newer version was in the deleted
 * segment (C9).
 *
 * Replay reports every entry in sequence order to a callback, including
 * the damage it finds, as records of kind JOURNAL_LOST: "these bytes of
 * the volume were acknowledged once and are gone".  The owner must refuse
 * reads of those blocks with EIO until they are overwritten, never serve
 * older data for them.  Replay is idempotent: it changes nothing on disk
 * except cutting a torn tail that was never acknowledged.
 *
 * Threads: everything runs on the owner's thread except the fdatasync
 * jobs of journal_sync(), which run on the task queue given in the
 * options. */
#ifndef BD_JOURNAL_H
#define BD_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fileio;
struct taskq;
struct journal;

#define JOURNAL_SEG_HDR 1024u    /* segment header bytes (start of every segment file) */
#define JOURNAL_ENT_HDR 64u      /* entry header bytes; the trailer has the same size */
#define JOURNAL_ENT_OVERHEAD (2u * JOURNAL_ENT_HDR)
#define JOURNAL_ALIGN 16u        /* entries start at multiples of this */
#define JOURNAL_BLOCK 4096u      /* data is whole 4 KiB blocks */
#define JOURNAL_NAME_MAX 255u
/* The range a LOST record covers when the damaged entries' ranges cannot
 * be known: the whole volume (owners clip it to the volume size). */
#define JOURNAL_LOST_ALL_LEN (1ull << 62)

enum journal_kind {
    JOURNAL_WRITE = 1, /* data follows */
    JOURNAL_ZERO = 2,  /* reads as zeroes (WRITE_ZEROES), no data */
    JOURNAL_TRIM = 3,  /* discarded, reads as zeroes, no data */
    JOURNAL_LOST = 4,  /* an acknowledged write that replay found damaged */
    /* No data: the cluster holds a newer version of these bytes, written
     * around the journal (the agent's direct writes).  Every older entry
     * of them is void; replay must not resurrect it.  It needs no
     * reference: segments go oldest first, so it outlives every entry it
     * voids. */
    JOURNAL_CLEAN = 5,
};
#define JOURNAL_KIND_MAX JOURNAL_CLEAN

struct journal_opts {
    struct fileio *fio;      /* borrowed; outlives the journal */
    const char *dir;      /* the journal's directory (created by journal_create) */
    const char *tag;      /* log tag; borrowed */
    uint64_t vol_id;      /* every entry carries it; replay rejects others */
    const char *name;     /* volume name, recorded in every segment header */
    uint64_t cap_bytes;   /* bound on the sum of segment sizes */
    uint64_t seg_bytes;   /* a segment is closed when the next entry would not fit */
    struct taskq *syncq;  /* where journal_sync() runs its fdatasync; may be NULL
                           * if only journal_sync_now() is used */
};

/* One replayed entry, or one freshly appended one. */
struct journal_rec {
    uint64_t seq;           /* strictly increasing over the journal's life */
    int kind;               /* enum journal_kind */
    uint64_t off, len;      /* bytes of the volume, multiples of 4096 */
    uint64_t seg;           /* segment the owner must reference (journal_ref) */
    uint64_t data_pos;      /* WRITE: file offset of the data in SEG */
    const uint64_t *csums;  /* WRITE: XXH3-64 of each 4 KiB block; valid only
                             * during the callback (or until the next append) */
};

struct journal_stats {
    uint64_t entries;       /* valid entries replayed */
    uint64_t data_bytes;    /* their data bytes */
    uint64_t recovered;     /* entries rebuilt from their trailer (header damaged) */
    uint64_t damaged;       /* LOST records reported for a known range */
    uint64_t lost_all;      /* LOST records for an unknown range (whole volume) */
    uint64_t torn_bytes;    /* bytes cut from the tail (never acknowledged) */
    uint64_t garbage_bytes; /* bytes skipped that held no missing entry */
    uint64_t segments;
};

/* Create an empty journal in O->dir (made if missing; it must not hold
 * segments).  0 with *OUT owned (journal_close), or -errno. */
int journal_create(const struct journal_opts *o, struct journal **out);

/* Open the existing journal in O->dir: list and validate its segments.
 * O->vol_id may be 0 to learn it from the segment headers; O->name is
 * ignored (the headers have it).  Call journal_replay() next, before any
 * append.  0 with *OUT owned, -ENOENT if the directory holds no segment,
 * -BD_ECORRUPT if no segment header is readable (the journal cannot be
 * trusted at all: keep it for an operator), or -errno. */
int journal_open(const struct journal_opts *o, struct journal **out);
/* The volume name recorded in the journal (valid while open). */
const char *journal_name(const struct journal *j);

/* Scan every segment and call FN(ARG, rec) for each entry in sequence
 * order (LOST records included).  The owner references what it keeps with
 * journal_ref() from inside FN.  Cuts a torn tail.  0, or -errno if a
 * segment could not be read (nothing was reported twice: the owner drops
 * what it built). */
int journal_replay(struct journal *j, void (*fn)(void *arg, const struct journal_rec *r),
                   void *arg, struct journal_stats *st);

/* Append an entry of KIND for [OFF, OFF+LEN).  WRITE takes DATA (LEN
 * bytes, borrowed) and CSUMS (XXH3-64 of each block, LEN/4096 of them,
 * borrowed); other kinds take neither.  RESERVE lets the append use the
 * last segment's worth of space, kept for copying LOST marks forward.
 * Fills *OUT (csums points at the caller's array).  Returns 0, or
 *   -EAGAIN   the journal is full: wait for journal_reclaim() to free space;
 *   -EMSGSIZE the entry can never fit in a segment;
 *   -ENOSPC, -EIO  the file system refused; nothing was appended;
 *   -BD_EFAILED    the journal failed stop earlier (C15). */
int journal_append(struct journal *j, int kind, uint64_t off, uint64_t len, const void *data,
                   const uint64_t *csums, bool reserve, struct journal_rec *out);

/* Read LEN bytes at file offset POS of segment SEG.  0 or -errno. */
int journal_read(struct journal *j, uint64_t seg, uint64_t pos, void *buf, size_t len);

/* Adjust the owner's reference count of segment SEG by DELTA; LOST says
 * the reference is a LOST mark (see journal_forward_needed). */
void journal_ref(struct journal *j, uint64_t seg, int64_t delta, bool lost);
/* True if the oldest segment is closed and referenced only by LOST marks,
 * with *SEG set: the owner should re-append those marks (reserve) and drop
 * its references to SEG so it can be reclaimed. */
bool journal_forward_needed(const struct journal *j, uint64_t *seg);
/* Delete the oldest closed segments that nothing references, in order.
 * Returns the number deleted (never while a sync job runs). */
unsigned journal_reclaim(struct journal *j);

uint64_t journal_used_bytes(const struct journal *j);
unsigned journal_segments(const struct journal *j);
uint64_t journal_last_seq(const struct journal *j);
/* The largest LEN a WRITE may have with these options. */
uint64_t journal_max_write(uint64_t seg_bytes);
bool journal_failed(const struct journal *j);

/* Make every entry appended before the call durable (fdatasync of the
 * segments written since the last sync, and of the directory when
 * segments were created).  One sync job at a time; requests that arrive
 * while it runs share the next one (group commit).  CB runs once on the
 * reactor, possibly before journal_sync() returns (nothing to sync): 0, or -EIO after which the
 * journal has failed stop (C15: never retried, every later append and sync fails).  The caller owns
 * R until CB. */
struct journal_sync_req {
    void (*cb)(struct journal_sync_req *r, int err);
    void *data;
    uint64_t target;                 /* private */
    struct journal_sync_req *next;   /* private */
};
void journal_sync(struct journal *j, struct journal_sync_req *r);
/* The same, blocking, on the calling thread (tests, tools). */
int journal_sync_now(struct journal *j);

/* Close the files.  The journal must have no sync job running (free the
 * task queue first, which delivers every completion). */
void journal_close(struct journal *j);
/* Close and delete every segment and the directory: the volume is clean. */
int journal_destroy(struct journal *j);

#endif
