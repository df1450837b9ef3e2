/* proxy_copy.h: copy ranges of existing blobs, or of volume views, into
 * one new blob on three blob servers (the engine under the blob rewrite
 * and a clone's flatten; see proxy_copy.c).
 *
 * It reads and writes blobs only: what the new bytes are to mean is the
 * caller's index command, proposed once the callback says they are
 * durable.  Calls down only (proxy_mgmt's lease, proxy_blobs, proxy_index,
 * proxy_plan).  Reactor thread only. */
#ifndef BD_PROXY_COPY_H
#define BD_PROXY_COPY_H

#include <stdbool.h>
#include <stdint.h>

#include "roles/proxy/proxy_blobs.h"
#include "store/index/index.h"

struct proxy;

/* One range to copy: bytes [off, off + len) of blob BLOB_ID (in
 * PARTITION), to land at DST_OFF of the new blob.  FAILED is set when no
 * replica gave verified bytes: that range of the new blob is zeroes, and
 * the caller must not point anything at it. */
struct proxy_copy_src {
    uint64_t blob_id;
    uint32_t partition;
    uint32_t off;
    uint32_t len;
    uint32_t dst_off;
    bool failed;
};

/* A copy.  The caller owns it, and SRC, until CB has run (exactly once,
 * never inside proxy_copy_start, and only if that returned 0).  ERR 0: the new blob (BLOB_ID, PARTITION,
 * LEN bytes, CSUM its XXH3-64) is durable on its three servers, with the
 * ranges not FAILED in place; -EIO if every range failed, -EAGAIN if no
 * partition had three servers up or no blob id was leased, -ENOSPC, or the
 * last put's error. */
struct proxy_copy {
    void (*cb)(struct proxy_copy *c, int err);
    void *data;
    /* inputs */
    struct proxy_copy_src *src;
    uint32_t n;
    uint32_t len;              /* the new blob's length: every dst range fits */
    const uint8_t *bytes;      /* instead of SRC (N 0): put these LEN bytes
                                  (copied at start) */
    /* outputs */
    uint64_t blob_id;
    uint32_t partition;
    uint64_t csum;
    uint32_t n_failed;
    const char *why;           /* with -EAGAIN: what was missing or failed (static text) */
    /* private */
    struct proxy *p;
    uint8_t *buf;
    struct proxy_blobs_get *gets;
    uint32_t next, in_flight;
    int tries;
    uint32_t avoid;            /* the partition the last put failed on */
    struct proxy_blobs_put put;
};

/* Read every range (at most a few at a time), or take DATA, then put the
 * new blob.  0 (C is kept until its callback), -EINVAL (neither ranges
 * nor data, or LEN 0) or -ENOMEM; on an error the callback never runs. */
int proxy_copy_start(struct proxy *p, struct proxy_copy *c);

/* An open partition for a new blob, other than AVOID, copied into *OUT
 * (the view may be rebuilt meanwhile); false if none.  The same choice a
 * client write makes: proxy_plan_place over proxy_view's open partitions,
 * weighted by the members' free space. */
bool proxy_copy_place(struct proxy *p, uint32_t avoid, struct index_part *out);

#endif
