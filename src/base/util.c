/* util.c: see util.h.  Each helper is small, stateless and total: every
 * input either produces a result or a negative code, never a crash. */
#include "base/util.h"
#include "base/bd.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

uint64_t util_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t util_mono_ms(void)
{
    return util_mono_ns() / 1000000ull;
}

uint64_t util_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

uint64_t util_xxh3(const void *buf, size_t len)
{
    return XXH3_64bits(buf, len);
}

uint64_t util_xxh3_iov(const struct iovec *iov, int n)
{
    if (n == 1) return XXH3_64bits(iov[0].iov_base, iov[0].iov_len);
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    for (int i = 0; i < n; i++) XXH3_64bits_update(&st, iov[i].iov_base, iov[i].iov_len);
    return XXH3_64bits_digest(&st);
}

uint64_t util_xxh3_zeroes(size_t len)
{
    /* Zero ranges are common (holes in reads); hashing them streams from a
     * static zero page instead of allocating. */
    static const uint8_t zero[4096];
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    while (len > 0) {
        size_t n = len < sizeof(zero) ? len : sizeof(zero);
        XXH3_64bits_update(&st, zero, n);
        len -= n;
    }
    return XXH3_64bits_digest(&st);
}

int util_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s) return -EINVAL;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return -EINVAL;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int util_parse_size(const char *s, uint64_t *out)
{
    if (!s) return -EINVAL;
    const char *p = s;
    if (*p < '0' || *p > '9') return -EINVAL;
    uint64_t v = 0;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return -ERANGE;
        v = v * 10 + d;
        p++;
    }
    unsigned shift = 0;
    switch (*p) {
    case 'k': case 'K': shift = 10; p++; break;
    case 'm': case 'M': shift = 20; p++; break;
    case 'g': case 'G': shift = 30; p++; break;
    case 't': case 'T': shift = 40; p++; break;
    case 'p': case 'P': shift = 50; p++; break;
    default: break;
    }
    if (shift && (*p == 'i') && p[1] == 'B') p += 2;
    else if (*p == 'B') p++;
    if (*p) return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift)) return -ERANGE;
    *out = v << shift;
    return 0;
}

const char *util_fmt_size(uint64_t bytes, char *buf, size_t buflen)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    unsigned u = 0;
    uint64_t whole = bytes;
    while (whole >= 1024 && u + 1 < BD_ARRAY_SIZE(units) && whole % 1024 == 0) {
        whole /= 1024;
        u++;
    }
    if (whole >= 10240 && u + 1 < BD_ARRAY_SIZE(units)) {
        /* Not an exact multiple: print one decimal of the next unit up. */
        double d = (double)bytes;
        unsigned k = 0;
        while (d >= 1024 && k + 1 < BD_ARRAY_SIZE(units)) {
            d /= 1024;
            k++;
        }
        snprintf(buf, buflen, "%.1f %s", d, units[k]);
        return buf;
    }
    snprintf(buf, buflen, "%llu %s", (unsigned long long)whole, units[u]);
    return buf;
}

int util_parse_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (!text || !*text) return -EINVAL;
    if (strncmp(text, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        const char *path = text + 5;
        if (!*path || strlen(path) >= sizeof(un->sun_path)) return -EINVAL;
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, path, strlen(path) + 1);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
        return 0;
    }
    char host[256];
    const char *colon;
    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (!end || end[1] != ':' || (size_t)(end - text - 1) >= sizeof(host)) return -EINVAL;
        memcpy(host, text + 1, (size_t)(end - text - 1));
        host[end - text - 1] = 0;
        colon = end + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon || (size_t)(colon - text) >= sizeof(host)) return -EINVAL;
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = 0;
    }
    uint64_t port;
    if (util_parse_u64(colon + 1, &port) < 0 || port == 0 || port > 65535) return -EINVAL;
    if (strcmp(host, "localhost") == 0 || host[0] == 0) util_strlcpy(host, "127.0.0.1", sizeof(host));
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof(*in4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*in6);
        return 0;
    }
    return -EINVAL;
}

const char *util_fmt_addr(const struct sockaddr *sa, char *buf, size_t buflen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(buf, buflen, "%s:%u", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(buf, buflen, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        /* sun_path need not end in a NUL (a full-length path, or a
         * socketpair's peer, whose path is never written): bound the read. */
        snprintf(buf, buflen, "unix:%.*s", (int)sizeof(un->sun_path), un->sun_path);
    } else {
        snprintf(buf, buflen, "?");
    }
    return buf;
}

int util_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) return -ENODATA;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int util_write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int util_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* Create one directory and make its entry durable: a directory that a
 * power cut can take back would take with it everything fsynced inside
 * (a first Raft vote, a journal segment). */
static int mkdir_durable(char *path, int mode)
{
    if (mkdir(path, (mode_t)mode) < 0) return errno == EEXIST ? 0 : -errno;
    char *slash = strrchr(path, '/');
    if (!slash) return util_fsync_dir(".");
    if (slash == path) return util_fsync_dir("/");
    *slash = 0;
    int rc = util_fsync_dir(path);
    *slash = '/';
    return rc;
}

int util_mkdir_p(const char *path, int mode)
{
    char tmp[4096];
    if (util_strlcpy(tmp, path, sizeof(tmp)) >= sizeof(tmp)) return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        int rc = mkdir_durable(tmp, mode);
        *p = '/';
        if (rc < 0) return rc;
    }
    int rc = mkdir_durable(tmp, mode);
    if (rc < 0) return rc;
    struct stat st;
    if (stat(tmp, &st) < 0) return -errno;
    if (!S_ISDIR(st.st_mode)) return -ENOTDIR;
    return 0;
}

int util_check_private_file(const char *path, char *why, size_t cap)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        int e = errno;
        snprintf(why, cap, "%s: %s", path, strerror(e));
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, cap, "%s is not a regular file", path);
        return -EINVAL;
    }
    if (st.st_uid != geteuid()) {
        snprintf(why, cap, "%s is owned by uid %u, not by the user running blockd (uid %u); "
                 "chown it", path, (unsigned)st.st_uid, (unsigned)geteuid());
        return -EPERM;
    }
    if (st.st_mode & 077) {
        snprintf(why, cap, "%s is readable by group or others (mode %03o); chmod 0600 it", path,
                 (unsigned)(st.st_mode & 0777));
        return -EPERM;
    }
    return 0;
}

int util_read_file(const char *path, size_t max, char **out, size_t *lenp)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return -EISDIR;
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return -EFBIG;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = -errno;
            free(buf);
            close(fd);
            return e;
        }
        if (n == 0) break;
        got += (size_t)n;
        if (got == (size_t)st.st_size) break;
    }
    close(fd);
    buf[got] = 0;
    *out = buf;
    if (lenp) *lenp = got;
    return 0;
}

int util_write_file_atomic(const char *path, const void *buf, size_t len, int mode)
{
    char tmp[4096], dir[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) return -ENAMETOOLONG;
    util_strlcpy(dir, path, sizeof(dir));
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else util_strlcpy(dir, ".", sizeof(dir));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return -errno;
    /* MODE exactly, whatever the umask or a stale tmp file had. */
    int rc = fchmod(fd, (mode_t)mode) < 0 ? -errno : 0;
    if (rc == 0) rc = util_write_full(fd, buf, len);
    if (rc == 0 && fsync(fd) < 0) rc = -errno;
    if (close(fd) < 0 && rc == 0) rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0) rc = -errno;
    if (rc == 0) rc = util_fsync_dir(dir);
    if (rc < 0) unlink(tmp);
    return rc;
}

bool util_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    /* Always walk the longer length so timing says nothing about where the
     * first difference is; the length difference itself is folded in. */
    const volatile uint8_t *x = a, *y = b;
    size_t n = alen > blen ? alen : blen;
    uint8_t diff = (uint8_t)(alen != blen);
    for (size_t i = 0; i < n; i++) {
        uint8_t cx = i < alen ? x[i] : 0;
        uint8_t cy = i < blen ? y[i] : 0;
        diff |= (uint8_t)(cx ^ cy);
    }
    return diff == 0;
}

uint64_t util_rand64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t util_seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof(s), 0) != (ssize_t)sizeof(s)) s = util_mono_ns() ^ (uint64_t)getpid();
    return s;
}

size_t util_strlcpy(char *dst, const char *src, size_t dstlen)
{
    size_t n = strlen(src);
    if (dstlen) {
        size_t c = n < dstlen - 1 ? n : dstlen - 1;
        memcpy(dst, src, c);
        dst[c] = 0;
    }
    return n;
}
