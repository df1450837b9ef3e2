/* agent_nbd.h: the agent's NBD server (fixed newstyle) on the reactor.
 *
 * Serves the volumes of one `struct agent_vols` (agent_vol.h) to NBD
 * clients over TCP and a Unix socket: qemu, nbdcopy, nbdinfo, fio's nbd
 * engine, the kernel's nbd-client.  The protocol's syntax and decisions
 * live in src/net/nbd.h; this module owns sockets, connections, request
 * slots and the calls into the volume layer.
 *
 * Who may open what (README "Security"):
 *   - the registry serves only volumes attached to this agent (agent_vol.h);
 *   - a volume's own socket (agent_nbd_volume_add: VOLUME_DIR/NAME.sock,
 *     owner, group and mode from the options) serves that volume alone,
 *     under its name or the default export ""; the socket's permissions
 *     are the check, as a disk's device node is for a VM;
 *   - over TCP, TLS follows tls_mode (NBD_OPT_STARTTLS, net/nbd_tls.h: the
 *     agent's certificate, a client certificate of the cluster CA, or a
 *     PSK).  A volume whose attachment names a client opens only for a
 *     TLS client with that id (PSK identity or certificate id).  A volume
 *     naming no client opens over TCP only for a client on this host (its
 *     address is loopback or the connection's own local address: as
 *     trusted as the shared Unix socket's users), and with NBD_TLS_REQUIRE
 *     for nobody; from another host a volume needs its attachment to name
 *     the client.  NBD_OPT_LIST over TCP lists only what the connection
 *     could open;
 *   - the shared Unix socket (unix_path) is for local tools: TLS is
 *     offered there but never required, and it serves every volume of the
 *     agent (its permissions are the check);
 *   - a volume detached from the agent, or whose attachment changed,
 *     loses its connections (agent_nbd_volume_revoke) and its socket.
 * A refusal (a failed TLS handshake, plaintext where TLS is required, a
 * volume not for this client) is one log line naming the connection's
 * peer and the reason, and happens within the handshake deadline.
 *
 * What a client gets (CONTRACT.md §3 4.1, 4.2):
 *   - options: EXPORT_NAME, ABORT, LIST, INFO, GO, STRUCTURED_REPLY,
 *     LIST_META_CONTEXT and SET_META_CONTEXT with base:allocation;
 *     STARTTLS (with TLS configured; ERR_POLICY without), anything else
 *     ERR_UNSUP;
 *   - no volume is looked up before INFO/GO/EXPORT_NAME/LIST asks, and
 *     none is opened (attached) before GO or EXPORT_NAME
 *     (CVE-2019-14850): INFO and GO call agent_vols_info, only GO and
 *     EXPORT_NAME then call agent_vols_open;
 *   - transmission flags: HAS_FLAGS, SEND_FLUSH, SEND_FUA, SEND_TRIM,
 *     SEND_WRITE_ZEROES, SEND_FAST_ZERO, CAN_MULTI_CONN (the volume layer
 *     shares one cache per volume, C8); a read-only volume gets READ_ONLY
 *     and neither TRIM nor WRITE_ZEROES;
 *   - block sizes: minimum = the volume's block_size (4096), preferred =
 *     max(4096, minimum), maximum payload = min(max_io, 32 MiB);
 *   - commands READ (structured replies with OFFSET_HOLE chunks where the
 *     volume's map says HOLE or ZERO), WRITE (+FUA), FLUSH, TRIM (+FUA),
 *     WRITE_ZEROES (+FUA, NO_HOLE, FAST_ZERO), BLOCK_STATUS, DISC.
 *
 * Resource bounds (CONTRACT.md C17): handshake deadline; at most
 * max_handshakes connections in the handshake (a new one evicts the
 * oldest that is waiting on its client, see agent_nbd.c); at most
 * max_connections in all; per connection at most max_inflight requests
 * and max_inflight_bytes of payload in flight and out_high_water bytes of
 * queued output, beyond which the socket is not read (back-pressure).
 *
 * Everything runs on the reactor thread. */
#ifndef BD_AGENT_NBD_H
#define BD_AGENT_NBD_H

#include <stddef.h>
#include <stdint.h>

#include "net/listener.h"
#include "net/nbd.h"
#include "runtime/reactor.h"
#include "roles/agent/agent_vol.h"

struct agent_nbd;
struct nbd_tls;
struct cJSON;

struct agent_nbd_opts {
    const char *tag;               /* log tag, metrics label; borrowed, must outlive */
    const char *listen;            /* "host:port" ("host" alone: port 10809); NULL/"" = none */
    const char *unix_path;         /* Unix socket path; NULL/"" = none */
    uint64_t handshake_timeout_ms; /* 0: 10000 */
    uint32_t max_handshakes;       /* 0: 100 */
    uint32_t max_connections;      /* 0: 1024 */
    uint32_t max_inflight;         /* requests per connection; 0: 128 */
    size_t max_inflight_bytes;     /* payload bytes per connection; 0: 64 MiB */
    size_t out_high_water;         /* queued output per connection; 0: 8 MiB */
    uint64_t disc_drain_ms;        /* after DISC, wait this long for the client to
                                      read our last replies; 0: 30000 */
    struct nbd_tls *tls;           /* kept (must outlive the server); NULL: no TLS */
    enum nbd_tls_mode tls_mode;    /* over TCP (Unix sockets: at most NBD_TLS_ON);
                                      OFF without TLS */
    const char *volume_dir;        /* a socket per attached volume here; NULL/"" = none.
                                      Sockets found there at start are removed */
    struct listener_perm volume_perm; /* their owner, group and mode */
};

/* Start serving the volumes of VS (kept: must outlive the server) on the
 * listeners in OPTS.  0 with *OUT owned (agent_nbd_free), or a negative
 * code (-EINVAL bad address, -EADDRINUSE, -ENOMEM, ...) with a one-line
 * message in ERR and nothing left open. */
int agent_nbd_new(struct reactor *rx, struct agent_vols *vs, const struct agent_nbd_opts *opts,
                  struct agent_nbd **out, char *err, size_t errlen);

/* Serve an already connected socket FD as if it had been accepted (tests,
 * fuzzing, socket activation).  Takes FD.  0, or -ENOMEM / -ESHUTDOWN /
 * -EMFILE (over max_connections with no one to evict); FD is closed on
 * error. */
int agent_nbd_adopt(struct agent_nbd *s, int fd);

/* Stop: close the listeners, close every connection still in the
 * handshake, stop reading on the others and let their in-flight requests
 * finish and their replies flush for up to DRAIN_MS, then close them and
 * call DONE(ARG) once, on the reactor (never from inside this call).
 * Requests still inside the volume layer after that complete later (the
 * registry's agent_vols_stop fails or finishes them); their connections
 * then release their volume references. */
void agent_nbd_stop(struct agent_nbd *s, uint64_t drain_ms, void (*done)(void *arg), void *arg);

/* Free the server.  Call after stop's DONE and after the volume layer
 * has completed every request (agent_vols_stop's DONE). */
void agent_nbd_free(struct agent_nbd *s);

/* Volume NAME is now attached to this agent: make its socket
 * (volume_dir/NAME.sock) if volume_dir is set and it has none.  0, or the
 * listener's error (logged; NAME is served on the other sockets anyway). */
int agent_nbd_volume_add(struct agent_nbd *s, const char *name);
/* NAME's attachment changed or ended: close its connections (those in
 * transmission drain what is in flight first) and, if GONE, remove its
 * socket. */
void agent_nbd_volume_revoke(struct agent_nbd *s, const char *name, bool gone);
/* The socket path of NAME (whether or not it exists) into BUF; false if
 * there is no volume_dir or the path does not fit. */
bool agent_nbd_volume_path(const struct agent_nbd *s, const char *name, char *buf, size_t cap);

struct agent_nbd_stats {
    unsigned connections;    /* open NBD connections */
    unsigned handshakes;     /* of which still in the handshake */
    uint64_t accepted;       /* connections accepted since start */
    uint64_t refused;        /* refused at accept (caps, stopping) */
    uint64_t evicted;        /* stalled handshakes closed to admit a new client */
    uint64_t timeouts;       /* handshakes closed at the deadline */
    uint64_t proto_errors;   /* connections closed for protocol violations */
    uint64_t tls_ok;         /* TLS handshakes done */
    uint64_t tls_failed;     /* TLS handshakes failed (bad key, foreign certificate, ...) */
    uint64_t denied;         /* opens refused: TLS required, or another client's volume */
};
void agent_nbd_stats(const struct agent_nbd *s, struct agent_nbd_stats *st);

/* Add "nbd": {connections, handshakes, counters, exports: {name: conns}}
 * to the JSON object OUT (for GET /v1/status). */
void agent_nbd_status(const struct agent_nbd *s, struct cJSON *out);

#endif
