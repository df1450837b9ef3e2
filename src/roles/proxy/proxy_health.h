/* proxy_health.h: GET /v1/health on a proxy (README "Health"): the
 * checks of healthplan.h over what this proxy knows now, each with since
 * when, and the age of every input, so nothing stale passes for current.
 *
 * What it owns: the "since" of each failing code; how long this proxy has
 * been without a known leader; clock probes (a CLOCK request to every blob
 * server and peer proxy every PROXY_HEALTH_PROBE_MS, skew estimated NTP
 * style from the round trip); and the gauges the alert rules read
 * (conf/prometheus/blockd-rules.yml): blockd_raft_has_leader,
 * blockd_raft_last_index, blockd_raft_peer_lag_entries{peer},
 * blockd_proxy_blob_server_up{node}, blockd_proxy_blob_server_heartbeat_age_seconds{node},
 * blockd_proxy_partitions{replicas_up}, blockd_index_used_bytes,
 * blockd_index_map_bytes, blockd_clock_skew_seconds{node} and
 * blockd_health_status (0 ok, 1 warn, 2 error).
 *
 * Quick by construction: an answer reads only this proxy's memory, one
 * LMDB read transaction (never blocked by the writer) and the cached
 * partition table; it never waits for a leader, a peer or a blob server,
 * so it answers the same during an election, with no leader, or with
 * half the blob servers gone.  A tick (1 s) re-evaluates so that "since"
 * is right even when nobody asks.
 *
 * Made by proxy_admin_start after the blob pool and consensus exist, freed
 * by proxy_admin_stop; reactor thread only. */
#ifndef BD_PROXY_HEALTH_H
#define BD_PROXY_HEALTH_H

#include <cjson/cJSON.h>

struct proxy;
struct proxy_health;

#define PROXY_HEALTH_TICK_MS 1000
#define PROXY_HEALTH_PROBE_MS 10000
#define PROXY_HEALTH_SKEW_MS 500       /* CLOCK_SKEW beyond this */
#define PROXY_HEALTH_LAG_ENTRIES 1000  /* RAFT_FOLLOWER_LAGGING beyond this */

/* 0 with P->health set, or -ENOMEM. */
int proxy_health_start(struct proxy *p);
/* Probes still in flight finish later, harmlessly.  P->health is NULL after. */
void proxy_health_stop(struct proxy *p);

/* The health answer, added to OUT (see README "Health" for the fields). */
void proxy_health_json(struct proxy *p, cJSON *out);

#endif
