/* raftfix.c: the libraft 0.15 workarounds (why, and the upstream fixes, in
 * raftfix.h).
 *
 * Everything here reads the public struct raft of libraft 0.15 (log
 * offset, snapshot, last_stored, commit_index, state, term); nothing calls
 * into libraft except raft_barrier.  Each rule acts only in the exact state
 * the bug needs and otherwise leaves a message as it is:
 *
 *   ack    follower, synchronous result to an AppendEntries being delivered,
 *          success, claiming more than prev_log_index + n_entries;
 *   base   any state, AppendEntries of our term or a later one, with
 *          entries, whose prev_log_index lies in the prefix our snapshot
 *          compacted away (at most the log offset, and not the snapshot
 *          index itself, whose term libraft keeps);
 *   count  leader, success result of the current term claiming
 *          last_stored or more, last_stored above commit_index and from an
 *          older term;
 *   stop   from raftfix_stop() on, every message (dropped and freed as
 *          libraft's recvCb frees them when unavailable) and every send;
 *   order  a failed append while others are in flight;
 *   vote   a pre-vote result we send, not granted, whose term (the
 *          request's) is below our current term.
 *
 * Why rebasing (base) is safe: the snapshot covers only applied, so
 * committed, entries; a leader of this or a later term holds them too
 * (Leader Completeness), so its entry at the snapshot index has the
 * snapshot's term.  libraft compares that term with the snapshot's and
 * shuts down on a mismatch (a committed entry contradicted: a real fault),
 * and on a match Log Matching says every earlier entry matches as well.
 * libraft 0.15 sends every entry from next_index to its last one, and its
 * last index is at least the commit index, which is at least our snapshot
 * index: a current leader's message always reaches it, so only a stale
 * one is dropped.  (The rebased message is one libraft would have
 * accepted had the leader sent it: its own decrementing probe cannot get
 * there from below the offset.)
 *
 * Received entries: both decoders (net/raftmsg.c and the fixture) put all
 * of a message's data in one batch; like libraft's entryBatchesDestroy, the
 * trimming code only assumes that entries sharing a batch are adjacent. */
#include "store/raft/raftfix.h"

#include <string.h>

void raftfix_init(struct raftfix *f)
{
    memset(f, 0, sizeof(*f));
    f->rules = RAFTFIX_ALL;
}

void raftfix_stop(struct raftfix *f)
{
    if (!(f->rules & RAFTFIX_STOP) || f->stopped) return;
    f->stopped = true;
    f->st.stopped = 1;
}

bool raftfix_stopped(const struct raftfix *f)
{
    return f->stopped;
}

/* The term of entry INDEX in L, 0 if L does not hold it (libraft's
 * logTermOf, which is not exported). */
static raft_term log_term(const struct raft_log *l, raft_index index)
{
    if (index == 0) return 0;
    if (index == l->snapshot.last_index) return l->snapshot.last_term;
    size_t n = l->back >= l->front ? l->back - l->front : l->size - l->front + l->back;
    if (index <= l->offset || index > l->offset + n) return 0;
    return l->entries[(l->front + (size_t)(index - l->offset - 1)) % l->size].term;
}

/* Free the batches of entries [FROM, TO) of E that entry TO (if < N) does
 * not share. */
static void free_batches(struct raft_entry *e, unsigned from, unsigned to, unsigned n)
{
    const void *keep = to < n ? e[to].batch : NULL;
    const void *freed = NULL;
    for (unsigned i = from; i < to; i++) {
        if (!e[i].batch || e[i].batch == freed || e[i].batch == keep) continue;
        freed = e[i].batch;
        raft_free(e[i].batch);
    }
}

/* Free what a message we do not deliver owns. */
static void drop(struct raft_message *m)
{
    if (m->type == RAFT_IO_APPEND_ENTRIES) {
        struct raft_append_entries *a = &m->append_entries;
        free_batches(a->entries, 0, a->n_entries, a->n_entries);
        raft_free(a->entries);
        a->entries = NULL;
        a->n_entries = 0;
    } else if (m->type == RAFT_IO_INSTALL_SNAPSHOT) {
        raft_configuration_close(&m->install_snapshot.conf);
        raft_free(m->install_snapshot.data.base);
        m->install_snapshot.data.base = NULL;
    }
}

/* base: see the file comment.  Returns false if M must be dropped. */
static bool rebase_on_snapshot(struct raftfix *f, struct raft *r, struct raft_append_entries *a)
{
    raft_index snap = r->log.snapshot.last_index, prev = a->prev_log_index;
    if (a->n_entries == 0 || r->log.offset == 0 || prev > r->log.offset || prev == snap ||
        a->term < r->current_term) /* libraft rejects it before looking at the log */
        return true;
    if (prev + a->n_entries < snap) {
        f->st.ae_dropped++;
        return false;
    }
    unsigned skip = (unsigned)(snap - prev);
    a->prev_log_index = snap;
    a->prev_log_term = a->entries[skip - 1].term;
    free_batches(a->entries, 0, skip, a->n_entries);
    a->n_entries -= skip;
    if (a->n_entries) {
        memmove(a->entries, a->entries + skip, a->n_entries * sizeof(*a->entries));
    } else {
        raft_free(a->entries);
        a->entries = NULL;
    }
    f->st.ae_rebased++;
    return true;
}

/* count: see the file comment. */
static void hold_old_term_commit(struct raftfix *f, struct raft *r,
                                 struct raft_append_entries_result *res)
{
    if (r->state != RAFT_LEADER || res->rejected != 0 || res->term != r->current_term) return;
    raft_index stored = r->last_stored;
    if (stored <= r->commit_index || res->last_log_index < stored) return;
    if (log_term(&r->log, stored) >= r->current_term) return;
    res->last_log_index = stored - 1;
    f->st.commits_held++;
}

bool raftfix_recv(struct raftfix *f, struct raft *r, struct raft_message *m)
{
    if (f->stopped) {
        drop(m);
        return false;
    }
    if (m->type == RAFT_IO_APPEND_ENTRIES) {
        if ((f->rules & RAFTFIX_BASE) && !rebase_on_snapshot(f, r, &m->append_entries)) {
            drop(m);
            return false;
        }
        f->in_ae = true;
        f->ae_last = m->append_entries.prev_log_index + m->append_entries.n_entries;
    } else if (m->type == RAFT_IO_APPEND_ENTRIES_RESULT && (f->rules & RAFTFIX_COUNT)) {
        hold_old_term_commit(f, r, &m->append_entries_result);
    }
    return true;
}

static void on_barrier(struct raft_barrier *req, int status)
{
    (void)status; /* a lost leadership fails it; the next leader appends its own */
    raft_free(req);
}

void raftfix_after(struct raftfix *f, struct raft *r)
{
    f->in_ae = false;
    if (!(f->rules & RAFTFIX_COUNT) || f->stopped || r->state != RAFT_LEADER ||
        r->current_term == f->barrier_term)
        return;
    /* A single voter commits on its own (libraft does it when elected). */
    unsigned voters = 0;
    for (unsigned i = 0; i < r->configuration.n; i++)
        voters += r->configuration.servers[i].role == RAFT_VOTER;
    if (voters < 2) {
        f->barrier_term = r->current_term;
        return;
    }
    struct raft_barrier *req = raft_malloc(sizeof(*req));
    if (!req) return; /* tried again after the next callback */
    if (raft_barrier(r, req, on_barrier) != 0) {
        raft_free(req); /* e.g. a leadership transfer is running: later */
        return;
    }
    f->barrier_term = r->current_term;
    f->st.barriers++;
}

const struct raft_message *raftfix_send(struct raftfix *f, const struct raft *r,
                                        const struct raft_message *m, struct raft_message *tmp)
{
    if (f->stopped) return NULL;
    if (m->type == RAFT_IO_REQUEST_VOTE_RESULT) {
        const struct raft_request_vote_result *v = &m->request_vote_result;
        if (!(f->rules & RAFTFIX_VOTE) || v->pre_vote != raft_tribool_true || v->vote_granted ||
            v->term >= r->current_term)
            return m;
        *tmp = *m;
        tmp->request_vote_result.term = r->current_term;
        f->st.vote_terms++;
        return tmp;
    }
    if (!(f->rules & RAFTFIX_ACK) || !f->in_ae || m->type != RAFT_IO_APPEND_ENTRIES_RESULT ||
        m->append_entries_result.rejected != 0 ||
        m->append_entries_result.last_log_index <= f->ae_last)
        return m;
    *tmp = *m;
    tmp->append_entries_result.last_log_index = f->ae_last;
    f->st.acks_clamped++;
    return tmp;
}

void raftfix_append_begin(struct raftfix *f)
{
    f->appending++;
}

void raftfix_append_done(struct raftfix *f, struct raft_io_append *req, int status)
{
    if (f->appending) f->appending--;
    if (status == 0 || !(f->rules & RAFTFIX_ORDER)) {
        req->cb(req, status);
    } else {
        if (f->n_fails == f->cap_fails) {
            unsigned cap = f->cap_fails ? f->cap_fails * 2 : 8;
            struct raftfix_fail *n = raft_realloc(f->fails, cap * sizeof(*n));
            if (!n) {
                req->cb(req, status); /* no memory: in order, as libraft expects */
                return;
            }
            f->fails = n;
            f->cap_fails = cap;
        }
        f->fails[f->n_fails++] = (struct raftfix_fail){req, status};
    }
    if (f->appending || !f->n_fails) return;
    /* Newest first.  A callback may start another append (libraft does
     * not on a failure, but then that one's failure waits its turn). */
    f->st.fails_reordered += f->n_fails > 1 ? f->n_fails : 0;
    while (f->n_fails && !f->appending) {
        struct raftfix_fail x = f->fails[--f->n_fails];
        x.req->cb(x.req, x.status);
    }
    if (!f->n_fails) {
        raft_free(f->fails);
        f->fails = NULL;
        f->cap_fails = 0;
    }
}

