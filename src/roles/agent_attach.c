/* agent_attach.c: attaching and detaching volumes, and the registry's
 * open, list and info requests (agent_vol.h; the life of a volume is
 * described in agent_vol.c and agent_vol_int.h).
 *
 * Attach.  VOL_ATTACH goes to the cluster by name; read-write bumps the
 * generation, fencing every earlier writer (C10), and this agent then
 * refuses to go on unless the generation really grew.  The journal and
 * dirty map are created on the first read-write attach.  An attach that
 * finds the volume gone or attached elsewhere while we hold unshipped data
 * fails the volume loudly; a cluster that does not answer is retried in
 * the background for volumes that hold data (replayed journals,
 * re-attaches), so I/O resumes when the proxies return.
 *
 * Re-attach (vol_reattach) is the answer to a write of unknown outcome:
 * the higher generation fences every send made before it, after which
 * agent_ship.c resends everything unacked.
 *
 * Detach.  VOL_DETACH for an idle clean volume, then the journal is
 * deleted; opens that arrive meanwhile attach again afterwards. */
#include "../bd.h"
#include "../log.h"
#include "../net/metrics.h"
#include "../util.h"
#include "agent_vol_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATTACH_BACKOFF_MIN_MS 200
#define ATTACH_BACKOFF_MAX_MS 5000
#define LIST_MAX_TOTAL 65536

/* ---- attach -------------------------------------------------------------- */

static struct agent_vol *handle_new(struct vol *v, bool ro)
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
static void serve_opens(struct vol *v)
{
    struct agent_open_req *list = v->open_head;
    v->open_head = v->open_tail = NULL;
    while (list) {
        struct agent_open_req *o = list;
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
        vols_open_finish(v->vs, o, h ? 0 : -ENOMEM, h);
    }
    if (v->open_head && !v->attach_busy) vol_attach_start(v);
}

void vol_fail_opens(struct vol *v, int err)
{
    while (v->open_head) {
        struct agent_open_req *o = v->open_head;
        v->open_head = o->priv[1];
        vols_open_finish(v->vs, o, err, NULL);
    }
    v->open_tail = NULL;
}

static int journal_opts_for(struct vol *v, struct journal_opts *o)
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
static int vol_make_cache(struct vol *v)
{
    if (v->j) return 0;
    struct journal_opts o;
    journal_opts_for(v, &o);
    if (vols_is_broken(v->vs, v->vol_id)) return -EIO;
    int rc = journal_create(&o, &v->j);
    if (rc < 0) {
        log_error(v->vs->tag, "vol %s: cannot create journal %s: %s", v->name, v->dir,
                  bd_strerror(rc));
        return rc == -EEXIST ? -EIO : rc;
    }
    v->c = cache_new(v->j);
    if (!v->c) {
        journal_destroy(v->j);
        v->j = NULL;
        return -ENOMEM;
    }
    return 0;
}

static void attach_ok(struct vol *v, const struct wire_vol_attach_resp *r)
{
    struct agent_vols *vs = v->vs;
    bool rw = v->want_rw;
    if (v->vol_id && r->vol_id != v->vol_id) {
        /* The name now means another volume: this journal's volume is gone. */
        log_error(vs->tag, "vol %s: now has id %llu, but our journal is for id %llu",
                  v->name, (unsigned long long)r->vol_id, (unsigned long long)v->vol_id);
        struct agent_open_req *waiting = v->open_head;
        v->open_head = v->open_tail = NULL;
        v->orphan = true;
        vol_fail(v, -EIO, "the volume this journal belongs to no longer exists");
        while (waiting) { /* they asked for the name: start afresh */
            struct agent_open_req *o = waiting;
            waiting = o->priv[1];
            agent_vols_open(vs, v->name, (uintptr_t)o->priv[0] != 0, o);
        }
        return;
    }
    if (vols_is_broken(vs, r->vol_id)) {
        /* Its journal may hold acknowledged writes newer than the cluster's
         * data: no attach of any kind until an operator has looked. */
        log_error(vs->tag, "vol %s: its journal (id %llu) is unreadable: refusing to attach",
                  v->name, (unsigned long long)r->vol_id);
        vol_fail_opens(v, -EIO);
        if (v->state == VOL_ATTACHING) vol_set_state(v, VOL_FAILED);
        return;
    }
    if (r->block_size > BD_BLOCK_SIZE || r->size % BD_BLOCK_SIZE) {
        vol_fail(v, -EIO, "unsupported block size or volume size");
        return;
    }
    if (rw && (r->flags & WIRE_ATTACH_RO)) {
        v->want_rw = false;
        vol_fail_opens(v, -EPERM); /* read-only volume: RW opens are refused */
        if (v->state == VOL_ATTACHING && !v->replayed) vol_set_state(v, VOL_FAILED);
        return;
    }
    if (rw && v->gen && r->generation <= v->gen) {
        vol_fail(v, -BD_EFENCED, "attach did not raise the generation: old writes not fenced");
        return;
    }
    v->vol_id = r->vol_id;
    v->size = r->size;
    if (r->raft_index > v->max_index) v->max_index = r->raft_index;
    if (rw) {
        int rc = vol_make_cache(v);
        if (rc < 0) {
            vol_fail_opens(v, rc == -ENOMEM ? -ENOMEM : -EIO);
            if (!v->rw && v->state == VOL_ATTACHING) vol_set_state(v, VOL_FAILED);
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
        ship_zombify_all(v);
        v->drain = true;
    }
    v->attach_is_reattach = false;
    v->attach_backoff_ms = 0;
    v->attach_retry_at = 0;
    vol_set_state(v, VOL_ACTIVE);
    if (v->replayed) v->drain = true;
    serve_opens(v);
    ship_kick(v);
    io_check_durable(v);
}

static void schedule_attach_retry(struct vol *v)
{
    v->attach_backoff_ms = v->attach_backoff_ms ? BD_MIN(v->attach_backoff_ms * 2,
                                                         ATTACH_BACKOFF_MAX_MS)
                                                : ATTACH_BACKOFF_MIN_MS;
    v->attach_retry_at = util_mono_ms() + v->attach_backoff_ms;
}

static void on_attach(struct agent_call *call, int err, struct conn_frame *f)
{
    struct vol *v = call->data;
    struct agent_vols *vs = v->vs;
    v->attach_busy = false;
    if (vs->freeing) return;
    struct wire_vol_attach_resp r;
    if (!err && wire_decode_vol_attach_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) < 0)
        err = -EIO;
    if (!err) {
        attach_ok(v, &r);
        vol_maybe_free(v);
        return;
    }
    char why[160];
    const char *text = f ? conn_error_text(f, why, sizeof(why)) : bd_strerror(err);
    bool holds_data = v->j && cache_extents(v->c) > 0;
    if (err == -EBUSY || err == -BD_EFENCED) {
        if (holds_data || v->attach_is_reattach) vol_fail(v, -BD_EFENCED, text);
        vol_fail_opens(v, -EBUSY);
    } else if (err == -ENOENT) {
        if (holds_data) {
            v->orphan = true;
            vol_fail(v, -EIO, "the volume no longer exists");
        }
        vol_fail_opens(v, -ENOENT);
    } else if (err == -EPERM || err == -EINVAL) {
        log_warn(vs->tag, "vol %s: attach refused: %s", v->name, text);
        vol_fail_opens(v, err);
        if (v->want_rw && v->rw) v->want_rw = false; /* keep the read-write attach */
    } else {
        log_warn(vs->tag, "vol %s: attach failed: %s", v->name, text);
        vol_fail_opens(v, err == -ETIMEDOUT ? -ETIMEDOUT : -EIO);
        if (holds_data || v->attach_is_reattach)
            schedule_attach_retry(v); /* keep trying in the background */
    }
    if (v->attach_is_reattach && (err == -EPERM || err == -EINVAL))
        vol_fail(v, -EIO, text);
    if (!v->attach_is_reattach && v->state == VOL_ACTIVE) v->want_rw = v->rw;
    if (v->state == VOL_ATTACHING && !v->replayed && !v->attach_retry_at)
        vol_set_state(v, VOL_FAILED); /* nothing to keep: freed when idle */
    vol_maybe_free(v);
}

void vol_attach_start(struct vol *v)
{
    struct agent_vols *vs = v->vs;
    if (v->attach_busy || vs->freeing) return;
    struct wire_vol_attach_req m = {.name = wire_cstr(v->name), .agent_id = wire_cstr(vs->agent_id),
                                    .flags = v->want_rw ? 0 : WIRE_ATTACH_RO};
    struct agent_call *c = &v->attach_call;
    memset(c, 0, sizeof(*c));
    int n = wire_encode_vol_attach_req(c->fields, sizeof(c->fields), &m);
    if (!BD_ALWAYS(n > 0)) return;
    c->fields_len = (size_t)n;
    c->type = WIRE_VOL_ATTACH;
    c->idempotent = true; /* a repeated attach only raises the generation again */
    c->cb = on_attach;
    c->data = v;
    v->attach_busy = true;
    v->attach_retry_at = 0;
    agent_client_call(vs->cl, c);
}

void vol_reattach(struct vol *v)
{
    if (v->state != VOL_ACTIVE) return; /* already re-attaching, or failed */
    vol_set_state(v, VOL_REATTACH);
    v->attach_is_reattach = true;
    v->want_rw = true;
    if (!v->attach_busy) vol_attach_start(v);
}

/* ---- detach -------------------------------------------------------------- */

bool vol_clean(const struct vol *v)
{
    return !v->busy && !v->fence_busy && !v->sync_busy && !v->attach_busy && !v->wait_head &&
           !v->dur_head && !v->open_head && (!v->c || cache_extents(v->c) == 0);
}

static void on_detach(struct agent_call *call, int err, struct conn_frame *f)
{
    struct vol *v = call->data;
    struct agent_vols *vs = v->vs;
    (void)f;
    v->attach_busy = false;
    if (vs->freeing) return;
    if (err && err != -ENOENT && err != -BD_EFENCED && err != -EBUSY) {
        log_info(vs->tag, "vol %s: detach failed (%s); will retry", v->name, bd_strerror(err));
        vol_set_state(v, VOL_ACTIVE);
        v->idle_since = util_mono_ms();
        return;
    }
    if (v->j) {
        int rc = journal_destroy(v->j);
        if (rc < 0)
            log_warn(vs->tag, "vol %s: removing journal %s: %s", v->name, v->dir, bd_strerror(rc));
    }
    cache_free(v->c);
    v->j = NULL;
    v->c = NULL;
    v->rw = false;
    v->replayed = false;
    v->gen = 0;
    log_info(vs->tag, "vol %s: detached", v->name);
    if (v->open_head) {
        /* Opened again while detaching: attach again. */
        vol_set_state(v, VOL_ATTACHING);
        for (struct agent_open_req *o = v->open_head; o; o = o->priv[1])
            if (!(uintptr_t)o->priv[0]) v->want_rw = true;
        vol_attach_start(v);
        return;
    }
    vol_set_state(v, VOL_FAILED); /* i.e. no longer usable: free it */
    vol_maybe_free(v);
}

void vol_detach(struct vol *v)
{
    struct agent_vols *vs = v->vs;
    struct wire_vol_detach_req m = {.vol_id = v->vol_id, .generation = v->gen,
                                    .agent_id = wire_cstr(vs->agent_id)};
    struct agent_call *c = &v->attach_call;
    memset(c, 0, sizeof(*c));
    int n = wire_encode_vol_detach_req(c->fields, sizeof(c->fields), &m);
    if (!BD_ALWAYS(n > 0)) return;
    c->fields_len = (size_t)n;
    c->type = WIRE_VOL_DETACH;
    c->idempotent = true;
    c->cb = on_detach;
    c->data = v;
    v->attach_busy = true;
    vol_set_state(v, VOL_DETACHING);
    agent_client_call(vs->cl, c);
}

/* ---- open, list, info ---------------------------------------------------- */

static bool name_ok(const char *name)
{
    size_t n = strnlen(name, AGENT_VOL_NAME_MAX + 1);
    return n > 0 && n <= AGENT_VOL_NAME_MAX;
}

void agent_vols_open(struct agent_vols *vs, const char *name, bool read_only,
                     struct agent_open_req *req)
{
    req->priv[0] = (void *)(uintptr_t)read_only;
    req->priv[1] = NULL;
    if (vs->stopping || vs->freeing) {
        vols_open_finish(vs, req, -ESHUTDOWN, NULL);
        return;
    }
    if (!name_ok(name)) {
        vols_open_finish(vs, req, -EINVAL, NULL);
        return;
    }
    struct vol *v = vol_find(vs, name);
    if (v && (v->state == VOL_FENCED || v->state == VOL_FAILED)) {
        if (!v->j && !vol_busy(v)) {
            vol_free(v); /* a failed attempt: try again */
            v = NULL;
        } else {
            vols_open_finish(vs, req, -EIO, NULL);
            return;
        }
    }
    if (!v) {
        v = vol_new(vs, name);
        if (!v) {
            vols_open_finish(vs, req, -ENOMEM, NULL);
            return;
        }
    }
    bool ready = (v->state == VOL_ACTIVE || v->state == VOL_REATTACH) && (read_only || v->rw);
    if (ready) {
        struct agent_vol *h = handle_new(v, read_only);
        vols_open_finish(vs, req, h ? 0 : -ENOMEM, h);
        return;
    }
    if (v->open_tail) v->open_tail->priv[1] = req;
    else v->open_head = req;
    v->open_tail = req;
    if (!read_only) v->want_rw = true;
    if (v->state != VOL_DETACHING && !v->attach_busy) vol_attach_start(v);
}

const struct agent_vol_info *agent_vol_info(const struct agent_vol *h)
{
    return &h->info;
}

void agent_vol_put(struct agent_vol *h)
{
    struct vol *v = h->v;
    free(h);
    if (BD_NEVER(v->refs == 0)) return;
    if (--v->refs == 0) v->idle_since = util_mono_ms();
}

struct list_ctx {
    struct agent_vols *vs;
    struct agent_list_req *req;
    struct agent_call call;
    struct agent_list_entry *v;
    unsigned n, cap;
    char after[AGENT_VOL_NAME_MAX + 1];
};

static void list_send(struct list_ctx *lc);

static void on_list(struct agent_call *call, int err, struct conn_frame *f)
{
    struct list_ctx *lc = call->data;
    struct wire_vol_list_resp r;
    if (!err && !lc->vs->freeing &&
        wire_decode_vol_list_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) < 0)
        err = -EIO;
    if (lc->vs->freeing) err = -ESHUTDOWN;
    if (!err) {
        size_t pos = 0;
        struct wire_vol_entry e;
        while (wire_vol_list_next(&r, &pos, &e)) {
            if (lc->n == lc->cap) {
                unsigned cap = lc->cap ? lc->cap * 2 : 64;
                struct agent_list_entry *a = realloc(lc->v, cap * sizeof(*a));
                if (!a) {
                    err = -ENOMEM;
                    break;
                }
                lc->v = a;
                lc->cap = cap;
            }
            if (!wire_str_copy(e.name, lc->v[lc->n].name, sizeof(lc->v[lc->n].name))) continue;
            lc->v[lc->n].size = e.size;
            util_strlcpy(lc->after, lc->v[lc->n].name, sizeof(lc->after));
            lc->n++;
        }
        if (!err && r.n == WIRE_VOLS_MAX && lc->n < LIST_MAX_TOTAL) {
            list_send(lc);
            return;
        }
    }
    lc->req->cb(lc->req, err, err ? NULL : lc->v, err ? 0 : lc->n);
    free(lc->v);
    free(lc);
}

static void list_send(struct list_ctx *lc)
{
    struct wire_vol_list_req m = {.max = WIRE_VOLS_MAX, .after = wire_cstr(lc->after)};
    struct agent_call *c = &lc->call;
    memset(c, 0, sizeof(*c));
    int n = wire_encode_vol_list_req(c->fields, sizeof(c->fields), &m);
    c->fields_len = n > 0 ? (size_t)n : 0;
    c->type = WIRE_VOL_LIST;
    c->idempotent = true;
    c->cb = on_list;
    c->data = lc;
    agent_client_call(lc->vs->cl, c);
}

void agent_vols_list(struct agent_vols *vs, struct agent_list_req *req)
{
    struct list_ctx *lc = calloc(1, sizeof(*lc));
    if (!lc || vs->stopping || vs->freeing) {
        free(lc);
        struct deferred *d = calloc(1, sizeof(*d));
        if (!d) {
            req->cb(req, -ENOMEM, NULL, 0);
            return;
        }
        d->list = req;
        d->err = vs->stopping || vs->freeing ? -ESHUTDOWN : -ENOMEM;
        vols_defer(vs, d);
        return;
    }
    lc->vs = vs;
    lc->req = req;
    list_send(lc);
}

struct info_ctx {
    struct agent_vols *vs;
    struct agent_info_req *req;
    struct agent_call call;
    char name[AGENT_VOL_NAME_MAX + 1];
};

static void on_info(struct agent_call *call, int err, struct conn_frame *f)
{
    struct info_ctx *ic = call->data;
    struct agent_vols *vs = ic->vs;
    struct wire_vol_attach_resp r;
    struct agent_vol_info info = {0};
    if (vs->freeing) err = -ESHUTDOWN;
    if (!err && wire_decode_vol_attach_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) < 0)
        err = -EIO;
    if (!err && (r.block_size > BD_BLOCK_SIZE || r.size % BD_BLOCK_SIZE)) err = -EIO;
    if (!err) {
        util_strlcpy(info.name, ic->name, sizeof(info.name));
        info.size = r.size;
        info.block_size = BD_BLOCK_SIZE;
        info.max_io = (uint32_t)vs->max_io;
        info.read_only = (r.flags & WIRE_ATTACH_RO) != 0;
    } else if (err != -ENOENT && err != -ESHUTDOWN && err != -ETIMEDOUT) {
        err = -EIO;
    }
    ic->req->cb(ic->req, err, err ? NULL : &info);
    free(ic);
}

void agent_vols_info(struct agent_vols *vs, const char *name, struct agent_info_req *req)
{
    int err = vs->stopping || vs->freeing ? -ESHUTDOWN : name_ok(name) ? 0 : -EINVAL;
    struct vol *v = err ? NULL : vol_find(vs, name);
    if (err || (v && v->state == VOL_ACTIVE)) {
        struct deferred *d = calloc(1, sizeof(*d));
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
            d->vinfo.read_only = !v->rw;
        }
        vols_defer(vs, d);
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

