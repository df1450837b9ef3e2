/* proxy.c: the proxy role (DESIGN.md §1, §4, §5): role ops, the wire
 * listener and what arrives on it, and the orderly start and stop of the
 * parts listed in proxy_int.h.
 *
 * Start: open the LMDB index (data_dir/index) -> the FSM adapter over it ->
 * consensus (raft log in data_dir/raft, peers from the config) -> the blob
 * server pool -> links to peer proxies (for PROPOSE) -> the wire listener
 * -> the admin endpoint -> the tick.  Every failure unwinds what was made
 * and says why in one line.
 *
 * Who talks to us on the wire listener, after HELLO:
 *   blob servers: NODE_HEARTBEAT (liveness; registration by the leader);
 *   peer proxies: RAFT frames (to consensus) and PROPOSE (on the leader);
 *   agents: AGENT_HELLO (which agent a connection reaches: snapshot
 *   barriers, proxy_life.c, call it back with VOL_BARRIER) and VOL_*
 *   (proxy_io.c).
 * Peers are told apart by their HELLO role; a RAFT or PROPOSE frame from
 * anything but a proxy listed in our peers is refused.
 *
 * Stop (async): stop accepting and close every connection (requests in
 * flight still complete, their replies dropped), close consensus (proposals
 * end with -ESHUTDOWN; a leader first hands leadership over), free the peer
 * links and finish every command still waiting to retry, fail writes still
 * waiting for blob ids, stop repair, free the blob pool (in-flight puts and
 * gets fail), fail reads still waiting for an index, then the index. */
#include "roles/proxy/proxy.h"
#include "net/tls.h"
#include "roles/proxy/proxy_admin.h"
#include "roles/proxy/proxy_blobs.h"
#include "roles/proxy/proxy_cmd.h"
#include "roles/proxy/proxy_index.h"
#include "roles/proxy/proxy_int.h"
#include "roles/proxy/proxy_io.h"
#include "roles/proxy/proxy_mgmt.h"
#include "roles/proxy/proxy_move.h"
#include "roles/proxy/proxy_peers.h"
#include "roles/proxy/proxy_repair.h"
#include "roles/proxy/proxy_shape.h"
#include "roles/proxy/proxy_view.h"
#include "base/turnq.h"
#include "roles/proxy/proxy_flatten.h"
#include "roles/proxy/proxy_rewrite.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROXY_TICK_MS 250

struct proxy_conn {
    struct proxy *p;
    struct conn *c;
    struct proxy_conn *prev, *next;
    char agent[WIRE_ID_MAX + 1]; /* AGENT_HELLO's agent id; "" until then */
};

/* ---- the wire listener ---------------------------------------------------------- */

/* A proxy that may send RAFT and PROPOSE frames: a member of the Raft
 * configuration (which grows and shrinks, consensus.h), or a peer of the
 * config file (a joining proxy hears from those first). */
static bool is_peer(struct proxy *p, uint64_t id)
{
    return proxy_peers_known(p, id);
}

struct propose {
    struct consensus_req creq;
    struct conn *c;
    struct wire_hdr hdr;
    uint64_t index;
    bool when_decided;         /* a write batch: see batch_kick */
};

static void on_propose_applied(struct fsm_pending *fp, void *arg)
{
    struct propose *pp = arg;
    if (fp->err) {
        conn_reply_error(pp->c, &pp->hdr, -EIO, 0, "the index writer failed");
        free(pp);
        return;
    }
    uint8_t rbuf[IDXCMD_RESULT_MAX_LEN];
    int rn = idxcmd_encode_result(rbuf, sizeof(rbuf), &fp->res);
    if (rn < 0) {
        conn_reply_error(pp->c, &pp->hdr, -EIO, 0, "result does not encode");
    } else {
        struct wire_propose_resp r = {.raft_index = pp->index, .result_len = (uint32_t)rn,
                                      .result = rbuf};
        uint8_t fields[IDXCMD_RESULT_MAX_LEN + 32];
        int n = wire_encode_propose_resp(fields, sizeof(fields), &r);
        conn_reply(pp->c, &pp->hdr, fields, (size_t)n, NULL);
    }
    free(pp);
}

static void on_proposed(struct consensus_req *req, int status, uint64_t index, void *result)
{
    struct propose *pp = req->data;
    if (status == 0) {
        /* Answer once applied here, like a local command (proxy_cmd.c). */
        pp->index = index;
        if (pp->when_decided) fsm_pending_wait_decided(result, on_propose_applied, pp);
        else fsm_pending_wait(result, on_propose_applied, pp);
        return;
    }
    /* Lost leadership or stopping: the forwarding proxy retries. */
    conn_reply_error(pp->c, &pp->hdr, status == -EIO ? -EIO : -BD_ENOTLEADER, 0,
                     "not committed: %s", bd_strerror(status));
    free(pp);
}

static void handle_propose(struct proxy *p, struct conn *c, struct conn_frame *f)
{
    struct wire_propose_req m;
    struct idxcmd cmd;
    if (wire_decode_propose_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0 ||
        idxcmd_decode(m.cmd, m.cmd_len, &cmd) < 0) {
        /* Never propose bytes that are not a valid command (C17). */
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed PROPOSE");
        return;
    }
    if (!consensus_is_leader(p->cons)) {
        uint64_t leader = consensus_leader(p->cons, NULL);
        conn_reply_error(c, &f->hdr, -BD_ENOTLEADER, leader, "not the leader");
        return;
    }
    struct propose *pp = calloc(1, sizeof(*pp));
    if (!pp) {
        conn_reply_error(c, &f->hdr, -ENOMEM, 0, "out of memory");
        return;
    }
    pp->c = c;
    pp->hdr = f->hdr;
    pp->when_decided = cmd.type == IDXCMD_WRITE_BATCH;
    pp->creq.data = pp;
    int rc = consensus_propose(p->cons, &pp->creq, m.cmd, m.cmd_len, on_proposed);
    if (rc < 0) {
        free(pp);
        conn_reply_error(c, &f->hdr, rc, consensus_leader(p->cons, NULL), "propose: %s",
                         bd_strerror(rc));
    }
}

static void handle_heartbeat(struct proxy *p, struct conn *c, struct conn_frame *f)
{
    struct wire_node_heartbeat_req hb;
    if (wire_decode_node_heartbeat_req(f->body, f->hdr.len, f->hdr.payload_len, &hb) < 0) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "malformed NODE_HEARTBEAT");
        return;
    }
    /* A blob server speaks only for itself: a heartbeat names the node
     * whose address later puts go to. */
    if (conn_peer_identity(c) && hb.node_id != conn_peer_id(c)) {
        log_warn(p->tag, "wire %s: refused a heartbeat for node %llu from blob server %llu",
                 conn_peer(c), (unsigned long long)hb.node_id,
                 (unsigned long long)conn_peer_id(c));
        conn_reply_error(c, &f->hdr, -EACCES, 0, "a blob server heartbeats for itself only");
        return;
    }
    proxy_mgmt_heartbeat(p, &hb);
    /* The group's addresses, so a blob server heartbeats to proxies added
     * after its config file was written (and stops with removed ones). */
    char list[RIO_MAX_PEERS * (CFG_ADDR_MAX + 1)] = "";
    struct consensus_server srv[RIO_MAX_PEERS];
    unsigned ns = BD_MIN(consensus_servers(p->cons, srv, RIO_MAX_PEERS), (unsigned)RIO_MAX_PEERS);
    size_t used = 0;
    for (unsigned i = 0; i < ns; i++)
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", used ? "," : "",
                                 srv[i].addr);
    struct wire_node_heartbeat_resp r = {.leader_id = consensus_leader(p->cons, NULL),
                                         .proxies = wire_cstr(list)};
    uint8_t buf[sizeof(list) + 32];
    int n = wire_encode_node_heartbeat_resp(buf, sizeof(buf), &r);
    if (n < 0) {
        r.proxies = wire_cstr("");
        n = wire_encode_node_heartbeat_resp(buf, sizeof(buf), &r);
    }
    conn_reply(c, &f->hdr, buf, (size_t)n, NULL);
}

static void handle_agent_hello(struct proxy_conn *pc, struct conn_frame *f)
{
    struct proxy *p = pc->p;
    struct conn *c = pc->c;
    struct wire_agent_hello_req m;
    char agent[WIRE_ID_MAX + 1];
    if (conn_peer_role(c) != WIRE_ROLE_AGENT ||
        wire_decode_agent_hello_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0 ||
        !wire_str_copy(m.agent_id, agent, sizeof(agent))) {
        log_warn(p->tag, "wire %s: dropped an AGENT_HELLO (not an agent, or malformed)",
                 conn_peer(c));
        return;
    }
    /* With TLS an agent speaks only for itself, as in VOL_ATTACH. */
    const struct tls_identity *id = conn_peer_identity(c);
    if (id && strcmp(id->id, agent) != 0) {
        log_warn(p->tag, "wire %s: refused AGENT_HELLO as \"%s\": its certificate names \"%s\"",
                 conn_peer(c), agent, id->id);
        return;
    }
    util_strlcpy(pc->agent, agent, sizeof(pc->agent));
}

struct conn *proxy_agent_conn(struct proxy *p, const char *agent)
{
    /* New connections go to the head of the list: the first match is the
     * newest, the one an agent that reconnected uses now. */
    for (struct proxy_conn *pc = p->conns; pc; pc = pc->next)
        if (pc->agent[0] && strcmp(pc->agent, agent) == 0 && conn_is_up(pc->c)) return pc->c;
    return NULL;
}

static void on_request(struct conn *c, struct conn_frame *f, void *arg)
{
    struct proxy_conn *pc = arg;
    struct proxy *p = pc->p;
    uint16_t role = conn_peer_role(c);
    if (p->stopping) {
        if (!(f->hdr.flags & WIRE_F_ONEWAY))
            conn_reply_error(c, &f->hdr, -ESHUTDOWN, 0, "proxy stopping");
        return;
    }
    switch (f->hdr.type) {
    case WIRE_RAFT: {
        struct wire_raft_req m;
        if (role == WIRE_ROLE_PROXY && is_peer(p, conn_peer_id(c)) &&
            wire_decode_raft_req(f->body, f->hdr.len, f->hdr.payload_len, &m) == 0)
            consensus_deliver(p->cons, c, &m);
        else
            log_warn(p->tag, "dropped a RAFT frame from %s (not a peer proxy, or malformed)",
                     conn_peer(c));
        if (!(f->hdr.flags & WIRE_F_ONEWAY))
            conn_reply_error(c, &f->hdr, -EINVAL, 0, "RAFT frames are oneway");
        return;
    }
    case WIRE_PROPOSE:
        if (role != WIRE_ROLE_PROXY || !is_peer(p, conn_peer_id(c))) {
            conn_reply_error(c, &f->hdr, -EACCES, 0, "PROPOSE is for peer proxies");
            return;
        }
        handle_propose(p, c, f);
        return;
    case WIRE_AGENT_HELLO:
        handle_agent_hello(pc, f);
        if (!(f->hdr.flags & WIRE_F_ONEWAY))
            conn_reply_error(c, &f->hdr, -EINVAL, 0, "AGENT_HELLO is oneway");
        return;
    case WIRE_NODE_HEARTBEAT:
        if (role != WIRE_ROLE_BLOB) {
            conn_reply_error(c, &f->hdr, -EACCES, 0, "heartbeats come from blob servers");
            return;
        }
        handle_heartbeat(p, c, f);
        return;
    default:
        /* The data path is for agents, and for peer proxies forwarding
         * an agent's request. */
        if (role != WIRE_ROLE_AGENT && role != WIRE_ROLE_PROXY) {
            if (!(f->hdr.flags & WIRE_F_ONEWAY))
                conn_reply_error(c, &f->hdr, -EACCES, 0, "%s is for agents",
                                 wire_type_name(f->hdr.type));
            return;
        }
        if (proxy_io_handle(p, c, f)) return;
        if (!(f->hdr.flags & WIRE_F_ONEWAY))
            conn_reply_error(c, &f->hdr, -ENOTSUP, 0, "%s is not served by a proxy",
                             wire_type_name(f->hdr.type));
    }
}

static void on_close(struct conn *c, int err, void *arg)
{
    (void)c;
    (void)err;
    struct proxy_conn *pc = arg;
    struct proxy *p = pc->p;
    if (pc->prev) pc->prev->next = pc->next;
    else p->conns = pc->next;
    if (pc->next) pc->next->prev = pc->prev;
    free(pc);
}

static const struct conn_ops srv_ops = {.on_request = on_request, .on_close = on_close};

static void on_accept(int fd, void *arg)
{
    struct proxy *p = arg;
    struct proxy_conn *pc = calloc(1, sizeof(*pc));
    if (!pc) {
        close(fd);
        return;
    }
    pc->p = p;
    pc->c = conn_accept(p->rx, fd, &srv_ops, pc, &p->srv_opts);
    if (!pc->c) {
        free(pc);
        return;
    }
    pc->next = p->conns;
    if (p->conns) p->conns->prev = pc;
    p->conns = pc;
}

/* ---- tick, start, stop -------------------------------------------------------------- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct proxy *p = arg;
    if (!p->stopping) {
        proxy_peers_sync(p);
        proxy_mgmt_tick(p);
        proxy_repair_tick(p);
        proxy_move_tick(p);
        proxy_shape_tick(p);
        proxy_rewrite_tick(p);
        proxy_flatten_tick(p);
        turnq_sweep(p->wq);
    }
}

static void on_applied(void *arg, uint64_t index, const struct idxcmd_result *res)
{
    proxy_index_on_applied(arg, res);
    proxy_view_on_applied(arg, res);
    proxy_mgmt_on_applied(arg, index, res);
}

static void bind_fsm(void *arg, struct raft *raft)
{
    struct proxy *p = arg;
    fsm_raft_bind(&p->fr, raft);
}

static double g_term(void *a)
{
    return (double)consensus_term(((struct proxy *)a)->cons);
}
static double g_commit(void *a)
{
    return (double)consensus_commit_index(((struct proxy *)a)->cons);
}
static double g_applied(void *a)
{
    return (double)consensus_last_applied(((struct proxy *)a)->cons);
}
static double g_leader(void *a)
{
    return consensus_is_leader(((struct proxy *)a)->cons) ? 1 : 0;
}
static double g_blobs_up(void *a)
{
    return (double)proxy_blobs_up_count(((struct proxy *)a)->blobs);
}

static struct turnq_stats wq_stats(void *a)
{
    struct turnq_stats st = {0};
    struct proxy *p = a;
    if (p->wq) turnq_stats(p->wq, &st);
    return st;
}
static double g_wq_flows(void *a)
{
    return (double)wq_stats(a).flows;
}
static double g_wq_queued(void *a)
{
    return (double)wq_stats(a).queued;
}
static double g_wq_in_flight(void *a)
{
    return (double)wq_stats(a).in_flight;
}
static double c_wq_waits(void *a)
{
    return (double)wq_stats(a).waits;
}
static double c_wq_wait_s(void *a)
{
    return (double)wq_stats(a).wait_us / 1e6;
}

static void metrics_init(struct proxy *p)
{
    char l[64];
    snprintf(l, sizeof(l), "role=\"%s\"", p->tag);
    p->h_write = metrics_hist("blockd_proxy_write_seconds", "Extent write latency", l);
    p->h_read = metrics_hist("blockd_proxy_read_seconds", "Range read latency", l);
    p->h_commit = metrics_hist("blockd_proxy_commit_seconds", "WRITE_BATCH commit latency", l);
    p->c_writes = metrics_counter("blockd_proxy_writes_total", "Extent writes", l);
    p->c_reads = metrics_counter("blockd_proxy_reads_total", "Range reads", l);
    p->c_leases = metrics_counter("blockd_proxy_map_leases_total",
                                  "Map leases granted (VOL_LEASE answers)", l);
    p->c_write_bytes = metrics_counter("blockd_proxy_write_bytes_total", "Bytes written", l);
    p->c_read_bytes = metrics_counter("blockd_proxy_read_bytes_total", "Bytes read", l);
    p->c_fenced = metrics_counter("blockd_proxy_fenced_total", "Writes refused as fenced", l);
    p->c_batches = metrics_counter("blockd_proxy_write_batches_total", "WRITE_BATCH entries", l);
    p->c_batched_writes =
        metrics_counter("blockd_proxy_batched_writes_total", "Writes in WRITE_BATCH entries", l);
    p->c_errors =
        metrics_counter("blockd_proxy_errors_total", "Requests answered with an error", l);
    metrics_gauge("blockd_raft_term", "Raft term", l, g_term, p, p);
    metrics_gauge("blockd_raft_commit_index", "Raft commit index", l, g_commit, p, p);
    metrics_gauge("blockd_raft_applied_index", "Raft applied index", l, g_applied, p, p);
    metrics_gauge("blockd_raft_is_leader", "1 if this proxy leads", l, g_leader, p, p);
    metrics_gauge("blockd_proxy_blob_servers_up", "Blob servers heard from recently", l,
                  g_blobs_up, p, p);
    metrics_gauge("blockd_proxy_write_turn_flows", "Volumes that wrote here recently (their turns, base/turnq.h)", l,
                  g_wq_flows, p, p);
    metrics_gauge("blockd_proxy_write_turn_queued", "Writes waiting their volume's turn", l,
                  g_wq_queued, p, p);
    metrics_gauge("blockd_proxy_write_turn_in_flight_bytes",
                  "Payload bytes of writes started and not yet answered", l, g_wq_in_flight, p, p);
    metrics_counter_fn("blockd_proxy_write_turn_waits_total",
                       "Writes that waited for their volume's turn", l, c_wq_waits, p, p);
    metrics_counter_fn("blockd_proxy_write_turn_wait_seconds_total",
                       "Time writes waited for their volume's turn", l, c_wq_wait_s, p, p);
}

static void proxy_teardown(struct proxy *p)
{
    if (p->tick_ev) event_free(p->tick_ev);
    p->tick_ev = NULL;
    proxy_peers_free(p);
    /* Writes waiting their turn fail first: the ones in flight finishing
     * below would otherwise start them on a pool being freed. */
    if (p->wq) turnq_stop(p->wq, -ESHUTDOWN);
    proxy_cmd_fail_all(p);
    proxy_mgmt_lease_cancel(p, -ESHUTDOWN);
    proxy_repair_stop(p);
    proxy_move_stop(p);
    /* Freeing the pool fails every put, get and delete in flight; their
     * callbacks may queue more index commands (failed at once: stopping),
     * and GC's deletes still use the management state, freed after. */
    proxy_blobs_free(p->blobs);
    p->blobs = NULL;
    proxy_cmd_fail_all(p);
    proxy_mgmt_lease_cancel(p, -ESHUTDOWN);
    proxy_mgmt_stop(p); /* fails reads waiting for an index */
    proxy_view_fini(p);
    proxy_shape_fini(p);
    proxy_rewrite_stop(p);
    proxy_flatten_stop(p);
    proxy_index_fini(p);
    turnq_free(p->wq); /* after every write in flight was answered */
    p->wq = NULL;
    if (p->rd) index_reader_free(p->rd);
    p->rd = NULL;
    fsm_raft_fini(&p->fr);
    if (p->ix) index_close(p->ix);
    p->ix = NULL;
    metrics_remove_owner(p);
}

static int proxy_start(struct role *r, struct reactor *rx, const struct cfg *top,
                       unsigned instance, char *err, size_t errlen)
{
    const struct cfg_proxy *cfg = &top->proxies[instance];
    snprintf(r->tag, sizeof(r->tag), "proxy.%llu", (unsigned long long)cfg->id);
    struct proxy *p = calloc(1, sizeof(*p));
    if (!p) return -ENOMEM;
    r->impl = p;
    p->role = r;
    p->rx = rx;
    p->top = top;
    p->cfg = cfg;
    p->tag = r->tag;
    p->place_rng = util_seed() ^ cfg->id;
    int rc;
    if (!top->insecure_plaintext) {
        char id[24];
        snprintf(id, sizeof(id), "%llu", (unsigned long long)cfg->id);
        struct tls_files tf = {.ca_file = top->tls_ca_file, .cert_file = cfg->cert_file,
                               .key_file = cfg->key_file};
        rc = tls_ctx_for(&tf, top->cluster_id, WIRE_ROLE_PROXY, id, &p->tls, err, errlen);
        if (rc < 0) goto fail;
    }
    conn_auth_init(&p->auth, top->cluster_id, p->tls, cfg->id, WIRE_ROLE_PROXY, r->tag);
    struct conn_fault fault = {.socket_failure_every = cfg->fault.socket_failure_every,
                               .delay_ms = cfg->fault.delay_ms};
    p->limits = (struct conn_limits){.max_conns = (unsigned)cfg->max_connections,
                                     .max_unauth = (unsigned)cfg->max_handshakes};
    p->srv_opts = (struct conn_opts){.tag = r->tag, .auth = &p->auth, .fault = fault,
                                     .limits = &p->limits};
    p->peer_opts = (struct conn_opts){.tag = r->tag, .auth = &p->auth, .connect_timeout_ms = 2000,
                                      .expect_role = WIRE_ROLE_PROXY};
    p->blob_opts = p->peer_opts;
    p->blob_opts.expect_role = WIRE_ROLE_BLOB;
    metrics_init(p);

    char dir[CFG_PATH_MAX + 16];
    snprintf(dir, sizeof(dir), "%s/index", cfg->data_dir);
    struct index_opts io = {.dir = dir, .cluster_id = top->cluster_id,
                            .map_size = cfg->index_map_bytes, .allow_tmpfs = cfg->allow_tmpfs};
    rc = index_open(&io, &p->ix, err, errlen);
    if (rc < 0) goto fail;
    rc = index_reader_new(p->ix, &p->rd);
    if (rc < 0) {
        snprintf(err, errlen, "index reader: %s", bd_strerror(rc));
        goto fail;
    }
    rc = fsm_raft_init(&p->fr, p->ix);
    if (rc < 0) {
        snprintf(err, errlen, "fsm: %s", bd_strerror(rc));
        goto fail;
    }
    /* Snapshot dumps spool in the raft log's directory (consensus's
     * default, which raftlog_open creates before any snapshot). */
    char raft_dir[sizeof(dir) + 16];
    snprintf(raft_dir, sizeof(raft_dir), "%s/raft", cfg->data_dir);
    rc = fsm_raft_set_spool(&p->fr, raft_dir, NULL);
    if (rc < 0) {
        snprintf(err, errlen, "fsm: %s", bd_strerror(rc));
        goto fail;
    }
    p->fr.on_applied = on_applied;
    p->fr.arg = p;
    rc = fsm_raft_set_async(&p->fr, rx);
    if (rc < 0) {
        snprintf(err, errlen, "index writer thread: %s", bd_strerror(rc));
        goto fail;
    }
    rc = proxy_mgmt_start(p);
    if (rc < 0) goto fail;
    rc = proxy_repair_start(p);
    if (rc < 0) goto fail;
    rc = proxy_move_start(p);
    if (rc < 0) goto fail;
    rc = proxy_rewrite_start(p);
    if (rc < 0) goto fail;
    rc = proxy_flatten_start(p);
    if (rc < 0) goto fail;
    p->blobs = proxy_blobs_new(rx, &p->blob_opts, cfg->node_timeout_ms, 5000);
    p->wq = turnq_new(cfg->write_turn_cap_bytes);
    if (!p->blobs || !p->wq) {
        rc = -ENOMEM;
        goto fail;
    }
    uint64_t applied = 0; /* consensus refuses an empty raft log under an applied index */
    if (index_read_begin(p->rd) == 0) {
        applied = index_applied(p->rd);
        index_read_end(p->rd);
    }
    struct consensus_opts co = {.cfg = cfg, .auth = &p->auth, .fsm = &p->fr.fsm,
                                .fsm_applied = applied,
                                .tag = r->tag, .on_init = bind_fsm, .on_init_arg = p,
                                .install = fsm_raft_install, .install_arg = &p->fr,
                                .join = cfg->join};
    rc = consensus_new(rx, &co, &p->cons, err, errlen);
    if (rc < 0) goto fail;
    proxy_peers_sync(p); /* links to the configuration's members and the file's peers */
    rc = listener_new(rx, cfg->listen, on_accept, p, &p->lis);
    if (rc < 0) {
        snprintf(err, errlen, "listen on %s: %s", cfg->listen, bd_strerror(rc));
        goto fail_cons;
    }
    if (cfg->admin[0]) {
        rc = proxy_admin_start(p);
        if (rc < 0) {
            snprintf(err, errlen, "admin on %s: %s", cfg->admin, bd_strerror(rc));
            goto fail_cons;
        }
    }
    p->tick_ev = event_new(reactor_base(rx), -1, EV_PERSIST, on_tick, p);
    struct timeval tv = {0, PROXY_TICK_MS * 1000};
    if (!p->tick_ev || event_add(p->tick_ev, &tv) < 0) {
        rc = -ENOMEM;
        goto fail_cons;
    }
    log_info(r->tag, "serving wire on %s, admin on %s; %u raft peers", cfg->listen,
             cfg->admin[0] ? cfg->admin : "(none)", cfg->n_peers);
    return 0;

fail_cons:
    /* consensus_close is asynchronous; a failed start exits the process,
     * so release it in the background and report now. */
    proxy_admin_stop(p);
    listener_free(p->lis);
    p->lis = NULL;
    consensus_close(p->cons, NULL, NULL);
    p->cons = NULL;
fail:
    if (!err[0]) snprintf(err, errlen, "%s", bd_strerror(rc));
    proxy_teardown(p);
    tls_ctx_free(p->tls);
    free(p);
    r->impl = NULL;
    return rc < 0 ? rc : -EIO;
}

static void on_cons_closed(void *arg)
{
    struct proxy *p = arg;
    p->cons = NULL;
    proxy_teardown(p);
    p->stop_done(p->role);
}

static void proxy_stop(struct role *r, void (*done)(struct role *r))
{
    struct proxy *p = r->impl;
    p->stopping = true;
    p->stop_done = done;
    if (p->tick_ev) event_del(p->tick_ev);
    listener_free(p->lis);
    p->lis = NULL;
    proxy_shape_stop(p);
    proxy_admin_stop(p);
    while (p->conns) {
        struct proxy_conn *pc = p->conns;
        conn_close(pc->c, -ESHUTDOWN); /* on_close unlinks pc */
    }
    consensus_close(p->cons, on_cons_closed, p);
}

static void proxy_free(struct role *r)
{
    struct proxy *p = r->impl;
    if (p) tls_ctx_free(p->tls); /* every conn is gone: each SSL held its own reference */
    free(p);
    r->impl = NULL;
}

/* Ready (role.h) once this proxy is back in Raft and caught up: it knows
 * a leader (itself or a peer), and has applied the log up to the commit
 * index it knew at that moment.  Before that its reads would wait on
 * entries it has not applied, and a rolling restart must not take the next
 * proxy down while this one cannot vote with what it knows.  The target is
 * taken once: a follower learns the leader's commit index from its first
 * AppendEntries, capped at what its own log holds (Raft, Figure 2), so
 * after a long outage it may still be fetching entries when it says ready;
 * a deployment that must know checks /v1/status (applied_index) against
 * the leader's commit_index, as the ansible role does. */
static bool proxy_ready(struct role *r, char *why, size_t whylen)
{
    struct proxy *p = r->impl;
    if (!p || !p->cons) {
        snprintf(why, whylen, "starting");
        return false;
    }
    if (consensus_leader(p->cons, NULL) == 0) {
        snprintf(why, whylen, "no Raft leader known (term %llu, %s)",
                 (unsigned long long)consensus_term(p->cons),
                 consensus_state_name(consensus_state(p->cons)));
        return false;
    }
    if (!p->has_ready_target) {
        p->ready_target = consensus_commit_index(p->cons);
        p->has_ready_target = true;
    }
    uint64_t applied = consensus_last_applied(p->cons);
    if (applied < p->ready_target) {
        snprintf(why, whylen, "applying the Raft log: %llu of %llu",
                 (unsigned long long)applied, (unsigned long long)p->ready_target);
        return false;
    }
    return true;
}

static unsigned proxy_instances(const struct cfg *cfg)
{
    return cfg->n_proxies;
}

const struct role_ops proxy_role_ops = {
    .name = "proxy",
    .instances = proxy_instances,
    .start = proxy_start,
    .stop = proxy_stop,
    .free = proxy_free,
    .ready = proxy_ready,
};
