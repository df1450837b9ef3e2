/* proxy_cmd.c: getting index commands applied, from any proxy.
 *
 * proxy_cmd_submit: on the leader the command is proposed to raft; on a
 * follower it is forwarded to the leader in a PROPOSE request, whose
 * answer carries the raft index and the FSM's result.  No leader known, a
 * leader that stepped down, a dropped connection: wait 50 ms and try again
 * (the leader may have changed), until the command's deadline.
 *
 * Unknown outcomes are retried, so a command may be applied twice.  That
 * is safe for everything the proxy submits: WRITE_BATCH re-inserts the
 * same extents with the same blob ids (the FSM judges refcounts at the end
 * of the entry, so the blob is not collected in between), and nothing can
 * write the same blocks in between because the agent never ships a block
 * again before its previous ship was answered and a stale agent is fenced;
 * ATTACH applies once, on the base generation it names (the second copy
 * finds the generation moved and is refused, and the agent attaches again
 * on the new one: idxcmd.h ATTACH); ALLOC_BLOB_IDS wastes a range; GC_DONE and REGISTER_NODE are
 * idempotent; CREATE_VOLUME answers EEXIST the second time, which the
 * admin API resolves by looking at the volume.  Raft's log order means a
 * retried entry can never be applied after something the client issued
 * after receiving its answer.
 *
 * Group commit: proxy_cmd_write_add queues single extent writes; while fewer than
 * BATCHES_IN_FLIGHT batches are being committed, everything queued goes into
 * one WRITE_BATCH (sorted by volume and offset as the FSM requires; writes
 * overlapping another in the batch wait for the next one).  Under load each
 * raft entry carries many writes; at queue depth 1 a write goes out at once. */
#include "roles/proxy/proxy_cmd.h"
#include "roles/proxy/proxy_int.h"
#include "roles/proxy/proxy_peers.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_MS 50
#define FORWARD_TIMEOUT_MS 5000
#define BATCHES_IN_FLIGHT 2

static void cmd_try(struct proxy_cmd *c);

static void cmd_finish(struct proxy_cmd *c, int err, uint64_t index,
                       const struct idxcmd_result *res)
{
    if (c->done) return;
    c->done = true;
    if (c->applying) {
        c->applying->cb = NULL; /* finished early (stopping): forget the entry */
        c->applying = NULL;
    }
    if (c->prev) c->prev->next = c->next;
    else c->p->cmds = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (c->retry_ev) {
        event_free(c->retry_ev);
        c->retry_ev = NULL;
    }
    c->cb(c, err, index, res);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cmd_try(arg);
}

static void cmd_later(struct proxy_cmd *c, unsigned ms)
{
    if (!c->retry_ev) return; /* out of memory at submit: proxy_cmd_fail_all ends it */
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->retry_ev, &tv);
}

static void on_entry_applied(struct fsm_pending *fp, void *arg)
{
    struct proxy_cmd *c = arg;
    c->applying = NULL;
    if (fp->err) cmd_finish(c, fp->err, 0, NULL);
    else cmd_finish(c, 0, c->applied_index, &fp->res); /* borrowed: callers copy */
}

static void on_committed(struct consensus_req *req, int status, uint64_t index, void *result)
{
    struct proxy_cmd *c = req->data;
    if (status == 0) {
        /* Committed; answer once the index writer has applied it, so that a
         * read after the answer sees it (fsm.h, asynchronous mode), or for
         * WHEN_DECIDED once its result is known. */
        struct fsm_pending *fp = result;
        c->applying = fp;
        c->applied_index = index;
        if (c->when_decided) fsm_pending_wait_decided(fp, on_entry_applied, c);
        else fsm_pending_wait(fp, on_entry_applied, c);
        return;
    }
    if (status == -BD_ENOTLEADER || (status == -ESHUTDOWN && !c->p->stopping)) {
        cmd_later(c, RETRY_MS); /* outcome unknown: see the file comment */
        return;
    }
    cmd_finish(c, status, 0, NULL);
}

static void on_forwarded(struct conn_call *call, int err, struct conn_frame *f)
{
    struct proxy_cmd *c = call->data;
    if (err == 0) {
        struct wire_propose_resp r;
        struct idxcmd_result res;
        if (wire_decode_propose_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) < 0 ||
            idxcmd_decode_result(r.result, r.result_len, &res) < 0) {
            log_warn(c->p->tag, "malformed PROPOSE answer from the leader; retrying");
            cmd_later(c, RETRY_MS);
            return;
        }
        cmd_finish(c, 0, r.raft_index, &res);
        return;
    }
    if (err == -EINVAL || err == -EPROTO) {
        char why[160];
        log_error(c->p->tag, "the leader refused a command: %s",
                  f ? conn_error_text(f, why, sizeof(why)) : bd_strerror(err));
        cmd_finish(c, -EINVAL, 0, NULL);
        return;
    }
    if (c->p->stopping) {
        cmd_finish(c, -ESHUTDOWN, 0, NULL);
        return;
    }
    cmd_later(c, RETRY_MS); /* not leader any more, reset, timeout: unknown */
}

static void cmd_try(struct proxy_cmd *c)
{
    struct proxy *p = c->p;
    uint64_t now = util_mono_ms();
    if (p->stopping) {
        cmd_finish(c, -ESHUTDOWN, 0, NULL);
        return;
    }
    if (now >= c->deadline_ms) {
        cmd_finish(c, c->maybe_applied ? -ETIMEDOUT : -EAGAIN, 0, NULL);
        return;
    }
    c->attempts++;
    if (consensus_is_leader(p->cons)) {
        c->creq.data = c;
        int rc = consensus_propose(p->cons, &c->creq, c->buf, c->len, on_committed);
        if (rc == 0) {
            c->maybe_applied = true;
            return;
        }
        if (rc != -BD_ENOTLEADER) {
            cmd_finish(c, rc, 0, NULL);
            return;
        }
    }
    const char *addr = NULL;
    uint64_t leader = consensus_leader(p->cons, &addr);
    (void)addr;
    struct link *l = proxy_peers_link(p, leader);
    if (!l || !link_is_up(l)) {
        cmd_later(c, RETRY_MS);
        return;
    }
    uint8_t fields[IDXCMD_MAX_LEN + 64];
    struct wire_propose_req req = {.from_id = p->cfg->id, .cmd_len = (uint32_t)c->len,
                                   .cmd = c->buf};
    int n = wire_encode_propose_req(fields, sizeof(fields), &req);
    if (n < 0) {
        cmd_finish(c, n, 0, NULL);
        return;
    }
    c->call.cb = on_forwarded;
    c->call.data = c;
    uint64_t left = c->deadline_ms - now;
    uint32_t timeout = (uint32_t)BD_MIN(left, (uint64_t)FORWARD_TIMEOUT_MS);
    if (link_call(l, &c->call, WIRE_PROPOSE, fields, (size_t)n, NULL, timeout) < 0)
        cmd_later(c, RETRY_MS);
    else
        c->maybe_applied = true;
}

void proxy_cmd_submit(struct proxy *p, struct proxy_cmd *c)
{
    c->p = p;
    c->attempts = 0;
    c->done = false;
    c->maybe_applied = false;
    c->applying = NULL;
    c->prev = NULL;
    c->next = p->cmds;
    if (p->cmds) p->cmds->prev = c;
    p->cmds = c;
    c->retry_ev = evtimer_new(reactor_base(p->rx), on_retry, c);
    if (!c->retry_ev) {
        /* Cannot schedule the first try: fail on the next tick instead. */
        log_error(p->tag, "out of memory submitting a command");
        return;
    }
    cmd_later(c, 0); /* never call back from inside submit */
}

void proxy_cmd_fail_all(struct proxy *p)
{
    while (p->cmds) cmd_finish(p->cmds, -ESHUTDOWN, 0, NULL);
}

/* ---- group commit of writes -------------------------------------------------- */

struct batch {
    struct proxy_cmd cmd;
    struct proxy *p;
    uint32_t n;
    struct proxy_cmd_write **recs;   /* in sorted (command) order */
    uint64_t t0_us;
    uint8_t buf[IDXCMD_MAX_LEN];
};

static void batch_kick(struct proxy *p);

static int rec_cmp(const void *a, const void *b)
{
    const struct proxy_cmd_write *x = *(const struct proxy_cmd_write *const *)a;
    const struct proxy_cmd_write *y = *(const struct proxy_cmd_write *const *)b;
    return idxcmd_write_cmp(&x->w, &y->w);
}

static void on_batch(struct proxy_cmd *c, int err, uint64_t index, const struct idxcmd_result *res)
{
    struct batch *b = bd_container_of(c, struct batch, cmd);
    struct proxy *p = b->p;
    metrics_observe_us(p->h_commit, util_mono_ns() / 1000 - b->t0_us);
    if (err == 0 && (res->type != IDXCMD_WRITE_BATCH || res->n != b->n)) {
        log_error(p->tag, "WRITE_BATCH result does not match its batch (%u of %u)", res->n,
                  b->n);
        err = -EIO;
    }
    if (err == 0 && res->status != IDXCMD_ST_OK) err = idxcmd_status_to_err(res->status);
    p->batches_in_flight--;
    for (uint32_t i = 0; i < b->n; i++) {
        struct proxy_cmd_write *w = b->recs[i];
        int e = err ? err : idxcmd_status_to_err(res->st[i]);
        w->cb(w, e, index);
    }
    free(b->recs);
    free(b);
    batch_kick(p);
}

static void batch_kick(struct proxy *p)
{
    while (p->batches_in_flight < BATCHES_IN_FLIGHT && p->wq_head) {
        struct batch *b = calloc(1, sizeof(*b));
        uint32_t cap = BD_MIN(p->wq_len, IDXCMD_MAX_WRITES);
        struct proxy_cmd_write **recs = calloc(cap, sizeof(*recs));
        struct idxcmd_write *ws = calloc(cap, sizeof(*ws));
        if (!b || !recs || !ws) {
            free(b);
            free(recs);
            free(ws);
            log_error(p->tag, "out of memory building a write batch");
            return; /* the next add or completion retries */
        }
        uint32_t n = 0;
        while (n < cap && p->wq_head) {
            struct proxy_cmd_write *w = p->wq_head;
            p->wq_head = w->next;
            if (!p->wq_head) p->wq_tail = NULL;
            p->wq_len--;
            w->next = NULL;
            recs[n++] = w;
        }
        qsort(recs, n, sizeof(*recs), rec_cmp);
        /* Writes overlapping a neighbour in the same volume go back to the
         * queue for the next batch (the FSM refuses overlaps in one entry). */
        uint32_t k = 0;
        struct proxy_cmd_write *deferred = NULL, **dtail = &deferred;
        for (uint32_t i = 0; i < n; i++) {
            struct proxy_cmd_write *w = recs[i];
            if (k > 0 && recs[k - 1]->w.vol_id == w->w.vol_id &&
                recs[k - 1]->w.off + recs[k - 1]->w.len > w->w.off) {
                *dtail = w;
                dtail = &w->next;
                continue;
            }
            recs[k++] = w;
        }
        if (deferred) {
            /* Back to the front of the queue, in order (their next links
             * were cleared when they were dequeued). */
            unsigned cnt = 0;
            struct proxy_cmd_write *last = NULL;
            for (struct proxy_cmd_write *w = deferred; w; w = w->next) {
                last = w;
                cnt++;
            }
            last->next = p->wq_head;
            if (!p->wq_head) p->wq_tail = last;
            p->wq_head = deferred;
            p->wq_len += cnt;
        }
        uint64_t deadline = 0;
        for (uint32_t i = 0; i < k; i++) {
            ws[i] = recs[i]->w;
            if (recs[i]->deadline_ms > deadline) deadline = recs[i]->deadline_ms;
        }
        struct idxcmd cmd = {.type = IDXCMD_WRITE_BATCH};
        cmd.u.write_batch.n = k;
        cmd.u.write_batch.in = ws;
        int len = idxcmd_encode(b->buf, sizeof(b->buf), &cmd);
        free(ws);
        b->p = p;
        b->n = k;
        b->recs = recs;
        b->t0_us = util_mono_ns() / 1000;
        if (len < 0) {
            /* A write the codec refuses never reaches raft: fail it alone. */
            log_error(p->tag, "cannot encode a write batch: %s", bd_strerror(len));
            for (uint32_t i = 0; i < k; i++) recs[i]->cb(recs[i], -EINVAL, 0);
            free(recs);
            free(b);
            continue;
        }
        metric_inc(p->c_batches);
        metric_add(p->c_batched_writes, k);
        b->cmd.buf = b->buf;
        b->cmd.len = (size_t)len;
        b->cmd.cb = on_batch;
        b->cmd.deadline_ms = deadline;
        /* The agent's reads carry the write's raft index and wait for this
         * proxy to apply it (C7): the answer need not wait for the index's
         * fsync, which would put one more flush in series on every write. */
        b->cmd.when_decided = true;
        p->batches_in_flight++;
        proxy_cmd_submit(p, &b->cmd);
    }
}

void proxy_cmd_write_add(struct proxy *p, struct proxy_cmd_write *w)
{
    w->next = NULL;
    if (p->wq_tail) p->wq_tail->next = w;
    else p->wq_head = w;
    p->wq_tail = w;
    p->wq_len++;
    batch_kick(p);
}
