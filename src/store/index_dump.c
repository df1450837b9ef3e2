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
#include "index.h"
#include "index_int.h"
#include "../bd.h"
#include "../util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#define DUMP_MAGIC "BDIXDMP1"
#define DUMP_VERSION 1
#define DUMP_HDR_LEN 24
#define DUMP_TRAILER_LEN 24
#define DUMP_REC_HDR 7
#define DUMP_KEY_MAX 511      /* LMDB's default maximum key size */
#define DUMP_VAL_MAX 65536

static void rec_hdr(uint8_t h[DUMP_REC_HDR], int t, const MDB_val *k, const MDB_val *v)
{
    h[0] = (uint8_t)t;
    util_put_le16(h + 1, (uint16_t)k->mv_size);
    util_put_le32(h + 3, (uint32_t)v->mv_size);
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
    for (int t = 0; t < IT_N; t++) {
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
    uint64_t *counts[IT_N] = {NULL,          &out->volumes,   NULL,          &out->layers,
                              &out->extents, &out->blobs,     &out->partitions, &out->nodes,
                              &out->snapshots, &out->gc};
    for (int t = 0; t < IT_N; t++) {
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
    return 0;
}

static int space_rec(void *arg, int t, const MDB_val *k, const MDB_val *v)
{
    struct index_space *sp = arg;
    if (t == IT_EXTENTS) {
        struct index_ext e;
        int rc = index_dec_ext(k, v, &e);
        if (rc) return rc;
        if (!(e.flags & INDEX_EXT_ZERO)) sp->data_bytes += e.len;
    } else {
        struct index_blob b;
        int rc = k->mv_size == 8 ? index_dec_blob(index_key_get_u64(k->mv_data), v, &b)
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
    int rc = walk_table(rd->ix, rd->txn, IT_EXTENTS, space_rec, out);
    return rc ? rc : walk_table(rd->ix, rd->txn, IT_BLOBS, space_rec, out);
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
    memcpy(h, DUMP_MAGIC, 8);
    util_put_le32(h + 8, DUMP_VERSION);
    util_put_le32(h + 12, 0);
    util_put_le64(h + 16, m.applied);
    if ((rc = dump_put(d, h, sizeof(h)))) goto out;
    if ((rc = walk_all(rd->ix, rd->txn, dump_rec, d))) goto out;
    uint8_t t[DUMP_TRAILER_LEN];
    util_put_le64(t, d->records);
    util_put_le64(t + 8, XXH3_64bits_digest(&d->digest));
    if ((rc = dump_put(d, t, 16)) || (rc = dump_flush(d))) goto out;
    util_put_le64(t + 16, XXH3_64bits_digest(&d->csum));
    rc = emit(arg, t + 16, 8);
out:
    free(d);
    return rc;
}

int index_dump_applied(const void *buf, size_t len, uint64_t *applied)
{
    const uint8_t *b = buf;
    if (len < DUMP_HDR_LEN + DUMP_TRAILER_LEN || memcmp(b, DUMP_MAGIC, 8) != 0 ||
        util_get_le32(b + 8) != DUMP_VERSION)
        return -EINVAL;
    *applied = util_get_le64(b + 16);
    return 0;
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
    if (end - *pos < DUMP_REC_HDR) return -BD_ECORRUPT;
    const uint8_t *h = b + *pos;
    size_t klen = util_get_le16(h + 1), vlen = util_get_le32(h + 3);
    if (h[0] >= IT_N || klen == 0 || klen > DUMP_KEY_MAX || vlen > DUMP_VAL_MAX ||
        end - *pos - DUMP_REC_HDR < klen + vlen)
        return -BD_ECORRUPT;
    r->t = h[0];
    r->k.mv_size = klen;
    r->k.mv_data = (void *)(h + DUMP_REC_HDR);
    r->v.mv_size = vlen;
    r->v.mv_data = (void *)(h + DUMP_REC_HDR + klen);
    *pos += DUMP_REC_HDR + klen + vlen;
    return 1;
}

static int load_check(struct index *ix, const uint8_t *b, size_t len, uint64_t *records,
                      uint64_t *digest)
{
    if (len < DUMP_HDR_LEN + DUMP_TRAILER_LEN || memcmp(b, DUMP_MAGIC, 8) != 0 ||
        util_get_le32(b + 8) != DUMP_VERSION || util_get_le32(b + 12) != 0) {
        snprintf(ix->errbuf, sizeof(ix->errbuf), "snapshot: not an index dump");
        return -EINVAL;
    }
    if (XXH3_64bits(b, len - 8) != util_get_le64(b + len - 8)) {
        snprintf(ix->errbuf, sizeof(ix->errbuf), "snapshot: checksum mismatch");
        return -BD_ECORRUPT;
    }
    *records = util_get_le64(b + len - 24);
    *digest = util_get_le64(b + len - 16);
    size_t end = len - DUMP_TRAILER_LEN, pos = DUMP_HDR_LEN;
    struct load_rec r, prev = {.t = -1};
    uint64_t n = 0;
    bool cluster_seen = false;
    int rc;
    while ((rc = next_rec(b, end, &pos, &r)) == 1) {
        if (r.t < prev.t || (r.t == prev.t && key_cmp(prev.k.mv_data, prev.k.mv_size,
                                                      r.k.mv_data, r.k.mv_size) >= 0)) {
            rc = -BD_ECORRUPT;
            break;
        }
        if (r.t == IT_META && r.k.mv_size == 7 && memcmp(r.k.mv_data, "cluster", 7) == 0) {
            if (r.v.mv_size != strlen(ix->cluster_id) ||
                memcmp(r.v.mv_data, ix->cluster_id, r.v.mv_size) != 0) {
                snprintf(ix->errbuf, sizeof(ix->errbuf),
                         "snapshot is of cluster \"%.*s\", this index is \"%.64s\"",
                         (int)BD_MIN(r.v.mv_size, 64), (char *)r.v.mv_data, ix->cluster_id);
                return -BD_ECONFIG;
            }
            cluster_seen = true;
        }
        prev = r;
        n++;
    }
    if (rc == 0 && (n != *records || !cluster_seen)) rc = -BD_ECORRUPT;
    if (rc) snprintf(ix->errbuf, sizeof(ix->errbuf), "snapshot: malformed record stream");
    return rc;
}

int index_load(struct index *ix, const void *buf, size_t len, uint64_t *applied)
{
    const uint8_t *b = buf;
    uint64_t records, digest;
    int rc = load_check(ix, b, len, &records, &digest);
    if (rc) return rc;

    MDB_txn *txn;
    int mrc = mdb_txn_begin(ix->env, NULL, 0, &txn);
    if (mrc) return index_mdb_err(mrc);
    for (int t = 0; t < IT_N; t++)
        if ((mrc = mdb_drop(txn, ix->dbi[t], 0))) goto err_mdb;
    size_t end = len - DUMP_TRAILER_LEN, pos = DUMP_HDR_LEN;
    struct load_rec r;
    while (next_rec(b, end, &pos, &r) == 1)
        if ((mrc = mdb_put(txn, ix->dbi[r.t], &r.k, &r.v, MDB_APPEND))) goto err_mdb;
    uint64_t got;
    struct index_meta m;
    if ((rc = digest_txn(ix, txn, &got))) goto err;
    if (got != digest) {
        snprintf(ix->errbuf, sizeof(ix->errbuf), "snapshot: digest mismatch after load");
        rc = -BD_ECORRUPT;
        goto err;
    }
    if ((rc = index_txn_get_meta(ix, txn, &m))) goto err;
    if (m.schema != INDEX_SCHEMA_VERSION || m.applied != util_get_le64(b + 16)) {
        snprintf(ix->errbuf, sizeof(ix->errbuf), "snapshot: schema %u or applied index "
                 "mismatch", m.schema);
        rc = -BD_ECORRUPT;
        goto err;
    }
    if ((mrc = mdb_txn_commit(txn))) return index_mdb_err(mrc);
    *applied = m.applied;
    return 0;

err_mdb:
    rc = index_mdb_err(mrc);
    snprintf(ix->errbuf, sizeof(ix->errbuf), "snapshot load: %s", mdb_strerror(mrc));
err:
    mdb_txn_abort(txn);
    return rc == -ENOENT ? -BD_ECORRUPT : rc;
}
