/* agent_qos.h: per-volume QoS in the agent, where I/O enters (issue 13):
 * the token-bucket limiter, its per-volume state, the poll that keeps the
 * limits current, and the per-volume figures (Prometheus, JSON, the
 * reports behind GET /v1/volumes/NAME/stats).
 *
 * Three levels, each usable alone:
 *
 *   struct agent_qos_lim   the limiter of one volume: pure, on the caller's
 *                          clock (nanoseconds), no allocation; the unit
 *                          tests drive it on an injected clock;
 *   struct agent_qos_vol   one volume's state, shared by every NBD
 *                          connection to it (multi-conn): the limiter, the
 *                          requests waiting for it (FIFO per direction), a
 *                          timer armed only while some wait, its figures;
 *   struct agent_qos       the agent's registry of those, by volume name,
 *                          and its VOL_QOS poll.
 *
 * Admission.  agent_qos_admit() decides at once whether a request may go:
 * an unlimited volume only counts it (no timer, no allocation, no queue);
 * a limited one takes the request's cost from its buckets when they have
 * credit and no request waits ahead of it, or queues it.  A queued request
 * goes (W->go) from the volume's timer, in arrival order within its
 * direction; between directions the oldest request that may go goes
 * first, so a read held by read_iops never holds back a write, and
 * neither starves the other on a shared limit.  A request never fails
 * for its limit.  The queue holds what the NBD connections submitted, so
 * its length is bounded by their in-flight limits (max_inflight per
 * connection): the clients feel back-pressure, the agent keeps no
 * unbounded memory.
 *
 * Live changes.  Limits come from the proxies: the VOL_QOS poll runs every
 * AGENT_QOS_POLL_MS while any volume is attached, and at once when one is
 * bound (attached); its answer sets the limiter (credit carried over,
 * waiters re-examined), so a change through the admin API applies within
 * a poll interval plus a Raft heartbeat, without a reattach and without
 * failing I/O.  The same call carries each volume's figures to the proxy.
 *
 * Figures.  Per volume: I/Os and bytes by direction, a latency histogram
 * per direction (as the NBD client sees it, throttle wait included),
 * seconds throttled (with at least one request waiting), I/Os delayed,
 * requests waiting, and each limit's bucket credit.  Series are per
 * volume name, at most AGENT_QOS_MAX_SERIES volumes at once (bounded
 * cardinality); a volume's entry, series included, goes keep_ms after the
 * last volume using it was freed (detached).
 *
 * Everything runs on the agent's reactor thread.  Names start agent_qos. */
#ifndef BD_AGENT_QOS_H
#define BD_AGENT_QOS_H

#include <stdbool.h>
#include <stdint.h>

#include "base/qos.h"
#include "runtime/reactor.h"

#define AGENT_QOS_POLL_MS 500u       /* how often the limits are asked for */
#define AGENT_QOS_SLACK_MS 50u       /* credit a bucket keeps beyond its burst: timer
                                        lateness does not lose the limit's rate */
#define AGENT_QOS_MAX_SERIES 256u    /* volumes with per-volume Prometheus series */

enum agent_qos_op {
    AGENT_QOS_READ,                  /* also NBD_CMD_CACHE: it reads what it caches */
    AGENT_QOS_WRITE,
    AGENT_QOS_ZERO,                  /* WRITE_ZEROES: one write I/O, no bytes */
    AGENT_QOS_TRIM,                  /* one write I/O, no bytes */
    AGENT_QOS_FLUSH,                 /* never throttled, not counted */
    AGENT_QOS_OTHER,                 /* BLOCK_STATUS: never throttled, not counted */
};

/* ---- the limiter ------------------------------------------------------------ */

/* One token bucket: credit grows at RATE per second up to CAP and may go
 * below zero (debt): an I/O is let through while credit is not negative,
 * then pays its whole cost, so an I/O larger than a bucket still goes and
 * the next ones wait out its debt. */
struct agent_qos_bucket {
    double rate;                     /* units per second; 0: this bucket is off */
    double cap;                      /* the most credit it saves */
    double credit;                   /* units; < 0: debt */
};

/* A volume's buckets: per limit, AVG at the limit's rate (saving up to
 * burst_seconds of burst when a burst is set) and, with a burst, PEAK at
 * the burst rate. */
struct agent_qos_lim {
    struct qos_limits eff;           /* as last set (every field set) */
    bool limited;                    /* any limit */
    uint64_t t_ns;                   /* when credit was last brought up to date */
    struct agent_qos_bucket avg[QOS_N_KINDS], peak[QOS_N_KINDS];
};

/* What one request takes: I/Os and bytes in one direction. */
struct agent_qos_cost {
    uint8_t dir;                     /* 0 read, 1 write */
    bool free;                       /* FLUSH, BLOCK_STATUS: nothing */
    double ios;                      /* ceil(len / io_size); 1 for ZERO/TRIM */
    double bytes;                    /* READ/WRITE payload; 0 for ZERO/TRIM */
};

/* No limits. */
void agent_qos_lim_init(struct agent_qos_lim *l);
/* Apply EFF (every field set, qos_effective) at NOW_NS.  A limit that
 * stays keeps its credit (clamped to the new cap); a new one starts with
 * a full bucket; one removed stops counting. */
void agent_qos_lim_set(struct agent_qos_lim *l, const struct qos_limits *eff, uint64_t now_ns);
/* The cost of an OP of LEN bytes under L's io_size. */
void agent_qos_lim_cost(const struct agent_qos_lim *l, enum agent_qos_op op, uint64_t len,
                        struct agent_qos_cost *c);
/* Nanoseconds until C may go (0: now), after bringing credit up to NOW_NS. */
uint64_t agent_qos_lim_wait(struct agent_qos_lim *l, const struct agent_qos_cost *c,
                            uint64_t now_ns);
/* Take C's cost (after agent_qos_lim_wait said 0). */
void agent_qos_lim_take(struct agent_qos_lim *l, const struct agent_qos_cost *c);
/* The credit of limit K's average bucket at NOW_NS (0 when K has none). */
double agent_qos_lim_credit(struct agent_qos_lim *l, enum qos_kind k, uint64_t now_ns);

/* ---- one volume --------------------------------------------------------------- */

struct agent_qos;
struct agent_qos_vol;

/* A request waiting for its volume's limits: the caller's, embedded in its
 * own request; the caller sets GO, agent_qos the rest.  GO runs exactly
 * once, on the reactor, never from inside agent_qos_admit. */
struct agent_qos_wait {
    void (*go)(struct agent_qos_wait *w);
    struct agent_qos_wait *next;
    struct agent_qos_cost cost;
    uint64_t seq;                    /* arrival order on the volume */
    uint64_t t0_ns;                  /* when it began to wait */
};

/* May a request of OP and LEN bytes go now on QV?  true: it took its cost
 * (or QV is NULL, unlimited, or OP is never throttled); false: W was
 * queued and W->go will run once it may. */
bool agent_qos_admit(struct agent_qos_vol *qv, struct agent_qos_wait *w, enum agent_qos_op op,
                     uint64_t len);
/* A request of OP and LEN bytes finished after LAT_US (throttle wait
 * included): count it.  QV NULL does nothing. */
void agent_qos_done(struct agent_qos_vol *qv, enum agent_qos_op op, uint64_t len,
                    uint64_t lat_us);
/* Let every waiter whose turn has come go, at NOW_NS; returns when the
 * next one may (0: none waits).  The volume's timer calls it; tests on an
 * injected clock call it themselves. */
uint64_t agent_qos_vol_run(struct agent_qos_vol *qv, uint64_t now_ns);
/* Set QV's limits now (what a VOL_QOS answer does; tests call it). */
void agent_qos_vol_set(struct agent_qos_vol *qv, const struct qos_limits *eff);
/* The limiter (read-only use: tests, status). */
struct agent_qos_lim *agent_qos_vol_lim(struct agent_qos_vol *qv);
/* Client I/Os counted so far (both directions; FLUSH not counted): a
 * change says the volume had client I/O (base/fair.h's activity). */
uint64_t agent_qos_vol_ios(const struct agent_qos_vol *qv);
/* Requests waiting now. */
unsigned agent_qos_vol_waiting(const struct agent_qos_vol *qv);
/* Add "qos": {limits, limited, ios, bytes, latency_us, delayed,
 * throttled_seconds, waiting, credit} to OUT. */
struct cJSON;
void agent_qos_vol_json(struct agent_qos_vol *qv, struct cJSON *out);

/* ---- the registry ------------------------------------------------------------ */

struct agent_client;

struct agent_qos_opts {
    const char *tag;                 /* log tag, metrics label; copied */
    const char *agent_id;            /* sent with VOL_QOS; copied */
    struct agent_client *cl;         /* kept; NULL: no poll (tests) */
    uint64_t keep_ms;                /* figures of a freed volume are kept this long */
    uint64_t (*now_ns)(void);        /* the clock; NULL: util_mono_ns */
};

/* RX NULL: no timers (tests drive agent_qos_vol_run and agent_qos_tick).
 * Returns owned (agent_qos_free), or NULL on ENOMEM. */
struct agent_qos *agent_qos_new(struct reactor *rx, const struct agent_qos_opts *o);
/* Let every waiter go (the agent stops: the volume layer answers them
 * -ESHUTDOWN) and stop polling. */
void agent_qos_stop(struct agent_qos *qs);
/* Free QS and every entry.  Nothing may wait (agent_qos_stop first). */
void agent_qos_free(struct agent_qos *qs);

/* The entry of volume NAME, made if needed, with one more user (the
 * registry's volume).  NULL on ENOMEM: that volume's I/O is then neither
 * limited nor counted. */
struct agent_qos_vol *agent_qos_vol_get(struct agent_qos *qs, const char *name);
/* One user fewer; with none left the entry goes keep_ms later. */
void agent_qos_vol_put(struct agent_qos_vol *qv);
/* QV's volume is attached with id VOL_ID: its limits are asked for now
 * and with every poll.  QV NULL does nothing. */
void agent_qos_vol_bind(struct agent_qos_vol *qv, uint64_t vol_id);
/* The poll and the sweep of freed entries, at NOW_MS (the tick timer
 * calls it every AGENT_QOS_POLL_MS). */
void agent_qos_tick(struct agent_qos *qs, uint64_t now_ms);

#endif
