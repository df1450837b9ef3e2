/* test_raftfix.c: each libraft 0.15 workaround (src/store/raft/raftfix.c)
 * on hand-built messages and a hand-built struct raft: what it rewrites,
 * drops or holds back, and that it leaves every other message alone.
 *
 * test_fsm_raft.c shows the bugs and the fixes under libraft's fixture
 * with seeded schedules; these pin down the edges of each rule (the
 * compacted prefix of "base" with prev 0 and prev > 0, the stale drop,
 * the exact window of "count", the term of "vote", the order of held
 * failures), which a schedule only reaches now and then.  The barrier of
 * "count" needs a running raft and is exercised there. */
#include "tap.h"
#include "store/raft/raftfix.h"

#include <stdlib.h>
#include <string.h>

/* A raft whose log holds entries OFFSET+1 .. OFFSET+N, entry i of term
 * TERMS[i - OFFSET - 1], after a snapshot at SNAP of term SNAP_TERM. */
static struct raft_entry log_entries[64];

static void make_raft(struct raft *r, int state, raft_term term, raft_index offset,
                      const raft_term *terms, unsigned n, raft_index snap, raft_term snap_term)
{
    memset(r, 0, sizeof(*r));
    memset(log_entries, 0, sizeof(log_entries));
    for (unsigned i = 0; i < n; i++) log_entries[i].term = terms[i];
    r->state = (unsigned short)state;
    r->current_term = term;
    r->log.entries = log_entries;
    r->log.size = 64;
    r->log.front = 0;
    r->log.back = n;
    r->log.offset = offset;
    r->log.snapshot.last_index = snap;
    r->log.snapshot.last_term = snap_term;
}

/* An AppendEntries of TERM after PREV (term PREV_TERM) carrying N entries of
 * terms TERMS, in one batch as the decoders build it. */
static void make_ae(struct raft_message *m, raft_term term, raft_index prev, raft_term prev_term,
                    const raft_term *terms, unsigned n)
{
    memset(m, 0, sizeof(*m));
    m->type = RAFT_IO_APPEND_ENTRIES;
    struct raft_append_entries *a = &m->append_entries;
    a->term = term;
    a->prev_log_index = prev;
    a->prev_log_term = prev_term;
    a->n_entries = n;
    if (!n) return;
    a->entries = raft_malloc(n * sizeof(*a->entries));
    uint8_t *batch = raft_malloc(n * 8);
    for (unsigned i = 0; i < n; i++) {
        a->entries[i] = (struct raft_entry){.term = terms[i], .type = RAFT_COMMAND,
                                            .buf = {batch + i * 8, 8}, .batch = batch};
        memset(batch + i * 8, (int)i, 8);
    }
}

static void free_ae(struct raft_message *m)
{
    struct raft_append_entries *a = &m->append_entries;
    if (a->n_entries) raft_free(a->entries[0].batch);
    raft_free(a->entries);
}

/* ack: a result sent while an AppendEntries is delivered claims at most
 * prev_log_index + n_entries; rejections, other messages and results sent
 * outside a delivery are left alone. */
TEST(ack_clamped_to_what_was_checked)
{
    struct raftfix f;
    raftfix_init(&f);
    struct raft r;
    raft_term terms[8] = {1, 1, 1, 2, 2, 2, 2, 2};
    make_raft(&r, RAFT_FOLLOWER, 3, 0, terms, 8, 0, 0);
    struct raft_message ae, res = {.type = RAFT_IO_APPEND_ENTRIES_RESULT}, tmp;
    make_ae(&ae, 3, 4, 2, NULL, 0); /* a heartbeat after entry 4 */
    CHECK(raftfix_recv(&f, &r, &ae));
    res.append_entries_result = (struct raft_append_entries_result){.term = 3,
                                                                    .last_log_index = 8};
    const struct raft_message *out = raftfix_send(&f, &r, &res, &tmp);
    CHECK(out == &tmp);
    CHECK_EQ(out->append_entries_result.last_log_index, 4);
    res.append_entries_result.rejected = 5;
    CHECK(raftfix_send(&f, &r, &res, &tmp) == &res);
    res.append_entries_result.rejected = 0;
    raftfix_after(&f, &r);
    CHECK(raftfix_send(&f, &r, &res, &tmp) == &res); /* the asynchronous path */
    CHECK_EQ(f.st.acks_clamped, 1);
    f.rules &= ~(unsigned)RAFTFIX_ACK;
    CHECK(raftfix_recv(&f, &r, &ae));
    CHECK(raftfix_send(&f, &r, &res, &tmp) == &res);
}

/* base: entries 1..20 compacted (snapshot at 24, trailing 4: the log holds
 * 21..30).  prev 0 or a prev in 1..20 is rebased onto 24 when the message
 * reaches it, dropped when it does not; prev 24, prev in 21..30, an older
 * term or a log never compacted are left to libraft. */
TEST(base_rebases_onto_the_snapshot)
{
    struct raftfix f;
    raftfix_init(&f);
    struct raft r;
    raft_term held[10] = {2, 2, 2, 2, 3, 3, 3, 3, 3, 3}; /* entries 21..30 */
    make_raft(&r, RAFT_FOLLOWER, 4, 20, held, 10, 24, 2);
    raft_term sent[40];
    for (unsigned i = 0; i < 40; i++) sent[i] = i < 24 ? 2 : 4;

    struct raft_message m;
    make_ae(&m, 4, 0, 0, sent, 30); /* entries 1..30 */
    CHECK(raftfix_recv(&f, &r, &m));
    CHECK_EQ(m.append_entries.prev_log_index, 24);
    CHECK_EQ(m.append_entries.prev_log_term, 2); /* the leader's term for 24 */
    CHECK_EQ(m.append_entries.n_entries, 6);      /* 25..30 */
    CHECK_EQ(m.append_entries.entries[0].term, 4);
    CHECK_EQ(((uint8_t *)m.append_entries.entries[0].buf.base)[0], 24);
    raftfix_after(&f, &r);
    free_ae(&m);

    make_ae(&m, 4, 10, 2, sent + 10, 14); /* 11..24: ends at the snapshot */
    CHECK(raftfix_recv(&f, &r, &m));
    CHECK_EQ(m.append_entries.prev_log_index, 24);
    CHECK_EQ(m.append_entries.n_entries, 0);
    CHECK(m.append_entries.entries == NULL);
    raftfix_after(&f, &r);

    make_ae(&m, 4, 10, 2, sent + 10, 5); /* 11..15: stale */
    CHECK(!raftfix_recv(&f, &r, &m));
    CHECK(m.append_entries.entries == NULL);
    CHECK_EQ(f.st.ae_rebased, 2);
    CHECK_EQ(f.st.ae_dropped, 1);

    /* Left alone. */
    raft_index prevs[3] = {24, 22, 30};
    for (unsigned k = 0; k < 3; k++) {
        make_ae(&m, 4, prevs[k], 2, sent, 3);
        CHECK(raftfix_recv(&f, &r, &m));
        CHECK_EQ(m.append_entries.prev_log_index, prevs[k]);
        CHECK_EQ(m.append_entries.n_entries, 3);
        raftfix_after(&f, &r);
        free_ae(&m);
    }
    make_ae(&m, 3, 0, 0, sent, 30); /* an older term: libraft rejects it */
    CHECK(raftfix_recv(&f, &r, &m));
    CHECK_EQ(m.append_entries.n_entries, 30);
    raftfix_after(&f, &r);
    free_ae(&m);
    make_raft(&r, RAFT_FOLLOWER, 4, 0, held, 10, 5, 2); /* a snapshot, nothing compacted */
    make_ae(&m, 4, 0, 0, sent, 30);
    CHECK(raftfix_recv(&f, &r, &m));
    CHECK_EQ(m.append_entries.n_entries, 30);
    raftfix_after(&f, &r);
    free_ae(&m);
    CHECK_EQ(f.st.ae_rebased, 2);
}

/* count: a leader of term 5 whose last stored entry (12) is of term 3 and
 * above its commit index (10): a success of term 5 claiming 12 or more
 * claims 11; once entry 12 is of term 5, or committed, nothing changes. */
TEST(count_holds_an_older_terms_commit)
{
    struct raftfix f;
    raftfix_init(&f);
    f.barrier_term = 5; /* no barrier from raftfix_after: no running raft here */
    struct raft r;
    raft_term terms[12] = {1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3};
    make_raft(&r, RAFT_LEADER, 5, 0, terms, 12, 0, 0);
    r.last_stored = 12;
    r.commit_index = 10;
    struct raft_message m = {.type = RAFT_IO_APPEND_ENTRIES_RESULT};
    m.append_entries_result = (struct raft_append_entries_result){.term = 5,
                                                                  .last_log_index = 13};
    CHECK(raftfix_recv(&f, &r, &m));
    CHECK_EQ(m.append_entries_result.last_log_index, 11);
    m.append_entries_result.last_log_index = 11;
    CHECK(raftfix_recv(&f, &r, &m));
    CHECK_EQ(m.append_entries_result.last_log_index, 11);
    CHECK_EQ(f.st.commits_held, 1);
    m.append_entries_result.last_log_index = 12;
    m.append_entries_result.rejected = 12;
    CHECK(raftfix_recv(&f, &r, &m));
    CHECK_EQ(m.append_entries_result.last_log_index, 12);
    m.append_entries_result.rejected = 0;
    m.append_entries_result.term = 6; /* steps the leader down */
    CHECK(raftfix_recv(&f, &r, &m));
    CHECK_EQ(m.append_entries_result.last_log_index, 12);
    m.append_entries_result.term = 5;
    log_entries[11].term = 5; /* the barrier is stored */
    CHECK(raftfix_recv(&f, &r, &m));
    CHECK_EQ(m.append_entries_result.last_log_index, 12);
    log_entries[11].term = 3;
    r.commit_index = 12;
    CHECK(raftfix_recv(&f, &r, &m));
    CHECK_EQ(m.append_entries_result.last_log_index, 12);
    r.commit_index = 10;
    r.state = RAFT_FOLLOWER;
    CHECK(raftfix_recv(&f, &r, &m));
    CHECK_EQ(m.append_entries_result.last_log_index, 12);
    CHECK_EQ(f.st.commits_held, 1);
    raftfix_after(&f, &r);
}

/* vote: a pre-vote rejected for a lower term carries our term; a grant, a
 * real vote, or a request of our term or higher are left alone. */
TEST(vote_rejection_carries_our_term)
{
    struct raftfix f;
    raftfix_init(&f);
    struct raft r;
    make_raft(&r, RAFT_FOLLOWER, 6, 0, NULL, 0, 0, 0);
    struct raft_message m = {.type = RAFT_IO_REQUEST_VOTE_RESULT}, tmp;
    m.request_vote_result = (struct raft_request_vote_result){
        .term = 4, .vote_granted = false, .pre_vote = raft_tribool_true};
    const struct raft_message *out = raftfix_send(&f, &r, &m, &tmp);
    CHECK(out == &tmp);
    CHECK_EQ(out->request_vote_result.term, 6);
    CHECK_EQ(out->request_vote_result.vote_granted, 0);
    m.request_vote_result.vote_granted = true;
    CHECK(raftfix_send(&f, &r, &m, &tmp) == &m);
    m.request_vote_result.vote_granted = false;
    m.request_vote_result.pre_vote = raft_tribool_false;
    CHECK(raftfix_send(&f, &r, &m, &tmp) == &m);
    m.request_vote_result.pre_vote = raft_tribool_true;
    m.request_vote_result.term = 7;
    CHECK(raftfix_send(&f, &r, &m, &tmp) == &m);
    CHECK_EQ(f.st.vote_terms, 1);
}

/* stop: once stopped, messages are dropped (and freed: ASan would say),
 * nothing is sent; before, nothing changes. */
TEST(stop_leaves_raft)
{
    struct raftfix f;
    raftfix_init(&f);
    struct raft r;
    make_raft(&r, RAFT_LEADER, 2, 0, NULL, 0, 0, 0);
    struct raft_message m, tmp;
    raft_term terms[3] = {2, 2, 2};
    make_ae(&m, 2, 0, 0, terms, 3);
    CHECK(!raftfix_stopped(&f));
    raftfix_stop(&f);
    CHECK(raftfix_stopped(&f));
    CHECK(!raftfix_recv(&f, &r, &m));
    struct raft_message snap = {.type = RAFT_IO_INSTALL_SNAPSHOT};
    raft_configuration_init(&snap.install_snapshot.conf);
    CHECK_EQ(raft_configuration_add(&snap.install_snapshot.conf, 1, "a", RAFT_VOTER), 0);
    snap.install_snapshot.data = (struct raft_buffer){raft_malloc(16), 16};
    CHECK(!raftfix_recv(&f, &r, &snap));
    struct raft_message res = {.type = RAFT_IO_APPEND_ENTRIES_RESULT};
    CHECK(raftfix_send(&f, &r, &res, &tmp) == NULL);
    CHECK_EQ(f.st.stopped, 1);
    raftfix_init(&f);
    f.rules &= ~(unsigned)RAFTFIX_STOP;
    raftfix_stop(&f);
    CHECK(!raftfix_stopped(&f));
}

/* order: with appends in flight, failures wait for the last one and then
 * complete newest first; a success completes at once. */
static unsigned done_seq[8], done_status[8], n_done;

static void on_append(struct raft_io_append *req, int status)
{
    done_seq[n_done] = (unsigned)(uintptr_t)req->data;
    done_status[n_done++] = (unsigned)status;
}

TEST(order_completes_failures_newest_first)
{
    struct raftfix f;
    raftfix_init(&f);
    struct raft_io_append req[4];
    for (unsigned i = 0; i < 4; i++) req[i] = (struct raft_io_append){(void *)(uintptr_t)i, on_append};
    n_done = 0;
    for (unsigned i = 0; i < 4; i++) raftfix_append_begin(&f);
    raftfix_append_done(&f, &req[0], 0);
    CHECK_EQ(n_done, 1);
    raftfix_append_done(&f, &req[1], RAFT_IOERR);
    raftfix_append_done(&f, &req[2], RAFT_IOERR);
    CHECK_EQ(n_done, 1);
    raftfix_append_done(&f, &req[3], RAFT_CANCELED);
    CHECK_EQ(n_done, 4);
    CHECK_EQ(done_seq[1], 3);
    CHECK_EQ(done_status[1], RAFT_CANCELED);
    CHECK_EQ(done_seq[2], 2);
    CHECK_EQ(done_seq[3], 1);
    CHECK(f.fails == NULL);
    CHECK_EQ(f.st.fails_reordered, 3);
    /* A lone failure completes at once. */
    raftfix_append_begin(&f);
    raftfix_append_done(&f, &req[0], RAFT_IOERR);
    CHECK_EQ(n_done, 5);
    /* Rule off: in order, at once. */
    f.rules &= ~(unsigned)RAFTFIX_ORDER;
    raftfix_append_begin(&f);
    raftfix_append_begin(&f);
    raftfix_append_done(&f, &req[1], RAFT_IOERR);
    CHECK_EQ(n_done, 6);
    CHECK_EQ(done_seq[5], 1);
    raftfix_append_done(&f, &req[2], RAFT_IOERR);
    CHECK_EQ(n_done, 7);
}
