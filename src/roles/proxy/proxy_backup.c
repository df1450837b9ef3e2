/* proxy_backup.c: incremental backup through the admin API (README
 * "Incremental backup"; the stream format is `blockd ctl`'s, ctl_life.c).
 *
 *   GET  /v1/volumes/VOL/diff?from=S1&to=S2&offset=O&limit=N
 *        the ranges where the view of TO (a snapshot, or the live volume
 *        without `to`) differs from that of FROM (without `from`: from an
 *        empty volume), each with whether TO holds data there ("data": true:
 *        read it; false: it reads as zeroes), in offset order, at most
 *        LIMIT (1024) of them and "next_offset" to continue from (null at
 *        the end); plus both sides' identities for the stream header.
 *   GET  /v1/volumes/VOL/data?offset=O&length=L&snapshot=S
 *        L bytes (a multiple of 4096, at most 4 MiB) of the view,
 *        application/octet-stream, every byte verified against its blob's
 *        checksum on the way (C14).
 *   POST /v1/volumes/VOL/import        {"from": S1?, "size"}
 *   POST /v1/volumes/VOL/import/write  {"generation", "offset", "data"} or
 *                                      {"generation", "offset", "length", "zero": true}
 *   POST /v1/volumes/VOL/import/end    {"generation", "commit", "snapshot"?, "origin"?}
 *
 * The changed ranges come from the layers (index_walk.c): what differs
 * between two views lies in the extents of the layers above their lowest
 * common layer.  An incremental export of S1..S2 is one such walk, however
 * many snapshots lie between, and costs nothing where nothing changed.
 *
 * Import is a session in the index (fsm_life.c): IMPORT_BEGIN attaches the
 * volume for agent PROXY_BACKUP_AGENT under a new generation (so no agent
 * can write meanwhile, C10), only if the volume holds exactly the stream's
 * base (snapshot FROM and nothing since, or empty); the writes are ordinary
 * WRITE_BATCHes under that generation, each data write one new blob (put
 * to three servers first, like any write); IMPORT_END either takes the
 * stream's snapshot (keeping its origin, so the next diff can be checked
 * against it) and detaches, or rolls the volume back to FROM and detaches.
 * A client that dies mid-import leaves the volume attached to the
 * importer: `blockd ctl volume detach VOL` then `volume rollback VOL FROM`
 * (or rm) clears it.
 *
 * Why base64 in JSON bodies: the admin endpoint takes only JSON bodies of
 * at most 64 KiB (net/admin.h), so an import writes 44 KiB a request. */
#include "roles/proxy/proxy_backup.h"
#include "roles/proxy/proxy_blobs.h"
#include "roles/proxy/proxy_cmd.h"
#include "roles/proxy/proxy_copy.h"
#include "roles/proxy/proxy_index.h"
#include "roles/proxy/proxy_int.h"
#include "roles/proxy/proxy_life.h"
#include "roles/proxy/proxy_plan.h"
#include "base/bd.h"
#include "base/jsonv.h"
#include "base/util.h"
#include "runtime/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIFF_LIMIT 1024u
#define DIFF_PIECES 1024u
#define ZERO_CHUNK (1ull << 30)  /* a zero record is index-only, cut at 1 GiB */
#define WRITE_DEADLINE_MS 20000u

/* ---- helpers ------------------------------------------------------------------ */

/* Query parameter NAME as an exact u64: 1 (absent, *OUT untouched), 0, or
 * -EINVAL after a 400 naming it. */
static int query_u64(struct admin_req *r, const char *name, uint64_t *out)
{
    const char *s = admin_req_query(r, name);
    if (!s) return 1;
    if (util_parse_u64(s, out) < 0) {
        admin_reply_error(r, 400, "%s: an unsigned integer", name);
        return -EINVAL;
    }
    return 0;
}

/* Query parameter NAME as a snapshot name: 1 absent, 0, -EINVAL after 400. */
static int query_name(struct admin_req *r, const char *name, const char **out)
{
    const char *s = admin_req_query(r, name);
    if (!s) return 1;
    if (!idxcmd_name_valid(s, strlen(s))) {
        admin_reply_error(r, 400, "%s: a snapshot name", name);
        return -EINVAL;
    }
    *out = s;
    return 0;
}

/* The view a request names: the live volume, or snapshot SNAP of it.
 * *LAYER and *SIZE; a 404 naming what is missing (and false) otherwise.
 * Inside a read txn. */
static bool view_of(struct proxy *p, struct admin_req *r, const char *vol, const char *field,
                    const char *snap, struct index_vol *v, struct index_snap *s, uint64_t *layer,
                    uint64_t *size)
{
    int rc = index_vol_by_name(p->rd, vol, strlen(vol), v);
    if (rc < 0) {
        admin_reply_error(r, proxy_life_http_code(rc), "%s: %s", vol,
                          rc == -ENOENT ? "no such volume" : bd_strerror(rc));
        return false;
    }
    if (!snap) {
        *layer = v->top_layer;
        *size = v->size;
        return true;
    }
    rc = index_snap_get(p->rd, v->id, snap, strlen(snap), s);
    if (rc < 0) {
        admin_reply_error(r, proxy_life_http_code(rc), "%s: %s has no snapshot %s", field, vol,
                          snap);
        return false;
    }
    *layer = s->layer;
    *size = s->size;
    return true;
}

static void identity_json(struct proxy *p, cJSON *o, const char *key, const struct index_snap *s)
{
    if (!s) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    char hex[24];
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)proxy_life_snap_identity(p, s));
    cJSON_AddStringToObject(o, key, hex);
}

/* ---- diff ------------------------------------------------------------------------ */

void proxy_backup_diff(struct proxy *p, struct admin_req *r, const char *vol)
{
    const char *from = NULL, *to = NULL;
    uint64_t off = 0, limit = DIFF_LIMIT;
    if (query_name(r, "from", &from) < 0 || query_name(r, "to", &to) < 0 ||
        query_u64(r, "offset", &off) < 0 || query_u64(r, "limit", &limit) < 0)
        return;
    if (off % IDXCMD_ALIGN) {
        admin_reply_error(r, 400, "offset: a multiple of %u", IDXCMD_ALIGN);
        return;
    }
    if (limit == 0 || limit > DIFF_LIMIT) {
        admin_reply_error(r, 400, "limit: 1 to %u", DIFF_LIMIT);
        return;
    }
    if (proxy_index_read_begin(p) < 0) {
        admin_reply_error(r, 503, "index busy");
        return;
    }
    struct index_vol v;
    struct index_snap fs, ts;
    uint64_t to_layer, to_size, from_layer = 0, from_size = 0;
    if (!view_of(p, r, vol, "to", to, &v, &ts, &to_layer, &to_size) ||
        (from && !view_of(p, r, vol, "from", from, &v, &fs, &from_layer, &from_size))) {
        proxy_index_read_end(p);
        return;
    }
    uint64_t layers[2 * INDEX_MAX_DEPTH];
    uint32_t nl = 0, got = 0;
    static struct index_range ch[DIFF_LIMIT];
    static struct index_piece pc[DIFF_PIECES];
    uint64_t next = to_size;
    int rc = index_diff_layers(p->rd, from_layer, to_layer, layers, &nl);
    if (rc == 0 && off < to_size)
        rc = index_changed(p->rd, layers, nl, off, to_size, ch, (uint32_t)limit, &got, &next);
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_CreateArray();
    uint32_t emitted = 0;
    /* Each changed range as TO shows it: data, or zeroes. */
    for (uint32_t i = 0; rc == 0 && i < got; i++) {
        uint32_t n;
        if ((rc = index_map_layer(p->rd, to_layer, ch[i].off, ch[i].len, pc, DIFF_PIECES, &n)))
            break;
        uint64_t end = ch[i].off + ch[i].len;
        if (n == DIFF_PIECES) end = pc[n - 1].off + pc[n - 1].len;
        for (uint32_t k = 0; k < n; k++) {
            bool data = pc[k].kind == INDEX_DATA;
            cJSON *last = cJSON_GetArrayItem(arr, cJSON_GetArraySize(arr) - 1);
            if (last && cJSON_IsTrue(cJSON_GetObjectItem(last, "data")) == data && !data &&
                cJSON_GetObjectItem(last, "offset")->valuedouble +
                        cJSON_GetObjectItem(last, "length")->valuedouble ==
                    (double)pc[k].off) {
                /* Adjacent zeroes of two pieces: one range. */
                cJSON_SetNumberValue(cJSON_GetObjectItem(last, "length"),
                                     cJSON_GetObjectItem(last, "length")->valuedouble +
                                         (double)pc[k].len);
                continue;
            }
            if (emitted == limit) {
                end = pc[k].off;
                break;
            }
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "offset", (double)pc[k].off);
            cJSON_AddNumberToObject(j, "length", (double)pc[k].len);
            cJSON_AddBoolToObject(j, "data", data);
            cJSON_AddItemToArray(arr, j);
            emitted++;
        }
        if (end < ch[i].off + ch[i].len) {
            next = end;
            break;
        }
    }
    if (rc == 0) {
        cJSON_AddStringToObject(o, "volume", vol);
        cJSON_AddNumberToObject(o, "size", (double)to_size);
        if (from) cJSON_AddStringToObject(o, "from", from);
        else cJSON_AddNullToObject(o, "from");
        if (to) cJSON_AddStringToObject(o, "to", to);
        else cJSON_AddNullToObject(o, "to");
        identity_json(p, o, "from_identity", from ? &fs : NULL);
        identity_json(p, o, "to_identity", to ? &ts : NULL);
        cJSON_AddNumberToObject(o, "from_size", (double)from_size);
        cJSON_AddItemToObject(o, "ranges", arr);
        if (next < to_size) cJSON_AddNumberToObject(o, "next_offset", (double)next);
        else cJSON_AddNullToObject(o, "next_offset");
    } else {
        cJSON_Delete(arr);
    }
    proxy_index_read_end(p);
    if (rc < 0) {
        cJSON_Delete(o);
        admin_reply_error(r, 500, "index: %s", bd_strerror(rc));
        return;
    }
    admin_reply_json(r, 200, o);
}

/* ---- data ------------------------------------------------------------------------ */

struct data_req {
    struct admin_req *r;
    uint8_t *buf;
    uint64_t len;
    uint32_t pending;
    int err;
    struct proxy_blobs_get *gets;
};

static void data_finish(struct data_req *d)
{
    if (d->err)
        admin_reply_error(d->r, d->err == -ENOENT ? 404 : 500, "read: %s", bd_strerror(d->err));
    else
        admin_reply_text(d->r, 200, "application/octet-stream", (const char *)d->buf, d->len);
    free(d->buf);
    free(d->gets);
    free(d);
}

static void on_data_get(struct proxy_blobs_get *g, int err)
{
    struct data_req *d = g->data;
    if (err && !d->err) d->err = err;
    if (--d->pending == 0) data_finish(d);
}

void proxy_backup_data(struct proxy *p, struct admin_req *r, const char *vol)
{
    const char *snap = NULL;
    uint64_t off, len;
    int rc;
    if (query_name(r, "snapshot", &snap) < 0) return;
    if ((rc = query_u64(r, "offset", &off)) != 0 || (rc = query_u64(r, "length", &len)) != 0) {
        if (rc == 1) admin_reply_error(r, 400, "offset and length are required");
        return;
    }
    if (off % IDXCMD_ALIGN || len % IDXCMD_ALIGN || len == 0 || len > PROXY_BACKUP_READ_MAX) {
        admin_reply_error(r, 400, "offset, length: multiples of %u; length at most %u",
                          IDXCMD_ALIGN, PROXY_BACKUP_READ_MAX);
        return;
    }
    if (proxy_index_read_begin(p) < 0) {
        admin_reply_error(r, 503, "index busy");
        return;
    }
    struct index_vol v;
    struct index_snap s;
    uint64_t layer, size;
    if (!view_of(p, r, vol, "snapshot", snap, &v, &s, &layer, &size)) {
        proxy_index_read_end(p);
        return;
    }
    if (off > size || len > size - off) {
        proxy_index_read_end(p);
        admin_reply_error(r, 400, "offset, length: past the end (%llu bytes)",
                          (unsigned long long)size);
        return;
    }
    struct data_req *d = calloc(1, sizeof(*d));
    uint32_t max = (uint32_t)(len / IDXCMD_ALIGN), n = 0;
    struct index_piece *pc = calloc(max, sizeof(*pc));
    struct proxy_plan_read_step *st = calloc(max, sizeof(*st));
    if (d) {
        d->buf = malloc(len);
        d->gets = calloc(max, sizeof(*d->gets));
    }
    rc = !d || !pc || !st || !d->buf || !d->gets ? -ENOMEM : 0;
    if (rc == 0) rc = index_map_layer(p->rd, layer, off, len, pc, max, &n);
    if (rc == 0) rc = proxy_plan_read_resolve(off, len, pc, n, st);
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        if (st[i].kind != PROXY_PLAN_READ_FETCH) continue;
        struct index_part part;
        if ((rc = index_part_get(p->rd, st[i].partition, &part)) < 0) break;
        d->gets[i] = (struct proxy_blobs_get){.cb = on_data_get, .data = d,
                                              .blob_id = st[i].blob_id,
                                              .partition = st[i].partition,
                                              .off = st[i].blob_off, .len = st[i].len,
                                              .dst = d->buf + st[i].buf_off};
        memcpy(d->gets[i].nodes, part.nodes, sizeof(part.nodes));
    }
    proxy_index_read_end(p);
    free(pc);
    if (rc < 0) {
        free(st);
        if (d) {
            free(d->buf);
            free(d->gets);
        }
        free(d);
        admin_reply_error(r, 500, "read: %s", bd_strerror(rc));
        return;
    }
    d->r = r;
    d->len = len;
    d->pending = 1; /* held until every get is out */
    for (uint32_t i = 0; i < n; i++) {
        if (st[i].kind == PROXY_PLAN_READ_ZERO) {
            memset(d->buf + st[i].buf_off, 0, st[i].len);
            continue;
        }
        d->pending++;
        proxy_blobs_get(p->blobs, &d->gets[i]);
    }
    free(st);
    if (--d->pending == 0) data_finish(d);
}

/* ---- import -------------------------------------------------------------------- */

struct imp_req {
    struct proxy_life_cmd m;
    char vol[INDEX_NAME_MAX + 1];
};

static void on_begun(struct proxy_life_cmd *m, int err)
{
    struct imp_req *q = bd_container_of(m, struct imp_req, m);
    if (err == -ESTALE)
        admin_reply_error(m->r, 409, "%s: it does not hold exactly the stream's base (written "
                          "since that snapshot, or, for a full import, not empty)", q->vol);
    else if (err == -EBUSY)
        admin_reply_error(m->r, 409, "%s is attached: import needs a detached volume", q->vol);
    else if (err == -ERANGE)
        admin_reply_error(m->r, 409, "size: smaller than %s (volumes only grow)", q->vol);
    else if (err)
        admin_reply_error(m->r, proxy_life_http_code(err), "%s: %s", q->vol,
                          err == -ENOENT ? "no such volume, or no such snapshot (from)"
                                         : bd_strerror(err));
    else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "volume", q->vol);
        cJSON_AddNumberToObject(o, "generation", (double)m->res.generation);
        cJSON_AddNumberToObject(o, "size", (double)m->res.size);
        cJSON_AddStringToObject(o, "agent", PROXY_BACKUP_AGENT);
        admin_reply_json(m->r, 200, o);
    }
    free(q);
}

static void on_ended(struct proxy_life_cmd *m, int err)
{
    struct imp_req *q = bd_container_of(m, struct imp_req, m);
    if (err == -BD_EFENCED)
        admin_reply_error(m->r, 409, "generation: %s is not (any more) in this import session",
                          q->vol);
    else if (err == -EEXIST)
        admin_reply_error(m->r, 409, "snapshot: %s already has it", q->vol);
    else if (err)
        admin_reply_error(m->r, proxy_life_http_code(err), "%s: %s", q->vol, bd_strerror(err));
    else
        admin_reply_json(m->r, 200, NULL);
    free(q);
}

/* A write of the session: the blob is put first, then its extent goes
 * in a WRITE_BATCH under the session's generation (the index fences it
 * like an agent's, C10). */
struct imp_write {
    struct admin_req *r;
    struct proxy *p;
    struct proxy_copy copy;
    struct proxy_cmd_write rec;
    uint8_t data[PROXY_BACKUP_WRITE_MAX];
};

static void on_write_committed(struct proxy_cmd_write *rec, int err, uint64_t index)
{
    struct imp_write *w = rec->data;
    if (err) {
        const char *why = err == -BD_EFENCED ? "generation: not (any more) the import session's"
                          : err == -ERANGE   ? "offset: past the end of the volume"
                                             : bd_strerror(err);
        admin_reply_error(w->r, proxy_life_http_code(err), "%s", why);
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "raft_index", (double)index);
        admin_reply_json(w->r, 200, o);
    }
    free(w);
}

static void on_write_put(struct proxy_copy *c, int err)
{
    struct imp_write *w = c->data;
    if (err) {
        admin_reply_error(w->r, proxy_life_http_code(err), "write: %s%s%s", bd_strerror(err),
                          err == -EAGAIN && c->why ? ": " : "",
                          err == -EAGAIN && c->why ? c->why : "");
        free(w);
        return;
    }
    w->rec.w.kind = IDXCMD_W_DATA;
    w->rec.w.blob_id = c->blob_id;
    w->rec.w.partition = c->partition;
    w->rec.w.blob_off = 0;
    w->rec.w.blob_len = c->len;
    w->rec.w.blob_csum = c->csum;
    proxy_cmd_write_add(w->p, &w->rec);
}

/* Decode base64 S into OUT (CAP bytes); the length, or -1 if malformed
 * or too long. */
static long b64_decode(const char *s, uint8_t *out, size_t cap)
{
    static const char *const al =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s), o = 0;
    if (n % 4) return -1;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char ch = s[i + k];
            const char *at = ch ? strchr(al, ch) : NULL;
            if (ch == '=' && i + 4 == n && k >= 2) {
                pad++;
                v <<= 6;
                continue;
            }
            if (!at || pad) return -1;
            v = v << 6 | (uint32_t)(at - al);
        }
        for (int k = 0; k < 3 - pad; k++) {
            if (o == cap) return -1;
            out[o++] = (uint8_t)(v >> (16 - 8 * k));
        }
    }
    return (long)o;
}

static void import_write(struct proxy *p, struct admin_req *r, const char *vol)
{
    static const char *const keys[] = {"generation", "offset", "data", "length", "zero", NULL};
    size_t blen;
    const char *b = admin_req_body(r, &blen);
    struct jsonv_doc d;
    if (jsonv_parse(&d, "body", b, blen, ADMIN_MAX_DEPTH) < 0 ||
        jsonv_check_keys(&d, d.root, "", keys) < 0) {
        admin_reply_error(r, 400, "%s", d.err);
        jsonv_free(&d);
        return;
    }
    uint64_t gen, off, len = 0;
    bool zero = false;
    const char *data = NULL;
    int rc;
    if ((rc = jsonv_get_u64(&d, d.root, "", "generation", true, 1, UINT64_MAX, &gen)) < 0 ||
        (rc = jsonv_get_u64(&d, d.root, "", "offset", true, 0, IDXCMD_MAX_VOL_SIZE, &off)) < 0 ||
        (rc = jsonv_get_bool(&d, d.root, "", "zero", false, &zero)) < 0 ||
        (rc = jsonv_get_u64(&d, d.root, "", "length", false, 1, IDXCMD_MAX_VOL_SIZE, &len)) < 0 ||
        (rc = jsonv_get_str(&d, d.root, "", "data", false, 0, ADMIN_MAX_BODY, &data)) < 0) {
        admin_reply_error(r, 400, "%s", d.err);
        jsonv_free(&d);
        return;
    }
    struct imp_write *w = calloc(1, sizeof(*w));
    if (!w) {
        jsonv_free(&d);
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    long n = 0;
    const char *bad = NULL;
    if (zero == !!data) bad = "data: give either data or zero: true with a length";
    else if (zero && !len) bad = "length: required with zero";
    else if (!zero && len) bad = "length: only with zero (data gives its own)";
    else if (data && (n = b64_decode(data, w->data, sizeof(w->data))) <= 0)
        bad = "data: base64 of 4096 to 45056 bytes";
    else if (zero) n = 0;
    if (!bad && (off % IDXCMD_ALIGN || (zero ? len : (uint64_t)n) % IDXCMD_ALIGN))
        bad = "offset, data or length: multiples of 4096";
    if (!bad && zero && len > ZERO_CHUNK) bad = "length: at most 1 GiB per zero record";
    jsonv_free(&d);
    if (bad) {
        free(w);
        admin_reply_error(r, 400, "%s", bad);
        return;
    }
    /* The volume id, and an early look at the session (the index decides). */
    if (proxy_index_read_begin(p) < 0) {
        free(w);
        admin_reply_error(r, 503, "index busy");
        return;
    }
    struct index_vol v;
    rc = index_vol_by_name(p->rd, vol, strlen(vol), &v);
    proxy_index_read_end(p);
    if (rc < 0) {
        free(w);
        admin_reply_error(r, proxy_life_http_code(rc), "%s: no such volume", vol);
        return;
    }
    w->r = r;
    w->p = p;
    w->rec = (struct proxy_cmd_write){
        .cb = on_write_committed, .data = w,
        .w = {.vol_id = v.id, .generation = gen, .off = off,
              .len = zero ? (uint32_t)len : (uint32_t)n, .kind = IDXCMD_W_ZERO},
        .deadline_ms = util_mono_ms() + WRITE_DEADLINE_MS};
    if (zero) {
        proxy_cmd_write_add(p, &w->rec);
        return;
    }
    w->copy = (struct proxy_copy){.cb = on_write_put, .data = w, .bytes = w->data,
                                  .len = (uint32_t)n};
    if ((rc = proxy_copy_start(p, &w->copy)) < 0) {
        free(w);
        admin_reply_error(r, 500, "write: %s", bd_strerror(rc));
    }
}

void proxy_backup_import(struct proxy *p, struct admin_req *r, const char *vol,
                         const char *rest)
{
    if (strcmp(rest, "import/write") == 0) {
        import_write(p, r, vol);
        return;
    }
    bool begin = strcmp(rest, "import") == 0;
    if (!begin && strcmp(rest, "import/end") != 0) {
        admin_reply_error(r, 404, "no such endpoint");
        return;
    }
    static const char *const bkeys[] = {"from", "size", NULL};
    static const char *const ekeys[] = {"generation", "commit", "snapshot", "origin", NULL};
    size_t blen;
    const char *b = admin_req_body(r, &blen);
    struct jsonv_doc d;
    if (jsonv_parse(&d, "body", b, blen, ADMIN_MAX_DEPTH) < 0 ||
        jsonv_check_keys(&d, d.root, "", begin ? bkeys : ekeys) < 0) {
        admin_reply_error(r, 400, "%s", d.err);
        jsonv_free(&d);
        return;
    }
    struct imp_req *q = calloc(1, sizeof(*q));
    if (!q) {
        jsonv_free(&d);
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    util_strlcpy(q->vol, vol, sizeof(q->vol));
    q->m.r = r;
    struct idxcmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    const char *from = "", *snap = "", *origin = NULL;
    uint64_t size = 0, gen = 0, org = 0;
    bool commit = false;
    int rc;
    if (begin) {
        if ((rc = jsonv_get_str(&d, d.root, "", "from", false, 1, INDEX_NAME_MAX, &from)) < 0 ||
            (rc = jsonv_get_size(&d, d.root, "", "size", true, IDXCMD_ALIGN, IDXCMD_MAX_VOL_SIZE,
                                 &size)) < 0)
            goto bad;
        if (*from && !idxcmd_name_valid(from, strlen(from))) {
            snprintf(d.err, sizeof(d.err), "from: a snapshot name");
            goto bad;
        }
        if (size % IDXCMD_ALIGN) {
            snprintf(d.err, sizeof(d.err), "size: a multiple of %u", IDXCMD_ALIGN);
            goto bad;
        }
        cmd.type = IDXCMD_IMPORT_BEGIN;
        cmd.u.import_begin.vol = idxcmd_cstr(q->vol);
        cmd.u.import_begin.agent = idxcmd_cstr(PROXY_BACKUP_AGENT);
        cmd.u.import_begin.from = idxcmd_cstr(from);
        cmd.u.import_begin.size = size;
        q->m.done = on_begun;
    } else {
        if ((rc = jsonv_get_u64(&d, d.root, "", "generation", true, 1, UINT64_MAX, &gen)) < 0 ||
            (rc = jsonv_get_bool(&d, d.root, "", "commit", true, &commit)) < 0 ||
            (rc = jsonv_get_str(&d, d.root, "", "snapshot", false, 0, INDEX_NAME_MAX, &snap)) < 0 ||
            (rc = jsonv_get_str(&d, d.root, "", "origin", false, 16, 16, &origin)) < 0)
            goto bad;
        if (*snap && !idxcmd_name_valid(snap, strlen(snap))) {
            snprintf(d.err, sizeof(d.err), "snapshot: a snapshot name");
            goto bad;
        }
        char *end = NULL;
        if (origin) org = strtoull(origin, &end, 16);
        if (origin && (*end || !org)) {
            snprintf(d.err, sizeof(d.err), "origin: 16 hex digits, not all zero");
            goto bad;
        }
        cmd.type = IDXCMD_IMPORT_END;
        cmd.u.import_end.vol = idxcmd_cstr(q->vol);
        cmd.u.import_end.agent = idxcmd_cstr(PROXY_BACKUP_AGENT);
        cmd.u.import_end.generation = gen;
        cmd.u.import_end.flags = commit ? IDXCMD_IMPORT_COMMIT : 0;
        cmd.u.import_end.snap = idxcmd_cstr(snap);
        cmd.u.import_end.origin = org;
        q->m.done = on_ended;
    }
    /* The command borrows the document's strings until it is encoded. */
    proxy_life_submit(p, &q->m, &cmd);
    jsonv_free(&d);
    return;
bad:
    admin_reply_error(r, 400, "%s", d.err);
    jsonv_free(&d);
    free(q);
}
