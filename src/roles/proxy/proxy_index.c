/* proxy_index.c: the proxy's read side of its index (see proxy_index.h).
 *
 * Read txns are one-callback affairs on the reactor thread: LMDB's reader
 * slot is held only while a callback runs, so a long asynchronous step can
 * never pin old pages.  The node and partition tables have no fixed bound;
 * they are read whole into heap arrays, a page at a time.  The partition
 * table is small (a few thousand rows) and changes only with
 * CREATE_PARTITION, REPLACE_REPLICA and REGISTER_NODE, so placement reads a
 * cached copy and the FSM adapter marks it stale when one of those is
 * applied; the next placement reads it again.  Nothing here calls another proxy module. */
#include "roles/proxy/proxy_index.h"
#include "roles/proxy/proxy_int.h"
#include "base/bd.h"

#include <stdlib.h>
#include <string.h>

#define PARTS_PAGE 256u /* records per list call (partitions, nodes) */

int proxy_index_read_begin(struct proxy *p)
{
    return index_read_begin(p->rd);
}

void proxy_index_read_end(struct proxy *p)
{
    index_read_end(p->rd);
}

bool proxy_index_has_leader(struct proxy *p)
{
    return p->cons && consensus_leader(p->cons, NULL) != 0;
}

/* The lists' own reader (made on first use): a caller may be inside a
 * read txn of p->rd, and a reader holds one txn at a time. */
static int lists_begin(struct proxy *p)
{
    if (!p->rd_lists) {
        int rc = index_reader_new(p->ix, &p->rd_lists);
        if (rc < 0) return rc;
    }
    return index_read_begin(p->rd_lists);
}

/* One page of a table after the id AFTER into BUF; *LAST is the page's
 * last id.  The adapters below give read_all each table's list call. */
typedef int (*list_page_fn)(struct index_reader *rd, uint64_t after, void *buf, uint32_t max,
                            uint32_t *got, uint64_t *last);

static int part_page(struct index_reader *rd, uint64_t after, void *buf, uint32_t max,
                     uint32_t *got, uint64_t *last)
{
    struct index_part *a = buf;
    int rc = index_part_list(rd, (uint32_t)after, a, max, got);
    if (rc >= 0 && *got) *last = a[*got - 1].id;
    return rc;
}

static int node_page(struct index_reader *rd, uint64_t after, void *buf, uint32_t max,
                     uint32_t *got, uint64_t *last)
{
    struct index_node *a = buf;
    int rc = index_node_list(rd, after, a, max, got);
    if (rc >= 0 && *got) *last = a[*got - 1].id;
    return rc;
}

/* A whole table into one heap array of records of SIZE bytes, a page at a
 * time, in one read txn of the lists' reader. */
static int read_all(struct proxy *p, size_t size, list_page_fn page, void **out, uint32_t *n_out)
{
    uint8_t *all = NULL;
    uint32_t n = 0, got = 0;
    uint64_t after = 0;
    int rc = lists_begin(p);
    if (rc < 0) return rc;
    do {
        uint8_t *na = realloc(all, (n + PARTS_PAGE) * size);
        if (!na) {
            rc = -ENOMEM;
            break;
        }
        all = na;
        rc = page(p->rd_lists, after, all + (size_t)n * size, PARTS_PAGE, &got, &after);
        if (rc < 0) break;
        n += got;
    } while (got == PARTS_PAGE);
    index_read_end(p->rd_lists);
    if (rc < 0) {
        free(all);
        return rc;
    }
    *out = all;
    *n_out = n;
    return 0;
}

int proxy_index_read_parts(struct proxy *p, struct index_part **out, uint32_t *n_out)
{
    void *all;
    int rc = read_all(p, sizeof(**out), part_page, &all, n_out);
    if (rc == 0) *out = all;
    return rc;
}

int proxy_index_read_nodes(struct proxy *p, struct index_node **out, uint32_t *n_out)
{
    void *all;
    int rc = read_all(p, sizeof(**out), node_page, &all, n_out);
    if (rc == 0) *out = all;
    return rc;
}

const struct index_part *proxy_index_parts(struct proxy *p, unsigned *n)
{
    if (p->parts_dirty || !p->parts) {
        struct index_part *all;
        uint32_t got;
        if (proxy_index_read_parts(p, &all, &got) == 0) {
            free(p->parts);
            p->parts = all;
            p->n_parts = got;
            p->parts_dirty = false;
        }
    }
    *n = p->parts ? p->n_parts : 0;
    return p->parts;
}

void proxy_index_on_applied(struct proxy *p, const struct idxcmd_result *res)
{
    if (res && (res->type == IDXCMD_CREATE_PARTITION || res->type == IDXCMD_REPLACE_REPLICA ||
                res->type == IDXCMD_MOVE_REPLICA || res->type == IDXCMD_REGISTER_NODE))
        p->parts_dirty = true;
}

void proxy_index_fini(struct proxy *p)
{
    index_reader_free(p->rd_lists);
    p->rd_lists = NULL;
    free(p->parts);
    p->parts = NULL;
    p->n_parts = 0;
}
