/* ctl_life.c: `blockd ctl`'s data-lifecycle commands over the admin API.
 *
 *   volume rollback VOL SNAP        VOL (detached) reads as SNAP again
 *   volume flatten CLONE [--wait]   copy what CLONE inherits into it
 *   snapshot group SNAP VOL...      one snapshot of several volumes, one point in time
 *   volume export VOL[@SNAP] FILE|-             a full stream
 *   volume export-diff VOL@FROM VOL[@TO] FILE|- the changes FROM..TO
 *   volume import FILE|- VOL                    a full stream into a new VOL
 *   volume import-diff FILE|- VOL               the changes onto VOL@FROM
 *
 * The stream (README "Incremental backup"), little-endian:
 *
 *  header                         OFFSET SIZE FIELD
 *                                   0     8   magic "BDEXPRT1"
 *                                   8     2   version 1
 *                                  10     1   kind: 1 full, 2 diff
 *                                  11     1   reserved 0
 *                                  12     4   block size, 4096
 *                                  16     8   size of the volume at TO
 *                                  24     8   FROM's identity (0 for full)
 *                                  32     8   TO's identity (0: the live volume)
 *                                  40     1+n the source volume's name (u8 length, bytes)
 *                                   .     1+n FROM's name (length 0 for full)
 *                                   .     1+n TO's name (length 0: the live volume)
 *                                   .     8   XXH3-64 of every header byte before it
 *  then records, at ascending, non-overlapping 4 KiB-aligned offsets below size:
 *   'D'  offset 8 | length 4 (4 KiB .. 4 MiB) | the bytes | XXH3-64 8 of the record before it
 *   'Z'  offset 8 | length 8 (it reads as zeroes)         | XXH3-64 8 of the record before it
 *   'E'  records 8 | data bytes 8 | XXH3-64 8 of the whole stream before it (nothing follows)
 *
 * Identities: the proxy names every snapshot by an identity (its origin
 * if it was imported, else a hash of cluster, volume id, name and raft
 * index); an import-diff is accepted only onto a volume whose snapshot
 * FROM carries the stream's FROM identity: not onto another volume, nor a
 * same-named snapshot of another point in time.
 *
 * All or nothing.  Export writes FILE.tmp and renames it at the end.
 * Import checks the header (and for a diff, the base) before changing
 * anything, then opens an import session (POST .../import: the volume is
 * attached to the importer, so no agent writes meanwhile), checks every
 * record's checksum before sending it, and only after the end record
 * checked out commits (the stream's TO snapshot is taken, with its
 * identity as origin).  A bad record, a truncated stream, a refused write
 * or a stream checksum mismatch aborts: the volume is rolled back to FROM
 * (a full import deletes the volume it created). */
#include "ctl_life.h"
#include "base/bd.h"
#include "base/bytes.h"
#include "base/util.h"
#include "net/httpc.h"
#include "net/wire.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#define TIMEOUT_MS 30000
#define STREAM_MAGIC "BDEXPRT1"
#define STREAM_VERSION 1
#define KIND_FULL 1
#define KIND_DIFF 2
#define REC_MAX (4u << 20)       /* data per D record, and per data read */
#define WRITE_MAX (11u * 4096u)  /* data per import write (PROXY_BACKUP_WRITE_MAX) */
#define ZERO_MAX (1ull << 30)    /* bytes per zero write */
#define RETRY_MS 60000           /* an import write answered 503 is sent again this long */

const char ctl_life_usage[] =
    "  volume rollback VOL SNAP   make a detached volume read as its snapshot SNAP\n"
    "  volume flatten CLONE [--wait]  copy what a clone inherits into it, so its\n"
    "                             parent snapshot can go; --wait shows progress\n"
    "  snapshot group SNAP VOL... one snapshot SNAP of several volumes at one point\n"
    "  volume export VOL[@SNAP] FILE|-         a full stream of a volume (or snapshot)\n"
    "  volume export-diff VOL@FROM VOL[@TO] FILE|-  what changed from FROM to TO\n"
    "  volume import FILE|- VOL   a full stream into a new volume VOL\n"
    "  volume import-diff FILE|- VOL  a diff stream onto VOL, which must hold its FROM\n";

/* ---- HTTP ---------------------------------------------------------------------- */

static int request(const struct ctl_life_ctx *cx, const char *method, const char *path,
                   const char *body, struct httpc_resp *r)
{
    int last = -ENOENT;
    for (int i = 0; i < cx->n_urls; i++) {
        struct httpc_target t = {.addr = cx->urls[i],
                                 .ca_file = cx->ca_file && cx->ca_file[0] ? cx->ca_file : NULL,
                                 .expect_role = WIRE_ROLE_PROXY,
                                 .token = cx->token[0] ? cx->token : NULL,
                                 .timeout_ms = TIMEOUT_MS};
        last = httpc_request(&t, method, path, body, r);
        if (last == 0) return 0;
    }
    fprintf(stderr, "blockd ctl: no proxy answered (%d tried): %s\n", cx->n_urls,
            bd_strerror(last));
    return last;
}

/* A non-2xx reply: its message on stderr, 1. */
static int server_error(struct httpc_resp *r, const char *what)
{
    cJSON *j = cJSON_Parse(r->body);
    const cJSON *e = j ? cJSON_GetObjectItemCaseSensitive(j, "error") : NULL;
    fprintf(stderr, "blockd ctl: %s%s%s (HTTP %d)\n", what ? what : "", what ? ": " : "",
            cJSON_IsString(e) ? e->valuestring : "request failed", r->status);
    cJSON_Delete(j);
    httpc_resp_free(r);
    return 1;
}

/* METHOD PATH with BODY (O, consumed, or NULL); the JSON answer in *OUT
 * (owned; NULL for an empty 2xx answer).  0, or 1 after printing why.
 * With RETRY (for requests that may be sent twice: an import write names
 * its offset, data and session generation), a 503 (the cluster briefly
 * cannot take it: no leader, no open partition) is sent again, backing
 * off from 100 ms to 2 s, for up to RETRY_MS. */
static int call_r(const struct ctl_life_ctx *cx, const char *method, const char *path, cJSON *o,
                  const char *what, cJSON **out, bool retry)
{
    char *body = NULL;
    if (o) {
        body = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!body) return 1;
    }
    struct httpc_resp r;
    uint64_t give_up = util_mono_ms() + RETRY_MS;
    unsigned pause_ms = 100;
    int rc;
    for (;;) {
        rc = request(cx, method, path, body, &r);
        if (rc < 0 || !retry || r.status != 503 || util_mono_ms() + pause_ms > give_up) break;
        httpc_resp_free(&r);
        struct timespec ts = {(time_t)(pause_ms / 1000), (long)(pause_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        pause_ms = BD_MIN(pause_ms * 2, 2000u);
    }
    free(body);
    if (rc < 0) return 1;
    if (r.status < 200 || r.status >= 300) return server_error(&r, what);
    if (out) *out = r.body_len ? cJSON_Parse(r.body) : NULL;
    if (out && r.body_len && !*out) {
        fprintf(stderr, "blockd ctl: the server sent invalid JSON\n");
        httpc_resp_free(&r);
        return 1;
    }
    if (cx->json && !out && r.body_len) fputs(r.body, stdout);
    httpc_resp_free(&r);
    return 0;
}

static int call(const struct ctl_life_ctx *cx, const char *method, const char *path, cJSON *o,
                const char *what, cJSON **out)
{
    return call_r(cx, method, path, o, what, out, false);
}

/* "/v1/volumes/" NAME TAIL: names are [A-Za-z0-9._-]; anything else is
 * refused here so it never reaches a URL. */
static bool vol_path(char *buf, size_t len, const char *name, const char *tail)
{
    if (!*name || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
                      != strlen(name) || name[0] == '.' || name[0] == '-' ||
        strlen(name) > 255) {
        fprintf(stderr, "blockd ctl: '%.80s' is not a name ([A-Za-z0-9._-], 1-255)\n", name);
        return false;
    }
    snprintf(buf, len, "/v1/volumes/%s%s", name, tail);
    return true;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static uint64_t hex64(const char *s)
{
    return s ? strtoull(s, NULL, 16) : 0;
}

/* ---- rollback, flatten, group ----------------------------------------------------- */

static int cmd_rollback(const struct ctl_life_ctx *cx, const char *vol, const char *snap)
{
    char path[300];
    if (!vol_path(path, sizeof(path), vol, "/rollback")) return 2;
    cJSON *o = cJSON_CreateObject(), *v = NULL;
    cJSON_AddStringToObject(o, "snapshot", snap);
    if (call(cx, "POST", path, o, NULL, cx->json ? NULL : &v)) return 1;
    if (!cx->json) printf("%s rolled back to %s (%.0f bytes)\n", vol, snap, num(v, "size"));
    cJSON_Delete(v);
    return 0;
}

static int cmd_flatten(const struct ctl_life_ctx *cx, const char *vol, bool wait)
{
    char path[300];
    if (!vol_path(path, sizeof(path), vol, "/flatten")) return 2;
    cJSON *v = NULL;
    if (call(cx, "POST", path, NULL, NULL, cx->json && !wait ? NULL : &v)) return 1;
    for (;;) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(v, "flatten");
        if (!cJSON_IsObject(f)) {
            if (!cx->json) printf("%s is flat: it no longer reads through a snapshot\n", vol);
            break;
        }
        if (!wait) {
            if (!cx->json)
                printf("flattening %s: %.0f%% (%.0f bytes copied); `volume info %s` shows "
                       "progress\n", vol, num(f, "percent"), num(f, "copied_bytes"), vol);
            break;
        }
        if (!cx->json)
            fprintf(stderr, "flattening %s: %.0f%% (%.0f bytes copied)\n", vol,
                    num(f, "percent"), num(f, "copied_bytes"));
        cJSON_Delete(v);
        v = NULL;
        sleep(1);
        if (!vol_path(path, sizeof(path), vol, "") || call(cx, "GET", path, NULL, NULL, &v))
            return 1;
    }
    cJSON_Delete(v);
    return 0;
}

static int cmd_group(const struct ctl_life_ctx *cx, const char *snap, int n, char **vols)
{
    cJSON *o = cJSON_CreateObject(), *out = NULL;
    cJSON_AddStringToObject(o, "name", snap);
    cJSON *arr = cJSON_AddArrayToObject(o, "volumes");
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(vols[i]));
    if (call(cx, "POST", "/v1/snapshots", o, NULL, cx->json ? NULL : &out)) return 1;
    if (!cx->json) {
        const cJSON *s;
        cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(out, "snapshots"))
            printf("snapshot %s of %s created (%s)\n", snap, str(s, "volume"), str(s, "note"));
    }
    cJSON_Delete(out);
    return 0;
}

/* ---- the stream: writing ---------------------------------------------------------- */

struct sout {
    FILE *f;
    XXH3_state_t st;           /* every byte so far */
    uint64_t records, data_bytes;
    int err;
};

static void out_bytes(struct sout *o, const void *p, size_t n)
{
    if (o->err) return;
    XXH3_64bits_update(&o->st, p, n);
    if (fwrite(p, 1, n, o->f) != n) o->err = -errno ? -errno : -EIO;
}

/* Write the header: the layout above, then its checksum. */
static void out_header(struct sout *o, uint8_t kind, uint64_t size, uint64_t from_id,
                       uint64_t to_id, const char *vol, const char *from, const char *to)
{
    uint8_t b[40 + 3 * 256 + 8];
    struct bytes_w w;
    bw_init(&w, b, sizeof(b));
    bw_mem(&w, STREAM_MAGIC, 8);
    bw_u16(&w, STREAM_VERSION);
    bw_u8(&w, kind);
    bw_zeros(&w, 1);
    bw_u32(&w, 4096);
    bw_u64(&w, size);
    bw_u64(&w, from_id);
    bw_u64(&w, to_id);
    const char *names[3] = {vol, from ? from : "", to ? to : ""};
    for (int i = 0; i < 3; i++) {
        bw_u8(&w, (uint8_t)strlen(names[i]));
        bw_mem(&w, names[i], strlen(names[i]));
    }
    bw_u64(&w, XXH3_64bits(b, w.used));
    out_bytes(o, b, w.used);
}

/* A D record of N bytes at OFF, or (DATA NULL) a Z record of N. */
static void out_record(struct sout *o, uint64_t off, uint64_t n, const uint8_t *data)
{
    uint8_t h[24];
    struct bytes_w w;
    bw_init(&w, h, sizeof(h));
    bw_u8(&w, data ? 'D' : 'Z');
    bw_u64(&w, off);
    if (data) bw_u32(&w, (uint32_t)n);
    else bw_u64(&w, n);
    XXH3_state_t r;
    XXH3_64bits_reset(&r);
    XXH3_64bits_update(&r, h, w.used);
    out_bytes(o, h, w.used);
    if (data) {
        XXH3_64bits_update(&r, data, n);
        out_bytes(o, data, n);
        o->data_bytes += n;
    }
    uint8_t c[8];
    bytes_put_le64(c, XXH3_64bits_digest(&r));
    out_bytes(o, c, 8);
    o->records++;
}

static void out_end(struct sout *o)
{
    uint8_t e[17];
    struct bytes_w w;
    bw_init(&w, e, sizeof(e));
    bw_u8(&w, 'E');
    bw_u64(&w, o->records);
    bw_u64(&w, o->data_bytes);
    out_bytes(o, e, w.used);
    uint8_t c[8];
    bytes_put_le64(c, XXH3_64bits_digest(&o->st));
    out_bytes(o, c, 8);
}

/* Split "VOL[@SNAP]" into VOL and SNAP (NULL if none). */
static bool spec(const char *s, char *vol, size_t vlen, const char **snap)
{
    const char *at = strchr(s, '@');
    size_t n = at ? (size_t)(at - s) : strlen(s);
    if (n == 0 || n >= vlen || (at && !at[1])) {
        fprintf(stderr, "blockd ctl: '%.80s': expected VOLUME or VOLUME@SNAPSHOT\n", s);
        return false;
    }
    memcpy(vol, s, n);
    vol[n] = 0;
    *snap = at ? at + 1 : NULL;
    return true;
}

/* Export the changes of VOL from FROM (NULL: full) to TO (NULL: live)
 * into FILE ("-": stdout). */
static int export(const struct ctl_life_ctx *cx, const char *vol, const char *from,
                  const char *to, const char *file)
{
    char base[300], path[1024], tmp[4096];
    if (!vol_path(base, sizeof(base), vol, "")) return 2;
    bool std = strcmp(file, "-") == 0;
    struct sout o = {.f = stdout};
    XXH3_64bits_reset(&o.st);
    if (!std) {
        snprintf(tmp, sizeof(tmp), "%s.tmp", file);
        if (!(o.f = fopen(tmp, "wb"))) {
            fprintf(stderr, "blockd ctl: %s: %s\n", tmp, strerror(errno));
            return 1;
        }
    }
    int rc = 1;
    uint8_t *buf = malloc(REC_MAX);
    uint64_t next = 0;
    bool header = false;
    while (buf) {
        snprintf(path, sizeof(path), "%s/diff?offset=%llu%s%s%s%s", base,
                 (unsigned long long)next, from ? "&from=" : "", from ? from : "",
                 to ? "&to=" : "", to ? to : "");
        cJSON *d = NULL;
        if (call(cx, "GET", path, NULL, from ? "export-diff" : "export", &d) || !d) goto out;
        if (!header) {
            out_header(&o, from ? KIND_DIFF : KIND_FULL, (uint64_t)num(d, "size"),
                       hex64(str(d, "from_identity")), hex64(str(d, "to_identity")), vol, from,
                       to);
            header = true;
        }
        const cJSON *rg;
        cJSON_ArrayForEach(rg, cJSON_GetObjectItemCaseSensitive(d, "ranges")) {
            uint64_t off = (uint64_t)num(rg, "offset"), len = (uint64_t)num(rg, "length");
            bool data = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rg, "data"));
            if (!data) {
                /* A full stream starts from zeroes: it needs no zero records. */
                if (from) out_record(&o, off, len, NULL);
                continue;
            }
            for (uint64_t at = off; at < off + len; at += REC_MAX) {
                uint64_t n = BD_MIN((uint64_t)REC_MAX, off + len - at);
                struct httpc_resp r;
                snprintf(path, sizeof(path), "%s/data?offset=%llu&length=%llu%s%s", base,
                         (unsigned long long)at, (unsigned long long)n, to ? "&snapshot=" : "",
                         to ? to : "");
                if (request(cx, "GET", path, NULL, &r) < 0) {
                    cJSON_Delete(d);
                    goto out;
                }
                if (r.status != 200) {
                    server_error(&r, "export: read");
                    cJSON_Delete(d);
                    goto out;
                }
                if (r.body_len != n) {
                    fprintf(stderr, "blockd ctl: export: asked %llu bytes, got %zu\n",
                            (unsigned long long)n, r.body_len);
                    httpc_resp_free(&r);
                    cJSON_Delete(d);
                    goto out;
                }
                memcpy(buf, r.body, n);
                httpc_resp_free(&r);
                out_record(&o, at, n, buf);
            }
        }
        const cJSON *nx = cJSON_GetObjectItemCaseSensitive(d, "next_offset");
        bool more = cJSON_IsNumber(nx);
        if (more) next = (uint64_t)nx->valuedouble;
        cJSON_Delete(d);
        if (!more) break;
    }
    if (!buf) goto out;
    out_end(&o);
    if (fflush(o.f) != 0 && !o.err) o.err = -errno;
    if (!std && fsync(fileno(o.f)) != 0 && !o.err) o.err = -errno;
    if (o.err) {
        fprintf(stderr, "blockd ctl: writing %s: %s\n", std ? "stdout" : tmp, bd_strerror(o.err));
        goto out;
    }
    if (!std && rename(tmp, file) != 0) {
        fprintf(stderr, "blockd ctl: rename %s: %s\n", tmp, strerror(errno));
        goto out;
    }
    if (!std) fprintf(stderr, "%s: %llu records, %llu data bytes\n", file,
                      (unsigned long long)o.records, (unsigned long long)o.data_bytes);
    rc = 0;
out:
    free(buf);
    if (!std) {
        fclose(o.f);
        if (rc) unlink(tmp);
    }
    return rc;
}

/* ---- the stream: reading ------------------------------------------------------------ */

struct sin {
    FILE *f;
    XXH3_state_t st;
    const char *name;
};

struct shdr {
    uint8_t kind;
    uint64_t size, from_id, to_id;
    char vol[256], from[256], to[256];
};

/* N bytes or a complaint (0 or 1). */
static int in_bytes(struct sin *in, void *p, size_t n)
{
    if (fread(p, 1, n, in->f) != n) {
        fprintf(stderr, "blockd ctl: %s: %s\n", in->name,
                ferror(in->f) ? strerror(errno) : "truncated stream (no end record)");
        return 1;
    }
    XXH3_64bits_update(&in->st, p, n);
    return 0;
}

static int bad_stream(struct sin *in, const char *why)
{
    fprintf(stderr, "blockd ctl: %s: not a valid stream: %s\n", in->name, why);
    return 1;
}

static int in_header(struct sin *in, struct shdr *h)
{
    uint8_t b[40 + 3 * 256 + 8];
    if (in_bytes(in, b, 41)) return 1;
    struct bytes_r r;
    br_init(&r, b, 40);
    const uint8_t *magic = br_take(&r, 8);
    uint16_t version = br_u16(&r);
    h->kind = br_u8(&r);
    uint8_t reserved = br_u8(&r);
    uint32_t bs = br_u32(&r);
    h->size = br_u64(&r);
    h->from_id = br_u64(&r);
    h->to_id = br_u64(&r);
    if (memcmp(magic, STREAM_MAGIC, 8) != 0) return bad_stream(in, "no BDEXPRT1 magic");
    if (version != STREAM_VERSION) return bad_stream(in, "unknown version");
    if ((h->kind != KIND_FULL && h->kind != KIND_DIFF) || reserved || bs != 4096 ||
        !h->size || h->size % 4096 || (h->kind == KIND_FULL) != (h->from_id == 0))
        return bad_stream(in, "bad header fields");
    size_t at = 40;
    char *names[3] = {h->vol, h->from, h->to};
    for (int i = 0; i < 3; i++) {
        uint8_t n = b[at++];
        if (in_bytes(in, b + at, n + (i < 2 ? 1 : 0))) return 1;
        memcpy(names[i], b + at, n);
        names[i][n] = 0;
        at += n;
    }
    uint64_t want = XXH3_64bits(b, at);
    uint8_t c[8];
    if (in_bytes(in, c, 8)) return 1;
    if (bytes_get_le64(c) != want) return bad_stream(in, "header checksum mismatch");
    if ((h->kind == KIND_DIFF) != (h->from[0] != 0) || (h->to[0] != 0) != (h->to_id != 0))
        return bad_stream(in, "header names and identities disagree");
    return 0;
}

/* ---- import --------------------------------------------------------------------------- */

struct session {
    const struct ctl_life_ctx *cx;
    char base[300];
    uint64_t generation;
};

static char *b64(const uint8_t *p, size_t n)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *s = malloc((n + 2) / 3 * 4 + 1), *o = s;
    if (!s) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        *o++ = al[v >> 18 & 63];
        *o++ = al[v >> 12 & 63];
        *o++ = i + 1 < n ? al[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? al[v & 63] : '=';
    }
    *o = 0;
    return s;
}

static int session_write(struct session *s, uint64_t off, uint64_t n, const uint8_t *data)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/import/write", s->base);
    if (!data) {
        for (uint64_t at = off; at < off + n; at += ZERO_MAX) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "generation", (double)s->generation);
            cJSON_AddNumberToObject(o, "offset", (double)at);
            cJSON_AddNumberToObject(o, "length", (double)BD_MIN(ZERO_MAX, off + n - at));
            cJSON_AddBoolToObject(o, "zero", true);
            if (call_r(s->cx, "POST", path, o, "import", NULL, true)) return 1;
        }
        return 0;
    }
    for (uint64_t at = 0; at < n; at += WRITE_MAX) {
        size_t k = (size_t)BD_MIN((uint64_t)WRITE_MAX, n - at);
        char *enc = b64(data + at, k);
        if (!enc) return 1;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "generation", (double)s->generation);
        cJSON_AddNumberToObject(o, "offset", (double)(off + at));
        cJSON_AddStringToObject(o, "data", enc);
        free(enc);
        if (call_r(s->cx, "POST", path, o, "import", NULL, true)) return 1;
    }
    return 0;
}

static int session_end(struct session *s, bool commit, const char *snap, uint64_t origin)
{
    char path[400], hex[24];
    snprintf(path, sizeof(path), "%s/import/end", s->base);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "generation", (double)s->generation);
    cJSON_AddBoolToObject(o, "commit", commit);
    if (snap && *snap) cJSON_AddStringToObject(o, "snapshot", snap);
    if (commit && origin) {
        snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)origin);
        cJSON_AddStringToObject(o, "origin", hex);
    }
    return call(s->cx, "POST", path, o, commit ? "import: commit" : "import: abort", NULL);
}

/* Stream the records of IN into session S; 0 once the end record checked
 * out, 1 (after printing why) otherwise. */
static int import_records(struct sin *in, const struct shdr *h, struct session *s)
{
    uint8_t *buf = malloc(REC_MAX);
    uint64_t records = 0, data_bytes = 0, min_off = 0;
    int rc = 1;
    while (buf) {
        uint8_t t;
        if (in_bytes(in, &t, 1)) break;
        if (t == 'E') {
            uint8_t e[16], c[8];
            if (in_bytes(in, e, 16)) break;
            uint64_t want = XXH3_64bits_digest(&in->st);
            if (fread(c, 1, 8, in->f) != 8) {
                fprintf(stderr, "blockd ctl: %s: truncated stream (end record)\n", in->name);
                break;
            }
            if (bytes_get_le64(c) != want) {
                bad_stream(in, "stream checksum mismatch");
                break;
            }
            if (bytes_get_le64(e) != records || bytes_get_le64(e + 8) != data_bytes) {
                bad_stream(in, "record count or data bytes disagree with the end record");
                break;
            }
            if (fgetc(in->f) != EOF) {
                bad_stream(in, "bytes after the end record");
                break;
            }
            rc = 0;
            break;
        }
        if (t != 'D' && t != 'Z') {
            bad_stream(in, "unknown record type");
            break;
        }
        XXH3_state_t r;
        XXH3_64bits_reset(&r);
        XXH3_64bits_update(&r, &t, 1);
        uint8_t f[16];
        size_t fl = t == 'D' ? 12 : 16;
        if (in_bytes(in, f, fl)) break;
        XXH3_64bits_update(&r, f, fl);
        uint64_t off = bytes_get_le64(f);
        uint64_t n = t == 'D' ? bytes_get_le32(f + 8) : bytes_get_le64(f + 8);
        if (!n || off % 4096 || n % 4096 || off < min_off || off > h->size || n > h->size - off ||
            (t == 'D' && n > REC_MAX)) {
            bad_stream(in, "a record out of order, unaligned, too long or past the end");
            break;
        }
        if (t == 'D') {
            if (in_bytes(in, buf, n)) break;
            XXH3_64bits_update(&r, buf, n);
        }
        uint8_t c[8];
        if (in_bytes(in, c, 8)) break;
        if (bytes_get_le64(c) != XXH3_64bits_digest(&r)) {
            bad_stream(in, "record checksum mismatch");
            break;
        }
        if (session_write(s, off, n, t == 'D' ? buf : NULL)) break;
        records++;
        if (t == 'D') data_bytes += n;
        min_off = off + n;
    }
    free(buf);
    return rc;
}

static int import(const struct ctl_life_ctx *cx, const char *file, const char *vol, bool diff)
{
    struct sin in = {.f = stdin, .name = file};
    XXH3_64bits_reset(&in.st);
    struct session s = {.cx = cx};
    if (!vol_path(s.base, sizeof(s.base), vol, "")) return 2;
    if (strcmp(file, "-") != 0 && !(in.f = fopen(file, "rb"))) {
        fprintf(stderr, "blockd ctl: %s: %s\n", file, strerror(errno));
        return 1;
    }
    int rc = 1;
    struct shdr h;
    bool created = false;
    cJSON *j = NULL;
    char path[400];
    if (in_header(&in, &h)) goto out;
    if (diff && h.kind != KIND_DIFF) {
        bad_stream(&in, "a full stream: use `volume import`");
        goto out;
    }
    if (!diff && h.kind != KIND_FULL) {
        bad_stream(&in, "a diff stream: use `volume import-diff`");
        goto out;
    }
    uint64_t size = h.size;
    if (diff) {
        /* The base must be the stream's, by identity: not another
         * volume's, not another point in time under the same name. */
        snprintf(path, sizeof(path), "%s/snapshots", s.base);
        if (call(cx, "GET", path, NULL, "import-diff", &j)) goto out;
        const cJSON *sn, *base = NULL;
        cJSON_ArrayForEach(sn, cJSON_GetObjectItemCaseSensitive(j, "snapshots")) {
            if (str(sn, "name") && !strcmp(str(sn, "name"), h.from)) base = sn;
            if (h.to[0] && str(sn, "name") && !strcmp(str(sn, "name"), h.to)) {
                fprintf(stderr, "blockd ctl: %s already has a snapshot %s (the stream's end)\n",
                        vol, h.to);
                goto out;
            }
        }
        if (!base) {
            fprintf(stderr, "blockd ctl: wrong base: %s has no snapshot %s; the stream is the "
                    "changes of %s from %s to %s\n", vol, h.from, h.vol, h.from,
                    h.to[0] ? h.to : "its live state");
            goto out;
        }
        if (hex64(str(base, "identity")) != h.from_id) {
            fprintf(stderr, "blockd ctl: wrong base: %s@%s is not the snapshot the stream starts "
                    "from (%s@%s, identity %016llx; %s's is %s): another volume, or another "
                    "point in time\n", vol, h.from, h.vol, h.from,
                    (unsigned long long)h.from_id, h.from, str(base, "identity"));
            goto out;
        }
        size = BD_MAX(size, (uint64_t)num(base, "size"));
        cJSON_Delete(j);
        j = NULL;
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", vol);
        char sz[32];
        snprintf(sz, sizeof(sz), "%llu", (unsigned long long)h.size);
        cJSON_AddStringToObject(o, "size", sz);
        if (call(cx, "POST", "/v1/volumes", o, "import: create", NULL)) goto out;
        created = true;
    }
    cJSON *o = cJSON_CreateObject();
    char sz[32];
    snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
    cJSON_AddStringToObject(o, "size", sz);
    if (diff) cJSON_AddStringToObject(o, "from", h.from);
    snprintf(path, sizeof(path), "%s/import", s.base);
    if (call(cx, "POST", path, o, "import", &j)) goto out;
    s.generation = (uint64_t)num(j, "generation");
    if (import_records(&in, &h, &s) == 0) {
        rc = session_end(&s, true, h.to, h.to_id);
        if (rc == 0 && !cx->json)
            fprintf(stderr, "%s: imported%s%s%s\n", vol, h.to[0] ? " as of snapshot " : "",
                    h.to, diff ? " (diff)" : "");
        if (rc == 0) goto out;
    }
    /* Nothing partly imported: back to the base. */
    if (session_end(&s, false, diff ? h.from : "", 0) == 0)
        fprintf(stderr, "blockd ctl: %s: nothing imported (%s)\n", vol,
                diff ? "rolled back to the base" : "the new volume is removed");
    rc = 1;
out:
    if (rc && created) {
        struct httpc_resp r;
        if (request(cx, "DELETE", s.base, NULL, &r) == 0) httpc_resp_free(&r);
    }
    cJSON_Delete(j);
    if (in.f != stdin) fclose(in.f);
    return rc;
}

/* ---- dispatch ------------------------------------------------------------------------ */

int ctl_life_main(const struct ctl_life_ctx *cx, int nargs, char **a)
{
    char vol[256], vol2[256];
    const char *snap, *snap2;
    if (nargs >= 3 && !strcmp(a[0], "snapshot") && !strcmp(a[1], "group"))
        return nargs >= 4 ? cmd_group(cx, a[2], nargs - 3, a + 3) : 2;
    if (nargs < 2 || strcmp(a[0], "volume") != 0) return -1;
    const char *c = a[1];
    if (!strcmp(c, "rollback") && nargs == 4) return cmd_rollback(cx, a[2], a[3]);
    if (!strcmp(c, "flatten") && (nargs == 3 || (nargs == 4 && !strcmp(a[3], "--wait"))))
        return cmd_flatten(cx, a[2], nargs == 4);
    if (!strcmp(c, "export") && nargs == 4)
        return spec(a[2], vol, sizeof(vol), &snap) ? export(cx, vol, NULL, snap, a[3]) : 2;
    if (!strcmp(c, "export-diff") && nargs == 5) {
        if (!spec(a[2], vol, sizeof(vol), &snap) || !spec(a[3], vol2, sizeof(vol2), &snap2))
            return 2;
        if (!snap || strcmp(vol, vol2) != 0) {
            fprintf(stderr, "blockd ctl: export-diff VOL@FROM VOL[@TO]: FROM must be a "
                    "snapshot, both of one volume\n");
            return 2;
        }
        return export(cx, vol, snap, snap2, a[4]);
    }
    if (!strcmp(c, "import") && nargs == 4) return import(cx, a[2], a[3], false);
    if (!strcmp(c, "import-diff") && nargs == 4) return import(cx, a[2], a[3], true);
    return -1;
}
