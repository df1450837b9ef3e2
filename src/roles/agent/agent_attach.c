/* agent_attach.c: attaching and detaching one volume (agent_attach.h; the
 * life of a volume is described in agent_vol.c and agent_vol_int.h).
 *
 * Place.  Below the registry (agent_vol.c, which decides when to attach
 * and detach), above the request paths and the shipper, which it calls
 * when an attach succeeds (kick the ships, re-check durability) or fences
 * the old generation (zombify the ships).  It owns no opens: the registry
 * queues them on the volume, and the outcome of an attach goes back up
 * through vs->up (opens_done, gone, fail, release).  The shipper reaches
 * agent_attach_reattach only as up->reattach.
 *
 * Attach.  VOL_ATTACH goes to the cluster by name; read-write bumps the
 * generation, fencing every earlier writer (C10), and this agent then
 * refuses to go on unless the generation really grew.  It bumps it only
 * from attach_base, the newest generation the cluster told us: the client
 * may send one attach to several proxies (a timeout, then another proxy),
 * and a copy that commits after the one we were answered must not fence
 * us.  With a base, such a copy finds the generation moved and changes
 * nothing.  The other side of it: an attach refused because the
 * generation moved (EFENCED, the hint the generation) may have lost to a
 * copy of itself, so it goes again on the new base (a bounded number of
 * times: a generation that keeps moving is another writer's).  The
 * journal and
 * dirty map are created on the first read-write attach.  An attach that
 * finds the volume gone or attached elsewhere while we hold unshipped data
 * fails the volume loudly; a cluster that does not answer is retried in
 * the background for volumes that hold data (replayed journals,
 * re-attaches), so I/O resumes when the proxies return.
 *
 * Re-attach (agent_attach_reattach) is the answer to a write of unknown
 * outcome: the higher generation fences every send made before it, after
 * which agent_ship.c resends everything unacked.
 *
 * Detach.  VOL_DETACH for an idle clean volume, then the journal is
 * deleted; opens that arrive meanwhile attach again afterwards.  A volume
 * attached read-only only is simply let go: such an attach left no trace
 * in the index. */
#include "base/bd.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "base/util.h"
#include "roles/agent/agent_attach.h"
#include "roles/agent/agent_io.h"
#include "roles/agent/agent_ship.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATTACH_BACKOFF_MIN_MS 200
#define ATTACH_BACKOFF_MAX_MS 5000
/* Refusals in a row because the generation moved: one for an attach whose
 * base is old (the first, or after a detach), one for each copy of our own
 * that beat the one answered, one for a proxy behind the leader; more is
 * another writer attaching the volume (C10). */
#define ATTACH_MOVED_MAX 8

/* ---- attach -------------------------------------------------------------- */

static int journal_opts_for(struct agent_vol_shared *v, struct journal_opts *o)
{
    struct agent_vols *vs = v->vs;
    snprintf(v->dir, sizeof(v->dir), "%s/%016llx", vs->cfg->cache_dir,
             (unsigned long long)v->vol_id);
    *o = (struct journal_opts){.fio = vs->fio, .dir = v->dir, .tag = vs->tag,
                               .vol_id = v->vol_id, .name = v->name,
                               .cap_bytes = vs->cfg->cache_bytes, .seg_bytes = vs->seg_bytes,
                               .syncq = vs->syncq};
    return 0;
}

/* Create the journal and map of a volume attached read-write. */
static int vol_make_cache(struct agent_vol_shared *v)
{
    if (v->j) return 0;
    struct journal_opts o;
    journal_opts_for(v, &o);
    if (agent_vols_is_broken(v->vs, v->vol_id)) return -EIO;
    int rc = journal_create(&o, &v->j);
    if (rc < 0) {
        log_error(v->vs->tag, "vol %s: cannot create journal %s: %s", v->name, v->dir,
                  bd_strerror(rc));
        return rc == -EEXIST ? -EIO : rc;
    }
    v->c = agent_cache_new(v->j);
    if (!v->c) {
        journal_destroy(v->j);
        v->j = NULL;
        return -ENOMEM;
    }
    return 0;
}

static void attach_ok(struct agent_vol_shared *v, const struct wire_vol_attach_resp *r)
{
    struct agent_vols *vs = v->vs;
    bool rw = v->want_rw;
    if (v->vol_id && r->vol_id != v->vol_id) {
        /* The name now means another volume: this journal's volume is gone. */
        log_error(vs->tag, "vol %s: now has id %llu, but our journal is for id %llu",
                  v->name, (unsigned long long)r->vol_id, (unsigned long long)v->vol_id);
        vs->up->gone(v);
        return;
    }
    if (agent_vols_is_broken(vs, r->vol_id)) {
        /* Its journal may hold acknowledged writes newer than the cluster's
         * data: no attach of any kind until an operator has looked. */
        log_error(vs->tag, "vol %s: its journal (id %llu) is unreadable: refusing to attach",
                  v->name, (unsigned long long)r->vol_id);
        vs->up->opens_done(v, -EIO);
        if (v->state == AGENT_VOL_ATTACHING) agent_vol_set_state(v, AGENT_VOL_FAILED);
        return;
    }
    if (r->block_size > BD_BLOCK_SIZE || r->size % BD_BLOCK_SIZE) {
        vs->up->fail(v, -EIO, "unsupported block size or volume size");
        return;
    }
    if (rw && (r->flags & WIRE_ATTACH_RO)) {
        v->want_rw = false;
        vs->up->opens_done(v, -EPERM); /* read-only volume: RW opens are refused */
        if (v->state == AGENT_VOL_ATTACHING && !v->replayed)
            agent_vol_set_state(v, AGENT_VOL_FAILED);
        return;
    }
    if (rw && v->gen && r->generation <= v->gen) {
        vs->up->fail(v, -BD_EFENCED, "attach did not raise the generation: old writes not fenced");
        return;
    }
    agent_io_map_drop(v); /* maps of the attach before (another generation, or volume) */
    v->vol_id = r->vol_id;
    v->size = r->size;
    v->attached_ms = util_mono_ms();
    agent_io_map_drop(v);
    if (r->generation > v->attach_base) v->attach_base = r->generation; /* never lower */
    if (r->raft_index > v->max_index) v->max_index = r->raft_index;
    if (rw) {
        int rc = vol_make_cache(v);
        if (rc < 0) {
            vs->up->opens_done(v, rc == -ENOMEM ? -ENOMEM : -EIO);
            if (!v->rw && v->state == AGENT_VOL_ATTACHING) agent_vol_set_state(v, AGENT_VOL_FAILED);
            return;
        }
        v->rw = true;
        v->gen = r->generation;
    } else if (!v->rw) {
        v->gen = r->generation;
    }
    if (v->attach_is_reattach) {
        vs->reattaches++;
        metric_inc(vs->m_reattach);
        log_info(vs->tag, "vol %s: re-attached at generation %llu; resending unacked writes",
                 v->name, (unsigned long long)v->gen);
        agent_ship_zombify_all(v);
        v->drain = true;
    }
    v->attach_is_reattach = false;
    v->attach_moved = 0;
    v->attach_backoff_ms = 0;
    v->attach_retry_at = 0;
    agent_vol_set_state(v, AGENT_VOL_ACTIVE);
    if (v->replayed) v->drain = true;
    vs->up->opens_done(v, 0);
    agent_ship_kick(v);
    agent_io_check_durable(v);
}

static void schedule_attach_retry(struct agent_vol_shared *v)
{
    v->attach_backoff_ms = v->attach_backoff_ms ? BD_MIN(v->attach_backoff_ms * 2,
                                                         ATTACH_BACKOFF_MAX_MS)
                                                : ATTACH_BACKOFF_MIN_MS;
    v->attach_retry_at = util_mono_ms() + v->attach_backoff_ms;
}

/* A read-write attach refused because the generation moved past our base
 * (F the EFENCED answer): attach again on the generation it names, unless
 * that has happened too often in a row.  True if it went again. */
static bool attach_on_moved(struct agent_vol_shared *v, struct conn_frame *f)
{
    struct wire_error e;
    if (!v->want_rw || !f || wire_decode_error(f->body, f->hdr.len, f->hdr.payload_len, &e) < 0)
        return false;
    if (++v->attach_moved > ATTACH_MOVED_MAX) {
        log_warn(v->vs->tag, "vol %s: generation moved %u times under our attach: another writer",
                 v->name, ATTACH_MOVED_MAX);
        return false;
    }
    /* From base 0 this is every first attach of a volume used before. */
    if (v->attach_base)
        log_info(v->vs->tag, "vol %s: generation moved from %llu to %llu before our attach; "
                 "attaching on %llu", v->name, (unsigned long long)v->attach_base,
                 (unsigned long long)e.hint, (unsigned long long)e.hint);
    v->attach_base = e.hint;
    agent_attach_start(v);
    return true;
}

static void on_attach(struct agent_client_req *call, int err, struct conn_frame *f)
{
    struct agent_vol_shared *v = call->data;
    struct agent_vols *vs = v->vs;
    v->attach_busy = false;
    if (vs->freeing) return;
    if (err == -BD_EFENCED && attach_on_moved(v, f)) {
        vs->up->release(v);
        return;
    }
    v->attach_moved = 0;
    struct wire_vol_attach_resp r;
    if (!err && wire_decode_vol_attach_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) < 0)
        err = -EIO;
    if (!err) {
        if (call->attempts > 1)
            log_info(vs->tag, "vol %s: attach answered after %u sends (generation %llu)",
                     v->name, call->attempts, (unsigned long long)r.generation);
        attach_ok(v, &r);
        vs->up->release(v);
        return;
    }
    char why[160];
    const char *text = f ? conn_error_text(f, why, sizeof(why)) : bd_strerror(err);
    bool holds_data = v->j && agent_cache_extents(v->c) > 0;
    if (err == -EBUSY || err == -BD_EFENCED) {
        if (holds_data || v->attach_is_reattach) vs->up->fail(v, -BD_EFENCED, text);
        vs->up->opens_done(v, -EBUSY);
    } else if (err == -EACCES) {
        /* Not attached to us (any more), or only read-only: the operator
         * took it away, and with data still here that is a fence (a
         * forced detach ended our attach in the same step). */
        log_warn(vs->tag, "vol %s: attach refused: %s", v->name, text);
        if (holds_data || v->attach_is_reattach) vs->up->fail(v, -BD_EFENCED, text);
        vs->up->opens_done(v, -EACCES);
    } else if (err == -ENOENT) {
        if (holds_data) {
            v->orphan = true;
            vs->up->fail(v, -EIO, "the volume no longer exists");
        }
        vs->up->opens_done(v, -ENOENT);
    } else if (err == -EPERM || err == -EINVAL) {
        log_warn(vs->tag, "vol %s: attach refused: %s", v->name, text);
        vs->up->opens_done(v, err);
        if (v->want_rw && v->rw) v->want_rw = false; /* keep the read-write attach */
    } else {
        log_warn(vs->tag, "vol %s: attach failed: %s", v->name, text);
        vs->up->opens_done(v, err == -ETIMEDOUT ? -ETIMEDOUT : -EIO);
        if (holds_data || v->attach_is_reattach)
            schedule_attach_retry(v); /* keep trying in the background */
    }
    if (v->attach_is_reattach && (err == -EPERM || err == -EINVAL)) vs->up->fail(v, -EIO, text);
    if (!v->attach_is_reattach && v->state == AGENT_VOL_ACTIVE) v->want_rw = v->rw;
    if (v->state == AGENT_VOL_ATTACHING && !v->replayed && !v->attach_retry_at)
        agent_vol_set_state(v, AGENT_VOL_FAILED); /* nothing to keep: freed when idle */
    vs->up->release(v);
}

void agent_attach_start(struct agent_vol_shared *v)
{
    struct agent_vols *vs = v->vs;
    if (v->attach_busy || vs->freeing) return;
    struct wire_vol_attach_req m = {.name = wire_cstr(v->name), .agent_id = wire_cstr(vs->agent_id),
                                    .flags = v->want_rw ? 0 : WIRE_ATTACH_RO,
                                    .base_generation = v->want_rw ? v->attach_base : 0};
    struct agent_client_req *c = &v->attach_call;
    memset(c, 0, sizeof(*c));
    int n = wire_encode_vol_attach_req(c->fields, sizeof(c->fields), &m);
    if (!BD_ALWAYS(n > 0)) return;
    c->fields_len = (size_t)n;
    c->type = WIRE_VOL_ATTACH;
    c->idempotent = true; /* every copy has the same base: one applies at most */
    c->cb = on_attach;
    c->data = v;
    v->attach_busy = true;
    v->attach_retry_at = 0;
    agent_client_call(vs->cl, c);
}

void agent_attach_reattach(struct agent_vol_shared *v)
{
    if (v->state != AGENT_VOL_ACTIVE) return; /* already re-attaching, or failed */
    agent_vol_set_state(v, AGENT_VOL_REATTACH);
    v->attach_is_reattach = true;
    v->want_rw = true;
    if (!v->attach_busy) agent_attach_start(v);
}

/* ---- detach -------------------------------------------------------------- */

static void on_detach(struct agent_client_req *call, int err, struct conn_frame *f)
{
    struct agent_vol_shared *v = call->data;
    struct agent_vols *vs = v->vs;
    (void)f;
    v->attach_busy = false;
    if (vs->freeing) return;
    if (err && err != -ENOENT && err != -BD_EFENCED && err != -EBUSY) {
        log_info(vs->tag, "vol %s: detach failed (%s); will retry", v->name, bd_strerror(err));
        agent_vol_set_state(v, AGENT_VOL_ACTIVE);
        v->idle_since = util_mono_ms();
        return;
    }
    if (v->j) {
        int rc = journal_destroy(v->j);
        if (rc < 0)
            log_warn(vs->tag, "vol %s: removing journal %s: %s", v->name, v->dir, bd_strerror(rc));
    }
    agent_cache_free(v->c);
    agent_io_map_drop(v);
    v->j = NULL;
    v->c = NULL;
    v->rw = false;
    v->replayed = false;
    v->gen = 0;
    log_info(vs->tag, "vol %s: detached", v->name);
    if (v->open_head) {
        /* Opened again while detaching: attach again. */
        agent_vol_set_state(v, AGENT_VOL_ATTACHING);
        for (struct agent_vols_open_req *o = v->open_head; o; o = o->priv[1])
            if (!(uintptr_t)o->priv[0]) v->want_rw = true;
        agent_attach_start(v);
        return;
    }
    agent_vol_set_state(v, AGENT_VOL_FAILED); /* i.e. no longer usable: free it */
    vs->up->release(v);
}

void agent_attach_detach(struct agent_vol_shared *v)
{
    struct agent_vols *vs = v->vs;
    if (!v->rw) {
        /* Read-only attaches changed nothing in the index (no generation,
         * no holder): there is nothing to undo, and a VOL_DETACH of a
         * volume never written has no generation to name. */
        log_info(vs->tag, "vol %s: let go (read-only)", v->name);
        agent_vol_set_state(v, AGENT_VOL_FAILED); /* i.e. no longer usable: free it */
        vs->up->release(v);
        return;
    }
    struct wire_vol_detach_req m = {.vol_id = v->vol_id, .generation = v->gen,
                                    .agent_id = wire_cstr(vs->agent_id)};
    struct agent_client_req *c = &v->attach_call;
    memset(c, 0, sizeof(*c));
    int n = wire_encode_vol_detach_req(c->fields, sizeof(c->fields), &m);
    if (!BD_ALWAYS(n > 0)) return;
    c->fields_len = (size_t)n;
    c->type = WIRE_VOL_DETACH;
    c->idempotent = true;
    c->cb = on_detach;
    c->data = v;
    v->attach_busy = true;
    agent_vol_set_state(v, AGENT_VOL_DETACHING);
    agent_client_call(vs->cl, c);
}
