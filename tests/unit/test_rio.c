/* test_rio.c: three libraft servers on one reactor, talking over real
 * loopback TCP (src/store/raft/rio.c, consensus.c, raftlog*.c, net/raftmsg.c).
 *
 * Fixture: each node has its own data directory, a listener on 127.0.0.1
 * whose accepted connections hand WIRE_RAFT frames to consensus_deliver()
 * (as the proxy role will), and a toy FSM: a running sum of the 8-byte
 * values in the commands.  Its snapshot is the sum and count followed by
 * a fixed pattern (snap_pad: 200 KiB, so an InstallSnapshot spans several
 * frames; 9 MiB in one test, streamed in PING-paced windows by rio.c).
 * A node can be "isolated": frames to or from it are dropped at the
 * receiving end, which is a network partition as far as Raft can tell.
 *
 * The tests run in order on one cluster: elect, apply 1000 commands (the
 * latency and throughput figures are printed as "# bench" lines), lose the
 * leader, restart it and catch up from the log, then from a snapshot,
 * refuse foreign and spoofed frames, and stop cleanly.  Every wait is
 * bounded. */
#include "base/bd.h"
#include "config/config.h"
#include "net/conn.h"
#include "net/listener.h"
#include "runtime/reactor.h"
#include "store/raft/consensus.h"
#include "store/raft/snapmem.h"
#include "tap.h"
#include "base/bytes.h"
#include "testlib.h"
#include "base/util.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Fixture -------------------------------------------------------------- */

#define N_NODES 3
/* The snapshot's pad: 200 KiB (several frames) for most tests, whose
 * snapshots every 256 entries are written to disk and fsynced; 9 MiB (above
 * RIO_STREAM_MIN: streamed in windows) for restart_catches_up_from_snapshot. */
#define SNAP_PAD_SMALL (200u << 10)
#define SNAP_PAD_STREAMED (9u << 20)
static size_t snap_pad = SNAP_PAD_SMALL;

/* The pad's bytes, made once: a snapshot is a memcpy of them and a restore
 * a memcmp, so neither holds a node's reactor long enough to lose a vote. */
static const uint8_t *pad_pattern(void)
{
    static uint8_t *pat;
    if (!pat) {
        pat = malloc(SNAP_PAD_STREAMED);
        if (!pat) abort();
        for (size_t i = 0; i < SNAP_PAD_STREAMED; i++) pat[i] = (uint8_t)(i * 7);
    }
    return pat;
}
#define ELECTION_MS 400
#define HEARTBEAT_MS 50

struct node {
    int idx;
    uint64_t id;
    char dir[600];
    char addr[64];
    struct cfg_proxy cfg;
    struct conn_auth auth;
    struct listener *lis;
    struct conn *accepted[16];
    int n_accepted;
    struct consensus *c;
    struct raft_fsm fsm;
    uint64_t sum, count;      /* the FSM's state */
    uint64_t restores;        /* snapshots restored */
    uint64_t restores_at_start; /* restores done by the start itself (local snapshot) */
    uint64_t mapped_restores; /* of which the data was a file mapping (snapmem.h) */
    bool isolated;
    int closed;
};

static struct reactor *rx;
static struct node nodes[N_NODES];
static char base[512];
static struct conn_opts srv_opts;

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct node *n = fsm->data;
    uint64_t v = buf->len >= 8 ? bytes_get_le64(buf->base) : 0;
    n->sum += v;
    n->count++;
    *result = NULL;
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct node *n = fsm->data;
    struct raft_buffer *b = raft_malloc(sizeof(*b));
    size_t pad = snap_pad;
    uint8_t *p = raft_malloc(16 + pad);
    if (!b || !p) {
        raft_free(b);
        raft_free(p);
        return RAFT_NOMEM;
    }
    bytes_put_le64(p, n->sum);
    bytes_put_le64(p + 8, n->count);
    memcpy(p + 16, pad_pattern(), pad);
    b->base = p;
    b->len = 16 + pad;
    *bufs = b;
    *n_bufs = 1;
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct node *n = fsm->data;
    if (buf->len < 16 || buf->len - 16 > SNAP_PAD_STREAMED) return RAFT_MALFORMED;
    const uint8_t *p = buf->base;
    if (memcmp(p + 16, pad_pattern(), buf->len - 16) != 0) return RAFT_MALFORMED;
    n->sum = bytes_get_le64(p);
    n->count = bytes_get_le64(p + 8);
    n->restores++;
    if (snapmem_is_mapped(buf->base)) n->mapped_restores++;
    raft_free(buf->base); /* restore takes the buffer */
    return 0;
}

static struct node *node_by_id(uint64_t id)
{
    for (int i = 0; i < N_NODES; i++)
        if (nodes[i].id == id) return &nodes[i];
    return NULL;
}

static void srv_on_request(struct conn *c, struct conn_frame *f, void *arg)
{
    struct node *n = arg;
    if (f->hdr.type != WIRE_RAFT) {
        if (!(f->hdr.flags & WIRE_F_ONEWAY)) conn_reply_error(c, &f->hdr, -ENOTSUP, 0, "test");
        return;
    }
    struct wire_raft_req w;
    if (wire_decode_raft_req(f->body, f->hdr.len, f->hdr.payload_len, &w) < 0) return;
    struct node *from = node_by_id(w.from_id);
    if (n->isolated || (from && from->isolated) || !n->c || n->closed) return;
    consensus_deliver(n->c, c, &w);
}

static void srv_on_close(struct conn *c, int err, void *arg)
{
    (void)err;
    struct node *n = arg;
    for (int i = 0; i < n->n_accepted; i++)
        if (n->accepted[i] == c) n->accepted[i] = n->accepted[--n->n_accepted];
}

static const struct conn_ops srv_ops = {.on_request = srv_on_request, .on_close = srv_on_close};

static void on_accept(int fd, void *arg)
{
    struct node *n = arg;
    struct conn *c = conn_accept(rx, fd, &srv_ops, n, &srv_opts);
    if (c && n->n_accepted < 16) n->accepted[n->n_accepted++] = c;
    else if (c) conn_close(c, -EBUSY);
}

/* ---- Helpers -------------------------------------------------------------- */

/* The nodes' file I/O: the real thing, except that while spool_fail is
 * positive, creating a snapshot spool file (snapmem.h) fails with ENOSPC
 * that many times (a full disk on a receiving follower). */
static int spool_fail;
static int sf_open(struct fileio *f, const char *path, int flags, int mode)
{
    (void)f;
    if (spool_fail > 0 && strstr(path, "/snap-spool-")) {
        spool_fail--;
        return -ENOSPC;
    }
    return fileio_posix.ops->open(&fileio_posix, path, flags, mode);
}
static struct fileio_ops sf_ops;
static struct fileio sf_fio = {.ops = &sf_ops};

static int start_node(struct node *n)
{
    if (!n->lis && listener_new(rx, n->addr, on_accept, n, &n->lis) < 0) return -1;
    if (!sf_ops.open) {
        sf_ops = *fileio_posix.ops;
        sf_ops.open = sf_open;
    }
    struct consensus_opts o = {.cfg = &n->cfg, .auth = &n->auth, .fsm = &n->fsm, .tag = n->cfg.admin,
                               .segment_bytes = 64 << 10, .fio = &sf_fio};
    char err[256];
    n->sum = n->count = n->restores = 0;
    n->closed = 0;
    int rc = consensus_new(rx, &o, &n->c, err, sizeof(err));
    n->restores_at_start = n->restores;
    if (rc < 0) printf("# node %llu: %s\n", (unsigned long long)n->id, err);
    return rc;
}

static void on_node_closed(void *arg)
{
    struct node *n = arg;
    n->closed = 1;
}
static struct node *closing_node;
static bool closed_pred(void)
{
    return closing_node->closed;
}

/* Stop N.  Abrupt: listener and connections go first (a crash, as far as
 * the peers can tell), then the consensus.  Graceful: the consensus closes
 * while it can still hear its peers (so a leader can hand over), then the
 * listener. */
static bool stop_node(struct node *n, bool graceful)
{
    if (!graceful) {
        listener_free(n->lis);
        n->lis = NULL;
        while (n->n_accepted) conn_close(n->accepted[0], -ESHUTDOWN);
    }
    closing_node = n;
    n->closed = 0;
    consensus_close(n->c, on_node_closed, n); /* frames go on to it until closed */
    bool ok = testlib_run_until(rx, closed_pred, 5000);
    n->c = NULL;
    if (graceful) {
        listener_free(n->lis);
        n->lis = NULL;
        while (n->n_accepted) conn_close(n->accepted[0], -ESHUTDOWN);
    }
    return ok;
}

static struct node *leader(void)
{
    struct node *l = NULL;
    for (int i = 0; i < N_NODES; i++)
        if (nodes[i].c && !nodes[i].isolated && consensus_is_leader(nodes[i].c)) {
            if (l) return NULL; /* two leaders claim: wait for the older to step down */
            l = &nodes[i];
        }
    return l;
}

static bool has_leader(void)
{
    struct node *l = leader();
    if (!l) return false;
    /* Every live follower agrees on who leads. */
    for (int i = 0; i < N_NODES; i++)
        if (nodes[i].c && !nodes[i].isolated && consensus_leader(nodes[i].c, NULL) != l->id)
            return false;
    return true;
}

struct prop {
    struct consensus_req req;
    int done;
    int status;
    uint64_t index;
    uint64_t start_ns, lat_ns;
};

static void on_prop(struct consensus_req *req, int status, uint64_t index, void *result)
{
    (void)result;
    struct prop *p = bd_container_of(req, struct prop, req);
    p->done = 1;
    p->status = status;
    p->index = index;
    p->lat_ns = util_mono_ns() - p->start_ns;
}

static uint64_t expected_sum, expected_count;

static int propose_value(struct node *l, struct prop *p, uint64_t v, size_t len)
{
    uint8_t *cmd = calloc(1, len);
    bytes_put_le64(cmd, v);
    memset(p, 0, sizeof(*p));
    p->start_ns = util_mono_ns();
    int rc = consensus_propose(l->c, &p->req, cmd, len, on_prop);
    free(cmd);
    if (rc == 0) {
        expected_sum += v;
        expected_count++;
    }
    return rc;
}

static struct prop *one;
static uint64_t last_lat_ns; /* propose_wait's last commit latency */
static bool one_done(void)
{
    return one->done;
}

/* Propose one value on the leader and wait for its commit. */
static int propose_wait(uint64_t v, size_t len)
{
    if (!testlib_run_until(rx, has_leader, 5000)) return -ETIMEDOUT;
    struct prop p;
    int rc = propose_value(leader(), &p, v, len);
    if (rc < 0) return rc;
    one = &p;
    if (!testlib_run_until(rx, one_done, 5000)) return -ETIMEDOUT;
    last_lat_ns = p.lat_ns; /* P dies with this frame */
    return p.status;
}

/* All live, connected nodes applied everything proposed. */
static bool all_applied(void)
{
    for (int i = 0; i < N_NODES; i++) {
        struct node *n = &nodes[i];
        if (!n->c || n->isolated) continue;
        if (n->count != expected_count || n->sum != expected_sum) return false;
    }
    return true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sum of data fsyncs and entries over the nodes, for the bench lines. */
static void log_totals(struct node *n, uint64_t *fsyncs, uint64_t *entries)
{
    struct consensus_stats st;
    consensus_get_stats(n->c, &st);
    *fsyncs = st.log.fsyncs;
    *entries = st.log.entries;
}

/* ---- Tests ----------------------------------------------------------------- */

/* Three fresh nodes bootstrap the same configuration and elect one leader
 * that every node recognises, within a bound. */
TEST(elect_leader)
{
    rx = reactor_new();
    util_strlcpy(base, tap_tmpdir(), sizeof(base));
    srv_opts = (struct conn_opts){.tag = "test-srv", .frame_timeout_ms = 5000};
    for (int i = 0; i < N_NODES; i++) {
        struct node *n = &nodes[i];
        n->idx = i;
        n->id = (uint64_t)i + 1;
        snprintf(n->dir, sizeof(n->dir), "%s/n%d", base, i + 1);
        conn_auth_init(&n->auth, "rio-test", NULL, n->id, WIRE_ROLE_PROXY, "p");
        n->fsm = (struct raft_fsm){.version = 1, .data = n, .apply = fsm_apply,
                                   .snapshot = fsm_snapshot, .restore = fsm_restore};
        /* util_parse_addr refuses port 0: try random free ports. */
        uint64_t rnd = tap_seed() + (uint64_t)i * 7919;
        int rc = -1;
        for (int tries = 0; tries < 50 && rc < 0; tries++) {
            snprintf(n->addr, sizeof(n->addr), "127.0.0.1:%d",
                     20000 + (int)(util_rand64(&rnd) % 40000));
            rc = listener_new(rx, n->addr, on_accept, n, &n->lis);
        }
        CHECK_EQ(rc, 0);
    }
    srv_opts.auth = &nodes[0].auth; /* same cluster and secret for all */
    for (int i = 0; i < N_NODES; i++) {
        struct cfg_proxy *c = &nodes[i].cfg;
        memset(c, 0, sizeof(*c));
        c->id = nodes[i].id;
        util_strlcpy(c->listen, nodes[i].addr, sizeof(c->listen));
        snprintf(c->admin, sizeof(c->admin), "proxy.%d", i + 1); /* used as the log tag */
        util_strlcpy(c->data_dir, nodes[i].dir, sizeof(c->data_dir));
        for (int j = 0; j < N_NODES; j++) {
            c->peers[j].id = nodes[j].id;
            util_strlcpy(c->peers[j].addr, nodes[j].addr, sizeof(c->peers[j].addr));
        }
        c->n_peers = N_NODES;
        c->election_timeout_ms = ELECTION_MS;
        c->raft_heartbeat_ms = HEARTBEAT_MS;
        c->snapshot_threshold = 256;
        c->snapshot_trailing = 128;
    }
    for (int i = 0; i < N_NODES; i++) CHECK_EQ(start_node(&nodes[i]), 0);
    uint64_t t0 = util_mono_ms();
    CHECK(testlib_run_until(rx, has_leader, 10000));
    printf("# leader %llu elected in %llu ms\n", (unsigned long long)leader()->id,
           (unsigned long long)(util_mono_ms() - t0));
}

/* 1000 commands commit and every FSM ends with the same sum; the first
 * 500 one at a time (latency), the rest with 32 in flight (throughput). */
TEST(apply_1000_commands)
{
    CHECK(testlib_run_until(rx, has_leader, 5000));
    struct node *l = leader();
    uint64_t f0[N_NODES], e0[N_NODES];
    for (int i = 0; i < N_NODES; i++) log_totals(&nodes[i], &f0[i], &e0[i]);
    static uint64_t lat[500];
    uint64_t t0 = util_mono_ns();
    for (int i = 0; i < 500; i++) {
        CHECK_EQ(propose_wait((uint64_t)i + 1, 8), 0);
        lat[i] = last_lat_ns;
    }
    uint64_t qd1_ns = util_mono_ns() - t0;
    qsort(lat, 500, sizeof(lat[0]), cmp_u64);
    printf("# bench: QD1 commit latency, 3 nodes on loopback: p50 %.0f us, p99 %.0f us "
           "(%.0f commits/s)\n",
           (double)lat[250] / 1e3, (double)lat[495] / 1e3, 500 / ((double)qd1_ns / 1e9));
    uint64_t f1[N_NODES], e1[N_NODES];
    for (int i = 0; i < N_NODES; i++) log_totals(&nodes[i], &f1[i], &e1[i]);
    for (int i = 0; i < N_NODES; i++)
        printf("# bench: QD1 %s: %.2f fsyncs per entry (%llu fsyncs, %llu entries)\n",
               &nodes[i] == l ? "leader  " : "follower",
               (double)(f1[i] - f0[i]) / (double)(e1[i] - e0[i] ? e1[i] - e0[i] : 1),
               (unsigned long long)(f1[i] - f0[i]), (unsigned long long)(e1[i] - e0[i]));

    /* 500 more, 32 in flight. */
    static struct prop props[500];
    int submitted = 0, completed = 0, failed = 0;
    t0 = util_mono_ns();
    uint64_t deadline = util_mono_ms() + 20000;
    while (completed < 500 && util_mono_ms() < deadline) {
        while (submitted < 500 && submitted - completed < 32) {
            if (propose_value(l, &props[submitted], 1000 + (uint64_t)submitted, 8) < 0) break;
            submitted++;
        }
        event_base_loop(reactor_base(rx), EVLOOP_ONCE);
        completed = 0;
        failed = 0;
        for (int i = 0; i < submitted; i++) {
            completed += props[i].done;
            failed += props[i].done && props[i].status != 0;
        }
    }
    uint64_t qd32_ns = util_mono_ns() - t0;
    CHECK_EQ(completed, 500);
    CHECK_EQ(failed, 0);
    printf("# bench: QD32 %.0f commits/s (500 commands)\n", 500 / ((double)qd32_ns / 1e9));
    uint64_t f2[N_NODES], e2[N_NODES];
    for (int i = 0; i < N_NODES; i++) log_totals(&nodes[i], &f2[i], &e2[i]);
    for (int i = 0; i < N_NODES; i++)
        printf("# bench: QD32 %s: %.2f fsyncs per entry (%llu fsyncs, %llu entries)\n",
               &nodes[i] == l ? "leader  " : "follower",
               (double)(f2[i] - f1[i]) / (double)(e2[i] - e1[i] ? e2[i] - e1[i] : 1),
               (unsigned long long)(f2[i] - f1[i]), (unsigned long long)(e2[i] - e1[i]));
    CHECK(testlib_run_until(rx, all_applied, 5000));
}

/* A command larger than one frame (an AppendEntries in several parts)
 * commits everywhere. */
TEST(large_command_spans_frames)
{
    CHECK_EQ(propose_wait(77, 300u << 10), 0);
    CHECK(testlib_run_until(rx, all_applied, 5000));
}

static struct node *old_leader;
static bool new_leader(void)
{
    return has_leader() && leader() != old_leader;
}

/* The leader vanishes (partitioned, then stopped): the other two elect a
 * new leader within a few election timeouts and commands go on. */
TEST(leader_failover)
{
    CHECK(testlib_run_until(rx, has_leader, 5000));
    old_leader = leader();
    old_leader->isolated = true;
    uint64_t t0 = util_mono_ms();
    CHECK(testlib_run_until(rx, new_leader, 10 * ELECTION_MS));
    printf("# new leader %llu %llu ms after the old one was cut off\n",
           (unsigned long long)leader()->id, (unsigned long long)(util_mono_ms() - t0));
    CHECK(stop_node(old_leader, false));
    old_leader->isolated = false;
    for (int i = 0; i < 50; i++) CHECK_EQ(propose_wait(5, 8), 0);
    CHECK(testlib_run_until(rx, all_applied, 5000));
}

/* The stopped leader restarts from its data directory (no second
 * bootstrap) and catches up.  (libraft's new leader never heard from it,
 * so it probes from index 1 and sends a snapshot: that is libraft's
 * choice, not ours.) */
TEST(restart_old_leader_catches_up)
{
    CHECK_EQ(start_node(old_leader), 0);
    CHECK(testlib_run_until(rx, all_applied, 10000));
    CHECK(consensus_term(old_leader->c) > 1);
}

/* A follower that misses fewer entries than the leader keeps after its
 * snapshots catches up from the log alone: no InstallSnapshot. */
TEST(follower_catches_up_from_log)
{
    CHECK(testlib_run_until(rx, has_leader, 5000));
    struct node *f = NULL;
    for (int i = 0; i < N_NODES; i++)
        if (nodes[i].c && !consensus_is_leader(nodes[i].c)) f = &nodes[i];
    CHECK(f != NULL);
    CHECK(stop_node(f, false));
    for (int i = 0; i < 20; i++) CHECK_EQ(propose_wait(2, 8), 0);
    CHECK_EQ(start_node(f), 0);
    CHECK(testlib_run_until(rx, all_applied, 10000));
    CHECK_EQ(f->restores, f->restores_at_start);
}

/* A follower that misses more than threshold + trailing entries gets an
 * InstallSnapshot (9 MiB: streamed in PING-paced windows) when it comes
 * back.  The first one finds its disk full (no spool file: dropped with a
 * warning); libraft sends it again. */
TEST(restart_catches_up_from_snapshot)
{
    CHECK(testlib_run_until(rx, has_leader, 5000));
    struct node *f = NULL;
    for (int i = 0; i < N_NODES; i++)
        if (nodes[i].c && !consensus_is_leader(nodes[i].c)) f = &nodes[i];
    CHECK(f != NULL);
    CHECK(stop_node(f, false));
    snap_pad = SNAP_PAD_STREAMED;
    for (int i = 0; i < 600; i++) CHECK_EQ(propose_wait(3, 8), 0);
    spool_fail = 1; /* the first InstallSnapshot finds the follower's disk full */
    CHECK_EQ(start_node(f), 0);
    CHECK(testlib_run_until(rx, all_applied, 30000));
    snap_pad = SNAP_PAD_SMALL;
    CHECK(f->restores > f->restores_at_start);
    struct consensus_stats st, lst;
    consensus_get_stats(f->c, &st);
    consensus_get_stats(leader()->c, &lst);
    printf("# follower restored %llu snapshot(s); log holds snapshots written: %llu; the "
           "leader streamed %llu message(s)\n", (unsigned long long)f->restores,
           (unsigned long long)st.log.snapshots, (unsigned long long)lst.io.streamed);
    CHECK(lst.io.streamed >= 1);
    /* Received through a spool file and restored from its mapping, never
     * reassembled in the heap (snapmem.h); nothing stays mapped. */
    CHECK(f->mapped_restores >= 1);
    CHECK_EQ(spool_fail, 0);
    CHECK_EQ(st.io.drop_spool, 1); /* dropped with a warning, then sent again */
    CHECK(st.io.spooled >= 1);
    uint64_t maps, map_bytes;
    snapmem_counts(&maps, &map_bytes);
    CHECK_EQ(maps, 0);
}

/* Frames from an unknown server id, from another cluster, or claiming a
 * sender other than the connection's HELLO identity never reach libraft. */
TEST(foreign_frames_dropped)
{
    struct node *n = &nodes[0];
    struct consensus_stats before, after;
    consensus_get_stats(n->c, &before);
    uint8_t msg[40] = {0};
    bytes_put_le16(msg, RAFT_IO_TIMEOUT_NOW);
    bytes_put_le16(msg + 2, 1);
    bytes_put_le64(msg + 4, 1000000); /* a huge term: would disrupt if fed to libraft */
    struct wire_raft_req w = {.cluster_hash = n->auth.cluster_hash, .from_id = 99, .to_id = n->id,
                              .part = 0, .parts = 1, .total_len = 28, .chunk_len = 28,
                              .chunk = msg};
    consensus_deliver(n->c, NULL, &w);
    w.from_id = 2;
    w.cluster_hash ^= 1;
    consensus_deliver(n->c, NULL, &w);
    /* A real connection that said HELLO as node 7 but claims to be node 2. */
    struct conn_auth spoof;
    conn_auth_init(&spoof, "rio-test", NULL, 7, WIRE_ROLE_PROXY, "spoof");
    struct conn_opts co = {.tag = "spoof", .auth = &spoof};
    int err = 0;
    static const struct conn_ops spoof_ops = {0};
    struct conn *c = conn_connect(rx, n->addr, &spoof_ops, NULL, &co, &err);
    CHECK(c != NULL);
    testlib_pump(rx, 300);
    w.cluster_hash = n->auth.cluster_hash;
    uint8_t frame[256];
    int flen = wire_encode_raft_req(frame, sizeof(frame), &w);
    CHECK(flen > 0);
    CHECK_EQ(conn_send_oneway(c, WIRE_RAFT, frame, (size_t)flen, NULL), 0);
    testlib_pump(rx, 300);
    conn_close(c, 0);
    consensus_get_stats(n->c, &after);
    CHECK_EQ(after.io.drop_unknown - before.io.drop_unknown, 2);
    CHECK_EQ(after.io.drop_cluster - before.io.drop_cluster, 1);
    CHECK(consensus_term(n->c) < 1000000);
    /* The cluster still works. */
    CHECK_EQ(propose_wait(1, 8), 0);
    CHECK(testlib_run_until(rx, all_applied, 5000));
}

/* Parts out of order, parts that disagree with part 0, a total over the
 * bound and chunks overrunning the announced total are dropped without
 * reaching libraft; a good message after them still gets through. */
TEST(bad_parts_dropped)
{
    struct node *n = &nodes[0];
    struct consensus_stats before, after;
    consensus_get_stats(n->c, &before);
    uint8_t msg[40] = {0};
    bytes_put_le16(msg, RAFT_IO_TIMEOUT_NOW);
    bytes_put_le16(msg + 2, 1);
    bytes_put_le64(msg + 4, 1000000);
    struct wire_raft_req w = {.cluster_hash = n->auth.cluster_hash, .from_id = 2, .to_id = n->id,
                              .part = 1, .parts = 2, .total_len = 28, .chunk_len = 14,
                              .chunk = msg + 14};
    consensus_deliver(n->c, NULL, &w); /* part 1 first */
    w.part = 0;
    w.chunk = msg;
    consensus_deliver(n->c, NULL, &w); /* part 0 ... */
    w.part = 1;
    w.parts = 3;
    consensus_deliver(n->c, NULL, &w); /* ... then a part 1 of another shape */
    w.part = 0;
    w.parts = 2;
    w.total_len = 2ull << 30;          /* over the 1 GiB bound */
    consensus_deliver(n->c, NULL, &w);
    w.total_len = 20;
    w.chunk_len = 14;
    consensus_deliver(n->c, NULL, &w);
    w.part = 1;
    consensus_deliver(n->c, NULL, &w); /* 28 bytes of a 20-byte message */
    w.parts = 1;
    w.part = 0;
    w.total_len = 28;
    w.chunk_len = 27;                  /* one part, short of its total */
    consensus_deliver(n->c, NULL, &w);
    consensus_get_stats(n->c, &after);
    CHECK_EQ(after.io.drop_malformed - before.io.drop_malformed, 5);
    CHECK_EQ(after.io.received, before.io.received);
    CHECK(consensus_term(n->c) < 1000000);
}

/* An InstallSnapshot is spooled to disk, so the heap's 1 GiB bound does
 * not apply to it (a 100 M extent index's snapshot is about 8.4 GiB): part
 * 0 of a 2 GiB one is taken; one over the snapshot bound (1 TiB) is
 * dropped, and so is an AppendEntries of 2 GiB. */
TEST(install_snapshot_bound_is_the_disk)
{
    struct node *n = &nodes[0];
    struct consensus_stats before, after;
    consensus_get_stats(n->c, &before);
    uint8_t msg[64] = {0};
    bytes_put_le16(msg, RAFT_IO_INSTALL_SNAPSHOT);
    bytes_put_le16(msg + 2, 1);
    uint64_t total = 2ull << 30;
    struct wire_raft_req w = {.cluster_hash = n->auth.cluster_hash, .from_id = 2, .to_id = n->id,
                              .part = 0, .parts = (uint32_t)(total / RIO_CHUNK + 1),
                              .total_len = total, .chunk_len = sizeof(msg), .chunk = msg};
    consensus_deliver(n->c, NULL, &w);
    consensus_get_stats(n->c, &after);
    CHECK_EQ(after.io.drop_malformed, before.io.drop_malformed);
    CHECK_EQ(after.io.drop_spool, before.io.drop_spool);
    w.total_len = 2ull << 40;
    consensus_deliver(n->c, NULL, &w); /* abandons the first (its spool closes) */
    bytes_put_le16(msg, RAFT_IO_APPEND_ENTRIES);
    w.total_len = total;
    consensus_deliver(n->c, NULL, &w);
    consensus_get_stats(n->c, &after);
    CHECK_EQ(after.io.drop_malformed - before.io.drop_malformed, 2);
    CHECK_EQ(after.io.received, before.io.received);
    CHECK_EQ(propose_wait(1, 8), 0);
    CHECK(testlib_run_until(rx, all_applied, 5000));
}

/* A clean stop of the leader hands leadership over; then everything stops
 * and frees (the leak checker verifies). */
TEST(clean_stop)
{
    CHECK(testlib_run_until(rx, has_leader, 5000));
    old_leader = leader();
    uint64_t t0 = util_mono_ms();
    CHECK(stop_node(old_leader, true));
    CHECK(testlib_run_until(rx, has_leader, 10 * ELECTION_MS));
    CHECK(leader() != old_leader);
    printf("# clean stop of the leader: new leader %llu after %llu ms\n",
           (unsigned long long)leader()->id, (unsigned long long)(util_mono_ms() - t0));
    for (int i = 0; i < N_NODES; i++)
        if (nodes[i].c) CHECK(stop_node(&nodes[i], true));
    for (int i = 0; i < N_NODES; i++) listener_free(nodes[i].lis);
    testlib_pump(rx, 50);
    reactor_free(rx);
}
