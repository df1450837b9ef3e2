/* test_raftmsg.c: the Raft message codec (src/net/raftmsg.c).
 *
 * Fixture: one filled-in message of every type (append entries with and
 * without entries, both results, request vote with each flag, install
 * snapshot with a three-server configuration, timeout now).  Each must
 * encode, decode to equal fields with libraft's ownership (one batch for
 * all entries), re-encode to the same bytes, and reject every truncation
 * and any trailing byte.  Bounds tests forge counts and lengths that the
 * remaining bytes cannot hold.  The vectors are also the fuzz seeds of
 * tests/fuzz/corpus/raftmsg (tests/fuzz/gen-corpus). */
#include "base/bd.h"
#include "net/raftmsg.h"
#include "golden.h"
#include "tap.h"
#include "base/bytes.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

/* ---- Fixture -------------------------------------------------------------- */

static char data_a[] = "set x = 1";
static char data_b[] = "";
static char data_c[] = "a somewhat longer command buffer, with bytes \x01\x02\x03";
static char snap_data[] = "snapshot bytes: the whole index, in one buffer";

static struct raft_entry entries[3];
static struct raft_configuration conf3;

static void fixture(void)
{
    if (conf3.n) return;
    entries[0] = (struct raft_entry){.term = 7, .type = RAFT_COMMAND,
                                     .buf = {data_a, sizeof(data_a) - 1}};
    entries[1] = (struct raft_entry){.term = 7, .type = RAFT_BARRIER, .buf = {data_b, 0}};
    entries[2] = (struct raft_entry){.term = 8, .type = RAFT_CHANGE,
                                     .buf = {data_c, sizeof(data_c) - 1}};
    raft_configuration_init(&conf3);
    raft_configuration_add(&conf3, 1, "127.0.0.1:7001", RAFT_VOTER);
    raft_configuration_add(&conf3, 2, "127.0.0.1:7002", RAFT_STANDBY);
    raft_configuration_add(&conf3, 3, "[::1]:7003", RAFT_SPARE);
}

/* Every vector, by index: 0 AE with entries, 1 AE heartbeat, 2 AE result,
 * 3 RV, 4 RV pre-vote + disrupt, 5 RV result, 6 RV result pre-vote,
 * 7 install snapshot, 8 install snapshot empty data, 9 timeout now. */
#define N_VECS 10
static void make_msg(int i, struct raft_message *m)
{
    fixture();
    memset(m, 0, sizeof(*m));
    switch (i) {
    case 0:
        m->type = RAFT_IO_APPEND_ENTRIES;
        m->append_entries = (struct raft_append_entries){
            .term = 8, .prev_log_index = 41, .prev_log_term = 6, .leader_commit = 40,
            .entries = entries, .n_entries = 3};
        break;
    case 1:
        m->type = RAFT_IO_APPEND_ENTRIES;
        m->append_entries = (struct raft_append_entries){
            .term = 1ull << 40, .prev_log_index = UINT64_MAX, .prev_log_term = 2,
            .leader_commit = 3};
        break;
    case 2:
        m->type = RAFT_IO_APPEND_ENTRIES_RESULT;
        m->append_entries_result = (struct raft_append_entries_result){
            .term = 9, .rejected = 12, .last_log_index = 11};
        break;
    case 3:
        m->type = RAFT_IO_REQUEST_VOTE;
        m->request_vote = (struct raft_request_vote){
            .term = 5, .candidate_id = 3, .last_log_index = 100, .last_log_term = 4};
        break;
    case 4:
        m->type = RAFT_IO_REQUEST_VOTE;
        m->request_vote = (struct raft_request_vote){
            .term = 6, .candidate_id = 2, .last_log_index = 7, .last_log_term = 1,
            .disrupt_leader = true, .pre_vote = true};
        break;
    case 5:
        m->type = RAFT_IO_REQUEST_VOTE_RESULT;
        m->request_vote_result = (struct raft_request_vote_result){
            .term = 5, .vote_granted = true, .pre_vote = raft_tribool_unknown};
        break;
    case 6:
        m->type = RAFT_IO_REQUEST_VOTE_RESULT;
        m->request_vote_result = (struct raft_request_vote_result){
            .term = 5, .vote_granted = false, .pre_vote = raft_tribool_true};
        break;
    case 7:
        m->type = RAFT_IO_INSTALL_SNAPSHOT;
        m->install_snapshot = (struct raft_install_snapshot){
            .term = 4, .last_index = 1000, .last_term = 3, .conf = conf3, .conf_index = 1,
            .data = {snap_data, sizeof(snap_data) - 1}};
        break;
    case 8:
        m->type = RAFT_IO_INSTALL_SNAPSHOT;
        m->install_snapshot = (struct raft_install_snapshot){
            .term = 4, .last_index = 1, .last_term = 1, .conf = conf3, .conf_index = 1};
        break;
    default:
        m->type = RAFT_IO_TIMEOUT_NOW;
        m->timeout_now = (struct raft_timeout_now){
            .term = 10, .last_log_index = 77, .last_log_term = 9};
        break;
    }
}

/* ---- Helpers -------------------------------------------------------------- */

/* Encode M into a malloc'ed flat buffer; *LEN gets its size. */
static uint8_t *flat(const struct raft_message *m, size_t *len)
{
    struct raftmsg_enc enc;
    if (raftmsg_encode(m, &enc) != 0) return NULL;
    uint8_t *b = malloc(enc.total_len ? enc.total_len : 1);
    raftmsg_enc_flatten(&enc, b);
    *len = enc.total_len;
    raftmsg_enc_free(&enc);
    return b;
}

static bool conf_equal(const struct raft_configuration *a, const struct raft_configuration *b)
{
    if (a->n != b->n) return false;
    for (unsigned i = 0; i < a->n; i++)
        if (a->servers[i].id != b->servers[i].id || a->servers[i].role != b->servers[i].role ||
            strcmp(a->servers[i].address, b->servers[i].address) != 0)
            return false;
    return true;
}

/* Field-by-field equality of two messages of the same type. */
static bool msg_equal(const struct raft_message *a, const struct raft_message *b)
{
    if (a->type != b->type) return false;
    switch (a->type) {
    case RAFT_IO_APPEND_ENTRIES: {
        const struct raft_append_entries *x = &a->append_entries, *y = &b->append_entries;
        if (x->term != y->term || x->prev_log_index != y->prev_log_index ||
            x->prev_log_term != y->prev_log_term || x->leader_commit != y->leader_commit ||
            x->n_entries != y->n_entries)
            return false;
        for (unsigned i = 0; i < x->n_entries; i++) {
            const struct raft_entry *e = &x->entries[i], *f = &y->entries[i];
            if (e->term != f->term || e->type != f->type || e->buf.len != f->buf.len ||
                (e->buf.len && memcmp(e->buf.base, f->buf.base, e->buf.len)))
                return false;
        }
        return true;
    }
    case RAFT_IO_APPEND_ENTRIES_RESULT:
        return memcmp(&a->append_entries_result, &b->append_entries_result,
                      sizeof(a->append_entries_result)) == 0;
    case RAFT_IO_REQUEST_VOTE: {
        const struct raft_request_vote *x = &a->request_vote, *y = &b->request_vote;
        return x->term == y->term && x->candidate_id == y->candidate_id &&
               x->last_log_index == y->last_log_index && x->last_log_term == y->last_log_term &&
               x->disrupt_leader == y->disrupt_leader && x->pre_vote == y->pre_vote;
    }
    case RAFT_IO_REQUEST_VOTE_RESULT: {
        const struct raft_request_vote_result *x = &a->request_vote_result,
                                              *y = &b->request_vote_result;
        return x->term == y->term && x->vote_granted == y->vote_granted &&
               x->pre_vote == y->pre_vote;
    }
    case RAFT_IO_INSTALL_SNAPSHOT: {
        const struct raft_install_snapshot *x = &a->install_snapshot, *y = &b->install_snapshot;
        return x->term == y->term && x->last_index == y->last_index &&
               x->last_term == y->last_term && x->conf_index == y->conf_index &&
               conf_equal(&x->conf, &y->conf) && x->data.len == y->data.len &&
               (x->data.len == 0 || memcmp(x->data.base, y->data.base, x->data.len) == 0);
    }
    case RAFT_IO_TIMEOUT_NOW:
        return memcmp(&a->timeout_now, &b->timeout_now, sizeof(a->timeout_now)) == 0;
    }
    return false;
}

/* ---- Golden bytes ---------------------------------------------------------- */

/* Every vector as it was encoded when this test was written, by index (see
 * make_msg): a layout change fails here until RAFTMSG_VERSION and the
 * table in raftmsg.h say so.  The other direction: the golden bytes decode
 * to a message equal to the fixture, field by field. */
static const char *const golden[N_VECS] = {
    "0100010008000000000000002900000000000000060000000000000028000000"
        "0000000003000000070000000000000001000000090000000700000000000000"
        "0200000000000000080000000000000003000000300000007365742078203d20"
        "316120736f6d6577686174206c6f6e67657220636f6d6d616e64206275666665"
        "722c207769746820627974657320010203",
    "010001000000000000010000ffffffffffffffff020000000000000003000000"
        "0000000000000000",
    "0200010009000000000000000c000000000000000b00000000000000",
    "0300010005000000000000000300000000000000640000000000000004000000"
        "0000000000",
    "0300010006000000000000000200000000000000070000000000000001000000"
        "0000000003",
    "0400010005000000000000000100",
    "0400010005000000000000000001",
    "050001000400000000000000e803000000000000030000000000000001000000"
        "00000000030000000100000000000000010e003132372e302e302e313a373030"
        "310200000000000000000e003132372e302e302e313a37303032030000000000"
        "0000020a005b3a3a315d3a373030332e00000000000000736e617073686f7420"
        "62797465733a207468652077686f6c6520696e6465782c20696e206f6e652062"
        "7566666572",
    "0500010004000000000000000100000000000000010000000000000001000000"
        "00000000030000000100000000000000010e003132372e302e302e313a373030"
        "310200000000000000000e003132372e302e302e313a37303032030000000000"
        "0000020a005b3a3a315d3a373030330000000000000000",
    "060001000a000000000000004d000000000000000900000000000000",
};
static const char *const golden_names[N_VECS] = {
    "ae_entries", "ae_heartbeat", "ae_result", "rv", "rv_prevote_disrupt", "rv_result",
    "rv_result_prevote", "install_snapshot", "install_snapshot_empty", "timeout_now",
};

TEST(golden_every_type)
{
    bool all = true;
    for (int i = 0; i < N_VECS; i++) {
        struct raft_message m;
        make_msg(i, &m);
        size_t len = 0;
        uint8_t *b = flat(&m, &len);
        CHECK(b != NULL);
        all &= golden_eq(golden_names[i], b, len, golden[i]);
        free(b);
    }
    CHECK(all);
    for (int i = 0; i < N_VECS; i++) {
        struct raft_message m, d;
        make_msg(i, &m);
        static uint8_t g[4096];
        size_t len = golden_bytes(golden[i], g, sizeof(g));
        memset(&d, 0, sizeof(d));
        CHECK_EQ(raftmsg_decode(g, len, &d), 0);
        bool same = msg_equal(&m, &d);
        raftmsg_free(&d);
        CHECK(same);
    }
}

/* The configuration on its own (also the conf part of a snapshot file). */
TEST(golden_conf)
{
    fixture();
    uint8_t b[256];
    size_t n = raftmsg_conf_size(&conf3);
    CHECK(n > 0 && n <= sizeof(b));
    raftmsg_conf_encode(&conf3, b);
    static const char hex[] = "030000000100000000000000010e003132372e302e302e313a37303031020000"
        "0000000000000e003132372e302e302e313a373030320300000000000000020a"
        "005b3a3a315d3a37303033";
    CHECK(golden_eq("conf3", b, n, hex));
    uint8_t g[256];
    size_t len = golden_bytes(hex, g, sizeof(g));
    struct raft_configuration c;
    CHECK_EQ(raftmsg_conf_decode(g, len, &c), 0);
    bool same = conf_equal(&conf3, &c);
    raft_configuration_close(&c);
    CHECK(same);
}

/* ---- Round trips ---------------------------------------------------------- */

/* Every vector decodes to equal fields and re-encodes to the same bytes. */
TEST(round_trip_every_type)
{
    for (int i = 0; i < N_VECS; i++) {
        struct raft_message m, d;
        make_msg(i, &m);
        size_t len = 0;
        uint8_t *b = flat(&m, &len);
        CHECK(b != NULL);
        memset(&d, 0, sizeof(d));
        CHECK_EQ(raftmsg_decode(b, len, &d), 0);
        CHECK(msg_equal(&m, &d));
        size_t len2 = 0;
        uint8_t *b2 = flat(&d, &len2);
        CHECK(b2 != NULL);
        CHECK_EQ(len2, len);
        CHECK(memcmp(b, b2, len) == 0);
        raftmsg_free(&d);
        free(b);
        free(b2);
    }
}

/* Decoded entries share one raft_malloc'ed batch, as libraft expects to
 * free them (src/entry.c entryBatchesDestroy). */
TEST(decoded_entries_share_one_batch)
{
    struct raft_message m, d;
    make_msg(0, &m);
    size_t len = 0;
    uint8_t *b = flat(&m, &len);
    CHECK_EQ(raftmsg_decode(b, len, &d), 0);
    CHECK_EQ(d.append_entries.n_entries, 3);
    void *batch = d.append_entries.entries[0].batch;
    CHECK(batch != NULL);
    for (unsigned i = 0; i < 3; i++) {
        CHECK(d.append_entries.entries[i].batch == batch);
        CHECK((uint8_t *)d.append_entries.entries[i].buf.base >= (uint8_t *)batch);
    }
    /* Free exactly as libraft does; the leak checker verifies nothing is left. */
    raft_free(batch);
    raft_free(d.append_entries.entries);
    free(b);
}

struct taker {
    const uint8_t *p;
    size_t len;
    int calls, rc;
};
static int take(void *arg, const uint8_t *p, size_t len, struct raft_buffer *out)
{
    struct taker *t = arg;
    t->p = p;
    t->len = len;
    t->calls++;
    if (t->rc) return t->rc;
    out->base = raft_malloc(len); /* rio hands over a mapping; any raft buffer will do */
    memcpy(out->base, p, len);
    out->len = len;
    return 0;
}

/* decode_take gives an InstallSnapshot's data to the taker in place (its
 * bytes inside the input, never copied first); its error fails the
 * decode with nothing to free; empty data and other types never call it. */
TEST(decode_take_borrows_snapshot_data)
{
    struct raft_message m, d;
    make_msg(7, &m);
    size_t len = 0;
    uint8_t *b = flat(&m, &len);
    struct taker t = {0};
    CHECK_EQ(raftmsg_decode_take(b, len, &d, take, &t), 0);
    CHECK_EQ(t.calls, 1);
    CHECK(t.p == b + len - m.install_snapshot.data.len);
    CHECK_EQ(t.len, m.install_snapshot.data.len);
    CHECK_EQ(memcmp(d.install_snapshot.data.base, m.install_snapshot.data.base, t.len), 0);
    raftmsg_free(&d);
    t = (struct taker){.rc = -ENOMEM};
    CHECK_EQ(raftmsg_decode_take(b, len, &d, take, &t), -ENOMEM);
    CHECK_EQ(t.calls, 1);
    free(b);
    for (int k = 0; k <= 9; k++) {
        if (k == 7) continue;
        make_msg(k, &m);
        b = flat(&m, &len);
        t = (struct taker){0};
        CHECK_EQ(raftmsg_decode_take(b, len, &d, take, &t), 0);
        CHECK_EQ(t.calls, 0);
        raftmsg_free(&d);
        free(b);
    }
}

/* A heartbeat (no entries) decodes with a NULL entries array. */
TEST(heartbeat_has_no_entries)
{
    struct raft_message m, d;
    make_msg(1, &m);
    size_t len = 0;
    uint8_t *b = flat(&m, &len);
    CHECK_EQ(len, 4 + 36);
    CHECK_EQ(raftmsg_decode(b, len, &d), 0);
    CHECK(d.append_entries.entries == NULL);
    CHECK_EQ(d.append_entries.n_entries, 0);
    free(b);
}

/* Decoding leaves server_id and server_address alone: they are the
 * receiver's to set from the frame it came in. */
TEST(decode_keeps_server_fields)
{
    struct raft_message m, d;
    make_msg(9, &m);
    size_t len = 0;
    uint8_t *b = flat(&m, &len);
    d.server_id = 42;
    d.server_address = "x";
    CHECK_EQ(raftmsg_decode(b, len, &d), 0);
    CHECK_EQ(d.server_id, 42);
    CHECK(strcmp(d.server_address, "x") == 0);
    free(b);
}

/* ---- Truncation and trailing bytes --------------------------------------- */

/* Every proper prefix of every vector is rejected, and nothing leaks. */
TEST(truncated_at_every_length)
{
    for (int i = 0; i < N_VECS; i++) {
        struct raft_message m, d;
        make_msg(i, &m);
        size_t len = 0;
        uint8_t *b = flat(&m, &len);
        for (size_t n = 0; n < len; n++) {
            uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan catches over-reads */
            memcpy(copy, b, n);
            int rc = raftmsg_decode(copy, n, &d);
            free(copy);
            if (rc != -EPROTO) printf("# vector %d prefix %zu gave %d\n", i, n, rc);
            CHECK_EQ(rc, -EPROTO);
        }
        free(b);
    }
}

/* One extra byte after any message is an error, not padding. */
TEST(trailing_byte_rejected)
{
    for (int i = 0; i < N_VECS; i++) {
        struct raft_message m, d;
        make_msg(i, &m);
        size_t len = 0;
        uint8_t *b = flat(&m, &len);
        b = realloc(b, len + 1);
        b[len] = 0;
        CHECK_EQ(raftmsg_decode(b, len + 1, &d), -EPROTO);
        free(b);
    }
}

/* ---- Bounds and canonical form -------------------------------------------- */

/* Flip one byte of vector VI at offset OFF to V and expect -EPROTO. */
static int decode_patched(int vi, size_t off, uint8_t v)
{
    struct raft_message m, d;
    make_msg(vi, &m);
    size_t len = 0;
    uint8_t *b = flat(&m, &len);
    b[off] = v;
    int rc = raftmsg_decode(b, len, &d);
    if (rc == 0) raftmsg_free(&d);
    free(b);
    return rc;
}

/* An entry count the bytes cannot hold is refused before any allocation
 * (ASan would flag a 64 K-entry array allocated from a 100-byte input only
 * as a leak if we forgot to free; the check is that it never gets there). */
TEST(entry_count_bounded_by_bytes)
{
    uint8_t b[64] = {0};
    bytes_put_le16(b, RAFT_IO_APPEND_ENTRIES);
    bytes_put_le16(b + 2, RAFTMSG_VERSION);
    bytes_put_le32(b + 36, 60000); /* n_entries, with 24 bytes left */
    struct raft_message d;
    CHECK_EQ(raftmsg_decode(b, 40 + 24, &d), -EPROTO);
    bytes_put_le32(b + 36, RAFTMSG_MAX_ENTRIES + 1);
    CHECK_EQ(raftmsg_decode(b, 40 + 24, &d), -EPROTO);
    bytes_put_le32(b + 36, UINT32_MAX);
    CHECK_EQ(raftmsg_decode(b, 40 + 24, &d), -EPROTO);
}

/* Entry lengths must add up to exactly the data that follows. */
TEST(entry_lengths_must_match_data)
{
    /* Vector 0: head is 4 + 36 + 3*16; entry 0's len is at 40 + 12. */
    CHECK_EQ(decode_patched(0, 40 + 12, sizeof(data_a)), -EPROTO);     /* one more */
    CHECK_EQ(decode_patched(0, 40 + 12, sizeof(data_a) - 2), -EPROTO); /* one less */
    CHECK_EQ(decode_patched(0, 40 + 12 + 3, 0xff), -EPROTO);           /* 4 GiB */
}

/* Entry term 0, unknown entry types and non-zero reserved bits are refused. */
TEST(entry_fields_validated)
{
    for (int k = 0; k < 8; k++) CHECK_EQ(decode_patched(0, 40 + (size_t)k, 0) == -EPROTO, k == 0);
    CHECK_EQ(decode_patched(0, 40 + 8, 0), -EPROTO);  /* type 0 */
    CHECK_EQ(decode_patched(0, 40 + 8, 4), -EPROTO);  /* type 4 */
    CHECK_EQ(decode_patched(0, 40 + 10, 1), -EPROTO); /* reserved */
}

/* Booleans are 0 or 1, the tribool 0..2, vote flags only bits 0-1. */
TEST(booleans_canonical)
{
    CHECK_EQ(decode_patched(3, 36, 4), -EPROTO);
    CHECK_EQ(decode_patched(3, 36, 3), 0);
    CHECK_EQ(decode_patched(5, 12, 2), -EPROTO);
    CHECK_EQ(decode_patched(5, 13, 3), -EPROTO);
    CHECK_EQ(decode_patched(5, 13, 2), 0);
}

/* Unknown type and other versions are refused. */
TEST(type_and_version)
{
    CHECK_EQ(decode_patched(2, 0, 0), -EPROTO);
    CHECK_EQ(decode_patched(2, 0, 7), -EPROTO);
    CHECK_EQ(decode_patched(2, 2, RAFTMSG_VERSION + 1), -EPROTO);
}

/* Install snapshot: configuration count, server id 0, role, empty or NUL
 * address, duplicates, and a data length that is not the rest. */
TEST(install_snapshot_bounds)
{
    /* Vector 7: conf starts at 36: n u32, then server 0 = id u64 @40,
     * role @48, alen @49, addr @51 ("127.0.0.1:7001", 14 bytes). */
    CHECK_EQ(decode_patched(7, 36, 200), -EPROTO);  /* n too large for the bytes */
    CHECK_EQ(decode_patched(7, 39, 0x10), -EPROTO); /* n huge */
    for (int k = 0; k < 8; k++) CHECK_EQ(decode_patched(7, 40 + (size_t)k, 0) == -EPROTO, k == 0);
    CHECK_EQ(decode_patched(7, 48, 3), -EPROTO);   /* role */
    CHECK_EQ(decode_patched(7, 49, 0), -EPROTO);   /* addr_len: misaligns the rest */
    CHECK_EQ(decode_patched(7, 53, 0), -EPROTO);   /* NUL inside the address */
    CHECK_EQ(decode_patched(7, 40, 2), -EPROTO);   /* duplicate id 2 */
    CHECK_EQ(decode_patched(7, 64, '2'), -EPROTO); /* duplicate address "127.0.0.1:7002" */
    /* data_len: the 8 bytes before the data. */
    size_t off = 36 + raftmsg_conf_size(&conf3);
    CHECK_EQ(decode_patched(7, off, 1), -EPROTO);
    CHECK_EQ(decode_patched(7, off + 7, 0x80), -EPROTO);
}

/* The encoder refuses what the decoder would refuse, so they stay symmetric. */
TEST(encoder_refuses_invalid)
{
    struct raft_message m;
    struct raftmsg_enc enc;
    make_msg(0, &m);
    struct raft_entry bad[1] = {{.term = 0, .type = RAFT_COMMAND, .buf = {data_a, 1}}};
    m.append_entries.entries = bad;
    m.append_entries.n_entries = 1;
    CHECK_EQ(raftmsg_encode(&m, &enc), -EINVAL);
    bad[0].term = 1;
    bad[0].type = 9;
    CHECK_EQ(raftmsg_encode(&m, &enc), -EINVAL);
    m.type = 99;
    CHECK_EQ(raftmsg_encode(&m, &enc), -EINVAL);
    make_msg(6, &m);
    m.request_vote_result.pre_vote = (raft_tribool)7;
    CHECK_EQ(raftmsg_encode(&m, &enc), -EINVAL);
    struct raft_configuration c;
    raft_configuration_init(&c);
    char longaddr[300];
    memset(longaddr, 'a', sizeof(longaddr) - 1);
    longaddr[sizeof(longaddr) - 1] = 0;
    raft_configuration_add(&c, 1, longaddr, RAFT_VOTER);
    make_msg(7, &m);
    m.install_snapshot.conf = c;
    CHECK_EQ(raftmsg_encode(&m, &enc), -EINVAL);
    raft_configuration_close(&c);
}

/* The configuration codec round-trips on its own. */
TEST(conf_round_trip)
{
    fixture();
    size_t n = raftmsg_conf_size(&conf3);
    CHECK(n > 4);
    uint8_t *b = malloc(n);
    raftmsg_conf_encode(&conf3, b);
    struct raft_configuration c;
    CHECK_EQ(raftmsg_conf_decode(b, n, &c), 0);
    CHECK(conf_equal(&c, &conf3));
    raft_configuration_close(&c);
    CHECK_EQ(raftmsg_conf_decode(b, n - 1, &c), -EPROTO);
    free(b);
}

/* ---- Corpus --------------------------------------------------------------- */

/* Write every vector as a fuzz seed. */
TAP_CORPUS(write_corpus)
{
    for (int i = 0; i < N_VECS; i++) {
        struct raft_message m;
        make_msg(i, &m);
        size_t len = 0;
        uint8_t *b = flat(&m, &len);
        char path[512];
        snprintf(path, sizeof(path), "%s/%02d_%s", dir, i, raftmsg_type_name(m.type));
        CHECK_EQ(util_write_file_atomic(path, b, len, 0644), 0);
        free(b);
    }
}
