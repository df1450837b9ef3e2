/* bsindex.h: the blob store's in-memory lookup table, blob id -> entry.
 *
 * Rebuilt from the segments at every start (segments are the truth); it
 * lives on the reactor thread only.  One entry per blob id ever seen,
 * including deleted ones (state DEAD keeps the tombstone's location, so a
 * deleted id is never reused and compaction knows which tombstones to
 * keep).
 *
 * Entries live in one array addressed by index and a power-of-two table of
 * 32-bit slots with linear probing points into it; at 1 million blobs
 * that is about 64 MB of entries and 8 MB of slots.  Pointers returned by
 * bsindex_get/bsindex_add are valid only until the next bsindex_add or
 * bsindex_remove (the entry array may move): look entries up again after
 * any call that may insert. */
#ifndef BD_BSINDEX_H
#define BD_BSINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct blobstore_seg;

enum bsindex_state {
    BSINDEX_FREE = 0,    /* unused slot of the entry array */
    BSINDEX_PENDING = 1, /* first put queued or written, not yet durable; not served */
    BSINDEX_LIVE = 2,    /* durable and served */
    BSINDEX_BAD = 3,     /* failed a checksum; not served; a put of the same bytes heals it */
    BSINDEX_DEAD = 4,    /* deleted (tombstone queued or durable); never served, never reused */
};

struct bsindex_ent {
    uint64_t blob_id;
    uint64_t off;          /* record offset in seg (the tombstone's when DEAD) */
    uint64_t seq;          /* that record's sequence number */
    uint64_t csum;         /* XXH3-64 of the blob (not meaningful when DEAD) */
    struct blobstore_seg *seg;    /* segment of the record; NULL while PENDING, or BAD
                            * with no readable copy left, or DEAD before the
                            * tombstone is durable */
    void *pending;         /* the queued write that will settle this entry */
    uint32_t partition;
    uint32_t raw_len;
    uint32_t stored_len;
    uint16_t flags;        /* SEG_REC_F_* of the record */
    uint8_t state;         /* enum bsindex_state */
    uint8_t listed;        /* id is in its partition's list (see blobstore.c) */
};

struct bsindex {
    struct bsindex_ent *ents;   /* entry array; BSINDEX_FREE entries chain through off */
    uint32_t n_ents;       /* used prefix of ents (free ones included) */
    uint32_t cap_ents;
    uint32_t free_head;    /* first free entry + 1, 0 if none */
    uint32_t *slots;       /* entry index + 1, 0 empty */
    uint32_t n_slots;      /* a power of two */
    uint32_t count;        /* entries in use */
};

/* 0 or -ENOMEM. */
int bsindex_init(struct bsindex *ix);
void bsindex_fini(struct bsindex *ix);
/* The entry for BLOB_ID, or NULL. */
struct bsindex_ent *bsindex_get(struct bsindex *ix, uint64_t blob_id);
/* A new, zeroed entry for BLOB_ID (which must not be present), or NULL on
 * ENOMEM or if the index is full (2^31 entries). */
struct bsindex_ent *bsindex_add(struct bsindex *ix, uint64_t blob_id);
/* Forget BLOB_ID (no-op if absent). */
void bsindex_remove(struct bsindex *ix, uint64_t blob_id);
/* Iterate: *POS starts at 0; returns the next entry in use, or NULL. */
struct bsindex_ent *bsindex_next(struct bsindex *ix, uint32_t *pos);

#endif
