/* agent_nbd_tx.c: the transmission phase of an NBD connection: request
 * headers, WRITE payloads, calls into the volume layer, replies.
 *
 * Happy path of a request:
 *   TX_HDR: 28 header bytes buffered -> nbd_check_request -> a slot from
 *   the connection's pool -> (WRITE: TX_DATA until len payload bytes are
 *   buffered, then one copy into the slot buffer) -> agent_vol_<op>() ->
 *   on_vol_done -> reply queued -> slot back to the pool (READ: once the
 *   socket has taken the data, which is queued by reference).
 *
 * Failure modes:
 *   - bad request magic: close (proto.md "Request message"; nothing else
 *     in the stream can be trusted);
 *   - a WRITE over 32 MiB: close before reading or allocating its payload;
 *   - any other invalid request: an error reply (NBD_EINVAL, EPERM,
 *     ENOSPC), and a rejected WRITE's payload is read and dropped first
 *     (TX_SKIP) so the stream stays in sync;
 *   - a volume error: mapped by nbd_err_from_errno; with structured
 *     replies it is an ERROR chunk carrying a message, never a simple
 *     reply to a READ.  A READ's data is sent only after the volume
 *     returned all of it, so an error never follows a simple reply's
 *     header and never needs the hard disconnect proto.md allows there;
 *   - the client closes inside a WRITE payload: the slot is dropped,
 *     nothing was submitted, nothing is acknowledged;
 *   - the connection closes with requests inside the volume layer: they
 *     complete later into a closed connection, which releases their slots
 *     and, after the last, the volume reference.
 *
 * Copies and allocations per request (PERF.md): WRITE payloads are copied
 * once, from the input evbuffer into the slot buffer (the volume layer
 * needs them contiguous); READ data is queued by reference
 * (evbuffer_add_reference) and written by the kernel straight from the
 * slot buffer, with no copy in user space; headers are built on the
 * stack and copied into the output evbuffer (16-32 bytes).  Slots and
 * their buffers are pooled per connection, so after warm-up the only
 * allocations are libevent's own output chain headers.  Buffers above
 * NBD_SLOT_KEEP, or beyond NBD_CONN_KEEP kept per connection, are freed on
 * completion so a burst of 32 MiB requests does not pin memory.
 *
 * A WRITE's payload is allocated only once all of it has arrived (the
 * read watermark is raised to let it accumulate in the input evbuffer):
 * a client that sends headers and stalls costs only the bytes it sent.
 *
 * TRIM and WRITE_ZEROES may be longer than the volume's max_io ("the
 * client MAY request an effect length larger than the maximum payload
 * size; the server SHOULD NOT disconnect"): they are split into max_io
 * pieces run one after another in the same slot; the first error ends the
 * request.  BLOCK_STATUS asks for at most max_io bytes and NBD_BS_MAX_EXT
 * extents; the reply may cover less than requested, which the spec allows
 * ("the server MAY return less data than requested"). */
#include "../bd.h"
#include "../log.h"
#include "../util.h"
#include "agent_nbd_int.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBD_SLOT_KEEP (4u << 20)  /* largest buffer an idle slot keeps */
#define NBD_CONN_KEEP (16u << 20) /* buffer bytes idle slots of a connection keep */

/* ---- export parameters --------------------------------------------------------- */

uint16_t nbd_tx_flags(const struct agent_vol_info *vi)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                 NBD_FLAG_CAN_MULTI_CONN;
    if (vi->read_only) f |= NBD_FLAG_READ_ONLY;
    else f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
    return f;
}

void nbd_tx_sizes(const struct agent_vol_info *vi, uint32_t *min, uint32_t *pref, uint32_t *max)
{
    uint32_t b = vi->block_size;
    uint32_t m = BD_MIN(vi->max_io, NBD_MAX_WRITE);
    m -= m % b;
    *min = b;
    *max = m;
    /* "a power of 2 at least as large as ... 2^9", and max >= preferred */
    uint32_t p = BD_MAX(b, 4096u);
    while (p > m && p > b) p >>= 1;
    *pref = p;
}

void nbd_tx_setup(struct nbdc *c)
{
    uint32_t pref;
    c->caps.size = c->vinfo.size;
    c->caps.tflags = nbd_tx_flags(&c->vinfo);
    nbd_tx_sizes(&c->vinfo, &c->caps.min_block, &pref, &c->caps.max_payload);
    c->caps.structured = c->hs.structured;
    c->caps.meta_base_alloc = c->hs.structured && c->hs.meta_base_alloc;
}

/* ---- slots ---------------------------------------------------------------------- */

static struct nbd_slot *slot_get(struct nbdc *c)
{
    struct nbd_slot *sl = c->free_slots;
    if (sl) {
        c->free_slots = sl->next;
        c->kept_bytes -= sl->cap;
    } else {
        sl = calloc(1, sizeof(*sl));
        if (!sl) return NULL;
        sl->c = c;
        c->n_slots++;
    }
    sl->next = NULL;
    sl->done = 0;
    sl->reserved = 0;
    c->n_busy++;
    return sl;
}

/* The request is over and nothing references its buffer. */
static void slot_put(struct nbd_slot *sl)
{
    struct nbdc *c = sl->c;
    c->n_busy--;
    c->busy_bytes -= sl->reserved;
    sl->reserved = 0;
    if (sl->cap > NBD_SLOT_KEEP || c->kept_bytes + sl->cap > NBD_CONN_KEEP) {
        free(sl->buf);
        sl->buf = NULL;
        sl->cap = 0;
    }
    c->kept_bytes += sl->cap;
    sl->next = c->free_slots;
    c->free_slots = sl;
    nbdc_maybe_resume(c);
}

static void slot_release(struct nbd_slot *sl)
{
    if (sl->refs == 0 && !sl->in_vol) slot_put(sl);
}

static int slot_buf(struct nbd_slot *sl, size_t len)
{
    if (sl->cap >= len) return 0;
    free(sl->buf);
    sl->buf = malloc(len);
    sl->cap = sl->buf ? len : 0;
    return sl->buf ? 0 : -ENOMEM;
}

static void on_ref_done(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    struct nbd_slot *sl = arg;
    struct nbdc *c = sl->c;
    if (BD_NEVER(sl->refs == 0)) return;
    if (--sl->refs == 0) {
        slot_release(sl);
        nbdc_unref(c); /* taken with the first reference */
    }
}

/* Queue LEN bytes of the slot buffer at P by reference. */
static bool send_ref(struct nbd_slot *sl, const uint8_t *p, size_t len)
{
    struct nbdc *c = sl->c;
    if (!c->bev) return false;
    if (sl->refs++ == 0) nbdc_ref(c);
    if (evbuffer_add_reference(bufferevent_get_output(c->bev), p, len, on_ref_done, sl) < 0) {
        on_ref_done(p, len, sl);
        nbdc_close(c, "out of memory for output");
        return false;
    }
    return true;
}

void nbd_tx_drop_partial(struct nbdc *c)
{
    struct nbd_slot *sl = c->cur;
    if (!sl) return;
    c->cur = NULL;
    log_line(LOG_INFO, c->s->o.tag, c->vol ? c->vinfo.name : NULL, 0,
             "nbd conn %llu: dropped a WRITE at %llu+%u whose payload never arrived",
             (unsigned long long)c->id, (unsigned long long)sl->rq.off, sl->rq.len);
    slot_release(sl);
}

void nbd_tx_free_slots(struct nbdc *c)
{
    if (BD_NEVER(c->n_busy != 0))
        log_error(c->s->o.tag, "nbd conn %llu: freed with %u busy slots", (unsigned long long)c->id,
                  c->n_busy);
    struct nbd_slot *next;
    for (struct nbd_slot *sl = c->free_slots; sl; sl = next) {
        next = sl->next;
        free(sl->buf);
        free(sl);
    }
    c->free_slots = NULL;
}

bool nbd_tx_idle(const struct nbdc *c)
{
    return c->n_busy == 0 && !c->cur;
}

/* ---- replies ---------------------------------------------------------------------- */

static struct nbd_cmd_metrics *cmd_metrics(struct nbdc *c, uint16_t type)
{
    return &c->s->cmd[type < NBD_CMD_COUNT ? type : NBD_CMD_COUNT];
}

static void account(struct nbdc *c, const struct nbd_request *rq, uint32_t err, uint64_t t0_ns)
{
    struct nbd_cmd_metrics *m = cmd_metrics(c, rq->type);
    metric_inc(m->requests);
    if (err) metric_inc(m->errors);
    metric_observe_us(m->latency, (util_mono_ns() - t0_ns) / 1000);
}

static void reply_simple(struct nbdc *c, uint64_t cookie, uint32_t err)
{
    uint8_t b[NBD_SIMPLE_REPLY_LEN];
    nbd_encode_simple_reply(b, sizeof(b), err, cookie);
    nbdc_send(c, b, sizeof(b));
}

/* An error reply: an ERROR chunk with a message when structured replies
 * were negotiated ("The server SHOULD prefer sending errors via a
 * structured reply"; for READ it MUST), else a simple reply. */
static void reply_error(struct nbdc *c, const struct nbd_request *rq, uint32_t err,
                        const char *why)
{
    if (!c->caps.structured) {
        reply_simple(c, rq->cookie, err);
        return;
    }
    char msg[256];
    snprintf(msg, sizeof(msg), "%s at %llu+%u: %s", nbd_cmd_name(rq->type),
             (unsigned long long)rq->off, rq->len, why);
    uint8_t b[NBD_CHUNK_HDR_LEN + 6 + sizeof(msg)];
    int n = nbd_encode_chunk_error(b, sizeof(b), NBD_REPLY_FLAG_DONE, rq->cookie, err, msg);
    if (n > 0) nbdc_send(c, b, (size_t)n);
}

static bool ext_is_zero(int kind)
{
    return kind == AGENT_EXT_ZERO || kind == AGENT_EXT_HOLE;
}

struct run {
    uint64_t off;
    uint32_t len;
    bool zero;
};

/* Turn the volume's READ map into at most NBD_READ_MAX_EXT + 1 runs
 * covering [off, off + len): the map's prefix as far as it is well
 * formed, then data for the rest.  Adjacent runs of a kind merge. */
static unsigned read_runs(const struct nbd_slot *sl, struct run *runs)
{
    uint64_t pos = sl->rq.off, end = sl->rq.off + sl->rq.len;
    unsigned nr = 0;
    uint32_t n = BD_MIN(sl->req.n_ext, (uint32_t)NBD_READ_MAX_EXT);
    for (uint32_t i = 0; i < n && pos < end; i++) {
        const struct agent_extent *e = &sl->rext[i];
        if (e->off != pos || e->len == 0) break; /* malformed: the rest is data */
        uint32_t l = (uint32_t)BD_MIN(e->len, end - pos);
        bool z = ext_is_zero(e->kind);
        if (nr && runs[nr - 1].zero == z) runs[nr - 1].len += l;
        else runs[nr++] = (struct run){pos, l, z};
        pos += l;
    }
    if (pos < end) {
        if (nr && !runs[nr - 1].zero) runs[nr - 1].len += (uint32_t)(end - pos);
        else runs[nr++] = (struct run){pos, (uint32_t)(end - pos), false};
    }
    return nr;
}

static void reply_read(struct nbd_slot *sl)
{
    struct nbdc *c = sl->c;
    const struct nbd_request *rq = &sl->rq;
    metric_add(c->s->m_bytes_out, rq->len);
    if (!c->caps.structured) {
        reply_simple(c, rq->cookie, 0);
        send_ref(sl, sl->buf, rq->len);
        return;
    }
    struct run runs[NBD_READ_MAX_EXT + 1];
    unsigned nr = read_runs(sl, runs);
    for (unsigned i = 0; i < nr && c->bev; i++) {
        uint16_t fl = i + 1 == nr ? NBD_REPLY_FLAG_DONE : 0;
        uint8_t b[NBD_CHUNK_HOLE_LEN];
        if (runs[i].zero) {
            nbd_encode_chunk_hole(b, sizeof(b), fl, rq->cookie, runs[i].off, runs[i].len);
            nbdc_send(c, b, NBD_CHUNK_HOLE_LEN);
        } else {
            nbd_encode_chunk_data_hdr(b, sizeof(b), fl, rq->cookie, runs[i].off, runs[i].len);
            if (nbdc_send(c, b, NBD_CHUNK_DATA_HDR_LEN))
                send_ref(sl, sl->buf + (runs[i].off - rq->off), runs[i].len);
        }
    }
}

static uint32_t ext_state(int kind)
{
    switch (kind) {
    case AGENT_EXT_HOLE: return NBD_STATE_HOLE | NBD_STATE_ZERO;
    case AGENT_EXT_ZERO: return NBD_STATE_ZERO; /* reads as zero; an index entry exists */
    default: return 0;                          /* "MAY always safely report a status of 0" */
    }
}

/* base:allocation descriptors from the volume's map, clipped to the
 * request (CVE-2025-47711: an extent longer than the request, or a map
 * that runs past it, must not leak into the reply), merged where the
 * state repeats; with REQ_ONE exactly one descriptor, no longer than the
 * request. */
static void reply_block_status(struct nbd_slot *sl)
{
    struct nbdc *c = sl->c;
    const struct nbd_request *rq = &sl->rq;
    const struct agent_extent *ext = (const struct agent_extent *)sl->buf;
    uint64_t pos = rq->off, end = rq->off + rq->len;
    uint32_t n = BD_MIN(sl->req.n_ext, sl->req.max_ext);
    bool one = rq->flags & NBD_CMD_FLAG_REQ_ONE;
    uint8_t b[NBD_CHUNK_BS_HDR_LEN + NBD_EXTENT_LEN * NBD_BS_MAX_EXT];
    uint32_t nd = 0, last_len = 0, last_state = 0;
    for (uint32_t i = 0; i < n && pos < end; i++) {
        if (ext[i].off != pos || ext[i].len == 0) break;
        uint32_t l = (uint32_t)BD_MIN(ext[i].len, end - pos);
        uint32_t st = ext_state(ext[i].kind);
        if (nd && st == last_state) {
            last_len += l;
        } else {
            if (nd) {
                if (one) break;
                nbd_encode_extent(b + NBD_CHUNK_BS_HDR_LEN + NBD_EXTENT_LEN * (nd - 1), last_len,
                                  last_state);
            }
            nd++;
            last_len = l;
            last_state = st;
        }
        pos += l;
    }
    if (nd == 0) {
        log_warn(c->s->o.tag, "nbd conn %llu: volume returned no usable extent at %llu",
                 (unsigned long long)c->id, (unsigned long long)rq->off);
        reply_error(c, rq, NBD_EIO, "no extent information");
        return;
    }
    nbd_encode_extent(b + NBD_CHUNK_BS_HDR_LEN + NBD_EXTENT_LEN * (nd - 1), last_len, last_state);
    nbd_encode_chunk_bs_hdr(b, sizeof(b), NBD_REPLY_FLAG_DONE, rq->cookie,
                            NBD_META_ID_BASE_ALLOC, nd);
    nbdc_send(c, b, NBD_CHUNK_BS_HDR_LEN + NBD_EXTENT_LEN * (size_t)nd);
}

/* ---- the volume layer ------------------------------------------------------------ */

static void submit(struct nbd_slot *sl);

static void on_vol_done(struct agent_req *req, int err)
{
    struct nbd_slot *sl = req->data;
    struct nbdc *c = sl->c;
    const struct nbd_request *rq = &sl->rq;
    sl->in_vol = false;
    c->n_vol--;
    if (err == 0 && c->bev && (rq->type == NBD_CMD_TRIM || rq->type == NBD_CMD_WRITE_ZEROES)) {
        sl->done += req->len;
        if (sl->done < rq->len) {
            submit(sl);
            nbdc_unref(c);
            return;
        }
    }
    if (c->bev) {
        uint32_t e = nbd_err_from_errno(err);
        /* "SHOULD NOT return NBD_ENOTSUP except ... FAST_ZERO" */
        if (e == NBD_ENOTSUP && !(rq->flags & NBD_CMD_FLAG_FAST_ZERO)) e = NBD_EIO;
        if (e) {
            log_line(LOG_DEBUG, c->s->o.tag, c->vinfo.name, 0, "nbd conn %llu: %s at %llu+%u: %s",
                     (unsigned long long)c->id, nbd_cmd_name(rq->type),
                     (unsigned long long)rq->off, rq->len, bd_strerror(err));
            reply_error(c, rq, e, bd_strerror(err));
        } else if (rq->type == NBD_CMD_READ) {
            reply_read(sl);
        } else if (rq->type == NBD_CMD_BLOCK_STATUS) {
            reply_block_status(sl);
        } else {
            reply_simple(c, rq->cookie, 0);
        }
        account(c, rq, e, sl->start_ns);
    } else if (c->vol && c->n_vol == 0) {
        agent_vol_put(c->vol); /* closed meanwhile: the last request is back */
        c->vol = NULL;
    }
    slot_release(sl);
    nbdc_unref(c); /* the volume layer's reference */
}

static void submit(struct nbd_slot *sl)
{
    struct nbdc *c = sl->c;
    struct agent_req *r = &sl->req;
    const struct nbd_request *rq = &sl->rq;
    uint32_t piece = c->vinfo.max_io - c->vinfo.max_io % c->vinfo.block_size;
    memset(r, 0, sizeof(*r));
    r->cb = on_vol_done;
    r->data = sl;
    r->off = rq->off + sl->done;
    r->len = rq->len - sl->done;
    if (rq->flags & NBD_CMD_FLAG_FUA) r->flags |= AGENT_REQ_FUA;
    sl->in_vol = true;
    c->n_vol++;
    nbdc_ref(c);
    switch (rq->type) {
    case NBD_CMD_READ:
        r->rbuf = sl->buf;
        if (c->caps.structured) {
            r->ext = sl->rext;
            r->max_ext = NBD_READ_MAX_EXT;
        }
        agent_vol_read(c->vol, r);
        break;
    case NBD_CMD_WRITE:
        r->wbuf = sl->buf;
        agent_vol_write(c->vol, r);
        break;
    case NBD_CMD_FLUSH:
        r->off = r->len = 0;
        agent_vol_flush(c->vol, r);
        break;
    case NBD_CMD_TRIM:
        r->len = BD_MIN(r->len, (uint64_t)piece);
        agent_vol_trim(c->vol, r);
        break;
    case NBD_CMD_WRITE_ZEROES:
        r->len = BD_MIN(r->len, (uint64_t)piece);
        if (rq->flags & NBD_CMD_FLAG_NO_HOLE) r->flags |= AGENT_REQ_NO_HOLE;
        if (rq->flags & NBD_CMD_FLAG_FAST_ZERO) r->flags |= AGENT_REQ_FAST_ZERO;
        agent_vol_zero(c->vol, r);
        break;
    case NBD_CMD_BLOCK_STATUS:
        r->len = BD_MIN(r->len, (uint64_t)piece);
        r->ext = (struct agent_extent *)(void *)sl->buf;
        r->max_ext = NBD_BS_MAX_EXT;
        agent_vol_block_status(c->vol, r);
        break;
    default: /* nbd_check_request admits nothing else */
        (void)BD_NEVER(true);
        sl->in_vol = false;
        c->n_vol--;
        reply_error(c, rq, NBD_EINVAL, "unknown command");
        slot_release(sl);
        nbdc_unref(c);
        break;
    }
}

/* ---- input ------------------------------------------------------------------------ */

/* May a request needing NEED payload bytes start now (CONTRACT.md §3 4.2,
 * "a client that never reads replies ... bounded per-connection queue")? */
static bool can_start(struct nbdc *c, uint64_t need)
{
    const struct agent_nbd_opts *o = &c->s->o;
    if (c->n_busy >= o->max_inflight) return false;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) > o->out_high_water) return false;
    return need == 0 || c->n_busy == 0 || c->busy_bytes + need <= o->max_inflight_bytes;
}

static bool tx_header(struct nbdc *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (evbuffer_get_length(in) < NBD_REQUEST_LEN) return false;
    uint8_t b[NBD_REQUEST_LEN];
    evbuffer_copyout(in, b, NBD_REQUEST_LEN);
    struct nbd_request rq;
    if (nbd_decode_request(b, sizeof(b), &rq) < 0) {
        nbdc_proto_error(c, "request magic is wrong");
        return false;
    }
    if (rq.type == NBD_CMD_DISC) {
        /* "The server MUST handle all outstanding requests ... and close" */
        evbuffer_drain(in, NBD_REQUEST_LEN);
        nbdc_drain(c, c->s->o.disc_drain_ms, "client sent NBD_CMD_DISC");
        return false;
    }
    int chk = nbd_check_request(&rq, &c->caps);
    if (chk < 0) {
        char why[96];
        snprintf(why, sizeof(why), "WRITE payload of %u bytes exceeds %u", rq.len, NBD_MAX_WRITE);
        nbdc_proto_error(c, why);
        return false;
    }
    bool data = chk == 0 && (rq.type == NBD_CMD_READ || rq.type == NBD_CMD_WRITE);
    if (!can_start(c, data ? rq.len : 0)) {
        nbdc_read_enable(c, false); /* resumed by slot_put or the write callback */
        return false;
    }
    evbuffer_drain(in, NBD_REQUEST_LEN);
    uint64_t t0 = util_mono_ns();
    if (chk > 0) {
        if (rq.type == NBD_CMD_WRITE && rq.len > 0) {
            c->skip_rq = rq;
            c->skip_left = rq.len;
            c->skip_err = (uint32_t)chk;
            nbdc_set_state(c, NBDC_TX_SKIP);
            return true;
        }
        reply_error(c, &rq, (uint32_t)chk, "invalid request");
        account(c, &rq, (uint32_t)chk, t0);
        return true;
    }
    struct nbd_slot *sl = slot_get(c);
    if (!sl) {
        nbdc_close(c, "out of memory for a request");
        return false;
    }
    sl->rq = rq;
    sl->start_ns = t0;
    sl->reserved = data ? rq.len : 0;
    c->busy_bytes += sl->reserved;
    if (rq.type == NBD_CMD_WRITE) {
        c->cur = sl;
        /* Reading pauses at the high-water mark: raise it for a payload
         * that would not fit under it (and only then: it costs syscalls). */
        if (rq.len >= NBD_READ_HIGH_WATER)
            bufferevent_setwatermark(c->bev, EV_READ, 0, (size_t)rq.len + NBD_READ_HIGH_WATER);
        nbdc_set_state(c, NBDC_TX_DATA);
        return true;
    }
    size_t need = rq.type == NBD_CMD_READ ? rq.len
                  : rq.type == NBD_CMD_BLOCK_STATUS ? NBD_BS_MAX_EXT * sizeof(struct agent_extent)
                                                    : 0;
    if (need && slot_buf(sl, need) < 0) {
        reply_error(c, &rq, NBD_ENOMEM, "out of memory");
        account(c, &rq, NBD_ENOMEM, t0);
        slot_release(sl);
        return true;
    }
    submit(sl);
    return true;
}

static bool tx_data(struct nbdc *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct nbd_slot *sl = c->cur;
    if (evbuffer_get_length(in) < sl->rq.len) return false;
    c->cur = NULL;
    if (sl->rq.len >= NBD_READ_HIGH_WATER)
        bufferevent_setwatermark(c->bev, EV_READ, 0, NBD_READ_HIGH_WATER);
    nbdc_set_state(c, NBDC_TX_HDR);
    if (slot_buf(sl, sl->rq.len) < 0) {
        evbuffer_drain(in, sl->rq.len);
        reply_error(c, &sl->rq, NBD_ENOMEM, "out of memory");
        account(c, &sl->rq, NBD_ENOMEM, sl->start_ns);
        slot_release(sl);
        return true;
    }
    evbuffer_remove(in, sl->buf, sl->rq.len);
    metric_add(c->s->m_bytes_in, sl->rq.len);
    submit(sl);
    return true;
}

static bool tx_skip(struct nbdc *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t n = BD_MIN(evbuffer_get_length(in), (size_t)c->skip_left);
    if (n == 0) return false;
    evbuffer_drain(in, n);
    c->skip_left -= (uint32_t)n;
    if (c->skip_left) return false;
    nbdc_set_state(c, NBDC_TX_HDR);
    reply_error(c, &c->skip_rq, c->skip_err, "invalid request (payload dropped)");
    account(c, &c->skip_rq, c->skip_err, util_mono_ns());
    return true;
}

bool nbd_tx_step(struct nbdc *c)
{
    switch (c->state) {
    case NBDC_TX_HDR: return tx_header(c);
    case NBDC_TX_DATA: return tx_data(c);
    case NBDC_TX_SKIP: return tx_skip(c);
    default: return false;
    }
}
