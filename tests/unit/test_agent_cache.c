/* test_agent_cache.c: the agent's dirty map (src/roles/agent/agent_cache.c).
 *
 * A model test: random puts, cleans, unships and forgets over a small volume are
 * applied both to the map and to a per-block array, and after every step
 * the map must describe exactly the model (kind, version, need, ship,
 * checksum of every block) and its totals must add up.  Seeded: a
 * failure prints the seed. */
#include "base/bd.h"
#include "roles/agent/agent_cache.h"
#include "tap.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

/* ---- Fixture -------------------------------------------------------------- */

#define NB 256

struct blk {
    int kind;          /* 0 clean */
    uint64_t seq, need, ship, csum;
};

static struct blk model[NB];

struct check {
    uint64_t next;     /* next block expected */
    bool ok;
    uint64_t bytes;
};

static bool check_fn(void *arg, struct agent_cache_ext *e)
{
    struct check *c = arg;
    for (uint64_t b = c->next; b < e->start && b < NB; b++)
        if (model[b].kind) c->ok = false;
    for (uint64_t i = 0; i < e->nblk; i++) {
        uint64_t b = e->start + i;
        if (b >= NB) break;
        const struct blk *m = &model[b];
        if (m->kind != e->kind || m->seq != e->seq || m->ship != e->ship_id ||
            (e->kind != AGENT_CACHE_LOST && m->need != e->need))
            c->ok = false;
        if (e->kind == AGENT_CACHE_DATA && agent_cache_ext_csum(e, i) != m->csum) c->ok = false;
    }
    if (e->kind == AGENT_CACHE_DATA) c->bytes += e->nblk * 4096;
    c->next = e->start + e->nblk;
    return true;
}

static bool map_matches(struct agent_cache *c)
{
    struct check ck = {.ok = true};
    agent_cache_walk(c, 0, NB, check_fn, &ck);
    for (uint64_t b = ck.next; b < NB; b++)
        if (model[b].kind) ck.ok = false;
    uint64_t min = UINT64_MAX;
    for (int b = 0; b < NB; b++)
        if (model[b].kind && model[b].kind != AGENT_CACHE_LOST && model[b].need < min)
            min = model[b].need;
    return ck.ok && ck.bytes == agent_cache_dirty_bytes(c) && min == agent_cache_min_need(c);
}

struct ship_arg {
    uint64_t id, a, b;
};

static bool ship_fn(void *arg, struct agent_cache_ext *e)
{
    struct ship_arg *s = arg;
    if (e->kind != AGENT_CACHE_LOST && !e->ship_id && e->start >= s->a &&
        e->start + e->nblk <= s->b)
        e->ship_id = s->id;
    return true;
}

static bool mirror_fn(void *arg, struct agent_cache_ext *e)
{
    struct ship_arg *s = arg;
    if (e->ship_id == s->id)
        for (uint64_t i = 0; i < e->nblk; i++) model[e->start + i].ship = s->id;
    return true;
}

/* ---- Scenarios ------------------------------------------------------------ */

/* Random operations keep the map equal to the per-block model. */
TEST(random_ops_match_model)
{
    uint64_t rs = tap_seed();
    struct agent_cache *c = agent_cache_new(NULL);
    memset(model, 0, sizeof(model));
    uint64_t seq = 0, ship = 0;
    uint64_t csums[NB];
    for (int step = 0; step < 4000; step++) {
        int op = (int)(util_rand64(&rs) % 11);
        uint64_t a = util_rand64(&rs) % NB;
        uint64_t n = 1 + util_rand64(&rs) % (op < 2 ? 64 : 8);
        if (a + n > NB) n = NB - a;
        if (op < 7) {
            int kind = 1 + (int)(util_rand64(&rs) % 4);
            seq++;
            uint64_t need = seq;
            for (uint64_t i = 0; i < n; i++) {
                csums[i] = util_rand64(&rs);
                struct blk *m = &model[a + i];
                if (m->kind && m->kind != AGENT_CACHE_LOST && m->need < need) need = m->need;
            }
            struct agent_cache_version p = {.kind = kind, .start = a, .nblk = n, .seq = seq,
                                            .seg = 1, .dpos = 1024, .csums = csums};
            CHECK(agent_cache_put(c, &p) == 0);
            for (uint64_t i = 0; i < n; i++)
                model[a + i] = (struct blk){
                    .kind = kind, .seq = seq, .need = kind == AGENT_CACHE_LOST ? 0 : need,
                    .csum = kind == AGENT_CACHE_DATA ? csums[i] : 0};
        } else if (op == 7) {
            /* Ship the dirty extents lying wholly inside [a, a+n), as the
             * shipper does, then mirror what was marked into the model. */
            struct ship_arg sa = {++ship, a, a + n};
            agent_cache_walk(c, a, a + n, ship_fn, &sa);
            agent_cache_walk(c, 0, NB, mirror_fn, &sa);
        } else if (op == 8 && ship) {
            uint64_t id = 1 + util_rand64(&rs) % ship;
            agent_cache_clean(c, 0, NB, id);
            for (int b = 0; b < NB; b++)
                if (model[b].ship == id) memset(&model[b], 0, sizeof(model[b]));
        } else if (op == 9 && ship) {
            uint64_t id = 1 + util_rand64(&rs) % ship;
            agent_cache_unship(c, 0, NB, id);
            for (int b = 0; b < NB; b++)
                if (model[b].ship == id) model[b].ship = 0;
        } else if (op == 10) {
            /* A write around the journal: whatever is there goes, cut at
             * the edges; overlaps() saw it before. */
            bool any = false;
            for (uint64_t i = 0; i < n; i++) any |= model[a + i].kind != 0;
            CHECK(agent_cache_overlaps(c, a, a + n) == any);
            CHECK(agent_cache_forget(c, a, a + n) == 0);
            for (uint64_t i = 0; i < n; i++) memset(&model[a + i], 0, sizeof(model[a + i]));
            CHECK(!agent_cache_overlaps(c, a, a + n));
        }
        if (!map_matches(c)) {
            printf("# mismatch after step %d (op %d at %llu+%llu)\n", step, op,
                   (unsigned long long)a, (unsigned long long)n);
            CHECK(0);
        }
    }
    agent_cache_unship_all(c);
    for (int b = 0; b < NB; b++) model[b].ship = 0;
    CHECK(map_matches(c));
    agent_cache_free(c);
}

/* A dirty version overwritten before shipping hands its need to the new
 * one; a LOST mark never holds a flush back. */
TEST(need_is_inherited)
{
    struct agent_cache *c = agent_cache_new(NULL);
    uint64_t cs[4] = {1, 2, 3, 4};
    struct agent_cache_version p = {
        .kind = AGENT_CACHE_DATA, .start = 10, .nblk = 4, .seq = 5, .csums = cs};
    CHECK(agent_cache_put(c, &p) == 0);
    p = (struct agent_cache_version){.kind = AGENT_CACHE_ZERO, .start = 12, .nblk = 4, .seq = 9};
    CHECK(agent_cache_put(c, &p) == 0);
    CHECK_EQ(agent_cache_min_need(c), 5);
    CHECK_EQ(agent_cache_min_need_range(c, 14, 16), 5);
    CHECK_EQ(agent_cache_extents(c), 2);
    CHECK_EQ(agent_cache_dirty_bytes(c), 2 * 4096);
    p = (struct agent_cache_version){
        .kind = AGENT_CACHE_LOST, .start = 0, .nblk = 100, .seq = 11, .seg = 3};
    CHECK(agent_cache_put(c, &p) == 0);
    CHECK_EQ(agent_cache_min_need(c), UINT64_MAX);
    CHECK_EQ(agent_cache_lost_extents(c), 1);
    uint64_t out[4][2];
    CHECK_EQ(agent_cache_lost_in_seg(c, 3, out, 4), 1);
    CHECK_EQ(out[0][1], 100);
    CHECK_EQ(agent_cache_lost_in_seg(c, 4, out, 4), 0);
    agent_cache_free(c);
}
