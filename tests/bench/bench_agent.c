/* bench_agent.c: measurements for the agent's journal and write path
 * (not a test: `meson test -C build --benchmark`, or run it by hand).
 *
 *   bench_agent append N        N journal appends of 4 KiB (with the block
 *                               checksum the write path computes): µs each
 *   bench_agent path N          N agent_vol_write (4 KiB, QD1, no shipping)
 *                               and N cache reads through the whole volume
 *                               layer: µs and heap allocations per request
 *   bench_agent replay MB KB    replay of MB MiB of KB-KiB entries: journal
 *                               scan alone (warm and cold page cache), and
 *                               the agent's start-up replay into the map
 *   bench_agent                 all of the above with small defaults
 *
 * Allocations are counted by interposing malloc/calloc/realloc in this
 * executable (every library's calls land here), so run it from the plain
 * build, not under ASan.  Syscalls per append: strace -c -e trace=%file,
 * pwritev bench_agent append 10000. */
#include "base/bd.h"
#include "config/config.h"
#include "runtime/log.h"
#include "runtime/reactor.h"
#include "roles/agent/agent_vol.h"
#include "store/fileio.h"
#include "store/journal/journal.h"
#include "base/util.h"

#include "../unit/agent_cluster.h"

#include <event2/event.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static _Atomic long n_alloc;
static _Atomic int counting;

void *malloc(size_t n)
{
    if (counting) n_alloc++;
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    if (counting) n_alloc++;
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    if (counting) n_alloc++;
    return __libc_realloc(p, n);
}

static char tmp[256];

static void mktmp(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(tmp, sizeof(tmp), "%s/bench-agent-XXXXXX", t ? t : "/tmp");
    if (!mkdtemp(tmp)) abort();
}

static void rmtmp(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmp);
}

/* ---- journal appends ------------------------------------------------------ */

static void bench_append(long n)
{
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/append", tmp);
    uint64_t need = (uint64_t)n * (JOURNAL_ENT_OVERHEAD + 4096) + (64u << 20);
    struct journal_opts o = {.fio = &fileio_posix, .dir = dir, .tag = "bench", .vol_id = 1,
                             .name = "bench", .cap_bytes = BD_MAX(need * 2, 128u << 20),
                             .seg_bytes = 64u << 20};
    struct journal *j;
    if (journal_create(&o, &j) < 0) abort();
    static uint8_t buf[4096];
    uint64_t cs;
    struct journal_rec r;
    uint64_t t0 = util_mono_ns();
    for (long i = 0; i < n; i++) {
        buf[0] = (uint8_t)i;
        cs = util_xxh3(buf, sizeof(buf));
        if (journal_append(j, JOURNAL_WRITE, (uint64_t)(i % 4096) * 4096, 4096, buf, &cs, false,
                           &r) < 0)
            abort();
    }
    uint64_t dt = util_mono_ns() - t0;
    printf("journal append 4 KiB: %ld appends, %.2f us each (%.0f/s), %u segments\n", n,
           (double)dt / 1e3 / (double)n, (double)n * 1e9 / (double)dt, journal_segments(j));
    journal_destroy(j);
}

/* ---- the agent's request path --------------------------------------------- */

static struct reactor *rx;

struct w {
    struct agent_vol_req req;
    int done, err;
};

static void on_req(struct agent_vol_req *r, int err)
{
    struct w *w = r->data;
    w->done = 1;
    w->err = err;
}

static void run_until(int *flag)
{
    while (!*flag) event_base_loop(reactor_base(rx), EVLOOP_ONCE);
}

struct ow {
    struct agent_vols_open_req req;
    int done;
    struct agent_vol *h;
};

static void on_open(struct agent_vols_open_req *r, int err, struct agent_vol *h)
{
    struct ow *o = r->data;
    o->done = 1;
    o->h = err ? NULL : h;
}

/* The cluster the agent attaches to: the real proxy and blob servers in
 * this process (agent_cluster.h), with one 64 MiB volume "vol" attached to
 * the agent "bench". */
static struct agent_cluster *cluster;
static uint64_t vol_id;

static void cluster_up(const char *name)
{
    char dir[300], err[256] = "";
    snprintf(dir, sizeof(dir), "%s/%s", tmp, name);
    struct agent_cluster_opts co = {.dir = dir};
    struct agent_cluster_vol v;
    if (mkdir(dir, 0700) < 0 || agent_cluster_new(rx, &co, &cluster, err, sizeof(err)) < 0 ||
        agent_cluster_create_volume(cluster, "vol", 64u << 20) < 0 ||
        agent_cluster_attach(cluster, "vol", "bench", false, false) < 0 ||
        agent_cluster_volume(cluster, "vol", &v) < 0) {
        fprintf(stderr, "cluster: %s\n", err);
        abort();
    }
    vol_id = v.id;
}

static void cluster_down(void)
{
    agent_cluster_free(cluster);
    cluster = NULL;
}

static void setup_agent(struct agent_vols **vsp, struct cfg_agent *cfg, uint64_t cache_bytes,
                        const char *cache)
{
    memset(cfg, 0, sizeof(*cfg));
    util_strlcpy(cfg->id, "bench", sizeof(cfg->id));
    util_strlcpy(cfg->proxies[0], agent_cluster_proxy_addr(cluster, 0), sizeof(cfg->proxies[0]));
    cfg->n_proxies = 1;
    util_strlcpy(cfg->cache_dir, cache, sizeof(cfg->cache_dir));
    cfg->cache_bytes = cache_bytes;
    cfg->cache_high_water_pct = 100;
    cfg->flush_age_ms = 3600000;
    cfg->io_timeout_ms = 30000;
    cfg->ship_bytes = 1u << 20;
    char err[256];
    if (agent_vols_new(rx, agent_cluster_cfg(cluster), cfg, NULL, "bench", vsp, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
}

static void bench_path(long n)
{
    struct agent_vols *vs;
    struct cfg_agent cfg;
    char cache[300];
    snprintf(cache, sizeof(cache), "%s/cache", tmp);
    cluster_up("path");
    setup_agent(&vs, &cfg, 2ull << 30, cache);
    struct ow o = {.req = {.cb = on_open}};
    o.req.data = &o;
    agent_vols_open(vs, "vol", false, &o.req);
    run_until(&o.done);
    if (!o.h) abort();
    /* Nothing ships (high water 100 %, flush age 1 h): the cluster is not
     * needed any more, and its roles' timers would only add their own
     * allocations to the counts below. */
    cluster_down();
    static uint8_t buf[4096];
    struct w w = {.req = {.cb = on_req, .len = 4096, .wbuf = buf}};
    w.req.data = &w;
    /* Warm up: node pools, buffers, the first segment. */
    for (long i = 0; i < 2000; i++) {
        w.done = 0;
        w.req.off = (uint64_t)(i % 16384) * 4096;
        agent_vol_write(o.h, &w.req);
        run_until(&w.done);
    }
    n_alloc = 0;
    counting = 1;
    uint64_t t0 = util_mono_ns();
    for (long i = 0; i < n; i++) {
        w.done = 0;
        buf[0] = (uint8_t)i;
        w.req.off = (uint64_t)((i * 7919) % 16384) * 4096;
        agent_vol_write(o.h, &w.req);
        run_until(&w.done);
        if (w.err) abort();
    }
    uint64_t dt = util_mono_ns() - t0;
    counting = 0;
    long wa = n_alloc;
    printf("agent write 4 KiB QD1 (journal + map + completion): %.2f us each, %.3f "
           "allocations per write\n", (double)dt / 1e3 / (double)n, (double)wa / (double)n);
    static uint8_t rbuf[4096];
    struct w r = {.req = {.cb = on_req, .len = 4096, .rbuf = rbuf}};
    r.req.data = &r;
    n_alloc = 0;
    counting = 1;
    t0 = util_mono_ns();
    for (long i = 0; i < n; i++) {
        r.done = 0;
        r.req.off = (uint64_t)((i * 7919) % 16384) * 4096;
        agent_vol_read(o.h, &r.req);
        run_until(&r.done);
        if (r.err) abort();
    }
    dt = util_mono_ns() - t0;
    counting = 0;
    printf("agent read 4 KiB from the cache (verified): %.2f us each, %.3f allocations per "
           "read\n", (double)dt / 1e3 / (double)n, (double)n_alloc / (double)n);
    agent_vol_put(o.h);
    agent_vols_free(vs);
}

/* ---- replay --------------------------------------------------------------- */

static void replay_cb(void *arg, const struct journal_rec *r)
{
    (void)r;
    (*(uint64_t *)arg)++;
}

static void evict(const char *dir)
{
    for (int i = 1; i < 1000; i++) {
        char p[500];
        snprintf(p, sizeof(p), "%s/%016x.seg", dir, i);
        int fd = open(p, O_RDONLY);
        if (fd < 0) break;
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

static void bench_replay(uint64_t mib, uint64_t kib)
{
    uint64_t bytes = mib << 20, len = kib << 10;
    uint64_t n = bytes / len;
    uint64_t cache_bytes = bytes + bytes / 8 + (512u << 20);
    char cache[300], dir[400];
    snprintf(cache, sizeof(cache), "%s/rcache", tmp);
    /* Name the journal after the cluster's volume, as the agent would. */
    cluster_up("replay");
    snprintf(dir, sizeof(dir), "%s/%016llx", cache, (unsigned long long)vol_id);
    uint64_t seg = BD_MIN(BD_MAX(cache_bytes / 8, 512u << 10), 64u << 20);
    struct journal_opts o = {.fio = &fileio_posix, .dir = dir, .tag = "bench", .vol_id = vol_id,
                             .name = "vol", .cap_bytes = cache_bytes, .seg_bytes = seg};
    struct journal *j;
    if (journal_create(&o, &j) < 0) abort();
    uint8_t *buf = malloc(len);
    uint64_t *cs = malloc(len / 4096 * sizeof(*cs));
    for (uint64_t i = 0; i < len; i++) buf[i] = (uint8_t)(i * 7);
    for (uint64_t k = 0; k < len / 4096; k++) cs[k] = util_xxh3(buf + k * 4096, 4096);
    struct journal_rec r;
    for (uint64_t i = 0; i < n; i++)
        if (journal_append(j, JOURNAL_WRITE, (i * len) % (64u << 20), len, buf, cs, false, &r) < 0)
            abort();
    journal_sync_now(j);
    journal_close(j);
    for (int cold = 0; cold < 2; cold++) {
        if (cold) evict(dir);
        struct journal_stats st;
        uint64_t recs = 0, t0 = util_mono_ns();
        if (journal_open(&o, &j) < 0 || journal_replay(j, replay_cb, &recs, &st) < 0) abort();
        double s = (double)(util_mono_ns() - t0) / 1e9;
        printf("journal replay, %s page cache: %llu MiB of %llu KiB entries (%llu records) in "
               "%.3f s = %.2f s per GiB\n", cold ? "cold" : "warm", (unsigned long long)mib,
               (unsigned long long)kib, (unsigned long long)recs, s, s * 1024.0 / (double)mib);
        journal_close(j);
    }
    /* The agent's start-up replay: journal scan plus building the map. */
    struct agent_vols *vs;
    struct cfg_agent cfg;
    uint64_t t0 = util_mono_ns();
    setup_agent(&vs, &cfg, cache_bytes, cache);
    double s = (double)(util_mono_ns() - t0) / 1e9;
    printf("agent start-up replay (scan + dirty map), warm: %.3f s = %.2f s per GiB\n", s,
           s * 1024.0 / (double)mib);
    agent_vols_free(vs);
    cluster_down();
    free(buf);
    free(cs);
}

int main(int argc, char **argv)
{
    log_init("/dev/null", LOG_ERROR);
    rx = reactor_new();
    mktmp();
    const char *mode = argc > 1 ? argv[1] : "all";
    if (!strcmp(mode, "append") || !strcmp(mode, "all"))
        bench_append(argc > 2 ? atol(argv[2]) : 100000);
    if (!strcmp(mode, "path") || !strcmp(mode, "all"))
        bench_path(argc > 2 ? atol(argv[2]) : 50000);
    if (!strcmp(mode, "replay") || !strcmp(mode, "all"))
        bench_replay(argc > 2 ? strtoull(argv[2], NULL, 10) : 256,
                     argc > 3 ? strtoull(argv[3], NULL, 10) : 4);
    rmtmp();
    reactor_free(rx);
    return 0;
}
