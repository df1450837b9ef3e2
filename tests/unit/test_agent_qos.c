/* test_agent_qos.c: the agent's QoS limiter and per-volume queue
 * (src/roles/agent/agent_qos.c) on an injected clock.
 *
 * An I/O goes while its buckets are not in debt and then pays in full, so
 * a full bucket of C lets floor(C) + 1 go at once (the last into debt).
 *
 * The limiter alone: a steady queue goes at the limit's rate (the n-th I/O
 * at n / rate, whatever the step of the clock); a burst is spent at the
 * burst rate for burst_seconds, then the limit holds, and refills while
 * quiet; a limit changed mid-stream takes over at once with the credit
 * carried; very small (1 I/O/s, 4 KiB/s) and very large (10 M I/Os/s,
 * 1 TiB/s) limits; I/O counting (io_size, TRIM/ZERO as one I/O and no
 * bytes, FLUSH free).  The volume: requests wait in arrival order, a
 * direction held by its own limit does not hold the other back, an
 * unlimited volume admits without queueing, and stop lets every waiter go. */
#include "roles/agent/agent_qos.h"
#include "base/bd.h"
#include "tap.h"

#include <math.h>
#include <string.h>

#define MS 1000000ull
#define SEC 1000000000ull

static uint64_t now_ns;
static uint64_t fake_now(void)
{
    return now_ns;
}

static struct qos_limits eff_of(const struct qos_limits *own)
{
    struct qos_limits e;
    qos_effective(own, NULL, &e);
    return e;
}

static struct qos_limits one(uint32_t bit, uint64_t v)
{
    struct qos_limits l;
    memset(&l, 0, sizeof(l));
    qos_field_set(&l, bit, v);
    return eff_of(&l);
}

/* Drive a queue of N requests of OP/LEN through L, stepping the clock by
 * STEP_NS, from T0: the time the last one went. */
static uint64_t drain(struct agent_qos_lim *l, int n, enum agent_qos_op op, uint64_t len,
                      uint64_t t0, uint64_t step_ns)
{
    struct agent_qos_cost c;
    agent_qos_lim_cost(l, op, len, &c);
    uint64_t t = t0;
    for (int i = 0; i < n; i++) {
        while (agent_qos_lim_wait(l, &c, t) != 0) t += step_ns;
        agent_qos_lim_take(l, &c);
    }
    return t;
}

TEST(steady_rate)
{
    struct agent_qos_lim l;
    agent_qos_lim_init(&l);
    struct qos_limits e = one(QOS_SET_LIMIT(QOS_IOPS), 500);
    agent_qos_lim_set(&l, &e, 0);
    /* The bucket starts full (slack: 50 ms of 500/s = 25 I/Os), then 500/s.
     * 5025 I/Os take 10 s, whether the clock steps by 1 us or by 7 ms. */
    uint64_t t = drain(&l, 5025, AGENT_QOS_READ, 4096, 0, 1000);
    CHECK(t >= 9990 * MS && t <= 10010 * MS);
    agent_qos_lim_init(&l);
    agent_qos_lim_set(&l, &e, 0);
    t = drain(&l, 5025, AGENT_QOS_READ, 4096, 0, 7 * MS);
    CHECK(t >= 9990 * MS && t <= 10010 * MS);
    /* Bytes: 1 MiB/s of 64 KiB writes: 16 per second past the slack. */
    struct agent_qos_lim b;
    agent_qos_lim_init(&b);
    e = one(QOS_SET_LIMIT(QOS_WRITE_BPS), 1 << 20);
    agent_qos_lim_set(&b, &e, 0);
    t = drain(&b, 160, AGENT_QOS_WRITE, 64 << 10, 0, 1000);
    CHECK(t >= 9 * SEC && t <= 10 * SEC);
    /* Reads are not held by a write limit. */
    CHECK_EQ(drain(&b, 1000, AGENT_QOS_READ, 64 << 10, t, 1000), t);
}

TEST(burst_spent_and_refilled)
{
    struct agent_qos_lim l;
    agent_qos_lim_init(&l);
    struct qos_limits own;
    memset(&own, 0, sizeof(own));
    qos_field_set(&own, QOS_SET_LIMIT(QOS_IOPS), 100);
    qos_field_set(&own, QOS_SET_BURST(QOS_IOPS), 1000);
    qos_field_set(&own, QOS_SET_BURST_SECONDS, 2);
    struct qos_limits e = eff_of(&own);
    agent_qos_lim_set(&l, &e, 0);
    /* A full bucket: (1000 - 100) * 2 saved + 5 slack.  Run flat out for
     * 2 s: the peak bucket holds it at 1000/s, the saved credit lasts. */
    struct agent_qos_cost c;
    agent_qos_lim_cost(&l, AGENT_QOS_READ, 4096, &c);
    uint64_t t = 0;
    int n = 0;
    while (t < 2 * SEC) {
        if (agent_qos_lim_wait(&l, &c, t) == 0) {
            agent_qos_lim_take(&l, &c);
            n++;
        } else {
            t += 100000;
        }
    }
    CHECK(n >= 1950 && n <= 2100); /* ~1000/s plus the slack */
    /* Then the limit: 10 more seconds give about 100/s (what credit is
     * left runs out within the first second). */
    int m = 0;
    while (t < 12 * SEC) {
        if (agent_qos_lim_wait(&l, &c, t) == 0) {
            agent_qos_lim_take(&l, &c);
            m++;
        } else {
            t += 100000;
        }
    }
    CHECK(m >= 1000 && m <= 1300);
    /* Quiet for 20 s: the saved credit is back, capped (not 20 s worth). */
    t += 20 * SEC;
    double credit = agent_qos_lim_credit(&l, QOS_IOPS, t);
    CHECK(fabs(credit - (900.0 * 2 + 5)) < 1);
    /* No burst: a quiet volume saves only the slack. */
    agent_qos_lim_init(&l);
    e = one(QOS_SET_LIMIT(QOS_IOPS), 100);
    agent_qos_lim_set(&l, &e, 0);
    CHECK(fabs(agent_qos_lim_credit(&l, QOS_IOPS, 60 * SEC) - 5) < 1e-9);
}

TEST(limit_changed_mid_stream)
{
    struct agent_qos_lim l;
    agent_qos_lim_init(&l);
    struct qos_limits e = one(QOS_SET_LIMIT(QOS_IOPS), 1000);
    agent_qos_lim_set(&l, &e, 0);
    uint64_t t = drain(&l, 2050, AGENT_QOS_WRITE, 4096, 0, 1000); /* 2 s at 1000/s */
    CHECK(t >= 1990 * MS && t <= 2010 * MS);
    /* Down to 100/s: the next 200 take 2 s (credit carried is ~0). */
    e = one(QOS_SET_LIMIT(QOS_IOPS), 100);
    agent_qos_lim_set(&l, &e, t);
    uint64_t t2 = drain(&l, 200, AGENT_QOS_WRITE, 4096, t, 1000);
    CHECK(t2 - t >= 1950 * MS && t2 - t <= 2010 * MS);
    /* Removed: everything goes at once. */
    agent_qos_lim_init(&l);
    struct qos_limits none = eff_of(NULL);
    agent_qos_lim_set(&l, &none, t2);
    CHECK(!l.limited);
    CHECK_EQ(drain(&l, 100000, AGENT_QOS_WRITE, 4096, t2, 1000), t2);
    /* A new limit starts with a full bucket. */
    agent_qos_lim_set(&l, &e, t2);
    CHECK(fabs(agent_qos_lim_credit(&l, QOS_IOPS, t2) - 5) < 1e-9);
}

TEST(very_small_and_very_large)
{
    struct agent_qos_lim l;
    agent_qos_lim_init(&l);
    /* 1 I/O per second: two at once (slack floor: a whole I/O), then 1/s. */
    struct qos_limits e = one(QOS_SET_LIMIT(QOS_READ_IOPS), 1);
    agent_qos_lim_set(&l, &e, 0);
    uint64_t t = drain(&l, 11, AGENT_QOS_READ, 4096, 0, MS);
    CHECK(t >= 8999 * MS && t <= 9001 * MS);
    /* 4 KiB/s: a 1 MiB read goes (debt), the next waits 256 s. */
    agent_qos_lim_init(&l);
    e = one(QOS_SET_LIMIT(QOS_BPS), 4096);
    agent_qos_lim_set(&l, &e, 0);
    struct agent_qos_cost c;
    agent_qos_lim_cost(&l, AGENT_QOS_READ, 1 << 20, &c);
    CHECK_EQ(agent_qos_lim_wait(&l, &c, 0), 0);
    agent_qos_lim_take(&l, &c);
    uint64_t w = agent_qos_lim_wait(&l, &c, 0);
    CHECK(w >= 255 * SEC && w <= 256 * SEC);
    /* 10 M I/Os per second: a million go within about 0.1 s. */
    agent_qos_lim_init(&l);
    e = one(QOS_SET_LIMIT(QOS_IOPS), QOS_MAX_IOPS);
    agent_qos_lim_set(&l, &e, 0);
    t = drain(&l, 1000000, AGENT_QOS_READ, 4096, 0, 1000);
    CHECK(t >= 40 * MS && t <= 60 * MS); /* 500 k saved (slack), 500 k at 10 M/s */
    /* 1 TiB/s: nothing a test can send waits. */
    agent_qos_lim_init(&l);
    e = one(QOS_SET_LIMIT(QOS_BPS), QOS_MAX_BPS);
    agent_qos_lim_set(&l, &e, 0);
    CHECK_EQ(drain(&l, 1000, AGENT_QOS_WRITE, 32 << 20, 0, 1000), 0);
}

TEST(counting)
{
    struct agent_qos_lim l;
    agent_qos_lim_init(&l);
    struct qos_limits own;
    memset(&own, 0, sizeof(own));
    qos_field_set(&own, QOS_SET_LIMIT(QOS_IOPS), 100);
    qos_field_set(&own, QOS_SET_IO_SIZE, 256 << 10);
    struct qos_limits e = eff_of(&own);
    agent_qos_lim_set(&l, &e, 0);
    struct agent_qos_cost c;
    agent_qos_lim_cost(&l, AGENT_QOS_READ, 4096, &c);
    CHECK(c.ios == 1 && c.bytes == 4096 && c.dir == 0 && !c.free);
    agent_qos_lim_cost(&l, AGENT_QOS_WRITE, 256 << 10, &c);
    CHECK(c.ios == 1 && c.dir == 1);
    agent_qos_lim_cost(&l, AGENT_QOS_WRITE, (256 << 10) + 1, &c);
    CHECK(c.ios == 2);
    agent_qos_lim_cost(&l, AGENT_QOS_READ, 1 << 20, &c);
    CHECK(c.ios == 4 && c.bytes == 1 << 20);
    agent_qos_lim_cost(&l, AGENT_QOS_TRIM, 1ull << 30, &c);
    CHECK(c.ios == 1 && c.bytes == 0 && c.dir == 1);
    agent_qos_lim_cost(&l, AGENT_QOS_ZERO, 1ull << 30, &c);
    CHECK(c.ios == 1 && c.bytes == 0 && c.dir == 1);
    agent_qos_lim_cost(&l, AGENT_QOS_FLUSH, 0, &c);
    CHECK(c.free);
    /* 1 MiB reads count 4 each: 100 I/Os per second is 25 of them. */
    uint64_t t = drain(&l, 25 * 4 + 2, AGENT_QOS_READ, 1 << 20, 0, MS); /* +2: the slack */
    CHECK(t >= 3990 * MS && t <= 4010 * MS);
    /* TRIM of a gigabyte under a bytes limit: not held. */
    agent_qos_lim_init(&l);
    e = one(QOS_SET_LIMIT(QOS_BPS), 4096);
    agent_qos_lim_set(&l, &e, 0);
    CHECK_EQ(drain(&l, 1000, AGENT_QOS_TRIM, 1ull << 30, 0, MS), 0);
    /* FLUSH is never held, even in debt. */
    agent_qos_lim_cost(&l, AGENT_QOS_WRITE, 1 << 20, &c);
    agent_qos_lim_take(&l, &c);
    agent_qos_lim_cost(&l, AGENT_QOS_FLUSH, 0, &c);
    CHECK_EQ(agent_qos_lim_wait(&l, &c, 0), 0);
}

/* ---- the volume's queue ------------------------------------------------------------ */

struct req {
    struct agent_qos_wait w;
    int id;
};
static int went[64], n_went;
static void on_go(struct agent_qos_wait *w)
{
    went[n_went++] = bd_container_of(w, struct req, w)->id;
}

static struct agent_qos *make(struct agent_qos_vol **qv)
{
    now_ns = 1 * SEC;
    n_went = 0;
    struct agent_qos_opts o = {.tag = "test", .now_ns = fake_now, .keep_ms = 0};
    struct agent_qos *qs = agent_qos_new(NULL, &o);
    *qv = agent_qos_vol_get(qs, "v");
    return qs;
}

TEST(queue_order_and_directions)
{
    struct agent_qos_vol *qv;
    struct agent_qos *qs = make(&qv);
    CHECK(qs && qv);
    /* Unlimited: everything admitted, nothing waits. */
    struct req r[16];
    for (int i = 0; i < 16; i++) r[i] = (struct req){.w.go = on_go, .id = i};
    CHECK(agent_qos_admit(qv, &r[0].w, AGENT_QOS_READ, 4096));
    CHECK_EQ(agent_qos_vol_waiting(qv), 0);
    /* read_iops 10: one I/O of slack (two go), then one per 100 ms. */
    struct qos_limits e = one(QOS_SET_LIMIT(QOS_READ_IOPS), 10);
    agent_qos_vol_set(qv, &e);
    CHECK(agent_qos_admit(qv, &r[1].w, AGENT_QOS_READ, 4096));
    CHECK(agent_qos_admit(qv, &r[12].w, AGENT_QOS_READ, 4096));
    CHECK(!agent_qos_admit(qv, &r[2].w, AGENT_QOS_READ, 4096));
    CHECK(!agent_qos_admit(qv, &r[3].w, AGENT_QOS_READ, 4096));
    /* A write behind the held reads: queued (the dispatcher decides), and
     * goes first as its direction has no limit. */
    CHECK(!agent_qos_admit(qv, &r[4].w, AGENT_QOS_WRITE, 4096));
    /* FLUSH never waits, even behind others. */
    CHECK(agent_qos_admit(qv, &r[5].w, AGENT_QOS_FLUSH, 0));
    CHECK_EQ(agent_qos_vol_waiting(qv), 3);
    uint64_t next = agent_qos_vol_run(qv, now_ns);
    CHECK_EQ(n_went, 1);
    CHECK_EQ(went[0], 4);
    CHECK(next > now_ns && next - now_ns <= 100 * MS);
    now_ns += 100 * MS;
    agent_qos_vol_run(qv, now_ns);
    now_ns += 100 * MS;
    CHECK_EQ(agent_qos_vol_run(qv, now_ns), 0);
    CHECK_EQ(n_went, 3);
    CHECK(went[1] == 2 && went[2] == 3);
    /* Loosened live while requests wait: they go at the change. */
    for (int i = 6; i < 10; i++) CHECK(!agent_qos_admit(qv, &r[i].w, AGENT_QOS_READ, 4096));
    struct qos_limits none = eff_of(NULL);
    agent_qos_vol_set(qv, &none);
    CHECK_EQ(n_went, 7);
    CHECK(went[3] == 6 && went[6] == 9);
    /* Stop lets waiters go. */
    agent_qos_vol_set(qv, &e);
    now_ns += 10 * SEC;
    CHECK(agent_qos_admit(qv, &r[10].w, AGENT_QOS_READ, 4096));
    CHECK(agent_qos_admit(qv, &r[13].w, AGENT_QOS_READ, 4096));
    CHECK(!agent_qos_admit(qv, &r[11].w, AGENT_QOS_READ, 4096));
    agent_qos_stop(qs);
    CHECK_EQ(agent_qos_vol_waiting(qv), 0);
    CHECK_EQ(went[n_went - 1], 11);
    agent_qos_vol_put(qv);
    agent_qos_free(qs);
}

TEST(shared_volume_entry)
{
    /* Two users of one name (multi-conn, a successor journal) share one
     * limiter: what one takes the other cannot. */
    struct agent_qos_vol *a;
    struct agent_qos *qs = make(&a);
    struct agent_qos_vol *b = agent_qos_vol_get(qs, "v");
    CHECK(a == b);
    struct qos_limits e = one(QOS_SET_LIMIT(QOS_IOPS), 100); /* slack 5 */
    agent_qos_vol_set(a, &e);
    struct req r[8];
    int admitted = 0;
    for (int i = 0; i < 8; i++) {
        r[i] = (struct req){.w.go = on_go, .id = i};
        admitted += agent_qos_admit(i % 2 ? a : b, &r[i].w, AGENT_QOS_WRITE, 4096);
    }
    CHECK_EQ(admitted, 6);
    now_ns += SEC;
    agent_qos_vol_run(a, now_ns);
    CHECK_EQ(n_went, 2);
    agent_qos_vol_put(a);
    agent_qos_vol_put(b);
    agent_qos_tick(qs, UINT64_MAX / 2); /* freed long ago: swept */
    agent_qos_free(qs);
}
