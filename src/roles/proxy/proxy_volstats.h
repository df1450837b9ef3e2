/* proxy_volstats.h: per-volume I/O over the last minutes, as this proxy
 * served it: the ring buffer behind the status page's volume charts
 * (GET /v1/stats/volumes, proxy_admin.c).
 *
 * For each volume with recent I/O: a ring of PROXY_VOLSTATS_SLOTS samples
 * of PROXY_VOLSTATS_SLOT_MS each (five minutes), each holding per
 * direction (read, write) the requests, the errors, the bytes and the
 * 50th and 99th percentile latency.  Percentiles come from a log-linear
 * histogram of the slot being filled (4 buckets per power of two, so an
 * estimate is at most 25% above the true value), turned into two numbers when
 * the slot closes: only the open slot carries a histogram.
 *
 * Bounded: at most PROXY_VOLSTATS_MAX_VOLS volumes (about 2 KiB each).  A
 * volume with no I/O for a whole ring is forgotten; when the table is
 * full, the volume idle longest makes room.  Figures are this proxy's
 * share only: an agent talks to one proxy at a time, but moves on
 * failover, so the page says which proxy it reads.
 *
 * Time is the caller's monotonic clock in milliseconds (NOW_MS), so tests
 * drive it; proxy_volstats_json turns slot times into wall-clock ms with
 * the WALL_MS given.  Not thread-safe: the reactor thread only. */
#ifndef BD_PROXY_VOLSTATS_H
#define BD_PROXY_VOLSTATS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#define PROXY_VOLSTATS_SLOT_MS 10000u
#define PROXY_VOLSTATS_SLOTS 30u
#define PROXY_VOLSTATS_MAX_VOLS 1024u

enum proxy_volstats_op { PROXY_VOLSTATS_READ = 0, PROXY_VOLSTATS_WRITE = 1 };

struct proxy_volstats;

/* One closed (or the open) sample, as proxy_volstats_sample returns it. */
struct proxy_volstats_sample {
    uint64_t start_ms;         /* the caller's clock */
    uint32_t ops[2];           /* by enum proxy_volstats_op */
    uint32_t errors[2];
    uint64_t bytes[2];
    uint32_t p50_us[2];        /* 0 when ops is 0 */
    uint32_t p99_us[2];
};

/* NULL on ENOMEM.  Returns owned: proxy_volstats_free. */
struct proxy_volstats *proxy_volstats_new(void);
void proxy_volstats_free(struct proxy_volstats *vs);

/* Count one request of VOL_ID (NAME borrowed; copied, "" if unknown):
 * LEN bytes, answered after LAT_US, FAILED or not.  VS NULL does nothing. */
void proxy_volstats_record(struct proxy_volstats *vs, uint64_t now_ms, uint64_t vol_id,
                           const char *name, enum proxy_volstats_op op, uint64_t len,
                           uint64_t lat_us, bool failed);

/* How many volumes are tracked (after forgetting the idle ones). */
unsigned proxy_volstats_count(struct proxy_volstats *vs, uint64_t now_ms);

/* The samples of VOL_ID, oldest first, into OUT (PROXY_VOLSTATS_SLOTS
 * entries); the last is the open slot.  Returns how many were written (0
 * when the volume is not tracked). */
unsigned proxy_volstats_sample(struct proxy_volstats *vs, uint64_t now_ms, uint64_t vol_id,
                               struct proxy_volstats_sample *out);

/* Add to OUT: "slot_ms", "slots", and "volumes": [{"id", "name",
 * "samples": [{"unix_ms", "seconds", "read_ops", "write_ops",
 * "read_bytes", "write_bytes", "read_errors", "write_errors",
 * "read_p50_us", "read_p99_us", "write_p50_us", "write_p99_us"}...]}]
 * with the samples oldest first (the last, the open slot, has "seconds"
 * below slot_ms/1000: rates divide by it).  WALL_MS is the wall clock at
 * NOW_MS. */
void proxy_volstats_json(struct proxy_volstats *vs, uint64_t now_ms, uint64_t wall_ms,
                         cJSON *out);

/* The latency histogram's bucket for LAT_US and the upper bound of bucket
 * B (microseconds); exported for the unit test. */
unsigned proxy_volstats_bucket(uint64_t lat_us);
uint64_t proxy_volstats_bucket_max(unsigned b);

#endif
