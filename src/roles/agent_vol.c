/* agent_vol.c: the agent's volume registry (agent_vol.h): start-up replay,
 * volume objects, the tick, stop, status.  Attach, detach, open, list and
 * info are in agent_attach.c; the request paths in agent_io.c; shipping
 * in agent_ship.c.
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
 * Detach.  AGENT_IDLE_MS after the last handle is put, once the volume is
 * clean (nothing dirty, nothing LOST, nothing in flight), VOL_DETACH is
 * sent and the journal deleted; a crash before that only means the
 * journal is replayed and re-shipped next time.
 *
 * Fenced.  When the cluster says another agent attached the volume, the
 * volume fails (-EIO for all I/O) and a FENCED file is written (fsynced,
 * on the task queue) into its journal directory, so a restart does not
 * re-attach and overwrite the new owner with stale data.
 *
 * The tick (every AGENT_TICK_MS) handles every timeout-shaped duty:
 * deadlines of waiting requests, age-based shipping, backoff retries of
 * ships and attaches, idle detach, and the progress of agent_vols_stop. */
#include "../bd.h"
#include "../log.h"
#include "../net/metrics.h"
#include "../net/taskq.h"
#include "../store/fileio.h"
#include "../util.h"
#include "agent_vol_int.h"

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

static const char *const state_names[] = {"attaching", "active", "reattach", "detaching",
                                          "fenced", "failed"};

/* ---- deferred callbacks -------------------------------------------------- *
 * Open, list and info callbacks that are known at once still run later,
 * from the done event, never from inside the call that asked. */


void vols_defer(struct agent_vols *vs, struct deferred *d)
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
        struct deferred *d = vs->defer_head;
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
void vols_open_finish(struct agent_vols *vs, struct agent_open_req *req, int err,
                        struct agent_vol *h)
{
    struct deferred *d = calloc(1, sizeof(*d));
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
    vols_defer(vs, d);
}

static void on_done_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct agent_vols *vs = arg;
    struct agent_req *r = vs->done_head;
    vs->done_head = vs->done_tail = NULL;
    while (r) {
        struct agent_req *next = r->next;
        r->next = NULL;
        r->cb(r, (int)(intptr_t)r->priv[4]);
        r = next;
    }
    deliver_deferred(vs, false);
}

/* ---- volumes ------------------------------------------------------------- */

void vol_set_state(struct vol *v, enum vol_state st)
{
    if (v->state == st) return;
    log_debug(v->vs->tag, "vol %s: %s -> %s", v->name, state_names[v->state], state_names[st]);
    v->state = st;
}

struct vol *vol_new(struct agent_vols *vs, const char *name)
{
    struct vol *v = calloc(1, sizeof(*v));
    if (!v) return NULL;
    v->csum_scratch = malloc(vs->max_io / BD_BLOCK_SIZE * sizeof(uint64_t));
    if (!v->csum_scratch) {
        free(v);
        return NULL;
    }
    v->vs = vs;
    util_strlcpy(v->name, name, sizeof(v->name));
    v->state = VOL_ATTACHING;
    v->next = vs->vols;
    vs->vols = v;
    return v;
}

void vol_free(struct vol *v)
{
    struct agent_vols *vs = v->vs;
    struct vol **pp = &vs->vols;
    while (*pp && *pp != v) pp = &(*pp)->next;
    if (*pp) *pp = v->next;
    cache_free(v->c);
    journal_close(v->j);
    io_free_vol(v);
    ship_free_vol(v);
    free(v->csum_scratch);
    free(v);
}

bool vol_busy(const struct vol *v)
{
    return v->refs || v->busy || v->attach_busy || v->fence_busy || v->sync_busy ||
           v->open_head || v->wait_head || v->dur_head;
}

/* Free V if nothing holds it and it has nothing to keep (no journal). */
void vol_maybe_free(struct vol *v)
{
    if (v->vs->freeing || vol_busy(v) || v->j || v->replayed || v->state == VOL_ACTIVE ||
        v->state == VOL_REATTACH)
        return;
    vol_free(v);
}

struct vol *vol_find(struct agent_vols *vs, const char *name)
{
    for (struct vol *v = vs->vols; v; v = v->next)
        if (!v->orphan && strcmp(v->name, name) == 0) return v;
    return NULL;
}

bool vols_is_broken(const struct agent_vols *vs, uint64_t vol_id)
{
    for (unsigned i = 0; i < vs->n_broken; i++)
        if (vs->broken[i] == vol_id) return true;
    return false;
}

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

void vol_fail(struct vol *v, int err, const char *why)
{
    struct agent_vols *vs = v->vs;
    if (v->state == VOL_FENCED || v->state == VOL_FAILED) return;
    bool fenced = err == -BD_EFENCED || err == -EBUSY;
    uint64_t dirty = v->c ? cache_extents(v->c) - cache_lost_extents(v->c) : 0;
    log_error(vs->tag, "vol %s (id %llu, gen %llu): %s: %s; all I/O now fails with EIO; "
              "%llu dirty extents stay in the journal %s", v->name,
              (unsigned long long)v->vol_id, (unsigned long long)v->gen,
              fenced ? "FENCED (C10)" : "FAILED", why, (unsigned long long)dirty,
              v->j ? v->dir : "(none)");
    vol_set_state(v, fenced ? VOL_FENCED : VOL_FAILED);
    if (fenced) metric_inc(vs->m_fenced);
    ship_zombify_all(v);
    io_fail_all(v, -EIO);
    while (v->open_head) {
        struct agent_open_req *o = v->open_head;
        v->open_head = o->priv[1];
        vols_open_finish(vs, o, -EIO, NULL);
    }
    v->open_tail = NULL;
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

/* ---- the tick and stop --------------------------------------------------- */

static void check_stop(struct agent_vols *vs, uint64_t now)
{
    bool done = true, timed_out = now >= vs->stop_deadline;
    for (struct vol *v = vs->vols; v; v = v->next) {
        if (v->state == VOL_DETACHING) {
            done = false;
            continue;
        }
        if (v->state != VOL_ACTIVE && v->state != VOL_REATTACH) continue;
        bool dirty = v->c && cache_extents(v->c) > cache_lost_extents(v->c);
        if ((dirty || v->n_ships) && !timed_out) {
            done = false;
            continue;
        }
        if (!v->refs && vol_clean(v) && !timed_out) {
            vol_detach(v);
            done = false;
        }
    }
    if (!done) return;
    for (struct vol *v = vs->vols; v; v = v->next) io_fail_all(v, -ESHUTDOWN);
    void (*fn)(void *) = vs->stop_done;
    vs->stop_done = NULL;
    if (timed_out)
        log_warn(vs->tag, "stop: gave up shipping after %llu ms; dirty journals stay for the "
                 "next start", (unsigned long long)vs->cfg->io_timeout_ms);
    if (fn) fn(vs->stop_arg);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct agent_vols *vs = arg;
    uint64_t now = util_mono_ms();
    struct vol *next;
    for (struct vol *v = vs->vols; v; v = next) {
        next = v->next;
        io_tick(v, now);
        if (v->attach_retry_at && now >= v->attach_retry_at && !v->attach_busy &&
            v->state != VOL_FENCED && v->state != VOL_FAILED)
            vol_attach_start(v);
        if (v->c && v->state == VOL_ACTIVE) {
            uint64_t every = BD_MAX(vs->cfg->flush_age_ms / 4, (uint64_t)AGENT_TICK_MS);
            if (now - v->last_age_scan >= every) {
                v->last_age_scan = now;
                ship_kick_age(v);
            } else if (v->ship_retry_at && now >= v->ship_retry_at) {
                v->ship_retry_at = 0;
                ship_kick(v);
            }
        }
        if (!vs->stopping && v->state == VOL_ACTIVE && !v->refs && vol_clean(v) &&
            now - v->idle_since >= AGENT_IDLE_MS)
            vol_detach(v);
    }
    if (vs->stopping && vs->stop_done) check_stop(vs, now);
}

/* ---- registry ------------------------------------------------------------ */

/* A proxy is reachable again: whatever backs off for lack of one goes now. */
static void on_proxy_up(void *arg)
{
    struct agent_vols *vs = arg;
    for (struct vol *v = vs->vols; v; v = v->next) {
        if (v->attach_retry_at) v->attach_retry_at = 1;
        if (v->ship_retry_at) {
            v->ship_retry_at = 0;
            ship_kick(v);
        }
    }
}

struct replay_ctx {
    struct vol *v;
    int err;
};

static void replay_rec(void *arg, const struct journal_rec *r)
{
    struct replay_ctx *c = arg;
    if (c->err) return;
    uint64_t start = r->off / BD_BLOCK_SIZE, nblk = r->len / BD_BLOCK_SIZE;
    c->err = io_put_version(c->v, r->kind, start, nblk, r->seq, r->seg, r->data_pos, r->csums, 0);
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
    struct vol *v = vol_new(vs, journal_name(j));
    if (!v) {
        journal_close(j);
        return -ENOMEM;
    }
    util_strlcpy(v->dir, dir, sizeof(v->dir));
    v->vol_id = vol_id;
    v->j = j;
    v->c = cache_new(j);
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
        vol_set_state(v, VOL_FENCED);
        log_error(vs->tag, "vol %s: journal %s is marked FENCED: not re-attaching; I/O to the "
                  "volume fails until an operator resolves it", v->name, dir);
        return 0;
    }
    if (cache_extents(v->c) == 0) {
        /* Nothing left to ship: a journal whose volume was already clean. */
        cache_free(v->c);
        v->c = NULL;
        journal_destroy(v->j);
        v->j = NULL;
        v->replayed = false;
        vol_free(v);
        return 0;
    }
    /* Dirty data: attach and ship now.  Only LOST marks: wait for an open. */
    if (cache_extents(v->c) > cache_lost_extents(v->c)) vol_attach_start(v);
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
    for (struct vol *v = ((struct agent_vols *)arg)->vols; v; v = v->next)
        if (v->c) n += cache_dirty_bytes(v->c);
    return (double)n;
}
static double g_journal(void *arg)
{
    uint64_t n = 0;
    for (struct vol *v = ((struct agent_vols *)arg)->vols; v; v = v->next)
        if (v->j) n += journal_used_bytes(v->j);
    return (double)n;
}
static double g_ships(void *arg)
{
    uint64_t n = 0;
    for (struct vol *v = ((struct agent_vols *)arg)->vols; v; v = v->next) n += v->n_ships;
    return (double)n;
}
static double g_vols(void *arg)
{
    uint64_t n = 0;
    for (struct vol *v = ((struct agent_vols *)arg)->vols; v; v = v->next) n++;
    return (double)n;
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
    metrics_gauge("blockd_agent_dirty_bytes", "Data in the journal not yet in the cluster", l,
                  g_dirty, vs, vs);
    metrics_gauge("blockd_agent_journal_bytes", "Journal bytes on disk", l, g_journal, vs, vs);
    metrics_gauge("blockd_agent_ships_in_flight", "VOL_WRITEs awaiting their ack", l, g_ships, vs,
                  vs);
    metrics_gauge("blockd_agent_volumes", "Volumes held by the agent", l, g_vols, vs, vs);
}

int agent_vols_new(struct reactor *rx, const struct bd_config *top, const struct cfg_agent *cfg,
                   const char *tag, struct agent_vols **out, char *err, size_t errlen)
{
    struct agent_vols *vs = calloc(1, sizeof(*vs));
    if (!vs) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc;
    vs->rx = rx;
    vs->cfg = cfg;
    vs->lock_fd = -1;
    vs->defer_tail = &vs->defer_head;
    util_strlcpy(vs->tag, tag ? tag : "agent", sizeof(vs->tag));
    util_strlcpy(vs->agent_id, cfg->id, sizeof(vs->agent_id));
    char name[80];
    snprintf(name, sizeof(name), "agent %s", cfg->id);
    conn_auth_init(&vs->auth, top->cluster_id, top->secret, 0, WIRE_ROLE_AGENT, name);
    uint64_t seg = BD_MIN(BD_MAX(cfg->cache_bytes / 8, 512u << 10), 64u << 20);
    vs->seg_bytes = seg - seg % BD_BLOCK_SIZE;
    /* The largest power of two a journal segment can hold (NBD clients
     * size their requests by it): 16 MiB for a 256 MiB cache. */
    uint64_t fit = BD_MIN((uint64_t)AGENT_MAX_IO, journal_max_write(vs->seg_bytes));
    vs->max_io = BD_BLOCK_SIZE;
    while (vs->max_io * 2 <= fit) vs->max_io *= 2;
    vs->hw_bytes = cfg->cache_bytes * cfg->cache_high_water_pct / 100;
    vs->ship_blocks = cfg->ship_bytes / BD_BLOCK_SIZE;
    vs->fio = &fio_posix;
#ifdef BD_FAULT_INJECTION
    if (cfg->fault.fsync_eio_after) {
        vs->faults.fsync_eio_after = cfg->fault.fsync_eio_after;
        vs->fio = fio_faulty_new(&fio_posix, &vs->faults);
        if (!vs->fio) {
            vs->fio = &fio_posix;
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
                                   .on_up = on_proxy_up, .arg = vs};
#ifdef BD_FAULT_INJECTION
    co.fault.socket_failure_every = cfg->fault.socket_failure_every;
    co.fault.delay_ms = cfg->fault.delay_ms;
#endif
    vs->cl = agent_client_new(rx, &co, &rc);
    vs->syncq = taskq_new(rx, "agent-sync");
    vs->tick_ev = event_new(reactor_base(rx), -1, EV_PERSIST, on_tick, vs);
    vs->done_ev = event_new(reactor_base(rx), -1, 0, on_done_ev, vs);
    if (!vs->cl || !vs->syncq || !vs->tick_ev || !vs->done_ev) {
        if (rc == 0 || !vs->cl) rc = rc ? rc : -ENOMEM;
        snprintf(err, errlen, "cannot start the cluster client: %s", bd_strerror(rc));
        goto err;
    }
    struct timeval tv = {0, AGENT_TICK_MS * 1000};
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
    for (struct vol *v = vs->vols; v; v = v->next) {
        io_drain_waiters(v); /* waiting writes fail: the agent is stopping */
        v->drain = true;
        ship_kick(v);
    }
    /* The tick finishes the job (never from inside this call). */
}

void agent_vols_free(struct agent_vols *vs)
{
    if (!vs) return;
    vs->freeing = true;
    /* Every callback from here on sees `freeing` and only releases. */
    agent_client_free(vs->cl);
    if (vs->syncq) taskq_free(vs->syncq);
    deliver_deferred(vs, true); /* handles still to hand over refer to live vols */
    while (vs->vols) {
        struct vol *v = vs->vols;
        io_fail_all(v, -ESHUTDOWN);
        vol_fail_opens(v, -ESHUTDOWN);
        vol_free(v);
    }
    struct agent_req *r = vs->done_head;
    vs->done_head = vs->done_tail = NULL;
    while (r) {
        struct agent_req *next = r->next;
        r->cb(r, (int)(intptr_t)r->priv[4]);
        r = next;
    }
    deliver_deferred(vs, true);
    if (vs->tick_ev) event_free(vs->tick_ev);
    if (vs->done_ev) event_free(vs->done_ev);
    metrics_remove_owner(vs);
    if (vs->fio != &fio_posix) fio_faulty_free(vs->fio);
    if (vs->lock_fd >= 0) close(vs->lock_fd);
    free(vs->broken);
    free(vs);
}

/* ---- status -------------------------------------------------------------- */

void agent_vols_status(struct agent_vols *vs, struct cJSON *out)
{
    uint64_t dirty = 0, jbytes = 0, ships = 0;
    cJSON *vols = cJSON_AddArrayToObject(out, "volumes");
    for (struct vol *v = vs->vols; v && vols; v = v->next) {
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        uint64_t d = v->c ? cache_dirty_bytes(v->c) : 0, jb = v->j ? journal_used_bytes(v->j) : 0;
        dirty += d;
        jbytes += jb;
        ships += v->n_ships;
        cJSON_AddStringToObject(o, "name", v->name);
        cJSON_AddNumberToObject(o, "id", (double)v->vol_id);
        cJSON_AddStringToObject(o, "state", state_names[v->state]);
        cJSON_AddBoolToObject(o, "read_write", v->rw);
        cJSON_AddNumberToObject(o, "generation", (double)v->gen);
        cJSON_AddNumberToObject(o, "size", (double)v->size);
        cJSON_AddNumberToObject(o, "connections", v->refs);
        cJSON_AddNumberToObject(o, "dirty_bytes", (double)d);
        cJSON_AddNumberToObject(o, "journal_bytes", (double)jb);
        cJSON_AddNumberToObject(o, "journal_segments", v->j ? journal_segments(v->j) : 0);
        cJSON_AddNumberToObject(o, "dirty_extents", v->c ? (double)cache_extents(v->c) : 0);
        cJSON_AddNumberToObject(o, "lost_extents", v->c ? (double)cache_lost_extents(v->c) : 0);
        cJSON_AddNumberToObject(o, "ships_in_flight", v->n_ships);
        cJSON_AddNumberToObject(o, "max_raft_index", (double)v->max_index);
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
