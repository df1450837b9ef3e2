/* test_testlib.c: the shared unit-test helpers keep their promises: a wait
 * that never gets there ends at its deadline and says so, one that does
 * ends when it does; a pump lasts as long as asked; the file helpers
 * refuse what they cannot do. */
#include "runtime/reactor.h"
#include "tap.h"
#include "testlib.h"
#include "base/util.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

static struct reactor *rx;
static int flag, count;

static void fixture(void)
{
    if (!rx) rx = reactor_new();
    flag = count = 0;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    flag = 1;
    count++;
}

/* A timer in MS milliseconds that sets flag and counts, repeating if PERSIST. */
static struct event *timer_in(int ms, bool persist)
{
    struct event *e = event_new(reactor_base(rx), -1, persist ? EV_PERSIST : 0, on_timer, NULL);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(e, &tv);
    return e;
}

static bool count_is_three(void)
{
    return count >= 3;
}

/* Never set: false, after the deadline and not much later. */
TEST(wait_ends_at_deadline)
{
    fixture();
    uint64_t t0 = util_mono_ms();
    CHECK(!testlib_run_until_flag(rx, &flag, 200));
    uint64_t took = util_mono_ms() - t0;
    CHECK(took >= 200);
    CHECK(took < 1000);
}

/* Set by an event: true, when it happens, long before the deadline. */
TEST(wait_ends_when_set)
{
    fixture();
    struct event *e = timer_in(50, false);
    uint64_t t0 = util_mono_ms();
    CHECK(testlib_run_until_flag(rx, &flag, 5000));
    CHECK(util_mono_ms() - t0 < 2000);
    event_free(e);
}

/* A count and a predicate are waited for the same way. */
TEST(count_and_predicate)
{
    fixture();
    struct event *e = timer_in(10, true);
    CHECK(testlib_run_until_count(rx, &count, 3, 5000));
    CHECK(count >= 3);
    count = 0;
    CHECK(testlib_run_until(rx, count_is_three, 5000));
    event_free(e);
    count = 0;
    CHECK(!testlib_run_until_count(rx, &count, 1, 50));
}

/* A pump runs the reactor for the time asked, whatever happens. */
TEST(pump_lasts)
{
    fixture();
    struct event *e = timer_in(10, false);
    uint64_t t0 = util_mono_ms();
    testlib_pump(rx, 150);
    CHECK(util_mono_ms() - t0 >= 150);
    CHECK_EQ(flag, 1);
    event_free(e);
}

/* A flip flips one byte; a flip past the end or of no file is an error. */
TEST(files)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/f", tap_tmpdir());
    CHECK_EQ(testlib_file_size(path), (unsigned long long)-1);
    CHECK_EQ(util_write_file_atomic(path, "abc", 3, 0600), 0);
    CHECK_EQ(testlib_file_size(path), 3);
    CHECK_EQ(testlib_flip_byte(path, 1, 0x20), 0);
    char *b;
    size_t len;
    CHECK_EQ(util_read_file(path, 100, &b, &len), 0);
    CHECK(len == 3 && b[0] == 'a' && b[1] == 'B' && b[2] == 'c');
    free(b);
    CHECK_EQ(testlib_flip_byte(path, 3, 1), (unsigned long long)-ERANGE);
    snprintf(path, sizeof(path), "%s/none", tap_tmpdir());
    CHECK_EQ(testlib_flip_byte(path, 0, 1), (unsigned long long)-ENOENT);
}

/* Nothing listening: an error, not a hang. */
TEST(http_no_server)
{
    fixture();
    char body[16];
    CHECK_EQ(testlib_http_get(rx, 1, "/", body, sizeof(body)), (unsigned long long)-1);
}
