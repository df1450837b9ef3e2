/* log.c: see log.h.
 *
 * State: the descriptor and path are globals written only by log_init()
 * and log_reopen() on the main thread; other threads only read the fd, and
 * a reopen swaps it with dup2() so a concurrent write never sees a closed
 * descriptor.
 *
 * Formatting never allocates: a line is built in a 2 KiB stack buffer by
 * a bounded appender (struct line) that stops at the end, so a long
 * message is cut, never split over two lines.  The JSON form escapes
 * what JSON requires and every control character, and always closes its
 * object, also when the message was cut. */
#include "runtime/log.h"
#include "base/util.h"

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
static _Atomic int log_fmt = LOG_FORMAT_TEXT; /* set once before the roles start */

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


int log_format_parse(const char *s, enum log_format *out)
{
    if (strcmp(s, "text") == 0) *out = LOG_FORMAT_TEXT;
    else if (strcmp(s, "json") == 0) *out = LOG_FORMAT_JSON;
    else return -EINVAL;
    return 0;
}

void log_set_format(enum log_format f)
{
    log_fmt = f;
}

enum log_format log_get_format(void)
{
    return (enum log_format)log_fmt;
}

/* A bounded appender: N never passes CAP - RESERVE, so the closing bytes
 * (JSON's "}\n", text's "\n") always fit. */
struct line {
    char *buf;
    size_t cap, n;
};
#define LINE_RESERVE 4

static void put_raw(struct line *l, const char *s, size_t len)
{
    size_t room = l->cap - LINE_RESERVE - l->n;
    if (len > room) len = room;
    memcpy(l->buf + l->n, s, len);
    l->n += len;
}

static void put_str(struct line *l, const char *s)
{
    put_raw(l, s, strlen(s));
}

static void put_fmt(struct line *l, const char *fmt, ...) BD_PRINTF(2, 3);
static void put_fmt(struct line *l, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (m > 0) put_raw(l, tmp, BD_MIN((size_t)m, sizeof(tmp) - 1));
}

/* S as text: control characters become '?' so a peer's name cannot
 * forge a line. */
static void put_text(struct line *l, const char *s)
{
    for (; *s && l->n < l->cap - LINE_RESERVE; s++)
        l->buf[l->n++] = (unsigned char)*s < 0x20 ? '?' : *s;
}

/* S as the inside of a JSON string.  An escape is written whole or not
 * at all. */
static void put_json(struct line *l, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        size_t k;
        if (c == '"' || c == '\\') k = (size_t)snprintf(esc, sizeof(esc), "\\%c", c);
        else if (c < 0x20 || c == 0x7f) k = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c);
        else esc[0] = (char)c, k = 1;
        if (l->n + k > l->cap - LINE_RESERVE) break;
        memcpy(l->buf + l->n, esc, k);
        l->n += k;
    }
}

static void put_time(struct line *l)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char t[40];
    size_t k = strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(t + k, sizeof(t) - k, ".%03ldZ", ts.tv_nsec / 1000000);
    put_str(l, t);
}

static const char *const level_lower[] = {"debug", "info", "warn", "error"};

size_t log_format_line(char *buf, size_t len, enum log_format f, enum log_level level,
                       const char *tag, const struct log_ids *ids, const char *msg)
{
    static const struct log_ids none;
    if (!ids) ids = &none;
    struct line l = {.buf = buf, .cap = len, .n = 0};
    if (len < 64) return 0;
    if (f == LOG_FORMAT_JSON) {
        put_str(&l, "{\"time\":\"");
        put_time(&l);
        put_str(&l, "\",\"tag\":\"");
        put_json(&l, tag ? tag : "-");
        put_str(&l, "\",\"level\":\"");
        put_str(&l, level_lower[level]);
        put_str(&l, "\"");
        if (ids->vol) {
            put_str(&l, ",\"vol\":\"");
            put_json(&l, ids->vol);
            put_str(&l, "\"");
        }
        if (ids->req) put_fmt(&l, ",\"req\":%llu", (unsigned long long)ids->req);
        if (ids->ship) put_fmt(&l, ",\"ship\":\"%016llx\"", (unsigned long long)ids->ship);
        if (ids->blob) put_fmt(&l, ",\"blob\":\"%016llx\"", (unsigned long long)ids->blob);
        if (ids->raft_index)
            put_fmt(&l, ",\"raft_index\":%llu", (unsigned long long)ids->raft_index);
        put_str(&l, ",\"msg\":\"");
        put_json(&l, msg);
        /* The reserve always holds the closing quote, brace and newline. */
        memcpy(l.buf + l.n, "\"}\n", 3);
        l.n += 3;
        return l.n;
    }
    put_time(&l);
    put_str(&l, " ");
    put_text(&l, tag ? tag : "-");
    put_str(&l, " ");
    put_str(&l, level_names[level]);
    if (ids->vol) {
        put_str(&l, " vol=");
        put_text(&l, ids->vol);
    }
    if (ids->req) put_fmt(&l, " req=%llu", (unsigned long long)ids->req);
    if (ids->ship) put_fmt(&l, " ship=%016llx", (unsigned long long)ids->ship);
    if (ids->blob) put_fmt(&l, " blob=%016llx", (unsigned long long)ids->blob);
    if (ids->raft_index) put_fmt(&l, " raft_index=%llu", (unsigned long long)ids->raft_index);
    put_str(&l, " ");
    put_text(&l, msg);
    l.buf[l.n++] = '\n';
    return l.n;
}

static void vlog(enum log_level level, const char *tag, const struct log_ids *ids,
                 const char *fmt, va_list ap)
{
    char msg[1536], line[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = log_format_line(line, sizeof(line), (enum log_format)log_fmt, level, tag, ids, msg);
    log_counts[level]++;
    ssize_t w = write(log_fd, line, n);
    (void)w; /* nowhere left to report a failed log write */
}

void log_with(enum log_level level, const char *tag, const struct log_ids *ids, const char *fmt,
              ...)
{
    if ((int)level < log_min) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, tag, ids, fmt, ap);
    va_end(ap);
}

void log_line(enum log_level level, const char *tag, const char *vol, uint64_t req,
              const char *fmt, ...)
{
    if ((int)level < log_min) return;
    struct log_ids ids = {.vol = vol, .req = req};
    va_list ap;
    va_start(ap, fmt);
    vlog(level, tag, &ids, fmt, ap);
    va_end(ap);
}
