/* agent_vol_int.h: the volume back end's internal types, shared by its
 * files, which call one another top-down only:
 *
 *   agent_vol.c     the registry (agent_vol.h's agent_vols_*): start-up
 *        |          replay, open, list, info, the tick, stop, status; the
 *        |          life of a volume (new, free, fail); fills the up-call
 *        v          table below
 *   agent_attach.c  VOL_ATTACH / VOL_DETACH for one volume (agent_attach.h);
 *        |          agent_assign.c beside it: the volumes attached to this
 *        v          agent, listed and watched (agent_assign.h)
 *   agent_io.c      the request paths (agent_vol.h's agent_vol_read ...),
 *        |          completions, durability waiters, the fence check
 *        v          (agent_io.h)
 *   agent_ship.c    shipping dirty data, acks, LOST marks, the map's
 *        |          version cutting (agent_ship.h)
 *        v
 *   agent_client.c (the proxies), agent_cache.c (the dirty map)
 *
 * A lower file reaches an upper one only through `struct agent_vol_up`
 * (vs->up), never by name.  Nothing outside these files includes this.
 * Names here start with agent_vol (the module; agent_vols for the
 * registry).
 *
 * Objects and who owns them:
 *   struct agent_vols        the registry (one per agent instance);
 *   struct agent_vol_shared  one per volume this agent has attached or holds
 *                            a journal for; shared by every NBD connection;
 *   struct agent_vol         a handle: one per successful open, pointing at
 *                            the shared volume (so read-only is per
 *                            connection);
 *   struct agent_ship        one VOL_WRITE in flight (agent_ship.c);
 *   struct agent_io_read     one READ or BLOCK_STATUS that needs the cluster
 *                            (agent_io.c).
 *
 * Volume states (v->state), each set only by agent_vol_set_state():
 *
 *   ATTACHING --attach ok--> ACTIVE --unknown write outcome--> REATTACH
 *       |                    |   ^                                |
 *       |                    |   +--------attach ok (gen+1)-------+
 *       |                    +--idle, clean--> DETACHING --> (freed)
 *       +--EBUSY/EFENCED--> FENCED     any --EFENCED at our gen--> FENCED
 *       +--volume gone-->   FAILED
 *
 *   ATTACHING  no attach yet (or an upgrade to read-write in flight);
 *              opens wait for it on open_head
 *   ACTIVE     requests flow; ships flow
 *   REATTACH   a VOL_WRITE's outcome is unknown: no new ships until a new
 *              attach (higher generation) has fenced every older send;
 *              reads and journal writes go on
 *   DETACHING  VOL_DETACH in flight for an idle clean volume
 *   FENCED     another agent attached the volume (C10): I/O fails -EIO,
 *              the journal is kept and marked so a restart won't re-attach
 *   FAILED     cannot continue (volume deleted, id changed, proxy broke
 *              the protocol): I/O fails -EIO, the journal is kept */
#ifndef BD_AGENT_VOL_INT_H
#define BD_AGENT_VOL_INT_H

#include "config/config.h"
#include "net/conn.h"
#include "runtime/log.h"
#include "store/fileio.h"
#include "store/journal/journal.h"
#include "roles/agent/agent_cache.h"
#include "roles/agent/agent_client.h"
#include "base/fair.h"
#include "roles/agent/agent_vol.h"

#define AGENT_VOL_MAX_SHIPS 32           /* VOL_WRITEs in flight or ready per volume */
/* Fairness between the volumes of an agent (fair.h): while more
 * than one volume is active, their ship bytes in flight together stay
 * within FAIR_CAP (a volume with none in flight may always send one);
 * the ready ships take turns by deficit round robin, FAIR_QUANTUM bytes of
 * credit a turn; client I/O within FAIR_ACTIVE_MS makes a volume active. */
#define AGENT_VOL_FAIR_CAP (1u << 20)
#define AGENT_VOL_FAIR_QUANTUM (256u << 10)
#define AGENT_VOL_FAIR_ACTIVE_MS 200
/* What a ship without payload (ZERO, TRIM) costs in the turns. */
#define AGENT_VOL_FAIR_MIN_COST 4096u
#define AGENT_VOL_MAX_IO (32u << 20)     /* largest READ/WRITE */
/* The block cover of an unaligned max_io request is up to two blocks
 * longer: the journal must hold it, so max_io leaves that much room. */
#define AGENT_VOL_COVER_SLACK (2u * BD_BLOCK_SIZE)
#define AGENT_VOL_ZERO_MAX (1ull << 30)  /* largest ZERO/TRIM extent shipped at once */
#define AGENT_VOL_STATUS_MAX (64u << 20) /* BLOCK_STATUS answers at most this much */
#define AGENT_VOL_IDLE_MS 2000           /* detach this long after the last put */
#define AGENT_VOL_TICK_MS 50
#define AGENT_VOL_SIZE_CHECK_MS 1000     /* how often an open volume's size is looked up */
/* Direct reads under map leases (agent_io.c, agent_mapc.h): the largest
 * read served so, the blob GETs one read may make, how long one GET may
 * take on one replica (a failure only costs a fallback to the proxy, so
 * short), how long the agent stops asking a proxy that said leases are
 * off, and the most blob servers it keeps links to. */
#define AGENT_IO_DIRECT_MAX (4u << 20)
#define AGENT_IO_DIRECT_GETS 16
#define AGENT_IO_DIRECT_TIMEOUT_MS 1000
#define AGENT_IO_LEASE_OFF_MS 10000
#define AGENT_IO_BLOB_LINKS 256

enum agent_vol_state {
    AGENT_VOL_ATTACHING,
    AGENT_VOL_ACTIVE,
    AGENT_VOL_REATTACH,
    AGENT_VOL_DETACHING,
    AGENT_VOL_FENCED,
    AGENT_VOL_FAILED
};

struct agent_vol_shared;
struct agent_vol_deferred; /* agent_vol.c */
struct agent_ship;         /* agent_ship.c */
struct agent_ship_buf;     /* agent_ship.c */
struct agent_ship_infl;    /* agent_ship.c */
struct agent_io_read;      /* agent_io.c */
struct agent_io_rmw;       /* agent_io.c */
struct agent_io_direct;    /* agent_io.c */

/* Blocks [b0, b1) held by a request between its start and its end (an
 * unaligned write's read-modify-write, a direct write in flight): writes
 * that touch them wait (agent_io.c, "the gate"). */
struct agent_io_hold {
    uint64_t b0, b1;
    struct agent_io_rmw *rmw;     /* the RMW holding them; NULL: a direct write */
    struct agent_io_hold *next;
};
struct agent_mapc;         /* agent_mapc.h */
struct agent_blobs;        /* agent_blobs.h */

static inline const char *agent_vol_state_name(enum agent_vol_state st)
{
    static const char *const names[] = {"attaching", "active", "reattach",
                                        "detaching", "fenced", "failed"};
    return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

/* ---- calls back up --------------------------------------------------------
 * What a lower file of the back end must tell an upper one.  agent_vol.c
 * fills the table (agent_vols_new); the files below call it as
 * v->vs->up->fn(v, ...).  Each entry says which file implements it. */
struct agent_vol_up {
    /* agent_vol.c: V cannot go on.  ERR -BD_EFENCED or -EBUSY: FENCED
     * (another agent attached it, C10), else FAILED.  Its ships become
     * zombies, its waiting requests and opens fail with -EIO, and WHY is
     * logged.  Nothing more happens if V already failed. */
    void (*fail)(struct agent_vol_shared *v, int err, const char *why);
    /* agent_vol.c: a callback into V has finished: free V if nothing holds
     * it any more and it keeps no journal. */
    void (*release)(struct agent_vol_shared *v);
    /* agent_vol.c: an attach ended.  ERR 0: the opens waiting on V get
     * their handles (those that need read-write while V is read-only wait
     * for a read-write attach, started here); else they fail with ERR. */
    void (*opens_done)(struct agent_vol_shared *v, int err);
    /* agent_vol.c: V's name now means another volume (its id changed):
     * V becomes an orphan and fails, and the opens waiting on it start
     * afresh by name. */
    void (*gone)(struct agent_vol_shared *v);
    /* agent_attach.c: a VOL_WRITE's outcome is unknown: re-attach, so the
     * higher generation fences every older send before anything is
     * resent. */
    void (*reattach)(struct agent_vol_shared *v);
    /* agent_io.c: a ship was acked: journal space may be free and
     * durability waiters may be satisfied. */
    void (*progress)(struct agent_vol_shared *v);
};

struct agent_vol_shared {
    struct agent_vols *vs;
    struct agent_vol_shared *next;  /* registry list */
    char name[AGENT_VOL_NAME_MAX + 1];
    uint64_t vol_id;                /* 0 until known */
    uint64_t size;                  /* bytes */
    uint64_t gen;                   /* attach generation of our writes and flushes */
    enum agent_vol_state state;
    bool rw;                        /* attached read-write: journal and cache exist */
    bool want_rw;                   /* the attach in flight (or next) is read-write */
    bool replayed;                  /* its journal was found at start */
    bool orphan;                    /* replayed, but the volume is gone: not findable by name */
    bool jfailed;                   /* journal failed stop: writes and flushes fail -EIO */
    unsigned refs;                  /* handles */
    uint64_t idle_since;            /* when refs reached 0 */
    char dir[CFG_PATH_MAX + 32];
    struct journal *j;
    struct agent_cache *c;
    uint64_t max_index;             /* highest raft index acked to us (C7) */
    uint64_t map_epoch;             /* bumped when its leased maps are dropped */
    uint64_t attached_ms;           /* when a proxy last granted an attach (monotonic) */

    /* attach / detach */
    struct agent_client_req attach_call;
    bool attach_busy;
    bool attach_is_reattach;
    uint64_t attach_base;           /* the generation a read-write attach raises:
                                     * the newest the cluster told us (wire.h) */
    unsigned attach_moved;          /* attaches in a row refused: generation moved */
    uint64_t attach_retry_at;       /* 0: none scheduled */
    uint32_t attach_backoff_ms;
    struct agent_vols_open_req *open_head, *open_tail;

    /* writes waiting for journal space (FIFO), and durability waiters */
    struct agent_vol_req *wait_head, *wait_tail;
    struct agent_vol_req *dur_head, *dur_tail;
    uint64_t *csum_scratch;         /* per-block checksums of the write being appended */

    /* journal sync (group commit for flush/FUA; see agent_io.c) */
    struct journal_sync_req sync_req;
    bool sync_busy;
    uint64_t sync_want, sync_started, sync_done;

    /* flush fence check (VOL_FLUSH) */
    struct agent_client_req fence_call;
    bool fence_busy;
    uint64_t fence_epoch;           /* number of the fence check in flight / last sent */
    uint64_t fence_ok;              /* number of the last fence check that succeeded */
    uint64_t fence_gen;             /* generation the check in flight was sent with */
    uint64_t progress_ms;           /* last time the cluster took something from us */

    /* shipping */
    struct agent_ship *ships;       /* in flight under the current generation */
    struct agent_ship *ready_head, *ready_tail; /* picked, waiting their turn (base/fair.h) */
    unsigned n_ships;               /* in flight and ready */
    struct fair_flow flow;    /* its share of the links (vs->fair) */
    uint64_t fair_ios;              /* client I/Os counted when last looked (agent_qos) */
    struct agent_ship_infl *infl;   /* the ranges of those ships, sorted */
    size_t n_infl, infl_cap;
    struct agent_ship *free_ships;
    struct agent_ship_buf *free_bufs;
    struct agent_ship_buf **bufs;   /* every buffer made (for teardown) */
    unsigned n_bufs;
    uint64_t next_ship_id;
    uint64_t cursor;                /* block where the next pick starts */
    bool drain;                     /* ship everything dirty now */
    uint64_t ship_retry_at;         /* no ships before this (backoff after failures) */
    uint32_t ship_backoff_ms;
    uint64_t last_age_scan;
    uint64_t acks;                  /* VOL_WRITEs acked under the current generation */

    /* the size lookup (agent_vol.c: a volume grown meanwhile, for new
     * connections) */
    struct agent_client_req size_call;
    bool size_busy;
    uint64_t size_check_at;

    /* the gate (agent_io.c): blocks held by read-modify-writes and direct
     * writes in flight, and the writes waiting for blocks held (FIFO) */
    struct agent_io_hold *holds;
    struct agent_io_direct *free_direct; /* direct write contexts, pooled */
    uint64_t dwrite_off_until;      /* no direct writes before this (one was turned back) */
    struct agent_vol_req *gate_head, *gate_tail;
    bool gate_busy;

    struct agent_io_read *free_rctx;
    unsigned busy;                  /* reads and ships in flight (keep the volume alive) */

    struct agent_qos_vol *qos;      /* its QoS state (agent_qos.h), by name; NULL: none */
};

struct agent_vol {              /* a handle */
    struct agent_vol_shared *v;
    struct agent_vol_info info;
};

struct agent_vols {
    struct reactor *rx;
    const struct cfg_agent *cfg;
    const struct agent_vol_up *up;  /* calls back up the layers (agent_vol.c's table) */
    char tag[32];
    char agent_id[65];
    struct conn_auth auth;
    struct agent_client *cl;
    struct taskq *syncq;
    struct fileio *fio;             /* fileio_posix, or the fault wrapper */
    struct fileio_faults faults;
    int lock_fd;
    uint64_t seg_bytes, max_io, hw_bytes, ship_blocks;
    struct agent_vol_shared *vols;
    struct agent_qos *qos;          /* per-volume QoS: limits, waiters, figures */
    struct fair fair;         /* which volume's ship goes next (agent_ship.c) */
    bool fair_ready;                /* fair is set up */
    uint64_t *broken;               /* volume ids whose journal cannot be read */
    unsigned n_broken;
    struct event *tick_ev, *done_ev;
    struct agent_vol_req *done_head, *done_tail; /* completions to deliver */
    struct agent_io_direct *direct_head, *direct_tail; /* direct writes ended, to finish */
    /* attachments (agent_assign.c) */
    struct agent_vols_list_entry *assigned; /* the last fetch's, in name order */
    unsigned n_assigned;
    bool assign_known;              /* a fetch has completed since start */
    uint64_t assign_asked_ms;       /* when the fetch behind the table was sent */
    bool assign_busy;               /* the watch's fetch is in flight */
    uint64_t assign_next_ms;        /* when the watch fetches again */
    void (*watch)(void *arg, enum agent_vols_change what,
                  const struct agent_vols_list_entry *e); /* agent_vols_watch */
    void *watch_arg;
    struct agent_vol_deferred *defer_head, **defer_tail; /* open/list/info callbacks to deliver */
    bool stopping, freeing;
    void (*stop_done)(void *arg);
    void *stop_arg;
    uint64_t stop_deadline;
    /* direct reads under map leases (agent_io.c): the maps, the blob
     * server links, when a proxy last said leases are off, the timeout
     * the last lease gave */
    struct agent_mapc *mapc;        /* NULL: map_cache_bytes is 0 */
    struct agent_blobs *blobs;
    uint64_t lease_off_until, lease_timeout_ms;
    struct metrics_counter *m_direct, *m_map_hit, *m_map_miss, *m_map_expired, *m_fb_lease,
        *m_fb_map, *m_fb_blob;
    /* metrics */
    struct metrics_hist *m_ship, *m_flush;
    struct metrics_counter *m_reattach, *m_fenced, *m_lost, *m_ships, *m_dwrites, *m_dwrite_fb;
    uint64_t reattaches, lost_blocks;
};

void agent_io_map_drop(struct agent_vol_shared *v); /* agent_io.h */

/* The one place a volume's state changes.  Every change drops the
 * volume's leased maps (agent_io_map_drop): an attach, re-attach, detach,
 * fence or failure may mean another generation, size or content. */
static inline void agent_vol_set_state(struct agent_vol_shared *v, enum agent_vol_state st)
{
    if (v->state == st) return;
    agent_io_map_drop(v);
    log_debug(v->vs->tag, "vol %s: %s -> %s", v->name, agent_vol_state_name(v->state),
              agent_vol_state_name(st));
    v->state = st;
}

/* Is VOL_ID's journal unreadable (refused until an operator looks)? */
static inline bool agent_vols_is_broken(const struct agent_vols *vs, uint64_t vol_id)
{
    for (unsigned i = 0; i < vs->n_broken; i++)
        if (vs->broken[i] == vol_id) return true;
    return false;
}

#endif
