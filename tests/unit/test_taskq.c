/* test_taskq.c: task queues (src/runtime/taskq.c): order, completion thread. */
#include "base/bd.h"
#include "runtime/reactor.h"
#include "runtime/taskq.h"
#include "tap.h"
#include "testlib.h"

#include <pthread.h>
#include <stdlib.h>

struct job {
    struct taskq_job tj;
    int seq;
    pthread_t ran_on;
};

static int ran_order[100], n_ran;
static int done_order[100], n_done;
static pthread_t reactor_thread;
static bool done_on_reactor = true;

static void run(struct taskq_job *tj)
{
    struct job *j = bd_container_of(tj, struct job, tj);
    j->ran_on = pthread_self();
    ran_order[n_ran++] = j->seq; /* one worker thread: no race */
}

static void done(struct reactor_work *w)
{
    struct job *j = bd_container_of(w, struct job, tj.work);
    if (!pthread_equal(pthread_self(), reactor_thread)) done_on_reactor = false;
    done_order[n_done++] = j->seq;
}

/* Jobs run in submission order on the worker and complete in order on the
 * reactor thread. */
TEST(fifo_and_completion_thread)
{
    struct reactor *rx = reactor_new();
    CHECK(rx);
    reactor_thread = pthread_self();
    struct taskq *q = taskq_new(rx, "test");
    CHECK(q);
    static struct job jobs[100];
    for (int i = 0; i < 100; i++) {
        jobs[i].seq = i;
        jobs[i].tj.run = run;
        jobs[i].tj.work.done = done;
        taskq_submit(q, &jobs[i].tj);
    }
    CHECK(testlib_run_until_count(rx, &n_done, 100, 10000));
    for (int i = 0; i < 100; i++) {
        CHECK_EQ(ran_order[i], i);
        CHECK_EQ(done_order[i], i);
        CHECK(!pthread_equal(jobs[i].ran_on, reactor_thread));
    }
    CHECK(done_on_reactor);
    CHECK_EQ(taskq_depth(q), 0);
    taskq_free(q);
    reactor_free(rx);
}
