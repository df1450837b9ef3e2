/* nbd.h: the NBD protocol codec (fixed newstyle), pure: no sockets, no
 * reactor, no allocation.  The spec is doc/proto.md of
 * NetworkBlockDevice/nbd; section names below quote it.
 *
 * Every integer is big endian; nbd.c writes and reads each message with
 * the bytes.h cursors (bw_be* / br_be*) in the order of these tables.
 *
 * Handshake ("Newstyle negotiation", "Fixed newstyle negotiation"): the
 * server's greeting, the client's flags, then options and their replies
 * until GO is answered ACK (or EXPORT_NAME is answered with its reply).
 *
 *  greeting (S)                 client flags (C)
 *  OFFSET SIZE FIELD            OFFSET SIZE FIELD
 *    0     8   NBD_MAGIC          0     4   client flags
 *    8     8   NBD_IHAVEOPT
 *   16     2   handshake flags  (NBD_CLIENT_FLAGS_LEN)
 *  (NBD_GREETING_LEN)
 *
 *  option (C)                   option reply (S)
 *  OFFSET SIZE FIELD            OFFSET SIZE FIELD
 *    0     8   NBD_IHAVEOPT       0     8   NBD_REP_MAGIC
 *    8     4   option             8     4   option answered
 *   12     4   len               12     4   reply type
 *   16    len  payload           16     4   len
 *  (NBD_OPT_HDR_LEN + len)       20    len  payload
 *                               (NBD_OPT_REPLY_HDR_LEN + len)
 *
 *  option payloads (n, q: a length read just before)
 *  INFO, GO                     LIST_ / SET_META_CONTEXT     EXPORT_NAME
 *  OFFSET SIZE FIELD            OFFSET SIZE FIELD            OFFSET SIZE FIELD
 *    0     4   name length n      0     4   name length n      0    len  name
 *    4     n   name               4     n   name
 *   4+n    2   count c           4+n    4   count c
 *   6+n   2c   info types        8+n    -   c queries: 4 length q, q bytes
 *
 *  reply payloads
 *  REP_SERVER                   REP_INFO, NBD_INFO_EXPORT    REP_INFO, NBD_INFO_BLOCK_SIZE
 *  OFFSET SIZE FIELD            OFFSET SIZE FIELD            OFFSET SIZE FIELD
 *    0     4   name length n      0     2   info type          0     2   info type
 *    4     n   name               2     8   export size        2     4   minimum block
 *                                10     2   transm. flags      6     4   preferred block
 *                                                             10     4   maximum payload
 *  REP_INFO, NBD_INFO_NAME,     REP_META_CONTEXT             REP_ERR_*
 *  NBD_INFO_DESCRIPTION
 *  OFFSET SIZE FIELD            OFFSET SIZE FIELD            OFFSET SIZE FIELD
 *    0     2   info type          0     4   context id         0    len  message
 *    2     -   the string         4     -   context name
 *
 *  EXPORT_NAME's reply (S), NBD_EXPORT_NAME_REPLY_LEN
 *  OFFSET SIZE FIELD
 *    0     8   export size
 *    8     2   transmission flags
 *   10   124   zero (absent with NO_ZEROES)
 *
 * Transmission ("Request message", "Simple reply message", "Structured
 * reply chunk message"):
 *
 *  request (C)                  simple reply (S)             structured chunk (S)
 *  OFFSET SIZE FIELD            OFFSET SIZE FIELD            OFFSET SIZE FIELD
 *    0     4   0x25609513         0     4   0x67446698         0     4   0x668e33ef
 *    4     2   command flags      4     4   error              4     2   flags
 *    6     2   type               8     8   cookie             6     2   type
 *    8     8   cookie            16     -   READ data          8     8   cookie
 *   16     8   offset           (NBD_SIMPLE_REPLY_LEN)        16     4   len
 *   24     4   length                                         20    len  payload
 *   28     -   WRITE data                                    (NBD_CHUNK_HDR_LEN + len)
 *  (NBD_REQUEST_LEN)
 *
 *  chunk payloads
 *  OFFSET_DATA        OFFSET_HOLE        BLOCK_STATUS              ERROR
 *  OFF SIZE FIELD     OFF SIZE FIELD     OFF SIZE FIELD            OFF SIZE FIELD
 *   0   8   offset     0   8   offset     0   4   context id        0   4   error
 *   8   -   data       8   4   length     4   8e  e extents, each:  4   2   msg length m
 *                                               4 length, 4 flags   6   m   message
 *
 * Codec rules (as wire.h): nbd_encode_* write into caller storage and
 * return bytes written (or -EMSGSIZE when CAP is short); nbd_decode_* of a
 * fixed-size message return bytes consumed, 0 for "need more", -EPROTO for
 * bad magic; decoders of option payloads and reply payloads parse a whole
 * payload and return 0 or -EINVAL.  Decoded strings (struct nbd_str) point
 * into the input and are NOT NUL-terminated.
 *
 * Beyond syntax the codec holds the protocol's decisions that need no I/O,
 * so they are unit-tested without sockets (STYLE.md §7, the select/apply
 * split): nbd_hs_* decide each handshake option and write its reply;
 * nbd_check_request validates a transmission request (nbdkit's
 * validate_request).  The server (src/roles/agent/agent_nbd.c) does the I/O and
 * the volume calls those decisions ask for.
 *
 * TLS ("TLS support"): a server in NOTLS mode (NBD_TLS_OFF, nbd_hs_init's
 * default) answers STARTTLS with ERR_POLICY; with NBD_TLS_ON
 * (SELECTIVETLS with no TLS-only export) it acknowledges the first
 * STARTTLS, the server starts TLS, and nbd_hs_tls_started then drops
 * every negotiated state ("the server MUST NOT preserve any negotiation
 * state ... issued before this command", nbdkit CVE-2021-3716); with
 * NBD_TLS_REQUIRE (FORCEDTLS) every other option before TLS but ABORT is
 * ERR_TLS_REQD, and EXPORT_NAME, which cannot be refused, ends the
 * session.  What the server must do with plaintext the client sent after
 * STARTTLS (refuse it) is the server's: the codec never sees those bytes.
 *
 * Bad input and the CVEs it recalls (CONTRACT.md §3 4.1, 4.2):
 *   - an option length above NBD_OPT_MAX_LEN is refused from its header,
 *     before any byte of it is read or allocated (qemu CVE-2017-15119);
 *   - a name length beyond the option length is ERR_INVALID, computed
 *     without overflow (nbd-server CVE-2022-26495);
 *   - names over NBD_NAME_MAX are ERR_INVALID; error messages quote at
 *     most NBD_QUOTE_MAX bytes of a name (qemu CVE-2020-10761);
 *   - transmission lengths are checked overflow-safely against the export
 *     size (off > size - len, never off + len > size);
 *   - a WRITE longer than NBD_MAX_WRITE closes the connection before its
 *     payload is read or allocated (CVE-2005-3534, CVE-2011-0530). */
#ifndef BD_NBD_H
#define BD_NBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- magics and fixed sizes ---------------------------------------------- */

#define NBD_MAGIC 0x4e42444d41474943ull        /* "NBDMAGIC" */
#define NBD_IHAVEOPT 0x49484156454f5054ull     /* "IHAVEOPT" */
#define NBD_REP_MAGIC 0x0003e889045565a9ull    /* option replies */
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

#define NBD_GREETING_LEN 18
#define NBD_CLIENT_FLAGS_LEN 4
#define NBD_OPT_HDR_LEN 16
#define NBD_OPT_REPLY_HDR_LEN 20
#define NBD_EXPORT_NAME_REPLY_LEN 134 /* 10 without the 124 zeroes */
#define NBD_REQUEST_LEN 28
#define NBD_SIMPLE_REPLY_LEN 16
#define NBD_CHUNK_HDR_LEN 20
#define NBD_CHUNK_DATA_HDR_LEN 28     /* chunk header + offset */
#define NBD_CHUNK_HOLE_LEN 32         /* chunk header + offset + length */
#define NBD_CHUNK_BS_HDR_LEN 24       /* chunk header + context id */
#define NBD_EXTENT_LEN 8

/* ---- limits --------------------------------------------------------------- */

#define NBD_OPT_MAX_LEN 65536u     /* option payload cap (CVE-2017-15119) */
#define NBD_NAME_MAX 4096u         /* "MUST be no longer than 4096 bytes" */
#define NBD_QUOTE_MAX 80u          /* name bytes quoted in messages (CVE-2020-10761) */
#define NBD_MAX_WRITE (32u << 20)  /* "2^25 ... SHOULD NOT be considered a DoS" */
#define NBD_MAX_OPTIONS 64u        /* options per handshake, plus 32 per listed export */
#define NBD_HS_NAME_KEEP 256u      /* SET_META_CONTEXT export name remembered */
#define NBD_META_ID_BASE_ALLOC 1u  /* our context id for base:allocation */

/* ---- handshake flags and client flags ("Handshake flags", "Client flags") */

#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES (1u << 1)

/* ---- transmission flags ("Transmission flags") --------------------------- */

#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_FUA (1u << 3)
#define NBD_FLAG_ROTATIONAL (1u << 4)
#define NBD_FLAG_SEND_TRIM (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)
#define NBD_FLAG_SEND_RESIZE (1u << 9)
#define NBD_FLAG_SEND_CACHE (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO (1u << 11)

/* ---- options ("Option types") --------------------------------------------- */

#define NBD_OPT_EXPORT_NAME 1u
#define NBD_OPT_ABORT 2u
#define NBD_OPT_LIST 3u
#define NBD_OPT_PEEK_EXPORT 4u /* withdrawn */
#define NBD_OPT_STARTTLS 5u
#define NBD_OPT_INFO 6u
#define NBD_OPT_GO 7u
#define NBD_OPT_STRUCTURED_REPLY 8u
#define NBD_OPT_LIST_META_CONTEXT 9u
#define NBD_OPT_SET_META_CONTEXT 10u
#define NBD_OPT_EXTENDED_HEADERS 11u /* experimental; we answer ERR_UNSUP */

/* ---- option replies ("Option reply types") -------------------------------- */

#define NBD_REP_ACK 1u
#define NBD_REP_SERVER 2u
#define NBD_REP_INFO 3u
#define NBD_REP_META_CONTEXT 4u
#define NBD_REP_FLAG_ERROR (1u << 31)
#define NBD_REP_ERR_UNSUP (NBD_REP_FLAG_ERROR | 1u)
#define NBD_REP_ERR_POLICY (NBD_REP_FLAG_ERROR | 2u)
#define NBD_REP_ERR_INVALID (NBD_REP_FLAG_ERROR | 3u)
#define NBD_REP_ERR_PLATFORM (NBD_REP_FLAG_ERROR | 4u)
#define NBD_REP_ERR_TLS_REQD (NBD_REP_FLAG_ERROR | 5u)
#define NBD_REP_ERR_UNKNOWN (NBD_REP_FLAG_ERROR | 6u)
#define NBD_REP_ERR_SHUTDOWN (NBD_REP_FLAG_ERROR | 7u)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (NBD_REP_FLAG_ERROR | 8u)
#define NBD_REP_ERR_TOO_BIG (NBD_REP_FLAG_ERROR | 9u)

/* NBD_REP_INFO types. */
#define NBD_INFO_EXPORT 0u
#define NBD_INFO_NAME 1u
#define NBD_INFO_DESCRIPTION 2u
#define NBD_INFO_BLOCK_SIZE 3u

/* ---- commands and command flags ("Request types", "Command flags") ------- */

#define NBD_CMD_READ 0u
#define NBD_CMD_WRITE 1u
#define NBD_CMD_DISC 2u
#define NBD_CMD_FLUSH 3u
#define NBD_CMD_TRIM 4u
#define NBD_CMD_CACHE 5u
#define NBD_CMD_WRITE_ZEROES 6u
#define NBD_CMD_BLOCK_STATUS 7u
#define NBD_CMD_COUNT 8u /* commands with a name; anything else is unknown */

#define NBD_CMD_FLAG_FUA (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)
#define NBD_CMD_FLAG_DF (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/* ---- structured replies ("Structured reply flags", "... types") ---------- */

#define NBD_REPLY_FLAG_DONE (1u << 0)
#define NBD_REPLY_TYPE_NONE 0u
#define NBD_REPLY_TYPE_OFFSET_DATA 1u
#define NBD_REPLY_TYPE_OFFSET_HOLE 2u
#define NBD_REPLY_TYPE_BLOCK_STATUS 5u
#define NBD_REPLY_TYPE_ERROR ((1u << 15) | 1u)
#define NBD_REPLY_TYPE_ERROR_OFFSET ((1u << 15) | 2u)

/* base:allocation flags ("base:allocation metadata context"). */
#define NBD_STATE_HOLE (1u << 0)
#define NBD_STATE_ZERO (1u << 1)

/* ---- errors ("Error values") ---------------------------------------------- */

#define NBD_EPERM 1u
#define NBD_EIO 5u
#define NBD_ENOMEM 12u
#define NBD_EINVAL 22u
#define NBD_ENOSPC 28u
#define NBD_EOVERFLOW 75u
#define NBD_ENOTSUP 95u
#define NBD_ESHUTDOWN 108u

/* Names for logs and tests ("NBD_OPT_GO", "NBD_REP_ERR_UNKNOWN", ...);
 * "unknown" for values without one.  Static strings. */
const char *nbd_opt_name(uint32_t opt);
const char *nbd_rep_name(uint32_t rep);
const char *nbd_cmd_name(uint16_t cmd);
const char *nbd_err_name(uint32_t err);

/* Map a blockd code (-errno or -BD_E*) to an NBD error: -EIO, -ETIMEDOUT
 * and every domain code -> EIO; -ENOSPC, -EDQUOT, -EFBIG -> ENOSPC; -EPERM,
 * -EROFS, -EACCES -> EPERM; -EINVAL -> EINVAL; -ENOMEM -> ENOMEM;
 * -EOVERFLOW -> EOVERFLOW; -ENOTSUP -> ENOTSUP; -ESHUTDOWN -> ESHUTDOWN.
 * 0 maps to 0. */
uint32_t nbd_err_from_errno(int code);
/* Map a volume-lookup failure to an option error reply: -ENOENT ->
 * ERR_UNKNOWN, -ESHUTDOWN -> ERR_SHUTDOWN, -EPERM/-EACCES/-EBUSY ->
 * ERR_POLICY, -EINVAL -> ERR_INVALID, anything else -> ERR_UNKNOWN (the
 * export is not available now; the message says why). */
uint32_t nbd_rep_err_from_errno(int code);

/* ---- strings ---------------------------------------------------------------- */

struct nbd_str {
    const char *ptr; /* into the decoded buffer; not NUL-terminated */
    uint32_t len;
};

/* Write a printable quotation of S (at most NBD_QUOTE_MAX bytes of it,
 * then "..."; bytes outside 0x20..0x7e become '?') into OUT, always
 * NUL-terminated.  Returns OUT.  CAP >= NBD_QUOTE_MAX + 8 never truncates. */
char *nbd_quote(char *out, size_t cap, const char *s, size_t len);

/* ---- handshake: greeting, client flags ------------------------------------ */

int nbd_encode_greeting(uint8_t *out, size_t cap, uint16_t hflags);
/* 18, 0, or -EPROTO (either magic wrong). */
int nbd_decode_greeting(const uint8_t *p, size_t len, uint16_t *hflags);
int nbd_encode_client_flags(uint8_t *out, size_t cap, uint32_t cflags);
/* 4, 0.  Validation is nbd_hs_client_flags(). */
int nbd_decode_client_flags(const uint8_t *p, size_t len, uint32_t *cflags);

/* ---- handshake: options ----------------------------------------------------- */

struct nbd_opt_hdr {
    uint32_t opt; /* NBD_OPT_* or anything the client sent */
    uint32_t len; /* payload bytes that follow; unvalidated */
};

int nbd_encode_opt_hdr(uint8_t *out, size_t cap, uint32_t opt, uint32_t len);
/* 16, 0, or -EPROTO (magic is not IHAVEOPT). */
int nbd_decode_opt_hdr(const uint8_t *p, size_t len, struct nbd_opt_hdr *h);

/* NBD_OPT_INFO / NBD_OPT_GO payload: u32 name length | name | u16 count |
 * count x u16 info type. */
struct nbd_opt_go {
    struct nbd_str name;
    uint16_t n_info;
    const uint8_t *info; /* n_info big-endian u16 values */
};
int nbd_encode_opt_go(uint8_t *out, size_t cap, const char *name, uint32_t name_len,
                      const uint16_t *info, uint16_t n_info);
/* 0, or -EINVAL with a static reason in *WHY: payload < 6 bytes, name
 * length > len - 6, count not matching the rest, name > NBD_NAME_MAX or
 * containing NUL. */
int nbd_decode_opt_go(const uint8_t *p, uint32_t len, struct nbd_opt_go *g, const char **why);
uint16_t nbd_opt_go_info(const struct nbd_opt_go *g, unsigned i);

/* NBD_OPT_LIST_META_CONTEXT / SET_META_CONTEXT payload: u32 name length |
 * name | u32 count | count x (u32 length | query). */
struct nbd_opt_meta {
    struct nbd_str name;
    uint32_t n_queries;
    const uint8_t *queries; /* the count x (len | query) area, validated */
    uint32_t queries_len;
};
int nbd_encode_opt_meta(uint8_t *out, size_t cap, const char *name, uint32_t name_len,
                        const char *const *queries, uint32_t n_queries);
/* 0, or -EINVAL with *WHY: short payload, a length running past the end,
 * bytes after the last query, a string > NBD_NAME_MAX or containing NUL. */
int nbd_decode_opt_meta(const uint8_t *p, uint32_t len, struct nbd_opt_meta *m, const char **why);
/* Iterate the queries of a decoded M: start with *POS = 0; false at the end. */
bool nbd_opt_meta_next(const struct nbd_opt_meta *m, uint32_t *pos, struct nbd_str *q);

/* NBD_OPT_EXPORT_NAME payload: the whole payload is the name.  0 or -EINVAL
 * (> NBD_NAME_MAX, or NUL inside). */
int nbd_decode_opt_export_name(const uint8_t *p, uint32_t len, struct nbd_str *name,
                               const char **why);

/* ---- handshake: option replies ---------------------------------------------- */

struct nbd_opt_reply {
    uint32_t opt;  /* the option answered */
    uint32_t type; /* NBD_REP_* */
    uint32_t len;  /* payload bytes that follow */
};

int nbd_encode_opt_reply_hdr(uint8_t *out, size_t cap, uint32_t opt, uint32_t type, uint32_t len);
/* 20, 0, or -EPROTO (magic). */
int nbd_decode_opt_reply_hdr(const uint8_t *p, size_t len, struct nbd_opt_reply *r);

int nbd_encode_rep_ack(uint8_t *out, size_t cap, uint32_t opt);
int nbd_encode_rep_server(uint8_t *out, size_t cap, uint32_t opt, const char *name,
                          uint32_t name_len);
int nbd_encode_rep_info_export(uint8_t *out, size_t cap, uint32_t opt, uint64_t size,
                               uint16_t tflags);
int nbd_encode_rep_info_block_size(uint8_t *out, size_t cap, uint32_t opt, uint32_t min_block,
                                   uint32_t pref_block, uint32_t max_payload);
/* TYPE is NBD_INFO_NAME or NBD_INFO_DESCRIPTION. */
int nbd_encode_rep_info_str(uint8_t *out, size_t cap, uint32_t opt, uint16_t type,
                            const char *s, uint32_t len);
int nbd_encode_rep_meta_context(uint8_t *out, size_t cap, uint32_t opt, uint32_t id,
                                const char *name, uint32_t name_len);
/* An error reply TYPE (NBD_REP_ERR_*) with MSG (truncated to fit CAP and
 * to 1024 bytes). */
int nbd_encode_rep_error(uint8_t *out, size_t cap, uint32_t opt, uint32_t type, const char *msg);

/* Decoders of reply payloads (clients and tests).  0 or -EINVAL. */
int nbd_decode_rep_server(const uint8_t *p, uint32_t len, struct nbd_str *name);
struct nbd_info {
    uint16_t type;
    uint64_t size;                 /* NBD_INFO_EXPORT */
    uint16_t tflags;               /* NBD_INFO_EXPORT */
    uint32_t min_block, pref_block, max_payload; /* NBD_INFO_BLOCK_SIZE */
    struct nbd_str str;            /* NBD_INFO_NAME, NBD_INFO_DESCRIPTION */
};
int nbd_decode_rep_info(const uint8_t *p, uint32_t len, struct nbd_info *info);
int nbd_decode_rep_meta_context(const uint8_t *p, uint32_t len, uint32_t *id,
                                struct nbd_str *name);

/* The reply that ends NBD_OPT_EXPORT_NAME: 134 bytes, or 10 with NO_ZEROES. */
int nbd_encode_export_name_reply(uint8_t *out, size_t cap, uint64_t size, uint16_t tflags,
                                 bool no_zeroes);
/* 10, 0; the caller skips the zeroes it expects. */
int nbd_decode_export_name_reply(const uint8_t *p, size_t len, uint64_t *size, uint16_t *tflags);

/* ---- handshake decisions ---------------------------------------------------- */

/* TLS policy of a connection ("TLS support", "Server-side requirements"). */
enum nbd_tls_mode {
    NBD_TLS_OFF = 0,           /* NOTLS: STARTTLS is ERR_POLICY */
    NBD_TLS_ON = 1,            /* SELECTIVETLS, no TLS-only export: TLS if the client asks */
    NBD_TLS_REQUIRE = 2,       /* FORCEDTLS: nothing but STARTTLS and ABORT before TLS */
};

/* Per-connection negotiation state; zero it, then nbd_hs_init(). */
struct nbd_hs {
    uint16_t hflags_offered;   /* what our greeting offered */
    uint8_t tls_mode;          /* enum nbd_tls_mode (nbd_hs_set_tls) */
    bool tls;                  /* TLS is up (nbd_hs_tls_started) */
    unsigned tls_refused;      /* options answered ERR_TLS_REQD so far */
    uint32_t cflags;           /* the client's flags, once accepted */
    bool structured;           /* STRUCTURED_REPLY was acknowledged */
    bool meta_base_alloc;      /* SET_META_CONTEXT selected base:allocation */
    uint32_t meta_name_len;    /* for the export named there (may exceed KEEP) */
    char meta_name[NBD_HS_NAME_KEEP];
    unsigned n_options;        /* options received so far */
    unsigned max_options;      /* NBD_MAX_OPTIONS, raised by LIST */
};

/* What an option asks of the server after nbd_hs_option(). */
enum nbd_hs_action {
    NBD_HS_REPLY,       /* send OUT, then read the next option */
    NBD_HS_CLOSE,       /* send OUT (may be empty), then close: protocol violation */
    NBD_HS_ABORT,       /* send OUT (the ACK), then close: the client asked */
    NBD_HS_LIST,        /* list exports: nbd_hs_encode_list_entry each, then ACK */
    NBD_HS_INFO,        /* look REQ->name up; reply with nbd_hs_encode_export() */
    NBD_HS_GO,          /* look REQ->name up and open it; then as INFO, and transmit */
    NBD_HS_EXPORT_NAME, /* open REQ->name; nbd_encode_export_name_reply or close */
    NBD_HS_STARTTLS,    /* send OUT (the ACK), then TLS; nbd_hs_tls_started once it is up */
    NBD_HS_REFUSE,      /* close without a reply: EXPORT_NAME while TLS is required
                           (not a protocol violation: a policy refusal) */
};

struct nbd_hs_req {
    uint32_t opt;          /* the option being answered */
    struct nbd_str name;   /* INFO/GO/EXPORT_NAME: into the option payload */
    uint32_t info_mask;    /* INFO/GO: 1 << NBD_INFO_* the client asked for */
};

/* Export parameters for INFO/GO/EXPORT_NAME replies. */
struct nbd_export_desc {
    uint64_t size;
    uint16_t tflags;
    uint32_t min_block, pref_block, max_payload;
    const char *name;        /* canonical name, NBD_INFO_NAME; may be NULL */
    const char *description; /* NBD_INFO_DESCRIPTION; may be NULL */
};

/* Capacity of OUT that every nbd_hs_* call below needs at most. */
#define NBD_HS_OUT_MAX 2048

void nbd_hs_init(struct nbd_hs *hs, uint16_t hflags_offered);
/* The connection's TLS policy (before the first option; NBD_TLS_OFF
 * until called).  The server must be able to start TLS for ON and
 * REQUIRE. */
void nbd_hs_set_tls(struct nbd_hs *hs, enum nbd_tls_mode mode);
/* TLS is up after NBD_HS_STARTTLS: forget STRUCTURED_REPLY and the
 * metadata context negotiated before it; a second STARTTLS is now
 * ERR_INVALID. */
void nbd_hs_tls_started(struct nbd_hs *hs);
/* Accept the client flags: 0, or -EPROTO (unknown bits, or NO_ZEROES not
 * offered: "the server MUST drop the TCP connection"). */
int nbd_hs_client_flags(struct nbd_hs *hs, uint32_t cflags);
/* Decide on an option header before reading its payload.  Returns
 * NBD_HS_REPLY when the payload may be read (OUT empty), or NBD_HS_CLOSE
 * with an error reply in OUT: option length above NBD_OPT_MAX_LEN, too many
 * options, or a non-fixed-newstyle client sending anything but
 * EXPORT_NAME.  Counts the option. */
enum nbd_hs_action nbd_hs_header(struct nbd_hs *hs, const struct nbd_opt_hdr *h, uint8_t *out,
                                 size_t cap, size_t *outlen);
/* Decide on a whole option (header H, payload P of h->len bytes): write
 * the replies that need no volume lookup to OUT and say what else to do.
 * REQ->name points into P, which must outlive its use.  CAP must be at
 * least NBD_HS_OUT_MAX. */
enum nbd_hs_action nbd_hs_option(struct nbd_hs *hs, const struct nbd_opt_hdr *h,
                                 const uint8_t *p, uint8_t *out, size_t cap, size_t *outlen,
                                 struct nbd_hs_req *req);
/* INFO/GO success: INFO_EXPORT, INFO_BLOCK_SIZE (always: we enforce
 * non-default sizes, "MUST send this info if ... it intends to enforce"),
 * INFO_NAME and INFO_DESCRIPTION if asked for and known, then ACK.
 * Returns bytes written or -EMSGSIZE. */
int nbd_hs_encode_export(const struct nbd_hs_req *req, const struct nbd_export_desc *x,
                         uint8_t *out, size_t cap);
/* GO succeeded on NAME: keep the base:allocation selection only if the
 * last SET_META_CONTEXT named the same export ("referred to the same
 * export name that was ultimately selected"). */
void nbd_hs_go_done(struct nbd_hs *hs, struct nbd_str name);
/* A LIST reply grants each listed export NBD_MAX_OPTIONS/2 more options
 * (nbdinfo --list follows LIST with one INFO per export). */
void nbd_hs_list_grant(struct nbd_hs *hs, unsigned n_exports);

/* ---- transmission: requests and replies ------------------------------------- */

struct nbd_request {
    uint16_t flags;  /* NBD_CMD_FLAG_* */
    uint16_t type;   /* NBD_CMD_* */
    uint64_t cookie; /* echoed, opaque */
    uint64_t off;
    uint32_t len;
};

int nbd_encode_request(uint8_t *out, size_t cap, const struct nbd_request *r);
/* 28, 0, or -EPROTO (magic: "request magic wrong -> close"). */
int nbd_decode_request(const uint8_t *p, size_t len, struct nbd_request *r);

int nbd_encode_simple_reply(uint8_t *out, size_t cap, uint32_t err, uint64_t cookie);
/* 16, 0, or -EPROTO. */
int nbd_decode_simple_reply(const uint8_t *p, size_t len, uint32_t *err, uint64_t *cookie);

struct nbd_chunk {
    uint16_t flags;  /* NBD_REPLY_FLAG_DONE */
    uint16_t type;   /* NBD_REPLY_TYPE_* */
    uint64_t cookie;
    uint32_t len;    /* payload bytes that follow */
};
int nbd_encode_chunk_hdr(uint8_t *out, size_t cap, const struct nbd_chunk *c);
/* 20, 0, or -EPROTO. */
int nbd_decode_chunk_hdr(const uint8_t *p, size_t len, struct nbd_chunk *c);

/* NONE with DONE: 20 bytes. */
int nbd_encode_chunk_none(uint8_t *out, size_t cap, uint64_t cookie);
/* OFFSET_DATA header and offset (28 bytes); DATA_LEN bytes follow. */
int nbd_encode_chunk_data_hdr(uint8_t *out, size_t cap, uint16_t flags, uint64_t cookie,
                              uint64_t off, uint32_t data_len);
/* OFFSET_HOLE (32 bytes).  HOLE_LEN must be nonzero. */
int nbd_encode_chunk_hole(uint8_t *out, size_t cap, uint16_t flags, uint64_t cookie,
                          uint64_t off, uint32_t hole_len);
/* BLOCK_STATUS header and context id (24 bytes); N_EXTENTS extents of
 * nbd_encode_extent() follow. */
int nbd_encode_chunk_bs_hdr(uint8_t *out, size_t cap, uint16_t flags, uint64_t cookie,
                            uint32_t ctx_id, uint32_t n_extents);
void nbd_encode_extent(uint8_t out[NBD_EXTENT_LEN], uint32_t len, uint32_t state);
/* ERROR chunk with MSG (truncated to 1024 bytes and to CAP).  ERR != 0. */
int nbd_encode_chunk_error(uint8_t *out, size_t cap, uint16_t flags, uint64_t cookie,
                           uint32_t err, const char *msg);

/* Chunk payload decoders (clients and tests).  0 or -EINVAL. */
int nbd_decode_chunk_data(const uint8_t *p, uint32_t len, uint64_t *off, const uint8_t **data,
                          uint32_t *data_len);
int nbd_decode_chunk_hole(const uint8_t *p, uint32_t len, uint64_t *off, uint32_t *hole_len);
int nbd_decode_chunk_bs(const uint8_t *p, uint32_t len, uint32_t *ctx_id, uint32_t *n_extents);
/* Extent I of a decoded BLOCK_STATUS payload P. */
void nbd_chunk_bs_extent(const uint8_t *p, uint32_t i, uint32_t *len, uint32_t *state);
int nbd_decode_chunk_error(const uint8_t *p, uint32_t len, uint32_t *err, struct nbd_str *msg);

/* ---- transmission decisions ------------------------------------------------- */

/* What the server agreed to in the handshake, for nbd_check_request. */
struct nbd_export_caps {
    uint64_t size;          /* export size, a multiple of min_block */
    uint32_t min_block;     /* advertised minimum block size (a power of 2) */
    uint32_t max_payload;   /* advertised maximum payload */
    uint16_t tflags;        /* transmission flags sent */
    bool structured;        /* structured replies negotiated */
    bool meta_base_alloc;   /* base:allocation selected for this export */
};

/* Validate request R against CAPS (CONTRACT.md §3 4.2, proto.md "Error
 * values"), in this order:
 *   -EPROTO: a WRITE longer than NBD_MAX_WRITE: close without reading it;
 *   EINVAL: unknown command, or CACHE when NBD_FLAG_SEND_CACHE is not in
 *           tflags;
 *   EPERM: WRITE, TRIM or WRITE_ZEROES on a read-only export;
 *   EINVAL: a flag unknown, not valid for the command, or not advertised
 *           (FUA, FAST_ZERO, DF: unless in tflags), or a BLOCK_STATUS
 *           without structured replies or base:allocation;
 *   EINVAL: FLUSH or DISC with nonzero offset or length;
 *   ENOSPC (WRITE, WRITE_ZEROES) / EINVAL (others): past the end,
 *           overflow-safe (len > size or off > size - len);
 *   EINVAL: offset or length not a multiple of min_block;
 *   EINVAL: READ, WRITE or CACHE longer than max_payload (the WRITE
 *           payload is still read and dropped by the caller);
 *   EINVAL: length 0 ("the behavior of a server on such a request is
 *           unspecified although the server SHOULD NOT disconnect"; nbdkit
 *           refuses them too, and the volume layer takes 1..max_io);
 *   0: valid.
 * Whatever the result >= 0, a WRITE's len payload bytes follow. */
int nbd_check_request(const struct nbd_request *r, const struct nbd_export_caps *caps);

#endif
