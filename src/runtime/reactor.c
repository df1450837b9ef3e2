/* reactor.c: see reactor.h.
 *
 * Completions from worker threads: a mutex-protected singly linked list and
 * one libevent user event.  A worker appends and calls event_active(); the
 * reactor's callback swaps the list out under the lock and runs each done
 * callback outside it, in submission order.  libevent is put into threaded
 * mode (evthread_use_pthreads) so event_active() from a worker is safe.
 *
 * Deferred calls use the same shape without a lock (reactor thread only). */
#include "runtime/reactor.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"

#include <event2/thread.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

struct deferred {
    void (*fn)(void *arg);
    void *arg;
    struct deferred *next;
};

struct reactor {
    struct event_base *base;
    struct event *sig_term, *sig_int, *sig_hup;
    struct event *done_ev;      /* activated when `done` gains an entry */
    struct event *defer_ev;     /* activated when `deferred` gains an entry */
    pthread_mutex_t lock;       /* protects done_head/done_tail */
    struct reactor_work *done_head, *done_tail;
    struct deferred *defer_head, *defer_tail; /* reactor thread only */
    void (*stop_fn)(void *arg);
    void *stop_arg;
    int stop_signals;           /* SIGTERM/SIGINT seen so far */
};

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct reactor *rx = arg;
    pthread_mutex_lock(&rx->lock);
    struct reactor_work *w = rx->done_head;
    rx->done_head = rx->done_tail = NULL;
    pthread_mutex_unlock(&rx->lock);
    while (w) {
        struct reactor_work *next = w->next;
        w->next = NULL;
        w->done(w);
        w = next;
    }
}

static void on_deferred(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct reactor *rx = arg;
    struct deferred *d = rx->defer_head;
    rx->defer_head = rx->defer_tail = NULL;
    while (d) {
        struct deferred *next = d->next;
        d->fn(d->arg);
        free(d);
        d = next;
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct reactor *rx = arg;
    if (sig == SIGHUP) {
        int rc = log_reopen();
        log_info("main", "SIGHUP: log reopened%s%s", rc ? ": " : "", rc ? bd_strerror(rc) : "");
        return;
    }
    rx->stop_signals++;
    if (rx->stop_signals > 1 || !rx->stop_fn) {
        log_warn("main", "signal %d: leaving the event loop now", (int)sig);
        event_base_loopbreak(rx->base);
        return;
    }
    log_info("main", "signal %d: stopping", (int)sig);
    rx->stop_fn(rx->stop_arg);
}

struct reactor *reactor_new(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, (void (*)(void))evthread_use_pthreads);
    signal(SIGPIPE, SIG_IGN);

    struct reactor *rx = calloc(1, sizeof(*rx));
    if (!rx) return NULL;
    struct event_config *ec = event_config_new();
    if (!ec) goto err_free;
    /* Timers use libevent's monotonic clock either way; without
     * EVENT_BASE_FLAG_PRECISE_TIMER it rides on epoll_wait's millisecond
     * timeout instead of a timerfd, saving a timerfd_settime syscall each
     * time the earliest deadline moves (i.e. per request).  Our timeouts
     * are milliseconds to seconds, so precision is not needed. */
    rx->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!rx->base) goto err_free;
    pthread_mutex_init(&rx->lock, NULL);
    rx->done_ev = event_new(rx->base, -1, 0, on_done, rx);
    rx->defer_ev = event_new(rx->base, -1, 0, on_deferred, rx);
    rx->sig_term = evsignal_new(rx->base, SIGTERM, on_signal, rx);
    rx->sig_int = evsignal_new(rx->base, SIGINT, on_signal, rx);
    rx->sig_hup = evsignal_new(rx->base, SIGHUP, on_signal, rx);
    if (!rx->done_ev || !rx->defer_ev || !rx->sig_term || !rx->sig_int || !rx->sig_hup)
        goto err_events;
    /* The completion event is activated by hand and must stay "pending" so
     * the loop does not exit while workers still owe completions. */
    event_add(rx->sig_term, NULL);
    event_add(rx->sig_int, NULL);
    event_add(rx->sig_hup, NULL);
    return rx;

err_events:
    reactor_free(rx);
    return NULL;
err_free:
    free(rx);
    return NULL;
}

void reactor_free(struct reactor *rx)
{
    if (!rx) return;
    /* Run what is still owed so no owner leaks its request. */
    if (rx->done_ev) on_done(-1, 0, rx);
    if (rx->defer_ev) on_deferred(-1, 0, rx);
    struct event *evs[] = {rx->done_ev, rx->defer_ev, rx->sig_term, rx->sig_int, rx->sig_hup};
    for (unsigned i = 0; i < BD_ARRAY_SIZE(evs); i++)
        if (evs[i]) event_free(evs[i]);
    if (rx->base) event_base_free(rx->base);
    pthread_mutex_destroy(&rx->lock);
    free(rx);
}

struct event_base *reactor_base(struct reactor *rx)
{
    return rx->base;
}

int reactor_run(struct reactor *rx)
{
    return event_base_loop(rx->base, 0) < 0 ? -EIO : 0;
}

void reactor_break(struct reactor *rx)
{
    event_base_loopbreak(rx->base);
}

void reactor_on_stop(struct reactor *rx, void (*fn)(void *arg), void *arg)
{
    rx->stop_fn = fn;
    rx->stop_arg = arg;
}

void reactor_complete(struct reactor *rx, struct reactor_work *w)
{
    w->next = NULL;
    pthread_mutex_lock(&rx->lock);
    if (rx->done_tail) rx->done_tail->next = w;
    else rx->done_head = w;
    rx->done_tail = w;
    pthread_mutex_unlock(&rx->lock);
    event_active(rx->done_ev, 0, 0);
}

int reactor_defer(struct reactor *rx, void (*fn)(void *arg), void *arg)
{
    struct deferred *d = malloc(sizeof(*d));
    if (!d) return -ENOMEM;
    d->fn = fn;
    d->arg = arg;
    d->next = NULL;
    if (rx->defer_tail) rx->defer_tail->next = d;
    else rx->defer_head = d;
    rx->defer_tail = d;
    event_active(rx->defer_ev, 0, 0);
    return 0;
}
