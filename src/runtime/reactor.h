/* reactor.h: the one libevent event loop of a blockd process, and the
 * bridge between it and worker threads.
 *
 * Every role instance in the process runs its callbacks on this reactor's
 * thread (DESIGN.md §1).  Blocking work (fdatasync, large preads, LMDB write
 * transactions) runs on task queues (taskq.h) whose completions come back
 * here through reactor_complete().
 *
 * Signals: SIGTERM and SIGINT call the stop handler once (a second signal
 * exits the loop at once); SIGHUP reopens the log.  SIGPIPE is ignored so a
 * peer closing a socket is an EPIPE, not a death. */
#ifndef BD_REACTOR_H
#define BD_REACTOR_H

#include <event2/event.h>
#include <stdint.h>

struct reactor;

/* Work handed to another thread and completed on the reactor.  The owner
 * embeds it in its own request and recovers that with bd_container_of.
 * DONE runs exactly once, on the reactor thread. */
struct reactor_work {
    void (*done)(struct reactor_work *w); /* called on the reactor thread */
    int status;                           /* set by the worker, read by done */
    struct reactor_work *next;            /* queue link; owned by whoever queues */
};

/* Returns owned (reactor_free), or NULL on failure. */
struct reactor *reactor_new(void);
void reactor_free(struct reactor *rx);
struct event_base *reactor_base(struct reactor *rx);

/* Run until reactor_break() or no events remain.  0 or -EIO. */
int reactor_run(struct reactor *rx);
/* Leave reactor_run() after the current callback.  Any thread. */
void reactor_break(struct reactor *rx);

/* Set the function called (on the reactor) at the first SIGTERM/SIGINT.
 * It should stop listeners, finish or fail in-flight work, flush state and
 * then call reactor_break(). */
void reactor_on_stop(struct reactor *rx, void (*fn)(void *arg), void *arg);

/* Queue W so that W->done runs on the reactor thread soon.  Safe from any
 * thread; this is how task queues hand results back. */
void reactor_complete(struct reactor *rx, struct reactor_work *w);

/* Run FN(ARG) on the reactor after the current callback returns: the way to
 * free an object whose callback is still on the stack (STYLE.md §6).
 * Reactor thread only.  0 or -ENOMEM. */
int reactor_defer(struct reactor *rx, void (*fn)(void *arg), void *arg);

#endif
