/* consensus.c: libraft + rio for one proxy (see consensus.h).
 *
 * Start: rio_new (opens <dir>, refusing another node's directory) ->
 * raft_init -> timeouts and snapshot settings -> raft_bootstrap with every
 * peer as a voter if and only if the directory is pristine -> raft_start
 * (rio loads the log; libraft restores the snapshot and entries).
 *
 * A pristine directory under a state machine that has applied entries
 * (opts->fsm_applied) is refused before anything is written: its log
 * would start again at 1.  A log that ends before the applied index is
 * allowed, with a warning: installing a leader's snapshot loads the index
 * before the snapshot is stored (rio.c), so a crash between the two leaves
 * exactly that, and the entries up to the applied index are the same
 * history's (apply skips them); the refusal above is the one state that
 * can only come from elsewhere.
 *
 * Close: if we lead and another voter exists, raft_transfer(0) picks the
 * most caught-up follower and sends it TimeoutNow; libraft calls back when
 * it has become leader or after an election timeout.  Then raft_close ->
 * rio's close (log drained, links freed) -> our raft close callback,
 * which frees rio and the consensus from a deferred call (never under
 * libraft's own stack) and then calls the owner's DONE.
 *
 * Snapshot trailing: libraft passes `trailing` to raft_io->snapshot_put,
 * where 0 means "an installed snapshot replaces the whole log" (its own
 * uv backend reads it the same way), so a configured trailing of 0 is
 * raised to 1 here. */
#include "store/raft/consensus.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONSENSUS_INSTALL_TIMEOUT_MS (30u * 60 * 1000)

#define HEARD_MAX 16 /* peers remembered by when they last spoke (more than a group has) */

struct consensus {
    struct reactor *rx;
    struct raft raft;
    struct rio *rio;
    const char *tag;
    bool started;       /* raft_init succeeded: raft_close is needed */
    raft_index synced_conf; /* the configuration whose addresses rio knows */
    bool closing;
    struct raft_transfer transfer;
    void (*done)(void *arg);
    void *done_arg;
    struct {
        uint64_t id, at_ms;    /* a peer, and when a Raft message from it last arrived */
    } heard[HEARD_MAX];
};

/* Note that peer ID spoke at NOW: its slot, else the oldest (or an empty) one. */
static void heard_from(struct consensus *c, uint64_t id, uint64_t now)
{
    unsigned slot = 0;
    for (unsigned i = 0; i < HEARD_MAX; i++)
        if (c->heard[i].id == id) {
            c->heard[i].at_ms = now;
            return;
        }
    for (unsigned i = 1; i < HEARD_MAX; i++)
        if (c->heard[i].at_ms < c->heard[slot].at_ms) slot = i;
    c->heard[slot].id = id;
    c->heard[slot].at_ms = now;
}

/* Whether peer ID spoke within the last WITHIN_MS. */
static bool heard_within(const struct consensus *c, uint64_t id, uint64_t within_ms)
{
    uint64_t now = util_mono_ms();
    for (unsigned i = 0; i < HEARD_MAX; i++)
        if (c->heard[i].id == id) return now - c->heard[i].at_ms <= within_ms;
    return false;
}

static int from_raft_status(int status)
{
    switch (status) {
    case 0: return 0;
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST: return -BD_ENOTLEADER;
    case RAFT_SHUTDOWN:
    case RAFT_CANCELED: return -ESHUTDOWN;
    case RAFT_NOMEM: return -ENOMEM;
    default: return -EIO;
    }
}

static void close_and_free(struct consensus *c);

int consensus_new(struct reactor *rx, const struct consensus_opts *o, struct consensus **out,
                  char *err, size_t errlen)
{
    *out = NULL;
    const struct cfg_proxy *cfg = o->cfg;
    struct consensus *c = calloc(1, sizeof(*c));
    if (!c) return -ENOMEM;
    c->rx = rx;
    c->tag = o->tag ? o->tag : "consensus";
    char dir[CFG_PATH_MAX + 16];
    if (o->raft_dir) util_strlcpy(dir, o->raft_dir, sizeof(dir));
    else snprintf(dir, sizeof(dir), "%s/raft", cfg->data_dir);

    struct rio_peer peers[CFG_MAX_PEERS];
    for (unsigned i = 0; i < cfg->n_peers; i++) {
        peers[i].id = cfg->peers[i].id;
        util_strlcpy(peers[i].addr, cfg->peers[i].addr, sizeof(peers[i].addr));
    }
    struct conn_opts lo = {.tag = c->tag, .auth = o->auth, .connect_timeout_ms = 2000,
                           .expect_role = WIRE_ROLE_PROXY};
    struct rio_opts ro = {.id = cfg->id, .dir = dir, .fio = o->fio,
                          .segment_bytes = o->segment_bytes, .link_opts = &lo, .peers = peers,
                          .n_peers = cfg->n_peers, .tag = c->tag, .install = o->install,
                          .install_arg = o->install_arg};
    int rc = rio_new(rx, &ro, &c->rio, err, errlen);
    if (rc < 0) {
        free(c);
        return rc;
    }
    rc = raft_init(&c->raft, rio_io(c->rio), o->fsm, cfg->id, cfg->listen);
    if (rc != 0) {
        snprintf(err, errlen, "raft_init: %s", raft_errmsg(&c->raft));
        rio_free(c->rio);
        free(c);
        return -EINVAL;
    }
    c->started = true;
    c->raft.data = c;
    bool refused = false;
    if (o->on_init) o->on_init(o->on_init_arg, &c->raft);
    raft_set_election_timeout(&c->raft, (unsigned)cfg->election_timeout_ms);
    raft_set_heartbeat_timeout(&c->raft, (unsigned)cfg->raft_heartbeat_ms);
    raft_set_snapshot_threshold(&c->raft, (unsigned)cfg->snapshot_threshold);
    raft_set_snapshot_trailing(&c->raft,
                               (unsigned)(cfg->snapshot_trailing ? cfg->snapshot_trailing : 1));
    raft_set_pre_vote(&c->raft, true);
    /* A snapshot of a large index takes minutes to stream (rio.c); the
     * default 30 s would abort and restart it over and over. */
    raft_set_install_snapshot_timeout(&c->raft, CONSENSUS_INSTALL_TIMEOUT_MS);

    if (o->fsm_applied && rio_pristine(c->rio)) {
        snprintf(err, errlen, "the index has applied raft entries up to %llu but the raft log in "
                 "%s is empty: the index does not belong to this log (a restored or copied index "
                 "directory?).  Move the index directory away so this proxy starts empty and "
                 "catches up from the leader, or restore the raft directory that goes with it",
                 (unsigned long long)o->fsm_applied, dir);
        refused = true;
        goto fail;
    }
    if (o->join && rio_pristine(c->rio)) {
        log_info(c->tag, "joining an existing raft group: waiting for its leader to add this "
                 "proxy (id %llu)", (unsigned long long)cfg->id);
    } else if (rio_pristine(c->rio)) {
        struct raft_configuration conf;
        raft_configuration_init(&conf);
        for (unsigned i = 0; i < cfg->n_peers && rc == 0; i++)
            rc = raft_configuration_add(&conf, cfg->peers[i].id, cfg->peers[i].addr, RAFT_VOTER);
        if (rc == 0) rc = raft_bootstrap(&c->raft, &conf);
        raft_configuration_close(&conf);
        if (rc != 0) {
            snprintf(err, errlen, "raft bootstrap: %s (%s)", raft_strerror(rc),
                     raft_errmsg(&c->raft));
            goto fail;
        }
        log_info(c->tag, "bootstrapped a new raft configuration of %u servers", cfg->n_peers);
    }
    rc = raft_start(&c->raft);
    if (rc != 0) {
        snprintf(err, errlen, "raft start: %s (%s)", raft_strerror(rc), raft_errmsg(&c->raft));
        goto fail;
    }
    if (o->fsm_applied > raft_last_index(&c->raft))
        log_warn(c->tag, "the index has applied raft entries up to %llu, past the raft log's "
                 "last (%llu): a snapshot install interrupted by a crash; entries up to %llu "
                 "are skipped as applied", (unsigned long long)o->fsm_applied,
                 (unsigned long long)raft_last_index(&c->raft),
                 (unsigned long long)o->fsm_applied);
    *out = c;
    return 0;
fail:
    /* raft_init succeeded: the instance must be closed asynchronously.
     * Run the reactor's normal path and report the start failure now. */
    close_and_free(c);
    return refused ? -EEXIST : rc == RAFT_CORRUPT ? -BD_ECORRUPT : -EIO;
}

/* Teach rio every member's address when the configuration changed: a
 * member added since the config file was written must be heard (rio drops
 * messages from servers it does not know). */
static void sync_peers(struct consensus *c)
{
    raft_index ix = c->raft.configuration_uncommitted_index ? c->raft.configuration_uncommitted_index
                                                            : c->raft.configuration_index;
    if (ix == c->synced_conf && ix) return;
    for (unsigned i = 0; i < c->raft.configuration.n; i++) {
        const struct raft_server *s = &c->raft.configuration.servers[i];
        if (s->id != c->raft.id) rio_add_peer(c->rio, s->id, s->address);
    }
    c->synced_conf = ix;
}

void consensus_deliver(struct consensus *c, struct conn *from, const struct wire_raft_req *req)
{
    uint64_t id = from ? conn_peer_id(from) : 0;
    if (id) heard_from(c, id, util_mono_ms());
    sync_peers(c);
    rio_deliver(c->rio, from, req);
}

/* ---- membership ------------------------------------------------------------ */

unsigned consensus_servers(struct consensus *c, struct consensus_server *out, unsigned max)
{
    const struct raft_configuration *conf = &c->raft.configuration;
    for (unsigned i = 0; i < conf->n && i < max; i++) {
        out[i].id = conf->servers[i].id;
        util_strlcpy(out[i].addr, conf->servers[i].address ? conf->servers[i].address : "",
                     sizeof(out[i].addr));
        out[i].role = conf->servers[i].role;
    }
    return conf->n;
}

bool consensus_is_member(struct consensus *c, uint64_t id)
{
    const struct raft_configuration *conf = &c->raft.configuration;
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].id == id) return true;
    return false;
}

bool consensus_changing(struct consensus *c)
{
    if (c->raft.configuration_uncommitted_index) return true;
    return raft_state(&c->raft) == RAFT_LEADER &&
           (c->raft.leader_state.change || c->raft.leader_state.promotee_id);
}

bool consensus_reachable(struct consensus *c, uint64_t id)
{
    if (id == c->raft.id) return true;
    if (raft_state(&c->raft) != RAFT_LEADER) return false;
    const struct raft_configuration *conf = &c->raft.configuration;
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].id == id) return c->raft.leader_state.progress[i].recent_recv;
    return false;
}

static int change_err(int rv)
{
    switch (rv) {
    case 0: return 0;
    case RAFT_NOTLEADER: case RAFT_LEADERSHIPLOST: return -BD_ENOTLEADER;
    case RAFT_CANTCHANGE: return -EBUSY;
    case RAFT_BADID: case RAFT_DUPLICATEID: case RAFT_DUPLICATEADDRESS: case RAFT_BADROLE:
        return -EINVAL;
    case RAFT_SHUTDOWN: case RAFT_CANCELED: return -ESHUTDOWN;
    case RAFT_NOMEM: return -ENOMEM;
    default: return -EIO;
    }
}

static void on_changed(struct raft_change *req, int status)
{
    struct consensus_change *ch = req->data;
    sync_peers(ch->c);
    ch->cb(ch, change_err(status));
}

static int change_start(struct consensus *c, struct consensus_change *ch,
                        void (*cb)(struct consensus_change *, int))
{
    if (c->closing) return -ESHUTDOWN;
    if (raft_state(&c->raft) != RAFT_LEADER) return -BD_ENOTLEADER;
    ch->c = c;
    ch->cb = cb;
    ch->req.data = ch;
    return 0;
}

int consensus_add(struct consensus *c, struct consensus_change *ch, uint64_t id,
                  const char *addr, void (*cb)(struct consensus_change *, int))
{
    int rc = change_start(c, ch, cb);
    if (rc) return rc;
    /* rio must know it before libraft sends it anything (a server known
     * at another address is followed there by rio's send). */
    if (rio_add_peer(c->rio, id, addr) == -ENOSPC) return -ENOSPC;
    return change_err(raft_add(&c->raft, &ch->req, id, addr, on_changed));
}

int consensus_promote(struct consensus *c, struct consensus_change *ch, uint64_t id,
                      void (*cb)(struct consensus_change *, int))
{
    int rc = change_start(c, ch, cb);
    return rc ? rc : change_err(raft_assign(&c->raft, &ch->req, id, RAFT_VOTER, on_changed));
}

int consensus_remove(struct consensus *c, struct consensus_change *ch, uint64_t id,
                     void (*cb)(struct consensus_change *, int))
{
    int rc = change_start(c, ch, cb);
    return rc ? rc : change_err(raft_remove(&c->raft, &ch->req, id, on_changed));
}

/* ---- proposals ------------------------------------------------------------ */

static void on_applied(struct raft_apply *a, int status, void *result)
{
    struct consensus_req *req = bd_container_of(a, struct consensus_req, apply);
    req->cb(req, from_raft_status(status), a->index, status == 0 ? result : NULL);
}

int consensus_propose(struct consensus *c, struct consensus_req *req, const void *cmd, size_t len,
                      void (*cb)(struct consensus_req *, int, uint64_t, void *))
{
    if (c->closing) return -ESHUTDOWN;
    if (len == 0) return -EINVAL;
    if (consensus_state(c) != RAFT_LEADER) return -BD_ENOTLEADER;
    struct raft_buffer buf = {raft_malloc(len), len};
    if (!buf.base) return -ENOMEM;
    memcpy(buf.base, cmd, len);
    req->c = c;
    req->cb = cb;
    req->apply.data = req;
    int rc = raft_apply(&c->raft, &req->apply, &buf, 1, on_applied);
    if (rc != 0) {
        raft_free(buf.base);
        return from_raft_status(rc);
    }
    return 0;
}

/* ---- state -------------------------------------------------------------------- */

uint64_t consensus_leader(struct consensus *c, const char **addr)
{
    raft_id id = 0;
    const char *a = NULL;
    if (!rio_stopped(c->rio)) raft_leader(&c->raft, &id, &a);
    if (addr) *addr = a;
    return id;
}

bool consensus_is_leader(struct consensus *c)
{
    return consensus_state(c) == RAFT_LEADER;
}

int consensus_state(struct consensus *c)
{
    /* A server whose raft log failed has left raft (rio_stopped). */
    return rio_stopped(c->rio) ? RAFT_UNAVAILABLE : raft_state(&c->raft);
}

const char *consensus_state_name(int state)
{
    switch (state) {
    case RAFT_FOLLOWER: return "follower";
    case RAFT_CANDIDATE: return "candidate";
    case RAFT_LEADER: return "leader";
    default: return "unavailable";
    }
}

uint64_t consensus_term(struct consensus *c)
{
    return c->raft.current_term;
}
uint64_t consensus_commit_index(struct consensus *c)
{
    return c->raft.commit_index;
}
uint64_t consensus_last_applied(struct consensus *c)
{
    return raft_last_applied(&c->raft);
}
uint64_t consensus_last_index(struct consensus *c)
{
    return raft_last_index(&c->raft);
}

int consensus_peer_progress(struct consensus *c, uint64_t id, uint64_t *match_index,
                            bool *recent)
{
    if (c->raft.state != RAFT_LEADER) return -BD_ENOTLEADER;
    const struct raft_configuration *cf = &c->raft.configuration;
    for (unsigned i = 0; i < cf->n; i++) {
        if (cf->servers[i].id != id) continue;
        const struct raft_progress *pr = &c->raft.leader_state.progress[i];
        *match_index = pr->match_index;
        /* libraft clears every peer's recent_recv at each election timeout
         * (its contact-quorum check) and sets it again at the next append
         * result, so alone it reads "not recent" for a moment after every
         * check: a peer that sent any Raft message within the election
         * timeout is recent (one that hears us but cannot answer shows as
         * lagging instead). */
        *recent = id == c->raft.id || pr->recent_recv ||
                  heard_within(c, id, c->raft.election_timeout);
        if (id == c->raft.id) *match_index = raft_last_index(&c->raft);
        return 0;
    }
    return -ENOENT;
}

void consensus_get_stats(struct consensus *c, struct consensus_stats *out)
{
    rio_get_stats(c->rio, &out->io);
    rio_get_log_stats(c->rio, &out->log);
}

/* ---- close ---------------------------------------------------------------------- */

static void free_deferred(void *arg)
{
    struct consensus *c = arg;
    void (*done)(void *) = c->done;
    void *done_arg = c->done_arg;
    rio_free(c->rio);
    free(c);
    if (done) done(done_arg);
}

static void on_raft_closed(struct raft *r)
{
    struct consensus *c = r->data;
    if (reactor_defer(c->rx, free_deferred, c) < 0) free_deferred(c);
}

static void close_and_free(struct consensus *c)
{
    raft_close(&c->raft, on_raft_closed);
}

static void close_deferred(void *arg)
{
    close_and_free(arg);
}

static void on_transferred(struct raft_transfer *t)
{
    struct consensus *c = t->data;
    raft_id id = 0;
    const char *addr = NULL;
    raft_leader(&c->raft, &id, &addr);
    log_info(c->tag, "leadership transfer before stop: leader is now %llu",
             (unsigned long long)id);
    /* Not under libraft's stack: it goes on using the instance after this. */
    if (reactor_defer(c->rx, close_deferred, c) < 0) close_and_free(c);
}

void consensus_close(struct consensus *c, void (*done)(void *arg), void *arg)
{
    if (BD_NEVER(c->closing)) return;
    c->closing = true;
    c->done = done;
    c->done_arg = arg;
    if (consensus_state(c) == RAFT_LEADER && c->raft.configuration.n > 1) {
        c->transfer.data = c;
        int rc = raft_transfer(&c->raft, &c->transfer, 0, on_transferred);
        if (rc == 0) return;
        log_warn(c->tag, "no leadership transfer before stop: %s", raft_strerror(rc));
    }
    close_and_free(c);
}
