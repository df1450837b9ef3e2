/* blockd-fsx: an fsx-style model tester for any NBD server (CONTRACT.md §2
 * rows 2 and 3), after Ceph's rbd_fsx and Crucible's crutest.
 *
 *   blockd-fsx --uri nbd://127.0.0.1:10809/vol0 [--conns 3] --ops 6000 [--seed S]
 *   blockd-fsx --uri U --log run.log --duration 60      # then kill -9 the server
 *   blockd-fsx --uri U --verify-log run.log [--require flushed|acked]
 *
 * Modes:
 *   run         random ops (read, write, FUA write, trim, write_zeroes, flush,
 *               block_status, reconnect, multi-conn write/flush/read) on one
 *               or more connections; every written block is a stamped block
 *               (stamp.h); every read is checked against the model
 *               (fsx_model.h); a final pass reads the whole range.
 *   verify-log  after a crash and restart: replay a --log into crash windows
 *               (fsx_log.h) and read every block once.
 *   poke        write stamped blocks with chosen fields (a second, foreign or
 *               stale writer; used by tests to plant corruption).
 *   inspect     print what the stamps of some blocks say.
 *
 * Ops run one at a time (fsx style), so the history is a total order and a
 * failure replays exactly from its seed.  On a mismatch blockd-fsx prints
 * the seed, the block, the diagnosis (stamp.h STAMP_DIAGS) with what was
 * expected and which write the stamp says was read, dumps the last ops,
 * writes the model's image as <out>/blockd-fsx-<seed>.good and the ops as
 * <out>/blockd-fsx-<seed>.ops, and exits 1.
 *
 * This file holds the options and the random-op run; fsx_check.c the
 * after-the-fact modes (verify-log, poke, inspect); fsx_main.h their shared
 * state.
 *
 * Exit status: 0 pass, 1 verification failure, 2 usage or setup error,
 * 3 I/O error or lost connection (the --log is complete and synced). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libnbd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fsx_main.h"

static const char *const op_names[N_OPS + 1] = {
#define OP_NAME(n, s, w) s,
    OPS(OP_NAME)
#undef OP_NAME
    "final-read", NULL};
static unsigned op_weight[N_OPS] = {
#define OP_W(n, s, w) w,
    OPS(OP_W)
#undef OP_W
};

struct fsx_state g = {
    .n_conns = 1, .max_blocks = 16, .final_check = true, .out_dir = ".",
    .log_sync = 256, .poke_block = -1, .inspect_block = -1, .poke_count = 1,
    .poke_seq = 1, .inspect_count = 1, .history = 1000,
    .me = {.vol = 1, .writer = 1, .gen = 1},
};


void msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("blockd-fsx: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static double elapsed_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - g.t0.tv_sec) + (double)(t.tv_nsec - g.t0.tv_nsec) / 1e9;
}

/* ---- random numbers: xoshiro256**, seeded by splitmix64 ----------------- */

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rnd(void)
{
    uint64_t *s = g.s, r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = rotl(s[3], 45);
    return r;
}
/* Uniform in [0, n), n > 0. */
static uint64_t rnd_below(uint64_t n) { return rnd() % n; }

static void rnd_seed(uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        g.s[i] = z ^ (z >> 31);
    }
}

/* ---- history, failure output -------------------------------------------- */

static struct hist *hist_add(enum op op, uint64_t seq, uint64_t first, uint64_t count,
                             unsigned c1, unsigned c2, unsigned c3)
{
    struct hist *h = &g.hist[g.n_hist++ % g.history];
    *h = (struct hist){.n = g.op_no, .seq = seq, .first = first, .count = count,
                       .op = (uint8_t)op, .conn = (uint8_t)c1, .conn2 = (uint8_t)c2,
                       .conn3 = (uint8_t)c3};
    if (g.verbose)
        msg("op %" PRIu64 " %s seq %" PRIu64 " conn %u blocks %" PRIu64 "+%" PRIu64, h->n,
            op_names[op], seq, c1, first, count);
    return h;
}

static void hist_print(FILE *f, const struct hist *h)
{
    fprintf(f, "op %" PRIu64 " %-10s", h->n, op_names[h->op]);
    if (h->seq) fprintf(f, " seq %" PRIu64, h->seq);
    if (h->count) fprintf(f, " blocks %" PRIu64 "..%" PRIu64 " (%" PRIu64 ")", h->first,
                          h->first + h->count - 1, h->count);
    if (h->op == OP_MULTICONN)
        fprintf(f, " write conn %u flush conn %u read conn %u\n", h->conn, h->conn2, h->conn3);
    else
        fprintf(f, " conn %u\n", h->conn);
}

static void hist_dump(FILE *f)
{
    uint64_t n = g.n_hist < g.history ? g.n_hist : g.history;
    fprintf(f, "last %" PRIu64 " ops, oldest first:\n", n);
    for (uint64_t i = g.n_hist - n; i < g.n_hist; i++) hist_print(f, &g.hist[i % g.history]);
}

/* The op in the history that wrote SEQ, or NULL. */
static const struct hist *hist_find_seq(uint64_t seq)
{
    uint64_t n = g.n_hist < g.history ? g.n_hist : g.history;
    for (uint64_t i = g.n_hist - n; i < g.n_hist; i++)
        if (g.hist[i % g.history].seq == seq) return &g.hist[i % g.history];
    return NULL;
}

static void summary(const char *result)
{
    fprintf(stdout, "blockd-fsx: %s seed=%" PRIu64 " ops=%" PRIu64, result, g.seed, g.op_no);
    for (int i = 0; i < N_OPS; i++) fprintf(stdout, " %s=%" PRIu64, op_names[i], g.count[i]);
    fprintf(stdout,
            " bytes_written=%" PRIu64 " bytes_verified=%" PRIu64 " conns=%u blocks=%" PRIu64
            " elapsed=%.1fs\n",
            g.bytes_written, g.bytes_verified, g.n_conns, g.range_count, elapsed_s());
    fflush(stdout);
}

static void write_good_and_ops(void)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/blockd-fsx-%" PRIu64 ".good", g.out_dir, g.seed);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool ok = fd >= 0 && ftruncate(fd, (off_t)g.size) == 0;
    for (uint64_t b = g.range_first; ok && b < g.range_first + g.range_count; b++) {
        if (g.model.b[b].last_kind != FSX_WRITE && g.model.b[b].last_kind != FSX_FUA) continue;
        fsx_model_good(&g.model, b, &g.me, g.rbuf);
        ok = pwrite(fd, g.rbuf, BS, (off_t)(b * BS)) == BS;
    }
    if (fd >= 0 && close(fd) < 0) ok = false;
    msg(ok ? "model image written to %s" : "could not write %s", path);

    snprintf(path, sizeof path, "%s/blockd-fsx-%" PRIu64 ".ops", g.out_dir, g.seed);
    FILE *f = fopen(path, "we");
    if (f) {
        hist_dump(f);
        ok = fclose(f) == 0;
    }
    msg(f && ok ? "op history written to %s" : "could not write %s", path);
}

void close_all(void)
{
    for (unsigned i = 0; i < g.n_conns; i++)
        if (g.c[i].h) {
            nbd_close(g.c[i].h);
            g.c[i].h = NULL;
        }
    if (g.logging) {
        int rc = fsx_log_close(&g.log);
        if (rc) msg("log %s: %s", g.log_path, strerror(-rc));
        g.logging = false;
    }
}

/* A data mismatch: everything a person needs to replay it, then exit 1. */
static void __attribute__((noreturn))
fail_block(enum op op, unsigned conn, uint64_t block, const char *diag, const char *why,
           const char *text)
{
    fflush(stdout);
    msg("FAIL seed=%" PRIu64 " op=%" PRIu64 " (%s on conn %u) block=%" PRIu64
        " offset=%" PRIu64 ": %s (%s)",
        g.seed, g.op_no, op_names[op], conn, block, block * BS, diag, why);
    msg("  %s", text);
    struct fsx_mblk *b = &g.model.b[block];
    if (b->last_seq) {
        const struct hist *h = hist_find_seq(b->last_seq);
        if (h) {
            fputs("blockd-fsx:   newest op on this block: ", stderr);
            hist_print(stderr, h);
        }
    }
    msg("  replay with: --seed %" PRIu64 " (and the same other options)", g.seed);
    hist_dump(stderr);
    write_good_and_ops();
    summary("FAIL");
    close_all();
    exit(EXIT_VERIFY);
}

void fail_io(enum op op, unsigned conn, const char *what)
{
    int err = nbd_get_errno();
    const char *e = nbd_get_error();
    fflush(stdout);
    if (g.timed_out)
        msg("I/O ERROR seed=%" PRIu64 " op=%" PRIu64 " (%s on conn %u): %s: no reply in %" PRIu64
            " s (--op-timeout)", g.seed, g.op_no, op_names[op], conn, what, g.op_timeout_s);
    else
        msg("I/O ERROR seed=%" PRIu64 " op=%" PRIu64 " (%s on conn %u): %s: %s (errno %d)",
            g.seed, g.op_no, op_names[op], conn, what, e ? e : "?", err);
    if (g.logging) msg("log %s is complete; check it with --verify-log", g.log_path);
    summary("IOERROR");
    close_all();
    exit(EXIT_IO);
}

static void log_or_die(int rc)
{
    if (!rc) return;
    msg("log %s: %s", g.log_path, strerror(-rc));
    close_all();
    exit(EXIT_IO);
}

/* ---- I/O with a deadline --------------------------------------------------
 * libnbd's synchronous calls wait forever on a paused or cut-off server, so
 * every request goes through the aio API and nbd_poll() with the time left
 * of --op-timeout (0: no limit).  A timeout sets g.timed_out and fails like
 * any other I/O error (exit 3). */

static uint64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

#define IO_CONNECTED 0   /* io_wait cookie: wait until connected */
#define IO_CLOSED (-2)   /* io_wait cookie: wait until disconnected */

/* Poll H until command COOKIE completes (or, for the two special cookies,
 * the handle is connected or closed), or the deadline passes. */
static int io_wait(struct nbd_handle *h, int64_t cookie)
{
    uint64_t deadline = g.op_timeout_s ? mono_ms() + g.op_timeout_s * 1000 : 0;
    if (cookie < 0 && cookie != IO_CLOSED) return -1;
    for (;;) {
        int r = cookie == IO_CLOSED ? (nbd_aio_is_closed(h) || nbd_aio_is_dead(h) ? 1 : 0)
                : cookie == IO_CONNECTED
                    ? (nbd_aio_is_ready(h) ? 1 : nbd_aio_is_dead(h) ? -1 : 0)
                    : nbd_aio_command_completed(h, (uint64_t)cookie);
        if (r) return r < 0 ? -1 : 0;
        int ms = -1;
        if (deadline) {
            uint64_t now = mono_ms();
            if (now >= deadline) {
                g.timed_out = true;
                return -1;
            }
            ms = (int)(deadline - now);
        }
        if (nbd_poll(h, ms) == -1) return -1;
    }
}

int io_connect(struct nbd_handle *h, const char *uri)
{
    if (nbd_aio_connect_uri(h, uri) == -1) return -1;
    return io_wait(h, IO_CONNECTED);
}
int io_disconnect(struct nbd_handle *h)
{
    /* NBD_CMD_DISC after every reply is in: a clean disconnect. */
    if (nbd_aio_disconnect(h, 0) == -1) return -1;
    return io_wait(h, IO_CLOSED);
}
int io_pread(struct nbd_handle *h, void *buf, uint64_t len, uint64_t off)
{
    return io_wait(h, nbd_aio_pread(h, buf, len, off, NBD_NULL_COMPLETION, 0));
}
int io_pwrite(struct nbd_handle *h, const void *buf, uint64_t len, uint64_t off, uint32_t flags)
{
    return io_wait(h, nbd_aio_pwrite(h, buf, len, off, NBD_NULL_COMPLETION, flags));
}
int io_flush(struct nbd_handle *h)
{
    return io_wait(h, nbd_aio_flush(h, NBD_NULL_COMPLETION, 0));
}
static int io_trim(struct nbd_handle *h, uint64_t len, uint64_t off)
{
    return io_wait(h, nbd_aio_trim(h, len, off, NBD_NULL_COMPLETION, 0));
}
static int io_zero(struct nbd_handle *h, uint64_t len, uint64_t off)
{
    return io_wait(h, nbd_aio_zero(h, len, off, NBD_NULL_COMPLETION, 0));
}

/* ---- connections ---------------------------------------------------------- */

static int conn_open(unsigned i, bool first)
{
    struct conn *c = &g.c[i];
    c->uri = g.uris[i % g.n_uris];
    c->h = nbd_create();
    if (!c->h) goto err;
    if (nbd_add_meta_context(c->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1) goto err;
    if (io_connect(c->h, c->uri) == -1) goto err;
    int64_t size = nbd_get_size(c->h);
    if (size < 0) goto err;
    if (first && i == 0) {
        g.size = (uint64_t)size;
        g.can_fua = nbd_can_fua(c->h) == 1;
        g.can_trim = nbd_can_trim(c->h) == 1;
        g.can_zero = nbd_can_zero(c->h) == 1;
        g.can_flush = nbd_can_flush(c->h) == 1;
        g.can_multi = nbd_can_multi_conn(c->h) == 1;
        g.can_bstatus = nbd_can_meta_context(c->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
        int64_t max = nbd_get_block_size(c->h, LIBNBD_SIZE_MAXIMUM);
        g.server_max_blocks = max > 0 ? (uint64_t)max / BS : 32 * 1024 * 1024 / BS;
        if (!g.server_max_blocks) g.server_max_blocks = 1;
        if (g.server_max_blocks < g.max_blocks) g.max_blocks = g.server_max_blocks;
    } else if ((uint64_t)size != g.size) {
        msg("%s: size %" PRId64 " differs from the first connection's %" PRIu64, c->uri, size,
            g.size);
        return -1;
    }
    return 0;
err:
    if (g.timed_out)
        msg("%s: connect: no reply in %" PRIu64 " s (--op-timeout)", c->uri, g.op_timeout_s);
    else
        msg("%s: %s", c->uri, nbd_get_error() ? nbd_get_error() : "cannot create a handle");
    if (c->h) nbd_close(c->h);
    c->h = NULL;
    return -1;
}

/* ---- one op each ---------------------------------------------------------- */

static void pick_range(uint64_t max, uint64_t *first, uint64_t *n)
{
    *first = g.range_first + rnd_below(g.range_count);
    uint64_t room = g.range_first + g.range_count - *first;
    if (max > room) max = room;
    *n = 1 + rnd_below(max);
}

/* Check N blocks at FIRST in g.rbuf against the model. */
static void check_blocks(enum op op, unsigned conn, uint64_t first, uint64_t n)
{
    char why[600];
    for (uint64_t i = 0; i < n; i++) {
        struct stamp_expect e;
        fsx_model_expect(&g.model, first + i, &e);
        enum stamp_diag d = stamp_classify(g.rbuf + i * BS, first + i, &g.me, &e, why, sizeof why);
        if (d != STAMP_DIAG_OK)
            fail_block(op, conn, first + i, stamp_diag_name(d), stamp_diag_why(d), why);
    }
    g.bytes_verified += n * BS;
}

static void do_read(enum op op, unsigned conn, uint64_t first, uint64_t n)
{
    if (io_pread(g.c[conn].h, g.rbuf, n * BS, first * BS) == -1) fail_io(op, conn, "pread");
    check_blocks(op, conn, first, n);
}

/* Write, FUA write, zero or trim N blocks at FIRST on CONN; log and model it. */
static void do_mutate(enum op op, unsigned conn, uint64_t first, uint64_t n)
{
    enum fsx_kind kind = op == OP_WRITE || op == OP_MULTICONN ? FSX_WRITE
                         : op == OP_FUA                       ? FSX_FUA
                         : op == OP_ZERO                      ? FSX_ZERO
                                                              : FSX_TRIM;
    uint64_t seq = ++g.seq;
    struct nbd_handle *h = g.c[conn].h;
    int rc;

    if (kind == FSX_WRITE || kind == FSX_FUA) {
        for (uint64_t i = 0; i < n; i++) {
            struct stamp s = g.me;
            s.block = first + i;
            s.seq = seq;
            stamp_fill(g.buf + i * BS, &s);
        }
    }
    if (g.logging)
        log_or_die(fsx_log_printf(&g.log, "I %" PRIu64 " %c %" PRIu64 " %" PRIu64, seq,
                                  fsx_log_kind_char(kind), first, n));
    hist_add(op, seq, first, n, conn, 0, 0);
    switch (kind) {
    case FSX_WRITE: rc = io_pwrite(h, g.buf, n * BS, first * BS, 0); break;
    case FSX_FUA: rc = io_pwrite(h, g.buf, n * BS, first * BS, LIBNBD_CMD_FLAG_FUA); break;
    case FSX_ZERO: rc = io_zero(h, n * BS, first * BS); break;
    default: rc = io_trim(h, n * BS, first * BS); break;
    }
    if (rc == -1) {
        if (g.logging) {
            int err = nbd_get_errno();
            log_or_die(fsx_log_printf(&g.log, "E %" PRIu64 " %d", seq, err));
        }
        fail_io(op, conn, op_names[op]);
    }
    if (g.logging) log_or_die(fsx_log_printf(&g.log, "A %" PRIu64, seq));
    if (kind == FSX_WRITE || kind == FSX_FUA) g.bytes_written += n * BS;
    /* Linearizable: the write is visible everywhere once acked. */
    if (fsx_model_apply(&g.model, first, n, seq, kind, !g.lag)) {
        msg("out of memory");
        exit(EXIT_USAGE);
    }
}

static void do_flush(enum op op, unsigned conn)
{
    uint64_t seq = ++g.seq;
    if (g.logging) log_or_die(fsx_log_printf(&g.log, "FI %" PRIu64, seq));
    if (op == OP_FLUSH) hist_add(op, seq, 0, 0, conn, 0, 0);
    if (io_flush(g.c[conn].h) == -1) fail_io(op, conn, "flush");
    if (g.logging) log_or_die(fsx_log_printf(&g.log, "FA %" PRIu64, seq));
    fsx_model_settle(&g.model);
}

/* The extent callback state.  A violation is recorded, not acted on: the
 * callback runs inside libnbd, where closing the handle is not allowed. */
struct bs_ctx {
    uint64_t off;          /* offset this request started at */
    uint64_t covered;      /* bytes described so far, from off */
    uint64_t end;          /* end offset of the whole op */
    bool bad;              /* a violation was found */
    uint64_t bad_block;
    const char *bad_diag;
    char text[200];
};

static int bs_cb(void *opaque, const char *ctx, uint64_t off, uint32_t *entries, size_t nr,
                 int *error)
{
    struct bs_ctx *b = opaque;
    (void)error;
    if (strcmp(ctx, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0) return 0;
    uint64_t pos = off;
    for (size_t i = 0; i + 1 < nr && pos < b->end; i += 2) {
        uint64_t len = entries[i], flags = entries[i + 1];
        uint64_t e = pos + len > b->end ? b->end : pos + len;
        for (uint64_t blk = pos / BS; !b->bad && (flags & (LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO)) &&
                                      blk * BS < e; blk++) {
            struct stamp_expect x;
            fsx_model_expect(&g.model, blk, &x);
            if (x.zero_ok || x.any_ok) continue;
            b->bad = true;
            b->bad_block = blk;
            b->bad_diag = flags & LIBNBD_STATE_ZERO ? "bstatus-zero" : "bstatus-hole";
            snprintf(b->text, sizeof b->text,
                     "block status flags %s%s for bytes %" PRIu64 "..%" PRIu64
                     " but the model has data seq %" PRIu64 "..%" PRIu64 " in block %" PRIu64,
                     flags & LIBNBD_STATE_HOLE ? "HOLE " : "",
                     flags & LIBNBD_STATE_ZERO ? "ZERO" : "", pos, e, x.lo, x.hi, blk);
        }
        pos += len;
    }
    if (pos > b->off + b->covered) b->covered = (pos > b->end ? b->end : pos) - b->off;
    return 0;
}

static void do_bstatus(unsigned conn, uint64_t first, uint64_t n)
{
    uint64_t start = first * BS, end = (first + n) * BS;
    for (int round = 0; round < 64 && start < end; round++) {
        struct bs_ctx b = {.off = start, .end = end};
        if (io_wait(g.c[conn].h,
                    nbd_aio_block_status(g.c[conn].h, end - start, start,
                                         (nbd_extent_callback){.callback = bs_cb, .user_data = &b},
                                         NBD_NULL_COMPLETION, 0)) == -1)
            fail_io(OP_BSTATUS, conn, "block_status");
        if (b.bad)
            fail_block(OP_BSTATUS, conn, b.bad_block, b.bad_diag,
                       "C5: written data reported as a hole or zeros", b.text);
        if (!b.covered) {
            msg("I/O ERROR: block status at %" PRIu64 " described no bytes", start);
            fail_io(OP_BSTATUS, conn, "block_status made no progress");
        }
        start += b.covered;
    }
}

static void do_reconnect(unsigned conn)
{
    /* A clean disconnect (NBD_CMD_DISC) after which every completed write
     * must still be visible on the new connection. */
    if (io_disconnect(g.c[conn].h) == -1) fail_io(OP_RECONNECT, conn, "disconnect");
    nbd_close(g.c[conn].h);
    g.c[conn].h = NULL;
    if (conn_open(conn, false)) {
        msg("I/O ERROR seed=%" PRIu64 " op=%" PRIu64 ": reconnect of conn %u failed", g.seed,
            g.op_no, conn);
        summary("IOERROR");
        close_all();
        exit(EXIT_IO);
    }
}

static enum op pick_op(void)
{
    unsigned total = 0;
    for (int i = 0; i < OP_FINAL; i++) total += op_weight[i];
    uint64_t r = rnd_below(total);
    for (int i = 0; i < OP_FINAL; i++) {
        if (r < op_weight[i]) return (enum op)i;
        r -= op_weight[i];
    }
    return OP_READ;
}

static void one_op(void)
{
    enum op op = pick_op();
    unsigned conn = (unsigned)rnd_below(g.n_conns);
    uint64_t first, n;

    g.op_no++;
    g.count[op]++;
    switch (op) {
    case OP_READ:
        pick_range(g.max_blocks, &first, &n);
        hist_add(op, 0, first, n, conn, 0, 0);
        do_read(op, conn, first, n);
        break;
    case OP_WRITE:
    case OP_FUA:
    case OP_TRIM:
    case OP_ZERO:
        pick_range(g.max_blocks, &first, &n);
        do_mutate(op, conn, first, n);
        break;
    case OP_FLUSH:
        do_flush(op, conn);
        break;
    case OP_BSTATUS:
        pick_range(g.max_blocks * 4, &first, &n);
        hist_add(op, 0, first, n, conn, 0, 0);
        do_bstatus(conn, first, n);
        break;
    case OP_RECONNECT:
        hist_add(op, 0, 0, 0, conn, 0, 0);
        do_reconnect(conn);
        break;
    case OP_MULTICONN: {
        /* C8: write on A, flush on B, read on C sees the write. */
        unsigned a = conn, b = (a + 1 + (unsigned)rnd_below(g.n_conns - 1)) % g.n_conns;
        unsigned c = b;
        if (g.n_conns > 2) {
            do c = (unsigned)rnd_below(g.n_conns);
            while (c == a || c == b);
        }
        pick_range(g.max_blocks, &first, &n);
        do_mutate(op, a, first, n);
        g.hist[(g.n_hist - 1) % g.history].conn2 = (uint8_t)b;
        g.hist[(g.n_hist - 1) % g.history].conn3 = (uint8_t)c;
        do_flush(op, b);
        do_read(op, c, first, n);
        break;
    }
    default:
        break;
    }
}

/* ---- setup and modes ------------------------------------------------------ */

static void disable(enum op op, const char *why)
{
    if (!op_weight[op]) return;
    op_weight[op] = 0;
    msg("%s disabled: %s", op_names[op], why);
}

int open_all(void)
{
    for (unsigned i = 0; i < g.n_conns; i++)
        if (conn_open(i, true)) return -1;
    g.nblocks = g.size / BS;
    if (!g.nblocks) {
        msg("export is smaller than one block");
        return -1;
    }
    if (!g.range_count) g.range_count = g.nblocks - (g.range_first < g.nblocks ? g.range_first : 0);
    if (g.range_first >= g.nblocks || g.range_count > g.nblocks - g.range_first) {
        msg("--range %" PRIu64 ":%" PRIu64 " is outside the export (%" PRIu64 " blocks)",
            g.range_first, g.range_count, g.nblocks);
        return -1;
    }
    return 0;
}

static int run(void)
{
    if (open_all()) return EXIT_USAGE;
    if (g.n_conns > 1 && !g.can_multi) {
        msg("%u connections, but the server does not advertise CAN_MULTI_CONN (C8): "
            "use --conns 1", g.n_conns);
        close_all();
        return EXIT_USAGE;
    }
    if (!g.can_fua) disable(OP_FUA, "server does not advertise FUA");
    if (!g.can_trim) disable(OP_TRIM, "server does not advertise TRIM");
    if (!g.can_zero) disable(OP_ZERO, "server does not advertise WRITE_ZEROES");
    if (!g.can_bstatus) disable(OP_BSTATUS, "server has no base:allocation context");
    if (!g.can_flush) {
        disable(OP_FLUSH, "server does not advertise FLUSH");
        disable(OP_MULTICONN, "needs FLUSH");
        if (g.lag) {
            msg("--consistency=flush needs FLUSH");
            close_all();
            return EXIT_USAGE;
        }
    }
    if (g.n_conns < 2) disable(OP_MULTICONN, "needs --conns 2 or more");
    unsigned total = 0;
    for (int i = 0; i < OP_FINAL; i++) total += op_weight[i];
    if (!total) {
        msg("every op is disabled");
        close_all();
        return EXIT_USAGE;
    }
    if (fsx_model_init(&g.model, g.nblocks, g.init_any, g.loose_trim)) return EXIT_USAGE;
    if (g.log_path) {
        struct fsx_log_hdr h = {.me = g.me, .size = g.size, .init_any = g.init_any,
                                .loose_trim = g.loose_trim, .range_first = g.range_first,
                                .range_count = g.range_count};
        int rc = fsx_log_open(&g.log, g.log_path, &h, g.log_sync);
        if (rc) {
            msg("log %s: %s", g.log_path, strerror(-rc));
            close_all();
            return EXIT_USAGE;
        }
        g.logging = true;
    }
    msg("seed=%" PRIu64 " uri=%s conns=%u size=%" PRIu64 " range=%" PRIu64 ":%" PRIu64
        " max_blocks=%" PRIu64 " vol=%" PRIu64 " writer=%" PRIu32 " gen=%" PRIu64
        " consistency=%s",
        g.seed, g.uris[0], g.n_conns, g.size, g.range_first, g.range_count, g.max_blocks,
        g.me.vol, g.me.writer, g.me.gen, g.lag ? "flush" : "linearizable");

    double deadline = g.duration_s ? (double)g.duration_s : 0;
    while ((!g.ops || g.op_no < g.ops) && (!deadline || elapsed_s() < deadline)) one_op();

    if (g.final_check) {
        /* Settle lagging connections first so the final pass is exact. */
        if (g.lag) do_flush(OP_FLUSH, 0);
        g.op_no++;
        hist_add(OP_FINAL, 0, g.range_first, g.range_count, 0, 0, 0);
        for (uint64_t b = g.range_first; b < g.range_first + g.range_count; b += g.max_blocks) {
            uint64_t n = g.range_first + g.range_count - b;
            if (n > g.max_blocks) n = g.max_blocks;
            do_read(OP_FINAL, 0, b, n);
        }
        g.count[OP_FINAL]++;
    }
    if (g.final_flush) {
        g.op_no++;
        g.count[OP_FLUSH]++;
        do_flush(OP_FLUSH, 0);
    }
    summary("PASS");
    for (unsigned i = 0; i < g.n_conns; i++)
        if (io_disconnect(g.c[i].h) == -1) fail_io(OP_FINAL, i, "disconnect");
    close_all();
    return 0;
}

/* ---- options -------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs(
        "usage: blockd-fsx --uri URI [options]          random ops, checked on every read\n"
        "       blockd-fsx --uri URI --verify-log FILE  check every block after a crash\n"
        "       blockd-fsx --uri URI --poke BLOCK ...   write stamped blocks (tests)\n"
        "       blockd-fsx --uri URI --inspect BLOCK    print the stamps of blocks\n"
        "  --uri/--uri2/--uri3 URI  servers (one volume); connection i uses uri i%n\n"
        "  --conns N                connections (default 1; >1 needs CAN_MULTI_CONN)\n"
        "  --seed N                 seed (default: random, printed)\n"
        "  --ops N | --duration S   how long (default 10000 ops)\n"
        "  --vol-id N --writer-id N --gen N   the stamp identity (default 1 1 1)\n"
        "  --max-blocks N           largest op in 4 KiB blocks (default 16)\n"
        "  --range FIRST:COUNT      blocks to use (default the whole export)\n"
        "  --mix op=W,...           op weights; ops: read write fua trim zero flush\n"
        "                           bstatus reconnect multiconn (0 disables)\n"
        "  --consistency linearizable|flush   what reads on other connections may\n"
        "                           see before a flush (default linearizable, C7)\n"
        "  --init zero|any          initial contents (default zero, C11)\n"
        "  --loose-trim             trimmed blocks may keep old data (plain NBD)\n"
        "  --log FILE [--log-sync N]  crash-window log, fdatasync every N lines\n"
        "  --verify-log FILE [--require flushed|acked]\n"
        "  --from-log FILE          take seed/vol/writer/gen from a log header\n"
        "  --poke BLOCK [--poke-count N] [--poke-seq S]\n"
        "  --inspect BLOCK [--inspect-count N]\n"
        "  --out-dir DIR            where .good and .ops go on failure (default .)\n"
        "  --history N              ops kept for the failure dump (default 1000)\n"
        "  --no-final-check         skip the final whole-range read\n"
        "  --final-flush            end with a flush (everything durable)\n"
        "  --op-timeout SECS        an op or connect without reply this long is an\n"
        "                           I/O error, exit 3 (default 0: wait forever)\n"
        "  -v, --verbose            print every op\n"
        "exit: 0 pass, 1 verification failure, 2 usage, 3 I/O error\n",
        f);
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-') return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end) return false;
    *out = v;
    return true;
}

static bool parse_mix(const char *s)
{
    char *copy = strdup(s), *save = NULL;
    bool ok = copy != NULL;
    for (char *tok = ok ? strtok_r(copy, ",", &save) : NULL; ok && tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        uint64_t w;
        ok = eq && parse_u64(eq + 1, &w) && w <= 1000;
        if (!ok) break;
        *eq = '\0';
        int i;
        for (i = 0; i < OP_FINAL && strcmp(op_names[i], tok); i++) {
        }
        ok = i < OP_FINAL;
        if (ok) op_weight[i] = (unsigned)w;
    }
    free(copy);
    return ok;
}

enum {
    O_URI = 256, O_URI2, O_URI3, O_CONNS, O_SEED, O_OPS, O_DURATION, O_VOL, O_WRITER, O_GEN,
    O_MAXB, O_RANGE, O_MIX, O_CONS, O_INIT, O_LOOSE, O_LOG, O_LOGSYNC, O_VERIFY, O_REQUIRE,
    O_FROMLOG, O_POKE, O_POKECOUNT, O_POKESEQ, O_INSPECT, O_INSPECTCOUNT, O_OUT, O_HIST,
    O_NOFINAL, O_FINALFLUSH, O_OPTIMEOUT,
};

static const struct option long_opts[] = {
    {"uri", 1, 0, O_URI}, {"uri2", 1, 0, O_URI2}, {"uri3", 1, 0, O_URI3},
    {"conns", 1, 0, O_CONNS}, {"seed", 1, 0, O_SEED}, {"ops", 1, 0, O_OPS},
    {"duration", 1, 0, O_DURATION}, {"vol-id", 1, 0, O_VOL}, {"writer-id", 1, 0, O_WRITER},
    {"gen", 1, 0, O_GEN}, {"max-blocks", 1, 0, O_MAXB}, {"range", 1, 0, O_RANGE},
    {"mix", 1, 0, O_MIX}, {"consistency", 1, 0, O_CONS}, {"init", 1, 0, O_INIT},
    {"loose-trim", 0, 0, O_LOOSE}, {"log", 1, 0, O_LOG}, {"log-sync", 1, 0, O_LOGSYNC},
    {"verify-log", 1, 0, O_VERIFY}, {"require", 1, 0, O_REQUIRE},
    {"from-log", 1, 0, O_FROMLOG}, {"poke", 1, 0, O_POKE}, {"poke-count", 1, 0, O_POKECOUNT},
    {"poke-seq", 1, 0, O_POKESEQ}, {"inspect", 1, 0, O_INSPECT},
    {"inspect-count", 1, 0, O_INSPECTCOUNT}, {"out-dir", 1, 0, O_OUT},
    {"history", 1, 0, O_HIST}, {"no-final-check", 0, 0, O_NOFINAL},
    {"final-flush", 0, 0, O_FINALFLUSH}, {"op-timeout", 1, 0, O_OPTIMEOUT},
    {"verbose", 0, 0, 'v'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0},
};

static int bad_arg(const char *opt, const char *val)
{
    msg("bad value for --%s: '%s'", opt, val ? val : "");
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    uint64_t v;
    int ch, idx = 0;
    bool vol_set = false, writer_set = false, gen_set = false;

    clock_gettime(CLOCK_MONOTONIC, &g.t0);
    while ((ch = getopt_long(argc, argv, "vh", long_opts, &idx)) != -1) {
        const char *name = idx >= 0 && idx < (int)(sizeof long_opts / sizeof long_opts[0])
                               ? long_opts[idx].name : "?";
        switch (ch) {
        case O_URI: g.uris[0] = optarg; break;
        case O_URI2: g.uris[1] = optarg; break;
        case O_URI3: g.uris[2] = optarg; break;
        case O_CONNS:
            if (!parse_u64(optarg, &v) || !v || v > MAX_CONNS) return bad_arg(name, optarg);
            g.n_conns = (unsigned)v;
            break;
        case O_SEED:
            if (!parse_u64(optarg, &g.seed)) return bad_arg(name, optarg);
            g.seed_set = true;
            break;
        case O_OPS: if (!parse_u64(optarg, &g.ops)) return bad_arg(name, optarg); break;
        case O_DURATION:
            if (!parse_u64(optarg, &g.duration_s) || !g.duration_s) return bad_arg(name, optarg);
            break;
        case O_VOL: if (!parse_u64(optarg, &g.me.vol)) return bad_arg(name, optarg); vol_set = true; break;
        case O_WRITER:
            if (!parse_u64(optarg, &v) || v > UINT32_MAX) return bad_arg(name, optarg);
            g.me.writer = (uint32_t)v;
            writer_set = true;
            break;
        case O_GEN: if (!parse_u64(optarg, &g.me.gen)) return bad_arg(name, optarg); gen_set = true; break;
        case O_MAXB:
            if (!parse_u64(optarg, &g.max_blocks) || !g.max_blocks || g.max_blocks > 8192)
                return bad_arg(name, optarg);
            break;
        case O_RANGE: {
            char *colon = strchr(optarg, ':');
            if (!colon) return bad_arg(name, optarg);
            *colon = '\0';
            if (!parse_u64(optarg, &g.range_first) || !parse_u64(colon + 1, &g.range_count) ||
                !g.range_count)
                return bad_arg(name, optarg);
            break;
        }
        case O_MIX: if (!parse_mix(optarg)) return bad_arg(name, optarg); break;
        case O_CONS:
            if (!strcmp(optarg, "flush")) g.lag = true;
            else if (strcmp(optarg, "linearizable")) return bad_arg(name, optarg);
            break;
        case O_INIT:
            if (!strcmp(optarg, "any")) g.init_any = true;
            else if (strcmp(optarg, "zero")) return bad_arg(name, optarg);
            break;
        case O_LOOSE: g.loose_trim = true; break;
        case O_LOG: g.log_path = optarg; break;
        case O_LOGSYNC:
            if (!parse_u64(optarg, &v) || !v || v > 1000000) return bad_arg(name, optarg);
            g.log_sync = (unsigned)v;
            break;
        case O_VERIFY: g.verify_path = optarg; break;
        case O_REQUIRE:
            if (!strcmp(optarg, "acked")) g.require = FSX_REQUIRE_ACKED;
            else if (strcmp(optarg, "flushed")) return bad_arg(name, optarg);
            break;
        case O_FROMLOG: g.from_log = optarg; break;
        case O_POKE:
            if (!parse_u64(optarg, &v) || v > INT64_MAX) return bad_arg(name, optarg);
            g.poke_block = (int64_t)v;
            break;
        case O_POKECOUNT:
            if (!parse_u64(optarg, &g.poke_count) || !g.poke_count) return bad_arg(name, optarg);
            break;
        case O_POKESEQ: if (!parse_u64(optarg, &g.poke_seq)) return bad_arg(name, optarg); break;
        case O_INSPECT:
            if (!parse_u64(optarg, &v) || v > INT64_MAX) return bad_arg(name, optarg);
            g.inspect_block = (int64_t)v;
            break;
        case O_INSPECTCOUNT:
            if (!parse_u64(optarg, &g.inspect_count) || !g.inspect_count) return bad_arg(name, optarg);
            break;
        case O_OUT: g.out_dir = optarg; break;
        case O_HIST:
            if (!parse_u64(optarg, &v) || !v || v > 10000000) return bad_arg(name, optarg);
            g.history = (unsigned)v;
            break;
        case O_NOFINAL: g.final_check = false; break;
        case O_FINALFLUSH: g.final_flush = true; break;
        case O_OPTIMEOUT:
            if (!parse_u64(optarg, &g.op_timeout_s) || g.op_timeout_s > 86400) return bad_arg(name, optarg);
            break;
        case 'v': g.verbose = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
        idx = -1;
    }
    if (optind < argc || !g.uris[0]) {
        usage(stderr);
        return EXIT_USAGE;
    }
    g.n_uris = 1 + (g.uris[1] != NULL) + (g.uris[2] != NULL);
    if (g.uris[2] && !g.uris[1]) return bad_arg("uri3", "without --uri2");
    if (g.n_uris > g.n_conns) g.n_conns = g.n_uris;

    if (g.from_log) {
        struct fsx_log_hdr h;
        struct fsx_model m;
        struct fsx_log_stats st;
        char err[512];
        if (fsx_log_replay(g.from_log, FSX_REQUIRE_FLUSHED, &h, &m, &st, err, sizeof err)) {
            msg("--from-log: %s", err);
            return EXIT_USAGE;
        }
        fsx_model_fini(&m);
        if (!g.seed_set) g.seed = h.me.seed, g.seed_set = true;
        if (!vol_set) g.me.vol = h.me.vol;
        if (!writer_set) g.me.writer = h.me.writer;
        if (!gen_set) g.me.gen = h.me.gen;
    }
    if (!g.seed_set) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        g.seed = ((uint64_t)t.tv_nsec * UINT64_C(0x9e3779b97f4a7c15)) ^ (uint64_t)t.tv_sec ^
                 ((uint64_t)getpid() << 32);
        g.seed &= UINT64_C(0xffffffffffff); /* short enough to type */
    }
    g.me.seed = g.seed;
    if (!g.ops && !g.duration_s) g.ops = 10000;
    rnd_seed(g.seed);

    g.buf = malloc(g.max_blocks * BS);
    g.rbuf = malloc((g.max_blocks < 256 ? 256 : g.max_blocks) * BS);
    g.hist = calloc(g.history, sizeof *g.hist);
    if (!g.buf || !g.rbuf || !g.hist) {
        msg("out of memory");
        return EXIT_USAGE;
    }
    int rc;
    if (g.verify_path)
        rc = fsx_verify_log();
    else if (g.poke_block >= 0)
        rc = fsx_poke();
    else if (g.inspect_block >= 0)
        rc = fsx_inspect();
    else
        rc = run();
    fsx_model_fini(&g.model);
    free(g.buf);
    free(g.rbuf);
    free(g.hist);
    return rc;
}
