/* test_idxcmd.c: the index command codec.  One vector per command (they
 * decode, re-encode to the same bytes, fail when truncated at any length
 * or extended by a byte), then every validation rule from both sides: the
 * encoder refuses what the decoder would reject, and hand-patched bytes
 * that break a rule do not decode (CONTRACT.md §4.3: zero-length,
 * overlapping and overflowing extents are rejected before proposing).  The
 * vectors are also fuzz seeds: `test_idxcmd --write-corpus DIR`
 * (tests/fuzz/gen-corpus). */
#include "golden.h"
#include "tap.h"
#include "base/bd.h"
#include "store/index/idxcmd.h"
#include "base/bytes.h"

#include <stdlib.h>
#include <string.h>

/* ---- Vectors ---------------------------------------------------------------- */

struct vec {
    char name[48];
    uint8_t buf[1024];
    int len;
};
static struct vec vecs[64];
static int n_vecs;

static struct idxcmd_write W(uint64_t vol, uint64_t off, uint32_t len, uint8_t kind)
{
    struct idxcmd_write w = {.vol_id = vol, .generation = 3, .off = off, .len = len, .kind = kind};
    if (kind == IDXCMD_W_DATA) {
        w.blob_id = 77;
        w.partition = 5;
        w.blob_len = len * 2;
        w.blob_off = len;
        w.blob_csum = 0x1234567890abcdefull;
    }
    return w;
}

static void add(const char *name, const struct idxcmd *c)
{
    struct vec *v = &vecs[n_vecs++];
    snprintf(v->name, sizeof(v->name), "%s", name);
    v->len = idxcmd_encode(v->buf, sizeof(v->buf), c);
    if (v->len < 0) printf("# vector %s does not encode: %d\n", name, v->len);
}

static void build_vectors(void)
{
    if (n_vecs) return;
    struct idxcmd c;
#define NEW(T) (memset(&c, 0, sizeof(c)), c.type = IDXCMD_##T)
    NEW(CREATE_VOLUME);
    c.u.create_volume.name = idxcmd_cstr("vol-1.a_b");
    c.u.create_volume.size = 64ull << 40;
    c.u.create_volume.block_size = 4096;
    c.u.create_volume.profile = idxcmd_cstr("ssd");
    qos_field_set(&c.u.create_volume.qos, QOS_SET_LIMIT(QOS_IOPS), 1000);
    qos_field_set(&c.u.create_volume.qos, QOS_SET_LIMIT(QOS_BPS), 1 << 20);
    qos_field_set(&c.u.create_volume.qos, QOS_SET_BURST(QOS_IOPS), 3000);
    add("create_volume", &c);
    NEW(DELETE_VOLUME);
    c.u.delete_volume.name = idxcmd_cstr("v");
    add("delete_volume", &c);
    NEW(RESIZE_VOLUME);
    c.u.resize_volume.name = idxcmd_cstr("v");
    c.u.resize_volume.size = 1 << 30;
    add("resize_volume", &c);
    NEW(SET_QOS);
    c.u.set_qos.name = idxcmd_cstr("v");
    c.u.set_qos.flags = IDXCMD_QOS_PROFILE;
    c.u.set_qos.profile = idxcmd_cstr("hdd");
    c.u.set_qos.clear = QOS_SET_LIMIT(QOS_BPS);
    qos_field_set(&c.u.set_qos.qos, QOS_SET_LIMIT(QOS_WRITE_IOPS), 500);
    qos_field_set(&c.u.set_qos.qos, QOS_SET_IO_SIZE, 1 << 20);
    add("set_qos", &c);
    NEW(ATTACH);
    c.u.attach.name = idxcmd_cstr("v");
    c.u.attach.agent = idxcmd_cstr("hv1");
    c.u.attach.flags = IDXCMD_ATTACH_FORCE;
    c.u.attach.base_generation = 7;
    add("attach", &c);
    NEW(DETACH);
    c.u.detach.vol_id = 9;
    c.u.detach.generation = 4;
    c.u.detach.agent = idxcmd_cstr("hv1");
    add("detach", &c);
    struct idxcmd_write ws[4] = {W(1, 0, 4096, IDXCMD_W_DATA), W(1, 4096, 8192, IDXCMD_W_ZERO),
                              W(1, 1 << 20, 4096, IDXCMD_W_TRIM), W(2, 0, 1 << 20, IDXCMD_W_DATA)};
    NEW(WRITE_BATCH);
    c.u.write_batch.n = 4;
    c.u.write_batch.in = ws;
    add("write_batch", &c);
    NEW(REGISTER_NODE);
    c.u.register_node.node_id = 3;
    c.u.register_node.addr = idxcmd_cstr("[::1]:7001");
    c.u.register_node.capacity = 1ull << 40;
    c.u.register_node.used = 12345;
    add("register_node", &c);
    NEW(SET_NODE_STATE);
    c.u.set_node_state.node_id = 3;
    c.u.set_node_state.state = 2;
    add("set_node_state", &c);
    NEW(CREATE_PARTITION);
    c.u.create_partition.part_id = 7;
    c.u.create_partition.nodes[0] = 1;
    c.u.create_partition.nodes[1] = 2;
    c.u.create_partition.nodes[2] = 3;
    add("create_partition", &c);
    NEW(REPLACE_REPLICA);
    c.u.replace_replica.part_id = 7;
    c.u.replace_replica.old_node = 2;
    c.u.replace_replica.new_node = 4;
    add("replace_replica", &c);
    NEW(ALLOC_BLOB_IDS);
    c.u.alloc_blob_ids.count = 4096;
    add("alloc_blob_ids", &c);
    uint64_t ids[3] = {5, 6, 1000};
    NEW(GC_DONE);
    c.u.gc_done.n = 3;
    c.u.gc_done.in = ids;
    add("gc_done", &c);
    NEW(SNAPSHOT_CREATE);
    c.u.snapshot_create.vol = idxcmd_cstr("v");
    c.u.snapshot_create.snap = idxcmd_cstr("daily.1");
    add("snapshot_create", &c);
    NEW(SNAPSHOT_DELETE);
    c.u.snapshot_delete.vol = idxcmd_cstr("v");
    c.u.snapshot_delete.snap = idxcmd_cstr("daily.1");
    add("snapshot_delete", &c);
    NEW(CLONE);
    c.u.clone.vol = idxcmd_cstr("v");
    c.u.clone.snap = idxcmd_cstr("daily.1");
    c.u.clone.new_name = idxcmd_cstr("v2");
    add("clone", &c);
    struct idxcmd_repoint rp[2] = {{9, 0, 8192, 77, 4096, 0}, {9, 1 << 20, 4096, 78, 0, 8192}};
    NEW(REPOINT);
    c.u.repoint.blob_id = 500;
    c.u.repoint.partition = 5;
    c.u.repoint.blob_len = 12288;
    c.u.repoint.blob_csum = 0x1122334455667788ull;
    c.u.repoint.cursor_layer = 9;
    c.u.repoint.cursor_off = (1 << 20) + 4096;
    c.u.repoint.n = 2;
    c.u.repoint.in = rp;
    add("repoint", &c);
    NEW(ROLLBACK);
    c.u.rollback.vol = idxcmd_cstr("v");
    c.u.rollback.snap = idxcmd_cstr("daily.1");
    add("rollback", &c);
    struct idxcmd_group_vol gv[2] = {{idxcmd_cstr("db"), 0, 3}, {idxcmd_cstr("log"), 7, 7}};
    NEW(SNAPSHOT_GROUP);
    c.u.snapshot_group.snap = idxcmd_cstr("cg1");
    c.u.snapshot_group.n = 2;
    c.u.snapshot_group.in = gv;
    add("snapshot_group", &c);
    NEW(FLATTEN_START);
    c.u.flatten_start.vol = idxcmd_cstr("c1");
    add("flatten_start", &c);
    struct idxcmd_fill fl[2] = {{0, 8192, 0}, {65536, 4096, 8192}};
    NEW(FLATTEN_FILL);
    c.u.flatten_fill = (typeof(c.u.flatten_fill)){.vol_id = 4, .layer = 9, .cursor = 1 << 20,
                                                  .blob_id = 600, .partition = 5,
                                                  .blob_len = 12288,
                                                  .blob_csum = 0x0102030405060708ull, .n = 2,
                                                  .in = fl};
    add("flatten_fill", &c);
    NEW(FLATTEN_DONE);
    c.u.flatten_done.vol_id = 4;
    c.u.flatten_done.layer = 9;
    add("flatten_done", &c);
    NEW(IMPORT_BEGIN);
    c.u.import_begin.vol = idxcmd_cstr("v");
    c.u.import_begin.agent = idxcmd_cstr("blockd-import");
    c.u.import_begin.from = idxcmd_cstr("d1");
    c.u.import_begin.size = 1 << 30;
    add("import_begin", &c);
    NEW(IMPORT_END);
    c.u.import_end.vol = idxcmd_cstr("v");
    c.u.import_end.agent = idxcmd_cstr("blockd-import");
    c.u.import_end.generation = 3;
    c.u.import_end.flags = IDXCMD_IMPORT_COMMIT;
    c.u.import_end.snap = idxcmd_cstr("d2");
    c.u.import_end.origin = 0xfedcba9876543210ull;
    add("import_end", &c);
    NEW(ASSIGN);
    c.u.assign.name = idxcmd_cstr("v");
    c.u.assign.agent = idxcmd_cstr("hv1");
    c.u.assign.client = idxcmd_cstr("vm-7");
    c.u.assign.flags = IDXCMD_ASSIGN_RO;
    add("assign", &c);
    NEW(ASSIGN);
    c.u.assign.name = idxcmd_cstr("v");
    c.u.assign.agent = idxcmd_cstr("");
    c.u.assign.client = idxcmd_cstr("");
    c.u.assign.flags = IDXCMD_ASSIGN_FORCE;
    add("assign_detach", &c);
    NEW(QOS_PROFILE_PUT);
    c.u.qos_profile_put.name = idxcmd_cstr("ssd");
    c.u.qos_profile_put.flags = IDXCMD_PROFILE_CREATE | IDXCMD_PROFILE_DEFAULT;
    qos_field_set(&c.u.qos_profile_put.qos, QOS_SET_LIMIT(QOS_READ_BPS), 100 << 20);
    qos_field_set(&c.u.qos_profile_put.qos, QOS_SET_BURST_SECONDS, 30);
    add("qos_profile_put", &c);
    NEW(QOS_PROFILE_DELETE);
    c.u.qos_profile_delete.name = idxcmd_cstr("ssd");
    add("qos_profile_delete", &c);
    NEW(REAP);
    c.u.reap.budget = 4096;
    add("reap", &c);
    NEW(INDEX_LIMIT);
    c.u.index_limit.max_pages = 0x10000;
    add("index_limit", &c);
    NEW(NODE_DOMAIN);
    c.u.node_domain.node_id = 12;
    c.u.node_domain.zone = idxcmd_cstr("eu-1a");
    c.u.node_domain.rack = idxcmd_cstr("");
    c.u.node_domain.host = idxcmd_cstr("h7");
    add("node_domain", &c);
    NEW(MOVE_REPLICA);
    c.u.move_replica.part_id = 7;
    c.u.move_replica.old_node = 2;
    c.u.move_replica.new_node = 4;
    c.u.move_replica.reason = IDXCMD_MOVE_DRAIN;
    add("move_replica", &c);
    NEW(MOVE_MARK);
    c.u.move_mark.part_id = 7;
    c.u.move_mark.node = 4;
    c.u.move_mark.cursor = 1000;
    c.u.move_mark.bytes_done = 1 << 20;
    c.u.move_mark.done = 1;
    add("move_mark", &c);
#undef NEW
}

/* ---- Round trips ---------------------------------------------------------------- */

/* Every vector encodes, decodes and re-encodes to the same bytes. */
TEST(vectors_roundtrip)
{
    build_vectors();
    CHECK_EQ(n_vecs, 33);
    for (int i = 0; i < n_vecs; i++) {
        CHECK(vecs[i].len > 0);
        CHECK_EQ(idxcmd_roundtrip(vecs[i].buf, (size_t)vecs[i].len), 0);
    }
}

/* Decoded fields equal the encoded ones (WRITE_BATCH, the big one). */
TEST(write_batch_fields)
{
    build_vectors();
    struct idxcmd c;
    CHECK(idxcmd_decode(vecs[6].buf, (size_t)vecs[6].len, &c) == 0);
    CHECK_EQ(c.type, IDXCMD_WRITE_BATCH);
    CHECK_EQ(c.u.write_batch.n, 4);
    struct idxcmd_write w;
    idxcmd_write_get(&c, 3, &w);
    CHECK(w.vol_id == 2 && w.off == 0 && w.len == (1 << 20) && w.kind == IDXCMD_W_DATA);
    CHECK(w.blob_id == 77 && w.partition == 5 && w.blob_off == (1 << 20));
    CHECK(w.blob_len == (2 << 20) && w.blob_csum == 0x1234567890abcdefull);
    CHECK_EQ(vecs[6].len, IDXCMD_HDR_LEN + 4 + 4 * IDXCMD_WRITE_LEN);
    CHECK(idxcmd_decode(vecs[12].buf, (size_t)vecs[12].len, &c) == 0);
    CHECK_EQ(idxcmd_gc_id(&c, 2), 1000);
}

/* Truncated at every length, or with one byte more: never decodes. */
TEST(truncated_and_trailing)
{
    build_vectors();
    for (int i = 0; i < n_vecs; i++) {
        struct idxcmd c;
        for (int len = 0; len < vecs[i].len; len++) {
            uint8_t *copy = malloc((size_t)len + 1);
            memcpy(copy, vecs[i].buf, (size_t)len);
            CHECK_EQ(idxcmd_decode(copy, (size_t)len, &c), -EPROTO);
            free(copy);
        }
        uint8_t more[1100];
        memcpy(more, vecs[i].buf, (size_t)vecs[i].len);
        more[vecs[i].len] = 0;
        CHECK_EQ(idxcmd_decode(more, (size_t)vecs[i].len + 1, &c), -EPROTO);
    }
}

/* Header: wrong version, reserved byte, unknown type. */
TEST(bad_header)
{
    build_vectors();
    uint8_t b[64];
    struct idxcmd c;
    memcpy(b, vecs[1].buf, (size_t)vecs[1].len);
    b[0] = IDXCMD_VERSION - 1; /* version 1 had other layouts: never decoded as ours */
    CHECK_EQ(idxcmd_decode(b, (size_t)vecs[1].len, &c), -EPROTO);
    b[0] = IDXCMD_VERSION + 1;
    CHECK_EQ(idxcmd_decode(b, (size_t)vecs[1].len, &c), -EPROTO);
    b[0] = IDXCMD_VERSION;
    b[1] = 1;
    CHECK_EQ(idxcmd_decode(b, (size_t)vecs[1].len, &c), -EPROTO);
    b[1] = 0;
    bytes_put_le16(b + 2, 999);
    CHECK_EQ(idxcmd_decode(b, (size_t)vecs[1].len, &c), -EPROTO);
    c.type = 999;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    CHECK(!strcmp(idxcmd_type_name(IDXCMD_CLONE), "CLONE"));
}

/* ---- Validation ------------------------------------------------------------------ */

/* Names: strict charset, no leading '.' or '-', 1-255 bytes. */
TEST(name_rules)
{
    CHECK(idxcmd_name_valid("a", 1));
    CHECK(idxcmd_name_valid("Vol_1.2-x", 9));
    CHECK(!idxcmd_name_valid("", 0));
    CHECK(!idxcmd_name_valid(".x", 2));
    CHECK(!idxcmd_name_valid("-x", 2));
    CHECK(!idxcmd_name_valid("a/b", 3));
    CHECK(!idxcmd_name_valid("a b", 3));
    CHECK(!idxcmd_name_valid("a\0b", 3));
    CHECK(!idxcmd_name_valid("..", 2));
    CHECK(!idxcmd_name_valid("\xc3\xa9", 2));
    char big[256];
    memset(big, 'a', sizeof(big));
    CHECK(idxcmd_name_valid(big, 255));
    CHECK(!idxcmd_name_valid(big, 256));
    uint8_t b[512];
    struct idxcmd c = {.type = IDXCMD_DELETE_VOLUME};
    c.u.delete_volume.name = (struct idxcmd_str){"a/b", 3};
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
}

static int enc_write(struct idxcmd_write *w, uint32_t n)
{
    static uint8_t b[IDXCMD_MAX_LEN + 1024];
    struct idxcmd c = {.type = IDXCMD_WRITE_BATCH};
    c.u.write_batch.n = n;
    c.u.write_batch.in = w;
    return idxcmd_encode(b, sizeof(b), &c);
}

/* Writes: zero / unaligned / overflowing / overlapping / unsorted / bad
 * blob fields are refused. */
TEST(write_rules)
{
    struct idxcmd_write w[2];
    w[0] = W(1, 0, 4096, IDXCMD_W_DATA);
    CHECK(enc_write(w, 1) > 0);
    w[0].len = 0;
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(1, 512, 4096, IDXCMD_W_ZERO);
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(1, 0, 4000, IDXCMD_W_ZERO);
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(1, UINT64_MAX - 4095, 8192, IDXCMD_W_ZERO);
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(1, IDXCMD_MAX_VOL_SIZE - 4096, 8192, IDXCMD_W_ZERO);
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(0, 0, 4096, IDXCMD_W_ZERO);
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(1, 0, 4096, 4);
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(1, 0, 4096, IDXCMD_W_TRIM);
    w[0].blob_id = 5;
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(1, 0, 8192, IDXCMD_W_DATA);
    w[0].blob_len = 8192 + 4096; /* blob_off 8192 + len 8192 > blob_len */
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(1, 0, 8192, IDXCMD_W_DATA);
    w[0].blob_id = 0;
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    /* Overlap within a volume; unsorted; the same range in two volumes is fine. */
    w[0] = W(1, 0, 8192, IDXCMD_W_ZERO);
    w[1] = W(1, 4096, 4096, IDXCMD_W_ZERO);
    CHECK_EQ(enc_write(w, 2), -EINVAL);
    w[1] = W(1, 8192, 4096, IDXCMD_W_ZERO);
    CHECK(enc_write(w, 2) > 0);
    struct idxcmd_write sw = w[0];
    w[0] = w[1];
    w[1] = sw;
    CHECK_EQ(enc_write(w, 2), -EINVAL);
    w[0] = W(1, 0, 8192, IDXCMD_W_ZERO);
    w[1] = W(2, 0, 8192, IDXCMD_W_ZERO);
    CHECK(enc_write(w, 2) > 0);
    CHECK_EQ(enc_write(w, 0), -EINVAL);
}

/* The largest batch fits a PROPOSE; one more write does not encode. */
TEST(write_batch_bounds)
{
    static struct idxcmd_write w[IDXCMD_MAX_WRITES + 1];
    for (uint32_t i = 0; i <= IDXCMD_MAX_WRITES; i++) w[i] = W(1, (uint64_t)i * 4096, 4096, IDXCMD_W_ZERO);
    int n = enc_write(w, IDXCMD_MAX_WRITES);
    CHECK_EQ(n, IDXCMD_HDR_LEN + 4 + IDXCMD_MAX_WRITES * IDXCMD_WRITE_LEN);
    CHECK(n <= (int)IDXCMD_MAX_LEN);
    CHECK(enc_write(w, IDXCMD_MAX_WRITES + 1) < 0);
    uint8_t small[16];
    struct idxcmd c = {.type = IDXCMD_WRITE_BATCH};
    c.u.write_batch.n = 1;
    c.u.write_batch.in = w;
    CHECK_EQ(idxcmd_encode(small, sizeof(small), &c), -EMSGSIZE);
}

/* Hand-patched bytes that break a write rule do not decode (the fuzzer's
 * view: the decoder is the gate, not the encoder). */
TEST(write_rules_in_decoder)
{
    build_vectors();
    uint8_t b[1024];
    struct idxcmd c;
    int len = vecs[6].len;
    const int w0 = IDXCMD_HDR_LEN + 4;
    memcpy(b, vecs[6].buf, (size_t)len);
    bytes_put_le64(b + w0 + 16, UINT64_MAX - 4095); /* write 0: off overflows */
    CHECK_EQ(idxcmd_decode(b, (size_t)len, &c), -EPROTO);
    memcpy(b, vecs[6].buf, (size_t)len);
    bytes_put_le32(b + w0 + 24, 0); /* write 0: zero length */
    CHECK_EQ(idxcmd_decode(b, (size_t)len, &c), -EPROTO);
    memcpy(b, vecs[6].buf, (size_t)len);
    bytes_put_le64(b + w0 + IDXCMD_WRITE_LEN + 16, 0); /* write 1 overlaps write 0 */
    CHECK_EQ(idxcmd_decode(b, (size_t)len, &c), -EPROTO);
    memcpy(b, vecs[6].buf, (size_t)len);
    bytes_put_le32(b + IDXCMD_HDR_LEN, 5000); /* count beyond the bytes */
    CHECK_EQ(idxcmd_decode(b, (size_t)len, &c), -EPROTO);
}

static int enc_repoint(struct idxcmd_repoint *r, uint32_t n, uint32_t blob_len)
{
    static uint8_t b[IDXCMD_MAX_LEN + 1024];
    struct idxcmd c = {.type = IDXCMD_REPOINT};
    c.u.repoint.blob_id = 500;
    c.u.repoint.partition = 1;
    c.u.repoint.blob_len = blob_len;
    c.u.repoint.n = n;
    c.u.repoint.in = r;
    return idxcmd_encode(b, sizeof(b), &c);
}

/* Re-points: aligned, non-empty, inside the new blob and ascending in it,
 * sorted by (layer, offset) without overlap, never to the blob itself;
 * at most IDXCMD_MAX_REPOINT, at least one. */
TEST(repoint_rules)
{
    struct idxcmd_repoint r[2] = {{1, 0, 4096, 7, 0, 0}, {1, 8192, 4096, 7, 8192, 4096}};
    CHECK(enc_repoint(r, 2, 8192) > 0);
    CHECK_EQ(enc_repoint(r, 2, 4096), -EINVAL);   /* the second lies past the blob */
    CHECK_EQ(enc_repoint(r, 0, 8192), -EINVAL);
    r[1].new_off = 0;                             /* overlaps the first in the new blob */
    CHECK_EQ(enc_repoint(r, 2, 8192), -EINVAL);
    r[1].new_off = 4096;
    r[1].off = 0;                                 /* overlaps the first in the layer */
    CHECK_EQ(enc_repoint(r, 2, 8192), -EINVAL);
    r[1].off = 8192;
    r[1].layer = 0;                               /* unsorted, and layer 0 */
    CHECK_EQ(enc_repoint(r, 2, 8192), -EINVAL);
    r[1].layer = 1;
    r[0].old_blob = 500;                          /* to itself */
    CHECK_EQ(enc_repoint(r, 2, 8192), -EINVAL);
    r[0].old_blob = 7;
    r[0].old_off = 100;                           /* unaligned */
    CHECK_EQ(enc_repoint(r, 2, 8192), -EINVAL);
    r[0].old_off = 0;
    r[0].len = 0;
    CHECK_EQ(enc_repoint(r, 2, 8192), -EINVAL);
    static struct idxcmd_repoint big[IDXCMD_MAX_REPOINT + 1];
    for (uint32_t i = 0; i <= IDXCMD_MAX_REPOINT; i++)
        big[i] = (struct idxcmd_repoint){1, (uint64_t)i * 4096, 4096, 7, 0, i * 4096};
    int n = enc_repoint(big, IDXCMD_MAX_REPOINT, IDXCMD_MAX_REPOINT * 4096);
    CHECK_EQ(n, IDXCMD_HDR_LEN + 44 + IDXCMD_MAX_REPOINT * IDXCMD_REPOINT_LEN);
    CHECK(n <= (int)IDXCMD_MAX_LEN);
    CHECK(enc_repoint(big, IDXCMD_MAX_REPOINT + 1, (IDXCMD_MAX_REPOINT + 1) * 4096) < 0);
}

/* SNAPSHOT_GROUP: 1 to IDXCMD_MAX_GROUP distinct volumes, flags 0, a
 * barrier only at the generation seen; its entries read back from the
 * bytes as they went in. */
TEST(group_rules)
{
    uint8_t b[IDXCMD_MAX_LEN];
    struct idxcmd_group_vol gv[IDXCMD_MAX_GROUP + 1];
    char names[IDXCMD_MAX_GROUP + 1][8];
    for (uint32_t i = 0; i <= IDXCMD_MAX_GROUP; i++) {
        snprintf(names[i], sizeof(names[i]), "v%u", i);
        gv[i] = (struct idxcmd_group_vol){idxcmd_cstr(names[i]), i, i};
    }
    struct idxcmd c = {.type = IDXCMD_SNAPSHOT_GROUP};
    c.u.snapshot_group.snap = idxcmd_cstr("s");
    c.u.snapshot_group.in = gv;
    c.u.snapshot_group.n = IDXCMD_MAX_GROUP;
    int n = idxcmd_encode(b, sizeof(b), &c);
    CHECK(n > 0);
    struct idxcmd d;
    CHECK_EQ(idxcmd_decode(b, (size_t)n, &d), 0);
    struct idxcmd_group_vol got;
    idxcmd_group_get(&d, IDXCMD_MAX_GROUP - 1, &got);
    CHECK(got.vol.len == 3 && !memcmp(got.vol.ptr, "v31", 3) && got.generation == 31 &&
          got.seen == 31);
    c.u.snapshot_group.n = IDXCMD_MAX_GROUP + 1;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.snapshot_group.n = 0;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.snapshot_group.n = 2;
    gv[1].vol = idxcmd_cstr("v0");          /* the same volume twice */
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    gv[1].vol = idxcmd_cstr("a/b");
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    gv[1].vol = idxcmd_cstr("v1");
    gv[1].seen = 2;                         /* a barrier at a generation not seen */
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    gv[1].generation = 0;                   /* seen attached, no barrier: fine */
    CHECK(idxcmd_encode(b, sizeof(b), &c) > 0);
    c.u.snapshot_group.flags = 1;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
}

/* FLATTEN_FILL: fills below the cursor, inside the blob, ascending; none
 * means no blob; IMPORT_*: names (FROM / SNAP may be empty), sizes,
 * generation, flags. */
TEST(flatten_import_rules)
{
    uint8_t b[IDXCMD_MAX_LEN];
    struct idxcmd_fill fl[2] = {{0, 4096, 0}, {8192, 4096, 4096}};
    struct idxcmd c = {.type = IDXCMD_FLATTEN_FILL};
    c.u.flatten_fill = (typeof(c.u.flatten_fill)){.vol_id = 1, .layer = 2, .cursor = 12288,
                                                  .blob_id = 9, .partition = 1,
                                                  .blob_len = 8192, .n = 2, .in = fl};
    CHECK(idxcmd_encode(b, sizeof(b), &c) > 0);
    c.u.flatten_fill.cursor = 8192;               /* a fill past the cursor */
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.flatten_fill.cursor = 12288;
    c.u.flatten_fill.blob_len = 4096;             /* a fill past the blob */
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.flatten_fill.blob_len = 8192;
    fl[1].off = 0;                                /* overlapping */
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    fl[1].off = 8192;
    c.u.flatten_fill.n = 0;                       /* no fill, but a blob */
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.flatten_fill.blob_id = 0;
    c.u.flatten_fill.partition = 0;
    c.u.flatten_fill.blob_len = 0;
    CHECK(idxcmd_encode(b, sizeof(b), &c) > 0);   /* a cursor move */
    struct idxcmd d = {.type = IDXCMD_FLATTEN_DONE};
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &d), -EINVAL);

    struct idxcmd ib = {.type = IDXCMD_IMPORT_BEGIN};
    ib.u.import_begin.vol = idxcmd_cstr("v");
    ib.u.import_begin.agent = idxcmd_cstr("blockd-import");
    ib.u.import_begin.size = 1 << 20;
    CHECK(idxcmd_encode(b, sizeof(b), &ib) > 0);  /* FROM empty: a full import */
    ib.u.import_begin.from = idxcmd_cstr(".x");
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &ib), -EINVAL);
    ib.u.import_begin.from = idxcmd_cstr("d1");
    ib.u.import_begin.size = 1000;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &ib), -EINVAL);
    struct idxcmd ie = {.type = IDXCMD_IMPORT_END};
    ie.u.import_end.vol = idxcmd_cstr("v");
    ie.u.import_end.agent = idxcmd_cstr("blockd-import");
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &ie), -EINVAL); /* generation 0 */
    ie.u.import_end.generation = 2;
    CHECK(idxcmd_encode(b, sizeof(b), &ie) > 0);
    ie.u.import_end.flags = 2;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &ie), -EINVAL);
    struct idxcmd rb = {.type = IDXCMD_ROLLBACK};
    rb.u.rollback.vol = idxcmd_cstr("v");
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &rb), -EINVAL); /* no snapshot */
}

/* Other commands' rules. */
TEST(other_rules)
{
    uint8_t b[1024];
    struct idxcmd c = {.type = IDXCMD_CREATE_VOLUME};
    c.u.create_volume.name = idxcmd_cstr("v");
    c.u.create_volume.block_size = 4096;
    c.u.create_volume.size = 0;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.create_volume.size = 4096 + 512;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.create_volume.size = IDXCMD_MAX_VOL_SIZE + 4096;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.create_volume.size = 64ull << 40;
    c.u.create_volume.block_size = 512;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.create_volume.block_size = 8192;
    c.u.create_volume.size = 12288;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);

    struct idxcmd p = {.type = IDXCMD_CREATE_PARTITION};
    p.u.create_partition.part_id = 1;
    p.u.create_partition.nodes[0] = 1;
    p.u.create_partition.nodes[1] = 2;
    p.u.create_partition.nodes[2] = 1;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &p), -EINVAL);

    uint64_t ids[3] = {5, 5, 6};
    struct idxcmd g = {.type = IDXCMD_GC_DONE};
    g.u.gc_done.n = 3;
    g.u.gc_done.in = ids;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &g), -EINVAL);
    ids[0] = 0;
    ids[1] = 4;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &g), -EINVAL);

    struct idxcmd a = {.type = IDXCMD_ALLOC_BLOB_IDS};
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &a), -EINVAL);
    a.u.alloc_blob_ids.count = IDXCMD_MAX_ALLOC + 1;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &a), -EINVAL);

    struct idxcmd at = {.type = IDXCMD_ATTACH};
    at.u.attach.name = idxcmd_cstr("v");
    at.u.attach.agent = idxcmd_cstr("a");
    at.u.attach.flags = IDXCMD_ATTACH_RO | IDXCMD_ATTACH_FORCE;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &at), -EINVAL);
    at.u.attach.flags = 0x80;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &at), -EINVAL);

    /* ASSIGN: detaching names no client and no mode; names are names. */
    struct idxcmd as = {.type = IDXCMD_ASSIGN};
    as.u.assign.name = idxcmd_cstr("v");
    as.u.assign.agent = idxcmd_cstr("");
    as.u.assign.client = idxcmd_cstr("vm");
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &as), -EINVAL);
    as.u.assign.client = idxcmd_cstr("");
    as.u.assign.flags = IDXCMD_ASSIGN_RO;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &as), -EINVAL);
    as.u.assign.agent = idxcmd_cstr("hv1");
    as.u.assign.flags = 0x4;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &as), -EINVAL);
    as.u.assign.flags = 0;
    as.u.assign.client = idxcmd_cstr("vm/1");
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &as), -EINVAL);
    as.u.assign.client = idxcmd_cstr("");
    as.u.assign.name = idxcmd_cstr("");
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &as), -EINVAL);
    as.u.assign.name = idxcmd_cstr("v");
    CHECK(idxcmd_encode(b, sizeof(b), &as) > 0);

    struct idxcmd r = {.type = IDXCMD_REGISTER_NODE};
    r.u.register_node.node_id = 1;
    r.u.register_node.addr = idxcmd_cstr("has space:1");
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &r), -EINVAL);

    struct idxcmd s = {.type = IDXCMD_SET_NODE_STATE};
    s.u.set_node_state.node_id = 1;
    s.u.set_node_state.state = 5;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &s), -EINVAL);
    s.u.set_node_state.state = 4; /* draining */
    CHECK(idxcmd_encode(b, sizeof(b), &s) > 0);
}

/* The shape commands' rules: a REAP budget of 1..IDXCMD_MAX_REAP; domain
 * labels of name characters, at most IDXCMD_LABEL_MAX; a move between two
 * distinct nodes for a known reason; a mark's done flag 0 or 1. */
TEST(shape_rules)
{
    uint8_t b[1024];
    struct idxcmd r = {.type = IDXCMD_REAP};
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &r), -EINVAL);
    r.u.reap.budget = IDXCMD_MAX_REAP + 1;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &r), -EINVAL);
    r.u.reap.budget = IDXCMD_MAX_REAP;
    CHECK(idxcmd_encode(b, sizeof(b), &r) > 0);

    char long_label[IDXCMD_LABEL_MAX + 2];
    memset(long_label, 'a', sizeof(long_label) - 1);
    long_label[sizeof(long_label) - 1] = 0;
    struct idxcmd d = {.type = IDXCMD_NODE_DOMAIN};
    d.u.node_domain.node_id = 1;
    d.u.node_domain.zone = idxcmd_cstr(long_label);
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &d), -EINVAL);
    d.u.node_domain.zone = idxcmd_cstr("zone a");
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &d), -EINVAL);
    d.u.node_domain.zone = idxcmd_cstr("a");
    d.u.node_domain.host = idxcmd_cstr("h/1");
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &d), -EINVAL);
    d.u.node_domain.host = idxcmd_cstr("h");
    CHECK(idxcmd_encode(b, sizeof(b), &d) > 0);
    d.u.node_domain.node_id = 0;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &d), -EINVAL);

    struct idxcmd m = {.type = IDXCMD_MOVE_REPLICA};
    m.u.move_replica.part_id = 1;
    m.u.move_replica.old_node = 2;
    m.u.move_replica.new_node = 2;
    m.u.move_replica.reason = IDXCMD_MOVE_LOST;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &m), -EINVAL);
    m.u.move_replica.new_node = 3;
    m.u.move_replica.reason = 4;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &m), -EINVAL);
    m.u.move_replica.reason = IDXCMD_MOVE_REBALANCE;
    CHECK(idxcmd_encode(b, sizeof(b), &m) > 0);

    struct idxcmd k = {.type = IDXCMD_MOVE_MARK};
    k.u.move_mark.part_id = 1;
    k.u.move_mark.node = 2;
    k.u.move_mark.done = 2;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &k), -EINVAL);
    k.u.move_mark.done = 0;
    CHECK(idxcmd_encode(b, sizeof(b), &k) > 0);
}

/* QoS: limits out of range, unknown or unset fields with values, a burst
 * at or below its limit, clearing what is also set, and flags that
 * contradict each other are never proposed (issue 13, bad input). */
TEST(qos_rules)
{
    uint8_t b[1024];
    struct idxcmd c = {.type = IDXCMD_SET_QOS};
    c.u.set_qos.name = idxcmd_cstr("v");
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL); /* changes nothing */
    qos_field_set(&c.u.set_qos.qos, QOS_SET_LIMIT(QOS_IOPS), QOS_MAX_IOPS + 1);
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.set_qos.qos.limit[QOS_IOPS] = 500;
    CHECK(idxcmd_encode(b, sizeof(b), &c) > 0);
    qos_field_set(&c.u.set_qos.qos, QOS_SET_LIMIT(QOS_BPS), 100); /* below one block a second */
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.set_qos.qos.limit[QOS_BPS] = QOS_MAX_BPS + 1;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.set_qos.qos.limit[QOS_BPS] = 1 << 20;
    qos_field_set(&c.u.set_qos.qos, QOS_SET_BURST(QOS_IOPS), 500); /* not above its limit */
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.set_qos.qos.burst[QOS_IOPS] = 2000;
    CHECK(idxcmd_encode(b, sizeof(b), &c) > 0);
    qos_field_set(&c.u.set_qos.qos, QOS_SET_IO_SIZE, 0);
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.set_qos.qos.io_size = 4096 + 512;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.set_qos.qos.io_size = 1 << 20;
    qos_field_set(&c.u.set_qos.qos, QOS_SET_BURST_SECONDS, 0);
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.set_qos.qos.burst_seconds = 10;
    CHECK(idxcmd_encode(b, sizeof(b), &c) > 0);
    c.u.set_qos.clear = QOS_SET_LIMIT(QOS_IOPS); /* cleared and set at once */
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.set_qos.clear = 1u << QOS_N_FIELDS; /* an unknown field */
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.set_qos.clear = 0;
    c.u.set_qos.qos.limit[QOS_READ_IOPS] = 7; /* a value in a field not set */
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.set_qos.qos.limit[QOS_READ_IOPS] = 0;
    c.u.set_qos.profile = idxcmd_cstr("gold"); /* a profile without the flag */
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
    c.u.set_qos.flags = IDXCMD_QOS_PROFILE;
    CHECK(idxcmd_encode(b, sizeof(b), &c) > 0);
    c.u.set_qos.profile = idxcmd_cstr(".bad");
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);

    struct idxcmd v = {.type = IDXCMD_CREATE_VOLUME};
    v.u.create_volume.name = idxcmd_cstr("v");
    v.u.create_volume.size = 1 << 20;
    v.u.create_volume.block_size = 4096;
    v.u.create_volume.flags = IDXCMD_CREATE_DEFAULT_QOS;
    CHECK(idxcmd_encode(b, sizeof(b), &v) > 0);
    v.u.create_volume.profile = idxcmd_cstr("gold"); /* the default and a profile */
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &v), -EINVAL);
    v.u.create_volume.flags = 0;
    CHECK(idxcmd_encode(b, sizeof(b), &v) > 0);

    struct idxcmd p = {.type = IDXCMD_QOS_PROFILE_PUT};
    p.u.qos_profile_put.name = idxcmd_cstr("gold");
    p.u.qos_profile_put.flags = IDXCMD_PROFILE_DEFAULT | IDXCMD_PROFILE_UNDEFAULT;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &p), -EINVAL);
    p.u.qos_profile_put.flags = IDXCMD_PROFILE_CREATE;
    p.u.qos_profile_put.clear = QOS_SET_LIMIT(QOS_IOPS); /* nothing to clear in a new one */
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &p), -EINVAL);
    p.u.qos_profile_put.clear = 0;
    CHECK(idxcmd_encode(b, sizeof(b), &p) > 0);
    p.u.qos_profile_put.flags = 0x80;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &p), -EINVAL);
}

/* ---- Golden bytes ---------------------------------------------------------------- */

/* Every vector as it was encoded when this test was written, in
 * build_vectors order: a layout change fails here until IDXCMD_VERSION and
 * the tables in idxcmd.h say so.  The other direction: the golden bytes
 * decode and re-encode to themselves (idxcmd_roundtrip), and since the
 * fixture command encodes to those same bytes, the decoded command is the
 * fixture's (encoding is one-to-one on every field); two are also checked
 * field by field. */
static const char *const golden[] = {
    /* CREATE_VOLUME vol-1.a_b, 64 TiB, 4096, flags 0, profile ssd, qos
     * {iops 1000, bps 1 MiB, iops_burst 3000} */
    "02000100 09766f6c2d312e615f62 0000000000400000 00100000 00 03737364 "
        "4900 e803000000000000 [0*16] 0000100000000000 [0*16] "
        "b80b000000000000 [0*40] 00000000 00000000",
    "020002000176",
    "0200030001760000004000000000",
    /* SET_QOS v: profile hdd, clear bps, qos {write_iops 500, io_size 1 MiB} */
    "02000400 0176 01 03686464 0800 "
        "0420 [0*16] f401000000000000 [0*24] [0*48] 00000000 00001000",
    "0200050001760368763102000000" "0700000000000000", /* base 7 */
    "020006000900000000000000040000000000000003687631",
    "0200070004000000010000000000000003000000000000000000000000000000"
        "00100000014d00000000000000050000000010000000200000efcdab90785634"
        "1201000000000000000300000000000000001000000000000000200000020000"
        "0000000000000000000000000000000000000000000000000000010000000000"
        "0000030000000000000000001000000000000010000003000000000000000000"
        "0000000000000000000000000000000000000002000000000000000300000000"
        "000000000000000000000000001000014d000000000000000500000000001000"
        "00002000efcdab9078563412",
    "0200080003000000000000000a5b3a3a315d3a37303031000000000001000039"
        "30000000000000",
    "02000900030000000000000002",
    "02000a0007000000010000000000000002000000000000000300000000000000",
    "02000b000700000002000000000000000400000000000000",
    "02000c0000100000",
    "02000d000300000005000000000000000600000000000000e803000000000000",
    "02000e000176076461696c792e31",
    "02000f000176076461696c792e31",
    "020010000176076461696c792e31027632",
    /* REPOINT: blob 500, partition 5, len 12288, csum, cursor (9, 1 MiB +
     * 4096), two re-points of layer 9 */
    "02001100f4010000000000000500000000300000887766554433221109000000"
        "0000000000101000000000000200000009000000000000000000000000000000"
        "002000004d000000000000000010000000000000090000000000000000001000"
        "00000000001000004e000000000000000000000000200000",
    /* ROLLBACK v daily.1 */
    "020012000176076461696c792e31",
    /* SNAPSHOT_GROUP cg1: db (attached at generation 3, no barrier), log
     * (barrier at generation 7, seen at 7) */
    "0200130003636731000202646200000000000000000300000000000000"
        "036c6f6707000000000000000700000000000000",
    "02001400026331",
    /* FLATTEN_FILL vol 4 layer 9 cursor 1 MiB, blob 600 (partition 5, 12288
     * bytes), fills [0, 8192) -> 0 and [65536, +4096) -> 8192 */
    "0200150004000000000000000900000000000000000010000000000058020000"
        "0000000005000000003000000807060504030201020000000000000000000000"
        "002000000000000000000100000000000010000000200000",
    "0200160004000000000000000900000000000000",
    /* IMPORT_BEGIN v as blockd-import from d1, 1 GiB */
    "0200170001760d626c6f636b642d696d706f72740264310000004000000000",
    /* IMPORT_END v, generation 3, COMMIT, snapshot d2 with its origin */
    "0200180001760d626c6f636b642d696d706f7274030000000000000001026432"
        "1032547698badcfe",
    /* ASSIGN v to hv1, read-only, for client vm-7; ASSIGN v to nobody, FORCE */
    "020019000176036876310476" "6d2d3701000000",
    "020019000176000002000000",
    /* QOS_PROFILE_PUT ssd: CREATE and DEFAULT, qos {read_bps 100 MiB,
     * burst_seconds 30} */
    "02001a00 03737364 03 0000 "
        "1010 [0*32] 0000400600000000 [0*8] [0*48] 1e000000 00000000",
    "02001b00 03737364",
    "0200280000100000",
    "020029000000010000000000",
    "02002a00 0c00000000000000 05 65752d3161 00 02 6837",
    "02002b00070000000200000000000000040000000000000002",
    "02002c00 07000000 0400000000000000 e803000000000000 0000100000000000 01",
};

TEST(golden_every_command)
{
    build_vectors();
    CHECK_EQ(BD_ARRAY_SIZE(golden), (size_t)n_vecs);
    bool all = true;
    for (int i = 0; i < n_vecs; i++)
        all &= golden_eq(vecs[i].name, vecs[i].buf, (size_t)vecs[i].len, golden[i]);
    CHECK(all);
    uint8_t g[1024];
    for (int i = 0; i < n_vecs; i++) {
        size_t n = golden_bytes(golden[i], g, sizeof(g));
        CHECK_EQ(idxcmd_roundtrip(g, n), 0);
    }
    struct idxcmd c;
    size_t n = golden_bytes(golden[0], g, sizeof(g));
    CHECK_EQ(idxcmd_decode(g, n, &c), 0);
    CHECK_EQ(c.type, IDXCMD_CREATE_VOLUME);
    CHECK(c.u.create_volume.name.len == 9 && !memcmp(c.u.create_volume.name.ptr, "vol-1.a_b", 9));
    CHECK_EQ(c.u.create_volume.size, 64ull << 40);
    CHECK_EQ(c.u.create_volume.block_size, 4096);
    CHECK(c.u.create_volume.profile.len == 3 && !memcmp(c.u.create_volume.profile.ptr, "ssd", 3));
    CHECK_EQ(c.u.create_volume.qos.set, QOS_SET_LIMIT(QOS_IOPS) | QOS_SET_LIMIT(QOS_BPS) |
                                            QOS_SET_BURST(QOS_IOPS));
    CHECK_EQ(c.u.create_volume.qos.limit[QOS_IOPS], 1000);
    CHECK_EQ(c.u.create_volume.qos.limit[QOS_BPS], 1 << 20);
    CHECK_EQ(c.u.create_volume.qos.burst[QOS_IOPS], 3000);
    n = golden_bytes(golden[6], g, sizeof(g));
    CHECK_EQ(idxcmd_decode(g, n, &c), 0);
    CHECK_EQ(c.type, IDXCMD_WRITE_BATCH);
    CHECK_EQ(c.u.write_batch.n, 4);
    struct idxcmd_write w, want = W(1, 0, 4096, IDXCMD_W_DATA);
    idxcmd_write_get(&c, 0, &w);
    CHECK(w.vol_id == want.vol_id && w.generation == want.generation && w.off == want.off &&
          w.len == want.len && w.kind == want.kind && w.blob_id == want.blob_id &&
          w.partition == want.partition && w.blob_off == want.blob_off &&
          w.blob_len == want.blob_len && w.blob_csum == want.blob_csum);
    idxcmd_write_get(&c, 2, &w);
    CHECK(w.vol_id == 1 && w.off == 1 << 20 && w.len == 4096 && w.kind == IDXCMD_W_TRIM);
    n = golden_bytes(golden[12], g, sizeof(g));
    CHECK_EQ(idxcmd_decode(g, n, &c), 0);
    CHECK_EQ(c.u.gc_done.n, 3);
    CHECK_EQ(idxcmd_gc_id(&c, 2), 1000);
}

/* Results: a WRITE_BATCH result with per-write statuses and an ATTACH
 * result with every scalar field set. */
TEST(golden_results)
{
    struct idxcmd_result r = {.type = IDXCMD_WRITE_BATCH, .status = IDXCMD_ST_OK, .id = 7,
                              .generation = 3, .size = 1 << 20, .block_size = 4096, .n = 3};
    r.st[1] = IDXCMD_ST_FENCED;
    r.st[2] = IDXCMD_ST_ERANGE;
    struct idxcmd_result a = {.type = IDXCMD_ATTACH, .status = IDXCMD_ST_EBUSY,
                              .id = 0x0102030405060708ull, .generation = 9,
                              .size = 64ull << 30, .block_size = 65536};
    static const char hex_batch[] =
        /* type status 0  id               generation       size */
        "0700  00     00 0700000000000000 0300000000000000 0000100000000000 "
        /* block_size n     st */
        "00100000     03000000 000405";
    static const char hex_attach[] =
        /* type status 0  id               generation       size */
        "0500  06     00 0807060504030201 0900000000000000 0000000010000000 "
        /* block_size n */
        "00000100     00000000";
    uint8_t b[IDXCMD_RESULT_MAX_LEN];
    int n = idxcmd_encode_result(b, sizeof(b), &r);
    CHECK(n > 0);
    bool ok = golden_eq("result_write_batch", b, (size_t)n, hex_batch);
    n = idxcmd_encode_result(b, sizeof(b), &a);
    CHECK(n > 0);
    CHECK(golden_eq("result_attach", b, (size_t)n, hex_attach) && ok);
    struct idxcmd_result d;
    size_t len = golden_bytes(hex_batch, b, sizeof(b));
    CHECK_EQ(idxcmd_decode_result(b, len, &d), 0);
    CHECK(d.type == r.type && d.status == r.status && d.id == r.id &&
          d.generation == r.generation && d.size == r.size && d.block_size == r.block_size &&
          d.n == 3 && d.st[0] == IDXCMD_ST_OK && d.st[1] == IDXCMD_ST_FENCED &&
          d.st[2] == IDXCMD_ST_ERANGE);
    len = golden_bytes(hex_attach, b, sizeof(b));
    CHECK_EQ(idxcmd_decode_result(b, len, &d), 0);
    CHECK(d.type == a.type && d.status == a.status && d.id == a.id &&
          d.generation == a.generation && d.size == a.size && d.block_size == a.block_size &&
          d.n == 0);
}

/* ---- Results ----------------------------------------------------------------------- */

/* Results round-trip; bad statuses and counts do not decode. */
TEST(results)
{
    struct idxcmd_result r = {.type = IDXCMD_WRITE_BATCH, .status = IDXCMD_ST_OK, .id = 7,
                           .generation = 3, .size = 1 << 20, .block_size = 4096, .n = 3};
    r.st[0] = IDXCMD_ST_OK;
    r.st[1] = IDXCMD_ST_FENCED;
    r.st[2] = IDXCMD_ST_ERANGE;
    uint8_t b[IDXCMD_RESULT_MAX_LEN];
    int n = idxcmd_encode_result(b, sizeof(b), &r);
    CHECK_EQ(n, 36 + 3);
    CHECK_EQ(idxcmd_result_roundtrip(b, (size_t)n), 0);
    struct idxcmd_result d;
    CHECK(idxcmd_decode_result(b, (size_t)n, &d) == 0);
    CHECK(d.id == 7 && d.generation == 3 && d.n == 3 && d.st[1] == IDXCMD_ST_FENCED);
    for (int len = 0; len < n; len++) CHECK_EQ(idxcmd_decode_result(b, (size_t)len, &d), -EPROTO);
    b[36 + 1] = IDXCMD_N_STATUS;
    CHECK_EQ(idxcmd_decode_result(b, (size_t)n, &d), -EPROTO);
    r.n = IDXCMD_MAX_WRITES + 1;
    CHECK_EQ(idxcmd_encode_result(b, sizeof(b), &r), -EINVAL);
    CHECK_EQ(idxcmd_status_to_err(IDXCMD_ST_FENCED), -BD_EFENCED);
    CHECK_EQ(idxcmd_status_to_err(IDXCMD_ST_OK), 0);
    CHECK(!strcmp(idxcmd_status_name(IDXCMD_ST_ESTALE), "ESTALE"));
}

/* ---- Corpus -------------------------------------------------------------------------- */

/* Write every vector as a fuzz seed; seed byte 0 picks the fuzz mode: 0
 * command, 1 result. */
TAP_CORPUS(write_corpus)
{
    build_vectors();
    for (int i = 0; i < n_vecs; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%.400s/%.40s", dir, vecs[i].name);
        FILE *f = fopen(path, "wb");
        CHECK(f);
        fputc(0, f);
        fwrite(vecs[i].buf, 1, (size_t)vecs[i].len, f);
        fclose(f);
    }
    struct idxcmd_result r = {.type = IDXCMD_WRITE_BATCH, .n = 2, .id = 1};
    r.st[1] = IDXCMD_ST_FENCED;
    uint8_t b[IDXCMD_RESULT_MAX_LEN];
    int n = idxcmd_encode_result(b, sizeof(b), &r);
    char path[512];
    snprintf(path, sizeof(path), "%.400s/result_write_batch", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f);
    fputc(1, f);
    fwrite(b, 1, (size_t)n, f);
    fclose(f);
}
