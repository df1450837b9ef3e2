/* raftlog.c: the write side of the Raft log (see raftlog.h for the format
 * choice and fsync counts, raftlog_int.h for the byte layouts, and
 * raftlog_load.c for loading and crash recovery).
 *
 * Group commit.  Ordered operations (append, truncate, install, compaction)
 * wait in a FIFO on the reactor.  When no batch is running, the whole FIFO
 * becomes the next batch and goes to the writer task queue as one job:
 * the job writes every operation in order (appends as one pwritev of
 * record headers and the entries' own buffers, no copy), then issues ONE
 * fdatasync for all of them.  Requests that arrive while it runs wait for
 * the next batch, so under load each flush serves everything that queued
 * behind the previous one, and at queue depth 1 an append costs one write
 * and one flush.
 *
 *   reactor: append -> FIFO --(no batch running)--> batch job on wq
 *   wq:      write ops in order; fdatasync once; statuses
 *   reactor: callbacks in order; next batch if the FIFO is not empty
 *
 * Failure modes: a failed write, fdatasync, truncate or segment creation
 * sets w_failed; every append of that batch that was not yet known durable
 * fails (-BD_EFAILED) and so does every later request (C15: never retried,
 * never acknowledged).  A failed snapshot file write fails only that put:
 * the log itself is untouched.
 *
 * Snapshots: put(trailing > 0) writes the file on the side queue (sq) so
 * appends go on meanwhile, then queues a compaction in the FIFO (rotate to
 * a new segment, delete segments that end before index - trailing + 1).
 * put(trailing == 0) is an install and runs entirely in the FIFO, because
 * it replaces the log that earlier appends wrote to. */
#include "store/raft/raftlog_int.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"
#include "net/raftmsg.h"
#include "store/raft/snapmem.h"

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define IOV_BATCH 1000 /* under IOV_MAX (1024) */

/* ---- names ---------------------------------------------------------------- */

void raftlog_path(const struct raftlog *l, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", l->dir, name);
}
void raftlog_seg_name(uint64_t seq, char *out, size_t len)
{
    snprintf(out, len, "seg-%016llx", (unsigned long long)seq);
}
void raftlog_snap_name(raft_index index, bool tmp, char *out, size_t len)
{
    snprintf(out, len, "snap-%016llx%s", (unsigned long long)index, tmp ? ".tmp" : "");
}

/* ---- meta records ----------------------------------------------------------- */

static int meta_write(struct raftlog *l, raft_term term, raft_id vote)
{
    if (l->failed) return -BD_EFAILED;
    uint64_t seq = l->meta_seq + 1;
    struct raftlog_fmt_meta m = {.seq = seq, .term = term, .vote = vote,
                                 .cluster_hash = l->cluster_hash, .node_id = l->node_id};
    uint8_t b[RAFTLOG_FMT_META_LEN];
    raftlog_fmt_meta_encode(b, &m);
    int fd = l->meta_fd[(seq & 1) ? 0 : 1]; /* odd -> meta1, even -> meta2 */
    int rc = fileio_pwrite_full(l->fio, fd, b, sizeof(b), 0);
    if (rc == 0) {
        rc = l->fio->ops->fdatasync(l->fio, fd);
        atomic_fetch_add(&l->st_meta_fsyncs, 1);
    }
    if (rc < 0) {
        log_error(l->tag, "raft meta write failed: %s; the raft log is failed", bd_strerror(rc));
        l->failed = -BD_EFAILED;
        return rc;
    }
    l->meta_seq = seq;
    l->term = term;
    l->vote = vote;
    return 0;
}

int raftlog_set_term(struct raftlog *l, raft_term term)
{
    return meta_write(l, term, 0);
}

int raftlog_set_vote(struct raftlog *l, raft_id vote)
{
    return meta_write(l, l->term, vote);
}

/* ---- snapshot files ----------------------------------------------------------- */

/* Write a snapshot file (tmp, fdatasync, rename, fsync dir) and make it
 * current, deleting the previous one.  0 or -errno.  Side queue (a put)
 * or writer (an install).  The data is written and hashed in steps of
 * SNAP_STEP bytes, each dropped from RSS once written if it is a mapping
 * (snapmem.h): a snapshot of any size passes through a bounded window. */
#define SNAP_STEP (8u << 20)

static int snapshot_write(struct raftlog *l, const struct raft_snapshot *s, uint64_t log_seq)
{
    struct fileio *f = l->fio;
    char name[64], tmp[PATH_MAX], final[PATH_MAX];
    raftlog_snap_name(s->index, true, name, sizeof(name));
    raftlog_path(l, name, tmp, sizeof(tmp));
    raftlog_snap_name(s->index, false, name, sizeof(name));
    raftlog_path(l, name, final, sizeof(final));
    size_t conf_len = raftmsg_conf_size(&s->configuration);
    if (conf_len == 0 || conf_len > RAFTLOG_FMT_SNAP_CONF_MAX) return -EINVAL;
    uint8_t *conf = malloc(conf_len);
    if (!conf) return -ENOMEM;
    raftmsg_conf_encode(&s->configuration, conf);
    uint64_t data_len = 0;
    for (unsigned i = 0; i < s->n_bufs; i++) data_len += s->bufs[i].len;
    struct raftlog_fmt_snap sh = {.term = s->term, .index = s->index,
                                  .conf_index = s->configuration_index, .log_seq = log_seq,
                                  .conf_len = (uint32_t)conf_len, .data_len = data_len};
    uint8_t h[RAFTLOG_FMT_SNAP_LEN], t[RAFTLOG_FMT_SNAP_TRAILER_LEN];
    raftlog_fmt_snap_encode(h, &sh);
    XXH3_state_t xs;
    XXH3_64bits_reset(&xs);
    XXH3_64bits_update(&xs, conf, conf_len);

    int fd = f->ops->open(f, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int rc = fd < 0 ? fd : 0;
    struct iovec hv[2] = {{h, sizeof(h)}, {conf, conf_len}};
    if (rc == 0) rc = fileio_pwritev_full(f, fd, hv, 2, 0);
    uint64_t off = sizeof(h) + conf_len;
    for (unsigned i = 0; rc == 0 && i < s->n_bufs; i++) {
        const uint8_t *b = s->bufs[i].base;
        for (size_t done = 0; rc == 0 && done < s->bufs[i].len;) {
            size_t n = BD_MIN((size_t)SNAP_STEP, s->bufs[i].len - done);
            rc = fileio_pwrite_full(f, fd, b + done, n, off);
            if (rc == 0) XXH3_64bits_update(&xs, b + done, n);
            snapmem_consumed(b + done, n);
            done += n;
            off += n;
        }
    }
    raftlog_fmt_snap_trailer_encode(t, XXH3_64bits_digest(&xs));
    if (rc == 0) rc = fileio_pwrite_full(f, fd, t, sizeof(t), off);
    if (rc == 0) rc = f->ops->fdatasync(f, fd);
    if (fd >= 0) f->ops->close(f, fd);
    free(conf);
    if (rc == 0) {
        pthread_mutex_lock(&l->snap_lock);
        rc = f->ops->rename(f, tmp, final);
        if (rc == 0) rc = f->ops->fsync_dir(f, l->dir);
        if (rc == 0) {
            if (l->have_snap && l->snap_index != s->index) {
                raftlog_snap_name(l->snap_index, false, name, sizeof(name));
                raftlog_path(l, name, final, sizeof(final));
                f->ops->unlink(f, final); /* a leftover is deleted at the next load */
            }
            l->have_snap = true;
            l->snap_index = s->index;
            l->snap_term = s->term;
        }
        pthread_mutex_unlock(&l->snap_lock);
        atomic_fetch_add(&l->st_snapshots, 1);
    }
    if (rc < 0) f->ops->unlink(f, tmp);
    return rc;
}

/* ---- segments (writer context) ------------------------------------------------ */

int raftlog_seg_push(struct raftlog *l, const struct raftlog_seg *s)
{
    if (l->n_segs == l->cap_segs) {
        size_t cap = l->cap_segs ? l->cap_segs * 2 : 8;
        struct raftlog_seg *n = realloc(l->segs, cap * sizeof(*n));
        if (!n) return -ENOMEM;
        l->segs = n;
        l->cap_segs = cap;
    }
    l->segs[l->n_segs++] = *s;
    return 0;
}

static int w_sync(struct raftlog *l)
{
    if (!l->cur_dirty) return 0;
    int rc = l->fio->ops->fdatasync(l->fio, l->cur_fd);
    atomic_fetch_add(&l->st_fsyncs, 1);
    if (rc == 0) l->cur_dirty = false;
    return rc;
}

int raftlog_seg_create(struct raftlog *l, uint64_t seq, raft_index first)
{
    char name[64], path[PATH_MAX];
    raftlog_seg_name(seq, name, sizeof(name));
    raftlog_path(l, name, path, sizeof(path));
    int fd = l->fio->ops->open(l->fio, path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return fd;
    uint8_t h[RAFTLOG_FMT_SEG_LEN];
    raftlog_fmt_seg_encode(h, &(struct raftlog_fmt_seg){.seq = seq, .first = first});
    int rc = fileio_pwrite_full(l->fio, fd, h, sizeof(h), 0);
    if (rc == 0) rc = l->fio->ops->fdatasync(l->fio, fd);
    if (rc == 0) rc = l->fio->ops->fsync_dir(l->fio, l->dir);
    atomic_fetch_add(&l->st_fsyncs, 2);
    struct raftlog_seg s = {.seq = seq, .first = first, .last = first - 1,
                            .size = RAFTLOG_FMT_SEG_LEN};
    if (rc == 0) rc = raftlog_seg_push(l, &s);
    if (rc < 0) {
        l->fio->ops->close(l->fio, fd);
        return rc;
    }
    if (l->cur_fd >= 0) l->fio->ops->close(l->fio, l->cur_fd);
    l->cur_fd = fd;
    l->cur_dirty = false;
    if (seq >= l->next_seq) l->next_seq = seq + 1;
    return 0;
}

/* Remove segment I from the table and its file from disk (no dir sync). */
static void seg_drop(struct raftlog *l, size_t i)
{
    char name[64], path[PATH_MAX];
    raftlog_seg_name(l->segs[i].seq, name, sizeof(name));
    raftlog_path(l, name, path, sizeof(path));
    int rc = l->fio->ops->unlink(l->fio, path);
    if (rc < 0) log_warn(l->tag, "unlink %s: %s", path, bd_strerror(rc));
    memmove(&l->segs[i], &l->segs[i + 1], (l->n_segs - i - 1) * sizeof(*l->segs));
    l->n_segs--;
}

static int w_append(struct raftlog *l, struct raftlog_req *req)
{
    if (BD_NEVER(req->index != l->w_next)) return -EINVAL;
    struct raftlog_seg *cur = l->n_segs ? &l->segs[l->n_segs - 1] : NULL;
    if (l->cur_fd < 0 || !cur || cur->size >= l->segment_bytes || cur->last + 1 != req->index) {
        int rc = w_sync(l);
        if (rc == 0) rc = raftlog_seg_create(l, l->next_seq, req->index);
        if (rc < 0) return rc;
        cur = &l->segs[l->n_segs - 1];
    }
    unsigned n = req->n;
    uint8_t *hdrs = malloc((size_t)n * RAFTLOG_FMT_REC_LEN);
    struct iovec *iov = malloc(sizeof(*iov) * 2 * (size_t)(n < IOV_BATCH / 2 ? n : IOV_BATCH / 2));
    if (!hdrs || !iov) {
        free(hdrs);
        free(iov);
        return -ENOMEM;
    }
    uint64_t off = cur->size, bytes = 0;
    int rc = 0;
    for (unsigned i = 0; i < n && rc == 0;) {
        int k = 0;
        uint64_t chunk_off = off;
        for (; i < n && k + 2 <= IOV_BATCH; i++) {
            const struct raft_entry *e = &req->entries[i];
            uint8_t *h = hdrs + (size_t)i * RAFTLOG_FMT_REC_LEN;
            struct raftlog_fmt_rec rh = {.type = e->type, .index = req->index + i,
                                         .term = e->term, .len = (uint32_t)e->buf.len,
                                         .data_csum = util_xxh3(e->buf.base, e->buf.len)};
            raftlog_fmt_rec_encode(h, &rh);
            iov[k++] = (struct iovec){h, RAFTLOG_FMT_REC_LEN};
            if (e->buf.len) iov[k++] = (struct iovec){e->buf.base, e->buf.len};
            off += RAFTLOG_FMT_REC_LEN + e->buf.len;
        }
        rc = fileio_pwritev_full(l->fio, l->cur_fd, iov, k, chunk_off);
    }
    free(hdrs);
    free(iov);
    if (rc < 0) return rc;
    bytes = off - cur->size;
    cur->size = off;
    cur->last = req->index + n - 1;
    l->w_next = req->index + n;
    l->cur_dirty = true;
    atomic_fetch_add(&l->st_entries, n);
    atomic_fetch_add(&l->st_bytes, bytes);
    return 0;
}

/* Entries >= INDEX go away: a new segment starting at INDEX overrides
 * them when the log is loaded; segments holding only such entries are
 * deleted now. */
static int w_truncate(struct raftlog *l, raft_index index)
{
    if (index >= l->w_next) return 0;
    int rc = w_sync(l);
    if (rc == 0) rc = raftlog_seg_create(l, l->next_seq, index);
    if (rc < 0) return rc;
    for (size_t i = 0; i + 1 < l->n_segs;) {
        if (l->segs[i].first >= index) {
            seg_drop(l, i);
            continue;
        }
        if (l->segs[i].last >= index) l->segs[i].last = index - 1;
        i++;
    }
    l->w_next = index;
    return 0;
}

/* Install: the snapshot file first (its log_seq marks every older segment
 * stale), then a fresh segment at index + 1, then delete the rest. */
static int w_install(struct raftlog *l, struct raftlog_req *req, bool *fatal)
{
    uint64_t seq = l->next_seq;
    int rc = snapshot_write(l, req->snap, seq);
    if (rc < 0) return rc;
    *fatal = true;
    if (l->cur_fd >= 0) l->fio->ops->close(l->fio, l->cur_fd);
    l->cur_fd = -1;
    l->cur_dirty = false;
    rc = raftlog_seg_create(l, seq, req->snap->index + 1);
    if (rc < 0) return rc;
    while (l->n_segs > 1) seg_drop(l, 0);
    rc = l->fio->ops->fsync_dir(l->fio, l->dir);
    if (rc < 0) return rc;
    pthread_mutex_lock(&l->snap_lock);
    l->valid_seq = seq;
    pthread_mutex_unlock(&l->snap_lock);
    l->w_next = req->snap->index + 1;
    return 0;
}

/* After a snapshot at req->index: rotate, so the entries written so far sit
 * in closed segments, and delete the segments that end before the
 * trailing entries begin. */
static int w_compact(struct raftlog *l, struct raftlog_req *req)
{
    raft_index keep = req->index > req->trailing ? req->index - req->trailing + 1 : 1;
    struct raftlog_seg *cur = l->n_segs ? &l->segs[l->n_segs - 1] : NULL;
    int rc = 0;
    if (cur && cur->last >= cur->first) {
        rc = w_sync(l);
        if (rc == 0) rc = raftlog_seg_create(l, l->next_seq, l->w_next);
        if (rc < 0) return rc;
    }
    bool dropped = false;
    while (l->n_segs > 1 && l->segs[0].last < keep) {
        seg_drop(l, 0);
        dropped = true;
    }
    if (dropped) rc = l->fio->ops->fsync_dir(l->fio, l->dir);
    return rc;
}

/* ---- the batch job ------------------------------------------------------------ */

static void batch_run(struct taskq_job *job)
{
    struct raftlog *l = bd_container_of(job, struct raftlog, batch_job);
    bool pending = false; /* appends written, waiting for the flush */
    for (struct raftlog_req *r = l->batch; r; r = r->next) {
        if (l->w_failed) {
            r->status = -BD_EFAILED;
            continue;
        }
        int rc = 0;
        bool fatal = true;
        switch (r->op) {
        case RAFTLOG_OP_APPEND: rc = w_append(l, r); break;
        case RAFTLOG_OP_TRUNCATE: rc = w_truncate(l, r->index); break;
        case RAFTLOG_OP_INSTALL:
            fatal = false;
            rc = w_install(l, r, &fatal);
            break;
        case RAFTLOG_OP_COMPACT: rc = w_compact(l, r); break;
        default: rc = -EINVAL; break;
        }
        if (rc < 0 && fatal) {
            log_error(l->tag, "raft log write failed (%s): %s; the raft log is failed",
                      r->op == RAFTLOG_OP_APPEND     ? "append"
                      : r->op == RAFTLOG_OP_TRUNCATE ? "truncate"
                                                     : "snapshot",
                      bd_strerror(rc));
            l->w_failed = rc;
            r->status = -BD_EFAILED;
        } else if (rc < 0) {
            r->status = rc;
        } else {
            r->status = r->op == RAFTLOG_OP_APPEND ? 1 : 0;
            pending |= r->op == RAFTLOG_OP_APPEND;
        }
    }
    if (!l->w_failed && l->cur_fd >= 0) {
        int rc = w_sync(l);
        if (rc < 0) {
            log_error(l->tag, "raft log fdatasync failed: %s; the raft log is failed",
                      bd_strerror(rc));
            l->w_failed = rc;
        }
    }
    if (pending || l->w_failed)
        for (struct raftlog_req *r = l->batch; r; r = r->next)
            if (r->status == 1) r->status = l->w_failed ? -BD_EFAILED : 0;
    atomic_fetch_add(&l->st_batches, 1);
}

static void kick(struct raftlog *l);
static void maybe_closed(struct raftlog *l);

static void complete(struct raftlog_req *r, int status)
{
    if (r->op == RAFTLOG_OP_TRUNCATE) {
        free(r); /* internal: nobody waits for a truncate */
        return;
    }
    r->cb(r, status);
}

static void batch_done(struct reactor_work *w)
{
    struct raftlog *l = bd_container_of(w, struct raftlog, batch_job.work);
    struct raftlog_req *list = l->batch;
    l->batch = NULL;
    if (l->w_failed) l->failed = -BD_EFAILED;
    while (list) {
        struct raftlog_req *next = list->next;
        complete(list, list->status);
        list = next;
    }
    kick(l);
    maybe_closed(l);
}

static void kick(struct raftlog *l)
{
    if (l->batch || !l->q_head || l->closing) return;
    l->batch = l->q_head;
    l->q_head = l->q_tail = NULL;
    l->batch_job.run = batch_run;
    l->batch_job.work.done = batch_done;
    taskq_submit(l->wq, &l->batch_job);
}

static void enqueue(struct raftlog *l, struct raftlog_req *r)
{
    r->next = NULL;
    if (l->q_tail) l->q_tail->next = r;
    else l->q_head = r;
    l->q_tail = r;
    kick(l);
}

static int check_usable(struct raftlog *l)
{
    if (l->closing) return -ESHUTDOWN;
    if (l->failed) return -BD_EFAILED;
    if (BD_NEVER(!l->loaded)) return -EINVAL;
    return 0;
}

/* ---- the API --------------------------------------------------------------------- */

int raftlog_append(struct raftlog *l, struct raftlog_req *req, const struct raft_entry *entries,
                   unsigned n, void (*cb)(struct raftlog_req *, int))
{
    int rc = check_usable(l);
    if (rc < 0) return rc;
    req->cb = cb;
    req->op = RAFTLOG_OP_APPEND;
    req->entries = entries;
    req->n = n;
    req->index = l->next_index;
    req->status = 0;
    l->next_index += n;
    enqueue(l, req);
    return 0;
}

int raftlog_truncate(struct raftlog *l, raft_index index)
{
    int rc = check_usable(l);
    if (rc < 0) return rc;
    if (index >= l->next_index) return 0;
    struct raftlog_req *r = calloc(1, sizeof(*r));
    if (!r) return -ENOMEM;
    r->op = RAFTLOG_OP_TRUNCATE;
    r->index = index;
    l->next_index = index;
    enqueue(l, r);
    return 0;
}

static void side_done(struct reactor_work *w);

static void put_run(struct taskq_job *job)
{
    struct raftlog_req *r = bd_container_of(job, struct raftlog_req, job);
    struct raftlog *l = r->owner;
    pthread_mutex_lock(&l->snap_lock);
    uint64_t seq = l->valid_seq;
    pthread_mutex_unlock(&l->snap_lock);
    r->status = snapshot_write(l, r->snap, seq);
    if (r->status < 0)
        log_error(l->tag, "raft snapshot %llu write failed: %s",
                  (unsigned long long)r->snap->index, bd_strerror(r->status));
}

static void get_run(struct taskq_job *job)
{
    struct raftlog_req *r = bd_container_of(job, struct raftlog_req, job);
    struct raftlog *l = r->owner;
    char err[256];
    pthread_mutex_lock(&l->snap_lock);
    if (!l->have_snap) {
        r->status = -ENOENT;
    } else {
        char name[64];
        raftlog_snap_name(l->snap_index, false, name, sizeof(name));
        uint64_t seq;
        r->status = raftlog_load_snapshot(l, name, &r->snapshot, &seq, err, sizeof(err));
        if (r->status < 0) log_error(l->tag, "raft snapshot read failed: %s", err);
    }
    pthread_mutex_unlock(&l->snap_lock);
}

static void side_done(struct reactor_work *w)
{
    struct raftlog_req *r = bd_container_of(w, struct raftlog_req, job.work);
    struct raftlog *l = r->owner;
    l->side_running--;
    if (r->op == RAFTLOG_OP_PUT && r->status == 0 && !l->closing && !l->failed) {
        r->op = RAFTLOG_OP_COMPACT; /* phase 2, ordered with appends */
        enqueue(l, r);
        return;
    }
    int status = r->status;
    if (r->op == RAFTLOG_OP_PUT && status == 0) status = l->closing ? -ECANCELED : -BD_EFAILED;
    r->cb(r, status);
    maybe_closed(l);
}

static void side_submit(struct raftlog *l, struct raftlog_req *r, void (*run)(struct taskq_job *))
{
    r->owner = l;
    r->job.run = run;
    r->job.work.done = side_done;
    l->side_running++;
    taskq_submit(l->sq, &r->job);
}

int raftlog_snapshot_put(struct raftlog *l, struct raftlog_req *req, unsigned trailing,
                         const struct raft_snapshot *snapshot,
                         void (*cb)(struct raftlog_req *, int))
{
    int rc = check_usable(l);
    if (rc < 0) return rc;
    req->cb = cb;
    req->snap = snapshot;
    req->index = snapshot->index;
    req->trailing = trailing;
    req->status = 0;
    if (trailing == 0) {
        req->op = RAFTLOG_OP_INSTALL;
        l->next_index = snapshot->index + 1;
        enqueue(l, req);
    } else {
        req->op = RAFTLOG_OP_PUT;
        side_submit(l, req, put_run);
    }
    return 0;
}

int raftlog_snapshot_get(struct raftlog *l, struct raftlog_req *req,
                         void (*cb)(struct raftlog_req *, int))
{
    int rc = check_usable(l);
    if (rc == -BD_EFAILED) rc = 0; /* reading a snapshot needs no working log */
    if (rc < 0) return rc;
    req->cb = cb;
    req->op = RAFTLOG_OP_GET;
    req->snapshot = NULL;
    req->status = 0;
    side_submit(l, req, get_run);
    return 0;
}

/* ---- bootstrap and recover -------------------------------------------------------- */

/* Write one entry synchronously at the writer's next index (before load). */
static int write_one_sync(struct raftlog *l, raft_term term, const struct raft_configuration *conf)
{
    struct raft_buffer buf;
    if (raft_configuration_encode(conf, &buf) != 0) return -ENOMEM;
    struct raft_entry e = {.term = term, .type = RAFT_CHANGE, .buf = buf};
    struct raftlog_req r = {.op = RAFTLOG_OP_APPEND, .entries = &e, .n = 1, .index = l->w_next};
    int rc = w_append(l, &r);
    if (rc == 0) rc = w_sync(l);
    raft_free(buf.base);
    if (l->cur_fd >= 0) l->fio->ops->close(l->fio, l->cur_fd);
    l->cur_fd = -1;
    l->n_segs = 0;
    return rc;
}

int raftlog_bootstrap(struct raftlog *l, const struct raft_configuration *conf, char *err,
                      size_t errlen)
{
    if (!raftlog_pristine(l)) {
        snprintf(err, errlen, "%s already holds raft state (term %llu)", l->dir,
                 (unsigned long long)l->term);
        return -EEXIST;
    }
    int rc = meta_write(l, 1, 0);
    if (rc == 0) {
        l->w_next = 1;
        rc = write_one_sync(l, 1, conf);
    }
    if (rc < 0) snprintf(err, errlen, "bootstrap %s: %s", l->dir, bd_strerror(rc));
    else l->had_files = true;
    return rc;
}

int raftlog_recover(struct raftlog *l, const struct raft_configuration *conf, char *err,
                    size_t errlen)
{
    struct raftlog_state st;
    int rc = raftlog_load(l, &st, err, errlen);
    if (rc < 0) return rc;
    if (st.snapshot) {
        raft_configuration_close(&st.snapshot->configuration);
        raft_free(st.snapshot->bufs[0].base);
        raft_free(st.snapshot->bufs);
        raft_free(st.snapshot);
    }
    void *last_batch = NULL;
    for (size_t i = 0; i < st.n_entries; i++)
        if (st.entries[i].batch != last_batch) raft_free(last_batch = st.entries[i].batch);
    raft_free(st.entries);
    rc = write_one_sync(l, l->term ? l->term : 1, conf);
    l->loaded = false;
    if (rc < 0) snprintf(err, errlen, "recover %s: %s", l->dir, bd_strerror(rc));
    return rc;
}

/* ---- open, close ------------------------------------------------------------------- */

bool raftlog_pristine(struct raftlog *l)
{
    return !l->had_files && (l->term == 0 || (l->term == 1 && l->vote == 0));
}

raft_index raftlog_next_index(struct raftlog *l)
{
    return l->next_index;
}

void raftlog_get_stats(struct raftlog *l, struct raftlog_stats *o)
{
    o->fsyncs = atomic_load(&l->st_fsyncs);
    o->batches = atomic_load(&l->st_batches);
    o->entries = atomic_load(&l->st_entries);
    o->bytes = atomic_load(&l->st_bytes);
    o->meta_fsyncs = atomic_load(&l->st_meta_fsyncs);
    o->snapshots = atomic_load(&l->st_snapshots);
    o->torn_bytes = atomic_load(&l->st_torn);
}

static void maybe_closed(struct raftlog *l)
{
    if (!l->closing || l->batch || l->side_running || !l->close_done) return;
    void (*fn)(void *) = l->close_done;
    l->close_done = NULL;
    if (reactor_defer(l->rx, fn, l->close_arg) < 0) fn(l->close_arg);
}

void raftlog_close(struct raftlog *l, void (*done)(void *arg), void *arg)
{
    l->closing = true;
    l->close_done = done;
    l->close_arg = arg;
    struct raftlog_req *r = l->q_head;
    l->q_head = l->q_tail = NULL;
    while (r) {
        struct raftlog_req *next = r->next;
        complete(r, -ECANCELED);
        r = next;
    }
    maybe_closed(l);
}

void raftlog_free(struct raftlog *l)
{
    if (!l) return;
    taskq_free(l->wq);
    taskq_free(l->sq);
    if (l->cur_fd >= 0) l->fio->ops->close(l->fio, l->cur_fd);
    for (int i = 0; i < 2; i++)
        if (l->meta_fd[i] >= 0) l->fio->ops->close(l->fio, l->meta_fd[i]);
    pthread_mutex_destroy(&l->snap_lock);
    free(l->segs);
    free(l);
}
