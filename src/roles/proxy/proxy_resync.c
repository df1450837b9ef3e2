/* proxy_resync.c: anti-entropy, the copy and delete engine that heal
 * shares, and the lifetime of the repair state (see proxy_repair_int.h;
 * DESIGN.md §4, CONTRACT.md C3, C9, C13).  It sits under proxy_repair.c
 * and calls nothing above it: a finished heal is reported through the
 * state's on_heal_done.
 *
 * A pass visits every partition once; the next starts repair_interval_ms
 * after the previous one started.  Partitions marked urgent (a replica
 * replaced, a server back from down) go first.  One partition is listed
 * at a time (enum proxy_repair_sync_state, PROXY_REPAIR_SYNC_*):
 *
 *   IDLE -> LISTING: a BLOB_LIST page (PROXY_REPAIR_PAGE ids after the
 *             cursor) from each member that is up;
 *   LISTING -> DIFF: the pages merged up to their common bound (rplan.h);
 *   DIFF:     at most PROXY_REPAIR_IDS_PER_STEP ids per step, in one index
 *             read txn: a live blob a member lacks is queued for a copy
 *             (GET from a member that has it, checked against the index
 *             checksum, PUT with the partition's current epoch); an id the
 *             index does not know there is noted in the orphan ledger and
 *             deleted once it has been seen for orphan_grace_ms; dead
 *             blobs are GC's;
 *             -> LISTING after the cursor, or IDLE at the end.
 *
 * The next partition's lists go out while the copies of the last one are
 * still running (they are counted in its struct proxy_repair_part); when its last
 * copy is done its result (complete or not, counts) is recorded for
 * /v1/cluster.  A partition is not synced again while copies for it are
 * pending, so a blob is never queued twice for one replica.  A partition
 * whose members change mid-sync (a move) is abandoned and marked urgent,
 * and one with a replica being filled (proxy_move.c) waits for the move; a list that fails drops that member for the rest of the sync
 * (the partition is then not complete).
 *
 * Bounds: ids per step, PROXY_REPAIR_QUEUE_MAX queued copies (the diff waits while
 * the queue is full), PROXY_REPAIR_COPIES_IN_FLIGHT copies and
 * PROXY_REPAIR_COPY_BYTES_IN_FLIGHT bytes in flight, PROXY_REPAIR_DELETES_IN_FLIGHT deletes;
 * a step is a few milliseconds at most and then the reactor serves I/O.
 *
 * Why the orphan grace is safe: a write (proxy_io.c) puts its blob to three
 * servers and only then commits the index entry, within
 * PROXY_IO_WRITE_DEADLINE_MS; an entry proposed just before that deadline may
 * still commit an election later.  An id unknown to the index for twice
 * the deadline belongs to a write that failed and never becomes live.
 * Deleting leaves a tombstone (ids are never reused), so deleting too early
 * would lose that replica for good; deleting late only costs space.  Copies
 * on servers that are no longer members of a partition (replaced while
 * down) are not visited: a later re-add of that server must still be able
 * to take those blobs, which a tombstone would forbid. */
#include "roles/proxy/proxy_repair_int.h"
#include "roles/proxy/proxy_index.h"
#include "roles/proxy/proxy_move.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A blob to copy from the members that hold it to one that lacks it. */
struct proxy_repair_copy {
    struct proxy_repair *r;
    struct proxy_repair_copy *prev, *next; /* in r's queue, then in r->running */
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
    struct proxy_blobs_get get;
    struct proxy_blobs_call put;
};

/* A delete of an orphan, or of a dead blob's bad copy. */
struct del {
    struct proxy_repair *r;
    uint64_t gen;
    uint64_t sync_gen;             /* an orphan found by this sync; 0 otherwise */
    bool orphan;                   /* else a dead blob's bad copy */
    struct proxy_blobs_del del;
};

static void part_finish(struct proxy_repair *r, struct proxy_repair_part *pt);

/* ---- lifetime ------------------------------------------------------------------------------ */

struct proxy_repair *proxy_resync_new(struct proxy *p)
{
    struct proxy_repair *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    r->p = p;
    r->tag = p->tag;
    r->refs = 1;
    rplan_orphans_init(&r->orphans, 0);
    r->sync.diff = malloc(RPLAN_REPLICAS * PROXY_REPAIR_PAGE * sizeof(*r->sync.diff));
    bool ok = r->sync.diff != NULL;
    for (int i = 0; i < RPLAN_REPLICAS; i++) {
        r->sync.slot[i].r = r;
        r->sync.slot[i].ids = malloc(PROXY_REPAIR_PAGE * sizeof(uint64_t));
        if (!r->sync.slot[i].ids) ok = false;
    }
    if (!ok) {
        proxy_resync_unref(r);
        return NULL;
    }
    return r;
}

void proxy_resync_unref(struct proxy_repair *r)
{
    if (--r->refs) return;
    proxy_resync_drop_queue(r);
    for (int i = 0; i < RPLAN_REPLICAS; i++) free(r->sync.slot[i].ids);
    free(r->sync.diff);
    free(r->pass_ids);
    free(r->parts);
    free(r->nodes);
    rplan_orphans_fini(&r->orphans);
    free(r);
}

void proxy_resync_reset(struct proxy_repair *r)
{
    proxy_resync_drop_queue(r);
    r->sync.state = PROXY_REPAIR_SYNC_IDLE; /* busy slots finish and are ignored (sync.gen) */
    r->sync.gen = 0;
    r->pass_running = false;
    r->n_parts = 0;
    rplan_orphans_fini(&r->orphans);
    rplan_orphans_init(&r->orphans, 0);
}

/* ---- partitions' sync records ----------------------------------------------------------- */

struct proxy_repair_part *proxy_resync_part(struct proxy_repair *r, uint32_t id, bool add)
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
        struct proxy_repair_part *np = realloc(r->parts, cap * sizeof(*np));
        if (!np) return NULL;
        r->parts = np;
        r->cap_parts = cap;
    }
    memmove(&r->parts[lo + 1], &r->parts[lo], (r->n_parts - lo) * sizeof(*r->parts));
    r->parts[lo] = (struct proxy_repair_part){.id = id};
    r->n_parts++;
    return &r->parts[lo];
}

void proxy_resync_mark_urgent(struct proxy_repair *r, uint32_t id, uint64_t not_before_ms)
{
    struct proxy_repair_part *pt = proxy_resync_part(r, id, true);
    if (!pt) return;
    pt->urgent_after_ms = pt->urgent ? BD_MIN(pt->urgent_after_ms, not_before_ms) : not_before_ms;
    pt->urgent = true;
}

/* ---- copies ------------------------------------------------------------------------------- */

void proxy_resync_drop_queue(struct proxy_repair *r)
{
    while (r->q_head) {
        struct proxy_repair_copy *c = r->q_head;
        r->q_head = c->next;
        free(c);
    }
    r->q_tail = NULL;
    r->q_len = 0;
}

static void enqueue(struct proxy_repair *r, struct proxy_repair_copy *c)
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

/* A heal of BLOB_ID to DST is queued or running.  Heals sit at the head
 * of the queue, so only that stretch and the running copies are scanned. */
static bool heal_pending(struct proxy_repair *r, uint64_t dst, uint64_t blob_id)
{
    for (struct proxy_repair_copy *c = r->q_head; c && c->heal; c = c->next)
        if (c->dst == dst && c->blob_id == blob_id) return true;
    for (struct proxy_repair_copy *c = r->running; c; c = c->next)
        if (c->heal && c->dst == dst && c->blob_id == blob_id) return true;
    return false;
}

bool proxy_resync_copy_pending(struct proxy_repair *r, uint64_t dst, uint64_t blob_id)
{
    for (struct proxy_repair_copy *c = r->q_head; c; c = c->next)
        if (c->dst == dst && c->blob_id == blob_id) return true;
    for (struct proxy_repair_copy *c = r->running; c; c = c->next)
        if (c->dst == dst && c->blob_id == blob_id) return true;
    return false;
}

static void copy_done(struct proxy_repair_copy *c, int err, const char *why)
{
    struct proxy_repair *r = c->r;
    if (c->prev) c->prev->next = c->next;
    else r->running = c->next;
    if (c->next) c->next->prev = c->prev;
    r->n_running--;
    r->running_bytes -= c->len;
    free(c->buf);
    bool cur = proxy_repair_current(r, c->gen);
    struct proxy_repair_part *pt =
        cur && c->sync_gen ? proxy_resync_part(r, c->partition, false) : NULL;
    bool mine = pt && pt->gen == c->sync_gen && pt->pending;
    if (mine) pt->pending--;
    if (cur && err == 0) {
        r->n_bytes += c->len;
        metric_add(r->c_bytes, c->len);
        if (c->heal) {
            r->n_healed++;
            metric_inc(r->c_healed);
            log_info(r->tag, "repair: healed blob %llu on blob server %llu (partition %u)",
                     (unsigned long long)c->blob_id, (unsigned long long)c->dst, c->partition);
            r->on_heal_done(r, c->dst, 0, NULL);
        } else {
            r->n_copied++;
            r->pass_copied++;
            metric_inc(r->c_copied);
            if (mine) {
                pt->cur.copied++;
                pt->cur.bytes += c->len;
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
            if (!pt->cur.copy_errors++) util_strlcpy(pt->first_err, line, sizeof(pt->first_err));
        } else if (c->heal) {
            r->on_heal_done(r, c->dst, err, line);
        } else {
            log_warn(r->tag, "repair: copy of %s", line);
        }
    }
    free(c);
    if (mine && !pt->listing && !pt->pending) part_finish(r, pt);
    if (cur) proxy_resync_step(r);
    proxy_resync_unref(r);
}

static void release_buf(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    free(arg);
}

static void on_copy_put(struct proxy_blobs_call *pc, int err, struct conn_frame *f)
{
    struct proxy_repair_copy *c = pc->data;
    char why[160];
    copy_done(c, err, err && f ? conn_error_text(f, why, sizeof(why)) : NULL);
}

static void on_copy_got(struct proxy_blobs_get *g, int err)
{
    struct proxy_repair_copy *c = g->data;
    struct proxy_repair *r = c->r;
    if (!proxy_repair_current(r, c->gen)) {
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
    proxy_blobs_call(r->p->blobs, &c->put, WIRE_BLOB_PUT, fields, (size_t)n, &pl);
}

static void start_copies(struct proxy_repair *r)
{
    while (r->q_head && r->n_running < PROXY_REPAIR_COPIES_IN_FLIGHT &&
           (r->n_running == 0 ||
            r->running_bytes + r->q_head->len <= PROXY_REPAIR_COPY_BYTES_IN_FLIGHT)) {
        struct proxy_repair_copy *c = r->q_head;
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
        c->get = (struct proxy_blobs_get){.cb = on_copy_got, .data = c, .blob_id = c->blob_id,
                                          .partition = c->partition, .off = 0, .len = c->len,
                                          .dst = c->buf};
        memcpy(c->get.nodes, c->src, sizeof(c->get.nodes));
        proxy_blobs_get(r->p->blobs, &c->get);
    }
}

/* Queue a copy of blob B (partition PT, members' presence PRESENT) to
 * member DST_SLOT.  false if out of memory. */
bool proxy_resync_want_copy(struct proxy_repair *r, const struct index_part *pt,
                            const struct index_blob *b, uint8_t present, int dst_slot, bool heal)
{
    struct proxy_repair_copy *c = calloc(1, sizeof(*c));
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
    if (!heal) {
        struct proxy_repair_part *x = proxy_resync_part(r, pt->id, false);
        if (x && x->gen == c->sync_gen) x->pending++;
        else c->sync_gen = 0; /* BD_NEVER: the sync registers its partition first */
    }
    return true;
}

/* ---- deletes ------------------------------------------------------------------------------- */

static void on_deleted(struct proxy_blobs_del *d, int err)
{
    struct del *x = bd_container_of(d, struct del, del);
    struct proxy_repair *r = x->r;
    r->deletes_in_flight--;
    if (proxy_repair_current(r, x->gen)) {
        if (err == 0 || err == -ENOENT) {
            if (x->orphan) {
                r->n_orphans++;
                r->pass_orphans++;
                metric_inc(r->c_orphans);
                rplan_orphan_forget(&r->orphans, d->node, d->blob_id);
                struct proxy_repair_part *pt =
                    x->sync_gen ? proxy_resync_part(r, d->partition, false) : NULL;
                if (pt && pt->gen == x->sync_gen) {
                    if (pt->listing || pt->pending) pt->cur.orphans_deleted++;
                    else pt->last.orphans_deleted++;
                }
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
        proxy_resync_step(r);
    }
    free(x);
    proxy_resync_unref(r);
}

/* Delete BLOB_ID of PARTITION on NODE.  false if the limit of deletes in
 * flight is reached (the caller tries again in a later pass). */
bool proxy_resync_delete(struct proxy_repair *r, uint64_t node, uint32_t partition,
                         uint64_t blob_id, bool orphan)
{
    if (r->deletes_in_flight >= PROXY_REPAIR_DELETES_IN_FLIGHT) return false;
    struct del *x = calloc(1, sizeof(*x));
    if (!x) return false;
    x->r = r;
    x->gen = r->gen;
    x->orphan = orphan;
    bool in_sync =
        orphan && r->sync.state != PROXY_REPAIR_SYNC_IDLE && r->sync.part.id == partition;
    x->sync_gen = in_sync ? r->sync.gen : 0;
    x->del = (struct proxy_blobs_del){.cb = on_deleted, .blob_id = blob_id, .partition = partition,
                                      .node = node};
    r->deletes_in_flight++;
    r->refs++;
    proxy_blobs_delete(r->p->blobs, &x->del);
    return true;
}

/* An index-unknown copy of BLOB_ID on NODE: delete it once it is due. */
void proxy_resync_orphan_seen(struct proxy_repair *r, uint64_t node, uint32_t partition,
                              uint64_t blob_id, uint64_t now)
{
    int due = rplan_orphan_note(&r->orphans, node, partition, blob_id, now,
                                r->p->cfg->orphan_grace_ms);
    if (due == 1) {
        log_info(r->tag, "repair: deleting orphan blob %llu (partition %u) on blob server %llu: "
                 "unknown to the index for %llu ms", (unsigned long long)blob_id, partition,
                 (unsigned long long)node, (unsigned long long)r->p->cfg->orphan_grace_ms);
        proxy_resync_delete(r, node, partition, blob_id, true);
    }
}

/* ---- sync: one partition -------------------------------------------------------------------- */

static void on_list(struct proxy_blobs_call *pc, int err, struct conn_frame *f)
{
    struct proxy_repair_slot *sl = pc->data;
    struct proxy_repair *r = sl->r;
    struct proxy_repair_sync *s = &r->sync;
    sl->busy = false;
    if (!r->stopping && s->state == PROXY_REPAIR_SYNC_LISTING && sl->sync_gen == s->gen) {
        struct wire_blob_list_resp m;
        if (err == 0 &&
            (wire_decode_blob_list_resp(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0 ||
             m.n > PROXY_REPAIR_PAGE))
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
        if (--s->lists_pending == 0) proxy_resync_step(r);
    }
    proxy_resync_unref(r);
}

/* The lists and the diff of the current sync are done (or abandoned):
 * its partition finishes when its last copy does. */
static void sync_end(struct proxy_repair *r)
{
    struct proxy_repair_sync *s = &r->sync;
    struct proxy_repair_part *pt = proxy_resync_part(r, s->part.id, false);
    if (pt && pt->gen == s->gen) {
        pt->listing = false;
        pt->failed |= s->failed;
        pt->cur.listed = s->listed;
        if (!pt->pending) part_finish(r, pt);
    }
    s->state = PROXY_REPAIR_SYNC_IDLE;
    s->gen = 0;
}

static void list_members(struct proxy_repair *r)
{
    struct proxy_repair_sync *s = &r->sync;
    struct wire_blob_list_req req = {
        .partition = s->part.id, .max = PROXY_REPAIR_PAGE, .cursor = s->cursor};
    uint8_t fields[64];
    int len = wire_encode_blob_list_req(fields, sizeof(fields), &req);
    s->state = PROXY_REPAIR_SYNC_LISTING;
    s->lists_pending = 0;
    for (int i = 0; i < RPLAN_REPLICAS; i++) {
        struct proxy_repair_slot *sl = &s->slot[i];
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
        proxy_blobs_call(r->p->blobs, &sl->call, WIRE_BLOB_LIST, fields, (size_t)len, NULL);
    }
    if (!s->lists_pending) sync_end(r);
}

static bool sync_begin(struct proxy_repair *r, uint32_t part_id)
{
    struct proxy *p = r->p;
    struct proxy_repair_sync *s = &r->sync;
    struct index_part pt;
    /* A replica being filled is the move's (proxy_move.c): synced after. */
    if (proxy_move_busy(p, part_id)) return false;
    if (proxy_index_read_begin(p) < 0) return false;
    int rc = index_part_get(p->rd, part_id, &pt);
    proxy_index_read_end(p);
    if (rc < 0) return false;
    struct proxy_repair_part *x = proxy_resync_part(r, part_id, true);
    if (!x) return false;
    s->gen = ++r->sync_seq;
    s->part = pt;
    s->cursor = 0;
    s->bound = 0;
    s->diff_n = s->diff_pos = 0;
    s->failed = false;
    s->listed = 0;
    x->gen = s->gen;
    x->listing = true;
    x->failed = false;
    x->pending = 0;
    x->started_ms = util_mono_ms();
    x->cur = (struct proxy_repair_result){0};
    x->first_err[0] = 0;
    for (int i = 0; i < RPLAN_REPLICAS; i++)
        if (proxy_blobs_is_up(p->blobs, pt.nodes[i])) s->listed |= (uint8_t)(1u << i);
    if (s->listed != 7) s->failed = true;
    list_members(r);
    return true;
}

static void sync_after_lists(struct proxy_repair *r)
{
    struct proxy_repair_sync *s = &r->sync;
    struct rplan_page pages[RPLAN_REPLICAS];
    for (int i = 0; i < RPLAN_REPLICAS; i++) {
        struct proxy_repair_slot *sl = &s->slot[i];
        pages[i] = (struct rplan_page){.ids = sl->ids, .n = sl->n, .more = sl->more,
                                       .listed = (s->listed >> i) & 1};
        if (!pages[i].listed) continue;
        if (sl->err == 0 && rplan_page_check(&pages[i], s->cursor) < 0) sl->err = -EPROTO;
        if (sl->err) {
            /* A server going down is routine (debug); anything else is not. */
            bool gone = sl->err == -ESHUTDOWN || sl->err == -ECONNRESET ||
                        sl->err == -EHOSTDOWN || sl->err == -ENOTCONN || sl->err == -ETIMEDOUT;
            log_line(gone ? LOG_DEBUG : LOG_WARN, r->tag, NULL, 0,
                     "repair: listing partition %u on blob server %llu: %s", s->part.id,
                     (unsigned long long)s->part.nodes[i], bd_strerror(sl->err));
            pages[i].listed = false;
            s->listed &= (uint8_t) ~(1u << i);
            s->failed = true;
        }
    }
    if (!s->listed) {
        sync_end(r);
        return;
    }
    s->bound = rplan_bound(pages);
    s->diff_n = rplan_merge(pages, s->bound, s->diff, RPLAN_REPLICAS * PROXY_REPAIR_PAGE);
    s->diff_pos = 0;
    s->state = PROXY_REPAIR_SYNC_DIFF;
}

/* Classify a bounded slice of the diff in one read txn. */
static void sync_diff(struct proxy_repair *r)
{
    struct proxy *p = r->p;
    struct proxy_repair_sync *s = &r->sync;
    uint64_t now = util_mono_ms();
    struct index_part cur;
    if (proxy_index_read_begin(p) < 0) return;
    if (index_part_get(p->rd, s->part.id, &cur) < 0 ||
        memcmp(cur.nodes, s->part.nodes, sizeof(cur.nodes)) != 0) {
        proxy_index_read_end(p);
        log_info(r->tag, "repair: partition %u changed members during its sync; again soon",
                 s->part.id);
        s->failed = true;
        proxy_resync_mark_urgent(r, s->part.id, 0);
        sync_end(r);
        return;
    }
    struct proxy_repair_part *x = proxy_resync_part(r, s->part.id, false);
    if (!x) {
        proxy_index_read_end(p);
        sync_end(r);
        return;
    }
    for (uint32_t k = 0; s->diff_pos < s->diff_n && k < PROXY_REPAIR_IDS_PER_STEP; k++) {
        if (r->q_len >= PROXY_REPAIR_QUEUE_MAX) break; /* copies catch up first */
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
            x->cur.blobs++;
            uint8_t miss = rplan_missing(s->listed, d->present);
            for (int i = 0; i < RPLAN_REPLICAS; i++) {
                if (r->orphans.n && (d->present & (1u << i)))
                    rplan_orphan_forget(&r->orphans, cur.nodes[i], d->id);
                if (!(miss & (1u << i))) continue;
                if (heal_pending(r, cur.nodes[i], d->id)) continue; /* bad there: being healed */
                x->cur.missing++;
                if (!proxy_resync_want_copy(r, &cur, &b, d->present, i, false)) s->failed = true;
            }
            break;
        }
        case RPLAN_ORPHAN:
            for (int i = 0; i < RPLAN_REPLICAS; i++)
                if (d->present & (1u << i))
                    proxy_resync_orphan_seen(r, cur.nodes[i], cur.id, d->id, now);
            break;
        case RPLAN_GC:
            break;
        }
        s->diff_pos++;
    }
    proxy_index_read_end(p);
    if (s->diff_pos < s->diff_n) return;
    if (s->bound == UINT64_MAX) {
        sync_end(r);
        return;
    }
    s->cursor = s->bound;
    list_members(r);
}

static void part_finish(struct proxy_repair *r, struct proxy_repair_part *pt)
{
    struct proxy_repair_result *c = &pt->cur;
    c->complete = c->listed == 7 && !pt->failed && c->copy_errors == 0 && c->missing == c->copied;
    c->took_ms = util_mono_ms() - pt->started_ms;
    c->wall_ms = util_wall_ms();
    pt->last = *c;
    pt->has_last = true;
    r->n_synced++;
    metric_inc(r->c_synced);
    char sz[32];
    if (c->copy_errors)
        log_warn(r->tag, "repair: partition %u: %u of %u missing copies failed (first: %s)",
                 pt->id, c->copy_errors, c->missing, pt->first_err);
    if (c->missing || c->orphans_deleted)
        log_info(r->tag, "repair: partition %u synced in %llu ms: %u live blobs, %u copies "
                 "missing, %u copied (%s), %u orphans deleted%s", pt->id,
                 (unsigned long long)c->took_ms, c->blobs, c->missing, c->copied,
                 util_fmt_size(c->bytes, sz, sizeof(sz)), c->orphans_deleted,
                 c->complete ? "" : "; not complete");
    else
        log_debug(r->tag, "repair: partition %u in sync (%u live blobs%s)", pt->id, c->blobs,
                  c->complete ? "" : ", not every member listed");
}

/* ---- passes --------------------------------------------------------------------------------- */

static void pass_start(struct proxy_repair *r, uint64_t now)
{
    struct index_part *parts;
    uint32_t n;
    if (proxy_index_read_parts(r->p, &parts, &n) < 0) return;
    uint32_t *ids = malloc(BD_MAX(n, 1u) * sizeof(*ids));
    if (!ids) {
        free(parts);
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        ids[i] = parts[i].id;
        proxy_resync_part(r, parts[i].id, true);
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

static void pass_end(struct proxy_repair *r, uint64_t now)
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
static bool sync_next(struct proxy_repair *r)
{
    uint64_t now = util_mono_ms();
    for (int i = 0; i < RPLAN_REPLICAS; i++)
        if (r->sync.slot[i].busy) return false; /* an abandoned sync's reply is owed */
    for (uint32_t i = 0; i < r->n_parts; i++) {
        struct proxy_repair_part *x = &r->parts[i];
        if (!x->urgent || x->pending || now < x->urgent_after_ms) continue; /* copies first */
        x->urgent = false;
        if (sync_begin(r, x->id)) return true;
    }
    if (!r->pass_running) {
        if (now < r->next_pass_ms) return false;
        pass_start(r, now);
        if (!r->pass_running) return false;
    }
    while (r->pass_pos < r->pass_n) {
        const struct proxy_repair_part *x = proxy_resync_part(r, r->pass_ids[r->pass_pos], false);
        if (x && x->pending) return false; /* wait for its copies (bounded by the queue) */
        if (sync_begin(r, r->pass_ids[r->pass_pos++])) return true;
    }
    pass_end(r, now);
    return false;
}

void proxy_resync_step(struct proxy_repair *r)
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
        struct proxy_repair_sync *s = &r->sync;
        enum proxy_repair_sync_state before = s->state;
        switch (s->state) {
        case PROXY_REPAIR_SYNC_IDLE: sync_next(r); break;
        case PROXY_REPAIR_SYNC_LISTING:
            if (!s->lists_pending) sync_after_lists(r);
            break;
        case PROXY_REPAIR_SYNC_DIFF: sync_diff(r); break;
        }
        start_copies(r);
        if (s->state == before && !r->step_again) break;
    }
    r->stepping = false;
}
