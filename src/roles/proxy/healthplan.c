/* healthplan.c: the health checks, a pure function of what one proxy
 * knows (see healthplan.h for the table of codes).
 *
 * Each check is one small function that appends at most one entry; the
 * list is then sorted by severity (stable, so codes of one severity keep
 * the table's order: a reader scanning for the cause sees Raft, then blob
 * servers, then partitions).  Summaries name at most HEALTHPLAN_LIST_MAX
 * subjects and say how many more, so a failed rack cannot make an answer
 * unbounded.
 *
 * Thresholds: a blob server at 85% is worth a warning (compaction and
 * repair need room), at 95% an error (it turns read-only near the end).
 * The index map at 75%/90%: LMDB cannot grow a map while serving, and a
 * full map fails every write (README "Sizing").  Agent journals at
 * 80%/95%: a full journal makes writes wait for the cluster. */
#include "roles/proxy/healthplan.h"
#include "base/bd.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *healthplan_sev_name(enum healthplan_sev s)
{
    return s == HEALTHPLAN_ERR ? "error" : s == HEALTHPLAN_WARN ? "warn" : "ok";
}

const char *healthplan_status_name(enum healthplan_sev s)
{
    return s == HEALTHPLAN_ERR ? "HEALTH_ERR" : s == HEALTHPLAN_WARN ? "HEALTH_WARN" : "HEALTH_OK";
}

struct out {
    struct healthplan_check *c;
    unsigned n, max;
};

static struct healthplan_check *add(struct out *o, const char *code, enum healthplan_sev sev,
                                    const char *action)
{
    if (o->n >= o->max) return NULL;
    struct healthplan_check *c = &o->c[o->n++];
    memset(c, 0, sizeof(*c));
    c->code = code;
    c->sev = sev;
    c->action = action;
    return c;
}

static void say(struct healthplan_check *c, const char *fmt, ...) BD_PRINTF(2, 3);
static void say(struct healthplan_check *c, const char *fmt, ...)
{
    size_t n = strlen(c->summary);
    if (n >= sizeof(c->summary) - 1) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->summary + n, sizeof(c->summary) - n, fmt, ap);
    va_end(ap);
}

/* Name subject number I (0-based) of a list, or say how many more. */
static bool listing(struct healthplan_check *c, unsigned i, unsigned total)
{
    if (i == HEALTHPLAN_LIST_MAX) {
        say(c, " and %u more", total - i);
        return false;
    }
    if (i > HEALTHPLAN_LIST_MAX) return false;
    say(c, "%s", i ? ", " : ": ");
    return true;
}

/* ---- Raft ------------------------------------------------------------------- */

static void check_leader(const struct healthplan_in *in, struct out *o)
{
    if (in->has_leader) return;
    struct healthplan_check *c =
        add(o, "RAFT_NO_LEADER", HEALTHPLAN_ERR,
            "check that a majority of proxies run and reach each other on their wire "
            "addresses (blockd ctl cluster status on each); writes, attaches and volume "
            "changes wait until a leader is elected");
    if (!c) return;
    c->count = 1;
    c->since_ago_ms = in->no_leader_ms;
    say(c, "proxy %llu knows no Raft leader (term %llu) for %llu s; what it shows of the "
           "index may be stale",
        (unsigned long long)in->self_id, (unsigned long long)in->term,
        (unsigned long long)(in->no_leader_ms / 1000));
}

static void check_proxies(const struct healthplan_in *in, struct out *o)
{
    unsigned down = 0, reach = 0;
    for (unsigned i = 0; i < in->n_proxies; i++) {
        if (in->proxies[i].self || in->proxies[i].reachable) reach++;
        else down++;
    }
    if (!down) return;
    bool quorum = reach > in->n_proxies / 2;
    struct healthplan_check *c =
        quorum ? add(o, "RAFT_PROXY_UNREACHABLE", HEALTHPLAN_WARN,
                     "start the proxy or mend the network between the proxies; with one "
                     "more proxy lost the cluster stops taking writes")
               : add(o, "RAFT_QUORUM_AT_RISK", HEALTHPLAN_ERR,
                     "bring proxies back until a majority reach each other; until then no "
                     "write or volume change can commit");
    if (!c) return;
    c->count = down;
    say(c, "%u of %u proxies unreachable from proxy %llu", down, in->n_proxies,
        (unsigned long long)in->self_id);
    unsigned k = 0;
    for (unsigned i = 0; i < in->n_proxies; i++) {
        const struct healthplan_proxy *p = &in->proxies[i];
        if (p->self || p->reachable) continue;
        if (!listing(c, k++, down)) break;
        say(c, "%llu", (unsigned long long)p->id);
    }
}

static void check_lag(const struct healthplan_in *in, struct out *o)
{
    unsigned lagging = 0;
    for (unsigned i = 0; i < in->n_proxies; i++) {
        const struct healthplan_proxy *p = &in->proxies[i];
        if (!p->self && p->has_match && p->reachable &&
            in->last_index > p->match_index + in->lag_entries)
            lagging++;
    }
    bool self_lags = in->commit_index > in->applied_index + in->lag_entries;
    if (!lagging && !self_lags) return;
    struct healthplan_check *c =
        add(o, "RAFT_FOLLOWER_LAGGING", HEALTHPLAN_WARN,
            "a lagging proxy catches up by itself (a snapshot if far behind); if the lag "
            "grows, check its disk (fsync latency) and its network");
    if (!c) return;
    c->count = lagging + (self_lags ? 1 : 0);
    if (self_lags)
        say(c, "proxy %llu applied %llu of %llu committed entries", (unsigned long long)in->self_id,
            (unsigned long long)in->applied_index, (unsigned long long)in->commit_index);
    unsigned k = 0;
    for (unsigned i = 0; i < in->n_proxies; i++) {
        const struct healthplan_proxy *p = &in->proxies[i];
        if (p->self || !p->has_match || !p->reachable ||
            in->last_index <= p->match_index + in->lag_entries)
            continue;
        if (k >= HEALTHPLAN_LIST_MAX) break;
        say(c, "%sproxy %llu holds %llu of %llu entries (%llu behind)",
            (k || self_lags) ? "; " : "", (unsigned long long)p->id,
            (unsigned long long)p->match_index, (unsigned long long)in->last_index,
            (unsigned long long)(in->last_index - p->match_index));
        k++;
    }
}

/* ---- blob servers -------------------------------------------------------------- */

static bool node_down(const struct healthplan_in *in, const struct healthplan_node *n)
{
    if (n->up) return false;
    /* Never heard since we started: only down once it had time to speak. */
    return n->age_ms != HEALTHPLAN_NEVER || in->uptime_ms >= in->node_timeout_ms;
}

static void check_nodes_down(const struct healthplan_in *in, struct out *o)
{
    unsigned down = 0;
    uint64_t newest = HEALTHPLAN_NEVER;
    for (unsigned i = 0; i < in->n_nodes; i++)
        if (node_down(in, &in->nodes[i])) {
            down++;
            uint64_t ago = in->nodes[i].age_ms == HEALTHPLAN_NEVER
                               ? in->uptime_ms
                               : in->nodes[i].age_ms;
            if (newest == HEALTHPLAN_NEVER || ago < newest) newest = ago;
        }
    if (!down) return;
    struct healthplan_check *c =
        add(o, "BLOB_SERVER_DOWN", 2 * down >= in->n_nodes ? HEALTHPLAN_ERR : HEALTHPLAN_WARN,
            "restart the blob server or mend its network; its partitions serve from the "
            "other replicas meanwhile, and repair replaces it after replace_after_ms");
    if (!c) return;
    c->count = down;
    c->since_ago_ms = newest == HEALTHPLAN_NEVER ? 0 : newest;
    say(c, "%u of %u blob servers down", down, in->n_nodes);
    unsigned k = 0;
    for (unsigned i = 0; i < in->n_nodes; i++) {
        const struct healthplan_node *n = &in->nodes[i];
        if (!node_down(in, n)) continue;
        if (!listing(c, k++, down)) break;
        if (n->age_ms == HEALTHPLAN_NEVER)
            say(c, "%llu (%s, not heard since this proxy started)", (unsigned long long)n->id,
                n->addr);
        else
            say(c, "%llu (%s, last heard %llu s ago)", (unsigned long long)n->id, n->addr,
                (unsigned long long)(n->age_ms / 1000));
    }
}

static void check_nodes_full(const struct healthplan_in *in, struct out *o)
{
    unsigned ro = 0, warn = 0, err = 0;
    for (unsigned i = 0; i < in->n_nodes; i++) {
        const struct healthplan_node *n = &in->nodes[i];
        if (n->age_ms == HEALTHPLAN_NEVER) continue;
        if (n->read_only) ro++;
        if (!n->capacity) continue;
        if (n->used * 100 >= (uint64_t)in->full_pct * n->capacity) err++;
        else if (n->used * 100 >= (uint64_t)in->near_full_pct * n->capacity) warn++;
    }
    if (ro) {
        struct healthplan_check *c =
            add(o, "BLOB_SERVER_READ_ONLY", HEALTHPLAN_ERR,
                "a blob server that is full or whose store failed takes no writes: free or "
                "add space, or replace its disk (see its log)");
        if (c) {
            c->count = ro;
            say(c, "%u blob server(s) refuse writes", ro);
            unsigned k = 0;
            for (unsigned i = 0; i < in->n_nodes; i++) {
                if (!in->nodes[i].read_only || in->nodes[i].age_ms == HEALTHPLAN_NEVER) continue;
                if (!listing(c, k++, ro)) break;
                say(c, "%llu", (unsigned long long)in->nodes[i].id);
            }
        }
    }
    if (!warn && !err) return;
    struct healthplan_check *c =
        add(o, "BLOB_SERVER_NEARLY_FULL", err ? HEALTHPLAN_ERR : HEALTHPLAN_WARN,
            "add blob servers (new partitions go to them) or delete volumes and snapshots; "
            "compaction reclaims dead bytes over time");
    if (!c) return;
    c->count = warn + err;
    say(c, "%u blob server(s) at or above %u%% full", warn + err,
        err && !warn ? in->full_pct : in->near_full_pct);
    unsigned k = 0;
    for (unsigned i = 0; i < in->n_nodes; i++) {
        const struct healthplan_node *n = &in->nodes[i];
        if (n->age_ms == HEALTHPLAN_NEVER || !n->capacity ||
            n->used * 100 < (uint64_t)in->near_full_pct * n->capacity)
            continue;
        if (!listing(c, k++, warn + err)) break;
        say(c, "%llu at %.0f%%", (unsigned long long)n->id,
            100.0 * (double)n->used / (double)n->capacity);
    }
}

static void check_scrub(const struct healthplan_in *in, struct out *o)
{
    unsigned nodes = 0;
    uint64_t blobs = 0;
    for (unsigned i = 0; i < in->n_nodes; i++)
        if (in->nodes[i].n_bad && in->nodes[i].age_ms != HEALTHPLAN_NEVER) {
            nodes++;
            blobs += in->nodes[i].n_bad;
        }
    if (!nodes) return;
    struct healthplan_check *c =
        add(o, "SCRUB_BAD_BLOBS", HEALTHPLAN_WARN,
            "repair heals bad copies from the other replicas by itself; a count that keeps "
            "growing on one server means a failing disk: replace it");
    if (!c) return;
    c->count = (unsigned)BD_MIN(blobs, UINT32_MAX);
    say(c, "%llu blob cop%s failed a checksum on %u blob server(s)", (unsigned long long)blobs,
        blobs == 1 ? "y" : "ies", nodes);
    unsigned k = 0;
    for (unsigned i = 0; i < in->n_nodes; i++) {
        if (!in->nodes[i].n_bad || in->nodes[i].age_ms == HEALTHPLAN_NEVER) continue;
        if (!listing(c, k++, nodes)) break;
        say(c, "%llu (%u)", (unsigned long long)in->nodes[i].id, in->nodes[i].n_bad);
    }
}

/* ---- partitions, index, journals, clocks ---------------------------------------- */

static void check_parts(const struct healthplan_in *in, struct out *o)
{
    if (!in->parts_known) return;
    unsigned total = 0;
    for (int i = 0; i < 4; i++) total += in->parts_by_up[i];
    unsigned risk = in->parts_by_up[0] + in->parts_by_up[1], degraded = in->parts_by_up[2];
    if (risk) {
        struct healthplan_check *c =
            add(o, "PARTITION_AT_RISK", HEALTHPLAN_ERR,
                "bring the blob servers of these partitions back now: their data has one copy "
                "or none reachable, and writes avoid them");
        if (c) {
            c->count = risk;
            say(c, "%u of %u partitions have fewer than 2 replicas up (%u with none)", risk, total,
                in->parts_by_up[0]);
        }
    }
    if (degraded) {
        struct healthplan_check *c =
            add(o, "PARTITION_DEGRADED", HEALTHPLAN_WARN,
                "reads use the other replicas and writes go to healthy partitions; bring the "
                "down blob server back, or wait for repair to replace it");
        if (c) {
            c->count = degraded;
            say(c, "%u of %u partitions have 2 of 3 replicas up", degraded, total);
        }
    }
    if ((risk || degraded) && in->n_parts_low) {
        /* Name some of them on the most severe of the two. */
        struct healthplan_check *c = &o->c[o->n - (risk && degraded ? 2 : 1)];
        for (unsigned i = 0; i < in->n_parts_low; i++) {
            if (!listing(c, i, risk + degraded)) break;
            say(c, "%u", in->parts_low[i]);
        }
    }
}

static void check_index(const struct healthplan_in *in, struct out *o)
{
    if (!in->index_known || !in->index_map) return;
    uint64_t pct100 = in->index_used * 100;
    enum healthplan_sev sev = pct100 >= 90 * in->index_map   ? HEALTHPLAN_ERR
                              : pct100 >= 75 * in->index_map ? HEALTHPLAN_WARN
                                                             : HEALTHPLAN_OK;
    if (sev == HEALTHPLAN_OK) return;
    struct healthplan_check *c =
        add(o, "INDEX_NEARLY_FULL", sev,
            "raise index_map_bytes in every proxy's config and restart them one at a time "
            "(a full map fails every write); deleting volumes frees pages for reuse");
    if (!c) return;
    c->count = 1;
    say(c, "the index uses %.0f%% of its %llu MiB map on proxy %llu",
        100.0 * (double)in->index_used / (double)in->index_map,
        (unsigned long long)(in->index_map >> 20), (unsigned long long)in->self_id);
}

static void check_journals(const struct healthplan_in *in, struct out *o)
{
    if (!in->journals_known) return;
    unsigned warn = 0, err = 0;
    for (unsigned i = 0; i < in->n_journals; i++) {
        const struct healthplan_journal *j = &in->journals[i];
        if (!j->capacity) continue;
        if (j->used * 100 >= 95 * j->capacity) err++;
        else if (j->used * 100 >= 80 * j->capacity) warn++;
    }
    if (!warn && !err) return;
    struct healthplan_check *c =
        add(o, "AGENT_JOURNAL_NEARLY_FULL", err ? HEALTHPLAN_ERR : HEALTHPLAN_WARN,
            "the agent cannot ship as fast as the volume writes: check its link to the "
            "proxies and the cluster's write latency; a full journal makes writes wait");
    if (!c) return;
    c->count = warn + err;
    say(c, "%u volume journal(s) at or above 80%% of cache_bytes", warn + err);
    unsigned k = 0;
    for (unsigned i = 0; i < in->n_journals; i++) {
        const struct healthplan_journal *j = &in->journals[i];
        if (!j->capacity || j->used * 100 < 80 * j->capacity) continue;
        if (!listing(c, k++, warn + err)) break;
        say(c, "%s on %s at %.0f%%", j->vol, j->agent, 100.0 * (double)j->used / (double)j->capacity);
    }
}

static uint64_t abs_ms(int64_t v)
{
    return v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
}

static void check_clocks(const struct healthplan_in *in, struct out *o)
{
    unsigned bad = 0;
    for (unsigned i = 0; i < in->n_nodes; i++)
        if (in->nodes[i].has_skew && abs_ms(in->nodes[i].skew_ms) > in->skew_bound_ms) bad++;
    for (unsigned i = 0; i < in->n_proxies; i++)
        if (in->proxies[i].has_skew && abs_ms(in->proxies[i].skew_ms) > in->skew_bound_ms) bad++;
    if (!bad) return;
    struct healthplan_check *c =
        add(o, "CLOCK_SKEW", HEALTHPLAN_WARN,
            "run NTP (chrony, systemd-timesyncd) on every node; blockd's safety does not "
            "depend on clocks, but logs and timestamps of different nodes stop lining up");
    if (!c) return;
    c->count = bad;
    say(c, "%u node(s) differ from proxy %llu's clock by more than %llu ms", bad,
        (unsigned long long)in->self_id, (unsigned long long)in->skew_bound_ms);
    unsigned k = 0;
    for (unsigned i = 0; i < in->n_proxies; i++) {
        const struct healthplan_proxy *p = &in->proxies[i];
        if (!p->has_skew || abs_ms(p->skew_ms) <= in->skew_bound_ms) continue;
        if (!listing(c, k++, bad)) break;
        say(c, "proxy %llu by %+lld ms", (unsigned long long)p->id, (long long)p->skew_ms);
    }
    for (unsigned i = 0; i < in->n_nodes; i++) {
        const struct healthplan_node *n = &in->nodes[i];
        if (!n->has_skew || abs_ms(n->skew_ms) <= in->skew_bound_ms) continue;
        if (!listing(c, k++, bad)) break;
        say(c, "blob server %llu by %+lld ms", (unsigned long long)n->id, (long long)n->skew_ms);
    }
}

unsigned healthplan_eval(const struct healthplan_in *in, struct healthplan_check *out,
                         unsigned max)
{
    struct out o = {.c = out, .n = 0, .max = max};
    check_leader(in, &o);
    check_proxies(in, &o);
    check_lag(in, &o);
    check_nodes_down(in, &o);
    check_nodes_full(in, &o);
    check_parts(in, &o);
    check_index(in, &o);
    check_journals(in, &o);
    check_scrub(in, &o);
    check_clocks(in, &o);
    /* Stable sort by severity, most severe first (insertion: n <= 16). */
    for (unsigned i = 1; i < o.n; i++) {
        struct healthplan_check t = out[i];
        unsigned j = i;
        while (j > 0 && out[j - 1].sev < t.sev) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = t;
    }
    return o.n;
}

enum healthplan_sev healthplan_worst(const struct healthplan_check *c, unsigned n)
{
    enum healthplan_sev w = HEALTHPLAN_OK;
    for (unsigned i = 0; i < n; i++)
        if (c[i].sev > w) w = c[i].sev;
    return w;
}
