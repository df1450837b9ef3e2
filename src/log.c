/* log.c: see log.h.
 *
 * State: the descriptor and path are globals written only by log_init()
 * and log_reopen() on the main thread; other threads only read the fd, and
 * a reopen swaps it with dup2() so a concurrent write never sees a closed
 * descriptor. */
#include "log.h"
#include "util.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_fd = 2;                 /* where lines go; 2 = stderr */
static char log_path[1024];            /* empty for stderr */
static _Atomic int log_min = LOG_INFO; /* lines below this level are dropped */
static _Atomic uint64_t log_counts[4]; /* lines written per level */

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

int log_init(const char *path, enum log_level level)
{
    log_min = level;
    if (!path || !*path || strcmp(path, "-") == 0) {
        log_path[0] = 0;
        log_fd = 2;
        return 0;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) return -errno;
    util_strlcpy(log_path, path, sizeof(log_path));
    if (log_fd != 2) close(log_fd);
    log_fd = fd;
    return 0;
}

int log_reopen(void)
{
    if (!log_path[0]) return 0;
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) return -errno;
    /* dup2 replaces the descriptor atomically: a writer on another thread
     * writes either to the old file or to the new one. */
    if (dup2(fd, log_fd) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    close(fd);
    return 0;
}

void log_set_level(enum log_level level)
{
    log_min = level;
}

enum log_level log_get_level(void)
{
    return (enum log_level)log_min;
}

int log_level_parse(const char *s, enum log_level *out)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (unsigned i = 0; i < BD_ARRAY_SIZE(names); i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    return -EINVAL;
}

uint64_t log_count(enum log_level level)
{
    return log_counts[level];
}

void log_line(enum log_level level, const char *tag, const char *vol, uint64_t req,
              const char *fmt, ...)
{
    if ((int)level < log_min) return;
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s", ts.tv_nsec / 1000000,
                          tag ? tag : "-", level_names[level]);
    if (vol && n < sizeof(line)) n += (size_t)snprintf(line + n, sizeof(line) - n, " vol=%s", vol);
    if (req && n < sizeof(line))
        n += (size_t)snprintf(line + n, sizeof(line) - n, " req=%llu", (unsigned long long)req);
    if (n < sizeof(line) - 1) line[n++] = ' ';
    if (n < sizeof(line)) {
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        if (m > 0) n += (size_t)m;
    }
    if (n > sizeof(line) - 2) n = sizeof(line) - 2; /* truncated: still one line */
    /* Control characters from peers (names, paths) must not forge lines. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)line[i] < 0x20) line[i] = '?';
    line[n++] = '\n';
    log_counts[level]++;
    ssize_t w = write(log_fd, line, n);
    (void)w; /* nowhere left to report a failed log write */
}
