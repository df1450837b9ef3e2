/* test_healthplan.c: src/roles/proxy/healthplan.c, the health checks as a
 * pure function of what one proxy knows, table by table. */
#include "roles/proxy/healthplan.h"
#include "tap.h"

#include <string.h>

/* ---- Fixture: a healthy cluster of 3 proxies and 3 blob servers ------------- */

struct fx {
    struct healthplan_in in;
    struct healthplan_proxy proxies[3];
    struct healthplan_node nodes[6];
    struct healthplan_check c[HEALTHPLAN_MAX_CHECKS];
    unsigned n;
};

static void fx_init(struct fx *f)
{
    memset(f, 0, sizeof(*f));
    for (unsigned i = 0; i < 3; i++)
        f->proxies[i] = (struct healthplan_proxy){.id = i + 1, .self = i == 0, .reachable = true};
    for (unsigned i = 0; i < 3; i++)
        f->nodes[i] = (struct healthplan_node){.id = 11 + i, .addr = "127.0.0.1:1", .up = true,
                                               .age_ms = 200, .capacity = 1000, .used = 100};
    f->in = (struct healthplan_in){
        .self_id = 1, .has_leader = true, .leader_id = 1, .is_leader = true, .term = 3,
        .commit_index = 100, .applied_index = 100, .last_index = 100,
        .proxies = f->proxies, .n_proxies = 3, .lag_entries = 1000,
        .nodes = f->nodes, .n_nodes = 3, .uptime_ms = 60000, .node_timeout_ms = 3000,
        .near_full_pct = 85, .full_pct = 95, .parts_known = true,
        .parts_by_up = {0, 0, 0, 48}, .index_known = true, .index_used = 1 << 20,
        .index_map = 1 << 30, .skew_bound_ms = 500};
}

static void eval(struct fx *f)
{
    f->n = healthplan_eval(&f->in, f->c, HEALTHPLAN_MAX_CHECKS);
}

/* The check with CODE, or NULL. */
static const struct healthplan_check *find(const struct fx *f, const char *code)
{
    for (unsigned i = 0; i < f->n; i++)
        if (strcmp(f->c[i].code, code) == 0) return &f->c[i];
    return NULL;
}

/* ---- scenarios -------------------------------------------------------------- */

/* A healthy cluster passes every check. */
TEST(healthy)
{
    struct fx f;
    fx_init(&f);
    eval(&f);
    CHECK_EQ(f.n, 0);
    CHECK_EQ(healthplan_worst(f.c, f.n), HEALTHPLAN_OK);
}

/* One blob server down: a warning naming it, and its partitions degraded. */
TEST(one_blob_down)
{
    struct fx f;
    fx_init(&f);
    f.nodes[1].up = false;
    f.nodes[1].age_ms = 8000;
    f.in.parts_by_up[3] = 32;
    f.in.parts_by_up[2] = 16;
    uint32_t low[] = {4, 5};
    f.in.parts_low = low;
    f.in.n_parts_low = 2;
    eval(&f);
    const struct healthplan_check *c = find(&f, "BLOB_SERVER_DOWN");
    CHECK(c && c->sev == HEALTHPLAN_WARN && c->count == 1);
    CHECK(strstr(c->summary, "12 (") != NULL);
    CHECK_EQ(c->since_ago_ms, 8000);
    c = find(&f, "PARTITION_DEGRADED");
    CHECK(c && c->sev == HEALTHPLAN_WARN && c->count == 16);
    CHECK(strstr(c->summary, ": 4, 5") != NULL);
    CHECK(find(&f, "PARTITION_AT_RISK") == NULL);
}

/* Half the blob servers down is an error, and so are partitions with one
 * replica up; the most severe checks come first. */
TEST(half_blobs_down)
{
    struct fx f;
    fx_init(&f);
    f.in.n_nodes = 4;
    f.nodes[3] = f.nodes[0];
    f.nodes[3].id = 14;
    f.nodes[0].up = f.nodes[1].up = false;
    f.in.parts_by_up[3] = 0;
    f.in.parts_by_up[1] = 10;
    f.in.parts_by_up[2] = 30;
    eval(&f);
    const struct healthplan_check *c = find(&f, "BLOB_SERVER_DOWN");
    CHECK(c && c->sev == HEALTHPLAN_ERR && c->count == 2);
    CHECK(find(&f, "PARTITION_AT_RISK") != NULL);
    CHECK(find(&f, "PARTITION_DEGRADED") != NULL);
    CHECK_EQ(f.c[0].sev, HEALTHPLAN_ERR);
    CHECK_EQ(f.c[f.n - 1].sev, HEALTHPLAN_WARN);
}

/* A server never heard since the proxy started is not called down before
 * it had node_timeout_ms to speak, and is after. */
TEST(never_heard_grace)
{
    struct fx f;
    fx_init(&f);
    f.nodes[2].up = false;
    f.nodes[2].age_ms = HEALTHPLAN_NEVER;
    f.in.uptime_ms = 1000;
    eval(&f);
    CHECK(find(&f, "BLOB_SERVER_DOWN") == NULL);
    f.in.uptime_ms = 5000;
    eval(&f);
    CHECK(find(&f, "BLOB_SERVER_DOWN") != NULL);
    CHECK(strstr(find(&f, "BLOB_SERVER_DOWN")->summary, "not heard since") != NULL);
}

/* No leader: an error with how long; a follower cannot judge followers'
 * progress, so no lag check without match indexes. */
TEST(no_leader)
{
    struct fx f;
    fx_init(&f);
    f.in.has_leader = f.in.is_leader = false;
    f.in.leader_id = 0;
    f.in.no_leader_ms = 12000;
    f.proxies[1].reachable = f.proxies[2].reachable = false;
    eval(&f);
    const struct healthplan_check *c = find(&f, "RAFT_NO_LEADER");
    CHECK(c && c->sev == HEALTHPLAN_ERR && c->since_ago_ms == 12000);
    c = find(&f, "RAFT_QUORUM_AT_RISK");
    CHECK(c && c->count == 2);
    CHECK(find(&f, "RAFT_PROXY_UNREACHABLE") == NULL);
    CHECK(find(&f, "RAFT_FOLLOWER_LAGGING") == NULL);
}

/* One proxy of three unreachable is a warning (a majority remains). */
TEST(one_proxy_unreachable)
{
    struct fx f;
    fx_init(&f);
    f.proxies[2].reachable = false;
    eval(&f);
    const struct healthplan_check *c = find(&f, "RAFT_PROXY_UNREACHABLE");
    CHECK(c && c->sev == HEALTHPLAN_WARN && strstr(c->summary, ": 3") != NULL);
}

/* The leader sees a follower behind by more than lag_entries; within it,
 * nothing. */
TEST(follower_lag)
{
    struct fx f;
    fx_init(&f);
    f.in.last_index = 5000;
    f.in.commit_index = f.in.applied_index = 5000;
    f.proxies[1].has_match = true;
    f.proxies[1].match_index = 4500;
    f.proxies[2].has_match = true;
    f.proxies[2].match_index = 100;
    eval(&f);
    const struct healthplan_check *c = find(&f, "RAFT_FOLLOWER_LAGGING");
    CHECK(c && c->count == 1 && strstr(c->summary, "proxy 3 holds 100 of 5000") != NULL);
}

/* Fill thresholds: blob servers at 85% warn and 95% err; a read-only
 * server is an error; the index map at 75% and 90%. */
TEST(fill_thresholds)
{
    struct fx f;
    fx_init(&f);
    f.nodes[0].used = 850;
    eval(&f);
    CHECK(find(&f, "BLOB_SERVER_NEARLY_FULL") &&
          find(&f, "BLOB_SERVER_NEARLY_FULL")->sev == HEALTHPLAN_WARN);
    f.nodes[0].used = 960;
    f.nodes[0].read_only = true;
    eval(&f);
    CHECK(find(&f, "BLOB_SERVER_NEARLY_FULL")->sev == HEALTHPLAN_ERR);
    CHECK(find(&f, "BLOB_SERVER_READ_ONLY") != NULL);
    fx_init(&f);
    f.in.index_used = f.in.index_map / 100 * 76;
    eval(&f);
    CHECK(find(&f, "INDEX_NEARLY_FULL") && find(&f, "INDEX_NEARLY_FULL")->sev == HEALTHPLAN_WARN);
    f.in.index_used = f.in.index_map / 100 * 91;
    eval(&f);
    CHECK(find(&f, "INDEX_NEARLY_FULL")->sev == HEALTHPLAN_ERR);
}

/* Journals are checked only when agents report them. */
TEST(journals_only_when_known)
{
    struct fx f;
    fx_init(&f);
    struct healthplan_journal j = {.agent = "hv1", .vol = "vol0", .used = 90, .capacity = 100};
    f.in.journals = &j;
    f.in.n_journals = 1;
    eval(&f);
    CHECK(find(&f, "AGENT_JOURNAL_NEARLY_FULL") == NULL);
    f.in.journals_known = true;
    eval(&f);
    const struct healthplan_check *c = find(&f, "AGENT_JOURNAL_NEARLY_FULL");
    CHECK(c && c->sev == HEALTHPLAN_WARN && strstr(c->summary, "vol0 on hv1") != NULL);
}

/* Bad blobs and clock skew are warnings naming the servers; a skew within
 * the bound, or not measured, is not. */
TEST(scrub_and_clocks)
{
    struct fx f;
    fx_init(&f);
    f.nodes[2].n_bad = 3;
    f.nodes[0].has_skew = true;
    f.nodes[0].skew_ms = -2500;
    f.nodes[1].has_skew = true;
    f.nodes[1].skew_ms = 400;
    f.proxies[1].has_skew = true;
    f.proxies[1].skew_ms = 900;
    eval(&f);
    const struct healthplan_check *c = find(&f, "SCRUB_BAD_BLOBS");
    CHECK(c && c->count == 3 && strstr(c->summary, "13 (3)") != NULL);
    c = find(&f, "CLOCK_SKEW");
    CHECK(c && c->count == 2);
    CHECK(strstr(c->summary, "blob server 11 by -2500 ms") != NULL);
    CHECK(strstr(c->summary, "proxy 2 by +900 ms") != NULL);
}

/* A summary names at most HEALTHPLAN_LIST_MAX subjects and counts the rest. */
TEST(bounded_summary)
{
    struct fx f;
    fx_init(&f);
    static struct healthplan_node many[200];
    for (unsigned i = 0; i < 200; i++)
        many[i] = (struct healthplan_node){.id = 100 + i, .addr = "127.0.0.1:1",
                                           .age_ms = 60000};
    f.in.nodes = many;
    f.in.n_nodes = 200;
    eval(&f);
    const struct healthplan_check *c = find(&f, "BLOB_SERVER_DOWN");
    CHECK(c && c->count == 200);
    CHECK(strstr(c->summary, "and 192 more") != NULL);
}
