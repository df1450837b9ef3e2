/* index_dump.c: the whole-index views: digest, statistics, and the dump /
 * load pair that carries a Raft snapshot (format in index.h).
 *
 * Why a record stream and not mdb_env_copyfd2(): a compacting copy of the
 * environment is a valid LMDB file but an opaque one.  The stream is
 * smaller (no page headers, no half-empty pages: about half the file for
 * random extents), can be validated completely before anything is
 * replaced (checksum, table numbers, key order, lengths, cluster id), and
 * loads with MDB_APPEND into fresh, full pages inside ONE write transaction
 * of the live environment: no second file, no reopen, no window in which
 * the environment is closed under a concurrent reader, and a crash leaves
 * the old index or the new one.  The digest is defined over the same
 * record encoding, so a load checks that the tables it wrote hash to the
 * digest the dumping replica computed.
 *
 * Consistency: a dump runs in one read txn, so it is the index at exactly
 * one applied index (the one in its header, read in the same txn). */
#include "store/index/index.h"
#include "store/index/index_int.h"
#include "base/bd.h"
#include "base/bytes.h"

#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

/* The dump format: the tables in index.h. */
#define DUMP_MAGIC "BDIXDMP1"
#define DUMP_MAGIC_LEN 8
#define DUMP_VERSION 2 /* 2: index schema 2 (usage, QoS profiles and limits) */
#define DUMP_HDR_LEN 24
#define DUMP_TRAILER_LEN 24
#define DUMP_REC_HDR 7
#define DUMP_KEY_MAX 511      /* LMDB's default maximum key size */
#define DUMP_VAL_MAX 65536

/* A record's header (its key and value follow it). */
static void rec_hdr(uint8_t h[DUMP_REC_HDR], int t, const MDB_val *k, const MDB_val *v)
{
    struct bytes_w w;
    bw_init(&w, h, DUMP_REC_HDR);
    bw_u8(&w, (uint8_t)t);
    bw_u16(&w, (uint16_t)k->mv_size);
    bw_u32(&w, (uint32_t)v->mv_size);
}

/* Decode the header of the dump BUF[LEN] (LEN covers the whole dump):
 * 0, or -EINVAL if it is too short, not a dump, of another version or,
 * when STRICT, has nonzero reserved bytes. */
static int hdr_get(const uint8_t *b, size_t len, bool strict, uint64_t *applied)
{
    if (len < DUMP_HDR_LEN + DUMP_TRAILER_LEN) return -EINVAL;
    struct bytes_r r;
    br_init(&r, b, DUMP_HDR_LEN);
    const uint8_t *magic = br_take(&r, DUMP_MAGIC_LEN);
    uint32_t version = br_u32(&r);
    if (strict) br_zeros(&r, 4);
    else br_skip(&r, 4);
    *applied = br_u64(&r);
    if (r.err || memcmp(magic, DUMP_MAGIC, DUMP_MAGIC_LEN) != 0 || version != DUMP_VERSION)
        return -EINVAL;
    return 0;
}

typedef int walk_fn(void *arg, int t, const MDB_val *k, const MDB_val *v);

/* Walk every record of table T in key order, calling FN. */
static int walk_table(struct index *ix, MDB_txn *txn, int t, walk_fn *fn, void *arg)
{
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(txn, ix->dbi[t], &cur);
    if (mrc) return index_mdb_err(mrc);
    MDB_val k, v;
    int rc = 0;
    mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (mrc == 0) {
        if ((rc = fn(arg, t, &k, &v))) break;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc) return rc;
    return mrc == MDB_NOTFOUND ? 0 : index_mdb_err(mrc);
}

/* Walk every record of every table in digest order, calling FN. */
static int walk_all(struct index *ix, MDB_txn *txn, walk_fn *fn, void *arg)
{
    for (int t = 0; t < INDEX_T_N; t++) {
        int rc = walk_table(ix, txn, t, fn, arg);
        if (rc) return rc;
    }
    return 0;
}

static int digest_rec(void *arg, int t, const MDB_val *k, const MDB_val *v)
{
    XXH3_state_t *st = arg;
    uint8_t h[DUMP_REC_HDR];
    rec_hdr(h, t, k, v);
    XXH3_64bits_update(st, h, sizeof(h));
    XXH3_64bits_update(st, k->mv_data, k->mv_size);
    XXH3_64bits_update(st, v->mv_data, v->mv_size);
    return 0;
}

static int digest_txn(struct index *ix, MDB_txn *txn, uint64_t *out)
{
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    int rc = walk_all(ix, txn, digest_rec, &st);
    if (rc == 0) *out = XXH3_64bits_digest(&st);
    return rc;
}

int index_digest(struct index_reader *rd, uint64_t *out)
{
    if (BD_NEVER(!rd->active)) return -EINVAL;
    return digest_txn(rd->ix, rd->txn, out);
}

int index_stats(struct index_reader *rd, struct index_stats *out)
{
    if (BD_NEVER(!rd->active)) return -EINVAL;
    memset(out, 0, sizeof(*out));
    uint64_t *counts[INDEX_T_N] = {
        [INDEX_T_VOLUMES] = &out->volumes,       [INDEX_T_LAYERS] = &out->layers,
        [INDEX_T_EXTENTS] = &out->extents,       [INDEX_T_BLOBS] = &out->blobs,
        [INDEX_T_PARTITIONS] = &out->partitions, [INDEX_T_NODES] = &out->nodes,
        [INDEX_T_SNAPSHOTS] = &out->snapshots,   [INDEX_T_GC] = &out->gc,
        [INDEX_T_REAP] = &out->reap,             [INDEX_T_MOVES] = &out->moves,
    };
    for (int t = 0; t < INDEX_T_N; t++) {
        MDB_stat ms;
        int mrc = mdb_stat(rd->txn, rd->ix->dbi[t], &ms);
        if (mrc) return index_mdb_err(mrc);
        if (counts[t]) *counts[t] = ms.ms_entries;
        out->pages += ms.ms_branch_pages + ms.ms_leaf_pages + ms.ms_overflow_pages;
        out->page_size = ms.ms_psize;
    }
    MDB_envinfo info;
    int mrc = mdb_env_info(rd->ix->env, &info);
    if (mrc) return index_mdb_err(mrc);
    out->file_pages = (uint64_t)info.me_last_pgno + 1;
    out->map_bytes = info.me_mapsize;
    return 0;
}

static int space_rec(void *arg, int t, const MDB_val *k, const MDB_val *v)
{
    struct index_space *sp = arg;
    if (t == INDEX_T_EXTENTS) {
        struct index_ext e;
        int rc = index_dec_ext(k, v, &e);
        if (rc) return rc;
        if (!(e.flags & INDEX_EXT_ZERO)) sp->data_bytes += e.len;
    } else {
        struct index_blob b;
        int rc = k->mv_size == INDEX_ID_KEY_LEN
                     ? index_dec_blob(index_key_get_u64(k->mv_data), v, &b)
                     : -BD_ECORRUPT;
        if (rc) return rc;
        if (b.flags & INDEX_BLOB_DEAD) sp->dead_bytes += b.len;
        else sp->blob_bytes += b.len;
    }
    return 0;
}

int index_space(struct index_reader *rd, struct index_space *out)
{
    if (BD_NEVER(!rd->active)) return -EINVAL;
    memset(out, 0, sizeof(*out));
    int rc = walk_table(rd->ix, rd->txn, INDEX_T_EXTENTS, space_rec, out);
    return rc ? rc : walk_table(rd->ix, rd->txn, INDEX_T_BLOBS, space_rec, out);
}

/* ---- dump --------------------------------------------------------------------- */

struct dump_ctx {
    int (*emit)(void *arg, const void *buf, size_t len);
    void *arg;
    XXH3_state_t csum;         /* every byte of the stream */
    XXH3_state_t digest;       /* the records only */
    uint64_t records;
    uint8_t buf[65536];        /* staged bytes, flushed when nearly full */
    size_t used;
};

static int dump_flush(struct dump_ctx *d)
{
    if (!d->used) return 0;
    XXH3_64bits_update(&d->csum, d->buf, d->used);
    int rc = d->emit(d->arg, d->buf, d->used);
    d->used = 0;
    return rc;
}

static int dump_put(struct dump_ctx *d, const void *p, size_t len)
{
    if (d->used + len > sizeof(d->buf)) {
        int rc = dump_flush(d);
        if (rc) return rc;
    }
    memcpy(d->buf + d->used, p, len);
    d->used += len;
    return 0;
}

static int dump_rec(void *arg, int t, const MDB_val *k, const MDB_val *v)
{
    struct dump_ctx *d = arg;
    if (k->mv_size > DUMP_KEY_MAX || v->mv_size > DUMP_VAL_MAX) return -BD_ECORRUPT;
    uint8_t h[DUMP_REC_HDR];
    rec_hdr(h, t, k, v);
    int rc;
    if ((rc = dump_put(d, h, sizeof(h))) || (rc = dump_put(d, k->mv_data, k->mv_size)) ||
        (rc = dump_put(d, v->mv_data, v->mv_size)))
        return rc;
    XXH3_64bits_update(&d->digest, h, sizeof(h));
    XXH3_64bits_update(&d->digest, k->mv_data, k->mv_size);
    XXH3_64bits_update(&d->digest, v->mv_data, v->mv_size);
    d->records++;
    return 0;
}

int index_dump(struct index_reader *rd, int (*emit)(void *arg, const void *buf, size_t len),
               void *arg)
{
    if (BD_NEVER(!rd->active)) return -EINVAL;
    struct dump_ctx *d = malloc(sizeof(*d));
    if (!d) return -ENOMEM;
    d->emit = emit;
    d->arg = arg;
    d->used = 0;
    d->records = 0;
    XXH3_64bits_reset(&d->csum);
    XXH3_64bits_reset(&d->digest);
    struct index_meta m;
    int rc = index_txn_get_meta(rd->ix, rd->txn, &m);
    if (rc) goto out;
    uint8_t h[DUMP_HDR_LEN];
    struct bytes_w w;
    bw_init(&w, h, sizeof(h));
    bw_mem(&w, DUMP_MAGIC, DUMP_MAGIC_LEN);
    bw_u32(&w, DUMP_VERSION);
    bw_zeros(&w, 4);
    bw_u64(&w, m.applied);
    if ((rc = dump_put(d, h, sizeof(h)))) goto out;
    if ((rc = walk_all(rd->ix, rd->txn, dump_rec, d))) goto out;
    /* The trailer's checksum covers its first two fields: they are staged
     * and flushed before it is computed. */
    uint8_t t[DUMP_TRAILER_LEN];
    bw_init(&w, t, sizeof(t));
    bw_u64(&w, d->records);
    bw_u64(&w, XXH3_64bits_digest(&d->digest));
    if ((rc = dump_put(d, t, w.used)) || (rc = dump_flush(d))) goto out;
    bw_u64(&w, XXH3_64bits_digest(&d->csum));
    rc = emit(arg, t + 16, 8);
out:
    free(d);
    return rc;
}

int index_dump_applied(const void *buf, size_t len, uint64_t *applied)
{
    return hdr_get(buf, len, false, applied);
}

/* ---- load ------------------------------------------------------------------------ */

/* LMDB's default key order: bytes, then length (mdb_cmp_memn). */
static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    int c = memcmp(a, b, BD_MIN(alen, blen));
    return c ? c : (alen < blen ? -1 : alen > blen);
}

struct load_rec {
    int t;
    MDB_val k, v;
};

/* Parse the record at *POS of the records area [0, END); 1 with *R, 0 at the
 * end, -BD_ECORRUPT if malformed. */
static int next_rec(const uint8_t *b, size_t end, size_t *pos, struct load_rec *r)
{
    if (*pos == end) return 0;
    struct bytes_r g;
    br_init(&g, b + *pos, end - *pos);
    uint8_t t = br_u8(&g);
    uint16_t klen = br_u16(&g);
    uint32_t vlen = br_u32(&g);
    if (g.err || t >= INDEX_T_N || klen == 0 || klen > DUMP_KEY_MAX || vlen > DUMP_VAL_MAX)
        return -BD_ECORRUPT;
    const uint8_t *k = br_take(&g, klen), *v = br_take(&g, vlen);
    if (g.err) return -BD_ECORRUPT;
    r->t = t;
    r->k.mv_size = klen;
    r->k.mv_data = (void *)k;
    r->v.mv_size = vlen;
    r->v.mv_data = (void *)v;
    *pos += g.used;
    return 1;
}

static int load_check(struct index *ix, const uint8_t *b, size_t len, uint64_t *applied,
                      uint64_t *records, uint64_t *digest)
{
    int rc = hdr_get(b, len, true, applied);
    if (rc) return rc;
    struct bytes_r t;
    br_init(&t, b + len - DUMP_TRAILER_LEN, DUMP_TRAILER_LEN);
    *records = br_u64(&t);
    *digest = br_u64(&t);
    if (XXH3_64bits(b, len - 8) != br_u64(&t)) return -BD_ECORRUPT;
    size_t end = len - DUMP_TRAILER_LEN, pos = DUMP_HDR_LEN;
    struct load_rec r, prev = {.t = -1};
    uint64_t n = 0;
    bool cluster_seen = false;
    while ((rc = next_rec(b, end, &pos, &r)) == 1) {
        if (r.t < prev.t || (r.t == prev.t && key_cmp(prev.k.mv_data, prev.k.mv_size,
                                                      r.k.mv_data, r.k.mv_size) >= 0)) {
            rc = -BD_ECORRUPT;
            break;
        }
        if (r.t == INDEX_T_META && r.k.mv_size == 7 && memcmp(r.k.mv_data, "cluster", 7) == 0) {
            if (r.v.mv_size != strlen(ix->cluster_id) ||
                memcmp(r.v.mv_data, ix->cluster_id, r.v.mv_size) != 0)
                return -BD_ECONFIG;
            cluster_seen = true;
        }
        prev = r;
        n++;
    }
    if (rc == 0 && (n != *records || !cluster_seen)) rc = -BD_ECORRUPT;
    return rc;
}

int index_load(struct index *ix, const void *buf, size_t len, uint64_t *applied)
{
    const uint8_t *b = buf;
    uint64_t hdr_applied, records, digest;
    int rc = load_check(ix, b, len, &hdr_applied, &records, &digest);
    if (rc) return rc;

    MDB_txn *txn;
    int mrc = mdb_txn_begin(ix->env, NULL, 0, &txn);
    if (mrc) return index_mdb_err(mrc);
    for (int t = 0; t < INDEX_T_N; t++)
        if ((mrc = mdb_drop(txn, ix->dbi[t], 0))) goto err_mdb;
    size_t end = len - DUMP_TRAILER_LEN, pos = DUMP_HDR_LEN;
    struct load_rec r;
    while (next_rec(b, end, &pos, &r) == 1)
        if ((mrc = mdb_put(txn, ix->dbi[r.t], &r.k, &r.v, MDB_APPEND))) goto err_mdb;
    uint64_t got;
    struct index_meta m;
    if ((rc = digest_txn(ix, txn, &got))) goto err;
    if (got != digest) {
        rc = -BD_ECORRUPT;
        goto err;
    }
    if ((rc = index_txn_get_meta(ix, txn, &m))) goto err;
    if (m.schema != INDEX_SCHEMA_VERSION || m.applied != hdr_applied) {
        rc = -BD_ECORRUPT;
        goto err;
    }
    if ((mrc = mdb_txn_commit(txn))) return index_mdb_err(mrc);
    *applied = m.applied;
    return 0;

err_mdb:
    rc = index_mdb_err(mrc);
err:
    mdb_txn_abort(txn);
    return rc == -ENOENT ? -BD_ECORRUPT : rc;
}
