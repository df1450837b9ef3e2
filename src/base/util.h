/* util.h: small helpers with no home of their own: clocks, sizes,
 * checksums, addresses and whole-buffer I/O.  Byte layouts are bytes.h's.
 *
 * Nothing here allocates unless it says so, and nothing keeps state. */
#ifndef BD_UTIL_H
#define BD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

/* ---- clocks ------------------------------------------------------------
 * Every timeout and lease uses CLOCK_MONOTONIC (CONTRACT.md row 11: no
 * behaviour may depend on wall time).  util_wall_ms() is for log lines. */
uint64_t util_mono_ns(void);
uint64_t util_mono_ms(void);
uint64_t util_wall_ms(void);

/* ---- checksums ---------------------------------------------------------
 * XXH3-64 is the one data checksum of blockd (DESIGN.md §3): computed by
 * the agent, carried on the wire, stored with every blob. */
uint64_t util_xxh3(const void *buf, size_t len);
/* XXH3-64 over the concatenation of N iovecs, without copying. */
struct iovec;
uint64_t util_xxh3_iov(const struct iovec *iov, int n);
/* XXH3-64 of LEN zero bytes; cached for lengths up to 1 MiB. */
uint64_t util_xxh3_zeroes(size_t len);

/* ---- sizes and numbers -------------------------------------------------
 * Parse "4096", "64K", "10G", "1T" (binary units, optional "iB"/"B") into
 * bytes.  Rejects negatives, fractions, overflow and trailing garbage.
 * Returns 0 or -EINVAL / -ERANGE. */
int util_parse_size(const char *s, uint64_t *out);
/* Format BYTES as "10 GiB" style into BUF (at least 32 bytes). */
const char *util_fmt_size(uint64_t bytes, char *buf, size_t buflen);
/* Parse a base-10 unsigned integer, the whole string.  0 or -EINVAL/-ERANGE. */
int util_parse_u64(const char *s, uint64_t *out);

/* ---- addresses ---------------------------------------------------------
 * "host:port" or "[v6]:port" or "unix:/path".  Resolves numeric hosts and
 * "localhost" only (no DNS on the data path).  Returns 0 or -EINVAL. */
int util_parse_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len);
/* Render SA as "host:port" into BUF. */
const char *util_fmt_addr(const struct sockaddr *sa, char *buf, size_t buflen);

/* ---- whole-buffer file I/O ---------------------------------------------
 * Loop over short reads/writes and EINTR.  Return 0, or -errno; read_full
 * returns -ENODATA if the file ends first. */
int util_pread_full(int fd, void *buf, size_t len, uint64_t off);
int util_write_full(int fd, const void *buf, size_t len);
/* fsync the directory DIR so a create/rename/unlink in it is durable. */
int util_fsync_dir(const char *dir);
/* mkdir -p with MODE; every directory it creates is made durable (its
 * parent fsynced).  0 or -errno. */
int util_mkdir_p(const char *path, int mode);
/* A file holding a secret (a key, a token, a PSK) must be a regular file
 * owned by the effective user and closed to group and others (nbdkit's
 * rule for key files).  0, or -errno with one line for people in WHY. */
int util_check_private_file(const char *path, char *why, size_t cap);
/* Read a whole small file (at most MAX bytes) into a NUL-terminated buffer
 * returned owned (free()).  0, -errno, or -EFBIG. */
int util_read_file(const char *path, size_t max, char **out, size_t *lenp);
/* Write BUF to PATH atomically: tmp file, fsync, rename, fsync dir. */
int util_write_file_atomic(const char *path, const void *buf, size_t len, int mode);

/* ---- misc --------------------------------------------------------------- */
/* Constant-time comparison of two byte strings (bearer tokens). */
bool util_ct_equal(const void *a, size_t alen, const void *b, size_t blen);
/* splitmix64: a seeded generator for tests and jitter. */
uint64_t util_rand64(uint64_t *state);
/* A seed from the OS (getrandom), for production randomness. */
uint64_t util_seed(void);
/* Copy at most DSTLEN-1 bytes and NUL-terminate; returns strlen(src). */
size_t util_strlcpy(char *dst, const char *src, size_t dstlen);

#endif
