/* log.h: the levelled logger every role and module writes through.
 *
 * One line per event:  TIME TAG LEVEL [vol=NAME] [req=ID] message
 *   2026-11-25T13:37:56.123Z proxy.1 INFO vol=vol0 req=42 write committed
 * TIME is UTC wall time (only for humans; nothing ever reads it back).
 * TAG names the role instance that logged ("agent", "proxy.2", "blob.3");
 * modules below the roles take the tag from their owner.
 *
 * Each line is formatted into a stack buffer and written with one write(2)
 * on an O_APPEND descriptor, so lines from several threads never interleave.
 * log_reopen() (called on SIGHUP) reopens the file for log rotation.
 * Secrets never go through here: callers log token *presence*, not value. */
#ifndef BD_LOG_H
#define BD_LOG_H

#include <stdint.h>
#include "bd.h"

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Open PATH for appending (NULL or "-" means stderr) and set the minimum
 * LEVEL.  0 or -errno; on failure logging stays on stderr. */
int log_init(const char *path, enum log_level level);
/* Reopen the log file after rotation; a no-op for stderr.  Async-signal
 * unsafe: call from the reactor, not a signal handler. */
int log_reopen(void);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* "debug", "info", "warn", "error" -> level; -EINVAL otherwise. */
int log_level_parse(const char *s, enum log_level *out);
/* Lines written at each level since start (for /metrics). */
uint64_t log_count(enum log_level level);

/* Write one line.  VOL may be NULL; REQ 0 means none. */
void log_line(enum log_level level, const char *tag, const char *vol, uint64_t req,
              const char *fmt, ...) BD_PRINTF(5, 6);

#define log_debug(tag, ...)                                                                \
    do {                                                                                   \
        if (log_get_level() <= LOG_DEBUG) log_line(LOG_DEBUG, tag, NULL, 0, __VA_ARGS__);  \
    } while (0)
#define log_info(tag, ...) log_line(LOG_INFO, tag, NULL, 0, __VA_ARGS__)
#define log_warn(tag, ...) log_line(LOG_WARN, tag, NULL, 0, __VA_ARGS__)
#define log_error(tag, ...) log_line(LOG_ERROR, tag, NULL, 0, __VA_ARGS__)

#endif
