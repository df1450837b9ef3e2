/* fake_proxy.c: TEST ONLY (see fake_proxy.h).  One process, one reactor,
 * no Raft: "committed" means applied to the in-memory volume, and the
 * raft index is a counter. */
#include "fake_proxy.h"
#include "bd.h"
#include "net/listener.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VOLS 16
#define MAX_CONNS 32
#define MAX_HELD 256
#define MAX_LOG 8192

struct held {
    struct conn *c;
    struct wire_hdr hdr;
    uint64_t off;
    uint64_t index;
    unsigned log_i;
    uint8_t *body;      /* hold_unapplied: the request, applied at release */
};

struct fake_proxy {
    struct reactor *rx;
    char addr[256];
    const struct conn_auth *auth;
    struct listener *lis;
    struct conn *conns[MAX_CONNS];
    struct fake_vol *vols[MAX_VOLS];
    unsigned n_vols;
    uint64_t next_id;
    uint64_t index;
    struct fake_knobs k;
    struct held held[MAX_HELD];
    unsigned n_held;
    struct fake_write log[MAX_LOG];
    unsigned n_log;
    unsigned attaches, detaches, reads, flushes, redirects;
    struct held held_att[16];
    unsigned n_held_att;
    uint64_t max_min_index;
};

static struct fake_vol *by_id(struct fake_proxy *fp, uint64_t id)
{
    for (unsigned i = 0; i < fp->n_vols; i++)
        if (fp->vols[i] && fp->vols[i]->id == id) return fp->vols[i];
    return NULL;
}

static struct fake_vol *by_name(struct fake_proxy *fp, const char *p, size_t n)
{
    for (unsigned i = 0; i < fp->n_vols; i++)
        if (fp->vols[i] && strlen(fp->vols[i]->name) == n && memcmp(fp->vols[i]->name, p, n) == 0)
            return fp->vols[i];
    return NULL;
}

static void reply_index(struct conn *c, const struct wire_hdr *h, uint64_t index)
{
    uint8_t buf[16];
    struct wire_vol_write_resp r = {.raft_index = index}; /* same layout for flush/detach */
    int n = wire_encode_vol_write_resp(buf, sizeof(buf), &r);
    conn_reply(c, h, buf, (size_t)n, NULL);
}

/* Ranges of the blocks [a, b) of V, merged. */
static uint32_t ranges_of(const struct fake_vol *v, uint64_t a, uint64_t b,
                          struct wire_map_range *out, uint32_t max)
{
    uint32_t n = 0;
    for (uint64_t i = a; i < b && n < max;) {
        uint64_t j = i + 1;
        while (j < b && v->kind[j] == v->kind[i]) j++;
        out[n++] = (struct wire_map_range){.off = i * 4096, .len = (j - i) * 4096,
                                           .kind = v->kind[i]};
        i = j;
    }
    return n;
}

static void apply(struct fake_proxy *fp, struct fake_vol *v, const struct wire_vol_write_req *m)
{
    uint64_t pos = 0;
    for (uint32_t i = 0; i < wire_vol_write_count(m); i++) {
        struct wire_write_ext x;
        wire_vol_write_ext(m, i, &x);
        if (m->flags & (WIRE_WRITE_ZERO | WIRE_WRITE_TRIM)) memset(v->data + x.off, 0, x.len);
        else memcpy(v->data + x.off, m->data + pos, x.len);
        memset(v->kind + x.off / 4096,
               m->flags & WIRE_WRITE_ZERO ? WIRE_MAP_ZERO
               : m->flags & WIRE_WRITE_TRIM ? WIRE_MAP_HOLE : WIRE_MAP_DATA,
               x.len / 4096);
        pos += x.len;
    }
    fp->index++;
}

static void on_write(struct fake_proxy *fp, struct conn *c, struct conn_frame *f)
{
    struct wire_vol_write_req m;
    if (wire_decode_vol_write_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "bad write");
        return;
    }
    struct fake_write *lg = fp->n_log < MAX_LOG ? &fp->log[fp->n_log++] : NULL;
    if (lg) *lg = (struct fake_write){.vol_id = m.vol_id, .gen = m.generation, .off = m.off,
                                      .len = m.len, .flags = m.flags, .status = -1};
    if (lg && (m.flags & WIRE_WRITE_SCATTER) && (lg->ext = calloc(m.n_ext, sizeof(*lg->ext)))) {
        lg->n_ext = m.n_ext;
        for (uint32_t i = 0; i < m.n_ext; i++) wire_vol_write_ext(&m, i, &lg->ext[i]);
    }
    struct fake_vol *v = by_id(fp, m.vol_id);
    int err = 0;
    if (!v) err = -ENOENT;
    else if (m.generation != v->gen) err = -BD_EFENCED;
    else if (m.off % 4096 || m.len % 4096) err = -ERANGE;
    for (uint32_t i = 0; !err && i < wire_vol_write_count(&m); i++) {
        struct wire_write_ext x;
        wire_vol_write_ext(&m, i, &x);
        if (x.off % 4096 || x.len % 4096 || x.off + x.len > v->size) err = -ERANGE;
    }
    if (!err && !(m.flags & (WIRE_WRITE_ZERO | WIRE_WRITE_TRIM)) &&
        util_xxh3(m.data, m.data_len) != m.csum)
        err = -BD_ECSUM;
    else if (!err && fp->k.fail_writes > 0) {
        fp->k.fail_writes--;
        err = fp->k.fail_err;
    }
    if (err) {
        if (lg) lg->status = err;
        conn_reply_error(c, &f->hdr, err, 0, "refused");
        return;
    }
    if (fp->k.hold_unapplied && fp->n_held < MAX_HELD) {
        fp->held[fp->n_held++] = (struct held){.c = c, .hdr = f->hdr, .off = m.off,
                                               .log_i = fp->n_log - 1,
                                               .body = conn_frame_take(f)};
        return;
    }
    bool closing = fp->k.close_on_write > 0;
    if (closing) fp->k.close_on_write--;
    if (!closing || fp->k.close_applies) {
        apply(fp, v, &m);
        if (lg) lg->applied = true;
    }
    if (closing) {
        conn_close(c, -ECONNRESET);
        conn_reply_error(c, &f->hdr, -EIO, 0, "closed"); /* releases the request */
        return;
    }
    if (fp->k.drop_writes > 0) {
        fp->k.drop_writes--;
        if (fp->n_held < MAX_HELD)
            fp->held[fp->n_held++] = (struct held){.c = c, .hdr = f->hdr, .off = UINT64_MAX - 1,
                                                   .index = fp->index, .log_i = fp->n_log - 1};
        return;
    }
    if (fp->k.hold_writes && fp->n_held < MAX_HELD) {
        fp->held[fp->n_held++] = (struct held){.c = c, .hdr = f->hdr, .off = m.off,
                                               .index = fp->index, .log_i = fp->n_log - 1};
        return;
    }
    if (lg) lg->status = 0;
    reply_index(c, &f->hdr, fp->index);
}

static void on_read(struct fake_proxy *fp, struct conn *c, struct conn_frame *f)
{
    struct wire_vol_read_req m;
    if (wire_decode_vol_read_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "bad read");
        return;
    }
    fp->reads++;
    if (m.min_index > fp->max_min_index) fp->max_min_index = m.min_index;
    struct fake_vol *v = by_id(fp, m.vol_id);
    if (!v || m.off + m.len > v->size || m.off % 4096 || m.len % 4096) {
        conn_reply_error(c, &f->hdr, v ? -ERANGE : -ENOENT, 0, "no");
        return;
    }
    static struct wire_map_range r[WIRE_MAP_MAX];
    uint32_t n = 0;
    if (m.flags & WIRE_READ_MAP) n = ranges_of(v, m.off / 4096, (m.off + m.len) / 4096, r, WIRE_MAP_MAX);
    struct wire_vol_read_resp resp = {.csum = util_xxh3(v->data + m.off, m.len),
                                      .raft_index = fp->index, .n_ranges = n, .ranges_in = r,
                                      .data_len = m.len};
    static uint8_t buf[WIRE_MAX_FIELDS];
    int len = wire_encode_vol_read_resp(buf, sizeof(buf), &resp);
    struct conn_payload p = {.data = v->data + m.off, .len = m.len};
    conn_reply(c, &f->hdr, buf, (size_t)len, &p);
}

static void on_map(struct fake_proxy *fp, struct conn *c, struct conn_frame *f)
{
    struct wire_vol_map_req m;
    if (wire_decode_vol_map_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "bad map");
        return;
    }
    if (m.min_index > fp->max_min_index) fp->max_min_index = m.min_index;
    struct fake_vol *v = by_id(fp, m.vol_id);
    if (!v || m.off + m.len > v->size) {
        conn_reply_error(c, &f->hdr, v ? -ERANGE : -ENOENT, 0, "no");
        return;
    }
    static struct wire_map_range r[WIRE_MAP_MAX];
    uint32_t n = ranges_of(v, m.off / 4096, (m.off + m.len + 4095) / 4096, r, WIRE_MAP_MAX);
    struct wire_vol_map_resp resp = {.n = n, .ranges_in = r};
    static uint8_t buf[WIRE_MAX_FIELDS];
    int len = wire_encode_vol_map_resp(buf, sizeof(buf), &resp);
    conn_reply(c, &f->hdr, buf, (size_t)len, NULL);
}

static void on_attach(struct fake_proxy *fp, struct conn *c, struct conn_frame *f)
{
    struct wire_vol_attach_req m;
    if (wire_decode_vol_attach_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "bad attach");
        return;
    }
    if (fp->k.fail_attaches > 0) {
        fp->k.fail_attaches--;
        conn_reply_error(c, &f->hdr, fp->k.attach_err, 0, "attach refused");
        return;
    }
    struct fake_vol *v = by_name(fp, m.name.ptr, m.name.len);
    if (!v) {
        conn_reply_error(c, &f->hdr, -ENOENT, 0, "no such volume");
        return;
    }
    uint32_t flags = m.flags & WIRE_ATTACH_INFO;
    if (!(m.flags & WIRE_ATTACH_INFO)) {
        fp->attaches++;
        if (m.flags & WIRE_ATTACH_RO || v->read_only) flags |= WIRE_ATTACH_RO;
        else {
            v->gen++;
            fp->index++;
        }
    } else if (v->read_only) {
        flags |= WIRE_ATTACH_RO;
    }
    struct wire_vol_attach_resp r = {.vol_id = v->id, .size = v->size, .generation = v->gen,
                                     .block_size = 4096, .flags = flags, .raft_index = fp->index};
    uint8_t buf[64];
    int n = wire_encode_vol_attach_resp(buf, sizeof(buf), &r);
    if (fp->k.hold_attaches && fp->n_held_att < 16) {
        struct held *h = &fp->held_att[fp->n_held_att++];
        *h = (struct held){.c = c, .hdr = f->hdr, .body = malloc((size_t)n)};
        memcpy(h->body, buf, (size_t)n);
        h->off = (uint64_t)n;
        return;
    }
    conn_reply(c, &f->hdr, buf, (size_t)n, NULL);
}

static void on_flush(struct fake_proxy *fp, struct conn *c, struct conn_frame *f)
{
    struct wire_vol_flush_req m;
    if (wire_decode_vol_flush_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "bad flush");
        return;
    }
    fp->flushes++;
    struct fake_vol *v = by_id(fp, m.vol_id);
    if (!v) conn_reply_error(c, &f->hdr, -ENOENT, 0, "no");
    else if (m.generation != v->gen) conn_reply_error(c, &f->hdr, -BD_EFENCED, 0, "fenced");
    else reply_index(c, &f->hdr, fp->index);
}

static void on_list(struct fake_proxy *fp, struct conn *c, struct conn_frame *f)
{
    struct wire_vol_list_req m;
    if (wire_decode_vol_list_req(f->body, f->hdr.len, f->hdr.payload_len, &m) < 0) {
        conn_reply_error(c, &f->hdr, -EINVAL, 0, "bad list");
        return;
    }
    struct wire_vol_entry e[MAX_VOLS];
    char after[256] = "";
    wire_str_copy(m.after, after, sizeof(after));
    uint32_t n = 0;
    for (unsigned i = 0; i < fp->n_vols && n < m.max; i++) {
        struct fake_vol *v = fp->vols[i];
        if (!v || (after[0] && strcmp(v->name, after) <= 0)) continue;
        e[n++] = (struct wire_vol_entry){.name = wire_cstr(v->name), .vol_id = v->id,
                                         .size = v->size};
    }
    struct wire_vol_list_resp r = {.n = n, .entries_in = e};
    static uint8_t buf[WIRE_MAX_FIELDS];
    int len = wire_encode_vol_list_resp(buf, sizeof(buf), &r);
    conn_reply(c, &f->hdr, buf, (size_t)len, NULL);
}

static void on_request(struct conn *c, struct conn_frame *f, void *arg)
{
    struct fake_proxy *fp = arg;
    if (fp->k.not_leader) {
        fp->redirects++;
        conn_reply_error(c, &f->hdr, -BD_ENOTLEADER, fp->k.not_leader, "not the leader");
        return;
    }
    switch (f->hdr.type) {
    case WIRE_VOL_WRITE: on_write(fp, c, f); break;
    case WIRE_VOL_READ: on_read(fp, c, f); break;
    case WIRE_VOL_MAP: on_map(fp, c, f); break;
    case WIRE_VOL_ATTACH: on_attach(fp, c, f); break;
    case WIRE_VOL_FLUSH: on_flush(fp, c, f); break;
    case WIRE_VOL_LIST: on_list(fp, c, f); break;
    case WIRE_VOL_DETACH:
        fp->detaches++;
        reply_index(c, &f->hdr, fp->index);
        break;
    default: conn_reply_error(c, &f->hdr, -ENOTSUP, 0, "fake proxy: no"); break;
    }
}

static void on_close(struct conn *c, int err, void *arg)
{
    struct fake_proxy *fp = arg;
    (void)err;
    for (unsigned i = 0; i < MAX_CONNS; i++)
        if (fp->conns[i] == c) fp->conns[i] = NULL;
}

static const struct conn_ops fake_ops = {.on_request = on_request, .on_close = on_close};

static void on_accept(int fd, void *arg)
{
    struct fake_proxy *fp = arg;
    struct conn_opts o = {.tag = "fakeproxy", .auth = fp->auth, .fault.delay_ms = fp->k.delay_ms};
    struct conn *c = conn_accept(fp->rx, fd, &fake_ops, fp, &o);
    for (unsigned i = 0; c && i < MAX_CONNS; i++)
        if (!fp->conns[i]) {
            fp->conns[i] = c;
            break;
        }
}

struct fake_proxy *fake_proxy_new(struct reactor *rx, const char *addr,
                                  const struct conn_auth *auth)
{
    struct fake_proxy *fp = calloc(1, sizeof(*fp));
    fp->rx = rx;
    fp->auth = auth;
    fp->next_id = 100;
    util_strlcpy(fp->addr, addr, sizeof(fp->addr));
    if (fake_proxy_up(fp) < 0) {
        free(fp);
        return NULL;
    }
    return fp;
}

unsigned fake_proxy_release_attaches(struct fake_proxy *fp)
{
    unsigned n = fp->n_held_att;
    for (unsigned i = 0; i < n; i++) {
        struct held *h = &fp->held_att[i];
        conn_reply(h->c, &h->hdr, h->body, (size_t)h->off, NULL);
        free(h->body);
    }
    fp->n_held_att = 0;
    return n;
}

/* A held unapplied write commits now: the generation is checked now. */
static void release_unapplied(struct fake_proxy *fp, struct held *h)
{
    struct wire_vol_write_req m;
    int err = wire_decode_vol_write_req(h->body, h->hdr.len, h->hdr.payload_len, &m) < 0
                  ? -EINVAL : 0;
    struct fake_vol *v = err ? NULL : by_id(fp, m.vol_id);
    if (!err && (!v || m.generation != v->gen)) err = v ? -BD_EFENCED : -ENOENT;
    fp->log[h->log_i].status = err;
    if (err) {
        conn_reply_error(h->c, &h->hdr, err, 0, "refused at commit");
    } else {
        apply(fp, v, &m);
        fp->log[h->log_i].applied = true;
        reply_index(h->c, &h->hdr, fp->index);
    }
    free(h->body);
}

unsigned fake_proxy_release(struct fake_proxy *fp, uint64_t off)
{
    unsigned n = 0, k = 0;
    for (unsigned i = 0; i < fp->n_held; i++) {
        struct held h = fp->held[i];
        if (h.body && (off == UINT64_MAX || h.off == off)) {
            release_unapplied(fp, &h);
            n++;
        } else if (off == UINT64_MAX || h.off == off) {
            fp->log[h.log_i].status = 0;
            reply_index(h.c, &h.hdr, h.index);
            n++;
        } else {
            fp->held[k++] = h;
        }
    }
    fp->n_held = k;
    return n;
}

unsigned fake_proxy_held(const struct fake_proxy *fp)
{
    return fp->n_held;
}

void fake_proxy_down(struct fake_proxy *fp)
{
    if (fp->lis) listener_free(fp->lis);
    fp->lis = NULL;
    for (unsigned i = 0; i < MAX_CONNS; i++)
        if (fp->conns[i]) conn_close(fp->conns[i], -ECONNRESET);
    /* Held requests must still be answered (a no-op on closed conns). */
    for (unsigned i = 0; i < fp->n_held; i++) {
        conn_reply_error(fp->held[i].c, &fp->held[i].hdr, -EIO, 0, "down");
        free(fp->held[i].body);
    }
    fp->n_held = 0;
    for (unsigned i = 0; i < fp->n_held_att; i++) {
        conn_reply_error(fp->held_att[i].c, &fp->held_att[i].hdr, -EIO, 0, "down");
        free(fp->held_att[i].body);
    }
    fp->n_held_att = 0;
}

int fake_proxy_up(struct fake_proxy *fp)
{
    return listener_new(fp->rx, fp->addr, on_accept, fp, &fp->lis);
}

void fake_proxy_free(struct fake_proxy *fp)
{
    if (!fp) return;
    fake_proxy_down(fp);
    for (unsigned i = 0; i < fp->n_vols; i++) {
        if (!fp->vols[i]) continue;
        free(fp->vols[i]->data);
        free(fp->vols[i]->kind);
        free(fp->vols[i]);
    }
    for (unsigned i = 0; i < fp->n_log; i++) free(fp->log[i].ext);
    free(fp);
}

struct fake_knobs *fake_proxy_knobs(struct fake_proxy *fp)
{
    return &fp->k;
}

struct fake_vol *fake_proxy_add_vol(struct fake_proxy *fp, const char *name, uint64_t size)
{
    if (fp->n_vols == MAX_VOLS) return NULL;
    struct fake_vol *v = calloc(1, sizeof(*v));
    util_strlcpy(v->name, name, sizeof(v->name));
    v->id = fp->next_id++;
    v->size = size;
    v->data = calloc(1, size);
    v->kind = malloc(size / 4096);
    memset(v->kind, WIRE_MAP_HOLE, size / 4096);
    fp->vols[fp->n_vols++] = v;
    return v;
}

struct fake_vol *fake_proxy_vol(struct fake_proxy *fp, const char *name)
{
    return by_name(fp, name, strlen(name));
}

void fake_proxy_bump_gen(struct fake_vol *v)
{
    v->gen++;
}

void fake_proxy_delete_vol(struct fake_proxy *fp, const char *name)
{
    for (unsigned i = 0; i < fp->n_vols; i++)
        if (fp->vols[i] && strcmp(fp->vols[i]->name, name) == 0) {
            free(fp->vols[i]->data);
            free(fp->vols[i]->kind);
            free(fp->vols[i]);
            fp->vols[i] = NULL;
        }
}

const struct fake_write *fake_proxy_writes(const struct fake_proxy *fp, unsigned *n)
{
    *n = fp->n_log;
    return fp->log;
}

uint64_t fake_proxy_index(const struct fake_proxy *fp)
{
    return fp->index;
}
unsigned fake_proxy_attaches(const struct fake_proxy *fp)
{
    return fp->attaches;
}
unsigned fake_proxy_detaches(const struct fake_proxy *fp)
{
    return fp->detaches;
}
unsigned fake_proxy_reads(const struct fake_proxy *fp)
{
    return fp->reads;
}
unsigned fake_proxy_flushes(const struct fake_proxy *fp)
{
    return fp->flushes;
}
unsigned fake_proxy_redirects(const struct fake_proxy *fp)
{
    return fp->redirects;
}
uint64_t fake_proxy_max_min_index(const struct fake_proxy *fp)
{
    return fp->max_min_index;
}
