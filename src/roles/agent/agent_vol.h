/* agent_vol.h: the boundary inside the agent between the NBD front end
 * (agent_nbd*.c: protocol, connections) and the volume back end
 * (agent_vol.c, agent_attach.c, agent_io.c, agent_ship.c, drawn in
 * agent_vol_int.h: write-back journal cache, shipping to the proxies,
 * reads through to the cluster).  The registry's calls (agent_vols_*)
 * are agent_vol.c's, but for the listing and the attachments
 * (agent_vols_list, agent_vols_watch), which are agent_assign.c's; the
 * requests' (agent_vol_read ...) are agent_io.c's.
 *
 * The NBD layer never touches the journal or the wire; the volume layer
 * never parses NBD.  Everything below runs on the agent's reactor thread.
 *
 * Attachments: the control plane attaches a volume to an agent (the
 * admin API's POST /v1/volumes/NAME/attach, idxcmd.h ASSIGN); this agent
 * lists, looks up and opens only the volumes attached to it (the proxies
 * refuse the others), read-only those attached read-only.  It learns of
 * attachments and detachments within AGENT_VOLS_WATCH_MS by asking the
 * proxies (VOL_LIST), and tells the NBD front end through the watch.
 *
 * Volumes: `struct agent_vols` is the agent's registry.  A volume is
 * attached (VOL_ATTACH through the proxies, which bumps its generation) the
 * first time an NBD client completes NBD_OPT_GO on it, and shared by every
 * later connection to it in this agent (one cache per volume: that is what
 * makes CAN_MULTI_CONN true, C8).  agent_vol_put() drops a connection's
 * reference; the volume stays attached while its journal holds unshipped
 * data, and is detached some time after the last reference goes.
 *
 * Requests: the caller owns a `struct agent_vol_req` until its callback has
 * run, which happens exactly once, never synchronously from the submitting
 * call (so the NBD layer may submit from inside its read loop), on the
 * reactor.  Errors are negative errno values the NBD layer maps to NBD
 * errors: -EIO, -ENOSPC, -EINVAL, -EPERM (read-only), -ESHUTDOWN (agent
 * stopping), -ETIMEDOUT (no proxy answered within io_timeout_ms: reported
 * to the client as EIO).
 *
 * Ordering and durability (CONTRACT.md C1, C2, C4, C8):
 *   - WRITE/TRIM/WRITE_ZEROES complete once the journal holds them (the
 *     kernel page cache: survives an agent process crash, C4), or, for an
 *     aligned write of at least direct_write_bytes sent around the journal
 *     (agent_io.c), once the cluster holds it durably;
 *   - with AGENT_VOL_REQ_FUA they complete only once durable in the cluster
 *     (C2);
 *   - FLUSH completes once every write, trim and zero that *completed
 *     before the flush was submitted*, on any connection of this volume, is
 *     durable in the cluster (C1, C8);
 *   - a READ returns, per block, the newest completed write, or the data of
 *     a write still in flight; never older data (C7). */
#ifndef BD_AGENT_VOL_H
#define BD_AGENT_VOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/reactor.h"

struct agent_vols;
struct agent_vol;

#define AGENT_VOL_NAME_MAX 255
#define AGENT_VOL_CLIENT_MAX 64 /* an NBD client's id: a PSK identity, a certificate's id */
#define AGENT_VOLS_WATCH_MS 1000 /* attachments are asked for this often */

struct agent_vol_info {
    char name[AGENT_VOL_NAME_MAX + 1];
    uint64_t size;        /* bytes, a multiple of block_size */
    uint32_t block_size;  /* minimum I/O unit the export advertises (4096) */
    uint32_t max_io;      /* largest single request accepted (bytes) */
    bool read_only;       /* this open, or the attachment, is read-only */
    char client[AGENT_VOL_CLIENT_MAX + 1]; /* the NBD client it is attached for; "" any */
};

enum agent_vol_extent_kind {
    AGENT_VOL_EXT_DATA = 0, /* written data (may happen to be zeroes) */
    AGENT_VOL_EXT_ZERO = 1, /* reads as zeroes: WRITE_ZEROES or TRIM */
    AGENT_VOL_EXT_HOLE = 2, /* never written (reads as zeroes) */
};

struct agent_vol_extent {
    uint64_t off;
    uint64_t len;
    int kind; /* enum agent_vol_extent_kind */
};

#define AGENT_VOL_REQ_FUA 0x1       /* durable in the cluster before completion */
#define AGENT_VOL_REQ_NO_HOLE 0x2   /* WRITE_ZEROES: allocate, do not punch (still index-only) */
#define AGENT_VOL_REQ_FAST_ZERO 0x4 /* WRITE_ZEROES: fail with -ENOTSUP rather than be slow */

struct agent_vol_req {
    /* Set by the caller. */
    void (*cb)(struct agent_vol_req *req, int err);
    void *data;
    /* WRITE: any offset, len 1..max_io (a partial block is
     * read-modify-written, see agent_vol_write below); the others: aligned
     * to block_size, len a multiple of it, READ up to max_io plus two
     * blocks (the block cover of an unaligned max_io range) */
    uint64_t off;              /* bytes */
    uint64_t len;              /* bytes */
    uint32_t flags;            /* AGENT_REQ_* */
    const uint8_t *wbuf;       /* WRITE: len bytes, borrowed until cb */
    uint8_t *rbuf;             /* READ: len bytes, filled before cb */
    /* READ (optional) and BLOCK_STATUS: where to put the map of [off, off+len):
     * at most max_ext ascending extents; n_ext is set before cb.  For
     * BLOCK_STATUS the map may stop short of off+len when max_ext runs out;
     * for READ a NULL ext means no map wanted. */
    struct agent_vol_extent *ext;
    uint32_t max_ext;
    uint32_t n_ext;
    /* Private to the volume layer (agent_io.c). */
    void *priv[6];
    uint64_t priv_u64[4];
    struct agent_vol_req *next;
};

/* ---- registry (agent role) ------------------------------------------------ */

struct cfg_agent;
struct cfg;

/* Create the registry for agent instance CFG of config TOP: open the cache
 * directory, replay every journal found there and start shipping what was
 * not yet shipped (re-attaching those volumes), and connect to the
 * proxies, over TLS with TLS's certificate (borrowed, must outlive the
 * registry; NULL with insecure_plaintext).  TAG is the log tag.  0, or a
 * negative code with a one-line message in ERR. */
struct tls_ctx;
int agent_vols_new(struct reactor *rx, const struct cfg *top, const struct cfg_agent *cfg,
                   struct tls_ctx *tls, const char *tag, struct agent_vols **out, char *err, size_t errlen);
/* Stop: refuse new requests (-ESHUTDOWN), ship every journal's dirty data
 * (bounded by io_timeout_ms), detach, then call DONE(ARG) once. */
void agent_vols_stop(struct agent_vols *vs, void (*done)(void *arg), void *arg);
void agent_vols_free(struct agent_vols *vs);
/* Status for the admin endpoint: attached volumes, dirty bytes, proxies. */
struct cJSON;
void agent_vols_status(struct agent_vols *vs, struct cJSON *out);

/* A volume attached to this agent. */
struct agent_vols_list_entry {
    char name[AGENT_VOL_NAME_MAX + 1];
    uint64_t size;
    bool read_only;                        /* attached read-only */
    char client[AGENT_VOL_CLIENT_MAX + 1]; /* the NBD client it is for; "" any */
};

/* List the volumes attached to this agent, asking the proxies now
 * (NBD_OPT_LIST).  CB gets an array in name order, valid only during the
 * call.  Exactly one callback, never from inside this call. */
struct agent_vols_list_req {
    void (*cb)(struct agent_vols_list_req *req, int err, const struct agent_vols_list_entry *v,
               unsigned n);
    void *data;
    void *priv[2];
};
void agent_vols_list(struct agent_vols *vs, struct agent_vols_list_req *req);

/* What changed in this agent's attachments (agent_vols_watch). */
enum agent_vols_change {
    AGENT_VOLS_ATTACHED,  /* a volume is now attached to this agent */
    AGENT_VOLS_CHANGED,   /* still attached, but its read_only or client changed */
    AGENT_VOLS_DETACHED,  /* no longer attached to this agent */
};
/* Call FN(ARG, what, entry) for each change (entry borrowed for the
 * call), starting from nothing: the first answer reports every volume
 * attached now.  One watcher (a second call replaces it); FN NULL stops.
 * The proxies are asked only while someone watches; meanwhile an open of
 * a volume this agent has but the last answer (asked after the volume was
 * last attached) no longer lists fails (-ENOENT; -EACCES for read-write
 * when it is now read-only) without asking them. */
void agent_vols_watch(struct agent_vols *vs,
                      void (*fn)(void *arg, enum agent_vols_change what,
                                 const struct agent_vols_list_entry *e),
                      void *arg);

/* Look a volume up without attaching it (NBD_OPT_INFO).  -ENOENT if none
 * is attached to this agent by that name. */
struct agent_vols_info_req {
    void (*cb)(struct agent_vols_info_req *req, int err, const struct agent_vol_info *info);
    void *data;
    void *priv[2];
};
void agent_vols_info(struct agent_vols *vs, const char *name, struct agent_vols_info_req *req);

/* Attach (or share an already attached) volume by NAME for a connection
 * that completed NBD_OPT_GO.  READ_ONLY requests a read-only attach.  On
 * success CB gets a reference the caller releases with agent_vol_put().
 * -ENOENT or -EACCES when the volume is not attached to this agent (or
 * only read-only, and READ_ONLY is false). */
struct agent_vols_open_req {
    void (*cb)(struct agent_vols_open_req *req, int err, struct agent_vol *vol);
    void *data;
    void *priv[2];
};
void agent_vols_open(struct agent_vols *vs, const char *name, bool read_only,
                     struct agent_vols_open_req *req);

/* ---- one volume ----------------------------------------------------------- */

const struct agent_vol_info *agent_vol_info(const struct agent_vol *v);
/* The QoS state of V's volume (agent_qos.h), shared by every handle of
 * it: where the NBD layer admits and counts its requests.  May be NULL
 * (no memory for it: neither limited nor counted).  Valid while V is. */
struct agent_qos_vol;
struct agent_qos_vol *agent_vol_qos(const struct agent_vol *v);
/* Drop a reference.  In-flight requests of the caller must have completed. */
void agent_vol_put(struct agent_vol *v);

void agent_vol_read(struct agent_vol *v, struct agent_vol_req *req);
/* A write whose offset or length is not block-aligned reads the partial
 * blocks it touches, merges its bytes and appends the block cover as one
 * journal entry (each block wholly old or wholly new, C6); overlapping
 * writes in flight apply in arrival order.  A failed read fails the write
 * as a whole (-EIO, -ETIMEDOUT), nothing of it written.  A partial write
 * over a LOST block fails -EIO (only a whole-block write replaces it). */
void agent_vol_write(struct agent_vol *v, struct agent_vol_req *req);
void agent_vol_flush(struct agent_vol *v, struct agent_vol_req *req);
void agent_vol_trim(struct agent_vol *v, struct agent_vol_req *req);
void agent_vol_zero(struct agent_vol *v, struct agent_vol_req *req);
void agent_vol_block_status(struct agent_vol *v, struct agent_vol_req *req);

#endif
