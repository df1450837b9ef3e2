/* test_blobstore.c: the blob store (src/store/blob/blobstore.c and friends):
 * put/get/range/delete/list/stat, immutability and idempotence, fencing,
 * compression, group commit, fsync EIO fail-stop and ENOSPC (C15),
 * compaction, the scrubber and read-path checksum errors (C14), and
 * recovery after restarts, torn tails and damaged headers (C3, C9), and
 * the direct-I/O writer (tail block rewrites, records spanning blocks, a
 * torn tail-block write, reads racing direct writes, the fallback when
 * O_DIRECT is refused).  BLOBSTORE_TEST_DIRECT=N (the meson test
 * blobstore-direct) runs every test with direct_min_bytes N.
 *
 * Fixture: one reactor; a store in a fresh temp dir over a counting fio
 * wrapped by the fault fio; *_sync helpers drive the reactor until a
 * callback ran, bounded by a deadline. */
#include "base/bd.h"
#include "runtime/reactor.h"
#include "store/blob/blobstore.h"
#include "store/fileio.h"
#include "store/blob/segment.h"
#include "tap.h"
#include "testlib.h"
#include "base/util.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- Fixture -------------------------------------------------------------- */

static struct reactor *rx;
static _Atomic uint64_t n_syncs;
static struct fileio_faults faults;
static struct fileio *faulty;
static char dir[512];

static int cnt_fdatasync(struct fileio *f, int fd)
{
    (void)f;
    n_syncs++;
    return fileio_posix.ops->fdatasync(&fileio_posix, fd);
}
/* Fault hooks for the direct-I/O tests: the next O_DIRECT write reaches
 * the file only for its first tear_sectors sectors and fails with EIO
 * (a torn write); O_DIRECT opens fail with EINVAL (tmpfs before 6.6). */
static int tear_sectors = -1;
static bool refuse_direct;
static _Atomic uint64_t n_direct_writes;

static bool is_direct(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & O_DIRECT);
}
static int cnt_open(struct fileio *f, const char *path, int flags, int mode)
{
    (void)f;
    if (refuse_direct && (flags & O_DIRECT)) return -EINVAL;
    return fileio_posix.ops->open(&fileio_posix, path, flags, mode);
}
static ssize_t cnt_pwritev(struct fileio *f, int fd, const struct iovec *iov, int n, uint64_t off)
{
    (void)f;
    if (is_direct(fd)) {
        n_direct_writes++;
        if (tear_sectors >= 0) {
            size_t keep = (size_t)tear_sectors * 512;
            tear_sectors = -1;
            if (keep && (n != 1 || iov[0].iov_len < keep)) return -EINVAL;
            if (keep && pwrite(fd, iov[0].iov_base, keep, (off_t)off) != (ssize_t)keep)
                return -errno;
            return -EIO;
        }
    }
    return fileio_posix.ops->pwritev(&fileio_posix, fd, iov, n, off);
}
static int cnt_fsync_dir(struct fileio *f, const char *d)
{
    (void)f;
    n_syncs++;
    return fileio_posix.ops->fsync_dir(&fileio_posix, d);
}
static struct fileio_ops cnt_ops;
static struct fileio counting = {.ops = &cnt_ops};

static void fixture(void)
{
    if (!rx) {
        rx = reactor_new();
        cnt_ops = *fileio_posix.ops;
        cnt_ops.fdatasync = cnt_fdatasync;
        cnt_ops.fsync_dir = cnt_fsync_dir;
        cnt_ops.open = cnt_open;
        cnt_ops.pwritev = cnt_pwritev;
        faulty = fileio_faulty_new(&counting, &faults);
    }
    memset(&faults, 0, sizeof(faults));
    tear_sectors = -1;
    refuse_direct = false;
    snprintf(dir, sizeof(dir), "%s/store", tap_tmpdir());
}

static struct blobstore_opts opts(void)
{
    return (struct blobstore_opts){
        .dir = dir, .fio = faulty, .rx = rx, .tag = "test", .metrics_labels = "",
        .ident = "cluster-t", .segment_bytes = 1u << 20, .max_blob_bytes = 256u << 10,
        .compress_min_saving_pct = 10,
        .direct_min_bytes = getenv("BLOBSTORE_TEST_DIRECT")
                                ? (uint32_t)strtoul(getenv("BLOBSTORE_TEST_DIRECT"), NULL, 10)
                                : 0,
    };
}

static struct blobstore_opts opts_direct(uint32_t min_bytes)
{
    struct blobstore_opts o = opts();
    o.direct_min_bytes = min_bytes;
    return o;
}

static struct blobstore *open_with(struct blobstore_opts o)
{
    struct blobstore *bs;
    char err[256];
    int rc = blobstore_open(&o, &bs, err, sizeof(err));
    if (rc < 0) {
        printf("# open: %s\n", err);
        return NULL;
    }
    return bs;
}

static void close_store(struct blobstore *bs)
{
    int done = 0;
    blobstore_close(bs, testlib_set_flag, &done);
    testlib_run_until_flag(rx, &done, 10000);
    blobstore_free(bs);
}

/* ---- Helpers ------------------------------------------------------------------ */

static uint8_t *blob_data(uint64_t id, uint32_t len)
{
    uint8_t *p = malloc(len + 1);
    uint64_t s = id * 7919;
    for (uint32_t i = 0; i < len; i++) p[i] = (uint8_t)util_rand64(&s);
    return p;
}

struct put_ctx {
    struct blobstore_put p;
    int done, err;
    uint8_t *data;
};

static void on_put(struct blobstore_put *p, int err)
{
    struct put_ctx *c = bd_container_of(p, struct put_ctx, p);
    c->done = 1;
    c->err = err;
}

/* A put of blob ID (content from blob_data), not yet submitted: the
 * writer thread reads the data as soon as it is, so tests that want other
 * bytes change them here first. */
static struct put_ctx *put_prepare(uint64_t id, uint32_t part, uint64_t epoch, uint32_t len,
                                   uint32_t flags)
{
    struct put_ctx *c = calloc(1, sizeof(*c));
    c->data = blob_data(id, len);
    c->p = (struct blobstore_put){.blob_id = id, .partition = part, .flags = flags,
                                  .epoch = epoch, .csum = util_xxh3(c->data, len),
                                  .data = c->data, .len = len, .cb = on_put};
    return c;
}

/* Submit C; returns C, or NULL (C freed) with *RC set if the store
 * answered at once. */
static struct put_ctx *put_submit(struct blobstore *bs, struct put_ctx *c, int *rc)
{
    *rc = blobstore_put(bs, &c->p);
    if (*rc != 0) {
        free(c->data);
        free(c);
        return NULL;
    }
    return c;
}

static struct put_ctx *put_start(struct blobstore *bs, uint64_t id, uint32_t part, uint64_t epoch,
                                 uint32_t len, uint32_t flags, int *rc)
{
    return put_submit(bs, put_prepare(id, part, epoch, len, flags), rc);
}

/* Put and wait: 0 (stored), 1 (already there), or the error. */
static int put_full(struct blobstore *bs, uint64_t id, uint32_t part, uint64_t epoch, uint32_t len,
                    uint32_t flags, uint32_t *stored)
{
    int rc;
    struct put_ctx *c = put_start(bs, id, part, epoch, len, flags, &rc);
    if (!c) return rc;
    if (!testlib_run_until_flag(rx, &c->done, 10000)) return -ETIMEDOUT;
    rc = c->err;
    if (stored) *stored = c->p.stored_len;
    free(c->data);
    free(c);
    return rc;
}

static int put_sync(struct blobstore *bs, uint64_t id, uint32_t len)
{
    return put_full(bs, id, 1, 1, len, 0, NULL);
}

struct get_ctx {
    struct blobstore_get g;
    int done, err;
};

static void on_get(struct blobstore_get *g, int err)
{
    struct get_ctx *c = bd_container_of(g, struct get_ctx, g);
    c->done = 1;
    c->err = err;
}

/* Read [OFF, OFF+LEN) of blob ID and compare with what was put (LEN of
 * the whole blob BLEN).  0, or the error, or -EILSEQ on wrong bytes. */
static int get_check(struct blobstore *bs, uint64_t id, uint32_t part, uint32_t off, uint32_t len,
                     uint32_t blen)
{
    struct get_ctx c = {.g = {.blob_id = id, .partition = part, .off = off, .len = len,
                              .cb = on_get}};
    int rc = blobstore_get(bs, &c.g);
    if (rc < 0) return rc;
    if (!testlib_run_until_flag(rx, &c.done, 10000)) return -ETIMEDOUT;
    if (c.err) return c.err;
    uint8_t *want = blob_data(id, blen);
    uint32_t n = len ? len : blen;
    rc = 0;
    if (c.g.data_len != n || c.g.blob_len != blen || memcmp(c.g.data, want + off, n) != 0 ||
        c.g.csum != util_xxh3(c.g.data, n))
        rc = -EILSEQ;
    free(want);
    free(c.g.buf);
    return rc;
}

static int get_sync(struct blobstore *bs, uint64_t id, uint32_t blen)
{
    return get_check(bs, id, 1, 0, 0, blen);
}

struct del_ctx {
    struct blobstore_delete d;
    int done, err;
};

static void on_del(struct blobstore_delete *d, int err)
{
    struct del_ctx *c = bd_container_of(d, struct del_ctx, d);
    c->done = 1;
    c->err = err;
}

static int del_sync(struct blobstore *bs, uint64_t id, uint32_t part)
{
    struct del_ctx c = {.d = {.blob_id = id, .partition = part, .cb = on_del}};
    int rc = blobstore_delete(bs, &c.d);
    if (rc != 0) return rc;
    if (!testlib_run_until_flag(rx, &c.done, 10000)) return -ETIMEDOUT;
    return c.err;
}

static struct blobstore_stats stats(struct blobstore *bs)
{
    struct blobstore_stats st;
    blobstore_get_stats(bs, &st);
    return st;
}

static uint64_t store_id_of(void)
{
    char path[600], buf[256] = "";
    snprintf(path, sizeof(path), "%s/store.meta", dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strstr(buf, "store_id ");
    return p ? strtoull(p + 9, NULL, 16) : 0;
}

/* Find blob ID's record in partition PART: segment file path and offset. */
static bool find_record(uint32_t part, uint64_t id, char *path, uint64_t *off)
{
    uint64_t store = store_id_of();
    for (uint64_t seq = 1; seq < 4096; seq++) {
        snprintf(path, 600, "%s/p%u/%016llx.seg", dir, part, (unsigned long long)seq);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        struct stat st;
        fstat(fd, &st);
        uint8_t *buf = malloc((size_t)st.st_size + 1);
        bool found = util_pread_full(fd, buf, (size_t)st.st_size, 0) == 0;
        close(fd);
        struct seg_mem m = {buf, (size_t)st.st_size};
        struct seg_src src = {.pread = seg_mem_pread, .arg = &m, .size = (uint64_t)st.st_size};
        struct seg_scan s = {.src = &src, .store_id = store, .partition = part,
                             .start = SEG_HDR_LEN};
        struct seg_scan_rec r;
        bool hit = false;
        if (found && seg_scan_init(&s) == 0) {
            while (!hit && seg_scan_next(&s, &r) == 1)
                if (r.h.blob_id == id && r.h.type == SEG_REC_PUT) {
                    *off = r.off;
                    hit = true;
                }
            seg_scan_fini(&s);
        }
        free(buf);
        if (hit) return true;
    }
    return false;
}

/* ---- Basic operations ------------------------------------------------------------ */

/* A blob reads back whole, with its checksum, and STAT describes it. */
TEST(put_get_stat)
{
    fixture();
    struct blobstore *bs = open_with(opts());
    CHECK(bs);
    CHECK_EQ(put_sync(bs, 1, 10000), 0);
    CHECK_EQ(get_sync(bs, 1, 10000), 0);
    struct blobstore_stat st;
    CHECK_EQ(blobstore_stat(bs, 1, &st), 0);
    CHECK_EQ(st.len, 10000);
    CHECK_EQ(st.stored_len, 10000);
    CHECK_EQ(st.partition, 1);
    uint8_t *d = blob_data(1, 10000);
    CHECK_EQ(st.csum, util_xxh3(d, 10000));
    free(d);
    CHECK_EQ(blobstore_stat(bs, 2, &st), -ENOENT);
    CHECK_EQ(get_check(bs, 1, 2, 0, 0, 10000), -ENOENT); /* other partition */
    CHECK_EQ(put_sync(bs, 2, 0), 0);                    /* an empty blob */
    CHECK_EQ(get_sync(bs, 2, 0), 0);
    CHECK_EQ(stats(bs).blobs, 2);
    close_store(bs);
}

/* Tenants' data is private to blockd's user: the store directory and every
 * partition directory are 0700, every file in them 0600, whatever the
 * umask; a store left 0755 by an older version is closed at open. */
static bool modes_private(const char *path, int depth)
{
    struct stat st;
    if (lstat(path, &st) < 0) return false;
    if (S_ISDIR(st.st_mode)) {
        if ((st.st_mode & 0777) != 0700) {
            printf("# %s: mode %03o\n", path, (unsigned)(st.st_mode & 0777));
            return false;
        }
        DIR *d = opendir(path);
        if (!d) return false;
        bool ok = true;
        for (struct dirent *e; ok && (e = readdir(d));) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char p[1024];
            snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
            ok = depth < 4 && modes_private(p, depth + 1);
        }
        closedir(d);
        return ok;
    }
    if ((st.st_mode & 0777) != 0600) {
        printf("# %s: mode %03o\n", path, (unsigned)(st.st_mode & 0777));
        return false;
    }
    return true;
}

TEST(files_private)
{
    fixture();
    mode_t old = umask(022);
    struct blobstore *bs = open_with(opts());
    CHECK(bs);
    CHECK_EQ(put_sync(bs, 1, 10000), 0);
    CHECK_EQ(put_sync(bs, 2, 5000), 0);
    close_store(bs);
    umask(old);
    CHECK(modes_private(dir, 0));
    CHECK(chmod(dir, 0755) == 0); /* as an older version left it */
    bs = open_with(opts());
    CHECK(bs);
    close_store(bs);
    struct stat st;
    CHECK(stat(dir, &st) == 0);
    CHECK_EQ(st.st_mode & 0777, 0700);
}

/* Ranged reads return exactly the bytes asked for; ranges outside the blob
 * are -ERANGE. */
TEST(range_get)
{
    fixture();
    struct blobstore *bs = open_with(opts());
    CHECK(bs);
    uint32_t len = 256u << 10;
    CHECK_EQ(put_sync(bs, 7, len), 0);
    CHECK_EQ(get_check(bs, 7, 1, 4096, 4096, len), 0);
    CHECK_EQ(get_check(bs, 7, 1, 1000, 9000, len), 0);
    CHECK_EQ(get_check(bs, 7, 1, len - 1, 1, len), 0);
    CHECK_EQ(get_check(bs, 7, 1, 0, len, len), 0);
    CHECK_EQ(get_check(bs, 7, 1, len - 10, 11, len), -ERANGE);
    CHECK_EQ(get_check(bs, 7, 1, 5, 0, len), -ERANGE);
    close_store(bs);
}

/* The same bytes again are an idempotent success, also while the first put
 * is in flight; other bytes, another partition or a bad checksum are not. */
TEST(idempotent_and_immutable)
{
    fixture();
    struct blobstore *bs = open_with(opts());
    CHECK(bs);
    int rc1, rc2;
    struct put_ctx *a = put_start(bs, 3, 1, 1, 5000, 0, &rc1);
    struct put_ctx *b = put_start(bs, 3, 1, 1, 5000, 0, &rc2); /* rides on a */
    CHECK(a && b);
    CHECK(testlib_run_until_flag(rx, &b->done, 10000) &&
          testlib_run_until_flag(rx, &a->done, 10000));
    CHECK_EQ(a->err, 0);
    CHECK_EQ(b->err, 0);
    CHECK_EQ(put_sync(bs, 3, 5000), 1);
    CHECK_EQ(put_sync(bs, 3, 5001), -BD_EIMMUTABLE);
    CHECK_EQ(put_full(bs, 3, 2, 1, 5000, 0, NULL), -BD_EIMMUTABLE);
    /* a payload that does not match its checksum is refused; nothing stored */
    struct put_ctx *c = put_prepare(4, 1, 1, 100, 0);
    c->data[10] ^= 1;
    CHECK(put_submit(bs, c, &rc1));
    CHECK(testlib_run_until_flag(rx, &c->done, 10000));
    CHECK_EQ(c->err, -BD_ECSUM);
    struct blobstore_stat st;
    CHECK_EQ(blobstore_stat(bs, 4, &st), -ENOENT);
    CHECK_EQ(put_sync(bs, 4, 100), 0);
    CHECK_EQ(put_full(bs, 5, 1, 1, 300u << 10, 0, NULL), -EINVAL); /* > max_blob_bytes */
    free(a->data);
    free(a);
    free(b->data);
    free(b);
    free(c->data);
    free(c);
    close_store(bs);
}

/* An identical put waiting on one whose payload was damaged in transit is
 * written itself. */
TEST(damaged_primary_promotes_waiter)
{
    fixture();
    struct blobstore *bs = open_with(opts());
    CHECK(bs);
    int rc;
    struct put_ctx *a = put_prepare(9, 1, 1, 8000, 0);
    a->data[0] ^= 1;
    CHECK(put_submit(bs, a, &rc));
    struct put_ctx *b = put_start(bs, 9, 1, 1, 8000, 0, &rc);
    CHECK(b);
    CHECK(testlib_run_until_flag(rx, &a->done, 10000) &&
          testlib_run_until_flag(rx, &b->done, 10000));
    CHECK_EQ(a->err, -BD_ECSUM);
    CHECK_EQ(b->err, 0);
    CHECK_EQ(get_sync(bs, 9, 8000), 0);
    free(a->data);
    free(a);
    free(b->data);
    free(b);
    close_store(bs);
}

/* A put with an epoch below the partition's highest is fenced, also after a
 * restart. */
TEST(stale_epoch_fenced)
{
    fixture();
    struct blobstore *bs = open_with(opts());
    CHECK(bs);
    CHECK_EQ(put_full(bs, 1, 5, 7, 100, 0, NULL), 0);
    CHECK_EQ(put_full(bs, 2, 5, 6, 100, 0, NULL), -BD_EFENCED);
    CHECK_EQ(put_full(bs, 2, 6, 1, 100, 0, NULL), 0); /* epochs are per partition */
    CHECK_EQ(put_full(bs, 3, 5, 8, 100, 0, NULL), 0);
    close_store(bs);
    bs = open_with(opts());
    CHECK(bs);
    CHECK_EQ(put_full(bs, 4, 5, 7, 100, 0, NULL), -BD_EFENCED);
    CHECK_EQ(put_full(bs, 4, 5, 8, 100, 0, NULL), 0);
    close_store(bs);
}

/* Deletes survive restarts and ids are never reused; a delete of an id
 * never seen still records it. */
TEST(delete_tombstones)
{
    fixture();
    struct blobstore *bs = open_with(opts());
    CHECK(bs);
    CHECK_EQ(put_sync(bs, 1, 1000), 0);
    CHECK_EQ(put_sync(bs, 2, 1000), 0);
    CHECK_EQ(del_sync(bs, 1, 1), 0);
    CHECK_EQ(get_sync(bs, 1, 1000), -ENOENT);
    CHECK_EQ(del_sync(bs, 1, 1), 1);
    CHECK_EQ(put_sync(bs, 1, 1000), -BD_EIMMUTABLE);
    CHECK_EQ(del_sync(bs, 2, 9), -ENOENT); /* wrong partition */
    CHECK_EQ(del_sync(bs, 50, 1), 0);       /* never seen */
    CHECK_EQ(put_sync(bs, 50, 10), -BD_EIMMUTABLE);
    CHECK_EQ(stats(bs).blobs, 1);
    close_store(bs);
    bs = open_with(opts());
    CHECK(bs);
    CHECK_EQ(get_sync(bs, 1, 1000), -ENOENT);
    CHECK_EQ(get_sync(bs, 2, 1000), 0);
    CHECK_EQ(put_sync(bs, 1, 1000), -BD_EIMMUTABLE);
    CHECK_EQ(put_sync(bs, 50, 10), -BD_EIMMUTABLE);
    CHECK_EQ(stats(bs).blobs, 1);
    close_store(bs);
}

/* LIST pages through a partition's live blobs in id order. */
TEST(list_pages)
{
    fixture();
    struct blobstore *bs = open_with(opts());
    CHECK(bs);
    static const uint64_t ids[] = {40, 10, 30, 20, 50, 60, 70};
    for (unsigned i = 0; i < BD_ARRAY_SIZE(ids); i++)
        CHECK_EQ(put_full(bs, ids[i], 3, 1, 64, 0, NULL), 0);
    CHECK_EQ(put_full(bs, 99, 4, 1, 64, 0, NULL), 0);
    CHECK_EQ(del_sync(bs, 30, 3), 0);
    struct blobstore_entry out[3];
    uint64_t next, cursor = 0, seen[10];
    unsigned n_seen = 0;
    do {
        uint32_t n = blobstore_list(bs, 3, cursor, 3, out, &next);
        for (uint32_t i = 0; i < n; i++) {
            seen[n_seen++] = out[i].blob_id;
            CHECK_EQ(out[i].len, 64);
        }
        cursor = next;
    } while (cursor && n_seen < 10);
    CHECK_EQ(n_seen, 6);
    static const uint64_t want[] = {10, 20, 40, 50, 60, 70};
    for (unsigned i = 0; i < 6; i++) CHECK_EQ(seen[i], want[i]);
    CHECK_EQ(blobstore_list(bs, 4, 0, 3, out, &next), 1);
    CHECK_EQ(blobstore_list(bs, 8, 0, 3, out, &next), 0);
    close_store(bs);
}

/* With compression on, a compressible blob is stored smaller and reads
 * back whole and in ranges; random data and blobs without the flag are
 * stored as they are. */
TEST(compression)
{
    fixture();
    struct blobstore_opts o = opts();
    o.compress = true;
    struct blobstore *bs = open_with(o);
    CHECK(bs);
    uint32_t len = 64u << 10, stored = 0;
    /* compressible: the data repeats with period 16 */
    struct put_ctx *c;
    int rc;
    c = put_prepare(11, 1, 1, len, BLOBSTORE_PUT_COMPRESSIBLE);
    for (uint32_t i = 16; i < len; i++) c->data[i] = c->data[i % 16];
    c->p.csum = util_xxh3(c->data, len);
    CHECK(put_submit(bs, c, &rc));
    CHECK(testlib_run_until_flag(rx, &c->done, 10000));
    CHECK_EQ(c->err, 0);
    CHECK(c->p.stored_len < len / 4);
    struct get_ctx g = {.g = {.blob_id = 11, .partition = 1, .off = 5000, .len = 7000,
                              .cb = on_get}};
    CHECK_EQ(blobstore_get(bs, &g.g), 0);
    CHECK(testlib_run_until_flag(rx, &g.done, 10000));
    CHECK_EQ(g.err, 0);
    CHECK(memcmp(g.g.data, c->data + 5000, 7000) == 0);
    CHECK_EQ(g.g.csum, util_xxh3(c->data + 5000, 7000));
    free(g.g.buf);
    struct blobstore_stat st;
    CHECK_EQ(blobstore_stat(bs, 11, &st), 0);
    CHECK(st.flags & BLOBSTORE_STAT_COMPRESSED);
    free(c->data);
    free(c);
    CHECK_EQ(put_full(bs, 12, 1, 1, len, BLOBSTORE_PUT_COMPRESSIBLE, &stored), 0);
    CHECK_EQ(stored, len); /* random bytes do not shrink */
    CHECK_EQ(get_sync(bs, 12, len), 0);
    close_store(bs);
    /* restart with compression off: compressed blobs still read back */
    bs = open_with(opts());
    CHECK(bs);
    g = (struct get_ctx){.g = {.blob_id = 11, .partition = 1, .cb = on_get}};
    CHECK_EQ(blobstore_get(bs, &g.g), 0);
    CHECK(testlib_run_until_flag(rx, &g.done, 10000));
    CHECK_EQ(g.err, 0);
    CHECK_EQ(g.g.data_len, len);
    free(g.g.buf);
    close_store(bs);
}

/* Many concurrent puts share fdatasyncs (group commit).  Buffered even in
 * blobstore-direct: a direct write waits for the disk, so a writer of 4 KiB
 * records streams slower than the flushes it feeds and batches stay small
 * (58 fsyncs for 64 puts here, against under 32): the reason small records
 * stay buffered by default. */
TEST(group_commit)
{
    fixture();
    struct blobstore *bs = open_with(opts_direct(0));
    CHECK(bs);
    CHECK_EQ(put_sync(bs, 1, 100), 0); /* creates the partition and segment */
    uint64_t before = n_syncs;
    enum { N = 64 };
    struct put_ctx *c[N];
    int rc;
    for (int i = 0; i < N; i++) {
        c[i] = put_start(bs, 100 + i, 1, 1, 4096, 0, &rc);
        CHECK(c[i]);
    }
    for (int i = 0; i < N; i++) {
        CHECK(testlib_run_until_flag(rx, &c[i]->done, 10000));
        CHECK_EQ(c[i]->err, 0);
        free(c[i]->data);
        free(c[i]);
    }
    uint64_t syncs = n_syncs - before;
    printf("# %d puts took %llu fsyncs; largest batch %llu\n", N, (unsigned long long)syncs,
           (unsigned long long)stats(bs).max_batch);
    CHECK(syncs < N / 2);
    CHECK(stats(bs).max_batch > 1);
    for (int i = 0; i < N; i++) CHECK_EQ(get_sync(bs, 100 + i, 4096), 0);
    close_store(bs);
}

/* Closing waits for queued puts, their fsync included. */
TEST(close_finishes_inflight)
{
    fixture();
    struct blobstore *bs = open_with(opts());
    CHECK(bs);
    enum { N = 16 };
    struct put_ctx *c[N];
    int rc;
    for (int i = 0; i < N; i++) CHECK((c[i] = put_start(bs, 1 + i, 1, 1, 20000, 0, &rc)));
    int done = 0;
    blobstore_close(bs, testlib_set_flag, &done);
    CHECK_EQ(put_sync(bs, 99, 10), -ESHUTDOWN);
    CHECK(testlib_run_until_flag(rx, &done, 10000));
    for (int i = 0; i < N; i++) {
        CHECK(c[i]->done);
        CHECK_EQ(c[i]->err, 0);
        free(c[i]->data);
        free(c[i]);
    }
    blobstore_free(bs);
    bs = open_with(opts());
    CHECK(bs);
    for (int i = 0; i < N; i++) CHECK_EQ(get_sync(bs, 1 + i, 20000), 0);
    close_store(bs);
}

/* ---- Storage errors (C15) --------------------------------------------------------- */

/* An fsync error fails the puts that depended on it and every later one;
 * reads of durable data go on; nothing is retried and acked. */
TEST(fsync_eio_fail_stop)
{
    fixture();
    struct blobstore *bs = open_with(opts());
    CHECK(bs);
    CHECK_EQ(put_sync(bs, 1, 5000), 0);
    faults.fsync_eio_after = 1; /* every fsync from now on */
    int rc = put_sync(bs, 2, 5000);
    CHECK_EQ(rc, -EIO);
    CHECK(stats(bs).failed);
    CHECK_EQ(put_sync(bs, 3, 5000), -BD_EFAILED);
    CHECK_EQ(del_sync(bs, 1, 1), -BD_EFAILED);
    CHECK_EQ(get_sync(bs, 1, 5000), 0);
    CHECK_EQ(get_sync(bs, 2, 5000), -ENOENT);
    faults.fsync_eio_after = 0;
    CHECK_EQ(put_sync(bs, 4, 5000), -BD_EFAILED); /* still failed: no retry */
    close_store(bs);
    bs = open_with(opts());
    CHECK(bs);
    CHECK_EQ(get_sync(bs, 1, 5000), 0);
    CHECK_EQ(put_sync(bs, 5, 5000), 0);
    close_store(bs);
}

/* ENOSPC fails the write that hit it, reads go on, and writes work again
 * once there is space. */
TEST(enospc_then_reads)
{
    fixture();
    struct blobstore *bs = open_with(opts());
    CHECK(bs);
    CHECK_EQ(put_sync(bs, 1, 5000), 0);
    faults.enospc = 1;
    CHECK_EQ(put_sync(bs, 2, 5000), -ENOSPC);
    CHECK(stats(bs).out_of_space);
    CHECK(!stats(bs).failed);
    CHECK_EQ(get_sync(bs, 1, 5000), 0);
    faults.enospc = 0;
    CHECK_EQ(put_sync(bs, 2, 5000), 0);
    CHECK_EQ(put_sync(bs, 3, 5000), 0);
    close_store(bs);
    bs = open_with(opts());
    CHECK(bs);
    for (uint64_t id = 1; id <= 3; id++) CHECK_EQ(get_sync(bs, id, 5000), 0);
    close_store(bs);
}

/* A configured capacity is enforced before anything is written. */
TEST(capacity_limit)
{
    fixture();
    struct blobstore_opts o = opts();
    o.capacity_bytes = 64u << 10;
    struct blobstore *bs = open_with(o);
    CHECK(bs);
    CHECK_EQ(put_sync(bs, 1, 30000), 0);
    CHECK_EQ(put_sync(bs, 2, 40000), -ENOSPC);
    CHECK_EQ(put_sync(bs, 3, 20000), 0);
    close_store(bs);
}

/* ---- Compaction ---------------------------------------------------------------------- */

/* Compaction rewrites mostly-dead segments, keeps every live blob and
 * deleted id, and gives the space back. */
TEST(compaction)
{
    fixture();
    struct blobstore_opts o = opts();
    o.segment_bytes = 64u << 10;
    o.max_blob_bytes = 16u << 10;
    o.compact_live_pct = 50;
    o.compact_check_ms = 60000; /* only when asked */
    struct blobstore *bs = open_with(o);
    CHECK(bs);
    enum { N = 60 };
    for (uint64_t id = 1; id <= N; id++) CHECK_EQ(put_sync(bs, id, 8000), 0);
    for (uint64_t id = 1; id <= N; id++)
        if (id % 3) CHECK_EQ(del_sync(bs, id, 1), 0);
    struct blobstore_stats before = stats(bs);
    int done = 0;
    blobstore_compact_now(bs, testlib_set_flag, &done);
    CHECK(testlib_run_until_flag(rx, &done, 20000));
    struct blobstore_stats after = stats(bs);
    printf("# segments %u -> %u, used %llu -> %llu, compacted %llu\n", before.segments,
           after.segments, (unsigned long long)before.used_bytes,
           (unsigned long long)after.used_bytes, (unsigned long long)after.compactions);
    CHECK(after.compactions >= 4);
    CHECK(after.used_bytes < before.used_bytes / 2);
    CHECK(after.dead_bytes < before.dead_bytes / 4);
    for (uint64_t id = 1; id <= N; id++) {
        if (id % 3) CHECK_EQ(get_sync(bs, id, 8000), -ENOENT);
        else CHECK_EQ(get_sync(bs, id, 8000), 0);
    }
    close_store(bs);
    bs = open_with(o);
    CHECK(bs);
    for (uint64_t id = 1; id <= N; id++) {
        if (id % 3) {
            CHECK_EQ(get_sync(bs, id, 8000), -ENOENT);
            CHECK_EQ(put_sync(bs, id, 8000), -BD_EIMMUTABLE); /* tombstones were kept */
        } else {
            CHECK_EQ(get_sync(bs, id, 8000), 0);
        }
    }
    CHECK_EQ(stats(bs).blobs, N / 3);
    close_store(bs);
}

/* ---- Integrity (C14) ------------------------------------------------------------------ */

/* A flipped byte in a blob's data is found by the scrubber: the blob is
 * reported bad, GET says -BD_ECSUM, and a put of the right bytes heals it. */
TEST(scrub_finds_flip_and_heal)
{
    fixture();
    struct blobstore *bs = open_with(opts());
    CHECK(bs);
    for (uint64_t id = 1; id <= 5; id++) CHECK_EQ(put_sync(bs, id, 6000), 0);
    close_store(bs);
    char path[600];
    uint64_t off;
    CHECK(find_record(1, 3, path, &off));
    CHECK_EQ(testlib_flip_byte(path, off + seg_rec_meta_len(6000) + 4500, 0x20), 0);
    bs = open_with(opts());
    CHECK(bs);
    int done = 0;
    blobstore_scrub_now(bs, testlib_set_flag, &done);
    CHECK(testlib_run_until_flag(rx, &done, 10000));
    struct blobstore_stats st = stats(bs);
    CHECK_EQ(st.bad_blobs, 1);
    CHECK(st.scrub_passes >= 1);
    CHECK(st.scrub_bytes > 5 * 6000);
    struct blobstore_bad bad[4];
    CHECK_EQ(blobstore_bad_list(bs, bad, 4), 1);
    CHECK_EQ(bad[0].blob_id, 3);
    CHECK_EQ(get_sync(bs, 3, 6000), -BD_ECSUM);
    CHECK_EQ(get_sync(bs, 2, 6000), 0);
    CHECK_EQ(put_sync(bs, 3, 6001), -BD_EIMMUTABLE); /* a heal must be the same bytes */
    CHECK_EQ(put_sync(bs, 3, 6000), 0);
    CHECK_EQ(get_sync(bs, 3, 6000), 0);
    CHECK_EQ(stats(bs).bad_blobs, 0);
    close_store(bs);
    bs = open_with(opts());
    CHECK(bs);
    CHECK_EQ(get_sync(bs, 3, 6000), 0);
    CHECK_EQ(stats(bs).bad_blobs, 0);
    close_store(bs);
}

/* A GET that finds a bad record returns -BD_ECSUM, never data, and the
 * record stays bad across a restart (the bad list is durable). */
TEST(get_finds_flip)
{
    fixture();
    struct blobstore *bs = open_with(opts());
    CHECK(bs);
    CHECK_EQ(put_sync(bs, 1, 100000), 0);
    CHECK_EQ(put_sync(bs, 2, 100000), 0);
    /* flip on disk while open: the page cache sees it */
    char path[600];
    uint64_t off;
    CHECK(find_record(1, 1, path, &off));
    CHECK_EQ(testlib_flip_byte(path, off + seg_rec_meta_len(100000) + 50000, 0x20), 0);
    CHECK_EQ(get_check(bs, 1, 1, 0, 4096, 100000), 0); /* another chunk is fine */
    CHECK_EQ(get_check(bs, 1, 1, 49152, 4096, 100000), -BD_ECSUM);
    CHECK_EQ(get_sync(bs, 1, 100000), -BD_ECSUM);
    struct blobstore_stat st;
    CHECK_EQ(blobstore_stat(bs, 1, &st), -BD_ECSUM);
    CHECK_EQ(stats(bs).csum_errors, 1);
    close_store(bs);
    bs = open_with(opts());
    CHECK(bs);
    CHECK_EQ(get_sync(bs, 1, 100000), -BD_ECSUM);
    CHECK_EQ(stats(bs).bad_blobs, 1);
    CHECK_EQ(get_sync(bs, 2, 100000), 0);
    close_store(bs);
}

/* ---- Recovery --------------------------------------------------------------------------- */

/* Restarts rebuild the index from segments and their index files; a
 * damaged index file falls back to a scan. */
TEST(restart_rebuilds)
{
    fixture();
    struct blobstore_opts o = opts();
    o.segment_bytes = 64u << 10;
    o.max_blob_bytes = 16u << 10;
    struct blobstore *bs = open_with(o);
    CHECK(bs);
    enum { N = 200 };
    for (uint64_t id = 1; id <= N; id++)
        CHECK_EQ(put_full(bs, id, 1 + id % 3, 1, 2000, 0, NULL), 0);
    uint32_t segs = stats(bs).segments;
    close_store(bs);
    bs = open_with(o);
    CHECK(bs);
    CHECK_EQ(stats(bs).blobs, N);
    CHECK_EQ(stats(bs).recovered_records, N);
    CHECK_EQ(stats(bs).segments, segs);
    for (uint64_t id = 1; id <= N; id++) CHECK_EQ(get_check(bs, id, 1 + id % 3, 0, 0, 2000), 0);
    close_store(bs);
    char path[600];
    snprintf(path, sizeof(path), "%s/p1/%016llx.idx", dir, 1ull);
    CHECK_EQ(testlib_flip_byte(path, 100, 0x20), 0);
    bs = open_with(o);
    CHECK(bs);
    CHECK_EQ(stats(bs).blobs, N);
    for (uint64_t id = 1; id <= N; id++) CHECK_EQ(get_check(bs, id, 1 + id % 3, 0, 0, 2000), 0);
    close_store(bs);
}

/* A torn last record is cut at restart; everything before it is kept. */
TEST(torn_tail_cut)
{
    fixture();
    struct blobstore *bs = open_with(opts());
    CHECK(bs);
    for (uint64_t id = 1; id <= 3; id++) CHECK_EQ(put_sync(bs, id, 9000), 0);
    close_store(bs);
    char path[600];
    uint64_t off;
    CHECK(find_record(1, 3, path, &off));
    CHECK(truncate(path, (off_t)(off + 5000)) == 0);
    bs = open_with(opts());
    CHECK(bs);
    CHECK_EQ(get_sync(bs, 1, 9000), 0);
    CHECK_EQ(get_sync(bs, 2, 9000), 0);
    CHECK_EQ(get_sync(bs, 3, 9000), -ENOENT);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECK_EQ((uint64_t)st.st_size, off);
    CHECK_EQ(put_sync(bs, 3, 9000), 0); /* never acked, so it may come again */
    CHECK_EQ(put_sync(bs, 4, 9000), 0);
    close_store(bs);
    bs = open_with(opts());
    CHECK(bs);
    for (uint64_t id = 1; id <= 4; id++) CHECK_EQ(get_sync(bs, id, 9000), 0);
    close_store(bs);
}

/* A damaged header in the middle hides one record; the ones after it are
 * still found; a record with a good header and damaged data before the
 * end is reported bad, not served. */
TEST(damage_mid_segment)
{
    fixture();
    struct blobstore *bs = open_with(opts());
    CHECK(bs);
    for (uint64_t id = 1; id <= 5; id++) CHECK_EQ(put_sync(bs, id, 3000), 0);
    close_store(bs);
    char path[600];
    uint64_t off2, off4;
    CHECK(find_record(1, 2, path, &off2));
    CHECK(find_record(1, 4, path, &off4));
    /* The header of blob 2, the data of blob 4. */
    CHECK_EQ(testlib_flip_byte(path, off2 + 20, 0x20), 0);
    CHECK_EQ(testlib_flip_byte(path, off4 + seg_rec_meta_len(3000) + 100, 0x20), 0);
    bs = open_with(opts());
    CHECK(bs);
    CHECK_EQ(get_sync(bs, 1, 3000), 0);
    CHECK_EQ(get_sync(bs, 2, 3000), -ENOENT);
    CHECK_EQ(get_sync(bs, 3, 3000), 0);
    CHECK_EQ(get_sync(bs, 4, 3000), -BD_ECSUM);
    CHECK_EQ(get_sync(bs, 5, 3000), 0);
    CHECK_EQ(stats(bs).bad_blobs, 1);
    CHECK_EQ(stats(bs).recovered_damaged, 1);
    close_store(bs);
}

/* A data directory of another cluster, or with partitions but no identity
 * file, is refused. */
TEST(identity_checked)
{
    fixture();
    struct blobstore *bs = open_with(opts());
    CHECK(bs);
    CHECK_EQ(put_sync(bs, 1, 10), 0);
    close_store(bs);
    struct blobstore_opts o = opts();
    o.ident = "other-cluster";
    CHECK(open_with(o) == NULL);
    char path[600];
    snprintf(path, sizeof(path), "%s/store.meta", dir);
    CHECK(unlink(path) == 0);
    CHECK(open_with(opts()) == NULL);
}

/* ---- Direct I/O ------------------------------------------------------------------ */

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
}

/* Records of many sizes, back to back: each direct write rewrites the
 * partial last block and leaves the file padded to a whole block; every
 * record, whole and in ranges across block boundaries, reads back before
 * and after restarts (which cut the padding, and load the tail block from
 * disk for the next direct write). */
TEST(direct_tail_rewrite)
{
    fixture();
    static const uint32_t sizes[] = {1, 100, 4000, 5000, 9000, 20000, 3, 65536, 777, 4096, 12345};
    enum { N = sizeof(sizes) / sizeof(sizes[0]) };
    struct blobstore *bs = open_with(opts_direct(1));
    CHECK(bs);
    char path[600];
    uint64_t off, before = n_direct_writes;
    for (unsigned i = 0; i < N; i++) {
        CHECK_EQ(put_full(bs, i + 1, 1, 1, sizes[i], 0, NULL), 0);
        CHECK(find_record(1, i + 1, path, &off));
        CHECK_EQ(file_size(path) % SEG_DIO_ALIGN, 0); /* written whole blocks */
        CHECK(file_size(path) >= off + seg_rec_total_len(sizes[i]));
        for (unsigned j = 0; j <= i; j++) {
            CHECK_EQ(get_sync(bs, j + 1, sizes[j]), 0);
            if (sizes[j] > 4100) CHECK_EQ(get_check(bs, j + 1, 1, 4000, 200, sizes[j]), 0);
        }
    }
    CHECK_EQ(n_direct_writes - before, N);
    uint64_t end = off + seg_rec_total_len(sizes[N - 1]);
    close_store(bs);
    bs = open_with(opts_direct(1));
    CHECK(bs);
    CHECK_EQ(file_size(path), end); /* the padding is not part of the segment */
    CHECK_EQ(stats(bs).recovered_damaged, 0);
    for (unsigned i = 0; i < N; i++) CHECK_EQ(get_sync(bs, i + 1, sizes[i]), 0);
    for (unsigned i = 0; i < N; i++) CHECK_EQ(put_full(bs, 100 + i, 1, 1, sizes[i], 0, NULL), 0);
    close_store(bs);
    bs = open_with(opts_direct(1));
    CHECK(bs);
    for (unsigned i = 0; i < N; i++) {
        CHECK_EQ(get_sync(bs, i + 1, sizes[i]), 0);
        CHECK_EQ(get_sync(bs, 100 + i, sizes[i]), 0);
    }
    CHECK_EQ(stats(bs).bad_blobs, 0);
    close_store(bs);
}

/* Below the threshold records go through the page cache, above it direct,
 * interleaved in one segment: a buffered record lands on the zeros a
 * direct write left, and the next direct write reloads the tail block. */
TEST(direct_mixed_threshold)
{
    fixture();
    struct blobstore *bs = open_with(opts_direct(8192));
    CHECK(bs);
    uint64_t before = n_direct_writes;
    for (uint64_t id = 1; id <= 20; id++)
        CHECK_EQ(put_full(bs, id, 1, 1, id % 2 ? 100 + (uint32_t)id : 10000, 0, NULL), 0);
    CHECK_EQ(n_direct_writes - before, 10);
    for (uint64_t id = 1; id <= 20; id++)
        CHECK_EQ(get_sync(bs, id, id % 2 ? 100 + (uint32_t)id : 10000), 0);
    close_store(bs);
    bs = open_with(opts_direct(8192));
    CHECK(bs);
    for (uint64_t id = 1; id <= 20; id++)
        CHECK_EQ(get_sync(bs, id, id % 2 ? 100 + (uint32_t)id : 10000), 0);
    CHECK_EQ(stats(bs).recovered_damaged, 0);
    close_store(bs);
}

/* A direct write that tears inside the rewritten tail block (only its
 * first sectors reach the file, then EIO) fails that put alone; the
 * records before it are intact, the next put rewrites the block, and a
 * restart after another torn write finds exactly the acknowledged ones. */
TEST(direct_torn_tail_write)
{
    fixture();
    struct blobstore *bs = open_with(opts_direct(1));
    CHECK(bs);
    CHECK_EQ(put_sync(bs, 1, 3000), 0);
    CHECK_EQ(put_sync(bs, 2, 3000), 0); /* ends inside the second block */
    char path[600];
    uint64_t off2;
    CHECK(find_record(1, 2, path, &off2));
    uint64_t end2 = off2 + seg_rec_total_len(3000);
    CHECK(end2 % SEG_DIO_ALIGN != 0);
    /* Sectors up to past record 3's header and table, not its data. */
    tear_sectors = (int)((end2 % SEG_DIO_ALIGN + SEG_REC_HDR_LEN + 16 + 511) / 512);
    CHECK_EQ(put_sync(bs, 3, 6000), -EIO);
    CHECK_EQ(get_sync(bs, 1, 3000), 0);
    CHECK_EQ(get_sync(bs, 2, 3000), 0);
    CHECK_EQ(get_sync(bs, 3, 6000), -ENOENT);
    CHECK_EQ(put_sync(bs, 4, 6000), 0); /* at record 3's place */
    uint64_t off4;
    CHECK(find_record(1, 4, path, &off4));
    CHECK_EQ(off4, end2);
    tear_sectors = 3;
    CHECK_EQ(put_sync(bs, 5, 6000), -EIO); /* torn, then the "power cut" */
    close_store(bs);
    bs = open_with(opts_direct(1));
    CHECK(bs);
    CHECK_EQ(get_sync(bs, 1, 3000), 0);
    CHECK_EQ(get_sync(bs, 2, 3000), 0);
    CHECK_EQ(get_sync(bs, 3, 6000), -ENOENT);
    CHECK_EQ(get_sync(bs, 4, 6000), 0);
    CHECK_EQ(get_sync(bs, 5, 6000), -ENOENT);
    CHECK_EQ(stats(bs).bad_blobs, 0);
    CHECK_EQ(file_size(path), off4 + seg_rec_total_len(6000));
    CHECK_EQ(put_sync(bs, 5, 6000), 0);
    CHECK_EQ(get_sync(bs, 5, 6000), 0);
    close_store(bs);
}

struct race_get {
    struct blobstore_get g;
    int done, err;
    uint64_t id;
    uint32_t blen;
};

static void on_race_get(struct blobstore_get *g, int err)
{
    struct race_get *c = bd_container_of(g, struct race_get, g);
    c->done = 1;
    c->err = err;
}

/* Buffered reads of records ending in the tail block run while direct
 * writes rewrite that block: never a wrong byte, never a checksum error
 * (a stale cached block would show as one). */
TEST(direct_reads_race_writes)
{
    fixture();
    struct blobstore_opts o = opts_direct(1);
    o.read_threads = 4;
    struct blobstore *bs = open_with(o);
    CHECK(bs);
    enum { N = 300, R = 6 };
    static uint32_t len[N + 1];
    uint64_t rng = 42;
    int rc;
    for (uint64_t id = 1; id <= N; id++) {
        len[id] = 1 + (uint32_t)(util_rand64(&rng) % 12000);
        struct put_ctx *p = put_start(bs, id, 1, 1, len[id], 0, &rc);
        CHECK(p);
        struct race_get gets[R];
        int n = 0;
        for (uint64_t back = 1; back <= 3 && back < id; back++) {
            uint64_t gid = id - back;
            /* whole, and the last byte (in the block being rewritten) */
            for (int k = 0; k < 2; k++) {
                struct race_get *c = &gets[n++];
                *c = (struct race_get){.id = gid, .blen = len[gid]};
                c->g = (struct blobstore_get){.blob_id = gid, .partition = 1, .cb = on_race_get};
                if (k) {
                    c->g.off = len[gid] - 1;
                    c->g.len = 1;
                }
                CHECK_EQ(blobstore_get(bs, &c->g), 0);
            }
        }
        CHECK(testlib_run_until_flag(rx, &p->done, 10000));
        CHECK_EQ(p->err, 0);
        free(p->data);
        free(p);
        for (int i = 0; i < n; i++) {
            struct race_get *c = &gets[i];
            CHECK(testlib_run_until_flag(rx, &c->done, 10000));
            CHECK_EQ(c->err, 0);
            if (c->err) continue;
            uint8_t *want = blob_data(c->id, c->blen);
            uint32_t at = c->g.off, cnt = c->g.len ? c->g.len : c->blen;
            CHECK(c->g.data_len == cnt && memcmp(c->g.data, want + at, cnt) == 0);
            free(want);
            free(c->g.buf);
        }
    }
    CHECK_EQ(stats(bs).csum_errors, 0);
    CHECK_EQ(stats(bs).bad_blobs, 0);
    close_store(bs);
}

/* A filesystem that refuses O_DIRECT: one log line, then every record
 * goes through the page cache and the file is never padded. */
TEST(direct_refused_falls_back)
{
    fixture();
    refuse_direct = true;
    struct blobstore *bs = open_with(opts_direct(1));
    CHECK(bs);
    uint64_t before = n_direct_writes;
    for (uint64_t id = 1; id <= 5; id++) CHECK_EQ(put_sync(bs, id, 5000), 0);
    CHECK_EQ(n_direct_writes - before, 0);
    char path[600];
    uint64_t off;
    CHECK(find_record(1, 5, path, &off));
    CHECK_EQ(file_size(path), off + seg_rec_total_len(5000));
    for (uint64_t id = 1; id <= 5; id++) CHECK_EQ(get_sync(bs, id, 5000), 0);
    close_store(bs);
}

/* Sealing cuts the padding before the index file records the segment's
 * exact length, so a restart uses the index files. */
TEST(direct_seal_cuts_padding)
{
    fixture();
    struct blobstore_opts o = opts_direct(1);
    o.segment_bytes = 64u << 10;
    o.max_blob_bytes = 16u << 10;
    struct blobstore *bs = open_with(o);
    CHECK(bs);
    for (uint64_t id = 1; id <= 40; id++) CHECK_EQ(put_sync(bs, id, 5000), 0);
    close_store(bs);
    unsigned with_idx = 0;
    for (uint64_t seq = 1; seq < 64; seq++) {
        char seg[600], idx[600];
        snprintf(seg, sizeof(seg), "%s/p1/%016llx.seg", dir, (unsigned long long)seq);
        snprintf(idx, sizeof(idx), "%s/p1/%016llx.idx", dir, (unsigned long long)seq);
        int fd = open(idx, O_RDONLY);
        if (fd < 0) continue;
        uint8_t h[SEG_IDX_HDR_LEN];
        struct seg_idx_hdr ih;
        CHECK_EQ(util_pread_full(fd, h, sizeof(h), 0), 0);
        close(fd);
        uint64_t ilen = file_size(idx);
        CHECK_EQ(seg_idx_decode_hdr(h, ilen, &ih), 0);
        CHECK_EQ(ih.seg_len, file_size(seg));
        with_idx++;
    }
    CHECK(with_idx >= 2);
    bs = open_with(o);
    CHECK(bs);
    for (uint64_t id = 1; id <= 40; id++) CHECK_EQ(get_sync(bs, id, 5000), 0);
    CHECK_EQ(stats(bs).recovered_damaged, 0);
    close_store(bs);
}
