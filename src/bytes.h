/* bytes.h: bounded little-endian cursors for the binary codecs (the wire
 * codec, the Raft message codec, the index command codec).
 *
 * Both cursors are sticky: after the first overrun every later call is a
 * no-op that returns zero or NULL, so an encoder or decoder is a straight
 * list of field calls followed by one check of `err` (-EMSGSIZE for a
 * writer that ran out of room, -EPROTO for a reader that ran out of
 * input).  Nothing here allocates.  Lengths read from input are never
 * trusted: br_take() checks them against what is left. */
#ifndef BD_BYTES_H
#define BD_BYTES_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util.h"

struct bytes_w {
    uint8_t *p;    /* next byte to write */
    size_t left;   /* room left */
    size_t used;   /* bytes written so far */
    int err;       /* 0, or -EMSGSIZE after an overrun */
};

struct bytes_r {
    const uint8_t *p; /* next byte to read */
    size_t left;      /* bytes left */
    int err;          /* 0, or -EPROTO after an overrun or bw_fail */
};

static inline void bw_init(struct bytes_w *w, uint8_t *buf, size_t cap)
{
    w->p = buf;
    w->left = cap;
    w->used = 0;
    w->err = 0;
}

static inline uint8_t *bw_take(struct bytes_w *w, size_t n)
{
    if (w->err || w->left < n) {
        w->err = -EMSGSIZE;
        return NULL;
    }
    uint8_t *p = w->p;
    w->p += n;
    w->left -= n;
    w->used += n;
    return p;
}

static inline void bw_u8(struct bytes_w *w, uint8_t v)
{
    uint8_t *p = bw_take(w, 1);
    if (p) *p = v;
}
static inline void bw_u16(struct bytes_w *w, uint16_t v)
{
    uint8_t *p = bw_take(w, 2);
    if (p) util_put_le16(p, v);
}
static inline void bw_u32(struct bytes_w *w, uint32_t v)
{
    uint8_t *p = bw_take(w, 4);
    if (p) util_put_le32(p, v);
}
static inline void bw_u64(struct bytes_w *w, uint64_t v)
{
    uint8_t *p = bw_take(w, 8);
    if (p) util_put_le64(p, v);
}
static inline void bw_mem(struct bytes_w *w, const void *src, size_t n)
{
    uint8_t *p = bw_take(w, n);
    if (p && n) memcpy(p, src, n);
}

static inline void br_init(struct bytes_r *r, const uint8_t *buf, size_t len)
{
    r->p = buf;
    r->left = len;
    r->err = 0;
}

static inline const uint8_t *br_take(struct bytes_r *r, size_t n)
{
    if (r->err || r->left < n) {
        r->err = -EPROTO;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static inline uint8_t br_u8(struct bytes_r *r)
{
    const uint8_t *p = br_take(r, 1);
    return p ? *p : 0;
}
static inline uint16_t br_u16(struct bytes_r *r)
{
    const uint8_t *p = br_take(r, 2);
    return p ? util_get_le16(p) : 0;
}
static inline uint32_t br_u32(struct bytes_r *r)
{
    const uint8_t *p = br_take(r, 4);
    return p ? util_get_le32(p) : 0;
}
static inline uint64_t br_u64(struct bytes_r *r)
{
    const uint8_t *p = br_take(r, 8);
    return p ? util_get_le64(p) : 0;
}
/* Mark the input invalid (a field out of range). */
static inline void br_fail(struct bytes_r *r)
{
    if (!r->err) r->err = -EPROTO;
}

#endif
