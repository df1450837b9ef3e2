/* proxy_io.c: the agent's requests (VOL_*), on any proxy.
 *
 * This file orchestrates; every decision is a pure function of
 * proxy_plan.h, named below, so that it is unit-tested by table.
 *
 * WRITE (DESIGN.md §4): check the extents' shape (proxy_plan_write_check),
 * verify the data's XXH3-64 (C14), check against the index the volume's
 * bounds and the generation (proxy_plan_write_in_volume, proxy_plan_fence),
 * cut it into blobs of at most blob_max_bytes (proxy_plan_write_size and
 * _cut), give each a blob id from this proxy's lease, place it on a
 * partition whose three blob servers are all up (proxy_plan_place), put it
 * to all three in parallel, and queue one extent record per piece for the
 * next WRITE_BATCH.  A scattered write (WIRE_WRITE_SCATTER: many ranges,
 * their data back to back) is cut the same way, so scattered 4 KiB blocks
 * share one blob, and each range becomes an extent naming its slice of the
 * blob (blob_off); a range crossing a blob boundary becomes two.  The reply
 * carries the raft index that committed it.  A put that fails (a server
 * went down mid-write) is retried on another partition under a new blob
 * id; a write never waits on a down server.  ZERO and TRIM skip the blobs:
 * index only, one extent however long.
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
 * READ: refuse what cannot be answered before allocating anything
 * (proxy_plan_read_check: alignment, and a VOL_READ longer than one reply
 * frame carries is EMSGSIZE), wait until the applied index reaches the
 * agent's min_index (C7), map the range through the layer chain, resolve
 * the pieces into blob reads and zero fills (proxy_plan_read_resolve,
 * which also checks that they tile the range), fetch each DATA piece from a
 * replica (the blob pool tries those up first, proxy_plan_replica_order,
 * and fails over on error or checksum mismatch), and answer with the data
 * and its XXH3-64.  A proxy that knows no leader refuses reads (EAGAIN): it
 * may be cut off and stale.
 *
 * ATTACH, LIST, READ and MAP: an agent sees, attaches and reads only the
 * volumes assigned to it (idxcmd.h ASSIGN), read-write only those assigned
 * read-write (index_vol_may_attach), and reads also one it still holds
 * read-write after a detach (it drains it).  The agent is the one its
 * certificate names (a request naming another is refused); without TLS,
 * or forwarded by a peer proxy that checked it, the one the request names.  A read-write attach
 * is decided again at its commit (fsm.c), so a proxy behind the leader can
 * neither grant one the leader's index refuses nor refuse one it grants.
 * It raises the generation only from the base the agent names (wire.h
 * VOL_ATTACH): a late copy of an attach, committed after the agent was
 * answered another, finds the generation moved and is refused (EFENCED,
 * the hint the generation to base on) instead of fencing the agent.  A
 * base below this proxy's own view of the generation can never match
 * (generations only grow) and is refused at once, without a raft entry;
 * a look-up (INFO, read-only) is answered from this proxy's index, and
 * sent on to the leader when this one does not know the volume as the
 * agent's (it may lag behind a new assignment).
 *
 * The request's frame body is taken from the connection and kept until the
 * reply, so the payload is never copied on the proxy. */
#include "roles/proxy/proxy_io.h"
#include "net/tls.h"
#include "roles/proxy/proxy_blobs.h"
#include "roles/proxy/proxy_cmd.h"
#include "roles/proxy/proxy_copy.h"
#include "roles/proxy/proxy_index.h"
#include "roles/proxy/proxy_int.h"
#include "roles/proxy/proxy_qos.h"
#include "roles/proxy/proxy_mgmt.h"
#include "roles/proxy/proxy_peers.h"
#include "roles/proxy/proxy_plan.h"
#include "roles/proxy/proxy_view.h"
#include "roles/proxy/proxy_volstats.h"
#include "base/turnq.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define PUT_TRIES 3

/* The orphan grace (proxy_resync.c) relies on this: a blob id unknown to
 * the index for twice a write's deadline belongs to a write that failed. */
_Static_assert(CFG_ORPHAN_GRACE_MIN_MS >= 2 * PROXY_IO_WRITE_DEADLINE_MS,
               "the orphan grace must outlast twice a write's deadline");

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

/* An open partition for a new blob, other than AVOID; false if none
 * (proxy_copy_place: the blob rewrite and flatten place theirs the same
 * way).  The partition is copied into *OUT. */
static bool place(struct proxy *p, uint32_t avoid, struct index_part *out)
{
    return proxy_copy_place(p, avoid, out);
}

/* ---- write --------------------------------------------------------------------- */

struct write_part;

/* One extent of a write as it goes to the index: the plan's piece
 * (w->cut.pieces[i], backed by a range of one part's blob) and its record
 * in the WRITE_BATCH queue. */
struct write_ext {
    struct write_part *pt;
    const struct proxy_plan_piece *cut;
    struct proxy_cmd_write rec;
};

/* One blob of a write (for ZERO/TRIM, one part without a blob): the
 * plan's part (payload range, its extents) and its puts. */
struct write_part {
    struct write_ctx *ctx;
    const struct proxy_plan_part *cut;
    uint64_t csum;
    uint32_t tries;
    uint32_t last_part;        /* the partition the last put failed on */
    struct proxy_blobs_put put;
};

struct write_ctx {
    struct proxy *p;
    struct conn *c;
    struct wire_hdr hdr;
    uint8_t *body;                 /* the request frame, owned: payload lives here */
    struct wire_vol_write_req m;
    uint64_t t0_us;
    uint64_t trace;                /* wire_vol_write_trace_id: "ship=" in the logs */
    char vol[INDEX_NAME_MAX + 1];  /* the volume's name, for logs and per-volume stats */
    struct proxy_plan_write_size size;
    uint32_t n_exts;
    uint32_t pending;              /* extents not finished */
    int err;                       /* first error */
    bool some_committed;           /* an extent reached the index */
    uint64_t max_index;
    struct proxy_mgmt_lease_wait lease_wait; /* while waiting for blob ids */
    struct turnq_item turn;     /* its volume's turn (turnq.h) */
    /* all allocated with the context: */
    struct write_part *parts;      /* size.n_parts */
    struct write_ext *exts;        /* size.max_pieces, n_exts used */
    struct proxy_plan_piece *cut_pieces;
    struct proxy_plan_part *cut_parts;
};

static void write_done(struct write_ctx *w)
{
    struct proxy *p = w->p;
    /* EAGAIN promises the agent that nothing was applied (it may resend
     * as is); once any extent reached the index that is no longer true. */
    if (w->err == -EAGAIN && w->some_committed) w->err = -ETIMEDOUT;
    struct log_ids ids = {.vol = w->vol, .ship = w->trace, .raft_index = w->max_index};
    uint64_t took_us = util_mono_ns() / 1000 - w->t0_us;
    if (w->err) {
        /* EAGAIN is the normal answer while a leader is elected or a
         * server is down: the agent resends; not worth a line each. */
        if (w->err == -EAGAIN) log_debug_ids(p->tag, &ids, "write refused: %s", bd_strerror(w->err));
        else log_with(LOG_INFO, p->tag, &ids, "write failed: %s", bd_strerror(w->err));
        metric_inc(p->c_errors);
        if (w->err == -BD_EFENCED) metric_inc(p->c_fenced);
        conn_reply_error(w->c, &w->hdr, w->err, 0, "write vol %llu off %llu: %s",
                         (unsigned long long)w->m.vol_id, (unsigned long long)w->m.off,
                         bd_strerror(w->err));
    } else {
        log_debug_ids(p->tag, &ids, "write committed in %llu us", (unsigned long long)took_us);
        reply_index(w->c, &w->hdr, WIRE_VOL_WRITE, w->max_index);
        metrics_observe_us(p->h_write, took_us);
    }
    proxy_volstats_record(p->volstats, util_mono_ms(), w->m.vol_id, w->vol, PROXY_VOLSTATS_WRITE, w->m.len,
                          took_us, w->err != 0);
    void *body = w->body;
    struct turnq_item turn = w->turn;
    free(w);
    free(body);
    /* Last: it may start the next write, which may finish (and come back
     * here) before this returns. */
    turnq_done(p->wq, &turn);
}

static void ext_finish(struct write_ctx *w, int err, uint64_t index)
{
    if (err && !w->err) w->err = err;
    if (index > w->max_index) w->max_index = index;
    if (--w->pending == 0) write_done(w);
}

/* Every extent of PT ends with ERR (its blob could not be written). */
static void part_fail(struct write_part *pt, int err)
{
    struct write_ctx *w = pt->ctx;
    /* The last extent may free W: count before finishing. */
    for (uint32_t i = pt->cut->n_pieces; i > 0; i--) ext_finish(w, err, 0);
}

static void on_committed(struct proxy_cmd_write *rec, int err, uint64_t index)
{
    struct write_ext *x = rec->data;
    struct write_ctx *w = x->pt->ctx;
    if (err == -ESTALE) err = -EIO; /* a fresh blob id cannot be dead: an index bug */
    if (err != -EAGAIN) w->some_committed = true; /* applied, or maybe applied */
    ext_finish(w, err, index);
}

/* Queue PT's extents for the next WRITE_BATCH. */
static void commit_part(struct write_part *pt, uint8_t kind, uint64_t blob_id, uint32_t partition)
{
    struct write_ctx *w = pt->ctx;
    uint64_t deadline = util_mono_ms() + PROXY_IO_WRITE_DEADLINE_MS;
    uint32_t n = pt->cut->n_pieces;
    struct write_ext *x = &w->exts[pt->cut->first_piece];
    for (uint32_t i = 0; i < n; i++, x++) {
        x->rec.cb = on_committed;
        x->rec.data = x;
        x->rec.deadline_ms = deadline;
        x->rec.w = (struct idxcmd_write){
            .vol_id = w->m.vol_id,
            .generation = w->m.generation,
            .off = x->cut->vol_off,
            .len = x->cut->len,
            .kind = kind,
            .blob_id = blob_id,
            .partition = partition,
            .blob_off = kind == IDXCMD_W_DATA ? x->cut->blob_off : 0,
            .blob_len = kind == IDXCMD_W_DATA ? pt->cut->len : 0,
            .blob_csum = kind == IDXCMD_W_DATA ? pt->csum : 0,
        };
    }
    /* A record can finish inside proxy_cmd_write_add (a batch that cannot
     * be encoded fails at once), and the last one to finish frees W: hold a
     * count until all are queued. */
    w->pending++;
    x = &w->exts[pt->cut->first_piece];
    for (uint32_t i = 0; i < n; i++) proxy_cmd_write_add(w->p, &x[i].rec);
    ext_finish(w, 0, 0);
}

static void put_part(struct write_part *pt);

static void on_put(struct proxy_blobs_put *put, int err)
{
    struct write_part *pt = put->data;
    struct write_ctx *w = pt->ctx;
    if (err == 0) {
        commit_part(pt, IDXCMD_W_DATA, put->blob_id, put->partition);
        return;
    }
    /* The ids and copies already written become orphans for the sweeper;
     * try another partition under a new id. */
    pt->last_part = put->partition;
    struct log_ids ids = {.vol = w->vol, .ship = w->trace, .blob = put->blob_id};
    log_debug_ids(w->p->tag, &ids, "put to partition %u failed: %s (try %u of %u)",
                  put->partition, bd_strerror(err), pt->tries + 1, PUT_TRIES);
    if (++pt->tries < PUT_TRIES && !w->p->stopping) {
        put_part(pt);
        return;
    }
    part_fail(pt, err == -ENOSPC ? -ENOSPC : -EAGAIN);
}

static void put_part(struct write_part *pt)
{
    struct write_ctx *w = pt->ctx;
    struct proxy *p = w->p;
    struct index_part placed, *part = &placed;
    if (!place(p, pt->last_part, &placed)) {
        log_warn(p->tag, "no open partition (three blob servers up and below the fill "
                 "limit): write refused for now");
        part_fail(pt, -EAGAIN);
        return;
    }
    uint64_t id = proxy_mgmt_lease_take(p);
    if (!id) {
        /* The lease ran dry since the write was admitted: the agent
         * resends (EAGAIN), by when the refill has arrived. */
        part_fail(pt, -EAGAIN);
        return;
    }
    pt->put = (struct proxy_blobs_put){
        .cb = on_put,
        .data = pt,
        .blob_id = id,
        .partition = part->id,
        .epoch = part->epoch,
        .csum = pt->csum,
        .buf = w->m.data + pt->cut->off,
        .len = pt->cut->len,
        .compressible = true,
    };
    memcpy(pt->put.nodes, part->nodes, sizeof(pt->put.nodes));
    struct log_ids ids = {.vol = w->vol, .ship = w->trace, .blob = id};
    log_debug_ids(p->tag, &ids, "put %u bytes to partition %u epoch %llu on %llu,%llu,%llu",
                  pt->cut->len, part->id, (unsigned long long)part->epoch,
                  (unsigned long long)part->nodes[0], (unsigned long long)part->nodes[1],
                  (unsigned long long)part->nodes[2]);
    proxy_blobs_put3(p->blobs, &pt->put);
}

static void write_start_parts(struct write_ctx *w)
{
    /* A part can fail synchronously (no partition to place it on), and the
     * last extent to finish frees W: hold one count until every part is out. */
    bool index_only = w->m.flags & (WIRE_WRITE_ZERO | WIRE_WRITE_TRIM);
    uint8_t kind = (w->m.flags & WIRE_WRITE_ZERO) ? IDXCMD_W_ZERO : IDXCMD_W_TRIM;
    uint32_t n = w->size.n_parts;
    w->pending++;
    for (uint32_t i = 0; i < n; i++) {
        struct write_part *pt = &w->parts[i];
        if (index_only) commit_part(pt, kind, 0, 0);
        else put_part(pt);
    }
    if (--w->pending == 0) write_done(w);
}

static void on_lease(struct proxy_mgmt_lease_wait *lw, int err)
{
    struct write_ctx *w = lw->data;
    if (err == 0) {
        write_start_parts(w);
    } else {
        w->err = err;
        write_done(w);
    }
}

/* Its volume's turn came (turnq.h): take blob ids, then put the parts. */
static void write_turn(struct turnq_item *it)
{
    struct write_ctx *w = (struct write_ctx *)((char *)it - offsetof(struct write_ctx, turn));
    bool index_only = w->m.flags & (WIRE_WRITE_ZERO | WIRE_WRITE_TRIM);
    if (!index_only && proxy_mgmt_lease_left(w->p) < w->size.n_parts) {
        w->lease_wait = (struct proxy_mgmt_lease_wait){.cb = on_lease, .data = w,
                                                       .n = w->size.n_parts};
        proxy_mgmt_lease_wait(w->p, &w->lease_wait);
        return;
    }
    write_start_parts(w);
}

/* The proxy stops before the write's turn came: nothing was done. */
static void write_turn_fail(struct turnq_item *it, int err)
{
    struct write_ctx *w = (struct write_ctx *)((char *)it - offsetof(struct write_ctx, turn));
    w->err = err;
    write_done(w);
}

/* The write context for M and its plan SIZE, everything in one allocation;
 * NULL if out of memory. */
static struct write_ctx *write_new(const struct wire_vol_write_req *m,
                                   const struct proxy_plan_write_size *size)
{
    uint32_t np = size->n_parts, nx = size->max_pieces;
    /* Largest alignment first: every struct but proxy_plan_part holds a
     * 64-bit member, so each array starts 8-byte aligned. */
    size_t bytes = sizeof(struct write_ctx) + np * sizeof(struct write_part) +
                   nx * sizeof(struct write_ext) + nx * sizeof(struct proxy_plan_piece) +
                   np * sizeof(struct proxy_plan_part);
    struct write_ctx *w = calloc(1, bytes);
    if (!w) return NULL;
    w->parts = (struct write_part *)(w + 1);
    w->exts = (struct write_ext *)(w->parts + np);
    w->cut_pieces = (struct proxy_plan_piece *)(w->exts + nx);
    w->cut_parts = (struct proxy_plan_part *)(w->cut_pieces + nx);
    w->size = *size;
    w->n_exts = proxy_plan_write_cut(m, size, w->cut_parts, w->cut_pieces);
    for (uint32_t i = 0; i < np; i++) {
        w->parts[i].ctx = w;
        w->parts[i].cut = &w->cut_parts[i];
    }
    for (uint32_t i = 0; i < w->n_exts; i++) {
        w->exts[i].pt = &w->parts[w->cut_pieces[i].part];
        w->exts[i].cut = &w->cut_pieces[i];
    }
    return w;
}

/* The agent a request comes from, as its certificate names it, or NULL
 * when that is not known here: no TLS (insecure_plaintext), or a request a
 * peer proxy forwarded (which checked it where it arrived). */
static const char *writer_of(struct conn *c)
{
    const struct tls_identity *id = conn_peer_identity(c);
    return id && id->role == WIRE_ROLE_AGENT ? id->id : NULL;
}

static void handle_write(struct proxy *p, struct conn *c, struct conn_frame *f)
{
    struct wire_vol_write_req m;
    if (wire_decode_vol_write_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed VOL_WRITE");
        return;
    }
    int rc = proxy_plan_write_check(&m);
    if (rc < 0) {
        conn_reply_error(c, &f->hdr, rc, 0,
                         "extents must be non-empty multiples of %u, ascending, within 2^64",
                         BD_BLOCK_SIZE);
        return;
    }
    bool index_only = m.flags & (WIRE_WRITE_ZERO | WIRE_WRITE_TRIM);
    if (!index_only && util_xxh3(m.data, m.data_len) != m.csum) {
        metric_inc(p->c_errors);
        conn_reply_error(c, &f->hdr, -BD_ECSUM, 0, "data does not match its checksum");
        return;
    }
    /* Early checks against the index; apply decides again (C10). */
    if (proxy_index_read_begin(p) < 0) {
        conn_reply_error(c, &f->hdr, -EAGAIN, 0, "index busy");
        return;
    }
    struct index_vol v;
    rc = index_vol_by_id(p->rd, m.vol_id, &v);
    proxy_index_read_end(p);
    if (rc < 0) {
        conn_reply_error(c, &f->hdr, rc, 0, "volume %llu: %s", (unsigned long long)m.vol_id,
                         bd_strerror(rc));
        return;
    }
    if (proxy_plan_write_in_volume(&m, v.size) < 0) {
        conn_reply_error(c, &f->hdr, -ERANGE, 0, "write past the end of %s", v.name);
        return;
    }
    if (proxy_plan_fence(&v, m.generation, writer_of(c)) < 0) {
        metric_inc(p->c_fenced);
        conn_reply_error(c, &f->hdr, -BD_EFENCED, 0,
                         "generation %llu is not the current attach (%llu) of %s",
                         (unsigned long long)m.generation, (unsigned long long)v.generation,
                         v.name);
        return;
    }
    if (!index_only && proxy_mgmt_index_full(p)) {
        conn_reply_error(c, &f->hdr, -ENOSPC, 0,
                         "the index is full: delete volumes or snapshots to write again");
        return;
    }
    struct proxy_plan_write_size size;
    rc = proxy_plan_write_size(&m, p->cfg->blob_max_bytes, &size);
    if (rc < 0) {
        conn_reply_error(c, &f->hdr, rc, 0, "cannot cut a write into blobs of %llu bytes",
                         (unsigned long long)p->cfg->blob_max_bytes);
        return;
    }
    struct write_ctx *w = write_new(&m, &size);
    if (!w) {
        conn_reply_error(c, &f->hdr, -ENOMEM, 0, "out of memory");
        return;
    }
    w->p = p;
    w->c = c;
    w->hdr = f->hdr;
    w->body = conn_frame_take(f);
    w->m = m; /* its data and ext pointers point into the body we now own */
    w->t0_us = util_mono_ns() / 1000;
    w->trace = wire_vol_write_trace_id(&m);
    util_strlcpy(w->vol, v.name, sizeof(w->vol));
    struct log_ids ids = {.vol = w->vol, .ship = w->trace};
    log_debug_ids(p->tag, &ids, "write [%llu+%u] gen %llu%s: %u blob(s), %u extent(s)",
                  (unsigned long long)m.off, m.len, (unsigned long long)m.generation,
                  (m.flags & WIRE_WRITE_ZERO) ? " zero" : (m.flags & WIRE_WRITE_TRIM) ? " trim" : "",
                  index_only ? 0 : size.n_parts, w->n_exts);
    for (uint32_t i = 0; i < size.n_parts; i++) {
        const struct proxy_plan_part *cut = w->parts[i].cut;
        w->parts[i].csum = index_only          ? 0
                           : size.n_parts == 1 ? m.csum
                                               : util_xxh3(w->m.data + cut->off, cut->len);
    }
    w->pending = w->n_exts;
    metric_inc(p->c_writes);
    metric_add(p->c_write_bytes, m.len);
    w->turn = (struct turnq_item){.cost = index_only ? 0 : m.data_len,
                                     .start = write_turn, .fail = write_turn_fail};
    turnq_submit(p->wq, m.vol_id, &w->turn);
}

/* Forwarding to the leader.  A follower that cannot answer yet, because
 * it lags the leader (a lookup of a volume created a moment ago, a read
 * whose min_index this follower has not applied: the leader answered the
 * write, but followers learn the new commit index only with the next
 * AppendEntries, up to a heartbeat later), sends the request on to the
 * leader once and relays its answer, payload included, instead of waiting.
 * A proxy never forwards a request that came from a proxy. */
struct forward {
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
    struct forward *fw = call->data;
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
    struct link *l = proxy_peers_link(p, leader);
    if (!l || !link_is_up(l)) return false;
    struct forward *fw = calloc(1, sizeof(*fw));
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

struct read_ctx {
    struct proxy *p;
    struct conn *c;
    struct wire_hdr hdr;
    uint16_t type;                 /* WIRE_VOL_READ, WIRE_VOL_MAP or WIRE_VOL_LEASE */
    uint64_t vol_id, off, len;
    char vol[INDEX_NAME_MAX + 1];  /* the volume's name once looked up ("" before) */
    bool want_map;
    char reader[WIRE_ID_MAX + 1];  /* the agent its certificate names; "" unchecked */
    struct proxy_mgmt_wait wait;
    uint64_t t0_us;
    uint8_t *buf;
    struct index_piece *pieces;    /* the index's map of the range */
    uint32_t n_pieces;
    uint32_t pending;
    int err;
    uint64_t applied;
    struct proxy_plan_read_step *steps; /* VOL_READ, VOL_LEASE: one per piece */
    uint64_t (*step_nodes)[PROXY_BLOBS_REPLICAS]; /* VOL_LEASE: each FETCH step's replicas */
    struct proxy_blobs_get *gets;  /* VOL_READ: one per piece (FETCH steps used) */
};

static void read_free(struct read_ctx *r)
{
    if (r->gets && r->n_pieces == 1) free(r->gets[0].body);
    free(r->pieces);
    free(r->steps);
    free(r->step_nodes);
    free(r->gets);
    free(r);
}

static void release_buf(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    free(arg);
}

static void lease_reply(struct read_ctx *r);

static void read_reply(struct read_ctx *r)
{
    struct proxy *p = r->p;
    if (r->type == WIRE_VOL_READ)
        proxy_volstats_record(p->volstats, util_mono_ms(), r->vol_id, r->vol, PROXY_VOLSTATS_READ,
                              r->len, util_mono_ns() / 1000 - r->t0_us, r->err != 0);
    if (r->err) {
        metric_inc(p->c_errors);
        conn_reply_error(r->c, &r->hdr, r->err, 0, "read vol %llu off %llu: %s",
                         (unsigned long long)r->vol_id, (unsigned long long)r->off,
                         bd_strerror(r->err));
        free(r->buf);
        read_free(r);
        return;
    }
    if (r->type == WIRE_VOL_LEASE) {
        lease_reply(r);
        return;
    }
    static struct wire_map_range ranges[WIRE_MAP_MAX];
    uint32_t nr = r->want_map ? proxy_plan_map_ranges(r->pieces, r->n_pieces, ranges, WIRE_MAP_MAX)
                              : 0;
    uint8_t fields[WIRE_MAP_MAX * 20 + 64];
    int n;
    if (r->type == WIRE_VOL_MAP) {
        struct wire_vol_map_resp m = {.n = nr, .ranges_in = ranges};
        n = wire_encode_vol_map_resp(fields, sizeof(fields), &m);
        conn_reply(r->c, &r->hdr, fields, (size_t)n, NULL);
        read_free(r);
        return;
    }
    struct wire_vol_read_resp m = {.raft_index = r->applied,
                                   .n_ranges = nr,
                                   .ranges_in = ranges,
                                   .data_len = (uint32_t)r->len};
    struct conn_payload pl;
    if (r->buf) {
        m.csum = util_xxh3(r->buf, r->len);
        pl = (struct conn_payload){.data = r->buf, .len = r->len, .release = release_buf,
                                   .arg = r->buf};
    } else {
        /* One blob range is the whole reply (read_go): send the blob
         * server's frame as it came, under the checksum proxy_blobs_get
         * verified against those very bytes. */
        struct proxy_blobs_get *g = &r->gets[0];
        m.csum = g->csum;
        pl = (struct conn_payload){.data = g->got, .len = r->len, .release = release_buf,
                                   .arg = g->body};
        g->body = NULL;
    }
    n = wire_encode_vol_read_resp(fields, sizeof(fields), &m);
    metrics_observe_us(p->h_read, util_mono_ns() / 1000 - r->t0_us);
    conn_reply(r->c, &r->hdr, fields, (size_t)n, &pl);
    read_free(r);
}

/* VOL_LEASE's answer (wire.h): the steps as entries, up to WIRE_LEASE_MAX
 * of them and WIRE_LEASE_NODES_MAX servers, with the servers' addresses
 * as this proxy's heartbeats last gave them. */
static void lease_reply(struct read_ctx *r)
{
    struct proxy *p = r->p;
    static struct wire_lease_entry ents[WIRE_LEASE_MAX];
    static struct wire_lease_node nodes[WIRE_LEASE_NODES_MAX];
    static char addrs[WIRE_LEASE_NODES_MAX][WIRE_LEASE_ADDR_MAX + 1];
    uint32_t n = 0, nn = 0;
    uint64_t end = r->off;
    for (uint32_t i = 0; i < r->n_pieces && n < WIRE_LEASE_MAX; i++) {
        const struct proxy_plan_read_step *st = &r->steps[i];
        struct wire_lease_entry e = {.off = r->off + st->buf_off, .len = st->len};
        if (st->kind == PROXY_PLAN_READ_FETCH) {
            e.blob_id = st->blob_id;
            e.blob_off = st->blob_off;
            e.partition = st->partition;
            uint32_t nn_before = nn;
            bool full = false;
            /* Only the replicas good to read now (up, not being filled by a
             * move): the agent spreads its reads over them, and a read
             * none of them serves comes to a proxy anyway. */
            unsigned good = proxy_blobs_read_order(p->blobs, st->partition, r->step_nodes[i]);
            for (unsigned k = good ? good : PROXY_BLOBS_REPLICAS; k < PROXY_BLOBS_REPLICAS; k++)
                r->step_nodes[i][k] = 0;
            for (int k = 0; k < PROXY_BLOBS_REPLICAS; k++) {
                uint64_t id = r->step_nodes[i][k];
                e.nodes[k] = id;
                uint32_t j = 0;
                while (j < nn && nodes[j].id != id) j++;
                if (id == 0 || j < nn) continue;
                struct proxy_blobs_node info;
                if (!proxy_blobs_info(p->blobs, id, &info) || !info.addr[0] ||
                    strlen(info.addr) > WIRE_LEASE_ADDR_MAX)
                    continue; /* the agent reads the other replicas, or asks us */
                if (nn == WIRE_LEASE_NODES_MAX) {
                    full = true;
                    break;
                }
                util_strlcpy(addrs[nn], info.addr, sizeof(addrs[nn]));
                nodes[nn] = (struct wire_lease_node){.id = id, .addr = wire_cstr(addrs[nn])};
                nn++;
            }
            if (full) {
                nn = nn_before; /* stop short before this entry */
                break;
            }
        }
        ents[n++] = e;
        end = e.off + e.len;
    }
    struct wire_vol_lease_resp m = {.raft_index = r->applied,
                                    .lease_ms = (uint32_t)p->cfg->map_lease_ms,
                                    .timeout_ms = (uint32_t)p->cfg->read_timeout_ms,
                                    .end = end, .n_nodes = nn, .nodes_in = nodes, .n = n,
                                    .entries_in = ents};
    static uint8_t fields[WIRE_MAX_FIELDS];
    int len = wire_encode_vol_lease_resp(fields, sizeof(fields), &m);
    if (len < 0 || n == 0) {
        conn_reply_error(r->c, &r->hdr, len < 0 ? len : -EIO, 0,
                         "lease vol %llu off %llu: cannot encode the map",
                         (unsigned long long)r->vol_id, (unsigned long long)r->off);
    } else {
        metric_inc(p->c_leases);
        conn_reply(r->c, &r->hdr, fields, (size_t)len, NULL);
    }
    read_free(r);
}

static void on_get(struct proxy_blobs_get *g, int err)
{
    struct read_ctx *r = g->data;
    if (err && !r->err) r->err = err == -BD_ECSUM ? -EIO : err == -EHOSTDOWN ? -EIO : err;
    if (--r->pending == 0) read_reply(r);
}

/* Map the range under one read txn; 0 or an error to answer with. */
static int read_map(struct read_ctx *r)
{
    struct proxy *p = r->p;
    int rc = proxy_index_read_begin(p);
    if (rc < 0) return -EAGAIN;
    struct index_vol v;
    rc = index_vol_by_id(p->rd, r->vol_id, &v);
    /* An agent reads the volumes attached to it, and one it still holds
     * read-write (a detached volume it drains). */
    size_t rl = strlen(r->reader);
    if (rc == 0 && rl && index_vol_may_attach(&v, r->reader, rl, false) < 0 &&
        index_vol_may_attach(&v, r->reader, rl, true) < 0) {
        log_warn(p->tag, "wire %s: refused a read of vol %llu by agent \"%s\": not attached to it",
                 conn_peer(r->c), (unsigned long long)r->vol_id, r->reader);
        rc = -EACCES;
    }
    if (rc == 0) util_strlcpy(r->vol, v.name, sizeof(r->vol));
    if (rc == 0) rc = proxy_plan_in_volume(r->off, r->len, v.size);
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
        rc = index_map(p->rd, r->vol_id, at, end - at, r->pieces + r->n_pieces,
                       cap - r->n_pieces, &got);
        if (rc < 0 || got == 0) break;
        r->n_pieces += got;
        const struct index_piece *last = &r->pieces[r->n_pieces - 1];
        at = last->off + last->len;
    }
    r->applied = index_applied(p->rd);
    if (rc == 0 && r->type != WIRE_VOL_MAP) {
        /* What fills each byte of the reply (the plan), and each fetch's
         * replicas, resolved now inside the same txn. */
        size_t n = r->n_pieces ? r->n_pieces : 1;
        r->steps = calloc(n, sizeof(*r->steps));
        r->gets = calloc(n, sizeof(*r->gets));
        if (r->type == WIRE_VOL_LEASE) r->step_nodes = calloc(n, sizeof(*r->step_nodes));
        if (!r->steps || !r->gets || (r->type == WIRE_VOL_LEASE && !r->step_nodes))
            rc = -ENOMEM;
        if (rc == 0) {
            rc = proxy_plan_read_resolve(r->off, r->len, r->pieces, r->n_pieces, r->steps);
            if (rc < 0)
                log_error(p->tag, "the index mapped vol %llu off %llu len %llu into pieces "
                          "that do not tile it", (unsigned long long)r->vol_id,
                          (unsigned long long)r->off, (unsigned long long)r->len);
        }
        struct index_part part;
        bool have_part = false; /* consecutive pieces mostly share a partition */
        for (uint32_t i = 0; rc == 0 && i < r->n_pieces; i++) {
            const struct proxy_plan_read_step *st = &r->steps[i];
            if (st->kind != PROXY_PLAN_READ_FETCH) continue;
            if (!have_part || part.id != st->partition)
                rc = index_part_get(p->rd, st->partition, &part);
            have_part = rc == 0;
            if (rc < 0) {
                log_error(p->tag, "blob %llu names partition %u: %s",
                          (unsigned long long)st->blob_id, st->partition, bd_strerror(rc));
                rc = -EIO;
                break;
            }
            if (r->step_nodes) memcpy(r->step_nodes[i], part.nodes, sizeof(r->step_nodes[i]));
            struct proxy_blobs_get *g = &r->gets[i];
            g->blob_id = st->blob_id;
            g->partition = st->partition;
            memcpy(g->nodes, part.nodes, sizeof(g->nodes));
            g->off = st->blob_off;
            g->len = st->len;
        }
    }
    proxy_index_read_end(p);
    return rc;
}

static void read_go(struct read_ctx *r)
{
    struct proxy *p = r->p;
    int rc = read_map(r);
    if (rc < 0) {
        r->err = rc;
        read_reply(r);
        return;
    }
    if (r->type != WIRE_VOL_READ) {
        read_reply(r); /* the map, or the lease: no data */
        return;
    }
    if (r->n_pieces == 1 && r->steps[0].kind == PROXY_PLAN_READ_FETCH && r->len > 0 &&
        BD_ALWAYS(r->steps[0].buf_off == 0 && r->steps[0].len == r->len)) {
        /* The common large read: one blob range covers it all.  Keep the
         * blob server's reply and send it on (read_reply): no buffer, no
         * copy, no second checksum pass over the payload. */
        struct proxy_blobs_get *g = &r->gets[0];
        g->cb = on_get;
        g->data = r;
        g->dst = NULL;
        r->pending = 1;
        proxy_blobs_get(p->blobs, g);
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
        const struct proxy_plan_read_step *st = &r->steps[i];
        uint8_t *dst = r->buf + st->buf_off;
        if (st->kind == PROXY_PLAN_READ_ZERO) {
            memset(dst, 0, st->len);
            continue;
        }
        struct proxy_blobs_get *g = &r->gets[i];
        g->cb = on_get;
        g->data = r;
        g->dst = dst;
        r->pending++;
        proxy_blobs_get(p->blobs, g);
    }
    if (--r->pending == 0) read_reply(r);
}

static void on_applied_wait(struct proxy_mgmt_wait *w, int err)
{
    struct read_ctx *r = w->data;
    if (err) {
        r->err = err;
        read_reply(r);
        return;
    }
    read_go(r);
}

/* A read or map refused before anything was allocated for it. */
static void read_refuse(struct proxy *p, struct conn *c, const struct wire_hdr *h,
                        uint64_t vol_id, uint64_t off, uint64_t len, int err)
{
    metric_inc(p->c_errors);
    if (err == -EMSGSIZE)
        conn_reply_error(c, h, err, 0,
                         "read vol %llu off %llu: %llu bytes is more than one reply carries "
                         "(%u)", (unsigned long long)vol_id, (unsigned long long)off,
                         (unsigned long long)len, (unsigned)PROXY_PLAN_READ_MAX_LEN);
    else
        conn_reply_error(c, h, err, 0, "read vol %llu off %llu: %s", (unsigned long long)vol_id,
                         (unsigned long long)off, bd_strerror(err));
}

static void handle_read(struct proxy *p, struct conn *c, struct conn_frame *f)
{
    uint64_t vol_id, off, len, min_index;
    bool want_map;
    if (f->hdr.type == WIRE_VOL_READ) {
        struct wire_vol_read_req m;
        if (wire_decode_vol_read_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
            conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed VOL_READ");
            return;
        }
        vol_id = m.vol_id;
        off = m.off;
        len = m.len;
        want_map = m.flags & WIRE_READ_MAP;
        min_index = m.min_index;
        metric_inc(p->c_reads);
        metric_add(p->c_read_bytes, m.len);
    } else if (f->hdr.type == WIRE_VOL_LEASE) {
        if (!p->cfg->map_lease_ms) {
            conn_reply_error(c, &f->hdr, -ENOTSUP, 0, "map leases are off (map_lease_ms 0)");
            return;
        }
        struct wire_vol_lease_req m;
        if (wire_decode_vol_lease_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
            conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed VOL_LEASE");
            return;
        }
        vol_id = m.vol_id;
        off = m.off;
        len = m.len;
        want_map = false;
        min_index = m.min_index;
    } else {
        struct wire_vol_map_req m;
        if (wire_decode_vol_map_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
            conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed VOL_MAP");
            return;
        }
        vol_id = m.vol_id;
        off = m.off;
        len = m.len;
        want_map = true;
        min_index = m.min_index;
    }
    int rc = proxy_plan_read_check(off, len, f->hdr.type != WIRE_VOL_MAP);
    if (rc < 0) {
        read_refuse(p, c, &f->hdr, vol_id, off, len, rc);
        return;
    }
    if (!proxy_index_has_leader(p)) {
        /* Possibly cut off from the majority, hence stale: send the agent
         * elsewhere rather than serve old data or lose a GC race. */
        read_refuse(p, c, &f->hdr, vol_id, off, len, -EAGAIN);
        return;
    }
    if (min_index > consensus_last_applied(p->cons) &&
        forward_to_leader(p, c, f, (uint32_t)p->cfg->read_timeout_ms))
        return;
    struct read_ctx *r = calloc(1, sizeof(*r));
    if (!r) {
        conn_reply_error(c, &f->hdr, -ENOMEM, 0, "out of memory");
        return;
    }
    r->p = p;
    r->c = c;
    r->hdr = f->hdr;
    r->type = f->hdr.type;
    r->t0_us = util_mono_ns() / 1000;
    r->vol_id = vol_id;
    r->off = off;
    r->len = len;
    r->want_map = want_map;
    const char *who = writer_of(c);
    if (who) util_strlcpy(r->reader, who, sizeof(r->reader));
    r->wait = (struct proxy_mgmt_wait){.cb = on_applied_wait, .data = r, .index = min_index,
                                       .deadline_ms = util_mono_ms() + p->cfg->read_timeout_ms};
    proxy_mgmt_wait_add(p, &r->wait);
}

/* ---- attach, detach, flush, list ------------------------------------------------------ */

struct attach_ctx {
    struct proxy_cmd cmd;
    struct proxy *p;
    struct conn *c;
    struct wire_hdr hdr;
    uint32_t flags;
    uint8_t buf[600];
    struct proxy_mgmt_wait wait;         /* attach: until this proxy applied it */
    struct index_vol v;        /* attach: what to answer */
    uint64_t generation, index;
    uint64_t base;             /* attach: the generation it raises */
    char name[WIRE_NAME_MAX + 1], agent[WIRE_ID_MAX + 1]; /* attach: for the refusal's log */
};

static void send_attach(struct conn *c, const struct wire_hdr *h, const struct index_vol *v,
                        uint64_t generation, uint32_t flags, uint64_t index)
{
    struct wire_vol_attach_resp r = {.vol_id = v->id, .size = v->size,
                                     .generation = generation, .block_size = v->block_size,
                                     .flags = flags, .raft_index = index,
                                     .client = wire_cstr(v->assign_client)};
    uint8_t buf[64 + WIRE_ID_MAX];
    int n = wire_encode_vol_attach_resp(buf, sizeof(buf), &r);
    conn_reply(c, h, buf, (size_t)n, NULL);
}

static void on_attach_applied(struct proxy_mgmt_wait *w, int err)
{
    struct attach_ctx *a = w->data;
    if (err) {
        conn_reply_error(a->c, &a->hdr, -EAGAIN, 0, "attach not applied here yet: %s",
                         bd_strerror(err));
        free(a);
        return;
    }
    /* The assignment's client, as this proxy has applied it (at or after
     * the attach's entry). */
    struct index_vol v;
    if (proxy_index_read_begin(a->p) == 0) {
        if (index_vol_by_name(a->p->rd, a->name, strlen(a->name), &v) == 0 && v.id == a->v.id)
            util_strlcpy(a->v.assign_client, v.assign_client, sizeof(a->v.assign_client));
        proxy_index_read_end(a->p);
    }
    send_attach(a->c, &a->hdr, &a->v, a->generation, a->flags & WIRE_ATTACH_RO, a->index);
    free(a);
}

/* A read-write attach refused because the generation is no longer its
 * base.  From base 0 that is the first attach of a volume used before, so
 * only a base the agent had learned is worth a line: it is what a late
 * copy of an attach (or another writer's attach) looks like. */
static void attach_moved_log(struct proxy *p, const char *name, const char *agent,
                             uint64_t base, uint64_t generation)
{
    if (base)
        log_info(p->tag, "vol %s: read-write attach by agent \"%s\" on generation %llu refused: "
                 "it is at generation %llu (a late copy, or another attach came first)", name,
                 agent, (unsigned long long)base, (unsigned long long)generation);
}

static void on_attached(struct proxy_cmd *cmd, int err, uint64_t index,
                        const struct idxcmd_result *res)
{
    struct attach_ctx *a = bd_container_of(cmd, struct attach_ctx, cmd);
    if (err == 0 && res->status == IDXCMD_ST_FENCED) {
        /* The generation moved past the base: a copy of this attach, or
         * another attach, came first.  Nothing changed. */
        attach_moved_log(a->p, a->name, a->agent, a->base, res->generation);
        conn_reply_error(a->c, &a->hdr, -BD_EFENCED, res->generation,
                         "attach of %s on generation %llu: it is at generation %llu now",
                         a->name, (unsigned long long)a->base,
                         (unsigned long long)res->generation);
        free(a);
        return;
    }
    if (err == 0 && res->status != IDXCMD_ST_OK) err = idxcmd_status_to_err(res->status);
    if (err == -EACCES) {
        log_warn(a->p->tag, "wire %s: refused the read-write VOL_ATTACH of %s by agent \"%s\": "
                 "not attached to it read-write", conn_peer(a->c), a->name, a->agent);
        conn_reply_error(a->c, &a->hdr, err, 0, "%s is not attached to agent %s read-write",
                         a->name, a->agent);
        free(a);
        return;
    }
    if (err) {
        conn_reply_error(a->c, &a->hdr, err, 0, "attach: %s", bd_strerror(err));
        free(a);
        return;
    }
    /* One line per generation: a fence happens here (C10), and a later
     * EFENCED is explained by the attach that raised the generation. */
    log_info(a->p->tag, "vol %s: read-write attach by agent \"%s\" applied: generation %llu "
             "(raft index %llu, %d tries)", a->name, a->agent,
             (unsigned long long)res->generation, (unsigned long long)index, cmd->attempts);
    /* Answer once this proxy has applied the new generation: the agent's
     * next write is checked against this proxy's index, which on a
     * follower may still hold the old generation (a spurious EFENCED). */
    a->v = (struct index_vol){.id = res->id, .size = res->size, .block_size = res->block_size};
    a->generation = res->generation;
    a->index = index;
    a->wait = (struct proxy_mgmt_wait){.cb = on_attach_applied, .data = a, .index = index,
                                       .deadline_ms = util_mono_ms() + PROXY_IO_WRITE_DEADLINE_MS};
    proxy_mgmt_wait_add(a->p, &a->wait);
}

/* The agent a VOL_ATTACH or VOL_LIST asks for, AGENT as the message
 * names it: refused (false, with the reply sent) when the certificate
 * names another. */
static bool agent_is_peer(struct proxy *p, struct conn *c, struct conn_frame *f,
                          const char *what, const char *agent)
{
    const char *who = writer_of(c);
    if (!who || strcmp(who, agent) == 0) return true;
    log_warn(p->tag, "wire %s: refused %s as agent \"%s\": its certificate names agent \"%s\"",
             conn_peer(c), what, agent, who);
    conn_reply_error(c, &f->hdr, -EACCES, 0, "%s identity is not the certificate's", what);
    return false;
}

static void handle_attach(struct proxy *p, struct conn *c, struct conn_frame *f)
{
    struct wire_vol_attach_req m;
    char name[WIRE_NAME_MAX + 1], agent[WIRE_ID_MAX + 1];
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
    /* An agent attaches as itself: the identity in the message must be
     * the one its certificate names (C10 rests on it). */
    if (!agent_is_peer(p, c, f, "VOL_ATTACH", agent)) return;
    if (m.flags & (WIRE_ATTACH_INFO | WIRE_ATTACH_RO)) {
        /* Look up only: no raft entry, no generation bump. */
        if (!proxy_index_has_leader(p)) {
            conn_reply_error(c, &f->hdr, -EAGAIN, 0, "no raft leader");
            return;
        }
        if (proxy_index_read_begin(p) < 0) {
            conn_reply_error(c, &f->hdr, -EAGAIN, 0, "index busy");
            return;
        }
        struct index_vol v;
        int rc = index_vol_by_name(p->rd, name, strlen(name), &v);
        uint64_t applied = index_applied(p->rd);
        proxy_index_read_end(p);
        /* A volume not assigned to this agent is, to it, no volume. */
        if (rc == 0 && index_vol_may_attach(&v, agent, strlen(agent), false) < 0) rc = -ENOENT;
        if (rc == -ENOENT && forward_to_leader(p, c, f, 5000)) return;
        if (rc == -ENOENT && (m.flags & WIRE_ATTACH_RO) && !(m.flags & WIRE_ATTACH_INFO))
            log_warn(p->tag, "wire %s: refused the read-only VOL_ATTACH of %s by agent \"%s\": "
                     "no such volume attached to it", conn_peer(c), name, agent);
        if (rc < 0) {
            conn_reply_error(c, &f->hdr, rc, 0, "volume %s: %s", name,
                             rc == -ENOENT ? "not attached to this agent" : bd_strerror(rc));
            return;
        }
        uint32_t flags = (m.flags & WIRE_ATTACH_RO) |
                         (v.assign_mode == INDEX_ASSIGN_RO ? WIRE_ATTACH_RO : 0);
        send_attach(c, &f->hdr, &v, v.generation, flags, applied);
        return;
    }
    if (proxy_index_read_begin(p) == 0) {
        struct index_vol v;
        int rc = index_vol_by_name(p->rd, name, strlen(name), &v);
        proxy_index_read_end(p);
        if (rc == 0 && index_vol_may_attach(&v, agent, strlen(agent), true) == 0 &&
            v.generation > m.base_generation) {
            attach_moved_log(p, name, agent, m.base_generation, v.generation);
            conn_reply_error(c, &f->hdr, -BD_EFENCED, v.generation,
                             "attach of %s on generation %llu: it is at generation %llu",
                             name, (unsigned long long)m.base_generation,
                             (unsigned long long)v.generation);
            return;
        }
    }
    struct attach_ctx *a = calloc(1, sizeof(*a));
    if (!a) {
        conn_reply_error(c, &f->hdr, -ENOMEM, 0, "out of memory");
        return;
    }
    struct idxcmd cmd = {.type = IDXCMD_ATTACH};
    cmd.u.attach.name = idxcmd_cstr(name);
    cmd.u.attach.agent = idxcmd_cstr(agent);
    cmd.u.attach.flags = 0;
    cmd.u.attach.base_generation = m.base_generation;
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
    a->base = m.base_generation;
    util_strlcpy(a->name, name, sizeof(a->name));
    util_strlcpy(a->agent, agent, sizeof(a->agent));
    a->cmd = (struct proxy_cmd){.cb = on_attached, .buf = a->buf, .len = (size_t)n,
                                .deadline_ms = util_mono_ms() + PROXY_IO_WRITE_DEADLINE_MS};
    proxy_cmd_submit(p, &a->cmd);
}

static void on_detached(struct proxy_cmd *cmd, int err, uint64_t index,
                        const struct idxcmd_result *res)
{
    struct attach_ctx *a = bd_container_of(cmd, struct attach_ctx, cmd);
    if (err == 0 && res->status != IDXCMD_ST_OK) err = idxcmd_status_to_err(res->status);
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
    struct attach_ctx *a = calloc(1, sizeof(*a));
    if (!a) {
        conn_reply_error(c, &f->hdr, -ENOMEM, 0, "out of memory");
        return;
    }
    struct idxcmd cmd = {.type = IDXCMD_DETACH};
    cmd.u.detach.vol_id = m.vol_id;
    cmd.u.detach.generation = m.generation;
    cmd.u.detach.agent = idxcmd_cstr(agent);
    int n = idxcmd_encode(a->buf, sizeof(a->buf), &cmd);
    if (n < 0) {
        free(a);
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "bad detach");
        return;
    }
    a->p = p;
    a->c = c;
    a->hdr = f->hdr;
    a->cmd = (struct proxy_cmd){.cb = on_detached, .buf = a->buf, .len = (size_t)n,
                                .deadline_ms = util_mono_ms() + PROXY_IO_WRITE_DEADLINE_MS};
    proxy_cmd_submit(p, &a->cmd);
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
    if (proxy_index_read_begin(p) < 0) {
        conn_reply_error(c, &f->hdr, -EAGAIN, 0, "index busy");
        return;
    }
    struct index_vol v;
    int rc = index_vol_by_id(p->rd, m.vol_id, &v);
    uint64_t applied = index_applied(p->rd);
    proxy_index_read_end(p);
    if (rc < 0) conn_reply_error(c, &f->hdr, rc, 0, "volume %llu: %s",
                                 (unsigned long long)m.vol_id, bd_strerror(rc));
    else if (proxy_plan_fence(&v, m.generation, writer_of(c)) < 0)
        /* As for writes: a newer generation than ours means this proxy has
         * not applied the attach yet, not that the agent is fenced. */
        conn_reply_error(c, &f->hdr, -BD_EFENCED, 0, "generation %llu is stale",
                         (unsigned long long)m.generation);
    else reply_index(c, &f->hdr, WIRE_VOL_FLUSH, applied);
}

static void handle_list(struct proxy *p, struct conn *c, struct conn_frame *f)
{
    struct wire_vol_list_req m;
    char after[WIRE_NAME_MAX + 1], agent[WIRE_ID_MAX + 1];
    if (wire_decode_vol_list_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0 ||
        !wire_str_copy(m.after, after, sizeof(after)) ||
        !wire_str_copy(m.agent_id, agent, sizeof(agent))) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed VOL_LIST");
        return;
    }
    if (!agent_is_peer(p, c, f, "VOL_LIST", agent)) return;
    uint32_t max = BD_MIN(m.max, WIRE_VOLS_PAGE);
    struct index_vol vols[WIRE_VOLS_PAGE];
    uint32_t n = 0;
    if (proxy_index_read_begin(p) < 0) {
        conn_reply_error(c, &f->hdr, -EAGAIN, 0, "index busy");
        return;
    }
    int rc = index_assign_list(p->rd, agent, strlen(agent), after, strlen(after), vols, max, &n);
    proxy_index_read_end(p);
    if (rc < 0) {
        conn_reply_error(c, &f->hdr, rc, 0, "list: %s", bd_strerror(rc));
        return;
    }
    struct wire_vol_entry ents[WIRE_VOLS_PAGE];
    for (uint32_t i = 0; i < n; i++)
        ents[i] = (struct wire_vol_entry){
            wire_cstr(vols[i].name), vols[i].id, vols[i].size,
            vols[i].assign_mode == INDEX_ASSIGN_RO ? WIRE_ATTACH_RO : 0,
            wire_cstr(vols[i].assign_client)};
    struct wire_vol_list_resp r = {.n = n, .entries_in = ents};
    static uint8_t buf[WIRE_VOLS_PAGE * (2 + WIRE_NAME_MAX + 8 + 8 + 4 + 2 + WIRE_ID_MAX) + 16];
    int len = wire_encode_vol_list_resp(buf, sizeof(buf), &r);
    if (len < 0) conn_reply_error(c, &f->hdr, len, 0, "list too large");
    else conn_reply(c, &f->hdr, buf, (size_t)len, NULL);
}

/* VOL_QOS (issue 13): the effective limits of the volumes an agent
 * serves, read from the index as it stands on this proxy (a follower's is
 * at most a heartbeat behind: within the agent's one-second budget).  The
 * figures the agent reports with it are kept for the volume's JSON
 * (proxy_qos_note).  Only for the volumes the asking agent may serve
 * (assigned to it, or still held by it read-write): another agent's are
 * answered as not found and its reports about them dropped. */
static void handle_qos(struct proxy *p, struct conn *c, struct conn_frame *f)
{
    struct wire_vol_qos_req m;
    char agent[WIRE_ID_MAX + 1];
    if (wire_decode_vol_qos_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0 ||
        !wire_str_copy(m.agent_id, agent, sizeof(agent))) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed VOL_QOS");
        return;
    }
    if (!agent_is_peer(p, c, f, "VOL_QOS", agent)) return;
    static struct wire_qos_entry ents[WIRE_QOS_MAX];
    static uint8_t buf[WIRE_QOS_MAX * WIRE_QOS_ENTRY_LEN + 64];
    if (proxy_index_read_begin(p) < 0) {
        conn_reply_error(c, &f->hdr, -EAGAIN, 0, "index busy");
        return;
    }
    int rc = 0;
    for (uint32_t i = 0; i < m.n && rc == 0; i++) {
        struct wire_qos_report rp;
        wire_vol_qos_report(&m, i, &rp);
        struct index_vol v;
        memset(&ents[i], 0, sizeof(ents[i]));
        ents[i].vol_id = rp.vol_id;
        int r = index_vol_by_id(p->rd, rp.vol_id, &v);
        if (r == -ENOENT) continue;
        if (r == 0 && strcmp(v.assign_agent, agent) != 0 && strcmp(v.agent, agent) != 0)
            continue; /* not this agent's */
        if (r == 0) r = index_vol_qos(p->rd, &v, &ents[i].qos);
        if (r < 0) {
            rc = r;
        } else {
            ents[i].found = 1;
            proxy_qos_note(p, agent, &rp);
        }
    }
    proxy_index_read_end(p);
    if (rc < 0) {
        conn_reply_error(c, &f->hdr, rc, 0, "VOL_QOS: %s", bd_strerror(rc));
        return;
    }
    struct wire_vol_qos_resp r = {.n = m.n, .entries_in = ents};
    int len = wire_encode_vol_qos_resp(buf, sizeof(buf), &r);
    if (len < 0) conn_reply_error(c, &f->hdr, len, 0, "VOL_QOS answer too large");
    else conn_reply(c, &f->hdr, buf, (size_t)len, NULL);
}

bool proxy_io_handle(struct proxy *p, struct conn *c, struct conn_frame *f)
{
    switch (f->hdr.type) {
    case WIRE_VOL_WRITE: handle_write(p, c, f); return true;
    case WIRE_VOL_READ:
    case WIRE_VOL_MAP:
    case WIRE_VOL_LEASE: handle_read(p, c, f); return true;
    case WIRE_VOL_ATTACH: handle_attach(p, c, f); return true;
    case WIRE_VOL_DETACH: handle_detach(p, c, f); return true;
    case WIRE_VOL_FLUSH: handle_flush(p, c, f); return true;
    case WIRE_VOL_LIST: handle_list(p, c, f); return true;
    case WIRE_VOL_QOS: handle_qos(p, c, f); return true;
    default: return false;
    }
}
