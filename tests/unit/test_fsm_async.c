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
        struct idxcmd c = {.type = IDXCMD_CREATE_VOLUME};
        char name[32];
        snprintf(name, sizeof(name), "v%d", i);
        c.u.create_volume.name = idxcmd_cstr(name);
        c.u.create_volume.size = 1u << 20;
        c.u.create_volume.block_size = 4096;
        uint8_t buf[IDXCMD_MAX_LEN];
        int n = idxcmd_encode(buf, sizeof(buf), &c);
        CHECK(n > 0);
        struct raft_buffer rb = {.base = buf, .len = (size_t)n};
        void *result = NULL;
        CHECK_EQ(FR.fsm.apply(&FR.fsm, &rb, &result), 0);
        R.last_applied++;
        E[i].p = result;
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
