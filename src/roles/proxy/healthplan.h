/* healthplan.h: the cluster's health checks as a pure function
 * (GET /v1/health, `blockd ctl health`, the status page's first line).
 *
 * healthplan_eval() takes what one proxy knows (struct healthplan_in,
 * gathered by proxy_health.c, each input with its age) and returns the
 * checks that fail, in the manner of Ceph's HEALTH_WARN codes: a stable
 * code, a severity, one line saying what and how much, and what to do.
 * No I/O, no clock, no state: "since when" is tracked by the caller, and
 * tests/unit/test_healthplan.c drives it table by table.
 *
 *  CODE                       SEVERITY  WHEN
 *  RAFT_NO_LEADER             error     this proxy knows no leader
 *  RAFT_QUORUM_AT_RISK        error     fewer than a majority of proxies reachable
 *  RAFT_PROXY_UNREACHABLE     warn      a peer proxy is not reachable (the
 *                                       leader: no answer within the election
 *                                       timeout; others: no connection)
 *  RAFT_FOLLOWER_LAGGING      warn      (leader) a follower's match index, or
 *                                       (any) this proxy's applied index, more
 *                                       than lag_entries behind
 *  BLOB_SERVER_DOWN           warn      a blob server silent past node_timeout_ms
 *                                       (error when half or more are down)
 *  BLOB_SERVER_READ_ONLY      error     a blob server refuses writes (failed, full)
 *  BLOB_SERVER_NEARLY_FULL    warn/err  used/capacity >= near_full_pct / full_pct
 *  PARTITION_DEGRADED         warn      partitions with 2 of 3 replicas up
 *  PARTITION_AT_RISK          error     partitions with 1 or 0 replicas up
 *  INDEX_NEARLY_FULL          warn/err  the index uses >= 75% / 90% of its map size
 *  AGENT_JOURNAL_NEARLY_FULL  warn/err  an agent's journal >= 80% / 95% of its bound
 *  SCRUB_BAD_BLOBS            warn      blob servers hold copies that failed a checksum
 *  CLOCK_SKEW                 warn      a node's wall clock differs from this
 *                                       proxy's by more than skew_bound_ms
 *
 * Inputs this proxy does not have are skipped, never guessed: a check on
 * followers' progress only on the leader, agent journals only when agents
 * report them (journals_known), partitions only when the table was read.
 * A blob server never heard since this proxy started is "down" only once
 * the proxy has run for node_timeout_ms (before that: not yet known). */
#ifndef BD_HEALTHPLAN_H
#define BD_HEALTHPLAN_H

#include <stdbool.h>
#include <stdint.h>

enum healthplan_sev { HEALTHPLAN_OK = 0, HEALTHPLAN_WARN = 1, HEALTHPLAN_ERR = 2 };

#define HEALTHPLAN_NEVER UINT64_MAX /* an age: never heard */
#define HEALTHPLAN_MAX_CHECKS 16
#define HEALTHPLAN_LIST_MAX 8       /* subjects named in one check's summary */

struct healthplan_proxy {
    uint64_t id;
    bool self;
    bool reachable;
    bool has_match;                 /* match_index known (this proxy leads) */
    uint64_t match_index;
    bool has_skew;
    int64_t skew_ms;                /* its clock minus ours */
};

struct healthplan_node {            /* a blob server */
    uint64_t id;
    const char *addr;               /* borrowed */
    bool up;
    bool read_only;
    uint64_t age_ms;                /* since its last heartbeat, or HEALTHPLAN_NEVER */
    uint64_t capacity, used;        /* as of its last heartbeat */
    uint32_t n_bad;
    bool has_skew;
    int64_t skew_ms;
};

struct healthplan_journal {         /* one volume's journal on an agent */
    const char *agent, *vol;        /* borrowed */
    uint64_t used, capacity;
};

struct healthplan_in {
    /* Raft, as this proxy sees it */
    uint64_t self_id;
    bool has_leader, is_leader;
    uint64_t leader_id, term, commit_index, applied_index, last_index;
    uint64_t no_leader_ms;          /* how long without a known leader (0 with one) */
    const struct healthplan_proxy *proxies; /* every configured proxy, self included */
    unsigned n_proxies;
    uint64_t lag_entries;
    /* blob servers */
    const struct healthplan_node *nodes;
    unsigned n_nodes;
    uint64_t uptime_ms;             /* of this proxy */
    uint64_t node_timeout_ms;
    unsigned near_full_pct, full_pct;
    /* partitions: how many have 0, 1, 2, 3 replicas on servers up */
    bool parts_known;
    unsigned parts_by_up[4];
    const uint32_t *parts_low;      /* ids with fewer than 3 up (the first ones) */
    unsigned n_parts_low;
    /* the index */
    bool index_known;
    uint64_t index_used, index_map;
    /* agent journals (when agents report them) */
    bool journals_known;
    const struct healthplan_journal *journals;
    unsigned n_journals;
    /* clocks */
    uint64_t skew_bound_ms;
};

struct healthplan_check {
    const char *code;               /* static, e.g. "PARTITION_DEGRADED" */
    enum healthplan_sev sev;
    char summary[768];              /* one line: what and how much */
    const char *action;             /* static: what to do */
    unsigned count;                 /* subjects affected */
    uint64_t since_ago_ms;          /* when known from the inputs (0: the caller tracks it) */
};

/* Evaluate IN into OUT (at most MAX; HEALTHPLAN_MAX_CHECKS is enough for
 * every code), the most severe first.  Returns how many failed. */
unsigned healthplan_eval(const struct healthplan_in *in, struct healthplan_check *out,
                         unsigned max);
/* The worst severity of N checks (HEALTHPLAN_OK for none). */
enum healthplan_sev healthplan_worst(const struct healthplan_check *c, unsigned n);
/* "ok", "warn", "error"; and Ceph's "HEALTH_OK", "HEALTH_WARN", "HEALTH_ERR". */
const char *healthplan_sev_name(enum healthplan_sev s);
const char *healthplan_status_name(enum healthplan_sev s);

#endif
