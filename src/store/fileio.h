/* fileio.h: the file I/O vtable every src/store module writes through.
 *
 * Why a vtable: crash-consistency tests (CONTRACT.md row 7) need to see
 * every pwrite, fsync, rename, ftruncate and unlink in order, and to build
 * the file states a power cut could leave; fault tests (row 12) need fsync
 * to fail with EIO and writes with ENOSPC on demand.  Production uses
 * fileio_posix, a direct pass-through.
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

struct fileio;

struct fileio_ops {
    int (*open)(struct fileio *f, const char *path, int flags, int mode); /* fd or -errno */
    int (*close)(struct fileio *f, int fd);
    ssize_t (*pread)(struct fileio *f, int fd, void *buf, size_t len, uint64_t off);
    ssize_t (*pwritev)(struct fileio *f, int fd, const struct iovec *iov, int n, uint64_t off);
    int (*fdatasync)(struct fileio *f, int fd);
    int (*ftruncate)(struct fileio *f, int fd, uint64_t len);
    int (*rename)(struct fileio *f, const char *from, const char *to);
    int (*unlink)(struct fileio *f, const char *path);
    int (*fsync_dir)(struct fileio *f, const char *dir);
    int (*size)(struct fileio *f, int fd, uint64_t *size);
};

struct fileio {
    const struct fileio_ops *ops;
    void *impl;
};

/* Direct system calls. */
extern struct fileio fileio_posix;

/* A wrapper over BASE that injects faults (test builds and fault tests):
 * the Nth fdatasync (1-based, counting all files) and every later one fail
 * with EIO if fsync_eio_after is N > 0; writes fail with ENOSPC while
 * enospc is set.  Returns owned (fileio_faulty_free), or NULL. */
struct fileio_faults {
    uint64_t fsync_eio_after;
    int enospc;               /* set and cleared by tests at run time */
};
struct fileio *fileio_faulty_new(struct fileio *base, struct fileio_faults *faults);
void fileio_faulty_free(struct fileio *f);

/* Convenience wrappers: loop over short transfers; 0 or -errno
 * (-ENODATA if a read hits end of file). */
int fileio_pread_full(struct fileio *f, int fd, void *buf, size_t len, uint64_t off);
int fileio_pwrite_full(struct fileio *f, int fd, const void *buf, size_t len, uint64_t off);
int fileio_pwritev_full(struct fileio *f, int fd, struct iovec *iov, int n, uint64_t off);

#endif
