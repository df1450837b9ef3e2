/* fsx_model.c: per-block windows of allowed values (see fsx_model.h).
 *
 * Invariants, for every block:
 *   1. lo <= hi, and lo == 0 iff hi == 0.
 *   2. hi <= last_seq when last_kind is data, hi < last_seq otherwise.
 *   3. A block is in the dirty list iff its dirty flag is set.
 * The model is sized once; the only allocation after init is the dirty
 * list growing, bounded by nblocks. */
#include "fsx_model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int fsx_model_init(struct fsx_model *m, uint64_t nblocks, bool init_any, bool loose_trim)
{
    memset(m, 0, sizeof *m);
    m->b = calloc(nblocks ? nblocks : 1, sizeof *m->b);
    if (!m->b) return -ENOMEM;
    m->nblocks = nblocks;
    m->loose_trim = loose_trim;
    for (uint64_t i = 0; i < nblocks; i++) {
        m->b[i].zero_ok = 1;
        m->b[i].any_ok = init_any;
    }
    return 0;
}

void fsx_model_fini(struct fsx_model *m)
{
    free(m->b);
    free(m->dirty);
    memset(m, 0, sizeof *m);
}

static int mark_dirty(struct fsx_model *m, uint64_t blk)
{
    if (m->b[blk].dirty) return 0;
    if (m->n_dirty == m->cap_dirty) {
        uint64_t cap = m->cap_dirty ? m->cap_dirty * 2 : 256;
        uint64_t *d = realloc(m->dirty, cap * sizeof *d);
        if (!d) return -ENOMEM;
        m->dirty = d;
        m->cap_dirty = cap;
    }
    m->dirty[m->n_dirty++] = blk;
    m->b[blk].dirty = 1;
    return 0;
}

/* The exact value after the block's newest op. */
static void make_exact(struct fsx_model *m, struct fsx_mblk *b)
{
    switch (b->last_kind) {
    case FSX_WRITE:
    case FSX_FUA:
        b->lo = b->hi = b->last_seq;
        b->zero_ok = 0;
        b->any_ok = 0;
        break;
    case FSX_TRIM:
        /* Loose: old data stays allowed; the window is kept as it is. */
        if (m->loose_trim) {
            b->zero_ok = 1;
            break;
        }
        /* fall through */
    case FSX_ZERO:
        b->lo = b->hi = 0;
        b->zero_ok = 1;
        b->any_ok = 0;
        break;
    default:
        break;
    }
}

int fsx_model_apply(struct fsx_model *m, uint64_t first, uint64_t n, uint64_t seq,
                    enum fsx_kind kind, bool reset)
{
    bool data = kind == FSX_WRITE || kind == FSX_FUA;
    for (uint64_t blk = first; blk < first + n && blk < m->nblocks; blk++) {
        struct fsx_mblk *b = &m->b[blk];
        b->last_seq = seq;
        b->last_kind = (uint8_t)kind;
        if (reset) {
            make_exact(m, b);
            continue;
        }
        if (data) {
            if (!b->lo) b->lo = seq;
            b->hi = seq;
        } else {
            b->zero_ok = 1;
        }
        int rc = mark_dirty(m, blk);
        if (rc) return rc;
    }
    return 0;
}

void fsx_model_settle(struct fsx_model *m)
{
    for (uint64_t i = 0; i < m->n_dirty; i++) {
        struct fsx_mblk *b = &m->b[m->dirty[i]];
        make_exact(m, b);
        b->dirty = 0;
    }
    m->n_dirty = 0;
}

void fsx_model_expect(const struct fsx_model *m, uint64_t block, struct stamp_expect *out)
{
    const struct fsx_mblk *b = &m->b[block];
    out->lo = b->lo;
    out->hi = b->hi;
    out->zero_ok = b->zero_ok;
    out->any_ok = b->any_ok;
    out->last_seq = b->last_seq;
    out->last_is_zero = b->last_kind == FSX_ZERO || b->last_kind == FSX_TRIM;
}

void fsx_model_good(const struct fsx_model *m, uint64_t block, const struct stamp *me,
                    uint8_t *buf)
{
    const struct fsx_mblk *b = &m->b[block];
    if (b->last_kind == FSX_WRITE || b->last_kind == FSX_FUA) {
        struct stamp s = *me;
        s.block = block;
        s.seq = b->last_seq;
        stamp_fill(buf, &s);
    } else {
        memset(buf, 0, STAMP_BLOCK);
    }
}
