/* agent_vol_mem.h: a test-only implementation of src/roles/agent/agent_vol.h.
 *
 * Sparse volumes in memory, for the NBD server's unit tests, the protocol
 * test server (tests/tools/nbd_test_server.c) and the fuzz target; never
 * linked into blockd.  It honours the header's semantics (callbacks never
 * synchronous, one shared volume per name so CAN_MULTI_CONN holds, -EPERM
 * on writes to read-only volumes, -ESHUTDOWN after stop, ZERO extents for
 * TRIM and WRITE_ZEROES, HOLE for never-written blocks) and checks that
 * its caller honours the preconditions (aligned, non-empty, <= max_io,
 * inside the volume, no put with requests in flight): each violation is
 * counted in stats.violations, which the tests require to stay 0.
 *
 * Knobs: read-only volumes, injected errors per operation and range,
 * a completion delay, failing lookups, -ENOTSUP for FAST_ZERO, a
 * misbehaving map (extents longer than the request, CVE-2025-47711), and
 * a reduced max_io.
 *
 * Names: agent_vol_mem_* here, and the short form AVM_ for the operation
 * bits of enum avm_op (agent_vol_mem). */
#ifndef BD_AGENT_VOL_MEM_H
#define BD_AGENT_VOL_MEM_H

#include <stdbool.h>
#include <stdint.h>

#include "roles/agent/agent_vol.h"

/* Operations, for fault rules and stats. */
enum avm_op {
    AVM_READ = 1 << 0,
    AVM_WRITE = 1 << 1,
    AVM_FLUSH = 1 << 2,
    AVM_TRIM = 1 << 3,
    AVM_ZERO = 1 << 4,
    AVM_BLOCK_STATUS = 1 << 5,
    AVM_ALL = 0x3f,
};

/* A registry for tests (agent_vols_new works too and ignores the config). */
struct agent_vols *agent_vol_mem_new(struct reactor *rx);
/* The registry agent_vols_new created last (for role tests, which do not
 * see inside the role); NULL after it was freed. */
struct agent_vols *agent_vol_mem_last(void);

/* Add volume NAME of SIZE bytes (a multiple of 4096).  0, -EEXIST, -EINVAL. */
int agent_vol_mem_add(struct agent_vols *vs, const char *name, uint64_t size, bool read_only);
/* Attachments (agent_vol.h agent_vols_watch): a volume added is attached;
 * change NAME's read-only flag and client (CHANGED), or detach it
 * (DETACHED: no longer found, listed or opened).  0 or -ENOENT. */
int agent_vol_mem_set_attachment(struct agent_vols *vs, const char *name, bool read_only,
                                 const char *client);
int agent_vol_mem_detach(struct agent_vols *vs, const char *name);
/* max_io of volumes added later (default 32 MiB). */
void agent_vol_mem_set_max_io(struct agent_vols *vs, uint32_t max_io);

/* Fail operations OPS (enum avm_op mask) on volume NAME (NULL: any)
 * overlapping [OFF, OFF+LEN) with ERR, COUNT times (0: until cleared). */
int agent_vol_mem_inject(struct agent_vols *vs, const char *name, unsigned ops, uint64_t off,
                         uint64_t len, int err, unsigned count);
void agent_vol_mem_clear_faults(struct agent_vols *vs);
/* Complete every request DELAY_MS after submission (0: on the next loop). */
void agent_vol_mem_set_delay(struct agent_vols *vs, uint64_t delay_ms);
/* Fail agent_vols_info/open/list with ERR (0: normal). */
void agent_vol_mem_fail_lookups(struct agent_vols *vs, int err);
/* WRITE_ZEROES with FAST_ZERO fails -ENOTSUP. */
void agent_vol_mem_set_fast_zero_enotsup(struct agent_vols *vs, bool on);
/* BLOCK_STATUS and READ maps report the last extent running to the end of
 * the volume, past the request. */
void agent_vol_mem_set_long_extents(struct agent_vols *vs, bool on);
/* Every volume's QoS state (agent_vol_qos) is QV (NULL: none, the default). */
struct agent_qos_vol;
void agent_vol_mem_set_qos(struct agent_vols *vs, struct agent_qos_vol *qv);

struct agent_vol_mem_stats {
    uint64_t ops[6];          /* per avm_op bit index: submitted */
    uint64_t fua;             /* requests with AGENT_VOL_REQ_FUA */
    uint64_t no_hole, fast_zero;
    uint64_t unaligned;       /* WRITEs not block-aligned (read-modify-written) */
    uint64_t infos, opens, lists, puts;
    uint64_t violations;      /* caller broke agent_vol.h; must stay 0 */
    unsigned attached;        /* volumes with references */
    unsigned inflight;        /* requests not yet completed */
};
void agent_vol_mem_stats(struct agent_vols *vs, struct agent_vol_mem_stats *st);

#endif
