/* proxy_repair.c: heal, anti-entropy and replacement on the Raft leader
 * (see proxy_repair.h; the decisions themselves are in rplan.c).
 *
 * Why the leader: it is the one proxy whose index is never behind what has
 * been committed, and one actor per cluster means no two proxies copy the
 * same blob or race to replace the same server.  A new leader starts from
 * the index and its own liveness view; all it loses is the orphan ledger,
 * which only delays deletions.
 *
 * HEAL.  Every tick, a server whose heartbeat says n_bad > 0 (at most once
 * per RP_REPORT_MIN_MS), and every server at the start of a pass, is asked
 * for BLOB_REPORT.  Each bad blob is looked up in the index:
 *   live here (its partition, this server a member)  -> heal copy;
 *   dead (in the gc table)                           -> delete it now (GC
 *                                                       would; the copy is
 *                                                       unreadable anyway);
 *   unknown, or placed in another partition          -> an orphan: the
 *                                                       ledger decides when.
 * A heal reads the blob from the other members (failing over; C14: the
 * bytes are checked against the index checksum, not just the server's) and
 * puts it to the server that reported it, which accepts the same bytes
 * under the same id as a heal.
 *
 * SYNC (anti-entropy).  A pass visits every partition once, then the next
 * starts repair_interval_ms after the previous one started; partitions
 * marked urgent (a replica replaced, a server back from down) go first.
 * One partition at a time:
 *
 *   S_IDLE -> S_LISTING: BLOB_LIST page (RP_PAGE ids after the cursor) from
 *             each member that is up;
 *   S_LISTING -> S_DIFF: pages merged up to their common bound (rplan.h);
 *   S_DIFF:   at most RP_IDS_PER_STEP ids per step, one index read txn
 *             each: a live blob a member lacks is queued for a copy (PUT
 *             with the partition's current epoch); an id the index does not
 *             know is noted in the orphan ledger and deleted once it has
 *             been seen for orphan_grace_ms; dead blobs are GC's;
 *             -> S_LISTING after the cursor, or S_DRAIN at the end;
 *   S_DRAIN -> S_IDLE: once this partition's copies are done, its result
 *             (complete or not, counts) is recorded for /v1/cluster.
 *
 * A partition whose members change mid-sync (a replacement) is abandoned
 * and marked urgent.  A list that fails drops that member for the rest of
 * the sync (the partition is then not complete).  Work is bounded: ids per
 * step, RP_QUEUE_MAX queued copies (the diff waits when full), and
 * RP_COPIES_IN_FLIGHT copies / RP_COPY_BYTES_IN_FLIGHT bytes in flight.
 *
 * Why the orphan grace is safe: a write (proxy_io.c) puts its blob to three
 * servers and only then commits the index entry, within
 * PIO_WRITE_DEADLINE_MS; an entry proposed just before that deadline may
 * still commit an election later.  An id unknown to the index for twice
 * the deadline belongs to a write that failed, and never becomes live.
 * Deleting it leaves a tombstone (the id is never reused), so deleting too
 * early would lose a replica for good; deleting late only costs space.
 *
 * REPLACE.  A registered server down for replace_after_ms is swapped out of
 * its partitions, one REPLACE_REPLICA at a time, for the up, writable
 * non-member with the fewest partitions (rplan_pick); the partition is then
 * synced at once.  A partition with no member up is left alone.
 *
 * Lifetime: every operation in flight (list, report, copy, delete,
 * command) holds a reference; prepair_stop drops the owner's, and the
 * state is freed after the last completion.  Completions of work started
 * under an older leadership (r->gen) or an older sync (sync.gen) only
 * release what they hold. */
#include "proxy_repair.h"
#include "proxy_int.h"
#include "rplan.h"
#include "../bd.h"
#include "../log.h"
#include "../util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(CFG_ORPHAN_GRACE_MIN_MS >= 2 * PIO_WRITE_DEADLINE_MS,
               "the orphan grace must outlast twice a write's deadline");

#define RP_PAGE 1024u                       /* ids per BLOB_LIST page */
#define RP_IDS_PER_STEP 2048u               /* diff entries per step (one read txn) */
#define RP_COPIES_IN_FLIGHT 8u
#define RP_COPY_BYTES_IN_FLIGHT (64u << 20)
#define RP_QUEUE_MAX 8192u                  /* queued copies; the diff waits beyond */
#define RP_DELETES_IN_FLIGHT 32u
#define RP_REPORT_MIN_MS 1000u              /* between BLOB_REPORTs to one server */
#define RP_MAX_NODES 256u
#define RP_FIRST_PASS_MAX_MS 5000u          /* a new leader's first pass, at the latest */
#define RP_CMD_DEADLINE_MS 10000u
#define RP_LOG_EVERY_MS 60000u              /* rate limit for repeated warnings */

struct prepair;

/* A blob to copy from the members that hold it to one that lacks it. */
struct rp_copy {
    struct prepair *r;
    struct rp_copy *prev, *next;   /* in r's queue, then in r->running */
    uint64_t gen;                  /* r->gen when queued */
    uint64_t sync_gen;             /* the sync that wants it; 0 for a heal */
    bool heal;
    uint64_t blob_id;
    uint32_t partition;
    uint64_t epoch;
    uint32_t len;
    uint64_t csum;                 /* the index's */
    uint64_t dst;
    uint64_t src[RPLAN_REPLICAS];  /* 0: none */
    uint8_t *buf;                  /* owned until handed to the PUT */
    struct pblobs_get get;
    struct pblobs_call put;
};

struct rp_del {
    struct prepair *r;
    uint64_t gen;
    uint64_t sync_gen;             /* an orphan found by this sync; 0 otherwise */
    bool orphan;                   /* else a dead blob's bad copy */
    struct pblobs_del del;
};

struct rp_report {
    struct prepair *r;
    uint64_t gen;
    struct pblobs_call call;
};

struct rp_node {
    uint64_t id;
    uint64_t down_since_ms;        /* 0: up */
    uint64_t last_report_ms;
    bool report_busy;
};

/* The last sync of one partition, for /v1/cluster. */
struct rp_part {
    uint32_t id;
    bool urgent;                   /* sync before the rest of the pass */
    bool synced;
    bool complete;                 /* every live blob seen is on all three */
    uint8_t listed;                /* members listed to the end */
    uint64_t synced_wall_ms;
    uint64_t took_ms;
    uint32_t blobs, missing, copied, copy_errors, orphans_deleted;
};

enum sync_state {
    S_IDLE,                        /* no partition; slots may still await replies */
    S_LISTING,                     /* lists_pending pages outstanding */
    S_DIFF,                        /* diff[diff_pos..diff_n) to classify */
    S_DRAIN,                       /* all listed; waiting for copies_pending */
};

struct rp_slot {                   /* one member's list call */
    struct prepair *r;
    bool busy;                     /* a call is in flight on it */
    uint64_t sync_gen;
    int err;
    uint64_t *ids;                 /* RP_PAGE */
    uint32_t n;
    bool more;
    struct pblobs_call call;
};

struct rp_sync {
    enum sync_state state;
    uint64_t gen;                  /* 0 when idle */
    struct index_part part;        /* as read when the sync began */
    uint8_t listed;                /* members being listed */
    uint64_t cursor, bound;
    struct rp_slot slot[RPLAN_REPLICAS];
    unsigned lists_pending;
    struct rplan_id *diff;         /* RPLAN_REPLICAS * RP_PAGE */
    uint32_t diff_n, diff_pos;
    uint64_t started_ms;
    bool failed;                   /* a list failed or the members changed */
    uint32_t blobs, missing, copies_pending, copied, copy_errors, orphans_deleted;
    uint64_t bytes;
    char first_err[160];
};

struct prepair {
    struct proxy *p;
    const char *tag;
    unsigned refs;                 /* the owner's + one per operation in flight */
    bool stopping;
    bool leader;                   /* as of the last tick */
    uint64_t gen;                  /* bumped when leadership is lost and at stop */
    uint64_t leader_since_ms;
    bool stepping, step_again;     /* step() is not re-entered */

    struct rp_node nodes[RP_MAX_NODES];
    unsigned n_nodes;
    struct rp_part *parts;         /* sorted by id */
    uint32_t n_parts, cap_parts;

    uint32_t *pass_ids;
    uint32_t pass_n, pass_pos;
    bool pass_running;
    bool report_all;               /* ask every server for its report */
    uint64_t pass_started_ms, next_pass_ms;
    uint64_t last_pass_wall_ms, last_pass_took_ms;
    uint64_t pass_copied, pass_orphans;

    struct rp_sync sync;
    uint64_t sync_seq;

    struct rp_copy *q_head, *q_tail;
    uint32_t q_len;
    struct rp_copy *running;
    uint32_t n_running;
    uint64_t running_bytes;
    unsigned deletes_in_flight;

    struct rplan_orphans orphans;

    struct pcmd rcmd;
    bool rcmd_busy;
    uint8_t rbuf[64];
    uint32_t r_part;
    uint64_t r_old, r_new;
    uint64_t warned_ms;

    uint64_t n_passes, n_synced, n_copied, n_bytes, n_healed, n_copy_err, n_orphans,
        n_dead_deleted, n_replaced;
    struct metric_counter *c_copied, *c_bytes, *c_healed, *c_copy_err, *c_orphans, *c_synced,
        *c_replaced, *c_passes;
};

static void step(struct prepair *r);

/* ---- lifetime ------------------------------------------------------------------------ */

static void drop_queue(struct prepair *r)
{
    while (r->q_head) {
        struct rp_copy *c = r->q_head;
        r->q_head = c->next;
        free(c);
    }
    r->q_tail = NULL;
    r->q_len = 0;
}

static void rp_free(struct prepair *r)
{
    drop_queue(r);
    for (int i = 0; i < RPLAN_REPLICAS; i++) free(r->sync.slot[i].ids);
    free(r->sync.diff);
    free(r->pass_ids);
    free(r->parts);
    rplan_orphans_fini(&r->orphans);
    free(r);
}

static void unref(struct prepair *r)
{
    if (--r->refs == 0) rp_free(r);
}

/* Work started under generation GEN may go on. */
static bool current(const struct prepair *r, uint64_t gen)
{
    return !r->stopping && r->leader && r->gen == gen;
}

/* ---- partitions' sync records ----------------------------------------------------------- */

static struct rp_part *part_find(struct prepair *r, uint32_t id, bool add)
{
    uint32_t lo = 0, hi = r->n_parts;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r->parts[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    if (lo < r->n_parts && r->parts[lo].id == id) return &r->parts[lo];
    if (!add) return NULL;
    if (r->n_parts == r->cap_parts) {
        uint32_t cap = r->cap_parts ? r->cap_parts * 2 : 64;
        struct rp_part *np = realloc(r->parts, cap * sizeof(*np));
        if (!np) return NULL;
        r->parts = np;
        r->cap_parts = cap;
    }
    memmove(&r->parts[lo + 1], &r->parts[lo], (r->n_parts - lo) * sizeof(*r->parts));
    r->parts[lo] = (struct rp_part){.id = id};
    r->n_parts++;
    return &r->parts[lo];
}

static void mark_urgent(struct prepair *r, uint32_t id)
{
    struct rp_part *pt = part_find(r, id, true);
    if (pt) pt->urgent = true;
}

/* Every partition in the index: *OUT returned owned (free()). */
static int read_parts(struct prepair *r, struct index_part **out, uint32_t *n_out)
{
    struct proxy *p = r->p;
    struct index_part *all = NULL;
    uint32_t n = 0, after = 0, got = 0;
    int rc = proxy_read_begin(p);
    if (rc < 0) return rc;
    do {
        struct index_part *na = realloc(all, (n + 256) * sizeof(*all));
        if (!na) {
            rc = -ENOMEM;
            break;
        }
        all = na;
        rc = index_part_list(p->rd, after, all + n, 256, &got);
        if (rc < 0) break;
        n += got;
        if (got) after = all[n - 1].id;
    } while (got == 256);
    proxy_read_end(p);
    if (rc < 0) {
        free(all);
        return rc;
    }
    *out = all;
    *n_out = n;
    return 0;
}

static bool is_member(const struct index_part *pt, uint64_t node)
{
    for (int i = 0; i < RPLAN_REPLICAS; i++)
        if (pt->nodes[i] == node) return true;
    return false;
}

/* ---- leadership ------------------------------------------------------------------------- */

static void lose_leadership(struct prepair *r)
{
    r->gen++;
    r->leader = false;
    drop_queue(r);
    r->sync.state = S_IDLE; /* busy slots finish and are ignored (sync.gen) */
    r->sync.gen = 0;
    r->pass_running = false;
    r->n_parts = 0;
    r->n_nodes = 0;
    rplan_orphans_fini(&r->orphans);
    rplan_orphans_init(&r->orphans, 0);
}

static struct rp_node *node_find(struct prepair *r, uint64_t id)
{
    for (unsigned i = 0; i < r->n_nodes; i++)
        if (r->nodes[i].id == id) return &r->nodes[i];
    return NULL;
}

/* Refresh the registered servers and how long each has been down; a
 * server back from down gets its partitions synced first. */
static void refresh_nodes(struct prepair *r, uint64_t now)
{
    struct proxy *p = r->p;
    struct index_node nd[64];
    struct rp_node next[RP_MAX_NODES];
    unsigned nn = 0;
    uint64_t back[RP_MAX_NODES];
    unsigned n_back = 0;
    uint64_t after = 0;
    uint32_t got = 0;
    if (proxy_read_begin(p) < 0) return;
    do {
        if (index_node_list(p->rd, after, nd, 64, &got) < 0) {
            proxy_read_end(p);
            return;
        }
        for (uint32_t i = 0; i < got && nn < RP_MAX_NODES; i++) {
            if (nd[i].state == INDEX_NODE_RETIRED) continue;
            const struct rp_node *old = node_find(r, nd[i].id);
            struct rp_node *x = &next[nn++];
            *x = old ? *old : (struct rp_node){.id = nd[i].id};
            bool up = pblobs_is_up(p->blobs, x->id);
            if (up) {
                if (old && old->down_since_ms) back[n_back++] = x->id;
                x->down_since_ms = 0;
            } else if (!x->down_since_ms) {
                x->down_since_ms = now;
            }
        }
        if (got) after = nd[got - 1].id;
    } while (got == 64 && nn < RP_MAX_NODES);
    proxy_read_end(p);
    memcpy(r->nodes, next, nn * sizeof(*next));
    r->n_nodes = nn;
    if (!n_back) return;
    struct index_part *parts;
    uint32_t np;
    if (read_parts(r, &parts, &np) < 0) return;
    for (unsigned k = 0; k < n_back; k++) {
        log_info(r->tag, "repair: blob server %llu is back; syncing its partitions first",
                 (unsigned long long)back[k]);
        for (uint32_t i = 0; i < np; i++)
            if (is_member(&parts[i], back[k])) mark_urgent(r, parts[i].id);
    }
    free(parts);
}

/* How long NODE has been down (0 if up).  A member the index no longer
 * lists (retired) counts as down since this leader took over. */
static uint64_t down_for(struct prepair *r, uint64_t node, uint64_t now)
{
    const struct rp_node *x = node_find(r, node);
    if (!x && pblobs_is_up(r->p->blobs, node)) return 0; /* past RP_MAX_NODES */
    uint64_t since = x ? x->down_since_ms : r->leader_since_ms;
    return since ? BD_MAX(now - since, 1) : 0;
}

/* ---- copies ------------------------------------------------------------------------------- */

static void enqueue(struct prepair *r, struct rp_copy *c)
{
    c->r = r;
    c->gen = r->gen;
    c->prev = NULL;
    if (c->heal) { /* heals first: a server is serving checksum errors */
        c->next = r->q_head;
        if (r->q_head) r->q_head->prev = c;
        else r->q_tail = c;
        r->q_head = c;
    } else {
        c->next = NULL;
        c->prev = r->q_tail;
        if (r->q_tail) r->q_tail->next = c;
        else r->q_head = c;
        r->q_tail = c;
    }
    r->q_len++;
}

static bool copy_pending(struct prepair *r, uint64_t dst, uint64_t blob_id)
{
    for (struct rp_copy *c = r->q_head; c; c = c->next)
        if (c->dst == dst && c->blob_id == blob_id) return true;
    for (struct rp_copy *c = r->running; c; c = c->next)
        if (c->dst == dst && c->blob_id == blob_id) return true;
    return false;
}

static void copy_done(struct rp_copy *c, int err, const char *why)
{
    struct prepair *r = c->r;
    if (c->prev) c->prev->next = c->next;
    else r->running = c->next;
    if (c->next) c->next->prev = c->prev;
    r->n_running--;
    r->running_bytes -= c->len;
    free(c->buf);
    bool cur = current(r, c->gen);
    bool mine = cur && c->sync_gen && c->sync_gen == r->sync.gen;
    if (mine) r->sync.copies_pending--;
    if (cur && err == 0) {
        r->n_bytes += c->len;
        metric_add(r->c_bytes, c->len);
        if (c->heal) {
            r->n_healed++;
            metric_inc(r->c_healed);
            log_info(r->tag, "repair: healed blob %llu on blob server %llu (partition %u)",
                     (unsigned long long)c->blob_id, (unsigned long long)c->dst, c->partition);
        } else {
            r->n_copied++;
            r->pass_copied++;
            metric_inc(r->c_copied);
            if (mine) {
                r->sync.copied++;
                r->sync.bytes += c->len;
            }
            log_debug(r->tag, "repair: copied blob %llu to blob server %llu (partition %u)",
                      (unsigned long long)c->blob_id, (unsigned long long)c->dst, c->partition);
        }
    } else if (cur && err != -ECANCELED) {
        r->n_copy_err++;
        metric_inc(r->c_copy_err);
        char line[160];
        snprintf(line, sizeof(line), "blob %llu to blob server %llu: %s",
                 (unsigned long long)c->blob_id, (unsigned long long)c->dst,
                 why ? why : bd_strerror(err));
        if (mine) {
            if (!r->sync.copy_errors++) util_strlcpy(r->sync.first_err, line, sizeof(r->sync.first_err));
        } else {
            log_warn(r->tag, "repair: heal of %s", line);
        }
    }
    free(c);
    if (cur) step(r);
    unref(r);
}

static void release_buf(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    free(arg);
}

static void on_copy_put(struct pblobs_call *pc, int err, struct conn_frame *f)
{
    struct rp_copy *c = pc->data;
    char why[160];
    copy_done(c, err, err && f ? conn_error_text(f, why, sizeof(why)) : NULL);
}

static void on_copy_got(struct pblobs_get *g, int err)
{
    struct rp_copy *c = g->data;
    struct prepair *r = c->r;
    if (!current(r, c->gen)) {
        copy_done(c, -ECANCELED, NULL);
        return;
    }
    if (err == 0 && util_xxh3(c->buf, c->len) != c->csum) err = -BD_ECSUM; /* C14 */
    if (err) {
        copy_done(c, err, err == -BD_ECSUM ? "no replica has bytes matching the index checksum"
                                           : NULL);
        return;
    }
    struct wire_blob_put_req req = {.blob_id = c->blob_id, .partition = c->partition,
                                    .flags = WIRE_PUT_COMPRESSIBLE, .epoch = c->epoch,
                                    .csum = c->csum, .data_len = c->len};
    uint8_t fields[128];
    int n = wire_encode_blob_put_req(fields, sizeof(fields), &req);
    if (n < 0) {
        copy_done(c, n, NULL);
        return;
    }
    struct conn_payload pl = {.data = c->buf, .len = c->len, .release = release_buf,
                              .arg = c->buf};
    c->buf = NULL; /* the payload owns it now */
    c->put.cb = on_copy_put;
    c->put.data = c;
    c->put.node = c->dst;
    pblobs_call(r->p->blobs, &c->put, WIRE_BLOB_PUT, fields, (size_t)n, &pl);
}

static void start_copies(struct prepair *r)
{
    while (r->q_head && r->n_running < RP_COPIES_IN_FLIGHT &&
           (r->n_running == 0 || r->running_bytes + r->q_head->len <= RP_COPY_BYTES_IN_FLIGHT)) {
        struct rp_copy *c = r->q_head;
        r->q_head = c->next;
        if (r->q_head) r->q_head->prev = NULL;
        else r->q_tail = NULL;
        r->q_len--;
        c->prev = NULL;
        c->next = r->running;
        if (r->running) r->running->prev = c;
        r->running = c;
        r->n_running++;
        r->running_bytes += c->len;
        r->refs++;
        c->buf = malloc(BD_MAX(c->len, 1u));
        if (!c->buf) {
            copy_done(c, -ENOMEM, NULL);
            continue;
        }
        c->get = (struct pblobs_get){.cb = on_copy_got, .data = c, .blob_id = c->blob_id,
                                     .partition = c->partition, .off = 0, .len = c->len,
                                     .dst = c->buf};
        memcpy(c->get.nodes, c->src, sizeof(c->get.nodes));
        pblobs_get(r->p->blobs, &c->get);
    }
}

/* Queue a copy of blob B (partition PT, members' presence PRESENT) to
 * member DST_SLOT.  false if out of memory. */
static bool want_copy(struct prepair *r, const struct index_part *pt, const struct index_blob *b,
                      uint8_t present, int dst_slot, bool heal)
{
    struct rp_copy *c = calloc(1, sizeof(*c));
    if (!c) return false;
    c->heal = heal;
    c->sync_gen = heal ? 0 : r->sync.gen;
    c->blob_id = b->id;
    c->partition = pt->id;
    c->epoch = pt->epoch;
    c->len = b->len;
    c->csum = b->csum;
    c->dst = pt->nodes[dst_slot];
    int k = 0;
    for (int i = 0; i < RPLAN_REPLICAS; i++)
        if (i != dst_slot && (present & (1u << i))) c->src[k++] = pt->nodes[i];
    enqueue(r, c);
    if (!heal) r->sync.copies_pending++;
    return true;
}

/* ---- deletes ------------------------------------------------------------------------------- */

static void on_deleted(struct pblobs_del *d, int err)
{
    struct rp_del *x = bd_container_of(d, struct rp_del, del);
    struct prepair *r = x->r;
    r->deletes_in_flight--;
    if (current(r, x->gen)) {
        if (err == 0 || err == -ENOENT) {
            if (x->orphan) {
                r->n_orphans++;
                r->pass_orphans++;
                metric_inc(r->c_orphans);
                rplan_orphan_forget(&r->orphans, d->node, d->blob_id);
                if (x->sync_gen && x->sync_gen == r->sync.gen) r->sync.orphans_deleted++;
                log_debug(r->tag, "repair: deleted orphan blob %llu (partition %u) on blob "
                          "server %llu", (unsigned long long)d->blob_id, d->partition,
                          (unsigned long long)d->node);
            } else {
                r->n_dead_deleted++;
                log_info(r->tag, "repair: deleted the bad copy of dead blob %llu on blob "
                         "server %llu", (unsigned long long)d->blob_id,
                         (unsigned long long)d->node);
            }
        } else {
            log_warn(r->tag, "repair: deleting blob %llu (partition %u) on blob server %llu: %s",
                     (unsigned long long)d->blob_id, d->partition, (unsigned long long)d->node,
                     bd_strerror(err));
        }
        step(r);
    }
    free(x);
    unref(r);
}

/* Delete BLOB_ID of PARTITION on NODE.  false if the limit of deletes in
 * flight is reached (the caller tries again in a later pass). */
static bool delete_copy(struct prepair *r, uint64_t node, uint32_t partition, uint64_t blob_id,
                        bool orphan)
{
    if (r->deletes_in_flight >= RP_DELETES_IN_FLIGHT) return false;
    struct rp_del *x = calloc(1, sizeof(*x));
    if (!x) return false;
    x->r = r;
    x->gen = r->gen;
    x->orphan = orphan;
    x->sync_gen = orphan && r->sync.state != S_IDLE && r->sync.part.id == partition ? r->sync.gen : 0;
    x->del = (struct pblobs_del){.cb = on_deleted, .blob_id = blob_id, .partition = partition,
                                 .node = node};
    r->deletes_in_flight++;
    r->refs++;
    pblobs_delete(r->p->blobs, &x->del);
    return true;
}

/* An index-unknown copy of BLOB_ID on NODE: delete it once it is due. */
static void orphan_seen(struct prepair *r, uint64_t node, uint32_t partition, uint64_t blob_id,
                        uint64_t now)
{
    int due = rplan_orphan_note(&r->orphans, node, partition, blob_id, now,
                                r->p->cfg->orphan_grace_ms);
    if (due == 1) {
        log_info(r->tag, "repair: deleting orphan blob %llu (partition %u) on blob server %llu: "
                 "unknown to the index for %llu ms", (unsigned long long)blob_id, partition,
                 (unsigned long long)node, (unsigned long long)r->p->cfg->orphan_grace_ms);
        delete_copy(r, node, partition, blob_id, true);
    }
}

/* ---- heal: BLOB_REPORT ------------------------------------------------------------------------ */

static void handle_report(struct prepair *r, uint64_t node, const struct wire_blob_report_resp *m)
{
    struct proxy *p = r->p;
    uint64_t now = util_mono_ms();
    if (m->n_bad == 0) return;
    if (proxy_read_begin(p) < 0) return;
    for (uint32_t i = 0; i < m->n_bad; i++) {
        struct wire_bad_blob bb;
        wire_blob_report_bad(m, i, &bb);
        struct index_blob b;
        struct index_part pt;
        int rc = index_blob_get(p->rd, bb.blob_id, &b);
        if (rc == -ENOENT || (rc == 0 && b.partition != bb.partition)) {
            orphan_seen(r, node, bb.partition, bb.blob_id, now);
        } else if (rc < 0) {
            break;
        } else if (b.flags & INDEX_BLOB_DEAD) {
            delete_copy(r, node, bb.partition, bb.blob_id, false);
        } else if (index_part_get(p->rd, b.partition, &pt) == 0 && is_member(&pt, node)) {
            if (copy_pending(r, node, b.id) || r->q_len >= RP_QUEUE_MAX) continue;
            int slot = 0;
            while (pt.nodes[slot] != node) slot++;
            if (!want_copy(r, &pt, &b, (uint8_t)(7u & ~(1u << slot)), slot, true)) break;
        }
        /* else: a stray copy on a former member; it serves nobody. */
    }
    proxy_read_end(p);
}

static void on_report(struct pblobs_call *pc, int err, struct conn_frame *f)
{
    struct rp_report *x = pc->data;
    struct prepair *r = x->r;
    struct rp_node *nd = node_find(r, pc->node);
    if (nd) nd->report_busy = false;
    if (current(r, x->gen)) {
        struct wire_blob_report_resp m;
        if (err) {
            log_debug(r->tag, "repair: BLOB_REPORT from %llu: %s", (unsigned long long)pc->node,
                      bd_strerror(err));
        } else if (wire_decode_blob_report_resp(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0 ||
                   m.node_id != pc->node) {
            log_warn(r->tag, "repair: malformed BLOB_REPORT from blob server %llu",
                     (unsigned long long)pc->node);
        } else {
            handle_report(r, pc->node, &m);
            step(r);
        }
    }
    free(x);
    unref(r);
}

static void send_reports(struct prepair *r, uint64_t now)
{
    struct pblob_node_info info[RP_MAX_NODES];
    unsigned n = BD_MIN(pblobs_list(r->p->blobs, info, RP_MAX_NODES), RP_MAX_NODES);
    for (unsigned i = 0; i < r->n_nodes; i++) {
        struct rp_node *nd = &r->nodes[i];
        if (nd->report_busy || nd->down_since_ms) continue;
        uint32_t n_bad = 0;
        for (unsigned k = 0; k < n; k++)
            if (info[k].id == nd->id) n_bad = info[k].n_bad;
        if (!r->report_all && !(n_bad && now - nd->last_report_ms >= RP_REPORT_MIN_MS)) continue;
        struct rp_report *x = calloc(1, sizeof(*x));
        if (!x) return;
        x->r = r;
        x->gen = r->gen;
        x->call.cb = on_report;
        x->call.data = x;
        x->call.node = nd->id;
        struct wire_blob_report_req req = {0};
        uint8_t fields[16];
        int len = wire_encode_blob_report_req(fields, sizeof(fields), &req);
        nd->report_busy = true;
        nd->last_report_ms = now;
        r->refs++;
        pblobs_call(r->p->blobs, &x->call, WIRE_BLOB_REPORT, fields, (size_t)len, NULL);
    }
    r->report_all = false;
}

/* ---- sync: one partition -------------------------------------------------------------------- */

static void on_list(struct pblobs_call *pc, int err, struct conn_frame *f)
{
    struct rp_slot *sl = pc->data;
    struct prepair *r = sl->r;
    struct rp_sync *s = &r->sync;
    sl->busy = false;
    if (!r->stopping && s->state == S_LISTING && sl->sync_gen == s->gen) {
        struct wire_blob_list_resp m;
        if (err == 0 && (wire_decode_blob_list_resp(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0 ||
                         m.n > RP_PAGE))
            err = -EPROTO;
        if (err == 0) {
            for (uint32_t i = 0; i < m.n; i++) {
                struct wire_blob_entry e;
                wire_blob_list_entry(&m, i, &e);
                sl->ids[i] = e.blob_id;
            }
            sl->n = m.n;
            sl->more = m.next_cursor != 0;
        }
        sl->err = err;
        if (--s->lists_pending == 0) step(r);
    }
    unref(r);
}

static void list_members(struct prepair *r)
{
    struct rp_sync *s = &r->sync;
    struct wire_blob_list_req req = {.partition = s->part.id, .max = RP_PAGE, .cursor = s->cursor};
    uint8_t fields[64];
    int len = wire_encode_blob_list_req(fields, sizeof(fields), &req);
    s->state = S_LISTING;
    s->lists_pending = 0;
    for (int i = 0; i < RPLAN_REPLICAS; i++) {
        struct rp_slot *sl = &s->slot[i];
        if (!(s->listed & (1u << i))) continue;
        if (len < 0 || sl->busy) { /* a reply of an abandoned sync is still owed on it */
            s->listed &= (uint8_t) ~(1u << i);
            s->failed = true;
            continue;
        }
        sl->r = r;
        sl->busy = true;
        sl->sync_gen = s->gen;
        sl->err = 0;
        sl->n = 0;
        sl->more = false;
        sl->call.cb = on_list;
        sl->call.data = sl;
        sl->call.node = s->part.nodes[i];
        s->lists_pending++;
        r->refs++;
        pblobs_call(r->p->blobs, &sl->call, WIRE_BLOB_LIST, fields, (size_t)len, NULL);
    }
    if (!s->lists_pending) s->state = S_DRAIN;
}

static bool sync_begin(struct prepair *r, uint32_t part_id)
{
    struct proxy *p = r->p;
    struct rp_sync *s = &r->sync;
    struct index_part pt;
    if (proxy_read_begin(p) < 0) return false;
    int rc = index_part_get(p->rd, part_id, &pt);
    proxy_read_end(p);
    if (rc < 0) return false;
    s->gen = ++r->sync_seq;
    s->part = pt;
    s->cursor = 0;
    s->bound = 0;
    s->diff_n = s->diff_pos = 0;
    s->started_ms = util_mono_ms();
    s->failed = false;
    s->blobs = s->missing = s->copies_pending = s->copied = s->copy_errors = 0;
    s->orphans_deleted = 0;
    s->bytes = 0;
    s->first_err[0] = 0;
    s->listed = 0;
    for (int i = 0; i < RPLAN_REPLICAS; i++)
        if (pblobs_is_up(p->blobs, pt.nodes[i])) s->listed |= (uint8_t)(1u << i);
    if (s->listed != 7) s->failed = true;
    list_members(r);
    return true;
}

static void sync_after_lists(struct prepair *r)
{
    struct rp_sync *s = &r->sync;
    struct rplan_page pages[RPLAN_REPLICAS];
    for (int i = 0; i < RPLAN_REPLICAS; i++) {
        struct rp_slot *sl = &s->slot[i];
        pages[i] = (struct rplan_page){.ids = sl->ids, .n = sl->n, .more = sl->more,
                                       .listed = (s->listed >> i) & 1};
        if (!pages[i].listed) continue;
        if (sl->err == 0 && rplan_page_check(&pages[i], s->cursor) < 0) sl->err = -EPROTO;
        if (sl->err) {
            log_warn(r->tag, "repair: listing partition %u on blob server %llu: %s",
                     s->part.id, (unsigned long long)s->part.nodes[i], bd_strerror(sl->err));
            pages[i].listed = false;
            s->listed &= (uint8_t) ~(1u << i);
            s->failed = true;
        }
    }
    if (!s->listed) {
        s->state = S_DRAIN;
        return;
    }
    s->bound = rplan_bound(pages);
    s->diff_n = rplan_merge(pages, s->bound, s->diff, RPLAN_REPLICAS * RP_PAGE);
    s->diff_pos = 0;
    s->state = S_DIFF;
}

/* Classify a bounded slice of the diff in one read txn. */
static void sync_diff(struct prepair *r)
{
    struct proxy *p = r->p;
    struct rp_sync *s = &r->sync;
    uint64_t now = util_mono_ms();
    struct index_part cur;
    if (proxy_read_begin(p) < 0) return;
    if (index_part_get(p->rd, s->part.id, &cur) < 0 ||
        memcmp(cur.nodes, s->part.nodes, sizeof(cur.nodes)) != 0) {
        proxy_read_end(p);
        log_info(r->tag, "repair: partition %u changed members during its sync; again soon",
                 s->part.id);
        s->failed = true;
        mark_urgent(r, s->part.id);
        s->state = S_DRAIN;
        return;
    }
    for (uint32_t k = 0; s->diff_pos < s->diff_n && k < RP_IDS_PER_STEP; k++) {
        if (r->q_len >= RP_QUEUE_MAX) break; /* copies catch up first */
        const struct rplan_id *d = &s->diff[s->diff_pos];
        struct index_blob b;
        int rc = index_blob_get(p->rd, d->id, &b);
        if (rc < 0 && rc != -ENOENT) {
            s->failed = true;
            break;
        }
        struct rplan_blob rb = {.known = rc == 0, .dead = rc == 0 && (b.flags & INDEX_BLOB_DEAD),
                                .partition = rc == 0 ? b.partition : 0};
        switch (rplan_classify(&rb, cur.id)) {
        case RPLAN_KEEP: {
            s->blobs++;
            uint8_t miss = rplan_missing(s->listed, d->present);
            for (int i = 0; i < RPLAN_REPLICAS; i++) {
                if (r->orphans.n && (d->present & (1u << i)))
                    rplan_orphan_forget(&r->orphans, cur.nodes[i], d->id);
                if (!(miss & (1u << i))) continue;
                s->missing++;
                if (!want_copy(r, &cur, &b, d->present, i, false)) s->failed = true;
            }
            break;
        }
        case RPLAN_ORPHAN:
            for (int i = 0; i < RPLAN_REPLICAS; i++)
                if (d->present & (1u << i)) orphan_seen(r, cur.nodes[i], cur.id, d->id, now);
            break;
        case RPLAN_GC:
            break;
        }
        s->diff_pos++;
    }
    proxy_read_end(p);
    if (s->diff_pos < s->diff_n) return;
    if (s->bound == UINT64_MAX) {
        s->state = S_DRAIN;
        return;
    }
    s->cursor = s->bound;
    list_members(r);
}

static void sync_finish(struct prepair *r)
{
    struct rp_sync *s = &r->sync;
    struct rp_part *pt = part_find(r, s->part.id, true);
    bool complete = s->listed == 7 && !s->failed && s->copy_errors == 0 && s->missing == s->copied;
    uint64_t took = util_mono_ms() - s->started_ms;
    if (pt) {
        pt->synced = true;
        pt->complete = complete;
        pt->listed = s->listed;
        pt->synced_wall_ms = util_wall_ms();
        pt->took_ms = took;
        pt->blobs = s->blobs;
        pt->missing = s->missing;
        pt->copied = s->copied;
        pt->copy_errors = s->copy_errors;
        pt->orphans_deleted = s->orphans_deleted;
    }
    r->n_synced++;
    metric_inc(r->c_synced);
    char sz[32];
    if (s->copy_errors)
        log_warn(r->tag, "repair: partition %u: %u of %u missing copies failed (first: %s)",
                 s->part.id, s->copy_errors, s->missing, s->first_err);
    if (s->missing || s->orphans_deleted)
        log_info(r->tag, "repair: partition %u synced in %llu ms: %u live blobs, %u copies "
                 "missing, %u copied (%s), %u orphans deleted%s", s->part.id,
                 (unsigned long long)took, s->blobs, s->missing, s->copied,
                 util_fmt_size(s->bytes, sz, sizeof(sz)), s->orphans_deleted,
                 complete ? "" : "; not complete");
    else
        log_debug(r->tag, "repair: partition %u in sync (%u live blobs%s)", s->part.id, s->blobs,
                  complete ? "" : ", not every member listed");
    s->state = S_IDLE;
    s->gen = 0;
}

/* ---- passes ----------------------------------------------------------------------------------- */

static void pass_start(struct prepair *r, uint64_t now)
{
    struct index_part *parts;
    uint32_t n;
    if (read_parts(r, &parts, &n) < 0) return;
    uint32_t *ids = malloc(BD_MAX(n, 1u) * sizeof(*ids));
    if (!ids) {
        free(parts);
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        ids[i] = parts[i].id;
        part_find(r, parts[i].id, true);
    }
    free(parts);
    free(r->pass_ids);
    r->pass_ids = ids;
    r->pass_n = n;
    r->pass_pos = 0;
    r->pass_running = true;
    r->pass_started_ms = now;
    r->pass_copied = r->pass_orphans = 0;
    r->report_all = true;
}

static void pass_end(struct prepair *r, uint64_t now)
{
    r->pass_running = false;
    r->n_passes++;
    metric_inc(r->c_passes);
    r->last_pass_wall_ms = util_wall_ms();
    r->last_pass_took_ms = now - r->pass_started_ms;
    r->next_pass_ms = r->pass_started_ms + r->p->cfg->repair_interval_ms;
    /* Orphans not seen again in this pass went away (or their server is
     * down: they start over when it returns, which only delays them). */
    rplan_orphans_prune(&r->orphans, r->pass_started_ms);
    if (r->pass_copied || r->pass_orphans)
        log_info(r->tag, "repair: pass over %u partitions in %llu ms: %llu blobs copied, %llu "
                 "orphans deleted", r->pass_n, (unsigned long long)r->last_pass_took_ms,
                 (unsigned long long)r->pass_copied, (unsigned long long)r->pass_orphans);
}

/* Start syncing the next partition: urgent ones first, then the pass. */
static bool sync_next(struct prepair *r)
{
    uint64_t now = util_mono_ms();
    for (int i = 0; i < RPLAN_REPLICAS; i++)
        if (r->sync.slot[i].busy) return false; /* an abandoned sync's reply is owed */
    for (uint32_t i = 0; i < r->n_parts; i++) {
        if (!r->parts[i].urgent) continue;
        r->parts[i].urgent = false;
        if (sync_begin(r, r->parts[i].id)) return true;
    }
    if (!r->pass_running) {
        if (now < r->next_pass_ms) return false;
        pass_start(r, now);
        if (!r->pass_running) return false;
    }
    while (r->pass_pos < r->pass_n)
        if (sync_begin(r, r->pass_ids[r->pass_pos++])) return true;
    pass_end(r, now);
    return false;
}

static void step(struct prepair *r)
{
    if (r->stepping) {
        r->step_again = true;
        return;
    }
    r->stepping = true;
    for (int round = 0; round < 8; round++) {
        r->step_again = false;
        if (r->stopping || !r->leader) break;
        start_copies(r);
        struct rp_sync *s = &r->sync;
        enum sync_state before = s->state;
        switch (s->state) {
        case S_IDLE: sync_next(r); break;
        case S_LISTING:
            if (!s->lists_pending) sync_after_lists(r);
            break;
        case S_DIFF: sync_diff(r); break;
        case S_DRAIN:
            if (!s->copies_pending) sync_finish(r);
            break;
        }
        start_copies(r);
        if (s->state == before && !r->step_again) break;
    }
    r->stepping = false;
}

/* ---- replace ------------------------------------------------------------------------------------ */

static void on_replaced(struct pcmd *c, int err, uint64_t index, const struct idx_result *res)
{
    (void)index;
    struct prepair *r = c->data;
    r->rcmd_busy = false;
    if (!r->stopping) {
        int e = err ? err : idx_status_to_err(res->status);
        if (e == 0) {
            r->n_replaced++;
            metric_inc(r->c_replaced);
            log_info(r->tag, "repair: partition %u: blob server %llu replaced by %llu (epoch %llu)",
                     r->r_part, (unsigned long long)r->r_old, (unsigned long long)r->r_new,
                     (unsigned long long)res->id);
            if (r->leader) mark_urgent(r, r->r_part);
        } else {
            log_warn(r->tag, "repair: replacing blob server %llu in partition %u: %s",
                     (unsigned long long)r->r_old, r->r_part, bd_strerror(e));
        }
    }
    unref(r);
}

static void maybe_replace(struct prepair *r, uint64_t now)
{
    struct proxy *p = r->p;
    uint64_t after = p->cfg->replace_after_ms;
    if (r->rcmd_busy) return;
    bool any = false;
    for (unsigned i = 0; i < r->n_nodes; i++)
        if (r->nodes[i].down_since_ms && now - r->nodes[i].down_since_ms >= after) any = true;
    if (!any) return;
    struct index_part *parts;
    uint32_t np;
    if (read_parts(r, &parts, &np) < 0) return;
    for (uint32_t k = 0; k < np; k++) {
        uint64_t down[RPLAN_REPLICAS];
        for (int i = 0; i < RPLAN_REPLICAS; i++) down[i] = down_for(r, parts[k].nodes[i], now);
        int slot = rplan_replace_slot(down, after);
        if (slot < 0) continue;
        struct pblob_node_info info[RP_MAX_NODES];
        unsigned ni = BD_MIN(pblobs_list(p->blobs, info, RP_MAX_NODES), RP_MAX_NODES);
        struct rplan_node cand[RP_MAX_NODES];
        for (unsigned i = 0; i < r->n_nodes; i++) {
            struct rplan_node *c = &cand[i];
            *c = (struct rplan_node){.id = r->nodes[i].id, .up = !r->nodes[i].down_since_ms};
            for (unsigned q = 0; q < ni; q++)
                if (info[q].id == c->id) {
                    c->writable = !info[q].read_only;
                    c->free_bytes = info[q].capacity > info[q].used
                                        ? info[q].capacity - info[q].used : 0;
                }
            for (uint32_t q = 0; q < np; q++)
                if (is_member(&parts[q], c->id)) c->load++;
        }
        int pick = rplan_pick(cand, r->n_nodes, parts[k].nodes);
        if (pick < 0) {
            if (!r->warned_ms || now - r->warned_ms >= RP_LOG_EVERY_MS) {
                r->warned_ms = now;
                log_warn(r->tag, "repair: blob server %llu has been down %llu ms but no up "
                         "server outside partition %u can replace it",
                         (unsigned long long)parts[k].nodes[slot],
                         (unsigned long long)down[slot], parts[k].id);
            }
            continue;
        }
        struct idxcmd cmd = {.type = IDXCMD_REPLACE_REPLICA};
        cmd.u.replace_replica.part_id = parts[k].id;
        cmd.u.replace_replica.old_node = parts[k].nodes[slot];
        cmd.u.replace_replica.new_node = cand[pick].id;
        int len = idxcmd_encode(r->rbuf, sizeof(r->rbuf), &cmd);
        if (len < 0) continue;
        r->r_part = parts[k].id;
        r->r_old = parts[k].nodes[slot];
        r->r_new = cand[pick].id;
        log_info(r->tag, "repair: blob server %llu down for %llu ms: replacing it in partition "
                 "%u by %llu", (unsigned long long)r->r_old, (unsigned long long)down[slot],
                 r->r_part, (unsigned long long)r->r_new);
        r->rcmd = (struct pcmd){.cb = on_replaced, .data = r, .buf = r->rbuf, .len = (size_t)len,
                                .deadline_ms = now + RP_CMD_DEADLINE_MS};
        r->rcmd_busy = true;
        r->refs++;
        pcmd_submit(p, &r->rcmd);
        break;
    }
    free(parts);
}

/* ---- tick, start, stop --------------------------------------------------------------------------- */

void prepair_tick(struct proxy *p)
{
    struct prepair *r = p->repair;
    if (!r || r->stopping) return;
    uint64_t now = util_mono_ms();
    if (!consensus_is_leader(p->cons)) {
        if (r->leader) lose_leadership(r);
        return;
    }
    if (!r->leader) {
        r->leader = true;
        r->leader_since_ms = now;
        r->next_pass_ms = now + BD_MIN(p->cfg->repair_interval_ms, RP_FIRST_PASS_MAX_MS);
    }
    refresh_nodes(r, now);
    maybe_replace(r, now);
    send_reports(r, now);
    step(r);
}

static double g_last_pass(void *a)
{
    return (double)((struct prepair *)a)->last_pass_wall_ms / 1000.0;
}
static double g_pass_took(void *a)
{
    return (double)((struct prepair *)a)->last_pass_took_ms / 1000.0;
}
static double g_incomplete(void *a)
{
    const struct prepair *r = a;
    unsigned k = 0;
    for (uint32_t i = 0; i < r->n_parts; i++)
        if (r->parts[i].synced && !r->parts[i].complete) k++;
    return k;
}
static double g_orphans(void *a)
{
    return ((struct prepair *)a)->orphans.n;
}
static double g_queue(void *a)
{
    const struct prepair *r = a;
    return r->q_len + r->n_running;
}

int prepair_start(struct proxy *p)
{
    struct prepair *r = calloc(1, sizeof(*r));
    if (!r) return -ENOMEM;
    r->p = p;
    r->tag = p->tag;
    r->refs = 1;
    rplan_orphans_init(&r->orphans, 0);
    r->sync.diff = malloc(RPLAN_REPLICAS * RP_PAGE * sizeof(*r->sync.diff));
    bool ok = r->sync.diff != NULL;
    for (int i = 0; i < RPLAN_REPLICAS; i++) {
        r->sync.slot[i].r = r;
        r->sync.slot[i].ids = malloc(RP_PAGE * sizeof(uint64_t));
        if (!r->sync.slot[i].ids) ok = false;
    }
    if (!ok) {
        rp_free(r);
        return -ENOMEM;
    }
    char l[96];
    snprintf(l, sizeof(l), "role=\"%s\"", p->tag);
    r->c_copied = metrics_counter("blockd_proxy_repair_blobs_copied_total",
                                  "Blob copies made to replicas that missed them", l);
    r->c_bytes = metrics_counter("blockd_proxy_repair_bytes_copied_total",
                                 "Bytes copied by repair (copies and heals)", l);
    r->c_healed = metrics_counter("blockd_proxy_repair_blobs_healed_total",
                                  "Bad copies rewritten from another replica", l);
    r->c_copy_err = metrics_counter("blockd_proxy_repair_copy_errors_total",
                                    "Repair copies or heals that failed", l);
    r->c_orphans = metrics_counter("blockd_proxy_repair_orphans_deleted_total",
                                   "Copies unknown to the index deleted after the grace", l);
    r->c_synced = metrics_counter("blockd_proxy_repair_partitions_synced_total",
                                  "Partition syncs finished", l);
    r->c_replaced = metrics_counter("blockd_proxy_repair_replicas_replaced_total",
                                    "Partition members replaced after a server was lost", l);
    r->c_passes = metrics_counter("blockd_proxy_repair_passes_total",
                                  "Full anti-entropy passes finished", l);
    metrics_gauge("blockd_proxy_repair_last_full_pass_timestamp_seconds",
                  "Wall clock when the last full pass ended (0: none yet)", l, g_last_pass, r, r);
    metrics_gauge("blockd_proxy_repair_last_full_pass_seconds", "Duration of the last full pass",
                  l, g_pass_took, r, r);
    metrics_gauge("blockd_proxy_repair_partitions_incomplete",
                  "Partitions whose last sync left a live blob short of three copies", l,
                  g_incomplete, r, r);
    metrics_gauge("blockd_proxy_repair_orphans_tracked",
                  "Copies unknown to the index waiting out the orphan grace", l, g_orphans, r, r);
    metrics_gauge("blockd_proxy_repair_copies_queued", "Repair copies queued or in flight", l,
                  g_queue, r, r);
    p->repair = r;
    return 0;
}

void prepair_stop(struct proxy *p)
{
    struct prepair *r = p->repair;
    if (!r) return;
    p->repair = NULL;
    metrics_remove_owner(r);
    r->stopping = true;
    r->gen++;
    drop_queue(r);
    unref(r);
}

/* ---- status ---------------------------------------------------------------------------------- */

void prepair_status(struct proxy *p, cJSON *out)
{
    struct prepair *r = p->repair;
    if (!r) return;
    cJSON *o = cJSON_AddObjectToObject(out, "repair");
    cJSON_AddBoolToObject(o, "active", r->leader);
    cJSON_AddNumberToObject(o, "interval_ms", (double)p->cfg->repair_interval_ms);
    cJSON_AddNumberToObject(o, "orphan_grace_ms", (double)p->cfg->orphan_grace_ms);
    cJSON_AddNumberToObject(o, "replace_after_ms", (double)p->cfg->replace_after_ms);
    cJSON_AddNumberToObject(o, "passes", (double)r->n_passes);
    if (r->last_pass_wall_ms)
        cJSON_AddNumberToObject(o, "last_full_pass_unix_ms", (double)r->last_pass_wall_ms);
    else cJSON_AddNullToObject(o, "last_full_pass_unix_ms");
    cJSON_AddNumberToObject(o, "last_full_pass_ms", (double)r->last_pass_took_ms);
    cJSON_AddBoolToObject(o, "pass_running", r->pass_running);
    cJSON_AddNumberToObject(o, "pass_position", r->pass_pos);
    cJSON_AddNumberToObject(o, "pass_partitions", r->pass_n);
    cJSON_AddNumberToObject(o, "partitions_synced", (double)r->n_synced);
    cJSON_AddNumberToObject(o, "partitions_incomplete", g_incomplete(r));
    cJSON_AddNumberToObject(o, "blobs_copied", (double)r->n_copied);
    cJSON_AddNumberToObject(o, "bytes_copied", (double)r->n_bytes);
    cJSON_AddNumberToObject(o, "blobs_healed", (double)r->n_healed);
    cJSON_AddNumberToObject(o, "copy_errors", (double)r->n_copy_err);
    cJSON_AddNumberToObject(o, "orphans_deleted", (double)r->n_orphans);
    cJSON_AddNumberToObject(o, "orphans_tracked", r->orphans.n);
    cJSON_AddNumberToObject(o, "dead_bad_copies_deleted", (double)r->n_dead_deleted);
    cJSON_AddNumberToObject(o, "replicas_replaced", (double)r->n_replaced);
    cJSON_AddNumberToObject(o, "copies_queued", r->q_len);
    cJSON_AddNumberToObject(o, "copies_in_flight", r->n_running);
}

void prepair_part_json(struct proxy *p, const struct index_part *pt, cJSON *out)
{
    struct prepair *r = p->repair;
    unsigned up = 0;
    for (int i = 0; i < RPLAN_REPLICAS; i++)
        if (pblobs_is_up(p->blobs, pt->nodes[i])) up++;
    cJSON_AddNumberToObject(out, "replicas_up", up);
    const struct rp_part *x = r && r->leader ? part_find(r, pt->id, false) : NULL;
    if (!x || !x->synced) {
        cJSON_AddNullToObject(out, "sync");
        return;
    }
    cJSON *o = cJSON_AddObjectToObject(out, "sync");
    cJSON_AddBoolToObject(o, "complete", x->complete);
    cJSON_AddNumberToObject(o, "unix_ms", (double)x->synced_wall_ms);
    cJSON_AddNumberToObject(o, "took_ms", (double)x->took_ms);
    cJSON_AddNumberToObject(o, "replicas_listed", __builtin_popcount(x->listed));
    cJSON_AddNumberToObject(o, "live_blobs", x->blobs);
    cJSON_AddNumberToObject(o, "missing", x->missing);
    cJSON_AddNumberToObject(o, "copied", x->copied);
    cJSON_AddNumberToObject(o, "copy_errors", x->copy_errors);
    cJSON_AddNumberToObject(o, "orphans_deleted", x->orphans_deleted);
    cJSON_AddBoolToObject(o, "urgent", x->urgent);
}
