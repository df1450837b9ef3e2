/* agent_cache.c: the dirty map (see agent_cache.h).
 *
 * A treap (a binary search tree on the first block, a heap on a random
 * priority) with split and merge, which makes range replacement simple:
 *
 *   put [a, b):  split at a -> L | R; cut L's last extent at a (its tail
 *                moves to R); split R at b -> M | R2; cut M's last extent
 *                at b (its tail moves to R2); free M; L | new | R2.
 *
 * Extents never overlap, so "extent containing a" is always the rightmost
 * node of L.  Each node caches the minimum `need` of its subtree, updated
 * on the way back up every split and merge.
 *
 * Nodes come from chunks of 256 on a free list and are recycled, so a
 * warm map allocates nothing for single-block writes.  Multi-block DATA
 * extents share one refcounted checksum array per journal entry; cutting
 * an extent shares the array with an offset.
 *
 * Rejected: a per-block hash map (a 1 GiB TRIM would cost 262,144 entries)
 * and a plain sorted array (O(n) inserts with tens of thousands of dirty
 * extents). */
#include "roles/agent/agent_cache.h"
#include "base/bd.h"
#include "store/journal/journal.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_NODES 256

struct agent_cache_csums {
    uint32_t refs;
    uint64_t n;
    uint64_t v[];
};

struct node {
    struct agent_cache_ext e;
    struct node *l, *r;
    uint64_t prio;
    uint64_t sub_need; /* min need over this subtree (LOST counts as UINT64_MAX) */
};

struct chunk {
    struct chunk *next;
    struct node nodes[CHUNK_NODES];
};

struct agent_cache {
    struct journal *j;
    struct node *root;
    struct node *free_nodes;
    struct chunk *chunks;
    uint64_t rand;
    uint64_t dirty_bytes;
    uint64_t n_ext, n_lost;
};

/* ---- nodes --------------------------------------------------------------- */

static struct node *node_alloc(struct agent_cache *c)
{
    if (!c->free_nodes) {
        struct chunk *ch = malloc(sizeof(*ch));
        if (!ch) return NULL;
        ch->next = c->chunks;
        c->chunks = ch;
        for (int i = 0; i < CHUNK_NODES; i++) {
            ch->nodes[i].l = c->free_nodes;
            c->free_nodes = &ch->nodes[i];
        }
    }
    struct node *n = c->free_nodes;
    c->free_nodes = n->l;
    memset(n, 0, sizeof(*n));
    n->prio = util_rand64(&c->rand);
    return n;
}

static void csums_unref(struct agent_cache_csums *cs)
{
    if (cs && --cs->refs == 0) free(cs);
}

static uint64_t own_need(const struct node *n)
{
    return n->e.kind == AGENT_CACHE_LOST ? UINT64_MAX : n->e.need;
}

static void upd(struct node *n)
{
    uint64_t m = own_need(n);
    if (n->l && n->l->sub_need < m) m = n->l->sub_need;
    if (n->r && n->r->sub_need < m) m = n->r->sub_need;
    n->sub_need = m;
}

/* Account for N entering (+1) or leaving (-1) the map. */
static void account(struct agent_cache *c, const struct node *n, int sign)
{
    bool lost = n->e.kind == AGENT_CACHE_LOST;
    if (c->j) journal_ref(c->j, n->e.seg, sign, lost);
    if (sign > 0) {
        c->n_ext++;
        if (lost) c->n_lost++;
        if (n->e.kind == AGENT_CACHE_DATA) c->dirty_bytes += n->e.nblk * BD_BLOCK_SIZE;
    } else {
        c->n_ext--;
        if (lost) c->n_lost--;
        if (n->e.kind == AGENT_CACHE_DATA) c->dirty_bytes -= n->e.nblk * BD_BLOCK_SIZE;
    }
}

static void node_drop(struct agent_cache *c, struct node *n)
{
    account(c, n, -1);
    csums_unref(n->e.cs);
    n->l = c->free_nodes;
    c->free_nodes = n;
}

uint64_t agent_cache_ext_csum(const struct agent_cache_ext *e, uint64_t i)
{
    if (!e->cs) return e->csum1;
    return e->cs->v[e->cs_off + i];
}

/* ---- treap --------------------------------------------------------------- */

/* L gets the nodes starting before KEY, R the rest. */
static void split(struct node *t, uint64_t key, struct node **l, struct node **r)
{
    if (!t) {
        *l = *r = NULL;
        return;
    }
    if (t->e.start < key) {
        split(t->r, key, &t->r, r);
        *l = t;
    } else {
        split(t->l, key, l, &t->l);
        *r = t;
    }
    upd(t);
}

/* Every key of A is below every key of B. */
static struct node *merge(struct node *a, struct node *b)
{
    if (!a) return b;
    if (!b) return a;
    if (a->prio > b->prio) {
        a->r = merge(a->r, b);
        upd(a);
        return a;
    }
    b->l = merge(a, b->l);
    upd(b);
    return b;
}

static struct node *rightmost(struct node *t)
{
    while (t && t->r) t = t->r;
    return t;
}

/* If the last extent of *L runs past AT, move its part from AT on into a
 * new node merged in front of *R.  -ENOMEM leaves everything as it was. */
static int cut_tail(struct agent_cache *c, struct node **l, struct node **r, uint64_t at)
{
    struct node *m = rightmost(*l);
    if (!m || m->e.start + m->e.nblk <= at) return 0;
    struct node *n = node_alloc(c);
    if (!n) return -ENOMEM;
    uint64_t head = at - m->e.start;
    n->e = m->e;
    n->e.start = at;
    n->e.nblk = m->e.nblk - head;
    if (m->e.kind == AGENT_CACHE_DATA) {
        n->e.dpos += head * BD_BLOCK_SIZE;
        n->e.cs_off += head;
        if (n->e.cs) n->e.cs->refs++;
    }
    /* The split keeps the byte totals; only the node count and the
     * segment reference grow. */
    if (m->e.kind == AGENT_CACHE_DATA) c->dirty_bytes -= n->e.nblk * BD_BLOCK_SIZE;
    m->e.nblk = head;
    account(c, n, +1);
    upd(n);
    *r = merge(n, *r);
    return 0;
}

static void drop_tree(struct agent_cache *c, struct node *t, uint64_t *min_need)
{
    if (!t) return;
    drop_tree(c, t->l, min_need);
    drop_tree(c, t->r, min_need);
    if (own_need(t) < *min_need) *min_need = own_need(t);
    node_drop(c, t);
}

/* ---- public -------------------------------------------------------------- */

struct agent_cache *agent_cache_new(struct journal *j)
{
    struct agent_cache *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->j = j;
    c->rand = util_seed();
    return c;
}

void agent_cache_free(struct agent_cache *c)
{
    if (!c) return;
    uint64_t ignore = UINT64_MAX;
    drop_tree(c, c->root, &ignore);
    while (c->chunks) {
        struct chunk *ch = c->chunks;
        c->chunks = ch->next;
        free(ch);
    }
    free(c);
}

int agent_cache_put(struct agent_cache *c, const struct agent_cache_version *p)
{
    if (!BD_ALWAYS(p->nblk && p->kind >= AGENT_CACHE_DATA && p->kind <= AGENT_CACHE_LOST))
        return -EINVAL;
    struct node *n = node_alloc(c);
    if (!n) return -ENOMEM;
    struct agent_cache_csums *cs = NULL;
    if (p->kind == AGENT_CACHE_DATA && p->nblk > 1) {
        cs = malloc(sizeof(*cs) + p->nblk * sizeof(uint64_t));
        if (!cs) {
            n->l = c->free_nodes;
            c->free_nodes = n;
            return -ENOMEM;
        }
        cs->refs = 1;
        cs->n = p->nblk;
        memcpy(cs->v, p->csums, p->nblk * sizeof(uint64_t));
    }
    uint64_t a = p->start, b = p->start + p->nblk;
    struct node *L, *R, *M, *R2;
    split(c->root, a, &L, &R);
    if (cut_tail(c, &L, &R, a) < 0) goto err_undo1;
    split(R, b, &M, &R2);
    if (cut_tail(c, &M, &R2, b) < 0) {
        R = merge(M, R2);
        goto err_undo1;
    }
    uint64_t need = p->seq;
    drop_tree(c, M, &need);
    n->e = (struct agent_cache_ext){
        .start = a, .nblk = p->nblk, .seq = p->seq,
        .need = p->kind == AGENT_CACHE_LOST ? UINT64_MAX : BD_MIN(need, p->seq),
        .seg = p->seg, .dpos = p->dpos, .born_ms = p->born_ms, .kind = p->kind, .cs = cs,
        .csum1 = p->kind == AGENT_CACHE_DATA ? p->csums[0] : 0};
    account(c, n, +1);
    upd(n);
    c->root = merge(merge(L, n), R2);
    return 0;

err_undo1:
    /* A cut that succeeded stays: it only split an extent in two. */
    c->root = merge(L, R);
    csums_unref(cs);
    n->l = c->free_nodes;
    c->free_nodes = n;
    return -ENOMEM;
}

static bool walk(struct node *t, uint64_t a, uint64_t b, agent_cache_visit_fn fn, void *arg)
{
    while (t) {
        if (t->e.start >= b) {
            t = t->l;
            continue;
        }
        if (t->e.start + t->e.nblk <= a) {
            t = t->r;
            continue;
        }
        if (!walk(t->l, a, b, fn, arg)) return false;
        if (!fn(arg, &t->e)) return false;
        t = t->r;
    }
    return true;
}

void agent_cache_walk(struct agent_cache *c, uint64_t start, uint64_t end, agent_cache_visit_fn fn,
                      void *arg)
{
    if (start < end) walk(c->root, start, end, fn, arg);
}

static struct node *filter(struct agent_cache *c, struct node *t, uint64_t id, unsigned *n)
{
    if (!t) return NULL;
    t->l = filter(c, t->l, id, n);
    t->r = filter(c, t->r, id, n);
    if (t->e.ship_id == id) {
        struct node *m = merge(t->l, t->r);
        node_drop(c, t);
        (*n)++;
        return m;
    }
    upd(t);
    return t;
}

unsigned agent_cache_clean(struct agent_cache *c, uint64_t start, uint64_t end, uint64_t ship_id)
{
    if (!BD_ALWAYS(ship_id)) return 0;
    struct node *L, *R, *M, *R2;
    unsigned n = 0;
    split(c->root, start, &L, &R);
    split(R, end, &M, &R2);
    M = filter(c, M, ship_id, &n);
    c->root = merge(merge(L, M), R2);
    return n;
}

int agent_cache_forget(struct agent_cache *c, uint64_t start, uint64_t end)
{
    if (start >= end) return 0;
    struct node *L, *R, *M, *R2;
    split(c->root, start, &L, &R);
    int rc = cut_tail(c, &L, &R, start);
    if (rc == 0) {
        split(R, end, &M, &R2);
        rc = cut_tail(c, &M, &R2, end);
        if (rc == 0) {
            uint64_t ignore = UINT64_MAX;
            drop_tree(c, M, &ignore);
            M = NULL;
        }
        R = merge(M, R2);
    }
    c->root = merge(L, R);
    return rc;
}

static bool any_fn(void *arg, struct agent_cache_ext *e)
{
    (void)e;
    *(bool *)arg = true;
    return false;
}

bool agent_cache_overlaps(struct agent_cache *c, uint64_t start, uint64_t end)
{
    bool any = false;
    agent_cache_walk(c, start, end, any_fn, &any);
    return any;
}

struct unship_arg {
    uint64_t id;
};

static bool unship_fn(void *arg, struct agent_cache_ext *e)
{
    struct unship_arg *u = arg;
    if (!u->id || e->ship_id == u->id) e->ship_id = 0;
    return true;
}

void agent_cache_unship(struct agent_cache *c, uint64_t start, uint64_t end, uint64_t ship_id)
{
    struct unship_arg u = {.id = ship_id};
    if (BD_ALWAYS(ship_id)) agent_cache_walk(c, start, end, unship_fn, &u);
}

void agent_cache_unship_all(struct agent_cache *c)
{
    struct unship_arg u = {.id = 0};
    agent_cache_walk(c, 0, UINT64_MAX, unship_fn, &u);
}

uint64_t agent_cache_min_need(const struct agent_cache *c)
{
    return c->root ? c->root->sub_need : UINT64_MAX;
}

static bool min_need_fn(void *arg, struct agent_cache_ext *e)
{
    uint64_t *m = arg;
    if (e->kind != AGENT_CACHE_LOST && e->need < *m) *m = e->need;
    return true;
}

uint64_t agent_cache_min_need_range(struct agent_cache *c, uint64_t start, uint64_t end)
{
    uint64_t m = UINT64_MAX;
    agent_cache_walk(c, start, end, min_need_fn, &m);
    return m;
}

struct lost_arg {
    uint64_t seg;
    uint64_t (*out)[2];
    size_t max, n;
};

static bool lost_fn(void *arg, struct agent_cache_ext *e)
{
    struct lost_arg *a = arg;
    if (e->kind == AGENT_CACHE_LOST && e->seg == a->seg) {
        if (a->n < a->max) {
            a->out[a->n][0] = e->start;
            a->out[a->n][1] = e->nblk;
        }
        a->n++;
    }
    return true;
}

size_t agent_cache_lost_in_seg(struct agent_cache *c, uint64_t seg, uint64_t (*out)[2], size_t max)
{
    struct lost_arg a = {.seg = seg, .out = out, .max = max};
    if (c->n_lost) agent_cache_walk(c, 0, UINT64_MAX, lost_fn, &a);
    return a.n;
}

uint64_t agent_cache_dirty_bytes(const struct agent_cache *c)
{
    return c->dirty_bytes;
}
uint64_t agent_cache_extents(const struct agent_cache *c)
{
    return c->n_ext;
}
uint64_t agent_cache_lost_extents(const struct agent_cache *c)
{
    return c->n_lost;
}
