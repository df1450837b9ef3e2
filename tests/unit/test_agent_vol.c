/* test_agent_vol.c: the agent's volume back end (src/roles/agent/agent_vol.c,
 * agent_attach.c, agent_io.c, agent_ship.c, agent_cache.c, agent_client.c)
 * against the real proxy and blob servers, started in this process on the
 * same reactor (agent_cluster.h: as `blockd --role=all` does).
 *
 * Defends C1 (flush barrier), C2 (FUA), C4 (restart replays acked writes),
 * C7 (reads overlay the cache and carry the raft index), C8 (multi-conn),
 * C10 (fencing: re-attach before resend; EFENCED -> EIO), C14/§3 (a
 * damaged journal entry reads as EIO, never garbage), plus back-pressure,
 * the cluster being unreachable and coming back, and the ordering rule.
 *
 * How the cluster is made to misbehave, all through real paths: the roles'
 * test-build fault knobs (cfg_fault.delay_ms holds every reply of a role;
 * socket_failure_every closes a connection after every Nth frame), chosen
 * per test before the cluster starts; stopping and restarting the proxy or
 * a blob server (with fewer than three blob servers up the proxy can place
 * no blob and refuses writes with EAGAIN); a second agent taking the
 * volume over (admin force-detach, then its read-write attach); and a
 * relay in front of the proxy that holds what the agent sends through it
 * and delivers it later (a path that is cut, then heals).  What
 * happened is observed through real paths too: the cluster's bytes and map
 * read past the agent (VOL_READ), the volume's generation and attachment
 * (admin API), the proxy's status and the metrics both roles publish.
 *
 * Fixture: a fresh cluster (three blob servers, one proxy) with one 16 MiB
 * volume "vol-a", and a fresh registry per test; 8 MiB of cache, 64 KiB
 * ships, no age shipping unless a test asks, io_timeout_ms 1000.  Every
 * wait is bounded. */
#include "agent_cluster.h"
#include "base/bd.h"
#include "base/util.h"
#include "config/config.h"
#include "net/wire.h"
#include "roles/agent/agent_vol.h"
#include "runtime/log.h"
#include "runtime/reactor.h"
#include "store/journal/journal.h"
#include "tap.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- Fixture -------------------------------------------------------------- */

#define VOL_SIZE (16u << 20)
#define BS 4096u

static struct reactor *rx;
static struct agent_cluster *cl;
static struct agent_cluster_opts copts; /* the next cluster's knobs: set before start() */
static struct agent_cluster_vol vol;    /* "vol-a" as created */
static struct cfg_agent cfg;            /* the agent under test */
static struct cfg_agent cfg2;           /* another agent (agent-2) */
static struct agent_vols *vs, *vs2;
static char cache_dir[400];
static char tmp_dir[300]; /* this test's directory */

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

/* Run the reactor until *FLAG is non-zero or MS pass. */
static bool run_until(const int *flag, int ms)
{
    bool expired = false;
    struct event *t = evtimer_new(reactor_base(rx), on_deadline, &expired);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(t, &tv);
    while (!*flag && !expired) event_base_loop(reactor_base(rx), EVLOOP_ONCE);
    event_free(t);
    return *flag != 0;
}

static void pump(int ms)
{
    int never = 0;
    run_until(&never, ms);
}

/* Pump until COND() holds, at most MS. */
static bool wait_for(bool (*cond)(void), int ms)
{
    uint64_t end = util_mono_ms() + (uint64_t)ms;
    while (!cond()) {
        if (util_mono_ms() >= end) return false;
        pump(10);
    }
    return true;
}

static void teardown(void);
static void relay_free(void);

static void setup(void)
{
    if (vs || vs2 || cl) teardown(); /* a failed check returned early */
    if (!rx) {
        rx = reactor_new();
        log_set_level(LOG_ERROR);
    }
    const char *tmp = tap_tmpdir();
    util_strlcpy(tmp_dir, tmp, sizeof(tmp_dir));
    snprintf(cache_dir, sizeof(cache_dir), "%s/cache", tmp);
    memset(&copts, 0, sizeof(copts));
    copts.dir = tmp_dir;
    memset(&vol, 0, sizeof(vol));
    memset(&cfg, 0, sizeof(cfg));
    util_strlcpy(cfg.id, "agent-1", sizeof(cfg.id));
    util_strlcpy(cfg.cache_dir, cache_dir, sizeof(cfg.cache_dir));
    cfg.cache_bytes = 8u << 20;
    cfg.cache_high_water_pct = 50;
    cfg.flush_age_ms = 600000;
    cfg.io_timeout_ms = 1000;
    cfg.ship_bytes = 64u << 10;
}

/* Start the cluster (once per test) with "vol-a" attached to agent-1,
 * then the registry (agent-1). */
static int start(void)
{
    char err[256] = "";
    if (!cl) {
        /* Held blob replies are timed from a quiet cluster (agent_cluster.h). */
        copts.quiet = copts.blob_fault.delay_ms != 0;
        int rc = agent_cluster_new(rx, &copts, &cl, err, sizeof(err));
        if (rc == 0) rc = agent_cluster_create_volume(cl, "vol-a", VOL_SIZE);
        if (rc == 0) rc = agent_cluster_attach(cl, "vol-a", "agent-1", false, false);
        if (rc == 0) rc = agent_cluster_volume(cl, "vol-a", &vol);
        if (rc < 0) {
            printf("# cluster: %s %s\n", err, bd_strerror(rc));
            return rc;
        }
    }
    cfg.n_proxies = agent_cluster_n_proxies(cl);
    for (unsigned i = 0; i < cfg.n_proxies; i++)
        util_strlcpy(cfg.proxies[i], agent_cluster_proxy_addr(cl, i), sizeof(cfg.proxies[i]));
    int rc = agent_vols_new(rx, agent_cluster_cfg(cl), &cfg, NULL, "agent", &vs, err, sizeof(err));
    if (rc < 0) printf("# agent_vols_new: %s\n", err);
    return rc;
}

/* A second agent, agent-2, with its own cache, on the same cluster. */
static int start_other(void)
{
    cfg2 = cfg;
    util_strlcpy(cfg2.id, "agent-2", sizeof(cfg2.id));
    snprintf(cfg2.cache_dir, sizeof(cfg2.cache_dir), "%s/cache2", tmp_dir);
    char err[256] = "";
    int rc = agent_vols_new(rx, agent_cluster_cfg(cl), &cfg2, NULL, "agent2", &vs2, err, sizeof(err));
    if (rc < 0) printf("# agent_vols_new (agent-2): %s\n", err);
    return rc;
}

static void stop_registry(void)
{
    agent_vols_free(vs);
    vs = NULL;
    pump(20);
}

static void teardown(void)
{
    agent_vols_free(vs2);
    vs2 = NULL;
    if (vs) stop_registry();
    relay_free();
    agent_cluster_free(cl);
    cl = NULL;
    pump(20);
}

/* ---- A relay that can hold a path ----------------------------------------- */

/* A Unix socket in the test's directory that passes bytes to and from
 * proxy 0, one connection to the proxy per connection accepted.  While
 * `hold` is set, what the agent sends through it is kept, not passed on
 * (a cut path: the agent's requests on it time out); relay_release hands
 * it all to the proxy, in order, even on a connection the agent has
 * given up on (the path healed and TCP delivered what was in flight).
 * What the proxy sends always passes. */
struct relay_pair {
    struct bufferevent *agent, *proxy;
    struct evbuffer *held;
    struct relay_pair *next;
};

static struct {
    struct evconnlistener *lev;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    bool hold;
    struct relay_pair *pairs;
} relay;

static void relay_from_agent(struct bufferevent *bev, void *arg)
{
    struct relay_pair *p = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (relay.hold || !p->proxy) evbuffer_add_buffer(p->held, in);
    else evbuffer_add_buffer(bufferevent_get_output(p->proxy), in);
}

static void relay_from_proxy(struct bufferevent *bev, void *arg)
{
    struct relay_pair *p = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (p->agent) evbuffer_add_buffer(bufferevent_get_output(p->agent), in);
    else evbuffer_drain(in, evbuffer_get_length(in));
}

/* The agent closed its side: what it sent before stays on its way. */
static void relay_agent_event(struct bufferevent *bev, short what, void *arg)
{
    struct relay_pair *p = arg;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))) return;
    bufferevent_free(bev);
    p->agent = NULL;
}

/* The proxy closed its side: so does the relay, towards the agent. */
static void relay_proxy_event(struct bufferevent *bev, short what, void *arg)
{
    struct relay_pair *p = arg;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))) return;
    bufferevent_free(bev);
    p->proxy = NULL;
    if (p->agent) bufferevent_free(p->agent);
    p->agent = NULL;
}

static void relay_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                         int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    (void)arg;
    struct event_base *base = reactor_base(rx);
    struct relay_pair *p = calloc(1, sizeof(*p));
    struct sockaddr_un to = {.sun_family = AF_UNIX};
    const char *target = agent_cluster_proxy_addr(cl, 0) + strlen("unix:");
    util_strlcpy(to.sun_path, target, sizeof(to.sun_path));
    p->held = evbuffer_new();
    p->agent = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    p->proxy = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(p->agent, relay_from_agent, NULL, relay_agent_event, p);
    bufferevent_setcb(p->proxy, relay_from_proxy, NULL, relay_proxy_event, p);
    bufferevent_enable(p->agent, EV_READ | EV_WRITE);
    bufferevent_enable(p->proxy, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(p->proxy, (struct sockaddr *)&to, sizeof(to)) < 0) {
        bufferevent_free(p->proxy);
        p->proxy = NULL;
    }
    p->next = relay.pairs;
    relay.pairs = p;
}

/* Listen on DIR/relay.sock for the agent; its address into ADDR. */
static int relay_start(char *addr, size_t cap)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(relay.path, sizeof(relay.path), "%s/relay.sock", tmp_dir);
    if (n < 0 || (size_t)n >= sizeof(relay.path)) return -ENAMETOOLONG;
    util_strlcpy(sa.sun_path, relay.path, sizeof(sa.sun_path));
    relay.hold = false;
    relay.lev = evconnlistener_new_bind(reactor_base(rx), relay_accept, NULL,
                                        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1,
                                        (struct sockaddr *)&sa, sizeof(sa));
    if (!relay.lev) return -EIO;
    snprintf(addr, cap, "unix:%s", relay.path);
    return 0;
}

/* The path heals: everything held goes to the proxy, in order. */
static void relay_release(void)
{
    relay.hold = false;
    for (struct relay_pair *p = relay.pairs; p; p = p->next)
        if (p->proxy) evbuffer_add_buffer(bufferevent_get_output(p->proxy), p->held);
}

static void relay_free(void)
{
    while (relay.pairs) {
        struct relay_pair *p = relay.pairs;
        relay.pairs = p->next;
        if (p->agent) bufferevent_free(p->agent);
        if (p->proxy) bufferevent_free(p->proxy);
        evbuffer_free(p->held);
        free(p);
    }
    if (relay.lev) {
        evconnlistener_free(relay.lev);
        unlink(relay.path);
    }
    relay.lev = NULL;
}

/* ---- Helpers -------------------------------------------------------------- */

struct waiter {
    struct agent_vol_req req;
    int done, err;
    uint8_t *buf;
    struct agent_vol_extent ext[64];
};

static void on_req(struct agent_vol_req *r, int err)
{
    struct waiter *w = r->data;
    w->done = 1;
    w->err = err;
}

struct open_w {
    struct agent_vols_open_req req;
    int done, err;
    struct agent_vol *h;
};

static void on_open(struct agent_vols_open_req *r, int err, struct agent_vol *h)
{
    struct open_w *w = r->data;
    w->done = 1;
    w->err = err;
    w->h = h;
}

static struct agent_vol *open_on(struct agent_vols *reg, const char *name, bool ro, int *errp,
                                 int ms)
{
    struct open_w w = {.req = {.cb = on_open}};
    w.req.data = &w;
    agent_vols_open(reg, name, ro, &w.req);
    if (w.done) return NULL; /* must never complete synchronously */
    if (!run_until(&w.done, ms)) return NULL;
    if (errp) *errp = w.err;
    return w.h;
}

static struct agent_vol *open_vol(const char *name, bool ro, int *errp)
{
    return open_on(vs, name, ro, errp, 5000);
}

/* Block B of a write with SEED: every byte says which. */
static void fill(uint8_t *p, uint64_t off, uint64_t len, uint8_t seed)
{
    for (uint64_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed * 31 + (off + i) / BS * 7 + (off + i) % 251);
}

static bool matches(const uint8_t *p, uint64_t off, uint64_t len, uint8_t seed)
{
    for (uint64_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)(seed * 31 + (off + i) / BS * 7 + (off + i) % 251)) return false;
    return true;
}

static bool is_zero(const uint8_t *p, uint64_t len)
{
    for (uint64_t i = 0; i < len; i++)
        if (p[i]) return false;
    return true;
}

static void w_init(struct waiter *w, uint64_t off, uint64_t len)
{
    free(w->buf);
    memset(w, 0, sizeof(*w));
    w->req.cb = on_req;
    w->req.data = w;
    w->req.off = off;
    w->req.len = len;
}

static void w_free(struct waiter *w)
{
    free(w->buf);
    w->buf = NULL;
}

static void submit_write(struct waiter *w, struct agent_vol *h, uint64_t off, uint64_t len,
                         uint8_t seed, uint32_t flags)
{
    w_init(w, off, len);
    w->buf = malloc(len);
    fill(w->buf, off, len, seed);
    w->req.wbuf = w->buf;
    w->req.flags = flags;
    agent_vol_write(h, &w->req);
}

static int wait_w(struct waiter *w, int ms)
{
    if (!run_until(&w->done, ms)) return -999;
    return w->err;
}

static int do_write(struct agent_vol *h, uint64_t off, uint64_t len, uint8_t seed, uint32_t flags)
{
    struct waiter w = {0};
    submit_write(&w, h, off, len, seed, flags);
    int rc = wait_w(&w, 5000);
    w_free(&w);
    return rc;
}

static int do_op(void (*fn)(struct agent_vol *, struct agent_vol_req *), struct agent_vol *h,
                 uint64_t off, uint64_t len)
{
    struct waiter w = {0};
    w_init(&w, off, len);
    fn(h, &w.req);
    return wait_w(&w, 5000);
}

static int do_flush(struct agent_vol *h)
{
    return do_op(agent_vol_flush, h, 0, 0);
}

/* Read [OFF, OFF+LEN) into a new buffer (*OUT, free it); with MAP, the
 * extents land in W->ext. */
static int do_read(struct agent_vol *h, uint64_t off, uint64_t len, uint8_t **out,
                   struct waiter *w, bool map)
{
    w_init(w, off, len);
    w->buf = calloc(1, len);
    w->req.rbuf = w->buf;
    if (map) {
        w->req.ext = w->ext;
        w->req.max_ext = 64;
    }
    agent_vol_read(h, &w->req);
    int rc = wait_w(w, 5000);
    *out = w->buf;
    w->buf = NULL;
    return rc;
}

/* ---- Observing the cluster ------------------------------------------------ */

/* The cluster's bytes of [OFF, OFF+LEN) of vol-a and the kind of each
 * block (WIRE_MAP_*), read past the agent under test.  Owned by the
 * caller; NULL if the read failed. */
struct cluster_view {
    uint8_t *data, *kind;
};

static bool cluster_get(uint64_t off, uint64_t len, struct cluster_view *cv)
{
    cv->data = malloc(len);
    cv->kind = malloc(len / BS);
    if (agent_cluster_read(cl, vol.id, off, (uint32_t)len, cv->data, cv->kind) == 0) return true;
    free(cv->data);
    free(cv->kind);
    cv->data = cv->kind = NULL;
    return false;
}

static void cluster_put(struct cluster_view *cv)
{
    free(cv->data);
    free(cv->kind);
}

/* Does the cluster hold SEED's data at [OFF, OFF+LEN)? */
static bool cluster_matches(uint64_t off, uint64_t len, uint8_t seed)
{
    struct cluster_view cv;
    if (!cluster_get(off, len, &cv)) return false;
    bool ok = matches(cv.data, off, len, seed);
    cluster_put(&cv);
    return ok;
}

/* Do [OFF, OFF+LEN) read as zeroes in the cluster? */
static bool cluster_zero(uint64_t off, uint64_t len)
{
    struct cluster_view cv;
    if (!cluster_get(off, len, &cv)) return false;
    bool ok = is_zero(cv.data, len);
    cluster_put(&cv);
    return ok;
}

/* The cluster's kind of block BLK: WIRE_MAP_DATA, _ZERO or _HOLE (never
 * written, or trimmed); -1 if unreadable. */
static int cluster_kind(uint64_t blk)
{
    struct cluster_view cv;
    if (!cluster_get(blk * BS, BS, &cv)) return -1;
    int k = cv.kind[0];
    cluster_put(&cv);
    return k;
}

/* Wait until the cluster holds SEED's data at [OFF, OFF+LEN). */
static bool wait_cluster(uint64_t off, uint64_t len, uint8_t seed, int ms)
{
    uint64_t end = util_mono_ms() + (uint64_t)ms;
    while (util_mono_ms() < end) {
        if (cluster_matches(off, len, seed)) return true;
        pump(20);
    }
    return false;
}

/* vol-a's attach generation and attachment, from the admin API. */
static uint64_t vol_gen(void)
{
    struct agent_cluster_vol v = {0};
    return agent_cluster_volume(cl, "vol-a", &v) == 0 ? v.generation : UINT64_MAX;
}

/* Is AGENT ("" for none) the agent holding vol-a read-write (its writer)? */
static bool vol_attached_to(const char *agent)
{
    struct agent_cluster_vol v = {0};
    return agent_cluster_volume(cl, "vol-a", &v) == 0 && strcmp(v.writer, agent) == 0;
}

/* Counters both roles publish (/metrics), process-wide: compare deltas. */
static double ships(void) /* VOL_WRITEs the agent sent */
{
    return agent_cluster_metric("blockd_agent_ships_total", "role=\"agent\"");
}
static double proxy_writes(void) /* VOL_WRITEs the proxy took in */
{
    return agent_cluster_metric("blockd_proxy_writes_total", NULL);
}
static double proxy_reads(void) /* VOL_READs the proxy took in */
{
    return agent_cluster_metric("blockd_proxy_reads_total", NULL);
}
static double proxy_fenced(void) /* writes the proxy refused as fenced */
{
    return agent_cluster_metric("blockd_proxy_fenced_total", NULL);
}
static double agent_flushes(void) /* FLUSHes the agent completed */
{
    return agent_cluster_metric("blockd_agent_flush_seconds_count", "role=\"agent\"");
}

static cJSON *status(void)
{
    cJSON *o = cJSON_CreateObject();
    agent_vols_status(vs, o);
    return o;
}

static double status_num(const char *key)
{
    cJSON *o = status();
    cJSON *it = cJSON_GetObjectItem(o, key);
    double d = it ? it->valuedouble : -1;
    cJSON_Delete(o);
    return d;
}

/* A field of the status of vol-a in the agent. */
static double vol_status_num(const char *key)
{
    cJSON *o = status();
    cJSON *v0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "volumes"), 0);
    cJSON *it = v0 ? cJSON_GetObjectItem(v0, key) : NULL;
    double d = it ? it->valuedouble : -1;
    cJSON_Delete(o);
    return d;
}

static bool proxy_is_up(void)
{
    return status_num("proxies_up") >= 1;
}

/* Wait until the agent's link to a proxy is up again. */
static bool wait_proxy_up(int ms)
{
    return wait_for(proxy_is_up, ms);
}

/* ---- Reads and the cache -------------------------------------------------- */

/* A write reads back from the cache before anything was shipped, without
 * asking the cluster. */
TEST(read_your_writes_from_cache)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    const struct agent_vol_info *info = agent_vol_info(h);
    CHECK_EQ(info->size, VOL_SIZE);
    CHECK_EQ(info->block_size, BS);
    CHECK(!info->read_only);
    double s0 = ships(), w0 = proxy_writes(), r0 = proxy_reads();
    CHECK_EQ(do_write(h, 64 * BS, 2 * BS, 1, 0), 0);
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(h, 64 * BS, 2 * BS, &got, &w, false), 0);
    CHECK(matches(got, 64 * BS, 2 * BS, 1));
    free(got);
    CHECK_EQ(ships() - s0, 0);
    CHECK_EQ(proxy_writes() - w0, 0);
    CHECK_EQ(proxy_reads() - r0, 0);
    agent_vol_put(h);
    teardown();
}

/* Dirty blocks overlay cluster data in one read, and the map tells the
 * truth: dirty data DATA, dirty zeroes ZERO, cluster holes HOLE. */
TEST(overlay_dirty_on_cluster_data)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    /* Blocks 0-15 hold data in the cluster (shipped, then clean here). */
    CHECK_EQ(do_write(h, 0, 16 * BS, 9, 0), 0);
    CHECK_EQ(do_flush(h), 0);
    CHECK(cluster_matches(0, 16 * BS, 9));
    CHECK_EQ(vol_status_num("dirty_extents"), 0);
    CHECK_EQ(do_write(h, 4 * BS, 2 * BS, 2, 0), 0);
    CHECK_EQ(do_op(agent_vol_zero, h, 7 * BS, BS), 0);
    CHECK_EQ(do_op(agent_vol_trim, h, 18 * BS, BS), 0);
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(h, 0, 24 * BS, &got, &w, true), 0);
    CHECK(matches(got, 0, 4 * BS, 9));
    CHECK(matches(got + 4 * BS, 4 * BS, 2 * BS, 2));
    CHECK(matches(got + 6 * BS, 6 * BS, BS, 9));
    CHECK(is_zero(got + 7 * BS, BS));
    CHECK(matches(got + 8 * BS, 8 * BS, 8 * BS, 9));
    CHECK(is_zero(got + 16 * BS, 8 * BS));
    free(got);
    /* DATA 0-6, ZERO 7, DATA 8-15, HOLE 16-17, ZERO 18, HOLE 19-23 */
    CHECK_EQ(w.req.n_ext, 6);
    CHECK(w.ext[0].off == 0 && w.ext[0].len == 7 * BS && w.ext[0].kind == AGENT_VOL_EXT_DATA);
    CHECK(w.ext[1].off == 7 * BS && w.ext[1].len == BS && w.ext[1].kind == AGENT_VOL_EXT_ZERO);
    CHECK(w.ext[2].len == 8 * BS && w.ext[2].kind == AGENT_VOL_EXT_DATA);
    CHECK(w.ext[3].off == 16 * BS && w.ext[3].kind == AGENT_VOL_EXT_HOLE);
    CHECK(w.ext[4].off == 18 * BS && w.ext[4].kind == AGENT_VOL_EXT_ZERO);
    CHECK(w.ext[5].len == 5 * BS && w.ext[5].kind == AGENT_VOL_EXT_HOLE);
    /* BLOCK_STATUS overlays the same way. */
    w_init(&w, 0, 24 * BS);
    w.req.ext = w.ext;
    w.req.max_ext = 3;
    agent_vol_block_status(h, &w.req);
    CHECK_EQ(wait_w(&w, 5000), 0);
    CHECK_EQ(w.req.n_ext, 3); /* stops short when max_ext runs out */
    CHECK(w.ext[1].kind == AGENT_VOL_EXT_ZERO && w.ext[2].kind == AGENT_VOL_EXT_DATA);
    agent_vol_put(h);
    teardown();
}

/* Reads carry the highest raft index acked to the agent (C7): after a
 * flush it covers the entry that committed the write, and a read asks the
 * proxy for at least that. */
TEST(reads_carry_min_index)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    double idx0 = agent_cluster_status_num(cl, "raft.applied_index");
    CHECK(idx0 > 0);
    CHECK_EQ(do_write(h, 0, BS, 3, 0), 0);
    CHECK_EQ(do_flush(h), 0);
    double idx = vol_status_num("max_raft_index"); /* what every read sends as min_index */
    CHECK(idx > idx0);                               /* the write's commit came later */
    CHECK(idx <= agent_cluster_status_num(cl, "raft.applied_index"));
    struct waiter w = {0};
    uint8_t *got;
    double r0 = proxy_reads();
    CHECK_EQ(do_read(h, 0, 2 * BS, &got, &w, false), 0); /* clean now: from the cluster */
    CHECK(matches(got, 0, BS, 3));
    CHECK(is_zero(got + BS, BS));
    free(got);
    CHECK_EQ(proxy_reads() - r0, 1);
    agent_vol_put(h);
    teardown();
}

/* ---- Unaligned writes (read-modify-write) ------------------------------- */

/* MODEL gets the bytes write (OFF, LEN, SEED) puts there. */
static void model_write(uint8_t *model, uint64_t base, uint64_t off, uint64_t len, uint8_t seed)
{
    fill(model + (off - base), off, len, seed);
}

/* [OFF, OFF+LEN) reads back as MODEL (which starts at BASE). */
static bool reads_as(struct agent_vol *h, uint64_t off, uint64_t len, const uint8_t *model,
                     uint64_t base)
{
    struct waiter w = {0};
    uint8_t *got = NULL;
    bool ok = do_read(h, off, len, &got, &w, false) == 0 &&
              memcmp(got, model + (off - base), len) == 0;
    free(got);
    return ok;
}

/* Sub-block writes land exactly on their bytes: in the journal, once
 * shipped (the partial blocks then come from the cluster), across block
 * edges, and at the volume's last byte. */
TEST(unaligned_writes_rmw)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    const uint64_t base = 10 * BS, span = 8 * BS;
    uint8_t *model = calloc(1, span);
    CHECK_EQ(do_write(h, base, span, 1, 0), 0);
    model_write(model, base, base, span, 1);
    CHECK_EQ(do_write(h, base + 50, 100, 2, 0), 0);          /* inside one dirty block */
    model_write(model, base, base + 50, 100, 2);
    CHECK(reads_as(h, base, span, model, base));
    CHECK_EQ(do_flush(h), 0);                                 /* now clean: the cluster has it */
    CHECK(wait_cluster(base + BS, BS, 1, 3000));
    CHECK_EQ(vol_status_num("dirty_bytes"), 0);
    CHECK_EQ(do_write(h, base + BS + 1, 1, 3, 0), 0);         /* one byte */
    model_write(model, base, base + BS + 1, 1, 3);
    CHECK_EQ(do_write(h, base + 2 * BS + 512, 3 * BS, 4, 0), 0); /* head, 2 whole, tail */
    model_write(model, base, base + 2 * BS + 512, 3 * BS, 4);
    CHECK_EQ(do_write(h, base + 6 * BS - 7, 14, 5, AGENT_VOL_REQ_FUA), 0); /* across an edge */
    model_write(model, base, base + 6 * BS - 7, 14, 5);
    CHECK(reads_as(h, base, span, model, base));
    CHECK_EQ(do_flush(h), 0);
    struct cluster_view cv;
    CHECK(cluster_get(base, span, &cv));
    CHECK(memcmp(cv.data, model, span) == 0);
    cluster_put(&cv);
    /* the volume's last bytes */
    uint8_t tailm[BS] = {0};
    CHECK_EQ(do_write(h, VOL_SIZE - 10, 10, 6, 0), 0);
    model_write(tailm, VOL_SIZE - BS, VOL_SIZE - 10, 10, 6);
    CHECK(reads_as(h, VOL_SIZE - BS, BS, tailm, VOL_SIZE - BS));
    free(model);
    agent_vol_put(h);
    teardown();
}

/* Overlapping writes in flight together, unaligned and aligned, apply one
 * after another in arrival order, never torn: each RMW reads what the one
 * before it wrote.  All are submitted before the reactor runs, so every
 * RMW's read is still in flight when the next request arrives. */
TEST(unaligned_overlapping_in_flight)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    const uint64_t base = 40 * BS, span = 4 * BS;
    uint8_t *model = calloc(1, span);
    CHECK_EQ(do_write(h, base, span, 10, 0), 0);
    model_write(model, base, base, span, 10);
    CHECK_EQ(do_flush(h), 0);
    static struct waiter ws[8];
    struct { uint64_t off, len; } ops[8] = {
        {base + 100, 1000},          /* RMW A */
        {base + 600, 1000},          /* RMW B overlaps A */
        {base + 2 * BS, BS},         /* aligned, elsewhere: not held up */
        {base, BS},                  /* aligned over A's block: waits for A and B */
        {base + 300, 200},           /* RMW after it: sees it */
        {base + BS - 10, 20},        /* RMW across blocks 0 and 1 */
        {base + BS, 2 * BS},         /* aligned over block 1 and 2 */
        {base + 3 * BS + 5, 5},      /* RMW alone */
    };
    for (int i = 0; i < 8; i++) {
        submit_write(&ws[i], h, ops[i].off, ops[i].len, (uint8_t)(20 + i), 0);
        CHECK(!ws[i].done); /* never synchronous */
        model_write(model, base, ops[i].off, ops[i].len, (uint8_t)(20 + i));
    }
    for (int i = 0; i < 8; i++) CHECK_EQ(wait_w(&ws[i], 5000), 0);
    CHECK(reads_as(h, base, span, model, base));
    CHECK_EQ(do_flush(h), 0);
    CHECK(reads_as(h, base, span, model, base));
    for (int i = 0; i < 8; i++) w_free(&ws[i]);
    free(model);
    agent_vol_put(h);
    teardown();
}

/* An RMW whose read fails (the cluster is gone) fails as a whole: nothing
 * reaches the journal, and the old bytes stay, also for the aligned write
 * that waited behind it. */
TEST(unaligned_failure_leaves_old_bytes)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    const uint64_t base = 60 * BS;
    CHECK_EQ(do_write(h, base, 2 * BS, 30, 0), 0);
    CHECK_EQ(do_flush(h), 0);
    CHECK(wait_cluster(base, 2 * BS, 30, 3000));
    CHECK_EQ(vol_status_num("dirty_bytes"), 0);
    CHECK_EQ(agent_cluster_proxy_stop(cl, 0), 0);
    struct waiter a = {0}, b = {0};
    submit_write(&a, h, base + 1000, BS, 31, 0);  /* needs both blocks from the cluster */
    submit_write(&b, h, base + BS, BS, 32, 0);    /* aligned, waits for A's blocks */
    int ea = wait_w(&a, 8000);
    CHECK(ea == -EIO || ea == -ETIMEDOUT);
    CHECK_EQ(wait_w(&b, 2000), 0);                /* then goes on into the journal */
    CHECK_EQ(vol_status_num("dirty_bytes"), BS); /* B only: A appended nothing */
    CHECK_EQ(agent_cluster_proxy_start(cl, 0, NULL, true), 0);
    CHECK(wait_proxy_up(5000));
    struct waiter r = {0};
    uint8_t *got = NULL;
    CHECK_EQ(do_read(h, base, 2 * BS, &got, &r, false), 0);
    CHECK(matches(got, base, BS, 30));            /* A's block: old */
    CHECK(matches(got + BS, base + BS, BS, 32));  /* B's */
    free(got);
    w_free(&a);
    w_free(&b);
    agent_vol_put(h);
    teardown();
}

static struct agent_vol *grown_h;

static bool new_open_sees_growth(void)
{
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    if (!h) return false;
    bool grown = agent_vol_info(h)->size == 2 * (uint64_t)VOL_SIZE;
    if (grown) grown_h = h;
    else agent_vol_put(h);
    return grown;
}

/* A volume grown while attached: new handles see the new size within
 * AGENT_VOL_SIZE_CHECK_MS and can write past the old end; a handle keeps
 * the size it was opened with. */
TEST(grown_volume_new_handles_see_it)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(agent_vol_info(h)->size, VOL_SIZE);
    CHECK_EQ(do_write(h, VOL_SIZE, BS, 1, 0), -ENOSPC);
    CHECK_EQ(agent_cluster_resize_volume(cl, "vol-a", 2 * (uint64_t)VOL_SIZE), 0);
    grown_h = NULL;
    CHECK(wait_for(new_open_sees_growth, 5000));
    CHECK_EQ(agent_vol_info(h)->size, VOL_SIZE);
    CHECK_EQ(do_write(grown_h, VOL_SIZE, BS, 2, 0), 0);
    CHECK_EQ(do_flush(grown_h), 0);
    CHECK(cluster_matches(VOL_SIZE, BS, 2));
    agent_vol_put(grown_h);
    agent_vol_put(h);
    teardown();
}

/* Bad requests get clean errors, never a crash. */
TEST(bad_requests_rejected)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(do_write(h, 100, 0, 1, 0), -EINVAL);          /* zero length */
    CHECK_EQ(do_write(h, VOL_SIZE, BS, 1, 0), -ENOSPC);
    CHECK_EQ(do_write(h, VOL_SIZE - 100, 512, 1, 0), -ENOSPC); /* unaligned, past the end */
    CHECK_EQ(do_op(agent_vol_trim, h, VOL_SIZE - BS, 2 * BS), -EINVAL);
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(h, 0, 0, &got, &w, false), -EINVAL);
    free(got);
    CHECK_EQ(do_read(h, VOL_SIZE - BS, 2 * BS, &got, &w, false), -EINVAL);
    free(got);
    int err = 0;
    CHECK(!open_vol("missing", false, &err));
    CHECK_EQ(err, -ENOENT);
    agent_vol_put(h);
    teardown();
}

/* ---- Shipping triggers ---------------------------------------------------- */

/* Above the high-water mark, dirty data ships without a flush. */
TEST(ships_on_high_water)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    double f0 = agent_flushes();
    for (int i = 0; i < 20; i++)
        CHECK_EQ(do_write(h, (uint64_t)i * 256 * 1024, 256 * 1024, 4, 0), 0);
    CHECK(wait_cluster(0, 20 * 256 * 1024, 4, 5000));
    CHECK_EQ(agent_flushes() - f0, 0);
    agent_vol_put(h);
    teardown();
}

/* Scattered dirty blocks travel together: one VOL_WRITE carries up to
 * ship_bytes of them as a scattered write (one blob at the proxy), ZERO
 * ranges travel on their own, and every block lands where it belongs. */
TEST(scattered_blocks_ship_together)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    const unsigned nblk = 40, per_ship = (unsigned)(cfg.ship_bytes / BS); /* 16 */
    double s0 = ships(), b0 = agent_cluster_status_num(cl, "index.blobs");
    for (unsigned i = 0; i < nblk; i++)
        CHECK_EQ(do_write(h, (uint64_t)i * 3 * BS, BS, 40, 0), 0);
    CHECK_EQ(do_op(agent_vol_zero, h, 4 * BS, BS), 0); /* between two data blocks */
    CHECK_EQ(do_flush(h), 0);
    /* 3 data writes, not 40, and 1 zero: each data write is one blob, so
     * its blocks, three apart, travelled as one scattered write. */
    CHECK_EQ(ships() - s0, (nblk + per_ship - 1) / per_ship + 1);
    CHECK_EQ(agent_cluster_status_num(cl, "index.blobs") - b0, (nblk + per_ship - 1) / per_ship);
    struct cluster_view cv;
    CHECK(cluster_get(0, 3 * nblk * BS, &cv));
    bool ok = true;
    for (unsigned i = 0; i < nblk; i++) {
        uint64_t off = (uint64_t)i * 3 * BS;
        ok = ok && matches(cv.data + off, off, BS, 40) && cv.kind[i * 3] == WIRE_MAP_DATA;
        if (i * 3 + 1 != 4) ok = ok && cv.kind[i * 3 + 1] == WIRE_MAP_HOLE;
    }
    ok = ok && cv.kind[4] == WIRE_MAP_ZERO;
    cluster_put(&cv);
    CHECK(ok);
    /* Read back through the agent after the cache is clean. */
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(h, 0, 3 * nblk * BS, &got, &w, false), 0);
    for (unsigned i = 0; i < nblk; i++)
        CHECK(matches(got + (uint64_t)i * 3 * BS, (uint64_t)i * 3 * BS, BS, 40));
    free(got);
    /* Picking resumes after the last ship (block 118) and wraps to 0: the
     * blocks on either side of the wrap must not share a write whose
     * ranges would then descend (the proxy would refuse it, EINVAL). */
    for (unsigned i = 0; i < 10; i++) {
        CHECK_EQ(do_write(h, (uint64_t)i * 3 * BS, BS, 41, 0), 0);
        CHECK_EQ(do_write(h, (uint64_t)(300 + i * 3) * BS, BS, 41, 0), 0);
    }
    CHECK_EQ(do_flush(h), 0);
    CHECK(cluster_get(0, 330 * BS, &cv));
    for (unsigned i = 0; i < 10 && ok; i++) {
        ok = matches(cv.data + (uint64_t)i * 3 * BS, (uint64_t)i * 3 * BS, BS, 41);
        uint64_t off = (uint64_t)(300 + i * 3) * BS;
        ok = ok && matches(cv.data + off, off, BS, 41);
    }
    cluster_put(&cv);
    CHECK(ok);
    agent_vol_put(h);
    teardown();
}

/* Data older than flush_age_ms ships by itself. */
TEST(ships_on_age)
{
    setup();
    cfg.flush_age_ms = 150;
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    double s0 = ships();
    CHECK_EQ(do_write(h, 5 * BS, BS, 5, 0), 0);
    CHECK_EQ(ships() - s0, 0); /* not yet */
    CHECK(wait_cluster(5 * BS, BS, 5, 3000));
    agent_vol_put(h);
    teardown();
}

/* ---- FLUSH, FUA, multi-conn ------------------------------------------------ */

/* FLUSH waits for a write completed before it and not for one completed
 * after it (C1).  The proxy holds every reply 300 ms and the blob servers
 * theirs 1 s: A, a WRITE_ZEROES (index only, no blob), is acked after
 * 300 ms, B, data written after the flush, only after its blobs are. */
TEST(flush_is_a_barrier_over_earlier_writes)
{
    setup();
    copts.proxy_fault.delay_ms = 300;
    copts.blob_fault.delay_ms = 1000;
    cfg.io_timeout_ms = 6000; /* a ship waits 2 s before its outcome is unknown */
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    double s0 = ships(), w0 = proxy_writes();
    CHECK_EQ(do_op(agent_vol_zero, h, 0, BS), 0);       /* A, before the flush */
    struct waiter f = {0};
    w_init(&f, 0, 0);
    agent_vol_flush(h, &f.req);
    pump(150);
    CHECK(!f.done);                                      /* A is not acked yet */
    CHECK_EQ(proxy_writes() - w0, 1);                    /* but the proxy has it */
    CHECK_EQ(do_write(h, 100 * BS, BS, 7, 0), 0);       /* B, after the flush */
    pump(50);
    CHECK_EQ(ships() - s0, 2);                           /* B shipped too */
    CHECK(!f.done);
    CHECK_EQ(wait_w(&f, 3000), 0);                       /* A acked */
    CHECK_EQ(status_num("ships_in_flight"), 1);          /* B still unacked */
    CHECK_EQ(do_flush(h), 0);
    CHECK(cluster_matches(100 * BS, BS, 7));
    CHECK_EQ(cluster_kind(0), WIRE_MAP_ZERO);
    agent_vol_put(h);
    teardown();
}

/* A FUA write completes only once the cluster acked it (C2).  The blob
 * servers hold their replies 500 ms. */
TEST(fua_waits_for_the_cluster)
{
    setup();
    copts.blob_fault.delay_ms = 500;
    cfg.io_timeout_ms = 3000;
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    double w0 = proxy_writes();
    struct waiter w = {0};
    submit_write(&w, h, 8 * BS, 2 * BS, 8, AGENT_VOL_REQ_FUA);
    pump(150);
    CHECK(!w.done);
    CHECK_EQ(proxy_writes() - w0, 1);                    /* shipped at once, not yet committed */
    CHECK_EQ(cluster_kind(8), WIRE_MAP_HOLE);
    CHECK_EQ(wait_w(&w, 3000), 0);
    CHECK(cluster_matches(8 * BS, 2 * BS, 8));
    w_free(&w);
    agent_vol_put(h);
    teardown();
}

/* Three connections share one cache: write on A, flush on B, read on C
 * behaves as on one connection (C8). */
TEST(multi_conn_shares_the_cache)
{
    setup();
    CHECK(start() == 0);
    uint64_t g0 = vol_gen();
    struct agent_vol *a = open_vol("vol-a", false, NULL);
    struct agent_vol *b = open_vol("vol-a", false, NULL);
    struct agent_vol *c = open_vol("vol-a", false, NULL);
    CHECK(a && b && c && a != b);
    CHECK_EQ(vol_gen(), g0 + 1); /* one attach for the three */
    CHECK_EQ(do_write(a, 30 * BS, 4 * BS, 10, 0), 0);
    CHECK_EQ(do_flush(b), 0);
    CHECK(cluster_matches(30 * BS, 4 * BS, 10));
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(c, 30 * BS, 4 * BS, &got, &w, false), 0);
    CHECK(matches(got, 30 * BS, 4 * BS, 10));
    free(got);
    agent_vol_put(a);
    agent_vol_put(b);
    agent_vol_put(c);
    teardown();
}

/* A read-only handle reads the shared cache but may not write. */
TEST(read_only_handle)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *rw = open_vol("vol-a", false, NULL);
    struct agent_vol *ro = open_vol("vol-a", true, NULL);
    CHECK(rw && ro);
    CHECK(agent_vol_info(ro)->read_only);
    CHECK_EQ(do_write(rw, 0, BS, 11, 0), 0);
    CHECK_EQ(do_write(ro, 0, BS, 12, 0), -EPERM);
    CHECK_EQ(do_op(agent_vol_trim, ro, 0, BS), -EPERM);
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(ro, 0, BS, &got, &w, false), 0);
    CHECK(matches(got, 0, BS, 11));
    free(got);
    agent_vol_put(ro);
    agent_vol_put(rw);
    teardown();
}

/* Zeroes and trims ship as index-only writes; afterwards the cluster's map
 * says ZERO and HOLE. */
TEST(zero_and_trim_ship_index_only)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    double s0 = ships(), b0 = agent_cluster_status_num(cl, "index.blobs");
    CHECK_EQ(do_write(h, 0, 8 * BS, 13, 0), 0);
    CHECK_EQ(do_op(agent_vol_zero, h, 2 * BS, 2 * BS), 0);
    CHECK_EQ(do_op(agent_vol_trim, h, 5 * BS, BS), 0);
    CHECK_EQ(do_flush(h), 0);
    CHECK(cluster_zero(2 * BS, 2 * BS));
    CHECK(cluster_zero(5 * BS, BS));
    CHECK(cluster_matches(6 * BS, 2 * BS, 13));
    CHECK_EQ(cluster_kind(2), WIRE_MAP_ZERO);
    CHECK_EQ(cluster_kind(3), WIRE_MAP_ZERO);
    CHECK_EQ(cluster_kind(5), WIRE_MAP_HOLE);
    CHECK_EQ(cluster_kind(6), WIRE_MAP_DATA);
    /* One data write (blocks 0-1, 4, 6-7: one blob), one ZERO, one TRIM:
     * the zero and the trim made no blob. */
    CHECK_EQ(ships() - s0, 3);
    CHECK_EQ(agent_cluster_status_num(cl, "index.blobs") - b0, 1);
    agent_vol_put(h);
    teardown();
}

/* ---- Ordering and back-pressure ------------------------------------------- */

static double ships_at_start;
static bool second_ship_out(void)
{
    return ships() - ships_at_start >= 2;
}
static bool third_ship_out(void)
{
    return ships() - ships_at_start >= 3;
}

static bool vol_matches(uint64_t id, uint64_t off, uint64_t len, uint8_t seed);

/* Volumes take turns on the shared links (base/fair.h): a lone volume puts
 * all its ships in flight at once, but while another volume has a ship in
 * flight their ship bytes together stay within AGENT_VOL_FAIR_CAP (1 MiB;
 * a volume with nothing in flight always gets one), and once the other
 * volume is done the first one is alone again.  The blob servers hold
 * their replies 2 s, so what went out in the first 300 ms is what was in
 * flight at once.  Every byte of both volumes lands. */
TEST(volumes_take_turns_within_the_cap)
{
    setup();
    copts.blob_fault.delay_ms = 2000;
    cfg.io_timeout_ms = 9000; /* a ship waits 3 s before its outcome is unknown */
    CHECK(start() == 0);
    struct agent_cluster_vol volb;
    CHECK_EQ(agent_cluster_create_volume(cl, "vol-b", VOL_SIZE), 0);
    CHECK_EQ(agent_cluster_attach(cl, "vol-b", "agent-1", false, false), 0);
    CHECK_EQ(agent_cluster_volume(cl, "vol-b", &volb), 0);
    struct agent_vol *ha = open_vol("vol-a", false, NULL);
    CHECK(ha);
    struct agent_vol *hb = open_vol("vol-b", false, NULL);
    CHECK(hb);
    const uint64_t ship = cfg.ship_bytes; /* 64 KiB */
    /* Alone: 32 ships (AGENT_VOL_MAX_SHIPS, 2 MiB) at once. */
    for (unsigned i = 0; i < 32; i++) CHECK_EQ(do_write(ha, i * ship, ship, 50, 0), 0);
    double s0 = ships();
    struct waiter fa = {0}, fb = {0};
    w_init(&fa, 0, 0);
    agent_vol_flush(ha, &fa.req);
    pump(300);
    CHECK_EQ(ships() - s0, 32);
    CHECK_EQ(wait_w(&fa, 5000), 0);
    /* vol-b's one ship in flight, then vol-a's 32: 4 KiB + 15 x 64 KiB
     * fit in 1 MiB, the 16th would not. */
    CHECK_EQ(do_write(hb, 0, BS, 51, 0), 0);
    s0 = ships();
    w_init(&fb, 0, 0);
    agent_vol_flush(hb, &fb.req);
    pump(50);
    CHECK_EQ(ships() - s0, 1);
    for (unsigned i = 0; i < 32; i++) CHECK_EQ(do_write(ha, i * ship, ship, 52, 0), 0);
    s0 = ships();
    w_init(&fa, 0, 0);
    agent_vol_flush(ha, &fa.req);
    pump(300);
    CHECK_EQ(ships() - s0, 15);
    CHECK(!fa.done);
    /* vol-b's ship acked: vol-a is alone and the rest go at once, long
     * before its first ships are acked. */
    CHECK_EQ(wait_w(&fb, 5000), 0);
    pump(100);
    CHECK_EQ(ships() - s0, 32);
    CHECK_EQ(wait_w(&fa, 5000), 0);
    CHECK(vol_matches(vol.id, 0, 32 * ship, 52));
    CHECK(vol_matches(volb.id, 0, BS, 51));
    agent_vol_put(ha);
    agent_vol_put(hb);
    teardown();
}

/* A block is never shipped while an earlier ship of it is in flight.  The
 * blob servers hold their replies 600 ms, so a data write stays in flight
 * that long. */
TEST(no_second_ship_of_a_block_in_flight)
{
    setup();
    copts.blob_fault.delay_ms = 600;
    cfg.io_timeout_ms = 6000;
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    ships_at_start = ships();
    CHECK_EQ(do_write(h, 40 * BS, BS, 14, 0), 0);
    struct waiter f1 = {0}, f2 = {0};
    w_init(&f1, 0, 0);
    agent_vol_flush(h, &f1.req);
    pump(100);
    CHECK_EQ(ships() - ships_at_start, 1);            /* v1 in flight */
    CHECK_EQ(do_write(h, 40 * BS, BS, 15, 0), 0);     /* v2 while v1 is in flight */
    w_init(&f2, 0, 0);
    agent_vol_flush(h, &f2.req);
    pump(200);
    CHECK_EQ(ships() - ships_at_start, 1);            /* v2 waits */
    CHECK(!f1.done && !f2.done);
    CHECK(wait_for(second_ship_out, 3000));           /* v1 acked: now v2 goes */
    CHECK(!f1.done);                                  /* f1 covered v1, now superseded by v2 */
    CHECK_EQ(wait_w(&f1, 3000), 0);
    CHECK_EQ(wait_w(&f2, 3000), 0);
    CHECK(cluster_matches(40 * BS, BS, 15));
    agent_vol_put(h);
    teardown();
}

/* The same rule when the block in flight is one range of a scattered
 * write: its new version waits for that whole write, while a block that
 * is not in flight ships at once. */
TEST(no_second_ship_of_a_scattered_block_in_flight)
{
    setup();
    copts.blob_fault.delay_ms = 600;
    cfg.io_timeout_ms = 6000;
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    ships_at_start = ships();
    /* Live blob records (a write resent after an unknown outcome, which a
     * loaded machine can provoke, leaves its first blob dead, for GC). */
    double b0 = agent_cluster_status_num(cl, "index.blobs") -
                agent_cluster_status_num(cl, "index.gc_pending");
    for (uint64_t b = 10; b <= 30; b += 10) CHECK_EQ(do_write(h, b * BS, BS, 16, 0), 0);
    struct waiter f1 = {0}, f2 = {0};
    w_init(&f1, 0, 0);
    agent_vol_flush(h, &f1.req);
    pump(100);
    CHECK_EQ(ships() - ships_at_start, 1);            /* one scattered write for the three */
    CHECK_EQ(do_write(h, 20 * BS, BS, 17, 0), 0);     /* v2 of its middle range */
    CHECK_EQ(do_write(h, 50 * BS, BS, 17, 0), 0);     /* not in flight */
    w_init(&f2, 0, 0);
    agent_vol_flush(h, &f2.req);
    pump(200);
    CHECK_EQ(ships() - ships_at_start, 2);            /* block 50 went, v2 of 20 waits */
    CHECK(wait_for(third_ship_out, 3000));            /* the scattered write acked: v2 goes */
    CHECK_EQ(wait_w(&f1, 3000), 0);
    CHECK_EQ(wait_w(&f2, 3000), 0);
    CHECK(cluster_matches(10 * BS, BS, 16));
    CHECK(cluster_matches(20 * BS, BS, 17));
    CHECK(cluster_matches(30 * BS, BS, 16));
    CHECK(cluster_matches(50 * BS, BS, 17));
    double live = agent_cluster_status_num(cl, "index.blobs") -
                  agent_cluster_status_num(cl, "index.gc_pending");
    agent_vol_put(h);
    CHECK_EQ(live - b0, 3); /* one live blob per write */
    teardown();
}

/* When the journal is full, writes wait (never dropped) and complete as
 * shipping frees space.  The blob servers hold their replies 1 s, so the
 * ships that would free space stay in flight meanwhile. */
TEST(backpressure_when_journal_full)
{
    setup();
    copts.blob_fault.delay_ms = 1000;
    cfg.cache_bytes = 4u << 20;
    cfg.io_timeout_ms = 6000;
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    static struct waiter ws[64];
    int n = 0, waiting = -1;
    for (; n < 64; n++) {
        submit_write(&ws[n], h, (uint64_t)n * 128 * 1024, 128 * 1024, 16, 0);
        if (!run_until(&ws[n].done, 300)) {
            waiting = n;
            break;
        }
        CHECK_EQ(ws[n].err, 0);
    }
    CHECK(waiting > 0);                   /* the journal filled up */
    CHECK(status_num("ships_in_flight") > 0);
    CHECK_EQ(wait_w(&ws[waiting], 5000), 0);
    CHECK_EQ(do_flush(h), 0);
    CHECK(wait_cluster(0, (uint64_t)(waiting + 1) * 128 * 1024, 16, 3000));
    for (int i = 0; i <= waiting; i++) w_free(&ws[i]);
    agent_vol_put(h);
    teardown();
}

/* With the cluster unreachable (the proxy stopped), a write waiting for
 * journal space fails with EIO after io_timeout_ms; acked data stays and
 * ships when the proxy is back. */
TEST(waiting_write_times_out_then_recovers)
{
    setup();
    cfg.cache_bytes = 4u << 20;
    cfg.io_timeout_ms = 1500; /* a ship of the 4 MiB backlog may take 500 ms */
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(agent_cluster_proxy_stop(cl, 0), 0);
    static struct waiter ws[64];
    int n = 0, waiting = -1;
    for (; n < 64; n++) {
        submit_write(&ws[n], h, (uint64_t)n * 128 * 1024, 128 * 1024, 17, 0);
        if (!run_until(&ws[n].done, 200)) {
            waiting = n;
            break;
        }
        CHECK_EQ(ws[n].err, 0);
    }
    CHECK(waiting > 0);
    uint64_t t0 = util_mono_ms();
    CHECK_EQ(wait_w(&ws[waiting], 4000), -EIO);
    CHECK(util_mono_ms() - t0 >= 150);
    CHECK_EQ(agent_cluster_proxy_start(cl, 0, NULL, true), 0);
    CHECK(wait_proxy_up(5000)); /* the link reconnects with its own backoff */
    CHECK_EQ(do_flush(h), 0);
    CHECK(wait_cluster(0, (uint64_t)waiting * 128 * 1024, 17, 3000));
    for (int i = 0; i <= waiting; i++) w_free(&ws[i]);
    agent_vol_put(h);
    teardown();
}

/* ---- Restart -------------------------------------------------------------- */

/* Tear the registry down without shipping; a new one on the same cache
 * replays the journal: every acked write reads back, and all of it ships,
 * under a new attach generation (C4).  While one blob server is down the
 * proxy can place no blob and refuses data writes (EAGAIN, nothing
 * applied), which keeps the replayed data in the cache for the read. */
TEST(restart_replays_and_ships)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    uint64_t gen1 = vol_gen();
    double s0 = ships();
    CHECK_EQ(do_write(h, 0, 16 * BS, 20, 0), 0);
    CHECK_EQ(do_write(h, 4 * BS, 2 * BS, 21, 0), 0);       /* overwrite */
    CHECK_EQ(do_op(agent_vol_zero, h, 10 * BS, BS), 0);
    CHECK_EQ(do_write(h, 200 * BS, 64 * BS, 22, 0), 0);
    CHECK_EQ(ships() - s0, 0);
    agent_vol_put(h);
    stop_registry();
    CHECK_EQ(agent_cluster_blob_stop(cl, 0), 0);
    CHECK(start() == 0);
    h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK(vol_gen() > gen1);
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(h, 0, 16 * BS, &got, &w, false), 0);
    CHECK(matches(got, 0, 4 * BS, 20));
    CHECK(matches(got + 4 * BS, 4 * BS, 2 * BS, 21));
    CHECK(matches(got + 6 * BS, 6 * BS, 4 * BS, 20));
    CHECK(is_zero(got + 10 * BS, BS));
    free(got);
    CHECK_EQ(agent_cluster_blob_start(cl, 0, NULL), 0);
    CHECK(wait_cluster(200 * BS, 64 * BS, 22, 8000));      /* ships by itself */
    CHECK_EQ(do_flush(h), 0);
    CHECK(cluster_matches(4 * BS, 2 * BS, 21));
    CHECK(cluster_zero(10 * BS, BS));
    CHECK(cluster_matches(11 * BS, 5 * BS, 20));
    /* The first registry sent nothing, so every write the index took came
     * from the second, under its attach: nothing was refused as stale. */
    CHECK_EQ(status_num("reattaches"), 0);
    agent_vol_put(h);
    teardown();
}

/* A damaged acknowledged journal entry reads as EIO on its range, never
 * garbage; other blocks are fine; a rewrite heals the block (§3). */
TEST(damaged_entry_reads_eio)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    for (int i = 0; i < 4; i++) CHECK_EQ(do_write(h, (uint64_t)i * BS, BS, 30, 0), 0);
    agent_vol_put(h);
    stop_registry();
    char seg[600];
    snprintf(seg, sizeof(seg), "%s/%016llx/0000000000000001.seg", cache_dir,
             (unsigned long long)vol.id);
    int fd = open(seg, O_RDWR);
    CHECK(fd >= 0);
    uint64_t pos = JOURNAL_SEG_HDR + 2 * (JOURNAL_ENT_OVERHEAD + BS) + JOURNAL_ENT_HDR + 100;
    uint8_t b;
    CHECK(pread(fd, &b, 1, (off_t)pos) == 1);
    b ^= 0x20;
    CHECK(pwrite(fd, &b, 1, (off_t)pos) == 1);
    close(fd);
    CHECK(start() == 0);
    h = open_vol("vol-a", false, NULL);
    CHECK(h);
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(h, 2 * BS, BS, &got, &w, false), -EIO);
    free(got);
    CHECK_EQ(do_read(h, 0, 4 * BS, &got, &w, false), -EIO);
    free(got);
    CHECK_EQ(do_read(h, BS, BS, &got, &w, false), 0);
    CHECK(matches(got, BS, BS, 30));
    free(got);
    CHECK_EQ(do_flush(h), 0);                          /* LOST is not shipped */
    CHECK(cluster_matches(3 * BS, BS, 30));
    CHECK_EQ(cluster_kind(2), WIRE_MAP_HOLE);          /* never written: never garbage */
    CHECK_EQ(do_write(h, 2 * BS, BS, 31, 0), 0);       /* rewrite heals */
    CHECK_EQ(do_read(h, 0, 4 * BS, &got, &w, false), 0);
    CHECK(matches(got + 2 * BS, 2 * BS, BS, 31));
    free(got);
    CHECK_EQ(do_flush(h), 0);
    CHECK(cluster_matches(2 * BS, BS, 31));
    agent_vol_put(h);
    teardown();
}

/* Journal bytes that rot while the agent runs are caught when shipping
 * (every block is verified against the checksum taken at write time): the
 * block becomes LOST (reads EIO), garbage never reaches the cluster. */
TEST(corrupt_journal_block_is_never_shipped)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(do_write(h, 0, 4 * BS, 32, 0), 0);
    CHECK_EQ(do_write(h, 4 * BS, BS, 33, 0), 0);
    char seg[600];
    snprintf(seg, sizeof(seg), "%s/%016llx/0000000000000001.seg", cache_dir,
             (unsigned long long)vol.id);
    int fd = open(seg, O_RDWR);
    CHECK(fd >= 0);
    uint64_t pos = JOURNAL_SEG_HDR + JOURNAL_ENT_HDR + 2 * BS + 7; /* block 2 of the first write */
    uint8_t b;
    CHECK(pread(fd, &b, 1, (off_t)pos) == 1);
    b ^= 1;
    CHECK(pwrite(fd, &b, 1, (off_t)pos) == 1);
    close(fd);
    CHECK_EQ(do_flush(h), 0);
    CHECK_EQ(cluster_kind(2), WIRE_MAP_HOLE);          /* never sent: never garbage */
    CHECK(cluster_matches(0, 2 * BS, 32));              /* the rest of the run did ship */
    CHECK(cluster_matches(3 * BS, BS, 32));
    CHECK(cluster_matches(4 * BS, BS, 33));
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(h, 2 * BS, BS, &got, &w, false), -EIO);
    free(got);
    CHECK(status_num("lost_blocks") >= 1);
    agent_vol_put(h);
    teardown();
}

/* A journal with no readable segment header cannot be trusted at all: it
 * is kept for an operator and its volume refused, even read-only. */
TEST(unreadable_journal_refuses_volume)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(do_write(h, 0, BS, 34, 0), 0);
    agent_vol_put(h);
    stop_registry();
    char seg[600];
    snprintf(seg, sizeof(seg), "%s/%016llx/0000000000000001.seg", cache_dir,
             (unsigned long long)vol.id);
    int fd = open(seg, O_RDWR);
    CHECK(fd >= 0);
    static const uint8_t junk[JOURNAL_SEG_HDR];
    CHECK(pwrite(fd, junk, sizeof(junk), 0) == (ssize_t)sizeof(junk));
    close(fd);
    CHECK(start() == 0);
    int err = 0;
    CHECK(!open_vol("vol-a", true, &err));
    CHECK_EQ(err, -EIO);
    CHECK(!open_vol("vol-a", false, &err));
    CHECK_EQ(err, -EIO);
    CHECK(access(seg, F_OK) == 0);                     /* kept */
    teardown();
}

/* ---- Fencing and failures ------------------------------------------------- */

/* A write whose outcome is unknown (the connection dropped while the proxy
 * had it) is not simply resent: the volume is re-attached with a higher
 * generation first, then everything unacked is resent (C10).  The agent
 * closes its connection after every third frame it receives (HELLO and
 * attach answers, then a read's answer), and the blob servers hold their
 * replies 500 ms, so the write is still at the proxy when that happens. */
TEST(unknown_outcome_reattaches_before_resend)
{
    setup();
    copts.blob_fault.delay_ms = 500;
    cfg.fault.socket_failure_every = 3;
    /* Room for the re-attach and resend on a loaded sanitizer run: the
     * flush fails only after this long without progress. */
    cfg.io_timeout_ms = 6000;
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL); /* frames 1, 2 */
    CHECK(h);
    uint64_t gen1 = vol_gen();
    double w0 = proxy_writes();
    CHECK_EQ(do_write(h, 50 * BS, BS, 40, 0), 0);
    struct waiter f = {0};
    w_init(&f, 0, 0);
    agent_vol_flush(h, &f.req);                       /* ships the write */
    pump(100);
    CHECK_EQ(proxy_writes() - w0, 1);
    struct waiter r = {0};
    uint8_t *got;
    CHECK_EQ(do_read(h, 300 * BS, BS, &got, &r, false), 0); /* frame 3: connection closed */
    free(got);
    CHECK_EQ(wait_w(&f, 10000), 0);
    CHECK(proxy_writes() - w0 >= 2);                  /* resent ... */
    CHECK(vol_gen() > gen1);                          /* ... under a new generation */
    CHECK(status_num("reattaches") >= 1);
    CHECK(cluster_matches(50 * BS, BS, 40));
    agent_vol_put(h);
    teardown();
}

/* A write the proxy does not answer in time (a third of io_timeout_ms)
 * has an unknown outcome: re-attach, resend, and the flush still
 * completes.  The blob servers hold their replies 1.3 s; a send gives up
 * after 800 ms (plus up to 200 ms before its connection notices), and the
 * resend's replies are released with the first ones. */
TEST(unanswered_write_times_out_and_reattaches)
{
    setup();
    copts.blob_fault.delay_ms = 1300;
    cfg.io_timeout_ms = 2400;
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    uint64_t gen1 = vol_gen();
    double w0 = proxy_writes();
    CHECK_EQ(do_write(h, 60 * BS, BS, 41, 0), 0);
    struct waiter f = {0};
    w_init(&f, 0, 0);
    agent_vol_flush(h, &f.req);
    /* The flush rides through the timeout and the re-attach: the cluster
     * made progress, so it is not "unreachable". */
    CHECK_EQ(wait_w(&f, 5000), 0);
    CHECK(vol_gen() > gen1);
    CHECK(status_num("reattaches") >= 1);
    CHECK(proxy_writes() - w0 >= 2);
    CHECK(cluster_matches(60 * BS, BS, 41));
    agent_vol_put(h);
    teardown();
}

/* Another agent attached: the next write is refused as fenced, the volume
 * fails with EIO everywhere, and a restart does not re-attach it (C10).
 * The takeover is an operator's: force-detach the first agent (admin
 * API), then the second attaches read-write. */
TEST(efenced_fails_io_and_sticks)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(do_write(h, 0, BS, 50, 0), 0);
    CHECK_EQ(do_flush(h), 0);
    CHECK_EQ(agent_cluster_attach(cl, "vol-a", "agent-2", false, false), -EBUSY);
    CHECK_EQ(agent_cluster_attach(cl, "vol-a", "agent-2", false, true), 0);
    CHECK_EQ(start_other(), 0);
    struct agent_vol *h2 = open_on(vs2, "vol-a", false, NULL, 5000);
    CHECK(h2);
    CHECK(vol_attached_to("agent-2"));
    CHECK_EQ(do_write(h, BS, BS, 51, 0), 0);
    CHECK_EQ(do_flush(h), -EIO);
    CHECK_EQ(do_write(h, 2 * BS, BS, 52, 0), -EIO);
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(h, 0, BS, &got, &w, false), -EIO);
    free(got);
    pump(100);
    char marker[600];
    snprintf(marker, sizeof(marker), "%s/%016llx/FENCED", cache_dir, (unsigned long long)vol.id);
    CHECK(access(marker, F_OK) == 0);
    agent_vol_put(h);
    stop_registry();
    uint64_t gen = vol_gen();
    CHECK(start() == 0);
    pump(200);
    CHECK_EQ(vol_gen(), gen);                         /* not re-attached */
    CHECK(vol_attached_to("agent-2"));
    int err = 0;
    CHECK(!open_vol("vol-a", false, &err));
    CHECK_EQ(err, -EIO);
    agent_vol_put(h2);
    teardown();
}

/* A write sent before our own re-attach and committed after it is refused
 * as fenced: that is our doing, not another agent's, so the volume carries
 * on and resends (no false EIO).  The blob servers hold their replies
 * 1.3 s: the first write times out after 800 ms (to 1 s), the re-attach
 * commits at once, and both writes' blobs reach the index only after it. */
TEST(own_reattach_fencing_is_not_fatal)
{
    setup();
    copts.blob_fault.delay_ms = 1300;
    cfg.io_timeout_ms = 2400;
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    uint64_t gen1 = vol_gen();
    double fenced0 = proxy_fenced();
    CHECK_EQ(do_write(h, 0, BS, 42, 0), 0);
    struct waiter f = {0};
    w_init(&f, 0, 0);
    agent_vol_flush(h, &f.req);                       /* the first write ships */
    pump(400);
    CHECK_EQ(do_write(h, 100 * BS, BS, 43, 0), 0);    /* the second, in flight with it */
    CHECK_EQ(wait_w(&f, 5000), 0);
    CHECK(vol_gen() > gen1);                          /* our re-attach */
    CHECK(proxy_fenced() - fenced0 >= 1);             /* an older send refused at commit */
    CHECK(status_num("reattaches") >= 1);
    CHECK_EQ(do_flush(h), 0);
    CHECK(cluster_matches(0, BS, 42));
    CHECK(cluster_matches(100 * BS, BS, 43));
    agent_vol_put(h);
    teardown();
}

/* A re-attach refused because another agent holds the volume fences it:
 * the write's answer is late (blob servers hold theirs 1.5 s), and before
 * the agent gives up on it another agent takes the volume over. */
TEST(reattach_refused_busy_fences)
{
    setup();
    copts.blob_fault.delay_ms = 1500;
    cfg.io_timeout_ms = 2000; /* a send times out after 666 ms */
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(do_write(h, 0, BS, 44, 0), 0);
    struct waiter f = {0};
    w_init(&f, 0, 0);
    agent_vol_flush(h, &f.req);
    pump(50);
    CHECK_EQ(agent_cluster_attach(cl, "vol-a", "agent-2", false, true), 0);
    CHECK_EQ(start_other(), 0);
    struct agent_vol *h2 = open_on(vs2, "vol-a", false, NULL, 5000);
    CHECK(h2);
    CHECK(!f.done);                                   /* the taking over beat the timeout */
    CHECK_EQ(wait_w(&f, 5000), -EIO);
    CHECK_EQ(do_write(h, BS, BS, 45, 0), -EIO);
    CHECK(vol_attached_to("agent-2"));
    agent_vol_put(h2);
    agent_vol_put(h);
    teardown();
}

/* An fdatasync error on the journal fails the flush and stops writes (C15:
 * never retried and then acked); reads go on. */
TEST(journal_sync_error_fails_stop)
{
    setup();
    cfg.fault.fsync_eio_after = 1;
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(do_write(h, 0, BS, 46, 0), 0);
    CHECK_EQ(do_flush(h), -EIO);
    CHECK_EQ(do_write(h, BS, BS, 47, 0), -EIO);
    CHECK_EQ(do_flush(h), -EIO);
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(h, 0, BS, &got, &w, false), 0);
    CHECK(matches(got, 0, BS, 46));
    free(got);
    agent_vol_put(h);
    teardown();
}

static bool two_blob_servers_up(void)
{
    return agent_cluster_status_num(cl, "blob_servers_up") == 2;
}

/* EAGAIN on a write proves nothing was applied (the proxy answers it when
 * it has no partition with three blob servers up, before anything reached
 * raft): the agent resends as is, without fencing, until the write is
 * taken. */
TEST(eagain_on_write_resends)
{
    setup();
    cfg.io_timeout_ms = 5000;
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    uint64_t gen1 = vol_gen();
    double retries0 = status_num("retries"), w0 = proxy_writes();
    CHECK_EQ(agent_cluster_blob_stop(cl, 0), 0);
    CHECK(wait_for(two_blob_servers_up, 3000));
    CHECK_EQ(do_write(h, 70 * BS, BS, 60, 0), 0);
    struct waiter f = {0};
    w_init(&f, 0, 0);
    agent_vol_flush(h, &f.req);
    pump(300);
    CHECK(!f.done);
    CHECK(proxy_writes() - w0 >= 2);                  /* refused, and sent again */
    CHECK(status_num("retries") > retries0);
    CHECK_EQ(agent_cluster_blob_start(cl, 0, NULL), 0);
    CHECK_EQ(wait_w(&f, 8000), 0);
    CHECK(cluster_matches(70 * BS, BS, 60));
    CHECK_EQ(status_num("reattaches"), 0);
    CHECK_EQ(vol_gen(), gen1);
    agent_vol_put(h);
    teardown();
}

/* Every resend after an unknown outcome goes under a generation of its
 * own: each re-attach raises the generation by exactly one, and each one
 * is followed by exactly one more send of the write.  (The proxy's own
 * ETIMEDOUT answer, "proposed, fate unknown", takes the same path; a
 * single-proxy group never gives it.)  Timing as in the test above. */
TEST(unknown_outcome_fences_each_resend)
{
    setup();
    copts.blob_fault.delay_ms = 1300;
    cfg.io_timeout_ms = 2400;
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    uint64_t gen1 = vol_gen();
    double s0 = ships();
    CHECK_EQ(do_write(h, 70 * BS, BS, 60, 0), 0);
    struct waiter f = {0};
    w_init(&f, 0, 0);
    agent_vol_flush(h, &f.req);
    CHECK_EQ(wait_w(&f, 6000), 0);
    CHECK(cluster_matches(70 * BS, BS, 60));
    double re = status_num("reattaches");
    CHECK(re >= 1);
    CHECK_EQ(vol_gen(), gen1 + (uint64_t)re);         /* fenced each time */
    CHECK_EQ(ships() - s0, re + 1);                   /* one send per generation */
    agent_vol_put(h);
    teardown();
}

/* An attach whose answer is lost (the proxy took it, then the connection
 * closed: here the proxy closes every connection after its second frame)
 * is retried on a new connection until one is answered. */
TEST(lost_attach_answer_is_retried)
{
    setup();
    cfg.io_timeout_ms = 10000;
    CHECK(start() == 0);
    uint64_t gen0 = vol_gen();
    CHECK_EQ(agent_cluster_proxy_stop(cl, 0), 0);
    struct cfg_fault drop = {.socket_failure_every = 2}; /* HELLO, then the attach */
    CHECK_EQ(agent_cluster_proxy_start(cl, 0, &drop, false), 0);
    double retries0 = status_num("retries");
    struct open_w w = {.req = {.cb = on_open}};
    w.req.data = &w;
    agent_vols_open(vs, "vol-a", false, &w.req);
    pump(1000);
    CHECK(!w.done);
    CHECK(status_num("retries") - retries0 >= 2);
    CHECK_EQ(agent_cluster_proxy_stop(cl, 0), 0);
    CHECK_EQ(agent_cluster_proxy_start(cl, 0, NULL, true), 0);
    CHECK(run_until(&w.done, 8000));
    CHECK_EQ(w.err, 0);
    CHECK(w.h);
    CHECK(vol_gen() > gen0);
    CHECK(vol_attached_to("agent-1"));
    CHECK_EQ(do_write(w.h, 0, BS, 61, 0), 0);
    CHECK_EQ(do_flush(w.h), 0);
    CHECK(cluster_matches(0, BS, 61));
    agent_vol_put(w.h);
    teardown();
}

static bool two_paths_up(void)
{
    return status_num("proxies_up") == 2;
}

static double fenced_at_start;
static bool held_write_fenced(void)
{
    return proxy_fenced() > fenced_at_start;
}

/* The partition test's failure (test-partition-leader.sh: an agent fenced
 * by its own attach, then EIO for good).  The agent reaches the proxy on
 * two paths, the relay (which it uses: it answered last) and straight.
 * The relay's path is cut: a write sent on it times out, its outcome
 * unknown, so the agent re-attaches to fence it; that attach goes on the
 * cut path too, times out there (a third of io_timeout_ms), and is sent
 * again straight, which answers it: generation G + 1, and the write is
 * resent under it.  Then the path heals and the proxy receives what was
 * held: the old write (fenced at its commit) and the first copy of the
 * attach.  That copy must not raise the generation again: the agent goes
 * on writing under G + 1.  (Before an attach named the generation it
 * raises, the copy made it G + 2 and the agent's next write was refused as
 * fenced: "another agent attached the volume", every I/O failing EIO.) */
TEST(late_copy_of_own_attach_fences_nothing)
{
    setup();
    cfg.io_timeout_ms = 3000;
    CHECK(start() == 0);
    stop_registry();
    char via_relay[CFG_ADDR_MAX];
    CHECK_EQ(relay_start(via_relay, sizeof(via_relay)), 0);
    cfg.n_proxies = 2;
    util_strlcpy(cfg.proxies[0], via_relay, sizeof(cfg.proxies[0]));
    util_strlcpy(cfg.proxies[1], agent_cluster_proxy_addr(cl, 0), sizeof(cfg.proxies[1]));
    char err[256] = "";
    CHECK_EQ(agent_vols_new(rx, agent_cluster_cfg(cl), &cfg, NULL, "agent", &vs, err,
                            sizeof(err)), 0);
    CHECK(wait_for(two_paths_up, 5000)); /* the first request takes the first path */
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(do_write(h, 0, BS, 80, 0), 0);
    CHECK_EQ(do_flush(h), 0);                         /* through the relay */
    uint64_t g = vol_gen();
    relay.hold = true;
    CHECK_EQ(do_write(h, BS, BS, 81, 0), 0);
    CHECK_EQ(do_flush(h), 0);                         /* held, re-attached straight, resent */
    CHECK_EQ(status_num("reattaches"), 1);
    CHECK_EQ(vol_gen(), g + 1);
    fenced_at_start = proxy_fenced();
    relay_release();
    CHECK(wait_for(held_write_fenced, 5000));         /* the old write reached the proxy */
    pump(500);                                        /* and the attach behind it */
    CHECK_EQ(vol_gen(), g + 1);
    CHECK(vol_attached_to("agent-1"));
    CHECK_EQ(do_write(h, 2 * BS, BS, 82, 0), 0);
    CHECK_EQ(do_flush(h), 0);
    CHECK(cluster_matches(0, BS, 80));
    CHECK(cluster_matches(BS, BS, 81));
    CHECK(cluster_matches(2 * BS, BS, 82));
    CHECK_EQ(vol_gen(), g + 1);
    agent_vol_put(h);
    teardown();
}

/* With every proxy down, reads and flushes fail with ETIMEDOUT after
 * io_timeout_ms; when the proxy returns, I/O resumes by itself. */
TEST(unreachable_times_out_and_recovers)
{
    setup();
    /* A restarted proxy takes a moment to place blobs again, longer on
     * a loaded sanitizer run: the flush after it may wait this long. */
    cfg.io_timeout_ms = 3000;
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(agent_cluster_proxy_stop(cl, 0), 0);
    pump(50);
    struct waiter w = {0};
    uint8_t *got;
    uint64_t t0 = util_mono_ms();
    CHECK_EQ(do_read(h, 300 * BS, BS, &got, &w, false), -ETIMEDOUT);
    uint64_t dt = util_mono_ms() - t0;
    CHECK(dt >= 2900 && dt < 6000);
    free(got);
    CHECK_EQ(do_write(h, 80 * BS, BS, 61, 0), 0);     /* the journal still takes writes */
    CHECK_EQ(do_flush(h), -ETIMEDOUT);
    CHECK_EQ(agent_cluster_proxy_start(cl, 0, NULL, true), 0);
    CHECK(wait_proxy_up(5000)); /* the link reconnects with its own backoff */
    CHECK_EQ(do_read(h, 300 * BS, BS, &got, &w, false), 0);
    free(got);
    CHECK_EQ(do_flush(h), 0);
    CHECK(cluster_matches(80 * BS, BS, 61));
    agent_vol_put(h);
    teardown();
}

static bool some_proxy_leads(void)
{
    return agent_cluster_leader(cl) >= 0;
}

static bool three_proxies_up(void)
{
    return status_num("proxies_up") == 3;
}

/* Three proxies, one Raft group: every proxy serves the agent (followers
 * forward to the leader), and when the proxy the agent has been using (the
 * first it lists) goes away, its requests go to another one; I/O goes on
 * once the group has a leader again.  (The real proxy never answers an
 * agent "not the leader": it forwards instead.) */
TEST(requests_move_to_a_live_proxy)
{
    setup();
    copts.n_proxies = 3;
    cfg.io_timeout_ms = 5000;
    CHECK(start() == 0);
    CHECK_EQ(cfg.n_proxies, 3);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK(wait_for(three_proxies_up, 5000));
    CHECK_EQ(do_write(h, 0, 2 * BS, 35, 0), 0);
    CHECK_EQ(do_flush(h), 0);
    CHECK(cluster_matches(0, 2 * BS, 35));
    CHECK_EQ(agent_cluster_proxy_stop(cl, 0), 0);
    CHECK(wait_for(some_proxy_leads, 5000));
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(h, 0, 2 * BS, &got, &w, false), 0); /* clean: from the cluster */
    CHECK(matches(got, 0, 2 * BS, 35));
    free(got);
    CHECK_EQ(do_write(h, 8 * BS, BS, 36, AGENT_VOL_REQ_FUA), 0);
    CHECK_EQ(do_flush(h), 0);
    CHECK(cluster_matches(8 * BS, BS, 36));
    CHECK_EQ(status_num("proxies_up"), 2);
    agent_vol_put(h);
    teardown();
}

/* ---- Registry ------------------------------------------------------------- */

struct list_w {
    struct agent_vols_list_req req;
    int done, err;
    unsigned n;
    char names[4][64];
};

static void on_list(struct agent_vols_list_req *r, int err, const struct agent_vols_list_entry *v,
                    unsigned n)
{
    struct list_w *w = r->data;
    w->done = 1;
    w->err = err;
    w->n = n;
    for (unsigned i = 0; i < n && i < 4; i++) util_strlcpy(w->names[i], v[i].name, 64);
}

struct info_w {
    struct agent_vols_info_req req;
    int done, err;
    struct agent_vol_info info;
};

static void on_info(struct agent_vols_info_req *r, int err, const struct agent_vol_info *info)
{
    struct info_w *w = r->data;
    w->done = 1;
    w->err = err;
    if (info) w->info = *info;
}

/* NBD_OPT_LIST and NBD_OPT_INFO go to the cluster without attaching, and
 * see only the volumes attached to this agent. */
TEST(list_and_info)
{
    setup();
    CHECK(start() == 0);
    CHECK_EQ(agent_cluster_create_volume(cl, "vol-b", 1u << 20), 0);
    CHECK_EQ(agent_cluster_attach(cl, "vol-b", "agent-1", false, false), 0);
    CHECK_EQ(agent_cluster_create_volume(cl, "vol-c", 1u << 20), 0); /* nobody's */
    CHECK_EQ(agent_cluster_create_volume(cl, "vol-d", 1u << 20), 0);
    CHECK_EQ(agent_cluster_attach(cl, "vol-d", "agent-2", false, false), 0);
    uint64_t gen_a = vol_gen();
    struct list_w lw = {.req = {.cb = on_list}};
    lw.req.data = &lw;
    agent_vols_list(vs, &lw.req);
    CHECK(!lw.done);
    CHECK(run_until(&lw.done, 3000));
    CHECK_EQ(lw.err, 0);
    CHECK_EQ(lw.n, 2);
    CHECK(strcmp(lw.names[0], "vol-a") == 0 && strcmp(lw.names[1], "vol-b") == 0);
    struct info_w iw = {.req = {.cb = on_info}};
    iw.req.data = &iw;
    agent_vols_info(vs, "vol-b", &iw.req);
    CHECK(run_until(&iw.done, 3000));
    CHECK_EQ(iw.err, 0);
    CHECK_EQ(iw.info.size, 1u << 20);
    struct agent_cluster_vol vb;
    CHECK_EQ(agent_cluster_volume(cl, "vol-b", &vb), 0);
    CHECK_EQ(vb.generation, 0);                       /* nothing attached */
    CHECK_EQ(vol_gen(), gen_a);
    const char *absent[] = {"nope", "vol-c", "vol-d"};
    for (int i = 0; i < 3; i++) {
        memset(&iw, 0, sizeof(iw));
        iw.req.cb = on_info;
        iw.req.data = &iw;
        agent_vols_info(vs, absent[i], &iw.req);
        CHECK(run_until(&iw.done, 3000));
        CHECK_EQ(iw.err, -ENOENT);
    }
    int err = 0;
    CHECK(!open_vol("vol-d", false, &err));
    CHECK_EQ(err, -EACCES);
    CHECK(!open_vol("vol-c", true, &err)); /* a look-up: no such volume of ours */
    CHECK_EQ(err, -ENOENT);
    teardown();
}

struct watch_log {
    char what[16][AGENT_VOL_NAME_MAX + 16];
    unsigned n;
};

static void on_watch(void *arg, enum agent_vols_change what, const struct agent_vols_list_entry *e)
{
    struct watch_log *w = arg;
    if (w->n < 16)
        snprintf(w->what[w->n++], sizeof(w->what[0]), "%c %s%s%s",
                 what == AGENT_VOLS_ATTACHED ? '+' : what == AGENT_VOLS_DETACHED ? '-' : '~',
                 e->name, e->read_only ? " ro" : "", e->client[0] ? " c" : "");
}

static struct watch_log *watched;
static unsigned watch_want;
static bool watch_has(void)
{
    return watched->n >= watch_want;
}

/* The watch reports what is attached at start, then each attach, change
 * and detach within about AGENT_VOLS_WATCH_MS; a volume attached
 * read-only opens read-only (writes EPERM), and read-write not at all. */
TEST(watch_and_read_only)
{
    setup();
    CHECK(start() == 0);
    struct watch_log w = {0};
    watched = &w;
    agent_vols_watch(vs, on_watch, &w);
    watch_want = 1;
    CHECK(wait_for(watch_has, 3000));
    CHECK(strcmp(w.what[0], "+ vol-a") == 0);
    CHECK_EQ(agent_cluster_create_volume(cl, "vol-r", 1u << 20), 0);
    CHECK_EQ(agent_cluster_attach(cl, "vol-r", "agent-1", true, false), 0);
    watch_want = 2;
    CHECK(wait_for(watch_has, 3000));
    CHECK(strcmp(w.what[1], "+ vol-r ro") == 0);
    int err = 0;
    CHECK(!open_vol("vol-r", false, &err));
    CHECK_EQ(err, -EACCES);
    struct agent_vol *h = open_vol("vol-r", true, NULL);
    CHECK(h);
    CHECK(h && agent_vol_info(h)->read_only);
    CHECK_EQ(do_write(h, 0, BS, 90, 0), -EPERM);
    agent_vol_put(h);
    struct agent_cluster_vol rv;
    CHECK_EQ(agent_cluster_volume(cl, "vol-r", &rv), 0);
    CHECK(rv.read_only && strcmp(rv.attached_to, "agent-1") == 0 && !rv.writer[0]);
    /* Read-write now, then detached. */
    CHECK_EQ(agent_cluster_attach(cl, "vol-r", "agent-1", false, false), 0);
    watch_want = 3;
    CHECK(wait_for(watch_has, 3000));
    CHECK(strcmp(w.what[2], "~ vol-r") == 0);
    CHECK_EQ(agent_cluster_detach(cl, "vol-r", false), 0);
    watch_want = 4;
    CHECK(wait_for(watch_has, 3000));
    CHECK(strcmp(w.what[3], "- vol-r") == 0);
    CHECK(!open_vol("vol-r", true, &err));
    CHECK_EQ(err, -ENOENT);
    pump(1500);
    CHECK_EQ(w.n, 4); /* nothing more to say */
    agent_vols_watch(vs, NULL, NULL);
    teardown();
}

static bool vol_a_detached(void)
{
    return vol_attached_to("");
}

static void on_watch_nothing(void *arg, enum agent_vols_change what,
                             const struct agent_vols_list_entry *e)
{
    (void)what;
    (void)e;
    (*(int *)arg)++;
}

/* The watch's last answer, asked before a volume was attached, does not
 * take that volume away: a second open of it (answered from the registry)
 * succeeds before the next answer. */
TEST(watch_answer_older_than_the_attach)
{
    setup();
    CHECK(start() == 0);
    int events = 0;
    agent_vols_watch(vs, on_watch_nothing, &events);
    pump(300);
    CHECK(events >= 1); /* vol-a: the table is known */
    CHECK_EQ(agent_cluster_create_volume(cl, "vol-n", 1u << 20), 0);
    CHECK_EQ(agent_cluster_attach(cl, "vol-n", "agent-1", false, false), 0);
    struct agent_vol *h1 = open_vol("vol-n", false, NULL);
    CHECK(h1);
    int err = 0;
    struct agent_vol *h2 = open_vol("vol-n", false, &err);
    CHECK(h2);
    CHECK_EQ(err, 0);
    if (h2) agent_vol_put(h2);
    if (h1) agent_vol_put(h1);
    agent_vols_watch(vs, NULL, NULL);
    teardown();
}

/* An idle clean volume is detached and its journal deleted. */
TEST(idle_clean_volume_detaches)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(do_write(h, 0, BS, 70, 0), 0);
    CHECK_EQ(do_flush(h), 0);
    agent_vol_put(h);
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/%016llx", cache_dir, (unsigned long long)vol.id);
    CHECK(access(dir, F_OK) == 0);
    CHECK(vol_attached_to("agent-1"));
    CHECK(wait_for(vol_a_detached, 4000));
    pump(50);
    CHECK(access(dir, F_OK) != 0);
    /* Opening again attaches again. */
    uint64_t gen = vol_gen();
    h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(vol_gen(), gen + 1);
    CHECK_EQ(do_write(h, BS, BS, 71, 0), 0);
    agent_vol_put(h);
    teardown();
}

static int stopped;
static void on_stopped(void *arg)
{
    (void)arg;
    stopped = 1;
}

/* ---- snapshot barriers (C12, README "Snapshots and the agent barrier") ---- */

/* POST a snapshot of vol-a named NAME; its HTTP status, and for a 201 the
 * answer's "barrier", "consistency" and "note" into the out-parameters. */
static int snapshot(const char *name, bool require, bool *barrier, char *consistency,
                    char *note, size_t note_len)
{
    char body[200];
    snprintf(body, sizeof(body), "{\"name\": \"%s\", \"require_barrier\": %s}", name,
             require ? "true" : "false");
    cJSON *o = NULL;
    int st = agent_cluster_admin(cl, "POST", "/v1/volumes/vol-a/snapshots", body, &o);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "barrier");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "consistency");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, "note");
    if (!n) n = cJSON_GetObjectItemCaseSensitive(o, "error");
    *barrier = cJSON_IsTrue(b);
    util_strlcpy(consistency, cJSON_IsString(c) ? c->valuestring : "", 16);
    util_strlcpy(note, cJSON_IsString(n) ? n->valuestring : "", note_len);
    cJSON_Delete(o);
    return st;
}

/* A clone of snapshot SNAP of vol-a (to read the snapshot through): its
 * volume id, or 0. */
static uint64_t snapshot_clone(const char *snap)
{
    char body[300], clone[64];
    snprintf(clone, sizeof(clone), "clone-%s", snap);
    snprintf(body, sizeof(body),
             "{\"name\": \"%s\", \"snapshot\": {\"volume\": \"vol-a\", \"name\": \"%s\"}}",
             clone, snap);
    struct agent_cluster_vol v = {0};
    if (agent_cluster_admin(cl, "POST", "/v1/volumes", body, NULL) != 201 ||
        agent_cluster_volume(cl, clone, &v) < 0)
        return 0;
    return v.id;
}

/* Does volume ID hold SEED's data at [OFF, OFF+LEN), in the cluster? */
static bool vol_matches(uint64_t id, uint64_t off, uint64_t len, uint8_t seed)
{
    uint8_t *buf = malloc(len);
    bool ok = buf && agent_cluster_read(cl, id, off, (uint32_t)len, buf, NULL) == 0 &&
              matches(buf, off, len, seed);
    free(buf);
    return ok;
}

/* A snapshot of an attached volume holds the writes its agent acknowledged
 * but had not shipped: the proxy asks the agent for a barrier first. */
TEST(snapshot_barrier_includes_acked_writes)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(do_write(h, 0, 4 * BS, 9, 0), 0);
    CHECK_EQ(do_write(h, 40 * BS, BS, 10, 0), 0);
    pump(100);
    CHECK_EQ(cluster_kind(0), WIRE_MAP_HOLE);            /* acknowledged, not shipped */
    bool barrier = false;
    char cons[16], note[400];
    CHECK_EQ(snapshot("s1", true, &barrier, cons, note, sizeof(note)), 201);
    CHECK(barrier);
    CHECK(strcmp(cons, "barrier") == 0);
    CHECK(strstr(note, "agent-1"));
    uint64_t clone = snapshot_clone("s1");
    CHECK(clone != 0);
    CHECK(vol_matches(clone, 0, 4 * BS, 9));
    CHECK(vol_matches(clone, 40 * BS, BS, 10));
    agent_vol_put(h);
    teardown();
}

/* When the barrier cannot happen the snapshot says so (barrier false and
 * why), or require_barrier refuses it: the agent's writes cannot reach
 * the cluster (every blob server down: its flush times out), or the agent
 * is not connected at all. */
TEST(snapshot_barrier_fails_then_says_so)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    for (unsigned i = 0; i < 3; i++) CHECK_EQ(agent_cluster_blob_stop(cl, i), 0);
    CHECK_EQ(do_write(h, 8 * BS, BS, 11, 0), 0);          /* acknowledged, cannot ship */
    bool barrier = true;
    char cons[16], note[400];
    uint64_t t0 = util_mono_ms();
    CHECK_EQ(snapshot("t1", true, &barrier, cons, note, sizeof(note)), 409);
    CHECK(strstr(note, "require_barrier"));
    CHECK_EQ(snapshot("t2", false, &barrier, cons, note, sizeof(note)), 201);
    CHECK(!barrier);
    CHECK(strcmp(cons, "index") == 0);
    CHECK(strstr(note, "barrier failed"));
    CHECK(util_mono_ms() - t0 < 12000);                   /* bounded: 5 s each at most */
    for (unsigned i = 0; i < 3; i++) CHECK_EQ(agent_cluster_blob_start(cl, i, NULL), 0);
    CHECK_EQ(agent_cluster_wait_ready(cl, 10000), 0);
    /* The write ships once the servers are back.  A flush may still time
     * out on a loaded machine (io_timeout_ms is 1 s here): it fails, and
     * the next one ships (waiting_write_times_out_then_recovers). */
    int ferr = -ETIMEDOUT;
    for (int i = 0; i < 10 && ferr == -ETIMEDOUT; i++) ferr = do_flush(h);
    agent_vol_put(h);
    CHECK_EQ(ferr, 0);
    /* No agent connected, though the index still names it as the writer. */
    agent_vols_free(vs);
    vs = NULL;
    pump(100);
    CHECK_EQ(snapshot("t3", true, &barrier, cons, note, sizeof(note)), 409);
    CHECK(strstr(note, "not connected"));
    teardown();
}

/* Stop ships every journal's dirty data, detaches, then reports done. */
TEST(stop_ships_everything)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(do_write(h, 90 * BS, 8 * BS, 80, 0), 0);
    agent_vol_put(h);
    stopped = 0;
    agent_vols_stop(vs, on_stopped, NULL);
    CHECK(!stopped);
    CHECK(run_until(&stopped, 5000));
    CHECK(cluster_matches(90 * BS, 8 * BS, 80));
    CHECK(vol_attached_to(""));
    int err = 0;
    CHECK(!open_vol("vol-a", false, &err));
    CHECK_EQ(err, -ESHUTDOWN);
    teardown();
}

/* The status JSON names the volume and the figures the admin shows. */
TEST(status_json)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(do_write(h, 0, 4 * BS, 90, 0), 0);
    cJSON *o = status();
    cJSON *vols = cJSON_GetObjectItem(o, "volumes");
    CHECK(cJSON_GetArraySize(vols) == 1);
    cJSON *v0 = cJSON_GetArrayItem(vols, 0);
    CHECK(strcmp(cJSON_GetObjectItem(v0, "name")->valuestring, "vol-a") == 0);
    CHECK(strcmp(cJSON_GetObjectItem(v0, "state")->valuestring, "active") == 0);
    CHECK_EQ(cJSON_GetObjectItem(v0, "dirty_bytes")->valuedouble, 4 * BS);
    CHECK_EQ(cJSON_GetObjectItem(v0, "id")->valuedouble, vol.id);
    CHECK_EQ(cJSON_GetObjectItem(v0, "generation")->valuedouble, vol_gen());
    CHECK(cJSON_GetObjectItem(o, "journal_bytes")->valuedouble > 4 * BS);
    CHECK_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(o, "proxies")), 1);
    cJSON_Delete(o);
    agent_vol_put(h);
    teardown();
}

/* A second registry on the same cache directory is refused. */
TEST(cache_dir_is_locked)
{
    setup();
    CHECK(start() == 0);
    struct agent_vols *other = NULL;
    char err[256];
    CHECK_EQ(agent_vols_new(rx, agent_cluster_cfg(cl), &cfg, NULL, "agent2", &other, err, sizeof(err)),
             -EBUSY);
    CHECK(strstr(err, "in use"));
    teardown();
}
