/* agent_client.h: the agent's client of the proxy cluster.
 *
 * One link (net/link.h) to every proxy in the agent's config.  A request
 * goes to an up proxy, preferring the one that last answered; the
 * client retries it, possibly on another proxy, while the outcome is
 * known to be "not done":
 *   - no proxy connected, or the send failed: nothing was sent;
 *   - ENOTLEADER (the hint names the leader: the next try goes there),
 *     EAGAIN, ESHUTDOWN or ENOMEM from a proxy: it refused the request;
 * with a short capped backoff, until the call's deadline (io_timeout_ms
 * after submission by default), then fails with -ETIMEDOUT.
 *
 * Requests whose outcome becomes unknown (the connection dropped or the
 * call timed out after it was sent, or the proxy answered EIO, ETIMEDOUT,
 * EAGAIN, ESHUTDOWN or ENOMEM) are retried only if the caller marked them
 * idempotent (reads, maps, lists, lookups, and attaches: every copy of
 * one names the same base generation, so one applies at most; wire.h
 * VOL_ATTACH).  EAGAIN counts as unknown because the proxy answers it
 * when its own retries of a Raft proposal run out of time, and that
 * proposal may still commit; only ENOTLEADER proves that nothing was
 * done.  A non-idempotent request (VOL_WRITE) is handed back with
 * `unknown` set: the volume layer then fences the old attempt by
 * re-attaching before it sends anything again (agent_ship.c).  Every
 * other error status is handed back as is.
 *
 * Proxies may also call the agent on these connections (VOL_BARRIER):
 * every connection starts with AGENT_HELLO naming the agent, and requests
 * go to opts.on_request.
 *
 * Links reconnect by themselves; calls waiting for a proxy are retried as
 * soon as one comes up, so I/O resumes without help when the cluster
 * returns.  Everything runs on the reactor thread. */
#ifndef BD_AGENT_CLIENT_H
#define BD_AGENT_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "net/conn.h"

struct agent_client;
struct cJSON;

struct agent_client_opts {
    const char *tag;                /* log tag; borrowed, outlives the client */
    const struct conn_auth *auth;   /* borrowed, outlives the client */
    const char *const *proxies;     /* N addresses; copied */
    unsigned n;
    uint64_t io_timeout_ms;         /* default deadline of a call */
    struct conn_fault fault;        /* test-build wire faults */
    void (*on_up)(void *arg);       /* optional: a proxy connection came up */
    /* The agent's attach identity: sent in AGENT_HELLO on every connection
     * as it comes up, so a proxy knows where to send VOL_BARRIER. */
    const char *agent_id;           /* copied */
    /* Optional: a request a proxy sent us (VOL_BARRIER).  Reply to it with
     * conn_reply* exactly once unless it is oneway; NULL answers ENOTSUP. */
    void (*on_request)(struct conn *c, struct conn_frame *f, void *arg);
    void *arg;
};

/* Returns owned (agent_client_free), or NULL with -errno in *ERR. */
struct agent_client *agent_client_new(struct reactor *rx, const struct agent_client_opts *o,
                                      int *err);
/* Fail every pending call with -ESHUTDOWN (callbacks run now), close the
 * links and free. */
void agent_client_free(struct agent_client *cl);

#define AGENT_CLIENT_REQ_FIELDS 600

/* A request.  The caller owns it until CB has run (exactly once, never
 * from inside agent_client_call). */
struct agent_client_req {
    /* Set by the caller. */
    void (*cb)(struct agent_client_req *call, int err, struct conn_frame *f);
    void *data;
    uint16_t type;                  /* WIRE_VOL_* */
    bool idempotent;                /* may be resent after an unknown outcome */
    uint64_t deadline_ms;           /* absolute (util_mono_ms); 0: now + io_timeout_ms */
    uint8_t fields[AGENT_CLIENT_REQ_FIELDS]; /* encoded request fields */
    const uint8_t *fields_big;      /* or, if set, these (caller-owned until CB) */
    size_t fields_len;
    /* Bulk data, referenced: every send takes a reference with
     * payload_ref(payload.arg) and the conn drops it with payload.release.
     * With payload_ref NULL the bytes are copied per send. */
    struct conn_payload payload;
    void (*payload_ref)(void *arg);
    /* Results, valid in CB. */
    bool unknown;                   /* the last attempt's outcome is unknown */
    unsigned attempts;              /* sends made */
    /* Private. */
    struct agent_client *cl;
    struct conn_call cc;
    unsigned link;                  /* index of the link of the current send */
    uint64_t sent_bytes;            /* of the current send, counted on its link */
    uint64_t due_ms;                /* retry time while waiting */
    uint32_t backoff_ms;
    struct agent_client_req *next; /* waiting list */
};

/* Start CALL (see above).  The response frame F handed to CB is borrowed:
 * valid during CB only (take its body with conn_frame_take to keep it). */
void agent_client_call(struct agent_client *cl, struct agent_client_req *call);

/* Number of proxies connected right now. */
unsigned agent_client_up(const struct agent_client *cl);
/* Retries made so far (all calls). */
uint64_t agent_client_retries(const struct agent_client *cl);
/* Append {"addr", "up", "id"} objects for each proxy to the JSON array OUT. */
void agent_client_status(const struct agent_client *cl, struct cJSON *out);

#endif
