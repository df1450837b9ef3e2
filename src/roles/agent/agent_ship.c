/* agent_ship.c: shipping dirty data to the proxies, acks, and fencing.
 *
 * Place.  The lowest layer of the volume back end (agent_vol_int.h): it
 * calls the cluster client, the dirty map, base/fair.h and agent_qos's
 * I/O count, nothing above it.  What the
 * layers above must learn goes up through vs->up: `progress` after an ack
 * (waiting writes and flushes, agent_io.c), `reattach` for a write of
 * unknown outcome (agent_attach.c), `fail` and `release` (agent_vol.c).
 *
 * Picking.  agent_ship_kick() walks the dirty map from a cursor (round
 * robin over the volume).  DATA extents gather into one ship of up to
 * ship_bytes (the proxy's blob size) whether adjacent or not: scattered
 * dirty blocks travel as one scattered VOL_WRITE, one blob and one raft
 * entry instead of one each, which is what random small writes need.  Its
 * ranges ascend (the ship closes where the walk wraps to block 0).  ZERO
 * and TRIM travel as runs of adjacent extents of one kind up to 1 GiB
 * (index only).  Every extent fits a ship whole because the map cuts
 * versions at those boundaries (agent_ship_put_version, which every
 * writer of the map uses).  Each ship becomes one VOL_WRITE carrying the
 * attach generation; DATA is read back from the journal and every block
 * verified against the checksum taken when it was written (C14) before
 * the ship's own XXH3-64 is computed from the same bytes.  A block that
 * fails is marked LOST (reads fail -EIO), never shipped.  Triggers: dirty
 * data or journal above the high-water mark, a FLUSH or FUA waiting,
 * writes waiting for space, stopping, or a replayed journal (drain:
 * everything); otherwise the tick ships extents older than flush_age_ms
 * (and whatever adjoins them).
 *
 * Turns.  A picked ship does not go at once: it waits in its volume's
 * ready queue, and the ready ships of all the agent's volumes go by
 * base/fair.h: deficit round robin between volumes, and
 * while more than one volume is active their ship bytes in flight stay
 * within AGENT_VOL_FAIR_CAP, so one volume's deep ship queue does not sit
 * ahead of another volume's reads and ships on the shared links.  A
 * volume's activity is its ships and its client I/O (agent_qos counts
 * it).  Its ready ships count as in flight for the ordering rule and for
 * its AGENT_VOL_MAX_SHIPS; they are dropped (extents dirty again, nothing
 * was sent) when the volume is fenced, re-attached or freed, or when its
 * turn comes while it is no longer ACTIVE under the generation it was
 * picked in.  A ship's timeout runs from its send.
 *
 * Ordering rule.  A block is never shipped while an earlier ship of that
 * block is in flight: an extent overlapping an in-flight ship is skipped,
 * so two versions of a block can never race to the index.  The in-flight
 * ranges are kept sorted (v->infl) so that test is a binary search.
 *
 * Direct ships (agent_ship_direct) carry a write that never entered the
 * journal: its payload is the caller's buffer, referenced per send like a
 * ship buffer, and no extent carries its id.  They take turns, count in
 * flight and are acked like the others; every way they end is told to
 * the caller (agent_ship.h), who journals the write when it was not
 * taken, so nothing here resends one.
 *
 * Acks.  The extents still carrying the ship's id are versions nobody
 * overwrote: they become clean (leave the map), which releases their
 * journal references; the oldest unreferenced segments are deleted (LOST
 * marks in the oldest segment are first copied forward).  The raft index
 * of the ack raises max_index (C7).
 *
 * Failures (agent_client.h classifies them):
 *   known not done (never sent, or refused for its checksum, which the
 *     proxy checks before anything else): the extents are dirty again and
 *     shipping backs off (100 ms doubling to 1 s);
 *   outcome unknown (connection lost, no answer within a third of
 *     io_timeout_ms, or any other refusal: the proxy cuts a write into
 *     blobs committed separately, and answers EAGAIN when its own retries
 *     of a Raft proposal time out, so a refusal does not prove that
 *     nothing committed or will): do NOT resend: an older copy still in
 *     flight could commit after a newer write of the same block.
 *     Re-attach instead (up->reattach): the new, higher generation fences
 *     every send made under the old one, which then become zombies whose
 *     results are ignored; every unacked version is shipped again under
 *     the new generation;
 *   EFENCED at our generation: another agent attached the volume (C10):
 *     the volume fails, loudly.
 *   the volume is gone or the proxy rejects the request as invalid: the
 *     volume fails (the journal is kept). */
#include "base/bd.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "base/util.h"
#include "roles/agent/agent_ship.h"
#include "roles/agent/agent_mapc.h"
#include "roles/agent/agent_qos.h"

#include <stdlib.h>
#include <string.h>

#define SHIP_BACKOFF_MIN_MS 100
#define SHIP_BACKOFF_MAX_MS 1000
/* The fields of a VOL_WRITE scattered over CAP ranges. */
#define SHIP_FIELDS_LEN(cap) (64 + 12 * (size_t)(cap))

/* A data buffer for one ship, referenced by the ship and by every send
 * of it still queued in a connection.  It outlives its vol if a
 * connection still holds it (owner NULL: freed on the last unref). */
struct agent_ship_buf {
    int refs;
    struct agent_vol_shared *owner;
    struct agent_ship_buf *next_free;
    uint8_t data[];
};

/* A range of blocks a ship carries. */
struct agent_ship_seg {
    uint64_t start, nblk;
};

/* An in-flight range, in v->infl (sorted by start; ranges never overlap:
 * a block is never in two ships at once). */
struct agent_ship_infl {
    uint64_t start, end; /* blocks */
    uint64_t ship_id;
};

/* One VOL_WRITE in flight.  A DATA ship carries up to ship_blocks blocks
 * from any number of ranges (segs, ascending: a scattered write); ZERO and
 * TRIM ships carry one range. */
struct agent_ship {
    struct agent_vol_shared *v;
    uint64_t id;                 /* marks the extents it carries (cache ship_id) */
    uint64_t gen;                /* attach generation it was sent under */
    uint64_t start, nblk;        /* first block, total blocks */
    struct agent_ship_seg *segs; /* capacity segs_cap, kept with the ship when pooled */
    uint32_t n_segs, segs_cap;
    uint8_t *fields;            /* a scattered write's encoded fields (agent_ship.c) */
    int kind;                   /* AGENT_CACHE_DATA, AGENT_CACHE_ZERO or AGENT_CACHE_TRIM */
    struct agent_ship_buf *buf; /* DATA only (not a direct ship) */
    struct agent_ship_direct *direct; /* a direct ship: the caller's write */
    uint64_t csum;
    uint64_t trace;              /* wire_vol_write_trace_id: "ship=" in both logs */
    uint64_t t0_us;
    uint64_t cost;               /* bytes charged to the volume's flow (base/fair.h) */
    bool zombie; /* sent under a fenced generation: result ignored */
    bool bad;    /* journal data failed its checksum while packing */
    struct agent_client_req call;
    struct agent_ship *next;
};

/* ---- versions into the dirty map ----------------------------------------- */

int agent_ship_put_version(struct agent_vol_shared *v, int kind, uint64_t start, uint64_t nblk,
                           uint64_t seq, uint64_t seg, uint64_t dpos, const uint64_t *csums,
                           uint64_t born_ms)
{
    /* Cut into pieces no larger than one ship, at aligned boundaries, so
     * every extent fits a ship whole (the shipper never splits one). */
    uint64_t chunk = kind == AGENT_CACHE_DATA   ? v->vs->ship_blocks
                     : kind == AGENT_CACHE_LOST ? nblk
                                                : AGENT_VOL_ZERO_MAX / BD_BLOCK_SIZE;
    uint64_t b = start, end = start + nblk;
    while (b < end) {
        uint64_t n = BD_MIN(end - b, chunk - b % chunk);
        struct agent_cache_version p = {
            .kind = kind, .start = b, .nblk = n, .seq = seq, .seg = seg,
            .dpos = dpos + (b - start) * BD_BLOCK_SIZE, .born_ms = born_ms,
            .csums = csums ? csums + (b - start) : NULL};
        int rc = agent_cache_put(v->c, &p);
        if (rc < 0) return rc;
        b += n;
    }
    return 0;
}

/* ---- buffers ------------------------------------------------------------- */

static void buf_unref(struct agent_ship_buf *b)
{
    if (--b->refs > 0) return;
    if (b->owner) {
        b->next_free = b->owner->free_bufs;
        b->owner->free_bufs = b;
    } else {
        free(b);
    }
}

static void buf_ref_cb(void *arg)
{
    ((struct agent_ship_buf *)arg)->refs++;
}

static void buf_release_cb(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    buf_unref(arg);
}

static struct agent_ship_buf *buf_get(struct agent_vol_shared *v)
{
    struct agent_ship_buf *b = v->free_bufs;
    if (b) {
        v->free_bufs = b->next_free;
        b->refs = 1;
        return b;
    }
    struct agent_ship_buf **a = realloc(v->bufs, (v->n_bufs + 1) * sizeof(*a));
    if (!a) return NULL;
    v->bufs = a;
    b = malloc(sizeof(*b) + v->vs->ship_blocks * BD_BLOCK_SIZE);
    if (!b) return NULL;
    b->refs = 1;
    b->owner = v;
    v->bufs[v->n_bufs++] = b;
    return b;
}

/* ---- ships --------------------------------------------------------------- */

/* Ranges one ship may carry: a scattered write lists them all. */
static uint32_t segs_max(const struct agent_vol_shared *v)
{
    return (uint32_t)BD_MIN(v->vs->ship_blocks, WIRE_SCATTER_MAX);
}

static struct agent_ship *ship_new(struct agent_vol_shared *v, int kind, bool want_buf)
{
    struct agent_ship *s = v->free_ships;
    if (s) {
        v->free_ships = s->next;
    } else {
        s = calloc(1, sizeof(*s));
        if (!s) return NULL;
        s->segs_cap = segs_max(v);
        s->segs = malloc(s->segs_cap * sizeof(*s->segs));
        s->fields = malloc(SHIP_FIELDS_LEN(s->segs_cap));
        if (!s->segs || !s->fields) {
            free(s->segs);
            free(s->fields);
            free(s);
            return NULL;
        }
    }
    struct agent_ship_seg *segs = s->segs;
    uint8_t *fields = s->fields;
    uint32_t cap = s->segs_cap;
    memset(s, 0, sizeof(*s));
    s->segs = segs;
    s->fields = fields;
    s->segs_cap = cap;
    s->v = v;
    s->kind = kind;
    s->id = ++v->next_ship_id;
    if (kind == AGENT_CACHE_DATA && want_buf && !(s->buf = buf_get(v))) {
        s->next = v->free_ships;
        v->free_ships = s;
        return NULL;
    }
    return s;
}

static void ship_release(struct agent_ship *s)
{
    struct agent_vol_shared *v = s->v;
    if (s->buf) buf_unref(s->buf);
    s->buf = NULL;
    s->next = v->free_ships;
    v->free_ships = s;
}

/* ---- direct ships --------------------------------------------------------- */

/* A reference on a direct ship's payload (the call, or one send) is gone:
 * the last one tells the caller. */
static void direct_unref(struct agent_ship_direct *d)
{
    if (--d->refs == 0) d->cb(d, d->err);
}

static void direct_ref_cb(void *arg)
{
    ((struct agent_ship_direct *)arg)->refs++;
}

static void direct_release_cb(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    direct_unref(arg);
}

/* S (a direct ship) ends with ERR; S itself goes back to the pool. */
static void direct_end(struct agent_ship *s, int err)
{
    struct agent_ship_direct *d = s->direct;
    s->direct = NULL;
    d->err = err;
    direct_unref(d);
}

/* S is done with: a direct ship that never reached its answer says so
 * first (ERR, as agent_ship.h lists). */
static void ship_drop(struct agent_ship *s, int err)
{
    if (s->direct) direct_end(s, err);
    ship_release(s);
}

/* ---- the in-flight ranges ------------------------------------------------ */

/* Record S's ranges as in flight: both lists ascend, so merge them from
 * the back, in place. */
static int infl_add(struct agent_vol_shared *v, const struct agent_ship *s)
{
    if (v->n_infl + s->n_segs > v->infl_cap) {
        size_t cap = BD_MAX(v->infl_cap * 2, v->n_infl + s->n_segs);
        struct agent_ship_infl *r = realloc(v->infl, cap * sizeof(*r));
        if (!r) return -ENOMEM;
        v->infl = r;
        v->infl_cap = cap;
    }
    size_t i = v->n_infl, j = s->n_segs, k = v->n_infl + s->n_segs;
    while (j > 0) {
        const struct agent_ship_seg *g = &s->segs[j - 1];
        if (i > 0 && v->infl[i - 1].start > g->start) {
            v->infl[--k] = v->infl[--i];
        } else {
            v->infl[--k] = (struct agent_ship_infl){g->start, g->start + g->nblk, s->id};
            j--;
        }
    }
    v->n_infl += s->n_segs;
    return 0;
}

static void infl_remove(struct agent_vol_shared *v, const struct agent_ship *s)
{
    size_t k = 0;
    for (size_t i = 0; i < v->n_infl; i++)
        if (v->infl[i].ship_id != s->id) v->infl[k++] = v->infl[i];
    v->n_infl = k;
}

/* Is any block of [start, start + nblk) in a ship in flight?  The ranges
 * are sorted and disjoint, so their ends ascend too: only the last range
 * that starts before our end can reach us. */
static bool overlaps_inflight(const struct agent_vol_shared *v, uint64_t start, uint64_t nblk)
{
    size_t lo = 0, hi = v->n_infl; /* find the first range starting at or after our end */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->infl[mid].start < start + nblk) lo = mid + 1;
        else hi = mid;
    }
    return lo > 0 && v->infl[lo - 1].end > start;
}

/* Every range of S is dirty again (S failed), or clean (S was acked). */
static void ship_unship(struct agent_vol_shared *v, const struct agent_ship *s)
{
    for (uint32_t i = 0; i < s->n_segs; i++)
        agent_cache_unship(v->c, s->segs[i].start, s->segs[i].start + s->segs[i].nblk, s->id);
}

/* S was acked: its ranges are clean.  The leased maps of those ranges go
 * first (agent_mapc.h): once a range is clean, reads no longer take it
 * from the journal, and no map older than this write may answer them
 * (C7, C9). */
static void ship_clean(struct agent_vol_shared *v, const struct agent_ship *s)
{
    for (uint32_t i = 0; i < s->n_segs; i++) {
        if (v->vs->mapc)
            agent_mapc_invalidate(v->vs->mapc, v->vol_id, s->segs[i].start * BD_BLOCK_SIZE,
                                  s->segs[i].nblk * BD_BLOCK_SIZE);
        agent_cache_clean(v->c, s->segs[i].start, s->segs[i].start + s->segs[i].nblk, s->id);
    }
}

void agent_ship_mark_lost(struct agent_vol_shared *v, uint64_t start, uint64_t nblk, uint64_t seq,
                          uint64_t seg)
{
    log_error(v->vs->tag, "vol %s: journal data of blocks [%llu+%llu] (seq %llu) failed its "
              "checksum: acknowledged data lost, reads of it fail with EIO until rewritten",
              v->name, (unsigned long long)start, (unsigned long long)nblk,
              (unsigned long long)seq);
    v->vs->lost_blocks += nblk;
    metric_add(v->vs->m_lost, nblk);
    /* The same version number and segment: the damaged entry stays the
     * evidence until the mark is copied forward. */
    if (agent_ship_put_version(v, AGENT_CACHE_LOST, start, nblk, seq, seg, 0, NULL, 0) < 0)
        v->vs->up->fail(v, -EIO, "no memory for a LOST mark");
}

/* ---- picking ------------------------------------------------------------- */

struct pick {
    struct agent_vol_shared *v;
    struct agent_ship *runs[AGENT_VOL_MAX_SHIPS];
    unsigned nruns, room;
    struct agent_ship *cur;  /* ZERO or TRIM run being built: one range */
    struct agent_ship *data; /* DATA ship being built: any ranges */
    bool all;
    uint64_t cutoff;          /* age mode: extents born at or before this */
    bool bad;                 /* a block failed its checksum */
    uint64_t bad_blk, bad_seq, bad_seg;
    bool nomem;
};

static void close_run(struct pick *p)
{
    if (p->cur) p->runs[p->nruns++] = p->cur;
    p->cur = NULL;
}

static void close_data(struct pick *p)
{
    if (p->data) p->runs[p->nruns++] = p->data;
    p->data = NULL;
}

/* Ships closed or being built, against the room for new ones. */
static bool room_for_new(const struct pick *p)
{
    return p->nruns + (p->cur != NULL) + (p->data != NULL) < p->room;
}

/* Add E to ship S: DATA is read from the journal and verified. */
static void run_add(struct pick *p, struct agent_ship *s, struct agent_cache_ext *e)
{
    if (e->kind == AGENT_CACHE_DATA && !s->bad) {
        uint8_t *dst = s->buf->data + s->nblk * BD_BLOCK_SIZE;
        int rc = journal_read(p->v->j, e->seg, e->dpos, dst, e->nblk * BD_BLOCK_SIZE);
        for (uint64_t k = 0; k < e->nblk && !s->bad; k++) {
            uint64_t c = util_xxh3(dst + k * BD_BLOCK_SIZE, BD_BLOCK_SIZE);
            if (rc < 0 || c != agent_cache_ext_csum(e, k)) {
                s->bad = true;
                if (!p->bad) {
                    p->bad = true;
                    p->bad_blk = e->start + k;
                    p->bad_seq = e->seq;
                    p->bad_seg = e->seg;
                }
            } else if (s->nblk == 0 && e->nblk == 1) {
                s->csum = c; /* one block: the ship checksum is the block's */
            }
        }
    }
    struct agent_ship_seg *last = s->n_segs ? &s->segs[s->n_segs - 1] : NULL;
    if (last && last->start + last->nblk == e->start) {
        last->nblk += e->nblk;
    } else {
        if (!s->n_segs) s->start = e->start;
        s->segs[s->n_segs++] = (struct agent_ship_seg){e->start, e->nblk};
    }
    e->ship_id = s->id;
    s->nblk += e->nblk;
}

/* Does E start where S's last range ends? */
static bool adjoins(const struct agent_ship *s, const struct agent_cache_ext *e)
{
    const struct agent_ship_seg *last = &s->segs[s->n_segs - 1];
    return last->start + last->nblk == e->start;
}

static bool pick_data(struct pick *p, struct agent_cache_ext *e)
{
    struct agent_vol_shared *v = p->v;
    close_run(p); /* a ZERO or TRIM run is broken by anything else */
    struct agent_ship *s = p->data;
    if (s && (s->nblk + e->nblk > v->vs->ship_blocks ||
              (s->n_segs == s->segs_cap && !adjoins(s, e)))) {
        close_data(p);
        s = NULL;
    }
    /* Age mode: young extents wait to gather more, unless they extend a
     * range already being shipped. */
    if (!p->all && e->born_ms > p->cutoff && !(s && adjoins(s, e)))
        return s || room_for_new(p);
    if (!s) {
        if (!room_for_new(p)) return false;
        if (!(s = ship_new(v, AGENT_CACHE_DATA, true))) {
            p->nomem = true;
            return false;
        }
        p->data = s;
    }
    run_add(p, s, e);
    return true;
}

static bool pick_fn(void *arg, struct agent_cache_ext *e)
{
    struct pick *p = arg;
    struct agent_vol_shared *v = p->v;
    if (e->kind == AGENT_CACHE_LOST || e->ship_id || overlaps_inflight(v, e->start, e->nblk)) {
        close_run(p);
        return p->data || room_for_new(p);
    }
    if (e->kind == AGENT_CACHE_DATA) return pick_data(p, e);
    struct agent_ship *s = p->cur;
    uint64_t cap = AGENT_VOL_ZERO_MAX / BD_BLOCK_SIZE;
    if (s && s->kind == e->kind && adjoins(s, e) && s->nblk + e->nblk <= cap) {
        run_add(p, s, e);
        return true;
    }
    close_run(p);
    if (!room_for_new(p)) return p->data != NULL; /* the DATA ship may still fill */
    if (!p->all && e->born_ms > p->cutoff) return true; /* young: let it gather more */
    s = ship_new(v, e->kind, false);
    if (!s) {
        p->nomem = true;
        return false;
    }
    p->cur = s;
    run_add(p, s, e);
    return true;
}

static void on_ship_done(struct agent_client_req *call, int err, struct conn_frame *f);

/* ---- turns between volumes (base/fair.h) ---------------------------------- */

static void fair_setup(struct agent_vols *vs)
{
    if (vs->fair_ready) return;
    fair_init(&vs->fair, AGENT_VOL_FAIR_CAP, AGENT_VOL_FAIR_QUANTUM,
                    AGENT_VOL_FAIR_ACTIVE_MS);
    vs->fair_ready = true;
}

static uint64_t ship_cost(const struct agent_ship *s)
{
    return s->kind == AGENT_CACHE_DATA ? BD_MAX(s->nblk * BD_BLOCK_SIZE, AGENT_VOL_FAIR_MIN_COST)
                                       : AGENT_VOL_FAIR_MIN_COST;
}

/* V's flow has its next ready ship's bytes, or nothing, ready. */
static void fair_update(struct agent_vol_shared *v)
{
    fair_ready(&v->vs->fair, &v->flow, v->ready_head ? v->ready_head->cost : 0);
}

/* Drop V's ready ships (never sent): their ranges leave the in-flight set
 * and their extents are dirty again. */
static void ready_drop(struct agent_vol_shared *v)
{
    while (v->ready_head) {
        struct agent_ship *s = v->ready_head;
        v->ready_head = s->next;
        infl_remove(v, s);
        if (v->c) ship_unship(v, s);
        if (v->n_ships) v->n_ships--;
        ship_drop(s, -EAGAIN);
    }
    v->ready_tail = NULL;
    if (v->vs->fair_ready) fair_update(v);
}

/* Send S, V's ready ship whose turn came. */
static void ship_send(struct agent_vol_shared *v, struct agent_ship *s)
{
    struct agent_vols *vs = v->vs;
    uint64_t len = s->nblk * BD_BLOCK_SIZE;
    const uint8_t *data = s->direct ? s->direct->buf : s->buf ? s->buf->data : NULL;
    if (s->kind == AGENT_CACHE_DATA && (s->nblk > 1 || s->direct)) s->csum = util_xxh3(data, len);
    struct wire_write_ext ext[WIRE_SCATTER_MAX];
    for (uint32_t i = 0; s->n_segs > 1 && i < s->n_segs; i++)
        ext[i] = (struct wire_write_ext){s->segs[i].start * BD_BLOCK_SIZE,
                                         (uint32_t)(s->segs[i].nblk * BD_BLOCK_SIZE)};
    struct wire_vol_write_req m = {
        .vol_id = v->vol_id,
        .generation = v->gen,
        .off = s->start * BD_BLOCK_SIZE,
        .len = (uint32_t)len,
        .flags = s->kind == AGENT_CACHE_ZERO   ? WIRE_WRITE_ZERO
                 : s->kind == AGENT_CACHE_TRIM ? WIRE_WRITE_TRIM
                 : s->n_segs > 1               ? WIRE_WRITE_SCATTER
                                               : 0,
        .csum = s->kind == AGENT_CACHE_DATA ? s->csum : 0,
        .data_len = s->kind == AGENT_CACHE_DATA ? (uint32_t)len : 0,
        .n_ext = s->n_segs > 1 ? s->n_segs : 0,
        .ext_in = ext,
    };
    struct agent_client_req *c = &s->call;
    memset(c, 0, sizeof(*c));
    int n = m.n_ext ? wire_encode_vol_write_req(s->fields, SHIP_FIELDS_LEN(s->segs_cap), &m)
                    : wire_encode_vol_write_req(c->fields, sizeof(c->fields), &m);
    if (m.n_ext) c->fields_big = s->fields;
    if (!BD_ALWAYS(n > 0)) {
        infl_remove(v, s);
        ship_unship(v, s);
        v->n_ships--;
        fair_done(&vs->fair, &v->flow, s->cost);
        ship_drop(s, -EAGAIN);
        return;
    }
    c->fields_len = (size_t)n;
    c->type = WIRE_VOL_WRITE;
    c->idempotent = false; /* an unknown outcome means re-attach, never resend */
    /* A third of the I/O timeout: a write lost in flight is then found,
     * fenced by a re-attach and resent before waiting flushes give up. */
    c->deadline_ms = util_mono_ms() + BD_MAX(vs->cfg->io_timeout_ms / 3, 50);
    c->cb = on_ship_done;
    c->data = s;
    if (s->direct) {
        c->payload = (struct conn_payload){.data = data, .len = len,
                                           .release = direct_release_cb, .arg = s->direct};
        c->payload_ref = direct_ref_cb;
    } else if (s->kind == AGENT_CACHE_DATA) {
        c->payload = (struct conn_payload){.data = data, .len = len,
                                           .release = buf_release_cb, .arg = s->buf};
        c->payload_ref = buf_ref_cb;
    }
    s->gen = v->gen;
    s->t0_us = util_mono_ns() / 1000;
    s->trace = wire_vol_write_trace_id(&m);
    struct log_ids ids = {.vol = v->name, .ship = s->trace};
    log_debug_ids(vs->tag, &ids, "ship %s [%llu+%llu] in %u ranges, gen %llu",
                  s->kind == AGENT_CACHE_DATA ? "data" : s->kind == AGENT_CACHE_ZERO ? "zero" : "trim",
                  (unsigned long long)m.off, (unsigned long long)len, s->n_segs,
                  (unsigned long long)m.generation);
    s->next = v->ships;
    v->ships = s;
    v->busy++;
    metric_inc(vs->m_ships);
    agent_client_call(vs->cl, c);
}

/* Volumes that had client I/O since the last look are active for a while
 * (base/fair.h): a quiet volume's reads use the same links. */
static void fair_look(struct agent_vols *vs, uint64_t now)
{
    for (struct agent_vol_shared *v = vs->vols; v; v = v->next) {
        uint64_t ios = agent_qos_vol_ios(v->qos);
        if (ios == v->fair_ios) continue;
        v->fair_ios = ios;
        fair_add(&vs->fair, &v->flow);
        fair_touch(&v->flow, now);
    }
}

/* Send ready ships, the volumes taking turns, while the cap lets them. */
static void fair_pump(struct agent_vols *vs)
{
    if (!vs->fair_ready || vs->freeing) return;
    uint64_t now = util_mono_ms();
    fair_look(vs, now);
    struct fair_flow *fl;
    while ((fl = fair_pick(&vs->fair, now))) {
        struct agent_vol_shared *v = bd_container_of(fl, struct agent_vol_shared, flow);
        struct agent_ship *s = v->ready_head;
        if (!BD_ALWAYS(s)) continue;
        v->ready_head = s->next;
        if (!v->ready_head) v->ready_tail = NULL;
        s->next = NULL;
        fair_update(v);
        if (v->state != AGENT_VOL_ACTIVE || s->gen != v->gen) {
            /* Picked under a generation or state that no longer holds:
             * never sent, so its extents are simply dirty again. */
            fair_done(&vs->fair, fl, s->cost);
            infl_remove(v, s);
            ship_unship(v, s);
            v->n_ships--;
            ship_drop(s, -EAGAIN);
            continue;
        }
        ship_send(v, s);
    }
}

/* S (picked) waits for V's turn: its ranges count as in flight from now
 * (the ordering rule), and it holds one of V's ship slots. */
static void ship_queue(struct agent_vol_shared *v, struct agent_ship *s)
{
    if (infl_add(v, s) < 0) {
        ship_unship(v, s);
        ship_drop(s, -EAGAIN);
        return;
    }
    s->gen = v->gen;
    s->cost = ship_cost(s);
    s->next = NULL;
    if (v->ready_tail) v->ready_tail->next = s;
    else v->ready_head = s;
    v->ready_tail = s;
    v->n_ships++;
    fair_add(&v->vs->fair, &v->flow);
    fair_update(v);
}

unsigned agent_ship_room(const struct agent_vol_shared *v)
{
    return v->n_ships < AGENT_VOL_MAX_SHIPS ? AGENT_VOL_MAX_SHIPS - v->n_ships : 0;
}

int agent_ship_direct(struct agent_vol_shared *v, struct agent_ship_direct *d)
{
    struct agent_vols *vs = v->vs;
    if (v->state != AGENT_VOL_ACTIVE || vs->freeing || !v->vol_id || !agent_ship_room(v) ||
        !BD_ALWAYS(d->nblk && d->nblk <= vs->ship_blocks &&
                   d->start / vs->ship_blocks == (d->start + d->nblk - 1) / vs->ship_blocks))
        return -EAGAIN;
    fair_setup(vs);
    struct agent_ship *s = ship_new(v, AGENT_CACHE_DATA, false);
    if (!s) return -EAGAIN;
    d->refs = 1; /* the call's; each send takes its own */
    d->err = 0;
    s->direct = d;
    s->start = d->start;
    s->nblk = d->nblk;
    s->segs[0] = (struct agent_ship_seg){d->start, d->nblk};
    s->n_segs = 1;
    /* Its callback may come from inside ship_queue (no memory for the
     * in-flight ranges) or fair_pump (dropped): the caller defers. */
    ship_queue(v, s);
    fair_pump(vs);
    return 0;
}

/* Pick runs and send them; returns true if a corrupt block was found (it
 * is marked LOST and the caller picks again). */
static bool kick_once(struct agent_vol_shared *v, bool age)
{
    struct agent_vols *vs = v->vs;
    if (!v->c || v->state != AGENT_VOL_ACTIVE || vs->freeing || !v->vol_id) return false;
    fair_setup(vs);
    uint64_t now = util_mono_ms();
    if (now < v->ship_retry_at || v->n_ships >= AGENT_VOL_MAX_SHIPS) return false;
    if (agent_cache_extents(v->c) == agent_cache_lost_extents(v->c)) {
        v->drain = false; /* nothing dirty left */
        return false;
    }
    bool pressure =
        agent_cache_dirty_bytes(v->c) >= vs->hw_bytes || journal_used_bytes(v->j) >= vs->hw_bytes;
    bool all = v->drain || pressure || v->dur_head || v->wait_head || vs->stopping;
    if (!all && !age) return false;
    struct pick p = {.v = v, .room = AGENT_VOL_MAX_SHIPS - v->n_ships, .all = all,
                     .cutoff = now > vs->cfg->flush_age_ms ? now - vs->cfg->flush_age_ms : 0};
    uint64_t from = v->cursor;
    agent_cache_walk(v->c, from, UINT64_MAX, pick_fn, &p);
    close_run(&p);
    close_data(&p); /* a scattered write's ranges ascend: none across the wrap */
    if (room_for_new(&p) && from > 0 && !p.nomem) {
        agent_cache_walk(v->c, 0, from, pick_fn, &p);
        close_run(&p);
    }
    close_data(&p);
    for (unsigned i = 0; i < p.nruns; i++) {
        struct agent_ship *s = p.runs[i];
        const struct agent_ship_seg *last = &s->segs[s->n_segs - 1];
        v->cursor = last->start + last->nblk;
        if (s->bad) {
            ship_unship(v, s);
            ship_release(s);
        } else {
            ship_queue(v, s);
        }
    }
    fair_pump(vs);
    if (p.bad) agent_ship_mark_lost(v, p.bad_blk, 1, p.bad_seq, p.bad_seg);
    return p.bad;
}

/* Start ships.  AGE: the tick asks for extents older than flush_age_ms.
 * Each corrupt block found costs one more pass (bounded here; the next
 * kick goes on). */
static void kick(struct agent_vol_shared *v, bool age)
{
    for (int pass = 0; pass < 64 && kick_once(v, age); pass++) {}
}

void agent_ship_kick(struct agent_vol_shared *v)
{
    kick(v, false);
}

void agent_ship_kick_age(struct agent_vol_shared *v)
{
    kick(v, true);
}

/* ---- acks and failures --------------------------------------------------- */

/* Copy the LOST marks of the oldest segment forward (so it can go), then
 * delete unreferenced segments. */
void agent_ship_reclaim(struct agent_vol_shared *v)
{
    if (!v->j) return;
    uint64_t seg;
    for (int rounds = 0; rounds < 4 && journal_forward_needed(v->j, &seg); rounds++) {
        size_t n = agent_cache_lost_in_seg(v->c, seg, NULL, 0);
        uint64_t (*r)[2] = malloc(n * sizeof(*r));
        if (!r) break;
        agent_cache_lost_in_seg(v->c, seg, r, n);
        bool ok = true;
        for (size_t i = 0; i < n && ok; i++) {
            struct journal_rec rec;
            int rc = journal_append(v->j, JOURNAL_LOST, r[i][0] * BD_BLOCK_SIZE,
                                    r[i][1] * BD_BLOCK_SIZE, NULL, NULL, true, &rec);
            ok = rc == 0 && agent_ship_put_version(v, AGENT_CACHE_LOST, r[i][0], r[i][1], rec.seq,
                                                   rec.seg, 0, NULL, 0) == 0;
        }
        free(r);
        if (!ok) break;
    }
    journal_reclaim(v->j);
}

static void ship_backoff(struct agent_vol_shared *v)
{
    v->ship_backoff_ms = v->ship_backoff_ms ? BD_MIN(v->ship_backoff_ms * 2, SHIP_BACKOFF_MAX_MS)
                                            : SHIP_BACKOFF_MIN_MS;
    v->ship_retry_at = util_mono_ms() + v->ship_backoff_ms;
}

static bool fatal_write_error(int err)
{
    return err == -ENOENT || err == -EINVAL || err == -ERANGE || err == -EPERM ||
           err == -ENOTSUP || err == -EACCES || err == -BD_EIMMUTABLE;
}

static void on_ship_done(struct agent_client_req *call, int err, struct conn_frame *f)
{
    struct agent_ship *s = call->data;
    struct agent_vol_shared *v = s->v;
    struct agent_vols *vs = v->vs;
    if (vs->freeing) {
        ship_drop(s, -ESHUTDOWN);
        return;
    }
    v->busy--;
    fair_done(&vs->fair, &v->flow, s->cost);
    struct wire_vol_write_resp resp = {0};
    if (err == 0 && wire_decode_vol_write_resp(f->body, f->hdr.len, f->hdr.payload_len, &resp) < 0)
        err = -EIO, call->unknown = true; /* acked, but we cannot read how */
    if (s->zombie) {
        /* Sent under a generation a re-attach has fenced; whatever happened
         * is superseded by the resend. */
        if (err == 0 && resp.raft_index > v->max_index) v->max_index = resp.raft_index;
        ship_drop(s, -EAGAIN); /* a direct write is journaled and resent under the new one */
        fair_pump(vs);
        vs->up->release(v);
        return;
    }
    struct agent_ship **pp = &v->ships;
    while (*pp && *pp != s) pp = &(*pp)->next;
    if (BD_ALWAYS(*pp)) *pp = s->next;
    v->n_ships--;
    infl_remove(v, s);
    struct log_ids ids = {.vol = v->name, .ship = s->trace,
                          .raft_index = err == 0 ? resp.raft_index : 0};
    if (err == 0) {
        log_debug_ids(vs->tag, &ids, "acked in %llu us",
                      (unsigned long long)(util_mono_ns() / 1000 - s->t0_us));
        if (resp.raft_index > v->max_index) v->max_index = resp.raft_index;
        ship_clean(v, s);
        v->acks++;
        v->progress_ms = util_mono_ms();
        v->ship_backoff_ms = 0;
        metrics_observe_us(vs->m_ship, util_mono_ns() / 1000 - s->t0_us);
        ship_drop(s, 0);
        agent_ship_reclaim(v);
        vs->up->progress(v); /* space freed; flushes and FUA writes may be done */
        agent_ship_kick(v);
        fair_pump(vs);      /* the bytes came back: another volume's turn may go */
        vs->up->release(v);
        return;
    }
    char why[160];
    const char *text = f ? conn_error_text(f, why, sizeof(why)) : bd_strerror(err);
    /* Known not applied: the proxy checked the checksum before doing
     * anything, or the request never left this agent. */
    bool not_applied = err == -BD_ECSUM || (!f && !call->unknown);
    if (err == -BD_EFENCED && v->state == AGENT_VOL_REATTACH) {
        /* Fenced by our own re-attach: not applied, and the re-attach
         * makes its extents dirty again. */
        ship_drop(s, -EAGAIN);
    } else if (err == -BD_EFENCED) {
        ship_drop(s, -EIO);
        vs->up->fail(v, -BD_EFENCED,
                     "VOL_WRITE refused as fenced: another agent attached the volume");
    } else if (fatal_write_error(err)) {
        ship_unship(v, s);
        ship_drop(s, -EIO);
        log_with(LOG_ERROR, vs->tag, &ids, "vol %s: write refused: %s", v->name, text);
        vs->up->fail(v, -EIO, "the proxy refused a write");
    } else if (not_applied) {
        ship_unship(v, s);
        ship_drop(s, -EAGAIN);
        ship_backoff(v);
        log_with(LOG_INFO, vs->tag, &ids, "vol %s: write not taken (%s); retrying in %u ms",
                 v->name, text,
                 v->ship_backoff_ms);
    } else {
        /* Outcome unknown: a lost answer, a timeout, or a refusal that may
         * hide a commit still in flight (a multi-blob write answered
         * EAGAIN, ENOSPC or EIO may have committed some parts, or commit
         * them later).  The extents keep this ship's id: nothing ships
         * them until the re-attach has made every older send harmless. */
        log_with(LOG_WARN, vs->tag, &ids,
                 "vol %s: write [%llu+%llu] gen %llu outcome unknown (%s): re-attaching "
                 "to fence it before resending", v->name,
                 (unsigned long long)(s->start * BD_BLOCK_SIZE),
                 (unsigned long long)(s->nblk * BD_BLOCK_SIZE), (unsigned long long)s->gen, text);
        /* A direct write is journaled now (the newest version of its
         * blocks) and, like the rest, shipped again once the re-attach
         * has fenced this send. */
        ship_drop(s, -EAGAIN);
        if (f) ship_backoff(v); /* a refusing cluster: do not resend at once */
        vs->up->reattach(v);
    }
    fair_pump(vs);
    vs->up->release(v);
}

void agent_ship_zombify_all(struct agent_vol_shared *v)
{
    ready_drop(v); /* never sent: nothing to fence */
    while (v->ships) {
        struct agent_ship *s = v->ships;
        v->ships = s->next;
        s->next = NULL;
        s->zombie = true; /* still referenced by the client until its callback */
    }
    v->n_ships = 0;
    v->n_infl = 0;
    if (v->c) agent_cache_unship_all(v->c);
}

void agent_ship_free_vol(struct agent_vol_shared *v)
{
    /* Ready ships never went; the dirty map is gone already (vol_free). */
    while (v->ready_head) {
        struct agent_ship *s = v->ready_head;
        v->ready_head = s->next;
        ship_drop(s, -ESHUTDOWN);
    }
    v->ready_tail = NULL;
    if (v->vs->fair_ready) fair_remove(&v->vs->fair, &v->flow);
    while (v->free_ships) {
        struct agent_ship *s = v->free_ships;
        v->free_ships = s->next;
        free(s->segs);
        free(s->fields);
        free(s);
    }
    free(v->infl);
    v->infl = NULL;
    v->n_infl = v->infl_cap = 0;
    for (unsigned i = 0; i < v->n_bufs; i++) {
        if (v->bufs[i]->refs == 0) free(v->bufs[i]);
        else v->bufs[i]->owner = NULL; /* a connection still holds it */
    }
    free(v->bufs);
    v->bufs = NULL;
    v->n_bufs = 0;
    v->free_bufs = NULL;
}
