/* proxy_cmd.h: getting index commands applied, from any proxy (the
 * service every other proxy module submits through; see proxy_cmd.c).
 *
 * Two entry points: proxy_cmd_submit for one encoded command, and
 * proxy_cmd_write_add for one extent write, which is group-committed with
 * others into a WRITE_BATCH.  Both answer through a callback that runs
 * exactly once, on the reactor thread, never inside the submitting call.
 * Nothing here calls back into the modules above it except through those
 * callbacks. */
#ifndef BD_PROXY_CMD_H
#define BD_PROXY_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/conn.h"
#include "store/index/fsm.h"
#include "store/index/idxcmd.h"
#include "store/raft/consensus.h"

struct proxy;
struct event;

/* One index command on its way to being applied.  The caller owns the
 * struct until CB has run (exactly once, on the reactor, never inside
 * proxy_cmd_submit).  The command is proposed on the leader, or forwarded
 * to it by PROPOSE; an outcome that is unknown (leader lost, connection
 * reset) is retried until DEADLINE_MS, which is safe because every command
 * the proxy submits is idempotent in effect (see proxy_cmd.c).
 *
 * Errors at the deadline say what is known: -EAGAIN if the command was
 * never handed to raft (no leader: nothing can have been applied, the
 * caller may simply retry), -ETIMEDOUT if it was and its fate is unknown
 * (it may still be applied: the caller must treat it as such).  RES is
 * borrowed for the callback only (NULL when ERR is not 0). */
struct proxy_cmd {
    void (*cb)(struct proxy_cmd *c, int err, uint64_t raft_index,
               const struct idxcmd_result *res);
    void *data;
    uint8_t *buf;              /* the encoded command; owned by the caller */
    size_t len;
    uint64_t deadline_ms;      /* monotonic; fail with -EAGAIN after it */
    bool when_decided;         /* answer once the result is decided, before this
                                * proxy's index commits it (fsm_pending_wait_decided) */
    /* private */
    struct proxy *p;
    struct consensus_req creq;
    struct conn_call call;
    struct event *retry_ev;
    int attempts;              /* tries so far (readable in CB: > 1 means retried) */
    bool done;
    bool maybe_applied;        /* proposed or forwarded at least once */
    struct fsm_pending *applying; /* committed; waiting for the index writer */
    uint64_t applied_index;    /* its raft index */
    struct proxy_cmd *prev, *next; /* in p->cmds while not done */
};

/* Submit C (buf, len, cb, deadline set; C is kept until its callback). */
void proxy_cmd_submit(struct proxy *p, struct proxy_cmd *c);
/* Stopping: finish every command still waiting to retry with -ESHUTDOWN
 * (call after consensus and the peer links are closed, which finish the
 * others). */
void proxy_cmd_fail_all(struct proxy *p);

/* A single extent write waiting for its WRITE_BATCH.  CB runs exactly once
 * with the record's own status (0, or the FSM's refusal as -errno, or the
 * batch's error) and the raft index of the batch. */
struct proxy_cmd_write {
    void (*cb)(struct proxy_cmd_write *w, int err, uint64_t raft_index);
    void *data;
    struct idxcmd_write w;
    uint64_t deadline_ms;
    struct proxy_cmd_write *next; /* private: batcher queue */
};
/* Queue W (kept until its callback) for the next WRITE_BATCH.  CB may run
 * inside this call if the batch cannot be encoded (-EINVAL). */
void proxy_cmd_write_add(struct proxy *p, struct proxy_cmd_write *w);

#endif
