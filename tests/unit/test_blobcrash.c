/* test_blobcrash.c: crash consistency of the blob store (CONTRACT.md row 7;
 * defends C1, C3, C5, C9).
 *
 * A workload (concurrent puts of several sizes in two partitions, with
 * compression, deletes, segment rolls and a compaction) runs on a store
 * whose fio records every pwritev, fdatasync, ftruncate, rename, unlink and
 * directory fsync, in order, with the bytes written.  A replayer then
 * builds, in a fresh directory, the files a power cut could leave at every
 * fsync boundary (just before and just after each sync), in four ways (the
 * random ones three times each, so eight states per boundary):
 *   all      every recorded operation happened (a process crash);
 *   synced   only what was fsync'ed survived: file data as of its last
 *            fdatasync, directory entries as of their directory's last
 *            fsync (a power cut that loses the page cache);
 *   subset   unsynced writes survive at random (reordering), directory
 *            changes all survive;
 *   torn     unsynced writes all survive except the last one, which is cut
 *            at a random multiple of 512 bytes.
 * The store is opened on each state and checked: it opens; every put
 * acknowledged before the crash point reads back with the right bytes;
 * every delete acknowledged before it stays deleted; no read ever returns
 * wrong bytes (a blob is either right, absent, or a checksum error); and
 * the store takes a new put.
 *
 * Write ordering in the log: a write is logged when it completed, a sync
 * when it started, so a sync covers exactly the writes logged before it
 * (conservative: a write racing a sync counts as not covered). */
#include "base/bd.h"
#include "runtime/reactor.h"
#include "store/blob/blobstore.h"
#include "store/fileio.h"
#include "tap.h"
#include "testlib.h"
#include "base/util.h"

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- Fixture: the recording fio -------------------------------------------------- */

enum opk { K_CREATE, K_WRITE, K_SYNC, K_TRUNC, K_RENAME, K_UNLINK, K_DIRSYNC };

struct rop {
    enum opk k;
    char *path, *path2;
    uint64_t off;        /* WRITE offset; TRUNC length */
    uint8_t *data;
    size_t len;
};

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rop *ops;
static size_t n_ops, cap_ops;
static char *fd_path[4096];
static char live[512];

static void log_op(enum opk k, const char *path, const char *path2, uint64_t off,
                   const void *data, size_t len)
{
    pthread_mutex_lock(&log_lock);
    if (n_ops == cap_ops) {
        cap_ops = cap_ops ? cap_ops * 2 : 1024;
        ops = realloc(ops, cap_ops * sizeof(*ops));
    }
    struct rop *o = &ops[n_ops++];
    o->k = k;
    o->path = strdup(path);
    o->path2 = path2 ? strdup(path2) : NULL;
    o->off = off;
    o->len = len;
    o->data = NULL;
    if (len && data) {
        o->data = malloc(len);
        memcpy(o->data, data, len);
    }
    pthread_mutex_unlock(&log_lock);
}

static size_t ops_now(void)
{
    pthread_mutex_lock(&log_lock);
    size_t n = n_ops;
    pthread_mutex_unlock(&log_lock);
    return n;
}

static int r_open(struct fileio *f, const char *path, int flags, int mode)
{
    (void)f;
    bool existed = access(path, F_OK) == 0;
    int fd = fileio_posix.ops->open(&fileio_posix, path, flags, mode);
    if (fd < 0 || fd >= 4096) return fd;
    pthread_mutex_lock(&log_lock);
    free(fd_path[fd]);
    fd_path[fd] = strdup(path);
    pthread_mutex_unlock(&log_lock);
    if ((flags & O_CREAT) && !existed) log_op(K_CREATE, path, NULL, 0, NULL, 0);
    else if (flags & O_TRUNC) log_op(K_TRUNC, path, NULL, 0, NULL, 0);
    return fd;
}
static const char *path_of(int fd)
{
    pthread_mutex_lock(&log_lock);
    const char *p = fd >= 0 && fd < 4096 ? fd_path[fd] : NULL;
    pthread_mutex_unlock(&log_lock);
    return p ? p : "?";
}
static ssize_t r_pwritev(struct fileio *f, int fd, const struct iovec *iov, int n, uint64_t off)
{
    (void)f;
    ssize_t w = fileio_posix.ops->pwritev(&fileio_posix, fd, iov, n, off);
    if (w <= 0) return w;
    uint8_t *buf = malloc((size_t)w);
    size_t got = 0;
    for (int i = 0; i < n && got < (size_t)w; i++) {
        size_t take = BD_MIN(iov[i].iov_len, (size_t)w - got);
        memcpy(buf + got, iov[i].iov_base, take);
        got += take;
    }
    log_op(K_WRITE, path_of(fd), NULL, off, buf, (size_t)w);
    free(buf);
    return w;
}
static int r_fdatasync(struct fileio *f, int fd)
{
    (void)f;
    log_op(K_SYNC, path_of(fd), NULL, 0, NULL, 0);
    return fileio_posix.ops->fdatasync(&fileio_posix, fd);
}
static int r_ftruncate(struct fileio *f, int fd, uint64_t len)
{
    (void)f;
    int rc = fileio_posix.ops->ftruncate(&fileio_posix, fd, len);
    if (rc == 0) log_op(K_TRUNC, path_of(fd), NULL, len, NULL, 0);
    return rc;
}
static int r_rename(struct fileio *f, const char *a, const char *b)
{
    (void)f;
    int rc = fileio_posix.ops->rename(&fileio_posix, a, b);
    if (rc == 0) log_op(K_RENAME, a, b, 0, NULL, 0);
    return rc;
}
static int r_unlink(struct fileio *f, const char *p)
{
    (void)f;
    int rc = fileio_posix.ops->unlink(&fileio_posix, p);
    if (rc == 0) log_op(K_UNLINK, p, NULL, 0, NULL, 0);
    return rc;
}
static int r_fsync_dir(struct fileio *f, const char *d)
{
    (void)f;
    log_op(K_DIRSYNC, d, NULL, 0, NULL, 0);
    return fileio_posix.ops->fsync_dir(&fileio_posix, d);
}

static struct fileio_ops rec_ops;
static struct fileio recording = {.ops = &rec_ops};

/* ---- Fixture: the replayer ---------------------------------------------------------- */

struct inode {
    uint8_t *cur, *dur;
    size_t cur_len, dur_len, cap;
    size_t *pend;            /* op indexes since the last sync */
    size_t n_pend, cap_pend;
};

struct name {
    char *path;
    int ino;
};

struct model {
    struct inode *ino;
    int n_ino;
    struct name *cur, *dur;
    int n_cur, n_dur;
};

static int name_find(struct name *v, int n, const char *path)
{
    for (int i = 0; i < n; i++)
        if (strcmp(v[i].path, path) == 0) return i;
    return -1;
}

static void name_set(struct name **v, int *n, const char *path, int ino)
{
    int i = name_find(*v, *n, path);
    if (i >= 0) {
        (*v)[i].ino = ino;
        return;
    }
    *v = realloc(*v, (size_t)(*n + 1) * sizeof(**v));
    (*v)[*n].path = strdup(path);
    (*v)[*n].ino = ino;
    (*n)++;
}

static void name_del(struct name *v, int *n, const char *path)
{
    int i = name_find(v, *n, path);
    if (i < 0) return;
    free(v[i].path);
    v[i] = v[--*n];
}

static void ino_write(struct inode *in, uint64_t off, const uint8_t *d, size_t len, bool dur)
{
    uint8_t **buf = dur ? &in->dur : &in->cur;
    size_t *blen = dur ? &in->dur_len : &in->cur_len;
    size_t end = (size_t)off + len;
    if (end > *blen) {
        *buf = realloc(*buf, end);
        memset(*buf + *blen, 0, end - *blen);
        *blen = end;
    }
    memcpy(*buf + off, d, len);
}

static void ino_trunc(struct inode *in, uint64_t len, bool dur)
{
    uint8_t **buf = dur ? &in->dur : &in->cur;
    size_t *blen = dur ? &in->dur_len : &in->cur_len;
    if (len > *blen) {
        *buf = realloc(*buf, len);
        memset(*buf + *blen, 0, len - *blen);
    }
    *blen = len;
}

static char *parent_of(const char *path)
{
    char *p = strdup(path);
    char *s = strrchr(p, '/');
    if (s) *s = 0;
    return p;
}

/* Replay ops[0..K) into M. */
static void replay(struct model *m, size_t k)
{
    memset(m, 0, sizeof(*m));
    for (size_t i = 0; i < k; i++) {
        struct rop *o = &ops[i];
        int ni = name_find(m->cur, m->n_cur, o->path);
        struct inode *in = ni >= 0 ? &m->ino[m->cur[ni].ino] : NULL;
        switch (o->k) {
        case K_CREATE:
            m->ino = realloc(m->ino, (size_t)(m->n_ino + 1) * sizeof(*m->ino));
            memset(&m->ino[m->n_ino], 0, sizeof(*m->ino));
            name_set(&m->cur, &m->n_cur, o->path, m->n_ino++);
            break;
        case K_WRITE:
        case K_TRUNC:
            if (!in) break;
            if (o->k == K_WRITE) ino_write(in, o->off, o->data, o->len, false);
            else ino_trunc(in, o->off, false);
            if (in->n_pend == in->cap_pend) {
                in->cap_pend = in->cap_pend ? in->cap_pend * 2 : 16;
                in->pend = realloc(in->pend, in->cap_pend * sizeof(*in->pend));
            }
            in->pend[in->n_pend++] = i;
            break;
        case K_SYNC:
            if (!in) break;
            in->dur = realloc(in->dur, in->cur_len ? in->cur_len : 1);
            if (in->cur_len) memcpy(in->dur, in->cur, in->cur_len);
            in->dur_len = in->cur_len;
            in->n_pend = 0;
            break;
        case K_RENAME:
            if (ni < 0) break;
            name_set(&m->cur, &m->n_cur, o->path2, m->cur[ni].ino);
            name_del(m->cur, &m->n_cur, o->path);
            break;
        case K_UNLINK:
            name_del(m->cur, &m->n_cur, o->path);
            break;
        case K_DIRSYNC: {
            /* The directory's entries become durable as they are now. */
            for (int j = m->n_dur - 1; j >= 0; j--) {
                char *p = parent_of(m->dur[j].path);
                if (strcmp(p, o->path) == 0) name_del(m->dur, &m->n_dur, m->dur[j].path);
                free(p);
            }
            for (int j = 0; j < m->n_cur; j++) {
                char *p = parent_of(m->cur[j].path);
                if (strcmp(p, o->path) == 0)
                    name_set(&m->dur, &m->n_dur, m->cur[j].path, m->cur[j].ino);
                free(p);
            }
            break;
        }
        }
    }
}

static void model_free(struct model *m)
{
    for (int i = 0; i < m->n_ino; i++) {
        free(m->ino[i].cur);
        free(m->ino[i].dur);
        free(m->ino[i].pend);
    }
    for (int i = 0; i < m->n_cur; i++) free(m->cur[i].path);
    for (int i = 0; i < m->n_dur; i++) free(m->dur[i].path);
    free(m->ino);
    free(m->cur);
    free(m->dur);
}

enum crash_mode { M_ALL, M_SYNCED, M_SUBSET, M_TORN, M_N };
static const char *const mode_names[M_N] = {"all", "synced", "subset", "torn"};

static void write_file(const char *path, const uint8_t *d, size_t len)
{
    char *dir = parent_of(path);
    util_mkdir_p(dir, 0755);
    free(dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || util_write_full(fd, d, len) < 0) abort();
    close(fd);
}

/* The content of inode IN after a crash in MODE. */
static uint8_t *crash_content(struct inode *in, enum crash_mode mode, size_t last_write,
                              uint64_t *rng, size_t *len)
{
    if (mode == M_ALL) {
        *len = in->cur_len;
        uint8_t *b = malloc(in->cur_len + 1);
        if (in->cur_len) memcpy(b, in->cur, in->cur_len);
        return b;
    }
    struct inode t = {0};
    t.cur = malloc(in->dur_len + 1);
    if (in->dur_len) memcpy(t.cur, in->dur, in->dur_len);
    t.cur_len = in->dur_len;
    if (mode != M_SYNCED) {
        for (size_t i = 0; i < in->n_pend; i++) {
            struct rop *o = &ops[in->pend[i]];
            if (o->k == K_TRUNC) {
                ino_trunc(&t, o->off, false);
                continue;
            }
            size_t n = o->len;
            if (mode == M_SUBSET && util_rand64(rng) % 2) continue;
            if (mode == M_TORN && in->pend[i] == last_write)
                n = (util_rand64(rng) % (n / 512 + 1)) * 512;
            if (n) ino_write(&t, o->off, o->data, n, false);
        }
    }
    *len = t.cur_len;
    return t.cur;
}

/* Build the crash state of ops[0..K) in MODE under DIR. */
static void build_state(size_t k, enum crash_mode mode, const char *dir, uint64_t *rng)
{
    struct model m;
    replay(&m, k);
    size_t last_write = 0;
    for (size_t i = 0; i < k; i++)
        if (ops[i].k == K_WRITE) last_write = i;
    struct name *names = mode == M_SYNCED ? m.dur : m.cur;
    int n = mode == M_SYNCED ? m.n_dur : m.n_cur;
    size_t ll = strlen(live);
    for (int i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s%s", dir, names[i].path + ll);
        size_t len;
        uint8_t *d = crash_content(&m.ino[names[i].ino], mode, last_write, rng, &len);
        write_file(path, d, len);
        free(d);
    }
    model_free(&m);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* ---- Fixture: reactor and store helpers ----------------------------------------------- */

static struct reactor *rx;

#define MAX_ID 32
static uint32_t sizes[MAX_ID + 1];    /* 0: never put */
static size_t put_acked[MAX_ID + 1];  /* op count when the put was acked; SIZE_MAX if not */
static size_t del_acked[MAX_ID + 1];
static size_t del_issued[MAX_ID + 1]; /* op count when the delete was submitted */

static uint8_t *content(uint64_t id, uint32_t len)
{
    uint8_t *p = malloc(len + 1);
    uint64_t s = id * 31337;
    bool compressible = id % 2;
    for (uint32_t i = 0; i < len; i++)
        p[i] = compressible ? (uint8_t)(i % 16 + id) : (uint8_t)util_rand64(&s);
    return p;
}

static struct blobstore_opts opts(const char *dir, struct fileio *fio)
{
    return (struct blobstore_opts){
        .dir = dir, .fio = fio, .rx = rx, .tag = "crash", .metrics_labels = "",
        .ident = "crash-test", .segment_bytes = 16u << 10, .max_blob_bytes = 8u << 10,
        .compress = true, .compress_min_saving_pct = 10, .compact_live_pct = 60,
        .compact_check_ms = 3600000, .read_threads = 1,
        /* BLOBSTORE_TEST_DIRECT=N (meson: blobcrash-direct): records of N
         * bytes and more written with O_DIRECT, so the torn and reordered
         * states include rewrites of a segment's last block. */
        .direct_min_bytes = getenv("BLOBSTORE_TEST_DIRECT")
                                ? (uint32_t)strtoul(getenv("BLOBSTORE_TEST_DIRECT"), NULL, 10)
                                : 0};
}

struct wreq {
    struct blobstore_put p;
    struct blobstore_delete d;
    uint8_t *data;
    int done, err;
};

static void on_put(struct blobstore_put *p, int err)
{
    struct wreq *w = bd_container_of(p, struct wreq, p);
    if (err == 0) put_acked[p->blob_id] = ops_now();
    w->err = err;
    w->done = 1;
}

static void on_del(struct blobstore_delete *d, int err)
{
    struct wreq *w = bd_container_of(d, struct wreq, d);
    if (err == 0) del_acked[d->blob_id] = ops_now();
    w->err = err;
    w->done = 1;
}

/* Put ids [A, B] concurrently and wait for all. */
static bool put_many(struct blobstore *bs, uint64_t a, uint64_t b)
{
    struct wreq w[MAX_ID];
    int n = 0;
    for (uint64_t id = a; id <= b; id++, n++) {
        uint32_t len = sizes[id];
        w[n] = (struct wreq){.data = content(id, len)};
        w[n].p = (struct blobstore_put){.blob_id = id, .partition = 1 + (uint32_t)(id % 2),
                                        .flags = BLOBSTORE_PUT_COMPRESSIBLE, .epoch = 1,
                                        .csum = util_xxh3(w[n].data, len), .data = w[n].data,
                                        .len = len, .cb = on_put};
        if (blobstore_put(bs, &w[n].p) != 0) return false;
    }
    bool ok = true;
    for (int i = 0; i < n; i++) {
        ok &= testlib_run_until_flag(rx, &w[i].done, 10000) && w[i].err == 0;
        free(w[i].data);
    }
    return ok;
}

static bool del_many(struct blobstore *bs, const uint64_t *ids, int n)
{
    struct wreq w[MAX_ID];
    for (int i = 0; i < n; i++) {
        w[i] = (struct wreq){0};
        w[i].d = (struct blobstore_delete){.blob_id = ids[i],
                                           .partition = 1 + (uint32_t)(ids[i] % 2), .cb = on_del};
        del_issued[ids[i]] = ops_now();
        if (blobstore_delete(bs, &w[i].d) != 0) return false;
    }
    bool ok = true;
    for (int i = 0; i < n; i++)
        ok &= testlib_run_until_flag(rx, &w[i].done, 10000) && w[i].err == 0;
    return ok;
}

struct getw {
    struct blobstore_get g;
    int done, err;
};

static void on_get(struct blobstore_get *g, int err)
{
    struct getw *w = bd_container_of(g, struct getw, g);
    w->err = err;
    w->done = 1;
}

/* 0: right bytes; -ENOENT / -BD_ECSUM; -EILSEQ: wrong bytes. */
static int check_blob(struct blobstore *bs, uint64_t id)
{
    struct getw w = {.g = {.blob_id = id, .partition = 1 + (uint32_t)(id % 2), .cb = on_get}};
    int rc = blobstore_get(bs, &w.g);
    if (rc < 0) return rc;
    if (!testlib_run_until_flag(rx, &w.done, 10000)) return -ETIMEDOUT;
    if (w.err) return w.err;
    uint8_t *want = content(id, sizes[id]);
    rc = w.g.data_len == sizes[id] && memcmp(w.g.data, want, sizes[id]) == 0 ? 0 : -EILSEQ;
    free(want);
    free(w.g.buf);
    return rc;
}

/* ---- The test -------------------------------------------------------------------------- */

/* Every crash state at every fsync boundary of the workload recovers with
 * every acknowledged put present, every acknowledged delete kept, and no
 * wrong bytes served. */
TEST(crash_states)
{
    rx = reactor_new();
    rec_ops = *fileio_posix.ops;
    rec_ops.open = r_open;
    rec_ops.pwritev = r_pwritev;
    rec_ops.fdatasync = r_fdatasync;
    rec_ops.ftruncate = r_ftruncate;
    rec_ops.rename = r_rename;
    rec_ops.unlink = r_unlink;
    rec_ops.fsync_dir = r_fsync_dir;
    const char *tmp = tap_tmpdir();
    snprintf(live, sizeof(live), "%s/live", tmp);
    uint64_t seed = tap_seed();
    uint64_t rng = seed;
    for (uint64_t id = 1; id <= MAX_ID; id++) {
        sizes[id] = 0;
        put_acked[id] = del_acked[id] = del_issued[id] = SIZE_MAX;
    }
    /* Even ids go to partition 1 uncompressed; the ones deleted below (2, 4,
     * 8, 10) are large, so whatever the other sizes, partition 1's first
     * segment is sealed holding mostly deleted bytes and the compaction
     * always has work (with all sizes random, some seeds left every sealed
     * segment above compact_live_pct and nothing was compacted). */
    for (uint64_t id = 1; id <= 14; id++) {
        bool big = id == 2 || id == 4 || id == 8 || id == 10;
        sizes[id] = (big ? 5000 : 100) + (uint32_t)(util_rand64(&rng) % (big ? 3000 : 8000));
    }

    /* The workload, recorded. */
    struct blobstore *bs;
    char err[256];
    struct blobstore_opts o = opts(live, &recording);
    CHECK(blobstore_open(&o, &bs, err, sizeof(err)) == 0);
    CHECK(put_many(bs, 1, 6));
    static const uint64_t d1[] = {2, 4};
    CHECK(del_many(bs, d1, 2));
    CHECK(put_many(bs, 7, 12));
    static const uint64_t d2[] = {7, 8, 9, 10, 1};
    CHECK(del_many(bs, d2, 5));
    int done = 0;
    blobstore_compact_now(bs, testlib_set_flag, &done);
    CHECK(testlib_run_until_flag(rx, &done, 10000));
    CHECK(put_many(bs, 13, 14));
    struct blobstore_stats st;
    blobstore_get_stats(bs, &st);
    done = 0;
    blobstore_close(bs, testlib_set_flag, &done);
    CHECK(testlib_run_until_flag(rx, &done, 10000));
    blobstore_free(bs);
    printf("# seed %llu: %zu operations recorded, %llu segments compacted\n",
           (unsigned long long)seed, n_ops, (unsigned long long)st.compactions);
    CHECK(st.compactions > 0);

    /* The recorder saw what the disk holds: its "all" state equals the live files. */
    struct model m;
    replay(&m, n_ops);
    for (int i = 0; i < m.n_cur; i++) {
        int fd = open(m.cur[i].path, O_RDONLY);
        CHECK(fd >= 0);
        struct stat sb;
        fstat(fd, &sb);
        struct inode *in = &m.ino[m.cur[i].ino];
        CHECK_EQ((uint64_t)sb.st_size, in->cur_len);
        uint8_t *b = malloc(in->cur_len + 1);
        CHECK(util_pread_full(fd, b, in->cur_len, 0) == 0);
        CHECK(memcmp(b, in->cur, in->cur_len) == 0);
        free(b);
        close(fd);
    }
    model_free(&m);

    /* Every sync boundary, every mode. */
    unsigned states = 0, present = 0;
    char dir[600];
    for (size_t i = 0; i <= n_ops; i++) {
        bool boundary = i == n_ops || ops[i].k == K_SYNC || ops[i].k == K_DIRSYNC ||
                        (i > 0 && (ops[i - 1].k == K_SYNC || ops[i - 1].k == K_DIRSYNC));
        if (!boundary) continue;
        for (int v = 0; v < 8; v++) { /* all, synced, 3 random subsets, 3 random tears */
            int mode = v < 2 ? v : v < 5 ? M_SUBSET : M_TORN;
            snprintf(dir, sizeof(dir), "%s/state", tmp);
            build_state(i, (enum crash_mode)mode, dir, &rng);
            states++;
            struct blobstore_opts so = opts(dir, &fileio_posix);
            so.compact_live_pct = 0;
            int rc = blobstore_open(&so, &bs, err, sizeof(err));
            if (rc < 0) printf("# state %zu/%s: open failed: %s\n", i, mode_names[mode], err);
            CHECK(rc == 0);
            for (uint64_t id = 1; id <= 14; id++) {
                rc = check_blob(bs, id);
                /* A delete in flight at the crash may or may not have happened. */
                bool must_have = put_acked[id] <= i && del_issued[id] >= i;
                bool must_lack = del_acked[id] <= i;
                if ((must_have && rc != 0) || (must_lack && rc != -ENOENT) || rc == -EILSEQ ||
                    (rc != 0 && rc != -ENOENT && rc != -BD_ECSUM))
                    printf("# seed %llu state %zu/%s blob %llu: %s (put acked at %zd, delete at "
                           "%zd)\n",
                           (unsigned long long)seed, i, mode_names[mode], (unsigned long long)id,
                           bd_strerror(rc), (ssize_t)put_acked[id], (ssize_t)del_acked[id]);
                CHECK(!(must_have && rc != 0));
                CHECK(!(must_lack && rc != -ENOENT));
                CHECK(rc == 0 || rc == -ENOENT || rc == -BD_ECSUM);
                present += rc == 0;
            }
            /* The recovered store takes writes. */
            sizes[20] = 3000;
            CHECK(put_many(bs, 20, 20));
            CHECK_EQ(check_blob(bs, 20), 0);
            done = 0;
            blobstore_close(bs, testlib_set_flag, &done);
            CHECK(testlib_run_until_flag(rx, &done, 10000));
            blobstore_free(bs);
            nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        }
    }
    printf("# %u crash states explored, %u blob reads verified, 0 violations\n", states, present);
    CHECK(states > 200); /* 8 per sync boundary; the workload has dozens */
    for (size_t i = 0; i < n_ops; i++) {
        free(ops[i].path);
        free(ops[i].path2);
        free(ops[i].data);
    }
    free(ops);
    for (int i = 0; i < 4096; i++) free(fd_path[i]);
    reactor_free(rx);
}
