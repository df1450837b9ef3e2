/* fake_proxy.h: TEST ONLY.  A tiny in-process stand-in for the proxy
 * cluster, for tests/unit/test_agent_vol.c while the real proxy is being
 * written.  Never linked into blockd.
 *
 * It speaks the real wire protocol (conn.c) on a listener and implements
 * VOL_ATTACH, VOL_DETACH, VOL_WRITE, VOL_READ (+WIRE_READ_MAP), VOL_MAP,
 * VOL_FLUSH and VOL_LIST over in-memory volumes, with the semantics the
 * agent relies on: generations bumped by read-write attaches, writes and
 * flushes of older generations refused with EFENCED, a raft index that
 * grows with every mutation, checksums verified.  Every write it receives
 * is logged, and knobs inject the faults the agent must survive. */
#ifndef BD_FAKE_PROXY_H
#define BD_FAKE_PROXY_H

#include <stdbool.h>
#include <stdint.h>

#include "net/conn.h"

struct fake_proxy;

struct fake_vol {
    char name[256];
    uint64_t id, size, gen;
    bool read_only;
    uint8_t *data;      /* size bytes */
    uint8_t *kind;      /* per 4 KiB block: WIRE_MAP_* (HOLE when never written) */
};

struct fake_write {     /* one VOL_WRITE received */
    uint64_t vol_id, gen, off, len;
    struct wire_write_ext *ext; /* a scattered write's extents (n_ext), else NULL */
    uint32_t n_ext;
    uint32_t flags;
    int status;         /* what it was answered (0 OK); -1: never answered */
    bool applied;
};

struct fake_knobs {
    int fail_writes;        /* answer the next N writes with fail_err, not applying them */
    int fail_err;           /* e.g. -EAGAIN, -BD_EFENCED */
    int close_on_write;     /* close the connection on the next N writes ... */
    bool close_applies;     /* ... after applying them (outcome unknown, but done) */
    int drop_writes;        /* apply the next N writes and never answer them */
    bool hold_writes;       /* apply writes but hold their answers until released */
    bool hold_unapplied;    /* hold writes unapplied: applied at release, generation
                             * checked then (a commit after a later attach) */
    bool hold_attaches;     /* apply attaches but hold their answers until released */
    int fail_attaches;      /* answer the next N attaches with attach_err */
    int attach_err;
    uint64_t delay_ms;      /* delay every response on connections accepted from now */
    uint64_t not_leader;    /* nonzero: answer every VOL_* with ENOTLEADER, this hint */
};

struct fake_proxy *fake_proxy_new(struct reactor *rx, const char *addr,
                                  const struct conn_auth *auth);
void fake_proxy_free(struct fake_proxy *fp);
struct fake_knobs *fake_proxy_knobs(struct fake_proxy *fp);

struct fake_vol *fake_proxy_add_vol(struct fake_proxy *fp, const char *name, uint64_t size);
struct fake_vol *fake_proxy_vol(struct fake_proxy *fp, const char *name);
/* Another agent attached: bump the generation behind our agent's back. */
void fake_proxy_bump_gen(struct fake_vol *v);
void fake_proxy_delete_vol(struct fake_proxy *fp, const char *name);

/* Stop listening and drop every connection (the cluster is unreachable);
 * then listen again. */
void fake_proxy_down(struct fake_proxy *fp);
int fake_proxy_up(struct fake_proxy *fp);

/* Answer the held writes (hold_writes) whose offset is OFF, or all with
 * OFF == UINT64_MAX.  Returns how many. */
unsigned fake_proxy_release(struct fake_proxy *fp, uint64_t off);
unsigned fake_proxy_held(const struct fake_proxy *fp);
unsigned fake_proxy_release_attaches(struct fake_proxy *fp);

/* The log of writes received, in order. */
const struct fake_write *fake_proxy_writes(const struct fake_proxy *fp, unsigned *n);
uint64_t fake_proxy_index(const struct fake_proxy *fp);
unsigned fake_proxy_attaches(const struct fake_proxy *fp);
unsigned fake_proxy_detaches(const struct fake_proxy *fp);
unsigned fake_proxy_reads(const struct fake_proxy *fp);
unsigned fake_proxy_flushes(const struct fake_proxy *fp);
unsigned fake_proxy_redirects(const struct fake_proxy *fp);
/* Highest min_index the agent sent with a read, and the index applied then. */
uint64_t fake_proxy_max_min_index(const struct fake_proxy *fp);

#endif
