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
 *   agents: VOL_* (proxy_io.c).
 * Peers are told apart by their HELLO role; a RAFT or PROPOSE frame from
 * anything but a proxy listed in our peers is refused.
 *
 * Stop (async): stop accepting and close every connection (requests in
 * flight still complete, their replies dropped), close consensus (proposals
 * end with -ESHUTDOWN; a leader first hands leadership over), free the peer
 * links and finish every command still waiting to retry, fail reads still
 * waiting for an index, free the blob pool (in-flight puts and gets fail),
 * then the index. */
#include "proxy.h"
#include "proxy_int.h"
#include "proxy_repair.h"
#include "../bd.h"
#include "../log.h"
#include "../util.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROXY_TICK_MS 250

struct pconn {
    struct proxy *p;
    struct conn *c;
    struct pconn *prev, *next;
};

bool proxy_has_leader(struct proxy *p)
{
    return p->cons && consensus_leader(p->cons, NULL) != 0;
}

int proxy_read_begin(struct proxy *p)
{
    return index_read_begin(p->rd);
}

void proxy_read_end(struct proxy *p)
{
    index_read_end(p->rd);
}

/* ---- the wire listener ---------------------------------------------------------- */

static bool is_peer(struct proxy *p, uint64_t id)
{
    for (unsigned i = 0; i < p->cfg->n_peers; i++)
        if (p->cfg->peers[i].id == id && id != p->cfg->id) return true;
    return false;
}

struct ppropose {
    struct consensus_req creq;
    struct conn *c;
    struct wire_hdr hdr;
    uint64_t index;
    bool when_decided;         /* a write batch: see pbatch_kick */
};

static void on_propose_applied(struct fsm_pending *fp, void *arg)
{
    struct ppropose *pp = arg;
    if (fp->err) {
        conn_reply_error(pp->c, &pp->hdr, -EIO, 0, "the index writer failed");
        free(pp);
        return;
    }
    uint8_t rbuf[IDX_RESULT_MAX_LEN];
    int rn = idxcmd_encode_result(rbuf, sizeof(rbuf), &fp->res);
    if (rn < 0) {
        conn_reply_error(pp->c, &pp->hdr, -EIO, 0, "result does not encode");
    } else {
        struct wire_propose_resp r = {.raft_index = pp->index, .result_len = (uint32_t)rn,
                                      .result = rbuf};
        uint8_t fields[IDX_RESULT_MAX_LEN + 32];
        int n = wire_encode_propose_resp(fields, sizeof(fields), &r);
        conn_reply(pp->c, &pp->hdr, fields, (size_t)n, NULL);
    }
    free(pp);
}

static void on_proposed(struct consensus_req *req, int status, uint64_t index, void *result)
{
    struct ppropose *pp = req->data;
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
    struct ppropose *pp = calloc(1, sizeof(*pp));
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
    pmgmt_heartbeat(p, &hb);
    struct wire_node_heartbeat_resp r = {.leader_id = consensus_leader(p->cons, NULL)};
    uint8_t buf[16];
    int n = wire_encode_node_heartbeat_resp(buf, sizeof(buf), &r);
    conn_reply(c, &f->hdr, buf, (size_t)n, NULL);
}

static void on_request(struct conn *c, struct conn_frame *f, void *arg)
{
    struct pconn *pc = arg;
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
    case WIRE_NODE_HEARTBEAT:
        if (role != WIRE_ROLE_BLOB) {
            conn_reply_error(c, &f->hdr, -EACCES, 0, "heartbeats come from blob servers");
            return;
        }
        handle_heartbeat(p, c, f);
        return;
    default:
        if (pio_handle(p, c, f)) return;
        if (!(f->hdr.flags & WIRE_F_ONEWAY))
            conn_reply_error(c, &f->hdr, -ENOTSUP, 0, "%s is not served by a proxy",
                             wire_type_name(f->hdr.type));
    }
}

static void on_close(struct conn *c, int err, void *arg)
{
    (void)c;
    (void)err;
    struct pconn *pc = arg;
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
    struct pconn *pc = calloc(1, sizeof(*pc));
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

/* ---- status ------------------------------------------------------------------------ */

void proxy_status_json(struct proxy *p, cJSON *o, bool full_scan)
{
    cJSON_AddStringToObject(o, "role", "proxy");
    cJSON_AddNumberToObject(o, "id", (double)p->cfg->id);
    cJSON_AddStringToObject(o, "version", BD_VERSION);
    cJSON *r = cJSON_AddObjectToObject(o, "raft");
    const char *laddr = NULL;
    uint64_t leader = consensus_leader(p->cons, &laddr);
    cJSON_AddStringToObject(r, "state", consensus_state_name(consensus_state(p->cons)));
    cJSON_AddNumberToObject(r, "term", (double)consensus_term(p->cons));
    cJSON_AddNumberToObject(r, "commit_index", (double)consensus_commit_index(p->cons));
    cJSON_AddNumberToObject(r, "applied_index", (double)consensus_last_applied(p->cons));
    cJSON_AddNumberToObject(r, "last_index", (double)consensus_last_index(p->cons));
    cJSON_AddNumberToObject(r, "leader_id", (double)leader);
    cJSON_AddStringToObject(r, "leader_addr", laddr ? laddr : "");
    cJSON *peers = cJSON_AddArrayToObject(r, "peers");
    for (unsigned i = 0; i < p->cfg->n_peers; i++) {
        cJSON *pe = cJSON_CreateObject();
        cJSON_AddNumberToObject(pe, "id", (double)p->cfg->peers[i].id);
        cJSON_AddStringToObject(pe, "addr", p->cfg->peers[i].addr);
        cJSON_AddBoolToObject(pe, "leader", p->cfg->peers[i].id == leader);
        cJSON_AddItemToArray(peers, pe);
    }
    if (!proxy_read_begin(p)) {
        struct index_stats st;
        uint64_t digest = 0;
        cJSON *ix = cJSON_AddObjectToObject(o, "index");
        cJSON_AddNumberToObject(ix, "applied_index", (double)index_applied(p->rd));
        if (index_stats(p->rd, &st) == 0) {
            cJSON_AddNumberToObject(ix, "volumes", (double)st.volumes);
            cJSON_AddNumberToObject(ix, "extents", (double)st.extents);
            cJSON_AddNumberToObject(ix, "blobs", (double)st.blobs);
            cJSON_AddNumberToObject(ix, "partitions", (double)st.partitions);
            cJSON_AddNumberToObject(ix, "nodes", (double)st.nodes);
            cJSON_AddNumberToObject(ix, "gc_pending", (double)st.gc);
            cJSON_AddNumberToObject(ix, "bytes", (double)st.pages * st.page_size);
            cJSON_AddNumberToObject(ix, "bytes_per_extent",
                                    st.extents ? (double)st.pages * st.page_size /
                                                     (double)st.extents
                                               : 0);
        }
        struct index_space sp;
        if (full_scan && index_space(p->rd, &sp) == 0) {
            /* What the blob servers hold for the index (per copy) against
             * what volumes and snapshots address: partly overwritten blobs
             * are the difference (README "Performance"). */
            cJSON_AddNumberToObject(ix, "blob_bytes", (double)sp.blob_bytes);
            cJSON_AddNumberToObject(ix, "dead_blob_bytes", (double)sp.dead_bytes);
            cJSON_AddNumberToObject(ix, "data_bytes", (double)sp.data_bytes);
            cJSON_AddNumberToObject(ix, "space_amplification",
                                    sp.data_bytes ? (double)sp.blob_bytes / (double)sp.data_bytes
                                                  : 0);
        }
        if (full_scan && index_digest(p->rd, &digest) == 0) {
            char hex[24];
            snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)digest);
            cJSON_AddStringToObject(ix, "digest", hex);
        }
        proxy_read_end(p);
    }
    cJSON_AddNumberToObject(o, "blob_servers_up", pblobs_up_count(p->blobs));
    pmgmt_status(p, o);
    prepair_status(p, o);
}

/* ---- tick, start, stop -------------------------------------------------------------- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct proxy *p = arg;
    if (!p->stopping) {
        pmgmt_tick(p);
        prepair_tick(p);
    }
}

static void on_applied(void *arg, uint64_t index, const struct idx_result *res)
{
    pmgmt_on_applied(arg, index, res);
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
    return (double)pblobs_up_count(((struct proxy *)a)->blobs);
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
    p->c_write_bytes = metrics_counter("blockd_proxy_write_bytes_total", "Bytes written", l);
    p->c_read_bytes = metrics_counter("blockd_proxy_read_bytes_total", "Bytes read", l);
    p->c_fenced = metrics_counter("blockd_proxy_fenced_total", "Writes refused as fenced", l);
    p->c_batches = metrics_counter("blockd_proxy_write_batches_total", "WRITE_BATCH entries", l);
    p->c_batched_writes =
        metrics_counter("blockd_proxy_batched_writes_total", "Writes in WRITE_BATCH entries", l);
    p->c_errors = metrics_counter("blockd_proxy_errors_total", "Requests answered with an error", l);
    metrics_gauge("blockd_raft_term", "Raft term", l, g_term, p, p);
    metrics_gauge("blockd_raft_commit_index", "Raft commit index", l, g_commit, p, p);
    metrics_gauge("blockd_raft_applied_index", "Raft applied index", l, g_applied, p, p);
    metrics_gauge("blockd_raft_is_leader", "1 if this proxy leads", l, g_leader, p, p);
    metrics_gauge("blockd_proxy_blob_servers_up", "Blob servers heard from recently", l,
                  g_blobs_up, p, p);
}

static const struct link_ops peer_link_ops = {0};

static void proxy_teardown(struct proxy *p)
{
    if (p->tick_ev) event_free(p->tick_ev);
    p->tick_ev = NULL;
    for (unsigned i = 0; i < CFG_MAX_PEERS; i++) {
        link_free(p->peer_links[i]);
        p->peer_links[i] = NULL;
    }
    pcmd_fail_all(p);
    pio_fail_all(p, -ESHUTDOWN);
    prepair_stop(p);
    /* Freeing the pool fails every put, get and delete in flight; their
     * callbacks may queue more index commands (failed at once: stopping),
     * and GC's deletes still use the management state, freed after. */
    pblobs_free(p->blobs);
    p->blobs = NULL;
    pcmd_fail_all(p);
    pio_fail_all(p, -ESHUTDOWN);
    pmgmt_stop(p); /* fails reads waiting for an index */
    free(p->parts);
    p->parts = NULL;
    if (p->rd) index_reader_free(p->rd);
    p->rd = NULL;
    fsm_raft_fini(&p->fr);
    if (p->ix) index_close(p->ix);
    p->ix = NULL;
    metrics_remove_owner(p);
}

static int proxy_start(struct role *r, struct reactor *rx, const struct bd_config *top,
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
    conn_auth_init(&p->auth, top->cluster_id, top->secret, cfg->id, WIRE_ROLE_PROXY, r->tag);
    struct conn_fault fault = {.socket_failure_every = cfg->fault.socket_failure_every,
                               .delay_ms = cfg->fault.delay_ms};
    p->srv_opts = (struct conn_opts){.tag = r->tag, .auth = &p->auth, .fault = fault};
    p->peer_opts = (struct conn_opts){.tag = r->tag, .auth = &p->auth, .connect_timeout_ms = 2000};
    metrics_init(p);

    char dir[CFG_PATH_MAX + 16];
    snprintf(dir, sizeof(dir), "%s/index", cfg->data_dir);
    struct index_opts io = {.dir = dir, .cluster_id = top->cluster_id,
                            .map_size = cfg->index_map_bytes, .allow_tmpfs = cfg->allow_tmpfs};
    int rc = index_open(&io, &p->ix, err, errlen);
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
    p->fr.on_applied = on_applied;
    p->fr.arg = p;
    rc = fsm_raft_set_async(&p->fr, rx);
    if (rc < 0) {
        snprintf(err, errlen, "index writer thread: %s", bd_strerror(rc));
        goto fail;
    }
    rc = pmgmt_start(p);
    if (rc < 0) goto fail;
    rc = prepair_start(p);
    if (rc < 0) goto fail;
    p->blobs = pblobs_new(rx, &p->peer_opts, cfg->node_timeout_ms, 5000);
    if (!p->blobs) {
        rc = -ENOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < cfg->n_peers; i++) {
        if (cfg->peers[i].id == cfg->id) continue;
        p->peer_links[i] = link_new(rx, cfg->peers[i].addr, &p->peer_opts, &peer_link_ops, p);
        if (!p->peer_links[i]) {
            rc = -ENOMEM;
            goto fail;
        }
    }
    struct consensus_opts co = {.cfg = cfg, .auth = &p->auth, .fsm = &p->fr.fsm,
                                .tag = r->tag, .on_init = bind_fsm, .on_init_arg = p};
    rc = consensus_new(rx, &co, &p->cons, err, errlen);
    if (rc < 0) goto fail;
    rc = listener_new(rx, cfg->listen, on_accept, p, &p->lis);
    if (rc < 0) {
        snprintf(err, errlen, "listen on %s: %s", cfg->listen, bd_strerror(rc));
        goto fail_cons;
    }
    if (cfg->admin[0]) {
        rc = padmin_start(p);
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
    if (p->admin) admin_free(p->admin);
    p->admin = NULL;
    listener_free(p->lis);
    p->lis = NULL;
    consensus_close(p->cons, NULL, NULL);
    p->cons = NULL;
fail:
    if (!err[0]) snprintf(err, errlen, "%s", bd_strerror(rc));
    proxy_teardown(p);
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
    if (p->admin) admin_free(p->admin);
    p->admin = NULL;
    while (p->conns) {
        struct pconn *pc = p->conns;
        conn_close(pc->c, -ESHUTDOWN); /* on_close unlinks pc */
    }
    consensus_close(p->cons, on_cons_closed, p);
}

static void proxy_free(struct role *r)
{
    free(r->impl);
    r->impl = NULL;
}

static unsigned proxy_instances(const struct bd_config *cfg)
{
    return cfg->n_proxies;
}

const struct role_ops proxy_role_ops = {
    .name = "proxy",
    .instances = proxy_instances,
    .start = proxy_start,
    .stop = proxy_stop,
    .free = proxy_free,
};
