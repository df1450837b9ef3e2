/* test_wire.c: the wire codec (src/net/wire.c).
 *
 * Fixture: one filled-in value of every request and response, encoded with
 * its payload appended as it travels.  Every vector must decode back to
 * equal fields, re-encode to the same bytes (wire_roundtrip), reject every
 * truncation, and reject trailing bytes.  Header tests cover magic,
 * version, checksum, flags and the size bound.  With WIRE_CORPUS_DIR set,
 * the vectors are written out as fuzz seeds (scripts/gen-corpus). */
#include "net/wire.h"
#include "bd.h"
#include "tap.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* ---- Fixture -------------------------------------------------------------- */

struct vec {
    const char *name;
    uint16_t type;
    bool response;
    uint8_t body[2048];
    size_t len;          /* fields + payload */
    size_t payload_len;
};

static const uint8_t payload[] = "0123456789abcdef0123456789abcdef";

static struct vec vecs[64];
static int n_vecs;

static void add(const char *name, uint16_t type, bool response, int flen, const void *pl,
                size_t plen)
{
    struct vec *v = &vecs[n_vecs];
    if (flen < 0) {
        printf("# encode of %s failed: %d\n", name, flen);
        exit(1);
    }
    v->name = name;
    v->type = type;
    v->response = response;
    v->len = (size_t)flen + plen;
    v->payload_len = plen;
    if (plen) memcpy(v->body + flen, pl, plen);
    n_vecs++;
}

#define BUF (vecs[n_vecs].body), sizeof(vecs[n_vecs].body)

static void build_vectors(void)
{
    if (n_vecs) return;
    struct wire_hello_req hello = {.cluster_hash = 0x1122334455667788ull, .node_id = 3,
                                   .role = WIRE_ROLE_PROXY, .auth = 99, .name = wire_cstr("proxy.3")};
    add("hello_req", WIRE_HELLO, false, wire_encode_hello_req(BUF, &hello), NULL, 0);
    struct wire_hello_resp hello_r = {.node_id = 11, .role = WIRE_ROLE_BLOB};
    add("hello_resp", WIRE_HELLO, true, wire_encode_hello_resp(BUF, &hello_r), NULL, 0);
    struct wire_ping_req ping = {.stamp = 123456789};
    add("ping_req", WIRE_PING, false, wire_encode_ping_req(BUF, &ping), NULL, 0);
    struct wire_ping_resp ping_r = {.stamp = 987654321};
    add("ping_resp", WIRE_PING, true, wire_encode_ping_resp(BUF, &ping_r), NULL, 0);

    struct wire_blob_put_req put = {.blob_id = 77, .partition = 5, .flags = WIRE_PUT_COMPRESSIBLE,
                                    .epoch = 9, .csum = util_xxh3(payload, 32), .data_len = 32};
    add("blob_put_req", WIRE_BLOB_PUT, false, wire_encode_blob_put_req(BUF, &put), payload, 32);
    struct wire_blob_put_resp put_r = {.stored_len = 4000};
    add("blob_put_resp", WIRE_BLOB_PUT, true, wire_encode_blob_put_resp(BUF, &put_r), NULL, 0);
    struct wire_blob_get_req get = {.blob_id = 77, .partition = 5, .off = 4096, .len = 8192};
    add("blob_get_req", WIRE_BLOB_GET, false, wire_encode_blob_get_req(BUF, &get), NULL, 0);
    struct wire_blob_get_resp get_r = {.csum = 5, .blob_len = 100, .data_len = 16};
    add("blob_get_resp", WIRE_BLOB_GET, true, wire_encode_blob_get_resp(BUF, &get_r), payload, 16);
    struct wire_blob_delete_req del = {.blob_id = 1, .partition = 2};
    add("blob_delete_req", WIRE_BLOB_DELETE, false, wire_encode_blob_delete_req(BUF, &del), NULL, 0);
    struct wire_blob_delete_resp del_r = {0};
    add("blob_delete_resp", WIRE_BLOB_DELETE, true, wire_encode_blob_delete_resp(BUF, &del_r), NULL,
        0);
    struct wire_blob_stat_req st = {.blob_id = 42};
    add("blob_stat_req", WIRE_BLOB_STAT, false, wire_encode_blob_stat_req(BUF, &st), NULL, 0);
    struct wire_blob_stat_resp st_r = {.blob_id = 42, .partition = 1, .flags = 1, .len = 4096,
                                       .stored_len = 100, .csum = 7};
    add("blob_stat_resp", WIRE_BLOB_STAT, true, wire_encode_blob_stat_resp(BUF, &st_r), NULL, 0);
    struct wire_blob_list_req ls = {.partition = 3, .max = 100, .cursor = 55};
    add("blob_list_req", WIRE_BLOB_LIST, false, wire_encode_blob_list_req(BUF, &ls), NULL, 0);
    struct wire_blob_entry ents[3] = {{1, 4096, 11}, {2, 8192, 22}, {3, 1, 33}};
    uint8_t packed[3 * WIRE_BLOB_ENTRY_LEN];
    wire_blob_list_pack(packed, ents, 3);
    struct wire_blob_list_resp ls_r = {.next_cursor = 4, .n = 3, .entries = packed};
    add("blob_list_resp", WIRE_BLOB_LIST, true, wire_encode_blob_list_resp(BUF, &ls_r), NULL, 0);
    struct wire_blob_report_req rep = {0};
    add("blob_report_req", WIRE_BLOB_REPORT, false, wire_encode_blob_report_req(BUF, &rep), NULL, 0);
    struct wire_bad_blob bad[2] = {{9, 1}, {10, 2}};
    struct wire_blob_report_resp rep_r = {.node_id = 1, .capacity = 1ull << 40, .used = 5,
                                          .live_bytes = 4, .dead_bytes = 1, .blobs = 2,
                                          .bad_blobs = 2, .scrub_passes = 3, .n_bad = 2,
                                          .bad_in = bad};
    add("blob_report_resp", WIRE_BLOB_REPORT, true, wire_encode_blob_report_resp(BUF, &rep_r), NULL,
        0);
    struct wire_node_heartbeat_req hb = {.node_id = 12, .addr = wire_cstr("127.0.0.1:7201"),
                                         .capacity = 10, .used = 2, .blobs = 1, .n_bad = 0,
                                         .flags = 1};
    add("node_heartbeat_req", WIRE_NODE_HEARTBEAT, false,
        wire_encode_node_heartbeat_req(BUF, &hb), NULL, 0);
    struct wire_node_heartbeat_resp hb_r = {.leader_id = 2};
    add("node_heartbeat_resp", WIRE_NODE_HEARTBEAT, true,
        wire_encode_node_heartbeat_resp(BUF, &hb_r), NULL, 0);
    struct wire_raft_req raft = {.cluster_hash = 1, .from_id = 1, .to_id = 2, .part = 0,
                                 .parts = 2, .total_len = 64, .chunk_len = 32, .chunk = payload};
    add("raft_req", WIRE_RAFT, false, wire_encode_raft_req(BUF, &raft), NULL, 0);
    struct wire_propose_req prop = {.from_id = 2, .cmd_len = 8, .cmd = payload};
    add("propose_req", WIRE_PROPOSE, false, wire_encode_propose_req(BUF, &prop), NULL, 0);
    struct wire_propose_resp prop_r = {.raft_index = 100, .result_len = 4, .result = payload};
    add("propose_resp", WIRE_PROPOSE, true, wire_encode_propose_resp(BUF, &prop_r), NULL, 0);
    struct wire_vol_attach_req at = {.name = wire_cstr("vol0"), .agent_id = wire_cstr("hv1"),
                                     .flags = WIRE_ATTACH_RO};
    add("vol_attach_req", WIRE_VOL_ATTACH, false, wire_encode_vol_attach_req(BUF, &at), NULL, 0);
    struct wire_vol_attach_resp at_r = {.vol_id = 1, .size = 1ull << 30, .generation = 4,
                                        .block_size = 4096, .flags = 0, .raft_index = 17};
    add("vol_attach_resp", WIRE_VOL_ATTACH, true, wire_encode_vol_attach_resp(BUF, &at_r), NULL, 0);
    struct wire_vol_detach_req dt = {.vol_id = 1, .generation = 4, .agent_id = wire_cstr("hv1")};
    add("vol_detach_req", WIRE_VOL_DETACH, false, wire_encode_vol_detach_req(BUF, &dt), NULL, 0);
    struct wire_vol_detach_resp dt_r = {.raft_index = 18};
    add("vol_detach_resp", WIRE_VOL_DETACH, true, wire_encode_vol_detach_resp(BUF, &dt_r), NULL, 0);
    struct wire_vol_write_req wr = {.vol_id = 1, .generation = 4, .off = 8192, .len = 32,
                                    .flags = 0, .csum = util_xxh3(payload, 32), .data_len = 32};
    add("vol_write_req", WIRE_VOL_WRITE, false, wire_encode_vol_write_req(BUF, &wr), payload, 32);
    struct wire_vol_write_req wz = {.vol_id = 1, .generation = 4, .off = 0, .len = 1u << 20,
                                    .flags = WIRE_WRITE_ZERO};
    add("vol_write_zero_req", WIRE_VOL_WRITE, false, wire_encode_vol_write_req(BUF, &wz), NULL, 0);
    static const struct wire_write_ext sx[3] = {{8192, 8}, {16384, 16}, {65536, 8}};
    struct wire_vol_write_req ws = {.vol_id = 1, .generation = 4, .off = 8192, .len = 32,
                                    .flags = WIRE_WRITE_SCATTER,
                                    .csum = util_xxh3(payload, 32), .data_len = 32,
                                    .n_ext = 3, .ext_in = sx};
    add("vol_write_scatter_req", WIRE_VOL_WRITE, false, wire_encode_vol_write_req(BUF, &ws),
        payload, 32);
    struct wire_vol_write_resp wr_r = {.raft_index = 19};
    add("vol_write_resp", WIRE_VOL_WRITE, true, wire_encode_vol_write_resp(BUF, &wr_r), NULL, 0);
    struct wire_vol_read_req rd = {.vol_id = 1, .off = 4096, .len = 4096,
                                   .flags = WIRE_READ_MAP, .min_index = 19};
    add("vol_read_req", WIRE_VOL_READ, false, wire_encode_vol_read_req(BUF, &rd), NULL, 0);
    struct wire_map_range rrng[2] = {{4096, 2048, WIRE_MAP_DATA}, {6144, 2048, WIRE_MAP_HOLE}};
    struct wire_vol_read_resp rd_r = {.csum = 3, .raft_index = 20, .n_ranges = 2,
                                      .ranges_in = rrng, .data_len = 32};
    add("vol_read_resp", WIRE_VOL_READ, true, wire_encode_vol_read_resp(BUF, &rd_r), payload, 32);
    struct wire_vol_map_req mp = {.vol_id = 1, .off = 0, .len = 1u << 20, .min_index = 2};
    add("vol_map_req", WIRE_VOL_MAP, false, wire_encode_vol_map_req(BUF, &mp), NULL, 0);
    struct wire_map_range rngs[3] = {{0, 4096, WIRE_MAP_DATA}, {4096, 8192, WIRE_MAP_ZERO},
                                     {12288, 4096, WIRE_MAP_HOLE}};
    struct wire_vol_map_resp mp_r = {.n = 3, .ranges_in = rngs};
    add("vol_map_resp", WIRE_VOL_MAP, true, wire_encode_vol_map_resp(BUF, &mp_r), NULL, 0);
    struct wire_vol_flush_req fl = {.vol_id = 1, .generation = 4};
    add("vol_flush_req", WIRE_VOL_FLUSH, false, wire_encode_vol_flush_req(BUF, &fl), NULL, 0);
    struct wire_vol_flush_resp fl_r = {.raft_index = 21};
    add("vol_flush_resp", WIRE_VOL_FLUSH, true, wire_encode_vol_flush_resp(BUF, &fl_r), NULL, 0);
    struct wire_vol_list_req vl = {.max = 100, .after = wire_cstr("a")};
    add("vol_list_req", WIRE_VOL_LIST, false, wire_encode_vol_list_req(BUF, &vl), NULL, 0);
    struct wire_vol_entry ve[2] = {{wire_cstr("vol0"), 1, 1ull << 30}, {wire_cstr("vol1"), 2, 4096}};
    struct wire_vol_list_resp vl_r = {.n = 2, .entries_in = ve};
    add("vol_list_resp", WIRE_VOL_LIST, true, wire_encode_vol_list_resp(BUF, &vl_r), NULL, 0);
}

/* ---- Round trips ---------------------------------------------------------- */

/* Every message type has at least one request and one response vector. */
TEST(every_type_has_vectors)
{
    build_vectors();
#define X(code, NAME, name)                                                                \
    {                                                                                      \
        int req = 0, resp = 0;                                                             \
        for (int i = 0; i < n_vecs; i++)                                                   \
            if (vecs[i].type == code) {                                                    \
                if (vecs[i].response) resp++;                                              \
                else req++;                                                                \
            }                                                                              \
        if (!req || !resp) printf("# missing vector for %s\n", #NAME);                     \
        CHECK(req > 0 && (resp > 0 || code == WIRE_RAFT));                                 \
    }
    WIRE_MESSAGES(X)
#undef X
}

/* Decode then re-encode reproduces every vector byte for byte. */
TEST(round_trip_every_vector)
{
    build_vectors();
    for (int i = 0; i < n_vecs; i++) {
        int rc = wire_roundtrip(vecs[i].type, vecs[i].response, vecs[i].body, vecs[i].len,
                                vecs[i].payload_len);
        if (rc != 0) printf("# %s: %d\n", vecs[i].name, rc);
        CHECK_EQ(rc, 0);
    }
}

/* Decoded fields equal what was encoded (spot check of a data message). */
TEST(blob_put_fields)
{
    build_vectors();
    const struct vec *v = NULL;
    for (int i = 0; i < n_vecs; i++)
        if (strcmp(vecs[i].name, "blob_put_req") == 0) v = &vecs[i];
    CHECK(v);
    struct wire_blob_put_req m;
    CHECK_EQ(wire_decode_blob_put_req(v->body, v->len, v->payload_len, &m), 0);
    CHECK_EQ(m.blob_id, 77);
    CHECK_EQ(m.partition, 5);
    CHECK_EQ(m.epoch, 9);
    CHECK_EQ(m.data_len, 32);
    CHECK(memcmp(m.data, payload, 32) == 0);
    CHECK_EQ(m.csum, util_xxh3(payload, 32));
}

/* Every truncation of the fields is rejected, never a crash. */
TEST(truncated_at_every_length)
{
    build_vectors();
    for (int i = 0; i < n_vecs; i++) {
        size_t fields = vecs[i].len - vecs[i].payload_len;
        for (size_t cut = 0; cut < fields; cut++) {
            /* Cut the fields, keep the payload claim: must fail. */
            uint8_t *tmp = malloc(vecs[i].len + 1);
            memcpy(tmp, vecs[i].body, cut);
            memcpy(tmp + cut, vecs[i].body + fields, vecs[i].payload_len);
            int rc = wire_roundtrip(vecs[i].type, vecs[i].response, tmp,
                                    cut + vecs[i].payload_len, vecs[i].payload_len);
            free(tmp);
            if (rc == 0 && fields > 0) printf("# %s accepted at %zu/%zu\n", vecs[i].name, cut, fields);
            CHECK(rc != 0 || fields == 0);
        }
    }
}

/* A byte appended to the fields is rejected: no silent padding. */
TEST(trailing_bytes_rejected)
{
    build_vectors();
    for (int i = 0; i < n_vecs; i++) {
        if (vecs[i].payload_len) continue; /* the payload length is checked separately */
        vecs[i].body[vecs[i].len] = 0xaa;
        CHECK(wire_roundtrip(vecs[i].type, vecs[i].response, vecs[i].body, vecs[i].len + 1, 0) != 0);
    }
}

/* A payload whose length differs from the declared data_len is rejected. */
TEST(payload_length_must_match)
{
    struct wire_blob_put_req put = {.blob_id = 1, .data_len = 32};
    uint8_t body[256];
    int n = wire_encode_blob_put_req(body, sizeof(body), &put);
    memcpy(body + n, payload, 32);
    struct wire_blob_put_req m;
    CHECK_EQ(wire_decode_blob_put_req(body, (size_t)n + 32, 32, &m), 0);
    CHECK(wire_decode_blob_put_req(body, (size_t)n + 31, 31, &m) != 0);
    CHECK(wire_decode_blob_put_req(body, (size_t)n + 32, 0, &m) != 0);
}

/* Offset + length overflow and zero lengths are rejected in the decoder. */
TEST(write_overflow_rejected)
{
    struct wire_vol_write_req w = {.vol_id = 1, .off = UINT64_MAX - 100, .len = 4096,
                                   .flags = WIRE_WRITE_TRIM};
    uint8_t body[256];
    int n = wire_encode_vol_write_req(body, sizeof(body), &w);
    struct wire_vol_write_req m;
    CHECK(wire_decode_vol_write_req(body, (size_t)n, 0, &m) != 0);
    w.off = 0;
    w.len = 0;
    n = wire_encode_vol_write_req(body, sizeof(body), &w);
    CHECK(wire_decode_vol_write_req(body, (size_t)n, 0, &m) != 0);
    w.len = 4096;
    w.flags = WIRE_WRITE_TRIM | WIRE_WRITE_ZERO;
    n = wire_encode_vol_write_req(body, sizeof(body), &w);
    CHECK(wire_decode_vol_write_req(body, (size_t)n, 0, &m) != 0);
}

/* A scattered write's extents must start at OFF, ascend without overlap
 * and add up to LEN; scatter is for data only. */
TEST(scatter_extents_checked)
{
    uint8_t body[256];
    struct wire_vol_write_req m;
    struct wire_write_ext x[3] = {{4096, 4096}, {16384, 8192}, {65536, 4096}};
    struct wire_vol_write_req w = {.vol_id = 1, .off = 4096, .len = 16384,
                                   .flags = WIRE_WRITE_SCATTER, .data_len = 16384,
                                   .n_ext = 3, .ext_in = x};
    int n = wire_encode_vol_write_req(body, sizeof(body), &w);
    CHECK(n > 0);
    CHECK(wire_decode_vol_write_req(body, (size_t)n, 0, &m) != 0); /* payload missing */
    static uint8_t big[16384 + 256];
    memcpy(big, body, (size_t)n);
    CHECK_EQ(wire_decode_vol_write_req(big, (size_t)n + 16384, 16384, &m), 0);
    CHECK_EQ(m.n_ext, 3);
    struct wire_write_ext got;
    wire_vol_write_ext(&m, 2, &got);
    CHECK_EQ(got.off, 65536);
    CHECK_EQ(got.len, 4096);
    /* Each broken in turn: overlap, out of order, a gap at the start, a
     * zero length, a total that differs from LEN. */
    struct wire_write_ext bad[][3] = {
        {{4096, 4096}, {4096, 8192}, {65536, 4096}},
        {{4096, 4096}, {65536, 8192}, {16384, 4096}},
        {{8192, 4096}, {16384, 8192}, {65536, 4096}},
        {{4096, 4096}, {16384, 0}, {65536, 12288}},
        {{4096, 4096}, {16384, 8192}, {65536, 8192}},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        w.ext_in = bad[i];
        n = wire_encode_vol_write_req(big, sizeof(big), &w);
        CHECK(n > 0);
        CHECK(wire_decode_vol_write_req(big, (size_t)n + 16384, 16384, &m) != 0);
    }
    /* Zero extents, more than the maximum, scatter with ZERO. */
    w.ext_in = x;
    w.n_ext = 0;
    n = wire_encode_vol_write_req(big, sizeof(big), &w);
    CHECK(wire_decode_vol_write_req(big, (size_t)n + 16384, 16384, &m) != 0);
    w.n_ext = WIRE_SCATTER_MAX + 1;
    CHECK(wire_encode_vol_write_req(big, sizeof(big), &w) < 0);
    w.n_ext = 3;
    w.flags = WIRE_WRITE_SCATTER | WIRE_WRITE_ZERO;
    w.data_len = 0;
    n = wire_encode_vol_write_req(body, sizeof(body), &w);
    CHECK(wire_decode_vol_write_req(body, (size_t)n, 0, &m) != 0);
}

/* Map ranges must ascend without overlap. */
TEST(map_ranges_must_ascend)
{
    struct wire_map_range r[2] = {{8192, 4096, WIRE_MAP_DATA}, {4096, 8192, WIRE_MAP_ZERO}};
    struct wire_vol_map_resp m = {.n = 2, .ranges_in = r};
    uint8_t body[256];
    int n = wire_encode_vol_map_resp(body, sizeof(body), &m);
    CHECK(n > 0);
    struct wire_vol_map_resp d;
    CHECK(wire_decode_vol_map_resp(body, (size_t)n, 0, &d) != 0);
}

/* A list count larger than the bytes present is rejected, not allocated. */
TEST(list_count_bounded)
{
    uint8_t body[16];
    util_put_le64(body, 0);
    util_put_le32(body + 8, 0xffffffffu);
    struct wire_blob_list_resp m;
    CHECK(wire_decode_blob_list_resp(body, 12, 0, &m) != 0);
    util_put_le32(body + 8, 2);
    CHECK(wire_decode_blob_list_resp(body, 12, 0, &m) != 0);
}

/* An encoder given too small a buffer says -EMSGSIZE and writes nothing past it. */
TEST(encode_overflow)
{
    struct wire_hello_req h = {.role = 1, .name = wire_cstr("a-rather-long-name")};
    uint8_t buf[40];
    memset(buf, 0x5a, sizeof(buf));
    CHECK_EQ(wire_encode_hello_req(buf, 20, &h), (unsigned long long)-EMSGSIZE);
    for (int i = 20; i < 40; i++) CHECK_EQ(buf[i], 0x5a);
}

/* ---- Header --------------------------------------------------------------- */

static void make_hdr(uint8_t out[WIRE_HDR_LEN], uint32_t len)
{
    struct wire_hdr h = {.type = WIRE_PING, .len = len, .req_id = 7};
    static const uint8_t fields[8];
    wire_encode_hdr(out, &h, fields, len < 8 ? len : 8);
}

/* A well-formed header decodes with every field. */
TEST(header_round_trip)
{
    uint8_t b[WIRE_HDR_LEN];
    struct wire_hdr h = {.type = WIRE_BLOB_PUT, .flags = WIRE_F_RESPONSE, .status = WIRE_ENOSPC,
                         .len = 100, .req_id = 0xdeadbeefcafe, .payload_len = 60};
    uint8_t fields[40] = {1, 2, 3};
    wire_encode_hdr(b, &h, fields, 40);
    struct wire_hdr d;
    CHECK_EQ(wire_decode_hdr(b, &d), 0);
    CHECK_EQ(d.type, WIRE_BLOB_PUT);
    CHECK_EQ(d.flags, WIRE_F_RESPONSE);
    CHECK_EQ(d.status, WIRE_ENOSPC);
    CHECK_EQ(d.len, 100);
    CHECK_EQ(d.req_id, 0xdeadbeefcafeull);
    CHECK_EQ(d.payload_len, 60);
    uint8_t body[100];
    memcpy(body, fields, 40);
    CHECK_EQ(wire_check_fields(&d, body), 0);
    body[3] ^= 1;
    CHECK(wire_check_fields(&d, body) != 0);
}

/* Any single bit flip in a header is caught (bad magic, version or checksum). */
TEST(header_bit_flips_rejected)
{
    uint8_t b[WIRE_HDR_LEN];
    make_hdr(b, 8);
    struct wire_hdr d;
    CHECK_EQ(wire_decode_hdr(b, &d), 0);
    for (int bit = 0; bit < WIRE_HDR_LEN * 8; bit++) {
        b[bit / 8] ^= (uint8_t)(1 << (bit % 8));
        CHECK(wire_decode_hdr(b, &d) != 0);
        b[bit / 8] ^= (uint8_t)(1 << (bit % 8));
    }
}

/* A frame longer than WIRE_MAX_FRAME is refused by the header alone. */
TEST(header_oversize)
{
    uint8_t b[WIRE_HDR_LEN];
    make_hdr(b, WIRE_MAX_FRAME + 1);
    struct wire_hdr d;
    CHECK_EQ(wire_decode_hdr(b, &d), (unsigned long long)-EMSGSIZE);
    make_hdr(b, WIRE_MAX_FRAME);
    CHECK(wire_decode_hdr(b, &d) != 0); /* fields part over WIRE_MAX_FIELDS */
}

/* Statuses map to errors and back. */
TEST(status_mapping)
{
#define X(code, NAME)                                                                      \
    if (code != WIRE_OK) CHECK_EQ(wire_status_from_err(wire_status_to_err(code)), code);
    WIRE_STATUSES(X)
#undef X
    CHECK_EQ(wire_status_from_err(-EIO), WIRE_EIO);
    CHECK_EQ(wire_status_from_err(0), WIRE_OK);
}

/* ---- Corpus --------------------------------------------------------------- */

/* Write every vector as a fuzz seed (only with WIRE_CORPUS_DIR). */
TEST(write_corpus)
{
    const char *dir = getenv("WIRE_CORPUS_DIR");
    if (!dir) return;
    build_vectors();
    for (int i = 0; i < n_vecs; i++) {
        /* Seed format of fuzz_wire.c mode 1: mode, type, response, payload_len, body. */
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, vecs[i].name);
        FILE *f = fopen(path, "wb");
        CHECK(f);
        uint8_t head[6] = {1, (uint8_t)vecs[i].type, (uint8_t)(vecs[i].type >> 8),
                           vecs[i].response, (uint8_t)vecs[i].payload_len,
                           (uint8_t)(vecs[i].payload_len >> 8)};
        fwrite(head, 1, sizeof(head), f);
        fwrite(vecs[i].body, 1, vecs[i].len, f);
        fclose(f);
        /* Mode 0: the same body as a whole frame on a stream. */
        snprintf(path, sizeof(path), "%s/stream_%s", dir, vecs[i].name);
        f = fopen(path, "wb");
        CHECK(f);
        struct wire_hdr h = {.type = vecs[i].type,
                             .flags = vecs[i].response ? WIRE_F_RESPONSE : 0,
                             .len = (uint32_t)vecs[i].len,
                             .req_id = (uint64_t)i + 1,
                             .payload_len = (uint32_t)vecs[i].payload_len};
        uint8_t hb[WIRE_HDR_LEN], zero = 0;
        wire_encode_hdr(hb, &h, vecs[i].body, vecs[i].len - vecs[i].payload_len);
        fwrite(&zero, 1, 1, f);
        fwrite(hb, 1, sizeof(hb), f);
        fwrite(vecs[i].body, 1, vecs[i].len, f);
        fclose(f);
    }
}
