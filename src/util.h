/* util.h: small helpers with no home of their own: clocks, sizes,
 * little-endian byte access, checksums, addresses and whole-buffer I/O.
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

/* ---- little-endian access ----------------------------------------------
 * For on-disk records (segments, journal) and anything else that must
 * never be read by casting a struct.  Callers check bounds first. */
static inline void util_put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void util_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void util_put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t util_get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t util_get_le32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static inline uint64_t util_get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
/* Big-endian, for the NBD protocol. */
static inline void util_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void util_put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}
static inline void util_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}
static inline uint16_t util_get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t util_get_be32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = (v << 8) | p[i];
    return v;
}
static inline uint64_t util_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

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
int util_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
int util_write_full(int fd, const void *buf, size_t len);
int util_read_full(int fd, void *buf, size_t len);
/* fsync the directory DIR so a create/rename/unlink in it is durable. */
int util_fsync_dir(const char *dir);
/* mkdir -p with MODE; 0 or -errno. */
int util_mkdir_p(const char *path, int mode);
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
