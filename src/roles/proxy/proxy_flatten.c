/* proxy_flatten.c: a clone's flatten (README "Rollback and flatten"), a
 * leader duty driving FLATTEN_FILL and FLATTEN_DONE (fsm_life.c).
 *
 * A flatten is a job in the index (FLATTEN_START, from the admin API):
 * its cursor is the volume offset below which the clone's own bottom
 * layer B already holds everything it inherits.  Every tick, while this
 * proxy leads and the rate allows, one step of one job (round robin over
 * the jobs):
 *
 *   map B's view from the cursor (index_map_layer) -> the DATA pieces that
 *     come from below B, up to one blob's worth, cut at the window's end
 *   proxy_copy: read them, put them as one new blob (3 copies)
 *   FLATTEN_FILL (vol, B, new cursor, blob, pieces): the index fills only
 *     B's gaps (a write the clone made meanwhile wins), moves the cursor
 *   ...until the cursor reaches the volume's size: FLATTEN_DONE, which
 *     checks that nothing inherited still shows through and cuts B loose.
 *
 * A window with nothing inherited advances the cursor with an empty
 * FLATTEN_FILL (a hole costs one entry per WINDOW, not a copy).  The rate
 * is a token bucket of flatten_bytes_per_sec shared by every job; one
 * step at a time.
 *
 * Failure modes: a step whose target layer changed (the clone took a
 * snapshot that merged, or was rolled back) is refused ESTALE and is
 * simply planned again from the index; a copy that fails retries after
 * RETRY_MS; a DONE refused because inherited data still shows (it cannot,
 * unless the job's cursor is wrong) restarts the job's cursor at 0.  A
 * new leader carries on from the cursor in the index; a step lost with
 * its leader leaves only orphans (its blob puts) for anti-entropy.
 * Nothing is lost: the index fills only with the bytes the clone already
 * shows, and cuts only when B holds all of them. */
#include "roles/proxy/proxy_flatten.h"
#include "roles/proxy/proxy_cmd.h"
#include "roles/proxy/proxy_copy.h"
#include "roles/proxy/proxy_index.h"
#include "roles/proxy/proxy_int.h"
#include "base/bd.h"
#include "base/util.h"
#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>

#define WINDOW (1ull << 30)    /* address space looked at per step */
#define MAX_PIECES 1024u
#define RETRY_MS 1000u
#define CMD_DEADLINE_MS 10000u

struct proxy_flatten {
    struct proxy *p;
    bool busy;                 /* a step is being copied or committed */
    uint64_t last_vol;         /* round robin: the job served last */
    int64_t tokens;
    uint64_t last_ms;
    uint64_t wait_until_ms;
    /* the step */
    uint64_t vol_id, layer, cursor;
    struct proxy_copy copy;
    struct proxy_copy_src src[IDXCMD_MAX_FILL];
    struct idxcmd_fill fill[IDXCMD_MAX_FILL];
    uint32_t n;
    struct index_piece pieces[MAX_PIECES];
    struct proxy_cmd cmd;
    uint8_t buf[IDXCMD_MAX_LEN];
    /* counters (this proxy) */
    uint64_t steps, copied, done;
};

int proxy_flatten_start(struct proxy *p)
{
    struct proxy_flatten *f = calloc(1, sizeof(*f));
    if (!f) return -ENOMEM;
    f->p = p;
    p->flatten = f;
    return 0;
}

void proxy_flatten_stop(struct proxy *p)
{
    free(p->flatten);
    p->flatten = NULL;
}

static void on_step(struct proxy_cmd *c, int err, uint64_t index, const struct idxcmd_result *res)
{
    (void)index;
    struct proxy_flatten *f = c->data;
    struct proxy *p = f->p;
    f->busy = false;
    if (err == 0 && res->status != IDXCMD_ST_OK) err = idxcmd_status_to_err(res->status);
    if (err == -ESTALE) return; /* planned again from the index next tick */
    if (err == -EINVAL && res && res->type == IDXCMD_FLATTEN_DONE) {
        log_warn(p->tag, "flatten of volume %llu: inherited data still shows at the end; "
                 "starting over", (unsigned long long)f->vol_id);
        f->cursor = 0;
        f->n = 0;
        /* An empty fill at 0 restarts the job's cursor. */
        struct idxcmd cmd = {.type = IDXCMD_FLATTEN_FILL};
        cmd.u.flatten_fill = (typeof(cmd.u.flatten_fill)){.vol_id = f->vol_id,
                                                          .layer = f->layer};
        int len = idxcmd_encode(f->buf, sizeof(f->buf), &cmd);
        if (len < 0) return;
        f->busy = true;
        f->cmd = (struct proxy_cmd){.cb = on_step, .data = f, .buf = f->buf, .len = (size_t)len,
                                    .deadline_ms = util_mono_ms() + CMD_DEADLINE_MS};
        proxy_cmd_submit(p, &f->cmd);
        return;
    }
    if (err) {
        if (!p->stopping)
            log_warn(p->tag, "flatten of volume %llu: %s", (unsigned long long)f->vol_id,
                     bd_strerror(err));
        f->wait_until_ms = util_mono_ms() + RETRY_MS;
        return;
    }
    f->steps++;
    if (res->type == IDXCMD_FLATTEN_FILL) f->copied += res->id;
    else f->done++;
}

static void submit(struct proxy_flatten *f, const struct idxcmd *cmd)
{
    int len = idxcmd_encode(f->buf, sizeof(f->buf), cmd);
    if (len < 0) {
        log_error(f->p->tag, "flatten: cannot encode a command: %s", bd_strerror(len));
        f->wait_until_ms = util_mono_ms() + RETRY_MS;
        return;
    }
    f->busy = true;
    f->cmd = (struct proxy_cmd){.cb = on_step, .data = f, .buf = f->buf, .len = (size_t)len,
                                .deadline_ms = util_mono_ms() + CMD_DEADLINE_MS};
    proxy_cmd_submit(f->p, &f->cmd);
}

static void on_copied(struct proxy_copy *cp, int err)
{
    struct proxy_flatten *f = cp->data;
    if (err || f->p->stopping) {
        f->busy = false;
        if (!f->p->stopping) log_warn(f->p->tag, "flatten: copy failed: %s", bd_strerror(err));
        f->wait_until_ms = util_mono_ms() + RETRY_MS;
        return;
    }
    /* Ranges that could not be read are left for a later pass: the cursor
     * stops before the first of them. */
    uint32_t k = 0;
    uint64_t cursor = f->cursor;
    for (uint32_t i = 0; i < f->n; i++) {
        if (f->src[i].failed) {
            cursor = f->fill[i].off;
            break;
        }
        f->fill[k++] = f->fill[i];
    }
    struct idxcmd cmd = {.type = IDXCMD_FLATTEN_FILL};
    cmd.u.flatten_fill = (typeof(cmd.u.flatten_fill)){
        .vol_id = f->vol_id, .layer = f->layer, .cursor = cursor, .n = k, .in = f->fill};
    if (k) {
        cmd.u.flatten_fill.blob_id = cp->blob_id;
        cmd.u.flatten_fill.partition = cp->partition;
        cmd.u.flatten_fill.blob_len = cp->len;
        cmd.u.flatten_fill.blob_csum = cp->csum;
    }
    f->busy = false;
    submit(f, &cmd);
}

/* Plan the next step of job J (volume V), in a read txn: fills F->src /
 * F->fill, returns their bytes (0: only the cursor moves) and sets
 * F->cursor; 1 with F->n 0 and *DONE when the job is finished. */
static int64_t plan(struct proxy_flatten *f, const struct index_vol *v,
                    const struct index_flatten *j, bool *done)
{
    struct proxy *p = f->p;
    uint64_t bottom, parent, parent_vol;
    int rc = index_vol_parent(p->rd, v, &bottom, &parent, &parent_vol);
    *done = false;
    f->n = 0;
    f->vol_id = v->id;
    f->layer = bottom;
    if (rc < 0) return rc;
    if (!parent || j->cursor >= v->size) {
        *done = true;
        return 0;
    }
    uint64_t end = BD_MIN(v->size, j->cursor + WINDOW), max_bytes = p->cfg->blob_max_bytes;
    uint32_t n;
    if ((rc = index_map_layer(p->rd, bottom, j->cursor, end - j->cursor, f->pieces, MAX_PIECES,
                              &n)) < 0)
        return rc;
    if (n == MAX_PIECES) end = f->pieces[n - 1].off + f->pieces[n - 1].len;
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct index_piece *pc = &f->pieces[i];
        if (pc->kind != INDEX_DATA || pc->layer == bottom) continue;
        if (bytes == max_bytes || f->n == IDXCMD_MAX_FILL) {
            end = pc->off;
            break;
        }
        uint32_t len = (uint32_t)BD_MIN(pc->len, max_bytes - bytes);
        f->src[f->n] = (struct proxy_copy_src){.blob_id = pc->blob_id,
                                               .partition = pc->partition,
                                               .off = pc->blob_off, .len = len,
                                               .dst_off = (uint32_t)bytes};
        f->fill[f->n] = (struct idxcmd_fill){.off = pc->off, .len = len,
                                             .new_off = (uint32_t)bytes};
        f->n++;
        bytes += len;
        if (len < pc->len) {
            end = pc->off + len;
            break;
        }
    }
    f->cursor = end;
    return (int64_t)bytes;
}

void proxy_flatten_tick(struct proxy *p)
{
    struct proxy_flatten *f = p->flatten;
    uint64_t now = util_mono_ms();
    if (!consensus_is_leader(p->cons)) {
        f->tokens = 0;
        f->last_ms = now;
        return;
    }
    int64_t cap = 2 * (int64_t)p->cfg->blob_max_bytes;
    f->tokens += (int64_t)(p->cfg->flatten_bytes_per_sec * (now - f->last_ms) / 1000);
    if (f->tokens > cap) f->tokens = cap;
    f->last_ms = now;
    if (f->busy || f->tokens <= 0 || now < f->wait_until_ms) return;
    if (proxy_index_read_begin(p) < 0) return;
    struct index_flatten j;
    uint32_t n;
    int rc = index_flatten_list(p->rd, f->last_vol, &j, 1, &n);
    if (rc == 0 && n == 0 && f->last_vol) rc = index_flatten_list(p->rd, 0, &j, 1, &n);
    if (rc < 0 || n == 0) {
        proxy_index_read_end(p);
        return;
    }
    f->last_vol = j.vol_id;
    struct index_vol v;
    bool done = false;
    int64_t bytes = index_vol_by_id(p->rd, j.vol_id, &v);
    if (bytes == 0) bytes = plan(f, &v, &j, &done);
    proxy_index_read_end(p);
    if (bytes < 0) return;
    if (done) {
        struct idxcmd cmd = {.type = IDXCMD_FLATTEN_DONE};
        cmd.u.flatten_done.vol_id = f->vol_id;
        cmd.u.flatten_done.layer = f->layer;
        submit(f, &cmd);
        return;
    }
    if (bytes == 0) {
        struct idxcmd cmd = {.type = IDXCMD_FLATTEN_FILL};
        cmd.u.flatten_fill = (typeof(cmd.u.flatten_fill)){.vol_id = f->vol_id,
                                                          .layer = f->layer,
                                                          .cursor = f->cursor};
        submit(f, &cmd);
        return;
    }
    f->copy = (struct proxy_copy){.cb = on_copied, .data = f, .src = f->src, .n = f->n,
                                  .len = (uint32_t)bytes};
    if (proxy_copy_start(p, &f->copy) < 0) {
        f->wait_until_ms = now + RETRY_MS;
        return;
    }
    f->busy = true;
    f->tokens -= bytes;
}

void proxy_flatten_status(struct proxy *p, cJSON *out)
{
    struct proxy_flatten *f = p->flatten;
    cJSON *j = cJSON_AddObjectToObject(out, "flatten");
    if (!f) return;
    cJSON_AddNumberToObject(j, "steps", (double)f->steps);
    cJSON_AddNumberToObject(j, "copied_bytes", (double)f->copied);
    cJSON_AddNumberToObject(j, "done", (double)f->done);
}
