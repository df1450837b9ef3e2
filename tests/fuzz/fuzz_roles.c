/* fuzz_roles.c: libFuzzer target for the roles' request handlers (issue 12
 * item 6): decoded messages, from an unauthenticated and from an
 * authenticated peer, into the real proxy and the real blob server, not
 * only into the decoders.
 *
 * Fixture, made once: a real cluster in this process (tests/unit/
 * agent_cluster.c: one proxy, a single-proxy Raft group, and three blob
 * servers, on Unix sockets in a temp dir, `insecure_plaintext` so that the
 * peer's HELLO names its role: the handlers for every role's messages are
 * reachable; TLS itself is test_tls's), with volume vol0 of 64 MiB.
 *
 * An input is a connection:
 *   byte 0   bit 0: the blob server (1) or the proxy (0);
 *            bit 1: say HELLO first (an authenticated peer) or not;
 *            bits 2-3: the role HELLO claims: agent, proxy, blob, ctl;
 *            bits 4-7: the node id HELLO claims (0-15)
 *   then frames, each a record:
 *     u16 type, u8 flags (oneway, response), u16 fields length F,
 *     u32 payload length P (as the header will say), then F bytes of
 *     fields and min(P, what is left) bytes of payload.
 *   Each frame goes out with a valid header and fields checksum, so it
 *   reaches the handler; the lengths inside the fields (a 4 GiB read, a
 *   2 GiB trim, a blob at the top of the id space) are the fuzzer's.  A
 *   payload shorter than announced leaves the frame unfinished: the
 *   connection's frame timeout and close path are exercised too.
 * The connection is then shut for writing, and the reactor runs until the
 * server has closed it or answered, bounded; then until the cluster is
 * quiet again (the proxy's in-flight writes and puts finish or fail).
 *
 * Seeds (tests/fuzz/corpus/roles, written by FUZZ_ROLES_SEEDS=DIR
 * fuzz_roles EMPTYDIR through tests/fuzz/gen-corpus): an agent's
 * session, lengths at their extremes, a connection without HELLO, a
 * spoofed heartbeat, a peer's raft frames, a proxy's puts and an agent's,
 * an announced payload that never comes.
 *
 * Properties: no crash, no leak, no undefined behaviour, no hang, and the
 * cluster still serves afterwards (a PING to each server every 256 inputs
 * must be answered). */
#include "../unit/agent_cluster.h"
#include "base/bd.h"
#include "base/bytes.h"
#include "base/util.h"
#include "net/wire.h"
#include "runtime/log.h"
#include "runtime/reactor.h"

#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct reactor *rx;
static struct agent_cluster *cl;
static char dir[256];
static unsigned long inputs;

static void rm_dir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz_roles: could not remove %s\n", dir);
}


/* ---- seeds (FUZZ_ROLES_SEEDS=DIR: write them and exit; tests/fuzz/gen-corpus) ---- */

struct seed {
    uint8_t buf[1 << 16];
    struct bytes_w w;
};

static void seed_begin(struct seed *sd, bool blob, bool hello, unsigned role, unsigned node)
{
    bw_init(&sd->w, sd->buf, sizeof(sd->buf));
    bw_u8(&sd->w, (uint8_t)((blob ? 1 : 0) | (hello ? 2 : 0) | (role << 2) | (node << 4)));
}

/* One record: TYPE with FIELDS (encoded by ENC into a scratch buffer) and
 * PLEN payload bytes of which HAVE are present (a pattern). */
static void seed_frame(struct seed *sd, uint16_t type, uint8_t fl, const uint8_t *fields, int flen,
                       uint32_t plen, uint32_t have)
{
    if (flen < 0) abort();
    bw_u16(&sd->w, type);
    bw_u8(&sd->w, fl);
    bw_u16(&sd->w, (uint16_t)flen);
    bw_u32(&sd->w, plen);
    bw_mem(&sd->w, fields, (size_t)flen);
    for (uint32_t i = 0; i < have; i++) bw_u8(&sd->w, (uint8_t)(i * 7));
}

static void seed_write(const char *out, const char *name, struct seed *sd)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/seed-%s", out, name);
    if (sd->w.err || util_write_file_atomic(path, sd->buf, sd->w.used, 0644) < 0) abort();
}

static void write_seeds(const char *out)
{
    static struct seed sd;
    uint8_t f[1024];
    uint8_t data[4096];
    for (unsigned i = 0; i < sizeof(data); i++) data[i] = (uint8_t)(i * 7);
    enum { AGENT, PROXY, BLOB, CTL };

    /* An agent's session: hello, attach, write, read, flush, and a barrier
     * the wrong way round (proxies do not serve it). */
    seed_begin(&sd, false, true, AGENT, 0);
    struct wire_agent_hello_req ah = {.agent_id = wire_cstr("fuzzer")};
    seed_frame(&sd, WIRE_AGENT_HELLO, 1, f, wire_encode_agent_hello_req(f, sizeof(f), &ah), 0, 0);
    struct wire_vol_attach_req at = {.name = wire_cstr("vol0"), .agent_id = wire_cstr("fuzzer")};
    seed_frame(&sd, WIRE_VOL_ATTACH, 0, f, wire_encode_vol_attach_req(f, sizeof(f), &at), 0, 0);
    struct wire_vol_write_req wr = {.vol_id = 1, .generation = 1, .off = 0, .len = 4096,
                                    .csum = util_xxh3(data, 4096), .data_len = 4096};
    seed_frame(&sd, WIRE_VOL_WRITE, 0, f, wire_encode_vol_write_req(f, sizeof(f), &wr), 4096,
               4096);
    struct wire_vol_read_req rd = {.vol_id = 1, .off = 0, .len = 4096, .flags = WIRE_READ_MAP};
    seed_frame(&sd, WIRE_VOL_READ, 0, f, wire_encode_vol_read_req(f, sizeof(f), &rd), 0, 0);
    struct wire_vol_flush_req fl = {.vol_id = 1, .generation = 1};
    seed_frame(&sd, WIRE_VOL_FLUSH, 0, f, wire_encode_vol_flush_req(f, sizeof(f), &fl), 0, 0);
    struct wire_vol_barrier_req vb = {.vol_id = 1, .generation = 1};
    seed_frame(&sd, WIRE_VOL_BARRIER, 0, f, wire_encode_vol_barrier_req(f, sizeof(f), &vb), 0,
               0);
    seed_write(out, "agent-session", &sd);

    /* Lengths at their extremes: a 4 GiB read, a near-4 GiB trim and zero. */
    seed_begin(&sd, false, true, AGENT, 0);
    seed_frame(&sd, WIRE_VOL_ATTACH, 0, f, wire_encode_vol_attach_req(f, sizeof(f), &at), 0, 0);
    rd = (struct wire_vol_read_req){.vol_id = 1, .off = 4096, .len = 0xfffff000u};
    seed_frame(&sd, WIRE_VOL_READ, 0, f, wire_encode_vol_read_req(f, sizeof(f), &rd), 0, 0);
    wr = (struct wire_vol_write_req){.vol_id = 1, .generation = 1, .off = 0, .len = 0xfffff000u,
                                     .flags = WIRE_WRITE_TRIM};
    seed_frame(&sd, WIRE_VOL_WRITE, 0, f, wire_encode_vol_write_req(f, sizeof(f), &wr), 0, 0);
    wr.flags = WIRE_WRITE_ZERO;
    wr.off = UINT64_MAX - 4095;
    seed_frame(&sd, WIRE_VOL_WRITE, 0, f, wire_encode_vol_write_req(f, sizeof(f), &wr), 0, 0);
    seed_write(out, "agent-extremes", &sd);

    /* No HELLO: a read, then a response frame. */
    seed_begin(&sd, false, false, AGENT, 0);
    rd = (struct wire_vol_read_req){.vol_id = 1, .len = 4096};
    seed_frame(&sd, WIRE_VOL_READ, 0, f, wire_encode_vol_read_req(f, sizeof(f), &rd), 0, 0);
    seed_frame(&sd, WIRE_PING, 2, f, 0, 0, 0);
    seed_write(out, "no-hello", &sd);

    /* A blob server heartbeating for another node; a proxy's raft frame. */
    seed_begin(&sd, false, true, BLOB, 11);
    struct wire_node_heartbeat_req hb = {.node_id = 12, .addr = wire_cstr("127.0.0.1:1"),
                                         .capacity = 1u << 30};
    seed_frame(&sd, WIRE_NODE_HEARTBEAT, 0, f,
               wire_encode_node_heartbeat_req(f, sizeof(f), &hb), 0, 0);
    seed_write(out, "heartbeat-spoof", &sd);
    seed_begin(&sd, false, true, PROXY, 2);
    uint8_t junk[64] = {1, 0, 0, 0, 2};
    seed_frame(&sd, WIRE_RAFT, 1, junk, sizeof(junk), 0, 0);
    seed_frame(&sd, WIRE_PROPOSE, 0, junk, sizeof(junk), 0, 0);
    seed_write(out, "peer-raft", &sd);

    /* The blob server: a proxy's put, get, list, delete; an agent's put. */
    seed_begin(&sd, true, true, PROXY, 1);
    struct wire_blob_put_req put = {.blob_id = 900001, .partition = 1, .epoch = 1,
                                    .csum = util_xxh3(data, 4096), .data_len = 4096};
    seed_frame(&sd, WIRE_BLOB_PUT, 0, f, wire_encode_blob_put_req(f, sizeof(f), &put), 4096,
               4096);
    struct wire_blob_get_req get = {.blob_id = 900001, .partition = 1, .off = 100, .len = 200};
    seed_frame(&sd, WIRE_BLOB_GET, 0, f, wire_encode_blob_get_req(f, sizeof(f), &get), 0, 0);
    struct wire_blob_list_req ls = {.partition = 1, .max = 100};
    seed_frame(&sd, WIRE_BLOB_LIST, 0, f, wire_encode_blob_list_req(f, sizeof(f), &ls), 0, 0);
    struct wire_blob_delete_req del = {.blob_id = 900001, .partition = 1};
    seed_frame(&sd, WIRE_BLOB_DELETE, 0, f, wire_encode_blob_delete_req(f, sizeof(f), &del), 0,
               0);
    seed_write(out, "blob-proxy", &sd);
    seed_begin(&sd, true, true, AGENT, 0);
    seed_frame(&sd, WIRE_BLOB_PUT, 0, f, wire_encode_blob_put_req(f, sizeof(f), &put), 4096,
               4096);
    get.len = 0xffffffffu;
    seed_frame(&sd, WIRE_BLOB_GET, 0, f, wire_encode_blob_get_req(f, sizeof(f), &get), 0, 0);
    seed_write(out, "blob-agent", &sd);
    /* An announced payload that never comes. */
    seed_begin(&sd, true, true, PROXY, 1);
    put.data_len = 1u << 20;
    seed_frame(&sd, WIRE_BLOB_PUT, 0, f, wire_encode_blob_put_req(f, sizeof(f), &put), 1u << 20,
               100);
    seed_write(out, "blob-short-payload", &sd);
}

static void init_once(void)
{
    if (rx) return;
    const char *seeds = getenv("FUZZ_ROLES_SEEDS");
    if (seeds) {
        write_seeds(seeds);
        _exit(0); /* not exit(): libFuzzer reports an exit inside a run as a crash */
    }
    log_init("-", getenv("FUZZ_ROLES_VERBOSE") ? LOG_INFO : LOG_ERROR);
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/fuzz-roles-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(dir)) abort();
    atexit(rm_dir);
    rx = reactor_new();
    char err[256];
    struct agent_cluster_opts o = {.dir = dir, .n_blobs = 3, .n_proxies = 1, .quiet = true};
    if (!rx || agent_cluster_new(rx, &o, &cl, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz_roles: cluster: %s\n", err);
        abort();
    }
    if (agent_cluster_create_volume(cl, "vol0", 64u << 20) < 0) abort();
}

static int connect_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    util_strlcpy(un.sun_path, path, sizeof(un.sun_path));
    if (fd < 0 || connect(fd, (struct sockaddr *)&un, sizeof(un)) < 0) abort();
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Append one frame to OUT (room CAP); returns the bytes written. */
static size_t put_frame(uint8_t *out, size_t cap, uint16_t type, uint16_t flags, uint64_t req_id,
                        const uint8_t *fields, size_t flen, const uint8_t *payload, size_t have,
                        uint32_t plen)
{
    if (cap < WIRE_HDR_LEN + flen + have) return 0;
    struct wire_hdr h = {.version = WIRE_VERSION, .type = type, .flags = flags,
                         .len = (uint32_t)(flen + plen), .req_id = req_id, .payload_len = plen};
    wire_encode_hdr(out, &h, fields, flen);
    /* A frame may have no fields or no payload (NULL then): memcpy must
     * not see a null pointer even for 0 bytes (UBSan). */
    if (flen) memcpy(out + WIRE_HDR_LEN, fields, flen);
    if (have) memcpy(out + WIRE_HDR_LEN + flen, payload, have);
    return WIRE_HDR_LEN + flen + have;
}

/* Run the reactor until FD has seen EOF (true) or ITERS turns passed;
 * reads and drops what the server sends. */
static bool pump_until_closed(int fd, unsigned iters)
{
    static uint8_t sink[1 << 16];
    for (unsigned i = 0; i < iters; i++) {
        event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
        ssize_t n;
        while ((n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT)) > 0) {
        }
        if (n == 0 || (n < 0 && errno != EAGAIN)) return true;
        if (i > 16) usleep(200);
    }
    return false;
}

static void ping_or_die(const char *path, const char *what)
{
    int fd = connect_unix(path);
    static const char name[] = "fuzz";
    struct wire_hello_req h = {.cluster_hash = util_xxh3(agent_cluster_cfg(cl)->cluster_id,
                                                         strlen(agent_cluster_cfg(cl)->cluster_id)),
                               .role = WIRE_ROLE_CTL, .name = wire_cstr(name)};
    uint8_t f[256], buf[1024];
    int n = wire_encode_hello_req(f, sizeof(f), &h);
    size_t len = put_frame(buf, sizeof(buf), WIRE_HELLO, 0, 1, f, (size_t)n, NULL, 0, 0);
    struct wire_ping_req p = {.stamp = 7};
    n = wire_encode_ping_req(f, sizeof(f), &p);
    len += put_frame(buf + len, sizeof(buf) - len, WIRE_PING, 0, 2, f, (size_t)n, NULL, 0, 0);
    if (send(fd, buf, len, MSG_NOSIGNAL) != (ssize_t)len) abort();
    uint8_t in[4096];
    size_t got = 0;
    for (unsigned i = 0; i < 20000 && got < 2 * WIRE_HDR_LEN; i++) {
        event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
        ssize_t r = recv(fd, in + got, sizeof(in) - got, MSG_DONTWAIT);
        if (r > 0) got += (size_t)r;
        else usleep(100);
    }
    close(fd);
    if (got < 2 * WIRE_HDR_LEN) {
        fprintf(stderr, "fuzz_roles: %s no longer answers PING\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    if (size < 1) return 0;
    uint8_t mode = data[0];
    bool blob = mode & 1, hello = mode & 2;
    static const uint16_t roles[] = {WIRE_ROLE_AGENT, WIRE_ROLE_PROXY, WIRE_ROLE_BLOB,
                                     WIRE_ROLE_CTL};
    uint16_t role = roles[(mode >> 2) & 3];
    uint64_t node_id = mode >> 4;
    char path[300];
    snprintf(path, sizeof(path), "%s/%s", dir, blob ? "blob1.sock" : "proxy1.sock");

    static uint8_t out[4u << 20];
    size_t len = 0;
    uint64_t req_id = 1;
    if (hello) {
        const struct cfg *c = agent_cluster_cfg(cl);
        struct wire_hello_req h = {.cluster_hash = util_xxh3(c->cluster_id, strlen(c->cluster_id)),
                                   .node_id = node_id, .role = role,
                                   .name = wire_cstr("fuzzer")};
        uint8_t f[256];
        int n = wire_encode_hello_req(f, sizeof(f), &h);
        len += put_frame(out, sizeof(out), WIRE_HELLO, 0, req_id++, f, (size_t)n, NULL, 0, 0);
    }
    struct bytes_r r;
    br_init(&r, data + 1, size - 1);
    while (r.left >= 9 && len < sizeof(out)) {
        uint16_t type = br_u16(&r);
        uint8_t fl = br_u8(&r);
        uint32_t flen = br_u16(&r); /* below WIRE_MAX_FIELDS by its width */
        uint32_t plen = br_u32(&r);
        if (flen > r.left) flen = (uint32_t)r.left;
        const uint8_t *fields = br_take(&r, flen);
        if (!fields) break;
        /* Announced payloads beyond the frame limit are the header
         * decoder's to refuse; keep the rest of the bytes as payload. */
        if ((uint64_t)flen + plen > WIRE_MAX_FRAME) plen = WIRE_MAX_FRAME - flen;
        size_t have = BD_MIN((size_t)plen, r.left);
        const uint8_t *payload = have ? br_take(&r, have) : (const uint8_t *)"";
        uint16_t flags = (fl & 1 ? WIRE_F_ONEWAY : 0) | (fl & 2 ? WIRE_F_RESPONSE : 0);
        size_t n = put_frame(out + len, sizeof(out) - len, type, flags, req_id++, fields, flen,
                             payload, have, plen);
        if (n == 0) break;
        len += n;
    }

    int fd = connect_unix(path);
    size_t off = 0;
    for (unsigned i = 0; i < 20000 && off < len; i++) {
        ssize_t n = send(fd, out + off, len - off, MSG_NOSIGNAL);
        if (n > 0) off += (size_t)n;
        else if (n < 0 && errno != EAGAIN) break; /* the server hung up */
        event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
        static uint8_t sink[1 << 16];
        while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0) {
        }
    }
    shutdown(fd, SHUT_WR);
    pump_until_closed(fd, 3000);
    close(fd);
    /* Let the work the requests started finish or fail (puts to the blob
     * servers, index commands), so it does not bleed into the next input. */
    for (unsigned i = 0; i < 200; i++) {
        event_base_loop(reactor_base(rx), EVLOOP_NONBLOCK);
        if (i > 20) usleep(100);
    }
    if (++inputs % 256 == 0) {
        snprintf(path, sizeof(path), "%s/proxy1.sock", dir);
        ping_or_die(path, "the proxy");
        snprintf(path, sizeof(path), "%s/blob1.sock", dir);
        ping_or_die(path, "blob server 1");
    }
    return 0;
}
