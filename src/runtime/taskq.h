/* taskq.h: a FIFO of jobs run by one dedicated thread, with completions
 * delivered on the reactor.
 *
 * One thread per queue keeps the order of submission: an fdatasync job
 * queued after a write job runs after it.  Modules that want group commit
 * (blob store, journal, raft log) keep their own pending list and submit one
 * flush job at a time; everything that arrives while a flush runs rides on
 * the next one, so one fsync serves many requests.
 *
 * Lifetime: the submitter owns the job until its done callback has run.
 * taskq_free() waits for the queue to drain and delivers every completion
 * first; it must not be called from the queue's own thread. */
#ifndef BD_TASKQ_H
#define BD_TASKQ_H

#include "runtime/reactor.h"

struct taskq;

struct taskq_job {
    struct reactor_work work;            /* work.done runs on the reactor */
    void (*run)(struct taskq_job *job);  /* runs on the queue's thread */
    struct taskq_job *next;              /* private to taskq */
};

/* Start a queue named NAME (for thread names and logs).  Returns owned
 * (taskq_free), or NULL. */
struct taskq *taskq_new(struct reactor *rx, const char *name);
/* Queue JOB: JOB->run on the queue thread, then JOB->work.done on the
 * reactor.  Never fails; never blocks. */
void taskq_submit(struct taskq *q, struct taskq_job *job);
/* Jobs queued or running right now (for back-pressure and metrics). */
unsigned taskq_depth(struct taskq *q);
void taskq_free(struct taskq *q);

#endif
