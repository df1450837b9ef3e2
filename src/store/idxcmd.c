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
#include "../util.h"

#include <string.h>

/* ---- cursors ------------------------------------------------------------ */

struct cur {
    uint8_t *w;                /* encode: write position (NULL when decoding) */
    const uint8_t *r;          /* decode: read position */
    size_t left;
    int err;
};

static uint8_t *wtake(struct cur *c, size_t n)
{
    if (c->err || c->left < n) {
        c->err = -EMSGSIZE;
        return NULL;
    }
    uint8_t *p = c->w;
    c->w += n;
    c->left -= n;
    return p;
}

static const uint8_t *take(struct cur *c, size_t n)
{
    if (c->err || c->left < n) {
        c->err = -EPROTO;
        return NULL;
    }
    const uint8_t *p = c->r;
    c->r += n;
    c->left -= n;
    return p;
}

static void put_u8(struct cur *c, uint8_t v) { uint8_t *p = wtake(c, 1); if (p) *p = v; }
static void put_u16(struct cur *c, uint16_t v) { uint8_t *p = wtake(c, 2); if (p) util_put_le16(p, v); }
static void put_u32(struct cur *c, uint32_t v) { uint8_t *p = wtake(c, 4); if (p) util_put_le32(p, v); }
static void put_u64(struct cur *c, uint64_t v) { uint8_t *p = wtake(c, 8); if (p) util_put_le64(p, v); }
static void put_str(struct cur *c, struct idx_str s)
{
    put_u8(c, s.len);
    uint8_t *p = wtake(c, s.len);
    if (p && s.len) memcpy(p, s.ptr, s.len);
}
static uint8_t get_u8(struct cur *c) { const uint8_t *p = take(c, 1); return p ? *p : 0; }
static uint16_t get_u16(struct cur *c) { const uint8_t *p = take(c, 2); return p ? util_get_le16(p) : 0; }
static uint32_t get_u32(struct cur *c) { const uint8_t *p = take(c, 4); return p ? util_get_le32(p) : 0; }
static uint64_t get_u64(struct cur *c) { const uint8_t *p = take(c, 8); return p ? util_get_le64(p) : 0; }
static struct idx_str get_str(struct cur *c)
{
    struct idx_str s = {NULL, get_u8(c)};
    s.ptr = (const char *)take(c, s.len);
    if (!s.ptr) s.len = 0;
    return s;
}
static void fail(struct cur *c) { if (!c->err) c->err = -EPROTO; }

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

static void check_name(struct cur *c, struct idx_str s)
{
    if (!c->err && !idxcmd_name_valid(s.ptr, s.len)) fail(c);
}

static void check_addr(struct cur *c, struct idx_str s)
{
    if (c->err) return;
    if (s.len == 0) fail(c);
    for (unsigned i = 0; i < s.len; i++)
        if (s.ptr[i] <= ' ' || s.ptr[i] > '~') fail(c);
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
static void check_writes(struct cur *c, const uint8_t *raw, uint32_t n)
{
    struct idx_write prev = {0}, w;
    for (uint32_t i = 0; i < n && !c->err; i++) {
        write_unpack(raw + (size_t)i * IDXCMD_WRITE_LEN, &w);
        if (!write_ok(&w)) fail(c);
        if (i && (w.vol_id < prev.vol_id ||
                  (w.vol_id == prev.vol_id && w.off < prev.off + prev.len)))
            fail(c);
        prev = w;
    }
}

/* ---- commands --------------------------------------------------------------------- */

static void body_encode(struct cur *c, const struct idxcmd *m)
{
    const union idxcmd_u *u = &m->u;
    switch (m->type) {
    case IDXCMD_CREATE_VOLUME:
        put_str(c, u->create_volume.name);
        put_u64(c, u->create_volume.size);
        put_u32(c, u->create_volume.block_size);
        put_u64(c, u->create_volume.iops_limit);
        put_u64(c, u->create_volume.bps_limit);
        break;
    case IDXCMD_DELETE_VOLUME: put_str(c, u->delete_volume.name); break;
    case IDXCMD_RESIZE_VOLUME:
        put_str(c, u->resize_volume.name);
        put_u64(c, u->resize_volume.size);
        break;
    case IDXCMD_SET_QOS:
        put_str(c, u->set_qos.name);
        put_u64(c, u->set_qos.iops_limit);
        put_u64(c, u->set_qos.bps_limit);
        break;
    case IDXCMD_ATTACH:
        put_str(c, u->attach.name);
        put_str(c, u->attach.agent);
        put_u32(c, u->attach.flags);
        break;
    case IDXCMD_DETACH:
        put_u64(c, u->detach.vol_id);
        put_u64(c, u->detach.generation);
        put_str(c, u->detach.agent);
        break;
    case IDXCMD_WRITE_BATCH: {
        put_u32(c, u->write_batch.n);
        if (u->write_batch.n > IDXCMD_MAX_WRITES) { c->err = -EINVAL; break; }
        for (uint32_t i = 0; i < u->write_batch.n; i++) {
            struct idx_write w;
            idxcmd_write_get(m, i, &w);
            uint8_t *p = wtake(c, IDXCMD_WRITE_LEN);
            if (p) write_pack(p, &w);
        }
        break;
    }
    case IDXCMD_REGISTER_NODE:
        put_u64(c, u->register_node.node_id);
        put_str(c, u->register_node.addr);
        put_u64(c, u->register_node.capacity);
        put_u64(c, u->register_node.used);
        break;
    case IDXCMD_SET_NODE_STATE:
        put_u64(c, u->set_node_state.node_id);
        put_u8(c, u->set_node_state.state);
        break;
    case IDXCMD_CREATE_PARTITION:
        put_u32(c, u->create_partition.part_id);
        for (int i = 0; i < 3; i++) put_u64(c, u->create_partition.nodes[i]);
        break;
    case IDXCMD_REPLACE_REPLICA:
        put_u32(c, u->replace_replica.part_id);
        put_u64(c, u->replace_replica.old_node);
        put_u64(c, u->replace_replica.new_node);
        break;
    case IDXCMD_ALLOC_BLOB_IDS: put_u32(c, u->alloc_blob_ids.count); break;
    case IDXCMD_GC_DONE:
        put_u32(c, u->gc_done.n);
        if (u->gc_done.n > IDXCMD_MAX_GC) { c->err = -EINVAL; break; }
        for (uint32_t i = 0; i < u->gc_done.n; i++) put_u64(c, idxcmd_gc_id(m, i));
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

static void body_decode(struct cur *c, struct idxcmd *m)
{
    union idxcmd_u *u = &m->u;
    switch (m->type) {
    case IDXCMD_CREATE_VOLUME:
        u->create_volume.name = get_str(c);
        u->create_volume.size = get_u64(c);
        u->create_volume.block_size = get_u32(c);
        u->create_volume.iops_limit = get_u64(c);
        u->create_volume.bps_limit = get_u64(c);
        check_name(c, u->create_volume.name);
        {
            uint32_t bs = u->create_volume.block_size;
            if (bs < IDXCMD_ALIGN || bs > 65536 || (bs & (bs - 1)) ||
                !size_ok(u->create_volume.size) || u->create_volume.size % bs)
                fail(c);
        }
        break;
    case IDXCMD_DELETE_VOLUME:
        u->delete_volume.name = get_str(c);
        check_name(c, u->delete_volume.name);
        break;
    case IDXCMD_RESIZE_VOLUME:
        u->resize_volume.name = get_str(c);
        u->resize_volume.size = get_u64(c);
        check_name(c, u->resize_volume.name);
        if (!size_ok(u->resize_volume.size)) fail(c);
        break;
    case IDXCMD_SET_QOS:
        u->set_qos.name = get_str(c);
        u->set_qos.iops_limit = get_u64(c);
        u->set_qos.bps_limit = get_u64(c);
        check_name(c, u->set_qos.name);
        break;
    case IDXCMD_ATTACH:
        u->attach.name = get_str(c);
        u->attach.agent = get_str(c);
        u->attach.flags = get_u32(c);
        check_name(c, u->attach.name);
        check_name(c, u->attach.agent);
        if (u->attach.flags & ~(uint32_t)(IDX_ATTACH_RO | IDX_ATTACH_FORCE) ||
            u->attach.flags == (IDX_ATTACH_RO | IDX_ATTACH_FORCE))
            fail(c);
        break;
    case IDXCMD_DETACH:
        u->detach.vol_id = get_u64(c);
        u->detach.generation = get_u64(c);
        u->detach.agent = get_str(c);
        check_name(c, u->detach.agent);
        if (!u->detach.vol_id || !u->detach.generation) fail(c);
        break;
    case IDXCMD_WRITE_BATCH:
        u->write_batch.n = get_u32(c);
        u->write_batch.in = NULL;
        if (u->write_batch.n == 0 || u->write_batch.n > IDXCMD_MAX_WRITES) {
            fail(c);
            break;
        }
        u->write_batch.raw = take(c, (size_t)u->write_batch.n * IDXCMD_WRITE_LEN);
        if (u->write_batch.raw) check_writes(c, u->write_batch.raw, u->write_batch.n);
        break;
    case IDXCMD_REGISTER_NODE:
        u->register_node.node_id = get_u64(c);
        u->register_node.addr = get_str(c);
        u->register_node.capacity = get_u64(c);
        u->register_node.used = get_u64(c);
        check_addr(c, u->register_node.addr);
        if (!u->register_node.node_id) fail(c);
        break;
    case IDXCMD_SET_NODE_STATE:
        u->set_node_state.node_id = get_u64(c);
        u->set_node_state.state = get_u8(c);
        if (!u->set_node_state.node_id || u->set_node_state.state < 1 ||
            u->set_node_state.state > 3)
            fail(c);
        break;
    case IDXCMD_CREATE_PARTITION: {
        u->create_partition.part_id = get_u32(c);
        uint64_t *n = u->create_partition.nodes;
        for (int i = 0; i < 3; i++) n[i] = get_u64(c);
        if (!u->create_partition.part_id || !n[0] || !n[1] || !n[2] || n[0] == n[1] ||
            n[0] == n[2] || n[1] == n[2])
            fail(c);
        break;
    }
    case IDXCMD_REPLACE_REPLICA:
        u->replace_replica.part_id = get_u32(c);
        u->replace_replica.old_node = get_u64(c);
        u->replace_replica.new_node = get_u64(c);
        if (!u->replace_replica.part_id || !u->replace_replica.old_node ||
            !u->replace_replica.new_node ||
            u->replace_replica.old_node == u->replace_replica.new_node)
            fail(c);
        break;
    case IDXCMD_ALLOC_BLOB_IDS:
        u->alloc_blob_ids.count = get_u32(c);
        if (!u->alloc_blob_ids.count || u->alloc_blob_ids.count > IDXCMD_MAX_ALLOC) fail(c);
        break;
    case IDXCMD_GC_DONE:
        u->gc_done.n = get_u32(c);
        u->gc_done.in = NULL;
        if (u->gc_done.n == 0 || u->gc_done.n > IDXCMD_MAX_GC) {
            fail(c);
            break;
        }
        u->gc_done.raw = take(c, (size_t)u->gc_done.n * 8);
        for (uint32_t i = 0; u->gc_done.raw && i < u->gc_done.n; i++) {
            uint64_t id = util_get_le64(u->gc_done.raw + 8 * i);
            if (!id || (i && id <= util_get_le64(u->gc_done.raw + 8 * (i - 1)))) fail(c);
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
    default: fail(c);
    }
}

int idxcmd_encode(uint8_t *buf, size_t cap, const struct idxcmd *m)
{
    struct cur c = {.w = buf, .left = BD_MIN(cap, (size_t)IDXCMD_MAX_LEN)};
    put_u8(&c, IDXCMD_VERSION);
    put_u8(&c, 0);
    put_u16(&c, m->type);
    body_encode(&c, m);
    if (c.err) return c.err;
    size_t len = BD_MIN(cap, (size_t)IDXCMD_MAX_LEN) - c.left;
    struct idxcmd check;
    if (idxcmd_decode(buf, len, &check) != 0) return -EINVAL;
    return (int)len;
}

int idxcmd_decode(const uint8_t *buf, size_t len, struct idxcmd *m)
{
    memset(m, 0, sizeof(*m));
    if (len > IDXCMD_MAX_LEN) return -EPROTO;
    struct cur c = {.r = buf, .left = len};
    uint8_t version = get_u8(&c), reserved = get_u8(&c);
    m->type = get_u16(&c);
    if (!c.err && (version != IDXCMD_VERSION || reserved != 0)) fail(&c);
    if (!c.err) body_decode(&c, m);
    if (!c.err && c.left) fail(&c);
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
    struct cur c = {.w = buf, .left = cap};
    put_u16(&c, r->type);
    put_u8(&c, r->status);
    put_u8(&c, 0);
    put_u64(&c, r->id);
    put_u64(&c, r->generation);
    put_u64(&c, r->size);
    put_u32(&c, r->block_size);
    put_u32(&c, r->n);
    for (uint32_t i = 0; i < r->n; i++) {
        if (r->st[i] >= IDX_N_STATUS) return -EINVAL;
        put_u8(&c, r->st[i]);
    }
    return c.err ? c.err : (int)(cap - c.left);
}

int idxcmd_decode_result(const uint8_t *buf, size_t len, struct idx_result *r)
{
    struct cur c = {.r = buf, .left = len};
    r->type = get_u16(&c);
    r->status = get_u8(&c);
    if (get_u8(&c) != 0 || r->status >= IDX_N_STATUS) fail(&c);
    r->id = get_u64(&c);
    r->generation = get_u64(&c);
    r->size = get_u64(&c);
    r->block_size = get_u32(&c);
    r->n = get_u32(&c);
    if (r->n > IDXCMD_MAX_WRITES) fail(&c);
    for (uint32_t i = 0; i < r->n && !c.err; i++) {
        r->st[i] = get_u8(&c);
        if (r->st[i] >= IDX_N_STATUS) fail(&c);
    }
    if (!c.err && c.left) fail(&c);
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
