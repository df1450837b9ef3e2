/* raftlog_load.c: opening a Raft log directory, loading it for libraft,
 * recovering from a crash, and reading snapshot files (raftlog.h; they
 * are written by raftlog.c).
 *
 * Loading, in order:
 *   1. list the directory; delete leftover *.tmp snapshot files;
 *   2. read the newest snap-* (a bad one is fatal: its entries are gone
 *      from the log) and delete older ones;
 *   3. delete segments older than the snapshot's log_seq (an install
 *      replaced them);
 *   4. read the remaining segments in sequence order.  Each segment's
 *      first_index must continue the log (== next) or override a suffix of
 *      it (start <= first_index < next, a truncation); records must carry
 *      consecutive indexes and valid checksums;
 *   5. a bad record is a torn tail only in the newest segment and only if
 *      no valid record follows it: the file is cut there (ftruncate +
 *      fdatasync) with a warning; anything else fails with -BD_ECORRUPT;
 *   6. reconcile with the snapshot: the log must start at or before
 *      snapshot.index + 1; if it ends before the snapshot, every segment
 *      is covered by it and is deleted; an entry at snapshot.index must
 *      carry the snapshot's term.
 * Each segment is read into one raft_malloc'ed buffer that becomes the
 * `batch` of the entries it holds, so loading copies nothing twice. */
#include "store/raft/raftlog_int.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"
#include "net/raftmsg.h"
#include "store/raft/snapmem.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

/* ---- snapshot files ------------------------------------------------------------- */

/* Read and verify snapshot file NAME.  The data is not read into memory:
 * it is mapped (snapmem.h; libraft's raft_free unmaps it) and hashed
 * through the mapping in SNAP_STEP pieces, each dropped from RSS behind
 * the hash, so verifying and then sending a snapshot of any size costs
 * page cache, not heap. */
#define SNAP_STEP (8u << 20)

int raftlog_load_snapshot(struct raftlog *l, const char *name, struct raft_snapshot **out,
                     uint64_t *log_seq, char *err, size_t errlen)
{
    char path[PATH_MAX];
    raftlog_path(l, name, path, sizeof(path));
    struct fileio *f = l->fio;
    uint8_t *conf = NULL;
    struct raft_buffer data = {NULL, 0};
    struct raft_snapshot *s = NULL;
    int fd = f->ops->open(f, path, O_RDONLY, 0);
    if (fd < 0) {
        snprintf(err, errlen, "open %s: %s", path, bd_strerror(fd));
        return fd;
    }
    uint8_t h[RAFTLOG_FMT_SNAP_LEN], t[RAFTLOG_FMT_SNAP_TRAILER_LEN];
    uint64_t size = 0;
    int rc = f->ops->size(f, fd, &size);
    if (rc == 0) rc = fileio_pread_full(f, fd, h, sizeof(h), 0);
    if (rc < 0) {
        snprintf(err, errlen, "read %s: %s", path, bd_strerror(rc));
        goto out;
    }
    rc = -BD_ECORRUPT;
    struct raftlog_fmt_snap sh;
    int hr = raftlog_fmt_snap_decode(h, &sh);
    uint32_t conf_len = sh.conf_len;
    uint64_t data_len = sh.data_len;
    if (hr < 0 || conf_len > RAFTLOG_FMT_SNAP_CONF_MAX || data_len > size ||
        size != RAFTLOG_FMT_SNAP_LEN + (uint64_t)conf_len + data_len + sizeof(t)) {
        snprintf(err, errlen, "%s: bad snapshot header or size", path);
        goto out;
    }
    conf = malloc(conf_len ? conf_len : 1);
    s = raft_calloc(1, sizeof(*s));
    if (s) s->bufs = raft_malloc(sizeof(*s->bufs));
    if (!conf || !s || !s->bufs) {
        rc = -ENOMEM;
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    int rr = fileio_pread_full(f, fd, conf, conf_len, RAFTLOG_FMT_SNAP_LEN);
    if (rr == 0)
        rr = fileio_pread_full(f, fd, t, sizeof(t), RAFTLOG_FMT_SNAP_LEN + conf_len + data_len);
    if (rr == 0) {
        rr = snapmem_map(fd, RAFTLOG_FMT_SNAP_LEN + conf_len, data_len, &data);
        if (rr < 0) {
            rc = rr;
            snprintf(err, errlen, "map %s: %s", path, bd_strerror(rr));
            goto out;
        }
    }
    if (rr < 0) {
        rc = rr;
        snprintf(err, errlen, "read %s: %s", path, bd_strerror(rr));
        goto out;
    }
    XXH3_state_t xs;
    XXH3_64bits_reset(&xs);
    XXH3_64bits_update(&xs, conf, conf_len);
    for (uint64_t done = 0; done < data_len;) {
        size_t n = (size_t)BD_MIN((uint64_t)SNAP_STEP, data_len - done);
        XXH3_64bits_update(&xs, (uint8_t *)data.base + done, n);
        snapmem_consumed((uint8_t *)data.base + done, n);
        done += n;
    }
    if (raftlog_fmt_snap_trailer_decode(t) != XXH3_64bits_digest(&xs)) {
        snprintf(err, errlen, "%s: snapshot checksum mismatch", path);
        goto out;
    }
    rr = raftmsg_conf_decode(conf, conf_len, &s->configuration);
    if (rr < 0) {
        rc = rr == -ENOMEM ? rr : -BD_ECORRUPT;
        snprintf(err, errlen, "%s: bad configuration", path);
        goto out;
    }
    s->term = sh.term;
    s->index = sh.index;
    s->configuration_index = sh.conf_index;
    *log_seq = sh.log_seq;
    s->bufs[0] = (struct raft_buffer){data.base, (size_t)data_len};
    s->n_bufs = 1;
    *out = s;
    s = NULL;
    data.base = NULL;
    rc = 0;
out:
    if (s) raft_free(s->bufs);
    raft_free(s);
    raft_free(data.base);
    free(conf);
    f->ops->close(f, fd);
    return rc;
}

/* ---- meta records ----------------------------------------------------------------- */

struct meta {
    bool present;  /* the file has bytes */
    bool valid;    /* and they are a valid record: */
    struct raftlog_fmt_meta rec;
};

static int meta_read(struct raftlog *l, int fd, struct meta *m)
{
    memset(m, 0, sizeof(*m));
    uint64_t size = 0;
    int rc = l->fio->ops->size(l->fio, fd, &size);
    if (rc < 0) return rc;
    m->present = size > 0;
    if (size < RAFTLOG_FMT_META_LEN) return 0;
    uint8_t b[RAFTLOG_FMT_META_LEN];
    rc = fileio_pread_full(l->fio, fd, b, sizeof(b), 0);
    if (rc < 0) return rc;
    m->valid = raftlog_fmt_meta_decode(b, &m->rec) == 0;
    return 0;
}

/* ---- directory listing ------------------------------------------------------------ */

struct listing {
    uint64_t *segs;   /* sequence numbers, sorted */
    size_t n_segs;
    uint64_t *snaps;  /* snapshot indexes, sorted */
    size_t n_snaps;
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static bool parse_hex16(const char *s, uint64_t *v)
{
    if (strlen(s) != 16) return false;
    char *end;
    *v = strtoull(s, &end, 16);
    return *end == 0;
}

static int push_u64(uint64_t **arr, size_t *n, uint64_t v)
{
    uint64_t *a = realloc(*arr, (*n + 1) * sizeof(*a));
    if (!a) return -ENOMEM;
    a[(*n)++] = v;
    *arr = a;
    return 0;
}

static int list_dir(struct raftlog *l, struct listing *ls, bool remove_tmp)
{
    memset(ls, 0, sizeof(*ls));
    DIR *d = opendir(l->dir);
    if (!d) return -errno;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        uint64_t v;
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "snap-", 5) == 0 && len > 4 &&
            strcmp(e->d_name + len - 4, ".tmp") == 0) {
            if (remove_tmp) {
                char path[PATH_MAX];
                raftlog_path(l, e->d_name, path, sizeof(path));
                l->fio->ops->unlink(l->fio, path);
            }
        } else if (strncmp(e->d_name, "seg-", 4) == 0 && parse_hex16(e->d_name + 4, &v)) {
            rc = push_u64(&ls->segs, &ls->n_segs, v);
        } else if (strncmp(e->d_name, "snap-", 5) == 0 && parse_hex16(e->d_name + 5, &v)) {
            rc = push_u64(&ls->snaps, &ls->n_snaps, v);
        }
    }
    closedir(d);
    if (ls->n_segs) qsort(ls->segs, ls->n_segs, sizeof(uint64_t), cmp_u64);
    if (ls->n_snaps) qsort(ls->snaps, ls->n_snaps, sizeof(uint64_t), cmp_u64);
    return rc;
}

static void listing_free(struct listing *ls)
{
    free(ls->segs);
    free(ls->snaps);
}

/* ---- open --------------------------------------------------------------------------- */

int raftlog_open(struct reactor *rx, const char *dir, const struct raftlog_opts *opts,
                 struct raftlog **out, char *err, size_t errlen)
{
    *out = NULL;
    struct raftlog *l = calloc(1, sizeof(*l));
    if (!l) return -ENOMEM;
    l->rx = rx;
    l->fio = opts->fio ? opts->fio : &fileio_posix;
    l->segment_bytes = opts->segment_bytes ? opts->segment_bytes : RAFTLOG_SEGMENT_BYTES;
    l->cluster_hash = opts->cluster_hash;
    l->node_id = opts->node_id;
    l->tag = opts->tag ? opts->tag : "raftlog";
    l->meta_fd[0] = l->meta_fd[1] = -1;
    l->cur_fd = -1;
    l->next_seq = 1;
    pthread_mutex_init(&l->snap_lock, NULL);
    int rc;
    if (util_strlcpy(l->dir, dir, sizeof(l->dir)) >= sizeof(l->dir)) {
        rc = -ENAMETOOLONG;
        snprintf(err, errlen, "%s: path too long", dir);
        goto fail;
    }
    rc = util_mkdir_p(dir, 0700);
    if (rc < 0) {
        snprintf(err, errlen, "mkdir %s: %s", dir, bd_strerror(rc));
        goto fail;
    }
    l->wq = taskq_new(rx, "raftlog-w");
    l->sq = taskq_new(rx, "raftlog-s");
    if (!l->wq || !l->sq) {
        rc = -ENOMEM;
        snprintf(err, errlen, "cannot start raft log threads");
        goto fail;
    }
    struct meta m[2];
    bool created = false;
    for (int i = 0; i < 2; i++) {
        char path[PATH_MAX];
        raftlog_path(l, i == 0 ? "meta1" : "meta2", path, sizeof(path));
        int fd = l->fio->ops->open(l->fio, path, O_RDWR, 0);
        if (fd == -ENOENT) {
            fd = l->fio->ops->open(l->fio, path, O_RDWR | O_CREAT, 0600);
            created = true;
        }
        if (fd < 0) {
            rc = fd;
            snprintf(err, errlen, "open %s: %s", path, bd_strerror(fd));
            goto fail;
        }
        l->meta_fd[i] = fd;
        rc = meta_read(l, fd, &m[i]);
        if (rc < 0) {
            snprintf(err, errlen, "read %s: %s", path, bd_strerror(rc));
            goto fail;
        }
    }
    if (created && (rc = l->fio->ops->fsync_dir(l->fio, l->dir)) < 0) {
        snprintf(err, errlen, "fsync %s: %s", l->dir, bd_strerror(rc));
        goto fail;
    }
    struct listing ls;
    rc = list_dir(l, &ls, false);
    if (rc < 0) {
        snprintf(err, errlen, "list %s: %s", l->dir, bd_strerror(rc));
        goto fail;
    }
    l->had_files = ls.n_segs || ls.n_snaps;
    if (ls.n_segs) l->next_seq = ls.segs[ls.n_segs - 1] + 1;
    listing_free(&ls);

    struct raftlog_fmt_meta *best = NULL;
    for (int i = 0; i < 2; i++)
        if (m[i].valid && (!best || m[i].rec.seq > best->seq)) best = &m[i].rec;
    if (!best && (m[0].present || m[1].present)) {
        /* Only the very first meta write can leave no valid record behind
         * (torn), and only before anything else was stored. */
        if ((m[0].present && m[1].present) || l->had_files) {
            rc = -BD_ECORRUPT;
            snprintf(err, errlen, "%s: no valid meta record (term and vote lost)", l->dir);
            goto fail;
        }
        log_warn(l->tag, "%s: ignoring a torn first meta record", l->dir);
    }
    if (best) {
        if ((best->cluster_hash && l->cluster_hash && best->cluster_hash != l->cluster_hash) ||
            (best->node_id && l->node_id && best->node_id != l->node_id)) {
            rc = -BD_ECONFIG;
            snprintf(err, errlen,
                     "%s belongs to another cluster or node (node id was %llu, now %llu)",
                     l->dir, (unsigned long long)best->node_id, (unsigned long long)l->node_id);
            goto fail;
        }
        l->meta_seq = best->seq;
        l->term = best->term;
        l->vote = best->vote;
    }
    *out = l;
    return 0;
fail:
    raftlog_free(l);
    return rc;
}

/* ---- segments ------------------------------------------------------------------------ */

struct lseg {
    uint64_t seq;
    raft_index first;
    uint8_t *buf;       /* the whole file, raft_malloc'ed: the entries' batch */
    uint64_t size;      /* valid bytes (a torn tail is cut off) */
    raft_index last;    /* last live index, first - 1 if none */
    size_t refs;        /* live entries pointing into buf */
};

struct lent {
    raft_term term;
    unsigned short type;
    void *base;
    size_t len;
    size_t seg;
};

/* Is there a record with valid checksums at OFF?  If so *H is its header
 * and *ZERO_OK says whether its reserved field is zero (a record whose
 * checksums hold but whose fields do not is corrupt, not torn). */
static bool rec_valid_at(const uint8_t *b, uint64_t size, uint64_t off,
                         struct raftlog_fmt_rec *h, bool *zero_ok)
{
    if (size - off < RAFTLOG_FMT_REC_LEN) return false;
    int rc = raftlog_fmt_rec_decode(b + off, h);
    if (rc == -BD_ECORRUPT) return false;
    if (h->len > RAFTLOG_MAX_ENTRY || h->len > size - off - RAFTLOG_FMT_REC_LEN) return false;
    *zero_ok = rc == 0;
    return h->data_csum == util_xxh3(b + off + RAFTLOG_FMT_REC_LEN, h->len);
}

static bool valid_rec_after(const uint8_t *b, uint64_t size, uint64_t from)
{
    struct raftlog_fmt_rec h;
    bool zero_ok;
    for (uint64_t off = from; off + RAFTLOG_FMT_REC_LEN <= size; off++)
        if (rec_valid_at(b, size, off, &h, &zero_ok)) return true;
    return false;
}

struct loadctx {
    struct raftlog *l;
    struct lseg *segs;
    size_t n_segs;
    struct lent *ents;
    size_t n_ents, cap_ents;
    bool have_any;
    raft_index start, next;
    char *err;
    size_t errlen;
};

static int read_whole(struct raftlog *l, const char *path, uint8_t **buf, uint64_t *size)
{
    int fd = l->fio->ops->open(l->fio, path, O_RDONLY, 0);
    if (fd < 0) return fd;
    int rc = l->fio->ops->size(l->fio, fd, size);
    if (rc == 0) {
        *buf = raft_malloc(*size ? *size : 1);
        if (!*buf) rc = -ENOMEM;
        else rc = fileio_pread_full(l->fio, fd, *buf, *size, 0);
        if (rc < 0) {
            raft_free(*buf);
            *buf = NULL;
        }
    }
    l->fio->ops->close(l->fio, fd);
    return rc;
}

/* Read segment SEQ into the context.  NEWEST: the last segment, the only
 * one allowed a torn tail or a torn header. */
static int load_segment(struct loadctx *c, uint64_t seq, bool newest)
{
    struct raftlog *l = c->l;
    char name[64], path[PATH_MAX];
    raftlog_seg_name(seq, name, sizeof(name));
    raftlog_path(l, name, path, sizeof(path));
    uint8_t *b = NULL;
    uint64_t size = 0;
    int rc = read_whole(l, path, &b, &size);
    if (rc < 0) {
        snprintf(c->err, c->errlen, "read %s: %s", path, bd_strerror(rc));
        return rc;
    }
    struct raftlog_fmt_seg sh;
    if (size < RAFTLOG_FMT_SEG_LEN || raftlog_fmt_seg_decode(b, &sh) < 0 || sh.seq != seq) {
        bool later = valid_rec_after(b, size, 0);
        raft_free(b);
        if (!newest || later) {
            snprintf(c->err, c->errlen, "%s: bad segment header", path);
            return -BD_ECORRUPT;
        }
        /* A crash while creating it: it never held an acknowledged entry. */
        log_warn(l->tag, "%s: removing a segment whose creation was torn", path);
        rc = l->fio->ops->unlink(l->fio, path);
        if (rc < 0) snprintf(c->err, c->errlen, "unlink %s: %s", path, bd_strerror(rc));
        return rc;
    }
    raft_index first = sh.first;
    if (!c->have_any) {
        c->have_any = true;
        c->start = c->next = first;
    } else if (first > c->next || first < c->start) {
        raft_free(b);
        snprintf(c->err, c->errlen, "%s starts at index %llu but the log holds [%llu, %llu)",
                 path, (unsigned long long)first, (unsigned long long)c->start,
                 (unsigned long long)c->next);
        return -BD_ECORRUPT;
    } else {
        /* A truncation: drop the entries this segment overrides. */
        size_t keep = (size_t)(first - c->start);
        for (size_t i = keep; i < c->n_ents; i++) c->segs[c->ents[i].seg].refs--;
        c->n_ents = keep;
        c->next = first;
        for (size_t i = 0; i < c->n_segs; i++)
            if (c->segs[i].last >= first) c->segs[i].last = first - 1;
    }
    struct lseg *s = &c->segs[c->n_segs];
    *s = (struct lseg){.seq = seq, .first = first, .buf = b, .size = size, .last = first - 1};
    size_t si = c->n_segs++;
    uint64_t off = RAFTLOG_FMT_SEG_LEN;
    while (off < size) {
        struct raftlog_fmt_rec h;
        bool zero_ok;
        if (!rec_valid_at(b, size, off, &h, &zero_ok)) {
            if (valid_rec_after(b, size, off + 1)) {
                snprintf(c->err, c->errlen,
                         "%s: bad record at offset %llu followed by valid records", path,
                         (unsigned long long)off);
                return -BD_ECORRUPT;
            }
            if (!newest) {
                snprintf(c->err, c->errlen, "%s: bad record at offset %llu in a closed segment",
                         path, (unsigned long long)off);
                return -BD_ECORRUPT;
            }
            log_warn(l->tag,
                     "%s: torn tail at offset %llu (%llu bytes, never acknowledged) after "
                     "index %llu: truncating",
                     path, (unsigned long long)off, (unsigned long long)(size - off),
                     (unsigned long long)(c->next - 1));
            atomic_fetch_add(&l->st_torn, size - off);
            s->size = off;
            break;
        }
        if (h.index != c->next || h.term == 0 || !zero_ok ||
            (h.type != RAFT_COMMAND && h.type != RAFT_BARRIER && h.type != RAFT_CHANGE)) {
            snprintf(c->err, c->errlen, "%s: record at offset %llu has index %llu, expected %llu",
                     path, (unsigned long long)off, (unsigned long long)h.index,
                     (unsigned long long)c->next);
            return -BD_ECORRUPT;
        }
        if (c->n_ents == c->cap_ents) {
            size_t cap = c->cap_ents ? c->cap_ents * 2 : 256;
            struct lent *n = realloc(c->ents, cap * sizeof(*n));
            if (!n) return -ENOMEM;
            c->ents = n;
            c->cap_ents = cap;
        }
        c->ents[c->n_ents++] =
            (struct lent){h.term, h.type, b + off + RAFTLOG_FMT_REC_LEN, h.len, si};
        s->refs++;
        s->last = h.index;
        c->next++;
        off += RAFTLOG_FMT_REC_LEN + h.len;
    }
    if (s->size < size) {
        int fd = l->fio->ops->open(l->fio, path, O_WRONLY, 0);
        rc = fd < 0 ? fd : l->fio->ops->ftruncate(l->fio, fd, s->size);
        if (rc == 0) rc = l->fio->ops->fdatasync(l->fio, fd);
        if (fd >= 0) l->fio->ops->close(l->fio, fd);
        if (rc < 0) {
            snprintf(c->err, c->errlen, "truncate %s: %s", path, bd_strerror(rc));
            return rc;
        }
    }
    return 0;
}

static void unlink_seg(struct raftlog *l, uint64_t seq)
{
    char name[64], path[PATH_MAX];
    raftlog_seg_name(seq, name, sizeof(name));
    raftlog_path(l, name, path, sizeof(path));
    l->fio->ops->unlink(l->fio, path);
}

/* ---- load ------------------------------------------------------------------------------ */

int raftlog_load(struct raftlog *l, struct raftlog_state *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (l->cur_fd >= 0) l->fio->ops->close(l->fio, l->cur_fd);
    l->cur_fd = -1;
    l->cur_dirty = false;
    l->n_segs = 0;
    struct listing ls;
    int rc = list_dir(l, &ls, true);
    if (rc < 0) {
        snprintf(err, errlen, "list %s: %s", l->dir, bd_strerror(rc));
        return rc;
    }
    struct loadctx c = {.l = l, .err = err, .errlen = errlen};
    struct raft_snapshot *snap = NULL;
    uint64_t log_seq = 0;
    bool dir_dirty = false;
    if (ls.n_snaps) {
        char name[64];
        raftlog_snap_name(ls.snaps[ls.n_snaps - 1], false, name, sizeof(name));
        rc = raftlog_load_snapshot(l, name, &snap, &log_seq, err, errlen);
        if (rc < 0) goto out;
        for (size_t i = 0; i + 1 < ls.n_snaps; i++) {
            char path[PATH_MAX];
            raftlog_snap_name(ls.snaps[i], false, name, sizeof(name));
            raftlog_path(l, name, path, sizeof(path));
            l->fio->ops->unlink(l->fio, path);
            dir_dirty = true;
        }
    }
    c.segs = calloc(ls.n_segs ? ls.n_segs : 1, sizeof(*c.segs));
    if (!c.segs) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < ls.n_segs; i++) {
        if (ls.segs[i] < log_seq) { /* replaced by an installed snapshot */
            unlink_seg(l, ls.segs[i]);
            dir_dirty = true;
            continue;
        }
        rc = load_segment(&c, ls.segs[i], i + 1 == ls.n_segs);
        if (rc < 0) goto out;
    }
    if (ls.n_segs && ls.segs[ls.n_segs - 1] >= l->next_seq) l->next_seq = ls.segs[ls.n_segs - 1] + 1;
    if (log_seq > l->next_seq) l->next_seq = log_seq;

    /* Reconcile with the snapshot. */
    bool drop_all = false;
    if (snap && c.have_any) {
        if (c.start > snap->index + 1) {
            rc = -BD_ECORRUPT;
            snprintf(err, errlen, "log starts at %llu, after snapshot %llu + 1: entries missing",
                     (unsigned long long)c.start, (unsigned long long)snap->index);
            goto out;
        }
        if (c.next <= snap->index) {
            drop_all = true; /* every entry is covered by the snapshot */
        } else if (c.start <= snap->index && c.n_ents &&
                   c.ents[snap->index - c.start].term != snap->term) {
            rc = -BD_ECORRUPT;
            snprintf(err, errlen, "entry %llu has term %llu but the snapshot says %llu",
                     (unsigned long long)snap->index,
                     (unsigned long long)c.ents[snap->index - c.start].term,
                     (unsigned long long)snap->term);
            goto out;
        }
    } else if (!snap && c.have_any && c.start != 1) {
        rc = -BD_ECORRUPT;
        snprintf(err, errlen, "no snapshot and the log starts at index %llu, not 1",
                 (unsigned long long)c.start);
        goto out;
    }
    if (drop_all) {
        for (size_t i = 0; i < c.n_segs; i++) {
            unlink_seg(l, c.segs[i].seq);
            raft_free(c.segs[i].buf);
        }
        c.n_segs = 0;
        c.n_ents = 0;
        c.have_any = false;
        dir_dirty = true;
    }
    if (dir_dirty && (rc = l->fio->ops->fsync_dir(l->fio, l->dir)) < 0) {
        snprintf(err, errlen, "fsync %s: %s", l->dir, bd_strerror(rc));
        goto out;
    }

    /* The writer's view. */
    for (size_t i = 0; i < c.n_segs; i++) {
        struct raftlog_seg s = {.seq = c.segs[i].seq, .first = c.segs[i].first,
                           .last = c.segs[i].last, .size = c.segs[i].size};
        if ((rc = raftlog_seg_push(l, &s)) < 0) goto out;
    }
    if (c.have_any) {
        l->w_next = c.next;
        char name[64], path[PATH_MAX];
        raftlog_seg_name(l->segs[l->n_segs - 1].seq, name, sizeof(name));
        raftlog_path(l, name, path, sizeof(path));
        l->cur_fd = l->fio->ops->open(l->fio, path, O_WRONLY, 0);
        if (l->cur_fd < 0) {
            rc = l->cur_fd;
            snprintf(err, errlen, "open %s: %s", path, bd_strerror(rc));
            goto out;
        }
    } else {
        l->w_next = snap ? snap->index + 1 : 1;
    }
    pthread_mutex_lock(&l->snap_lock);
    l->have_snap = snap != NULL;
    l->snap_index = snap ? snap->index : 0;
    l->snap_term = snap ? snap->term : 0;
    l->valid_seq = log_seq;
    pthread_mutex_unlock(&l->snap_lock);

    /* Hand the entries over in libraft's terms. */
    if (c.n_ents) {
        out->entries = raft_malloc(c.n_ents * sizeof(*out->entries));
        if (!out->entries) {
            rc = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < c.n_ents; i++) {
            struct lent *e = &c.ents[i];
            out->entries[i] = (struct raft_entry){.term = e->term, .type = e->type,
                                                  .buf = {e->base, e->len},
                                                  .batch = c.segs[e->seg].buf};
        }
    }
    for (size_t i = 0; i < c.n_segs; i++)
        if (c.segs[i].refs == 0) raft_free(c.segs[i].buf);
    out->n_entries = c.n_ents;
    out->start_index = c.n_ents ? c.start : l->w_next;
    out->term = l->term;
    out->vote = l->vote;
    out->snapshot = snap;
    snap = NULL;
    c.n_segs = 0;
    l->next_index = l->w_next;
    l->loaded = true;
    rc = 0;
out:
    if (rc < 0 && c.segs) {
        for (size_t i = 0; i < c.n_segs; i++) raft_free(c.segs[i].buf);
        if (l->cur_fd >= 0) l->fio->ops->close(l->fio, l->cur_fd);
        l->cur_fd = -1;
        l->n_segs = 0;
    }
    if (snap) {
        raft_configuration_close(&snap->configuration);
        raft_free(snap->bufs[0].base);
        raft_free(snap->bufs);
        raft_free(snap);
    }
    free(c.segs);
    free(c.ents);
    listing_free(&ls);
    return rc;
}
