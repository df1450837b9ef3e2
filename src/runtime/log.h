/* log.h: the levelled logger every role and module writes through.
 *
 * One line per event.  Two formats, chosen per process (config key
 * log.format, or blockd --log-format):
 *
 * text (the default), for people:
 *   TIME TAG LEVEL [vol=NAME] [req=ID] [ship=ID] [blob=ID] [raft_index=N] message
 *   2026-11-25T13:37:56.123Z proxy.1 DEBUG vol=vol0 ship=9f3c0a17d2e4b811 raft_index=42 committed
 * json, for log shippers: one JSON object per line with the same fields,
 *   {"time":"2026-11-25T13:37:56.123Z","tag":"proxy.1","level":"debug",
 *    "vol":"vol0","ship":"9f3c0a17d2e4b811","raft_index":42,"msg":"committed"}
 *   (absent ids are left out; ship and blob are 16 hex digits, strings so
 *   that no shipper rounds them to a double).
 *
 * TIME is UTC wall time (only for humans; nothing ever reads it back).
 * TAG names the role instance that logged ("agent", "proxy.2", "blob.3");
 * modules below the roles take the tag from their owner.
 *
 * The ids let one write be followed across processes (README "Logs"):
 *   vol         the volume's name;
 *   req         a request id local to one connection or API call;
 *   ship        a write's trace id: wire_vol_write_trace_id() of its
 *               VOL_WRITE, which the agent and the proxy both compute from
 *               the request (no extra bytes on the wire);
 *   blob        a blob id: what the proxy puts and the blob servers store;
 *   raft_index  the Raft entry that committed the event.
 *
 * Each line is formatted into a stack buffer and written with one write(2)
 * on an O_APPEND descriptor, so lines from several threads never interleave.
 * log_reopen() (called on SIGHUP) reopens the file for log rotation.
 * Secrets never go through here: callers log token *presence*, not value.
 * Control characters in any field become '?' (text) or JSON escapes
 * (json): a name from a peer can never forge a line. */
#ifndef BD_LOG_H
#define BD_LOG_H

#include <stdint.h>
#include "base/bd.h"

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

/* The ids a line may carry; zero (NULL for vol) means absent. */
struct log_ids {
    const char *vol;
    uint64_t req;
    uint64_t ship;
    uint64_t blob;
    uint64_t raft_index;
};

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
/* Set before the roles start (blockd.c); text until then. */
void log_set_format(enum log_format f);
enum log_format log_get_format(void);
/* "text", "json" -> format; -EINVAL otherwise. */
int log_format_parse(const char *s, enum log_format *out);

/* Write one line.  IDS may be NULL (no ids). */
void log_with(enum log_level level, const char *tag, const struct log_ids *ids, const char *fmt,
             ...) BD_PRINTF(4, 5);
/* Write one line.  VOL may be NULL; REQ 0 means none. */
void log_line(enum log_level level, const char *tag, const char *vol, uint64_t req,
              const char *fmt, ...) BD_PRINTF(5, 6);

/* Format one line as log_with would write it (with its newline) into BUF
 * of LEN bytes, for tests; returns its length. */
size_t log_format_line(char *buf, size_t len, enum log_format f, enum log_level level,
                       const char *tag, const struct log_ids *ids, const char *msg);

#define log_debug(tag, ...)                                                                \
    do {                                                                                   \
        if (log_get_level() <= LOG_DEBUG) log_line(LOG_DEBUG, tag, NULL, 0, __VA_ARGS__);  \
    } while (0)
/* A debug line with ids; the arguments are not evaluated above debug. */
#define log_debug_ids(tag, ids, ...)                                                       \
    do {                                                                                   \
        if (log_get_level() <= LOG_DEBUG) log_with(LOG_DEBUG, tag, ids, __VA_ARGS__);       \
    } while (0)
#define log_info(tag, ...) log_line(LOG_INFO, tag, NULL, 0, __VA_ARGS__)
#define log_warn(tag, ...) log_line(LOG_WARN, tag, NULL, 0, __VA_ARGS__)
#define log_error(tag, ...) log_line(LOG_ERROR, tag, NULL, 0, __VA_ARGS__)

#endif
