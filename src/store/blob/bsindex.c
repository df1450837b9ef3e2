/* bsindex.c: see bsindex.h.
 *
 * Linear probing over a table of 32-bit entry references, kept at most 70 %
 * full; removal uses backward-shift deletion (Knuth 6.4 Algorithm R), so
 * there are no tombstone slots and lookups never degrade.  Blob ids come
 * from the proxy's allocator and are mostly sequential, so the hash is a
 * multiplicative mix (Fibonacci hashing) rather than the id itself.
 *
 * Freed entries go on a free list threaded through their `off` field and
 * are reused first, so the entry array only grows with the peak count. */
#include "store/blob/bsindex.h"
#include "base/bd.h"

#include <stdlib.h>
#include <string.h>

#define MIN_SLOTS 1024u

static uint32_t slot_of(const struct bsindex *ix, uint64_t id)
{
    uint64_t h = id * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    return (uint32_t)h & (ix->n_slots - 1);
}

int bsindex_init(struct bsindex *ix)
{
    memset(ix, 0, sizeof(*ix));
    ix->n_slots = MIN_SLOTS;
    ix->slots = calloc(ix->n_slots, sizeof(*ix->slots));
    return ix->slots ? 0 : -ENOMEM;
}

void bsindex_fini(struct bsindex *ix)
{
    free(ix->slots);
    free(ix->ents);
    memset(ix, 0, sizeof(*ix));
}

struct bsindex_ent *bsindex_get(struct bsindex *ix, uint64_t id)
{
    uint32_t mask = ix->n_slots - 1;
    for (uint32_t i = slot_of(ix, id);; i = (i + 1) & mask) {
        uint32_t ref = ix->slots[i];
        if (!ref) return NULL;
        if (ix->ents[ref - 1].blob_id == id) return &ix->ents[ref - 1];
    }
}

static void slot_insert(uint32_t *slots, uint32_t n_slots, uint32_t h, uint32_t ref)
{
    uint32_t mask = n_slots - 1;
    uint32_t i = h;
    while (slots[i]) i = (i + 1) & mask;
    slots[i] = ref;
}

static int grow_slots(struct bsindex *ix)
{
    if (ix->n_slots >= (1u << 31)) return -ENOMEM;
    uint32_t n = ix->n_slots * 2;
    uint32_t *s = calloc(n, sizeof(*s));
    if (!s) return -ENOMEM;
    uint32_t old_n = ix->n_slots;
    uint32_t *old = ix->slots;
    ix->slots = s;
    ix->n_slots = n;
    for (uint32_t i = 0; i < old_n; i++)
        if (old[i]) slot_insert(s, n, slot_of(ix, ix->ents[old[i] - 1].blob_id), old[i]);
    free(old);
    return 0;
}

struct bsindex_ent *bsindex_add(struct bsindex *ix, uint64_t id)
{
    if ((uint64_t)(ix->count + 1) * 10 > (uint64_t)ix->n_slots * 7 && grow_slots(ix) < 0)
        return NULL;
    uint32_t e;
    if (ix->free_head) {
        e = ix->free_head - 1;
        ix->free_head = (uint32_t)ix->ents[e].off;
    } else {
        if (ix->n_ents == ix->cap_ents) {
            if (ix->cap_ents >= (1u << 31)) return NULL;
            uint32_t cap = ix->cap_ents ? ix->cap_ents * 2 : 1024;
            struct bsindex_ent *n = realloc(ix->ents, (size_t)cap * sizeof(*n));
            if (!n) return NULL;
            ix->ents = n;
            ix->cap_ents = cap;
        }
        e = ix->n_ents++;
    }
    memset(&ix->ents[e], 0, sizeof(ix->ents[e]));
    ix->ents[e].blob_id = id;
    ix->ents[e].state = BSINDEX_PENDING; /* not FREE; the caller sets the real state */
    slot_insert(ix->slots, ix->n_slots, slot_of(ix, id), e + 1);
    ix->count++;
    return &ix->ents[e];
}

void bsindex_remove(struct bsindex *ix, uint64_t id)
{
    uint32_t mask = ix->n_slots - 1;
    uint32_t i = slot_of(ix, id);
    for (;; i = (i + 1) & mask) {
        if (!ix->slots[i]) return;
        if (ix->ents[ix->slots[i] - 1].blob_id == id) break;
    }
    uint32_t e = ix->slots[i] - 1;
    memset(&ix->ents[e], 0, sizeof(ix->ents[e]));
    ix->ents[e].off = ix->free_head;
    ix->free_head = e + 1;
    ix->count--;
    /* Backward shift: move later members of the probe run into the hole
     * unless their home slot lies cyclically in (hole, j]. */
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & mask; ix->slots[j]; j = (j + 1) & mask) {
        uint32_t home = slot_of(ix, ix->ents[ix->slots[j] - 1].blob_id);
        bool stays = (hole <= j) ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays) continue;
        ix->slots[hole] = ix->slots[j];
        hole = j;
    }
    ix->slots[hole] = 0;
}

struct bsindex_ent *bsindex_next(struct bsindex *ix, uint32_t *pos)
{
    while (*pos < ix->n_ents) {
        struct bsindex_ent *e = &ix->ents[(*pos)++];
        if (e->state != BSINDEX_FREE) return e;
    }
    return NULL;
}
