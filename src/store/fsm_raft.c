/* fsm_raft.c: the struct raft_fsm adapter over fsm_apply / index_dump /
 * index_load (contract and the index-of-the-entry argument in fsm.h).
 *
 * Snapshot buffers: index_dump streams 64 KiB pieces; they are gathered
 * into raft_malloc'd chunks that double from 64 KiB up to 4 MiB, so a small
 * index costs one small buffer and a large one never needs a single
 * gigantic allocation or a realloc copy (raft writes the buffers out in
 * order; chunking on the wire is the transport's job).  Raft frees them
 * (fsm version 1: raft owns snapshot buffers). */
#include "fsm.h"
#include "index_int.h"
#include "../bd.h"

#include <stdio.h>
#include <string.h>

#define CHUNK_MIN (64u << 10)
#define CHUNK_MAX (4u << 20)

struct snap_bufs {
    struct raft_buffer *bufs;  /* raft_malloc'd array */
    unsigned n, cap;
    size_t last_used;          /* bytes used in bufs[n-1] */
    size_t last_cap;
};

static int snap_emit(void *arg, const void *p, size_t len)
{
    struct snap_bufs *s = arg;
    const uint8_t *src = p;
    while (len) {
        if (s->n == 0 || s->last_used == s->last_cap) {
            if (s->n == s->cap) {
                unsigned cap = s->cap ? s->cap * 2 : 8;
                struct raft_buffer *nb = raft_realloc(s->bufs, cap * sizeof(*nb));
                if (!nb) return -ENOMEM;
                s->bufs = nb;
                s->cap = cap;
            }
            size_t sz = s->n ? BD_MIN(s->last_cap * 2, (size_t)CHUNK_MAX) : CHUNK_MIN;
            void *base = raft_malloc(sz);
            if (!base) return -ENOMEM;
            if (s->n) s->bufs[s->n - 1].len = s->last_used;
            s->bufs[s->n].base = base;
            s->bufs[s->n].len = sz;
            s->n++;
            s->last_used = 0;
            s->last_cap = sz;
        }
        size_t take = BD_MIN(len, s->last_cap - s->last_used);
        memcpy((uint8_t *)s->bufs[s->n - 1].base + s->last_used, src, take);
        s->last_used += take;
        src += take;
        len -= take;
    }
    return 0;
}

static void snap_bufs_free(struct snap_bufs *s)
{
    for (unsigned i = 0; i < s->n; i++) raft_free(s->bufs[i].base);
    raft_free(s->bufs);
}

static int fr_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct fsm_raft *fr = fsm->data;
    *result = NULL;
    if (fr->err) return RAFT_IOERR;
    uint64_t index = fr->raft->last_applied + 1;
    int rc = fsm_apply(fr->ix, index, buf->base, buf->len, &fr->result);
    if (rc) {
        fr->err = rc;
        return RAFT_IOERR;
    }
    *result = &fr->result;
    if (fr->on_applied) fr->on_applied(fr->arg, index, &fr->result);
    return 0;
}

static int fr_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct fsm_raft *fr = fsm->data;
    struct snap_bufs s = {0};
    int rc = index_read_begin(fr->rd);
    if (rc) return rc == -EAGAIN ? RAFT_BUSY : RAFT_IOERR;
    rc = index_dump(fr->rd, snap_emit, &s);
    index_read_end(fr->rd);
    if (rc) {
        snap_bufs_free(&s);
        return rc == -ENOMEM ? RAFT_NOMEM : RAFT_IOERR;
    }
    s.bufs[s.n - 1].len = s.last_used;
    *bufs = s.bufs;
    *n_bufs = s.n;
    return 0;
}

static int fr_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct fsm_raft *fr = fsm->data;
    uint64_t dump_applied, ours, loaded;
    int rc = index_dump_applied(buf->base, buf->len, &dump_applied);
    if (rc) return RAFT_CORRUPT;
    if ((rc = index_read_begin(fr->rd))) return RAFT_IOERR;
    ours = index_applied(fr->rd);
    index_read_end(fr->rd);
    if (ours < dump_applied) {
        rc = index_load(fr->ix, buf->base, buf->len, &loaded);
        if (rc) {
            fr->err = rc;
            return rc == -ENOSPC || rc == -EIO ? RAFT_IOERR : RAFT_CORRUPT;
        }
    }
    raft_free(buf->base);
    return 0;
}

int fsm_raft_init(struct fsm_raft *fr, struct index *ix)
{
    memset(fr, 0, sizeof(*fr));
    fr->ix = ix;
    int rc = index_reader_new(ix, &fr->rd);
    if (rc) return rc;
    fr->fsm.version = 1;
    fr->fsm.data = fr;
    fr->fsm.apply = fr_apply;
    fr->fsm.snapshot = fr_snapshot;
    fr->fsm.restore = fr_restore;
    return 0;
}

void fsm_raft_bind(struct fsm_raft *fr, struct raft *raft)
{
    fr->raft = raft;
}

void fsm_raft_fini(struct fsm_raft *fr)
{
    index_reader_free(fr->rd);
    fr->rd = NULL;
}
