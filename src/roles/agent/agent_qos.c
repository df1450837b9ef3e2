/* agent_qos.c: per-volume QoS in the agent (see agent_qos.h).
 *
 * The limiter.  Each limit k is an average bucket: credit refills at the
 * limit's rate, up to a cap, and an I/O may go while every bucket it
 * touches has credit >= 0; it then pays its whole cost (ios or bytes),
 * possibly into debt.  Debt is what makes it exact: at a steady queue the
 * n-th I/O goes at n / rate whatever the timer's lateness, and an I/O
 * larger than a bucket still goes, the next ones waiting out its debt.
 * The cap is AGENT_QOS_SLACK_MS of the rate (at least one I/O), so timer
 * lateness on a loaded host does not lose rate, plus, with a burst P above
 * the limit L, (P - L) * burst_seconds: a volume that stayed quiet runs at
 * P for burst_seconds before it is held to L.  With a burst a second,
 * peak bucket at rate P (cap: the slack) keeps it at P meanwhile.  A read
 * touches read_iops, iops, read_bps and bps; a write the write ones; ZERO
 * and TRIM only the I/O limits, as one I/O; FLUSH and BLOCK_STATUS none.
 * Credit is a double: rates span 1 to 2^40 per second and a fixed-point
 * nanosecond scale would either overflow or round the small ones away.
 *
 * Waiting.  Two FIFOs per volume (reads; writes with ZERO and TRIM).  The
 * dispatcher (agent_qos_vol_run) lets go, repeatedly, the oldest head that
 * may go now, so a direction held by its own limit never holds back the
 * other, and on a shared limit (iops, bps) the older request always goes
 * first.  A request that finds others waiting queues behind them even if
 * credit would let it through, and the volume's timer is made to fire at
 * once: no newcomer takes the turn of a waiter whose timer has not fired
 * yet.  The timer exists only once a volume has had to make a request
 * wait, and is armed only while one does.
 *
 * Rejected: a single FIFO for both directions (a read_iops limit would
 * then throttle writes queued behind reads); failing requests over the
 * limit (clients retry and the limit stops meaning a rate); per-connection
 * buckets (multi-conn clients would multiply their limit).
 *
 * The registry keeps one entry per volume name, shared by every registry
 * volume of that name (an orphan journal and its successor), with the
 * Prometheus series of that name.  The VOL_QOS poll asks for the limits of
 * every bound entry still in use and reports its figures; the tick also
 * rotates the latency windows and sweeps entries freed keep_ms ago. */
#include "roles/agent/agent_qos.h"
#include "base/bd.h"
#include "base/util.h"
#include "net/wire.h"
#include "roles/agent/agent_client.h"
#include "roles/agent/agent_vol.h"
#include "runtime/log.h"
#include "runtime/metrics.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW_MS 5000u          /* latency percentiles: over the last one or two windows */
#define CREDIT_EPS 1e-6          /* credit this close below zero counts as zero (rounding) */
#define POLL_DEADLINE_MS 2000u   /* a VOL_QOS not answered by then is dropped; the next poll asks */
#define HB METRICS_HIST_BUCKETS
#define LABELS_MAX 512           /* role tag, volume name, one more label */

static const char *const dir_names[2] = {"read", "write"};

/* The limits a request of direction D touches: its own, then the shared. */
static const uint8_t kinds_of[2][4] = {
    {QOS_READ_IOPS, QOS_IOPS, QOS_READ_BPS, QOS_BPS},
    {QOS_WRITE_IOPS, QOS_IOPS, QOS_WRITE_BPS, QOS_BPS},
};

/* ---- the limiter ------------------------------------------------------------ */

void agent_qos_lim_init(struct agent_qos_lim *l)
{
    memset(l, 0, sizeof(*l));
    qos_effective(NULL, NULL, &l->eff);
}

static void refill(struct agent_qos_bucket *b, double dt_s)
{
    if (b->rate == 0) return;
    b->credit += b->rate * dt_s;
    if (b->credit > b->cap) b->credit = b->cap;
}

/* Bring every bucket's credit up to NOW_NS. */
static void lim_advance(struct agent_qos_lim *l, uint64_t now_ns)
{
    if (now_ns <= l->t_ns) return;
    double dt = (double)(now_ns - l->t_ns) / 1e9;
    l->t_ns = now_ns;
    if (!l->limited) return;
    for (int k = 0; k < QOS_N_KINDS; k++) {
        refill(&l->avg[k], dt);
        refill(&l->peak[k], dt);
    }
}

/* A new bucket of RATE and CAP replacing OLD: credit carried over when OLD
 * counted, else a full bucket. */
static void bucket_set(struct agent_qos_bucket *b, double rate, double cap)
{
    double credit = b->rate ? BD_MIN(b->credit, cap) : cap;
    *b = (struct agent_qos_bucket){.rate = rate, .cap = rate ? cap : 0,
                                   .credit = rate ? credit : 0};
}

void agent_qos_lim_set(struct agent_qos_lim *l, const struct qos_limits *eff, uint64_t now_ns)
{
    lim_advance(l, now_ns);
    l->t_ns = BD_MAX(l->t_ns, now_ns);
    l->eff = *eff;
    l->limited = qos_limited(eff);
    for (int k = 0; k < QOS_N_KINDS; k++) {
        double lim = (double)eff->limit[k], burst = (double)eff->burst[k];
        double floor = qos_kind_bytes((enum qos_kind)k) ? 0 : 1; /* one whole I/O */
        double slack = BD_MAX(lim * AGENT_QOS_SLACK_MS / 1000.0, floor);
        if (!lim) burst = 0;
        double saved = burst > lim ? (burst - lim) * eff->burst_seconds : 0;
        bucket_set(&l->avg[k], lim, slack + saved);
        bucket_set(&l->peak[k], burst > lim ? burst : 0,
                   BD_MAX(burst * AGENT_QOS_SLACK_MS / 1000.0, floor));
    }
}

void agent_qos_lim_cost(const struct agent_qos_lim *l, enum agent_qos_op op, uint64_t len,
                        struct agent_qos_cost *c)
{
    memset(c, 0, sizeof(*c));
    switch (op) {
    case AGENT_QOS_READ:
    case AGENT_QOS_WRITE: {
        uint64_t unit = l->eff.io_size ? l->eff.io_size : QOS_DEFAULT_IO_SIZE;
        c->dir = op == AGENT_QOS_WRITE;
        c->ios = len <= unit ? 1 : (double)((len + unit - 1) / unit);
        c->bytes = (double)len;
        return;
    }
    case AGENT_QOS_ZERO:
    case AGENT_QOS_TRIM:
        c->dir = 1;
        c->ios = 1;
        return;
    default:
        c->free = true;
        return;
    }
}

/* Seconds until bucket B has its credit back at zero (0: it has). */
static double bucket_wait(const struct agent_qos_bucket *b)
{
    if (b->rate == 0 || b->credit >= -CREDIT_EPS) return 0;
    return -b->credit / b->rate;
}

uint64_t agent_qos_lim_wait(struct agent_qos_lim *l, const struct agent_qos_cost *c,
                            uint64_t now_ns)
{
    if (c->free || !l->limited) return 0;
    lim_advance(l, now_ns);
    double w = 0;
    for (int i = 0; i < 4; i++) {
        int k = kinds_of[c->dir][i];
        if ((qos_kind_bytes((enum qos_kind)k) ? c->bytes : c->ios) == 0) continue;
        w = BD_MAX(w, BD_MAX(bucket_wait(&l->avg[k]), bucket_wait(&l->peak[k])));
    }
    return w > 0 ? (uint64_t)ceil(w * 1e9) : 0;
}

void agent_qos_lim_take(struct agent_qos_lim *l, const struct agent_qos_cost *c)
{
    if (c->free || !l->limited) return;
    for (int i = 0; i < 4; i++) {
        int k = kinds_of[c->dir][i];
        double amount = qos_kind_bytes((enum qos_kind)k) ? c->bytes : c->ios;
        if (l->avg[k].rate) l->avg[k].credit -= amount;
        if (l->peak[k].rate) l->peak[k].credit -= amount;
    }
}

double agent_qos_lim_credit(struct agent_qos_lim *l, enum qos_kind k, uint64_t now_ns)
{
    lim_advance(l, now_ns);
    return l->avg[k].rate ? l->avg[k].credit : 0;
}

/* ---- state ----------------------------------------------------------------------- */

struct agent_qos_gauge {
    struct agent_qos_vol *qv;
    uint8_t kind;
};

struct agent_qos_vol {
    struct agent_qos *qs;
    struct agent_qos_vol *next;          /* qs->vols */
    char name[AGENT_VOL_NAME_MAX + 1];
    uint64_t vol_id;                     /* whose limits it follows; 0 until bound */
    unsigned refs;                       /* registry volumes using it */
    uint64_t freed_ms;                   /* when refs reached 0 */
    struct agent_qos_lim lim;
    struct agent_qos_wait *head[2], *tail[2]; /* waiting, by direction */
    unsigned waiting;
    uint64_t seq;
    uint64_t wait_since_ns;              /* while some wait: when the first began to */
    bool in_run;                         /* agent_qos_vol_run is on the stack */
    struct event *timer;                 /* made at the first wait; armed while some wait */
    /* figures */
    uint64_t ios[2], bytes[2];           /* by direction */
    uint64_t delayed;                    /* requests that had to wait */
    uint64_t throttled_ns;               /* time with some waiting, up to wait_since_ns */
    uint32_t win[2][2][HB];              /* latency by window, direction, bucket */
    unsigned win_cur;                    /* the window being filled */
    uint64_t win_start_ms;
    struct metrics_hist *m_lat[2];
    bool series;                         /* has its Prometheus series */
    struct agent_qos_gauge gauge[QOS_N_KINDS]; /* the args of its per-limit gauges */
};

struct agent_qos {
    struct reactor *rx;
    struct agent_client *cl;
    char tag[32];
    char agent_id[AGENT_VOL_NAME_MAX + 1];
    uint64_t keep_ms;
    uint64_t (*now_ns)(void);
    struct agent_qos_vol *vols;
    unsigned n_series;                   /* entries with series */
    struct event *tick;                  /* every AGENT_QOS_POLL_MS */
    struct event *poll_now;              /* a bind asks at once */
    bool stopping;
    /* the VOL_QOS in flight (one at a time) */
    struct agent_client_req call;
    bool call_busy, again;
    uint8_t *fields;                     /* its encoded request */
    size_t fields_cap;
    uint64_t cursor;                     /* the poll resumes after this vol id */
    bool warned_series;
};

static uint64_t clock_ns(struct agent_qos *qs)
{
    return qs->now_ns ? qs->now_ns() : util_mono_ns();
}

/* ---- waiting ------------------------------------------------------------------------- */

static void on_timer(evutil_socket_t fd, short what, void *arg);

/* Fire QV's timer at AT_NS (it exists whenever something waits, with a
 * reactor; without one the caller drives agent_qos_vol_run). */
static void arm(struct agent_qos_vol *qv, uint64_t at_ns, uint64_t now_ns)
{
    if (!qv->timer) return;
    uint64_t d = at_ns > now_ns ? at_ns - now_ns : 0;
    struct timeval tv = {(time_t)(d / 1000000000u), (suseconds_t)((d % 1000000000u) / 1000)};
    evtimer_add(qv->timer, &tv);
}

static void pop(struct agent_qos_vol *qv, int d)
{
    struct agent_qos_wait *w = qv->head[d];
    qv->head[d] = w->next;
    if (!qv->head[d]) qv->tail[d] = NULL;
    w->next = NULL;
    qv->waiting--;
}

uint64_t agent_qos_vol_run(struct agent_qos_vol *qv, uint64_t now_ns)
{
    if (!qv->waiting) return 0;
    qv->in_run = true;
    uint64_t next = 0;
    while (qv->waiting) {
        /* The heads, oldest first. */
        int order[2] = {0, 1};
        if (!qv->head[0] || (qv->head[1] && qv->head[1]->seq < qv->head[0]->seq)) {
            order[0] = 1;
            order[1] = 0;
        }
        bool went = false;
        uint64_t soonest = UINT64_MAX;
        for (int i = 0; i < 2 && !went; i++) {
            struct agent_qos_wait *w = qv->head[order[i]];
            if (!w) continue;
            uint64_t wait = qv->qs->stopping ? 0 : agent_qos_lim_wait(&qv->lim, &w->cost, now_ns);
            if (wait) {
                soonest = BD_MIN(soonest, wait);
                continue;
            }
            agent_qos_lim_take(&qv->lim, &w->cost);
            pop(qv, order[i]);
            went = true;
            w->go(w);
        }
        if (!went) {
            next = now_ns + soonest;
            break;
        }
    }
    if (!qv->waiting) qv->throttled_ns += now_ns - qv->wait_since_ns;
    qv->in_run = false;
    return next;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct agent_qos_vol *qv = arg;
    uint64_t now = clock_ns(qv->qs);
    uint64_t next = agent_qos_vol_run(qv, now);
    if (next) arm(qv, next, now);
}

bool agent_qos_admit(struct agent_qos_vol *qv, struct agent_qos_wait *w, enum agent_qos_op op,
                     uint64_t len)
{
    /* The hot path of an unlimited volume: one test. */
    if (!qv || (!qv->lim.limited && !qv->waiting) || op >= AGENT_QOS_FLUSH) return true;
    struct agent_qos_cost c;
    agent_qos_lim_cost(&qv->lim, op, len, &c);
    uint64_t now = clock_ns(qv->qs);
    if (!qv->waiting && !qv->in_run && agent_qos_lim_wait(&qv->lim, &c, now) == 0) {
        agent_qos_lim_take(&qv->lim, &c);
        return true;
    }
    /* Behind whoever waits: queue, and let the dispatcher decide.  Without
     * a timer (no memory for one) the limit cannot be kept: let it go. */
    if (qv->qs->rx && !qv->timer &&
        !(qv->timer = evtimer_new(reactor_base(qv->qs->rx), on_timer, qv))) {
        log_error(qv->qs->tag, "vol %s: no memory for the QoS timer: its limit is not kept",
                  qv->name);
        return true;
    }
    w->cost = c;
    w->seq = ++qv->seq;
    w->t0_ns = now;
    w->next = NULL;
    if (qv->tail[c.dir]) qv->tail[c.dir]->next = w;
    else qv->head[c.dir] = w;
    qv->tail[c.dir] = w;
    if (!qv->waiting++) qv->wait_since_ns = now;
    qv->delayed++;
    if (qv->in_run) return false; /* the running dispatcher sees it */
    if (qv->waiting > 1) {
        /* Others wait: the dispatcher runs right after this callback,
         * never from inside it. */
        if (qv->timer) event_active(qv->timer, EV_TIMEOUT, 0);
        return false;
    }
    arm(qv, now + agent_qos_lim_wait(&qv->lim, &c, now), now);
    return false;
}

/* The latency bucket of LAT_US (the Prometheus histogram's). */
static unsigned lat_bucket(uint64_t lat_us)
{
    unsigned i = 0;
    while (i < HB - 1 && lat_us > metrics_hist_bucket_us(i)) i++;
    return i;
}

void agent_qos_done(struct agent_qos_vol *qv, enum agent_qos_op op, uint64_t len,
                    uint64_t lat_us)
{
    if (!qv || op >= AGENT_QOS_FLUSH) return;
    int d = op != AGENT_QOS_READ;
    qv->ios[d]++;
    if (op == AGENT_QOS_READ || op == AGENT_QOS_WRITE) qv->bytes[d] += len;
    qv->win[qv->win_cur][d][lat_bucket(lat_us)]++;
    metrics_observe_us(qv->m_lat[d], lat_us);
}

uint64_t agent_qos_vol_ios(const struct agent_qos_vol *qv)
{
    return qv ? qv->ios[0] + qv->ios[1] : 0;
}

static void set_gauges(struct agent_qos_vol *qv);

void agent_qos_vol_set(struct agent_qos_vol *qv, const struct qos_limits *eff)
{
    if (qos_equal(eff, &qv->lim.eff)) return;
    uint64_t now = clock_ns(qv->qs);
    agent_qos_lim_set(&qv->lim, eff, now);
    log_info(qv->qs->tag, "vol %s: QoS limits now iops %llu/%llu/%llu, bps %llu/%llu/%llu "
             "(total/read/write; 0 none)", qv->name, (unsigned long long)eff->limit[QOS_IOPS],
             (unsigned long long)eff->limit[QOS_READ_IOPS],
             (unsigned long long)eff->limit[QOS_WRITE_IOPS],
             (unsigned long long)eff->limit[QOS_BPS], (unsigned long long)eff->limit[QOS_READ_BPS],
             (unsigned long long)eff->limit[QOS_WRITE_BPS]);
    set_gauges(qv);
    /* Looser limits may let waiters go now; tighter ones re-time them. */
    if (qv->waiting && !qv->in_run) {
        uint64_t next = agent_qos_vol_run(qv, now);
        if (next) arm(qv, next, now);
    }
}

struct agent_qos_lim *agent_qos_vol_lim(struct agent_qos_vol *qv)
{
    return &qv->lim;
}

unsigned agent_qos_vol_waiting(const struct agent_qos_vol *qv)
{
    return qv->waiting;
}

/* ---- figures ----------------------------------------------------------------------------- */

static double throttled_s(const struct agent_qos_vol *qv)
{
    uint64_t ns = qv->throttled_ns;
    if (qv->waiting) ns += clock_ns(qv->qs) - qv->wait_since_ns;
    return (double)ns / 1e9;
}

/* Percentile P (0..1) of direction D's latency over the last windows, as
 * the bucket's upper bound in microseconds; 0 without I/O. */
static uint32_t percentile(const struct agent_qos_vol *qv, int d, double p)
{
    uint64_t n[HB], total = 0;
    for (unsigned b = 0; b < HB; b++) {
        n[b] = (uint64_t)qv->win[0][d][b] + qv->win[1][d][b];
        total += n[b];
    }
    if (!total) return 0;
    uint64_t want = (uint64_t)ceil(p * (double)total), seen = 0;
    for (unsigned b = 0; b < HB; b++) {
        seen += n[b];
        if (seen >= want)
            return (uint32_t)BD_MIN(b < HB - 1 ? metrics_hist_bucket_us(b)
                                               : 2 * metrics_hist_bucket_us(HB - 2),
                                    (uint64_t)UINT32_MAX);
    }
    return 0;
}

static double g_ios_r(void *a) { return (double)((struct agent_qos_vol *)a)->ios[0]; }
static double g_ios_w(void *a) { return (double)((struct agent_qos_vol *)a)->ios[1]; }
static double g_bytes_r(void *a) { return (double)((struct agent_qos_vol *)a)->bytes[0]; }
static double g_bytes_w(void *a) { return (double)((struct agent_qos_vol *)a)->bytes[1]; }
static double g_delayed(void *a) { return (double)((struct agent_qos_vol *)a)->delayed; }
static double g_throttled(void *a) { return throttled_s(a); }
static double g_waiting(void *a) { return (double)((struct agent_qos_vol *)a)->waiting; }
static double g_credit(void *a)
{
    struct agent_qos_gauge *g = a;
    return agent_qos_lim_credit(&g->qv->lim, g->kind, clock_ns(g->qv->qs));
}
static double g_limit(void *a)
{
    struct agent_qos_gauge *g = a;
    return (double)g->qv->lim.eff.limit[g->kind];
}

static void labels_of(const struct agent_qos_vol *qv, char buf[LABELS_MAX], const char *extra)
{
    snprintf(buf, LABELS_MAX, "role=\"%s\",volume=\"%s\"%s%s", qv->qs->tag, qv->name,
             extra ? "," : "", extra ? extra : "");
}

/* The per-limit gauges follow the limits: one pair per limit set.  Their
 * owner is the gauge array, so they go without the volume's other series. */
static void set_gauges(struct agent_qos_vol *qv)
{
    if (!qv->series) return;
    metrics_remove_owner(qv->gauge);
    for (int k = 0; k < QOS_N_KINDS; k++) {
        if (!qv->lim.eff.limit[k]) continue;
        char l[LABELS_MAX], kind[48];
        snprintf(kind, sizeof(kind), "limit=\"%s\"", qos_field_name(QOS_SET_LIMIT(k)));
        labels_of(qv, l, kind);
        metrics_gauge("blockd_agent_volume_qos_credit",
                      "Credit in a QoS limit's bucket (I/Os or bytes; below 0: debt being "
                      "waited out)", l, g_credit, &qv->gauge[k], qv->gauge);
        metrics_gauge("blockd_agent_volume_qos_limit", "A QoS limit in force (per second)", l,
                      g_limit, &qv->gauge[k], qv->gauge);
    }
}

static void series_add(struct agent_qos_vol *qv)
{
    struct agent_qos *qs = qv->qs;
    if (qs->n_series >= AGENT_QOS_MAX_SERIES) {
        if (!qs->warned_series)
            log_warn(qs->tag, "more than %u volumes: volume %s and later ones get no "
                     "per-volume metrics (their figures are still in /v1/status)",
                     AGENT_QOS_MAX_SERIES, qv->name);
        qs->warned_series = true;
        return;
    }
    char l[LABELS_MAX];
    static const struct {
        const char *name, *help, *dir;
        double (*fn)(void *);
    } counters[] = {
        {"blockd_agent_volume_ios_total", "I/Os completed (writes include TRIM and "
         "WRITE_ZEROES)", "dir=\"read\"", g_ios_r},
        {"blockd_agent_volume_ios_total", "", "dir=\"write\"", g_ios_w},
        {"blockd_agent_volume_bytes_total", "READ and WRITE payload bytes", "dir=\"read\"",
         g_bytes_r},
        {"blockd_agent_volume_bytes_total", "", "dir=\"write\"", g_bytes_w},
        {"blockd_agent_volume_delayed_total", "I/Os that waited for the volume's QoS limits",
         NULL, g_delayed},
        {"blockd_agent_volume_throttled_seconds_total",
         "Time during which some I/O of the volume waited for its QoS limits", NULL,
         g_throttled},
    };
    int rc = 0;
    for (size_t i = 0; i < BD_ARRAY_SIZE(counters) && !rc; i++) {
        labels_of(qv, l, counters[i].dir);
        rc = metrics_counter_fn(counters[i].name, counters[i].help, l, counters[i].fn, qv, qv);
    }
    labels_of(qv, l, NULL);
    if (!rc)
        rc = metrics_gauge("blockd_agent_volume_waiting", "I/Os waiting for the QoS limits now",
                           l, g_waiting, qv, qv);
    for (int d = 0; d < 2 && !rc; d++) {
        char dir[24];
        snprintf(dir, sizeof(dir), "dir=\"%s\"", dir_names[d]);
        labels_of(qv, l, dir);
        qv->m_lat[d] = metrics_hist_owned("blockd_agent_volume_latency_seconds",
                                          "NBD request latency as the client sees it "
                                          "(QoS wait included)", l, qv);
        if (!qv->m_lat[d]) rc = -ENOMEM;
    }
    if (rc) {
        metrics_remove_owner(qv);
        qv->m_lat[0] = qv->m_lat[1] = NULL;
        return;
    }
    qv->series = true;
    qs->n_series++;
    set_gauges(qv);
}

void agent_qos_vol_json(struct agent_qos_vol *qv, struct cJSON *out)
{
    if (!qv) return;
    cJSON *o = cJSON_AddObjectToObject(out, "qos");
    if (!o) return;
    uint64_t now = clock_ns(qv->qs);
    cJSON_AddBoolToObject(o, "limited", qv->lim.limited);
    cJSON *l = cJSON_AddObjectToObject(o, "limits");
    for (uint32_t b = 1; l && b & QOS_SET_ALL; b <<= 1)
        cJSON_AddNumberToObject(l, qos_field_name(b), (double)qos_field_get(&qv->lim.eff, b));
    cJSON *ios = cJSON_AddObjectToObject(o, "ios"), *bytes = cJSON_AddObjectToObject(o, "bytes");
    cJSON *lat = cJSON_AddObjectToObject(o, "latency_us");
    for (int d = 0; d < 2; d++) {
        cJSON_AddNumberToObject(ios, dir_names[d], (double)qv->ios[d]);
        cJSON_AddNumberToObject(bytes, dir_names[d], (double)qv->bytes[d]);
        cJSON *p = cJSON_AddObjectToObject(lat, dir_names[d]);
        cJSON_AddNumberToObject(p, "p50", percentile(qv, d, 0.50));
        cJSON_AddNumberToObject(p, "p99", percentile(qv, d, 0.99));
    }
    cJSON_AddNumberToObject(o, "delayed", (double)qv->delayed);
    cJSON_AddNumberToObject(o, "throttled_seconds", throttled_s(qv));
    cJSON_AddNumberToObject(o, "waiting", qv->waiting);
    cJSON *cr = cJSON_AddObjectToObject(o, "credit");
    for (int k = 0; cr && k < QOS_N_KINDS; k++)
        if (qv->lim.eff.limit[k])
            cJSON_AddNumberToObject(cr, qos_field_name(QOS_SET_LIMIT(k)),
                                    agent_qos_lim_credit(&qv->lim, k, now));
}

/* ---- the registry -------------------------------------------------------------------------- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    agent_qos_tick(arg, util_mono_ms());
}

static void on_poll_now(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct agent_qos *qs = arg;
    qs->cursor = 0;
    agent_qos_tick(qs, util_mono_ms());
}

struct agent_qos *agent_qos_new(struct reactor *rx, const struct agent_qos_opts *o)
{
    struct agent_qos *qs = calloc(1, sizeof(*qs));
    if (!qs) return NULL;
    qs->rx = rx;
    qs->cl = o->cl;
    qs->keep_ms = o->keep_ms;
    qs->now_ns = o->now_ns;
    util_strlcpy(qs->tag, o->tag ? o->tag : "agent", sizeof(qs->tag));
    util_strlcpy(qs->agent_id, o->agent_id ? o->agent_id : "", sizeof(qs->agent_id));
    if (rx) {
        qs->tick = event_new(reactor_base(rx), -1, EV_PERSIST, on_tick, qs);
        qs->poll_now = event_new(reactor_base(rx), -1, 0, on_poll_now, qs);
        if (!qs->tick || !qs->poll_now) {
            agent_qos_free(qs);
            return NULL;
        }
        struct timeval tv = {0, AGENT_QOS_POLL_MS * 1000};
        event_add(qs->tick, &tv);
    }
    return qs;
}

void agent_qos_stop(struct agent_qos *qs)
{
    qs->stopping = true;
    for (struct agent_qos_vol *qv = qs->vols; qv; qv = qv->next)
        if (qv->waiting && !qv->in_run) agent_qos_vol_run(qv, clock_ns(qs));
}

static void vol_free(struct agent_qos_vol *qv)
{
    if (qv->series) {
        qv->qs->n_series--;
        metrics_remove_owner(qv->gauge);
        metrics_remove_owner(qv);
    }
    if (qv->timer) event_free(qv->timer);
    free(qv);
}

void agent_qos_free(struct agent_qos *qs)
{
    if (!qs) return;
    while (qs->vols) {
        struct agent_qos_vol *qv = qs->vols;
        qs->vols = qv->next;
        BD_NEVER(qv->waiting);
        vol_free(qv);
    }
    if (qs->tick) event_free(qs->tick);
    if (qs->poll_now) event_free(qs->poll_now);
    free(qs->fields);
    free(qs);
}

struct agent_qos_vol *agent_qos_vol_get(struct agent_qos *qs, const char *name)
{
    if (!qs) return NULL;
    for (struct agent_qos_vol *qv = qs->vols; qv; qv = qv->next)
        if (strcmp(qv->name, name) == 0) {
            qv->refs++;
            return qv;
        }
    struct agent_qos_vol *qv = calloc(1, sizeof(*qv));
    if (!qv) return NULL;
    qv->qs = qs;
    util_strlcpy(qv->name, name, sizeof(qv->name));
    agent_qos_lim_init(&qv->lim);
    for (int k = 0; k < QOS_N_KINDS; k++) qv->gauge[k] = (struct agent_qos_gauge){qv, (uint8_t)k};
    qv->refs = 1;
    qv->win_start_ms = util_mono_ms();
    qv->next = qs->vols;
    qs->vols = qv;
    series_add(qv);
    return qv;
}

void agent_qos_vol_put(struct agent_qos_vol *qv)
{
    if (!qv || BD_NEVER(qv->refs == 0)) return;
    if (--qv->refs == 0) qv->freed_ms = util_mono_ms();
}

void agent_qos_vol_bind(struct agent_qos_vol *qv, uint64_t vol_id)
{
    if (!qv || qv->vol_id == vol_id) return;
    qv->vol_id = vol_id;
    struct agent_qos *qs = qv->qs;
    if (qs->poll_now && !qs->stopping) event_active(qs->poll_now, EV_TIMEOUT, 0);
}

/* ---- the poll ------------------------------------------------------------------------------- */

static void poll_send(struct agent_qos *qs);

static void on_poll(struct agent_client_req *call, int err, struct conn_frame *f)
{
    struct agent_qos *qs = call->data;
    qs->call_busy = false;
    struct wire_vol_qos_resp r;
    if (err == 0 && wire_decode_vol_qos_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) < 0)
        err = -EIO;
    if (err) {
        if (err != -ESHUTDOWN)
            log_debug(qs->tag, "VOL_QOS: %s; the next poll asks again", bd_strerror(err));
    } else {
        for (uint32_t i = 0; i < r.n; i++) {
            struct wire_qos_entry e;
            wire_vol_qos_entry(&r, i, &e);
            if (!e.found) continue; /* gone: keep what it had; its volume fails soon */
            for (struct agent_qos_vol *qv = qs->vols; qv; qv = qv->next)
                if (qv->vol_id == e.vol_id && qv->refs) agent_qos_vol_set(qv, &e.qos);
        }
    }
    if (qs->stopping) return;
    if (qs->again || (err == 0 && qs->cursor)) {
        /* A bind while this one flew, or more volumes than one call holds. */
        qs->again = false;
        poll_send(qs);
    }
}

static void report_of(struct agent_qos_vol *qv, struct wire_qos_report *rp, uint64_t now)
{
    memset(rp, 0, sizeof(*rp));
    rp->vol_id = qv->vol_id;
    for (int d = 0; d < 2; d++) {
        rp->ops[d] = qv->ios[d];
        rp->bytes[d] = qv->bytes[d];
        rp->p50_us[d] = percentile(qv, d, 0.50);
        rp->p99_us[d] = percentile(qv, d, 0.99);
    }
    rp->delayed = qv->delayed;
    rp->throttled_us = (uint64_t)(throttled_s(qv) * 1e6);
    rp->waiting = qv->waiting;
    for (int k = 0; k < QOS_N_KINDS; k++)
        rp->level[k] = (int64_t)floor(agent_qos_lim_credit(&qv->lim, k, now));
}

/* Ask for the limits of the bound entries in use, after qs->cursor (vol
 * ids, in list order), at most WIRE_QOS_MAX; the cursor says where the
 * next call resumes (0: all asked). */
static void poll_send(struct agent_qos *qs)
{
    if (!qs->cl || qs->call_busy || qs->stopping) return;
    struct wire_qos_report rp[WIRE_QOS_MAX];
    uint32_t n = 0;
    uint64_t now = clock_ns(qs);
    bool past = qs->cursor == 0, more = false;
    for (struct agent_qos_vol *qv = qs->vols; qv; qv = qv->next) {
        if (!qv->refs || !qv->vol_id) continue;
        if (!past) {
            past = qv->vol_id == qs->cursor;
            continue;
        }
        if (n == WIRE_QOS_MAX) {
            more = true;
            break;
        }
        report_of(qv, &rp[n++], now);
    }
    qs->cursor = more ? rp[n - 1].vol_id : 0;
    if (!n) return;
    size_t need = 64 + (size_t)n * WIRE_QOS_REPORT_LEN;
    if (need > qs->fields_cap) {
        uint8_t *b = realloc(qs->fields, need);
        if (!b) return;
        qs->fields = b;
        qs->fields_cap = need;
    }
    struct wire_vol_qos_req m = {.agent_id = wire_cstr(qs->agent_id), .n = n, .reports_in = rp};
    int len = wire_encode_vol_qos_req(qs->fields, qs->fields_cap, &m);
    if (!BD_ALWAYS(len > 0)) return;
    struct agent_client_req *c = &qs->call;
    memset(c, 0, sizeof(*c));
    c->fields_big = qs->fields;
    c->fields_len = (size_t)len;
    c->type = WIRE_VOL_QOS;
    c->idempotent = true; /* a lookup and a report: asking twice changes nothing */
    c->deadline_ms = util_mono_ms() + POLL_DEADLINE_MS;
    c->cb = on_poll;
    c->data = qs;
    qs->call_busy = true;
    agent_client_call(qs->cl, c);
}

void agent_qos_tick(struct agent_qos *qs, uint64_t now_ms)
{
    struct agent_qos_vol **pp = &qs->vols;
    while (*pp) {
        struct agent_qos_vol *qv = *pp;
        if (!qv->refs && !qv->waiting && now_ms - qv->freed_ms >= qs->keep_ms) {
            *pp = qv->next;
            vol_free(qv);
            continue;
        }
        if (now_ms - qv->win_start_ms >= WINDOW_MS) {
            qv->win_cur ^= 1;
            memset(qv->win[qv->win_cur], 0, sizeof(qv->win[qv->win_cur]));
            qv->win_start_ms = now_ms;
        }
        pp = &qv->next;
    }
    if (qs->call_busy) qs->again = true;
    else poll_send(qs);
}
