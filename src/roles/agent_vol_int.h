/* agent_vol_int.h: the volume back end's internal types, shared by
 *   agent_vol.c   registry, replay at start, tick, stop, status;
 *   agent_io.c    the request paths (read, write, zero, trim, flush,
 *                 block status), completions and durability waiters;
 *   agent_ship.c  shipping dirty data, acks, re-attach and fencing.
 *   agent_attach.c attach, re-attach, detach; open, list, info.
 * Nothing outside those files includes it.
 *
 * Objects and who owns them:
 *   struct agent_vols  the registry (one per agent instance);
 *   struct vol         one per volume this agent has attached or holds a
 *                      journal for; shared by every NBD connection;
 *   struct agent_vol   a handle: one per successful open, pointing at a
 *                      vol (so read-only is per connection);
 *   struct ship        one VOL_WRITE in flight;
 *   struct rctx        one READ or BLOCK_STATUS that needs the cluster.
 *
 * Volume states (vol->state), each set only by vol_set_state():
 *
 *   ATTACHING --attach ok--> ACTIVE --unknown write outcome--> REATTACH
 *       |                    |   ^                                |
 *       |                    |   +--------attach ok (gen+1)-------+
 *       |                    +--idle, clean--> DETACHING --> (freed)
 *       +--EBUSY/EFENCED--> FENCED     any --EFENCED at our gen--> FENCED
 *       +--volume gone-->   FAILED
 *
 *   ATTACHING  no attach yet (or an upgrade to read-write in flight);
 *              requests wait for it in open_waiters
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

#include "../config.h"
#include "../net/conn.h"
#include "../store/fileio.h"
#include "../store/journal.h"
#include "agent_cache.h"
#include "agent_client.h"
#include "agent_vol.h"

#define AGENT_MAX_SHIPS 32              /* VOL_WRITEs in flight per volume */
#define AGENT_MAX_IO (32u << 20)        /* largest READ/WRITE */
#define AGENT_ZERO_MAX (1ull << 30)     /* largest ZERO/TRIM extent shipped at once */
#define AGENT_STATUS_MAX (64u << 20)    /* BLOCK_STATUS answers at most this much */
#define AGENT_IDLE_MS 2000              /* detach this long after the last put */
#define AGENT_TICK_MS 50

enum vol_state { VOL_ATTACHING, VOL_ACTIVE, VOL_REATTACH, VOL_DETACHING, VOL_FENCED, VOL_FAILED };

struct vol;
struct deferred;

/* A data buffer for one ship, referenced by the ship and by every send
 * of it still queued in a connection.  It outlives its vol if a
 * connection still holds it (owner NULL: freed on the last unref). */
struct shipbuf {
    int refs;
    struct vol *owner;
    struct shipbuf *next_free;
    uint8_t data[];
};

/* A range of blocks a ship carries. */
struct ship_seg {
    uint64_t start, nblk;
};

/* An in-flight range, in vol.infl (sorted by start; ranges never overlap:
 * a block is never in two ships at once). */
struct infl_range {
    uint64_t start, end;        /* blocks */
    uint64_t ship_id;
};

/* One VOL_WRITE in flight.  A DATA ship carries up to ship_blocks blocks
 * from any number of ranges (segs, ascending: a scattered write); ZERO and
 * TRIM ships carry one range. */
struct ship {
    struct vol *v;
    uint64_t id;                /* marks the extents it carries (cache ship_id) */
    uint64_t gen;               /* attach generation it was sent under */
    uint64_t start, nblk;       /* first block, total blocks */
    struct ship_seg *segs;      /* capacity segs_cap, kept with the ship when pooled */
    uint32_t n_segs, segs_cap;
    uint8_t *fields;            /* a scattered write's encoded fields (agent_ship.c) */
    int kind;                   /* CACHE_DATA, CACHE_ZERO or CACHE_TRIM */
    struct shipbuf *buf;        /* DATA only */
    uint64_t csum;
    uint64_t t0_us;
    bool zombie;                /* sent under a fenced generation: result ignored */
    bool bad;                   /* journal data failed its checksum while packing */
    struct agent_call call;
    struct ship *next;
};

/* A READ or BLOCK_STATUS that needs the cluster. */
struct rctx {
    struct vol *v;
    struct agent_req *req;
    bool status;                /* BLOCK_STATUS */
    uint64_t b0, nb;            /* the request's blocks */
    uint64_t c0, cn;            /* blocks asked of the cluster */
    uint8_t *kind;              /* per block: RK_* */
    int tries;
    struct agent_call call;
    struct rctx *next_free;
};

#define RK_CLUSTER 0xff         /* rctx.kind: from the cluster; else enum agent_extent_kind */

struct vol {
    struct agent_vols *vs;
    struct vol *next;           /* registry list */
    char name[AGENT_VOL_NAME_MAX + 1];
    uint64_t vol_id;            /* 0 until known */
    uint64_t size;              /* bytes */
    uint64_t gen;               /* attach generation of our writes and flushes */
    enum vol_state state;
    bool rw;                    /* attached read-write: journal and cache exist */
    bool want_rw;               /* the attach in flight (or next) is read-write */
    bool replayed;              /* its journal was found at start */
    bool orphan;                /* replayed, but the volume is gone: not findable by name */
    bool jfailed;               /* journal failed stop: writes and flushes fail -EIO */
    unsigned refs;              /* handles */
    uint64_t idle_since;        /* when refs reached 0 */
    char dir[CFG_PATH_MAX + 32];
    struct journal *j;
    struct cache *c;
    uint64_t max_index;         /* highest raft index acked to us (C7) */

    /* attach / detach */
    struct agent_call attach_call;
    bool attach_busy;
    bool attach_is_reattach;
    uint64_t attach_retry_at;   /* 0: none scheduled */
    uint32_t attach_backoff_ms;
    struct agent_open_req *open_head, *open_tail;

    /* writes waiting for journal space (FIFO), and durability waiters */
    struct agent_req *wait_head, *wait_tail;
    struct agent_req *dur_head, *dur_tail;
    uint64_t *csum_scratch;     /* per-block checksums of the write being appended */

    /* journal sync (group commit for flush/FUA; see agent_io.c) */
    struct journal_sync_req sync_req;
    bool sync_busy;
    uint64_t sync_want, sync_started, sync_done;

    /* flush fence check (VOL_FLUSH) */
    struct agent_call fence_call;
    bool fence_busy;
    uint64_t fence_epoch;       /* number of the fence check in flight / last sent */
    uint64_t fence_ok;          /* number of the last fence check that succeeded */
    uint64_t fence_gen;         /* generation the check in flight was sent with */
    uint64_t progress_ms;       /* last time the cluster took something from us */

    /* shipping */
    struct ship *ships;         /* in flight under the current generation */
    unsigned n_ships;
    struct infl_range *infl;    /* the ranges of those ships, sorted */
    size_t n_infl, infl_cap;
    struct ship *free_ships;
    struct shipbuf *free_bufs;
    struct shipbuf **bufs;      /* every buffer made (for teardown) */
    unsigned n_bufs;
    uint64_t next_ship_id;
    uint64_t cursor;            /* block where the next pick starts */
    bool drain;                 /* ship everything dirty now */
    uint64_t ship_retry_at;     /* no ships before this (backoff after failures) */
    uint32_t ship_backoff_ms;
    uint64_t last_age_scan;
    uint64_t acks;              /* VOL_WRITEs acked under the current generation */

    struct rctx *free_rctx;
    unsigned busy;              /* rctx and ships in flight (keeps the vol alive) */
};

struct agent_vol {              /* a handle */
    struct vol *v;
    struct agent_vol_info info;
};

struct agent_vols {
    struct reactor *rx;
    const struct cfg_agent *cfg;
    char tag[32];
    char agent_id[65];
    struct conn_auth auth;
    struct agent_client *cl;
    struct taskq *syncq;
    struct fio *fio;            /* fio_posix, or the fault wrapper */
    struct fio_faults faults;
    int lock_fd;
    uint64_t seg_bytes, max_io, hw_bytes, ship_blocks;
    struct vol *vols;
    uint64_t *broken;           /* volume ids whose journal cannot be read */
    unsigned n_broken;
    struct event *tick_ev, *done_ev;
    struct agent_req *done_head, *done_tail; /* completions to deliver */
    struct deferred *defer_head, **defer_tail; /* open/list/info callbacks to deliver */
    bool stopping, freeing;
    void (*stop_done)(void *arg);
    void *stop_arg;
    uint64_t stop_deadline;
    /* metrics */
    struct metric_hist *m_ship, *m_flush;
    struct metric_counter *m_reattach, *m_fenced, *m_lost, *m_ships;
    uint64_t reattaches, lost_blocks;
};

/* An open, list or info callback to run later (from the done event). */
struct deferred {
    struct deferred *next;
    struct agent_open_req *open;
    struct agent_info_req *info;
    struct agent_list_req *list;
    struct agent_vol *h;         /* open: the handle to hand over */
    struct agent_vol_info vinfo; /* info */
    int err;
};

/* agent_vol.c */
void vol_set_state(struct vol *v, enum vol_state st);
void vol_maybe_free(struct vol *v);
void vol_fail(struct vol *v, int err, const char *why);
struct vol *vol_new(struct agent_vols *vs, const char *name);
void vol_free(struct vol *v);
bool vol_busy(const struct vol *v);
struct vol *vol_find(struct agent_vols *vs, const char *name);
bool vols_is_broken(const struct agent_vols *vs, uint64_t vol_id);
void vols_defer(struct agent_vols *vs, struct deferred *d);
void vols_open_finish(struct agent_vols *vs, struct agent_open_req *req, int err,
                      struct agent_vol *h);

/* agent_attach.c */
void vol_attach_start(struct vol *v);
void vol_reattach(struct vol *v);
void vol_detach(struct vol *v);
bool vol_clean(const struct vol *v);
void vol_fail_opens(struct vol *v, int err);

/* agent_io.c */
void io_complete(struct agent_vols *vs, struct agent_req *req, int err);
void io_drain_waiters(struct vol *v);
void io_check_durable(struct vol *v);
void io_tick(struct vol *v, uint64_t now);
void io_fail_all(struct vol *v, int err);
struct rctx *io_rctx_get(struct vol *v);
int io_put_version(struct vol *v, int kind, uint64_t start, uint64_t nblk, uint64_t seq,
                   uint64_t seg, uint64_t dpos, const uint64_t *csums, uint64_t born_ms);
void io_free_vol(struct vol *v);

/* agent_ship.c */
void ship_kick(struct vol *v);
void ship_kick_age(struct vol *v);
void ship_reclaim(struct vol *v);
void ship_after_ack(struct vol *v);
void ship_zombify_all(struct vol *v);
void ship_free_vol(struct vol *v);
void ship_mark_lost(struct vol *v, uint64_t start, uint64_t nblk, uint64_t seq, uint64_t seg);

#endif
