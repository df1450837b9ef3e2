/* powercut.c: a simulated disk for a whole process, loaded with LD_PRELOAD
 * (CONTRACT.md row 7; issue 18 item 2).
 *
 * What it models.  Every write, truncate and directory entry made under
 * the directories named in POWERCUT_ROOTS is kept as *pending* until it is
 * made durable: a file's data and size by fsync/fdatasync of that file (any
 * descriptor of the inode, or a descriptor opened O_SYNC/O_DSYNC, whose
 * writes are durable at once); a directory entry (create, unlink, rename,
 * link, mkdir, rmdir) by fsync of its directory, which also makes durable
 * every entry change made before it (a metadata journal commits in order).
 * sync() and syncfs() make everything durable.  At a power cut (SIGUSR2)
 * the process's disk is rewritten into one crash state and the process is
 * SIGKILLed at once: every pending data operation is independently kept,
 * dropped, or torn at a 512-byte sector boundary (the first sectors
 * reach the disk, the rest do not); pending entry changes survive as a
 * prefix of their order.  The choice is seeded (POWERCUT_SEED, the pid
 * and the process's cut count), among four kinds of cut: drop everything
 * pending (the plain fsync-boundary state, 3 in 10), keep everything (1 in
 * 10), keep a prefix of the pending data operations in issue order with
 * the next one torn (a disk that does not reorder, 3 in 10), or keep any
 * subset (3 in 10; POWERCUT_NO_REORDER=1 turns these into prefix cuts).
 *
 * Why a preloaded shim and not the fileio vtable alone.  LMDB writes its
 * pages with its own pwrite/write and reads them back through a read-only
 * mmap of data.mdb; the Raft log, blob segments and agent journals go
 * through src/store/fileio.c, which calls the same libc functions.  A
 * shim below libc's entry points covers all of them, and any file a role
 * writes outside fileio, with one model and one cut per process, so the
 * crash state is consistent across a process's files.  It must write
 * through (the file always holds the newest bytes, as the page cache
 * would), because LMDB reads through its map what it just wrote; so
 * instead of holding pending writes back it keeps each one's pre-image
 * (the bytes and size it replaced) and, at the cut, undoes the pending
 * operations in reverse order (reading back each one's own bytes on the
 * way), then replays the ones the crash state keeps.  Unlinked and
 * replaced files are kept as hard links in POWERCUT_STATE (same
 * filesystem) until their entry change is durable, so an undone unlink
 * or rename can bring them back.  fsync itself is not passed down: the
 * shim decides durability, and skipping the real flush keeps runs fast.
 *
 * What it does not see: writes through a writable shared mmap (none of
 * the roles make one: LMDB runs without MDB_WRITEMAP, C16) and libc's
 * internal calls (stdio, used only for logs, which are not under a root).
 *
 * Environment: POWERCUT_ROOTS (colon-separated absolute directories;
 * unset: the shim does nothing), POWERCUT_STATE (a directory on the same
 * filesystem), POWERCUT_SEED, POWERCUT_REPORT (a file that gets one line
 * per cut:
 *   powercut pid P cut N mode M: data ops O kept K dropped D torn T; entries E kept Q
 * ). */
/* The wrappers must define the plain names (open, pwrite...): no
 * large-file renaming (off_t is 64-bit on the 64-bit targets we build). */
#undef _FILE_OFFSET_BITS
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define SECTOR 512

/* ---- the real functions ------------------------------------------------------ */

#define REAL(ret, name, ...)                                                       \
    static ret (*real_##name)(__VA_ARGS__);                                        \
    static void load_##name(void)                                                  \
    {                                                                              \
        if (!real_##name) real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name); \
    }

REAL(int, open, const char *, int, ...)
REAL(int, openat, int, const char *, int, ...)
REAL(ssize_t, write, int, const void *, size_t)
REAL(ssize_t, pwrite, int, const void *, size_t, off_t)
REAL(ssize_t, writev, int, const struct iovec *, int)
REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t)
REAL(int, fsync, int)
REAL(int, fdatasync, int)
REAL(int, ftruncate, int, off_t)
REAL(int, rename, const char *, const char *)
REAL(int, unlink, const char *)
REAL(int, mkdir, const char *, mode_t)
REAL(int, rmdir, const char *)
REAL(int, link, const char *, const char *)

static void load_all(void)
{
    load_open();
    load_openat();
    load_write();
    load_pwrite();
    load_writev();
    load_pwritev();
    load_fsync();
    load_fdatasync();
    load_ftruncate();
    load_rename();
    load_unlink();
    load_mkdir();
    load_rmdir();
    load_link();
}

/* ---- state ------------------------------------------------------------------- */

enum { OP_WRITE, OP_TRUNC };

struct dop { /* a pending data operation on one inode */
    uint64_t seq;
    int kind;
    uint64_t off, len;     /* OP_WRITE: the range written; OP_TRUNC: len = new size */
    uint64_t old_size;     /* the file's size before */
    uint8_t *pre;          /* the bytes it replaced: [off, min(off+len, old_size)) for a
                            * write, [len, old_size) for a shrinking truncate */
    uint64_t pre_len;
    bool durable;          /* written through O_SYNC/O_DSYNC: always kept, but its
                            * pre-image is still needed to undo earlier ops */
};

struct file {
    dev_t dev;
    ino_t ino;
    char path[PATH_MAX];
    int fd;                /* our own O_RDWR descriptor while ops are pending; -1 */
    struct dop *ops;
    size_t n, cap;
};

enum { E_CREATE, E_UNLINK, E_RENAME, E_MKDIR, E_RMDIR, E_LINK };

struct entry { /* a pending directory entry change */
    int kind;
    char a[PATH_MAX], b[PATH_MAX]; /* path; rename: from (a) and to (b) */
    char backup[PATH_MAX];         /* unlink / rename over: the old inode's hard link */
};

static struct {
    bool on, no_reorder;
    char roots[8][PATH_MAX];
    int nroots;
    char state[PATH_MAX], report[PATH_MAX];
    uint64_t seed, seq, backups;
    pthread_mutex_t lock;
    struct file **files;
    size_t nfiles, capfiles;
    struct entry *ents;
    size_t nents, capents;
    int pipe[2];
} S = {.lock = PTHREAD_MUTEX_INITIALIZER, .pipe = {-1, -1}};

static void die(const char *what)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "powercut: %s: %s\n", what, strerror(errno));
    if (n > 0) {
        load_write();
        ssize_t w = real_write(2, buf, (size_t)n);
        (void)w;
    }
    abort();
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) die("out of memory");
    return q;
}

/* The absolute form of PATH relative to DIRFD (AT_FDCWD: the cwd). */
static bool abspath(int dirfd, const char *path, char *out)
{
    if (path[0] == '/') {
        snprintf(out, PATH_MAX, "%s", path);
        return true;
    }
    char base[PATH_MAX];
    if (dirfd == AT_FDCWD) {
        if (!getcwd(base, sizeof(base))) return false;
    } else {
        char l[64];
        snprintf(l, sizeof(l), "/proc/self/fd/%d", dirfd);
        ssize_t n = readlink(l, base, sizeof(base) - 1);
        if (n < 0) return false;
        base[n] = 0;
    }
    return snprintf(out, PATH_MAX, "%s/%s", base, path) < PATH_MAX;
}

static bool under_root(const char *abs)
{
    for (int i = 0; i < S.nroots; i++) {
        size_t n = strlen(S.roots[i]);
        if (!strncmp(abs, S.roots[i], n) && (abs[n] == '/' || abs[n] == 0)) return true;
    }
    return false;
}

static struct file *find_file(dev_t dev, ino_t ino)
{
    for (size_t i = 0; i < S.nfiles; i++)
        if (S.files[i]->dev == dev && S.files[i]->ino == ino) return S.files[i];
    return NULL;
}

/* Register the inode behind FD (opened as ABS) as tracked. */
static void track_fd(int fd, const char *abs)
{
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) return;
    struct file *f = find_file(st.st_dev, st.st_ino);
    if (f) {
        snprintf(f->path, sizeof(f->path), "%s", abs);
        return;
    }
    if (S.nfiles == S.capfiles) {
        S.capfiles = S.capfiles ? S.capfiles * 2 : 64;
        S.files = xrealloc(S.files, S.capfiles * sizeof(*S.files));
    }
    f = calloc(1, sizeof(*f));
    if (!f) die("out of memory");
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->fd = -1;
    snprintf(f->path, sizeof(f->path), "%s", abs);
    S.files[S.nfiles++] = f;
}

/* The tracked file behind FD, or NULL; *SYNC: FD writes are durable at once. */
static struct file *file_of(int fd, bool *sync, uint64_t *size)
{
    struct stat st;
    if (!S.on || fstat(fd, &st) || !S_ISREG(st.st_mode)) return NULL;
    struct file *f = find_file(st.st_dev, st.st_ino);
    if (!f) return NULL;
    int fl = fcntl(fd, F_GETFL);
    *sync = fl >= 0 && (fl & (O_SYNC | O_DSYNC));
    *size = (uint64_t)st.st_size;
    if (f->fd < 0) {
        char l[64];
        snprintf(l, sizeof(l), "/proc/self/fd/%d", fd);
        f->fd = real_open(l, O_RDWR | O_CLOEXEC);
        if (f->fd < 0) die("reopening a tracked file");
    }
    return f;
}

static struct dop *add_op(struct file *f)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 16;
        f->ops = xrealloc(f->ops, f->cap * sizeof(*f->ops));
    }
    struct dop *o = &f->ops[f->n++];
    memset(o, 0, sizeof(*o));
    o->seq = ++S.seq;
    return o;
}

static void read_exact(int fd, uint8_t *buf, uint64_t len, uint64_t off)
{
    while (len) {
        ssize_t n = pread(fd, buf, len, (off_t)off);
        if (n <= 0) die("reading a pre-image");
        buf += n;
        len -= (uint64_t)n;
        off += (uint64_t)n;
    }
}

static void write_exact(int fd, const uint8_t *buf, uint64_t len, uint64_t off)
{
    while (len) {
        ssize_t n = real_pwrite(fd, buf, len, (off_t)off);
        if (n <= 0) die("writing the crash state");
        buf += n;
        len -= (uint64_t)n;
        off += (uint64_t)n;
    }
}

/* Record a write of LEN bytes at OFF to F (size SIZE now), before it runs. */
static void note_write(struct file *f, uint64_t off, uint64_t len, uint64_t size)
{
    struct dop *o = add_op(f);
    o->kind = OP_WRITE;
    o->off = off;
    o->len = len;
    o->old_size = size;
    o->pre_len = off < size ? (off + len < size ? len : size - off) : 0;
    if (o->pre_len) {
        o->pre = xrealloc(NULL, o->pre_len);
        read_exact(f->fd, o->pre, o->pre_len, off);
    }
}

static void note_trunc(struct file *f, uint64_t len, uint64_t size)
{
    struct dop *o = add_op(f);
    o->kind = OP_TRUNC;
    o->len = len;
    o->old_size = size;
    if (len < size) {
        o->pre_len = size - len;
        o->off = len;
        o->pre = xrealloc(NULL, o->pre_len);
        read_exact(f->fd, o->pre, o->pre_len, len);
    }
}

/* Everything pending on F up to sequence number UPTO is durable. */
static void make_durable(struct file *f, uint64_t upto)
{
    size_t k = 0;
    for (size_t i = 0; i < f->n; i++) {
        if (f->ops[i].seq <= upto) free(f->ops[i].pre);
        else f->ops[k++] = f->ops[i];
    }
    f->n = k;
    if (!f->n && f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
}

static void add_entry(int kind, const char *a, const char *b, const char *backup)
{
    if (S.nents == S.capents) {
        S.capents = S.capents ? S.capents * 2 : 64;
        S.ents = xrealloc(S.ents, S.capents * sizeof(*S.ents));
    }
    struct entry *e = &S.ents[S.nents++];
    memset(e, 0, sizeof(*e));
    e->kind = kind;
    snprintf(e->a, sizeof(e->a), "%s", a);
    if (b) snprintf(e->b, sizeof(e->b), "%s", b);
    if (backup) snprintf(e->backup, sizeof(e->backup), "%s", backup);
}

/* A hard link to ABS in the state directory (its inode outlives an unlink
 * or a rename over it until the change is durable); "" if ABS is not a
 * regular file. */
static void backup_of(const char *abs, char *out)
{
    struct stat st;
    out[0] = 0;
    if (lstat(abs, &st) || !S_ISREG(st.st_mode)) return;
    if (snprintf(out, PATH_MAX, "%.3800s/b%d-%llu", S.state, (int)getpid(),
                 (unsigned long long)++S.backups) >= PATH_MAX)
        die("POWERCUT_STATE is too long");
    if (real_link(abs, out)) die("linking a backup");
}

static void drop_backup(struct entry *e)
{
    if (e->backup[0]) real_unlink(e->backup);
}

static const char *parent_of(const char *path, char *buf)
{
    snprintf(buf, PATH_MAX, "%s", path);
    char *s = strrchr(buf, '/');
    if (s && s != buf) *s = 0;
    return buf;
}

/* fsync of directory DIR: every entry change up to the last one in DIR is durable. */
static void dir_durable(const char *dir)
{
    size_t last = 0;
    char p[PATH_MAX];
    for (size_t i = 0; i < S.nents; i++) {
        struct entry *e = &S.ents[i];
        if (!strcmp(parent_of(e->a, p), dir) || (e->b[0] && !strcmp(parent_of(e->b, p), dir)))
            last = i + 1;
    }
    for (size_t i = 0; i < last; i++) drop_backup(&S.ents[i]);
    memmove(S.ents, S.ents + last, (S.nents - last) * sizeof(*S.ents));
    S.nents -= last;
}

static void all_durable(void)
{
    for (size_t i = 0; i < S.nfiles; i++) make_durable(S.files[i], UINT64_MAX);
    for (size_t i = 0; i < S.nents; i++) drop_backup(&S.ents[i]);
    S.nents = 0;
}

/* ---- the cut ------------------------------------------------------------------- */

static uint64_t rnd(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

enum { KEEP, DROP, TEAR };

/* A thread that faults on a mapped file while the cut rewrites it (a
 * snapshot or LMDB page past the size the cut just restored) stops here
 * until the SIGKILL: with real power lost no thread ever sees the disk
 * between its states, so no thread may die of it first. */
static void park_faulting_thread(int sig)
{
    (void)sig;
    for (;;) pause();
}

static void cut(void)
{
    struct sigaction bus = {.sa_handler = park_faulting_thread};
    sigemptyset(&bus.sa_mask);
    sigaction(SIGBUS, &bus, NULL); /* before any file is rewritten */
    pthread_mutex_lock(&S.lock); /* never released: the process dies holding it */
    static uint64_t cuts;
    uint64_t r = S.seed ^ ((uint64_t)getpid() << 32) ^ ++cuts;
    rnd(&r);
    uint64_t m = rnd(&r) % 10;
    if (m >= 7 && S.no_reorder) m = 4 + m % 3;
    const char *mode = m < 3 ? "drop-all" : m < 4 ? "keep-all" : m < 7 ? "prefix" : "random";
    /* prefix: ops numbered below CUTOFF survive, the one at it is torn. */
    uint64_t lo = UINT64_MAX, hi = 0, cutoff = 0;
    for (size_t i = 0; i < S.nfiles; i++)
        for (size_t j = 0; j < S.files[i]->n; j++) {
            uint64_t q = S.files[i]->ops[j].seq;
            lo = q < lo ? q : lo;
            hi = q > hi ? q : hi;
        }
    if (lo <= hi) cutoff = lo + rnd(&r) % (hi - lo + 2);
    uint64_t nops = 0, kept = 0, dropped = 0, torn = 0;
    for (size_t i = 0; i < S.nfiles; i++) {
        struct file *f = S.files[i];
        if (!f->n) continue;
        /* Undo in reverse, reading back each op's own bytes first. */
        uint8_t **mine = xrealloc(NULL, f->n * sizeof(*mine));
        for (size_t j = f->n; j-- > 0;) {
            struct dop *o = &f->ops[j];
            mine[j] = NULL;
            struct stat st;
            if (fstat(f->fd, &st)) die("fstat");
            if (o->kind == OP_WRITE) {
                uint64_t have = o->off < (uint64_t)st.st_size
                                    ? ((uint64_t)st.st_size - o->off < o->len ? (uint64_t)st.st_size - o->off : o->len)
                                    : 0;
                mine[j] = xrealloc(NULL, o->len);
                memset(mine[j], 0, o->len);
                if (have) read_exact(f->fd, mine[j], have, o->off);
                if (real_ftruncate(f->fd, (off_t)o->old_size)) die("ftruncate");
                if (o->pre_len) write_exact(f->fd, o->pre, o->pre_len, o->off);
            } else {
                if (real_ftruncate(f->fd, (off_t)o->old_size)) die("ftruncate");
                if (o->pre_len) write_exact(f->fd, o->pre, o->pre_len, o->off);
            }
        }
        /* Replay what this crash state keeps. */
        for (size_t j = 0; j < f->n; j++) {
            struct dop *o = &f->ops[j];
            int what;
            if (o->durable) what = KEEP;
            else if (m < 3) what = DROP;
            else if (m < 4) what = KEEP;
            else if (m < 7) what = o->seq < cutoff ? KEEP : o->seq == cutoff ? TEAR : DROP;
            else what = (int)(rnd(&r) % 10 < 5 ? KEEP : rnd(&r) % 3 ? DROP : TEAR);
            nops++;
            if (o->kind == OP_TRUNC) {
                if (what == DROP) {
                    dropped++;
                    continue;
                }
                kept++;
                if (real_ftruncate(f->fd, (off_t)o->len)) die("ftruncate");
                continue;
            }
            uint64_t len = o->len;
            if (what == TEAR) {
                /* Sector boundaries strictly inside the write. */
                uint64_t first = (o->off / SECTOR + 1) * SECTOR, end = o->off + o->len;
                if (first >= end) what = rnd(&r) % 2 ? KEEP : DROP;
                else len = first + (rnd(&r) % ((end - 1 - first) / SECTOR + 1)) * SECTOR - o->off;
            }
            if (what == DROP) {
                dropped++;
                continue;
            }
            what == TEAR ? torn++ : kept++;
            write_exact(f->fd, mine[j], len, o->off);
        }
        for (size_t j = 0; j < f->n; j++) free(mine[j]);
        free(mine);
    }
    /* Entry changes: a prefix survives; undo the rest in reverse. */
    size_t keep_ents = m < 3 ? 0 : m < 4 ? S.nents : (size_t)(rnd(&r) % (S.nents + 1));
    for (size_t i = S.nents; i-- > keep_ents;) {
        struct entry *e = &S.ents[i];
        switch (e->kind) {
        case E_CREATE: case E_LINK: real_unlink(e->a); break;
        case E_MKDIR: real_rmdir(e->a); break;
        case E_RMDIR: real_mkdir(e->a, 0755); break;
        case E_UNLINK:
            if (e->backup[0]) real_link(e->backup, e->a);
            break;
        case E_RENAME:
            real_rename(e->b, e->a);
            if (e->backup[0]) real_link(e->backup, e->b);
            break;
        }
    }
    for (size_t i = 0; i < S.nents; i++) drop_backup(&S.ents[i]);
    if (S.report[0]) {
        char line[256];
        int n = snprintf(line, sizeof(line),
                         "powercut pid %d cut %llu mode %s: data ops %llu kept %llu dropped %llu "
                         "torn %llu; entries %zu kept %zu\n",
                         (int)getpid(), (unsigned long long)cuts, mode, (unsigned long long)nops,
                         (unsigned long long)kept, (unsigned long long)dropped,
                         (unsigned long long)torn, S.nents, keep_ents);
        int fd = real_open(S.report, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            ssize_t w = real_write(fd, line, (size_t)n);
            (void)w;
            close(fd);
        }
    }
    kill(getpid(), SIGKILL);
    for (;;) pause();
}

static void *power_thread(void *arg)
{
    (void)arg;
    char c;
    while (read(S.pipe[0], &c, 1) < 0 && errno == EINTR) {}
    cut();
    return NULL;
}

static void on_cut_signal(int sig)
{
    (void)sig;
    int e = errno;
    ssize_t w = real_write(S.pipe[1], "x", 1);
    (void)w;
    errno = e;
}

__attribute__((constructor)) static void powercut_init(void)
{
    load_all();
    const char *roots = getenv("POWERCUT_ROOTS");
    if (!roots || !*roots) return;
    char buf[8 * PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", roots);
    for (char *save, *t = strtok_r(buf, ":", &save); t && S.nroots < 8; t = strtok_r(NULL, ":", &save))
        snprintf(S.roots[S.nroots++], PATH_MAX, "%s", t);
    const char *st = getenv("POWERCUT_STATE"), *rep = getenv("POWERCUT_REPORT");
    const char *seed = getenv("POWERCUT_SEED");
    if (!st) die("POWERCUT_STATE is not set");
    snprintf(S.state, sizeof(S.state), "%s", st);
    if (rep) snprintf(S.report, sizeof(S.report), "%s", rep);
    S.seed = seed ? strtoull(seed, NULL, 10) : 1;
    S.no_reorder = getenv("POWERCUT_NO_REORDER") && !strcmp(getenv("POWERCUT_NO_REORDER"), "1");
    if (pipe2(S.pipe, O_CLOEXEC)) die("pipe");
    struct sigaction sa = {.sa_handler = on_cut_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR2, &sa, NULL)) die("sigaction");
    pthread_t th;
    /* The power thread blocks every signal: the cut runs there, and the
     * process's own signal handling is left as it was. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&th, NULL, power_thread, NULL)) die("pthread_create");
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_detach(th);
    S.on = true;
}

/* ---- the interposed calls ---------------------------------------------------------- */

static int do_open(int dirfd, const char *path, int flags, mode_t mode)
{
    char abs[PATH_MAX];
    if (!S.on || !abspath(dirfd, path, abs) || !under_root(abs))
        return dirfd == AT_FDCWD ? real_open(path, flags, mode) : real_openat(dirfd, path, flags, mode);
    pthread_mutex_lock(&S.lock);
    struct stat st;
    bool existed = lstat(abs, &st) == 0;
    uint64_t old_size = existed ? (uint64_t)st.st_size : 0;
    int fd;
    if ((flags & O_TRUNC) && existed && old_size && S_ISREG(st.st_mode)) {
        /* Record the truncation as an operation with its pre-image. */
        fd = dirfd == AT_FDCWD ? real_open(path, flags & ~O_TRUNC, mode)
                               : real_openat(dirfd, path, flags & ~O_TRUNC, mode);
        if (fd >= 0) {
            track_fd(fd, abs);
            bool sync;
            uint64_t size;
            struct file *f = file_of(fd, &sync, &size);
            if (f) {
                note_trunc(f, 0, size);
                f->ops[f->n - 1].durable = sync;
            }
            if (real_ftruncate(fd, 0)) die("ftruncate");
        }
    } else {
        fd = dirfd == AT_FDCWD ? real_open(path, flags, mode) : real_openat(dirfd, path, flags, mode);
        if (fd >= 0) {
            if (!existed && (flags & O_CREAT)) add_entry(E_CREATE, abs, NULL, NULL);
            track_fd(fd, abs);
        }
    }
    pthread_mutex_unlock(&S.lock);
    return fd;
}

#define MODE_ARG(flags, mode)                                                        \
    mode_t mode = 0;                                                                 \
    if ((flags) & (O_CREAT | __O_TMPFILE)) {                                         \
        va_list ap;                                                                  \
        va_start(ap, flags);                                                         \
        mode = (mode_t)va_arg(ap, int);                                              \
        va_end(ap);                                                                  \
    }

int open(const char *path, int flags, ...)
{
    load_all();
    MODE_ARG(flags, mode)
    return do_open(AT_FDCWD, path, flags, mode);
}
int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int openat(int dirfd, const char *path, int flags, ...)
{
    load_all();
    MODE_ARG(flags, mode)
    return do_open(dirfd, path, flags, mode);
}
int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

int creat(const char *path, mode_t mode)
{
    load_all();
    return do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}
int creat64(const char *path, mode_t mode) __attribute__((alias("creat")));

static uint64_t iov_len(const struct iovec *iov, int n)
{
    uint64_t t = 0;
    for (int i = 0; i < n; i++) t += iov[i].iov_len;
    return t;
}

/* A write of LEN bytes at OFF (-1: the descriptor's position) to FD. */
static ssize_t tracked_write(int fd, int64_t off, uint64_t len, ssize_t (*op)(void *), void *arg)
{
    struct stat st;
    /* Sockets and pipes (most writes of a server) go straight through. */
    if (!S.on || fstat(fd, &st) || !S_ISREG(st.st_mode)) return op(arg);
    pthread_mutex_lock(&S.lock);
    bool sync = false;
    uint64_t size = 0;
    struct file *f = file_of(fd, &sync, &size);
    if (f && len) {
        uint64_t at;
        if (off >= 0) at = (uint64_t)off;
        else {
            int fl = fcntl(fd, F_GETFL);
            at = fl >= 0 && (fl & O_APPEND) ? size : (uint64_t)lseek(fd, 0, SEEK_CUR);
        }
        note_write(f, at, len, size);
        f->ops[f->n - 1].durable = sync;
    }
    ssize_t n = op(arg);
    /* A short write: the recorded range covers more than was written,
     * which only widens what the cut may restore; the pre-image is right. */
    pthread_mutex_unlock(&S.lock);
    return n;
}

struct wargs {
    int fd;
    const void *buf;
    const struct iovec *iov;
    int n;
    size_t len;
    off_t off;
};
static ssize_t w_write(void *a) { struct wargs *w = a; return real_write(w->fd, w->buf, w->len); }
static ssize_t w_pwrite(void *a) { struct wargs *w = a; return real_pwrite(w->fd, w->buf, w->len, w->off); }
static ssize_t w_writev(void *a) { struct wargs *w = a; return real_writev(w->fd, w->iov, w->n); }
static ssize_t w_pwritev(void *a) { struct wargs *w = a; return real_pwritev(w->fd, w->iov, w->n, w->off); }

ssize_t write(int fd, const void *buf, size_t len)
{
    load_all();
    struct wargs w = {.fd = fd, .buf = buf, .len = len};
    return tracked_write(fd, -1, len, w_write, &w);
}
ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    load_all();
    struct wargs w = {.fd = fd, .buf = buf, .len = len, .off = off};
    return tracked_write(fd, off, len, w_pwrite, &w);
}
ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off) __attribute__((alias("pwrite")));
ssize_t writev(int fd, const struct iovec *iov, int n)
{
    load_all();
    struct wargs w = {.fd = fd, .iov = iov, .n = n};
    return tracked_write(fd, -1, iov_len(iov, n), w_writev, &w);
}
ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    load_all();
    struct wargs w = {.fd = fd, .iov = iov, .n = n, .off = off};
    return tracked_write(fd, off, iov_len(iov, n), w_pwritev, &w);
}
ssize_t pwritev64(int fd, const struct iovec *iov, int n, off_t off) __attribute__((alias("pwritev")));

static int sync_fd(int fd, int (*real)(int))
{
    if (!S.on) return real(fd);
    struct stat st;
    if (fstat(fd, &st)) return -1;
    pthread_mutex_lock(&S.lock);
    int rc = 0;
    if (S_ISDIR(st.st_mode)) {
        char l[64], p[PATH_MAX];
        snprintf(l, sizeof(l), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(l, p, sizeof(p) - 1);
        if (n > 0) {
            p[n] = 0;
            if (under_root(p)) dir_durable(p);
            else rc = real(fd);
        }
    } else {
        struct file *f = find_file(st.st_dev, st.st_ino);
        if (f) make_durable(f, S.seq);
        else rc = real(fd);
    }
    pthread_mutex_unlock(&S.lock);
    return rc;
}

int fsync(int fd)
{
    load_all();
    return sync_fd(fd, real_fsync);
}
int fdatasync(int fd)
{
    load_all();
    return sync_fd(fd, real_fdatasync);
}

void sync(void)
{
    load_all();
    if (S.on) {
        pthread_mutex_lock(&S.lock);
        all_durable();
        pthread_mutex_unlock(&S.lock);
    }
}
int syncfs(int fd)
{
    (void)fd;
    sync();
    return 0;
}

int ftruncate(int fd, off_t len)
{
    load_all();
    if (!S.on) return real_ftruncate(fd, len);
    pthread_mutex_lock(&S.lock);
    bool sync = false;
    uint64_t size = 0;
    struct file *f = len >= 0 ? file_of(fd, &sync, &size) : NULL;
    if (f && (uint64_t)len != size) {
        note_trunc(f, (uint64_t)len, size);
        f->ops[f->n - 1].durable = sync;
    }
    int rc = real_ftruncate(fd, len);
    pthread_mutex_unlock(&S.lock);
    return rc;
}
int ftruncate64(int fd, off_t len) __attribute__((alias("ftruncate")));

int rename(const char *from, const char *to)
{
    load_all();
    char a[PATH_MAX], b[PATH_MAX], bk[PATH_MAX];
    if (!S.on || !abspath(AT_FDCWD, from, a) || !abspath(AT_FDCWD, to, b) || !under_root(b))
        return real_rename(from, to);
    pthread_mutex_lock(&S.lock);
    backup_of(b, bk);
    int rc = real_rename(from, to);
    if (rc == 0) add_entry(E_RENAME, a, b, bk);
    else if (bk[0]) real_unlink(bk);
    pthread_mutex_unlock(&S.lock);
    return rc;
}

int unlink(const char *path)
{
    load_all();
    char a[PATH_MAX], bk[PATH_MAX];
    if (!S.on || !abspath(AT_FDCWD, path, a) || !under_root(a)) return real_unlink(path);
    pthread_mutex_lock(&S.lock);
    backup_of(a, bk);
    int rc = real_unlink(path);
    if (rc == 0) add_entry(E_UNLINK, a, NULL, bk);
    else if (bk[0]) real_unlink(bk);
    pthread_mutex_unlock(&S.lock);
    return rc;
}

int link(const char *from, const char *to)
{
    load_all();
    char b[PATH_MAX];
    if (!S.on || !abspath(AT_FDCWD, to, b) || !under_root(b)) return real_link(from, to);
    pthread_mutex_lock(&S.lock);
    int rc = real_link(from, to);
    if (rc == 0) add_entry(E_LINK, b, NULL, NULL);
    pthread_mutex_unlock(&S.lock);
    return rc;
}

int mkdir(const char *path, mode_t mode)
{
    load_all();
    char a[PATH_MAX];
    if (!S.on || !abspath(AT_FDCWD, path, a) || !under_root(a)) return real_mkdir(path, mode);
    pthread_mutex_lock(&S.lock);
    int rc = real_mkdir(path, mode);
    if (rc == 0) add_entry(E_MKDIR, a, NULL, NULL);
    pthread_mutex_unlock(&S.lock);
    return rc;
}

int rmdir(const char *path)
{
    load_all();
    char a[PATH_MAX];
    if (!S.on || !abspath(AT_FDCWD, path, a) || !under_root(a)) return real_rmdir(path);
    pthread_mutex_lock(&S.lock);
    int rc = real_rmdir(path);
    if (rc == 0) add_entry(E_RMDIR, a, NULL, NULL);
    pthread_mutex_unlock(&S.lock);
    return rc;
}
