/* proxy_index.h: the proxy's read side of its index (see proxy_index.c).
 *
 * The index is written only by the FSM (libraft's apply, on the reactor);
 * every other proxy module reads it through P->rd, between
 * proxy_index_read_begin and proxy_index_read_end inside one callback,
 * never across an asynchronous step.  This module also keeps the cached
 * copy of the partition table that placement reads on every blob write.
 *
 * It sits below every request handler and service of the role and calls
 * none of them.  All calls run on the reactor thread. */
#ifndef BD_PROXY_INDEX_H
#define BD_PROXY_INDEX_H

#include <stdbool.h>
#include <stdint.h>

#include "store/index/idxcmd.h"
#include "store/index/index.h"

struct proxy;

/* Begin a read txn on P->rd: 0, or -EIO/-EAGAIN (nothing to end then). */
int proxy_index_read_begin(struct proxy *p);
void proxy_index_read_end(struct proxy *p);

/* A raft leader is known.  A proxy that knows none may be cut off from
 * the majority, so its index may be stale: reads and look-ups refuse. */
bool proxy_index_has_leader(struct proxy *p);

/* Every partition in the index, in one read txn (of a reader of its own:
 * callable inside a txn on P->rd): *OUT returned owned (free()), *N its
 * count.  0, or the read error (-ENOMEM, -EIO, -EAGAIN; nothing returned
 * then). */
int proxy_index_read_parts(struct proxy *p, struct index_part **out, uint32_t *n);

/* Every registered blob server (retired ones included), ascending by id,
 * in one read txn: as proxy_index_read_parts. */
int proxy_index_read_nodes(struct proxy *p, struct index_node **out, uint32_t *n);
/* The cached partition table (for placement): re-read when an applied
 * entry may have changed it, else the copy from the last read.  Borrowed:
 * valid until the next call or proxy_index_fini.  On a read error the
 * previous copy is kept (and read again next time); *N is 0 if there is
 * none. */
const struct index_part *proxy_index_parts(struct proxy *p, unsigned *n);
/* The FSM applied an entry with result RES (borrowed, may be NULL): note
 * whether the partition table may have changed. */
void proxy_index_on_applied(struct proxy *p, const struct idxcmd_result *res);
/* Free the cache. */
void proxy_index_fini(struct proxy *p);

#endif
