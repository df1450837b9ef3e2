/* qos.c: the QoS limit set (see qos.h): field names and ranges, the
 * effective limits of a volume, and the one encoding every layer shares.
 *
 * Fields are addressed by their QOS_SET_* bit everywhere (the admin API's
 * parser, the checks, the effective merge), so adding a field is one row
 * in `fields` below plus its place in struct qos_limits and the encoding.
 *
 * Rejected: one struct per layer (an index record's QoS, a command's, a
 * wire answer's).  They would say the same thing three times and drift;
 * the agent and the proxy would each have to agree on the defaults. */
#include "base/qos.h"
#include "base/bd.h"

#include <stdio.h>
#include <string.h>

enum unit { U_IOPS, U_BYTES, U_SECONDS, U_IOSIZE };

static const struct {
    const char *name;
    enum unit unit;
} fields[QOS_N_FIELDS] = {
    {"iops", U_IOPS},          {"read_iops", U_IOPS},         {"write_iops", U_IOPS},
    {"bps", U_BYTES},          {"read_bps", U_BYTES},         {"write_bps", U_BYTES},
    {"iops_burst", U_IOPS},    {"read_iops_burst", U_IOPS},   {"write_iops_burst", U_IOPS},
    {"bps_burst", U_BYTES},    {"read_bps_burst", U_BYTES},   {"write_bps_burst", U_BYTES},
    {"burst_seconds", U_SECONDS}, {"io_size", U_IOSIZE},
};

/* The index of bit B (exactly one bit of QOS_SET_ALL), or -1. */
static int field_index(uint32_t b)
{
    if (!b || (b & (b - 1)) || !(b & QOS_SET_ALL)) return -1;
    return __builtin_ctz(b);
}

const char *qos_field_name(uint32_t bit)
{
    int i = field_index(bit);
    return i < 0 ? NULL : fields[i].name;
}

uint32_t qos_field_bit(const char *name)
{
    for (int i = 0; i < QOS_N_FIELDS; i++)
        if (strcmp(fields[i].name, name) == 0) return 1u << i;
    return 0;
}

uint64_t qos_field_get(const struct qos_limits *l, uint32_t bit)
{
    int i = field_index(bit);
    if (i < 0) return 0;
    if (i < QOS_N_KINDS) return l->limit[i];
    if (i < 2 * QOS_N_KINDS) return l->burst[i - QOS_N_KINDS];
    return bit == QOS_SET_BURST_SECONDS ? l->burst_seconds : l->io_size;
}

void qos_field_set(struct qos_limits *l, uint32_t bit, uint64_t v)
{
    int i = field_index(bit);
    if (i < 0) return;
    if (i < QOS_N_KINDS) l->limit[i] = v;
    else if (i < 2 * QOS_N_KINDS) l->burst[i - QOS_N_KINDS] = v;
    else if (bit == QOS_SET_BURST_SECONDS) l->burst_seconds = (uint32_t)v;
    else l->io_size = (uint32_t)v;
    l->set |= bit;
}

int qos_field_check(uint32_t bit, uint64_t v, char *why, size_t whylen)
{
    int i = field_index(bit);
    if (i < 0) {
        snprintf(why, whylen, "unknown field");
        return -EINVAL;
    }
    switch (fields[i].unit) {
    case U_IOPS:
        if (v <= QOS_MAX_IOPS) return 0;
        snprintf(why, whylen, "0 (none) or 1..%llu I/Os per second",
                 (unsigned long long)QOS_MAX_IOPS);
        return -EINVAL;
    case U_BYTES:
        if (v == 0 || (v >= QOS_MIN_BPS && v <= QOS_MAX_BPS)) return 0;
        snprintf(why, whylen, "0 (none) or %llu..%llu bytes per second (1T)",
                 (unsigned long long)QOS_MIN_BPS, (unsigned long long)QOS_MAX_BPS);
        return -EINVAL;
    case U_SECONDS:
        if (v >= 1 && v <= QOS_MAX_BURST_SECONDS) return 0;
        snprintf(why, whylen, "1..%u seconds", QOS_MAX_BURST_SECONDS);
        return -EINVAL;
    case U_IOSIZE:
        if (v >= QOS_MIN_IO_SIZE && v <= QOS_MAX_IO_SIZE && v % QOS_MIN_IO_SIZE == 0) return 0;
        snprintf(why, whylen, "a multiple of %u from %u to %u bytes", QOS_MIN_IO_SIZE,
                 QOS_MIN_IO_SIZE, QOS_MAX_IO_SIZE);
        return -EINVAL;
    }
    return -EINVAL;
}

int qos_check(const struct qos_limits *l, uint32_t *bad, char *why, size_t whylen)
{
    if (l->set & ~QOS_SET_ALL) {
        *bad = 0;
        snprintf(why, whylen, "unknown field");
        return -EINVAL;
    }
    for (uint32_t b = 1; b & QOS_SET_ALL; b <<= 1) {
        if (!(l->set & b)) continue;
        if (qos_field_check(b, qos_field_get(l, b), why, whylen) < 0) {
            *bad = b;
            return -EINVAL;
        }
    }
    /* A burst given beside its limit must exceed it (or be 0: none); a
     * burst alone may rest on a profile's limit, checked when combined. */
    for (int k = 0; k < QOS_N_KINDS; k++) {
        uint32_t lb = QOS_SET_LIMIT(k), bb = QOS_SET_BURST(k);
        if ((l->set & lb) && (l->set & bb) && l->burst[k] && l->burst[k] <= l->limit[k]) {
            *bad = bb;
            snprintf(why, whylen, "0 (none) or above %s (%llu)", fields[k].name,
                     (unsigned long long)l->limit[k]);
            return -EINVAL;
        }
        if ((l->set & lb) && (l->set & bb) && l->burst[k] && !l->limit[k]) {
            *bad = bb;
            snprintf(why, whylen, "0: a burst needs %s", fields[k].name);
            return -EINVAL;
        }
    }
    return 0;
}

void qos_effective(const struct qos_limits *own, const struct qos_limits *base,
                   struct qos_limits *out)
{
    memset(out, 0, sizeof(*out));
    out->burst_seconds = QOS_DEFAULT_BURST_SECONDS;
    out->io_size = QOS_DEFAULT_IO_SIZE;
    out->set = QOS_SET_ALL;
    for (uint32_t b = 1; b & QOS_SET_ALL; b <<= 1) {
        const struct qos_limits *from = own && (own->set & b)     ? own
                                        : base && (base->set & b) ? base
                                                                  : NULL;
        if (from) qos_field_set(out, b, qos_field_get(from, b));
    }
    for (int k = 0; k < QOS_N_KINDS; k++)
        if (out->burst[k] <= out->limit[k] || !out->limit[k]) out->burst[k] = 0;
}

void qos_merge(struct qos_limits *dst, const struct qos_limits *src, uint32_t clear)
{
    for (uint32_t b = 1; b & QOS_SET_ALL; b <<= 1)
        if (src->set & b) qos_field_set(dst, b, qos_field_get(src, b));
    for (uint32_t b = 1; b & QOS_SET_ALL; b <<= 1) {
        if (!(clear & b)) continue;
        qos_field_set(dst, b, 0);
        dst->set &= ~b;
    }
}

bool qos_limited(const struct qos_limits *eff)
{
    for (int k = 0; k < QOS_N_KINDS; k++)
        if (eff->limit[k]) return true;
    return false;
}

bool qos_equal(const struct qos_limits *a, const struct qos_limits *b)
{
    if (a->set != b->set) return false;
    for (uint32_t bit = 1; bit & QOS_SET_ALL; bit <<= 1)
        if (qos_field_get(a, bit) != qos_field_get(b, bit)) return false;
    return true;
}

void qos_put(struct bytes_w *w, const struct qos_limits *l)
{
    bw_u16(w, (uint16_t)l->set);
    for (int k = 0; k < QOS_N_KINDS; k++) bw_u64(w, l->limit[k]);
    for (int k = 0; k < QOS_N_KINDS; k++) bw_u64(w, l->burst[k]);
    bw_u32(w, l->burst_seconds);
    bw_u32(w, l->io_size);
}

void qos_get_valid(struct bytes_r *r, struct qos_limits *l)
{
    l->set = br_u16(r);
    for (int k = 0; k < QOS_N_KINDS; k++) l->limit[k] = br_u64(r);
    for (int k = 0; k < QOS_N_KINDS; k++) l->burst[k] = br_u64(r);
    l->burst_seconds = br_u32(r);
    l->io_size = br_u32(r);
    if (r->err) return;
    uint32_t bad;
    char why[8];
    if (qos_check(l, &bad, why, sizeof(why)) < 0) {
        br_fail(r);
        return;
    }
    for (uint32_t b = 1; b & QOS_SET_ALL; b <<= 1)
        if (!(l->set & b) && qos_field_get(l, b)) br_fail(r);
}
