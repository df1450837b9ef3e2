/* fileio.c: the POSIX implementation of fileio.h and the fault wrapper. */
#include "store/fileio.h"
#include "base/bd.h"
#include "base/util.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int px_open(struct fileio *f, const char *path, int flags, int mode)
{
    (void)f;
    int fd = open(path, flags | O_CLOEXEC, mode);
    return fd < 0 ? -errno : fd;
}
static int px_close(struct fileio *f, int fd)
{
    (void)f;
    return close(fd) < 0 ? -errno : 0;
}
static ssize_t px_pread(struct fileio *f, int fd, void *buf, size_t len, uint64_t off)
{
    (void)f;
    ssize_t n;
    do n = pread(fd, buf, len, (off_t)off);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}
static ssize_t px_pwritev(struct fileio *f, int fd, const struct iovec *iov, int cnt, uint64_t off)
{
    (void)f;
    ssize_t n;
    do n = pwritev(fd, iov, cnt, (off_t)off);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}
static int px_fdatasync(struct fileio *f, int fd)
{
    (void)f;
    /* Never retried on error: fsyncgate.  The caller fails stop. */
    return fdatasync(fd) < 0 ? -errno : 0;
}
static int px_ftruncate(struct fileio *f, int fd, uint64_t len)
{
    (void)f;
    return ftruncate(fd, (off_t)len) < 0 ? -errno : 0;
}
static int px_rename(struct fileio *f, const char *from, const char *to)
{
    (void)f;
    return rename(from, to) < 0 ? -errno : 0;
}
static int px_unlink(struct fileio *f, const char *path)
{
    (void)f;
    return unlink(path) < 0 ? -errno : 0;
}
static int px_fsync_dir(struct fileio *f, const char *dir)
{
    (void)f;
    return util_fsync_dir(dir);
}
static int px_size(struct fileio *f, int fd, uint64_t *size)
{
    (void)f;
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

static const struct fileio_ops posix_ops = {
    .open = px_open, .close = px_close, .pread = px_pread, .pwritev = px_pwritev,
    .fdatasync = px_fdatasync, .ftruncate = px_ftruncate, .rename = px_rename,
    .unlink = px_unlink, .fsync_dir = px_fsync_dir, .size = px_size,
};

struct fileio fileio_posix = {.ops = &posix_ops, .impl = NULL};

/* ---- fault wrapper -------------------------------------------------------- */

struct faulty {
    struct fileio self;
    struct fileio *base;
    struct fileio_faults *faults;
    _Atomic uint64_t syncs;
};

static struct faulty *F(struct fileio *f)
{
    return f->impl;
}
static int ft_open(struct fileio *f, const char *p, int fl, int m)
{
    return F(f)->base->ops->open(F(f)->base, p, fl, m);
}
static int ft_close(struct fileio *f, int fd)
{
    return F(f)->base->ops->close(F(f)->base, fd);
}
static ssize_t ft_pread(struct fileio *f, int fd, void *b, size_t l, uint64_t o)
{
    return F(f)->base->ops->pread(F(f)->base, fd, b, l, o);
}
static ssize_t ft_pwritev(struct fileio *f, int fd, const struct iovec *iov, int n, uint64_t o)
{
    if (F(f)->faults->enospc) return -ENOSPC;
    return F(f)->base->ops->pwritev(F(f)->base, fd, iov, n, o);
}
static int ft_fdatasync(struct fileio *f, int fd)
{
    uint64_t n = ++F(f)->syncs;
    uint64_t after = F(f)->faults->fsync_eio_after;
    if (after && n >= after) return -EIO;
    return F(f)->base->ops->fdatasync(F(f)->base, fd);
}
static int ft_ftruncate(struct fileio *f, int fd, uint64_t l)
{
    return F(f)->base->ops->ftruncate(F(f)->base, fd, l);
}
static int ft_rename(struct fileio *f, const char *a, const char *b)
{
    return F(f)->base->ops->rename(F(f)->base, a, b);
}
static int ft_unlink(struct fileio *f, const char *p)
{
    return F(f)->base->ops->unlink(F(f)->base, p);
}
static int ft_fsync_dir(struct fileio *f, const char *d)
{
    uint64_t n = ++F(f)->syncs;
    uint64_t after = F(f)->faults->fsync_eio_after;
    if (after && n >= after) return -EIO;
    return F(f)->base->ops->fsync_dir(F(f)->base, d);
}
static int ft_size(struct fileio *f, int fd, uint64_t *s)
{
    return F(f)->base->ops->size(F(f)->base, fd, s);
}

static const struct fileio_ops faulty_ops = {
    .open = ft_open, .close = ft_close, .pread = ft_pread, .pwritev = ft_pwritev,
    .fdatasync = ft_fdatasync, .ftruncate = ft_ftruncate, .rename = ft_rename,
    .unlink = ft_unlink, .fsync_dir = ft_fsync_dir, .size = ft_size,
};

struct fileio *fileio_faulty_new(struct fileio *base, struct fileio_faults *faults)
{
    struct faulty *ft = calloc(1, sizeof(*ft));
    if (!ft) return NULL;
    ft->self.ops = &faulty_ops;
    ft->self.impl = ft;
    ft->base = base;
    ft->faults = faults;
    return &ft->self;
}

void fileio_faulty_free(struct fileio *f)
{
    if (f) free(f->impl);
}

/* ---- helpers -------------------------------------------------------------- */

int fileio_pread_full(struct fileio *f, int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = f->ops->pread(f, fd, p, len, off);
        if (n < 0) return (int)n;
        if (n == 0) return -ENODATA;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int fileio_pwrite_full(struct fileio *f, int fd, const void *buf, size_t len, uint64_t off)
{
    struct iovec iov = {(void *)buf, len};
    return fileio_pwritev_full(f, fd, &iov, 1, off);
}

int fileio_pwritev_full(struct fileio *f, int fd, struct iovec *iov, int n, uint64_t off)
{
    /* Advances IOV in place past what was written. */
    while (n > 0) {
        if (iov->iov_len == 0) {
            iov++;
            n--;
            continue;
        }
        ssize_t w = f->ops->pwritev(f, fd, iov, n, off);
        if (w < 0) return (int)w;
        if (w == 0) return -EIO;
        off += (uint64_t)w;
        while (w > 0 && n > 0) {
            size_t take = (size_t)w < iov->iov_len ? (size_t)w : iov->iov_len;
            if (take) iov->iov_base = (uint8_t *)iov->iov_base + take; /* never NULL + 0 */
            iov->iov_len -= take;
            w -= (ssize_t)take;
            if (iov->iov_len == 0) {
                iov++;
                n--;
            }
        }
    }
    return 0;
}
