/* consensus.h: one Raft server of the proxy group, ready to use.
 *
 * A thin layer over libraft + rio (rio.h) that the proxy role calls: it
 * builds the raft instance from the proxy's configuration (peers,
 * election and heartbeat timeouts, snapshot threshold and trailing),
 * bootstraps the configuration from the peers list on the very first
 * start only, and offers propose / state queries / close.  It
 * knows nothing about what the commands mean: the caller's struct
 * raft_fsm applies them.
 *
 * Bootstrap rule: every proxy of a new cluster bootstraps the SAME
 * configuration (all peers as voters, entry 1, term 1), which is how
 * libraft expects a static cluster to start.  A data directory that holds
 * any raft state (an entry, a snapshot, a term above 1 or a vote) is never
 * bootstrapped again; rio's log refuses it (RAFT_CANTBOOTSTRAP) even if
 * asked.  A proxy started to join an existing group (opts->join) never
 * bootstraps: it waits, with an empty log, for the leader to add it
 * (consensus_add) and send it the log.  Its peers list only has to name
 * the proxies it may hear from first; the configuration, once it arrives,
 * is the truth, and rio learns every member's address from it.  A directory written by another node id or cluster is refused at
 * start (-BD_ECONFIG).
 *
 * Every callback runs on the reactor thread.  The raft log lives in
 * <data_dir>/raft (opts->raft_dir overrides it). */
#ifndef BD_CONSENSUS_H
#define BD_CONSENSUS_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "net/conn.h"
#include "runtime/reactor.h"
#include "net/wire.h"
#include "store/fileio.h"
#include "store/raft/raftlog.h"
#include "store/raft/rio.h"

struct consensus;

struct consensus_opts {
    const struct cfg_proxy *cfg;   /* borrowed for the call: id, listen, data_dir, peers, timeouts */
    const struct conn_auth *auth;  /* keeps: must outlive the consensus (links use it) */
    struct raft_fsm *fsm;          /* keeps: must outlive the consensus */
    struct fileio *fio;               /* keeps; NULL = fileio_posix */
    const char *tag;               /* keeps; log tag, e.g. "proxy.1" */
    const char *raft_dir;          /* NULL = <cfg->data_dir>/raft */
    /* Optional: called once with the raft instance after raft_init and
     * before raft_start (e.g. fsm_raft_bind). */
    void (*on_init)(void *arg, struct raft *raft);
    void *on_init_arg;
    uint64_t segment_bytes;        /* raft log segment size; 0 = default */
    bool join;                     /* never bootstrap: join an existing group */
    /* Optional: rio's install hook (rio.h), e.g. fsm_raft_install. */
    int (*install)(void *arg, const struct raft_buffer *data);
    void *install_arg;
    /* The state machine's applied index (index_applied).  A raft
     * directory with no entries and no snapshot under a state machine that
     * has applied entries is refused (consensus_new fails, saying so): the
     * new log would start at 1, and apply skips every entry at or below
     * the applied index as done, so the proxy would answer its first
     * commands with SKIPPED results, against an index from another
     * history (a restored or copied index directory). */
    uint64_t fsm_applied;
};

/* A proposal in flight.  The caller owns it (embed it) until CB
 * has run, which happens exactly once on the reactor:
 *   STATUS 0: committed and applied at raft INDEX; RESULT is what the
 *     FSM's apply() returned (the FSM's convention says who frees it);
 *   -BD_ENOTLEADER: leadership was lost before the entry committed (it
 *     may still commit later under the new leader: the caller must treat
 *     the outcome as unknown and re-check, never as "not applied");
 *   -ESHUTDOWN: the consensus closed first (outcome unknown likewise);
 *   -EIO: the FSM or the log failed. */
struct consensus_req {
    void *data;
    void (*cb)(struct consensus_req *req, int status, uint64_t index, void *result);
    /* private */
    struct consensus *c;
    struct raft_apply apply;
};

/* Create, load the log (bootstrapping a pristine one), and start taking
 * part in elections.  0 with *OUT owned (consensus_close), or -errno /
 * -BD_ECONFIG / -BD_ECORRUPT with one line in ERR. */
int consensus_new(struct reactor *rx, const struct consensus_opts *opts, struct consensus **out,
                  char *err, size_t errlen);

/* Hand a received WIRE_RAFT frame to raft (see rio_deliver).  FROM is the
 * server connection it came on; REQ is borrowed for the call. */
void consensus_deliver(struct consensus *c, struct conn *from, const struct wire_raft_req *req);

/* Propose CMD (LEN bytes, borrowed: copied before returning).  0 (CB will
 * run), or -BD_ENOTLEADER (this server is not the leader: ask
 * consensus_leader), -ESHUTDOWN, -ENOMEM, -EINVAL (empty command). */
int consensus_propose(struct consensus *c, struct consensus_req *req, const void *cmd, size_t len,
                      void (*cb)(struct consensus_req *, int, uint64_t, void *));

/* The leader's id (0 if unknown) and wire address (*ADDR borrowed, valid
 * until the next reactor callback; NULL if unknown). */
uint64_t consensus_leader(struct consensus *c, const char **addr);
bool consensus_is_leader(struct consensus *c);
int consensus_state(struct consensus *c);          /* RAFT_FOLLOWER, RAFT_CANDIDATE, ... */
const char *consensus_state_name(int state);       /* "follower", ... */
uint64_t consensus_term(struct consensus *c);
uint64_t consensus_commit_index(struct consensus *c);
uint64_t consensus_last_applied(struct consensus *c);
uint64_t consensus_last_index(struct consensus *c);
/* On the leader: the highest entry server ID is known to hold (libraft's
 * match index), and whether it answered within the election timeout
 * (*RECENT).  0, -BD_ENOTLEADER on any other server, -ENOENT if ID is not
 * in the configuration. */
int consensus_peer_progress(struct consensus *c, uint64_t id, uint64_t *match_index,
                            bool *recent);

/* ---- membership (Raft §4: one server at a time) ----------------------------------
 *
 * A change is a configuration entry; only the leader makes one, and only
 * one at a time (RAFT_CANTCHANGE otherwise).  Adding a proxy: consensus_add
 * makes it a spare (it receives nothing), consensus_promote makes it a
 * voter, and libraft first catches it up (from a snapshot if the log it
 * needs is gone) in rounds, so a new proxy votes only once it holds the
 * log.  consensus_remove takes a server out; a leader that removes itself
 * steps down once the entry commits. */

enum consensus_role { CONSENSUS_STANDBY = 0, CONSENSUS_VOTER = 1, CONSENSUS_SPARE = 2 };

struct consensus_server {
    uint64_t id;
    char addr[RIO_ADDR_MAX];
    int role;                  /* enum consensus_role */
};

/* The configuration this server holds (the latest appended, committed or
 * not): up to MAX servers into OUT; returns how many there are. */
unsigned consensus_servers(struct consensus *c, struct consensus_server *out, unsigned max);
/* ID is in that configuration (any role). */
bool consensus_is_member(struct consensus *c, uint64_t id);
/* A change is being made (appended and not committed, or a promotion
 * catching up); a new one would be refused. */
bool consensus_changing(struct consensus *c);
/* The leader last heard from ID within an election timeout (the leader
 * only; itself included).  For refusing changes that would lose the
 * majority. */
bool consensus_reachable(struct consensus *c, uint64_t id);

/* A change in flight.  The caller owns it until CB ran (exactly once, on
 * the reactor): STATUS 0 once the new configuration committed, or
 * -BD_ENOTLEADER, -ESHUTDOWN, -EBUSY (another change), -EINVAL (a bad id,
 * address or role), -EIO. */
struct consensus_change {
    void *data;
    void (*cb)(struct consensus_change *ch, int status);
    /* private */
    struct consensus *c;
    struct raft_change req;
};
/* 0 (CB will run) or one of CB's errors, with no callback. */
int consensus_add(struct consensus *c, struct consensus_change *ch, uint64_t id,
                  const char *addr, void (*cb)(struct consensus_change *, int));
int consensus_promote(struct consensus *c, struct consensus_change *ch, uint64_t id,
                      void (*cb)(struct consensus_change *, int));
int consensus_remove(struct consensus *c, struct consensus_change *ch, uint64_t id,
                     void (*cb)(struct consensus_change *, int));

struct consensus_stats {
    struct rio_stats io;
    struct raftlog_stats log;
};
void consensus_get_stats(struct consensus *c, struct consensus_stats *out);

/* Stop: a leader first tries to hand leadership to a caught-up follower
 * (bounded by the election timeout), then raft closes (pending requests
 * get -ESHUTDOWN or -BD_ENOTLEADER), the log and links close, C is freed,
 * and DONE(ARG) runs on the reactor.  C must not be used after this call. */
void consensus_close(struct consensus *c, void (*done)(void *arg), void *arg);

#endif
