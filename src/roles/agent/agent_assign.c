/* agent_assign.c: the volumes attached to this agent (agent_vol.h
 * "Attachments"): the listing behind agent_vols_list (NBD_OPT_LIST), the
 * attachment table the registry asks (agent_assign_find), and the watch
 * (agent_vols_watch) that tells the NBD front end what changed.
 *
 * Place.  Beside agent_attach.c, below the registry (agent_vol.c, which
 * ticks it and frees it) and above the cluster client.  It owns
 * vs->assigned and the fetch in flight; of the back end it calls only the
 * shipper, to drain a volume that is no longer ours to write.
 *
 * Both questions are one fetch: VOL_LIST as this agent, page after page
 * of WIRE_VOLS_PAGE (the proxy answers only the volumes attached to us,
 * each with its read-only flag and client), gathered into one array in
 * name order.  An NBD_OPT_LIST runs its own fetch and answers from it.
 * While someone watches, one runs every AGENT_VOLS_WATCH_MS: when it completes, the
 * new array is compared with the table (both in name order, a merge) and
 * each difference is reported after the table is replaced, so a watcher
 * that asks agent_assign_find sees the new state.  A failed fetch keeps
 * the old table (a proxy outage must not close every volume's socket)
 * and is tried again at the next period.
 *
 * Why poll and not a notice pushed by the proxies: an agent talks to any
 * proxy, which may change at any time, and a proxy has no way to reach an
 * agent that is not connected to it; a second of delay is what an
 * operator sees when attaching a disk anyway.  A VOL_LIST costs the proxy
 * a walk of this agent's own volumes (the index's assigns table), not of
 * every volume. */
#include "base/bd.h"
#include "base/util.h"
#include "roles/agent/agent_assign.h"
#include "roles/agent/agent_ship.h"

#include <stdlib.h>
#include <string.h>

#define LIST_MAX_TOTAL 65536 /* volumes a fetch gathers at most */

struct agent_assign_fetch {
    struct agent_vols *vs;
    uint64_t asked_ms;               /* when the first page was sent */
    struct agent_vols_list_req *req; /* an NBD_OPT_LIST; NULL for the watch */
    struct agent_client_req call;
    struct agent_vols_list_entry *v; /* gathered so far, in name order */
    unsigned n, cap;
    char after[AGENT_VOL_NAME_MAX + 1];
};

static void fetch_send(struct agent_assign_fetch *f);

static int entry_cmp(const struct agent_vols_list_entry *a, const struct agent_vols_list_entry *b)
{
    return strcmp(a->name, b->name);
}

/* NAME is no longer ours to write (detached, or read-only now): ship what
 * its journal holds at once rather than at flush_age_ms, so a plain
 * detach ends with the data in the cluster and the volume let go (idle
 * detach), and a forced one is noticed (the ships are fenced). */
static void drain(struct agent_vols *vs, const char *name)
{
    for (struct agent_vol_shared *v = vs->vols; v; v = v->next) {
        if (v->orphan || !v->c || strcmp(v->name, name) != 0) continue;
        v->drain = true;
        agent_ship_kick(v);
    }
}

/* Replace the table with the fetched F->v (taken) and report what
 * changed. */
static void table_update(struct agent_vols *vs, struct agent_assign_fetch *f)
{
    struct agent_vols_list_entry *old = vs->assigned;
    unsigned n_old = vs->n_assigned;
    vs->assigned = f->v;
    vs->n_assigned = f->n;
    vs->assign_known = true;
    vs->assign_asked_ms = f->asked_ms;
    f->v = NULL;
    f->n = f->cap = 0;
    unsigned i = 0, j = 0;
    while (vs->watch && (i < n_old || j < vs->n_assigned)) {
        const struct agent_vols_list_entry *a = i < n_old ? &old[i] : NULL;
        const struct agent_vols_list_entry *b = j < vs->n_assigned ? &vs->assigned[j] : NULL;
        int c = !a ? 1 : !b ? -1 : entry_cmp(a, b);
        if (c < 0) {
            log_info(vs->tag, "vol %s: detached from this agent", a->name);
            drain(vs, a->name);
            vs->watch(vs->watch_arg, AGENT_VOLS_DETACHED, a);
            i++;
        } else if (c > 0) {
            log_info(vs->tag, "vol %s: attached to this agent%s%s%s", b->name,
                     b->read_only ? " read-only" : "", b->client[0] ? " for client " : "",
                     b->client);
            vs->watch(vs->watch_arg, AGENT_VOLS_ATTACHED, b);
            j++;
        } else {
            if (a->read_only != b->read_only || strcmp(a->client, b->client) != 0) {
                log_info(vs->tag, "vol %s: attachment changed to%s%s%s", b->name,
                         b->read_only ? " read-only" : " read-write",
                         b->client[0] ? " for client " : "", b->client);
                if (b->read_only) drain(vs, b->name);
                vs->watch(vs->watch_arg, AGENT_VOLS_CHANGED, b);
            }
            i++;
            j++;
        }
    }
    free(old);
}

static void fetch_done(struct agent_assign_fetch *f, int err)
{
    struct agent_vols *vs = f->vs;
    if (f->req) {
        f->req->cb(f->req, err, err ? NULL : f->v, err ? 0 : f->n);
    } else {
        vs->assign_busy = false;
        if (!err && !vs->freeing) table_update(vs, f);
        else if (err && err != -ESHUTDOWN)
            log_debug(vs->tag, "attachments: VOL_LIST failed: %s", bd_strerror(err));
    }
    free(f->v);
    free(f);
}

static void on_list(struct agent_client_req *call, int err, struct conn_frame *fr)
{
    struct agent_assign_fetch *f = call->data;
    struct wire_vol_list_resp r;
    if (f->vs->freeing) err = -ESHUTDOWN;
    if (!err && wire_decode_vol_list_resp(fr->body, fr->hdr.len, fr->hdr.payload_len, &r) < 0)
        err = -EIO;
    if (err) {
        fetch_done(f, err);
        return;
    }
    size_t pos = 0;
    struct wire_vol_entry e;
    uint32_t got = 0;
    while (wire_vol_list_next(&r, &pos, &e)) {
        got++;
        if (f->n == f->cap) {
            unsigned cap = f->cap ? f->cap * 2 : 64;
            struct agent_vols_list_entry *a = realloc(f->v, cap * sizeof(*a));
            if (!a) {
                fetch_done(f, -ENOMEM);
                return;
            }
            f->v = a;
            f->cap = cap;
        }
        struct agent_vols_list_entry *x = &f->v[f->n];
        memset(x, 0, sizeof(*x));
        /* The proxy lists in name order, strictly after the last page. */
        if (!wire_str_copy(e.name, x->name, sizeof(x->name)) ||
            !wire_str_copy(e.client, x->client, sizeof(x->client)) ||
            (f->n && strcmp(x->name, f->v[f->n - 1].name) <= 0)) {
            fetch_done(f, -EIO);
            return;
        }
        x->size = e.size;
        x->read_only = (e.flags & WIRE_ATTACH_RO) != 0;
        util_strlcpy(f->after, x->name, sizeof(f->after));
        f->n++;
    }
    if (got == WIRE_VOLS_PAGE && f->n < LIST_MAX_TOTAL) {
        fetch_send(f);
        return;
    }
    fetch_done(f, 0);
}

static void fetch_send(struct agent_assign_fetch *f)
{
    struct wire_vol_list_req m = {.max = WIRE_VOLS_PAGE, .after = wire_cstr(f->after),
                                  .agent_id = wire_cstr(f->vs->agent_id)};
    struct agent_client_req *c = &f->call;
    memset(c, 0, sizeof(*c));
    int n = wire_encode_vol_list_req(c->fields, sizeof(c->fields), &m);
    c->fields_len = n > 0 ? (size_t)n : 0;
    c->type = WIRE_VOL_LIST;
    c->idempotent = true;
    c->cb = on_list;
    c->data = f;
    agent_client_call(f->vs->cl, c);
}

/* Start a fetch for REQ (NULL: the watch).  -ENOMEM, with nothing sent. */
static int fetch_start(struct agent_vols *vs, struct agent_vols_list_req *req)
{
    struct agent_assign_fetch *f = calloc(1, sizeof(*f));
    if (!f) return -ENOMEM;
    f->vs = vs;
    f->req = req;
    f->asked_ms = util_mono_ms();
    fetch_send(f);
    return 0;
}

int agent_assign_list(struct agent_vols *vs, struct agent_vols_list_req *req)
{
    return fetch_start(vs, req);
}

void agent_vols_watch(struct agent_vols *vs,
                      void (*fn)(void *arg, enum agent_vols_change what,
                                 const struct agent_vols_list_entry *e),
                      void *arg)
{
    vs->watch = fn;
    vs->watch_arg = arg;
    vs->assign_next_ms = 0; /* ask at the next tick */
    /* A new watcher starts from nothing: everything known is news. */
    for (unsigned i = 0; fn && i < vs->n_assigned; i++)
        fn(arg, AGENT_VOLS_ATTACHED, &vs->assigned[i]);
}

void agent_assign_tick(struct agent_vols *vs, uint64_t now)
{
    if (!vs->watch || vs->assign_busy || vs->freeing || now < vs->assign_next_ms) return;
    vs->assign_next_ms = now + AGENT_VOLS_WATCH_MS;
    if (fetch_start(vs, NULL) == 0) vs->assign_busy = true;
}

const struct agent_vols_list_entry *agent_assign_find(const struct agent_vols *vs,
                                                      const char *name)
{
    unsigned lo = 0, hi = vs->n_assigned;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        int c = strcmp(vs->assigned[mid].name, name);
        if (c == 0) return &vs->assigned[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

void agent_assign_free(struct agent_vols *vs)
{
    free(vs->assigned);
    vs->assigned = NULL;
    vs->n_assigned = 0;
}
