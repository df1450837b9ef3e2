/* hist.c: parsing and checking invoke/complete histories (hist.h). */
#include "hist.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- parsing --------------------------------------------------------------- */

static int push(struct hist *h, const struct hist_op *op)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 1024;
        struct hist_op *p = realloc(h->ops, cap * sizeof(*p));
        if (!p) return -1;
        h->ops = p;
        h->cap = cap;
    }
    h->ops[h->n++] = *op;
    return 0;
}

void hist_free(struct hist *h)
{
    free(h->ops);
    h->ops = NULL;
    h->n = h->cap = 0;
}

static int parse_type(const char *s)
{
    if (!strcmp(s, "write")) return HIST_WRITE;
    if (!strcmp(s, "read")) return HIST_READ;
    if (!strcmp(s, "flush")) return HIST_FLUSH;
    return -1;
}

static bool parse_value(const char *s, uint64_t *v)
{
    if (!strcmp(s, "0")) {
        *v = 0;
        return true;
    }
    unsigned long long w, q;
    char tail;
    if (sscanf(s, "%llu:%llu%c", &w, &q, &tail) != 2 || w == 0 || w > 0xffff ||
        q >= (UINT64_C(1) << 48))
        return false;
    *v = hist_value((uint32_t)w, q);
    return true;
}

/* The open op of each client (index into h->ops + 1; 0 none). */
struct open_map {
    size_t *idx;
    uint32_t n;
};

static size_t *open_slot(struct open_map *m, uint32_t client)
{
    if (client >= m->n) {
        uint32_t n = client + 64;
        size_t *p = realloc(m->idx, n * sizeof(*p));
        if (!p) return NULL;
        memset(p + m->n, 0, (n - m->n) * sizeof(*p));
        m->idx = p;
        m->n = n;
    }
    return &m->idx[client];
}

int hist_parse(FILE *f, const char *name, struct hist *h)
{
    char line[512];
    uint32_t lineno = 0;
    bool final = false;
    struct open_map om = {0};
    int rc = -1;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        if (line[0] == '#') {
            if (!strncmp(line, "# final", 7)) final = true;
            continue;
        }
        if (line[0] == '\n' || line[0] == 0) continue;
        long long t;
        unsigned c;
        char ev[16], ty[16], a[64] = "", b[64] = "", x[16] = "";
        int k = sscanf(line, "%lld %u %15s %15s %63s %63s %15s", &t, &c, ev, ty, a, b, x);
        int type = k >= 4 ? parse_type(ty) : -1;
        if (k < 4 || type < 0) {
            fprintf(stderr, "%s:%u: not a history event\n", name, lineno);
            goto out;
        }
        size_t *slot = open_slot(&om, c);
        if (!slot) goto oom;
        uint64_t block = 0;
        if (type != HIST_FLUSH) {
            char *end;
            block = strtoull(a, &end, 10);
            if (!a[0] || *end) {
                fprintf(stderr, "%s:%u: bad block '%s'\n", name, lineno, a);
                goto out;
            }
        }
        if (!strcmp(ev, "invoke")) {
            if (*slot) {
                fprintf(stderr, "%s:%u: client %u invokes with an op still open (line %u)\n", name,
                        lineno, c, h->ops[*slot - 1].line);
                goto out;
            }
            struct hist_op op = {.t0 = t, .t1 = HIST_T_INF, .client = c, .type = (uint8_t)type,
                                 .status = HIST_PENDING, .block = block, .final = final,
                                 .line = lineno};
            if (type == HIST_WRITE) {
                if (!parse_value(b, &op.value) || op.value == 0) {
                    fprintf(stderr, "%s:%u: bad write value '%s'\n", name, lineno, b);
                    goto out;
                }
                op.fua = !strcmp(x, "fua");
            }
            if (push(h, &op)) goto oom;
            *slot = h->n;
            continue;
        }
        int st = !strcmp(ev, "ok") ? HIST_OK : !strcmp(ev, "fail") ? HIST_FAIL
                 : !strcmp(ev, "info") ? HIST_INFO : -1;
        if (st < 0) {
            fprintf(stderr, "%s:%u: unknown event '%s'\n", name, lineno, ev);
            goto out;
        }
        if (!*slot) {
            fprintf(stderr, "%s:%u: client %u completes with nothing open\n", name, lineno, c);
            goto out;
        }
        struct hist_op *op = &h->ops[*slot - 1];
        *slot = 0;
        if (op->type != type || (type != HIST_FLUSH && op->block != block)) {
            fprintf(stderr, "%s:%u: completion does not match its invoke (line %u)\n", name,
                    lineno, op->line);
            goto out;
        }
        if (t < op->t0) {
            fprintf(stderr, "%s:%u: completes before its invoke\n", name, lineno);
            goto out;
        }
        op->status = (uint8_t)st;
        if (st == HIST_OK) op->t1 = t;
        if (st == HIST_OK && type == HIST_READ) {
            if (!strcmp(b, "torn")) op->rkind = HIST_R_TORN;
            else if (!strcmp(b, "garbage")) op->rkind = HIST_R_GARBAGE;
            else if (!strncmp(b, "alien", 5)) {
                op->rkind = HIST_R_ALIEN;
                snprintf(op->alien, sizeof(op->alien), "%.47s", b);
            } else if (!parse_value(b, &op->value)) {
                fprintf(stderr, "%s:%u: bad read value '%s'\n", name, lineno, b);
                goto out;
            }
        }
    }
    /* Ops still open when the history ends are indeterminate. */
    for (uint32_t i = 0; i < om.n; i++)
        if (om.idx[i]) h->ops[om.idx[i] - 1].status = HIST_INFO;
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "%s: out of memory\n", name);
out:
    free(om.idx);
    return rc;
}

/* ---- checking -------------------------------------------------------------- */

struct ctx {
    FILE *out;
    unsigned max_report;
    uint64_t violations;
};

static void fmt_value(uint64_t v, char *buf, size_t len)
{
    if (v == 0) snprintf(buf, len, "0");
    else snprintf(buf, len, "%u:%" PRIu64, (unsigned)(v >> 48), v & ((UINT64_C(1) << 48) - 1));
}

static void fmt_t(int64_t t, char *buf, size_t len)
{
    if (t == HIST_T_INF) snprintf(buf, len, "inf");
    else if (t == HIST_T_NEGINF) snprintf(buf, len, "-inf");
    else snprintf(buf, len, "%" PRId64, t);
}

static void violation(struct ctx *c, uint64_t block, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void violation(struct ctx *c, uint64_t block, const char *kind, const char *fmt, ...)
{
    if (c->violations++ < c->max_report) {
        fprintf(c->out, "VIOLATION block %" PRIu64 " %s: ", block, kind);
        va_list ap;
        va_start(ap, fmt);
        vfprintf(c->out, fmt, ap);
        va_end(ap);
        fputc('\n', c->out);
    }
}

static int cmp_block_value(const void *a, const void *b)
{
    const struct hist_op *x = *(struct hist_op *const *)a, *y = *(struct hist_op *const *)b;
    if (x->block != y->block) return x->block < y->block ? -1 : 1;
    if (x->value != y->value) return x->value < y->value ? -1 : 1;
    /* The write first within a value. */
    if (x->type != y->type) return x->type == HIST_WRITE ? -1 : 1;
    return x->t0 < y->t0 ? -1 : x->t0 > y->t0;
}

struct zone {
    int64_t a, b;      /* [a, b] */
    uint64_t value;
};

static int cmp_zone(const void *a, const void *b)
{
    const struct zone *x = a, *y = b;
    return x->a < y->a ? -1 : x->a > y->a;
}

/* A durable write: invoked at T0, durable from D. */
struct durable {
    int64_t t0, d;
};
static int cmp_durable(const void *a, const void *b)
{
    const struct durable *x = a, *y = b;
    return x->d < y->d ? -1 : x->d > y->d;
}

/* The earliest completion of a successful flush invoked after T, or INF. */
static int64_t durable_at(const int64_t *flush_t0, const int64_t *flush_t1_min, size_t nf, int64_t t)
{
    /* flush_t0 ascending; flush_t1_min[i] = min completion of flushes i.. */
    size_t lo = 0, hi = nf;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (flush_t0[mid] > t) hi = mid;
        else lo = mid + 1;
    }
    return lo < nf ? flush_t1_min[lo] : HIST_T_INF;
}

struct flush_pair {
    int64_t t0, t1;
};
static int cmp_flush(const void *a, const void *b)
{
    const struct flush_pair *x = a, *y = b;
    return x->t0 < y->t0 ? -1 : x->t0 > y->t0;
}

/* Check one block's ops P[0..n) (sorted by value, write first). */
static void check_block(struct ctx *c, struct hist_op **p, size_t n, const int64_t *ft0,
                        const int64_t *ft1, size_t nf)
{
    uint64_t block = p[0]->block;
    struct zone *fw = calloc(n + 1, sizeof(*fw)), *bw = calloc(n + 1, sizeof(*bw));
    struct durable *dur = calloc(n + 1, sizeof(*dur));
    size_t nfw = 0, nbw = 0, nd = 0;
    char vb[32], ta[24], tb[24];
    if (!fw || !bw || !dur) {
        fprintf(c->out, "histcheck: out of memory\n");
        c->violations++;
        goto out;
    }
    /* Durable writes of this block. */
    for (size_t i = 0; i < n; i++) {
        const struct hist_op *w = p[i];
        if (w->type != HIST_WRITE || w->status != HIST_OK) continue;
        int64_t d = w->fua ? w->t1 : durable_at(ft0, ft1, nf, w->t1);
        if (d != HIST_T_INF) dur[nd++] = (struct durable){w->t0, d};
    }
    qsort(dur, nd, sizeof(*dur), cmp_durable);
    /* Running max of the invoke times of durable writes, by durability. */
    for (size_t i = 1; i < nd; i++)
        if (dur[i].t0 < dur[i - 1].t0) dur[i].t0 = dur[i - 1].t0;

    for (size_t i = 0; i < n;) {
        uint64_t v = p[i]->value;
        size_t j = i;
        while (j < n && p[j]->value == v) j++;
        /* Cluster p[i..j): the write (if any) then the reads. */
        const struct hist_op *w = p[i]->type == HIST_WRITE ? p[i] : NULL;
        int64_t w0 = w ? w->t0 : HIST_T_NEGINF, w1 = w ? w->t1 : HIST_T_NEGINF;
        fmt_value(v, vb, sizeof(vb));
        if (v != 0 && !w) {
            violation(c, block, "unissued", "read (line %u) returned %s, never written to this block",
                      p[i]->line, vb);
            i = j;
            continue;
        }
        int64_t f = w1, s = w0;
        bool ok = true;
        for (size_t k = w ? i + 1 : i; k < j; k++) {
            const struct hist_op *r = p[k];
            if (r->type == HIST_WRITE) {
                violation(c, block, "duplicate", "value %s written twice (lines %u, %u)", vb,
                          w ? w->line : 0, r->line);
                ok = false;
                continue;
            }
            if (r->t1 < w0) {
                violation(c, block, "read-before-write",
                          "read (line %u) completed before write %s (line %u) was invoked",
                          r->line, vb, w ? w->line : 0);
                ok = false;
            }
            if (r->t1 < f) f = r->t1;
            if (r->t0 > s) s = r->t0;
            /* lost-flushed: a durable write invoked after this value's write
             * completed, durable before this read began. */
            size_t lo = 0, hi = nd;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (dur[mid].d < r->t0) lo = mid + 1;
                else hi = mid;
            }
            if (lo > 0 && w1 != HIST_T_INF && dur[lo - 1].t0 > w1) {
                fmt_t(dur[lo - 1].t0, ta, sizeof(ta));
                violation(c, block, "lost-flushed",
                          "read (line %u%s) returned %s, older than a write invoked at %s and "
                          "made durable before the read",
                          r->line, r->final ? ", final" : "", vb, ta);
                ok = false;
            }
        }
        if (ok) {
            if (f < s) fw[nfw++] = (struct zone){f, s, v};
            else bw[nbw++] = (struct zone){s, f, v};
        }
        i = j;
    }
    /* Forward zones must be disjoint: sorted by start, neighbours suffice. */
    qsort(fw, nfw, sizeof(*fw), cmp_zone);
    for (size_t i = 1; i < nfw; i++) {
        if (fw[i].a < fw[i - 1].b) {
            char v2[32];
            fmt_value(fw[i - 1].value, vb, sizeof(vb));
            fmt_value(fw[i].value, v2, sizeof(v2));
            fmt_t(fw[i].a, ta, sizeof(ta));
            fmt_t(fw[i - 1].b, tb, sizeof(tb));
            violation(c, block, "not-linearizable",
                      "values %s and %s were each read after the other was in place "
                      "(forward zones overlap: %s < %s)", vb, v2, ta, tb);
            /* Keep the later-ending one for the next comparison. */
            if (fw[i].b < fw[i - 1].b) fw[i] = fw[i - 1];
        }
    }
    /* No backward zone inside a forward zone: the forward zone with the
     * greatest start below the backward zone's start is the only candidate
     * (forward zones are disjoint). */
    for (size_t i = 0; i < nbw; i++) {
        size_t lo = 0, hi = nfw;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (fw[mid].a < bw[i].a) lo = mid + 1;
            else hi = mid;
        }
        if (lo == 0) continue;
        const struct zone *z = &fw[lo - 1];
        if (bw[i].b < z->b) {
            char v2[32];
            fmt_value(z->value, vb, sizeof(vb));
            fmt_value(bw[i].value, v2, sizeof(v2));
            fmt_t(bw[i].a, ta, sizeof(ta));
            fmt_t(bw[i].b, tb, sizeof(tb));
            violation(c, block, "not-linearizable",
                      "value %s was read after write %s [%s, %s] had completed, which no "
                      "read saw: a stale read", vb, v2, ta, tb);
        }
    }
out:
    free(fw);
    free(bw);
    free(dur);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t hist_check(struct hist *h, FILE *out, unsigned max_report, struct hist_result *r)
{
    struct ctx c = {.out = out, .max_report = max_report};
    memset(r, 0, sizeof(*r));
    struct hist_op **p = calloc(h->n + 1, sizeof(*p));
    struct flush_pair *fl = calloc(h->n + 1, sizeof(*fl));
    int64_t *ft0 = calloc(h->n + 1, sizeof(*ft0)), *ft1 = calloc(h->n + 1, sizeof(*ft1));
    int64_t *done = calloc(h->n + 1, sizeof(*done));
    if (!p || !fl || !ft0 || !ft1 || !done) {
        fprintf(out, "histcheck: out of memory\n");
        r->violations = 1;
        goto out;
    }
    size_t np = 0, nf = 0, nd = 0;
    int64_t first = HIST_T_INF, last = HIST_T_NEGINF;
    for (size_t i = 0; i < h->n; i++) {
        struct hist_op *op = &h->ops[i];
        r->ops++;
        if (op->status == HIST_INFO) r->indeterminate++;
        if (op->status == HIST_FAIL && r->failed++ < 5)
            fprintf(out, "note: line %u: client %u's %s%s got an error reply (not a violation: "
                    "its outcome is unknown)\n", op->line, op->client,
                    op->type == HIST_WRITE ? "write" : op->type == HIST_READ ? "read" : "flush",
                    op->final ? " in the final read" : "");
        if (op->type == HIST_WRITE) r->writes++;
        if (op->type == HIST_READ) r->reads++;
        if (op->type == HIST_FLUSH) r->flushes++;
        if (!op->final) {
            if (op->t0 < first) first = op->t0;
            if (op->t0 > last) last = op->t0;
            if (op->status == HIST_OK) {
                if (op->t1 - op->t0 > r->max_latency_us) r->max_latency_us = op->t1 - op->t0;
                done[nd++] = op->t1;
                if (op->t1 > last) last = op->t1;
            }
        }
        if (op->type == HIST_FLUSH) {
            if (op->status == HIST_OK) fl[nf++] = (struct flush_pair){op->t0, op->t1};
            continue;
        }
        if (op->type == HIST_READ) {
            if (op->status != HIST_OK) continue;
            if (op->rkind != HIST_R_VALUE) {
                const char *k = op->rkind == HIST_R_TORN ? "torn"
                                : op->rkind == HIST_R_GARBAGE ? "garbage" : "alien";
                violation(&c, op->block, k, "read (line %u) returned %s", op->line,
                          op->rkind == HIST_R_ALIEN ? op->alien
                          : op->rkind == HIST_R_TORN ? "a block whose checksum fails (a mix, C6)"
                                                     : "bytes no write produced");
                continue;
            }
        } else if (op->status != HIST_OK) {
            op->t1 = HIST_T_INF; /* may or may not have happened */
        }
        p[np++] = op;
    }
    /* Flushes by invoke time, with the earliest completion from each on. */
    qsort(fl, nf, sizeof(*fl), cmp_flush);
    for (size_t i = nf; i-- > 0;) {
        ft0[i] = fl[i].t0;
        ft1[i] = i + 1 < nf && ft1[i + 1] < fl[i].t1 ? ft1[i + 1] : fl[i].t1;
    }
    qsort(p, np, sizeof(*p), cmp_block_value);
    for (size_t i = 0; i < np;) {
        size_t j = i;
        while (j < np && p[j]->block == p[i]->block) j++;
        r->blocks++;
        check_block(&c, p + i, j - i, ft0, ft1, nf);
        i = j;
    }
    /* The longest time without a completion, from the first invoke to the
     * last event before the final read. */
    qsort(done, nd, sizeof(*done), cmp_i64);
    if (first != HIST_T_INF) {
        int64_t prev = first;
        for (size_t i = 0; i < nd; i++) {
            if (done[i] - prev > r->longest_stall_us) r->longest_stall_us = done[i] - prev;
            prev = done[i];
        }
        if (last - prev > r->longest_stall_us) r->longest_stall_us = last - prev;
    }
    r->violations = c.violations;
    if (c.violations > max_report)
        fprintf(out, "... and %" PRIu64 " more violations\n", c.violations - max_report);
out:
    free(p);
    free(fl);
    free(ft0);
    free(ft1);
    free(done);
    fprintf(out,
            "histcheck: ops=%" PRIu64 " writes=%" PRIu64 " reads=%" PRIu64 " flushes=%" PRIu64
            " indeterminate=%" PRIu64 " failed=%" PRIu64 " blocks=%" PRIu64 " violations=%" PRIu64
            " max_latency_ms=%" PRId64 " longest_stall_ms=%" PRId64 "\n",
            r->ops, r->writes, r->reads, r->flushes, r->indeterminate, r->failed, r->blocks,
            r->violations, r->max_latency_us / 1000, r->longest_stall_us / 1000);
    return r->violations;
}
