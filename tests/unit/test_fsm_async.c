/* test_fsm_async.c: the proxy's index-writer thread (fsm_raft.c,
 * asynchronous mode).  Entries go in through raft's apply callback as the
 * proxy's raft would feed them; the test checks what the proxy relies on:
 *   - fsm_pending_wait_decided runs with the entry's final result before
 *     the entry is done (committed to this copy of the index), and never
 *     after it;
 *   - fsm_pending_wait runs once the entry is done, when on_applied has
 *     already announced it and a reader sees it;
 *   - everything arrives in raft order, and a waiter registered after the
 *     fact runs at once.
 * No raft instance runs: fr_apply needs only raft->last_applied, which the
 * test advances itself, as raft does before each apply. */
#include "tap.h"
#include "idxtest.h"
#include "runtime/reactor.h"
#include "store/index/fsm.h"

#include <stdlib.h>
#include <string.h>

#define N_ENTRIES 200

static struct itx T;
static struct fsm_raft FR;
static struct raft R;
static struct reactor *RX;

struct ent {
    struct fsm_pending *p;
    int decided_calls, done_calls;
    bool done_when_decided;       /* p->done already true in the decided waiter */
    bool visible_when_done;       /* a reader saw the volume in the done waiter */
    uint8_t status;
    uint64_t id;
};
static struct ent E[N_ENTRIES];
static uint64_t last_announced;
static bool announced_in_order = true;
static int n_done;

static void on_applied(void *arg, uint64_t index, const struct idxcmd_result *res)
{
    (void)arg;
    (void)res;
    if (index != last_announced + 1) announced_in_order = false;
    last_announced = index;
}

static void on_decided(struct fsm_pending *p, void *arg)
{
    struct ent *e = arg;
    e->decided_calls++;
    e->done_when_decided = p->done;
    e->status = p->res.status;
    e->id = p->res.id;
}

static void on_done(struct fsm_pending *p, void *arg)
{
    struct ent *e = arg;
    e->done_calls++;
    char name[32];
    snprintf(name, sizeof(name), "v%ld", (long)(e - E));
    struct index_vol v;
    if (index_read_begin(T.rd) == 0) {
        e->visible_when_done = index_vol_by_name(T.rd, name, strlen(name), &v) == 0 &&
                               v.id == p->res.id;
        index_read_end(T.rd);
    }
    if (++n_done == N_ENTRIES) reactor_break(RX);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    reactor_break(arg);
}

/* Feed FR, as raft would, the entry creating volume PREFIX<I>; its
 * pending result, or NULL. */
static struct fsm_pending *apply_create(const char *prefix, int i)
{
    struct idxcmd c = {.type = IDXCMD_CREATE_VOLUME};
    char name[32];
    snprintf(name, sizeof(name), "%s%d", prefix, i);
    c.u.create_volume.name = idxcmd_cstr(name);
    c.u.create_volume.size = 1u << 20;
    c.u.create_volume.block_size = 4096;
    uint8_t buf[IDXCMD_MAX_LEN];
    int n = idxcmd_encode(buf, sizeof(buf), &c);
    if (n <= 0) return NULL;
    struct raft_buffer rb = {.base = buf, .len = (size_t)n};
    void *result = NULL;
    if (FR.fsm.apply(&FR.fsm, &rb, &result) != 0) return NULL;
    R.last_applied++;
    return result;
}

TEST(decided_before_done_in_order)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/ix", tap_tmpdir());
    CHECK_EQ(itx_open(&T, dir, "c1"), 0);
    CHECK((RX = reactor_new()) != NULL);
    CHECK_EQ(fsm_raft_init(&FR, T.ix), 0);
    fsm_raft_bind(&FR, &R);
    FR.on_applied = on_applied;
    CHECK_EQ(fsm_raft_set_async(&FR, RX), 0);
    for (int i = 0; i < N_ENTRIES; i++) {
        E[i].p = apply_create("v", i);
        CHECK(E[i].p != NULL);
        /* Half register the decided waiter, half the done waiter: one
         * waiter per entry (fsm.h). */
        if (i % 2 == 0) fsm_pending_wait_decided(E[i].p, on_decided, &E[i]);
        else fsm_pending_wait(E[i].p, on_done, &E[i]);
    }
    /* The done waiters count; decided ones are checked below. */
    n_done = N_ENTRIES / 2;
    struct event *t = evtimer_new(reactor_base(RX), on_timeout, RX);
    struct timeval tv = {20, 0};
    evtimer_add(t, &tv);
    reactor_run(RX);
    event_free(t);
    CHECK_EQ(n_done, N_ENTRIES);
    for (int i = 0; i < N_ENTRIES; i++) {
        if (i % 2 == 0) {
            CHECK_EQ(E[i].decided_calls, 1);
            CHECK(!E[i].done_when_decided);
            CHECK_EQ(E[i].status, IDXCMD_ST_OK);
            CHECK(E[i].id != 0);
        } else {
            CHECK_EQ(E[i].done_calls, 1);
            CHECK(E[i].visible_when_done);
        }
    }
    CHECK(announced_in_order);
    CHECK_EQ(last_announced, N_ENTRIES);
    fsm_raft_fini(&FR);
    reactor_free(RX);
    itx_close(&T);
}

/* The writer keeps a transaction open a few milliseconds for more entries
 * (fsm_raft.c, applier_more).  An entry nobody waits to see must still
 * become visible on its own, and a waiter to see one (fsm_pending_wait,
 * which hurries the writer) must get it with everything before it. */
static uint64_t linger_target;

static void linger_applied(void *arg, uint64_t index, const struct idxcmd_result *res)
{
    (void)arg;
    (void)res;
    if (index != last_announced + 1) announced_in_order = false;
    last_announced = index;
    if (index == linger_target) reactor_break(RX);
}

static void linger_decided(struct fsm_pending *p, void *arg)
{
    (void)p;
    (*(int *)arg)++;
}

static void linger_done(struct fsm_pending *p, void *arg)
{
    (void)p;
    (*(int *)arg)++;
    reactor_break(RX);
}

static void run_bounded(int seconds)
{
    struct event *t = evtimer_new(reactor_base(RX), on_timeout, RX);
    struct timeval tv = {seconds, 0};
    evtimer_add(t, &tv);
    reactor_run(RX);
    event_free(t);
}

TEST(lingering_transaction_commits)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/linger", tap_tmpdir());
    CHECK_EQ(itx_open(&T, dir, "c1"), 0);
    CHECK((RX = reactor_new()) != NULL);
    memset(&R, 0, sizeof(R));
    last_announced = 0;
    announced_in_order = true;
    CHECK_EQ(fsm_raft_init(&FR, T.ix), 0);
    fsm_raft_bind(&FR, &R);
    FR.on_applied = linger_applied;
    CHECK_EQ(fsm_raft_set_async(&FR, RX), 0);

    /* One entry, only its result awaited: decided, then visible on its own. */
    int decided = 0, done = 0;
    struct fsm_pending *p = apply_create("l", 0);
    CHECK(p != NULL);
    fsm_pending_wait_decided(p, linger_decided, &decided);
    linger_target = 1;
    run_bounded(10);
    CHECK_EQ(decided, 1);
    CHECK_EQ(last_announced, 1u);

    /* Three more; a waiter to see the last: it runs once all three are
     * visible, in order. */
    for (int i = 1; i <= 3; i++) {
        CHECK((p = apply_create("l", i)) != NULL);
        if (i < 3) fsm_pending_wait_decided(p, linger_decided, &decided);
    }
    fsm_pending_wait(p, linger_done, &done);
    linger_target = 0;
    run_bounded(10);
    CHECK_EQ(done, 1);
    CHECK_EQ(decided, 3);
    CHECK_EQ(last_announced, 4u);
    CHECK(announced_in_order);
    struct index_vol v;
    CHECK_EQ(index_read_begin(T.rd), 0);
    CHECK_EQ(index_vol_by_name(T.rd, "l3", 2, &v), 0);
    index_read_end(T.rd);

    /* fsm_raft_hurry for an entry not yet applied is remembered: the
     * entry that then arrives commits without lingering (checked here for
     * the outcome only: it becomes visible). */
    fsm_raft_hurry(&FR, 5);
    CHECK((p = apply_create("l", 4)) != NULL);
    linger_target = 5;
    run_bounded(10);
    CHECK_EQ(last_announced, 5u);
    fsm_raft_fini(&FR);
    reactor_free(RX);
    itx_close(&T);
}
