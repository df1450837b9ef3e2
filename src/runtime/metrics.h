/* metrics.h: the process-wide metrics registry, rendered as Prometheus
 * text (exposition format 0.0.4) by every role's /metrics endpoint.
 *
 * Counters and histograms are registered once and updated lock-free from
 * any thread (relaxed atomics: a scrape may see a histogram's count one
 * observation ahead of its sum, which Prometheus tolerates).  Gauges are
 * callbacks evaluated on the reactor at scrape time, so they read live
 * state without a copy; they belong to an owner and are removed with it.
 *
 * Series that come and go (per volume, issue 13) are registered with an
 * owner too: a counter or histogram from metrics_*_owned, or a counter
 * whose value a callback reads (metrics_counter_fn), all removed by
 * metrics_remove_owner(owner), after which their pointers are invalid.
 * Such a series is updated on the reactor thread only, so removing it
 * (also on the reactor) never races an update.
 *
 * Names follow Prometheus conventions: blockd_<what>_<unit>, counters end
 * in _total.  LABELS is the inside of the braces, e.g. "role=\"proxy.1\",
 * op=\"write\"", or "" for none.  Registering the same name and labels
 * twice returns the same metric.  Secrets never become labels. */
#ifndef BD_METRICS_H
#define BD_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

struct evbuffer;

struct metrics_counter {
    _Atomic uint64_t value;
};

/* Latency buckets in microseconds; the last is +Inf. */
#define METRICS_HIST_BUCKETS 16
struct metrics_hist {
    _Atomic uint64_t bucket[METRICS_HIST_BUCKETS];
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
};

/* Returned pointers live until metrics_reset().  NULL only on ENOMEM;
 * update functions accept NULL and do nothing, so callers need not check. */
struct metrics_counter *metrics_counter(const char *name, const char *help, const char *labels);
struct metrics_hist *metrics_hist(const char *name, const char *help, const char *labels);
/* A gauge computed by FN(ARG) at scrape time.  OWNER groups gauges for
 * metrics_remove_owner().  0 or -ENOMEM. */
int metrics_gauge(const char *name, const char *help, const char *labels,
                  double (*fn)(void *arg), void *arg, const void *owner);
/* A counter series whose value FN(ARG) gives at scrape time (it must never
 * decrease), removed with OWNER.  0 or -ENOMEM. */
int metrics_counter_fn(const char *name, const char *help, const char *labels,
                       double (*fn)(void *arg), void *arg, const void *owner);
/* A counter or histogram removed with OWNER (see above).  NULL on ENOMEM. */
struct metrics_counter *metrics_counter_owned(const char *name, const char *help,
                                              const char *labels, const void *owner);
struct metrics_hist *metrics_hist_owned(const char *name, const char *help, const char *labels,
                                        const void *owner);
/* Remove every series OWNER registered (gauges, and the owned series above). */
void metrics_remove_owner(const void *owner);
/* The upper bound in microseconds of histogram bucket I (< METRICS_HIST_BUCKETS
 * - 1); the last bucket is +Inf. */
uint64_t metrics_hist_bucket_us(unsigned i);

static inline void metric_add(struct metrics_counter *c, uint64_t n)
{
    if (c) atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed);
}
static inline void metric_inc(struct metrics_counter *c)
{
    metric_add(c, 1);
}
void metrics_observe_us(struct metrics_hist *h, uint64_t us);

/* Append the whole registry in Prometheus text format to OUT. */
void metrics_render(struct evbuffer *out);
/* Forget everything (tests, and process exit under leak checkers). */
void metrics_reset(void);

#endif
