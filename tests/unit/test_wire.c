/* test_wire.c: the wire codec (src/net/wire.c).
 *
 * Fixture: one filled-in value of every request and response, encoded with
 * its payload appended as it travels.  Every vector must decode back to
 * equal fields, re-encode to the same bytes (wire_roundtrip), reject every
 * truncation, and reject trailing bytes.  Header tests cover magic,
 * version, checksum, flags and the size bound.  The vectors are also fuzz
 * seeds (tests/fuzz/gen-corpus). */
#include "net/wire.h"
#include "base/bd.h"
#include "golden.h"
#include "tap.h"
#include "base/bytes.h"
#include "base/util.h"

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
    struct wire_clock_req clock = {.wall_us = 1700000000123456ull};
    add("clock_req", WIRE_CLOCK, false, wire_encode_clock_req(BUF, &clock), NULL, 0);
    struct wire_clock_resp clock_r = {.wall_us = 1700000000654321ull};
    add("clock_resp", WIRE_CLOCK, true, wire_encode_clock_resp(BUF, &clock_r), NULL, 0);

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
    struct wire_blob_entry pulls[2] = {{.blob_id = 9, .len = 4096, .csum = 0x0102030405060708ull},
                                       {.blob_id = 10, .len = 8192, .csum = 0x1112131415161718ull}};
    struct wire_blob_pull_req pull = {.partition = 4, .epoch = 3, .src_id = 12,
                                      .src_addr = wire_cstr("127.0.0.1:7202"), .n = 2,
                                      .entries_in = pulls};
    add("blob_pull_req", WIRE_BLOB_PULL, false, wire_encode_blob_pull_req(BUF, &pull), NULL, 0);
    static const uint8_t pull_st[2] = {WIRE_OK, WIRE_ECSUM};
    struct wire_blob_pull_resp pull_r = {.n = 2, .status = pull_st};
    add("blob_pull_resp", WIRE_BLOB_PULL, true, wire_encode_blob_pull_resp(BUF, &pull_r), NULL,
        0);
    struct wire_node_heartbeat_req hb = {.node_id = 12, .addr = wire_cstr("127.0.0.1:7201"),
                                         .capacity = 10, .used = 2, .blobs = 1, .n_bad = 0,
                                         .flags = 1, .zone = wire_cstr("z1"),
                                         .rack = wire_cstr(""), .host = wire_cstr("h.2")};
    add("node_heartbeat_req", WIRE_NODE_HEARTBEAT, false,
        wire_encode_node_heartbeat_req(BUF, &hb), NULL, 0);
    struct wire_node_heartbeat_resp hb_r = {.leader_id = 2,
                                            .proxies = wire_cstr("127.0.0.1:7001,127.0.0.1:7002")};
    add("node_heartbeat_resp", WIRE_NODE_HEARTBEAT, true,
        wire_encode_node_heartbeat_resp(BUF, &hb_r), NULL, 0);
    struct wire_raft_req raft = {.cluster_hash = 1, .from_id = 1, .to_id = 2, .part = 0,
                                 .parts = 2, .total_len = 64, .chunk_len = 32, .chunk = payload};
    add("raft_req", WIRE_RAFT, false, wire_encode_raft_req(BUF, &raft), NULL, 0);
    struct wire_raft_resp raft_r = {0}; /* raft frames are oneway: the codec still pairs them */
    add("raft_resp", WIRE_RAFT, true, wire_encode_raft_resp(BUF, &raft_r), NULL, 0);
    struct wire_propose_req prop = {.from_id = 2, .cmd_len = 8, .cmd = payload};
    add("propose_req", WIRE_PROPOSE, false, wire_encode_propose_req(BUF, &prop), NULL, 0);
    struct wire_propose_resp prop_r = {.raft_index = 100, .result_len = 4, .result = payload};
    add("propose_resp", WIRE_PROPOSE, true, wire_encode_propose_resp(BUF, &prop_r), NULL, 0);
    struct wire_vol_attach_req at = {.name = wire_cstr("vol0"), .agent_id = wire_cstr("hv1"),
                                     .base_generation = 5};
    add("vol_attach_req", WIRE_VOL_ATTACH, false, wire_encode_vol_attach_req(BUF, &at), NULL, 0);
    struct wire_vol_attach_resp at_r = {.vol_id = 1, .size = 1ull << 30, .generation = 4,
                                        .block_size = 4096, .flags = WIRE_ATTACH_RO,
                                        .raft_index = 17, .client = wire_cstr("vm7")};
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
    struct wire_vol_list_req vl = {.max = 100, .after = wire_cstr("a"),
                                   .agent_id = wire_cstr("hv1")};
    add("vol_list_req", WIRE_VOL_LIST, false, wire_encode_vol_list_req(BUF, &vl), NULL, 0);
    struct wire_vol_entry ve[2] = {{wire_cstr("vol0"), 1, 1ull << 30, 0, wire_cstr("")},
                                   {wire_cstr("vol1"), 2, 4096, WIRE_ATTACH_RO, wire_cstr("vm7")}};
    struct wire_vol_list_resp vl_r = {.n = 2, .entries_in = ve};
    add("vol_list_resp", WIRE_VOL_LIST, true, wire_encode_vol_list_resp(BUF, &vl_r), NULL, 0);
    struct wire_qos_report qr = {.vol_id = 5, .ops = {10, 20}, .bytes = {4096, 8192},
                                 .delayed = 3, .throttled_us = 1500, .waiting = 2,
                                 .p50_us = {100, 200}, .p99_us = {900, 1800},
                                 .level = {-4, 0, 0, 1 << 20, 0, 0}};
    struct wire_vol_qos_req qq = {.agent_id = wire_cstr("hv1"), .n = 1, .reports_in = &qr};
    add("vol_qos_req", WIRE_VOL_QOS, false, wire_encode_vol_qos_req(BUF, &qq), NULL, 0);
    struct wire_qos_entry qe[2] = {{.vol_id = 5, .found = 1}, {.vol_id = 6, .found = 0}};
    qos_effective(NULL, NULL, &qe[0].qos);
    qe[0].qos.limit[QOS_IOPS] = 500;
    qe[0].qos.burst[QOS_IOPS] = 1000;
    struct wire_vol_qos_resp qq_r = {.n = 2, .entries_in = qe};
    add("vol_qos_resp", WIRE_VOL_QOS, true, wire_encode_vol_qos_resp(BUF, &qq_r), NULL, 0);
    struct wire_vol_barrier_req vb = {.vol_id = 3, .generation = 7};
    add("vol_barrier_req", WIRE_VOL_BARRIER, false, wire_encode_vol_barrier_req(BUF, &vb), NULL,
        0);
    struct wire_vol_barrier_resp vb_r = {.raft_index = 42};
    add("vol_barrier_resp", WIRE_VOL_BARRIER, true, wire_encode_vol_barrier_resp(BUF, &vb_r),
        NULL, 0);
    struct wire_agent_hello_req ah = {.agent_id = wire_cstr("hv1")};
    add("agent_hello_req", WIRE_AGENT_HELLO, false, wire_encode_agent_hello_req(BUF, &ah), NULL,
        0);
    struct wire_agent_hello_resp ah_r = {0}; /* oneway: the codec still pairs it */
    add("agent_hello_resp", WIRE_AGENT_HELLO, true, wire_encode_agent_hello_resp(BUF, &ah_r),
        NULL, 0);
    struct wire_vol_lease_req le = {.vol_id = 1, .off = 1u << 20, .len = 1u << 20,
                                    .min_index = 19};
    add("vol_lease_req", WIRE_VOL_LEASE, false, wire_encode_vol_lease_req(BUF, &le), NULL, 0);
    static const struct wire_lease_node lnodes[2] = {{7, {"b1:1", 4}}, {8, {"b2:2", 4}}};
    static const struct wire_lease_entry lents[2] = {
        {.off = 1u << 20, .len = 4096, .blob_id = 0},
        {.off = (1u << 20) + 4096, .len = 8192, .blob_id = 9, .blob_off = 4096, .partition = 3,
         .nodes = {7, 8, 0}}};
    struct wire_vol_lease_resp le_r = {.raft_index = 20, .lease_ms = 3000, .timeout_ms = 1000,
                                       .end = (1u << 20) + 12288, .n_nodes = 2,
                                       .nodes_in = lnodes, .n = 2, .entries_in = lents};
    add("vol_lease_resp", WIRE_VOL_LEASE, true, wire_encode_vol_lease_resp(BUF, &le_r), NULL, 0);
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
        CHECK(req > 0 && resp > 0);                                                        \
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
    bytes_put_le64(body, 0);
    bytes_put_le32(body + 8, 0xffffffffu);
    struct wire_blob_list_resp m;
    CHECK(wire_decode_blob_list_resp(body, 12, 0, &m) != 0);
    bytes_put_le32(body + 8, 2);
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

/* ---- Golden bytes ---------------------------------------------------------- */

/* Every vector's body (fields, then payload) as it was on the wire when
 * this test was written: a layout change fails here until WIRE_VERSION and
 * the tables in wire.h say so.  The other direction: the golden bytes
 * decode and re-encode to themselves (wire_roundtrip), and since the
 * fixture value encodes to those same bytes, the decoded value is the
 * fixture's (encoding is one-to-one on every field). */
static const struct {
    const char *name;
    const char *hex;
} golden[] = {
    {"hello_req", "8877665544332211030000000000000002006300000000000000070070726f78"
        "792e33"},
    {"hello_resp", "0b000000000000000300"},
    {"ping_req", "15cd5b0700000000"},
    {"ping_resp", "b168de3a00000000"},
    {"clock_req", "40222018240a0600"},
    {"clock_resp", "f13b2818240a0600"},
    {"blob_put_req", "4d000000000000000500000001000000090000000000000055c00a6c5b1d1201"
        "2000000030313233343536373839616263646566303132333435363738396162"
        "63646566"},
    {"blob_put_resp", "a00f0000"},
    {"blob_get_req", "4d00000000000000050000000010000000200000"},
    {"blob_get_resp", "0500000000000000640000001000000030313233343536373839616263646566"},
    {"blob_delete_req", "010000000000000002000000"},
    {"blob_delete_resp", ""},
    {"blob_stat_req", "2a00000000000000"},
    {"blob_stat_resp", "2a00000000000000010000000100000000100000640000000700000000000000"},
    {"blob_list_req", "03000000640000003700000000000000"},
    {"blob_list_resp", "0400000000000000030000000100000000000000001000000b00000000000000"
        "0200000000000000002000001600000000000000030000000000000001000000"
        "2100000000000000"},
    {"blob_report_req", ""},
    {"blob_report_resp", "0100000000000000000000000001000005000000000000000400000000000000"
        "0100000000000000020000000000000002000000000000000300000000000000"
        "020000000900000000000000010000000a0000000000000002000000"},
    {"blob_pull_req", "04000000 0300000000000000 0c00000000000000 0e00 3132372e302e302e313a37323032 "
        "02000000 0900000000000000 00100000 0807060504030201 0a00000000000000 00200000 "
        "1817161514131211"},
    {"blob_pull_resp", "02000000 0004"},
    {"node_heartbeat_req", "0c000000000000000e003132372e302e302e313a373230310a00000000000000"
        "020000000000000001000000000000000000000001000000 0200 7a31 0000 0300 682e32"},
    {"node_heartbeat_resp", "0200000000000000 1d00 3132372e302e302e313a373030312c"
        "3132372e302e302e313a37303032"},
    {"raft_req", "0100000000000000010000000000000002000000000000000000000002000000"
        "4000000000000000200000003031323334353637383961626364656630313233"
        "343536373839616263646566"},
    {"raft_resp", ""},
    {"propose_req", "0200000000000000080000003031323334353637"},
    {"propose_resp", "64000000000000000400000030313233"},
    {"vol_attach_req", "0400766f6c30030068763100000000" "0500000000000000"}, /* base 5 */
    {"vol_attach_resp", "0100000000000000000000400000000004000000000000000010000001000000"
        "11000000000000000300766d37"},
    {"vol_detach_req", "010000000000000004000000000000000300687631"},
    {"vol_detach_resp", "1200000000000000"},
    {"vol_write_req", "0100000000000000040000000000000000200000000000002000000000000000"
        "55c00a6c5b1d1201200000003031323334353637383961626364656630313233"
        "343536373839616263646566"},
    {"vol_write_zero_req", "0100000000000000040000000000000000000000000000000000100001000000"
        "000000000000000000000000"},
    {"vol_write_scatter_req", "0100000000000000040000000000000000200000000000002000000004000000"
        "55c00a6c5b1d1201200000000300000000200000000000000800000000400000"
        "0000000010000000000001000000000008000000303132333435363738396162"
        "6364656630313233343536373839616263646566"},
    {"vol_write_resp", "1300000000000000"},
    {"vol_read_req", "0100000000000000001000000000000000100000010000001300000000000000"},
    {"vol_read_resp", "0300000000000000140000000000000002000000001000000000000000080000"
        "0000000000000000001800000000000000080000000000000200000020000000"
        "3031323334353637383961626364656630313233343536373839616263646566"},
    {"vol_map_req", "0100000000000000000000000000000000001000000000000200000000000000"},
    {"vol_map_resp", "0300000000000000000000000010000000000000000000000010000000000000"
        "0020000000000000010000000030000000000000001000000000000002000000"},
    {"vol_flush_req", "01000000000000000400000000000000"},
    {"vol_flush_resp", "1500000000000000"},
    {"vol_list_req", "640000000100610300687631"},
    {"vol_list_resp", "020000000400766f6c3001000000000000000000004000000000000000000000"
        "0400766f6c3102000000000000000010000000000000010000000300766d37"},
    /* agent hv1, one report: vol 5, ops 10/20, bytes 4096/8192, delayed 3,
     * throttled 1500 us, waiting 2, p50 100/200, p99 900/1800, levels
     * {-4, 0, 0, 1 MiB, 0, 0} */
    {"vol_qos_req", "0300 687631 01000000 0500000000000000 0a00000000000000 1400000000000000 "
        "0010000000000000 0020000000000000 0300000000000000 dc05000000000000 02000000 "
        "64000000 c8000000 84030000 08070000 fcffffffffffffff [0*16] 0000100000000000 [0*16]"},
    /* two entries: vol 5 found {iops 500, iops_burst 1000, the defaults}, vol 6 not */
    {"vol_qos_resp", "02000000 0500000000000000 01 ff3f f401000000000000 [0*40] "
        "e803000000000000 [0*40] 01000000 00000400 "
        "0600000000000000 00 0000 [0*96] 00000000 00000000"},
    {"vol_barrier_req", "03000000000000000700000000000000"},
    {"vol_barrier_resp", "2a00000000000000"},
    {"agent_hello_req", "0300687631"},
    {"agent_hello_resp", ""},
    {"vol_lease_req", "01000000000000000000100000000000000010001300000000000000"},
    /* raft index 20, lease 3000 ms, timeout 1000 ms, end 1 MiB + 12 KiB;
     * nodes 7 "b1:1" and 8 "b2:2"; a zero entry, then blob 9 from 4096 */
    {"vol_lease_resp", "1400000000000000b80b0000e803000000301000000000000200000007000000"
        "00000000040062313a310800000000000000040062323a320200000000001000"
        "0000000000100000000000000000000000000000000000000000000000000000"
        "0000000000000000000000000000000000101000000000000020000009000000"
        "0000000000100000030000000700000000000000080000000000000000000000"
        "00000000"},
};

TEST(golden_every_vector)
{
    build_vectors();
    CHECK_EQ(BD_ARRAY_SIZE(golden), (size_t)n_vecs);
    bool all = true;
    for (int i = 0; i < n_vecs; i++) {
        CHECK(strcmp(golden[i].name, vecs[i].name) == 0);
        all &= golden_eq(vecs[i].name, vecs[i].body, vecs[i].len, golden[i].hex);
    }
    CHECK(all);
    for (int i = 0; i < n_vecs; i++) {
        uint8_t b[2048];
        size_t n = golden_bytes(golden[i].hex, b, sizeof(b));
        int rc = wire_roundtrip(vecs[i].type, vecs[i].response, b, n, vecs[i].payload_len);
        if (rc != 0) printf("# %s: %d\n", vecs[i].name, rc);
        CHECK_EQ(rc, 0);
    }
}

/* Spot checks of decoding golden bytes field by field: a request with a
 * string, one with a payload, the packed arrays of three responses. */
TEST(golden_decode_fields)
{
    build_vectors();
    uint8_t b[2048];
    size_t n = golden_bytes(golden[0].hex, b, sizeof(b));
    struct wire_hello_req h;
    CHECK_EQ(wire_decode_hello_req(b, n, 0, &h), 0);
    CHECK_EQ(h.cluster_hash, 0x1122334455667788ull);
    CHECK_EQ(h.node_id, 3);
    CHECK_EQ(h.role, WIRE_ROLE_PROXY);
    CHECK_EQ(h.auth, 99);
    CHECK(h.name.len == 7 && memcmp(h.name.ptr, "proxy.3", 7) == 0);
    for (int i = 0; i < n_vecs; i++) {
        const struct vec *v = &vecs[i];
        n = golden_bytes(golden[i].hex, b, sizeof(b));
        if (strcmp(v->name, "vol_write_scatter_req") == 0) {
            struct wire_vol_write_req w;
            CHECK_EQ(wire_decode_vol_write_req(b, n, v->payload_len, &w), 0);
            CHECK_EQ(w.vol_id, 1);
            CHECK_EQ(w.generation, 4);
            CHECK_EQ(w.off, 8192);
            CHECK_EQ(w.len, 32);
            CHECK_EQ(w.flags, WIRE_WRITE_SCATTER);
            CHECK_EQ(w.csum, util_xxh3(payload, 32));
            CHECK_EQ(w.n_ext, 3);
            struct wire_write_ext x;
            wire_vol_write_ext(&w, 1, &x);
            CHECK(x.off == 16384 && x.len == 16);
            CHECK(memcmp(w.data, payload, 32) == 0);
        } else if (strcmp(v->name, "blob_list_resp") == 0) {
            struct wire_blob_list_resp r;
            CHECK_EQ(wire_decode_blob_list_resp(b, n, 0, &r), 0);
            CHECK(r.next_cursor == 4 && r.n == 3);
            struct wire_blob_entry e;
            wire_blob_list_entry(&r, 2, &e);
            CHECK(e.blob_id == 3 && e.len == 1 && e.csum == 33);
        } else if (strcmp(v->name, "blob_report_resp") == 0) {
            struct wire_blob_report_resp r;
            CHECK_EQ(wire_decode_blob_report_resp(b, n, 0, &r), 0);
            CHECK(r.capacity == 1ull << 40 && r.scrub_passes == 3 && r.n_bad == 2);
            struct wire_bad_blob bb;
            wire_blob_report_bad(&r, 1, &bb);
            CHECK(bb.blob_id == 10 && bb.partition == 2);
        } else if (strcmp(v->name, "vol_read_resp") == 0) {
            struct wire_vol_read_resp r;
            CHECK_EQ(wire_decode_vol_read_resp(b, n, v->payload_len, &r), 0);
            CHECK(r.csum == 3 && r.raft_index == 20 && r.n_ranges == 2 && r.data_len == 32);
            struct wire_map_range g;
            wire_vol_read_range(&r, 1, &g);
            CHECK(g.off == 6144 && g.len == 2048 && g.kind == WIRE_MAP_HOLE);
        } else if (strcmp(v->name, "vol_map_resp") == 0) {
            struct wire_vol_map_resp r;
            CHECK_EQ(wire_decode_vol_map_resp(b, n, 0, &r), 0);
            CHECK_EQ(r.n, 3);
            struct wire_map_range g;
            wire_vol_map_range(&r, 1, &g);
            CHECK(g.off == 4096 && g.len == 8192 && g.kind == WIRE_MAP_ZERO);
        } else if (strcmp(v->name, "vol_qos_resp") == 0) {
            struct wire_vol_qos_resp r;
            CHECK_EQ(wire_decode_vol_qos_resp(b, n, 0, &r), 0);
            CHECK_EQ(r.n, 2);
            struct wire_qos_entry e;
            wire_vol_qos_entry(&r, 0, &e);
            CHECK(e.vol_id == 5 && e.found && e.qos.limit[QOS_IOPS] == 500 &&
                  e.qos.burst[QOS_IOPS] == 1000 && e.qos.io_size == QOS_DEFAULT_IO_SIZE);
            wire_vol_qos_entry(&r, 1, &e);
            CHECK(e.vol_id == 6 && !e.found && !e.qos.set);
            /* A found entry must give every field; a bad limit does not decode. */
            b[4 + 9] = 0x7f;
            CHECK_EQ(wire_decode_vol_qos_resp(b, n, 0, &r), -EPROTO);
        } else if (strcmp(v->name, "vol_qos_req") == 0) {
            struct wire_vol_qos_req r;
            CHECK_EQ(wire_decode_vol_qos_req(b, n, 0, &r), 0);
            struct wire_qos_report q;
            wire_vol_qos_report(&r, 0, &q);
            CHECK(q.vol_id == 5 && q.ops[1] == 20 && q.throttled_us == 1500 && q.waiting == 2 &&
                  q.p99_us[1] == 1800 && q.level[0] == -4 && q.level[QOS_BPS] == 1 << 20);
        } else if (strcmp(v->name, "vol_list_resp") == 0) {
            struct wire_vol_list_resp r;
            CHECK_EQ(wire_decode_vol_list_resp(b, n, 0, &r), 0);
            size_t pos = 0;
            struct wire_vol_entry e;
            CHECK_EQ(wire_vol_list_next(&r, &pos, &e), 1);
            CHECK_EQ(wire_vol_list_next(&r, &pos, &e), 1);
            CHECK(e.name.len == 4 && memcmp(e.name.ptr, "vol1", 4) == 0);
            CHECK(e.vol_id == 2 && e.size == 4096 && e.flags == WIRE_ATTACH_RO);
            CHECK(e.client.len == 3 && memcmp(e.client.ptr, "vm7", 3) == 0);
            CHECK_EQ(wire_vol_list_next(&r, &pos, &e), 0);
        }
    }
}

/* The error body every non-OK response carries. */
TEST(golden_error_body)
{
    struct wire_error e = {.hint = 2, .msg = wire_cstr("not the leader")};
    uint8_t b[64];
    int n = wire_encode_error(b, sizeof(b), &e);
    CHECK(n > 0);
    CHECK(golden_eq("error", b, (size_t)n, "02000000000000000e006e6f7420746865206c6561646572"));
    struct wire_error d;
    CHECK_EQ(wire_decode_error(b, (size_t)n, 0, &d), 0);
    CHECK_EQ(d.hint, 2);
    CHECK(d.msg.len == 14 && memcmp(d.msg.ptr, "not the leader", 14) == 0);
}

/* The frame header, field by field (see the table in wire.h). */
static const char header_hex[] =
    /* magic  version type flags status len      req_id           payload_len */
    "424c4b44 0200    0a00 0100  0600   64000000 fecaefbeadde0000 3c000000 "
    /* fields_csum reserved hdr_csum */
    "9b4eaa49      00000000 dd958033";
TEST(golden_header)
{
    struct wire_hdr h = {.type = WIRE_BLOB_PUT, .flags = WIRE_F_RESPONSE, .status = WIRE_ENOSPC,
                         .len = 100, .req_id = 0xdeadbeefcafe, .payload_len = 60};
    uint8_t fields[40] = {1, 2, 3}, b[WIRE_HDR_LEN];
    wire_encode_hdr(b, &h, fields, sizeof(fields));
    CHECK(golden_eq("header", b, sizeof(b), header_hex));
    uint8_t g[WIRE_HDR_LEN];
    CHECK_EQ(golden_bytes(header_hex, g, sizeof(g)), WIRE_HDR_LEN);
    struct wire_hdr d;
    CHECK_EQ(wire_decode_hdr(g, &d), 0);
    CHECK_EQ(d.version, WIRE_VERSION);
    CHECK_EQ(d.type, WIRE_BLOB_PUT);
    CHECK_EQ(d.flags, WIRE_F_RESPONSE);
    CHECK_EQ(d.status, WIRE_ENOSPC);
    CHECK_EQ(d.len, 100);
    CHECK_EQ(d.req_id, 0xdeadbeefcafeull);
    CHECK_EQ(d.payload_len, 60);
    CHECK_EQ(d.fields_csum, (uint32_t)util_xxh3(fields, sizeof(fields)));
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

/* Write every vector as a fuzz seed. */
TAP_CORPUS(write_corpus)
{
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

/* A write's trace id is the same for the same request on both sides, and
 * differs when the generation, range or data differ (log.h "ship"). */
TEST(vol_write_trace_id)
{
    struct wire_vol_write_req a = {.vol_id = 3, .generation = 7, .off = 1 << 20, .len = 65536,
                                   .csum = 0x1234};
    struct wire_vol_write_req b = a;
    CHECK(wire_vol_write_trace_id(&a) != 0);
    CHECK_EQ(wire_vol_write_trace_id(&a), wire_vol_write_trace_id(&b));
    b.generation = 8;
    CHECK(wire_vol_write_trace_id(&a) != wire_vol_write_trace_id(&b));
    b = a;
    b.off += 4096;
    CHECK(wire_vol_write_trace_id(&a) != wire_vol_write_trace_id(&b));
    b = a;
    b.csum ^= 1;
    CHECK(wire_vol_write_trace_id(&a) != wire_vol_write_trace_id(&b));
}
