/* proxy_io.c: the agent's requests (VOL_*), on any proxy.
 *
 * WRITE (DESIGN.md §4): validate against the index (volume, range,
 * alignment, generation), verify the data's XXH3-64 (C14), cut it into
 * blobs of at most blob_max_bytes, give each a blob id from this proxy's
 * lease, place it on a partition whose three blob servers are all up, put
 * it to all three in parallel, and queue one extent record per blob for
 * the next WRITE_BATCH.  A scattered write (WIRE_WRITE_SCATTER: many
 * ranges, their data back to back) is cut the same way, so scattered 4 KiB
 * blocks share one blob, and each range becomes an extent naming its slice
 * of the blob (blob_off); a range crossing a blob boundary becomes two.
 * The reply carries the raft index that committed it.  A put that fails
 * (a server went down mid-write) is retried on another partition under a
 * new blob id; a write never waits on a down server.  ZERO and TRIM skip
 * the blobs: index only.
 *
 *   VOL_WRITE -> checks -> ids -> 3 x BLOB_PUT per blob -> WRITE_BATCH -> reply
 *
 * Failure modes: bad range/alignment -> EINVAL/ERANGE; checksum -> ECSUM;
 * stale generation -> EFENCED (also decided again at apply: the commit is
 * the linearization point of fencing, C10, and a fenced blob becomes
 * garbage); no partition with three servers up, or no leader before the
 * deadline with nothing proposed -> EAGAIN (nothing was applied: the agent
 * may resend as is); proposed but not confirmed before the deadline, or a
 * multi-blob write that failed after some blob reached the index ->
 * ETIMEDOUT (outcome unknown: the agent must fence and resend).
 *
 * READ: wait until the applied index reaches the agent's min_index (C7),
 * map the range through the layer chain, fetch DATA pieces from a replica
 * each (the blob pool fails over on error or checksum mismatch), zero-fill
 * ZERO and HOLE pieces, and answer with the data and its XXH3-64.  A proxy
 * that knows no leader refuses reads (EAGAIN): it may be cut off and stale.
 *
 * The request's frame body is taken from the connection and kept until the
 * reply, so the payload is never copied on the proxy. */
#include "proxy_int.h"
#include "../bd.h"
#include "../log.h"
#include "../util.h"

#include <stdlib.h>
#include <string.h>

#define PIO_PUT_TRIES 3
#define PIO_LEASE_BATCH 65536u
#define PIO_LEASE_LOW 16384u

/* ---- replies ------------------------------------------------------------------- */

static void reply_index(struct conn *c, const struct wire_hdr *h, uint16_t type, uint64_t index)
{
    uint8_t buf[16];
    int n;
    if (type == WIRE_VOL_WRITE) {
        struct wire_vol_write_resp r = {.raft_index = index};
        n = wire_encode_vol_write_resp(buf, sizeof(buf), &r);
    } else if (type == WIRE_VOL_FLUSH) {
        struct wire_vol_flush_resp r = {.raft_index = index};
        n = wire_encode_vol_flush_resp(buf, sizeof(buf), &r);
    } else {
        struct wire_vol_detach_resp r = {.raft_index = index};
        n = wire_encode_vol_detach_resp(buf, sizeof(buf), &r);
    }
    conn_reply(c, h, buf, (size_t)n, NULL);
}

/* ---- placement ------------------------------------------------------------------ */

static void parts_refresh(struct proxy *p)
{
    if (!p->parts_dirty && p->parts) return;
    if (proxy_read_begin(p) < 0) return;
    struct index_part buf[256];
    struct index_part *all = NULL;
    unsigned n = 0;
    uint32_t after = 0, got = 0;
    do {
        if (index_part_list(p->rd, after, buf, 256, &got) < 0) break;
        struct index_part *na = realloc(all, (n + got + 1) * sizeof(*all));
        if (!na) break;
        all = na;
        memcpy(all + n, buf, got * sizeof(*buf));
        n += got;
        if (got) after = buf[got - 1].id;
    } while (got == 256);
    proxy_read_end(p);
    free(p->parts);
    p->parts = all;
    p->n_parts = n;
    p->parts_dirty = false;
}

/* A partition whose three servers are up, other than AVOID; NULL if none. */
static const struct index_part *place(struct proxy *p, uint32_t avoid)
{
    parts_refresh(p);
    for (unsigned k = 0; k < p->n_parts; k++) {
        const struct index_part *pt = &p->parts[(p->place_rr + k) % p->n_parts];
        if (pt->state != INDEX_PART_ACTIVE || (avoid && pt->id == avoid)) continue;
        if (pblobs_is_up(p->blobs, pt->nodes[0]) && pblobs_is_up(p->blobs, pt->nodes[1]) &&
            pblobs_is_up(p->blobs, pt->nodes[2])) {
            p->place_rr = (p->place_rr + k + 1) % p->n_parts;
            return pt;
        }
    }
    return NULL;
}

/* ---- write --------------------------------------------------------------------- */

struct ppart;

/* One extent of a write as it goes to the index: a range of the volume
 * backed by a range of one part's blob. */
struct pext {
    struct ppart *pt;
    uint64_t vol_off;
    uint32_t blob_off;         /* within the part's blob */
    uint32_t len;
    struct pwrite_rec rec;
};

/* One blob of a write: payload bytes [off, off + len), holding the
 * extents exts[first_ext .. first_ext + n_ext). */
struct ppart {
    struct pwrite_ctx *ctx;
    uint32_t off;              /* within the payload */
    uint32_t len;
    uint64_t csum;
    uint32_t tries;
    uint32_t last_part;
    uint32_t first_ext, n_ext;
    struct pblobs_put put;
};

struct pwrite_ctx {
    struct proxy *p;
    struct conn *c;
    struct wire_hdr hdr;
    uint8_t *body;                 /* the request frame, owned: payload lives here */
    struct wire_vol_write_req m;
    uint64_t t0_us;
    uint32_t n_parts, n_exts;
    uint32_t pending;              /* extents not finished */
    int err;                       /* first error */
    bool some_committed;           /* an extent reached the index */
    uint64_t max_index;
    bool waiting_ids;
    struct pwrite_ctx *next_waiting;
    struct ppart *parts;           /* both allocated with the context */
    struct pext *exts;
};

static void write_done(struct pwrite_ctx *w)
{
    struct proxy *p = w->p;
    /* EAGAIN promises the agent that nothing was applied (it may resend
     * as is); once any extent reached the index that is no longer true. */
    if (w->err == -EAGAIN && w->some_committed) w->err = -ETIMEDOUT;
    if (w->err) {
        metric_inc(p->c_errors);
        if (w->err == -BD_EFENCED) metric_inc(p->c_fenced);
        conn_reply_error(w->c, &w->hdr, w->err, 0, "write vol %llu off %llu: %s",
                         (unsigned long long)w->m.vol_id, (unsigned long long)w->m.off,
                         bd_strerror(w->err));
    } else {
        reply_index(w->c, &w->hdr, WIRE_VOL_WRITE, w->max_index);
        metric_observe_us(p->h_write, util_mono_ns() / 1000 - w->t0_us);
    }
    free(w->body);
    free(w);
}

static void ext_finish(struct pwrite_ctx *w, int err, uint64_t index)
{
    if (err && !w->err) w->err = err;
    if (index > w->max_index) w->max_index = index;
    if (--w->pending == 0) write_done(w);
}

/* Every extent of PT ends with ERR (its blob could not be written). */
static void part_fail(struct ppart *pt, int err)
{
    struct pwrite_ctx *w = pt->ctx;
    /* The last extent may free W: count before finishing. */
    for (uint32_t i = pt->n_ext; i > 0; i--) ext_finish(w, err, 0);
}

static void on_committed(struct pwrite_rec *rec, int err, uint64_t index)
{
    struct pext *x = rec->data;
    struct pwrite_ctx *w = x->pt->ctx;
    if (err == -ESTALE) err = -EIO; /* a fresh blob id cannot be dead: an index bug */
    if (err != -EAGAIN) w->some_committed = true; /* applied, or maybe applied */
    ext_finish(w, err, index);
}

/* Queue PT's extents for the next WRITE_BATCH. */
static void commit_part(struct ppart *pt, uint8_t kind, uint64_t blob_id, uint32_t partition)
{
    struct pwrite_ctx *w = pt->ctx;
    uint64_t deadline = util_mono_ms() + PIO_WRITE_DEADLINE_MS;
    uint32_t n = pt->n_ext;
    struct pext *x = &w->exts[pt->first_ext];
    for (uint32_t i = 0; i < n; i++, x++) {
        x->rec.cb = on_committed;
        x->rec.data = x;
        x->rec.deadline_ms = deadline;
        x->rec.w = (struct idx_write){
            .vol_id = w->m.vol_id,
            .generation = w->m.generation,
            .off = x->vol_off,
            .len = x->len,
            .kind = kind,
            .blob_id = blob_id,
            .partition = partition,
            .blob_off = kind == IDX_W_DATA ? x->blob_off : 0,
            .blob_len = kind == IDX_W_DATA ? pt->len : 0,
            .blob_csum = kind == IDX_W_DATA ? pt->csum : 0,
        };
    }
    /* A record can finish inside pbatch_add (a batch that cannot be
     * encoded fails at once), and the last one to finish frees W: hold a
     * count until all are queued. */
    w->pending++;
    x = &w->exts[pt->first_ext];
    for (uint32_t i = 0; i < n; i++) pbatch_add(w->p, &x[i].rec);
    ext_finish(w, 0, 0);
}

static uint64_t lease_take(struct proxy *p)
{
    if (p->lease.next >= p->lease.end) return 0;
    uint64_t id = p->lease.next++;
    if (p->lease.end - p->lease.next < PIO_LEASE_LOW) pio_lease_refill(p);
    return id;
}

static void put_part(struct ppart *pt);

static void on_put(struct pblobs_put *put, int err)
{
    struct ppart *pt = put->data;
    struct pwrite_ctx *w = pt->ctx;
    if (err == 0) {
        commit_part(pt, IDX_W_DATA, put->blob_id, put->partition);
        return;
    }
    /* The ids and copies already written become orphans for the sweeper;
     * try another partition under a new id. */
    pt->last_part = put->partition;
    if (++pt->tries < PIO_PUT_TRIES && !w->p->stopping) {
        put_part(pt);
        return;
    }
    part_fail(pt, err == -ENOSPC ? -ENOSPC : -EAGAIN);
}

static void put_part(struct ppart *pt)
{
    struct pwrite_ctx *w = pt->ctx;
    struct proxy *p = w->p;
    const struct index_part *part = place(p, pt->last_part);
    if (!part) {
        log_warn(p->tag, "no partition with three blob servers up: write refused for now");
        part_fail(pt, -EAGAIN);
        return;
    }
    uint64_t id = lease_take(p);
    if (!id) {
        /* The lease ran dry since the write was admitted: wait for ids. */
        part_fail(pt, -EAGAIN);
        return;
    }
    pt->put = (struct pblobs_put){
        .cb = on_put,
        .data = pt,
        .blob_id = id,
        .partition = part->id,
        .epoch = part->epoch,
        .csum = pt->csum,
        .buf = w->m.data + pt->off,
        .len = pt->len,
        .compressible = true,
    };
    memcpy(pt->put.nodes, part->nodes, sizeof(pt->put.nodes));
    pblobs_put3(p->blobs, &pt->put);
}

static void write_start_parts(struct pwrite_ctx *w)
{
    /* A part can fail synchronously (no partition to place it on), and the
     * last extent to finish frees W: hold one count until every part is out. */
    bool index_only = w->m.flags & (WIRE_WRITE_ZERO | WIRE_WRITE_TRIM);
    uint32_t n = w->n_parts;
    w->pending++;
    for (uint32_t i = 0; i < n; i++) {
        struct ppart *pt = &w->parts[i];
        if (index_only) commit_part(pt, (w->m.flags & WIRE_WRITE_ZERO) ? IDX_W_ZERO : IDX_W_TRIM,
                                    0, 0);
        else put_part(pt);
    }
    if (--w->pending == 0) write_done(w);
}

static void on_lease(struct pcmd *c, int err, uint64_t index, const struct idx_result *res)
{
    (void)index;
    struct proxy *p = c->data;
    p->lease.asking = false;
    if (err == 0 && res->status == IDX_OK && res->id) {
        p->lease.next = res->id;
        p->lease.end = res->id + PIO_LEASE_BATCH;
    } else if (!p->stopping) {
        log_warn(p->tag, "blob id lease failed: %s",
                 bd_strerror(err ? err : idx_status_to_err(res->status)));
    }
    /* Start (or fail) the writes that waited for ids. */
    struct pwrite_ctx *list = p->lease_waiters;
    p->lease_waiters = NULL;
    while (list) {
        struct pwrite_ctx *w = list;
        list = w->next_waiting;
        w->waiting_ids = false;
        if (p->lease.end - p->lease.next >= w->n_parts) {
            write_start_parts(w);
        } else {
            w->err = err ? err : -EAGAIN;
            write_done(w);
        }
    }
}

void pio_lease_refill(struct proxy *p)
{
    if (p->lease.asking || p->stopping) return;
    struct idxcmd cmd = {.type = IDXCMD_ALLOC_BLOB_IDS};
    cmd.u.alloc_blob_ids.count = PIO_LEASE_BATCH;
    int n = idxcmd_encode(p->lease.buf, sizeof(p->lease.buf), &cmd);
    if (n < 0) return;
    p->lease.asking = true;
    p->lease.cmd = (struct pcmd){.cb = on_lease, .data = p, .buf = p->lease.buf,
                                 .len = (size_t)n,
                                 .deadline_ms = util_mono_ms() + PIO_WRITE_DEADLINE_MS};
    pcmd_submit(p, &p->lease.cmd);
}

/* Cut W's extents into its parts: payload bytes [i*chunk, (i+1)*chunk)
 * are part i's blob, and an extent that crosses a part boundary becomes
 * two.  Returns the number of pieces written to W->exts (at most CAP). */
static uint32_t write_cut(struct pwrite_ctx *w, uint32_t n_wire, uint32_t chunk, uint32_t cap)
{
    uint32_t k = 0, pos = 0;
    for (uint32_t i = 0; i < n_wire; i++) {
        struct wire_write_ext x;
        wire_vol_write_ext(&w->m, i, &x);
        uint64_t vol_off = x.off;
        uint32_t left = x.len;
        while (left > 0 && BD_ALWAYS(k < cap)) {
            uint32_t part = pos / chunk;
            uint32_t room = (part + 1) * chunk - pos;
            uint32_t n = BD_MIN(left, room);
            struct ppart *pt = &w->parts[part];
            if (pt->n_ext == 0) pt->first_ext = k;
            pt->n_ext++;
            w->exts[k++] = (struct pext){.pt = pt, .vol_off = vol_off, .len = n,
                                         .blob_off = pos - pt->off};
            vol_off += n;
            pos += n;
            left -= n;
        }
    }
    return k;
}

static void handle_write(struct proxy *p, struct conn *c, struct conn_frame *f)
{
    struct wire_vol_write_req m;
    if (wire_decode_vol_write_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed VOL_WRITE");
        return;
    }
    uint32_t n_wire = wire_vol_write_count(&m);
    struct wire_write_ext last = {0};
    for (uint32_t i = 0; i < n_wire; i++) {
        wire_vol_write_ext(&m, i, &last);
        if (last.off % BD_BLOCK_SIZE || last.len % BD_BLOCK_SIZE) {
            conn_reply_error(c, &f->hdr, -EINVAL, 0,
                             "offset and length must be multiples of %u", BD_BLOCK_SIZE);
            return;
        }
    }
    bool index_only = m.flags & (WIRE_WRITE_ZERO | WIRE_WRITE_TRIM);
    if (!index_only && util_xxh3(m.data, m.data_len) != m.csum) {
        metric_inc(p->c_errors);
        conn_reply_error(c, &f->hdr, -BD_ECSUM, 0, "data does not match its checksum");
        return;
    }
    /* Early checks against the index; apply decides again (C10). */
    if (proxy_read_begin(p) < 0) {
        conn_reply_error(c, &f->hdr, -EAGAIN, 0, "index busy");
        return;
    }
    struct index_vol v;
    int rc = index_vol_by_id(p->rd, m.vol_id, &v);
    proxy_read_end(p);
    if (rc < 0) {
        conn_reply_error(c, &f->hdr, rc, 0, "volume %llu: %s", (unsigned long long)m.vol_id,
                         bd_strerror(rc));
        return;
    }
    /* Extents ascend (the codec checked), so the last one is the end. */
    if (last.len > v.size || last.off > v.size - last.len) {
        conn_reply_error(c, &f->hdr, -ERANGE, 0, "write past the end of %s", v.name);
        return;
    }
    /* Only a generation older than what this proxy has applied is surely
     * stale: a follower may not yet have applied the attach that gave the
     * agent a newer one.  Apply decides for good (C10). */
    if (m.generation < v.generation ||
        (m.generation == v.generation && v.attach_mode != INDEX_ATTACH_RW)) {
        metric_inc(p->c_fenced);
        conn_reply_error(c, &f->hdr, -BD_EFENCED, 0,
                         "generation %llu is not the current attach (%llu) of %s",
                         (unsigned long long)m.generation, (unsigned long long)v.generation,
                         v.name);
        return;
    }
    uint32_t chunk = index_only ? m.len : (uint32_t)p->cfg->blob_max_bytes;
    uint32_t n_parts = (m.len + chunk - 1) / chunk;
    uint32_t max_exts = n_wire + n_parts - 1; /* each part boundary splits at most one */
    struct pwrite_ctx *w = calloc(1, sizeof(*w) + n_parts * sizeof(struct ppart) +
                                         max_exts * sizeof(struct pext));
    if (!w) {
        conn_reply_error(c, &f->hdr, -ENOMEM, 0, "out of memory");
        return;
    }
    w->parts = (struct ppart *)(w + 1);
    w->exts = (struct pext *)(w->parts + n_parts);
    w->p = p;
    w->c = c;
    w->hdr = f->hdr;
    w->body = conn_frame_take(f);
    w->m = m; /* its data and ext pointers point into the body we now own */
    w->t0_us = util_mono_ns() / 1000;
    w->n_parts = n_parts;
    for (uint32_t i = 0; i < n_parts; i++) {
        struct ppart *pt = &w->parts[i];
        pt->ctx = w;
        pt->off = i * chunk;
        pt->len = BD_MIN(chunk, m.len - pt->off);
        pt->csum = index_only ? 0
                   : n_parts == 1 ? m.csum : util_xxh3(w->m.data + pt->off, pt->len);
    }
    w->n_exts = write_cut(w, n_wire, chunk, max_exts);
    w->pending = w->n_exts;
    metric_inc(p->c_writes);
    metric_add(p->c_write_bytes, m.len);
    if (!index_only && p->lease.end - p->lease.next < n_parts) {
        w->waiting_ids = true;
        w->next_waiting = p->lease_waiters;
        p->lease_waiters = w;
        pio_lease_refill(p);
        return;
    }
    write_start_parts(w);
}

/* Forwarding to the leader.  A follower that cannot answer yet, because
 * it lags the leader (a lookup of a volume created a moment ago, a read
 * whose min_index this follower has not applied: the leader answered the
 * write, but followers learn the new commit index only with the next
 * AppendEntries, up to a heartbeat later), sends the request on to the
 * leader once and relays its answer, payload included, instead of waiting.
 * A proxy never forwards a request that came from a proxy. */
struct pforward {
    struct conn_call call;
    struct conn *c;
    struct wire_hdr hdr;
};

static void release_body(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    free(arg);
}

static void on_forward(struct conn_call *call, int err, struct conn_frame *f)
{
    struct pforward *fw = call->data;
    if (err == 0) {
        size_t flen = f->hdr.len - f->hdr.payload_len;
        uint8_t *body = conn_frame_take(f);
        struct conn_payload pl = {.data = body + flen, .len = f->hdr.payload_len,
                                  .release = release_body, .arg = body};
        if (pl.len) {
            conn_reply(fw->c, &fw->hdr, body, flen, &pl);
        } else {
            conn_reply(fw->c, &fw->hdr, body, flen, NULL);
            free(body);
        }
    } else {
        char why[200];
        conn_reply_error(fw->c, &fw->hdr, err, 0, "%s",
                         f ? conn_error_text(f, why, sizeof(why)) : bd_strerror(err));
    }
    free(fw);
}

static bool forward_to_leader(struct proxy *p, struct conn *c, struct conn_frame *f,
                              uint32_t timeout_ms)
{
    if (conn_peer_role(c) == WIRE_ROLE_PROXY || consensus_is_leader(p->cons)) return false;
    uint64_t leader = consensus_leader(p->cons, NULL);
    struct link *l = NULL;
    for (unsigned i = 0; i < p->cfg->n_peers; i++)
        if (p->cfg->peers[i].id == leader) l = p->peer_links[i];
    if (!l || !link_is_up(l)) return false;
    struct pforward *fw = calloc(1, sizeof(*fw));
    if (!fw) return false;
    fw->c = c;
    fw->hdr = f->hdr;
    fw->call.cb = on_forward;
    fw->call.data = fw;
    size_t flen = f->hdr.len - f->hdr.payload_len;
    struct conn_payload pl = {.data = f->body + flen, .len = f->hdr.payload_len};
    if (link_call(l, &fw->call, f->hdr.type, f->body, flen, pl.len ? &pl : NULL, timeout_ms) < 0) {
        free(fw);
        return false;
    }
    return true;
}

/* ---- read and map ------------------------------------------------------------------ */

struct pread_ctx {
    struct proxy *p;
    struct conn *c;
    struct wire_hdr hdr;
    uint16_t type;                 /* WIRE_VOL_READ or WIRE_VOL_MAP */
    uint64_t vol_id, off, len;
    bool want_map;
    struct pwait wait;
    uint64_t t0_us;
    uint8_t *buf;
    struct index_piece *pieces;
    uint32_t n_pieces;
    uint32_t pending;
    int err;
    uint64_t applied;
    struct pblobs_get *gets;
};

static void read_free(struct pread_ctx *r)
{
    free(r->pieces);
    free(r->gets);
    free(r);
}

static void release_buf(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    free(arg);
}

/* Pieces -> at most WIRE_MAP_MAX wire ranges, merging neighbours of a kind. */
static uint32_t build_ranges(const struct pread_ctx *r, struct wire_map_range *out)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->n_pieces; i++) {
        const struct index_piece *pc = &r->pieces[i];
        uint32_t kind = pc->kind == INDEX_DATA ? WIRE_MAP_DATA
                        : pc->kind == INDEX_ZERO ? WIRE_MAP_ZERO
                                                 : WIRE_MAP_HOLE;
        if (n && out[n - 1].kind == kind && out[n - 1].off + out[n - 1].len == pc->off) {
            out[n - 1].len += pc->len;
            continue;
        }
        if (n == WIRE_MAP_MAX) break;
        out[n++] = (struct wire_map_range){pc->off, pc->len, kind};
    }
    return n;
}

static void read_reply(struct pread_ctx *r)
{
    struct proxy *p = r->p;
    if (r->err) {
        metric_inc(p->c_errors);
        conn_reply_error(r->c, &r->hdr, r->err, 0, "read vol %llu off %llu: %s",
                         (unsigned long long)r->vol_id, (unsigned long long)r->off,
                         bd_strerror(r->err));
        free(r->buf);
        read_free(r);
        return;
    }
    static struct wire_map_range ranges[WIRE_MAP_MAX];
    uint32_t nr = r->want_map ? build_ranges(r, ranges) : 0;
    uint8_t fields[WIRE_MAP_MAX * 20 + 64];
    int n;
    if (r->type == WIRE_VOL_MAP) {
        struct wire_vol_map_resp m = {.n = nr, .ranges_in = ranges};
        n = wire_encode_vol_map_resp(fields, sizeof(fields), &m);
        conn_reply(r->c, &r->hdr, fields, (size_t)n, NULL);
        read_free(r);
        return;
    }
    struct wire_vol_read_resp m = {.csum = util_xxh3(r->buf, r->len),
                                   .raft_index = r->applied,
                                   .n_ranges = nr,
                                   .ranges_in = ranges,
                                   .data_len = (uint32_t)r->len};
    n = wire_encode_vol_read_resp(fields, sizeof(fields), &m);
    struct conn_payload pl = {.data = r->buf, .len = r->len, .release = release_buf,
                              .arg = r->buf};
    metric_observe_us(p->h_read, util_mono_ns() / 1000 - r->t0_us);
    conn_reply(r->c, &r->hdr, fields, (size_t)n, &pl);
    read_free(r);
}

static void on_get(struct pblobs_get *g, int err)
{
    struct pread_ctx *r = g->data;
    if (err && !r->err) r->err = err == -BD_ECSUM ? -EIO : err == -EHOSTDOWN ? -EIO : err;
    if (--r->pending == 0) read_reply(r);
}

/* Map the range under one read txn; 0 or an error to answer with. */
static int read_map(struct pread_ctx *r)
{
    struct proxy *p = r->p;
    int rc = proxy_read_begin(p);
    if (rc < 0) return -EAGAIN;
    struct index_vol v;
    rc = index_vol_by_id(p->rd, r->vol_id, &v);
    if (rc == 0 && (r->len > v.size || r->off > v.size - r->len)) rc = -ERANGE;
    uint32_t cap = 64;
    r->pieces = malloc(cap * sizeof(*r->pieces));
    if (!r->pieces) rc = rc ? rc : -ENOMEM;
    uint64_t at = r->off, end = r->off + r->len;
    while (rc == 0 && at < end) {
        if (r->n_pieces + 64 > cap) {
            struct index_piece *np = realloc(r->pieces, cap * 2 * sizeof(*np));
            if (!np) {
                rc = -ENOMEM;
                break;
            }
            r->pieces = np;
            cap *= 2;
        }
        uint32_t got = 0;
        rc = index_map(p->rd, r->vol_id, at, end - at, r->pieces + r->n_pieces, 64, &got);
        if (rc < 0 || got == 0) break;
        r->n_pieces += got;
        const struct index_piece *last = &r->pieces[r->n_pieces - 1];
        at = last->off + last->len;
    }
    r->applied = index_applied(p->rd);
    if (rc == 0 && r->type == WIRE_VOL_READ) {
        /* Resolve each data piece's replicas now, inside the same txn. */
        r->gets = calloc(r->n_pieces ? r->n_pieces : 1, sizeof(*r->gets));
        if (!r->gets) rc = -ENOMEM;
        for (uint32_t i = 0; rc == 0 && i < r->n_pieces; i++) {
            const struct index_piece *pc = &r->pieces[i];
            if (pc->kind != INDEX_DATA) continue;
            struct index_part part;
            rc = index_part_get(p->rd, pc->partition, &part);
            if (rc < 0) {
                log_error(p->tag, "blob %llu names partition %u: %s",
                          (unsigned long long)pc->blob_id, pc->partition, bd_strerror(rc));
                rc = -EIO;
                break;
            }
            struct pblobs_get *g = &r->gets[i];
            g->blob_id = pc->blob_id;
            g->partition = pc->partition;
            memcpy(g->nodes, part.nodes, sizeof(g->nodes));
            g->off = pc->blob_off;
            g->len = (uint32_t)pc->len;
        }
    }
    proxy_read_end(p);
    return rc;
}

static void read_go(struct pread_ctx *r)
{
    struct proxy *p = r->p;
    int rc = read_map(r);
    if (rc < 0) {
        r->err = rc;
        read_reply(r);
        return;
    }
    if (r->type == WIRE_VOL_MAP) {
        read_reply(r);
        return;
    }
    r->buf = malloc(r->len ? r->len : 1);
    if (!r->buf) {
        r->err = -ENOMEM;
        read_reply(r);
        return;
    }
    r->pending = 1; /* held until every get is issued */
    for (uint32_t i = 0; i < r->n_pieces; i++) {
        const struct index_piece *pc = &r->pieces[i];
        uint8_t *dst = r->buf + (pc->off - r->off);
        if (pc->kind != INDEX_DATA) {
            memset(dst, 0, pc->len);
            continue;
        }
        struct pblobs_get *g = &r->gets[i];
        g->cb = on_get;
        g->data = r;
        g->dst = dst;
        r->pending++;
        pblobs_get(p->blobs, g);
    }
    if (--r->pending == 0) read_reply(r);
}

static void on_applied_wait(struct pwait *w, int err)
{
    struct pread_ctx *r = w->data;
    if (err) {
        r->err = err;
        read_reply(r);
        return;
    }
    read_go(r);
}

static void handle_read(struct proxy *p, struct conn *c, struct conn_frame *f)
{
    struct pread_ctx *r = calloc(1, sizeof(*r));
    if (!r) {
        conn_reply_error(c, &f->hdr, -ENOMEM, 0, "out of memory");
        return;
    }
    r->p = p;
    r->c = c;
    r->hdr = f->hdr;
    r->type = f->hdr.type;
    r->t0_us = util_mono_ns() / 1000;
    uint64_t min_index;
    if (f->hdr.type == WIRE_VOL_READ) {
        struct wire_vol_read_req m;
        if (wire_decode_vol_read_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
            free(r);
            conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed VOL_READ");
            return;
        }
        r->vol_id = m.vol_id;
        r->off = m.off;
        r->len = m.len;
        r->want_map = m.flags & WIRE_READ_MAP;
        min_index = m.min_index;
        metric_inc(p->c_reads);
        metric_add(p->c_read_bytes, m.len);
    } else {
        struct wire_vol_map_req m;
        if (wire_decode_vol_map_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
            free(r);
            conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed VOL_MAP");
            return;
        }
        r->vol_id = m.vol_id;
        r->off = m.off;
        r->len = m.len;
        r->want_map = true;
        min_index = m.min_index;
    }
    if (r->off % BD_BLOCK_SIZE || r->len % BD_BLOCK_SIZE) {
        r->err = -EINVAL;
        read_reply(r);
        return;
    }
    if (!proxy_has_leader(p)) {
        /* Possibly cut off from the majority, hence stale: send the agent
         * elsewhere rather than serve old data or lose a GC race. */
        r->err = -EAGAIN;
        read_reply(r);
        return;
    }
    if (min_index > consensus_last_applied(p->cons) &&
        forward_to_leader(p, c, f, (uint32_t)p->cfg->read_timeout_ms)) {
        free(r);
        return;
    }
    r->wait = (struct pwait){.cb = on_applied_wait, .data = r, .index = min_index,
                             .deadline_ms = util_mono_ms() + p->cfg->read_timeout_ms};
    pwait_add(p, &r->wait);
}

/* ---- attach, detach, flush, list ------------------------------------------------------ */

struct pattach_ctx {
    struct pcmd cmd;
    struct proxy *p;
    struct conn *c;
    struct wire_hdr hdr;
    uint32_t flags;
    uint8_t buf[600];
    struct pwait wait;         /* attach: until this proxy applied it */
    struct index_vol v;        /* attach: what to answer */
    uint64_t generation, index;
};

static void send_attach(struct conn *c, const struct wire_hdr *h, const struct index_vol *v,
                        uint64_t generation, uint32_t flags, uint64_t index)
{
    struct wire_vol_attach_resp r = {.vol_id = v->id, .size = v->size,
                                     .generation = generation, .block_size = v->block_size,
                                     .flags = flags, .raft_index = index};
    uint8_t buf[64];
    int n = wire_encode_vol_attach_resp(buf, sizeof(buf), &r);
    conn_reply(c, h, buf, (size_t)n, NULL);
}

static void on_attach_applied(struct pwait *w, int err)
{
    struct pattach_ctx *a = w->data;
    if (err) conn_reply_error(a->c, &a->hdr, -EAGAIN, 0, "attach not applied here yet: %s",
                              bd_strerror(err));
    else send_attach(a->c, &a->hdr, &a->v, a->generation, a->flags & WIRE_ATTACH_RO, a->index);
    free(a);
}

static void on_attached(struct pcmd *cmd, int err, uint64_t index, const struct idx_result *res)
{
    struct pattach_ctx *a = bd_container_of(cmd, struct pattach_ctx, cmd);
    if (err == 0 && res->status != IDX_OK) err = idx_status_to_err(res->status);
    if (err) {
        conn_reply_error(a->c, &a->hdr, err, 0, "attach: %s", bd_strerror(err));
        free(a);
        return;
    }
    /* Answer once this proxy has applied the new generation: the agent's
     * next write is checked against this proxy's index, which on a
     * follower may still hold the old generation (a spurious EFENCED). */
    a->v = (struct index_vol){.id = res->id, .size = res->size, .block_size = res->block_size};
    a->generation = res->generation;
    a->index = index;
    a->wait = (struct pwait){.cb = on_attach_applied, .data = a, .index = index,
                             .deadline_ms = util_mono_ms() + PIO_WRITE_DEADLINE_MS};
    pwait_add(a->p, &a->wait);
}

static void handle_attach(struct proxy *p, struct conn *c, struct conn_frame *f)
{
    struct wire_vol_attach_req m;
    char name[WIRE_NAME_MAX + 1], agent[65];
    if (wire_decode_vol_attach_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0 ||
        !wire_str_copy(m.name, name, sizeof(name)) ||
        !wire_str_copy(m.agent_id, agent, sizeof(agent))) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed VOL_ATTACH");
        return;
    }
    if (!idxcmd_name_valid(name, strlen(name)) || !idxcmd_name_valid(agent, strlen(agent))) {
        conn_reply_error(c, &f->hdr, -ENOENT, 0, "no such volume");
        return;
    }
    if (m.flags & (WIRE_ATTACH_INFO | WIRE_ATTACH_RO)) {
        /* Look up only: no raft entry, no generation bump. */
        if (!proxy_has_leader(p)) {
            conn_reply_error(c, &f->hdr, -EAGAIN, 0, "no raft leader");
            return;
        }
        if (proxy_read_begin(p) < 0) {
            conn_reply_error(c, &f->hdr, -EAGAIN, 0, "index busy");
            return;
        }
        struct index_vol v;
        int rc = index_vol_by_name(p->rd, name, strlen(name), &v);
        uint64_t applied = index_applied(p->rd);
        proxy_read_end(p);
        if (rc == -ENOENT && forward_to_leader(p, c, f, 5000)) return;
        if (rc < 0) conn_reply_error(c, &f->hdr, rc, 0, "volume %s: %s", name, bd_strerror(rc));
        else send_attach(c, &f->hdr, &v, v.generation, m.flags & WIRE_ATTACH_RO, applied);
        return;
    }
    struct pattach_ctx *a = calloc(1, sizeof(*a));
    if (!a) {
        conn_reply_error(c, &f->hdr, -ENOMEM, 0, "out of memory");
        return;
    }
    struct idxcmd cmd = {.type = IDXCMD_ATTACH};
    cmd.u.attach.name = idx_cstr(name);
    cmd.u.attach.agent = idx_cstr(agent);
    cmd.u.attach.flags = 0;
    int n = idxcmd_encode(a->buf, sizeof(a->buf), &cmd);
    if (n < 0) {
        free(a);
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "bad attach");
        return;
    }
    a->p = p;
    a->c = c;
    a->hdr = f->hdr;
    a->flags = m.flags;
    a->cmd = (struct pcmd){.cb = on_attached, .buf = a->buf, .len = (size_t)n,
                           .deadline_ms = util_mono_ms() + PIO_WRITE_DEADLINE_MS};
    pcmd_submit(p, &a->cmd);
}

static void on_detached(struct pcmd *cmd, int err, uint64_t index, const struct idx_result *res)
{
    struct pattach_ctx *a = bd_container_of(cmd, struct pattach_ctx, cmd);
    if (err == 0 && res->status != IDX_OK) err = idx_status_to_err(res->status);
    if (err) conn_reply_error(a->c, &a->hdr, err, 0, "detach: %s", bd_strerror(err));
    else reply_index(a->c, &a->hdr, WIRE_VOL_DETACH, index);
    free(a);
}

static void handle_detach(struct proxy *p, struct conn *c, struct conn_frame *f)
{
    struct wire_vol_detach_req m;
    char agent[65];
    if (wire_decode_vol_detach_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0 ||
        !wire_str_copy(m.agent_id, agent, sizeof(agent)) ||
        !idxcmd_name_valid(agent, strlen(agent))) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed VOL_DETACH");
        return;
    }
    struct pattach_ctx *a = calloc(1, sizeof(*a));
    if (!a) {
        conn_reply_error(c, &f->hdr, -ENOMEM, 0, "out of memory");
        return;
    }
    struct idxcmd cmd = {.type = IDXCMD_DETACH};
    cmd.u.detach.vol_id = m.vol_id;
    cmd.u.detach.generation = m.generation;
    cmd.u.detach.agent = idx_cstr(agent);
    int n = idxcmd_encode(a->buf, sizeof(a->buf), &cmd);
    if (n < 0) {
        free(a);
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "bad detach");
        return;
    }
    a->p = p;
    a->c = c;
    a->hdr = f->hdr;
    a->cmd = (struct pcmd){.cb = on_detached, .buf = a->buf, .len = (size_t)n,
                           .deadline_ms = util_mono_ms() + PIO_WRITE_DEADLINE_MS};
    pcmd_submit(p, &a->cmd);
}

static void handle_flush(struct proxy *p, struct conn *c, struct conn_frame *f)
{
    /* Every write this proxy acknowledged was already committed by a raft
     * majority before its reply; a flush adds only the fence check. */
    struct wire_vol_flush_req m;
    if (wire_decode_vol_flush_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed VOL_FLUSH");
        return;
    }
    if (proxy_read_begin(p) < 0) {
        conn_reply_error(c, &f->hdr, -EAGAIN, 0, "index busy");
        return;
    }
    struct index_vol v;
    int rc = index_vol_by_id(p->rd, m.vol_id, &v);
    uint64_t applied = index_applied(p->rd);
    proxy_read_end(p);
    if (rc < 0) conn_reply_error(c, &f->hdr, rc, 0, "volume %llu: %s",
                                 (unsigned long long)m.vol_id, bd_strerror(rc));
    else if (m.generation < v.generation ||
             (m.generation == v.generation && v.attach_mode != INDEX_ATTACH_RW))
        /* As for writes: a newer generation than ours means this proxy has
         * not applied the attach yet, not that the agent is fenced. */
        conn_reply_error(c, &f->hdr, -BD_EFENCED, 0, "generation %llu is stale",
                         (unsigned long long)m.generation);
    else reply_index(c, &f->hdr, WIRE_VOL_FLUSH, applied);
}

static void handle_list(struct proxy *p, struct conn *c, struct conn_frame *f)
{
    struct wire_vol_list_req m;
    char after[WIRE_NAME_MAX + 1];
    if (wire_decode_vol_list_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0 ||
        !wire_str_copy(m.after, after, sizeof(after))) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed VOL_LIST");
        return;
    }
    uint32_t max = BD_MIN(m.max, 64u);
    struct index_vol vols[64];
    uint32_t n = 0;
    if (proxy_read_begin(p) < 0) {
        conn_reply_error(c, &f->hdr, -EAGAIN, 0, "index busy");
        return;
    }
    int rc = index_vol_list(p->rd, after, strlen(after), vols, max, &n);
    proxy_read_end(p);
    if (rc < 0) {
        conn_reply_error(c, &f->hdr, rc, 0, "list: %s", bd_strerror(rc));
        return;
    }
    struct wire_vol_entry ents[64];
    for (uint32_t i = 0; i < n; i++)
        ents[i] = (struct wire_vol_entry){wire_cstr(vols[i].name), vols[i].id, vols[i].size};
    struct wire_vol_list_resp r = {.n = n, .entries_in = ents};
    static uint8_t buf[64 * (WIRE_NAME_MAX + 24) + 16];
    int len = wire_encode_vol_list_resp(buf, sizeof(buf), &r);
    if (len < 0) conn_reply_error(c, &f->hdr, len, 0, "list too large");
    else conn_reply(c, &f->hdr, buf, (size_t)len, NULL);
}

bool pio_handle(struct proxy *p, struct conn *c, struct conn_frame *f)
{
    switch (f->hdr.type) {
    case WIRE_VOL_WRITE: handle_write(p, c, f); return true;
    case WIRE_VOL_READ:
    case WIRE_VOL_MAP: handle_read(p, c, f); return true;
    case WIRE_VOL_ATTACH: handle_attach(p, c, f); return true;
    case WIRE_VOL_DETACH: handle_detach(p, c, f); return true;
    case WIRE_VOL_FLUSH: handle_flush(p, c, f); return true;
    case WIRE_VOL_LIST: handle_list(p, c, f); return true;
    default: return false;
    }
}

void pio_fail_all(struct proxy *p, int err)
{
    /* Writes waiting for blob ids: nothing else holds them. */
    struct pwrite_ctx *list = p->lease_waiters;
    p->lease_waiters = NULL;
    while (list) {
        struct pwrite_ctx *w = list;
        list = w->next_waiting;
        w->err = err;
        write_done(w);
    }
}
