/* raftmsg.c: encode and decode libraft messages, side by side (raftmsg.h).
 *
 * Like wire.c, the sticky cursors of src/base/bytes.h do the byte work: a
 * writer fills the head buffer (sized exactly beforehand, so it cannot
 * overflow: an overflow is a bug, checked with BD_NEVER), a reader
 * remembers running past the end.  Each encoder is a list of field
 * writes in the order of raftmsg.h's tables; the decoder for the same type
 * sits right below it with the same fields in the same order.
 *
 * Decoding allocates only after the counts and lengths have been checked
 * against the bytes left in the input: n_entries * 16 header bytes must be
 * there, and the sum of the entries' lengths must be exactly what follows
 * them; a configuration's server count must fit in the bytes left at 11
 * bytes per server; the snapshot length must be exactly the rest. */
#include "net/raftmsg.h"
#include "base/bd.h"
#include "base/bytes.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define ENTRY_HDR_LEN 16  /* an entry header (raftmsg.h) */
#define SERVER_MIN_LEN 11 /* a server of a conf, without its address (raftmsg.h) */

const char *raftmsg_type_name(unsigned type)
{
    switch (type) {
    case RAFT_IO_APPEND_ENTRIES: return "append_entries";
    case RAFT_IO_APPEND_ENTRIES_RESULT: return "append_entries_result";
    case RAFT_IO_REQUEST_VOTE: return "request_vote";
    case RAFT_IO_REQUEST_VOTE_RESULT: return "request_vote_result";
    case RAFT_IO_INSTALL_SNAPSHOT: return "install_snapshot";
    case RAFT_IO_TIMEOUT_NOW: return "timeout_now";
    default: return "unknown";
    }
}

static bool entry_type_ok(unsigned t)
{
    return t == RAFT_COMMAND || t == RAFT_BARRIER || t == RAFT_CHANGE;
}

/* ---- configuration -------------------------------------------------------- */

size_t raftmsg_conf_size(const struct raft_configuration *c)
{
    if (c->n > RAFTMSG_MAX_SERVERS) return 0;
    size_t n = 4;
    for (unsigned i = 0; i < c->n; i++) {
        const struct raft_server *s = &c->servers[i];
        size_t alen = s->address ? strlen(s->address) : 0;
        if (s->id == 0 || alen == 0 || alen > RAFTMSG_ADDR_MAX || s->role < 0 || s->role > 2)
            return 0;
        n += SERVER_MIN_LEN + alen;
    }
    return n;
}

static void conf_put(struct bytes_w *c, const struct raft_configuration *conf)
{
    bw_u32(c, conf->n);
    for (unsigned i = 0; i < conf->n; i++) {
        const struct raft_server *s = &conf->servers[i];
        size_t alen = strlen(s->address);
        bw_u64(c, s->id);
        bw_u8(c, (uint8_t)s->role);
        bw_u16(c, (uint16_t)alen);
        bw_mem(c, s->address, alen);
    }
}

void raftmsg_conf_encode(const struct raft_configuration *c, uint8_t *buf)
{
    struct bytes_w p;
    bw_init(&p, buf, raftmsg_conf_size(c));
    conf_put(&p, c);
    BD_NEVER(p.err || p.left != 0);
}

/* Read a configuration from G into *CONF (initialised here).  0, -EPROTO
 * or -ENOMEM; on error *CONF holds nothing. */
static int conf_get(struct bytes_r *g, struct raft_configuration *conf)
{
    raft_configuration_init(conf);
    uint32_t n = br_u32(g);
    if (g->err || n > RAFTMSG_MAX_SERVERS || (size_t)n * SERVER_MIN_LEN > g->left) return -EPROTO;
    int rc = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t id = br_u64(g);
        uint8_t role = br_u8(g);
        uint16_t alen = br_u16(g);
        const uint8_t *a = br_take(g, alen);
        if (!a || id == 0 || role > 2 || alen == 0 || alen > RAFTMSG_ADDR_MAX ||
            memchr(a, 0, alen)) {
            rc = -EPROTO;
            break;
        }
        char addr[RAFTMSG_ADDR_MAX + 1];
        memcpy(addr, a, alen);
        addr[alen] = 0;
        int rv = raft_configuration_add(conf, id, addr, role);
        if (rv != 0) {
            rc = rv == RAFT_NOMEM ? -ENOMEM : -EPROTO; /* duplicate id or address */
            break;
        }
    }
    if (rc < 0) raft_configuration_close(conf);
    return rc;
}

int raftmsg_conf_decode(const uint8_t *buf, size_t len, struct raft_configuration *c)
{
    struct bytes_r g;
    br_init(&g, buf, len);
    int rc = conf_get(&g, c);
    if (rc == 0 && g.left != 0) {
        raft_configuration_close(c);
        rc = -EPROTO;
    }
    return rc;
}

/* ---- messages ------------------------------------------------------------- */

/* Size of the head of M (everything but borrowed buffers); 0 if M cannot
 * be encoded. */
static size_t head_size(const struct raft_message *m)
{
    switch (m->type) {
    case RAFT_IO_APPEND_ENTRIES: {
        const struct raft_append_entries *a = &m->append_entries;
        if (a->n_entries > RAFTMSG_MAX_ENTRIES || (a->n_entries && !a->entries)) return 0;
        for (unsigned i = 0; i < a->n_entries; i++) {
            const struct raft_entry *e = &a->entries[i];
            if (e->term == 0 || !entry_type_ok(e->type) || e->buf.len > UINT32_MAX) return 0;
        }
        return 4 + 32 + 4 + (size_t)a->n_entries * ENTRY_HDR_LEN;
    }
    case RAFT_IO_APPEND_ENTRIES_RESULT: return 4 + 24;
    case RAFT_IO_REQUEST_VOTE: return 4 + 32 + 1;
    case RAFT_IO_REQUEST_VOTE_RESULT: {
        const struct raft_request_vote_result *r = &m->request_vote_result;
        if ((unsigned)r->pre_vote > raft_tribool_false) return 0;
        return 4 + 8 + 2;
    }
    case RAFT_IO_INSTALL_SNAPSHOT: {
        size_t cs = raftmsg_conf_size(&m->install_snapshot.conf);
        return cs ? 4 + 32 + cs + 8 : 0;
    }
    case RAFT_IO_TIMEOUT_NOW: return 4 + 24;
    default: return 0;
    }
}

int raftmsg_encode(const struct raft_message *m, struct raftmsg_enc *enc)
{
    memset(enc, 0, sizeof(*enc));
    size_t hlen = head_size(m);
    if (hlen == 0) return -EINVAL;
    int n_iov = 1;
    if (m->type == RAFT_IO_APPEND_ENTRIES) n_iov += (int)m->append_entries.n_entries;
    if (m->type == RAFT_IO_INSTALL_SNAPSHOT) n_iov += 1;
    enc->head = malloc(hlen);
    enc->iov = malloc(sizeof(*enc->iov) * (size_t)n_iov);
    if (!enc->head || !enc->iov) {
        raftmsg_enc_free(enc);
        return -ENOMEM;
    }
    enc->head_len = hlen;
    enc->iov[0] = (struct iovec){enc->head, hlen};
    enc->n_iov = 1;
    enc->total_len = hlen;

    struct bytes_w c;
    bw_init(&c, enc->head, hlen);
    bw_u16(&c, m->type);
    bw_u16(&c, RAFTMSG_VERSION);
    switch (m->type) {
    case RAFT_IO_APPEND_ENTRIES: {
        const struct raft_append_entries *a = &m->append_entries;
        bw_u64(&c, a->term);
        bw_u64(&c, a->prev_log_index);
        bw_u64(&c, a->prev_log_term);
        bw_u64(&c, a->leader_commit);
        bw_u32(&c, a->n_entries);
        for (unsigned i = 0; i < a->n_entries; i++) {
            const struct raft_entry *e = &a->entries[i];
            bw_u64(&c, e->term);
            bw_u16(&c, e->type);
            bw_zeros(&c, 2);
            bw_u32(&c, (uint32_t)e->buf.len);
            if (e->buf.len) {
                enc->iov[enc->n_iov++] = (struct iovec){e->buf.base, e->buf.len};
                enc->total_len += e->buf.len;
            }
        }
        break;
    }
    case RAFT_IO_APPEND_ENTRIES_RESULT: {
        const struct raft_append_entries_result *r = &m->append_entries_result;
        bw_u64(&c, r->term);
        bw_u64(&c, r->rejected);
        bw_u64(&c, r->last_log_index);
        break;
    }
    case RAFT_IO_REQUEST_VOTE: {
        const struct raft_request_vote *v = &m->request_vote;
        bw_u64(&c, v->term);
        bw_u64(&c, v->candidate_id);
        bw_u64(&c, v->last_log_index);
        bw_u64(&c, v->last_log_term);
        bw_u8(&c, (uint8_t)((v->disrupt_leader ? 1 : 0) | (v->pre_vote ? 2 : 0)));
        break;
    }
    case RAFT_IO_REQUEST_VOTE_RESULT: {
        const struct raft_request_vote_result *r = &m->request_vote_result;
        bw_u64(&c, r->term);
        bw_u8(&c, r->vote_granted ? 1 : 0);
        bw_u8(&c, (uint8_t)r->pre_vote);
        break;
    }
    case RAFT_IO_INSTALL_SNAPSHOT: {
        const struct raft_install_snapshot *s = &m->install_snapshot;
        bw_u64(&c, s->term);
        bw_u64(&c, s->last_index);
        bw_u64(&c, s->last_term);
        bw_u64(&c, s->conf_index);
        conf_put(&c, &s->conf);
        bw_u64(&c, s->data.len);
        if (s->data.len) {
            enc->iov[enc->n_iov++] = (struct iovec){s->data.base, s->data.len};
            enc->total_len += s->data.len;
        }
        break;
    }
    case RAFT_IO_TIMEOUT_NOW: {
        const struct raft_timeout_now *t = &m->timeout_now;
        bw_u64(&c, t->term);
        bw_u64(&c, t->last_log_index);
        bw_u64(&c, t->last_log_term);
        break;
    }
    }
    BD_NEVER(c.err || c.left != 0);
    return 0;
}

void raftmsg_enc_free(struct raftmsg_enc *enc)
{
    free(enc->head);
    free(enc->iov);
    memset(enc, 0, sizeof(*enc));
}

void raftmsg_enc_flatten(const struct raftmsg_enc *enc, uint8_t *buf)
{
    size_t off = 0;
    for (int i = 0; i < enc->n_iov; i++) {
        memcpy(buf + off, enc->iov[i].iov_base, enc->iov[i].iov_len);
        off += enc->iov[i].iov_len;
    }
}

/* AppendEntries: validate all entry headers against the bytes left, then
 * allocate the entries array and one batch for all the data. */
static int decode_append_entries(struct bytes_r *g, struct raft_append_entries *a)
{
    a->term = br_u64(g);
    a->prev_log_index = br_u64(g);
    a->prev_log_term = br_u64(g);
    a->leader_commit = br_u64(g);
    a->n_entries = br_u32(g);
    a->entries = NULL;
    if (g->err || a->n_entries > RAFTMSG_MAX_ENTRIES ||
        (size_t)a->n_entries * ENTRY_HDR_LEN > g->left)
        return -EPROTO;
    size_t hdrs_len = (size_t)a->n_entries * ENTRY_HDR_LEN;
    const uint8_t *hdrs = br_take(g, hdrs_len);
    struct bytes_r h;
    br_init(&h, hdrs, hdrs_len);
    size_t total = 0;
    for (unsigned i = 0; i < a->n_entries; i++) {
        uint64_t term = br_u64(&h);
        uint16_t type = br_u16(&h);
        br_zeros(&h, 2);
        total += br_u32(&h); /* <= 65536 * 4 GiB: no overflow in size_t */
        if (h.err || term == 0 || !entry_type_ok(type)) return -EPROTO;
    }
    if (total != g->left) return -EPROTO;
    if (a->n_entries == 0) return 0;
    const uint8_t *data = br_take(g, total);
    a->entries = raft_malloc(sizeof(*a->entries) * a->n_entries);
    uint8_t *batch = raft_malloc(total ? total : 1);
    if (!a->entries || !batch) {
        raft_free(a->entries);
        raft_free(batch);
        a->entries = NULL;
        return -ENOMEM;
    }
    if (total) memcpy(batch, data, total);
    size_t off = 0;
    br_init(&h, hdrs, hdrs_len); /* validated above */
    for (unsigned i = 0; i < a->n_entries; i++) {
        struct raft_entry *e = &a->entries[i];
        e->term = br_u64(&h);
        e->type = br_u16(&h);
        br_skip(&h, 2);
        e->buf.len = br_u32(&h);
        e->buf.base = batch + off;
        e->batch = batch;
        off += e->buf.len;
    }
    return 0;
}

static int decode_install_snapshot(struct bytes_r *g, struct raft_install_snapshot *s,
                                   raftmsg_take_fn *take, void *take_arg)
{
    s->term = br_u64(g);
    s->last_index = br_u64(g);
    s->last_term = br_u64(g);
    s->conf_index = br_u64(g);
    s->data = (struct raft_buffer){NULL, 0};
    if (g->err) return -EPROTO;
    int rc = conf_get(g, &s->conf);
    if (rc < 0) return rc;
    uint64_t dlen = br_u64(g);
    if (g->err || dlen != g->left) {
        raft_configuration_close(&s->conf);
        return -EPROTO;
    }
    if (take && dlen) {
        /* The caller's bytes become the data without a copy (rio: a
         * mapped message, raftmsg.h). */
        const uint8_t *p = br_take(g, dlen);
        rc = take(take_arg, p, dlen, &s->data);
        if (rc < 0) raft_configuration_close(&s->conf);
        return rc;
    }
    s->data.base = raft_malloc(dlen ? dlen : 1);
    if (!s->data.base) {
        raft_configuration_close(&s->conf);
        return -ENOMEM;
    }
    s->data.len = dlen;
    if (dlen) memcpy(s->data.base, br_take(g, dlen), dlen);
    return 0;
}

int raftmsg_decode(const uint8_t *buf, size_t len, struct raft_message *m)
{
    return raftmsg_decode_take(buf, len, m, NULL, NULL);
}

int raftmsg_decode_take(const uint8_t *buf, size_t len, struct raft_message *m,
                        raftmsg_take_fn *take, void *take_arg)
{
    struct bytes_r g;
    br_init(&g, buf, len);
    uint16_t type = br_u16(&g);
    uint16_t version = br_u16(&g);
    if (g.err || version != RAFTMSG_VERSION) return -EPROTO;
    m->type = type;
    int rc = 0;
    switch (type) {
    case RAFT_IO_APPEND_ENTRIES:
        /* Consumes exactly the rest or fails: nothing to check after. */
        return decode_append_entries(&g, &m->append_entries);
    case RAFT_IO_APPEND_ENTRIES_RESULT: {
        struct raft_append_entries_result *r = &m->append_entries_result;
        r->term = br_u64(&g);
        r->rejected = br_u64(&g);
        r->last_log_index = br_u64(&g);
        break;
    }
    case RAFT_IO_REQUEST_VOTE: {
        struct raft_request_vote *v = &m->request_vote;
        v->term = br_u64(&g);
        v->candidate_id = br_u64(&g);
        v->last_log_index = br_u64(&g);
        v->last_log_term = br_u64(&g);
        uint8_t flags = br_u8(&g);
        if (flags & ~3u) rc = -EPROTO;
        v->disrupt_leader = flags & 1;
        v->pre_vote = (flags & 2) != 0;
        break;
    }
    case RAFT_IO_REQUEST_VOTE_RESULT: {
        struct raft_request_vote_result *r = &m->request_vote_result;
        r->term = br_u64(&g);
        uint8_t granted = br_u8(&g);
        uint8_t pre = br_u8(&g);
        if (granted > 1 || pre > raft_tribool_false) rc = -EPROTO;
        r->vote_granted = granted;
        r->pre_vote = (raft_tribool)pre;
        break;
    }
    case RAFT_IO_INSTALL_SNAPSHOT:
        return decode_install_snapshot(&g, &m->install_snapshot, take, take_arg);
    case RAFT_IO_TIMEOUT_NOW: {
        struct raft_timeout_now *t = &m->timeout_now;
        t->term = br_u64(&g);
        t->last_log_index = br_u64(&g);
        t->last_log_term = br_u64(&g);
        break;
    }
    default: return -EPROTO;
    }
    if (g.err || g.left != 0) rc = -EPROTO;
    return rc;
}

void raftmsg_free(struct raft_message *m)
{
    if (m->type == RAFT_IO_APPEND_ENTRIES) {
        struct raft_append_entries *a = &m->append_entries;
        if (a->entries) {
            raft_free(a->entries[0].batch);
            raft_free(a->entries);
        }
        a->entries = NULL;
        a->n_entries = 0;
    } else if (m->type == RAFT_IO_INSTALL_SNAPSHOT) {
        raft_configuration_close(&m->install_snapshot.conf);
        raft_free(m->install_snapshot.data.base);
        m->install_snapshot.data = (struct raft_buffer){NULL, 0};
    }
}
