/* agent_vol_mem.c: see agent_vol_mem.h.
 *
 * Storage: per volume a two-level table of 4 KiB blocks, 256 blocks (1
 * MiB) per second-level table, allocated on first write.  A block pointer
 * is NULL (HOLE: never written), ZERO_MARK (ZERO: trimmed or zeroed), or
 * a malloc'd 4 KiB block (DATA).
 *
 * Completions: every request joins one FIFO; an event (or, with a delay,
 * a timer) runs it on a later loop iteration, so no callback ever runs
 * inside the submitting call.  Effects happen at completion, as in a real
 * back end that lands writes later.  The queue links through req->next
 * and keeps per-request state in req->priv*, so the hot path allocates
 * nothing but first-written blocks. */
#include "agent_vol_mem.h"
#include "base/bd.h"
#include "base/util.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AVM_BLOCK 4096u
#define AVM_L2 256u

static uint8_t zero_mark_byte;
#define ZERO_MARK (&zero_mark_byte)

struct fault {
    char name[AGENT_VOL_NAME_MAX + 1]; /* "" = any volume */
    unsigned ops;
    uint64_t off, len;
    int err;
    unsigned count; /* 0 = forever */
    struct fault *next;
};

struct agent_vol {
    struct agent_vols *vs;
    struct agent_vol_info info;
    bool detached;      /* agent_vol_mem_detach: no longer found */
    uint8_t ***l1;      /* nblocks / AVM_L2 rounded up */
    uint64_t n_l1;
    int refs;
    unsigned inflight;
    struct agent_vol *next;
};

struct lookup {             /* a deferred list/info/open */
    struct agent_vols *vs;
    int kind;               /* 0 list, 1 info, 2 open */
    char name[AGENT_VOL_NAME_MAX + 1];
    bool ro;
    void *req;
};

struct agent_vols {
    struct reactor *rx;
    struct agent_vol *vols;
    struct agent_vol_req *q_head, *q_tail; /* pending requests, FIFO */
    unsigned q_len;
    struct event *kick;                /* runs the queue */
    struct event *timer;               /* with a delay */
    uint64_t delay_ms;
    uint32_t max_io;
    int lookup_err;
    bool fast_zero_enotsup, long_extents, stopping;
    struct fault *faults;
    struct agent_vol_mem_stats st;
    struct agent_qos_vol *qos;         /* what agent_vol_qos answers for every volume */
    void (*stop_done)(void *arg);
    void *stop_arg;
    void (*watch)(void *arg, enum agent_vols_change what, const struct agent_vols_list_entry *e);
    void *watch_arg;
};

enum { P_VOL = 0 };               /* priv[] */
enum { PU_DUE = 0, PU_OP = 1 };   /* priv_u64[] */

/* ---- storage ---------------------------------------------------------------------- */

static uint8_t **slot_of(struct agent_vol *v, uint64_t blk, bool create)
{
    uint64_t i = blk / AVM_L2;
    if (!v->l1[i]) {
        if (!create) return NULL;
        v->l1[i] = calloc(AVM_L2, sizeof(uint8_t *));
        if (!v->l1[i]) return NULL;
    }
    return &v->l1[i][blk % AVM_L2];
}

static int kind_of(struct agent_vol *v, uint64_t blk)
{
    uint8_t **s = slot_of(v, blk, false);
    if (!s || !*s) return AGENT_VOL_EXT_HOLE;
    return *s == ZERO_MARK ? AGENT_VOL_EXT_ZERO : AGENT_VOL_EXT_DATA;
}

static void set_zero(struct agent_vol *v, uint64_t blk)
{
    uint8_t **s = slot_of(v, blk, true);
    if (!s) return;
    if (*s && *s != ZERO_MARK) free(*s);
    *s = ZERO_MARK;
}

static int put_block(struct agent_vol *v, uint64_t blk, const uint8_t *data)
{
    uint8_t **s = slot_of(v, blk, true);
    if (!s) return -ENOMEM;
    if (!*s || *s == ZERO_MARK) {
        uint8_t *b = malloc(AVM_BLOCK);
        if (!b) return -ENOMEM;
        *s = b;
    }
    memcpy(*s, data, AVM_BLOCK);
    return 0;
}

/* The map of [off, off+len) in at most MAX extents. */
static uint32_t map(struct agent_vol *v, uint64_t off, uint64_t len, struct agent_vol_extent *ext,
                    uint32_t max, bool long_ext)
{
    uint32_t n = 0;
    for (uint64_t b = off / AVM_BLOCK; b < (off + len) / AVM_BLOCK; b++) {
        int k = kind_of(v, b);
        if (n && ext[n - 1].kind == k) {
            ext[n - 1].len += AVM_BLOCK;
            continue;
        }
        if (n == max) break;
        ext[n++] = (struct agent_vol_extent){.off = b * AVM_BLOCK, .len = AVM_BLOCK, .kind = k};
    }
    if (long_ext && n) ext[n - 1].len = v->info.size - ext[n - 1].off;
    return n;
}

/* ---- requests ---------------------------------------------------------------------- */

static void kick(struct agent_vols *vs);

static int op_index(unsigned op)
{
    int i = 0;
    while (op > 1) {
        op >>= 1;
        i++;
    }
    return i;
}

static int check_fault(struct agent_vols *vs, struct agent_vol *v, unsigned op,
                       const struct agent_vol_req *r)
{
    for (struct fault **pp = &vs->faults; *pp; pp = &(*pp)->next) {
        struct fault *f = *pp;
        if (!(f->ops & op)) continue;
        if (f->name[0] && strcmp(f->name, v->info.name) != 0) continue;
        bool overlap = op == AVM_FLUSH || (r->off < f->off + f->len && f->off < r->off + r->len);
        if (!overlap) continue;
        int err = f->err;
        if (f->count && --f->count == 0) {
            *pp = f->next;
            free(f);
        }
        return err;
    }
    return 0;
}

static int execute(struct agent_vols *vs, struct agent_vol *v, unsigned op, struct agent_vol_req *r)
{
    if (vs->stopping) return -ESHUTDOWN;
    int err = check_fault(vs, v, op, r);
    if (err) return err;
    uint64_t b0 = r->off / AVM_BLOCK, nb = r->len / AVM_BLOCK;
    switch (op) {
    case AVM_READ:
        for (uint64_t i = 0; i < nb; i++) {
            uint8_t **s = slot_of(v, b0 + i, false);
            if (!s || !*s || *s == ZERO_MARK) memset(r->rbuf + i * AVM_BLOCK, 0, AVM_BLOCK);
            else memcpy(r->rbuf + i * AVM_BLOCK, *s, AVM_BLOCK);
        }
        if (r->ext) r->n_ext = map(v, r->off, r->len, r->ext, r->max_ext, vs->long_extents);
        return 0;
    case AVM_WRITE:
        if (v->info.read_only) return -EPERM;
        if ((r->off | r->len) % AVM_BLOCK) {
            /* Unaligned (agent_vol.h): each block of the cover wholly old
             * or new, applied at once, which is what the real one's
             * serialised read-modify-write amounts to. */
            uint8_t blk[AVM_BLOCK];
            uint64_t end = r->off + r->len;
            for (uint64_t b = b0; b * AVM_BLOCK < end; b++) {
                uint8_t **s = slot_of(v, b, false);
                if (!s || !*s || *s == ZERO_MARK) memset(blk, 0, AVM_BLOCK);
                else memcpy(blk, *s, AVM_BLOCK);
                uint64_t lo = BD_MAX(r->off, b * AVM_BLOCK), hi = BD_MIN(end, (b + 1) * AVM_BLOCK);
                memcpy(blk + (lo - b * AVM_BLOCK), r->wbuf + (lo - r->off), hi - lo);
                if (put_block(v, b, blk) < 0) return -ENOSPC;
            }
            vs->st.unaligned++;
            return 0;
        }
        for (uint64_t i = 0; i < nb; i++)
            if (put_block(v, b0 + i, r->wbuf + i * AVM_BLOCK) < 0) return -ENOSPC;
        return 0;
    case AVM_FLUSH:
        return 0;
    case AVM_TRIM:
    case AVM_ZERO:
        if (v->info.read_only) return -EPERM;
        if (op == AVM_ZERO && (r->flags & AGENT_VOL_REQ_FAST_ZERO) && vs->fast_zero_enotsup)
            return -ENOTSUP;
        for (uint64_t i = 0; i < nb; i++) set_zero(v, b0 + i);
        return 0;
    case AVM_BLOCK_STATUS:
        r->n_ext = map(v, r->off, r->len, r->ext, r->max_ext, vs->long_extents);
        return 0;
    default:
        return -EINVAL;
    }
}

static void run_queue(struct agent_vols *vs)
{
    unsigned n = vs->q_len; /* requests submitted by callbacks wait for the next round */
    uint64_t now = util_mono_ms();
    while (n-- > 0 && vs->q_head) {
        struct agent_vol_req *r = vs->q_head;
        if (vs->delay_ms && r->priv_u64[PU_DUE] > now) {
            uint64_t ms = r->priv_u64[PU_DUE] - now;
            struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
            evtimer_add(vs->timer, &tv);
            return;
        }
        vs->q_head = r->next;
        if (!vs->q_head) vs->q_tail = NULL;
        vs->q_len--;
        r->next = NULL;
        struct agent_vol *v = r->priv[P_VOL];
        int err = execute(vs, v, (unsigned)r->priv_u64[PU_OP], r);
        v->inflight--;
        vs->st.inflight--;
        r->cb(r, err);
    }
    if (vs->q_head) kick(vs);
    else if (vs->stopping && vs->stop_done) {
        void (*done)(void *) = vs->stop_done;
        vs->stop_done = NULL;
        done(vs->stop_arg);
    }
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run_queue(arg);
}

static void kick(struct agent_vols *vs)
{
    if (vs->delay_ms) {
        if (!evtimer_pending(vs->timer, NULL)) {
            struct timeval tv = {0, 0};
            evtimer_add(vs->timer, &tv);
        }
    } else {
        event_active(vs->kick, 0, 0);
    }
}

/* Check the caller against agent_vol.h and queue. */
static void submit(struct agent_vol *v, struct agent_vol_req *r, unsigned op)
{
    struct agent_vols *vs = v->vs;
    bool ok = true;
    if (op != AVM_FLUSH) {
        /* WRITE: any alignment; READ: up to the block cover of max_io */
        uint64_t max = v->info.max_io + (op == AVM_READ ? 2 * AVM_BLOCK : 0);
        bool aligned = op == AVM_WRITE || (r->off % AVM_BLOCK == 0 && r->len % AVM_BLOCK == 0);
        ok = r->len > 0 && r->len <= max && aligned && r->off <= v->info.size &&
             r->len <= v->info.size - r->off;
        if ((op == AVM_READ && !r->rbuf) || (op == AVM_WRITE && !r->wbuf) ||
            (op == AVM_BLOCK_STATUS && (!r->ext || !r->max_ext)))
            ok = false;
    }
    if (v->refs <= 0) ok = false;
    if (!ok) vs->st.violations++;
    vs->st.ops[op_index(op)]++;
    if (r->flags & AGENT_VOL_REQ_FUA) vs->st.fua++;
    if (r->flags & AGENT_VOL_REQ_NO_HOLE) vs->st.no_hole++;
    if (r->flags & AGENT_VOL_REQ_FAST_ZERO) vs->st.fast_zero++;
    r->n_ext = 0;
    r->priv[P_VOL] = v;
    r->priv_u64[PU_OP] = ok ? op : 0; /* op 0 executes as -EINVAL */
    r->priv_u64[PU_DUE] = util_mono_ms() + vs->delay_ms;
    r->next = NULL;
    if (vs->q_tail) vs->q_tail->next = r;
    else vs->q_head = r;
    vs->q_tail = r;
    vs->q_len++;
    v->inflight++;
    vs->st.inflight++;
    kick(vs);
}

void agent_vol_read(struct agent_vol *v, struct agent_vol_req *r)
{
    submit(v, r, AVM_READ);
}
void agent_vol_write(struct agent_vol *v, struct agent_vol_req *r)
{
    submit(v, r, AVM_WRITE);
}
void agent_vol_flush(struct agent_vol *v, struct agent_vol_req *r)
{
    submit(v, r, AVM_FLUSH);
}
void agent_vol_trim(struct agent_vol *v, struct agent_vol_req *r)
{
    submit(v, r, AVM_TRIM);
}
void agent_vol_zero(struct agent_vol *v, struct agent_vol_req *r)
{
    submit(v, r, AVM_ZERO);
}
void agent_vol_block_status(struct agent_vol *v, struct agent_vol_req *r)
{
    submit(v, r, AVM_BLOCK_STATUS);
}

const struct agent_vol_info *agent_vol_info(const struct agent_vol *v)
{
    return &v->info;
}

struct agent_qos_vol *agent_vol_qos(const struct agent_vol *v)
{
    return v->vs->qos;
}

void agent_vol_mem_set_qos(struct agent_vols *vs, struct agent_qos_vol *qv) { vs->qos = qv; }

void agent_vol_put(struct agent_vol *v)
{
    v->vs->st.puts++;
    if (v->refs <= 0 || v->inflight > 0) v->vs->st.violations++;
    if (v->refs > 0) v->refs--;
}

/* ---- the registry ------------------------------------------------------------------- */

static struct agent_vol *find(struct agent_vols *vs, const char *name)
{
    for (struct agent_vol *v = vs->vols; v; v = v->next)
        if (!v->detached && strcmp(v->info.name, name) == 0) return v;
    return NULL;
}

static void tell(struct agent_vols *vs, enum agent_vols_change what, const struct agent_vol *v)
{
    if (!vs->watch) return;
    struct agent_vols_list_entry e = {.size = v->info.size, .read_only = v->info.read_only};
    util_strlcpy(e.name, v->info.name, sizeof(e.name));
    util_strlcpy(e.client, v->info.client, sizeof(e.client));
    vs->watch(vs->watch_arg, what, &e);
}

void agent_vols_watch(struct agent_vols *vs,
                      void (*fn)(void *arg, enum agent_vols_change what,
                                 const struct agent_vols_list_entry *e),
                      void *arg)
{
    vs->watch = fn;
    vs->watch_arg = arg;
    for (struct agent_vol *v = vs->vols; v; v = v->next)
        if (!v->detached) tell(vs, AGENT_VOLS_ATTACHED, v);
}

int agent_vol_mem_set_attachment(struct agent_vols *vs, const char *name, bool read_only,
                                 const char *client)
{
    struct agent_vol *v = find(vs, name);
    if (!v) return -ENOENT;
    v->info.read_only = read_only;
    util_strlcpy(v->info.client, client ? client : "", sizeof(v->info.client));
    tell(vs, AGENT_VOLS_CHANGED, v);
    return 0;
}

int agent_vol_mem_detach(struct agent_vols *vs, const char *name)
{
    struct agent_vol *v = find(vs, name);
    if (!v) return -ENOENT;
    v->detached = true;
    tell(vs, AGENT_VOLS_DETACHED, v);
    return 0;
}

struct agent_vols *agent_vol_mem_new(struct reactor *rx)
{
    struct agent_vols *vs = calloc(1, sizeof(*vs));
    if (!vs) return NULL;
    vs->rx = rx;
    vs->max_io = 32u << 20;
    vs->kick = event_new(reactor_base(rx), -1, 0, on_kick, vs);
    vs->timer = evtimer_new(reactor_base(rx), on_kick, vs);
    if (!vs->kick || !vs->timer) {
        if (vs->kick) event_free(vs->kick);
        if (vs->timer) event_free(vs->timer);
        free(vs);
        return NULL;
    }
    return vs;
}

static struct agent_vols *last_new; /* see agent_vol_mem_last */

struct agent_vols *agent_vol_mem_last(void)
{
    return last_new;
}

int agent_vols_new(struct reactor *rx, const struct cfg *top, const struct cfg_agent *cfg,
                   struct tls_ctx *tls, const char *tag, struct agent_vols **out, char *err,
                   size_t errlen)
{
    (void)top;
    (void)tls;
    (void)cfg;
    (void)tag;
    *out = agent_vol_mem_new(rx);
    if (!*out) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    last_new = *out;
    return 0;
}

int agent_vol_mem_add(struct agent_vols *vs, const char *name, uint64_t size, bool read_only)
{
    if (!*name || strlen(name) > AGENT_VOL_NAME_MAX || size == 0 || size % AVM_BLOCK)
        return -EINVAL;
    if (find(vs, name)) return -EEXIST;
    struct agent_vol *v = calloc(1, sizeof(*v));
    if (!v) return -ENOMEM;
    v->vs = vs;
    util_strlcpy(v->info.name, name, sizeof(v->info.name));
    v->info.size = size;
    v->info.block_size = AVM_BLOCK;
    v->info.max_io = vs->max_io;
    v->info.read_only = read_only;
    v->n_l1 = (size / AVM_BLOCK + AVM_L2 - 1) / AVM_L2;
    v->l1 = calloc(v->n_l1, sizeof(*v->l1));
    if (!v->l1) {
        free(v);
        return -ENOMEM;
    }
    v->next = vs->vols;
    vs->vols = v;
    tell(vs, AGENT_VOLS_ATTACHED, v);
    return 0;
}

void agent_vol_mem_set_max_io(struct agent_vols *vs, uint32_t max_io)
{
    vs->max_io = max_io;
}

int agent_vol_mem_inject(struct agent_vols *vs, const char *name, unsigned ops, uint64_t off,
                         uint64_t len, int err, unsigned count)
{
    struct fault *f = calloc(1, sizeof(*f));
    if (!f) return -ENOMEM;
    if (name) util_strlcpy(f->name, name, sizeof(f->name));
    f->ops = ops;
    f->off = off;
    f->len = len;
    f->err = err;
    f->count = count;
    f->next = vs->faults;
    vs->faults = f;
    return 0;
}

void agent_vol_mem_clear_faults(struct agent_vols *vs)
{
    while (vs->faults) {
        struct fault *f = vs->faults;
        vs->faults = f->next;
        free(f);
    }
}

void agent_vol_mem_set_delay(struct agent_vols *vs, uint64_t delay_ms) { vs->delay_ms = delay_ms; }
void agent_vol_mem_fail_lookups(struct agent_vols *vs, int err) { vs->lookup_err = err; }
void agent_vol_mem_set_fast_zero_enotsup(struct agent_vols *vs, bool on)
{
    vs->fast_zero_enotsup = on;
}
void agent_vol_mem_set_long_extents(struct agent_vols *vs, bool on) { vs->long_extents = on; }

void agent_vol_mem_stats(struct agent_vols *vs, struct agent_vol_mem_stats *st)
{
    *st = vs->st;
    st->attached = 0;
    for (struct agent_vol *v = vs->vols; v; v = v->next)
        if (v->refs > 0) st->attached++;
}

static void run_lookup(void *arg)
{
    struct lookup *l = arg;
    struct agent_vols *vs = l->vs;
    int err = vs->stopping ? -ESHUTDOWN : vs->lookup_err;
    if (l->kind == 0) {
        struct agent_vols_list_req *req = l->req;
        unsigned n = 0;
        for (struct agent_vol *v = vs->vols; v; v = v->next) n += !v->detached;
        struct agent_vols_list_entry *e = calloc(n ? n : 1, sizeof(*e));
        unsigned i = 0;
        for (struct agent_vol *v = vs->vols; v && e; v = v->next) {
            if (v->detached) continue;
            util_strlcpy(e[i].name, v->info.name, sizeof(e[i].name));
            util_strlcpy(e[i].client, v->info.client, sizeof(e[i].client));
            e[i].size = v->info.size;
            e[i].read_only = v->info.read_only;
            i++;
        }
        if (!e && !err) err = -ENOMEM;
        req->cb(req, err, err ? NULL : e, err ? 0 : n);
        free(e);
    } else {
        struct agent_vol *v = err ? NULL : find(vs, l->name);
        if (!err && !v) err = -ENOENT;
        if (l->kind == 1) {
            struct agent_vols_info_req *req = l->req;
            req->cb(req, err, err ? NULL : &v->info);
        } else {
            struct agent_vols_open_req *req = l->req;
            if (!err) {
                v->refs++;
                vs->st.opens++;
            }
            req->cb(req, err, err ? NULL : v);
        }
    }
    free(l);
}

static void lookup(struct agent_vols *vs, int kind, const char *name, bool ro, void *req)
{
    struct lookup *l = calloc(1, sizeof(*l));
    if (!l) abort(); /* test code: no recovery */
    l->vs = vs;
    l->kind = kind;
    if (name) util_strlcpy(l->name, name, sizeof(l->name));
    if (name && strlen(name) > AGENT_VOL_NAME_MAX) vs->st.violations++;
    l->ro = ro;
    l->req = req;
    if (reactor_defer(vs->rx, run_lookup, l) < 0) abort();
}

void agent_vols_list(struct agent_vols *vs, struct agent_vols_list_req *req)
{
    vs->st.lists++;
    lookup(vs, 0, NULL, false, req);
}

void agent_vols_info(struct agent_vols *vs, const char *name, struct agent_vols_info_req *req)
{
    vs->st.infos++;
    lookup(vs, 1, name, false, req);
}

void agent_vols_open(struct agent_vols *vs, const char *name, bool read_only,
                     struct agent_vols_open_req *req)
{
    lookup(vs, 2, name, read_only, req);
}

void agent_vols_stop(struct agent_vols *vs, void (*done)(void *arg), void *arg)
{
    vs->stopping = true;
    vs->stop_done = done;
    vs->stop_arg = arg;
    kick(vs); /* run_queue calls DONE once the queue is empty */
}

void agent_vols_free(struct agent_vols *vs)
{
    if (!vs) return;
    if (vs == last_new) last_new = NULL;
    if (vs->q_head) vs->st.violations++;
    agent_vol_mem_clear_faults(vs);
    while (vs->vols) {
        struct agent_vol *v = vs->vols;
        vs->vols = v->next;
        for (uint64_t i = 0; i < v->n_l1; i++) {
            if (!v->l1[i]) continue;
            for (unsigned k = 0; k < AVM_L2; k++)
                if (v->l1[i][k] && v->l1[i][k] != ZERO_MARK) free(v->l1[i][k]);
            free(v->l1[i]);
        }
        free(v->l1);
        free(v);
    }
    event_free(vs->kick);
    event_free(vs->timer);
    free(vs);
}

void agent_vols_status(struct agent_vols *vs, struct cJSON *out)
{
    cJSON *arr = cJSON_AddArrayToObject(out, "volumes");
    for (struct agent_vol *v = vs->vols; v && arr; v = v->next) {
        cJSON *o = cJSON_CreateObject();
        if (!o) return;
        cJSON_AddStringToObject(o, "name", v->info.name);
        cJSON_AddNumberToObject(o, "size", (double)v->info.size);
        cJSON_AddBoolToObject(o, "read_only", v->info.read_only);
        cJSON_AddNumberToObject(o, "references", v->refs);
        cJSON_AddBoolToObject(o, "attached", v->refs > 0);
        cJSON_AddItemToArray(arr, o);
    }
}
