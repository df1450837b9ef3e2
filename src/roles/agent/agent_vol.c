/* agent_vol.c: the agent's volume registry (agent_vol.h): start-up replay,
 * open, list and info, the life of a volume (new, fail, free), the tick,
 * stop, status.
 *
 * Place.  The top of the volume back end (agent_vol_int.h): it decides
 * when to attach and detach (agent_attach.c), ticks the request paths
 * (agent_io.c) and the shipper (agent_ship.c), and frees what they hold.
 * They call nothing here by name: what they must tell the registry (a
 * volume cannot go on, may be freed, an attach ended, a name that now
 * means another volume) and what they must tell each other upward (a
 * write of unknown outcome to agent_attach.c, an ack to agent_io.c) goes
 * through the table vol_up below, installed as vs->up.
 *
 * Start-up.  cache_dir holds one directory per volume journal, named by
 * the volume id in hex, and a LOCK file (flock) so that two agents never
 * share a cache.  Each journal is replayed into a fresh dirty map and its
 * volume re-attached by the name the journal recorded; what was not yet
 * shipped is shipped (it may have been already: shipping a version twice
 * is harmless because replay only ever holds the newest version of a
 * block, C9).  A journal that cannot be read at all is left alone and its
 * volume refused (-EIO) until an operator looks; one marked FENCED (see
 * below) is not re-attached either, since another agent owns the volume.
 *
 * Attach.  The first open of a volume sends VOL_ATTACH (read-write bumps
 * the generation, fencing any earlier writer, C10) and creates the
 * journal.  Later opens share the volume; a read-write open of a volume
 * attached read-only upgrades it.  Every open gets its own handle
 * (struct agent_vol), so read-only is per connection while the cache is
 * per volume (C8).  A generation that does not grow on a read-write
 * attach, a volume id that changed under a journal, EFENCED/EBUSY on a
 * volume we hold data for: all are refusals to continue, logged loudly.
 *
 * Detach.  AGENT_VOL_IDLE_MS after the last handle is put, once the volume is
 * clean (nothing dirty, nothing LOST, nothing in flight), VOL_DETACH is
 * sent and the journal deleted; a crash before that only means the
 * journal is replayed and re-shipped next time.
 *
 * Fenced.  When the cluster says another agent attached the volume, the
 * volume fails (-EIO for all I/O) and a FENCED file is written (fsynced,
 * on the task queue) into its journal directory, so a restart does not
 * re-attach and overwrite the new owner with stale data.
 *
 * The tick (every AGENT_VOL_TICK_MS) handles every timeout-shaped duty:
 * deadlines of waiting requests, age-based shipping, backoff retries of
 * ships and attaches, idle detach, and the progress of agent_vols_stop. */
#include "base/bd.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "runtime/taskq.h"
#include "store/fileio.h"
#include "base/util.h"
#include "roles/agent/agent_assign.h"
#include "roles/agent/agent_attach.h"
#include "roles/agent/agent_blobs.h"
#include "roles/agent/agent_io.h"
#include "roles/agent/agent_mapc.h"
#include "roles/agent/agent_qos.h"
#include "roles/agent/agent_ship.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- deferred callbacks -------------------------------------------------- *
 * Open, list and info callbacks that are known at once still run later,
 * from the done event, never from inside the call that asked. */

/* An open, list or info callback to run later (from the done event). */
struct agent_vol_deferred {
    struct agent_vol_deferred *next;
    struct agent_vols_open_req *open;
    struct agent_vols_info_req *info;
    struct agent_vols_list_req *list;
    struct agent_vol *h;         /* open: the handle to hand over */
    struct agent_vol_info vinfo; /* info */
    int err;
};

static void defer(struct agent_vols *vs, struct agent_vol_deferred *d)
{
    d->next = NULL;
    *vs->defer_tail = d;
    vs->defer_tail = &d->next;
    if (!vs->freeing) event_active(vs->done_ev, 0, 0);
}

/* Run the deferred callbacks; with SHUTDOWN, handles not yet handed over
 * are dropped and their opens fail (the registry is going away). */
static void deliver_deferred(struct agent_vols *vs, bool shutdown)
{
    while (vs->defer_head) {
        struct agent_vol_deferred *d = vs->defer_head;
        vs->defer_head = d->next;
        if (!vs->defer_head) vs->defer_tail = &vs->defer_head;
        int err = d->err;
        if (shutdown && d->h) {
            d->h->v->refs--;
            free(d->h);
            d->h = NULL;
            err = -ESHUTDOWN;
        }
        if (d->open) d->open->cb(d->open, err, err ? NULL : d->h);
        else if (d->info) d->info->cb(d->info, err, err ? NULL : &d->vinfo);
        else if (d->list) d->list->cb(d->list, err, NULL, 0);
        free(d);
    }
}

/* Complete an open request (later).  On allocation failure the callback
 * runs now: better early than never. */
static void open_finish(struct agent_vols *vs, struct agent_vols_open_req *req, int err,
                        struct agent_vol *h)
{
    struct agent_vol_deferred *d = calloc(1, sizeof(*d));
    if (!d) {
        if (h) {
            h->v->refs--;
            free(h);
        }
        req->cb(req, err ? err : -ENOMEM, NULL);
        return;
    }
    d->open = req;
    d->err = err;
    d->h = h;
    defer(vs, d);
}

static void on_done_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct agent_vols *vs = arg;
    agent_io_deliver(vs); /* direct writes that ended: may complete more */
    struct agent_vol_req *r = vs->done_head;
    vs->done_head = vs->done_tail = NULL;
    while (r) {
        struct agent_vol_req *next = r->next;
        r->next = NULL;
        r->cb(r, (int)(intptr_t)r->priv[4]);
        r = next;
    }
    deliver_deferred(vs, false);
}

/* ---- volumes ------------------------------------------------------------- */

static struct agent_vol_shared *vol_new(struct agent_vols *vs, const char *name)
{
    struct agent_vol_shared *v = calloc(1, sizeof(*v));
    if (!v) return NULL;
    v->csum_scratch =
        malloc((vs->max_io + AGENT_VOL_COVER_SLACK) / BD_BLOCK_SIZE * sizeof(uint64_t));
    if (!v->csum_scratch) {
        free(v);
        return NULL;
    }
    v->vs = vs;
    util_strlcpy(v->name, name, sizeof(v->name));
    v->qos = agent_qos_vol_get(vs->qos, name);
    v->state = AGENT_VOL_ATTACHING;
    v->next = vs->vols;
    vs->vols = v;
    return v;
}

static void vol_free(struct agent_vol_shared *v)
{
    struct agent_vols *vs = v->vs;
    struct agent_vol_shared **pp = &vs->vols;
    while (*pp && *pp != v) pp = &(*pp)->next;
    if (*pp) *pp = v->next;
    agent_cache_free(v->c);
    journal_close(v->j);
    agent_io_map_drop(v);
    agent_io_free_vol(v);
    agent_ship_free_vol(v);
    agent_qos_vol_put(v->qos);
    free(v->csum_scratch);
    free(v);
}

static bool vol_busy(const struct agent_vol_shared *v)
{
    return v->refs || v->busy || v->attach_busy || v->fence_busy || v->sync_busy ||
           v->open_head || v->wait_head || v->dur_head || v->holds || v->gate_head;
}

/* Free V if nothing holds it and it has nothing to keep (no journal). */
static void vol_maybe_free(struct agent_vol_shared *v)
{
    if (v->vs->freeing || vol_busy(v) || v->j || v->replayed ||
        v->state == AGENT_VOL_ACTIVE || v->state == AGENT_VOL_REATTACH)
        return;
    vol_free(v);
}

static struct agent_vol_shared *vol_find(struct agent_vols *vs, const char *name)
{
    for (struct agent_vol_shared *v = vs->vols; v; v = v->next)
        if (!v->orphan && strcmp(v->name, name) == 0) return v;
    return NULL;
}

/* Nothing in flight, nothing waiting, nothing dirty: V may detach. */
static bool vol_clean(const struct agent_vol_shared *v)
{
    return !v->busy && !v->fence_busy && !v->sync_busy && !v->attach_busy && !v->wait_head &&
           !v->dur_head && !v->open_head && (!v->c || agent_cache_extents(v->c) == 0);
}

/* ---- opens waiting on a volume --------------------------------------------- */

static struct agent_vol *handle_new(struct agent_vol_shared *v, bool ro)
{
    struct agent_vol *h = calloc(1, sizeof(*h));
    if (!h) return NULL;
    h->v = v;
    util_strlcpy(h->info.name, v->name, sizeof(h->info.name));
    h->info.size = v->size;
    h->info.block_size = BD_BLOCK_SIZE;
    h->info.max_io = (uint32_t)v->vs->max_io;
    h->info.read_only = ro || !v->rw;
    v->refs++;
    return h;
}

/* Hand handles to the opens waiting on V, or start the attach they need. */
static void serve_opens(struct agent_vol_shared *v)
{
    struct agent_vols_open_req *list = v->open_head;
    v->open_head = v->open_tail = NULL;
    while (list) {
        struct agent_vols_open_req *o = list;
        list = o->priv[1];
        bool ro = (uintptr_t)o->priv[0] != 0;
        if (!ro && !v->rw) {
            /* Needs the read-write attach: wait for it. */
            o->priv[1] = NULL;
            if (v->open_tail) v->open_tail->priv[1] = o;
            else v->open_head = o;
            v->open_tail = o;
            v->want_rw = true;
            continue;
        }
        struct agent_vol *h = handle_new(v, ro);
        open_finish(v->vs, o, h ? 0 : -ENOMEM, h);
    }
    if (v->open_head && !v->attach_busy) agent_attach_start(v);
}

/* Fail every open waiting on V with ERR. */
static void opens_fail(struct agent_vol_shared *v, int err)
{
    while (v->open_head) {
        struct agent_vols_open_req *o = v->open_head;
        v->open_head = o->priv[1];
        open_finish(v->vs, o, err, NULL);
    }
    v->open_tail = NULL;
}

/* ---- failure ----------------------------------------------------------------- */

struct marker_job {
    struct taskq_job job;
    char path[CFG_PATH_MAX + 64];
    int err;
};

static void marker_run(struct taskq_job *job)
{
    struct marker_job *m = bd_container_of(job, struct marker_job, job);
    static const char text[] = "fenced: another agent attached this volume; the journal here "
                               "holds data that was never shipped\n";
    m->err = util_write_file_atomic(m->path, text, sizeof(text) - 1, 0600);
}

static void marker_done(struct reactor_work *w)
{
    struct marker_job *m = bd_container_of(w, struct marker_job, job.work);
    if (m->err) log_error("agent", "cannot write %s: %s", m->path, bd_strerror(m->err));
    free(m);
}

static void vol_fail(struct agent_vol_shared *v, int err, const char *why)
{
    struct agent_vols *vs = v->vs;
    if (v->state == AGENT_VOL_FENCED || v->state == AGENT_VOL_FAILED) return;
    bool fenced = err == -BD_EFENCED || err == -EBUSY;
    uint64_t dirty = v->c ? agent_cache_extents(v->c) - agent_cache_lost_extents(v->c) : 0;
    log_error(vs->tag, "vol %s (id %llu, gen %llu): %s: %s; all I/O now fails with EIO; "
              "%llu dirty extents stay in the journal %s", v->name,
              (unsigned long long)v->vol_id, (unsigned long long)v->gen,
              fenced ? "FENCED (C10)" : "FAILED", why, (unsigned long long)dirty,
              v->j ? v->dir : "(none)");
    agent_vol_set_state(v, fenced ? AGENT_VOL_FENCED : AGENT_VOL_FAILED);
    if (fenced) metric_inc(vs->m_fenced);
    agent_ship_zombify_all(v);
    agent_io_fail_all(v, -EIO);
    opens_fail(v, -EIO);
    if (fenced && v->j && !vs->freeing) {
        struct marker_job *m = calloc(1, sizeof(*m));
        if (m) {
            snprintf(m->path, sizeof(m->path), "%s/FENCED", v->dir);
            m->job.run = marker_run;
            m->job.work.done = marker_done;
            taskq_submit(vs->syncq, &m->job);
        }
    }
}

/* ---- the up-calls (agent_vol_int.h) ---------------------------------------- */

static void vol_opens_done(struct agent_vol_shared *v, int err)
{
    if (!err) agent_qos_vol_bind(v->qos, v->vol_id); /* its limits, asked for now */
    if (err) opens_fail(v, err);
    else serve_opens(v);
}

static void vol_gone(struct agent_vol_shared *v)
{
    struct agent_vols_open_req *waiting = v->open_head;
    v->open_head = v->open_tail = NULL;
    v->orphan = true;
    vol_fail(v, -EIO, "the volume this journal belongs to no longer exists");
    while (waiting) { /* they asked for the name: start afresh */
        struct agent_vols_open_req *o = waiting;
        waiting = o->priv[1];
        agent_vols_open(v->vs, v->name, (uintptr_t)o->priv[0] != 0, o);
    }
}

static const struct agent_vol_up vol_up = {
    .fail = vol_fail,
    .release = vol_maybe_free,
    .opens_done = vol_opens_done,
    .gone = vol_gone,
    .reattach = agent_attach_reattach,
    .progress = agent_io_progress,
};

/* ---- the tick and stop --------------------------------------------------- */

static void check_stop(struct agent_vols *vs, uint64_t now)
{
    bool done = true, timed_out = now >= vs->stop_deadline;
    struct agent_vol_shared *next;
    for (struct agent_vol_shared *v = vs->vols; v; v = next) {
        next = v->next; /* a read-only volume's detach frees it */
        if (v->state == AGENT_VOL_DETACHING) {
            done = false;
            continue;
        }
        if (v->state != AGENT_VOL_ACTIVE && v->state != AGENT_VOL_REATTACH) continue;
        bool dirty = v->c && agent_cache_extents(v->c) > agent_cache_lost_extents(v->c);
        if ((dirty || v->n_ships) && !timed_out) {
            done = false;
            continue;
        }
        if (!v->refs && vol_clean(v) && !timed_out) {
            agent_attach_detach(v);
            done = false;
        }
    }
    if (!done) return;
    for (struct agent_vol_shared *v = vs->vols; v; v = v->next)
        agent_io_fail_all(v, -ESHUTDOWN);
    void (*fn)(void *) = vs->stop_done;
    vs->stop_done = NULL;
    if (timed_out)
        log_warn(vs->tag, "stop: gave up shipping after %llu ms; dirty journals stay for the "
                 "next start", (unsigned long long)vs->cfg->io_timeout_ms);
    if (fn) fn(vs->stop_arg);
}

/* ---- growing ------------------------------------------------------------
 * A volume can grow while attached (ctl volume resize); the attach reply
 * told us its size then.  While connections hold it, its size is looked
 * up every AGENT_VOL_SIZE_CHECK_MS (an INFO attach call, which changes
 * nothing at the proxy), so a new connection sees the new size within
 * that time; a connection keeps the size it negotiated (NBD has no resize
 * notice; README "Growing a volume"). */

static void on_size(struct agent_client_req *call, int err, struct conn_frame *f)
{
    struct agent_vol_shared *v = call->data;
    v->size_busy = false;
    v->busy--;
    struct wire_vol_attach_resp r;
    if (!err && !v->vs->freeing &&
        wire_decode_vol_attach_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) == 0 &&
        r.vol_id == v->vol_id && r.size > v->size && r.size % BD_BLOCK_SIZE == 0) {
        log_info(v->vs->tag, "vol %s: grown from %llu to %llu bytes (new connections see it)",
                 v->name, (unsigned long long)v->size, (unsigned long long)r.size);
        v->size = r.size;
        agent_io_map_drop(v);
    }
    vol_maybe_free(v);
}

static void size_check(struct agent_vol_shared *v, uint64_t now)
{
    struct agent_vols *vs = v->vs;
    if (v->size_busy || !v->refs || v->state != AGENT_VOL_ACTIVE) {
        v->size_check_at = 0;
        return;
    }
    if (!v->size_check_at) v->size_check_at = now + AGENT_VOL_SIZE_CHECK_MS; /* attach told us */
    if (now < v->size_check_at) return;
    v->size_check_at = now + AGENT_VOL_SIZE_CHECK_MS;
    struct agent_client_req *c = &v->size_call;
    memset(c, 0, sizeof(*c));
    struct wire_vol_attach_req m = {.name = wire_cstr(v->name), .agent_id = wire_cstr(vs->agent_id),
                                    .flags = WIRE_ATTACH_INFO};
    int n = wire_encode_vol_attach_req(c->fields, sizeof(c->fields), &m);
    if (n <= 0) return;
    c->fields_len = (size_t)n;
    c->type = WIRE_VOL_ATTACH;
    c->idempotent = true;
    c->cb = on_size;
    c->data = v;
    v->size_busy = true;
    v->busy++;
    agent_client_call(vs->cl, c);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct agent_vols *vs = arg;
    uint64_t now = util_mono_ms();
    struct agent_vol_shared *next;
    for (struct agent_vol_shared *v = vs->vols; v; v = next) {
        next = v->next;
        agent_io_tick(v, now);
        size_check(v, now);
        if (v->attach_retry_at && now >= v->attach_retry_at && !v->attach_busy &&
            v->state != AGENT_VOL_FENCED && v->state != AGENT_VOL_FAILED)
            agent_attach_start(v);
        if (v->c && v->state == AGENT_VOL_ACTIVE) {
            uint64_t every = BD_MAX(vs->cfg->flush_age_ms / 4, (uint64_t)AGENT_VOL_TICK_MS);
            if (now - v->last_age_scan >= every) {
                v->last_age_scan = now;
                agent_ship_kick_age(v);
            } else if (v->ship_retry_at && now >= v->ship_retry_at) {
                v->ship_retry_at = 0;
                agent_ship_kick(v);
            }
        }
        if (!vs->stopping && v->state == AGENT_VOL_ACTIVE && !v->refs && vol_clean(v) &&
            now - v->idle_since >= AGENT_VOL_IDLE_MS)
            agent_attach_detach(v);
    }
    if (!vs->stopping) agent_assign_tick(vs, now);
    if (vs->stopping && vs->stop_done) check_stop(vs, now);
}

/* ---- registry ------------------------------------------------------------ */

/* A proxy is reachable again: whatever backs off for lack of one goes now. */
static void on_proxy_up(void *arg)
{
    struct agent_vols *vs = arg;
    for (struct agent_vol_shared *v = vs->vols; v; v = v->next) {
        if (v->attach_retry_at) v->attach_retry_at = 1;
        if (v->ship_retry_at) {
            v->ship_retry_at = 0;
            agent_ship_kick(v);
        }
    }
}

/* ---- snapshot barriers (VOL_BARRIER from a proxy) ----------------------- */

/* A barrier in progress: a FLUSH without an NBD connection (agent_io.c),
 * then the answer on the proxy's connection.  The conn stays valid until
 * the reply (conn.h); the volume is looked up again by id when the flush
 * completes, since nothing here holds it. */
struct barrier {
    struct agent_vol_req req;
    struct agent_vols *vs;
    struct conn *c;
    struct wire_hdr hdr;
    uint64_t vol_id;
};

static struct agent_vol_shared *vol_by_id(struct agent_vols *vs, uint64_t id)
{
    for (struct agent_vol_shared *v = vs->vols; v; v = v->next)
        if (!v->orphan && v->vol_id == id) return v;
    return NULL;
}

static void on_barrier_done(struct agent_vol_req *req, int err)
{
    struct barrier *b = req->data;
    struct agent_vol_shared *v = err ? NULL : vol_by_id(b->vs, b->vol_id);
    if (!err && !v) err = -ENOENT;
    if (err) {
        conn_reply_error(b->c, &b->hdr, err, 0, "barrier on volume %llu: %s",
                         (unsigned long long)b->vol_id, bd_strerror(err));
    } else {
        /* Every write the barrier covers was acked by a proxy with its raft
         * index, so the highest index acked to us is at least theirs. */
        struct wire_vol_barrier_resp r = {.raft_index = v->max_index};
        uint8_t buf[16];
        int n = wire_encode_vol_barrier_resp(buf, sizeof(buf), &r);
        conn_reply(b->c, &b->hdr, buf, (size_t)n, NULL);
    }
    free(b);
}

static void on_proxy_request(struct conn *c, struct conn_frame *f, void *arg)
{
    struct agent_vols *vs = arg;
    if (f->hdr.type != WIRE_VOL_BARRIER) {
        if (!(f->hdr.flags & WIRE_F_ONEWAY))
            conn_reply_error(c, &f->hdr, -ENOTSUP, 0, "%s is not served by an agent",
                             wire_type_name(f->hdr.type));
        return;
    }
    if (f->hdr.flags & WIRE_F_ONEWAY) return;
    struct wire_vol_barrier_req m;
    if (wire_decode_vol_barrier_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed VOL_BARRIER");
        return;
    }
    struct agent_vol_shared *v = vol_by_id(vs, m.vol_id);
    if (!v || !v->rw || (v->state != AGENT_VOL_ACTIVE && v->state != AGENT_VOL_REATTACH)) {
        conn_reply_error(c, &f->hdr, -ENOENT, 0, "volume %llu is not attached read-write here",
                         (unsigned long long)m.vol_id);
        return;
    }
    if (v->gen != m.generation) {
        /* Not the attach the proxy knows: a barrier under another
         * generation proves nothing about that one. */
        conn_reply_error(c, &f->hdr, -BD_EFENCED, 0, "volume %s: attached here at generation "
                         "%llu, not %llu", v->name, (unsigned long long)v->gen,
                         (unsigned long long)m.generation);
        return;
    }
    struct barrier *b = calloc(1, sizeof(*b));
    if (!b) {
        conn_reply_error(c, &f->hdr, -ENOMEM, 0, "out of memory");
        return;
    }
    *b = (struct barrier){.vs = vs, .c = c, .hdr = f->hdr, .vol_id = m.vol_id};
    b->req.cb = on_barrier_done;
    b->req.data = b;
    agent_io_barrier(v, &b->req);
}

struct replay_ctx {
    struct agent_vol_shared *v;
    int err;
};

static void replay_rec(void *arg, const struct journal_rec *r)
{
    struct replay_ctx *c = arg;
    if (c->err) return;
    uint64_t start = r->off / BD_BLOCK_SIZE, nblk = r->len / BD_BLOCK_SIZE;
    if (r->kind == JOURNAL_CLEAN) {
        /* A direct write's tombstone (agent_io.c): the cluster holds a
         * newer version; the older entries replayed so far are void. */
        c->err = agent_cache_forget(c->v->c, start, start + nblk);
        return;
    }
    c->err = agent_ship_put_version(c->v, r->kind, start, nblk, r->seq, r->seg, r->data_pos,
                                    r->csums, 0);
}

static int replay_one(struct agent_vols *vs, uint64_t vol_id)
{
    char dir[CFG_PATH_MAX + 32], marker[CFG_PATH_MAX + 64];
    snprintf(dir, sizeof(dir), "%s/%016llx", vs->cfg->cache_dir, (unsigned long long)vol_id);
    snprintf(marker, sizeof(marker), "%s/FENCED", dir);
    struct journal_opts o = {.fio = vs->fio, .dir = dir, .tag = vs->tag, .vol_id = vol_id,
                             .cap_bytes = vs->cfg->cache_bytes, .seg_bytes = vs->seg_bytes,
                             .syncq = vs->syncq};
    struct journal *j;
    int rc = journal_open(&o, &j);
    if (rc == -ENOENT) {
        if (rmdir(dir) < 0) log_warn(vs->tag, "cannot remove empty %s: %s", dir, strerror(errno));
        return 0;
    }
    if (rc == -BD_ECORRUPT) {
        log_error(vs->tag, "journal %s is unreadable (no valid segment header): volume id %llu "
                  "is refused until an operator inspects it", dir, (unsigned long long)vol_id);
        uint64_t *b = realloc(vs->broken, (vs->n_broken + 1) * sizeof(*b));
        if (!b) return -ENOMEM;
        vs->broken = b;
        vs->broken[vs->n_broken++] = vol_id;
        return 0;
    }
    if (rc < 0) return rc;
    struct agent_vol_shared *v = vol_new(vs, journal_name(j));
    if (!v) {
        journal_close(j);
        return -ENOMEM;
    }
    util_strlcpy(v->dir, dir, sizeof(v->dir));
    v->vol_id = vol_id;
    v->j = j;
    v->c = agent_cache_new(j);
    v->rw = v->want_rw = v->replayed = true;
    if (!v->c) return -ENOMEM;
    struct replay_ctx ctx = {.v = v};
    struct journal_stats st;
    uint64_t t0 = util_mono_ns();
    rc = journal_replay(j, replay_rec, &ctx, &st);
    if (rc == 0) rc = ctx.err;
    if (rc < 0) {
        log_error(vs->tag, "journal %s: replay failed: %s", dir, bd_strerror(rc));
        return rc;
    }
    log_info(vs->tag, "vol %s: replayed journal %s in %.1f ms: %llu entries, %llu data bytes, "
             "%llu recovered, %llu damaged, %llu unknown losses, %llu torn bytes cut",
             v->name, dir, (double)(util_mono_ns() - t0) / 1e6, (unsigned long long)st.entries,
             (unsigned long long)st.data_bytes, (unsigned long long)st.recovered,
             (unsigned long long)st.damaged, (unsigned long long)st.lost_all,
             (unsigned long long)st.torn_bytes);
    if (access(marker, F_OK) == 0) {
        agent_vol_set_state(v, AGENT_VOL_FENCED);
        log_error(vs->tag, "vol %s: journal %s is marked FENCED: not re-attaching; I/O to the "
                  "volume fails until an operator resolves it", v->name, dir);
        return 0;
    }
    if (agent_cache_extents(v->c) == 0) {
        /* Nothing left to ship: a journal whose volume was already clean. */
        agent_cache_free(v->c);
        v->c = NULL;
        journal_destroy(v->j);
        v->j = NULL;
        v->replayed = false;
        vol_free(v);
        return 0;
    }
    /* Dirty data: attach and ship now.  Only LOST marks: wait for an open. */
    if (agent_cache_extents(v->c) > agent_cache_lost_extents(v->c)) agent_attach_start(v);
    return 0;
}

static int scan_cache_dir(struct agent_vols *vs)
{
    DIR *d = opendir(vs->cfg->cache_dir);
    if (!d) return -errno;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        const char *s = e->d_name;
        if (strlen(s) != 16) continue;
        uint64_t id = 0;
        bool ok = true;
        for (int i = 0; i < 16; i++) {
            int c = s[i];
            int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (x < 0) ok = false;
            id = id << 4 | (uint64_t)(x & 15);
        }
        if (ok && id) rc = replay_one(vs, id);
    }
    closedir(d);
    return rc;
}

static double g_dirty(void *arg)
{
    uint64_t n = 0;
    for (struct agent_vol_shared *v = ((struct agent_vols *)arg)->vols; v; v = v->next)
        if (v->c) n += agent_cache_dirty_bytes(v->c);
    return (double)n;
}
static double g_journal(void *arg)
{
    uint64_t n = 0;
    for (struct agent_vol_shared *v = ((struct agent_vols *)arg)->vols; v; v = v->next)
        if (v->j) n += journal_used_bytes(v->j);
    return (double)n;
}
/* The fullest journal against its bound (cache_bytes): what an alert on a
 * journal near full needs (conf/prometheus/blockd-rules.yml). */
static double g_journal_fill(void *arg)
{
    struct agent_vols *vs = arg;
    double worst = 0;
    for (struct agent_vol_shared *v = vs->vols; v; v = v->next)
        if (v->j && vs->cfg->cache_bytes)
            worst = BD_MAX(worst, (double)journal_used_bytes(v->j) / (double)vs->cfg->cache_bytes);
    return worst;
}
static double g_ships(void *arg)
{
    uint64_t n = 0;
    for (struct agent_vol_shared *v = ((struct agent_vols *)arg)->vols; v; v = v->next)
        n += v->n_ships;
    return (double)n;
}
static double g_vols(void *arg)
{
    uint64_t n = 0;
    for (struct agent_vol_shared *v = ((struct agent_vols *)arg)->vols; v; v = v->next)
        n++;
    return (double)n;
}

static double g_mapc_bytes(void *arg)
{
    struct agent_vols *vs = arg;
    return vs->mapc ? (double)agent_mapc_bytes(vs->mapc) : 0;
}
static double g_mapc_windows(void *arg)
{
    struct agent_vols *vs = arg;
    return vs->mapc ? (double)agent_mapc_windows(vs->mapc) : 0;
}
static double g_blob_csum(void *arg)
{
    struct agent_vols *vs = arg;
    struct agent_blobs_stats st = {0};
    if (vs->blobs) agent_blobs_stats(vs->blobs, &st);
    return (double)st.csum_errors;
}

static void metrics_setup(struct agent_vols *vs)
{
    char l[64];
    snprintf(l, sizeof(l), "role=\"%s\"", vs->tag);
    vs->m_ship = metrics_hist("blockd_agent_ship_seconds", "VOL_WRITE latency (ship to ack)", l);
    vs->m_flush = metrics_hist("blockd_agent_flush_seconds", "FLUSH latency", l);
    vs->m_reattach = metrics_counter("blockd_agent_reattaches_total",
                                     "Re-attaches to fence writes of unknown outcome", l);
    vs->m_fenced = metrics_counter("blockd_agent_fenced_total",
                                   "Volumes fenced by another agent's attach", l);
    vs->m_lost = metrics_counter("blockd_agent_lost_blocks_total",
                                 "Acknowledged blocks the journal lost (reads fail EIO)", l);
    vs->m_ships = metrics_counter("blockd_agent_ships_total", "VOL_WRITEs sent", l);
    vs->m_dwrites = metrics_counter("blockd_agent_direct_writes_total",
                                    "Large writes shipped as they arrived, around the journal", l);
    vs->m_dwrite_fb = metrics_counter("blockd_agent_direct_write_fallbacks_total",
                                      "Direct writes the cluster did not take, journaled", l);
    metrics_gauge("blockd_agent_dirty_bytes", "Data in the journal not yet in the cluster", l,
                  g_dirty, vs, vs);
    metrics_gauge("blockd_agent_journal_bytes", "Journal bytes on disk", l, g_journal, vs, vs);
    metrics_gauge("blockd_agent_journal_fill_ratio",
                  "The fullest volume journal, as a fraction of cache_bytes", l, g_journal_fill,
                  vs, vs);
    metrics_gauge("blockd_agent_ships_in_flight", "VOL_WRITEs awaiting their ack", l, g_ships, vs,
                  vs);
    metrics_gauge("blockd_agent_volumes", "Volumes held by the agent", l, g_vols, vs, vs);
    char lr[128];
    vs->m_direct = metrics_counter("blockd_agent_direct_reads_total",
                                   "Reads served straight from blob servers under a map lease", l);
#define LOOKUP(field, what)                                                                    \
    snprintf(lr, sizeof(lr), "%s,result=\"" what "\"", l);                                    \
    vs->field = metrics_counter("blockd_agent_map_lookups_total",                              \
                                "Map cache lookups of reads that may go direct", lr)
    LOOKUP(m_map_hit, "hit");
    LOOKUP(m_map_miss, "miss");
    LOOKUP(m_map_expired, "expired");
#undef LOOKUP
#define FALLBACK(field, what)                                                                  \
    snprintf(lr, sizeof(lr), "%s,reason=\"" what "\"", l);                                    \
    vs->field = metrics_counter("blockd_agent_read_fallbacks_total",                           \
                                "Reads that could have gone direct but went through a proxy",  \
                                lr)
    FALLBACK(m_fb_lease, "lease");
    FALLBACK(m_fb_map, "map");
    FALLBACK(m_fb_blob, "blob");
#undef FALLBACK
    metrics_gauge("blockd_agent_map_cache_bytes", "Memory held by leased maps", l, g_mapc_bytes,
                  vs, vs);
    metrics_gauge("blockd_agent_map_cache_windows", "Leased map windows cached", l,
                  g_mapc_windows, vs, vs);
    metrics_gauge("blockd_agent_blob_checksum_errors", "Direct blob reads that failed their "
                  "checksum (retried on another replica)", l, g_blob_csum, vs, vs);
}

int agent_vols_new(struct reactor *rx, const struct cfg *top, const struct cfg_agent *cfg,
                   struct tls_ctx *tls, const char *tag, struct agent_vols **out, char *err,
                   size_t errlen)
{
    struct agent_vols *vs = calloc(1, sizeof(*vs));
    if (!vs) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc;
    vs->rx = rx;
    vs->cfg = cfg;
    vs->up = &vol_up;
    vs->lock_fd = -1;
    vs->defer_tail = &vs->defer_head;
    util_strlcpy(vs->tag, tag ? tag : "agent", sizeof(vs->tag));
    util_strlcpy(vs->agent_id, cfg->id, sizeof(vs->agent_id));
    char name[80];
    snprintf(name, sizeof(name), "agent %s", cfg->id);
    conn_auth_init(&vs->auth, top->cluster_id, tls, 0, WIRE_ROLE_AGENT, name);
    uint64_t seg = BD_MIN(BD_MAX(cfg->cache_bytes / 8, 512u << 10), 64u << 20);
    vs->seg_bytes = seg - seg % BD_BLOCK_SIZE;
    /* The largest power of two a journal segment can hold (NBD clients
     * size their requests by it), with room for the block cover of an
     * unaligned one (agent_io.c's read-modify-write): 16 MiB for a 256 MiB
     * cache. */
    uint64_t fit = BD_MIN((uint64_t)AGENT_VOL_MAX_IO,
                          journal_max_write(vs->seg_bytes) - AGENT_VOL_COVER_SLACK);
    vs->max_io = BD_BLOCK_SIZE;
    while (vs->max_io * 2 <= fit) vs->max_io *= 2;
    vs->hw_bytes = cfg->cache_bytes * cfg->cache_high_water_pct / 100;
    vs->ship_blocks = cfg->ship_bytes / BD_BLOCK_SIZE;
    vs->fio = &fileio_posix;
#ifdef BD_FAULT_INJECTION
    if (cfg->fault.fsync_eio_after) {
        vs->faults.fsync_eio_after = cfg->fault.fsync_eio_after;
        vs->fio = fileio_faulty_new(&fileio_posix, &vs->faults);
        if (!vs->fio) {
            vs->fio = &fileio_posix;
            rc = -ENOMEM;
            snprintf(err, errlen, "out of memory");
            goto err;
        }
    }
#endif
    metrics_setup(vs);
    rc = util_mkdir_p(cfg->cache_dir, 0700);
    if (rc < 0) {
        snprintf(err, errlen, "cache_dir %s: %s", cfg->cache_dir, bd_strerror(rc));
        goto err;
    }
    char lock[CFG_PATH_MAX + 16];
    snprintf(lock, sizeof(lock), "%s/LOCK", cfg->cache_dir);
    vs->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (vs->lock_fd < 0 || flock(vs->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        snprintf(err, errlen, "cache_dir %s: %s", cfg->cache_dir,
                 rc == -EBUSY ? "in use by another agent" : bd_strerror(rc));
        goto err;
    }
    const char *addrs[CFG_MAX_PEERS];
    for (unsigned i = 0; i < cfg->n_proxies; i++) addrs[i] = cfg->proxies[i];
    struct agent_client_opts co = {.tag = vs->tag, .auth = &vs->auth, .proxies = addrs,
                                   .n = cfg->n_proxies, .io_timeout_ms = cfg->io_timeout_ms,
                                   .on_up = on_proxy_up, .agent_id = cfg->id,
                                   .on_request = on_proxy_request, .arg = vs};
#ifdef BD_FAULT_INJECTION
    co.fault.socket_failure_every = cfg->fault.socket_failure_every;
    co.fault.delay_ms = cfg->fault.delay_ms;
#endif
    vs->cl = agent_client_new(rx, &co, &rc);
    if (cfg->map_cache_bytes) {
        struct conn_opts bo = {.tag = vs->tag, .auth = &vs->auth};
#ifdef BD_FAULT_INJECTION
        bo.fault = co.fault;
#endif
        vs->mapc = agent_mapc_new(cfg->map_cache_bytes);
        vs->blobs = agent_blobs_new(rx, &bo, AGENT_IO_BLOB_LINKS);
        if (!vs->mapc || !vs->blobs) {
            rc = -ENOMEM;
            snprintf(err, errlen, "out of memory");
            goto err;
        }
    }
    struct agent_qos_opts qo = {.tag = vs->tag, .agent_id = vs->agent_id, .cl = vs->cl,
                                .keep_ms = cfg->qos_stats_keep_ms};
    vs->qos = vs->cl ? agent_qos_new(rx, &qo) : NULL;
    vs->syncq = taskq_new(rx, "agent-sync");
    vs->tick_ev = event_new(reactor_base(rx), -1, EV_PERSIST, on_tick, vs);
    vs->done_ev = event_new(reactor_base(rx), -1, 0, on_done_ev, vs);
    if (!vs->cl || !vs->qos || !vs->syncq || !vs->tick_ev || !vs->done_ev) {
        if (rc == 0 || !vs->cl) rc = rc ? rc : -ENOMEM;
        snprintf(err, errlen, "cannot start the cluster client: %s", bd_strerror(rc));
        goto err;
    }
    struct timeval tv = {0, AGENT_VOL_TICK_MS * 1000};
    event_add(vs->tick_ev, &tv);
    rc = scan_cache_dir(vs);
    if (rc < 0) {
        snprintf(err, errlen, "replaying journals in %s: %s", cfg->cache_dir, bd_strerror(rc));
        goto err;
    }
    *out = vs;
    return 0;

err:
    agent_vols_free(vs);
    return rc;
}

void agent_vols_stop(struct agent_vols *vs, void (*done)(void *arg), void *arg)
{
    vs->stopping = true;
    vs->stop_done = done;
    vs->stop_arg = arg;
    vs->stop_deadline = util_mono_ms() + vs->cfg->io_timeout_ms;
    agent_qos_stop(vs->qos); /* waiting requests go, to be answered -ESHUTDOWN */
    for (struct agent_vol_shared *v = vs->vols; v; v = v->next) {
        agent_io_drain_waiters(v); /* waiting writes fail: the agent is stopping */
        v->drain = true;
        agent_ship_kick(v);
    }
    /* The tick finishes the job (never from inside this call). */
}

void agent_vols_free(struct agent_vols *vs)
{
    if (!vs) return;
    vs->freeing = true;
    /* Every callback from here on sees `freeing` and only releases.  The
     * QoS poll stops first: it must not call a client being freed. */
    if (vs->qos) agent_qos_stop(vs->qos);
    agent_client_free(vs->cl);
    agent_blobs_free(vs->blobs); /* direct reads in flight see `freeing` */
    vs->blobs = NULL;
    if (vs->syncq) taskq_free(vs->syncq);
    deliver_deferred(vs, true); /* handles still to hand over refer to live vols */
    agent_io_deliver(vs);       /* direct writes that ended: answered -ESHUTDOWN */
    while (vs->vols) {
        struct agent_vol_shared *v = vs->vols;
        agent_io_fail_all(v, -ESHUTDOWN);
        opens_fail(v, -ESHUTDOWN);
        vol_free(v);
    }
    struct agent_vol_req *r = vs->done_head;
    vs->done_head = vs->done_tail = NULL;
    while (r) {
        struct agent_vol_req *next = r->next;
        r->cb(r, (int)(intptr_t)r->priv[4]);
        r = next;
    }
    deliver_deferred(vs, true);
    agent_assign_free(vs);
    if (vs->tick_ev) event_free(vs->tick_ev);
    if (vs->done_ev) event_free(vs->done_ev);
    agent_qos_free(vs->qos);
    metrics_remove_owner(vs);
    agent_mapc_free(vs->mapc);
    if (vs->fio != &fileio_posix) fileio_faulty_free(vs->fio);
    if (vs->lock_fd >= 0) close(vs->lock_fd);
    free(vs->broken);
    free(vs);
}

/* ---- open, list, info ---------------------------------------------------- */

static bool name_ok(const char *name)
{
    size_t n = strnlen(name, AGENT_VOL_NAME_MAX + 1);
    return n > 0 && n <= AGENT_VOL_NAME_MAX;
}

void agent_vols_open(struct agent_vols *vs, const char *name, bool read_only,
                     struct agent_vols_open_req *req)
{
    req->priv[0] = (void *)(uintptr_t)read_only;
    req->priv[1] = NULL;
    if (vs->stopping || vs->freeing) {
        open_finish(vs, req, -ESHUTDOWN, NULL);
        return;
    }
    if (!name_ok(name)) {
        open_finish(vs, req, -EINVAL, NULL);
        return;
    }
    struct agent_vol_shared *v = vol_find(vs, name);
    if (v && (v->state == AGENT_VOL_FENCED || v->state == AGENT_VOL_FAILED)) {
        if (!v->j && !vol_busy(v)) {
            vol_free(v); /* a failed attempt: try again */
            v = NULL;
        } else {
            open_finish(vs, req, -EIO, NULL);
            return;
        }
    }
    if (!v) {
        v = vol_new(vs, name);
        if (!v) {
            open_finish(vs, req, -ENOMEM, NULL);
            return;
        }
    }
    bool ready =
        (v->state == AGENT_VOL_ACTIVE || v->state == AGENT_VOL_REATTACH) && (read_only || v->rw);
    if (ready && vs->watch && vs->assign_known && vs->assign_asked_ms > v->attached_ms) {
        /* Ours already, but perhaps no longer attached to us: the watch's
         * last answer says, if it is newer than the proxies' last grant
         * (an answer asked before the attach knows nothing of it). */
        const struct agent_vols_list_entry *a = agent_assign_find(vs, name);
        int err = !a ? -ENOENT : a->read_only && !read_only ? -EACCES : 0;
        if (err) {
            open_finish(vs, req, err, NULL);
            return;
        }
    }
    if (ready) {
        struct agent_vol *h = handle_new(v, read_only);
        open_finish(vs, req, h ? 0 : -ENOMEM, h);
        return;
    }
    if (v->open_tail) v->open_tail->priv[1] = req;
    else v->open_head = req;
    v->open_tail = req;
    if (!read_only) v->want_rw = true;
    if (v->state != AGENT_VOL_DETACHING && !v->attach_busy) agent_attach_start(v);
}

const struct agent_vol_info *agent_vol_info(const struct agent_vol *h)
{
    return &h->info;
}

struct agent_qos_vol *agent_vol_qos(const struct agent_vol *h)
{
    return h->v->qos;
}

void agent_vol_put(struct agent_vol *h)
{
    struct agent_vol_shared *v = h->v;
    free(h);
    if (BD_NEVER(v->refs == 0)) return;
    if (--v->refs == 0) v->idle_since = util_mono_ms();
}

void agent_vols_list(struct agent_vols *vs, struct agent_vols_list_req *req)
{
    int err = vs->stopping || vs->freeing ? -ESHUTDOWN : agent_assign_list(vs, req);
    if (!err) return;
    struct agent_vol_deferred *d = calloc(1, sizeof(*d));
    if (!d) {
        req->cb(req, err, NULL, 0);
        return;
    }
    d->list = req;
    d->err = err;
    defer(vs, d);
}

struct info_ctx {
    struct agent_vols *vs;
    struct agent_vols_info_req *req;
    struct agent_client_req call;
    char name[AGENT_VOL_NAME_MAX + 1];
};

static void on_info(struct agent_client_req *call, int err, struct conn_frame *f)
{
    struct info_ctx *ic = call->data;
    struct agent_vols *vs = ic->vs;
    struct wire_vol_attach_resp r;
    struct agent_vol_info info = {0};
    if (vs->freeing) err = -ESHUTDOWN;
    if (!err && wire_decode_vol_attach_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) < 0)
        err = -EIO;
    if (!err && (r.block_size > BD_BLOCK_SIZE || r.size % BD_BLOCK_SIZE ||
                 !wire_str_copy(r.client, info.client, sizeof(info.client))))
        err = -EIO;
    if (!err) {
        util_strlcpy(info.name, ic->name, sizeof(info.name));
        info.size = r.size;
        info.block_size = BD_BLOCK_SIZE;
        info.max_io = (uint32_t)vs->max_io;
        info.read_only = (r.flags & WIRE_ATTACH_RO) != 0; /* attached read-only */
    } else if (err != -ENOENT && err != -ESHUTDOWN && err != -ETIMEDOUT) {
        err = -EIO;
    }
    ic->req->cb(ic->req, err, err ? NULL : &info);
    free(ic);
}

void agent_vols_info(struct agent_vols *vs, const char *name, struct agent_vols_info_req *req)
{
    int err = vs->stopping || vs->freeing ? -ESHUTDOWN : name_ok(name) ? 0 : -EINVAL;
    struct agent_vol_shared *v = err ? NULL : vol_find(vs, name);
    /* A volume attached here (as of the watch's last answer) is described
     * from what we hold, also while it re-attaches (which needs the
     * proxies): agent_vols_open serves it then too, so a client that
     * connects while the control plane is down still reaches the journal's
     * data.  Anything else asks the proxies, who know. */
    const struct agent_vols_list_entry *a = v ? agent_assign_find(vs, name) : NULL;
    if (err || (v && a && (v->state == AGENT_VOL_ACTIVE || v->state == AGENT_VOL_REATTACH))) {
        struct agent_vol_deferred *d = calloc(1, sizeof(*d));
        if (!d) {
            req->cb(req, -ENOMEM, NULL);
            return;
        }
        d->info = req;
        d->err = err;
        if (v) {
            util_strlcpy(d->vinfo.name, v->name, sizeof(d->vinfo.name));
            d->vinfo.size = v->size;
            d->vinfo.block_size = BD_BLOCK_SIZE;
            d->vinfo.max_io = (uint32_t)vs->max_io;
            /* What the attachment allows: an open upgrades a volume
             * attached read-only so far. */
            d->vinfo.read_only = a->read_only;
            util_strlcpy(d->vinfo.client, a->client, sizeof(d->vinfo.client));
        }
        defer(vs, d);
        return;
    }
    struct info_ctx *ic = calloc(1, sizeof(*ic));
    if (!ic) {
        req->cb(req, -ENOMEM, NULL);
        return;
    }
    ic->vs = vs;
    ic->req = req;
    util_strlcpy(ic->name, name, sizeof(ic->name));
    struct wire_vol_attach_req m = {.name = wire_cstr(name), .agent_id = wire_cstr(vs->agent_id),
                                    .flags = WIRE_ATTACH_INFO};
    int n = wire_encode_vol_attach_req(ic->call.fields, sizeof(ic->call.fields), &m);
    ic->call.fields_len = n > 0 ? (size_t)n : 0;
    ic->call.type = WIRE_VOL_ATTACH;
    ic->call.idempotent = true;
    ic->call.cb = on_info;
    ic->call.data = ic;
    agent_client_call(vs->cl, &ic->call);
}

/* ---- status -------------------------------------------------------------- */

void agent_vols_status(struct agent_vols *vs, struct cJSON *out)
{
    uint64_t dirty = 0, jbytes = 0, ships = 0;
    cJSON *vols = cJSON_AddArrayToObject(out, "volumes");
    for (struct agent_vol_shared *v = vs->vols; v && vols; v = v->next) {
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        uint64_t d = v->c ? agent_cache_dirty_bytes(v->c) : 0,
                 jb = v->j ? journal_used_bytes(v->j) : 0;
        dirty += d;
        jbytes += jb;
        ships += v->n_ships;
        cJSON_AddStringToObject(o, "name", v->name);
        cJSON_AddNumberToObject(o, "id", (double)v->vol_id);
        cJSON_AddStringToObject(o, "state", agent_vol_state_name(v->state));
        cJSON_AddBoolToObject(o, "read_write", v->rw);
        cJSON_AddNumberToObject(o, "generation", (double)v->gen);
        cJSON_AddNumberToObject(o, "size", (double)v->size);
        cJSON_AddNumberToObject(o, "connections", v->refs);
        cJSON_AddNumberToObject(o, "dirty_bytes", (double)d);
        cJSON_AddNumberToObject(o, "journal_bytes", (double)jb);
        cJSON_AddNumberToObject(o, "journal_segments", v->j ? journal_segments(v->j) : 0);
        cJSON_AddNumberToObject(o, "dirty_extents", v->c ? (double)agent_cache_extents(v->c) : 0);
        cJSON_AddNumberToObject(o, "lost_extents",
                                v->c ? (double)agent_cache_lost_extents(v->c) : 0);
        cJSON_AddNumberToObject(o, "ships_in_flight", v->n_ships);
        cJSON_AddNumberToObject(o, "max_raft_index", (double)v->max_index);
        agent_qos_vol_json(v->qos, o);
        cJSON_AddItemToArray(vols, o);
    }
    cJSON_AddNumberToObject(out, "dirty_bytes", (double)dirty);
    cJSON_AddNumberToObject(out, "journal_bytes", (double)jbytes);
    cJSON_AddNumberToObject(out, "ships_in_flight", (double)ships);
    cJSON_AddNumberToObject(out, "retries", (double)agent_client_retries(vs->cl));
    cJSON_AddNumberToObject(out, "reattaches", (double)vs->reattaches);
    cJSON_AddNumberToObject(out, "lost_blocks", (double)vs->lost_blocks);
    cJSON *px = cJSON_AddArrayToObject(out, "proxies");
    if (px) agent_client_status(vs->cl, px);
    cJSON_AddNumberToObject(out, "proxies_up", agent_client_up(vs->cl));
}
