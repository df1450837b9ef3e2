/* journal_replay.c: the replay scan of the agent journal (journal.h;
 * the byte layout and the recovery rules are described at the top of
 * journal.c).
 *
 * One pass over the segments in order through a 4 MiB read window,
 * verifying every data block (per-block XXH3-64, then the hash of hashes
 * against the entry).  Damaged regions are walked back from the next
 * valid header through trailers; missing sequence numbers become a LOST
 * mark over the whole volume.  Only a torn tail in the last segment is
 * ever changed on disk (cut with ftruncate). */
#include "base/bd.h"
#include "base/bytes.h"
#include "runtime/log.h"
#include "base/util.h"
#include "store/fileio.h"
#include "store/journal/journal_int.h"

#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#define WIN_BYTES (4u << 20) /* replay read window */

/* ---- replay -------------------------------------------------------------- */

/* A read window over one segment file. */
struct win {
    struct fileio *fio;
    int fd;
    uint64_t fsize;
    uint8_t *buf;
    uint64_t base;
    size_t len;
    int err;
};

/* Bytes [POS, POS+N) of the file, or NULL if past its end or unreadable
 * (w->err then says which).  BACK places the window to end at POS+N, for
 * walking backwards.  Valid until the next call. */
static const uint8_t *win_get(struct win *w, uint64_t pos, size_t n, bool back)
{
    if (n > WIN_BYTES || pos > w->fsize || n > w->fsize - pos) return NULL;
    if (pos >= w->base && pos + n <= w->base + w->len) return w->buf + (pos - w->base);
    /* Page-aligned reads, so the kernel never splits a page between two. */
    uint64_t base = pos & ~(uint64_t)(JOURNAL_BLOCK - 1);
    if (back) base = pos + n > WIN_BYTES ? (pos + n - WIN_BYTES + JOURNAL_BLOCK - 1) &
                                               ~(uint64_t)(JOURNAL_BLOCK - 1)
                                         : 0;
    if (base > pos || pos + n > base + WIN_BYTES) base = pos; /* cannot happen for n <= 4 KiB */
    size_t want = (size_t)BD_MIN((uint64_t)WIN_BYTES, w->fsize - base);
    int rc = fileio_pread_full(w->fio, w->fd, w->buf, want, base);
    if (rc < 0) {
        w->err = rc;
        w->len = 0;
        return NULL;
    }
    w->base = base;
    w->len = want;
    return w->buf + (pos - base);
}

struct item {              /* an entry found by walking back through trailers */
    struct journal_ent e;
    uint64_t start;        /* file offset of its (damaged) header */
    bool good;             /* data verified */
};

struct scan {
    struct journal *j;
    void (*fn)(void *arg, const struct journal_rec *r);
    void *arg;
    struct journal_stats *st;
    struct win w;
    bool have_last;        /* `last` is known */
    uint64_t last;         /* last sequence number accounted for */
    bool unaccounted;      /* damaged bytes seen before anything was accounted */
    uint64_t *csums;       /* per-block scratch */
    size_t csums_cap;
    struct item *items;
    size_t nitems, items_cap;
};

/* Is P (JOURNAL_ENT_HDR bytes) a valid header or trailer (MAGIC) of this
 * journal?  Fills *E if so. */
static bool ent_at(const struct scan *s, const uint8_t *p, uint32_t magic, struct journal_ent *e)
{
    return journal_ent_decode(p, magic, s->j->salt, s->j->vol_id, e);
}

/* Does an entry header start at P (4 bytes)?  Cheaper than decoding one,
 * for the 16-byte steps through a damaged region. */
static bool ent_magic_at(const uint8_t *p)
{
    struct bytes_r r;
    br_init(&r, p, 4);
    return br_u32(&r) == JOURNAL_ENT_MAGIC;
}

/* Hash the DATA_LEN bytes at POS block by block into s->csums and compare
 * the hash of hashes with CSUM.  1 good, 0 bad, -errno on read errors. */
static int verify_data(struct scan *s, uint64_t pos, uint32_t data_len, uint64_t csum)
{
    size_t nb = data_len / JOURNAL_BLOCK;
    if (nb > s->csums_cap) {
        uint64_t *c = realloc(s->csums, nb * sizeof(*c));
        if (!c) return -ENOMEM;
        s->csums = c;
        s->csums_cap = nb;
    }
    for (size_t i = 0; i < nb; i++) {
        const uint8_t *p = win_get(&s->w, pos + i * JOURNAL_BLOCK, JOURNAL_BLOCK, false);
        if (!p) return s->w.err ? s->w.err : 0;
        s->csums[i] = XXH3_64bits(p, JOURNAL_BLOCK);
    }
    return journal_csums_hash(s->csums, nb) == csum;
}

static void report(struct scan *s, const struct journal_rec *r)
{
    s->fn(s->arg, r);
    s->have_last = true;
    s->last = r->seq;
    if (r->seq >= s->j->next_seq) s->j->next_seq = r->seq + 1;
}

static void report_lost_all(struct scan *s, uint64_t seq, uint64_t seg)
{
    struct journal_rec r = {.seq = seq, .kind = JOURNAL_LOST, .off = 0,
                            .len = JOURNAL_LOST_ALL_LEN, .seg = seg};
    log_error(s->j->tag, "journal %s: entries from seq %llu lost, their ranges unknown: "
              "the whole volume is marked lost until rewritten", s->j->dir,
              (unsigned long long)seq);
    s->st->lost_all++;
    report(s, &r);
}

/* Report entry E found in segment SEG, data at DATA_POS; GOOD says its data
 * verified (s->csums then holds the block checksums).  Missing numbers
 * before it become a LOST-everything mark. */
static void emit(struct scan *s, const struct journal_ent *e, uint64_t seg, uint64_t data_pos,
                 bool good)
{
    if (s->have_last && e->seq > s->last + 1) report_lost_all(s, s->last + 1, seg);
    else if (!s->have_last && s->unaccounted && e->seq > 1) report_lost_all(s, e->seq - 1, seg);
    s->unaccounted = false;
    struct journal_rec r = {.seq = e->seq, .kind = e->kind, .off = e->off, .len = e->len,
                            .seg = seg, .data_pos = data_pos, .csums = s->csums};
    if (!good) {
        r.kind = JOURNAL_LOST;
        r.data_pos = 0;
        r.csums = NULL;
        s->st->damaged++;
        log_error(s->j->tag, "journal %s: entry seq %llu [%llu+%llu] damaged: range marked lost",
                  s->j->dir, (unsigned long long)e->seq, (unsigned long long)e->off,
                  (unsigned long long)e->len);
    } else {
        s->st->entries++;
        s->st->data_bytes += e->data_len;
        if (e->kind != JOURNAL_WRITE) r.csums = NULL;
    }
    report(s, &r);
}

/* Find the next valid header at or after FROM whose number exceeds what was
 * accounted for.  Returns its offset, or the file size if none. */
static uint64_t find_next(struct scan *s, uint64_t from, struct journal_ent *e)
{
    uint64_t size = s->w.fsize;
    for (uint64_t pos = from; pos + JOURNAL_ENT_HDR <= size; pos += JOURNAL_ALIGN) {
        const uint8_t *p = win_get(&s->w, pos, JOURNAL_ENT_HDR, false);
        if (!p) break;
        if (!ent_magic_at(p)) continue;
        if (ent_at(s, p, JOURNAL_ENT_MAGIC, e) &&
            (!s->have_last || e->seq > s->last))
            return pos;
    }
    return size;
}

/* Walk back from Q through trailers towards P, collecting entries whose
 * numbers lie between what is accounted for and UPPER.  Returns the lowest
 * offset reached (P if the region is fully explained). */
static int64_t walk_back(struct scan *s, uint64_t p, uint64_t q, uint64_t upper)
{
    s->nitems = 0;
    uint64_t pos = q;
    while (pos >= p + JOURNAL_ENT_OVERHEAD) {
        const uint8_t *t = win_get(&s->w, pos - JOURNAL_ENT_HDR, JOURNAL_ENT_HDR, true);
        struct journal_ent e;
        if (!t || !ent_at(s, t, JOURNAL_TRL_MAGIC, &e)) break;
        if (e.seq >= upper || (s->have_last && e.seq <= s->last)) break;
        uint64_t total = JOURNAL_ENT_OVERHEAD + (uint64_t)e.data_len;
        if (total > pos - p) break;
        uint64_t start = pos - total;
        int good = 1;
        if (e.data_len) {
            good = verify_data(s, start + JOURNAL_ENT_HDR, e.data_len, e.data_csum);
            if (good < 0) return good;
        }
        if (s->nitems == s->items_cap) {
            size_t n = s->items_cap ? s->items_cap * 2 : 16;
            struct item *a = realloc(s->items, n * sizeof(*a));
            if (!a) return -ENOMEM;
            s->items = a;
            s->items_cap = n;
        }
        s->items[s->nitems++] = (struct item){.e = e, .start = start, .good = good == 1};
        upper = e.seq;
        pos = start;
    }
    return (int64_t)pos;
}

static int truncate_tail(struct scan *s, struct journal_seg *seg, uint64_t pos)
{
    int rc = s->j->fio->ops->ftruncate(s->j->fio, seg->fd, pos);
    if (rc < 0) return rc;
    log_info(s->j->tag, "journal %s: cut a torn tail of %llu bytes from segment %llu",
             s->j->dir, (unsigned long long)(seg->size - pos), (unsigned long long)seg->no);
    s->st->torn_bytes += seg->size - pos;
    s->j->used -= seg->size - pos;
    seg->size = pos;
    s->w.fsize = pos;
    return 0;
}

/* Report the entries of a damaged region [P, Q) (Q is a valid header or the
 * end of the file).  *TORN is set if it is a torn tail to cut. */
static int do_region(struct scan *s, struct journal_seg *seg, uint64_t p, uint64_t q,
                     uint64_t upper, bool is_last, bool *torn)
{
    int64_t reach = walk_back(s, p, q, upper);
    if (reach < 0) return (int)reach;
    *torn = false;
    if (is_last && q == s->w.fsize && s->nitems == 0) {
        *torn = true;
        return 0;
    }
    if ((uint64_t)reach > p) {
        s->st->garbage_bytes += (uint64_t)reach - p;
        if (!s->have_last) s->unaccounted = true;
    }
    for (size_t i = s->nitems; i-- > 0;) {
        struct item it = s->items[i];
        bool good = it.good;
        if (good && it.e.data_len) {
            /* The scratch was reused by later items: hash this one again. */
            int rc = verify_data(s, it.start + JOURNAL_ENT_HDR, it.e.data_len, it.e.data_csum);
            if (rc < 0) return rc;
            good = rc == 1;
        }
        if (good) s->st->recovered++;
        emit(s, &it.e, seg->no, it.start + JOURNAL_ENT_HDR, good);
    }
    return 0;
}

static int scan_segment(struct scan *s, struct journal_seg *seg, bool is_last, uint64_t prev_no)
{
    if (seg->first_seq > s->j->next_seq) s->j->next_seq = seg->first_seq;
    if (seg->first_seq) {
        if (s->have_last && seg->first_seq > s->last + 1) {
            /* Numbers between the previous segment and this one are gone. */
            report_lost_all(s, s->last + 1, prev_no ? prev_no : seg->no);
            s->last = seg->first_seq - 1;
        } else if (!s->have_last) {
            s->have_last = true;
            s->last = seg->first_seq - 1;
        }
    }
    s->w.fd = seg->fd;
    s->w.fsize = seg->size;
    s->w.base = 0;
    s->w.len = 0;
    s->w.err = 0;
    uint64_t pos = JOURNAL_SEG_HDR;
    if (seg->size < JOURNAL_SEG_HDR) {
        if (is_last) s->j->roll = true;
        return 0;
    }
    while (pos < seg->size) {
        const uint8_t *p = NULL;
        struct journal_ent e;
        bool valid = false;
        if (pos + JOURNAL_ENT_HDR <= seg->size) {
            p = win_get(&s->w, pos, JOURNAL_ENT_HDR, false);
            if (!p) return s->w.err ? s->w.err : -EIO;
            valid = ent_at(s, p, JOURNAL_ENT_MAGIC, &e) &&
                    (!s->have_last || e.seq > s->last);
        }
        if (valid) {
            uint64_t total = JOURNAL_ENT_OVERHEAD + (uint64_t)e.data_len;
            if (total > seg->size - pos) {
                if (is_last) return truncate_tail(s, seg, pos);
                emit(s, &e, seg->no, 0, false); /* acknowledged, maybe: its range is lost */
                return 0;
            }
            int good = 1;
            if (e.data_len) {
                good = verify_data(s, pos + JOURNAL_ENT_HDR, e.data_len, e.data_csum);
                if (good < 0) return good;
            }
            emit(s, &e, seg->no, pos + JOURNAL_ENT_HDR, good == 1);
            pos += total;
            continue;
        }
        struct journal_ent next;
        uint64_t q = find_next(s, pos + JOURNAL_ALIGN, &next);
        if (s->w.err) return s->w.err;
        bool torn;
        int rc = do_region(s, seg, pos, q, q < seg->size ? next.seq : UINT64_MAX, is_last, &torn);
        if (rc < 0) return rc;
        if (torn) return truncate_tail(s, seg, pos);
        pos = q;
    }
    return 0;
}

int journal_replay(struct journal *j, void (*fn)(void *arg, const struct journal_rec *r),
                   void *arg, struct journal_stats *st)
{
    struct journal_stats dummy;
    if (!st) st = &dummy;
    memset(st, 0, sizeof(*st));
    struct scan s = {.j = j, .fn = fn, .arg = arg, .st = st};
    s.w.fio = j->fio;
    s.w.buf = malloc(WIN_BYTES);
    if (!s.w.buf) return -ENOMEM;
    int rc = 0;
    for (unsigned i = 0; i < j->nsegs && rc == 0; i++) {
        rc = scan_segment(&s, &j->segs[i], i + 1 == j->nsegs, i ? j->segs[i - 1].no : 0);
        st->segments++;
    }
    if (rc == 0) {
        struct journal_seg *last = &j->segs[j->nsegs - 1];
        /* Append to the last segment only if its header is ours. */
        if (!last->first_seq || last->size > j->seg_bytes) j->roll = true;
        j->replayed = true;
    }
    free(s.w.buf);
    free(s.csums);
    free(s.items);
    return rc;
}

