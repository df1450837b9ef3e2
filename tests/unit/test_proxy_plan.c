/* test_proxy_plan.c: the proxy's data-path decisions
 * (src/roles/proxy/proxy_plan.c): how a write is cut into blobs and index
 * extents, what is admitted (bounds, alignment, fencing), where a new blob
 * is placed, and how a read is resolved into blob reads and zero fills.
 * Tables of cases, each row named; a failing row prints its name. */
#include "base/bd.h"
#include "roles/proxy/proxy_plan.h"
#include "tap.h"

#include <stdio.h>
#include <string.h>

/* ======== Fixture ======== */

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)

/* ======== Helpers ======== */

/* A plain (one-extent) write request. */
static struct wire_vol_write_req write_req(uint64_t off, uint64_t len, uint32_t flags)
{
    return (struct wire_vol_write_req){.vol_id = 1, .generation = 1, .off = off,
                                       .len = (uint32_t)len, .flags = flags};
}

/* A scattered write of N extents (encode-side list, as the codec allows). */
static struct wire_vol_write_req scatter_req(const struct wire_write_ext *x, uint32_t n)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) total += x[i].len;
    return (struct wire_vol_write_req){.vol_id = 1, .generation = 1, .off = x[0].off,
                                       .len = (uint32_t)total, .flags = WIRE_WRITE_SCATTER,
                                       .n_ext = n, .ext_in = x};
}

static struct index_vol vol(uint64_t generation, bool attached_rw, const char *agent)
{
    struct index_vol v = {.id = 1, .size = 1 * GiB, .block_size = BD_BLOCK_SIZE,
                          .generation = generation,
                          .attach_mode = attached_rw ? INDEX_ATTACH_RW : INDEX_ATTACH_NONE};
    snprintf(v.agent, sizeof(v.agent), "%s", agent);
    return v;
}

static struct index_part part(uint32_t id, uint64_t a, uint64_t b, uint64_t c)
{
    return (struct index_part){.id = id, .nodes = {a, b, c}, .epoch = 1,
                               .state = INDEX_PART_ACTIVE};
}

static struct index_piece hole(uint64_t off, uint64_t len)
{
    return (struct index_piece){.off = off, .len = len, .kind = INDEX_HOLE};
}

static struct index_piece zero(uint64_t off, uint64_t len)
{
    return (struct index_piece){.off = off, .len = len, .kind = INDEX_ZERO, .layer = 1};
}

static struct index_piece data(uint64_t off, uint64_t len, uint64_t blob, uint32_t blob_off,
                               uint32_t blob_len)
{
    return (struct index_piece){.off = off, .len = len, .kind = INDEX_DATA, .layer = 1,
                                .blob_id = blob, .partition = 7, .blob_off = blob_off,
                                .blob_len = blob_len};
}

/* ======== Assertions ======== */

/* CHECK_EQ for a table row: names the row before failing. */
#define ROW_EQ(row, a, b)                                                                  \
    do {                                                                                   \
        unsigned long long a__ = (unsigned long long)(a), b__ = (unsigned long long)(b);   \
        if (a__ != b__) printf("# row \"%s\": %s is %llu, want %llu\n", row, #a, a__, b__); \
        CHECK_EQ(a__, b__);                                                                \
    } while (0)

/* ======== Admission: bounds ======== */

/* A range is inside a volume only if it ends at or before the end, and a
 * range that wraps past 2^64 is never inside, however large the volume. */
TEST(in_volume)
{
    static const struct {
        const char *row;
        uint64_t off, len, size;
        int want;
    } t[] = {
        {"first block", 0, 4096, 8192, 0},
        {"last block", 4096, 4096, 8192, 0},
        {"whole volume", 0, 8192, 8192, 0},
        {"starts at the end", 8192, 4096, 8192, -ERANGE},
        {"longer than the volume", 0, 12288, 8192, -ERANGE},
        {"runs past the end", 4096, 8192, 8192, -ERANGE},
        {"wraps past 2^64", UINT64_MAX - 4095, 8192, UINT64_MAX, -ERANGE},
        {"wraps to a small end", UINT64_MAX - 4095, 4097, UINT64_MAX, -ERANGE},
        {"ends exactly at 2^64-1", UINT64_MAX - 4095, 4095, UINT64_MAX, 0},
    };
    for (unsigned i = 0; i < BD_ARRAY_SIZE(t); i++)
        ROW_EQ(t[i].row, proxy_plan_in_volume(t[i].off, t[i].len, t[i].size), t[i].want);
}

/* ======== Admission: the shape of a write ======== */

/* A write is admitted only with non-empty, aligned extents that ascend
 * without overlap, add up to its length and do not wrap. */
TEST(write_check)
{
    static const struct wire_write_ext ok[] = {{0, 4096}, {8192, 8192}};
    static const struct wire_write_ext overlap[] = {{0, 8192}, {4096, 4096}};
    static const struct wire_write_ext empty[] = {{0, 4096}, {8192, 0}};
    static const struct wire_write_ext unaligned[] = {{0, 4096}, {8192 + 512, 4096}};
    static const struct wire_write_ext wraps[] = {{0, 4096}, {UINT64_MAX - 4095, 8192}};
    struct {
        const char *row;
        struct wire_vol_write_req m;
        int want;
    } t[] = {
        {"one extent", write_req(4096, 8192, 0), 0},
        {"zero length", write_req(4096, 0, 0), -EINVAL},
        {"zero length ZERO", write_req(4096, 0, WIRE_WRITE_ZERO), -EINVAL},
        {"unaligned offset", write_req(512, 4096, 0), -EINVAL},
        {"unaligned length", write_req(4096, 4096 + 512, 0), -EINVAL},
        {"wraps past 2^64", write_req(UINT64_MAX - 4095, 8192, 0), -ERANGE},
        {"ZERO wraps past 2^64", write_req(UINT64_MAX - 4095, 3 * GiB, WIRE_WRITE_ZERO),
         -ERANGE},
        {"scattered", scatter_req(ok, 2), 0},
        {"scattered, overlapping", scatter_req(overlap, 2), -EINVAL},
        {"scattered, an empty extent", scatter_req(empty, 2), -EINVAL},
        {"scattered, unaligned", scatter_req(unaligned, 2), -EINVAL},
        {"scattered, wraps", scatter_req(wraps, 2), -ERANGE},
    };
    struct wire_vol_write_req short_sum = scatter_req(ok, 2);
    short_sum.len -= 4096;
    CHECK_EQ(proxy_plan_write_check(&short_sum), -EINVAL); /* extents do not add up */
    for (unsigned i = 0; i < BD_ARRAY_SIZE(t); i++)
        ROW_EQ(t[i].row, proxy_plan_write_check(&t[i].m), t[i].want);
}

/* Every extent of a scattered write must lie in the volume, not just the
 * first. */
TEST(write_in_volume)
{
    static const struct wire_write_ext inside[] = {{0, 4096}, {1 * MiB - 4096, 4096}};
    static const struct wire_write_ext past[] = {{0, 4096}, {1 * MiB - 4096, 8192}};
    struct wire_vol_write_req m = scatter_req(inside, 2);
    CHECK_EQ(proxy_plan_write_in_volume(&m, 1 * MiB), 0);
    m = scatter_req(past, 2);
    CHECK_EQ(proxy_plan_write_in_volume(&m, 1 * MiB), -ERANGE);
    m = write_req(1 * MiB, 4096, WIRE_WRITE_TRIM);
    CHECK_EQ(proxy_plan_write_in_volume(&m, 1 * MiB), -ERANGE);
    m = write_req(0, 3 * GiB, WIRE_WRITE_ZERO);
    CHECK_EQ(proxy_plan_write_in_volume(&m, 4 * GiB), 0);
}

/* ======== Admission: fencing ======== */

/* An older generation is fenced for good; the current one only while the
 * volume is attached read-write; a newer one is this proxy lagging the
 * attach.  Writes carry no agent identity, so another agent holding the
 * current generation is not told apart here (see proxy_plan.h). */
TEST(fence)
{
    struct {
        const char *row;
        struct index_vol v;
        uint64_t generation;
        const char *writer; /* the certificate's agent id; NULL: unauthenticated */
        int want;
    } t[] = {
        {"current holder", vol(7, true, "a"), 7, NULL, 0},
        {"current holder, authenticated", vol(7, true, "a"), 7, "a", 0},
        {"older generation", vol(7, true, "a"), 6, NULL, -BD_EFENCED},
        {"much older generation", vol(7, true, "a"), 0, "a", -BD_EFENCED},
        {"fenced by a takeover: the old agent's generation", vol(8, true, "b"), 7, "a",
         -BD_EFENCED},
        {"equal generation from another agent, unauthenticated", vol(8, true, "b"), 8, NULL,
         0},
        {"equal generation from another agent's certificate", vol(8, true, "b"), 8, "a",
         -BD_EFENCED},
        {"equal generation after a detach", vol(7, false, ""), 7, NULL, -BD_EFENCED},
        {"never attached", vol(0, false, ""), 0, NULL, -BD_EFENCED},
        {"newer: this proxy has not applied the attach", vol(7, true, "a"), 8, "a", 0},
        {"newer while detached here", vol(7, false, ""), 8, NULL, 0},
    };
    for (unsigned i = 0; i < BD_ARRAY_SIZE(t); i++)
        ROW_EQ(t[i].row, proxy_plan_fence(&t[i].v, t[i].generation, t[i].writer), t[i].want);
}

/* ======== Admission: reads ======== */

/* A read is refused before anything is allocated when it is empty,
 * unaligned, wraps, or (VOL_READ only) would not fit in one reply. */
TEST(read_check)
{
    static const struct {
        const char *row;
        uint64_t off, len;
        bool data;
        int want;
    } t[] = {
        {"one block", 4096, 4096, true, 0},
        {"zero length", 4096, 0, true, -EINVAL},
        {"zero length map", 4096, 0, false, -EINVAL},
        {"unaligned offset", 100, 4096, true, -EINVAL},
        {"unaligned length", 0, 4000, true, -EINVAL},
        {"wraps past 2^64", UINT64_MAX - 4095, 8192, true, -ERANGE},
        {"map wraps past 2^64", UINT64_MAX - 4095, 8192, false, -ERANGE},
        {"the largest read", 0, PROXY_PLAN_READ_MAX_LEN, true, 0},
        {"one block over the frame limit", 0, PROXY_PLAN_READ_MAX_LEN + 4096, true, -EMSGSIZE},
        {"a 4 GiB read", 0, 4 * GiB - 4096, true, -EMSGSIZE},
        {"a 1 TiB map has no data to carry", 0, 1024 * GiB, false, 0},
    };
    for (unsigned i = 0; i < BD_ARRAY_SIZE(t); i++)
        ROW_EQ(t[i].row, proxy_plan_read_check(t[i].off, t[i].len, t[i].data), t[i].want);
    /* The limit is what the frame leaves once the largest fields are in. */
    CHECK(PROXY_PLAN_READ_MAX_LEN + WIRE_MAX_FIELDS <= WIRE_MAX_FRAME);
    CHECK(WIRE_MAP_MAX * 20 + 64 <= WIRE_MAX_FIELDS);
}

/* ======== Write cutting ======== */

/* How many blobs, how large, and room for how many extents, by table.
 * ZERO and TRIM of more than 2 GiB are the regression: a 32-bit
 * "(len + chunk - 1) / chunk" with chunk == len wrapped to 0 parts. */
TEST(write_size)
{
    static const struct wire_write_ext three[] = {{0, 4096}, {16384, 8192}, {65536, 4096}};
    struct {
        const char *row;
        struct wire_vol_write_req m;
        uint64_t blob_max;
        int want;
        uint32_t chunk, n_parts, max_pieces;
    } t[] = {
        {"one block", write_req(0, 4096, 0), 1 * MiB, 0, 1 * MiB, 1, 1},
        {"exactly one blob", write_req(0, 1 * MiB, 0), 1 * MiB, 0, 1 * MiB, 1, 1},
        {"one block over a blob", write_req(0, 1 * MiB + 4096, 0), 1 * MiB, 0, 1 * MiB, 2, 2},
        {"32 MiB in 1 MiB blobs", write_req(0, 32 * MiB, 0), 1 * MiB, 0, 1 * MiB, 32, 32},
        {"scattered, one blob", scatter_req(three, 3), 1 * MiB, 0, 1 * MiB, 1, 3},
        {"scattered, two blobs", scatter_req(three, 3), 8192, 0, 8192, 2, 4},
        {"ZERO of 2 GiB - 4 KiB", write_req(0, 2 * GiB - 4096, WIRE_WRITE_ZERO), 1 * MiB, 0,
         PROXY_PLAN_INDEX_MAX_LEN, 1, 1},
        {"ZERO of 2 GiB + 4 KiB", write_req(0, 2 * GiB + 4096, WIRE_WRITE_ZERO), 1 * MiB, 0,
         PROXY_PLAN_INDEX_MAX_LEN, 1, 1},
        {"TRIM of 3 GiB", write_req(0, 3 * GiB, WIRE_WRITE_TRIM), 1 * MiB, 0,
         PROXY_PLAN_INDEX_MAX_LEN, 1, 1},
        {"TRIM of the largest length", write_req(0, PROXY_PLAN_INDEX_MAX_LEN, WIRE_WRITE_TRIM),
         1 * MiB, 0, PROXY_PLAN_INDEX_MAX_LEN, 1, 1},
        {"index-only ignores blob_max", write_req(0, 8192, WIRE_WRITE_ZERO), 0, 0,
         PROXY_PLAN_INDEX_MAX_LEN, 1, 1},
        {"zero length", write_req(0, 0, 0), 1 * MiB, -EINVAL, 0, 0, 0},
        {"zero length TRIM", write_req(0, 0, WIRE_WRITE_TRIM), 1 * MiB, -EINVAL, 0, 0, 0},
        {"blob_max 0", write_req(0, 4096, 0), 0, -EINVAL, 0, 0, 0},
        {"blob_max unaligned", write_req(0, 4096, 0), 4097, -EINVAL, 0, 0, 0},
        {"blob_max over the index's blob limit", write_req(0, 4096, 0),
         IDXCMD_MAX_BLOB_LEN + 4096ull, -EINVAL, 0, 0, 0},
    };
    for (unsigned i = 0; i < BD_ARRAY_SIZE(t); i++) {
        struct proxy_plan_write_size s = {0};
        ROW_EQ(t[i].row, proxy_plan_write_size(&t[i].m, t[i].blob_max, &s), t[i].want);
        if (t[i].want) continue;
        ROW_EQ(t[i].row, s.chunk, t[i].chunk);
        ROW_EQ(t[i].row, s.n_parts, t[i].n_parts);
        ROW_EQ(t[i].row, s.max_pieces, t[i].max_pieces);
    }
}

/* A ZERO longer than 2 GiB is one part and one index extent covering all
 * of it (it commits in one WRITE_BATCH entry, as a shorter one does). */
TEST(cut_zero_over_2gib)
{
    struct wire_vol_write_req m = write_req(8 * GiB, 3 * GiB, WIRE_WRITE_ZERO);
    struct proxy_plan_write_size s;
    CHECK_EQ(proxy_plan_write_size(&m, 1 * MiB, &s), 0);
    CHECK_EQ(s.n_parts, 1);
    struct proxy_plan_part parts[1];
    struct proxy_plan_piece pieces[1];
    CHECK_EQ(proxy_plan_write_cut(&m, &s, parts, pieces), 1);
    CHECK_EQ(parts[0].off, 0);
    CHECK_EQ(parts[0].len, 3 * GiB);
    CHECK_EQ(parts[0].first_piece, 0);
    CHECK_EQ(parts[0].n_pieces, 1);
    CHECK_EQ(pieces[0].part, 0);
    CHECK_EQ(pieces[0].vol_off, 8 * GiB);
    CHECK_EQ(pieces[0].len, 3 * GiB);
    CHECK_EQ(pieces[0].blob_off, 0);
}

/* A plain write is cut at blob boundaries: each blob backs the slice of
 * the volume its payload bytes came from; the last blob is shorter. */
TEST(cut_plain_write)
{
    struct wire_vol_write_req m = write_req(1 * GiB, 2 * MiB + 512 * KiB, 0);
    struct proxy_plan_write_size s;
    CHECK_EQ(proxy_plan_write_size(&m, 1 * MiB, &s), 0);
    CHECK_EQ(s.n_parts, 3);
    struct proxy_plan_part parts[3];
    struct proxy_plan_piece pieces[3];
    CHECK_EQ(proxy_plan_write_cut(&m, &s, parts, pieces), 3);
    static const struct {
        uint32_t off, len;
        uint64_t vol_off;
    } want[] = {{0, 1 * MiB, 1 * GiB}, {1 * MiB, 1 * MiB, 1 * GiB + 1 * MiB},
                {2 * MiB, 512 * KiB, 1 * GiB + 2 * MiB}};
    for (unsigned i = 0; i < 3; i++) {
        CHECK_EQ(parts[i].off, want[i].off);
        CHECK_EQ(parts[i].len, want[i].len);
        CHECK_EQ(parts[i].first_piece, i);
        CHECK_EQ(parts[i].n_pieces, 1);
        CHECK_EQ(pieces[i].part, i);
        CHECK_EQ(pieces[i].vol_off, want[i].vol_off);
        CHECK_EQ(pieces[i].blob_off, 0);
        CHECK_EQ(pieces[i].len, want[i].len);
    }
}

/* Scattered extents share blobs by payload position; one that crosses a
 * blob boundary becomes two extents, one in each blob, at the right
 * offsets of the volume and of the blobs. */
TEST(cut_scatter_across_blobs)
{
    /* payload: A [0, 8K)  B [8K, 20K)  C [20K, 24K); blobs of 16K */
    static const struct wire_write_ext x[] = {{0, 8192}, {65536, 12288}, {131072, 4096}};
    struct wire_vol_write_req m = scatter_req(x, 3);
    struct proxy_plan_write_size s;
    CHECK_EQ(proxy_plan_write_size(&m, 16384, &s), 0);
    CHECK_EQ(s.n_parts, 2);
    CHECK_EQ(s.max_pieces, 4);
    struct proxy_plan_part parts[2];
    struct proxy_plan_piece pieces[4];
    CHECK_EQ(proxy_plan_write_cut(&m, &s, parts, pieces), 4);
    static const struct proxy_plan_piece want[] = {
        {.part = 0, .vol_off = 0, .blob_off = 0, .len = 8192},
        {.part = 0, .vol_off = 65536, .blob_off = 8192, .len = 8192},
        {.part = 1, .vol_off = 73728, .blob_off = 0, .len = 4096},
        {.part = 1, .vol_off = 131072, .blob_off = 4096, .len = 4096},
    };
    for (unsigned i = 0; i < 4; i++) {
        CHECK_EQ(pieces[i].part, want[i].part);
        CHECK_EQ(pieces[i].vol_off, want[i].vol_off);
        CHECK_EQ(pieces[i].blob_off, want[i].blob_off);
        CHECK_EQ(pieces[i].len, want[i].len);
    }
    CHECK_EQ(parts[0].off, 0);
    CHECK_EQ(parts[0].len, 16384);
    CHECK_EQ(parts[0].first_piece, 0);
    CHECK_EQ(parts[0].n_pieces, 2);
    CHECK_EQ(parts[1].off, 16384);
    CHECK_EQ(parts[1].len, 8192);
    CHECK_EQ(parts[1].first_piece, 2);
    CHECK_EQ(parts[1].n_pieces, 2);
}

/* One extent spanning several blobs becomes one piece per blob, and every
 * payload byte is covered exactly once, in order. */
TEST(cut_extent_over_many_blobs)
{
    /* payload: A [0, 4K)  B [4K, 44K)  C [44K, 48K); blobs of 16K */
    static const struct wire_write_ext x[] = {{4096, 4096}, {1 * MiB, 40960}, {2 * MiB, 4096}};
    struct wire_vol_write_req m = scatter_req(x, 3);
    struct proxy_plan_write_size s;
    CHECK_EQ(proxy_plan_write_size(&m, 16384, &s), 0);
    CHECK_EQ(s.n_parts, 3);
    CHECK_EQ(s.max_pieces, 5);
    struct proxy_plan_part parts[3];
    struct proxy_plan_piece pieces[5];
    uint32_t n = proxy_plan_write_cut(&m, &s, parts, pieces);
    CHECK_EQ(n, 5);
    uint64_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct proxy_plan_part *pt = &parts[pieces[i].part];
        CHECK_EQ(pt->off + pieces[i].blob_off, pos); /* payload order, no gap */
        CHECK(pieces[i].blob_off + pieces[i].len <= pt->len);
        pos += pieces[i].len;
    }
    CHECK_EQ(pos, m.len);
    CHECK_EQ(pieces[1].part, 0);
    CHECK_EQ(pieces[1].vol_off, 1 * MiB);
    CHECK_EQ(pieces[1].len, 12288);
    CHECK_EQ(pieces[2].part, 1);
    CHECK_EQ(pieces[2].vol_off, 1 * MiB + 12288);
    CHECK_EQ(pieces[2].len, 16384);
    CHECK_EQ(pieces[3].part, 2);
    CHECK_EQ(pieces[3].vol_off, 1 * MiB + 28672);
    CHECK_EQ(pieces[3].len, 12288);
    CHECK_EQ(pieces[4].vol_off, 2 * MiB);
    CHECK_EQ(pieces[4].blob_off, 12288);
}

/* ======== Placement ======== */

/* ======== Placement: partitions by capacity and failure domain ======== */

#define PB (100 * GiB)

/* A server of SLOTS partitions' capacity in ZONE / RACK / HOST. */
static struct proxy_plan_node srv(uint64_t id, uint64_t slots, const char *zone, const char *rack,
                                  const char *host)
{
    struct proxy_plan_node x = {.id = id, .capacity = slots * PB, .up = true, .accepts = true,
                                .writable = true};
    proxy_plan_domains(id, zone, rack, host, x.domain);
    return x;
}

/* Create partitions the way the leader does (one at a time, loads
 * updated) until the plan says no more fit; MEMBERS gets 3 per partition.
 * Returns how many were made. */
static unsigned fill_partitions(struct proxy_plan_node *nodes, unsigned n, int *members,
                                unsigned max, int *levels)
{
    unsigned k = 0;
    while (k < max) {
        int pick[3];
        enum proxy_plan_level level;
        if (proxy_plan_new_partition(nodes, n, PB, true, pick, &level) < 0) break;
        for (int r = 0; r < 3; r++) {
            members[3 * k + r] = pick[r];
            nodes[pick[r]].load++;
        }
        levels[k] = proxy_plan_part_level(nodes, pick);
        if (levels[k] != (int)level) return 0; /* the plan and the check disagree */
        k++;
    }
    return k;
}

static uint64_t rnd_state = 1;
static uint64_t rnd(uint64_t n)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state % n;
}

/* The separation the servers allow is the highest level with three
 * domains among those that accept partitions; a draining server does not
 * count. */
TEST(separation_levels)
{
    struct proxy_plan_node n[5] = {srv(1, 1, "a", "r1", "h1"), srv(2, 1, "b", "r1", "h2"),
                                   srv(3, 1, "c", "r1", "h3"), srv(4, 1, "a", "r2", "h4"),
                                   srv(5, 1, "a", "r2", "h4")};
    CHECK_EQ(proxy_plan_separation(n, 5), PROXY_PLAN_LEVEL_ZONE);
    n[2].accepts = false; /* zone c drains: two zones, but racks a/r1, a/r2, b/r1 */
    CHECK_EQ(proxy_plan_separation(n, 5), PROXY_PLAN_LEVEL_RACK);
    n[1].accepts = false; /* racks a/r1 and a/r2 only: hosts h1 and h4 */
    CHECK_EQ(proxy_plan_separation(n, 5), PROXY_PLAN_LEVEL_NODE);
    /* Racks are named within their zone: r1 of zone a is not r1 of zone b. */
    struct proxy_plan_node m[3] = {srv(1, 1, "a", "r1", "x"), srv(2, 1, "b", "r1", "y"),
                                   srv(3, 1, "b", "r2", "z")};
    int all[3] = {0, 1, 2};
    CHECK_EQ(proxy_plan_part_level(m, all), PROXY_PLAN_LEVEL_RACK);
    int dup[3] = {0, 1, 1};
    CHECK_EQ(proxy_plan_part_level(m, dup), -1);
    CHECK_EQ(proxy_plan_slots(250 * GiB, PB), 2);
    CHECK_EQ(proxy_plan_slots(10 * GiB, PB), 1);
    CHECK_EQ(proxy_plan_slots(1ull << 60, 1), UINT32_MAX);
}

/* New partitions over random servers in random domains: never more
 * replicas on a server than its slots, the loads add up, making stops only
 * when fewer than three servers have a free slot, and every partition is
 * separated at the level the servers allow while three domains at that
 * level still have room (rows: zones, racks only, hosts only, one host). */
TEST(new_partitions_random_capacities_and_domains)
{
    static const struct {
        const char *row;
        unsigned zones, racks, hosts; /* per zone, per rack; 0 zones: unlabelled */
    } t[] = {
        {"four zones", 4, 2, 2},
        {"three zones", 3, 3, 1},
        {"one zone, five racks", 1, 5, 2},
        {"unlabelled racks, many hosts", 0, 0, 12},
        {"one host", 0, 0, 1},
    };
    for (unsigned row = 0; row < BD_ARRAY_SIZE(t); row++)
        for (uint64_t seed = 1; seed <= 20; seed++) {
            rnd_state = seed * 0x9E3779B97F4A7C15ull + row;
            struct proxy_plan_node nodes[64];
            int members[3 * 1024], levels[1024];
            unsigned n = 0;
            unsigned zones = t[row].zones ? t[row].zones : 1;
            unsigned racks = t[row].racks ? t[row].racks : 1;
            for (unsigned z = 0; z < zones; z++)
                for (unsigned r = 0; r < racks; r++)
                    for (unsigned h = 0; h < t[row].hosts; h++)
                        for (unsigned k = 0; k < 1 + rnd(2) && n < 64; k++) {
                            char zn[16], rn[16], hn[48];
                            snprintf(zn, sizeof(zn), "z%u", z);
                            snprintf(rn, sizeof(rn), "r%u", r);
                            snprintf(hn, sizeof(hn), "h%u.%u.%u", z, r, h);
                            nodes[n] = srv(100 + n, 1 + rnd(8), t[row].zones ? zn : "",
                                           t[row].racks ? rn : "", hn);
                            n++;
                        }
            enum proxy_plan_level allowed = proxy_plan_separation(nodes, n);
            unsigned k = fill_partitions(nodes, n, members, 1024, levels);
            uint64_t slots = 0, loads = 0;
            unsigned with_room = 0;
            for (unsigned i = 0; i < n; i++) {
                uint32_t s = proxy_plan_slots(nodes[i].capacity, PB);
                ROW_EQ(t[row].row, nodes[i].load <= s, 1);
                slots += s;
                loads += nodes[i].load;
                with_room += nodes[i].load < s;
            }
            ROW_EQ(t[row].row, loads, 3ull * k);
            ROW_EQ(t[row].row, loads <= slots, 1);
            ROW_EQ(t[row].row, with_room < 3, 1);
            ROW_EQ(t[row].row, k <= proxy_plan_partitions_wanted(nodes, n, PB), 1);
            /* Separation: partitions below the allowed level only once the
             * domains with room are fewer than three at that level. */
            unsigned below = 0;
            for (unsigned i = 0; i < k; i++) below += levels[i] < (int)allowed;
            if (below) ROW_EQ(t[row].row, levels[k - 1] < (int)allowed, 1);
            if (t[row].hosts == 1 && !t[row].zones) ROW_EQ(t[row].row, allowed, PROXY_PLAN_LEVEL_NODE);
        }
}

/* Three zones of unequal size: as many zone-separated partitions as the
 * smallest zone has slots (the most possible), the rest separated by
 * rack, then host, within the big zone. */
TEST(new_partitions_uneven_zones)
{
    struct proxy_plan_node n[12];
    unsigned k = 0;
    for (unsigned i = 0; i < 8; i++) {
        char h[16], r[16];
        snprintf(h, sizeof(h), "a%u", i);
        snprintf(r, sizeof(r), "r%u", i % 4);
        n[k] = srv(k + 1, 4, "A", r, h);
        k++;
    }
    n[k] = srv(k + 1, 3, "B", "r0", "b0"), k++;
    n[k] = srv(k + 1, 2, "B", "r1", "b1"), k++;
    n[k] = srv(k + 1, 3, "C", "r0", "c0"), k++;
    n[k] = srv(k + 1, 4, "C", "r1", "c1"), k++;
    int members[3 * 64], levels[64];
    unsigned made = fill_partitions(n, k, members, 64, levels);
    unsigned by_zone = 0;
    for (unsigned i = 0; i < made; i++) by_zone += levels[i] == PROXY_PLAN_LEVEL_ZONE;
    CHECK_EQ(by_zone, 5); /* zone B has 5 slots */
    for (unsigned i = by_zone; i < made; i++) CHECK(levels[i] >= PROXY_PLAN_LEVEL_RACK);
    CHECK_EQ(made, proxy_plan_partitions_wanted(n, k, PB)); /* (32 + 5 + 7) / 3 */
}

/* Blobs follow free space: over partitions made by the plan for random
 * capacities (whole slots, three zones), blobs placed by weight (rebuilt
 * as servers fill, as the proxy's view is) fill each server to the fill
 * limit times the share of its slots in use, within a few percent, and a
 * server past the limit gets nothing more. */
TEST(place_fills_in_proportion_to_capacity)
{
    for (uint64_t seed = 1; seed <= 10; seed++) {
        rnd_state = seed * 7919;
        struct proxy_plan_node nodes[24];
        unsigned n = 9 + (unsigned)rnd(15);
        for (unsigned i = 0; i < n; i++) {
            char z[16], h[16];
            snprintf(z, sizeof(z), "z%u", i % 3);
            snprintf(h, sizeof(h), "h%u", i);
            nodes[i] = srv(i + 1, 1 + rnd(8), z, "", h);
        }
        int members[3 * 256], levels[256];
        struct index_part parts[256];
        unsigned k = fill_partitions(nodes, n, members, 256, levels);
        CHECK(k >= 3);
        for (unsigned i = 0; i < k; i++) parts[i] = part(i + 1, 0, 0, 0);
        uint64_t cum[256], blob = 256 * MiB;
        unsigned placed = 0, limit_pct = 90;
        for (;;) {
            for (unsigned i = 0; i < n; i++)
                nodes[i].writable = nodes[i].used * 100 <= nodes[i].capacity * limit_pct;
            if (!proxy_plan_place_weights(parts, k, members, nodes, n, cum)) break;
            for (int b = 0; b < 16; b++) { /* 16 placements per weight rebuild */
                int at = proxy_plan_place(parts, k, cum, rnd(UINT64_MAX), 0);
                CHECK(at >= 0);
                for (int r = 0; r < 3; r++) {
                    struct proxy_plan_node *x = &nodes[members[3 * at + r]];
                    CHECK(x->writable); /* only open partitions take blobs */
                    x->used += blob;
                }
                placed++;
            }
        }
        double worst = 0;
        for (unsigned i = 0; i < n; i++) {
            double fill = (double)nodes[i].used / (double)nodes[i].capacity;
            double want = limit_pct / 100.0 * nodes[i].load /
                          proxy_plan_slots(nodes[i].capacity, PB);
            double off = fill > want ? fill - want : want - fill;
            worst = off > worst ? off : worst;
            /* Stopped at the limit: one round of 16 blobs past it at most. */
            CHECK(nodes[i].used <= nodes[i].capacity * limit_pct / 100 + 16 * blob);
        }
        printf("# seed %llu: %u servers, %u partitions, %u blobs of 256 MiB: fill within %.3f "
               "of limit x used slots\n", (unsigned long long)seed, n, k, placed, worst);
        CHECK(worst < 0.05);
    }
}

/* Weights: a partition with a member that takes no blobs (down, read-only,
 * full, draining) or that is not active weighs nothing; AVOID skips to the
 * next open partition; nothing open places nothing. */
TEST(place_weights_and_avoid)
{
    struct proxy_plan_node n[5];
    for (unsigned i = 0; i < 5; i++) n[i] = srv(i + 1, 2, "", "", "");
    n[4].writable = false;
    for (unsigned i = 0; i < 5; i++) n[i].load = 2;
    n[0].used = 100 * GiB; /* half free: its partitions weigh half */
    struct index_part parts[4] = {part(1, 1, 2, 3), part(2, 2, 3, 4), part(3, 3, 4, 5),
                                  part(4, 1, 2, 4)};
    int members[12] = {0, 1, 2, 1, 2, 3, 2, 3, 4, 0, 1, 3};
    uint64_t cum[4];
    uint64_t total = proxy_plan_place_weights(parts, 4, members, n, 5, cum);
    uint64_t full = (200 * GiB >> 20) / 2, half = (100 * GiB >> 20) / 2;
    CHECK_EQ(cum[0], half);
    CHECK_EQ(cum[1], half + full);
    CHECK_EQ(cum[2], half + full); /* member 5 takes no blobs */
    CHECK_EQ(total, 2 * half + full);
    CHECK_EQ(proxy_plan_place(parts, 4, cum, 0, 0), 0);
    CHECK_EQ(proxy_plan_place(parts, 4, cum, half, 0), 1);
    CHECK_EQ(proxy_plan_place(parts, 4, cum, half + full, 0), 3);
    CHECK_EQ(proxy_plan_place(parts, 4, cum, half + full, 4), 0); /* wraps past partition 4 */
    CHECK_EQ(proxy_plan_place(parts, 4, cum, half, 2), 3);
    parts[0].state = 0;
    parts[3].state = 0;
    total = proxy_plan_place_weights(parts, 4, members, n, 5, cum);
    CHECK_EQ(total, full);
    CHECK_EQ(proxy_plan_place(parts, 4, cum, 5, 2), -1); /* the only open one is avoided */
    CHECK_EQ(proxy_plan_place(NULL, 0, NULL, 0, 0), -1);
}

/* A replacement keeps the partition apart at the highest level it can,
 * takes a free slot unless told a lost server must be replaced anyway,
 * and is never a member, down or draining. */
TEST(replacement)
{
    struct proxy_plan_node n[7] = {
        srv(1, 2, "a", "", "h1"), srv(2, 2, "b", "", "h2"), srv(3, 2, "c", "", "h3"),
        srv(4, 2, "c", "", "h4"), srv(5, 2, "a", "", "h5"), srv(6, 2, "b", "", "h6"),
        srv(7, 9, "c", "", "h7"),
    };
    int m[3] = {0, 1, 2}; /* a, b, c */
    enum proxy_plan_level level;
    /* Replacing 3 (zone c): 7 and 4 are in c; 7 has more room per load. */
    CHECK_EQ(proxy_plan_replacement(n, 7, m, 2, PB, true, &level), 6);
    CHECK_EQ(level, PROXY_PLAN_LEVEL_ZONE);
    n[6].up = false;
    CHECK_EQ(proxy_plan_replacement(n, 7, m, 2, PB, true, &level), 3);
    n[3].accepts = false; /* 4 drains: no zone-c server left, host level */
    int got = proxy_plan_replacement(n, 7, m, 2, PB, true, &level);
    CHECK(got == 4 || got == 5);
    CHECK_EQ(level, PROXY_PLAN_LEVEL_HOST);
    for (unsigned i = 3; i < 7; i++) n[i].load = 2; /* every other slot taken */
    CHECK_EQ(proxy_plan_replacement(n, 7, m, 2, PB, true, &level), -1);
    got = proxy_plan_replacement(n, 7, m, 2, PB, false, &level);
    CHECK(got == 4 || got == 5);
}

/* Apply MV to MEMBERS and the loads; check the separation did not drop
 * below min(before, allowed). */
static bool apply_move(struct proxy_plan_node *n, unsigned nn, int *members,
                       const struct proxy_plan_move *mv)
{
    int *m = &members[3 * mv->part];
    int before = proxy_plan_part_level(n, m);
    n[m[mv->slot]].load--;
    n[mv->dst].load++;
    m[mv->slot] = mv->dst;
    return proxy_plan_part_level(n, m) >= BD_MIN(before, (int)proxy_plan_separation(n, nn));
}

/* Rebalancing toward capacity (hosts only, no zones): a new empty server
 * draws replicas one move at a time until every server is within one
 * replica of its share (replicas x its slots / all slots). */
TEST(rebalance_to_new_server)
{
    struct proxy_plan_node n[6];
    for (unsigned i = 0; i < 5; i++) {
        char h[16];
        snprintf(h, sizeof(h), "h%u", i);
        n[i] = srv(i + 1, i < 2 ? 4 : 8, "", "", h);
    }
    int members[3 * 64], levels[64];
    unsigned k = fill_partitions(n, 5, members, 64, levels);
    CHECK_EQ(k, 10);
    struct index_part parts[64];
    for (unsigned i = 0; i < k; i++) parts[i] = part(i + 1, 0, 0, 0);
    n[5] = srv(6, 8, "", "", "h5"); /* a new empty server */
    struct proxy_plan_move mv;
    unsigned moves = 0;
    while (proxy_plan_rebalance(parts, k, members, NULL, n, 6, PB, &mv) == 0 && moves < 100) {
        CHECK(apply_move(n, 6, members, &mv));
        moves++;
    }
    CHECK(moves > 0 && moves < 100);
    for (unsigned i = 0; i < 6; i++) {
        double share = 30.0 * proxy_plan_slots(n[i].capacity, PB) / 40.0;
        CHECK(n[i].load + 1.0 > share && n[i].load < share + 1.0);
    }
    printf("# %u moves: loads %u %u %u %u %u %u\n", moves, n[0].load, n[1].load, n[2].load,
           n[3].load, n[4].load, n[5].load);
}

/* With zones, moves never lower a partition's separation (a new server in
 * zone z0 only takes replicas from z0); draining a server moves every
 * replica off it, each to a server that keeps the partition's zones. */
TEST(rebalance_keeps_zones_and_drains)
{
    struct proxy_plan_node n[7];
    for (unsigned i = 0; i < 6; i++) {
        char z[16], h[16];
        snprintf(z, sizeof(z), "z%u", i % 3);
        snprintf(h, sizeof(h), "h%u", i);
        n[i] = srv(i + 1, 6, z, "", h);
    }
    int members[3 * 64], levels[64];
    unsigned k = fill_partitions(n, 6, members, 64, levels);
    CHECK_EQ(k, 12);
    for (unsigned i = 0; i < k; i++) CHECK_EQ(levels[i], PROXY_PLAN_LEVEL_ZONE);
    struct index_part parts[64];
    for (unsigned i = 0; i < k; i++) parts[i] = part(i + 1, 0, 0, 0);
    n[6] = srv(7, 6, "z0", "", "h6");
    struct proxy_plan_move mv;
    unsigned moves = 0;
    while (proxy_plan_rebalance(parts, k, members, NULL, n, 7, PB, &mv) == 0 && moves < 100) {
        CHECK(n[members[3 * mv.part + mv.slot]].domain[PROXY_PLAN_LEVEL_ZONE] ==
              n[6].domain[PROXY_PLAN_LEVEL_ZONE]);
        CHECK(apply_move(n, 7, members, &mv));
        moves++;
    }
    printf("# %u moves: z0 loads %u %u %u\n", moves, n[0].load, n[3].load, n[6].load);
    CHECK_EQ(n[0].load + n[3].load + n[6].load, 12); /* zone z0 kept its 12 */
    CHECK(n[6].load >= 3);
    /* Drain server 2 (zone z1): its replicas go to server 5, the other z1. */
    n[1].accepts = false;
    n[4].capacity = 12 * PB;
    unsigned drained = 0;
    while (n[1].load && drained < 100 &&
           proxy_plan_rebalance(parts, k, members, NULL, n, 7, PB, &mv) == 0) {
        CHECK_EQ(members[3 * mv.part + mv.slot], 1);
        CHECK_EQ(mv.dst, 4);
        CHECK(apply_move(n, 7, members, &mv));
        drained++;
    }
    CHECK_EQ(n[1].load, 0);
    CHECK_EQ(drained, 6);
    for (unsigned i = 0; i < k; i++) CHECK_EQ(proxy_plan_part_level(n, &members[3 * i]),
                                              PROXY_PLAN_LEVEL_ZONE);
}

/* ======== Reads ======== */

/* Holes and zeroed extents become zero fills, data pieces blob reads, each
 * at its place in the reply. */
TEST(read_resolve_mixed)
{
    const struct index_piece pc[] = {hole(1 * MiB, 4096), data(1 * MiB + 4096, 8192, 42, 4096,
                                                               65536),
                                     zero(1 * MiB + 12288, 4096)};
    struct proxy_plan_read_step st[3];
    CHECK_EQ(proxy_plan_read_resolve(1 * MiB, 16384, pc, 3, st), 0);
    CHECK_EQ(st[0].kind, PROXY_PLAN_READ_ZERO);
    CHECK_EQ(st[0].buf_off, 0);
    CHECK_EQ(st[0].len, 4096);
    CHECK_EQ(st[1].kind, PROXY_PLAN_READ_FETCH);
    CHECK_EQ(st[1].buf_off, 4096);
    CHECK_EQ(st[1].len, 8192);
    CHECK_EQ(st[1].blob_id, 42);
    CHECK_EQ(st[1].partition, 7);
    CHECK_EQ(st[1].blob_off, 4096);
    CHECK_EQ(st[2].kind, PROXY_PLAN_READ_ZERO);
    CHECK_EQ(st[2].buf_off, 12288);
    CHECK_EQ(st[2].len, 4096);
}

/* A range over several blobs reads each slice from its own blob. */
TEST(read_resolve_multi_blob)
{
    const struct index_piece pc[] = {data(0, 8192, 5, 1 * MiB - 8192, 1 * MiB),
                                     data(8192, 1 * MiB, 6, 0, 1 * MiB),
                                     data(8192 + 1 * MiB, 4096, 7, 0, 4096)};
    struct proxy_plan_read_step st[3];
    CHECK_EQ(proxy_plan_read_resolve(0, 1 * MiB + 12288, pc, 3, st), 0);
    static const struct {
        uint64_t blob;
        uint32_t buf_off, blob_off, len;
    } want[] = {{5, 0, 1 * MiB - 8192, 8192}, {6, 8192, 0, 1 * MiB}, {7, 8192 + 1 * MiB, 0, 4096}};
    for (unsigned i = 0; i < 3; i++) {
        CHECK_EQ(st[i].kind, PROXY_PLAN_READ_FETCH);
        CHECK_EQ(st[i].blob_id, want[i].blob);
        CHECK_EQ(st[i].buf_off, want[i].buf_off);
        CHECK_EQ(st[i].blob_off, want[i].blob_off);
        CHECK_EQ(st[i].len, want[i].len);
    }
}

/* A map that does not tile the range exactly, or a piece that is not a
 * slice of its blob, is an index fault: -EIO, never a reply with unwritten
 * bytes. */
TEST(read_resolve_refuses_a_bad_map)
{
    struct {
        const char *row;
        uint64_t off, len;
        struct index_piece pc[2];
        uint32_t n;
    } t[] = {
        {"a gap", 0, 12288, {hole(0, 4096), zero(8192, 4096)}, 2},
        {"an overlap", 0, 8192, {hole(0, 8192), zero(4096, 4096)}, 2},
        {"short of the end", 0, 12288, {hole(0, 4096), zero(4096, 4096)}, 2},
        {"past the end", 0, 8192, {hole(0, 4096), zero(4096, 8192)}, 2},
        {"starts late", 0, 8192, {hole(4096, 4096)}, 1},
        {"shifted: the right total in the wrong place", 0, 8192,
         {hole(4096, 4096), zero(8192, 4096)}, 2},
        {"a gap made up past the end", 0, 12288, {hole(0, 4096), zero(8192, 8192)}, 2},
        {"no pieces", 0, 4096, {{0}}, 0},
        {"an empty piece", 0, 4096, {hole(0, 0), hole(0, 4096)}, 2},
        {"past its blob", 0, 8192, {data(0, 8192, 9, 4096, 8192)}, 1},
        {"an unknown kind", 0, 4096, {{.off = 0, .len = 4096, .kind = 9}}, 1},
        {"a read over the frame limit", 0, PROXY_PLAN_READ_MAX_LEN + 4096,
         {hole(0, PROXY_PLAN_READ_MAX_LEN + 4096)}, 1},
    };
    for (unsigned i = 0; i < BD_ARRAY_SIZE(t); i++) {
        struct proxy_plan_read_step st[2];
        ROW_EQ(t[i].row, proxy_plan_read_resolve(t[i].off, t[i].len, t[i].pc, t[i].n, st),
               -EIO);
    }
}

/* The map merges neighbouring pieces of one kind (two blobs' data is one
 * DATA range) and stops at MAX ranges. */
TEST(map_ranges)
{
    const struct index_piece pc[] = {data(0, 4096, 1, 0, 4096), data(4096, 4096, 2, 0, 4096),
                                     hole(8192, 4096),          zero(12288, 4096),
                                     zero(16384, 8192),         data(24576, 4096, 3, 0, 4096)};
    struct wire_map_range r[6];
    CHECK_EQ(proxy_plan_map_ranges(pc, 6, r, 6), 4);
    CHECK_EQ(r[0].kind, WIRE_MAP_DATA);
    CHECK_EQ(r[0].off, 0);
    CHECK_EQ(r[0].len, 8192);
    CHECK_EQ(r[1].kind, WIRE_MAP_HOLE);
    CHECK_EQ(r[1].len, 4096);
    CHECK_EQ(r[2].kind, WIRE_MAP_ZERO);
    CHECK_EQ(r[2].off, 12288);
    CHECK_EQ(r[2].len, 12288);
    CHECK_EQ(r[3].kind, WIRE_MAP_DATA);
    CHECK_EQ(r[3].off, 24576);
    CHECK_EQ(proxy_plan_map_ranges(pc, 6, r, 2), 2);
    CHECK_EQ(r[1].kind, WIRE_MAP_HOLE);
    CHECK_EQ(proxy_plan_map_ranges(pc, 0, r, 6), 0);
}

/* Replicas whose servers are up are tried first, each group in member
 * order; with all up or all down the order is the partition's. */
TEST(replica_order)
{
    static const uint64_t nodes[3] = {100, 200, 300};
    static const struct {
        const char *row;
        uint8_t up;
        uint64_t want[3];
    } t[] = {
        {"all up", 0x7, {100, 200, 300}},
        {"all down", 0x0, {100, 200, 300}},
        {"first down", 0x6, {200, 300, 100}},
        {"middle down", 0x5, {100, 300, 200}},
        {"only the last up", 0x4, {300, 100, 200}},
        {"only the first up", 0x1, {100, 200, 300}},
    };
    for (unsigned i = 0; i < BD_ARRAY_SIZE(t); i++) {
        uint64_t out[3];
        proxy_plan_replica_order(nodes, t[i].up, out);
        for (int k = 0; k < 3; k++) ROW_EQ(t[i].row, out[k], t[i].want[k]);
    }
}
