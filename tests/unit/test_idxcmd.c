/* test_idxcmd.c: the index command codec.  One vector per command (they
 * decode, re-encode to the same bytes, fail when truncated at any length
 * or extended by a byte), then every validation rule from both sides: the
 * encoder refuses what the decoder would reject, and hand-patched bytes
 * that break a rule do not decode (CONTRACT.md §4.3: zero-length,
 * overlapping and overflowing extents are rejected before proposing).  With
 * IDXCMD_CORPUS_DIR set the vectors are written out as fuzz seeds. */
#include "tap.h"
#include "bd.h"
#include "store/idxcmd.h"
#include "util.h"

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

static struct idx_write W(uint64_t vol, uint64_t off, uint32_t len, uint8_t kind)
{
    struct idx_write w = {.vol_id = vol, .generation = 3, .off = off, .len = len, .kind = kind};
    if (kind == IDX_W_DATA) {
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
    c.u.create_volume = (typeof(c.u.create_volume)){idx_cstr("vol-1.a_b"), 64ull << 40, 4096,
                                                    1000, 1 << 20};
    add("create_volume", &c);
    NEW(DELETE_VOLUME);
    c.u.delete_volume.name = idx_cstr("v");
    add("delete_volume", &c);
    NEW(RESIZE_VOLUME);
    c.u.resize_volume.name = idx_cstr("v");
    c.u.resize_volume.size = 1 << 30;
    add("resize_volume", &c);
    NEW(SET_QOS);
    c.u.set_qos.name = idx_cstr("v");
    c.u.set_qos.iops_limit = 500;
    add("set_qos", &c);
    NEW(ATTACH);
    c.u.attach.name = idx_cstr("v");
    c.u.attach.agent = idx_cstr("hv1");
    c.u.attach.flags = IDX_ATTACH_FORCE;
    add("attach", &c);
    NEW(DETACH);
    c.u.detach.vol_id = 9;
    c.u.detach.generation = 4;
    c.u.detach.agent = idx_cstr("hv1");
    add("detach", &c);
    struct idx_write ws[4] = {W(1, 0, 4096, IDX_W_DATA), W(1, 4096, 8192, IDX_W_ZERO),
                              W(1, 1 << 20, 4096, IDX_W_TRIM), W(2, 0, 1 << 20, IDX_W_DATA)};
    NEW(WRITE_BATCH);
    c.u.write_batch.n = 4;
    c.u.write_batch.in = ws;
    add("write_batch", &c);
    NEW(REGISTER_NODE);
    c.u.register_node.node_id = 3;
    c.u.register_node.addr = idx_cstr("[::1]:7001");
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
    c.u.snapshot_create.vol = idx_cstr("v");
    c.u.snapshot_create.snap = idx_cstr("daily.1");
    add("snapshot_create", &c);
    NEW(SNAPSHOT_DELETE);
    c.u.snapshot_delete.vol = idx_cstr("v");
    c.u.snapshot_delete.snap = idx_cstr("daily.1");
    add("snapshot_delete", &c);
    NEW(CLONE);
    c.u.clone.vol = idx_cstr("v");
    c.u.clone.snap = idx_cstr("daily.1");
    c.u.clone.new_name = idx_cstr("v2");
    add("clone", &c);
#undef NEW
}

/* ---- Round trips ---------------------------------------------------------------- */

/* Every vector encodes, decodes and re-encodes to the same bytes. */
TEST(vectors_roundtrip)
{
    build_vectors();
    CHECK_EQ(n_vecs, 16);
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
    struct idx_write w;
    idxcmd_write_get(&c, 3, &w);
    CHECK(w.vol_id == 2 && w.off == 0 && w.len == (1 << 20) && w.kind == IDX_W_DATA);
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
    b[0] = 2;
    CHECK_EQ(idxcmd_decode(b, (size_t)vecs[1].len, &c), -EPROTO);
    b[0] = 1;
    b[1] = 1;
    CHECK_EQ(idxcmd_decode(b, (size_t)vecs[1].len, &c), -EPROTO);
    b[1] = 0;
    util_put_le16(b + 2, 999);
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
    c.u.delete_volume.name = (struct idx_str){"a/b", 3};
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &c), -EINVAL);
}

static int enc_write(struct idx_write *w, uint32_t n)
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
    struct idx_write w[2];
    w[0] = W(1, 0, 4096, IDX_W_DATA);
    CHECK(enc_write(w, 1) > 0);
    w[0].len = 0;
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(1, 512, 4096, IDX_W_ZERO);
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(1, 0, 4000, IDX_W_ZERO);
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(1, UINT64_MAX - 4095, 8192, IDX_W_ZERO);
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(1, IDXCMD_MAX_VOL_SIZE - 4096, 8192, IDX_W_ZERO);
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(0, 0, 4096, IDX_W_ZERO);
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(1, 0, 4096, 4);
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(1, 0, 4096, IDX_W_TRIM);
    w[0].blob_id = 5;
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(1, 0, 8192, IDX_W_DATA);
    w[0].blob_len = 8192 + 4096; /* blob_off 8192 + len 8192 > blob_len */
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    w[0] = W(1, 0, 8192, IDX_W_DATA);
    w[0].blob_id = 0;
    CHECK_EQ(enc_write(w, 1), -EINVAL);
    /* Overlap within a volume; unsorted; the same range in two volumes is fine. */
    w[0] = W(1, 0, 8192, IDX_W_ZERO);
    w[1] = W(1, 4096, 4096, IDX_W_ZERO);
    CHECK_EQ(enc_write(w, 2), -EINVAL);
    w[1] = W(1, 8192, 4096, IDX_W_ZERO);
    CHECK(enc_write(w, 2) > 0);
    struct idx_write sw = w[0];
    w[0] = w[1];
    w[1] = sw;
    CHECK_EQ(enc_write(w, 2), -EINVAL);
    w[0] = W(1, 0, 8192, IDX_W_ZERO);
    w[1] = W(2, 0, 8192, IDX_W_ZERO);
    CHECK(enc_write(w, 2) > 0);
    CHECK_EQ(enc_write(w, 0), -EINVAL);
}

/* The largest batch fits a PROPOSE; one more write does not encode. */
TEST(write_batch_bounds)
{
    static struct idx_write w[IDXCMD_MAX_WRITES + 1];
    for (uint32_t i = 0; i <= IDXCMD_MAX_WRITES; i++) w[i] = W(1, (uint64_t)i * 4096, 4096, IDX_W_ZERO);
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
    util_put_le64(b + w0 + 16, UINT64_MAX - 4095); /* write 0: off overflows */
    CHECK_EQ(idxcmd_decode(b, (size_t)len, &c), -EPROTO);
    memcpy(b, vecs[6].buf, (size_t)len);
    util_put_le32(b + w0 + 24, 0); /* write 0: zero length */
    CHECK_EQ(idxcmd_decode(b, (size_t)len, &c), -EPROTO);
    memcpy(b, vecs[6].buf, (size_t)len);
    util_put_le64(b + w0 + IDXCMD_WRITE_LEN + 16, 0); /* write 1 overlaps write 0 */
    CHECK_EQ(idxcmd_decode(b, (size_t)len, &c), -EPROTO);
    memcpy(b, vecs[6].buf, (size_t)len);
    util_put_le32(b + IDXCMD_HDR_LEN, 5000); /* count beyond the bytes */
    CHECK_EQ(idxcmd_decode(b, (size_t)len, &c), -EPROTO);
}

/* Other commands' rules. */
TEST(other_rules)
{
    uint8_t b[1024];
    struct idxcmd c = {.type = IDXCMD_CREATE_VOLUME};
    c.u.create_volume.name = idx_cstr("v");
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
    at.u.attach.name = idx_cstr("v");
    at.u.attach.agent = idx_cstr("a");
    at.u.attach.flags = IDX_ATTACH_RO | IDX_ATTACH_FORCE;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &at), -EINVAL);
    at.u.attach.flags = 0x80;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &at), -EINVAL);

    struct idxcmd r = {.type = IDXCMD_REGISTER_NODE};
    r.u.register_node.node_id = 1;
    r.u.register_node.addr = idx_cstr("has space:1");
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &r), -EINVAL);

    struct idxcmd s = {.type = IDXCMD_SET_NODE_STATE};
    s.u.set_node_state.node_id = 1;
    s.u.set_node_state.state = 4;
    CHECK_EQ(idxcmd_encode(b, sizeof(b), &s), -EINVAL);
}

/* ---- Results ----------------------------------------------------------------------- */

/* Results round-trip; bad statuses and counts do not decode. */
TEST(results)
{
    struct idx_result r = {.type = IDXCMD_WRITE_BATCH, .status = IDX_OK, .id = 7,
                           .generation = 3, .size = 1 << 20, .block_size = 4096, .n = 3};
    r.st[0] = IDX_OK;
    r.st[1] = IDX_FENCED;
    r.st[2] = IDX_ERANGE;
    uint8_t b[IDX_RESULT_MAX_LEN];
    int n = idxcmd_encode_result(b, sizeof(b), &r);
    CHECK_EQ(n, 36 + 3);
    CHECK_EQ(idxcmd_result_roundtrip(b, (size_t)n), 0);
    struct idx_result d;
    CHECK(idxcmd_decode_result(b, (size_t)n, &d) == 0);
    CHECK(d.id == 7 && d.generation == 3 && d.n == 3 && d.st[1] == IDX_FENCED);
    for (int len = 0; len < n; len++) CHECK_EQ(idxcmd_decode_result(b, (size_t)len, &d), -EPROTO);
    b[36 + 1] = IDX_N_STATUS;
    CHECK_EQ(idxcmd_decode_result(b, (size_t)n, &d), -EPROTO);
    r.n = IDXCMD_MAX_WRITES + 1;
    CHECK_EQ(idxcmd_encode_result(b, sizeof(b), &r), -EINVAL);
    CHECK_EQ(idx_status_to_err(IDX_FENCED), -BD_EFENCED);
    CHECK_EQ(idx_status_to_err(IDX_OK), 0);
    CHECK(!strcmp(idx_status_name(IDX_ESTALE), "ESTALE"));
}

/* ---- Corpus -------------------------------------------------------------------------- */

/* Write every vector as a fuzz seed (only with IDXCMD_CORPUS_DIR); seed
 * byte 0 picks the fuzz mode: 0 command, 1 result. */
TEST(write_corpus)
{
    const char *dir = getenv("IDXCMD_CORPUS_DIR");
    if (!dir) return;
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
    struct idx_result r = {.type = IDXCMD_WRITE_BATCH, .n = 2, .id = 1};
    r.st[1] = IDX_FENCED;
    uint8_t b[IDX_RESULT_MAX_LEN];
    int n = idxcmd_encode_result(b, sizeof(b), &r);
    char path[512];
    snprintf(path, sizeof(path), "%.400s/result_write_batch", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f);
    fputc(1, f);
    fwrite(b, 1, (size_t)n, f);
    fclose(f);
}
