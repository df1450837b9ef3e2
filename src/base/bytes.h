/* bytes.h: bounded cursors for every byte layout blockd reads or writes:
 * the wire codec, the Raft message codec, the index command codec, the NBD
 * protocol (big-endian: the br_be / bw_be calls) and every on-disk format.
 *
 * The idiom (one for every format): the format's header gives an offset
 * table (OFFSET SIZE FIELD), and its encoder and decoder are a straight
 * list of cursor calls in that order, so the code reads as the table does;
 * reserved bytes are written with bw_zeros and checked with br_zeros; a
 * golden-bytes unit test pins each layout (a fixed struct <-> a fixed hex
 * string), so a layout change fails a test until the version and the
 * table say so.
 *
 * Both cursors are sticky: after the first overrun every later call is a
 * no-op that returns zero or NULL, so an encoder or decoder is a straight
 * list of field calls followed by one check of `err` (-EMSGSIZE for a
 * writer that ran out of room, -EPROTO for a reader that ran out of
 * input).  Nothing here allocates.  Lengths read from input are never
 * trusted: br_take() checks them against what is left.
 *
 * Under the cursors, bytes_put_* / bytes_get_* store and load one integer
 * at a pointer, little- or big-endian, never by casting (alignment and
 * host byte order do not matter).  They do no bounds checking: outside
 * the cursors they are for a value inside bytes already checked, such as
 * a test patching one field of an encoded buffer.
 *
 * Names: bytes_ for the primitives, bw_ (writer) and br_ (reader) for the
 * cursors. */
#ifndef BD_BYTES_H
#define BD_BYTES_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- primitives ----------------------------------------------------------- */

static inline void bytes_put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void bytes_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void bytes_put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t bytes_get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t bytes_get_le32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static inline uint64_t bytes_get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static inline void bytes_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void bytes_put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}
static inline void bytes_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}
static inline uint16_t bytes_get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t bytes_get_be32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = (v << 8) | p[i];
    return v;
}
static inline uint64_t bytes_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

/* ---- cursors ----------------------------------------------------------------
 * The field calls test the sticky `err`, not the pointer bw_take/br_take
 * returned: a NULL test on it lets GCC 12 imagine a NULL caller buffer and
 * warn (-Wstringop-overflow) about the fields after it once the capacity
 * is a constant, as it is for every fixed-size header. */

struct bytes_w {
    uint8_t *p;    /* next byte to write */
    size_t left;   /* room left */
    size_t used;   /* bytes written so far */
    int err;       /* 0, or -EMSGSIZE after an overrun */
};

struct bytes_r {
    const uint8_t *p; /* next byte to read */
    size_t left;      /* bytes left */
    size_t used;      /* bytes read so far (the offset of p) */
    int err;          /* 0, or -EPROTO after an overrun or br_fail */
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
    if (!w->err) *p = v;
}
static inline void bw_u16(struct bytes_w *w, uint16_t v)
{
    uint8_t *p = bw_take(w, 2);
    if (!w->err) bytes_put_le16(p, v);
}
static inline void bw_u32(struct bytes_w *w, uint32_t v)
{
    uint8_t *p = bw_take(w, 4);
    if (!w->err) bytes_put_le32(p, v);
}
static inline void bw_u64(struct bytes_w *w, uint64_t v)
{
    uint8_t *p = bw_take(w, 8);
    if (!w->err) bytes_put_le64(p, v);
}
static inline void bw_mem(struct bytes_w *w, const void *src, size_t n)
{
    uint8_t *p = bw_take(w, n);
    if (!w->err && n) memcpy(p, src, n);
}
/* N reserved (zero) bytes. */
static inline void bw_zeros(struct bytes_w *w, size_t n)
{
    uint8_t *p = bw_take(w, n);
    if (!w->err && n) memset(p, 0, n);
}
static inline void bw_be16(struct bytes_w *w, uint16_t v)
{
    uint8_t *p = bw_take(w, 2);
    if (!w->err) bytes_put_be16(p, v);
}
static inline void bw_be32(struct bytes_w *w, uint32_t v)
{
    uint8_t *p = bw_take(w, 4);
    if (!w->err) bytes_put_be32(p, v);
}
static inline void bw_be64(struct bytes_w *w, uint64_t v)
{
    uint8_t *p = bw_take(w, 8);
    if (!w->err) bytes_put_be64(p, v);
}

static inline void br_init(struct bytes_r *r, const uint8_t *buf, size_t len)
{
    r->p = buf;
    r->left = len;
    r->used = 0;
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
    r->used += n;
    return p;
}

static inline uint8_t br_u8(struct bytes_r *r)
{
    const uint8_t *p = br_take(r, 1);
    return r->err ? 0 : *p;
}
static inline uint16_t br_u16(struct bytes_r *r)
{
    const uint8_t *p = br_take(r, 2);
    return r->err ? 0 : bytes_get_le16(p);
}
static inline uint32_t br_u32(struct bytes_r *r)
{
    const uint8_t *p = br_take(r, 4);
    return r->err ? 0 : bytes_get_le32(p);
}
static inline uint64_t br_u64(struct bytes_r *r)
{
    const uint8_t *p = br_take(r, 8);
    return r->err ? 0 : bytes_get_le64(p);
}
static inline uint16_t br_be16(struct bytes_r *r)
{
    const uint8_t *p = br_take(r, 2);
    return r->err ? 0 : bytes_get_be16(p);
}
static inline uint32_t br_be32(struct bytes_r *r)
{
    const uint8_t *p = br_take(r, 4);
    return r->err ? 0 : bytes_get_be32(p);
}
static inline uint64_t br_be64(struct bytes_r *r)
{
    const uint8_t *p = br_take(r, 8);
    return r->err ? 0 : bytes_get_be64(p);
}
static inline void br_mem(struct bytes_r *r, void *dst, size_t n)
{
    const uint8_t *p = br_take(r, n);
    if (!r->err && n) memcpy(dst, p, n);
    else if (n) memset(dst, 0, n);
}
static inline void br_skip(struct bytes_r *r, size_t n)
{
    (void)br_take(r, n);
}
/* N reserved bytes: the input is invalid unless they are all zero. */
static inline void br_zeros(struct bytes_r *r, size_t n)
{
    const uint8_t *p = br_take(r, n);
    for (size_t i = 0; !r->err && i < n; i++)
        if (p[i]) {
            r->err = -EPROTO;
            return;
        }
}
/* Mark the input invalid (a field out of range). */
static inline void br_fail(struct bytes_r *r)
{
    if (!r->err) r->err = -EPROTO;
}

#endif
