/* test_nbd.c: the NBD codec (src/net/nbd.c): every message round-trips,
 * every validation row of CONTRACT.md §3 4.1 and 4.2 that the codec
 * decides, and the handshake decisions option by option.  Defends C17. */
#include "base/bd.h"
#include "net/nbd.h"
#include "golden.h"
#include "tap.h"
#include "base/bytes.h"

#include <stdlib.h>
#include <string.h>

/* ---- Helpers ------------------------------------------------------------------- */

static uint8_t out[NBD_HS_OUT_MAX];
static size_t outlen;

/* Decode the option reply at *POS of OUT; true if there is one. */
static bool next_reply(size_t *pos, struct nbd_opt_reply *r, const uint8_t **payload)
{
    if (*pos >= outlen) return false;
    if (nbd_decode_opt_reply_hdr(out + *pos, outlen - *pos, r) != NBD_OPT_REPLY_HDR_LEN)
        return false;
    *payload = out + *pos + NBD_OPT_REPLY_HDR_LEN;
    *pos += NBD_OPT_REPLY_HDR_LEN + r->len;
    return *pos <= outlen;
}

/* The reply type of the only reply in OUT, or 0. */
static uint32_t only_reply(void)
{
    size_t pos = 0;
    struct nbd_opt_reply r;
    const uint8_t *p;
    if (!next_reply(&pos, &r, &p) || pos != outlen) return 0;
    return r.type;
}

static struct nbd_hs fixed_hs(void)
{
    struct nbd_hs hs;
    nbd_hs_init(&hs, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    nbd_hs_client_flags(&hs, NBD_FLAG_C_FIXED_NEWSTYLE);
    return hs;
}

/* Run option OPT with payload P/LEN through header and option decisions. */
static enum nbd_hs_action opt(struct nbd_hs *hs, uint32_t o, const void *p, uint32_t len,
                              struct nbd_hs_req *req)
{
    struct nbd_opt_hdr h = {.opt = o, .len = len};
    enum nbd_hs_action a = nbd_hs_header(hs, &h, out, sizeof(out), &outlen);
    if (a != NBD_HS_REPLY) return a;
    return nbd_hs_option(hs, &h, p, out, sizeof(out), &outlen, req);
}

static int meta_payload(uint8_t *buf, size_t cap, const char *name, const char *const *q,
                        uint32_t n)
{
    return nbd_encode_opt_meta(buf, cap, name, (uint32_t)strlen(name), q, n);
}

static const struct nbd_export_caps caps_rw = {
    .size = 1u << 20, .min_block = 4096, .max_payload = 65536,
    .tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
              NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO | NBD_FLAG_CAN_MULTI_CONN,
    .structured = true, .meta_base_alloc = true};

static int check(uint16_t type, uint16_t flags, uint64_t off, uint32_t len)
{
    struct nbd_request r = {.type = type, .flags = flags, .off = off, .len = len};
    return nbd_check_request(&r, &caps_rw);
}

/* ---- Greeting and client flags --------------------------------------------------- */

/* The greeting is NBDMAGIC IHAVEOPT flags, and decodes back. */
TEST(greeting_round_trip)
{
    uint8_t b[NBD_GREETING_LEN];
    uint16_t f = 0;
    CHECK_EQ(nbd_encode_greeting(b, sizeof(b), 3), 18);
    CHECK(memcmp(b, "NBDMAGICIHAVEOPT", 16) == 0);
    CHECK_EQ(nbd_decode_greeting(b, sizeof(b), &f), 18);
    CHECK_EQ(f, 3);
    CHECK_EQ(nbd_decode_greeting(b, 17, &f), 0);
    b[0] ^= 1;
    CHECK_EQ(nbd_decode_greeting(b, sizeof(b), &f), -EPROTO);
    CHECK_EQ(nbd_encode_greeting(b, 17, 3), -EMSGSIZE);
}

/* Client flags: known bits pass; unknown bits and unoffered NO_ZEROES close. */
TEST(client_flags_validation)
{
    struct nbd_hs hs;
    nbd_hs_init(&hs, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    CHECK_EQ(nbd_hs_client_flags(&hs, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES), 0);
    CHECK_EQ(nbd_hs_client_flags(&hs, 0), 0);
    CHECK_EQ(nbd_hs_client_flags(&hs, 1u << 2), -EPROTO);
    CHECK_EQ(nbd_hs_client_flags(&hs, 0x80000000u), -EPROTO);
    nbd_hs_init(&hs, NBD_FLAG_FIXED_NEWSTYLE);
    CHECK_EQ(nbd_hs_client_flags(&hs, NBD_FLAG_C_NO_ZEROES), -EPROTO);
    uint8_t b[4];
    uint32_t cf = 0;
    CHECK_EQ(nbd_encode_client_flags(b, 4, 0x12345678), 4);
    CHECK_EQ(nbd_decode_client_flags(b, 3, &cf), 0);
    CHECK_EQ(nbd_decode_client_flags(b, 4, &cf), 4);
    CHECK_EQ(cf, 0x12345678);
}

/* ---- Option headers and payloads --------------------------------------------------- */

/* An option header round-trips; a wrong magic is -EPROTO; short input waits. */
TEST(opt_hdr_round_trip)
{
    uint8_t b[NBD_OPT_HDR_LEN];
    struct nbd_opt_hdr h;
    CHECK_EQ(nbd_encode_opt_hdr(b, sizeof(b), NBD_OPT_GO, 0xdeadbeef), 16);
    for (size_t i = 0; i < 16; i++) CHECK_EQ(nbd_decode_opt_hdr(b, i, &h), 0);
    CHECK_EQ(nbd_decode_opt_hdr(b, 16, &h), 16);
    CHECK_EQ(h.opt, NBD_OPT_GO);
    CHECK_EQ(h.len, 0xdeadbeef);
    b[7] ^= 0x10;
    CHECK_EQ(nbd_decode_opt_hdr(b, 16, &h), -EPROTO);
}

/* INFO/GO payloads round-trip with their information requests. */
TEST(opt_go_round_trip)
{
    uint8_t b[64];
    uint16_t info[] = {NBD_INFO_BLOCK_SIZE, NBD_INFO_NAME};
    int n = nbd_encode_opt_go(b, sizeof(b), "vol0", 4, info, 2);
    CHECK_EQ(n, 4 + 4 + 2 + 4);
    struct nbd_opt_go g;
    const char *why = NULL;
    CHECK_EQ(nbd_decode_opt_go(b, (uint32_t)n, &g, &why), 0);
    CHECK_EQ(g.name.len, 4);
    CHECK(memcmp(g.name.ptr, "vol0", 4) == 0);
    CHECK_EQ(g.n_info, 2);
    CHECK_EQ(nbd_opt_go_info(&g, 0), NBD_INFO_BLOCK_SIZE);
    CHECK_EQ(nbd_opt_go_info(&g, 1), NBD_INFO_NAME);
    CHECK_EQ(nbd_encode_opt_go(b, 10, "vol0", 4, info, 2), -EMSGSIZE);
}

/* Every malformed INFO/GO payload is -EINVAL (ERR_INVALID), with no
 * overflow on a name length of 0xFFFFFFFF (CVE-2022-26495). */
TEST(opt_go_validation)
{
    static uint8_t b[8192];
    struct nbd_opt_go g;
    const char *why = NULL;
    CHECK_EQ(nbd_decode_opt_go(b, 5, &g, &why), -EINVAL); /* shorter than 6 */
    bytes_put_be32(b, 0xffffffff);
    bytes_put_be16(b + 4, 0);
    CHECK_EQ(nbd_decode_opt_go(b, 6, &g, &why), -EINVAL);
    CHECK(strstr(why, "name length") != NULL);
    bytes_put_be32(b, 1); /* name length = len - 5 */
    CHECK_EQ(nbd_decode_opt_go(b, 6, &g, &why), -EINVAL);
    bytes_put_be32(b, 0);
    bytes_put_be16(b + 4, 2); /* two info requests, none present */
    CHECK_EQ(nbd_decode_opt_go(b, 6, &g, &why), -EINVAL);
    CHECK_EQ(nbd_decode_opt_go(b, 11, &g, &why), -EINVAL); /* odd trailing byte */
    CHECK_EQ(nbd_decode_opt_go(b, 10, &g, &why), 0);
    /* name of 4097 bytes */
    memset(b + 4, 'a', 4097);
    bytes_put_be32(b, 4097);
    bytes_put_be16(b + 4 + 4097, 0);
    CHECK_EQ(nbd_decode_opt_go(b, 4 + 4097 + 2, &g, &why), -EINVAL);
    CHECK(strstr(why, "4096") != NULL);
    /* 4096 is the limit, and allowed */
    bytes_put_be32(b, 4096);
    bytes_put_be16(b + 4 + 4096, 0);
    CHECK_EQ(nbd_decode_opt_go(b, 4 + 4096 + 2, &g, &why), 0);
    /* NUL inside the name */
    bytes_put_be32(b, 3);
    memcpy(b + 4, "a\0b", 3);
    bytes_put_be16(b + 7, 0);
    CHECK_EQ(nbd_decode_opt_go(b, 9, &g, &why), -EINVAL);
}

/* META_CONTEXT payloads round-trip and iterate their queries. */
TEST(opt_meta_round_trip)
{
    uint8_t b[256];
    const char *q[] = {"base:allocation", "qemu:dirty-bitmap:x", ""};
    int n = meta_payload(b, sizeof(b), "vol0", q, 3);
    CHECK(n > 0);
    struct nbd_opt_meta m;
    const char *why;
    CHECK_EQ(nbd_decode_opt_meta(b, (uint32_t)n, &m, &why), 0);
    CHECK_EQ(m.n_queries, 3);
    uint32_t pos = 0;
    struct nbd_str s;
    for (int i = 0; i < 3; i++) {
        CHECK(nbd_opt_meta_next(&m, &pos, &s));
        CHECK_EQ(s.len, strlen(q[i]));
        CHECK(memcmp(s.ptr, q[i], s.len) == 0);
    }
    CHECK(!nbd_opt_meta_next(&m, &pos, &s));
}

/* Malformed META_CONTEXT payloads: every length that runs past the end. */
TEST(opt_meta_validation)
{
    uint8_t b[256];
    struct nbd_opt_meta m;
    const char *why;
    const char *q[] = {"base:allocation"};
    int n = meta_payload(b, sizeof(b), "vol0", q, 1);
    CHECK_EQ(nbd_decode_opt_meta(b, 7, &m, &why), -EINVAL);
    for (int cut = 8; cut < n; cut++)
        CHECK_EQ(nbd_decode_opt_meta(b, (uint32_t)cut, &m, &why), -EINVAL);
    CHECK_EQ(nbd_decode_opt_meta(b, (uint32_t)n, &m, &why), 0);
    b[n] = 'x'; /* trailing byte */
    CHECK_EQ(nbd_decode_opt_meta(b, (uint32_t)n + 1, &m, &why), -EINVAL);
    bytes_put_be32(b, 0xffffffff); /* name length overflow */
    CHECK_EQ(nbd_decode_opt_meta(b, (uint32_t)n, &m, &why), -EINVAL);
    n = meta_payload(b, sizeof(b), "vol0", q, 1);
    bytes_put_be32(b + 8, 1000); /* query count beyond the data */
    CHECK_EQ(nbd_decode_opt_meta(b, (uint32_t)n, &m, &why), -EINVAL);
    n = meta_payload(b, sizeof(b), "vol0", q, 1);
    bytes_put_be32(b + 12, 0xfffffff0); /* query length overflow */
    CHECK_EQ(nbd_decode_opt_meta(b, (uint32_t)n, &m, &why), -EINVAL);
    n = meta_payload(b, sizeof(b), "vol0", q, 1);
    b[16 + 4] = 0; /* NUL inside the query */
    CHECK_EQ(nbd_decode_opt_meta(b, (uint32_t)n, &m, &why), -EINVAL);
}

/* EXPORT_NAME payloads: up to 4096 bytes, no NUL. */
TEST(opt_export_name_validation)
{
    static uint8_t b[5000];
    struct nbd_str s;
    const char *why;
    memset(b, 'v', sizeof(b));
    CHECK_EQ(nbd_decode_opt_export_name(b, 4096, &s, &why), 0);
    CHECK_EQ(s.len, 4096);
    CHECK_EQ(nbd_decode_opt_export_name(b, 4097, &s, &why), -EINVAL);
    b[3] = 0;
    CHECK_EQ(nbd_decode_opt_export_name(b, 10, &s, &why), -EINVAL);
    CHECK_EQ(nbd_decode_opt_export_name(b, 0, &s, &why), 0);
}

/* ---- Option replies -------------------------------------------------------------------- */

/* Every option reply round-trips through its decoder. */
TEST(option_replies_round_trip)
{
    uint8_t b[512];
    struct nbd_opt_reply r;
    struct nbd_str s;
    struct nbd_info info;
    CHECK_EQ(nbd_encode_rep_ack(b, sizeof(b), NBD_OPT_ABORT), 20);
    CHECK_EQ(nbd_decode_opt_reply_hdr(b, 20, &r), 20);
    CHECK_EQ(r.opt, NBD_OPT_ABORT);
    CHECK_EQ(r.type, NBD_REP_ACK);
    CHECK_EQ(r.len, 0);
    CHECK_EQ(nbd_decode_opt_reply_hdr(b, 19, &r), 0);

    CHECK_EQ(nbd_encode_rep_server(b, sizeof(b), NBD_OPT_LIST, "vol0", 4), 28);
    nbd_decode_opt_reply_hdr(b, 28, &r);
    CHECK_EQ(r.type, NBD_REP_SERVER);
    CHECK_EQ(nbd_decode_rep_server(b + 20, r.len, &s), 0);
    CHECK(s.len == 4 && memcmp(s.ptr, "vol0", 4) == 0);
    CHECK_EQ(nbd_encode_rep_server(b, 27, NBD_OPT_LIST, "vol0", 4), -EMSGSIZE);

    CHECK_EQ(nbd_encode_rep_info_export(b, sizeof(b), NBD_OPT_GO, 1ull << 40, 0x1ed), 32);
    nbd_decode_opt_reply_hdr(b, 32, &r);
    CHECK_EQ(nbd_decode_rep_info(b + 20, r.len, &info), 0);
    CHECK_EQ(info.type, NBD_INFO_EXPORT);
    CHECK_EQ(info.size, 1ull << 40);
    CHECK_EQ(info.tflags, 0x1ed);

    CHECK_EQ(nbd_encode_rep_info_block_size(b, sizeof(b), NBD_OPT_GO, 4096, 4096, 1 << 25), 34);
    nbd_decode_opt_reply_hdr(b, 34, &r);
    CHECK_EQ(nbd_decode_rep_info(b + 20, r.len, &info), 0);
    CHECK_EQ(info.min_block, 4096);
    CHECK_EQ(info.pref_block, 4096);
    CHECK_EQ(info.max_payload, 1u << 25);

    CHECK_EQ(nbd_encode_rep_info_str(b, sizeof(b), NBD_OPT_INFO, NBD_INFO_NAME, "vol0", 4), 26);
    nbd_decode_opt_reply_hdr(b, 26, &r);
    CHECK_EQ(nbd_decode_rep_info(b + 20, r.len, &info), 0);
    CHECK(info.type == NBD_INFO_NAME && info.str.len == 4);

    CHECK_EQ(nbd_encode_rep_info_str(b, sizeof(b), NBD_OPT_INFO, NBD_INFO_DESCRIPTION, "d", 1), 23);
    nbd_decode_opt_reply_hdr(b, 23, &r);
    CHECK_EQ(nbd_decode_rep_info(b + 20, r.len, &info), 0);
    CHECK(info.type == NBD_INFO_DESCRIPTION && info.str.len == 1);

    uint32_t id = 0;
    CHECK_EQ(nbd_encode_rep_meta_context(b, sizeof(b), NBD_OPT_SET_META_CONTEXT, 7,
                                         "base:allocation", 15), 39);
    nbd_decode_opt_reply_hdr(b, 39, &r);
    CHECK_EQ(nbd_decode_rep_meta_context(b + 20, r.len, &id, &s), 0);
    CHECK_EQ(id, 7);
    CHECK(s.len == 15 && memcmp(s.ptr, "base:allocation", 15) == 0);

    CHECK_EQ(nbd_encode_rep_error(b, sizeof(b), NBD_OPT_GO, NBD_REP_ERR_UNKNOWN, "nope"), 24);
    nbd_decode_opt_reply_hdr(b, 24, &r);
    CHECK_EQ(r.type, NBD_REP_ERR_UNKNOWN);
    CHECK_EQ(r.len, 4);
    CHECK_EQ(nbd_encode_rep_error(b, 22, NBD_OPT_GO, NBD_REP_ERR_UNKNOWN, "nope"), 22);

    b[0] ^= 1;
    CHECK_EQ(nbd_decode_opt_reply_hdr(b, 24, &r), -EPROTO);
}

/* Malformed info payloads are rejected; unknown info types are ignored. */
TEST(info_decode_validation)
{
    uint8_t b[16] = {0};
    struct nbd_info info;
    CHECK_EQ(nbd_decode_rep_info(b, 1, &info), -EINVAL);
    bytes_put_be16(b, NBD_INFO_EXPORT);
    CHECK_EQ(nbd_decode_rep_info(b, 11, &info), -EINVAL);
    bytes_put_be16(b, NBD_INFO_BLOCK_SIZE);
    CHECK_EQ(nbd_decode_rep_info(b, 12, &info), -EINVAL);
    bytes_put_be16(b, 99);
    CHECK_EQ(nbd_decode_rep_info(b, 5, &info), 0);
    struct nbd_str s;
    bytes_put_be32(b, 13);
    CHECK_EQ(nbd_decode_rep_server(b, 16, &s), -EINVAL);
    CHECK_EQ(nbd_decode_rep_server(b, 3, &s), -EINVAL);
}

/* The EXPORT_NAME reply has 124 zeroes unless NO_ZEROES was negotiated. */
TEST(export_name_reply)
{
    uint8_t b[NBD_EXPORT_NAME_REPLY_LEN];
    memset(b, 0xff, sizeof(b));
    CHECK_EQ(nbd_encode_export_name_reply(b, sizeof(b), 12345, 0x3, false), 134);
    for (int i = 10; i < 134; i++) CHECK_EQ(b[i], 0);
    uint64_t size;
    uint16_t fl;
    CHECK_EQ(nbd_decode_export_name_reply(b, 134, &size, &fl), 10);
    CHECK(size == 12345 && fl == 3);
    CHECK_EQ(nbd_encode_export_name_reply(b, 10, 1, 1, true), 10);
    CHECK_EQ(nbd_encode_export_name_reply(b, 10, 1, 1, false), -EMSGSIZE);
}

/* Names in messages: at most 80 bytes quoted, control bytes replaced
 * (CVE-2020-10761). */
TEST(quote_bounds_names)
{
    char name[4096], q[NBD_QUOTE_MAX + 8];
    memset(name, 'n', sizeof(name));
    nbd_quote(q, sizeof(q), name, sizeof(name));
    CHECK_EQ(strlen(q), NBD_QUOTE_MAX + 3);
    CHECK(strcmp(q + NBD_QUOTE_MAX, "...") == 0);
    nbd_quote(q, sizeof(q), "a\nb\x01", 4);
    CHECK(strcmp(q, "a?b?") == 0);
    char tiny[4];
    nbd_quote(tiny, sizeof(tiny), name, 100);
    CHECK_EQ(strlen(tiny), 3);
}

/* ---- Handshake decisions ---------------------------------------------------------------- */

/* An option length of 0xFFFFFFFF is refused from the header with
 * ERR_INVALID, before reading it (CVE-2017-15119). */
TEST(hs_huge_option_length)
{
    struct nbd_hs hs = fixed_hs();
    struct nbd_opt_hdr h = {.opt = NBD_OPT_GO, .len = 0xffffffff};
    CHECK_EQ(nbd_hs_header(&hs, &h, out, sizeof(out), &outlen), NBD_HS_CLOSE);
    CHECK_EQ(only_reply(), NBD_REP_ERR_INVALID);
    h.len = NBD_OPT_MAX_LEN;
    CHECK_EQ(nbd_hs_header(&hs, &h, out, sizeof(out), &outlen), NBD_HS_REPLY);
    CHECK_EQ(outlen, 0);
    h.opt = NBD_OPT_EXPORT_NAME; /* cannot be answered: just close */
    h.len = NBD_OPT_MAX_LEN + 1;
    CHECK_EQ(nbd_hs_header(&hs, &h, out, sizeof(out), &outlen), NBD_HS_CLOSE);
    CHECK_EQ(outlen, 0);
}

/* A client without fixed newstyle may only send EXPORT_NAME. */
TEST(hs_nonfixed_client)
{
    struct nbd_hs hs;
    nbd_hs_init(&hs, NBD_FLAG_FIXED_NEWSTYLE);
    CHECK_EQ(nbd_hs_client_flags(&hs, 0), 0);
    struct nbd_opt_hdr h = {.opt = NBD_OPT_LIST, .len = 0};
    CHECK_EQ(nbd_hs_header(&hs, &h, out, sizeof(out), &outlen), NBD_HS_CLOSE);
    h.opt = NBD_OPT_EXPORT_NAME;
    h.len = 4;
    CHECK_EQ(nbd_hs_header(&hs, &h, out, sizeof(out), &outlen), NBD_HS_REPLY);
}

/* Options are capped per handshake; LIST raises the cap per export. */
TEST(hs_option_count_cap)
{
    struct nbd_hs hs = fixed_hs();
    struct nbd_hs_req req;
    for (unsigned i = 0; i < NBD_MAX_OPTIONS; i++)
        CHECK_EQ(opt(&hs, NBD_OPT_STRUCTURED_REPLY, "", 0, &req), NBD_HS_REPLY);
    CHECK_EQ(opt(&hs, NBD_OPT_STRUCTURED_REPLY, "", 0, &req), NBD_HS_CLOSE);
    CHECK_EQ(only_reply(), NBD_REP_ERR_TOO_BIG);
    hs = fixed_hs();
    nbd_hs_list_grant(&hs, 2);
    for (unsigned i = 0; i < NBD_MAX_OPTIONS * 2; i++)
        CHECK_EQ(opt(&hs, 99, "", 0, &req), NBD_HS_REPLY);
}

/* ABORT is acknowledged, and ends the session; its data is ignored. */
TEST(hs_abort)
{
    struct nbd_hs hs = fixed_hs();
    struct nbd_hs_req req;
    CHECK_EQ(opt(&hs, NBD_OPT_ABORT, "xyz", 3, &req), NBD_HS_ABORT);
    CHECK_EQ(only_reply(), NBD_REP_ACK);
}

/* LIST with data is ERR_INVALID; without, the server lists. */
TEST(hs_list)
{
    struct nbd_hs hs = fixed_hs();
    struct nbd_hs_req req;
    CHECK_EQ(opt(&hs, NBD_OPT_LIST, "abcd", 4, &req), NBD_HS_REPLY);
    CHECK_EQ(only_reply(), NBD_REP_ERR_INVALID);
    CHECK_EQ(opt(&hs, NBD_OPT_LIST, "", 0, &req), NBD_HS_LIST);
    CHECK_EQ(outlen, 0);
}

/* STARTTLS without TLS configured is ERR_POLICY; with data ERR_INVALID. */
TEST(hs_starttls)
{
    struct nbd_hs hs = fixed_hs();
    struct nbd_hs_req req;
    CHECK_EQ(opt(&hs, NBD_OPT_STARTTLS, "", 0, &req), NBD_HS_REPLY);
    CHECK_EQ(only_reply(), NBD_REP_ERR_POLICY);
    CHECK_EQ(opt(&hs, NBD_OPT_STARTTLS, "", 0, &req), NBD_HS_REPLY);
    CHECK_EQ(only_reply(), NBD_REP_ERR_POLICY);
    CHECK_EQ(opt(&hs, NBD_OPT_STARTTLS, "x", 1, &req), NBD_HS_REPLY);
    CHECK_EQ(only_reply(), NBD_REP_ERR_INVALID);
}

/* TLS "on" (SELECTIVETLS): the first STARTTLS is acknowledged, a second
 * after TLS is ERR_INVALID, and TLS forgets STRUCTURED_REPLY and the
 * metadata context negotiated before it (CVE-2021-3716). */
TEST(hs_starttls_on)
{
    struct nbd_hs hs = fixed_hs();
    nbd_hs_set_tls(&hs, NBD_TLS_ON);
    struct nbd_hs_req req;
    CHECK_EQ(opt(&hs, NBD_OPT_STRUCTURED_REPLY, "", 0, &req), NBD_HS_REPLY);
    CHECK(hs.structured);
    uint8_t m[64];
    const char *q[] = {"base:allocation"};
    int n = nbd_encode_opt_meta(m, sizeof(m), "v", 1, q, 1);
    CHECK_EQ(opt(&hs, NBD_OPT_SET_META_CONTEXT, m, (uint32_t)n, &req), NBD_HS_REPLY);
    CHECK(hs.meta_base_alloc);
    CHECK_EQ(opt(&hs, NBD_OPT_STARTTLS, "x", 1, &req), NBD_HS_REPLY);
    CHECK_EQ(only_reply(), NBD_REP_ERR_INVALID);
    CHECK_EQ(opt(&hs, NBD_OPT_STARTTLS, "", 0, &req), NBD_HS_STARTTLS);
    CHECK_EQ(only_reply(), NBD_REP_ACK);
    nbd_hs_tls_started(&hs);
    CHECK(hs.tls && !hs.structured && !hs.meta_base_alloc);
    CHECK_EQ(opt(&hs, NBD_OPT_STARTTLS, "", 0, &req), NBD_HS_REPLY);
    CHECK_EQ(only_reply(), NBD_REP_ERR_INVALID);
    /* Nothing is required in this mode: plaintext options were fine. */
    CHECK_EQ(hs.tls_refused, 0);
}

/* TLS "require" (FORCEDTLS): before TLS everything but STARTTLS and
 * ABORT is ERR_TLS_REQD (counted), EXPORT_NAME is a refusal (the session
 * ends: it cannot be answered with an error); after TLS, all as usual. */
TEST(hs_starttls_require)
{
    struct nbd_hs hs = fixed_hs();
    nbd_hs_set_tls(&hs, NBD_TLS_REQUIRE);
    struct nbd_hs_req req;
    uint32_t opts[] = {NBD_OPT_LIST, NBD_OPT_STRUCTURED_REPLY, NBD_OPT_INFO, NBD_OPT_GO, 99};
    for (unsigned i = 0; i < 5; i++) {
        CHECK_EQ(opt(&hs, opts[i], "", 0, &req), NBD_HS_REPLY);
        CHECK_EQ(only_reply(), NBD_REP_ERR_TLS_REQD);
    }
    CHECK_EQ(hs.tls_refused, 5);
    CHECK(!hs.structured);
    CHECK_EQ(opt(&hs, NBD_OPT_EXPORT_NAME, "vol0", 4, &req), NBD_HS_REFUSE);
    CHECK_EQ(outlen, 0);
    CHECK_EQ(opt(&hs, NBD_OPT_STARTTLS, "", 0, &req), NBD_HS_STARTTLS);
    nbd_hs_tls_started(&hs);
    CHECK_EQ(opt(&hs, NBD_OPT_LIST, "", 0, &req), NBD_HS_LIST);
    CHECK_EQ(opt(&hs, NBD_OPT_EXPORT_NAME, "vol0", 4, &req), NBD_HS_EXPORT_NAME);
    struct nbd_hs hs2 = fixed_hs();
    nbd_hs_set_tls(&hs2, NBD_TLS_REQUIRE);
    CHECK_EQ(opt(&hs2, NBD_OPT_ABORT, "", 0, &req), NBD_HS_ABORT);
}

/* STRUCTURED_REPLY: ACK once; again, or with data, ERR_INVALID. */
TEST(hs_structured_reply)
{
    struct nbd_hs hs = fixed_hs();
    struct nbd_hs_req req;
    CHECK_EQ(opt(&hs, NBD_OPT_STRUCTURED_REPLY, "x", 1, &req), NBD_HS_REPLY);
    CHECK_EQ(only_reply(), NBD_REP_ERR_INVALID);
    CHECK(!hs.structured);
    CHECK_EQ(opt(&hs, NBD_OPT_STRUCTURED_REPLY, "", 0, &req), NBD_HS_REPLY);
    CHECK_EQ(only_reply(), NBD_REP_ACK);
    CHECK(hs.structured);
    CHECK_EQ(opt(&hs, NBD_OPT_STRUCTURED_REPLY, "", 0, &req), NBD_HS_REPLY);
    CHECK_EQ(only_reply(), NBD_REP_ERR_INVALID);
}

/* SET_META_CONTEXT before STRUCTURED_REPLY is ERR_INVALID. */
TEST(hs_set_meta_before_structured)
{
    struct nbd_hs hs = fixed_hs();
    struct nbd_hs_req req;
    uint8_t b[128];
    const char *q[] = {"base:allocation"};
    int n = meta_payload(b, sizeof(b), "vol0", q, 1);
    CHECK_EQ(opt(&hs, NBD_OPT_SET_META_CONTEXT, b, (uint32_t)n, &req), NBD_HS_REPLY);
    CHECK_EQ(only_reply(), NBD_REP_ERR_INVALID);
    CHECK(!hs.meta_base_alloc);
}

/* SET_META_CONTEXT selects base:allocation with a nonzero id, then ACK;
 * an unknown namespace is ignored; zero queries select nothing. */
TEST(hs_set_meta)
{
    struct nbd_hs hs = fixed_hs();
    struct nbd_hs_req req;
    opt(&hs, NBD_OPT_STRUCTURED_REPLY, "", 0, &req);
    uint8_t b[128];
    const char *q[] = {"x-other:thing", "base:allocation", "base:allocation"};
    int n = meta_payload(b, sizeof(b), "vol0", q, 3);
    CHECK_EQ(opt(&hs, NBD_OPT_SET_META_CONTEXT, b, (uint32_t)n, &req), NBD_HS_REPLY);
    size_t pos = 0;
    struct nbd_opt_reply r;
    const uint8_t *p;
    CHECK(next_reply(&pos, &r, &p));
    CHECK_EQ(r.type, NBD_REP_META_CONTEXT);
    uint32_t id;
    struct nbd_str s;
    CHECK_EQ(nbd_decode_rep_meta_context(p, r.len, &id, &s), 0);
    CHECK_EQ(id, NBD_META_ID_BASE_ALLOC);
    CHECK(next_reply(&pos, &r, &p));
    CHECK_EQ(r.type, NBD_REP_ACK);
    CHECK_EQ(pos, outlen);
    CHECK(hs.meta_base_alloc);
    /* "base:" selects nothing in SET */
    const char *wild[] = {"base:"};
    n = meta_payload(b, sizeof(b), "vol0", wild, 1);
    opt(&hs, NBD_OPT_SET_META_CONTEXT, b, (uint32_t)n, &req);
    CHECK_EQ(only_reply(), NBD_REP_ACK);
    CHECK(!hs.meta_base_alloc);
    /* zero queries select nothing; a malformed payload clears the selection */
    n = meta_payload(b, sizeof(b), "vol0", q + 1, 1);
    opt(&hs, NBD_OPT_SET_META_CONTEXT, b, (uint32_t)n, &req);
    CHECK(hs.meta_base_alloc);
    CHECK_EQ(opt(&hs, NBD_OPT_SET_META_CONTEXT, b, 7, &req), NBD_HS_REPLY);
    CHECK_EQ(only_reply(), NBD_REP_ERR_INVALID);
    CHECK(!hs.meta_base_alloc);
    n = meta_payload(b, sizeof(b), "vol0", NULL, 0);
    opt(&hs, NBD_OPT_SET_META_CONTEXT, b, (uint32_t)n, &req);
    CHECK_EQ(only_reply(), NBD_REP_ACK);
    CHECK(!hs.meta_base_alloc);
}

/* LIST_META_CONTEXT: "base:" and zero queries list base:allocation (id 0). */
TEST(hs_list_meta)
{
    struct nbd_hs hs = fixed_hs();
    struct nbd_hs_req req;
    uint8_t b[128];
    const char *wild[] = {"base:"};
    int n = meta_payload(b, sizeof(b), "", wild, 1);
    CHECK_EQ(opt(&hs, NBD_OPT_LIST_META_CONTEXT, b, (uint32_t)n, &req), NBD_HS_REPLY);
    size_t pos = 0;
    struct nbd_opt_reply r;
    const uint8_t *p;
    CHECK(next_reply(&pos, &r, &p));
    CHECK_EQ(r.type, NBD_REP_META_CONTEXT);
    CHECK_EQ(bytes_get_be32(p), 0);
    CHECK(next_reply(&pos, &r, &p));
    CHECK_EQ(r.type, NBD_REP_ACK);
    n = meta_payload(b, sizeof(b), "", NULL, 0);
    opt(&hs, NBD_OPT_LIST_META_CONTEXT, b, (uint32_t)n, &req);
    pos = 0;
    CHECK(next_reply(&pos, &r, &p));
    CHECK_EQ(r.type, NBD_REP_META_CONTEXT);
    const char *other[] = {"qemu:dirty-bitmap:a"};
    n = meta_payload(b, sizeof(b), "", other, 1);
    opt(&hs, NBD_OPT_LIST_META_CONTEXT, b, (uint32_t)n, &req);
    CHECK_EQ(only_reply(), NBD_REP_ACK);
    CHECK(!hs.meta_base_alloc); /* LIST never selects */
}

/* Unknown options are ERR_UNSUP once their payload has been read. */
TEST(hs_unknown_option)
{
    struct nbd_hs hs = fixed_hs();
    struct nbd_hs_req req;
    CHECK_EQ(opt(&hs, 4242, "payload", 7, &req), NBD_HS_REPLY);
    CHECK_EQ(only_reply(), NBD_REP_ERR_UNSUP);
    CHECK_EQ(opt(&hs, NBD_OPT_EXTENDED_HEADERS, "", 0, &req), NBD_HS_REPLY);
    CHECK_EQ(only_reply(), NBD_REP_ERR_UNSUP);
    CHECK_EQ(opt(&hs, NBD_OPT_PEEK_EXPORT, "", 0, &req), NBD_HS_REPLY);
    CHECK_EQ(only_reply(), NBD_REP_ERR_UNSUP);
}

/* INFO and GO decode to a lookup with the info mask; bad payloads are
 * ERR_INVALID and the session continues. */
TEST(hs_info_go)
{
    struct nbd_hs hs = fixed_hs();
    struct nbd_hs_req req;
    uint8_t b[64];
    uint16_t info[] = {NBD_INFO_NAME, 0x7fff};
    int n = nbd_encode_opt_go(b, sizeof(b), "vol0", 4, info, 2);
    CHECK_EQ(opt(&hs, NBD_OPT_INFO, b, (uint32_t)n, &req), NBD_HS_INFO);
    CHECK_EQ(outlen, 0);
    CHECK_EQ(req.opt, NBD_OPT_INFO);
    CHECK(req.name.len == 4 && memcmp(req.name.ptr, "vol0", 4) == 0);
    CHECK_EQ(req.info_mask, (1u << NBD_INFO_EXPORT) | (1u << NBD_INFO_NAME));
    CHECK_EQ(opt(&hs, NBD_OPT_GO, b, (uint32_t)n, &req), NBD_HS_GO);
    bytes_put_be32(b, 0xfffffffa);
    CHECK_EQ(opt(&hs, NBD_OPT_GO, b, (uint32_t)n, &req), NBD_HS_REPLY);
    CHECK_EQ(only_reply(), NBD_REP_ERR_INVALID);
}

/* EXPORT_NAME with an invalid name can only close. */
TEST(hs_export_name)
{
    struct nbd_hs hs = fixed_hs();
    struct nbd_hs_req req;
    CHECK_EQ(opt(&hs, NBD_OPT_EXPORT_NAME, "vol0", 4, &req), NBD_HS_EXPORT_NAME);
    CHECK(req.name.len == 4);
    CHECK_EQ(opt(&hs, NBD_OPT_EXPORT_NAME, "v\0l", 3, &req), NBD_HS_CLOSE);
    static uint8_t big[4097];
    memset(big, 'a', sizeof(big));
    CHECK_EQ(opt(&hs, NBD_OPT_EXPORT_NAME, big, sizeof(big), &req), NBD_HS_CLOSE);
}

/* The INFO/GO reply: INFO_EXPORT, INFO_BLOCK_SIZE always, INFO_NAME when
 * asked, then ACK. */
TEST(hs_encode_export)
{
    struct nbd_hs_req req = {.opt = NBD_OPT_GO, .info_mask = 1u << NBD_INFO_EXPORT};
    struct nbd_export_desc x = {.size = 1 << 20, .tflags = 0x1ed, .min_block = 4096,
                                .pref_block = 4096, .max_payload = 1 << 25, .name = "vol0"};
    int n = nbd_hs_encode_export(&req, &x, out, sizeof(out));
    CHECK(n > 0);
    outlen = (size_t)n;
    size_t pos = 0;
    struct nbd_opt_reply r;
    const uint8_t *p;
    struct nbd_info info;
    uint32_t types[4], k = 0;
    while (next_reply(&pos, &r, &p) && k < 4) {
        types[k++] = r.type;
        CHECK_EQ(r.opt, NBD_OPT_GO);
        if (r.type == NBD_REP_INFO) CHECK_EQ(nbd_decode_rep_info(p, r.len, &info), 0);
    }
    CHECK_EQ(k, 3);
    CHECK(types[0] == NBD_REP_INFO && types[1] == NBD_REP_INFO && types[2] == NBD_REP_ACK);
    req.info_mask |= 1u << NBD_INFO_NAME | 1u << NBD_INFO_DESCRIPTION;
    x.description = "a volume";
    n = nbd_hs_encode_export(&req, &x, out, sizeof(out));
    outlen = (size_t)n;
    pos = 0;
    k = 0;
    while (next_reply(&pos, &r, &p)) k++;
    CHECK_EQ(k, 5);
    CHECK_EQ(nbd_hs_encode_export(&req, &x, out, 40), -EMSGSIZE);
}

/* base:allocation survives GO only for the export named in SET_META_CONTEXT. */
TEST(hs_go_done_meta_name)
{
    struct nbd_hs hs = fixed_hs();
    struct nbd_hs_req req;
    opt(&hs, NBD_OPT_STRUCTURED_REPLY, "", 0, &req);
    uint8_t b[128];
    const char *q[] = {"base:allocation"};
    int n = meta_payload(b, sizeof(b), "vol0", q, 1);
    opt(&hs, NBD_OPT_SET_META_CONTEXT, b, (uint32_t)n, &req);
    struct nbd_hs copy = hs;
    nbd_hs_go_done(&hs, (struct nbd_str){"vol0", 4});
    CHECK(hs.meta_base_alloc);
    nbd_hs_go_done(&copy, (struct nbd_str){"vol1", 4});
    CHECK(!copy.meta_base_alloc);
}

/* ---- Transmission messages --------------------------------------------------------------- */

/* Requests round-trip; a wrong magic is -EPROTO; short input waits. */
TEST(request_round_trip)
{
    uint8_t b[NBD_REQUEST_LEN];
    struct nbd_request r = {.flags = 1, .type = NBD_CMD_WRITE, .cookie = 0x0102030405060708ull,
                            .off = 1ull << 50, .len = 4096}, d;
    CHECK_EQ(nbd_encode_request(b, sizeof(b), &r), 28);
    for (size_t i = 0; i < 28; i++) CHECK_EQ(nbd_decode_request(b, i, &d), 0);
    CHECK_EQ(nbd_decode_request(b, 28, &d), 28);
    CHECK(d.flags == r.flags && d.type == r.type && d.cookie == r.cookie && d.off == r.off &&
          d.len == r.len);
    b[3] ^= 1;
    CHECK_EQ(nbd_decode_request(b, 28, &d), -EPROTO);
}

/* Simple replies and every structured chunk round-trip. */
TEST(replies_round_trip)
{
    uint8_t b[256];
    uint32_t err, a, c;
    uint64_t cookie, off;
    CHECK_EQ(nbd_encode_simple_reply(b, sizeof(b), NBD_EIO, 77), 16);
    CHECK_EQ(nbd_decode_simple_reply(b, 15, &err, &cookie), 0);
    CHECK_EQ(nbd_decode_simple_reply(b, 16, &err, &cookie), 16);
    CHECK(err == NBD_EIO && cookie == 77);

    struct nbd_chunk ch;
    CHECK_EQ(nbd_encode_chunk_none(b, sizeof(b), 5), 20);
    CHECK_EQ(nbd_decode_chunk_hdr(b, 20, &ch), 20);
    CHECK(ch.type == NBD_REPLY_TYPE_NONE && ch.flags == NBD_REPLY_FLAG_DONE && ch.len == 0);

    CHECK_EQ(nbd_encode_chunk_data_hdr(b, sizeof(b), 0, 6, 8192, 4), 28);
    memcpy(b + 28, "data", 4);
    nbd_decode_chunk_hdr(b, 20, &ch);
    CHECK(ch.type == NBD_REPLY_TYPE_OFFSET_DATA && ch.len == 12 && ch.cookie == 6);
    const uint8_t *data;
    CHECK_EQ(nbd_decode_chunk_data(b + 20, ch.len, &off, &data, &a), 0);
    CHECK(off == 8192 && a == 4 && memcmp(data, "data", 4) == 0);
    CHECK_EQ(nbd_decode_chunk_data(b + 20, 8, &off, &data, &a), -EINVAL);

    CHECK_EQ(nbd_encode_chunk_hole(b, sizeof(b), 1, 7, 4096, 65536), 32);
    nbd_decode_chunk_hdr(b, 20, &ch);
    CHECK(ch.type == NBD_REPLY_TYPE_OFFSET_HOLE && ch.len == 12);
    CHECK_EQ(nbd_decode_chunk_hole(b + 20, 12, &off, &a), 0);
    CHECK(off == 4096 && a == 65536);
    bytes_put_be32(b + 28, 0);
    CHECK_EQ(nbd_decode_chunk_hole(b + 20, 12, &off, &a), -EINVAL);

    CHECK_EQ(nbd_encode_chunk_bs_hdr(b, sizeof(b), 1, 8, 1, 2), 24);
    nbd_encode_extent(b + 24, 4096, NBD_STATE_HOLE | NBD_STATE_ZERO);
    nbd_encode_extent(b + 32, 8192, 0);
    nbd_decode_chunk_hdr(b, 20, &ch);
    CHECK(ch.type == NBD_REPLY_TYPE_BLOCK_STATUS && ch.len == 20);
    CHECK_EQ(nbd_decode_chunk_bs(b + 20, ch.len, &a, &c), 0);
    CHECK(a == 1 && c == 2);
    nbd_chunk_bs_extent(b + 20, 1, &a, &c);
    CHECK(a == 8192 && c == 0);
    CHECK_EQ(nbd_decode_chunk_bs(b + 20, 4, &a, &c), -EINVAL);
    CHECK_EQ(nbd_decode_chunk_bs(b + 20, 13, &a, &c), -EINVAL);

    int n = nbd_encode_chunk_error(b, sizeof(b), 1, 9, NBD_ENOSPC, "full");
    CHECK_EQ(n, 30);
    nbd_decode_chunk_hdr(b, 20, &ch);
    CHECK(ch.type == NBD_REPLY_TYPE_ERROR && ch.len == 10);
    struct nbd_str msg;
    CHECK_EQ(nbd_decode_chunk_error(b + 20, ch.len, &err, &msg), 0);
    CHECK(err == NBD_ENOSPC && msg.len == 4);
    bytes_put_be16(b + 24, 5);
    CHECK_EQ(nbd_decode_chunk_error(b + 20, ch.len, &err, &msg), -EINVAL);
    b[0] ^= 1;
    CHECK_EQ(nbd_decode_chunk_hdr(b, 20, &ch), -EPROTO);
}

/* ---- Golden bytes -------------------------------------------------------------------------- */

/* Every NBD message as the codec wrote it when this test was written (the
 * layouts are the protocol's, doc/proto.md; a change here breaks every
 * client), and the same bytes decoded field by field.  Together these
 * call every encoder and every decoder of nbd.h, including the
 * client-side ones only tests use. */

static uint8_t gb[512];
static size_t gn;

/* Encode with EXPR into gb, require HEX, then leave HEX's bytes in gb/gn
 * for the decoding half of the test. */
#define GOLDEN_ENC(label, expr, hex)                                                       \
    do {                                                                                   \
        int n_ = (expr);                                                                   \
        CHECK(n_ > 0);                                                                     \
        CHECK(golden_eq(label, gb, (size_t)n_, hex));                                      \
        memset(gb, 0, sizeof(gb));                                                         \
        gn = golden_bytes(hex, gb, sizeof(gb));                                            \
    } while (0)

TEST(golden_greeting_and_client_flags)
{
    uint16_t hf;
    uint32_t cf;
    GOLDEN_ENC("greeting",
               nbd_encode_greeting(gb, sizeof(gb), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES),
               "4e42444d41474943 49484156454f5054 0003");
    CHECK_EQ(nbd_decode_greeting(gb, gn, &hf), NBD_GREETING_LEN);
    CHECK_EQ(hf, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    GOLDEN_ENC("client_flags",
               nbd_encode_client_flags(gb, sizeof(gb),
                                       NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES),
               "00000003");
    CHECK_EQ(nbd_decode_client_flags(gb, gn, &cf), NBD_CLIENT_FLAGS_LEN);
    CHECK_EQ(cf, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
}

TEST(golden_opt_hdr)
{
    struct nbd_opt_hdr h;
    GOLDEN_ENC("opt_hdr", nbd_encode_opt_hdr(gb, sizeof(gb), NBD_OPT_GO, 0x0a0b0c0d),
               "49484156454f5054 00000007 0a0b0c0d");
    CHECK_EQ(nbd_decode_opt_hdr(gb, gn, &h), NBD_OPT_HDR_LEN);
    CHECK(h.opt == NBD_OPT_GO && h.len == 0x0a0b0c0d);
}

TEST(golden_opt_go)
{
    static const uint16_t info[2] = {NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE};
    struct nbd_opt_go g;
    const char *why;
    GOLDEN_ENC("opt_go", nbd_encode_opt_go(gb, sizeof(gb), "vol0", 4, info, 2),
               "00000004 766f6c30 0002 0001 0003");
    CHECK_EQ(nbd_decode_opt_go(gb, (uint32_t)gn, &g, &why), 0);
    CHECK(g.name.len == 4 && memcmp(g.name.ptr, "vol0", 4) == 0 && g.n_info == 2);
    CHECK(nbd_opt_go_info(&g, 0) == NBD_INFO_NAME && nbd_opt_go_info(&g, 1) == NBD_INFO_BLOCK_SIZE);
}

TEST(golden_opt_meta)
{
    static const char *const q[2] = {"base:allocation", "qemu:"};
    struct nbd_opt_meta m;
    struct nbd_str s;
    const char *why;
    uint32_t pos = 0;
    GOLDEN_ENC("opt_meta", nbd_encode_opt_meta(gb, sizeof(gb), "vol0", 4, q, 2),
               "00000004 766f6c30 00000002 "
               "0000000f 626173653a616c6c6f636174696f6e "
               "00000005 71656d753a");
    CHECK_EQ(nbd_decode_opt_meta(gb, (uint32_t)gn, &m, &why), 0);
    CHECK(m.name.len == 4 && memcmp(m.name.ptr, "vol0", 4) == 0 && m.n_queries == 2);
    CHECK(nbd_opt_meta_next(&m, &pos, &s) && s.len == 15 && !memcmp(s.ptr, q[0], 15));
    CHECK(nbd_opt_meta_next(&m, &pos, &s) && s.len == 5 && !memcmp(s.ptr, q[1], 5));
    CHECK(!nbd_opt_meta_next(&m, &pos, &s));
    /* EXPORT_NAME's payload is the bare name: no layout beyond its length. */
    CHECK_EQ(nbd_decode_opt_export_name((const uint8_t *)"vol0", 4, &s, &why), 0);
    CHECK(s.len == 4 && memcmp(s.ptr, "vol0", 4) == 0);
}

TEST(golden_opt_reply_hdr_and_ack)
{
    struct nbd_opt_reply r;
    GOLDEN_ENC("opt_reply_hdr",
               nbd_encode_opt_reply_hdr(gb, sizeof(gb), NBD_OPT_INFO, NBD_REP_INFO, 0x0102),
               "0003e889045565a9 00000006 00000003 00000102");
    CHECK_EQ(nbd_decode_opt_reply_hdr(gb, gn, &r), NBD_OPT_REPLY_HDR_LEN);
    CHECK(r.opt == NBD_OPT_INFO && r.type == NBD_REP_INFO && r.len == 0x0102);
    GOLDEN_ENC("rep_ack", nbd_encode_rep_ack(gb, sizeof(gb), NBD_OPT_GO),
               "0003e889045565a9 00000007 00000001 00000000");
    CHECK_EQ(nbd_decode_opt_reply_hdr(gb, gn, &r), NBD_OPT_REPLY_HDR_LEN);
    CHECK(r.opt == NBD_OPT_GO && r.type == NBD_REP_ACK && r.len == 0 && gn == 20);
}

/* The option reply in gb: its header must say TYPE and a length that is
 * the rest of gn.  Returns that payload length (UINT32_MAX if not). */
static uint32_t reply_payload(uint32_t type)
{
    struct nbd_opt_reply r;
    if (nbd_decode_opt_reply_hdr(gb, gn, &r) != NBD_OPT_REPLY_HDR_LEN || r.type != type ||
        r.len != gn - NBD_OPT_REPLY_HDR_LEN)
        return UINT32_MAX;
    return r.len;
}

TEST(golden_rep_server)
{
    struct nbd_str s;
    GOLDEN_ENC("rep_server", nbd_encode_rep_server(gb, sizeof(gb), NBD_OPT_LIST, "vol0", 4),
               "0003e889045565a9 00000003 00000002 00000008 "
               "00000004 766f6c30");
    uint32_t len = reply_payload(NBD_REP_SERVER);
    CHECK_EQ(nbd_decode_rep_server(gb + NBD_OPT_REPLY_HDR_LEN, len, &s), 0);
    CHECK(s.len == 4 && memcmp(s.ptr, "vol0", 4) == 0);
}

TEST(golden_rep_info)
{
    struct nbd_info in;
    uint32_t len;
    GOLDEN_ENC("rep_info_export",
               nbd_encode_rep_info_export(gb, sizeof(gb), NBD_OPT_GO, 0x0000010203040000ull,
                                          NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH),
               "0003e889045565a9 00000007 00000003 0000000c "
               "0000 0000010203040000 0005");
    len = reply_payload(NBD_REP_INFO);
    CHECK_EQ(nbd_decode_rep_info(gb + NBD_OPT_REPLY_HDR_LEN, len, &in), 0);
    CHECK(in.type == NBD_INFO_EXPORT && in.size == 0x0000010203040000ull &&
          in.tflags == (NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH));
    GOLDEN_ENC("rep_info_block_size",
               nbd_encode_rep_info_block_size(gb, sizeof(gb), NBD_OPT_GO, 512, 4096, 32u << 20),
               "0003e889045565a9 00000007 00000003 0000000e "
               "0003 00000200 00001000 02000000");
    len = reply_payload(NBD_REP_INFO);
    CHECK_EQ(nbd_decode_rep_info(gb + NBD_OPT_REPLY_HDR_LEN, len, &in), 0);
    CHECK(in.type == NBD_INFO_BLOCK_SIZE && in.min_block == 512 && in.pref_block == 4096 &&
          in.max_payload == 32u << 20);
    GOLDEN_ENC("rep_info_name",
               nbd_encode_rep_info_str(gb, sizeof(gb), NBD_OPT_GO, NBD_INFO_NAME, "vol0", 4),
               "0003e889045565a9 00000007 00000003 00000006 "
               "0001 766f6c30");
    len = reply_payload(NBD_REP_INFO);
    CHECK_EQ(nbd_decode_rep_info(gb + NBD_OPT_REPLY_HDR_LEN, len, &in), 0);
    CHECK(in.type == NBD_INFO_NAME && in.str.len == 4 && !memcmp(in.str.ptr, "vol0", 4));
}

TEST(golden_rep_meta_context_and_error)
{
    uint32_t id, len;
    struct nbd_str s;
    GOLDEN_ENC("rep_meta_context",
               nbd_encode_rep_meta_context(gb, sizeof(gb), NBD_OPT_SET_META_CONTEXT, 1,
                                           "base:allocation", 15),
               "0003e889045565a9 0000000a 00000004 00000013 "
               "00000001 626173653a616c6c6f636174696f6e");
    len = reply_payload(NBD_REP_META_CONTEXT);
    CHECK_EQ(nbd_decode_rep_meta_context(gb + NBD_OPT_REPLY_HDR_LEN, len, &id, &s), 0);
    CHECK(id == 1 && s.len == 15 && !memcmp(s.ptr, "base:allocation", 15));
    GOLDEN_ENC("rep_error",
               nbd_encode_rep_error(gb, sizeof(gb), NBD_OPT_GO, NBD_REP_ERR_UNKNOWN, "no vol0"),
               "0003e889045565a9 00000007 80000006 00000007 "
               "6e6f20766f6c30");
    len = reply_payload(NBD_REP_ERR_UNKNOWN);
    CHECK(len == 7 && !memcmp(gb + NBD_OPT_REPLY_HDR_LEN, "no vol0", 7));
}

TEST(golden_export_name_reply)
{
    uint64_t size;
    uint16_t tf;
    GOLDEN_ENC("export_name_reply",
               nbd_encode_export_name_reply(gb, sizeof(gb), 1ull << 30, NBD_FLAG_HAS_FLAGS, true),
               "0000000040000000 0001");
    CHECK_EQ(nbd_decode_export_name_reply(gb, gn, &size, &tf), 10);
    CHECK(size == 1ull << 30 && tf == NBD_FLAG_HAS_FLAGS);
    GOLDEN_ENC("export_name_reply_zeroes",
               nbd_encode_export_name_reply(gb, sizeof(gb), 1ull << 30, NBD_FLAG_HAS_FLAGS, false),
               "0000000040000000 0001 "
               "0000000000000000000000000000000000000000000000000000000000000000"
               "0000000000000000000000000000000000000000000000000000000000000000"
               "0000000000000000000000000000000000000000000000000000000000000000"
               "00000000000000000000000000000000000000000000000000000000");
    CHECK_EQ(gn, NBD_EXPORT_NAME_REPLY_LEN);
    CHECK_EQ(nbd_decode_export_name_reply(gb, gn, &size, &tf), 10);
    CHECK(size == 1ull << 30 && tf == NBD_FLAG_HAS_FLAGS);
}

TEST(golden_request_and_simple_reply)
{
    struct nbd_request r = {.flags = NBD_CMD_FLAG_FUA, .type = NBD_CMD_WRITE,
                            .cookie = 0x0102030405060708ull, .off = 0x1000, .len = 512}, d;
    uint32_t err;
    uint64_t cookie;
    GOLDEN_ENC("request", nbd_encode_request(gb, sizeof(gb), &r),
               "25609513 0001 0001 0102030405060708 "
               "0000000000001000 00000200");
    CHECK_EQ(nbd_decode_request(gb, gn, &d), NBD_REQUEST_LEN);
    CHECK(d.flags == r.flags && d.type == r.type && d.cookie == r.cookie && d.off == r.off &&
          d.len == r.len);
    GOLDEN_ENC("simple_reply",
               nbd_encode_simple_reply(gb, sizeof(gb), NBD_EIO, 0x0a0b0c0d0e0f1011ull),
               "67446698 00000005 0a0b0c0d0e0f1011");
    CHECK_EQ(nbd_decode_simple_reply(gb, gn, &err, &cookie), NBD_SIMPLE_REPLY_LEN);
    CHECK(err == NBD_EIO && cookie == 0x0a0b0c0d0e0f1011ull);
}

TEST(golden_chunks)
{
    struct nbd_chunk c = {.flags = NBD_REPLY_FLAG_DONE, .type = NBD_REPLY_TYPE_OFFSET_HOLE,
                          .cookie = 0x1122334455667788ull, .len = 12}, d;
    uint64_t off;
    uint32_t a, b;
    const uint8_t *data;
    struct nbd_str msg;
    GOLDEN_ENC("chunk_hdr", nbd_encode_chunk_hdr(gb, sizeof(gb), &c),
               "668e33ef 0001 0002 1122334455667788 0000000c");
    CHECK_EQ(nbd_decode_chunk_hdr(gb, gn, &d), NBD_CHUNK_HDR_LEN);
    CHECK(d.flags == c.flags && d.type == c.type && d.cookie == c.cookie && d.len == c.len);
    GOLDEN_ENC("chunk_none", nbd_encode_chunk_none(gb, sizeof(gb), 5),
               "668e33ef 0001 0000 0000000000000005 00000000");
    CHECK_EQ(nbd_decode_chunk_hdr(gb, gn, &d), NBD_CHUNK_HDR_LEN);
    CHECK(d.flags == NBD_REPLY_FLAG_DONE && d.type == NBD_REPLY_TYPE_NONE && d.cookie == 5 &&
          d.len == 0);
    GOLDEN_ENC("chunk_data_hdr", nbd_encode_chunk_data_hdr(gb, sizeof(gb), 0, 6, 8192, 4),
               "668e33ef 0000 0001 0000000000000006 0000000c "
               "0000000000002000");
    CHECK_EQ(nbd_decode_chunk_hdr(gb, gn, &d), NBD_CHUNK_HDR_LEN);
    CHECK(d.type == NBD_REPLY_TYPE_OFFSET_DATA && d.cookie == 6 && d.len == 12);
    memcpy(gb + gn, "data", 4);
    CHECK_EQ(nbd_decode_chunk_data(gb + NBD_CHUNK_HDR_LEN, d.len, &off, &data, &a), 0);
    CHECK(off == 8192 && a == 4 && data == gb + NBD_CHUNK_DATA_HDR_LEN);
    GOLDEN_ENC("chunk_hole", nbd_encode_chunk_hole(gb, sizeof(gb), 1, 7, 4096, 65536),
               "668e33ef 0001 0002 0000000000000007 0000000c "
               "0000000000001000 00010000");
    CHECK_EQ(nbd_decode_chunk_hdr(gb, gn, &d), NBD_CHUNK_HDR_LEN);
    CHECK_EQ(nbd_decode_chunk_hole(gb + NBD_CHUNK_HDR_LEN, d.len, &off, &a), 0);
    CHECK(off == 4096 && a == 65536);
    int n = nbd_encode_chunk_bs_hdr(gb, sizeof(gb), 1, 8, NBD_META_ID_BASE_ALLOC, 2);
    CHECK_EQ(n, NBD_CHUNK_BS_HDR_LEN);
    nbd_encode_extent(gb + n, 4096, NBD_STATE_HOLE | NBD_STATE_ZERO);
    nbd_encode_extent(gb + n + NBD_EXTENT_LEN, 8192, 0);
    GOLDEN_ENC("chunk_block_status", n + 2 * NBD_EXTENT_LEN,
               "668e33ef 0001 0005 0000000000000008 00000014 "
               "00000001 "
               "00001000 00000003 "
               "00002000 00000000");
    CHECK_EQ(nbd_decode_chunk_hdr(gb, gn, &d), NBD_CHUNK_HDR_LEN);
    CHECK_EQ(nbd_decode_chunk_bs(gb + NBD_CHUNK_HDR_LEN, d.len, &a, &b), 0);
    CHECK(a == NBD_META_ID_BASE_ALLOC && b == 2);
    nbd_chunk_bs_extent(gb + NBD_CHUNK_HDR_LEN, 0, &a, &b);
    CHECK(a == 4096 && b == (NBD_STATE_HOLE | NBD_STATE_ZERO));
    nbd_chunk_bs_extent(gb + NBD_CHUNK_HDR_LEN, 1, &a, &b);
    CHECK(a == 8192 && b == 0);
    GOLDEN_ENC("chunk_error", nbd_encode_chunk_error(gb, sizeof(gb), 1, 9, NBD_ENOSPC, "full"),
               "668e33ef 0001 8001 0000000000000009 0000000a "
               "0000001c 0004 66756c6c");
    CHECK_EQ(nbd_decode_chunk_hdr(gb, gn, &d), NBD_CHUNK_HDR_LEN);
    CHECK(d.type == NBD_REPLY_TYPE_ERROR && d.cookie == 9);
    CHECK_EQ(nbd_decode_chunk_error(gb + NBD_CHUNK_HDR_LEN, d.len, &a, &msg), 0);
    CHECK(a == NBD_ENOSPC && msg.len == 4 && !memcmp(msg.ptr, "full", 4));
}

/* ---- Request validation (CONTRACT.md §3 4.2) ---------------------------------------------- */

/* Unknown commands and CACHE (not advertised) are EINVAL. */
TEST(check_unknown_command)
{
    CHECK_EQ(check(99, 0, 0, 4096), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_CACHE, 0, 0, 4096), NBD_EINVAL);
    CHECK_EQ(check(8, 0, 0, 0), NBD_EINVAL);
}

/* Unknown flags, and flags not valid for the command, are EINVAL. */
TEST(check_flags)
{
    CHECK_EQ(check(NBD_CMD_WRITE, 1u << 9, 0, 4096), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_WRITE, NBD_CMD_FLAG_NO_HOLE, 0, 4096), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_WRITE, NBD_CMD_FLAG_DF, 0, 4096), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 4096), NBD_EINVAL); /* DF not advertised */
    CHECK_EQ(check(NBD_CMD_READ, NBD_CMD_FLAG_REQ_ONE, 0, 4096), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_TRIM, NBD_CMD_FLAG_FAST_ZERO, 0, 4096), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO | NBD_CMD_FLAG_NO_HOLE, 0, 4096),
             0);
    CHECK_EQ(check(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 0, 4096), 0);
    CHECK_EQ(check(NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 4096), 0); /* FUA valid for all */
    CHECK_EQ(check(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 0, 4096), 0);
    struct nbd_export_caps c = caps_rw;
    c.tflags &= (uint16_t)~(NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_FAST_ZERO);
    struct nbd_request r = {.type = NBD_CMD_WRITE, .flags = NBD_CMD_FLAG_FUA, .len = 4096};
    CHECK_EQ(nbd_check_request(&r, &c), NBD_EINVAL);
    r.type = NBD_CMD_WRITE_ZEROES;
    r.flags = NBD_CMD_FLAG_FAST_ZERO;
    CHECK_EQ(nbd_check_request(&r, &c), NBD_EINVAL);
}

/* Writes past the end are ENOSPC, reads and trims EINVAL; the check
 * never overflows, e.g. at offset 2^64 - 512. */
TEST(check_bounds)
{
    uint64_t size = caps_rw.size;
    CHECK_EQ(check(NBD_CMD_WRITE, 0, size - 4096, 4096), 0);
    CHECK_EQ(check(NBD_CMD_WRITE, 0, size, 4096), NBD_ENOSPC);
    CHECK_EQ(check(NBD_CMD_WRITE, 0, size - 4096, 8192), NBD_ENOSPC);
    CHECK_EQ(check(NBD_CMD_WRITE, 0, UINT64_MAX - 511, 512), NBD_ENOSPC);
    CHECK_EQ(check(NBD_CMD_WRITE, 0, UINT64_MAX - 4095, 4096), NBD_ENOSPC);
    CHECK_EQ(check(NBD_CMD_WRITE_ZEROES, 0, UINT64_MAX - 4095, 8192), NBD_ENOSPC);
    CHECK_EQ(check(NBD_CMD_WRITE_ZEROES, 0, 0, 0xfffff000u), NBD_ENOSPC); /* len > size */
    CHECK_EQ(check(NBD_CMD_READ, 0, size, 4096), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_READ, 0, UINT64_MAX - 4095, 4096), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_TRIM, 0, size - 4096, 8192), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_BLOCK_STATUS, 0, size, 4096), NBD_EINVAL);
}

/* Unaligned offsets and lengths are EINVAL. */
TEST(check_alignment)
{
    CHECK_EQ(check(NBD_CMD_READ, 0, 512, 4096), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_READ, 0, 0, 512), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_WRITE, 0, 1, 4096), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_TRIM, 0, 4096, 100), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_BLOCK_STATUS, 0, 0, 1000), NBD_EINVAL);
}

/* Payload limits: over max_payload is EINVAL (the WRITE payload is then
 * dropped by the caller); over 32 MiB a WRITE closes; TRIM and
 * WRITE_ZEROES may exceed max_payload. */
TEST(check_payload_limits)
{
    struct nbd_export_caps c = caps_rw;
    c.size = 1ull << 40;
    struct nbd_request r = {.type = NBD_CMD_WRITE, .len = 65536 + 4096};
    CHECK_EQ(nbd_check_request(&r, &c), NBD_EINVAL);
    r.len = NBD_MAX_WRITE;
    CHECK_EQ(nbd_check_request(&r, &c), NBD_EINVAL);
    r.len = NBD_MAX_WRITE + 4096;
    CHECK_EQ(nbd_check_request(&r, &c), -EPROTO);
    r.len = 0xffffffff;
    CHECK_EQ(nbd_check_request(&r, &c), -EPROTO);
    r.type = NBD_CMD_READ;
    CHECK_EQ(nbd_check_request(&r, &c), NBD_EINVAL);
    r.type = NBD_CMD_TRIM;
    r.len = 0xfffff000u;
    CHECK_EQ(nbd_check_request(&r, &c), 0);
    r.type = NBD_CMD_WRITE_ZEROES;
    CHECK_EQ(nbd_check_request(&r, &c), 0);
    r.type = NBD_CMD_BLOCK_STATUS;
    CHECK_EQ(nbd_check_request(&r, &c), 0);
}

/* Length 0 is EINVAL (never a close) for every command with a range;
 * FLUSH needs zero offset and length. */
TEST(check_zero_length_and_flush)
{
    CHECK_EQ(check(NBD_CMD_READ, 0, 0, 0), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_WRITE, 0, 4096, 0), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_TRIM, 0, 0, 0), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_WRITE_ZEROES, 0, 0, 0), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_BLOCK_STATUS, 0, 0, 0), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_FLUSH, 0, 0, 0), 0);
    CHECK_EQ(check(NBD_CMD_FLUSH, 0, 4096, 0), NBD_EINVAL);
    CHECK_EQ(check(NBD_CMD_FLUSH, 0, 0, 4096), NBD_EINVAL);
}

/* Writes of any kind on a read-only export are EPERM. */
TEST(check_read_only)
{
    struct nbd_export_caps c = caps_rw;
    c.tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA;
    struct nbd_request r = {.type = NBD_CMD_WRITE, .len = 4096};
    CHECK_EQ(nbd_check_request(&r, &c), NBD_EPERM);
    r.type = NBD_CMD_TRIM;
    CHECK_EQ(nbd_check_request(&r, &c), NBD_EPERM);
    r.type = NBD_CMD_WRITE_ZEROES;
    CHECK_EQ(nbd_check_request(&r, &c), NBD_EPERM);
    r.type = NBD_CMD_READ;
    CHECK_EQ(nbd_check_request(&r, &c), 0);
}

/* BLOCK_STATUS needs structured replies and base:allocation. */
TEST(check_block_status_needs_meta)
{
    struct nbd_export_caps c = caps_rw;
    struct nbd_request r = {.type = NBD_CMD_BLOCK_STATUS, .len = 4096};
    c.meta_base_alloc = false;
    CHECK_EQ(nbd_check_request(&r, &c), NBD_EINVAL);
    c.meta_base_alloc = true;
    c.structured = false;
    CHECK_EQ(nbd_check_request(&r, &c), NBD_EINVAL);
}

/* ---- Error maps ------------------------------------------------------------------------------ */

/* Volume errors map to the NBD errors CONTRACT.md names. */
TEST(error_maps)
{
    CHECK_EQ(nbd_err_from_errno(0), 0);
    CHECK_EQ(nbd_err_from_errno(-EIO), NBD_EIO);
    CHECK_EQ(nbd_err_from_errno(-ETIMEDOUT), NBD_EIO);
    CHECK_EQ(nbd_err_from_errno(-BD_ECSUM), NBD_EIO);
    CHECK_EQ(nbd_err_from_errno(-ENOSPC), NBD_ENOSPC);
    CHECK_EQ(nbd_err_from_errno(-EDQUOT), NBD_ENOSPC);
    CHECK_EQ(nbd_err_from_errno(-EPERM), NBD_EPERM);
    CHECK_EQ(nbd_err_from_errno(-EROFS), NBD_EPERM);
    CHECK_EQ(nbd_err_from_errno(-EINVAL), NBD_EINVAL);
    CHECK_EQ(nbd_err_from_errno(-ESHUTDOWN), NBD_ESHUTDOWN);
    CHECK_EQ(nbd_err_from_errno(-ENOTSUP), NBD_ENOTSUP);
    CHECK_EQ(nbd_err_from_errno(-ENOMEM), NBD_ENOMEM);
    CHECK_EQ(nbd_rep_err_from_errno(-ENOENT), NBD_REP_ERR_UNKNOWN);
    CHECK_EQ(nbd_rep_err_from_errno(-ESHUTDOWN), NBD_REP_ERR_SHUTDOWN);
    CHECK_EQ(nbd_rep_err_from_errno(-EBUSY), NBD_REP_ERR_POLICY);
    CHECK_EQ(nbd_rep_err_from_errno(-EIO), NBD_REP_ERR_UNKNOWN);
    CHECK(strcmp(nbd_opt_name(NBD_OPT_GO), "NBD_OPT_GO") == 0);
    CHECK(strcmp(nbd_opt_name(1000), "unknown") == 0);
    CHECK(strcmp(nbd_rep_name(NBD_REP_ERR_TOO_BIG), "NBD_REP_ERR_TOO_BIG") == 0);
    CHECK(strcmp(nbd_cmd_name(NBD_CMD_BLOCK_STATUS), "block_status") == 0);
    CHECK(strcmp(nbd_err_name(NBD_ESHUTDOWN), "ESHUTDOWN") == 0);
}
