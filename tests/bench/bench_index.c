/* bench_index.c: index figures for the report (not a test):
 *   1. bytes of index per extent: N random 4 KiB writes (each its own blob,
 *      the worst case: one extent record and one blob record per write) in
 *      group-committed WRITE_BATCHes of 128, then LMDB pages in use x page
 *      size / extents;
 *   2. apply throughput with MDB_NOMETASYNC (one fsync per entry): entries/s
 *      and writes/s for batches of 1, 16 and 128 writes per entry.
 * Usage: bench_index [DIR [N_EXTENTS]]  (default $TMPDIR or /tmp, 1000000).
 * DIR must be on the disk you want to measure (not tmpfs). */
#include "idxtest.h"
#include "util.h"

#include <time.h>
#include <unistd.h>

static uint64_t rng = 42;

/* Apply ENTRIES WRITE_BATCHes of B random 4 KiB DATA writes to VOL. */
static int random_writes(struct itx *t, uint64_t vol, uint64_t gen, uint64_t blocks,
                         uint32_t b, uint32_t entries, uint64_t *blob)
{
    static struct idx_write w[IDXCMD_MAX_WRITES];
    for (uint32_t e = 0; e < entries; e++) {
        uint32_t n = 0;
        for (uint32_t i = 0; i < b; i++) {
            uint64_t blk = util_rand64(&rng) % blocks;
            w[n++] = itx_data(vol, gen, blk * BS, BS, (*blob)++, 0, BS);
        }
        qsort(w, n, sizeof(*w), idxcmd_write_cmp);
        uint32_t m = 0; /* drop same-block duplicates: a batch may not overlap */
        for (uint32_t i = 0; i < n; i++)
            if (!m || w[i].off != w[m - 1].off) w[m++] = w[i];
        if (itx_writes(t, w, m) != IDX_OK) return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    uint64_t n_ext = argc > 2 ? strtoull(argv[2], NULL, 0) : 1000000;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/bench-index-%d", base, (int)getpid());
    struct itx t;
    if (itx_open(&t, dir, "bench")) return 1;
    if (itx_cluster(&t) || itx_create(&t, "big", 64ull << 40) != IDX_OK) return 1;
    uint64_t vol, gen, blob = 1;
    if (itx_attach(&t, "big", "bench", &vol, &gen) != IDX_OK) return 1;
    uint64_t t0 = util_mono_ns();
    if (random_writes(&t, vol, gen, (64ull << 40) / BS, 128, (uint32_t)(n_ext / 128), &blob))
        return 1;
    double secs = (double)(util_mono_ns() - t0) / 1e9;
    struct index_stats st;
    index_read_begin(t.rd);
    index_stats(t.rd, &st);
    index_read_end(t.rd);
    printf("extents %llu, blobs %llu: %llu pages x %u = %.1f MiB in the tables (file %.1f MiB)\n",
           (unsigned long long)st.extents, (unsigned long long)st.blobs,
           (unsigned long long)st.pages, st.page_size,
           (double)st.pages * st.page_size / 1048576.0,
           (double)st.file_pages * st.page_size / 1048576.0);
    printf("index bytes per extent: %.1f (tables), %.1f (file); filled in %.1f s\n",
           (double)st.pages * st.page_size / (double)st.extents,
           (double)st.file_pages * st.page_size / (double)st.extents, secs);
    index_read_begin(t.rd);
    uint64_t d0 = util_mono_ns();
    uint64_t digest;
    index_digest(t.rd, &digest);
    double dsecs = (double)(util_mono_ns() - d0) / 1e9;
    index_read_end(t.rd);
    printf("digest of the whole index: %.2f s\n", dsecs);

    uint32_t sizes[3] = {1, 16, 128}, entries[3] = {2000, 1000, 300};
    for (int k = 0; k < 3; k++) {
        uint64_t s0 = util_mono_ns();
        if (random_writes(&t, vol, gen, (64ull << 40) / BS, sizes[k], entries[k], &blob)) return 1;
        double el = (double)(util_mono_ns() - s0) / 1e9;
        printf("apply, %3u writes/entry: %7.0f entries/s, %8.0f writes/s\n", sizes[k],
               entries[k] / el, entries[k] * sizes[k] / el);
    }
    itx_close(&t);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
