/* proxy_move.c: replica moves on the Raft leader (see proxy_move.h).
 *
 * A move puts a new server in place of a member of a partition
 * (MOVE_REPLICA: epoch + 1, and a record in the index's moves table) and
 * then fills it.  Three reasons, in this order of priority:
 *   LOST       a member down for replace_after_ms (a new server even if
 *              every slot is taken: the data must get back to three copies);
 *   DRAIN      a member whose server is DRAINING (at most PROXY_MOVE_DRAINS
 *              at once);
 *   REBALANCE  the server most above its capacity share gives a replica to
 *              the one most below it (proxy_plan_rebalance; at most
 *              rebalance_moves at once, none with 0).
 * One MOVE_REPLICA is proposed at a time; partitions with a move under way
 * or a member down are not moved again.
 *
 * Filling a new member, a page at a time (struct run):
 *   COUNT  list one source to the end, summing lengths: the bytes left,
 *          for progress and the ETA (an estimate: it counts what the
 *          source holds, live or not);
 *   LIST   a BLOB_LIST page after the checkpoint from every source (the
 *          other members that are up, and the replaced server while it is
 *          up: a drained or rebalanced one still has everything) and from
 *          the new member (what it already has is skipped);
 *   PULL   the ids up to the page's bound (rplan_bound: where every
 *          listed source is complete) that the index says are live in this
 *          partition and the new member lacks, sent to the new member as
 *          BLOB_PULLs, each blob from one of the sources that hold it, the
 *          sources taken in turn: the bytes go server to server, from
 *          every surviving replica at once, never through the leader;
 *          paced by rebuild_bytes_per_sec (a token bucket over all moves,
 *          a quarter second deep, and pulls of at most an eighth of a
 *          second's budget, so the copy is smooth, not bursts at disk speed);
 *   MARK   MOVE_MARK(cursor = the bound, bytes): the checkpoint.  A new
 *          leader reads it and starts after it; a blob at or below it is
 *          on the new member.  At the end, MOVE_MARK done closes the move.
 * A page with any failed copy is not checkpointed: it is listed and
 * pulled again after PROXY_MOVE_RETRY_MS (what arrived is then skipped).
 * The rate is the bytes copied over the last ten seconds; the ETA is the
 * bytes left at that rate.
 *
 * Why leave writes alone: the new member is a member from the
 * MOVE_REPLICA on, so every new blob is put to it by the writer; only the
 * blobs from before need the copy.  Reads try the new member last while
 * its move is under way (every proxy's tick hands the moves table to the
 * blob pool, proxy_blobs_set_filling): a blob not copied yet would cost a
 * failed round trip there first, and a read that does land there (the
 * others down) fails over to another replica (proxy_blobs.c).  A blob garbage-collected
 * meanwhile is not copied (the index says dead), and a pull that races
 * with its deletion fails and the retry skips it.
 *
 * Lifetime: every call in flight holds a reference on the state and
 * carries the run's key and page generation; a reply for a run that is
 * gone or has moved on only drops its reference.  Losing leadership drops
 * every run (the index keeps the checkpoints). */
#include "roles/proxy/proxy_move.h"
#include "roles/proxy/proxy_blobs.h"
#include "roles/proxy/proxy_cmd.h"
#include "roles/proxy/proxy_index.h"
#include "roles/proxy/proxy_int.h"
#include "roles/proxy/proxy_view.h"
#include "roles/proxy/rplan.h"
#include "base/bd.h"
#include "base/util.h"
#include "runtime/log.h"
#include "runtime/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOVE_CMD_DEADLINE_MS 10000u
#define RATE_WINDOW_MS 10000u
#define MAX_SOURCES 3

enum run_phase {
    RUN_COUNT,  /* counting the bytes left */
    RUN_LIST,   /* a page's lists in flight (or to send) */
    RUN_PULL,   /* the page's pulls queued or in flight */
    RUN_MARK,   /* its checkpoint being committed */
    RUN_WAIT,   /* a failed page: listed again at retry_at_ms */
};

struct run;

/* A list page from one server, owned by the call until it lands. */
struct list_call {
    struct proxy_move *mv;
    uint32_t part;
    uint64_t dst;              /* the run's key with part */
    uint64_t page;             /* the run's page generation when sent */
    int slot;                  /* 0..MAX_SOURCES-1 a source, MAX_SOURCES the new member */
    struct proxy_blobs_call call;
};

/* One BLOB_PULL to the new member. */
struct pull {
    struct proxy_move *mv;
    uint32_t part;
    uint64_t dst;
    uint64_t page;
    uint64_t src;
    uint32_t n;
    uint64_t bytes;
    struct wire_blob_entry ent[WIRE_PULL_MAX];
    struct pull *next;         /* in the run's queue */
    struct proxy_blobs_call call;
};

/* A MOVE_MARK in flight (not in the run: the run may go first). */
struct mark_call {
    struct proxy_move *mv;
    uint32_t part;
    uint64_t dst;
    uint64_t page;
    bool done;                 /* it closes the move */
    uint64_t cursor, bytes;
    struct proxy_cmd cmd;
    uint8_t buf[64];
};

/* What one server listed in the current page. */
struct page_list {
    bool listed;               /* asked and answered */
    int err;
    uint64_t node;
    uint64_t *ids;             /* PROXY_MOVE_PAGE */
    uint32_t *lens;
    uint64_t *csums;
    uint32_t n;
    bool more;
};

struct run {
    struct index_move rec;     /* as the index has it: the checkpoint */
    enum run_phase phase;
    uint64_t page;             /* generation of the page in progress */
    uint64_t count_cursor;     /* COUNT: where the count is */
    uint64_t count_bytes;      /* COUNT: bytes after the checkpoint seen so far */
    bool counted;
    uint64_t bytes_total;      /* checkpoint bytes + counted remainder (an estimate) */
    uint64_t page_bytes;       /* copied in this page (not yet checkpointed) */
    uint64_t bound;            /* this page's bound */
    struct page_list lists[MAX_SOURCES + 1];
    unsigned lists_pending;
    bool awaiting;             /* this page's lists were sent; plan once all are in */
    struct pull *queue;        /* pulls waiting for tokens or a slot */
    unsigned in_flight;
    bool failed;               /* a copy of this page failed */
    char last_err[160];
    uint64_t retry_at_ms;
    bool mark_busy;            /* a MOVE_MARK of this run is in flight */
    uint64_t win_start_ms, win_bytes, prev_win_bytes; /* the rate's two windows */
    bool seen;                 /* still in the index (reconcile) */
    struct run *next;
};

struct down {
    uint64_t id;
    uint64_t since_ms;
};

struct proxy_move {
    struct proxy *p;
    struct index_reader *rd;   /* its own reader: callers may hold a txn on p->rd */
    unsigned refs;             /* the owner's + one per call in flight */
    bool stopping;
    bool leader;
    struct run *runs;          /* one per move record in the index (leader only) */
    struct down *down;         /* registered servers seen down, since when */
    unsigned n_down;
    uint64_t leader_since_ms;
    bool cmd_busy;
    struct proxy_cmd cmd;
    uint8_t cmd_buf[64];
    uint32_t c_part;
    uint64_t c_old, c_new;
    uint8_t c_reason;
    double tokens;             /* bytes the pulls may send now */
    uint64_t tokens_ms;
    uint64_t warned_ms;
    uint64_t n_started, n_done, n_resumed, n_lost, bytes_copied;
    struct drained {           /* bytes copied off each server being drained */
        uint64_t node, bytes;
    } *drained;
    unsigned n_drained;
    struct metrics_counter *c_bytes, *c_moves;
};

static const char *reason_name(uint8_t r)
{
    return r == IDXCMD_MOVE_LOST ? "lost" : r == IDXCMD_MOVE_DRAIN ? "drain" : "rebalance";
}

static void unref(struct proxy_move *mv);

static void page_free(struct run *r)
{
    for (int i = 0; i <= MAX_SOURCES; i++) {
        free(r->lists[i].ids);
        free(r->lists[i].lens);
        free(r->lists[i].csums);
        memset(&r->lists[i], 0, sizeof(r->lists[i]));
    }
    while (r->queue) {
        struct pull *pl = r->queue;
        struct proxy_move *mv = pl->mv;
        r->queue = pl->next;
        free(pl);
        unref(mv);
    }
}

static void run_free(struct run *r)
{
    page_free(r);
    free(r);
}

static void unref(struct proxy_move *mv)
{
    if (--mv->refs) return;
    while (mv->runs) {
        struct run *r = mv->runs;
        mv->runs = r->next;
        run_free(r);
    }
    free(mv->down);
    free(mv->drained);
    free(mv);
}

static struct run *run_find(struct proxy_move *mv, uint32_t part, uint64_t dst)
{
    for (struct run *r = mv->runs; r; r = r->next)
        if (r->rec.part == part && r->rec.node == dst) return r;
    return NULL;
}

static bool current(struct proxy_move *mv)
{
    return !mv->stopping && mv->leader;
}

/* ---- rate and progress ----------------------------------------------------------------- */

static void count_bytes(struct proxy_move *mv, struct run *r, uint64_t bytes)
{
    uint64_t now = util_mono_ms();
    if (now - r->win_start_ms >= RATE_WINDOW_MS) {
        r->prev_win_bytes = now - r->win_start_ms < 2 * RATE_WINDOW_MS ? r->win_bytes : 0;
        r->win_bytes = 0;
        r->win_start_ms = now;
    }
    r->win_bytes += bytes;
    r->page_bytes += bytes;
    mv->bytes_copied += bytes;
    if (r->rec.reason == IDXCMD_MOVE_DRAIN && bytes) {
        unsigned i = 0;
        while (i < mv->n_drained && mv->drained[i].node != r->rec.from) i++;
        if (i == mv->n_drained) {
            struct drained *d = realloc(mv->drained, (i + 1) * sizeof(*d));
            if (!d) return;
            mv->drained = d;
            mv->drained[mv->n_drained++] = (struct drained){r->rec.from, 0};
        }
        mv->drained[i].bytes += bytes;
    }
    metric_add(mv->c_bytes, bytes);
}

/* Bytes per second over the current and the previous window. */
static double run_rate(const struct run *r, uint64_t now)
{
    uint64_t span = now - r->win_start_ms + (r->prev_win_bytes ? RATE_WINDOW_MS : 0);
    if (span < 1000) span = 1000;
    return (double)(r->win_bytes + r->prev_win_bytes) * 1000.0 / (double)span;
}

static uint64_t run_done(const struct run *r)
{
    return r->rec.bytes_done + r->page_bytes;
}

static uint64_t run_left(const struct run *r)
{
    uint64_t total = r->counted ? r->bytes_total : r->rec.bytes_done + r->count_bytes;
    uint64_t done = run_done(r);
    return total > done ? total - done : 0;
}

/* ---- commands ------------------------------------------------------------------------------ */

static void on_cmd(struct proxy_cmd *c, int err, uint64_t index, const struct idxcmd_result *res)
{
    (void)index;
    struct proxy_move *mv = c->data;
    mv->cmd_busy = false;
    if (!mv->stopping) {
        int e = err ? err : idxcmd_status_to_err(res->status);
        if (e == 0) {
            mv->n_started++;
            mv->n_lost += mv->c_reason == IDXCMD_MOVE_LOST;
            metric_inc(mv->c_moves);
            log_info(mv->p->tag, "move: partition %u: blob server %llu replaced by %llu (%s, "
                     "epoch %llu)", mv->c_part, (unsigned long long)mv->c_old,
                     (unsigned long long)mv->c_new, reason_name(mv->c_reason),
                     (unsigned long long)res->id);
        } else {
            log_warn(mv->p->tag, "move: partition %u from %llu to %llu (%s): %s", mv->c_part,
                     (unsigned long long)mv->c_old, (unsigned long long)mv->c_new,
                     reason_name(mv->c_reason), bd_strerror(e));
        }
    }
    unref(mv);
}

static void propose_move(struct proxy_move *mv, uint32_t part, uint64_t old, uint64_t new_node,
                         uint8_t reason)
{
    struct idxcmd cmd = {.type = IDXCMD_MOVE_REPLICA};
    cmd.u.move_replica.part_id = part;
    cmd.u.move_replica.old_node = old;
    cmd.u.move_replica.new_node = new_node;
    cmd.u.move_replica.reason = reason;
    int len = idxcmd_encode(mv->cmd_buf, sizeof(mv->cmd_buf), &cmd);
    if (len < 0) return;
    mv->c_part = part;
    mv->c_old = old;
    mv->c_new = new_node;
    mv->c_reason = reason;
    mv->cmd_busy = true;
    mv->refs++;
    mv->cmd = (struct proxy_cmd){.cb = on_cmd, .data = mv, .buf = mv->cmd_buf, .len = (size_t)len,
                                 .deadline_ms = util_mono_ms() + MOVE_CMD_DEADLINE_MS};
    proxy_cmd_submit(mv->p, &mv->cmd);
}

/* ---- filling one new member ---------------------------------------------------------------- */

static void run_step(struct proxy_move *mv, struct run *r);

/* The sources of R: the partition's other members that are up, then the
 * replaced server if it is up and no member any more. */
static unsigned sources(struct proxy_move *mv, struct run *r, const struct index_part *pt,
                        uint64_t out[MAX_SOURCES])
{
    unsigned k = 0;
    for (int i = 0; i < 3; i++)
        if (pt->nodes[i] != r->rec.node && proxy_blobs_is_up(mv->p->blobs, pt->nodes[i]))
            out[k++] = pt->nodes[i];
    bool member = pt->nodes[0] == r->rec.from || pt->nodes[1] == r->rec.from ||
                  pt->nodes[2] == r->rec.from;
    if (k < MAX_SOURCES && !member && proxy_blobs_is_up(mv->p->blobs, r->rec.from))
        out[k++] = r->rec.from;
    return k;
}

static void on_list(struct proxy_blobs_call *pc, int err, struct conn_frame *f)
{
    struct list_call *lc = pc->data;
    struct proxy_move *mv = lc->mv;
    struct run *r = current(mv) ? run_find(mv, lc->part, lc->dst) : NULL;
    if (r && r->page == lc->page && (r->phase == RUN_LIST || r->phase == RUN_COUNT)) {
        struct page_list *pl = &r->lists[lc->slot];
        struct wire_blob_list_resp m;
        if (err == 0 &&
            (wire_decode_blob_list_resp(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0 ||
             m.n > PROXY_MOVE_PAGE))
            err = -EPROTO;
        pl->err = err;
        pl->listed = true;
        if (err == 0) {
            for (uint32_t i = 0; i < m.n; i++) {
                struct wire_blob_entry e;
                wire_blob_list_entry(&m, i, &e);
                pl->ids[i] = e.blob_id;
                pl->lens[i] = e.len;
                pl->csums[i] = e.csum;
            }
            pl->n = m.n;
            pl->more = m.next_cursor != 0;
        }
        if (--r->lists_pending == 0) run_step(mv, r);
    }
    free(lc);
    unref(mv);
}

/* Ask NODE for a page of R's partition after CURSOR into slot SLOT. */
static bool send_list(struct proxy_move *mv, struct run *r, int slot, uint64_t node,
                      uint64_t cursor)
{
    struct page_list *pl = &r->lists[slot];
    if (!pl->ids) {
        pl->ids = malloc(PROXY_MOVE_PAGE * sizeof(*pl->ids));
        pl->lens = malloc(PROXY_MOVE_PAGE * sizeof(*pl->lens));
        pl->csums = malloc(PROXY_MOVE_PAGE * sizeof(*pl->csums));
    }
    struct list_call *lc = calloc(1, sizeof(*lc));
    if (!lc || !pl->ids || !pl->lens || !pl->csums) {
        free(lc);
        return false;
    }
    pl->node = node;
    pl->listed = false;
    pl->n = 0;
    pl->more = false;
    pl->err = 0;
    *lc = (struct list_call){.mv = mv, .part = r->rec.part, .dst = r->rec.node, .page = r->page,
                             .slot = slot};
    struct wire_blob_list_req req = {.partition = r->rec.part, .max = PROXY_MOVE_PAGE,
                                     .cursor = cursor};
    uint8_t fields[64];
    int len = wire_encode_blob_list_req(fields, sizeof(fields), &req);
    lc->call.cb = on_list;
    lc->call.data = lc;
    lc->call.node = node;
    mv->refs++;
    r->lists_pending++;
    proxy_blobs_call(mv->p->blobs, &lc->call, WIRE_BLOB_LIST, fields, (size_t)len, NULL);
    return true;
}

static void page_start(struct proxy_move *mv, struct run *r, const struct index_part *pt)
{
    page_free(r);
    r->page++;
    r->failed = false;
    r->awaiting = false;
    uint64_t src[MAX_SOURCES];
    unsigned ns = sources(mv, r, pt, src);
    if (!ns) {
        /* Nothing to copy from until a source is back. */
        r->phase = RUN_WAIT;
        r->retry_at_ms = util_mono_ms() + PROXY_MOVE_RETRY_MS;
        snprintf(r->last_err, sizeof(r->last_err), "no source server is up");
        return;
    }
    bool sent;
    if (r->phase == RUN_COUNT) {
        sent = send_list(mv, r, 0, src[0], r->count_cursor);
    } else {
        sent = false;
        for (unsigned i = 0; i < ns; i++) sent |= send_list(mv, r, (int)i, src[i], r->rec.cursor);
        if (proxy_blobs_is_up(mv->p->blobs, r->rec.node))
            send_list(mv, r, MAX_SOURCES, r->rec.node, r->rec.cursor);
    }
    r->awaiting = sent;
    if (!sent) {
        r->phase = RUN_WAIT;
        r->retry_at_ms = util_mono_ms() + PROXY_MOVE_RETRY_MS;
    }
}

static void on_mark(struct proxy_cmd *c, int err, uint64_t index,
                    const struct idxcmd_result *res)
{
    (void)index;
    struct mark_call *mc = bd_container_of(c, struct mark_call, cmd);
    struct proxy_move *mv = mc->mv;
    struct run *r = current(mv) ? run_find(mv, mc->part, mc->dst) : NULL;
    if (r) r->mark_busy = false;
    int e = err ? err : idxcmd_status_to_err(res->status);
    if (r && r->page == mc->page && r->phase == RUN_MARK) {
        if (e == 0) {
            r->rec.bytes_done = mc->bytes;
            r->page_bytes = 0;
            if (mc->done) {
                mv->n_done++;
                log_info(mv->p->tag, "move: partition %u filled on blob server %llu (%s, "
                         "%llu bytes)", r->rec.part, (unsigned long long)r->rec.node,
                         reason_name(r->rec.reason), (unsigned long long)r->rec.bytes_done);
                /* The record is gone; the next reconcile drops the run. */
                r->phase = RUN_WAIT;
                r->retry_at_ms = UINT64_MAX;
            } else {
                r->rec.cursor = mc->cursor;
                r->phase = RUN_LIST;
            }
        } else {
            snprintf(r->last_err, sizeof(r->last_err), "checkpoint: %s", bd_strerror(e));
            r->phase = RUN_WAIT;
            r->retry_at_ms = util_mono_ms() + PROXY_MOVE_RETRY_MS;
        }
    }
    free(mc);
    unref(mv);
}

static void send_mark(struct proxy_move *mv, struct run *r)
{
    struct mark_call *mc = calloc(1, sizeof(*mc));
    if (!mc) return;
    *mc = (struct mark_call){.mv = mv, .part = r->rec.part, .dst = r->rec.node, .page = r->page,
                             .done = r->bound == UINT64_MAX,
                             .cursor = r->bound == UINT64_MAX ? r->rec.cursor : r->bound,
                             .bytes = r->rec.bytes_done + r->page_bytes};
    struct idxcmd cmd = {.type = IDXCMD_MOVE_MARK};
    cmd.u.move_mark.part_id = mc->part;
    cmd.u.move_mark.node = mc->dst;
    cmd.u.move_mark.cursor = mc->cursor;
    cmd.u.move_mark.bytes_done = mc->bytes;
    cmd.u.move_mark.done = mc->done;
    int len = idxcmd_encode(mc->buf, sizeof(mc->buf), &cmd);
    if (len < 0) {
        free(mc);
        return;
    }
    r->phase = RUN_MARK;
    r->mark_busy = true;
    mv->refs++;
    mc->cmd = (struct proxy_cmd){.cb = on_mark, .buf = mc->buf, .len = (size_t)len,
                                 .deadline_ms = util_mono_ms() + MOVE_CMD_DEADLINE_MS};
    proxy_cmd_submit(mv->p, &mc->cmd);
}

static void on_pull(struct proxy_blobs_call *pc, int err, struct conn_frame *f)
{
    struct pull *pl = pc->data;
    struct proxy_move *mv = pl->mv;
    struct run *r = current(mv) ? run_find(mv, pl->part, pl->dst) : NULL;
    if (r && r->page == pl->page && r->phase == RUN_PULL) {
        r->in_flight--;
        struct wire_blob_pull_resp m;
        if (err == 0 &&
            (wire_decode_blob_pull_resp(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0 ||
             m.n != pl->n))
            err = -EPROTO;
        uint64_t ok_bytes = 0;
        if (err == 0) {
            for (uint32_t i = 0; i < pl->n; i++) {
                if (m.status[i] == WIRE_OK) {
                    ok_bytes += pl->ent[i].len;
                } else if (!r->failed) {
                    r->failed = true;
                    snprintf(r->last_err, sizeof(r->last_err),
                             "blob %llu from blob server %llu: %s",
                             (unsigned long long)pl->ent[i].blob_id, (unsigned long long)pl->src,
                             bd_strerror(wire_status_to_err(m.status[i])));
                }
            }
        } else {
            char why[120];
            r->failed = true;
            snprintf(r->last_err, sizeof(r->last_err), "pull from blob server %llu: %s",
                     (unsigned long long)pl->src,
                     f ? conn_error_text(f, why, sizeof(why)) : bd_strerror(err));
        }
        count_bytes(mv, r, ok_bytes);
        run_step(mv, r);
    }
    free(pl);
    unref(mv);
}

/* Refill the token bucket (rebuild_bytes_per_sec), a quarter second's
 * worth at most: about one proxy tick, so pulls sent from the tick keep the
 * rate, while an idle moment never saves up a second of copying to spend
 * at once (a burst at disk speed is what client p99 feels). */
static void tokens_refill(struct proxy_move *mv)
{
    uint64_t rate = mv->p->cfg->rebuild_bytes_per_sec, now = util_mono_ms();
    if (!rate) return;
    mv->tokens += (double)rate * (double)(now - mv->tokens_ms) / 1000.0;
    if (mv->tokens > (double)rate / PROXY_MOVE_BURST_DIV)
        mv->tokens = (double)rate / PROXY_MOVE_BURST_DIV;
    mv->tokens_ms = now;
}

/* The bytes one BLOB_PULL may carry: PROXY_MOVE_PULL_BYTES, or an eighth
 * of a second of the budget when that is less, so a pull (which the new
 * member copies as fast as it can) is a small step of the pacing, not a
 * burst. */
static uint64_t pull_bytes_max(const struct proxy_move *mv)
{
    uint64_t rate = mv->p->cfg->rebuild_bytes_per_sec;
    uint64_t max = rate ? rate / (2 * PROXY_MOVE_BURST_DIV) : PROXY_MOVE_PULL_BYTES;
    return max < PROXY_MOVE_PULL_BYTES ? max : PROXY_MOVE_PULL_BYTES;
}

/* Send queued pulls while the run has room and the bucket has tokens (a
 * pull may take the bucket below zero once: big pulls still go). */
static void pulls_send(struct proxy_move *mv, struct run *r)
{
    bool limited = mv->p->cfg->rebuild_bytes_per_sec != 0;
    while (r->queue && r->in_flight < PROXY_MOVE_PULLS && (!limited || mv->tokens > 0)) {
        struct pull *pl = r->queue;
        r->queue = pl->next;
        if (limited) mv->tokens -= (double)pl->bytes;
        struct proxy_blobs_node src;
        struct wire_blob_pull_req req = {.partition = pl->part, .n = pl->n, .src_id = pl->src,
                                         .entries_in = pl->ent};
        struct index_part pt;
        bool ok = proxy_blobs_info(mv->p->blobs, pl->src, &src);
        if (ok && index_read_begin(mv->rd) == 0) {
            ok = index_part_get(mv->rd, pl->part, &pt) == 0;
            index_read_end(mv->rd);
        } else {
            ok = false;
        }
        static uint8_t fields[64 + WIRE_PULL_MAX * WIRE_BLOB_ENTRY_LEN + 256];
        int len = -EINVAL;
        if (ok) {
            req.epoch = pt.epoch;
            req.src_addr = wire_cstr(src.addr);
            len = wire_encode_blob_pull_req(fields, sizeof(fields), &req);
        }
        r->in_flight++;
        pl->call.cb = on_pull;
        pl->call.data = pl;
        pl->call.node = r->rec.node;
        if (len < 0) {
            /* Fails through the callback like any other pull (deferred). */
            pl->call.node = 0;
            len = 0;
        }
        proxy_blobs_call(mv->p->blobs, &pl->call, WIRE_BLOB_PULL, fields, (size_t)len, NULL);
    }
}

/* The page's lists are in: decide what to copy (one read txn), queue the
 * pulls. */
static void page_plan(struct proxy_move *mv, struct run *r)
{
    struct rplan_page pages[RPLAN_REPLICAS];
    uint64_t src_ids[RPLAN_REPLICAS];
    bool any = false;
    for (int i = 0; i < MAX_SOURCES; i++) {
        struct page_list *pl = &r->lists[i];
        pages[i] = (struct rplan_page){.ids = pl->ids, .n = pl->n, .more = pl->more,
                                       .listed = pl->listed && !pl->err};
        src_ids[i] = pl->node;
        if (pages[i].listed && rplan_page_check(&pages[i], r->rec.cursor) < 0)
            pages[i].listed = false;
        if (pl->listed && pl->err && !r->failed) {
            r->failed = true;
            snprintf(r->last_err, sizeof(r->last_err), "listing blob server %llu: %s",
                     (unsigned long long)pl->node, bd_strerror(pl->err));
        }
        any |= pages[i].listed;
    }
    if (!any) {
        r->phase = RUN_WAIT;
        r->retry_at_ms = util_mono_ms() + PROXY_MOVE_RETRY_MS;
        return;
    }
    r->bound = rplan_bound(pages);
    struct rplan_id *diff = malloc(RPLAN_REPLICAS * PROXY_MOVE_PAGE * sizeof(*diff));
    if (!diff) {
        r->phase = RUN_WAIT;
        r->retry_at_ms = util_mono_ms() + PROXY_MOVE_RETRY_MS;
        return;
    }
    uint32_t nd = rplan_merge(pages, r->bound, diff, RPLAN_REPLICAS * PROXY_MOVE_PAGE);
    /* What the new member already has, up to where its own list reaches. */
    const struct page_list *dl = &r->lists[MAX_SOURCES];
    uint64_t dst_reach = !dl->listed || dl->err ? 0 : dl->more ? dl->ids[dl->n - 1] : UINT64_MAX;
    uint32_t di = 0, turn = (uint32_t)r->page;
    struct pull *tail = NULL;
    struct pull *cur[RPLAN_REPLICAS] = {NULL};
    uint64_t pull_max = pull_bytes_max(mv);
    if (index_read_begin(mv->rd) < 0) {
        free(diff);
        r->phase = RUN_WAIT;
        r->retry_at_ms = util_mono_ms() + PROXY_MOVE_RETRY_MS;
        return;
    }
    for (uint32_t k = 0; k < nd; k++) {
        uint64_t id = diff[k].id;
        while (di < dl->n && dl->ids[di] < id) di++;
        if (id <= dst_reach && di < dl->n && dl->ids[di] == id) continue; /* already there */
        struct index_blob b;
        if (index_blob_get(mv->rd, id, &b) < 0 || (b.flags & INDEX_BLOB_DEAD) ||
            b.partition != r->rec.part)
            continue; /* not live here: orphans and garbage are not copied */
        /* One of the sources that hold it, taken in turn. */
        int holders[RPLAN_REPLICAS], nh = 0;
        for (int i = 0; i < RPLAN_REPLICAS; i++)
            if (diff[k].present & (1u << i)) holders[nh++] = i;
        int s = holders[(turn++) % (unsigned)nh];
        struct pull *pl = cur[s];
        if (pl && (pl->n == WIRE_PULL_MAX || pl->bytes + b.len > pull_max))
            pl = NULL;
        if (!pl) {
            pl = calloc(1, sizeof(*pl));
            if (!pl) {
                r->failed = true;
                break;
            }
            *pl = (struct pull){.mv = mv, .part = r->rec.part, .dst = r->rec.node,
                                .page = r->page, .src = src_ids[s]};
            mv->refs++;
            if (tail) tail->next = pl;
            else r->queue = pl;
            tail = pl;
            cur[s] = pl;
        }
        pl->ent[pl->n++] = (struct wire_blob_entry){.blob_id = id, .len = b.len, .csum = b.csum};
        pl->bytes += b.len;
    }
    index_read_end(mv->rd);
    free(diff);
    r->phase = RUN_PULL;
}

/* The count pass has a page: add it up; at its end, start copying. */
static void count_page(struct run *r)
{
    struct page_list *pl = &r->lists[0];
    bool end = !pl->listed || pl->err || !pl->more || !pl->n;
    if (pl->listed && !pl->err)
        for (uint32_t i = 0; i < pl->n; i++) r->count_bytes += pl->lens[i];
    if (!end) {
        r->count_cursor = pl->ids[pl->n - 1];
        return; /* the next count page */
    }
    /* A list that failed leaves the estimate short: the copy goes on. */
    r->counted = true;
    r->bytes_total = r->rec.bytes_done + r->count_bytes;
    r->phase = RUN_LIST;
}

/* Advance R as far as it goes without waiting. */
static void run_step(struct proxy_move *mv, struct run *r)
{
    for (int round = 0; round < 4; round++) {
        if (r->lists_pending || r->mark_busy) return;
        uint64_t now = util_mono_ms();
        switch (r->phase) {
        case RUN_WAIT:
            if (now < r->retry_at_ms) return;
            r->phase = r->counted ? RUN_LIST : RUN_COUNT;
            continue;
        case RUN_COUNT:
        case RUN_LIST:
            if (r->awaiting) { /* the page's lists are in */
                r->awaiting = false;
                if (r->phase == RUN_COUNT) count_page(r);
                else page_plan(mv, r);
                continue;
            }
            {
                struct index_part pt;
                if (index_read_begin(mv->rd) < 0) return;
                int rc = index_part_get(mv->rd, r->rec.part, &pt);
                index_read_end(mv->rd);
                if (rc < 0) return;
                page_start(mv, r, &pt);
            }
            return;
        case RUN_PULL:
            if (r->queue || r->in_flight) {
                tokens_refill(mv);
                pulls_send(mv, r);
                return;
            }
            if (r->failed) {
                log_debug(mv->p->tag, "move: partition %u to %llu: page failed (%s); again "
                          "in %u ms", r->rec.part, (unsigned long long)r->rec.node, r->last_err,
                          PROXY_MOVE_RETRY_MS);
                r->phase = RUN_WAIT;
                r->retry_at_ms = now + PROXY_MOVE_RETRY_MS;
                return;
            }
            send_mark(mv, r);
            return;
        case RUN_MARK: return;
        }
    }
}

/* ---- the runs follow the index's moves table ------------------------------------------- */

static void reconcile(struct proxy_move *mv)
{
    struct proxy *p = mv->p;
    for (struct run *r = mv->runs; r; r = r->next) r->seen = false;
    if (index_read_begin(mv->rd) < 0) return;
    struct index_move recs[64];
    uint32_t n = 0, after_part = 0;
    uint64_t after_node = 0;
    do {
        if (index_move_list(mv->rd, after_part, after_node, recs, 64, &n) < 0) break;
        for (uint32_t i = 0; i < n; i++) {
            struct run *r = run_find(mv, recs[i].part, recs[i].node);
            if (!r) {
                r = calloc(1, sizeof(*r));
                if (!r) continue;
                r->rec = recs[i];
                r->phase = RUN_COUNT;
                r->count_cursor = recs[i].cursor;
                r->win_start_ms = util_mono_ms();
                r->next = mv->runs;
                mv->runs = r;
                if (recs[i].cursor) {
                    mv->n_resumed++;
                    log_info(p->tag, "move: partition %u to blob server %llu resumes after blob "
                             "%llu (%llu bytes already copied)", recs[i].part,
                             (unsigned long long)recs[i].node,
                             (unsigned long long)recs[i].cursor,
                             (unsigned long long)recs[i].bytes_done);
                }
            }
            r->seen = true;
        }
        if (n) {
            after_part = recs[n - 1].part;
            after_node = recs[n - 1].node;
        }
    } while (n == 64);
    index_read_end(mv->rd);
    for (struct run **rp = &mv->runs; *rp;) {
        struct run *r = *rp;
        if (!r->seen && !r->mark_busy) { /* closed (done, or its member moved again) */
            *rp = r->next;
            run_free(r);
        } else {
            rp = &r->next;
        }
    }
}

/* ---- deciding moves ------------------------------------------------------------------------ */

static uint64_t down_ms(struct proxy_move *mv, uint64_t id, uint64_t now)
{
    for (unsigned i = 0; i < mv->n_down; i++)
        if (mv->down[i].id == id) return now - mv->down[i].since_ms;
    return 0;
}

/* Who is down, and since when (this leader's view; a server never seen
 * up counts from when this proxy became leader). */
static void track_down(struct proxy_move *mv, const struct proxy_view *v, uint64_t now)
{
    struct down *next = malloc(BD_MAX(v->n_nodes, 1u) * sizeof(*next));
    if (!next) return;
    unsigned k = 0;
    for (unsigned i = 0; i < v->n_nodes; i++) {
        if (v->nodes[i].up) continue;
        uint64_t since = now; /* first seen down now (or when this leader began) */
        for (unsigned j = 0; j < mv->n_down; j++)
            if (mv->down[j].id == v->nodes[i].id) since = mv->down[j].since_ms;
        next[k++] = (struct down){v->nodes[i].id, since};
    }
    free(mv->down);
    mv->down = next;
    mv->n_down = k;
}

static void decide(struct proxy_move *mv, uint64_t now)
{
    struct proxy *p = mv->p;
    if (mv->cmd_busy) return;
    const struct proxy_view *v = proxy_view_get(p);
    if (!v) return;
    track_down(mv, v, now);
    uint64_t pb = p->cfg->partition_bytes;
    bool *skip = calloc(BD_MAX(v->n_parts, 1u), sizeof(*skip));
    if (!skip) return;
    unsigned drains = 0, rebalances = 0;
    for (struct run *r = mv->runs; r; r = r->next) {
        drains += r->rec.reason == IDXCMD_MOVE_DRAIN;
        rebalances += r->rec.reason == IDXCMD_MOVE_REBALANCE;
    }
    /* Partitions moving, or with a member down, are not moved again (a
     * lost member is the exception, below). */
    for (unsigned k = 0; k < v->n_parts; k++) {
        for (struct run *r = mv->runs; r; r = r->next)
            if (r->rec.part == v->parts[k].id) skip[k] = true;
        for (int i = 0; i < 3; i++) {
            int m = v->members[3 * k + i];
            if (m < 0 || !v->nodes[m].up) skip[k] = true;
        }
    }
    /* 1. Lost servers, whatever else is going on. */
    for (unsigned k = 0; k < v->n_parts; k++) {
        const int *m = &v->members[3 * k];
        uint64_t down[RPLAN_REPLICAS];
        for (int q = 0; q < 3; q++) /* a member no longer registered counts as long gone */
            down[q] = m[q] < 0 ? UINT64_MAX
                      : v->nodes[m[q]].up ? 0 : BD_MAX(down_ms(mv, v->parts[k].nodes[q], now), 1);
        /* The first member down long enough, while another is up to copy from. */
        int i = rplan_replace_slot(down, p->cfg->replace_after_ms);
        if (i >= 0) {
            uint64_t id = v->parts[k].nodes[i];
            enum proxy_plan_level level;
            int to = proxy_plan_replacement(v->nodes, v->n_nodes, m, i, pb, false, &level);
            if (to < 0) {
                if (!mv->warned_ms || now - mv->warned_ms >= 60000) {
                    mv->warned_ms = now;
                    log_warn(p->tag, "move: blob server %llu is lost but no up server outside "
                             "partition %u can replace it", (unsigned long long)id,
                             v->parts[k].id);
                }
                continue;
            }
            log_info(p->tag, "move: blob server %llu down for %llu ms: replacing it in partition "
                     "%u by %llu (apart by %s)", (unsigned long long)id,
                     (unsigned long long)down_ms(mv, id, now), v->parts[k].id,
                     (unsigned long long)v->nodes[to].id, proxy_plan_level_name(level));
            propose_move(mv, v->parts[k].id, id, v->nodes[to].id, IDXCMD_MOVE_LOST);
            free(skip);
            return;
        }
    }
    /* 2. Drains and 3. rebalancing: the plan's next move. */
    struct proxy_plan_move pm;
    if (proxy_plan_rebalance(v->parts, v->n_parts, v->members, skip, v->nodes, v->n_nodes, pb,
                             &pm) == 0) {
        int src = v->members[3 * pm.part + pm.slot];
        bool drain = !v->nodes[src].accepts;
        bool room = drain ? drains < PROXY_MOVE_DRAINS : rebalances < p->cfg->rebalance_moves;
        if (room) {
            log_info(p->tag, "move: partition %u from blob server %llu to %llu (%s)",
                     v->parts[pm.part].id, (unsigned long long)v->nodes[src].id,
                     (unsigned long long)v->nodes[pm.dst].id, drain ? "drain" : "rebalance");
            propose_move(mv, v->parts[pm.part].id, v->nodes[src].id, v->nodes[pm.dst].id,
                         drain ? IDXCMD_MOVE_DRAIN : IDXCMD_MOVE_REBALANCE);
        }
    }
    free(skip);
}

/* ---- tick, status ---------------------------------------------------------------------------- */

/* Every proxy (reads are served by all): tell the blob pool which members
 * moves are filling, from the index's moves table, so reads try them last. */
static void filling_refresh(struct proxy *p, struct proxy_move *mv)
{
    if (!p->blobs || index_read_begin(mv->rd) < 0) return;
    struct index_move recs[64];
    struct proxy_blobs_filling *set = NULL;
    unsigned n_set = 0, cap = 0;
    uint32_t n = 0, ap = 0;
    uint64_t an = 0;
    bool ok = true;
    do {
        if (index_move_list(mv->rd, ap, an, recs, 64, &n) < 0) {
            ok = false;
            break;
        }
        for (uint32_t i = 0; i < n && ok; i++) {
            if (n_set == cap) {
                cap = cap ? 2 * cap : 16;
                struct proxy_blobs_filling *g = realloc(set, cap * sizeof(*set));
                if (!g) {
                    ok = false;
                    break;
                }
                set = g;
            }
            set[n_set++] = (struct proxy_blobs_filling){.part = recs[i].part,
                                                        .node = recs[i].node};
        }
        if (n) {
            ap = recs[n - 1].part;
            an = recs[n - 1].node;
        }
    } while (ok && n == 64);
    index_read_end(mv->rd);
    if (ok) proxy_blobs_set_filling(p->blobs, set, n_set); /* in the table's key order */
    free(set);
}

void proxy_move_tick(struct proxy *p)
{
    struct proxy_move *mv = p->move;
    if (!mv || mv->stopping) return;
    uint64_t now = util_mono_ms();
    filling_refresh(p, mv);
    if (!consensus_is_leader(p->cons)) {
        if (mv->leader) {
            mv->leader = false;
            while (mv->runs) { /* the index keeps the checkpoints */
                struct run *r = mv->runs;
                mv->runs = r->next;
                run_free(r);
            }
        }
        return;
    }
    if (!mv->leader) {
        mv->leader = true;
        mv->leader_since_ms = now;
        mv->tokens_ms = now;
        free(mv->down);
        mv->down = NULL;
        mv->n_down = 0;
    }
    reconcile(mv);
    decide(mv, now);
    for (struct run *r = mv->runs; r; r = r->next) run_step(mv, r);
}

void proxy_move_progress(struct proxy *p, uint64_t node, struct proxy_move_progress *out)
{
    memset(out, 0, sizeof(*out));
    out->eta_s = -1;
    struct proxy_move *mv = p->move;
    uint64_t now = util_mono_ms();
    if (mv && mv->leader) {
        for (struct run *r = mv->runs; r; r = r->next) {
            if (node && r->rec.from != node) continue;
            out->moves++;
            if (!node) out->bytes_done += run_done(r);
            out->bytes_left += run_left(r);
            out->rate += run_rate(r, now);
        }
        /* A drain's copies so far, finished moves included (this leader's). */
        for (unsigned i = 0; node && i < mv->n_drained; i++)
            if (mv->drained[i].node == node) out->bytes_done = mv->drained[i].bytes;
    } else if (mv && index_read_begin(mv->rd) == 0) {
        /* A follower: what the checkpoints say. */
        struct index_move recs[64];
        uint32_t n = 0, ap = 0;
        uint64_t an = 0;
        do {
            if (index_move_list(mv->rd, ap, an, recs, 64, &n) < 0) break;
            for (uint32_t i = 0; i < n; i++)
                if (!node || recs[i].from == node) {
                    out->moves++;
                    out->bytes_done += recs[i].bytes_done;
                }
            if (n) {
                ap = recs[n - 1].part;
                an = recs[n - 1].node;
            }
        } while (n == 64);
        index_read_end(mv->rd);
    }
    if (node) {
        /* A drain also has the replicas not moved yet: their share of what
         * the server holds. */
        const struct proxy_view *v = proxy_view_get(p);
        int at = v ? proxy_view_find(v, node) : -1;
        if (at >= 0 && v->nodes[at].load) {
            /* Its disk still holds the replicas being moved too: count
             * the share of those it is still a member of. */
            uint32_t load = v->nodes[at].load;
            out->partitions_left = load;
            out->bytes_left += v->nodes[at].used / (load + out->moves) * load;
        }
    }
    if (out->rate > 0) out->eta_s = (double)out->bytes_left / out->rate;
}

void proxy_move_status(struct proxy *p, cJSON *out)
{
    struct proxy_move *mv = p->move;
    struct proxy_move_progress pr;
    proxy_move_progress(p, 0, &pr);
    cJSON *o = cJSON_AddObjectToObject(out, "rebuild");
    cJSON_AddNumberToObject(o, "moves", pr.moves);
    cJSON_AddNumberToObject(o, "bytes_done", (double)pr.bytes_done);
    cJSON_AddNumberToObject(o, "bytes_left", (double)pr.bytes_left);
    cJSON_AddNumberToObject(o, "rate_bytes_per_sec", pr.rate);
    if (pr.eta_s >= 0) cJSON_AddNumberToObject(o, "eta_s", pr.eta_s);
    else cJSON_AddNullToObject(o, "eta_s");
    cJSON_AddNumberToObject(o, "rebuild_bytes_per_sec", (double)p->cfg->rebuild_bytes_per_sec);
    if (mv) {
        cJSON_AddNumberToObject(o, "moves_started", (double)mv->n_started);
        cJSON_AddNumberToObject(o, "moves_done", (double)mv->n_done);
        cJSON_AddNumberToObject(o, "moves_resumed", (double)mv->n_resumed);
        cJSON_AddNumberToObject(o, "bytes_copied", (double)mv->bytes_copied);
    }
    cJSON *arr = cJSON_AddArrayToObject(o, "list");
    uint64_t now = util_mono_ms();
    if (mv && mv->leader) {
        for (struct run *r = mv->runs; r; r = r->next) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "partition", r->rec.part);
            cJSON_AddNumberToObject(j, "node", (double)r->rec.node);
            cJSON_AddNumberToObject(j, "from", (double)r->rec.from);
            cJSON_AddStringToObject(j, "reason", reason_name(r->rec.reason));
            cJSON_AddNumberToObject(j, "checkpoint", (double)r->rec.cursor);
            cJSON_AddNumberToObject(j, "bytes_done", (double)run_done(r));
            cJSON_AddNumberToObject(j, "bytes_left", (double)run_left(r));
            double rate = run_rate(r, now);
            cJSON_AddNumberToObject(j, "rate_bytes_per_sec", rate);
            if (rate > 0) cJSON_AddNumberToObject(j, "eta_s", (double)run_left(r) / rate);
            else cJSON_AddNullToObject(j, "eta_s");
            cJSON_AddBoolToObject(j, "counting", !r->counted);
            if (r->last_err[0]) cJSON_AddStringToObject(j, "last_error", r->last_err);
            cJSON_AddItemToArray(arr, j);
        }
    }
}

uint64_t proxy_move_replaced(struct proxy *p)
{
    return p->move ? p->move->n_lost : 0;
}

bool proxy_move_busy(struct proxy *p, uint32_t part)
{
    struct proxy_move *mv = p->move;
    if (!mv || index_read_begin(mv->rd) < 0) return false;
    struct index_move m;
    uint32_t n = 0;
    /* The first record after (part - 1, max): one of PART's if it has any. */
    bool busy = part && index_move_list(mv->rd, part - 1, UINT64_MAX, &m, 1, &n) == 0 && n &&
                m.part == part;
    index_read_end(mv->rd);
    return busy;
}

static double g_moves(void *a)
{
    struct proxy_move_progress pr;
    proxy_move_progress(((struct proxy_move *)a)->p, 0, &pr);
    return pr.moves;
}
static double g_left(void *a)
{
    struct proxy_move_progress pr;
    proxy_move_progress(((struct proxy_move *)a)->p, 0, &pr);
    return (double)pr.bytes_left;
}
static double g_rate(void *a)
{
    struct proxy_move_progress pr;
    proxy_move_progress(((struct proxy_move *)a)->p, 0, &pr);
    return pr.rate;
}
static double g_eta(void *a)
{
    struct proxy_move_progress pr;
    proxy_move_progress(((struct proxy_move *)a)->p, 0, &pr);
    return pr.eta_s;
}

int proxy_move_start(struct proxy *p)
{
    struct proxy_move *mv = calloc(1, sizeof(*mv));
    if (!mv) return -ENOMEM;
    mv->p = p;
    mv->refs = 1;
    if (index_reader_new(p->ix, &mv->rd) < 0) {
        free(mv);
        return -ENOMEM;
    }
    char l[96];
    snprintf(l, sizeof(l), "role=\"%s\"", p->tag);
    mv->c_bytes = metrics_counter("blockd_proxy_rebuild_bytes_copied_total",
                                  "Bytes copied to new replicas by moves (rebuilds, drains, "
                                  "rebalancing)", l);
    mv->c_moves = metrics_counter("blockd_proxy_rebuild_moves_started_total",
                                  "Replica moves started (MOVE_REPLICA)", l);
    metrics_gauge("blockd_proxy_rebuild_moves", "Replica moves under way", l, g_moves, mv, mv);
    metrics_gauge("blockd_proxy_rebuild_bytes_left", "Bytes left to copy by the moves under way",
                  l, g_left, mv, mv);
    metrics_gauge("blockd_proxy_rebuild_rate_bytes_per_second",
                  "Copy rate of the moves under way over the last seconds", l, g_rate, mv, mv);
    metrics_gauge("blockd_proxy_rebuild_eta_seconds",
                  "Time left for the moves under way at the current rate (-1: unknown)", l,
                  g_eta, mv, mv);
    p->move = mv;
    return 0;
}

void proxy_move_stop(struct proxy *p)
{
    struct proxy_move *mv = p->move;
    if (!mv) return;
    p->move = NULL;
    metrics_remove_owner(mv);
    mv->stopping = true;
    /* Before the index closes; nothing reads after stopping (current()). */
    index_reader_free(mv->rd);
    mv->rd = NULL;
    unref(mv);
}
