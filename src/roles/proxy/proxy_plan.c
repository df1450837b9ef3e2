/* proxy_plan.c: the data path's decisions (see proxy_plan.h).
 *
 * Cutting.  A write's payload is its extents' data back to back.  It is
 * cut into blobs of at most blob_max_bytes by payload position alone, so
 * many small extents of a scattered write share one blob, and an extent
 * that straddles a blob boundary becomes one index extent per blob, each
 * naming its slice (blob_off).  ZERO and TRIM have no payload: they are
 * cut only at the index's own limit, which a wire write never reaches, so
 * each stays one extent and commits in one WRITE_BATCH entry as before.
 * The counts are computed in 64 bits: a 32-bit "(len + chunk - 1) / chunk"
 * wraps for any index-only write over 2 GiB (chunk == len) and gave zero
 * parts, which aborted the proxy on its own assertion.
 *
 * Fencing.  The commit of the index entry is the linearization point (C10):
 * the FSM accepts a write only while the volume is attached read-write at
 * exactly the write's generation.  A proxy may lag the leader, so early it
 * refuses only what is fenced for good: an older generation (generations
 * never decrease), or the current one after a detach (only an attach,
 * which bumps it, makes the volume writable again).  A newer generation
 * than this proxy knows is the agent's fresh attach not yet applied here.
 *
 * Placement (the seed's partitions: proxy_plan.h).  Partitions are sized
 * slots of the servers' disks, so a bigger server is in more partitions;
 * members are chosen in distinct failure domains at the highest level the
 * candidates allow, and by lowest load per slot.  A new blob picks an open
 * partition at random, weighted by its scarcest member's free space
 * divided among that member's open partitions: with every server equally
 * full each partition weighs the same and servers fill in proportion to
 * their size, and a server that falls ahead weighs less until the others
 * catch up.  A put that failed is retried elsewhere (AVOID).  Random, not
 * round-robin: proxies place independently, and weights change with every
 * heartbeat.  Rebalancing is the same arithmetic applied to replicas: the
 * server most above its share gives one to the server most below it, one
 * move at a time, and only while that narrows the gap (moving a 100 GiB
 * replica to fix a rounding difference would never end).
 *
 * Reads.  The index maps a range into ordered pieces that tile it: DATA
 * pieces become blob reads into their place in the reply, ZERO and HOLE
 * pieces zero fills.  The tiling is checked, not trusted: a gap would
 * leave uninitialised memory in a reply. */
#include "roles/proxy/proxy_plan.h"

#include <string.h>

/* ---- admission ----------------------------------------------------------------- */

int proxy_plan_in_volume(uint64_t off, uint64_t len, uint64_t size)
{
    /* Written so that nothing wraps: OFF + LEN is never computed. */
    if (len > size || off > size - len) return -ERANGE;
    return 0;
}

int proxy_plan_write_check(const struct wire_vol_write_req *m)
{
    uint32_t n = wire_vol_write_count(m);
    uint64_t end = 0, total = 0;
    if (m->len == 0 || n == 0) return -EINVAL;
    for (uint32_t i = 0; i < n; i++) {
        struct wire_write_ext x;
        wire_vol_write_ext(m, i, &x);
        if (x.len == 0 || x.off % BD_BLOCK_SIZE || x.len % BD_BLOCK_SIZE) return -EINVAL;
        if (x.off > UINT64_MAX - x.len) return -ERANGE;
        if (i > 0 && x.off < end) return -EINVAL;
        end = x.off + x.len;
        total += x.len;
    }
    return total == m->len ? 0 : -EINVAL;
}

int proxy_plan_write_in_volume(const struct wire_vol_write_req *m, uint64_t size)
{
    uint32_t n = wire_vol_write_count(m);
    for (uint32_t i = 0; i < n; i++) {
        struct wire_write_ext x;
        wire_vol_write_ext(m, i, &x);
        if (proxy_plan_in_volume(x.off, x.len, size) < 0) return -ERANGE;
    }
    return 0;
}

int proxy_plan_fence(const struct index_vol *v, uint64_t generation, const char *writer)
{
    if (generation < v->generation) return -BD_EFENCED;
    if (generation == v->generation && v->attach_mode != INDEX_ATTACH_RW) return -BD_EFENCED;
    if (generation == v->generation && writer && strcmp(writer, v->agent) != 0)
        return -BD_EFENCED;
    return 0;
}

int proxy_plan_read_check(uint64_t off, uint64_t len, bool data)
{
    if (len == 0 || off % BD_BLOCK_SIZE || len % BD_BLOCK_SIZE) return -EINVAL;
    if (off > UINT64_MAX - len) return -ERANGE;
    if (data && len > PROXY_PLAN_READ_MAX_LEN) return -EMSGSIZE;
    return 0;
}

/* ---- write cutting -------------------------------------------------------------- */

int proxy_plan_write_size(const struct wire_vol_write_req *m, uint64_t blob_max,
                          struct proxy_plan_write_size *out)
{
    bool index_only = m->flags & (WIRE_WRITE_ZERO | WIRE_WRITE_TRIM);
    if (m->len == 0) return -EINVAL;
    uint64_t chunk = PROXY_PLAN_INDEX_MAX_LEN;
    if (!index_only) {
        if (blob_max < BD_BLOCK_SIZE || blob_max > IDXCMD_MAX_BLOB_LEN ||
            blob_max % BD_BLOCK_SIZE)
            return -EINVAL;
        chunk = blob_max;
    }
    uint64_t n_parts = ((uint64_t)m->len + chunk - 1) / chunk;
    *out = (struct proxy_plan_write_size){
        .chunk = (uint32_t)chunk,
        .n_parts = (uint32_t)n_parts,
        /* each part boundary splits at most one extent in two */
        .max_pieces = wire_vol_write_count(m) + (uint32_t)n_parts - 1,
    };
    return 0;
}

uint32_t proxy_plan_write_cut(const struct wire_vol_write_req *m,
                              const struct proxy_plan_write_size *size,
                              struct proxy_plan_part *parts, struct proxy_plan_piece *pieces)
{
    uint64_t chunk = size->chunk;
    for (uint32_t i = 0; i < size->n_parts; i++) {
        uint64_t off = i * chunk;
        parts[i] = (struct proxy_plan_part){.off = (uint32_t)off,
                                            .len = (uint32_t)BD_MIN(chunk, m->len - off)};
    }
    uint32_t n_wire = wire_vol_write_count(m);
    uint32_t k = 0;
    uint64_t pos = 0; /* payload position */
    for (uint32_t i = 0; i < n_wire; i++) {
        struct wire_write_ext x;
        wire_vol_write_ext(m, i, &x);
        uint64_t vol_off = x.off, left = x.len;
        while (left > 0 && BD_ALWAYS(k < size->max_pieces)) {
            uint64_t part = pos / chunk;
            if (!BD_ALWAYS(part < size->n_parts)) return k;
            uint64_t room = (part + 1) * chunk - pos;
            uint64_t n = BD_MIN(left, room);
            struct proxy_plan_part *pt = &parts[part];
            if (pt->n_pieces == 0) pt->first_piece = k;
            pt->n_pieces++;
            pieces[k++] = (struct proxy_plan_piece){.part = (uint32_t)part,
                                                    .vol_off = vol_off,
                                                    .blob_off = (uint32_t)(pos - pt->off),
                                                    .len = (uint32_t)n};
            vol_off += n;
            pos += n;
            left -= n;
        }
    }
    return k;
}

/* ---- placement ----------------------------------------------------------------- */

const char *proxy_plan_level_name(enum proxy_plan_level l)
{
    static const char *const names[PROXY_PLAN_LEVELS] = {"node", "host", "rack", "zone"};
    return (unsigned)l < PROXY_PLAN_LEVELS ? names[l] : "unknown";
}

/* FNV-1a over a tag and up to three strings with separators: stable
 * across processes, so every proxy interns a label to the same id. */
static uint64_t fnv(const char *tag, const char *a, const char *b)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const char *parts[3] = {tag, a ? a : "", b ? b : ""};
    for (int i = 0; i < 3; i++) {
        for (const char *c = parts[i]; *c; c++) h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
        h = (h ^ 0x1f) * 0x100000001b3ull; /* separator: ("a","bc") != ("ab","c") */
    }
    return h;
}

void proxy_plan_domains(uint64_t node_id, const char *zone, const char *rack, const char *host,
                        uint64_t out[PROXY_PLAN_LEVELS])
{
    out[PROXY_PLAN_LEVEL_NODE] = node_id;
    out[PROXY_PLAN_LEVEL_HOST] = fnv("host", host, NULL);
    out[PROXY_PLAN_LEVEL_RACK] = fnv("rack", zone, rack);
    out[PROXY_PLAN_LEVEL_ZONE] = fnv("zone", zone, NULL);
}

uint32_t proxy_plan_slots(uint64_t capacity, uint64_t partition_bytes)
{
    uint64_t s = partition_bytes ? capacity / partition_bytes : 1;
    return s < 1 ? 1 : s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

/* Distinct domains at LEVEL among the nodes OK says yes to, counted up to 3. */
static unsigned distinct3(const struct proxy_plan_node *nodes, unsigned n, int level,
                          bool (*ok)(const struct proxy_plan_node *x, uint64_t pb), uint64_t pb)
{
    uint64_t seen[3];
    unsigned k = 0;
    for (unsigned i = 0; i < n && k < 3; i++) {
        if (!ok(&nodes[i], pb)) continue;
        bool dup = false;
        for (unsigned j = 0; j < k; j++)
            if (seen[j] == nodes[i].domain[level]) dup = true;
        if (!dup) seen[k++] = nodes[i].domain[level];
    }
    return k;
}

static bool accepting(const struct proxy_plan_node *x, uint64_t pb)
{
    (void)pb;
    return x->accepts;
}

/* Up, accepting and with a free slot: may take a new replica. */
static bool has_slot(const struct proxy_plan_node *x, uint64_t pb)
{
    return x->up && x->accepts && x->load < proxy_plan_slots(x->capacity, pb);
}

enum proxy_plan_level proxy_plan_separation(const struct proxy_plan_node *nodes, unsigned n)
{
    for (int l = PROXY_PLAN_LEVEL_ZONE; l > PROXY_PLAN_LEVEL_NODE; l--)
        if (distinct3(nodes, n, l, accepting, 0) == 3) return (enum proxy_plan_level)l;
    return PROXY_PLAN_LEVEL_NODE;
}

int proxy_plan_part_level(const struct proxy_plan_node *nodes, const int members[3])
{
    for (int i = 0; i < 3; i++)
        if (members[i] < 0) return -1;
    if (members[0] == members[1] || members[0] == members[2] || members[1] == members[2])
        return -1;
    for (int l = PROXY_PLAN_LEVEL_ZONE; l > PROXY_PLAN_LEVEL_NODE; l--) {
        uint64_t a = nodes[members[0]].domain[l], b = nodes[members[1]].domain[l],
                 c = nodes[members[2]].domain[l];
        if (a != b && a != c && b != c) return l;
    }
    return PROXY_PLAN_LEVEL_NODE;
}

uint32_t proxy_plan_partitions_wanted(const struct proxy_plan_node *nodes, unsigned n,
                                      uint64_t partition_bytes)
{
    uint64_t slots = 0;
    for (unsigned i = 0; i < n; i++)
        if (nodes[i].accepts) slots += proxy_plan_slots(nodes[i].capacity, partition_bytes);
    slots /= 3;
    return slots > UINT32_MAX ? UINT32_MAX : (uint32_t)slots;
}

/* A is a better home for a replica than B: lower load per slot, then more
 * free bytes, then the lower id (deterministic). */
static bool better(const struct proxy_plan_node *a, const struct proxy_plan_node *b, uint64_t pb)
{
    uint64_t la = (uint64_t)a->load * proxy_plan_slots(b->capacity, pb),
             lb = (uint64_t)b->load * proxy_plan_slots(a->capacity, pb);
    if (la != lb) return la < lb;
    uint64_t fa = a->capacity > a->used ? a->capacity - a->used : 0,
             fb = b->capacity > b->used ? b->capacity - b->used : 0;
    if (fa != fb) return fa > fb;
    return a->id < b->id;
}

static bool up_accepting(const struct proxy_plan_node *x, uint64_t pb)
{
    (void)pb;
    return x->up && x->accepts;
}

int proxy_plan_new_partition(const struct proxy_plan_node *nodes, unsigned n,
                             uint64_t partition_bytes, bool need_slot, int out[3],
                             enum proxy_plan_level *level)
{
    bool (*ok)(const struct proxy_plan_node *, uint64_t) = need_slot ? has_slot : up_accepting;
    int l = PROXY_PLAN_LEVEL_ZONE;
    while (l > PROXY_PLAN_LEVEL_NODE && distinct3(nodes, n, l, ok, partition_bytes) < 3) l--;
    for (int r = 0; r < 3; r++) {
        int best = -1;
        for (unsigned i = 0; i < n; i++) {
            const struct proxy_plan_node *x = &nodes[i];
            if (!ok(x, partition_bytes)) continue;
            bool apart = true;
            for (int q = 0; q < r; q++)
                if ((unsigned)out[q] == i || nodes[out[q]].domain[l] == x->domain[l]) apart = false;
            if (apart && (best < 0 || better(x, &nodes[best], partition_bytes))) best = (int)i;
        }
        if (best < 0) return -ENOSPC;
        out[r] = best;
    }
    *level = (enum proxy_plan_level)l;
    return 0;
}

int proxy_plan_replacement(const struct proxy_plan_node *nodes, unsigned n,
                           const int members[3], int slot, uint64_t partition_bytes,
                           bool need_slot, enum proxy_plan_level *level)
{
    int others[2], k = 0;
    for (int i = 0; i < 3; i++)
        if (i != slot) others[k++] = members[i];
    for (int l = PROXY_PLAN_LEVEL_ZONE; l >= PROXY_PLAN_LEVEL_NODE; l--) {
        /* At level l, the two that stay must already be apart (else no
         * choice reaches l), and the newcomer apart from both. */
        if (l > PROXY_PLAN_LEVEL_NODE && others[0] >= 0 && others[1] >= 0 &&
            nodes[others[0]].domain[l] == nodes[others[1]].domain[l])
            continue;
        int best = -1;
        for (unsigned i = 0; i < n; i++) {
            const struct proxy_plan_node *x = &nodes[i];
            if (!x->up || !x->accepts) continue;
            if (need_slot && x->load >= proxy_plan_slots(x->capacity, partition_bytes)) continue;
            bool ok = true;
            for (int q = 0; q < 3; q++)
                if (members[q] >= 0 && nodes[members[q]].id == x->id) ok = false;
            for (int q = 0; q < 2 && ok; q++)
                if (others[q] >= 0 && nodes[others[q]].domain[l] == x->domain[l]) ok = false;
            if (ok && (best < 0 || better(x, &nodes[best], partition_bytes))) best = (int)i;
        }
        if (best >= 0) {
            *level = (enum proxy_plan_level)l;
            return best;
        }
    }
    return -1;
}

/* over(i) = load - share, in units of 1/slots of a replica (exact): a
 * replica is SLOTS units. */
static int64_t over(const struct proxy_plan_node *x, uint64_t replicas, uint64_t slots,
                    uint64_t partition_bytes)
{
    int64_t share = x->accepts ? (int64_t)replicas *
                                     (int64_t)proxy_plan_slots(x->capacity, partition_bytes)
                               : 0;
    return (int64_t)x->load * (int64_t)slots - share;
}

/* The best move of a replica off SRC: the partition and the destination
 * most below its share that keeps the partition's separation (and, unless
 * SRC drains, narrows the gap).  true with *OUT. */
static bool move_off(const struct index_part *parts, unsigned n_parts, const int *members,
                     const bool *skip, const struct proxy_plan_node *nodes, unsigned n, uint64_t partition_bytes,
                     int src, uint64_t replicas, uint64_t slots, enum proxy_plan_level cluster,
                     struct proxy_plan_move *out)
{
    bool found = false;
    int64_t src_over = over(&nodes[src], replicas, slots, partition_bytes), best = 0;
    for (unsigned k = 0; k < n_parts; k++) {
        const int *m = &members[3 * k];
        int slot = m[0] == src ? 0 : m[1] == src ? 1 : m[2] == src ? 2 : -1;
        if (slot < 0 || parts[k].state != INDEX_PART_ACTIVE || (skip && skip[k])) continue;
        int now = proxy_plan_part_level(nodes, m);
        int floor_level = now < 0 ? PROXY_PLAN_LEVEL_NODE : BD_MIN(now, (int)cluster);
        for (unsigned i = 0; i < n; i++) {
            const struct proxy_plan_node *x = &nodes[i];
            /* A drain may fill servers past their slots (a slot is
             * capacity, and a partition rarely holds all of its own): it
             * needs only a server that takes blobs. */
            bool fits = nodes[src].accepts ? has_slot(x, partition_bytes) : x->writable;
            if (!fits || (int)i == m[0] || (int)i == m[1] || (int)i == m[2]) continue;
            int64_t o = over(x, replicas, slots, partition_bytes);
            /* Only while it narrows the gap by more than the replica moved. */
            if (nodes[src].accepts && src_over - o <= (int64_t)slots) continue;
            int nm[3] = {m[0], m[1], m[2]};
            nm[slot] = (int)i;
            if (proxy_plan_part_level(nodes, nm) < floor_level) continue;
            if (!found || o < best || (o == best && parts[k].id < parts[out->part].id)) {
                *out = (struct proxy_plan_move){.part = k, .slot = slot, .dst = (int)i};
                best = o;
                found = true;
            }
        }
    }
    return found;
}

int proxy_plan_rebalance(const struct index_part *parts, unsigned n_parts, const int *members,
                         const bool *skip, const struct proxy_plan_node *nodes, unsigned n,
                         uint64_t partition_bytes, struct proxy_plan_move *out)
{
    uint64_t replicas = 0, slots = 0;
    for (unsigned i = 0; i < n; i++) {
        replicas += nodes[i].load;
        if (nodes[i].accepts) slots += proxy_plan_slots(nodes[i].capacity, partition_bytes);
    }
    if (!replicas || !slots) return -ENOENT;
    enum proxy_plan_level cluster = proxy_plan_separation(nodes, n);
    /* Sources from the most above their share down, draining servers
     * first whatever the others' excess; the first that can give a replica
     * away does.  Selected by repeated scans (no allocation): each scan
     * takes the largest excess below the last source tried. */
    bool drain_phase = true;
    int64_t bound = INT64_MAX;
    int bound_id = -1;
    for (;;) {
        int src = -1;
        int64_t so = 0;
        for (unsigned i = 0; i < n; i++) {
            if (!nodes[i].load || nodes[i].accepts == drain_phase) continue;
            int64_t o = over(&nodes[i], replicas, slots, partition_bytes);
            if (o > bound || (o == bound && (int)i <= bound_id)) continue; /* tried */
            if (src < 0 || o > so) {
                src = (int)i;
                so = o;
            }
        }
        if (src < 0) {
            if (!drain_phase) return -ENOENT;
            drain_phase = false;
            bound = INT64_MAX;
            bound_id = -1;
            continue;
        }
        /* Even a source below its share may give to one further below
         * (domains can bar the servers above it): move_off decides. */
        if (move_off(parts, n_parts, members, skip, nodes, n, partition_bytes, src, replicas,
                     slots, cluster, out))
            return 0;
        bound = so;
        bound_id = src;
    }
}

uint64_t proxy_plan_place_weights(const struct index_part *parts, unsigned n_parts,
                                  const int *members, const struct proxy_plan_node *nodes,
                                  unsigned n, uint64_t *cum)
{
    (void)n;
    uint64_t total = 0;
    for (unsigned k = 0; k < n_parts; k++) {
        const int *m = &members[3 * k];
        bool open = parts[k].state == INDEX_PART_ACTIVE;
        for (int i = 0; i < 3 && open; i++) open = m[i] >= 0 && nodes[m[i]].writable;
        uint64_t w = 0;
        if (open) {
            w = UINT64_MAX;
            for (int i = 0; i < 3; i++) {
                const struct proxy_plan_node *x = &nodes[m[i]];
                uint64_t free_mib = x->capacity > x->used ? (x->capacity - x->used) >> 20 : 0;
                w = BD_MIN(w, free_mib / BD_MAX(x->load, 1u));
            }
            w = BD_MAX(w, 1u); /* open: choosable, however little room is left */
        }
        total += w;
        cum[k] = total;
    }
    return total;
}

int proxy_plan_place(const struct index_part *parts, unsigned n_parts, const uint64_t *cum,
                     uint64_t r, uint32_t avoid)
{
    if (!n_parts || !cum[n_parts - 1]) return -1;
    uint64_t x = r % cum[n_parts - 1];
    unsigned lo = 0, hi = n_parts - 1;
    while (lo < hi) { /* the first k with cum[k] > x */
        unsigned mid = lo + (hi - lo) / 2;
        if (cum[mid] > x) hi = mid;
        else lo = mid + 1;
    }
    for (unsigned step = 0; step < n_parts; step++) {
        unsigned k = (lo + step) % n_parts;
        bool open = cum[k] > (k ? cum[k - 1] : 0);
        if (open && !(avoid && parts[k].id == avoid)) return (int)k;
    }
    return -1;
}

/* ---- reads ---------------------------------------------------------------------- */

int proxy_plan_read_resolve(uint64_t off, uint64_t len, const struct index_piece *pieces,
                            uint32_t n, struct proxy_plan_read_step *steps)
{
    if (len > PROXY_PLAN_READ_MAX_LEN || off > UINT64_MAX - len) return -EIO;
    uint64_t at = off, end = off + len;
    for (uint32_t i = 0; i < n; i++) {
        const struct index_piece *pc = &pieces[i];
        if (pc->off != at || pc->len == 0 || pc->len > end - at) return -EIO;
        struct proxy_plan_read_step *st = &steps[i];
        *st = (struct proxy_plan_read_step){.kind = PROXY_PLAN_READ_ZERO,
                                            .buf_off = (uint32_t)(at - off),
                                            .len = (uint32_t)pc->len};
        if (pc->kind == INDEX_DATA) {
            if ((uint64_t)pc->blob_off + pc->len > pc->blob_len) return -EIO;
            st->kind = PROXY_PLAN_READ_FETCH;
            st->blob_id = pc->blob_id;
            st->partition = pc->partition;
            st->blob_off = pc->blob_off;
        } else if (pc->kind != INDEX_ZERO && pc->kind != INDEX_HOLE) {
            return -EIO;
        }
        at += pc->len;
    }
    return at == end ? 0 : -EIO;
}

uint32_t proxy_plan_map_ranges(const struct index_piece *pieces, uint32_t n,
                               struct wire_map_range *out, uint32_t max)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct index_piece *pc = &pieces[i];
        uint32_t kind = pc->kind == INDEX_DATA   ? WIRE_MAP_DATA
                        : pc->kind == INDEX_ZERO ? WIRE_MAP_ZERO
                                                 : WIRE_MAP_HOLE;
        if (k && out[k - 1].kind == kind && out[k - 1].off + out[k - 1].len == pc->off) {
            out[k - 1].len += pc->len;
            continue;
        }
        if (k == max) break;
        out[k++] = (struct wire_map_range){pc->off, pc->len, kind};
    }
    return k;
}

void proxy_plan_replica_order(const uint64_t nodes[PROXY_PLAN_REPLICAS], uint8_t up_mask,
                              uint64_t out[PROXY_PLAN_REPLICAS])
{
    int k = 0;
    for (int i = 0; i < PROXY_PLAN_REPLICAS; i++)
        if (up_mask & (1u << i)) out[k++] = nodes[i];
    for (int i = 0; i < PROXY_PLAN_REPLICAS; i++)
        if (!(up_mask & (1u << i))) out[k++] = nodes[i];
}
