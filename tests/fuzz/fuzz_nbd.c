/* fuzz_nbd.c: libFuzzer target for the NBD server and codec (CONTRACT.md
 * row 10), after nbdkit's server/fuzzer.c.
 *
 * The first input byte picks a mode:
 *   even: the rest is a client's byte stream.  It is written into one end
 *         of a socketpair whose other end the real server (agent_nbd over
 *         the in-memory volume back end) adopted; the reactor runs until
 *         the server has closed the connection and every request it
 *         passed to the volume layer has completed.  Whatever the server
 *         sends back is read and dropped.  Seeds are captured client
 *         streams of real sessions (gen_nbd_corpus.py).
 *   odd:  codec mode.  The rest is cut into records (1 byte kind, 2 bytes
 *         length, payload) fed to every option and reply payload decoder,
 *         the handshake decisions and nbd_check_request; what decodes
 *         must re-encode to the same bytes.
 * Properties: no crash, no leak, no undefined behaviour, no hang (the
 * pump loop is bounded), and the back end never sees a request that
 * breaks agent_vol.h (agent_vol_mem counts violations: abort on any). */
#include "../unit/agent_vol_mem.h"
#include "base/bd.h"
#include "runtime/log.h"
#include "net/nbd.h"
#include "runtime/reactor.h"
#include "roles/agent/agent_nbd.h"
#include "base/bytes.h"

#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct reactor *rx;
static struct agent_vols *vols;
static struct agent_nbd *srv;

/* FUZZ_NBD_VERBOSE=1: at exit, say what reached the back end (to check
 * that seeds get past the handshake). */
static void report(void)
{
    struct agent_vol_mem_stats st;
    agent_vol_mem_stats(vols, &st);
    fprintf(stderr, "fuzz_nbd: infos %llu opens %llu lists %llu; read %llu write %llu flush %llu "
            "trim %llu zero %llu block_status %llu\n",
            (unsigned long long)st.infos, (unsigned long long)st.opens,
            (unsigned long long)st.lists, (unsigned long long)st.ops[0],
            (unsigned long long)st.ops[1], (unsigned long long)st.ops[2],
            (unsigned long long)st.ops[3], (unsigned long long)st.ops[4],
            (unsigned long long)st.ops[5]);
}

static void init_once(void)
{
    if (rx) return;
    if (getenv("FUZZ_NBD_VERBOSE")) atexit(report);
    log_init("-", LOG_ERROR);
    rx = reactor_new();
    vols = agent_vol_mem_new(rx);
    agent_vol_mem_set_max_io(vols, 65536); /* small: TRIM/ZERO splitting, payload limits */
    agent_vol_mem_add(vols, "vol0", 1u << 20, false);
    agent_vol_mem_add(vols, "ro0", 65536, true);
    agent_vol_mem_add(vols, "err0", 65536, false);
    agent_vol_mem_inject(vols, "err0", AVM_ALL, 0, 32768, -EIO, 0);
    struct agent_nbd_opts o = {.tag = "fuzz", .max_inflight = 16, .out_high_water = 1u << 20};
    char err[128];
    if (!rx || !vols || agent_nbd_new(rx, vols, &o, &srv, err, sizeof(err)) < 0) abort();
}

static void check_back_end(void)
{
    struct agent_vol_mem_stats st;
    agent_vol_mem_stats(vols, &st);
    if (st.violations) abort();
}

static void server_mode(const uint8_t *data, size_t size)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) abort();
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    if (agent_nbd_adopt(srv, sv[1]) < 0) abort();
    static uint8_t sink[65536];
    size_t off = 0;
    bool shut = false;
    for (unsigned i = 0; i < 20000; i++) {
        if (off < size) {
            ssize_t n = send(sv[0], data + off, size - off, MSG_NOSIGNAL);
            if (n > 0) off += (size_t)n;
            else if (n < 0 && errno != EAGAIN) off = size; /* the server hung up */
        }
        if (off == size && !shut) {
            shutdown(sv[0], SHUT_WR);
            shut = true;
        }
        event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
        while (recv(sv[0], sink, sizeof(sink), MSG_DONTWAIT) > 0) {}
        struct agent_nbd_stats ns;
        struct agent_vol_mem_stats vs;
        agent_nbd_stats(srv, &ns);
        agent_vol_mem_stats(vols, &vs);
        if (shut && ns.connections == 0 && vs.inflight == 0) break;
    }
    close(sv[0]);
    for (unsigned i = 0; i < 50; i++) { /* deferred frees and late completions */
        event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
        struct agent_nbd_stats ns;
        agent_nbd_stats(srv, &ns);
        struct agent_vol_mem_stats vs;
        agent_vol_mem_stats(vols, &vs);
        if (ns.connections == 0 && vs.inflight == 0 && i > 2) break;
    }
    check_back_end();
}

/* ---- codec mode -------------------------------------------------------------------- */

static void codec_record(uint8_t kind, const uint8_t *p, uint32_t len, struct nbd_hs *hs)
{
    uint8_t out[NBD_HS_OUT_MAX + 8192];
    const char *why;
    switch (kind % 12) {
    case 0: {
        struct nbd_opt_go g;
        if (nbd_decode_opt_go(p, len, &g, &why) == 0) {
            uint16_t info[4096];
            for (unsigned i = 0; i < g.n_info && i < 4096; i++) info[i] = nbd_opt_go_info(&g, i);
            if (g.n_info <= 4096) {
                int n = nbd_encode_opt_go(out, sizeof(out), g.name.ptr, g.name.len, info, g.n_info);
                if (n >= 0 && ((uint32_t)n != len || memcmp(out, p, len) != 0)) abort();
            }
        }
        break;
    }
    case 1: {
        struct nbd_opt_meta m;
        if (nbd_decode_opt_meta(p, len, &m, &why) == 0) {
            uint32_t pos = 0, n = 0;
            struct nbd_str q;
            while (nbd_opt_meta_next(&m, &pos, &q)) n++;
            if (n != m.n_queries) abort();
        }
        break;
    }
    case 2: {
        struct nbd_str s;
        nbd_decode_opt_export_name(p, len, &s, &why);
        nbd_decode_rep_server(p, len, &s);
        char q[NBD_QUOTE_MAX + 8];
        nbd_quote(q, sizeof(q), (const char *)p, len);
        if (strlen(q) > NBD_QUOTE_MAX + 3) abort();
        break;
    }
    case 3: {
        struct nbd_info info;
        nbd_decode_rep_info(p, len, &info);
        uint32_t id;
        struct nbd_str s;
        nbd_decode_rep_meta_context(p, len, &id, &s);
        break;
    }
    case 4: {
        uint64_t off;
        const uint8_t *d;
        uint32_t n, h, ctx, ne;
        nbd_decode_chunk_data(p, len, &off, &d, &n);
        nbd_decode_chunk_hole(p, len, &off, &h);
        if (nbd_decode_chunk_bs(p, len, &ctx, &ne) == 0)
            for (uint32_t i = 0; i < ne; i++) nbd_chunk_bs_extent(p, i, &n, &h);
        struct nbd_str msg;
        nbd_decode_chunk_error(p, len, &n, &msg);
        break;
    }
    case 5: {
        struct nbd_request r;
        if (nbd_decode_request(p, len, &r) == NBD_REQUEST_LEN) {
            uint8_t b[NBD_REQUEST_LEN];
            nbd_encode_request(b, sizeof(b), &r);
            if (memcmp(b, p, sizeof(b)) != 0) abort();
            struct nbd_export_caps c = {.size =
                                            len > 40 ? bytes_get_be64(p + 28) & ~4095ull : 1u << 20,
                                        .min_block = (len & 4) ? 1 : 4096,
                                        .max_payload = 65536,
                                        .tflags = len > 42 ? bytes_get_be16(p + 36) : 0x1ed,
                                        .structured = len & 1,
                                        .meta_base_alloc = len & 2};
            int rc = nbd_check_request(&r, &c);
            /* an accepted request lies inside the export, aligned to
             * min_block; READ, WRITE and CACHE no longer than max_payload */
            if (rc == 0 && r.type != NBD_CMD_FLUSH &&
                (r.len == 0 || r.off > c.size || r.len > c.size - r.off ||
                 r.off % c.min_block || r.len % c.min_block))
                abort();
            if (rc == 0 && (r.type == NBD_CMD_READ || r.type == NBD_CMD_WRITE ||
                            r.type == NBD_CMD_CACHE) && r.len > c.max_payload)
                abort();
        }
        break;
    }
    default: { /* an option through the handshake decisions */
        if (len < 8) break;
        struct nbd_opt_hdr h = {.opt = bytes_get_be32(p), .len = bytes_get_be32(p + 4)};
        size_t n = 0;
        struct nbd_hs_req req;
        if (nbd_hs_header(hs, &h, out, sizeof(out), &n) == NBD_HS_CLOSE) break;
        if (h.len > len - 8) h.len = len - 8;
        nbd_hs_option(hs, &h, p + 8, out, sizeof(out), &n, &req);
        if (n > NBD_HS_OUT_MAX) abort();
        if (req.name.len) {
            struct nbd_export_desc x = {.size = 1 << 20, .tflags = 1, .min_block = 4096,
                                        .pref_block = 4096, .max_payload = 65536, .name = "vol0",
                                        .description = "d"};
            if (nbd_hs_encode_export(&req, &x, out, sizeof(out)) < 0) abort();
            nbd_hs_go_done(hs, req.name);
        }
        break;
    }
    }
}

static void codec_mode(const uint8_t *data, size_t size)
{
    struct nbd_hs hs;
    nbd_hs_init(&hs, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    nbd_hs_client_flags(&hs, size ? data[0] & 3 : 1);
    while (size >= 3) {
        uint8_t kind = data[0];
        uint32_t len = bytes_get_be16(data + 1);
        data += 3;
        size -= 3;
        if (len > size) len = (uint32_t)size;
        uint8_t *copy = malloc(len ? len : 1); /* ASan catches reads past the record */
        memcpy(copy, data, len);
        codec_record(kind, copy, len, &hs);
        free(copy);
        data += len;
        size -= len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    init_once();
    if (data[0] % 2 == 0) server_mode(data + 1, size - 1);
    else codec_mode(data + 1, size - 1);
    return 0;
}
