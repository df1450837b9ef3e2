/* metrics.c: see metrics.h.
 *
 * The registry is a list of families (one per name, holding help and type)
 * each with a list of series (one per label set).  Registration takes a
 * mutex; updates never do.  Rendering takes the mutex so registration on
 * another thread cannot tear the lists, and runs on the reactor, which is
 * also where gauge callbacks are allowed to read role state. */
#include "runtime/metrics.h"
#include "base/bd.h"

#include <event2/buffer.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum metric_type { MT_COUNTER, MT_GAUGE, MT_HIST };

static const uint64_t bucket_us[METRICS_HIST_BUCKETS - 1] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 5000000};

struct series {
    char *labels;
    struct metrics_counter counter;
    struct metrics_hist hist;
    double (*fn)(void *arg);
    void *arg;
    const void *owner;
    struct series *next;
};

struct family {
    char *name;
    char *help;
    enum metric_type type;
    struct series *series;
    struct family *next;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER; /* protects families */
static struct family *families;

static struct family *family_get(const char *name, const char *help, enum metric_type type)
{
    struct family **pp = &families;
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->name, name) == 0) return (*pp)->type == type ? *pp : NULL;
    struct family *f = calloc(1, sizeof(*f));
    if (!f) return NULL;
    f->name = strdup(name);
    f->help = strdup(help);
    f->type = type;
    if (!f->name || !f->help) {
        free(f->name);
        free(f->help);
        free(f);
        return NULL;
    }
    *pp = f; /* append: families render in registration order */
    return f;
}

static struct series *series_get(struct family *f, const char *labels, bool reuse,
                                 const void *owner)
{
    struct series **pp = &f->series;
    for (; *pp; pp = &(*pp)->next)
        if (reuse && (*pp)->owner == owner && strcmp((*pp)->labels, labels) == 0) return *pp;
    struct series *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->labels = strdup(labels);
    if (!s->labels) {
        free(s);
        return NULL;
    }
    s->owner = owner;
    *pp = s;
    return s;
}

struct metrics_counter *metrics_counter_owned(const char *name, const char *help,
                                              const char *labels, const void *owner)
{
    pthread_mutex_lock(&reg_lock);
    struct family *f = family_get(name, help, MT_COUNTER);
    struct series *s = f ? series_get(f, labels, true, owner) : NULL;
    pthread_mutex_unlock(&reg_lock);
    return s ? &s->counter : NULL;
}

struct metrics_counter *metrics_counter(const char *name, const char *help, const char *labels)
{
    return metrics_counter_owned(name, help, labels, NULL);
}

struct metrics_hist *metrics_hist_owned(const char *name, const char *help, const char *labels,
                                        const void *owner)
{
    pthread_mutex_lock(&reg_lock);
    struct family *f = family_get(name, help, MT_HIST);
    struct series *s = f ? series_get(f, labels, true, owner) : NULL;
    pthread_mutex_unlock(&reg_lock);
    return s ? &s->hist : NULL;
}

struct metrics_hist *metrics_hist(const char *name, const char *help, const char *labels)
{
    return metrics_hist_owned(name, help, labels, NULL);
}

/* A series whose value FN gives, in a family of TYPE. */
static int fn_series(const char *name, const char *help, enum metric_type type,
                     const char *labels, double (*fn)(void *arg), void *arg, const void *owner)
{
    pthread_mutex_lock(&reg_lock);
    struct family *f = family_get(name, help, type);
    struct series *s = f ? series_get(f, labels, false, owner) : NULL;
    if (s) {
        s->fn = fn;
        s->arg = arg;
    }
    pthread_mutex_unlock(&reg_lock);
    return s ? 0 : -ENOMEM;
}

int metrics_gauge(const char *name, const char *help, const char *labels,
                  double (*fn)(void *arg), void *arg, const void *owner)
{
    return fn_series(name, help, MT_GAUGE, labels, fn, arg, owner);
}

int metrics_counter_fn(const char *name, const char *help, const char *labels,
                       double (*fn)(void *arg), void *arg, const void *owner)
{
    return fn_series(name, help, MT_COUNTER, labels, fn, arg, owner);
}

uint64_t metrics_hist_bucket_us(unsigned i)
{
    return i < METRICS_HIST_BUCKETS - 1 ? bucket_us[i] : UINT64_MAX;
}

void metrics_remove_owner(const void *owner)
{
    if (!owner) return; /* the unowned series live until metrics_reset */
    pthread_mutex_lock(&reg_lock);
    for (struct family *f = families; f; f = f->next) {
        struct series **pp = &f->series;
        while (*pp) {
            struct series *s = *pp;
            if (s->owner == owner) {
                *pp = s->next;
                free(s->labels);
                free(s);
            } else {
                pp = &s->next;
            }
        }
    }
    pthread_mutex_unlock(&reg_lock);
}

void metrics_observe_us(struct metrics_hist *h, uint64_t us)
{
    if (!h) return;
    unsigned i = 0;
    while (i < METRICS_HIST_BUCKETS - 1 && us > bucket_us[i]) i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

static void render_labels(struct evbuffer *out, const char *labels, const char *extra)
{
    if (!*labels && !extra) return;
    evbuffer_add_printf(out, "{%s%s%s}", labels, *labels && extra ? "," : "", extra ? extra : "");
}

void metrics_render(struct evbuffer *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    pthread_mutex_lock(&reg_lock);
    for (struct family *f = families; f; f = f->next) {
        if (!f->series) continue;
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                            type_names[f->type]);
        for (struct series *s = f->series; s; s = s->next) {
            if (f->type == MT_COUNTER && s->fn) {
                evbuffer_add_printf(out, "%s", f->name);
                render_labels(out, s->labels, NULL);
                evbuffer_add_printf(out, " %.17g\n", s->fn(s->arg));
            } else if (f->type == MT_COUNTER) {
                evbuffer_add_printf(out, "%s", f->name);
                render_labels(out, s->labels, NULL);
                evbuffer_add_printf(out, " %llu\n",
                                    (unsigned long long)atomic_load(&s->counter.value));
            } else if (f->type == MT_GAUGE) {
                evbuffer_add_printf(out, "%s", f->name);
                render_labels(out, s->labels, NULL);
                evbuffer_add_printf(out, " %.17g\n", s->fn(s->arg));
            } else {
                uint64_t cum = 0;
                for (unsigned i = 0; i < METRICS_HIST_BUCKETS; i++) {
                    cum += atomic_load(&s->hist.bucket[i]);
                    char le[48];
                    if (i < METRICS_HIST_BUCKETS - 1)
                        snprintf(le, sizeof(le), "le=\"%g\"", (double)bucket_us[i] / 1e6);
                    else
                        snprintf(le, sizeof(le), "le=\"+Inf\"");
                    evbuffer_add_printf(out, "%s_bucket", f->name);
                    render_labels(out, s->labels, le);
                    evbuffer_add_printf(out, " %llu\n", (unsigned long long)cum);
                }
                evbuffer_add_printf(out, "%s_sum", f->name);
                render_labels(out, s->labels, NULL);
                evbuffer_add_printf(out, " %.6f\n", (double)atomic_load(&s->hist.sum_us) / 1e6);
                evbuffer_add_printf(out, "%s_count", f->name);
                render_labels(out, s->labels, NULL);
                evbuffer_add_printf(out, " %llu\n", (unsigned long long)atomic_load(&s->hist.count));
            }
        }
    }
    pthread_mutex_unlock(&reg_lock);
}

void metrics_reset(void)
{
    pthread_mutex_lock(&reg_lock);
    while (families) {
        struct family *f = families;
        families = f->next;
        while (f->series) {
            struct series *s = f->series;
            f->series = s->next;
            free(s->labels);
            free(s);
        }
        free(f->name);
        free(f->help);
        free(f);
    }
    pthread_mutex_unlock(&reg_lock);
}
