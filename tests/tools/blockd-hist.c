/* blockd-hist: concurrent NBD clients that write unique stamped values to a
 * few blocks and read them back, recording an invoke/complete history, and
 * the checker that decides it (hist.h).  Works against any NBD server.
 *
 *   blockd-hist run --uri URI --history FILE [--clients 4] [--blocks 32]
 *       [--first-block 0] [--duration 30] [--seed S] [--vol-id 1]
 *       [--op-timeout 10] [--mix write=5,read=4,flush=1] [--fua-pct 10]
 *   blockd-hist read-all --uri URI --history FILE [--blocks ...] [--seed S]
 *       [--op-timeout 10] [--retry-for 60]
 *   blockd-hist check --history FILE [--max-report 20]
 *
 * run: CLIENTS threads, each on its own NBD connection, pick an op and a
 * block at random (seeded), one op at a time: a write of a fresh stamped
 * block (writer = client number, seq = that client's count, so every value
 * is unique), a read (the stamp it returns is the value), or a flush.
 * Every op is written to the history as an invoke line before it is sent
 * and a completion line after (ok, fail with the error, or info when no
 * reply came within --op-timeout or the connection broke: the outcome is
 * then unknown).  After a failure the client drops its connection and
 * reconnects (bounded by the run's end).  SIGTERM or SIGINT ends the run
 * early: each client finishes its op in flight and stops.
 * read-all: appends "# final" and one read of every block, retrying a
 * block that fails until --retry-for runs out (then exit 3).
 * check: prints every violation and the summary line
 *   histcheck: ops=... violations=N max_latency_ms=... longest_stall_ms=...
 *
 * Exit: 0 pass, 1 violations found, 2 usage or setup error, 3 read-all
 * could not read every block. */
#include "hist.h"
#include "stamp.h"

#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <inttypes.h>
#include <libnbd.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_VIOLATION 1
#define EXIT_USAGE 2
#define EXIT_IO 3
#define READALL_CLIENT 999

static struct {
    const char *uri, *history;
    unsigned clients, max_report;
    uint64_t blocks, first, duration_s, seed, vol, op_timeout_s, retry_for_s;
    unsigned w_write, w_read, w_flush, fua_pct;
    FILE *hf;
    pthread_mutex_t lock;
    int64_t end_us;
    atomic_uint_fast64_t ops;
    volatile sig_atomic_t stop;
} g = {
    .clients = 4, .max_report = 20, .blocks = 32, .duration_s = 30, .seed = 1, .vol = 1,
    .op_timeout_s = 10, .retry_for_s = 60, .w_write = 5, .w_read = 4, .w_flush = 1, .fua_pct = 10,
    .lock = PTHREAD_MUTEX_INITIALIZER,
};

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* One history line, written whole (several processes may append). */
static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line)) n = (int)strlen(line);
    pthread_mutex_lock(&g.lock);
    /* The file is O_APPEND: one write() per line keeps lines whole. */
    if (write(fileno(g.hf), line, (size_t)n) != n) {
        fprintf(stderr, "blockd-hist: writing %s: %s\n", g.history, strerror(errno));
        exit(EXIT_USAGE);
    }
    pthread_mutex_unlock(&g.lock);
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* ---- one connection with deadlines ---------------------------------------- */

enum { RES_OK, RES_FAIL, RES_INFO };

/* Poll H until COOKIE completes (0: until connected) or DEADLINE (µs).
 * RES_OK, RES_FAIL (the server's error, errno in *ERR) or RES_INFO (no answer,
 * connection lost). */
static int wait_cookie(struct nbd_handle *h, int64_t cookie, int64_t deadline, int *err)
{
    if (cookie < 0) {
        *err = nbd_get_errno();
        return nbd_aio_is_dead(h) || nbd_aio_is_closed(h) ? RES_INFO : RES_FAIL;
    }
    for (;;) {
        int r;
        if (cookie == 0) r = nbd_aio_is_ready(h) ? 1 : (nbd_aio_is_dead(h) || nbd_aio_is_closed(h)) ? -1 : 0;
        else r = nbd_aio_command_completed(h, (uint64_t)cookie);
        if (r == 1) return RES_OK;
        if (r == -1) {
            *err = nbd_get_errno();
            /* A dead connection leaves the outcome unknown; a live one
             * carried the server's error reply. */
            return cookie == 0 || nbd_aio_is_dead(h) || nbd_aio_is_closed(h) ? RES_INFO : RES_FAIL;
        }
        int64_t left = deadline - now_us();
        if (left <= 0) {
            *err = ETIMEDOUT;
            return RES_INFO;
        }
        if (nbd_poll(h, (int)((left + 999) / 1000)) == -1) {
            *err = nbd_get_errno();
            return RES_INFO;
        }
    }
}

static struct nbd_handle *connect_until(int64_t until)
{
    while (now_us() < until && !g.stop) {
        struct nbd_handle *h = nbd_create();
        if (!h) return NULL;
        int err = 0;
        if (nbd_aio_connect_uri(h, g.uri) != -1 &&
            wait_cookie(h, 0, now_us() + (int64_t)g.op_timeout_s * 1000000, &err) == RES_OK)
            return h;
        nbd_close(h);
        usleep(200000);
    }
    return NULL;
}

static const char *rname(int r)
{
    return r == RES_OK ? "ok" : r == RES_FAIL ? "fail" : "info";
}

/* The history's name for what a read returned at BLOCK. */
static void read_value(const uint8_t *buf, uint64_t block, char *out, size_t len)
{
    struct stamp s;
    switch (stamp_parse(buf, &s)) {
    case STAMP_ZERO: snprintf(out, len, "0"); return;
    case STAMP_NO_MAGIC: snprintf(out, len, "garbage"); return;
    case STAMP_BAD_SUM: snprintf(out, len, "torn"); return;
    case STAMP_VALID: break;
    }
    if (s.vol != g.vol) snprintf(out, len, "alien:vol=%" PRIu64, s.vol);
    else if (s.seed != g.seed) snprintf(out, len, "alien:seed=%" PRIu64, s.seed);
    else if (s.block != block) snprintf(out, len, "alien:block=%" PRIu64, s.block);
    else if (s.writer == 0 || s.writer > 0xffff) snprintf(out, len, "alien:writer=%u", s.writer);
    else snprintf(out, len, "%u:%" PRIu64, s.writer, s.seq);
}

/* ---- run ------------------------------------------------------------------ */

struct client {
    unsigned id; /* writer id, 1-based */
    pthread_t th;
    uint64_t rng, seq;
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    uint8_t buf[STAMP_BLOCK];
    struct nbd_handle *h = NULL;
    unsigned total = g.w_write + g.w_read + g.w_flush;
    while (now_us() < g.end_us && !g.stop) {
        if (!h && !(h = connect_until(g.end_us))) break;
        unsigned pick = (unsigned)(splitmix(&c->rng) % total);
        uint64_t block = g.first + splitmix(&c->rng) % g.blocks;
        int64_t deadline = now_us() + (int64_t)g.op_timeout_s * 1000000;
        int err = 0, r;
        if (pick < g.w_write) {
            struct stamp s = {.vol = g.vol, .block = block, .seq = ++c->seq, .gen = 0,
                              .seed = g.seed, .writer = c->id};
            bool fua = splitmix(&c->rng) % 100 < g.fua_pct;
            stamp_fill(buf, &s);
            emit("%" PRId64 " %u invoke write %" PRIu64 " %u:%" PRIu64 "%s\n", now_us(), c->id, block,
                 c->id, s.seq, fua ? " fua" : "");
            r = wait_cookie(h, nbd_aio_pwrite(h, buf, STAMP_BLOCK, block * STAMP_BLOCK,
                                              NBD_NULL_COMPLETION, fua ? LIBNBD_CMD_FLAG_FUA : 0),
                            deadline, &err);
            emit("%" PRId64 " %u %s write %" PRIu64 " %u:%" PRIu64 " %d\n", now_us(), c->id,
                 rname(r), block, c->id, s.seq, r == RES_OK ? 0 : err);
        } else if (pick < g.w_write + g.w_read) {
            emit("%" PRId64 " %u invoke read %" PRIu64 "\n", now_us(), c->id, block);
            memset(buf, 0xee, sizeof(buf));
            r = wait_cookie(h, nbd_aio_pread(h, buf, STAMP_BLOCK, block * STAMP_BLOCK,
                                             NBD_NULL_COMPLETION, 0),
                            deadline, &err);
            char v[64] = "-";
            if (r == RES_OK) read_value(buf, block, v, sizeof(v));
            emit("%" PRId64 " %u %s read %" PRIu64 " %s %d\n", now_us(), c->id, rname(r), block, v,
                 r == RES_OK ? 0 : err);
        } else {
            emit("%" PRId64 " %u invoke flush\n", now_us(), c->id);
            r = wait_cookie(h, nbd_aio_flush(h, NBD_NULL_COMPLETION, 0), deadline, &err);
            emit("%" PRId64 " %u %s flush %d\n", now_us(), c->id, rname(r), r == RES_OK ? 0 : err);
        }
        atomic_fetch_add(&g.ops, 1);
        if (r != RES_OK) {
            /* Start afresh: a timed-out request may still be queued. */
            nbd_close(h);
            h = NULL;
            usleep(100000);
        }
    }
    if (h) {
        nbd_shutdown(h, 0);
        nbd_close(h);
    }
    return NULL;
}

static void on_stop(int sig)
{
    (void)sig;
    g.stop = 1;
}

static int cmd_run(void)
{
    struct sigaction sa = {.sa_handler = on_stop};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct client *cs = calloc(g.clients, sizeof(*cs));
    if (!cs) return EXIT_USAGE;
    emit("# blockd-hist run seed %" PRIu64 " vol %" PRIu64 " blocks %" PRIu64 "+%" PRIu64
         " clients %u\n", g.seed, g.vol, g.first, g.blocks, g.clients);
    g.end_us = now_us() + (int64_t)g.duration_s * 1000000;
    for (unsigned i = 0; i < g.clients; i++) {
        cs[i].id = i + 1;
        cs[i].rng = g.seed * 1000003 + i;
        if (pthread_create(&cs[i].th, NULL, client_main, &cs[i])) {
            fprintf(stderr, "blockd-hist: pthread_create failed\n");
            return EXIT_USAGE;
        }
    }
    for (unsigned i = 0; i < g.clients; i++) pthread_join(cs[i].th, NULL);
    free(cs);
    printf("blockd-hist run: %" PRIu64 " ops by %u clients on %" PRIu64 " blocks\n",
           (uint64_t)atomic_load(&g.ops), g.clients, g.blocks);
    return 0;
}

/* ---- read-all --------------------------------------------------------------- */

static int cmd_read_all(void)
{
    uint8_t buf[STAMP_BLOCK];
    int64_t until = now_us() + (int64_t)g.retry_for_s * 1000000;
    struct nbd_handle *h = NULL;
    emit("# final read of blocks %" PRIu64 "+%" PRIu64 "\n", g.first, g.blocks);
    for (uint64_t b = g.first; b < g.first + g.blocks;) {
        if (!h && !(h = connect_until(until))) {
            fprintf(stderr, "blockd-hist read-all: no connection within --retry-for\n");
            return EXIT_IO;
        }
        int err = 0;
        emit("%" PRId64 " %u invoke read %" PRIu64 "\n", now_us(), READALL_CLIENT, b);
        int r = wait_cookie(h, nbd_aio_pread(h, buf, STAMP_BLOCK, b * STAMP_BLOCK,
                                             NBD_NULL_COMPLETION, 0),
                            now_us() + (int64_t)g.op_timeout_s * 1000000, &err);
        char v[64] = "-";
        if (r == RES_OK) read_value(buf, b, v, sizeof(v));
        emit("%" PRId64 " %u %s read %" PRIu64 " %s %d\n", now_us(), READALL_CLIENT, rname(r), b, v,
             r == RES_OK ? 0 : err);
        if (r == RES_OK) {
            b++;
            continue;
        }
        nbd_close(h);
        h = NULL;
        if (now_us() >= until) {
            fprintf(stderr, "blockd-hist read-all: block %" PRIu64 " unreadable: %s\n", b, strerror(err));
            return EXIT_IO;
        }
        usleep(200000);
    }
    if (h) {
        nbd_shutdown(h, 0);
        nbd_close(h);
    }
    printf("blockd-hist read-all: %" PRIu64 " blocks read\n", g.blocks);
    return 0;
}

/* ---- check ------------------------------------------------------------------ */

static int cmd_check(void)
{
    FILE *f = fopen(g.history, "r");
    if (!f) {
        fprintf(stderr, "blockd-hist: %s: %s\n", g.history, strerror(errno));
        return EXIT_USAGE;
    }
    struct hist h = {0};
    int rc = hist_parse(f, g.history, &h);
    fclose(f);
    if (rc) {
        hist_free(&h);
        return EXIT_USAGE;
    }
    struct hist_result r;
    uint64_t v = hist_check(&h, stdout, g.max_report, &r);
    hist_free(&h);
    if (r.ops == 0) {
        fprintf(stderr, "blockd-hist check: the history holds no operation\n");
        return EXIT_USAGE;
    }
    return v ? EXIT_VIOLATION : 0;
}

/* ---- options ---------------------------------------------------------------- */

static int usage(void)
{
    fprintf(stderr, "usage: blockd-hist run|read-all|check --history FILE [options] (see the source)\n");
    return EXIT_USAGE;
}

static bool parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || !*s || *end || *s == '-') return false;
    *v = x;
    return true;
}

static bool parse_mix(const char *s)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", s);
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        uint64_t w;
        if (!eq || !parse_u64(eq + 1, &w) || w > 1000) return false;
        *eq = 0;
        if (!strcmp(tok, "write")) g.w_write = (unsigned)w;
        else if (!strcmp(tok, "read")) g.w_read = (unsigned)w;
        else if (!strcmp(tok, "flush")) g.w_flush = (unsigned)w;
        else return false;
    }
    return g.w_write + g.w_read + g.w_flush > 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) return usage();
    const char *cmd = argv[1];
    static const struct option opts[] = {
        {"uri", required_argument, NULL, 'u'},       {"history", required_argument, NULL, 'H'},
        {"clients", required_argument, NULL, 'c'},   {"blocks", required_argument, NULL, 'b'},
        {"first-block", required_argument, NULL, 'f'}, {"duration", required_argument, NULL, 'd'},
        {"seed", required_argument, NULL, 's'},      {"vol-id", required_argument, NULL, 'v'},
        {"op-timeout", required_argument, NULL, 't'}, {"mix", required_argument, NULL, 'm'},
        {"fua-pct", required_argument, NULL, 'F'},   {"retry-for", required_argument, NULL, 'r'},
        {"max-report", required_argument, NULL, 'M'}, {NULL, 0, NULL, 0},
    };
    optind = 2;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        uint64_t v = 0;
        bool ok = true;
        switch (o) {
        case 'u': g.uri = optarg; break;
        case 'H': g.history = optarg; break;
        case 'm': ok = parse_mix(optarg); break;
        case 'c': ok = parse_u64(optarg, &v) && v >= 1 && v <= 64; g.clients = (unsigned)v; break;
        case 'b': ok = parse_u64(optarg, &g.blocks) && g.blocks >= 1; break;
        case 'f': ok = parse_u64(optarg, &g.first); break;
        case 'd': ok = parse_u64(optarg, &g.duration_s); break;
        case 's': ok = parse_u64(optarg, &g.seed); break;
        case 'v': ok = parse_u64(optarg, &g.vol); break;
        case 't': ok = parse_u64(optarg, &g.op_timeout_s) && g.op_timeout_s >= 1; break;
        case 'F': ok = parse_u64(optarg, &v) && v <= 100; g.fua_pct = (unsigned)v; break;
        case 'r': ok = parse_u64(optarg, &g.retry_for_s); break;
        case 'M': ok = parse_u64(optarg, &v) && v <= 100000; g.max_report = (unsigned)v; break;
        default: return usage();
        }
        if (!ok) {
            fprintf(stderr, "blockd-hist: bad value '%s'\n", optarg);
            return EXIT_USAGE;
        }
    }
    if (!g.history) return usage();
    if (!strcmp(cmd, "check")) return cmd_check();
    if (!g.uri) return usage();
    g.hf = fopen(g.history, "a");
    if (!g.hf) {
        fprintf(stderr, "blockd-hist: %s: %s\n", g.history, strerror(errno));
        return EXIT_USAGE;
    }
    int rc = !strcmp(cmd, "run") ? cmd_run() : !strcmp(cmd, "read-all") ? cmd_read_all() : usage();
    fclose(g.hf);
    return rc;
}
