/* idxcmd.c: encode and decode index commands and results (see idxcmd.h).
 *
 * Two sticky cursors, as in src/net/wire.c: after the first overflow or
 * underflow every later call is a no-op, so each body is a straight list
 * of field calls, in the order of idxcmd.h's tables, and one check at the
 * end.  The encoder and the decoder of each command sit in the same switch
 * case order, field for field.  All
 * validation lives in the decoder (check_*); idxcmd_encode decodes its own
 * output, so the two can never disagree on what is valid. */
#include "store/index/idxcmd.h"
#include "base/bd.h"
#include "base/bytes.h"

#include <string.h>

/* ---- cursors (src/base/bytes.h) plus u8-length strings ------------------------ */

static void put_str(struct bytes_w *c, struct idxcmd_str s)
{
    bw_u8(c, s.len);
    bw_mem(c, s.ptr, s.len);
}
static struct idxcmd_str get_str(struct bytes_r *c)
{
    struct idxcmd_str s = {NULL, br_u8(c)};
    s.ptr = (const char *)br_take(c, s.len);
    if (!s.ptr) s.len = 0;
    return s;
}

struct idxcmd_str idxcmd_cstr(const char *s)
{
    size_t n = strlen(s);
    return (struct idxcmd_str){s, (uint8_t)(n > 255 ? 255 : n)};
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

static void check_name(struct bytes_r *c, struct idxcmd_str s)
{
    if (!c->err && !idxcmd_name_valid(s.ptr, s.len)) br_fail(c);
}

/* A name, or nothing (ASSIGN's agent and client, IMPORT_BEGIN's from,
 * IMPORT_END's snap). */
static void check_name_or_empty(struct bytes_r *c, struct idxcmd_str s)
{
    if (s.len) check_name(c, s);
}

static void check_addr(struct bytes_r *c, struct idxcmd_str s)
{
    if (c->err) return;
    if (s.len == 0) br_fail(c);
    for (unsigned i = 0; i < s.len; i++)
        if (s.ptr[i] <= ' ' || s.ptr[i] > '~') br_fail(c);
}

/* A failure-domain label: up to IDXCMD_LABEL_MAX of [A-Za-z0-9._-]
 * (empty: not set). */
static void check_label(struct bytes_r *c, struct idxcmd_str s)
{
    if (c->err) return;
    if (s.len > IDXCMD_LABEL_MAX) br_fail(c);
    for (unsigned i = 0; i < s.len; i++) {
        char ch = s.ptr[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            br_fail(c);
    }
}

static bool size_ok(uint64_t size)
{
    return size && size % IDXCMD_ALIGN == 0 && size <= IDXCMD_MAX_VOL_SIZE;
}

/* A write of a WRITE_BATCH: the write table of idxcmd.h. */
static void write_get(struct bytes_r *c, struct idxcmd_write *w)
{
    w->vol_id = br_u64(c);
    w->generation = br_u64(c);
    w->off = br_u64(c);
    w->len = br_u32(c);
    w->kind = br_u8(c);
    w->blob_id = br_u64(c);
    w->partition = br_u32(c);
    w->blob_off = br_u32(c);
    w->blob_len = br_u32(c);
    w->blob_csum = br_u64(c);
}
static void write_put(struct bytes_w *c, const struct idxcmd_write *w)
{
    bw_u64(c, w->vol_id);
    bw_u64(c, w->generation);
    bw_u64(c, w->off);
    bw_u32(c, w->len);
    bw_u8(c, w->kind);
    bw_u64(c, w->blob_id);
    bw_u32(c, w->partition);
    bw_u32(c, w->blob_off);
    bw_u32(c, w->blob_len);
    bw_u64(c, w->blob_csum);
}
/* Write I of a raw WRITE_BATCH area (validated by the decoder). */
static void write_at(const uint8_t *raw, uint32_t i, struct idxcmd_write *w)
{
    struct bytes_r c;
    br_init(&c, raw + (size_t)i * IDXCMD_WRITE_LEN, IDXCMD_WRITE_LEN);
    write_get(&c, w);
}

static bool write_ok(const struct idxcmd_write *w)
{
    if (w->len == 0 || w->len % IDXCMD_ALIGN || w->off % IDXCMD_ALIGN ||
        w->off > IDXCMD_MAX_VOL_SIZE || w->len > IDXCMD_MAX_VOL_SIZE - w->off || !w->vol_id)
        return false;
    switch (w->kind) {
    case IDXCMD_W_DATA:
        return w->blob_id && w->blob_len && w->blob_len <= IDXCMD_MAX_BLOB_LEN &&
               w->blob_off % IDXCMD_ALIGN == 0 &&
               (uint64_t)w->blob_off + w->len <= w->blob_len;
    case IDXCMD_W_ZERO:
    case IDXCMD_W_TRIM:
        return !w->blob_id && !w->partition && !w->blob_off && !w->blob_len && !w->blob_csum;
    default: return false;
    }
}

/* Sorted by (vol, off), no overlap within a volume, every write valid. */
static void check_writes(struct bytes_r *c, const uint8_t *raw, uint32_t n)
{
    struct idxcmd_write prev = {0}, w;
    for (uint32_t i = 0; i < n && !c->err; i++) {
        write_at(raw, i, &w);
        if (!write_ok(&w)) br_fail(c);
        if (i && (w.vol_id < prev.vol_id ||
                  (w.vol_id == prev.vol_id && w.off < prev.off + prev.len)))
            br_fail(c);
        prev = w;
    }
}

/* A re-point of a REPOINT: the re-point table of idxcmd.h. */
static void repoint_get(struct bytes_r *c, struct idxcmd_repoint *r)
{
    r->layer = br_u64(c);
    r->off = br_u64(c);
    r->len = br_u32(c);
    r->old_blob = br_u64(c);
    r->old_off = br_u32(c);
    r->new_off = br_u32(c);
}
static void repoint_put(struct bytes_w *c, const struct idxcmd_repoint *r)
{
    bw_u64(c, r->layer);
    bw_u64(c, r->off);
    bw_u32(c, r->len);
    bw_u64(c, r->old_blob);
    bw_u32(c, r->old_off);
    bw_u32(c, r->new_off);
}
static void repoint_at(const uint8_t *raw, uint32_t i, struct idxcmd_repoint *r)
{
    struct bytes_r c;
    br_init(&c, raw + (size_t)i * IDXCMD_REPOINT_LEN, IDXCMD_REPOINT_LEN);
    repoint_get(&c, r);
}

/* Sorted by (layer, off) without overlap; aligned; inside the new blob,
 * ascending in it; never the new blob itself. */
static void check_repoints(struct bytes_r *c, const uint8_t *raw, uint32_t n, uint64_t blob_id,
                           uint32_t blob_len)
{
    struct idxcmd_repoint prev = {0}, r;
    for (uint32_t i = 0; i < n && !c->err; i++) {
        repoint_at(raw, i, &r);
        if (!r.layer || !r.len || r.len % IDXCMD_ALIGN || r.off % IDXCMD_ALIGN ||
            r.old_off % IDXCMD_ALIGN || r.new_off % IDXCMD_ALIGN || r.off > IDXCMD_MAX_VOL_SIZE ||
            r.len > IDXCMD_MAX_VOL_SIZE - r.off || !r.old_blob || r.old_blob == blob_id ||
            (uint64_t)r.old_off + r.len > IDXCMD_MAX_BLOB_LEN ||
            (uint64_t)r.new_off + r.len > blob_len)
            br_fail(c);
        if (i && (r.layer < prev.layer || (r.layer == prev.layer && r.off < prev.off + prev.len) ||
                  r.new_off < prev.new_off + prev.len))
            br_fail(c);
        prev = r;
    }
}

/* Fields to unset: known ones, none of them also set. */
static void check_clear(struct bytes_r *c, uint16_t clear, const struct qos_limits *q)
{
    if (clear & ~QOS_SET_ALL || clear & q->set) br_fail(c);
}

/* A fill of a FLATTEN_FILL: off 8 | len 4 | new_off 4. */
static void fill_get(struct bytes_r *c, struct idxcmd_fill *f)
{
    f->off = br_u64(c);
    f->len = br_u32(c);
    f->new_off = br_u32(c);
}
static void fill_put(struct bytes_w *c, const struct idxcmd_fill *f)
{
    bw_u64(c, f->off);
    bw_u32(c, f->len);
    bw_u32(c, f->new_off);
}
static void fill_at(const uint8_t *raw, uint32_t i, struct idxcmd_fill *f)
{
    struct bytes_r c;
    br_init(&c, raw + (size_t)i * IDXCMD_FILL_LEN, IDXCMD_FILL_LEN);
    fill_get(&c, f);
}

/* Sorted, not overlapping, aligned, below the cursor; inside the blob and
 * ascending in it. */
static void check_fills(struct bytes_r *c, const uint8_t *raw, uint32_t n, uint64_t cursor,
                        uint32_t blob_len)
{
    struct idxcmd_fill prev = {0}, f;
    for (uint32_t i = 0; i < n && !c->err; i++) {
        fill_at(raw, i, &f);
        if (!f.len || f.len % IDXCMD_ALIGN || f.off % IDXCMD_ALIGN || f.new_off % IDXCMD_ALIGN ||
            f.off > cursor || f.len > cursor - f.off || (uint64_t)f.new_off + f.len > blob_len)
            br_fail(c);
        if (i && (f.off < prev.off + prev.len || f.new_off < prev.new_off + prev.len))
            br_fail(c);
        prev = f;
    }
}

/* A SNAPSHOT_GROUP volume: vol str | generation 8 | seen 8. */
static void group_get(struct bytes_r *c, struct idxcmd_group_vol *v)
{
    v->vol = get_str(c);
    v->generation = br_u64(c);
    v->seen = br_u64(c);
}

/* N volumes from RAW: valid names, pairwise distinct, a barrier only at
 * the generation seen.  Sets *LEN to the bytes they take (the entries are
 * variable-length). */
static void check_group(struct bytes_r *c, const uint8_t *raw, size_t left, uint32_t n,
                        size_t *len)
{
    struct bytes_r g;
    br_init(&g, raw, left);
    struct idxcmd_group_vol v[IDXCMD_MAX_GROUP];
    for (uint32_t i = 0; i < n && !g.err; i++) {
        group_get(&g, &v[i]);
        check_name(&g, v[i].vol);
        if (v[i].generation && v[i].generation != v[i].seen) br_fail(&g);
        for (uint32_t k = 0; k < i && !g.err; k++)
            if (v[k].vol.len == v[i].vol.len && !memcmp(v[k].vol.ptr, v[i].vol.ptr, v[i].vol.len))
                br_fail(&g);
    }
    if (g.err) br_fail(c);
    *len = g.used;
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
        bw_u8(c, u->create_volume.flags);
        put_str(c, u->create_volume.profile);
        qos_put(c, &u->create_volume.qos);
        break;
    case IDXCMD_DELETE_VOLUME: put_str(c, u->delete_volume.name); break;
    case IDXCMD_RESIZE_VOLUME:
        put_str(c, u->resize_volume.name);
        bw_u64(c, u->resize_volume.size);
        break;
    case IDXCMD_SET_QOS:
        put_str(c, u->set_qos.name);
        bw_u8(c, u->set_qos.flags);
        put_str(c, u->set_qos.profile);
        bw_u16(c, u->set_qos.clear);
        qos_put(c, &u->set_qos.qos);
        break;
    case IDXCMD_ATTACH:
        put_str(c, u->attach.name);
        put_str(c, u->attach.agent);
        bw_u32(c, u->attach.flags);
        bw_u64(c, u->attach.base_generation);
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
            struct idxcmd_write w;
            idxcmd_write_get(m, i, &w);
            write_put(c, &w);
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
    case IDXCMD_REPOINT:
        bw_u64(c, u->repoint.blob_id);
        bw_u32(c, u->repoint.partition);
        bw_u32(c, u->repoint.blob_len);
        bw_u64(c, u->repoint.blob_csum);
        bw_u64(c, u->repoint.cursor_layer);
        bw_u64(c, u->repoint.cursor_off);
        bw_u32(c, u->repoint.n);
        if (u->repoint.n > IDXCMD_MAX_REPOINT) { c->err = -EINVAL; break; }
        for (uint32_t i = 0; i < u->repoint.n; i++) {
            struct idxcmd_repoint r;
            idxcmd_repoint_get(m, i, &r);
            repoint_put(c, &r);
        }
        break;
    case IDXCMD_ROLLBACK:
        put_str(c, u->rollback.vol);
        put_str(c, u->rollback.snap);
        break;
    case IDXCMD_SNAPSHOT_GROUP:
        put_str(c, u->snapshot_group.snap);
        bw_u8(c, u->snapshot_group.flags);
        bw_u8(c, u->snapshot_group.n);
        if (u->snapshot_group.n > IDXCMD_MAX_GROUP) { c->err = -EINVAL; break; }
        for (uint32_t i = 0; i < u->snapshot_group.n; i++) {
            struct idxcmd_group_vol v;
            idxcmd_group_get(m, i, &v);
            put_str(c, v.vol);
            bw_u64(c, v.generation);
            bw_u64(c, v.seen);
        }
        break;
    case IDXCMD_FLATTEN_START: put_str(c, u->flatten_start.vol); break;
    case IDXCMD_FLATTEN_FILL:
        bw_u64(c, u->flatten_fill.vol_id);
        bw_u64(c, u->flatten_fill.layer);
        bw_u64(c, u->flatten_fill.cursor);
        bw_u64(c, u->flatten_fill.blob_id);
        bw_u32(c, u->flatten_fill.partition);
        bw_u32(c, u->flatten_fill.blob_len);
        bw_u64(c, u->flatten_fill.blob_csum);
        bw_u32(c, u->flatten_fill.n);
        if (u->flatten_fill.n > IDXCMD_MAX_FILL) { c->err = -EINVAL; break; }
        for (uint32_t i = 0; i < u->flatten_fill.n; i++) {
            struct idxcmd_fill f;
            idxcmd_fill_get(m, i, &f);
            fill_put(c, &f);
        }
        break;
    case IDXCMD_FLATTEN_DONE:
        bw_u64(c, u->flatten_done.vol_id);
        bw_u64(c, u->flatten_done.layer);
        break;
    case IDXCMD_IMPORT_BEGIN:
        put_str(c, u->import_begin.vol);
        put_str(c, u->import_begin.agent);
        put_str(c, u->import_begin.from);
        bw_u64(c, u->import_begin.size);
        break;
    case IDXCMD_IMPORT_END:
        put_str(c, u->import_end.vol);
        put_str(c, u->import_end.agent);
        bw_u64(c, u->import_end.generation);
        bw_u8(c, u->import_end.flags);
        put_str(c, u->import_end.snap);
        bw_u64(c, u->import_end.origin);
        break;
    case IDXCMD_ASSIGN:
        put_str(c, u->assign.name);
        put_str(c, u->assign.agent);
        put_str(c, u->assign.client);
        bw_u32(c, u->assign.flags);
        break;
    case IDXCMD_REAP: bw_u32(c, u->reap.budget); break;
    case IDXCMD_INDEX_LIMIT: bw_u64(c, u->index_limit.max_pages); break;
    case IDXCMD_NODE_DOMAIN:
        bw_u64(c, u->node_domain.node_id);
        put_str(c, u->node_domain.zone);
        put_str(c, u->node_domain.rack);
        put_str(c, u->node_domain.host);
        break;
    case IDXCMD_MOVE_REPLICA:
        bw_u32(c, u->move_replica.part_id);
        bw_u64(c, u->move_replica.old_node);
        bw_u64(c, u->move_replica.new_node);
        bw_u8(c, u->move_replica.reason);
        break;
    case IDXCMD_MOVE_MARK:
        bw_u32(c, u->move_mark.part_id);
        bw_u64(c, u->move_mark.node);
        bw_u64(c, u->move_mark.cursor);
        bw_u64(c, u->move_mark.bytes_done);
        bw_u8(c, u->move_mark.done);
        break;
    case IDXCMD_QOS_PROFILE_PUT:
        put_str(c, u->qos_profile_put.name);
        bw_u8(c, u->qos_profile_put.flags);
        bw_u16(c, u->qos_profile_put.clear);
        qos_put(c, &u->qos_profile_put.qos);
        break;
    case IDXCMD_QOS_PROFILE_DELETE: put_str(c, u->qos_profile_delete.name); break;
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
        u->create_volume.flags = br_u8(c);
        u->create_volume.profile = get_str(c);
        qos_get_valid(c, &u->create_volume.qos);
        check_name(c, u->create_volume.name);
        check_name_or_empty(c, u->create_volume.profile);
        {
            uint32_t bs = u->create_volume.block_size;
            if (bs < IDXCMD_ALIGN || bs > 65536 || (bs & (bs - 1)) ||
                !size_ok(u->create_volume.size) || u->create_volume.size % bs)
                br_fail(c);
            if (u->create_volume.flags & ~IDXCMD_CREATE_DEFAULT_QOS ||
                (u->create_volume.flags &&
                 (u->create_volume.profile.len || u->create_volume.qos.set)))
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
        u->set_qos.flags = br_u8(c);
        u->set_qos.profile = get_str(c);
        u->set_qos.clear = br_u16(c);
        qos_get_valid(c, &u->set_qos.qos);
        check_name(c, u->set_qos.name);
        check_name_or_empty(c, u->set_qos.profile);
        check_clear(c, u->set_qos.clear, &u->set_qos.qos);
        if (u->set_qos.flags & ~IDXCMD_QOS_PROFILE ||
            (!(u->set_qos.flags & IDXCMD_QOS_PROFILE) && u->set_qos.profile.len) ||
            (!u->set_qos.flags && !u->set_qos.clear && !u->set_qos.qos.set))
            br_fail(c);
        break;
    case IDXCMD_ATTACH:
        u->attach.name = get_str(c);
        u->attach.agent = get_str(c);
        u->attach.flags = br_u32(c);
        u->attach.base_generation = br_u64(c);
        check_name(c, u->attach.name);
        check_name(c, u->attach.agent);
        if (u->attach.flags & ~(uint32_t)(IDXCMD_ATTACH_RO | IDXCMD_ATTACH_FORCE) ||
            u->attach.flags == (IDXCMD_ATTACH_RO | IDXCMD_ATTACH_FORCE))
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
            u->set_node_state.state > 4)
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
        if (u->gc_done.raw) {
            struct bytes_r ids;
            br_init(&ids, u->gc_done.raw, (size_t)u->gc_done.n * 8);
            for (uint64_t i = 0, prev = 0; i < u->gc_done.n; i++) {
                uint64_t id = br_u64(&ids);
                if (!id || id <= prev) br_fail(c);
                prev = id;
            }
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
    case IDXCMD_REPOINT:
        u->repoint.blob_id = br_u64(c);
        u->repoint.partition = br_u32(c);
        u->repoint.blob_len = br_u32(c);
        u->repoint.blob_csum = br_u64(c);
        u->repoint.cursor_layer = br_u64(c);
        u->repoint.cursor_off = br_u64(c);
        u->repoint.n = br_u32(c);
        u->repoint.in = NULL;
        if (!u->repoint.blob_id || !u->repoint.blob_len ||
            u->repoint.blob_len > IDXCMD_MAX_BLOB_LEN || u->repoint.n == 0 ||
            u->repoint.n > IDXCMD_MAX_REPOINT) {
            br_fail(c);
            break;
        }
        u->repoint.raw = br_take(c, (size_t)u->repoint.n * IDXCMD_REPOINT_LEN);
        if (u->repoint.raw)
            check_repoints(c, u->repoint.raw, u->repoint.n, u->repoint.blob_id,
                           u->repoint.blob_len);
        break;
    case IDXCMD_ROLLBACK:
        u->rollback.vol = get_str(c);
        u->rollback.snap = get_str(c);
        check_name(c, u->rollback.vol);
        check_name(c, u->rollback.snap);
        break;
    case IDXCMD_SNAPSHOT_GROUP: {
        u->snapshot_group.snap = get_str(c);
        u->snapshot_group.flags = br_u8(c);
        u->snapshot_group.n = br_u8(c);
        u->snapshot_group.in = NULL;
        check_name(c, u->snapshot_group.snap);
        if (c->err || u->snapshot_group.flags || u->snapshot_group.n == 0 ||
            u->snapshot_group.n > IDXCMD_MAX_GROUP) {
            br_fail(c);
            break;
        }
        size_t len = 0;
        u->snapshot_group.raw = c->p;
        check_group(c, c->p, c->left, u->snapshot_group.n, &len);
        u->snapshot_group.raw_len = len;
        if (!c->err) br_take(c, len);
        break;
    }
    case IDXCMD_FLATTEN_START:
        u->flatten_start.vol = get_str(c);
        check_name(c, u->flatten_start.vol);
        break;
    case IDXCMD_FLATTEN_FILL: {
        typeof(u->flatten_fill) *f = &u->flatten_fill;
        f->vol_id = br_u64(c);
        f->layer = br_u64(c);
        f->cursor = br_u64(c);
        f->blob_id = br_u64(c);
        f->partition = br_u32(c);
        f->blob_len = br_u32(c);
        f->blob_csum = br_u64(c);
        f->n = br_u32(c);
        f->in = NULL;
        if (!f->vol_id || !f->layer || f->cursor % IDXCMD_ALIGN ||
            f->cursor > IDXCMD_MAX_VOL_SIZE || f->n > IDXCMD_MAX_FILL ||
            (f->n == 0 && (f->blob_id || f->partition || f->blob_len || f->blob_csum)) ||
            (f->n && (!f->blob_id || !f->blob_len || f->blob_len > IDXCMD_MAX_BLOB_LEN))) {
            br_fail(c);
            break;
        }
        f->raw = br_take(c, (size_t)f->n * IDXCMD_FILL_LEN);
        if (f->raw) check_fills(c, f->raw, f->n, f->cursor, f->blob_len);
        break;
    }
    case IDXCMD_FLATTEN_DONE:
        u->flatten_done.vol_id = br_u64(c);
        u->flatten_done.layer = br_u64(c);
        if (!u->flatten_done.vol_id || !u->flatten_done.layer) br_fail(c);
        break;
    case IDXCMD_IMPORT_BEGIN:
        u->import_begin.vol = get_str(c);
        u->import_begin.agent = get_str(c);
        u->import_begin.from = get_str(c);
        u->import_begin.size = br_u64(c);
        check_name(c, u->import_begin.vol);
        check_name(c, u->import_begin.agent);
        check_name_or_empty(c, u->import_begin.from);
        if (!size_ok(u->import_begin.size)) br_fail(c);
        break;
    case IDXCMD_IMPORT_END:
        u->import_end.vol = get_str(c);
        u->import_end.agent = get_str(c);
        u->import_end.generation = br_u64(c);
        u->import_end.flags = br_u8(c);
        u->import_end.snap = get_str(c);
        u->import_end.origin = br_u64(c);
        check_name(c, u->import_end.vol);
        check_name(c, u->import_end.agent);
        check_name_or_empty(c, u->import_end.snap);
        if (!u->import_end.generation || u->import_end.flags & ~IDXCMD_IMPORT_COMMIT) br_fail(c);
        break;
    case IDXCMD_ASSIGN:
        u->assign.name = get_str(c);
        u->assign.agent = get_str(c);
        u->assign.client = get_str(c);
        u->assign.flags = br_u32(c);
        check_name(c, u->assign.name);
        check_name_or_empty(c, u->assign.agent);
        check_name_or_empty(c, u->assign.client);
        if (u->assign.flags & ~(uint32_t)(IDXCMD_ASSIGN_RO | IDXCMD_ASSIGN_FORCE))
            br_fail(c);
        /* Detaching names no client and no mode. */
        if (!u->assign.agent.len && (u->assign.client.len || (u->assign.flags & IDXCMD_ASSIGN_RO)))
            br_fail(c);
        break;
    case IDXCMD_REAP:
        u->reap.budget = br_u32(c);
        if (!u->reap.budget || u->reap.budget > IDXCMD_MAX_REAP) br_fail(c);
        break;
    case IDXCMD_INDEX_LIMIT: u->index_limit.max_pages = br_u64(c); break;
    case IDXCMD_NODE_DOMAIN:
        u->node_domain.node_id = br_u64(c);
        u->node_domain.zone = get_str(c);
        u->node_domain.rack = get_str(c);
        u->node_domain.host = get_str(c);
        if (!u->node_domain.node_id) br_fail(c);
        check_label(c, u->node_domain.zone);
        check_label(c, u->node_domain.rack);
        check_label(c, u->node_domain.host);
        break;
    case IDXCMD_MOVE_REPLICA:
        u->move_replica.part_id = br_u32(c);
        u->move_replica.old_node = br_u64(c);
        u->move_replica.new_node = br_u64(c);
        u->move_replica.reason = br_u8(c);
        if (!u->move_replica.part_id || !u->move_replica.old_node ||
            !u->move_replica.new_node || u->move_replica.old_node == u->move_replica.new_node ||
            u->move_replica.reason < IDXCMD_MOVE_LOST ||
            u->move_replica.reason > IDXCMD_MOVE_REBALANCE)
            br_fail(c);
        break;
    case IDXCMD_MOVE_MARK:
        u->move_mark.part_id = br_u32(c);
        u->move_mark.node = br_u64(c);
        u->move_mark.cursor = br_u64(c);
        u->move_mark.bytes_done = br_u64(c);
        u->move_mark.done = br_u8(c);
        if (!u->move_mark.part_id || !u->move_mark.node || u->move_mark.done > 1) br_fail(c);
        break;
    case IDXCMD_QOS_PROFILE_PUT: {
        typeof(u->qos_profile_put) *q = &u->qos_profile_put;
        q->name = get_str(c);
        q->flags = br_u8(c);
        q->clear = br_u16(c);
        qos_get_valid(c, &q->qos);
        check_name(c, q->name);
        check_clear(c, q->clear, &q->qos);
        uint8_t known = IDXCMD_PROFILE_CREATE | IDXCMD_PROFILE_DEFAULT | IDXCMD_PROFILE_UNDEFAULT;
        if (q->flags & ~known ||
            (q->flags & IDXCMD_PROFILE_DEFAULT && q->flags & IDXCMD_PROFILE_UNDEFAULT) ||
            (q->flags & IDXCMD_PROFILE_CREATE && (q->clear || q->flags & IDXCMD_PROFILE_UNDEFAULT)))
            br_fail(c);
        break;
    }
    case IDXCMD_QOS_PROFILE_DELETE:
        u->qos_profile_delete.name = get_str(c);
        check_name(c, u->qos_profile_delete.name);
        break;
    default: br_fail(c);
    }
}

int idxcmd_encode(uint8_t *buf, size_t cap, const struct idxcmd *m)
{
    struct bytes_w c;
    bw_init(&c, buf, BD_MIN(cap, (size_t)IDXCMD_MAX_LEN));
    bw_u8(&c, IDXCMD_VERSION);
    bw_zeros(&c, 1);
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
    uint8_t version = br_u8(&c);
    br_zeros(&c, 1);
    m->type = br_u16(&c);
    if (version != IDXCMD_VERSION) br_fail(&c);
    if (!c.err) body_decode(&c, m);
    if (!c.err && c.left) br_fail(&c);
    return c.err ? -EPROTO : 0;
}

void idxcmd_write_get(const struct idxcmd *m, uint32_t i, struct idxcmd_write *w)
{
    if (m->u.write_batch.raw)
        write_at(m->u.write_batch.raw, i, w);
    else
        *w = m->u.write_batch.in[i];
}

uint64_t idxcmd_gc_id(const struct idxcmd *m, uint32_t i)
{
    if (!m->u.gc_done.raw) return m->u.gc_done.in[i];
    struct bytes_r c;
    br_init(&c, m->u.gc_done.raw + 8 * (size_t)i, 8);
    return br_u64(&c);
}

void idxcmd_group_get(const struct idxcmd *m, uint32_t i, struct idxcmd_group_vol *v)
{
    if (!m->u.snapshot_group.raw) {
        *v = m->u.snapshot_group.in[i];
        return;
    }
    /* Variable-length entries, validated by the decoder: walk to the Ith. */
    struct bytes_r c;
    br_init(&c, m->u.snapshot_group.raw, m->u.snapshot_group.raw_len);
    for (uint32_t k = 0; k <= i; k++) group_get(&c, v);
}

void idxcmd_fill_get(const struct idxcmd *m, uint32_t i, struct idxcmd_fill *f)
{
    if (m->u.flatten_fill.raw)
        fill_at(m->u.flatten_fill.raw, i, f);
    else
        *f = m->u.flatten_fill.in[i];
}

void idxcmd_repoint_get(const struct idxcmd *m, uint32_t i, struct idxcmd_repoint *r)
{
    if (m->u.repoint.raw)
        repoint_at(m->u.repoint.raw, i, r);
    else
        *r = m->u.repoint.in[i];
}

int idxcmd_write_cmp(const void *a, const void *b)
{
    const struct idxcmd_write *x = a, *y = b;
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

int idxcmd_encode_result(uint8_t *buf, size_t cap, const struct idxcmd_result *r)
{
    if (r->n > IDXCMD_MAX_WRITES || r->status >= IDXCMD_N_STATUS) return -EINVAL;
    struct bytes_w c;
    bw_init(&c, buf, cap);
    bw_u16(&c, r->type);
    bw_u8(&c, r->status);
    bw_zeros(&c, 1);
    bw_u64(&c, r->id);
    bw_u64(&c, r->generation);
    bw_u64(&c, r->size);
    bw_u32(&c, r->block_size);
    bw_u32(&c, r->n);
    for (uint32_t i = 0; i < r->n; i++) {
        if (r->st[i] >= IDXCMD_N_STATUS) return -EINVAL;
        bw_u8(&c, r->st[i]);
    }
    return c.err ? c.err : (int)c.used;
}

int idxcmd_decode_result(const uint8_t *buf, size_t len, struct idxcmd_result *r)
{
    struct bytes_r c;
    br_init(&c, buf, len);
    r->type = br_u16(&c);
    r->status = br_u8(&c);
    br_zeros(&c, 1);
    if (r->status >= IDXCMD_N_STATUS) br_fail(&c);
    r->id = br_u64(&c);
    r->generation = br_u64(&c);
    r->size = br_u64(&c);
    r->block_size = br_u32(&c);
    r->n = br_u32(&c);
    if (r->n > IDXCMD_MAX_WRITES) br_fail(&c);
    for (uint32_t i = 0; i < r->n && !c.err; i++) {
        r->st[i] = br_u8(&c);
        if (r->st[i] >= IDXCMD_N_STATUS) br_fail(&c);
    }
    if (!c.err && c.left) br_fail(&c);
    return c.err ? -EPROTO : 0;
}

const char *idxcmd_status_name(uint8_t st)
{
    switch (st) {
#define X(code, NAME) case code: return #NAME;
        IDXCMD_STATUSES(X)
#undef X
    default: return "unknown";
    }
}

int idxcmd_status_to_err(uint8_t st)
{
    static const int map[IDXCMD_N_STATUS] = {
        0, -EINVAL, -ENOENT, -EEXIST, -BD_EFENCED, -ERANGE, -EBUSY, -ESTALE, -E2BIG, -EALREADY,
        -EACCES,
        -ENOSPC,
    };
    return st < IDXCMD_N_STATUS ? map[st] : -EINVAL;
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
    struct idxcmd_result r;
    if (idxcmd_decode_result(buf, len, &r)) return -EPROTO;
    uint8_t out[IDXCMD_RESULT_MAX_LEN];
    int n = idxcmd_encode_result(out, sizeof(out), &r);
    if (n < 0 || (size_t)n != len || memcmp(out, buf, len) != 0) return -EILSEQ;
    return 0;
}
