/* fsx_check.c: the modes of blockd-fsx that look at a device after the
 * fact (see blockd-fsx.c for the tool as a whole).
 *
 *   --verify-log  replay a crash-window log (fsx_log.h) into windows and
 *                 read every block of the run's range once; print each
 *                 failing block with its diagnosis (the first 20, then a
 *                 count) and a summary that also says how many blocks hold
 *                 an older-but-allowed value (unflushed writes lost).
 *   --poke        write stamped blocks with chosen identity and seq, then
 *                 flush: the tests use it to plant stale, foreign or
 *                 misdirected data exactly where they want it.
 *   --inspect     print what the stamps of some blocks say. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "fsx_main.h"

/* --verify-log: one read of every block against the crash windows. */
int fsx_verify_log(void)
{
    struct fsx_log_hdr h;
    struct fsx_log_stats st;
    char err[512], why[600];
    int rc = fsx_log_replay(g.verify_path, g.require, &h, &g.model, &st, err, sizeof err);
    if (rc) {
        msg("verify-log: %s", err);
        return EXIT_USAGE;
    }
    g.me = h.me;
    g.seed = h.me.seed;
    g.n_conns = 1;
    if (open_all()) return EXIT_USAGE;
    if (g.size < h.size) {
        msg("verify-log: export is %" PRIu64 " bytes, the log's was %" PRIu64, g.size, h.size);
        return EXIT_USAGE;
    }
    uint64_t bad = 0, newest = 0, older = 0, zero = 0, written = 0;
    uint64_t chunk = g.server_max_blocks < 256 ? g.server_max_blocks : 256;
    uint64_t end = h.range_first + h.range_count;
    for (uint64_t b = h.range_first; b < end; b += chunk) {
        uint64_t n = end - b < chunk ? end - b : chunk;
        if (io_pread(g.c[0].h, g.rbuf, n * BS, b * BS) == -1) {
            msg("verify-log: pread at block %" PRIu64 ": %s", b,
                g.timed_out ? "timed out" : nbd_get_error());
            close_all();
            return EXIT_IO;
        }
        for (uint64_t i = 0; i < n; i++) {
            struct stamp_expect e;
            struct stamp got;
            fsx_model_expect(&g.model, b + i, &e);
            if (e.last_seq) written++;
            enum stamp_diag d = stamp_classify(g.rbuf + i * BS, b + i, &g.me, &e, why, sizeof why);
            if (d != STAMP_DIAG_OK) {
                if (bad++ < 20)
                    msg("verify-log: FAIL block=%" PRIu64 " offset=%" PRIu64 ": %s (%s): %s",
                        b + i, (b + i) * BS, stamp_diag_name(d), stamp_diag_why(d), why);
                continue;
            }
            enum stamp_parse_rc pr = stamp_parse(g.rbuf + i * BS, &got);
            if (!e.last_seq) continue;
            if (pr == STAMP_ZERO)
                zero++;
            if ((pr == STAMP_ZERO && e.last_is_zero) || (pr == STAMP_VALID && got.seq == e.last_seq))
                newest++;
            else
                older++;
        }
        g.bytes_verified += n * BS;
    }
    close_all();
    if (bad > 20) msg("verify-log: ... %" PRIu64 " more failing blocks", bad - 20);
    printf("blockd-fsx: verify-log %s seed=%" PRIu64 " require=%s log_ops=%" PRIu64
           " acked=%" PRIu64 " durable=%" PRIu64 " flushes=%" PRIu64 " blocks=%" PRIu64
           " written=%" PRIu64 " at_newest=%" PRIu64 " at_older_allowed=%" PRIu64
           " zero=%" PRIu64 " failed=%" PRIu64 " bytes_verified=%" PRIu64 "\n",
           bad ? "FAIL" : "PASS", h.me.seed,
           g.require == FSX_REQUIRE_ACKED ? "acked" : "flushed", st.ops, st.acked, st.durable,
           st.flushes, h.range_count, written, newest, older, zero, bad, g.bytes_verified);
    return bad ? EXIT_VERIFY : 0;
}

int fsx_poke(void)
{
    g.n_conns = 1;
    if (open_all()) return EXIT_USAGE;
    uint64_t b0 = (uint64_t)g.poke_block;
    if (b0 >= g.nblocks || g.poke_count > g.nblocks - b0) {
        msg("--poke %" PRIu64 "+%" PRIu64 " is outside the export", b0, g.poke_count);
        close_all();
        return EXIT_USAGE;
    }
    for (uint64_t b = b0; b < b0 + g.poke_count; b++) {
        struct stamp s = g.me;
        s.block = b;
        s.seq = g.poke_seq;
        stamp_fill(g.buf, &s);
        if (io_pwrite(g.c[0].h, g.buf, BS, b * BS, 0) == -1) fail_io(OP_WRITE, 0, "poke");
    }
    if (g.can_flush && io_flush(g.c[0].h) == -1) fail_io(OP_FLUSH, 0, "poke flush");
    printf("blockd-fsx: poked blocks %" PRIu64 "..%" PRIu64 " vol %" PRIu64 " seq %" PRIu64
           " writer %" PRIu32 " gen %" PRIu64 " seed %" PRIu64 "\n",
           b0, b0 + g.poke_count - 1, g.me.vol, g.poke_seq, g.me.writer, g.me.gen, g.me.seed);
    if (io_disconnect(g.c[0].h) == -1) fail_io(OP_FLUSH, 0, "disconnect");
    close_all();
    return 0;
}

int fsx_inspect(void)
{
    static const char *const names[] = {"stamp", "zero", "no-magic", "bad-checksum"};
    g.n_conns = 1;
    if (open_all()) return EXIT_USAGE;
    for (uint64_t b = (uint64_t)g.inspect_block;
         b < (uint64_t)g.inspect_block + g.inspect_count && b < g.nblocks; b++) {
        struct stamp s;
        if (io_pread(g.c[0].h, g.rbuf, BS, b * BS) == -1) fail_io(OP_READ, 0, "inspect");
        enum stamp_parse_rc rc = stamp_parse(g.rbuf, &s);
        printf("block %" PRIu64 ": %s", b, names[rc]);
        if (rc == STAMP_VALID || rc == STAMP_BAD_SUM)
            printf(" vol %" PRIu64 " block %" PRIu64 " seq %" PRIu64 " gen %" PRIu64
                   " writer %" PRIu32 " seed %" PRIu64,
                   s.vol, s.block, s.seq, s.gen, s.writer, s.seed);
        putchar('\n');
    }
    close_all();
    return 0;
}
