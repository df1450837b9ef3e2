/* idxcmd.c: encode and decode index commands and results (see idxcmd.h).
 *
 * Two sticky cursors, as in src/net/wire.c: after the first overflow or
 * underflow every later call is a no-op, so each body is a straight list
 * of field calls and one check at the end.  The encoder and the decoder of
 * each command sit in the same switch case order, field for field.  All
 * validation lives in the decoder (check_*); idxcmd_encode decodes its own
 * output, so the two can never disagree on what is valid. */
#include "idxcmd.h"
#include "../bd.h"
#include "../bytes.h"
#include "../util.h"

#include <string.h>

/* ---- cursors (src/bytes.h) plus u8-length strings ------------------------ */

static void put_str(struct bytes_w *c, struct idx_str s)
{
    bw_u8(c, s.len);
    bw_mem(c, s.ptr, s.len);
}
static struct idx_str get_str(struct bytes_r *c)
{
    struct idx_str s = {NULL, br_u8(c)};
    s.ptr = (const char *)br_take(c, s.len);
    if (!s.ptr) s.len = 0;
    return s;
}

struct idx_str idx_cstr(const char *s)
{
    size_t n = strlen(s);
    return (struct idx_str){s, (uint8_t)(n > 255 ? 255 : n)};
}

/* ---- validation (decoder side) ------------------------------------------- */

bool idxcmd_name_valid(const char *p, size_t len)
{
    if (len == 0 || len > 255 || p[0] == '.' || p[0] == '-') return false;
    for (size_t i = 0; i < len; i++) {
        char ch = p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static void check_name(struct bytes_r *c, struct idx_str s)
{
    if (!c->err && !idxcmd_name_valid(s.ptr, s.len)) br_fail(c);
}

static void check_addr(struct bytes_r *c, struct idx_str s)
{
    if (c->err) return;
    if (s.len == 0) br_fail(c);
    for (unsigned i = 0; i < s.len; i++)
        if (s.ptr[i] <= ' ' || s.ptr[i] > '~') br_fail(c);
}

static bool size_ok(uint64_t size)
{
    return size && size % IDXCMD_ALIGN == 0 && size <= IDXCMD_MAX_VOL_SIZE;
}

static void write_unpack(const uint8_t *p, struct idx_write *w)
{
    w->vol_id = util_get_le64(p);
    w->generation = util_get_le64(p + 8);
    w->off = util_get_le64(p + 16);
    w->len = util_get_le32(p + 24);
    w->kind = p[28];
    w->blob_id = util_get_le64(p + 29);
    w->partition = util_get_le32(p + 37);
    w->blob_off = util_get_le32(p + 41);
    w->blob_len = util_get_le32(p + 45);
    w->blob_csum = util_get_le64(p + 49);
}
static void write_pack(uint8_t *p, const struct idx_write *w)
{
    util_put_le64(p, w->vol_id);
    util_put_le64(p + 8, w->generation);
    util_put_le64(p + 16, w->off);
    util_put_le32(p + 24, w->len);
    p[28] = w->kind;
    util_put_le64(p + 29, w->blob_id);
    util_put_le32(p + 37, w->partition);
    util_put_le32(p + 41, w->blob_off);
    util_put_le32(p + 45, w->blob_len);
    util_put_le64(p + 49, w->blob_csum);
}

static bool write_ok(const struct idx_write *w)
{
    if (w->len == 0 || w->len % IDXCMD_ALIGN || w->off % IDXCMD_ALIGN ||
        w->off > IDXCMD_MAX_VOL_SIZE || w->len > IDXCMD_MAX_VOL_SIZE - w->off || !w->vol_id)
        return false;
    switch (w->kind) {
    case IDX_W_DATA:
        return w->blob_id && w->blob_len && w->blob_len <= IDXCMD_MAX_BLOB_LEN &&
               w->blob_off % IDXCMD_ALIGN == 0 &&
               (uint64_t)w->blob_off + w->len <= w->blob_len;
    case IDX_W_ZERO:
    case IDX_W_TRIM:
        return !w->blob_id && !w->partition && !w->blob_off && !w->blob_len && !w->blob_csum;
    default: return false;
    }
}

/* Sorted by (vol, off), no overlap within a volume, every write valid. */
static void check_writes(struct bytes_r *c, const uint8_t *raw, uint32_t n)
{
    struct idx_write prev = {0}, w;
    for (uint32_t i = 0; i < n && !c->err; i++) {
        write_unpack(raw + (size_t)i * IDXCMD_WRITE_LEN, &w);
        if (!write_ok(&w)) br_fail(c);
        if (i && (w.vol_id < prev.vol_id ||
                  (w.vol_id == prev.vol_id && w.off < prev.off + prev.len)))
            br_fail(c);
        prev = w;
    }
}

/* ---- commands --------------------------------------------------------------------- */

static void body_encode(struct bytes_w *c, const struct idxcmd *m)
{
    const union idxcmd_u *u = &m->u;
    switch (m->type) {
    case IDXCMD_CREATE_VOLUME:
        put_str(c, u->create_volume.name);
        bw_u64(c, u->create_volume.size);
        bw_u32(c, u->create_volume.block_size);
        bw_u64(c, u->create_volume.iops_limit);
        bw_u64(c, u->create_volume.bps_limit);
        break;
    case IDXCMD_DELETE_VOLUME: put_str(c, u->delete_volume.name); break;
    case IDXCMD_RESIZE_VOLUME:
        put_str(c, u->resize_volume.name);
        bw_u64(c, u->resize_volume.size);
        break;
    case IDXCMD_SET_QOS:
        put_str(c, u->set_qos.name);
        bw_u64(c, u->set_qos.iops_limit);
        bw_u64(c, u->set_qos.bps_limit);
        break;
    case IDXCMD_ATTACH:
        put_str(c, u->attach.name);
        put_str(c, u->attach.agent);
        bw_u32(c, u->attach.flags);
        break;
    case IDXCMD_DETACH:
        bw_u64(c, u->detach.vol_id);
        bw_u64(c, u->detach.generation);
        put_str(c, u->detach.agent);
        break;
    case IDXCMD_WRITE_BATCH: {
        bw_u32(c, u->write_batch.n);
        if (u->write_batch.n > IDXCMD_MAX_WRITES) { c->err = -EINVAL; break; }
        for (uint32_t i = 0; i < u->write_batch.n; i++) {
            struct idx_write w;
            idxcmd_write_get(m, i, &w);
            uint8_t *p = bw_take(c, IDXCMD_WRITE_LEN);
            if (p) write_pack(p, &w);
        }
        break;
    }
    case IDXCMD_REGISTER_NODE:
        bw_u64(c, u->register_node.node_id);
        put_str(c, u->register_node.addr);
        bw_u64(c, u->register_node.capacity);
        bw_u64(c, u->register_node.used);
        break;
    case IDXCMD_SET_NODE_STATE:
        bw_u64(c, u->set_node_state.node_id);
        bw_u8(c, u->set_node_state.state);
        break;
    case IDXCMD_CREATE_PARTITION:
        bw_u32(c, u->create_partition.part_id);
        for (int i = 0; i < 3; i++) bw_u64(c, u->create_partition.nodes[i]);
        break;
    case IDXCMD_REPLACE_REPLICA:
        bw_u32(c, u->replace_replica.part_id);
        bw_u64(c, u->replace_replica.old_node);
        bw_u64(c, u->replace_replica.new_node);
        break;
    case IDXCMD_ALLOC_BLOB_IDS: bw_u32(c, u->alloc_blob_ids.count); break;
    case IDXCMD_GC_DONE:
        bw_u32(c, u->gc_done.n);
        if (u->gc_done.n > IDXCMD_MAX_GC) { c->err = -EINVAL; break; }
        for (uint32_t i = 0; i < u->gc_done.n; i++) bw_u64(c, idxcmd_gc_id(m, i));
        break;
    case IDXCMD_SNAPSHOT_CREATE:
        put_str(c, u->snapshot_create.vol);
        put_str(c, u->snapshot_create.snap);
        break;
    case IDXCMD_SNAPSHOT_DELETE:
        put_str(c, u->snapshot_delete.vol);
        put_str(c, u->snapshot_delete.snap);
        break;
    case IDXCMD_CLONE:
        put_str(c, u->clone.vol);
        put_str(c, u->clone.snap);
        put_str(c, u->clone.new_name);
        break;
    default: c->err = -EINVAL;
    }
}

static void body_decode(struct bytes_r *c, struct idxcmd *m)
{
    union idxcmd_u *u = &m->u;
    switch (m->type) {
    case IDXCMD_CREATE_VOLUME:
        u->create_volume.name = get_str(c);
        u->create_volume.size = br_u64(c);
        u->create_volume.block_size = br_u32(c);
        u->create_volume.iops_limit = br_u64(c);
        u->create_volume.bps_limit = br_u64(c);
        check_name(c, u->create_volume.name);
        {
            uint32_t bs = u->create_volume.block_size;
            if (bs < IDXCMD_ALIGN || bs > 65536 || (bs & (bs - 1)) ||
                !size_ok(u->create_volume.size) || u->create_volume.size % bs)
                br_fail(c);
        }
        break;
    case IDXCMD_DELETE_VOLUME:
        u->delete_volume.name = get_str(c);
        check_name(c, u->delete_volume.name);
        break;
    case IDXCMD_RESIZE_VOLUME:
        u->resize_volume.name = get_str(c);
        u->resize_volume.size = br_u64(c);
        check_name(c, u->resize_volume.name);
        if (!size_ok(u->resize_volume.size)) br_fail(c);
        break;
    case IDXCMD_SET_QOS:
        u->set_qos.name = get_str(c);
        u->set_qos.iops_limit = br_u64(c);
        u->set_qos.bps_limit = br_u64(c);
        check_name(c, u->set_qos.name);
        break;
    case IDXCMD_ATTACH:
        u->attach.name = get_str(c);
        u->attach.agent = get_str(c);
        u->attach.flags = br_u32(c);
        check_name(c, u->attach.name);
        check_name(c, u->attach.agent);
        if (u->attach.flags & ~(uint32_t)(IDX_ATTACH_RO | IDX_ATTACH_FORCE) ||
            u->attach.flags == (IDX_ATTACH_RO | IDX_ATTACH_FORCE))
            br_fail(c);
        break;
    case IDXCMD_DETACH:
        u->detach.vol_id = br_u64(c);
        u->detach.generation = br_u64(c);
        u->detach.agent = get_str(c);
        check_name(c, u->detach.agent);
        if (!u->detach.vol_id || !u->detach.generation) br_fail(c);
        break;
    case IDXCMD_WRITE_BATCH:
        u->write_batch.n = br_u32(c);
        u->write_batch.in = NULL;
        if (u->write_batch.n == 0 || u->write_batch.n > IDXCMD_MAX_WRITES) {
            br_fail(c);
            break;
        }
        u->write_batch.raw = br_take(c, (size_t)u->write_batch.n * IDXCMD_WRITE_LEN);
        if (u->write_batch.raw) check_writes(c, u->write_batch.raw, u->write_batch.n);
        break;
    case IDXCMD_REGISTER_NODE:
        u->register_node.node_id = br_u64(c);
        u->register_node.addr = get_str(c);
        u->register_node.capacity = br_u64(c);
        u->register_node.used = br_u64(c);
        check_addr(c, u->register_node.addr);
        if (!u->register_node.node_id) br_fail(c);
        break;
    case IDXCMD_SET_NODE_STATE:
        u->set_node_state.node_id = br_u64(c);
        u->set_node_state.state = br_u8(c);
        if (!u->set_node_state.node_id || u->set_node_state.state < 1 ||
            u->set_node_state.state > 3)
            br_fail(c);
        break;
    case IDXCMD_CREATE_PARTITION: {
        u->create_partition.part_id = br_u32(c);
        uint64_t *n = u->create_partition.nodes;
        for (int i = 0; i < 3; i++) n[i] = br_u64(c);
        if (!u->create_partition.part_id || !n[0] || !n[1] || !n[2] || n[0] == n[1] ||
            n[0] == n[2] || n[1] == n[2])
            br_fail(c);
        break;
    }
    case IDXCMD_REPLACE_REPLICA:
        u->replace_replica.part_id = br_u32(c);
        u->replace_replica.old_node = br_u64(c);
        u->replace_replica.new_node = br_u64(c);
        if (!u->replace_replica.part_id || !u->replace_replica.old_node ||
            !u->replace_replica.new_node ||
            u->replace_replica.old_node == u->replace_replica.new_node)
            br_fail(c);
        break;
    case IDXCMD_ALLOC_BLOB_IDS:
        u->alloc_blob_ids.count = br_u32(c);
        if (!u->alloc_blob_ids.count || u->alloc_blob_ids.count > IDXCMD_MAX_ALLOC) br_fail(c);
        break;
    case IDXCMD_GC_DONE:
        u->gc_done.n = br_u32(c);
        u->gc_done.in = NULL;
        if (u->gc_done.n == 0 || u->gc_done.n > IDXCMD_MAX_GC) {
            br_fail(c);
            break;
        }
        u->gc_done.raw = br_take(c, (size_t)u->gc_done.n * 8);
        for (uint32_t i = 0; u->gc_done.raw && i < u->gc_done.n; i++) {
            uint64_t id = util_get_le64(u->gc_done.raw + 8 * i);
            if (!id || (i && id <= util_get_le64(u->gc_done.raw + 8 * (i - 1)))) br_fail(c);
        }
        break;
    case IDXCMD_SNAPSHOT_CREATE:
        u->snapshot_create.vol = get_str(c);
        u->snapshot_create.snap = get_str(c);
        check_name(c, u->snapshot_create.vol);
        check_name(c, u->snapshot_create.snap);
        break;
    case IDXCMD_SNAPSHOT_DELETE:
        u->snapshot_delete.vol = get_str(c);
        u->snapshot_delete.snap = get_str(c);
        check_name(c, u->snapshot_delete.vol);
        check_name(c, u->snapshot_delete.snap);
        break;
    case IDXCMD_CLONE:
        u->clone.vol = get_str(c);
        u->clone.snap = get_str(c);
        u->clone.new_name = get_str(c);
        check_name(c, u->clone.vol);
        check_name(c, u->clone.snap);
        check_name(c, u->clone.new_name);
        break;
    default: br_fail(c);
    }
}

int idxcmd_encode(uint8_t *buf, size_t cap, const struct idxcmd *m)
{
    struct bytes_w c;
    bw_init(&c, buf, BD_MIN(cap, (size_t)IDXCMD_MAX_LEN));
    bw_u8(&c, IDXCMD_VERSION);
    bw_u8(&c, 0);
    bw_u16(&c, m->type);
    body_encode(&c, m);
    if (c.err) return c.err;
    size_t len = c.used;
    struct idxcmd check;
    if (idxcmd_decode(buf, len, &check) != 0) return -EINVAL;
    return (int)len;
}

int idxcmd_decode(const uint8_t *buf, size_t len, struct idxcmd *m)
{
    memset(m, 0, sizeof(*m));
    if (len > IDXCMD_MAX_LEN) return -EPROTO;
    struct bytes_r c;
    br_init(&c, buf, len);
    uint8_t version = br_u8(&c), reserved = br_u8(&c);
    m->type = br_u16(&c);
    if (!c.err && (version != IDXCMD_VERSION || reserved != 0)) br_fail(&c);
    if (!c.err) body_decode(&c, m);
    if (!c.err && c.left) br_fail(&c);
    return c.err ? -EPROTO : 0;
}

void idxcmd_write_get(const struct idxcmd *m, uint32_t i, struct idx_write *w)
{
    if (m->u.write_batch.raw)
        write_unpack(m->u.write_batch.raw + (size_t)i * IDXCMD_WRITE_LEN, w);
    else
        *w = m->u.write_batch.in[i];
}

uint64_t idxcmd_gc_id(const struct idxcmd *m, uint32_t i)
{
    return m->u.gc_done.raw ? util_get_le64(m->u.gc_done.raw + 8 * (size_t)i)
                            : m->u.gc_done.in[i];
}

int idxcmd_write_cmp(const void *a, const void *b)
{
    const struct idx_write *x = a, *y = b;
    if (x->vol_id != y->vol_id) return x->vol_id < y->vol_id ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

const char *idxcmd_type_name(uint16_t type)
{
    switch (type) {
#define X(code, NAME, name) case code: return #NAME;
        IDXCMD_TYPES(X)
#undef X
    default: return "unknown";
    }
}

/* ---- results ----------------------------------------------------------------------- */

int idxcmd_encode_result(uint8_t *buf, size_t cap, const struct idx_result *r)
{
    if (r->n > IDXCMD_MAX_WRITES || r->status >= IDX_N_STATUS) return -EINVAL;
    struct bytes_w c;
    bw_init(&c, buf, cap);
    bw_u16(&c, r->type);
    bw_u8(&c, r->status);
    bw_u8(&c, 0);
    bw_u64(&c, r->id);
    bw_u64(&c, r->generation);
    bw_u64(&c, r->size);
    bw_u32(&c, r->block_size);
    bw_u32(&c, r->n);
    for (uint32_t i = 0; i < r->n; i++) {
        if (r->st[i] >= IDX_N_STATUS) return -EINVAL;
        bw_u8(&c, r->st[i]);
    }
    return c.err ? c.err : (int)c.used;
}

int idxcmd_decode_result(const uint8_t *buf, size_t len, struct idx_result *r)
{
    struct bytes_r c;
    br_init(&c, buf, len);
    r->type = br_u16(&c);
    r->status = br_u8(&c);
    if (br_u8(&c) != 0 || r->status >= IDX_N_STATUS) br_fail(&c);
    r->id = br_u64(&c);
    r->generation = br_u64(&c);
    r->size = br_u64(&c);
    r->block_size = br_u32(&c);
    r->n = br_u32(&c);
    if (r->n > IDXCMD_MAX_WRITES) br_fail(&c);
    for (uint32_t i = 0; i < r->n && !c.err; i++) {
        r->st[i] = br_u8(&c);
        if (r->st[i] >= IDX_N_STATUS) br_fail(&c);
    }
    if (!c.err && c.left) br_fail(&c);
    return c.err ? -EPROTO : 0;
}

const char *idx_status_name(uint8_t st)
{
    switch (st) {
#define X(code, NAME) case code: return #NAME;
        IDX_STATUSES(X)
#undef X
    default: return "unknown";
    }
}

int idx_status_to_err(uint8_t st)
{
    static const int map[IDX_N_STATUS] = {
        0, -EINVAL, -ENOENT, -EEXIST, -BD_EFENCED, -ERANGE, -EBUSY, -ESTALE, -E2BIG, -EALREADY,
    };
    return st < IDX_N_STATUS ? map[st] : -EINVAL;
}

/* ---- test support ------------------------------------------------------------------ */

int idxcmd_roundtrip(const uint8_t *buf, size_t len)
{
    struct idxcmd m;
    if (idxcmd_decode(buf, len, &m)) return -EPROTO;
    uint8_t out[IDXCMD_MAX_LEN];
    int n = idxcmd_encode(out, sizeof(out), &m);
    if (n < 0 || (size_t)n != len || memcmp(out, buf, len) != 0) return -EILSEQ;
    return 0;
}

int idxcmd_result_roundtrip(const uint8_t *buf, size_t len)
{
    struct idx_result r;
    if (idxcmd_decode_result(buf, len, &r)) return -EPROTO;
    uint8_t out[IDX_RESULT_MAX_LEN];
    int n = idxcmd_encode_result(out, sizeof(out), &r);
    if (n < 0 || (size_t)n != len || memcmp(out, buf, len) != 0) return -EILSEQ;
    return 0;
}
