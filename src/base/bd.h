/* bd.h: definitions every blockd module shares.
 *
 * Error convention (STYLE.md §5): functions return 0 or a negative code.
 * Negative errno values (-EIO, -EPROTO, ...) keep their usual meaning;
 * conditions that errno cannot name get a code in the BD_E* range below,
 * which starts far above any errno so the two can never collide.
 * bd_strerror() names both.
 *
 * Checks: assert() only for what the code itself guarantees.  BD_ALWAYS(x)
 * and BD_NEVER(x) mark "believed impossible, recover simply": they abort in
 * debug builds and evaluate to the condition in release builds, so the
 * caller's recovery path still runs.  Bytes from a socket or a disk are
 * never asserted on; they are validated and rejected with a code. */
#ifndef BD_H
#define BD_H

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define BD_VERSION "0.1.0"

/* Domain error codes.  Returned negated, like errno values. */
enum bd_err {
    BD_EFIRST = 10000,
    BD_ECSUM,      /* a checksum did not match the bytes it covers */
    BD_EFENCED,    /* stale attach generation or partition epoch */
    BD_ENOTLEADER, /* this proxy is not the Raft leader */
    BD_ENOLEADER,  /* no Raft leader is known right now */
    BD_ECORRUPT,   /* on-disk bytes failed validation */
    BD_EIMMUTABLE, /* a blob id was reused with different bytes */
    BD_EFAILED,    /* a file failed stop after an fsync error (C15) */
    BD_ECONFIG,    /* a configuration file was rejected */
    BD_ELAST
};

/* Name any code returned by a blockd function: -errno or -BD_E*.  The
 * returned string is static. */
const char *bd_strerror(int code);

#define BD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define BD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define BD_MAX(a, b) ((a) > (b) ? (a) : (b))
#define BD_UNUSED __attribute__((unused))
#define BD_LIKELY(x) __builtin_expect(!!(x), 1)
#define BD_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define BD_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define BD_NONNULL(...) __attribute__((nonnull(__VA_ARGS__)))
#define BD_WARN_UNUSED __attribute__((warn_unused_result))

#define bd_container_of(ptr, type, member)                                             \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#ifdef NDEBUG
#define BD_ALWAYS(x) (!!(x))
#define BD_NEVER(x) (!!(x))
#else
#define BD_ALWAYS(x) ((x) ? 1 : (assert(0 && #x), 0))
#define BD_NEVER(x) ((x) ? (assert(0 && #x), 1) : 0)
#endif

/* The unit the NBD export advertises and every index extent is aligned to. */
#define BD_BLOCK_SIZE 4096u

#endif
