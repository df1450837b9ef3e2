/* fuzz_journal.c: libFuzzer target for the agent journal's segment and
 * entry parser and the replay scan (CONTRACT.md row 10, §3 "bytes on
 * disk").
 *
 * Input: byte 0 picks the number of segment files (1 + b % 3); each
 * segment but the last is a little-endian u16 length and that many
 * bytes; the last takes the rest.  They are written as segments 1, 2, 3
 * of a journal directory, which is then opened and replayed twice.
 *
 * Properties (abort on violation):
 *   - no crash, leak or undefined behaviour, whatever the bytes;
 *   - records come in strictly increasing sequence order, aligned, of a
 *     known kind, in a segment that exists;
 *   - every WRITE record's data, read back from the file, matches the
 *     block checksums replay reported: replay never hands out garbage;
 *   - replay is idempotent: a second replay (after the first cut any
 *     torn tail) reports exactly the same records. */
#include "base/bytes.h"
#include "runtime/log.h"
#include "store/fileio.h"
#include "store/journal/journal.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_RECS 4096

struct rec {
    uint64_t seq, off, len, seg, data_pos;
    int kind;
};

static char dir[512];
static struct rec first[MAX_RECS];
static unsigned nfirst;

struct run {
    struct journal *j;
    struct rec *out;
    unsigned n;
    uint64_t last_seq;
    uint8_t *buf;
};

static void cleanup(void)
{
    if (!dir[0]) return;
    for (int i = 1; i <= 3; i++) {
        char p[600];
        snprintf(p, sizeof(p), "%s/%016x.seg", dir, i);
        unlink(p);
    }
    rmdir(dir);
}

static void on_rec(void *arg, const struct journal_rec *r)
{
    struct run *run = arg;
    if (r->seq <= run->last_seq) abort();
    run->last_seq = r->seq;
    if (r->kind < JOURNAL_WRITE || r->kind > JOURNAL_KIND_MAX) abort();
    if (r->len == 0 || r->off % JOURNAL_BLOCK || r->len % JOURNAL_BLOCK) abort();
    if (r->kind == JOURNAL_WRITE) {
        if (!r->csums) abort();
        /* Read the data back through the journal and check every block. */
        uint64_t nb = r->len / JOURNAL_BLOCK;
        for (uint64_t i = 0; i < nb; i++) {
            if (journal_read(run->j, r->seg, r->data_pos + i * JOURNAL_BLOCK, run->buf,
                             JOURNAL_BLOCK) < 0)
                abort();
            if (util_xxh3(run->buf, JOURNAL_BLOCK) != r->csums[i]) abort();
        }
    }
    if (run->n < MAX_RECS)
        run->out[run->n++] = (struct rec){.seq = r->seq, .off = r->off, .len = r->len,
                                          .seg = r->seg, .data_pos = r->data_pos,
                                          .kind = r->kind};
}

static int replay(struct rec *out, unsigned *n)
{
    struct journal_opts o = {.fio = &fileio_posix, .dir = dir, .tag = "fuzz",
                             .cap_bytes = 1u << 20, .seg_bytes = 64u << 10};
    struct journal *j;
    int rc = journal_open(&o, &j);
    if (rc < 0) return rc;
    static uint8_t block[JOURNAL_BLOCK];
    struct run run = {.j = j, .out = out, .buf = block};
    rc = journal_replay(j, on_rec, &run, NULL);
    *n = run.n;
    journal_close(j);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof(dir), "%s/fuzz-journal-XXXXXX", t ? t : "/tmp");
        if (!mkdtemp(dir)) abort();
        atexit(cleanup);
        log_init("/dev/null", LOG_ERROR); /* damage reports are expected here */
    }
    cleanup();
    if (mkdir(dir, 0700) < 0) abort();
    struct bytes_r in;
    br_init(&in, data, size);
    unsigned nseg = 1 + br_u8(&in) % 3;
    if (in.err) return 0;
    for (unsigned i = 1; i <= nseg; i++) {
        size_t len = in.left;
        if (i < nseg) {
            if (in.left < 2) break;
            len = br_u16(&in);
            if (len > in.left) len = in.left;
        }
        const uint8_t *bytes = br_take(&in, len);
        char p[600];
        snprintf(p, sizeof(p), "%s/%016x.seg", dir, i);
        FILE *f = fopen(p, "wb");
        if (!f) abort();
        if (len && fwrite(bytes, 1, len, f) != len) abort();
        fclose(f);
    }
    static struct rec second[MAX_RECS];
    unsigned n2 = 0;
    int rc1 = replay(first, &nfirst);
    int rc2 = replay(second, &n2);
    if (rc1 != rc2) abort();
    if (rc1 == 0 && n2 != nfirst) abort();
    for (unsigned i = 0; rc1 == 0 && i < n2; i++)
        if (first[i].seq != second[i].seq || first[i].off != second[i].off ||
            first[i].len != second[i].len || first[i].seg != second[i].seg ||
            first[i].data_pos != second[i].data_pos || first[i].kind != second[i].kind)
            abort();
    return 0;
}
