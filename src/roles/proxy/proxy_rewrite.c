/* proxy_rewrite.c: the blob rewrite (README "Space"), a leader duty.
 *
 * Why: a write becomes one immutable blob, and a blob lives until the last
 * extent naming it goes.  Random overwrites leave blobs whose few live
 * ranges keep the whole blob alive; nothing bounds the space that costs.
 * The rewrite copies the live ranges of blobs whose live share (blob
 * `live` / `len`, kept by the index) is below rewrite_live_pct into new,
 * full blobs, and asks the index to re-point each range (REPOINT) only if
 * it still names the old bytes: a client write, zero or trim that got
 * there first wins, and the old blob dies once its last range moved.
 * Under uniform random overwrites a blob's live share decays evenly, so
 * rewriting below a share t keeps the blobs between t and 1, whose mean
 * is (1 - t) / ln(1/t): amplification ln(1/t) / (1 - t), 1.23 for t = 0.65
 * (the default), at a copy cost of about t / (1 - t) bytes per byte
 * overwritten.
 *
 * How, every tick while this proxy leads and the budget allows:
 *
 *   scan extents from the cursor (index_ext_list, SCAN_PER_TICK at most)
 *     -> DATA extents of sparse blobs, in key order, up to one blob's worth
 *   proxy_copy: read those ranges, put them as one new blob (3 copies)
 *   REPOINT (new blob, ranges, the key after the last extent scanned)
 *     -> the index re-points what still matches, records the cursor
 *
 * Up to BATCHES batches at a time (from consecutive stretches of the
 * scan: disjoint ranges, and each REPOINT is conditional anyway).  The
 * budget is a token bucket of rewrite_bytes_per_sec (a batch may overdraw
 * it; the next waits), so the rewrite's reads, puts and raft entries stay
 * a bounded share of the cluster's work.  A pass that reaches the end of the extents starts over
 * after PASS_PAUSE_MS; none starts while the index's blob bytes do not
 * exceed its data bytes (nothing to gain).
 *
 * Resumable: the cursor lives in the index (meta totals, written by every
 * REPOINT), so a new leader continues where the last committed batch
 * left off.  A batch lost with its leader costs nothing but orphans (its
 * blob puts) for anti-entropy.
 *
 * Failure modes: ranges no replica serves are left out of the REPOINT
 * (proxy_copy marks them); a copy that cannot place or put its blob, or a
 * REPOINT that fails, pauses the rewrite for RETRY_MS, and its ranges wait
 * for the next pass.
 * Nothing here can lose data: the index re-points only identical bytes,
 * and GC deletes an old blob only after gc_grace_ms (C13). */
#include "roles/proxy/proxy_rewrite.h"
#include "roles/proxy/proxy_cmd.h"
#include "roles/proxy/proxy_copy.h"
#include "roles/proxy/proxy_index.h"
#include "roles/proxy/proxy_int.h"
#include "base/bd.h"
#include "base/util.h"
#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>

#define SCAN_PAGE 512u
#define SCAN_PER_TICK 8192u    /* extents looked at per tick */
#define BATCHES 2              /* copied or committed at once */
#define PASS_PAUSE_MS 2000u
#define RETRY_MS 1000u
#define CMD_DEADLINE_MS 10000u

/* One batch: ranges of sparse blobs copied into one new blob, then one
 * REPOINT. */
struct batch {
    struct proxy_rewrite *rw;
    struct proxy_copy copy;
    struct proxy_copy_src src[IDXCMD_MAX_REPOINT];
    struct idxcmd_repoint rp[IDXCMD_MAX_REPOINT];
    uint32_t n;
    uint64_t next_layer, next_off; /* the scan cursor after this batch */
    struct proxy_cmd cmd;
    uint8_t buf[IDXCMD_MAX_LEN];
};

struct proxy_rewrite {
    struct proxy *p;
    unsigned busy;             /* batches being copied or committed */
    bool have_cursor;          /* cursor read from the index (leader only) */
    uint64_t layer, off;       /* the next extent key to scan */
    int64_t tokens;            /* budget bytes */
    uint64_t last_ms;          /* when tokens were last added */
    uint64_t wait_until_ms;    /* pass pause or retry */
    /* counters (this proxy, since it started) */
    uint64_t passes, batches, copied, moved;
};

int proxy_rewrite_start(struct proxy *p)
{
    struct proxy_rewrite *rw = calloc(1, sizeof(*rw));
    if (!rw) return -ENOMEM;
    rw->p = p;
    p->rewrite = rw;
    return 0;
}

void proxy_rewrite_stop(struct proxy *p)
{
    free(p->rewrite);
    p->rewrite = NULL;
}

/* A batch ends (ERR: it failed; the scan goes back over its range after
 * RETRY_MS, on the next pass at the latest). */
static void batch_end(struct batch *b, int err)
{
    struct proxy_rewrite *rw = b->rw;
    rw->busy--;
    if (err) {
        if (!rw->p->stopping) log_warn(rw->p->tag, "rewrite: %s", bd_strerror(err));
        rw->wait_until_ms = util_mono_ms() + RETRY_MS;
    }
    free(b);
}

static void on_repoint(struct proxy_cmd *c, int err, uint64_t index,
                       const struct idxcmd_result *res)
{
    (void)index;
    struct batch *b = c->data;
    if (err == 0 && res->status != IDXCMD_ST_OK) err = idxcmd_status_to_err(res->status);
    if (err == 0) {
        b->rw->batches++;
        b->rw->moved += res->id;
    }
    batch_end(b, err);
}

static void on_copied(struct proxy_copy *cp, int err)
{
    struct batch *b = cp->data;
    struct proxy_rewrite *rw = b->rw;
    struct proxy *p = rw->p;
    if (err || p->stopping) {
        batch_end(b, err ? err : -ESHUTDOWN);
        return;
    }
    /* Ranges that could not be read stay where they are. */
    uint32_t k = 0;
    for (uint32_t i = 0; i < b->n; i++)
        if (!b->src[i].failed) b->rp[k++] = b->rp[i];
    rw->copied += cp->len;
    struct idxcmd c = {.type = IDXCMD_REPOINT};
    c.u.repoint.blob_id = cp->blob_id;
    c.u.repoint.partition = cp->partition;
    c.u.repoint.blob_len = cp->len;
    c.u.repoint.blob_csum = cp->csum;
    c.u.repoint.cursor_layer = b->next_layer;
    c.u.repoint.cursor_off = b->next_off;
    c.u.repoint.n = k;
    c.u.repoint.in = b->rp;
    int len = idxcmd_encode(b->buf, sizeof(b->buf), &c);
    if (len < 0) {
        batch_end(b, len);
        return;
    }
    b->cmd = (struct proxy_cmd){.cb = on_repoint, .data = b, .buf = b->buf, .len = (size_t)len,
                                .deadline_ms = util_mono_ms() + CMD_DEADLINE_MS};
    proxy_cmd_submit(p, &b->cmd);
}

/* Is B worth rewriting: alive, and less of it live than the threshold. */
static bool sparse(const struct index_blob *b, uint64_t live_pct)
{
    return !(b->flags & INDEX_BLOB_DEAD) && b->len && b->live * 100 < b->len * live_pct;
}

/* Scan from the cursor and fill batch B.  Returns the batch's bytes (0:
 * nothing found in this stretch), or -code.  Sets B's next cursor; *END
 * when the scan reached the last extent. */
static int64_t scan(struct proxy_rewrite *rw, struct batch *b, bool *end)
{
    struct proxy *p = rw->p;
    uint64_t max_bytes = p->cfg->blob_max_bytes;
    static struct index_extent page[SCAN_PAGE];
    uint64_t layer = rw->layer, off = rw->off, bytes = 0;
    uint64_t cached_id = 0;
    struct index_blob cached = {0};
    *end = false;
    b->n = 0;
    int rc = proxy_index_read_begin(p);
    if (rc < 0) return rc;
    for (uint32_t seen = 0; seen < SCAN_PER_TICK && !*end;) {
        uint32_t got;
        if ((rc = index_ext_list(p->rd, layer, off, page, SCAN_PAGE, &got)) < 0) break;
        if (got < SCAN_PAGE) *end = true;
        for (uint32_t i = 0; i < got; i++, seen++) {
            const struct index_extent *x = &page[i];
            if (x->kind == INDEX_DATA) {
                if (x->blob_id != cached_id) {
                    if ((rc = index_blob_get(p->rd, x->blob_id, &cached)) < 0) break;
                    cached_id = x->blob_id;
                }
                /* (An extent longer than a new blob may be, from a larger
                 * blob_max_bytes in the past, is left as it is.) */
                if (sparse(&cached, p->cfg->rewrite_live_pct) && x->len <= max_bytes) {
                    if (bytes + x->len > max_bytes || b->n == IDXCMD_MAX_REPOINT) {
                        *end = false;
                        goto full;
                    }
                    b->src[b->n] = (struct proxy_copy_src){
                        .blob_id = x->blob_id, .partition = cached.partition,
                        .off = x->blob_off, .len = (uint32_t)x->len,
                        .dst_off = (uint32_t)bytes};
                    b->rp[b->n] = (struct idxcmd_repoint){
                        .layer = x->layer, .off = x->off, .len = (uint32_t)x->len,
                        .old_blob = x->blob_id, .old_off = x->blob_off,
                        .new_off = (uint32_t)bytes};
                    b->n++;
                    bytes += x->len;
                }
            }
            layer = x->layer;
            off = x->off + x->len;
        }
        if (rc < 0) break;
    }
full:
    proxy_index_read_end(p);
    if (rc < 0) return rc;
    b->next_layer = *end ? 0 : layer;
    b->next_off = *end ? 0 : off;
    return (int64_t)bytes;
}

void proxy_rewrite_tick(struct proxy *p)
{
    struct proxy_rewrite *rw = p->rewrite;
    uint64_t now = util_mono_ms();
    uint64_t rate = p->cfg->rewrite_bytes_per_sec;
    if (!consensus_is_leader(p->cons) || !rate || !p->cfg->rewrite_live_pct) {
        rw->have_cursor = false;
        rw->tokens = 0;
        rw->last_ms = now;
        return;
    }
    /* The budget: at most two batches' worth saved up. */
    int64_t cap = 2 * (int64_t)p->cfg->blob_max_bytes;
    rw->tokens += (int64_t)(rate * (now - rw->last_ms) / 1000);
    if (rw->tokens > cap) rw->tokens = cap;
    rw->last_ms = now;
    if (rw->busy == BATCHES || rw->tokens <= 0 || now < rw->wait_until_ms) return;
    if (proxy_index_read_begin(p) < 0) return;
    struct index_meta m;
    int rc = index_meta_get(p->rd, &m);
    proxy_index_read_end(p);
    if (rc < 0) return;
    if (!rw->have_cursor) {
        rw->layer = m.rewrite_layer;
        rw->off = m.rewrite_off;
        rw->have_cursor = true;
    }
    if (m.blob_bytes <= m.data_bytes) return; /* every blob byte is addressed */
    struct batch *b = calloc(1, sizeof(*b));
    if (!b) return;
    b->rw = rw;
    bool end;
    int64_t bytes = scan(rw, b, &end);
    if (bytes < 0) {
        free(b);
        return;
    }
    /* Scanning moves on at once; the committed cursor (in the index) only
     * with each REPOINT, so a new leader may rescan a little, harmlessly. */
    rw->layer = b->next_layer;
    rw->off = b->next_off;
    if (end) {
        rw->passes++;
        rw->wait_until_ms = now + PASS_PAUSE_MS;
    }
    if (bytes == 0) {
        free(b);
        return;
    }
    b->copy = (struct proxy_copy){.cb = on_copied, .data = b, .src = b->src, .n = b->n,
                                  .len = (uint32_t)bytes};
    if (proxy_copy_start(p, &b->copy) < 0) {
        free(b);
        rw->wait_until_ms = now + RETRY_MS;
        return;
    }
    rw->busy++;
    rw->tokens -= bytes;
}

void proxy_rewrite_status(struct proxy *p, cJSON *out)
{
    struct proxy_rewrite *rw = p->rewrite;
    cJSON *j = cJSON_AddObjectToObject(out, "rewrite");
    if (!rw) return;
    cJSON_AddNumberToObject(j, "batches_in_flight", rw->busy);
    cJSON_AddNumberToObject(j, "passes", (double)rw->passes);
    cJSON_AddNumberToObject(j, "batches", (double)rw->batches);
    cJSON_AddNumberToObject(j, "copied_bytes", (double)rw->copied);
    cJSON_AddNumberToObject(j, "moved_bytes", (double)rw->moved);
    cJSON_AddNumberToObject(j, "lost_bytes",
                            (double)(rw->copied > rw->moved ? rw->copied - rw->moved : 0));
    cJSON_AddNumberToObject(j, "layer", (double)rw->layer);
    cJSON_AddNumberToObject(j, "offset", (double)rw->off);
}
