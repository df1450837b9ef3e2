/* role.h: what every role module exports, and all blockd.c knows of roles.
 *
 * A role module (agent, proxy, blob) exports one `struct role_ops`.
 * blockd.c picks the modules named by --role, asks each how many instances
 * the config declares, and starts them in order on one reactor: blob
 * servers first, then proxies, then agents, so that in a one-process
 * cluster (--role=all) each role finds what it talks to already listening.
 * Stopping runs in the reverse order (STYLE.md §7, nbdkit's backend).
 *
 * Contract for a role module:
 *   - start() validates what the config parser could not (data directory,
 *     cluster id stored there), binds every listener, and returns 0, or a
 *     negative code with a one-line message in ERR and nothing left open;
 *   - stop() is asynchronous: close listeners, finish or fail in-flight
 *     work, flush state, then call DONE(r) exactly once, on the reactor;
 *   - free() releases what start() made, after stop() completed (or after a
 *     failed start, never).
 *   - ready() (optional) says whether a started instance serves yet: true
 *     once it does what its clients need of it (systemd's READY=1 waits
 *     for every instance of the process; blockd.c asks every 100 ms until
 *     all say yes, then never again).  False fills WHY with a few words on
 *     what it waits for (systemd's STATUS=).  It must not block.  Without
 *     it an instance serves once start() returned.
 *   - callbacks run on the reactor thread only. */
#ifndef BD_ROLE_H
#define BD_ROLE_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "runtime/reactor.h"

struct role {
    const struct role_ops *ops;
    char tag[32];     /* "proxy.1", "blob.3", "agent": log tag and metrics label */
    void *impl;       /* the module's own state */
};

struct role_ops {
    const char *name;                                    /* "agent", "proxy", "blob" */
    unsigned (*instances)(const struct cfg *cfg);  /* how many in CFG */
    int (*start)(struct role *r, struct reactor *rx, const struct cfg *cfg,
                 unsigned instance, char *err, size_t errlen);
    void (*stop)(struct role *r, void (*done)(struct role *r));
    void (*free)(struct role *r);
    bool (*ready)(struct role *r, char *why, size_t whylen);
};

#endif
