/* agent_nbd_int.h: types shared by the files of the NBD front end, which
 * call one another top-down only:
 *
 *   agent_nbd.c       the server: listeners, admission, the handshake, and
 *        |            each connection's events (which step to run)
 *        v
 *   agent_nbd_tx.c    transmission: requests, calls into the volume layer,
 *        |            replies
 *        v
 *   agent_nbd_conn.c  one connection's plumbing: state, lifetime
 *                     (reference counting, see there), output, reading on
 *                     and off, drain and close, the request slot pool
 *
 * The one call back up, "a connection closed", goes through the callback
 * agent_nbd.on_conn_closed that agent_nbd.c installs.  Names here start
 * with agent_nbd (the module).  Not for other modules. */
#ifndef BD_AGENT_NBD_INT_H
#define BD_AGENT_NBD_INT_H

#include "runtime/metrics.h"
#include "net/nbd.h"
#include "net/nbd_tls.h"
#include "roles/agent/agent_nbd.h"
#include "roles/agent/agent_qos.h"

#include <event2/bufferevent.h>
#include <stdbool.h>

/* The connection states (STYLE.md §8); agent_nbd.c has the diagram. */
enum agent_nbd_conn_state {
    AGENT_NBD_HS_FLAGS, /* greeting sent; reading the 4-byte client flags */
    AGENT_NBD_HS_OPT,   /* reading a 16-byte option header */
    AGENT_NBD_HS_DATA,  /* reading the payload of an accepted option header */
    AGENT_NBD_HS_WAIT,  /* an option waits for agent_vols_{list,info,open}; not reading */
    AGENT_NBD_HS_TLS,   /* STARTTLS acknowledged: the ACK flushes, then the TLS handshake */
    AGENT_NBD_TX_HDR,   /* transmission: reading a 28-byte request header */
    AGENT_NBD_TX_DATA,  /* reading the payload of a valid WRITE into its slot */
    AGENT_NBD_TX_SKIP,  /* reading and dropping the payload of a rejected WRITE */
    AGENT_NBD_DRAIN,    /* no more input: in-flight requests finish, output flushes */
    AGENT_NBD_CLOSED,   /* socket closed; memory lives until the last reference */
    AGENT_NBD_N_STATES
};

#define AGENT_NBD_READ_MAX_EXT 16     /* READ map entries asked of the volume */
#define AGENT_NBD_BS_MAX_EXT 512      /* BLOCK_STATUS extents asked of the volume */
/* Input buffered before the socket is left alone. */
#define AGENT_NBD_READ_HIGH_WATER (256u << 10)

/* One request in flight: the unit of the per-connection pool.  Slots and
 * their buffers are reused, so the hot path allocates nothing. */
struct agent_nbd_slot {
    struct agent_vol_req req; /* to the volume layer; req.data = this slot */
    struct agent_nbd_conn *c; /* owner */
    struct nbd_request rq;   /* the client's request */
    uint8_t *buf;            /* READ/WRITE data, BLOCK_STATUS extents */
    size_t cap;              /* bytes allocated at buf */
    uint64_t reserved;       /* payload bytes counted in c->busy_bytes */
    uint64_t done;           /* TRIM/WRITE_ZEROES: bytes finished (split requests) */
    uint64_t end;            /* TRIM/WRITE_ZEROES: done stops here (TRIM: the last whole block) */
    uint64_t aoff;           /* READ/CACHE: the block-aligned offset actually read into buf */
    uint64_t start_ns;       /* when the header arrived (latency) */
    unsigned refs;           /* evbuffer references to buf not yet released */
    bool in_vol;             /* inside the volume layer, or waiting for its QoS */
    bool admitted;           /* past the volume's QoS limits (agent_qos.h) */
    struct agent_qos_wait qw; /* while it waits for them */
    struct agent_vol_extent rext[AGENT_NBD_READ_MAX_EXT]; /* READ map */
    struct agent_nbd_slot *next;                          /* free list */
};

/* Where a connection came in. */
enum agent_nbd_via {
    AGENT_NBD_VIA_TCP,          /* nbd_listen: nbd_tls applies, and the attachment's client */
    AGENT_NBD_VIA_UNIX,         /* nbd_unix: any volume of this agent, for local tools */
    AGENT_NBD_VIA_VOLUME,       /* a volume's own socket: that volume only */
};

struct agent_nbd_conn {
    struct agent_nbd *s;
    struct bufferevent *bev;     /* NULL once closed */
    enum agent_nbd_conn_state state;
    enum agent_nbd_via via;
    char bound[AGENT_VOL_NAME_MAX + 1]; /* VIA_VOLUME: the volume; "" otherwise */
    bool tls;                    /* the TLS handshake is done */
    bool tls_handshaking;        /* HS_TLS: the TLS bufferevent is in place */
    struct nbd_tls_peer peer_tls; /* who TLS says the client is (auth ANON without TLS) */
    uint64_t id;                 /* for logs */
    uint64_t accepted_ms;        /* monotonic, for logs */
    char peer[80];
    bool same_host;              /* VIA_TCP: the peer is on this host (a loopback
                                    address, or the connection's own local one) */
    int refs;                    /* see the file comment */
    struct agent_nbd_conn *prev, *next;       /* s->conns */
    struct agent_nbd_conn *hs_prev, *hs_next; /* s->hs_head..hs_tail, oldest first */
    bool in_hs;                  /* in the handshake list */
    bool read_off;               /* EV_READ disabled (back-pressure, waits) */
    bool eof;                    /* the client shut its side; drain once input is taken in */
    struct event *timer;         /* handshake deadline, then drain deadline */
    struct event *resume;        /* continue with input already buffered */
    const char *close_why;       /* for the close log line */

    /* handshake */
    struct nbd_hs hs;
    struct nbd_opt_hdr opt;      /* the option being read or answered */
    uint8_t *opt_buf;            /* its payload (<= NBD_OPT_MAX_LEN) */
    size_t opt_cap;
    struct nbd_hs_req hreq;      /* the option waiting in HS_WAIT; name points into opt_buf */
    char name[AGENT_VOL_NAME_MAX + 1]; /* the volume asked for, NUL-terminated */
    struct agent_vols_list_req list_req;
    struct agent_vols_info_req info_req;
    struct agent_vols_open_req open_req;

    /* transmission */
    struct agent_vol *vol;       /* opened by GO; put after close and n_vol == 0 */
    struct agent_vol_info vinfo; /* copy of agent_vol_info(vol) */
    struct nbd_export_caps caps; /* what nbd_check_request enforces */
    struct agent_nbd_slot *free_slots; /* idle slots */
    unsigned n_slots;            /* allocated slots (<= max_inflight) */
    unsigned n_busy;             /* slots holding a request */
    unsigned n_vol;              /* requests inside the volume layer */
    uint64_t busy_bytes;         /* payload bytes reserved by busy slots */
    size_t kept_bytes;           /* buffer bytes kept by idle slots */
    struct agent_nbd_slot *cur;  /* TX_DATA: the WRITE receiving its payload */
    struct nbd_request skip_rq;  /* TX_SKIP: the rejected WRITE */
    uint32_t skip_left;          /* its payload bytes still to drop */
    uint32_t skip_err;           /* the error to reply once dropped */
};

/* Per-command metrics, indexed by NBD_CMD_* (unknown commands at NBD_CMD_COUNT). */
struct agent_nbd_cmd_metrics {
    struct metrics_counter *requests, *errors;
    struct metrics_hist *latency;
};

struct agent_nbd {
    struct reactor *rx;
    struct agent_vols *vs;
    struct agent_nbd_opts o;         /* with defaults filled in */
    struct listener *tcp, *unx;
    struct agent_nbd_vsock *vsocks;  /* the volume sockets (opts.volume_dir) */
    struct agent_nbd_conn *conns;             /* every connection not yet closed */
    struct agent_nbd_conn *hs_head, *hs_tail; /* those in the handshake, oldest first */
    unsigned n_conns, n_hs;
    uint64_t next_id;
    bool stopping;
    uint64_t stop_drain_ms;
    void (*stop_done)(void *arg);   /* agent_nbd_stop's DONE, until called */
    void *stop_arg;
    bool stop_scheduled;             /* stop_done_now is deferred already */
    /* Installed by agent_nbd.c, called by agent_nbd_conn.c after it closed
     * a connection (the server's count dropped: a stop may be done). */
    void (*on_conn_closed)(struct agent_nbd *s);
    struct agent_nbd_stats st;       /* counters (connections/handshakes live above) */
    struct agent_nbd_cmd_metrics cmd[NBD_CMD_COUNT + 1];
    struct metrics_counter *m_bytes_in, *m_bytes_out, *m_proto_errors, *m_refused,
        *m_evicted, *m_timeouts, *m_handshakes_ok, *m_handshakes_failed, *m_tls_ok,
        *m_tls_failed, *m_denied;
};

/* ---- agent_nbd_conn.c: one connection's plumbing ------------------------ */

const char *agent_nbd_conn_state_name(enum agent_nbd_conn_state st);
/* The one place a connection's state changes; asserts the transition. */
void agent_nbd_conn_set_state(struct agent_nbd_conn *c, enum agent_nbd_conn_state to);
/* In a state that reads input (HS_FLAGS .. HS_DATA, TX_*)? */
bool agent_nbd_conn_reading(const struct agent_nbd_conn *c);
void agent_nbd_conn_ref(struct agent_nbd_conn *c);
void agent_nbd_conn_unref(struct agent_nbd_conn *c);
/* Leave the server's handshake list (the handshake is over). */
void agent_nbd_conn_hs_leave(struct agent_nbd_conn *c);
/* Close the socket now (hard disconnect); WHY for the log.  Calls
 * s->on_conn_closed. */
void agent_nbd_conn_close(struct agent_nbd_conn *c, const char *why);
/* Stop reading; close once in-flight requests are done and output has
 * drained, or after DRAIN_MS. */
void agent_nbd_conn_drain(struct agent_nbd_conn *c, uint64_t drain_ms, const char *why);
/* Queue LEN bytes of output (copied).  false if the connection is closed. */
bool agent_nbd_conn_send(struct agent_nbd_conn *c, const void *p, size_t len);
/* Pause or resume reading the socket. */
void agent_nbd_conn_read_enable(struct agent_nbd_conn *c, bool on);
/* A slot or output space freed up: read again (by the resume event), or
 * close a draining connection that owes nothing more. */
void agent_nbd_conn_maybe_resume(struct agent_nbd_conn *c);
/* Count a protocol violation and close. */
void agent_nbd_conn_proto_error(struct agent_nbd_conn *c, const char *why);

/* A free slot for a new request (counted busy), or NULL (no memory). */
struct agent_nbd_slot *agent_nbd_conn_slot_get(struct agent_nbd_conn *c);
/* The request of SL is over: back to the pool once the volume layer and
 * the output are done with it. */
void agent_nbd_conn_slot_release(struct agent_nbd_slot *sl);
/* SL's buffer holds at least LEN bytes.  0 or -ENOMEM. */
int agent_nbd_conn_slot_buf(struct agent_nbd_slot *sl, size_t len);
/* Queue LEN bytes of SL's buffer at P as output by reference (no copy);
 * the slot stays out of the pool until the socket took them. */
bool agent_nbd_conn_send_ref(struct agent_nbd_slot *sl, const uint8_t *p, size_t len);

/* ---- agent_nbd_tx.c: transmission ------------------------------------------ */

/* One step of input processing in a TX_* state: true if progress was
 * made and the caller may loop, false to wait for more input. */
bool agent_nbd_tx_step(struct agent_nbd_conn *c);
/* Set up the caps after GO succeeded on VOL. */
void agent_nbd_tx_setup(struct agent_nbd_conn *c);
/* Transmission flags for a volume; DF only with STRUCTURED replies (the
 * spec: "MUST NOT set this transmission flag unless structured replies
 * have been negotiated"). */
uint16_t agent_nbd_tx_flags(const struct agent_vol_info *vi, bool structured);
/* Block sizes for a volume: minimum 1 (any alignment: the volume layer
 * read-modify-writes partial blocks), preferred the volume's block. */
void agent_nbd_tx_sizes(const struct agent_vol_info *vi, uint32_t *min, uint32_t *pref,
                        uint32_t *max);

#endif
