/* journal_int.h: what journal.c and journal_replay.c share: the byte
 * layout constants and the journal's state.  Nothing else includes it;
 * the format itself is described at the top of journal.c. */
#ifndef BD_JOURNAL_INT_H
#define BD_JOURNAL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../net/taskq.h"
#include "journal.h"

#define SEG_MAGIC 0x534a4442u /* "BDJS" */
#define ENT_MAGIC 0x454a4442u /* "BDJE" */
#define TRL_MAGIC 0x544a4442u /* "BDJT" */
#define SEG_VERSION 1

struct jseg {
    uint64_t no;
    int fd;
    uint64_t size;       /* bytes in the file */
    uint64_t first_seq;  /* from its header (0 if unreadable) */
    int64_t refs;        /* owner references (journal_ref) */
    int64_t lost_refs;   /* ... of which LOST marks */
    bool dirty;          /* written since the last sync job began */
};

struct sync_job {
    struct taskq_job job;
    struct journal *j;
    int *fds;
    unsigned nfds, cap;
    bool dir;
    uint64_t target;     /* appends covered when the job started */
    int err;
};

struct journal {
    struct fio *fio;
    struct taskq *syncq;
    char dir[1024];
    char tag[32];
    char name[JOURNAL_NAME_MAX + 1];
    uint64_t vol_id;
    uint64_t salt;
    uint64_t cap, seg_bytes;
    struct jseg *segs;   /* ascending segment numbers; the last takes appends */
    unsigned nsegs, segcap;
    uint64_t used;       /* sum of segment sizes */
    uint64_t next_seq;
    bool roll;           /* the last segment takes no appends (bad header, too big) */
    bool failed;         /* failed stop (C15) */
    bool replayed;
    /* Group commit (journal_sync). */
    uint64_t appends;    /* appends and segment creations so far */
    uint64_t synced;     /* appends made durable by the last good sync */
    bool dir_dirty;      /* a segment was created since the last sync began */
    bool sync_running;
    struct journal_sync_req *waiters, **wtail;
    struct sync_job sj;
};

struct ent {
    int kind;
    uint64_t seq, vol_id, off, len;
    uint32_t data_len;
    uint64_t data_csum;
};

/* XXH3-64 of the little-endian array of N block checksums C. */
uint64_t journal_csums_hash(const uint64_t *c, size_t n);
/* Parse and validate a header (MAGIC ENT) or trailer (MAGIC TRL) at P;
 * false if it is not a valid one of this journal. */
bool journal_ent_decode(const struct journal *j, const uint8_t *p, uint32_t magic,
                        struct ent *e);

#endif
