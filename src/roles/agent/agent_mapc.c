/* agent_mapc.c: the leased blob map cache (see agent_mapc.h).
 *
 * A window is one allocation: its header and its pieces, clipped to the
 * window's bounds.  The hash table has a fixed number of buckets sized
 * from the budget (a window costs at least its header, so the budget
 * bounds how many there are); the LRU list is doubly linked, most recent
 * at the head.  Every operation is O(pieces touched) except drop_vol,
 * which walks the LRU list (attach changes are rare). */
#include "roles/agent/agent_mapc.h"
#include "base/bd.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct win {
    struct win *hnext;           /* bucket chain */
    struct win *prev, *next;     /* LRU: prev is more recent */
    uint64_t vol_id;
    uint64_t idx;                /* window number: offset / AGENT_MAPC_WINDOW */
    uint64_t end;                /* covered up to here (absolute offset) */
    uint64_t expires_ms;
    uint32_t n;
    struct agent_mapc_piece p[]; /* tile [idx * WINDOW, end) */
};

struct agent_mapc {
    uint64_t max_bytes, bytes, windows;
    struct win **buckets;
    uint64_t mask;
    struct win *head, *tail;
};

static uint64_t win_bytes(uint32_t n)
{
    return sizeof(struct win) + (uint64_t)n * sizeof(struct agent_mapc_piece);
}

static uint64_t hash(uint64_t vol_id, uint64_t idx)
{
    uint64_t h = vol_id * 0x9E3779B97F4A7C15ull ^ (idx + 0x632BE59BD9B4E019ull);
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

struct agent_mapc *agent_mapc_new(uint64_t max_bytes)
{
    struct agent_mapc *mc = calloc(1, sizeof(*mc));
    if (!mc) return NULL;
    uint64_t nb = 64;
    while (nb < (1u << 20) && nb * 1024 < max_bytes) nb *= 2;
    mc->buckets = calloc(nb, sizeof(*mc->buckets));
    if (!mc->buckets) {
        free(mc);
        return NULL;
    }
    mc->mask = nb - 1;
    mc->max_bytes = max_bytes;
    return mc;
}

static void lru_unlink(struct agent_mapc *mc, struct win *w)
{
    if (w->prev) w->prev->next = w->next;
    else mc->head = w->next;
    if (w->next) w->next->prev = w->prev;
    else mc->tail = w->prev;
    w->prev = w->next = NULL;
}

static void lru_push(struct agent_mapc *mc, struct win *w)
{
    w->prev = NULL;
    w->next = mc->head;
    if (mc->head) mc->head->prev = w;
    else mc->tail = w;
    mc->head = w;
}

static struct win **slot(struct agent_mapc *mc, uint64_t vol_id, uint64_t idx)
{
    struct win **pp = &mc->buckets[hash(vol_id, idx) & mc->mask];
    while (*pp && ((*pp)->vol_id != vol_id || (*pp)->idx != idx)) pp = &(*pp)->hnext;
    return pp;
}

static void win_drop(struct agent_mapc *mc, struct win *w)
{
    struct win **pp = slot(mc, w->vol_id, w->idx);
    if (BD_ALWAYS(*pp == w)) *pp = w->hnext;
    lru_unlink(mc, w);
    mc->bytes -= win_bytes(w->n);
    mc->windows--;
    free(w);
}

void agent_mapc_free(struct agent_mapc *mc)
{
    if (!mc) return;
    while (mc->head) win_drop(mc, mc->head);
    free(mc->buckets);
    free(mc);
}

int agent_mapc_clip(const struct agent_mapc_piece *p, uint32_t n, uint64_t off, uint64_t len,
                    struct agent_mapc_piece *out, uint32_t max, uint32_t *nout)
{
    uint64_t end = off + len, at = off;
    uint32_t k = 0;
    /* Pieces ascend: skip to the first that ends past OFF. */
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (p[mid].off + p[mid].len <= off) lo = mid + 1;
        else hi = mid;
    }
    for (uint32_t i = lo; i < n && at < end; i++) {
        const struct agent_mapc_piece *x = &p[i];
        if (x->off > at) break; /* a gap: not covered */
        if (k == max) return -E2BIG;
        uint64_t a = at, b = BD_MIN(end, x->off + x->len);
        out[k] = *x;
        out[k].off = a;
        out[k].len = (uint32_t)(b - a);
        if (x->blob_id) out[k].blob_off = x->blob_off + (uint32_t)(a - x->off);
        k++;
        at = b;
    }
    if (at < end) return -ENOENT;
    *nout = k;
    return 0;
}

/* Pieces of P (tiling from P[0].off) that fall in [A, B), clipped, into a
 * new window; NULL when out of memory. */
static struct win *win_make(const struct agent_mapc_piece *p, uint32_t n, uint64_t a, uint64_t b)
{
    uint32_t cnt = 0;
    for (uint32_t i = 0; i < n; i++)
        if (p[i].off < b && p[i].off + p[i].len > a) cnt++;
    struct win *w = malloc(win_bytes(cnt));
    if (!w) return NULL;
    uint32_t got = 0;
    if (cnt && agent_mapc_clip(p, n, a, b - a, w->p, cnt, &got) < 0) got = 0;
    w->n = got;
    return w;
}

int agent_mapc_put(struct agent_mapc *mc, uint64_t vol_id, uint64_t off, uint64_t end,
                   uint64_t expires_ms, const struct agent_mapc_piece *p, uint32_t n)
{
    if (off % AGENT_MAPC_WINDOW || end <= off || n == 0 || p[0].off != off) return -EINVAL;
    uint64_t at = off;
    for (uint32_t i = 0; i < n; i++) {
        if (p[i].off != at || p[i].len == 0) return -EINVAL;
        at += p[i].len;
    }
    if (at != end) return -EINVAL;
    int rc = 0;
    for (uint64_t idx = off / AGENT_MAPC_WINDOW; idx * AGENT_MAPC_WINDOW < end; idx++) {
        uint64_t a = idx * AGENT_MAPC_WINDOW, b = BD_MIN(a + AGENT_MAPC_WINDOW, end);
        struct win **pp = slot(mc, vol_id, idx);
        if (*pp) win_drop(mc, *pp);
        struct win *w = win_make(p, n, a, b);
        if (!w) {
            rc = -ENOMEM;
            continue;
        }
        uint64_t need = win_bytes(w->n);
        if (need > mc->max_bytes) {
            free(w);
            rc = -ENOMEM;
            continue;
        }
        while (mc->bytes + need > mc->max_bytes && mc->tail) win_drop(mc, mc->tail);
        w->vol_id = vol_id;
        w->idx = idx;
        w->end = b;
        w->expires_ms = expires_ms;
        pp = slot(mc, vol_id, idx);
        w->hnext = NULL;
        *pp = w;
        lru_push(mc, w);
        mc->bytes += need;
        mc->windows++;
    }
    return rc;
}

int agent_mapc_get(struct agent_mapc *mc, uint64_t vol_id, uint64_t off, uint64_t len,
                   uint64_t now, struct agent_mapc_piece *out, uint32_t max, uint32_t *n)
{
    if (len == 0) return -ENOENT;
    uint64_t end = off + len;
    uint32_t k = 0;
    for (uint64_t idx = off / AGENT_MAPC_WINDOW; idx * AGENT_MAPC_WINDOW < end; idx++) {
        struct win *w = *slot(mc, vol_id, idx);
        if (!w) return -ENOENT;
        if (now >= w->expires_ms) {
            win_drop(mc, w);
            return -ETIME;
        }
        uint64_t a = BD_MAX(off, idx * AGENT_MAPC_WINDOW);
        uint64_t b = BD_MIN(end, (idx + 1) * AGENT_MAPC_WINDOW);
        if (b > w->end) return -ENOENT;
        uint32_t got = 0;
        int rc = agent_mapc_clip(w->p, w->n, a, b - a, out + k, max - k, &got);
        if (rc < 0) return rc;
        k += got;
        if (w != mc->head) {
            lru_unlink(mc, w);
            lru_push(mc, w);
        }
    }
    /* Pieces of adjacent windows that continue each other read as one. */
    uint32_t j = 0;
    for (uint32_t i = 0; i < k; i++) {
        struct agent_mapc_piece *q = j ? &out[j - 1] : NULL;
        bool joins = q && q->blob_id == out[i].blob_id && q->partition == out[i].partition &&
                     (q->blob_id == 0 || q->blob_off + q->len == out[i].blob_off) &&
                     memcmp(q->nodes, out[i].nodes, sizeof(q->nodes)) == 0;
        if (joins) q->len += out[i].len;
        else out[j++] = out[i];
    }
    *n = j;
    return 0;
}

void agent_mapc_invalidate(struct agent_mapc *mc, uint64_t vol_id, uint64_t off, uint64_t len)
{
    if (len == 0 || !mc->windows) return;
    uint64_t first = off / AGENT_MAPC_WINDOW, last = (off + len - 1) / AGENT_MAPC_WINDOW;
    if (last - first >= mc->windows) {
        /* A range wider than what is cached (a large TRIM): walk the cache. */
        struct win *w = mc->head;
        while (w) {
            struct win *nx = w->next;
            if (w->vol_id == vol_id && w->idx >= first && w->idx <= last) win_drop(mc, w);
            w = nx;
        }
        return;
    }
    for (uint64_t idx = off / AGENT_MAPC_WINDOW; idx <= last; idx++) {
        struct win *w = *slot(mc, vol_id, idx);
        if (w) win_drop(mc, w);
    }
}

void agent_mapc_drop_vol(struct agent_mapc *mc, uint64_t vol_id)
{
    struct win *w = mc->head;
    while (w) {
        struct win *nx = w->next;
        if (w->vol_id == vol_id) win_drop(mc, w);
        w = nx;
    }
}

uint64_t agent_mapc_bytes(const struct agent_mapc *mc)
{
    return mc->bytes;
}

uint64_t agent_mapc_windows(const struct agent_mapc *mc)
{
    return mc->windows;
}
