/* taskq.c: see taskq.h.  A mutex, a condition variable and a list. */
#include "runtime/taskq.h"
#include "base/bd.h"
#include "base/util.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct taskq {
    struct reactor *rx;
    pthread_t thread;
    pthread_mutex_t lock;  /* protects everything below */
    pthread_cond_t cond;   /* signalled on submit and on stop */
    struct taskq_job *head, *tail;
    unsigned depth;        /* queued + running */
    bool stopping;
    char name[16];
};

static void *taskq_main(void *arg)
{
    struct taskq *q = arg;
    pthread_setname_np(pthread_self(), q->name);
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (!q->head && !q->stopping) pthread_cond_wait(&q->cond, &q->lock);
        if (!q->head) break; /* stopping and drained */
        struct taskq_job *job = q->head;
        q->head = job->next;
        if (!q->head) q->tail = NULL;
        pthread_mutex_unlock(&q->lock);
        job->run(job);
        pthread_mutex_lock(&q->lock);
        q->depth--;
        reactor_complete(q->rx, &job->work);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

struct taskq *taskq_new(struct reactor *rx, const char *name)
{
    struct taskq *q = calloc(1, sizeof(*q));
    if (!q) return NULL;
    q->rx = rx;
    util_strlcpy(q->name, name, sizeof(q->name));
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    if (pthread_create(&q->thread, NULL, taskq_main, q) != 0) {
        pthread_cond_destroy(&q->cond);
        pthread_mutex_destroy(&q->lock);
        free(q);
        return NULL;
    }
    return q;
}

void taskq_submit(struct taskq *q, struct taskq_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->tail) q->tail->next = job;
    else q->head = job;
    q->tail = job;
    q->depth++;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

unsigned taskq_depth(struct taskq *q)
{
    pthread_mutex_lock(&q->lock);
    unsigned d = q->depth;
    pthread_mutex_unlock(&q->lock);
    return d;
}

void taskq_free(struct taskq *q)
{
    if (!q) return;
    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    pthread_join(q->thread, NULL);
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
    free(q);
}
