/* agent_nbd_int.h: types shared by agent_nbd.c (server, connections,
 * handshake) and agent_nbd_tx.c (transmission).  Not for other modules.
 *
 * Reference counting of a connection (nbdc_ref/nbdc_unref): one reference
 * while its socket is open, one per request inside the volume layer
 * (n_vol), and one while an agent_vols_{list,info,open} call is pending.
 * The memory is freed, deferred to the reactor, when the count drops to
 * zero.  The volume reference (vol) is put once the socket is closed and
 * n_vol is zero ("In-flight requests of the caller must have completed"). */
#ifndef BD_AGENT_NBD_INT_H
#define BD_AGENT_NBD_INT_H

#include "../net/metrics.h"
#include "../net/nbd.h"
#include "agent_nbd.h"

#include <event2/bufferevent.h>
#include <stdbool.h>

/* The connection states (STYLE.md §8); agent_nbd.c has the diagram. */
enum nbdc_state {
    NBDC_HS_FLAGS,  /* greeting sent; reading the 4-byte client flags */
    NBDC_HS_OPT,    /* reading a 16-byte option header */
    NBDC_HS_DATA,   /* reading the payload of an accepted option header */
    NBDC_HS_WAIT,   /* an option waits for agent_vols_{list,info,open}; not reading */
    NBDC_TX_HDR,    /* transmission: reading a 28-byte request header */
    NBDC_TX_DATA,   /* reading the payload of a valid WRITE into its slot */
    NBDC_TX_SKIP,   /* reading and dropping the payload of a rejected WRITE */
    NBDC_DRAIN,     /* no more input: in-flight requests finish, output flushes */
    NBDC_CLOSED,    /* socket closed; memory lives until the last reference */
    NBDC_N_STATES
};

#define NBD_READ_MAX_EXT 16              /* READ map entries asked of the volume */
#define NBD_BS_MAX_EXT 512               /* BLOCK_STATUS extents asked of the volume */
#define NBD_READ_HIGH_WATER (256u << 10) /* input buffered before the socket is left alone */

/* One request in flight: the unit of the per-connection pool.  Slots and
 * their buffers are reused, so the hot path allocates nothing. */
struct nbd_slot {
    struct agent_req req;    /* to the volume layer; req.data = this slot */
    struct nbdc *c;          /* owner */
    struct nbd_request rq;   /* the client's request */
    uint8_t *buf;            /* READ/WRITE data, BLOCK_STATUS extents */
    size_t cap;              /* bytes allocated at buf */
    uint64_t reserved;       /* payload bytes counted in c->busy_bytes */
    uint64_t done;           /* TRIM/WRITE_ZEROES: bytes finished (split requests) */
    uint64_t start_ns;       /* when the header arrived (latency) */
    unsigned refs;           /* evbuffer references to buf not yet released */
    bool in_vol;             /* inside the volume layer */
    struct agent_extent rext[NBD_READ_MAX_EXT]; /* READ map */
    struct nbd_slot *next;   /* free list */
};

struct nbdc {
    struct agent_nbd *s;
    struct bufferevent *bev;     /* NULL once closed */
    enum nbdc_state state;
    uint64_t id;                 /* for logs */
    uint64_t accepted_ms;        /* monotonic, for logs */
    char peer[80];
    int refs;                    /* see the file comment */
    struct nbdc *prev, *next;    /* s->conns */
    struct nbdc *hs_prev, *hs_next; /* s->hs_head..hs_tail, oldest first */
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
    struct agent_list_req list_req;
    struct agent_info_req info_req;
    struct agent_open_req open_req;

    /* transmission */
    struct agent_vol *vol;       /* opened by GO; put after close and n_vol == 0 */
    struct agent_vol_info vinfo; /* copy of agent_vol_info(vol) */
    struct nbd_export_caps caps; /* what nbd_check_request enforces */
    struct nbd_slot *free_slots; /* idle slots */
    unsigned n_slots;            /* allocated slots (<= max_inflight) */
    unsigned n_busy;             /* slots holding a request */
    unsigned n_vol;              /* requests inside the volume layer */
    uint64_t busy_bytes;         /* payload bytes reserved by busy slots */
    size_t kept_bytes;           /* buffer bytes kept by idle slots */
    struct nbd_slot *cur;        /* TX_DATA: the WRITE receiving its payload */
    struct nbd_request skip_rq;  /* TX_SKIP: the rejected WRITE */
    uint32_t skip_left;          /* its payload bytes still to drop */
    uint32_t skip_err;           /* the error to reply once dropped */
};

/* Per-command metrics, indexed by NBD_CMD_* (unknown commands at NBD_CMD_COUNT). */
struct nbd_cmd_metrics {
    struct metric_counter *requests, *errors;
    struct metric_hist *latency;
};

struct agent_nbd {
    struct reactor *rx;
    struct agent_vols *vs;
    struct agent_nbd_opts o;         /* with defaults filled in */
    struct listener *tcp, *unx;
    struct nbdc *conns;              /* every connection not yet closed */
    struct nbdc *hs_head, *hs_tail;  /* those in the handshake, oldest first */
    unsigned n_conns, n_hs;
    uint64_t next_id;
    bool stopping;
    uint64_t stop_drain_ms;
    void (*stop_done)(void *arg);   /* agent_nbd_stop's DONE, until called */
    void *stop_arg;
    bool stop_scheduled;             /* stop_done_now is deferred already */
    struct agent_nbd_stats st;       /* counters (connections/handshakes live above) */
    struct nbd_cmd_metrics cmd[NBD_CMD_COUNT + 1];
    struct metric_counter *m_bytes_in, *m_bytes_out, *m_proto_errors, *m_refused,
        *m_evicted, *m_timeouts, *m_handshakes_ok, *m_handshakes_failed;
};

/* agent_nbd.c */
void nbdc_set_state(struct nbdc *c, enum nbdc_state to);
void nbdc_ref(struct nbdc *c);
void nbdc_unref(struct nbdc *c);
/* Close the socket now (hard disconnect); WHY for the log. */
void nbdc_close(struct nbdc *c, const char *why);
/* Stop reading; close once in-flight requests are done and output has
 * drained, or after DRAIN_MS. */
void nbdc_drain(struct nbdc *c, uint64_t drain_ms, const char *why);
/* Queue LEN bytes of output (copied).  false if the connection is closed. */
bool nbdc_send(struct nbdc *c, const void *p, size_t len);
/* Pause or resume reading the socket. */
void nbdc_read_enable(struct nbdc *c, bool on);
/* Called when a slot or output space frees up. */
void nbdc_maybe_resume(struct nbdc *c);
/* Count a protocol violation and close. */
void nbdc_proto_error(struct nbdc *c, const char *why);

/* agent_nbd_tx.c */
/* One step of input processing in a TX_* state: true if progress was
 * made and the caller may loop, false to wait for more input. */
bool nbd_tx_step(struct nbdc *c);
/* Set up the caps after GO succeeded on VOL. */
void nbd_tx_setup(struct nbdc *c);
/* Transmission flags for a volume. */
uint16_t nbd_tx_flags(const struct agent_vol_info *vi);
/* Block sizes for a volume. */
void nbd_tx_sizes(const struct agent_vol_info *vi, uint32_t *min, uint32_t *pref, uint32_t *max);
/* Drop the WRITE waiting for its payload in TX_DATA, if any: never
 * submitted, never acknowledged. */
void nbd_tx_drop_partial(struct nbdc *c);
/* Free every slot (connection teardown; none may be busy). */
void nbd_tx_free_slots(struct nbdc *c);
/* The connection has nothing in flight and nothing to send. */
bool nbd_tx_idle(const struct nbdc *c);

#endif
