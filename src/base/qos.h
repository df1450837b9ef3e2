/* qos.h: a volume's QoS limit set (issue 13), as the index stores it, the
 * index commands and the wire carry it, the admin API names its fields and
 * the agent enforces it.  Pure: no runtime, no allocation.
 *
 * Six limits, each per second and each with an optional burst:
 *
 *   iops, read_iops, write_iops     I/Os; an I/O longer than io_size counts
 *                                   as ceil(len / io_size) (EBS counts 256
 *                                   KiB as one on SSD volumes); TRIM and
 *                                   WRITE_ZEROES count as one write I/O
 *                                   whatever their length, FLUSH as none
 *   bps, read_bps, write_bps        bytes of READ and WRITE payload
 *
 * A limit of 0 is none.  A burst is a peak rate (Ceph's rbd_qos_*_burst):
 * a volume that stayed below its limit saves credit, up to enough to run
 * at the burst rate for burst_seconds, and spends it before it is held to
 * the limit; a burst of 0 (or one not above its limit) is none.
 *
 * Sets and overrides.  `set` says which fields a limit set gives: a
 * profile (a storage class) and a volume's own overrides give only some;
 * the effective limits of a volume are, field by field, its own value if
 * set, else its profile's, else the default (no limit, no burst,
 * burst_seconds 1, io_size 256 KiB): qos_effective().
 *
 * Encoding (QOS_ENC_LEN bytes, little-endian, inside index records, index
 * commands and VOL_QOS answers), written and read with the bytes.h cursors
 * in this order:
 *
 *  OFFSET SIZE FIELD
 *    0     2   set            QOS_SET_* bits; a field not set is 0
 *    2    48   limit[6]       8 each, in enum qos_kind order
 *   50    48   burst[6]       8 each
 *   98     4   burst_seconds
 *  102     4   io_size        (106 bytes: QOS_ENC_LEN)
 *
 * The decoder is the validator (qos_get_valid): unknown bits, a field not
 * set but non-zero, a value outside its range (qos_field_check) are
 * refused.  Names start qos_ / QOS_. */
#ifndef BD_QOS_H
#define BD_QOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/bytes.h"

enum qos_kind {
    QOS_IOPS = 0,
    QOS_READ_IOPS,
    QOS_WRITE_IOPS,
    QOS_BPS,
    QOS_READ_BPS,
    QOS_WRITE_BPS,
    QOS_N_KINDS
};

#define QOS_SET_LIMIT(k) (1u << (k))
#define QOS_SET_BURST(k) (1u << (QOS_N_KINDS + (k)))
#define QOS_SET_BURST_SECONDS (1u << (2 * QOS_N_KINDS))
#define QOS_SET_IO_SIZE (1u << (2 * QOS_N_KINDS + 1))
#define QOS_N_FIELDS (2 * QOS_N_KINDS + 2)
#define QOS_SET_ALL ((1u << QOS_N_FIELDS) - 1)

/* Ranges: absurd values are refused rather than clamped. */
#define QOS_MAX_IOPS 10000000ull              /* 10 M I/Os per second */
#define QOS_MIN_BPS 4096ull                   /* below one block a second means nothing */
#define QOS_MAX_BPS (1ull << 40)              /* 1 TiB per second */
#define QOS_MAX_BURST_SECONDS 3600u
#define QOS_MIN_IO_SIZE 4096u
#define QOS_MAX_IO_SIZE (32u << 20)           /* the largest NBD payload */
#define QOS_DEFAULT_BURST_SECONDS 1u
#define QOS_DEFAULT_IO_SIZE (256u << 10)

#define QOS_ENC_LEN 106u

struct qos_limits {
    uint32_t set;                    /* QOS_SET_* of the fields given */
    uint64_t limit[QOS_N_KINDS];     /* per second; 0: none */
    uint64_t burst[QOS_N_KINDS];     /* peak per second; 0: none */
    uint32_t burst_seconds;          /* how long saved credit lasts at the burst rate */
    uint32_t io_size;                /* an I/O counts once per this many bytes */
};

/* Is kind K counted in bytes (bps, read_bps, write_bps)? */
static inline bool qos_kind_bytes(enum qos_kind k)
{
    return k >= QOS_BPS;
}

/* The field of bit B (one QOS_SET_* bit) in the admin API and the JSON:
 * "iops", "read_iops", ..., "iops_burst", ..., "burst_seconds",
 * "io_size"; NULL for an unknown bit.  qos_field_bit is the inverse (0 for
 * an unknown name). */
const char *qos_field_name(uint32_t bit);
uint32_t qos_field_bit(const char *name);
/* Field bit B's value in L, and setting it (marks it set). */
uint64_t qos_field_get(const struct qos_limits *l, uint32_t bit);
void qos_field_set(struct qos_limits *l, uint32_t bit, uint64_t v);

/* Is V allowed for field bit B?  0, or -EINVAL with WHY (WHYLEN bytes)
 * saying what is expected ("0 (none) or 1..10000000 I/Os per second"). */
int qos_field_check(uint32_t bit, uint64_t v, char *why, size_t whylen);
/* Check every field L sets, and that each burst L sets with its limit is
 * not below it.  0, or -EINVAL with *BAD the first bad field's bit. */
int qos_check(const struct qos_limits *l, uint32_t *bad, char *why, size_t whylen);

/* Field by field: OWN's value where OWN sets it, else BASE's where BASE
 * sets it (BASE may be NULL), else the default; a burst not above its
 * limit becomes 0.  The result sets every field. */
void qos_effective(const struct qos_limits *own, const struct qos_limits *base,
                   struct qos_limits *out);
/* Assign the fields SRC sets into DST, then unset the fields of CLEAR. */
void qos_merge(struct qos_limits *dst, const struct qos_limits *src, uint32_t clear);
/* Any limit at all (a non-zero limit[k])? */
bool qos_limited(const struct qos_limits *eff);
/* Do A and B set the same fields to the same values? */
bool qos_equal(const struct qos_limits *a, const struct qos_limits *b);

/* The encoding above. */
void qos_put(struct bytes_w *w, const struct qos_limits *l);
/* Read and validate (see above); a bad value fails the cursor. */
void qos_get_valid(struct bytes_r *r, struct qos_limits *l);

#endif
