/* agent.h: the agent role (DESIGN.md §1): the NBD front end over the
 * volume back end, and the admin endpoint.
 *
 *   start: agent_vols_new (journals replayed, proxies connected), the NBD
 *          listeners (nbd_listen, nbd_unix), admin HTTP on `admin` with
 *          GET /v1/status and GET /metrics;
 *   stop:  stop accepting; close NBD connections once their in-flight
 *          requests are done (bounded by io_timeout_ms + 1 s); then
 *          agent_vols_stop (ship dirty data, detach); then done.
 *
 * GET /v1/status returns
 *   {"role": "agent", "tag": ..., "id": ...,
 *    "nbd": {"connections", "handshakes", "exports": {name: connections}, counters},
 *    "volumes": {what agent_vols_status reports: attaches, dirty bytes, proxies}}
 * /metrics carries blockd_nbd_* (per-command counts, errors and latency
 * histograms, bytes in and out, protocol errors, refusals, evictions,
 * handshake timeouts, live connection gauges) beside the volume layer's. */
#ifndef BD_AGENT_H
#define BD_AGENT_H

#include "roles/role.h"

extern const struct role_ops agent_role_ops;

#endif
