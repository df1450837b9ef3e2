/* fsx_log.c: the crash-window write log (see fsx_log.h for the format).
 *
 * Writing: each line is formatted into a stack buffer and written with one
 * write(2) on an O_APPEND descriptor, so it reaches the page cache (and is
 * therefore visible after a kill of any process) before the caller sends
 * the request it describes.  fdatasync runs in batches.
 *
 * Replay works in two passes.  Pass one parses every line into an array of
 * ops (in issue order, which is seq order) and computes which were durable:
 * an ack gets an ack number; FI remembers the ack count at the time; FA
 * makes every op with an ack number up to that count durable.  Pass two
 * applies the ops to a model in seq order, a durable op with "reset" (the
 * window becomes exactly its value) and any other op with "extend" (its
 * value joins the window).  Since ops to one block are issued one after
 * another, a durable op makes everything older on its blocks irrelevant. */
#include "fsx_log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fsx_log_open(struct fsx_log *l, const char *path, const struct fsx_log_hdr *h,
                 unsigned sync_every)
{
    memset(l, 0, sizeof *l);
    snprintf(l->path, sizeof l->path, "%s", path);
    l->sync_every = sync_every ? sync_every : 1;
    l->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (l->fd < 0) return -errno;
    int rc = fsx_log_printf(l,
                            "H blockd-fsx-log 1 seed=%" PRIu64 " vol=%" PRIu64 " writer=%" PRIu32
                            " gen=%" PRIu64 " size=%" PRIu64 " init=%s trim=%s range=%" PRIu64
                            ":%" PRIu64,
                            h->me.seed, h->me.vol, h->me.writer, h->me.gen, h->size,
                            h->init_any ? "any" : "zero", h->loose_trim ? "loose" : "strict",
                            h->range_first, h->range_count);
    if (!rc) rc = fsx_log_sync(l);
    if (rc) {
        close(l->fd);
        l->fd = -1;
    }
    return rc;
}

int fsx_log_printf(struct fsx_log *l, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line - 1) return -EOVERFLOW;
    line[n++] = '\n';
    for (int off = 0; off < n;) {
        ssize_t w = write(l->fd, line + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return w < 0 ? -errno : -EIO;
        off += (int)w;
    }
    if (++l->unsynced >= l->sync_every) return fsx_log_sync(l);
    return 0;
}

int fsx_log_sync(struct fsx_log *l)
{
    if (fdatasync(l->fd) < 0) return -errno;
    l->unsynced = 0;
    return 0;
}

int fsx_log_close(struct fsx_log *l)
{
    if (l->fd < 0) return 0;
    int rc = fsx_log_sync(l);
    if (close(l->fd) < 0 && !rc) rc = -errno;
    l->fd = -1;
    return rc;
}

char fsx_log_kind_char(enum fsx_kind kind)
{
    switch (kind) {
    case FSX_WRITE: return 'W';
    case FSX_FUA: return 'F';
    case FSX_ZERO: return 'Z';
    case FSX_TRIM: return 'T';
    default: return '?';
    }
}

static int kind_from_char(char c)
{
    switch (c) {
    case 'W': return FSX_WRITE;
    case 'F': return FSX_FUA;
    case 'Z': return FSX_ZERO;
    case 'T': return FSX_TRIM;
    default: return -1;
    }
}

/* ---- replay ------------------------------------------------------------- */

struct rop {
    uint64_t seq, first, n;
    uint64_t ack_no;       /* 0: never acked */
    uint8_t kind;
};

struct pending_flush {
    uint64_t seq, ack_count;
};

struct replay {
    struct rop *ops;
    size_t n_ops, cap_ops;
    struct pending_flush *fl;
    size_t n_fl, cap_fl;
    uint64_t acks, durable_upto;
};

static struct rop *find_op(struct replay *r, uint64_t seq)
{
    size_t lo = 0, hi = r->n_ops;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->ops[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->n_ops && r->ops[lo].seq == seq ? &r->ops[lo] : NULL;
}

static int grow(void **p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) return 0;
    size_t c = *cap ? *cap * 2 : 1024;
    void *q = realloc(*p, c * size);
    if (!q) return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static int parse_hdr(const char *line, struct fsx_log_hdr *h)
{
    char init[8], trim[8];
    unsigned ver;
    int used = 0;
    memset(h, 0, sizeof *h);
    if (sscanf(line,
               "H blockd-fsx-log %u seed=%" SCNu64 " vol=%" SCNu64 " writer=%" SCNu32
               " gen=%" SCNu64 " size=%" SCNu64 " init=%7s trim=%7s range=%" SCNu64 ":%" SCNu64
               "%n",
               &ver, &h->me.seed, &h->me.vol, &h->me.writer, &h->me.gen, &h->size, init,
               trim, &h->range_first, &h->range_count, &used) != 10 ||
        ver != 1 || line[used])
        return -EINVAL;
    if (strcmp(init, "zero") && strcmp(init, "any")) return -EINVAL;
    if (strcmp(trim, "strict") && strcmp(trim, "loose")) return -EINVAL;
    h->init_any = !strcmp(init, "any");
    h->loose_trim = !strcmp(trim, "loose");
    uint64_t nblocks = h->size / STAMP_BLOCK;
    if (h->size % STAMP_BLOCK || !h->range_count || h->range_first >= nblocks ||
        h->range_count > nblocks - h->range_first)
        return -EINVAL;
    return 0;
}

/* One line (NUL-terminated, no newline).  Returns 0 or -EINVAL/-ENOMEM. */
static int parse_line(struct replay *r, const char *line, uint64_t nblocks,
                      struct fsx_log_stats *st)
{
    uint64_t seq, first, n;
    char kc;
    int e, used = 0;

    if (sscanf(line, "I %" SCNu64 " %c %" SCNu64 " %" SCNu64 "%n", &seq, &kc, &first, &n,
               &used) == 4 &&
        !line[used]) {
        int kind = kind_from_char(kc);
        if (kind < 0 || n == 0 || first >= nblocks || n > nblocks - first) return -EINVAL;
        if (r->n_ops && seq <= r->ops[r->n_ops - 1].seq) return -EINVAL;
        if (grow((void **)&r->ops, &r->cap_ops, r->n_ops, sizeof *r->ops)) return -ENOMEM;
        r->ops[r->n_ops++] = (struct rop){.seq = seq, .first = first, .n = n, .kind = (uint8_t)kind};
        st->ops++;
        return 0;
    }
    if (sscanf(line, "A %" SCNu64 "%n", &seq, &used) == 1 && !line[used]) {
        struct rop *op = find_op(r, seq);
        if (!op || op->ack_no) return -EINVAL;
        op->ack_no = ++r->acks;
        st->acked++;
        return 0;
    }
    if (sscanf(line, "E %" SCNu64 " %d%n", &seq, &e, &used) == 2 && !line[used]) {
        struct rop *op = find_op(r, seq);
        if (!op || op->ack_no) return -EINVAL;
        st->errors++;
        return 0;
    }
    if (sscanf(line, "FI %" SCNu64 "%n", &seq, &used) == 1 && !line[used]) {
        if (grow((void **)&r->fl, &r->cap_fl, r->n_fl, sizeof *r->fl)) return -ENOMEM;
        r->fl[r->n_fl++] = (struct pending_flush){.seq = seq, .ack_count = r->acks};
        return 0;
    }
    if (sscanf(line, "FA %" SCNu64 "%n", &seq, &used) == 1 && !line[used]) {
        for (size_t i = 0; i < r->n_fl; i++) {
            if (r->fl[i].seq != seq) continue;
            if (r->fl[i].ack_count > r->durable_upto) r->durable_upto = r->fl[i].ack_count;
            r->fl[i] = r->fl[--r->n_fl];
            st->flushes++;
            return 0;
        }
        return -EINVAL;
    }
    return -EINVAL;
}

int fsx_log_replay(const char *path, enum fsx_require req, struct fsx_log_hdr *hdr,
                   struct fsx_model *m, struct fsx_log_stats *st, char *err, size_t errlen)
{
    struct replay r = {0};
    int rc = 0;
    char *text = NULL;
    size_t len = 0, cap = 0;

    memset(st, 0, sizeof *st);
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "re");
    if (!f) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return rc;
    }
    for (;;) {
        if (len + 65536 > cap) {
            char *t = realloc(text, cap = cap ? cap * 2 : 1 << 20);
            if (!t) {
                rc = -ENOMEM;
                goto out;
            }
            text = t;
        }
        size_t got = fread(text + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        rc = -EIO;
        snprintf(err, errlen, "%s: read error", path);
        goto out;
    }
    text[len] = '\0';

    uint64_t lineno = 0;
    for (char *p = text; *p;) {
        char *nl = strchr(p, '\n');
        lineno++;
        if (!nl) break; /* the last line was cut short by a kill: ignore it */
        *nl = '\0';
        if (lineno == 1) {
            if (parse_hdr(p, hdr)) {
                rc = -EINVAL;
                snprintf(err, errlen, "%s:1: not a blockd-fsx log header", path);
                goto out;
            }
            rc = fsx_model_init(m, hdr->size / STAMP_BLOCK, hdr->init_any, hdr->loose_trim);
            if (rc) goto out;
        } else if ((rc = parse_line(&r, p, m->nblocks, st))) {
            snprintf(err, errlen, "%s:%" PRIu64 ": %s: %.60s", path, lineno,
                     rc == -ENOMEM ? "out of memory" : "malformed line", p);
            goto out;
        }
        p = nl + 1;
    }
    st->lines = lineno;
    if (!m->b) {
        rc = -EINVAL;
        snprintf(err, errlen, "%s: empty log", path);
        goto out;
    }

    for (size_t i = 0; i < r.n_ops; i++) {
        struct rop *op = &r.ops[i];
        bool durable = op->ack_no &&
                       (req == FSX_REQUIRE_ACKED || op->kind == FSX_FUA || op->ack_no <= r.durable_upto);
        st->durable += durable;
        rc = fsx_model_apply(m, op->first, op->n, op->seq, (enum fsx_kind)op->kind, durable);
        if (rc) goto out;
    }
out:
    if (rc && m->b) fsx_model_fini(m);
    fclose(f);
    free(text);
    free(r.ops);
    free(r.fl);
    return rc;
}
