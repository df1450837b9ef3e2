/* test_turnq.c: the turn queue (requests wait for their flow's turn)
 * (src/base/turnq.c).
 *
 * Off (cap 0) and a lone volume start every write at once; while two
 * volumes write, the one with a deep queue is held to the cap and the
 * other's write starts as soon as it has nothing in progress; completions
 * let held writes go in turn; a write that finishes inside its own start
 * (a refusal) neither recurses nor loses a turn; stop fails exactly the
 * waiting writes and later completions are harmless; the sweep frees only
 * idle flows. */
#include "base/turnq.h"
#include "tap.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define KiB 1024ull
#define MiB (1024ull * 1024)

struct twrite {
    struct turnq_item it; /* first */
    struct turnq *q;
    unsigned vol;
    bool started, failed, finish_at_start;
    int err;
};

static unsigned g_started[4];
static unsigned g_depth, g_max_depth;

static void t_start(struct turnq_item *it)
{
    struct twrite *w = (struct twrite *)it;
    w->started = true;
    g_started[w->vol]++;
    if (w->finish_at_start) {
        g_depth++;
        if (g_depth > g_max_depth) g_max_depth = g_depth;
        turnq_done(w->q, it);
        g_depth--;
    }
}

static void t_fail(struct turnq_item *it, int err)
{
    struct twrite *w = (struct twrite *)it;
    w->failed = true;
    w->err = err;
}

static void submit(struct turnq *q, struct twrite *w, unsigned vol, uint64_t cost)
{
    *w = (struct twrite){.it = {.cost = cost, .start = t_start, .fail = t_fail}, .q = q, .vol = vol};
    turnq_submit(q, vol, &w->it);
}

static void reset(void)
{
    memset(g_started, 0, sizeof(g_started));
    g_depth = g_max_depth = 0;
}

TEST(off_starts_everything)
{
    reset();
    struct turnq *q = turnq_new(0);
    CHECK(q != NULL);
    struct twrite a[20], b;
    for (unsigned i = 0; i < 20; i++) submit(q, &a[i], 1, 1 * MiB);
    submit(q, &b, 2, 4 * KiB);
    CHECK_EQ(g_started[1], 20u);
    CHECK_EQ(g_started[2], 1u);
    struct turnq_stats st;
    turnq_stats(q, &st);
    CHECK_EQ(st.flows, 0u);
    CHECK_EQ(st.queued, 0u);
    for (unsigned i = 0; i < 20; i++) turnq_done(q, &a[i].it);
    turnq_done(q, &b.it);
    turnq_free(q);
}

TEST(lone_volume_is_never_held)
{
    reset();
    struct turnq *q = turnq_new(2 * MiB);
    struct twrite a[32];
    for (unsigned i = 0; i < 32; i++) submit(q, &a[i], 1, 1 * MiB);
    CHECK_EQ(g_started[1], 32u);
    struct turnq_stats st;
    turnq_stats(q, &st);
    CHECK_EQ(st.in_flight, 32 * MiB);
    CHECK_EQ(st.waits, 0u);
    for (unsigned i = 0; i < 32; i++) turnq_done(q, &a[i].it);
    turnq_stats(q, &st);
    CHECK_EQ(st.in_flight, 0u);
    turnq_free(q);
}

TEST(contended_volumes_take_turns_within_the_cap)
{
    reset();
    struct turnq *q = turnq_new(2 * MiB);
    struct twrite a[16], b[3];
    /* A alone: its first 8 go at once. */
    for (unsigned i = 0; i < 8; i++) submit(q, &a[i], 1, 1 * MiB);
    CHECK_EQ(g_started[1], 8u);
    /* B arrives: it has nothing in progress, so it goes at once too. */
    submit(q, &b[0], 2, 4 * KiB);
    CHECK(b[0].started);
    /* A's next writes wait: 8 MiB + 4 KiB in progress is over the cap. */
    for (unsigned i = 8; i < 16; i++) submit(q, &a[i], 1, 1 * MiB);
    CHECK_EQ(g_started[1], 8u);
    struct turnq_stats st;
    turnq_stats(q, &st);
    CHECK_EQ(st.queued, 8u);
    CHECK_EQ(st.flows, 2u);
    /* A's first 8 finish: A has nothing in progress, so one goes; a
     * second would pass the cap beside B's 4 KiB. */
    for (unsigned i = 0; i < 8; i++) turnq_done(q, &a[i].it);
    CHECK_EQ(g_started[1], 9u);
    turnq_stats(q, &st);
    CHECK(st.in_flight <= 2 * MiB);
    /* B's next write goes at once: B has nothing in progress once done. */
    turnq_done(q, &b[0].it);
    submit(q, &b[1], 2, 4 * KiB);
    CHECK(b[1].started);
    turnq_stats(q, &st);
    CHECK(st.in_flight <= 2 * MiB + 4 * KiB);
    /* Drain A, one completion at a time: never more than the cap. */
    unsigned done = 8;
    while (done < 16) {
        for (unsigned i = 8; i < 16; i++) {
            if (a[i].started && a[i].it.flow) {
                turnq_done(q, &a[i].it);
                done++;
                turnq_stats(q, &st);
                CHECK(st.in_flight <= 2 * MiB + 4 * KiB);
            }
        }
    }
    CHECK_EQ(g_started[1], 16u);
    turnq_stats(q, &st);
    CHECK(st.waits >= 7u); /* A's held writes waited their turn */
    turnq_done(q, &b[1].it);
    turnq_free(q);
}

TEST(a_write_finished_inside_its_start_does_not_recurse)
{
    reset();
    struct turnq *q = turnq_new(1 * MiB);
    struct twrite hold, quiet, a[200];
    submit(q, &hold, 2, 1 * MiB); /* another volume active and in progress */
    submit(q, &quiet, 3, 4 * KiB);
    for (unsigned i = 0; i < 200; i++) {
        a[i] = (struct twrite){.it = {.cost = 1 * MiB, .start = t_start, .fail = t_fail},
                               .q = q, .vol = 1, .finish_at_start = true};
        turnq_submit(q, 1, &a[i].it);
    }
    /* Each finishes as it starts, so each lets the next go: all 200 ran,
     * and the pump looped instead of nesting. */
    CHECK_EQ(g_started[1], 200u);
    CHECK_EQ(g_max_depth, 1u);
    turnq_done(q, &hold.it);
    turnq_done(q, &quiet.it);
    turnq_free(q);
}

TEST(stop_fails_only_the_waiting)
{
    reset();
    struct turnq *q = turnq_new(1 * MiB);
    struct twrite a[4], b, late;
    for (unsigned i = 0; i < 4; i++) submit(q, &a[i], 1, 1 * MiB);
    submit(q, &b, 2, 4 * KiB);
    struct twrite c;
    submit(q, &c, 1, 1 * MiB); /* held: contended, A over the cap */
    CHECK(!c.started);
    turnq_stop(q, -ESHUTDOWN);
    CHECK(c.failed);
    CHECK_EQ(c.err, -ESHUTDOWN);
    for (unsigned i = 0; i < 4; i++) CHECK(!a[i].failed);
    /* Completions after the stop are accounted, start nothing. */
    for (unsigned i = 0; i < 4; i++) turnq_done(q, &a[i].it);
    turnq_done(q, &b.it);
    submit(q, &late, 1, 4 * KiB);
    CHECK(late.failed && !late.started);
    turnq_free(q);
}

TEST(free_fails_what_still_waits)
{
    reset();
    struct turnq *q = turnq_new(1 * MiB);
    struct twrite a, b, c;
    submit(q, &a, 1, 1 * MiB);
    submit(q, &b, 2, 1 * MiB);
    submit(q, &c, 1, 1 * MiB);
    CHECK(!c.started);
    turnq_free(q);
    CHECK(c.failed);
}

TEST(sweep_frees_only_idle_flows)
{
    reset();
    struct turnq *q = turnq_new(1 * MiB);
    struct twrite a, b;
    submit(q, &a, 1, 4 * KiB);
    submit(q, &b, 2, 4 * KiB);
    turnq_done(q, &a.it);
    struct turnq_stats st;
    turnq_sweep(q); /* both touched just now */
    turnq_stats(q, &st);
    CHECK_EQ(st.flows, 2u);
    usleep(1100 * 1000);
    turnq_sweep(q); /* 1 is idle; 2 still has a write in progress */
    turnq_stats(q, &st);
    CHECK_EQ(st.flows, 1u);
    turnq_done(q, &b.it);
    /* A freed flow comes back on the next write. */
    struct twrite a2;
    submit(q, &a2, 1, 4 * KiB);
    CHECK(a2.started);
    turnq_stats(q, &st);
    CHECK_EQ(st.flows, 2u);
    turnq_done(q, &a2.it);
    turnq_free(q);
}


