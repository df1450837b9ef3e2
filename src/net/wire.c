/* wire.c: encode and decode every wire message, side by side (see wire.h).
 *
 * Two cursors (src/base/bytes.h) do all the byte work, the frame header
 * and the packed entries included: `struct bytes_w` writes little-endian
 * integers and strings into a caller buffer and remembers overflow;
 * `struct bytes_r` reads them and remembers underflow.  Both are sticky:
 * after the first error every later call is a no-op, so an encoder or
 * decoder is a straight list of field calls, in the order of the tables
 * in wire.h, followed by one check.  Each decoder ends with
 * dec_finish(), which fails unless the fields were consumed exactly up to
 * the payload: trailing bytes are an error, not padding.
 *
 * Counted arrays (list entries, map ranges, bad blobs) are validated in
 * the decoder (count * entry size == bytes left) and handed out as a
 * pointer into the body with an accessor, so decoding never allocates. */
#include "net/wire.h"
#include "base/bd.h"
#include "base/bytes.h"
#include "base/util.h"

#include <string.h>

/* ---- cursors ------------------------------------------------------------ */

/* The shared cursors (bytes.h) plus what is particular to wire bodies:
 * strings (u16 length), byte fields (u32 length), and a reader that stops
 * where the payload begins. */

static void put_str(struct bytes_w *e, struct wire_str s)
{
    if (s.len > WIRE_STR_MAX) {
        e->err = -EMSGSIZE;
        return;
    }
    bw_u16(e, s.len);
    bw_mem(e, s.ptr, s.len);
}
static void put_bytes(struct bytes_w *e, const void *b, uint32_t len)
{
    bw_u32(e, len);
    bw_mem(e, b, len);
}
static int enc_done(struct bytes_w *e)
{
    return e->err ? e->err : (int)e->used;
}

static void dec_init(struct bytes_r *d, const uint8_t *body, size_t len, size_t payload_len)
{
    br_init(d, body, payload_len > len ? 0 : len - payload_len);
    if (payload_len > len) d->err = -EPROTO;
}
static struct wire_str get_str(struct bytes_r *d)
{
    struct wire_str s = {NULL, 0};
    uint16_t len = br_u16(d);
    if (len > WIRE_STR_MAX) {
        br_fail(d);
        return s;
    }
    const uint8_t *p = br_take(d, len);
    if (p) {
        s.ptr = (const char *)p;
        s.len = len;
    }
    return s;
}
static const uint8_t *get_bytes(struct bytes_r *d, uint32_t *len)
{
    *len = br_u32(d);
    const uint8_t *p = br_take(d, *len);
    if (!p) *len = 0;
    return p;
}
/* The fields must end exactly where the payload begins. */
static int dec_finish(struct bytes_r *d)
{
    if (d->err) return d->err;
    return d->left == 0 ? 0 : -EPROTO;
}

struct wire_str wire_cstr(const char *s)
{
    struct wire_str w = {s, 0};
    size_t n = s ? strlen(s) : 0;
    w.len = (uint16_t)(n > WIRE_STR_MAX ? WIRE_STR_MAX + 1 : n);
    return w;
}

bool wire_str_copy(struct wire_str s, char *buf, size_t len)
{
    if (s.len >= len || (s.len && memchr(s.ptr, 0, s.len))) return false;
    if (s.len) memcpy(buf, s.ptr, s.len);
    buf[s.len] = 0;
    return true;
}

/* ---- header ------------------------------------------------------------- */

static uint32_t csum32(const void *p, size_t n)
{
    return (uint32_t)util_xxh3(p, n);
}

/* hdr_csum covers every byte before it. */
#define HDR_CSUM_OFF 36

void wire_encode_hdr(uint8_t out[WIRE_HDR_LEN], const struct wire_hdr *h, const void *fields,
                     size_t fields_len)
{
    struct bytes_w w;
    bw_init(&w, out, WIRE_HDR_LEN);
    bw_u32(&w, WIRE_MAGIC);
    bw_u16(&w, WIRE_VERSION);
    bw_u16(&w, h->type);
    bw_u16(&w, h->flags);
    bw_u16(&w, h->status);
    bw_u32(&w, h->len);
    bw_u64(&w, h->req_id);
    bw_u32(&w, h->payload_len);
    bw_u32(&w, csum32(fields, fields_len));
    bw_zeros(&w, 4);
    BD_NEVER(w.used != HDR_CSUM_OFF);
    bw_u32(&w, csum32(out, HDR_CSUM_OFF));
    BD_NEVER(w.err || w.left);
}

int wire_decode_hdr(const uint8_t in[WIRE_HDR_LEN], struct wire_hdr *h)
{
    struct bytes_r r;
    br_init(&r, in, WIRE_HDR_LEN);
    uint32_t magic = br_u32(&r);
    h->version = br_u16(&r);
    h->type = br_u16(&r);
    h->flags = br_u16(&r);
    h->status = br_u16(&r);
    h->len = br_u32(&r);
    h->req_id = br_u64(&r);
    h->payload_len = br_u32(&r);
    h->fields_csum = br_u32(&r);
    br_zeros(&r, 4);
    uint32_t hdr_csum = br_u32(&r);
    /* r.err can only mean nonzero reserved bytes (IN is exactly a header). */
    if (r.err || magic != WIRE_MAGIC || hdr_csum != csum32(in, HDR_CSUM_OFF)) return -EPROTO;
    if (h->version != WIRE_VERSION) return -EPROTO;
    if (h->flags & ~WIRE_F_KNOWN) return -EPROTO;
    if ((h->flags & WIRE_F_RESPONSE) && (h->flags & WIRE_F_ONEWAY)) return -EPROTO;
    if (h->len > WIRE_MAX_FRAME) return -EMSGSIZE;
    if (h->payload_len > h->len) return -EPROTO;
    if (h->len - h->payload_len > WIRE_MAX_FIELDS) return -EMSGSIZE;
    return 0;
}

int wire_check_fields(const struct wire_hdr *h, const uint8_t *body)
{
    return csum32(body, h->len - h->payload_len) == h->fields_csum ? 0 : -EPROTO;
}

/* ---- error body ---------------------------------------------------------- */

int wire_encode_error(uint8_t *buf, size_t cap, const struct wire_error *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->hint);
    struct wire_str s = m->msg;
    if (s.len > 512) s.len = 512; /* messages stay one short line */
    put_str(&e, s);
    return enc_done(&e);
}

int wire_decode_error(const uint8_t *body, size_t len, size_t payload_len, struct wire_error *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->hint = br_u64(&d);
    m->msg = get_str(&d);
    return dec_finish(&d);
}

/* ---- HELLO / PING -------------------------------------------------------- */

int wire_encode_hello_req(uint8_t *buf, size_t cap, const struct wire_hello_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->cluster_hash);
    bw_u64(&e, m->node_id);
    bw_u16(&e, m->role);
    bw_u64(&e, m->auth);
    put_str(&e, m->name);
    return enc_done(&e);
}
int wire_decode_hello_req(const uint8_t *body, size_t len, size_t payload_len,
                          struct wire_hello_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->cluster_hash = br_u64(&d);
    m->node_id = br_u64(&d);
    m->role = br_u16(&d);
    m->auth = br_u64(&d);
    m->name = get_str(&d);
    if (m->role < WIRE_ROLE_AGENT || m->role > WIRE_ROLE_CTL || m->name.len > 128) br_fail(&d);
    return dec_finish(&d);
}
int wire_encode_hello_resp(uint8_t *buf, size_t cap, const struct wire_hello_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->node_id);
    bw_u16(&e, m->role);
    return enc_done(&e);
}
int wire_decode_hello_resp(const uint8_t *body, size_t len, size_t payload_len,
                           struct wire_hello_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->node_id = br_u64(&d);
    m->role = br_u16(&d);
    if (m->role < WIRE_ROLE_AGENT || m->role > WIRE_ROLE_CTL) br_fail(&d);
    return dec_finish(&d);
}

int wire_encode_ping_req(uint8_t *buf, size_t cap, const struct wire_ping_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->stamp);
    return enc_done(&e);
}
int wire_decode_ping_req(const uint8_t *body, size_t len, size_t payload_len,
                         struct wire_ping_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->stamp = br_u64(&d);
    return dec_finish(&d);
}
int wire_encode_ping_resp(uint8_t *buf, size_t cap, const struct wire_ping_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->stamp);
    return enc_done(&e);
}
int wire_decode_ping_resp(const uint8_t *body, size_t len, size_t payload_len,
                          struct wire_ping_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->stamp = br_u64(&d);
    return dec_finish(&d);
}

int wire_encode_clock_req(uint8_t *buf, size_t cap, const struct wire_clock_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->wall_us);
    return enc_done(&e);
}
int wire_decode_clock_req(const uint8_t *body, size_t len, size_t payload_len,
                          struct wire_clock_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->wall_us = br_u64(&d);
    return dec_finish(&d);
}
int wire_encode_clock_resp(uint8_t *buf, size_t cap, const struct wire_clock_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->wall_us);
    return enc_done(&e);
}
int wire_decode_clock_resp(const uint8_t *body, size_t len, size_t payload_len,
                           struct wire_clock_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->wall_us = br_u64(&d);
    return dec_finish(&d);
}

/* ---- BLOB_PUT ------------------------------------------------------------ */

int wire_encode_blob_put_req(uint8_t *buf, size_t cap, const struct wire_blob_put_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->blob_id);
    bw_u32(&e, m->partition);
    bw_u32(&e, m->flags);
    bw_u64(&e, m->epoch);
    bw_u64(&e, m->csum);
    bw_u32(&e, m->data_len);
    return enc_done(&e);
}
int wire_decode_blob_put_req(const uint8_t *body, size_t len, size_t payload_len,
                             struct wire_blob_put_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->blob_id = br_u64(&d);
    m->partition = br_u32(&d);
    m->flags = br_u32(&d);
    m->epoch = br_u64(&d);
    m->csum = br_u64(&d);
    m->data_len = br_u32(&d);
    if (m->data_len != payload_len || m->blob_id == 0) br_fail(&d);
    if (m->flags & ~(uint32_t)WIRE_PUT_COMPRESSIBLE) br_fail(&d);
    m->data = body + (len - payload_len);
    return dec_finish(&d);
}
int wire_encode_blob_put_resp(uint8_t *buf, size_t cap, const struct wire_blob_put_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u32(&e, m->stored_len);
    return enc_done(&e);
}
int wire_decode_blob_put_resp(const uint8_t *body, size_t len, size_t payload_len,
                              struct wire_blob_put_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->stored_len = br_u32(&d);
    return dec_finish(&d);
}

/* ---- BLOB_GET ------------------------------------------------------------ */

int wire_encode_blob_get_req(uint8_t *buf, size_t cap, const struct wire_blob_get_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->blob_id);
    bw_u32(&e, m->partition);
    bw_u32(&e, m->off);
    bw_u32(&e, m->len);
    return enc_done(&e);
}
int wire_decode_blob_get_req(const uint8_t *body, size_t len, size_t payload_len,
                             struct wire_blob_get_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->blob_id = br_u64(&d);
    m->partition = br_u32(&d);
    m->off = br_u32(&d);
    m->len = br_u32(&d);
    if ((uint64_t)m->off + m->len > UINT32_MAX || payload_len != 0) br_fail(&d);
    return dec_finish(&d);
}
int wire_encode_blob_get_resp(uint8_t *buf, size_t cap, const struct wire_blob_get_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->csum);
    bw_u32(&e, m->blob_len);
    bw_u32(&e, m->data_len);
    return enc_done(&e);
}
int wire_decode_blob_get_resp(const uint8_t *body, size_t len, size_t payload_len,
                              struct wire_blob_get_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->csum = br_u64(&d);
    m->blob_len = br_u32(&d);
    m->data_len = br_u32(&d);
    if (m->data_len != payload_len || m->data_len > m->blob_len) br_fail(&d);
    m->data = body + (len - payload_len);
    return dec_finish(&d);
}

/* ---- BLOB_DELETE / BLOB_STAT --------------------------------------------- */

int wire_encode_blob_delete_req(uint8_t *buf, size_t cap, const struct wire_blob_delete_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->blob_id);
    bw_u32(&e, m->partition);
    return enc_done(&e);
}
int wire_decode_blob_delete_req(const uint8_t *body, size_t len, size_t payload_len,
                                struct wire_blob_delete_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->blob_id = br_u64(&d);
    m->partition = br_u32(&d);
    if (payload_len) br_fail(&d);
    return dec_finish(&d);
}
int wire_encode_blob_delete_resp(uint8_t *buf, size_t cap, const struct wire_blob_delete_resp *m)
{
    (void)buf;
    (void)cap;
    (void)m;
    return 0;
}
int wire_decode_blob_delete_resp(const uint8_t *body, size_t len, size_t payload_len,
                                 struct wire_blob_delete_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->unused = 0;
    return dec_finish(&d);
}

int wire_encode_blob_stat_req(uint8_t *buf, size_t cap, const struct wire_blob_stat_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->blob_id);
    return enc_done(&e);
}
int wire_decode_blob_stat_req(const uint8_t *body, size_t len, size_t payload_len,
                              struct wire_blob_stat_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->blob_id = br_u64(&d);
    return dec_finish(&d);
}
int wire_encode_blob_stat_resp(uint8_t *buf, size_t cap, const struct wire_blob_stat_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->blob_id);
    bw_u32(&e, m->partition);
    bw_u32(&e, m->flags);
    bw_u32(&e, m->len);
    bw_u32(&e, m->stored_len);
    bw_u64(&e, m->csum);
    return enc_done(&e);
}
int wire_decode_blob_stat_resp(const uint8_t *body, size_t len, size_t payload_len,
                               struct wire_blob_stat_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->blob_id = br_u64(&d);
    m->partition = br_u32(&d);
    m->flags = br_u32(&d);
    m->len = br_u32(&d);
    m->stored_len = br_u32(&d);
    m->csum = br_u64(&d);
    return dec_finish(&d);
}

/* ---- BLOB_LIST ----------------------------------------------------------- */

#define BLOB_ENTRY_LEN WIRE_BLOB_ENTRY_LEN /* the blob entry table in wire.h */

int wire_encode_blob_list_req(uint8_t *buf, size_t cap, const struct wire_blob_list_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u32(&e, m->partition);
    bw_u32(&e, m->max);
    bw_u64(&e, m->cursor);
    return enc_done(&e);
}
int wire_decode_blob_list_req(const uint8_t *body, size_t len, size_t payload_len,
                              struct wire_blob_list_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->partition = br_u32(&d);
    m->max = br_u32(&d);
    m->cursor = br_u64(&d);
    if (m->max == 0 || m->max > WIRE_LIST_MAX) br_fail(&d);
    return dec_finish(&d);
}
int wire_encode_blob_list_resp(uint8_t *buf, size_t cap, const struct wire_blob_list_resp *m)
{
    /* Encode side takes the packed entries as they will appear (see
     * wire_blob_list_pack); a decoded response re-encodes byte for byte. */
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->next_cursor);
    bw_u32(&e, m->n);
    if (m->n > WIRE_LIST_MAX) e.err = -EMSGSIZE;
    uint8_t *p = bw_take(&e, (size_t)m->n * BLOB_ENTRY_LEN);
    if (p && m->n) memcpy(p, m->entries, (size_t)m->n * BLOB_ENTRY_LEN);
    return enc_done(&e);
}
int wire_decode_blob_list_resp(const uint8_t *body, size_t len, size_t payload_len,
                               struct wire_blob_list_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->next_cursor = br_u64(&d);
    m->n = br_u32(&d);
    if (m->n > WIRE_LIST_MAX) br_fail(&d);
    m->entries = br_take(&d, (size_t)m->n * BLOB_ENTRY_LEN);
    return dec_finish(&d);
}
/* Entry I of a packed array of BLOB_ENTRY_LEN records (BLOB_LIST's answer
 * and BLOB_PULL carry the same). */
static void entry_at(const uint8_t *entries, uint32_t i, struct wire_blob_entry *out)
{
    struct bytes_r d;
    br_init(&d, entries + (size_t)i * BLOB_ENTRY_LEN, BLOB_ENTRY_LEN);
    out->blob_id = br_u64(&d);
    out->len = br_u32(&d);
    out->csum = br_u64(&d);
}
void wire_blob_list_entry(const struct wire_blob_list_resp *r, uint32_t i,
                          struct wire_blob_entry *out)
{
    entry_at(r->entries, i, out);
}
void wire_blob_list_pack(uint8_t *buf, const struct wire_blob_entry *entries, uint32_t n)
{
    struct bytes_w e;
    bw_init(&e, buf, (size_t)n * BLOB_ENTRY_LEN);
    for (uint32_t i = 0; i < n; i++) {
        bw_u64(&e, entries[i].blob_id);
        bw_u32(&e, entries[i].len);
        bw_u64(&e, entries[i].csum);
    }
    BD_NEVER(e.err || e.left);
}

/* ---- BLOB_PULL ------------------------------------------------------------ */

int wire_encode_blob_pull_req(uint8_t *buf, size_t cap, const struct wire_blob_pull_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u32(&e, m->partition);
    bw_u64(&e, m->epoch);
    bw_u64(&e, m->src_id);
    put_str(&e, m->src_addr);
    bw_u32(&e, m->n);
    if (m->n == 0 || m->n > WIRE_PULL_MAX) e.err = -EMSGSIZE;
    uint8_t *p = bw_take(&e, (size_t)m->n * BLOB_ENTRY_LEN);
    if (p && m->entries_in) wire_blob_list_pack(p, m->entries_in, m->n);
    else if (p) memcpy(p, m->entries, (size_t)m->n * BLOB_ENTRY_LEN);
    return enc_done(&e);
}
int wire_decode_blob_pull_req(const uint8_t *body, size_t len, size_t payload_len,
                              struct wire_blob_pull_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->partition = br_u32(&d);
    m->epoch = br_u64(&d);
    m->src_id = br_u64(&d);
    m->src_addr = get_str(&d);
    m->n = br_u32(&d);
    m->entries_in = NULL;
    if (m->n == 0 || m->n > WIRE_PULL_MAX || m->src_id == 0 || m->src_addr.len == 0 ||
        m->src_addr.len > 127)
        br_fail(&d);
    m->entries = br_take(&d, (size_t)m->n * BLOB_ENTRY_LEN);
    return dec_finish(&d);
}
void wire_blob_pull_entry(const struct wire_blob_pull_req *r, uint32_t i,
                          struct wire_blob_entry *out)
{
    entry_at(r->entries, i, out);
}
int wire_encode_blob_pull_resp(uint8_t *buf, size_t cap, const struct wire_blob_pull_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u32(&e, m->n);
    if (m->n > WIRE_PULL_MAX) e.err = -EMSGSIZE;
    bw_mem(&e, m->status, m->n);
    return enc_done(&e);
}
int wire_decode_blob_pull_resp(const uint8_t *body, size_t len, size_t payload_len,
                               struct wire_blob_pull_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->n = br_u32(&d);
    if (m->n > WIRE_PULL_MAX) br_fail(&d);
    m->status = br_take(&d, m->n);
    return dec_finish(&d);
}

/* ---- BLOB_REPORT --------------------------------------------------------- */

#define BAD_ENTRY_LEN 12 /* the bad blob table in wire.h */

int wire_encode_blob_report_req(uint8_t *buf, size_t cap, const struct wire_blob_report_req *m)
{
    (void)buf;
    (void)cap;
    (void)m;
    return 0;
}
int wire_decode_blob_report_req(const uint8_t *body, size_t len, size_t payload_len,
                                struct wire_blob_report_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->unused = 0;
    return dec_finish(&d);
}
int wire_encode_blob_report_resp(uint8_t *buf, size_t cap, const struct wire_blob_report_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->node_id);
    bw_u64(&e, m->capacity);
    bw_u64(&e, m->used);
    bw_u64(&e, m->live_bytes);
    bw_u64(&e, m->dead_bytes);
    bw_u64(&e, m->blobs);
    bw_u64(&e, m->bad_blobs);
    bw_u64(&e, m->scrub_passes);
    bw_u32(&e, m->n_bad);
    if (m->n_bad > WIRE_BAD_MAX) e.err = -EMSGSIZE;
    for (uint32_t i = 0; i < m->n_bad && !e.err; i++) {
        if (m->bad_in) {
            bw_u64(&e, m->bad_in[i].blob_id);
            bw_u32(&e, m->bad_in[i].partition);
        } else {
            uint8_t *p = bw_take(&e, BAD_ENTRY_LEN);
            if (p) memcpy(p, m->bad + (size_t)i * BAD_ENTRY_LEN, BAD_ENTRY_LEN);
        }
    }
    return enc_done(&e);
}
int wire_decode_blob_report_resp(const uint8_t *body, size_t len, size_t payload_len,
                                 struct wire_blob_report_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->node_id = br_u64(&d);
    m->capacity = br_u64(&d);
    m->used = br_u64(&d);
    m->live_bytes = br_u64(&d);
    m->dead_bytes = br_u64(&d);
    m->blobs = br_u64(&d);
    m->bad_blobs = br_u64(&d);
    m->scrub_passes = br_u64(&d);
    m->n_bad = br_u32(&d);
    m->bad_in = NULL;
    if (m->n_bad > WIRE_BAD_MAX) br_fail(&d);
    m->bad = br_take(&d, (size_t)m->n_bad * BAD_ENTRY_LEN);
    return dec_finish(&d);
}
void wire_blob_report_bad(const struct wire_blob_report_resp *r, uint32_t i,
                          struct wire_bad_blob *out)
{
    if (r->bad_in) {
        *out = r->bad_in[i];
        return;
    }
    struct bytes_r d;
    br_init(&d, r->bad + (size_t)i * BAD_ENTRY_LEN, BAD_ENTRY_LEN);
    out->blob_id = br_u64(&d);
    out->partition = br_u32(&d);
}

/* ---- NODE_HEARTBEAT ------------------------------------------------------ */

int wire_encode_node_heartbeat_req(uint8_t *buf, size_t cap,
                                   const struct wire_node_heartbeat_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->node_id);
    put_str(&e, m->addr);
    bw_u64(&e, m->capacity);
    bw_u64(&e, m->used);
    bw_u64(&e, m->blobs);
    bw_u32(&e, m->n_bad);
    bw_u32(&e, m->flags);
    put_str(&e, m->zone);
    put_str(&e, m->rack);
    put_str(&e, m->host);
    return enc_done(&e);
}
/* A label: up to WIRE_LABEL_MAX of [A-Za-z0-9._-] (the config's rule;
 * labels become log fields and JSON), empty when not set. */
static bool label_ok(struct wire_str s)
{
    if (s.len > WIRE_LABEL_MAX) return false;
    for (unsigned i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}
int wire_decode_node_heartbeat_req(const uint8_t *body, size_t len, size_t payload_len,
                                   struct wire_node_heartbeat_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->node_id = br_u64(&d);
    m->addr = get_str(&d);
    m->capacity = br_u64(&d);
    m->used = br_u64(&d);
    m->blobs = br_u64(&d);
    m->n_bad = br_u32(&d);
    m->flags = br_u32(&d);
    m->zone = get_str(&d);
    m->rack = get_str(&d);
    m->host = get_str(&d);
    if (m->node_id == 0 || m->addr.len == 0 || m->addr.len > 127 || !label_ok(m->zone) ||
        !label_ok(m->rack) || !label_ok(m->host))
        br_fail(&d);
    return dec_finish(&d);
}
int wire_encode_node_heartbeat_resp(uint8_t *buf, size_t cap,
                                    const struct wire_node_heartbeat_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->leader_id);
    put_str(&e, m->proxies);
    return enc_done(&e);
}
int wire_decode_node_heartbeat_resp(const uint8_t *body, size_t len, size_t payload_len,
                                    struct wire_node_heartbeat_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->leader_id = br_u64(&d);
    m->proxies = get_str(&d);
    return dec_finish(&d);
}

/* ---- RAFT / PROPOSE ------------------------------------------------------ */

int wire_encode_raft_req(uint8_t *buf, size_t cap, const struct wire_raft_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->cluster_hash);
    bw_u64(&e, m->from_id);
    bw_u64(&e, m->to_id);
    bw_u32(&e, m->part);
    bw_u32(&e, m->parts);
    bw_u64(&e, m->total_len);
    put_bytes(&e, m->chunk, m->chunk_len);
    return enc_done(&e);
}
int wire_decode_raft_req(const uint8_t *body, size_t len, size_t payload_len,
                         struct wire_raft_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->cluster_hash = br_u64(&d);
    m->from_id = br_u64(&d);
    m->to_id = br_u64(&d);
    m->part = br_u32(&d);
    m->parts = br_u32(&d);
    m->total_len = br_u64(&d);
    m->chunk = get_bytes(&d, &m->chunk_len);
    if (m->parts == 0 || m->part >= m->parts || m->chunk_len > m->total_len || payload_len)
        br_fail(&d);
    return dec_finish(&d);
}
int wire_encode_raft_resp(uint8_t *buf, size_t cap, const struct wire_raft_resp *m)
{
    (void)buf;
    (void)cap;
    (void)m;
    return 0;
}
int wire_decode_raft_resp(const uint8_t *body, size_t len, size_t payload_len,
                          struct wire_raft_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->unused = 0;
    return dec_finish(&d);
}

int wire_encode_propose_req(uint8_t *buf, size_t cap, const struct wire_propose_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->from_id);
    put_bytes(&e, m->cmd, m->cmd_len);
    return enc_done(&e);
}
int wire_decode_propose_req(const uint8_t *body, size_t len, size_t payload_len,
                            struct wire_propose_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->from_id = br_u64(&d);
    m->cmd = get_bytes(&d, &m->cmd_len);
    if (m->cmd_len == 0 || payload_len) br_fail(&d);
    return dec_finish(&d);
}
int wire_encode_propose_resp(uint8_t *buf, size_t cap, const struct wire_propose_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->raft_index);
    put_bytes(&e, m->result, m->result_len);
    return enc_done(&e);
}
int wire_decode_propose_resp(const uint8_t *body, size_t len, size_t payload_len,
                             struct wire_propose_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->raft_index = br_u64(&d);
    m->result = get_bytes(&d, &m->result_len);
    return dec_finish(&d);
}

/* ---- VOL_ATTACH / VOL_DETACH --------------------------------------------- */

int wire_encode_vol_attach_req(uint8_t *buf, size_t cap, const struct wire_vol_attach_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    put_str(&e, m->name);
    put_str(&e, m->agent_id);
    bw_u32(&e, m->flags);
    bw_u64(&e, m->base_generation);
    return enc_done(&e);
}
int wire_decode_vol_attach_req(const uint8_t *body, size_t len, size_t payload_len,
                               struct wire_vol_attach_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->name = get_str(&d);
    m->agent_id = get_str(&d);
    m->flags = br_u32(&d);
    m->base_generation = br_u64(&d);
    if (m->name.len == 0 || m->name.len > WIRE_NAME_MAX || m->agent_id.len == 0 ||
        m->agent_id.len > WIRE_ID_MAX ||
        (m->flags & ~(uint32_t)(WIRE_ATTACH_RO | WIRE_ATTACH_INFO)))
        br_fail(&d);
    return dec_finish(&d);
}
int wire_encode_vol_attach_resp(uint8_t *buf, size_t cap, const struct wire_vol_attach_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->vol_id);
    bw_u64(&e, m->size);
    bw_u64(&e, m->generation);
    bw_u32(&e, m->block_size);
    bw_u32(&e, m->flags);
    bw_u64(&e, m->raft_index);
    put_str(&e, m->client);
    return enc_done(&e);
}
int wire_decode_vol_attach_resp(const uint8_t *body, size_t len, size_t payload_len,
                                struct wire_vol_attach_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->vol_id = br_u64(&d);
    m->size = br_u64(&d);
    m->generation = br_u64(&d);
    m->block_size = br_u32(&d);
    m->flags = br_u32(&d);
    m->raft_index = br_u64(&d);
    m->client = get_str(&d);
    if (m->block_size == 0 || (m->block_size & (m->block_size - 1)) ||
        m->size % m->block_size || m->client.len > WIRE_ID_MAX)
        br_fail(&d);
    return dec_finish(&d);
}

int wire_encode_vol_detach_req(uint8_t *buf, size_t cap, const struct wire_vol_detach_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->vol_id);
    bw_u64(&e, m->generation);
    put_str(&e, m->agent_id);
    return enc_done(&e);
}
int wire_decode_vol_detach_req(const uint8_t *body, size_t len, size_t payload_len,
                               struct wire_vol_detach_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->vol_id = br_u64(&d);
    m->generation = br_u64(&d);
    m->agent_id = get_str(&d);
    if (m->agent_id.len == 0 || m->agent_id.len > 64) br_fail(&d);
    return dec_finish(&d);
}
int wire_encode_vol_detach_resp(uint8_t *buf, size_t cap, const struct wire_vol_detach_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->raft_index);
    return enc_done(&e);
}
int wire_decode_vol_detach_resp(const uint8_t *body, size_t len, size_t payload_len,
                                struct wire_vol_detach_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->raft_index = br_u64(&d);
    return dec_finish(&d);
}

/* ---- VOL_WRITE / VOL_READ ------------------------------------------------ */

int wire_encode_vol_write_req(uint8_t *buf, size_t cap, const struct wire_vol_write_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->vol_id);
    bw_u64(&e, m->generation);
    bw_u64(&e, m->off);
    bw_u32(&e, m->len);
    bw_u32(&e, m->flags);
    bw_u64(&e, m->csum);
    bw_u32(&e, m->data_len);
    if (m->flags & WIRE_WRITE_SCATTER) {
        bw_u32(&e, m->n_ext);
        if (m->n_ext > WIRE_SCATTER_MAX) e.err = -EMSGSIZE;
        for (uint32_t i = 0; i < m->n_ext && !e.err; i++) {
            struct wire_write_ext x;
            wire_vol_write_ext(m, i, &x);
            bw_u64(&e, x.off);
            bw_u32(&e, x.len);
        }
    }
    return enc_done(&e);
}
#define WRITE_EXT_LEN 12 /* the write extent table in wire.h */
void wire_vol_write_ext(const struct wire_vol_write_req *m, uint32_t i, struct wire_write_ext *out)
{
    if (!(m->flags & WIRE_WRITE_SCATTER)) {
        *out = (struct wire_write_ext){m->off, m->len};
    } else if (m->ext_in) {
        *out = m->ext_in[i];
    } else {
        struct bytes_r d;
        br_init(&d, m->ext + (size_t)i * WRITE_EXT_LEN, WRITE_EXT_LEN);
        out->off = br_u64(&d);
        out->len = br_u32(&d);
    }
}

uint64_t wire_vol_write_trace_id(const struct wire_vol_write_req *m)
{
    uint8_t b[44];
    struct bytes_w w;
    bw_init(&w, b, sizeof(b));
    bw_u64(&w, m->vol_id);
    bw_u64(&w, m->generation);
    bw_u64(&w, m->off);
    bw_u32(&w, m->len);
    bw_u32(&w, m->flags);
    bw_u64(&w, m->csum);
    uint64_t h = util_xxh3(b, w.used);
    return h ? h : 1;
}
/* The extents of a scattered write: non-empty, ascending, non-overlapping,
 * starting at M->off and adding up to M->len. */
static void get_write_exts(struct bytes_r *d, struct wire_vol_write_req *m)
{
    m->n_ext = br_u32(d);
    if (m->n_ext == 0 || m->n_ext > WIRE_SCATTER_MAX) br_fail(d);
    m->ext = br_take(d, (size_t)m->n_ext * WRITE_EXT_LEN);
    uint64_t end = 0, total = 0;
    for (uint32_t i = 0; m->ext && i < m->n_ext && !d->err; i++) {
        struct wire_write_ext x;
        wire_vol_write_ext(m, i, &x);
        if (x.len == 0 || x.off > UINT64_MAX - x.len || (i ? x.off < end : x.off != m->off))
            br_fail(d);
        end = x.off + x.len;
        total += x.len;
    }
    if (!d->err && total != m->len) br_fail(d);
}
int wire_decode_vol_write_req(const uint8_t *body, size_t len, size_t payload_len,
                              struct wire_vol_write_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->vol_id = br_u64(&d);
    m->generation = br_u64(&d);
    m->off = br_u64(&d);
    m->len = br_u32(&d);
    m->flags = br_u32(&d);
    m->csum = br_u64(&d);
    m->data_len = br_u32(&d);
    m->data = body + (len - payload_len);
    m->n_ext = 0;
    m->ext = NULL;
    m->ext_in = NULL;
    bool index_only = m->flags & (WIRE_WRITE_ZERO | WIRE_WRITE_TRIM);
    if (m->flags & ~(uint32_t)(WIRE_WRITE_ZERO | WIRE_WRITE_TRIM | WIRE_WRITE_SCATTER))
        br_fail(&d);
    if ((m->flags & WIRE_WRITE_ZERO) && (m->flags & WIRE_WRITE_TRIM)) br_fail(&d);
    if ((m->flags & WIRE_WRITE_SCATTER) && index_only) br_fail(&d); /* data only */
    if ((m->flags & WIRE_WRITE_SCATTER) && !d.err) get_write_exts(&d, m);
    if (m->data_len != payload_len) br_fail(&d);
    if (index_only ? m->data_len != 0 : m->data_len != m->len) br_fail(&d);
    if (m->len == 0 || m->off > UINT64_MAX - m->len) br_fail(&d);
    return dec_finish(&d);
}
int wire_encode_vol_write_resp(uint8_t *buf, size_t cap, const struct wire_vol_write_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->raft_index);
    return enc_done(&e);
}
int wire_decode_vol_write_resp(const uint8_t *body, size_t len, size_t payload_len,
                               struct wire_vol_write_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->raft_index = br_u64(&d);
    return dec_finish(&d);
}

int wire_encode_vol_read_req(uint8_t *buf, size_t cap, const struct wire_vol_read_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->vol_id);
    bw_u64(&e, m->off);
    bw_u32(&e, m->len);
    bw_u32(&e, m->flags);
    bw_u64(&e, m->min_index);
    return enc_done(&e);
}
int wire_decode_vol_read_req(const uint8_t *body, size_t len, size_t payload_len,
                             struct wire_vol_read_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->vol_id = br_u64(&d);
    m->off = br_u64(&d);
    m->len = br_u32(&d);
    m->flags = br_u32(&d);
    m->min_index = br_u64(&d);
    if (m->len == 0 || m->off > UINT64_MAX - m->len || (m->flags & ~(uint32_t)WIRE_READ_MAP) ||
        payload_len)
        br_fail(&d);
    return dec_finish(&d);
}

#define MAP_ENTRY_LEN 20 /* the map range table in wire.h */

/* Encode/decode/validate a counted array of map ranges (VOL_READ, VOL_MAP). */
static void put_ranges(struct bytes_w *e, uint32_t n, const struct wire_map_range *in,
                       const uint8_t *packed)
{
    bw_u32(e, n);
    if (n > WIRE_MAP_MAX) e->err = -EMSGSIZE;
    for (uint32_t i = 0; i < n && !e->err; i++) {
        if (in) {
            bw_u64(e, in[i].off);
            bw_u64(e, in[i].len);
            bw_u32(e, in[i].kind);
        } else {
            uint8_t *p = bw_take(e, MAP_ENTRY_LEN);
            if (p) memcpy(p, packed + (size_t)i * MAP_ENTRY_LEN, MAP_ENTRY_LEN);
        }
    }
}
static void range_at(const uint8_t *packed, uint32_t i, struct wire_map_range *out)
{
    struct bytes_r d;
    br_init(&d, packed + (size_t)i * MAP_ENTRY_LEN, MAP_ENTRY_LEN);
    out->off = br_u64(&d);
    out->len = br_u64(&d);
    out->kind = br_u32(&d);
}
static const uint8_t *get_ranges(struct bytes_r *d, uint32_t *n)
{
    *n = br_u32(d);
    if (*n > WIRE_MAP_MAX) br_fail(d);
    const uint8_t *p = br_take(d, (size_t)*n * MAP_ENTRY_LEN);
    /* Ranges must be non-empty, ascending, non-overlapping, of a known kind. */
    uint64_t end = 0;
    for (uint32_t i = 0; p && i < *n && !d->err; i++) {
        struct wire_map_range r;
        range_at(p, i, &r);
        if (r.len == 0 || r.off > UINT64_MAX - r.len || r.off < end || r.kind > WIRE_MAP_HOLE)
            br_fail(d);
        end = r.off + r.len;
    }
    return p;
}

int wire_encode_vol_read_resp(uint8_t *buf, size_t cap, const struct wire_vol_read_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->csum);
    bw_u64(&e, m->raft_index);
    put_ranges(&e, m->n_ranges, m->ranges_in, m->ranges);
    bw_u32(&e, m->data_len);
    return enc_done(&e);
}
int wire_decode_vol_read_resp(const uint8_t *body, size_t len, size_t payload_len,
                              struct wire_vol_read_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->csum = br_u64(&d);
    m->raft_index = br_u64(&d);
    m->ranges_in = NULL;
    m->ranges = get_ranges(&d, &m->n_ranges);
    m->data_len = br_u32(&d);
    if (m->data_len != payload_len) br_fail(&d);
    m->data = body + (len - payload_len);
    return dec_finish(&d);
}
void wire_vol_read_range(const struct wire_vol_read_resp *r, uint32_t i,
                         struct wire_map_range *out)
{
    if (r->ranges_in) *out = r->ranges_in[i];
    else range_at(r->ranges, i, out);
}

/* ---- VOL_MAP ------------------------------------------------------------- */

int wire_encode_vol_map_req(uint8_t *buf, size_t cap, const struct wire_vol_map_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->vol_id);
    bw_u64(&e, m->off);
    bw_u64(&e, m->len);
    bw_u64(&e, m->min_index);
    return enc_done(&e);
}
int wire_decode_vol_map_req(const uint8_t *body, size_t len, size_t payload_len,
                            struct wire_vol_map_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->vol_id = br_u64(&d);
    m->off = br_u64(&d);
    m->len = br_u64(&d);
    m->min_index = br_u64(&d);
    if (m->len == 0 || m->off > UINT64_MAX - m->len || payload_len) br_fail(&d);
    return dec_finish(&d);
}
int wire_encode_vol_map_resp(uint8_t *buf, size_t cap, const struct wire_vol_map_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    put_ranges(&e, m->n, m->ranges_in, m->ranges);
    return enc_done(&e);
}
int wire_decode_vol_map_resp(const uint8_t *body, size_t len, size_t payload_len,
                             struct wire_vol_map_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->ranges_in = NULL;
    m->ranges = get_ranges(&d, &m->n);
    return dec_finish(&d);
}
void wire_vol_map_range(const struct wire_vol_map_resp *r, uint32_t i, struct wire_map_range *out)
{
    if (r->ranges_in) *out = r->ranges_in[i];
    else range_at(r->ranges, i, out);
}

/* ---- VOL_LEASE ------------------------------------------------------------ */

int wire_encode_vol_lease_req(uint8_t *buf, size_t cap, const struct wire_vol_lease_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->vol_id);
    bw_u64(&e, m->off);
    bw_u32(&e, m->len);
    bw_u64(&e, m->min_index);
    return enc_done(&e);
}
int wire_decode_vol_lease_req(const uint8_t *body, size_t len, size_t payload_len,
                              struct wire_vol_lease_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->vol_id = br_u64(&d);
    m->off = br_u64(&d);
    m->len = br_u32(&d);
    m->min_index = br_u64(&d);
    if (m->len == 0 || m->len > WIRE_LEASE_MAX_LEN || m->off > UINT64_MAX - m->len ||
        payload_len)
        br_fail(&d);
    return dec_finish(&d);
}

static void lease_entry_put(struct bytes_w *e, const struct wire_lease_entry *x)
{
    bw_u64(e, x->off);
    bw_u32(e, x->len);
    bw_u64(e, x->blob_id);
    bw_u32(e, x->blob_off);
    bw_u32(e, x->partition);
    for (int k = 0; k < 3; k++) bw_u64(e, x->nodes[k]);
}
static void lease_entry_at(const uint8_t *packed, uint32_t i, struct wire_lease_entry *x)
{
    struct bytes_r d;
    br_init(&d, packed + (size_t)i * WIRE_LEASE_ENTRY_LEN, WIRE_LEASE_ENTRY_LEN);
    x->off = br_u64(&d);
    x->len = br_u32(&d);
    x->blob_id = br_u64(&d);
    x->blob_off = br_u32(&d);
    x->partition = br_u32(&d);
    for (int k = 0; k < 3; k++) x->nodes[k] = br_u64(&d);
}

int wire_encode_vol_lease_resp(uint8_t *buf, size_t cap, const struct wire_vol_lease_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->raft_index);
    bw_u32(&e, m->lease_ms);
    bw_u32(&e, m->timeout_ms);
    bw_u64(&e, m->end);
    bw_u32(&e, m->n_nodes);
    if (m->n_nodes > WIRE_LEASE_NODES_MAX || m->n > WIRE_LEASE_MAX) e.err = -EMSGSIZE;
    if (m->nodes_in) {
        for (uint32_t i = 0; i < m->n_nodes && !e.err; i++) {
            bw_u64(&e, m->nodes_in[i].id);
            put_str(&e, m->nodes_in[i].addr);
        }
    } else {
        uint8_t *p = bw_take(&e, m->nodes_len);
        if (p && m->nodes_len) memcpy(p, m->nodes, m->nodes_len);
    }
    bw_u32(&e, m->n);
    for (uint32_t i = 0; i < m->n && !e.err; i++) {
        if (m->entries_in) {
            lease_entry_put(&e, &m->entries_in[i]);
        } else {
            uint8_t *p = bw_take(&e, WIRE_LEASE_ENTRY_LEN);
            if (p) memcpy(p, m->entries + (size_t)i * WIRE_LEASE_ENTRY_LEN, WIRE_LEASE_ENTRY_LEN);
        }
    }
    return enc_done(&e);
}
int wire_decode_vol_lease_resp(const uint8_t *body, size_t len, size_t payload_len,
                               struct wire_vol_lease_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->raft_index = br_u64(&d);
    m->lease_ms = br_u32(&d);
    m->timeout_ms = br_u32(&d);
    m->end = br_u64(&d);
    m->n_nodes = br_u32(&d);
    m->nodes_in = NULL;
    m->entries_in = NULL;
    if (m->n_nodes > WIRE_LEASE_NODES_MAX) br_fail(&d);
    m->nodes = d.p;
    for (uint32_t i = 0; i < m->n_nodes && !d.err; i++) {
        uint64_t id = br_u64(&d);
        struct wire_str a = get_str(&d);
        if (id == 0 || a.len == 0 || a.len > WIRE_LEASE_ADDR_MAX || memchr(a.ptr, 0, a.len))
            br_fail(&d);
    }
    m->nodes_len = d.err ? 0 : (size_t)(d.p - m->nodes);
    m->n = br_u32(&d);
    if (m->n > WIRE_LEASE_MAX) br_fail(&d);
    m->entries = br_take(&d, (size_t)m->n * WIRE_LEASE_ENTRY_LEN);
    /* Entries are non-empty, contiguous and inside [first off, end). */
    uint64_t at = 0;
    for (uint32_t i = 0; m->entries && i < m->n && !d.err; i++) {
        struct wire_lease_entry x;
        lease_entry_at(m->entries, i, &x);
        if (x.len == 0 || x.off > UINT64_MAX - x.len || x.off + x.len > m->end ||
            (uint64_t)x.blob_off + x.len > UINT32_MAX || (i > 0 && at != x.off))
            br_fail(&d);
        at = x.off + x.len;
    }
    return dec_finish(&d);
}
void wire_vol_lease_entry(const struct wire_vol_lease_resp *r, uint32_t i,
                          struct wire_lease_entry *out)
{
    if (r->entries_in) *out = r->entries_in[i];
    else lease_entry_at(r->entries, i, out);
}
int wire_vol_lease_node(const struct wire_vol_lease_resp *r, size_t *pos,
                        struct wire_lease_node *out)
{
    if (r->nodes_in) {
        if (*pos >= r->n_nodes) return 0;
        *out = r->nodes_in[(*pos)++];
        return 1;
    }
    if (*pos >= r->nodes_len) return 0;
    struct bytes_r d;
    dec_init(&d, r->nodes + *pos, r->nodes_len - *pos, 0);
    out->id = br_u64(&d);
    out->addr = get_str(&d);
    if (d.err) return 0;
    *pos = (size_t)(d.p - r->nodes);
    return 1;
}

/* ---- VOL_FLUSH / VOL_BARRIER / AGENT_HELLO / VOL_LIST ------------------------------------------------ */

int wire_encode_vol_flush_req(uint8_t *buf, size_t cap, const struct wire_vol_flush_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->vol_id);
    bw_u64(&e, m->generation);
    return enc_done(&e);
}
int wire_decode_vol_flush_req(const uint8_t *body, size_t len, size_t payload_len,
                              struct wire_vol_flush_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->vol_id = br_u64(&d);
    m->generation = br_u64(&d);
    return dec_finish(&d);
}
int wire_encode_vol_flush_resp(uint8_t *buf, size_t cap, const struct wire_vol_flush_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->raft_index);
    return enc_done(&e);
}
int wire_decode_vol_flush_resp(const uint8_t *body, size_t len, size_t payload_len,
                               struct wire_vol_flush_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->raft_index = br_u64(&d);
    return dec_finish(&d);
}

int wire_encode_vol_barrier_req(uint8_t *buf, size_t cap, const struct wire_vol_barrier_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->vol_id);
    bw_u64(&e, m->generation);
    return enc_done(&e);
}
int wire_decode_vol_barrier_req(const uint8_t *body, size_t len, size_t payload_len,
                                struct wire_vol_barrier_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->vol_id = br_u64(&d);
    m->generation = br_u64(&d);
    return dec_finish(&d);
}
int wire_encode_vol_barrier_resp(uint8_t *buf, size_t cap, const struct wire_vol_barrier_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u64(&e, m->raft_index);
    return enc_done(&e);
}
int wire_decode_vol_barrier_resp(const uint8_t *body, size_t len, size_t payload_len,
                                 struct wire_vol_barrier_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->raft_index = br_u64(&d);
    return dec_finish(&d);
}

int wire_encode_agent_hello_req(uint8_t *buf, size_t cap, const struct wire_agent_hello_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    put_str(&e, m->agent_id);
    return enc_done(&e);
}
int wire_decode_agent_hello_req(const uint8_t *body, size_t len, size_t payload_len,
                                struct wire_agent_hello_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->agent_id = get_str(&d);
    if (m->agent_id.len == 0 || m->agent_id.len > WIRE_ID_MAX) br_fail(&d);
    return dec_finish(&d);
}
int wire_encode_agent_hello_resp(uint8_t *buf, size_t cap, const struct wire_agent_hello_resp *m)
{
    (void)buf;
    (void)cap;
    (void)m;
    return 0;
}
int wire_decode_agent_hello_resp(const uint8_t *body, size_t len, size_t payload_len,
                                 struct wire_agent_hello_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->unused = 0;
    return dec_finish(&d);
}

int wire_encode_vol_list_req(uint8_t *buf, size_t cap, const struct wire_vol_list_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u32(&e, m->max);
    put_str(&e, m->after);
    put_str(&e, m->agent_id);
    return enc_done(&e);
}
int wire_decode_vol_list_req(const uint8_t *body, size_t len, size_t payload_len,
                             struct wire_vol_list_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->max = br_u32(&d);
    m->after = get_str(&d);
    m->agent_id = get_str(&d);
    if (m->max == 0 || m->max > WIRE_VOLS_MAX || m->after.len > WIRE_NAME_MAX ||
        m->agent_id.len == 0 || m->agent_id.len > WIRE_ID_MAX)
        br_fail(&d);
    return dec_finish(&d);
}
int wire_encode_vol_list_resp(uint8_t *buf, size_t cap, const struct wire_vol_list_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u32(&e, m->n);
    if (m->n > WIRE_VOLS_MAX) e.err = -EMSGSIZE;
    if (m->entries_in) {
        for (uint32_t i = 0; i < m->n && !e.err; i++) {
            put_str(&e, m->entries_in[i].name);
            bw_u64(&e, m->entries_in[i].vol_id);
            bw_u64(&e, m->entries_in[i].size);
            bw_u32(&e, m->entries_in[i].flags);
            put_str(&e, m->entries_in[i].client);
        }
    } else {
        uint8_t *p = bw_take(&e, m->entries_len);
        if (p && m->entries_len) memcpy(p, m->entries, m->entries_len);
    }
    return enc_done(&e);
}
int wire_decode_vol_list_resp(const uint8_t *body, size_t len, size_t payload_len,
                              struct wire_vol_list_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->n = br_u32(&d);
    m->entries_in = NULL;
    if (m->n > WIRE_VOLS_MAX) br_fail(&d);
    m->entries = d.p;
    for (uint32_t i = 0; i < m->n && !d.err; i++) {
        struct wire_str name = get_str(&d);
        (void)br_u64(&d);
        (void)br_u64(&d);
        uint32_t flags = br_u32(&d);
        struct wire_str client = get_str(&d);
        if (name.len == 0 || name.len > WIRE_NAME_MAX || (flags & ~(uint32_t)WIRE_ATTACH_RO) ||
            client.len > WIRE_ID_MAX)
            br_fail(&d);
    }
    m->entries_len = d.err ? 0 : (size_t)(d.p - m->entries);
    return dec_finish(&d);
}
int wire_vol_list_next(const struct wire_vol_list_resp *r, size_t *pos, struct wire_vol_entry *out)
{
    if (r->entries_in) {
        if (*pos >= r->n) return 0;
        *out = r->entries_in[(*pos)++];
        return 1;
    }
    if (*pos >= r->entries_len) return 0;
    struct bytes_r d;
    dec_init(&d, r->entries + *pos, r->entries_len - *pos, 0);
    out->name = get_str(&d);
    out->vol_id = br_u64(&d);
    out->size = br_u64(&d);
    out->flags = br_u32(&d);
    out->client = get_str(&d);
    if (d.err) return 0;
    *pos = (size_t)(d.p - r->entries);
    return 1;
}

/* ---- VOL_QOS --------------------------------------------------------------- */

static void qos_report_put(struct bytes_w *e, const struct wire_qos_report *q)
{
    bw_u64(e, q->vol_id);
    for (int d = 0; d < 2; d++) bw_u64(e, q->ops[d]);
    for (int d = 0; d < 2; d++) bw_u64(e, q->bytes[d]);
    bw_u64(e, q->delayed);
    bw_u64(e, q->throttled_us);
    bw_u32(e, q->waiting);
    for (int d = 0; d < 2; d++) bw_u32(e, q->p50_us[d]);
    for (int d = 0; d < 2; d++) bw_u32(e, q->p99_us[d]);
    for (int k = 0; k < QOS_N_KINDS; k++) bw_u64(e, (uint64_t)q->level[k]);
}
static void qos_report_get(struct bytes_r *d, struct wire_qos_report *q)
{
    q->vol_id = br_u64(d);
    for (int i = 0; i < 2; i++) q->ops[i] = br_u64(d);
    for (int i = 0; i < 2; i++) q->bytes[i] = br_u64(d);
    q->delayed = br_u64(d);
    q->throttled_us = br_u64(d);
    q->waiting = br_u32(d);
    for (int i = 0; i < 2; i++) q->p50_us[i] = br_u32(d);
    for (int i = 0; i < 2; i++) q->p99_us[i] = br_u32(d);
    for (int k = 0; k < QOS_N_KINDS; k++) q->level[k] = (int64_t)br_u64(d);
}
static void qos_entry_put(struct bytes_w *e, const struct wire_qos_entry *q)
{
    bw_u64(e, q->vol_id);
    bw_u8(e, q->found);
    qos_put(e, &q->qos);
}
static void qos_entry_get(struct bytes_r *d, struct wire_qos_entry *q)
{
    q->vol_id = br_u64(d);
    q->found = br_u8(d);
    qos_get_valid(d, &q->qos);
    /* Found: every field; not found: none. */
    if (q->found > 1 || q->qos.set != (q->found ? QOS_SET_ALL : 0u)) br_fail(d);
}

int wire_encode_vol_qos_req(uint8_t *buf, size_t cap, const struct wire_vol_qos_req *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    put_str(&e, m->agent_id);
    bw_u32(&e, m->n);
    if (m->n > WIRE_QOS_MAX) e.err = -EMSGSIZE;
    for (uint32_t i = 0; i < m->n && !e.err; i++) {
        if (m->reports_in) {
            qos_report_put(&e, &m->reports_in[i]);
        } else {
            uint8_t *p = bw_take(&e, WIRE_QOS_REPORT_LEN);
            if (p) memcpy(p, m->reports + (size_t)i * WIRE_QOS_REPORT_LEN, WIRE_QOS_REPORT_LEN);
        }
    }
    return enc_done(&e);
}
int wire_decode_vol_qos_req(const uint8_t *body, size_t len, size_t payload_len,
                            struct wire_vol_qos_req *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->agent_id = get_str(&d);
    m->n = br_u32(&d);
    m->reports_in = NULL;
    if (m->agent_id.len == 0 || m->agent_id.len > WIRE_NAME_MAX || m->n > WIRE_QOS_MAX ||
        payload_len)
        br_fail(&d);
    m->reports = br_take(&d, (size_t)m->n * WIRE_QOS_REPORT_LEN);
    return dec_finish(&d);
}
void wire_vol_qos_report(const struct wire_vol_qos_req *r, uint32_t i, struct wire_qos_report *out)
{
    if (r->reports_in) {
        *out = r->reports_in[i];
        return;
    }
    struct bytes_r d;
    br_init(&d, r->reports + (size_t)i * WIRE_QOS_REPORT_LEN, WIRE_QOS_REPORT_LEN);
    qos_report_get(&d, out);
}

int wire_encode_vol_qos_resp(uint8_t *buf, size_t cap, const struct wire_vol_qos_resp *m)
{
    struct bytes_w e;
    bw_init(&e, buf, cap);
    bw_u32(&e, m->n);
    if (m->n > WIRE_QOS_MAX) e.err = -EMSGSIZE;
    for (uint32_t i = 0; i < m->n && !e.err; i++) {
        if (m->entries_in) {
            qos_entry_put(&e, &m->entries_in[i]);
        } else {
            uint8_t *p = bw_take(&e, WIRE_QOS_ENTRY_LEN);
            if (p) memcpy(p, m->entries + (size_t)i * WIRE_QOS_ENTRY_LEN, WIRE_QOS_ENTRY_LEN);
        }
    }
    return enc_done(&e);
}
int wire_decode_vol_qos_resp(const uint8_t *body, size_t len, size_t payload_len,
                             struct wire_vol_qos_resp *m)
{
    struct bytes_r d;
    dec_init(&d, body, len, payload_len);
    m->n = br_u32(&d);
    m->entries_in = NULL;
    if (m->n > WIRE_QOS_MAX || payload_len) br_fail(&d);
    m->entries = br_take(&d, (size_t)m->n * WIRE_QOS_ENTRY_LEN);
    /* Every entry's limits are validated here, once. */
    for (uint32_t i = 0; m->entries && i < m->n && !d.err; i++) {
        struct bytes_r q;
        struct wire_qos_entry x;
        br_init(&q, m->entries + (size_t)i * WIRE_QOS_ENTRY_LEN, WIRE_QOS_ENTRY_LEN);
        qos_entry_get(&q, &x);
        if (q.err) br_fail(&d);
    }
    return dec_finish(&d);
}
void wire_vol_qos_entry(const struct wire_vol_qos_resp *r, uint32_t i, struct wire_qos_entry *out)
{
    if (r->entries_in) {
        *out = r->entries_in[i];
        return;
    }
    struct bytes_r d;
    br_init(&d, r->entries + (size_t)i * WIRE_QOS_ENTRY_LEN, WIRE_QOS_ENTRY_LEN);
    qos_entry_get(&d, out);
}

/* ---- names, statuses, round trip ----------------------------------------- */

const char *wire_type_name(uint16_t type)
{
    switch (type) {
#define X(code, NAME, name)                                                                \
    case code: return #NAME;
        WIRE_MESSAGES(X)
#undef X
    default: return "unknown";
    }
}

bool wire_type_known(uint16_t type)
{
    return strcmp(wire_type_name(type), "unknown") != 0;
}

const char *wire_status_name(uint16_t status)
{
    switch (status) {
#define X(code, NAME)                                                                      \
    case code: return #NAME;
        WIRE_STATUSES(X)
#undef X
    default: return "UNKNOWN_STATUS";
    }
}

uint16_t wire_status_from_err(int err)
{
    switch (err < 0 ? -err : err) {
    case 0: return WIRE_OK;
    case EINVAL: case EPROTO: case EMSGSIZE: case EOVERFLOW: return WIRE_EINVAL;
    case ENOENT: return WIRE_ENOENT;
    case EEXIST: return WIRE_EEXIST;
    case BD_ECSUM: return WIRE_ECSUM;
    case BD_EFENCED: return WIRE_EFENCED;
    case ENOSPC: case EDQUOT: return WIRE_ENOSPC;
    case BD_ENOTLEADER: return WIRE_ENOTLEADER;
    case EAGAIN: case BD_ENOLEADER: return WIRE_EAGAIN;
    case ENOTSUP: return WIRE_ENOTSUP;
    case ETIMEDOUT: return WIRE_ETIMEDOUT;
    case EBUSY: return WIRE_EBUSY;
    case ERANGE: return WIRE_ERANGE;
    case EACCES: return WIRE_EAUTH;
    case EPERM: case EROFS: return WIRE_EPERM;
    case BD_EIMMUTABLE: return WIRE_EIMMUTABLE;
    case ESHUTDOWN: case ECANCELED: return WIRE_ESHUTDOWN;
    case ENOMEM: case ENOBUFS: return WIRE_ENOMEM;
    default: return WIRE_EIO;
    }
}

int wire_status_to_err(uint16_t status)
{
    switch (status) {
    case WIRE_OK: return 0;
    case WIRE_EINVAL: return -EINVAL;
    case WIRE_ENOENT: return -ENOENT;
    case WIRE_EEXIST: return -EEXIST;
    case WIRE_ECSUM: return -BD_ECSUM;
    case WIRE_EFENCED: return -BD_EFENCED;
    case WIRE_ENOSPC: return -ENOSPC;
    case WIRE_ENOTLEADER: return -BD_ENOTLEADER;
    case WIRE_EAGAIN: return -EAGAIN;
    case WIRE_ENOTSUP: return -ENOTSUP;
    case WIRE_ETIMEDOUT: return -ETIMEDOUT;
    case WIRE_EBUSY: return -EBUSY;
    case WIRE_ERANGE: return -ERANGE;
    case WIRE_EAUTH: return -EACCES;
    case WIRE_EPERM: return -EPERM;
    case WIRE_EIMMUTABLE: return -BD_EIMMUTABLE;
    case WIRE_ESHUTDOWN: return -ESHUTDOWN;
    case WIRE_ENOMEM: return -ENOMEM;
    default: return -EIO;
    }
}

int wire_roundtrip(uint16_t type, bool response, const uint8_t *body, size_t len,
                   size_t payload_len)
{
    static __thread uint8_t out[WIRE_MAX_FIELDS];
    int n = -EPROTO;
    if (payload_len > len) return -EPROTO;
    size_t fields = len - payload_len;
    switch (type) {
#define X(code, NAME, name)                                                                \
    case code:                                                                             \
        if (response) {                                                                    \
            struct wire_##name##_resp m;                                                   \
            memset(&m, 0, sizeof(m));                                                      \
            if (wire_decode_##name##_resp(body, len, payload_len, &m) < 0) return -EPROTO; \
            n = wire_encode_##name##_resp(out, sizeof(out), &m);                           \
        } else {                                                                           \
            struct wire_##name##_req m;                                                    \
            memset(&m, 0, sizeof(m));                                                      \
            if (wire_decode_##name##_req(body, len, payload_len, &m) < 0) return -EPROTO;  \
            n = wire_encode_##name##_req(out, sizeof(out), &m);                            \
        }                                                                                  \
        break;
        WIRE_MESSAGES(X)
#undef X
    default: return -EPROTO;
    }
    if (n < 0 || (size_t)n != fields || memcmp(out, body, fields) != 0) return -EILSEQ;
    return 0;
}
