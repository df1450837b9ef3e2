/* blobcli.c: a small wire client for the blob server, for the functional
 * tests and scripts/bench-blob.
 *
 *   blobcli --addr HOST:PORT [--cluster ID] [--ca F --cert F --key F] CMD [options]
 *
 * With --ca (the cluster CA) it speaks TLS with the certificate given (a
 * ctl certificate, or an agent one with --as-agent), as every node does.
 *
 *   put     --id N [--partition P] [--epoch E] [--size N] [--seed S]
 *           [--compressible] [--bad-csum]
 *   get     --id N [--partition P] [--off O] [--len L]
 *           [--size N --seed S]   verify the bytes against the generator
 *   delete  --id N [--partition P]
 *   stat    --id N
 *   list    [--partition P] [--max M]       every page; one id per line
 *   report                                  key=value lines, then "bad ID PART"
 *   storm   --count N [--inflight Q] [--size S] [--start-id X] [--parts K]
 *           [--acked FILE] [--compressible] [--seed S]
 *           puts N blobs with Q in flight; each acknowledged id is appended
 *           to FILE the moment its ack arrives; prints throughput
 *   verify  --ids FILE [--size S] [--seed S] [--parts K]
 *           GETs every id listed and checks its bytes and checksum
 *   garbage --mode badmagic|hugelen|badcsum|truncated|noauth|badfields|
 *                  unknown|badpayload
 *           sends one kind of malformed input on a raw socket and checks the
 *           server's answer (close, or an error reply on a live connection)
 *   --as-agent  say HELLO as an agent (which may only read)
 *
 * Blob contents are a function of (seed, id, size), so any process can
 * verify any blob.  Partitions: blob id N lives in partition
 * --partition + N % --parts.  Errors print "error: STATUS: message" and
 * exit 1; a GET that fails its checksum prints "status=ECSUM". */
#include "base/bd.h"
#include "base/bytes.h"
#include "net/conn.h"
#include "net/tls.h"
#include "runtime/reactor.h"
#include "net/wire.h"
#include "base/util.h"

#include <event2/event.h>
#include <getopt.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- options and state ------------------------------------------------------------- */

static struct {
    const char *addr, *cluster, *ca, *cert, *key, *acked, *ids, *mode, *cmd;
    uint64_t id, partition, epoch, size, seed, off, len, max, count, inflight, start_id, parts;
    bool compressible, bad_csum, size_set, as_agent;
    uint32_t timeout_ms;
} o = {.cluster = "test", .partition = 1, .epoch = 1, .size = 4096, .seed = 1,
       .max = 1000, .count = 1000, .inflight = 32, .start_id = 1, .parts = 1,
       .timeout_ms = 30000};

static struct reactor *rx;
static struct conn *cn;
static struct conn_auth auth;
static bool up, closed, finished;
static int exit_code;

static void gen(uint8_t *p, uint64_t id, size_t len)
{
    uint64_t s = o.seed * 0x9E3779B97F4A7C15ull ^ id;
    if (o.compressible) {
        uint8_t pat[16];
        for (int i = 0; i < 16; i++) pat[i] = (uint8_t)util_rand64(&s);
        for (size_t i = 0; i < len; i++) p[i] = pat[i % 16];
        return;
    }
    size_t i = 0;
    for (; i + 8 <= len; i += 8) bytes_put_le64(p + i, util_rand64(&s));
    for (; i < len; i++) p[i] = (uint8_t)util_rand64(&s);
}

static uint32_t part_of(uint64_t id)
{
    return (uint32_t)(o.partition + id % o.parts);
}

static void finish(int code)
{
    exit_code = code;
    finished = true;
}

static void print_error(const char *what, int err, struct conn_frame *f)
{
    char buf[300];
    printf("error: %s: %s\n", what, f ? conn_error_text(f, buf, sizeof(buf)) : bd_strerror(err));
    if (f) printf("status=%s\n", wire_status_name(f->hdr.status));
}

/* ---- single requests ---------------------------------------------------------------- */

static struct conn_call call;
static uint8_t fields[WIRE_MAX_FIELDS];
static uint8_t *payload;

static void on_put(struct conn_call *c, int err, struct conn_frame *f)
{
    (void)c;
    if (err) {
        print_error("put", err, f);
        finish(1);
        return;
    }
    struct wire_blob_put_resp r;
    if (wire_decode_blob_put_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) < 0) {
        printf("error: put: malformed response\n");
        finish(1);
        return;
    }
    printf("stored_len=%u\n", r.stored_len);
    finish(0);
}

static void do_put(void)
{
    payload = malloc(o.size + 1);
    gen(payload, o.id, o.size);
    struct wire_blob_put_req m = {
        .blob_id = o.id, .partition = (uint32_t)o.partition,
        .flags = o.compressible ? WIRE_PUT_COMPRESSIBLE : 0, .epoch = o.epoch,
        .csum = util_xxh3(payload, o.size) ^ (o.bad_csum ? 1 : 0), .data_len = (uint32_t)o.size};
    int n = wire_encode_blob_put_req(fields, sizeof(fields), &m);
    struct conn_payload p = {.data = payload, .len = o.size};
    call.cb = on_put;
    if (conn_call(cn, &call, WIRE_BLOB_PUT, fields, (size_t)n, &p, o.timeout_ms) < 0) finish(1);
}

static void on_get(struct conn_call *c, int err, struct conn_frame *f)
{
    (void)c;
    if (err) {
        print_error("get", err, f);
        finish(1);
        return;
    }
    struct wire_blob_get_resp r;
    if (wire_decode_blob_get_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) < 0) {
        printf("error: get: malformed response\n");
        finish(1);
        return;
    }
    if (util_xxh3(r.data, r.data_len) != r.csum) {
        printf("error: get: response checksum mismatch\n");
        finish(1);
        return;
    }
    printf("blob_len=%u data_len=%u csum=%016llx\n", r.blob_len, r.data_len,
           (unsigned long long)r.csum);
    if (o.size_set) {
        uint8_t *want = malloc(o.size + 1);
        gen(want, o.id, o.size);
        bool ok = r.blob_len == o.size && (uint64_t)o.off + r.data_len <= o.size &&
                  memcmp(want + o.off, r.data, r.data_len) == 0;
        free(want);
        if (!ok) {
            printf("error: get: wrong bytes\n");
            finish(1);
            return;
        }
        printf("verified\n");
    }
    finish(0);
}

static void do_get(void)
{
    struct wire_blob_get_req m = {.blob_id = o.id, .partition = (uint32_t)o.partition,
                                  .off = (uint32_t)o.off, .len = (uint32_t)o.len};
    int n = wire_encode_blob_get_req(fields, sizeof(fields), &m);
    call.cb = on_get;
    if (conn_call(cn, &call, WIRE_BLOB_GET, fields, (size_t)n, NULL, o.timeout_ms) < 0) finish(1);
}

static void on_simple(struct conn_call *c, int err, struct conn_frame *f)
{
    (void)c;
    if (err) {
        print_error(o.cmd, err, f);
        finish(1);
        return;
    }
    if (strcmp(o.cmd, "stat") == 0) {
        struct wire_blob_stat_resp r;
        if (wire_decode_blob_stat_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) == 0)
            printf("blob_id=%llu partition=%u len=%u stored_len=%u flags=%#x csum=%016llx\n",
                   (unsigned long long)r.blob_id, r.partition, r.len, r.stored_len, r.flags,
                   (unsigned long long)r.csum);
    } else if (strcmp(o.cmd, "report") == 0) {
        struct wire_blob_report_resp r;
        if (wire_decode_blob_report_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) < 0) {
            printf("error: report: malformed response\n");
            finish(1);
            return;
        }
        printf("node_id=%llu\ncapacity=%llu\nused=%llu\nlive_bytes=%llu\ndead_bytes=%llu\n"
               "blobs=%llu\nbad_blobs=%llu\nscrub_passes=%llu\n",
               (unsigned long long)r.node_id, (unsigned long long)r.capacity,
               (unsigned long long)r.used, (unsigned long long)r.live_bytes,
               (unsigned long long)r.dead_bytes, (unsigned long long)r.blobs,
               (unsigned long long)r.bad_blobs, (unsigned long long)r.scrub_passes);
        for (uint32_t i = 0; i < r.n_bad; i++) {
            struct wire_bad_blob b;
            wire_blob_report_bad(&r, i, &b);
            printf("bad %llu %u\n", (unsigned long long)b.blob_id, b.partition);
        }
    } else {
        printf("ok\n");
    }
    finish(0);
}

static void do_simple(uint16_t type)
{
    int n = 0;
    if (type == WIRE_BLOB_DELETE) {
        struct wire_blob_delete_req m = {.blob_id = o.id, .partition = (uint32_t)o.partition};
        n = wire_encode_blob_delete_req(fields, sizeof(fields), &m);
    } else if (type == WIRE_BLOB_STAT) {
        struct wire_blob_stat_req m = {.blob_id = o.id};
        n = wire_encode_blob_stat_req(fields, sizeof(fields), &m);
    } else {
        struct wire_blob_report_req m = {0};
        n = wire_encode_blob_report_req(fields, sizeof(fields), &m);
    }
    call.cb = on_simple;
    if (conn_call(cn, &call, type, fields, (size_t)n, NULL, o.timeout_ms) < 0) finish(1);
}

static uint64_t list_cursor;
static void do_list_page(void);

static void on_list(struct conn_call *c, int err, struct conn_frame *f)
{
    (void)c;
    struct wire_blob_list_resp r;
    if (err || wire_decode_blob_list_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) < 0) {
        print_error("list", err ? err : -EPROTO, err ? f : NULL);
        finish(1);
        return;
    }
    for (uint32_t i = 0; i < r.n; i++) {
        struct wire_blob_entry e;
        wire_blob_list_entry(&r, i, &e);
        printf("%llu %u %016llx\n", (unsigned long long)e.blob_id, e.len,
               (unsigned long long)e.csum);
    }
    list_cursor = r.next_cursor;
    if (list_cursor) do_list_page();
    else finish(0);
}

static void do_list_page(void)
{
    struct wire_blob_list_req m = {.partition = (uint32_t)o.partition, .max = (uint32_t)o.max,
                                   .cursor = list_cursor};
    int n = wire_encode_blob_list_req(fields, sizeof(fields), &m);
    call.cb = on_list;
    if (conn_call(cn, &call, WIRE_BLOB_LIST, fields, (size_t)n, NULL, o.timeout_ms) < 0) finish(1);
}

/* ---- storm and verify ------------------------------------------------------------------ */

struct slot {
    struct conn_call call;
    uint64_t id;
    uint8_t *data;
};

static struct slot *slots;
static uint64_t next_id, end_id, acked_n, failed_n, inflight_n;
static uint64_t *verify_ids;
static size_t verify_n, verify_next;
static FILE *acked_f;
static uint64_t t_start;

static void storm_issue(struct slot *s);

static void storm_next(struct slot *s)
{
    if (next_id < end_id) storm_issue(s);
    else if (inflight_n == 0) finish(failed_n ? 1 : 0);
}

static void on_storm_put(struct conn_call *c, int err, struct conn_frame *f)
{
    struct slot *s = c->data;
    inflight_n--;
    if (err) {
        if (failed_n++ < 5) print_error("put", err, f);
        if (!f) { /* the connection is gone: stop issuing */
            next_id = end_id;
            if (inflight_n == 0) finish(1);
            return;
        }
    } else {
        acked_n++;
        if (acked_f) {
            fprintf(acked_f, "%llu\n", (unsigned long long)s->id);
            fflush(acked_f);
        }
    }
    storm_next(s);
}

static void release_none(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    (void)arg;
}

static void storm_issue(struct slot *s)
{
    s->id = next_id++;
    gen(s->data, s->id, o.size);
    struct wire_blob_put_req m = {
        .blob_id = s->id, .partition = part_of(s->id),
        .flags = o.compressible ? WIRE_PUT_COMPRESSIBLE : 0, .epoch = o.epoch,
        .csum = util_xxh3(s->data, o.size), .data_len = (uint32_t)o.size};
    uint8_t f[64];
    int n = wire_encode_blob_put_req(f, sizeof(f), &m);
    /* The payload is referenced, not copied: the slot is reused only after
     * the reply, which the server sends after it received every byte. */
    struct conn_payload p = {.data = s->data, .len = o.size, .release = release_none};
    s->call.cb = on_storm_put;
    s->call.data = s;
    if (conn_call(cn, &s->call, WIRE_BLOB_PUT, f, (size_t)n, &p, o.timeout_ms) < 0) {
        failed_n++;
        next_id = end_id;
        if (inflight_n == 0) finish(1);
        return;
    }
    inflight_n++;
}

static void do_storm(void)
{
    if (o.acked && !(acked_f = fopen(o.acked, "a"))) {
        perror(o.acked);
        finish(1);
        return;
    }
    slots = calloc(o.inflight, sizeof(*slots));
    next_id = o.start_id;
    end_id = o.start_id + o.count;
    t_start = util_mono_ns();
    for (uint64_t i = 0; i < o.inflight && next_id < end_id; i++) {
        slots[i].data = malloc(o.size + 1);
        storm_issue(&slots[i]);
    }
    if (inflight_n == 0) finish(failed_n ? 1 : 0);
}

static void verify_issue(struct slot *s);

static void on_verify_get(struct conn_call *c, int err, struct conn_frame *f)
{
    struct slot *s = c->data;
    inflight_n--;
    struct wire_blob_get_resp r;
    bool ok = !err && wire_decode_blob_get_resp(f->body, f->hdr.len, f->hdr.payload_len, &r) == 0;
    if (ok) {
        gen(s->data, s->id, o.size);
        ok = r.blob_len == o.size && r.data_len == o.size && util_xxh3(r.data, r.data_len) == r.csum &&
             memcmp(r.data, s->data, o.size) == 0;
    }
    if (ok) {
        acked_n++;
    } else {
        if (failed_n++ < 10) {
            printf("blob %llu: ", (unsigned long long)s->id);
            if (err) print_error("get", err, f);
            else printf("wrong bytes or checksum\n");
        }
        if (!f && err) verify_next = verify_n;
    }
    if (verify_next < verify_n) verify_issue(s);
    else if (inflight_n == 0) finish(failed_n ? 1 : 0);
}

static void verify_issue(struct slot *s)
{
    s->id = verify_ids[verify_next++];
    struct wire_blob_get_req m = {.blob_id = s->id, .partition = part_of(s->id)};
    uint8_t f[64];
    int n = wire_encode_blob_get_req(f, sizeof(f), &m);
    s->call.cb = on_verify_get;
    s->call.data = s;
    if (conn_call(cn, &s->call, WIRE_BLOB_GET, f, (size_t)n, NULL, o.timeout_ms) < 0) {
        failed_n++;
        verify_next = verify_n;
        if (inflight_n == 0) finish(1);
        return;
    }
    inflight_n++;
}

static void do_verify(void)
{
    FILE *f = fopen(o.ids, "r");
    if (!f) {
        perror(o.ids);
        finish(1);
        return;
    }
    size_t cap = 1024;
    verify_ids = malloc(cap * sizeof(*verify_ids));
    unsigned long long v;
    while (fscanf(f, "%llu", &v) == 1) {
        if (verify_n == cap) verify_ids = realloc(verify_ids, (cap *= 2) * sizeof(*verify_ids));
        verify_ids[verify_n++] = v;
    }
    fclose(f);
    slots = calloc(o.inflight, sizeof(*slots));
    t_start = util_mono_ns();
    for (uint64_t i = 0; i < o.inflight && verify_next < verify_n; i++) {
        slots[i].data = malloc(o.size + 1);
        verify_issue(&slots[i]);
    }
    if (inflight_n == 0) finish(failed_n ? 1 : 0);
}

/* ---- malformed input on a raw socket ---------------------------------------------------------- */

static struct tls_ctx *tls; /* with --ca */

/* The raw connection: a blocking socket, under TLS (a mutual handshake
 * with our certificate) when the cluster uses it, so the malformed frames
 * reach the server's frame decoder and not its TLS layer. */
static SSL *raw_ssl;

static int raw_connect(void)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (util_parse_addr(o.addr, &ss, &len) < 0) return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len) < 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    if (tls) {
        raw_ssl = SSL_new(tls_ctx_ssl(tls));
        if (!raw_ssl || SSL_set_fd(raw_ssl, fd) != 1 || SSL_connect(raw_ssl) != 1) {
            printf("error: TLS handshake with %s failed\n", o.addr);
            close(fd);
            return -1;
        }
    }
    return fd;
}

static ssize_t raw_read(int fd, void *p, size_t n)
{
    if (!raw_ssl) return read(fd, p, n);
    if (SSL_pending(raw_ssl) == 0) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, (int)o.timeout_ms) <= 0) return -1;
    }
    int r = SSL_read(raw_ssl, p, (int)n);
    return r > 0 ? r : 0; /* a close, clean or not, is the end */
}

/* Build one frame; returns its length. */
static size_t frame(uint8_t *out, uint16_t type, uint64_t req_id, const void *f, size_t flen,
                    const void *pl, size_t plen)
{
    struct wire_hdr h = {.version = WIRE_VERSION, .type = type, .len = (uint32_t)(flen + plen),
                         .req_id = req_id, .payload_len = (uint32_t)plen};
    wire_encode_hdr(out, &h, f, flen);
    memcpy(out + WIRE_HDR_LEN, f, flen);
    if (plen) memcpy(out + WIRE_HDR_LEN + flen, pl, plen);
    return WIRE_HDR_LEN + flen + plen;
}

/* Read one frame header + body within the timeout: 1 with *H, 0 on EOF,
 * -1 on timeout. */
static int read_frame(int fd, struct wire_hdr *h, uint8_t *body, size_t cap)
{
    uint8_t hb[WIRE_HDR_LEN];
    size_t got = 0, want = WIRE_HDR_LEN;
    uint8_t *dst = hb;
    for (int phase = 0; phase < 2; phase++) {
        while (got < want) {
            struct pollfd p = {fd, POLLIN, 0};
            if (!(raw_ssl && SSL_pending(raw_ssl)) && poll(&p, 1, (int)o.timeout_ms) <= 0)
                return -1;
            ssize_t n = raw_read(fd, dst + got, want - got);
            if (n <= 0) return 0;
            got += (size_t)n;
        }
        if (phase == 0) {
            if (wire_decode_hdr(hb, h) < 0 || h->len > cap) return -1;
            got = 0;
            want = h->len;
            dst = body;
        }
    }
    return 1;
}

static bool write_all(int fd, const void *p, size_t n)
{
    if (!raw_ssl) return util_write_full(fd, p, n) == 0;
    return n == 0 || SSL_write(raw_ssl, p, (int)n) == (int)n;
}

static bool say_hello(int fd, uint8_t *buf, uint8_t *body)
{
    struct wire_hello_req hr = {.cluster_hash = auth.cluster_hash, .node_id = 0,
                                .role = WIRE_ROLE_CTL, .name = wire_cstr("raw")};
    uint8_t f[256];
    int n = wire_encode_hello_req(f, sizeof(f), &hr);
    struct wire_hdr h;
    return write_all(fd, buf, frame(buf, WIRE_HELLO, 1, f, (size_t)n, NULL, 0)) &&
           read_frame(fd, &h, body, 65536) == 1 && h.status == WIRE_OK;
}

/* Expect the server to close FD (EOF) within the timeout. */
static int expect_close(int fd, const char *what)
{
    uint8_t body[65536];
    struct wire_hdr h;
    for (;;) {
        int r = read_frame(fd, &h, body, sizeof(body));
        if (r == 0) {
            printf("ok %s: connection closed\n", what);
            return 0;
        }
        if (r < 0) {
            printf("error: %s: connection not closed\n", what);
            return 1;
        }
        printf("%s: reply %s before close\n", what, wire_status_name(h.status));
    }
}

/* Send FRAME after HELLO; expect an error STATUS and a live connection. */
static int expect_status(int fd, uint8_t *buf, size_t len, uint16_t status, const char *what)
{
    uint8_t body[65536];
    struct wire_hdr h;
    if (!write_all(fd, buf, len) || read_frame(fd, &h, body, sizeof(body)) != 1) {
        printf("error: %s: no reply\n", what);
        return 1;
    }
    if (h.status != status) {
        printf("error: %s: status %s, expected %s\n", what, wire_status_name(h.status),
               wire_status_name(status));
        return 1;
    }
    struct wire_ping_req p = {.stamp = 42};
    uint8_t f[16];
    int n = wire_encode_ping_req(f, sizeof(f), &p);
    if (!write_all(fd, buf, frame(buf, WIRE_PING, 99, f, (size_t)n, NULL, 0)) ||
        read_frame(fd, &h, body, sizeof(body)) != 1 || h.status != WIRE_OK) {
        printf("error: %s: connection unusable after the error\n", what);
        return 1;
    }
    printf("ok %s: %s, connection still serves\n", what, wire_status_name(status));
    return 0;
}

static int do_garbage(void)
{
    int fd = raw_connect();
    if (fd < 0) {
        printf("error: connect %s failed\n", o.addr);
        return 1;
    }
    static uint8_t buf[1 << 20], body[65536];
    const char *m = o.mode;
    int rc = 1;
    struct wire_blob_put_req put = {.blob_id = 5, .partition = 1, .epoch = 1, .data_len = 100};
    uint8_t data[100] = {1, 2, 3};
    put.csum = util_xxh3(data, 100);
    uint8_t f[128];
    int n = wire_encode_blob_put_req(f, sizeof(f), &put);
    if (strcmp(m, "badmagic") == 0) {
        memset(buf, 'x', WIRE_HDR_LEN);
        rc = write_all(fd, buf, WIRE_HDR_LEN) ? expect_close(fd, m) : 1;
    } else if (strcmp(m, "hugelen") == 0) {
        struct wire_hdr h = {.version = WIRE_VERSION, .type = WIRE_BLOB_PUT, .len = 0xFFFFFFF0u,
                             .req_id = 1};
        wire_encode_hdr(buf, &h, NULL, 0);
        rc = write_all(fd, buf, WIRE_HDR_LEN) ? expect_close(fd, m) : 1;
    } else if (strcmp(m, "badcsum") == 0) {
        size_t len = frame(buf, WIRE_HELLO, 1, f, (size_t)n, NULL, 0);
        buf[36] ^= 0xff;
        rc = write_all(fd, buf, len) ? expect_close(fd, m) : 1;
    } else if (strcmp(m, "truncated") == 0) {
        size_t len = frame(buf, WIRE_BLOB_PUT, 1, f, (size_t)n, data, sizeof(data));
        rc = write_all(fd, buf, len / 2) ? 0 : 1; /* then hang up mid-frame */
        if (rc == 0) printf("ok %s: sent %zu of %zu bytes and hung up\n", m, len / 2, len);
    } else if (strcmp(m, "noauth") == 0) {
        size_t len = frame(buf, WIRE_BLOB_PUT, 1, f, (size_t)n, data, sizeof(data));
        rc = write_all(fd, buf, len) ? expect_close(fd, m) : 1;
    } else if (!say_hello(fd, buf, body)) {
        printf("error: HELLO refused\n");
    } else if (strcmp(m, "badfields") == 0) {
        size_t len = frame(buf, WIRE_BLOB_PUT, 2, f, (size_t)n - 4, data, sizeof(data));
        rc = expect_status(fd, buf, len, WIRE_EINVAL, m);
    } else if (strcmp(m, "unknown") == 0) {
        size_t len = frame(buf, 999, 2, f, (size_t)n, NULL, 0);
        rc = expect_status(fd, buf, len, WIRE_ENOTSUP, m);
    } else if (strcmp(m, "badpayload") == 0) {
        data[50] ^= 1;
        size_t len = frame(buf, WIRE_BLOB_PUT, 2, f, (size_t)n, data, sizeof(data));
        rc = expect_status(fd, buf, len, WIRE_ECSUM, m);
    } else {
        printf("error: unknown mode %s\n", m);
    }
    close(fd);
    return rc;
}

/* ---- main ---------------------------------------------------------------------------------- */

static void on_up(struct conn *c, void *arg)
{
    (void)c;
    (void)arg;
    up = true;
}

static void on_close(struct conn *c, int err, void *arg)
{
    (void)c;
    (void)arg;
    closed = true;
    if (!finished && !up) printf("error: connect %s: %s\n", o.addr, bd_strerror(err));
}

static void on_request(struct conn *c, struct conn_frame *f, void *arg)
{
    (void)arg;
    if (!(f->hdr.flags & WIRE_F_ONEWAY)) conn_reply_error(c, &f->hdr, -ENOTSUP, 0, "client");
}

static const struct conn_ops cli_ops = {.on_request = on_request, .on_up = on_up,
                                        .on_close = on_close};

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static void usage(void)
{
    fprintf(stderr, "usage: blobcli --addr HOST:PORT [--cluster ID] [--ca F --cert F --key F] "
                    "put|get|delete|stat|list|report|storm|verify|garbage [options]\n");
    exit(2);
}

static uint64_t num(const char *s)
{
    uint64_t v;
    if (util_parse_size(s, &v) < 0) {
        fprintf(stderr, "blobcli: bad number '%s'\n", s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"addr", 1, 0, 'a'},       {"cluster", 1, 0, 'c'},
        {"id", 1, 0, 'i'},         {"partition", 1, 0, 'p'}, {"epoch", 1, 0, 'e'},
        {"size", 1, 0, 's'},       {"seed", 1, 0, 'd'},      {"off", 1, 0, 'o'},
        {"len", 1, 0, 'l'},        {"max", 1, 0, 'm'},       {"count", 1, 0, 'n'},
        {"inflight", 1, 0, 'q'},   {"start-id", 1, 0, 'x'},  {"parts", 1, 0, 'k'},
        {"acked", 1, 0, 'A'},      {"ids", 1, 0, 'I'},       {"mode", 1, 0, 'M'},
        {"compressible", 0, 0, 'C'}, {"bad-csum", 0, 0, 'B'}, {"timeout-ms", 1, 0, 't'},
        {"as-agent", 0, 0, 'G'},  {"ca", 1, 0, 'T'},       {"cert", 1, 0, 'R'},
        {"key", 1, 0, 'K'},
        {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'a': o.addr = optarg; break;
        case 'c': o.cluster = optarg; break;
        case 'T': o.ca = optarg; break;
        case 'R': o.cert = optarg; break;
        case 'K': o.key = optarg; break;
        case 'i': o.id = num(optarg); break;
        case 'p': o.partition = num(optarg); break;
        case 'e': o.epoch = num(optarg); break;
        case 's': o.size = num(optarg); o.size_set = true; break;
        case 'd': o.seed = num(optarg); break;
        case 'o': o.off = num(optarg); break;
        case 'l': o.len = num(optarg); break;
        case 'm': o.max = num(optarg); break;
        case 'n': o.count = num(optarg); break;
        case 'q': o.inflight = num(optarg); break;
        case 'x': o.start_id = num(optarg); break;
        case 'k': o.parts = num(optarg); break;
        case 'A': o.acked = optarg; break;
        case 'I': o.ids = optarg; break;
        case 'M': o.mode = optarg; break;
        case 'C': o.compressible = true; break;
        case 'B': o.bad_csum = true; break;
        case 't': o.timeout_ms = (uint32_t)num(optarg); break;
        case 'G': o.as_agent = true; break;
        default: usage();
        }
    }
    if (optind != argc - 1 || !o.addr) usage();
    o.cmd = argv[optind];
    if (o.inflight == 0 || o.parts == 0 || o.size > (64u << 20)) usage();
    if (o.ca) {
        char err[256];
        struct tls_files tf = {.ca_file = o.ca, .cert_file = o.cert, .key_file = o.key};
        if (tls_ctx_new(&tf, o.cluster, &tls, err, sizeof(err)) < 0) {
            printf("error: %s\n", err);
            return 1;
        }
    }
    conn_auth_init(&auth, o.cluster, tls, 0, o.as_agent ? WIRE_ROLE_AGENT : WIRE_ROLE_CTL,
                   "blobcli");
    if (strcmp(o.cmd, "garbage") == 0) {
        if (!o.mode) usage();
        return do_garbage();
    }
    rx = reactor_new();
    struct conn_opts copts = {.tag = "blobcli", .auth = &auth, .connect_timeout_ms = o.timeout_ms,
                              .max_inflight = 4096, .frame_timeout_ms = o.timeout_ms};
    int err = 0;
    cn = conn_connect(rx, o.addr, &cli_ops, NULL, &copts, &err);
    if (!cn) {
        printf("error: connect %s: %s\n", o.addr, bd_strerror(err));
        return 1;
    }
    struct event *tick = event_new(reactor_base(rx), -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 100000};
    evtimer_add(tick, &tv); /* keeps the loop turning while we wait */
    while (!up && !closed) event_base_loop(reactor_base(rx), EVLOOP_ONCE);
    if (!up) return 1;
    if (strcmp(o.cmd, "put") == 0) do_put();
    else if (strcmp(o.cmd, "get") == 0) do_get();
    else if (strcmp(o.cmd, "delete") == 0) do_simple(WIRE_BLOB_DELETE);
    else if (strcmp(o.cmd, "stat") == 0) do_simple(WIRE_BLOB_STAT);
    else if (strcmp(o.cmd, "report") == 0) do_simple(WIRE_BLOB_REPORT);
    else if (strcmp(o.cmd, "list") == 0) do_list_page();
    else if (strcmp(o.cmd, "storm") == 0) do_storm();
    else if (strcmp(o.cmd, "verify") == 0) do_verify();
    else usage();
    while (!finished && !closed) event_base_loop(reactor_base(rx), EVLOOP_ONCE);
    if (!finished) {
        printf("error: connection closed\n");
        exit_code = 1;
    }
    if (strcmp(o.cmd, "storm") == 0 || strcmp(o.cmd, "verify") == 0) {
        double secs = (double)(util_mono_ns() - t_start) / 1e9;
        printf("%s: ok %llu failed %llu size %llu seconds %.3f ops/s %.0f MB/s %.1f\n", o.cmd,
               (unsigned long long)acked_n, (unsigned long long)failed_n,
               (unsigned long long)o.size, secs, acked_n / secs,
               (double)acked_n * (double)o.size / secs / 1e6);
    }
    if (acked_f) fclose(acked_f);
    if (!closed) conn_close(cn, 0); /* after on_close the conn frees itself */
    event_free(tick);
    reactor_free(rx);
    if (slots)
        for (uint64_t i = 0; i < o.inflight; i++) free(slots[i].data);
    free(slots);
    free(verify_ids);
    free(payload);
    return exit_code;
}
