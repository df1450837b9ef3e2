/* nbd.c: the NBD protocol codec (see nbd.h for the message layouts).
 *
 * Layout of this file: names and error maps; strings; then each phase's
 * messages with encode and decode side by side in field order (STYLE.md
 * §9); then the handshake decisions (nbd_hs_*) and the request check.
 *
 * Every decoder bounds-checks with subtraction from a known length, never
 * by adding an untrusted length to a position (a 32-bit name length added
 * to 4 overflows; nbd-server CVE-2022-26495 did exactly that).  Encoders
 * check CAP first and write nothing on -EMSGSIZE.
 *
 * The handshake decisions write their replies into a caller buffer of
 * NBD_HS_OUT_MAX bytes: the largest is an error reply with a quoted name
 * (under 300 bytes) or the INFO replies with a 256-byte canonical name.
 * Names longer than that never reach a reply unquoted.
 *
 * Rejected: decoding straight from a bufferevent (the codec would know
 * libevent and could not be fuzzed or tested byte by byte), and allocating
 * decoded strings (pointers into the caller's payload suffice, and the
 * payload is bounded by NBD_OPT_MAX_LEN before it is read). */
#include "net/nbd.h"
#include "base/bd.h"
#include "base/bytes.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define NBD_MSG_MAX 1024u /* our own messages; the spec allows 4096 */

/* ---- names and error maps ------------------------------------------------- */

const char *nbd_opt_name(uint32_t opt)
{
    static const char *const names[] = {
        [NBD_OPT_EXPORT_NAME] = "NBD_OPT_EXPORT_NAME",
        [NBD_OPT_ABORT] = "NBD_OPT_ABORT",
        [NBD_OPT_LIST] = "NBD_OPT_LIST",
        [NBD_OPT_PEEK_EXPORT] = "NBD_OPT_PEEK_EXPORT",
        [NBD_OPT_STARTTLS] = "NBD_OPT_STARTTLS",
        [NBD_OPT_INFO] = "NBD_OPT_INFO",
        [NBD_OPT_GO] = "NBD_OPT_GO",
        [NBD_OPT_STRUCTURED_REPLY] = "NBD_OPT_STRUCTURED_REPLY",
        [NBD_OPT_LIST_META_CONTEXT] = "NBD_OPT_LIST_META_CONTEXT",
        [NBD_OPT_SET_META_CONTEXT] = "NBD_OPT_SET_META_CONTEXT",
        [NBD_OPT_EXTENDED_HEADERS] = "NBD_OPT_EXTENDED_HEADERS",
    };
    return opt < BD_ARRAY_SIZE(names) && names[opt] ? names[opt] : "unknown";
}

const char *nbd_rep_name(uint32_t rep)
{
    switch (rep) {
    case NBD_REP_ACK: return "NBD_REP_ACK";
    case NBD_REP_SERVER: return "NBD_REP_SERVER";
    case NBD_REP_INFO: return "NBD_REP_INFO";
    case NBD_REP_META_CONTEXT: return "NBD_REP_META_CONTEXT";
    case NBD_REP_ERR_UNSUP: return "NBD_REP_ERR_UNSUP";
    case NBD_REP_ERR_POLICY: return "NBD_REP_ERR_POLICY";
    case NBD_REP_ERR_INVALID: return "NBD_REP_ERR_INVALID";
    case NBD_REP_ERR_PLATFORM: return "NBD_REP_ERR_PLATFORM";
    case NBD_REP_ERR_TLS_REQD: return "NBD_REP_ERR_TLS_REQD";
    case NBD_REP_ERR_UNKNOWN: return "NBD_REP_ERR_UNKNOWN";
    case NBD_REP_ERR_SHUTDOWN: return "NBD_REP_ERR_SHUTDOWN";
    case NBD_REP_ERR_BLOCK_SIZE_REQD: return "NBD_REP_ERR_BLOCK_SIZE_REQD";
    case NBD_REP_ERR_TOO_BIG: return "NBD_REP_ERR_TOO_BIG";
    default: return "unknown";
    }
}

const char *nbd_cmd_name(uint16_t cmd)
{
    static const char *const names[NBD_CMD_COUNT] = {
        [NBD_CMD_READ] = "read",   [NBD_CMD_WRITE] = "write",
        [NBD_CMD_DISC] = "disc",   [NBD_CMD_FLUSH] = "flush",
        [NBD_CMD_TRIM] = "trim",   [NBD_CMD_CACHE] = "cache",
        [NBD_CMD_WRITE_ZEROES] = "write_zeroes", [NBD_CMD_BLOCK_STATUS] = "block_status",
    };
    return cmd < NBD_CMD_COUNT ? names[cmd] : "unknown";
}

const char *nbd_err_name(uint32_t err)
{
    switch (err) {
    case 0: return "OK";
    case NBD_EPERM: return "EPERM";
    case NBD_EIO: return "EIO";
    case NBD_ENOMEM: return "ENOMEM";
    case NBD_EINVAL: return "EINVAL";
    case NBD_ENOSPC: return "ENOSPC";
    case NBD_EOVERFLOW: return "EOVERFLOW";
    case NBD_ENOTSUP: return "ENOTSUP";
    case NBD_ESHUTDOWN: return "ESHUTDOWN";
    default: return "unknown";
    }
}

uint32_t nbd_err_from_errno(int code)
{
    switch (code) {
    case 0: return 0;
    case -ENOSPC:
    case -EDQUOT:
    case -EFBIG: return NBD_ENOSPC;
    case -EPERM:
    case -EROFS:
    case -EACCES: return NBD_EPERM;
    case -EINVAL: return NBD_EINVAL;
    case -ENOMEM: return NBD_ENOMEM;
    case -EOVERFLOW: return NBD_EOVERFLOW;
    case -ENOTSUP: return NBD_ENOTSUP;
    case -ESHUTDOWN: return NBD_ESHUTDOWN;
    default: return NBD_EIO; /* -EIO, -ETIMEDOUT, -BD_E*, anything unexpected */
    }
}

uint32_t nbd_rep_err_from_errno(int code)
{
    switch (code) {
    case -ESHUTDOWN: return NBD_REP_ERR_SHUTDOWN;
    case -EPERM:
    case -EACCES:
    case -EBUSY: return NBD_REP_ERR_POLICY;
    case -EINVAL: return NBD_REP_ERR_INVALID;
    default: return NBD_REP_ERR_UNKNOWN;
    }
}

/* ---- strings ---------------------------------------------------------------- */

char *nbd_quote(char *out, size_t cap, const char *s, size_t len)
{
    if (cap == 0) return out;
    size_t n = len > NBD_QUOTE_MAX ? NBD_QUOTE_MAX : len;
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[o++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    if (len > n)
        for (int i = 0; i < 3 && o + 1 < cap; i++) out[o++] = '.';
    out[o] = 0;
    return out;
}

/* A protocol string: at most NBD_NAME_MAX bytes, no NUL ("MUST NOT contain
 * NUL characters ... MUST be no longer than 4096 bytes"). */
static bool str_ok(const uint8_t *p, uint32_t len)
{
    return len == 0 || (len <= NBD_NAME_MAX && !memchr(p, 0, len)); /* P may be NULL at 0 */
}

/* ---- handshake: greeting, client flags ------------------------------------ */

int nbd_encode_greeting(uint8_t *out, size_t cap, uint16_t hflags)
{
    if (cap < NBD_GREETING_LEN) return -EMSGSIZE;
    struct bytes_w w;
    bw_init(&w, out, NBD_GREETING_LEN);
    bw_be64(&w, NBD_MAGIC);
    bw_be64(&w, NBD_IHAVEOPT);
    bw_be16(&w, hflags);
    return NBD_GREETING_LEN;
}

int nbd_decode_greeting(const uint8_t *p, size_t len, uint16_t *hflags)
{
    if (len < NBD_GREETING_LEN) return 0;
    struct bytes_r r;
    br_init(&r, p, NBD_GREETING_LEN);
    uint64_t magic = br_be64(&r), opt_magic = br_be64(&r);
    if (magic != NBD_MAGIC || opt_magic != NBD_IHAVEOPT) return -EPROTO;
    *hflags = br_be16(&r);
    return NBD_GREETING_LEN;
}

int nbd_encode_client_flags(uint8_t *out, size_t cap, uint32_t cflags)
{
    if (cap < NBD_CLIENT_FLAGS_LEN) return -EMSGSIZE;
    struct bytes_w w;
    bw_init(&w, out, NBD_CLIENT_FLAGS_LEN);
    bw_be32(&w, cflags);
    return NBD_CLIENT_FLAGS_LEN;
}

int nbd_decode_client_flags(const uint8_t *p, size_t len, uint32_t *cflags)
{
    if (len < NBD_CLIENT_FLAGS_LEN) return 0;
    struct bytes_r r;
    br_init(&r, p, NBD_CLIENT_FLAGS_LEN);
    *cflags = br_be32(&r);
    return NBD_CLIENT_FLAGS_LEN;
}

/* ---- handshake: options ----------------------------------------------------- */

int nbd_encode_opt_hdr(uint8_t *out, size_t cap, uint32_t opt, uint32_t len)
{
    if (cap < NBD_OPT_HDR_LEN) return -EMSGSIZE;
    struct bytes_w w;
    bw_init(&w, out, NBD_OPT_HDR_LEN);
    bw_be64(&w, NBD_IHAVEOPT);
    bw_be32(&w, opt);
    bw_be32(&w, len);
    return NBD_OPT_HDR_LEN;
}

int nbd_decode_opt_hdr(const uint8_t *p, size_t len, struct nbd_opt_hdr *h)
{
    if (len < NBD_OPT_HDR_LEN) return 0;
    struct bytes_r r;
    br_init(&r, p, NBD_OPT_HDR_LEN);
    if (br_be64(&r) != NBD_IHAVEOPT) return -EPROTO;
    h->opt = br_be32(&r);
    h->len = br_be32(&r);
    return NBD_OPT_HDR_LEN;
}

int nbd_encode_opt_go(uint8_t *out, size_t cap, const char *name, uint32_t name_len,
                      const uint16_t *info, uint16_t n_info)
{
    size_t need = 4 + (size_t)name_len + 2 + 2 * (size_t)n_info;
    if (cap < need) return -EMSGSIZE;
    struct bytes_w w;
    bw_init(&w, out, need);
    bw_be32(&w, name_len);
    bw_mem(&w, name, name_len);
    bw_be16(&w, n_info);
    for (uint16_t i = 0; i < n_info; i++) bw_be16(&w, info[i]);
    return (int)need;
}

int nbd_decode_opt_go(const uint8_t *p, uint32_t len, struct nbd_opt_go *g, const char **why)
{
    if (len < 6) {
        *why = "option shorter than 6 bytes";
        return -EINVAL;
    }
    struct bytes_r r;
    br_init(&r, p, len);
    uint32_t name_len = br_be32(&r);
    if (name_len > len - 6) { /* len >= 6: no underflow; no addition to overflow */
        *why = "name length exceeds the option length";
        return -EINVAL;
    }
    const uint8_t *name = br_take(&r, name_len);
    uint16_t n = br_be16(&r);
    if (r.left != 2 * (uint64_t)n) {
        *why = "number of information requests does not match the option length";
        return -EINVAL;
    }
    if (!str_ok(name, name_len)) {
        *why = name_len > NBD_NAME_MAX ? "export name longer than 4096 bytes"
                                        : "export name contains NUL";
        return -EINVAL;
    }
    g->name.ptr = (const char *)name;
    g->name.len = name_len;
    g->n_info = n;
    g->info = r.p;
    return 0;
}

uint16_t nbd_opt_go_info(const struct nbd_opt_go *g, unsigned i)
{
    if (i >= g->n_info) return 0xffff;
    struct bytes_r r;
    br_init(&r, g->info + 2 * (size_t)i, 2);
    return br_be16(&r);
}

int nbd_encode_opt_meta(uint8_t *out, size_t cap, const char *name, uint32_t name_len,
                        const char *const *queries, uint32_t n_queries)
{
    size_t need = 4 + (size_t)name_len + 4;
    for (uint32_t i = 0; i < n_queries; i++) need += 4 + strlen(queries[i]);
    if (cap < need) return -EMSGSIZE;
    struct bytes_w w;
    bw_init(&w, out, need);
    bw_be32(&w, name_len);
    bw_mem(&w, name, name_len);
    bw_be32(&w, n_queries);
    for (uint32_t i = 0; i < n_queries; i++) {
        uint32_t ql = (uint32_t)strlen(queries[i]);
        bw_be32(&w, ql);
        bw_mem(&w, queries[i], ql);
    }
    return (int)w.used;
}

int nbd_decode_opt_meta(const uint8_t *p, uint32_t len, struct nbd_opt_meta *m, const char **why)
{
    if (len < 8) {
        *why = "option shorter than 8 bytes";
        return -EINVAL;
    }
    struct bytes_r r;
    br_init(&r, p, len);
    uint32_t name_len = br_be32(&r);
    if (name_len > len - 8) {
        *why = "name length exceeds the option length";
        return -EINVAL;
    }
    const uint8_t *name = br_take(&r, name_len);
    if (!str_ok(name, name_len)) {
        *why = name_len > NBD_NAME_MAX ? "export name longer than 4096 bytes"
                                        : "export name contains NUL";
        return -EINVAL;
    }
    uint32_t n = br_be32(&r);
    const uint8_t *queries = r.p;
    for (uint32_t i = 0; i < n; i++) {
        if (r.left < 4) {
            *why = "query count exceeds the option length";
            return -EINVAL;
        }
        uint32_t ql = br_be32(&r);
        if (ql > r.left) {
            *why = "query length exceeds the option length";
            return -EINVAL;
        }
        const uint8_t *q = br_take(&r, ql);
        if (!str_ok(q, ql)) {
            *why = ql > NBD_NAME_MAX ? "query longer than 4096 bytes" : "query contains NUL";
            return -EINVAL;
        }
    }
    if (r.left != 0) {
        *why = "bytes after the last query";
        return -EINVAL;
    }
    m->name.ptr = (const char *)name;
    m->name.len = name_len;
    m->n_queries = n;
    m->queries = queries;
    m->queries_len = (uint32_t)(p + len - queries);
    return 0;
}

bool nbd_opt_meta_next(const struct nbd_opt_meta *m, uint32_t *pos, struct nbd_str *q)
{
    if (*pos >= m->queries_len) return false;
    struct bytes_r r;
    br_init(&r, m->queries + *pos, m->queries_len - *pos);
    uint32_t ql = br_be32(&r);
    const uint8_t *s = br_take(&r, ql); /* validated by decode: never short here */
    if (r.err) return false;
    q->ptr = (const char *)s;
    q->len = ql;
    *pos += (uint32_t)r.used;
    return true;
}

int nbd_decode_opt_export_name(const uint8_t *p, uint32_t len, struct nbd_str *name,
                               const char **why)
{
    if (!str_ok(p, len)) {
        *why = len > NBD_NAME_MAX ? "export name longer than 4096 bytes"
                                  : "export name contains NUL";
        return -EINVAL;
    }
    name->ptr = (const char *)p;
    name->len = len;
    return 0;
}

/* ---- handshake: option replies ---------------------------------------------- */

static void put_reply_hdr(struct bytes_w *w, uint32_t opt, uint32_t type, uint32_t len)
{
    bw_be64(w, NBD_REP_MAGIC);
    bw_be32(w, opt);
    bw_be32(w, type);
    bw_be32(w, len);
}

int nbd_encode_opt_reply_hdr(uint8_t *out, size_t cap, uint32_t opt, uint32_t type, uint32_t len)
{
    if (cap < NBD_OPT_REPLY_HDR_LEN) return -EMSGSIZE;
    struct bytes_w w;
    bw_init(&w, out, NBD_OPT_REPLY_HDR_LEN);
    put_reply_hdr(&w, opt, type, len);
    return NBD_OPT_REPLY_HDR_LEN;
}

int nbd_decode_opt_reply_hdr(const uint8_t *p, size_t len, struct nbd_opt_reply *r)
{
    if (len < NBD_OPT_REPLY_HDR_LEN) return 0;
    struct bytes_r g;
    br_init(&g, p, NBD_OPT_REPLY_HDR_LEN);
    if (br_be64(&g) != NBD_REP_MAGIC) return -EPROTO;
    r->opt = br_be32(&g);
    r->type = br_be32(&g);
    r->len = br_be32(&g);
    return NBD_OPT_REPLY_HDR_LEN;
}

int nbd_encode_rep_ack(uint8_t *out, size_t cap, uint32_t opt)
{
    return nbd_encode_opt_reply_hdr(out, cap, opt, NBD_REP_ACK, 0);
}

int nbd_encode_rep_server(uint8_t *out, size_t cap, uint32_t opt, const char *name,
                          uint32_t name_len)
{
    if (cap < NBD_OPT_REPLY_HDR_LEN + 4 || cap - NBD_OPT_REPLY_HDR_LEN - 4 < name_len)
        return -EMSGSIZE;
    struct bytes_w w;
    bw_init(&w, out, NBD_OPT_REPLY_HDR_LEN + 4 + (size_t)name_len);
    put_reply_hdr(&w, opt, NBD_REP_SERVER, 4 + name_len);
    bw_be32(&w, name_len);
    bw_mem(&w, name, name_len);
    return (int)w.used;
}

int nbd_decode_rep_server(const uint8_t *p, uint32_t len, struct nbd_str *name)
{
    if (len < 4) return -EINVAL;
    struct bytes_r r;
    br_init(&r, p, len);
    uint32_t n = br_be32(&r);
    if (n > r.left) return -EINVAL;
    name->ptr = (const char *)r.p;
    name->len = n;
    return 0;
}

int nbd_encode_rep_info_export(uint8_t *out, size_t cap, uint32_t opt, uint64_t size,
                               uint16_t tflags)
{
    if (cap < NBD_OPT_REPLY_HDR_LEN + 12) return -EMSGSIZE;
    struct bytes_w w;
    bw_init(&w, out, NBD_OPT_REPLY_HDR_LEN + 12);
    put_reply_hdr(&w, opt, NBD_REP_INFO, 12);
    bw_be16(&w, NBD_INFO_EXPORT);
    bw_be64(&w, size);
    bw_be16(&w, tflags);
    return NBD_OPT_REPLY_HDR_LEN + 12;
}

int nbd_encode_rep_info_block_size(uint8_t *out, size_t cap, uint32_t opt, uint32_t min_block,
                                   uint32_t pref_block, uint32_t max_payload)
{
    if (cap < NBD_OPT_REPLY_HDR_LEN + 14) return -EMSGSIZE;
    struct bytes_w w;
    bw_init(&w, out, NBD_OPT_REPLY_HDR_LEN + 14);
    put_reply_hdr(&w, opt, NBD_REP_INFO, 14);
    bw_be16(&w, NBD_INFO_BLOCK_SIZE);
    bw_be32(&w, min_block);
    bw_be32(&w, pref_block);
    bw_be32(&w, max_payload);
    return NBD_OPT_REPLY_HDR_LEN + 14;
}

int nbd_encode_rep_info_str(uint8_t *out, size_t cap, uint32_t opt, uint16_t type,
                            const char *s, uint32_t len)
{
    if (cap < NBD_OPT_REPLY_HDR_LEN + 2 || cap - NBD_OPT_REPLY_HDR_LEN - 2 < len) return -EMSGSIZE;
    struct bytes_w w;
    bw_init(&w, out, NBD_OPT_REPLY_HDR_LEN + 2 + (size_t)len);
    put_reply_hdr(&w, opt, NBD_REP_INFO, 2 + len);
    bw_be16(&w, type);
    bw_mem(&w, s, len);
    return (int)w.used;
}

int nbd_decode_rep_info(const uint8_t *p, uint32_t len, struct nbd_info *info)
{
    if (len < 2) return -EINVAL;
    memset(info, 0, sizeof(*info));
    struct bytes_r r;
    br_init(&r, p, len);
    info->type = br_be16(&r);
    switch (info->type) {
    case NBD_INFO_EXPORT:
        if (len != 12) return -EINVAL;
        info->size = br_be64(&r);
        info->tflags = br_be16(&r);
        return 0;
    case NBD_INFO_BLOCK_SIZE:
        if (len != 14) return -EINVAL;
        info->min_block = br_be32(&r);
        info->pref_block = br_be32(&r);
        info->max_payload = br_be32(&r);
        return 0;
    case NBD_INFO_NAME:
    case NBD_INFO_DESCRIPTION:
        info->str.ptr = (const char *)r.p;
        info->str.len = (uint32_t)r.left;
        return 0;
    default:
        return 0; /* "The client MUST ignore information replies it does not understand" */
    }
}

int nbd_encode_rep_meta_context(uint8_t *out, size_t cap, uint32_t opt, uint32_t id,
                                const char *name, uint32_t name_len)
{
    if (cap < NBD_OPT_REPLY_HDR_LEN + 4 || cap - NBD_OPT_REPLY_HDR_LEN - 4 < name_len)
        return -EMSGSIZE;
    struct bytes_w w;
    bw_init(&w, out, NBD_OPT_REPLY_HDR_LEN + 4 + (size_t)name_len);
    put_reply_hdr(&w, opt, NBD_REP_META_CONTEXT, 4 + name_len);
    bw_be32(&w, id);
    bw_mem(&w, name, name_len);
    return (int)w.used;
}

int nbd_decode_rep_meta_context(const uint8_t *p, uint32_t len, uint32_t *id,
                                struct nbd_str *name)
{
    if (len < 4) return -EINVAL;
    struct bytes_r r;
    br_init(&r, p, len);
    *id = br_be32(&r);
    name->ptr = (const char *)r.p;
    name->len = (uint32_t)r.left;
    return 0;
}

int nbd_encode_rep_error(uint8_t *out, size_t cap, uint32_t opt, uint32_t type, const char *msg)
{
    if (cap < NBD_OPT_REPLY_HDR_LEN) return -EMSGSIZE;
    size_t ml = msg ? strlen(msg) : 0;
    ml = BD_MIN(ml, BD_MIN(NBD_MSG_MAX, cap - NBD_OPT_REPLY_HDR_LEN));
    struct bytes_w w;
    bw_init(&w, out, NBD_OPT_REPLY_HDR_LEN + ml);
    put_reply_hdr(&w, opt, type, (uint32_t)ml);
    bw_mem(&w, msg, ml);
    return (int)w.used;
}

int nbd_encode_export_name_reply(uint8_t *out, size_t cap, uint64_t size, uint16_t tflags,
                                 bool no_zeroes)
{
    size_t n = no_zeroes ? 10 : NBD_EXPORT_NAME_REPLY_LEN;
    if (cap < n) return -EMSGSIZE;
    struct bytes_w w;
    bw_init(&w, out, n);
    bw_be64(&w, size);
    bw_be16(&w, tflags);
    if (!no_zeroes) bw_zeros(&w, NBD_EXPORT_NAME_REPLY_LEN - 10);
    return (int)n;
}

int nbd_decode_export_name_reply(const uint8_t *p, size_t len, uint64_t *size, uint16_t *tflags)
{
    if (len < 10) return 0;
    struct bytes_r r;
    br_init(&r, p, 10);
    *size = br_be64(&r);
    *tflags = br_be16(&r);
    return 10;
}

/* ---- handshake decisions ---------------------------------------------------- */

void nbd_hs_init(struct nbd_hs *hs, uint16_t hflags_offered)
{
    memset(hs, 0, sizeof(*hs));
    hs->hflags_offered = hflags_offered;
    hs->max_options = NBD_MAX_OPTIONS;
}

void nbd_hs_set_tls(struct nbd_hs *hs, enum nbd_tls_mode mode)
{
    hs->tls_mode = (uint8_t)mode;
}

void nbd_hs_tls_started(struct nbd_hs *hs)
{
    hs->tls = true;
    hs->structured = false;
    hs->meta_base_alloc = false;
    hs->meta_name_len = 0;
}

int nbd_hs_client_flags(struct nbd_hs *hs, uint32_t cflags)
{
    uint32_t known = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;
    if (cflags & ~known) return -EPROTO;
    if ((cflags & NBD_FLAG_C_NO_ZEROES) && !(hs->hflags_offered & NBD_FLAG_NO_ZEROES))
        return -EPROTO;
    if ((cflags & NBD_FLAG_C_FIXED_NEWSTYLE) && !(hs->hflags_offered & NBD_FLAG_FIXED_NEWSTYLE))
        return -EPROTO;
    hs->cflags = cflags;
    return 0;
}

static enum nbd_hs_action reply_err(uint32_t opt, uint32_t type, uint8_t *out, size_t cap,
                                    size_t *outlen, enum nbd_hs_action act, const char *fmt, ...)
    BD_PRINTF(7, 8);

static enum nbd_hs_action reply_err(uint32_t opt, uint32_t type, uint8_t *out, size_t cap,
                                    size_t *outlen, enum nbd_hs_action act, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int n = nbd_encode_rep_error(out, cap, opt, type, msg);
    *outlen = n > 0 ? (size_t)n : 0;
    return act;
}

enum nbd_hs_action nbd_hs_header(struct nbd_hs *hs, const struct nbd_opt_hdr *h, uint8_t *out,
                                 size_t cap, size_t *outlen)
{
    *outlen = 0;
    hs->n_options++;
    if (!(hs->cflags & NBD_FLAG_C_FIXED_NEWSTYLE) && h->opt != NBD_OPT_EXPORT_NAME) {
        /* A non-fixed client cannot parse option replies: the only way to
         * say no is to hang up ("Fixed newstyle negotiation"). */
        return NBD_HS_CLOSE;
    }
    if (h->len > NBD_OPT_MAX_LEN) {
        if (!(hs->cflags & NBD_FLAG_C_FIXED_NEWSTYLE) || h->opt == NBD_OPT_EXPORT_NAME)
            return NBD_HS_CLOSE;
        /* We will not read it, so we cannot stay in sync: say why, then
         * hang up (CVE-2017-15119). */
        return reply_err(h->opt, NBD_REP_ERR_INVALID, out, cap, outlen, NBD_HS_CLOSE,
                         "option length %u exceeds the limit of %u bytes", h->len,
                         NBD_OPT_MAX_LEN);
    }
    if (hs->n_options > hs->max_options) {
        if (h->opt == NBD_OPT_EXPORT_NAME) return NBD_HS_CLOSE;
        return reply_err(h->opt, NBD_REP_ERR_TOO_BIG, out, cap, outlen, NBD_HS_CLOSE,
                         "too many options (%u) in one handshake", hs->n_options);
    }
    return NBD_HS_REPLY;
}

static size_t put_ack(uint32_t opt, uint8_t *out, size_t cap)
{
    int n = nbd_encode_rep_ack(out, cap, opt);
    return n > 0 ? (size_t)n : 0;
}

/* "base:allocation" selected by query Q (SET), or matched (LIST, where
 * "base:" is the namespace wildcard).  Unknown namespaces and leaves are
 * ignored, as "the server MUST ignore query strings belonging to an
 * unknown namespace". */
static bool query_matches(struct nbd_str q, bool list)
{
    static const char full[] = "base:allocation";
    if (q.len == sizeof(full) - 1 && memcmp(q.ptr, full, q.len) == 0) return true;
    return list && q.len == 5 && memcmp(q.ptr, "base:", 5) == 0;
}

static enum nbd_hs_action hs_meta(struct nbd_hs *hs, const struct nbd_opt_hdr *h,
                                  const uint8_t *p, uint8_t *out, size_t cap, size_t *outlen)
{
    bool set = h->opt == NBD_OPT_SET_META_CONTEXT;
    if (set) hs->meta_base_alloc = false; /* replaced "including when this command fails" */
    if (set && !hs->structured)
        return reply_err(h->opt, NBD_REP_ERR_INVALID, out, cap, outlen, NBD_HS_REPLY,
                         "%s needs NBD_OPT_STRUCTURED_REPLY first", nbd_opt_name(h->opt));
    struct nbd_opt_meta m;
    const char *why;
    if (nbd_decode_opt_meta(p, h->len, &m, &why) < 0)
        return reply_err(h->opt, NBD_REP_ERR_INVALID, out, cap, outlen, NBD_HS_REPLY,
                         "%s: %s", nbd_opt_name(h->opt), why);
    bool match = false;
    if (m.n_queries == 0) {
        match = !set; /* LIST: everything; SET: "MUST select no metadata contexts" */
    } else {
        uint32_t pos = 0;
        struct nbd_str q;
        while (!match && nbd_opt_meta_next(&m, &pos, &q)) match = query_matches(q, !set);
    }
    size_t o = 0;
    if (match) {
        static const char ctx[] = "base:allocation";
        int n = nbd_encode_rep_meta_context(out, cap, h->opt, set ? NBD_META_ID_BASE_ALLOC : 0,
                                            ctx, sizeof(ctx) - 1);
        o = n > 0 ? (size_t)n : 0;
    }
    if (set) {
        hs->meta_base_alloc = match;
        hs->meta_name_len = m.name.len;
        memcpy(hs->meta_name, m.name.ptr, BD_MIN(m.name.len, NBD_HS_NAME_KEEP));
    }
    o += put_ack(h->opt, out + o, cap - o);
    *outlen = o;
    return NBD_HS_REPLY;
}

static enum nbd_hs_action hs_info_go(const struct nbd_opt_hdr *h, const uint8_t *p,
                                     uint8_t *out, size_t cap, size_t *outlen,
                                     struct nbd_hs_req *req)
{
    struct nbd_opt_go g;
    const char *why;
    if (nbd_decode_opt_go(p, h->len, &g, &why) < 0)
        return reply_err(h->opt, NBD_REP_ERR_INVALID, out, cap, outlen, NBD_HS_REPLY, "%s: %s",
                         nbd_opt_name(h->opt), why);
    req->name = g.name;
    req->info_mask = 1u << NBD_INFO_EXPORT;
    for (unsigned i = 0; i < g.n_info; i++) {
        uint16_t t = nbd_opt_go_info(&g, i);
        if (t < 32)
            req->info_mask |= 1u << t; /* "MUST ignore ... requests it does not understand" */
    }
    return h->opt == NBD_OPT_GO ? NBD_HS_GO : NBD_HS_INFO;
}

enum nbd_hs_action nbd_hs_option(struct nbd_hs *hs, const struct nbd_opt_hdr *h,
                                 const uint8_t *p, uint8_t *out, size_t cap, size_t *outlen,
                                 struct nbd_hs_req *req)
{
    *outlen = 0;
    memset(req, 0, sizeof(*req));
    req->opt = h->opt;
    if (hs->tls_mode == NBD_TLS_REQUIRE && !hs->tls && h->opt != NBD_OPT_STARTTLS &&
        h->opt != NBD_OPT_ABORT) {
        /* FORCEDTLS: "If the server receives a request to enter
         * transmission mode via NBD_OPT_EXPORT_NAME when TLS has not been
         * initiated, then as this request cannot error, it MUST terminate
         * the session." */
        if (h->opt == NBD_OPT_EXPORT_NAME) return NBD_HS_REFUSE;
        hs->tls_refused++;
        return reply_err(h->opt, NBD_REP_ERR_TLS_REQD, out, cap, outlen, NBD_HS_REPLY,
                         "TLS is required: send NBD_OPT_STARTTLS first");
    }
    switch (h->opt) {
    case NBD_OPT_EXPORT_NAME: {
        const char *why;
        if (nbd_decode_opt_export_name(p, h->len, &req->name, &why) < 0) return NBD_HS_CLOSE;
        return NBD_HS_EXPORT_NAME;
    }
    case NBD_OPT_ABORT:
        /* "a server SHOULD ignore any data sent by the client" */
        *outlen = put_ack(h->opt, out, cap);
        return NBD_HS_ABORT;
    case NBD_OPT_LIST:
        if (h->len != 0)
            return reply_err(h->opt, NBD_REP_ERR_INVALID, out, cap, outlen, NBD_HS_REPLY,
                             "NBD_OPT_LIST takes no data (got %u bytes)", h->len);
        return NBD_HS_LIST;
    case NBD_OPT_STARTTLS:
        if (h->len != 0)
            return reply_err(h->opt, NBD_REP_ERR_INVALID, out, cap, outlen, NBD_HS_REPLY,
                             "NBD_OPT_STARTTLS takes no data");
        /* NOTLS mode: "MUST respond with NBD_REP_ERR_POLICY (if it does
         * not support TLS for policy reasons)". */
        if (hs->tls_mode == NBD_TLS_OFF)
            return reply_err(h->opt, NBD_REP_ERR_POLICY, out, cap, outlen, NBD_HS_REPLY,
                             "TLS is not configured on this server");
        /* "If the server receives NBD_OPT_STARTTLS when TLS has already
         * been negotiated, it MUST reply with NBD_REP_ERR_INVALID." */
        if (hs->tls)
            return reply_err(h->opt, NBD_REP_ERR_INVALID, out, cap, outlen, NBD_HS_REPLY,
                             "TLS is already negotiated");
        *outlen = put_ack(h->opt, out, cap);
        return NBD_HS_STARTTLS;
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        return hs_info_go(h, p, out, cap, outlen, req);
    case NBD_OPT_STRUCTURED_REPLY:
        if (h->len != 0)
            return reply_err(h->opt, NBD_REP_ERR_INVALID, out, cap, outlen, NBD_HS_REPLY,
                             "NBD_OPT_STRUCTURED_REPLY takes no data");
        if (hs->structured)
            return reply_err(h->opt, NBD_REP_ERR_INVALID, out, cap, outlen, NBD_HS_REPLY,
                             "structured replies already negotiated");
        hs->structured = true;
        *outlen = put_ack(h->opt, out, cap);
        return NBD_HS_REPLY;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        return hs_meta(hs, h, p, out, cap, outlen);
    default:
        /* The payload has been read, so we stay in sync (nbd-server 2ab3a2d). */
        return reply_err(h->opt, NBD_REP_ERR_UNSUP, out, cap, outlen, NBD_HS_REPLY,
                         "option %u is not supported", h->opt);
    }
}

int nbd_hs_encode_export(const struct nbd_hs_req *req, const struct nbd_export_desc *x,
                         uint8_t *out, size_t cap)
{
    size_t o = 0;
    int n = nbd_encode_rep_info_export(out, cap, req->opt, x->size, x->tflags);
    if (n < 0) return n;
    o += (size_t)n;
    n = nbd_encode_rep_info_block_size(out + o, cap - o, req->opt, x->min_block, x->pref_block,
                                       x->max_payload);
    if (n < 0) return n;
    o += (size_t)n;
    if ((req->info_mask & (1u << NBD_INFO_NAME)) && x->name) {
        size_t len = strlen(x->name);
        if (len > NBD_HS_NAME_KEEP) return -EMSGSIZE;
        n = nbd_encode_rep_info_str(out + o, cap - o, req->opt, NBD_INFO_NAME, x->name,
                                    (uint32_t)len);
        if (n < 0) return n;
        o += (size_t)n;
    }
    if ((req->info_mask & (1u << NBD_INFO_DESCRIPTION)) && x->description) {
        size_t len = BD_MIN(strlen(x->description), (size_t)NBD_HS_NAME_KEEP);
        n = nbd_encode_rep_info_str(out + o, cap - o, req->opt, NBD_INFO_DESCRIPTION,
                                    x->description, (uint32_t)len);
        if (n < 0) return n;
        o += (size_t)n;
    }
    n = nbd_encode_rep_ack(out + o, cap - o, req->opt);
    if (n < 0) return n;
    return (int)(o + (size_t)n);
}

void nbd_hs_go_done(struct nbd_hs *hs, struct nbd_str name)
{
    bool same = hs->meta_name_len == name.len && name.len <= NBD_HS_NAME_KEEP &&
                memcmp(hs->meta_name, name.ptr, name.len) == 0;
    if (!same) hs->meta_base_alloc = false;
}

void nbd_hs_list_grant(struct nbd_hs *hs, unsigned n_exports)
{
    unsigned grant = n_exports > 100000 ? 100000 : n_exports;
    hs->max_options += grant * (NBD_MAX_OPTIONS / 2);
}

/* ---- transmission: requests and replies ------------------------------------- */

int nbd_encode_request(uint8_t *out, size_t cap, const struct nbd_request *r)
{
    if (cap < NBD_REQUEST_LEN) return -EMSGSIZE;
    struct bytes_w w;
    bw_init(&w, out, NBD_REQUEST_LEN);
    bw_be32(&w, NBD_REQUEST_MAGIC);
    bw_be16(&w, r->flags);
    bw_be16(&w, r->type);
    bw_be64(&w, r->cookie);
    bw_be64(&w, r->off);
    bw_be32(&w, r->len);
    return NBD_REQUEST_LEN;
}

int nbd_decode_request(const uint8_t *p, size_t len, struct nbd_request *r)
{
    if (len < NBD_REQUEST_LEN) return 0;
    struct bytes_r g;
    br_init(&g, p, NBD_REQUEST_LEN);
    if (br_be32(&g) != NBD_REQUEST_MAGIC) return -EPROTO;
    r->flags = br_be16(&g);
    r->type = br_be16(&g);
    r->cookie = br_be64(&g);
    r->off = br_be64(&g);
    r->len = br_be32(&g);
    return NBD_REQUEST_LEN;
}

int nbd_encode_simple_reply(uint8_t *out, size_t cap, uint32_t err, uint64_t cookie)
{
    if (cap < NBD_SIMPLE_REPLY_LEN) return -EMSGSIZE;
    struct bytes_w w;
    bw_init(&w, out, NBD_SIMPLE_REPLY_LEN);
    bw_be32(&w, NBD_SIMPLE_REPLY_MAGIC);
    bw_be32(&w, err);
    bw_be64(&w, cookie);
    return NBD_SIMPLE_REPLY_LEN;
}

int nbd_decode_simple_reply(const uint8_t *p, size_t len, uint32_t *err, uint64_t *cookie)
{
    if (len < NBD_SIMPLE_REPLY_LEN) return 0;
    struct bytes_r r;
    br_init(&r, p, NBD_SIMPLE_REPLY_LEN);
    if (br_be32(&r) != NBD_SIMPLE_REPLY_MAGIC) return -EPROTO;
    *err = br_be32(&r);
    *cookie = br_be64(&r);
    return NBD_SIMPLE_REPLY_LEN;
}

static void put_chunk_hdr(struct bytes_w *w, const struct nbd_chunk *c)
{
    bw_be32(w, NBD_STRUCTURED_REPLY_MAGIC);
    bw_be16(w, c->flags);
    bw_be16(w, c->type);
    bw_be64(w, c->cookie);
    bw_be32(w, c->len);
}

int nbd_encode_chunk_hdr(uint8_t *out, size_t cap, const struct nbd_chunk *c)
{
    if (cap < NBD_CHUNK_HDR_LEN) return -EMSGSIZE;
    struct bytes_w w;
    bw_init(&w, out, NBD_CHUNK_HDR_LEN);
    put_chunk_hdr(&w, c);
    return NBD_CHUNK_HDR_LEN;
}

int nbd_decode_chunk_hdr(const uint8_t *p, size_t len, struct nbd_chunk *c)
{
    if (len < NBD_CHUNK_HDR_LEN) return 0;
    struct bytes_r r;
    br_init(&r, p, NBD_CHUNK_HDR_LEN);
    if (br_be32(&r) != NBD_STRUCTURED_REPLY_MAGIC) return -EPROTO;
    c->flags = br_be16(&r);
    c->type = br_be16(&r);
    c->cookie = br_be64(&r);
    c->len = br_be32(&r);
    return NBD_CHUNK_HDR_LEN;
}

int nbd_encode_chunk_none(uint8_t *out, size_t cap, uint64_t cookie)
{
    struct nbd_chunk c = {.flags = NBD_REPLY_FLAG_DONE, .type = NBD_REPLY_TYPE_NONE,
                          .cookie = cookie, .len = 0};
    return nbd_encode_chunk_hdr(out, cap, &c);
}

int nbd_encode_chunk_data_hdr(uint8_t *out, size_t cap, uint16_t flags, uint64_t cookie,
                              uint64_t off, uint32_t data_len)
{
    if (cap < NBD_CHUNK_DATA_HDR_LEN || data_len > UINT32_MAX - 8) return -EMSGSIZE;
    struct nbd_chunk c = {.flags = flags, .type = NBD_REPLY_TYPE_OFFSET_DATA, .cookie = cookie,
                          .len = 8 + data_len};
    struct bytes_w w;
    bw_init(&w, out, NBD_CHUNK_DATA_HDR_LEN);
    put_chunk_hdr(&w, &c);
    bw_be64(&w, off);
    return NBD_CHUNK_DATA_HDR_LEN;
}

int nbd_decode_chunk_data(const uint8_t *p, uint32_t len, uint64_t *off, const uint8_t **data,
                          uint32_t *data_len)
{
    if (len < 9) return -EINVAL; /* "length MUST be at least 9" */
    struct bytes_r r;
    br_init(&r, p, len);
    *off = br_be64(&r);
    *data = r.p;
    *data_len = (uint32_t)r.left;
    return 0;
}

int nbd_encode_chunk_hole(uint8_t *out, size_t cap, uint16_t flags, uint64_t cookie,
                          uint64_t off, uint32_t hole_len)
{
    if (cap < NBD_CHUNK_HOLE_LEN) return -EMSGSIZE;
    struct nbd_chunk c = {.flags = flags, .type = NBD_REPLY_TYPE_OFFSET_HOLE, .cookie = cookie,
                          .len = 12};
    struct bytes_w w;
    bw_init(&w, out, NBD_CHUNK_HOLE_LEN);
    put_chunk_hdr(&w, &c);
    bw_be64(&w, off);
    bw_be32(&w, hole_len);
    return NBD_CHUNK_HOLE_LEN;
}

int nbd_decode_chunk_hole(const uint8_t *p, uint32_t len, uint64_t *off, uint32_t *hole_len)
{
    if (len != 12) return -EINVAL;
    struct bytes_r r;
    br_init(&r, p, len);
    *off = br_be64(&r);
    *hole_len = br_be32(&r);
    return *hole_len ? 0 : -EINVAL; /* "MUST be nonzero" */
}

int nbd_encode_chunk_bs_hdr(uint8_t *out, size_t cap, uint16_t flags, uint64_t cookie,
                            uint32_t ctx_id, uint32_t n_extents)
{
    if (cap < NBD_CHUNK_BS_HDR_LEN || n_extents > (UINT32_MAX - 4) / NBD_EXTENT_LEN)
        return -EMSGSIZE;
    struct nbd_chunk c = {.flags = flags, .type = NBD_REPLY_TYPE_BLOCK_STATUS, .cookie = cookie,
                          .len = 4 + NBD_EXTENT_LEN * n_extents};
    struct bytes_w w;
    bw_init(&w, out, NBD_CHUNK_BS_HDR_LEN);
    put_chunk_hdr(&w, &c);
    bw_be32(&w, ctx_id);
    return NBD_CHUNK_BS_HDR_LEN;
}

void nbd_encode_extent(uint8_t out[NBD_EXTENT_LEN], uint32_t len, uint32_t state)
{
    struct bytes_w w;
    bw_init(&w, out, NBD_EXTENT_LEN);
    bw_be32(&w, len);
    bw_be32(&w, state);
}

int nbd_decode_chunk_bs(const uint8_t *p, uint32_t len, uint32_t *ctx_id, uint32_t *n_extents)
{
    /* "length MUST be 4 + (a positive integer multiple of 8)" */
    if (len < 4 + NBD_EXTENT_LEN || (len - 4) % NBD_EXTENT_LEN) return -EINVAL;
    struct bytes_r r;
    br_init(&r, p, len);
    *ctx_id = br_be32(&r);
    *n_extents = (uint32_t)(r.left / NBD_EXTENT_LEN);
    return 0;
}

void nbd_chunk_bs_extent(const uint8_t *p, uint32_t i, uint32_t *len, uint32_t *state)
{
    struct bytes_r r;
    br_init(&r, p + 4 + NBD_EXTENT_LEN * (size_t)i, NBD_EXTENT_LEN);
    *len = br_be32(&r);
    *state = br_be32(&r);
}

int nbd_encode_chunk_error(uint8_t *out, size_t cap, uint16_t flags, uint64_t cookie,
                           uint32_t err, const char *msg)
{
    if (cap < NBD_CHUNK_HDR_LEN + 6) return -EMSGSIZE;
    size_t ml = msg ? strlen(msg) : 0;
    ml = BD_MIN(ml, BD_MIN(NBD_MSG_MAX, cap - NBD_CHUNK_HDR_LEN - 6));
    struct nbd_chunk c = {.flags = flags, .type = NBD_REPLY_TYPE_ERROR, .cookie = cookie,
                          .len = (uint32_t)(6 + ml)};
    struct bytes_w w;
    bw_init(&w, out, NBD_CHUNK_HDR_LEN + 6 + ml);
    put_chunk_hdr(&w, &c);
    bw_be32(&w, err);
    bw_be16(&w, (uint16_t)ml);
    bw_mem(&w, msg, ml);
    return (int)w.used;
}

int nbd_decode_chunk_error(const uint8_t *p, uint32_t len, uint32_t *err, struct nbd_str *msg)
{
    if (len < 6) return -EINVAL;
    struct bytes_r r;
    br_init(&r, p, len);
    *err = br_be32(&r);
    uint16_t ml = br_be16(&r);
    if (*err == 0 || ml > r.left) return -EINVAL;
    msg->ptr = (const char *)r.p;
    msg->len = ml;
    return 0;
}

/* ---- transmission decisions ------------------------------------------------- */

/* Command flags valid per command; FUA is "valid for all commands"
 * once advertised. */
static uint16_t flags_valid_for(uint16_t type, uint16_t tflags)
{
    uint16_t f = (tflags & NBD_FLAG_SEND_FUA) ? NBD_CMD_FLAG_FUA : 0;
    switch (type) {
    case NBD_CMD_READ:
        if (tflags & NBD_FLAG_SEND_DF) f |= NBD_CMD_FLAG_DF;
        return f;
    case NBD_CMD_WRITE_ZEROES:
        f |= NBD_CMD_FLAG_NO_HOLE;
        if (tflags & NBD_FLAG_SEND_FAST_ZERO) f |= NBD_CMD_FLAG_FAST_ZERO;
        return f;
    case NBD_CMD_BLOCK_STATUS: return f | NBD_CMD_FLAG_REQ_ONE;
    default: return f;
    }
}

int nbd_check_request(const struct nbd_request *r, const struct nbd_export_caps *caps)
{
    if (r->type == NBD_CMD_WRITE && r->len > NBD_MAX_WRITE) return -EPROTO;
    bool writes = r->type == NBD_CMD_WRITE || r->type == NBD_CMD_TRIM ||
                  r->type == NBD_CMD_WRITE_ZEROES;
    switch (r->type) {
    case NBD_CMD_READ:
    case NBD_CMD_WRITE:
    case NBD_CMD_FLUSH:
        break;
    case NBD_CMD_TRIM:
        if (!(caps->tflags & NBD_FLAG_SEND_TRIM) && !(caps->tflags & NBD_FLAG_READ_ONLY))
            return NBD_EINVAL;
        break;
    case NBD_CMD_WRITE_ZEROES:
        if (!(caps->tflags & NBD_FLAG_SEND_WRITE_ZEROES) && !(caps->tflags & NBD_FLAG_READ_ONLY))
            return NBD_EINVAL;
        break;
    case NBD_CMD_BLOCK_STATUS:
        break;
    case NBD_CMD_CACHE:
        if (!(caps->tflags & NBD_FLAG_SEND_CACHE)) return NBD_EINVAL;
        break;
    default:
        return NBD_EINVAL; /* unknown, CACHE (not advertised), DISC (handled before) */
    }
    if (writes && (caps->tflags & NBD_FLAG_READ_ONLY)) return NBD_EPERM;
    if (r->flags & ~flags_valid_for(r->type, caps->tflags)) return NBD_EINVAL;
    if (r->type == NBD_CMD_BLOCK_STATUS && (!caps->structured || !caps->meta_base_alloc))
        return NBD_EINVAL;
    if (r->type == NBD_CMD_FLUSH) return (r->off || r->len) ? NBD_EINVAL : 0;
    if (r->len > caps->size || r->off > caps->size - r->len)
        return (r->type == NBD_CMD_WRITE || r->type == NBD_CMD_WRITE_ZEROES) ? NBD_ENOSPC
                                                                              : NBD_EINVAL;
    uint64_t mask = caps->min_block - 1;
    if ((r->off & mask) || (r->len & mask)) return NBD_EINVAL;
    if ((r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE || r->type == NBD_CMD_CACHE) &&
        r->len > caps->max_payload)
        return NBD_EINVAL;
    if (r->len == 0) return NBD_EINVAL;
    return 0;
}
