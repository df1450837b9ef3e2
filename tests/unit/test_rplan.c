/* test_rplan.c: the repair decisions (src/roles/proxy/rplan.c): the paged diff of
 * a partition's replicas, what each listed id deserves, the orphan ledger
 * that never deletes before the grace, and which member to replace. */
#include "base/bd.h"
#include "roles/proxy/rplan.h"
#include "tap.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

/* ======== Helpers ======== */

static struct rplan_page page(const uint64_t *ids, uint32_t n, bool more)
{
    return (struct rplan_page){.ids = ids, .n = n, .more = more, .listed = true};
}

static const struct rplan_page unlisted = {.listed = false};

/* ======== The diff ======== */

/* Complete lists: the bound is unlimited and every id appears once with
 * the replicas that hold it. */
TEST(merge_complete_lists)
{
    static const uint64_t a[] = {1, 2, 5}, b[] = {2, 5, 9}, c[] = {1, 2, 5, 9};
    struct rplan_page pg[3] = {page(a, 3, false), page(b, 3, false), page(c, 4, false)};
    CHECK_EQ(rplan_bound(pg), UINT64_MAX);
    struct rplan_id out[12];
    uint32_t n = rplan_merge(pg, UINT64_MAX, out, 12);
    CHECK_EQ(n, 4);
    CHECK_EQ(out[0].id, 1);
    CHECK_EQ(out[0].present, 0x5);
    CHECK_EQ(out[1].id, 2);
    CHECK_EQ(out[1].present, 0x7);
    CHECK_EQ(out[2].id, 5);
    CHECK_EQ(out[2].present, 0x7);
    CHECK_EQ(out[3].id, 9);
    CHECK_EQ(out[3].present, 0x6);
    CHECK_EQ(rplan_missing(0x7, out[0].present), 0x2);
    CHECK_EQ(rplan_missing(0x7, out[1].present), 0);
}

/* Pages that stop early bound the merge at the smallest last id among the
 * pages that have more: nothing past it is judged yet. */
TEST(merge_bound_by_short_page)
{
    static const uint64_t a[] = {10, 20, 30}, b[] = {10, 15}, c[] = {10, 20, 30, 40};
    struct rplan_page pg[3] = {page(a, 3, true), page(b, 2, true), page(c, 4, false)};
    uint64_t bound = rplan_bound(pg);
    CHECK_EQ(bound, 15);
    struct rplan_id out[12];
    uint32_t n = rplan_merge(pg, bound, out, 12);
    CHECK_EQ(n, 2);
    CHECK_EQ(out[0].id, 10);
    CHECK_EQ(out[0].present, 0x7);
    CHECK_EQ(out[1].id, 15);
    CHECK_EQ(out[1].present, 0x2); /* a and c do not have 15: known, they listed past it */
}

/* A wiped replica (empty list) misses everything the others hold. */
TEST(merge_wiped_replica)
{
    static const uint64_t a[] = {3, 4, 7};
    struct rplan_page pg[3] = {page(a, 3, false), page(NULL, 0, false), page(a, 3, false)};
    struct rplan_id out[9];
    uint32_t n = rplan_merge(pg, rplan_bound(pg), out, 9);
    CHECK_EQ(n, 3);
    for (uint32_t i = 0; i < n; i++) CHECK_EQ(rplan_missing(0x7, out[i].present), 0x2);
}

/* A replica that could not be listed is neither a source nor missing. */
TEST(merge_unlisted_replica)
{
    static const uint64_t a[] = {3, 4}, c[] = {4};
    struct rplan_page pg[3] = {page(a, 2, false), unlisted, page(c, 1, false)};
    struct rplan_id out[6];
    uint32_t n = rplan_merge(pg, rplan_bound(pg), out, 6);
    CHECK_EQ(n, 2);
    CHECK_EQ(out[0].present, 0x1);
    CHECK_EQ(rplan_missing(0x5, out[0].present), 0x4);
    CHECK_EQ(rplan_missing(0x5, out[1].present), 0);
}

/* Paging through random lists with random page sizes finds exactly the
 * differences a full comparison finds. */
TEST(merge_paged_equals_full)
{
    uint64_t seed = tap_seed();
    for (int round = 0; round < 50; round++) {
        enum { N = 400 };
        uint64_t ids[3][N];
        uint32_t n[3] = {0};
        for (uint64_t id = 1; id <= N; id++)
            for (int r = 0; r < 3; r++)
                if (util_rand64(&seed) % 10 < 8) ids[r][n[r]++] = id;
        uint8_t seen[N + 1] = {0};
        uint32_t pos[3] = {0};
        uint64_t cursor = 0;
        for (int guard = 0; guard < 10000; guard++) {
            struct rplan_page pg[3];
            for (int r = 0; r < 3; r++) {
                while (pos[r] < n[r] && ids[r][pos[r]] <= cursor) pos[r]++;
                uint32_t take = 1 + (uint32_t)(util_rand64(&seed) % 37);
                uint32_t left = n[r] - pos[r];
                pg[r] = page(ids[r] + pos[r], BD_MIN(take, left), take < left);
                CHECK_EQ(rplan_page_check(&pg[r], cursor), 0);
            }
            uint64_t bound = rplan_bound(pg);
            struct rplan_id out[3 * 37];
            uint32_t k = rplan_merge(pg, bound, out, 3 * 37);
            for (uint32_t i = 0; i < k; i++) {
                CHECK(out[i].id > cursor && out[i].id <= N);
                CHECK(!seen[out[i].id]); /* each id judged once */
                seen[out[i].id] = out[i].present | 0x80;
            }
            if (bound == UINT64_MAX) break;
            cursor = bound;
        }
        for (uint64_t id = 1; id <= N; id++) {
            uint8_t want = 0;
            for (int r = 0; r < 3; r++)
                for (uint32_t i = 0; i < n[r]; i++)
                    if (ids[r][i] == id) want |= (uint8_t)(1u << r);
            CHECK_EQ(seen[id] & 0x7f, want);
            CHECK_EQ(!!seen[id], !!want);
        }
    }
}

/* A server's page must be ascending, above the cursor, and non-empty if
 * it claims more. */
TEST(page_check)
{
    static const uint64_t good[] = {5, 6, 9}, dup[] = {5, 5}, down[] = {6, 5}, low[] = {3, 8};
    struct rplan_page pg = page(good, 3, true);
    CHECK_EQ(rplan_page_check(&pg, 4), 0);
    CHECK_EQ(rplan_page_check(&pg, 5), -EPROTO);
    pg = page(dup, 2, false);
    CHECK_EQ(rplan_page_check(&pg, 0), -EPROTO);
    pg = page(down, 2, false);
    CHECK_EQ(rplan_page_check(&pg, 0), -EPROTO);
    pg = page(low, 2, false);
    CHECK_EQ(rplan_page_check(&pg, 3), -EPROTO);
    pg = page(NULL, 0, true);
    CHECK_EQ(rplan_page_check(&pg, 0), -EPROTO);
    pg = page(NULL, 0, false);
    CHECK_EQ(rplan_page_check(&pg, 0), 0);
}

/* ======== Classification ======== */

/* Live here: keep (and copy where missing); dead: GC's; unknown or placed
 * in another partition: an orphan here. */
TEST(classify)
{
    struct rplan_blob live = {.known = true, .partition = 4};
    struct rplan_blob dead = {.known = true, .dead = true, .partition = 4};
    struct rplan_blob unknown = {.known = false};
    CHECK_EQ(rplan_classify(&live, 4), RPLAN_KEEP);
    CHECK_EQ(rplan_classify(&dead, 4), RPLAN_GC);
    CHECK_EQ(rplan_classify(&unknown, 4), RPLAN_ORPHAN);
    CHECK_EQ(rplan_classify(&live, 5), RPLAN_ORPHAN);
    CHECK_EQ(rplan_classify(&dead, 5), RPLAN_ORPHAN);
}

/* ======== The orphan ledger ======== */

/* A copy is due only once it has been seen for the whole grace, counted
 * from the first sighting; seeing it again does not restart the clock. */
TEST(orphan_due_after_grace)
{
    struct rplan_orphans o;
    rplan_orphans_init(&o, 0);
    CHECK_EQ(rplan_orphan_note(&o, 11, 1, 99, 1000, 40000), 0);
    CHECK_EQ(rplan_orphan_note(&o, 11, 1, 99, 20000, 40000), 0);
    CHECK_EQ(rplan_orphan_note(&o, 11, 1, 99, 40999, 40000), 0);
    CHECK_EQ(rplan_orphan_note(&o, 11, 1, 99, 41000, 40000), 1);
    /* The same id on another server has its own clock. */
    CHECK_EQ(rplan_orphan_note(&o, 12, 1, 99, 41000, 40000), 0);
    CHECK_EQ(o.n, 2);
    rplan_orphans_fini(&o);
}

/* Forgetting (the index knows it after all, or it was deleted) restarts
 * the clock at the next sighting. */
TEST(orphan_forget_restarts)
{
    struct rplan_orphans o;
    rplan_orphans_init(&o, 0);
    CHECK_EQ(rplan_orphan_note(&o, 11, 1, 7, 0, 100), 0);
    rplan_orphan_forget(&o, 11, 7);
    CHECK(rplan_orphan_find(&o, 11, 7) == NULL);
    CHECK_EQ(rplan_orphan_note(&o, 11, 1, 7, 150, 100), 0);
    CHECK_EQ(rplan_orphan_note(&o, 11, 1, 7, 250, 100), 1);
    rplan_orphans_fini(&o);
}

/* Listed under another partition than before: the clock starts over. */
TEST(orphan_partition_change_restarts)
{
    struct rplan_orphans o;
    rplan_orphans_init(&o, 0);
    CHECK_EQ(rplan_orphan_note(&o, 11, 1, 7, 0, 100), 0);
    CHECK_EQ(rplan_orphan_note(&o, 11, 2, 7, 200, 100), 0);
    CHECK_EQ(rplan_orphan_note(&o, 11, 2, 7, 299, 100), 0);
    CHECK_EQ(rplan_orphan_note(&o, 11, 2, 7, 300, 100), 1);
    rplan_orphans_fini(&o);
}

/* Entries not seen since the cutoff are pruned; the rest keep their first
 * sighting. */
TEST(orphan_prune)
{
    struct rplan_orphans o;
    rplan_orphans_init(&o, 0);
    for (uint64_t id = 1; id <= 100; id++)
        CHECK_EQ(rplan_orphan_note(&o, 11, 1, id, 10, 1000), 0);
    for (uint64_t id = 1; id <= 100; id += 2)
        CHECK_EQ(rplan_orphan_note(&o, 11, 1, id, 500, 1000), 0);
    rplan_orphans_prune(&o, 400);
    CHECK_EQ(o.n, 50);
    CHECK(rplan_orphan_find(&o, 11, 2) == NULL);
    const struct rplan_orphan *e = rplan_orphan_find(&o, 11, 3);
    CHECK(e != NULL);
    CHECK_EQ(e->first_ms, 10);
    CHECK_EQ(rplan_orphan_note(&o, 11, 1, 3, 1010, 1000), 1);
    rplan_orphans_fini(&o);
}

/* The ledger is bounded: past MAX it refuses (the id is seen again in a
 * later pass), and never deletes what it did not track. */
TEST(orphan_bounded)
{
    struct rplan_orphans o;
    rplan_orphans_init(&o, 8);
    for (uint64_t id = 1; id <= 8; id++) CHECK_EQ(rplan_orphan_note(&o, 11, 1, id, 0, 10), 0);
    CHECK_EQ(rplan_orphan_note(&o, 11, 1, 9, 0, 10), -ENOSPC);
    CHECK_EQ(rplan_orphan_note(&o, 11, 1, 9, 100, 10), -ENOSPC);
    CHECK_EQ(rplan_orphan_note(&o, 11, 1, 8, 100, 10), 1);
    rplan_orphans_fini(&o);
}

/* Random notes and forgets agree with a plain array model (the hash
 * table's probing and backward-shift deletion). */
TEST(orphan_table_model)
{
    uint64_t seed = tap_seed();
    struct rplan_orphans o;
    rplan_orphans_init(&o, 0);
    enum { IDS = 3000 };
    static uint64_t first[2][IDS + 1]; /* 0: absent */
    memset(first, 0, sizeof(first));
    for (uint64_t t = 1; t <= 40000; t++) {
        uint64_t node = 11 + util_rand64(&seed) % 2, id = 1 + util_rand64(&seed) % IDS;
        uint64_t *f = &first[node - 11][id];
        if (util_rand64(&seed) % 3 == 0) {
            rplan_orphan_forget(&o, node, id);
            *f = 0;
            continue;
        }
        int due = rplan_orphan_note(&o, node, 1, id, t, 5000);
        if (!*f) *f = t;
        CHECK_EQ(due, t - *f >= 5000 ? 1 : 0);
    }
    uint32_t n = 0;
    for (int k = 0; k < 2; k++)
        for (uint64_t id = 1; id <= IDS; id++) {
            const struct rplan_orphan *e = rplan_orphan_find(&o, 11 + (uint64_t)k, id);
            CHECK_EQ(e != NULL, first[k][id] != 0);
            if (e) {
                CHECK_EQ(e->first_ms, first[k][id]);
                n++;
            }
        }
    CHECK_EQ(o.n, n);
    rplan_orphans_fini(&o);
}

/* ======== Replacement ======== */

/* The first member down long enough is replaced, but only while another
 * member is up to copy from. */
TEST(replace_slot)
{
    uint64_t up3[3] = {0, 0, 0}, one[3] = {0, 5000, 0}, young[3] = {0, 999, 0};
    uint64_t two[3] = {7000, 0, 6000}, all[3] = {9000, 9000, 9000};
    CHECK_EQ(rplan_replace_slot(up3, 1000), -1);
    CHECK_EQ(rplan_replace_slot(one, 1000), 1);
    CHECK_EQ(rplan_replace_slot(young, 1000), -1);
    CHECK_EQ(rplan_replace_slot(two, 1000), 0);
    CHECK_EQ(rplan_replace_slot(all, 1000), -1);
}

