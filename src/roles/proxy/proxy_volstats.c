/* proxy_volstats.c: per-volume I/O over the last minutes (see
 * proxy_volstats.h).
 *
 * Layout: an array of volumes searched linearly (tens to a few hundred
 * volumes have I/O on one proxy at a time; a write already costs three
 * network round trips).  Each volume holds a ring of closed samples and
 * the open one with its histogram.  The ring is advanced lazily, by the
 * next record or read of that volume: a slot boundary crossed while the
 * volume was idle leaves empty samples behind, a whole ring idle forgets
 * the volume.
 *
 * Slot k of a volume covers [base + k*SLOT, base + (k+1)*SLOT) of the
 * caller's clock, base being the first record's time rounded down to a
 * slot, so the samples of every volume line up in time (the page draws
 * them on one axis).
 *
 * Rejected: Prometheus-style per-volume histograms in /metrics.  They
 * answer "how was it over the last minutes" only with a Prometheus server
 * to hand, and the status page must work without one (issue 21); the
 * agent's per-volume metrics serve Prometheus. */
#include "roles/proxy/proxy_volstats.h"
#include "base/bd.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 255
#define EXP_MAX 31                             /* latencies above 2^31 us share a bucket */
#define N_BUCKETS (4 * (EXP_MAX - 1) + 4)

struct vol {
    uint64_t id;
    char name[NAME_MAX_LEN + 1];
    uint64_t open_start;       /* start of the open slot */
    uint64_t last_ms;          /* last record */
    struct proxy_volstats_sample ring[PROXY_VOLSTATS_SLOTS]; /* closed, by slot number % SLOTS */
    struct proxy_volstats_sample open;
    uint32_t hist[2][N_BUCKETS];
    uint32_t max_us[2];
};

struct proxy_volstats {
    struct vol *vols;          /* n used of cap */
    unsigned n, cap;
};

unsigned proxy_volstats_bucket(uint64_t v)
{
    if (v < 4) return (unsigned)v;
    unsigned e = 63 - (unsigned)__builtin_clzll(v);
    if (e > EXP_MAX) return N_BUCKETS - 1;
    unsigned sub = (unsigned)(v >> (e - 2)) & 3;
    return 4 * (e - 1) + sub;
}

uint64_t proxy_volstats_bucket_max(unsigned b)
{
    if (b < 4) return b;
    unsigned e = b / 4 + 1, sub = b % 4;
    return ((uint64_t)(4 + sub + 1) << (e - 2)) - 1;
}

struct proxy_volstats *proxy_volstats_new(void)
{
    return calloc(1, sizeof(struct proxy_volstats));
}

void proxy_volstats_free(struct proxy_volstats *vs)
{
    if (!vs) return;
    free(vs->vols);
    free(vs);
}

/* The Q-quantile (per mille) of op OP's open histogram. */
static uint32_t quantile(const struct vol *v, int op, unsigned per_mille)
{
    uint32_t n = v->open.ops[op];
    if (!n) return 0;
    uint64_t rank = ((uint64_t)n * per_mille + 999) / 1000, seen = 0;
    for (unsigned b = 0; b < N_BUCKETS; b++) {
        seen += v->hist[op][b];
        if (seen >= rank) return (uint32_t)BD_MIN(proxy_volstats_bucket_max(b), v->max_us[op]);
    }
    return v->max_us[op];
}

static void close_open(struct vol *v)
{
    for (int op = 0; op < 2; op++) {
        v->open.p50_us[op] = quantile(v, op, 500);
        v->open.p99_us[op] = quantile(v, op, 990);
    }
    v->ring[(v->open_start / PROXY_VOLSTATS_SLOT_MS) % PROXY_VOLSTATS_SLOTS] = v->open;
    memset(&v->open, 0, sizeof(v->open));
    memset(v->hist, 0, sizeof(v->hist));
    memset(v->max_us, 0, sizeof(v->max_us));
}

/* Bring V's open slot up to NOW, closing the slots passed. */
static void advance(struct vol *v, uint64_t now_ms)
{
    uint64_t now_slot = now_ms - now_ms % PROXY_VOLSTATS_SLOT_MS;
    if (now_slot <= v->open_start) return;
    close_open(v);
    /* Slots skipped while idle hold nothing; at most a ring's worth. */
    uint64_t gap = (now_slot - v->open_start) / PROXY_VOLSTATS_SLOT_MS;
    for (uint64_t k = 1; k < gap && k <= PROXY_VOLSTATS_SLOTS; k++) {
        uint64_t s = now_slot - k * PROXY_VOLSTATS_SLOT_MS;
        struct proxy_volstats_sample *e = &v->ring[(s / PROXY_VOLSTATS_SLOT_MS) % PROXY_VOLSTATS_SLOTS];
        memset(e, 0, sizeof(*e));
        e->start_ms = s;
    }
    v->open_start = now_slot;
    v->open.start_ms = now_slot;
}

static bool idle(const struct vol *v, uint64_t now_ms)
{
    return now_ms - v->last_ms >= (uint64_t)PROXY_VOLSTATS_SLOTS * PROXY_VOLSTATS_SLOT_MS;
}

/* Forget the volumes idle for a whole ring. */
static void sweep(struct proxy_volstats *vs, uint64_t now_ms)
{
    for (unsigned i = 0; i < vs->n;) {
        if (idle(&vs->vols[i], now_ms)) vs->vols[i] = vs->vols[--vs->n];
        else i++;
    }
}

static struct vol *find(struct proxy_volstats *vs, uint64_t id)
{
    for (unsigned i = 0; i < vs->n; i++)
        if (vs->vols[i].id == id) return &vs->vols[i];
    return NULL;
}

/* A slot for a new volume: a free one, or the one idle longest. */
static struct vol *add(struct proxy_volstats *vs, uint64_t now_ms)
{
    if (vs->n == vs->cap && vs->cap < PROXY_VOLSTATS_MAX_VOLS) {
        unsigned cap = vs->cap ? BD_MIN(vs->cap * 2, PROXY_VOLSTATS_MAX_VOLS) : 16;
        struct vol *nv = realloc(vs->vols, cap * sizeof(*nv));
        if (nv) {
            vs->vols = nv;
            vs->cap = cap;
        }
    }
    if (vs->n < vs->cap) return &vs->vols[vs->n++];
    sweep(vs, now_ms);
    if (vs->n < vs->cap) return &vs->vols[vs->n++];
    if (!vs->n) return NULL;
    struct vol *oldest = &vs->vols[0];
    for (unsigned i = 1; i < vs->n; i++)
        if (vs->vols[i].last_ms < oldest->last_ms) oldest = &vs->vols[i];
    return oldest;
}

void proxy_volstats_record(struct proxy_volstats *vs, uint64_t now_ms, uint64_t vol_id,
                           const char *name, enum proxy_volstats_op op, uint64_t len,
                           uint64_t lat_us, bool failed)
{
    if (!vs) return;
    struct vol *v = find(vs, vol_id);
    if (v && idle(v, now_ms)) {
        /* Back after a whole ring of silence: start afresh. */
        memset(v, 0, sizeof(*v));
        v->id = vol_id;
        v->open_start = v->open.start_ms = now_ms - now_ms % PROXY_VOLSTATS_SLOT_MS;
    }
    if (!v) {
        v = add(vs, now_ms);
        if (!v) return;
        memset(v, 0, sizeof(*v));
        v->id = vol_id;
        v->open_start = v->open.start_ms = now_ms - now_ms % PROXY_VOLSTATS_SLOT_MS;
        /* The ring before the first record is empty, with its times. */
        for (unsigned k = 1; k < PROXY_VOLSTATS_SLOTS; k++) {
            if (v->open_start < (uint64_t)k * PROXY_VOLSTATS_SLOT_MS) break;
            uint64_t s = v->open_start - (uint64_t)k * PROXY_VOLSTATS_SLOT_MS;
            v->ring[(s / PROXY_VOLSTATS_SLOT_MS) % PROXY_VOLSTATS_SLOTS].start_ms = s;
        }
    }
    if (name && *name) util_strlcpy(v->name, name, sizeof(v->name));
    advance(v, now_ms);
    v->last_ms = now_ms;
    v->open.ops[op]++;
    v->open.bytes[op] += len;
    if (failed) v->open.errors[op]++;
    v->hist[op][proxy_volstats_bucket(lat_us)]++;
    if (lat_us > v->max_us[op]) v->max_us[op] = (uint32_t)BD_MIN(lat_us, UINT32_MAX);
}

unsigned proxy_volstats_count(struct proxy_volstats *vs, uint64_t now_ms)
{
    sweep(vs, now_ms);
    return vs->n;
}

static unsigned samples_of(struct vol *v, uint64_t now_ms, struct proxy_volstats_sample *out)
{
    advance(v, now_ms);
    unsigned n = 0;
    for (unsigned k = PROXY_VOLSTATS_SLOTS - 1; k >= 1; k--) {
        if (v->open_start < (uint64_t)k * PROXY_VOLSTATS_SLOT_MS) continue;
        uint64_t s = v->open_start - (uint64_t)k * PROXY_VOLSTATS_SLOT_MS;
        const struct proxy_volstats_sample *e =
            &v->ring[(s / PROXY_VOLSTATS_SLOT_MS) % PROXY_VOLSTATS_SLOTS];
        out[n] = *e;
        if (e->start_ms != s) {
            /* Never written (before this volume's first record). */
            memset(&out[n], 0, sizeof(out[n]));
            out[n].start_ms = s;
        }
        n++;
    }
    out[n] = v->open;
    for (int op = 0; op < 2; op++) {
        out[n].p50_us[op] = quantile(v, op, 500);
        out[n].p99_us[op] = quantile(v, op, 990);
    }
    return n + 1;
}

unsigned proxy_volstats_sample(struct proxy_volstats *vs, uint64_t now_ms, uint64_t vol_id,
                               struct proxy_volstats_sample *out)
{
    sweep(vs, now_ms);
    struct vol *v = find(vs, vol_id);
    return v ? samples_of(v, now_ms, out) : 0;
}

void proxy_volstats_json(struct proxy_volstats *vs, uint64_t now_ms, uint64_t wall_ms,
                         cJSON *out)
{
    cJSON_AddNumberToObject(out, "slot_ms", PROXY_VOLSTATS_SLOT_MS);
    cJSON_AddNumberToObject(out, "slots", PROXY_VOLSTATS_SLOTS);
    cJSON *arr = cJSON_AddArrayToObject(out, "volumes");
    if (!vs) return;
    sweep(vs, now_ms);
    struct proxy_volstats_sample s[PROXY_VOLSTATS_SLOTS];
    for (unsigned i = 0; i < vs->n; i++) {
        struct vol *v = &vs->vols[i];
        unsigned n = samples_of(v, now_ms, s);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double)v->id);
        cJSON_AddStringToObject(o, "name", v->name);
        cJSON_AddNumberToObject(o, "last_unix_ms", (double)(wall_ms - (now_ms - v->last_ms)));
        cJSON *sa = cJSON_AddArrayToObject(o, "samples");
        for (unsigned k = 0; k < n; k++) {
            const struct proxy_volstats_sample *e = &s[k];
            uint64_t span = k + 1 < n ? PROXY_VOLSTATS_SLOT_MS : now_ms - e->start_ms;
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "unix_ms", (double)(wall_ms - (now_ms - e->start_ms)));
            cJSON_AddNumberToObject(j, "seconds", (double)BD_MAX(span, 1) / 1000.0);
            cJSON_AddNumberToObject(j, "read_ops", e->ops[0]);
            cJSON_AddNumberToObject(j, "write_ops", e->ops[1]);
            cJSON_AddNumberToObject(j, "read_bytes", (double)e->bytes[0]);
            cJSON_AddNumberToObject(j, "write_bytes", (double)e->bytes[1]);
            cJSON_AddNumberToObject(j, "read_errors", e->errors[0]);
            cJSON_AddNumberToObject(j, "write_errors", e->errors[1]);
            cJSON_AddNumberToObject(j, "read_p50_us", e->p50_us[0]);
            cJSON_AddNumberToObject(j, "read_p99_us", e->p99_us[0]);
            cJSON_AddNumberToObject(j, "write_p50_us", e->p50_us[1]);
            cJSON_AddNumberToObject(j, "write_p99_us", e->p99_us[1]);
            cJSON_AddItemToArray(sa, j);
        }
        cJSON_AddItemToArray(arr, o);
    }
}
