/* fileio.h: the file I/O vtable every src/store module writes through.
 *
 * Why a vtable: crash-consistency tests (CONTRACT.md row 7) need to see
 * every pwrite, fsync, rename, ftruncate and unlink in order, and to build
 * the file states a power cut could leave; fault tests (row 12) need fsync
 * to fail with EIO and writes with ENOSPC on demand.  Production uses
 * fio_posix, a direct pass-through.
 *
 * Every function returns 0 / a byte count, or -errno; none retries an
 * fsync error (C15: after a failed fsync the file's state is unknown and
 * the owner must fail stop).  Implementations are thread-safe as far as
 * the underlying syscalls are. */
#ifndef BD_FILEIO_H
#define BD_FILEIO_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct fio;

struct fio_ops {
    int (*open)(struct fio *f, const char *path, int flags, int mode); /* fd or -errno */
    int (*close)(struct fio *f, int fd);
    ssize_t (*pread)(struct fio *f, int fd, void *buf, size_t len, uint64_t off);
    ssize_t (*pwritev)(struct fio *f, int fd, const struct iovec *iov, int n, uint64_t off);
    int (*fdatasync)(struct fio *f, int fd);
    int (*ftruncate)(struct fio *f, int fd, uint64_t len);
    int (*rename)(struct fio *f, const char *from, const char *to);
    int (*unlink)(struct fio *f, const char *path);
    int (*fsync_dir)(struct fio *f, const char *dir);
    int (*size)(struct fio *f, int fd, uint64_t *size);
};

struct fio {
    const struct fio_ops *ops;
    void *impl;
};

/* Direct system calls. */
extern struct fio fio_posix;

/* A wrapper over BASE that injects faults (test builds and fault tests):
 * the Nth fdatasync (1-based, counting all files) and every later one fail
 * with EIO if fsync_eio_after is N > 0; writes fail with ENOSPC while
 * enospc is set.  Returns owned (fio_faulty_free), or NULL. */
struct fio_faults {
    uint64_t fsync_eio_after;
    int enospc;               /* set and cleared by tests at run time */
};
struct fio *fio_faulty_new(struct fio *base, struct fio_faults *faults);
void fio_faulty_free(struct fio *f);

/* Convenience wrappers: loop over short transfers; 0 or -errno
 * (-ENODATA if a read hits end of file). */
int fio_pread_full(struct fio *f, int fd, void *buf, size_t len, uint64_t off);
int fio_pwrite_full(struct fio *f, int fd, const void *buf, size_t len, uint64_t off);
int fio_pwritev_full(struct fio *f, int fd, struct iovec *iov, int n, uint64_t off);

#endif
