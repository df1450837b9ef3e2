/* raftfix.h: what a raft_io must do around libraft 0.15 so that its bugs
 * cannot break safety, stall the cluster or crash the process.
 *
 * libraft 0.15 (Debian 12's libraft-dev) has the bugs below, all found by
 * tests/unit/test_fsm_raft.c under libraft's own deterministic fixture;
 * later releases fix some of them.  The workarounds act at the raft_io
 * boundary only (messages in and out, the order of append completions, one
 * barrier entry per term, leaving raft when the log failed), so the
 * consensus code itself is untouched:
 *
 *   ack    A follower answers an AppendEntries it accepts without writing
 *          (a heartbeat, or entries it already holds) with its WHOLE log
 *          length, including an older term's tail the request never
 *          checked.  A result sent while an AppendEntries is being
 *          delivered is clamped to prev_log_index + n_entries (upstream:
 *          cowsql/raft 66ed6afd).
 *   base   A follower treats the entries its snapshot compacted away as
 *          missing.  An AppendEntries with prev_log_index 0 passes the
 *          prev check, and all its entries look new: the follower appends
 *          them after its own last entry under the wrong indexes, finds
 *          none at index 1 and, unwinding, truncates its log from index 1,
 *          below its first entry (SIGSEGV in refsDecr under logTruncate).
 *          With a prev_log_index in the compacted prefix it rejects, the
 *          leader probes lower, and once below the leader's own snapshot
 *          it sends that snapshot, which the follower (holding a newer
 *          one) acknowledges at the leader's snapshot index: the leader
 *          probes again from there, forever, and the follower never
 *          catches up.  No upstream fix: canonical/raft to its last
 *          commit and cowsql/raft still treat a compacted index as missing
 *          there (willemt/raft had the same bug, RedisLabs/raft issue
 *          #49).  Such a message is rebased
 *          onto the follower's snapshot: the entries the snapshot covers
 *          go, prev becomes the snapshot's (index, term as the leader
 *          sent it), so libraft checks the leader's entry at the snapshot
 *          index against the snapshot, and its Log Matching check covers
 *          everything before.  A message that ends before the snapshot
 *          index holds only entries this follower has already applied: it
 *          is stale and dropped (a lost message, which Raft tolerates).
 *   count  A leader commits an entry of an EARLIER term as soon as a
 *          majority stores it (replicationQuorum counts replicas for any
 *          term): Figure 8 of the Raft paper, which let two nodes apply
 *          different commands at one index, or made libraft shut down on
 *          a "conflict with a committed entry".  Upstream canonical/raft
 *          524f735 and 29bb302 (PR #336, v0.17.1): commit only entries of
 *          the current term by counting, and append a no-op barrier when
 *          elected.  Here: while the leader's last stored entry is from an
 *          older term (the only index 0.15 ever counts is last_stored), a
 *          success result may claim at most last_stored - 1, so it still
 *          moves the follower's progress and counts as contact but never
 *          makes a quorum for that entry; and a barrier is appended once
 *          per term after the leader is elected, so the older entries
 *          commit with it, as Raft requires.
 *   stop   A leader whose disk write fails stays leader and goes on sending
 *          heartbeats, so no other server is elected while it can commit
 *          nothing (upstream canonical/raft 0cac59c, v0.16.0: give up
 *          leadership); a follower keeps entries whose write failed in its
 *          in-memory log (857e17e, v0.18.0).  Our raft log fails for good
 *          on the first failed write (raftlog.h, C15), so the raft_io
 *          calls raftfix_stop() then, and from that moment the server acts
 *          as a crashed one: nothing is received, sent or ticked until the
 *          process restarts and reloads its durable log.
 *   order  A leader whose append fails truncates its in-memory log from
 *          that append's first index, without checking the log still
 *          reaches it: when two appends in flight fail in order (a failed
 *          disk, or closing with appends queued), the second truncation
 *          starts past the end and runs over the log (SIGSEGV in
 *          refsDecr; upstream canonical/raft 8b9c95c, PR #352, v0.17.1,
 *          checks the index).  Failed appends are therefore held until no
 *          append is in flight and then completed newest first, so every
 *          truncation starts inside the log.  Successes are never held.
 *   vote   With pre-vote (which the proxies use), a server answers a
 *          pre-vote request with the request's term even when it rejects
 *          it because its own term is higher, so the candidate never
 *          learns that term.  A server with the higher term but an older
 *          log and one with the newer log but a lower term then reject
 *          each other's pre-votes forever, and with no third voter to
 *          break the tie (one of three down) nobody is ever elected.
 *          Unfixed upstream (canonical/raft PR #280 was never merged;
 *          cowsql/raft mirrors the request term the same way).  Such an
 *          answer carries the server's own term instead, which libraft's
 *          candidate already handles: it adopts the higher term, becomes
 *          a follower, and its next pre-vote can win.  Adopting a term
 *          some server really holds is always safe in Raft.
 *
 * The raft_io calls raftfix_recv() before handing libraft a message,
 * raftfix_after() after every callback into libraft (receive, tick) has
 * returned, raftfix_send() on every message libraft sends, and
 * raftfix_append_begin()/raftfix_append_done() around every append; it
 * calls raftfix_stop() when its log fails and then never ticks libraft
 * again.  All of it runs on the thread that runs libraft; the only memory
 * it allocates is the barrier request (libraft's callback frees it) and
 * the list of held failures (freed when they are completed). */
#ifndef BD_RAFTFIX_H
#define BD_RAFTFIX_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>

/* The rules (all on after raftfix_init; tests turn some off to show a bug). */
enum {
    RAFTFIX_ACK = 1,
    RAFTFIX_BASE = 2,
    RAFTFIX_COUNT = 4,
    RAFTFIX_STOP = 8,
    RAFTFIX_ORDER = 16,
    RAFTFIX_VOTE = 32,
    RAFTFIX_ALL = 63,
};

struct raftfix_stats {
    uint64_t acks_clamped;   /* ack: results clamped to what the request checked */
    uint64_t ae_rebased;     /* base: AppendEntries rebased onto our snapshot */
    uint64_t ae_dropped;     /* base: stale AppendEntries dropped */
    uint64_t commits_held;   /* count: results kept from committing an older term */
    uint64_t barriers;       /* count: barriers appended at the start of a term */
    uint64_t stopped;        /* stop: 1 once the server stopped */
    uint64_t fails_reordered;/* order: failed appends completed newest first */
    uint64_t vote_terms;     /* vote: pre-vote rejections given our higher term */
};

/* Per raft_io state.  raftfix_init before libraft starts. */
struct raftfix {
    unsigned rules;          /* RAFTFIX_* in force */
    bool stopped;            /* stop: the storage failed */
    bool in_ae;              /* an AppendEntries is being delivered right now */
    raft_index ae_last;      /* its prev_log_index + n_entries */
    raft_term barrier_term;  /* the last term we appended a barrier in */
    unsigned appending;      /* order: appends handed to the log, not completed */
    struct raftfix_fail {    /* order: failed appends held back, oldest first */
        struct raft_io_append *req;
        int status;
    } *fails;                /* raft_malloc'd; freed when empty */
    unsigned n_fails, cap_fails;
    struct raftfix_stats st;
};

/* All rules on, nothing stopped.  Nothing to free afterwards: the held
 * failures are all completed once the log completes every append. */
void raftfix_init(struct raftfix *f);

/* The raft log failed for good: act as a crashed server from now on. */
void raftfix_stop(struct raftfix *f);
/* True once stopped: the raft_io must not call libraft's tick callback. */
bool raftfix_stopped(const struct raftfix *f);

/* Before libraft's recv callback gets M.  R is the raft instance (the
 * raft_io's data) and must be started.  M is libraft's to take: it may be
 * rewritten in place (entries trimmed, prev_log_index moved).  Returns true
 * if M must be delivered, then raftfix_after() follows the callback; false
 * if M was dropped and its entries, snapshot data and configuration freed
 * (nothing to deliver: stale, or the server has stopped). */
bool raftfix_recv(struct raftfix *f, struct raft *r, struct raft_message *m);

/* After a recv or tick callback into libraft returned (never from inside
 * libraft).  Ends the delivery raftfix_recv began, and appends the term's
 * barrier if R has just become leader. */
void raftfix_after(struct raftfix *f, struct raft *r);

/* Before sending M (borrowed) from R.  Returns M, or TMP holding a
 * corrected copy of it (the entries, if any, still borrowed from M), or
 * NULL if the server has stopped: then nothing is sent and the send fails
 * with RAFT_NOCONNECTION. */
const struct raft_message *raftfix_send(struct raftfix *f, const struct raft *r,
                                        const struct raft_message *m, struct raft_message *tmp);

/* order: an append was handed to the log (it returned 0); its completion
 * must come through raftfix_append_done. */
void raftfix_append_begin(struct raftfix *f);

/* order: the log completed REQ (borrowed until its callback has run) with
 * STATUS (a raft code).  Calls REQ's callback now, or, for a failure while
 * other appends are in flight, when the last of them completes. */
void raftfix_append_done(struct raftfix *f, struct raft_io_append *req, int status);

#endif
