/* test_agent_mapc.c: the agent's leased map cache (src/roles/agent/agent_mapc.c)
 * on an injected clock.
 *
 * Insert and look up (pieces clipped to the asked range, blob offsets
 * moved with them, a read across two windows joined back into one piece);
 * a window covered in part misses beyond its end; invalidation drops the
 * windows a write overlaps and only those (the agent's own writes, C7/C9);
 * drop_vol forgets one volume only; expiry at exactly the lease end (the
 * clock is the caller's); the byte bound holds and evicts the least
 * recently used window; bad input (not tiling, unaligned) is refused. */
#include "roles/agent/agent_mapc.h"
#include "tap.h"

#include <errno.h>
#include <string.h>

#define W AGENT_MAPC_WINDOW

/* A map of [OFF, OFF + N * 64 KiB): piece i is blob 100 + i, nodes 1..3,
 * every third a zero piece. */
static uint32_t make_map(uint64_t off, uint32_t n, struct agent_mapc_piece *p)
{
    for (uint32_t i = 0; i < n; i++) {
        p[i] = (struct agent_mapc_piece){.off = off + (uint64_t)i * 65536, .len = 65536,
                                         .blob_id = i % 3 == 2 ? 0 : 100 + i,
                                         .blob_off = i % 3 == 2 ? 0 : 4096,
                                         .partition = 7, .nodes = {1, 2, 3}};
    }
    return n;
}

TEST(insert_lookup_clip)
{
    struct agent_mapc *mc = agent_mapc_new(1 << 20);
    CHECK(mc);
    struct agent_mapc_piece p[16], out[16];
    make_map(0, 16, p);
    CHECK_EQ(agent_mapc_put(mc, 5, 0, W, 1000, p, 16), 0);
    CHECK_EQ(agent_mapc_windows(mc), 1);
    uint32_t n = 0;
    /* 8 KiB inside piece 1, 4 KiB in. */
    CHECK_EQ(agent_mapc_get(mc, 5, 65536 + 4096, 8192, 10, out, 16, &n), 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(out[0].off, 65536 + 4096);
    CHECK_EQ(out[0].len, 8192);
    CHECK_EQ(out[0].blob_id, 101);
    CHECK_EQ(out[0].blob_off, 4096 + 4096);
    CHECK_EQ(out[0].nodes[2], 3);
    /* Across pieces 1..3: three pieces, the zero one included. */
    CHECK_EQ(agent_mapc_get(mc, 5, 65536 + 61440, 65536 + 8192, 10, out, 16, &n), 0);
    CHECK_EQ(n, 3);
    CHECK_EQ(out[0].len, 4096);
    CHECK_EQ(out[1].blob_id, 0);
    CHECK_EQ(out[1].len, 65536);
    CHECK_EQ(out[2].off, 3 * 65536);
    CHECK_EQ(out[2].len, 4096);
    /* Too many pieces for the room given. */
    CHECK_EQ(agent_mapc_get(mc, 5, 0, W, 10, out, 4, &n), -E2BIG);
    /* Another volume, another window: misses. */
    CHECK_EQ(agent_mapc_get(mc, 6, 0, 4096, 10, out, 16, &n), -ENOENT);
    CHECK_EQ(agent_mapc_get(mc, 5, W, 4096, 10, out, 16, &n), -ENOENT);
    agent_mapc_free(mc);
}

TEST(two_windows_join)
{
    struct agent_mapc *mc = agent_mapc_new(1 << 20);
    /* One blob spans the window border: [W - 64 KiB, W + 64 KiB). */
    struct agent_mapc_piece p[3] = {
        {.off = 0, .len = W - 65536, .blob_id = 0},
        {.off = W - 65536, .len = 131072, .blob_id = 9, .blob_off = 0, .partition = 1,
         .nodes = {4, 5, 6}},
        {.off = W + 65536, .len = W - 65536, .blob_id = 0}};
    CHECK_EQ(agent_mapc_put(mc, 1, 0, 2 * W, 1000, p, 3), 0);
    CHECK_EQ(agent_mapc_windows(mc), 2);
    struct agent_mapc_piece out[4];
    uint32_t n = 0;
    CHECK_EQ(agent_mapc_get(mc, 1, W - 8192, 16384, 0, out, 4, &n), 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(out[0].blob_off, 65536 - 8192);
    CHECK_EQ(out[0].len, 16384);
    /* Invalidate the second window only: the first still answers. */
    agent_mapc_invalidate(mc, 1, W + 4096, 4096);
    CHECK_EQ(agent_mapc_windows(mc), 1);
    CHECK_EQ(agent_mapc_get(mc, 1, W - 8192, 16384, 0, out, 4, &n), -ENOENT);
    CHECK_EQ(agent_mapc_get(mc, 1, W - 8192, 8192, 0, out, 4, &n), 0);
    agent_mapc_free(mc);
}

TEST(partial_window)
{
    struct agent_mapc *mc = agent_mapc_new(1 << 20);
    struct agent_mapc_piece p[4], out[4];
    make_map(2 * W, 4, p); /* covers [2W, 2W + 256 KiB) only */
    CHECK_EQ(agent_mapc_put(mc, 1, 2 * W, 2 * W + 4 * 65536, 1000, p, 4), 0);
    uint32_t n;
    CHECK_EQ(agent_mapc_get(mc, 1, 2 * W, 4 * 65536, 0, out, 4, &n), 0);
    CHECK_EQ(agent_mapc_get(mc, 1, 2 * W + 4 * 65536 - 4096, 8192, 0, out, 4, &n), -ENOENT);
    agent_mapc_free(mc);
}

TEST(overlap_invalidation)
{
    struct agent_mapc *mc = agent_mapc_new(1 << 20);
    struct agent_mapc_piece p[16], out[16];
    for (uint64_t w = 0; w < 4; w++) {
        make_map(w * W, 16, p);
        CHECK_EQ(agent_mapc_put(mc, 3, w * W, (w + 1) * W, 1000, p, 16), 0);
    }
    make_map(0, 16, p);
    CHECK_EQ(agent_mapc_put(mc, 4, 0, W, 1000, p, 16), 0);
    CHECK_EQ(agent_mapc_windows(mc), 5);
    uint32_t n;
    /* A write of the last block of window 1 and the first of window 2. */
    agent_mapc_invalidate(mc, 3, 2 * W - 4096, 8192);
    CHECK_EQ(agent_mapc_windows(mc), 3);
    CHECK_EQ(agent_mapc_get(mc, 3, W, 4096, 0, out, 16, &n), -ENOENT);
    CHECK_EQ(agent_mapc_get(mc, 3, 2 * W, 4096, 0, out, 16, &n), -ENOENT);
    CHECK_EQ(agent_mapc_get(mc, 3, 0, 4096, 0, out, 16, &n), 0);
    CHECK_EQ(agent_mapc_get(mc, 3, 3 * W, 4096, 0, out, 16, &n), 0);
    /* Another volume's same range is untouched. */
    CHECK_EQ(agent_mapc_get(mc, 4, 0, 4096, 0, out, 16, &n), 0);
    /* A huge trim (wider than the cache) walks the list. */
    agent_mapc_invalidate(mc, 3, 0, 1ull << 40);
    CHECK_EQ(agent_mapc_windows(mc), 1);
    agent_mapc_drop_vol(mc, 4);
    CHECK_EQ(agent_mapc_windows(mc), 0);
    CHECK_EQ(agent_mapc_bytes(mc), 0);
    agent_mapc_free(mc);
}

TEST(expiry_on_injected_clock)
{
    struct agent_mapc *mc = agent_mapc_new(1 << 20);
    struct agent_mapc_piece p[16], out[16];
    make_map(0, 16, p);
    /* Sent at t=100 with a 3 s lease: usable until t=3100, exclusive. */
    CHECK_EQ(agent_mapc_put(mc, 1, 0, W, 3100, p, 16), 0);
    uint32_t n;
    CHECK_EQ(agent_mapc_get(mc, 1, 0, 4096, 3099, out, 16, &n), 0);
    CHECK_EQ(agent_mapc_get(mc, 1, 0, 4096, 3100, out, 16, &n), -ETIME);
    CHECK_EQ(agent_mapc_windows(mc), 0); /* an ended lease is dropped */
    CHECK_EQ(agent_mapc_get(mc, 1, 0, 4096, 3100, out, 16, &n), -ENOENT);
    /* A fresh lease replaces an old one in place. */
    CHECK_EQ(agent_mapc_put(mc, 1, 0, W, 5000, p, 16), 0);
    CHECK_EQ(agent_mapc_put(mc, 1, 0, W, 9000, p, 16), 0);
    CHECK_EQ(agent_mapc_windows(mc), 1);
    CHECK_EQ(agent_mapc_get(mc, 1, 0, 4096, 8000, out, 16, &n), 0);
    agent_mapc_free(mc);
}

TEST(bound_evicts_lru)
{
    struct agent_mapc_piece p[16], out[16];
    make_map(0, 16, p);
    /* Learn one window's cost, then allow three. */
    struct agent_mapc *probe = agent_mapc_new(1 << 20);
    CHECK_EQ(agent_mapc_put(probe, 1, 0, W, 10, p, 16), 0);
    uint64_t one = agent_mapc_bytes(probe);
    agent_mapc_free(probe);
    CHECK(one > 16 * sizeof(struct agent_mapc_piece));
    struct agent_mapc *mc = agent_mapc_new(3 * one);
    for (uint64_t w = 0; w < 3; w++) {
        make_map(w * W, 16, p);
        CHECK_EQ(agent_mapc_put(mc, 1, w * W, (w + 1) * W, 1000, p, 16), 0);
    }
    uint32_t n;
    /* Touch window 0: window 1 is now the least recently used. */
    CHECK_EQ(agent_mapc_get(mc, 1, 0, 4096, 0, out, 16, &n), 0);
    make_map(3 * W, 16, p);
    CHECK_EQ(agent_mapc_put(mc, 1, 3 * W, 4 * W, 1000, p, 16), 0);
    CHECK_EQ(agent_mapc_windows(mc), 3);
    CHECK(agent_mapc_bytes(mc) <= 3 * one);
    CHECK_EQ(agent_mapc_get(mc, 1, W, 4096, 0, out, 16, &n), -ENOENT);
    CHECK_EQ(agent_mapc_get(mc, 1, 0, 4096, 0, out, 16, &n), 0);
    CHECK_EQ(agent_mapc_get(mc, 1, 2 * W, 4096, 0, out, 16, &n), 0);
    CHECK_EQ(agent_mapc_get(mc, 1, 3 * W, 4096, 0, out, 16, &n), 0);
    /* Many windows through a small cache: the bound always holds. */
    for (uint64_t w = 0; w < 1000; w++) {
        make_map(w * W, 16, p);
        CHECK_EQ(agent_mapc_put(mc, 2, w * W, (w + 1) * W, 1000, p, 16), 0);
        CHECK(agent_mapc_bytes(mc) <= 3 * one);
    }
    CHECK_EQ(agent_mapc_windows(mc), 3);
    /* A map bigger than the whole budget is not kept. */
    make_map(0, 16, p);
    struct agent_mapc *tiny = agent_mapc_new(100);
    CHECK_EQ(agent_mapc_put(tiny, 1, 0, W, 1000, p, 16), -ENOMEM);
    CHECK_EQ(agent_mapc_windows(tiny), 0);
    agent_mapc_free(tiny);
    agent_mapc_free(mc);
}

TEST(bad_input)
{
    struct agent_mapc *mc = agent_mapc_new(1 << 20);
    struct agent_mapc_piece p[4];
    make_map(0, 4, p);
    CHECK_EQ(agent_mapc_put(mc, 1, 4096, 4096 + 4 * 65536, 10, p, 4), -EINVAL); /* unaligned */
    CHECK_EQ(agent_mapc_put(mc, 1, 0, 5 * 65536, 10, p, 4), -EINVAL);  /* end beyond pieces */
    p[2].off += 4096;                                                   /* a gap */
    CHECK_EQ(agent_mapc_put(mc, 1, 0, 4 * 65536, 10, p, 4), -EINVAL);
    CHECK_EQ(agent_mapc_put(mc, 1, 0, 4 * 65536, 10, p, 0), -EINVAL);
    CHECK_EQ(agent_mapc_windows(mc), 0);
    struct agent_mapc_piece out[4];
    uint32_t n;
    CHECK_EQ(agent_mapc_get(mc, 1, 0, 0, 0, out, 4, &n), -ENOENT);
    /* clip over a caller's pieces: a gap is not covered. */
    CHECK_EQ(agent_mapc_clip(p, 4, 0, 4 * 65536, out, 4, &n), -ENOENT);
    CHECK_EQ(agent_mapc_clip(p, 4, 0, 2 * 65536, out, 4, &n), 0);
    CHECK_EQ(n, 2);
    agent_mapc_free(mc);
}
