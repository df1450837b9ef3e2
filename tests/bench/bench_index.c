/* bench_index.c: index figures for the report (not a test):
 *   1. bytes of index per extent: N random 4 KiB writes (each its own blob,
 *      the worst case: one extent record and one blob record per write) in
 *      WRITE_BATCHes of 1024, 8 entries per transaction (the writer
 *      thread's grouping; BENCH_INDEX_TXN=K for K), then LMDB pages in use
 *      x page size / extents;
 *   2. apply throughput with MDB_NOMETASYNC (one fsync per entry): entries/s
 *      and writes/s for batches of 1, 16 and 128 writes per entry;
 *   3. the Raft snapshot of it: the dump (as fsm_raft.c takes it, one read
 *      txn) written to a file, its size, and loading it into a fresh index
 *      (what a new proxy does when it installs the leader's snapshot);
 *   4. deleting the volume: its first (budgeted) entry and the REAP
 *      entries that free the rest.
 * Usage: bench_index [DIR [N_EXTENTS]]  (default $TMPDIR or /tmp, 1000000).
 *        bench_index --raft-seed INDEX_DIR RAFT_DIR ID ADDR CLUSTER_ID
 * The second form gives a kept index the raft directory a one-proxy group
 * (proxy ID at ADDR) would have after taking a snapshot of it: term 1 and
 * a snapshot at the index's applied entry holding its dump, so a proxy
 * started over the two leads from there (a proxy refuses an index that has
 * applied entries over an empty raft log: its log would restart at 1).
 * DIR must be on the disk you want to measure (not tmpfs).  With
 * BENCH_INDEX_KEEP=1 the index is left in DIR/bench-index-PID/ (for
 * scripts/bench-shape's proxy catch-up run) and step 4 is skipped. */
#include "idxtest.h"
#include "base/util.h"
#include "store/raft/raftlog.h"

#include <fcntl.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>

static uint64_t rng = 42;

#define CHECK_ST(x)                                                                        \
    do {                                                                                   \
        if ((x) != IDXCMD_ST_OK) {                                                         \
            fprintf(stderr, "bench_index: %s failed\n", #x);                               \
            return 1;                                                                      \
        }                                                                                  \
    } while (0)

static int dump_to_fd(void *arg, const void *buf, size_t len)
{
    int fd = *(int *)arg;
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Apply ENTRIES WRITE_BATCHes of B random 4 KiB DATA writes to VOL. */
static int random_writes(struct itx *t, uint64_t vol, uint64_t gen, uint64_t blocks,
                         uint32_t b, uint32_t entries, uint64_t *blob)
{
    static struct idxcmd_write w[IDXCMD_MAX_WRITES];
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
        if (itx_writes(t, w, m) != IDXCMD_ST_OK || t->res.st[0] != IDXCMD_ST_OK) return -1;
    }
    return 0;
}

/* Fill: ENTRIES WRITE_BATCHes of 1024 random 4 KiB writes, applied K per
 * transaction through fsm_apply_batch, as the proxy's index writer applies
 * everything queued in one transaction (fsm_raft.c): 8 is a busy proxy's
 * usual batch, more is a follower catching up on a backlog.  Returns
 * seconds, or -1. */
static double fill(struct itx *t, uint64_t vol, uint64_t gen, uint64_t blocks,
                   uint32_t entries, uint32_t K, uint64_t *blob)
{
    enum { B = IDXCMD_MAX_WRITES };
    static struct idxcmd_write w[B];
    uint8_t *bufs = malloc((size_t)K * IDXCMD_MAX_LEN);
    struct idxcmd_result *res = calloc(K, sizeof(*res));
    struct fsm_entry *ents = calloc(K, sizeof(*ents));
    double out = -1;
    if (!bufs || !res || !ents) goto done;
    uint64_t t0 = util_mono_ns();
    for (uint32_t e = 0; e < entries;) {
        uint32_t k = 0;
        for (; k < K && e < entries; k++, e++) {
            uint32_t n = 0;
            for (uint32_t i = 0; i < B; i++)
                w[n++] = itx_data(vol, gen, (util_rand64(&rng) % blocks) * BS, BS, (*blob)++, 0,
                                  BS);
            qsort(w, n, sizeof(*w), idxcmd_write_cmp);
            uint32_t m = 0;
            for (uint32_t i = 0; i < n; i++)
                if (!m || w[i].off != w[m - 1].off) w[m++] = w[i];
            struct idxcmd c = {.type = IDXCMD_WRITE_BATCH};
            c.u.write_batch.n = m;
            c.u.write_batch.in = w;
            uint8_t *b = bufs + (size_t)k * IDXCMD_MAX_LEN;
            int len = idxcmd_encode(b, IDXCMD_MAX_LEN, &c);
            if (len < 0) goto done;
            ents[k] = (struct fsm_entry){t->next++, b, (size_t)len, &res[k]};
        }
        if (fsm_apply_batch(t->ix, ents, k, NULL, NULL)) goto done;
        for (uint32_t q = 0; q < k; q++)
            if (res[q].status != IDXCMD_ST_OK || res[q].st[0] != IDXCMD_ST_OK) goto done;
    }
    out = (double)(util_mono_ns() - t0) / 1e9;
done:
    free(bufs);
    free(res);
    free(ents);
    return out;
}

struct grow {
    uint8_t *p;
    size_t len, cap;
};

static int dump_to_mem(void *arg, const void *buf, size_t len)
{
    struct grow *g = arg;
    if (g->len + len > g->cap) {
        size_t cap = g->cap ? g->cap : 1u << 20;
        while (cap < g->len + len) cap *= 2;
        uint8_t *q = raft_realloc(g->p, cap);
        if (!q) return -ENOMEM;
        g->p = q;
        g->cap = cap;
    }
    memcpy(g->p + g->len, buf, len);
    g->len += len;
    return 0;
}

struct seed_wait {
    struct reactor *rx;
    int status, done;
};

static void on_seeded(struct raftlog_req *req, int status)
{
    struct seed_wait *w = req->data;
    w->status = status;
    w->done = 1;
    reactor_break(w->rx);
}

static void on_log_closed(void *arg)
{
    struct seed_wait *w = arg;
    w->done = 1;
    reactor_break(w->rx);
}

/* --raft-seed: see the opening comment. */
static int raft_seed(const char *index_dir, const char *raft_dir, uint64_t id, const char *addr,
                     const char *cluster)
{
    struct index *ix;
    struct index_reader *rd;
    char err[512];
    struct index_opts o = {.dir = index_dir, .cluster_id = cluster, .allow_tmpfs = true,
                           .map_size = 1ull << 40};
    if (index_open(&o, &ix, err, sizeof(err)) || index_reader_new(ix, &rd)) {
        fprintf(stderr, "bench_index: index %s: %s\n", index_dir, err);
        return 1;
    }
    struct grow g = {0};
    uint64_t t0 = util_mono_ns();
    if (index_read_begin(rd)) return 1;
    uint64_t applied = index_applied(rd);
    int rc = index_dump(rd, dump_to_mem, &g);
    index_read_end(rd);
    index_reader_free(rd);
    index_close(ix);
    if (rc || !applied) {
        fprintf(stderr, "bench_index: dump of %s: %s (applied %llu)\n", index_dir, bd_strerror(rc),
                (unsigned long long)applied);
        return 1;
    }
    double dump_s = (double)(util_mono_ns() - t0) / 1e9;
    struct reactor *rx = reactor_new();
    struct raftlog *l;
    struct raftlog_opts lo = {.cluster_hash = util_xxh3(cluster, strlen(cluster)), .node_id = id,
                              .tag = "seed"};
    if (!rx || raftlog_open(rx, raft_dir, &lo, &l, err, sizeof(err))) {
        fprintf(stderr, "bench_index: raft log %s: %s\n", raft_dir, err);
        return 1;
    }
    if (!raftlog_pristine(l)) {
        fprintf(stderr, "bench_index: %s already holds a raft log\n", raft_dir);
        return 1;
    }
    struct raftlog_state st;
    if (raftlog_load(l, &st, err, sizeof(err))) {
        fprintf(stderr, "bench_index: raft log %s: %s\n", raft_dir, err);
        return 1;
    }
    raft_free(st.entries);
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    struct raft_buffer buf = {g.p, g.len};
    struct raft_snapshot snap = {.index = applied, .term = 1, .configuration_index = applied,
                                 .bufs = &buf, .n_bufs = 1};
    struct seed_wait w = {.rx = rx};
    struct raftlog_req req = {.data = &w};
    if (raft_configuration_add(&conf, id, addr, RAFT_VOTER) || raftlog_set_term(l, 1)) return 1;
    snap.configuration = conf;
    uint64_t t1 = util_mono_ns();
    if (raftlog_snapshot_put(l, &req, 0, &snap, on_seeded)) return 1;
    while (!w.done) reactor_run(rx);
    double put_s = (double)(util_mono_ns() - t1) / 1e9;
    raft_configuration_close(&conf);
    raft_free(g.p);
    rc = w.status;
    w.done = 0;
    raftlog_close(l, on_log_closed, &w);
    while (!w.done) reactor_run(rx);
    raftlog_free(l);
    reactor_free(rx);
    if (rc) {
        fprintf(stderr, "bench_index: storing the snapshot: %s\n", bd_strerror(rc));
        return 1;
    }
    printf("raft seed: snapshot at %llu, %.1f MiB, dumped in %.1f s, stored in %.1f s\n",
           (unsigned long long)applied, (double)buf.len / 1048576.0, dump_s, put_s);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--raft-seed")) {
        if (argc != 7) {
            fprintf(stderr, "usage: bench_index --raft-seed INDEX_DIR RAFT_DIR ID ADDR CLUSTER_ID\n");
            return 2;
        }
        return raft_seed(argv[2], argv[3], strtoull(argv[4], NULL, 0), argv[5], argv[6]);
    }
    const char *base = argc > 1 ? argv[1] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    uint64_t n_ext = argc > 2 ? strtoull(argv[2], NULL, 0) : 1000000;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/bench-index-%d", base, (int)getpid());
    /* About 110 bytes per extent in the tables: a map of 400 per extent
     * (at least 1 GiB) leaves the writes well below INDEX_LIMIT. */
    uint64_t map = n_ext * 400 > (1ull << 30) ? n_ext * 400 : 1ull << 30;
    struct itx t;
    if (itx_open_sized(&t, dir, "bench", map)) return 1;
    if (itx_cluster(&t) || itx_create(&t, "big", 64ull << 40) != IDXCMD_ST_OK) return 1;
    /* Blob ids for every write below (itx_cluster leased the first 2^20). */
    for (uint64_t have = IDXCMD_MAX_ALLOC; have < n_ext + 400000; have += IDXCMD_MAX_ALLOC) {
        struct idxcmd a = {.type = IDXCMD_ALLOC_BLOB_IDS};
        a.u.alloc_blob_ids.count = IDXCMD_MAX_ALLOC;
        if (itx_cmd(&t, &a) != IDXCMD_ST_OK) return 1;
    }
    uint64_t vol, gen, blob = 1;
    if (itx_attach(&t, "big", "bench", &vol, &gen) != IDXCMD_ST_OK) return 1;
    uint32_t per_txn = getenv("BENCH_INDEX_TXN") ? (uint32_t)atoi(getenv("BENCH_INDEX_TXN")) : 8;
    if (per_txn < 1 || per_txn > 1024) per_txn = 8;
    double secs = fill(&t, vol, gen, (64ull << 40) / BS, (uint32_t)(n_ext / IDXCMD_MAX_WRITES),
                       per_txn, &blob);
    if (secs < 0) return 1;
    struct index_stats st;
    index_read_begin(t.rd);
    index_stats(t.rd, &st);
    index_read_end(t.rd);
    printf("extents %llu, blobs %llu: %llu pages x %u = %.1f MiB in the tables (file %.1f MiB)\n",
           (unsigned long long)st.extents, (unsigned long long)st.blobs,
           (unsigned long long)st.pages, st.page_size,
           (double)st.pages * st.page_size / 1048576.0,
           (double)st.file_pages * st.page_size / 1048576.0);
    printf("index bytes per extent: %.1f (tables), %.1f (file); filled in %.1f s: %.0f "
           "extents/s applied (1024 writes per entry, %u entries per transaction, as the "
           "index writer groups them)\n",
           (double)st.pages * st.page_size / (double)st.extents,
           (double)st.file_pages * st.page_size / (double)st.extents, secs,
           (double)st.extents / secs, per_txn);
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

    /* 3. The snapshot: dump to a file, then load into a fresh index. */
    char path[600];
    snprintf(path, sizeof(path), "%s/dump", dir);
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (fd < 0) return 1;
    index_read_begin(t.rd);
    uint64_t s0 = util_mono_ns();
    if (index_dump(t.rd, dump_to_fd, &fd)) return 1;
    fsync(fd);
    double dump_s = (double)(util_mono_ns() - s0) / 1e9;
    index_read_end(t.rd);
    off_t dump_len = lseek(fd, 0, SEEK_END);
    close(fd);
    printf("snapshot (dump in one read txn, written and fsynced): %.1f s, %.1f MiB (%.1f bytes "
           "per extent)\n", dump_s, (double)dump_len / 1048576.0,
           (double)dump_len / (double)(st.extents ? st.extents : 1));
    char dir2[600];
    snprintf(dir2, sizeof(dir2), "%s/installed", dir);
    struct itx t2;
    if (itx_open_sized(&t2, dir2, "bench", map)) return 1;
    /* Mapped, as a proxy maps a snapshot (snapmem.h): one read() stops
     * at 2 GiB, and a 100 M-extent dump is 8 GiB. */
    fd = open(path, O_RDONLY);
    void *buf = fd < 0 ? MAP_FAILED : mmap(NULL, (size_t)dump_len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (buf == MAP_FAILED) {
        fprintf(stderr, "bench_index: cannot map %s: %s\n", path, strerror(errno));
        return 1;
    }
    close(fd);
    uint64_t l0 = util_mono_ns(), applied;
    if (index_load(t2.ix, buf, (size_t)dump_len, &applied)) return 1;
    printf("install (load the dump into a fresh index, one txn, checked against its digest): "
           "%.1f s\n", (double)(util_mono_ns() - l0) / 1e9);
    munmap(buf, (size_t)dump_len);
    itx_close(&t2);
    unlink(path);

    /* 4. Delete the volume: a budgeted first entry, then REAP entries. */
    if (!getenv("BENCH_INDEX_KEEP")) {
        CHECK_ST(itx_detach(&t, vol, gen, "bench"));
        CHECK_ST(itx_assign(&t, "big", "", "", 0)); /* unassigned: deletable */
        uint64_t x0 = util_mono_ns();
        CHECK_ST(itx_delete(&t, "big"));
        double first = (double)(util_mono_ns() - x0) / 1e9;
        unsigned reaps = 0;
        uint64_t r0 = util_mono_ns();
        for (;;) {
            struct idxcmd c = {.type = IDXCMD_REAP};
            c.u.reap.budget = IDXCMD_REAP_BUDGET;
            CHECK_ST(itx_cmd(&t, &c));
            reaps++;
            if (!t.res.id) break;
        }
        double rs = (double)(util_mono_ns() - r0) / 1e9;
        printf("delete of the volume: first entry %.1f ms, then %u REAP entries of %u extents, "
               "%.1f ms each (%.0f extents/s freed)\n", first * 1e3, reaps, IDXCMD_REAP_BUDGET,
               rs * 1e3 / reaps, (double)reaps * IDXCMD_REAP_BUDGET / rs);
    }
    itx_close(&t);
    if (getenv("BENCH_INDEX_KEEP")) {
        printf("index kept in %s\n", dir);
        return 0;
    }
    char cmd[1300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
