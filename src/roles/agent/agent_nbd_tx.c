/* agent_nbd_tx.c: the transmission phase of an NBD connection: request
 * headers, WRITE payloads, calls into the volume layer, replies.
 *
 * Place.  Called by the server (agent_nbd.c) for each step of input; it
 * calls down into the connection's plumbing (agent_nbd_conn.c: output,
 * slots, close) and the volume layer (agent_vol.h), nothing above.
 *
 * Happy path of a request:
 *   TX_HDR: 28 header bytes buffered -> nbd_check_request -> a slot from
 *   the connection's pool -> (WRITE: TX_DATA until len payload bytes are
 *   buffered, then one copy into the slot buffer) -> the volume's QoS
 *   limits (agent_qos_admit: at once, or the slot waits, holding its place
 *   in the connection's in-flight limit) -> agent_vol_<op>() ->
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
 * allocations are libevent's own output chain headers (the pool and what
 * it keeps are agent_nbd_conn.c's).
 *
 * A WRITE's payload is allocated only once all of it has arrived (the
 * read watermark is raised to let it accumulate in the input evbuffer):
 * a client that sends headers and stalls costs only the bytes it sent.
 *
 * TRIM and WRITE_ZEROES may be longer than the volume's max_io ("the
 * client MAY request an effect length larger than the maximum payload
 * size; the server SHOULD NOT disconnect"): they are split into max_io
 * pieces run one after another in the same slot; the first error ends the
 * request.
 *
 * Alignment (the export advertises a minimum block size of 1).  READ,
 * CACHE and BLOCK_STATUS ask the volume for the block cover of the range
 * and answer with the part asked for (no read-modify-write); a WRITE goes
 * down as it is (the volume read-modify-writes partial blocks, serialised
 * per block, agent_vol.h); an unaligned WRITE_ZEROES writes its partial
 * head and tail blocks' bytes as zeroes (a WRITE of zeroes: so an RMW)
 * and zeroes the whole blocks between, each a piece of its own, and with
 * FAST_ZERO it fails at once with ENOTSUP (an RMW is not fast); an
 * unaligned TRIM trims only the whole blocks inside it, and succeeds
 * without effect when there are none (TRIM is advisory).
 *
 * CACHE (NBD_FLAG_SEND_CACHE) reads the range through the volume and
 * drops the data: the agent keeps no clean-data cache of its own (only
 * the write-back journal), so what it warms is the cluster path (the
 * proxies' index, the blob servers' page cache) and what it checks is
 * that the range is readable.  Bounded like a READ: at most max_payload
 * bytes per request (longer: EINVAL, the clear error READ gets), and its
 * buffer counts against the connection's max_inflight_bytes.
 *
 * DF (NBD_FLAG_SEND_DF, offered only with structured replies): a READ
 * with NBD_CMD_FLAG_DF is answered with one data chunk, holes included.
 *
 * BLOCK_STATUS asks for at most max_io bytes and
 * AGENT_NBD_BS_MAX_EXT extents; the reply may cover less than requested,
 * which the spec allows
 * ("the server MAY return less data than requested"). */
#include "base/bd.h"
#include "runtime/log.h"
#include "base/util.h"
#include "roles/agent/agent_nbd_int.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- export parameters --------------------------------------------------------- */

uint16_t agent_nbd_tx_flags(const struct agent_vol_info *vi, bool structured)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                 NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE;
    if (structured) f |= NBD_FLAG_SEND_DF;
    if (vi->read_only) f |= NBD_FLAG_READ_ONLY;
    else f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
    return f;
}

void agent_nbd_tx_sizes(const struct agent_vol_info *vi, uint32_t *min, uint32_t *pref,
                        uint32_t *max)
{
    uint32_t b = vi->block_size;
    uint32_t m = BD_MIN(vi->max_io, NBD_MAX_WRITE);
    m -= m % b;
    *min = 1; /* any alignment: partial blocks are read-modify-written */
    *max = m;
    /* "a power of 2 at least as large as ... 2^9", and max >= preferred */
    uint32_t p = BD_MAX(b, 4096u);
    while (p > m && p > b) p >>= 1;
    *pref = p;
}

void agent_nbd_tx_setup(struct agent_nbd_conn *c)
{
    uint32_t pref;
    c->caps.size = c->vinfo.size;
    c->caps.tflags = agent_nbd_tx_flags(&c->vinfo, c->hs.structured);
    agent_nbd_tx_sizes(&c->vinfo, &c->caps.min_block, &pref, &c->caps.max_payload);
    c->caps.structured = c->hs.structured;
    c->caps.meta_base_alloc = c->hs.structured && c->hs.meta_base_alloc;
}

/* ---- replies ---------------------------------------------------------------------- */

static struct agent_nbd_cmd_metrics *cmd_metrics(struct agent_nbd_conn *c, uint16_t type)
{
    return &c->s->cmd[type < NBD_CMD_COUNT ? type : NBD_CMD_COUNT];
}

static void account(struct agent_nbd_conn *c, const struct nbd_request *rq, uint32_t err,
                    uint64_t t0_ns)
{
    struct agent_nbd_cmd_metrics *m = cmd_metrics(c, rq->type);
    metric_inc(m->requests);
    if (err) metric_inc(m->errors);
    metrics_observe_us(m->latency, (util_mono_ns() - t0_ns) / 1000);
}

static void reply_simple(struct agent_nbd_conn *c, uint64_t cookie, uint32_t err)
{
    uint8_t b[NBD_SIMPLE_REPLY_LEN];
    nbd_encode_simple_reply(b, sizeof(b), err, cookie);
    agent_nbd_conn_send(c, b, sizeof(b));
}

/* An error reply: an ERROR chunk with a message when structured replies
 * were negotiated ("The server SHOULD prefer sending errors via a
 * structured reply"; for READ it MUST), else a simple reply. */
static void reply_error(struct agent_nbd_conn *c, const struct nbd_request *rq, uint32_t err,
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
    if (n > 0) agent_nbd_conn_send(c, b, (size_t)n);
}

static bool ext_is_zero(int kind)
{
    return kind == AGENT_VOL_EXT_ZERO || kind == AGENT_VOL_EXT_HOLE;
}

struct run {
    uint64_t off;
    uint32_t len;
    bool zero;
};

/* How much of extent E, which the volume mapped from the block-aligned
 * cover of a request, lies in [pos, end): 0 if it ends at or before POS
 * (the cover's head), -1 if it starts after POS or is empty (malformed:
 * stop there). */
static int64_t ext_clip(const struct agent_vol_extent *e, uint64_t pos, uint64_t end)
{
    if (e->len == 0 || e->off > pos) return -1;
    if (e->off + e->len <= pos) return 0;
    return (int64_t)(BD_MIN(e->off + e->len, end) - pos);
}

/* Turn the volume's READ map into at most AGENT_NBD_READ_MAX_EXT + 1 runs
 * covering [off, off + len): the map's prefix as far as it is well
 * formed, then data for the rest.  Adjacent runs of a kind merge. */
static unsigned read_runs(const struct agent_nbd_slot *sl, struct run *runs)
{
    uint64_t pos = sl->rq.off, end = sl->rq.off + sl->rq.len;
    unsigned nr = 0;
    uint32_t n = BD_MIN(sl->req.n_ext, (uint32_t)AGENT_NBD_READ_MAX_EXT);
    for (uint32_t i = 0; i < n && pos < end; i++) {
        const struct agent_vol_extent *e = &sl->rext[i];
        int64_t cl = ext_clip(e, pos, end);
        if (cl < 0) break; /* malformed: the rest is data */
        if (cl == 0) continue;
        uint32_t l = (uint32_t)cl;
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

static void reply_read(struct agent_nbd_slot *sl)
{
    struct agent_nbd_conn *c = sl->c;
    const struct nbd_request *rq = &sl->rq;
    const uint8_t *data = sl->buf + (rq->off - sl->aoff); /* buf holds the block cover */
    metric_add(c->s->m_bytes_out, rq->len);
    if (!c->caps.structured) {
        reply_simple(c, rq->cookie, 0);
        agent_nbd_conn_send_ref(sl, data, rq->len);
        return;
    }
    struct run runs[AGENT_NBD_READ_MAX_EXT + 1];
    unsigned nr = 1;
    if (rq->flags & NBD_CMD_FLAG_DF) /* "MUST NOT fragment": one data chunk, holes included */
        runs[0] = (struct run){rq->off, rq->len, false};
    else
        nr = read_runs(sl, runs);
    for (unsigned i = 0; i < nr && c->bev; i++) {
        uint16_t fl = i + 1 == nr ? NBD_REPLY_FLAG_DONE : 0;
        uint8_t b[NBD_CHUNK_HOLE_LEN];
        if (runs[i].zero) {
            nbd_encode_chunk_hole(b, sizeof(b), fl, rq->cookie, runs[i].off, runs[i].len);
            agent_nbd_conn_send(c, b, NBD_CHUNK_HOLE_LEN);
        } else {
            nbd_encode_chunk_data_hdr(b, sizeof(b), fl, rq->cookie, runs[i].off, runs[i].len);
            if (agent_nbd_conn_send(c, b, NBD_CHUNK_DATA_HDR_LEN))
                agent_nbd_conn_send_ref(sl, data + (runs[i].off - rq->off), runs[i].len);
        }
    }
}

static uint32_t ext_state(int kind)
{
    switch (kind) {
    case AGENT_VOL_EXT_HOLE:
        return NBD_STATE_HOLE | NBD_STATE_ZERO;
    case AGENT_VOL_EXT_ZERO:
        return NBD_STATE_ZERO;                  /* reads as zero; an index entry exists */
    default: return 0;                          /* "MAY always safely report a status of 0" */
    }
}

/* base:allocation descriptors from the volume's map, clipped to the
 * request (CVE-2025-47711: an extent longer than the request, or a map
 * that runs past it, must not leak into the reply), merged where the
 * state repeats; with REQ_ONE exactly one descriptor, no longer than the
 * request. */
static void reply_block_status(struct agent_nbd_slot *sl)
{
    struct agent_nbd_conn *c = sl->c;
    const struct nbd_request *rq = &sl->rq;
    const struct agent_vol_extent *ext = (const struct agent_vol_extent *)sl->buf;
    uint64_t pos = rq->off, end = rq->off + rq->len;
    uint32_t n = BD_MIN(sl->req.n_ext, sl->req.max_ext);
    bool one = rq->flags & NBD_CMD_FLAG_REQ_ONE;
    uint8_t b[NBD_CHUNK_BS_HDR_LEN + NBD_EXTENT_LEN * AGENT_NBD_BS_MAX_EXT];
    uint32_t nd = 0, last_len = 0, last_state = 0;
    for (uint32_t i = 0; i < n && pos < end; i++) {
        int64_t cl = ext_clip(&ext[i], pos, end);
        if (cl < 0) break;
        if (cl == 0) continue;
        uint32_t l = (uint32_t)cl;
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
    agent_nbd_conn_send(c, b, NBD_CHUNK_BS_HDR_LEN + NBD_EXTENT_LEN * (size_t)nd);
}

/* ---- the volume layer ------------------------------------------------------------ */

static void submit(struct agent_nbd_slot *sl);

static enum agent_qos_op qos_op(uint16_t type)
{
    switch (type) {
    case NBD_CMD_READ:
    case NBD_CMD_CACHE: return AGENT_QOS_READ; /* CACHE reads from the cluster too */
    case NBD_CMD_WRITE: return AGENT_QOS_WRITE;
    case NBD_CMD_WRITE_ZEROES: return AGENT_QOS_ZERO;
    case NBD_CMD_TRIM: return AGENT_QOS_TRIM;
    case NBD_CMD_FLUSH: return AGENT_QOS_FLUSH;
    default: return AGENT_QOS_OTHER;
    }
}

static void on_vol_done(struct agent_vol_req *req, int err)
{
    struct agent_nbd_slot *sl = req->data;
    struct agent_nbd_conn *c = sl->c;
    const struct nbd_request *rq = &sl->rq;
    sl->in_vol = false;
    c->n_vol--;
    if (err == 0 && c->bev && (rq->type == NBD_CMD_TRIM || rq->type == NBD_CMD_WRITE_ZEROES)) {
        sl->done += req->len;
        if (sl->done < sl->end) {
            submit(sl);
            agent_nbd_conn_unref(c);
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
        if (!e)
            agent_qos_done(agent_vol_qos(c->vol), qos_op(rq->type), rq->len,
                           (util_mono_ns() - sl->start_ns) / 1000);
    } else if (c->vol && c->n_vol == 0) {
        agent_vol_put(c->vol); /* closed meanwhile: the last request is back */
        c->vol = NULL;
    }
    agent_nbd_conn_slot_release(sl);
    agent_nbd_conn_unref(c); /* the volume layer's reference */
}

/* The volume's QoS let SL go (agent_qos.h): submit it, unless its
 * connection closed meanwhile (nothing was done, nobody to answer). */
static void on_qos_go(struct agent_qos_wait *w)
{
    struct agent_nbd_slot *sl = bd_container_of(w, struct agent_nbd_slot, qw);
    struct agent_nbd_conn *c = sl->c;
    sl->in_vol = false;
    c->n_vol--;
    if (c->bev) {
        submit(sl);
    } else {
        if (c->vol && c->n_vol == 0) {
            agent_vol_put(c->vol);
            c->vol = NULL;
        }
        agent_nbd_conn_slot_release(sl);
    }
    agent_nbd_conn_unref(c); /* the wait's reference */
}

/* The zeroes a partial block of an unaligned WRITE_ZEROES writes. */
static const uint8_t zero_block[BD_BLOCK_SIZE];

/* The block-aligned cover of [off, off + len): its offset and length. */
static uint64_t cover_len(uint64_t off, uint64_t len, uint32_t bs, uint64_t *aoff)
{
    *aoff = off - off % bs;
    uint64_t end = off + len;
    return end + (end % bs ? bs - end % bs : 0) - *aoff;
}

static void submit(struct agent_nbd_slot *sl)
{
    struct agent_nbd_conn *c = sl->c;
    struct agent_vol_req *r = &sl->req;
    if (!sl->admitted) {
        /* Once per request, before its first piece: the volume's limits. */
        sl->admitted = true;
        sl->qw.go = on_qos_go;
        if (!agent_qos_admit(agent_vol_qos(c->vol), &sl->qw, qos_op(sl->rq.type), sl->rq.len)) {
            sl->in_vol = true; /* the slot is taken, the connection and volume held */
            c->n_vol++;
            agent_nbd_conn_ref(c);
            return;
        }
    }
    const struct nbd_request *rq = &sl->rq;
    uint32_t bs = c->vinfo.block_size;
    uint32_t piece = c->vinfo.max_io - c->vinfo.max_io % bs;
    uint64_t aoff;
    memset(r, 0, sizeof(*r));
    r->cb = on_vol_done;
    r->data = sl;
    r->off = rq->off + sl->done;
    r->len = sl->end - sl->done;
    if (rq->flags & NBD_CMD_FLAG_FUA) r->flags |= AGENT_VOL_REQ_FUA;
    sl->in_vol = true;
    c->n_vol++;
    agent_nbd_conn_ref(c);
    switch (rq->type) {
    case NBD_CMD_READ:
    case NBD_CMD_CACHE:
        /* Any alignment: the volume reads the block cover into buf
         * (tx_header sized it), the reply sends the part asked for. */
        r->len = cover_len(rq->off, rq->len, bs, &aoff);
        r->off = sl->aoff = aoff;
        r->rbuf = sl->buf;
        if (c->caps.structured && rq->type == NBD_CMD_READ) {
            r->ext = sl->rext;
            r->max_ext = AGENT_NBD_READ_MAX_EXT;
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
        if (r->off % bs || r->len < bs) {
            /* A partial block: written as zeroes (read-modify-write in
             * the volume), a piece of its own. */
            r->len = BD_MIN(r->len, (uint64_t)(bs - r->off % bs));
            r->wbuf = zero_block;
            agent_vol_write(c->vol, r);
            break;
        }
        r->len = BD_MIN(r->len - r->len % bs, (uint64_t)piece);
        if (rq->flags & NBD_CMD_FLAG_NO_HOLE) r->flags |= AGENT_VOL_REQ_NO_HOLE;
        if (rq->flags & NBD_CMD_FLAG_FAST_ZERO) r->flags |= AGENT_VOL_REQ_FAST_ZERO;
        agent_vol_zero(c->vol, r);
        break;
    case NBD_CMD_BLOCK_STATUS:
        r->len = BD_MIN(cover_len(rq->off, rq->len, bs, &aoff), (uint64_t)piece);
        r->off = sl->aoff = aoff;
        r->ext = (struct agent_vol_extent *)(void *)sl->buf;
        r->max_ext = AGENT_NBD_BS_MAX_EXT;
        agent_vol_block_status(c->vol, r);
        break;
    default: /* nbd_check_request admits nothing else */
        (void)BD_NEVER(true);
        sl->in_vol = false;
        c->n_vol--;
        reply_error(c, rq, NBD_EINVAL, "unknown command");
        agent_nbd_conn_slot_release(sl);
        agent_nbd_conn_unref(c);
        break;
    }
}

/* ---- input ------------------------------------------------------------------------ */

/* May a request needing NEED payload bytes start now (CONTRACT.md §3 4.2,
 * "a client that never reads replies ... bounded per-connection queue")? */
static bool can_start(struct agent_nbd_conn *c, uint64_t need)
{
    const struct agent_nbd_opts *o = &c->s->o;
    if (c->n_busy >= o->max_inflight) return false;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) > o->out_high_water) return false;
    return need == 0 || c->n_busy == 0 || c->busy_bytes + need <= o->max_inflight_bytes;
}

static bool tx_header(struct agent_nbd_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (evbuffer_get_length(in) < NBD_REQUEST_LEN) return false;
    uint8_t b[NBD_REQUEST_LEN];
    evbuffer_copyout(in, b, NBD_REQUEST_LEN);
    struct nbd_request rq;
    if (nbd_decode_request(b, sizeof(b), &rq) < 0) {
        agent_nbd_conn_proto_error(c, "request magic is wrong");
        return false;
    }
    if (rq.type == NBD_CMD_DISC) {
        /* "The server MUST handle all outstanding requests ... and close" */
        evbuffer_drain(in, NBD_REQUEST_LEN);
        agent_nbd_conn_drain(c, c->s->o.disc_drain_ms, "client sent NBD_CMD_DISC");
        return false;
    }
    int chk = nbd_check_request(&rq, &c->caps);
    if (chk < 0) {
        char why[96];
        snprintf(why, sizeof(why), "WRITE payload of %u bytes exceeds %u", rq.len, NBD_MAX_WRITE);
        agent_nbd_conn_proto_error(c, why);
        return false;
    }
    bool data = chk == 0 && (rq.type == NBD_CMD_READ || rq.type == NBD_CMD_WRITE ||
                             rq.type == NBD_CMD_CACHE);
    if (!can_start(c, data ? rq.len : 0)) {
        agent_nbd_conn_read_enable(c, false); /* resumed by slot_put or the write callback */
        return false;
    }
    evbuffer_drain(in, NBD_REQUEST_LEN);
    uint64_t t0 = util_mono_ns();
    if (chk > 0) {
        if (rq.type == NBD_CMD_WRITE && rq.len > 0) {
            c->skip_rq = rq;
            c->skip_left = rq.len;
            c->skip_err = (uint32_t)chk;
            agent_nbd_conn_set_state(c, AGENT_NBD_TX_SKIP);
            return true;
        }
        reply_error(c, &rq, (uint32_t)chk, "invalid request");
        account(c, &rq, (uint32_t)chk, t0);
        return true;
    }
    struct agent_nbd_slot *sl = agent_nbd_conn_slot_get(c);
    if (!sl) {
        agent_nbd_conn_close(c, "out of memory for a request");
        return false;
    }
    sl->rq = rq;
    sl->admitted = false;
    sl->start_ns = t0;
    sl->end = rq.len;
    sl->aoff = rq.off;
    sl->reserved = data ? rq.len : 0;
    c->busy_bytes += sl->reserved;
    if (rq.type == NBD_CMD_WRITE) {
        c->cur = sl;
        /* Reading pauses at the high-water mark: raise it for a payload
         * that would not fit under it (and only then: it costs syscalls). */
        if (rq.len >= AGENT_NBD_READ_HIGH_WATER)
            bufferevent_setwatermark(c->bev, EV_READ, 0,
                                     (size_t)rq.len + AGENT_NBD_READ_HIGH_WATER);
        agent_nbd_conn_set_state(c, AGENT_NBD_TX_DATA);
        return true;
    }
    uint32_t bs = c->vinfo.block_size;
    if (rq.type == NBD_CMD_TRIM) {
        /* Unaligned: only the whole blocks inside are trimmed (TRIM is
         * advisory: "the server MAY ... discard" what it can). */
        uint64_t a0 = rq.off + (rq.off % bs ? bs - rq.off % bs : 0);
        uint64_t a1 = (rq.off + rq.len) - (rq.off + rq.len) % bs;
        if (a0 >= a1) {
            reply_simple(c, rq.cookie, 0);
            account(c, &rq, 0, t0);
            agent_nbd_conn_slot_release(sl);
            return true;
        }
        sl->done = a0 - rq.off;
        sl->end = a1 - rq.off;
    }
    if (rq.type == NBD_CMD_WRITE_ZEROES && (rq.flags & NBD_CMD_FLAG_FAST_ZERO) &&
        (rq.off % bs || rq.len % bs)) {
        /* Partial blocks need a read-modify-write: not fast. */
        reply_error(c, &rq, NBD_ENOTSUP, "unaligned zeroes are not fast");
        account(c, &rq, NBD_ENOTSUP, t0);
        agent_nbd_conn_slot_release(sl);
        return true;
    }
    uint64_t aoff;
    size_t need = rq.type == NBD_CMD_READ || rq.type == NBD_CMD_CACHE
                      ? cover_len(rq.off, rq.len, bs, &aoff)
                  : rq.type == NBD_CMD_BLOCK_STATUS
                      ? AGENT_NBD_BS_MAX_EXT * sizeof(struct agent_vol_extent)
                      : 0;
    if (need && agent_nbd_conn_slot_buf(sl, need) < 0) {
        reply_error(c, &rq, NBD_ENOMEM, "out of memory");
        account(c, &rq, NBD_ENOMEM, t0);
        agent_nbd_conn_slot_release(sl);
        return true;
    }
    submit(sl);
    return true;
}

static bool tx_data(struct agent_nbd_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct agent_nbd_slot *sl = c->cur;
    if (evbuffer_get_length(in) < sl->rq.len) return false;
    c->cur = NULL;
    if (sl->rq.len >= AGENT_NBD_READ_HIGH_WATER)
        bufferevent_setwatermark(c->bev, EV_READ, 0, AGENT_NBD_READ_HIGH_WATER);
    agent_nbd_conn_set_state(c, AGENT_NBD_TX_HDR);
    if (agent_nbd_conn_slot_buf(sl, sl->rq.len) < 0) {
        evbuffer_drain(in, sl->rq.len);
        reply_error(c, &sl->rq, NBD_ENOMEM, "out of memory");
        account(c, &sl->rq, NBD_ENOMEM, sl->start_ns);
        agent_nbd_conn_slot_release(sl);
        return true;
    }
    evbuffer_remove(in, sl->buf, sl->rq.len);
    metric_add(c->s->m_bytes_in, sl->rq.len);
    submit(sl);
    return true;
}

static bool tx_skip(struct agent_nbd_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t n = BD_MIN(evbuffer_get_length(in), (size_t)c->skip_left);
    if (n == 0) return false;
    evbuffer_drain(in, n);
    c->skip_left -= (uint32_t)n;
    if (c->skip_left) return false;
    agent_nbd_conn_set_state(c, AGENT_NBD_TX_HDR);
    reply_error(c, &c->skip_rq, c->skip_err, "invalid request (payload dropped)");
    account(c, &c->skip_rq, c->skip_err, util_mono_ns());
    return true;
}

bool agent_nbd_tx_step(struct agent_nbd_conn *c)
{
    switch (c->state) {
    case AGENT_NBD_TX_HDR:
        return tx_header(c);
    case AGENT_NBD_TX_DATA:
        return tx_data(c);
    case AGENT_NBD_TX_SKIP:
        return tx_skip(c);
    default: return false;
    }
}
