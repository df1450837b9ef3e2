/* test_snapmem.c: file-backed snapshot buffers (src/store/raft/snapmem.c)
 * and the FSM's spooled snapshot dump over them (fsm_raft.c).
 *
 * Fixture: a temp directory; spool files go there (and must vanish at
 * once: they are unlinked on creation).  The checks that a mapping left
 * RSS read RssFile from /proc/self/status around a 32 MiB mapping.
 * Failure paths: ENOSPC through fileio_faulty, a range past a short
 * file, a missing spool directory for the FSM (its snapshot fails
 * cleanly, releases its read txn, and the next one works). */
#include "base/bd.h"
#include "idxtest.h"
#include "store/fileio.h"
#include "store/index/fsm.h"
#include "store/raft/snapmem.h"
#include "tap.h"
#include "testlib.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- Fixture -------------------------------------------------------------- */

static char dir[512];

static void fixture(void)
{
    if (dir[0]) return;
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/blockd-snapmem-XXXXXX", t ? t : "/tmp");
    if (!mkdtemp(dir)) abort();
}

/* ---- Helpers -------------------------------------------------------------- */

static unsigned dir_entries(const char *d)
{
    unsigned n = 0;
    DIR *D = opendir(d);
    if (!D) return 0;
    struct dirent *e;
    while ((e = readdir(D)))
        if (e->d_name[0] != '.') n++;
    closedir(D);
    return n;
}

/* RssFile of this process in KiB, -1 if unknown. */
static long rss_file_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "RssFile: %ld", &v) == 1) break;
    fclose(f);
    return v;
}

static uint64_t live_maps(void)
{
    uint64_t n, bytes;
    snapmem_counts(&n, &bytes);
    return n;
}

/* A spool holding LEN bytes of the pattern i*13. */
static int spool_pattern(struct snapmem_spool **sp, size_t len)
{
    int rc = snapmem_spool_open(NULL, dir, sp);
    if (rc) return rc;
    uint8_t buf[65536];
    for (size_t off = 0; off < len && rc == 0;) {
        size_t n = BD_MIN(sizeof(buf), len - off);
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)((off + i) * 13);
        rc = snapmem_spool_write(*sp, buf, n);
        off += n;
    }
    return rc;
}

/* ---- Mappings -------------------------------------------------------------- */

/* A spool is invisible in its directory; its mapping reads back what was
 * written, from any offset, and raft_free unmaps it. */
TEST(spool_map_read_free)
{
    fixture();
    struct snapmem_spool *sp;
    CHECK_EQ(spool_pattern(&sp, 100000), 0);
    CHECK_EQ(dir_entries(dir), 0);
    CHECK_EQ(snapmem_spool_len(sp), 100000);
    struct raft_buffer b;
    CHECK_EQ(snapmem_spool_map(sp, 4097, 50000, &b), 0);
    snapmem_spool_close(sp); /* the mapping outlives the file's fd */
    CHECK_EQ(b.len, 50000);
    const uint8_t *p = b.base;
    for (size_t i = 0; i < b.len; i++)
        if (p[i] != (uint8_t)((4097 + i) * 13)) CHECK(!"byte differs");
    CHECK(snapmem_is_mapped(b.base));
    CHECK_EQ(live_maps(), 1);
    raft_free(b.base);
    CHECK(!snapmem_is_mapped(b.base));
    CHECK_EQ(live_maps(), 0);
}

/* Ordinary raft heap memory still works beside mappings (malloc, realloc,
 * calloc, free through the installed heap). */
TEST(heap_passes_through)
{
    fixture();
    struct snapmem_spool *sp;
    CHECK_EQ(spool_pattern(&sp, 8192), 0);
    struct raft_buffer b;
    CHECK_EQ(snapmem_spool_map(sp, 0, 8192, &b), 0); /* installs the heap */
    snapmem_spool_close(sp);
    uint8_t *m = raft_malloc(100);
    CHECK(m != NULL);
    memset(m, 1, 100);
    m = raft_realloc(m, 1000);
    CHECK(m != NULL && m[99] == 1);
    raft_free(m);
    void *c = raft_calloc(10, 10);
    CHECK(c != NULL && ((uint8_t *)c)[50] == 0);
    raft_free(c);
    raft_free(b.base);
    CHECK_EQ(live_maps(), 0);
}

/* raft_realloc of a mapping (libraft never does it) copies to the heap
 * and unmaps. */
TEST(realloc_of_mapping_copies)
{
    fixture();
    struct snapmem_spool *sp;
    CHECK_EQ(spool_pattern(&sp, 5000), 0);
    struct raft_buffer b;
    CHECK_EQ(snapmem_spool_map(sp, 10, 100, &b), 0);
    snapmem_spool_close(sp);
    uint8_t *h = raft_realloc(b.base, 200);
    CHECK(h != NULL);
    CHECK_EQ(live_maps(), 0);
    CHECK_EQ(h[0], (uint8_t)(10 * 13));
    CHECK_EQ(h[99], (uint8_t)(109 * 13));
    raft_free(h);
}

/* Rebase hands the mapping to a pointer inside it (a decoder keeping the
 * data part of a message); a pointer outside is refused. */
TEST(rebase_moves_ownership)
{
    fixture();
    struct snapmem_spool *sp;
    CHECK_EQ(spool_pattern(&sp, 20000), 0);
    struct raft_buffer b;
    CHECK_EQ(snapmem_spool_map(sp, 0, 20000, &b), 0);
    snapmem_spool_close(sp);
    uint8_t *inner = (uint8_t *)b.base + 5000;
    uint8_t outside;
    CHECK_EQ(snapmem_rebase(b.base, &outside), -ENOENT);
    CHECK_EQ(snapmem_rebase(inner, b.base), -ENOENT); /* not registered under inner */
    CHECK_EQ(snapmem_rebase(b.base, inner), 0);
    CHECK(!snapmem_is_mapped(b.base));
    CHECK(snapmem_is_mapped(inner));
    CHECK_EQ(inner[0], (uint8_t)(5000 * 13));
    raft_free(inner);
    CHECK_EQ(live_maps(), 0);
}

/* Pages marked consumed leave RSS (they stay in the page cache). */
TEST(consumed_pages_leave_rss)
{
    fixture();
    size_t len = 32u << 20;
    struct snapmem_spool *sp;
    CHECK_EQ(spool_pattern(&sp, len), 0);
    struct raft_buffer b;
    CHECK_EQ(snapmem_spool_map(sp, 0, len, &b), 0);
    snapmem_spool_close(sp);
    long before = rss_file_kib();
    if (before < 0) {
        raft_free(b.base);
        printf("# no RssFile in /proc/self/status: skipped\n");
        return;
    }
    uint64_t sum = 0;
    for (size_t i = 0; i < len; i += 4096) sum += ((const uint8_t *)b.base)[i];
    long touched = rss_file_kib();
    snapmem_consumed(b.base, len);
    long after = rss_file_kib();
    printf("# RssFile %ld -> %ld -> %ld KiB (sum %llu)\n", before, touched, after,
           (unsigned long long)sum);
    CHECK(touched - before > 30000);
    CHECK(touched - after > 30000);
    /* Still readable: the pages refault from the page cache. */
    CHECK_EQ(((const uint8_t *)b.base)[len - 1], (uint8_t)((len - 1) * 13));
    snapmem_consumed(&sum, sizeof(sum)); /* not a mapping: nothing happens */
    raft_free(b.base);
}

/* ---- Failure paths ------------------------------------------------------------ */

/* ENOSPC fails the write, sticks, and the spool refuses to map. */
TEST(spool_enospc_sticks)
{
    fixture();
    struct fileio_faults faults = {0};
    struct fileio *fio = fileio_faulty_new(&fileio_posix, &faults);
    CHECK(fio != NULL);
    struct snapmem_spool *sp;
    CHECK_EQ(snapmem_spool_open(fio, dir, &sp), 0);
    uint8_t buf[4096] = {1};
    CHECK_EQ(snapmem_spool_write(sp, buf, sizeof(buf)), 0);
    faults.enospc = 1;
    CHECK_EQ(snapmem_spool_write(sp, buf, sizeof(buf)), -ENOSPC);
    faults.enospc = 0;
    CHECK_EQ(snapmem_spool_write(sp, buf, sizeof(buf)), -ENOSPC);
    struct raft_buffer b;
    CHECK_EQ(snapmem_spool_map(sp, 0, 4096, &b), -ENOSPC);
    snapmem_spool_close(sp);
    fileio_faulty_free(fio);
    CHECK_EQ(live_maps(), 0);
    CHECK_EQ(dir_entries(dir), 0);
}

/* A range past the file's end (a short file) is refused, never mapped
 * (a read there would be SIGBUS); a spool in a missing directory fails
 * to open. */
TEST(short_file_refused)
{
    fixture();
    char path[600];
    snprintf(path, sizeof(path), "%s/short", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, "abcdef", 6), 6);
    struct raft_buffer b;
    CHECK_EQ(snapmem_map(fd, 0, 7, &b), -EINVAL);
    CHECK_EQ(snapmem_map(fd, 7, 1, &b), -EINVAL);
    CHECK_EQ(snapmem_map(fd, 2, 4, &b), 0);
    CHECK_EQ(memcmp(b.base, "cdef", 4), 0);
    raft_free(b.base);
    CHECK_EQ(snapmem_map(fd, 6, 0, &b), 0); /* empty: a heap byte */
    CHECK(!snapmem_is_mapped(b.base));
    raft_free(b.base);
    close(fd);
    unlink(path);
    struct snapmem_spool *sp;
    snprintf(path, sizeof(path), "%s/missing", dir);
    CHECK_EQ(snapmem_spool_open(NULL, path, &sp), -ENOENT);
}

/* ---- The FSM's spooled dump ------------------------------------------------------ */

static struct itx t;
static struct fsm_raft fr;
static struct raft fake_raft;

static int snapshot_both(struct raft_buffer **bufs, unsigned *n)
{
    int rc = fr.fsm.snapshot(&fr.fsm, bufs, n);
    if (rc) return rc;
    return fr.fsm.snapshot_async(&fr.fsm, bufs, n);
}

/* With a spool directory the FSM's snapshot is one mapping holding the
 * same dump as the heap path; finalize unmaps it.  A spool directory that
 * is missing fails the snapshot with RAFT_IOERR and releases the pinned
 * read txn, so the next snapshot (directory back) works. */
TEST(fsm_snapshot_spooled)
{
    fixture();
    char idir[600];
    snprintf(idir, sizeof(idir), "%s/index", dir);
    CHECK_EQ(mkdir(idir, 0700), 0);
    CHECK_EQ(itx_open(&t, idir, "c1"), 0);
    CHECK_EQ(fsm_raft_init(&fr, t.ix), 0);
    fsm_raft_bind(&fr, &fake_raft);
    struct raft_buffer *bufs;
    unsigned n;
    /* The heap dump, for comparison. */
    CHECK_EQ(snapshot_both(&bufs, &n), 0);
    size_t heap_len = 0;
    for (unsigned i = 0; i < n; i++) heap_len += bufs[i].len;
    uint8_t *heap = malloc(heap_len);
    CHECK(heap != NULL);
    for (size_t i = 0, off = 0; i < n; off += bufs[i].len, i++)
        memcpy(heap + off, bufs[i].base, bufs[i].len);
    CHECK(!snapmem_is_mapped(bufs[0].base));
    fr.fsm.snapshot_finalize(&fr.fsm, &bufs, &n);

    char missing[600];
    snprintf(missing, sizeof(missing), "%s/gone", dir);
    CHECK_EQ(fsm_raft_set_spool(&fr, missing, NULL), 0);
    CHECK_EQ(snapshot_both(&bufs, &n), RAFT_IOERR);
    CHECK(!fr.snap_open);
    CHECK_EQ(live_maps(), 0);

    CHECK_EQ(fsm_raft_set_spool(&fr, dir, NULL), 0);
    CHECK_EQ(snapshot_both(&bufs, &n), 0);
    CHECK_EQ(n, 1);
    CHECK(snapmem_is_mapped(bufs[0].base));
    CHECK_EQ(bufs[0].len, heap_len);
    CHECK_EQ(memcmp(bufs[0].base, heap, heap_len), 0);
    uint64_t applied;
    CHECK_EQ(index_dump_applied(bufs[0].base, bufs[0].len, &applied), 0);
    fr.fsm.snapshot_finalize(&fr.fsm, &bufs, &n);
    CHECK_EQ(live_maps(), 0);
    CHECK_EQ(dir_entries(dir), 1); /* the index directory only */
    free(heap);
    fsm_raft_fini(&fr);
    itx_close(&t);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK_EQ(system(cmd), 0);
}
