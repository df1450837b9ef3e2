/* metrics.h: the process-wide metrics registry, rendered as Prometheus
 * text (exposition format 0.0.4) by every role's /metrics endpoint.
 *
 * Counters and histograms are registered once and updated lock-free from
 * any thread (relaxed atomics: a scrape may see a histogram's count one
 * observation ahead of its sum, which Prometheus tolerates).  Gauges are
 * callbacks evaluated on the reactor at scrape time, so they read live
 * state without a copy; they belong to an owner and are removed with it.
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

struct metric_counter {
    _Atomic uint64_t value;
};

/* Latency buckets in microseconds; the last is +Inf. */
#define METRIC_HIST_BUCKETS 16
struct metric_hist {
    _Atomic uint64_t bucket[METRIC_HIST_BUCKETS];
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
};

/* Returned pointers live until metrics_reset().  NULL only on ENOMEM;
 * update functions accept NULL and do nothing, so callers need not check. */
struct metric_counter *metrics_counter(const char *name, const char *help, const char *labels);
struct metric_hist *metrics_hist(const char *name, const char *help, const char *labels);
/* A gauge computed by FN(ARG) at scrape time.  OWNER groups gauges for
 * metrics_remove_owner().  0 or -ENOMEM. */
int metrics_gauge(const char *name, const char *help, const char *labels,
                  double (*fn)(void *arg), void *arg, const void *owner);
void metrics_remove_owner(const void *owner);

static inline void metric_add(struct metric_counter *c, uint64_t n)
{
    if (c) atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed);
}
static inline void metric_inc(struct metric_counter *c)
{
    metric_add(c, 1);
}
void metric_observe_us(struct metric_hist *h, uint64_t us);

/* Append the whole registry in Prometheus text format to OUT. */
void metrics_render(struct evbuffer *out);
/* Forget everything (tests, and process exit under leak checkers). */
void metrics_reset(void);

#endif
