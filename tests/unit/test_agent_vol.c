/* test_agent_vol.c: the agent's volume back end (src/roles/agent_vol.c,
 * agent_io.c, agent_ship.c, agent_cache.c, agent_client.c) against the
 * test-only fake proxy (fake_proxy.c) on a Unix socket, one reactor.
 *
 * Defends C1 (flush barrier), C2 (FUA), C4 (restart replays acked writes),
 * C7 (reads overlay the cache and carry min_index), C8 (multi-conn), C10
 * (fencing: re-attach before resend; EFENCED -> EIO), C14/§3 (a damaged
 * journal entry reads as EIO, never garbage), plus back-pressure, the
 * cluster being unreachable and coming back, and the ordering rule.
 *
 * Fixture: a fresh fake proxy with one 16 MiB volume "vol-a" and a fresh
 * registry per test; 8 MiB of cache, 64 KiB ships, no age shipping unless
 * a test asks, io_timeout_ms 1000.  Every wait is bounded. */
#include "bd.h"
#include "config.h"
#include "fake_proxy.h"
#include "net/reactor.h"
#include "roles/agent_vol.h"
#include "store/journal.h"
#include "tap.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- Fixture -------------------------------------------------------------- */

#define VOL_SIZE (16u << 20)
#define BS 4096u

static struct reactor *rx;
static struct fake_proxy *fp;
static struct fake_vol *fv;
static struct conn_auth auth;
static struct bd_config top;
static struct cfg_agent cfg;
static struct agent_vols *vs;
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

static void teardown(void);

static void setup(void)
{
    if (vs || fp) teardown(); /* a failed check returned early */
    if (!rx) {
        rx = reactor_new();
        log_set_level(LOG_WARN);
    }
    const char *tmp = tap_tmpdir();
    util_strlcpy(tmp_dir, tmp, sizeof(tmp_dir));
    char addr[400];
    snprintf(addr, sizeof(addr), "unix:%s/proxy.sock", tmp);
    snprintf(cache_dir, sizeof(cache_dir), "%s/cache", tmp);
    conn_auth_init(&auth, "test", "", 1, WIRE_ROLE_PROXY, "fake");
    fp = fake_proxy_new(rx, addr, &auth);
    fv = fake_proxy_add_vol(fp, "vol-a", VOL_SIZE);
    memset(&top, 0, sizeof(top));
    util_strlcpy(top.cluster_id, "test", sizeof(top.cluster_id));
    memset(&cfg, 0, sizeof(cfg));
    util_strlcpy(cfg.id, "agent-1", sizeof(cfg.id));
    util_strlcpy(cfg.proxies[0], addr, sizeof(cfg.proxies[0]));
    cfg.n_proxies = 1;
    util_strlcpy(cfg.cache_dir, cache_dir, sizeof(cfg.cache_dir));
    cfg.cache_bytes = 8u << 20;
    cfg.cache_high_water_pct = 50;
    cfg.flush_age_ms = 600000;
    cfg.io_timeout_ms = 1000;
    cfg.ship_bytes = 64u << 10;
}

static int start(void)
{
    char err[256] = "";
    int rc = agent_vols_new(rx, &top, &cfg, "agent", &vs, err, sizeof(err));
    if (rc < 0) printf("# agent_vols_new: %s\n", err);
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
    if (vs) stop_registry();
    fake_proxy_free(fp);
    fp = NULL;
    pump(20);
}

/* ---- Helpers -------------------------------------------------------------- */

struct waiter {
    struct agent_req req;
    int done, err;
    uint8_t *buf;
    struct agent_extent ext[64];
};

static void on_req(struct agent_req *r, int err)
{
    struct waiter *w = r->data;
    w->done = 1;
    w->err = err;
}

struct open_w {
    struct agent_open_req req;
    int done, err;
    struct agent_vol *h;
};

static void on_open(struct agent_open_req *r, int err, struct agent_vol *h)
{
    struct open_w *w = r->data;
    w->done = 1;
    w->err = err;
    w->h = h;
}

static struct agent_vol *open_vol(const char *name, bool ro, int *errp)
{
    struct open_w w = {.req = {.cb = on_open}};
    w.req.data = &w;
    agent_vols_open(vs, name, ro, &w.req);
    if (w.done) return NULL; /* must never complete synchronously */
    if (!run_until(&w.done, 5000)) return NULL;
    if (errp) *errp = w.err;
    return w.h;
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

static int do_op(void (*fn)(struct agent_vol *, struct agent_req *), struct agent_vol *h,
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

static bool has_write_at(uint64_t off, unsigned *count)
{
    unsigned n, c = 0;
    const struct fake_write *wl = fake_proxy_writes(fp, &n);
    for (unsigned i = 0; i < n; i++) {
        if (!wl[i].ext) {
            if (wl[i].off <= off && off < wl[i].off + wl[i].len) c++;
            continue;
        }
        for (uint32_t k = 0; k < wl[i].n_ext; k++)
            if (wl[i].ext[k].off <= off && off < wl[i].ext[k].off + wl[i].ext[k].len) c++;
    }
    if (count) *count = c;
    return c > 0;
}

/* Wait until the fake proxy's volume holds SEED's data at [OFF, OFF+LEN). */
static bool wait_cluster(uint64_t off, uint64_t len, uint8_t seed, int ms)
{
    uint64_t end = util_mono_ms() + (uint64_t)ms;
    while (util_mono_ms() < end) {
        if (matches(fv->data + off, off, len, seed)) return true;
        pump(10);
    }
    return false;
}

/* Wait until the agent's link to the proxy is up again. */
static bool wait_proxy_up(int ms);

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

static bool wait_proxy_up(int ms)
{
    uint64_t end = util_mono_ms() + (uint64_t)ms;
    while (util_mono_ms() < end) {
        if (status_num("proxies_up") >= 1) return true;
        pump(20);
    }
    return false;
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
    CHECK_EQ(do_write(h, 64 * BS, 2 * BS, 1, 0), 0);
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(h, 64 * BS, 2 * BS, &got, &w, false), 0);
    CHECK(matches(got, 64 * BS, 2 * BS, 1));
    free(got);
    unsigned n;
    fake_proxy_writes(fp, &n);
    CHECK_EQ(n, 0);
    CHECK_EQ(fake_proxy_reads(fp), 0);
    agent_vol_put(h);
    teardown();
}

/* Dirty blocks overlay cluster data in one read, and the map tells the
 * truth: dirty data DATA, dirty zeroes ZERO, cluster holes HOLE. */
TEST(overlay_dirty_on_cluster_data)
{
    setup();
    fill(fv->data, 0, 16 * BS, 9);
    memset(fv->kind, WIRE_MAP_DATA, 16);
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
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
    CHECK(w.ext[0].off == 0 && w.ext[0].len == 7 * BS && w.ext[0].kind == AGENT_EXT_DATA);
    CHECK(w.ext[1].off == 7 * BS && w.ext[1].len == BS && w.ext[1].kind == AGENT_EXT_ZERO);
    CHECK(w.ext[2].len == 8 * BS && w.ext[2].kind == AGENT_EXT_DATA);
    CHECK(w.ext[3].off == 16 * BS && w.ext[3].kind == AGENT_EXT_HOLE);
    CHECK(w.ext[4].off == 18 * BS && w.ext[4].kind == AGENT_EXT_ZERO);
    CHECK(w.ext[5].len == 5 * BS && w.ext[5].kind == AGENT_EXT_HOLE);
    /* BLOCK_STATUS overlays the same way. */
    w_init(&w, 0, 24 * BS);
    w.req.ext = w.ext;
    w.req.max_ext = 3;
    agent_vol_block_status(h, &w.req);
    CHECK_EQ(wait_w(&w, 5000), 0);
    CHECK_EQ(w.req.n_ext, 3); /* stops short when max_ext runs out */
    CHECK(w.ext[1].kind == AGENT_EXT_ZERO && w.ext[2].kind == AGENT_EXT_DATA);
    agent_vol_put(h);
    teardown();
}

/* Reads carry the highest raft index acked to the agent (C7). */
TEST(reads_carry_min_index)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(do_write(h, 0, BS, 3, 0), 0);
    CHECK_EQ(do_flush(h), 0);
    uint64_t idx = fake_proxy_index(fp);
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(h, 100 * BS, BS, &got, &w, false), 0);
    free(got);
    CHECK(fake_proxy_max_min_index(fp) >= idx);
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
    CHECK_EQ(do_write(h, 100, BS, 1, 0), -EINVAL);
    CHECK_EQ(do_write(h, VOL_SIZE, BS, 1, 0), -ENOSPC);
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
    for (int i = 0; i < 20; i++) CHECK_EQ(do_write(h, (uint64_t)i * 256 * 1024, 256 * 1024, 4, 0), 0);
    CHECK(wait_cluster(0, 20 * 256 * 1024, 4, 5000));
    CHECK_EQ(fake_proxy_flushes(fp), 0);
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
    for (unsigned i = 0; i < nblk; i++)
        CHECK_EQ(do_write(h, (uint64_t)i * 3 * BS, BS, 40, 0), 0);
    CHECK_EQ(do_op(agent_vol_zero, h, 4 * BS, BS), 0); /* between two data blocks */
    CHECK_EQ(do_flush(h), 0);
    unsigned n, data = 0, scattered = 0, zero = 0;
    const struct fake_write *wl = fake_proxy_writes(fp, &n);
    for (unsigned i = 0; i < n; i++) {
        if (wl[i].flags & WIRE_WRITE_ZERO) {
            zero++;
            continue;
        }
        data++;
        if (wl[i].ext) {
            scattered++;
            CHECK(wl[i].n_ext <= per_ship);
        }
    }
    CHECK_EQ(zero, 1);
    CHECK_EQ(data, (nblk + per_ship - 1) / per_ship); /* 3 writes, not 40 */
    CHECK(scattered >= 2);
    for (unsigned i = 0; i < nblk; i++) {
        uint64_t off = (uint64_t)i * 3 * BS;
        CHECK(matches(fv->data + off, off, BS, 40));
        CHECK_EQ(fv->kind[i * 3], WIRE_MAP_DATA);
        if (i * 3 + 1 != 4) CHECK_EQ(fv->kind[i * 3 + 1], WIRE_MAP_HOLE);
    }
    CHECK_EQ(fv->kind[4], WIRE_MAP_ZERO);
    /* Read back through the agent after the cache is clean. */
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(h, 0, 3 * nblk * BS, &got, &w, false), 0);
    for (unsigned i = 0; i < nblk; i++)
        CHECK(matches(got + (uint64_t)i * 3 * BS, (uint64_t)i * 3 * BS, BS, 40));
    free(got);
    /* Picking resumes after the last ship (block 118) and wraps to 0: the
     * blocks on either side of the wrap must not share a write whose
     * ranges would then descend. */
    for (unsigned i = 0; i < 10; i++) {
        CHECK_EQ(do_write(h, (uint64_t)i * 3 * BS, BS, 41, 0), 0);
        CHECK_EQ(do_write(h, (uint64_t)(300 + i * 3) * BS, BS, 41, 0), 0);
    }
    CHECK_EQ(do_flush(h), 0);
    for (unsigned i = 0; i < 10; i++) {
        CHECK(matches(fv->data + (uint64_t)i * 3 * BS, (uint64_t)i * 3 * BS, BS, 41));
        uint64_t off = (uint64_t)(300 + i * 3) * BS;
        CHECK(matches(fv->data + off, off, BS, 41));
    }
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
    CHECK_EQ(do_write(h, 5 * BS, BS, 5, 0), 0);
    CHECK(!has_write_at(5 * BS, NULL));
    CHECK(wait_cluster(5 * BS, BS, 5, 3000));
    agent_vol_put(h);
    teardown();
}

/* ---- FLUSH, FUA, multi-conn ------------------------------------------------ */

/* FLUSH waits for a write completed before it and not for one completed
 * after it (C1). */
TEST(flush_is_a_barrier_over_earlier_writes)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    fake_proxy_knobs(fp)->hold_writes = true;
    CHECK_EQ(do_write(h, 0, BS, 6, 0), 0);              /* A, before the flush */
    struct waiter f = {0};
    w_init(&f, 0, 0);
    agent_vol_flush(h, &f.req);
    pump(150);
    CHECK(!f.done);                                      /* A is not acked yet */
    CHECK(has_write_at(0, NULL));
    CHECK_EQ(do_write(h, 100 * BS, BS, 7, 0), 0);       /* B, after the flush */
    pump(150);
    CHECK(has_write_at(100 * BS, NULL));                 /* B shipped too, held */
    CHECK(!f.done);
    CHECK_EQ(fake_proxy_release(fp, 0), 1);              /* ack A only */
    CHECK_EQ(wait_w(&f, 3000), 0);
    CHECK_EQ(fake_proxy_held(fp), 1);                    /* B still unacked */
    fake_proxy_knobs(fp)->hold_writes = false;
    fake_proxy_release(fp, UINT64_MAX);
    CHECK_EQ(do_flush(h), 0);
    CHECK(matches(fv->data + 100 * BS, 100 * BS, BS, 7));
    agent_vol_put(h);
    teardown();
}

/* A FUA write completes only once the cluster acked it (C2). */
TEST(fua_waits_for_the_cluster)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    fake_proxy_knobs(fp)->hold_writes = true;
    struct waiter w = {0};
    submit_write(&w, h, 8 * BS, 2 * BS, 8, AGENT_REQ_FUA);
    pump(150);
    CHECK(!w.done);
    CHECK(has_write_at(8 * BS, NULL));
    fake_proxy_release(fp, UINT64_MAX);
    CHECK_EQ(wait_w(&w, 3000), 0);
    CHECK(matches(fv->data + 8 * BS, 8 * BS, 2 * BS, 8));
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
    struct agent_vol *a = open_vol("vol-a", false, NULL);
    struct agent_vol *b = open_vol("vol-a", false, NULL);
    struct agent_vol *c = open_vol("vol-a", false, NULL);
    CHECK(a && b && c && a != b);
    CHECK_EQ(fake_proxy_attaches(fp), 1);
    CHECK_EQ(do_write(a, 30 * BS, 4 * BS, 10, 0), 0);
    CHECK_EQ(do_flush(b), 0);
    CHECK(matches(fv->data + 30 * BS, 30 * BS, 4 * BS, 10));
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
    CHECK_EQ(do_write(h, 0, 8 * BS, 13, 0), 0);
    CHECK_EQ(do_op(agent_vol_zero, h, 2 * BS, 2 * BS), 0);
    CHECK_EQ(do_op(agent_vol_trim, h, 5 * BS, BS), 0);
    CHECK_EQ(do_flush(h), 0);
    CHECK(is_zero(fv->data + 2 * BS, 2 * BS));
    CHECK(is_zero(fv->data + 5 * BS, BS));
    CHECK(matches(fv->data + 6 * BS, 6 * BS, 2 * BS, 13));
    CHECK_EQ(fv->kind[2], WIRE_MAP_ZERO);
    CHECK_EQ(fv->kind[5], WIRE_MAP_HOLE);
    CHECK_EQ(fv->kind[6], WIRE_MAP_DATA);
    unsigned n;
    const struct fake_write *wl = fake_proxy_writes(fp, &n);
    bool zero_ok = false, trim_ok = false;
    for (unsigned i = 0; i < n; i++) {
        if (wl[i].flags & WIRE_WRITE_ZERO) zero_ok = wl[i].off == 2 * BS && wl[i].len == 2 * BS;
        if (wl[i].flags & WIRE_WRITE_TRIM) trim_ok = wl[i].off == 5 * BS;
    }
    CHECK(zero_ok && trim_ok);
    agent_vol_put(h);
    teardown();
}

/* ---- Ordering and back-pressure ------------------------------------------- */

/* A block is never shipped while an earlier ship of it is in flight. */
TEST(no_second_ship_of_a_block_in_flight)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    fake_proxy_knobs(fp)->hold_writes = true;
    CHECK_EQ(do_write(h, 40 * BS, BS, 14, 0), 0);
    struct waiter f1 = {0}, f2 = {0};
    w_init(&f1, 0, 0);
    agent_vol_flush(h, &f1.req);
    pump(100);
    unsigned cnt;
    CHECK(has_write_at(40 * BS, &cnt) && cnt == 1);
    CHECK_EQ(do_write(h, 40 * BS, BS, 15, 0), 0);     /* v2 while v1 is in flight */
    w_init(&f2, 0, 0);
    agent_vol_flush(h, &f2.req);
    pump(200);
    CHECK(has_write_at(40 * BS, &cnt) && cnt == 1);   /* v2 waits */
    CHECK(!f1.done && !f2.done);
    fake_proxy_release(fp, 40 * BS);                  /* v1 acked */
    pump(150);
    CHECK(has_write_at(40 * BS, &cnt) && cnt == 2);   /* now v2 goes */
    CHECK(!f1.done);                                  /* f1 covered v1, now superseded by v2 */
    fake_proxy_knobs(fp)->hold_writes = false;
    fake_proxy_release(fp, UINT64_MAX);
    CHECK_EQ(wait_w(&f1, 3000), 0);
    CHECK_EQ(wait_w(&f2, 3000), 0);
    CHECK(matches(fv->data + 40 * BS, 40 * BS, BS, 15));
    agent_vol_put(h);
    teardown();
}

/* The same rule when the block in flight is one range of a scattered
 * write: its new version waits for that whole write, while a block that
 * is not in flight ships at once. */
TEST(no_second_ship_of_a_scattered_block_in_flight)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    fake_proxy_knobs(fp)->hold_writes = true;
    for (uint64_t b = 10; b <= 30; b += 10) CHECK_EQ(do_write(h, b * BS, BS, 16, 0), 0);
    struct waiter f1 = {0}, f2 = {0};
    w_init(&f1, 0, 0);
    agent_vol_flush(h, &f1.req);
    pump(100);
    unsigned cnt, n;
    CHECK(has_write_at(20 * BS, &cnt) && cnt == 1);
    const struct fake_write *wl = fake_proxy_writes(fp, &n);
    CHECK(n == 1 && wl[0].n_ext == 3);                /* one scattered write */
    CHECK_EQ(do_write(h, 20 * BS, BS, 17, 0), 0);     /* v2 of its middle range */
    CHECK_EQ(do_write(h, 50 * BS, BS, 17, 0), 0);     /* not in flight */
    w_init(&f2, 0, 0);
    agent_vol_flush(h, &f2.req);
    pump(200);
    CHECK(has_write_at(20 * BS, &cnt) && cnt == 1);   /* v2 waits */
    CHECK(has_write_at(50 * BS, &cnt) && cnt == 1);   /* the other block went */
    fake_proxy_release(fp, 10 * BS);                  /* the scattered write acked */
    pump(150);
    CHECK(has_write_at(20 * BS, &cnt) && cnt == 2);   /* now v2 goes */
    fake_proxy_knobs(fp)->hold_writes = false;
    fake_proxy_release(fp, UINT64_MAX);
    CHECK_EQ(wait_w(&f1, 3000), 0);
    CHECK_EQ(wait_w(&f2, 3000), 0);
    CHECK(matches(fv->data + 10 * BS, 10 * BS, BS, 16));
    CHECK(matches(fv->data + 20 * BS, 20 * BS, BS, 17));
    CHECK(matches(fv->data + 30 * BS, 30 * BS, BS, 16));
    CHECK(matches(fv->data + 50 * BS, 50 * BS, BS, 17));
    agent_vol_put(h);
    teardown();
}

/* When the journal is full, writes wait (never dropped) and complete as
 * shipping frees space. */
TEST(backpressure_when_journal_full)
{
    setup();
    cfg.cache_bytes = 4u << 20;
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    fake_proxy_knobs(fp)->hold_writes = true;
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
    CHECK(fake_proxy_held(fp) > 0);
    fake_proxy_knobs(fp)->hold_writes = false;
    fake_proxy_release(fp, UINT64_MAX);
    CHECK_EQ(wait_w(&ws[waiting], 3000), 0);
    CHECK_EQ(do_flush(h), 0);
    CHECK(wait_cluster(0, (uint64_t)(waiting + 1) * 128 * 1024, 16, 3000));
    for (int i = 0; i <= waiting; i++) w_free(&ws[i]);
    agent_vol_put(h);
    teardown();
}

/* With the cluster unreachable, a write waiting for journal space fails
 * with EIO after io_timeout_ms; acked data stays and ships when the
 * cluster returns. */
TEST(waiting_write_times_out_then_recovers)
{
    setup();
    cfg.cache_bytes = 4u << 20;
    cfg.io_timeout_ms = 500;
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    fake_proxy_down(fp);
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
    CHECK_EQ(wait_w(&ws[waiting], 3000), -EIO);
    CHECK(util_mono_ms() - t0 >= 150);
    CHECK(fake_proxy_up(fp) == 0);
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
 * under a new attach generation (C4). */
TEST(restart_replays_and_ships)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    uint64_t gen1 = fv->gen;
    CHECK_EQ(do_write(h, 0, 16 * BS, 20, 0), 0);
    CHECK_EQ(do_write(h, 4 * BS, 2 * BS, 21, 0), 0);       /* overwrite */
    CHECK_EQ(do_op(agent_vol_zero, h, 10 * BS, BS), 0);
    CHECK_EQ(do_write(h, 200 * BS, 64 * BS, 22, 0), 0);
    unsigned n;
    fake_proxy_writes(fp, &n);
    CHECK_EQ(n, 0);
    agent_vol_put(h);
    stop_registry();
    fake_proxy_knobs(fp)->fail_writes = 1000000; /* EAGAIN: keep it in the cache for now */
    fake_proxy_knobs(fp)->fail_err = -EAGAIN;
    CHECK(start() == 0);
    h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK(fv->gen > gen1);
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(h, 0, 16 * BS, &got, &w, false), 0);
    CHECK(matches(got, 0, 4 * BS, 20));
    CHECK(matches(got + 4 * BS, 4 * BS, 2 * BS, 21));
    CHECK(matches(got + 6 * BS, 6 * BS, 4 * BS, 20));
    CHECK(is_zero(got + 10 * BS, BS));
    free(got);
    fake_proxy_knobs(fp)->fail_writes = 0;
    CHECK(wait_cluster(200 * BS, 64 * BS, 22, 5000));      /* ships by itself */
    CHECK_EQ(do_flush(h), 0);
    CHECK(matches(fv->data + 4 * BS, 4 * BS, 2 * BS, 21));
    CHECK(is_zero(fv->data + 10 * BS, BS));
    CHECK(matches(fv->data + 11 * BS, 11 * BS, 5 * BS, 20));
    const struct fake_write *wl = fake_proxy_writes(fp, &n);
    for (unsigned i = 0; i < n; i++) CHECK(!wl[i].applied || wl[i].gen > gen1);
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
             (unsigned long long)fv->id);
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
    CHECK(matches(fv->data + 3 * BS, 3 * BS, BS, 30));
    CHECK_EQ(fv->kind[2], WIRE_MAP_HOLE);              /* never garbage */
    CHECK(!has_write_at(2 * BS, NULL));
    CHECK_EQ(do_write(h, 2 * BS, BS, 31, 0), 0);       /* rewrite heals */
    CHECK_EQ(do_read(h, 0, 4 * BS, &got, &w, false), 0);
    CHECK(matches(got + 2 * BS, 2 * BS, BS, 31));
    free(got);
    CHECK_EQ(do_flush(h), 0);
    CHECK(matches(fv->data + 2 * BS, 2 * BS, BS, 31));
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
             (unsigned long long)fv->id);
    int fd = open(seg, O_RDWR);
    CHECK(fd >= 0);
    uint64_t pos = JOURNAL_SEG_HDR + JOURNAL_ENT_HDR + 2 * BS + 7; /* block 2 of the first write */
    uint8_t b;
    CHECK(pread(fd, &b, 1, (off_t)pos) == 1);
    b ^= 1;
    CHECK(pwrite(fd, &b, 1, (off_t)pos) == 1);
    close(fd);
    CHECK_EQ(do_flush(h), 0);
    CHECK(!has_write_at(2 * BS, NULL));                /* never sent */
    CHECK(fv->kind[2] == WIRE_MAP_HOLE);               /* never garbage */
    CHECK(matches(fv->data, 0, 2 * BS, 32));            /* the rest of the run did ship */
    CHECK(matches(fv->data + 3 * BS, 3 * BS, BS, 32));
    CHECK(matches(fv->data + 4 * BS, 4 * BS, BS, 33));
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
             (unsigned long long)fv->id);
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

/* A write whose outcome is unknown (connection dropped after the proxy
 * applied it) is not simply resent: the volume is re-attached with a
 * higher generation first, then everything unacked is resent (C10). */
TEST(unknown_outcome_reattaches_before_resend)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    uint64_t gen1 = fv->gen;
    unsigned att1 = fake_proxy_attaches(fp);
    fake_proxy_knobs(fp)->close_on_write = 1;
    fake_proxy_knobs(fp)->close_applies = true;
    CHECK_EQ(do_write(h, 50 * BS, BS, 40, 0), 0);
    CHECK_EQ(do_flush(h), 0);
    unsigned n;
    const struct fake_write *wl = fake_proxy_writes(fp, &n);
    CHECK(n >= 2);
    CHECK_EQ(wl[0].gen, gen1);
    CHECK_EQ(wl[0].status, -1);                       /* never answered */
    CHECK(wl[n - 1].gen > gen1);                      /* resent under a new generation */
    CHECK(fake_proxy_attaches(fp) > att1);
    CHECK(matches(fv->data + 50 * BS, 50 * BS, BS, 40));
    CHECK(status_num("reattaches") >= 1);
    agent_vol_put(h);
    teardown();
}

/* A write the proxy never answers times out: outcome unknown, re-attach,
 * resend, and the flush still completes. */
TEST(unanswered_write_times_out_and_reattaches)
{
    setup();
    cfg.io_timeout_ms = 600;
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    uint64_t gen1 = fv->gen;
    fake_proxy_knobs(fp)->drop_writes = 1;
    CHECK_EQ(do_write(h, 60 * BS, BS, 41, 0), 0);
    struct waiter f = {0};
    w_init(&f, 0, 0);
    agent_vol_flush(h, &f.req);
    /* The flush rides through the timeout and the re-attach: the cluster
     * made progress, so it is not "unreachable". */
    CHECK_EQ(wait_w(&f, 5000), 0);
    CHECK(fv->gen > gen1);
    unsigned n;
    const struct fake_write *wl = fake_proxy_writes(fp, &n);
    CHECK(wl[n - 1].gen > gen1 && wl[n - 1].off == 60 * BS);
    CHECK(matches(fv->data + 60 * BS, 60 * BS, BS, 41));
    fake_proxy_release(fp, UINT64_MAX);
    agent_vol_put(h);
    teardown();
}

/* Another agent attached: the next write is refused as fenced, the volume
 * fails with EIO everywhere, and a restart does not re-attach it (C10). */
TEST(efenced_fails_io_and_sticks)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(do_write(h, 0, BS, 50, 0), 0);
    CHECK_EQ(do_flush(h), 0);
    fake_proxy_bump_gen(fv);
    CHECK_EQ(do_write(h, BS, BS, 51, 0), 0);
    CHECK_EQ(do_flush(h), -EIO);
    CHECK_EQ(do_write(h, 2 * BS, BS, 52, 0), -EIO);
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(h, 0, BS, &got, &w, false), -EIO);
    free(got);
    pump(100);
    char marker[600];
    snprintf(marker, sizeof(marker), "%s/%016llx/FENCED", cache_dir, (unsigned long long)fv->id);
    CHECK(access(marker, F_OK) == 0);
    agent_vol_put(h);
    stop_registry();
    unsigned att = fake_proxy_attaches(fp);
    CHECK(start() == 0);
    pump(200);
    CHECK_EQ(fake_proxy_attaches(fp), att);           /* not re-attached */
    int err = 0;
    CHECK(!open_vol("vol-a", false, &err));
    CHECK_EQ(err, -EIO);
    teardown();
}

/* While our own re-attach is in flight, an older write that reaches the
 * index after it is refused as fenced: that is our doing, not another
 * agent's, so the volume carries on and resends (no false EIO). */
TEST(own_reattach_fencing_is_not_fatal)
{
    setup();
    cfg.io_timeout_ms = 2000; /* a send times out after 1 s */
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    uint64_t gen1 = fv->gen;
    struct fake_knobs *k = fake_proxy_knobs(fp);
    k->drop_writes = 1;      /* the first write: applied, never answered */
    CHECK_EQ(do_write(h, 0, BS, 42, 0), 0);
    struct waiter f = {0};
    w_init(&f, 0, 0);
    agent_vol_flush(h, &f.req);
    pump(600);                /* the second is still in flight when the first times out */
    k->hold_unapplied = true; /* the second: held, committed later */
    k->hold_attaches = true;
    CHECK_EQ(do_write(h, 100 * BS, BS, 43, 0), 0);
    uint64_t end = util_mono_ms() + 3000;
    while (fv->gen == gen1 && util_mono_ms() < end) pump(20); /* re-attach reached the proxy */
    CHECK(fv->gen > gen1);
    k->hold_unapplied = false;
    CHECK_EQ(fake_proxy_release(fp, 100 * BS), 1);   /* refused: fenced by our attach */
    pump(50);
    unsigned n;
    const struct fake_write *wl = fake_proxy_writes(fp, &n);
    bool fenced_seen = false;
    for (unsigned i = 0; i < n; i++)
        if (wl[i].off == 100 * BS && wl[i].status == -BD_EFENCED) fenced_seen = true;
    CHECK(fenced_seen);
    CHECK(status_num("reattaches") == 0);             /* still re-attaching */
    k->hold_attaches = false;
    CHECK(fake_proxy_release_attaches(fp) >= 1);
    CHECK_EQ(wait_w(&f, 5000), 0);
    CHECK_EQ(do_flush(h), 0);
    CHECK(matches(fv->data, 0, BS, 42));
    CHECK(matches(fv->data + 100 * BS, 100 * BS, BS, 43));
    fake_proxy_release(fp, UINT64_MAX);
    agent_vol_put(h);
    teardown();
}

/* A re-attach refused because another agent holds the volume fences it. */
TEST(reattach_refused_busy_fences)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    struct fake_knobs *k = fake_proxy_knobs(fp);
    k->close_on_write = 1;
    k->fail_attaches = 1000;
    k->attach_err = -EBUSY;
    CHECK_EQ(do_write(h, 0, BS, 44, 0), 0);
    CHECK_EQ(do_flush(h), -EIO);
    CHECK_EQ(do_write(h, BS, BS, 45, 0), -EIO);
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

/* EAGAIN on a write proves nothing was applied (the proxy answers it only
 * when nothing reached raft): the agent resends as is, without fencing. */
TEST(eagain_on_write_resends)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    uint64_t gen1 = fv->gen;
    fake_proxy_knobs(fp)->fail_writes = 2;
    fake_proxy_knobs(fp)->fail_err = -EAGAIN;
    CHECK_EQ(do_write(h, 70 * BS, BS, 60, 0), 0);
    CHECK_EQ(do_flush(h), 0);
    CHECK(matches(fv->data + 70 * BS, 70 * BS, BS, 60));
    CHECK_EQ(status_num("reattaches"), 0);
    CHECK_EQ(fv->gen, gen1);
    agent_vol_put(h);
    teardown();
}

/* ETIMEDOUT on a write means the proxy proposed it and does not know its
 * fate (it may still commit): the agent re-attaches before resending, and
 * the write lands under the new generation. */
TEST(etimedout_on_write_reattaches)
{
    setup();
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    uint64_t gen1 = fv->gen;
    fake_proxy_knobs(fp)->fail_writes = 2;
    fake_proxy_knobs(fp)->fail_err = -ETIMEDOUT;
    CHECK_EQ(do_write(h, 70 * BS, BS, 60, 0), 0);
    CHECK_EQ(do_flush(h), 0);
    CHECK(matches(fv->data + 70 * BS, 70 * BS, BS, 60));
    CHECK(status_num("reattaches") >= 1);
    unsigned n;
    const struct fake_write *wl = fake_proxy_writes(fp, &n);
    CHECK(n >= 2);
    CHECK_EQ(wl[0].gen, gen1);
    for (unsigned i = 1; i < n; i++) CHECK(wl[i].gen > wl[i - 1].gen); /* fenced each time */
    agent_vol_put(h);
    teardown();
}

/* EAGAIN on an idempotent request (here: attach) is simply retried. */
TEST(eagain_on_attach_is_retried)
{
    setup();
    CHECK(start() == 0);
    fake_proxy_knobs(fp)->fail_attaches = 2;
    fake_proxy_knobs(fp)->attach_err = -EAGAIN;
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK(status_num("retries") >= 2);
    CHECK_EQ(fake_proxy_attaches(fp), 1);
    agent_vol_put(h);
    teardown();
}

/* With every proxy down, reads and flushes fail with ETIMEDOUT after
 * io_timeout_ms; when the proxy returns, I/O resumes by itself. */
TEST(unreachable_times_out_and_recovers)
{
    setup();
    cfg.io_timeout_ms = 500;
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    fake_proxy_down(fp);
    pump(50);
    struct waiter w = {0};
    uint8_t *got;
    uint64_t t0 = util_mono_ms();
    CHECK_EQ(do_read(h, 300 * BS, BS, &got, &w, false), -ETIMEDOUT);
    uint64_t dt = util_mono_ms() - t0;
    CHECK(dt >= 400 && dt < 2000);
    free(got);
    CHECK_EQ(do_write(h, 80 * BS, BS, 61, 0), 0);     /* the journal still takes writes */
    CHECK_EQ(do_flush(h), -ETIMEDOUT);
    CHECK(fake_proxy_up(fp) == 0);
    CHECK(wait_proxy_up(5000)); /* the link reconnects with its own backoff */
    CHECK_EQ(do_read(h, 300 * BS, BS, &got, &w, false), 0);
    free(got);
    CHECK_EQ(do_flush(h), 0);
    CHECK(matches(fv->data + 80 * BS, 80 * BS, BS, 61));
    agent_vol_put(h);
    teardown();
}

/* Two proxies: the first is not the leader and names the second in its
 * hint; every request ends up on the second, which is then preferred. */
TEST(not_leader_hint_routes_to_leader)
{
    setup();
    static struct conn_auth auth2;
    conn_auth_init(&auth2, "test", "", 2, WIRE_ROLE_PROXY, "fake2");
    char addr2[400];
    snprintf(addr2, sizeof(addr2), "unix:%s/proxy2.sock", tmp_dir);
    struct fake_proxy *leader = fake_proxy_new(rx, addr2, &auth2);
    CHECK(leader);
    struct fake_vol *lv = fake_proxy_add_vol(leader, "vol-a", VOL_SIZE);
    fake_proxy_knobs(fp)->not_leader = 2;
    util_strlcpy(cfg.proxies[1], addr2, sizeof(cfg.proxies[1]));
    cfg.n_proxies = 2;
    CHECK(start() == 0);
    struct agent_vol *h = open_vol("vol-a", false, NULL);
    CHECK(h);
    CHECK_EQ(do_write(h, 0, 2 * BS, 35, 0), 0);
    CHECK_EQ(do_flush(h), 0);
    CHECK(matches(lv->data, 0, 2 * BS, 35));
    unsigned n;
    fake_proxy_writes(fp, &n);
    CHECK_EQ(n, 0);
    unsigned redirects = fake_proxy_redirects(fp);
    CHECK(redirects <= 2); /* at most once per link before it is preferred */
    CHECK_EQ(do_write(h, 8 * BS, BS, 36, AGENT_REQ_FUA), 0);
    CHECK_EQ(fake_proxy_redirects(fp), redirects); /* the leader is preferred now */
    CHECK(status_num("retries") >= 1);
    /* The leader goes away and the other proxy takes over (here: it
     * stops redirecting and serves its own copy). */
    fake_proxy_knobs(fp)->not_leader = 0;
    fake_proxy_down(leader);
    struct waiter w = {0};
    uint8_t *got;
    CHECK_EQ(do_read(h, 100 * BS, BS, &got, &w, false), 0);
    free(got);
    CHECK(fake_proxy_reads(fp) >= 1);
    agent_vol_put(h);
    teardown();
    fake_proxy_free(leader);
}

/* ---- Registry ------------------------------------------------------------- */

struct list_w {
    struct agent_list_req req;
    int done, err;
    unsigned n;
    char names[4][64];
};

static void on_list(struct agent_list_req *r, int err, const struct agent_list_entry *v, unsigned n)
{
    struct list_w *w = r->data;
    w->done = 1;
    w->err = err;
    w->n = n;
    for (unsigned i = 0; i < n && i < 4; i++) util_strlcpy(w->names[i], v[i].name, 64);
}

struct info_w {
    struct agent_info_req req;
    int done, err;
    struct agent_vol_info info;
};

static void on_info(struct agent_info_req *r, int err, const struct agent_vol_info *info)
{
    struct info_w *w = r->data;
    w->done = 1;
    w->err = err;
    if (info) w->info = *info;
}

/* NBD_OPT_LIST and NBD_OPT_INFO go to the cluster without attaching. */
TEST(list_and_info)
{
    setup();
    fake_proxy_add_vol(fp, "vol-b", 1u << 20);
    CHECK(start() == 0);
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
    CHECK_EQ(fake_proxy_attaches(fp), 0);
    memset(&iw, 0, sizeof(iw));
    iw.req.cb = on_info;
    iw.req.data = &iw;
    agent_vols_info(vs, "nope", &iw.req);
    CHECK(run_until(&iw.done, 3000));
    CHECK_EQ(iw.err, -ENOENT);
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
    snprintf(dir, sizeof(dir), "%s/%016llx", cache_dir, (unsigned long long)fv->id);
    CHECK(access(dir, F_OK) == 0);
    uint64_t end = util_mono_ms() + 4000;
    while (fake_proxy_detaches(fp) == 0 && util_mono_ms() < end) pump(50);
    CHECK_EQ(fake_proxy_detaches(fp), 1);
    CHECK(access(dir, F_OK) != 0);
    /* Opening again attaches again. */
    h = open_vol("vol-a", false, NULL);
    CHECK(h);
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
    CHECK(matches(fv->data + 90 * BS, 90 * BS, 8 * BS, 80));
    CHECK_EQ(fake_proxy_detaches(fp), 1);
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
    CHECK_EQ(agent_vols_new(rx, &top, &cfg, "agent2", &other, err, sizeof(err)), -EBUSY);
    CHECK(strstr(err, "in use"));
    teardown();
}
