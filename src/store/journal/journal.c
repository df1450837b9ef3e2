/* journal.c: the agent's write-back journal (see journal.h for the contract).
 *
 * Files: DIR/<segment number, 16 hex digits>.seg, each a segment header
 * (two copies) then entries, each a header, its data and a trailer; the
 * layouts are in journal_int.h, encoded and decoded below through bytes.h
 * cursors.
 *
 * Why these choices:
 *   - The data checksum is a hash of per-block hashes so that the hot path
 *     hashes the data once and gets both what the journal needs and the
 *     per-block checksums the cache keeps to verify every block it later
 *     serves or ships (C14), one block at a time.
 *   - The trailer repeats the header so that an entry whose header was
 *     damaged can still be found (walking back from the next valid
 *     header), verified, and replayed or at least reported with its exact
 *     range, instead of as "somewhere in the volume".
 *   - The salt seeds the header checksum, so volume data that happens to
 *     contain a journal image (a VM storing a backup of a blockd cache)
 *     can never pass for one of our headers when replay scans for the
 *     next valid entry.
 *   - Sequence numbers are contiguous (a failed append is cut back with
 *     ftruncate and its number reused), so replay can tell garbage (no
 *     number missing: harmless) from lost entries (a number missing:
 *     acknowledged data may be gone).
 *
 * Replay, per segment in order, with `last` the last sequence number
 * accounted for (from the previous entry or the segment header):
 *   - a valid header whose number is above `last`: verify the data; good
 *     -> report it; bad -> report LOST for its range (C14: never replay
 *     garbage).  Data running past the end of the file: in the last
 *     segment a torn tail (cut it: the append never returned, so it was
 *     never acknowledged); elsewhere LOST for its range.
 *   - anything else starts a damaged region [p, q) ending at the next
 *     valid header (or the end of the file).  Walk back from q through
 *     trailers, each naming its entry's start: recovered entries are
 *     verified and reported.  A region at the end of the last segment in
 *     which no trailer is found is a torn tail and is cut.
 *   - whenever the next reported number is not last + 1, the entries in
 *     between are gone and their ranges unknown: report LOST over the
 *     whole volume at the first missing number, so that only blocks
 *     rewritten after it stay readable.  The LOST record references the
 *     segment where the loss was seen, so that segment outlives the mark
 *     until the owner copies the mark forward.
 * The scan itself lives in journal_replay.c.
 *
 * Rejected: stopping at the first bad entry (drops acknowledged entries
 * that follow it: CONTRACT.md §3 forbids it), and fsyncing every append
 * (C4 asks for process-crash safety only; journal_sync() is there for the
 * flush path). */
#include "store/journal/journal.h"
#include "base/bd.h"
#include "base/bytes.h"
#include "runtime/log.h"
#include "runtime/taskq.h"
#include "base/util.h"
#include "store/fileio.h"
#include "store/journal/journal_int.h"

#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

/* ---- encoding ------------------------------------------------------------ */

uint64_t journal_csums_hash(const uint64_t *c, size_t n)
{
    /* The array as bytes, 64 checksums at a time: the same hash as one
     * pass over the whole array, on any host's byte order. */
    uint8_t buf[64 * 8];
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    for (size_t i = 0; i < n;) {
        struct bytes_w w;
        bw_init(&w, buf, sizeof(buf));
        for (size_t k = 0; k < 64 && i < n; k++, i++)
            bw_u64(&w, c[i]);
        XXH3_64bits_update(&st, buf, w.used);
    }
    return XXH3_64bits_digest(&st);
}

void journal_ent_encode(uint8_t *out, uint32_t magic, uint64_t salt, const struct journal_ent *e)
{
    struct bytes_w w;
    bw_init(&w, out, JOURNAL_ENT_HDR);
    bw_u32(&w, magic);
    bw_u16(&w, (uint16_t)e->kind);
    bw_zeros(&w, 2); /* flags */
    bw_u64(&w, e->seq);
    bw_u64(&w, e->vol_id);
    bw_u64(&w, e->off);
    bw_u64(&w, e->len);
    bw_u32(&w, e->data_len);
    bw_zeros(&w, 4);
    bw_u64(&w, e->data_csum);
    bw_u64(&w, XXH3_64bits_withSeed(out, w.used, salt)); /* hdr_csum */
    assert(!w.err && w.used == JOURNAL_ENT_HDR);
}

bool journal_ent_decode(const uint8_t *in, uint32_t magic, uint64_t salt, uint64_t vol_id,
                        struct journal_ent *e)
{
    struct bytes_r r;
    struct journal_ent d;
    br_init(&r, in, JOURNAL_ENT_HDR);
    uint32_t m = br_u32(&r);
    d.kind = br_u16(&r);
    br_zeros(&r, 2); /* flags */
    d.seq = br_u64(&r);
    d.vol_id = br_u64(&r);
    d.off = br_u64(&r);
    d.len = br_u64(&r);
    d.data_len = br_u32(&r);
    br_zeros(&r, 4);
    d.data_csum = br_u64(&r);
    uint64_t want = XXH3_64bits_withSeed(in, r.used, salt);
    uint64_t csum = br_u64(&r);
    if (m != magic || csum != want) br_fail(&r);
    if (d.kind < JOURNAL_WRITE || d.kind > JOURNAL_KIND_MAX || d.vol_id != vol_id || d.seq == 0)
        br_fail(&r);
    if (d.len == 0 || d.off % JOURNAL_BLOCK || d.len % JOURNAL_BLOCK ||
        d.off > (1ull << 63) - d.len)
        br_fail(&r);
    if (d.kind == JOURNAL_WRITE ? d.data_len != d.len : (d.data_len || d.data_csum)) br_fail(&r);
    if (r.err) return false;
    *e = d;
    return true;
}

void journal_seghdr_encode(uint8_t *out, const struct journal_seghdr *h)
{
    size_t nl = strnlen(h->name, JOURNAL_NAME_MAX);
    struct bytes_w w;
    bw_init(&w, out, JOURNAL_SEG_HDR);
    bw_u32(&w, JOURNAL_SEG_MAGIC);
    bw_u16(&w, JOURNAL_SEG_VERSION);
    bw_u16(&w, JOURNAL_SEG_COPY);
    bw_u64(&w, h->vol_id);
    bw_u64(&w, h->no);
    bw_u64(&w, h->first_seq);
    bw_u64(&w, h->salt);
    bw_u32(&w, JOURNAL_BLOCK);
    bw_u16(&w, (uint16_t)nl);
    bw_mem(&w, h->name, nl);
    bw_zeros(&w, JOURNAL_SEG_NAME_FIELD - nl);
    bw_zeros(&w, 202);
    bw_u64(&w, XXH3_64bits(out, w.used)); /* hdr_csum */
    bw_mem(&w, out, JOURNAL_SEG_COPY);    /* the second copy */
    assert(!w.err && w.used == JOURNAL_SEG_HDR);
}

/* One copy of a segment header (JOURNAL_SEG_COPY bytes at IN). */
static bool seghdr_decode_copy(const uint8_t *in, struct journal_seghdr *h)
{
    struct bytes_r r;
    struct journal_seghdr d;
    br_init(&r, in, JOURNAL_SEG_COPY);
    uint32_t magic = br_u32(&r);
    uint16_t version = br_u16(&r);
    uint16_t copy_len = br_u16(&r);
    d.vol_id = br_u64(&r);
    d.no = br_u64(&r);
    d.first_seq = br_u64(&r);
    d.salt = br_u64(&r);
    uint32_t block = br_u32(&r);
    uint16_t nl = br_u16(&r);
    if (nl == 0 || nl > JOURNAL_NAME_MAX) {
        br_fail(&r);
        nl = 0;
    }
    br_mem(&r, d.name, nl);
    d.name[nl] = 0;
    br_zeros(&r, JOURNAL_SEG_NAME_FIELD - nl);
    br_zeros(&r, 202);
    uint64_t want = XXH3_64bits(in, r.used);
    uint64_t csum = br_u64(&r);
    if (magic != JOURNAL_SEG_MAGIC || version != JOURNAL_SEG_VERSION ||
        copy_len != JOURNAL_SEG_COPY || block != JOURNAL_BLOCK || csum != want)
        br_fail(&r);
    if (memchr(d.name, 0, nl) || d.vol_id == 0 || d.first_seq == 0) br_fail(&r);
    if (r.err) return false;
    *h = d;
    return true;
}

bool journal_seghdr_decode(const uint8_t *in, struct journal_seghdr *h)
{
    return seghdr_decode_copy(in, h) || seghdr_decode_copy(in + JOURNAL_SEG_COPY, h);
}

/* ---- segments ------------------------------------------------------------ */

static void seg_path(const struct journal *j, uint64_t no, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%016llx.seg", j->dir, (unsigned long long)no);
}

static struct journal_seg *seg_find(const struct journal *j, uint64_t no)
{
    unsigned lo = 0, hi = j->nsegs;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (j->segs[mid].no < no) lo = mid + 1;
        else hi = mid;
    }
    return lo < j->nsegs && j->segs[lo].no == no ? &j->segs[lo] : NULL;
}

static int seg_push(struct journal *j, const struct journal_seg *s)
{
    if (j->nsegs == j->segcap) {
        unsigned n = j->segcap ? j->segcap * 2 : 8;
        struct journal_seg *a = realloc(j->segs, n * sizeof(*a));
        if (!a) return -ENOMEM;
        j->segs = a;
        j->segcap = n;
    }
    j->segs[j->nsegs++] = *s;
    return 0;
}

/* Create segment NO whose first entry will be FIRST_SEQ; it becomes the
 * one appends go to. */
static int seg_create(struct journal *j, uint64_t no, uint64_t first_seq)
{
    char path[1100];
    uint8_t hdr[JOURNAL_SEG_HDR];
    seg_path(j, no, path, sizeof(path));
    if (j->nsegs == j->segcap) {
        struct journal_seg dummy = {0};
        if (seg_push(j, &dummy) < 0) return -ENOMEM; /* reserve room first */
        j->nsegs--;
    }
    int fd = j->fio->ops->open(j->fio, path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return fd;
    struct journal_seghdr h = {.vol_id = j->vol_id, .no = no, .first_seq = first_seq,
                               .salt = j->salt};
    util_strlcpy(h.name, j->name, sizeof(h.name));
    journal_seghdr_encode(hdr, &h);
    int rc = fileio_pwrite_full(j->fio, fd, hdr, sizeof(hdr), 0);
    if (rc < 0) {
        j->fio->ops->close(j->fio, fd);
        j->fio->ops->unlink(j->fio, path);
        return rc;
    }
    struct journal_seg s = {.no = no, .fd = fd, .size = JOURNAL_SEG_HDR, .first_seq = first_seq,
                            .dirty = true};
    seg_push(j, &s); /* room reserved above */
    j->used += JOURNAL_SEG_HDR;
    j->dir_dirty = true;
    j->appends++;
    j->roll = false;
    return 0;
}

static void journal_free_mem(struct journal *j)
{
    free(j->segs);
    free(j->sj.fds);
    free(j);
}

static struct journal *journal_alloc(const struct journal_opts *o)
{
    struct journal *j = calloc(1, sizeof(*j));
    if (!j) return NULL;
    j->fio = o->fio;
    j->syncq = o->syncq;
    util_strlcpy(j->dir, o->dir, sizeof(j->dir));
    util_strlcpy(j->tag, o->tag ? o->tag : "journal", sizeof(j->tag));
    j->vol_id = o->vol_id;
    j->cap = o->cap_bytes;
    j->seg_bytes = o->seg_bytes;
    j->wtail = &j->waiters;
    j->next_seq = 1;
    return j;
}

uint64_t journal_max_write(uint64_t seg_bytes)
{
    if (seg_bytes < JOURNAL_SEG_HDR + JOURNAL_ENT_OVERHEAD + JOURNAL_BLOCK) return 0;
    uint64_t n = seg_bytes - JOURNAL_SEG_HDR - JOURNAL_ENT_OVERHEAD;
    return n - n % JOURNAL_BLOCK;
}

static bool opts_valid(const struct journal_opts *o)
{
    return o->fio && o->dir && o->seg_bytes && journal_max_write(o->seg_bytes) &&
           o->cap_bytes >= 2 * o->seg_bytes;
}

int journal_create(const struct journal_opts *o, struct journal **out)
{
    if (!opts_valid(o) || !o->vol_id || !o->name || !*o->name ||
        strlen(o->name) > JOURNAL_NAME_MAX)
        return -EINVAL;
    int rc = util_mkdir_p(o->dir, 0700);
    if (rc < 0) return rc;
    struct journal *j = journal_alloc(o);
    if (!j) return -ENOMEM;
    util_strlcpy(j->name, o->name, sizeof(j->name));
    j->salt = util_seed();
    char path[1100];
    seg_path(j, 1, path, sizeof(path));
    struct stat st;
    if (stat(path, &st) == 0) {
        journal_free_mem(j);
        return -EEXIST;
    }
    rc = seg_create(j, 1, 1);
    if (rc < 0) {
        journal_free_mem(j);
        return rc;
    }
    j->replayed = true;
    *out = j;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The segment numbers in DIR, ascending, returned owned. */
static int list_segments(const char *dir, uint64_t **out, unsigned *n)
{
    DIR *d = opendir(dir);
    if (!d) return -errno;
    uint64_t *a = NULL;
    unsigned cnt = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        const char *s = e->d_name;
        if (strlen(s) != 20 || strcmp(s + 16, ".seg") != 0) continue;
        uint64_t no = 0;
        bool ok = true;
        for (int i = 0; i < 16; i++) {
            char c = s[i];
            int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (v < 0) ok = false;
            no = no << 4 | (uint64_t)(v & 15);
        }
        if (!ok || no == 0) continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *b = realloc(a, cap * sizeof(*b));
            if (!b) {
                rc = -ENOMEM;
                break;
            }
            a = b;
        }
        a[cnt++] = no;
    }
    closedir(d);
    if (rc < 0) {
        free(a);
        return rc;
    }
    if (cnt) qsort(a, cnt, sizeof(*a), cmp_u64);
    *out = a;
    *n = cnt;
    return 0;
}

int journal_open(const struct journal_opts *o, struct journal **out)
{
    if (!opts_valid(o)) return -EINVAL;
    uint64_t *nos = NULL;
    unsigned n = 0;
    int rc = list_segments(o->dir, &nos, &n);
    if (rc < 0) return rc;
    if (n == 0) {
        free(nos);
        return -ENOENT;
    }
    struct journal *j = journal_alloc(o);
    if (!j) {
        free(nos);
        return -ENOMEM;
    }
    bool have_hdr = false;
    for (unsigned i = 0; i < n; i++) {
        char path[1100];
        seg_path(j, nos[i], path, sizeof(path));
        struct journal_seg s = {.no = nos[i]};
        s.fd = j->fio->ops->open(j->fio, path, O_RDWR, 0);
        if (s.fd < 0) {
            rc = s.fd;
            goto err;
        }
        rc = j->fio->ops->size(j->fio, s.fd, &s.size);
        if (rc == 0) rc = seg_push(j, &s);
        if (rc < 0) {
            j->fio->ops->close(j->fio, s.fd);
            goto err;
        }
        j->used += s.size;
        uint8_t hb[JOURNAL_SEG_HDR];
        struct journal_seghdr h;
        if (s.size < JOURNAL_SEG_HDR || fileio_pread_full(j->fio, s.fd, hb, sizeof(hb), 0) < 0 ||
            !journal_seghdr_decode(hb, &h) || h.no != s.no)
            continue;
        if (!have_hdr && (o->vol_id == 0 || h.vol_id == o->vol_id)) {
            have_hdr = true;
            j->vol_id = h.vol_id;
            j->salt = h.salt;
            util_strlcpy(j->name, h.name, sizeof(j->name));
        }
        if (have_hdr && h.vol_id == j->vol_id && h.salt == j->salt)
            j->segs[j->nsegs - 1].first_seq = h.first_seq;
    }
    free(nos);
    nos = NULL;
    if (!have_hdr) {
        rc = -BD_ECORRUPT;
        goto err;
    }
    *out = j;
    return 0;

err:
    free(nos);
    for (unsigned i = 0; i < j->nsegs; i++) j->fio->ops->close(j->fio, j->segs[i].fd);
    journal_free_mem(j);
    return rc;
}

const char *journal_name(const struct journal *j)
{
    return j->name;
}

/* ---- appends, reads, space ----------------------------------------------- */

int journal_append(struct journal *j, int kind, uint64_t off, uint64_t len, const void *data,
                   const uint64_t *csums, bool reserve, struct journal_rec *out)
{
    if (j->failed) return -BD_EFAILED;
    if (!BD_ALWAYS(j->replayed)) return -EINVAL;
    if (kind < JOURNAL_WRITE || kind > JOURNAL_KIND_MAX || len == 0 || off % JOURNAL_BLOCK ||
        len % JOURNAL_BLOCK || off > (1ull << 63) - len || (kind == JOURNAL_WRITE && !data))
        return -EINVAL;
    uint64_t data_len = kind == JOURNAL_WRITE ? len : 0;
    if (data_len > journal_max_write(j->seg_bytes)) return -EMSGSIZE;
    uint64_t total = JOURNAL_ENT_OVERHEAD + data_len;
    struct journal_seg *a = &j->segs[j->nsegs - 1];
    if (j->roll || a->size + total > j->seg_bytes) {
        uint64_t max = j->cap / j->seg_bytes + (reserve ? 1 : 0);
        if (j->nsegs >= max) return -EAGAIN;
        int rc = seg_create(j, a->no + 1, j->next_seq);
        if (rc < 0) return rc;
        a = &j->segs[j->nsegs - 1];
    }
    uint64_t data_csum = data_len ? journal_csums_hash(csums, data_len / JOURNAL_BLOCK) : 0;
    struct journal_ent e = {.kind = kind, .seq = j->next_seq, .vol_id = j->vol_id, .off = off,
                            .len = len, .data_len = (uint32_t)data_len, .data_csum = data_csum};
    uint8_t hdr[JOURNAL_ENT_HDR], trl[JOURNAL_ENT_HDR];
    journal_ent_encode(hdr, JOURNAL_ENT_MAGIC, j->salt, &e);
    journal_ent_encode(trl, JOURNAL_TRL_MAGIC, j->salt, &e);
    struct iovec iov[3] = {{hdr, sizeof(hdr)}, {(void *)data, data_len}, {trl, sizeof(trl)}};
    int rc = fileio_pwritev_full(j->fio, a->fd, iov, 3, a->size);
    if (rc < 0) {
        /* Cut what may have landed, so the number can be reused and no
         * half entry sits between good ones. */
        int trc = j->fio->ops->ftruncate(j->fio, a->fd, a->size);
        if (trc < 0) {
            j->failed = true;
            log_error(j->tag, "journal %s: append failed (%s) and cannot be undone (%s): "
                      "journal failed", j->dir, bd_strerror(rc), bd_strerror(trc));
        }
        return rc;
    }
    out->seq = e.seq;
    out->kind = kind;
    out->off = off;
    out->len = len;
    out->seg = a->no;
    out->data_pos = a->size + JOURNAL_ENT_HDR;
    out->csums = csums;
    a->size += total;
    a->dirty = true;
    j->used += total;
    j->next_seq++;
    j->appends++;
    return 0;
}

int journal_read(struct journal *j, uint64_t seg, uint64_t pos, void *buf, size_t len)
{
    struct journal_seg *s = seg_find(j, seg);
    if (!BD_ALWAYS(s)) return -EINVAL;
    if (pos > s->size || len > s->size - pos) return -EINVAL;
    return fileio_pread_full(j->fio, s->fd, buf, len, pos);
}

void journal_ref(struct journal *j, uint64_t seg, int64_t delta, bool lost)
{
    struct journal_seg *s = seg_find(j, seg);
    if (!BD_ALWAYS(s)) return;
    s->refs += delta;
    if (lost) s->lost_refs += delta;
    BD_ALWAYS(s->refs >= 0 && s->lost_refs >= 0 && s->lost_refs <= s->refs);
}

bool journal_forward_needed(const struct journal *j, uint64_t *seg)
{
    if (j->nsegs < 2) return false;
    const struct journal_seg *s = &j->segs[0];
    if (s->refs == 0 || s->refs != s->lost_refs) return false;
    *seg = s->no;
    return true;
}

unsigned journal_reclaim(struct journal *j)
{
    unsigned n = 0;
    if (j->sync_running) return 0;
    while (j->nsegs > 1 && j->segs[0].refs == 0) {
        struct journal_seg *s = &j->segs[0];
        char path[1100];
        seg_path(j, s->no, path, sizeof(path));
        j->fio->ops->close(j->fio, s->fd);
        int rc = j->fio->ops->unlink(j->fio, path);
        if (rc < 0)
            log_warn(j->tag, "journal %s: unlink segment %llu: %s", j->dir,
                     (unsigned long long)s->no, bd_strerror(rc));
        j->used -= s->size;
        memmove(j->segs, j->segs + 1, (j->nsegs - 1) * sizeof(*j->segs));
        j->nsegs--;
        n++;
    }
    return n;
}

uint64_t journal_used_bytes(const struct journal *j)
{
    return j->used;
}
unsigned journal_segments(const struct journal *j)
{
    return j->nsegs;
}
uint64_t journal_last_seq(const struct journal *j)
{
    return j->next_seq - 1;
}
bool journal_failed(const struct journal *j)
{
    return j->failed;
}

/* ---- sync (group commit) ------------------------------------------------- */

static void sync_run(struct taskq_job *job)
{
    struct journal_sync_job *sj = bd_container_of(job, struct journal_sync_job, job);
    struct fileio *f = sj->j->fio;
    sj->err = 0;
    for (unsigned i = 0; i < sj->nfds && !sj->err; i++) sj->err = f->ops->fdatasync(f, sj->fds[i]);
    if (!sj->err && sj->dir) sj->err = f->ops->fsync_dir(f, sj->j->dir);
}

static void sync_kick(struct journal *j);

static void complete_waiters(struct journal *j, int err)
{
    /* Unlink every finished waiter first and only then call back: a
     * callback may queue a new sync (even reusing its own request), which
     * appends to the list through j->wtail. */
    struct journal_sync_req **pp = &j->waiters, *done = NULL, **dtail = &done;
    while (*pp) {
        struct journal_sync_req *r = *pp;
        if (err || r->target <= j->synced) {
            *pp = r->next;
            r->next = NULL;
            *dtail = r;
            dtail = &r->next;
        } else {
            pp = &r->next;
        }
    }
    j->wtail = pp;
    while (done) {
        struct journal_sync_req *r = done;
        done = r->next;
        r->next = NULL;
        r->cb(r, err);
    }
}

static void sync_done(struct reactor_work *w)
{
    struct journal_sync_job *sj = bd_container_of(w, struct journal_sync_job, job.work);
    struct journal *j = sj->j;
    j->sync_running = false;
    if (sj->err) {
        j->failed = true;
        log_error(j->tag, "journal %s: fdatasync failed: %s; journal failed stop (C15)", j->dir,
                  bd_strerror(sj->err));
        complete_waiters(j, -EIO);
        return;
    }
    j->synced = sj->target;
    complete_waiters(j, 0);
    sync_kick(j);
}

static int sync_collect(struct journal *j, struct journal_sync_job *sj)
{
    if (sj->cap < j->nsegs) {
        int *fds = realloc(sj->fds, j->nsegs * sizeof(*fds));
        if (!fds) return -ENOMEM;
        sj->fds = fds;
        sj->cap = j->nsegs;
    }
    sj->nfds = 0;
    for (unsigned i = 0; i < j->nsegs; i++) {
        if (!j->segs[i].dirty) continue;
        j->segs[i].dirty = false;
        sj->fds[sj->nfds++] = j->segs[i].fd;
    }
    sj->dir = j->dir_dirty;
    j->dir_dirty = false;
    sj->target = j->appends;
    return 0;
}

static void sync_kick(struct journal *j)
{
    if (j->sync_running || !j->waiters) return;
    if (j->failed) {
        complete_waiters(j, -EIO);
        return;
    }
    if (j->synced == j->appends) {
        complete_waiters(j, 0);
        return;
    }
    struct journal_sync_job *sj = &j->sj;
    if (sync_collect(j, sj) < 0) {
        complete_waiters(j, -ENOMEM);
        return;
    }
    sj->j = j;
    sj->job.run = sync_run;
    sj->job.work.done = sync_done;
    j->sync_running = true;
    taskq_submit(j->syncq, &sj->job);
}

void journal_sync(struct journal *j, struct journal_sync_req *r)
{
    r->target = j->appends;
    r->next = NULL;
    *j->wtail = r;
    j->wtail = &r->next;
    if (BD_NEVER(!j->syncq)) {
        complete_waiters(j, -EINVAL);
        return;
    }
    sync_kick(j);
}

int journal_sync_now(struct journal *j)
{
    if (j->failed) return -BD_EFAILED;
    if (BD_NEVER(j->sync_running)) return -EBUSY;
    struct journal_sync_job *sj = &j->sj;
    if (sync_collect(j, sj) < 0) return -ENOMEM;
    sj->j = j;
    sync_run(&sj->job);
    if (sj->err) {
        j->failed = true;
        return -EIO;
    }
    j->synced = sj->target;
    return 0;
}

/* ---- teardown ------------------------------------------------------------ */

void journal_close(struct journal *j)
{
    if (!j) return;
    BD_ALWAYS(!j->sync_running);
    complete_waiters(j, -ECANCELED);
    for (unsigned i = 0; i < j->nsegs; i++) j->fio->ops->close(j->fio, j->segs[i].fd);
    journal_free_mem(j);
}

int journal_destroy(struct journal *j)
{
    int rc = 0;
    BD_ALWAYS(!j->sync_running);
    complete_waiters(j, -ECANCELED);
    for (unsigned i = 0; i < j->nsegs; i++) {
        char path[1100];
        seg_path(j, j->segs[i].no, path, sizeof(path));
        j->fio->ops->close(j->fio, j->segs[i].fd);
        int r = j->fio->ops->unlink(j->fio, path);
        if (r < 0 && !rc) rc = r;
    }
    j->nsegs = 0;
    /* rmdir is not in the fio vtable: an empty directory carries no state a
     * crash test could observe. */
    if (rc == 0 && rmdir(j->dir) < 0) rc = -errno;
    journal_free_mem(j);
    return rc;
}
