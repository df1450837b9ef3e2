/* test_proxy_volstats.c: src/roles/proxy/proxy_volstats.c, the per-volume
 * ring of I/O samples behind the status page's charts. */
#include "roles/proxy/proxy_volstats.h"
#include "tap.h"

#include <string.h>

/* ---- Fixture -------------------------------------------------------------- */

#define T0 1000000000ull /* a monotonic clock well past boot */
#define SLOT PROXY_VOLSTATS_SLOT_MS

/* ---- buckets ------------------------------------------------------------- */

/* Every latency falls in a bucket whose upper bound is at most 25% above
 * it, and buckets ascend. */
TEST(bucket_bounds)
{
    for (uint64_t v = 0; v < (1ull << 31); v = v * 3 / 2 + 1) {
        unsigned b = proxy_volstats_bucket(v);
        uint64_t hi = proxy_volstats_bucket_max(b);
        CHECK(hi >= v);
        CHECK(hi <= v + v / 4 + 1);
        if (b > 0) CHECK(proxy_volstats_bucket_max(b - 1) < v);
    }
}

/* ---- samples -------------------------------------------------------------- */

/* Requests land in the open slot; the slot closes with its percentiles
 * when time passes into the next one. */
TEST(slots_and_percentiles)
{
    struct proxy_volstats *vs = proxy_volstats_new();
    CHECK(vs != NULL);
    for (int i = 0; i < 100; i++)
        proxy_volstats_record(vs, T0 + 10, 7, "vol7", PROXY_VOLSTATS_WRITE, 4096,
                              i < 98 ? 100 : 50000, false);
    proxy_volstats_record(vs, T0 + 20, 7, "vol7", PROXY_VOLSTATS_READ, 8192, 300, true);
    struct proxy_volstats_sample s[PROXY_VOLSTATS_SLOTS];
    unsigned n = proxy_volstats_sample(vs, T0 + SLOT + 5, 7, s);
    CHECK_EQ(n, PROXY_VOLSTATS_SLOTS);
    const struct proxy_volstats_sample *c = &s[n - 2]; /* closed: the slot of T0 */
    CHECK_EQ(c->start_ms, T0 - T0 % SLOT);
    CHECK_EQ(c->ops[PROXY_VOLSTATS_WRITE], 100);
    CHECK_EQ(c->bytes[PROXY_VOLSTATS_WRITE], 409600);
    CHECK(c->p50_us[PROXY_VOLSTATS_WRITE] >= 100 && c->p50_us[PROXY_VOLSTATS_WRITE] <= 125);
    CHECK(c->p99_us[PROXY_VOLSTATS_WRITE] >= 40000 && c->p99_us[PROXY_VOLSTATS_WRITE] <= 50000);
    CHECK_EQ(c->ops[PROXY_VOLSTATS_READ], 1);
    CHECK_EQ(c->errors[PROXY_VOLSTATS_READ], 1);
    CHECK_EQ(s[n - 1].ops[PROXY_VOLSTATS_WRITE], 0); /* the open slot is empty */
    CHECK_EQ(s[0].ops[PROXY_VOLSTATS_WRITE], 0);     /* before the first record */
    proxy_volstats_free(vs);
}

/* Slots passed while a volume was idle read as empty, not as the old
 * figures of the ring position they reuse. */
TEST(idle_gap_is_empty)
{
    struct proxy_volstats *vs = proxy_volstats_new();
    proxy_volstats_record(vs, T0, 1, "a", PROXY_VOLSTATS_WRITE, 4096, 10, false);
    proxy_volstats_record(vs, T0 + 3 * SLOT, 1, "a", PROXY_VOLSTATS_WRITE, 4096, 10, false);
    struct proxy_volstats_sample s[PROXY_VOLSTATS_SLOTS];
    unsigned n = proxy_volstats_sample(vs, T0 + 3 * SLOT, 1, s);
    CHECK_EQ(s[n - 1].ops[PROXY_VOLSTATS_WRITE], 1);
    CHECK_EQ(s[n - 2].ops[PROXY_VOLSTATS_WRITE], 0);
    CHECK_EQ(s[n - 3].ops[PROXY_VOLSTATS_WRITE], 0);
    CHECK_EQ(s[n - 4].ops[PROXY_VOLSTATS_WRITE], 1);
    for (unsigned k = 1; k < n; k++) CHECK_EQ(s[k].start_ms, s[k - 1].start_ms + SLOT);
    proxy_volstats_free(vs);
}

/* A volume silent for a whole ring is forgotten. */
TEST(idle_volume_forgotten)
{
    struct proxy_volstats *vs = proxy_volstats_new();
    proxy_volstats_record(vs, T0, 1, "a", PROXY_VOLSTATS_READ, 4096, 10, false);
    proxy_volstats_record(vs, T0, 2, "b", PROXY_VOLSTATS_READ, 4096, 10, false);
    CHECK_EQ(proxy_volstats_count(vs, T0 + SLOT), 2);
    proxy_volstats_record(vs, T0 + PROXY_VOLSTATS_SLOTS * SLOT - 1, 2, "b", PROXY_VOLSTATS_READ,
                          4096, 10, false);
    CHECK_EQ(proxy_volstats_count(vs, T0 + PROXY_VOLSTATS_SLOTS * SLOT), 1);
    struct proxy_volstats_sample s[PROXY_VOLSTATS_SLOTS];
    CHECK_EQ(proxy_volstats_sample(vs, T0 + PROXY_VOLSTATS_SLOTS * SLOT, 1, s), 0);
    proxy_volstats_free(vs);
}

/* The table never holds more than PROXY_VOLSTATS_MAX_VOLS volumes: the
 * one idle longest makes room. */
TEST(bounded)
{
    struct proxy_volstats *vs = proxy_volstats_new();
    for (uint64_t id = 1; id <= PROXY_VOLSTATS_MAX_VOLS + 10; id++)
        proxy_volstats_record(vs, T0 + id, id, "v", PROXY_VOLSTATS_WRITE, 4096, 10, false);
    CHECK_EQ(proxy_volstats_count(vs, T0 + 2000), PROXY_VOLSTATS_MAX_VOLS);
    struct proxy_volstats_sample s[PROXY_VOLSTATS_SLOTS];
    CHECK_EQ(proxy_volstats_sample(vs, T0 + 2000, 1, s), 0);
    CHECK(proxy_volstats_sample(vs, T0 + 2000, PROXY_VOLSTATS_MAX_VOLS + 10, s) > 0);
    proxy_volstats_free(vs);
}

/* The JSON names the volume and gives the open slot's real length. */
TEST(json_shape)
{
    struct proxy_volstats *vs = proxy_volstats_new();
    uint64_t now = T0 - T0 % SLOT + 2500;
    proxy_volstats_record(vs, now, 9, "vol9", PROXY_VOLSTATS_WRITE, 4096, 10, false);
    cJSON *o = cJSON_CreateObject();
    proxy_volstats_json(vs, now, 1700000000000ull, o);
    cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "volumes"), 0);
    CHECK(v != NULL);
    CHECK(strcmp(cJSON_GetObjectItem(v, "name")->valuestring, "vol9") == 0);
    cJSON *samples = cJSON_GetObjectItem(v, "samples");
    CHECK_EQ(cJSON_GetArraySize(samples), PROXY_VOLSTATS_SLOTS);
    cJSON *last = cJSON_GetArrayItem(samples, PROXY_VOLSTATS_SLOTS - 1);
    CHECK_EQ(cJSON_GetObjectItem(last, "seconds")->valuedouble * 1000, 2500);
    CHECK_EQ(cJSON_GetObjectItem(last, "write_ops")->valuedouble, 1);
    CHECK_EQ(cJSON_GetObjectItem(last, "unix_ms")->valuedouble, 1700000000000ull - 2500);
    cJSON_Delete(o);
    proxy_volstats_free(vs);
}
