/* fsm_qos.c: applying QoS (issue 13): profiles (storage classes) and the
 * profile and limits of each volume, for fsm.c (declared in fsm_int.h).
 *
 * A volume names at most one profile and holds its own limit set, which
 * overrides the profile's field by field (base/qos.h qos_effective).  A
 * profile counts the volumes naming it (n_vols), kept here as volumes are
 * created, cloned, deleted and moved between profiles, so that deleting a
 * profile in use is refused (EBUSY) in O(1) and no volume ever names a
 * profile that is gone.  At most one profile is the default: volumes
 * created with neither a profile nor limits take it (CREATE_VOLUME's
 * IDXCMD_CREATE_DEFAULT_QOS), at create time only: making another profile
 * the default later moves no volume.
 *
 * As everywhere in apply, "check, then act": every refusal is decided
 * before the first write.  Limits are validated field by field by the
 * command decoder; a combination that makes no sense once merged (a burst
 * below the limit it rides on) is harmless, as qos_effective drops it. */
#include "store/index/fsm_int.h"
#include "base/bd.h"

#include <string.h>

static int profile_put(struct fsm_txn *t, const struct index_profile *p)
{
    uint8_t vb[INDEX_VAL_MAX];
    MDB_val k = {strlen(p->name), (void *)p->name}, d = {index_enc_profile(vb, p), vb};
    return index_mdb_err(mdb_put(t->txn, t->ix->dbi[INDEX_T_PROFILES], &k, &d, 0));
}

/* The profile NAME[LEN]: 0, 1 if there is none, or -code. */
static int profile_find(struct fsm_txn *t, const char *name, size_t len, struct index_profile *p)
{
    int rc = index_txn_profile(t->ix, t->txn, name, len, p);
    return rc == -ENOENT ? 1 : rc;
}

/* The default profile: 0, 1 if there is none, or -code.  Profiles are few
 * (storage classes), so a walk costs less than a second record to keep in
 * step. */
static int profile_default(struct fsm_txn *t, struct index_profile *out)
{
    MDB_cursor *cur;
    int rc = index_mdb_err(mdb_cursor_open(t->txn, t->ix->dbi[INDEX_T_PROFILES], &cur));
    if (rc) return rc;
    MDB_val k, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    rc = 1;
    while (mrc == 0) {
        if ((rc = index_dec_profile(&k, &v, out)) < 0) break;
        if (out->flags & INDEX_PROFILE_DEFAULT) break;
        rc = 1;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (mrc && mrc != MDB_NOTFOUND) return index_mdb_err(mrc);
    return rc;
}

/* Add DELTA to the count of volumes naming profile NAME ("" : nothing). */
static int profile_count(struct fsm_txn *t, const char *name, int delta)
{
    if (!name[0]) return 0;
    struct index_profile p;
    int rc = profile_find(t, name, strlen(name), &p);
    if (rc) return rc > 0 ? -BD_ECORRUPT : rc; /* a volume names a profile that is gone */
    if (delta < 0 && p.n_vols == 0) return -BD_ECORRUPT;
    p.n_vols = delta < 0 ? p.n_vols - 1 : p.n_vols + 1;
    return profile_put(t, &p);
}

int fsm_qos_new_volume(struct fsm_txn *t, const struct idxcmd *c, struct index_vol *v,
                       struct idxcmd_result *res)
{
    const typeof(c->u.create_volume) *a = &c->u.create_volume;
    struct index_profile p;
    v->profile[0] = 0;
    v->qos = a->qos;
    int rc = 0;
    if (a->flags & IDXCMD_CREATE_DEFAULT_QOS) {
        if ((rc = profile_default(t, &p)) < 0) return rc;
        if (rc == 0) memcpy(v->profile, p.name, sizeof(v->profile));
    } else if (a->profile.len) {
        if ((rc = profile_find(t, a->profile.ptr, a->profile.len, &p)) < 0) return rc;
        if (rc > 0) {
            res->status = IDXCMD_ST_ENOENT;
            res->id = 1; /* the profile, not the volume */
            return 0;
        }
        memcpy(v->profile, p.name, sizeof(v->profile));
    }
    return 0;
}

int fsm_qos_vol_added(struct fsm_txn *t, const struct index_vol *v)
{
    return profile_count(t, v->profile, 1);
}

int fsm_qos_vol_removed(struct fsm_txn *t, const struct index_vol *v)
{
    return profile_count(t, v->profile, -1);
}

int fsm_qos_set(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.set_qos) *a = &c->u.set_qos;
    struct index_vol v;
    int rc = fsm_rec_find_vol(t, a->name, &v, &res->status);
    if (rc) return rc < 0 ? rc : 0;
    char old[INDEX_NAME_MAX + 1];
    memcpy(old, v.profile, sizeof(old));
    if (a->flags & IDXCMD_QOS_PROFILE) {
        struct index_profile p;
        v.profile[0] = 0;
        if (a->profile.len) {
            if ((rc = profile_find(t, a->profile.ptr, a->profile.len, &p)) < 0) return rc;
            if (rc > 0) {
                res->status = IDXCMD_ST_ENOENT;
                res->id = 1;
                return 0;
            }
            memcpy(v.profile, p.name, sizeof(v.profile));
        }
    }
    qos_merge(&v.qos, &a->qos, a->clear);
    res->id = v.id;
    if (strcmp(old, v.profile) != 0 &&
        ((rc = profile_count(t, old, -1)) || (rc = profile_count(t, v.profile, 1))))
        return rc;
    return fsm_rec_vol_put(t, &v);
}

int fsm_qos_profile_put(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.qos_profile_put) *a = &c->u.qos_profile_put;
    struct index_profile p, old;
    int rc = profile_find(t, a->name.ptr, a->name.len, &p);
    if (rc < 0) return rc;
    bool create = a->flags & IDXCMD_PROFILE_CREATE;
    if (create && rc == 0) res->status = IDXCMD_ST_EEXIST;
    if (!create && rc > 0) res->status = IDXCMD_ST_ENOENT;
    if (res->status) return 0;
    if (create) {
        memset(&p, 0, sizeof(p));
        memcpy(p.name, a->name.ptr, a->name.len);
        p.name[a->name.len] = 0;
        p.created_index = t->index;
    }
    qos_merge(&p.qos, &a->qos, a->clear);
    if (a->flags & IDXCMD_PROFILE_DEFAULT && !(p.flags & INDEX_PROFILE_DEFAULT)) {
        /* The default moves: the old one stops being it. */
        if ((rc = profile_default(t, &old)) < 0) return rc;
        if (rc == 0) {
            old.flags &= (uint8_t)~INDEX_PROFILE_DEFAULT;
            if ((rc = profile_put(t, &old))) return rc;
        }
        p.flags |= INDEX_PROFILE_DEFAULT;
    }
    if (a->flags & IDXCMD_PROFILE_UNDEFAULT) p.flags &= (uint8_t)~INDEX_PROFILE_DEFAULT;
    res->id = p.n_vols;
    return profile_put(t, &p);
}

int fsm_qos_profile_delete(struct fsm_txn *t, const struct idxcmd *c, struct idxcmd_result *res)
{
    const typeof(c->u.qos_profile_delete) *a = &c->u.qos_profile_delete;
    struct index_profile p;
    int rc = profile_find(t, a->name.ptr, a->name.len, &p);
    if (rc < 0) return rc;
    if (rc > 0) {
        res->status = IDXCMD_ST_ENOENT;
        return 0;
    }
    if (p.n_vols) {
        res->status = IDXCMD_ST_EBUSY;
        res->id = p.n_vols;
        return 0;
    }
    MDB_val k = {a->name.len, (void *)a->name.ptr};
    return index_mdb_err(mdb_del(t->txn, t->ix->dbi[INDEX_T_PROFILES], &k, NULL));
}
