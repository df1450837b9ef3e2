/* bench_shape.c: the leader's placement work at scale (not a test): for
 * N blob servers in zones, racks and hosts and the partitions their slots
 * allow, the CPU time of
 *   1. making every partition (proxy_plan_new_partition, one at a time as
 *      the leader does),
 *   2. one placement view's weights (proxy_plan_place_weights: the work
 *      of every view rebuild, at most every 250 ms),
 *   3. placing a blob (proxy_plan_place: a binary search per blob),
 *   4. one rebalancing decision after a new server joins
 *      (proxy_plan_rebalance), and a whole rebalance to the end.
 * Usage: bench_shape [SERVERS [PARTITIONS_PER_SERVER]] (default 200 and
 * 30: 2,000 partitions). */
#include "roles/proxy/proxy_plan.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PB (100ull << 30)

static double now_s(void)
{
    return (double)util_mono_ns() / 1e9;
}

int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 0) : 200;
    unsigned per = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 30;
    struct proxy_plan_node *nodes = calloc(n + 1, sizeof(*nodes));
    unsigned max_parts = n * per / 3 + 16;
    int *members = malloc(3 * max_parts * sizeof(*members));
    struct index_part *parts = calloc(max_parts, sizeof(*parts));
    uint64_t *cum = malloc(max_parts * sizeof(*cum));
    if (!nodes || !members || !parts || !cum) return 1;
    uint64_t rng = 7;
    for (unsigned i = 0; i < n; i++) {
        char zone[16], rack[16], host[16];
        snprintf(zone, sizeof(zone), "z%u", i % 3);
        snprintf(rack, sizeof(rack), "r%u", i % 10);
        snprintf(host, sizeof(host), "h%u", i / 2); /* two servers per host */
        nodes[i] = (struct proxy_plan_node){.id = 10 + i, .capacity = per * PB, .up = true,
                                            .accepts = true, .writable = true,
                                            .used = util_rand64(&rng) % (per * PB / 2)};
        proxy_plan_domains(nodes[i].id, zone, rack, host, nodes[i].domain);
    }
    double t0 = now_s();
    unsigned k = 0, below = 0;
    enum proxy_plan_level allowed = proxy_plan_separation(nodes, n);
    while (k < max_parts) {
        int pick[3];
        enum proxy_plan_level level;
        if (proxy_plan_new_partition(nodes, n, PB, true, pick, &level) < 0) break;
        for (int r = 0; r < 3; r++) {
            members[3 * k + r] = pick[r];
            nodes[pick[r]].load++;
        }
        parts[k] = (struct index_part){.id = k + 1, .epoch = 1, .state = INDEX_PART_ACTIVE};
        for (int r = 0; r < 3; r++) parts[k].nodes[r] = nodes[pick[r]].id;
        below += level < allowed;
        k++;
    }
    double t_make = now_s() - t0;
    printf("%u servers (3 zones, 10 racks, 2 per host), %u partitions made in %.3f s "
           "(%.1f us each; %u below %s separation)\n",
           n, k, t_make, t_make * 1e6 / k, below, proxy_plan_level_name(allowed));

    int reps = 200;
    t0 = now_s();
    uint64_t total = 0;
    for (int i = 0; i < reps; i++)
        total = proxy_plan_place_weights(parts, k, members, nodes, n, cum);
    double t_w = (now_s() - t0) / reps;
    printf("placement weights for %u partitions: %.1f us per view (total weight %llu MiB)\n", k,
           t_w * 1e6, (unsigned long long)total);

    unsigned blobs = 2000000, *hits = calloc(k, sizeof(*hits));
    t0 = now_s();
    for (unsigned i = 0; i < blobs; i++) {
        int at = proxy_plan_place(parts, k, cum, util_rand64(&rng), 0);
        if (at >= 0) hits[at]++;
    }
    double t_p = now_s() - t0;
    unsigned lo = UINT32_MAX, hi = 0;
    for (unsigned i = 0; i < k; i++) {
        lo = hits[i] < lo ? hits[i] : lo;
        hi = hits[i] > hi ? hits[i] : hi;
    }
    printf("placing %u blobs: %.0f ns per blob (per partition %u..%u blobs)\n", blobs,
           t_p * 1e9 / blobs, lo, hi);

    /* A new server joins: one decision, then the whole rebalance. */
    char host[16];
    snprintf(host, sizeof(host), "h%u", n);
    nodes[n] = (struct proxy_plan_node){.id = 10 + n, .capacity = per * PB, .up = true,
                                        .accepts = true, .writable = true};
    proxy_plan_domains(nodes[n].id, "z0", "r0", host, nodes[n].domain);
    struct proxy_plan_move mv;
    t0 = now_s();
    int rc = proxy_plan_rebalance(parts, k, members, NULL, nodes, n + 1, PB, &mv);
    double t_one = now_s() - t0;
    unsigned moves = 0;
    t0 = now_s();
    while (rc == 0 && moves < 10000) {
        int *m = &members[3 * mv.part];
        nodes[m[mv.slot]].load--;
        nodes[mv.dst].load++;
        m[mv.slot] = mv.dst;
        moves++;
        rc = proxy_plan_rebalance(parts, k, members, NULL, nodes, n + 1, PB, &mv);
    }
    double t_all = now_s() - t0;
    printf("a server joins: one rebalancing decision %.2f ms; %u moves to balance it, %.2f ms "
           "per decision; it holds %u partitions\n",
           t_one * 1e3, moves, moves ? t_all * 1e3 / moves : 0, nodes[n].load);
    free(hits);
    free(nodes);
    free(members);
    free(parts);
    free(cum);
    return 0;
}
