/* sd_notify.h: telling systemd how a Type=notify service is doing,
 * without libsystemd (sd_notify(3) is a datagram, nothing more).
 *
 * systemd passes a service the address of its notification socket in
 * $NOTIFY_SOCKET: a path, or an abstract socket name written with a leading
 * '@'.  A notification is one datagram of newline-separated VAR=VALUE
 * lines: READY=1 (start-up is over, the service serves), STATUS=text (shown
 * by systemctl status), STOPPING=1 (the stop has begun), WATCHDOG=1 (alive;
 * expected every WATCHDOG_USEC at least once the watchdog is armed, which
 * systemd does when start-up completes).  Outside systemd the variable is
 * unset and every call here does nothing, so callers never check.
 *
 * All calls are reactor-thread or single-thread only (the environment is
 * read, never written). */
#ifndef BD_SD_NOTIFY_H
#define BD_SD_NOTIFY_H

#include <stdint.h>

#include "base/bd.h"
#include "runtime/reactor.h"

/* Send STATE (borrowed; "READY=1", "STATUS=...", lines joined by '\n') to
 * $NOTIFY_SOCKET.  1 if sent, 0 if there is no $NOTIFY_SOCKET, -EINVAL if
 * it is not an absolute path or an '@' name that fits a sockaddr_un,
 * -errno if the socket or the send failed (the service goes on: systemd
 * then times the start out, which says more than any log line here). */
int sd_notify_send(const char *state);

/* Format and send like sd_notify_send.  The text is cut at 1023 bytes. */
int sd_notify_sendf(const char *fmt, ...) BD_PRINTF(1, 2);

/* The watchdog interval systemd expects of this process, in microseconds:
 * $WATCHDOG_USEC when it is a positive integer and $WATCHDOG_PID is unset
 * or this process's pid; 0 otherwise (no watchdog, or one meant for
 * another process). */
uint64_t sd_notify_watchdog_usec(void);

struct sd_notify_watchdog;

/* Send WATCHDOG=1 now and then every USEC/2 from a timer on RX, so a stuck
 * event loop stops the pings and systemd restarts the service.  0 with
 * *OUT owned (sd_notify_watchdog_free), -EINVAL if USEC is 0, -ENOMEM. */
int sd_notify_watchdog_start(struct reactor *rx, uint64_t usec, struct sd_notify_watchdog **out);

/* Stop the pings and free W (NULL is a no-op).  Reactor thread. */
void sd_notify_watchdog_free(struct sd_notify_watchdog *w);

#endif
